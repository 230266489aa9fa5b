# Shared by the web tests: a database of their own on the run's private
# PostgreSQL, playwright-core installed into the build dir, processes started
# in the background and stopped by the EXIT trap (also on failure or when
# ctest times out), and the broker started on 127.0.0.1 with an ephemeral port.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=${ATRIUM_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
out=${ATRIUM_BINARY_DIR:?run through ctest}/tests/web
chromium=${ATRIUM_CHROMIUM:-/usr/bin/chromium}

for need in node npm psql curl python3; do
    command -v "$need" >/dev/null || { echo "SKIP: $need is not installed"; exit 77; }
done
[[ -x $chromium ]] || { echo "SKIP: $chromium is missing (apt-get install chromium)"; exit 77; }

server=$(cat "${ATRIUM_TEST_PG_FILE:?run through ctest}")
tmp=$(mktemp -d /tmp/atrium-web.XXXXXX)
db=web_$$_$RANDOM
conninfo="$server dbname=$db"
pids=()

cleanup() {
    local rc=$? p f
    # processes a test's node script started write their pid to $tmp/*.pid
    for f in "$tmp"/*.pid; do [[ -f $f ]] && pids+=("$(cat "$f")"); done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    # bounded: whatever does not stop within 10 s is killed
    for p in "${pids[@]}"; do
        timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || kill -9 "$p" 2>/dev/null || true
    done
    # QEMUs that hostd started run in sessions of their own: their pid files,
    # checked against the process's command line (a stale file's pid may be
    # someone else's by now)
    while IFS= read -r f; do
        p=$(cat "$f" 2>/dev/null) || continue
        [[ $p =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$tmp/" &&
            kill -9 "$p" 2>/dev/null || true
    done < <(find "$tmp" -name qemu.pid 2>/dev/null)
    timeout 20 psql -X -q "$server" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$tmp"
    exit $rc
}
trap cleanup EXIT
trap 'exit 1' TERM INT

psql_db() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$conninfo" -c "$1"; }
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# playwright-core only (a driver: no browser is downloaded); reinstalled when
# the lock file changes.
npm_deps() {
    mkdir -p "$out/node"
    if ! cmp -s "$here/package-lock.json" "$out/node/package-lock.json" ||
        [[ ! -f $out/node/node_modules/playwright-core/package.json ]]; then
        cp "$here/package.json" "$here/package-lock.json" "$out/node/"
        (cd "$out/node" && timeout 240 npm ci --no-audit --no-fund --loglevel=error) ||
            { echo "FAIL: npm ci of playwright-core"; return 1; }
    fi
}

create_db() { # create_db ATRIUMCTL CONF
    psql -X -q -v ON_ERROR_STOP=1 "$server" -c "CREATE DATABASE $db" >/dev/null
    "$1" --config "$2" db migrate >/dev/null
}

# start_daemon NAME READY-PATTERN SECONDS CMD...: run CMD with stderr into
# $tmp/NAME.log; wait (bounded) for a line matching READY-PATTERN.
start_daemon() {
    local name=$1 pattern=$2 secs=$3 fifo line fd found=
    shift 3
    fifo=$tmp/$name.fifo
    mkfifo "$fifo"
    "$@" 2>"$fifo" &
    daemon_pid=$!
    pids+=("$!")
    exec {fd}<"$fifo"
    : >"$tmp/$name.log"
    while IFS= read -r -t "$secs" line <&"$fd"; do
        printf '%s\n' "$line" >>"$tmp/$name.log"
        if [[ $line == *'msg="broker listening"'* && $line =~ port=([0-9]+) ]]; then
            port=${BASH_REMATCH[1]}
        fi
        [[ $line == *$pattern* ]] && { found=1; break; }
    done
    cat <&"$fd" >>"$tmp/$name.log" &
    pids+=("$!")
    exec {fd}<&-
    [[ -n $found ]] || { echo "FAIL: $name did not become ready"; cat "$tmp/$name.log"; return 1; }
}

# write_conf [--run] [--data] [--display] [EXTRA]: writes $conf
# ($tmp/atrium.conf) for this test's daemons: the database and the broker on
# loopback over plain HTTP serving $src/web; --run adds the runtime dir $run
# ($tmp/run), --data the data dir $tmp/data (both made here); --display a
# displayd on free loopback ports ($vnc_port, $spice_port, $rdp_port) with a
# throw-away self-signed certificate (it always has TLS ready, for RDP).
# EXTRA is INI text appended as it is (more sections, or more keys in a
# repeated [broker] section).
write_conf() {
    local want_run= want_data= want_display=
    while [[ ${1:-} == --* ]]; do
        case $1 in
        --run) want_run=1 ;;
        --data) want_data=1 ;;
        --display) want_display=1 ;;
        *) echo "write_conf: unknown option $1" >&2; return 2 ;;
        esac
        shift
    done
    conf=$tmp/atrium.conf
    run=$tmp/run
    {
        printf '[db]\nurl = %s\n' "$conninfo"
        if [[ -n $want_run$want_data ]]; then
            echo '[paths]'
            [[ -z $want_run ]] || { mkdir -p "$run"; echo "runtime_dir = $run"; }
            [[ -z $want_data ]] || { mkdir -p "$tmp/data"; echo "data_dir = $tmp/data"; }
        fi
        printf '[broker]\nlisten = 127.0.0.1\ntls = false\nthreads = 4\nweb_root = %s\n' "$src/web"
    } >"$conf"
    if [[ -n $want_display ]]; then
        vnc_port=$(freeport) spice_port=$(freeport) rdp_port=$(freeport)
        openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=atrium-web-test \
            -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
        cat >>"$conf" <<CONF
[display]
listen = 127.0.0.1
vnc_port = $vnc_port
spice_port = $spice_port
rdp_port = $rdp_port
tls_cert = $tmp/cert.pem
tls_key = $tmp/key.pem
CONF
    fi
    [[ -z ${1:-} ]] || printf '%s\n' "$1" >>"$conf"
}

# boot_test_vm POOL SECONDS: one VM row of POOL in state ready whose QEMU
# this test runs itself in hostd's place (the test guest under TCG, its VNC
# console and QMP on unix sockets in the VM's runtime dir, serial into
# $tmp/serial.log); waits (bounded) for the guest's boot mark.  Sets $vm and
# $vmdir.
boot_test_vm() {
    local pool=$1 secs=$2
    vm=$(psql_db "INSERT INTO vms (name, pool_id, state) VALUES ('desk-1', $pool, 'ready') RETURNING id")
    vmdir=$run/vms/$vm
    mkdir -p "$vmdir"
    qemu-img create -q -f qcow2 -F qcow2 -b "$guest/disk.qcow2" "$tmp/overlay.qcow2"
    : >"$tmp/serial.log"
    qemu-system-x86_64 -machine q35 -accel tcg -m 256 -nodefaults -no-reboot \
        -kernel "$guest/vmlinuz" -initrd "$guest/initrd.img" -append "$(cat "$guest/cmdline")" \
        -drive "file=$tmp/overlay.qcow2,if=virtio,format=qcow2" \
        -vga qxl -display none -nic none \
        -vnc "unix:$vmdir/vnc.sock" \
        -qmp "unix:$vmdir/qmp.sock,server=on,wait=off" \
        -serial "file:$tmp/serial.log" >"$tmp/qemu.log" 2>&1 &
    pids+=("$!")
    # tail -F wakes on the serial log's writes
    timeout "$secs" grep -q -m1 ATRIUM-BOOT-OK <(timeout "$secs" tail -F -n +1 "$tmp/serial.log" 2>/dev/null) ||
        { echo "FAIL: the test guest did not boot"; cat "$tmp/qemu.log"; exit 1; }
    echo "ok   guest booted (TCG)"
}

# start_broker BROKER CONF: sets $port and $base
start_broker() {
    port=
    start_daemon broker 'msg="broker ready"' 60 "$1" --config "$2" --port 0
    base=http://127.0.0.1:$port
}

# Admin API calls with alice's session (cookie jar + CSRF token).
admin_login() {
    local login
    login=$(curl -sS --max-time 20 -c "$tmp/admin.jar" -H 'Content-Type: application/json' \
        --data-binary '{"username":"alice","password":"correct horse"}' "$base/api/v1/login")
    admin_csrf=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["csrf_token"])' "$login")
}
admin_post() { # admin_post PATH JSON -> prints the reply's "id"
    curl -sS --max-time 20 -b "$tmp/admin.jar" -H 'Content-Type: application/json' \
        -H "X-CSRF-Token: $admin_csrf" --data-binary "$2" "$base/api/v1$1" |
        python3 -c 'import json,sys; print(json.load(sys.stdin).get("id", ""))'
}
