#!/bin/bash
# Golden image upload from the admin console in Debian's chromium
# (playwright-core): the Images page's upload dialog against the real
# atrium-broker, with real disks made by qemu-img.  The browser checks are in
# upload.test.mjs; this script makes the disks and the site and cleans up in
# lib.sh's EXIT trap.
#
# usage: test-upload.sh ATRIUM-BROKER ATRIUMCTL BRK-SEED
broker=${1:?usage: test-upload.sh ATRIUM-BROKER ATRIUMCTL BRK-SEED}
ctl=${2:?}
seed=${3:?}
. "$(dirname "$0")/lib.sh"

command -v qemu-img >/dev/null || { echo "SKIP: qemu-img is not installed"; exit 77; }
npm_deps

data=$tmp/data
mkdir -p "$data"
conf=$tmp/atrium.conf
cat >"$conf" <<CONF
[db]
url = $conninfo
[paths]
data_dir = $data
[broker]
listen = 127.0.0.1
tls = false
threads = 4
web_root = $src/web
max_image_mb = 48
CONF
create_db "$ctl" "$conf"
"$seed" user "$conninfo" alice 'correct horse' admin >/dev/null
"$seed" user "$conninfo" otto 'otto pw' operator >/dev/null
start_broker "$broker" "$conf"

# A 32 MiB qcow2 of random data (it does not compress), a 40 MiB raw disk
# for the cancelled upload, a vmdk and a 60 MiB file over max_image_mb.
head -c $((32 << 20)) /dev/urandom >"$tmp/desk.raw"
qemu-img convert -q -f raw -O qcow2 "$tmp/desk.raw" "$tmp/office-desktop.qcow2"
head -c $((40 << 20)) /dev/urandom >"$tmp/slow.raw"
qemu-img create -q -f vmdk "$tmp/other.vmdk" 1M
truncate -s 60M "$tmp/huge.raw"

mkdir -p "$out/screenshots"
rc=0
ATRIUM_WEB_BASE=$base ATRIUM_WEB_SHOTS=$out/screenshots ATRIUM_CHROMIUM=$chromium \
    ATRIUM_UPLOAD_QCOW2=$tmp/office-desktop.qcow2 ATRIUM_UPLOAD_RAW=$tmp/desk.raw \
    ATRIUM_UPLOAD_SLOW=$tmp/slow.raw ATRIUM_UPLOAD_VMDK=$tmp/other.vmdk \
    ATRIUM_UPLOAD_HUGE=$tmp/huge.raw ATRIUM_UPLOAD_IMAGES=$data/images \
    timeout 360 node "$here/upload.test.mjs" "$out/node/node_modules/playwright-core/index.mjs" || rc=$?
# what the page reported must also be what the database holds
if [[ $rc -eq 0 ]]; then
    got=$(psql_db "SELECT string_agg(i.name || ':' || v.version || ':' || v.state, ',' ORDER BY v.id)
                   FROM image_versions v JOIN images i ON i.id = v.image_id")
    if [[ $got == "office-desktop:1:ready" ]]; then
        echo "ok   the database holds exactly the one uploaded version"
    else
        echo "FAIL image versions in the database: $got"
        rc=1
    fi
    if qemu-img compare -q "$tmp/desk.raw" "$data/images/"*.qcow2; then
        echo "ok   the stored version holds the uploaded disk"
    else
        echo "FAIL the stored version differs from the uploaded disk"
        rc=1
    fi
fi
if [[ $rc -ne 0 ]]; then
    echo "--- broker log (last 40 lines)"
    tail -40 "$tmp/broker.log"
fi
exit $rc
