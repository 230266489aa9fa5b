# Test hosts: several Atrium hosts on one machine, for tests of what spans
# hosts (live migration, maintenance, HA).  Source it after lib.sh and
# atr_init (it uses $tmp, $server, $db and atr_on_exit).
#
#   mh_init N HOSTD         N hosts (1..9): each a network namespace joined to
#                           the others by a veth pair on a bridge in a switch
#                           namespace, with an address in a random
#                           10.213.X.0/24 that exists only inside those
#                           namespaces; each runs its own HOSTD (its own
#                           [hostd] name mh<i>, runtime dir $tmp/h<i>/run, data
#                           dir $tmp/h<i>/data) inside its namespace, all on the
#                           run's private PostgreSQL ($db) through its unix
#                           socket (a path: reachable from every namespace)
#   mh_ns I / mh_addr I     namespace name / address of host I
#   mh_conf I               that host's config file (atriumctl works with any)
#   mh_hostd_log I          that hostd's log
#   mh_qemu_pids I          pids of the QEMUs of host I (by their pid files)
#   mh_in_ns I PID          true when process PID runs in host I's namespace
#   mh_stop_hostd I         stop host I's hostd (TERM, bounded wait, then KILL)
#   mh_start_displayd DISPLAYD
#                           after mh_init: a displayd in every host's namespace
#                           on its address (VNC 5900, SPICE 3128, RDP 3389,
#                           relay 5898 for the other hosts' displayd), each
#                           with its own throw-away certificate and a
#                           [display] section added to the host's config
#   mh_displayd_log I       that displayd's log
#   mh_stop_displayd I      stop host I's displayd (TERM, bounded wait, then KILL)
#   mh_kill_hostd I         kill -9 host I's hostd (its VMs and fence guard live on)
#   mh_start_hostd I        start host I's hostd again (after a stop or kill)
#   mh_guard_pid I          pid of host I's fence guard (empty: none runs)
#   mh_ctl ATRIUMCTL        atriumctl on the run's database as `a ARGS...`
#                           (its config $tmp/ctl.conf), the schema migrated
#   mh_hostd_tails LINES    the last LINES lines of every hostd's log (for a
#                           test's diagnostics when a check failed)
#   mh_qemu_of I VM         pid of VM's live QEMU on host I (empty: none)
#   mh_started_at PID       when PID started, seconds since boot
#
# Options, set before mh_init:
#   mh_db_tcp=1             hosts reach PostgreSQL over TCP through the test
#                           network: a socat relay in the switch namespace
#                           listens on $(mh_db_addr):5432 and forwards to the
#                           server's unix socket, so cutting a host's link
#                           (ip -n "$(mh_sw)" link set h<I> down) cuts its
#                           database too
#   mh_hostd_extra=TEXT     lines added to every host's [hostd] section
#
# Everything is undone on exit, also on failure: hostds, every QEMU started
# under a host's runtime dir, the namespaces (their veths go with them).
# Needs root, iproute2 (ip netns, veth, bridge), socat and the hostd binary.

mh_n=0
mh_tag=""
mh_net=""
declare -a mh_hostd_pid=()
mh_db_tcp=${mh_db_tcp:-0}
mh_hostd_extra=${mh_hostd_extra:-}
mh_relay_pid=""

mh_ns() { echo "atr-${mh_tag}-h$1"; }
mh_addr() { echo "${mh_net}.$((10 + $1))"; }
mh_conf() { echo "$tmp/h$1/atrium.conf"; }
mh_hostd_log() { echo "$tmp/h$1/hostd.log"; }
mh_sw() { echo "atr-${mh_tag}-sw"; }
mh_db_addr() { echo "${mh_net}.1"; }

# The database URL hosts use: the unix socket, or the relay (mh_db_tcp=1).
mh_db_url() {
    if ((mh_db_tcp)); then
        echo "host=$(mh_db_addr) port=5432 user=$(sed -n 's/.*user=\([^ ]*\).*/\1/p' <<<"$server") dbname=$db"
    else
        echo "$server dbname=$db"
    fi
}

# A TCP -> unix relay to PostgreSQL in the switch namespace, its own process
# group (each connection is a forked child), killed as a group on exit.
mh_db_relay_start() {
    local sock
    sock="$(sed -n 's/.*host=\([^ ]*\).*/\1/p' <<<"$server")/.s.PGSQL.$(sed -n 's/.*port=\([0-9]*\).*/\1/p' <<<"$server")"
    ip -n "$(mh_sw)" addr add "$(mh_db_addr)/24" dev br0
    setsid ip netns exec "$(mh_sw)" socat "TCP-LISTEN:5432,bind=$(mh_db_addr),reuseaddr,fork" \
        "UNIX-CONNECT:$sock" 2>/dev/null &
    mh_relay_pid=$!
    local n=0
    until [[ -n $(ip netns exec "$(mh_sw)" ss -ltnH "sport = :5432" 2>/dev/null) ]]; do
        n=$((n + 1))
        ((n < 100)) || { echo "mh_init: the database relay does not listen" >&2; return 1; }
        sleep 0.1
    done
}

mh_guard_pid() {
    local f="$tmp/h$1/run/fence.pid" pid
    [[ -f $f ]] || return 0
    pid=$(cat "$f" 2>/dev/null) || return 0
    # Only the guard of this runtime dir (a pid can be recycled).
    [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
        grep -qF -- "--fence-guard $tmp/h$1/run" && echo "$pid"
    return 0
}

mh_kill_hostd() {
    local pid=${mh_hostd_pid[$1]:-}
    [[ -n $pid ]] || return 0
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    mh_hostd_pid[$1]=""
}

mh_start_hostd() {
    local i=$1
    ip netns exec "$(mh_ns "$i")" "$mh_hostd_bin" --config "$(mh_conf "$i")" \
        >>"$(mh_hostd_log "$i")" 2>&1 &
    mh_hostd_pid[$i]=$!
}

mh_qemu_pids() {
    local f pid
    for f in "$tmp/h$1"/run/vms/*/qemu.pid; do
        [[ -f $f ]] || continue
        pid=$(cat "$f" 2>/dev/null) || continue
        [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
    done
    return 0
}

mh_in_ns() {
    local want have
    want=$(stat -L -c %i "/run/netns/$(mh_ns "$1")" 2>/dev/null) || return 1
    have=$(stat -L -c %i "/proc/$2/ns/net" 2>/dev/null) || return 1
    [[ $want == "$have" ]]
}

mh_ctl() {
    mh_ctl_bin=$1
    printf '[db]\nurl = %s dbname=%s\n' "$server" "$db" >"$tmp/ctl.conf"
    a db migrate >/dev/null
}
a() { "$mh_ctl_bin" --config "$tmp/ctl.conf" "$@"; }

mh_hostd_tails() {
    local i
    for ((i = 1; i <= mh_n; i++)); do
        echo "---- hostd mh$i (last $1 lines)"
        tail -n "$1" "$(mh_hostd_log "$i")" 2>/dev/null || true
    done
}

mh_stop_hostd() {
    local i=$1 pid=${mh_hostd_pid[$1]:-} n=0
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((n < 100)); do
        sleep 0.1
        n=$((n + 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    mh_hostd_pid[$i]=""
}

mh_cleanup() {
    local i pid
    for ((i = 1; i <= mh_n; i++)); do mh_stop_hostd "$i"; done
    # The fence guards outlive hostd like the VMs: kill them first, by pid.
    for ((i = 1; i <= mh_n; i++)); do
        pid=$(mh_guard_pid "$i")
        [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null || true
    done
    # QEMU outlives hostd by design: kill what each host's runtime dir names.
    for ((i = 1; i <= mh_n; i++)); do
        for pid in $(mh_qemu_pids "$i"); do kill -KILL "$pid" 2>/dev/null || true; done
    done
    if [[ -n $mh_relay_pid ]]; then
        kill -TERM -- "-$mh_relay_pid" 2>/dev/null || true
        wait "$mh_relay_pid" 2>/dev/null || true
    fi
    for ((i = 1; i <= mh_n; i++)); do ip netns del "$(mh_ns "$i")" 2>/dev/null || true; done
    [[ -n $mh_tag ]] && ip netns del "atr-${mh_tag}-sw" 2>/dev/null || true
    return 0
}

mh_init() {
    local n=${1:?mh_init N HOSTD} hostd=${2:?mh_init N HOSTD} i ns sw
    ((n >= 1 && n <= 9)) || { echo "mh_init: 1..9 hosts" >&2; return 1; }
    mh_tag=$(printf '%04x%02x' $((RANDOM)) $((RANDOM % 256)))
    mh_net="10.213.$((RANDOM % 250 + 1))"
    sw="atr-${mh_tag}-sw"
    atr_on_exit mh_cleanup
    ip netns add "$sw"
    ip -n "$sw" link add br0 type bridge
    ip -n "$sw" link set br0 up
    mh_hostd_bin=$hostd
    if ((mh_db_tcp)); then mh_db_relay_start || return 1; fi
    for ((i = 1; i <= n; i++)); do
        ns=$(mh_ns "$i")
        ip netns add "$ns"
        mh_n=$i
        # The veth is made inside the host's namespace and its peer moved
        # to the switch, so no interface ever appears in the machine's own.
        ip -n "$ns" link add eth0 type veth peer name "h$i" netns "$sw"
        ip -n "$sw" link set "h$i" master br0 up
        ip -n "$ns" addr add "$(mh_addr "$i")/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
        mkdir -p "$tmp/h$i/run" "$tmp/h$i/data"
        printf '[db]\nurl = %s\n[paths]\nruntime_dir = %s\ndata_dir = %s\n[hostd]\nname = mh%d\naddress = %s\naccel = tcg\nmetrics_interval = 5\nstop_timeout = 10\n%s\n[log]\nlevel = info\n' \
            "$(mh_db_url)" "$tmp/h$i/run" "$tmp/h$i/data" "$i" "$(mh_addr "$i")" \
            "$mh_hostd_extra" >"$(mh_conf "$i")"
    done
    for ((i = 1; i <= n; i++)); do
        ip netns exec "$(mh_ns "$i")" "$hostd" --config "$(mh_conf "$i")" \
            >"$(mh_hostd_log "$i")" 2>&1 &
        mh_hostd_pid[$i]=$!
    done
    # Registered and heart-beating: every host has a row.
    local deadline=$((SECONDS + 60))
    while (($(q "SELECT count(*) FROM hosts WHERE name LIKE 'mh_' AND heartbeat_at IS NOT NULL") < n)); do
        if ((SECONDS >= deadline)); then
            echo "mh_init: hosts did not register within 60 s" >&2
            for ((i = 1; i <= n; i++)); do sed "s/^/    h$i: /" "$(mh_hostd_log "$i")" >&2; done
            return 1
        fi
        sleep 0.2
    done
    # The namespaces reach each other: one TCP connection host 1 -> host i.
    local lp
    for ((i = 2; i <= n; i++)); do
        timeout 10 ip netns exec "$(mh_ns "$i")" socat -u \
            "TCP-LISTEN:7999,bind=$(mh_addr "$i"),reuseaddr" OPEN:/dev/null &
        lp=$!
        local tries=0
        until timeout 3 ip netns exec "$(mh_ns 1)" socat -u OPEN:/dev/null \
            "TCP:$(mh_addr "$i"):7999,connect-timeout=2" 2>/dev/null; do
            tries=$((tries + 1))
            if ((tries >= 20)); then
                kill "$lp" 2>/dev/null || true
                echo "mh_init: host 1 cannot reach host $i" >&2
                return 1
            fi
            sleep 0.2
        done
        wait "$lp" 2>/dev/null || true
    done
}

# ---- displayd per host (mh_start_displayd) --------------------------------

declare -a mh_displayd_pid=()
mh_displayd_log() { echo "$tmp/h$1/displayd.log"; }

mh_stop_displayd() {
    local i=$1 pid=${mh_displayd_pid[$1]:-} n=0
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((n < 100)); do
        sleep 0.1
        n=$((n + 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    mh_displayd_pid[$i]=""
}

mh_displayd_cleanup() {
    local i
    for ((i = 1; i <= mh_n; i++)); do mh_stop_displayd "$i"; done
    return 0
}

mh_start_displayd() {
    local displayd=${1:?mh_start_displayd DISPLAYD} i
    ((mh_n > 0)) || { echo "mh_start_displayd: mh_init first" >&2; return 1; }
    atr_on_exit mh_displayd_cleanup
    for ((i = 1; i <= mh_n; i++)); do
        openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=$(mh_addr "$i")" \
            -keyout "$tmp/h$i/display-key.pem" -out "$tmp/h$i/display-cert.pem" 2>/dev/null
        printf '[display]\nlisten = %s\nvnc_port = 5900\nspice_port = 3128\nrdp_port = 3389\nrelay_port = 5898\ntls_cert = %s\ntls_key = %s\n' \
            "$(mh_addr "$i")" "$tmp/h$i/display-cert.pem" "$tmp/h$i/display-key.pem" >>"$(mh_conf "$i")"
        # lsan.supp: FreeRDP's own TLS leak at RDP accepts (see that file);
        # full unwinding, so its stacks through libcrypto reach tls_accept
        LSAN_OPTIONS=suppressions=$(dirname "${BASH_SOURCE[0]}")/../display/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS} \
            ASAN_OPTIONS=fast_unwind_on_malloc=0${ASAN_OPTIONS:+:$ASAN_OPTIONS} \
            ip netns exec "$(mh_ns "$i")" "$displayd" --config "$(mh_conf "$i")" \
            >"$(mh_displayd_log "$i")" 2>&1 &
        mh_displayd_pid[$i]=$!
    done
    local deadline=$((SECONDS + 60))
    for ((i = 1; i <= mh_n; i++)); do
        until grep -q 'msg="relay announced"' "$(mh_displayd_log "$i")" 2>/dev/null; do
            if ((SECONDS >= deadline)) || ! kill -0 "${mh_displayd_pid[$i]}" 2>/dev/null; then
                echo "mh_start_displayd: displayd of host $i did not come up" >&2
                sed "s/^/    h$i: /" "$(mh_displayd_log "$i")" >&2
                return 1
            fi
            sleep 0.2
        done
    done
}

# ---- one VM's QEMU on a host (mh_qemu_of, mh_started_at) ------------------

# The live QEMU of VM $2 on host $1, if any: its pid file names a process
# started with that pid file that is not a zombie.
mh_qemu_of() {
    local pf="$tmp/h$1/run/vms/$2/qemu.pid" pid st
    [[ -f $pf ]] || return 0
    pid=$(cat "$pf" 2>/dev/null) || return 0
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    st=$(sed -n 's/^[0-9]* (.*) \([A-Z]\) .*/\1/p' "/proc/$pid/stat" 2>/dev/null) || return 0
    [[ -n $st && $st != Z && $st != X ]] || return 0
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$pf" && echo "$pid"
    return 0
}
# Seconds since boot at which process $1 started (field 22 of /proc/PID/stat).
mh_started_at() {
    local ticks
    ticks=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $20 }')
    [[ -n $ticks ]] || return 1
    awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}

# ---- never one VM on two hosts (mh_sampler_start, mh_sampler_check) -------

# Seconds since boot, as /proc/uptime says.
mh_uptime_s() { cut -d' ' -f1 /proc/uptime; }

# mh_sampler_start PERIOD HOSTS [VM...]: in the background, every PERIOD s,
# one line per VM into $tmp/samples: "<uptime> vm=<id> live=<n> mhI:<pid>..."
# for the live QEMUs of that VM on hosts 1..HOSTS.  Without VMs: every VM
# with a runtime dir on any of those hosts.
mh_sampler_start() {
    local period=$1 nhosts=$2
    shift 2
    local vms="$*"
    (
        local vm i pid n hosts list
        while :; do
            list=$vms
            if [[ -z $list ]]; then
                list=$(for i in $(seq 1 "$nhosts"); do ls "$tmp/h$i/run/vms" 2>/dev/null; done |
                    grep -E '^[0-9]+$' | sort -u)
            fi
            for vm in $list; do
                n=0 hosts=""
                for i in $(seq 1 "$nhosts"); do
                    pid=$(mh_qemu_of "$i" "$vm")
                    [[ -n $pid ]] && { n=$((n + 1)); hosts+=" mh$i:$pid"; }
                done
                echo "$(mh_uptime_s) vm=$vm live=$n$hosts"
            done
            sleep "$period"
        done
    ) >"$tmp/samples" 2>/dev/null &
    mh_sampler_pid=$!
    atr_on_exit "kill $mh_sampler_pid 2>/dev/null || true"
}

# mh_sampler_check: stop the sampler; ok when no sample saw two live QEMUs
# of one VM, else bad with the first such samples.
mh_sampler_check() {
    kill "$mh_sampler_pid" 2>/dev/null || true
    wait "$mh_sampler_pid" 2>/dev/null || true
    local n
    n=$(wc -l <"$tmp/samples")
    if grep -q 'live=[2-9]' "$tmp/samples"; then
        bad "one VM had live QEMUs on two hosts at once"
        grep 'live=[2-9]' "$tmp/samples" | head -n 5
    else
        ok "never one VM with QEMUs on two hosts ($n samples)"
    fi
}

# ---- two hosts with hostd and displayd, for the console tests --------------

# mh_console_init ATRIUMCTL HOSTD DISPLAYD [EXTRA-LOGS-FN]: two test hosts,
# each with its hostd and displayd; when the test fails, the last lines of
# every hostd and displayd log are printed, then what EXTRA-LOGS-FN prints
# (the test's own client logs).
mh_console_init() {
    mh_console_extra_logs=${4:-}
    mh_ctl "$1"
    mh_init 2 "$2"
    mh_start_displayd "$3"
    ok "two hosts with hostd and displayd ($(mh_addr 1), $(mh_addr 2))"
    atr_on_exit '((atr_fails == 0)) || mh_console_logs'
}
mh_console_logs() {
    local i
    for i in 1 2; do
        echo "---- hostd mh$i (last 20 lines)"
        tail -n 20 "$(mh_hostd_log "$i")" 2>/dev/null || true
        echo "---- displayd mh$i (last 40 lines)"
        grep -v 'level=debug' "$(mh_displayd_log "$i")" 2>/dev/null | tail -n 40 || true
    done
    [[ -z $mh_console_extra_logs ]] || "$mh_console_extra_logs"
}

# mh_console_done: stop both displayds; each must stop without a sanitizer report.
mh_console_done() {
    local i
    for i in 1 2; do
        mh_stop_displayd "$i"
        if grep -q 'Sanitizer' "$(mh_displayd_log "$i")"; then
            bad "displayd mh$i: sanitizer report"
            grep -A12 'Sanitizer' "$(mh_displayd_log "$i")" | head -n 30 | sed 's/^/    /'
        else ok "displayd mh$i stopped without a sanitizer report"; fi
    done
}

# A viewer's timeline: FILE has one line per picture change, its first field
# the time in ms.
# mh_tl_since FILE MS: changes after MS
mh_tl_since() { awk -v t="$2" '$1 > t { n++ } END { print n + 0 }' "$1"; }
# mh_tl_pause FILE FROM TO: the longest gap between two changes that spans
# any instant of [FROM, TO]
mh_tl_pause() {
    awk -v a="$2" -v b="$3" 'NR > 1 && $1 >= a && prev <= b { g = $1 - prev; if (g > m) m = g }
        { prev = $1 } END { print m + 0 }' "$1"
}
# mh_tl_usual FILE MS: the usual gap while nothing moves (median of the last
# 20 gaps before MS)
mh_tl_usual() {
    awk -v t="$2" '$1 < t { if (n++) print $1 - prev; prev = $1 }' "$1" |
        tail -n 20 | sort -n | awk '{ v[NR] = $1 } END { print NR ? v[int((NR + 1) / 2)] : 0 }'
}
