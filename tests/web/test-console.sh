#!/bin/bash
# A desktop opened in the browser, end to end: the TCG test guest's VNC
# console on a unix socket, the real atrium-displayd in front of it, the real
# broker, and chromium (playwright-core) running the portal's noVNC page.
# console.test.mjs proves the picture (the canvas against QEMU's own
# screendump), the keyboard (typed text comes back on the guest's serial),
# and reconnection (displayd restarted under the page: a new ticket, the
# picture again).
#
# usage: test-console.sh ATRIUM-BROKER ATRIUMCTL BRK-SEED ATRIUM-DISPLAYD
broker=${1:?usage: test-console.sh ATRIUM-BROKER ATRIUMCTL BRK-SEED ATRIUM-DISPLAYD}
ctl=${2:?}
seed=${3:?}
displayd=${4:?}
. "$(dirname "$0")/lib.sh"
guest=${ATRIUM_GUEST_DIR:?run through ctest (guest fixture)}
for need in qemu-system-x86_64 qemu-img openssl compare identify; do
    command -v "$need" >/dev/null || { echo "SKIP: $need is not installed"; exit 77; }
done

npm_deps

write_conf --run --display
create_db "$ctl" "$conf"
"$seed" user "$conninfo" alice 'correct horse' admin >/dev/null
uma=$("$seed" user "$conninfo" uma 'user pw' user)

start_broker "$broker" "$conf"
admin_login
pool=$(admin_post /pools '{"name":"desk","max_size":2,"spare":0,"protocols":["browser"]}')
admin_post "/pools/$pool/entitlements" "{\"user_id\":$uma}" >/dev/null
[[ -n $pool ]] || { echo "FAIL: could not create the pool"; exit 1; }
boot_test_vm "$pool" 120

start_daemon displayd 'msg="displayd ready"' 30 "$displayd" --config "$conf"
displayd_pid=$daemon_pid
echo "ok   displayd ready"

mkdir -p "$out/screenshots"
rc=0
ATRIUM_WEB_BASE=$base ATRIUM_WEB_SHOTS=$out/screenshots ATRIUM_WEB_TMP=$tmp ATRIUM_WEB_POOL=$pool \
    ATRIUM_WEB_QMP=$vmdir/qmp.sock ATRIUM_WEB_SERIAL=$tmp/serial.log ATRIUM_CHROMIUM=$chromium \
    ATRIUM_WEB_DISPLAYD=$displayd ATRIUM_WEB_CONF=$conf ATRIUM_WEB_DISPLAYD_PID=$displayd_pid \
    ATRIUM_WEB_HELPER=$src/tests/display/helper.py \
    timeout 300 node "$here/console.test.mjs" "$out/node/node_modules/playwright-core/index.mjs" || rc=$?
if [[ $rc -ne 0 ]]; then
    echo "--- broker log (last 20 lines)"; tail -20 "$tmp/broker.log"
    echo "--- displayd log (last 30 lines)"; tail -30 "$tmp/displayd.log"
    for f in "$tmp"/displayd2.log; do [[ -f $f ]] && { echo "--- $f"; tail -30 "$f"; }; done
    echo "--- serial (last 10 lines)"; tail -10 "$tmp/serial.log"
fi
exit $rc
