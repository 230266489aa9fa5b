# Shared by the display end-to-end scripts (e2e.sh, session-control.sh): a
# database of their own on the run's private PostgreSQL, the TCG test guest
# with its consoles on unix sockets, atrium-displayd in front of them, and a
# bound on the whole run.  Source it after setting mode, and call dl_init.
#
#   dl_init TAG DBNAME SECONDS  temp dir $tmp (/tmp/atrium-TAG.XXXXXX),
#                   database DBNAME ($conninfo), the EXIT trap that kills
#                   every pid in $pids, drops the database and, on failure,
#                   prints the tails of the logs named in $dl_logs; the whole
#                   script is ended (status 124) after SECONDS
#   dl_desk USERID  pool p1 entitling USERID, its VM assigned to USERID with
#                   a live session: sets $pool, $vm, $session
#   dl_guest [QEMU ARGS]  the test guest on an overlay, VNC and QMP on unix
#                   sockets in $vmdir ($run/vms/$vm), serial into
#                   $tmp/serial.log; extra QEMU arguments come last
#   dl_conf [EXTRA] $tmp/atrium.conf: database, runtime dir, debug log, and
#                   displayd on free loopback ports ($vnc_port, $spice_port,
#                   $rdp_port) with a throw-away certificate for 127.0.0.1;
#                   EXTRA (INI text) is appended
#   dl_displayd     starts displayd on that config ($displayd) and waits
#                   (bounded) for it to be ready
#   fail, ok, sql, wait_line FILE PATTERN SECONDS
#
# Needs: ATRIUM_BINARY_DIR, ATRIUM_SOURCE_DIR, ATRIUM_GUEST_DIR,
# ATRIUM_TEST_PG_FILE (ctest sets them).
set -euo pipefail

bin=${ATRIUM_BINARY_DIR:?}
src=${ATRIUM_SOURCE_DIR:?}
guest=${ATRIUM_GUEST_DIR:-$bin/guest}
helper=$src/tests/display/helper.py
pids=()
dl_logs=(displayd.log serial.log)

dl_cleanup() {
    local rc=$? p f
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    psql "$server" -qXc "ALTER DATABASE $dbname ALLOW_CONNECTIONS true" >/dev/null 2>&1 || true
    psql "$server" -qXc "DROP DATABASE IF EXISTS $dbname WITH (FORCE)" >/dev/null 2>&1 || true
    if [[ $rc -ne 0 ]]; then
        for f in "${dl_logs[@]}"; do
            echo "--- $f"; grep -v 'level=debug' "$tmp/$f" 2>/dev/null | tail -n 40 || true
        done
    fi
    if [[ $rc -ne 0 && -n ${ATRIUM_DISPLAY_KEEP:-} ]]; then
        echo "kept $tmp"
    else
        rm -rf "$tmp"
    fi
    exit $rc
}

dl_init() {
    tmp=$(mktemp -d "/tmp/atrium-$1.XXXXXX")
    server=$(cat "${ATRIUM_TEST_PG_FILE:?}")
    dbname=$2
    conninfo="$server dbname=$dbname"
    run=$tmp/run
    trap dl_cleanup EXIT
    trap 'exit 124' ALRM TERM INT
    # the whole test is bounded, whatever hangs
    (
        trap 'kill $s 2>/dev/null; exit 0' TERM
        sleep "$3" & s=$!
        wait $s && kill -ALRM $$
    ) >/dev/null 2>&1 &
    pids+=($!)
    psql "$server" -qXc "CREATE DATABASE $dbname" >/dev/null
}

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
sql() { psql "$conninfo" -qXAtc "$1"; }

# wait_line FILE PATTERN SECONDS: block until a line matches (inotify via tail -F)
wait_line() {
    local fd tp rc=0
    exec {fd}< <(exec timeout "$3" tail -F -n +1 "$1" 2>/dev/null)
    tp=$!
    grep -q -m1 -- "$2" <&"$fd" || rc=1
    kill "$tp" 2>/dev/null || true
    exec {fd}<&-
    return $rc
}

dl_desk() {
    sql "INSERT INTO pools (name) VALUES ('p1')"
    pool=$(sql "SELECT id FROM pools")
    sql "INSERT INTO entitlements (pool_id, user_id) VALUES ($pool, $1)"
    sql "INSERT INTO vms (name, pool_id, state, assigned_user_id) VALUES ('vm-1', $pool, 'assigned', $1)"
    vm=$(sql "SELECT id FROM vms")
    sql "INSERT INTO desktop_sessions (user_id, pool_id, vm_id, state) VALUES ($1, $pool, $vm, 'assigned')"
    session=$(sql "SELECT id FROM desktop_sessions")
}

dl_guest() {
    vmdir=$run/vms/$vm
    mkdir -p "$vmdir"
    qemu-img create -q -f qcow2 -F qcow2 -b "$guest/disk.qcow2" "$tmp/overlay.qcow2"
    : >"$tmp/serial.log"
    qemu-system-x86_64 -machine q35 -accel tcg -m 256 -nodefaults -no-reboot \
        -kernel "$guest/vmlinuz" -initrd "$guest/initrd.img" -append "$(cat "$guest/cmdline")" \
        -drive "file=$tmp/overlay.qcow2,if=virtio,format=qcow2" \
        -vga qxl -display none -nic none \
        -vnc "unix:$vmdir/vnc.sock" \
        -qmp "unix:$vmdir/qmp.sock,server=on,wait=off" \
        -serial "file:$tmp/serial.log" "$@" >"$tmp/qemu.log" 2>&1 &
    pids+=($!)
}

dl_conf() {
    vnc_port=$("$helper" freeport)
    spice_port=$("$helper" freeport)
    rdp_port=$("$helper" freeport)
    # TLS always (RDP); named for the address viewers use (spice-gtk checks
    # the name of a TLS proxy)
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
        -addext "subjectAltName=IP:127.0.0.1" \
        -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
    cat >"$tmp/atrium.conf" <<CONF
[db]
url = $conninfo
[paths]
runtime_dir = $run
[log]
level = debug
[display]
listen = 127.0.0.1
vnc_port = $vnc_port
spice_port = $spice_port
rdp_port = $rdp_port
tls_cert = $tmp/cert.pem
tls_key = $tmp/key.pem
CONF
    [[ -z ${1:-} ]] || printf '%s\n' "$1" >>"$tmp/atrium.conf"
}

dl_displayd() {
    : >"$tmp/displayd.log"
    # (under ASan: FreeRDP's own per-connection TLS leak is suppressed, see
    # lsan.supp; full unwinding so the stacks through libcrypto reach tls_accept)
    LSAN_OPTIONS=suppressions=$src/tests/display/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS} \
    ASAN_OPTIONS=fast_unwind_on_malloc=0${ASAN_OPTIONS:+:$ASAN_OPTIONS} \
        "$bin/display/atrium-displayd" --config "$tmp/atrium.conf" 2>"$tmp/displayd.log" &
    displayd=$!
    pids+=($displayd)
    wait_line "$tmp/displayd.log" 'msg="displayd ready"' "${1:-30}" || fail "displayd did not start"
}
