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

/* Viewers per desktop session, to report connected/disconnected once. */
struct viewer_count {
    int64_t session_id;
    int n;
};

struct disp_core {
    struct db *db;
    char *runtime_dir;
    struct db_backoff backoff;
    struct viewer_count *viewers;
    size_t n_viewers, cap_viewers;
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

static struct viewer_count *viewers_find(struct disp_core *core, int64_t session_id)
{
    for (size_t i = 0; i < core->n_viewers; i++)
        if (core->viewers[i].session_id == session_id)
            return &core->viewers[i];
    return NULL;
}

void disp_core_viewer_joined(struct disp_core *core, int64_t session_id, unsigned protocol,
                             const char *client_addr)
{
    if (!session_id)
        return;
    struct viewer_count *v = viewers_find(core, session_id);
    if (!v) {
        if (core->n_viewers == core->cap_viewers) {
            size_t cap = core->cap_viewers ? core->cap_viewers * 2 : 16;
            struct viewer_count *nv = reallocarray(core->viewers, cap, sizeof(*nv));
            if (!nv) {
                log_error("viewer table full", "session", LOG_INT(session_id));
                return;
            }
            core->viewers = nv;
            core->cap_viewers = cap;
        }
        v = &core->viewers[core->n_viewers++];
        *v = (struct viewer_count){.session_id = session_id};
    }
    if (v->n++ > 0)
        return;
    int r = pool_session_connected(core->db, session_id, db_protocol_name(protocol), client_addr);
    if (r < 0)
        log_warn("session connect report failed", "session", LOG_INT(session_id), "errno",
                 LOG_INT(-r));
    else
        log_info("session connected", "session", LOG_INT(session_id), "protocol",
                 db_protocol_name(protocol), "client", client_addr);
}

void disp_core_viewer_left(struct disp_core *core, int64_t session_id)
{
    struct viewer_count *v = session_id ? viewers_find(core, session_id) : NULL;
    if (!v || --v->n > 0)
        return;
    *v = core->viewers[--core->n_viewers];
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
    /* viewers still attached leave now: their sessions become disconnected */
    while (gw->core.n_viewers > 0) {
        gw->core.viewers[0].n = 1;
        disp_core_viewer_left(&gw->core, gw->core.viewers[0].session_id);
    }
    free(gw->core.viewers);
    free(gw->core.runtime_dir);
    free(gw->ps.fds);
    free(gw);
    return NULL;
}
