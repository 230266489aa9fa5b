#!/bin/bash
# Golden image upload (POST /api/v1/images/versions): real qcow2 and raw
# disks made with qemu-img become ready versions whose files hold the same
# disk; refusals come before the body is read (role, CSRF, size, disk space,
# no length) or after it (format, backing or data file, checksum), and
# none leaves a version row or a file; a client that stops half-way leaves
# no file either, not even while it is still sending.
# usage: test-upload.sh ATRIUM-BROKER BRK-SEED
broker=${1:?usage: test-upload.sh ATRIUM-BROKER BRK-SEED}
seed=${2:?}
. "$(dirname "$0")/lib.sh"

setup_db "$seed"
"$seed" user "$conninfo" alice 'correct horse' admin >/dev/null
"$seed" user "$conninfo" oscar 'operator pw' operator >/dev/null
"$seed" user "$conninfo" uma 'user pw' user >/dev/null

data=$tmp/data
mkdir -p "$data"
plain_broker "$broker" "threads = 2" "max_image_mb = 8" "[paths]" "data_dir = $data"

login() { # login USER PASSWORD: sets $cookie, $csrf
    req POST /api/v1/login -H 'Content-Type: application/json' \
        --data-binary "{\"username\":\"$1\",\"password\":\"$2\"}"
    [[ $status == 200 ]] || { fail "login $1: $status" "$tmp/body"; return 1; }
    cookie=$(sed -n 's/^Set-Cookie: atrium_session=\([^;]*\);.*/\1/Ip' "$tmp/hdr" | tr -d '\r')
    csrf=$(jget 'j["csrf_token"]')
}
# upload FILE QUERY [curl args...] as the logged-in caller
upload() {
    local f=$1 q=$2
    shift 2
    req POST "/api/v1/images/versions?$q" -H 'Content-Type: application/octet-stream' \
        -b "atrium_session=$cookie" -H "X-CSRF-Token: $csrf" -T "$f" "$@"
}
rows() { psql_db "SELECT count(*) FROM image_versions"; }
files() { find "$data/images" -mindepth 1 2>/dev/null | sort; }

# Disks: 3 MiB of random data and a zero MiB (sparse) tail, as raw and qcow2.
head -c $((3 << 20)) /dev/urandom >"$tmp/disk.raw"
truncate -s 6M "$tmp/disk.raw"
qemu-img convert -q -f raw -O qcow2 "$tmp/disk.raw" "$tmp/disk.qcow2"
qemu-img create -q -f qcow2 -b "$tmp/disk.qcow2" -F qcow2 "$tmp/overlay.qcow2"
qemu-img create -q -f qcow2 -o data_file="$tmp/secret.raw" "$tmp/datafile.qcow2" 1M
qemu-img create -q -f vmdk "$tmp/disk.vmdk" 1M
head -c $((9 << 20)) /dev/urandom >"$tmp/big.raw"

login alice 'correct horse'
admin_cookie=$cookie admin_csrf=$csrf

# ------------------------------------------------------------ success ---
upload "$tmp/disk.qcow2" "name=golden&notes=first%20upload"
expect "a qcow2 upload becomes a version (201)" 201
[[ $(jget 'j["image"], j["version"], j["state"], j["source_format"], j["notes"]') == "golden 1 ready qcow2 first upload" ]] &&
    ok "the reply names image, version 1, ready, qcow2, notes" || fail "qcow2 reply" "$tmp/body"
id=$(jget 'j["id"]')
[[ $(jget 'j["upload_sha256"]') == "$(sha256sum <"$tmp/disk.qcow2" | cut -d' ' -f1)" &&
    $(jget 'j["upload_bytes"]') == "$(stat -c %s "$tmp/disk.qcow2")" ]] &&
    ok "upload_sha256 and upload_bytes are those of the file sent" || fail "upload checksum" "$tmp/body"
path=$(psql_db "SELECT path FROM image_versions WHERE id = $id AND state = 'ready'")
[[ $path == "$data/images/$id.qcow2" && $(stat -c %a "$path") == 444 ]] &&
    ok "the version's file is $id.qcow2 under the image area, read-only" || fail "file: '$path'"
qemu-img compare -q "$tmp/disk.raw" "$path" && ok "the stored qcow2 holds the same disk" ||
    fail "stored disk differs"
[[ $(psql_db "SELECT sha256 FROM image_versions WHERE id = $id") == "$(sha256sum <"$path" | cut -d' ' -f1)" ]] &&
    ok "the row's sha256 is the stored file's" || fail "row sha256"
[[ $(psql_db "SELECT count(*) FROM audit_log WHERE action = 'image.upload' AND actor = 'alice'
              AND target_id = '$id' AND detail->>'source_format' = 'qcow2'") == 1 ]] &&
    ok "the upload is audited" || fail "no audit row"

upload "$tmp/disk.raw" "name=golden&sha256=$(sha256sum <"$tmp/disk.raw" | cut -d' ' -f1 | tr a-f A-F)"
expect "a raw upload with its (upper-case) sha256 is accepted" 201
[[ $(jget 'j["version"], j["source_format"]') == "2 raw" ]] && ok "it is version 2, from raw" ||
    fail "raw reply" "$tmp/body"
qemu-img compare -q "$tmp/disk.raw" "$data/images/$(jget 'j["id"]').qcow2" &&
    ok "the raw upload was converted to the same disk" || fail "raw disk differs"
req GET /api/v1/images -b "atrium_session=$cookie"
[[ $(jget '[len(i["versions"]) for i in j["items"] if i["name"] == "golden"][0]') == 2 ]] &&
    ok "GET /images lists both versions" || fail "images list" "$tmp/body"

# --------------------------------------------- refused after the body ---
before_rows=$(rows) before_files=$(files)
unchanged() { # unchanged NAME: no row and no file came or went
    [[ $(rows) == "$before_rows" && $(files) == "$before_files" ]] && ok "$1: nothing is left" ||
        fail "$1: rows $(rows) (was $before_rows), files: $(files | tr '\n' ' ')"
}
upload "$tmp/disk.raw" "name=golden&sha256=$(printf '0%.0s' {1..64})"
expect "a body whose SHA-256 differs from the one sent is refused (422)" 422
[[ $(jget 'j["error"]') == checksum_mismatch ]] && ok "422 says checksum_mismatch" || fail "mismatch body" "$tmp/body"
unchanged "checksum mismatch"
upload "$tmp/disk.vmdk" "name=golden"
expect "a vmdk is refused (415)" 415
[[ $(jget 'j["error"]') == unsupported_image && $(jget 'j["detail"]') == "the upload is vmdk; only qcow2 and raw can be imported" ]] &&
    ok "415 says why in words, without a server path" || fail "vmdk body" "$tmp/body"
unchanged "vmdk"
upload "$tmp/overlay.qcow2" "name=golden"
expect "a qcow2 with a backing file is refused (415)" 415
unchanged "backing file"
upload "$tmp/datafile.qcow2" "name=golden"
expect "a qcow2 naming an external data file is refused (415)" 415
[[ $(jget 'j["detail"]') == *"external data file"* ]] && ok "415 names the data file" || fail "data-file body" "$tmp/body"
unchanged "data file"

# -------------------------------------------- refused before the body ---
upload "$tmp/big.raw" "name=golden"
expect "an image over max_image_mb is refused (413)" 413
[[ $(jget 'j["error"]') == image_too_large && $(jget 'j["detail"]') == *"at most 8 MiB"* ]] &&
    ok "413 names the limit" || fail "413 body" "$tmp/body"
req POST "/api/v1/images/versions?name=golden" -H 'Content-Type: text/plain' \
    -b "atrium_session=$cookie" -H "X-CSRF-Token: $csrf" -T "$tmp/disk.raw"
expect "a body that is not application/octet-stream is refused (415)" 415
upload "$tmp/disk.raw" "name=../etc"
expect "a name with a slash is refused (400)" 400
upload "$tmp/disk.raw" "notes=x"
expect "no name is refused (400)" 400
upload "$tmp/disk.raw" "name=golden" -H 'Transfer-Encoding: chunked'
expect "a body without Content-Length is refused (411)" 411
req POST "/api/v1/images/versions?name=golden" -H 'Content-Type: application/octet-stream' \
    -b "atrium_session=$cookie" -T "$tmp/disk.raw"
expect "the session cookie without the CSRF header is refused (403)" 403
req POST "/api/v1/images/versions?name=golden" -H 'Content-Type: application/octet-stream' \
    -T "$tmp/disk.raw"
expect "no session is refused (401)" 401
login oscar 'operator pw'
upload "$tmp/disk.raw" "name=golden"
expect "an operator may not upload (403)" 403
login uma 'user pw'
upload "$tmp/disk.raw" "name=golden"
expect "a user may not upload (403)" 403
[[ $(psql_db "SELECT count(*) FROM audit_log WHERE action = 'api.request' AND outcome = 'denied'
              AND target_id = '/api/v1/images/versions'") -ge 3 ]] &&
    ok "refused callers are audited" || fail "denials not audited"
unchanged "refusals before the body"
cookie=$admin_cookie csrf=$admin_csrf

# Disk space: a second broker that would take 16 TiB, asked for 10 TiB.
conf2=$tmp/atrium2.conf
write_conf "$conf2" "tls = false" "threads = 2" "max_image_mb = 16777216" "[paths]" "data_dir = $data"
port1=$port
start_broker "$broker" "$conf2" "$tmp/broker2.log"
base=http://127.0.0.1:$port
upload "$tmp/disk.raw" "name=golden" -H "Content-Length: $((10 << 40))"
expect "a body larger than the free disk space is refused (507)" 507
[[ $(jget 'j["error"]') == insufficient_storage && $(jget 'j["detail"]') == *free* ]] &&
    ok "507 says how much is free" || fail "507 body" "$tmp/body"
unchanged "disk space"

# ------------------------------------------------------------ aborted ---
# 20 MiB at 1 MiB/s, cut after a few seconds.  While it flows the broker
# holds the body in an unnamed file of the image area (no name to find).
head -c $((20 << 20)) /dev/urandom >"$tmp/slow.raw"
curl -sS -o /dev/null --limit-rate 1M -X POST -H 'Content-Type: application/octet-stream' \
    -b "atrium_session=$cookie" -H "X-CSRF-Token: $csrf" -T "$tmp/slow.raw" \
    "$base/api/v1/images/versions?name=cut" 2>/dev/null &
curl_pid=$!
pids+=("$curl_pid")
held=
for _ in $(seq 1 50); do
    held=$(find "/proc/$broker_pid/fd" -lname "$data/images/#* (deleted)" 2>/dev/null | head -1)
    [[ -n $held ]] && break
    sleep 0.1
done
[[ -n $held ]] && ok "mid-upload the body is in an unnamed file of the image area" ||
    fail "no unnamed upload file open in the broker"
sleep 2
[[ $(files) == "$before_files" ]] && ok "mid-upload no file has a name" || fail "named files mid-upload: $(files)"
kill "$curl_pid"
wait "$curl_pid" 2>/dev/null || true
# the broker's request log line for the cut request says completed=false
for _ in $(seq 1 100); do
    grep -q 'path=/api/v1/images/versions .*completed=false' "$tmp/broker2.log" && break
    sleep 0.1
done
grep -q 'path=/api/v1/images/versions .*completed=false' "$tmp/broker2.log" &&
    ok "the broker saw the upload cut" || fail "no cut request logged" "$tmp/broker2.log"
left=$(find "/proc/$broker_pid/fd" -lname "$data/images/*" 2>/dev/null | wc -l)
[[ $left == 0 ]] && ok "the cut upload's file is closed (and so gone)" || fail "$left image files still open"
unchanged "aborted upload"
[[ $(psql_db "SELECT count(*) FROM images WHERE name = 'cut'") == 0 ]] &&
    ok "the cut upload created no image" || fail "image 'cut' exists"
req GET /healthz
expect "the broker is unharmed" 200
port=$port1

finish
