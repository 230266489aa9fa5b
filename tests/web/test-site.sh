#!/bin/bash
# The whole site from the web console: atrium-hostd (TCG guests), atrium-poold,
# atrium-displayd and the broker on one database, and chromium.  The admin
# creates a pool from the form and entitles a user, watches the dashboard
# until the spare is ready, the user opens the desktop in the browser and
# types into it, the admin pushes a new image version (tasks page, spares
# move to it) and logs the user's session off.  site.test.mjs has the steps.
#
# usage: test-site.sh BROKER ATRIUMCTL BRK-SEED DISPLAYD HOSTD POOLD
broker=${1:?usage: test-site.sh BROKER ATRIUMCTL BRK-SEED DISPLAYD HOSTD POOLD}
ctl=${2:?} seed=${3:?} displayd=${4:?} hostd=${5:?} poold=${6:?}
. "$(dirname "$0")/lib.sh"
guest=${ATRIUM_GUEST_DIR:?run through ctest (guest fixture)}
for need in qemu-system-x86_64 qemu-img openssl; do
    command -v "$need" >/dev/null || { echo "SKIP: $need is not installed"; exit 77; }
done

npm_deps

write_conf --run --data --display '[hostd]
name = web-e2e
accel = tcg
[poold]
provision_timeout = 240'
create_db "$ctl" "$conf"
"$seed" user "$conninfo" alice 'correct horse' admin >/dev/null
"$seed" user "$conninfo" uma 'user pw' user >/dev/null
import() {
    "$ctl" --config "$conf" image import "$guest/disk.qcow2" --name guest \
        --kernel "$guest/vmlinuz" --initrd "$guest/initrd.img" --cmdline "$(cat "$guest/cmdline")" >/dev/null
    psql_db "SELECT max(v.id) FROM image_versions v JOIN images i ON i.id = v.image_id WHERE i.name = 'guest'"
}
v1=$(import)
v2=$(import)

"$hostd" --config "$conf" >"$tmp/hostd.log" 2>&1 &
pids+=("$!")
"$poold" --config "$conf" >"$tmp/poold.log" 2>&1 &
pids+=("$!")
start_daemon displayd 'msg="displayd ready"' 30 "$displayd" --config "$conf"
start_broker "$broker" "$conf"

mkdir -p "$out/screenshots"
rc=0
ATRIUM_WEB_BASE=$base ATRIUM_WEB_SHOTS=$out/screenshots ATRIUM_WEB_RUN=$run \
    ATRIUM_WEB_V1=$v1 ATRIUM_WEB_V2=$v2 ATRIUM_CHROMIUM=$chromium \
    timeout 600 node "$here/site.test.mjs" "$out/node/node_modules/playwright-core/index.mjs" || rc=$?
if [[ $rc -ne 0 ]]; then
    echo "--- vms"
    psql_db "SELECT id, name, state, desired_power, actual_power, image_version_id, last_error FROM vms ORDER BY id" || true
    for f in hostd poold displayd broker; do echo "--- $f log (last 15 lines)"; tail -15 "$tmp/$f.log"; done
fi
exit $rc
