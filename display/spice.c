/*
 * SPICE front end: an HTTP CONNECT proxy, the "proxy=" of the broker's .vv
 * file, in front of each VM's SPICE unix socket.
 *
 * The .vv file names the ticket as the host to connect to ("host=<ticket>",
 * any port) and as the SPICE password.  remote-viewer asks the proxy for
 * "CONNECT <ticket>:<port> HTTP/1.1"; displayd redeems the ticket, sets it
 * as the VM's SPICE password through QMP with a short expiry, and from then
 * on relays bytes without looking at them: SPICE itself checks the password
 * (so a stolen socket path alone is useless, and the password dies with the
 * expiry).
 *
 * SPICE opens one connection per channel (main, display, inputs, cursor,
 * ...), each through the proxy with the same host.  The ticket is consumed in
 * the database once, by the first; the others are admitted by an in-memory
 * "grant" that lives exactly as long as one of its connections is open and
 * accepts new channels only within GRANT_JOIN_S of the redemption and only
 * from the address that redeemed it.
 */
#include "disp-priv.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HEAD_MS 5000          /* the CONNECT head must arrive by then */
#define GRANT_JOIN_S 30       /* further channels must connect within this */
#define PASSWORD_EXPIRE "+30" /* SPICE password expiry, seconds from now */
#define QMP_TIMEOUT_MS 3000
#define BUF_SIZE 65536
#define MAX_CONNS 1024

struct spice_grant {
    char ticket[DB_TICKET_LEN + 1];
    int64_t vm_id, session_id;
    int64_t join_deadline_ms;
    char addr[64];
    int n_conns;
    struct disp_viewer *dv;
    bool kicked; /* taken over: its connections close, it admits no more */
    struct spice_grant *next;
};

struct relay_buf {
    char data[BUF_SIZE];
    size_t off, len;
};

struct spice_conn {
    int cfd, sfd; /* client (TCP) and server (SPICE unix socket) */
    int cidx, sidx;
    char addr[64];
    int64_t head_deadline_ms; /* 0 once relaying */
    struct spice_grant *grant;
    struct relay_buf up, down; /* up: client -> server */
    bool client_eof, server_eof;
    struct spice_conn *next;
};

struct disp_spice {
    struct disp_core *core;
    int listen_fd, listen_idx;
    struct spice_conn *conns;
    size_t n_conns;
    struct spice_grant *grants;
};

/* ------------------------------------------------------------------------ */
/* QMP: the VM's SPICE password                                             */
/* ------------------------------------------------------------------------ */

static int spice_set_password(struct disp_core *core, int64_t vm_id, const char *password)
{
    struct hv_vm_paths paths;
    struct hv_qmp *q = NULL;
    struct atr_error err = {0};
    int r = disp_core_vm_paths(core, vm_id, &paths);
    if (r < 0)
        goto out;
    r = hv_qmp_connect(paths.qmp_display, NULL, NULL, QMP_TIMEOUT_MS, &q);
    if (r < 0)
        goto out;
    r = hv_qmp_call(q, "set_password",
                    json_pack("{s:s, s:s, s:s}", "protocol", "spice", "password", password,
                              "connected", "keep"),
                    QMP_TIMEOUT_MS, NULL, &err);
    if (r < 0)
        goto out;
    r = hv_qmp_call(q, "expire_password",
                    json_pack("{s:s, s:s}", "protocol", "spice", "time", PASSWORD_EXPIRE),
                    QMP_TIMEOUT_MS, NULL, &err);
out:
    if (r < 0)
        log_error("spice password not set", "vm", LOG_INT(vm_id), "errno", LOG_INT(-r), "detail",
                  err.msg);
    hv_qmp_free(q);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Grants                                                                   */
/* ------------------------------------------------------------------------ */

static struct spice_grant *grant_find(struct disp_spice *sp, const char *ticket, const char *addr,
                                      int64_t now)
{
    for (struct spice_grant *g = sp->grants; g; g = g->next)
        if (!g->kicked && now < g->join_deadline_ms && strcmp(addr, g->addr) == 0 &&
            strlen(ticket) == strlen(g->ticket) &&
            CRYPTO_memcmp(g->ticket, ticket, strlen(ticket)) == 0)
            return g;
    return NULL;
}

/* Taken over by a newer connection: SPICE has no message for it; close. */
static void grant_kick(void *viewer, const char *why)
{
    struct spice_grant *g = viewer;
    log_info("spice viewer closed", "vm", LOG_INT(g->vm_id), "client", g->addr, "reason", why);
    g->kicked = true; /* spice_prepare wakes the loop, spice_dispatch closes */
}

static const struct disp_viewer_ops spice_viewer_ops = {.kick = grant_kick};

static void grant_unref(struct disp_spice *sp, struct spice_grant *g)
{
    if (!g || --g->n_conns > 0)
        return;
    for (struct spice_grant **pg = &sp->grants; *pg; pg = &(*pg)->next)
        if (*pg == g) {
            *pg = g->next;
            break;
        }
    log_info("spice viewer left", "vm", LOG_INT(g->vm_id), "client", g->addr);
    disp_core_viewer_left(sp->core, g->dv);
    OPENSSL_cleanse(g->ticket, sizeof(g->ticket));
    free(g);
}

/* ------------------------------------------------------------------------ */
/* Connections                                                              */
/* ------------------------------------------------------------------------ */

static void conn_free(struct disp_spice *sp, struct spice_conn *c)
{
    if (c->cfd >= 0)
        close(c->cfd);
    if (c->sfd >= 0)
        close(c->sfd);
    grant_unref(sp, c->grant);
    free(c);
}

static void conn_reply(struct spice_conn *c, const char *status)
{
    char line[128];
    int n = snprintf(line, sizeof(line), "HTTP/1.1 %s\r\n\r\n", status);
    /* a fresh socket's send buffer takes a status line whole */
    (void)!write(c->cfd, line, (size_t)n);
}

/* The CONNECT head is complete in @head: admit (returns 0) or refuse (-errno). */
static int conn_admit(struct disp_spice *sp, struct spice_conn *c, const char *head, size_t hl)
{
    char ticket[DB_TICKET_LEN + 1];
    struct hv_vm_paths paths;
    int64_t now = atr_now_mono_ms();
    int r = disp_http_connect_ticket(head, hl, ticket, sizeof(ticket));
    if (r < 0) {
        (void)db_ticket_fail(disp_core_db(sp->core), DB_PROTO_SPICE, c->addr, DB_TICKET_UNKNOWN,
                             disp_core_backoff(sp->core));
        log_warn("console ticket refused", "protocol", "spice", "client", c->addr, "reason",
                 "no ticket in request");
        conn_reply(c, "400 Bad Request");
        return r;
    }
    struct spice_grant *g = grant_find(sp, ticket, c->addr, now);
    if (!g) {
        struct db_ticket_grant tg;
        r = disp_core_redeem(sp->core, ticket, DB_PROTO_SPICE, c->addr, &tg);
        if (r < 0) {
            conn_reply(c, "403 Forbidden");
            return r;
        }
        r = spice_set_password(sp->core, tg.vm_id, ticket);
        if (r < 0) {
            conn_reply(c, "502 Bad Gateway");
            return r;
        }
        if (!(g = calloc(1, sizeof(*g)))) {
            conn_reply(c, "503 Service Unavailable");
            return -ENOMEM;
        }
        memcpy(g->ticket, ticket, sizeof(g->ticket));
        g->vm_id = tg.vm_id;
        g->session_id = tg.session_id;
        g->join_deadline_ms = now + GRANT_JOIN_S * 1000;
        snprintf(g->addr, sizeof(g->addr), "%s", c->addr);
        g->next = sp->grants;
        sp->grants = g;
        log_info("spice viewer joined", "vm", LOG_INT(g->vm_id), "client", c->addr);
        g->dv = disp_core_viewer_joined(sp->core, g->session_id, DB_PROTO_SPICE, c->addr,
                                        &spice_viewer_ops, g);
    }
    g->n_conns++;
    c->grant = g;
    OPENSSL_cleanse(ticket, sizeof(ticket));

    r = disp_core_vm_paths(sp->core, g->vm_id, &paths);
    if (r == 0)
        r = disp_net_connect_unix(paths.spice, &c->sfd);
    if (r < 0) {
        log_error("spice console unreachable", "vm", LOG_INT(g->vm_id), "errno", LOG_INT(-r));
        conn_reply(c, "502 Bad Gateway");
        return r;
    }
    /* drop the head from the socket; bytes after it (if any) stay for the relay */
    char sink[DISP_HTTP_HEAD_MAX];
    if (recv(c->cfd, sink, hl, MSG_DONTWAIT) != (ssize_t)hl)
        return -EIO;
    conn_reply(c, "200 Connection established");
    c->head_deadline_ms = 0;
    return 0;
}

/* Head stage: peek until the head is complete.  <0: close the connection. */
static int conn_head(struct disp_spice *sp, struct spice_conn *c, bool readable, int64_t now)
{
    char head[DISP_HTTP_HEAD_MAX];
    if (!readable)
        return now >= c->head_deadline_ms ? -ETIMEDOUT : 0;
    ssize_t n = recv(c->cfd, head, sizeof(head), MSG_PEEK | MSG_DONTWAIT);
    if (n == 0)
        return -ECONNRESET;
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    int hl = disp_http_head_len(head, (size_t)n);
    if (hl < 0) {
        conn_reply(c, "431 Request Header Fields Too Large");
        return hl;
    }
    if (hl == 0)
        return now >= c->head_deadline_ms ? -ETIMEDOUT : 0;
    return conn_admit(sp, c, head, (size_t)hl);
}

/* Move bytes from @from into @b, then from @b to @to.  <0 on a hard error. */
static int relay(int from, int to, struct relay_buf *b, bool *eof)
{
    if (!*eof && b->len == 0) {
        ssize_t n = recv(from, b->data, sizeof(b->data), MSG_DONTWAIT);
        if (n == 0)
            *eof = true;
        else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        else if (n > 0) {
            b->off = 0;
            b->len = (size_t)n;
        }
    }
    while (b->len > 0) {
        ssize_t n = send(to, b->data + b->off, b->len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -errno;
        }
        b->off += (size_t)n;
        b->len -= (size_t)n;
    }
    if (*eof && b->len == 0)
        (void)shutdown(to, SHUT_WR);
    return 0;
}

static void spice_accept(struct disp_spice *sp)
{
    for (;;) {
        char addr[64];
        int fd;
        int r = disp_net_accept(sp->listen_fd, &fd, addr);
        if (r < 0) {
            if (r != -EAGAIN && r != -EWOULDBLOCK && r != -ECONNABORTED)
                log_warn("spice accept failed", "errno", LOG_INT(-r));
            return;
        }
        struct spice_conn *c = sp->n_conns < MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
        if (!c) {
            log_warn("spice connection refused", "client", addr, "reason", "too many connections");
            close(fd);
            continue;
        }
        c->cfd = fd;
        c->sfd = -1;
        c->cidx = c->sidx = -1;
        snprintf(c->addr, sizeof(c->addr), "%s", addr);
        c->head_deadline_ms = atr_now_mono_ms() + HEAD_MS;
        c->next = sp->conns;
        sp->conns = c;
        sp->n_conns++;
    }
}

/* ------------------------------------------------------------------------ */
/* Front end                                                                */
/* ------------------------------------------------------------------------ */

static void spice_close(void *state)
{
    struct disp_spice *sp = state;
    if (!sp)
        return;
    while (sp->conns) {
        struct spice_conn *c = sp->conns;
        sp->conns = c->next;
        conn_free(sp, c);
    }
    if (sp->listen_fd >= 0)
        close(sp->listen_fd);
    free(sp);
}

static int spice_open(struct disp_core *core, const struct atr_config *cfg, void **ret_state,
                      struct atr_error *err)
{
    struct disp_spice *sp = calloc(1, sizeof(*sp));
    if (!sp)
        return atr_error_set(err, -ENOMEM, "out of memory");
    sp->core = core;
    int r = disp_net_listen(cfg->display.listen, cfg->display.spice_port, &sp->listen_fd);
    if (r < 0) {
        sp->listen_fd = -1;
        spice_close(sp);
        return atr_error_set(err, r, "cannot listen for SPICE on %s port %d: %s",
                             cfg->display.listen, cfg->display.spice_port, strerror(-r));
    }
    *ret_state = sp;
    return 0;
}

static int spice_prepare(void *state, struct disp_pollset *ps)
{
    struct disp_spice *sp = state;
    int64_t now = atr_now_mono_ms();
    if ((sp->listen_idx = disp_pollset_add(ps, sp->listen_fd, POLLIN)) < 0)
        return -ENOMEM;
    for (struct spice_conn *c = sp->conns; c; c = c->next) {
        if (c->grant && c->grant->kicked)
            disp_pollset_timeout(ps, 0);
        if (c->head_deadline_ms) {
            if ((c->cidx = disp_pollset_add(ps, c->cfd, POLLIN)) < 0)
                return -ENOMEM;
            c->sidx = -1;
            int64_t left = c->head_deadline_ms - now;
            disp_pollset_timeout(ps, left > 0 ? (int)left : 0);
            continue;
        }
        /* read a side only while its buffer is empty; wait for POLLOUT while full */
        short ce =
            (short)((c->up.len == 0 && !c->client_eof ? POLLIN : 0) | (c->down.len ? POLLOUT : 0));
        short se =
            (short)((c->down.len == 0 && !c->server_eof ? POLLIN : 0) | (c->up.len ? POLLOUT : 0));
        if ((c->cidx = disp_pollset_add(ps, c->cfd, ce)) < 0 ||
            (c->sidx = disp_pollset_add(ps, c->sfd, se)) < 0)
            return -ENOMEM;
    }
    return 0;
}

static void spice_dispatch(void *state, const struct disp_pollset *ps)
{
    struct disp_spice *sp = state;
    int64_t now = atr_now_mono_ms();
    if (disp_pollset_revents(ps, sp->listen_idx))
        spice_accept(sp);
    for (struct spice_conn **pc = &sp->conns; *pc;) {
        struct spice_conn *c = *pc;
        short cr = disp_pollset_revents(ps, c->cidx), sr = disp_pollset_revents(ps, c->sidx);
        int r = 0;
        if (c->grant && c->grant->kicked) {
            r = -ECONNRESET;
        } else if (c->cidx < 0) {
            /* accepted in this iteration: not polled yet */
        } else if (c->head_deadline_ms) {
            r = conn_head(sp, c, cr != 0, now);
        } else if (cr || sr) {
            r = relay(c->cfd, c->sfd, &c->up, &c->client_eof);
            if (r == 0)
                r = relay(c->sfd, c->cfd, &c->down, &c->server_eof);
            if (r == 0 && ((cr | sr) & (POLLERR | POLLNVAL)))
                r = -EPIPE;
            if (r == 0 && c->client_eof && c->server_eof)
                r = -ECONNRESET;
            /* a peer that hung up without EOF on read */
            if (r == 0 &&
                (((cr & POLLHUP) && !(cr & POLLIN)) || ((sr & POLLHUP) && !(sr & POLLIN))))
                r = -ECONNRESET;
        }
        if (r < 0) {
            *pc = c->next;
            sp->n_conns--;
            conn_free(sp, c);
        } else {
            pc = &c->next;
        }
    }
}

const struct disp_frontend_ops disp_spice_ops = {
    .name = "spice",
    .open = spice_open,
    .prepare = spice_prepare,
    .dispatch = spice_dispatch,
    .close = spice_close,
};
