#!/bin/bash
# Smoke test of the test guest on the real QEMU, under TCG (never KVM: on the
# machines this project is built on KVM guests hang).
#
#   smoke.sh GUEST_DIR      GUEST_DIR = the OUTDIR of build.sh
#
# Boot 1 on a fresh overlay of disk.qcow2: ATRIUM-BOOT-OK, ATRIUM-MARK: NONE;
# type "mark hello" on the guest's keyboard through QMP send-key; see
# ATRIUM-TYPED and ATRIUM-MARK-WRITTEN on the serial port and the banner and
# typed line in the VGA text memory; power off with the ACPI button.
# Boot 2 on the same overlay: ATRIUM-MARK: hello, and "show" says it again.
#
# Every wait has a deadline inside an overall one (ATRIUM_GUEST_SMOKE_TIMEOUT,
# 240 s); QEMU, its helpers and the temp dir are removed on any exit.
set -euo pipefail

fail() {
    echo "guest/smoke.sh: FAIL: $*" >&2
    exit 1
}
note() { echo "guest/smoke.sh: $*" >&2; }

[[ $# -eq 1 && -n $1 ]] || {
    echo "usage: $0 GUEST_DIR" >&2
    exit 2
}
guest=$(cd "$1" && pwd) || fail "no guest dir $1"
for f in vmlinuz initrd.img disk.qcow2 cmdline; do
    [[ -s $guest/$f ]] || fail "$guest/$f missing (run tests/guest/build.sh $guest)"
done
need() { command -v "$1" >/dev/null || fail "$1 not found (apt-get install $2)"; }
need qemu-system-x86_64 qemu-system-x86
need qemu-img qemu-utils
need socat socat
need od coreutils
need awk mawk

deadline=$((SECONDS + ${ATRIUM_GUEST_SMOKE_TIMEOUT:-240}))

# A short path: unix socket names are limited to 107 bytes.
tmp=$(mktemp -d /tmp/atrium-guest-smoke.XXXXXX)
qmp_log=$tmp/qmp.log
# shellcheck source=../harness/qmp.sh
source "$(dirname "${BASH_SOURCE[0]}")/../harness/qmp.sh"
qemu_pid=""
serial_fd=""

# stop_qemu: kill QEMU if it still runs (it is not our child: it runs inside
# the process substitution that feeds $serial_fd) and wait, bounded, for the
# serial pipe to close, which happens once QEMU is gone.
stop_qemu() {
    local line rc n
    if [[ -n $qemu_pid ]]; then
        kill -TERM "$qemu_pid" 2>/dev/null || true
        qemu_pid=""
    fi
    if [[ -n $serial_fd ]]; then
        for ((n = 0; n < 10000; n++)); do
            rc=0
            IFS= read -r -t 10 -u "$serial_fd" line || rc=$?
            ((rc == 0)) || break
        done
        exec {serial_fd}<&-
        serial_fd=""
    fi
    if [[ -n ${QMP_PID:-} ]]; then
        kill -TERM "$QMP_PID" 2>/dev/null || true
        wait "$QMP_PID" 2>/dev/null || true
    fi
}

cleanup() {
    local rc=$?
    stop_qemu
    if [[ $rc -ne 0 ]]; then
        for f in "$tmp"/*.log "$tmp/qemu.err"; do
            [[ -s $f ]] || continue
            echo "----- $(basename "$f")" >&2
            tr -d '\r' <"$f" | tail -n 40 >&2
        done
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

overlay=$tmp/disk.qcow2
qemu-img create -q -f qcow2 -F qcow2 -b "$guest/disk.qcow2" "$overlay" ||
    fail "qemu-img create overlay failed"

# boot NAME: start QEMU on the overlay, its serial port (stdio) on $serial_fd
# and copied to $tmp/NAME.log, QMP open as the coprocess QMP.  EOF on
# $serial_fd is how a wait learns that QEMU has exited; its exit status lands
# in $tmp/qemu.rc.
boot() {
    local log=$tmp/$1.log sock=$tmp/qmp.sock n
    serial_lines=()
    rm -f "$sock" "$tmp/qemu.pid" "$tmp/qemu.rc"
    boot_start=$SECONDS
    exec {serial_fd}< <(
        {
            rc=0
            qemu-system-x86_64 -name "atrium-guest-smoke-$1" -machine q35 -accel tcg -m 256 \
                -kernel "$guest/vmlinuz" -initrd "$guest/initrd.img" \
                -append "$(<"$guest/cmdline")" \
                -drive "file=$overlay,if=virtio,format=qcow2" -vga qxl -display none \
                -nic none -no-reboot -monitor none -serial stdio \
                -qmp "unix:$sock,server=on,wait=off" -pidfile "$tmp/qemu.pid" \
                </dev/null 2>"$tmp/qemu.err" || rc=$?
            echo "$rc" >"$tmp/qemu.rc"
        } | tee "$log"
    )

    # QEMU writes its pid file and creates the socket while starting up;
    # there is nothing to wait on but the files, so look a bounded number
    # of times.
    for ((n = 0; n < 400; n++)); do
        [[ -S $sock && -s $tmp/qemu.pid ]] && break
        [[ -e $tmp/qemu.rc ]] && fail "QEMU exited at start: $(cat "$tmp/qemu.err")"
        sleep 0.05
    done
    [[ -S $sock && -s $tmp/qemu.pid ]] || fail "QEMU did not create $sock within 20 s"
    qemu_pid=$(<"$tmp/qemu.pid")
    qmp_connect "$sock"
}

# wait_serial LINE SECS [COUNT]: wait until the guest printed LINE as a whole
# line on ttyS0 COUNT times (default once) during this boot.  An ATRIUM-ERROR
# line fails the test at once.
wait_serial() {
    local want=$1 count=${3:-1} n=0 line t l rc end
    end=$(end_in "$2")
    for l in "${serial_lines[@]}"; do
        [[ $l == "$want" ]] && n=$((n + 1))
    done
    while ((n < count)); do
        t=$((end - SECONDS))
        ((t > 0)) || fail "timed out waiting for serial line '$want'"
        rc=0
        IFS= read -r -t "$t" -u "$serial_fd" line || rc=$?
        if ((rc > 128)); then
            continue # timed out; the check above ends the wait
        elif ((rc != 0)); then
            fail "QEMU exited while waiting for '$want'"
        fi
        line=${line%$'\r'}
        serial_lines+=("$line")
        [[ $line == ATRIUM-ERROR:* ]] && fail "guest said: $line"
        [[ $line == "$want" ]] && n=$((n + 1))
    done
    return 0
}

# type_line TEXT: type TEXT and Enter on the guest keyboard (tty1).
type_line() {
    local text=$1 i c k
    for ((i = 0; i < ${#text}; i++)); do
        c=${text:i:1}
        case $c in
        [a-z0-9]) k=$c ;;
        ' ') k=spc ;;
        -) k=minus ;;
        .) k="dot" ;;
        *) fail "type_line: no key for '$c'" ;;
        esac
        qmp "{\"execute\":\"send-key\",\"arguments\":{\"keys\":[{\"type\":\"qcode\",\"data\":\"$k\"}]}}" >/dev/null
    done
    qmp '{"execute":"send-key","arguments":{"keys":[{"type":"qcode","data":"ret"}]}}' >/dev/null
}

# screen_text: the guest's VGA text screen memory (0xb8000, character bytes
# only), 80 columns per line.
screen_text() {
    rm -f "$tmp/vga.bin"
    qmp "{\"execute\":\"pmemsave\",\"arguments\":{\"val\":753664,\"size\":32768,\"filename\":\"$tmp/vga.bin\"}}" >/dev/null
    od -An -v -tu1 -w2 "$tmp/vga.bin" |
        awk '{ c = $1; if (c < 32 || c > 126) c = 32; printf "%c", c }' | fold -w 80
}

# wait_screen TEXT SECS: the screen shows TEXT.  VGA memory has no change
# event to wait on, so this looks a bounded number of times.
wait_screen() {
    local end
    end=$(end_in "$2")
    while :; do
        screen_text >"$tmp/screen.txt"
        grep -qF -- "$1" "$tmp/screen.txt" && return 0
        ((SECONDS < end)) ||
            fail "screen never showed '$1'; it shows: $(grep -v '^ *$' "$tmp/screen.txt")"
        sleep 0.5
    done
}

# power_off: ACPI power button, then QEMU must exit by itself.
power_off() {
    local t line rc end
    qmp '{"execute":"system_powerdown"}' >/dev/null
    wait_serial ATRIUM-POWEROFF 60
    # Drain the serial log up to EOF, which comes when QEMU has exited.
    end=$(end_in 30)
    while :; do
        t=$((end - SECONDS))
        if ((t <= 0)); then
            if [[ -n ${QMP[1]:-} ]]; then
                printf '%s\n' '{"execute":"quit"}' >&"${QMP[1]}" || true
            fi
            fail "QEMU still running 30 s after ATRIUM-POWEROFF (quit sent)"
        fi
        rc=0
        IFS= read -r -t "$t" -u "$serial_fd" line || rc=$?
        ((rc == 0 || rc > 128)) || break
    done
    rc=0
    qemu_pid=""
    stop_qemu
    rc=$(cat "$tmp/qemu.rc" 2>/dev/null) || rc=missing
    [[ $rc == 0 ]] || fail "QEMU exit status $rc after power off"
}

note "boot 1 (TCG) on a fresh overlay of $guest/disk.qcow2"
boot boot1
wait_serial ATRIUM-BOOT-OK 120
note "ATRIUM-BOOT-OK after $((SECONDS - boot_start)) s"
wait_serial "ATRIUM-MARK: NONE" 60
wait_screen "ATRIUM TEST GUEST" 10
type_line "mark hello"
wait_serial "ATRIUM-TYPED: mark hello" 60
wait_serial "ATRIUM-MARK-WRITTEN: hello" 60
wait_screen "atrium# mark hello" 10
wait_screen "ATRIUM-MARK-WRITTEN: hello" 10
power_off
note "boot 1 done in $((SECONDS - boot_start)) s"

note "boot 2 on the same overlay"
boot boot2
wait_serial ATRIUM-BOOT-OK 120
wait_serial "ATRIUM-MARK: hello" 60
type_line show
wait_serial "ATRIUM-TYPED: show" 60
# "show" prints the marker again: the second such line of this boot.
wait_serial "ATRIUM-MARK: hello" 60 2
power_off
note "PASS in $SECONDS s"
