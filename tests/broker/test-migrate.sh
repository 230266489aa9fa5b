#!/bin/bash
# POST /api/v1/vms/{id}/migrate and /migrate/cancel through the real
# atrium-broker on the run's private PostgreSQL: what is queued (the source
# host's vm.migrate task with its parameters), every refusal as JSON with
# its status (400 bad bodies, 404 unknown VM or host, 409 same host, a host
# that takes no VMs, a VM that is not running, a migration already under
# way, nothing to cancel), admins only, CSRF, audit rows.  No hostd runs
# here, so the queued task stays queued and the cancel finds it; a real
# migration through this route, with a viewer watching, is in
# tests/multihost/test-console.sh.
# usage: test-migrate.sh ATRIUM-BROKER BRK-SEED
broker=${1:?usage: test-migrate.sh ATRIUM-BROKER BRK-SEED}
seed=${2:?}
. "$(dirname "$0")/lib.sh"

setup_db "$seed"
"$seed" user "$conninfo" root 'root pw' admin >/dev/null
"$seed" user "$conninfo" oscar 'oscar pw' operator >/dev/null
"$seed" user "$conninfo" uma 'uma pw' user >/dev/null

plain_broker "$broker" "threads = 2"

tasks() { psql_db "SELECT count(*) FROM tasks WHERE kind = 'vm.migrate'"; }
login root 'root pw'
login oscar 'oscar pw'
login uma 'uma pw'

psql_db "INSERT INTO hosts (name, address, state, heartbeat_at) VALUES
    ('ha', '10.0.0.1', 'online', now()), ('hb', '10.0.0.2', 'online', now()),
    ('hm', '10.0.0.3', 'maintenance', now())"
ha=$(psql_db "SELECT id FROM hosts WHERE name = 'ha'")
hb=$(psql_db "SELECT id FROM hosts WHERE name = 'hb'")
hm=$(psql_db "SELECT id FROM hosts WHERE name = 'hm'")
vm=$(psql_db "INSERT INTO vms (name, host_id, state, actual_power, desired_power)
    VALUES ('mv-1', $ha, 'ready', 'running', 'running') RETURNING id" | head -n 1)
off=$(psql_db "INSERT INTO vms (name, host_id, state, actual_power, desired_power)
    VALUES ('mv-off', $ha, 'stopped', 'off', 'stopped') RETURNING id" | head -n 1)

# ---- refusals: nothing is queued
as root POST "/api/v1/vms/$vm/migrate" '[]'
refused "a body that is not an object" 400 bad_json
for body in '' '{}' '{"to_host":"hb"}' '{"to_host":0}' '{"to_host":1.5}' \
    "{\"to_host\":$hb,\"copy_storage\":\"yes\"}" "{\"to_host\":$hb,\"max_bandwidth_mbs\":0}" \
    "{\"to_host\":$hb,\"max_bandwidth_mbs\":100001}" "{\"to_host\":$hb,\"speed\":1}"; do
    as root POST "/api/v1/vms/$vm/migrate" "$body"
    refused "body '${body}' refused" 400 bad_request
done
as root POST "/api/v1/vms/999999/migrate" "{\"to_host\":$hb}"
refused "unknown VM" 404 not_found
as root POST "/api/v1/vms/$vm/migrate" '{"to_host":999999}'
refused "unknown host" 404 not_found
as root POST "/api/v1/vms/$vm/migrate" "{\"to_host\":$ha}"
refused "the host it is on" 409 conflict
as root POST "/api/v1/vms/$vm/migrate" "{\"to_host\":$hm}"
refused "a host in maintenance" 409 conflict
as root POST "/api/v1/vms/$off/migrate" "{\"to_host\":$hb}"
refused "a VM that is not running" 409 conflict
as oscar POST "/api/v1/vms/$vm/migrate" "{\"to_host\":$hb}"
refused "an operator may not migrate" 403 forbidden
as uma POST "/api/v1/vms/$vm/migrate" "{\"to_host\":$hb}"
[[ $status == 403 ]] && ok "a user may not migrate" || fail "user: status $status" "$tmp/body"
req POST "/api/v1/vms/$vm/migrate" -K "$tmp/nocsrf.root" -H 'Content-Type: application/json' \
    --data-binary "{\"to_host\":$hb}"
[[ $status == 403 ]] && ok "without the CSRF header refused" || fail "no CSRF: status $status" "$tmp/body"
req POST "/api/v1/vms/$vm/migrate" -H 'Content-Type: application/json' --data-binary "{\"to_host\":$hb}"
[[ $status == 401 ]] && ok "without a session refused (401)" || fail "anonymous: status $status" "$tmp/body"
[[ $(tasks) == 0 ]] && ok "no refused request queued a task" || fail "refusals queued $(tasks) tasks"
as root POST "/api/v1/vms/$vm/migrate/cancel"
refused "cancel with nothing under way" 409 conflict

# ---- queued: the source host's task with the parameters asked for
as root POST "/api/v1/vms/$vm/migrate" \
    "{\"to_host\":$hb,\"copy_storage\":true,\"max_bandwidth_mbs\":64}"
expect "admin migrates (202)" 202
task=$(jget 'j["task_id"]')
[[ $(jget 'j["vm_id"]') == "$vm" && $(jget 'j["to_host"]') == "$hb" ]] &&
    ok "reply names the VM and the host" || fail "reply" "$tmp/body"
[[ $(psql_db "SELECT kind = 'vm.migrate' AND host_id = $ha AND vm_id = $vm AND state = 'queued'
      AND params = jsonb_build_object('to_host', $hb, 'copy_storage', true, 'max_bandwidth_mbs', 64)
      AND created_by = (SELECT id FROM users WHERE username = 'root')
      FROM tasks WHERE id = $task") == t ]] &&
    ok "vm.migrate queued on the source host with to_host, copy_storage, max_bandwidth_mbs" ||
    fail "task row: $(psql_db "SELECT row_to_json(t) FROM tasks t WHERE id = $task")"
as root GET "/api/v1/tasks/$task"
[[ $status == 200 && $(jget 'j["state"]') == queued ]] && ok "GET /tasks/{id} shows it queued" ||
    fail "task read: status $status" "$tmp/body"
as root POST "/api/v1/vms/$vm/migrate" "{\"to_host\":$hb}"
refused "a second migration while one is under way" 409 conflict
[[ $(tasks) == 1 ]] && ok "still one task" || fail "$(tasks) tasks"
as oscar POST "/api/v1/vms/$vm/migrate/cancel"
refused "an operator may not cancel" 403 forbidden
as root POST "/api/v1/vms/999999/migrate/cancel"
refused "cancel of an unknown VM" 404 not_found
as root POST "/api/v1/vms/$vm/migrate/cancel"
[[ $status == 200 && $(jget 'j["task_id"]') == "$task" ]] && ok "admin cancels it (200)" ||
    fail "cancel: status $status" "$tmp/body"
[[ $(psql_db "SELECT state FROM tasks WHERE id = $task") == cancelled ]] &&
    ok "the task is cancelled" || fail "task state $(psql_db "SELECT state FROM tasks WHERE id = $task")"
as root POST "/api/v1/vms/$vm/migrate/cancel"
refused "a second cancel" 409 conflict
as root POST "/api/v1/vms/$vm/migrate" "{\"to_host\":$hb}"
expect "after the cancel a new migration may be asked for" 202
[[ $(psql_db "SELECT params FROM tasks WHERE id = $(jget 'j["task_id"]')") == \
    "{\"to_host\": $hb, \"copy_storage\": false}" ]] &&
    ok "defaults: no copy, hostd's bandwidth" || fail "params $(psql_db "SELECT params FROM tasks ORDER BY id DESC LIMIT 1")"

[[ $(psql_db "SELECT count(*) FROM audit_log WHERE action = 'vm.migrate' AND outcome = 'success'
      AND target_id = '$vm' AND actor = 'root'") == 2 ]] && ok "both migrations audited" ||
    fail "vm.migrate audit rows: $(psql_db "SELECT count(*) FROM audit_log WHERE action = 'vm.migrate'")"
[[ $(psql_db "SELECT count(*) FROM audit_log WHERE action = 'vm.migrate.cancel'
      AND outcome = 'success'") == 1 ]] && ok "the cancel audited" || fail "cancel audit rows"
finish
