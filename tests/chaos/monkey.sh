# The chaos monkey for tests/e2e/storm.sh (sourced there, after
# tests/e2e/appliance.sh): during a storm of SECONDS it kill -9s each of
# hostd, poold, broker and displayd (ROUNDS times each, default 1) and
# restarts the private PostgreSQL once, at random moments, one fault at a
# time; each killed daemon is started again after a random 0-2 s and the time
# from that start until it is healthy again is measured (app_wait_healthy:
# broker /healthz, hostd heartbeat, poold leader lock, displayd accepting).
# Prints one line per fault and a table at the end; status 1 when something
# did not recover within 240 s (a broker restarted into a crowd that is
# logging in answers /healthz only after the queued argon2id log-ins).  Kills only the daemons this run started
# (their pids), never anything found by name.
#
#   monkey_run SECONDS [ROUNDS]

monkey_run() {
    local duration=$1 rounds=${2:-1} faults=() f t at now start down rc=0 i
    for ((i = 0; i < rounds; i++)); do faults+=(hostd poold broker displayd); done
    faults+=(postgresql)
    # random moments between 10 % and 80 % of the storm, in order
    local n=${#faults[@]} times=()
    mapfile -t times < <(for ((i = 0; i < n; i++)); do
        echo $((duration * 100 + ((RANDOM << 15) | RANDOM) % (duration * 700 + 1)))
    done | sort -n)
    mapfile -t faults < <(printf '%s\n' "${faults[@]}" | shuf)
    local t0
    t0=$(app_now_ms)
    printf 'chaos: %d faults in %d s: %s\n' "$n" "$duration" "${faults[*]}"
    : >"$tmp/recovery"
    for ((i = 0; i < n; i++)); do
        f=${faults[$i]}
        at=${times[$i]}
        now=$(($(app_now_ms) - t0))
        ((at > now)) && sleep "$(awk -v ms=$((at - now)) 'BEGIN { printf "%.3f", ms / 1000 }')"
        if [[ $f == postgresql ]]; then
            start=$(app_now_ms)
            "$ATRIUM_SOURCE_DIR/tests/harness/pg.sh" restart "$pgstate" >/dev/null 2>&1 ||
                { echo "chaos: PostgreSQL did not restart"; rc=1; continue; }
            t=$(($(app_now_ms) - start))
            printf 'chaos: %6d ms  postgresql restarted (fast shutdown + start) in %d ms\n' \
                $(($(app_now_ms) - t0)) "$t"
            echo "postgresql restart $t" >>"$tmp/recovery"
            # every daemon must find the database again on its own; each is
            # probed in turn every 100 ms, so one slow daemon does not delay
            # the others' measurement
            local d pending=(broker hostd poold) left deadline=$((SECONDS + 240))
            while ((${#pending[@]} > 0 && SECONDS < deadline)); do
                left=()
                for d in "${pending[@]}"; do
                    if app_healthy "$d" "$start"; then
                        t=$(($(app_now_ms) - start))
                        echo "postgresql $d $t" >>"$tmp/recovery"
                        printf 'chaos:           %s healthy %d ms after the restart began\n' "$d" "$t"
                    else
                        left+=("$d")
                    fi
                done
                pending=("${left[@]}")
                ((${#pending[@]} == 0)) || sleep 0.1
            done
            if ((${#pending[@]} > 0)); then
                echo "chaos: ${pending[*]} did not recover within 240 s of the PostgreSQL restart"
                rc=1
            fi
            continue
        fi
        app_kill "$f" KILL
        printf 'chaos: %6d ms  kill -9 %s\n' $(($(app_now_ms) - t0)) "$f"
        down=$((RANDOM % 2000))
        sleep "$(awk -v ms=$down 'BEGIN { printf "%.3f", ms / 1000 }')"
        start=$(app_now_ms)
        app_start "$f"
        if app_wait_healthy "$f" "$start" 240; then
            t=$(($(app_now_ms) - start))
            echo "$f restart $t" >>"$tmp/recovery"
            printf 'chaos: %6d ms  %s restarted after %d ms down, healthy %d ms after start\n' \
                $(($(app_now_ms) - t0)) "$f" "$down" "$t"
        else
            echo "chaos: $f not healthy 240 s after its restart"
            rc=1
        fi
    done
    echo "chaos: recovery (start -> healthy)"
    printf '  %-10s %-12s %8s\n' fault daemon ms
    awk '{ printf "  %-10s %-12s %8d\n", ($2 == "restart" ? "kill -9" : "pg restart"), ($2 == "restart" ? $1 : $2), $3 }' \
        "$tmp/recovery"
    return $rc
}
