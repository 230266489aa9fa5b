#!/bin/bash
# The web console in a real browser: Debian's chromium driven by
# playwright-core (npm, pinned in package-lock.json, installed into the build
# dir; no browser is ever downloaded) against the real atrium-broker serving
# web/ from the source tree, on a database of its own on the run's private
# PostgreSQL.  The browser checks are in web.test.mjs; this script prepares
# the site (schema, an admin, a user, an operator (who will have to use TOTP), an
# entitled pool with ready VM rows) and cleans up in lib.sh's EXIT trap.
#
# usage: test-web.sh ATRIUM-BROKER ATRIUMCTL BRK-SEED
broker=${1:?usage: test-web.sh ATRIUM-BROKER ATRIUMCTL BRK-SEED}
ctl=${2:?}
seed=${3:?}
. "$(dirname "$0")/lib.sh"

npm_deps

# No display gateway runs here: noVNC is pointed at a port nobody listens on,
# so the console page's reconnect path is what gets exercised.
vnc_port=$(freeport)
conf=$tmp/atrium.conf
cat >"$conf" <<CONF
[db]
url = $conninfo
[broker]
listen = 127.0.0.1
tls = false
threads = 4
web_root = $src/web
[display]
vnc_port = $vnc_port
CONF
create_db "$ctl" "$conf"
"$seed" user "$conninfo" alice 'correct horse' admin >/dev/null
"$seed" user "$conninfo" uma 'user pw' user >/dev/null
"$seed" user "$conninfo" otto 'otto pw' operator >/dev/null

start_broker "$broker" "$conf"

# The pool uma is entitled to (through a group), made through the API as the
# admin; its VMs are rows in state ready, as no hostd runs in this test.
admin_login
office=$(admin_post /pools '{"name":"office","description":"Office desktop","max_size":10,"spare":1,"protocols":["browser","rdp","spice"]}')
staff=$(admin_post /groups '{"name":"staff"}')
uma=$(psql_db "SELECT id FROM users WHERE username = 'uma'")
admin_post "/groups/$staff/members" "{\"user_id\":$uma}" >/dev/null
admin_post "/pools/$office/entitlements" "{\"group_id\":$staff}" >/dev/null
[[ -n $office && -n $staff ]] || { echo "FAIL: could not set up the pool through the API"; exit 1; }
psql_db "INSERT INTO vms (name, pool_id, state) SELECT 'office-' || i, $office, 'ready' FROM generate_series(1, 3) i" >/dev/null

# A host row (no hostd runs: maintenance is only a state here).
psql_db "INSERT INTO hosts (name, address, cpus, memory_mb, cpu_capacity, memory_capacity_mb, accel, heartbeat_at)
         VALUES ('hv1', '10.0.0.1', 8, 32768, 64, 28672, 'tcg', now())" >/dev/null
# An image version to push (a row only: no file is needed to point a pool at it).
image=$(psql_db "WITH i AS (INSERT INTO images (name) VALUES ('desktop') RETURNING id)
                 INSERT INTO image_versions (image_id, version, state) SELECT id, 1, 'ready' FROM i RETURNING id")

mkdir -p "$out/screenshots"
rc=0
ATRIUM_WEB_DB=$conninfo ATRIUM_WEB_BASE=$base ATRIUM_WEB_SHOTS=$out/screenshots ATRIUM_WEB_POOL=$office ATRIUM_WEB_IMAGE=$image \
    ATRIUM_WEB_VNC_PORT=$vnc_port ATRIUM_CHROMIUM=$chromium \
    timeout 240 node "$here/web.test.mjs" "$out/node/node_modules/playwright-core/index.mjs" || rc=$?
if [[ $rc -ne 0 ]]; then
    echo "--- broker log (last 40 lines)"
    tail -40 "$tmp/broker.log"
fi
exit $rc
