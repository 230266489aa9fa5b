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
# running, and PSS is measured again once KSM's merging has settled.
#
# PSS is the right measure for KSM: a merged page is one page mapped by every
# process that shares it, and PSS counts it as 4 KiB divided by its number of
# mappings.  But KSM merges late: the scan that is under way when it is
# switched on counts as the first full scan, the next one only records each
# page's checksum, and a page merges no earlier than the scan after that, once
# its checksum stayed the same (guest RAM sits in transparent huge pages,
# which KSM splits as it merges them).  So after two full scans nothing of the
# guests was merged yet (an earlier version of this bench measured there and
# saw no saving); measured here, an idle test guest's PSS fell from 232 MiB to
# 137 MiB only in scans 4 to 6.  The bench waits for at least 4 full scans and
# then until a whole scan adds less than 1 % merged pages to our QEMUs
# (/proc/PID/ksm_stat), bounded at 300 s, and says how long that took.
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
merged_pages() { # pages of this run's QEMUs that KSM merged (ksm_merging_pages)
    local p t=0 v
    for p in $(app_qemu_pids); do
        v=$(awk '/^ksm_merging_pages/ {print $2}' "/proc/$p/ksm_stat" 2>/dev/null || true)
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
# KSM: wait until merging settled (see the top of this file), bounded at 300 s;
# sets settle_note
ksm_settle() {
    local f0 f last=-1 m seen=0 t0=$SECONDS deadline=$((SECONDS + 300))
    f0=$(cat "$ksm/full_scans")
    while ((SECONDS < deadline)); do
        f=$(cat "$ksm/full_scans")
        if ((f >= f0 + 4 && f != seen)); then
            seen=$f
            m=$(merged_pages)
            if ((last >= 0 && m - last <= last / 100)); then
                settle_note="settled after $((f - f0)) full scans, $((SECONDS - t0)) s"
                return 0
            fi
            last=$m
        fi
        sleep 1
    done
    settle_note="NOT settled: bound of 300 s reached after $(($(cat "$ksm/full_scans") - f0)) full scans"
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
    # the same desktops, now merged (bounded)
    ksm_settle
    pss=$(pss_kb)
    merged=$(merged_pages)
    k=${xs[-1]}
    rows+=("| on | $k | $((pss / 1024)) | $((pss / k / 1024)) | $(($(avail_kb) / 1024)) |")
    per_on=$((pss / k))
    pss_off=${ys[-1]}
    ksm_note="KSM $settle_note: the $k desktops' PSS fell from $((pss_off / 1024)) to $((pss / 1024)) MiB ($(((pss_off - pss) / 1024)) MiB saved, $(((pss_off - pss) / k / 1024)) MiB per desktop); $((merged * 4 / 1024)) MiB of their pages are merged pages (ksm_merging_pages); host-wide pages_sharing=$(cat $ksm/pages_sharing) pages_shared=$(cat $ksm/pages_shared) (4 KiB pages)"
fi

# run-all keeps each table with the line right before it: the KSM note goes
# there, so PERFORMANCE.md shows how long KSM took and what it saved
echo
echo "density: PSS of this run's QEMUs at each step with KSM off, then with KSM on:"
echo "| KSM | desktops | PSS total MiB | PSS per desktop MiB | host MemAvailable MiB |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "$ksm_note"
echo "| KSM | marginal PSS per desktop | idle desktops before MemAvailable ($((avail0 / 1024)) MiB) runs out (extrapolated) |"
echo "|---|---|---|"
echo "| off | $((slope_off / 1024)) MiB | $((avail0 / (slope_off > 0 ? slope_off : 1))) |"
[[ -z ${per_on:-} ]] || echo "| on (PSS per desktop at $max) | $((per_on / 1024)) MiB | $((avail0 / (per_on > 0 ? per_on : 1))) |"
app_teardown_vms 180 >/dev/null || true
