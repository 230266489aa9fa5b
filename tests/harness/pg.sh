#!/bin/bash
# A private PostgreSQL 15 for tests and the demo.
#
#   pg.sh start STATE_DIR   initdb (as the postgres user when run as root) in a
#                           fresh temp dir, start it on a unix socket only, and
#                           write STATE_DIR/conninfo, STATE_DIR/pgdir
#   pg.sh stop STATE_DIR    stop it (immediate) and remove its temp dir
#   pg.sh restart STATE_DIR restart the same cluster (for fault tests)
#
# With ATRIUM_PG_DIR=DIR the cluster lives in DIR instead and survives stop
# (the demo keeps its database under ./run/pg); an existing cluster there is
# started again rather than re-created.
#
# The cluster lives in /tmp (short socket path, reachable by the postgres
# user whatever the build dir's permissions) and runs with fsync=off: it holds
# only test data.  The conninfo names the socket dir; auth is trust on the
# socket, which is private to the temp dir (mode 0700 owned by postgres).
set -euo pipefail

cmd=${1:-}
state=${2:-}
[[ -n $cmd && -n $state ]] || { echo "usage: $0 start|stop|restart STATE_DIR" >&2; exit 2; }

pgbin=${ATRIUM_PG_BIN:-}
if [[ -z $pgbin ]]; then
    for v in 15 16 17; do
        [[ -x /usr/lib/postgresql/$v/bin/pg_ctl ]] && { pgbin=/usr/lib/postgresql/$v/bin; break; }
    done
fi
[[ -n $pgbin ]] || { echo "pg.sh: PostgreSQL server binaries not found (apt-get install postgresql-15)" >&2; exit 1; }

as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_ctl_opts() {
    local dir=$1
    echo "-c listen_addresses= -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=600 -c shared_buffers=128MB -c log_min_messages=warning"
}

case $cmd in
start)
    mkdir -p "$state"
    if [[ -f $state/pgdir ]]; then
        "$0" stop "$state" || true
    fi
    if [[ -n ${ATRIUM_PG_DIR:-} ]]; then
        dir=$ATRIUM_PG_DIR
        mkdir -p "$dir"
    else
        dir=$(mktemp -d /tmp/atrium-pg.XXXXXX)
    fi
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres: "$dir"
        runuser -u postgres -- test -w "$dir" ||
            { echo "pg.sh: the postgres user cannot reach $dir (a parent directory is not searchable); use a path outside /root" >&2; exit 1; }
    fi
    chmod 0700 "$dir"
    echo "$dir" > "$state/pgdir"
    if [[ ! -f $dir/data/PG_VERSION ]]; then
        as_pg "$pgbin/initdb" -D "$dir/data" -U atrium --auth=trust -E UTF8 --locale=C.UTF-8 \
            --no-sync >"$state/initdb.log" 2>&1 ||
            { cat "$state/initdb.log" >&2; exit 1; }
    fi
    as_pg "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "$(pg_ctl_opts "$dir")" start >/dev/null ||
        { cat "$dir/server.log" >&2; exit 1; }
    echo "host=$dir port=5432 user=atrium dbname=postgres" > "$state/conninfo"
    echo "postgres started: $dir"
    ;;
restart)
    dir=$(cat "$state/pgdir")
    as_pg "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -m fast \
        -o "$(pg_ctl_opts "$dir")" restart >/dev/null
    ;;
stop)
    [[ -f $state/pgdir ]] || exit 0
    dir=$(cat "$state/pgdir")
    if [[ -d $dir/data ]]; then
        as_pg "$pgbin/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
        # A postmaster that did not stop is killed: nothing may outlive the run.
        if [[ -f $dir/data/postmaster.pid ]]; then
            pid=$(head -1 "$dir/data/postmaster.pid" 2>/dev/null || true)
            [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    case $dir in /tmp/atrium-pg.*) rm -rf "$dir" ;; esac
    rm -f "$state/pgdir" "$state/conninfo"
    echo "postgres stopped"
    ;;
*)
    echo "usage: $0 start|stop|restart STATE_DIR" >&2
    exit 2
    ;;
esac
