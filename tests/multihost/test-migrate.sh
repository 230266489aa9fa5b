#!/bin/bash
# Live migration with shared storage between two test hosts (network
# namespaces, each with its own atrium-hostd; tests/harness/hosts.sh).
#
# A guest that prints a counter on its serial port every 0.1 s moves
# mh1 -> mh2 -> mh1.  Each host's QEMU writes its own serial log, so the
# counter seen on the source must end below where it starts on the
# destination: if both copies of the guest had run at once, the numbers
# would overlap.  Also: the downtime QEMU measured is printed, no QEMU is
# left on the host the VM left, the QEMUs run in their host's namespace,
# the same without shared storage (the disk mirrored over NBD into the
# destination's data dir, identical afterwards by qemu-img compare),
# a cancelled migration leaves the VM running on its source, maintenance
# mode moves the VM off its host, a busy guest (rewriting 64 MiB of its RAM
# in a loop) moves both ways over a copy capped below its dirty rate, which
# only auto-converge's throttle lets end (the throttle and the dirty rate
# QEMU saw are in the task's result), and the commands' errors are one clear
# line with a non-zero exit.
set -euo pipefail
# The busy guest's copy: capped below how fast it dirties RAM (see below).
BUSY_BW=${ATRIUM_MIGRATE_BUSY_BW:-32}
hostd=${1:?usage: test-migrate.sh ATRIUM-HOSTD ATRIUMCTL}
ctl=${2:?usage: test-migrate.sh ATRIUM-HOSTD ATRIUMCTL}
guest=${ATRIUM_GUEST_DIR:?the test guest (fixture guest)}
here=$(dirname "$0")
. "$here/../harness/lib.sh"
. "$here/../harness/hosts.sh"
atr_init mig

mh_ctl "$ctl"
mh_init 2 "$hostd"
ok "two hosts up in their namespaces ($(mh_ns 1) $(mh_addr 1), $(mh_ns 2) $(mh_addr 2))"

atr_on_exit '((atr_fails == 0)) || mh_hostd_tails 40'

# Shared storage: one overlay both hosts open by the same path.
mkdir -p "$tmp/shared"
qemu-img create -q -f qcow2 -F qcow2 -b "$guest/disk.qcow2" "$tmp/shared/mig-1.qcow2"
vm=$(q "INSERT INTO vms (name, host_id, state, desired_power, vcpus, memory_mb, disk_path, boot,
          boot_kernel, boot_initrd, boot_cmdline, nic_mode)
        VALUES ('mig-1', (SELECT id FROM hosts WHERE name = 'mh1'), 'provisioning', 'running',
          1, 256, '$tmp/shared/mig-1.qcow2', 'kernel', '$guest/vmlinuz', '$guest/initrd.img',
          '$(cat "$guest/cmdline") atrium.count', 'none')
        RETURNING id" | head -n 1)
name=mig-1
serial() { echo "$tmp/h$1/run/vms/$vm/serial.log"; }

# Complete counter lines only (a line still being written has no \r\n yet).
counts() { tr -d '\000' <"$1" | awk '/^ATRIUM-COUNT: [0-9]+\r$/ { sub(/\r$/, ""); print $2 }'; }
last_count() { counts "$1" | tail -n 1; }
wait_count() { # FILE N SECONDS: the counter in FILE reaches N
    local deadline=$((SECONDS + $3)) c
    while ((SECONDS < deadline)); do
        c=$(last_count "$1" 2>/dev/null || true)
        [[ -n $c ]] && ((c >= $2)) && return 0
        sleep 0.2
    done
    return 1
}
increasing() { counts "$1" | awk 'NR > 1 && $1 <= prev { bad = 1 } { prev = $1 } END { exit bad }'; }

if wait_count "$(serial 1)" 20 240; then ok "guest counts on mh1"; else
    bad "guest did not start counting on mh1"; tail -n 5 "$(serial 1)" 2>/dev/null; exit 1; fi
until_sql 60 "SELECT actual_power = 'running' FROM vms WHERE id = $vm" &&
    ok "row says running" || bad "row never said running"

# Sample both hosts' QEMUs while the migrations run: pid and namespace.
sampler() {
    local i pid have
    while :; do
        for i in 1 2; do
            for pid in $(mh_qemu_pids "$i"); do
                if mh_in_ns "$i" "$pid"; then
                    echo "$SECONDS h$i $pid ns-ok"
                else
                    # A process that is gone (or a zombie) has no namespace
                    # left to read: only a readable, different one is wrong.
                    have=$(readlink "/proc/$pid/ns/net" 2>/dev/null || true)
                    [[ -n $have ]] && echo "$SECONDS h$i $pid ns-WRONG $have"
                fi
            done
        done
        sleep 0.1
    done
}
sampler >"$tmp/samples" 2>/dev/null &
sampler_pid=$!
atr_on_exit "kill $sampler_pid 2>/dev/null || true"

# Errors: one line, non-zero.
check "migrate to an unknown host" 1 a vm migrate mig-1 --to nosuchhost
one_line "unknown host"
check "migrate to the host it is on" 1 a vm migrate mig-1 --to mh1
one_line "same host"
check "migrate without --to" 2 a vm migrate mig-1
check "cancel with nothing under way" 1 a vm migrate-cancel mig-1
one_line "nothing to cancel"

migrate() { # FROM TO [--copy-storage]
    local from=$1 to=$2 rc=0 t0=$SECONDS
    shift 2
    timeout 400 "$ctl" --config "$tmp/ctl.conf" vm migrate "$name" --to "mh$to" "$@" >"$tmp/out" 2>&1 || rc=$?
    sed 's/^/    /' "$tmp/out"
    if ((rc == 0)); then ok "migrate mh$from -> mh$to ($((SECONDS - t0)) s)"; else
        bad "migrate mh$from -> mh$to: exit $rc"; return 1; fi
    expect "downtime printed" "migrated to mh$to, downtime [0-9]+ ms, total [0-9]+ ms"
    grep -Eo 'downtime [0-9]+ ms, total [0-9]+ ms' "$tmp/out" | sed "s/^/DOWNTIME mh$from->mh$to $*: /"
    truth "row moved to mh$to" "SELECT host_id = (SELECT id FROM hosts WHERE name = 'mh$to')
        FROM vms WHERE id = $vm"
    # The source QEMU is killed right after the row moves.
    local n=0
    while [[ -n $(mh_qemu_pids "$from") ]] && ((n < 100)); do sleep 0.1; n=$((n + 1)); done
    if [[ -z $(mh_qemu_pids "$from") ]]; then ok "no QEMU left on mh$from"; else
        bad "QEMU still on mh$from: $(mh_qemu_pids "$from")"; fi
    until_sql 30 "SELECT actual_power = 'running' AND qemu_pid IS NOT NULL FROM vms WHERE id = $vm" &&
        ok "mh$to reports the VM running" || bad "mh$to did not report the VM"
    until_sql 30 "SELECT state = 'succeeded' AND host_id = (SELECT id FROM hosts WHERE name = 'mh$to')
        FROM tasks WHERE vm_id = $vm AND kind = 'vm.migrate_in' ORDER BY id DESC LIMIT 1" &&
        ok "destination task done" || bad "destination task not done"
}

# ---- mh1 -> mh2
migrate 1 2
cp "$(serial 1)" "$tmp/a1.log"
wait_count "$(serial 2)" "$(($(last_count "$tmp/a1.log") + 10))" 60 &&
    ok "counter goes on on mh2" || bad "counter does not go on on mh2"
a1_last=$(last_count "$tmp/a1.log")
b1_first=$(counts "$(serial 2)" | head -n 1)
echo "mh1 counted to $a1_last; mh2 went on from $b1_first"
if ((b1_first > a1_last)); then ok "counter never went back (mh1 $a1_last < mh2 $b1_first)"; else
    bad "counter went back or overlapped: mh1 $a1_last, mh2 $b1_first"; fi
increasing "$tmp/a1.log" && ok "mh1 counter strictly increasing" || bad "mh1 counter not increasing"

# ---- mh2 -> mh1
migrate 2 1
cp "$(serial 2)" "$tmp/b1.log"
sleep 0.5
wait_count "$(serial 1)" "$(($(last_count "$tmp/b1.log") + 10))" 60 &&
    ok "counter goes on on mh1 again" || bad "counter does not go on on mh1"
b1_last=$(last_count "$tmp/b1.log")
a2_first=$(counts "$(serial 1)" | head -n 1)
echo "mh2 counted to $b1_last; mh1 went on from $a2_first"
if ((a2_first > b1_last)); then ok "counter never went back (mh2 $b1_last < mh1 $a2_first)"; else
    bad "counter went back or overlapped: mh2 $b1_last, mh1 $a2_first"; fi
increasing "$tmp/b1.log" && ok "mh2 counter strictly increasing" || bad "mh2 counter not increasing"

# ---- cancel: a slow copy (1 MiB/s) cancelled while it runs stays on mh1
mig_task=$(q "INSERT INTO tasks (kind, host_id, vm_id, params)
    SELECT 'vm.migrate', host_id, id, jsonb_build_object('to_host',
      (SELECT id FROM hosts WHERE name = 'mh2'), 'max_bandwidth_mbs', 1)
    FROM vms WHERE id = $vm RETURNING id" | head -n 1)
until_sql 120 "SELECT progress >= 15 FROM tasks WHERE id = $mig_task" &&
    ok "slow migration copying" || bad "slow migration never started copying"
if [[ -n $(mh_qemu_pids 2) ]]; then ok "destination QEMU waits on mh2"; else
    bad "no destination QEMU on mh2"; fi
check "migrate-cancel" 0 a vm migrate-cancel mig-1
until_sql 60 "SELECT state = 'cancelled' FROM tasks WHERE id = $mig_task" &&
    ok "task cancelled" || bad "task not cancelled"
n=0
while [[ -n $(mh_qemu_pids 2) ]] && ((n < 300)); do sleep 0.1; n=$((n + 1)); done
if [[ -z $(mh_qemu_pids 2) ]]; then ok "destination QEMU gone after cancel"; else
    bad "QEMU left on mh2 after cancel"; fi
truth "VM still on mh1" "SELECT host_id = (SELECT id FROM hosts WHERE name = 'mh1')
    AND actual_power = 'running' FROM vms WHERE id = $vm"
c0=$(last_count "$(serial 1)")
wait_count "$(serial 1)" $((c0 + 10)) 60 && ok "guest keeps counting on mh1 after the cancel" ||
    bad "guest stopped on mh1 after the cancel"
[[ -n $(mh_qemu_pids 1) ]] && ok "QEMU on mh1 alive" || bad "QEMU on mh1 gone"

# ---- maintenance: mh1's running VMs leave it (nothing new is placed on a
# host that is not online: the pool library's placement takes online hosts only)
check "maintenance without on/off" 2 a host maintenance mh1
check "maintenance of an unknown host" 1 a host maintenance nosuchhost on
one_line "unknown host"
check "maintenance on" 0 a host maintenance mh1 on
expect "maintenance announced" '^host mh1: maintenance; its 1 running VMs migrate away$'
c0=$(last_count "$(serial 1)")
until_sql 180 "SELECT host_id = (SELECT id FROM hosts WHERE name = 'mh2') FROM vms WHERE id = $vm" &&
    ok "maintenance moved the VM to mh2" || bad "the VM did not leave mh1"
truth "the drain's migration says why" "SELECT count(*) = 1 FROM tasks WHERE vm_id = $vm
    AND kind = 'vm.migrate' AND state = 'succeeded' AND params->>'reason' = 'maintenance'"
n=0
while [[ -n $(mh_qemu_pids 1) ]] && ((n < 100)); do sleep 0.1; n=$((n + 1)); done
if [[ -z $(mh_qemu_pids 1) ]]; then ok "no QEMU left on mh1 in maintenance"; else
    bad "QEMU still on mh1 in maintenance"; fi
cp "$(serial 1)" "$tmp/a2.log"
a2_last=$(last_count "$tmp/a2.log")
if wait_count "$(serial 2)" $((a2_last + 10)) 60; then ok "counter goes on on mh2 after the drain"; else
    bad "counter does not go on on mh2 after the drain"
    tail -n 3 "$(serial 2)" | sed 's/^/    serial mh2: /'
    q "SELECT host_id, state, actual_power, qemu_pid, last_error FROM vms WHERE id = $vm"
fi
b2_first=$(counts "$(serial 2)" | head -n 1)
if ((a2_last >= c0 && b2_first > a2_last)); then
    ok "counter never went back (mh1 $a2_last < mh2 $b2_first)"
else
    bad "counter went back or overlapped: mh1 $a2_last, mh2 $b2_first"
fi
check "host list" 0 a host list
expect "mh1 listed in maintenance" '^mh1 +maintenance '
check "maintenance off" 0 a host maintenance mh1 off
truth "mh1 online again" "SELECT state = 'online' FROM hosts WHERE name = 'mh1'"

# ---- without shared storage: the disk is mirrored into the destination's
# own data dir (NBD), then RAM moves; mh2 -> mh1 -> mh2.
check "--copy-storage without --to" 2 a vm migrate mig-1 --copy-storage
moved() { # FROM TO LOGCOPY: the counter went on across the move
    local from=$1 to=$2 last first
    cp "$(serial "$from")" "$3"
    last=$(last_count "$3")
    wait_count "$(serial "$to")" $((last + 10)) 60 && ok "counter goes on on mh$to" ||
        bad "counter does not go on on mh$to"
    first=$(counts "$(serial "$to")" | head -n 1)
    if ((first > last)); then ok "counter never went back (mh$from $last < mh$to $first)"; else
        bad "counter went back or overlapped: mh$from $last, mh$to $first"; fi
}
old_disk=$(q "SELECT disk_path FROM vms WHERE id = $vm")
migrate 2 1 --copy-storage
d1="$tmp/h1/data/disks/vm-$vm.qcow2"
truth "disk now in mh1's data dir" "SELECT disk_path = '$d1' FROM vms WHERE id = $vm"
if qemu-img compare -U "$old_disk" "$d1" >"$tmp/out" 2>&1; then ok "mh1's copy is identical"; else
    bad "mh1's copy differs"; sed 's/^/    /' "$tmp/out"; fi
moved 2 1 "$tmp/b3.log"
migrate 1 2 --copy-storage
d2="$tmp/h2/data/disks/vm-$vm.qcow2"
truth "disk now in mh2's data dir" "SELECT disk_path = '$d2' FROM vms WHERE id = $vm"
if qemu-img compare -U "$d1" "$d2" >"$tmp/out" 2>&1; then ok "mh2's copy is identical"; else
    bad "mh2's copy differs"; sed 's/^/    /' "$tmp/out"; fi
moved 1 2 "$tmp/a4.log"

# ---- a busy guest: it keeps rewriting 64 MiB of its RAM (atrium.busy), on
# a copy capped at BUSY_BW MiB/s, slower than the guest dirties, so only
# auto-converge's throttling lets the copy end; shared storage, mh2 -> mh1 -> mh2.
# mig-1 stops first: the busy guest takes a whole core under TCG.
check "migrate with a bandwidth of 0" 2 a vm migrate mig-1 --to mh1 --max-bandwidth 0
one_line "bad bandwidth"
check "stop mig-1" 0 a vm stop mig-1
until_sql 120 "SELECT actual_power = 'off' FROM vms WHERE id = $vm" && ok "mig-1 stopped" ||
    bad "mig-1 did not stop"
qemu-img create -q -f qcow2 -F qcow2 -b "$guest/disk.qcow2" "$tmp/shared/mig-busy.qcow2"
vm=$(q "INSERT INTO vms (name, host_id, state, desired_power, vcpus, memory_mb, disk_path, boot,
          boot_kernel, boot_initrd, boot_cmdline, nic_mode)
        VALUES ('mig-busy', (SELECT id FROM hosts WHERE name = 'mh2'), 'provisioning', 'running',
          1, 256, '$tmp/shared/mig-busy.qcow2', 'kernel', '$guest/vmlinuz', '$guest/initrd.img',
          '$(cat "$guest/cmdline") atrium.count atrium.busy=64', 'none')
        RETURNING id" | head -n 1)
name=mig-busy
if wait_for "$(serial 2)" '^ATRIUM-BUSY: 64' 240 && wait_count "$(serial 2)" 20 60; then
    ok "busy guest counts on mh2 and rewrites 64 MiB"
else
    bad "busy guest did not get busy on mh2"; tail -n 5 "$(serial 2)" 2>/dev/null
fi
until_sql 60 "SELECT actual_power = 'running' FROM vms WHERE id = $vm" || bad "busy row never said running"
# A busy guest can stop being busy right after a move under TCG: its kernel
# oopses in dd, or its busy loop dies silently (guest memory corrupted).
# Seen with two plain QEMU 7.2 processes and no Atrium code too, about once
# in 8-14 busy moves (docs/PERFORMANCE.md, bench.migrate).  That QEMU bug
# is reported as KNOWN, loudly, with the guest's serial lines, and the busy
# checks of the moves after it are skipped (the guest no longer dirties
# RAM); the counter checks stay.
busy_oops=0
busy_moved() { # TO: QEMU's figures show a guest that dirtied RAM and was throttled
    local r
    r=$(q "SELECT result FROM tasks WHERE vm_id = $vm AND kind = 'vm.migrate' ORDER BY id DESC LIMIT 1")
    echo "    task result: $r"
    if ((busy_oops)); then
        echo "KNOWN: busy checks skipped, the guest stopped being busy after an earlier move"
        return 0
    fi
    truth "to mh$1: more than the 64 MiB sent (RAM rewritten during the copy)" "SELECT
        (result->>'ram_transferred')::bigint > 64 * 1048576 FROM tasks WHERE vm_id = $vm
        AND kind = 'vm.migrate' ORDER BY id DESC LIMIT 1"
    truth "to mh$1: auto-converge throttled the guest and QEMU saw it dirty RAM" "SELECT
        (result->>'cpu_throttle_max_pct')::int > 0 AND (result->>'dirty_bytes_per_s')::bigint > 0
        FROM tasks WHERE vm_id = $vm AND kind = 'vm.migrate' ORDER BY id DESC LIMIT 1"
    expect "throttle printed" "guest CPU throttled up to [0-9]+%"
    if wait_for "$(serial "$1")" '^ATRIUM-BUSY-PASS: [0-9]+' 60; then
        ok "busy guest still rewriting its RAM on mh$1"
    else
        busy_oops=1
        echo "KNOWN: the busy guest stopped being busy on mh$1 after the move (QEMU 7.2 TCG," \
            "also without Atrium; docs/PERFORMANCE.md); its serial lines:"
        tr -d '\r' <"$(serial "$1")" | grep -a 'BUG\|Oops\|Comm:\|ATRIUM-ERROR' | head -n 5 | sed 's/^/    /' || true
    fi
}
migrate 2 1 --max-bandwidth "$BUSY_BW"
busy_moved 1
moved 2 1 "$tmp/busy-b.log"
migrate 1 2 --max-bandwidth "$BUSY_BW"
busy_moved 2
moved 1 2 "$tmp/busy-a.log"
for i in 1 2; do
    if grep -a 'ATRIUM-ERROR' "$(serial "$i")"; then bad "busy guest reported an error on mh$i"; fi
done

kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
if grep -q ns-WRONG "$tmp/samples"; then
    bad "a QEMU ran outside its host's namespace"
    grep ns-WRONG "$tmp/samples" | head -n 5
else
    ok "every QEMU ran in its host's namespace ($(wc -l <"$tmp/samples") samples)"; fi

atr_summary
