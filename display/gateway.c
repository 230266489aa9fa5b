/*
 * The gateway core: owns the database handle and the loop, knows nothing of
 * protocols.  Every front end in frontends[] is opened, polled and
 * dispatched the same way through struct disp_frontend_ops.
 */
#include "disp-priv.h"
#include "pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct disp_frontend_ops *const frontends[] = {
    &disp_vnc_ops,
    &disp_spice_ops,
    &disp_rdp_ops,
};
#define N_FRONTENDS (sizeof(frontends) / sizeof(frontends[0]))

/* One attached viewer; a session's viewers report connected/disconnected once. */
struct disp_viewer {
    int64_t session_id;
    const struct disp_viewer_ops *ops;
    void *viewer;
    struct disp_viewer *next;
};

struct disp_core {
    struct db *db;
    char *runtime_dir;
    struct db_backoff backoff;
    struct disp_viewer *viewers;
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
        if (o->session_id != session_id)
            continue;
        /* the person connected again (another device): the new one takes over */
        log_info("viewer taken over", "session", LOG_INT(session_id), "protocol",
                 db_protocol_name(protocol), "client", client_addr);
        o->ops->kick(o->viewer, "the session was opened from another device");
        connected = true;
    }
    if (!(v = calloc(1, sizeof(*v)))) {
        log_error("viewer not tracked", "session", LOG_INT(session_id), "errno", LOG_INT(ENOMEM));
        return NULL;
    }
    *v = (struct disp_viewer){
        .session_id = session_id, .ops = ops, .viewer = viewer, .next = core->viewers};
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

void disp_core_viewer_left(struct disp_core *core, struct disp_viewer *v)
{
    if (!v)
        return;
    int64_t session_id = v->session_id;
    bool others = false;
    for (struct disp_viewer **pv = &core->viewers; *pv;) {
        if (*pv == v) {
            *pv = v->next;
            continue;
        }
        others |= (*pv)->session_id == session_id;
        pv = &(*pv)->next;
    }
    free(v);
    if (others)
        return;
    int r = pool_session_disconnected(core->db, session_id);
    if (r < 0)
        log_warn("session disconnect report failed", "session", LOG_INT(session_id), "errno",
                 LOG_INT(-r));
    else
        log_info("session disconnected", "session", LOG_INT(session_id));
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
