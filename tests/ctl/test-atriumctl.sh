#!/bin/bash
# atriumctl db: the commands, their exit codes and their one-line errors,
# against the run's private PostgreSQL (ctest fixture "pg").
set -euo pipefail
ctl=${1:?usage: test-atriumctl.sh ATRIUMCTL}
. "$(dirname "$0")/../harness/lib.sh"
atr_init ctl
conf=$tmp/atrium.conf
printf '[db]\nurl = %s dbname=%s\n' "$server" "$db" >"$conf"

check "help" 0 "$ctl" --help
expect "help lists exit codes" '^  5  database schema'
check "db help" 0 "$ctl" db --help
expect "db help lists migrate" 'migrate'
check "db migrate help" 0 "$ctl" --config "$conf" db migrate --help
check "version" 0 "$ctl" --version
check "no command" 2 "$ctl"
check "unknown command" 2 "$ctl" --config "$conf" frobnicate
expect "unknown command named" "unknown command 'frobnicate'"
check "unknown db command" 2 "$ctl" --config "$conf" db frob
check "extra argument" 2 "$ctl" --config "$conf" db status extra

check "status before migrate" 5 "$ctl" --config "$conf" db status
expect "status shows pending" 'version 0 of [0-9]+ \(migrations pending\)'
check "migrate" 0 "$ctl" --config "$conf" db migrate
expect "migrate says what it applied" '^applying migration 0001_initial$'
check "migrate again" 0 "$ctl" --config "$conf" db migrate
expect "second migrate is a no-op" '^schema is up to date at version [0-9]+$'
check "status after" 0 "$ctl" --config "$conf" db status
expect "status up to date" '\(up to date\)'
check "json status" 0 "$ctl" --config "$conf" --json db status
expect "json status" '^\{"server_version":15[0-9]+,"current":[0-9]+,.*"status":"up to date"'

# ATRIUM_CONFIG names the file when --config is absent
check "env config" 0 env ATRIUM_CONFIG="$conf" "$ctl" db status

# a database from a newer Atrium is refused, and left alone
q "INSERT INTO schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')"
check "newer schema migrate" 5 "$ctl" --config "$conf" db migrate
expect "newer schema message" 'schema is at version 999, newer than this Atrium'
one_line "newer schema message"
check "newer schema status" 5 "$ctl" --config "$conf" db status
expect "status marks unknown version" '^999 +future .*unknown to this atriumctl'
truth "newer row untouched" "SELECT count(*) = 1 FROM schema_migrations WHERE version = 999"

# configuration errors: one clear line, exit 3
printf '[db]\nurll = dbname=x\n' >"$tmp/typo.conf"
check "typo key" 3 "$ctl" --config "$tmp/typo.conf" db status
expect "typo key message" "^atriumctl: $tmp/typo.conf:2: unknown key 'urll' in section \[db\]$"
one_line "typo key"
printf '[db]\nurl = x\nconnect_timeout = soon\n' >"$tmp/bad.conf"
check "bad value" 3 "$ctl" --config "$tmp/bad.conf" db status
expect "bad value message" "^atriumctl: $tmp/bad.conf:3: bad value 'soon' for \[db\] connect_timeout: must be an integer from 1 to 600$"
one_line "bad value"
check "missing file" 3 "$ctl" --config "$tmp/none.conf" db migrate
expect "missing file message" "^atriumctl: $tmp/none.conf: cannot open config file: No such file or directory$"
one_line "missing file"
check "missing env file" 3 env ATRIUM_CONFIG="$tmp/none.conf" "$ctl" db status

# database unreachable: exit 4, one line
printf '[db]\nurl = host=%s port=1 dbname=x\nconnect_timeout = 2\n' "$tmp" >"$tmp/down.conf"
check "database down" 4 "$ctl" --config "$tmp/down.conf" db status
expect "database down message" '^atriumctl: cannot connect to the database: '
one_line "database down"

atr_summary
