#!/bin/bash
# Login storm: the whole appliance (atrium-hostd with TCG test guests,
# atrium-poold, atrium-broker over TLS, atrium-displayd) on loopback, and a
# crowd far larger than the pool (tests/e2e/storm.c) logging in, connecting
# over VNC through displayd, holding, disconnecting, reconnecting and logging
# off until the time is up.  Checked afterwards, in PostgreSQL and against
# what the crowd saw:
#   - no VM was ever assigned to two people at once (session history and the
#     crowd's own hold intervals), no session moved VMs (audit log)
#   - every reconnect got the same VM and session; every 503 had Retry-After
#   - no session lost: every session the crowd got exists with its person and
#     VM and ended by log-off; none is left live
#   - every logged-off VM was refreshed (a vm.refresh task each) and all VMs
#     are ready again; no live ticket, no VNC password left in clear
#   - database and processes agree: one QEMU per VM (its qemu_pid), one
#     runtime dir and overlay per VM; after deleting the VMs nothing is left
#
# usage: storm.sh STORM BIN_DIR GUEST_DIR USERS SECONDS VMS [chaos CHAOS_SCRIPT]
# chaos: a private PostgreSQL (restarted once) and CHAOS_SCRIPT (sourced) kills
# daemons at random during the storm (tests/chaos/monkey.sh).
set -euo pipefail
storm=${1:?usage: storm.sh STORM BIN_DIR GUEST_DIR USERS SECONDS VMS [chaos CHAOS_SCRIPT]}
bin=$2 guest=$3 users=$4 duration=$5 nvms=$6 mode=${7:-plain} monkey=${8:-}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
export ATRIUM_SOURCE_DIR=${ATRIUM_SOURCE_DIR:-$src}

if [[ $mode == chaos ]]; then
    # its own PostgreSQL: restarting the run's shared one would hit other tests
    pgstate=$(mktemp -d /tmp/atrium-chaos-pg.XXXXXX)
    trap '"$src/tests/harness/pg.sh" stop "$pgstate" >/dev/null 2>&1; rm -rf "$pgstate"' EXIT
    "$src/tests/harness/pg.sh" start "$pgstate" >/dev/null
    export ATRIUM_TEST_PG_FILE=$pgstate/conninfo
fi
. "$src/tests/harness/lib.sh"
atr_init "storm-$mode"
if [[ $mode == chaos ]]; then
    atr_on_exit '"$src/tests/harness/pg.sh" stop "$pgstate" >/dev/null 2>&1; rm -rf "$pgstate"'
fi
trap 'exit 124' TERM INT
. "$here/appliance.sh"
app_configure "$bin" "$guest"
ctl pool create storm --image guest --min "$nvms" --spare "$nvms" --max "$nvms" --memory 256 \
    --vcpus 1 --protocols vnc,rdp,browser >/dev/null
pool=$(q "SELECT id FROM pools WHERE name = 'storm'")
# the crowd: one argon2id password made by the product, shared by every person
pw=storm-$RANDOM-$$
printf '%s\n' "$pw" | ctl user create s0 --password-stdin >/dev/null
q "INSERT INTO users (username, source, password_hash)
   SELECT 's' || i, 'local', (SELECT password_hash FROM users WHERE username = 's0')
   FROM generate_series(1, $users) i" >/dev/null
q "INSERT INTO entitlements (pool_id, user_id) SELECT $pool, id FROM users WHERE username ~ '^s[0-9]+$'" >/dev/null

for d in hostd poold broker displayd; do app_start "$d"; done
for d in broker displayd hostd poold; do
    app_wait_healthy "$d" 0 60 || { bad "$d did not come up"; app_diag; exit 1; }
done
t=$SECONDS
until_sql 300 "SELECT count(*) = $nvms FROM vms WHERE state = 'ready'" &&
    ok "pool storm: $nvms ready VMs ($((SECONDS - t)) s)" || { bad "pool ready"; app_diag; exit 1; }

# ------------------------------------------------------------------ storm
chaos_pid=
if [[ $mode == chaos ]]; then
    . "$monkey"
    monkey_run "$duration" "${ATRIUM_CHAOS_ROUNDS:-1}" >"$tmp/monkey.log" 2>&1 &
    chaos_pid=$!
fi
rc=0
timeout --signal=TERM $((duration + 240)) "$storm" --broker "https://127.0.0.1:$broker_port" \
    --cacert "$tmp/cert.pem" --vnc "$vnc_port" --pool "$pool" --users "$users" --prefix s \
    --password "$pw" --duration "$duration" --ramp $((duration * 2 / 3)) --hold-ms 500:3000 \
    --sessions "$tmp/sessions" ${chaos_pid:+--chaos} >"$tmp/storm.out" 2>"$tmp/storm.err" || rc=$?
sed 's/^/    /' "$tmp/storm.out"
head -20 "$tmp/storm.err" | sed 's/^/    storm: /'
if [[ -n $chaos_pid ]]; then
    wait "$chaos_pid" || bad "chaos script failed"
    cat "$tmp/monkey.log"
fi
[[ $rc == 0 ]] && ok "the crowd saw no double assignment, every reconnect got its VM, every 503 had Retry-After" ||
    bad "storm reported failures (exit $rc)"
kv() { sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p" "$tmp/storm.out" | head -1; }
n_new=$(kv connects_new)
[[ ${n_new:-0} -ge $nvms ]] && ok "$n_new desktops handed out on $nvms VMs to a crowd of $users" ||
    bad "only ${n_new:-0} desktops handed out"

# ------------------------------------------------------------------ database
overlap=$(q "SELECT count(*) FROM desktop_sessions a JOIN desktop_sessions b
             ON a.vm_id = b.vm_id AND a.id < b.id
             WHERE b.started_at < coalesce(a.ended_at, 'infinity')
               AND a.started_at < coalesce(b.ended_at, 'infinity')")
[[ $overlap == 0 ]] && ok "session history: no VM ever held by two sessions at once ($(q "SELECT count(*) FROM desktop_sessions") sessions)" ||
    { bad "session history: $overlap overlapping pairs"; q "SELECT a.id, b.id, a.vm_id, a.user_id, b.user_id FROM desktop_sessions a JOIN desktop_sessions b ON a.vm_id = b.vm_id AND a.id < b.id WHERE b.started_at < coalesce(a.ended_at, 'infinity') AND a.started_at < coalesce(b.ended_at, 'infinity') LIMIT 5"; }
moved=$(q "SELECT count(*) FROM (SELECT target_id FROM audit_log WHERE action = 'desktop.connect'
           GROUP BY target_id HAVING count(DISTINCT detail->>'vm_id') > 1 OR count(DISTINCT actor) > 1) x")
differs=$(q "SELECT count(*) FROM audit_log l JOIN desktop_sessions s ON s.id::text = l.target_id
             JOIN users u ON u.id = s.user_id
             WHERE l.action = 'desktop.connect' AND ((l.detail->>'vm_id')::bigint <> s.vm_id OR l.actor <> u.username)")
[[ $moved == 0 && $differs == 0 ]] && ok "audit log: each session on one VM for one person, as in desktop_sessions" ||
    bad "audit log: $moved sessions moved, $differs differ from desktop_sessions"
if [[ -s $tmp/sessions ]]; then
    values=$(awk '{printf "%s(%d,%s,%d)", (NR > 1 ? "," : ""), $1, "'"'"'" $2 "'"'"'", $3}' "$tmp/sessions")
    lost=$(q "SELECT count(*) FROM (VALUES $values) AS c(sid, username, vm)
              LEFT JOIN desktop_sessions s ON s.id = c.sid
              LEFT JOIN users u ON u.id = s.user_id
              WHERE s.id IS NULL OR u.username <> c.username OR s.vm_id <> c.vm")
    seen=$(wc -l <"$tmp/sessions")
    [[ $lost == 0 ]] && ok "no session lost: the $seen sessions the crowd got are all in the database, same person and VM" ||
        bad "$lost of $seen sessions the crowd got are missing or differ"
fi
[[ $(q "SELECT count(*) FROM desktop_sessions WHERE state <> 'ended'") == 0 ]] &&
    ok "every session ended by log-off ($(q "SELECT count(*) FROM desktop_sessions WHERE end_reason = 'logged off by the user'") by the person)" ||
    { bad "sessions left live"; app_diag; }
t=$SECONDS
until_sql 300 "SELECT count(*) = $nvms AND bool_and(state = 'ready') FROM vms" &&
    ok "every VM is ready again ($((SECONDS - t)) s after the storm)" || { bad "VMs back to ready"; app_diag; }
# A VM hostd left half-started when it was killed is re-attached and becomes
# ready: none waits out provision_timeout.
if grep -q 'msg="vm not ready in time, retired"' "$tmp/poold.log"; then
    bad "VM(s) left unready (after a hostd restart?), retired by poold:"
    grep -E 'msg="vm not ready in time, retired"' "$tmp/poold.log" | sed 's/^/    poold: /'
    grep -E 'msg="vm re-attached"' "$tmp/hostd.log" | sed 's/^/    hostd: /'
else
    ok "no VM retired for not becoming ready ($(grep -c 'msg="vm re-attached"' "$tmp/hostd.log" || true) re-attaches)"
fi
ended=$(q "SELECT count(*) FROM desktop_sessions WHERE state = 'ended' AND vm_id IS NOT NULL")
refreshed=$(q "SELECT count(*) FROM tasks WHERE kind = 'vm.refresh' AND state = 'succeeded'")
# a VM lost to a fault (hostd killed mid-refresh) is deleted instead: nothing
# of its last person is left to refresh
gone=$(q "SELECT count(*) FROM tasks WHERE kind = 'vm.refresh' AND state = 'failed'
          AND error = 'the VM no longer exists'")
# A task whose hostd was killed, or whose end could not be recorded while
# PostgreSQL restarted, is requeued (stale heartbeat, or by the next hostd)
# or recorded after the reconnect: none is left 'running'.
stuck=$(q "SELECT count(*) FROM tasks WHERE state = 'running'")
if [[ $stuck -gt 0 ]]; then
    echo "tasks left running: $(q "SELECT string_agg(id || ' ' || kind || ' vm ' || coalesce(vm_id::text, '-') || ' by ' || claimed_by
                                || ' (heartbeat ' || round(extract(epoch FROM now() - heartbeat_at)) || ' s ago)', '; ')
              FROM tasks WHERE state = 'running'")"
    grep 'msg="cannot finish task' "$tmp/hostd.log" | sed 's/^/    hostd: /' || true
fi
if [[ $mode == chaos ]]; then
    echo "tasks requeued: $(grep -c 'msg="stale tasks requeued"' "$tmp/poold.log" || true) poold passes," \
        "$(grep -c 'msg="tasks of the previous hostd requeued"' "$tmp/hostd.log" || true) hostd starts;" \
        "task ends recorded after a reconnect: $(grep -c 'msg="task end recorded after reconnecting"' "$tmp/hostd.log" || true);" \
        "readies recorded after a reconnect: $(grep -c 'msg="vm ready recorded after reconnecting"' "$tmp/hostd.log" || true);" \
        "refreshes found done: $(grep -c 'msg="refresh was done before a restart"' "$tmp/hostd.log" || true)"
fi
[[ $((refreshed + gone)) -ge $ended && $ended -gt 0 ]] &&
    ok "every logged-off VM was refreshed ($ended log-offs, $refreshed refresh tasks succeeded, $gone VMs deleted first)" ||
    { bad "refresh: $ended log-offs, $refreshed refresh tasks succeeded, $gone VMs deleted first"; q "SELECT state, error, count(*) FROM tasks WHERE kind = 'vm.refresh' GROUP BY 1, 2"; }
[[ $stuck == 0 ]] && ok "no task left running" || bad "$stuck task(s) left running"
until_sql 40 "SELECT count(*) = 0 FROM console_tickets WHERE used_at IS NULL AND expires_at > now()" &&
    ok "no live console ticket left" || bad "live tickets left"
# poold wipes spent VNC passwords on every pass, displayd before each VNC log-in
until_sql 40 "SELECT count(*) = 0 FROM console_tickets WHERE vnc_password IS NOT NULL" &&
    ok "no VNC password left in clear" ||
    bad "$(q "SELECT count(*) FROM console_tickets WHERE vnc_password IS NOT NULL") VNC passwords left in clear"

# ------------------------------------------------------------------ processes
mapfile -t qp < <(app_qemu_pids | sort -n)
dbp=$(q "SELECT string_agg(qemu_pid::text, ' ' ORDER BY qemu_pid) FROM vms")
[[ ${#qp[@]} == "$nvms" && "${qp[*]}" == "$dbp" ]] && ok "one QEMU per VM, the pids the database names (${qp[*]})" ||
    bad "QEMUs running: ${qp[*]:-none}; database: $dbp"
dirs=$(find "$tmp/run/vms" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -n | tr '\n' ' ')
ids=$(q "SELECT string_agg(id::text, ' ' ORDER BY id) FROM vms")
[[ ${dirs% } == "$ids" ]] && ok "one runtime dir per VM" || bad "runtime dirs '$dirs', VMs '$ids'"
# overlays of VMs that no longer exist
orphans=()
for f in "$tmp"/data/overlays/*; do
    [[ -e $f ]] || continue
    [[ $(q "SELECT count(*) FROM vms WHERE disk_path = '$f'") == 0 ]] && orphans+=("$(basename "$f")")
done
# hostd killed in the middle of a refresh finds the VM's QEMU gone, the VM
# is lost and deleted; its overlay goes with the row, and what a killed
# hostd left half-made (a refresh's .NAME.qcow2.tmp-PID) is swept when hostd
# starts again.
if [[ $mode == chaos ]]; then
    echo "VMs lost while hostd was down: $(grep -c 'msg="vm lost while hostd was down"' "$tmp/hostd.log" || true);" \
        "overlays swept at hostd start: $(grep -cE 'msg="(overlay names no VM|temporary overlay of a stopped hostd)' "$tmp/hostd.log" || true)"
fi
novl=$(find "$tmp/data/overlays" -type f 2>/dev/null | wc -l)
[[ ${#orphans[@]} == 0 && $novl == "$nvms" ]] && ok "one overlay per VM" ||
    { bad "$novl overlays for $nvms VMs; orphans: ${orphans[*]:-none}"; find "$tmp/data/overlays" -type f; }

app_teardown_vms 180 && ok "every VM deleted through the product" || { bad "VMs deleted"; app_diag; }
sleep 1
left=$(app_qemu_pids | wc -l)
files=$(find "$tmp/run/vms" "$tmp/data/overlays" -mindepth 1 2>/dev/null | wc -l)
[[ $left == 0 && $files == 0 ]] && ok "no QEMU, socket, runtime dir or overlay left" ||
    { bad "$left QEMUs and $files files left"; find "$tmp/run/vms" "$tmp/data/overlays" -mindepth 1; }

per_min=$(kv per_minute)
echo "storm: users=$users vms=$nvms seconds=$duration desktops=$n_new connects_per_min=$per_min mode=$mode"
atr_summary
