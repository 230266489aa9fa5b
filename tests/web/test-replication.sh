#!/bin/bash
# Disaster-recovery replication from the admin console in Debian's chromium
# (playwright-core) against the real atrium-broker: the VMs page's
# Replication column and dialog.  The browser checks are in
# replication.test.mjs; this script makes the site (an admin, two host rows
# and a running VM row on the first) and cleans up in lib.sh's EXIT trap.
# No hostd runs here: what the hostds would write (a complete copy, a sync
# error, the end of the recovery task) the browser script writes with psql;
# real syncs and recoveries are multihost.replicate's.
#
# usage: test-replication.sh ATRIUM-BROKER ATRIUMCTL BRK-SEED
broker=${1:?usage: test-replication.sh ATRIUM-BROKER ATRIUMCTL BRK-SEED}
ctl=${2:?}
seed=${3:?}
. "$(dirname "$0")/lib.sh"

npm_deps
write_conf
create_db "$ctl" "$conf"
"$seed" user "$conninfo" alice 'correct horse' admin >/dev/null
start_broker "$broker" "$conf"

psql_db "INSERT INTO hosts (name, address, state, heartbeat_at) VALUES
    ('hv1', '10.0.0.1', 'online', now()), ('hv2', '10.0.0.2', 'online', now());
    INSERT INTO vms (name, host_id, state, actual_power, desired_power)
    SELECT 'rep-vm', id, 'ready', 'running', 'running' FROM hosts WHERE name = 'hv1'" >/dev/null

mkdir -p "$out/screenshots"
rc=0
ATRIUM_WEB_DB=$conninfo ATRIUM_WEB_BASE=$base ATRIUM_WEB_SHOTS=$out/screenshots ATRIUM_CHROMIUM=$chromium \
    timeout 240 node "$here/replication.test.mjs" "$out/node/node_modules/playwright-core/index.mjs" || rc=$?
if [[ $rc -ne 0 ]]; then
    echo "--- broker log (last 40 lines)"
    tail -40 "$tmp/broker.log"
fi
exit $rc
