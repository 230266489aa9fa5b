/*
 * Read side of the admin API (part of db.h; include "db.h", not this): one
 * listing per resource, with paging and filters that travel as parameters
 * ("$n IS NULL OR col = $n"), never as SQL text.  Rows come back as a JSON
 * array built by PostgreSQL (json_agg), with the columns an admin may see:
 * never password hashes, TOTP seeds or token hashes.
 *
 * Every list function takes a page (@limit rows after skipping @offset, in a
 * stable order: id descending for logs, ascending otherwise) and sets
 * *ret_items to a new JSON array.  A filter given as NULL (0 for ids) is not
 * applied.  A filter value that is not valid for its column's type (a time
 * that does not parse) gives -EINVAL.
 */
#pragma once

#include <jansson.h>
#include <stdint.h>

struct db;

struct db_page {
    int limit;      /* >= 1 */
    int64_t offset; /* >= 0 */
};

/* Round trip to the server (health checks).  0 or -errno. */
int db_admin_ping(struct db *db);

int db_admin_hosts(struct db *db, const struct db_page *page, const char *state,
                   json_t **ret_items);

int db_admin_tasks(struct db *db, const struct db_page *page, const char *state, const char *kind,
                   json_t **ret_items);

/* One task as a JSON object; -ENOENT when absent. */
int db_admin_task_get(struct db *db, int64_t id, json_t **ret_task);

struct db_audit_filter {
    const char *action;  /* exact action, e.g. "login" */
    const char *actor;   /* exact actor name */
    const char *outcome; /* "success", "failure", "denied" */
    const char *since;   /* RFC 3339 time, inclusive */
    const char *until;   /* RFC 3339 time, exclusive */
};

int db_admin_audit(struct db *db, const struct db_page *page, const struct db_audit_filter *f,
                   json_t **ret_items);

int db_admin_users(struct db *db, const struct db_page *page, const char *role, json_t **ret_items);

/* Groups with their member count. */
int db_admin_groups(struct db *db, const struct db_page *page, json_t **ret_items);

/* Members of group @group_id: {id, username, display_name, source}, by name. */
int db_admin_group_members(struct db *db, int64_t group_id, const struct db_page *page,
                           json_t **ret_items);

/* Pools with the number of their VMs in each state. */
int db_admin_pools(struct db *db, const struct db_page *page, json_t **ret_items);

struct db_vm_filter {
    int64_t pool_id; /* 0: any */
    int64_t host_id; /* 0: any */
    const char *state;
};

/* Each VM's "replication" is its db_replication_get_json object, or null. */
int db_admin_vms(struct db *db, const struct db_page *page, const struct db_vm_filter *f,
                 json_t **ret_items);

struct db_session_filter {
    const char *state;
    int64_t user_id; /* 0: any */
    int64_t pool_id; /* 0: any */
};

/* Desktop sessions, newest first. */
int db_admin_sessions(struct db *db, const struct db_page *page, const struct db_session_filter *f,
                      json_t **ret_items);

/* Golden images, each with its versions (newest first) as "versions". */
int db_admin_images(struct db *db, const struct db_page *page, json_t **ret_items);

/*
 * Entitlements of pool @pool_id: {id, user_id, username, group_id,
 * group_name, created_at}.  An empty array for a pool without any (or
 * without a row).
 */
int db_admin_entitlements(struct db *db, int64_t pool_id, const struct db_page *page,
                          json_t **ret_items);

/*
 * Counters for /metrics as one JSON object:
 * {"sessions": {"<state>": n, ...}, "tickets": {"issued": n, "used": n,
 *  "expired_unused": n}, "vms": {"<state>": n, ...}}.
 */
int db_admin_stats(struct db *db, json_t **ret_stats);
