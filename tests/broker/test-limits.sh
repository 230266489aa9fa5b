#!/bin/bash
# What a client can make the broker hold is bounded: open connections
# ([broker] max_connections), idle time ([broker] connection_timeout, a
# slow-loris header never finishes), header size.
# usage: test-limits.sh ATRIUM-BROKER BRK-SEED
broker=${1:?usage: test-limits.sh ATRIUM-BROKER BRK-SEED}
seed=${2:?}
. "$(dirname "$0")/lib.sh"

setup_db "$seed"
plain_broker "$broker" "threads = 1" "max_connections = 8" "connection_timeout = 3"

req GET /healthz
expect "broker answers" 200

# Eight connections that send half a request head and then nothing.
fds=()
for i in $(seq 1 8); do
    exec {fd}<>"/dev/tcp/127.0.0.1/$port"
    printf 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n' >&"$fd"
    fds+=("$fd")
done
start=$(date +%s%3N)
req GET /healthz --max-time 2
[[ $status != 200 ]] && ok "a ninth connection is refused while eight are open ($status)" || fail "ninth connection served"

# The broker closes the idle ones itself: reading them ends (EOF) after
# about connection_timeout, well before our own 15 s bound.
closed=0
for fd in "${fds[@]}"; do
    timeout 15 cat <&"$fd" >/dev/null 2>&1 && closed=$((closed + 1))
    exec {fd}<&-
done
elapsed=$(( $(date +%s%3N) - start ))
[[ $closed == 8 && $elapsed -lt 10000 ]] && ok "idle half-sent requests are closed by the broker (${elapsed} ms, timeout 3 s)" ||
    fail "idle connections: $closed closed after ${elapsed} ms"
req GET /healthz --max-time 5
expect "after the idle connections are gone the broker serves again" 200

# A request head larger than the per-connection memory limit.
st=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 \
    -H "X-Pad: $(head -c 100000 /dev/zero | tr '\0' p)" "$base/healthz" 2>/dev/null) || st=000
[[ $st =~ ^4[0-9][0-9]$ ]] && ok "a 100 kB header is refused with $st" || fail "huge header: $st"
# Many small headers add up the same way.
args=()
for i in $(seq 1 2000); do args+=(-H "X-H$i: $(printf '%040d' "$i")"); done
st=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "${args[@]}" "$base/healthz" 2>/dev/null) || st=000
[[ $st =~ ^4[0-9][0-9]$ ]] && ok "2000 headers are refused with $st" || fail "many headers: $st"
req GET /healthz
expect "the broker is unharmed" 200

finish
