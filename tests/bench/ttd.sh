#!/bin/bash
# Time to desktop (tests/bench/ttd.c) on the whole appliance: atrium-hostd
# with TCG test guests, atrium-poold, atrium-broker (TLS), atrium-displayd on
# loopback.  VNC and RDP, with a spare ready (pool "desk": spare 2) and cold
# (pool "cold": each run starts while its only spare is being provisioned).  Prints a Markdown table
# of p50 / p95 per logon segment.
#
# usage: ttd.sh TTD BIN_DIR GUEST_DIR [WARM_RUNS [COLD_RUNS]]
set -euo pipefail
ttd=${1:?usage: ttd.sh TTD BIN_DIR GUEST_DIR [WARM_RUNS [COLD_RUNS]]}
bin=$2 guest=$3 warm=${4:-20} cold=${5:-5}
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
pw=ttd-$RANDOM-$$
printf '%s\n' "$pw" | ctl user create person --password-stdin >/dev/null
ctl user entitle person desk >/dev/null
ctl user entitle person cold >/dev/null
for d in hostd poold broker displayd; do app_start "$d"; done
for d in broker displayd hostd poold; do
    app_wait_healthy "$d" 0 60 || { echo "ttd: $d did not come up"; app_diag; exit 1; }
done
until_sql 300 "SELECT count(*) = 3 FROM vms v JOIN pools p ON p.id = v.pool_id
               WHERE p.name = 'desk' AND v.state = 'ready'" || { echo "ttd: pool not ready"; app_diag; exit 1; }

accel=$(q "SELECT accel FROM hosts LIMIT 1")
run() { # POOL PROTOCOL RUNS [--cold]
    local pool
    pool=$(q "SELECT id FROM pools WHERE name = '$1'")
    "$ttd" --broker "https://127.0.0.1:$broker_port" --cacert "$tmp/cert.pem" --db "$dbci" \
        --pool "$pool" --user person --password "$pw" --protocol "$2" --vnc "$vnc_port" \
        --rdp "$rdp_port" --runs "$3" --label "$2 ($accel)" ${4:-} 2>>"$tmp/ttd.err"
}
rc=0
echo "time to desktop: p50 / p95 in ms over the runs (accelerator: $accel)"
TTD_HEADER=1 run desk vnc "$warm" || rc=1
run desk rdp "$warm" || rc=1
run cold vnc "$cold" --cold || rc=1
run cold rdp "$cold" --cold || rc=1
if [[ -s $tmp/ttd.err ]]; then
    echo
    echo "failed runs:"
    sort "$tmp/ttd.err" | uniq -c | sed 's/^/  /'
fi
exit $rc
