/*
 * Consoles across hosts: the relay.
 *
 * QEMU serves a VM's consoles on unix sockets of the VM's own host only, and
 * a viewer may reach any host's displayd (or stay connected to one while
 * its VM migrates away).  So each displayd serves the consoles of its own
 * host to the other hosts' displayd: a TLS listener ([display] relay_port)
 * that carries one byte stream to one console socket per connection.  No
 * second RPC protocol: the connecting side writes a one-time internal ticket
 * into PostgreSQL (db_relay_ticket_issue: VM, console kind, serving host),
 * sends it as the only line after the TLS handshake, and the serving side
 * consumes it in one statement (unused, unexpired, for this host, the VM
 * still here), answers "OK" and then only copies bytes.  A "spice" stream
 * is the one exception to "a console socket": the serving side hands it to
 * its QEMU as an authenticated client (getfd + add_client over its local
 * QMP, spice-up.c), so the relay ticket is the SPICE client's only
 * credential and no password or QMP command crosses hosts; it is also
 * served for a VM arriving here (a running vm.migrate_in task), whose QEMU
 * takes a SPICE client's channels before the guest moves.  The serving side
 * proves who it is with its certificate, whose SHA-256 it announced in its
 * hosts row next to the relay's address; the connecting side pins that.
 *
 * Threads: one per relayed stream on each side, so the gateway's single
 * poll loop never waits on TLS or on another host.  The connecting side
 * hands the gateway one end of a socketpair (libvncclient and the other
 * front ends see a plain blocking socket, exactly like QEMU's unix socket);
 * its thread connects, shakes hands within deadlines and then copies between
 * the socketpair and TLS.  Serving threads open their own short database
 * connection to consume the ticket (the core's handle belongs to the
 * gateway thread).  A thread never closes its descriptors: the gateway
 * thread reaps finished threads (join, close) on every turn, and on exit
 * shuts every stream down and joins them all.
 */
#include "disp-priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SETUP_MS 10000  /* connect + TLS + ticket + answer, each side */
#define MAX_STREAMS 256 /* relayed streams at once, both directions */
#define ANNOUNCE_RETRY_MS 2000

struct relay_stream {
    struct disp_relay *relay;
    bool serving;       /* accepted here (else: opened by this displayd) */
    int net_fd;         /* TCP to the other displayd */
    int local_fd;       /* serving: the console socket; connecting: our socketpair end */
    SSL *ssl;
    int64_t vm_id;
    char kind[8];
    char ticket[DISP_RELAY_TICKET_LEN + 1];
    char peer[64];      /* serving: client address; connecting: "host addr:port" */
    char addr[256];     /* connecting: relay address */
    char cert_sha256[65];
    atomic_bool done;
    pthread_t thread;
    struct relay_stream *next;
};

struct disp_relay {
    struct disp_core *core;
    SSL_CTX *srv, *cli;
    int listen_fd, listen_idx;
    char *db_url;
    int db_timeout_s;
    char *runtime_dir;
    char *host_name;
    char announce[256];
    char cert_sha256[65];
    int64_t host_id; /* 0 until announced */
    int64_t announce_retry_ms;
    struct relay_stream *streams; /* gateway thread only */
    size_t n_streams;
};

static const char *kind_name(enum disp_console kind)
{
    switch (kind) {
    case DISP_CONSOLE_VNC:
        return "vnc";
    case DISP_CONSOLE_SPICE:
        return "spice";
    }
    return NULL;
}

static const char *kind_path(const struct hv_vm_paths *p, const char *kind)
{
    if (strcmp(kind, "vnc") == 0)
        return p->vnc;
    if (strcmp(kind, "spice") == 0)
        return p->spice;
    /* Never a QMP socket: the schema still admits kind 'qmp' (migration
     * 0004), but what a relay carries is a console, not control of QEMU. */
    return NULL;
}

/* A stream to console @kind on this host: SPICE is handed to QEMU as an
 * authenticated client (spice-up.c), the others are their unix sockets. */
static int console_connect_local(const struct hv_vm_paths *p, const char *kind, int *ret_fd)
{
    const char *path = kind_path(p, kind);
    if (!path)
        return -EINVAL;
    if (strcmp(kind, "spice") == 0)
        return disp_spice_handover(p->qmp_display, ret_fd);
    return disp_net_connect_unix(path, ret_fd);
}

static int set_blocking(int fd, bool blocking)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, blocking ? fl & ~O_NONBLOCK : fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

static int ms_left(int64_t deadline)
{
    int64_t left = deadline - atr_now_mono_ms();
    return left > 0 ? (int)left : 0;
}

/* Wait until @fd is ready for what the last TLS call on @ssl (result @ret) wants. */
static int tls_wait(SSL *ssl, int ret, int fd, int64_t deadline)
{
    int e = SSL_get_error(ssl, ret);
    short ev = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (!ev)
        return -EPROTO;
    struct pollfd p = {.fd = fd, .events = ev};
    int left = ms_left(deadline);
    if (left == 0 || poll(&p, 1, left) <= 0)
        return -ETIMEDOUT;
    return 0;
}

/* Read one line (at most @size - 1 bytes, ending in '\n') through TLS. */
static int tls_read_line(SSL *ssl, int fd, char *buf, size_t size, int64_t deadline)
{
    size_t have = 0;
    while (have + 1 < size) {
        size_t n = 0;
        int ok = SSL_read_ex(ssl, buf + have, 1, &n); /* byte by byte: nothing read beyond it */
        if (ok == 1) {
            have += n;
            if (buf[have - 1] == '\n') {
                buf[have] = '\0';
                return (int)have;
            }
            continue;
        }
        int r = tls_wait(ssl, ok, fd, deadline);
        if (r < 0)
            return r;
    }
    buf[have] = '\0';
    return -EMSGSIZE;
}

static int tls_write_all(SSL *ssl, int fd, const char *buf, size_t len, int64_t deadline)
{
    while (len > 0) {
        size_t n = 0;
        int ok = SSL_write_ex(ssl, buf, len, &n);
        if (ok == 1) {
            buf += n;
            len -= n;
            continue;
        }
        int r = tls_wait(ssl, ok, fd, deadline);
        if (r < 0)
            return r;
    }
    return 0;
}

/*
 * Copy between the console side (@s->local_fd) and TLS until either side
 * ends.  Both descriptors non-blocking; every TLS call is retried with the
 * same arguments until it succeeds, as OpenSSL asks.
 */
static void pump(struct relay_stream *s, uint64_t *ret_in, uint64_t *ret_out)
{
    unsigned char in[16384], out[16384];
    size_t in_len = 0, in_off = 0, out_len = 0;
    short rd_want = POLLIN, wr_want = POLLOUT;
    uint64_t n_in = 0, n_out = 0;
    /* a host that vanishes without a FIN (link cut) ends the stream in ~25 s */
    int one = 1, idle = 10, intvl = 5, cnt = 3;
    (void)setsockopt(s->net_fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    (void)setsockopt(s->net_fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    (void)setsockopt(s->net_fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    (void)setsockopt(s->net_fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    (void)set_blocking(s->local_fd, false);
    (void)set_blocking(s->net_fd, false);
    for (;;) {
        bool progress = false;
        if (in_len == 0) { /* network -> console */
            size_t n = 0;
            int ok = SSL_read_ex(s->ssl, in, sizeof(in), &n);
            if (ok == 1) {
                in_len = n;
                in_off = 0;
                n_in += n;
                progress = true;
            } else {
                int e = SSL_get_error(s->ssl, ok);
                if (e == SSL_ERROR_WANT_READ)
                    rd_want = POLLIN;
                else if (e == SSL_ERROR_WANT_WRITE)
                    rd_want = POLLOUT;
                else
                    break; /* closed or failed */
            }
        }
        if (in_len > 0) {
            ssize_t w = write(s->local_fd, in + in_off, in_len - in_off);
            if (w > 0) {
                in_off += (size_t)w;
                if (in_off == in_len)
                    in_len = 0;
                progress = true;
            } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                break;
            }
        }
        if (out_len == 0) { /* console -> network */
            ssize_t r = read(s->local_fd, out, sizeof(out));
            if (r > 0) {
                out_len = (size_t)r;
                progress = true;
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                break;
            }
        }
        if (out_len > 0) {
            size_t n = 0;
            int ok = SSL_write_ex(s->ssl, out, out_len, &n);
            if (ok == 1) {
                n_out += n;
                out_len = 0;
                progress = true;
            } else {
                int e = SSL_get_error(s->ssl, ok);
                if (e == SSL_ERROR_WANT_READ)
                    wr_want = POLLIN;
                else if (e == SSL_ERROR_WANT_WRITE)
                    wr_want = POLLOUT;
                else
                    break;
            }
        }
        if (progress)
            continue;
        struct pollfd p[2] = {
            {.fd = s->local_fd, .events = (short)((in_len ? POLLOUT : 0) | (out_len ? 0 : POLLIN))},
            {.fd = s->net_fd, .events = (short)((in_len ? 0 : rd_want) | (out_len ? wr_want : 0))},
        };
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if ((p[0].revents & (POLLERR | POLLNVAL)) || (p[1].revents & (POLLERR | POLLNVAL)))
            break;
        /* a hang-up with nothing left to read ends the stream at the next read */
    }
    *ret_in = n_in;
    *ret_out = n_out;
}

static int cert_sha256_hex(X509 *cert, char out[static 65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    if (!cert || X509_digest(cert, EVP_sha256(), md, &len) != 1 || len != 32)
        return -EIO;
    for (unsigned i = 0; i < len; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Connecting side                                                          */
/* ------------------------------------------------------------------------ */

/* "a.b.c.d:port" or "[v6]:port" to a TCP connection, within @deadline. */
static int tcp_connect(const char *addr, int64_t deadline, int *ret_fd)
{
    char host[256], *port;
    snprintf(host, sizeof(host), "%s", addr);
    char *h = host;
    if (*h == '[') {
        char *end = strchr(h, ']');
        if (!end || end[1] != ':')
            return -EINVAL;
        *end = '\0';
        h++;
        port = end + 2;
    } else {
        port = strrchr(h, ':');
        if (!port)
            return -EINVAL;
        *port++ = '\0';
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    if (getaddrinfo(h, port, &hints, &ai) != 0 || !ai)
        return -EINVAL;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), r = 0;
    if (fd < 0) {
        r = -errno;
        goto out;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
            r = -errno;
            goto out;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int left = ms_left(deadline);
        if (left == 0 || poll(&p, 1, left) <= 0) {
            r = -ETIMEDOUT;
            goto out;
        }
        int e = 0;
        socklen_t el = sizeof(e);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0 || e) {
            r = e ? -e : -errno;
            goto out;
        }
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    *ret_fd = fd;
    fd = -1;
out:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return r;
}

static void *connect_main(void *arg)
{
    struct relay_stream *s = arg;
    int64_t t0 = atr_now_mono_ms(), deadline = t0 + SETUP_MS;
    char line[128], fp[65];
    const char *why = NULL;
    int r = tcp_connect(s->addr, deadline, &s->net_fd);
    if (r < 0) {
        why = "connect failed";
        goto out;
    }
    if (!(s->ssl = SSL_new(s->relay->cli)) || SSL_set_fd(s->ssl, s->net_fd) != 1) {
        why = "TLS setup failed";
        goto out;
    }
    for (;;) {
        int ok = SSL_connect(s->ssl);
        if (ok == 1)
            break;
        if ((r = tls_wait(s->ssl, ok, s->net_fd, deadline)) < 0) {
            why = "TLS handshake failed";
            goto out;
        }
    }
    X509 *cert = SSL_get1_peer_certificate(s->ssl);
    r = cert_sha256_hex(cert, fp);
    X509_free(cert);
    if (r < 0 || strcmp(fp, s->cert_sha256) != 0) {
        why = "certificate does not match the host's announced one";
        r = -EPERM;
        goto out;
    }
    snprintf(line, sizeof(line), "ATRIUM-RELAY 1 %s\n", s->ticket);
    if ((r = tls_write_all(s->ssl, s->net_fd, line, strlen(line), deadline)) < 0 ||
        (r = tls_read_line(s->ssl, s->net_fd, line, sizeof(line), deadline)) < 0) {
        why = "no answer";
        goto out;
    }
    if (strcmp(line, "OK\n") != 0) {
        line[strcspn(line, "\r\n")] = '\0';
        why = "refused";
        log_warn("relay refused the stream", "vm", LOG_INT(s->vm_id), "kind", s->kind, "relay",
                 s->addr, "answer", line);
        r = -EACCES;
        goto out;
    }
    log_info("relay stream opened", "vm", LOG_INT(s->vm_id), "kind", s->kind, "relay", s->addr,
             "setup_ms", LOG_INT(atr_now_mono_ms() - t0));
    uint64_t n_in, n_out;
    pump(s, &n_in, &n_out);
    log_info("relay stream closed", "vm", LOG_INT(s->vm_id), "kind", s->kind, "relay", s->addr,
             "bytes_in", LOG_INT((int64_t)n_in), "bytes_out", LOG_INT((int64_t)n_out));
out:
    if (why && r != -EACCES)
        log_warn("relay stream failed", "vm", LOG_INT(s->vm_id), "kind", s->kind, "relay", s->addr,
                 "reason", why, "errno", LOG_INT(-r));
    /* the gateway's end sees EOF now (its handshake, if still waiting, fails) */
    if (s->local_fd >= 0)
        shutdown(s->local_fd, SHUT_RDWR);
    atomic_store(&s->done, true);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Serving side                                                             */
/* ------------------------------------------------------------------------ */

static void *serve_main(void *arg)
{
    struct relay_stream *s = arg;
    struct disp_relay *relay = s->relay;
    int64_t deadline = atr_now_mono_ms() + SETUP_MS;
    struct db *db = NULL;
    struct atr_error err = {0};
    char line[128];
    const char *why = NULL;
    int r;

    if (!(s->ssl = SSL_new(relay->srv)) || SSL_set_fd(s->ssl, s->net_fd) != 1) {
        why = "TLS setup failed";
        goto out;
    }
    for (;;) {
        int ok = SSL_accept(s->ssl);
        if (ok == 1)
            break;
        if (tls_wait(s->ssl, ok, s->net_fd, deadline) < 0) {
            why = "TLS handshake failed";
            goto out;
        }
    }
    /* byte by byte up to the newline: the request is one short line */
    size_t have = 0;
    for (;;) {
        size_t n = 0;
        int ok = SSL_read_ex(s->ssl, line + have, 1, &n);
        if (ok != 1) {
            if (tls_wait(s->ssl, ok, s->net_fd, deadline) < 0) {
                why = "no request";
                goto out;
            }
            continue;
        }
        have += n;
        r = disp_relay_request_ticket(line, have, s->ticket, sizeof(s->ticket));
        if (r > 0)
            break;
        if (r < 0 || have >= sizeof(line) - 1) {
            why = "bad request";
            goto refuse;
        }
    }
    if (db_open(relay->db_url, relay->db_timeout_s, "atrium-displayd-relay", &db, &err) < 0) {
        why = "database unavailable";
        goto refuse;
    }
    r = db_relay_ticket_consume(db, s->ticket, relay->host_id, &s->vm_id, s->kind);
    if (r < 0) {
        why = r == -EACCES ? "ticket refused" : "database error";
        struct db_audit_entry a = {.actor = "atrium-displayd",
                                   .client_addr = s->peer,
                                   .action = "console.relay",
                                   .outcome = "denied"};
        (void)db_audit_add(db, &a);
        goto refuse;
    }
    db = db_close(db);
    struct hv_vm_paths paths;
    if (hv_vm_paths_init(relay->runtime_dir, s->vm_id, &paths) < 0) {
        why = "console unreachable";
        goto refuse;
    }
    if (!kind_path(&paths, s->kind)) {
        why = "not a console";
        goto refuse;
    }
    if (console_connect_local(&paths, s->kind, &s->local_fd) < 0) {
        why = "console unreachable";
        goto refuse;
    }
    if (tls_write_all(s->ssl, s->net_fd, "OK\n", 3, deadline) < 0) {
        why = "client gone";
        goto out;
    }
    log_info("relay stream served", "vm", LOG_INT(s->vm_id), "kind", s->kind, "client", s->peer);
    uint64_t n_in, n_out;
    pump(s, &n_in, &n_out);
    log_info("relay stream ended", "vm", LOG_INT(s->vm_id), "kind", s->kind, "client", s->peer,
             "bytes_in", LOG_INT((int64_t)n_in), "bytes_out", LOG_INT((int64_t)n_out));
    goto out;
refuse:
    snprintf(line, sizeof(line), "ERR %s\n", why);
    (void)tls_write_all(s->ssl, s->net_fd, line, strlen(line), deadline);
out:
    if (why)
        log_warn("relay stream refused", "client", s->peer, "vm", LOG_INT(s->vm_id), "reason",
                 why);
    db_close(db);
    if (s->net_fd >= 0)
        shutdown(s->net_fd, SHUT_RDWR);
    atomic_store(&s->done, true);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Streams (gateway thread)                                                 */
/* ------------------------------------------------------------------------ */

static void stream_free(struct relay_stream *s)
{
    SSL_free(s->ssl);
    if (s->net_fd >= 0)
        close(s->net_fd);
    if (s->local_fd >= 0)
        close(s->local_fd);
    OPENSSL_cleanse(s->ticket, sizeof(s->ticket));
    free(s);
}

static int stream_start(struct disp_relay *relay, struct relay_stream *s, void *(*fn)(void *))
{
    if (pthread_create(&s->thread, NULL, fn, s) != 0)
        return -EAGAIN;
    s->next = relay->streams;
    relay->streams = s;
    relay->n_streams++;
    return 0;
}

static void streams_reap(struct disp_relay *relay, bool all)
{
    for (struct relay_stream **ps = &relay->streams; *ps;) {
        struct relay_stream *s = *ps;
        if (all && !atomic_load(&s->done)) {
            if (s->net_fd >= 0)
                shutdown(s->net_fd, SHUT_RDWR);
            if (s->local_fd >= 0)
                shutdown(s->local_fd, SHUT_RDWR);
        }
        if (!all && !atomic_load(&s->done)) {
            ps = &s->next;
            continue;
        }
        pthread_join(s->thread, NULL);
        *ps = s->next;
        relay->n_streams--;
        stream_free(s);
    }
}

int disp_console_host(struct disp_core *core, int64_t vm_id, int64_t *ret_host_id)
{
    struct disp_relay *relay = disp_core_relay(core);
    struct db_relay_target t;
    if (!relay || !relay->host_id) {
        *ret_host_id = 0;
        return 0;
    }
    int r = db_ensure(disp_core_db(core));
    if (r == 0)
        r = db_relay_locate(disp_core_db(core), vm_id, &t);
    if (r < 0)
        return r;
    *ret_host_id = t.host_id;
    return 0;
}

int disp_console_open(struct disp_core *core, int64_t vm_id, enum disp_console kind, int *ret_fd,
                      int64_t *ret_host_id)
{
    return disp_console_open_at(core, vm_id, kind, 0, ret_fd, ret_host_id);
}

int disp_console_open_at(struct disp_core *core, int64_t vm_id, enum disp_console kind,
                         int64_t host_id, int *ret_fd, int64_t *ret_host_id)
{
    struct disp_relay *relay = disp_core_relay(core);
    struct db_relay_target t = {0};
    struct hv_vm_paths paths;
    int r, fd = -1;

    if (relay && relay->host_id) {
        r = db_ensure(disp_core_db(core));
        if (r == 0)
            r = db_relay_locate(disp_core_db(core), vm_id, &t);
        if (r == 0 && host_id && host_id != t.host_id)
            r = db_relay_host(disp_core_db(core), host_id, &t);
        if (r < 0)
            return r;
    }
    if (!relay || !relay->host_id || !t.host_id || t.host_id == relay->host_id) {
        r = disp_core_vm_paths(core, vm_id, &paths);
        if (r < 0)
            return r;
        if ((r = console_connect_local(&paths, kind_name(kind), &fd)) < 0 ||
            (r = set_blocking(fd, true)) < 0) {
            if (fd >= 0)
                close(fd);
            return r;
        }
        *ret_fd = fd;
        if (ret_host_id)
            *ret_host_id = relay ? relay->host_id : 0;
        return 0;
    }
    if (!t.relay[0] || strlen(t.cert_sha256) != 64) {
        log_warn("console on a host without relay", "vm", LOG_INT(vm_id), "host", t.host_name);
        return -EHOSTUNREACH;
    }
    if (relay->n_streams >= MAX_STREAMS)
        return -EMFILE;
    struct relay_stream *s = calloc(1, sizeof(*s));
    int sv[2] = {-1, -1};
    if (!s)
        return -ENOMEM;
    s->relay = relay;
    s->net_fd = -1;
    s->local_fd = -1;
    s->vm_id = vm_id;
    snprintf(s->kind, sizeof(s->kind), "%s", kind_name(kind));
    snprintf(s->addr, sizeof(s->addr), "%s", t.relay);
    snprintf(s->peer, sizeof(s->peer), "%s", t.host_name);
    snprintf(s->cert_sha256, sizeof(s->cert_sha256), "%s", t.cert_sha256);
    r = db_relay_ticket_issue(disp_core_db(core), vm_id, t.host_id, s->kind, s->ticket);
    if (r < 0)
        goto fail;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        r = -errno;
        goto fail;
    }
    s->local_fd = sv[1];
    sv[1] = -1;
    r = stream_start(relay, s, connect_main);
    if (r < 0)
        goto fail;
    log_info("console through relay", "vm", LOG_INT(vm_id), "kind", s->kind, "host", t.host_name,
             "relay", t.relay);
    *ret_fd = sv[0];
    if (ret_host_id)
        *ret_host_id = t.host_id;
    return 0;
fail:
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    stream_free(s);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Front end: the listener                                                  */
/* ------------------------------------------------------------------------ */

static void relay_close(void *state)
{
    struct disp_relay *relay = state;
    if (!relay)
        return;
    if (disp_core_relay(relay->core) == relay)
        disp_core_set_relay(relay->core, NULL);
    streams_reap(relay, true);
    if (relay->listen_fd >= 0)
        close(relay->listen_fd);
    SSL_CTX_free(relay->srv);
    SSL_CTX_free(relay->cli);
    free(relay->db_url);
    free(relay->runtime_dir);
    free(relay->host_name);
    free(relay);
}

static int tls_error(struct atr_error *err, const char *what)
{
    char why[160];
    ERR_error_string_n(ERR_get_error(), why, sizeof(why));
    ERR_clear_error();
    return atr_error_set(err, -EINVAL, "relay: %s: %s", what, why);
}

/* The address other hosts use: relay_address, else [hostd] address, else listen. */
static int announce_address(const struct atr_config *cfg, char *out, size_t size)
{
    const char *a = cfg->display.relay_address;
    if (!a || !*a)
        a = cfg->hostd.address;
    if (!a || !*a)
        a = cfg->display.listen;
    if (!a || !*a || strcmp(a, "0.0.0.0") == 0 || strcmp(a, "::") == 0)
        return -EDESTADDRREQ;
    snprintf(out, size, strchr(a, ':') ? "[%s]:%d" : "%s:%d", a, cfg->display.relay_port);
    return 0;
}

static void relay_announce(struct disp_relay *relay)
{
    struct db *db = disp_core_db(relay->core);
    int64_t id = 0;
    int r = db_ensure(db);
    if (r == 0)
        r = db_relay_announce(db, relay->host_name, relay->announce, relay->cert_sha256, &id);
    if (r < 0) {
        if (relay->announce_retry_ms == 0)
            log_warn("relay not announced yet, retrying", "host", relay->host_name, "errno",
                     LOG_INT(-r));
        relay->announce_retry_ms = atr_now_mono_ms() + ANNOUNCE_RETRY_MS;
        return;
    }
    relay->host_id = id;
    log_info("relay announced", "host", relay->host_name, "host_id", LOG_INT(id), "address",
             relay->announce);
}

static int relay_open(struct disp_core *core, const struct atr_config *cfg, void **ret_state,
                      struct atr_error *err)
{
    struct disp_relay *relay;
    int r;
    if (cfg->display.relay_port == 0) {
        *ret_state = NULL; /* off: consoles of this host only */
        return 0;
    }
    if (!(relay = calloc(1, sizeof(*relay))))
        return atr_error_set(err, -ENOMEM, "out of memory");
    relay->core = core;
    relay->listen_fd = -1;
    relay->db_timeout_s = cfg->db.connect_timeout_s;
    char hostname[256] = "";
    gethostname(hostname, sizeof(hostname) - 1);
    if (!(relay->db_url = strdup(cfg->db.url)) ||
        !(relay->runtime_dir = strdup(cfg->paths.runtime_dir)) ||
        !(relay->host_name = strdup(cfg->hostd.name[0] ? cfg->hostd.name : hostname))) {
        r = atr_error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    if (announce_address(cfg, relay->announce, sizeof(relay->announce)) < 0) {
        r = atr_error_set(err, -EINVAL,
                          "relay: no address to announce (set [display] relay_address or"
                          " [hostd] address)");
        goto out;
    }
    relay->srv = SSL_CTX_new(TLS_server_method());
    relay->cli = SSL_CTX_new(TLS_client_method());
    if (!relay->srv || !relay->cli) {
        r = tls_error(err, "cannot set up TLS");
        goto out;
    }
    if (SSL_CTX_set_min_proto_version(relay->srv, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_min_proto_version(relay->cli, TLS1_3_VERSION) != 1 ||
        SSL_CTX_use_certificate_chain_file(relay->srv, cfg->display.tls_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(relay->srv, cfg->display.tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(relay->srv) != 1) {
        r = tls_error(err, "certificate or key unusable");
        goto out;
    }
    /* the peer is checked by pinning (connect_main), not by a CA */
    SSL_CTX_set_verify(relay->cli, SSL_VERIFY_NONE, NULL);
    if (cert_sha256_hex(SSL_CTX_get0_certificate(relay->srv), relay->cert_sha256) < 0) {
        r = tls_error(err, "cannot hash the certificate");
        goto out;
    }
    r = disp_net_listen(cfg->display.listen, cfg->display.relay_port, &relay->listen_fd);
    if (r < 0) {
        atr_error_set(err, r, "cannot listen for the relay on %s port %d: %s",
                      cfg->display.listen, cfg->display.relay_port, strerror(-r));
        goto out;
    }
    r = db_listen(disp_core_db(core), DB_CHANNEL_VM);
    if (r < 0) {
        atr_error_set(err, r, "cannot LISTEN for VM moves: %s", strerror(-r));
        goto out;
    }
    relay_announce(relay);
    disp_core_set_relay(core, relay);
    *ret_state = relay;
    relay = NULL;
    r = 0;
out:
    relay_close(relay);
    return r;
}

static int relay_prepare(void *state, struct disp_pollset *ps)
{
    struct disp_relay *relay = state;
    if (!relay)
        return 0;
    if ((relay->listen_idx = disp_pollset_add(ps, relay->listen_fd, POLLIN)) < 0)
        return -ENOMEM;
    if (!relay->host_id)
        disp_pollset_timeout(ps, ms_left(relay->announce_retry_ms));
    /* finished threads are reaped on the next turn: at most one second late */
    if (relay->streams)
        disp_pollset_timeout(ps, 1000);
    return 0;
}

static void relay_accept(struct disp_relay *relay)
{
    for (;;) {
        char addr[64];
        int fd;
        int r = disp_net_accept(relay->listen_fd, &fd, addr);
        if (r < 0) {
            if (r != -EAGAIN && r != -EWOULDBLOCK && r != -ECONNABORTED)
                log_warn("relay accept failed", "errno", LOG_INT(-r));
            return;
        }
        struct relay_stream *s = NULL;
        if (!relay->host_id || relay->n_streams >= MAX_STREAMS ||
            !(s = calloc(1, sizeof(*s)))) {
            log_warn("relay connection refused", "client", addr, "reason",
                     relay->host_id ? "too many streams" : "not announced yet");
            close(fd);
            continue;
        }
        s->relay = relay;
        s->serving = true;
        s->net_fd = fd;
        s->local_fd = -1;
        snprintf(s->peer, sizeof(s->peer), "%s", addr);
        if (stream_start(relay, s, serve_main) < 0) {
            log_warn("relay connection refused", "client", addr, "reason", "no thread");
            stream_free(s);
        }
    }
}

static void relay_dispatch(void *state, const struct disp_pollset *ps)
{
    struct disp_relay *relay = state;
    if (!relay)
        return;
    if (!relay->host_id && atr_now_mono_ms() >= relay->announce_retry_ms)
        relay_announce(relay);
    if (disp_pollset_revents(ps, relay->listen_idx))
        relay_accept(relay);
    streams_reap(relay, false);
}

const struct disp_frontend_ops disp_relay_ops = {
    .name = "relay",
    .open = relay_open,
    .prepare = relay_prepare,
    .dispatch = relay_dispatch,
    .close = relay_close,
};
