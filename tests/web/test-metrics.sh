#!/bin/bash
# Live CPU/memory charts from the samples hostd records: a real atrium-hostd
# (TCG) runs one test guest; the broker's metrics routes are checked with
# curl (values equal the metric_samples rows, "since" gives only newer
# samples, bounded replies, errors as JSON, a user is refused), then
# chromium checks that the dashboard's, the Hosts page's and the VMs page's
# charts draw the latest rows and move on without a reload.  The live
# resources and snapshot routes' refusals are checked here too; the VMs
# page then changes the VM's live memory (hostd applies it) and takes,
# reverts and deletes a snapshot (metrics.test.mjs).
#
# usage: test-metrics.sh BROKER ATRIUMCTL BRK-SEED HOSTD
broker=${1:?usage: test-metrics.sh BROKER ATRIUMCTL BRK-SEED HOSTD}
ctl=${2:?} seed=${3:?} hostd=${4:?}
. "$(dirname "$0")/lib.sh"
guest=${ATRIUM_GUEST_DIR:?run through ctest (guest fixture)}
for need in qemu-system-x86_64 qemu-img; do
    command -v "$need" >/dev/null || { echo "SKIP: $need is not installed"; exit 77; }
done

npm_deps

write_conf --run --data '[hostd]
name = web-metrics
accel = tcg
metrics_interval = 2'
create_db "$ctl" "$conf"
"$seed" user "$conninfo" alice 'correct horse' admin >/dev/null
"$seed" user "$conninfo" otto 'otto pw' operator >/dev/null
"$seed" user "$conninfo" uma 'user pw' user >/dev/null

"$hostd" --config "$conf" >"$tmp/hostd.log" 2>&1 &
pids+=("$!")
start_broker "$broker" "$conf"

fails=0
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
# wait_sql SECONDS QUERY: until QUERY prints t (bounded; hostd writes every 2 s)
wait_sql() {
    local end=$((SECONDS + $1))
    while ((SECONDS < end)); do
        [[ $(psql_db "$2") == t ]] && return 0
        sleep 1
    done
    return 1
}

wait_sql 30 "SELECT count(*) > 0 FROM hosts WHERE name = 'web-metrics'" ||
    { echo "FAIL: hostd did not register"; cat "$tmp/hostd.log"; exit 1; }
host=$(psql_db "SELECT id FROM hosts WHERE name = 'web-metrics'")

# One VM on this host from the test guest (hostd starts it: desired running).
qemu-img create -q -f qcow2 -F qcow2 -b "$guest/disk.qcow2" "$tmp/data/vm1.qcow2"
vm=$(psql_db "INSERT INTO vms (name, host_id, vcpus, memory_mb, disk_path, boot, boot_kernel,
              boot_initrd, boot_cmdline, nic_mode, desired_power)
              VALUES ('chart-vm', $host, 1, 256, '$tmp/data/vm1.qcow2', 'kernel', '$guest/vmlinuz',
              '$guest/initrd.img', '$(cat "$guest/cmdline")', 'user', 'running') RETURNING id")
wait_sql 180 "SELECT count(*) >= 3 FROM metric_samples WHERE vm_id = $vm" ||
    { echo "FAIL: no samples of the VM"; tail -20 "$tmp/hostd.log"; exit 1; }
ok "hostd records samples of the host and of the running test guest"

# --- the API
cookie() { # cookie USER PASSWORD JAR
    curl -sS --max-time 20 -c "$3" -H 'Content-Type: application/json' \
        --data-binary "{\"username\":\"$1\",\"password\":\"$2\"}" "$base/api/v1/login" >/dev/null
}
cookie alice 'correct horse' "$tmp/alice.jar"
cookie otto 'otto pw' "$tmp/otto.jar"
cookie uma 'user pw' "$tmp/uma.jar"
get() { # get JAR PATH -> "STATUS BODY" in $status / $body
    local out
    out=$(curl -sS --max-time 20 -b "$1" -w '\n%{http_code}' "$base/api/v1$2")
    status=${out##*$'\n'}
    body=${out%$'\n'*}
}
js() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print($1)" "$body"; }

get "$tmp/alice.jar" "/hosts/$host/metrics"
[[ $status == 200 ]] || fail "host metrics: HTTP $status $body"
# The newest row the reply holds is the newest host row of metric_samples (or
# a newer one was written between the two reads).
newest=$(js "d['items'][-1]['at']")
n=$(js "len(d['items'])")
same=$(psql_db "SELECT count(*) = 1 FROM metric_samples WHERE host_id = $host AND vm_id IS NULL
                AND at = '$newest'::timestamptz
                AND round(cpu_pct::numeric, 2) = $(js "d['items'][-1]['cpu_pct']")
                AND mem_used_mb = $(js "d['items'][-1]['mem_used_mb']")
                AND mem_total_mb = $(js "d['items'][-1]['mem_total_mb']")")
rows=$(psql_db "SELECT count(*) FROM metric_samples WHERE host_id = $host AND vm_id IS NULL
                AND at <= '$newest'::timestamptz")
[[ $same == t && $n == "$rows" ]] && ok "GET /hosts/$host/metrics: $n samples, oldest first, the newest equals its row" ||
    fail "host metrics disagree with metric_samples ($same, $n vs $rows rows): $body"
[[ $(js "d['host_id'] == $host and d['name'] == 'web-metrics' and d['truncated'] is False and
          all(a['at'] < b['at'] for a, b in zip(d['items'], d['items'][1:]))") == True ]] &&
    ok "the reply names its host and is in time order" || fail "host reply shape: $body"

get "$tmp/otto.jar" "/vms/$vm/metrics?limit=2"
vnewest=$(js "d['items'][-1]['at']")
vsame=$(psql_db "SELECT at = '$vnewest'::timestamptz AND round(cpu_pct::numeric, 2) = $(js "d['items'][-1]['cpu_pct']")
                 AND mem_used_mb = $(js "d['items'][-1]['mem_used_mb']") FROM metric_samples
                 WHERE vm_id = $vm AND at <= '$(js "d['now']")'::timestamptz ORDER BY at DESC LIMIT 1")
[[ $status == 200 && $vsame == t && $(js "len(d['items']) == 2 and d['truncated'] is True and d['memory_mb'] == 256 and d['vcpus'] == 1") == True ]] &&
    ok "an operator reads the VM's samples; limit=2 keeps the newest two and says it truncated" ||
    fail "vm metrics (limit=2): HTTP $status $vsame $body"

# since: only what is newer
sleep 5
get "$tmp/alice.jar" "/vms/$vm/metrics?since=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$vnewest")"
newer=$(psql_db "SELECT count(*) FROM metric_samples WHERE vm_id = $vm AND at > '$vnewest'::timestamptz
                 AND at <= '$(js "d['items'][-1]['at'] if d['items'] else '$vnewest'")'::timestamptz")
[[ $status == 200 && $(js "len(d['items']) > 0 and all(x['at'] > '$vnewest' for x in d['items'])") == True &&
    $(js "len(d['items'])") == "$newer" ]] &&
    ok "since= gives only the $newer newer samples" || fail "since: HTTP $status ($newer rows) $body"

# errors: JSON with error and detail, never a crash
expect() { # expect JAR PATH STATUS CODE
    get "$1" "$2"
    if [[ $status == "$3" && $(js "d.get('error') == '$4' and bool(d.get('detail'))" 2>/dev/null) == True ]]; then
        ok "$2 -> $3 $4"
    else
        fail "$2: HTTP $status $body (wanted $3 $4)"
    fi
}
expect "$tmp/alice.jar" "/hosts/999999/metrics" 404 not_found
expect "$tmp/alice.jar" "/vms/999999/metrics" 404 not_found
expect "$tmp/alice.jar" "/hosts/$host/metrics?since=yesterday" 400 bad_request
expect "$tmp/alice.jar" "/hosts/$host/metrics?since=2026-13-45T99:00:00Z" 400 bad_request
expect "$tmp/alice.jar" "/hosts/$host/metrics?limit=0" 400 bad_request
expect "$tmp/alice.jar" "/hosts/$host/metrics?limit=501" 400 bad_request
expect "$tmp/alice.jar" "/vms/$vm/metrics?offset=5" 400 bad_request
expect "$tmp/uma.jar" "/hosts/$host/metrics" 403 forbidden
expect "$tmp/uma.jar" "/vms/$vm/metrics" 403 forbidden
get /dev/null "/vms/$vm/metrics"
[[ $status == 401 ]] && ok "without a session: 401" || fail "anonymous: HTTP $status"

# live resources: read by an operator; bad bodies refused in words; no user
get "$tmp/otto.jar" "/vms/$vm/resources"
[[ $status == 200 && $(js "d['memory_mb'] == 256 and d['balloon_mb'] is None and d['cpu_weight'] >= 1 and isinstance(d['applied'], bool)") == True ]] &&
    ok "GET /vms/$vm/resources: memory 256 MiB, no balloon, applied=$(js "d['applied']")" || fail "resources: HTTP $status $body"
send() { # send METHOD JAR PATH JSON LOGIN-JSON -> $status $body
    local m=$1 out login
    shift
    login=$(curl -sS --max-time 20 -c "$1.p" -H 'Content-Type: application/json' \
        --data-binary "$4" "$base/api/v1/login")
    out=$(curl -sS --max-time 20 -b "$1.p" -X "$m" -H 'Content-Type: application/json' \
        -H "X-CSRF-Token: $(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("csrf_token",""))' "$login")" \
        --data-binary "$3" -w '\n%{http_code}' "$base/api/v1$2")
    status=${out##*$'\n'}
    body=${out%$'\n'*}
}
alice='{"username":"alice","password":"correct horse"}'
expect_send() { # expect_send METHOD PATH JSON STATUS CODE [LOGIN]
    send "$1" "$tmp/p" "$2" "$3" "${6:-$alice}"
    if [[ $status == "$4" && $(js "d.get('error') == '$5' and bool(d.get('detail'))" 2>/dev/null) == True ]]; then
        ok "$1 $2 $3 -> $4 $5 ($(js "d['detail']"))"
    else
        fail "$1 $2 $3: HTTP $status $body (wanted $4 $5)"
    fi
}
expect_patch() { expect_send PATCH "$@"; }
expect_patch "/vms/$vm/resources" '{}' 400 bad_request
expect_patch "/vms/$vm/resources" '{"ram":1}' 400 bad_request
expect_patch "/vms/$vm/resources" '{"balloon_mb":10}' 400 bad_request
expect_patch "/vms/$vm/resources" '{"balloon_mb":300}' 400 bad_request
expect_patch "/vms/$vm/resources" '{"cpu_weight":"x"}' 400 bad_request
expect_patch "/vms/$vm/resources" '{"boost":1}' 400 bad_request
expect_patch "/vms/$vm/resources" 'not json' 400 bad_json
expect_patch "/vms/999999/resources" '{"balloon_mb":128}' 404 not_found
expect_patch "/vms/$vm/resources" '{"balloon_mb":128}' 403 forbidden '{"username":"uma","password":"user pw"}'
[[ $(psql_db "SELECT balloon_mb IS NULL OR balloon_mb = 0 FROM vms WHERE id = $vm") == t ]] &&
    ok "none of the refused changes reached the VM's row" || fail "a refused change was written"

# snapshots: refusals (the browser part takes, reverts and deletes one)
get "$tmp/otto.jar" "/vms/$vm/snapshots"
[[ $status == 200 && $(js "d['vm_id'] == $vm and d['items'] == []") == True ]] &&
    ok "GET /vms/$vm/snapshots: none yet" || fail "snapshots: HTTP $status $body"
expect_send POST "/vms/$vm/snapshots" '{"name":".hidden"}' 400 bad_request
expect_send POST "/vms/$vm/snapshots" '{"name":"x/../y"}' 400 bad_request
expect_send POST "/vms/$vm/snapshots" '{"name":"ok","with_ram":"yes"}' 400 bad_request
expect_send POST "/vms/$vm/snapshots" '{"name":"ok","size":1}' 400 bad_request
expect_send POST "/vms/999999/snapshots" '{"name":"ok"}' 404 not_found
expect_send POST "/vms/$vm/snapshots/999999/revert" '' 404 not_found
expect_send DELETE "/vms/$vm/snapshots/999999" '' 404 not_found
expect_send POST "/vms/$vm/snapshots" '{"name":"ok"}' 403 forbidden '{"username":"uma","password":"user pw"}'
get "$tmp/uma.jar" "/vms/$vm/snapshots"
[[ $status == 403 ]] && ok "a user cannot list snapshots" || fail "user snapshots: HTTP $status"
[[ $(psql_db "SELECT count(*) FROM snapshots") == 0 && $(psql_db "SELECT count(*) FROM tasks WHERE kind LIKE 'vm.snapshot%'") == 0 ]] &&
    ok "no refused request left a snapshot row or task" || fail "a refused snapshot request wrote rows"

((fails == 0)) || { echo "--- broker log"; tail -20 "$tmp/broker.log"; exit 1; }

# --- the charts in the browser
mkdir -p "$out/screenshots"
rc=0
ATRIUM_WEB_BASE=$base ATRIUM_WEB_SHOTS=$out/screenshots ATRIUM_WEB_HOST=$host ATRIUM_WEB_VM=$vm \
    ATRIUM_WEB_CONNINFO=$conninfo ATRIUM_CHROMIUM=$chromium \
    timeout 240 node "$here/metrics.test.mjs" "$out/node/node_modules/playwright-core/index.mjs" || rc=$?
if [[ $rc -ne 0 ]]; then
    echo "--- hostd log (last 15 lines)"; tail -15 "$tmp/hostd.log"
    echo "--- broker log (last 15 lines)"; tail -15 "$tmp/broker.log"
fi
exit $rc
