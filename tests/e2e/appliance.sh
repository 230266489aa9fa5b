# The whole appliance on loopback for tests/e2e and tests/chaos: source it
# after tests/harness/lib.sh and atr_init.  Needs $tmp, $server, $db, $dbci.
#
#   app_configure BIN_DIR GUEST_DIR   config, TLS pair, free ports, migrate,
#                                     import the test guest
#   app_start NAME                    start atrium-NAME (hostd, poold, broker,
#                                     displayd) in the background; its pid is
#                                     in $tmp/NAME.pid (app_pidof NAME), its log
#                                     $tmp/NAME.log
#   app_kill NAME [SIG]               signal the daemon this run started (-9
#                                     by default) and wait until it is gone
#   app_wait_healthy NAME SINCE_MS S  wait (bounded) until NAME is healthy
#                                     again after a start at SINCE_MS (epoch ms):
#                                     broker /healthz, hostd heartbeat, poold
#                                     holds the leader lock, displayd accepts
#   app_qemu_pids                     pids of this run's QEMUs (by their
#                                     runtime dir, which is unique to $tmp)
#   app_teardown_vms S                delete every VM through the product and
#                                     wait (bounded) until none is left
#   app_diag                          VM rows and log tails, for failures
#
# Every process started here is stopped by the EXIT trap, also on failure:
# daemons by their pids, QEMUs (which outlive hostd by design) by theirs.

app_bin=
app_guest=

app_now_ms() { date +%s%3N; }

app_freeport() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

app_qemu_pids() {
    local f p
    # QEMUs whose command line names this run's runtime dir (unique to $tmp)
    for f in $(grep -slF -- "$tmp/run/" /proc/[0-9]*/cmdline 2>/dev/null); do
        p=${f#/proc/}
        p=${p%/cmdline}
        [[ $(cat "/proc/$p/comm" 2>/dev/null) == qemu-system-* ]] && echo "$p"
    done
    return 0
}

# pid of the daemon NAME this run started last (a restart may have happened
# in a background subshell, so the pid lives in a file)
app_pidof() { cat "$tmp/$1.pid" 2>/dev/null || true; }

app_stop_all() {
    local n p
    for n in hostd poold broker displayd; do
        p=$(app_pidof "$n")
        [[ -n $p ]] && kill -TERM "$p" 2>/dev/null || true
    done
    for n in hostd poold broker displayd; do
        p=$(app_pidof "$n")
        [[ -n $p ]] || continue
        timeout 20 tail --pid="$p" -f /dev/null 2>/dev/null || kill -9 "$p" 2>/dev/null || true
    done
    for p in $(app_qemu_pids); do kill -9 "$p" 2>/dev/null || true; done
}

app_configure() {
    app_bin=${1:?app_configure BIN_DIR GUEST_DIR}
    app_guest=${2:?}
    broker_port=$(app_freeport)
    vnc_port=$(app_freeport)
    spice_port=$(app_freeport)
    rdp_port=$(app_freeport)
    mkdir -p "$tmp/run" "$tmp/data"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
        -addext "subjectAltName=IP:127.0.0.1" \
        -keyout "$tmp/key.pem" -out "$tmp/cert.pem" >/dev/null 2>&1
    conf=$tmp/atrium.conf
    cat >"$conf" <<CONF
[db]
url = $dbci
[paths]
runtime_dir = $tmp/run
data_dir = $tmp/data
[log]
level = info
[hostd]
name = e2e
accel = tcg
[poold]
provision_timeout = ${app_provision_timeout:-300}
# On this shared 2-core machine (load average 50 seen) hostd's 2 s heartbeat
# slipped past the default 10 s: poold then retires every VM of the "lost"
# host and, after 3 such failures, stops provisioning the pool.  These tests
# are about assignment and recovery, not heartbeat timing: allow 60 s.
host_stale = 60
[broker]
listen = 127.0.0.1
port = $broker_port
tls = true
tls_cert = $tmp/cert.pem
tls_key = $tmp/key.pem
public_address = 127.0.0.1
threads = 4
max_connections = 2000
[display]
listen = 127.0.0.1
vnc_port = $vnc_port
spice_port = $spice_port
rdp_port = $rdp_port
tls_cert = $tmp/cert.pem
tls_key = $tmp/key.pem
CONF
    atr_on_exit app_stop_all
    # ATRIUM_E2E_KEEP=DIR keeps the daemons' logs of the run there
    [[ -z ${ATRIUM_E2E_KEEP:-} ]] || atr_on_exit 'mkdir -p "$ATRIUM_E2E_KEEP"; cp "$tmp"/*.log "$tmp"/storm.* "$ATRIUM_E2E_KEEP"/ 2>/dev/null'
    ctl() { "$app_bin/ctl/atriumctl" --config "$conf" "$@"; }
    ctl db migrate >/dev/null
    ctl image import "$app_guest/disk.qcow2" --name guest --kernel "$app_guest/vmlinuz" \
        --initrd "$app_guest/initrd.img" --cmdline "$(cat "$app_guest/cmdline")" >/dev/null
}

app_start() {
    local n=$1 bin
    case $n in
    hostd) bin=$app_bin/hypervisor/atrium-hostd ;;
    poold) bin=$app_bin/pool-manager/atrium-poold ;;
    broker) bin=$app_bin/broker/atrium-broker ;;
    displayd) bin=$app_bin/display/atrium-displayd ;;
    *) echo "app_start: unknown daemon $n" >&2; return 1 ;;
    esac
    echo "=== start $(date +%T.%3N)" >>"$tmp/$n.log"
    # LSan: FreeRDP's own per-connection TLS leak (see tests/display/lsan.supp);
    # a daemon killed with -9 reports nothing anyway
    LSAN_OPTIONS=suppressions=$ATRIUM_SOURCE_DIR/tests/display/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS} \
        "$bin" --config "$conf" >>"$tmp/$n.log" 2>&1 </dev/null &
    echo "$!" >"$tmp/$n.pid"
    disown "$!" # killed on purpose by the chaos test: no job-control noise
}

app_kill() {
    local p
    p=$(app_pidof "$1")
    [[ -n $p ]] || return 0
    kill "-${2:-KILL}" "$p" 2>/dev/null || true
    timeout 20 tail --pid="$p" -f /dev/null 2>/dev/null || true
}

# healthy NAME SINCE_MS: one probe, status 0 when healthy
app_healthy() {
    case $1 in
    broker)
        curl -sf --max-time 2 --cacert "$tmp/cert.pem" "https://127.0.0.1:$broker_port/healthz" >/dev/null ;;
    hostd)
        [[ $(q "SELECT coalesce(bool_or(heartbeat_at >= to_timestamp($2 / 1000.0)), false) FROM hosts" 2>/dev/null) == t ]] ;;
    poold)
        # DB_LOCK_POOLD_LEADER (0x41545202) held by a connection opened since
        [[ $(q "SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE l.locktype = 'advisory' AND l.granted AND l.objid = 1096045058
                  AND l.objsubid = 1 AND a.datname = current_database()
                  AND a.backend_start >= to_timestamp($2 / 1000.0)" 2>/dev/null) == t ]]
        ;;
    displayd)
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $vnc_port), 1).close()" 2>/dev/null ;;
    esac
}

app_wait_healthy() {
    local n=$1 since=$2 deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        app_healthy "$n" "$since" && return 0
        sleep 0.1
    done
    return 1
}

app_teardown_vms() {
    local p
    for p in $(q "SELECT name FROM pools"); do ctl pool resize "$p" --min 0 --spare 0 --max 0 >/dev/null; done
    q "UPDATE vms SET desired_power = 'deleted', state = 'deleting', assigned_user_id = NULL" >/dev/null
    until_sql "$1" "SELECT count(*) = 0 FROM vms"
}

app_diag() {
    echo "---- vms"; q "SELECT id, name, state, desired_power, actual_power, qemu_pid, last_error FROM vms ORDER BY id" || true
    echo "---- live sessions"; q "SELECT id, user_id, vm_id, state FROM desktop_sessions WHERE state <> 'ended'" || true
    local n
    for n in hostd poold broker displayd; do echo "---- $n"; tail -15 "$tmp/$n.log" 2>/dev/null || true; done
}
