#!/bin/bash
# Session control end to end: a TCG test guest, atrium-displayd in front of
# its console, atrium-broker, real VNC viewers (tests/display/vnc-hold, on
# libvncclient) and a noVNC-style WebSocket.
#
#   - shadow: an admin's view-only viewer (POST /api/v1/sessions/{id}/shadow)
#     sees the guest's screen next to the person's viewer, which stays
#     connected; the person's keys reach the guest's serial log, the
#     shadow's never do; the session shows as shadowed while it watches;
#     an operator and a user may not shadow
#   - disconnect: POST /api/v1/desktops/{id}/disconnect (the person) and
#     POST /api/v1/sessions/{id}/disconnect (an admin) drop the person's
#     viewer within 2 s; the session says disconnected, the VM stays theirs
#   - a disconnect asked for while displayd could not reach PostgreSQL takes
#     effect when it is back (the NOTIFY was lost; the row is re-read)
#   - a log-off closes every viewer, shadows too
#
# session-control.sh rdp: the same disconnect for an RDP viewer (xfreerdp
# under Xvfb with the ticket of the broker's .rdp file): dropped within 2 s.
#
# Needs: ATRIUM_BINARY_DIR, ATRIUM_SOURCE_DIR, ATRIUM_GUEST_DIR,
# ATRIUM_TEST_PG_FILE (ctest sets them).  Every process it starts is killed
# on exit, also on failure or timeout.
set -euo pipefail

mode=${1:-vnc}
. "$(dirname "$0")/lib.sh"
seed=$bin/tests/broker/brk-seed
hold=$bin/tests/display/vnc-hold
dl_logs=(displayd.log broker.log serial.log)
dl_init sessctl "display_sessctl_${mode}_$$" "${ATRIUM_DISPLAY_E2E_TIMEOUT:-280}"
ms() { echo $(( $(date +%s%N) / 1000000 )); }

# wait_count FILE PATTERN N SECONDS: until N lines match (bounded)
wait_count() {
    local end=$(( $(date +%s) + $4 ))
    while (( $(grep -c -- "$2" "$1" || true) < $3 )); do
        (( $(date +%s) < end )) || return 1
        sleep 0.1
    done
}

# wait_gone PID SECONDS: true when PID ended within SECONDS
wait_gone() { timeout "$2" tail -s 0.05 --pid="$1" -f /dev/null; }

# ------------------------------------------------------------------ database
"$seed" migrate "$conninfo"
alice=$("$seed" user "$conninfo" alice 'alice pw' user)
"$seed" user "$conninfo" root 'root pw' admin >/dev/null
"$seed" user "$conninfo" oscar 'oscar pw' operator >/dev/null
dl_desk "$alice"

# ------------------------------------------------------------------ the guest
dl_guest

# ------------------------------------------------------------------ daemons
dl_conf '[broker]
listen = 127.0.0.1
tls = false
threads = 2'
dl_displayd
: >"$tmp/broker.log"
"$bin/broker/atrium-broker" --config "$tmp/atrium.conf" --port 0 2>"$tmp/broker.log" &
broker=$!
pids+=($broker)
wait_line "$tmp/broker.log" 'msg="broker ready"' 30 || fail "broker did not start"
port=$(sed -n 's/.*msg="broker listening".* port=\([0-9]*\).*/\1/p' "$tmp/broker.log" | head -n1)
[[ -n $port ]] || fail "broker port not logged"
base=http://127.0.0.1:$port
wait_line "$tmp/serial.log" ATRIUM-BOOT-OK 150 || fail "guest did not boot"
ok "guest booted; displayd and broker ready"

# ------------------------------------------------------------------ API helpers
login() { # NAME PASSWORD -> sets ${NAME}_auth (cookie + CSRF header args file)
    local body
    body=$(curl -sS --max-time 20 -D "$tmp/hdr" -H 'Content-Type: application/json' \
        --data-binary "{\"username\":\"$1\",\"password\":\"$2\"}" "$base/api/v1/login")
    local cookie csrf
    cookie=$(sed -n 's/^Set-Cookie: atrium_session=\([^;]*\);.*/\1/Ip' "$tmp/hdr" | tr -d '\r')
    csrf=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["csrf_token"])' "$body")
    [[ -n $cookie && -n $csrf ]] || fail "log-in of $1: $body"
    printf -- '-H "Cookie: atrium_session=%s"\n-H "X-CSRF-Token: %s"\n' "$cookie" "$csrf" >"$tmp/auth.$1"
}
call() { # USER METHOD PATH [JSON]: sets $status, body in $tmp/body
    local args=(-sS --max-time 20 -o "$tmp/body" -w '%{http_code}' -X "$2" -K "$tmp/auth.$1")
    [[ -n ${4:-} ]] && args+=(-H 'Content-Type: application/json' --data-binary "$4")
    status=$(curl "${args[@]}" "$base$3") || status=000
}
jget() { python3 -c "import json; j=json.load(open('$tmp/body')); print($1)"; }
lit() { convert "$1" -colorspace gray -threshold 25% -format '%[fx:int(mean*w*h)]' info:; }

login alice 'alice pw'
login root 'root pw'
login oscar 'oscar pw'

# the person's viewer: connect through the broker, VNC password from the reply
owner_connect() { # LOGFILE [TEXT]: starts vnc-hold, sets $owner
    call alice POST "/api/v1/desktops/$pool/connect" '{"protocol":"vnc"}'
    [[ $status == 200 ]] || fail "connect: $status $(cat "$tmp/body")"
    local pw
    pw=$(jget 'j["vnc"]["password"]')
    : >"$1"
    "$hold" 127.0.0.1 "$vnc_port" "$pw" "${2:-}" >"$1" 2>&1 &
    owner=$!
    pids+=($owner)
    wait_line "$1" '^ready' 60 || fail "the person's viewer got no picture: $(cat "$1")"
    [[ $(sql "SELECT state FROM desktop_sessions WHERE id = $session") == connected ]] ||
        fail "session not connected with the person's viewer on"
}

# ------------------------------------------------------------------ RDP
if [[ $mode == rdp ]]; then
    exec {xfd}< <(exec Xvfb -displayfd 1 -noreset -screen 0 1024x768x24 -nolisten tcp 2>"$tmp/xvfb.log")
    pids+=($!)
    read -r -t 20 -u "$xfd" xdisp || fail "Xvfb did not start"
    export DISPLAY=:$xdisp
    call alice POST "/api/v1/desktops/$pool/connect" '{"protocol":"rdp"}'
    [[ $status == 200 ]] || fail "connect: $status $(cat "$tmp/body")"
    # the ticket as the .rdp file carries it (loadbalanceinfo:s:Cookie: msts=<ticket>)
    t=$(jget 'j["rdp"]["rdp"]' | sed -n 's/^loadbalanceinfo:s:Cookie: msts=\([0-9a-f]*\).*/\1/p')
    [[ -n $t ]] || fail "no ticket in the .rdp file"
    xfreerdp /v:127.0.0.1:"$rdp_port" /cert:ignore /sec:tls /u:atrium /p: /size:720x400 /bpp:32 \
        -wallpaper /t:atrium-sessctl "/load-balance-info:Cookie: msts=$t" >"$tmp/xfreerdp.log" 2>&1 &
    client=$!
    pids+=($client)
    wait_line "$tmp/displayd.log" 'msg="rdp viewer joined"' 60 || fail "the RDP viewer never joined"
    wait_line "$tmp/displayd.log" 'msg="session connected"' 10 || fail "session not reported connected"
    t0=$(ms)
    call alice POST "/api/v1/desktops/$pool/disconnect"
    [[ $status == 200 ]] || fail "disconnect: $status"
    wait_gone "$client" 2 || fail "xfreerdp was not dropped within 2 s"
    dt=$(( $(ms) - t0 ))
    [[ $(sql "SELECT state FROM desktop_sessions WHERE id = $session") == disconnected ]] || fail "not disconnected"
    wait_line "$tmp/displayd.log" 'msg="rdp viewer left"' 10 || fail "the RDP viewer did not leave"
    ok "the person's disconnect dropped their RDP viewer (xfreerdp) in $dt ms"
    kill -TERM "$displayd"
    st=0; wait "$displayd" || st=$?
    [[ $st == 0 ]] || fail "displayd exited with $st on SIGTERM"
    ok "displayd stopped cleanly"
    echo "PASS"
    exit 0
fi

# ------------------------------------------------------------------ shadow
word=own$$
owner_connect "$tmp/owner1.log" "$word"
wait_line "$tmp/owner1.log" '^typed' 10 || fail "the person's viewer could not type"
t0=$(ms)
wait_line "$tmp/serial.log" "ATRIUM-TYPED: .*$word" 60 ||
    fail "the person's keys never reached the guest (the control for the shadow check)"
echo_ms=$(( $(ms) - t0 ))
ok "the person's viewer is connected and their keys reach the guest (echo after $echo_ms ms)"

call oscar POST "/api/v1/sessions/$session/shadow" '{"protocol":"vnc"}'
[[ $status == 403 ]] || fail "an operator may not shadow (got $status)"
call alice POST "/api/v1/sessions/$session/shadow" '{"protocol":"vnc"}'
[[ $status == 403 ]] || fail "a user may not shadow (got $status)"
call root POST "/api/v1/sessions/$session/shadow" '{"protocol":"spice"}'
[[ $status == 400 ]] || fail "a SPICE shadow was not refused (got $status)"
call root POST "/api/v1/sessions/999999/shadow" '{"protocol":"vnc"}'
[[ $status == 404 ]] || fail "shadow of an unknown session: $status"
ok "shadow refused for an operator, a user (403), SPICE (400) and an unknown session (404)"

call root POST "/api/v1/sessions/$session/shadow" '{"protocol":"vnc"}'
[[ $status == 200 ]] || fail "shadow: $status $(cat "$tmp/body")"
[[ $(jget 'j["view_only"]') == True ]] || fail "shadow reply not view_only"
spw=$(jget 'j["vnc"]["password"]')
sword=shadow$$
"$hold" 127.0.0.1 "$vnc_port" "$spw" "$sword" "$tmp/shadow.ppm" >"$tmp/shadow.log" 2>&1 &
shadow=$!
pids+=($shadow)
wait_line "$tmp/shadow.log" '^typed' 60 || fail "the shadow viewer got no picture: $(cat "$tmp/shadow.log")"
n=$(lit "$tmp/shadow.ppm")
(( n > 500 )) || fail "the shadow sees no text ($n lit pixels)"
ok "the shadow viewer sees the guest's screen ($(sed -n 's/^ready //p' "$tmp/shadow.log"), $n lit pixels after threshold)"

call root GET "/api/v1/sessions?state=connected"
[[ $(jget '[s["shadowed"] for s in j["items"] if s["id"] == '"$session"'][0]') == True ]] ||
    fail "the session is not shown as shadowed: $(cat "$tmp/body")"
[[ $(jget '[s["shadowed_by"] for s in j["items"] if s["id"] == '"$session"'][0]') == root ]] ||
    fail "shadowed_by is not the admin"
ok "GET /api/v1/sessions shows the session shadowed by root"

# the shadow's keys: give them the person's echo time twice over, plus 5 s
quiet=$(( echo_ms * 2 / 1000 + 5 ))
! wait_line "$tmp/serial.log" "$sword" "$quiet" || fail "the shadow's keys reached the guest"
kill -0 "$owner" 2>/dev/null || fail "the person's viewer was closed by the shadow"
[[ $(sql "SELECT state FROM desktop_sessions WHERE id = $session") == connected ]] ||
    fail "the session did not stay connected"
grep -q 'msg="viewer taken over"' "$tmp/displayd.log" && fail "the shadow took the session over"
ok "the shadow's keys never reached the guest (${quiet}s); the person stayed connected"

# a browser shadow (noVNC's WebSocket) is admitted next to both
call root POST "/api/v1/sessions/$session/shadow" '{"protocol":"browser"}'
[[ $status == 200 ]] || fail "browser shadow: $status"
path=$(python3 -c "import json,urllib.parse; u=json.load(open('$tmp/body'))['browser']['websocket_url']; print(urllib.parse.urlsplit(u).path + '?' + urllib.parse.urlsplit(u).query)")
greeting=$("$helper" ws 127.0.0.1 "$vnc_port" "$path") || fail "browser shadow refused"
[[ $greeting == "RFB 003.008" ]] || fail "browser shadow greeting '$greeting'"
kill -0 "$owner" 2>/dev/null || fail "the browser shadow closed the person's viewer"
ok "a browser (WebSocket) shadow is admitted; the person stays connected"

kill "$shadow"; wait "$shadow" 2>/dev/null || true
wait_count "$tmp/displayd.log" 'msg="shadow viewer left"' 2 10 || fail "shadow leaving not seen"
[[ $(sql "SELECT shadowed_at IS NULL AND shadowed_by IS NULL FROM desktop_sessions WHERE id = $session") == t ]] ||
    fail "the session still shows shadowed after the last shadow left"
[[ $(sql "SELECT count(*) FROM audit_log WHERE action = 'session.shadow'") -ge 3 ]] ||
    fail "shadow not audited (broker issue + displayd join/leave)"
ok "the last shadow left: the session is no longer shadowed; shadowing is audited"

# ------------------------------------------------------------------ disconnect (person)
t0=$(ms)
call alice POST "/api/v1/desktops/$pool/disconnect"
[[ $status == 200 ]] || fail "disconnect: $status $(cat "$tmp/body")"
wait_gone "$owner" 2 || fail "the person's viewer was not dropped within 2 s"
dt=$(( $(ms) - t0 ))
grep -q '^closed' "$tmp/owner1.log" || fail "the viewer did not see the server close"
read -r st user vmstate <<<"$(sql "SELECT s.state, v.assigned_user_id, v.state FROM desktop_sessions s JOIN vms v ON v.id = s.vm_id WHERE s.id = $session" | tr '|' ' ')"
[[ $st == disconnected ]] || fail "session state $st after disconnect"
[[ $user == "$alice" && $vmstate == disconnected ]] || fail "VM not kept for alice ($user, $vmstate)"
grep -q 'msg="viewer disconnected".*reason="the session was disconnected"' "$tmp/displayd.log" ||
    fail "displayd did not log why"
[[ $(sql "SELECT count(*) FROM audit_log WHERE action = 'desktop.disconnect'") == 1 ]] || fail "not audited"
ok "the person's disconnect dropped their viewer in $dt ms; session disconnected, VM still theirs"

# ------------------------------------------------------------------ disconnect (admin)
owner_connect "$tmp/owner2.log"
call alice POST "/api/v1/sessions/$session/disconnect"
[[ $status == 403 ]] || fail "a user may not disconnect sessions by id ($status)"
call root POST "/api/v1/sessions/999999/disconnect"
[[ $status == 404 ]] || fail "disconnect of an unknown session: $status"
t0=$(ms)
call oscar POST "/api/v1/sessions/$session/disconnect"
[[ $status == 200 ]] || fail "operator disconnect: $status"
wait_gone "$owner" 2 || fail "the admin's disconnect did not drop the viewer within 2 s"
dt=$(( $(ms) - t0 ))
[[ $(sql "SELECT state FROM desktop_sessions WHERE id = $session") == disconnected ]] || fail "not disconnected"
[[ $(sql "SELECT count(*) FROM audit_log WHERE action = 'session.disconnect'") == 1 ]] || fail "not audited"
ok "an operator's disconnect dropped the viewer in $dt ms (user 403, unknown 404)"

# ------------------------------------------------------------------ while displayd is away
owner_connect "$tmp/owner3.log"
# displayd loses PostgreSQL and cannot come back until connections are allowed again
psql "$server" -qXc "ALTER DATABASE $dbname ALLOW_CONNECTIONS false" >/dev/null
psql "$server" -qXAtc "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$dbname' AND application_name = 'atrium-displayd'" >/dev/null
wait_line "$tmp/displayd.log" 'msg="database connection lost' 10 || fail "displayd did not notice the lost database"
call alice POST "/api/v1/desktops/$pool/disconnect" # the broker's connections are still up
[[ $status == 200 ]] || fail "disconnect while displayd is away: $status"
! wait_gone "$owner" 2 || fail "the viewer went although displayd could not know yet"
t0=$(ms)
psql "$server" -qXc "ALTER DATABASE $dbname ALLOW_CONNECTIONS true" >/dev/null
wait_gone "$owner" 5 || fail "the request made while displayd was away was never carried out"
dt=$(( $(ms) - t0 ))
grep -q 'msg="database connection restored"' "$tmp/displayd.log" || fail "no reconnect logged"
ok "a disconnect asked for while displayd had no database dropped the viewer $dt ms after it could reconnect"

# a viewer that joins after a request stays (the request was for the old one)
owner_connect "$tmp/owner4.log"
psql "$server" -qXAtc "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$dbname' AND application_name = 'atrium-displayd'" >/dev/null
wait_count "$tmp/displayd.log" 'msg="database connection restored"' 2 10 || fail "displayd did not reconnect"
! wait_gone "$owner" 2 || fail "a viewer that joined after the request was dropped at reconnect"
ok "after a reconnect, a viewer newer than the last request stays"

# ------------------------------------------------------------------ log-off closes everyone
call root POST "/api/v1/sessions/$session/shadow" '{"protocol":"vnc"}'
"$hold" 127.0.0.1 "$vnc_port" "$(jget 'j["vnc"]["password"]')" >"$tmp/shadow2.log" 2>&1 &
shadow=$!
pids+=($shadow)
wait_line "$tmp/shadow2.log" '^ready' 60 || fail "second shadow got no picture"
call root POST "/api/v1/sessions/$session/logoff"
[[ $status == 200 ]] || fail "logoff: $status"
wait_gone "$owner" 3 || fail "log-off did not close the person's viewer"
wait_gone "$shadow" 3 || fail "log-off did not close the shadow"
ok "a log-off closed the person's viewer and the shadow"

kill -TERM "$displayd"
st=0; wait "$displayd" || st=$?
[[ $st == 0 ]] || fail "displayd exited with $st on SIGTERM"
ok "displayd stopped cleanly"
echo "PASS"
