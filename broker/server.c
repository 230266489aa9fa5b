/*
 * The HTTP(S) front: libmicrohttpd with its own epoll threads, and the glue
 * from one MHD request to one route handler.
 *
 * libmicrohttpd calls on_request several times per request: once when the
 * headers are in (we refuse a declared body that is too large right there,
 * before reading it), once per chunk of body (kept, up to the limit), and
 * once more with no data, when we dispatch.  Every resource a client can
 * make us hold is bounded here or by a libmicrohttpd option: connections
 * (connection limit), time (idle timeout), headers (per-connection memory
 * limit) and body (max_body_bytes).  A route with a body sink (image
 * uploads) is admitted when the head is in and its body goes, piece by
 * piece, to the sink instead of memory; the sink bounds it.  Its handler
 * (an import that takes seconds to minutes) runs in a thread of its own
 * while the connection is suspended, so the polling thread it came from
 * keeps serving its other connections.
 *
 * Password checks (log-in, setting a password: routes flagged
 * BRK_ROUTE_SLOW) cost one argon2id hash each, tens to hundreds of
 * milliseconds of CPU by design.  Run on the polling threads, a log-in storm
 * would hold every one of them, and /healthz, portal pages and desktop
 * requests would queue behind the hashes (a load balancer then takes a
 * healthy broker out).  So such a request, once admitted, is suspended and
 * handed to a small pool of hashing threads (one per CPU: more would only
 * share the same cores) through a queue of [broker] login_queue places.  A
 * full queue answers 503 with Retry-After at once instead of growing, and a
 * request that waited longer than BRK_SLOW_WAIT_MAX_MS is answered 503
 * without hashing (its client has most likely given up).  The hashing thread
 * takes its own database connection when the request's turn comes, so
 * queued requests hold none.
 */
#include "broker-priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* gnutls priority string: TLS 1.2 and 1.3 only, our cipher order. */
#define BRK_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:%SERVER_PRECEDENCE"
#define BRK_HEADER_MEMORY (64 * 1024) /* request line + headers of one request */
#define BRK_DB_WAIT_MS 5000
/* A chunked body over the limit is read and dropped up to this many times
 * the limit (so the client still gets its 413), then the connection is cut. */
#define BRK_DISCARD_FACTOR 4
#define BRK_SLOW_WORKERS_MAX 8
#define BRK_SLOW_WAIT_MAX_MS 10000   /* a queued check older than this is not worth doing */
#define BRK_SLOW_NICE 5              /* the hashing threads' nice value (Linux: per thread) */

struct brk_server {
    const struct atr_config *cfg;
    struct brk_dbpool *pool;
    struct MHD_Daemon *mhd;
    char *tls_cert, *tls_key; /* PEM, kept for the daemon's lifetime */
    size_t max_body;
    pthread_mutex_t lock; /* guards n_workers */
    pthread_cond_t workers_done;
    int n_workers; /* streamed-body handlers running in their own threads */
    /* The password-check queue and its hashing threads. */
    pthread_mutex_t slow_lock;
    pthread_cond_t slow_ready;
    struct req_state *slow_head, *slow_tail;
    int slow_len, slow_cap;
    bool slow_stop; /* set at stop: no new entries; threads end once the queue is empty */
    pthread_t slow_threads[BRK_SLOW_WORKERS_MAX];
    int n_slow_threads;
};

enum slow_state { SLOW_NONE, SLOW_QUEUED, SLOW_DONE };

/* Per-request state, from the URI callback to the completion callback. */
struct req_state {
    int64_t start_ns;
    bool headers_seen;
    bool replied;
    char *body;
    size_t len, cap, discarded;
    bool too_large;
    int status;
    size_t route_index; /* brk_routes_count() when unmatched */
    char client_addr[INET6_ADDRSTRLEN];
    char method[16]; /* for the request's log line; the path cut at 200 bytes */
    char path[201];
    const struct brk_body_sink_ops *sink_ops; /* set once the route's body sink is open */
    void *sink;
    struct brk_server *server;
    struct MHD_Connection *conn;
    bool worker_started, worker_done; /* the sink route's handler thread */
    struct brk_reply pending;         /* its reply, sent once the connection is resumed */
    enum slow_state slow;             /* a BRK_ROUTE_SLOW request handed to a hashing thread */
    struct brk_request slow_req;      /* its request (owns the body), for that thread */
    int64_t queued_ns;
    struct req_state *slow_next;
};

const struct atr_config *brk_server_config(const struct brk_server *s)
{
    return s->cfg;
}

const char *brk_request_header(const struct brk_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->mhd_conn, MHD_HEADER_KIND, name);
}

const char *brk_request_cookie(const struct brk_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->mhd_conn, MHD_COOKIE_KIND, name);
}

static const char *query_get(void *userdata, const char *key)
{
    return MHD_lookup_connection_value(userdata, MHD_GET_ARGUMENT_KIND, key);
}

int brk_reply_json(struct brk_reply *rep, int status, json_t *json)
{
    json_decref(rep->json);
    rep->status = status;
    rep->json = json;
    return 0;
}

int brk_reply_error(struct brk_reply *rep, int status, const char *error, const char *detail)
{
    return brk_reply_json(rep, status, atr_json_error(error, detail));
}

int brk_reply_header(struct brk_reply *rep, const char *name, const char *value)
{
    if (rep->n_headers == BRK_MAX_HEADERS)
        return -ENOSPC;
    char *v = strdup(value);
    if (!v)
        return -ENOMEM;
    rep->headers[rep->n_headers].name = name;
    rep->headers[rep->n_headers].value = v;
    rep->n_headers++;
    return 0;
}

void brk_reply_clear(struct brk_reply *rep)
{
    json_decref(rep->json);
    free(rep->text);
    for (size_t i = 0; i < rep->n_headers; i++)
        free(rep->headers[i].value);
    memset(rep, 0, sizeof(*rep));
}

/* Hand @rep to libmicrohttpd.  A reply that cannot be built becomes a bare 500. */
static enum MHD_Result send_reply(struct brk_server *s, struct MHD_Connection *conn,
                                  struct req_state *st, struct brk_reply *rep)
{
    char *body = NULL;
    const char *ctype = "application/json";
    if (rep->text) {
        body = rep->text;
        rep->text = NULL;
        ctype = rep->content_type ? rep->content_type : "text/plain; charset=utf-8";
    } else {
        if (!rep->json)
            rep->json = atr_json_error("internal", "the handler produced no reply");
        body = rep->json ? atr_json_dumps(rep->json) : NULL;
    }
    int status = rep->status ? rep->status : 500;
    struct MHD_Response *resp = NULL;
    if (body)
        resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        status = 500;
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!resp)
            return MHD_NO;
    } else {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
        for (size_t i = 0; i < rep->n_headers; i++)
            MHD_add_response_header(resp, rep->headers[i].name, rep->headers[i].value);
    }
    /* Every 503 says when to come back, whichever path produced it (a
     * database restart included): clients that honour it back off instead
     * of hammering a broker that cannot serve them yet. */
    if (status == 503 && !MHD_get_response_header(resp, "Retry-After"))
        MHD_add_response_header(resp, "Retry-After", BRK_RETRY_AFTER_DEFAULT_S);
    /* API answers are per person: never cached, never sniffed as HTML. */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (s->cfg->broker.tls)
        MHD_add_response_header(resp, "Strict-Transport-Security", "max-age=31536000");
    enum MHD_Result r = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    st->status = status;
    st->replied = true;
    return r;
}

static enum MHD_Result send_error(struct brk_server *s, struct MHD_Connection *conn,
                                  struct req_state *st, int status, const char *error,
                                  const char *detail)
{
    struct brk_reply rep = {0};
    brk_reply_error(&rep, status, error, detail);
    enum MHD_Result r = send_reply(s, conn, st, &rep);
    brk_reply_clear(&rep);
    return r;
}

static bool is_json_type(const char *ct)
{
    if (!ct)
        return false;
    size_t n = strlen("application/json");
    return strncasecmp(ct, "application/json", n) == 0 && (ct[n] == '\0' || ct[n] == ';');
}

static bool is_safe_method(const char *method)
{
    return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

/* A handler failed (its r < 0): the reply becomes a generic 503 or 500. */
static void handler_failed(struct brk_reply *rep, const char *path, int r)
{
    log_error("request handler failed", "path", path, "errno", LOG_INT(-r));
    brk_reply_clear(rep);
    if (r == -ENOTCONN)
        brk_reply_error(rep, 503, "unavailable", "the database cannot be reached");
    else
        brk_reply_error(rep, 500, "internal", "the broker could not complete the request");
}

/*
 * Queue an admitted BRK_ROUTE_SLOW request for a hashing thread and suspend
 * its connection.  False (nothing changed) when the queue is full or the
 * server is stopping.  The connection is suspended under the queue's lock,
 * so no thread can resume it before it is suspended.
 */
static bool slow_enqueue(struct brk_server *s, struct MHD_Connection *conn, struct req_state *st,
                         const struct brk_request *req)
{
    pthread_mutex_lock(&s->slow_lock);
    if (s->slow_stop || s->slow_len >= s->slow_cap) {
        pthread_mutex_unlock(&s->slow_lock);
        return false;
    }
    st->server = s;
    st->conn = conn;
    st->slow = SLOW_QUEUED;
    st->slow_req = *req;
    st->queued_ns = atr_now_mono_ns();
    st->slow_next = NULL;
    MHD_suspend_connection(conn);
    if (s->slow_tail)
        s->slow_tail->slow_next = st;
    else
        s->slow_head = st;
    s->slow_tail = st;
    s->slow_len++;
    pthread_cond_signal(&s->slow_ready);
    pthread_mutex_unlock(&s->slow_lock);
    return true;
}

/* One queued password check, on a hashing thread. */
static void slow_run(struct brk_server *s, struct req_state *st)
{
    struct brk_request req = st->slow_req;
    struct brk_reply *rep = &st->pending;
    const struct brk_route *route = &brk_routes[st->route_index];
    int64_t waited_ms = (atr_now_mono_ns() - st->queued_ns) / 1000000;
    int r;
    if (waited_ms > BRK_SLOW_WAIT_MAX_MS) {
        log_warn("password check dropped: queued too long", "path", st->path, "waited_ms",
                 LOG_INT(waited_ms));
        brk_reply_error(rep, 503, "busy", "the broker is checking too many passwords; try again");
    } else if ((r = brk_dbpool_get(s->pool, BRK_DB_WAIT_MS, &req.conn)) < 0) {
        log_warn("no database connection for request", "path", st->path, "errno", LOG_INT(-r));
        brk_reply_error(rep, 503, "unavailable", "the database cannot be reached");
    } else if ((r = route->handler(&req, rep)) < 0) {
        handler_failed(rep, st->path, r);
    }
    brk_dbpool_put(s->pool, req.conn);
    json_decref(req.body);
    st->slow_req.body = NULL;
    st->slow = SLOW_DONE;
    MHD_resume_connection(st->conn);
}

static void *slow_main(void *arg)
{
    struct brk_server *s = arg;
    /* Hashing is the bulk work: the HTTP threads get a core first. */
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), BRK_SLOW_NICE) < 0)
        log_debug("cannot lower the password-check thread's priority", "errno", LOG_INT(errno));
    pthread_mutex_lock(&s->slow_lock);
    for (;;) {
        while (!s->slow_head && !s->slow_stop)
            pthread_cond_wait(&s->slow_ready, &s->slow_lock);
        struct req_state *st = s->slow_head;
        if (!st)
            break; /* stopping, and nothing left to answer */
        s->slow_head = st->slow_next;
        if (!s->slow_head)
            s->slow_tail = NULL;
        s->slow_len--;
        pthread_mutex_unlock(&s->slow_lock);
        slow_run(s, st);
        pthread_mutex_lock(&s->slow_lock);
    }
    pthread_mutex_unlock(&s->slow_lock);
    return NULL;
}

/*
 * A known person tried something their role or the CSRF rule refuses: an
 * admin wants to see that (outcome "denied").  Unauthenticated requests are
 * not audited here: they name no one, and auth/ audits failed log-ins.
 */
static void audit_denied(struct brk_request *req, const struct brk_route *route, const char *reason)
{
    struct db_audit_entry e = {
        .actor_user_id = req->caller.user_id,
        .actor = req->caller.username,
        .client_addr = req->client_addr[0] ? req->client_addr : NULL,
        .action = "api.request",
        .target_type = "route",
        .target_id = route->pattern,
        .outcome = "denied",
    };
    json_t *detail = json_pack("{s:s, s:s}", "method", route->method, "reason", reason);
    e.detail = detail;
    int r = db_audit_add(req->conn->db, &e);
    json_decref(detail);
    if (r < 0)
        log_error("cannot write audit row", "action", e.action, "errno", LOG_INT(-r));
}

/*
 * Who may call @route: authentication, CSRF, enrolment and role.  True when
 * the caller is admitted; otherwise the refusal is sent and *ret set.
 */
static bool admit(struct brk_server *s, struct MHD_Connection *conn, struct req_state *st,
                  struct brk_request *req, const struct brk_route *route, enum MHD_Result *ret)
{
    if (route->flags & BRK_ROUTE_PUBLIC)
        return true;
    int r = brk_session_authenticate(req);
    if (r < 0) {
        log_error("authenticating a request failed", "path", req->path, "errno", LOG_INT(-r));
        *ret = send_error(s, conn, st, 503, "unavailable", "cannot check the session now");
        return false;
    }
    if (!req->caller.authenticated) {
        *ret = send_error(s, conn, st, 401, "unauthenticated",
                          "log in first, or send a valid API token");
        return false;
    }
    if (req->caller.via_cookie && !is_safe_method(req->method) && !brk_session_csrf_ok(req)) {
        audit_denied(req, route, "csrf");
        *ret = send_error(s, conn, st, 403, "csrf",
                          "requests with the session cookie must carry the X-CSRF-Token "
                          "header from the login reply");
        return false;
    }
    if (req->caller.enrol_only && !(route->flags & BRK_ROUTE_ENROL)) {
        *ret = send_error(s, conn, st, 403, "totp_enrollment_required",
                          "enrol a second factor first (POST /api/v1/me/totp)");
        return false;
    }
    if (route->action >= 0 &&
        !auth_role_allows(req->caller.role, (enum auth_action)route->action)) {
        audit_denied(req, route, "role");
        *ret = send_error(s, conn, st, 403, "forbidden", "your role does not allow this operation");
        return false;
    }
    return true;
}

/* Everything after the body is in: route, authenticate, authorize, handle. */
static enum MHD_Result dispatch(struct brk_server *s, struct MHD_Connection *conn,
                                struct req_state *st, const char *method, const char *path)
{
    struct brk_reply rep = {0};
    struct brk_request req = {
        .server = s,
        .method = method,
        .path = path,
        .client_addr = st->client_addr,
        .query = {query_get, conn},
        .mhd_conn = conn,
    };
    bool path_known = false;
    enum MHD_Result ret;
    char why[200];

    if (st->too_large) {
        ret = send_error(s, conn, st, 413, "body_too_large",
                         "the request body is larger than the broker accepts");
        goto out;
    }
    const struct brk_route *route = brk_route_match(method, path, req.ids, &req.n_ids, &path_known);
    if (!route && !path_known && is_safe_method(method) && brk_web_claims(s->cfg, path)) {
        ret = (enum MHD_Result)brk_web_serve(s->cfg, conn, path, &st->status);
        st->replied = true;
        goto out;
    }
    if (!route && path_known) {
        char allow[128];
        brk_route_allowed(path, allow, sizeof(allow));
        brk_reply_error(&rep, 405, "method_not_allowed",
                        "this resource does not support that method");
        brk_reply_header(&rep, "Allow", allow);
        ret = send_reply(s, conn, st, &rep);
        goto out;
    }
    if (!route) {
        ret = send_error(s, conn, st, 404, "not_found", "no such resource");
        goto out;
    }
    st->route_index = (size_t)(route - brk_routes);
    const char *ua = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "User-Agent");
    req.user_agent = ua ? ua : "";

    if (st->len > 0) {
        if (!is_json_type(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type"))) {
            ret = send_error(s, conn, st, 415, "unsupported_media_type",
                             "request bodies must be application/json");
            goto out;
        }
        if (brk_body_parse(st->body, st->len, &req.body, why, sizeof(why)) < 0) {
            ret = send_error(s, conn, st, 400, "bad_json", why);
            goto out;
        }
    }

    /* A connection here serves admit() and the handler.  A public password
     * check needs neither on this thread (its hashing thread takes one when
     * its turn comes): a log-in storm must not make the polling threads
     * wait for connections only to hand them back. */
    bool slow_public = (route->flags & BRK_ROUTE_SLOW) && (route->flags & BRK_ROUTE_PUBLIC);
    if (!(route->flags & BRK_ROUTE_NO_DB) && !slow_public) {
        int r = brk_dbpool_get(s->pool, BRK_DB_WAIT_MS, &req.conn);
        if (r < 0) {
            log_warn("no database connection for request", "path", path, "errno", LOG_INT(-r));
            brk_reply_error(&rep, 503, "unavailable", "the database cannot be reached");
            brk_reply_header(&rep, "Retry-After", "5");
            ret = send_reply(s, conn, st, &rep);
            goto out;
        }
    }

    if (!admit(s, conn, st, &req, route, &ret))
        goto out;

    if (route->flags & BRK_ROUTE_SLOW) {
        /* the hashing thread takes a connection of its own when its turn
         * comes (a non-public one used this one for admit()) */
        brk_dbpool_put(s->pool, req.conn);
        req.conn = NULL;
        if (slow_enqueue(s, conn, st, &req)) {
            req.body = NULL; /* the queued request owns it now */
            ret = MHD_YES;
        } else {
            log_warn("password check refused: queue full", "path", path);
            ret = send_error(s, conn, st, 503, "busy",
                             "the broker is checking too many passwords; try again");
        }
        goto out;
    }
    req.sink = st->sink;
    int r = route->handler(&req, &rep);
    if (r < 0)
        handler_failed(&rep, path, r);
    ret = send_reply(s, conn, st, &rep);
out:
    brk_dbpool_put(s->pool, req.conn);
    json_decref(req.body);
    brk_reply_clear(&rep);
    return ret;
}

/*
 * The head of a request to a route with a body sink is in: admit the caller
 * and open the sink before a byte of the body is read, so a refused caller
 * (or a body too large for the disk) never gets to send it.
 */
static enum MHD_Result stream_begin(struct brk_server *s, struct MHD_Connection *conn,
                                    struct req_state *st, const struct brk_route *route,
                                    const char *method, const char *path,
                                    const int64_t ids[static BRK_MAX_PATH_IDS], size_t n_ids,
                                    int64_t content_length)
{
    struct brk_reply rep = {0};
    struct brk_request req = {
        .server = s,
        .method = method,
        .path = path,
        .client_addr = st->client_addr,
        .query = {query_get, conn},
        .mhd_conn = conn,
        .n_ids = n_ids,
    };
    memcpy(req.ids, ids, sizeof(req.ids));
    const char *ua = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "User-Agent");
    req.user_agent = ua ? ua : "";
    enum MHD_Result ret = MHD_YES;
    st->route_index = (size_t)(route - brk_routes);

    int r = brk_dbpool_get(s->pool, BRK_DB_WAIT_MS, &req.conn);
    if (r < 0) {
        log_warn("no database connection for request", "path", path, "errno", LOG_INT(-r));
        brk_reply_error(&rep, 503, "unavailable", "the database cannot be reached");
        brk_reply_header(&rep, "Retry-After", "5");
        ret = send_reply(s, conn, st, &rep);
        goto out;
    }
    if (!admit(s, conn, st, &req, route, &ret))
        goto out;
    const struct brk_body_sink_ops *ops = brk_route_sink(route);
    r = ops->open(&req, content_length, &st->sink, &rep);
    if (r < 0) {
        log_error("cannot receive a request body", "path", path, "errno", LOG_INT(-r));
        brk_reply_clear(&rep);
        brk_reply_error(&rep, 500, "internal", "the broker could not complete the request");
    }
    if (rep.status)
        ret = send_reply(s, conn, st, &rep);
    else
        st->sink_ops = ops;
out:
    brk_dbpool_put(s->pool, req.conn);
    brk_reply_clear(&rep);
    return ret;
}

/*
 * The handler of a streamed body, in its own thread while the connection is
 * suspended (libmicrohttpd leaves a suspended connection's data alone, so
 * its headers and query can be read here).  The caller was admitted when
 * the head came in; the session is looked up again for the audit row and
 * in case it ended during the upload.
 */
static void *stream_worker(void *arg)
{
    struct req_state *st = arg;
    struct brk_server *s = st->server;
    struct brk_reply *rep = &st->pending;
    const struct brk_route *route = &brk_routes[st->route_index];
    struct brk_request req = {
        .server = s,
        .method = st->method,
        .path = st->path,
        .client_addr = st->client_addr,
        .query = {query_get, st->conn},
        .mhd_conn = st->conn,
        .sink = st->sink,
    };
    const char *ua = MHD_lookup_connection_value(st->conn, MHD_HEADER_KIND, "User-Agent");
    req.user_agent = ua ? ua : "";
    int r = brk_dbpool_get(s->pool, BRK_DB_WAIT_MS, &req.conn);
    if (r == 0)
        r = brk_session_authenticate(&req);
    if (r < 0) {
        log_warn("no database for a streamed request", "path", st->path, "errno", LOG_INT(-r));
        brk_reply_error(rep, 503, "unavailable", "the database cannot be reached");
    } else if (!req.caller.authenticated) {
        brk_reply_error(rep, 401, "unauthenticated", "the session ended during the upload");
    } else if ((r = route->handler(&req, rep)) < 0) {
        handler_failed(rep, st->path, r);
    }
    brk_dbpool_put(s->pool, req.conn);
    st->worker_done = true;
    MHD_resume_connection(st->conn);
    pthread_mutex_lock(&s->lock);
    if (--s->n_workers == 0)
        pthread_cond_broadcast(&s->workers_done);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* The whole streamed body is in: run its handler off the polling thread. */
static enum MHD_Result stream_finish(struct brk_server *s, struct MHD_Connection *conn,
                                     struct req_state *st)
{
    if (st->worker_done) {
        enum MHD_Result r = send_reply(s, conn, st, &st->pending);
        brk_reply_clear(&st->pending);
        return r;
    }
    if (st->worker_started)
        return MHD_YES;
    st->server = s;
    st->conn = conn;
    st->worker_started = true;
    pthread_attr_t attr;
    pthread_t t;
    pthread_mutex_lock(&s->lock);
    s->n_workers++;
    pthread_mutex_unlock(&s->lock);
    MHD_suspend_connection(conn);
    int r = pthread_attr_init(&attr);
    if (r == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        r = pthread_create(&t, &attr, stream_worker, st);
        pthread_attr_destroy(&attr);
    }
    if (r != 0) {
        /* no thread: do the work here, which still answers correctly */
        log_warn("cannot start a request thread; handling it inline", "errno", LOG_INT(r));
        stream_worker(st);
    }
    return MHD_YES;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)uri;
    struct req_state *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->start_ns = atr_now_mono_ns();
    st->route_index = brk_routes_count();
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, st->client_addr,
                  sizeof(st->client_addr));
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, st->client_addr,
                  sizeof(st->client_addr));
    return st;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct brk_server *s = cls;
    struct req_state *st = *con_cls;
    if (!st)
        return MHD_NO; /* out of memory in on_uri: drop the connection */

    if (!st->headers_seen) {
        st->headers_seen = true;
        snprintf(st->method, sizeof(st->method), "%s", method);
        snprintf(st->path, sizeof(st->path), "%s", url);
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        long long n;
        bool have_len = cl && atr_parse_ll(cl, 0, INT64_MAX, &n) == 0;
        int64_t ids[BRK_MAX_PATH_IDS];
        size_t n_ids = 0;
        bool known;
        const struct brk_route *route = brk_route_match(method, url, ids, &n_ids, &known);
        if (route && brk_route_sink(route))
            return stream_begin(s, conn, st, route, method, url, ids, n_ids, have_len ? n : -1);
        /* Refuse before reading: the body never reaches memory. */
        if (have_len && (size_t)n > s->max_body) {
            st->too_large = true;
            return send_error(s, conn, st, 413, "body_too_large",
                              "the request body is larger than the broker accepts");
        }
        return MHD_YES;
    }
    if (st->replied) {
        *upload_data_size = 0; /* already answered (413): drop the rest */
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (st->sink_ops) {
            st->sink_ops->write(st->sink, upload_data, n);
            return MHD_YES;
        }
        if (st->too_large || st->len + n > s->max_body) {
            st->too_large = true;
            st->discarded += n;
            return st->discarded > s->max_body * BRK_DISCARD_FACTOR ? MHD_NO : MHD_YES;
        }
        if (st->len + n > st->cap) {
            size_t cap = st->cap ? st->cap : 4096;
            while (cap < st->len + n)
                cap *= 2;
            if (cap > s->max_body)
                cap = s->max_body;
            char *b = realloc(st->body, cap);
            if (!b)
                return MHD_NO;
            st->body = b;
            st->cap = cap;
        }
        memcpy(st->body + st->len, upload_data, n);
        st->len += n;
        return MHD_YES;
    }
    if (st->sink_ops)
        return stream_finish(s, conn, st);
    if (st->slow == SLOW_QUEUED)
        return MHD_YES; /* not called while suspended; nothing to do until resumed */
    if (st->slow == SLOW_DONE) {
        enum MHD_Result r = send_reply(s, conn, st, &st->pending);
        brk_reply_clear(&st->pending);
        return r;
    }
    return dispatch(s, conn, st, method, url);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    struct req_state *st = *con_cls;
    if (!st)
        return;
    (void)conn;
    int64_t us = (atr_now_mono_ns() - st->start_ns) / 1000;
    char ms[32];
    snprintf(ms, sizeof(ms), "%.2f", (double)us / 1000.0);
    /* The logger quotes and escapes values, so a hostile path stays one field. */
    log_info("request", "method", st->method, "path", st->path, "status", LOG_INT(st->status), "ms",
             ms, "client", st->client_addr, "completed",
             LOG_BOOL(toe == MHD_REQUEST_TERMINATED_COMPLETED_OK));
    brk_metrics_request(st->route_index, st->status, us);
    if (st->sink_ops)
        st->sink_ops->free(st->sink);
    brk_reply_clear(&st->pending);
    json_decref(st->slow_req.body);
    free(st->body);
    free(st);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[256];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    log_debug("libmicrohttpd", "text", msg);
}

static int read_file(const char *path, char **ret, struct atr_error *err)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        return atr_error_set(err, -e, "%s: cannot open: %s", path, strerror(e));
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    int r = 0;
    if (!m) {
        r = atr_error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && len < 1024 * 1024)
        fwrite(chunk, 1, n, m);
    if (ferror(f))
        r = atr_error_set(err, -EIO, "%s: read error", path);
    fclose(m);
    if (r == 0)
        *ret = buf;
    else
        free(buf);
out:
    fclose(f);
    return r;
}

static int listen_addr(const char *host, int port, struct sockaddr_storage *ret, bool *ret_v6)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *ret_v6 = false;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *ret_v6 = true;
    } else {
        return -EINVAL;
    }
    *ret = ss;
    return 0;
}

struct brk_server *brk_server_stop(struct brk_server *s)
{
    if (!s)
        return NULL;
    /* A running import owns its suspended connection: let it finish. */
    pthread_mutex_lock(&s->lock);
    if (s->n_workers > 0)
        log_info("waiting for image imports to finish", "count", LOG_INT(s->n_workers));
    while (s->n_workers > 0)
        pthread_cond_wait(&s->workers_done, &s->lock);
    pthread_mutex_unlock(&s->lock);
    /* Queued password checks are answered (their connections resumed)
     * before the daemon stops: it must not stop with suspended connections. */
    pthread_mutex_lock(&s->slow_lock);
    s->slow_stop = true;
    pthread_cond_broadcast(&s->slow_ready);
    pthread_mutex_unlock(&s->slow_lock);
    for (int i = 0; i < s->n_slow_threads; i++)
        pthread_join(s->slow_threads[i], NULL);
    if (s->mhd)
        MHD_stop_daemon(s->mhd);
    pthread_cond_destroy(&s->workers_done);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->slow_ready);
    pthread_mutex_destroy(&s->slow_lock);
    free(s->tls_cert);
    free(s->tls_key);
    free(s);
    return NULL;
}

int brk_server_start(const struct brk_server_options *opt, struct brk_dbpool *pool,
                     struct brk_server **ret_server, struct atr_error *err)
{
    const struct atr_config *cfg = opt->cfg;
    int r = 0;
    struct brk_server *s = calloc(1, sizeof(*s));
    if (!s)
        return atr_error_set(err, -ENOMEM, "out of memory");
    s->cfg = cfg;
    s->pool = pool;
    s->max_body = (size_t)cfg->broker.max_body_bytes;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->workers_done, NULL);
    pthread_mutex_init(&s->slow_lock, NULL);
    pthread_cond_init(&s->slow_ready, NULL);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int n_slow = ncpu < 1 ? 1 : ncpu > BRK_SLOW_WORKERS_MAX ? BRK_SLOW_WORKERS_MAX : (int)ncpu;
    s->slow_cap = cfg->broker.login_queue;
    for (int i = 0; i < n_slow; i++) {
        r = -pthread_create(&s->slow_threads[i], NULL, slow_main, s);
        if (r < 0) {
            r = atr_error_set(err, r, "cannot start the password-check threads");
            goto out;
        }
        s->n_slow_threads++;
    }

    int port = opt->port_override >= 0 ? opt->port_override : cfg->broker.port;
    struct sockaddr_storage ss;
    bool v6 = false;
    if (listen_addr(cfg->broker.listen, port, &ss, &v6) < 0) {
        r = atr_error_set(err, -EINVAL, "[broker] listen '%s' is not an IPv4 or IPv6 address",
                          cfg->broker.listen);
        goto out;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
                     MHD_ALLOW_SUSPEND_RESUME;
    if (v6)
        flags |= MHD_USE_IPv6;
    if (cfg->broker.tls) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            r = atr_error_set(err, -ENOTSUP, "this libmicrohttpd was built without TLS");
            goto out;
        }
        r = read_file(cfg->broker.tls_cert, &s->tls_cert, err);
        if (r < 0)
            goto out;
        r = read_file(cfg->broker.tls_key, &s->tls_key, err);
        if (r < 0)
            goto out;
        flags |= MHD_USE_TLS;
    } else {
        /* Said once, loudly: plain HTTP is for tests only. */
        log_warn("TLS is off ([broker] tls = false): sessions and passwords travel in clear");
    }
    struct MHD_OptionItem tls_opts[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key},
        {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)BRK_TLS_PRIORITIES},
        {MHD_OPTION_END, 0, NULL},
    };
    struct MHD_OptionItem no_opts[] = {{MHD_OPTION_END, 0, NULL}};
    s->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->broker.threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)cfg->broker.max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)cfg->broker.connection_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)BRK_HEADER_MEMORY, MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_URI_LOG_CALLBACK,
        on_uri, s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_EXTERNAL_LOGGER,
        on_mhd_log, s, MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1, MHD_OPTION_ARRAY,
        cfg->broker.tls ? tls_opts : no_opts, MHD_OPTION_END);
    if (!s->mhd) {
        r = atr_error_set(err, -EADDRNOTAVAIL,
                          "cannot listen on %s port %d (address in use, or bad TLS key/cert)",
                          cfg->broker.listen, port);
        goto out;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    log_info("broker listening", "address", cfg->broker.listen, "port",
             LOG_INT(di ? di->port : port), "tls", LOG_BOOL(cfg->broker.tls), "threads",
             LOG_INT(cfg->broker.threads));
    *ret_server = s;
    s = NULL;
out:
    brk_server_stop(s);
    return r;
}
