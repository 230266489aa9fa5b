#!/bin/bash
# Build the Atrium test guest from Debian packages (no other downloads).
#
#   build.sh OUTDIR
#
# Writes OUTDIR/vmlinuz, OUTDIR/initrd.img (busybox + the kernel modules the
# guest needs), OUTDIR/disk.qcow2 (empty ext4, label ATRIUMDATA) and
# OUTDIR/cmdline, plus OUTDIR/manifest (what went in).  The kernel comes from
# linux-image-amd64's current linux-image-<abi>-amd64 package and busybox from
# busybox-static, both fetched with `apt-get download` into a cache
# (OUTDIR/.cache, or $ATRIUM_GUEST_CACHE) and never installed on the host.
#
# Cached: when the outputs exist, are untouched and were built from the same
# guest sources, it exits at once.  The kernel package chosen on the first
# build is kept; ATRIUM_GUEST_REFRESH=1 asks apt again for the newest one.
set -euo pipefail

die() {
    echo "guest/build.sh: $*" >&2
    exit 1
}

[[ $# -eq 1 && -n $1 ]] || {
    echo "usage: $0 OUTDIR" >&2
    exit 2
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
cache=${ATRIUM_GUEST_CACHE:-$out/.cache}

# The command line is part of the contract (see README.md): serial console on
# ttyS0, the VGA text console stays tty1, and loglevel=1 keeps kernel
# messages out of the marker lines.
cmdline="console=ttyS0 loglevel=1"

# Modules the guest loads, in addition to their dependencies (read from each
# module's .modinfo).  ext4 asks the crypto API for "crc32c" by name, which
# no depends= line records, hence crc32c_generic.
# virtio_console gives the guest the virtio-serial port an instant clone's
# identity arrives on (org.atrium.identity, see rootfs/init).
want_modules="virtio_pci virtio_blk virtio_net virtio_balloon virtio_console crc32c_generic ext4 button evdev"

outputs=(vmlinuz initrd.img disk.qcow2 cmdline manifest)

sources_hash() {
    (
        cd "$here"
        printf '%s\n' "$cmdline" "$want_modules"
        find build.sh rootfs -type f -print0 | sort -z | xargs -0 sha256sum
        find rootfs -print0 | sort -z | xargs -0 stat -c '%n %a'
    ) | sha256sum | cut -d' ' -f1
}

up_to_date() {
    local f
    [[ -f $out/.stamp && $(<"$out/.stamp") == "$1" ]] || return 1
    for f in "${outputs[@]}"; do
        # A file newer than the stamp was changed after the build (for
        # instance a test booted disk.qcow2 itself instead of an overlay).
        [[ -f $out/$f && ! $out/$f -nt $out/.stamp ]] || return 1
    done
}

command -v flock >/dev/null || die "flock not found (apt-get install util-linux)"
exec 9>"$out/.lock"
flock 9

want=$(sources_hash)
if [[ ${ATRIUM_GUEST_REFRESH:-0} != 1 ]] && up_to_date "$want"; then
    exit 0
fi

need() { command -v "$1" >/dev/null || die "$1 not found (apt-get install $2)"; }
need apt-get apt
need apt-cache apt
need dpkg-deb dpkg
need mke2fs e2fsprogs
need qemu-img qemu-utils
need cpio cpio
need gzip gzip
need sha256sum coreutils

# Left behind only by a killed build; we hold the lock, so none is in use.
rm -rf "$out"/.work.*
work=$(mktemp -d "$out/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache/debs"

apt_updated=0
apt_update() {
    [[ $apt_updated == 0 ]] || return 1
    apt_updated=1
    echo "guest/build.sh: package lists missing or stale, running apt-get update" >&2
    [[ $(id -u) -eq 0 ]] || die "apt-get update needs root; run it once (sudo apt-get update)"
    apt-get update -qq >&2 || die "apt-get update failed"
}

# kernel_package: the linux-image-<abi>-amd64 package the meta package
# linux-image-amd64 currently points at.
kernel_package() {
    local pkg
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1) || true
    if [[ -z $pkg ]] && apt_update; then
        pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
            sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1) || true
    fi
    [[ -n $pkg ]] || die "apt knows no linux-image-amd64 (is Debian's main archive in sources.list?)"
    echo "$pkg"
}

# fetch_deb PKG: path of PKG's .deb in the cache, downloading it if needed.
fetch_deb() {
    local pkg=$1 debs=() log
    shopt -s nullglob
    debs=("$cache/debs/${pkg}_"*.deb)
    shopt -u nullglob
    if [[ ${#debs[@]} -eq 0 || ${ATRIUM_GUEST_REFRESH:-0} == 1 ]]; then
        log=$work/apt-$pkg.log
        if ! (cd "$cache/debs" && apt-get download "$pkg") >"$log" 2>&1; then
            apt_update || { cat "$log" >&2; die "apt-get download $pkg failed"; }
            (cd "$cache/debs" && apt-get download "$pkg") >"$log" 2>&1 ||
                { cat "$log" >&2; die "apt-get download $pkg failed"; }
        fi
        shopt -s nullglob
        debs=("$cache/debs/${pkg}_"*.deb)
        shopt -u nullglob
        [[ ${#debs[@]} -gt 0 ]] || die "apt-get download $pkg left no .deb in $cache/debs"
    fi
    # Newest last in version order when a refresh left several.
    printf '%s\n' "${debs[@]}" | sort -V | tail -n1
}

if [[ -f $cache/kernel-package && ${ATRIUM_GUEST_REFRESH:-0} != 1 ]]; then
    kpkg=$(<"$cache/kernel-package")
else
    kpkg=$(kernel_package)
    echo "$kpkg" >"$cache/kernel-package"
fi
kdeb=$(fetch_deb "$kpkg")
bdeb=$(fetch_deb busybox-static)

echo "guest/build.sh: unpacking $(basename "$kdeb")" >&2
dpkg-deb -x "$kdeb" "$work/kernel"
dpkg-deb -x "$bdeb" "$work/busybox"

kver=${kpkg#linux-image-}
moddir=$work/kernel/lib/modules/$kver/kernel
[[ -f $work/kernel/boot/vmlinuz-$kver && -d $moddir ]] ||
    die "$(basename "$kdeb") has no boot/vmlinuz-$kver or lib/modules/$kver"
bb=$work/busybox/bin/busybox
[[ -x $bb ]] || die "$(basename "$bdeb") has no bin/busybox"

# Index every module by its normalised name (dashes and underscores are the
# same to the kernel).
declare -A modpath=()
while IFS= read -r -d '' f; do
    n=$(basename "$f" .ko)
    modpath[${n//-/_}]=$f
done < <(find "$moddir" -name '*.ko' -print0)

# add_module NAME: append NAME to $order after its dependencies.
declare -A seen=()
order=()
add_module() {
    local n=${1//-/_} f deps d
    [[ -z ${seen[$n]:-} ]] || return 0
    seen[$n]=1
    f=${modpath[$n]:-}
    if [[ -z $f ]]; then
        # Built into the kernel: nothing to load.
        grep -q "/${1}.ko\$\|/${n}.ko\$" "$work/kernel/lib/modules/$kver/modules.builtin" &&
            return 0
        die "module $1 is neither in $(basename "$kdeb") nor built in"
    fi
    deps=$(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p' | head -n1)
    for d in ${deps//,/ }; do
        add_module "$d"
    done
    order+=("$n")
}
for m in $want_modules; do
    add_module "$m"
done

root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,data,tmp,etc,lib/modules}
cp "$bb" "$root/bin/busybox"
while IFS= read -r applet; do
    [[ $applet == bin/busybox ]] && continue
    ln -s /bin/busybox "$root/$applet"
done < <("$bb" --list-full)
cp -R "$here/rootfs/." "$root/"
for n in "${order[@]}"; do
    cp "${modpath[$n]}" "$root/lib/modules/$n.ko"
done
printf '%s\n' "${order[@]}" >"$root/etc/atrium-modules"

# Fixed times, owners and inode numbers: the same inputs give the same bytes.
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -print0 | sort -z |
    cpio --null -o -H newc -R 0:0 --reproducible --quiet) | gzip -9 -n >"$work/initrd.img"

mkdir -p "$work/diskroot"
mke2fs -q -F -t ext4 -L ATRIUMDATA -E lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0 \
    -d "$work/diskroot" "$work/disk.raw" 32M >/dev/null || die "mke2fs failed"
qemu-img convert -q -f raw -O qcow2 "$work/disk.raw" "$work/disk.qcow2"

cp "$work/kernel/boot/vmlinuz-$kver" "$work/vmlinuz"
echo "$cmdline" >"$work/cmdline"
{
    echo "kernel_package=$kpkg"
    echo "kernel_deb=$(basename "$kdeb")"
    echo "busybox_deb=$(basename "$bdeb")"
    echo "modules=${order[*]}"
    echo "cmdline=$cmdline"
} >"$work/manifest"

rm -f "$out/.stamp"
for f in "${outputs[@]}"; do
    mv -f "$work/$f" "$out/$f"
done
echo "$want" >"$out/.stamp"
echo "guest/build.sh: built $out ($kpkg, initrd $(stat -c %s "$out/initrd.img") bytes)" >&2
