/*
 * SPICE front end: an HTTP CONNECT proxy, the "proxy=" of the broker's .vv
 * file, in front of each VM's SPICE server, wherever the VM runs.
 *
 * The .vv file names the ticket as the host to connect to ("host=<ticket>",
 * any port).  remote-viewer asks the proxy for "CONNECT <ticket>:<port>
 * HTTP/1.1"; displayd redeems the ticket and joins the connection to the
 * VM's QEMU as an already authenticated SPICE client (spice-up.c: a
 * socketpair handed over with QMP getfd + add_client skipauth), then relays
 * bytes without looking at them.  QEMU runs SPICE with ticketing on and no
 * password ever set, so its socket alone admits nobody; the .vv's password
 * is not checked by anyone.
 *
 * SPICE opens one connection per channel (main, display, inputs, cursor,
 * ...), each through the proxy with the same host.  The ticket is consumed in
 * the database once, by the first; the others are admitted by an in-memory
 * "grant" (one per viewer) that lives exactly as long as one of its
 * connections is open and accepts new channels only within GRANT_JOIN_S of
 * the redemption and only from the address that redeemed it.
 *
 * Other hosts: each connection is opened with disp_console_open_at on the
 * gateway thread, which reaches a VM on another host through that host's
 * relay (relay.c); the relay's serving side hands the stream to its own QEMU
 * the same way.  No password and no QMP command ever crosses hosts.
 *
 * Live migration, with SPICE's own mechanism.  Before the RAM copy the
 * source hostd issues a follow token (display_spice_follow: VM, destination
 * host) and gives it to QEMU as the host of client_migrate_info.  QEMU's
 * SPICE server tells the client (MIGRATE_BEGIN), and spice-gtk opens a second
 * set of channels to that "host" through the same proxy: "CONNECT
 * <token>:<port>".  The proxy admits such a connection only into a live
 * grant of that VM from the same client address (the token alone opens
 * nothing), and opens it on the destination host, where the relay admits a
 * "spice" stream for a VM that is arriving (its vm.migrate_in task runs
 * there).  When the copy completes QEMU tells the client to switch to those
 * channels (MIGRATE_END) or, if they were not all up yet, to reconnect to the
 * token's host (SWITCH_HOST), which the proxy also routes there; either way
 * the viewer's window and its grant stay, and the source's channels close.
 *
 * With display.spice_tls the proxy speaks TLS (display.tls_cert/tls_key, as
 * RDP): the .vv then says proxy=https://..., and spice-gtk wraps its proxy
 * connection in TLS before the CONNECT (checking the certificate against the
 * system's CAs and the gateway's name), so the ticket and the whole SPICE
 * stream are encrypted to displayd.  The head then arrives inside TLS: it is
 * read into the relay buffer instead of peeked, and whatever follows it stays
 * there for the VM.
 */
#include "disp-priv.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HEAD_MS 5000          /* the CONNECT head must arrive by then */
#define GRANT_JOIN_S 30       /* further channels must connect within this */
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
    int cfd, sfd; /* client (TCP) and server (QEMU's SPICE, maybe through the relay) */
    SSL *ssl;     /* on cfd, with display.spice_tls */
    short ssl_want; /* POLLIN/POLLOUT the last TLS call waits for */
    bool ssl_ready; /* handshake done */
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
    SSL_CTX *tls; /* NULL: plain HTTP CONNECT */
    int listen_fd, listen_idx;
    struct spice_conn *conns;
    size_t n_conns;
    struct spice_grant *grants;
};

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

/* The live grant of VM @vm_id for client @addr (a channel of its migration). */
static struct spice_grant *grant_of_vm(struct disp_spice *sp, int64_t vm_id, const char *addr)
{
    for (struct spice_grant *g = sp->grants; g; g = g->next)
        if (!g->kicked && g->n_conns > 0 && g->vm_id == vm_id && strcmp(addr, g->addr) == 0)
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
    SSL_free(c->ssl);
    if (c->cfd >= 0)
        close(c->cfd);
    if (c->sfd >= 0)
        close(c->sfd);
    grant_unref(sp, c->grant);
    free(c);
}

/* A TLS call's outcome as recv/send would give it; notes what it waits for. */
static ssize_t tls_result(struct spice_conn *c, int ok, size_t n)
{
    if (ok > 0) {
        c->ssl_want = 0;
        return (ssize_t)n;
    }
    int e = SSL_get_error(c->ssl, ok);
    ERR_clear_error();
    switch (e) {
    case SSL_ERROR_WANT_READ:
        c->ssl_want = POLLIN;
        return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        c->ssl_want = POLLOUT;
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        return -EPROTO;
    }
}

/* Read from the client: >0 bytes, 0 at EOF, -EAGAIN, or -errno. */
static ssize_t client_recv(struct spice_conn *c, void *buf, size_t size)
{
    if (c->ssl) {
        size_t n = 0;
        int ok = SSL_read_ex(c->ssl, buf, size, &n); /* before n is read */
        return tls_result(c, ok, n);
    }
    ssize_t n = recv(c->cfd, buf, size, MSG_DONTWAIT);
    return n < 0 ? -errno : n;
}

/* Write to the client: >0 bytes written, -EAGAIN, or -errno. */
static ssize_t client_send(struct spice_conn *c, const void *buf, size_t size)
{
    if (c->ssl) {
        size_t n = 0;
        int ok = SSL_write_ex(c->ssl, buf, size, &n); /* before n is read */
        ssize_t r = tls_result(c, ok, n);
        return r == 0 ? -EPIPE : r;
    }
    ssize_t n = send(c->cfd, buf, size, MSG_DONTWAIT | MSG_NOSIGNAL);
    return n < 0 ? -errno : n;
}

/* A refusal: best effort, the connection closes right after. */
static void conn_reply(struct spice_conn *c, const char *status)
{
    char line[128];
    int n = snprintf(line, sizeof(line), "HTTP/1.1 %s\r\n\r\n", status);
    /* a fresh socket's send buffer takes a status line whole */
    (void)client_send(c, line, (size_t)n);
}

/* The CONNECT head is complete in @head: admit (returns 0) or refuse (-errno). */
static int conn_admit(struct disp_spice *sp, struct spice_conn *c, const char *head, size_t hl)
{
    char ticket[DB_TICKET_LEN + 1];
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
    int64_t host_id = 0; /* where the VM's row says */
    if (!g) {
        /* a channel for the destination of a live migration (client_migrate_info) */
        int64_t vm_id, to_host;
        r = db_ensure(disp_core_db(sp->core));
        if (r == 0)
            r = db_spice_follow_find(disp_core_db(sp->core), ticket, &vm_id, &to_host);
        if (r == 0) {
            if (!(g = grant_of_vm(sp, vm_id, c->addr))) {
                log_warn("spice follow refused", "vm", LOG_INT(vm_id), "client", c->addr,
                         "reason", "no live viewer of the vm from this address");
                conn_reply(c, "403 Forbidden");
                return -EACCES;
            }
            host_id = to_host;
            log_info("spice viewer follows the vm", "vm", LOG_INT(vm_id), "client", c->addr,
                     "to_host", LOG_INT(to_host));
        }
    }
    if (!g) {
        struct db_ticket_grant tg;
        r = disp_core_redeem(sp->core, ticket, DB_PROTO_SPICE, c->addr, &tg);
        if (r < 0) {
            conn_reply(c, "403 Forbidden");
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

    /* on this host: handed to QEMU now; elsewhere: a relayed stream whose
     * thread connects while the client already sends (the relay buffers) */
    r = disp_console_open_at(sp->core, g->vm_id, DISP_CONSOLE_SPICE, host_id, &c->sfd, NULL);
    if (r == 0 && fcntl(c->sfd, F_SETFL, fcntl(c->sfd, F_GETFL) | O_NONBLOCK) < 0)
        r = -errno;
    if (r < 0) {
        log_error("spice console unreachable", "vm", LOG_INT(g->vm_id), "host_id",
                  LOG_INT(host_id), "errno", LOG_INT(-r));
        conn_reply(c, "502 Bad Gateway");
        return r;
    }
    if (c->ssl) {
        /* the head was read into the up buffer: what follows it stays there */
        c->up.off += hl;
        c->up.len -= hl;
    } else {
        /* drop the head from the socket; bytes after it (if any) stay for the relay */
        char sink[DISP_HTTP_HEAD_MAX];
        if (recv(c->cfd, sink, hl, MSG_DONTWAIT) != (ssize_t)hl)
            return -EIO;
    }
    /* the answer goes first through the relay's client-bound buffer */
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    memcpy(c->down.data, ok, sizeof(ok) - 1);
    c->down.off = 0;
    c->down.len = sizeof(ok) - 1;
    c->head_deadline_ms = 0;
    return 0;
}

/* TLS head stage: handshake, then read (not peek) until the head is complete. */
static int conn_head_tls(struct disp_spice *sp, struct spice_conn *c, int64_t now)
{
    if (!c->ssl_ready) {
        ssize_t r = tls_result(c, SSL_accept(c->ssl), 0);
        if (r == -EAGAIN)
            return now >= c->head_deadline_ms ? -ETIMEDOUT : 0;
        if (r < 0 || SSL_is_init_finished(c->ssl) != 1) {
            log_warn("spice tls handshake failed", "client", c->addr);
            return r < 0 ? (int)r : -EPROTO;
        }
        c->ssl_ready = true;
    }
    /* the head accumulates at the start of the up buffer */
    size_t room = DISP_HTTP_HEAD_MAX - c->up.len;
    ssize_t n = room ? client_recv(c, c->up.data + c->up.len, room) : 0;
    if (n == 0)
        return room ? -ECONNRESET : 0;
    if (n < 0 && n != -EAGAIN)
        return (int)n;
    if (n > 0)
        c->up.len += (size_t)n;
    int hl = disp_http_head_len(c->up.data, c->up.len);
    if (hl < 0 || (hl == 0 && c->up.len >= DISP_HTTP_HEAD_MAX)) {
        conn_reply(c, "431 Request Header Fields Too Large");
        return hl < 0 ? hl : -EMSGSIZE;
    }
    if (hl == 0)
        return now >= c->head_deadline_ms ? -ETIMEDOUT : 0;
    return conn_admit(sp, c, c->up.data, (size_t)hl);
}

/* Head stage: peek until the head is complete.  <0: close the connection. */
static int conn_head(struct disp_spice *sp, struct spice_conn *c, bool readable, int64_t now)
{
    char head[DISP_HTTP_HEAD_MAX];
    if (!readable)
        return now >= c->head_deadline_ms ? -ETIMEDOUT : 0;
    if (c->ssl)
        return conn_head_tls(sp, c, now);
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

/* Move bytes client -> VM: read into the up buffer when it is empty, then
 * send it on.  <0 on a hard error. */
static int relay_up(struct spice_conn *c)
{
    struct relay_buf *b = &c->up;
    if (!c->client_eof && b->len == 0) {
        ssize_t n = client_recv(c, b->data, sizeof(b->data));
        if (n == 0)
            c->client_eof = true;
        else if (n < 0 && n != -EAGAIN && n != -EWOULDBLOCK)
            return (int)n;
        else if (n > 0) {
            b->off = 0;
            b->len = (size_t)n;
        }
    }
    while (b->len > 0) {
        ssize_t n = send(c->sfd, b->data + b->off, b->len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -errno;
        }
        b->off += (size_t)n;
        b->len -= (size_t)n;
    }
    if (c->client_eof && b->len == 0)
        (void)shutdown(c->sfd, SHUT_WR);
    return 0;
}

/* Move bytes VM -> client.  <0 on a hard error. */
static int relay_down(struct spice_conn *c)
{
    struct relay_buf *b = &c->down;
    if (!c->server_eof && b->len == 0) {
        ssize_t n = recv(c->sfd, b->data, sizeof(b->data), MSG_DONTWAIT);
        if (n == 0)
            c->server_eof = true;
        else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        else if (n > 0) {
            b->off = 0;
            b->len = (size_t)n;
        }
    }
    while (b->len > 0) {
        /* TLS: a write that must be retried is retried with the same bytes */
        ssize_t n = client_send(c, b->data + b->off, b->len);
        if (n < 0) {
            if (n == -EAGAIN || n == -EWOULDBLOCK)
                break;
            return (int)n;
        }
        b->off += (size_t)n;
        b->len -= (size_t)n;
    }
    if (c->server_eof && b->len == 0) {
        if (c->ssl)
            (void)SSL_shutdown(c->ssl);
        (void)shutdown(c->cfd, SHUT_WR);
    }
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
        if (sp->tls && (!(c->ssl = SSL_new(sp->tls)) || SSL_set_fd(c->ssl, fd) != 1)) {
            log_warn("spice connection refused", "client", addr, "reason", "no TLS state");
            SSL_free(c->ssl);
            free(c);
            close(fd);
            continue;
        }
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
    SSL_CTX_free(sp->tls);
    free(sp);
}

/* TLS for the proxy: the display certificate and key, TLS 1.2 or newer. */
static int spice_tls_new(const struct atr_config *cfg, SSL_CTX **ret_ctx, struct atr_error *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return atr_error_set(err, -ENOMEM, "cannot set up TLS for SPICE");
    /*
     * TLS 1.2 only, forward-secret AEAD suites.  Not 1.3: remote-viewer
     * (spice-gtk 0.42 with GLib's GnuTLS) stalls on a TLS 1.3 proxy right
     * after the main channel is up, every time (with and without session
     * tickets).  Over 1.2 it usually carries every channel, but the same
     * stall still happens at times on a loaded machine (no further channel
     * is ever opened): display.spice_tls is not ready for production.
     */
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, cfg->display.tls_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, cfg->display.tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        char why[160];
        ERR_error_string_n(ERR_get_error(), why, sizeof(why));
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return atr_error_set(err, -EINVAL,
                             "display.spice_tls needs display.tls_cert %s and tls_key %s: %s",
                             cfg->display.tls_cert, cfg->display.tls_key, why);
    }
    /* the relay retries a partial write with the same buffer at a moved offset */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    *ret_ctx = ctx;
    return 0;
}

static int spice_open(struct disp_core *core, const struct atr_config *cfg, void **ret_state,
                      struct atr_error *err)
{
    struct disp_spice *sp = calloc(1, sizeof(*sp));
    if (!sp)
        return atr_error_set(err, -ENOMEM, "out of memory");
    sp->core = core;
    sp->listen_fd = -1;
    if (cfg->display.spice_tls) {
        int r = spice_tls_new(cfg, &sp->tls, err);
        if (r < 0) {
            spice_close(sp);
            return r;
        }
    }
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
            if ((c->cidx = disp_pollset_add(ps, c->cfd, c->ssl_want ? c->ssl_want : POLLIN)) < 0)
                return -ENOMEM;
            c->sidx = -1;
            int64_t left = c->head_deadline_ms - now;
            disp_pollset_timeout(ps, left > 0 ? (int)left : 0);
            continue;
        }
        /* read a side only while its buffer is empty; wait for POLLOUT while full */
        short ce =
            (short)((c->up.len == 0 && !c->client_eof ? POLLIN : 0) | (c->down.len ? POLLOUT : 0));
        if (c->ssl) {
            /* a TLS read may need to write and the reverse; and bytes TLS
             * already decrypted make no socket readable */
            ce |= c->ssl_want;
            if (c->up.len == 0 && !c->client_eof && SSL_pending(c->ssl) > 0)
                disp_pollset_timeout(ps, 0);
        }
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
        } else if (cr || sr || (c->ssl && SSL_pending(c->ssl) > 0)) {
            r = relay_up(c);
            if (r == 0)
                r = relay_down(c);
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
            log_debug("spice connection closed", "client", c->addr, "stage",
                      c->head_deadline_ms ? "head" : "relay", "errno", LOG_INT(-r));
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
