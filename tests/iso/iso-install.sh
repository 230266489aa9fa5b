#!/bin/bash
# iso.install_iso: build the appliance ISO, check that its interactive
# installer asks its questions, install it unattended onto a blank disk under
# QEMU/TCG, boot the installed disk, and pass only when the broker's /healthz
# answers through a forwarded port and the admin from the answer file logs in
# through the API and sees this host registered.
#
#   iso-install.sh SOURCE_DIR BUILD_DIR
#
# Phases (each timed): package, build-iso, install, firstboot, api,
# interactive.  The live system boots from the ISO (-cdrom) with the ISO's own kernel
# and initrd given to QEMU, so the kernel command line can name the answer
# file on a second disk (the GRUB menu's unattended entry reads /answer.conf
# from the medium instead).  One VM at a time.  The ISO and its caches live in
# BUILD_DIR/test-state/iso (ATRIUM_ISO_PREBUILT=DIR uses DIR/atrium.iso
# instead of building).  Serial logs are kept in the work dir on failure.
set -euo pipefail
src=${1:?usage: iso-install.sh SOURCE_DIR BUILD_DIR}
build=$(cd "${2:?usage: iso-install.sh SOURCE_DIR BUILD_DIR}" && pwd)
limit_install=${ATRIUM_ISO_INSTALL_TIMEOUT:-2400}
limit_boot=${ATRIUM_ISO_BOOT_TIMEOUT:-1500}
[[ $(id -u) -eq 0 ]] || { echo "SKIP: needs root (debootstrap, chroot)"; exit 77; }
for c in qemu-system-x86_64 qemu-img mke2fs xorriso cpack curl; do
    command -v "$c" >/dev/null || { echo "FAIL: $c not found"; exit 1; }
done

work=$(mktemp -d /tmp/atrium-iso.XXXXXX)
qemu_pid=
tail_pid=
keep=0
stop_qemu() {
    if [[ -n $qemu_pid ]]; then
        kill "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    qemu_pid=
}
cleanup() {
    stop_qemu
    if [[ -n $tail_pid ]]; then kill "$tail_pid" 2>/dev/null || true; fi
    if ((keep)); then
        rm -f "$work"/*.qcow2 "$work"/*.img
        echo "iso-install: logs kept in $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
declare -A took
t=$SECONDS
t0=$SECONDS
phase() {
    took[$1]=$((SECONDS - t))
    echo "iso-install: phase $1 took ${took[$1]} s"
    t=$SECONDS
}
fail() {
    echo "FAIL: $*"
    keep=1
    exit 1
}

# ---------------------------------------------------------------- package
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
(cd "$build" && cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/out") >"$work/cpack.log" 2>&1 ||
    { cat "$work/cpack.log"; fail cpack; }
deb=$work/out/atrium_${version}_$(dpkg --print-architecture).deb
[[ -s $deb ]] || fail "no $deb"
phase package

# ---------------------------------------------------------------- build-iso
out=$build/test-state/iso
if [[ -n ${ATRIUM_ISO_PREBUILT:-} ]]; then
    out=$ATRIUM_ISO_PREBUILT
else
    # zstd level 3 instead of 15: minutes less on a loaded 2-core machine,
    # the same ISO otherwise.
    ATRIUM_ISO_ZSTD_LEVEL=${ATRIUM_ISO_ZSTD_LEVEL:-3} "$src/iso/build-iso" "$out" "$deb" ||
        fail "iso/build-iso"
fi
[[ -s $out/atrium.iso ]] || fail "no $out/atrium.iso"
echo "iso-install: $out/atrium.iso ($(stat -c %s "$out/atrium.iso") bytes)"
xorriso -osirrox on -indev "$out/atrium.iso" -extract /live/vmlinuz "$work/vmlinuz" \
    -extract /live/initrd.img "$work/initrd.img" >/dev/null 2>&1 || fail "cannot read the ISO"
phase build-iso

# start NAME QEMU_ARGS...: QEMU in the background, ttyS0 to serial-NAME.log
# (or to the FIFOs serial-NAME.{in,out} when SERIAL_PIPE=1).
start() {
    local name=$1
    shift
    local serial=("-serial" "file:$work/serial-$name.log")
    if [[ ${SERIAL_PIPE:-0} == 1 ]]; then
        mkfifo "$work/serial-$name.in" "$work/serial-$name.out"
        serial=("-serial" "pipe:$work/serial-$name")
    fi
    : >"$work/serial-$name.log"
    qemu-system-x86_64 -accel tcg,thread=multi -machine q35 -cpu max -smp 2 -m 3072 \
        -display none -no-reboot "${serial[@]}" "$@" &
    qemu_pid=$!
    if [[ ${SERIAL_PIPE:-0} == 1 ]]; then
        cat "$work/serial-$name.out" >>"$work/serial-$name.log" &
        tail_pid=$!
        exec 7>"$work/serial-$name.in"
    fi
}
# expect NAME LIMIT PATTERN: wait until PATTERN shows on NAME's serial log
# (tail follows the log while QEMU lives, so it never outlives the test).
# The installer's prompts end in ": " with no newline, so ':' ends a line
# for grep here: patterns must not contain ':'.
expect() {
    local name=$1 limit=$2 pattern=$3
    timeout "$limit" grep -a -q -m1 -e "$pattern" \
        <(tail -F -n +1 --pid="$qemu_pid" "$work/serial-$name.log" 2>/dev/null | stdbuf -o0 tr ':' '\n') ||
        {
            echo "iso-install: $name: no '$pattern' within $limit s; serial log tail:"
            tail -n 40 "$work/serial-$name.log" | tr -d '\r'
            return 1
        }
}
live_args=(-cdrom "$out/atrium.iso" -kernel "$work/vmlinuz" -initrd "$work/initrd.img")
live_cmdline="boot=live components quiet console=tty0 console=ttyS0,115200n8"

# ---------------------------------------------------------------- interactive
# The text-mode installer asks every question on the serial console; the
# answer "no" to the last one leaves the disk untouched.
interactive() {
SERIAL_PIPE=1 start interactive "${live_args[@]}" -append "$live_cmdline atrium.install=interactive" \
    -drive "file=$work/disk.qcow2,if=virtio,format=qcow2" -nic none
answer() { printf '%s\r' "$1" >&7; }
expect interactive "$limit_boot" 'Install on disk (ALL DATA ON IT IS ERASED) \[/dev/vda\]' ||
    fail "interactive: no disk question"
answer ""
expect interactive 60 'Host name \[atrium\]' || fail "interactive: no host name question"
answer "atrium-i"
expect interactive 60 'dhcp or static \[dhcp\]' || fail "interactive: no network question"
answer "static"
expect interactive 60 'Address (CIDR' || fail "interactive: no address question"
answer "192.0.2.10/24"
expect interactive 60 'Gateway' || fail "interactive: no gateway question"
answer "192.0.2.1"
expect interactive 60 'DNS server' || fail "interactive: no DNS question"
answer ""
expect interactive 60 'Admin password' || fail "interactive: no password question"
answer "Secret-1"
expect interactive 60 'new, or join an existing one' || fail "interactive: no site question"
answer "new"
expect interactive 60 'Reboot when done' || fail "interactive: no reboot question"
answer "no"
expect interactive 60 'Erase /dev/vda and install? (yes/no)' || fail "interactive: no confirmation"
answer "no"
expect interactive 60 'ATRIUM-INSTALL-FAILED' || fail "interactive: 'no' did not cancel"
grep -aq 'atrium-install: cancelled' "$work/serial-interactive.log" || fail "interactive: no 'cancelled'"
! grep -aq 'Secret-1' "$work/serial-interactive.log" || fail "interactive: the password was echoed"
exec 7>&-
stop_qemu
kill "$tail_pid" 2>/dev/null || true
tail_pid=
echo "iso-install: interactive installer asked all 10 questions and cancelled on 'no'"
}

# ---------------------------------------------------------------- install
mkdir -p "$work/answer"
cat >"$work/answer/answer.conf" <<'EOF'
# iso.install_iso answer file
disk = /dev/vda
hostname = atrium-iso.example.org
network = dhcp
admin_password = Test-Admin-1
site = new
reboot = no
EOF
mke2fs -q -t ext4 -L ANSWER -d "$work/answer" -F "$work/answer.img" 16M
qemu-img create -q -f qcow2 "$work/disk.qcow2" 12G
start install "${live_args[@]}" \
    -append "$live_cmdline atrium.install=auto atrium.answer=/dev/vdb:/answer.conf" \
    -drive "file=$work/disk.qcow2,if=virtio,format=qcow2" \
    -drive "file=$work/answer.img,if=virtio,format=raw,readonly=on" -nic none
expect install "$limit_install" 'ATRIUM-INSTALL-DONE\|ATRIUM-INSTALL-FAILED' || fail "install: no end marker"
grep -a 'atrium-install:' "$work/serial-install.log" | tr -d '\r'
grep -aq 'ATRIUM-INSTALL-DONE' "$work/serial-install.log" || fail "install failed"
stop_qemu
phase install

# ---------------------------------------------------------------- firstboot
# From the disk alone (no ISO), through GRUB as installed (BIOS).
port=$((20000 + RANDOM % 20000))
start firstboot -drive "file=$work/disk.qcow2,if=virtio,format=qcow2" \
    -nic "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:$port-:8443"
expect firstboot "$limit_boot" 'ATRIUM-FIRSTBOOT-DONE\|Failed to start.*[Ff]irst boot' ||
    fail "first boot: no end marker"
grep -a 'Atrium web console\|Admin login\|PENDING\|atrium-firstboot\|first admin' "$work/serial-firstboot.log" | tr -d '\r' || true
grep -aq 'ATRIUM-FIRSTBOOT-DONE' "$work/serial-firstboot.log" || fail "first boot failed"
phase firstboot

# ---------------------------------------------------------------- api
base=https://127.0.0.1:$port
# The daemons start with atrium-firstboot's reconfigure; give the broker a
# bounded while to answer.
curl -fsSk --max-time 10 --retry 30 --retry-delay 4 --retry-all-errors "$base/healthz" >"$work/healthz" 2>&1 ||
    fail "/healthz through the forwarded port: $(cat "$work/healthz")"
echo "iso-install: /healthz through the forwarded port: $(cat "$work/healthz")"
code=$(curl -sSk --max-time 30 -o "$work/login.json" -w '%{http_code}' -c "$work/jar" \
    -H 'Content-Type: application/json' \
    --data-binary '{"username":"admin","password":"Test-Admin-1"}' "$base/api/v1/login") || code=000
[[ $code == 200 ]] || fail "admin login through the API: HTTP $code $(cat "$work/login.json" 2>/dev/null)"
echo "iso-install: admin logged in with the answer file's password"
curl -fsSk --max-time 30 -b "$work/jar" "$base/api/v1/hosts" >"$work/hosts.json" ||
    fail "GET /api/v1/hosts"
grep -q '"atrium-iso' "$work/hosts.json" || fail "host atrium-iso not registered: $(cat "$work/hosts.json")"
echo "iso-install: the admin sees host atrium-iso: $(head -c 300 "$work/hosts.json")"
stop_qemu
phase api

# ---------------------------------------------------------------- interactive
# Last, so that a run that fails here has already shown the install result.
if [[ ${ATRIUM_ISO_SKIP_INTERACTIVE:-0} == 1 ]]; then
    echo "iso-install: interactive installer not checked (ATRIUM_ISO_SKIP_INTERACTIVE=1)"
else
    rm -f "$work/disk.qcow2"
    qemu-img create -q -f qcow2 "$work/disk.qcow2" 12G
    interactive
fi
phase interactive

echo
echo "iso-install: passed in $((SECONDS - t0)) s (package ${took[package]} s, build-iso ${took[build-iso]} s," \
    "install ${took[install]} s, first boot ${took[firstboot]} s, api ${took[api]} s," \
    "interactive ${took[interactive]} s)"
