#!/bin/bash
# STYLE.md habit 1: a module's private headers (*-priv.h) are included only
# from inside that module (and its own tests).  Fails listing every offender.
set -euo pipefail
root=${1:?usage: test-layout.sh SOURCE_DIR}
cd "$root"
bad=0
modules="common db auth hypervisor pool-manager display broker ctl"
while IFS= read -r line; do
    file=${line%%:*}
    hdr=$(sed -n 's/.*#include *"\([^"]*-priv\.h\)".*/\1/p' <<<"${line#*:}")
    [[ -n $hdr ]] || continue
    # the header must live in the including file's own module
    owner=$(find $modules -maxdepth 2 -name "$hdr" -printf '%h\n' 2>/dev/null | head -1)
    case $file in
    "$owner"/*) ;;
    tests/"${owner%%/*}"/*|tests/fuzz/"${owner%%/*}"/*) ;;
    *) echo "layout: $file includes $hdr, private to ${owner:-?}/"; bad=1 ;;
    esac
done < <(grep -rn --include='*.c' --include='*.h' '#include *"[^"]*-priv\.h"' . | grep -v '^\./build' | sed 's|^\./||')
# one public header per library module
for pair in common:common.h db:db.h auth:auth.h hypervisor:hv.h pool-manager:pool.h display:disp.h; do
    m=${pair%%:*} h=${pair#*:}
    [[ -d $m ]] || continue
    if ls "$m"/*.c >/dev/null 2>&1 && [[ ! -f $m/$h ]]; then
        echo "layout: $m/ has sources but no public header $h"; bad=1
    fi
done
[[ $bad -eq 0 ]] && echo "layout: ok"
exit $bad
