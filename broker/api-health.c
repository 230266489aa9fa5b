/* /healthz and /metrics: for load balancers and Prometheus, no log-in. */
#include "broker-priv.h"

#include <errno.h>
#include <stdlib.h>

int brk_api_healthz(struct brk_request *req, struct brk_reply *rep)
{
    /* A round trip, not just "we hold a connection": a broker whose
     * database stopped answering must leave the load balancer's pool. */
    int r = db_admin_ping(req->conn->db);
    if (r < 0)
        return brk_reply_json(
            rep, 503, json_pack("{s:s, s:s}", "status", "unavailable", "database", "unreachable"));
    return brk_reply_json(rep, 200, json_pack("{s:s, s:s}", "status", "ok", "database", "ok"));
}

int brk_api_metrics(struct brk_request *req, struct brk_reply *rep)
{
    json_t *stats = NULL;
    /* Without the database the process counters are still worth a scrape. */
    if (db_admin_stats(req->conn->db, &stats) < 0)
        stats = NULL;
    char *text = brk_metrics_render(stats);
    json_decref(stats);
    if (!text)
        return -ENOMEM;
    rep->status = 200;
    rep->text = text;
    rep->content_type = "text/plain; version=0.0.4; charset=utf-8";
    return 0;
}
