#!/bin/bash
# Disaster-recovery replication between two test hosts (network namespaces,
# each with its own atrium-hostd; tests/harness/hosts.sh).
#
# A guest on mh1 counts on its data disk (atrium.diskcount: each value is
# written and synced to /data/count before it is printed on the serial
# port).  Its disk replicates to mh2 every 10 s: a full copy, then
# incremental ones (the bytes of each are printed; incremental ones must be
# much smaller).  Before each sync is queued the test notes the last
# printed value, so that value is on the disk the sync copies.  Then: a
# sync whose target server is killed mid-way fails and leaves the recovery
# point as it was (and the next sync is incremental again); a sync under
# way when mh1 dies (hostd and QEMU killed) is dropped; recovery is refused
# while mh1 heart-beats and works once it is dead: the guest boots on mh2
# from the last complete copy and goes on counting from a value no lower
# than the one noted before that copy's sync.
set -euo pipefail
hostd=${1:?usage: test-replicate.sh ATRIUM-HOSTD ATRIUMCTL}
ctl=${2:?usage: test-replicate.sh ATRIUM-HOSTD ATRIUMCTL}
guest=${ATRIUM_GUEST_DIR:?the test guest (fixture guest)}
here=$(dirname "$0")
. "$here/../harness/lib.sh"
. "$here/../harness/hosts.sh"
atr_init replica

mh_ctl "$ctl"
mh_init 2 "$hostd"
ok "two hosts up in their namespaces ($(mh_ns 1) $(mh_addr 1), $(mh_ns 2) $(mh_addr 2))"

on_fail_logs() {
    mh_hostd_tails 40
    q "SELECT id, kind, state, progress, message, error, result FROM tasks ORDER BY id" 2>/dev/null |
        tail -n 20 || true
}
atr_on_exit '((atr_fails == 0)) || on_fail_logs'

# The VM's own disk: a linked clone of the test guest in mh1's data dir
# only (no shared storage; the golden image is at the same path for both),
# 64 MiB where the golden image has 32: the guest's file system uses the
# first 32, and 16 MiB of the VM's own data (a pattern) sit at 40 MiB, so
# the first, full copy has real data to carry and increments do not.
mkdir -p "$tmp/h1/data/disks"
disk1="$tmp/h1/data/disks/rep-1.qcow2"
qemu-img create -q -f qcow2 -F qcow2 -b "$guest/disk.qcow2" "$disk1" 64M
qemu-io -f qcow2 -c "write -q -P 0x5a 40M 16M" "$disk1"
has_pattern() { # IMAGE: the VM's 16 MiB are there
    qemu-io -r -U -f qcow2 -c "read -P 0x5a 40M 16M" "$1" >"$tmp/qio" 2>&1
    grep -q '^read 16777216/16777216 bytes' "$tmp/qio" && ! grep -qi 'verification failed' "$tmp/qio"
}
vm=$(q "INSERT INTO vms (name, host_id, state, desired_power, vcpus, memory_mb, disk_path, boot,
          boot_kernel, boot_initrd, boot_cmdline, nic_mode)
        VALUES ('rep-1', (SELECT id FROM hosts WHERE name = 'mh1'), 'provisioning', 'running',
          1, 256, '$disk1', 'kernel', '$guest/vmlinuz', '$guest/initrd.img',
          '$(cat "$guest/cmdline") atrium.diskcount', 'none')
        RETURNING id" | head -n 1)
serial() { echo "$tmp/h$1/run/vms/$vm/serial.log"; }
counts() { tr -d '\000' <"$1" | awk '/^ATRIUM-COUNT: [0-9]+\r$/ { sub(/\r$/, ""); print $2 }'; }
last_count() { counts "$1" | tail -n 1; }
wait_count() { # FILE N SECONDS
    local deadline=$((SECONDS + $3)) c
    while ((SECONDS < deadline)); do
        c=$(last_count "$1" 2>/dev/null || true)
        [[ -n $c ]] && ((c >= $2)) && return 0
        sleep 0.2
    done
    return 1
}
if wait_count "$(serial 1)" 5 240; then ok "guest counts on its disk on mh1"; else
    bad "guest did not start counting on mh1"; tail -n 5 "$(serial 1)" 2>/dev/null; exit 1; fi
if grep -q ATRIUM-ERROR "$(serial 1)"; then bad "guest reports an error"; grep ATRIUM-ERROR "$(serial 1)"; fi
until_sql 60 "SELECT actual_power = 'running' FROM vms WHERE id = $vm" &&
    ok "row says running" || bad "row never said running"

# ---- errors: one line, non-zero
check "set without --to" 2 a vm replication set rep-1 --interval 10
check "interval too short" 2 a vm replication set rep-1 --to mh2 --interval 5
check "replicate to the VM's own host" 1 a vm replication set rep-1 --to mh1 --interval 10
one_line "own host"
check "replicate to an unknown host" 1 a vm replication set rep-1 --to nosuchhost --interval 10
one_line "unknown host"
check "recover a VM that is not replicated" 1 a vm recover rep-1 --on mh2
one_line "not replicated"
check "recover without --on" 2 a vm recover rep-1

declare -a noted=() layer_task=()
backing_of() { qemu-img info -U --output=json "$1" 2>/dev/null | sed -n 's/.*"backing-filename": "\(.*\)".*/\1/p' | head -n 1; }
settled() { # the last copy merged down: one layer over the golden image
    local deadline=$((SECONDS + 60)) l
    while ((SECONDS < deadline)); do
        l=$(q "SELECT layer_path FROM vm_replication WHERE vm_id = $vm")
        [[ -n $l && $(backing_of "$l") == "$guest/disk.qcow2" ]] && return 0
        sleep 0.2
    done
    return 1
}
note() { # the counter now and the newest task: a sync queued after this copies that counter
    note_c=$(last_count "$(serial 1)")
    note_id=$(q "SELECT coalesce(max(id), 0) FROM tasks")
}
sync_round() { # K: wait for a sync queued after the last note() to be recorded
    local k=$1 c=$note_c maxid=$note_id
    if until_sql 120 "SELECT coalesce(layer_task, 0) > $maxid FROM vm_replication WHERE vm_id = $vm" && settled; then
        noted[$k]=$c
        # the first sync queued after the note: on a loaded machine the next
        # one may already have been recorded too by now
        layer_task[$k]=$(q "SELECT min((params->>'source_task')::bigint) FROM tasks
            WHERE kind = 'vm.replicate_in' AND vm_id = $vm AND state = 'succeeded'
            AND (params->>'source_task')::bigint > $maxid")
        local row
        row=$(q "SELECT result->>'bytes', result->>'full', result->>'layer_file_bytes'
                 FROM tasks WHERE kind = 'vm.replicate_in' AND params->>'source_task' = '${layer_task[$k]}'")
        IFS='|' read -r bytes full fbytes <<<"$row"
        echo "SYNC $k: $( [[ $full == true ]] && echo full || echo incremental) copy of $bytes bytes (layer file $fbytes bytes), counter on disk >= $c"
        sync_bytes[$k]=$bytes
        sync_full[$k]=$full
        ok "sync $k recorded"
    else
        bad "sync $k never recorded"
        q "SELECT last_error FROM vm_replication WHERE vm_id = $vm"
        return 1
    fi
}
declare -a sync_bytes=() sync_full=()

# ---- the schedule: a full copy, then incremental ones
note
check "replication set" 0 a vm replication set rep-1 --to mh2 --interval 10
expect "set says so" '^vm rep-1: replicated to mh2 every 10 s$'

t0=$SECONDS
for k in 1 2 3 4; do
    sync_round "$k"
    note
done
echo "four syncs in $((SECONDS - t0)) s"
[[ ${sync_full[1]} == true ]] && ok "first sync is a full copy" || bad "first sync was not full"
incr_ok=1
for k in 2 3 4; do
    [[ ${sync_full[$k]} == false ]] || { bad "sync $k was not incremental"; incr_ok=0; }
    ((sync_bytes[k] * 4 <= sync_bytes[1])) || { bad "sync $k (${sync_bytes[$k]} B) not much smaller than the full one (${sync_bytes[1]} B)"; incr_ok=0; }
done
((incr_ok)) && ok "syncs 2-4 incremental, each at most a quarter of the full copy"
truth "recovery point recorded with its time" "SELECT point_at IS NOT NULL AND point_at <= now()
    AND point_at > now() - interval '60 s' FROM vm_replication WHERE vm_id = $vm"
layer=$(q "SELECT layer_path FROM vm_replication WHERE vm_id = $vm")
[[ $layer == "$tmp/h2/data/replicas/vm-$vm/"*.qcow2 && -f $layer ]] &&
    ok "the copy is in mh2's data dir ($layer)" || bad "copy not where expected: $layer"
has_pattern "$layer" && ok "the copy holds the VM's 16 MiB of data" || bad "the copy lacks the VM's data"
backing=$(backing_of "$layer")
[[ $backing == "$guest/disk.qcow2" ]] && ok "increments merged: the copy is one layer over the golden image" ||
    bad "copy's chain: backing $backing"
check "replication list" 0 a vm replication list
expect "list shows the VM, target and age" '^rep-1 +mh1 +mh2 +10s +yes +[0-9]+s +[0-9]+ '
check "vm show" 0 a vm show rep-1
expect "vm show has the recovery point age" '^replication: +to mh2 every 10 s; recovery point .* \([0-9]+ s ago\)$'

# ---- a sync whose target dies mid-way: the recovery point stays
a vm replication set rep-1 --to mh2 --interval 10 --max-bps 4096 >/dev/null
if until_sql 60 "SELECT count(*) = 1 FROM tasks WHERE vm_id = $vm AND kind = 'vm.replicate'
        AND state = 'running' AND progress >= 15"; then ok "slow sync copying"; else bad "slow sync never copied"; fi
# One sync at a time, and the target merged the last one before it served this one.
point0=$(q "SELECT point_at FROM vm_replication WHERE vm_id = $vm")
layer=$(q "SELECT layer_path FROM vm_replication WHERE vm_id = $vm")
sum0=$(sha256sum "$layer" | cut -d' ' -f1)
# Nothing new is scheduled until the checks below are done.
a vm replication off rep-1 >/dev/null
in_task=$(q "SELECT id FROM tasks WHERE vm_id = $vm AND kind = 'vm.replicate_in' AND state = 'running'")
nbd_pid=$(grep -E "msg=\"replica layer served\".* task=$in_task " "$(mh_hostd_log 2)" |
    sed -n 's/.*qemu_nbd_pid=\([0-9]*\).*/\1/p' | tail -n 1)
if [[ -n $nbd_pid ]] && mh_in_ns 2 "$nbd_pid"; then
    ok "qemu-nbd $nbd_pid serves the new layer in mh2's namespace"
    kill -KILL "$nbd_pid"
else
    bad "no qemu-nbd found for task $in_task"
fi
until_sql 90 "SELECT state IN ('failed', 'cancelled') FROM tasks WHERE id = $in_task" &&
    ok "the interrupted sync failed" || bad "the interrupted sync did not fail"
truth "recovery point unchanged" "SELECT point_at = '$point0' AND layer_path = '$layer'
    FROM vm_replication WHERE vm_id = $vm"
[[ $(sha256sum "$layer" | cut -d' ' -f1) == "$sum0" ]] && ok "the last copy's file untouched" ||
    bad "the last copy's file changed"
c0=$(last_count "$(serial 1)")
wait_count "$(serial 1)" $((c0 + 20)) 60 && ok "the guest kept writing to its disk through the failure" ||
    bad "the guest stopped counting after the target died (at $c0)"
grep -q ATRIUM-ERROR "$(serial 1)" && bad "the guest saw a disk error" || ok "the guest saw no disk error"
[[ ! -e $tmp/h2/data/replicas/vm-$vm/$in_task.qcow2 ]] && ok "the half-made layer was removed" ||
    bad "half-made layer left"
qemu-img check -q "$layer" && ok "qemu-img check: the copy is sound" || bad "qemu-img check failed"
# The cancelled job kept its dirty marks (on-success), so the next sync is incremental.
note
a vm replication set rep-1 --to mh2 --interval 10 >/dev/null
sync_round 5
[[ ${sync_full[5]} == false ]] && ok "the sync after the failure is incremental (${sync_bytes[5]} B)" ||
    bad "the sync after the failure was full"

# ---- the source host dies while a sync is under way
a vm replication set rep-1 --to mh2 --interval 10 --max-bps 4096 >/dev/null
a vm replication sync rep-1 >/dev/null
until_sql 60 "SELECT count(*) = 1 FROM tasks WHERE vm_id = $vm AND kind = 'vm.replicate'
    AND state = 'running' AND progress >= 15" && ok "a sync is copying" || bad "no sync copying"
# The copy under way is capped: nothing else commits before mh1 dies.
point1=$(q "SELECT point_at FROM vm_replication WHERE vm_id = $vm")
layer=$(q "SELECT layer_path FROM vm_replication WHERE vm_id = $vm")
# The copy's counter is at least what was noted before the newest sync it
# includes (a later, unnoted scheduled sync only copies a later disk).
cur=$(q "SELECT layer_task FROM vm_replication WHERE vm_id = $vm")
last_good=0
for k in 1 2 3 4 5; do ((layer_task[k] <= cur)) && last_good=${noted[$k]}; done
check "recover while mh1 is alive" 1 a vm recover rep-1 --on mh2
one_line "refused while alive"
expect "says the host is alive" 'mh1 is alive'
seen_on_mh1=$(last_count "$(serial 1)")
qemu1=$(mh_qemu_pids 1)
mh_kill_hostd 1
kill -KILL $qemu1
n=0
while [[ -n $(mh_qemu_pids 1) ]] && ((n < 100)); do sleep 0.1; n=$((n + 1)); done
[[ -z $(mh_qemu_pids 1) ]] && ok "mh1's hostd and QEMU killed (counter reached $seen_on_mh1)" || bad "QEMU on mh1 survived"
until_sql 60 "SELECT heartbeat_at < now() - interval '10 s' FROM hosts WHERE name = 'mh1'" &&
    ok "mh1's heartbeat is 10 s old" || bad "mh1 still heart-beats"
truth "the interrupted sync did not move the recovery point" "SELECT point_at = '$point1'
    AND layer_path = '$layer' FROM vm_replication WHERE vm_id = $vm"
t0=$SECONDS
check "recover on mh2" 0 timeout 300 "$ctl" --config "$tmp/ctl.conf" vm recover rep-1 --on mh2
sed 's/^/    /' "$tmp/out"
expect "recover prints the recovery point's age" '^vm rep-1: recovered on mh2 from the copy of .* \([0-9]+ s old\); it boots there$'
truth "row on mh2, disk in mh2's data dir" "SELECT host_id = (SELECT id FROM hosts WHERE name = 'mh2')
    AND disk_path = '$tmp/h2/data/disks/vm-$vm.qcow2' FROM vms WHERE id = $vm"
if wait_for "$(serial 2)" '^ATRIUM-DISKCOUNT-FROM: [0-9]+' 240; then
    from=$(tr -d '\r\000' <"$(serial 2)" | sed -n 's/^ATRIUM-DISKCOUNT-FROM: \([0-9]*\)$/\1/p' | head -n 1)
    echo "RECOVERED: disk counter $from; noted before the last complete sync $last_good; mh1 had printed $seen_on_mh1; boot took $((SECONDS - t0)) s"
    if ((from >= last_good && from <= seen_on_mh1)); then
        ok "recovered disk holds counter $from >= $last_good (last complete sync) and <= $seen_on_mh1"
    else
        bad "recovered counter $from outside [$last_good, $seen_on_mh1]"
    fi
    wait_count "$(serial 2)" $((from + 5)) 60 && ok "the recovered guest counts on from $from" ||
        bad "the recovered guest does not count"
else
    bad "the recovered guest did not boot on mh2"
    tail -n 5 "$(serial 2)" 2>/dev/null || true
fi
has_pattern "$tmp/h2/data/disks/vm-$vm.qcow2" && ok "the recovered disk holds the VM's 16 MiB of data" ||
    bad "the recovered disk lacks the VM's data"
for pid in $(mh_qemu_pids 2); do
    mh_in_ns 2 "$pid" && ok "recovered QEMU $pid runs in mh2's namespace" || bad "QEMU $pid outside mh2"
done
until_sql 30 "SELECT actual_power = 'running' FROM vms WHERE id = $vm" &&
    ok "row says running on mh2" || bad "row not running on mh2"
truth "replication stopped, syncs under way cancelled" "SELECT NOT enabled AND recovered_at IS NOT NULL
    FROM vm_replication WHERE vm_id = $vm" 
truth "no sync task left running" "SELECT count(*) = 0 FROM tasks WHERE vm_id = $vm
    AND kind LIKE 'vm.replicate%' AND state IN ('queued', 'running')"
left=$(find "$tmp/h2/data/replicas/vm-$vm" -name '*.qcow2' | wc -l)
((left == 1)) && ok "only the recovered copy is left in mh2's replica dir" || bad "$left layers left"
check "replication show" 0 a vm replication show rep-1
expect "show says recovered" '^recovered: '

atr_summary
