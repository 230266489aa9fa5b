/*
 * The admin read API: lists with paging and filters.  Each handler checks
 * its query values (input.c) and hands them to one db_admin_ function as
 * parameters.  The route table has already checked the caller's role.
 *
 * Replies are {"items": [...], "limit": n, "offset": n} plus "next_offset"
 * when there is a further page: one row more than asked for is read to
 * know, which is cheaper than counting the whole table.
 */
#include "broker-priv.h"

#include <errno.h>

static const char *const host_states[] = {"online", "offline", "maintenance", "fenced", NULL};
static const char *const task_states[] = {"queued", "running",   "succeeded",
                                          "failed", "cancelled", NULL};
static const char *const outcomes[] = {"success", "failure", "denied", NULL};
static const char *const roles[] = {"admin", "operator", "user", NULL};
static const char *const vm_states[] = {
    "provisioning", "booting",     "ready",      "assigned", "connected",
    "disconnected", "logging_off", "refreshing", "stopped",  "failed",
    "migrating",    "deleting",    NULL};
static const char *const session_states[] = {"assigned",    "connected", "disconnected",
                                             "logging_off", "ended",     NULL};

/* The page as asked, and the page to read (one row more). */
static int page_of(struct brk_request *req, struct brk_reply *rep, struct db_page *ret_page,
                   struct db_page *ret_read)
{
    char why[200];
    if (brk_page_parse(&req->query, ret_page, why, sizeof(why)) < 0) {
        brk_reply_error(rep, 400, "bad_request", why);
        return -EINVAL;
    }
    *ret_read = *ret_page;
    ret_read->limit++;
    return 0;
}

/* Reply with a page of @items (stolen), or map a database error. */
static int list_reply(struct brk_reply *rep, int r, const struct db_page *page, json_t *items)
{
    if (r == -EINVAL)
        return brk_reply_error(rep, 400, "bad_request", "a filter value is not valid");
    if (r < 0)
        return r;
    json_t *body =
        json_pack("{s:i, s:I}", "limit", page->limit, "offset", (json_int_t)page->offset);
    if (!body) {
        json_decref(items);
        return -ENOMEM;
    }
    if (json_array_size(items) > (size_t)page->limit) {
        json_array_remove(items, (size_t)page->limit);
        json_object_set_new(body, "next_offset",
                            json_integer((json_int_t)(page->offset + page->limit)));
    }
    json_object_set_new(body, "items", items);
    return brk_reply_json(rep, 200, body);
}

#define BAD_FILTER(rep, why) brk_reply_error(rep, 400, "bad_request", why)

int brk_api_hosts(struct brk_request *req, struct brk_reply *rep)
{
    struct db_page page, rd;
    const char *state;
    char why[200];
    if (page_of(req, rep, &page, &rd) < 0)
        return 0;
    if (brk_filter_text(&req->query, "state", host_states, &state, why, sizeof(why)) < 0)
        return BAD_FILTER(rep, why);
    json_t *items = NULL;
    int r = db_admin_hosts(req->conn->db, &rd, state, &items);
    return list_reply(rep, r, &page, items);
}

int brk_api_tasks(struct brk_request *req, struct brk_reply *rep)
{
    struct db_page page, rd;
    const char *state, *kind;
    char why[200];
    if (page_of(req, rep, &page, &rd) < 0)
        return 0;
    if (brk_filter_text(&req->query, "state", task_states, &state, why, sizeof(why)) < 0 ||
        brk_filter_text(&req->query, "kind", NULL, &kind, why, sizeof(why)) < 0)
        return BAD_FILTER(rep, why);
    json_t *items = NULL;
    int r = db_admin_tasks(req->conn->db, &rd, state, kind, &items);
    return list_reply(rep, r, &page, items);
}

int brk_api_task_get(struct brk_request *req, struct brk_reply *rep)
{
    json_t *task = NULL;
    int r = db_admin_task_get(req->conn->db, req->ids[0], &task);
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "not_found", "no such task");
    if (r < 0)
        return r;
    return brk_reply_json(rep, 200, task);
}

int brk_api_audit(struct brk_request *req, struct brk_reply *rep)
{
    struct db_page page, rd;
    struct db_audit_filter f;
    char why[200];
    if (page_of(req, rep, &page, &rd) < 0)
        return 0;
    if (brk_filter_text(&req->query, "action", NULL, &f.action, why, sizeof(why)) < 0 ||
        brk_filter_text(&req->query, "actor", NULL, &f.actor, why, sizeof(why)) < 0 ||
        brk_filter_text(&req->query, "outcome", outcomes, &f.outcome, why, sizeof(why)) < 0 ||
        brk_filter_time(&req->query, "since", &f.since, why, sizeof(why)) < 0 ||
        brk_filter_time(&req->query, "until", &f.until, why, sizeof(why)) < 0)
        return BAD_FILTER(rep, why);
    json_t *items = NULL;
    int r = db_admin_audit(req->conn->db, &rd, &f, &items);
    return list_reply(rep, r, &page, items);
}

int brk_api_users(struct brk_request *req, struct brk_reply *rep)
{
    struct db_page page, rd;
    const char *role;
    char why[200];
    if (page_of(req, rep, &page, &rd) < 0)
        return 0;
    if (brk_filter_text(&req->query, "role", roles, &role, why, sizeof(why)) < 0)
        return BAD_FILTER(rep, why);
    json_t *items = NULL;
    int r = db_admin_users(req->conn->db, &rd, role, &items);
    return list_reply(rep, r, &page, items);
}

int brk_api_groups(struct brk_request *req, struct brk_reply *rep)
{
    struct db_page page, rd;
    if (page_of(req, rep, &page, &rd) < 0)
        return 0;
    json_t *items = NULL;
    int r = db_admin_groups(req->conn->db, &rd, &items);
    return list_reply(rep, r, &page, items);
}

int brk_api_pools(struct brk_request *req, struct brk_reply *rep)
{
    struct db_page page, rd;
    if (page_of(req, rep, &page, &rd) < 0)
        return 0;
    json_t *items = NULL;
    int r = db_admin_pools(req->conn->db, &rd, &items);
    return list_reply(rep, r, &page, items);
}

int brk_api_vms(struct brk_request *req, struct brk_reply *rep)
{
    struct db_page page, rd;
    struct db_vm_filter f;
    char why[200];
    if (page_of(req, rep, &page, &rd) < 0)
        return 0;
    if (brk_filter_id(&req->query, "pool", &f.pool_id, why, sizeof(why)) < 0 ||
        brk_filter_id(&req->query, "host", &f.host_id, why, sizeof(why)) < 0 ||
        brk_filter_text(&req->query, "state", vm_states, &f.state, why, sizeof(why)) < 0)
        return BAD_FILTER(rep, why);
    json_t *items = NULL;
    int r = db_admin_vms(req->conn->db, &rd, &f, &items);
    return list_reply(rep, r, &page, items);
}

int brk_api_sessions(struct brk_request *req, struct brk_reply *rep)
{
    struct db_page page, rd;
    struct db_session_filter f;
    char why[200];
    if (page_of(req, rep, &page, &rd) < 0)
        return 0;
    if (brk_filter_text(&req->query, "state", session_states, &f.state, why, sizeof(why)) < 0 ||
        brk_filter_id(&req->query, "user", &f.user_id, why, sizeof(why)) < 0 ||
        brk_filter_id(&req->query, "pool", &f.pool_id, why, sizeof(why)) < 0)
        return BAD_FILTER(rep, why);
    json_t *items = NULL;
    int r = db_admin_sessions(req->conn->db, &rd, &f, &items);
    return list_reply(rep, r, &page, items);
}

int brk_api_images(struct brk_request *req, struct brk_reply *rep)
{
    struct db_page page, rd;
    if (page_of(req, rep, &page, &rd) < 0)
        return 0;
    json_t *items = NULL;
    int r = db_admin_images(req->conn->db, &rd, &items);
    return list_reply(rep, r, &page, items);
}

int brk_api_entitlements(struct brk_request *req, struct brk_reply *rep)
{
    struct db_page page, rd;
    if (page_of(req, rep, &page, &rd) < 0)
        return 0;
    json_t *items = NULL;
    int r = db_admin_entitlements(req->conn->db, req->ids[0], &rd, &items);
    return list_reply(rep, r, &page, items);
}

int brk_api_group_members(struct brk_request *req, struct brk_reply *rep)
{
    struct db_page page, rd;
    if (page_of(req, rep, &page, &rd) < 0)
        return 0;
    json_t *items = NULL;
    int r = db_admin_group_members(req->conn->db, req->ids[0], &rd, &items);
    return list_reply(rep, r, &page, items);
}

int brk_api_replications(struct brk_request *req, struct brk_reply *rep)
{
    struct db_page page, rd;
    if (page_of(req, rep, &page, &rd) < 0)
        return 0;
    json_t *items = NULL;
    int r = db_replication_list_json(req->conn->db, &rd, &items);
    return list_reply(rep, r, &page, items);
}
