#!/bin/bash
# atriumctl image and pool commands against the run's private PostgreSQL,
# with real qemu-img imports into a temp data dir.
set -euo pipefail
ctl=${1:?usage: test-pool-image.sh ATRIUMCTL}
. "$(dirname "$0")/../harness/lib.sh"
atr_init ctl-pool
conf=$tmp/atrium.conf
printf '[db]\nurl = %s dbname=%s\n[paths]\ndata_dir = %s/data\n' "$server" "$db" "$tmp" >"$conf"
mkdir -p "$tmp/data"
"$ctl" --config "$conf" db migrate >/dev/null
a() { "$ctl" --config "$conf" "$@"; }

# a raw disk with content, and a kernel/initrd pair
head -c 4194304 /dev/urandom >"$tmp/disk.raw"
echo kernel >"$tmp/vmlinuz"
echo initrd >"$tmp/initrd"

check "import raw" 0 a image import "$tmp/disk.raw" --name demo --notes "first"
expect "import prints version 1" '^imported demo version 1 \(raw, [0-9.]+ MiB, sha256 [0-9a-f]{64}\)$'
check "import with kernel" 0 a image import "$tmp/disk.raw" --name demo --kernel "$tmp/vmlinuz" \
    --initrd "$tmp/initrd" --cmdline "console=ttyS0"
expect "second import is version 2" '^imported demo version 2 '
check "import --json" 0 a --json image import "$tmp/disk.raw" --name other
expect "json import" '^\{"image":"other","version":1,"id":[0-9]+,"sha256":"[0-9a-f]{64}"\}$'
truth "files are read-only qcow2 in data_dir/images" \
    "SELECT bool_and(path LIKE '$tmp/data/images/%.qcow2' AND state = 'ready') FROM image_versions"
[[ ! -w $(q "SELECT path FROM image_versions WHERE version = 1 LIMIT 1") || $(id -u) -eq 0 ]] &&
    [[ $(stat -c %a "$(q "SELECT path FROM image_versions WHERE version = 1 LIMIT 1")") == 444 ]] &&
    ok "golden file mode 0444" ||
    bad "golden file mode"
qemu-img info "$(q "SELECT path FROM image_versions WHERE version = 2 AND image_id = (SELECT id FROM images WHERE name = 'demo')")" |
    grep -q 'file format: qcow2' && ok "imported as qcow2" ||
    bad "imported as qcow2"

check "import missing file" 1 a image import "$tmp/nope.raw" --name demo
expect "missing file message" "nope.raw: not a readable file"
qemu-img create -q -f qcow2 -b "$tmp/disk.raw" -F raw "$tmp/overlay.qcow2"
check "import image with backing file refused" 1 a image import "$tmp/overlay.qcow2" --name demo
truth "refused import recorded as failed" \
    "SELECT count(*) = 1 FROM image_versions WHERE state = 'failed' AND error <> ''"
check "import needs --name" 2 a image import "$tmp/disk.raw"
check "kernel without initrd" 2 a image import "$tmp/disk.raw" --name demo --kernel "$tmp/vmlinuz"

check "image list" 0 a image list
expect "list shows versions" '^demo +2 +ready '
check "image show newest" 0 a image show demo
expect "show newest" '^version: +2$'
expect "show boot files" "^boot: +kernel .*vmlinuz, initrd .*initrd, cmdline 'console=ttyS0'$"
check "image show bad spec" 2 a image show demo:x
check "image show missing" 1 a image show nothing

check "pool create" 0 a pool create office --image demo --min 1 --spare 2 --max 5 --protocols spice,vnc --memory 1024
expect "pool created" '^created pool office \(id [0-9]+\)$'
check "pool create duplicate" 1 a pool create office --image demo
expect "duplicate message" "a pool named 'office' already exists"
check "pool create bad sizes" 1 a pool create lab --image demo --min 6 --max 5
expect "bad sizes message" 'min \(6\) must not exceed max \(5\)'
check "pool create bad protocol" 1 a pool create lab --image demo --protocols spice,telnet
expect "bad protocol message" "unknown protocol 'telnet'"
check "pool create bad number" 2 a pool create lab --image demo --spare lots
check "pool create without image" 2 a pool create lab
check "pool create unknown image" 1 a pool create lab --image nothing
check "pool create bad name" 1 a pool create "bad name" --image demo
truth "pool stored as asked" \
    "SELECT min_size = 1 AND spare = 2 AND max_size = 5 AND memory_mb = 1024 AND protocols = '{spice,vnc}'
     AND image_version_id = (SELECT max(v.id) FROM image_versions v JOIN images i ON i.id = v.image_id
                              WHERE i.name = 'demo' AND v.state = 'ready') FROM pools WHERE name = 'office'"
check "pool list" 0 a pool list
expect "list row" '^office +floating +1 +5 +2 '
check "pool show --json" 0 a --json pool show office
expect "json show" '"name":"office".*"protocols":\["spice","vnc"\].*"vms":\{"ready":0'
check "pool resize" 0 a pool resize office --spare 3 --max 8
truth "resized" "SELECT spare = 3 AND max_size = 8 FROM pools WHERE name = 'office'"
check "pool resize invalid" 1 a pool resize office --spare 9
check "pool set-image" 0 a pool set-image office demo:1
truth "image set" "SELECT v.version = 1 FROM pools p JOIN image_versions v ON v.id = p.image_version_id"
check "image in use cannot go" 1 a image delete demo:1
expect "in use message" 'demo:1 is still used by a pool or a VM'
path2=$(q "SELECT path FROM image_versions v JOIN images i ON i.id = v.image_id WHERE i.name = 'demo' AND version = 2")
check "unused image version deleted" 0 a image delete demo:2
[[ ! -e $path2 ]] && ok "its file is gone" ||
    bad "file left: $path2"
check "image delete needs a version" 2 a image delete demo
check "pool clear" 0 a pool clear office
check "pool show missing" 1 a pool show nothing
check "pool unknown sub" 2 a pool frobnicate office
q "INSERT INTO vms (name, pool_id) SELECT 'office-1', id FROM pools WHERE name = 'office'" >/dev/null
check "pool with VMs cannot be deleted" 1 a pool delete office
q "DELETE FROM vms" >/dev/null
check "pool delete" 0 a pool delete office
truth "audit trail" "SELECT count(*) = 5 FROM audit_log WHERE actor = 'atriumctl'
    AND action IN ('pool.create', 'pool.resize', 'pool.set_image', 'pool.clear', 'pool.delete')"
check "pool help" 0 a pool --help
check "image help" 0 a image --help

atr_summary
