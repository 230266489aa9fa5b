/* Live migration between hosts: the rows the two hostds meet through. */
#include "db-priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int db_migration_request(struct db *db, int64_t vm_id, int64_t to_host_id, bool copy_storage,
                         int64_t created_by, int64_t *ret_task)
{
    struct db_migration_req req = {.vm_id = vm_id,
                                   .to_host_id = to_host_id,
                                   .copy_storage = copy_storage,
                                   .created_by = created_by};
    return db_migration_request_opts(db, &req, ret_task);
}

int db_migration_request_opts(struct db *db, const struct db_migration_req *req, int64_t *ret_task)
{
    char b1[24], b2[24], b3[24], b4[24];
    const char *p[] = {db_param_i64(b1, req->vm_id), db_param_i64(b2, req->to_host_id),
                       db_param_id(b3, req->created_by), req->copy_storage ? "true" : "false",
                       db_param_i64(b4, req->max_bandwidth_mbs)};
    PGresult *res;
    /* One statement: two admins asking at once get one task, the other
     * -EBUSY (the partial unique index cannot be used here without a
     * migration of the schema, so the row lock on the VM serialises). */
    int r =
        db_exec(db,
                "WITH v AS (SELECT id, host_id FROM vms WHERE id = $1 FOR UPDATE),"
                " h AS (SELECT id FROM hosts WHERE id = $2),"
                " busy AS (SELECT 1 FROM tasks WHERE vm_id = $1"
                "   AND kind IN ('vm.migrate', 'vm.migrate_in')"
                "   AND state IN ('queued', 'running')),"
                " t AS (INSERT INTO tasks (kind, host_id, vm_id, params, created_by)"
                "   SELECT 'vm.migrate', v.host_id, v.id, jsonb_build_object('to_host', $2::bigint,"
                "     'copy_storage', $4::boolean) || CASE WHEN $5::int > 0"
                "     THEN jsonb_build_object('max_bandwidth_mbs', $5::int) ELSE '{}' END,"
                "     $3 FROM v, h WHERE v.host_id IS NOT NULL AND v.host_id <> $2"
                "     AND NOT EXISTS (SELECT 1 FROM busy) RETURNING id)"
                " SELECT (SELECT count(*) FROM v), (SELECT count(*) FROM h),"
                "   (SELECT count(*) FROM busy), (SELECT id FROM t)",
                5, p, &res, NULL);
    if (r < 0)
        return r;
    if (db_get_i64(res, 0, 0) == 0 || db_get_i64(res, 0, 1) == 0)
        r = -ENOENT;
    else if (db_get_i64(res, 0, 2) > 0)
        r = -EBUSY;
    else if (db_get_i64(res, 0, 3) == 0)
        r = -ENXIO;
    else if (ret_task)
        *ret_task = db_get_i64(res, 0, 3);
    PQclear(res);
    return r;
}

int db_migration_listening(struct db *db, int64_t src_task, const char *uri, const char *nbd,
                           const char *disk)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, src_task), uri, nbd ? nbd : "", disk ? disk : ""};
    return db_exec_changed(
        db,
        "UPDATE tasks SET result = result || jsonb_build_object('uri', $2::text, 'nbd', $3::text,"
        " 'disk', $4::text),"
        " progress = GREATEST(progress, 10),"
        " message = 'the destination is listening', heartbeat_at = now()"
        " WHERE id = $1 AND state = 'running'",
        4, p);
}

int db_migration_spice_channels(struct db *db, int64_t src_task, int n)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, src_task), db_param_i64(b2, n)};
    /* tasks_notify speaks only of state and progress: wake the source here */
    return db_exec_changed(db,
                           "WITH u AS (UPDATE tasks SET result = result || jsonb_build_object("
                           "'spice_channels', $2::int), heartbeat_at = now()"
                           " WHERE id = $1 AND state = 'running' RETURNING id, host_id)"
                           " SELECT pg_notify('atrium_task', u.id::text || ':' ||"
                           " coalesce(u.host_id::text, '')) FROM u",
                           2, p);
}

int db_migration_commit(struct db *db, int64_t vm_id, int64_t from_host, int64_t to_host,
                        int64_t src_task, const char *new_disk_path, const json_t *result)
{
    char *res_json = result ? atr_json_dumps(result) : strdup("{}");
    if (!res_json)
        return -ENOMEM;
    char b1[24], b2[24], b3[24], b4[24];
    const char *p[] = {db_param_i64(b1, vm_id),
                       db_param_i64(b2, from_host),
                       db_param_i64(b3, to_host),
                       db_param_i64(b4, src_task),
                       res_json,
                       new_disk_path && new_disk_path[0] ? new_disk_path : NULL};
    /* The task is finished even if an admin cancelled it a moment ago:
     * the guest already runs on the destination, which is what happened. */
    int r = db_exec_changed(db,
                            "WITH v AS (UPDATE vms SET host_id = $3, qemu_pid = NULL,"
                            "   disk_path = coalesce($6, disk_path)"
                            "   WHERE id = $1 AND host_id = $2 RETURNING id),"
                            " t AS (UPDATE tasks SET state = 'succeeded', progress = 100,"
                            "   error = '', message = 'migrated',"
                            "   result = result || $5::jsonb, finished_at = now(),"
                            "   heartbeat_at = now() WHERE id = $4 AND EXISTS (SELECT 1 FROM v)"
                            "   RETURNING id)"
                            " SELECT id FROM v",
                            6, p);
    free(res_json);
    return r;
}

int db_migration_cancel(struct db *db, int64_t vm_id, int64_t *ret_task)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, vm_id)};
    PGresult *res;
    int r = db_exec(db,
                    "UPDATE tasks SET state = 'cancelled', finished_at = now(),"
                    " error = 'cancelled by an admin'"
                    " WHERE vm_id = $1 AND kind = 'vm.migrate' AND state IN ('queued', 'running')"
                    " RETURNING id",
                    1, p, &res, NULL);
    if (r < 0)
        return r;
    r = PQntuples(res) > 0 ? 0 : -ENOENT;
    if (r == 0 && ret_task)
        *ret_task = db_get_i64(res, 0, 0);
    PQclear(res);
    return r;
}

int db_migration_drain(struct db *db, int64_t host_id, int64_t *ret_task)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, host_id)};
    PGresult *res;
    /* One statement, so two hostd turns cannot queue two migrations. */
    int r = db_exec(
        db,
        "WITH me AS (SELECT id FROM hosts WHERE id = $1 AND state = 'maintenance'"
        "   AND NOT EXISTS (SELECT 1 FROM tasks WHERE host_id = $1 AND kind = 'vm.migrate'"
        "     AND state IN ('queued', 'running'))),"
        " vm AS (SELECT v.id FROM vms v, me WHERE v.host_id = me.id"
        "   AND v.actual_power IN ('running', 'paused')"
        "   AND v.desired_power IN ('running', 'paused')"
        "   AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.vm_id = v.id"
        "     AND t.kind IN ('vm.migrate', 'vm.migrate_in')"
        "     AND (t.state IN ('queued', 'running') OR (t.state = 'failed'"
        "       AND t.finished_at > now() - interval '60 seconds')))"
        "   ORDER BY v.id LIMIT 1),"
        " tgt AS (SELECT h.id FROM hosts h WHERE h.state = 'online' AND h.id <> $1"
        "   AND h.heartbeat_at > now() - interval '10 seconds'"
        "   ORDER BY (CASE WHEN h.memory_capacity_mb > 0 THEN h.memory_capacity_mb"
        "     ELSE h.memory_mb END)"
        "     - coalesce((SELECT sum(memory_mb) FROM vms WHERE host_id = h.id), 0) DESC, h.id"
        "   LIMIT 1)"
        " INSERT INTO tasks (kind, host_id, vm_id, params)"
        "   SELECT 'vm.migrate', $1, vm.id,"
        "     jsonb_build_object('to_host', tgt.id, 'reason', 'maintenance')"
        "   FROM vm, tgt RETURNING id",
        1, p, &res, NULL);
    if (r < 0)
        return r;
    r = PQntuples(res) > 0 ? 1 : 0;
    if (r && ret_task)
        *ret_task = db_get_i64(res, 0, 0);
    PQclear(res);
    return r;
}
