# shellcheck shell=bash
# QMP from a test script: QEMU's monitor socket through socat, run as the
# bash coprocess QMP.  Source this file after defining:
#   fail MESSAGE   print MESSAGE and exit non-zero
#   deadline       overall deadline on the $SECONDS scale; no wait here
#                  lasts past it
#   qmp_log        file that records every line sent and received
#
#   end_in SECS         the $SECONDS value SECS from now, capped at $deadline
#   qmp_connect SOCK    open QMP on SOCK: greeting, then qmp_capabilities
#   qmp_read REGEX SECS print the first QMP line matching REGEX (the others,
#                       events included, only go to $qmp_log); non-zero on
#                       timeout or a closed socket
#   qmp JSON [SECS]     run one command (default wait 60 s); fail the test
#                       unless it returns; print the reply

end_in() {
    local e=$((SECONDS + $1))
    ((e < deadline)) || e=$deadline
    echo "$e"
}

qmp_connect() {
    coproc QMP { exec socat - "UNIX-CONNECT:$1"; }
    qmp_read '"QMP"' 10 >/dev/null || fail "no QMP greeting on $1"
    qmp '{"execute":"qmp_capabilities"}' >/dev/null
}

qmp_read() {
    local end line t
    end=$(end_in "$2")
    while :; do
        t=$((end - SECONDS))
        ((t > 0)) || return 1
        IFS= read -r -t "$t" -u "${QMP[0]}" line || return 1
        echo "$line" >>"$qmp_log"
        if [[ $line =~ $1 ]]; then
            printf '%s\n' "$line"
            return 0
        fi
    done
}

qmp() {
    local reply
    echo "$1" >>"$qmp_log"
    printf '%s\n' "$1" >&"${QMP[1]}"
    reply=$(qmp_read '"return"|"error"' "${2:-60}") || fail "no QMP reply to $1"
    [[ $reply == *'"return"'* ]] || fail "QMP $1 -> $reply"
    printf '%s\n' "$reply"
}
