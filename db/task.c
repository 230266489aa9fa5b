/* Tasks: queue, claim (SKIP LOCKED), progress, finish, requeue after a crash. */
#include "db-priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TASK_COLUMNS                                                                               \
    "id, kind, state, host_id, vm_id, pool_id, image_version_id, created_by, progress,"            \
    " attempts, params::text, result::text, message, error, claimed_by,"                           \
    " (extract(epoch from created_at) * 1000000)::bigint,"                                         \
    " (extract(epoch from started_at) * 1000000)::bigint,"                                         \
    " (extract(epoch from finished_at) * 1000000)::bigint"

struct db_task *db_task_free(struct db_task *t)
{
    if (!t)
        return NULL;
    json_decref(t->params);
    json_decref(t->result);
    free(t->message);
    free(t->error);
    free(t);
    return NULL;
}

static int task_from_row(const PGresult *res, int row, struct db_task **ret)
{
    struct db_task *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->id = db_get_i64(res, row, 0);
    snprintf(t->kind, sizeof(t->kind), "%s", PQgetvalue(res, row, 1));
    snprintf(t->state, sizeof(t->state), "%s", PQgetvalue(res, row, 2));
    t->host_id = db_get_i64(res, row, 3);
    t->vm_id = db_get_i64(res, row, 4);
    t->pool_id = db_get_i64(res, row, 5);
    t->image_version_id = db_get_i64(res, row, 6);
    t->created_by = db_get_i64(res, row, 7);
    t->progress = (int)db_get_i64(res, row, 8);
    t->attempts = (int)db_get_i64(res, row, 9);
    t->params = json_loads(PQgetvalue(res, row, 10), 0, NULL);
    t->result = json_loads(PQgetvalue(res, row, 11), 0, NULL);
    t->message = strdup(PQgetvalue(res, row, 12));
    t->error = strdup(PQgetvalue(res, row, 13));
    snprintf(t->claimed_by, sizeof(t->claimed_by), "%s", PQgetvalue(res, row, 14));
    t->created_at_us = db_get_i64(res, row, 15);
    t->started_at_us = db_get_i64(res, row, 16);
    t->finished_at_us = db_get_i64(res, row, 17);
    if (!t->params || !t->result || !t->message || !t->error) {
        db_task_free(t);
        return -ENOMEM;
    }
    *ret = t;
    return 0;
}

int db_task_create(struct db *db, const struct db_task_new *t, int64_t *ret_id)
{
    if (!t->kind)
        return -EINVAL;
    char *params = t->params ? atr_json_dumps(t->params) : strdup("{}");
    if (!params)
        return -ENOMEM;
    char b1[24], b2[24], b3[24], b4[24], b5[24];
    const char *p[] = {t->kind,
                       db_param_id(b1, t->host_id),
                       db_param_id(b2, t->vm_id),
                       db_param_id(b3, t->pool_id),
                       db_param_id(b4, t->image_version_id),
                       db_param_id(b5, t->created_by),
                       params};
    PGresult *res;
    int r = db_exec(db,
                    "INSERT INTO tasks (kind, host_id, vm_id, pool_id, image_version_id,"
                    " created_by, params) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) RETURNING id",
                    7, p, &res, NULL);
    free(params);
    if (r < 0)
        return r;
    *ret_id = db_get_i64(res, 0, 0);
    PQclear(res);
    return 0;
}

/* Kinds travel as one text[] parameter in array literal syntax. */
static char *kinds_array(const char *const *kinds)
{
    size_t len = 3;
    for (const char *const *k = kinds; *k; k++)
        len += strlen(*k) * 2 + 3;
    char *s = malloc(len);
    if (!s)
        return NULL;
    char *p = s;
    *p++ = '{';
    for (const char *const *k = kinds; *k; k++) {
        if (k != kinds)
            *p++ = ',';
        *p++ = '"';
        for (const char *c = *k; *c; c++) {
            if (*c == '"' || *c == '\\')
                *p++ = '\\';
            *p++ = *c;
        }
        *p++ = '"';
    }
    *p++ = '}';
    *p = '\0';
    return s;
}

int db_task_claim(struct db *db, int64_t host_id, const char *const *kinds, const char *claimer,
                  struct db_task **ret_task)
{
    char *arr = kinds_array(kinds);
    if (!arr)
        return -ENOMEM;
    char b1[24];
    const char *p[] = {arr, db_param_id(b1, host_id), claimer ? claimer : ""};
    PGresult *res;
    /* One statement: the inner SELECT locks the oldest eligible row and
     * skips rows other claimers hold, so two daemons never get one task.
     * Two texts, not "host_id IS NOT DISTINCT FROM $2", so that each queue's
     * partial index gives the order without sorting the whole queue. */
    int r =
        db_exec(db,
                host_id ? "UPDATE tasks SET state = 'running', claimed_by = $3, started_at = now(),"
                          " heartbeat_at = now(), attempts = attempts + 1"
                          " WHERE id = (SELECT id FROM tasks WHERE state = 'queued'"
                          "   AND host_id = $2::bigint AND kind = ANY($1::text[])"
                          "   ORDER BY host_id, created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)"
                          " RETURNING " TASK_COLUMNS
                        : "UPDATE tasks SET state = 'running', claimed_by = $3, started_at = now(),"
                          " heartbeat_at = now(), attempts = attempts + 1"
                          " WHERE id = (SELECT id FROM tasks WHERE state = 'queued'"
                          "   AND host_id IS NULL AND $2::bigint IS NULL AND kind = ANY($1::text[])"
                          "   ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)"
                          " RETURNING " TASK_COLUMNS,
                3, p, &res, NULL);
    free(arr);
    if (r < 0)
        return r;
    if (PQntuples(res) == 0) {
        PQclear(res);
        return 0;
    }
    r = task_from_row(res, 0, ret_task);
    PQclear(res);
    return r < 0 ? r : 1;
}

int db_task_progress(struct db *db, int64_t id, int progress, const char *message)
{
    if (progress < 0)
        progress = 0;
    if (progress > 100)
        progress = 100;
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, id), db_param_i64(b2, progress), message};
    return db_exec_changed(db,
                           "UPDATE tasks SET progress = $2, message = coalesce($3, message),"
                           " heartbeat_at = now() WHERE id = $1 AND state = 'running'",
                           3, p);
}

int db_task_finish(struct db *db, int64_t id, const char *error, const json_t *result)
{
    char *res_json = result ? atr_json_dumps(result) : strdup("{}");
    if (!res_json)
        return -ENOMEM;
    char b1[24];
    const char *p[] = {db_param_i64(b1, id), error ? "failed" : "succeeded", error ? error : "",
                       res_json};
    PGresult *res;
    int r = db_exec(db,
                    "UPDATE tasks SET state = $2, error = $3, result = $4::jsonb,"
                    " progress = CASE WHEN $2 = 'succeeded' THEN 100 ELSE progress END,"
                    " finished_at = now(), heartbeat_at = now()"
                    " WHERE id = $1 AND state = 'running'",
                    4, p, &res, NULL);
    free(res_json);
    if (r < 0)
        return r;
    r = strcmp(PQcmdTuples(res), "1") == 0 ? 0 : -ENOENT;
    PQclear(res);
    return r;
}

int db_task_cancel(struct db *db, int64_t id)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, id)};
    return db_exec_changed(db,
                           "UPDATE tasks SET state = 'cancelled', finished_at = now()"
                           " WHERE id = $1 AND state IN ('queued', 'running')",
                           1, p);
}

int db_task_get(struct db *db, int64_t id, struct db_task **ret_task)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, id)};
    PGresult *res;
    int r = db_exec(db, "SELECT " TASK_COLUMNS " FROM tasks WHERE id = $1", 1, p, &res, NULL);
    if (r < 0)
        return r;
    r = PQntuples(res) == 1 ? task_from_row(res, 0, ret_task) : -ENOENT;
    PQclear(res);
    return r;
}

/*
 * Put the running tasks @where selects back in the queue, or fail them once
 * they were claimed DB_TASK_MAX_ATTEMPTS times (a task that kills its worker
 * must not do so forever).  One statement.  Returns how many it touched.
 */
static int requeue(struct db *db, const char *where, int nparams, const char *const *params)
{
    char sql[1024];
    /* $1 is always the attempt limit; @where uses $2.. (fixed texts only). */
    snprintf(sql, sizeof(sql),
             "UPDATE tasks SET"
             " state = CASE WHEN attempts < $1::int THEN 'queued' ELSE 'failed' END,"
             " claimed_by = CASE WHEN attempts < $1::int THEN '' ELSE claimed_by END,"
             " started_at = CASE WHEN attempts < $1::int THEN NULL ELSE started_at END,"
             " finished_at = CASE WHEN attempts < $1::int THEN NULL ELSE now() END,"
             " error = CASE WHEN attempts < $1::int THEN error"
             "   ELSE 'given up: its worker stopped ' || attempts || ' times while running it' END,"
             " message = CASE WHEN attempts < $1::int"
             "   THEN 'requeued: previous worker stopped responding' ELSE message END"
             " WHERE state = 'running' AND %s",
             where);
    char b1[24];
    const char *p[4] = {db_param_i64(b1, DB_TASK_MAX_ATTEMPTS)};
    for (int i = 0; i < nparams && i < 3; i++)
        p[i + 1] = params[i];
    PGresult *res;
    int r = db_exec(db, sql, nparams + 1, p, &res, NULL);
    if (r < 0)
        return r;
    r = atoi(PQcmdTuples(res));
    PQclear(res);
    return r;
}

int db_task_requeue_stale(struct db *db, int stale_s)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, stale_s)};
    return requeue(db, "heartbeat_at < now() - make_interval(secs => $2::int)", 1, p);
}

int db_task_requeue_host(struct db *db, int64_t host_id, const char *claimer)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, host_id), claimer};
    return requeue(db, "host_id = $2::bigint AND claimed_by <> $3", 2, p);
}

int db_task_heartbeat(struct db *db, const char *claimer)
{
    const char *p[] = {claimer};
    PGresult *res;
    int r = db_exec(db,
                    "UPDATE tasks SET heartbeat_at = now()"
                    " WHERE state = 'running' AND claimed_by = $1",
                    1, p, &res, NULL);
    if (r < 0)
        return r;
    r = atoi(PQcmdTuples(res));
    PQclear(res);
    return r;
}
