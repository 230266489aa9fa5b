#!/bin/bash
# iso.deb_contents: build the atrium .deb with CPack from this build tree and
# check what an admin's dpkg would get: the name, the control fields
# (Depends on the tools the daemons run, library Depends from shlibdeps),
# every daemon and atriumctl, the units (valid for systemd-analyze, Type=notify,
# hostd's KillMode=process), PAM file, default config (every key of
# common/config.c, parsable by atriumctl), sysusers/tmpfiles, conffiles,
# maintainer scripts and every migration of db/migrations.
#
#   deb-contents.sh SOURCE_DIR BUILD_DIR
set -uo pipefail
src=${1:?usage: deb-contents.sh SOURCE_DIR BUILD_DIR}
build=$(cd "${2:?usage: deb-contents.sh SOURCE_DIR BUILD_DIR}" && pwd)

fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
check() { # check DESCRIPTION CMD...
    local what=$1
    shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}

work=$(mktemp -d /tmp/atrium-iso.XXXXXX)
trap 'rm -rf "$work"' EXIT

version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
[[ -n $version ]] || { echo "FAIL no CMAKE_PROJECT_VERSION in $build/CMakeCache.txt"; exit 1; }
arch=$(dpkg --print-architecture)

# ---------------------------------------------------------------- build it
start=$SECONDS
if ! (cd "$build" && cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/out") >"$work/cpack.log" 2>&1; then
    cat "$work/cpack.log"
    echo "FAIL cpack"
    exit 1
fi
deb=$work/out/atrium_${version}_${arch}.deb
check "cpack made $(basename "$deb") in $((SECONDS - start)) s" test -s "$deb"
[[ -s $deb ]] || exit 1
echo "     size $(stat -c %s "$deb") bytes"

# ---------------------------------------------------------------- control
field() { dpkg-deb -f "$deb" "$1"; }
check "Package: atrium" test "$(field Package)" = atrium
check "Version: $version" test "$(field Version)" = "$version"
check "Architecture: $arch" test "$(field Architecture)" = "$arch"
check "Maintainer set" test -n "$(field Maintainer)"
check "Description set" test -n "$(field Description)"
depends=$(field Depends)
echo "     Depends: $depends"
# One alternative group per name, e.g. "postgresql (>= 15) | postgresql-15".
has_dep() { tr ',' '\n' <<<"$depends" | grep -Eq "(^|\| *| )$1( |\(|$)"; }
for d in qemu-system-x86 qemu-utils postgresql openssl systemd init-system-helpers \
    libc6 libpq5 libssl3 libsystemd0 libjansson4 libmicrohttpd12 libpam0g libargon2-1; do
    check "Depends names $d" has_dep "$d"
done
# Every Depends name must be a package apt knows (a typo would make the .deb
# uninstallable everywhere).
names=$(tr ',|' '\n\n' <<<"$depends" | sed 's/(.*//; s/ //g' | sort -u)
known=$(apt-cache --no-all-versions show $names 2>/dev/null | sed -n 's/^Package: //p' | sort -u)
for name in $names; do
    check "apt knows $name" grep -qx "$name" <<<"$known"
done

# ---------------------------------------------------------------- files
dpkg-deb -c "$deb" | awk '{ print $1, $6 }' | sed 's| \./| /|' >"$work/list"
has() { grep -q " $1\$" "$work/list"; }
mode_of() { awk -v p="$1" '$2 == p { print $1 }' "$work/list"; }
daemons=(atrium-hostd atrium-poold atrium-broker)
[[ -x $build/display/atrium-displayd ]] && daemons+=(atrium-displayd)
for d in "${daemons[@]}"; do
    check "/usr/sbin/$d, executable" test "$(mode_of /usr/sbin/$d)" = -rwxr-xr-x
    check "unit $d.service" has "/usr/lib/systemd/system/$d.service"
done
check "/usr/bin/atriumctl, executable" test "$(mode_of /usr/bin/atriumctl)" = -rwxr-xr-x
check "unit atrium.target" has /usr/lib/systemd/system/atrium.target
check "PAM file /etc/pam.d/atrium" has /etc/pam.d/atrium
check "default config /etc/atrium/atrium.conf" has /etc/atrium/atrium.conf
check "sysusers.d entry" has /usr/lib/sysusers.d/atrium.conf
check "tmpfiles.d entry" has /usr/lib/tmpfiles.d/atrium.conf
n=0
for m in "$src"/db/migrations/*.sql; do
    check "migration $(basename "$m")" has "/usr/share/atrium/migrations/$(basename "$m")"
    n=$((n + 1))
done
check "at least one migration in db/migrations" test "$n" -gt 0
check "nothing under /usr/local" bash -c "! grep -q ' /usr/local' '$work/list'"
check "nothing under /home, /root or /tmp" bash -c "! grep -Eq ' /(home|root|tmp)/' '$work/list'"

# ---------------------------------------------------------------- control files
dpkg-deb -e "$deb" "$work/control"
check "conffiles = atrium.conf + pam.d/atrium" \
    test "$(sort "$work/control/conffiles")" = "$(printf '%s\n' /etc/atrium/atrium.conf /etc/pam.d/atrium)"
for s in postinst prerm postrm; do
    check "$s present and executable" test -x "$work/control/$s"
    check "$s parses (sh -n)" sh -n "$work/control/$s"
done
check "md5sums cover the binaries" grep -q 'usr/sbin/atrium-hostd' "$work/control/md5sums"

# ---------------------------------------------------------------- unpacked
root=$work/root
dpkg-deb -x "$deb" "$root"
conf=$root/etc/atrium/atrium.conf
check "[broker] web_root names the packaged web console" \
    grep -qx 'web_root = /usr/share/atrium/web' "$conf"
check "web console index.html in the package" test -f "$root/usr/share/atrium/web/index.html"
check "[db] url is the local cluster" \
    grep -qx 'url = host=/run/postgresql dbname=atrium user=atrium' "$conf"
# Every key in common/config.c's key_table, in its section, set or commented.
missing=0
while read -r sec key; do
    if ! awk -v s="$sec" -v k="$key" '
        /^[ \t]*\[/ { cur = $0; gsub(/[ \t\[\]]/, "", cur); next }
        cur == s && $0 ~ "^[#;]?[ \t]*" k "[ \t]*=" { found = 1 }
        END { exit !found }' "$conf"; then
        echo "     config key [$sec] $key is not in atrium.conf"
        missing=$((missing + 1))
    fi
done < <(sed -n 's/^ *{"\([a-z_]*\)", "\([a-z_]*\)", KT_.*/\1 \2/p' "$src/common/config.c")
nkeys=$(grep -c '^ *{"[a-z_]*", "[a-z_]*", KT_' "$src/common/config.c")
check "atrium.conf lists all $nkeys keys of common/config.c" test "$missing" -eq 0
# atriumctl exits 3 on a config it cannot parse; anything else means it parsed
# (no database here: 4).
"$root/usr/bin/atriumctl" --config "$conf" db status >"$work/ctl.out" 2>&1
rc=$?
check "atriumctl parses the packaged atrium.conf (exit $rc, not 3)" test "$rc" -ne 3
[[ $rc -ne 3 ]] || cat "$work/ctl.out"
for d in "${daemons[@]}"; do
    check "$d --help runs" bash -c "'$root/usr/sbin/$d' --help >/dev/null 2>&1"
done
# Every program names the package version.
for p in usr/sbin/atrium-hostd usr/sbin/atrium-poold usr/sbin/atrium-broker usr/sbin/atrium-displayd \
    usr/bin/atriumctl; do
    [[ -x $root/$p ]] || continue
    out=$("$root/$p" --version 2>&1)
    check "${p##*/} --version prints '${p##*/} $version'" test "$out" = "${p##*/} $version"
done

units=$root/usr/lib/systemd/system
for d in "${daemons[@]}"; do
    u=$units/$d.service
    check "$d.service Type=notify" grep -qx 'Type=notify' "$u"
    check "$d.service Restart=on-failure" grep -qx 'Restart=on-failure' "$u"
    check "$d.service starts /usr/sbin/$d" grep -q "^ExecStart=/usr/sbin/$d " "$u"
    check "$d.service is WantedBy atrium.target" grep -qx 'WantedBy=atrium.target' "$u"
done
check "hostd KillMode=process (VMs outlive hostd)" grep -qx 'KillMode=process' "$units/atrium-hostd.service"
check "hostd runs as root" bash -c "! grep -q '^User=' '$units/atrium-hostd.service'"
check "hostd may use /dev/kvm" grep -qx 'DeviceAllow=/dev/kvm rw' "$units/atrium-hostd.service"
check "hostd: no MemoryDenyWriteExecute (TCG needs W+X)" \
    bash -c "! grep -q '^MemoryDenyWriteExecute=yes' '$units/atrium-hostd.service'"
for d in atrium-poold atrium-broker; do
    check "$d runs as atrium" grep -qx 'User=atrium' "$units/$d.service"
done
u=$units/atrium-vm-shutdown.service
check "/usr/libexec/atrium/atrium-vm-shutdown, executable" \
    test "$(mode_of /usr/libexec/atrium/atrium-vm-shutdown)" = -rwxr-xr-x
check "atrium-vm-shutdown --version" test "$("$root/usr/libexec/atrium/atrium-vm-shutdown" --version)" = "atrium-vm-shutdown $version"
check "vm-shutdown: stops after hostd and displayd" \
    grep -qx 'Before=atrium-hostd.service atrium-displayd.service' "$u"
check "vm-shutdown: not PartOf atrium.target (restarts never power off VMs)" bash -c "! grep -q '^PartOf=' '$u'"
check "vm-shutdown: manual stop refused" grep -qx 'RefuseManualStop=yes' "$u"
check "vm-shutdown: powers off in ExecStop" grep -q '^ExecStop=/usr/libexec/atrium/atrium-vm-shutdown ' "$u"
check "hostd UMask=0007 (console sockets 0770)" grep -qx 'UMask=0007' "$units/atrium-hostd.service"
check "tmpfiles: /run/atrium/vms 2750 root atrium" \
    grep -Eq '^d /run/atrium/vms +2750 root atrium' "$root/usr/lib/tmpfiles.d/atrium.conf"
check "sysusers makes user atrium" grep -q '^u atrium ' "$root/usr/lib/sysusers.d/atrium.conf"
for p in /run/atrium /var/lib/atrium/images /var/lib/atrium/overlays; do
    check "tmpfiles makes $p" grep -q "^d $p " "$root/usr/lib/tmpfiles.d/atrium.conf"
done
# systemd-analyze verify on the units, with ExecStart pointed at the unpacked
# binaries (it checks that they exist and are executable).
mkdir -p "$work/units"
for f in "$units"/*; do
    sed "s|^\(Exec[A-Za-z]*\)=/usr/|\1=$root/usr/|" "$f" >"$work/units/$(basename "$f")"
done
if command -v systemd-analyze >/dev/null; then
    (cd "$work/units" && systemd-analyze verify ./*.service ./*.target) >"$work/verify.log" 2>&1
    vrc=$?
    grep -v 'not executable\|Unit sysinit.target not found' "$work/verify.log" >"$work/verify.rest" || true
    check "systemd-analyze verify: no complaints" test "$vrc" -eq 0 -a ! -s "$work/verify.rest"
    [[ -s $work/verify.rest ]] && cat "$work/verify.log"
fi

echo
if ((fails)); then
    echo "iso.deb_contents: $fails check(s) failed"
    exit 1
fi
echo "iso.deb_contents: all checks passed"
