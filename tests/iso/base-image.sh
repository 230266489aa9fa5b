#!/bin/bash
# Build (cached) the fresh Debian 12 system iso.install_vm installs the atrium
# .deb into: debootstrap minbase + systemd + Debian's kernel, with the .deb's
# dependencies already installed (the VM has no network), and a test driver
# unit that, at boot, runs /step.sh from the disk labelled ATRTEST, writing to
# ttyS0, then powers off.
#
#   base-image.sh OUTDIR DEPENDS
#
# DEPENDS is the .deb's Depends field; it goes through `apt-get satisfy`, so
# alternatives and versions count as apt reads them.  Outputs in OUTDIR:
# base.qcow2 (ext4 for /dev/vda, no partition table), vmlinuz, initrd.img,
# manifest.  Rebuilt only when this script, DEPENDS or the mirror change;
# downloaded .debs are kept in OUTDIR/debs.  Needs root, debootstrap,
# e2fsprogs, qemu-utils.
set -euo pipefail

prog=iso-base-image
die() {
    echo "$prog: error: $*" >&2
    exit 1
}
note() { echo "$prog: $*" >&2; }

[[ $# -eq 2 && -n $1 && -n $2 ]] || { echo "usage: $0 OUTDIR DEPENDS" >&2; exit 2; }
depends=$2
suite=bookworm
disk_size=6G
# Beyond minbase: boot with systemd from /dev/vda, and what the checks use.
packages=(systemd-sysv udev kmod dbus linux-image-amd64 initramfs-tools zstd
    procps iproute2 curl ca-certificates)

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap and chroot need it)"
for c in debootstrap mke2fs qemu-img flock; do
    command -v "$c" >/dev/null || die "$c not found (apt-get install debootstrap e2fsprogs qemu-utils util-linux)"
done
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -s $keyring ]] || die "$keyring missing (apt-get install debian-archive-keyring)"

mkdir -p "$1"
out=$(cd "$1" && pwd)
self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")

# The Debian mirror this machine's apt uses (deb822 .sources or .list).
mirror=${ATRIUM_ISO_MIRROR:-$(
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk '$1 == "deb" && $0 ~ / bookworm / { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }'
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] && awk 'BEGIN { RS = ""; FS = "\n" } {
            u = ""; ok = 0
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); u = a[2] }
                if ($i ~ /^Suites:/) { n = split($i, b, /[ \t]+/); for (j = 2; j <= n; j++) if (b[j] == "bookworm") ok = 1 }
            }
            if (ok) print u }' "$f"
    done | grep -v -- '-security' | head -n1
)}
mirror=${mirror%/}
[[ -n $mirror ]] || die "no Debian bookworm mirror in apt sources; set ATRIUM_ISO_MIRROR"
security=${mirror%/debian}/debian-security

stamp=$( { sha256sum <"$self"; echo "$depends|$mirror"; } | sha256sum | cut -d' ' -f1)
exec 9>"$out/.lock"
flock 9
if [[ -f $out/.stamp && $(<"$out/.stamp") == "$stamp" && -s $out/base.qcow2 && -s $out/vmlinuz &&
    -s $out/initrd.img && ! $out/base.qcow2 -nt $out/.stamp ]]; then
    note "cached: $out ($(du -h "$out/base.qcow2" | cut -f1))"
    exit 0
fi

start=$SECONDS
work=$(mktemp -d /tmp/atrium-iso.XXXXXX)
root=$work/root
unmount_all() {
    local m
    for _ in 1 2 3; do
        mapfile -t ms < <(awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r)
        ((${#ms[@]} == 0)) && return 0
        for m in "${ms[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
    done
}
cleanup() {
    local rc=$?
    unmount_all
    if awk -v w="$work/" 'index($2, w) == 1 { f = 1 } END { exit !f }' /proc/mounts; then
        note "left $work: something is still mounted under it"
    else
        rm -rf "$work"
    fi
    ((rc == 0)) || note "FAILED after $((SECONDS - start)) s"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

logged() { # logged LOG CMD...: output to LOG, its tail shown on failure
    local log=$1
    shift
    "$@" >"$log" 2>&1 || { tail -n 40 "$log" >&2; die "$* failed"; }
}
in_root() { LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive chroot "$root" "$@"; }

mkdir -p "$out/debs"
note "debootstrap $suite (minbase) from $mirror"
logged "$work/debootstrap.log" debootstrap --variant=minbase --merged-usr --keyring="$keyring" \
    --cache-dir="$out/debs" "$suite" "$root" "$mirror"
unmount_all

cat >"$root/etc/dpkg/dpkg.cfg.d/01-atrium-test-small" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
cat >"$root/etc/apt/apt.conf.d/90-atrium-test" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
    "$mirror" "$suite" "$mirror" "$suite" "$security" "$suite" >"$root/etc/apt/sources.list"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
mkdir -p "$root/etc/initramfs-tools/conf.d"
printf 'MODULES=list\nCOMPRESS=zstd\n' >"$root/etc/initramfs-tools/conf.d/atrium.conf"
printf '%s\n' virtio_pci virtio_blk crc32c_generic ext4 >"$root/etc/initramfs-tools/modules"
echo "do_symlinks = no" >"$root/etc/kernel-img.conf"

mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
cp -l -n "$out"/debs/*.deb "$root/var/cache/apt/archives/" 2>/dev/null ||
    cp -n "$out"/debs/*.deb "$root/var/cache/apt/archives/" 2>/dev/null || true
note "apt-get install ${#packages[@]} packages and satisfy the .deb's Depends"
logged "$work/apt-update.log" in_root apt-get update
logged "$work/apt-upgrade.log" in_root apt-get -y dist-upgrade
logged "$work/apt-install.log" in_root apt-get -y install "${packages[@]}"
logged "$work/apt-satisfy.log" in_root apt-get -y satisfy "$depends"
cp -l -n "$root"/var/cache/apt/archives/*.deb "$out/debs/" 2>/dev/null ||
    cp -n "$root"/var/cache/apt/archives/*.deb "$out/debs/" 2>/dev/null || true

echo atrium-test >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tatrium-test.example.org atrium-test\n' >"$root/etc/hosts"
printf '/dev/vda\t/\text4\trw,relatime,errors=remount-ro\t0\t1\n' >"$root/etc/fstab"
: >"$root/etc/machine-id"
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' >"$root/etc/systemd/journald.conf.d/atrium-test.conf"

cat >"$root/usr/local/sbin/atrium-test-driver" <<'EOF'
#!/bin/sh
# Run /step.sh from the disk labelled ATRTEST, output on ttyS0, then power off.
exec >/dev/ttyS0 2>&1
echo
echo "ATRIUM-TEST-BOOTED uptime=$(cut -d' ' -f1 /proc/uptime)"
mkdir -p /mnt/t
if mount -o ro LABEL=ATRTEST /mnt/t && [ -x /mnt/t/step.sh ]; then
    /mnt/t/step.sh
    echo "ATRIUM-TEST-STEP-EXIT $?"
else
    echo "ATRIUM-TEST-STEP-EXIT no-step-disk"
fi
umount /mnt/t 2>/dev/null
sync
systemctl poweroff
EOF
chmod 755 "$root/usr/local/sbin/atrium-test-driver"
cat >"$root/etc/systemd/system/atrium-test-driver.service" <<'EOF'
[Unit]
Description=Atrium package test driver (iso.install_vm)
After=multi-user.target postgresql.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/atrium-test-driver
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
EOF
in_root systemctl enable atrium-test-driver.service >/dev/null 2>&1 || die "systemctl enable failed"

kver=$(in_root dpkg-query -W -f='${Depends}' linux-image-amd64 | sed -n 's/.*linux-image-\([0-9][^ ,]*-amd64\).*/\1/p')
[[ -n $kver && -f $root/boot/vmlinuz-$kver && -f $root/boot/initrd.img-$kver ]] ||
    die "no /boot/vmlinuz-$kver or initrd.img-$kver in the image"
in_root dpkg-query -W -f='${Package}\t${Version}\n' | sort >"$work/manifest"

in_root apt-get clean
unmount_all
rm -f "$root/usr/sbin/policy-rc.d"
rm -rf "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/*

note "making the ext4 file system and base.qcow2"
logged "$work/mke2fs.log" mke2fs -q -t ext4 -L atrium-root -d "$root" -F "$work/base.raw" "$disk_size"
logged "$work/convert.log" qemu-img convert -f raw -O qcow2 "$work/base.raw" "$work/base.qcow2"
rm -f "$work/base.raw" "$out/.stamp"
cp "$root/boot/vmlinuz-$kver" "$work/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$work/initrd.img"
for f in base.qcow2 vmlinuz initrd.img manifest; do mv -f "$work/$f" "$out/$f"; done
echo "$stamp" >"$out/.stamp"
note "done in $((SECONDS - start)) s: $(du -h "$out/base.qcow2" | cut -f1) base.qcow2," \
    "$(wc -l <"$out/manifest") packages, kernel $kver"
