#!/bin/bash
# The admin console's session control in chromium (playwright-core, as
# tests/web does), against the TCG test guest, the real atrium-displayd and
# broker: uma's desktop is open in a native VNC viewer (tests/display/vnc-hold);
# the Sessions page's "Shadow" opens a view-only console that shows the
# guest while uma stays connected, keys typed into it never reach the guest,
# the list shows the session shadowed; "Disconnect" drops uma's viewer; the
# Pools page's entitlement "Remove" and the Groups page's member "Remove"
# take access away.  web-session-control.test.mjs has the page steps.
#
# usage: web-session-control.sh ATRIUM-BROKER ATRIUMCTL BRK-SEED ATRIUM-DISPLAYD VNC-HOLD
broker=${1:?usage: web-session-control.sh ATRIUM-BROKER ATRIUMCTL BRK-SEED ATRIUM-DISPLAYD VNC-HOLD}
ctl=${2:?}
seed=${3:?}
displayd=${4:?}
hold=${5:?}
mine=$(cd "$(dirname "$0")" && pwd)
src=${ATRIUM_SOURCE_DIR:?run through ctest}
# the web tests' harness: database, playwright-core in the build dir, daemons
. "$src/tests/web/lib.sh"
here=$src/tests/web # npm_deps installs from tests/web's lock file
guest=${ATRIUM_GUEST_DIR:?run through ctest (guest fixture)}
for need in qemu-system-x86_64 qemu-img openssl; do
    command -v "$need" >/dev/null || { echo "SKIP: $need is not installed"; exit 77; }
done

npm_deps

write_conf --run --display
create_db "$ctl" "$conf"
"$seed" user "$conninfo" alice 'correct horse' admin >/dev/null
uma=$("$seed" user "$conninfo" uma 'user pw' user)

start_broker "$broker" "$conf"
admin_login
pool=$(admin_post /pools '{"name":"desk","max_size":2,"spare":0,"protocols":["vnc","browser"]}')
[[ -n $pool ]] || { echo "FAIL: could not create the pool"; exit 1; }
admin_post "/pools/$pool/entitlements" "{\"user_id\":$uma}" >/dev/null
group=$(admin_post /groups '{"name":"staff"}')
admin_post "/groups/$group/members" "{\"user_id\":$uma}" >/dev/null
# one VM, ready: this test plays hostd's part and runs its QEMU itself
boot_test_vm "$pool" 150
start_daemon displayd 'msg="displayd ready"' 30 "$displayd" --config "$conf"
echo "ok   displayd ready"

# uma connects with a native viewer through the broker's connect
login=$(curl -sS --max-time 20 -c "$tmp/uma.jar" -H 'Content-Type: application/json' \
    --data-binary '{"username":"uma","password":"user pw"}' "$base/api/v1/login")
uma_csrf=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["csrf_token"])' "$login")
reply=$(curl -sS --max-time 20 -b "$tmp/uma.jar" -H 'Content-Type: application/json' \
    -H "X-CSRF-Token: $uma_csrf" --data-binary '{"protocol":"vnc"}' "$base/api/v1/desktops/$pool/connect")
pw=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["vnc"]["password"])' "$reply") ||
    { echo "FAIL: connect: $reply"; exit 1; }
"$hold" 127.0.0.1 "$vnc_port" "$pw" >"$tmp/owner.log" 2>&1 &
owner=$!
pids+=("$owner")
timeout 60 grep -q -m1 '^ready' <(timeout 60 tail -F -n +1 "$tmp/owner.log" 2>/dev/null) ||
    { echo "FAIL: uma's viewer got no picture: $(cat "$tmp/owner.log")"; exit 1; }
echo "ok   uma is connected with a native VNC viewer"

mkdir -p "$out/screenshots"
rc=0
ATRIUM_WEB_BASE=$base ATRIUM_WEB_SHOTS=$out/screenshots ATRIUM_WEB_POOL=$pool ATRIUM_WEB_GROUP=$group \
    ATRIUM_WEB_SERIAL=$tmp/serial.log ATRIUM_CHROMIUM=$chromium ATRIUM_WEB_OWNER_PID=$owner \
    ATRIUM_WEB_CONNINFO=$conninfo \
    timeout 300 node "$mine/web-session-control.test.mjs" "$out/node/node_modules/playwright-core/index.mjs" || rc=$?
if [[ $rc -ne 0 ]]; then
    echo "--- broker log (last 20 lines)"; tail -20 "$tmp/broker.log"
    echo "--- displayd log (last 30 lines)"; grep -v level=debug "$tmp/displayd.log" | tail -30
    echo "--- viewer"; cat "$tmp/owner.log"
fi
exit $rc
