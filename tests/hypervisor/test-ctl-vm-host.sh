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
