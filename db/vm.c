/* VMs: definition, desired state, hostd's reports. */
#include "db-priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VM_COLUMNS                                                                                 \
    "id, name, pool_id, host_id, image_version_id, assigned_user_id, state, desired_power,"        \
    " actual_power, vcpus, memory_mb, disk_gb, disk_path, boot, boot_kernel, boot_initrd,"         \
    " boot_cmdline, nic_mode, bridge, mac::text, qemu_pid,"                                        \
    " (extract(epoch from qemu_started_at) * 1000000)::bigint, last_error,"                        \
    " (extract(epoch from state_changed_at) * 1000000)::bigint,"                                   \
    " (extract(epoch from created_at) * 1000000)::bigint,"                                         \
    " (extract(epoch from updated_at) * 1000000)::bigint, balloon_mb, resources_gen, applied_gen," \
    " cpu_weight, cpu_max_pct, memory_max_mb, disk_iops, disk_bps, net_bps, boosted,"              \
    " source_snapshot"

static void copy(char *dst, size_t size, const PGresult *res, int row, int col)
{
    const char *v = db_get(res, row, col);
    snprintf(dst, size, "%s", v ? v : "");
}

static void vm_from_row(const PGresult *res, int row, struct db_vm *v)
{
    memset(v, 0, sizeof(*v));
    v->id = db_get_i64(res, row, 0);
    copy(v->name, sizeof(v->name), res, row, 1);
    v->pool_id = db_get_i64(res, row, 2);
    v->host_id = db_get_i64(res, row, 3);
    v->image_version_id = db_get_i64(res, row, 4);
    v->assigned_user_id = db_get_i64(res, row, 5);
    copy(v->state, sizeof(v->state), res, row, 6);
    copy(v->desired_power, sizeof(v->desired_power), res, row, 7);
    copy(v->actual_power, sizeof(v->actual_power), res, row, 8);
    v->vcpus = (int)db_get_i64(res, row, 9);
    v->memory_mb = (int)db_get_i64(res, row, 10);
    v->disk_gb = (int)db_get_i64(res, row, 11);
    copy(v->disk_path, sizeof(v->disk_path), res, row, 12);
    copy(v->boot, sizeof(v->boot), res, row, 13);
    copy(v->boot_kernel, sizeof(v->boot_kernel), res, row, 14);
    copy(v->boot_initrd, sizeof(v->boot_initrd), res, row, 15);
    copy(v->boot_cmdline, sizeof(v->boot_cmdline), res, row, 16);
    copy(v->nic_mode, sizeof(v->nic_mode), res, row, 17);
    copy(v->bridge, sizeof(v->bridge), res, row, 18);
    copy(v->mac, sizeof(v->mac), res, row, 19);
    v->qemu_pid = (int)db_get_i64(res, row, 20);
    v->qemu_started_at_us = db_get_i64(res, row, 21);
    copy(v->last_error, sizeof(v->last_error), res, row, 22);
    v->state_changed_at_us = db_get_i64(res, row, 23);
    v->created_at_us = db_get_i64(res, row, 24);
    v->updated_at_us = db_get_i64(res, row, 25);
    v->balloon_mb = (int)db_get_i64(res, row, 26);
    v->resources_gen = (int)db_get_i64(res, row, 27);
    v->applied_gen = (int)db_get_i64(res, row, 28);
    v->cpu_weight = (int)db_get_i64(res, row, 29);
    v->cpu_max_pct = (int)db_get_i64(res, row, 30);
    v->memory_max_mb = (int)db_get_i64(res, row, 31);
    v->disk_iops = (int)db_get_i64(res, row, 32);
    v->disk_bps = db_get_i64(res, row, 33);
    v->net_bps = db_get_i64(res, row, 34);
    const char *b = db_get(res, row, 35);
    v->boosted = b && b[0] == 't';
    copy(v->source_snapshot, sizeof(v->source_snapshot), res, row, 36);
}

int db_vm_create(struct db *db, const struct db_vm_new *v, int64_t *ret_id)
{
    if (!v->name)
        return -EINVAL;
    char b1[24], b2[24], b3[24], b4[24], b5[24];
    const char *p[] = {v->name,
                       db_param_id(b1, v->host_id),
                       db_param_id(b2, v->pool_id),
                       db_param_id(b3, v->image_version_id),
                       v->vcpus > 0 ? db_param_i64(b4, v->vcpus) : NULL,
                       v->memory_mb > 0 ? db_param_i64(b5, v->memory_mb) : NULL,
                       v->disk_path,
                       v->boot,
                       v->boot_kernel,
                       v->boot_initrd,
                       v->boot_cmdline,
                       v->nic_mode,
                       v->bridge,
                       v->desired_power,
                       v->source_snapshot};
    PGresult *res;
    /* coalesce() keeps the column defaults (the schema's) for what the
     * caller left out, in a single statement. */
    int r = db_exec(db,
                    "INSERT INTO vms (name, host_id, pool_id, image_version_id, vcpus, memory_mb,"
                    " disk_path, boot, boot_kernel, boot_initrd, boot_cmdline, nic_mode, bridge,"
                    " desired_power, source_snapshot) VALUES ($1, $2, $3, $4, coalesce($5::int, 2),"
                    " coalesce($6::int, 2048), coalesce($7, ''), coalesce($8, 'disk'),"
                    " coalesce($9, ''), coalesce($10, ''), coalesce($11, ''),"
                    " coalesce($12, 'user'), coalesce($13, ''), coalesce($14, 'running'),"
                    " coalesce($15, ''))"
                    " RETURNING id",
                    15, p, &res, NULL);
    if (r < 0)
        return r;
    *ret_id = db_get_i64(res, 0, 0);
    PQclear(res);
    return 0;
}

static int get_one(struct db *db, const char *sql, const char *param, struct db_vm *ret)
{
    const char *p[] = {param};
    PGresult *res;
    int r = db_exec_one(db, sql, 1, p, &res);
    if (r < 0)
        return r;
    vm_from_row(res, 0, ret);
    PQclear(res);
    return 0;
}

int db_vm_get(struct db *db, int64_t id, struct db_vm *ret)
{
    char b1[24];
    return get_one(db, "SELECT " VM_COLUMNS " FROM vms WHERE id = $1", db_param_i64(b1, id), ret);
}

int db_vm_get_by_name(struct db *db, const char *name, struct db_vm *ret)
{
    return get_one(db, "SELECT " VM_COLUMNS " FROM vms WHERE name = $1", name, ret);
}

int db_vm_list(struct db *db, int64_t host_id, struct db_vm **ret_vms, size_t *ret_n)
{
    char b1[24];
    const char *p[] = {db_param_id(b1, host_id)};
    PGresult *res;
    int r = db_exec(db,
                    "SELECT " VM_COLUMNS " FROM vms WHERE $1::bigint IS NULL OR host_id = $1"
                    " ORDER BY name",
                    1, p, &res, NULL);
    if (r < 0)
        return r;
    size_t n = (size_t)PQntuples(res);
    struct db_vm *vms = calloc(n ? n : 1, sizeof(*vms));
    if (!vms) {
        PQclear(res);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        vm_from_row(res, (int)i, &vms[i]);
    PQclear(res);
    *ret_vms = vms;
    *ret_n = n;
    return 0;
}

static int update_one(struct db *db, const char *sql, int n, const char *const *p)
{
    PGresult *res;
    int r = db_exec(db, sql, n, p, &res, NULL);
    if (r < 0)
        return r;
    r = strcmp(PQcmdTuples(res), "1") == 0 ? 0 : -ENOENT;
    PQclear(res);
    return r;
}

int db_vm_found(struct db *db, int64_t id, bool running)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, id), running ? "t" : "f"};
    return db_exec_changed(
        db,
        "WITH c AS (SELECT v.id, v.lost_state, v.assigned_user_id, p.assignment,"
        "     (SELECT s.state FROM desktop_sessions s WHERE s.vm_id = v.id"
        "       AND s.state <> 'ended') AS sess"
        "   FROM vms v LEFT JOIN pools p ON p.id = v.pool_id"
        "   WHERE v.id = $1 AND v.state = 'lost' FOR UPDATE OF v),"
        " n AS (SELECT id, sess, CASE"
        "     WHEN sess IS NOT NULL THEN sess"
        "     WHEN lost_state IN ('assigned', 'connected', 'disconnected', 'logging_off') THEN"
        "       CASE WHEN assignment = 'dedicated' AND assigned_user_id IS NOT NULL"
        "         THEN 'assigned' ELSE 'logging_off' END"
        "     WHEN lost_state IS NULL OR lost_state IN ('ready', 'provisioning', 'booting',"
        "       'stopped') THEN CASE WHEN $2::boolean THEN 'ready' ELSE 'stopped' END"
        "     ELSE lost_state END AS st FROM c)"
        " UPDATE vms SET state = n.st, lost_state = NULL,"
        "   assigned_user_id = CASE WHEN n.st = 'logging_off' AND n.sess IS NULL"
        "     THEN NULL ELSE vms.assigned_user_id END,"
        "   assigned_at = CASE WHEN n.st = 'logging_off' AND n.sess IS NULL"
        "     THEN NULL ELSE vms.assigned_at END,"
        "   last_error = ''"
        " FROM n WHERE vms.id = n.id",
        2, p);
}

int db_vm_report(struct db *db, int64_t id, const struct db_vm_report *rep)
{
    char b1[24], b2[24], b3[24];
    const char *p[] = {db_param_i64(b1, id), rep->state,
                       rep->actual_power,    db_param_i64(b2, rep->qemu_pid),
                       rep->last_error,      db_param_i64(b3, rep->applied_gen)};
    /* IS DISTINCT FROM: a report that changes nothing writes nothing, so
     * hostd's own reports do not wake every listener again. */
    int r = update_one(db,
                       "UPDATE vms SET state = coalesce($2, state),"
                       " actual_power = coalesce($3, actual_power),"
                       " qemu_pid = CASE WHEN $4::int < 0 THEN qemu_pid"
                       "   WHEN $4::int = 0 THEN NULL ELSE $4::int END,"
                       " qemu_started_at = CASE WHEN $4::int < 0 THEN qemu_started_at"
                       "   WHEN $4::int = 0 THEN NULL"
                       "   WHEN qemu_pid IS DISTINCT FROM $4::int THEN now()"
                       "   ELSE qemu_started_at END,"
                       " last_error = coalesce($5, last_error),"
                       " applied_gen = CASE WHEN $6::int <= 0 THEN applied_gen ELSE $6::int END"
                       " WHERE id = $1 AND (state IS DISTINCT FROM coalesce($2, state)"
                       "   OR actual_power IS DISTINCT FROM coalesce($3, actual_power)"
                       "   OR ($4::int >= 0 AND qemu_pid IS DISTINCT FROM nullif($4::int, 0))"
                       "   OR last_error IS DISTINCT FROM coalesce($5, last_error)"
                       "   OR ($6::int > 0 AND applied_gen IS DISTINCT FROM $6::int))",
                       6, p);
    if (r == -ENOENT) {
        /* Nothing changed, or no such row: tell the two apart. */
        struct db_vm v;
        return db_vm_get(db, id, &v);
    }
    return r;
}

int db_vm_set_desired(struct db *db, int64_t id, const char *desired)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, id), desired};
    return update_one(db,
                      "UPDATE vms SET desired_power = $2,"
                      " state = CASE WHEN state = 'failed' AND $2 IN ('running', 'paused')"
                      "   THEN 'stopped' ELSE state END"
                      " WHERE id = $1",
                      2, p);
}

int db_vm_set_balloon(struct db *db, int64_t id, int balloon_mb)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, id), balloon_mb > 0 ? db_param_i64(b2, balloon_mb) : NULL};
    PGresult *res;
    int r = db_exec(db,
                    "UPDATE vms SET balloon_mb = $2::int, resources_gen = resources_gen + 1"
                    " WHERE id = $1 AND ($2::int IS NULL OR $2::int <= memory_mb)",
                    2, p, &res, NULL);
    if (r < 0)
        return r;
    r = strcmp(PQcmdTuples(res), "1") == 0 ? 0 : -EINVAL;
    PQclear(res);
    if (r == -EINVAL) {
        struct db_vm v;
        int g = db_vm_get(db, id, &v);
        if (g < 0)
            return g;
    }
    return r;
}

int db_vm_delete(struct db *db, int64_t id)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, id)};
    return update_one(db, "DELETE FROM vms WHERE id = $1", 1, p);
}

int db_vm_disk_owner(struct db *db, const char *disk_path, int64_t *ret_host_id)
{
    const char *slash = strrchr(disk_path, '/');
    const char *p[] = {disk_path, slash ? slash + 1 : disk_path};
    PGresult *res;
    /* The same file name under another spelling of the directory (a
     * symlink, a doubled slash) counts too: overlay names are VM names,
     * which are never reused, so this only ever errs on keeping a file. */
    int r = db_exec(db,
                    "SELECT coalesce(host_id, 0) FROM vms WHERE disk_path = $1"
                    " OR right(disk_path, length($2) + 1) = '/' || $2"
                    " ORDER BY disk_path = $1 DESC LIMIT 1",
                    2, p, &res, NULL);
    if (r < 0)
        return r;
    if (PQntuples(res) == 1)
        *ret_host_id = db_get_i64(res, 0, 0);
    else
        r = -ENOENT;
    PQclear(res);
    return r;
}

/* A limit as a parameter: NULL (unchanged) when < 0, else its text (0 = lift). */
static const char *limit_param(char buf[static 24], int64_t v)
{
    if (v < 0)
        return NULL;
    snprintf(buf, 24, "%lld", (long long)v);
    return buf;
}

int db_vm_set_resources(struct db *db, int64_t id, const struct db_vm_resources *res)
{
    if (res->cpu_weight > 10000 || (res->memory_max_mb > 0 && res->memory_max_mb < 64))
        return -EINVAL;
    char b1[24], b2[24], b3[24], b4[24], b5[24], b6[24], b7[24];
    const char *p[] = {db_param_i64(b1, id),
                       res->cpu_weight > 0 ? db_param_i64(b2, res->cpu_weight) : NULL,
                       limit_param(b3, res->cpu_max_pct),
                       limit_param(b4, res->memory_max_mb),
                       limit_param(b5, res->disk_iops),
                       limit_param(b6, res->disk_bps),
                       limit_param(b7, res->net_bps)};
    /* nullif(.., 0): 0 lifts a limit, stored as NULL like a VM that never had one. */
    return update_one(db,
                      "UPDATE vms SET cpu_weight = coalesce($2::int, cpu_weight),"
                      " cpu_max_pct = CASE WHEN $3::int IS NULL THEN cpu_max_pct"
                      "   ELSE nullif($3::int, 0) END,"
                      " memory_max_mb = CASE WHEN $4::int IS NULL THEN memory_max_mb"
                      "   ELSE nullif($4::int, 0) END,"
                      " disk_iops = CASE WHEN $5::int IS NULL THEN disk_iops"
                      "   ELSE nullif($5::int, 0) END,"
                      " disk_bps = CASE WHEN $6::bigint IS NULL THEN disk_bps"
                      "   ELSE nullif($6::bigint, 0) END,"
                      " net_bps = CASE WHEN $7::bigint IS NULL THEN net_bps"
                      "   ELSE nullif($7::bigint, 0) END,"
                      " resources_gen = resources_gen + 1"
                      " WHERE id = $1",
                      7, p);
}

int db_vm_boost(struct db *db, int64_t id, bool on)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, id), on ? "true" : "false"};
    /* Every VM of the host gets a new generation: their weights depend on
     * whether a neighbour is boosted. */
    return db_exec_changed(db,
                           "UPDATE vms SET boosted = (id = $1 AND $2::boolean),"
                           " resources_gen = resources_gen + 1"
                           " WHERE id = $1 OR host_id = (SELECT host_id FROM vms WHERE id = $1)",
                           2, p);
}
