#!/bin/bash
# Pools end to end: real PostgreSQL, atrium-hostd with TCG guests, atrium-poold.
#   - a pool (min 2, spare 2) reaches 2 ready VMs whose guests really booted;
#     assigning one starts a replacement that becomes ready
#   - a marker written in a floating VM during a session is gone after logoff
#     and refresh; in a dedicated pool it is still there at reconnect
#   - push image: the spares move to the new version, the VM in use keeps the
#     old one until logoff, then moves
#   - at the end every VM is deleted: no QEMU, socket or overlay is left
set -euo pipefail
hostd=${1:?usage: test-pool-e2e.sh HOSTD POOLD ATRIUMCTL VNC_TYPE POOL_ASSIGN GUEST_DIR}
poold=$2 ctl=$3 vnctype=$4 assign=$5 guest=$6
. "$(dirname "$0")/../harness/lib.sh"
atr_init pool-e2e
. "$(dirname "$0")/lib.sh"
# until_serial SECONDS VM_ID REGEX
until_serial() {
    local deadline=$((SECONDS + $1))
    while ((SECONDS < deadline)); do
        serial "$2" | grep -Eq -- "$3" && return 0
        sleep 0.5
    done
    return 1
}
diag() {
    echo "---- vms"; q "SELECT id, name, state, desired_power, actual_power, last_error FROM vms ORDER BY id" || true
    echo "---- hostd"; tail -20 "$tmp/hostd.log" || true
    echo "---- poold"; tail -20 "$tmp/poold.log" || true
}

pool_host_init "$ctl" "$guest" e2e "[poold]" "provision_timeout = 240"
"$ctl" --config "$conf" pool create office --image guest --min 2 --spare 2 --max 4 \
    --memory 256 --vcpus 1 >/dev/null
"$ctl" --config "$conf" pool create devs --image guest --assignment dedicated --min 0 --spare 1 \
    --max 2 --memory 256 --vcpus 1 >/dev/null

pool_host_start "$hostd" "$poold"

ready_booted() { # POOL N: N ready VMs whose guests printed the boot marker
    local n=0 id
    for id in $(q "SELECT v.id FROM vms v JOIN pools p ON p.id = v.pool_id
                   WHERE p.name = '$1' AND v.state = 'ready'"); do
        serial "$id" | grep -q ATRIUM-BOOT-OK && n=$((n + 1))
    done
    [[ $n -ge $2 ]]
}
deadline=$((SECONDS + 300))
until ready_booted office 2 && ready_booted devs 1 || ((SECONDS > deadline)); do sleep 1; done
ready_booted office 2 && ok "office reaches 2 ready VMs, guests booted (${SECONDS}s)" ||
    { bad "office reaches 2 ready VMs"; diag; exit 1; }

# --- floating: a session's marker does not survive logoff
read -r sid vm vmname < <("$assign" "$dbci" assign alice office)
[[ -n $vm ]] && ok "alice got $vmname" || bad "alice got a desktop"
until_sql 120 "SELECT count(*) = 3 FROM vms v JOIN pools p ON p.id = v.pool_id
               WHERE p.name = 'office' AND v.state <> 'deleting'" &&
    ok "a replacement spare was started" || bad "replacement started"
t0=$SECONDS
until_sql 240 "SELECT count(*) = 2 FROM vms v JOIN pools p ON p.id = v.pool_id
               WHERE p.name = 'office' AND v.state = 'ready'" &&
    ok "replacement became ready in $((SECONDS - t0)) s" || { bad "replacement ready"; diag; }
until_sql 30 "SELECT count(*) = 4 AND bool_and(state = 'succeeded' AND progress = 100)
              FROM tasks WHERE kind = 'vm.provision'" &&
    ok "each of the 4 clones was a vm.provision task that succeeded at 100 %" ||
    { bad "provision tasks"; q "SELECT id, vm_id, state, progress, error FROM tasks WHERE kind = 'vm.provision'"; }
wait_for "$tmp/poold.log" 'msg="spare ready" vm=office-3 state=ready after_ms=[0-9]+' 30 &&
    ok "poold logs the replacement's time to ready: $(grep -o 'vm=office-3 state=ready after_ms=[0-9]*' "$tmp/poold.log")" ||
    bad "time to ready logged"
# capacity: a pool that cannot fit on the host says so and creates nothing
"$ctl" --config "$conf" pool create huge --image guest --min 1 --spare 1 --max 2 --memory 4000000 >/dev/null
until_sql 30 "SELECT status = 'no_capacity' AND status_detail LIKE '%4000000 MiB%' FROM pools WHERE name = 'huge'" &&
    [[ $(q "SELECT count(*) FROM vms v JOIN pools p ON p.id = v.pool_id WHERE p.name = 'huge'") == 0 ]] &&
    ok "a pool too big for the host stops with: $(q "SELECT status_detail FROM pools WHERE name = 'huge'")" ||
    bad "capacity status"
"$vnctype" "$tmp/run/vms/$vm/vnc.sock" "mark alice" && until_serial 30 "$vm" 'ATRIUM-MARK-WRITTEN: alice' &&
    ok "alice wrote a marker in her session" || { bad "marker written"; serial "$vm" | tail -5; }
"$assign" "$dbci" logoff "$sid"
# refreshing passes in well under a second: look for its task, not the state
until_sql 120 "SELECT count(*) = 1 FROM tasks WHERE kind = 'vm.refresh' AND vm_id = $vm
               AND state = 'succeeded'" && ok "logoff sends the VM to refresh (task done)" ||
    { bad "refresh task"; diag; }
until_sql 240 "SELECT state = 'ready' FROM vms WHERE id = $vm" && until_serial 120 "$vm" 'ATRIUM-BOOT-OK' &&
    ok "refreshed VM is ready again" || { bad "refreshed VM ready"; diag; }
until_serial 60 "$vm" 'ATRIUM-MARK: ' && serial "$vm" | grep -q '^ATRIUM-MARK: NONE' &&
    ! serial "$vm" | grep -q 'ATRIUM-MARK: alice' &&
    ok "nothing alice wrote survives into the next session" || { bad "marker gone after refresh"; serial "$vm" | tail -5; }

# --- dedicated: the person's VM keeps what they wrote
read -r dsid dvm dname < <("$assign" "$dbci" assign bob devs)
"$vnctype" "$tmp/run/vms/$dvm/vnc.sock" "mark bob" && until_serial 30 "$dvm" 'ATRIUM-MARK-WRITTEN: bob' &&
    ok "bob wrote a marker in his dedicated VM $dname" || bad "dedicated marker written"
"$assign" "$dbci" logoff "$dsid"
sleep 3 # a pass of the pool manager happens every 2 s: it must leave bob's VM alone
read -r dsid2 dvm2 _ < <("$assign" "$dbci" assign bob devs)
[[ $dvm2 == "$dvm" ]] && ok "bob gets his own VM back" || bad "bob's VM: $dvm2 != $dvm"
"$vnctype" "$tmp/run/vms/$dvm/vnc.sock" "show" && until_serial 30 "$dvm" '^ATRIUM-MARK: bob' &&
    ok "bob's marker is still there at reconnect" || { bad "dedicated marker kept"; serial "$dvm" | tail -5; }

# --- push image: spares move now, the VM in use at logoff
read -r csid cvm _ < <("$assign" "$dbci" assign carol office)
im
v2=$(q "SELECT max(v.id) FROM image_versions v JOIN images i ON i.id = v.image_id WHERE i.name = 'guest'")
"$ctl" --config "$conf" pool set-image office guest:2 >/dev/null
until_sql 300 "SELECT count(*) = 2 FROM vms v JOIN pools p ON p.id = v.pool_id WHERE p.name = 'office'
               AND v.state = 'ready' AND v.image_version_id = $v2" &&
    ok "spares moved to version 2" || { bad "spares on v2"; diag; }
[[ $(q "SELECT image_version_id <> $v2 AND state = 'assigned' FROM vms WHERE id = $cvm") == t ]] &&
    ok "carol's VM keeps version 1 while she works" || bad "carol's VM untouched"
"$assign" "$dbci" logoff "$csid"
until_sql 120 "SELECT NOT EXISTS (SELECT 1 FROM vms WHERE id = $cvm)" &&
    ok "carol's old VM is gone after her logoff" || { bad "old VM removed"; diag; }
until_sql 300 "SELECT bool_and(v.image_version_id = $v2) FROM vms v JOIN pools p ON p.id = v.pool_id
               WHERE p.name = 'office' AND v.state <> 'deleting'" && ok "office runs only version 2" ||
    bad "office on v2"

# --- tear down through the product: nothing left behind
"$ctl" --config "$conf" pool resize office --min 0 --spare 0 --max 0 >/dev/null
"$ctl" --config "$conf" pool resize devs --min 0 --spare 0 --max 0 >/dev/null
q "UPDATE vms SET desired_power = 'deleted', state = 'deleting', assigned_user_id = NULL" >/dev/null
until_sql 120 "SELECT count(*) = 0 FROM vms" && ok "every VM deleted" || { bad "VMs deleted"; diag; }
sleep 1
if pgrep -f "$tmp/run/" >/dev/null; then bad "QEMU left running"; else ok "no QEMU left"; fi
left=$(find "$tmp/run/vms" "$tmp/data/overlays" -mindepth 1 2>/dev/null | wc -l)
[[ $left -eq 0 ]] && ok "no socket, runtime dir or overlay left" || { bad "$left files left"; find "$tmp/run/vms" "$tmp/data/overlays" -mindepth 1; }

atr_summary
