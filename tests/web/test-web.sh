#!/bin/bash
# The web console in a real browser: Debian's chromium driven by
# playwright-core (npm, pinned in package-lock.json, installed into the build
# dir; no browser is ever downloaded) against the real atrium-broker serving
# web/ from the source tree, on a database of its own on the run's private
# PostgreSQL.  The browser checks are in web.test.mjs; this script prepares
# the site (schema, an admin, a user, an entitled pool with ready VM rows)
# and cleans everything up in its EXIT trap, also on failure or timeout.
#
# usage: test-web.sh ATRIUM-BROKER ATRIUMCTL BRK-SEED
set -euo pipefail

broker=${1:?usage: test-web.sh ATRIUM-BROKER ATRIUMCTL BRK-SEED}
ctl=${2:?}
seed=${3:?}
here=$(cd "$(dirname "$0")" && pwd)
src=${ATRIUM_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
out=${ATRIUM_BINARY_DIR:?run through ctest}/tests/web
chromium=${ATRIUM_CHROMIUM:-/usr/bin/chromium}

for need in node npm psql curl; do
    command -v "$need" >/dev/null || { echo "SKIP: $need is not installed"; exit 77; }
done
[[ -x $chromium ]] || { echo "SKIP: $chromium is missing (apt-get install chromium)"; exit 77; }

server=$(cat "${ATRIUM_TEST_PG_FILE:?run through ctest}")
tmp=$(mktemp -d /tmp/atrium-web.XXXXXX)
db=web_$$_$RANDOM
conninfo="$server dbname=$db"
pids=()

cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || kill -9 "$p" 2>/dev/null || true; done
    timeout 20 psql -X -q "$server" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' TERM INT

psql_db() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$conninfo" -c "$1"; }

# ------------------------------------------------------------ npm deps ---
# playwright-core only (a driver, no browser); reinstalled when the lock changes.
mkdir -p "$out/node"
if ! cmp -s "$here/package-lock.json" "$out/node/package-lock.json" ||
    [[ ! -f $out/node/node_modules/playwright-core/package.json ]]; then
    cp "$here/package.json" "$here/package-lock.json" "$out/node/"
    (cd "$out/node" && timeout 240 npm ci --no-audit --no-fund --loglevel=error) ||
        { echo "FAIL: npm ci of playwright-core"; exit 1; }
fi

# ---------------------------------------------------------------- site ---
psql -X -q -v ON_ERROR_STOP=1 "$server" -c "CREATE DATABASE $db" >/dev/null
conf=$tmp/atrium.conf
# No display gateway runs here: noVNC is pointed at a port nobody listens on,
# so the console page's reconnect path is what gets exercised.
vnc_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$conf" <<EOF
[db]
url = $conninfo
[broker]
listen = 127.0.0.1
tls = false
threads = 4
web_root = $src/web
[display]
vnc_port = $vnc_port
EOF
"$ctl" --config "$conf" db migrate >/dev/null
"$seed" user "$conninfo" alice 'correct horse' admin >/dev/null
"$seed" user "$conninfo" uma 'user pw' user >/dev/null
"$seed" user "$conninfo" otto 'otto pw' operator >/dev/null
psql_db "UPDATE role_policies SET totp_required = true WHERE role = 'operator'" >/dev/null

# Start the broker on an ephemeral port; wait (bounded) for "broker ready".
fifo=$tmp/broker.fifo
mkfifo "$fifo"
"$broker" --config "$conf" --port 0 2>"$fifo" &
pids+=("$!")
exec {fd}<"$fifo"
port=
while IFS= read -r -t 60 line <&"$fd"; do
    printf '%s\n' "$line" >>"$tmp/broker.log"
    if [[ $line == *'msg="broker listening"'* && $line =~ port=([0-9]+) ]]; then
        port=${BASH_REMATCH[1]}
    fi
    [[ $line == *'msg="broker ready"'* ]] && break
done
cat <&"$fd" >>"$tmp/broker.log" &
pids+=("$!")
exec {fd}<&-
[[ -n $port ]] || { echo "FAIL: broker did not become ready"; cat "$tmp/broker.log"; exit 1; }
base=http://127.0.0.1:$port

# The pool uma is entitled to (through a group), made through the API as the
# admin; its VMs are rows in state ready, as no hostd runs in this test.
jar=$tmp/admin.jar
login=$(curl -sS --max-time 20 -c "$jar" -H 'Content-Type: application/json' \
    --data-binary '{"username":"alice","password":"correct horse"}' "$base/api/v1/login")
csrf=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["csrf_token"])' "$login")
A=(-sS --max-time 20 -b "$jar" -H 'Content-Type: application/json' -H "X-CSRF-Token: $csrf")
jid() { python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
office=$(curl "${A[@]}" --data-binary '{"name":"office","description":"Office desktop","max_size":10,"spare":1,"protocols":["browser","rdp","spice"]}' "$base/api/v1/pools" | jid)
staff=$(curl "${A[@]}" --data-binary '{"name":"staff"}' "$base/api/v1/groups" | jid)
uma=$(psql_db "SELECT id FROM users WHERE username = 'uma'")
curl "${A[@]}" --data-binary "{\"user_id\":$uma}" "$base/api/v1/groups/$staff/members" >/dev/null
curl "${A[@]}" --data-binary "{\"group_id\":$staff}" "$base/api/v1/pools/$office/entitlements" >/dev/null
psql_db "INSERT INTO vms (name, pool_id, state) SELECT 'office-' || i, $office, 'ready' FROM generate_series(1, 3) i" >/dev/null

# ------------------------------------------------------------- browser ---
mkdir -p "$out/screenshots"
rc=0
ATRIUM_WEB_BASE=$base ATRIUM_WEB_DB=$conninfo ATRIUM_WEB_SHOTS=$out/screenshots \
    ATRIUM_WEB_POOL=$office ATRIUM_WEB_VNC_PORT=$vnc_port ATRIUM_CHROMIUM=$chromium \
    NODE_PATH=$out/node/node_modules \
    timeout 240 node "$here/web.test.mjs" "$out/node/node_modules/playwright-core/index.mjs" || rc=$?
if [[ $rc -ne 0 ]]; then
    echo "--- broker log (last 40 lines)"
    tail -40 "$tmp/broker.log"
fi
exit $rc
