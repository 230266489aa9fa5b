#!/bin/bash
# Boot the demo desktop image (scripts/demo-image) under TCG and check that
# it shows a desktop.
#
#   boot.sh IMAGE_DIR        IMAGE_DIR = the OUTDIR of scripts/demo-image
#
# On a fresh qcow2 overlay in a temp dir: QEMU q35, TCG (never KVM: on the
# machines this project is built on KVM guests hang), 1 GiB, QXL, a virtio
# NIC on user networking, VNC on a unix socket, serial to a file, QMP.
# Checks, each with a deadline:
#   - ATRIUM-DESKTOP-READY on ttyS0 (ATRIUM_DEMO_BOOT_TIMEOUT, 300 s);
#   - ATRIUM-DESKTOP-NET: the virtio NIC got an IPv4 address by DHCP;
#   - the VNC socket speaks RFB;
#   - a QMP screendump looks like a desktop: many colours, the image's
#     background colour over a large part of the screen, the terminal's
#     background colour, and a taskbar (not background) along the bottom.
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

# The image's colours (scripts/demo-image: .jwmrc background, xterm -bg).
background='#1F4E79'
terminal_bg='#F4F4F0'
shot_png=${ATRIUM_DEMO_SCREENSHOT:-$img/last-boot.png}
ready_timeout=${ATRIUM_DEMO_BOOT_TIMEOUT:-300}

tmp=$(mktemp -d /tmp/atrium-demoimg.XXXXXX)
qemu_pid=""
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
: >"$serial"
note "booting $img/desktop.qcow2 (overlay) under TCG"
t0=$SECONDS
qemu-system-x86_64 -name atrium-demo-image-boot -machine q35 -accel tcg -m 1024 -smp 2 \
    -vga qxl -display none -vnc "unix:$vnc_sock" \
    -kernel "$img/vmlinuz" -initrd "$img/initrd.img" -append "$(<"$img/cmdline")" \
    -drive "file=$overlay,if=virtio,format=qcow2" \
    -nic user,model=virtio-net-pci \
    -serial "file:$serial" -qmp "unix:$qmp_sock,server=on,wait=off" \
    -monitor none -no-reboot </dev/null >"$tmp/qemu.out" 2>"$tmp/qemu.err" &
qemu_pid=$!

# wait_serial REGEX SECS: the first match of REGEX in a serial line; fails on
# timeout, on QEMU exiting and on an ATRIUM-DESKTOP-ERROR line.  The serial
# port is a file, so this looks at it once a second.
wait_serial() {
    local end=$((SECONDS + $2)) line
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
    coproc QMP { exec socat - "UNIX-CONNECT:$qmp_sock"; }
    qmp_read '"QMP"' 10 >/dev/null || fail "no QMP greeting"
    qmp '{"execute":"qmp_capabilities"}' >/dev/null
}
qmp_read() {
    local end=$((SECONDS + $2)) line t
    while :; do
        t=$((end - SECONDS))
        ((t > 0)) || return 1
        IFS= read -r -t "$t" -u "${QMP[0]}" line || return 1
        echo "$line" >>"$tmp/qmp.log"
        [[ $line =~ $1 ]] && { printf '%s\n' "$line"; return 0; }
    done
}
qmp() {
    local reply
    echo "$1" >>"$tmp/qmp.log"
    printf '%s\n' "$1" >&"${QMP[1]}"
    reply=$(qmp_read '"return"|"error"' 60) || fail "no QMP reply to $1"
    [[ $reply == *'"return"'* ]] || fail "QMP $1 -> $reply"
    printf '%s\n' "$reply"
}

qmp_open
wait_serial 'ATRIUM-DESKTOP-READY$' "$ready_timeout" >/dev/null
ready_s=$((SECONDS - t0))
note "ATRIUM-DESKTOP-READY $ready_s s after QEMU started"
info=$(wait_serial 'ATRIUM-DESKTOP-INFO:.*' 30)
note "guest: $info"

# VNC on the unix socket: the server speaks first, "RFB 003.008\n".
rfb=$(timeout 10 socat -u "UNIX-CONNECT:$vnc_sock" - 2>/dev/null | head -c 12 || true)
[[ $rfb == "RFB 003.008" ]] || fail "VNC socket said '$rfb', not RFB 003.008"

# screenshot_ok PPM: print why PPM does not look like the desktop, or
# nothing when it does.
screenshot_ok() {
    local ppm=$1 w h total colours hist bg_n term_n strip strip_colours strip_bg
    read -r w h < <(identify -format '%w %h\n' "$ppm") || { echo "identify failed"; return; }
    total=$((w * h))
    ((w >= 800 && h >= 600)) || { echo "screen is ${w}x${h}, expected at least 800x600"; return; }
    colours=$(convert "$ppm" -format %k info:)
    hist=$(convert "$ppm" -format %c histogram:info:-)
    bg_n=$(awk -v c="$background" 'toupper($0) ~ c { sub(":", "", $1); n += $1 } END { print n + 0 }' <<<"$hist")
    term_n=$(awk -v c="$terminal_bg" 'toupper($0) ~ c { sub(":", "", $1); n += $1 } END { print n + 0 }' <<<"$hist")
    # Bottom 16 rows: JWM's taskbar (buttons, window list, clock).
    strip=$(convert "$ppm" -gravity South -crop "${w}x16+0+0" +repage -format '%k %w' info:)
    strip_colours=${strip% *}
    strip_bg=$(convert "$ppm" -gravity South -crop "${w}x16+0+0" +repage -format %c histogram:info:- |
        awk -v c="$background" 'toupper($0) ~ c { sub(":", "", $1); n += $1 } END { print n + 0 }')
    note "screenshot ${w}x${h}: $colours colours, background $((100 * bg_n / total))%," \
        "terminal $((100 * term_n / total))%, bottom strip $strip_colours colours"
    ((colours >= 50)) || { echo "only $colours colours: a blank or text-console screen"; return; }
    ((bg_n * 100 >= total * 15)) || { echo "background colour $background covers $((100 * bg_n / total))% (< 15%)"; return; }
    ((term_n * 100 >= total * 5)) || { echo "terminal colour $terminal_bg covers $((100 * term_n / total))% (< 5%): no terminal window"; return; }
    ((strip_colours >= 4 && strip_bg * 2 < w * 16)) || { echo "no taskbar along the bottom ($strip_colours colours, $strip_bg background pixels)"; return; }
}

# The screen may still be painting just after READY: look a bounded number
# of times.
why="no screenshot taken"
for ((n = 0; n < 10; n++)); do
    rm -f "$tmp/shot.ppm"
    qmp "{\"execute\":\"screendump\",\"arguments\":{\"filename\":\"$tmp/shot.ppm\"}}" >/dev/null
    [[ -s $tmp/shot.ppm ]] || fail "screendump wrote no file"
    convert "$tmp/shot.ppm" "$shot_png" || fail "convert to PNG failed"
    why=$(screenshot_ok "$tmp/shot.ppm")
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
note "PASS: desktop ready ${ready_s} s after QEMU start (TCG), total $((SECONDS - t0)) s"
