/* Disaster-recovery replication: the rows the source and target hostds meet through. */
#include "db-priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REP_COLUMNS                                                                                \
    "s.vm_id, s.vm, coalesce(s.source_host_id, 0), coalesce(s.source_host, ''),"                   \
    " s.target_host_id, s.target_host, s.interval_s, coalesce(s.max_bps, 0), s.enabled,"           \
    " coalesce(s.layer_path, ''), coalesce(s.copy_host_id, 0), coalesce(s.layer_task, 0),"         \
    " coalesce(s.bitmap_task, 0), (extract(epoch from s.recovery_point_at) * 1000000)::bigint,"    \
    " s.recovery_point_age_s, s.syncs, (extract(epoch from s.last_sync_at) * 1000000)::bigint,"    \
    " coalesce(s.last_bytes, -1), coalesce(s.last_full, false), s.last_error, s.next_sync_in_s,"   \
    " (extract(epoch from s.recovered_at) * 1000000)::bigint, s.source_heartbeat_age_ms,"          \
    " s.state, coalesce(s.task_id, 0)"                                                             \
    " FROM " DB_REPLICATION_STATUS " s"

static void copy(char *dst, size_t size, const PGresult *res, int row, int col)
{
    const char *v = db_get(res, row, col);
    snprintf(dst, size, "%s", v ? v : "");
}

static void rep_from_row(const PGresult *res, int row, void *elem)
{
    struct db_replication *r = elem;
    memset(r, 0, sizeof(*r));
    r->vm_id = db_get_i64(res, row, 0);
    copy(r->vm_name, sizeof(r->vm_name), res, row, 1);
    r->source_host_id = db_get_i64(res, row, 2);
    copy(r->source_host, sizeof(r->source_host), res, row, 3);
    r->target_host_id = db_get_i64(res, row, 4);
    copy(r->target_host, sizeof(r->target_host), res, row, 5);
    r->interval_s = (int)db_get_i64(res, row, 6);
    r->max_bps = db_get_i64(res, row, 7);
    r->enabled = strcmp(PQgetvalue(res, row, 8), "t") == 0;
    copy(r->layer_path, sizeof(r->layer_path), res, row, 9);
    r->layer_host_id = db_get_i64(res, row, 10);
    r->layer_task = db_get_i64(res, row, 11);
    r->bitmap_task = db_get_i64(res, row, 12);
    r->point_at_us = db_get_i64(res, row, 13);
    r->point_age_s = db_get(res, row, 14) ? db_get_i64(res, row, 14) : -1;
    r->syncs = (int)db_get_i64(res, row, 15);
    r->last_sync_at_us = db_get_i64(res, row, 16);
    r->last_bytes = db_get_i64(res, row, 17);
    r->last_full = strcmp(PQgetvalue(res, row, 18), "t") == 0;
    copy(r->last_error, sizeof(r->last_error), res, row, 19);
    r->next_sync_in_s = db_get_i64(res, row, 20);
    r->recovered_at_us = db_get_i64(res, row, 21);
    r->source_heartbeat_age_ms = db_get(res, row, 22) ? db_get_i64(res, row, 22) : -1;
    copy(r->state, sizeof(r->state), res, row, 23);
    r->task_id = db_get_i64(res, row, 24);
}

int db_replication_set(struct db *db, int64_t vm_id, int64_t target_host_id, int interval_s,
                       int64_t max_bps)
{
    if (interval_s < DB_REPLICATION_INTERVAL_MIN || interval_s > DB_REPLICATION_INTERVAL_MAX ||
        max_bps < 0 || (max_bps && max_bps < DB_REPLICATION_MAX_BPS_MIN))
        return -ERANGE;
    char b1[24], b2[24], b3[24], b4[24];
    const char *p[] = {db_param_i64(b1, vm_id), db_param_i64(b2, target_host_id),
                       db_param_i64(b3, interval_s), db_param_id(b4, max_bps)};
    PGresult *res;
    /* A new target has none of the old copy: layer and bitmap history go,
     * so the next sync is a full one. */
    int r = db_exec(
        db,
        "WITH v AS (SELECT id, host_id FROM vms WHERE id = $1),"
        " h AS (SELECT id FROM hosts WHERE id = $2),"
        " up AS (INSERT INTO vm_replication (vm_id, target_host_id, interval_s, max_bps)"
        "   SELECT v.id, h.id, $3, $4 FROM v, h WHERE v.host_id IS DISTINCT FROM h.id"
        "   ON CONFLICT (vm_id) DO UPDATE SET interval_s = EXCLUDED.interval_s,"
        "     max_bps = EXCLUDED.max_bps, enabled = true, updated_at = now(),"
        "     next_sync_at = CASE WHEN vm_replication.enabled THEN "
        "least(vm_replication.next_sync_at,"
        "       now() + make_interval(secs => EXCLUDED.interval_s)) ELSE now() END,"
        "     target_host_id = EXCLUDED.target_host_id,"
        "     layer_path = CASE WHEN vm_replication.target_host_id = EXCLUDED.target_host_id"
        "       THEN vm_replication.layer_path END,"
        "     layer_host_id = CASE WHEN vm_replication.target_host_id = EXCLUDED.target_host_id"
        "       THEN vm_replication.layer_host_id END,"
        "     point_at = CASE WHEN vm_replication.target_host_id = EXCLUDED.target_host_id"
        "       THEN vm_replication.point_at END,"
        "     layer_task = CASE WHEN vm_replication.target_host_id = EXCLUDED.target_host_id"
        "       THEN vm_replication.layer_task END"
        "   RETURNING vm_id)"
        " SELECT (SELECT count(*) FROM v), (SELECT count(*) FROM h), (SELECT count(*) FROM up)",
        4, p, &res, NULL);
    if (r < 0)
        return r;
    if (db_get_i64(res, 0, 0) == 0 || db_get_i64(res, 0, 1) == 0)
        r = -ENOENT;
    else if (db_get_i64(res, 0, 2) == 0)
        r = -EINVAL;
    PQclear(res);
    return r;
}

int db_replication_disable(struct db *db, int64_t vm_id)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, vm_id)};
    return db_exec_changed(db,
                           "UPDATE vm_replication SET enabled = false, updated_at = now()"
                           " WHERE vm_id = $1 RETURNING vm_id",
                           1, p);
}

int db_replication_sync_now(struct db *db, int64_t vm_id)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, vm_id)};
    PGresult *res;
    /* Only a running VM is synced (db_replication_schedule): for one that
     * is off the sync would wait unseen until it runs. */
    int r = db_exec(db,
                    "WITH r AS (SELECT r.vm_id, v.actual_power IN ('running', 'paused') AS runs"
                    "   FROM vm_replication r JOIN vms v ON v.id = r.vm_id"
                    "   WHERE r.vm_id = $1 AND r.enabled FOR UPDATE OF r),"
                    " up AS (UPDATE vm_replication SET next_sync_at = now(), updated_at = now()"
                    "   WHERE vm_id = (SELECT vm_id FROM r WHERE runs) RETURNING vm_id)"
                    " SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM up)",
                    1, p, &res, NULL);
    if (r < 0)
        return r;
    if (db_get_i64(res, 0, 0) == 0)
        r = -ENOENT;
    else if (db_get_i64(res, 0, 1) == 0)
        r = -ESRCH;
    PQclear(res);
    return r;
}

int db_replication_get(struct db *db, int64_t vm_id, struct db_replication *ret)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, vm_id)};
    return db_exec_row(db, "SELECT " REP_COLUMNS " WHERE s.vm_id = $1", 1, p, rep_from_row, ret);
}

int db_replication_list(struct db *db, struct db_replication **ret, size_t *ret_n)
{
    return db_exec_rows(db, "SELECT " REP_COLUMNS " ORDER BY s.vm, s.vm_id", 0, NULL,
                        sizeof(struct db_replication), rep_from_row, (void **)ret, ret_n);
}

/* Run @sql, whose one row and column is JSON text, and parse it into *ret. */
static int json_of(struct db *db, const char *sql, int n, const char *const *p, json_t **ret)
{
    PGresult *res;
    int r = db_exec(db, sql, n, p, &res, NULL);
    if (r < 0)
        return r;
    const char *text = PQntuples(res) == 1 ? db_get(res, 0, 0) : NULL;
    json_t *v = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    r = !text ? -ENOENT : !v ? -ENOMEM : 0;
    PQclear(res);
    if (r == 0)
        *ret = v;
    return r;
}

int db_replication_list_json(struct db *db, const struct db_page *page, json_t **ret_items)
{
    if (page && (page->limit < 1 || page->offset < 0))
        return -EINVAL;
    char b1[24], b2[24];
    const char *p[] = {page ? db_param_i64(b1, page->limit) : NULL,
                       db_param_i64(b2, page ? page->offset : 0)};
    return json_of(db,
                   "SELECT coalesce(json_agg(t), '[]')::text FROM ("
                   " SELECT " DB_REPLICATION_JSON_COLUMNS " FROM " DB_REPLICATION_STATUS " s"
                   " ORDER BY vm, vm_id LIMIT $1 OFFSET $2) t",
                   2, p, ret_items);
}

int db_replication_get_json(struct db *db, int64_t vm_id, json_t **ret)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, vm_id)};
    return json_of(db,
                   "SELECT row_to_json(t)::text FROM ("
                   " SELECT " DB_REPLICATION_JSON_COLUMNS " FROM " DB_REPLICATION_STATUS " s"
                   " WHERE vm_id = $1) t",
                   1, p, ret);
}

const char *db_replication_why(struct db *db, enum db_replication_op op, int64_t vm_id, int r,
                               char *buf, size_t size)
{
    struct db_replication rp;
    const char *why = NULL;
    switch (r) {
    case -ENOENT:
        why = op == DB_REPLICATION_SYNC ? "it is not replicated, or its replication is off"
                                        : "it is not replicated";
        break;
    case -EINVAL:
        if (op == DB_REPLICATION_SET)
            why = "it runs on that host: the copy must go to another one";
        break;
    case -ERANGE:
        why = "the interval is outside 10..604800 s or the bandwidth cap under 4096 bytes/s";
        break;
    case -ESRCH:
        why = "it is not running: only a running VM is synced";
        break;
    case -ENXIO:
        why = "that host holds no complete copy of it";
        break;
    case -EALREADY:
        why = "it is already on that host";
        break;
    case -EBUSY:
        why = "a recovery of it is already under way";
        break;
    case -EADDRINUSE:
        if (db_replication_get(db, vm_id, &rp) == 0 && rp.source_host[0]) {
            snprintf(buf, size,
                     "its host %s is alive (heartbeat %lld ms ago); stop that host first, or "
                     "force when its VMs are known to be dead",
                     rp.source_host, (long long)rp.source_heartbeat_age_ms);
            return buf;
        }
        why = "its host is alive";
        break;
    }
    snprintf(buf, size, "%s", why ? why : strerror(-r));
    return buf;
}

int db_replication_schedule(struct db *db, int64_t host_id)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, host_id)};
    PGresult *res;
    /* One statement: the due rows are locked (SKIP LOCKED), moved one
     * interval on and get their task together, so a restarted hostd never
     * queues a sync twice and a sync under way is never doubled. */
    int r = db_exec(
        db,
        "WITH due AS (SELECT r.vm_id, r.target_host_id, r.max_bps FROM vm_replication r"
        "   JOIN vms v ON v.id = r.vm_id"
        "   WHERE r.enabled AND v.host_id = $1 AND r.target_host_id <> $1"
        "   AND r.next_sync_at <= now() AND v.actual_power IN ('running', 'paused')"
        "   AND v.desired_power IN ('running', 'paused')"
        "   AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.vm_id = r.vm_id"
        "     AND t.kind IN ('vm.replicate', 'vm.replicate_in', 'vm.migrate', 'vm.migrate_in',"
        "       'vm.recover') AND t.state IN ('queued', 'running'))"
        "   FOR UPDATE OF r SKIP LOCKED),"
        " moved AS (UPDATE vm_replication r"
        "   SET next_sync_at = now() + make_interval(secs => r.interval_s), updated_at = now()"
        "   FROM due WHERE r.vm_id = due.vm_id RETURNING r.vm_id)"
        " INSERT INTO tasks (kind, host_id, vm_id, params)"
        "   SELECT 'vm.replicate', $1, due.vm_id, jsonb_build_object('to_host', due.target_host_id,"
        "     'max_bps', coalesce(due.max_bps, 0))"
        "   FROM due JOIN moved ON moved.vm_id = due.vm_id RETURNING id",
        1, p, &res, NULL);
    if (r < 0)
        return r;
    r = PQntuples(res);
    PQclear(res);
    return r;
}

int db_replication_bitmap(struct db *db, int64_t vm_id, int64_t src_task, bool ok)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, vm_id), db_param_i64(b2, src_task)};
    /* A job that failed left the bitmap as it was: it still matches the
     * copy it matched before. */
    if (ok)
        return db_exec_changed(db,
                               "UPDATE vm_replication SET bitmap_task = $2, updated_at = now()"
                               " WHERE vm_id = $1 RETURNING vm_id",
                               2, p);
    return db_exec_changed(db,
                           "UPDATE vm_replication SET bitmap_task = layer_task, updated_at = now()"
                           " WHERE vm_id = $1 AND bitmap_task = $2 RETURNING vm_id",
                           2, p);
}

int db_replication_copied(struct db *db, int64_t in_task, const json_t *result)
{
    char *js = atr_json_dumps(result);
    if (!js)
        return -ENOMEM;
    char b1[24];
    const char *p[] = {db_param_i64(b1, in_task), js};
    int r = db_exec_changed(db,
                            "UPDATE tasks SET result = result || $2::jsonb,"
                            " progress = GREATEST(progress, 90),"
                            " message = 'copy complete', heartbeat_at = now()"
                            " WHERE id = $1 AND state = 'running' RETURNING id",
                            2, p);
    free(js);
    return r;
}

int db_replication_commit(struct db *db, int64_t vm_id, int64_t host_id, const char *layer,
                          int64_t point_us, int64_t bytes, bool full, int64_t in_task,
                          int64_t src_task, const json_t *result, char *ret_old_layer,
                          size_t old_size)
{
    char *js = result ? atr_json_dumps(result) : strdup("{}");
    if (!js)
        return -ENOMEM;
    char b1[24], b2[24], b4[24], b5[24], b7[24], b8[24];
    const char *p[] = {
        db_param_i64(b1, vm_id),    db_param_i64(b2, host_id), layer,
        db_param_i64(b4, point_us), db_param_i64(b5, bytes),   full ? "true" : "false",
        db_param_i64(b7, in_task),  db_param_id(b8, src_task), js};
    PGresult *res;
    /* The source task may have been requeued (its hostd died after the
     * copy): it is left alone, and its next run makes a full copy. */
    int r =
        db_exec(db,
                "WITH old AS (SELECT layer_path FROM vm_replication WHERE vm_id = $1 FOR UPDATE),"
                " it AS (SELECT id FROM tasks WHERE id = $7 AND state = 'running'),"
                " r AS (UPDATE vm_replication SET layer_path = $3, layer_host_id = $2,"
                "   point_at = to_timestamp($4::bigint / 1000000.0), syncs = syncs + 1,"
                "   last_sync_at = now(), last_bytes = $5, last_full = $6, last_error = '',"
                "   layer_task = $8, updated_at = now()"
                "   WHERE vm_id = $1 AND target_host_id = $2 AND EXISTS (SELECT 1 FROM it)"
                "   RETURNING vm_id),"
                " t AS (UPDATE tasks SET state = 'succeeded', progress = 100, error = '',"
                "   message = 'replicated', result = result || $9::jsonb, finished_at = now(),"
                "   heartbeat_at = now() WHERE id IN ($7, $8) AND state = 'running'"
                "   AND EXISTS (SELECT 1 FROM r) RETURNING id)"
                " SELECT (SELECT count(*) FROM r), (SELECT coalesce(layer_path, '') FROM old),"
                "   (SELECT count(*) FROM t)",
                9, p, &res, NULL);
    free(js);
    if (r < 0)
        return r;
    if (db_get_i64(res, 0, 0) == 0)
        r = -ENOENT;
    else if (ret_old_layer)
        copy(ret_old_layer, old_size, res, 0, 1);
    PQclear(res);
    return r;
}

int db_replication_set_layer(struct db *db, int64_t vm_id, const char *old_layer,
                             const char *new_layer)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, vm_id), old_layer, new_layer};
    return db_exec_changed(db,
                           "UPDATE vm_replication SET layer_path = $3, updated_at = now()"
                           " WHERE vm_id = $1 AND layer_path = $2 RETURNING vm_id",
                           3, p);
}

int db_replication_failed(struct db *db, int64_t vm_id, const char *error)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, vm_id), error ? error : ""};
    return db_exec_changed(db,
                           "UPDATE vm_replication SET last_error = $2, updated_at = now()"
                           " WHERE vm_id = $1 RETURNING vm_id",
                           2, p);
}

int db_replication_recover_request(struct db *db, int64_t vm_id, int64_t host_id, bool force,
                                   int alive_s, int64_t created_by, int64_t *ret_task)
{
    char b1[24], b2[24], b4[24], b5[24];
    const char *p[] = {db_param_i64(b1, vm_id), db_param_i64(b2, host_id), force ? "true" : "false",
                       db_param_i64(b4, alive_s), db_param_id(b5, created_by)};
    PGresult *res;
    /* The VM's row is locked, so two admins recovering at once get one
     * task; the liveness check is repeated when the task commits. */
    int r = db_exec(
        db,
        "WITH v AS (SELECT v.id, v.host_id, h.heartbeat_at FROM vms v"
        "   LEFT JOIN hosts h ON h.id = v.host_id WHERE v.id = $1 FOR UPDATE OF v),"
        " r AS (SELECT * FROM vm_replication WHERE vm_id = $1),"
        " busy AS (SELECT 1 FROM tasks WHERE vm_id = $1 AND kind = 'vm.recover'"
        "   AND state IN ('queued', 'running')),"
        " alive AS (SELECT 1 FROM v WHERE v.heartbeat_at > now() - make_interval(secs => $4)),"
        " t AS (INSERT INTO tasks (kind, host_id, vm_id, params, created_by)"
        "   SELECT 'vm.recover', $2, v.id, jsonb_build_object('force', $3::boolean), $5"
        "   FROM v, r WHERE r.layer_path IS NOT NULL AND r.layer_host_id = $2"
        "   AND v.host_id IS DISTINCT FROM $2 AND NOT EXISTS (SELECT 1 FROM busy)"
        "   AND ($3::boolean OR NOT EXISTS (SELECT 1 FROM alive)) RETURNING id)"
        " SELECT (SELECT count(*) FROM r),"
        "   (SELECT count(*) FROM r WHERE layer_path IS NOT NULL AND layer_host_id = $2),"
        "   (SELECT count(*) FROM v WHERE host_id = $2), (SELECT count(*) FROM busy),"
        "   (SELECT count(*) FROM alive), (SELECT id FROM t)",
        5, p, &res, NULL);
    if (r < 0)
        return r;
    if (db_get_i64(res, 0, 0) == 0)
        r = -ENOENT;
    else if (db_get_i64(res, 0, 2) > 0)
        r = -EALREADY;
    else if (db_get_i64(res, 0, 1) == 0)
        r = -ENXIO;
    else if (db_get_i64(res, 0, 3) > 0)
        r = -EBUSY;
    else if (db_get_i64(res, 0, 5) == 0)
        r = -EADDRINUSE; /* alive and not forced */
    else if (ret_task)
        *ret_task = db_get_i64(res, 0, 5);
    PQclear(res);
    return r;
}

int db_replication_recover_commit(struct db *db, int64_t vm_id, int64_t host_id,
                                  const char *disk_path, int64_t task, bool force, int alive_s,
                                  const json_t *result)
{
    char *js = result ? atr_json_dumps(result) : strdup("{}");
    if (!js)
        return -ENOMEM;
    char b1[24], b2[24], b4[24], b6[24];
    const char *p[] = {
        db_param_i64(b1, vm_id),  db_param_i64(b2, host_id), disk_path, db_param_i64(b4, task),
        force ? "true" : "false", db_param_i64(b6, alive_s), js};
    PGresult *res;
    int r = db_exec(
        db,
        "WITH v0 AS (SELECT v.id FROM vms v LEFT JOIN hosts h ON h.id = v.host_id"
        "   WHERE v.id = $1 AND ($5::boolean OR h.heartbeat_at IS NULL"
        "     OR h.heartbeat_at <= now() - make_interval(secs => $6)) FOR UPDATE OF v),"
        " it AS (SELECT id FROM tasks WHERE id = $4 AND state = 'running'),"
        " v AS (UPDATE vms SET host_id = $2, disk_path = $3, desired_power = 'running',"
        "   state = 'provisioning', actual_power = 'off', qemu_pid = NULL, last_error = '',"
        "   updated_at = now()"
        "   WHERE id = (SELECT id FROM v0) AND EXISTS (SELECT 1 FROM it) RETURNING id),"
        " r AS (UPDATE vm_replication SET enabled = false, recovered_at = now(), updated_at = now()"
        "   WHERE vm_id = (SELECT id FROM v) RETURNING vm_id),"
        " c AS (UPDATE tasks SET state = 'cancelled', finished_at = now(),"
        "   error = 'the VM was recovered on another host'"
        "   WHERE vm_id = (SELECT id FROM v) AND kind IN ('vm.replicate', 'vm.replicate_in')"
        "   AND state IN ('queued', 'running') RETURNING id),"
        " t AS (UPDATE tasks SET state = 'succeeded', progress = 100, error = '',"
        "   message = 'recovered', result = result || $7::jsonb, finished_at = now(),"
        "   heartbeat_at = now() WHERE id = $4 AND EXISTS (SELECT 1 FROM v) RETURNING id)"
        " SELECT (SELECT count(*) FROM v), (SELECT count(*) FROM v0), (SELECT count(*) FROM c),"
        "   (SELECT count(*) FROM r), (SELECT count(*) FROM t)",
        7, p, &res, NULL);
    free(js);
    if (r < 0)
        return r;
    if (db_get_i64(res, 0, 0) == 0)
        r = db_get_i64(res, 0, 1) == 0 ? -EADDRINUSE : -ENOENT;
    PQclear(res);
    return r;
}
