# Shared by Atrium's script tests: source it, then call atr_init.
#
#   atr_init NAME       temp dir $tmp, a fresh database $db on the run's private
#                       PostgreSQL ($server is the server's conninfo, $dbci the
#                       database's); everything is removed on exit, also on failure
#   atr_on_exit CMD     run CMD (eval'd) on exit, before the database is dropped
#   q SQL               one SQL statement on $db, unaligned output
#   ok NAME / bad NAME  count a check
#   check NAME RC CMD.. run CMD, expect exit status RC; its output is in $tmp/out
#   expect NAME REGEX   $tmp/out has a line matching REGEX
#   one_line NAME       $tmp/out is exactly one line (an error message)
#   truth NAME SQL      SQL returns t
#   wait_for FILE REGEX SECONDS / until_sql SECONDS SQL   bounded waits
#   atr_summary         print "N passed, N failed"; status 0 only when none failed

atr_passes=0
atr_fails=0
atr_exit_cmds=()

atr_cleanup() {
    local c
    for c in "${atr_exit_cmds[@]}"; do eval "$c" || true; done
    if [[ -n ${db:-} && -n ${server:-} ]]; then
        psql -X -q "$server" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    if [[ -n ${tmp:-} && -d $tmp ]]; then
        chmod -R u+w "$tmp" 2>/dev/null || true
        rm -rf "$tmp"
    fi
}

atr_on_exit() { atr_exit_cmds+=("$1"); }

# atr_kill_qemus DIR: kill -9 the QEMUs that hostd started under DIR (they
# run in sessions of their own), found by their pid files and checked
# against their command line (a stale file's pid may be another's by now).
atr_kill_qemus() {
    local f p
    while IFS= read -r f; do
        p=$(cat "$f" 2>/dev/null) || continue
        [[ $p =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$1/" &&
            kill -9 "$p" 2>/dev/null || true
    done < <(find "$1" -name qemu.pid 2>/dev/null)
}

atr_init() {
    local name=${1:?atr_init NAME}
    server=$(cat "${ATRIUM_TEST_PG_FILE:?run through ctest (ATRIUM_TEST_PG_FILE)}")
    tmp=$(mktemp -d "/tmp/atrium-$name.XXXXXX")
    db=${name//[^a-z0-9]/_}_$$_$RANDOM
    trap atr_cleanup EXIT
    psql -X -q -v ON_ERROR_STOP=1 "$server" -c "CREATE DATABASE $db" >/dev/null
    dbci="$server dbname=$db"
}

q() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$dbci" -c "$1"; }

ok() { echo "ok   $1"; atr_passes=$((atr_passes + 1)); }
bad() { echo "FAIL $1"; atr_fails=$((atr_fails + 1)); }

check() {
    local name=$1 want=$2 rc=0
    shift 2
    "$@" >"$tmp/out" 2>&1 || rc=$?
    if [[ $rc -eq $want ]]; then
        ok "$name"
    else
        bad "$name: exit $rc, wanted $want"
        sed 's/^/    /' "$tmp/out"
    fi
}

expect() {
    if grep -Eq -- "$2" "$tmp/out"; then
        ok "$1"
    else
        bad "$1: no line matches /$2/"
        sed 's/^/    /' "$tmp/out"
    fi
}

one_line() {
    local n
    n=$(wc -l <"$tmp/out")
    if [[ $n -eq 1 ]]; then ok "$1 (one line)"; else bad "$1: $n lines"; sed 's/^/    /' "$tmp/out"; fi
}

truth() { if [[ $(q "$2") == t ]]; then ok "$1"; else bad "$1"; fi; }

wait_for() {
    local deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        grep -Eq -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

until_sql() {
    local deadline=$((SECONDS + $1))
    while ((SECONDS < deadline)); do
        [[ $(q "$2") == t ]] && return 0
        sleep 0.5
    done
    return 1
}

atr_summary() {
    echo "$atr_passes passed, $atr_fails failed"
    [[ $atr_fails -eq 0 ]]
}
