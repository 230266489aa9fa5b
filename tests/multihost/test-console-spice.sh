#!/bin/bash
# SPICE consoles across hosts and live migrations, on two test hosts
# (network namespaces, each with its own hostd and displayd;
# tests/harness/hosts.sh).
#
# A real remote-viewer (virt-viewer) under Xvfb, inside mh1's namespace,
# opens a .vv whose proxy is mh1's displayd, for a VM that runs on mh2: each
# SPICE channel goes through mh1's displayd and mh2's relay, where mh2's
# displayd hands it to the VM's QEMU (mh1 has no socket of that VM).  Keys
# typed in the viewer reach the guest (it echoes each line on its serial
# port) and the viewer shows the guest's text.  Then the VM migrates
# mh2 -> mh1 (to the viewer's own host) -> mh2 (away again) while the viewer
# stays connected: SPICE's own migration (client_migrate_info from hostd)
# moves the client's channels to the destination through the same proxy; the
# test checks that the viewer never exited, that mh1's displayd admitted the
# follow channels into the same viewer (no second log-in, the session stays
# connected), and that keys typed after each move reach the guest on its new
# host.  It prints how long after each migration command returned the first
# typed line came back.  Also: a follow token is refused from an address
# without a live viewer, and a spice relay ticket for a VM not on (or
# arriving at) the serving host is refused.
set -euo pipefail
hostd=${1:?usage: test-console-spice.sh HOSTD DISPLAYD ATRIUMCTL TICKET-TOOL}
displayd=${2:?}
ctl=${3:?}
ticket_tool=${4:?}
guest=${ATRIUM_GUEST_DIR:?the test guest (fixture guest)}
here=$(dirname "$0")
. "$here/../harness/lib.sh"
. "$here/../harness/hosts.sh"
atr_init console_spice

client_logs() {
    echo "---- remote-viewer (migration lines)"
    grep -i 'migrat\|switch\|error' "$tmp/viewer.log" 2>/dev/null | tail -n 40 || true
}
mh_console_init "$ctl" "$hostd" "$displayd" client_logs

h1=$(q "SELECT id FROM hosts WHERE name = 'mh1'")
h2=$(q "SELECT id FROM hosts WHERE name = 'mh2'")
mkdir -p "$tmp/shared"
qemu-img create -q -f qcow2 -F qcow2 -b "$guest/disk.qcow2" "$tmp/shared/spc-1.qcow2"
vm=$(q "INSERT INTO vms (name, host_id, state, desired_power, vcpus, memory_mb, disk_path, boot,
          boot_kernel, boot_initrd, boot_cmdline, nic_mode)
        VALUES ('spc-1', $h2, 'provisioning', 'running',
          1, 256, '$tmp/shared/spc-1.qcow2', 'kernel', '$guest/vmlinuz', '$guest/initrd.img',
          '$(cat "$guest/cmdline")', 'none')
        RETURNING id" | head -n 1)
serial() { echo "$tmp/h$1/run/vms/$vm/serial.log"; }
if wait_for "$(serial 2)" 'ATRIUM-BOOT-OK' 240; then ok "guest runs on mh2"; else
    bad "guest did not start on mh2"; exit 1; fi
# a desktop session of someone, as the broker would have it, for the ticket
user=$(q "INSERT INTO users (username, display_name, role) VALUES ('spc', 'spc', 'user') RETURNING id" | head -n 1)
session=$(q "INSERT INTO desktop_sessions (user_id, vm_id, state) VALUES ($user, $vm, 'assigned')
    RETURNING id" | head -n 1)

# ---- X and the viewer, in mh1's namespace
in1() { ip netns exec "$(mh_ns 1)" "$@"; }
exec {xfd}< <(exec ip netns exec "$(mh_ns 1)" Xvfb -displayfd 1 -noreset -screen 0 1024x768x24 -nolisten tcp \
    2>"$tmp/xvfb.log")
xvfb_pid=$!
atr_on_exit "kill $xvfb_pid 2>/dev/null || true; wait $xvfb_pid 2>/dev/null || true"
read -r -t 30 -u "$xfd" disp || { bad "Xvfb did not start"; exit 1; }
export DISPLAY=:$disp

t=$("$ticket_tool" issue "$dbci" "$vm" "$session" spice 30)
cat >"$tmp/console.vv" <<VV
[virt-viewer]
type=spice
host=$t
port=5900
password=$t
proxy=http://$(mh_addr 1):3128
title=atrium-spice-mh
delete-this-file=0
fullscreen=0
VV
ip netns exec "$(mh_ns 1)" remote-viewer --debug --spice-debug "$tmp/console.vv" >"$tmp/viewer.log" 2>&1 &
viewer=$!
atr_on_exit "kill $viewer 2>/dev/null || true; wait $viewer 2>/dev/null || true"
win=$(in1 timeout 90 xdotool search --sync --name atrium-spice-mh | head -n1) || true
if [[ -n $win ]] && wait_for "$(mh_displayd_log 1)" 'msg="spice viewer joined"' 60; then
    ok "remote-viewer connected through mh1's displayd"
else
    bad "remote-viewer never showed up"; tail -n 30 "$tmp/viewer.log"; exit 1
fi
if grep -q "msg=\"relay stream served\" vm=$vm kind=spice" "$(mh_displayd_log 2)"; then
    ok "mh2's displayd serves the SPICE channels to mh1's through the relay"
else bad "no SPICE channel went through mh2's relay"; fi
[[ ! -e $tmp/h1/run/vms/$vm/spice.sock ]] && ok "mh1 has no SPICE socket of the VM (only the relay reaches it)" ||
    bad "mh1 has a SPICE socket of the VM"

ms() { date +%s%3N; }
# typed_on HOST WORD: type WORD + Return into the viewer until the guest on HOST echoes it
typed_on() {
    local host=$1 word=$2 i
    in1 xdotool windowfocus --sync "$win" 2>/dev/null || in1 xdotool windowfocus "$win" || true
    for i in $(seq 1 15); do
        in1 xdotool mousemove --window "$win" 200 200 click 1
        in1 xdotool type --delay 20 "$word$i"
        in1 xdotool key Return
        if wait_for "$(serial "$host")" "ATRIUM-TYPED: .*$word" 3; then
            ok "keys typed in remote-viewer reach the guest on mh$host ($word)"
            return 0
        fi
    done
    bad "keys typed in remote-viewer did not reach the guest on mh$host ($word)"
    return 1
}
typed_on 2 crosshost

# the viewer's window shows the guest's text (non-black pixels)
lit() { convert "$1" -colorspace gray -threshold 25% -format '%[fx:int(mean*w*h)]' info:; }
in1 xwd -root -silent | convert xwd:- "$tmp/viewer.png"
n=$(lit "$tmp/viewer.png")
((n > 500)) && ok "remote-viewer shows the guest's screen ($n lit pixels)" ||
    bad "remote-viewer shows no text ($n lit pixels)"

# ---- live migrations under the connected viewer
migrate() { # FROM TO
    local from=$1 to=$2 t0 t1 t2 rc=0 before
    before=$(grep -c 'msg="spice viewer follows the vm"' "$(mh_displayd_log 1)" || true)
    t0=$(ms)
    timeout 400 "$ctl" --config "$tmp/ctl.conf" vm migrate spc-1 --to "mh$to" >"$tmp/out" 2>&1 || rc=$?
    t1=$(ms)
    if ((rc == 0)); then ok "migrate mh$from -> mh$to ($(((t1 - t0) / 1000)) s)"; else
        bad "migrate mh$from -> mh$to: exit $rc"; sed 's/^/    /' "$tmp/out"; return 1; fi
    sed 's/^/    /' "$tmp/out"
    local after
    after=$(grep -c 'msg="spice viewer follows the vm"' "$(mh_displayd_log 1)" || true)
    if ((after > before)); then
        ok "mh1's displayd took $((after - before)) channel(s) for mh$to into the same viewer"
    else bad "no SPICE channel followed the VM to mh$to"; fi
    kill -0 "$viewer" 2>/dev/null && ok "remote-viewer still runs" || bad "remote-viewer exited"
    typed_on "$to" "moved$from$to" || true
    t2=$(ms)
    echo "FOLLOW mh$from->mh$to: migration command $((t1 - t0)) ms; first typed line echoed" \
        "by the guest on mh$to $((t2 - t1)) ms after it returned"
}
migrate 2 1
migrate 1 2
# SPICE's semi-seamless path: the client had all its channels on the
# destination before the copy ended and switched to them (MIGRATE_END); it
# did not have to reconnect (SWITCH_HOST, the fallback when it is late)
n_ok=$(grep -c 'migration (semi-seamless): connections all ok' "$tmp/viewer.log" || true)
n_switch=$(grep -c 'migration message: migrate-switch-host' "$tmp/viewer.log" || true)
echo "viewer: $n_ok migrations with all channels connected ahead, $n_switch host switches"
((n_ok == 2 && n_switch == 0)) && ok "remote-viewer moved its channels ahead both times (no reconnect)" ||
    bad "remote-viewer: $n_ok migrations connected ahead, $n_switch reconnects"
truth "one viewer of the session throughout (still connected)" \
    "SELECT state = 'connected' FROM desktop_sessions WHERE id = $session"
if ! grep -q 'msg="spice viewer left"' "$(mh_displayd_log 1)"; then
    ok "mh1's displayd never saw the viewer leave during the moves"
else bad "the viewer left mh1's displayd during the moves"; fi

# ---- doors that must stay shut
# a follow token of our own, written as hostd writes them, asked for from
# mh2's namespace (no viewer of the VM there): 403, nothing opened
ft=$(printf '%032x' 4242)
q "INSERT INTO display_spice_follow (token_hash, vm_id, to_host, expires_at)
   VALUES (sha256('$ft'::bytea), $vm, $h2, now() + interval '60 s')" >/dev/null
st=$(ip netns exec "$(mh_ns 2)" timeout 10 curl -s -o /dev/null -w '%{http_connect}' -p \
    -x "http://$(mh_addr 1):3128" "http://$ft:5900/" || true)
[[ $st == 403 ]] && ok "a follow token from an address without a live viewer is refused (403)" ||
    bad "follow token from elsewhere got '$st'"
# a spice relay ticket for the VM on mh1's relay: the VM is on mh2 and not arriving on mh1
rt=$(printf '%032x' 4343)
q "INSERT INTO display_relay_tickets (ticket_hash, vm_id, host_id, kind, expires_at)
   VALUES (sha256('$rt'::bytea), $vm, $h1, 'spice', now() + interval '15 s')" >/dev/null
out=$(printf 'ATRIUM-RELAY 1 %s\n' "$rt" | ip netns exec "$(mh_ns 2)" timeout 10 openssl s_client \
    -quiet -connect "$(mh_addr 1):5898" 2>/dev/null | head -n 1 || true)
[[ $out == "ERR ticket refused" ]] && ok "mh1's relay refuses a spice stream of a VM not on it" ||
    bad "relay answered '$out'"

# the viewer quits: the session becomes disconnected
kill "$viewer" 2>/dev/null || true
wait "$viewer" 2>/dev/null || true
if wait_for "$(mh_displayd_log 1)" 'msg="spice viewer left"' 20; then ok "the viewer left when it quit"; else
    bad "the viewer never left"; fi
until_sql 20 "SELECT state = 'disconnected' FROM desktop_sessions WHERE id = $session" &&
    ok "session disconnected" || bad "session not disconnected"

mh_console_done

atr_summary
