#!/bin/bash
# Live-migration bench on two test hosts (network namespaces joined by veths,
# one hostd each; tests/harness/hosts.sh): the test guest (TCG, 1 vCPU,
# 256 MiB, its counter on the serial port every 0.1 s) moves back and forth
# ROUNDS times with shared storage (one overlay both hosts open) and ROUNDS
# times without (its disk mirrored over NBD into the destination's storage).
# Downtime and total time are QEMU's own (query-migrate at the end, kept in
# the task's result); the command's wall time is atriumctl's, from asking to
# the row naming the new host.  A move that does not end within 240 s is
# cancelled (the VM stays where it was) and counted as failed; a move whose
# task carries no figures from QEMU is counted apart.  Prints a Markdown table.
#
# usage: migrate_bench.sh HOSTD ATRIUMCTL GUEST-DIR [ROUNDS]   (ctest -L bench)
set -euo pipefail
hostd=${1:?usage: migrate_bench.sh HOSTD ATRIUMCTL GUEST-DIR [ROUNDS]}
ctl=${2:?}
guest=${3:?}
rounds=${4:-3}
here=$(dirname "$0")
. "$here/../harness/lib.sh"
. "$here/../harness/hosts.sh"
atr_init migbench

mh_ctl "$ctl"
mh_init 2 "$hostd"
mkdir -p "$tmp/shared"
qemu-img create -q -f qcow2 -F qcow2 -b "$guest/disk.qcow2" "$tmp/shared/bench.qcow2"
vm=$(q "INSERT INTO vms (name, host_id, state, desired_power, vcpus, memory_mb, disk_path, boot,
          boot_kernel, boot_initrd, boot_cmdline, nic_mode)
        VALUES ('bench', (SELECT id FROM hosts WHERE name = 'mh1'), 'provisioning', 'running',
          1, 256, '$tmp/shared/bench.qcow2', 'kernel', '$guest/vmlinuz', '$guest/initrd.img',
          '$(cat "$guest/cmdline") atrium.count', 'none')
        RETURNING id" | head -n 1)
wait_for "$tmp/h1/run/vms/$vm/serial.log" '^ATRIUM-COUNT: 20' 240 ||
    { echo "the guest did not start"; tail -n 20 "$(mh_hostd_log 1)"; exit 1; }
until_sql 60 "SELECT actual_power = 'running' FROM vms WHERE id = $vm" || exit 1

# one migration: prints "<downtime ms> <total ms> <wall ms>"
one() { # TO [--copy-storage]
    local to=$1 t0 t1 task
    shift
    t0=$(date +%s%3N)
    if ! timeout 240 "$ctl" --config "$tmp/ctl.conf" vm migrate bench --to "mh$to" "$@" >"$tmp/out" 2>&1; then
        # a move that does not end within 240 s is cancelled and counted as failed
        task=$(q "SELECT id FROM tasks WHERE vm_id = $vm AND kind = 'vm.migrate' ORDER BY id DESC LIMIT 1")
        echo "move to mh$to $*: FAILED after $(($(date +%s%3N) - t0)) ms (task $task:" \
            "$(q "SELECT state || ' ' || progress || '% ' || message || ' ' || error FROM tasks WHERE id = $task"))" >&2
        "$ctl" --config "$tmp/ctl.conf" vm migrate-cancel bench >/dev/null 2>&1 || true
        until_sql 120 "SELECT NOT EXISTS (SELECT 1 FROM tasks WHERE vm_id = $vm
            AND kind IN ('vm.migrate', 'vm.migrate_in') AND state IN ('queued', 'running'))
            AND (SELECT actual_power = 'running' FROM vms WHERE id = $vm)" || return 1
        echo "failed failed $(($(date +%s%3N) - t0))"
        return 0
    fi
    t1=$(date +%s%3N)
    task=$(q "SELECT id FROM tasks WHERE vm_id = $vm AND kind = 'vm.migrate' ORDER BY id DESC LIMIT 1")
    # the next move waits until the destination owns and runs the VM
    until_sql 60 "SELECT actual_power = 'running' AND qemu_pid IS NOT NULL FROM vms WHERE id = $vm" ||
        return 1
    until_sql 60 "SELECT state = 'succeeded' FROM tasks WHERE vm_id = $vm AND kind = 'vm.migrate_in'
        ORDER BY id DESC LIMIT 1" || return 1
    local qemu
    qemu=$(q "SELECT coalesce(result->>'downtime_ms', 'none') || ' ' || coalesce(result->>'total_ms', 'none')
              FROM tasks WHERE id = $task")
    echo "move to mh$to $*: task $task downtime/total $qemu, command $((t1 - t0)) ms" >&2
    # hostd has been seen to record 0/0 (QEMU's figures missing): say so, keep it out of the stats
    [[ $qemu == "0 0" || $qemu == *none* ]] &&
        echo "    no QEMU figures in task $task: $(q "SELECT result FROM tasks WHERE id = $task")" >&2
    echo "$qemu $((t1 - t0))"
}

# stats FILE COLUMN: "median (min-max)" over the moves QEMU gave figures for
# (column 3, the command's own time, over every move)
stats() {
    awk -v c="$2" '$2 ~ /^[0-9]+$/ && ($2 > 0 || c == 3) { print $c }' "$1" | sort -n |
        awk '{ v[NR] = $1 } END { if (NR) printf "%d (%d-%d)", v[int((NR + 1) / 2)], v[1], v[NR]; else printf "-" }'
}
missing() { awk '$2 != "failed" && !($2 ~ /^[0-9]+$/ && $2 > 0) { n++ } END { print n + 0 }' "$1"; }
failed() { awk '$2 == "failed" { n++ } END { print n + 0 }' "$1"; }

: >"$tmp/shared.txt"
: >"$tmp/copy.txt"
# the host the VM is not on
other() { q "SELECT CASE WHEN h.name = 'mh1' THEN 2 ELSE 1 END FROM vms v JOIN hosts h ON h.id = v.host_id
             WHERE v.id = $vm"; }
for ((r = 1; r <= 2 * rounds; r++)); do one "$(other)" >>"$tmp/shared.txt"; done
for ((r = 1; r <= 2 * rounds; r++)); do one "$(other)" --copy-storage >>"$tmp/copy.txt"; done

echo
echo "Live migration between two namespace hosts, test guest (TCG, 1 vCPU, 256 MiB, counting), $((2 * rounds)) moves each, median (min-max), load average $(cut -d' ' -f1 /proc/loadavg):"
echo
echo "| storage | downtime (ms) | total, QEMU (ms) | command, ask to row moved (ms) | moves without QEMU's figures | failed (no end in 240 s, cancelled) |"
echo "|---|---|---|---|---|---|"
for f in shared copy; do
    name=$([[ $f == shared ]] && echo "shared (one overlay)" || echo "not shared (NBD mirror)")
    echo "| $name | $(stats "$tmp/$f.txt" 1) | $(stats "$tmp/$f.txt" 2) | $(stats "$tmp/$f.txt" 3) | $(missing "$tmp/$f.txt") | $(failed "$tmp/$f.txt") |"
done
