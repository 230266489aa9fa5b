#!/bin/bash
# broker_bench: atrium-broker under wrk (Debian's wrk) on the run's private
# PostgreSQL, plain HTTP on 127.0.0.1 so that TLS cost is not measured.
#   - GET /healthz (one database round trip): the floor any route pays
#   - GET /api/v1/me with an API token (token lookup + entitlements)
#   - GET /api/v1/desktops with a browser session cookie
#   - POST /api/v1/login: logins/s at the production argon2id cost
# Prints one markdown table row per measure (docs/PERFORMANCE.md).
# usage: broker_bench.sh ATRIUM-BROKER BRK-SEED [SECONDS]
broker=${1:?usage: broker_bench.sh ATRIUM-BROKER BRK-SEED [SECONDS]}
seed=${2:?}
secs=${3:-10}
. "$(dirname "$0")/../broker/lib.sh"
command -v wrk >/dev/null || { echo "broker_bench: wrk not found (apt-get install wrk)"; exit 1; }

setup_db "$seed"
"$seed" user "$conninfo" alice 'correct horse' admin >/dev/null
uma=$("$seed" user "$conninfo" uma 'user pw' user)
conf=$tmp/atrium.conf
# default log level (info): one log line per request is part of serving it
write_conf "$conf" "tls = false" "threads = 4"
start_broker "$broker" "$conf" "$tmp/broker.log"
base=http://127.0.0.1:$port
J=(-H 'Content-Type: application/json')

# an admin API token, and a browser session of uma entitled to 5 pools
req POST /api/v1/login "${J[@]}" --data-binary '{"username":"alice","password":"correct horse"}'
admin_cookie=$(sed -n 's/^Set-Cookie: atrium_session=\([^;]*\);.*/\1/Ip' "$tmp/hdr" | tr -d '\r')
admin_csrf=$(jget 'j["csrf_token"]')
C=(-H "Cookie: atrium_session=$admin_cookie" -H "X-CSRF-Token: $admin_csrf")
req POST /api/v1/tokens "${C[@]}" "${J[@]}" --data-binary '{"username":"alice","name":"bench"}'
token=$(jget 'j["token"]')
for i in 1 2 3 4 5; do
    req POST /api/v1/pools "${C[@]}" "${J[@]}" --data-binary "{\"name\":\"pool$i\",\"max_size\":10}"
    pool=$(jget 'j["id"]')
    req POST "/api/v1/pools/$pool/entitlements" "${C[@]}" "${J[@]}" --data-binary "{\"user_id\":$uma}"
done
req POST /api/v1/login "${J[@]}" --data-binary '{"username":"uma","password":"user pw"}'
uma_cookie=$(sed -n 's/^Set-Cookie: atrium_session=\([^;]*\);.*/\1/Ip' "$tmp/hdr" | tr -d '\r')
req GET /api/v1/desktops -H "Cookie: atrium_session=$uma_cookie"
[[ $status == 200 && $(jget 'len(j["items"])') == 5 ]] || { echo "set-up failed: desktops $status"; cat "$tmp/body"; exit 1; }

# run NAME CONNECTIONS wrk-args...: one table row
run() {
    local name=$1 conns=$2
    shift 2
    wrk -t2 -c"$conns" -d"${secs}s" --latency "$@" >"$tmp/wrk" 2>&1
    python3 - "$tmp/wrk" "$name" "$conns" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def lat(p):
    m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)\s*$" % p, text, re.M)
    if not m:
        return "?"
    v, u = float(m.group(1)), m.group(2)
    ms = v / 1000 if u == "us" else v * 1000 if u == "s" else v
    return "%.2f ms" % ms
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
errors = re.search(r"Socket errors:.*", text)
note = []
if non2xx:
    note.append("%s non-2xx" % non2xx.group(1))
if errors:
    note.append(errors.group(0))
print("| %s, %s connections | %s /s | %s / %s |%s" % (
    sys.argv[2], sys.argv[3], "{:,.0f}".format(float(rps.group(1))).replace(",", " ") if rps else "?",
    lat(50), lat(99), (" " + "; ".join(note)) if note else ""))
PY
}

cat >"$tmp/login.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"username":"uma","password":"user pw"}'
LUA

echo "| measure | requests/s | p50 / p99 |"
echo "|---|---|---|"
run "GET /healthz (floor: one DB round trip)" 32 "$base/healthz"
run "GET /api/v1/me, API token" 32 -H "Authorization: Bearer $token" "$base/api/v1/me"
run "GET /api/v1/desktops, session cookie, 5 entitled pools" 32 -H "Cookie: atrium_session=$uma_cookie" "$base/api/v1/desktops"
run "POST /api/v1/login (argon2id m=19 MiB t=2 p=1)" 4 -s "$tmp/login.lua" "$base/api/v1/login"
echo "login rows created: $(psql_db "SELECT count(*) FROM logins WHERE kind = 'browser'")"
