/*
 * Private to display/: the core every front end plugs into, and the glue
 * that must parse a few bytes before a library takes over (fuzzed in
 * tests/fuzz/display/).
 */
#pragma once

#include "db-ticket.h" /* also in db.h; named so this compiles on its own */
#include "disp.h"
#include "hv.h"

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct disp_core;
struct disp_frontend;

/* ------------------------------------------------------------------------ */
/* Poll set shared by all front ends for one loop iteration                 */
/* ------------------------------------------------------------------------ */

struct disp_pollset {
    struct pollfd *fds;
    size_t n, cap;
    int timeout_ms; /* -1: none yet */
};

/* Append @fd; returns its index or -ENOMEM. */
int disp_pollset_add(struct disp_pollset *ps, int fd, short events);
/* Lower the timeout to @ms if it is nearer (ms >= 0). */
void disp_pollset_timeout(struct disp_pollset *ps, int ms);
/* revents of the entry at @idx, 0 when @idx < 0. */
short disp_pollset_revents(const struct disp_pollset *ps, int idx);

/* ------------------------------------------------------------------------ */
/* Front ends                                                               */
/* ------------------------------------------------------------------------ */

/*
 * One protocol.  The core calls, in every loop iteration, prepare() of each
 * front end (add descriptors and deadlines), poll(), then dispatch() of
 * each.  The core never knows which protocol it serves.
 */
struct disp_frontend_ops {
    const char *name; /* "vnc", "spice", ... for logs */
    /* Bind listeners; fill *ret_state.  -errno with a sentence in @err. */
    int (*open)(struct disp_core *core, const struct atr_config *cfg, void **ret_state,
                struct atr_error *err);
    int (*prepare)(void *state, struct disp_pollset *ps);
    void (*dispatch)(void *state, const struct disp_pollset *ps);
    /* Close everything; accepts NULL. */
    void (*close)(void *state);
    /* Optional: VM @vm_id's row now names host @host_id (NOTIFY atrium_vm,
     * heard only while the relay is on); a console upstream on another host
     * follows it (a live migration). */
    void (*vm_moved)(void *state, int64_t vm_id, int64_t host_id);
};

extern const struct disp_frontend_ops disp_vnc_ops;
extern const struct disp_frontend_ops disp_spice_ops;
extern const struct disp_frontend_ops disp_rdp_ops;
extern const struct disp_frontend_ops disp_relay_ops;

/* ------------------------------------------------------------------------ */
/* Core services for front ends                                             */
/* ------------------------------------------------------------------------ */

struct db *disp_core_db(struct disp_core *core);

/* The VM's runtime paths (vnc.sock, spice.sock, qmp-display.sock).  Reads only
 * immutable state: safe from any thread. */
int disp_core_vm_paths(struct disp_core *core, int64_t vm_id, struct hv_vm_paths *ret_paths);

/*
 * Redeem @ticket for @protocol from @client_addr: throttle, consume, audit
 * (db_ticket_redeem) and log one line either way.  0 and *ret_grant, or
 * -EACCES (refused) / -errno.
 */
int disp_core_redeem(struct disp_core *core, const char *ticket, unsigned protocol,
                     const char *client_addr, struct db_ticket_grant *ret_grant);

/* Backoff applied to failed console attempts per client address. */
const struct db_backoff *disp_core_backoff(struct disp_core *core);

/* How the core reaches one front end's viewer. */
struct disp_viewer_ops {
    /*
     * Another connection of the same person took the session over: tell the
     * viewer why where the protocol can, and close it soon (its front end
     * still calls disp_core_viewer_left when it is gone, but never from
     * inside kick).  Called from the gateway thread, outside the viewer's
     * own library calls.
     */
    void (*kick)(void *viewer, const char *why);
};

struct disp_viewer;

/*
 * A viewer of @session_id (0: none) attached.  Any other viewer of the same
 * session is kicked: the newest connection takes over.  The first viewer
 * makes the session `connected` (through pool.h).  Returns the handle to
 * pass to disp_core_viewer_left, or NULL (out of memory: the viewer works
 * but is neither reported nor kickable).
 */
struct disp_viewer *disp_core_viewer_joined(struct disp_core *core, int64_t session_id,
                                            unsigned protocol, const char *client_addr,
                                            const struct disp_viewer_ops *ops, void *viewer);
/*
 * An admin's view-only viewer (a ticket with view_only) of @session_id
 * attached: it takes nothing over and is never taken over, does not count
 * for connected/disconnected, and the session shows as shadowed by
 * @user_id while any shadow watches.  Its front end must drop all its
 * input.  Returns the handle for disp_core_viewer_left, or NULL.
 */
struct disp_viewer *disp_core_shadow_joined(struct disp_core *core, int64_t session_id,
                                            int64_t user_id, unsigned protocol,
                                            const char *client_addr,
                                            const struct disp_viewer_ops *ops, void *viewer);
/* The viewer left; the last one of a session makes it `disconnected` (a
 * disconnect never ends the desktop session).  Accepts NULL.  Viewers are
 * also kicked when their session is disconnected or logged off
 * (DB_CHANNEL_SESSION). */
void disp_core_viewer_left(struct disp_core *core, struct disp_viewer *v);

/* ------------------------------------------------------------------------ */
/* Consoles on any host (relay.c)                                           */
/* ------------------------------------------------------------------------ */

enum disp_console { DISP_CONSOLE_VNC, DISP_CONSOLE_SPICE };

/*
 * A byte stream to console @kind of VM @vm_id wherever it runs: its unix
 * socket when the VM is on this host (or the relay is off), else a stream
 * through the relay of the VM's host (TLS, one-time internal ticket; see
 * docs/ARCHITECTURE.md "Consoles across hosts").  *ret_fd is blocking and
 * owned by the caller; *ret_host_id (may be NULL) is the host serving it (0
 * when the relay is off).  Gateway thread only (it uses the core's database).
 * -EHOSTUNREACH when the VM's host has no relay, -errno otherwise.
 */
int disp_console_open(struct disp_core *core, int64_t vm_id, enum disp_console kind, int *ret_fd,
                      int64_t *ret_host_id);

/*
 * The same for the VM's console on host @host_id (0: where the VM's row says
 * it is): a SPICE client's channels for the destination of a live migration
 * reach the VM's new QEMU before its row names that host.
 */
int disp_console_open_at(struct disp_core *core, int64_t vm_id, enum disp_console kind,
                         int64_t host_id, int *ret_fd, int64_t *ret_host_id);

/*
 * A new SPICE connection to the QEMU whose display QMP socket is @qmp_path:
 * one end of a socketpair handed over with getfd + add_client skipauth
 * (spice-up.c).  *ret_fd is blocking and owned by the caller.  Thread-safe.
 */
int disp_spice_handover(const char *qmp_path, int *ret_fd);

/* The host VM @vm_id is on now (0: relay off, or on no host). */
int disp_console_host(struct disp_core *core, int64_t vm_id, int64_t *ret_host_id);

/* The relay front end registers itself with the core (NULL when it closes). */
struct disp_relay;
void disp_core_set_relay(struct disp_core *core, struct disp_relay *relay);
struct disp_relay *disp_core_relay(struct disp_core *core);

/* ------------------------------------------------------------------------ */
/* Sockets                                                                  */
/* ------------------------------------------------------------------------ */

/* Listen on TCP @addr:@port (non-blocking, SO_REUSEADDR, CLOEXEC). Sets *ret_fd. */
int disp_net_listen(const char *addr, int port, int *ret_fd);
/* accept4 non-blocking; sets *ret_fd and the peer's textual address in @ret_addr. */
int disp_net_accept(int listen_fd, int *ret_fd, char ret_addr[static 64]);
/* Connect to unix socket @path (blocking connect, then non-blocking). */
int disp_net_connect_unix(const char *path, int *ret_fd);

/* ------------------------------------------------------------------------ */
/* Upstream: libvncclient on a VM's VNC socket (rfb-up.c)                   */
/* ------------------------------------------------------------------------ */

struct _rfbClient; /* libvncclient's rfbClient */
/* Replace libvncclient's encoding list with the ones QEMU's mode changes
 * survive (see rfb-up.c); false when the connection is gone. */
bool disp_rfb_set_encodings(struct _rfbClient *up);

/* ------------------------------------------------------------------------ */
/* Bytes before a library takes over (fuzzed)                               */
/* ------------------------------------------------------------------------ */

#define DISP_HTTP_HEAD_MAX 4096

/*
 * Where the HTTP request head in @buf (@len bytes, not NUL-terminated) ends:
 * returns the length including the blank line, 0 when incomplete, -EMSGSIZE
 * when no end is found within DISP_HTTP_HEAD_MAX bytes.
 */
int disp_http_head_len(const char *buf, size_t len);

/*
 * The ticket of an HTTP CONNECT request head (@len bytes): the ticket is the
 * host of "CONNECT <ticket>:<port> HTTP/1.x".  Copies it (NUL-terminated)
 * into @ret_ticket (size @size).  -EBADMSG for anything else, -ENAMETOOLONG
 * when it does not fit.
 */
int disp_http_connect_ticket(const char *head, size_t len, char *ret_ticket, size_t size);

/*
 * The ticket of a WebSocket upgrade request head: "GET <path>?...ticket=<t>..."
 * (noVNC's "path" setting).  Same returns as disp_http_connect_ticket.
 */
int disp_http_ws_ticket(const char *head, size_t len, char *ret_ticket, size_t size);

/*
 * The ticket in an RDP client's first bytes: a TPKT-framed X.224 Connection
 * Request whose routing token is "Cookie: msts=<ticket>\r\n" (the broker's
 * .rdp file sets it as loadbalanceinfo).  Returns 0 and the ticket, -EAGAIN
 * while the TPKT is incomplete in @buf (@len bytes), -ENOENT for a
 * well-formed Connection Request without a ticket (a client that will log in
 * with a password), -EBADMSG for anything else (not a Connection Request, a
 * malformed ticket), -ENAMETOOLONG when it does not fit @size.
 */
#define DISP_RELAY_TICKET_LEN 32
/*
 * The relay request line "ATRIUM-RELAY 1 <32 lower-case hex>\n" in @buf
 * (@len bytes): returns its length and the ticket (NUL-terminated) in
 * @ret_ticket, 0 while @buf is a prefix of such a line, -EBADMSG for
 * anything else, -ENAMETOOLONG when @size is too small.
 */
int disp_relay_request_ticket(const char *buf, size_t len, char *ret_ticket, size_t size);

int disp_x224_ticket(const unsigned char *buf, size_t len, char *ret_ticket, size_t size);
