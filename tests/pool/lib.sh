# One host's appliance for the pool tests and bench (tests/pool,
# tests/hypervisor/test-instant-pool.sh, tests/bench/pool_bench.sh), after
# harness/lib.sh's atr_init: the run's database, a config in $conf with the
# runtime and data dirs under $tmp, the test guest imported as image
# "guest", atrium-hostd and atrium-poold started as real processes.  On exit
# the daemons ($pids) and every QEMU under $tmp/run (templates' included)
# are killed by their recorded pids.
pids=()
atr_on_exit 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; atr_kill_qemus "$tmp/run"'

# pool_host_init ATRIUMCTL GUEST_DIR HOST_NAME [extra config lines...]
pool_host_init() {
    pool_ctl=$1 pool_guest=$2
    local name=$3
    shift 3
    conf=$tmp/atrium.conf
    mkdir -p "$tmp/run" "$tmp/data"
    {
        printf '[db]\nurl = %s dbname=%s\n[paths]\nruntime_dir = %s/run\ndata_dir = %s/data\n' \
            "$server" "$db" "$tmp" "$tmp"
        printf '[hostd]\nname = %s\naccel = tcg\n' "$name"
        local l
        for l in "$@"; do printf '%s\n' "$l"; done
    } >"$conf"
    "$pool_ctl" --config "$conf" db migrate >/dev/null
    im
}

# im: import the test guest as a new version of image "guest"
im() {
    "$pool_ctl" --config "$conf" image import "$pool_guest/disk.qcow2" --name guest \
        --kernel "$pool_guest/vmlinuz" --initrd "$pool_guest/initrd.img" \
        --cmdline "$(cat "$pool_guest/cmdline")" >/dev/null
}

# pool_host_start HOSTD POOLD: logs in $tmp/hostd.log and $tmp/poold.log
pool_host_start() {
    "$1" --config "$conf" >"$tmp/hostd.log" 2>&1 &
    pids+=($!)
    "$2" --config "$conf" >"$tmp/poold.log" 2>&1 &
    pids+=($!)
}

# serial VM_ID: what the VM's guest printed on its serial port so far
serial() { cat "$tmp/run/vms/$1/serial.log" 2>/dev/null || true; }
