#!/bin/bash
# hv_bench: Atrium's hypervisor side against libvirt, same guest, same run
# (Release build; ctest -L bench -R bench.hv -V).
#
#   Atrium:  the real atrium-hostd on a private PostgreSQL database (tests/harness),
#            linked clones through the hypervisor library (hv_storage_clone)
#   libvirt: Debian's libvirtd (qemu driver) started by this script in its own
#            mount namespace: private /etc/libvirt, /run, /var/lib, /var/cache and
#            /var/log (tmpfs), a passwd/group that name the libvirt-qemu user the
#            driver insists on, its sockets in this run's temp dir.  No default
#            network exists in that private config, so no dnsmasq starts; QEMU runs
#            as root without a security driver (as hostd's does).  Clones with
#            `virsh vol-create-as --backing-vol` in a transient dir pool; VMs as
#            transient domains (`virsh create`).
#
# hv_bench (the C half) measures; this script sets up, prints the table and, on
# any exit, destroys the domains, stops libvirtd and hostd, kills any QEMU whose
# command line names this run's temp dir and removes the cgroups libvirt made.
#
# ATRIUM_HV_BENCH_ROUNDS (default 5) boots per side, ATRIUM_HV_BENCH_CLONES
# (default 100) clones per side.
set -euo pipefail
bench=${1:?usage: hv_bench.sh HV_BENCH HOSTD ATRIUMCTL GUEST_DIR}
hostd=${2:?} ctl=${3:?} guest=$(realpath "${4:?}")
rounds=${ATRIUM_HV_BENCH_ROUNDS:-5}
clones=${ATRIUM_HV_BENCH_CLONES:-100}
libvirtd=/usr/sbin/libvirtd

for tool in virsh unshare qemu-img qemu-system-x86_64; do
    command -v "$tool" >/dev/null || { echo "hv_bench: $tool not found (scripts/deps)" >&2; exit 1; }
done
[[ -x $libvirtd ]] || { echo "hv_bench: $libvirtd not found (scripts/deps: libvirt-daemon)" >&2; exit 1; }
[[ -r $guest/vmlinuz && -r $guest/disk.qcow2 ]] || { echo "hv_bench: no test guest in $guest" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "hv_bench: needs root (a privileged libvirtd in its own mount namespace)" >&2; exit 1; }

. "$(dirname "$0")/../harness/lib.sh"
atr_init hv-bench
lv=$tmp/lv
uri="qemu:///system?socket=$lv/sock/libvirt-sock"
V() { timeout 120 virsh -q -c "$uri" "$@"; }
hostd_pid= lv_pid= bench_pid=
trap 'exit 130' INT
trap 'exit 143' TERM

# libvirt makes "machine" cgroups; remove those this run made, and only those.
cg_before=$(ls -d /sys/fs/cgroup/machine* /sys/fs/cgroup/*/machine* 2>/dev/null || true)

cleanup_libvirt() {
    if [[ -n $lv_pid ]] && kill -0 "$lv_pid" 2>/dev/null; then
        local d
        for d in $(V list --name 2>/dev/null); do V destroy "$d" >/dev/null 2>&1 || true; done
        kill -TERM "$lv_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$lv_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$lv_pid" 2>/dev/null || true
    fi
}
cleanup_qemu() { # any QEMU of this run (either side) still alive, found by its paths
    local p
    for p in /proc/[0-9]*; do
        if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q "^[^ ]*qemu-system[^ ]* .*$tmp/"; then
            kill -KILL "${p#/proc/}" 2>/dev/null || true
        fi
    done
}
cleanup_cgroups() {
    local c
    for c in /sys/fs/cgroup/machine* /sys/fs/cgroup/*/machine*; do
        [[ -d $c ]] || continue
        grep -qxF "$c" <<<"$cg_before" && continue
        find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
}
atr_on_exit '[[ -n $bench_pid ]] && { kill -TERM "$bench_pid"; wait "$bench_pid"; } 2>/dev/null; true'
atr_on_exit 'cleanup_libvirt'
stop_hostd() {
    [[ -n $hostd_pid ]] || return 0
    kill -TERM "$hostd_pid" 2>/dev/null || return 0
    for _ in $(seq 100); do kill -0 "$hostd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$hostd_pid" 2>/dev/null || true
    wait "$hostd_pid" 2>/dev/null || true
}
atr_on_exit 'stop_hostd'
atr_on_exit 'sleep 0.5; cleanup_qemu'
atr_on_exit 'cleanup_cgroups'

mkdir -p "$tmp/run" "$tmp/data" "$tmp/pool" "$tmp/atr" "$lv/sock" "$lv/etc"
cp "$guest/disk.qcow2" "$tmp/pool/base.qcow2"
chmod 0444 "$tmp/pool/base.qcow2" # a golden image: never written
capacity=$(qemu-img info --output=json "$tmp/pool/base.qcow2" | sed -n 's/.*"virtual-size": *\([0-9]*\).*/\1/p' | head -1)
[[ -n $capacity ]] || { echo "hv_bench: cannot read the virtual size of the guest disk" >&2; exit 1; }

# ---------------------------------------------------------------- Atrium
host=hvbench-$$
conf=$tmp/atrium.conf
printf '[db]\nurl = %s\n[paths]\nruntime_dir = %s/run\ndata_dir = %s/data\n[hostd]\nname = %s\naccel = tcg\n' \
    "$dbci" "$tmp" "$tmp" "$host" >"$conf"
"$ctl" --config "$conf" db migrate >/dev/null
"$hostd" --config "$conf" >"$tmp/hostd.log" 2>&1 &
hostd_pid=$!
until_sql 60 "SELECT EXISTS (SELECT 1 FROM hosts WHERE name = '$host' AND state = 'online')" ||
    { echo "hv_bench: hostd did not come online; its log:" >&2; cat "$tmp/hostd.log" >&2; exit 1; }

# --------------------------------------------------------------- libvirt
cat >"$lv/etc/libvirtd.conf" <<EOF
unix_sock_dir = "$lv/sock"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:stderr"
EOF
cat >"$lv/etc/qemu.conf" <<EOF
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
stdio_handler = "file"
EOF
cp /etc/passwd "$lv/passwd"
cp /etc/group "$lv/group"
grep -q '^libvirt-qemu:' "$lv/passwd" ||
    echo 'libvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin' >>"$lv/passwd"
grep -q '^libvirt-qemu:' "$lv/group" || echo 'libvirt-qemu:x:64055:' >>"$lv/group"
mkdir -p "$lv/run" "$lv/lib" "$lv/cache" "$lv/log"
cat >"$lv/start.sh" <<EOF
#!/bin/sh
set -e
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=0755 tmpfs /var/lib
mount -t tmpfs -o mode=0755 tmpfs /var/cache
mount -t tmpfs -o mode=0755 tmpfs /var/log
mount --bind "$lv/etc" /etc/libvirt
mount --bind "$lv/passwd" /etc/passwd
mount --bind "$lv/group" /etc/group
exec $libvirtd --pid-file "$lv/libvirtd.pid"
EOF
chmod +x "$lv/start.sh"
# unshare and the script exec: this pid is libvirtd's.
unshare --mount --propagation private "$lv/start.sh" >"$lv/libvirtd.log" 2>&1 &
lv_pid=$!
wait_for_socket() {
    local deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)); do
        [[ -S $lv/sock/libvirt-sock ]] && return 0
        kill -0 "$lv_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "hv_bench: libvirtd did not start; its log:" >&2
    cat "$lv/libvirtd.log" >&2
    return 1
}
wait_for_socket
t0=$(date +%s%N)
V version >/dev/null # the first connection probes QEMU's capabilities
lv_first_ms=$((($(date +%s%N) - t0) / 1000000))
V pool-create-as hvb dir --target "$tmp/pool" >/dev/null

# ---------------------------------------------------------------- measure
load0=$(cut -d' ' -f1-3 /proc/loadavg)
# In the background, so that INT or TERM reach this script (and its trap) at once.
timeout --kill-after=10 1500 "$bench" --db "$dbci" --host "$host" --runtime "$tmp/run" --work "$tmp" --guest "$guest" \
    --uri "$uri" --pool hvb --capacity "$capacity" --hostd-pid "$hostd_pid" \
    --libvirtd-pid "$lv_pid" --rounds "$rounds" --clones "$clones" >"$tmp/bench.out" &
bench_pid=$!
rc=0
wait "$bench_pid" || rc=$?
bench_pid=
if ((rc != 0)); then
    echo "hv_bench: failed (status $rc); the last lines of hostd's and libvirtd's logs:" >&2
    tail -n 20 "$tmp/hostd.log" "$lv/libvirtd.log" >&2
    exit "$rc"
fi
load1=$(cut -d' ' -f1-3 /proc/loadavg)
val() { sed -n "s/^$1 //p" "$tmp/bench.out"; }

row() { # label atrium libvirt unit divisor
    awk -v l="$1" -v a="$2" -v b="$3" -v u="$4" -v d="$5" 'BEGIN {
        printf "%-52s %10.1f %10.1f %-4s %7.2fx\n", l, a / d, b / d, u, (b > 0 ? a / b : 0) }'
}
printf '%-52s %10s %10s %-4s %8s\n' "hv_bench (TCG, 1 vCPU, 256 MiB, test guest)" Atrium libvirt "" ratio
row "linked clone, median of $clones" "$(val atr_clone_median_us)" "$(val lv_clone_median_us)" ms 1000
row "linked clone, p90 of $clones" "$(val atr_clone_p90_us)" "$(val lv_clone_p90_us)" ms 1000
printf '%-52s %10s %10.1f %-4s\n' "  of which virsh start + connect (virsh uri)" - \
    "$(awk -v x="$(val lv_noop_median_us)" 'BEGIN { print x / 1000 }')" ms
row "start -> running, QMP answered (median of $rounds)" "$(val atr_qmp_median_ms)" "$(val lv_qmp_median_ms)" ms 1
row "start -> guest boot marker (median of $rounds)" "$(val atr_boot_median_ms)" "$(val lv_boot_median_ms)" ms 1
row "daemon RSS managing 1 running VM (median)" "$(val atr_daemon_rss_kb)" "$(val lv_daemon_rss_kb)" MiB 1024
row "daemon peak RSS (VmHWM) at the end" "$(val atr_daemon_hwm_kb)" "$(val lv_daemon_hwm_kb)" MiB 1024
row "QEMU RSS at the boot marker (median)" "$(val atr_qemu_rss_kb)" "$(val lv_qemu_rss_kb)" MiB 1024
echo "samples, start -> running (ms):  Atrium $(val atr_qmp_samples_ms) | libvirt $(val lv_qmp_samples_ms)"
echo "samples, start -> marker (ms):   Atrium $(val atr_boot_samples_ms) | libvirt $(val lv_boot_samples_ms)"
echo "libvirtd start -> first virsh answer (capabilities probe): $lv_first_ms ms"
echo "ratio = Atrium / libvirt (below 1: Atrium is faster or smaller)"
echo "$(qemu-system-x86_64 --version | head -1); $($libvirtd --version); load average $load0 -> $load1"
