/*
 * atrium-broker internals.  The broker is a program, not a library: nothing
 * outside broker/ includes this (tests and the fuzz target do, through the
 * atrium-broker-core static library).
 *
 * Shape of a request: libmicrohttpd parses HTTP and TLS; server.c collects
 * the body (bounded), finds the route (router.c), authenticates the caller
 * (session.c), checks the route's permission and CSRF, borrows a database
 * connection (dbpool.c), and calls the route's handler, which fills a
 * struct brk_reply.  Every reply is JSON except /metrics.
 */
#pragma once

#include "auth.h"
#include "common.h"
#include "db.h"
#include "pool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct brk_server;

/* ------------------------------------------------------------------------ */
/* Input parsing (input.c): everything that turns client bytes into values. */
/* Pure functions, fuzzed by tests/fuzz/broker.                             */
/* ------------------------------------------------------------------------ */

#define BRK_LIMIT_DEFAULT 50
#define BRK_LIMIT_MAX 500
#define BRK_OFFSET_MAX 10000000
#define BRK_FILTER_MAX 128 /* longest filter value accepted */

/*
 * Parse a request body: JSON (RFC 8259, UTF-8, no duplicate keys, no NUL in
 * strings) whose top level is an object.  Returns 0 and a new reference in
 * *ret_obj, or -EINVAL with a sentence for the client in @why.
 */
int brk_body_parse(const char *buf, size_t len, json_t **ret_obj, char *why, size_t why_len);

/*
 * Check that object @body has no member outside @allowed (NULL-terminated).
 * 0, or -EINVAL with "unknown member '…'" in @why.
 */
int brk_members_check(const json_t *body, const char *const *allowed, char *why, size_t why_len);

struct brk_login_input {
    const char *username; /* borrowed from the parsed body */
    const char *password;
    const char *totp; /* NULL when absent */
};

/*
 * Check a login body: username (1..128 printable ASCII without spaces),
 * password (1..AUTH_PASSWORD_MAX bytes) and an optional totp string (at most
 * 64 bytes).  No other members.  0 or -EINVAL with @why.
 */
int brk_login_input_parse(const json_t *body, struct brk_login_input *ret, char *why,
                          size_t why_len);

/*
 * Query-string values, as the route's handler asks for them.  A lookup
 * function returns the raw value of a key or NULL; the server's one wraps
 * MHD_lookup_connection_value, the fuzz target's a static table.
 */
typedef const char *(*brk_query_fn)(void *userdata, const char *key);

struct brk_query {
    brk_query_fn get;
    void *userdata;
};

/*
 * ?limit=&offset= with defaults (BRK_LIMIT_DEFAULT, 0) and bounds
 * (1..BRK_LIMIT_MAX, 0..BRK_OFFSET_MAX).  0 or -EINVAL with @why.
 */
int brk_page_parse(const struct brk_query *q, struct db_page *ret_page, char *why, size_t why_len);

/*
 * A text filter: NULL when absent; -EINVAL when empty, longer than
 * BRK_FILTER_MAX, or holding control characters.  When @choices (a
 * NULL-terminated list) is given the value must be one of them.
 */
int brk_filter_text(const struct brk_query *q, const char *key, const char *const *choices,
                    const char **ret, char *why, size_t why_len);

/* An id filter: 0 when absent; -EINVAL unless a decimal integer >= 1. */
int brk_filter_id(const struct brk_query *q, const char *key, int64_t *ret, char *why,
                  size_t why_len);

/* A time filter: NULL when absent; -EINVAL unless it looks like RFC 3339. */
int brk_filter_time(const struct brk_query *q, const char *key, const char **ret, char *why,
                    size_t why_len);

/*
 * Overlay the members of a pool body on @p (create: pool_defaults; update:
 * the stored pool).  Unknown members, wrong types and out-of-range numbers
 * are -EINVAL with @why; the rules between fields are pool_validate's.
 * @p is changed only on success.
 */
int brk_pool_input_apply(const json_t *body, struct db_pool *p, char *why, size_t why_len);

/* A PATCH /vms/{id}/resources body, checked (api-resources.c). */
struct brk_vm_resources_input {
    int balloon_mb;             /* -1 not given, 0 none (all memory), else 64..memory_mb */
    struct db_vm_resources res; /* db_vm_set_resources' conventions: < 0 untouched, 0 lift */
    int boost;                  /* -1 not given, 0 end, 1 boost */
};

/*
 * Check a resources body for a VM of @memory_mb: an object of at least one
 * of balloon_mb (null or 64..memory_mb), cpu_weight (1..10000), cpu_max_pct,
 * memory_max_mb, disk_iops, disk_bps, net_bps (null = no limit, or in
 * range) and boost (bool); no other member.  0 or -EINVAL with @why;
 * *ret is set only on success.
 */
int brk_vm_resources_input_parse(const json_t *body, int memory_mb,
                                 struct brk_vm_resources_input *ret, char *why, size_t why_len);

/* A POST /vms/{id}/migrate body, checked (api-migrate.c). */
struct brk_migrate_input {
    int64_t to_host;
    bool copy_storage;
    int max_bandwidth_mbs; /* 0: not given (hostd's default) */
};

/*
 * Check a migrate body: to_host (integer >= 1), optional copy_storage
 * (bool) and max_bandwidth_mbs (1..100000); no other member.  0 or -EINVAL
 * with @why; *ret is set only on success.
 */
int brk_migrate_input_parse(const json_t *body, struct brk_migrate_input *ret, char *why,
                            size_t why_len);

/* A PUT /vms/{id}/replication body, checked (api-replication.c). */
struct brk_replication_input {
    int64_t to_host;
    int interval_s;  /* DB_REPLICATION_INTERVAL_MIN..MAX */
    int64_t max_bps; /* 0: no cap */
};

/*
 * Check a replication body: to_host (integer >= 1), interval_s (10..604800)
 * and optional max_bps (null, or an integer >= 4096); no other member.  0
 * or -EINVAL with @why; *ret is set only on success.
 */
int brk_replication_input_parse(const json_t *body, struct brk_replication_input *ret, char *why,
                                size_t why_len);

/* A POST /vms/{id}/recover body, checked (api-replication.c). */
struct brk_recover_input {
    int64_t on_host;
    bool force; /* recover even though the VM's host heart-beats */
};

/*
 * Check a recover body: on_host (integer >= 1) and optional force (bool);
 * no other member.  0 or -EINVAL with @why; *ret is set only on success.
 */
int brk_recover_input_parse(const json_t *body, struct brk_recover_input *ret, char *why,
                            size_t why_len);

/* A POST /vms/{id}/snapshots body, checked (api-snapshots.c). */
struct brk_snapshot_input {
    const char *name;        /* borrowed from the body */
    int with_ram;            /* -1 not given (with RAM when the VM runs), 0, 1 */
    const char *description; /* NULL when not given */
};

/*
 * Check a snapshot body: name (1..63 of A-Z a-z 0-9 . _ -, not starting
 * with . _ -), optional with_ram (bool) and description (at most 255 bytes,
 * no control characters); no other member.  0 or -EINVAL with @why.
 */
int brk_snapshot_input_parse(const json_t *body, struct brk_snapshot_input *ret, char *why,
                             size_t why_len);

/* Query of a golden image upload (api-upload.c). */
struct brk_image_upload_input {
    char name[129];  /* the image: 1..128 of A-Z a-z 0-9 . _ -, starting alphanumeric */
    char notes[256]; /* "" when absent; no control characters */
    char sha256[65]; /* the body's SHA-256 the client expects, lower-case; "" when absent */
};

/*
 * Check ?name=&notes=&sha256= of POST /api/v1/images/versions: name
 * required; notes at most 255 bytes without control characters; sha256 64
 * hex digits.  0 or -EINVAL with @why; *ret is set only on success.
 */
int brk_image_upload_input_parse(const struct brk_query *q, struct brk_image_upload_input *ret,
                                 char *why, size_t why_len);

/* ------------------------------------------------------------------------ */
/* Connection files (connfile.c)                                            */
/* ------------------------------------------------------------------------ */

/*
 * The host viewers should use for the gateway: @public_address when set,
 * else the host part of the request's Host header (name, IPv4, or [IPv6];
 * any :port dropped).  -EINVAL when it is not a plain host name or address
 * (so nothing else can reach a connection file).
 */
int brk_gateway_host(const char *public_address, const char *host_header, char *buf, size_t size);

struct brk_conn_target {
    const char *gateway; /* from brk_gateway_host */
    int spice_port, rdp_port, vnc_port;
    const char *title;    /* pool name */
    const char *username; /* schema-restricted characters */
    bool spice_tls;       /* displayd's CONNECT proxy speaks TLS: proxy=https:// */
};

/* The display gateway's ports and SPICE TLS from @cfg, for a viewer of @title. */
struct brk_conn_target brk_conn_target_make(const struct atr_config *cfg, const char *gateway,
                                            const char *title, const char *username);

/* A remote-viewer .vv file / an .rdp file carrying @ticket.  malloc'd; NULL on ENOMEM. */
char *brk_connfile_vv(const struct brk_conn_target *t, const char *ticket);
char *brk_connfile_rdp(const struct brk_conn_target *t, const char *ticket);

struct brk_request;
/* Issue the one-time ticket @tr asks for, with the longest lifetime its
 * protocol allows (native VNC passwords live shorter); sets tr->ttl_s. */
int brk_ticket_issue(struct brk_request *req, struct db_ticket_request *tr,
                     char ticket[static DB_TICKET_LEN + 1]);
/*
 * The viewer part of a connect (or shadow) reply for @protocol: the .vv or
 * .rdp text, the vnc:// address and password, or the WebSocket URL of the
 * browser console.  New reference in *ret; 0 or -ENOMEM.
 */
int brk_viewer_info(struct brk_request *req, const char *protocol, const struct brk_conn_target *t,
                    const char *ticket, json_t **ret);

/* ------------------------------------------------------------------------ */
/* Tokens (token.c)                                                         */
/* ------------------------------------------------------------------------ */

#define BRK_TOKEN_BYTES 32
#define BRK_TOKEN_TEXT_LEN 43 /* base64url of 32 bytes, unpadded */

/* A new random token: text form (NUL-terminated) and its SHA-256. 0 or -EIO. */
int brk_token_new(char ret_text[static BRK_TOKEN_TEXT_LEN + 1],
                  unsigned char ret_hash[static DB_TOKEN_HASH_LEN]);

/* SHA-256 of @text (any length).  0 or -EIO. */
int brk_token_hash(const char *text, unsigned char ret_hash[static DB_TOKEN_HASH_LEN]);

/* True when @text has the shape of one of our tokens (length, alphabet). */
bool brk_token_well_formed(const char *text);

/* ------------------------------------------------------------------------ */
/* Database connections (dbpool.c)                                          */
/* ------------------------------------------------------------------------ */

/*
 * One database connection and the auth context over it.  libpq connections
 * are not shared between threads, so a request borrows one for its whole
 * life and gives it back; the pool has as many as the server has threads.
 */
struct brk_conn {
    struct db *db;
    struct auth *auth;
    bool busy;
};

struct brk_dbpool;

/* Open @n connections to @cfg's database.  0 or -errno with @err. */
int brk_dbpool_new(const struct atr_config *cfg, int n, struct brk_dbpool **ret_pool,
                   struct atr_error *err);
struct brk_dbpool *brk_dbpool_free(struct brk_dbpool *pool);

/*
 * Borrow a connection, waiting (on a condition variable) at most
 * @timeout_ms for one to come back.  The connection is checked and
 * reconnected when the server went away.  -ETIMEDOUT when none came back,
 * -ENOTCONN when the database cannot be reached.
 */
int brk_dbpool_get(struct brk_dbpool *pool, int timeout_ms, struct brk_conn **ret_conn);
void brk_dbpool_put(struct brk_dbpool *pool, struct brk_conn *conn);

/* ------------------------------------------------------------------------ */
/* Requests, replies, routes                                                */
/* ------------------------------------------------------------------------ */

/* Who made the request, once session.c authenticated it. */
struct brk_caller {
    bool authenticated;
    int64_t user_id;
    int64_t login_id;
    char username[DB_USERNAME_MAX + 1];
    enum auth_role role;
    bool via_cookie; /* browser session: non-GET requests need the CSRF header */
    bool via_bearer; /* API token */
    unsigned char csrf_hash[DB_TOKEN_HASH_LEN]; /* via_cookie: what X-CSRF-Token must hash to */
    bool enrol_only; /* password right, second factor still to enrol: BRK_ROUTE_ENROL only */
};

#define BRK_MAX_PATH_IDS 4

struct brk_request {
    struct brk_server *server;
    const char *method;
    const char *path;
    const char *client_addr; /* textual IP */
    const char *user_agent;  /* "" when absent */
    json_t *body;            /* parsed object, NULL when there was no body */
    struct brk_query query;
    int64_t ids[BRK_MAX_PATH_IDS]; /* {id} segments of the path, in order */
    size_t n_ids;
    struct brk_caller caller;
    struct brk_conn *conn; /* borrowed database connection; NULL for routes without DB */
    void *mhd_conn;        /* struct MHD_Connection, for header lookups */
    void *sink;            /* a streamed body's sink (brk_route_sink), for the handler */
};

/* A header / cookie value of the request, NULL when absent. */
const char *brk_request_header(const struct brk_request *req, const char *name);
const char *brk_request_cookie(const struct brk_request *req, const char *name);

#define BRK_MAX_HEADERS 4

/* Retry-After of a 503 that names none itself (seconds, as text). */
#define BRK_RETRY_AFTER_DEFAULT_S "2"

struct brk_reply {
    int status;
    json_t *json; /* the body; owned */
    char *text;   /* or a text body (malloc'd, owned), with @content_type */
    const char *content_type;
    struct {
        const char *name;
        char *value; /* malloc'd, owned */
    } headers[BRK_MAX_HEADERS];
    size_t n_headers;
};

/* The VM of the path's first {id}: 0 with *ret, 1 when the 404 ("no such
 * VM") is already in @rep, or -errno (router.c). */
int brk_path_vm(struct brk_request *req, struct brk_reply *rep, struct db_vm *ret);

/* Set @rep to @status with an owned JSON body (steals @json).  Returns 0. */
int brk_reply_json(struct brk_reply *rep, int status, json_t *json);

/* Set @rep to an error body {"error": @error, "detail": @detail}.  Returns 0. */
int brk_reply_error(struct brk_reply *rep, int status, const char *error, const char *detail);

/* Add a response header (value copied).  -ENOSPC past BRK_MAX_HEADERS. */
int brk_reply_header(struct brk_reply *rep, const char *name, const char *value);

/* Release what @rep owns. */
void brk_reply_clear(struct brk_reply *rep);

/*
 * A route handler.  Fills @rep and returns 0; a negative errno means "I
 * could not answer" and becomes a 500 (or 503 for -ENOTCONN) with a generic
 * body: handlers map the failures a client caused to 4xx themselves.
 */
typedef int (*brk_handler_fn)(struct brk_request *req, struct brk_reply *rep);

enum brk_route_flags {
    BRK_ROUTE_PUBLIC = 1 << 0, /* no authentication needed */
    BRK_ROUTE_NO_DB = 1 << 1,  /* handler does not use the database */
    BRK_ROUTE_ENROL = 1 << 2,  /* open to an enrolment-only session (see api-totp.c) */
    BRK_ROUTE_SLOW = 1 << 3,   /* hashes a password: handled off the polling threads (server.c) */
};

/*
 * A route whose body is streamed to its own sink instead of being collected
 * as JSON (golden image uploads, api-upload.c; brk_route_sink names them).
 * server.c admits the caller (authentication, CSRF, role) as soon as the
 * request head is in, before a byte of the body is read, then:
 *   open:  @content_length is -1 when the request declares none.  Returns 0
 *          with *ret_sink, or 0 with a refusal filled into @rep (then no
 *          body is read), or -errno (500).
 *   write: each piece of the body in order; a failure is kept in the sink
 *          and answered by the route's handler, which runs with req->sink
 *          once the whole body is in.
 *   free:  the request is over (answered, refused or cut by the client);
 *          releases everything the sink holds and leaves no file behind.
 */
struct brk_body_sink_ops {
    int (*open)(struct brk_request *req, int64_t content_length, void **ret_sink,
                struct brk_reply *rep);
    void (*write)(void *sink, const char *data, size_t len);
    void (*free)(void *sink);
};

extern const struct brk_body_sink_ops brk_image_upload_sink; /* api-upload.c */

struct brk_route {
    const char *method;  /* "GET", "POST", "PATCH", "DELETE" */
    const char *pattern; /* "/api/v1/tasks/{id}" */
    brk_handler_fn handler;
    unsigned flags;          /* enum brk_route_flags */
    int action;              /* enum auth_action required, or -1 for any authenticated caller */
    const char *metric_name; /* label for /metrics: the pattern */
};

/* The route table (routes.c), ending with a zeroed entry. */
extern const struct brk_route brk_routes[];
size_t brk_routes_count(void);

/* The body sink of @route (routes.c); NULL: a JSON body of at most max_body_bytes. */
const struct brk_body_sink_ops *brk_route_sink(const struct brk_route *route);

/*
 * Match @method and @path against the table.  Returns the route and fills
 * @ret_ids/@ret_n_ids from {id} segments; NULL when no pattern matches the
 * path (then *ret_path_known is false) or when the path matches but not the
 * method (*ret_path_known true: 405).
 */
const struct brk_route *brk_route_match(const char *method, const char *path,
                                        int64_t ret_ids[static BRK_MAX_PATH_IDS], size_t *ret_n_ids,
                                        bool *ret_path_known);

/* The methods served on @path, for a 405's Allow header ("GET, HEAD, POST"). */
void brk_route_allowed(const char *path, char *buf, size_t size);

/* Print "METHOD PATTERN" lines of every route, sorted, to @out. */
void brk_routes_print(FILE *out);

/* ------------------------------------------------------------------------ */
/* Authentication of requests (session.c)                                   */
/* ------------------------------------------------------------------------ */

#define BRK_COOKIE_NAME "atrium_session"
#define BRK_CSRF_HEADER "X-CSRF-Token"

/*
 * Find the caller from the Authorization: Bearer header or the session
 * cookie.  Fills req->caller when a live login was found; leaves it
 * unauthenticated otherwise.  -errno only when the database failed.
 */
int brk_session_authenticate(struct brk_request *req);

/* True when @req (cookie-authenticated, non-GET) carries the right CSRF token. */
bool brk_session_csrf_ok(const struct brk_request *req);

/*
 * One audit_log row for an admin act of the caller (outcome success).
 * Steals @detail (may be NULL).  A failure to write is logged, not
 * returned: the act itself already happened.
 */
void brk_audit(struct brk_request *req, const char *action, const char *target_type,
               const char *target_id, json_t *detail);

/* ------------------------------------------------------------------------ */
/* Metrics (metrics.c)                                                      */
/* ------------------------------------------------------------------------ */

void brk_metrics_request(size_t route_index, int status, int64_t duration_us);
void brk_metrics_login(bool ok);
enum { BRK_ASSIGN_NEW, BRK_ASSIGN_RECONNECT, BRK_ASSIGN_NONE_READY };
void brk_metrics_assignment(int result); /* one of BRK_ASSIGN_ */
/* Prometheus text exposition; @db_stats from db_admin_stats, may be NULL. */
char *brk_metrics_render(const json_t *db_stats);
/* False when the route table outgrew the metric arrays (checked at start-up). */
bool brk_metrics_routes_fit(void);

/* ------------------------------------------------------------------------ */
/* Web console files (web.c)                                                */
/* ------------------------------------------------------------------------ */

/* [broker] web_root, or the installed default when it is empty. */
const char *brk_web_root(const struct atr_config *cfg);

/* True when a GET/HEAD of @path that matched no route is the web console's:
 * not under /api/, and the web root exists. */
bool brk_web_claims(const struct atr_config *cfg, const char *path);

/*
 * Answer @path from the web root on @mhd_conn (a struct MHD_Connection):
 * the file, index.html for page routes, or a 404/403.  Sets *ret_status;
 * returns libmicrohttpd's MHD_YES/MHD_NO.
 */
int brk_web_serve(const struct atr_config *cfg, void *mhd_conn, const char *path, int *ret_status);

/* ------------------------------------------------------------------------ */
/* Server (server.c)                                                        */
/* ------------------------------------------------------------------------ */

struct brk_server_options {
    const struct atr_config *cfg;
    int port_override; /* -1: cfg's port; 0: ephemeral */
};

/* Start listening.  0 or -errno with @err.  Logs the bound address and port. */
int brk_server_start(const struct brk_server_options *opt, struct brk_dbpool *pool,
                     struct brk_server **ret_server, struct atr_error *err);

/* Stop accepting, finish running requests, free.  Accepts NULL; returns NULL. */
struct brk_server *brk_server_stop(struct brk_server *s);

/* The config the server runs with (borrowed). */
const struct atr_config *brk_server_config(const struct brk_server *s);

/* ------------------------------------------------------------------------ */
/* Handlers (api-*.c)                                                       */
/* ------------------------------------------------------------------------ */

int brk_api_healthz(struct brk_request *req, struct brk_reply *rep);
int brk_api_metrics(struct brk_request *req, struct brk_reply *rep);

int brk_api_login(struct brk_request *req, struct brk_reply *rep);
int brk_api_logout(struct brk_request *req, struct brk_reply *rep);
int brk_api_me(struct brk_request *req, struct brk_reply *rep);
int brk_api_tokens_list(struct brk_request *req, struct brk_reply *rep);
int brk_api_tokens_create(struct brk_request *req, struct brk_reply *rep);
int brk_api_tokens_delete(struct brk_request *req, struct brk_reply *rep);

int brk_api_hosts(struct brk_request *req, struct brk_reply *rep);
int brk_api_tasks(struct brk_request *req, struct brk_reply *rep);
int brk_api_task_get(struct brk_request *req, struct brk_reply *rep);
int brk_api_audit(struct brk_request *req, struct brk_reply *rep);
int brk_api_users(struct brk_request *req, struct brk_reply *rep);
int brk_api_groups(struct brk_request *req, struct brk_reply *rep);
int brk_api_group_members(struct brk_request *req, struct brk_reply *rep);
int brk_api_pools(struct brk_request *req, struct brk_reply *rep);
int brk_api_vms(struct brk_request *req, struct brk_reply *rep);
int brk_api_sessions(struct brk_request *req, struct brk_reply *rep);
int brk_api_images(struct brk_request *req, struct brk_reply *rep);
int brk_api_entitlements(struct brk_request *req, struct brk_reply *rep);
int brk_api_vm_power(struct brk_request *req, struct brk_reply *rep);
int brk_api_vm_delete(struct brk_request *req, struct brk_reply *rep);
int brk_api_vm_update(struct brk_request *req, struct brk_reply *rep);
int brk_api_host_update(struct brk_request *req, struct brk_reply *rep);
int brk_api_host_metrics(struct brk_request *req, struct brk_reply *rep); /* api-metrics.c */
int brk_api_vm_metrics(struct brk_request *req, struct brk_reply *rep);
int brk_api_vm_resources_get(struct brk_request *req, struct brk_reply *rep); /* api-resources.c */
int brk_api_vm_resources_set(struct brk_request *req, struct brk_reply *rep);
int brk_api_vm_snapshots(struct brk_request *req, struct brk_reply *rep); /* api-snapshots.c */
int brk_api_vm_snapshot_create(struct brk_request *req, struct brk_reply *rep);
int brk_api_vm_snapshot_revert(struct brk_request *req, struct brk_reply *rep);
int brk_api_vm_snapshot_delete(struct brk_request *req, struct brk_reply *rep);
int brk_api_vm_migrate(struct brk_request *req, struct brk_reply *rep); /* api-migrate.c */
int brk_api_vm_migrate_cancel(struct brk_request *req, struct brk_reply *rep);
int brk_api_image_upload(struct brk_request *req, struct brk_reply *rep); /* api-upload.c */
int brk_api_replications(struct brk_request *req, struct brk_reply *rep); /* api-admin.c */
/* api-replication.c */
int brk_api_vm_replication_get(struct brk_request *req, struct brk_reply *rep);
int brk_api_vm_replication_set(struct brk_request *req, struct brk_reply *rep);
int brk_api_vm_replication_off(struct brk_request *req, struct brk_reply *rep);
int brk_api_vm_replication_sync(struct brk_request *req, struct brk_reply *rep);
int brk_api_vm_recover(struct brk_request *req, struct brk_reply *rep);

int brk_api_user_create(struct brk_request *req, struct brk_reply *rep);
int brk_api_user_update(struct brk_request *req, struct brk_reply *rep);
int brk_api_group_create(struct brk_request *req, struct brk_reply *rep);
int brk_api_group_member_add(struct brk_request *req, struct brk_reply *rep);
int brk_api_pool_create(struct brk_request *req, struct brk_reply *rep);
int brk_api_pool_update(struct brk_request *req, struct brk_reply *rep);
int brk_api_pool_delete(struct brk_request *req, struct brk_reply *rep);
int brk_api_entitlement_add(struct brk_request *req, struct brk_reply *rep);

int brk_api_totp_begin(struct brk_request *req, struct brk_reply *rep);
int brk_api_totp_confirm(struct brk_request *req, struct brk_reply *rep);
int brk_api_user_totp_reset(struct brk_request *req, struct brk_reply *rep);
int brk_api_user_unlock(struct brk_request *req, struct brk_reply *rep);
int brk_api_totp_policy_get(struct brk_request *req, struct brk_reply *rep);
int brk_api_totp_policy_set(struct brk_request *req, struct brk_reply *rep);

int brk_api_desktops(struct brk_request *req, struct brk_reply *rep);
int brk_api_desktop_connect(struct brk_request *req, struct brk_reply *rep);
int brk_api_desktop_logoff(struct brk_request *req, struct brk_reply *rep);
int brk_api_session_logoff(struct brk_request *req, struct brk_reply *rep);
int brk_api_desktop_disconnect(struct brk_request *req, struct brk_reply *rep);
int brk_api_session_disconnect(struct brk_request *req, struct brk_reply *rep);
int brk_api_session_shadow(struct brk_request *req, struct brk_reply *rep);
int brk_api_entitlement_delete(struct brk_request *req, struct brk_reply *rep);
int brk_api_group_member_delete(struct brk_request *req, struct brk_reply *rep);
