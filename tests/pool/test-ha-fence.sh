#!/bin/bash
# HA fencing in the database and poold, without QEMU (multihost.ha runs the
# real thing): a VM never leaves a silent host that is not fenced, whoever
# asks; poold fences a host only once its heartbeat is older than the host's
# own fence deadline plus the margin, never a host that promised no deadline,
# audits it, and then moves the HA VMs that should run (not the plain ones,
# not the stopped ones) to the roomiest healthy host; an HA VM with no room
# anywhere waits; pool VMs cannot be flagged.
set -euo pipefail
poold=${1:?usage: test-ha-fence.sh ATRIUM_POOLD ATRIUMCTL}
ctl=${2:?usage: test-ha-fence.sh ATRIUM_POOLD ATRIUMCTL}
. "$(dirname "$0")/../harness/lib.sh"
atr_init hafence
pids=()
atr_on_exit 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done'
conf=$tmp/atrium.conf
printf '[db]\nurl = %s dbname=%s\n[paths]\ndata_dir = %s/data\n[poold]\nhost_stale = 3600\nfence_margin = 3\n' \
    "$server" "$db" "$tmp" >"$conf"
"$ctl" --config "$conf" db migrate >/dev/null
a() { "$ctl" --config "$conf" "$@"; }

# silent: quiet for 20 s, promised 5 s.  old: quiet, in maintenance (never
# a target), promised nothing (an older hostd).  big/small: alive, big has
# more room; neither has room for ha-huge.
q "INSERT INTO hosts (name, state, cpus, memory_mb, cpu_capacity, memory_capacity_mb, heartbeat_at,
     fence_deadline_s) VALUES
   ('silent', 'online', 8, 8192, 8, 8192, now() - interval '20 seconds', 5),
   ('old',    'maintenance', 8, 8192, 8, 8192, now() - interval '20 seconds', 0),
   ('big',    'online', 8, 8192, 8, 8192, now() + interval '1 hour', 5),
   ('small',  'online', 8, 4096, 8, 4096, now() + interval '1 hour', 5)" >/dev/null
vm() { # NAME HOST DESIRED MEMORY
    q "INSERT INTO vms (name, host_id, state, desired_power, actual_power, memory_mb, vcpus)
       VALUES ('$1', (SELECT id FROM hosts WHERE name = '$2'), 'ready', '$3', 'running', $4, 1)
       RETURNING id" | head -n 1
}
# ha-huge first: a VM no host has room for must not hold up the others.
huge=$(vm ha-huge silent running 65536)
ha1=$(vm ha-1 silent running 1024)
ha2=$(vm ha-2 silent running 1024)
hoff=$(vm ha-off silent stopped 1024)
plain=$(vm plain silent running 1024)
hold=$(vm ha-old old running 1024)
for v in ha-1 ha-2 ha-off ha-huge ha-old; do a vm set "$v" --ha on >/dev/null; done

# The schema: no move off a silent, unfenced host, from anyone.
if q "UPDATE vms SET host_id = (SELECT id FROM hosts WHERE name = 'big') WHERE id = $ha1" >"$tmp/out" 2>&1; then
    bad "a VM left a silent, unfenced host"
else
    expect "a VM cannot leave a silent, unfenced host" 'cannot leave host silent: it stopped heart-beating and is not fenced'
fi
# ... but from a live host it can (a live migration commits so), and not
# once that host has gone silent.
mover=$(vm mover small running 512)
q "UPDATE vms SET host_id = (SELECT id FROM hosts WHERE name = 'big') WHERE id = $mover" >/dev/null &&
    ok "a VM may leave a host that heart-beats" || bad "a move off a live host was refused"
q "UPDATE hosts SET heartbeat_at = now() - interval '20 seconds' WHERE name = 'big'" >/dev/null
q "UPDATE vms SET host_id = (SELECT id FROM hosts WHERE name = 'small') WHERE id = $mover" >/dev/null 2>&1 &&
    bad "a VM left 'big' while it was silent" || ok "nor off 'big' once it is silent"
q "UPDATE hosts SET heartbeat_at = now() + interval '1 hour' WHERE name = 'big'" >/dev/null
q "DELETE FROM vms WHERE id = $mover" >/dev/null

"$poold" --config "$conf" >"$tmp/poold.log" 2>&1 &
pids+=($!)
wait_for "$tmp/poold.log" 'msg="acting as pool manager"' 30 && ok "poold acts" || bad "poold acts"
until_sql 60 "SELECT state = 'fenced' FROM hosts WHERE name = 'silent'" && ok "the silent host is fenced" ||
    bad "the silent host was not fenced"
truth "fenced no sooner than deadline + margin" "SELECT fenced_at - heartbeat_at >= interval '8 seconds'
    FROM hosts WHERE name = 'silent'"
truth "the fence is audited" "SELECT count(*) = 1 FROM audit_log WHERE action = 'host.fence'
    AND detail->>'host' = 'silent' AND (detail->>'heartbeat_age_ms')::int >= 8000"
until_sql 30 "SELECT count(*) = 2 FROM vms WHERE id IN ($ha1, $ha2) AND host_id <> (SELECT id FROM hosts WHERE name = 'silent')" &&
    ok "both HA VMs moved" || bad "HA VMs not moved"
truth "to the roomiest host first, then the next" "SELECT
    (SELECT h.name FROM vms v JOIN hosts h ON h.id = v.host_id WHERE v.id = $ha1) = 'big'
    AND (SELECT h.name FROM vms v JOIN hosts h ON h.id = v.host_id WHERE v.id = $ha2) = 'big'"
truth "moved rows boot afresh" "SELECT bool_and(state = 'provisioning' AND actual_power = 'off'
    AND qemu_pid IS NULL AND last_error = 'restarted by HA: host silent was fenced') FROM vms
    WHERE id IN ($ha1, $ha2)"
truth "each move audited" "SELECT count(*) = 2 FROM audit_log WHERE action = 'vm.ha_restart'"
truth "the stopped HA VM stays" "SELECT host_id = (SELECT id FROM hosts WHERE name = 'silent') FROM vms WHERE id = $hoff"
truth "the plain VM stays" "SELECT host_id = (SELECT id FROM hosts WHERE name = 'silent') FROM vms WHERE id = $plain"
truth "the HA VM no host has room for waits" "SELECT host_id = (SELECT id FROM hosts WHERE name = 'silent') FROM vms WHERE id = $huge"
wait_for "$tmp/poold.log" 'msg="HA VM waits: no healthy host has room for it" vm=ha-huge' 10 &&
    ok "poold says why it waits" || bad "poold did not say why ha-huge waits"
truth "live hosts are not fenced" "SELECT bool_and(state = 'online') FROM hosts WHERE name IN ('big', 'small')"
truth "a host that promised nothing is never fenced" "SELECT state = 'maintenance' FROM hosts WHERE name = 'old'"
truth "and its HA VM stays" "SELECT host_id = (SELECT id FROM hosts WHERE name = 'old') FROM vms WHERE id = $hold"

# The fenced host's plain VM may now be moved by anyone (its QEMU is dead).
q "UPDATE vms SET host_id = (SELECT id FROM hosts WHERE name = 'small') WHERE id = $plain" >/dev/null &&
    ok "a VM may leave a fenced host" || bad "a move off a fenced host was refused"

# Pool VMs cannot be flagged.
q "INSERT INTO images (name) VALUES ('img');
   INSERT INTO image_versions (image_id, version, state, path) SELECT id, 1, 'ready', '/srv/i.qcow2' FROM images;
   INSERT INTO pools (name, image_version_id, min_size, spare, max_size, memory_mb, enabled)
   SELECT 'p', id, 0, 0, 1, 512, false FROM image_versions;
   INSERT INTO vms (name, pool_id, state, desired_power) SELECT 'p-1', id, 'ready', 'running' FROM pools" >/dev/null
check "vm set --ha on a pool VM" 1 a vm set p-1 --ha on
expect "says why" "belongs to a pool; HA restart is for VMs outside pools"
one_line "pool VM"
if q "UPDATE vms SET ha = true WHERE name = 'p-1'" >/dev/null 2>&1; then bad "the schema let a pool VM be HA"; else
    ok "the schema refuses HA for a pool VM"; fi
check "vm set --ha off" 0 a vm set ha-1 --ha off
truth "ha off" "SELECT NOT ha FROM vms WHERE id = $ha1"

atr_summary
