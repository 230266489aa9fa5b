#!/bin/bash
# A console that follows its VM across a live migration, on two test hosts
# (network namespaces, each with its own hostd and displayd;
# tests/harness/hosts.sh).
#
# A real VNC viewer (tests/multihost/vnc-watch, libvncclient) connects to the
# displayd of mh1 with a one-time VNC password and stays connected while the
# VM moves mh1 -> mh2 (atriumctl) -> mh1 (the broker's POST
# /api/v1/vms/{id}/migrate, its task followed through GET /tasks/{id}).  It must keep receiving framebuffer updates and
# its keys must reach the guest on whichever host it runs (the guest echoes
# each typed line on its serial port, which each host's QEMU writes to its
# own log).  The longest gap between two updates around each migration is
# printed as the pause the viewer saw.  While the VM is on mh2, mh1's
# displayd cannot open its console itself (mh1's runtime dir has no socket of
# it; the relay is the only way): the test checks that mh2's displayd served
# the relayed stream.  Also: the relay refuses a forged ticket, a used one,
# and a request that is not one, and audits the refusals.
set -euo pipefail
hostd=${1:?usage: test-console.sh HOSTD DISPLAYD ATRIUMCTL TICKET-TOOL VNC-WATCH BROKER BRK-SEED}
displayd=${2:?}
ctl=${3:?}
ticket_tool=${4:?}
watch=${5:?}
broker=${6:?}
seed=${7:?}
guest=${ATRIUM_GUEST_DIR:?the test guest (fixture guest)}
here=$(dirname "$0")
. "$here/../harness/lib.sh"
. "$here/../harness/hosts.sh"
atr_init console

mh_console_init "$ctl" "$hostd" "$displayd"

truth "both displayd announced their relay" "SELECT count(*) = 2 FROM hosts
    WHERE name IN ('mh1', 'mh2') AND display_relay LIKE '%:5898' AND length(display_relay_cert) = 64"

mkdir -p "$tmp/shared"
qemu-img create -q -f qcow2 -F qcow2 -b "$guest/disk.qcow2" "$tmp/shared/con-1.qcow2"
vm=$(q "INSERT INTO vms (name, host_id, state, desired_power, vcpus, memory_mb, disk_path, boot,
          boot_kernel, boot_initrd, boot_cmdline, nic_mode)
        VALUES ('con-1', (SELECT id FROM hosts WHERE name = 'mh1'), 'provisioning', 'running',
          1, 256, '$tmp/shared/con-1.qcow2', 'kernel', '$guest/vmlinuz', '$guest/initrd.img',
          '$(cat "$guest/cmdline") atrium.count', 'none')
        RETURNING id" | head -n 1)
serial() { echo "$tmp/h$1/run/vms/$vm/serial.log"; }
if wait_for "$(serial 1)" '^ATRIUM-COUNT: 20' 240; then ok "guest runs on mh1"; else
    bad "guest did not start on mh1"; exit 1; fi

# ---- the viewer: through mh1's displayd, from mh1's namespace
pw=$("$ticket_tool" issue-vnc "$dbci" "$vm" 0 10)
mkfifo "$tmp/watch.in"
LSAN_OPTIONS=suppressions=$here/../display/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS} \
    ip netns exec "$(mh_ns 1)" "$watch" "$(mh_addr 1)" 5900 "$pw" "$tmp/updates" \
    <"$tmp/watch.in" >"$tmp/watch.out" 2>&1 &
watch_pid=$!
exec {cmd}>"$tmp/watch.in"
atr_on_exit "kill $watch_pid 2>/dev/null || true; wait $watch_pid 2>/dev/null || true"
if wait_for "$tmp/watch.out" '^ready' 90; then ok "viewer sees the guest through mh1's displayd"; else
    bad "viewer never saw the guest"; cat "$tmp/watch.out"; exit 1; fi

n_typed=0
typed_on() { # HOST WORD: the viewer types WORD, the guest on HOST echoes it
    n_typed=$((n_typed + 1))
    echo "type $2" >&$cmd
    if wait_for "$(serial "$1")" "^ATRIUM-TYPED: $2" 60; then
        ok "keys typed in the viewer reach the guest on mh$1 ($2)"
    else
        bad "keys typed in the viewer did not reach the guest on mh$1 ($2)"
    fi
}
typed_on 1 beforemove

ms() { date +%s%3N; }
# updates after MS: how many complete framebuffer updates arrived since

# The broker, in the machine's own namespace, on the same database.
printf '[db]\nurl = %s\n[broker]\nlisten = 127.0.0.1\ntls = false\nthreads = 2\n' "$dbci" >"$tmp/broker.conf"
"$seed" user "$dbci" root 'root pw' admin >/dev/null
mkfifo "$tmp/broker.fifo"
"$broker" --config "$tmp/broker.conf" --port 0 2>"$tmp/broker.fifo" &
broker_pid=$!
atr_on_exit "kill $broker_pid 2>/dev/null || true; wait $broker_pid 2>/dev/null || true"
exec {bfd}<"$tmp/broker.fifo"
port=
while IFS= read -r -t 60 line <&"$bfd"; do
    printf '%s\n' "$line" >>"$tmp/broker.log"
    [[ $line == *'msg="broker listening"'* && $line =~ port=([0-9]+) ]] && port=${BASH_REMATCH[1]}
    [[ $line == *'msg="broker ready"'* ]] && break
done
cat <&"$bfd" >>"$tmp/broker.log" &
atr_on_exit "kill $! 2>/dev/null || true"
exec {bfd}<&-
[[ -n $port ]] || { bad "broker did not start"; cat "$tmp/broker.log"; exit 1; }
base=http://127.0.0.1:$port/api/v1
curl -sS --max-time 20 -c "$tmp/jar" -o "$tmp/login.json" -H 'Content-Type: application/json' \
    --data-binary '{"username":"root","password":"root pw"}' "$base/login"
csrf=$(python3 -c "import json; print(json.load(open('$tmp/login.json'))['csrf_token'])")
api() { # METHOD PATH [JSON]: body in $tmp/api.json, prints the status
    curl -sS --max-time 30 -b "$tmp/jar" -H "X-CSRF-Token: $csrf" -H 'Content-Type: application/json' \
        -X "$1" ${3:+--data-binary "$3"} -o "$tmp/api.json" -w '%{http_code}' "$base$2"
}
jq_api() { python3 -c "import json; j=json.load(open('$tmp/api.json')); print($1)"; }
# migrate through the API: queue, then follow the task until it ends (bounded)
api_migrate() { # TO
    local to_id status progress seen="" deadline=$((SECONDS + 400))
    to_id=$(q "SELECT id FROM hosts WHERE name = 'mh$1'")
    status=$(api POST "/vms/$vm/migrate" "{\"to_host\": $to_id}")
    [[ $status == 202 ]] || { cat "$tmp/api.json"; return 1; }
    local task
    task=$(jq_api 'j["task_id"]')
    while ((SECONDS < deadline)); do
        status=$(api GET "/tasks/$task")
        [[ $status == 200 ]] || return 1
        progress=$(jq_api 'j["progress"]')
        [[ " $seen " == *" $progress "* ]] || seen="$seen $progress"
        case $(jq_api 'j["state"]') in
        succeeded)
            echo "task $task progress seen:$seen; $(jq_api '"downtime %s ms, total %s ms" % (j["result"]["downtime_ms"], j["result"]["total_ms"])')"
            return 0 ;;
        failed | cancelled) cat "$tmp/api.json"; return 1 ;;
        esac
        sleep 0.2
    done
    return 1
}

migrate() { # FROM TO [api]
    local from=$1 to=$2 how=${3:-ctl} t0 t1 rc=0 n0 pause
    t0=$(ms)
    if [[ $how == api ]]; then
        api_migrate "$to" >"$tmp/out" 2>&1 || rc=$?
    else
        timeout 400 "$ctl" --config "$tmp/ctl.conf" vm migrate con-1 --to "mh$to" >"$tmp/out" 2>&1 || rc=$?
    fi
    t1=$(ms)
    if ((rc == 0)); then ok "migrate mh$from -> mh$to through $how ($(((t1 - t0) / 1000)) s)"; else
        bad "migrate mh$from -> mh$to: exit $rc"; sed 's/^/    /' "$tmp/out"; return 1; fi
    sed 's/^/    /' "$tmp/out"
    # updates keep coming after the move, on the same viewer connection
    local deadline=$((SECONDS + 60))
    while (($(mh_tl_since "$tmp/updates" "$t1") < 5)) && ((SECONDS < deadline)); do sleep 0.2; done
    if (($(mh_tl_since "$tmp/updates" "$t1") >= 5)); then ok "viewer keeps getting updates after the move"; else
        bad "viewer got no updates after the move to mh$to"; fi
    if grep -q '^closed' "$tmp/watch.out"; then bad "viewer was disconnected"; fi
    pause=$(mh_tl_pause "$tmp/updates" "$t0" "$t1")
    echo "PAUSE mh$from->mh$to: ${pause} ms between updates (usual gap $(mh_tl_usual "$tmp/updates" "$t0") ms;" \
        "migration command took $((t1 - t0)) ms)"
    if ((pause > 0 && pause < 15000)); then ok "pause below 15 s (${pause} ms)"; else
        bad "pause of ${pause} ms"; fi
}

migrate 1 2
if grep -q "msg=\"relay stream served\" vm=$vm kind=vnc" "$(mh_displayd_log 2)"; then
    ok "mh2's displayd serves the console to mh1's through the relay"
else bad "mh2's displayd served no relayed stream"; fi
if grep -q "msg=\"vnc console followed the vm\" vm=$vm .*to_host=$(q "SELECT id FROM hosts WHERE name = 'mh2'")" \
    "$(mh_displayd_log 1)"; then
    ok "mh1's displayd followed the VM to mh2"
else bad "mh1's displayd did not follow the VM"; fi
if ! ip netns exec "$(mh_ns 1)" timeout 5 socat -u OPEN:/dev/null \
    "UNIX-CONNECT:$tmp/h1/run/vms/$vm/vnc.sock" 2>/dev/null; then
    ok "the VM's console socket under mh1's runtime dir is dead (only the relay reaches it)"
else bad "mh1's runtime dir still has a live console socket of the VM"; fi
typed_on 2 onmhtwo

migrate 2 1 api
typed_on 1 backonmhone
truth "the API's migration is audited" "SELECT count(*) = 1 FROM audit_log WHERE action = 'vm.migrate'
    AND outcome = 'success' AND target_id = '$vm'"
served=$(grep -c "msg=\"relay stream served\" vm=$vm kind=vnc" "$(mh_displayd_log 2)" || true)
ended=$(grep -c "msg=\"relay stream ended\" vm=$vm kind=vnc" "$(mh_displayd_log 2)" || true)
echo "relayed streams served by mh2: $served, ended: $ended"
((served >= 1 && ended == served)) && ok "the relayed stream ended once the VM was back" ||
    bad "relayed streams: served $served, ended $ended"

echo "ppm $tmp/final.ppm" >&$cmd
wait_for "$tmp/watch.out" '^wrote' 30 && ok "viewer still draws the guest's screen" ||
    bad "viewer could not write its picture"
echo quit >&$cmd
exec {cmd}>&-
rc=0
timeout 30 tail --pid="$watch_pid" -f /dev/null || true
wait "$watch_pid" || rc=$?
if ((rc == 0)); then ok "viewer stayed connected throughout (exit 0)"; else
    bad "viewer exit $rc"; sed 's/^/    viewer: /' "$tmp/watch.out" | head -n 40; fi
echo "updates seen by the viewer: $(wc -l <"$tmp/updates")"

# ---- the relay's door: forged, reused and malformed requests
relay_req() { # LINE: send it to mh2's relay from mh1's namespace, print the first answer line
    printf '%s\n' "$1" | ip netns exec "$(mh_ns 1)" timeout 20 openssl s_client -quiet \
        -connect "$(mh_addr 2):5898" 2>/dev/null | head -c 64 | head -n 1 || true
}
forged=$(printf '%032x' 12345)
[[ $(relay_req "ATRIUM-RELAY 1 $forged") == "ERR ticket refused" ]] &&
    ok "relay refuses a forged ticket" || bad "relay did not refuse a forged ticket"
[[ $(relay_req "GET / HTTP/1.1") == "ERR bad request" ]] &&
    ok "relay refuses a request that is not one" || bad "relay did not refuse garbage"
# A ticket of our own, written as displayd writes them (SHA-256 only), for
# the VM now on mh1: mh2 must refuse it (the VM is not on mh2) ...
t1=$(printf '%032x' 777)
q "INSERT INTO display_relay_tickets (ticket_hash, vm_id, host_id, kind, expires_at)
   VALUES (sha256('$t1'::bytea), $vm, (SELECT id FROM hosts WHERE name = 'mh2'), 'vnc',
   now() + interval '15 s')" >/dev/null
[[ $(relay_req "ATRIUM-RELAY 1 $t1") == "ERR ticket refused" ]] &&
    ok "relay refuses a ticket for a VM that is not on its host" ||
    bad "relay served a VM of another host"
# ... and mh1 serves one bound to it once: QEMU's RFB greeting comes through
t2=$(printf '%032x' 778)
q "INSERT INTO display_relay_tickets (ticket_hash, vm_id, host_id, kind, expires_at)
   VALUES (sha256('$t2'::bytea), $vm, (SELECT id FROM hosts WHERE name = 'mh1'), 'vnc',
   now() + interval '15 s')" >/dev/null
relay1() {
    printf 'ATRIUM-RELAY 1 %s\n' "$1" | ip netns exec "$(mh_ns 2)" timeout 8 openssl s_client \
        -quiet -connect "$(mh_addr 1):5898" 2>/dev/null | head -c 15 | tr -d '\r' || true
}
out=$(relay1 "$t2")
[[ $out == $'OK\nRFB 003.008'* ]] && ok "a good ticket gets the VM's console (RFB greeting)" ||
    bad "good ticket: got '$out'"
out=$(relay1 "$t2")
[[ $out == "ERR ticket refu"* ]] && ok "the same ticket is refused the second time" ||
    bad "reused ticket: got '$out'"
# The schema admits kind 'qmp', but a relay carries consoles only: a good
# ticket of that kind for the VM on mh1 gets no QMP greeting.
t3=$(printf '%032x' 779)
q "INSERT INTO display_relay_tickets (ticket_hash, vm_id, host_id, kind, expires_at)
   VALUES (sha256('$t3'::bytea), $vm, (SELECT id FROM hosts WHERE name = 'mh1'), 'qmp',
   now() + interval '15 s')" >/dev/null
out=$(relay1 "$t3")
[[ $out == "ERR not a cons"* ]] && ok "a ticket of kind qmp gets no QMP socket ($out)" ||
    bad "qmp ticket: got '$out'"
truth "refusals audited" "SELECT count(*) >= 3 FROM audit_log WHERE action = 'console.relay'
    AND outcome = 'denied'"

# displayd shuts down cleanly, its relay threads joined, nothing leaked
mh_console_done

atr_summary
