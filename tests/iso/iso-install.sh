#!/bin/bash
# iso.install_iso (work in progress): build the appliance ISO, install it
# unattended onto a blank disk under QEMU/TCG, boot the installed disk and
# pass only when the broker's /healthz answers through a forwarded port.
#
#   iso-install.sh SOURCE_DIR BUILD_DIR
#
# The live system boots from the ISO (-cdrom) with the ISO's own kernel and
# initrd given to QEMU, so the command line can name the answer file on a
# second disk (the GRUB menu's unattended entry reads /answer.conf from the
# medium instead).  Prints how long each phase took.
set -euo pipefail
src=${1:?usage: iso-install.sh SOURCE_DIR BUILD_DIR}
build=$(cd "${2:?usage: iso-install.sh SOURCE_DIR BUILD_DIR}" && pwd)
timeout_s=${ATRIUM_ISO_BOOT_TIMEOUT:-2400}
[[ $(id -u) -eq 0 ]] || { echo "SKIP: needs root"; exit 77; }

work=$(mktemp -d /tmp/atrium-iso.XXXXXX)
qemu_pid=
keep=0
cleanup() {
    [[ -n $qemu_pid ]] && kill "$qemu_pid" 2>/dev/null
    if ((keep)); then
        rm -f "$work"/*.qcow2 "$work"/*.img
        echo "iso-install: logs kept in $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
t=$SECONDS
phase() {
    echo "iso-install: phase $1 took $((SECONDS - t)) s"
    t=$SECONDS
}

version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
(cd "$build" && cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/out") >"$work/cpack.log" 2>&1 ||
    { cat "$work/cpack.log"; exit 1; }
deb=$work/out/atrium_${version}_$(dpkg --print-architecture).deb
phase package

out=$build/test-state/iso
if [[ -n ${ATRIUM_ISO_PREBUILT:-} ]]; then
    # An ISO built earlier (iso/build-iso OUTDIR DEB): OUTDIR.
    out=$ATRIUM_ISO_PREBUILT
else
    "$src/iso/build-iso" "$out" "$deb"
fi
[[ -s $out/atrium.iso ]] || { echo "FAIL: no $out/atrium.iso"; exit 1; }
echo "iso-install: $out/atrium.iso ($(stat -c %s "$out/atrium.iso") bytes)"
phase build-iso

mkdir -p "$work/answer"
cat >"$work/answer/answer.conf" <<'EOF'
disk = /dev/vda
hostname = atrium-iso.example.org
network = dhcp
admin_password = Test-Admin-1
site = new
reboot = no
EOF
mke2fs -q -t ext4 -L ANSWER -d "$work/answer" -F "$work/answer.img" 16M
qemu-img create -q -f qcow2 "$work/disk.qcow2" 12G
xorriso -osirrox on -indev "$out/atrium.iso" -extract /live/vmlinuz "$work/vmlinuz" \
    -extract /live/initrd.img "$work/initrd.img" >/dev/null 2>&1

# run NAME TIMEOUT MARKER QEMU_ARGS...: boot until MARKER shows on ttyS0.
# QEMU is stopped then, unless LEAVE_RUNNING=1 (its pid stays in qemu_pid).
run() {
    local name=$1 limit=$2 marker=$3
    shift 3
    local log=$work/serial-$name.log
    : >"$log"
    qemu-system-x86_64 -accel tcg,thread=multi -machine q35 -cpu max -smp 2 -m 3072 \
        -display none -serial "file:$log" -no-reboot "$@" &
    qemu_pid=$!
    local waited=0
    # The serial log is a file QEMU appends to: follow it until the marker.
    if timeout "$limit" grep -a -q -m1 "$marker" <(tail -F -n +1 "$log" 2>/dev/null); then
        :
    else
        waited=1
    fi
    if ((waited)) || [[ ${LEAVE_RUNNING:-0} != 1 ]]; then
        kill "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
        qemu_pid=
    fi
    if ((waited)) || grep -aq 'ATRIUM-INSTALL-FAILED' "$log"; then
        echo "FAIL: $name: no '$marker' within $limit s; serial log tail:"
        tail -n 40 "$log" | tr -d '\r'
        keep=1
        return 1
    fi
    echo "iso-install: $name: saw $marker"
}

run install "$timeout_s" 'ATRIUM-INSTALL-DONE\|ATRIUM-INSTALL-FAILED' \
    -cdrom "$out/atrium.iso" -kernel "$work/vmlinuz" -initrd "$work/initrd.img" \
    -append "boot=live components quiet console=ttyS0,115200n8 atrium.install=auto atrium.answer=/dev/vdb:/answer.conf" \
    -drive "file=$work/disk.qcow2,if=virtio,format=qcow2" \
    -drive "file=$work/answer.img,if=virtio,format=raw,readonly=on" -nic none
phase install

port=$((20000 + RANDOM % 20000))
LEAVE_RUNNING=1 run firstboot "$timeout_s" 'ATRIUM-FIRSTBOOT-DONE' \
    -drive "file=$work/disk.qcow2,if=virtio,format=qcow2" \
    -nic "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:$port-:8443"
phase firstboot
grep -a 'Atrium web console\|Admin login\|PENDING' "$work/serial-firstboot.log" | tr -d '\r' || true
if curl -fsSk --max-time 30 "https://127.0.0.1:$port/healthz" >"$work/healthz" 2>&1; then
    echo "iso-install: /healthz through the forwarded port: $(cat "$work/healthz")"
else
    echo "FAIL: /healthz through the forwarded port: $(cat "$work/healthz")"
    keep=1
    exit 1
fi
phase healthz
# Still to do: admin login through the API and the host registered (needs
# 'atriumctl user create' for the first admin).
echo "iso-install: passed (admin login through the API not checked yet: no first admin)"
