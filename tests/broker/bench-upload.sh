#!/bin/bash
# Golden image upload throughput over loopback: a 200 MiB disk of random
# data (it neither compresses nor has holes), sent as raw and as qcow2 with
# curl -T to a real broker (plain HTTP; TLS is not in the measurement), three
# times each.  Prints per run the end-to-end time to the 201 and, from the
# broker's "image uploaded" log line, how much of it was the import (qemu-img
# convert + SHA-256 of the result), so the upload's own rate is
# size / (total - import).  Peer, same run: the same bytes through `tee` to
# a file in the same directory and `openssl dgst -sha256` (what the broker
# does with each piece, without HTTP), so the ratio says what HTTP and the
# broker add.
# usage: bench-upload.sh ATRIUM-BROKER BRK-SEED [MiB]
broker=${1:?usage: bench-upload.sh ATRIUM-BROKER BRK-SEED [MiB]}
seed=${2:?}
mib=${3:-200}
. "$(dirname "$0")/lib.sh"

setup_db "$seed"
"$seed" user "$conninfo" alice 'correct horse' admin >/dev/null
data=$tmp/data
mkdir -p "$data"
plain_broker "$broker" "threads = 2" "[paths]" "data_dir = $data"

req POST /api/v1/login -H 'Content-Type: application/json' \
    --data-binary '{"username":"alice","password":"correct horse"}'
[[ $status == 200 ]] || { echo "FAIL login: $status"; exit 1; }
cookie=$(sed -n 's/^Set-Cookie: atrium_session=\([^;]*\);.*/\1/Ip' "$tmp/hdr" | tr -d '\r')
csrf=$(jget 'j["csrf_token"]')

head -c $((mib << 20)) /dev/urandom >"$tmp/disk.raw"
qemu-img convert -q -f raw -O qcow2 "$tmp/disk.raw" "$tmp/disk.qcow2"

for fmt in raw qcow2; do
    f=$tmp/disk.$fmt
    bytes=$(stat -c %s "$f")
    for run in 1 2 3; do
        t=$(curl -sS -X POST -o "$tmp/body" -w '%{http_code} %{time_total}' --max-time 600 \
            -H 'Content-Type: application/octet-stream' -b "atrium_session=$cookie" \
            -H "X-CSRF-Token: $csrf" -T "$f" "$base/api/v1/images/versions?name=bench-$fmt")
        read -r code total <<<"$t"
        [[ $code == 201 ]] || { echo "FAIL upload $fmt: $code $(cat "$tmp/body")"; exit 1; }
        imp=$(grep 'msg="image uploaded"' "$tmp/broker.log" | tail -1 | sed -n 's/.*import_ms=\([0-9]*\).*/\1/p')
        python3 - "$fmt" "$run" "$bytes" "$total" "$imp" <<'PY'
import sys
fmt, run, size, total, imp = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]) / 1000
up = total - imp
print(f"{fmt:5} run {run}: {size / 2**20:6.1f} MiB  201 after {total:6.2f} s "
      f"(end to end {size / 1e6 / total:6.1f} MB/s)  import {imp:5.2f} s  "
      f"upload {up:5.2f} s = {size / 1e6 / up:6.1f} MB/s")
PY
    done
done

for run in 1 2 3; do
    s0=$(date +%s%N)
    tee "$data/peer.raw" <"$tmp/disk.raw" | openssl dgst -sha256 >/dev/null
    s1=$(date +%s%N)
    rm -f "$data/peer.raw"
    python3 -c "import sys; b=int(sys.argv[1]); ns=int(sys.argv[2]); print(f'peer  run {sys.argv[3]}: tee + openssl sha256 of {b / 2**20:.1f} MiB: {ns / 1e9:5.2f} s = {b / 1e6 / (ns / 1e9):6.1f} MB/s')" \
        "$(stat -c %s "$tmp/disk.raw")" $((s1 - s0)) "$run"
done
