#!/bin/bash
# A PAM user logs in through the real broker: the real PAM library runs the
# "atrium" service, here from a test directory through pam_wrapper with
# pam_matrix as its only module, and nss_wrapper supplies the person's Unix
# groups.  The first log-in creates their users row; their Unix group counts
# for entitlements.
# usage: test-pam.sh ATRIUM-BROKER BRK-SEED PAM_WRAPPER_SO NSS_WRAPPER_SO PAM_MATRIX_SO
broker=${1:?usage: test-pam.sh ATRIUM-BROKER BRK-SEED PAM_WRAPPER NSS_WRAPPER PAM_MATRIX}
seed=${2:?}
pam_wrapper=${3:?}
nss_wrapper=${4:?}
pam_matrix=${5:?}
. "$(dirname "$0")/lib.sh"

setup_db "$seed"
"$seed" user "$conninfo" alice 'correct horse' admin >/dev/null

mkdir -p "$tmp/pam.d"
printf 'paula:paula-pam-pw:atrium\n' >"$tmp/passdb"
printf 'auth required %s passdb=%s\naccount required %s passdb=%s\n' \
    "$pam_matrix" "$tmp/passdb" "$pam_matrix" "$tmp/passdb" >"$tmp/pam.d/atrium"
printf 'auth required pam_deny.so\naccount required pam_deny.so\n' >"$tmp/pam.d/other"
printf 'paula:x:5101:5101:Paula:/nonexistent:/bin/false\n' >"$tmp/passwd"
printf 'paula:x:5101:\ndesigners:x:7001:paula\n' >"$tmp/group"

conf=$tmp/atrium.conf
write_conf "$conf" "tls = false" "threads = 2"
# LD_PRELOAD puts the wrappers before ASan's runtime (see tests/auth).
LD_PRELOAD="$pam_wrapper:$nss_wrapper" PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR="$tmp/pam.d" \
    NSS_WRAPPER_PASSWD="$tmp/passwd" NSS_WRAPPER_GROUP="$tmp/group" \
    UID_WRAPPER_DISABLE_DEEPBIND=1 ASAN_OPTIONS=verify_asan_link_order=0 \
    start_broker "$broker" "$conf" "$tmp/broker.log"
base=http://127.0.0.1:$port
J=(-H 'Content-Type: application/json')

# the admin declares the Unix group and entitles it to a pool
req POST /api/v1/login "${J[@]}" --data-binary '{"username":"alice","password":"correct horse"}'
expect "local admin logs in next to PAM" 200
C=(-H "Cookie: atrium_session=$(sed -n 's/^Set-Cookie: atrium_session=\([^;]*\);.*/\1/Ip' "$tmp/hdr" | tr -d '\r')"
   -H "X-CSRF-Token: $(jget 'j["csrf_token"]')")
req POST /api/v1/groups "${C[@]}" "${J[@]}" --data-binary '{"name":"designers","source":"unix"}'
expect "unix group declared" 201
group=$(jget 'j["id"]')
req POST /api/v1/pools "${C[@]}" "${J[@]}" --data-binary '{"name":"studio"}'
pool=$(jget 'j["id"]')
req POST "/api/v1/pools/$pool/entitlements" "${C[@]}" "${J[@]}" --data-binary "{\"group_id\":$group}"
expect "unix group entitled to studio" 201

req POST /api/v1/login "${J[@]}" --data-binary '{"username":"paula","password":"wrong"}'
expect "a wrong PAM password is 401" 401
[[ $(psql_db "SELECT count(*) FROM users WHERE username = 'paula'") == 0 ]] && ok "a refused PAM log-in creates no user" || fail "user row after refused PAM login"
req POST /api/v1/login "${J[@]}" --data-binary '{"username":"paula","password":"paula-pam-pw"}'
expect "the PAM user logs in with their own password" 200
[[ $(psql_db "SELECT source || ' ' || role FROM users WHERE username = 'paula'") == "pam user" ]] && ok "the first PAM log-in creates a pam user row" || fail "pam user row"
cookie=$(sed -n 's/^Set-Cookie: atrium_session=\([^;]*\);.*/\1/Ip' "$tmp/hdr" | tr -d '\r')
req GET /api/v1/desktops -H "Cookie: atrium_session=$cookie"
[[ $status == 200 && $(jget '[i["name"] for i in j["items"]]') == "['studio']" ]] && ok "the PAM user's Unix group entitles them to studio" || fail "pam desktops" "$tmp/body"
req POST /api/v1/login "${J[@]}" --data-binary '{"username":"nobody","password":"paula-pam-pw"}'
expect "a name PAM does not know is 401" 401

finish
