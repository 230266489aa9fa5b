# Shared by the broker's script tests: a database of their own on the run's
# private PostgreSQL, brokers started as real processes on 127.0.0.1 with an
# ephemeral port, curl helpers and pass/fail counting.  Everything started
# here is stopped by the EXIT trap, also when a check fails or ctest times out.
set -euo pipefail

# BRK_PG_SERVER: a test that runs its own PostgreSQL names it here
server=${BRK_PG_SERVER:-$(cat "${ATRIUM_TEST_PG_FILE:?run through ctest}")}
tmp=$(mktemp -d /tmp/atrium-broker-test.XXXXXX)
db=brk_$$_$RANDOM
conninfo="$server dbname=$db"
pids=()
fails=0 passes=0
started=$(date +%s)

cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    psql -X -q "$server" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$tmp"
    # pam_wrapper (test-pam.sh) keeps a /tmp/pam.X dir per process that loads
    # it and does not always remove it when that process ends: ours (made
    # since this test began, by one of its processes) go
    local d
    for d in /tmp/pam.?; do
        [[ -f $d/pid && $(stat -c %Y "$d") -ge $started ]] || continue
        for p in "${pids[@]}"; do
            [[ $(cat "$d/pid" 2>/dev/null) == "$p" ]] && rm -rf "$d"
        done
    done
    return 0
}
trap cleanup EXIT
trap 'exit 1' TERM INT

psql_db() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$conninfo" -c "$1"; }

ok() { passes=$((passes + 1)); echo "ok   $1"; }
fail() { fails=$((fails + 1)); echo "FAIL $1"; [[ -z ${2:-} ]] || sed 's/^/    /' "$2" | head -20; }
finish() { echo "$passes passed, $fails failed"; [[ $fails -eq 0 ]]; }

setup_db() { # setup_db SEED: empty database with the current schema
    psql -X -q -v ON_ERROR_STOP=1 "$server" -c "CREATE DATABASE $db" >/dev/null
    "$1" migrate "$conninfo"
}

# write_conf FILE [extra [broker] lines...]
write_conf() {
    local f=$1
    shift
    {
        printf '[db]\nurl = %s\n[broker]\nlisten = 127.0.0.1\n' "$conninfo"
        local l
        for l in "$@"; do printf '%s\n' "$l"; done
    } >"$f"
}

# start_broker BROKER CONF LOG: run it, wait (bounded) for its "broker ready"
# line, set $port and $broker_pid.  Its stderr keeps flowing into LOG.
start_broker() {
    local bin=$1 conf=$2 log=$3 fifo line fd
    fifo=$tmp/fifo.$RANDOM
    mkfifo "$fifo"
    "$bin" --config "$conf" --port 0 2>"$fifo" &
    broker_pid=$!
    pids+=("$broker_pid")
    exec {fd}<"$fifo"
    port=
    while IFS= read -r -t 60 line <&"$fd"; do
        printf '%s\n' "$line" >>"$log"
        if [[ $line == *'msg="broker listening"'* && $line =~ port=([0-9]+) ]]; then
            port=${BASH_REMATCH[1]}
        fi
        [[ $line == *'msg="broker ready"'* ]] && break
    done
    cat <&"$fd" >>"$log" &
    pids+=("$!")
    exec {fd}<&-
    [[ -n $port ]] || { echo "broker did not become ready:"; cat "$log"; return 1; }
}

# plain_broker BROKER [extra [broker] lines...]: a broker on plain HTTP with
# its config in $tmp/atrium.conf ($conf) and its log in $tmp/broker.log,
# started as start_broker does; sets $base to its URL.
plain_broker() {
    local bin=$1
    shift
    conf=$tmp/atrium.conf
    write_conf "$conf" "tls = false" "$@"
    start_broker "$bin" "$conf" "$tmp/broker.log"
    base=http://127.0.0.1:$port
}

# req METHOD PATH [curl args...]: sets $status; body in $tmp/body, headers in $tmp/hdr
req() {
    local m=$1 p=$2
    shift 2
    status=$(curl -sS -o "$tmp/body" -D "$tmp/hdr" -w '%{http_code}' -X "$m" --max-time 30 \
        "$@" "$base$p" 2>"$tmp/curl.err") || status=000
}

# expect NAME STATUS: the last req answered STATUS
expect() {
    if [[ $status == "$2" ]]; then ok "$1"; else fail "$1: status $status, wanted $2" "$tmp/body"; fi
}

# jget EXPR: evaluate a Python expression over the last JSON body (as j)
jget() { python3 -c "import json,sys; j=json.load(open('$tmp/body')); print($1)"; }

# login NAME PASSWORD: curl configs for NAME's session in $tmp/auth.NAME
# (cookie and CSRF header) and $tmp/nocsrf.NAME (the cookie alone)
login() {
    req POST /api/v1/login -H 'Content-Type: application/json' \
        --data-binary "{\"username\":\"$1\",\"password\":\"$2\"}"
    [[ $status == 200 ]] || { fail "log-in of $1" "$tmp/body"; exit 1; }
    local cookie
    cookie=$(sed -n 's/^Set-Cookie: atrium_session=\([^;]*\);.*/\1/Ip' "$tmp/hdr" | tr -d '\r')
    printf -- '-H "Cookie: atrium_session=%s"\n-H "X-CSRF-Token: %s"\n' "$cookie" \
        "$(jget 'j["csrf_token"]')" >"$tmp/auth.$1"
    printf -- '-H "Cookie: atrium_session=%s"\n' "$cookie" >"$tmp/nocsrf.$1"
}

# as NAME METHOD PATH [JSON]: req as NAME (logged in with login), with JSON as the body
as() {
    local who=$1 m=$2 p=$3
    shift 3
    if [[ -n ${1:-} ]]; then
        req "$m" "$p" -K "$tmp/auth.$who" -H 'Content-Type: application/json' --data-binary "$1"
    else
        req "$m" "$p" -K "$tmp/auth.$who"
    fi
}

# refused NAME STATUS ERROR [DETAIL-REGEX]: the last reply is STATUS with
# {"error": ERROR, "detail": ...}, the detail not empty (and matching DETAIL-REGEX)
refused() {
    local d
    d=$(jget 'j.get("detail", "")' 2>/dev/null || true)
    if [[ $status == "$2" && $(jget 'j["error"]' 2>/dev/null) == "$3" && -n $d &&
        (-z ${4:-} || $d =~ $4) ]]; then
        ok "$1 ($2 $3: $d)"
    else fail "$1: status $status, wanted $2 $3${4:+ with detail ~ $4}" "$tmp/body"; fi
}
