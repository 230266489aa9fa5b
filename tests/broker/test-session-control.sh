#!/bin/bash
# Session control and deletes through the real atrium-broker on the run's
# private PostgreSQL: disconnect (the person's and an admin's), shadow
# tickets, removing entitlements and group members; role checks, unknown
# ids, audit rows, and the NOTIFY displayd acts on.  (displayd carrying them
# out against a real guest: tests/display/session-control.sh.)
# usage: test-session-control.sh ATRIUM-BROKER BRK-SEED
broker=${1:?usage: test-session-control.sh ATRIUM-BROKER BRK-SEED}
seed=${2:?}
. "$(dirname "$0")/lib.sh"

setup_db "$seed"
"$seed" user "$conninfo" root 'root pw' admin >/dev/null
"$seed" user "$conninfo" oscar 'oscar pw' operator >/dev/null
uma=$("$seed" user "$conninfo" uma 'uma pw' user)
ann=$("$seed" user "$conninfo" ann 'ann pw' user)

plain_broker "$broker" "threads = 2"

audits() { psql_db "SELECT count(*) FROM audit_log WHERE action = '$1' AND outcome = 'success'"; }
login root 'root pw'
login oscar 'oscar pw'
login uma 'uma pw'
login ann 'ann pw'

# two pools; uma has a live, connected session on a VM of p1
psql_db "INSERT INTO pools (name) VALUES ('p1'), ('p2')"
p1=$(psql_db "SELECT id FROM pools WHERE name = 'p1'")
p2=$(psql_db "SELECT id FROM pools WHERE name = 'p2'")
psql_db "INSERT INTO vms (name, pool_id, state, assigned_user_id) VALUES ('vm-1', $p1, 'connected', $uma)"
vm=$(psql_db "SELECT id FROM vms")
psql_db "INSERT INTO desktop_sessions (user_id, pool_id, vm_id, state, connected_at)
         VALUES ($uma, $p1, $vm, 'connected', now())"
sid=$(psql_db "SELECT id FROM desktop_sessions")
as root POST "/api/v1/pools/$p1/entitlements" "{\"user_id\": $uma}"
expect "admin entitles uma to p1" 201
eid=$(jget 'j["id"]')

# ------------------------------------------------------------ disconnect ---
as ann POST "/api/v1/desktops/$p1/disconnect"
expect "a person not entitled to the pool gets 404" 404
as uma POST "/api/v1/desktops/$p2/disconnect"
expect "a pool the person is not entitled to is 404" 404
as uma POST "/api/v1/sessions/$sid/disconnect"
expect "a user may not disconnect sessions by id" 403

# the NOTIFY displayd waits for: a listener on atrium_session sees the id
psql -X -q "$conninfo" -c "LISTEN atrium_session" -c "SELECT pg_sleep(3)" >"$tmp/listen.out" 2>&1 &
listener=$!
pids+=("$listener")
for _ in $(seq 1 50); do
    [[ $(psql_db "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                  AND query LIKE '%pg_sleep(3)%' AND pid <> pg_backend_pid()") == 1 ]] && break
    sleep 0.1
done
as uma POST "/api/v1/desktops/$p1/disconnect"
expect "the person disconnects their desktop" 200
wait "$listener" || true
grep -q "notification \"atrium_session\" with payload \"$sid\"" "$tmp/listen.out" &&
    ok "a disconnect is NOTIFYed on atrium_session with the session id" ||
    fail "no NOTIFY on atrium_session" "$tmp/listen.out"
row=$(psql_db "SELECT s.state, s.disconnected_at IS NOT NULL, s.disconnect_requested_at IS NOT NULL,
                      v.state, v.assigned_user_id FROM desktop_sessions s JOIN vms v ON v.id = s.vm_id")
[[ $row == "disconnected|t|t|disconnected|$uma" ]] &&
    ok "the session and its VM are disconnected, the VM stays the person's" || fail "after disconnect: $row"
[[ $(audits desktop.disconnect) == 1 ]] && ok "the person's disconnect is audited" || fail "desktop.disconnect audit"

first=$(psql_db "SELECT disconnected_at FROM desktop_sessions")
as oscar POST "/api/v1/sessions/$sid/disconnect"
expect "an operator disconnects anyone's session" 200
[[ $(psql_db "SELECT disconnected_at FROM desktop_sessions") == "$first" ]] &&
    ok "disconnecting again keeps the time the disconnect timeout counts from" ||
    fail "disconnected_at moved on a second disconnect"
[[ $(audits session.disconnect) == 1 ]] && ok "the admin disconnect is audited" || fail "session.disconnect audit"
as root POST /api/v1/sessions/999999/disconnect
expect "disconnect of an unknown session is 404" 404

# ------------------------------------------------------------ shadow ---
for who in oscar uma; do
    as "$who" POST "/api/v1/sessions/$sid/shadow" '{"protocol": "vnc"}'
    expect "$who may not shadow" 403
done
for body in '{"protocol": "spice"}' '{"protocol": "rdp"}' '{}' '{"protocol": "vnc", "x": 1}' '[1]'; do
    as root POST "/api/v1/sessions/$sid/shadow" "$body"
    expect "shadow with $body is refused" 400
done
as root POST /api/v1/sessions/999999/shadow '{"protocol": "vnc"}'
expect "shadow of an unknown session is 404" 404
before=$(psql_db "SELECT count(*) FROM console_tickets")
as root POST "/api/v1/sessions/$sid/shadow" '{"protocol": "vnc"}'
expect "an admin shadows over VNC" 200
[[ $(jget 'j["view_only"]') == True && $(jget 'len(j["vnc"]["password"])') == 8 ]] &&
    ok "the reply is view-only with an 8-character VNC password" || fail "shadow reply" "$tmp/body"
as root POST "/api/v1/sessions/$sid/shadow" '{"protocol": "browser"}'
expect "an admin shadows in the browser" 200
[[ $(jget 'j["browser"]["websocket_url"]') == ws://127.0.0.1:*/websockify?ticket=* ]] &&
    ok "the browser shadow has a WebSocket URL with its ticket" || fail "browser shadow reply" "$tmp/body"
[[ $(psql_db "SELECT count(*) FROM console_tickets WHERE view_only AND session_id = $sid
              AND user_id = (SELECT id FROM users WHERE username = 'root')") == 2 &&
   $(psql_db "SELECT count(*) FROM console_tickets") == $((before + 2)) ]] &&
    ok "each shadow is one view-only ticket, bound to the session, issued to the admin" ||
    fail "shadow tickets: $(psql_db "SELECT protocol, view_only, session_id FROM console_tickets")"
[[ $(audits session.shadow) == 2 ]] && ok "shadow tickets are audited" || fail "session.shadow audit"
# the schema refuses a view-only ticket that could take a session over
psql -X -q "$conninfo" -c "INSERT INTO console_tickets (ticket_hash, vm_id, session_id, protocol,
        expires_at, view_only) VALUES ('\\x01', $vm, $sid, 'spice', now() + interval '5 s', true)" \
    >/dev/null 2>&1 && fail "a view-only SPICE ticket was stored" ||
    ok "the schema allows view-only tickets for VNC and the browser only"
as root GET "/api/v1/sessions?state=disconnected"
expect "sessions list" 200
[[ $(jget '[s["shadowed"] for s in j["items"]]') == "[False]" && $(jget '"disconnect_requested_at" in j["items"][0]') == True ]] &&
    ok "GET /api/v1/sessions has shadowed (false until displayd admits one) and disconnect_requested_at" ||
    fail "sessions list fields" "$tmp/body"

# ------------------------------------------------------------ entitlement delete ---
as oscar DELETE "/api/v1/pools/$p1/entitlements/$eid"
expect "an operator may not remove entitlements" 403
as uma DELETE "/api/v1/pools/$p1/entitlements/$eid"
expect "a user may not remove entitlements" 403
as root DELETE "/api/v1/pools/$p2/entitlements/$eid"
expect "an entitlement of another pool is 404" 404
as root DELETE "/api/v1/pools/$p1/entitlements/999999"
expect "an unknown entitlement is 404" 404
as root DELETE "/api/v1/pools/$p1/entitlements/abc"
expect "a non-numeric entitlement id matches no route" 404
as uma GET /api/v1/desktops
[[ $(jget '[d["id"] for d in j["items"]]') == "[$p1]" ]] &&
    ok "uma sees p1 before" || fail "desktops before" "$tmp/body"
as root DELETE "/api/v1/pools/$p1/entitlements/$eid"
expect "an admin removes an entitlement" 200
as root DELETE "/api/v1/pools/$p1/entitlements/$eid"
expect "removing it again is 404" 404
as uma GET /api/v1/desktops
[[ $(jget 'len(j["items"])') == 0 ]] && ok "uma no longer sees p1" || fail "desktops after" "$tmp/body"
as uma POST "/api/v1/desktops/$p1/connect" '{"protocol": "vnc"}'
expect "and cannot connect to it" 404
[[ $(psql_db "SELECT state FROM desktop_sessions") == disconnected ]] &&
    ok "the live session is left alone" || fail "session changed by the entitlement delete"
[[ $(audits entitlement.delete) == 1 ]] && ok "entitlement removal is audited" || fail "entitlement.delete audit"

# ------------------------------------------------------------ group member delete ---
as root POST /api/v1/groups '{"name": "staff"}'
expect "admin creates a group" 201
gid=$(jget 'j["id"]')
as root POST "/api/v1/groups/$gid/members" "{\"user_id\": $ann}"
expect "ann joins staff" 200
as root POST "/api/v1/pools/$p2/entitlements" "{\"group_id\": $gid}"
expect "staff is entitled to p2" 201
as ann GET /api/v1/desktops
[[ $(jget 'len(j["items"])') == 1 ]] && ok "ann sees p2 through staff" || fail "ann desktops" "$tmp/body"
as oscar DELETE "/api/v1/groups/$gid/members/$ann"
expect "an operator may not remove members" 403
as ann DELETE "/api/v1/groups/$gid/members/$ann"
expect "a user may not remove members" 403
as root DELETE "/api/v1/groups/$gid/members/$uma"
expect "a user who is not a member is 404" 404
as root DELETE "/api/v1/groups/999999/members/$ann"
expect "an unknown group is 404" 404
as root DELETE "/api/v1/groups/$gid/members/$ann"
expect "an admin removes ann from staff" 200
as ann GET /api/v1/desktops
[[ $(jget 'len(j["items"])') == 0 ]] && ok "ann no longer sees p2" || fail "ann desktops after" "$tmp/body"
[[ $(audits group.member_delete) == 1 ]] && ok "member removal is audited" || fail "group.member_delete audit"

# a log-off ends a shadow mark a crashed displayd would have left behind
psql_db "UPDATE desktop_sessions SET shadowed_at = now(),
         shadowed_by = (SELECT id FROM users WHERE username = 'root') WHERE id = $sid"
as root POST "/api/v1/sessions/$sid/logoff"
expect "an admin logs the session off" 200
[[ $(psql_db "SELECT state, shadowed_at IS NULL AND shadowed_by IS NULL FROM desktop_sessions WHERE id = $sid") == "ended|t" ]] &&
    ok "the ended session is no longer shown as shadowed" || fail "shadow mark after log-off"
as uma POST "/api/v1/desktops/$p1/disconnect"
expect "disconnecting an ended session is 404" 404
as root POST "/api/v1/sessions/$sid/shadow" '{"protocol": "vnc"}'
expect "shadowing an ended session is 404" 404

# CSRF still applies to the new routes
req DELETE "/api/v1/groups/$gid/members/$ann" -H "$(sed -n '1s/^-H "\(.*\)"$/\1/p' "$tmp/auth.root")"
expect "a cookie without the CSRF header is refused" 403

finish
