#!/bin/bash
# atriumctl vm and host commands against the run's private PostgreSQL.  They
# work through the database only, so the rows hostd would write are set up
# here with SQL and the commands' effects are read back from the tables.
set -euo pipefail
ctl=${1:?usage: test-ctl-vm-host.sh ATRIUMCTL}
. "$(dirname "$0")/../harness/lib.sh"
atr_init ctl-vm-host
conf=$tmp/atrium.conf
printf '[db]\nurl = %s dbname=%s\n[paths]\nruntime_dir = %s/run\n' "$server" "$db" "$tmp" >"$conf"
"$ctl" --config "$conf" db migrate >/dev/null
a() { "$ctl" --config "$conf" "$@"; }

q "INSERT INTO hosts (name, address, cpus, memory_mb, cpu_capacity, memory_capacity_mb, accel,
     accel_note, version, heartbeat_at)
   VALUES ('hv1', '192.0.2.1', 8, 32768, 8, 32768, 'tcg',
     'falling back to TCG (software emulation): a test vCPU on /dev/kvm hung', '0.1.0', now()),
          ('hv2', '192.0.2.2', 4, 8192, 4, 8192, 'kvm', 'a test vCPU ran', '0.1.0',
     now() - interval '1 hour')" >/dev/null
q "INSERT INTO vms (name, host_id, state, desired_power, actual_power, qemu_pid, vcpus, memory_mb)
   VALUES ('desk-1', (SELECT id FROM hosts WHERE name = 'hv1'), 'ready', 'running', 'running',
           4242, 2, 2048),
          ('desk-2', (SELECT id FROM hosts WHERE name = 'hv1'), 'failed', 'running', 'crashed',
           NULL, 1, 1024),
          ('desk-3', (SELECT id FROM hosts WHERE name = 'hv2'), 'stopped', 'stopped', 'off',
           NULL, 1, 512)" >/dev/null
q "UPDATE vms SET last_error = 'QEMU (pid 7) was killed by signal 9 unexpectedly' WHERE name = 'desk-2'" >/dev/null

# host list / info
check "host list" 0 a host list
expect "hv1 alive, tcg" '^hv1 +online +alive +tcg +8 +32768 +2\(1\) '
expect "hv2 not responding" '^hv2 +online +not responding +kvm '
check "host info" 0 a host info hv1
expect "info shows the TCG fallback reason" 'falling back to TCG .*hung'
expect "info shows capacity" '^cpus: +8 \(offered to VMs: 8\)$'
check "host list --json" 0 a --json host list
jq -e 'length == 2 and .[0].name == "hv1" and .[0].accel == "tcg" and .[0].vms == 2
       and .[0].vms_running == 1 and .[1].liveness == "not responding"' "$tmp/out" >/dev/null &&
    ok "host list json fields" || bad "host list json fields"
check "host info --json" 0 a --json host info hv2
jq -e '.accel == "kvm" and .cpus == 4' "$tmp/out" >/dev/null && ok "host info json" ||
    bad "host info json"
check "unknown host" 1 a host info nope
one_line "unknown host"

# vm list / show
check "vm list" 0 a vm list
expect "desk-1 running with pid" '^[0-9]+ +desk-1 +hv1 +ready +running +running +4242 +2 +2048$'
expect "desk-2 failed" '^[0-9]+ +desk-2 +hv1 +failed +running +crashed +- '
check "vm list --host" 0 a vm list --host hv2
[[ $(grep -c desk "$tmp/out") -eq 1 ]] && grep -q desk-3 "$tmp/out" && ok "host filter" ||
    bad "host filter"
check "vm list --json" 0 a --json vm list
jq -e 'length == 3 and (map(.name) == ["desk-1", "desk-2", "desk-3"])
       and .[0].qemu_pid == 4242 and .[1].last_error != ""' "$tmp/out" >/dev/null &&
    ok "vm list json" || bad "vm list json"
check "vm show" 0 a vm show desk-2
expect "show last error" '^last error: +QEMU \(pid 7\) was killed by signal 9'
id1=$(q "SELECT id FROM vms WHERE name = 'desk-1'")
check "vm show by id" 0 a --json vm show "$id1"
jq -e '.name == "desk-1" and .host == "hv1"' "$tmp/out" >/dev/null && ok "show by id json" ||
    bad "show by id json"
check "vm show unknown" 1 a vm show nope

# power: desired state only
check "vm pause" 0 a vm pause desk-1
truth "pause sets desired paused" "SELECT desired_power = 'paused' FROM vms WHERE name = 'desk-1'"
check "vm resume" 0 a vm resume desk-1
truth "resume sets desired running" "SELECT desired_power = 'running' FROM vms WHERE name = 'desk-1'"
check "resume of a running VM refused" 1 a vm resume desk-1
check "vm stop" 0 a vm stop desk-3
check "vm start clears a failure" 0 a vm start desk-2
truth "failed VM back to stopped, wanted running" \
    "SELECT state = 'stopped' AND desired_power = 'running' FROM vms WHERE name = 'desk-2'"
check "vm stop desk-1" 0 a vm stop desk-1
truth "stop sets desired stopped" "SELECT desired_power = 'stopped' FROM vms WHERE name = 'desk-1'"

# reset: a task for the VM's host, only when QEMU runs
check "vm reset" 0 a --json vm reset desk-1
jq -e '.vm == "desk-1" and (.task | type) == "number"' "$tmp/out" >/dev/null && ok "reset json" ||
    bad "reset json"
truth "reset task queued for hv1" \
    "SELECT count(*) = 1 FROM tasks WHERE kind = 'vm.reset' AND state = 'queued'
       AND vm_id = $id1 AND host_id = (SELECT id FROM hosts WHERE name = 'hv1')"
check "reset of a stopped VM refused" 1 a vm reset desk-3
truth "no task for the refused reset" "SELECT count(*) = 1 FROM tasks"

# live resources: a new generation for hostd to apply
check "vm resources --balloon" 0 a vm resources desk-1 --balloon 1024
expect "target shown" '^memory target: 1024 MiB \(balloon\)$'
expect "not applied yet" '^applied: +not yet$'
truth "balloon target and generation bumped" \
    "SELECT balloon_mb = 1024 AND resources_gen = 1 AND applied_gen = 0 FROM vms WHERE name = 'desk-1'"
check "balloon above memory refused" 2 a vm resources desk-1 --balloon 4096
check "vm resources none --json" 0 a --json vm resources desk-1 --balloon none
jq -e '.balloon_mb == null and .resources_gen == 2 and .applied == false' "$tmp/out" >/dev/null &&
    ok "resources json" || bad "resources json"

# live limits and the boost: columns and generations hostd acts on
check "vm resources limits" 0 a vm resources desk-1 --cpu-weight 300 --cpu-max 50 \
    --memory-max 1024 --disk-iops 200 --disk-bps 1048576 --net-bps 125000
expect "weight shown" '^cpu weight: +300$'
expect "cpu cap shown" '^cpu max: +50 % of one CPU$'
truth "limits stored, generation bumped" \
    "SELECT cpu_weight = 300 AND cpu_max_pct = 50 AND memory_max_mb = 1024 AND disk_iops = 200
       AND disk_bps = 1048576 AND net_bps = 125000 AND resources_gen = 3 FROM vms WHERE name = 'desk-1'"
check "vm resources lift" 0 a --json vm resources desk-1 --cpu-max none --disk-iops none
jq -e '.cpu_max_pct == null and .disk_iops == null and .memory_max_mb == 1024 and .cpu_weight == 300' \
    "$tmp/out" >/dev/null && ok "lifted limits json" || bad "lifted limits json"
check "cpu weight out of range" 2 a vm resources desk-1 --cpu-weight 20000
check "memory cap too small" 2 a vm resources desk-1 --memory-max 10
check "boost and unboost together" 2 a vm resources desk-1 --boost --unboost
check "limits on another command" 2 a vm show desk-1 --cpu-weight 5
gen2=$(q "SELECT resources_gen FROM vms WHERE name = 'desk-2'")
check "vm resources --boost" 0 a --json vm resources desk-1 --boost
jq -e '.boosted == true' "$tmp/out" >/dev/null && ok "boost json" || bad "boost json"
truth "boost bumps every VM of the host" \
    "SELECT resources_gen = $gen2 + 1 FROM vms WHERE name = 'desk-2'"
check "boost desk-2 instead" 0 a vm resources desk-2 --boost
truth "one boosted VM per host" \
    "SELECT count(*) = 1 AND bool_and(name = 'desk-2') FROM vms WHERE boosted"
check "vm resources --unboost" 0 a vm resources desk-2 --unboost
truth "nobody boosted" "SELECT count(*) = 0 FROM vms WHERE boosted"

# snapshots: a catalogue row and a task for the VM's host
q "UPDATE vms SET disk_path = '$tmp/desk-1.qcow2' WHERE name = 'desk-1'" >/dev/null
check "vm snapshot --no-wait" 0 a --json vm snapshot desk-1 s1 --no-wait
jq -e '.vm == "desk-1" and (.task | type) == "number"' "$tmp/out" >/dev/null &&
    ok "snapshot json" || bad "snapshot json"
truth "RAM snapshot (the VM runs) and its task" \
    "SELECT s.with_ram AND s.state = 'creating' AND t.kind = 'vm.snapshot.create'
       AND t.params->>'name' = 's1' AND t.host_id = (SELECT id FROM hosts WHERE name = 'hv1')
     FROM snapshots s JOIN tasks t ON t.id = s.task_id"
check "same name again" 1 a vm snapshot desk-1 s1 --no-wait
one_line "same name again"
check "bad snapshot name" 2 a vm snapshot desk-1 'no/slash' --no-wait
check "RAM snapshot of a stopped VM refused" 1 a vm snapshot desk-3 s1 --ram --no-wait
check "disk-only of a stopped VM" 0 a vm snapshot desk-3 d1 --no-wait
truth "disk-only by default when off" \
    "SELECT NOT with_ram FROM snapshots WHERE name = 'd1'"
check "snapshots list" 0 a vm snapshots desk-1
expect "snapshot listed" '^s1 +creating +yes '
check "revert of a snapshot not ready" 1 a vm revert desk-1 s1 --no-wait
q "UPDATE snapshots SET state = 'ready' WHERE name = 's1'" >/dev/null
check "vm revert --no-wait" 0 a vm revert desk-1 s1 --no-wait
truth "revert task names the snapshot" \
    "SELECT count(*) = 1 FROM tasks WHERE kind = 'vm.snapshot.revert'
       AND (params->>'snapshot_id')::bigint = (SELECT id FROM snapshots WHERE name = 's1')"
check "clone-from-snapshot" 0 a vm clone-from-snapshot desk-1 s1 desk-9 --no-wait
truth "new VM, stopped until its disk exists, next to the source's" \
    "SELECT desired_power = 'stopped' AND disk_path = '$tmp/desk-9.qcow2'
       AND source_snapshot = 'desk-1/s1' AND host_id = (SELECT host_id FROM vms WHERE name = 'desk-1')
     FROM vms WHERE name = 'desk-9'"
check "show the clone" 0 a vm show desk-9
expect "clone's origin shown" '^cloned from: +snapshot desk-1/s1$'
check "clone to an existing name" 1 a vm clone-from-snapshot desk-1 s1 desk-9 --no-wait
check "snapshot-delete" 0 a vm snapshot-delete desk-1 s1 --no-wait
truth "snapshot marked deleting" "SELECT state = 'deleting' FROM snapshots WHERE name = 's1'"
check "revert unknown snapshot" 1 a vm revert desk-1 nope --no-wait
check "--ram on revert" 2 a vm revert desk-1 s1 --ram
check "snapshot without name" 2 a vm snapshot desk-1
# Waiting (the default) follows the task: finished here by hand, as hostd would.
q "UPDATE snapshots SET state = 'ready' WHERE name = 'd1'" >/dev/null
(
    for _ in $(seq 300); do
        [[ $(q "SELECT count(*) FROM tasks WHERE kind = 'vm.snapshot.delete'") -eq 2 ]] && break
        sleep 0.1
    done
    q "UPDATE tasks SET state = 'running', progress = 40, message = 'QEMU job running'
       WHERE kind = 'vm.snapshot.delete'" >/dev/null
    sleep 0.5
    q "UPDATE tasks SET state = 'failed', error = 'the VM is on fire'
       WHERE kind = 'vm.snapshot.delete'" >/dev/null
) &
check "waiting shows the host's reason" 1 timeout 60 "$ctl" --config "$conf" vm snapshot-delete desk-3 d1
expect "progress shown" '^task [0-9]+:  40% QEMU job running$'
expect "reason shown" 'task [0-9]+ failed: the VM is on fire'
wait

# console paths: under the configured runtime dir, per VM id
check "console-path vnc" 0 a vm console-path desk-1 vnc
expect "vnc socket path" "^$tmp/run/vms/$id1/vnc.sock\$"
check "console-path all" 0 a --json vm console-path desk-1
jq -e --arg d "$tmp/run/vms/$id1" '.spice == ($d + "/spice.sock") and .qmp == ($d + "/qmp.sock")
       and .serial == ($d + "/serial.log")' "$tmp/out" >/dev/null && ok "console paths json" ||
    bad "console paths json"
check "console-path bad kind" 2 a vm console-path desk-1 rdp

# usage errors
check "vm without subcommand" 2 a vm
check "vm unknown subcommand" 2 a vm frobnicate desk-1
check "vm start without VM" 2 a vm start
check "host info without name" 2 a host info
check "vm help" 0 a vm --help
check "host help" 0 a host --help

atr_summary
