/* Snapshots: the catalogue rows and the tasks that act on them. */
#include "db-priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SNAP_COLUMNS                                                                               \
    "id, vm_id, task_id, name, description, with_ram, state, vm_power, size_bytes, error,"         \
    " (extract(epoch from created_at) * 1000000)::bigint"

static void copy(char *dst, size_t size, const PGresult *res, int row, int col)
{
    const char *v = db_get(res, row, col);
    snprintf(dst, size, "%s", v ? v : "");
}

static void snap_from_row(const PGresult *res, int row, void *elem)
{
    struct db_snapshot *s = elem;
    memset(s, 0, sizeof(*s));
    s->id = db_get_i64(res, row, 0);
    s->vm_id = db_get_i64(res, row, 1);
    s->task_id = db_get_i64(res, row, 2);
    copy(s->name, sizeof(s->name), res, row, 3);
    copy(s->description, sizeof(s->description), res, row, 4);
    const char *ram = db_get(res, row, 5);
    s->with_ram = ram && ram[0] == 't';
    copy(s->state, sizeof(s->state), res, row, 6);
    copy(s->vm_power, sizeof(s->vm_power), res, row, 7);
    s->size_bytes = db_get_i64(res, row, 8);
    copy(s->error, sizeof(s->error), res, row, 9);
    s->created_at_us = db_get_i64(res, row, 10);
}

int db_snapshot_request(struct db *db, int64_t vm_id, const char *name, bool with_ram,
                        const char *description, int64_t *ret_id, int64_t *ret_task)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, vm_id), name, with_ram ? "true" : "false",
                       description ? description : ""};
    PGresult *res;
    /* The task names the snapshot by (vm, name): it is inserted first, so
     * it cannot carry the snapshot's id.  A duplicate name fails the whole
     * statement, task included. */
    int r =
        db_exec_one(db,
                    "WITH v AS (SELECT id, host_id FROM vms WHERE id = $1 AND host_id IS NOT NULL),"
                    " t AS (INSERT INTO tasks (kind, host_id, vm_id, params)"
                    "   SELECT 'vm.snapshot.create', host_id, id,"
                    "     jsonb_build_object('name', $2::text, 'ram', $3::boolean) FROM v"
                    "   RETURNING id),"
                    " s AS (INSERT INTO snapshots (vm_id, name, with_ram, description, task_id)"
                    "   SELECT v.id, $2, $3::boolean, $4, t.id FROM v, t RETURNING id, task_id)"
                    " SELECT id, task_id FROM s",
                    4, p, &res);
    if (r == -ENOENT) {
        struct db_vm v;
        r = db_vm_get(db, vm_id, &v);
        return r < 0 ? r : -ENXIO;
    }
    if (r < 0)
        return r;
    if (ret_id)
        *ret_id = db_get_i64(res, 0, 0);
    if (ret_task)
        *ret_task = db_get_i64(res, 0, 1);
    PQclear(res);
    return 0;
}

int db_snapshot_get(struct db *db, int64_t id, struct db_snapshot *ret)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, id)};
    return db_exec_row(db, "SELECT " SNAP_COLUMNS " FROM snapshots WHERE id = $1", 1, p,
                       snap_from_row, ret);
}

int db_snapshot_get_by_name(struct db *db, int64_t vm_id, const char *name, struct db_snapshot *ret)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, vm_id), name};
    return db_exec_row(db, "SELECT " SNAP_COLUMNS " FROM snapshots WHERE vm_id = $1 AND name = $2",
                       2, p, snap_from_row, ret);
}

int db_snapshot_list(struct db *db, int64_t vm_id, struct db_snapshot **ret_snaps, size_t *ret_n)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, vm_id)};
    return db_exec_rows(db,
                        "SELECT " SNAP_COLUMNS " FROM snapshots WHERE vm_id = $1"
                        " ORDER BY created_at, id",
                        1, p, sizeof(struct db_snapshot), snap_from_row, (void **)ret_snaps, ret_n);
}

int db_snapshot_task(struct db *db, int64_t id, const char *kind, int64_t target_vm_id,
                     int64_t *ret_task)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, id), kind, db_param_i64(b2, target_vm_id)};
    PGresult *res;
    int r = db_exec_one(
        db,
        "WITH s AS (UPDATE snapshots SET state = CASE WHEN $2 = 'vm.snapshot.delete'"
        "     THEN 'deleting' ELSE state END"
        "   WHERE id = $1 AND (state = 'ready' OR ($2 = 'vm.snapshot.delete' AND state = 'failed'))"
        "   RETURNING id, vm_id, name)"
        " INSERT INTO tasks (kind, host_id, vm_id, params)"
        " SELECT $2, v.host_id, s.vm_id, jsonb_build_object('snapshot_id', s.id, 'name', s.name,"
        "   'target_vm_id', $3::bigint)"
        " FROM s JOIN vms v ON v.id = s.vm_id WHERE v.host_id IS NOT NULL RETURNING id",
        3, p, &res);
    if (r == -ENOENT) {
        struct db_snapshot s;
        r = db_snapshot_get(db, id, &s);
        return r < 0 ? r : -EBUSY;
    }
    if (r < 0)
        return r;
    if (ret_task)
        *ret_task = db_get_i64(res, 0, 0);
    PQclear(res);
    return 0;
}

int db_snapshot_report(struct db *db, int64_t id, const char *state, const char *error,
                       const char *vm_power, int64_t size_bytes)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, id), state, error, vm_power,
                       size_bytes >= 0 ? db_param_i64(b2, size_bytes) : NULL};
    return db_exec_changed(db,
                           "UPDATE snapshots SET state = coalesce($2, state),"
                           " error = coalesce($3, error), vm_power = coalesce($4, vm_power),"
                           " size_bytes = coalesce($5::bigint, size_bytes) WHERE id = $1",
                           5, p);
}

int db_snapshot_delete(struct db *db, int64_t id)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, id)};
    return db_exec_changed(db, "DELETE FROM snapshots WHERE id = $1", 1, p);
}

int db_snapshot_forget_vm(struct db *db, int64_t vm_id)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, vm_id)};
    PGresult *res;
    int r = db_exec(db, "DELETE FROM snapshots WHERE vm_id = $1", 1, p, &res, NULL);
    if (r < 0)
        return r;
    r = atoi(PQcmdTuples(res));
    PQclear(res);
    return r;
}
