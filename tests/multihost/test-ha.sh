#!/bin/bash
# HA restart with fencing on three test hosts (network namespaces, each with
# its own atrium-hostd reaching PostgreSQL over TCP through the test network;
# tests/harness/hosts.sh), with atrium-poold acting.
#
#   1. mh1's link is cut (its veth on the switch goes down: no database,
#      no peers).  Its HA VMs boot on healthy hosts from their shared disks
#      once mh1 is fenced; its plain VM is not moved.  mh1 comes back: it
#      runs no copy of a VM that moved, and boots its plain VM again.
#   2. kill -9 of the hostd that runs an HA VM, not restarted: the same.
#   3. kill -9 of a hostd restarted within the fence deadline: nothing is
#      fenced, the VM keeps its QEMU (re-adopted).  2 and 3 run at once, on
#      the two hosts the HA VMs moved to in 1 (one guest boot less).
#
# Proofs, for every failover: the old QEMU's exit is observed (a watcher
# polls it every 50 ms, zombies count as dead) before the new QEMU's start
# time (/proc/PID/stat), and a sampler that looks at every host's QEMUs every
# 0.1 s never sees two live QEMUs for one VM row.  The measured times (cut
# to fence, to the row's move, to the guest counting on its new host) are
# printed with the promise: fence deadline + margin + one poold pass.
set -euo pipefail
hostd=${1:?usage: test-ha.sh ATRIUM-HOSTD ATRIUM-POOLD ATRIUMCTL}
poold=${2:?usage: test-ha.sh ATRIUM-HOSTD ATRIUM-POOLD ATRIUMCTL}
ctl=${3:?usage: test-ha.sh ATRIUM-HOSTD ATRIUM-POOLD ATRIUMCTL}
guest=${ATRIUM_GUEST_DIR:?the test guest (fixture guest)}
here=$(dirname "$0")
. "$here/../harness/lib.sh"
. "$here/../harness/hosts.sh"
atr_init ha

deadline_s=10 # [hostd] fence_deadline
margin_s=4    # [poold] fence_margin
pass_s=2      # poold's pass interval
promise=$((deadline_s + margin_s + pass_s))

mh_ctl "$ctl"
mh_db_tcp=1
mh_hostd_extra="fence_deadline = $deadline_s"
mh_init 3 "$hostd"
ok "three hosts up, database over TCP through the test network ($(mh_db_addr):5432)"

on_fail_logs() {
    mh_hostd_tails 30
    echo "---- poold (last 30 lines)"
    tail -n 30 "$tmp/poold.log" 2>/dev/null || true
}
atr_on_exit '((atr_fails == 0)) || on_fail_logs'

# poold acts from the machine itself (the unix socket): it is never cut off.
printf '[db]\nurl = %s dbname=%s\n[paths]\ndata_dir = %s/pdata\n[poold]\nhost_stale = 5\nfence_margin = %d\n[log]\nlevel = info\n' \
    "$server" "$db" "$tmp" "$margin_s" >"$tmp/poold.conf"
"$poold" --config "$tmp/poold.conf" >"$tmp/poold.log" 2>&1 &
poold_pid=$!
atr_on_exit "kill $poold_pid 2>/dev/null || true; wait $poold_pid 2>/dev/null || true"
wait_for "$tmp/poold.log" 'msg="acting as pool manager"' 30 && ok "poold acts" || bad "poold does not act"

for i in 1 2 3; do
    [[ -n $(mh_guard_pid "$i") ]] && ok "mh$i has a fence guard" || bad "mh$i has no fence guard"
done
# A guard killed -9 is started again by its hostd at the next heartbeat.
g=$(mh_guard_pid 2)
kill -KILL "$g"
n=0
while [[ -z $(mh_guard_pid 2) || $(mh_guard_pid 2) == "$g" ]] && ((n < 300)); do sleep 0.1; n=$((n + 1)); done
[[ -n $(mh_guard_pid 2) && $(mh_guard_pid 2) != "$g" ]] && ok "a fence guard killed -9 is replaced (after $((n / 10)) s)" ||
    { bad "mh2's fence guard was not replaced (killed $g; fence.pid says $(cat "$tmp/h2/run/fence.pid" 2>/dev/null))"
      ps -eo pid,stat,lstart,args | grep -F -- "--fence-guard $tmp/h2/run" | grep -v grep || true
      grep -E 'guard|fence' "$(mh_hostd_log 2)" | tail -n 10; }
truth "hosts recorded their fence deadline" "SELECT bool_and(fence_deadline_s = $deadline_s)
    FROM hosts WHERE name LIKE 'mh_'"

# Shared storage: the VMs' overlays are in one directory every host opens.
mkdir -p "$tmp/shared"
newvm() { # NAME HOST
    qemu-img create -q -f qcow2 -F qcow2 -b "$guest/disk.qcow2" "$tmp/shared/$1.qcow2"
    q "INSERT INTO vms (name, host_id, state, desired_power, vcpus, memory_mb, disk_path, boot,
          boot_kernel, boot_initrd, boot_cmdline, nic_mode)
        VALUES ('$1', (SELECT id FROM hosts WHERE name = '$2'), 'provisioning', 'running',
          1, 256, '$tmp/shared/$1.qcow2', 'kernel', '$guest/vmlinuz', '$guest/initrd.img',
          '$(cat "$guest/cmdline") atrium.count', 'none')
        RETURNING id" | head -n 1
}
ha1=$(newvm ha-1 mh1)
ha2=$(newvm ha-2 mh1)
plain=$(newvm plain-1 mh1)

check "vm set --ha on" 0 a vm set ha-1 --ha on
expect "ha set" '^vm ha-1: ha on$'
check "vm set --ha on (second)" 0 a vm set ha-2 --ha on
check "vm set --ha with a bad value" 2 a vm set ha-1 --ha maybe
one_line "bad --ha value"
check "vm set of an unknown VM" 1 a vm set nosuchvm --ha on
one_line "unknown VM"
check "vm set without --ha" 2 a vm set ha-1
check "vm show says ha" 0 a vm show ha-1
expect "show ha on" '^ha: +on'
truth "plain-1 is not HA" "SELECT NOT ha FROM vms WHERE id = $plain"

serial() { echo "$tmp/h$1/run/vms/$2/serial.log"; } # HOST VM
counts() { tr -d '\000' <"$1" 2>/dev/null | awk '/^ATRIUM-COUNT: [0-9]+\r$/ { sub(/\r$/, ""); print $2 }'; }
counting() { [[ -n $(counts "$1" | tail -n 1) ]]; }
host_of() { q "SELECT h.name FROM vms v JOIN hosts h ON h.id = v.host_id WHERE v.id = $1"; }
hostnum() { local n; n=$(host_of "$1"); echo "${n#mh}"; }


wait_running_on() { # VM HOST SECONDS: the VM's row names HOST, a QEMU runs there, the guest counts
    local deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        if [[ $(host_of "$1") == "mh$2" && -n $(mh_qemu_of "$2" "$1") ]] && counting "$(serial "$2" "$1")"; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

for vm in "$ha1" "$ha2" "$plain"; do
    if wait_running_on "$vm" 1 240; then ok "vm $vm counts on mh1"; else
        bad "vm $vm did not start counting on mh1"; exit 1; fi
done

# Every 0.1 s: the live QEMUs of each VM on every host.  Two at once for
# one VM is the one thing that must never be seen.
mh_sampler_start 0.1 3 "$ha1" "$ha2" "$plain"

# Watch one process until it is gone (or a zombie); write when, in seconds since boot.
watch_exit() { # PID FILE
    (
        while [[ -r /proc/$1/stat ]] &&
            [[ ! $(sed -n 's/^[0-9]* (.*) \([A-Z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null) =~ ^[ZX]?$ ]]; do
            sleep 0.05
        done
        mh_uptime_s >"$2"
    ) &
    watchers+=($!)
}
watchers=()
atr_on_exit 'for w in "${watchers[@]}"; do kill "$w" 2>/dev/null || true; done'

# When VM $1 (that ran on host $2) first counts on another host with a live
# QEMU there: seconds since boot into file $3.  Runs in the background from
# the failure on, so several VMs' times are measured independently.
watch_counting() { # VM FROM FILE
    (
        local i
        while :; do
            for i in 1 2 3; do
                ((i == $2)) && continue
                if [[ -n $(mh_qemu_of "$i" "$1") ]] && counting "$(serial "$i" "$1")"; then
                    mh_uptime_s >"$3"
                    exit 0
                fi
            done
            sleep 0.2
        done
    ) &
    watchers+=($!)
}

# A failover of VM $1 away from host $2 that failed at $3 (seconds since
# boot; $6 the same instant on the database's clock): the VM runs elsewhere,
# and its old QEMU $4 was seen dead before the new one started.
failover() {
    local vm=$1 from=$2 t0=$3 old=$4 what=$5 t0db=$6 to new t_move t_run dead start
    local deadline=$((SECONDS + 180))
    while ((SECONDS < deadline)); do
        to=$(hostnum "$vm")
        [[ $to != "$from" ]] && break
        sleep 0.2
    done
    to=$(hostnum "$vm")
    if [[ $to == "$from" ]]; then bad "$what: vm $vm never left mh$from"; return 1; fi
    # The move's own time, from its audit row (the database's clock).
    t_move=$(q "SELECT round((extract(epoch from at) - $t0db)::numeric, 1) FROM audit_log
        WHERE action = 'vm.ha_restart' AND target_id = '$vm' ORDER BY id DESC LIMIT 1")
    if wait_running_on "$vm" "$to" 180; then ok "$what: vm $vm runs on mh$to"; else
        bad "$what: vm $vm does not run on mh$to"; return 1; fi
    local n=0
    while [[ ! -s $tmp/counting.$vm.$from ]] && ((n < 100)); do sleep 0.1; n=$((n + 1)); done
    t_run=$(awk -v a="$(cat "$tmp/counting.$vm.$from" 2>/dev/null)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')
    new=$(mh_qemu_of "$to" "$vm")
    start=$(mh_started_at "$new") || start=""
    n=0
    while [[ ! -s $tmp/dead.$old ]] && ((n < 100)); do sleep 0.1; n=$((n + 1)); done
    dead=$(cat "$tmp/dead.$old" 2>/dev/null || echo "")
    echo "HA $what: vm $vm mh$from -> mh$to: row moved after $t_move s, guest counting after $t_run s" \
        "(promise: moved within $promise s of the last heartbeat); old QEMU $old seen dead at" \
        "+$(awk -v a="$dead" -v b="$t0" 'BEGIN { printf "%.1f", a - b }') s, new QEMU $new started at" \
        "+$(awk -v a="$start" -v b="$t0" 'BEGIN { printf "%.1f", a - b }') s"
    if [[ -n $dead ]] && awk -v d="$dead" -v s="$start" 'BEGIN { exit !(d < s) }'; then
        ok "$what: old QEMU of vm $vm was dead before the new one started"
    else
        bad "$what: old QEMU of vm $vm not seen dead before the new one started (dead '$dead', new started $start)"
    fi
    awk -v m="$t_move" -v p="$((promise + 4))" 'BEGIN { exit !(m <= p) }' &&
        ok "$what: vm $vm moved within the promise (+4 s of slack for a loaded machine)" ||
        bad "$what: vm $vm moved after $t_move s, promise $promise s"
}

# ---- 1. mh1's link cut
declare -A old
for vm in "$ha1" "$ha2" "$plain"; do
    old[$vm]=$(mh_qemu_of 1 "$vm")
    watch_exit "${old[$vm]}" "$tmp/dead.${old[$vm]}"
done
t0=$(mh_uptime_s)
t0db=$(q "SELECT extract(epoch from clock_timestamp())")
ip -n "$(mh_sw)" link set h1 down
echo "cut mh1's link at +0 s"
watch_counting "$ha1" 1 "$tmp/counting.$ha1.1"
watch_counting "$ha2" 1 "$tmp/counting.$ha2.1"
# While mh1 is silent but not fenced yet, the schema refuses to move its VMs.
until_sql 30 "SELECT heartbeat_at < now() - interval '$((deadline_s / 2 + 1)) seconds' FROM hosts
    WHERE name = 'mh1'" || true
if [[ $(q "SELECT state FROM hosts WHERE name = 'mh1'") != fenced ]]; then
    if q "UPDATE vms SET host_id = (SELECT id FROM hosts WHERE name = 'mh2') WHERE id = $plain" \
        >"$tmp/out" 2>&1; then
        bad "a VM was moved off the silent, unfenced mh1"
    else
        expect "moving a VM off a silent, unfenced host is refused" 'cannot leave host mh1: it stopped heart-beating and is not fenced'
    fi
else
    echo "(mh1 was fenced before the refusal could be tried)"
fi
failover "$ha1" 1 "$t0" "${old[$ha1]}" "link cut" "$t0db"
failover "$ha2" 1 "$t0" "${old[$ha2]}" "link cut" "$t0db"
truth "mh1 is fenced" "SELECT state = 'fenced' AND fenced_at IS NOT NULL FROM hosts WHERE name = 'mh1'"
gap=$(q "SELECT round(extract(epoch from fenced_at - heartbeat_at)::numeric, 1) FROM hosts WHERE name = 'mh1'")
echo "mh1 fenced $gap s after its last heartbeat (deadline $deadline_s + margin $margin_s)"
awk -v g="$gap" -v m="$((deadline_s + margin_s))" 'BEGIN { exit !(g >= m) }' &&
    ok "fenced no sooner than deadline + margin after the last heartbeat" ||
    bad "fenced too early: $gap s after the last heartbeat"
truth "the fence is audited" "SELECT count(*) = 1 FROM audit_log WHERE action = 'host.fence'
    AND detail->>'host' = 'mh1'"
truth "both restarts audited" "SELECT count(*) = 2 FROM audit_log WHERE action = 'vm.ha_restart'"
truth "plain-1 was not moved" "SELECT host_id = (SELECT id FROM hosts WHERE name = 'mh1') FROM vms
    WHERE id = $plain"
n=0
while [[ -n $(mh_qemu_of 1 "$plain") ]] && ((n < 50)); do sleep 0.1; n=$((n + 1)); done
[[ -z $(mh_qemu_of 1 "$plain") ]] && ok "plain-1's QEMU on the cut-off mh1 was killed too" ||
    bad "plain-1 still runs on the cut-off mh1"
grep -q 'msg="fence deadline passed without a database heartbeat; VMs killed"' "$(mh_hostd_log 1)" ||
    grep -q 'msg="no database heartbeat for the fence deadline; VMs killed"' "$(mh_hostd_log 1)" &&
    ok "mh1 says it killed its VMs at the deadline" || bad "mh1 did not log the fence kill"

# mh1 comes back: online again, no copy of the moved VMs, plain-1 boots there again.
ip -n "$(mh_sw)" link set h1 up
until_sql 90 "SELECT state = 'online' AND heartbeat_at > now() - interval '5 seconds'
    FROM hosts WHERE name = 'mh1'" && ok "mh1 online again after its link is back" ||
    bad "mh1 did not come back"
if wait_running_on "$plain" 1 180; then ok "plain-1 boots again on mh1"; else
    bad "plain-1 did not boot again on mh1"; fi
for vm in "$ha1" "$ha2"; do
    [[ -z $(mh_qemu_of 1 "$vm") ]] && ok "mh1 runs no copy of moved vm $vm" ||
        bad "mh1 runs vm $vm that moved away"
done
grep -q 'had been fenced' "$(mh_hostd_log 1)" && ok "mh1's hostd learnt it had been fenced" ||
    bad "mh1's hostd did not notice the fence"
# The guard left once nothing was left to kill; the hostd that has a lease again starts one.
grep -q 'msg="fence guard stops"' "$(mh_hostd_log 1)" && ok "mh1's guard left after killing everything" ||
    bad "mh1's guard did not leave"
[[ -n $(mh_guard_pid 1) ]] && ok "mh1 has a fence guard again" || bad "mh1 has no fence guard after coming back"

# ---- 2 and 3 at once (each needs a guest booted; overlapping them saves a
# boot): kill -9 of the hostd running ha-1 (host A), not restarted; and
# kill -9 of the hostd running ha-2 (host B), started again 2 s later.
A=$(hostnum "$ha1")
B=$(hostnum "$ha2")
if [[ $A == "$B" ]]; then bad "ha-1 and ha-2 were placed on one host (mh$A)"; atr_summary; exit 1; fi
old1=$(mh_qemu_of "$A" "$ha1")
pid2=$(mh_qemu_of "$B" "$ha2")
guard=$(mh_guard_pid "$B")
fenced_at_before=$(q "SELECT coalesce(fenced_at::text, 'never') FROM hosts WHERE name = 'mh$B'")
watch_exit "$old1" "$tmp/dead.$old1"
t0=$(mh_uptime_s)
t0db=$(q "SELECT extract(epoch from clock_timestamp())")
mh_kill_hostd "$A"
watch_counting "$ha1" "$A" "$tmp/counting.$ha1.$A"
mh_kill_hostd "$B"
echo "killed mh$A's and mh$B's hostd at +0 s"
[[ -n $(mh_qemu_of "$A" "$ha1") ]] && ok "ha-1 outlives its hostd at first" || bad "ha-1 died with its hostd"
sleep 2
mh_start_hostd "$B"
echo "started mh$B's hostd again at +2 s"
failover "$ha1" "$A" "$t0" "$old1" "hostd killed" "$t0db"
truth "mh$A is fenced" "SELECT state = 'fenced' FROM hosts WHERE name = 'mh$A'"
[[ -z $(mh_guard_pid "$A") ]] && ok "mh$A's guard (no hostd, no VM left) is gone" ||
    bad "mh$A's guard still runs with nothing to guard"

# Past the deadline + margin + a pass since the kill: a fence of B would have happened by now.
while awk -v a="$(mh_uptime_s)" -v b="$t0" -v p="$((promise + 2))" 'BEGIN { exit !(a - b < p) }'; do
    sleep 0.5
done
truth "mh$B (hostd restarted in time) is not fenced" "SELECT state = 'online'
    AND coalesce(fenced_at::text, 'never') = '$fenced_at_before' FROM hosts WHERE name = 'mh$B'"
truth "only mh$A was fenced" "SELECT count(*) = 1 FROM audit_log WHERE action = 'host.fence'
    AND detail->>'host' <> 'mh1'"
[[ $(mh_qemu_of "$B" "$ha2") == "$pid2" ]] && ok "ha-2 kept its QEMU $pid2 on mh$B" ||
    bad "ha-2's QEMU changed (was $pid2, now '$(mh_qemu_of "$B" "$ha2")')"
[[ $(host_of "$ha2") == "mh$B" ]] && ok "ha-2's row still on mh$B" || bad "ha-2 moved"
grep -q "msg=\"vm re-attached\" vm=$ha2 " "$(mh_hostd_log "$B")" && ok "the new hostd re-adopted ha-2" ||
    bad "ha-2 not re-adopted"
[[ $(mh_guard_pid "$B") == "$guard" ]] && ok "the fence guard of mh$B lived through the restart" ||
    bad "mh$B's fence guard changed"
c0=$(counts "$(serial "$B" "$ha2")" | tail -n 1)
sleep 2
c1=$(counts "$(serial "$B" "$ha2")" | tail -n 1)
((c1 > c0)) && ok "ha-2's guest keeps counting ($c0 -> $c1)" || bad "ha-2's guest stopped ($c0 -> $c1)"

mh_sampler_check

atr_summary
