#!/bin/bash
# Disaster-recovery replication through the real atrium-broker on the run's
# private PostgreSQL: GET /replications, GET/PUT/DELETE
# /vms/{id}/replication, POST /vms/{id}/replication/sync and POST
# /vms/{id}/recover.  What each writes (the vm_replication row, the
# vm.recover task with its parameters), what the replies show (state,
# recovery point age, last complete sync, last error, the task under way),
# every refusal as JSON with its status (400 bad bodies, 404 unknown VM,
# host or replication, 409 the VM's own host, a VM that is not running, a
# replication that is off, a recovery while the VM's host heart-beats,
# with no copy on that host or already under way), who may (operators
# read, admins write), CSRF, audit rows, and that `atriumctl --json` says
# the same as the API.  No hostd runs here: what the hostds would write (a
# complete copy, a sync under way, a failed sync) is written as they write
# it; syncs and recoveries between real hosts are tests/multihost's
# multihost.replicate.
# usage: test-replication.sh ATRIUM-BROKER BRK-SEED ATRIUMCTL
broker=${1:?usage: test-replication.sh ATRIUM-BROKER BRK-SEED ATRIUMCTL}
seed=${2:?}
ctl=${3:?}
. "$(dirname "$0")/lib.sh"

setup_db "$seed"
"$seed" user "$conninfo" root 'root pw' admin >/dev/null
"$seed" user "$conninfo" oscar 'oscar pw' operator >/dev/null
"$seed" user "$conninfo" uma 'uma pw' user >/dev/null

plain_broker "$broker" "threads = 2"

# truth NAME SQL: SQL answers t
truth() {
    local v
    v=$(psql_db "$2")
    [[ $v == t ]] && ok "$1" || fail "$1 (got '$v')"
}
audits() { psql_db "SELECT count(*) FROM audit_log WHERE action = '$1' AND outcome = 'success' AND actor = 'root'"; }
login root 'root pw'
login oscar 'oscar pw'
login uma 'uma pw'

# ha and hb heart-beat; hd's heartbeat stopped an hour ago (a dead host).
psql_db "INSERT INTO hosts (name, address, state, heartbeat_at) VALUES
    ('ha', '10.0.0.1', 'online', now()), ('hb', '10.0.0.2', 'online', now()),
    ('hd', '10.0.0.4', 'offline', now() - interval '1 hour')"
ha=$(psql_db "SELECT id FROM hosts WHERE name = 'ha'")
hb=$(psql_db "SELECT id FROM hosts WHERE name = 'hb'")
hd=$(psql_db "SELECT id FROM hosts WHERE name = 'hd'")
newvm() { # newvm NAME HOST POWER: id of a new VM
    psql_db "INSERT INTO vms (name, host_id, state, actual_power, desired_power)
        VALUES ('$1', $2, CASE WHEN '$3' = 'off' THEN 'stopped' ELSE 'ready' END, '$3',
        CASE WHEN '$3' = 'off' THEN 'stopped' ELSE 'running' END) RETURNING id" | head -n 1
}
vm=$(newvm rv-1 "$ha" running)
off=$(newvm rv-off "$ha" off)
lost=$(newvm rv-lost "$hd" running)
# keep_alive: ha and hb heart-beat, as their hostds would
keep_alive() { psql_db "UPDATE hosts SET heartbeat_at = now() WHERE id IN ($ha, $hb)" >/dev/null; }

# ---- nothing replicated yet
as oscar GET /api/v1/replications
[[ $status == 200 && $(jget 'len(j["items"])') == 0 ]] && ok "an operator lists replications: none" ||
    fail "empty list: status $status" "$tmp/body"
as uma GET /api/v1/replications
refused "a user may not list replications" 403 forbidden
req GET /api/v1/replications
[[ $status == 401 ]] && ok "without a session refused (401)" || fail "anonymous list: status $status" "$tmp/body"
as root GET "/api/v1/vms/$vm/replication"
refused "a VM that is not replicated" 404 not_found 'not replicated'
as root GET /api/v1/vms/999999/replication
refused "an unknown VM" 404 not_found 'no such VM'

# ---- set: refusals write nothing
as root PUT "/api/v1/vms/$vm/replication" '[]'
refused "a body that is not an object" 400 bad_json
for body in '' '{}' "{\"to_host\":$hb}" '{"interval_s":60}' '{"to_host":"hb","interval_s":60}' \
    '{"to_host":0,"interval_s":60}' "{\"to_host\":$hb,\"interval_s\":9}" \
    "{\"to_host\":$hb,\"interval_s\":604801}" "{\"to_host\":$hb,\"interval_s\":60.5}" \
    "{\"to_host\":$hb,\"interval_s\":\"60\"}" "{\"to_host\":$hb,\"interval_s\":60,\"max_bps\":4095}" \
    "{\"to_host\":$hb,\"interval_s\":60,\"max_bps\":\"1M\"}" \
    "{\"to_host\":$hb,\"interval_s\":60,\"every\":1}"; do
    as root PUT "/api/v1/vms/$vm/replication" "$body"
    refused "body '${body}' refused" 400 bad_request
done
as root PUT /api/v1/vms/999999/replication "{\"to_host\":$hb,\"interval_s\":60}"
refused "set on an unknown VM" 404 not_found 'no such VM'
as root PUT "/api/v1/vms/$vm/replication" '{"to_host":999999,"interval_s":60}'
refused "set to an unknown host" 404 not_found 'no such host'
as root PUT "/api/v1/vms/$vm/replication" "{\"to_host\":$ha,\"interval_s\":60}"
refused "set to the VM's own host" 409 conflict 'runs on that host'
as oscar PUT "/api/v1/vms/$vm/replication" "{\"to_host\":$hb,\"interval_s\":60}"
refused "an operator may not set a replication" 403 forbidden
as uma PUT "/api/v1/vms/$vm/replication" "{\"to_host\":$hb,\"interval_s\":60}"
refused "a user may not set a replication" 403 forbidden
req PUT "/api/v1/vms/$vm/replication" -K "$tmp/nocsrf.root" -H 'Content-Type: application/json' \
    --data-binary "{\"to_host\":$hb,\"interval_s\":60}"
[[ $status == 403 ]] && ok "without the CSRF header refused" || fail "no CSRF: status $status" "$tmp/body"
truth "no refused request wrote a row" "SELECT count(*) = 0 FROM vm_replication"

# ---- set and change
as root PUT "/api/v1/vms/$vm/replication" "{\"to_host\":$hb,\"interval_s\":60}"
expect "admin replicates rv-1 to hb (200)" 200
[[ $(jget 'j["vm_id"], j["vm"], j["target_host_id"], j["target_host"], j["source_host"], j["interval_s"], j["max_bps"], j["enabled"], j["state"], j["recovery_point_age_s"], j["last_sync_at"]') == \
    "$vm rv-1 $hb hb ha 60 None True waiting None None" ]] &&
    ok "reply: target hb every 60 s, no cap, waiting for its first copy, no recovery point" ||
    fail "set reply" "$tmp/body"
truth "the row: target hb, 60 s, no cap, first sync due now" "SELECT target_host_id = $hb AND interval_s = 60
    AND max_bps IS NULL AND enabled AND next_sync_at <= now() FROM vm_replication WHERE vm_id = $vm"
as root PUT "/api/v1/vms/$vm/replication" "{\"to_host\":$hb,\"interval_s\":300,\"max_bps\":1048576}"
[[ $status == 200 && $(jget 'j["interval_s"], j["max_bps"]') == "300 1048576" ]] &&
    ok "changed to every 300 s with a 1 MiB/s cap" || fail "change: status $status" "$tmp/body"
truth "the row changed" "SELECT interval_s = 300 AND max_bps = 1048576 FROM vm_replication WHERE vm_id = $vm"

# ---- what the hostds write shows: a complete copy 42 s old, a sync under way, a failure
psql_db "UPDATE vm_replication SET layer_path = '/var/lib/atrium/replicas/vm-$vm/7.qcow2',
    layer_host_id = $hb, point_at = now() - interval '42 s', last_sync_at = now() - interval '40 s',
    syncs = 1, last_bytes = 17301504, last_full = true WHERE vm_id = $vm" >/dev/null
as oscar GET "/api/v1/vms/$vm/replication"
age=$(jget 'j["recovery_point_age_s"]')
[[ $status == 200 && $(jget 'j["state"], j["copy_host_id"], j["syncs"], j["last_bytes"], j["last_full"], j["last_sync_at"] is not None') == \
    "ok $hb 1 17301504 True True" && $age -ge 42 && $age -le 60 ]] &&
    ok "after a complete sync: state ok, copy on hb, recovery point $age s old, last sync time" ||
    fail "after a sync: status $status" "$tmp/body"
[[ $(jget '"layer_path" in j or "layer_task" in j or "bitmap_task" in j') == False ]] &&
    ok "the copy's file and bitmap bookkeeping stay inside" || fail "internal columns shown" "$tmp/body"
sync_task=$(psql_db "INSERT INTO tasks (kind, host_id, vm_id, state, progress)
    VALUES ('vm.replicate', $ha, $vm, 'running', 40) RETURNING id" | head -n 1)
as oscar GET "/api/v1/vms/$vm/replication"
[[ $(jget 'j["state"], j["task_id"], j["task_progress"]') == "syncing $sync_task 40" ]] &&
    ok "a sync under way: state syncing with its task and progress" || fail "syncing" "$tmp/body"
psql_db "UPDATE tasks SET state = 'failed', finished_at = now() WHERE id = $sync_task;
    UPDATE vm_replication SET last_error = 'the target host went away' WHERE vm_id = $vm" >/dev/null
as oscar GET /api/v1/replications
[[ $status == 200 && $(jget 'len(j["items"]), j["items"][0]["vm_id"], j["items"][0]["state"], j["items"][0]["last_error"], j["items"][0]["task_id"]') == \
    "1 $vm failing the target host went away None" ]] &&
    ok "the list shows the failed sync's error (state failing)" || fail "failing" "$tmp/body"
as root GET "/api/v1/vms?limit=500"
[[ $(jget '[(v["name"], v["replication"] and v["replication"]["target_host"]) for v in j["items"]]') == \
    "[('rv-1', 'hb'), ('rv-off', None), ('rv-lost', None)]" ]] &&
    ok "GET /vms: each VM's replication (rv-1 to hb) or null" || fail "vms list" "$tmp/body"
"$ctl" --config "$conf" --json vm replication list >"$tmp/ctl.json" 2>"$tmp/ctl.err" ||
    fail "atriumctl --json vm replication list" "$tmp/ctl.err"
python3 - "$tmp/ctl.json" "$tmp/body" <<'PY' && ok "atriumctl --json lists what the API shows" || fail "atriumctl and the API disagree" "$tmp/ctl.json"
import json, sys
cli = json.load(open(sys.argv[1]))
api = [v["replication"] for v in json.load(open(sys.argv[2]))["items"] if v["replication"]]
drop = lambda o: {k: v for k, v in o.items() if not k.endswith("_s") and not k.endswith("_ms")}
sys.exit(0 if [drop(o) for o in cli] == [drop(o) for o in api] and len(cli) == 1 else 1)
PY
psql_db "UPDATE vm_replication SET last_error = '' WHERE vm_id = $vm" >/dev/null

# ---- sync now
as root POST "/api/v1/vms/$vm/replication/sync"
[[ $status == 202 && $(jget 'j["next_sync_in_s"] <= 0') == True ]] && ok "sync now (202): due" ||
    fail "sync: status $status" "$tmp/body"
truth "the next sync is due now" "SELECT next_sync_at <= now() FROM vm_replication WHERE vm_id = $vm"
as oscar POST "/api/v1/vms/$vm/replication/sync"
refused "an operator may not sync" 403 forbidden
as root POST "/api/v1/vms/$lost/replication/sync"
refused "sync of a VM that is not replicated" 404 not_found 'not replicated'
as root POST /api/v1/vms/999999/replication/sync
refused "sync of an unknown VM" 404 not_found 'no such VM'
as root PUT "/api/v1/vms/$off/replication" "{\"to_host\":$hb,\"interval_s\":60}"
expect "a VM that is off may be replicated (it syncs when it runs)" 200
psql_db "UPDATE vm_replication SET next_sync_at = now() + interval '1 h' WHERE vm_id = $off" >/dev/null
as root POST "/api/v1/vms/$off/replication/sync"
refused "sync of a VM that is not running" 409 conflict 'not running'
truth "that sync was not made due" "SELECT next_sync_at > now() FROM vm_replication WHERE vm_id = $off"

# ---- remove (the schedule stops, the copy stays)
as oscar DELETE "/api/v1/vms/$off/replication"
refused "an operator may not remove a replication" 403 forbidden
as root DELETE "/api/v1/vms/$off/replication"
[[ $status == 200 && $(jget 'j["enabled"], j["state"]') == "False off" ]] &&
    ok "admin removes rv-off's replication (200, state off)" || fail "delete: status $status" "$tmp/body"
truth "the row is kept, disabled" "SELECT NOT enabled FROM vm_replication WHERE vm_id = $off"
as root POST "/api/v1/vms/$off/replication/sync"
refused "sync of a replication that is off" 409 conflict 'off'
as root DELETE "/api/v1/vms/$lost/replication"
refused "remove of a VM that is not replicated" 404 not_found 'not replicated'
as root DELETE /api/v1/vms/999999/replication
refused "remove on an unknown VM" 404 not_found 'no such VM'

# ---- recover: refusals queue nothing
recovers() { psql_db "SELECT count(*) FROM tasks WHERE kind = 'vm.recover'"; }
as root POST "/api/v1/vms/$vm/recover" '[]'
refused "a body that is not an object" 400 bad_json
for body in '' '{}' '{"on_host":"hb"}' '{"on_host":0}' "{\"on_host\":$hb,\"force\":1}" \
    "{\"on_host\":$hb,\"to_host\":$hb}"; do
    as root POST "/api/v1/vms/$vm/recover" "$body"
    refused "body '${body}' refused" 400 bad_request
done
as root POST /api/v1/vms/999999/recover "{\"on_host\":$hb}"
refused "recover an unknown VM" 404 not_found 'no such VM'
as root POST "/api/v1/vms/$vm/recover" '{"on_host":999999}'
refused "recover on an unknown host" 404 not_found 'no such host'
as root POST "/api/v1/vms/$lost/recover" "{\"on_host\":$hb}"
refused "recover a VM that is not replicated" 409 conflict 'not replicated'
keep_alive
as root POST "/api/v1/vms/$vm/recover" "{\"on_host\":$hb}"
refused "recover while the VM's host heart-beats" 409 conflict 'its host ha is alive \(heartbeat [0-9]+ ms ago\)'
as root POST "/api/v1/vms/$vm/recover" "{\"on_host\":$hd,\"force\":true}"
refused "recover on a host without its copy" 409 conflict 'no complete copy'
as root POST "/api/v1/vms/$vm/recover" "{\"on_host\":$ha,\"force\":true}"
refused "recover on the host it is on" 409 conflict 'already on that host'
as oscar POST "/api/v1/vms/$vm/recover" "{\"on_host\":$hb,\"force\":true}"
refused "an operator may not recover" 403 forbidden
as uma POST "/api/v1/vms/$vm/recover" "{\"on_host\":$hb,\"force\":true}"
refused "a user may not recover" 403 forbidden
req POST "/api/v1/vms/$vm/recover" -K "$tmp/nocsrf.root" -H 'Content-Type: application/json' \
    --data-binary "{\"on_host\":$hb,\"force\":true}"
[[ $status == 403 ]] && ok "recover without the CSRF header refused" || fail "no CSRF: status $status" "$tmp/body"
[[ $(recovers) == 0 ]] && ok "no refused recovery queued a task" || fail "refusals queued $(recovers) tasks"

# ---- recover: a VM whose host is dead, and one forced
psql_db "INSERT INTO vm_replication (vm_id, target_host_id, interval_s, layer_path, layer_host_id,
    point_at, syncs, last_sync_at) VALUES ($lost, $hb, 60, '/var/lib/atrium/replicas/vm-$lost/3.qcow2',
    $hb, now() - interval '90 s', 4, now() - interval '90 s')" >/dev/null
as root POST "/api/v1/vms/$lost/recover" "{\"on_host\":$hb}"
expect "recover of the VM on the dead host hd (202)" 202
task=$(jget 'j["task_id"]')
[[ $(jget 'j["vm_id"], j["on_host"]') == "$lost $hb" ]] && ok "reply names the VM and the host" ||
    fail "recover reply" "$tmp/body"
truth "vm.recover queued on hb, not forced, by root" "SELECT kind = 'vm.recover' AND host_id = $hb
    AND vm_id = $lost AND state = 'queued' AND params = '{\"force\": false}'::jsonb
    AND created_by = (SELECT id FROM users WHERE username = 'root') FROM tasks WHERE id = $task"
as oscar GET "/api/v1/tasks/$task"
[[ $status == 200 && $(jget 'j["state"], j["kind"]') == "queued vm.recover" ]] &&
    ok "GET /tasks/{id} follows it" || fail "task read: status $status" "$tmp/body"
as oscar GET "/api/v1/vms/$lost/replication"
[[ $(jget 'j["state"], j["task_id"]') == "recovering $task" ]] && ok "its replication shows recovering" ||
    fail "recovering" "$tmp/body"
as root POST "/api/v1/vms/$lost/recover" "{\"on_host\":$hb}"
refused "a second recovery while one is under way" 409 conflict 'already under way'
keep_alive
as root POST "/api/v1/vms/$vm/recover" "{\"on_host\":$hb,\"force\":true}"
expect "forced recovery of rv-1 although ha heart-beats (202)" 202
truth "queued with force" "SELECT params = '{\"force\": true}'::jsonb FROM tasks WHERE id = $(jget 'j["task_id"]')"
[[ $(recovers) == 2 ]] && ok "two recoveries queued" || fail "$(recovers) recoveries"

# ---- audit
[[ $(audits vm.replication.set) == 3 ]] && ok "three sets audited" || fail "vm.replication.set rows: $(audits vm.replication.set)"
[[ $(audits vm.replication.sync) == 1 ]] && ok "the sync audited" || fail "vm.replication.sync rows: $(audits vm.replication.sync)"
[[ $(audits vm.replication.off) == 1 ]] && ok "the removal audited" || fail "vm.replication.off rows: $(audits vm.replication.off)"
[[ $(audits vm.recover) == 2 ]] && ok "both recoveries audited" || fail "vm.recover rows: $(audits vm.recover)"
truth "the audit rows name the VM, target host and task" "SELECT bool_and(target_type = 'vm')
    AND count(*) FILTER (WHERE action = 'vm.replication.set' AND target_id = '$vm'
      AND detail->>'to_host' = 'hb' AND (detail->>'interval_s')::int = 300) = 1
    AND count(*) FILTER (WHERE action = 'vm.recover' AND target_id = '$lost'
      AND detail->>'on_host' = 'hb' AND (detail->>'task')::bigint = $task
      AND NOT (detail->>'force')::boolean) = 1
    FROM audit_log WHERE action LIKE 'vm.re%'"
finish
