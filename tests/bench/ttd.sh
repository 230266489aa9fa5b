#!/bin/bash
# Time to desktop (tests/bench/ttd.c) on the whole appliance: atrium-hostd
# with TCG test guests, atrium-poold, atrium-broker (TLS), atrium-displayd on
# loopback.  VNC and RDP, with a spare ready (pool "desk": spare 2) and cold
# (pool "cold": each run starts while its only spare is being provisioned), and
# cold on a pool of instant clones of the same guest (pool "instant"), with the
# ratio of the two cold VNC totals to a usable guest.  Prints a Markdown table
# of p50 / p95 per logon segment.
#
# usage: ttd.sh TTD BIN_DIR GUEST_DIR [WARM_RUNS [COLD_RUNS]]
set -euo pipefail
ttd=${1:?usage: ttd.sh TTD BIN_DIR GUEST_DIR [WARM_RUNS [COLD_RUNS]]}
# TTD_WARM / TTD_COLD override the run counts (a quick look: TTD_WARM=2 TTD_COLD=2).
bin=$2 guest=$3 warm=${TTD_WARM:-${4:-20}} cold=${TTD_COLD:-${5:-5}}
src=$(cd "$(dirname "$0")/../.." && pwd)
export ATRIUM_SOURCE_DIR=${ATRIUM_SOURCE_DIR:-$src}
. "$src/tests/harness/lib.sh"
atr_init ttd
trap 'exit 124' TERM INT
. "$src/tests/e2e/appliance.sh"

app_configure "$bin" "$guest"
ctl pool create desk --image guest --min 3 --spare 2 --max 3 --memory 256 --vcpus 1 \
    --protocols vnc,rdp >/dev/null
ctl pool create cold --image guest --min 0 --spare 1 --max 2 --memory 256 --vcpus 1 \
    --protocols vnc,rdp >/dev/null
# The same guest as instant clones: cold runs there resume from the pool's
# template (built once, when its first VM was provisioned) instead of booting.
ctl pool create instant --image guest --clone instant --min 0 --spare 1 --max 2 --memory 256 \
    --vcpus 1 --protocols vnc,rdp >/dev/null
pw=ttd-$RANDOM-$$
printf '%s\n' "$pw" | ctl user create person --password-stdin >/dev/null
ctl user entitle person desk >/dev/null
ctl user entitle person cold >/dev/null
ctl user entitle person instant >/dev/null
for d in hostd poold broker displayd; do app_start "$d"; done
for d in broker displayd hostd poold; do
    app_wait_healthy "$d" 0 60 || { echo "ttd: $d did not come up"; app_diag; exit 1; }
done
until_sql 300 "SELECT count(*) = 3 FROM vms v JOIN pools p ON p.id = v.pool_id
               WHERE p.name = 'desk' AND v.state = 'ready'" || { echo "ttd: pool not ready"; app_diag; exit 1; }
until_sql 600 "SELECT count(*) = 1 FROM vms v JOIN pools p ON p.id = v.pool_id
               WHERE p.name = 'instant' AND v.state = 'ready'" ||
    { echo "ttd: the instant pool's template and first clone not ready"; app_diag; exit 1; }

accel=$(q "SELECT accel FROM hosts LIMIT 1")
# POOL PROTOCOL RUNS [--cold] [LABEL_SUFFIX]: with a suffix (the linked/instant
# comparison) the run also waits for the guest to be usable (ttd --runtime);
# the other rows keep the first frame as their end (guest usable 0).
run() {
    local pool
    pool=$(q "SELECT id FROM pools WHERE name = '$1'")
    "$ttd" --broker "https://127.0.0.1:$broker_port" --cacert "$tmp/cert.pem" --db "$dbci" \
        --pool "$pool" --user person --password "$pw" --protocol "$2" --vnc "$vnc_port" \
        --rdp "$rdp_port" --runs "$3" --label "$2 ($accel)${5:-}" ${5:+--runtime "$tmp/run"} \
        ${4:-} 2>>"$tmp/ttd.err"
}
rc=0
echo "time to desktop: p50 / p95 in ms over the runs (accelerator: $accel)"
TTD_HEADER=1 run desk vnc "$warm" || rc=1
run desk rdp "$warm" || rc=1
run cold rdp "$cold" --cold || rc=1
run cold vnc "$cold" --cold ", linked clones" | tee "$tmp/linked.row" || rc=1
run instant vnc "$cold" --cold ", instant clones" | tee "$tmp/instant.row" || rc=1
# total p50 is the last column's first number
p50() { awk -F'|' '{ split($(NF-1), a, "/"); gsub(/ /, "", a[1]); print a[1] }' "$1"; }
lt=$(p50 "$tmp/linked.row") it=$(p50 "$tmp/instant.row")
if [[ $lt =~ ^[0-9]+$ && $it =~ ^[0-9]+$ && $it -gt 0 ]]; then
    echo
    echo "No spare ready, VNC, to a usable desktop (p50): linked clone (cold boot) $lt ms," \
        "instant clone $it ms: $(awk -v l="$lt" -v i="$it" 'BEGIN { printf "%.1f", l / i }')x faster."
fi
if [[ -s $tmp/ttd.err ]]; then
    echo
    echo "failed runs:"
    sort "$tmp/ttd.err" | uniq -c | sed 's/^/  /'
fi
exit $rc
