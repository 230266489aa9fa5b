#!/bin/bash
# atrium-broker as a real process over plain HTTP ([broker] tls = false) on
# the run's private PostgreSQL: log-in, cookie and CSRF rules, API tokens,
# role checks, hostile input, paging, metrics, clean stop, schema refusal.
# usage: test-broker.sh ATRIUM-BROKER BRK-SEED
broker=${1:?usage: test-broker.sh ATRIUM-BROKER BRK-SEED}
seed=${2:?}
. "$(dirname "$0")/lib.sh"

setup_db "$seed"
"$seed" user "$conninfo" alice 'correct horse' admin >/dev/null
"$seed" user "$conninfo" oscar 'operator pw' operator >/dev/null
"$seed" user "$conninfo" uma 'user pw' user >/dev/null
"$seed" user "$conninfo" victim 'victim pw' user >/dev/null

plain_broker "$broker" "threads = 2" "session_ttl = 3600"

snapshot() { # everything hostile input must not change (failed-login counters may)
    psql_db "SELECT (SELECT count(*) FROM pg_tables WHERE schemaname = 'public'),
                    (SELECT md5(string_agg(concat_ws('|', id, username, role, source,
                                 password_hash, disabled, totp_enabled), ',' ORDER BY id))
                     FROM users),
                    (SELECT count(*) FROM logins), (SELECT count(*) FROM tasks),
                    (SELECT count(*) FROM pools)"
}

# ------------------------------------------------------------ health ---
req GET /healthz
expect "healthz answers 200 with the database up" 200
[[ $(jget 'j["database"]') == ok ]] && ok "healthz body names the database" || fail "healthz body" "$tmp/body"

req GET /nope
expect "unknown path is 404" 404
[[ $(jget 'j["error"]') == not_found ]] && ok "404 body is a JSON error" || fail "404 body" "$tmp/body"
req DELETE /healthz
expect "wrong method is 405" 405
grep -qi '^Allow: GET, HEAD' "$tmp/hdr" && ok "405 names the allowed methods" || fail "405 Allow" "$tmp/hdr"
req PUT /api/v1/pools
grep -qi '^Allow: GET, HEAD, POST' "$tmp/hdr" && ok "Allow lists every method of the path" || fail "405 Allow pools" "$tmp/hdr"
req GET /api/v1/tasks/abc
expect "non-numeric id does not match a route" 404

# ------------------------------------------------------------- login ---
login() { # login USER PASSWORD: sets $status, $cookie, $csrf on success
    req POST /api/v1/login -H 'Content-Type: application/json' \
        --data-binary "{\"username\":\"$1\",\"password\":\"$2\"}"
    cookie= csrf=
    if [[ $status == 200 ]]; then
        cookie=$(sed -n 's/^Set-Cookie: atrium_session=\([^;]*\);.*/\1/Ip' "$tmp/hdr" | tr -d '\r')
        csrf=$(jget 'j["csrf_token"]')
    fi
}

before=$(snapshot)
login alice 'wrong password'
expect "wrong password is refused with 401" 401
grep -qi '^Set-Cookie' "$tmp/hdr" && fail "refused login sets no cookie" "$tmp/hdr" || ok "refused login sets no cookie"
login nobody 'x'
expect "unknown user is refused with 401" 401
[[ $(jget 'j["error"]') == bad_credentials ]] && ok "unknown user and wrong password look alike" || fail "error for unknown user" "$tmp/body"
[[ $(snapshot) == "$before" ]] && ok "refused logins create no session" || fail "refused logins changed rows"

login alice 'correct horse'
expect "right password logs in" 200
admin_cookie=$cookie admin_csrf=$csrf
setcookie=$(grep -i '^Set-Cookie: atrium_session=' "$tmp/hdr" | tr -d '\r')
for flag in HttpOnly Secure SameSite=Strict Path=/; do
    [[ $setcookie == *"; $flag"* ]] && ok "session cookie has $flag" || fail "cookie lacks $flag: $setcookie"
done
[[ ${#admin_cookie} -eq 43 ]] && ok "session token is 256 bits in base64url" || fail "token length ${#admin_cookie}"
[[ $setcookie == *"Max-Age=3600"* && $(psql_db "SELECT extract(epoch from expires_at - created_at)::int FROM logins
      WHERE token_hash = sha256(convert_to('$admin_cookie', 'UTF8'))") == 3600 ]] &&
    ok "the session lasts [broker] session_ttl, in the cookie and in the database" || fail "session ttl: $setcookie"
[[ $(psql_db "SELECT count(*) FROM logins WHERE token_hash = sha256(convert_to('$admin_cookie', 'UTF8'))") == 1 ]] &&
    ok "logins stores the token's SHA-256" || fail "token hash not stored"
[[ $(psql_db "SELECT count(*) FROM logins WHERE position(convert_to('$admin_cookie', 'UTF8') in token_hash) > 0") == 0 ]] &&
    ok "the token itself is not stored" || fail "token stored in clear"
[[ $(psql_db "SELECT count(*) FROM audit_log WHERE action = 'login' AND actor = 'alice'") -ge 2 ]] &&
    ok "every login attempt is audited" || fail "login attempts not audited"

C=(-H "Cookie: atrium_session=$admin_cookie")
req GET /api/v1/me "${C[@]}"
expect "me with the session cookie" 200
[[ $(jget 'j["username"], j["role"], j["auth"]') == "alice admin session" ]] && ok "me names the caller" || fail "me body" "$tmp/body"
req GET /api/v1/me
expect "me without credentials is 401" 401
req GET /api/v1/me -H 'Cookie: atrium_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'
expect "me with a forged cookie is 401" 401
req GET /api/v1/me -H "Authorization: Bearer $admin_cookie"
expect "a browser session cannot be used as a bearer token" 401

# -------------------------------------------------------------- CSRF ---
J=(-H 'Content-Type: application/json')
before=$(snapshot)
req POST /api/v1/tokens "${C[@]}" "${J[@]}" --data-binary '{"username":"alice","name":"ci"}'
expect "cookie POST without X-CSRF-Token is 403" 403
[[ $(jget 'j["error"]') == csrf ]] && ok "403 names the missing CSRF token" || fail "csrf body" "$tmp/body"
req POST /api/v1/tokens "${C[@]}" "${J[@]}" -H "X-CSRF-Token: $admin_cookie" --data-binary '{"username":"alice","name":"ci"}'
expect "cookie POST with a wrong CSRF token is 403" 403
req POST /api/v1/logout "${C[@]}"
expect "logout without CSRF is 403" 403
[[ $(snapshot) == "$before" ]] && ok "requests refused for CSRF changed nothing" || fail "CSRF-refused request changed rows"

req POST /api/v1/tokens "${C[@]}" "${J[@]}" -H "X-CSRF-Token: $admin_csrf" --data-binary '{"username":"alice","name":"ci"}'
expect "cookie POST with the CSRF token creates an API token" 201
api_token=$(jget 'j["token"]') api_id=$(jget 'j["id"]')
[[ $(psql_db "SELECT kind FROM logins WHERE id = $api_id") == api ]] && ok "API token is a logins row of kind api" || fail "api row"

# ------------------------------------------------------------ bearer ---
B=(-H "Authorization: Bearer $api_token")
req GET /api/v1/me "${B[@]}"
expect "bearer API token authenticates" 200
[[ $(jget 'j["auth"]') == api_token ]] && ok "me says api_token" || fail "me auth" "$tmp/body"
req POST /api/v1/tokens "${B[@]}" "${J[@]}" --data-binary '{"username":"oscar","name":"robot","ttl_days":1}'
expect "bearer POST needs no CSRF token" 201
oscar_token=$(jget 'j["token"]')
req GET /api/v1/me -H "Cookie: atrium_session=$api_token"
expect "an API token is not accepted as a cookie" 401
req GET /api/v1/me -H "Authorization: Basic YWxpY2U6eA=="
expect "other Authorization schemes are 401" 401
req GET "/api/v1/tokens?limit=10" "${B[@]}"
expect "admin lists API tokens" 200
[[ $(jget 'len(j["items"])') == 2 && $(jget '"token_hash" in j["items"][0]') == False ]] &&
    ok "token list shows both tokens and no hashes" || fail "token list" "$tmp/body"

# ------------------------------------------------------ hostile input ---
before=$(snapshot)
head -c $((2 * 1024 * 1024)) /dev/zero | tr '\0' 'a' >"$tmp/big"
req POST /api/v1/login "${J[@]}" --data-binary @"$tmp/big"
expect "2 MiB body is refused with 413" 413
req POST /api/v1/login "${J[@]}" -H 'Transfer-Encoding: chunked' --data-binary @"$tmp/big"
expect "2 MiB chunked body is refused with 413" 413
req POST /api/v1/login "${J[@]}" --data-binary '{"username":"alice","password":'
expect "truncated JSON is 400" 400
[[ $(jget 'j["error"]') == bad_json ]] && ok "400 names bad_json" || fail "bad json body" "$tmp/body"
printf '{"username":"al\xffice","password":"correct horse"}' >"$tmp/badutf8"
req POST /api/v1/login "${J[@]}" --data-binary @"$tmp/badutf8"
expect "invalid UTF-8 is 400" 400
req POST /api/v1/login "${J[@]}" --data-binary '{"username":"alice","password":"x","password":"correct horse"}'
expect "duplicate keys are 400" 400
req POST /api/v1/login "${J[@]}" --data-binary '["alice","correct horse"]'
expect "a non-object body is 400" 400
req POST /api/v1/login "${J[@]}" --data-binary '{"username":"alice","password":"correct\u0000horse"}'
expect "NUL inside a string is 400" 400
req POST /api/v1/login -H 'Content-Type: text/plain' --data-binary '{"username":"alice","password":"correct horse"}'
expect "a non-JSON content type is 415" 415
req POST /api/v1/login "${J[@]}" --data-binary '{"username":"alice","password":"correct horse","role":"admin"}'
expect "unknown login members are 400" 400
req POST /api/v1/login "${J[@]}" --data-binary "{\"username\":\"alice' OR '1'='1\",\"password\":\"x\"}"
expect "SQL metacharacters in the user name are 400" 400
req POST /api/v1/login "${J[@]}" --data-binary "{\"username\":\"alice\",\"password\":\"' OR '1'='1' --\"}"
expect "SQL metacharacters in the password are a plain 401" 401
req GET /api/v1/me -H "Cookie: atrium_session=' OR 1=1 --"
expect "SQL metacharacters in the cookie are 401" 401
req GET /api/v1/me -H "Authorization: Bearer '; DROP TABLE logins; --"
expect "SQL metacharacters in the bearer token are 401" 401
curl -sS -o /dev/null -w '%{http_code}' --max-time 30 -H "X-Big: $(head -c 70000 /dev/zero | tr '\0' b)" \
    "$base/healthz" >"$tmp/st" 2>/dev/null || echo 000 >"$tmp/st"
[[ $(cat "$tmp/st") =~ ^4[0-9][0-9]$ ]] && ok "70 kB header is refused with a 4xx ($(cat "$tmp/st"))" || fail "huge header got $(cat "$tmp/st")"

sqlv=$(python3 -c "import urllib.parse; print(urllib.parse.quote(\"x' OR '1'='1'; DROP TABLE users; --\"))")
for path in "hosts?state=" "tasks?state=" "tasks?kind=" "audit?action=" "audit?actor=" \
    "audit?outcome=" "audit?since=" "audit?until=" "users?role=" "vms?state=" "vms?pool=" \
    "vms?host=" "sessions?state=" "sessions?user=" "sessions?pool=" "tasks?limit=" \
    "tasks?offset=" "tokens?limit="; do
    req GET "/api/v1/$path$sqlv" "${B[@]}"
    if [[ $status =~ ^4[0-9][0-9]$ ]]; then
        ok "SQL metacharacters in $path... give $status"
    elif [[ $status == 200 && $(jget 'len(j["items"])') == 0 ]]; then
        ok "SQL metacharacters in $path... match nothing"
    else
        fail "SQL metacharacters in $path...: status $status" "$tmp/body"
    fi
done
[[ $(snapshot) == "$before" ]] && ok "hostile input changed no table" || fail "hostile input changed rows"

# ------------------------------------------------------------- roles ---
login oscar 'operator pw'
expect "operator logs in" 200
O=(-H "Cookie: atrium_session=$cookie" -H "X-CSRF-Token: $csrf")
for r in hosts tasks audit users groups pools vms sessions; do
    req GET "/api/v1/$r" "${O[@]}"
    expect "operator reads /api/v1/$r" 200
done
before=$(snapshot)
req POST /api/v1/tokens "${O[@]}" "${J[@]}" --data-binary '{"username":"oscar"}'
expect "operator cannot create API tokens" 403
req DELETE "/api/v1/tokens/$api_id" "${O[@]}"
expect "operator cannot revoke API tokens" 403
req GET /api/v1/tokens "${O[@]}"
expect "operator cannot list API tokens" 403
[[ $(snapshot) == "$before" ]] && ok "operator's refused writes changed nothing" || fail "operator write changed rows"
req GET /api/v1/me -H "Authorization: Bearer $oscar_token"
[[ $status == 200 && $(jget 'j["username"], j["role"]') == "oscar operator" ]] &&
    ok "a token made for oscar acts as oscar" || fail "oscar token" "$tmp/body"

login uma 'user pw'
expect "user logs in" 200
U=(-H "Cookie: atrium_session=$cookie")
for r in hosts tasks audit users groups pools vms sessions tokens; do
    req GET "/api/v1/$r" "${U[@]}"
    expect "user cannot read /api/v1/$r" 403
done
req GET /api/v1/me "${U[@]}"
expect "user reads me" 200
[[ $(psql_db "SELECT count(*) FROM audit_log WHERE action = 'api.request' AND outcome = 'denied'
              AND actor = 'uma' AND target_id = '/api/v1/audit' AND detail->>'reason' = 'role'") == 1 ]] &&
    ok "a refused admin read is audited as denied, with who and what" || fail "denied audit (role)"
[[ $(psql_db "SELECT count(*) FROM audit_log WHERE action = 'api.request' AND outcome = 'denied'
              AND actor = 'alice' AND detail->>'reason' = 'csrf'") -ge 3 ]] &&
    ok "requests refused for CSRF are audited as denied" || fail "denied audit (csrf)"

# ------------------------------------------------------------ paging ---
psql_db "INSERT INTO tasks (kind) SELECT 'test.kind' FROM generate_series(1, 7)" >/dev/null
psql_db "INSERT INTO tasks (kind, state) VALUES ('other.kind', 'failed')" >/dev/null
req GET "/api/v1/tasks?limit=3" "${B[@]}"
[[ $status == 200 && $(jget 'len(j["items"]), j["next_offset"]') == "3 3" ]] && ok "limit=3 gives 3 items and a next page" || fail "paging first page" "$tmp/body"
req GET "/api/v1/tasks?limit=3&offset=6" "${B[@]}"
[[ $status == 200 && $(jget 'len(j["items"]), "next_offset" in j') == "2 False" ]] && ok "last page has the rest and no next page" || fail "paging last page" "$tmp/body"
req GET "/api/v1/tasks?offset=100" "${B[@]}"
[[ $status == 200 && $(jget 'len(j["items"])') == 0 ]] && ok "offset past the end is an empty page" || fail "offset past end" "$tmp/body"
for q in limit=0 limit=501 limit=-1 limit=abc limit=1e3 offset=-1 offset=10000001 'limit=%20%205'; do
    req GET "/api/v1/tasks?$q" "${B[@]}"
    expect "paging bound $q is 400" 400
done
req GET "/api/v1/tasks?limit=500" "${B[@]}"
expect "limit=500 is allowed" 200
req GET "/api/v1/tasks?state=queued&kind=test.kind" "${B[@]}"
[[ $(jget 'len(j["items"])') == 7 ]] && ok "task filters select on the server" || fail "task filter" "$tmp/body"
req GET "/api/v1/tasks?state=failed" "${B[@]}"
[[ $(jget 'len(j["items"]), j["items"][0]["kind"]') == "1 other.kind" ]] && ok "state filter" || fail "state filter" "$tmp/body"
req GET "/api/v1/tasks?state=bogus" "${B[@]}"
expect "unknown state value is 400" 400
task_id=$(psql_db "SELECT min(id) FROM tasks")
req GET "/api/v1/tasks/$task_id" "${B[@]}"
[[ $status == 200 && $(jget 'j["id"]') == "$task_id" ]] && ok "task by id" || fail "task by id" "$tmp/body"
req GET "/api/v1/tasks/999999" "${B[@]}"
expect "missing task is 404" 404
req GET "/api/v1/audit?action=login&outcome=failure&actor=alice" "${B[@]}"
[[ $(jget 'len(j["items"])') -ge 1 && $(jget 'all(i["outcome"] == "failure" and i["actor"] == "alice" for i in j["items"])') == True ]] &&
    ok "audit filters by action, outcome and actor" || fail "audit filter" "$tmp/body"
req GET "/api/v1/audit?since=2999-01-01T00:00:00Z" "${B[@]}"
[[ $status == 200 && $(jget 'len(j["items"])') == 0 ]] && ok "audit since the future is empty" || fail "audit since" "$tmp/body"
req GET "/api/v1/audit?since=2026-13-45" "${B[@]}"
expect "an impossible date is 400" 400
req GET "/api/v1/audit?since=now" "${B[@]}"
expect "PostgreSQL's special time words are not accepted" 400
req GET "/api/v1/users?role=operator" "${B[@]}"
[[ $(jget '[i["username"] for i in j["items"]]') == "['oscar']" ]] && ok "users filter by role" || fail "users role" "$tmp/body"
[[ $(jget 'any("password_hash" in i or "totp_secret" in i for i in j["items"])') == False ]] && ok "user list has no secrets" || fail "user list leaks" "$tmp/body"

# ------------------------------------------------------ admin writes ---
req POST /api/v1/users "${B[@]}" "${J[@]}" --data-binary '{"username":"newbie","password":"new pw 1","role":"user"}'
expect "admin creates a local user" 201
newbie=$(jget 'j["id"]')
login newbie 'new pw 1'
expect "the new user can log in" 200
req POST /api/v1/users "${B[@]}" "${J[@]}" --data-binary '{"username":"newbie","password":"x"}'
expect "a taken user name is 409" 409
req POST /api/v1/users "${B[@]}" "${J[@]}" --data-binary '{"username":"r","password":"x","role":"root"}'
expect "an unknown role is 400" 400
req POST /api/v1/users "${B[@]}" "${J[@]}" --data-binary '{"username":"r","password":"x","admin":true}'
expect "unknown members in a user body are 400" 400
req POST /api/v1/users "${B[@]}" "${J[@]}" --data-binary "{\"username\":\"x'; DROP TABLE users; --\",\"password\":\"x\"}"
expect "SQL metacharacters in a new user name are 400" 400
[[ $(psql_db "SELECT count(*) FROM users WHERE username LIKE 'x%' OR username = 'r'") == 0 ]] && ok "refused users were not created" || fail "refused user created"
req PATCH "/api/v1/users/$newbie" "${B[@]}" "${J[@]}" --data-binary '{"role":"operator"}'
expect "admin changes a role" 200
[[ $(psql_db "SELECT role FROM users WHERE id = $newbie") == operator ]] && ok "role changed in the database" || fail "role not changed"
req PATCH "/api/v1/users/$newbie" "${B[@]}" "${J[@]}" --data-binary '{"role":"admin","password":""}'
expect "an update with a refused password is 400" 400
[[ $(psql_db "SELECT role FROM users WHERE id = $newbie") == operator ]] && ok "a refused update changes nothing (one transaction)" || fail "partial update applied"
alice_id=$(psql_db "SELECT id FROM users WHERE username = 'alice'")
req PATCH "/api/v1/users/$alice_id" "${B[@]}" "${J[@]}" --data-binary '{"role":"user"}'
expect "an admin cannot demote themselves" 409
req PATCH "/api/v1/users/$newbie" "${B[@]}" "${J[@]}" --data-binary '{"disabled":true}'
expect "admin disables a user" 200
login newbie 'new pw 1'
[[ $status == 403 || $status == 401 ]] && ok "a disabled user cannot log in ($status)" || fail "disabled login: $status" "$tmp/body"
req PATCH "/api/v1/users/999999" "${B[@]}" "${J[@]}" --data-binary '{"role":"user"}'
expect "updating a missing user is 404" 404

req POST /api/v1/groups "${B[@]}" "${J[@]}" --data-binary '{"name":"staff","description":"everyone"}'
expect "admin creates a group" 201
staff=$(jget 'j["id"]')
uma_id=$(psql_db "SELECT id FROM users WHERE username = 'uma'")
req POST "/api/v1/groups/$staff/members" "${B[@]}" "${J[@]}" --data-binary "{\"user_id\":$uma_id}"
expect "admin adds a member" 200
req POST "/api/v1/groups/$staff/members" "${B[@]}" "${J[@]}" --data-binary '{"user_id":999999}'
expect "adding a missing user to a group is 404" 404

req POST /api/v1/pools "${B[@]}" "${J[@]}" --data-binary '{"name":"office","max_size":5,"spare":1,"protocols":["spice","rdp"]}'
expect "admin creates a pool" 201
office=$(jget 'j["id"]')
[[ $(psql_db "SELECT protocols FROM pools WHERE id = $office") == '{spice,rdp}' ]] && ok "pool stored with its protocols" || fail "pool protocols"
req POST /api/v1/pools "${B[@]}" "${J[@]}" --data-binary '{"name":"office"}'
expect "a taken pool name is 409" 409
req POST /api/v1/pools "${B[@]}" "${J[@]}" --data-binary '{"name":"big","max_size":2,"spare":3}'
expect "spare above max is 400" 400
req POST /api/v1/pools "${B[@]}" "${J[@]}" --data-binary '{"name":"x; DROP TABLE pools"}'
expect "a bad pool name is 400" 400
req POST /api/v1/pools "${B[@]}" "${J[@]}" --data-binary '{"name":"p2","protocols":["telnet"]}'
expect "an unknown protocol is 400" 400
req POST /api/v1/pools "${B[@]}" "${J[@]}" --data-binary '{"name":"p3","clone":"fork"}'
expect "an unknown clone mode is 400" 400
grep -q 'clone must be linked or instant' "$tmp/body" && ok "the 400 names the clone modes" ||
    fail "clone refusal detail: $(cat "$tmp/body")"
[[ $(psql_db "SELECT clone_mode FROM pools WHERE id = $office") == linked ]] && ok "clone defaults to linked" ||
    fail "clone default"
req PATCH "/api/v1/pools/$office" "${B[@]}" "${J[@]}" --data-binary '{"clone":"instant"}'
expect "admin switches a pool to instant clones" 200
[[ $(psql_db "SELECT clone_mode FROM pools WHERE id = $office") == instant ]] && ok "clone stored" ||
    fail "clone stored"
req PATCH "/api/v1/pools/$office" "${B[@]}" "${J[@]}" --data-binary '{"clone":"linked"}'
expect "and back to linked clones" 200
req PATCH "/api/v1/pools/$office" "${B[@]}" "${J[@]}" --data-binary '{"description":"front desk"}'
expect "admin updates a pool" 200
[[ $(psql_db "SELECT description || max_size FROM pools WHERE id = $office") == 'front desk5' ]] && ok "update keeps the other fields" || fail "pool update"
before=$(snapshot)
req PATCH "/api/v1/pools/$office" "${O[@]}" "${J[@]}" --data-binary '{"description":"operator was here"}'
expect "an operator cannot change a pool" 403
req POST /api/v1/pools "${O[@]}" "${J[@]}" --data-binary '{"name":"oppool"}'
expect "an operator cannot create a pool" 403
req PATCH "/api/v1/users/$uma_id" "${O[@]}" "${J[@]}" --data-binary '{"role":"admin"}'
expect "an operator cannot change roles" 403
req PATCH "/api/v1/pools/$office" "${C[@]}" "${J[@]}" --data-binary '{"description":"no csrf"}'
expect "a pool change with the cookie but no CSRF token is 403" 403
[[ $(snapshot) == "$before" && $(psql_db "SELECT description FROM pools WHERE id = $office") == 'front desk' ]] &&
    ok "refused pool and user writes changed nothing" || fail "refused writes changed rows"

req POST "/api/v1/pools/$office/entitlements" "${B[@]}" "${J[@]}" --data-binary "{\"group_id\":$staff}"
expect "admin entitles a group to a pool" 201
req POST "/api/v1/pools/$office/entitlements" "${B[@]}" "${J[@]}" --data-binary "{\"group_id\":$staff}"
expect "a repeated entitlement is 409" 409
req POST "/api/v1/pools/$office/entitlements" "${B[@]}" "${J[@]}" --data-binary "{\"group_id\":$staff,\"user_id\":$uma_id}"
expect "user_id and group_id together are 400" 400
login uma 'user pw'
req GET /api/v1/me -H "Cookie: atrium_session=$cookie"
[[ $(jget 'j["entitled_pool_ids"]') == "[$office]" ]] && ok "a group member sees the pool entitled to the group" || fail "entitled pools" "$tmp/body"
login oscar 'operator pw'
req GET /api/v1/me -H "Cookie: atrium_session=$cookie"
[[ $(jget 'j["entitled_pool_ids"]') == "[]" ]] && ok "a user outside the group is not entitled" || fail "oscar entitled" "$tmp/body"
O=(-H "Cookie: atrium_session=$cookie" -H "X-CSRF-Token: $csrf")

psql_db "INSERT INTO vms (name, pool_id) VALUES ('office-1', $office)" >/dev/null
req DELETE "/api/v1/pools/$office" "${B[@]}"
expect "a pool with VMs cannot be deleted (409)" 409
req POST /api/v1/pools "${B[@]}" "${J[@]}" --data-binary '{"name":"scratch"}'
scratch=$(jget 'j["id"]')
req DELETE "/api/v1/pools/$scratch" "${B[@]}"
expect "an empty pool is deleted" 200
[[ $(psql_db "SELECT count(*) FROM pools WHERE id = $scratch") == 0 ]] && ok "deleted pool is gone" || fail "pool not deleted"
[[ $(psql_db "SELECT count(*) FROM audit_log WHERE action IN ('user.create','user.update','group.create','pool.create','pool.update','pool.delete','entitlement.add') AND actor = 'alice'") -ge 8 ]] &&
    ok "admin writes are audited" || fail "admin writes not audited"

# ------------------------------------------------- expiry and logout ---
login uma 'user pw'
psql_db "UPDATE logins SET expires_at = now() - interval '1 second' WHERE token_hash = sha256(convert_to('$cookie', 'UTF8'))" >/dev/null
req GET /api/v1/me -H "Cookie: atrium_session=$cookie"
expect "an expired session is 401" 401
req POST /api/v1/logout "${C[@]}" -H "X-CSRF-Token: $admin_csrf"
expect "logout with CSRF" 200
grep -qi '^Set-Cookie: atrium_session=;.*Max-Age=0' "$tmp/hdr" && ok "logout clears the cookie" || fail "logout cookie" "$tmp/hdr"
req GET /api/v1/me "${C[@]}"
expect "the logged-out session no longer works" 401
req DELETE "/api/v1/tokens/$api_id" -H "Authorization: Bearer $oscar_token"
expect "operator's token cannot revoke tokens" 403
login alice 'correct horse'
req DELETE "/api/v1/tokens/$api_id" -H "Cookie: atrium_session=$cookie" -H "X-CSRF-Token: $csrf"
expect "admin revokes an API token" 200
req GET /api/v1/me "${B[@]}"
expect "a revoked API token is 401" 401

# ------------------------------------------------- sessions are bounded ---
psql_db "INSERT INTO logins (token_hash, user_id, kind, mfa_passed, expires_at, revoked_at)
         SELECT sha256(convert_to('old' || i, 'UTF8')), u.id, 'browser', true,
                now() + CASE WHEN i <= 40 THEN interval '1 hour' ELSE interval '-2 days' END, NULL
         FROM users u, generate_series(1, 50) i WHERE u.username = 'uma'" >/dev/null
login uma 'user pw'
expect "uma logs in while holding 40 live and 10 long-expired sessions" 200
[[ $(psql_db "SELECT count(*) FROM logins l JOIN users u ON u.id = l.user_id
              WHERE u.username = 'uma' AND l.kind = 'browser' AND l.revoked_at IS NULL AND l.expires_at > now()") == 32 ]] &&
    ok "a person keeps at most 32 live sessions (the oldest are revoked)" || fail "live sessions not capped"
[[ $(psql_db "SELECT count(*) FROM logins l JOIN users u ON u.id = l.user_id
              WHERE u.username = 'uma' AND l.expires_at < now() - interval '1 day'") == 0 ]] &&
    ok "long-expired sessions are deleted" || fail "expired sessions kept"
req GET /api/v1/me -H "Cookie: atrium_session=$cookie"
expect "the newest session is one of those kept" 200

# ----------------------------------------------------------- lockout ---
for i in 1 2 3 4 5; do login victim "wrong $i"; done
login victim 'victim pw'
expect "after 5 failures even the right password is locked out (429)" 429
grep -qi '^Retry-After: [0-9]' "$tmp/hdr" && ok "429 carries Retry-After" || fail "no Retry-After" "$tmp/hdr"

# ----------------------------------------------------------- metrics ---
req GET /metrics
expect "metrics" 200
m=$tmp/body
grep -q '^atrium_http_requests_total{route="/api/v1/login",status="401"} [1-9]' "$m" && ok "metrics count requests by route and status" || fail "metrics requests" "$m"
grep -q '^atrium_http_request_duration_seconds_bucket{route="/api/v1/me",le="+Inf"} [1-9]' "$m" && ok "metrics have a latency histogram" || fail "metrics histogram" "$m"
grep -q '^atrium_logins_total [1-9]' "$m" && grep -q '^atrium_login_failures_total [1-9]' "$m" && ok "metrics count logins and failures" || fail "metrics logins" "$m"
psql_db "INSERT INTO desktop_sessions (user_id, state) SELECT id, 'connected' FROM users WHERE username = 'uma'" >/dev/null
req GET /metrics
grep -q '^atrium_desktop_sessions{state="connected"} 1$' "$tmp/body" && ok "metrics read sessions by state from the database" || fail "metrics sessions" "$tmp/body"
grep -q '^atrium_console_tickets_issued_total 0$' "$tmp/body" && ok "metrics report console tickets" || fail "metrics tickets" "$tmp/body"

grep -q 'msg=request method=GET path=/api/v1/me status=200 ms=[0-9.]*' "$tmp/broker.log" && ok "one log line per request with method, path, status, ms" || fail "request log line" "$tmp/broker.log"

# -------------------------------------------------------------- stop ---
kill -TERM "$broker_pid"
(sleep 15 && kill -KILL "$broker_pid") 2>/dev/null &
watchdog=$!
wait "$broker_pid" && brc=0 || brc=$?
kill "$watchdog" 2>/dev/null || true
[[ $brc == 0 ]] && ok "SIGTERM stops the broker cleanly (exit 0)" || fail "SIGTERM: exit $brc"
grep -q 'msg="broker stopped"' "$tmp/broker.log" && ok "broker logs its stop" || fail "no stop line" "$tmp/broker.log"

psql_db "INSERT INTO schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')" >/dev/null
rc=0
timeout 30 "$broker" --config "$conf" --port 0 2>"$tmp/schema.log" || rc=$?
[[ $rc == 5 ]] && grep -q 'schema is not current' "$tmp/schema.log" && ok "a newer schema is refused at start (exit 5)" || fail "schema refusal: exit $rc" "$tmp/schema.log"

finish
