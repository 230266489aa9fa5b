#!/bin/bash
# Second factor through the real broker: enrolment (otpauth URI, first code,
# recovery codes), TOTP required once enrolled, no replay, recovery codes
# work once, a role that requires TOTP gets an enrolment-only session, the
# admin's TOTP reset and account unlock.
# usage: test-totp.sh ATRIUM-BROKER BRK-SEED
broker=${1:?usage: test-totp.sh ATRIUM-BROKER BRK-SEED}
seed=${2:?}
. "$(dirname "$0")/lib.sh"

setup_db "$seed"
"$seed" user "$conninfo" alice 'correct horse' admin >/dev/null
tina=$("$seed" user "$conninfo" tina 'tina pw' user)
"$seed" user "$conninfo" oscar 'operator pw' operator >/dev/null
victim=$("$seed" user "$conninfo" victim 'victim pw' user)
plain_broker "$broker" "threads = 2"
J=(-H 'Content-Type: application/json')

login() { # login USER PASSWORD [TOTP]: sets $status, and $S (cookie + CSRF headers) on 200
    local body="{\"username\":\"$1\",\"password\":\"$2\"${3:+,\"totp\":\"$3\"}}"
    req POST /api/v1/login "${J[@]}" --data-binary "$body"
    S=()
    if [[ $status == 200 ]]; then
        S=(-H "Cookie: atrium_session=$(sed -n 's/^Set-Cookie: atrium_session=\([^;]*\);.*/\1/Ip' "$tmp/hdr" | tr -d '\r')"
           -H "X-CSRF-Token: $(jget 'j["csrf_token"]')")
    fi
}
# totp SECRET OFFSET: the RFC 6238 code (SHA-1, 6 digits, 30 s) for now + OFFSET steps
totp() {
    python3 - "$1" "$2" <<'PY'
import base64, hashlib, hmac, struct, sys, time
key = base64.b32decode(sys.argv[1] + "=" * (-len(sys.argv[1]) % 8))
step = int(time.time()) // 30 + int(sys.argv[2])
h = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
o = h[-1] & 15
print("%06d" % ((struct.unpack(">I", h[o:o + 4])[0] & 0x7fffffff) % 1000000))
PY
}

login alice 'correct horse'
A=("${S[@]}")

# ----------------------------------------------------------- enrolment ---
login tina 'tina pw'
expect "tina logs in with a password alone before enrolling" 200
T=("${S[@]}")
req POST /api/v1/me/totp "${T[@]}"
expect "enrolment begins" 200
uri=$(jget 'j["otpauth_uri"]')
secret=$(python3 -c "import sys, urllib.parse as u; print(u.parse_qs(u.urlparse(sys.argv[1]).query)['secret'][0])" "$uri")
[[ $uri == otpauth://totp/Atrium:tina\?* && -n $secret ]] && ok "the reply is an otpauth:// URI with a secret" || fail "otpauth uri: $uri"
req POST /api/v1/me/totp/confirm "${T[@]}" "${J[@]}" --data-binary '{"code":"000000x"}'
expect "a malformed or wrong code does not enable TOTP" 400
[[ $(psql_db "SELECT totp_enabled FROM users WHERE id = $tina") == f ]] && ok "TOTP still off after a wrong code" || fail "enabled by wrong code"
code0=$(totp "$secret" 0)
req POST /api/v1/me/totp/confirm "${T[@]}" "${J[@]}" --data-binary "{\"code\":\"$code0\"}"
expect "the current code confirms enrolment" 200
[[ $(jget 'len(j["recovery_codes"])') == 10 ]] && ok "ten recovery codes are shown once" || fail "recovery codes" "$tmp/body"
recovery=$(jget 'j["recovery_codes"][0]')
req POST /api/v1/me/totp "${T[@]}"
expect "enrolling again while enrolled is 409" 409

# ------------------------------------------------------------- log-in ---
login tina 'tina pw'
expect "with TOTP enrolled a password alone is not enough" 401
[[ $(jget 'j["error"]') == totp_required ]] && ok "the reply asks for the code" || fail "totp_required" "$tmp/body"
login tina 'tina pw' "$code0"
expect "the code used for enrolment cannot be replayed" 401
code1=$(totp "$secret" 1)
login tina 'tina pw' "$code1"
expect "the next code logs in" 200
login tina 'tina pw' "$code1"
expect "the same code does not log in twice" 401
login tina 'wrong pw' "$(totp "$secret" 1)"
expect "a right code with a wrong password is refused" 401
login tina 'tina pw' "$recovery"
expect "a recovery code logs in" 200
login tina 'tina pw' "$recovery"
expect "a recovery code works once" 401

# ---------------------------------------------- role requires TOTP ---
req PATCH /api/v1/policies/totp "${A[@]}" "${J[@]}" --data-binary '{"operator":true,"user":"yes"}'
expect "a policy value that is not a boolean is 400" 400
req PATCH /api/v1/policies/totp "${A[@]}" "${J[@]}" --data-binary '{"operator":true,"root":true}'
expect "an unknown role in the policy is 400" 400
[[ $(psql_db "SELECT count(*) FROM role_policies WHERE totp_required") == 0 ]] && ok "refused policy changes change nothing" || fail "policy half-applied"
req PATCH /api/v1/policies/totp "${A[@]}" "${J[@]}" --data-binary '{"operator":true}'
expect "the admin requires TOTP for operators" 200
[[ $(jget 'j["operator"], j["admin"], j["user"]') == "True False False" ]] && ok "the reply is the whole policy" || fail "policy reply" "$tmp/body"
login oscar 'operator pw'
expect "an operator without TOTP gets a session" 200
[[ $(jget 'j["totp_enrollment_required"]') == True ]] && ok "the reply says the session is for enrolment only" || fail "enrolment flag" "$tmp/body"
O=("${S[@]}")
req GET /api/v1/hosts "${O[@]}"
expect "an enrolment-only session cannot read hosts" 403
[[ $(jget 'j["error"]') == totp_enrollment_required ]] && ok "403 says why" || fail "enrol 403 body" "$tmp/body"
req GET /api/v1/me "${O[@]}"
expect "an enrolment-only session can read me" 200
req POST /api/v1/me/totp "${O[@]}"
osecret=$(python3 -c "import sys, urllib.parse as u; print(u.parse_qs(u.urlparse(sys.argv[1]).query)['secret'][0])" "$(jget 'j["otpauth_uri"]')")
req POST /api/v1/me/totp/confirm "${O[@]}" "${J[@]}" --data-binary "{\"code\":\"$(totp "$osecret" 0)\"}"
expect "the operator enrols" 200
req GET /api/v1/hosts "${O[@]}"
expect "after enrolling the same session reads hosts" 200

# --------------------------------------------------------- admin acts ---
req DELETE "/api/v1/users/$tina/totp" "${O[@]}"
expect "an operator cannot reset TOTP" 403
req PATCH /api/v1/policies/totp "${O[@]}" "${J[@]}" --data-binary '{"operator":false}'
expect "an operator cannot change the TOTP policy" 403
req GET /api/v1/policies/totp "${O[@]}"
[[ $status == 200 && $(jget 'j["operator"]') == True ]] && ok "an operator reads the policy, unchanged" || fail "policy read" "$tmp/body"
req DELETE "/api/v1/users/$tina/totp" "${A[@]}"
expect "the admin resets tina's TOTP" 200
login tina 'tina pw'
expect "after the reset tina logs in with her password" 200
for i in 1 2 3 4 5; do login victim "wrong $i"; done
login victim 'victim pw'
expect "five failures lock the account" 429
req POST "/api/v1/users/$victim/unlock" "${A[@]}"
expect "the admin unlocks the account" 200
login victim 'victim pw'
expect "the unlocked account logs in" 200
req POST "/api/v1/users/999999/unlock" "${A[@]}"
expect "unlocking a missing user is 404" 404
[[ $(psql_db "SELECT count(*) FROM audit_log WHERE action IN ('totp.enroll', 'user.totp_reset', 'user.unlock')") == 4 ]] &&
    ok "enrolments, resets and unlocks are audited" || fail "totp audit rows"

finish
