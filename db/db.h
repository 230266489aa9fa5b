/*
 * libatrium-db: the schema and every query Atrium runs, as typed functions
 * over libpq.  SQL lives only in db/; every query uses parameters
 * (PQexecParams), never text built with printf.
 *
 * This is the one public header of db/.  It includes the per-area headers
 * (db-<area>.h), split by table group so that each area's declarations stay
 * readable; other modules include only "db.h".
 *
 * Conventions: functions return 0 (or a positive count) on success and
 * -errno on failure; outputs go through ret_ parameters, untouched on
 * failure.  Database-side errors map to:
 *   -ENOTCONN   the server cannot be reached / connection lost
 *   -EEXIST     unique violation
 *   -ENOENT     no such row
 *   -EINVAL     check/foreign-key violation or bad input
 *   -EAGAIN     serialization failure / lock not available: retry
 *   -EPROTO     any other server error
 * and, where an atr_error is passed, its message holds the server's words.
 */
#pragma once

#include "common.h"

#include <stdbool.h>
#include <stdint.h>

struct db;

/* ------------------------------------------------------------------------ */
/* Connection                                                               */
/* ------------------------------------------------------------------------ */

/*
 * Connect to @conninfo (a libpq conninfo string or URI), giving up after
 * @timeout_s seconds.  @app_name is shown in pg_stat_activity.
 * Returns 0 and a new handle in *ret_db (free with db_close), or -errno.
 */
int db_open(const char *conninfo, int timeout_s, const char *app_name, struct db **ret_db,
            struct atr_error *err);

/* Close and free; accepts NULL; returns NULL. */
struct db *db_close(struct db *db);

/*
 * Make sure the connection is usable, reconnecting once if the server went
 * away (PostgreSQL restart).  LISTENs are re-issued after a reconnect.
 * Returns 0, or -ENOTCONN if the server is still unreachable.
 */
int db_ensure(struct db *db);

/* True if the last reconnect happened since the previous call (then clears it). */
bool db_reconnected(struct db *db);

/* Server version as an integer (150004 for 15.4), 0 when unknown. */
int db_server_version(struct db *db);

/* Transactions.  db_begin starts READ COMMITTED; db_rollback accepts an aborted transaction. */
int db_begin(struct db *db);
int db_commit(struct db *db);
int db_rollback(struct db *db);

/* ------------------------------------------------------------------------ */
/* Wake-ups and leadership                                                  */
/* ------------------------------------------------------------------------ */

/* Channels the schema's triggers notify on. */
#define DB_CHANNEL_VM "atrium_vm"
#define DB_CHANNEL_TASK "atrium_task"
#define DB_CHANNEL_POOL "atrium_pool"

/* LISTEN on @channel (one of the DB_CHANNEL_ names).  Remembered across reconnects. */
int db_listen(struct db *db, const char *channel);

/* The connection's socket, for poll(); -1 when not connected. */
int db_fd(struct db *db);

/*
 * Consume input and return the next pending notification, if any.
 * Returns 1 and sets *ret_channel and *ret_payload (malloc'd, caller frees),
 * 0 when none is pending, or -ENOTCONN when the connection was lost.
 */
int db_notify_next(struct db *db, char **ret_channel, char **ret_payload);

/*
 * Wait up to @timeout_ms for a notification on a LISTENed channel (poll on
 * the socket, never a sleep loop).  Returns 1 if one is pending (read it with
 * db_notify_next), 0 on timeout, -ENOTCONN if the connection dropped.
 */
int db_wait(struct db *db, int timeout_ms);

/* Advisory lock keys (session level), one per role that needs a single leader. */
enum db_lock_key {
    DB_LOCK_MIGRATE = 0x41545201, /* schema migrations (transaction level) */
    DB_LOCK_POOLD_LEADER = 0x41545202,
};

/*
 * Try to take the session-level advisory lock @key without waiting.  Sets
 * *ret_got.  The lock is held until db_unlock or the connection ends, which
 * is what makes it a leader lease: a dead leader's lock vanishes with it.
 */
int db_try_lock(struct db *db, int64_t key, bool *ret_got);
int db_unlock(struct db *db, int64_t key);

/* ------------------------------------------------------------------------ */
/* Schema migrations                                                        */
/* ------------------------------------------------------------------------ */

struct db_migration {
    int version;      /* 1, 2, ... without gaps */
    const char *name; /* "initial" (from 0001_initial.sql) */
    const char *sql;  /* statements, run in one transaction */
};

/* The migrations compiled into this binary (db/migrations), in order. */
const struct db_migration *db_migrations_builtin(size_t *ret_n);

/*
 * Bring the schema up to the last of @list (@n entries, ascending).  Each
 * migration runs in its own transaction together with its schema_migrations
 * row, under a transaction-level advisory lock so two migrators never race.
 * A database that already holds a version this binary does not know, or
 * whose applied migration differs from ours (checksum), is refused with
 * -EPROTONOSUPPORT / -EBADMSG.  A failing migration leaves the schema as it
 * was before it (-EPROTO, server message in @err).
 * Sets *ret_applied (may be NULL) to the number of migrations applied now.
 * @progress, when not NULL, is called before each migration is applied.
 */
int db_migrate(struct db *db, const struct db_migration *list, size_t n,
               void (*progress)(const struct db_migration *m, void *userdata), void *userdata,
               int *ret_applied, struct atr_error *err);

struct db_applied_migration {
    int version;
    char name[64];
    char applied_at[40];
    bool known;       /* this binary has a migration with that version */
    bool checksum_ok; /* and its text is the one that was applied */
};

struct db_schema_status {
    int current;  /* highest applied version, 0 for an empty database */
    int latest;   /* highest version in the list given */
    int pending;  /* known migrations not yet applied */
    bool newer;   /* database holds versions this binary does not know */
    bool drifted; /* an applied migration's checksum differs */
    size_t n_applied;
    struct db_applied_migration *applied; /* n_applied entries, ascending; free() */
};

/* Read the schema's state against @list.  Frees nothing; free ret->applied. */
int db_schema_status(struct db *db, const struct db_migration *list, size_t n,
                     struct db_schema_status *ret_status, struct atr_error *err);

/*
 * For daemons at start-up: 0 when the schema is exactly what this binary's
 * built-in migrations describe; -EPROTONOSUPPORT when the database is newer,
 * -ESTALE when migrations are pending (run `atriumctl db migrate`), with a
 * sentence in @err.
 */
int db_schema_check(struct db *db, struct atr_error *err);

#include "db-task.h"
#include "db-audit.h"
#include "db-pool.h"
#include "db-session.h"
#include "db-user.h"
#include "db-entitlement.h"
#include "db-login.h"
#include "db-admin.h"
#include "db-host.h"
#include "db-vm.h"
#include "db-ticket.h"
#include "db-desktop.h"
#include "db-metrics.h"
#include "db-migration.h"
#include "db-relay.h"
#include "db-ha.h"
#include "db-replication.h"
