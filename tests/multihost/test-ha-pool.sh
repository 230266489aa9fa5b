#!/bin/bash
# A pool's desktops when a host dies, on two test hosts (network namespaces,
# each hostd reaching PostgreSQL over TCP through the test network;
# tests/harness/hosts.sh), with atrium-poold acting.  A pool of linked
# clones of the test guest keeps 3 spares spread over mh1 and mh2; alice
# has a desktop on one of them, called V below (the other is S).
#
#   1. V merely late: its hostd is killed -9 and started again before its
#      fence deadline.  Its VMs are marked lost, but nothing is retired or
#      rebuilt while it is silent (alice, logging in, is told to retry and
#      keeps her session), and when it is back its VMs (same QEMUs) and
#      alice's session are as they were.
#   2. V's link is cut.  Once V is fenced its pool VMs are retired, alice's
#      session on it ends, and the pool is back to 3 spares, all on S.
#      Proofs: every old QEMU on V was seen dead before the first
#      replacement QEMU started, the replacement rows were written after the
#      fence, new VMs have new names and ids, and a sampler never sees one VM
#      with QEMUs on two hosts.  alice gets a new desktop on S.  The acting
#      poold is killed -9 half-way (after the loss, before the fence); its
#      standby finishes the work from the rows.
#   3. V's link comes back: its old rows and overlays are deleted by its
#      hostd, nothing of them runs or starts there again.
set -euo pipefail
hostd=${1:?usage: test-ha-pool.sh ATRIUM-HOSTD ATRIUM-POOLD ATRIUMCTL POOL-ASSIGN}
poold=${2:?usage: test-ha-pool.sh ATRIUM-HOSTD ATRIUM-POOLD ATRIUMCTL POOL-ASSIGN}
ctl=${3:?usage: test-ha-pool.sh ATRIUM-HOSTD ATRIUM-POOLD ATRIUMCTL POOL-ASSIGN}
assign=${4:?usage: test-ha-pool.sh ATRIUM-HOSTD ATRIUM-POOLD ATRIUMCTL POOL-ASSIGN}
guest=${ATRIUM_GUEST_DIR:?the test guest (fixture guest)}
here=$(dirname "$0")
. "$here/../harness/lib.sh"
. "$here/../harness/hosts.sh"
atr_init hapool

deadline_s=16 # [hostd] fence_deadline: room for a hostd restart in step 1
margin_s=4    # [poold] fence_margin
stale_s=4     # [poold] host_stale
pass_s=2      # poold's pass interval

mh_ctl "$ctl"
mh_db_tcp=1
mh_hostd_extra="fence_deadline = $deadline_s"
mh_init 2 "$hostd"
ok "two hosts up, database over TCP through the test network"

on_fail_logs() {
    echo "---- vms"
    q "SELECT v.id, v.name, h.name, v.state, v.lost_state, v.desired_power, v.actual_power,
        v.last_error FROM vms v LEFT JOIN hosts h ON h.id = v.host_id ORDER BY v.id" || true
    mh_hostd_tails 25
    echo "---- poold (last 30 lines)"
    tail -n 30 "$tmp/poold.log" 2>/dev/null || true
    echo "---- standby poold (last 30 lines)"
    tail -n 30 "$tmp/poold2.log" 2>/dev/null || true
}
atr_on_exit '((atr_fails == 0)) || on_fail_logs'

# Golden image and overlays in one directory both hosts open (poold names
# each overlay <data_dir>/overlays/<vm>.qcow2; here that is shared).
mkdir -p "$tmp/pdata/images" "$tmp/pdata/overlays"
printf '[paths]\ndata_dir = %s/pdata\n' "$tmp" >>"$tmp/ctl.conf"
a image import "$guest/disk.qcow2" --name guest --kernel "$guest/vmlinuz" \
    --initrd "$guest/initrd.img" --cmdline "$(cat "$guest/cmdline")" >/dev/null
a pool create office --image guest --min 0 --spare 3 --max 6 --memory 256 --vcpus 1 >/dev/null

# poold acts from the machine itself (the unix socket): it is never cut off.
printf '[db]\nurl = %s dbname=%s\n[paths]\ndata_dir = %s/pdata\n[poold]\nhost_stale = %d\nfence_margin = %d\n[log]\nlevel = info\n' \
    "$server" "$db" "$tmp" "$stale_s" "$margin_s" >"$tmp/poold.conf"
"$poold" --config "$tmp/poold.conf" >"$tmp/poold.log" 2>&1 &
poold_pid=$!
atr_on_exit "kill $poold_pid 2>/dev/null || true; wait $poold_pid 2>/dev/null || true"
wait_for "$tmp/poold.log" 'msg="acting as pool manager"' 30 && ok "poold acts" || bad "poold does not act"
# A standby, which takes over when the acting one is killed -9 in step 2.
"$poold" --config "$tmp/poold.conf" >"$tmp/poold2.log" 2>&1 &
poold2_pid=$!
atr_on_exit "kill $poold2_pid 2>/dev/null || true; wait $poold2_pid 2>/dev/null || true"

hid() { q "SELECT id FROM hosts WHERE name = 'mh$1'"; }
ready_on() { # HOST: ready VMs of the pool on that host whose QEMU runs there
    local n=0 id
    for id in $(q "SELECT id FROM vms WHERE host_id = $(hid "$1") AND state = 'ready'
                   AND desired_power = 'running'"); do
        [[ -n $(mh_qemu_of "$1" "$id") ]] && n=$((n + 1))
    done
    echo "$n"
}

until_sql 240 "SELECT count(*) = 3 FROM vms WHERE state = 'ready'" &&
    ok "the pool has its 3 spares" || { bad "the pool did not reach 3 spares"; exit 1; }
read -r sid vm vmname < <("$assign" "$dbci" assign alice office)
# V: the host of alice's desktop (the first clone went to the host that
# registered first), S: the other one.
V=$(q "SELECT substr(h.name, 3) FROM vms v JOIN hosts h ON h.id = v.host_id WHERE v.id = $vm")
S=$((3 - V))
hV=$(hid "$V")
hS=$(hid "$S")
echo "alice has $vmname on mh$V (V); the other host is mh$S (S)"
until_sql 240 "SELECT count(*) = 3 FROM vms WHERE state = 'ready'" &&
    ok "a replacement spare is ready" || { bad "no replacement for alice's desktop"; exit 1; }
nV=$(q "SELECT count(*) FROM vms WHERE host_id = $hV")
nS=$(q "SELECT count(*) FROM vms WHERE host_id = $hS")
((nV >= 2 && nS >= 1)) && ok "VMs spread: $nV on mh$V (one alice's), $nS on mh$S" ||
    bad "VMs not spread: $nV on mh$V, $nS on mh$S"
old_ids=$(q "SELECT string_agg(id::text, ' ' ORDER BY id) FROM vms WHERE host_id = $hV")
old_names=$(q "SELECT string_agg(name, ' ' ORDER BY id) FROM vms WHERE host_id = $hV")
max_id=$(q "SELECT max(id) FROM vms")
declare -A oldpid
for id in $old_ids; do
    n=0
    while [[ -z $(mh_qemu_of "$V" "$id") ]] && ((n < 100)); do sleep 0.1; n=$((n + 1)); done
    oldpid[$id]=$(mh_qemu_of "$V" "$id")
    [[ -n ${oldpid[$id]} ]] || bad "vm $id has no QEMU on mh$V"
done

# ---- 1. V merely late: hostd killed -9, started again within the deadline
rows_before=$(q "SELECT count(*) FROM vms WHERE state <> 'deleting'")
mh_kill_hostd "$V"
t0=$SECONDS
until_sql 30 "SELECT count(*) = $nV FROM vms WHERE host_id = $hV AND state = 'lost'" &&
    ok "mh$V's VMs are lost after host_stale ($((SECONDS - t0)) s)" || bad "mh$V's VMs not marked lost"
sleep $((pass_s + 1)) # a pass that would rebuild them has run
truth "nothing retired or rebuilt while mh$V is only late" "SELECT count(*) = $rows_before
    FROM vms WHERE state <> 'deleting'"
truth "the pool says what it waits for" "SELECT status = 'degraded'
    AND status_detail LIKE '%on a silent host%' FROM pools WHERE name = 'office'"
check "pool show while mh$V is silent" 0 a pool show office
expect "pool show counts the held spare" "^held: +$((nV - 1)) spare\(s\) on a silent host"
# alice logs in meanwhile: told to retry, her session and desktop kept.
if "$assign" "$dbci" assign alice office >"$tmp/out" 2>&1; then
    bad "alice was given a desktop while hers is on the silent mh$V: $(cat "$tmp/out")"
else
    expect "alice is told her desktop's host is unreachable" 'No route to host'
fi
truth "alice's session is kept on her desktop" "SELECT state = 'assigned' AND vm_id = $vm
    FROM desktop_sessions WHERE id = $sid"
mh_start_hostd "$V"
echo "mh$V's hostd started again $((SECONDS - t0)) s after the kill"
until_sql 60 "SELECT count(*) = 0 FROM vms WHERE state = 'lost'" &&
    ok "mh$V's VMs are found again ($((SECONDS - t0)) s after the kill)" || bad "mh$V's VMs stay lost"
truth "alice's desktop is hers again, her session live" "SELECT v.state = 'assigned'
    AND s.state = 'assigned' FROM vms v JOIN desktop_sessions s ON s.vm_id = v.id WHERE v.id = $vm"
read -r sid_again vm_again _ < <("$assign" "$dbci" assign alice office)
[[ $sid_again == "$sid" && $vm_again == "$vm" ]] && ok "alice logs in again to the same desktop" ||
    bad "alice's log-in after the return gave session $sid_again vm $vm_again"
truth "mh$V's spares are ready again" "SELECT bool_and(state = 'ready') FROM vms
    WHERE host_id = $hV AND id <> $vm"
same=1
for id in $old_ids; do [[ $(mh_qemu_of "$V" "$id") == "${oldpid[$id]}" ]] || same=0; done
((same)) && ok "mh$V kept the same QEMUs (none restarted)" || bad "a QEMU of mh$V changed"
truth "mh$V was not fenced" "SELECT state = 'online' AND fenced_at IS NULL FROM hosts WHERE id = $hV"
truth "no VM was retired or added" "SELECT count(*) = $rows_before AND max(id) = $max_id FROM vms"
until_sql 30 "SELECT status = 'ok' FROM pools WHERE name = 'office'" && ok "the pool is ok again" ||
    bad "pool status: $(q "SELECT status || ': ' || status_detail FROM pools WHERE name = 'office'")"

# ---- 2. V's link cut: fenced, its pool VMs rebuilt on S
mh_sampler_start 0.2 2 # every VM id on either host
watchers=()
atr_on_exit 'for w in "${watchers[@]}"; do kill "$w" 2>/dev/null || true; done'
for id in $old_ids; do
    (
        p=${oldpid[$id]}
        while [[ -r /proc/$p/stat ]] &&
            [[ ! $(sed -n 's/^[0-9]* (.*) \([A-Z]\) .*/\1/p' "/proc/$p/stat" 2>/dev/null) =~ ^[ZX]?$ ]]; do
            sleep 0.05
        done
        mh_uptime_s >"$tmp/dead.$id"
    ) &
    watchers+=($!)
done

t0=$(mh_uptime_s)
s0=$SECONDS
ip -n "$(mh_sw)" link set "h$V" down
echo "cut mh$V's link at +0 s"
# Half-way (its VMs lost, not fenced yet) the acting poold is killed -9:
# the standby continues from the rows alone.
until_sql 30 "SELECT count(*) = $nV FROM vms WHERE host_id = $hV AND state = 'lost'" ||
    bad "mh$V's VMs not marked lost after the cut"
[[ $(q "SELECT state FROM hosts WHERE id = $hV") != fenced ]] ||
    bad "mh$V was fenced before the acting poold could be killed"
kill -KILL "$poold_pid"
wait "$poold_pid" 2>/dev/null || true
echo "killed the acting poold at +$((SECONDS - s0)) s"
wait_for "$tmp/poold2.log" 'msg="acting as pool manager"' 30 &&
    ok "the standby poold acts after the leader's kill -9" || bad "the standby poold does not take over"
deadline=$((SECONDS + 180))
while (($(ready_on "$S") < 3)) && ((SECONDS < deadline)); do sleep 0.2; done
t_back=$((SECONDS - s0))
if (($(ready_on "$S") >= 3)); then
    ok "the pool is back to 3 spares, all on mh$S, $t_back s after the cut"
else
    bad "the pool did not get its 3 spares back on mh$S ($(ready_on "$S") ready)"
fi
echo "POOL REBUILD: mh$V cut at +0 s; fenced after $(q "SELECT round(extract(epoch from fenced_at - heartbeat_at)::numeric, 1)
    FROM hosts WHERE id = $hV") s of silence; 3 spares ready on mh$S at +$t_back s (fence deadline $deadline_s s + margin $margin_s s)"
truth "mh$V is fenced" "SELECT state = 'fenced' FROM hosts WHERE id = $hV"
truth "every pool VM of mh$V retired" "SELECT bool_and(desired_power = 'deleted' AND state = 'deleting')
    FROM vms WHERE host_id = $hV"
truth "retirements audited as pool.vm_fenced, not as failures" "SELECT
    (SELECT count(*) FROM audit_log WHERE action = 'pool.vm_fenced') = $nV
    AND (SELECT count(*) FROM audit_log WHERE action = 'pool.vm_failed') = 0"
truth "alice's desktop retired as 'assigned'" "SELECT count(*) = 1 FROM audit_log
    WHERE action = 'pool.vm_fenced' AND detail->>'vm_id' = '$vm' AND detail->>'was' = 'assigned'
    AND detail->>'session_id' = '$sid'"
truth "alice's session ended: host fenced" "SELECT state = 'ended' AND end_reason = 'host fenced'
    FROM desktop_sessions WHERE id = $sid"
truth "the portal shows alice no live session" "SELECT count(*) = 0 FROM desktop_sessions s
    JOIN users u ON u.id = s.user_id WHERE u.username = 'alice' AND s.state <> 'ended'"
truth "the pool is not failing" "SELECT failing_since IS NULL AND status <> 'failing' FROM pools
    WHERE name = 'office'"
truth "replacements written after the fence" "SELECT bool_and(v.created_at >= h.fenced_at)
    FROM vms v, hosts h WHERE h.id = $hV AND v.id > $max_id"
truth "replacements have new names" "SELECT count(*) = 0 FROM vms WHERE id > $max_id
    AND name = ANY(string_to_array('$old_names', ' '))"

# Every old QEMU of V seen dead before the first replacement QEMU started.
last_dead=0
for id in $old_ids; do
    n=0
    while [[ ! -s $tmp/dead.$id ]] && ((n < 100)); do sleep 0.1; n=$((n + 1)); done
    d=$(cat "$tmp/dead.$id" 2>/dev/null || echo "")
    [[ -n $d ]] || { bad "the old QEMU of vm $id was never seen dead"; d=999999999; }
    last_dead=$(awk -v a="$last_dead" -v b="$d" 'BEGIN { print (b > a) ? b : a }')
done
first_new=""
for id in $(q "SELECT id FROM vms WHERE id > $max_id AND host_id = $hS"); do
    p=$(mh_qemu_of "$S" "$id")
    [[ -n $p ]] || continue
    s=$(mh_started_at "$p") || continue
    if [[ -z $first_new ]] || awk -v a="$s" -v b="$first_new" 'BEGIN { exit !(a < b) }'; then first_new=$s; fi
done
echo "old QEMUs on mh$V all dead at +$(awk -v a="$last_dead" -v b="$t0" 'BEGIN { printf "%.1f", a - b }') s;" \
    "first replacement QEMU started at +$(awk -v a="${first_new:-0}" -v b="$t0" 'BEGIN { printf "%.1f", a - b }') s"
if [[ -n $first_new ]] && awk -v d="$last_dead" -v s="$first_new" 'BEGIN { exit !(d < s) }'; then
    ok "mh$V's QEMUs were all dead before the first replacement started"
else
    bad "a replacement started before mh$V's QEMUs were seen dead (dead $last_dead, first new '$first_new')"
fi

# alice logs in again: a new desktop on S, not the dead one.
read -r sid2 vm2 vmname2 < <("$assign" "$dbci" assign alice office)
[[ -n $vm2 && $vm2 != "$vm" && $(q "SELECT host_id FROM vms WHERE id = $vm2") == "$hS" ]] &&
    ok "alice gets a new desktop, $vmname2 on mh$S" || bad "alice's new desktop: '$vmname2' ($vm2)"
until_sql 180 "SELECT count(*) = 3 FROM vms WHERE host_id = $hS AND state = 'ready'" &&
    ok "its replacement spare is ready on mh$S too" || bad "no replacement for alice's new desktop"

# ---- 3. V comes back: old rows and overlays cleaned, nothing restarted
log_at=$(wc -l <"$(mh_hostd_log "$V")")
ip -n "$(mh_sw)" link set "h$V" up
until_sql 90 "SELECT state = 'online' AND heartbeat_at > now() - interval '5 seconds'
    FROM hosts WHERE id = $hV" && ok "mh$V is online again" || bad "mh$V did not come back"
until_sql 60 "SELECT count(*) = 0 FROM vms WHERE host_id = $hV" &&
    ok "mh$V's hostd deleted its retired rows" || bad "retired rows of mh$V are left"
left=""
for name in $old_names; do
    [[ -e $tmp/pdata/overlays/$name.qcow2 ]] && left+=" $name"
done
[[ -z $left ]] && ok "their overlays are gone" || bad "overlays left:$left"
left=""
for id in $old_ids; do [[ -e $tmp/h$V/run/vms/$id ]] && left+=" $id"; done
[[ -z $left ]] && ok "their runtime dirs on mh$V are gone" || bad "runtime dirs left on mh$V:$left"
sleep $((2 * pass_s))
[[ -z $(mh_qemu_pids "$V") ]] && ok "no QEMU runs on mh$V" || bad "QEMUs on mh$V: $(mh_qemu_pids "$V")"
tail -n +"$((log_at + 1))" "$(mh_hostd_log "$V")" >"$tmp/hV-back.log"
if grep -E 'msg="vm (starting|running|re-attached|found again)' "$tmp/hV-back.log" >&2; then
    bad "mh$V's hostd started or adopted a VM after coming back"
else
    ok "mh$V's hostd started or adopted no VM after coming back"
fi
deleted=$(grep -cE 'msg="vm deleted"' "$tmp/hV-back.log" || true)
((deleted == nV)) && ok "mh$V's hostd logged the deletion of its $nV retired VMs" ||
    bad "mh$V's hostd logged $deleted deletions, not $nV"
truth "the pool holds 3 spares and alice's desktop, all on mh$S" "SELECT count(*) = 4
    AND bool_and(host_id = $hS) FROM vms WHERE state <> 'deleting'"

mh_sampler_check
atr_summary
