#!/bin/bash
# An RDP console that follows its VM across live migrations, and an RDP
# console of a VM on another host, on two test hosts (network namespaces,
# each with its own hostd and displayd; tests/harness/hosts.sh).
#
# A real xfreerdp (under Xvfb, run inside mh1's namespace) connects to mh1's
# displayd with a one-time ticket and stays connected while the VM moves
# mh1 -> mh2 -> mh1 (atriumctl vm migrate).  After each move: the same
# xfreerdp process is alive, mh1's displayd logged the follow (no second
# viewer joined, so the client never reconnected), and keys typed in the
# client reach the guest on the host it now runs on (the guest echoes each
# typed line on its serial port, which each host's QEMU writes to its own
# log).  The pause is measured twice and printed: on the client, as the
# longest gap between two changes of the xfreerdp window's picture (sampled
# every ~100 ms; the guest's screen changes every few hundred ms by itself,
# which bounds how finely a pause can be seen), and in displayd, as the gap
# between the last frame the old console brought and the first one from the
# new ("rdp console resumed" gap_ms).  Then a second xfreerdp connects to
# mh2's displayd for the VM on mh1 (no migration): mh2's displayd reaches it
# through mh1's relay, and its keys reach the guest on mh1; and a third logs
# in at mh2's displayd with a password (no ticket) and gets the person's
# desktop on mh1 the same way.  Then mh1's displayd is killed (-9) and
# started again: the viewers of mh2's displayd stay connected, follow the
# console back through the new relay, and keys typed meanwhile reach the
# guest.  Last, the VM is stopped: every RDP viewer's console ends, displayd
# looks for the VM for its bounded follow window (10 s), then closes the
# viewers, and every xfreerdp exits.
set -euo pipefail
hostd=${1:?usage: test-console-rdp.sh HOSTD DISPLAYD ATRIUMCTL TICKET-TOOL}
displayd=${2:?}
ctl=${3:?}
ticket_tool=${4:?}
guest=${ATRIUM_GUEST_DIR:?the test guest (fixture guest)}
here=$(dirname "$0")
. "$here/../harness/lib.sh"
. "$here/../harness/hosts.sh"
atr_init console_rdp

client_logs() {
    local f
    for f in "$tmp"/xfreerdp-*.log; do
        [[ -f $f ]] || continue
        echo "---- $(basename "$f") (last 15 lines)"
        tail -n 15 "$f"
    done
}
mh_console_init "$ctl" "$hostd" "$displayd" client_logs
h1=$(q "SELECT id FROM hosts WHERE name = 'mh1'")
h2=$(q "SELECT id FROM hosts WHERE name = 'mh2'")

mkdir -p "$tmp/shared"
qemu-img create -q -f qcow2 -F qcow2 -b "$guest/disk.qcow2" "$tmp/shared/rdp-1.qcow2"
vm=$(q "INSERT INTO vms (name, host_id, state, desired_power, vcpus, memory_mb, disk_path, boot,
          boot_kernel, boot_initrd, boot_cmdline, nic_mode)
        VALUES ('rdp-1', $h1, 'provisioning', 'running', 1, 256, '$tmp/shared/rdp-1.qcow2',
          'kernel', '$guest/vmlinuz', '$guest/initrd.img', '$(cat "$guest/cmdline")', 'none')
        RETURNING id" | head -n 1)
serial() { echo "$tmp/h$1/run/vms/$vm/serial.log"; }
if wait_for "$(serial 1)" '^ATRIUM-MARK' 240; then ok "guest runs on mh1"; else
    bad "guest did not start on mh1"; exit 1; fi

# ---- an X server for each client, in the client's namespace (X clients
# there reach it by its abstract socket, which belongs to that namespace:
# nothing depends on /tmp/.X11-unix)
declare -A xdisp=()
start_x() { # HOST (once per host)
    local fd pid d
    [[ -z ${xdisp[$1]:-} ]] || return 0
    exec {fd}< <(exec ip netns exec "$(mh_ns "$1")" Xvfb -displayfd 1 -noreset -screen 0 1024x768x24 \
        -nolisten tcp 2>"$tmp/xvfb-$1.log")
    pid=$!
    atr_on_exit "kill $pid 2>/dev/null || true"
    read -r -t 30 -u "$fd" d || { bad "Xvfb did not start in mh$1's namespace"; exit 1; }
    exec {fd}<&-
    xdisp[$1]=$d
}
inx() { # HOST CMD...: CMD in HOST's namespace on its X server
    local h=$1
    shift
    DISPLAY=:${xdisp[$h]} ip netns exec "$(mh_ns "$h")" "$@"
}

declare -A client_pid=()
# client NAME HOST [USER PASSWORD]: xfreerdp in HOST's namespace to that
# host's displayd, with a fresh ticket as its routing token (the .rdp file's
# loadbalanceinfo), or logging in with USER and PASSWORD (a thin client)
client() {
    local t auth
    if [[ -n ${3:-} ]]; then
        auth=(/u:"$3" /p:"$4")
    else
        t=$("$ticket_tool" issue "$dbci" "$vm" 0 rdp 30)
        auth=(/u:atrium /p: "/load-balance-info:Cookie: msts=$t")
    fi
    start_x "$2"
    # a simple command, so $! is xfreerdp itself (ip netns exec execs it)
    DISPLAY=:${xdisp[$2]} ip netns exec "$(mh_ns "$2")" xfreerdp /v:"$(mh_addr "$2")":3389 \
        /cert:ignore /sec:tls /size:720x400 /bpp:32 -wallpaper /t:"atrium-$1" "${auth[@]}" \
        >"$tmp/xfreerdp-$1.log" 2>&1 &
    client_pid[$1]=$!
    atr_on_exit "kill ${client_pid[$1]} 2>/dev/null || true; wait ${client_pid[$1]} 2>/dev/null || true"
}
alive() { kill -0 "${client_pid[$1]}" 2>/dev/null; }
# type_on CLIENT_HOST WIN HOST WORD: type WORD + Return in the client's window
# until the guest on HOST echoes it (a few tries: the first keys may go
# before focus settles)
type_on() {
    local x=$1 win=$2 host=$3 word=$4 try
    for try in 1 2 3 4 5; do
        inx "$x" xdotool windowfocus --sync "$win" 2>/dev/null ||
            inx "$x" xdotool windowfocus "$win" 2>/dev/null || true
        inx "$x" xdotool mousemove --window "$win" 200 200 click 1 2>/dev/null || true
        inx "$x" xdotool type --delay 60 "$word"
        inx "$x" xdotool key Return
        if wait_for "$(serial "$host")" "^ATRIUM-TYPED: .*$word" 8; then return 0; fi
    done
    return 1
}
ms() { echo $((${EPOCHREALTIME/./} / 1000)); }

client one 1
if win1=$(inx 1 timeout 90 xdotool search --sync --name atrium-one | head -n 1) && [[ -n $win1 ]] &&
    wait_for "$(mh_displayd_log 1)" 'msg="rdp viewer joined"' 60; then
    ok "xfreerdp connected to mh1's displayd"
else
    bad "xfreerdp did not connect to mh1's displayd"; exit 1
fi
if type_on 1 "$win1" 1 beforemove; then ok "keys typed in xfreerdp reach the guest on mh1"; else
    bad "keys typed in xfreerdp did not reach the guest on mh1"; exit 1; fi

# ---- the client's picture, sampled: a line "ms" whenever it changed (the
# sampler dies with the window)
(
    prev=""
    while :; do
        h=$(inx 1 xwd -id "$win1" -silent 2>/dev/null | md5sum) || exit 0
        if [[ $h != "$prev" ]]; then
            echo $((${EPOCHREALTIME/./} / 1000)) >>"$tmp/frames"
            prev=$h
        fi
        sleep 0.1
    done
) &
sampler=$!
atr_on_exit "kill $sampler 2>/dev/null || true; wait $sampler 2>/dev/null || true"
sleep 3 # a few seconds of the usual pace, for comparison

max_pause=0
# resumed HOST_ID: how many times mh1's displayd resumed frames from a console on that host
resumed() { grep -c "msg=\"rdp console resumed\" vm=$vm .*host_id=$1 " "$(mh_displayd_log 1)" || true; }
migrate() { # FROM TO WORD
    local from=$1 to=$2 word=$3 t0 t1 rc=0 pause gap n_follow n_resumed deadline to_id
    to_id=$(q "SELECT id FROM hosts WHERE name = 'mh$to'")
    n_follow=$(grep -c "msg=\"rdp console followed the vm\" vm=$vm " "$(mh_displayd_log 1)" || true)
    n_resumed=$(resumed "$to_id")
    t0=$(ms)
    timeout 400 "$ctl" --config "$tmp/ctl.conf" vm migrate rdp-1 --to "mh$to" >"$tmp/out" 2>&1 || rc=$?
    t1=$(ms)
    if ((rc == 0)); then ok "migrate mh$from -> mh$to ($(((t1 - t0) / 1000)) s)"; else
        bad "migrate mh$from -> mh$to: exit $rc"; sed 's/^/    /' "$tmp/out"; return 1; fi
    sed 's/^/    /' "$tmp/out"
    # mh1's displayd took a console where the VM runs now, under the same session
    deadline=$((SECONDS + 30))
    while (($(resumed "$to_id") <= n_resumed)) && ((SECONDS < deadline)); do sleep 0.2; done
    if grep "msg=\"rdp console followed the vm\" vm=$vm " "$(mh_displayd_log 1)" |
        tail -n +$((n_follow + 1)) | grep -q "to_host=$to_id" && (($(resumed "$to_id") > n_resumed)); then
        ok "mh1's displayd followed the VM to mh$to and resumed sending frames"
    else bad "mh1's displayd did not follow the VM to mh$to"; fi
    # the picture keeps changing on the client after the move
    deadline=$((SECONDS + 30))
    while (($(mh_tl_since "$tmp/frames" "$t1") < 3)) && ((SECONDS < deadline)); do sleep 0.2; done
    if (($(mh_tl_since "$tmp/frames" "$t1") >= 3)); then ok "the client's picture keeps changing after the move"; else
        bad "the client's picture did not change after the move to mh$to"; fi
    if alive one; then ok "the same xfreerdp process is still connected"; else
        bad "xfreerdp exited"; return 1; fi
    pause=$(mh_tl_pause "$tmp/frames" "$t0" "$((t1 + 3000))")
    gap=$(grep "msg=\"rdp console resumed\" vm=$vm " "$(mh_displayd_log 1)" | tail -n 1 |
        sed -n 's/.*gap_ms=\([0-9]*\).*/\1/p')
    grep "msg=\"rdp console followed the vm\" vm=$vm " "$(mh_displayd_log 1)" | tail -n +$((n_follow + 1)) |
        sed -n 's/.*\(reason=.*\)/    displayd mh1: followed, \1/p'
    echo "PAUSE mh$from->mh$to: client ${pause} ms between picture changes (usual gap" \
        "$(mh_tl_usual "$tmp/frames" "$t0") ms); displayd gap_ms=${gap:-?}; migration command took $((t1 - t0)) ms"
    ((pause > max_pause)) && max_pause=$pause
    if ((pause > 0 && pause < 15000)); then ok "pause below 15 s (${pause} ms)"; else
        bad "pause of ${pause} ms"; fi
    if type_on 1 "$win1" "$to" "$word"; then ok "keys typed after the move reach the guest on mh$to"; else
        bad "keys typed after the move did not reach the guest on mh$to"; fi
}

migrate 1 2 onmhtwo
if grep -q "msg=\"relay stream served\" vm=$vm kind=vnc" "$(mh_displayd_log 2)"; then
    ok "mh2's displayd serves the console to mh1's through the relay"
else bad "mh2's displayd served no relayed stream"; fi
migrate 2 1 backonmhone

joined=$(grep -c 'msg="rdp viewer joined"' "$(mh_displayd_log 1)" || true)
connected=$(grep -c 'msg="rdp client connected"' "$(mh_displayd_log 1)" || true)
if ((joined == 1 && connected == 1)) && ! grep -qi 'reconnect' "$tmp/xfreerdp-one.log"; then
    ok "the client never reconnected (one RDP connection, one join in mh1's displayd)"
else bad "the client reconnected: $joined joins, $connected connections"; fi
echo "longest pause the client saw: ${max_pause} ms"

# ---- cross-host without migration: a viewer on mh2's displayd, VM on mh1
served0=$(grep -c "msg=\"relay stream served\" vm=$vm kind=vnc" "$(mh_displayd_log 1)" || true)
client two 2
if win2=$(inx 2 timeout 90 xdotool search --sync --name atrium-two | head -n 1) && [[ -n $win2 ]] &&
    wait_for "$(mh_displayd_log 2)" 'msg="rdp viewer joined"' 60; then
    ok "xfreerdp connected to mh2's displayd for the VM on mh1"
else
    bad "xfreerdp did not connect to mh2's displayd"; exit 1
fi
if grep -q "msg=\"console through relay\" vm=$vm kind=vnc host=mh1" "$(mh_displayd_log 2)" &&
    (($(grep -c "msg=\"relay stream served\" vm=$vm kind=vnc" "$(mh_displayd_log 1)" || true) > served0)); then
    ok "mh2's displayd reached the VM's console through mh1's relay"
else bad "mh2's displayd did not use mh1's relay"; fi
if type_on 2 "$win2" 1 fromhosttwo; then ok "keys typed through mh2's displayd reach the guest on mh1"; else
    bad "keys typed through mh2's displayd did not reach the guest on mh1"; fi
alive one && ok "the first client is still connected" || bad "the first client exited"

# ---- a password log-in at mh2's displayd (no ticket): alice's live session
# is on the VM, which runs on mh1; the peer asks the gateway for the console
pw=pw-$RANDOM-$$
alice=$("$ticket_tool" user-add "$dbci" alice "$pw")
pool=$(q "INSERT INTO pools (name) VALUES ('p1') RETURNING id" | head -n 1)
q "INSERT INTO entitlements (pool_id, user_id) VALUES ($pool, $alice)" >/dev/null
session=$(q "INSERT INTO desktop_sessions (user_id, pool_id, vm_id, state)
    VALUES ($alice, $pool, $vm, 'assigned') RETURNING id" | head -n 1)
client three 2 alice "$pw"
if win3=$(inx 2 timeout 90 xdotool search --sync --name atrium-three | head -n 1) && [[ -n $win3 ]] &&
    wait_for "$(mh_displayd_log 2)" "msg=\"rdp log-in\" .*user=alice vm=$vm session=$session" 60; then
    ok "alice logged in with her password at mh2's displayd and got her desktop on mh1"
else
    bad "alice's password log-in at mh2's displayd did not reach her desktop"; exit 1
fi
if type_on 2 "$win3" 1 alicetyped; then ok "alice's keys reach the guest on mh1"; else
    bad "alice's keys did not reach the guest on mh1"; fi

# ---- mh1's displayd dies (kill -9) and comes back: the viewers of mh2's
# displayd, whose console came through mh1's relay, stay connected, and keys
# typed while the relay is gone reach the guest once it is back
n_follow=$(grep -c "msg=\"rdp console followed the vm\" vm=$vm " "$(mh_displayd_log 2)" || true)
kill -KILL "${mh_displayd_pid[1]}"
wait "${mh_displayd_pid[1]}" 2>/dev/null || true
if wait_for "$(mh_displayd_log 2)" 'msg="rdp: vnc console lost"' 30; then
    ok "mh2's displayd saw the relayed console end"
else bad "mh2's displayd did not see the relayed console end"; fi
inx 2 xdotool windowfocus --sync "$win2" 2>/dev/null || true
inx 2 xdotool type --delay 40 whiledown
inx 2 xdotool key Return
LSAN_OPTIONS=suppressions=$here/../display/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS} \
    ASAN_OPTIONS=fast_unwind_on_malloc=0${ASAN_OPTIONS:+:$ASAN_OPTIONS} \
    ip netns exec "$(mh_ns 1)" "$displayd" --config "$(mh_conf 1)" >>"$(mh_displayd_log 1)" 2>&1 &
mh_displayd_pid[1]=$! # mh_displayd_cleanup stops it
deadline=$((SECONDS + 30))
while (($(grep -c "msg=\"rdp console followed the vm\" vm=$vm " "$(mh_displayd_log 2)" || true) < n_follow + 2)) &&
    ((SECONDS < deadline)); do sleep 0.2; done
followed=$(($(grep -c "msg=\"rdp console followed the vm\" vm=$vm " "$(mh_displayd_log 2)" || true) - n_follow))
grep "msg=\"rdp console followed the vm\" vm=$vm " "$(mh_displayd_log 2)" | tail -n +$((n_follow + 1)) |
    sed -n 's/.*\(reason=.*\)/    displayd mh2: followed, \1/p'
if ((followed == 2)) && alive two && alive three; then
    ok "both viewers of mh2's displayd got the console back through mh1's new displayd, still connected"
else bad "mh2's displayd: $followed of 2 viewers followed"; fi
if wait_for "$(serial 1)" '^ATRIUM-TYPED: .*whiledown' 30 &&
    grep -q 'msg="rdp keys typed while following sent"' "$(mh_displayd_log 2)"; then
    ok "keys typed while mh1's relay was gone reached the guest once it was back"
    grep 'msg="rdp keys typed while following sent"' "$(mh_displayd_log 2)" |
        sed -n 's/.*\(events=[0-9]*\).*/    displayd mh2: kept keys sent, \1/p'
else
    bad "keys typed while mh1's relay was gone were lost"
    grep 'rdp keys\|console lost\|followed the vm' "$(mh_displayd_log 2)" | tail -n 6 | sed 's/^/    /'
    grep 'ATRIUM-TYPED' "$(serial 1)" | tail -n 3 | sed 's/^/    serial: /'
fi
if timeout 30 tail --pid="${client_pid[one]}" -f /dev/null; then
    ok "the viewer of the killed displayd was disconnected (xfreerdp exited)"
else bad "the viewer of the killed displayd still runs"; fi
wait "${client_pid[one]}" 2>/dev/null || true

# ---- the VM stops (not a move): every viewer's console ends, displayd
# looks for the VM for a bounded time (10 s), then closes the viewers; the
# clients are told (they exit) and nothing hangs
t0=$(ms)
a vm stop rdp-1 >/dev/null
if wait_for "$(serial 1)" '^ATRIUM-POWEROFF' 60; then ok "the guest powered off"; else
    bad "the guest did not power off"; fi
for i in 2; do
    n_want=2 # two and three (one went with mh1's first displayd)
    deadline=$((SECONDS + 45))
    while (($(grep -c 'msg="rdp viewer left"' "$(mh_displayd_log "$i")" || true) < n_want)) &&
        ((SECONDS < deadline)); do sleep 0.2; done
    gone=$(grep -c "msg=\"rdp: vnc console gone\" vm=$vm " "$(mh_displayd_log "$i")" || true)
    left=$(grep -c 'msg="rdp viewer left"' "$(mh_displayd_log "$i")" || true)
    looked=$(grep "msg=\"rdp: vnc console gone\" vm=$vm " "$(mh_displayd_log "$i")" |
        sed -n 's/.*looked_ms=\([0-9]*\).*/\1/p' | sort -n | tail -n 1)
    if ((gone == n_want && left == n_want)) && ((${looked:-0} >= 10000 && ${looked:-0} < 20000)); then
        ok "mh$i's displayd looked for the stopped VM ${looked} ms, then closed its $n_want viewer(s)"
    else bad "mh$i's displayd: $gone consoles given up, $left viewers left (looked ${looked:-?} ms)"; fi
done
for c in two three; do
    if timeout 30 tail --pid="${client_pid[$c]}" -f /dev/null; then :; else
        bad "xfreerdp $c still runs after its console was given up"; fi
    wait "${client_pid[$c]}" 2>/dev/null || true
done
ok "every xfreerdp exited $((($(ms) - t0) / 1000)) s after the stop"
mh_console_done

atr_summary
