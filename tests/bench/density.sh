#!/bin/bash
# Density: idle test-guest desktops per host, with and without KSM.
#
# atrium-hostd and atrium-poold run one pool of idle desktops (the test guest,
# 256 MiB each, TCG) grown step by step up to MAX_VMS (bounded: this never
# fills the machine); at each step, once every guest printed its boot marker
# and 10 s passed, the QEMUs' proportional set size (PSS, smaps_rollup) is
# summed.  The marginal PSS per desktop, fitted over the steps, divides the
# host's MemAvailable at the start: that is the extrapolated number of idle
# desktops before memory runs out.  Then KSM is switched on
# (/sys/kernel/mm/ksm/run, restored on exit) with the largest step still
# running, and PSS is measured again after KSM scanned everything twice
# (bounded, 120 s).
#
# KSM is host-wide: other QEMUs on the machine are scanned too, and pages our
# guests share with theirs lower our PSS as well; the table says how many
# pages KSM shared in total.  When /sys/kernel/mm/ksm is missing or not
# writable the KSM rows say so and only the KSM-off rows are measured.
#
# usage: density.sh BIN_DIR GUEST_DIR [MAX_VMS [STEP]]
set -euo pipefail
bin=${1:?usage: density.sh BIN_DIR GUEST_DIR [MAX_VMS [STEP]]}
guest=$2 max=${3:-8} step=${4:-2}
src=$(cd "$(dirname "$0")/../.." && pwd)
export ATRIUM_SOURCE_DIR=${ATRIUM_SOURCE_DIR:-$src}
. "$src/tests/harness/lib.sh"
atr_init density
trap 'exit 124' TERM INT
. "$src/tests/e2e/appliance.sh"

ksm=/sys/kernel/mm/ksm
ksm_saved=()
ksm_restore() {
    local kv
    for kv in "${ksm_saved[@]}"; do echo "${kv#*=}" >"$ksm/${kv%%=*}" 2>/dev/null || true; done
}
atr_on_exit ksm_restore

app_configure "$bin" "$guest"
ctl pool create dense --image guest --min 0 --spare 0 --max "$max" --memory 256 --vcpus 1 \
    --protocols vnc >/dev/null
app_start hostd
app_start poold
app_wait_healthy hostd 0 60 && app_wait_healthy poold 0 60 || { echo "density: daemons did not start"; exit 1; }

avail_kb() { awk '/^MemAvailable:/ {print $2}' /proc/meminfo; }
pss_kb() { # sum of this run's QEMUs' PSS
    local p t=0 v
    for p in $(app_qemu_pids); do
        v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
        t=$((t + v))
    done
    echo "$t"
}
booted() { # N: N VMs ready whose guests printed the boot marker
    local n=0 id
    for id in $(q "SELECT id FROM vms WHERE state = 'ready'"); do
        grep -q ATRIUM-BOOT-OK "$tmp/run/vms/$id/serial.log" 2>/dev/null && n=$((n + 1))
    done
    [[ $n -ge $1 ]]
}

avail0=$(avail_kb)
declare -a xs=() ys=()
rows=()
measure() { # LABEL: one row per step, fills xs/ys for the fit
    local k pss
    xs=() ys=()
    for ((k = step; k <= max; k += step)); do
        ctl pool resize dense --min "$k" --spare "$k" --max "$max" >/dev/null
        local deadline=$((SECONDS + 300))
        until booted "$k" || ((SECONDS > deadline)); do sleep 1; done
        booted "$k" || { echo "density: $k guests did not boot in 300 s"; app_diag; exit 1; }
        sleep 10
        pss=$(pss_kb)
        xs+=("$k") ys+=("$pss")
        rows+=("| $1 | $k | $((pss / 1024)) | $((pss / k / 1024)) | $(($(avail_kb) / 1024)) |")
    done
}
fit() { # marginal kB per VM between the first and the last step
    local n=${#xs[@]}
    ((n > 1)) || { echo $((ys[0] / xs[0])); return; }
    echo $(((ys[n - 1] - ys[0]) / (xs[n - 1] - xs[0])))
}
# KSM: wait (bounded, 120 s) for two more full scans
ksm_settle() {
    local f0 deadline=$((SECONDS + 120))
    f0=$(cat "$ksm/full_scans")
    while (($(cat "$ksm/full_scans") < f0 + 2 && SECONDS < deadline)); do sleep 1; done
}

echo "density: bounded at $max desktops (step $step); MemAvailable at start $((avail0 / 1024)) MiB"
ksm_orig=$(cat "$ksm/run" 2>/dev/null || echo missing)
if [[ $ksm_orig != missing ]]; then
    # start from KSM off, whatever the machine had
    ksm_saved+=("run=$ksm_orig" "pages_to_scan=$(cat $ksm/pages_to_scan)" "sleep_millisecs=$(cat $ksm/sleep_millisecs)")
    echo 0 >"$ksm/run" 2>/dev/null || true
fi
measure off
slope_off=$(fit)
ksm_note=""
if [[ $ksm_orig == missing ]]; then
    ksm_note="KSM: /sys/kernel/mm/ksm does not exist on this kernel; not measured"
elif ! { echo 1000 >"$ksm/pages_to_scan" && echo 20 >"$ksm/sleep_millisecs" && echo 1 >"$ksm/run"; } 2>/dev/null; then
    ksm_note="KSM: /sys/kernel/mm/ksm is not writable here; not measured"
else
    # the same desktops, now merged: two full scans (bounded)
    ksm_settle
    pss=$(pss_kb)
    k=${xs[-1]}
    rows+=("| on | $k | $((pss / 1024)) | $((pss / k / 1024)) | $(($(avail_kb) / 1024)) |")
    per_on=$((pss / k))
    ksm_note="KSM: pages_sharing=$(cat $ksm/pages_sharing) pages_shared=$(cat $ksm/pages_shared) (host-wide, 4 KiB pages) at the end"
fi

echo
echo "| KSM | desktops | PSS total MiB | PSS per desktop MiB | host MemAvailable MiB |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "| KSM | marginal PSS per desktop | idle desktops before MemAvailable ($((avail0 / 1024)) MiB) runs out (extrapolated) |"
echo "|---|---|---|"
echo "| off | $((slope_off / 1024)) MiB | $((avail0 / (slope_off > 0 ? slope_off : 1))) |"
[[ -z ${per_on:-} ]] || echo "| on (PSS per desktop at $max) | $((per_on / 1024)) MiB | $((avail0 / (per_on > 0 ? per_on : 1))) |"
echo
echo "$ksm_note"
app_teardown_vms 180 >/dev/null || true
