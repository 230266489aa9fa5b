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

run=$tmp/run
vnc_port=$(freeport) spice_port=$(freeport) rdp_port=$(freeport)
# displayd always has TLS ready (RDP): a throw-away self-signed certificate
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=atrium-web-e2e \
    -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
conf=$tmp/atrium.conf
cat >"$conf" <<CONF
[db]
url = $conninfo
[paths]
runtime_dir = $run
[broker]
listen = 127.0.0.1
tls = false
threads = 4
web_root = $src/web
[display]
listen = 127.0.0.1
vnc_port = $vnc_port
spice_port = $spice_port
rdp_port = $rdp_port
tls_cert = $tmp/cert.pem
tls_key = $tmp/key.pem
CONF
create_db "$ctl" "$conf"
"$seed" user "$conninfo" alice 'correct horse' admin >/dev/null
uma=$("$seed" user "$conninfo" uma 'user pw' user)

start_broker "$broker" "$conf"
admin_login
pool=$(admin_post /pools '{"name":"desk","max_size":2,"spare":0,"protocols":["browser"]}')
admin_post "/pools/$pool/entitlements" "{\"user_id\":$uma}" >/dev/null
[[ -n $pool ]] || { echo "FAIL: could not create the pool"; exit 1; }
# One VM, ready: this test plays hostd's part and runs its QEMU itself.
vm=$(psql_db "INSERT INTO vms (name, pool_id, state) VALUES ('desk-1', $pool, 'ready') RETURNING id")

vmdir=$run/vms/$vm
mkdir -p "$vmdir"
qemu-img create -q -f qcow2 -F qcow2 -b "$guest/disk.qcow2" "$tmp/overlay.qcow2"
: >"$tmp/serial.log"
qemu-system-x86_64 -machine q35 -accel tcg -m 256 -nodefaults -no-reboot \
    -kernel "$guest/vmlinuz" -initrd "$guest/initrd.img" -append "$(cat "$guest/cmdline")" \
    -drive "file=$tmp/overlay.qcow2,if=virtio,format=qcow2" \
    -vga qxl -display none -nic none \
    -vnc "unix:$vmdir/vnc.sock" \
    -qmp "unix:$vmdir/qmp.sock,server=on,wait=off" \
    -serial "file:$tmp/serial.log" >"$tmp/qemu.log" 2>&1 &
pids+=("$!")
# the guest's boot marker on its serial log (bounded; tail -F wakes on writes)
timeout 120 grep -q -m1 ATRIUM-BOOT-OK <(timeout 120 tail -F -n +1 "$tmp/serial.log" 2>/dev/null) ||
    { echo "FAIL: the test guest did not boot"; cat "$tmp/qemu.log"; exit 1; }
echo "ok   guest booted (TCG)"

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
