/* Private to db/: the connection object and query helpers. */
#pragma once

#include "db.h"

#include <libpq-fe.h>

#define DB_MAX_LISTEN 8

struct db_note {
    struct db_note *next;
    char *channel, *payload;
};

struct db {
    PGconn *conn;
    char *conninfo;
    int timeout_s;
    char *app_name;
    bool reconnected;
    size_t n_listen;
    char *listen[DB_MAX_LISTEN];
    struct db_note *notes, **notes_tail; /* received, not yet handed out */
};

/*
 * Replications as an admin sees them (replication.c; admin.c puts one in
 * each VM of the VM list): a sub-select, one row per replicated VM, with
 * the state and the task under way worked out in one place.
 * DB_REPLICATION_JSON_COLUMNS are the ones shown outside (not the copy's
 * file or the bitmap's bookkeeping).
 */
#define DB_REPLICATION_STATUS                                                                      \
    "(SELECT r.vm_id, v.name AS vm, v.host_id AS source_host_id, sh.name AS source_host,"          \
    "  r.target_host_id, th.name AS target_host, r.interval_s, r.max_bps, r.enabled,"              \
    "  CASE WHEN rt.kind = 'vm.recover' THEN 'recovering'"                                         \
    "   WHEN NOT r.enabled AND r.recovered_at IS NOT NULL THEN 'recovered'"                        \
    "   WHEN NOT r.enabled THEN 'off' WHEN rt.id IS NOT NULL THEN 'syncing'"                       \
    "   WHEN r.last_error <> '' THEN 'failing' WHEN r.point_at IS NULL THEN 'waiting'"             \
    "   ELSE 'ok' END AS state,"                                                                   \
    "  r.layer_host_id AS copy_host_id, r.layer_path, r.layer_task, r.bitmap_task,"                \
    "  r.point_at AS recovery_point_at,"                                                           \
    "  floor(extract(epoch from now() - r.point_at))::bigint AS recovery_point_age_s, r.syncs,"    \
    "  r.last_sync_at, r.last_bytes, r.last_full, r.last_error, r.next_sync_at,"                   \
    "  extract(epoch from r.next_sync_at - now())::bigint AS next_sync_in_s, r.recovered_at,"      \
    "  (extract(epoch from now() - sh.heartbeat_at) * 1000)::bigint AS source_heartbeat_age_ms,"   \
    "  rt.id AS task_id, rt.progress AS task_progress"                                             \
    " FROM vm_replication r JOIN vms v ON v.id = r.vm_id"                                          \
    " JOIN hosts th ON th.id = r.target_host_id LEFT JOIN hosts sh ON sh.id = v.host_id"           \
    " LEFT JOIN LATERAL (SELECT t.id, t.kind, t.progress FROM tasks t WHERE t.vm_id = r.vm_id"     \
    "   AND t.kind IN ('vm.replicate', 'vm.recover') AND t.state IN ('queued', 'running')"         \
    "   ORDER BY t.kind = 'vm.recover' DESC, t.id DESC LIMIT 1) rt ON true)"
#define DB_REPLICATION_JSON_COLUMNS                                                                \
    "vm_id, vm, source_host_id, source_host, target_host_id, target_host, interval_s, max_bps,"    \
    " enabled, state, copy_host_id, recovery_point_at, recovery_point_age_s, syncs,"               \
    " last_sync_at, last_bytes, last_full, last_error, next_sync_at, next_sync_in_s,"              \
    " recovered_at, source_heartbeat_age_ms, task_id, task_progress"

/*
 * Run one parameterised statement.  @params are text values (NULL = SQL
 * NULL).  On success returns 0 and *ret_res (PQclear it) when ret_res is not
 * NULL; on failure maps the SQLSTATE to -errno (see db.h) and fills @err.
 */
int db_exec(struct db *db, const char *sql, int nparams, const char *const *params,
            PGresult **ret_res, struct atr_error *err);

/*
 * Run a statement that must change (or return) at least one row: 0 when it
 * did, -ENOENT when it touched none, -errno on failure.
 */
int db_exec_changed(struct db *db, const char *sql, int nparams, const char *const *params);

/*
 * Run a statement that must return exactly one row: 0 and *ret_res (PQclear
 * it), -ENOENT (nothing to clear) when it returned none or several, -errno
 * on failure.
 */
int db_exec_one(struct db *db, const char *sql, int nparams, const char *const *params,
                PGresult **ret_res);

/* Fill one element of a result array from row @row. */
typedef void (*db_row_fn)(const PGresult *res, int row, void *elem);

/*
 * Run a query and turn every row into an element of @elem_size bytes with
 * @fill: *ret_items is a new array (free()) of *ret_n elements, never NULL
 * on success.
 */
int db_exec_rows(struct db *db, const char *sql, int nparams, const char *const *params,
                 size_t elem_size, db_row_fn fill, void **ret_items, size_t *ret_n);

/* The same for a query of one row: @fill writes @elem only when there is
 * exactly one; -ENOENT otherwise (and @elem is left as it was). */
int db_exec_row(struct db *db, const char *sql, int nparams, const char *const *params,
                db_row_fn fill, void *elem);

/* Map a failed result to -errno. */
int db_result_errno(const PGresult *res);

/* Text of column @col of row @row, NULL when SQL NULL. */
const char *db_get(const PGresult *res, int row, int col);
int64_t db_get_i64(const PGresult *res, int row, int col); /* 0 when NULL */

/* Format an int64 as a parameter into @buf, or NULL when @v is 0 (SQL NULL). */
const char *db_param_id(char buf[static 24], int64_t v);
const char *db_param_i64(char buf[static 24], int64_t v);

/* "\x" + hex of SHA-256(@ticket): bytea text input for a parameter (ticket.c). */
int db_ticket_hash_param(const char *ticket, char out[static 2 + 64 + 1]);
