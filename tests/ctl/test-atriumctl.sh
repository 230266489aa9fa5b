#!/bin/bash
# atriumctl db: the commands, their exit codes and their one-line errors,
# against the run's private PostgreSQL (ctest fixture "pg").
set -euo pipefail
ctl=${1:?usage: test-atriumctl.sh ATRIUMCTL}
server=$(cat "${ATRIUM_TEST_PG_FILE:?run through ctest}")
tmp=$(mktemp -d /tmp/atrium-ctl-test.XXXXXX)
db=ctl_$$_$RANDOM
drop() {
    psql_cmd "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap drop EXIT
psql_cmd() { psql -X -q -v ON_ERROR_STOP=1 "$server" -c "$1"; }
psql_db() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$server dbname=$db" -c "$1"; }

fails=0 passes=0
check() { # check NAME EXPECTED_RC CMD... ; output kept in $tmp/out
    local name=$1 want=$2
    shift 2
    local rc=0
    "$@" >"$tmp/out" 2>&1 || rc=$?
    if [[ $rc -ne $want ]]; then
        echo "FAIL $name: exit $rc, wanted $want"; sed 's/^/    /' "$tmp/out"; fails=$((fails + 1))
    else
        echo "ok   $name"; passes=$((passes + 1))
    fi
}
expect_out() { # expect_out NAME REGEX : last output matches
    if grep -Eq -- "$2" "$tmp/out"; then passes=$((passes + 1)); echo "ok   $1"
    else echo "FAIL $1: output does not match /$2/"; sed 's/^/    /' "$tmp/out"; fails=$((fails + 1)); fi
}
one_line() {
    local n; n=$(wc -l <"$tmp/out")
    if [[ $n -eq 1 ]]; then passes=$((passes + 1)); echo "ok   $1 (one line)"
    else echo "FAIL $1: $n lines of error"; sed 's/^/    /' "$tmp/out"; fails=$((fails + 1)); fi
}

psql_cmd "CREATE DATABASE $db" >/dev/null
conf=$tmp/atrium.conf
printf '[db]\nurl = %s dbname=%s\n' "$server" "$db" >"$conf"

check "help" 0 "$ctl" --help
expect_out "help lists exit codes" '^  5  database schema'
check "db help" 0 "$ctl" db --help
expect_out "db help lists migrate" 'migrate'
check "db migrate help" 0 "$ctl" --config "$conf" db migrate --help
check "version" 0 "$ctl" --version
check "no command" 2 "$ctl"
check "unknown command" 2 "$ctl" --config "$conf" frobnicate
expect_out "unknown command named" "unknown command 'frobnicate'"
check "unknown db command" 2 "$ctl" --config "$conf" db frob
check "extra argument" 2 "$ctl" --config "$conf" db status extra

check "status before migrate" 5 "$ctl" --config "$conf" db status
expect_out "status shows pending" 'version 0 of [0-9]+ \(migrations pending\)'
check "migrate" 0 "$ctl" --config "$conf" db migrate
expect_out "migrate says what it applied" '^applying migration 0001_initial$'
check "migrate again" 0 "$ctl" --config "$conf" db migrate
expect_out "second migrate is a no-op" '^schema is up to date at version [0-9]+$'
check "status after" 0 "$ctl" --config "$conf" db status
expect_out "status up to date" '\(up to date\)'
check "json status" 0 "$ctl" --config "$conf" --json db status
expect_out "json status" '^\{"server_version":15[0-9]+,"current":[0-9]+,.*"status":"up to date"'

# ATRIUM_CONFIG names the file when --config is absent
check "env config" 0 env ATRIUM_CONFIG="$conf" "$ctl" db status

# a database from a newer Atrium is refused, and left alone
psql_db "INSERT INTO schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')"
check "newer schema migrate" 5 "$ctl" --config "$conf" db migrate
expect_out "newer schema message" 'schema is at version 999, newer than this Atrium'
one_line "newer schema message"
check "newer schema status" 5 "$ctl" --config "$conf" db status
expect_out "status marks unknown version" '^999 +future .*unknown to this atriumctl'
[[ $(psql_db "SELECT count(*) FROM schema_migrations WHERE version = 999") == 1 ]] &&
    { passes=$((passes + 1)); echo "ok   newer row untouched"; } ||
    { fails=$((fails + 1)); echo "FAIL newer row touched"; }

# configuration errors: one clear line, exit 3
printf '[db]\nurll = dbname=x\n' >"$tmp/typo.conf"
check "typo key" 3 "$ctl" --config "$tmp/typo.conf" db status
expect_out "typo key message" "^atriumctl: $tmp/typo.conf:2: unknown key 'urll' in section \[db\]$"
one_line "typo key"
printf '[db]\nurl = x\nconnect_timeout = soon\n' >"$tmp/bad.conf"
check "bad value" 3 "$ctl" --config "$tmp/bad.conf" db status
expect_out "bad value message" "^atriumctl: $tmp/bad.conf:3: bad value 'soon' for \[db\] connect_timeout: must be an integer from 1 to 600$"
one_line "bad value"
check "missing file" 3 "$ctl" --config "$tmp/none.conf" db migrate
expect_out "missing file message" "^atriumctl: $tmp/none.conf: cannot open config file: No such file or directory$"
one_line "missing file"
check "missing env file" 3 env ATRIUM_CONFIG="$tmp/none.conf" "$ctl" db status

# database unreachable: exit 4, one line
printf '[db]\nurl = host=%s port=1 dbname=x\nconnect_timeout = 2\n' "$tmp" >"$tmp/down.conf"
check "database down" 4 "$ctl" --config "$tmp/down.conf" db status
expect_out "database down message" '^atriumctl: cannot connect to the database: '
one_line "database down"

echo "$passes passed, $fails failed"
[[ $fails -eq 0 ]]
