/*
 * Admin listings.  PostgreSQL builds each page as one JSON array (json_agg
 * over a sub-select), which keeps the column list in one place per resource
 * and spares the broker a struct per table that it would only turn back into
 * JSON.  Filters are parameters: "$n::text IS NULL OR col = $n" lets one
 * statement serve every combination, so no SQL is ever assembled from input.
 */
#include "db-priv.h"

#include <errno.h>
#include <stdlib.h>

/* Run @sql, whose one row and column is JSON text, and parse it into *ret. */
static int json_query(struct db *db, const char *sql, int n, const char *const *p, json_t **ret)
{
    PGresult *res;
    int r = db_exec_one(db, sql, n, p, &res);
    if (r < 0)
        return r;
    json_t *v = json_loads(PQgetvalue(res, 0, 0), JSON_DECODE_ANY, NULL);
    PQclear(res);
    if (!v)
        return -ENOMEM;
    *ret = v;
    return 0;
}

static int page_ok(const struct db_page *page)
{
    return page && page->limit >= 1 && page->offset >= 0 ? 0 : -EINVAL;
}

int db_admin_ping(struct db *db)
{
    return db_exec(db, "SELECT 1", 0, NULL, NULL, NULL);
}

int db_admin_hosts(struct db *db, const struct db_page *page, const char *state, json_t **ret_items)
{
    if (page_ok(page) < 0)
        return -EINVAL;
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, page->limit), db_param_i64(b2, page->offset), state};
    return json_query(db,
                      "SELECT coalesce(json_agg(t), '[]')::text FROM ("
                      " SELECT id, name, address, state, cpus, memory_mb, cpu_capacity,"
                      "  memory_capacity_mb, accel, accel_note, version, heartbeat_at,"
                      "  fence_deadline_s, fenced_at, created_at, updated_at FROM hosts"
                      " WHERE ($3::text IS NULL OR state = $3::text)"
                      " ORDER BY id LIMIT $1 OFFSET $2) t",
                      3, p, ret_items);
}

#define TASK_LIST_COLUMNS                                                                          \
    "id, kind, state, host_id, vm_id, pool_id, image_version_id, progress, message, error,"        \
    " attempts, claimed_by, created_by, created_at, started_at, finished_at"

int db_admin_tasks(struct db *db, const struct db_page *page, const char *state, const char *kind,
                   json_t **ret_items)
{
    if (page_ok(page) < 0)
        return -EINVAL;
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, page->limit), db_param_i64(b2, page->offset), state, kind};
    return json_query(db,
                      "SELECT coalesce(json_agg(t), '[]')::text FROM ("
                      " SELECT " TASK_LIST_COLUMNS " FROM tasks"
                      " WHERE ($3::text IS NULL OR state = $3::text)"
                      " AND ($4::text IS NULL OR kind = $4::text)"
                      " ORDER BY id DESC LIMIT $1 OFFSET $2) t",
                      4, p, ret_items);
}

int db_admin_task_get(struct db *db, int64_t id, json_t **ret_task)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, id)};
    json_t *v = NULL;
    int r = json_query(db,
                       "SELECT coalesce(json_agg(t), '[]')::text FROM ("
                       " SELECT " TASK_LIST_COLUMNS ", params, result FROM tasks"
                       " WHERE id = $1) t",
                       1, p, &v);
    if (r < 0)
        return r;
    if (json_array_size(v) != 1) {
        json_decref(v);
        return -ENOENT;
    }
    *ret_task = json_incref(json_array_get(v, 0));
    json_decref(v);
    return 0;
}

int db_admin_audit(struct db *db, const struct db_page *page, const struct db_audit_filter *f,
                   json_t **ret_items)
{
    if (page_ok(page) < 0 || !f)
        return -EINVAL;
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, page->limit),
                       db_param_i64(b2, page->offset),
                       f->action,
                       f->actor,
                       f->outcome,
                       f->since,
                       f->until};
    return json_query(db,
                      "SELECT coalesce(json_agg(t), '[]')::text FROM ("
                      " SELECT id, at, actor_user_id, actor, host(client_addr) AS client_addr,"
                      "  action, target_type, target_id, outcome, detail FROM audit_log"
                      " WHERE ($3::text IS NULL OR action = $3::text)"
                      " AND ($4::text IS NULL OR actor = $4::text)"
                      " AND ($5::text IS NULL OR outcome = $5::text)"
                      " AND ($6::timestamptz IS NULL OR at >= $6::timestamptz)"
                      " AND ($7::timestamptz IS NULL OR at < $7::timestamptz)"
                      " ORDER BY id DESC LIMIT $1 OFFSET $2) t",
                      7, p, ret_items);
}

int db_admin_users(struct db *db, const struct db_page *page, const char *role, json_t **ret_items)
{
    if (page_ok(page) < 0)
        return -EINVAL;
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, page->limit), db_param_i64(b2, page->offset), role};
    return json_query(db,
                      "SELECT coalesce(json_agg(t), '[]')::text FROM ("
                      " SELECT id, username, display_name, email, source, role, disabled,"
                      "  totp_enabled, failed_logins, locked_until, last_login_at, created_at"
                      " FROM users WHERE ($3::text IS NULL OR role = $3::text)"
                      " ORDER BY id LIMIT $1 OFFSET $2) t",
                      3, p, ret_items);
}

int db_admin_groups(struct db *db, const struct db_page *page, json_t **ret_items)
{
    if (page_ok(page) < 0)
        return -EINVAL;
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, page->limit), db_param_i64(b2, page->offset)};
    return json_query(db,
                      "SELECT coalesce(json_agg(t), '[]')::text FROM ("
                      " SELECT g.id, g.name, g.source, g.description, g.created_at,"
                      "  (SELECT count(*) FROM memberships m WHERE m.group_id = g.id) AS members"
                      " FROM groups g ORDER BY g.id LIMIT $1 OFFSET $2) t",
                      2, p, ret_items);
}

int db_admin_pools(struct db *db, const struct db_page *page, json_t **ret_items)
{
    if (page_ok(page) < 0)
        return -EINVAL;
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, page->limit), db_param_i64(b2, page->offset)};
    return json_query(
        db,
        "SELECT coalesce(json_agg(t), '[]')::text FROM ("
        " SELECT p.id, p.name, p.description, p.image_version_id, p.vcpus, p.memory_mb,"
        "  p.disk_gb, p.protocols, p.assignment, p.min_size, p.max_size, p.spare,"
        "  p.idle_timeout_s, p.disconnect_timeout_s, p.power_policy, p.enabled,"
        "  p.clone_mode AS clone,"
        "  p.created_at, p.updated_at,"
        "  (SELECT coalesce(json_object_agg(s.state, s.n), '{}') FROM"
        "    (SELECT state, count(*) AS n FROM vms WHERE pool_id = p.id GROUP BY state) s)"
        "   AS vm_states"
        " FROM pools p ORDER BY p.id LIMIT $1 OFFSET $2) t",
        2, p, ret_items);
}

int db_admin_vms(struct db *db, const struct db_page *page, const struct db_vm_filter *f,
                 json_t **ret_items)
{
    if (page_ok(page) < 0 || !f)
        return -EINVAL;
    char b1[24], b2[24], b3[24], b4[24];
    const char *p[] = {db_param_i64(b1, page->limit), db_param_i64(b2, page->offset),
                       db_param_id(b3, f->pool_id), db_param_id(b4, f->host_id), f->state};
    return json_query(
        db,
        "SELECT coalesce(json_agg(t), '[]')::text FROM ("
        " SELECT id, name, pool_id, host_id, image_version_id, state,"
        "  desired_power, actual_power, vcpus, memory_mb, disk_gb,"
        "  assigned_user_id, assigned_at, last_error, state_changed_at,"
        "  ha, created_at, (SELECT row_to_json(x) FROM (SELECT " DB_REPLICATION_JSON_COLUMNS
        " FROM " DB_REPLICATION_STATUS " s"
        "   WHERE s.vm_id = vms.id) x) AS replication FROM vms"
        " WHERE ($3::bigint IS NULL OR pool_id = $3::bigint)"
        " AND ($4::bigint IS NULL OR host_id = $4::bigint)"
        " AND ($5::text IS NULL OR state = $5::text)"
        " ORDER BY id LIMIT $1 OFFSET $2) t",
        5, p, ret_items);
}

int db_admin_sessions(struct db *db, const struct db_page *page, const struct db_session_filter *f,
                      json_t **ret_items)
{
    if (page_ok(page) < 0 || !f)
        return -EINVAL;
    char b1[24], b2[24], b3[24], b4[24];
    const char *p[] = {db_param_i64(b1, page->limit), db_param_i64(b2, page->offset), f->state,
                       db_param_id(b3, f->user_id), db_param_id(b4, f->pool_id)};
    return json_query(db,
                      "SELECT coalesce(json_agg(t), '[]')::text FROM ("
                      " SELECT s.id, s.user_id, u.username, s.pool_id, s.vm_id, s.state,"
                      "  s.protocol, host(s.client_addr) AS client_addr, s.client_name,"
                      "  s.started_at, s.connected_at, s.disconnected_at, s.ended_at,"
                      "  s.end_reason, s.disconnect_requested_at,"
                      "  s.shadowed_at IS NOT NULL AS shadowed, s.shadowed_at,"
                      "  (SELECT username FROM users WHERE id = s.shadowed_by) AS shadowed_by"
                      " FROM desktop_sessions s JOIN users u ON u.id = s.user_id"
                      " WHERE ($3::text IS NULL OR s.state = $3::text)"
                      " AND ($4::bigint IS NULL OR s.user_id = $4::bigint)"
                      " AND ($5::bigint IS NULL OR s.pool_id = $5::bigint)"
                      " ORDER BY s.id DESC LIMIT $1 OFFSET $2) t",
                      5, p, ret_items);
}

int db_admin_images(struct db *db, const struct db_page *page, json_t **ret_items)
{
    if (page_ok(page) < 0)
        return -EINVAL;
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, page->limit), db_param_i64(b2, page->offset)};
    return json_query(
        db,
        "SELECT coalesce(json_agg(t), '[]')::text FROM ("
        " SELECT i.id, i.name, i.description, i.os_type, i.created_at,"
        "  (SELECT coalesce(json_agg(v ORDER BY v.version DESC), '[]') FROM"
        "    (SELECT id, version, state, format, size_bytes, virtual_size_bytes, sha256,"
        "      notes, host_id, error, created_at FROM image_versions"
        "     WHERE image_id = i.id) v) AS versions"
        " FROM images i ORDER BY i.id LIMIT $1 OFFSET $2) t",
        2, p, ret_items);
}

int db_admin_group_members(struct db *db, int64_t group_id, const struct db_page *page,
                           json_t **ret_items)
{
    if (page_ok(page) < 0)
        return -EINVAL;
    char b1[24], b2[24], b3[24];
    const char *p[] = {db_param_i64(b1, page->limit), db_param_i64(b2, page->offset),
                       db_param_i64(b3, group_id)};
    return json_query(db,
                      "SELECT coalesce(json_agg(t), '[]')::text FROM ("
                      " SELECT u.id, u.username, u.display_name, u.source"
                      " FROM memberships m JOIN users u ON u.id = m.user_id"
                      " WHERE m.group_id = $3 ORDER BY u.username LIMIT $1 OFFSET $2) t",
                      3, p, ret_items);
}

int db_admin_entitlements(struct db *db, int64_t pool_id, const struct db_page *page,
                          json_t **ret_items)
{
    if (page_ok(page) < 0)
        return -EINVAL;
    char b1[24], b2[24], b3[24];
    const char *p[] = {db_param_i64(b1, page->limit), db_param_i64(b2, page->offset),
                       db_param_i64(b3, pool_id)};
    return json_query(db,
                      "SELECT coalesce(json_agg(t), '[]')::text FROM ("
                      " SELECT e.id, e.user_id, u.username, e.group_id, g.name AS group_name,"
                      "  e.created_at FROM entitlements e"
                      " LEFT JOIN users u ON u.id = e.user_id"
                      " LEFT JOIN groups g ON g.id = e.group_id"
                      " WHERE e.pool_id = $3 ORDER BY e.id LIMIT $1 OFFSET $2) t",
                      3, p, ret_items);
}

int db_admin_stats(struct db *db, json_t **ret_stats)
{
    return json_query(
        db,
        "SELECT json_build_object("
        " 'sessions', (SELECT coalesce(json_object_agg(state, n), '{}') FROM"
        "   (SELECT state, count(*) AS n FROM desktop_sessions GROUP BY state) s),"
        " 'vms', (SELECT coalesce(json_object_agg(state, n), '{}') FROM"
        "   (SELECT state, count(*) AS n FROM vms GROUP BY state) v),"
        " 'tickets', (SELECT json_build_object("
        "   'issued', count(*),"
        "   'used', count(*) FILTER (WHERE used_at IS NOT NULL),"
        "   'expired_unused', count(*) FILTER (WHERE used_at IS NULL AND expires_at <= now()))"
        "   FROM console_tickets))::text",
        0, NULL, ret_stats);
}
