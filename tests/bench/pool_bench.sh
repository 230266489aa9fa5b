#!/bin/bash
# pool_bench: what provisioning costs (Release build; ctest -L bench -R pool -V).
#   - 50 linked clones, disk only: sequential median/total, 4 threads at once
#   - disk use of a clone vs its golden image
#   - time from an assignment to its replacement spare being ready, with the
#     real atrium-hostd (TCG guests) and atrium-poold, median of 3
set -euo pipefail
clones=${1:?usage: pool_bench.sh POOL_BENCH_CLONES HOSTD POOLD ATRIUMCTL POOL_ASSIGN GUEST_DIR}
hostd=$2 poold=$3 ctl=$4 assign=$5 guest=$6
. "$(dirname "$0")/../harness/lib.sh"
atr_init pool-bench
. "$(dirname "$0")/../pool/lib.sh"
now_ms() { echo $(($(date +%s%N) / 1000000)); }

mkdir -p "$tmp/clones"
cp "$guest/disk.qcow2" "$tmp/base.qcow2"
"$clones" "$tmp/base.qcow2" "$tmp/clones" >"$tmp/clones.out"
val() { sed -n "s/^$1 //p" "$tmp/clones.out"; }

pool_host_init "$ctl" "$guest" bench
"$ctl" --config "$conf" pool create bench --image guest --min 0 --spare 1 --max 8 --memory 256 --vcpus 1 >/dev/null
pool_host_start "$hostd" "$poold"
wait_ready() { # wait until the pool has a ready VM other than those assigned; bounded
    local deadline=$((SECONDS + 300))
    while ((SECONDS < deadline)); do
        [[ $(q "SELECT count(*) FROM vms WHERE state = 'ready'") -ge 1 ]] && return 0
        sleep 0.2
    done
    echo "pool_bench: no ready VM within 300 s" >&2
    return 1
}
wait_ready
samples=()
for i in 1 2 3; do
    t0=$(now_ms)
    "$assign" "$dbci" assign "user$i" bench >/dev/null
    wait_ready
    samples+=($(($(now_ms) - t0)))
done
median=$(printf '%s\n' "${samples[@]}" | sort -n | sed -n 2p)

printf '%-56s %12s\n' "pool_bench (TCG guests, 2 cores)" "result"
printf '%-56s %9s ms\n' "linked clone, disk only (median of 50)" "$(val clone_median_ms)"
printf '%-56s %9s ms\n' "linked clone, disk only (p90 of 50)" "$(val clone_p90_ms)"
printf '%-56s %9s s\n' "50 linked clones one after another" "$(val clones_50_sequential_s)"
printf '%-56s %9s s\n' "50 linked clones from 4 threads at once" "$(val clones_50_parallel_s)"
printf '%-56s %9s\n' "clones failed on a storage lock" "$(val clones_parallel_failures)"
printf '%-56s %9s KiB\n' "disk use of a fresh clone" "$(($(val clone_disk_bytes) / 1024))"
printf '%-56s %9s KiB\n' "disk use of its golden image" "$(($(val base_disk_bytes) / 1024))"
printf '%-56s %9s ms\n' "assignment -> replacement spare ready (median of 3)" "$median"
printf '%-56s %12s\n' "  samples (ms)" "${samples[*]}"
