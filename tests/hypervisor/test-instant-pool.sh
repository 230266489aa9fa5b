#!/bin/bash
# A pool with clone = instant, end to end: real PostgreSQL, atrium-hostd with
# TCG guests, atrium-poold, atriumctl.
#   - pool create --clone instant: hostd builds one template, then every VM is
#     an instant clone: no boot on its serial port, its own MAC and hostname
#   - logoff refreshes a VM into a new clone of the same template
#   - a new golden version gets a new template; a VM in use keeps the old one
#     (and the old template stays) until logoff, then the old template goes
#   - bad values for the option are refused with a clear message
#   - at the end: no VM, QEMU, template, overlay or runtime file left
set -euo pipefail
hostd=${1:?usage: test-instant-pool.sh HOSTD POOLD ATRIUMCTL POOL_ASSIGN GUEST_DIR}
poold=$2 ctl=$3 assign=$4 guest=$5
. "$(dirname "$0")/../harness/lib.sh"
atr_init instant-pool
# QEMUs (clones under run/vms, template builders' under run/tpl/vms) are
# killed on exit by lib.sh
. "$(dirname "$0")/../pool/lib.sh"
diag() {
    echo "---- vms"; q "SELECT id, name, state, desired_power, actual_power, image_version_id, last_error FROM vms ORDER BY id" || true
    echo "---- hostd"; tail -25 "$tmp/hostd.log" || true
    echo "---- poold"; tail -10 "$tmp/poold.log" || true
}

pool_host_init "$ctl" "$guest" instant "[poold]" "provision_timeout = 400"

# --- the option: refused values, then the pool
check "--clone fork is refused" 1 "$ctl" --config "$conf" pool create bad --image guest --clone fork
expect "the refusal names the values" "clone must be linked or instant"
"$ctl" --config "$conf" pool create office --image guest --clone instant --min 2 --spare 2 --max 3 \
    --memory 256 --vcpus 1 >/dev/null
truth "the pool row says instant" "SELECT clone_mode = 'instant' FROM pools WHERE name = 'office'"
check "pool show --json has clone" 0 "$ctl" --config "$conf" --json pool show office
expect "clone: instant in the JSON" '"clone": *"instant"'

pool_host_start "$hostd" "$poold"

# identified VM: ready, and its serial port has its own identity line
identified() { # VM_ID
    local name
    name=$(q "SELECT name FROM vms WHERE id = $1")
    serial "$1" | grep -Eq "^ATRIUM-IDENTITY mac=52:54:00:[0-9a-f:]{8} hostname=${name//[^A-Za-z0-9]/-} seeded=64"
}
ready_cloned() { # N: N ready VMs of office that are identified instant clones
    local n=0 id
    for id in $(q "SELECT id FROM vms WHERE state = 'ready' AND pool_id = (SELECT id FROM pools WHERE name = 'office')"); do
        identified "$id" && n=$((n + 1))
    done
    [[ $n -ge $1 ]]
}
t0=$SECONDS
deadline=$((SECONDS + 420))
until ready_cloned 2 || ((SECONDS > deadline)); do sleep 1; done
ready_cloned 2 && ok "office reaches 2 ready instant clones ($((SECONDS - t0)) s with the template build)" ||
    { bad "office reaches 2 ready instant clones"; diag; exit 1; }
grep -q 'msg="instant template ready"' "$tmp/hostd.log" &&
    ok "hostd built the template: $(grep -o 'template=[^ ]* took_ms=[0-9]*' "$tmp/hostd.log" | head -1)" ||
    bad "template built"
[[ $(grep -c 'msg="instant template building"' "$tmp/hostd.log") == 1 ]] &&
    ok "one template for both VMs" || bad "templates built: $(grep -c 'template building' "$tmp/hostd.log")"
mapfile -t ids < <(q "SELECT id FROM vms WHERE pool_id = (SELECT id FROM pools WHERE name = 'office') AND state = 'ready' ORDER BY id LIMIT 2")
a=${ids[0]} b=${ids[1]}
la=$(serial "$a" | grep '^ATRIUM-IDENTITY' | tail -1) lb=$(serial "$b" | grep '^ATRIUM-IDENTITY' | tail -1)
echo "    VM $a: $la"
echo "    VM $b: $lb"
ma=$(sed 's/.*mac=\([^ ]*\).*/\1/' <<<"$la") mb=$(sed 's/.*mac=\([^ ]*\).*/\1/' <<<"$lb")
ha=$(sed 's/.*hostname=\([^ ]*\).*/\1/' <<<"$la") hb=$(sed 's/.*hostname=\([^ ]*\).*/\1/' <<<"$lb")
[[ $ma != "$mb" && $ha != "$hb" ]] && ok "the two clones differ in MAC ($ma, $mb) and hostname ($ha, $hb)" ||
    bad "clones collide: $ma/$mb $ha/$hb"
! serial "$a" | grep -q ATRIUM-BOOT-OK && ! serial "$b" | grep -q ATRIUM-BOOT-OK &&
    ok "neither clone booted (no ATRIUM-BOOT-OK on its serial port)" || bad "a clone booted"
grep -o 'msg="instant clone running" vm=[0-9]* [^ ]* [^ ]* start_to_running_ms=[0-9]*' "$tmp/hostd.log" |
    sed 's/^/    /' || true
v1dir=$(ls -d "$tmp"/data/templates/p*-v*-m256-c1 2>/dev/null | head -1)
[[ -n $v1dir && -f $v1dir/ready && -f $v1dir/state && -f $v1dir/ram ]] &&
    ok "template on disk: $(basename "$v1dir") (state $(stat -c %s "$v1dir/state") bytes)" ||
    bad "template files"

# --- logoff: the VM comes back as a new clone of the same template
read -r sid vm vmname < <("$assign" "$dbci" assign alice office)
[[ -n $vm ]] && ok "alice got $vmname" || bad "alice got a desktop"
"$assign" "$dbci" logoff "$sid"
until_sql 120 "SELECT count(*) = 1 FROM tasks WHERE kind = 'vm.refresh' AND vm_id = $vm AND state = 'succeeded'" &&
    ok "logoff refreshed the VM (task done)" || { bad "refresh task"; diag; }
until_sql 120 "SELECT state = 'ready' FROM vms WHERE id = $vm" &&
    deadline=$((SECONDS + 60)) && until identified "$vm" || ((SECONDS > deadline)); do sleep 0.5; done
identified "$vm" && ! serial "$vm" | grep -q ATRIUM-BOOT-OK &&
    ok "the refreshed VM is an instant clone again" || { bad "refreshed VM"; serial "$vm" | tail -3; diag; }

# --- a new golden version: new template; the VM in use keeps the old one
read -r csid cvm _ < <("$assign" "$dbci" assign carol office)
im
v2=$(q "SELECT max(v.id) FROM image_versions v JOIN images i ON i.id = v.image_id WHERE i.name = 'guest'")
"$ctl" --config "$conf" pool set-image office guest:2 >/dev/null
v2ready() {
    local n=0 id
    for id in $(q "SELECT id FROM vms WHERE state = 'ready' AND image_version_id = $v2"); do
        identified "$id" && n=$((n + 1))
    done
    [[ $n -ge 2 ]]
}
deadline=$((SECONDS + 420))
until v2ready || ((SECONDS > deadline)); do sleep 1; done
v2ready && ok "spares moved to version 2 as instant clones of a second template" || { bad "spares on v2"; diag; }
[[ $(q "SELECT state = 'assigned' AND image_version_id <> $v2 FROM vms WHERE id = $cvm") == t ]] &&
    kill -0 "$(cat "$tmp/run/vms/$cvm/qemu.pid")" 2>/dev/null && [[ -f $v1dir/ready ]] &&
    ok "carol's clone of the old template keeps running, and the old template stays" ||
    bad "carol's VM and the old template"
"$assign" "$dbci" logoff "$csid"
until_sql 120 "SELECT NOT EXISTS (SELECT 1 FROM vms WHERE id = $cvm)" &&
    ok "carol's old VM is gone after her logoff" || { bad "old VM removed"; diag; }
deadline=$((SECONDS + 30))
until [[ ! -e $v1dir ]] || ((SECONDS > deadline)); do sleep 0.5; done
[[ ! -e $v1dir ]] && ok "the old template was removed once no VM used it" || bad "old template left"

# --- tear down through the product: nothing left behind
"$ctl" --config "$conf" pool resize office --min 0 --spare 0 --max 0 >/dev/null
q "UPDATE vms SET desired_power = 'deleted', state = 'deleting', assigned_user_id = NULL" >/dev/null
until_sql 120 "SELECT count(*) = 0 FROM vms" && ok "every VM deleted" || { bad "VMs deleted"; diag; }
v2dir=$(ls -d "$tmp"/data/templates/p*-v$v2-m256-c1 2>/dev/null | head -1)
sleep 1
[[ -n $v2dir && -f $v2dir/ready ]] && ok "the empty pool keeps its current template for its next VM" ||
    bad "current template kept"
# The pool goes; the next reconcile pass (here: at hostd's restart) removes its template.
"$ctl" --config "$conf" pool delete office >/dev/null
kill -TERM "${pids[0]}"
wait "${pids[0]}" || true
"$hostd" --config "$conf" >>"$tmp/hostd.log" 2>&1 &
pids[0]=$!
deadline=$((SECONDS + 30))
until [[ -z $(ls "$tmp/data/templates" 2>/dev/null) ]] || ((SECONDS > deadline)); do sleep 0.5; done
[[ -z $(ls "$tmp/data/templates" 2>/dev/null) ]] && ok "the deleted pool's template is removed" ||
    bad "template of a deleted pool left"
left=$(find "$tmp/run/vms" "$tmp/run/tpl/vms" "$tmp/data/overlays" "$tmp/data/templates" -mindepth 1 2>/dev/null | wc -l)
[[ $left -eq 0 ]] && ok "no runtime dir, overlay or template left" ||
    { bad "$left files left"; find "$tmp/run/vms" "$tmp/run/tpl/vms" "$tmp/data/overlays" "$tmp/data/templates" -mindepth 1; }
grep -E 'level=(error|warn)' "$tmp/hostd.log" | grep -v 'not enforced' | sed 's/^/    hostd: /' | head -10 || true

atr_summary
