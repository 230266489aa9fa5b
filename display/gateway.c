/*
 * The gateway core: owns the database handle and the loop, knows nothing of
 * protocols.  Every front end in frontends[] is opened, polled and
 * dispatched the same way through struct disp_frontend_ops.
 *
 * Session control.  The core LISTENs on DB_CHANNEL_SESSION: a disconnect
 * request (a person's or an admin's) or the end of a session arrives as the
 * session's id, and the core kicks that session's viewers.  A NOTIFY sent
 * while displayd had lost the database is gone for good, so after every
 * reconnect the core re-reads the control state of every session it serves
 * (db_session_control_get) and compares the age of a disconnect request with
 * when each viewer joined: a viewer that joined before the request goes, a
 * newer one (the person reconnected since) stays.  Ages, not timestamps, so
 * the database's clock and ours never need to agree.
 */
#include "disp-priv.h"
#include "pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DB_RETRY_MS 1000 /* a lost database is retried this often */

static const struct disp_frontend_ops *const frontends[] = {
    &disp_vnc_ops,
    &disp_spice_ops,
    &disp_rdp_ops,
    &disp_relay_ops,
};
#define N_FRONTENDS (sizeof(frontends) / sizeof(frontends[0]))

/*
 * One attached viewer.  A session's own viewers report connected/disconnected
 * once; shadows (view_only) neither count for that nor take anything over.
 */
struct disp_viewer {
    int64_t session_id;
    int64_t user_id; /* shadows: the admin watching */
    bool view_only;
    bool kicked;       /* told to go; gone at its front end's next turn */
    int64_t joined_ms; /* monotonic */
    const struct disp_viewer_ops *ops;
    void *viewer;
    struct disp_viewer *next;
};

struct disp_core {
    struct db *db;
    char *runtime_dir;
    struct db_backoff backoff;
    struct disp_viewer *viewers;
    int db_idx;          /* the database socket in this iteration's poll set */
    bool db_lost;        /* waiting to reconnect */
    int64_t db_retry_ms; /* next reconnect attempt */
    struct disp_relay *relay; /* NULL: relay off, consoles of this host only */
};

struct disp_gateway {
    struct disp_core core;
    void *state[N_FRONTENDS];
    struct disp_pollset ps;
};

int disp_pollset_add(struct disp_pollset *ps, int fd, short events)
{
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 64;
        struct pollfd *fds = reallocarray(ps->fds, cap, sizeof(*fds));
        if (!fds)
            return -ENOMEM;
        ps->fds = fds;
        ps->cap = cap;
    }
    ps->fds[ps->n] = (struct pollfd){.fd = fd, .events = events};
    return (int)ps->n++;
}

void disp_pollset_timeout(struct disp_pollset *ps, int ms)
{
    if (ms >= 0 && (ps->timeout_ms < 0 || ms < ps->timeout_ms))
        ps->timeout_ms = ms;
}

short disp_pollset_revents(const struct disp_pollset *ps, int idx)
{
    return idx >= 0 && (size_t)idx < ps->n ? ps->fds[idx].revents : 0;
}

struct db *disp_core_db(struct disp_core *core)
{
    return core->db;
}

const struct db_backoff *disp_core_backoff(struct disp_core *core)
{
    return &core->backoff;
}

void disp_core_set_relay(struct disp_core *core, struct disp_relay *relay)
{
    core->relay = relay;
}

struct disp_relay *disp_core_relay(struct disp_core *core)
{
    return core->relay;
}

int disp_core_vm_paths(struct disp_core *core, int64_t vm_id, struct hv_vm_paths *ret_paths)
{
    return hv_vm_paths_init(core->runtime_dir, vm_id, ret_paths);
}

int disp_core_redeem(struct disp_core *core, const char *ticket, unsigned protocol,
                     const char *client_addr, struct db_ticket_grant *ret_grant)
{
    enum db_ticket_refusal why = DB_TICKET_UNKNOWN;
    struct db_ticket_grant g;
    int r = db_ensure(core->db);
    if (r == 0)
        r = db_ticket_redeem(core->db, ticket, protocol, client_addr, &core->backoff, &g, &why);
    if (r == 0) {
        log_info("console ticket accepted", "protocol", db_protocol_name(protocol), "client",
                 client_addr, "vm", LOG_INT(g.vm_id), "session", LOG_INT(g.session_id));
        *ret_grant = g;
    } else if (r == -EACCES) {
        log_warn("console ticket refused", "protocol", db_protocol_name(protocol), "client",
                 client_addr, "reason", db_ticket_refusal_name(why));
    } else {
        log_error("console ticket check failed", "protocol", db_protocol_name(protocol), "client",
                  client_addr, "errno", LOG_INT(-r));
    }
    return r;
}

struct disp_viewer *disp_core_viewer_joined(struct disp_core *core, int64_t session_id,
                                            unsigned protocol, const char *client_addr,
                                            const struct disp_viewer_ops *ops, void *viewer)
{
    struct disp_viewer *v = NULL;
    bool connected = false;
    if (!session_id)
        return NULL;
    for (struct disp_viewer *o = core->viewers; o; o = o->next) {
        /* one told to go (a disconnect request) no longer counts as connected */
        if (o->session_id != session_id || o->view_only || o->kicked)
            continue;
        connected = true;
        /* the person connected again (another device): the new one takes over */
        log_info("viewer taken over", "session", LOG_INT(session_id), "protocol",
                 db_protocol_name(protocol), "client", client_addr);
        o->kicked = true;
        o->ops->kick(o->viewer, "the session was opened from another device");
    }
    if (!(v = calloc(1, sizeof(*v)))) {
        log_error("viewer not tracked", "session", LOG_INT(session_id), "errno", LOG_INT(ENOMEM));
        return NULL;
    }
    *v = (struct disp_viewer){.session_id = session_id,
                              .joined_ms = atr_now_mono_ms(),
                              .ops = ops,
                              .viewer = viewer,
                              .next = core->viewers};
    core->viewers = v;
    if (connected)
        return v;
    int r = pool_session_connected(core->db, session_id, db_protocol_name(protocol), client_addr);
    if (r < 0)
        log_warn("session connect report failed", "session", LOG_INT(session_id), "errno",
                 LOG_INT(-r));
    else
        log_info("session connected", "session", LOG_INT(session_id), "protocol",
                 db_protocol_name(protocol), "client", client_addr);
    return v;
}

/* One audit row for a shadow viewer joining or leaving (a record, not a gate). */
static void shadow_audit(struct disp_core *core, const struct disp_viewer *v, const char *event,
                         const char *client_addr)
{
    char sid[24];
    snprintf(sid, sizeof(sid), "%lld", (long long)v->session_id);
    json_t *detail = json_pack("{s:s}", "event", event);
    struct db_audit_entry e = {
        .actor_user_id = v->user_id,
        .actor = "atrium-displayd",
        .client_addr = client_addr,
        .action = "session.shadow",
        .target_type = "session",
        .target_id = sid,
        .outcome = "success",
        .detail = detail,
    };
    (void)db_audit_add(core->db, &e);
    json_decref(detail);
}

struct disp_viewer *disp_core_shadow_joined(struct disp_core *core, int64_t session_id,
                                            int64_t user_id, unsigned protocol,
                                            const char *client_addr,
                                            const struct disp_viewer_ops *ops, void *viewer)
{
    struct disp_viewer *v;
    bool watched = false;
    if (!session_id)
        return NULL;
    for (struct disp_viewer *o = core->viewers; o; o = o->next)
        watched |= o->session_id == session_id && o->view_only;
    if (!(v = calloc(1, sizeof(*v)))) {
        log_error("viewer not tracked", "session", LOG_INT(session_id), "errno", LOG_INT(ENOMEM));
        return NULL;
    }
    *v = (struct disp_viewer){.session_id = session_id,
                              .user_id = user_id,
                              .view_only = true,
                              .joined_ms = atr_now_mono_ms(),
                              .ops = ops,
                              .viewer = viewer,
                              .next = core->viewers};
    core->viewers = v;
    log_info("session shadowed", "session", LOG_INT(session_id), "by", LOG_INT(user_id), "protocol",
             db_protocol_name(protocol), "client", client_addr);
    shadow_audit(core, v, "joined", client_addr);
    if (watched)
        return v;
    int r = db_session_shadowed(core->db, session_id, user_id);
    if (r < 0)
        log_warn("session shadow report failed", "session", LOG_INT(session_id), "errno",
                 LOG_INT(-r));
    return v;
}

void disp_core_viewer_left(struct disp_core *core, struct disp_viewer *v)
{
    if (!v)
        return;
    int64_t session_id = v->session_id;
    bool view_only = v->view_only, others = false;
    for (struct disp_viewer **pv = &core->viewers; *pv;) {
        if (*pv == v) {
            *pv = v->next;
            continue;
        }
        others |= (*pv)->session_id == session_id && (*pv)->view_only == view_only;
        pv = &(*pv)->next;
    }
    if (view_only) {
        log_info("shadow viewer left", "session", LOG_INT(session_id));
        shadow_audit(core, v, "left", NULL);
    }
    free(v);
    if (others)
        return;
    int r = view_only ? db_session_shadowed(core->db, session_id, 0)
                      : pool_session_disconnected(core->db, session_id);
    if (r == -ENOENT && !view_only) /* disconnected already (a disconnect request did it) */
        r = 0;
    if (r < 0)
        log_warn(view_only ? "session shadow report failed" : "session disconnect report failed",
                 "session", LOG_INT(session_id), "errno", LOG_INT(-r));
    else if (!view_only)
        log_info("session disconnected", "session", LOG_INT(session_id));
}

/* ------------------------------------------------------------------------ */
/* Session control: disconnect requests and log-offs (see the top)          */
/* ------------------------------------------------------------------------ */

static void kick_session(struct disp_core *core, int64_t session_id, bool everyone,
                         int64_t requested_ms, const char *why)
{
    for (struct disp_viewer *v = core->viewers; v; v = v->next) {
        if (v->session_id != session_id || v->kicked || (v->view_only && !everyone))
            continue;
        if (!everyone && v->joined_ms > requested_ms)
            continue; /* joined after the request: the person reconnected */
        log_info("viewer disconnected", "session", LOG_INT(session_id), "reason", why);
        v->kicked = true;
        v->ops->kick(v->viewer, why);
    }
}

/*
 * Read the control state of @ids (@n) and act on it.  Returns -ENOTCONN when
 * the database went away (the caller retries after reconnecting).
 */
static int session_control(struct disp_core *core, const int64_t *ids, size_t n)
{
    struct db_session_control *rows = NULL;
    size_t n_rows = 0;
    if (!n)
        return 0;
    int r = db_session_control_get(core->db, ids, n, &rows, &n_rows);
    if (r < 0) {
        log_warn("session control check failed", "errno", LOG_INT(-r));
        return r;
    }
    /* the request's age is measured at the server, between our asking and
     * the answer: taking the answer's arrival as "now" errs towards kicking */
    int64_t now = atr_now_mono_ms();
    for (size_t i = 0; i < n_rows; i++) {
        if (rows[i].ended)
            kick_session(core, rows[i].id, true, now, "the session was logged off");
        else if (rows[i].disconnect_age_ms >= 0)
            kick_session(core, rows[i].id, false, now - rows[i].disconnect_age_ms,
                         "the session was disconnected");
    }
    free(rows);
    return 0;
}

/* Every session the core has viewers of (after a reconnect). */
static int session_control_all(struct disp_core *core)
{
    size_t n = 0, cap = 0;
    int64_t *ids = NULL;
    for (struct disp_viewer *v = core->viewers; v; v = v->next) {
        bool seen = false;
        for (size_t i = 0; i < n && !seen; i++)
            seen = ids[i] == v->session_id;
        if (seen)
            continue;
        if (n == cap) {
            size_t c = cap ? cap * 2 : 16;
            int64_t *p = reallocarray(ids, c, sizeof(*ids));
            if (!p) {
                free(ids);
                return -ENOMEM;
            }
            ids = p;
            cap = c;
        }
        ids[n++] = v->session_id;
    }
    int r = session_control(core, ids, n);
    free(ids);
    return r;
}

static void db_lost(struct disp_core *core)
{
    if (core->db_lost)
        return;
    log_warn("database connection lost, reconnecting");
    core->db_lost = true;
    core->db_retry_ms = atr_now_mono_ms();
}

/* Read pending notifications; a lost connection is noted for reconnecting. */
static void db_notes(struct disp_gateway *gw)
{
    struct disp_core *core = &gw->core;
    char *channel, *payload;
    int r;
    while ((r = db_notify_next(core->db, &channel, &payload)) > 0) {
        char *end;
        long long id = strtoll(payload, &end, 10);
        bool ours = false;
        /* atrium_vm '<vm>:<host>': a front end may follow a VM that moved */
        if (strcmp(channel, DB_CHANNEL_VM) == 0 && *end == ':' && id > 0) {
            long long host = strtoll(end + 1, &end, 10);
            for (size_t i = 0; *end == '\0' && host > 0 && i < N_FRONTENDS; i++)
                if (frontends[i]->vm_moved && gw->state[i])
                    frontends[i]->vm_moved(gw->state[i], id, host);
        }
        if (strcmp(channel, DB_CHANNEL_SESSION) == 0 && *end == '\0' && id > 0)
            for (struct disp_viewer *v = core->viewers; v && !ours; v = v->next)
                ours = v->session_id == id;
        free(channel);
        free(payload);
        if (ours) {
            int64_t sid = id;
            if (session_control(core, &sid, 1) == -ENOTCONN)
                db_lost(core);
        }
    }
    if (r == -ENOTCONN)
        db_lost(core);
}

/* Once per loop: reconnect when due, and catch up after any reconnect. */
static void db_tend(struct disp_core *core)
{
    int64_t now = atr_now_mono_ms();
    if (core->db_lost && now >= core->db_retry_ms) {
        if (db_ensure(core->db) == 0) {
            core->db_lost = false;
            log_info("database connection restored");
        } else {
            core->db_retry_ms = now + DB_RETRY_MS;
        }
    }
    /* also when a ticket check (db_ensure) reconnected: LISTEN is back, but
     * what was sent while nobody listened must be read from the rows */
    if (db_reconnected(core->db) && session_control_all(core) == -ENOTCONN)
        db_lost(core);
}

int disp_gateway_new(const struct atr_config *cfg, struct db *db, struct disp_gateway **ret_gw,
                     struct atr_error *err)
{
    struct disp_gateway *gw = calloc(1, sizeof(*gw));
    int r = -ENOMEM;
    if (!gw)
        goto out;
    gw->core.db = db;
    /* 5 failures from one address within 10 min, then 10 s blocks doubling up to 15 min */
    gw->core.backoff =
        (struct db_backoff){.threshold = 5, .base_s = 10, .max_s = 900, .window_s = 600};
    if (!(gw->core.runtime_dir = strdup(cfg->paths.runtime_dir)))
        goto out;
    gw->core.db_idx = -1;
    r = db_listen(db, DB_CHANNEL_SESSION);
    if (r < 0) {
        atr_error_set(err, r, "cannot LISTEN for session control: %s", strerror(-r));
        goto out;
    }
    for (size_t i = 0; i < N_FRONTENDS; i++) {
        r = frontends[i]->open(&gw->core, cfg, &gw->state[i], err);
        if (r < 0)
            goto out;
        log_info("front end listening", "protocol", frontends[i]->name);
    }
    *ret_gw = gw;
    gw = NULL;
    r = 0;
out:
    disp_gateway_free(gw);
    return r;
}

int disp_gateway_run(struct disp_gateway *gw, int stop_fd)
{
    int idx[N_FRONTENDS];
    for (;;) {
        gw->ps.n = 0;
        gw->ps.timeout_ms = -1;
        if (disp_pollset_add(&gw->ps, stop_fd, POLLIN) < 0)
            return -ENOMEM;
        struct disp_core *core = &gw->core;
        int dbfd = core->db_lost ? -1 : db_fd(core->db);
        core->db_idx = -1;
        if (dbfd >= 0 && (core->db_idx = disp_pollset_add(&gw->ps, dbfd, POLLIN)) < 0)
            return -ENOMEM;
        if (dbfd < 0) {
            if (!core->db_lost)
                db_lost(core);
            int64_t left = core->db_retry_ms - atr_now_mono_ms();
            disp_pollset_timeout(&gw->ps, left > 0 ? (int)left : 0);
        }
        for (size_t i = 0; i < N_FRONTENDS; i++) {
            idx[i] = frontends[i]->prepare(gw->state[i], &gw->ps);
            if (idx[i] < 0)
                return idx[i];
        }
        if (poll(gw->ps.fds, gw->ps.n, gw->ps.timeout_ms) < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (gw->ps.fds[0].revents)
            return 0;
        for (size_t i = 0; i < N_FRONTENDS; i++)
            frontends[i]->dispatch(gw->state[i], &gw->ps);
        /* every turn, not only when the socket was readable: queries the
         * front ends ran may have buffered notifications inside libpq */
        if (!core->db_lost)
            db_notes(gw);
        db_tend(core);
    }
}

struct disp_gateway *disp_gateway_free(struct disp_gateway *gw)
{
    if (!gw)
        return NULL;
    for (size_t i = N_FRONTENDS; i-- > 0;)
        if (gw->state[i])
            frontends[i]->close(gw->state[i]);
    /* front ends closed their viewers above; anything left is reported here */
    while (gw->core.viewers)
        disp_core_viewer_left(&gw->core, gw->core.viewers);
    free(gw->core.runtime_dir);
    free(gw->ps.fds);
    free(gw);
    return NULL;
}
