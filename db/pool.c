/* Pools and golden-image versions: typed queries for pool-manager/. */
#include "db-priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const proto_names[] = {"spice", "rdp", "vnc", "browser"};

unsigned db_protocol_from_name(const char *name)
{
    for (unsigned i = 0; i < 4; i++)
        if (name && strcmp(name, proto_names[i]) == 0)
            return 1u << i;
    return 0;
}

const char *db_protocol_name(unsigned proto)
{
    for (unsigned i = 0; i < 4; i++)
        if (proto == 1u << i)
            return proto_names[i];
    return NULL;
}

/* DB_PROTO_ bits -> "{spice,vnc}" (array literal of known words only). */
static void protocols_literal(unsigned bits, char buf[static 64])
{
    size_t len = 0;
    buf[len++] = '{';
    for (unsigned i = 0; i < 4; i++) {
        if (!(bits & (1u << i)))
            continue;
        if (len > 1)
            buf[len++] = ',';
        len += (size_t)snprintf(buf + len, 64 - len, "%s", proto_names[i]);
    }
    buf[len++] = '}';
    buf[len] = '\0';
}

/* "{spice,vnc}" as PostgreSQL prints text[] -> bits. */
static unsigned protocols_parse(const char *lit)
{
    unsigned bits = 0;
    char word[16];
    size_t w = 0;
    for (const char *p = lit; *p; p++) {
        if (*p == '{' || *p == '"')
            continue;
        if (*p == ',' || *p == '}') {
            word[w] = '\0';
            bits |= db_protocol_from_name(word);
            w = 0;
            continue;
        }
        if (w < sizeof(word) - 1)
            word[w++] = *p;
    }
    return bits;
}

#define POOL_COLUMNS                                                                               \
    "id, name, description, image_version_id, vcpus, memory_mb, disk_gb, protocols::text,"         \
    " assignment, min_size, max_size, spare, name_pattern, idle_timeout_s,"                        \
    " disconnect_timeout_s, power_policy, enabled, clone_mode"

static void pool_from_row(const PGresult *res, int row, void *elem)
{
    struct db_pool *p = elem;
    memset(p, 0, sizeof(*p));
    p->id = db_get_i64(res, row, 0);
    snprintf(p->name, sizeof(p->name), "%s", PQgetvalue(res, row, 1));
    snprintf(p->description, sizeof(p->description), "%s", PQgetvalue(res, row, 2));
    p->image_version_id = db_get_i64(res, row, 3);
    p->vcpus = (int)db_get_i64(res, row, 4);
    p->memory_mb = (int)db_get_i64(res, row, 5);
    p->disk_gb = (int)db_get_i64(res, row, 6);
    p->protocols = protocols_parse(PQgetvalue(res, row, 7));
    snprintf(p->assignment, sizeof(p->assignment), "%s", PQgetvalue(res, row, 8));
    p->min_size = (int)db_get_i64(res, row, 9);
    p->max_size = (int)db_get_i64(res, row, 10);
    p->spare = (int)db_get_i64(res, row, 11);
    snprintf(p->name_pattern, sizeof(p->name_pattern), "%s", PQgetvalue(res, row, 12));
    p->idle_timeout_s = (int)db_get_i64(res, row, 13);
    p->disconnect_timeout_s = (int)db_get_i64(res, row, 14);
    snprintf(p->power_policy, sizeof(p->power_policy), "%s", PQgetvalue(res, row, 15));
    p->enabled = strcmp(PQgetvalue(res, row, 16), "t") == 0;
    snprintf(p->clone_mode, sizeof(p->clone_mode), "%s", PQgetvalue(res, row, 17));
}

/* Parameters $1..$17 in POOL_COLUMNS order, without id. */
struct pool_params {
    char iv[24], vcpus[24], mem[24], disk[24], protos[64], min[24], max[24], spare[24], idle[24],
        disc[24];
    const char *v[17];
};

static void pool_params_fill(struct pool_params *pp, const struct db_pool *p)
{
    protocols_literal(p->protocols, pp->protos);
    const char *v[17] = {p->name,
                         p->description,
                         db_param_id(pp->iv, p->image_version_id),
                         db_param_i64(pp->vcpus, p->vcpus),
                         db_param_i64(pp->mem, p->memory_mb),
                         db_param_i64(pp->disk, p->disk_gb),
                         pp->protos,
                         p->assignment,
                         db_param_i64(pp->min, p->min_size),
                         db_param_i64(pp->max, p->max_size),
                         db_param_i64(pp->spare, p->spare),
                         p->name_pattern,
                         db_param_i64(pp->idle, p->idle_timeout_s),
                         db_param_i64(pp->disc, p->disconnect_timeout_s),
                         p->power_policy,
                         p->enabled ? "true" : "false",
                         p->clone_mode[0] ? p->clone_mode : "linked"};
    memcpy(pp->v, v, sizeof(v));
}

int db_pool_insert(struct db *db, const struct db_pool *p, int64_t *ret_id)
{
    struct pool_params pp;
    pool_params_fill(&pp, p);
    PGresult *res;
    int r = db_exec(db,
                    "INSERT INTO pools (name, description, image_version_id, vcpus, memory_mb,"
                    " disk_gb, protocols, assignment, min_size, max_size, spare, name_pattern,"
                    " idle_timeout_s, disconnect_timeout_s, power_policy, enabled, clone_mode)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7::text[], $8, $9, $10, $11, $12, $13,"
                    " $14, $15, $16, $17) RETURNING id",
                    17, pp.v, &res, NULL);
    if (r < 0)
        return r;
    *ret_id = db_get_i64(res, 0, 0);
    PQclear(res);
    return 0;
}

int db_pool_update(struct db *db, const struct db_pool *p)
{
    struct pool_params pp;
    pool_params_fill(&pp, p);
    char id[24];
    const char *v[18];
    memcpy(v, pp.v, sizeof(pp.v));
    v[17] = db_param_i64(id, p->id);
    return db_exec_changed(db,
                           "UPDATE pools SET name = $1, description = $2, image_version_id = $3,"
                           " vcpus = $4, memory_mb = $5, disk_gb = $6, protocols = $7::text[],"
                           " assignment = $8, min_size = $9, max_size = $10, spare = $11,"
                           " name_pattern = $12, idle_timeout_s = $13, disconnect_timeout_s = $14,"
                           " power_policy = $15, enabled = $16, clone_mode = $17 WHERE id = $18",
                           18, v);
}

static int pool_get_where(struct db *db, const char *sql, const char *param, struct db_pool *ret)
{
    const char *v[] = {param};
    return db_exec_row(db, sql, 1, v, pool_from_row, ret);
}

int db_pool_get(struct db *db, int64_t id, struct db_pool *ret)
{
    char b[24];
    return pool_get_where(db, "SELECT " POOL_COLUMNS " FROM pools WHERE id = $1",
                          db_param_i64(b, id), ret);
}

int db_pool_get_by_name(struct db *db, const char *name, struct db_pool *ret)
{
    return pool_get_where(db, "SELECT " POOL_COLUMNS " FROM pools WHERE name = $1", name, ret);
}

int db_pool_list(struct db *db, struct db_pool **ret_pools, size_t *ret_n)
{
    return db_exec_rows(db, "SELECT " POOL_COLUMNS " FROM pools ORDER BY name", 0, NULL,
                        sizeof(**ret_pools), pool_from_row, (void **)ret_pools, ret_n);
}

/*
 * Run @sql, a delete of row $1 guarded by "nobody uses it", written to
 * return (rows deleted, rows with that id still there): 0 when deleted,
 * -EBUSY when the row stays because it is in use, -ENOENT when there is none.
 */
static int delete_unless_used(struct db *db, const char *sql, int64_t id)
{
    char b[24];
    const char *v[] = {db_param_i64(b, id)};
    PGresult *res;
    int r = db_exec(db, sql, 1, v, &res, NULL);
    if (r < 0)
        return r;
    if (db_get_i64(res, 0, 0) == 1)
        r = 0;
    else
        r = db_get_i64(res, 0, 1) == 1 ? -EBUSY : -ENOENT;
    PQclear(res);
    return r;
}

int db_pool_delete(struct db *db, int64_t id)
{
    return delete_unless_used(
        db,
        "WITH d AS (DELETE FROM pools WHERE id = $1"
        "   AND NOT EXISTS (SELECT 1 FROM vms WHERE pool_id = $1) RETURNING id)"
        " SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM pools WHERE id = $1)",
        id);
}

/* ------------------------------------------------------------- images -- */

#define VERSION_COLUMNS                                                                            \
    "v.id, v.image_id, i.name, v.version, v.state, v.path, v.size_bytes,"                          \
    " v.virtual_size_bytes, v.sha256, v.boot_kernel, v.boot_initrd, v.boot_cmdline, v.notes"

static void version_from_row(const PGresult *res, int row, void *elem)
{
    struct db_image_version *v = elem;
    memset(v, 0, sizeof(*v));
    v->id = db_get_i64(res, row, 0);
    v->image_id = db_get_i64(res, row, 1);
    snprintf(v->image_name, sizeof(v->image_name), "%s", PQgetvalue(res, row, 2));
    v->version = (int)db_get_i64(res, row, 3);
    snprintf(v->state, sizeof(v->state), "%s", PQgetvalue(res, row, 4));
    snprintf(v->path, sizeof(v->path), "%s", PQgetvalue(res, row, 5));
    v->size_bytes = db_get_i64(res, row, 6);
    v->virtual_size_bytes = db_get_i64(res, row, 7);
    snprintf(v->sha256, sizeof(v->sha256), "%s", PQgetvalue(res, row, 8));
    snprintf(v->boot_kernel, sizeof(v->boot_kernel), "%s", PQgetvalue(res, row, 9));
    snprintf(v->boot_initrd, sizeof(v->boot_initrd), "%s", PQgetvalue(res, row, 10));
    snprintf(v->boot_cmdline, sizeof(v->boot_cmdline), "%s", PQgetvalue(res, row, 11));
    snprintf(v->notes, sizeof(v->notes), "%s", PQgetvalue(res, row, 12));
}

int db_image_version_new(struct db *db, const char *name, const char *notes, int64_t *ret_id,
                         int *ret_version)
{
    const char *v[] = {name, notes ? notes : ""};
    PGresult *res;
    /* The image row is created or locked (ON CONFLICT DO UPDATE takes its row
     * lock), so two imports of one image serialise.  The one that waited
     * still computes max(version) from its statement's snapshot and may hit
     * the (image_id, version) unique key: it simply runs again with a fresh
     * snapshot. */
    int r = -EEXIST;
    for (int attempt = 0; attempt < 5 && r == -EEXIST; attempt++)
        r = db_exec(db,
                    "WITH i AS (INSERT INTO images (name) VALUES ($1)"
                    "   ON CONFLICT (name) DO UPDATE SET updated_at = now() RETURNING id)"
                    " INSERT INTO image_versions (image_id, version, notes)"
                    " SELECT i.id, coalesce((SELECT max(version) FROM image_versions"
                    "   WHERE image_id = i.id), 0) + 1, $2 FROM i"
                    " RETURNING id, version",
                    2, v, &res, NULL);
    if (r < 0)
        return r;
    *ret_id = db_get_i64(res, 0, 0);
    *ret_version = (int)db_get_i64(res, 0, 1);
    PQclear(res);
    return 0;
}

int db_image_version_ready(struct db *db, const struct db_image_version *iv)
{
    char id[24], sz[24], vsz[24];
    const char *v[] = {db_param_i64(id, iv->id),
                       iv->path,
                       db_param_i64(sz, iv->size_bytes),
                       db_param_i64(vsz, iv->virtual_size_bytes),
                       iv->sha256,
                       iv->boot_kernel,
                       iv->boot_initrd,
                       iv->boot_cmdline};
    return db_exec_changed(
        db,
        "UPDATE image_versions SET state = 'ready', path = $2, size_bytes = $3,"
        " virtual_size_bytes = $4, sha256 = $5, boot_kernel = $6, boot_initrd = $7,"
        " boot_cmdline = $8 WHERE id = $1 AND state = 'importing'",
        8, v);
}

int db_image_version_failed(struct db *db, int64_t id, const char *error)
{
    char b[24];
    const char *v[] = {db_param_i64(b, id), error ? error : ""};
    return db_exec_changed(db,
                           "UPDATE image_versions SET state = 'failed', error = $2"
                           " WHERE id = $1 AND state = 'importing'",
                           2, v);
}

int db_image_version_get(struct db *db, int64_t id, struct db_image_version *ret)
{
    char b[24];
    const char *v[] = {db_param_i64(b, id)};
    return db_exec_row(db,
                       "SELECT " VERSION_COLUMNS " FROM image_versions v"
                       " JOIN images i ON i.id = v.image_id WHERE v.id = $1",
                       1, v, version_from_row, ret);
}

int db_image_version_list(struct db *db, const char *image_name,
                          struct db_image_version **ret_versions, size_t *ret_n)
{
    const char *v[] = {image_name};
    return db_exec_rows(db,
                        "SELECT " VERSION_COLUMNS " FROM image_versions v"
                        " JOIN images i ON i.id = v.image_id"
                        " WHERE $1::text IS NULL OR i.name = $1"
                        " ORDER BY i.name, v.version DESC",
                        1, v, sizeof(**ret_versions), version_from_row, (void **)ret_versions,
                        ret_n);
}

int db_image_version_delete(struct db *db, int64_t id)
{
    return delete_unless_used(db,
                              "WITH d AS (DELETE FROM image_versions WHERE id = $1"
                              "   AND NOT EXISTS (SELECT 1 FROM pools WHERE image_version_id = $1)"
                              "   AND NOT EXISTS (SELECT 1 FROM vms WHERE image_version_id = $1)"
                              "   RETURNING id)"
                              " SELECT (SELECT count(*) FROM d),"
                              " (SELECT count(*) FROM image_versions WHERE id = $1)",
                              id);
}

/* ------------------------------------------------- pool manager (poold) -- */

int db_pool_counts(struct db *db, int64_t pool_id, struct db_pool_counts *ret)
{
    char b[24];
    const char *v[] = {db_param_i64(b, pool_id)};
    PGresult *res;
    int r = db_exec(db,
                    "SELECT count(*) FILTER (WHERE state = 'ready' AND NOT image_stale),"
                    " count(*) FILTER (WHERE state IN ('provisioning', 'booting', 'refreshing')),"
                    " count(*) FILTER (WHERE state IN ('assigned', 'connected', 'disconnected',"
                    "   'logging_off')),"
                    " count(*) FILTER (WHERE state IN ('stopped', 'failed', 'lost', 'migrating')"
                    "   OR (state = 'ready' AND image_stale)),"
                    " count(*) FILTER (WHERE state = 'lost' AND lost_state IN ('ready',"
                    "   'provisioning', 'booting', 'refreshing')),"
                    " count(*)"
                    " FROM vms WHERE pool_id = $1 AND state <> 'deleting'"
                    " AND desired_power <> 'deleted'",
                    1, v, &res, NULL);
    if (r < 0)
        return r;
    ret->ready = (int)db_get_i64(res, 0, 0);
    ret->inflight = (int)db_get_i64(res, 0, 1);
    ret->in_use = (int)db_get_i64(res, 0, 2);
    ret->other = (int)db_get_i64(res, 0, 3);
    ret->held = (int)db_get_i64(res, 0, 4);
    ret->total = (int)db_get_i64(res, 0, 5);
    PQclear(res);
    return 0;
}

int db_pool_next_vm_number(struct db *db, int64_t pool_id, int64_t *ret_n)
{
    char b[24];
    const char *v[] = {db_param_i64(b, pool_id)};
    PGresult *res;
    int r = db_exec(db,
                    "UPDATE pools SET next_vm_number = next_vm_number + 1 WHERE id = $1"
                    " RETURNING next_vm_number - 1",
                    1, v, &res, NULL);
    if (r < 0)
        return r;
    if (PQntuples(res) == 1)
        *ret_n = db_get_i64(res, 0, 0);
    else
        r = -ENOENT;
    PQclear(res);
    return r;
}

int db_pool_set_status(struct db *db, int64_t pool_id, const char *status, const char *detail)
{
    char b[24];
    const char *v[] = {db_param_i64(b, pool_id), status, detail ? detail : ""};
    return db_exec(db,
                   "UPDATE pools SET status = $2, status_detail = $3 WHERE id = $1"
                   " AND (status <> $2 OR status_detail <> $3)",
                   3, v, NULL, NULL);
}

int db_pool_set_failing(struct db *db, int64_t pool_id, bool failing)
{
    char b[24];
    const char *v[] = {db_param_i64(b, pool_id), failing ? "true" : "false"};
    return db_exec(db,
                   "UPDATE pools SET failing_since = CASE WHEN $2::boolean"
                   " THEN coalesce(failing_since, now()) END WHERE id = $1",
                   2, v, NULL, NULL);
}

int db_pool_is_failing(struct db *db, int64_t pool_id, bool *ret)
{
    char b[24];
    const char *v[] = {db_param_i64(b, pool_id)};
    PGresult *res;
    int r =
        db_exec(db, "SELECT failing_since IS NOT NULL FROM pools WHERE id = $1", 1, v, &res, NULL);
    if (r < 0)
        return r;
    if (PQntuples(res) == 1)
        *ret = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    else
        r = -ENOENT;
    PQclear(res);
    return r;
}

int db_pool_failures(struct db *db, int64_t pool_id, int window_s, int *ret_n)
{
    char b1[24], b2[24];
    const char *v[] = {db_param_i64(b1, pool_id), db_param_i64(b2, window_s)};
    PGresult *res;
    /* Failures counted since the later of the window start and the last
     * time an admin cleared the pool, so clearing really gives a fresh start. */
    int r = db_exec(db,
                    "SELECT count(*) FROM audit_log WHERE action = 'pool.vm_failed'"
                    " AND target_type = 'pool' AND target_id = $1::text"
                    " AND at > now() - make_interval(secs => $2::int)"
                    " AND at > coalesce((SELECT max(at) FROM audit_log WHERE action = 'pool.clear'"
                    "   AND target_type = 'pool' AND target_id = $1::text), '-infinity')",
                    2, v, &res, NULL);
    if (r < 0)
        return r;
    *ret_n = (int)db_get_i64(res, 0, 0);
    PQclear(res);
    return 0;
}

static void room_from_row(const PGresult *res, int row, void *elem)
{
    struct db_host_room *h = elem;
    h->host_id = db_get_i64(res, row, 0);
    snprintf(h->name, sizeof(h->name), "%s", PQgetvalue(res, row, 1));
    h->free_memory_mb = db_get_i64(res, row, 2);
    h->free_vcpus = (int)db_get_i64(res, row, 3);
    h->pool_vms = (int)db_get_i64(res, row, 4);
}

int db_host_rooms(struct db *db, int64_t pool_id, int stale_s, int overcommit,
                  struct db_host_room **ret_rooms, size_t *ret_n)
{
    char b1[24], b2[24], b3[24];
    const char *v[] = {db_param_i64(b1, pool_id), db_param_i64(b2, stale_s),
                       db_param_i64(b3, overcommit)};
    return db_exec_rows(
        db,
        "SELECT h.id, h.name,"
        " h.memory_capacity_mb - coalesce(sum(v.memory_mb), 0),"
        " h.cpu_capacity * $3::int - coalesce(sum(v.vcpus), 0),"
        " count(v.id) FILTER (WHERE v.pool_id = $1)"
        " FROM hosts h LEFT JOIN vms v ON v.host_id = h.id"
        "   AND v.desired_power <> 'deleted' AND v.state NOT IN ('deleting', 'lost')"
        " WHERE h.state = 'online'"
        "   AND h.heartbeat_at > now() - make_interval(secs => $2::int)"
        " GROUP BY h.id ORDER BY 3 DESC, h.id",
        3, v, sizeof(**ret_rooms), room_from_row, (void **)ret_rooms, ret_n);
}

int db_vms_mark_lost(struct db *db, int stale_s)
{
    char b[24];
    const char *v[] = {db_param_i64(b, stale_s)};
    PGresult *res;
    int r = db_exec(db,
                    "UPDATE vms SET state = 'lost', lost_state = vms.state,"
                    " last_error = 'host ' || h.name || ' stopped sending heartbeats'"
                    " FROM hosts h WHERE vms.host_id = h.id"
                    " AND vms.state NOT IN ('lost', 'deleting')"
                    " AND (h.heartbeat_at IS NULL"
                    "      OR h.heartbeat_at < now() - make_interval(secs => $1::int))",
                    1, v, &res, NULL);
    if (r < 0)
        return r;
    r = atoi(PQcmdTuples(res));
    PQclear(res);
    return r;
}

static void brief_from_row(const PGresult *res, int row, void *elem)
{
    struct db_vm_brief *b = elem;
    b->id = db_get_i64(res, row, 0);
    b->host_id = db_get_i64(res, row, 1);
    snprintf(b->name, sizeof(b->name), "%s", PQgetvalue(res, row, 2));
    snprintf(b->state, sizeof(b->state), "%s", PQgetvalue(res, row, 3));
    snprintf(b->last_error, sizeof(b->last_error), "%s", PQgetvalue(res, row, 4));
}

static int briefs(struct db *db, const char *sql, int n, const char *const *v,
                  struct db_vm_brief **ret, size_t *ret_n)
{
    return db_exec_rows(db, sql, n, v, sizeof(**ret), brief_from_row, (void **)ret, ret_n);
}

#define BRIEF " RETURNING vms.id, coalesce(vms.host_id, 0), vms.name, vms.state, vms.last_error"

int db_pool_retire_broken(struct db *db, int64_t pool_id, struct db_vm_brief **ret, size_t *ret_n)
{
    char b[24];
    const char *v[] = {db_param_i64(b, pool_id)};
    return briefs(db,
                  "UPDATE vms SET state = 'deleting', desired_power = 'deleted',"
                  " assigned_user_id = NULL, assigned_at = NULL"
                  " WHERE pool_id = $1 AND (state = 'failed' OR (state = 'lost'"
                  "   AND EXISTS (SELECT 1 FROM hosts h WHERE h.id = vms.host_id"
                  "     AND h.fence_deadline_s = 0 AND h.state <> 'fenced')))"
                  " AND NOT EXISTS (SELECT 1 FROM desktop_sessions s WHERE s.vm_id = vms.id"
                  "   AND s.state <> 'ended')" BRIEF,
                  1, v, ret, ret_n);
}

int db_pool_retire_late(struct db *db, int64_t pool_id, int timeout_s, struct db_vm_brief **ret,
                        size_t *ret_n)
{
    char b1[24], b2[24];
    const char *v[] = {db_param_i64(b1, pool_id), db_param_i64(b2, timeout_s)};
    return briefs(db,
                  "UPDATE vms SET state = 'deleting', desired_power = 'deleted',"
                  " last_error = 'not ready within ' || $2::text || ' s (was ' || state || ')'"
                  " WHERE pool_id = $1 AND state IN ('provisioning', 'booting', 'refreshing')"
                  " AND state_changed_at < now() - make_interval(secs => $2::int)" BRIEF,
                  2, v, ret, ret_n);
}

int db_pool_retire_stale(struct db *db, int64_t pool_id, int64_t image_version_id,
                         struct db_vm_brief **ret, size_t *ret_n)
{
    char b1[24], b2[24];
    const char *v[] = {db_param_i64(b1, pool_id), db_param_i64(b2, image_version_id)};
    int r = db_exec(db,
                    "UPDATE vms SET image_stale = true WHERE pool_id = $1 AND NOT image_stale"
                    " AND image_version_id IS DISTINCT FROM $2::bigint"
                    " AND state <> 'deleting'",
                    2, v, NULL, NULL);
    if (r < 0)
        return r;
    /* Only spares nobody owns go now; a row an assignment is claiming this
     * instant is locked, and READ COMMITTED re-checks state after the wait. */
    return briefs(db,
                  "UPDATE vms SET state = 'deleting', desired_power = 'deleted'"
                  " WHERE pool_id = $1 AND image_stale AND assigned_user_id IS NULL"
                  " AND state IN ('ready', 'provisioning', 'booting', 'stopped')" BRIEF,
                  1, v, ret, ret_n);
}

int db_pool_after_logoff(struct db *db, int64_t pool_id, struct db_vm_brief **ret, size_t *ret_n)
{
    char b[24];
    const char *v[] = {db_param_i64(b, pool_id)};
    return briefs(
        db,
        "UPDATE vms SET"
        " state = CASE WHEN image_stale OR state = 'assigned' THEN 'deleting'"
        "              ELSE 'refreshing' END,"
        " desired_power = CASE WHEN image_stale OR state = 'assigned' THEN 'deleted'"
        "              ELSE desired_power END,"
        " assigned_user_id = CASE WHEN image_stale THEN NULL ELSE assigned_user_id END"
        " WHERE pool_id = $1 AND (state = 'logging_off'"
        "   OR (state = 'assigned' AND image_stale AND NOT EXISTS (SELECT 1"
        "       FROM desktop_sessions s WHERE s.vm_id = vms.id AND s.state <> 'ended')))" BRIEF,
        1, v, ret, ret_n);
}

int db_pool_drop_unplaced(struct db *db, int64_t pool_id)
{
    char b[24];
    const char *v[] = {db_param_i64(b, pool_id)};
    PGresult *res;
    int r = db_exec(db,
                    "DELETE FROM vms WHERE pool_id = $1 AND host_id IS NULL"
                    " AND state = 'deleting'",
                    1, v, &res, NULL);
    if (r < 0)
        return r;
    r = atoi(PQcmdTuples(res));
    PQclear(res);
    return r;
}

int db_pool_retire_extra(struct db *db, int64_t pool_id, int count, struct db_vm_brief **ret,
                         size_t *ret_n)
{
    char b1[24], b2[24];
    const char *v[] = {db_param_i64(b1, pool_id), db_param_i64(b2, count)};
    /* SKIP LOCKED: a spare an assignment is claiming right now is not ours */
    return briefs(db,
                  "UPDATE vms SET state = 'deleting', desired_power = 'deleted'"
                  " WHERE id IN (SELECT id FROM vms WHERE pool_id = $1"
                  "   AND assigned_user_id IS NULL AND state IN ('stopped', 'ready')"
                  "   ORDER BY state = 'ready', id DESC LIMIT $2 FOR UPDATE SKIP LOCKED)" BRIEF,
                  2, v, ret, ret_n);
}

static void fenced_vm_from_row(const PGresult *res, int row, void *elem)
{
    struct db_pool_fenced_vm *f = elem;
    memset(f, 0, sizeof(*f));
    f->id = db_get_i64(res, row, 0);
    f->host_id = db_get_i64(res, row, 1);
    snprintf(f->name, sizeof(f->name), "%s", PQgetvalue(res, row, 2));
    snprintf(f->host, sizeof(f->host), "%s", PQgetvalue(res, row, 3));
    snprintf(f->was, sizeof(f->was), "%s", PQgetvalue(res, row, 4));
    f->session_id = db_get_i64(res, row, 5);
}

int db_pool_retire_fenced(struct db *db, int64_t pool_id, struct db_pool_fenced_vm **ret,
                          size_t *ret_n)
{
    char b[24];
    const char *v[] = {db_param_i64(b, pool_id)};
    /* The fenced hosts' rows are share-locked: a hostd coming back
     * (db_host_heartbeat_unfence locks its row for update) either waits for
     * this statement, then deletes what it retired, or goes first, and then
     * its host is online again and nothing of it is retired here.  The
     * state the VM had before it was lost is reported, so the caller can
     * tell a spare from a desktop in use. */
    return db_exec_rows(
        db,
        "WITH f AS (SELECT id, name FROM hosts WHERE state = 'fenced' FOR SHARE),"
        " o AS (SELECT vms.id, f.name AS host,"
        "     CASE WHEN vms.state = 'lost' THEN coalesce(vms.lost_state, 'lost')"
        "          ELSE vms.state END AS was"
        "   FROM vms JOIN f ON f.id = vms.host_id"
        "   WHERE vms.pool_id = $1 AND vms.desired_power <> 'deleted'"
        "   FOR UPDATE OF vms),"
        " s AS (UPDATE desktop_sessions SET state = 'ended', ended_at = now(),"
        "     end_reason = 'host fenced', shadowed_at = NULL, shadowed_by = NULL"
        "   WHERE vm_id IN (SELECT id FROM o) AND state <> 'ended' RETURNING id, vm_id),"
        " v AS (UPDATE vms SET state = 'deleting', desired_power = 'deleted',"
        "     assigned_user_id = NULL, assigned_at = NULL,"
        "     last_error = 'host ' || o.host || ' was fenced'"
        "   FROM o WHERE vms.id = o.id RETURNING vms.id, vms.host_id, vms.name, o.host, o.was)"
        " SELECT v.id, v.host_id, v.name, v.host, v.was,"
        "   coalesce((SELECT s.id FROM s WHERE s.vm_id = v.id), 0)"
        " FROM v ORDER BY v.id",
        1, v, sizeof(**ret), fenced_vm_from_row, (void **)ret, ret_n);
}
