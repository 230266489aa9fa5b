#!/bin/bash
# Boot the demo desktop image (scripts/demo-image) under TCG and check that
# it shows a desktop.
#
#   boot.sh IMAGE_DIR        IMAGE_DIR = the OUTDIR of scripts/demo-image
#
# On a fresh qcow2 overlay in a temp dir: QEMU q35, TCG (never KVM: on the
# machines this project is built on KVM guests hang), 1 GiB, QXL, a virtio
# NIC on user networking, VNC and SPICE on unix sockets, the SPICE agent
# and guest agent channels, serial to a file, QMP.
# Checks, each with a deadline:
#   - ATRIUM-DESKTOP-READY on ttyS0 (ATRIUM_DEMO_BOOT_TIMEOUT, 300 s; all
#     waits end by ATRIUM_DEMO_BOOT_TOTAL, 540 s);
#   - ATRIUM-DESKTOP-NET: the virtio NIC got an IPv4 address by DHCP;
#   - the VNC socket speaks RFB;
#   - a QMP screendump looks like a desktop (check-screenshot.sh: many
#     colours, the image's background colour over a large part of the
#     screen, the terminal's background colour, a taskbar along the bottom);
#   - qemu-guest-agent answers on its virtio-serial port, and through its
#     guest-exec the guest shows spice-vdagentd and the session's
#     spice-vdagent running (QEMU has a SPICE server on a unix socket and
#     the SPICE agent channel).
# The screenshot is kept as PNG in $ATRIUM_DEMO_SCREENSHOT (default
# IMAGE_DIR/last-boot.png).  QEMU and the temp dir are removed on any exit.
set -euo pipefail

prog=demo-image/boot.sh
fail() {
    echo "$prog: FAIL: $*" >&2
    exit 1
}
note() { echo "$prog: $*" >&2; }

[[ $# -eq 1 && -n $1 ]] || {
    echo "usage: $0 IMAGE_DIR" >&2
    exit 2
}
img=$(cd "$1" && pwd) || fail "no image dir $1"
for f in desktop.qcow2 vmlinuz initrd.img cmdline; do
    [[ -s $img/$f ]] || fail "$img/$f missing (run scripts/demo-image $img)"
done
need() { command -v "$1" >/dev/null || fail "$1 not found (apt-get install $2)"; }
need qemu-system-x86_64 qemu-system-x86
need qemu-img qemu-utils
need socat socat
need convert imagemagick
need identify imagemagick
need base64 coreutils
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
shot_png=${ATRIUM_DEMO_SCREENSHOT:-$img/last-boot.png}
ready_timeout=${ATRIUM_DEMO_BOOT_TIMEOUT:-300}
# Every wait ends by this overall deadline, so that this script, not ctest,
# stops QEMU.
deadline=$((SECONDS + ${ATRIUM_DEMO_BOOT_TOTAL:-540}))

tmp=$(mktemp -d /tmp/atrium-demoimg.XXXXXX)
qmp_log=$tmp/qmp.log
# shellcheck source=../harness/qmp.sh
source "$here/../harness/qmp.sh"
qemu_pid=""
qga_socat=""
cleanup() {
    local rc=$? n
    if [[ -n $qemu_pid ]]; then
        kill -TERM "$qemu_pid" 2>/dev/null || true
        for ((n = 0; n < 100; n++)); do
            kill -0 "$qemu_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    [[ -z ${qga_socat:-} ]] || kill -TERM "$qga_socat" 2>/dev/null || true
    if [[ $rc -ne 0 ]]; then
        for f in "$tmp/serial.log" "$tmp/qemu.err" "$tmp/qmp.log"; do
            [[ -s $f ]] || continue
            echo "----- $(basename "$f") (last 40 lines)" >&2
            tr -d '\r' <"$f" | tail -n 40 >&2
        done
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

overlay=$tmp/overlay.qcow2
qemu-img create -q -f qcow2 -F qcow2 -b "$img/desktop.qcow2" "$overlay" ||
    fail "qemu-img create overlay failed"

serial=$tmp/serial.log
qmp_sock=$tmp/qmp.sock
vnc_sock=$tmp/vnc.sock
qga_sock=$tmp/qga.sock
: >"$serial"
note "booting $img/desktop.qcow2 (overlay) under TCG"
t0=$SECONDS
qemu-system-x86_64 -name atrium-demo-image-boot -machine q35 -accel tcg -m 1024 -smp 2 \
    -vga qxl -display none -vnc "unix:$vnc_sock" \
    -kernel "$img/vmlinuz" -initrd "$img/initrd.img" -append "$(<"$img/cmdline")" \
    -drive "file=$overlay,if=virtio,format=qcow2" \
    -nic user,model=virtio-net-pci \
    -spice "unix=on,addr=$tmp/spice.sock,disable-ticketing=on" \
    -device virtio-serial-pci \
    -chardev spicevmc,id=vdagent,name=vdagent \
    -device virtserialport,chardev=vdagent,name=com.redhat.spice.0 \
    -chardev "socket,id=qga,path=$qga_sock,server=on,wait=off" \
    -device virtserialport,chardev=qga,name=org.qemu.guest_agent.0 \
    -serial "file:$serial" -qmp "unix:$qmp_sock,server=on,wait=off" \
    -monitor none -no-reboot </dev/null >"$tmp/qemu.out" 2>"$tmp/qemu.err" &
qemu_pid=$!

# wait_serial REGEX SECS: the first match of REGEX in a serial line; fails on
# timeout, on QEMU exiting and on an ATRIUM-DESKTOP-ERROR line.  The serial
# port is a file, so this looks at it once a second.
wait_serial() {
    local end line
    end=$(end_in "$2")
    while :; do
        line=$(tr -d '\r' <"$serial" | grep -oE -m1 -- "$1" || true)
        [[ -n $line ]] && { printf '%s\n' "$line"; return 0; }
        line=$(tr -d '\r' <"$serial" | grep -m1 'ATRIUM-DESKTOP-ERROR' || true)
        [[ -z $line ]] || fail "guest said: $line"
        kill -0 "$qemu_pid" 2>/dev/null || fail "QEMU exited while waiting for /$1/: $(cat "$tmp/qemu.err")"
        ((SECONDS < end)) || fail "no serial line matching /$1/ within $2 s"
        sleep 1
    done
}

# QMP as a coprocess: qmp JSON runs one command and prints its reply.
qmp_open() {
    local n
    for ((n = 0; n < 200; n++)); do
        [[ -S $qmp_sock ]] && break
        kill -0 "$qemu_pid" 2>/dev/null || fail "QEMU exited at start: $(cat "$tmp/qemu.err")"
        sleep 0.1
    done
    [[ -S $qmp_sock ]] || fail "QEMU made no QMP socket within 20 s"
    qmp_connect "$qmp_sock"
}

qmp_open
wait_serial 'ATRIUM-DESKTOP-READY$' "$ready_timeout" >/dev/null
ready_s=$((SECONDS - t0))
note "ATRIUM-DESKTOP-READY $ready_s s after QEMU started"
info=$(wait_serial 'ATRIUM-DESKTOP-INFO:.*' 30)
note "guest: $info"

# VNC on the unix socket: the server speaks first, "RFB 003.008\n".
rfb=$(timeout 3 socat -u "UNIX-CONNECT:$vnc_sock" - 2>/dev/null | head -c 12 || true)
[[ $rfb == "RFB 003.008" ]] || fail "VNC socket said '$rfb', not RFB 003.008"

# The screen may still be painting just after READY: look a bounded number
# of times.
why="no screenshot taken"
for ((n = 0; n < 10; n++)); do
    rm -f "$tmp/shot.ppm"
    qmp "{\"execute\":\"screendump\",\"arguments\":{\"filename\":\"$tmp/shot.ppm\"}}" >/dev/null
    [[ -s $tmp/shot.ppm ]] || fail "screendump wrote no file"
    convert "$tmp/shot.ppm" "$shot_png" || fail "convert to PNG failed"
    why=$("$here/check-screenshot.sh" "$tmp/shot.ppm" 2>"$tmp/check.err") && why=""
    note "$(cat "$tmp/check.err")"
    [[ -n $why ]] || break
    note "not a desktop yet: $why"
    sleep 3
done
[[ -z $why ]] || fail "screenshot ($shot_png): $why"
note "screenshot looks like a desktop (saved as $shot_png)"

net=$(wait_serial 'ATRIUM-DESKTOP-NET:.*' 90)
[[ $net =~ ^ATRIUM-DESKTOP-NET:\ [a-z0-9]+=[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+/[0-9]+$ ]] ||
    fail "no DHCP address on the virtio NIC: $net"
note "guest: $net"
# The guest agent through socat on two FIFOs (bash has one coprocess, used
# by QMP; and QEMU's chardev drops a connection on EOF, so a one-shot
# "echo | socat" loses the reply).  qga_open syncs with guest-sync first: the
# port may have been closed or have stale data.
qga_open() {
    local n id reply
    mkfifo "$tmp/qga.in" "$tmp/qga.out"
    socat - "UNIX-CONNECT:$qga_sock" <"$tmp/qga.in" >"$tmp/qga.out" 2>>"$tmp/qga.err" &
    qga_socat=$!
    exec {qga_w}>"$tmp/qga.in" {qga_r}<"$tmp/qga.out"
    QGA=("$qga_r" "$qga_w")
    for ((n = 1; n <= 12; n++)); do
        id=$((RANDOM * 1000 + n))
        echo "qga: guest-sync $id" >>"$tmp/qmp.log"
        printf '{"execute":"guest-sync","arguments":{"id":%d}}\n' "$id" >&"${QGA[1]}"
        reply=$(qga_read "\"return\": *$id\\b" 5) && return 0
    done
    return 1
}
qga_read() {
    local end line t
    end=$(end_in "$2")
    while :; do
        t=$((end - SECONDS))
        ((t > 0)) || return 1
        IFS= read -r -t "$t" -u "${QGA[0]}" line || return 1
        echo "qga< $line" >>"$tmp/qmp.log"
        [[ $line =~ $1 ]] && { printf '%s\n' "$line"; return 0; }
    done
}
# qga JSON: one guest agent command; prints the reply.
qga() {
    echo "qga> $1" >>"$tmp/qmp.log"
    printf '%s\n' "$1" >&"${QGA[1]}"
    qga_read '"return"|"error"' 20 || fail "no guest agent reply to $1"
}
# guest_run PROG ARGS...: run PROG in the guest through the guest agent,
# print its stdout; non-zero if it did not exit 0.
guest_run() {
    local path=$1 args="" a reply pid n
    shift
    for a in "$@"; do args+="${args:+,}\"$a\""; done
    reply=$(qga "{\"execute\":\"guest-exec\",\"arguments\":{\"path\":\"$path\",\"arg\":[$args],\"capture-output\":true}}")
    [[ $reply =~ \"pid\":\ *([0-9]+) ]] || fail "guest-exec $path: $reply"
    pid=${BASH_REMATCH[1]}
    for ((n = 0; n < 20; n++)); do
        reply=$(qga "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":$pid}}")
        [[ $reply == *'"exited": true'* || $reply == *'"exited":true'* ]] && break
        sleep 1
    done
    [[ $reply =~ \"out-data\":\ *\"([A-Za-z0-9+/=]*)\" ]] && base64 -d <<<"${BASH_REMATCH[1]}"
    [[ $reply =~ \"exitcode\":\ *0[,}] ]]
}

# QMP is done with: bash keeps one coprocess well, and QMP's goes away
# once the guest agent's socat runs in the background.
qmp '{"execute":"query-spice"}' >"$tmp/spice.json"
note "QEMU SPICE: $(grep -o '"mouse-mode": *"[a-z]*"' "$tmp/spice.json" || echo "no mouse-mode")"
qga_open || fail "qemu-guest-agent does not answer guest-sync within 60 s"
reply=$(qga '{"execute":"guest-info"}')
[[ $reply =~ \"version\":\ *\"([^\"]*)\" ]] || fail "guest-info: $reply"
note "qemu-guest-agent ${BASH_REMATCH[1]} answers"
# The session agent may still be connecting: look a bounded number of times.
for ((n = 0; n < 15; n++)); do
    procs=$(guest_run /usr/bin/pgrep -a -f spice-vdagent || true)
    grep -q 'spice-vdagentd' <<<"$procs" && grep -qE '(^|/| )spice-vdagent( |$)' <<<"$procs" && break
    sleep 2
done
note "guest spice agents: $(tr '\n' ';' <<<"$procs")"
grep -q 'spice-vdagentd' <<<"$procs" || fail "spice-vdagentd is not running in the guest"
grep -qE '(^|/| )spice-vdagent( |$)' <<<"$procs" || fail "the session's spice-vdagent is not running in the guest"

note "PASS: desktop ready ${ready_s} s after QEMU start (TCG), total $((SECONDS - t0)) s"
