#!/bin/bash
# The broker outlives a PostgreSQL restart: requests in flight when the server
# goes away get a clean 503 with Retry-After, every pooled connection reconnects on its next
# use (and re-prepares its statements), and sessions stored before the
# restart still work.  Uses a PostgreSQL of its own (tests/harness/pg.sh) so
# restarting it disturbs no other test.
# usage: test-pg-restart.sh ATRIUM-BROKER BRK-SEED PG_SH
broker=${1:?usage: test-pg-restart.sh ATRIUM-BROKER BRK-SEED PG_SH}
seed=${2:?}
pgsh=${3:?}
pgstate=$(mktemp -d /tmp/atrium-broker-pg.XXXXXX)
trap '"$pgsh" stop "$pgstate" >/dev/null 2>&1; rm -rf "$pgstate"' EXIT
"$pgsh" start "$pgstate" >/dev/null
BRK_PG_SERVER=$(cat "$pgstate/conninfo")
. "$(dirname "$0")/lib.sh"
# lib.sh's trap stops the broker; the server goes after it
trap 'cleanup; "$pgsh" stop "$pgstate" >/dev/null 2>&1; rm -rf "$pgstate"' EXIT

setup_db "$seed"
"$seed" user "$conninfo" alice 'correct horse' admin >/dev/null
plain_broker "$broker" "threads = 2"

req POST /api/v1/login -H 'Content-Type: application/json' --data-binary '{"username":"alice","password":"correct horse"}'
expect "log-in before the restart" 200
C=(-H "Cookie: atrium_session=$(sed -n 's/^Set-Cookie: atrium_session=\([^;]*\);.*/\1/Ip' "$tmp/hdr" | tr -d '\r')")
for i in 1 2 3 4; do req GET /api/v1/me "${C[@]}"; done
expect "the session works before the restart" 200

"$pgsh" restart "$pgstate" >/dev/null

n503=0 other=0 noretry=0
for i in $(seq 1 10); do
    req GET /api/v1/me "${C[@]}"
    case $status in
    200) ;;
    503) n503=$((n503 + 1)); grep -qi '^Retry-After: *[0-9]' "$tmp/hdr" || noretry=$((noretry + 1)) ;;
    *) other=$((other + 1)); cp "$tmp/body" "$tmp/odd" ;;
    esac
done
[[ $other == 0 ]] && ok "during the restart every answer is 200 or a clean 503" || fail "$other unexpected answers" "$tmp/odd"
[[ $noretry == 0 ]] && ok "every 503 says Retry-After ($n503 x 503)" || fail "$noretry of $n503 503s without Retry-After"
[[ $n503 -le 2 ]] && ok "at most one failed request per pooled connection ($n503, 2 connections)" || fail "$n503 failed requests after the restart"
req GET /api/v1/me "${C[@]}"
expect "the session stored before the restart works after it" 200
req GET /healthz
expect "healthz is 200 again" 200

finish
