#!/bin/bash
# iso.install_vm: the atrium .deb on a fresh Debian 12 booted with systemd
# under QEMU (TCG, no network).
#
#   install-vm.sh SOURCE_DIR BUILD_DIR
#
# Phases (each timed):
#   package  cpack the .deb from BUILD_DIR; make "the next version" from it
#            (same files, Version +upgradetest1) for the upgrade path
#   image    tests/iso/base-image.sh: debootstrap'd Debian 12 with the .deb's
#            Depends installed; cached in BUILD_DIR/test-state/iso-base
#   boot 1   apt-get install the .deb, check it (tests/iso/guest-step.sh install)
#   boot 2   reboot the same disk: daemons up by themselves; upgrade; data and
#            config kept; purge keeps the site's data (guest-step.sh upgrade)
# The guest reports each check on ttyS0; the serial logs stay in the work dir
# when the test fails.  Needs root, qemu-system-x86, debootstrap, e2fsprogs.
set -euo pipefail
src=${1:?usage: install-vm.sh SOURCE_DIR BUILD_DIR}
build=$(cd "${2:?usage: install-vm.sh SOURCE_DIR BUILD_DIR}" && pwd)
here=$src/tests/iso
boot_timeout=${ATRIUM_ISO_BOOT_TIMEOUT:-1500}

[[ $(id -u) -eq 0 ]] || { echo "SKIP: needs root (debootstrap, chroot)"; exit 77; }
for c in qemu-system-x86_64 qemu-img mke2fs dpkg-deb cpack; do
    command -v "$c" >/dev/null || { echo "FAIL: $c not found"; exit 1; }
done

work=$(mktemp -d /tmp/atrium-iso.XXXXXX)
qemu_pid=
keep=0
cleanup() {
    [[ -n $qemu_pid ]] && kill "$qemu_pid" 2>/dev/null
    if ((keep)); then
        echo "install-vm: logs kept in $work"
        rm -f "$work"/*.qcow2 "$work"/*.img
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

declare -A took
t0=$SECONDS
phase_start=$SECONDS
phase_end() {
    took[$1]=$((SECONDS - phase_start))
    echo "install-vm: phase $1 took ${took[$1]} s"
    phase_start=$SECONDS
}

# ---------------------------------------------------------------- package
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
arch=$(dpkg --print-architecture)
(cd "$build" && cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/out") >"$work/cpack.log" 2>&1 ||
    { cat "$work/cpack.log"; echo "FAIL: cpack"; exit 1; }
deb=$work/out/atrium_${version}_${arch}.deb
[[ -s $deb ]] || { echo "FAIL: no $deb"; exit 1; }
new_version=${version}+upgradetest1
dpkg-deb -R "$deb" "$work/next"
sed -i "s/^Version: .*/Version: $new_version/" "$work/next/DEBIAN/control"
dpkg-deb -b "$work/next" "$work/atrium-upgrade.deb" >/dev/null
rm -rf "$work/next"
depends=$(dpkg-deb -f "$deb" Depends)
echo "install-vm: $(basename "$deb") ($(stat -c %s "$deb") bytes), next version $new_version"
phase_end package

# ---------------------------------------------------------------- image
base=$build/test-state/iso-base
"$here/base-image.sh" "$base" "$depends"
phase_end image

# ---------------------------------------------------------------- boots
qemu-img create -q -f qcow2 -b "$base/base.qcow2" -F qcow2 "$work/root.qcow2"
qemu-img create -q -f qcow2 "$work/tiny.qcow2" 16M

# boot NAME STEP: boot the disk with a test disk whose STEP is STEP; the
# guest's driver runs guest-step.sh and powers off.  Fails on any failed
# check, a missing end marker, or a timeout.
boot() {
    local name=$1 step=$2 d=$work/disk-$1
    mkdir -p "$d"
    cp "$here/guest-step.sh" "$d/step.sh"
    chmod 755 "$d/step.sh"
    echo "$step" >"$d/STEP"
    echo "$new_version" >"$d/NEW_VERSION"
    cp "$deb" "$d/atrium.deb"
    cp "$work/atrium-upgrade.deb" "$d/atrium-upgrade.deb"
    cp "$work/tiny.qcow2" "$d/tiny.qcow2"
    mke2fs -q -t ext4 -L ATRTEST -d "$d" -F "$work/$name.img" 64M
    local log=$work/serial-$name.log
    echo "install-vm: $name: booting (step $step, TCG, timeout ${boot_timeout} s)"
    timeout "$boot_timeout" qemu-system-x86_64 -accel tcg,thread=multi -machine q35 -cpu max \
        -smp 2 -m 2048 -nodefaults -display none -no-reboot -nic none \
        -kernel "$base/vmlinuz" -initrd "$base/initrd.img" \
        -append "root=/dev/vda rw console=ttyS0 quiet systemd.show_status=0 panic=-1" \
        -drive "file=$work/root.qcow2,if=virtio,format=qcow2" \
        -drive "file=$work/$name.img,if=virtio,format=raw,readonly=on" \
        -serial "file:$log" &
    qemu_pid=$!
    local rc=0
    wait "$qemu_pid" || rc=$?
    qemu_pid=
    grep -a '^ATRIUM-CHECK\|^ATRIUM-PHASE\|^ATRIUM-TEST' "$log" | tr -d '\r' || true
    if ((rc == 124)); then
        echo "FAIL: $name: no power-off within $boot_timeout s; serial log tail:"
        tail -n 40 "$log"
        keep=1
        return 1
    fi
    if grep -aq '^ATRIUM-CHECK fail' "$log" || ! grep -aq '^ATRIUM-TEST-STEP-EXIT 0' "$log"; then
        echo "FAIL: $name: see the checks above; serial log: $log"
        grep -a -A30 '^ATRIUM-CHECK fail' "$log" | tr -d '\r' | head -n 120
        grep -a -A90 '^---- journal' "$log" | tr -d '\r' || true
        keep=1
        return 1
    fi
    local n
    n=$(grep -ac '^ATRIUM-CHECK ok' "$log")
    echo "install-vm: $name: $n checks passed"
}

boot boot1-install install
# The power-off that ended boot 1 ran atrium-vm-shutdown (after hostd had
# stopped): the stand-in VM got the power button, ignored it, and was quit
# after stop_timeout (5 s).  Its lines went to the console.
shutdown_ok=1
for want in 'mod=vm-shutdown msg="system_powerdown sent" vm=999999' \
    'mod=vm-shutdown msg="guest did not power off in time: quit" vm=999999 pid=[0-9]* qmp=ok' \
    'mod=vm-shutdown msg="VMs powered off" vms=1 by_guest=0 quit=1 killed=0'; do
    if grep -aq -- "$want" "$work/serial-boot1-install.log"; then
        echo "install-vm: shutdown: ok: $want"
    else
        echo "FAIL: shutdown: no '$want' on the console"
        shutdown_ok=0
    fi
done
if ((!shutdown_ok)); then
    grep -a 'vm-shutdown' "$work/serial-boot1-install.log" | tr -d '\r' || true
    keep=1
    exit 1
fi
phase_end boot1-install
boot boot2-upgrade upgrade
phase_end boot2-upgrade

echo
echo "install-vm: passed in $((SECONDS - t0)) s (package ${took[package]} s, image ${took[image]} s," \
    "install boot ${took[boot1-install]} s, upgrade boot ${took[boot2-upgrade]} s)"
