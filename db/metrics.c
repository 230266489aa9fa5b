/*
 * Metric samples for the console's charts.  Each reply is one statement
 * whose single row is the whole JSON answer, or no row at all when the
 * host or VM does not exist (so "no such host" and "no samples yet" cannot
 * be confused).  The newest @limit samples are chosen by the partial
 * indexes on (host_id, at) and (vm_id, at), then put oldest first for
 * drawing.  CPU is rounded to 0.01 %: the column is a real, whose binary
 * noise (78.42158000000001) means nothing on a chart.
 */
#include "db-priv.h"

#include <errno.h>

#define SAMPLE_COUNTERS                                                                            \
    " s.disk_rd_bytes, s.disk_wr_bytes, s.disk_rd_ops, s.disk_wr_ops, s.net_rx_bytes,"             \
    " s.net_tx_bytes"

/* Run @sql (one row, one JSON text column, or no row) into *ret. */
static int reply_query(struct db *db, const char *sql, const char *const *p, json_t **ret)
{
    PGresult *res;
    int r = db_exec_one(db, sql, 4, p, &res);
    if (r < 0)
        return r;
    json_t *v = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    PQclear(res);
    if (!v)
        return -ENOMEM;
    *ret = v;
    return 0;
}

int db_metrics_host(struct db *db, int64_t host_id, const char *since, int window_s, int limit,
                    json_t **ret_reply)
{
    if (limit < 1 || window_s < 1)
        return -EINVAL;
    char b1[24], b3[24], b4[24];
    const char *p[] = {db_param_i64(b1, host_id), since, db_param_i64(b3, window_s),
                       db_param_i64(b4, limit)};
    return reply_query(
        db,
        "WITH w AS (SELECT s.at, round(s.cpu_pct::numeric, 2) AS cpu_pct, s.mem_used_mb, "
        "s.mem_total_mb, s.vm_count," SAMPLE_COUNTERS " FROM metric_samples s"
        "  WHERE s.host_id = $1 AND s.vm_id IS NULL"
        "  AND s.at > coalesce($2::timestamptz, now() - make_interval(secs => $3::int))"
        "  ORDER BY s.at DESC LIMIT $4::int + 1)"
        " SELECT json_build_object('host_id', h.id, 'name', h.name, 'now', now(),"
        "  'truncated', (SELECT count(*) FROM w) > $4::int,"
        "  'items', coalesce((SELECT json_agg(x ORDER BY x.at) FROM"
        "   (SELECT * FROM w ORDER BY at DESC LIMIT $4::int) x), '[]'))::text"
        " FROM hosts h WHERE h.id = $1",
        p, ret_reply);
}

int db_metrics_vm(struct db *db, int64_t vm_id, const char *since, int window_s, int limit,
                  json_t **ret_reply)
{
    if (limit < 1 || window_s < 1)
        return -EINVAL;
    char b1[24], b3[24], b4[24];
    const char *p[] = {db_param_i64(b1, vm_id), since, db_param_i64(b3, window_s),
                       db_param_i64(b4, limit)};
    return reply_query(
        db,
        "WITH w AS (SELECT s.at, s.host_id, round(s.cpu_pct::numeric, 2) AS cpu_pct,"
        " s.mem_used_mb, s.balloon_mb," SAMPLE_COUNTERS " FROM metric_samples s"
        "  WHERE s.vm_id = $1"
        "  AND s.at > coalesce($2::timestamptz, now() - make_interval(secs => $3::int))"
        "  ORDER BY s.at DESC LIMIT $4::int + 1)"
        " SELECT json_build_object('vm_id', v.id, 'name', v.name, 'memory_mb', v.memory_mb,"
        "  'vcpus', v.vcpus, 'now', now(),"
        "  'truncated', (SELECT count(*) FROM w) > $4::int,"
        "  'items', coalesce((SELECT json_agg(x ORDER BY x.at) FROM"
        "   (SELECT * FROM w ORDER BY at DESC LIMIT $4::int) x), '[]'))::text"
        " FROM vms v WHERE v.id = $1",
        p, ret_reply);
}
