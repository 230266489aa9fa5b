#!/bin/bash
# atrium-broker over HTTPS with a self-signed certificate made here: the
# handshake works for TLS 1.2 and 1.3 and verifies against that certificate,
# TLS 1.1 and 1.0 are refused by the server, a missing key file stops the
# start-up with a clear message.
# usage: test-tls.sh ATRIUM-BROKER BRK-SEED
broker=${1:?usage: test-tls.sh ATRIUM-BROKER BRK-SEED}
seed=${2:?}
. "$(dirname "$0")/lib.sh"

setup_db "$seed"
"$seed" user "$conninfo" alice 'correct horse' admin >/dev/null

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>"$tmp/openssl.log" ||
    { cat "$tmp/openssl.log"; exit 1; }

conf=$tmp/atrium.conf
write_conf "$conf" "tls = true" "tls_cert = $tmp/cert.pem" "tls_key = $tmp/key.pem" "threads = 2"
start_broker "$broker" "$conf" "$tmp/broker.log"
base=https://127.0.0.1:$port

req GET /healthz --cacert "$tmp/cert.pem"
expect "HTTPS request verified against the test certificate" 200
grep -qi '^Strict-Transport-Security:' "$tmp/hdr" && ok "HTTPS replies carry HSTS" || fail "no HSTS" "$tmp/hdr"
req GET /healthz
[[ $status == 000 ]] && ok "an unknown certificate is not trusted by default (curl refuses)" || fail "curl trusted an unknown cert: $status"

req POST /api/v1/login --cacert "$tmp/cert.pem" -H 'Content-Type: application/json' \
    -c "$tmp/jar" --data-binary '{"username":"alice","password":"correct horse"}'
expect "log-in over HTTPS" 200
req GET /api/v1/me --cacert "$tmp/cert.pem" -b "$tmp/jar"
expect "curl's cookie jar sends the Secure cookie back over HTTPS" 200

hs() { # hs NAME WANT(ok|refused) s_client args...
    local name=$1 want=$2
    shift 2
    local out=$tmp/sclient.$RANDOM rc=0
    timeout 20 openssl s_client -connect "127.0.0.1:$port" -servername 127.0.0.1 "$@" \
        </dev/null >"$out" 2>&1 || rc=$?
    local proto
    proto=$(sed -n 's/^New, \(TLSv1\.[0-3]\), Cipher.*/\1/p' "$out" | head -1)
    if [[ $want == ok ]]; then
        [[ $rc == 0 && -n $proto ]] && ok "$name ($proto)" || fail "$name: rc $rc" "$out"
    else
        # The client did offer the old version (SECLEVEL=0 lets OpenSSL 3
        # send it: the ClientHello is in the -msg trace); the server must
        # not answer with a ServerHello.
        [[ $rc != 0 ]] && grep -q '^>>> .*ClientHello' "$out" && ! grep -q '^<<< .*ServerHello' "$out" &&
            [[ -z $proto ]] && ok "$name" || fail "$name: rc $rc" "$out"
    fi
}
hs "TLS 1.3 handshake" ok -tls1_3
hs "TLS 1.2 handshake" ok -tls1_2
hs "TLS 1.1 is refused by the server" refused -msg -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0'
hs "TLS 1.0 is refused by the server" refused -msg -tls1 -cipher 'DEFAULT:@SECLEVEL=0'
curl -sS -o /dev/null --max-time 20 --cacert "$tmp/cert.pem" --tlsv1.1 --tls-max 1.1 \
    "$base/healthz" 2>"$tmp/curl11" && fail "curl got through with TLS 1.1" || ok "curl with TLS 1.1 only gets no answer"
req GET /healthz -k --http1.1 -H 'Connection: close'
expect "plain HTTP/1.1 over TLS still works after refused handshakes" 200

# plain HTTP to the TLS port is not served
st=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$port/healthz" 2>/dev/null) || st=000
[[ $st != 200 ]] && ok "plain HTTP to the HTTPS port gets no 200 ($st)" || fail "plain HTTP served on the TLS port"

# a key that cannot be read stops the start-up with the file named
write_conf "$tmp/bad.conf" "tls = true" "tls_cert = $tmp/cert.pem" "tls_key = $tmp/missing.pem"
rc=0
timeout 30 "$broker" --config "$tmp/bad.conf" --port 0 2>"$tmp/bad.log" || rc=$?
[[ $rc != 0 ]] && grep -q "missing.pem: cannot open" "$tmp/bad.log" && ok "missing key file refused at start (exit $rc)" || fail "missing key: exit $rc" "$tmp/bad.log"

finish
