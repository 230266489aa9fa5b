#!/bin/bash
# atrium-poold as processes: exactly one of two acts; kill -9 of the acting
# one hands over within 5 s; nothing is created twice; stale tasks are
# requeued (bounded) while it acts; SIGTERM stops cleanly;
# bad config and a newer schema are refused with one clear line.
set -euo pipefail
poold=${1:?usage: test-poold.sh ATRIUM_POOLD ATRIUMCTL}
ctl=${2:?}
. "$(dirname "$0")/../harness/lib.sh"
atr_init poold
pids=()
atr_on_exit 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done'
conf=$tmp/atrium.conf
printf '[db]\nurl = %s dbname=%s\n[paths]\ndata_dir = %s/data\n[poold]\nhost_stale = 3600\n' \
    "$server" "$db" "$tmp" >"$conf"
"$ctl" --config "$conf" db migrate >/dev/null
q "INSERT INTO hosts (name, state, cpus, memory_mb, cpu_capacity, memory_capacity_mb, heartbeat_at)
   VALUES ('h1', 'online', 8, 65536, 8, 65536, now());
   INSERT INTO images (name) VALUES ('img');
   INSERT INTO image_versions (image_id, version, state, path)
   SELECT id, 1, 'ready', '/srv/img-1.qcow2' FROM images;
   INSERT INTO pools (name, image_version_id, min_size, spare, max_size, memory_mb)
   SELECT 'office', id, 0, 2, 10, 512 FROM image_versions;"

"$poold" --config "$conf" >"$tmp/a.log" 2>&1 &
pids+=($!)
a=$!
wait_for "$tmp/a.log" 'msg="acting as pool manager"' 10 && ok "first poold acts" || bad "first poold acts"
"$poold" --config "$conf" >"$tmp/b.log" 2>&1 &
pids+=($!)
b=$!
wait_for "$tmp/a.log" 'vm=office-2' 10 && ok "spares provisioned" || bad "spares provisioned"
wait_for "$tmp/b.log" 'msg=starting' 10 || true
sleep 2 # give the standby every chance to (wrongly) act
if grep -q 'acting as pool manager' "$tmp/b.log"; then bad "standby does not act"; else ok "standby does not act"; fi
[[ $(q "SELECT count(*) FROM vms") == 2 ]] && ok "exactly 2 VMs" || bad "exactly 2 VMs: $(q 'SELECT count(*) FROM vms')"

kill -9 "$a"
t0=$(date +%s%N)
if wait_for "$tmp/b.log" 'msg="acting as pool manager"' 5; then
    ms=$((($(date +%s%N) - t0) / 1000000))
    ok "standby took over in ${ms} ms (limit 5000)"
else
    bad "standby took over within 5 s"
fi
q "UPDATE pools SET spare = 3" >/dev/null
wait_for "$tmp/b.log" 'vm=office-3' 10 && ok "new leader provisions" || bad "new leader provisions"
[[ $(q "SELECT count(*) || ' ' || string_agg(name, ',' ORDER BY id) FROM vms") == "3 office-1,office-2,office-3" ]] &&
    ok "nothing created twice" || bad "nothing created twice: $(q "SELECT string_agg(name, ',') FROM vms")"
[[ $(q "SELECT status FROM pools") == provisioning ]] && ok "pool status provisioning" || bad "pool status"

# A task whose worker died (a hostd killed, say) is requeued by the acting
# poold while it acts, not only when a leader takes over.
q "INSERT INTO tasks (kind, host_id, state, claimed_by, attempts, started_at, heartbeat_at)
   SELECT 'vm.reset', id, 'running', 'hostd:h1:1:1', 1, now(), now() - interval '1 minute'
   FROM hosts" >/dev/null
until_sql 10 "SELECT state = 'queued' AND claimed_by = '' FROM tasks WHERE kind = 'vm.reset'" &&
    ok "the acting poold requeued a task whose worker stopped heart-beating" || bad "stale task requeued"
q "UPDATE tasks SET state = 'running', attempts = 5, heartbeat_at = now() - interval '1 minute'
   WHERE kind = 'vm.reset'" >/dev/null
until_sql 10 "SELECT state = 'failed' FROM tasks WHERE kind = 'vm.reset'" &&
    ok "after 5 attempts it fails instead ($(q "SELECT error FROM tasks WHERE kind = 'vm.reset'"))" ||
    bad "bounded attempts: $(q "SELECT state FROM tasks WHERE kind = 'vm.reset'")"

kill -TERM "$b"
rc=0
timeout 10 tail --pid="$b" -f /dev/null || rc=$?
wait "$b" && ok "SIGTERM stops cleanly" || bad "SIGTERM exit status"

# refusals: bad config, newer schema
printf '[poold]\nfailure_limit = many\n' >"$tmp/bad.conf"
rc=0
"$poold" --config "$tmp/bad.conf" >"$tmp/bad.out" 2>&1 || rc=$?
[[ $rc -eq 3 ]] && grep -q "bad.conf:2: bad value 'many' for \[poold\] failure_limit" "$tmp/bad.out" &&
    ok "bad config refused (exit 3)" || { bad "bad config refused: rc=$rc"; cat "$tmp/bad.out"; }
q "INSERT INTO schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')" >/dev/null
rc=0
timeout 20 "$poold" --config "$conf" >"$tmp/new.out" 2>&1 || rc=$?
[[ $rc -eq 1 ]] && grep -q 'newer than this Atrium' "$tmp/new.out" &&
    ok "newer schema refused" || { bad "newer schema refused: rc=$rc"; cat "$tmp/new.out"; }

atr_summary
