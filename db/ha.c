/* HA restart with fencing: host fence deadlines, fencing, moving HA VMs. */
#include "db-priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void copy(char *dst, size_t size, const PGresult *res, int row, int col)
{
    const char *v = db_get(res, row, col);
    snprintf(dst, size, "%s", v ? v : "");
}

int db_host_set_fence_deadline(struct db *db, int64_t host_id, int deadline_s)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, host_id), db_param_i64(b2, deadline_s)};
    return db_exec_changed(db, "UPDATE hosts SET fence_deadline_s = $2::int WHERE id = $1", 2, p);
}

int db_host_heartbeat_unfence(struct db *db, int64_t host_id, bool *ret_was_fenced)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, host_id)};
    PGresult *res;
    /* The host row's lock orders this against poold's move of a VM off a
     * fenced host (which locks the same row): whichever comes second sees
     * what the first did. */
    int r = db_exec_one(db,
                        "WITH o AS (SELECT id, state FROM hosts WHERE id = $1 FOR UPDATE)"
                        " UPDATE hosts h SET heartbeat_at = now(),"
                        "  state = CASE WHEN o.state = 'fenced' THEN 'online' ELSE h.state END"
                        " FROM o WHERE h.id = o.id RETURNING o.state = 'fenced'",
                        1, p, &res);
    if (r < 0)
        return r;
    *ret_was_fenced = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return 0;
}

static void fenced_from_row(const PGresult *res, int row, void *elem)
{
    struct db_fenced_host *h = elem;
    memset(h, 0, sizeof(*h));
    h->id = db_get_i64(res, row, 0);
    copy(h->name, sizeof(h->name), res, row, 1);
    h->heartbeat_age_ms = db_get_i64(res, row, 2);
    h->fence_deadline_s = (int)db_get_i64(res, row, 3);
}

int db_host_fence_stale(struct db *db, int margin_s, struct db_fenced_host **ret, size_t *ret_n)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, margin_s)};
    return db_exec_rows(
        db,
        "UPDATE hosts SET state = 'fenced', fenced_at = now()"
        " WHERE state <> 'fenced' AND fence_deadline_s > 0 AND heartbeat_at IS NOT NULL"
        "   AND heartbeat_at < now() - make_interval(secs => fence_deadline_s + $1::int)"
        "   AND pg_postmaster_start_time() < now() - make_interval(secs => fence_deadline_s + $1::int)"
        " RETURNING id, name, (extract(epoch from now() - heartbeat_at) * 1000)::bigint,"
        "   fence_deadline_s",
        1, p, sizeof(**ret), fenced_from_row, (void **)ret, ret_n);
}

static void move_from_row(const PGresult *res, int row, void *elem)
{
    struct db_ha_move *m = elem;
    memset(m, 0, sizeof(*m));
    m->vm_id = db_get_i64(res, row, 0);
    copy(m->vm_name, sizeof(m->vm_name), res, row, 1);
    copy(m->from_host, sizeof(m->from_host), res, row, 2);
    m->to_host_id = db_get_i64(res, row, 3);
    copy(m->to_host, sizeof(m->to_host), res, row, 4);
}

int db_vm_ha_restart_next(struct db *db, int stale_s, int cpu_overcommit, struct db_ha_move *ret)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, stale_s), db_param_i64(b2, cpu_overcommit)};
    /* The fenced host's row is locked with the VM's: hostd's heartbeat
     * (db_host_heartbeat_unfence) cannot make it online half-way. */
    int r = db_exec_row(
        db,
        "WITH room AS (SELECT h.id, h.name,"
        "     h.memory_capacity_mb - coalesce(sum(x.memory_mb), 0) AS mem,"
        "     h.cpu_capacity * $2::int - coalesce(sum(x.vcpus), 0) AS cpu"
        "   FROM hosts h LEFT JOIN vms x ON x.host_id = h.id"
        "     AND x.desired_power <> 'deleted' AND x.state NOT IN ('deleting', 'lost')"
        "   WHERE h.state = 'online' AND h.heartbeat_at > now() - make_interval(secs => $1::int)"
        "   GROUP BY h.id),"
        " v AS (SELECT vms.id, f.name AS from_name, room.id AS to_id, room.name AS to_name"
        "   FROM vms JOIN hosts f ON f.id = vms.host_id"
        "   JOIN room ON room.mem >= vms.memory_mb AND room.cpu >= vms.vcpus"
        "   WHERE f.state = 'fenced' AND vms.ha AND vms.desired_power IN ('running', 'paused')"
        "   ORDER BY vms.id, room.mem DESC, room.id LIMIT 1 FOR UPDATE OF vms, f SKIP LOCKED)"
        " UPDATE vms SET host_id = v.to_id, state = 'provisioning', actual_power = 'off',"
        "   qemu_pid = NULL, qemu_started_at = NULL,"
        "   last_error = 'restarted by HA: host ' || v.from_name || ' was fenced'"
        " FROM v WHERE vms.id = v.id"
        " RETURNING vms.id, vms.name, v.from_name, v.to_id, v.to_name",
        2, p, move_from_row, ret);
    if (r != -ENOENT)
        return r;
    /* Nothing moved: nothing waits, or no host has room for what does. */
    r = db_exec_row(db,
                    "SELECT vms.id, vms.name, h.name, 0, '' FROM vms JOIN hosts h"
                    " ON h.id = vms.host_id WHERE h.state = 'fenced' AND vms.ha"
                    " AND vms.desired_power IN ('running', 'paused') ORDER BY vms.id LIMIT 1",
                    0, NULL, move_from_row, ret);
    return r == 0 ? -ENOSPC : r;
}

int db_vm_set_ha(struct db *db, int64_t vm_id, bool on)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, vm_id), on ? "t" : "f"};
    return db_exec_changed(db, "UPDATE vms SET ha = $2::boolean WHERE id = $1", 2, p);
}

static void bool_from_row(const PGresult *res, int row, void *elem)
{
    *(bool *)elem = strcmp(PQgetvalue(res, row, 0), "t") == 0;
}

int db_vm_get_ha(struct db *db, int64_t vm_id, bool *ret_on)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, vm_id)};
    return db_exec_row(db, "SELECT ha FROM vms WHERE id = $1", 1, p, bool_from_row, ret_on);
}
