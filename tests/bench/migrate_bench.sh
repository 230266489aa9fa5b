#!/bin/bash
# Live-migration bench on two test hosts (network namespaces joined by veths,
# one hostd each; tests/harness/hosts.sh): the test guest (TCG, 1 vCPU,
# 256 MiB, its counter on the serial port every 0.1 s) moves back and forth
# ROUNDS times with shared storage (one overlay both hosts open) and ROUNDS
# times without (its disk mirrored over NBD into the destination's storage),
# first idle, then busy (a second guest started with atrium.busy=BUSY_MB,
# which keeps rewriting that many MiB of its RAM as fast as its vCPU can;
# the idle one is stopped first so it takes no CPU from the busy one).
# Downtime and total time are QEMU's own (query-migrate at the end, kept in
# the task's result), as are the RAM sent, the guest's dirty rate at the
# last pass and the highest CPU throttle auto-converge put on the guest;
# the command's wall time is atriumctl's, from asking to the row naming the
# new host.  A move that does not end within 240 s is cancelled (the VM
# stays where it was) and counted as failed; a move whose task carries no
# figures from QEMU is counted apart.  Prints a Markdown table.
#
# The busy guest then moves ROUNDS times back and forth again with shared
# storage over a copy capped at ATRIUM_BENCH_MIGRATE_CAP MiB/s (32), slower
# than it dirties RAM, so only auto-converge's throttle lets the copy end.
# No peer is run: libvirt (virsh migrate) is installed here, but two
# libvirtd instances on one machine, each in its own network namespace,
# need their own /run/libvirt and /var/lib/libvirt (a mount namespace
# each, or session daemons under another user): not done yet.
#
# usage: migrate_bench.sh HOSTD ATRIUMCTL GUEST-DIR [ROUNDS] [BUSY_MB]   (ctest -L bench)
set -euo pipefail
hostd=${1:?usage: migrate_bench.sh HOSTD ATRIUMCTL GUEST-DIR [ROUNDS] [BUSY_MB]}
ctl=${2:?}
guest=$(cd "${3:?}" && pwd)
rounds=${4:-3}
busy_mb=${5:-64}
# The busy guest also moves over a copy capped at this many MiB/s, below
# how fast it dirties RAM: the case auto-converge is for (on real hardware a
# desktop dirties GB/s, faster than any link; a TCG guest is slower than the
# veths here, so it only outruns a capped copy).
busy_cap=${ATRIUM_BENCH_MIGRATE_CAP:-32}
here=$(dirname "$0")
. "$here/../harness/lib.sh"
. "$here/../harness/hosts.sh"
atr_init migbench

mh_ctl "$ctl"
mh_init 2 "$hostd"
mkdir -p "$tmp/shared"
# new_vm NAME EXTRA-CMDLINE: a running guest on mh1 that counts; prints its id
new_vm() {
    local id
    qemu-img create -q -f qcow2 -F qcow2 -b "$guest/disk.qcow2" "$tmp/shared/$1.qcow2" || return 1
    id=$(q "INSERT INTO vms (name, host_id, state, desired_power, vcpus, memory_mb, disk_path, boot,
          boot_kernel, boot_initrd, boot_cmdline, nic_mode)
        VALUES ('$1', (SELECT id FROM hosts WHERE name = 'mh1'), 'provisioning', 'running',
          1, 256, '$tmp/shared/$1.qcow2', 'kernel', '$guest/vmlinuz', '$guest/initrd.img',
          '$(cat "$guest/cmdline") atrium.count $2', 'none')
        RETURNING id" | head -n 1)
    wait_for "$tmp/h1/run/vms/$id/serial.log" '^ATRIUM-COUNT: 20' 240 ||
        { echo "guest $1 did not start" >&2; tail -n 20 "$(mh_hostd_log 1)" >&2; return 1; }
    until_sql 60 "SELECT actual_power = 'running' FROM vms WHERE id = $id" || return 1
    echo "$id"
}

# one migration of $vm ($name): prints "<downtime ms> <total ms> <wall ms>
# <RAM sent MiB> <dirty rate MiB/s> <highest throttle %>"
one() { # TO [--copy-storage]
    local to=$1 t0 t1 task
    shift
    t0=$(date +%s%3N)
    if ! timeout 240 "$ctl" --config "$tmp/ctl.conf" vm migrate "$name" --to "mh$to" "$@" >"$tmp/out" 2>&1; then
        # a move that does not end within 240 s is cancelled and counted as failed
        task=$(q "SELECT id FROM tasks WHERE vm_id = $vm AND kind = 'vm.migrate' ORDER BY id DESC LIMIT 1")
        echo "$name to mh$to $*: FAILED after $(($(date +%s%3N) - t0)) ms (task $task:" \
            "$(q "SELECT state || ' ' || progress || '% ' || message || ' ' || error FROM tasks WHERE id = $task"))" >&2
        "$ctl" --config "$tmp/ctl.conf" vm migrate-cancel "$name" >/dev/null 2>&1 || true
        until_sql 120 "SELECT NOT EXISTS (SELECT 1 FROM tasks WHERE vm_id = $vm
            AND kind IN ('vm.migrate', 'vm.migrate_in') AND state IN ('queued', 'running'))
            AND (SELECT actual_power = 'running' FROM vms WHERE id = $vm)" || return 1
        echo "failed failed $(($(date +%s%3N) - t0)) - - -"
        return 0
    fi
    t1=$(date +%s%3N)
    task=$(q "SELECT id FROM tasks WHERE vm_id = $vm AND kind = 'vm.migrate' ORDER BY id DESC LIMIT 1")
    # the next move waits until the destination owns and runs the VM
    until_sql 60 "SELECT actual_power = 'running' AND qemu_pid IS NOT NULL FROM vms WHERE id = $vm" ||
        return 1
    until_sql 60 "SELECT state = 'succeeded' FROM tasks WHERE vm_id = $vm AND kind = 'vm.migrate_in'
        ORDER BY id DESC LIMIT 1" || return 1
    local qemu more
    qemu=$(q "SELECT coalesce(result->>'downtime_ms', 'none') || ' ' || coalesce(result->>'total_ms', 'none')
              FROM tasks WHERE id = $task")
    more=$(q "SELECT coalesce(round((result->>'ram_transferred')::numeric / 1048576)::text, '-') || ' ' ||
                     CASE WHEN (result->>'dirty_bytes_per_s')::bigint > 0
                          THEN round((result->>'dirty_bytes_per_s')::numeric / 1048576)::text ELSE '-' END || ' ' ||
                     coalesce(result->>'cpu_throttle_max_pct', '-')
              FROM tasks WHERE id = $task")
    echo "$name to mh$to $*: task $task downtime/total $qemu, command $((t1 - t0)) ms," \
        "RAM MiB/dirty MiB/s/throttle % $more" >&2
    # a busy guest must still be busy on the destination: a new pass there
    if [[ $name == busy* ]] && ! wait_for "$tmp/h$to/run/vms/$vm/serial.log" '^ATRIUM-BUSY-PASS: ' 30; then
        echo "    the busy guest makes no more passes on mh$to:" >&2
        tr -d '\r\000' <"$tmp/h$to/run/vms/$vm/serial.log" | grep -av 'COUNT\|BUSY-PASS' | head -n 12 >&2 || true
        notbusy=$((notbusy + 1))
        crashed=1
    fi
    # hostd has been seen to record 0/0 (QEMU's figures missing): say so, keep it out of the stats
    [[ $qemu == "0 0" || $qemu == *none* ]] &&
        echo "    no QEMU figures in task $task: $(q "SELECT result FROM tasks WHERE id = $task")" >&2
    echo "$qemu $((t1 - t0)) $more"
}

# stats FILE COLUMN: "median (min-max)" over the moves QEMU gave figures for
# (column 3, the command's own time, over every move); "-" where none said
stats() {
    awk -v c="$2" '$2 ~ /^[0-9]+$/ && ($2 > 0 || c == 3) && $c ~ /^[0-9]+$/ { print $c }' "$1" | sort -n |
        awk '{ v[NR] = $1 } END { if (NR) printf "%d (%d-%d)", v[int((NR + 1) / 2)], v[1], v[NR]; else printf "-" }'
}
missing() { awk '$2 != "failed" && !($2 ~ /^[0-9]+$/ && $2 > 0) { n++ } END { print n + 0 }' "$1"; }
failed() { awk '$2 == "failed" { n++ } END { print n + 0 }' "$1"; }

# the host the VM is not on
other() { q "SELECT CASE WHEN h.name = 'mh1' THEN 2 ELSE 1 END FROM vms v JOIN hosts h ON h.id = v.host_id
             WHERE v.id = $vm"; }
# stop $vm ($name) and wait until it is off
stop_vm() {
    "$ctl" --config "$tmp/ctl.conf" vm stop "$name" >/dev/null
    until_sql 120 "SELECT actual_power = 'off' FROM vms WHERE id = $vm" ||
        { echo "guest $name did not stop"; exit 1; }
}
# a new busy guest when there is none yet or the last one stopped being busy
# after a move (its kernel oopsed or its loop died: a QEMU TCG bug, see
# docs/PERFORMANCE.md); the move's own figures stand, the guest was busy
# while it was copied
busy_n=0
crashed=1
busy_guest() {
    ((crashed)) || return 0
    ((busy_n == 0)) || stop_vm
    busy_n=$((busy_n + 1))
    name=busy$busy_n
    vm=$(new_vm "$name" "atrium.busy=$busy_mb")
    wait_for "$tmp/h1/run/vms/$vm/serial.log" '^ATRIUM-BUSY-PASS: ' 120 ||
        { echo "the busy guest never got busy"; exit 1; }
    crashed=0
}
moves() { # KIND: 2*ROUNDS moves with shared storage, then 2*ROUNDS mirrored
    : >"$tmp/$1-shared.txt"
    : >"$tmp/$1-copy.txt"
    for ((r = 1; r <= 2 * rounds; r++)); do
        [[ $1 == idle ]] || busy_guest
        one "$(other)" >>"$tmp/$1-shared.txt"
    done
    for ((r = 1; r <= 2 * rounds; r++)); do
        [[ $1 == idle ]] || busy_guest
        one "$(other)" --copy-storage >>"$tmp/$1-copy.txt"
    done
}

load=()
notbusy=0
name=idle
vm=$(new_vm idle "")
load+=("$(cut -d' ' -f1 /proc/loadavg)")
moves idle
load+=("$(cut -d' ' -f1 /proc/loadavg)")
# the idle guest stops, so the busy one has the CPU it would have alone
stop_vm
load+=("$(cut -d' ' -f1 /proc/loadavg)")
moves busy
: >"$tmp/busy-capped.txt"
for ((r = 1; r <= 2 * rounds; r++)); do
    busy_guest
    one "$(other)" --max-bandwidth "$busy_cap" >>"$tmp/busy-capped.txt"
done
load+=("$(cut -d' ' -f1 /proc/loadavg)")

echo
echo "Live migration between two namespace hosts, test guest (TCG, 1 vCPU, 256 MiB, counting; busy: also rewriting $busy_mb MiB of its RAM in a loop), $((2 * rounds)) moves each, median (min-max), load average ${load[*]} (1 min, at the start and end of the idle and busy moves):"
echo
echo "| guest | storage | downtime (ms) | total, QEMU (ms) | command, ask to row moved (ms) | RAM sent (MiB) | dirty rate at last pass (MiB/s) | highest CPU throttle (%) | moves without QEMU's figures | failed (no end in 240 s, cancelled) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for k in idle busy; do
    for f in shared copy capped; do
        [[ $k-$f != idle-capped ]] || continue
        case $f in
        shared) st="shared (one overlay)" ;;
        copy) st="not shared (NBD mirror)" ;;
        capped) st="shared, copy capped at $busy_cap MiB/s" ;;
        esac
        x=$tmp/$k-$f.txt
        echo "| $k | $st | $(stats "$x" 1) | $(stats "$x" 2) | $(stats "$x" 3) | $(stats "$x" 4) | $(stats "$x" 5) | $(stats "$x" 6) | $(missing "$x") | $(failed "$x") |"
    done
done
echo
echo "Busy guest still rewriting its RAM on the destination (a new ATRIUM-BUSY-PASS within 30 s) after $((6 * rounds - notbusy)) of its $((6 * rounds)) moves; $busy_n busy guests booted (a new one for the next move after one stopped being busy)."
echo
echo "Peer: none run. libvirt's virsh migrate is installed here, but two libvirtd instances on one machine, each in its own network namespace, need private /run/libvirt and /var/lib/libvirt (a mount namespace each, or session daemons under another user); not done yet."
