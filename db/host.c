/* Hosts: registration, heartbeat, listing. */
#include "db-priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOST_COLUMNS                                                                               \
    "h.id, h.name, h.address, h.state, h.cpus, h.memory_mb, h.cpu_capacity,"                       \
    " h.memory_capacity_mb, h.accel, h.accel_note, h.version,"                                     \
    " (extract(epoch from h.heartbeat_at) * 1000000)::bigint,"                                     \
    " (extract(epoch from now() - h.heartbeat_at) * 1000)::bigint,"                                \
    " (SELECT count(*) FROM vms v WHERE v.host_id = h.id),"                                        \
    " (SELECT count(*) FROM vms v WHERE v.host_id = h.id"                                          \
    "    AND v.actual_power IN ('starting', 'running', 'paused'))"

static void copy(char *dst, size_t size, const PGresult *res, int row, int col)
{
    const char *v = db_get(res, row, col);
    snprintf(dst, size, "%s", v ? v : "");
}

static void host_from_row(const PGresult *res, int row, void *elem)
{
    struct db_host *h = elem;
    memset(h, 0, sizeof(*h));
    h->id = db_get_i64(res, row, 0);
    copy(h->name, sizeof(h->name), res, row, 1);
    copy(h->address, sizeof(h->address), res, row, 2);
    copy(h->state, sizeof(h->state), res, row, 3);
    h->cpus = (int)db_get_i64(res, row, 4);
    h->memory_mb = db_get_i64(res, row, 5);
    h->cpu_capacity = (int)db_get_i64(res, row, 6);
    h->memory_capacity_mb = db_get_i64(res, row, 7);
    copy(h->accel, sizeof(h->accel), res, row, 8);
    copy(h->accel_note, sizeof(h->accel_note), res, row, 9);
    copy(h->version, sizeof(h->version), res, row, 10);
    h->heartbeat_at_us = db_get_i64(res, row, 11);
    h->heartbeat_age_ms = db_get(res, row, 12) ? db_get_i64(res, row, 12) : -1;
    h->vm_count = (int)db_get_i64(res, row, 13);
    h->vms_running = (int)db_get_i64(res, row, 14);
}

int db_host_register(struct db *db, const struct db_host_reg *reg, int64_t *ret_id)
{
    if (!reg->name || !reg->accel)
        return -EINVAL;
    char b1[24], b2[24];
    const char *p[] = {reg->name,
                       reg->address ? reg->address : "",
                       db_param_i64(b1, reg->cpus),
                       db_param_i64(b2, reg->memory_mb),
                       reg->accel,
                       reg->accel_note ? reg->accel_note : "",
                       reg->version ? reg->version : ""};
    PGresult *res;
    /* One statement, so two hostd racing on one name still get one row.
     * An admin's capacity override and maintenance state survive restarts. */
    int r = db_exec(db,
                    "INSERT INTO hosts (name, address, cpus, memory_mb, cpu_capacity,"
                    " memory_capacity_mb, accel, accel_note, version, state, heartbeat_at)"
                    " VALUES ($1, $2, $3::int, $4::bigint, $3::int, $4::bigint, $5, $6, $7,"
                    " 'online', now())"
                    " ON CONFLICT (name) DO UPDATE SET address = EXCLUDED.address,"
                    " cpus = EXCLUDED.cpus, memory_mb = EXCLUDED.memory_mb,"
                    " cpu_capacity = CASE WHEN hosts.cpu_capacity = 0"
                    "   THEN EXCLUDED.cpu_capacity ELSE hosts.cpu_capacity END,"
                    " memory_capacity_mb = CASE WHEN hosts.memory_capacity_mb = 0"
                    "   THEN EXCLUDED.memory_capacity_mb ELSE hosts.memory_capacity_mb END,"
                    " accel = EXCLUDED.accel, accel_note = EXCLUDED.accel_note,"
                    " version = EXCLUDED.version,"
                    " state = CASE WHEN hosts.state = 'maintenance' THEN 'maintenance'"
                    "   ELSE 'online' END,"
                    " heartbeat_at = now()"
                    " RETURNING id",
                    7, p, &res, NULL);
    if (r < 0)
        return r;
    *ret_id = db_get_i64(res, 0, 0);
    PQclear(res);
    return 0;
}

int db_host_heartbeat(struct db *db, int64_t id)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, id)};
    return db_exec_changed(db, "UPDATE hosts SET heartbeat_at = now() WHERE id = $1", 1, p);
}

int db_host_set_state(struct db *db, int64_t id, const char *state)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, id), state};
    return db_exec_changed(db, "UPDATE hosts SET state = $2 WHERE id = $1", 2, p);
}

static int get_one(struct db *db, const char *sql, const char *param, struct db_host *ret)
{
    const char *p[] = {param};
    return db_exec_row(db, sql, 1, p, host_from_row, ret);
}

int db_host_get(struct db *db, int64_t id, struct db_host *ret)
{
    char b1[24];
    return get_one(db, "SELECT " HOST_COLUMNS " FROM hosts h WHERE h.id = $1", db_param_i64(b1, id),
                   ret);
}

int db_host_get_by_name(struct db *db, const char *name, struct db_host *ret)
{
    return get_one(db, "SELECT " HOST_COLUMNS " FROM hosts h WHERE h.name = $1", name, ret);
}

int db_host_list(struct db *db, struct db_host **ret_hosts, size_t *ret_n)
{
    return db_exec_rows(db, "SELECT " HOST_COLUMNS " FROM hosts h ORDER BY h.name", 0, NULL,
                        sizeof(**ret_hosts), host_from_row, (void **)ret_hosts, ret_n);
}

/* Negative = not measured: JSON null, then the column default (or NULL). */
static json_t *jint(int64_t v)
{
    return v < 0 ? json_null() : json_integer(v);
}

int db_host_metrics_insert(struct db *db, const struct db_metric_sample *s, size_t n)
{
    /* Rows travel as one JSON array and are unpacked server-side, so a
     * sample of every VM is one round trip and one statement. */
    json_t *arr = json_array();
    if (!arr)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_pack(
            "{s:I, s:o, s:f, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "host_id",
            (json_int_t)s[i].host_id, "vm_id", s[i].vm_id ? json_integer(s[i].vm_id) : json_null(),
            "cpu_pct", s[i].cpu_pct, "mem_used_mb", jint(s[i].mem_used_mb), "mem_total_mb",
            jint(s[i].mem_total_mb), "balloon_mb", jint(s[i].balloon_mb), "disk_rd_bytes",
            jint(s[i].disk_rd_bytes), "disk_wr_bytes", jint(s[i].disk_wr_bytes), "disk_rd_ops",
            jint(s[i].disk_rd_ops), "disk_wr_ops", jint(s[i].disk_wr_ops), "net_rx_bytes",
            jint(s[i].net_rx_bytes), "net_tx_bytes", jint(s[i].net_tx_bytes), "vm_count",
            jint(s[i].vm_count));
        if (!o || json_array_append_new(arr, o) < 0) {
            json_decref(arr);
            return -ENOMEM;
        }
    }
    char *text = atr_json_dumps(arr);
    json_decref(arr);
    if (!text)
        return -ENOMEM;
    const char *p[] = {text};
    int r = db_exec(db,
                    "INSERT INTO metric_samples (host_id, vm_id, cpu_pct, mem_used_mb,"
                    " mem_total_mb, balloon_mb, disk_rd_bytes, disk_wr_bytes, disk_rd_ops,"
                    " disk_wr_ops, net_rx_bytes, net_tx_bytes, vm_count)"
                    " SELECT host_id, vm_id, cpu_pct, coalesce(mem_used_mb, 0),"
                    " coalesce(mem_total_mb, 0), balloon_mb, coalesce(disk_rd_bytes, 0),"
                    " coalesce(disk_wr_bytes, 0), coalesce(disk_rd_ops, 0),"
                    " coalesce(disk_wr_ops, 0), coalesce(net_rx_bytes, 0),"
                    " coalesce(net_tx_bytes, 0), vm_count"
                    " FROM jsonb_to_recordset($1::jsonb) AS x(host_id bigint, vm_id bigint,"
                    " cpu_pct real, mem_used_mb bigint, mem_total_mb bigint, balloon_mb bigint,"
                    " disk_rd_bytes bigint, disk_wr_bytes bigint, disk_rd_ops bigint,"
                    " disk_wr_ops bigint, net_rx_bytes bigint, net_tx_bytes bigint,"
                    " vm_count integer)"
                    " WHERE vm_id IS NULL OR EXISTS (SELECT 1 FROM vms WHERE vms.id = x.vm_id)",
                    1, p, NULL, NULL);
    free(text);
    return r;
}

int db_host_metrics_prune(struct db *db, int64_t host_id, int hours)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, host_id), db_param_i64(b2, hours)};
    PGresult *res;
    int r = db_exec(db,
                    "DELETE FROM metric_samples WHERE host_id = $1"
                    " AND at < now() - make_interval(hours => $2::int)",
                    2, p, &res, NULL);
    if (r < 0)
        return r;
    r = atoi(PQcmdTuples(res));
    PQclear(res);
    return r;
}
