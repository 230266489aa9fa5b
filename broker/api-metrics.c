/*
 * The samples hostd records, for the console's live charts:
 *   GET /api/v1/hosts/{id}/metrics?since=&limit=
 *   GET /api/v1/vms/{id}/metrics?since=&limit=
 * Read-only, for the roles that may read the inventory (the route table
 * checks).  A chart asks once without "since" (the last 15 minutes), then
 * polls with the newest "at" it holds, so each poll carries only the new
 * samples; "limit" bounds every reply (newest samples kept, "truncated"
 * says when some were left out).  The query values go through the same
 * fuzzed parsers as the list filters (input.c).
 */
#include "broker-priv.h"

#include <errno.h>

#define METRICS_WINDOW_S (15 * 60)
#define METRICS_LIMIT_DEFAULT 360 /* 30 minutes at hostd's default 5 s interval */

typedef int (*metrics_fn)(struct db *db, int64_t id, const char *since, int window_s, int limit,
                          json_t **ret_reply);

/* @not_found: the 404's sentence ("no such host"). */
static int metrics_reply(struct brk_request *req, struct brk_reply *rep, metrics_fn fn,
                         const char *not_found)
{
    struct db_page page;
    const char *since;
    char why[200];
    if (brk_page_parse(&req->query, &page, why, sizeof(why)) < 0 ||
        brk_filter_time(&req->query, "since", &since, why, sizeof(why)) < 0)
        return brk_reply_error(rep, 400, "bad_request", why);
    if (page.offset != 0)
        return brk_reply_error(rep, 400, "bad_request",
                               "offset is not used here: ask for newer samples with since");
    const char *given = req->query.get ? req->query.get(req->query.userdata, "limit") : NULL;
    int limit = given ? page.limit : METRICS_LIMIT_DEFAULT;

    json_t *body = NULL;
    int r = fn(req->conn->db, req->ids[0], since, METRICS_WINDOW_S, limit, &body);
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "not_found", not_found);
    if (r == -EINVAL)
        return brk_reply_error(rep, 400, "bad_request", "since is not a valid time");
    if (r < 0)
        return r;
    return brk_reply_json(rep, 200, body);
}

int brk_api_host_metrics(struct brk_request *req, struct brk_reply *rep)
{
    return metrics_reply(req, rep, db_metrics_host, "no such host");
}

int brk_api_vm_metrics(struct brk_request *req, struct brk_reply *rep)
{
    return metrics_reply(req, rep, db_metrics_vm, "no such VM");
}
