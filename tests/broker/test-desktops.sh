#!/bin/bash
# The user portal through the real broker: entitled desktops only, connect
# gives a one-time ticket and connection files, 500 people connecting at once
# to a pool of 50 ready VMs get exactly 50 distinct desktops and 450 clean
# 503s, the same person gets the same VM back, log-off ends the session.
# usage: test-desktops.sh ATRIUM-BROKER BRK-SEED
broker=${1:?usage: test-desktops.sh ATRIUM-BROKER BRK-SEED}
seed=${2:?}
. "$(dirname "$0")/lib.sh"

setup_db "$seed"
"$seed" user "$conninfo" alice 'correct horse' admin >/dev/null
"$seed" user "$conninfo" oscar 'operator pw' operator >/dev/null
uma=$("$seed" user "$conninfo" uma 'user pw' user)
bob=$("$seed" user "$conninfo" bob 'bob pw' user)

plain_broker "$broker" "threads = 4" "max_connections = 2000"
J=(-H 'Content-Type: application/json')

# API tokens made directly as rows (token text is ours, only its hash is stored)
token_for() { # token_for USERNAME N -> prints a 43-character token
    local t
    t=$(printf 't%042d' "$2")
    psql_db "INSERT INTO logins (token_hash, user_id, kind, mfa_passed, expires_at)
             SELECT sha256(convert_to('$t', 'UTF8')), id, 'api', true, now() + interval '1 hour'
             FROM users WHERE username = '$1'" >/dev/null
    printf '%s' "$t"
}
A=(-H "Authorization: Bearer $(token_for alice 1)")
U=(-H "Authorization: Bearer $(token_for uma 2)")
Bo=(-H "Authorization: Bearer $(token_for bob 3)")
O=(-H "Authorization: Bearer $(token_for oscar 4)")

req POST /api/v1/pools "${A[@]}" "${J[@]}" --data-binary '{"name":"office","max_size":100,"spare":0,"protocols":["spice","rdp","browser"]}'
expect "pool office created" 201
office=$(jget 'j["id"]')
req POST /api/v1/pools "${A[@]}" "${J[@]}" --data-binary '{"name":"secret","max_size":5,"spare":0}'
secret=$(jget 'j["id"]')
req POST /api/v1/groups "${A[@]}" "${J[@]}" --data-binary '{"name":"staff"}'
staff=$(jget 'j["id"]')
req POST "/api/v1/groups/$staff/members" "${A[@]}" "${J[@]}" --data-binary "{\"user_id\":$uma}"
req POST "/api/v1/pools/$office/entitlements" "${A[@]}" "${J[@]}" --data-binary "{\"group_id\":$staff}"
expect "staff entitled to office" 201
psql_db "INSERT INTO vms (name, pool_id, state) SELECT 'office-' || i, $office, 'ready' FROM generate_series(1, 3) i" >/dev/null
psql_db "INSERT INTO vms (name, pool_id, state) VALUES ('secret-1', $secret, 'ready')" >/dev/null

# ------------------------------------------------------------ visibility ---
req GET /api/v1/desktops "${U[@]}"
expect "uma lists her desktops" 200
[[ $(jget '[i["name"] for i in j["items"]]') == "['office']" ]] && ok "uma sees office and not secret" || fail "uma desktops" "$tmp/body"
req GET /api/v1/desktops "${Bo[@]}"
[[ $status == 200 && $(jget 'len(j["items"])') == 0 ]] && ok "bob, entitled to nothing, sees nothing" || fail "bob desktops" "$tmp/body"
req POST "/api/v1/desktops/$secret/connect" "${U[@]}" "${J[@]}" --data-binary '{"protocol":"spice"}'
expect "connecting to a pool one is not entitled to is 404" 404
req POST "/api/v1/desktops/$office/connect" "${Bo[@]}" "${J[@]}" --data-binary '{"protocol":"spice"}'
expect "bob cannot connect to office" 404
req POST "/api/v1/desktops/999999/connect" "${U[@]}" "${J[@]}" --data-binary '{"protocol":"spice"}'
expect "a missing pool looks the same (404)" 404
[[ $(psql_db "SELECT count(*) FROM desktop_sessions") == 0 && $(psql_db "SELECT count(*) FROM vms WHERE state <> 'ready'") == 0 ]] &&
    ok "refused connects assigned nothing" || fail "refused connect assigned a VM"
req POST "/api/v1/desktops/$office/connect" "${U[@]}" "${J[@]}" --data-binary '{"protocol":"vnc"}'
expect "a protocol the pool does not offer is 400" 400
req POST "/api/v1/desktops/$office/connect" "${U[@]}" "${J[@]}" --data-binary '{"protocol":"telnet"}'
expect "an unknown protocol is 400" 400
req POST "/api/v1/desktops/$office/connect" "${U[@]}" "${J[@]}" --data-binary '{"protocol":"spice","vm":1}'
expect "extra members in connect are 400" 400

# --------------------------------------------------------------- connect ---
req POST "/api/v1/desktops/$office/connect" "${U[@]}" "${J[@]}" -H 'Host: portal.example:8443' --data-binary '{"protocol":"spice"}'
expect "uma connects with SPICE" 200
vm1=$(jget 'j["vm"]["id"]') sess=$(jget 'j["session_id"]')
jget 'j["spice"]["vv"]' >"$tmp/vv"
ticket=$(sed -n 's/^host=//p' "$tmp/vv")
[[ $ticket =~ ^[0-9a-f]{32}$ ]] && ok "the ticket is 128 bits (32 hex digits)" || fail "ticket shape: $ticket" "$tmp/vv"
grep -qx 'proxy=http://portal.example:3128' "$tmp/vv" && ok ".vv names the gateway by the Host the client used" || fail ".vv proxy" "$tmp/vv"
grep -qx "password=$ticket" "$tmp/vv" && grep -qx 'type=spice' "$tmp/vv" && ok ".vv carries the ticket as password" || fail ".vv password" "$tmp/vv"
[[ $(psql_db "SELECT count(*) FROM console_tickets WHERE vm_id = $vm1 AND session_id = $sess AND protocol = 'spice'
              AND expires_at <= created_at + interval '30 seconds'
              AND ticket_hash = sha256(convert_to('$ticket', 'UTF8'))") == 1 ]] &&
    ok "the ticket is stored hashed, bound to VM, session and protocol, expiring within 30 s" || fail "ticket row"
out=$("$seed" redeem "$conninfo" "$ticket" rdp || true)
[[ $out == "refused wrong_protocol" ]] && ok "the ticket does not work for another protocol" || fail "other protocol: $out"
out=$("$seed" redeem "$conninfo" "$ticket" spice || true)
[[ $out == "$vm1" ]] && ok "the ticket works once, for uma's VM" || fail "first redeem: $out"
out=$("$seed" redeem "$conninfo" "$ticket" spice || true)
[[ $out == "refused used" ]] && ok "the ticket does not work twice" || fail "second redeem: $out"

req POST "/api/v1/desktops/$office/connect" "${U[@]}" "${J[@]}" --data-binary '{"protocol":"rdp"}'
expect "uma connects again, with RDP" 200
[[ $(jget 'j["vm"]["id"], j["reconnect"], j["session_id"]') == "$vm1 True $sess" ]] && ok "the same person gets the same VM and session back" || fail "reconnect" "$tmp/body"
jget 'j["rdp"]["rdp"]' >"$tmp/rdp"
grep -q $'^full address:s:127.0.0.1:3389\r$' "$tmp/rdp" && grep -q $'^username:s:uma\r$' "$tmp/rdp" &&
    grep -qE $'^loadbalanceinfo:s:Cookie: msts=[0-9a-f]{32}\r$' "$tmp/rdp" && ok ".rdp names gateway, user and ticket" || fail ".rdp" "$tmp/rdp"
req POST "/api/v1/desktops/$office/connect" "${U[@]}" "${J[@]}" -H 'Accept: application/x-virt-viewer' --data-binary '{"protocol":"spice"}'
[[ $status == 200 ]] && grep -qi '^Content-Type: application/x-virt-viewer' "$tmp/hdr" &&
    grep -qi '^Content-Disposition: attachment; filename="office.vv"' "$tmp/hdr" && head -1 "$tmp/body" | grep -qx '\[virt-viewer\]' &&
    ok "Accept: application/x-virt-viewer downloads the .vv file" || fail ".vv download" "$tmp/hdr"
req POST "/api/v1/desktops/$office/connect" "${U[@]}" "${J[@]}" --data-binary '{"protocol":"browser"}'
[[ $status == 200 && $(jget 'j["browser"]["websocket_url"]') =~ ^ws://127\.0\.0\.1:5900/websockify\?ticket=[0-9a-f]{32}$ ]] &&
    ok "browser connect gives a noVNC WebSocket URL with a ticket" || fail "browser" "$tmp/body"
req POST "/api/v1/desktops/$office/connect" "${U[@]}" "${J[@]}" -H 'Host: [::1]:8443' --data-binary '{"protocol":"spice"}'
[[ $status == 200 && $(jget 'j["spice"]["vv"]') == *'proxy=http://[::1]:3128'* ]] && ok "an IPv6 Host is kept in brackets" || fail "ipv6 host" "$tmp/body"
req POST "/api/v1/desktops/$office/connect" "${U[@]}" "${J[@]}" -H 'Host: evil.example/x?y' --data-binary '{"protocol":"spice"}'
expect "a Host that is not a host name is 400" 400
[[ $(psql_db "SELECT count(DISTINCT vm_id) FROM console_tickets") == 1 && $(psql_db "SELECT count(*) FROM desktop_sessions WHERE state <> 'ended'") == 1 ]] &&
    ok "all of uma's connects used one VM and one session" || fail "uma's connects spread"

# a ticket is dead after its 30 s (moved into the past; the table's CHECK keeps ttl <= 30 s)
req POST "/api/v1/desktops/$office/connect" "${U[@]}" "${J[@]}" --data-binary '{"protocol":"spice"}'
late=$(jget 'j["spice"]["vv"]' | sed -n 's/^host=//p')
psql_db "UPDATE console_tickets SET created_at = now() - interval '60 seconds', expires_at = now() - interval '31 seconds'
         WHERE ticket_hash = sha256(convert_to('$late', 'UTF8'))" >/dev/null
out=$("$seed" redeem "$conninfo" "$late" spice || true)
[[ $out == "refused expired" ]] && ok "a ticket does not work after 30 s" || fail "late redeem: $out"

# ------------------------------------------------- admin: VMs and hosts ---
psql_db "INSERT INTO hosts (name) VALUES ('hv1')" >/dev/null
hv=$(psql_db "SELECT id FROM hosts WHERE name = 'hv1'")
spare=$(psql_db "SELECT id FROM vms WHERE pool_id = $office AND state = 'ready' ORDER BY id LIMIT 1")
req POST "/api/v1/vms/$spare/power" "${O[@]}" "${J[@]}" --data-binary '{"desired":"stopped"}'
expect "an operator asks a VM to stop" 202
[[ $(psql_db "SELECT desired_power FROM vms WHERE id = $spare") == stopped ]] && ok "the desired power is written for hostd" || fail "desired power"
req POST "/api/v1/vms/$spare/power" "${U[@]}" "${J[@]}" --data-binary '{"desired":"running"}'
expect "a user cannot power VMs" 403
req POST "/api/v1/vms/$spare/power" "${O[@]}" "${J[@]}" --data-binary '{"desired":"deleted"}'
expect "deleting is not a power action (400)" 400
req DELETE "/api/v1/vms/$spare" "${O[@]}"
expect "an operator cannot delete VMs" 403
req DELETE "/api/v1/vms/$spare" "${A[@]}"
expect "the admin deletes a VM (hostd carries it out)" 202
[[ $(psql_db "SELECT desired_power FROM vms WHERE id = $spare") == deleted ]] && ok "the VM is marked for deletion" || fail "vm delete"
req POST "/api/v1/vms/999999/power" "${A[@]}" "${J[@]}" --data-binary '{"desired":"running"}'
expect "powering a missing VM is 404" 404
req PATCH "/api/v1/hosts/$hv" "${O[@]}" "${J[@]}" --data-binary '{"state":"maintenance"}'
expect "an operator cannot put a host in maintenance" 403
req PATCH "/api/v1/hosts/$hv" "${A[@]}" "${J[@]}" --data-binary '{"state":"maintenance"}'
expect "the admin puts a host in maintenance" 200
req PATCH "/api/v1/hosts/$hv" "${A[@]}" "${J[@]}" --data-binary '{"state":"offline"}'
expect "offline is hostd's to report (400)" 400
[[ $(psql_db "SELECT state FROM hosts WHERE id = $hv") == maintenance ]] && ok "host state written" || fail "host state"
# HA: hosts list their fence deadline and when they were fenced; VMs their ha flag.
psql_db "UPDATE hosts SET state = 'fenced', fenced_at = now(), fence_deadline_s = 30 WHERE id = $hv" >/dev/null
req GET "/api/v1/hosts?state=fenced" "${O[@]}"
[[ $status == 200 && $(jget '[(h["id"], h["fence_deadline_s"], h["fenced_at"] is not None) for h in j["items"]]') == "[($hv, 30, True)]" ]] &&
    ok "fenced hosts are listed with their fence deadline" || fail "fenced hosts" "$tmp/body"
psql_db "UPDATE hosts SET state = 'maintenance', fenced_at = NULL, fence_deadline_s = 0 WHERE id = $hv" >/dev/null
req GET /api/v1/vms "${O[@]}"
[[ $status == 200 && $(jget 'all(v["ha"] is False for v in j["items"]) and len(j["items"]) > 0') == True ]] &&
    ok "VMs are listed with their ha flag" || fail "vms ha" "$tmp/body"
solo=$(psql_db "INSERT INTO vms (name) VALUES ('solo-1') RETURNING id")
req PATCH "/api/v1/vms/$solo" "${O[@]}" "${J[@]}" --data-binary '{"ha":true}'
expect "an operator cannot set a VM's HA" 403
req PATCH "/api/v1/vms/$solo" "${A[@]}" "${J[@]}" --data-binary '{"ha":"yes"}'
expect "ha must be a boolean (400)" 400
req PATCH "/api/v1/vms/$solo" "${A[@]}" "${J[@]}" --data-binary '{"ha":true,"name":"x"}'
expect "a VM's other fields are not changed here (400)" 400
req PATCH "/api/v1/vms/999999" "${A[@]}" "${J[@]}" --data-binary '{"ha":true}'
expect "HA of a missing VM is 404" 404
pooled=$(psql_db "SELECT id FROM vms WHERE pool_id = $office ORDER BY id LIMIT 1")
req PATCH "/api/v1/vms/$pooled" "${A[@]}" "${J[@]}" --data-binary '{"ha":true}'
expect "a pool's VM cannot be HA (409)" 409
[[ $(psql_db "SELECT ha FROM vms WHERE id = $pooled") == f ]] && ok "the pool VM stays without HA" || fail "pool vm ha"
req PATCH "/api/v1/vms/$solo" "${A[@]}" "${J[@]}" --data-binary '{"ha":true}'
expect "the admin turns HA on for a VM outside pools" 200
[[ $(psql_db "SELECT ha FROM vms WHERE id = $solo") == t &&
   $(psql_db "SELECT count(*) FROM audit_log WHERE action = 'vm.update' AND target_id = '$solo'") == 1 ]] &&
    ok "HA is recorded and audited" || fail "vm ha on"
psql_db "DELETE FROM vms WHERE id = $solo" >/dev/null
psql_db "INSERT INTO images (name) VALUES ('debian'); INSERT INTO image_versions (image_id, version, state) SELECT id, v, 'ready' FROM images, generate_series(1, 2) v" >/dev/null
req GET /api/v1/images "${O[@]}"
[[ $status == 200 && $(jget 'j["items"][0]["name"], [v["version"] for v in j["items"][0]["versions"]]') == "debian [2, 1]" ]] &&
    ok "images are listed with their versions, newest first" || fail "images" "$tmp/body"
req GET "/api/v1/pools/$office/entitlements" "${O[@]}"
[[ $status == 200 && $(jget '[(i["group_name"], i["user_id"]) for i in j["items"]]') == "[('staff', None)]" ]] &&
    ok "a pool's entitlements are listed" || fail "entitlements list" "$tmp/body"
req GET "/api/v1/pools/$office/entitlements" "${U[@]}"
expect "a user cannot list entitlements" 403

# ------------------------------------------------------------ log off ---
req POST "/api/v1/desktops/$office/logoff" "${Bo[@]}"
expect "bob cannot log off in a pool he is not entitled to" 404
req POST "/api/v1/desktops/$office/logoff" "${U[@]}"
expect "uma logs off" 200
[[ $(psql_db "SELECT state FROM desktop_sessions WHERE id = $sess") == ended && $(psql_db "SELECT state FROM vms WHERE id = $vm1") == logging_off ]] &&
    ok "log-off ends the session and sends the floating VM to refresh" || fail "logoff state"
req POST "/api/v1/desktops/$office/logoff" "${U[@]}"
expect "logging off twice is 404" 404
req POST "/api/v1/desktops/$office/connect" "${U[@]}" "${J[@]}" --data-binary '{"protocol":"spice"}'
sess2=$(jget 'j["session_id"]')
[[ $status == 200 && $(jget 'j["vm"]["id"]') != "$vm1" ]] && ok "after log-off uma gets a fresh VM" || fail "connect after logoff" "$tmp/body"
req POST "/api/v1/sessions/$sess2/logoff" "${U[@]}"
expect "a user cannot log off sessions by id" 403
req POST "/api/v1/sessions/$sess2/logoff" "${O[@]}"
expect "an operator logs off anyone's session" 200
[[ $(psql_db "SELECT state || ' ' || end_reason FROM desktop_sessions WHERE id = $sess2") == "ended logged off by oscar" ]] && ok "the admin log-off is recorded with who did it" || fail "admin logoff row"
[[ $(psql_db "SELECT count(*) FROM audit_log WHERE action IN ('desktop.connect', 'desktop.logoff', 'session.logoff')") -ge 8 ]] &&
    ok "connects and log-offs are audited" || fail "desktop audit"

# ------------------------------------------------------------- the rush ---
# 500 people with their own API tokens, all in staff; office gets 50 ready VMs.
psql_db "UPDATE vms SET state = 'stopped' WHERE pool_id = $office" >/dev/null
psql_db "INSERT INTO users (username, source) SELECT 'rush' || i, 'pam' FROM generate_series(1, 500) i" >/dev/null
psql_db "INSERT INTO memberships (user_id, group_id) SELECT id, $staff FROM users WHERE username LIKE 'rush%'" >/dev/null
psql_db "INSERT INTO logins (token_hash, user_id, kind, mfa_passed, expires_at)
         SELECT sha256(convert_to('r' || lpad(substr(username, 5), 42, '0'), 'UTF8')), id, 'api', true, now() + interval '1 hour'
         FROM users WHERE username LIKE 'rush%'" >/dev/null
psql_db "INSERT INTO vms (name, pool_id, state) SELECT 'rush-' || i, $office, 'ready' FROM generate_series(1, 50) i" >/dev/null
mkdir "$tmp/rush"
rush_one() { # rush_one N: one person's connect; status and body to $tmp/rush/N
    local t
    t=r$(printf '%042d' "$1")
    curl -sS -o "$tmp/rush/$1.body" -D "$tmp/rush/$1.hdr" -w '%{http_code}' --max-time 60 -X POST \
        -H "Authorization: Bearer $t" -H 'Content-Type: application/json' \
        --data-binary '{"protocol":"spice"}' "$base/api/v1/desktops/$office/connect" >"$tmp/rush/$1.status" 2>/dev/null ||
        echo 000 >"$tmp/rush/$1.status"
}
export -f rush_one
export tmp base office
start_ms=$(date +%s%3N)
seq 1 500 | xargs -P 100 -I{} bash -c 'rush_one {}'
rush_ms=$(( $(date +%s%3N) - start_ms ))
n200=$(grep -lx 200 "$tmp"/rush/*.status | wc -l)
n503=$(grep -lx 503 "$tmp"/rush/*.status | wc -l)
[[ $n200 == 50 && $n503 == 450 ]] && ok "500 concurrent connects: 50 desktops and 450 503s (${rush_ms} ms)" ||
    fail "rush: $n200 x 200, $n503 x 503, others: $(cat "$tmp"/rush/*.status | sort | uniq -c | tr '\n' ' ')"
distinct=$(python3 - "$tmp/rush" <<'PY'
import glob, json, sys
vms = set()
for f in glob.glob(sys.argv[1] + "/*.status"):
    if open(f).read().strip() == "200":
        vms.add(json.load(open(f[:-len(".status")] + ".body"))["vm"]["id"])
print(len(vms))
PY
)
[[ $distinct == 50 ]] && ok "the 50 desktops are 50 distinct VMs" || fail "distinct VMs in replies: $distinct"
[[ $(psql_db "SELECT count(*), count(DISTINCT vm_id), count(DISTINCT user_id) FROM desktop_sessions s JOIN users u ON u.id = s.user_id
              WHERE u.username LIKE 'rush%' AND s.state <> 'ended'") == "50|50|50" ]] &&
    ok "the database holds 50 live sessions on 50 VMs for 50 people" || fail "rush sessions in the database"
[[ $(psql_db "SELECT count(*) FROM vms WHERE pool_id = $office AND name LIKE 'rush-%' AND state = 'assigned'") == 50 ]] &&
    ok "every ready VM was assigned once" || fail "rush VM states"
bad503=$(python3 - "$tmp/rush" <<'PY'
import glob, json, re, sys
bad = 0
for f in glob.glob(sys.argv[1] + "/*.status"):
    if open(f).read().strip() != "503":
        continue
    base = f[:-len(".status")]
    retry = re.search(r"(?im)^Retry-After: [0-9]+", open(base + ".hdr").read())
    if not retry or json.load(open(base + ".body")).get("error") != "no_desktop_ready":
        bad += 1
print(bad)
PY
)
[[ $bad503 == 0 ]] && ok "every 503 is a clean no_desktop_ready with Retry-After" || fail "$bad503 unclean 503s"
first=$(grep -lx 200 "$tmp"/rush/*.status | head -1)
n=$(basename "${first%.status}")
vmA=$(python3 -c "import json; print(json.load(open('$tmp/rush/$n.body'))['vm']['id'])")
rush_one "$n"
[[ $(cat "$tmp/rush/$n.status") == 200 && $(python3 -c "import json; j=json.load(open('$tmp/rush/$n.body')); print(j['vm']['id'], j['reconnect'])") == "$vmA True" ]] &&
    ok "a person from the rush connecting again gets the same VM" || fail "rush reconnect" "$tmp/rush/$n.body"

req GET /metrics
grep -q '^atrium_assignments_total{result="new"} 5[0-9]$' "$tmp/body" &&
    grep -q '^atrium_assignments_total{result="none_ready"} 450$' "$tmp/body" &&
    grep -q '^atrium_assignments_total{result="reconnect"} [1-9]' "$tmp/body" &&
    ok "metrics count assignments by result" || fail "assignment metrics" "$tmp/body"

finish
