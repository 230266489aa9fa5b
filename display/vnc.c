/*
 * VNC front end: one TCP port for every VM, native VNC viewers and noVNC
 * (WebSocket) on the same port.
 *
 * Why it is shaped like this.  libvncserver serves one rfbScreen per VM and
 * rfbNewClient() adopts a socket accepted elsewhere, so this file accepts
 * and routes, and libvncserver speaks RFB (and the WebSocket handshake).
 * Routing needs the VM before the client is adopted, and the two kinds of
 * viewer reveal it differently:
 *
 *  - noVNC speaks first: "GET /websockify?ticket=<128-bit ticket>".  The
 *    head is read with MSG_PEEK (libvncserver must still see it), the ticket
 *    is redeemed, and the socket goes straight to the VM's screen, which
 *    asks for no VNC password (the ticket was the credential).
 *  - A native viewer says nothing until the server speaks, and then sends
 *    only a DES answer to a challenge, keyed by an 8-character VNC password
 *    (db_ticket_issue_vnc).  Such a viewer is adopted by a "lobby" screen
 *    whose passwordCheck tries the answer against each live VNC password;
 *    the matching one is redeemed like any ticket, and the client is moved
 *    from the lobby's list to its VM's screen before it sends ClientInit, so
 *    ServerInit already describes the VM's framebuffer.
 *
 * A connection that sends nothing within PEEK_MS is taken as native.
 *
 * Each VM's picture comes from its QEMU VNC unix socket through libvncclient,
 * once per VM however many viewers watch: libvncclient decodes into a buffer
 * that *is* the rfbScreen's framebuffer (no copies), and each rectangle it
 * reports is marked modified, so libvncserver sends every viewer only the
 * changed regions, encoded once per client format.  The upstream is opened
 * with the first viewer and closed with the last.
 *
 * Everything runs in the gateway's single thread; libvncserver is driven
 * with rfbProcessEvents(screen, 0) after the gateway's poll() and never runs
 * its own threads, so the client lists are touched by one thread only.
 */
#include "disp-priv.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <rfb/rfb.h>
#include <rfb/rfbclient.h>
#include <rfb/rfbregion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PEEK_MS 250     /* silence for this long: a native viewer */
#define WS_HEAD_MS 3000 /* a WebSocket request head must be complete by then */
#define MAX_PENDING 256 /* connections not yet routed */
#define MAX_LIVE_PASSWORDS 256
/* libvncserver select()s on its clients: keep descriptors below FD_SETSIZE */
#define MAX_FD (FD_SETSIZE - 16)

struct disp_vnc;

struct vnc_vm {
    struct disp_vnc *vnc;
    int64_t vm_id;
    rfbClient *up;           /* QEMU's VNC, NULL once lost */
    rfbScreenInfoPtr screen; /* what viewers see */
    char *fb;                /* shared by up and screen */
    int up_idx;              /* in this iteration's poll set */
    bool ready;              /* QEMU's picture is current: viewers may see it */
    bool saw_content;        /* an update brought a pixel that is not black */
    int n_updates;           /* complete updates received */
    int64_t first_update_ms; /* when the first one completed */
    int n_viewers;
    int64_t up_host;  /* host whose QEMU `up` talks to (0: relay off) */
    int64_t lost_ms;  /* upstream lost, viewers kept while we look for the VM */
    int64_t retry_ms; /* next attempt to find it */
    struct vnc_vm *next;
};

/* cl->clientData of every client, lobby or VM. */
struct vnc_viewer {
    struct disp_vnc *vnc;
    struct vnc_vm *vm;      /* NULL while in the lobby */
    struct vnc_vm *move_to; /* authenticated in the lobby, to be moved */
    struct disp_viewer *dv; /* the core's handle while attached to a VM */
    int64_t session_id;
    int64_t user_id; /* who the ticket was issued to */
    bool view_only;  /* an admin's shadow: its input never reaches the VM */
    unsigned protocol;
    char addr[64];
};

struct vnc_pending {
    int fd;
    int idx;
    char addr[64];
    int64_t peek_deadline_ms, head_deadline_ms;
    struct vnc_pending *next;
};

struct disp_vnc {
    struct disp_core *core;
    int listen_fd, listen_idx;
    rfbScreenInfoPtr lobby;
    char *lobby_fb;
    struct vnc_pending *pending;
    size_t n_pending;
    struct vnc_vm *vms;
    /* context handed to the VM screen's newClientHook by vnc_adopt() */
    const struct vnc_viewer *incoming;
};

static int up_tag; /* rfbClientGetClientData tag */

/* ------------------------------------------------------------------------ */
/* libvncserver / libvncclient log lines go to our log at debug level       */
/* ------------------------------------------------------------------------ */

static void __attribute__((format(printf, 1, 2))) vnc_lib_log(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    buf[strcspn(buf, "\n")] = '\0';
    log_debug("libvnc", "text", buf);
}

/* ------------------------------------------------------------------------ */
/* Viewers                                                                  */
/* ------------------------------------------------------------------------ */

static void viewer_gone(rfbClientPtr cl)
{
    struct vnc_viewer *v = cl->clientData;
    /* libvncserver 0.9.14 never frees a WebSocket client's context (~45 KB
     * each, found by LeakSanitizer); the client is being freed, so do it */
    free(cl->wsctx);
    cl->wsctx = NULL;
    if (!v)
        return;
    if (v->vm) {
        v->vm->n_viewers--;
        log_info("vnc viewer left", "vm", LOG_INT(v->vm->vm_id), "client", v->addr);
        disp_core_viewer_left(v->vnc->core, v->dv);
    }
    cl->clientData = NULL;
    free(v);
}

/* Taken over by a newer connection: RFB has no way to say why, so it is closed. */
static void viewer_kick(void *viewer, const char *why)
{
    rfbClientPtr cl = viewer;
    struct vnc_viewer *v = cl->clientData;
    log_info("vnc viewer closed", "client", v ? v->addr : "?", "reason", why);
    rfbCloseClient(cl); /* viewer_gone runs in the screen's next rfbProcessEvents */
}

static const struct disp_viewer_ops vnc_viewer_ops = {.kick = viewer_kick};

static void viewer_attach(rfbClientPtr cl, struct vnc_viewer *v, struct vnc_vm *vm)
{
    v->vm = vm;
    vm->n_viewers++;
    log_info("vnc viewer joined", "vm", LOG_INT(vm->vm_id), "client", v->addr, "protocol",
             db_protocol_name(v->protocol), "view_only", v->view_only ? "yes" : "no");
    if (v->view_only) {
        /* libvncserver ignores its input too; vm_kbd/vm_ptr check again */
        cl->viewOnly = TRUE;
        v->dv = disp_core_shadow_joined(v->vnc->core, v->session_id, v->user_id, v->protocol,
                                        v->addr, &vnc_viewer_ops, cl);
    } else {
        v->dv = disp_core_viewer_joined(v->vnc->core, v->session_id, v->protocol, v->addr,
                                        &vnc_viewer_ops, cl);
    }
}

/* Input goes to the VM only from the session's own viewers, never a shadow's. */
static void vm_kbd(rfbBool down, rfbKeySym key, rfbClientPtr cl)
{
    struct vnc_viewer *v = cl->clientData;
    if (v && v->vm && v->vm->up && !v->view_only && !cl->viewOnly)
        SendKeyEvent(v->vm->up, key, down);
}

static void vm_ptr(int mask, int x, int y, rfbClientPtr cl)
{
    struct vnc_viewer *v = cl->clientData;
    if (v && v->vm && v->vm->up && !v->view_only && !cl->viewOnly)
        SendPointerEvent(v->vm->up, x, y, mask);
}

/* A client adopted by a VM's screen directly (WebSocket, already admitted). */
static enum rfbNewClientAction vm_new_client(rfbClientPtr cl)
{
    struct vnc_vm *vm = cl->screen->screenData;
    const struct vnc_viewer *in = vm->vnc->incoming;
    struct vnc_viewer *v = in ? malloc(sizeof(*v)) : NULL;
    if (!v)
        return RFB_CLIENT_REFUSE;
    *v = *in;
    cl->clientData = v;
    cl->clientGoneHook = viewer_gone;
    cl->onHold = !vm->ready;
    viewer_attach(cl, v, vm);
    return RFB_CLIENT_ACCEPT;
}

/* ------------------------------------------------------------------------ */
/* One VM: upstream (libvncclient) and screen (libvncserver)                */
/* ------------------------------------------------------------------------ */

static void screen_set_format(rfbScreenInfoPtr s, const rfbClient *up)
{
    /* the screen describes the very bytes libvncclient writes */
    s->serverFormat.redShift = up->format.redShift;
    s->serverFormat.greenShift = up->format.greenShift;
    s->serverFormat.blueShift = up->format.blueShift;
    s->serverFormat.redMax = up->format.redMax;
    s->serverFormat.greenMax = up->format.greenMax;
    s->serverFormat.blueMax = up->format.blueMax;
    s->serverFormat.bigEndian = up->format.bigEndian;
}

static rfbScreenInfoPtr screen_new(int w, int h, char *fb, void *data)
{
    int argc = 0;
    rfbScreenInfoPtr s = rfbGetScreen(&argc, NULL, w, h, 8, 3, 4);
    if (!s)
        return NULL;
    s->frameBuffer = fb;
    s->screenData = data;
    /* sockets are accepted by displayd: never listen */
    s->autoPort = FALSE;
    s->port = 0;
    s->ipv6port = 0;
    s->httpPort = 0;
    s->httpDir = NULL;
    s->deferUpdateTime = 0; /* send as soon as the upstream update is complete */
    s->alwaysShared = TRUE;
    s->desktopName = "Atrium";
    rfbInitServer(s);
    return s;
}

/* libvncclient asks for a framebuffer (connect, or the guest changed mode). */
static rfbBool up_malloc_fb(rfbClient *up)
{
    struct vnc_vm *vm = rfbClientGetClientData(up, &up_tag);
    size_t w = (size_t)up->width, h = (size_t)up->height;
    if (w == 0 || h == 0 || w > 16384 || h > 16384)
        return FALSE;
    if (vm->screen && vm->fb && (int)w == vm->screen->width && (int)h == vm->screen->height) {
        /* a new upstream of the same size (the VM moved): viewers keep the
         * picture they have until the new one is current */
        screen_set_format(vm->screen, up);
        up->frameBuffer = (uint8_t *)vm->fb;
        return TRUE;
    }
    char *fb = calloc(w * h, 4);
    if (!fb)
        return FALSE;
    if (!vm->screen) {
        vm->screen = screen_new((int)w, (int)h, fb, vm);
        if (!vm->screen) {
            free(fb);
            return FALSE;
        }
        vm->screen->newClientHook = vm_new_client;
        vm->screen->kbdAddEvent = vm_kbd;
        vm->screen->ptrAddEvent = vm_ptr;
    } else {
        /* viewers that support it get a NewFBSize; the old buffer goes after */
        rfbNewFramebuffer(vm->screen, fb, (int)w, (int)h, 8, 3, 4);
    }
    screen_set_format(vm->screen, up);
    free(vm->fb);
    vm->fb = fb;
    up->frameBuffer = (uint8_t *)fb;
    log_info("vnc console size", "vm", LOG_INT(vm->vm_id), "width", LOG_INT(w), "height",
             LOG_INT(h));
    return TRUE;
}

static void up_update(rfbClient *up, int x, int y, int w, int h)
{
    struct vnc_vm *vm = rfbClientGetClientData(up, &up_tag);
    if (!vm->screen)
        return;
    rfbMarkRectAsModified(vm->screen, x, y, x + w, y + h);
    /* until released, look for content (see up_finished); the rectangle is
     * within the framebuffer: libvncclient checks it before decoding */
    for (int row = y; !vm->ready && !vm->saw_content && row < y + h; row++) {
        const uint32_t *px = (const uint32_t *)(vm->fb + ((size_t)row * up->width + x) * 4);
        for (int i = 0; i < w; i++)
            if (px[i] & 0x00ffffffu) {
                vm->saw_content = true;
                break;
            }
    }
}

static void vm_release(struct vnc_vm *vm)
{
    vm->ready = true;
    for (rfbClientPtr cl = vm->screen->clientHead; cl; cl = cl->next)
        cl->onHold = FALSE;
    rfbMarkRectAsModified(vm->screen, 0, 0, vm->screen->width, vm->screen->height);
}

/*
 * Viewers are held (onHold) until QEMU's picture is current.  QEMU renders
 * a text-mode screen only on its display refresh, which runs while a VNC
 * client is connected: the first updates after connecting may still carry
 * the stale, black surface (seen here: two of them, 20 ms apart), and the
 * rendered screen follows.  So the first complete update that brought a
 * non-black pixel releases the viewers, or SETTLE_MS after the first update
 * when the screen really is black.
 */
#define SETTLE_MS 1000
#define FOLLOW_MS 10000      /* a lost upstream is looked for this long (relay on) */
#define FOLLOW_RETRY_MS 250
static void up_finished(rfbClient *up)
{
    struct vnc_vm *vm = rfbClientGetClientData(up, &up_tag);
    if (vm->ready || !vm->screen)
        return;
    if (vm->n_updates++ == 0)
        vm->first_update_ms = atr_now_mono_ms();
    if (vm->saw_content)
        vm_release(vm);
}

static void vm_free(struct vnc_vm *vm)
{
    if (!vm)
        return;
    if (vm->screen)
        rfbScreenCleanup(vm->screen); /* viewers still attached leave (viewer_gone) */
    if (vm->up)
        rfbClientCleanup(vm->up);
    free(vm->fb);
    log_info("vnc console closed", "vm", LOG_INT(vm->vm_id));
    free(vm);
}

/*
 * A libvncclient connection to @vm's QEMU wherever it runs (its socket here,
 * or through the relay of its host).  Blocks for QEMU's handshake: a local
 * socket answers at once, the relay within its setup deadline.
 */
static int up_open(struct vnc_vm *vm, rfbClient **ret_up, int64_t *ret_host)
{
    int fd = -1, r;
    int64_t host = 0;
    r = disp_console_open(vm->vnc->core, vm->vm_id, DISP_CONSOLE_VNC, &fd, &host);
    if (r < 0) {
        log_warn("vnc console unreachable", "vm", LOG_INT(vm->vm_id), "errno", LOG_INT(-r));
        return r;
    }
    rfbClient *up = rfbGetClient(8, 3, 4);
    if (!up) {
        close(fd);
        return -ENOMEM;
    }
    rfbClientSetClientData(up, &up_tag, vm);
    up->MallocFrameBuffer = up_malloc_fb;
    up->GotFrameBufferUpdate = up_update;
    up->FinishedFrameBufferUpdate = up_finished;
    up->canHandleNewFBSize = TRUE;
    /* already connected: libvncclient skips its own connect when it
     * "listened", and speaks RFB on the socket it is given */
    up->listenSpecified = TRUE;
    up->sock = fd;
    up->connectTimeout = 5;
    /* a local socket: raw costs QEMU (often on TCG) the least CPU */
    up->appData.encodingsString = "copyrect raw";
    up->appData.shareDesktop = TRUE;
    if (!rfbInitClient(up, NULL, NULL)) {
        /* rfbInitClient frees the client (and closes the socket) when it fails */
        log_warn("vnc console handshake failed", "vm", LOG_INT(vm->vm_id));
        return -ECONNREFUSED;
    }
    if (!disp_rfb_set_encodings(up)) {
        log_warn("vnc console closed at once", "vm", LOG_INT(vm->vm_id));
        rfbClientCleanup(up);
        return -ECONNREFUSED;
    }
    *ret_up = up;
    *ret_host = host;
    return 0;
}

/* The VM's console, opened on first use. */
static int vm_get(struct disp_vnc *vnc, int64_t vm_id, struct vnc_vm **ret_vm)
{
    struct vnc_vm *vm;
    int r;

    for (vm = vnc->vms; vm; vm = vm->next)
        if (vm->vm_id == vm_id && (vm->up || vm->lost_ms)) {
            *ret_vm = vm;
            return 0;
        }
    if (!(vm = calloc(1, sizeof(*vm))))
        return -ENOMEM;
    vm->vnc = vnc;
    vm->vm_id = vm_id;
    vm->up_idx = -1;
    r = up_open(vm, &vm->up, &vm->up_host);
    if (r < 0) {
        vm_free(vm);
        return r;
    }
    vm->next = vnc->vms;
    vnc->vms = vm;
    log_info("vnc console opened", "vm", LOG_INT(vm_id), "host_id", LOG_INT(vm->up_host));
    *ret_vm = vm;
    return 0;
}

/*
 * Follow the VM to where it runs now (a live migration moved it): a new
 * upstream replaces the old one under the same screen, so viewers stay
 * connected and see at most a pause.  They are held until the new QEMU's
 * picture is current (as on a first connect), then get the whole screen.
 */
static int vm_follow(struct vnc_vm *vm, const char *why)
{
    rfbClient *up = NULL;
    int64_t host = 0, t0 = atr_now_mono_ms();
    int r = up_open(vm, &up, &host);
    if (r < 0)
        return r;
    if (vm->up)
        rfbClientCleanup(vm->up); /* the screen's framebuffer is ours, not freed here */
    vm->up = up;
    log_info("vnc console followed the vm", "vm", LOG_INT(vm->vm_id), "reason", why, "from_host",
             LOG_INT(vm->up_host), "to_host", LOG_INT(host), "ms",
             LOG_INT(atr_now_mono_ms() - t0));
    vm->up_host = host;
    vm->lost_ms = 0;
    vm->ready = false;
    vm->saw_content = false;
    vm->n_updates = 0;
    for (rfbClientPtr cl = vm->screen ? vm->screen->clientHead : NULL; cl; cl = cl->next)
        cl->onHold = TRUE;
    return 0;
}

/* Read everything QEMU sent; false when the console connection is gone. */
static bool vm_pump(struct vnc_vm *vm)
{
    do {
        if (!HandleRFBServerMessage(vm->up))
            return false;
    } while (vm->up->buffered > 0);
    return true;
}

/* ------------------------------------------------------------------------ */
/* Lobby: native viewers authenticate here with a VNC password              */
/* ------------------------------------------------------------------------ */

static enum rfbNewClientAction lobby_new_client(rfbClientPtr cl)
{
    struct disp_vnc *vnc = cl->screen->screenData;
    struct vnc_viewer *v = calloc(1, sizeof(*v));
    if (!v)
        return RFB_CLIENT_REFUSE;
    v->vnc = vnc;
    v->protocol = DB_PROTO_VNC;
    snprintf(v->addr, sizeof(v->addr), "%s", vnc->incoming ? vnc->incoming->addr : "unknown");
    cl->clientData = v;
    cl->clientGoneHook = viewer_gone;
    return RFB_CLIENT_ACCEPT;
}

static rfbBool lobby_password_check(rfbClientPtr cl, const char *response, int len)
{
    struct vnc_viewer *v = cl->clientData;
    struct disp_vnc *vnc = v->vnc;
    struct db *db = disp_core_db(vnc->core);
    char(*live)[DB_TICKET_VNC_LEN + 1] = NULL;
    size_t n = 0, match = SIZE_MAX;
    struct db_ticket_grant g;
    struct vnc_vm *vm;
    rfbBool ok = FALSE;
    int r;

    if (len != CHALLENGESIZE || db_ensure(db) < 0)
        goto out;
    r = db_ticket_throttled(db, v->addr);
    if (r != 0) {
        if (r > 0)
            (void)db_ticket_fail(db, DB_PROTO_VNC, v->addr, DB_TICKET_THROTTLED,
                                 disp_core_backoff(vnc->core));
        log_warn("console ticket refused", "protocol", "vnc", "client", v->addr, "reason",
                 r > 0 ? "throttled" : "database");
        goto out;
    }
    if (db_ticket_vnc_live(db, MAX_LIVE_PASSWORDS, &live, &n) < 0)
        goto out;
    /* compare every candidate, so timing says nothing about which matched */
    for (size_t i = 0; i < n; i++) {
        unsigned char answer[CHALLENGESIZE];
        memcpy(answer, cl->authChallenge, CHALLENGESIZE);
        rfbEncryptBytes(answer, live[i]);
        if (CRYPTO_memcmp(answer, response, CHALLENGESIZE) == 0)
            match = i;
    }
    if (match == SIZE_MAX) {
        (void)db_ticket_fail(db, DB_PROTO_VNC, v->addr, DB_TICKET_UNKNOWN,
                             disp_core_backoff(vnc->core));
        log_warn("console ticket refused", "protocol", "vnc", "client", v->addr, "reason",
                 "unknown");
        goto out;
    }
    if (disp_core_redeem(vnc->core, live[match], DB_PROTO_VNC, v->addr, &g) < 0)
        goto out;
    r = vm_get(vnc, g.vm_id, &vm);
    if (r < 0) {
        log_error("vnc console unavailable", "vm", LOG_INT(g.vm_id), "errno", LOG_INT(-r));
        goto out;
    }
    v->move_to = vm;
    v->session_id = g.session_id;
    v->user_id = g.user_id;
    v->view_only = g.view_only;
    ok = TRUE;
out:
    if (live)
        OPENSSL_cleanse(live, n * sizeof(*live));
    free(live);
    return ok;
}

/*
 * Move an authenticated client from the lobby to its VM's screen.  Done
 * between rfbProcessEvents() calls, never inside one, so no iterator of
 * libvncserver is walking either list.  The client has not sent ClientInit
 * yet (libvncserver handles one message per readable socket), so the VM's
 * screen answers it with the VM's size and format.
 */
static void lobby_move(struct disp_vnc *vnc, rfbClientPtr cl, struct vnc_vm *vm)
{
    rfbScreenInfoPtr from = vnc->lobby, to = vm->screen;
    if (cl->prev)
        cl->prev->next = cl->next;
    else
        from->clientHead = cl->next;
    if (cl->next)
        cl->next->prev = cl->prev;
    FD_CLR(cl->sock, &from->allFds);

    cl->prev = NULL;
    cl->next = to->clientHead;
    if (to->clientHead)
        to->clientHead->prev = cl;
    to->clientHead = cl;
    FD_SET(cl->sock, &to->allFds);
    if (cl->sock > to->maxFd)
        to->maxFd = cl->sock;

    cl->screen = to;
    cl->scaledScreen = to;
    cl->format = to->serverFormat;
    sraRgnDestroy(cl->modifiedRegion);
    cl->modifiedRegion = sraRgnCreateRect(0, 0, to->width, to->height);
}

static void lobby_apply_moves(struct disp_vnc *vnc)
{
    rfbClientPtr cl = vnc->lobby->clientHead;
    while (cl) {
        rfbClientPtr next = cl->next;
        struct vnc_viewer *v = cl->clientData;
        if (v && v->move_to && cl->sock >= 0) {
            struct vnc_vm *vm = v->move_to;
            v->move_to = NULL;
            lobby_move(vnc, cl, vm);
            cl->onHold = !vm->ready;
            viewer_attach(cl, v, vm);
        }
        cl = next;
    }
}

/* ------------------------------------------------------------------------ */
/* Accept and route                                                         */
/* ------------------------------------------------------------------------ */

static void pending_close(struct vnc_pending *p)
{
    close(p->fd);
    free(p);
}

/* Hand @fd to @screen (lobby or VM); libvncserver owns it from here. */
static void vnc_adopt(struct disp_vnc *vnc, rfbScreenInfoPtr screen, int fd,
                      const struct vnc_viewer *ctx)
{
    /* libvncserver's handshake code expects a blocking socket */
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    vnc->incoming = ctx;
    if (!rfbNewClient(screen, fd))
        log_info("vnc handshake failed", "client", ctx->addr);
    vnc->incoming = NULL;
}

static void route_websocket(struct disp_vnc *vnc, struct vnc_pending *p, const char *head,
                            size_t len)
{
    static const char forbidden[] = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
                                    "Connection: close\r\n\r\n";
    char ticket[DB_TICKET_LEN + 1];
    struct db_ticket_grant g;
    struct vnc_vm *vm;
    int r = disp_http_ws_ticket(head, len, ticket, sizeof(ticket));
    if (r < 0) {
        (void)db_ticket_fail(disp_core_db(vnc->core), DB_PROTO_BROWSER, p->addr, DB_TICKET_UNKNOWN,
                             disp_core_backoff(vnc->core));
        log_warn("console ticket refused", "protocol", "browser", "client", p->addr, "reason",
                 "no ticket in request");
        goto refuse;
    }
    if (disp_core_redeem(vnc->core, ticket, DB_PROTO_BROWSER, p->addr, &g) < 0)
        goto refuse;
    r = vm_get(vnc, g.vm_id, &vm);
    if (r < 0) {
        log_error("vnc console unavailable", "vm", LOG_INT(g.vm_id), "errno", LOG_INT(-r));
        goto refuse;
    }
    struct vnc_viewer ctx = {.vnc = vnc,
                             .session_id = g.session_id,
                             .user_id = g.user_id,
                             .view_only = g.view_only,
                             .protocol = DB_PROTO_BROWSER};
    snprintf(ctx.addr, sizeof(ctx.addr), "%s", p->addr);
    vnc_adopt(vnc, vm->screen, p->fd, &ctx);
    free(p);
    return;
refuse:
    (void)!write(p->fd, forbidden, sizeof(forbidden) - 1);
    pending_close(p);
}

/* Decide what @p is.  Returns true when it was consumed (routed or closed). */
static bool pending_step(struct disp_vnc *vnc, struct vnc_pending *p, int64_t now)
{
    char head[DISP_HTTP_HEAD_MAX];
    ssize_t n = recv(p->fd, head, sizeof(head), MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        pending_close(p);
        return true;
    }
    if (n < 0) {
        if (now < p->peek_deadline_ms)
            return false;
        /* silent: a native viewer waiting for the server to speak */
        struct vnc_viewer ctx = {.vnc = vnc, .protocol = DB_PROTO_VNC};
        snprintf(ctx.addr, sizeof(ctx.addr), "%s", p->addr);
        vnc_adopt(vnc, vnc->lobby, p->fd, &ctx);
        free(p);
        return true;
    }
    size_t len = (size_t)n;
    if (len < 4 ? memcmp(head, "GET ", len) != 0 : memcmp(head, "GET ", 4) != 0) {
        log_info("vnc connection refused", "client", p->addr, "reason", "unexpected bytes");
        pending_close(p);
        return true;
    }
    int hl = disp_http_head_len(head, len);
    if (hl > 0) {
        route_websocket(vnc, p, head, (size_t)hl);
        return true;
    }
    if (hl < 0 || now >= p->head_deadline_ms) {
        log_info("vnc connection refused", "client", p->addr, "reason", "bad request head");
        pending_close(p);
        return true;
    }
    return false;
}

static void vnc_accept(struct disp_vnc *vnc)
{
    for (;;) {
        char addr[64];
        int fd;
        int r = disp_net_accept(vnc->listen_fd, &fd, addr);
        if (r < 0) {
            if (r != -EAGAIN && r != -EWOULDBLOCK && r != -ECONNABORTED)
                log_warn("vnc accept failed", "errno", LOG_INT(-r));
            return;
        }
        if (vnc->n_pending >= MAX_PENDING || fd >= MAX_FD) {
            log_warn("vnc connection refused", "client", addr, "reason", "too many connections");
            close(fd);
            continue;
        }
        struct vnc_pending *p = calloc(1, sizeof(*p));
        if (!p) {
            close(fd);
            continue;
        }
        int64_t now = atr_now_mono_ms();
        p->fd = fd;
        p->idx = -1;
        snprintf(p->addr, sizeof(p->addr), "%s", addr);
        p->peek_deadline_ms = now + PEEK_MS;
        p->head_deadline_ms = now + WS_HEAD_MS;
        p->next = vnc->pending;
        vnc->pending = p;
        vnc->n_pending++;
    }
}

/* ------------------------------------------------------------------------ */
/* Front end                                                                */
/* ------------------------------------------------------------------------ */

static void vnc_close(void *state)
{
    struct disp_vnc *vnc = state;
    if (!vnc)
        return;
    while (vnc->vms) {
        struct vnc_vm *vm = vnc->vms;
        vnc->vms = vm->next;
        vm_free(vm);
    }
    while (vnc->pending) {
        struct vnc_pending *p = vnc->pending;
        vnc->pending = p->next;
        pending_close(p);
    }
    if (vnc->lobby)
        rfbScreenCleanup(vnc->lobby);
    free(vnc->lobby_fb);
    if (vnc->listen_fd >= 0)
        close(vnc->listen_fd);
    free(vnc);
}

static int vnc_open(struct disp_core *core, const struct atr_config *cfg, void **ret_state,
                    struct atr_error *err)
{
    struct disp_vnc *vnc = calloc(1, sizeof(*vnc));
    int r = -ENOMEM;
    if (!vnc)
        return atr_error_set(err, -ENOMEM, "out of memory");
    vnc->core = core;
    vnc->listen_fd = -1;
    rfbLog = vnc_lib_log;
    rfbErr = vnc_lib_log;
    rfbClientLog = vnc_lib_log;
    rfbClientErr = vnc_lib_log;

    r = disp_net_listen(cfg->display.listen, cfg->display.vnc_port, &vnc->listen_fd);
    if (r < 0) {
        atr_error_set(err, r, "cannot listen for VNC on %s port %d: %s", cfg->display.listen,
                      cfg->display.vnc_port, strerror(-r));
        goto out;
    }
    r = -ENOMEM;
    if (!(vnc->lobby_fb = calloc(64 * 64, 4)) ||
        !(vnc->lobby = screen_new(64, 64, vnc->lobby_fb, vnc))) {
        atr_error_set(err, r, "cannot set up the VNC lobby");
        goto out;
    }
    vnc->lobby->newClientHook = lobby_new_client;
    vnc->lobby->passwordCheck = lobby_password_check;
    vnc->lobby->authPasswdData = vnc; /* non-NULL: offer VNC authentication */
    *ret_state = vnc;
    vnc = NULL;
    r = 0;
out:
    vnc_close(vnc);
    return r;
}

static int add_clients(struct disp_pollset *ps, rfbScreenInfoPtr s)
{
    for (rfbClientPtr cl = s->clientHead; cl; cl = cl->next) {
        if (cl->sock < 0)
            disp_pollset_timeout(ps, 0); /* closed (kicked): reap it at once */
        else if (disp_pollset_add(ps, cl->sock, POLLIN) < 0)
            return -ENOMEM;
    }
    return 0;
}

static int vnc_prepare(void *state, struct disp_pollset *ps)
{
    struct disp_vnc *vnc = state;
    int64_t now = atr_now_mono_ms();
    if ((vnc->listen_idx = disp_pollset_add(ps, vnc->listen_fd, POLLIN)) < 0)
        return -ENOMEM;
    for (struct vnc_pending *p = vnc->pending; p; p = p->next) {
        if ((p->idx = disp_pollset_add(ps, p->fd, POLLIN)) < 0)
            return -ENOMEM;
        int64_t d = now < p->peek_deadline_ms ? p->peek_deadline_ms : p->head_deadline_ms;
        disp_pollset_timeout(ps, d > now ? (int)(d - now) : 0);
    }
    if (add_clients(ps, vnc->lobby) < 0)
        return -ENOMEM;
    for (struct vnc_vm *vm = vnc->vms; vm; vm = vm->next) {
        vm->up_idx = -1;
        if (!vm->up && vm->lost_ms)
            disp_pollset_timeout(ps, vm->retry_ms > now ? (int)(vm->retry_ms - now) : 0);
        if (vm->up) {
            if ((vm->up_idx = disp_pollset_add(ps, vm->up->sock, POLLIN)) < 0)
                return -ENOMEM;
            if (vm->up->buffered > 0)
                disp_pollset_timeout(ps, 0);
            if (!vm->ready && vm->n_updates > 0) {
                int64_t left = vm->first_update_ms + SETTLE_MS - now;
                disp_pollset_timeout(ps, left > 0 ? (int)left : 0);
            }
        }
        if (vm->screen && add_clients(ps, vm->screen) < 0)
            return -ENOMEM;
    }
    return 0;
}

static void vnc_dispatch(void *state, const struct disp_pollset *ps)
{
    struct disp_vnc *vnc = state;
    int64_t now = atr_now_mono_ms();

    if (disp_pollset_revents(ps, vnc->listen_idx))
        vnc_accept(vnc);

    for (struct vnc_pending **pp = &vnc->pending; *pp;) {
        struct vnc_pending *p = *pp;
        bool due = p->idx >= 0 && (disp_pollset_revents(ps, p->idx) || now >= p->peek_deadline_ms);
        struct vnc_pending *next = p->next;
        if (due && pending_step(vnc, p, now)) {
            *pp = next;
            vnc->n_pending--;
        } else {
            pp = &p->next;
        }
    }

    /* upstream first, so this iteration's viewers get what QEMU just sent */
    for (struct vnc_vm *vm = vnc->vms; vm; vm = vm->next) {
        if (!vm->up || !(disp_pollset_revents(ps, vm->up_idx) || vm->up->buffered > 0))
            continue;
        if (!vm_pump(vm)) {
            log_warn("vnc console lost", "vm", LOG_INT(vm->vm_id));
            rfbClientCleanup(vm->up);
            vm->up = NULL;
            /* with the relay on, the VM may have moved (its source QEMU ends
             * right after the row names the new host): look for it a while */
            if (vm->up_host && vm->screen) {
                vm->lost_ms = vm->retry_ms = now;
            } else if (vm_follow(vm, "console lost") < 0) {
                for (rfbClientPtr cl = vm->screen ? vm->screen->clientHead : NULL; cl;
                     cl = cl->next)
                    rfbCloseClient(cl);
            }
        }
    }
    for (struct vnc_vm *vm = vnc->vms; vm; vm = vm->next) {
        if (vm->up || !vm->lost_ms || now < vm->retry_ms)
            continue;
        if (vm_follow(vm, "console lost") == 0)
            continue;
        if (now - vm->lost_ms < FOLLOW_MS) {
            vm->retry_ms = now + FOLLOW_RETRY_MS;
            continue;
        }
        log_warn("vnc console gone", "vm", LOG_INT(vm->vm_id));
        vm->lost_ms = 0;
        for (rfbClientPtr cl = vm->screen ? vm->screen->clientHead : NULL; cl; cl = cl->next)
            rfbCloseClient(cl);
    }

    for (struct vnc_vm *vm = vnc->vms; vm; vm = vm->next)
        if (!vm->ready && vm->screen && vm->n_updates > 0 && now >= vm->first_update_ms + SETTLE_MS)
            vm_release(vm);

    rfbProcessEvents(vnc->lobby, 0);
    lobby_apply_moves(vnc);
    for (struct vnc_vm *vm = vnc->vms; vm; vm = vm->next)
        if (vm->screen)
            rfbProcessEvents(vm->screen, 0);

    /* the last viewer gone (or the console lost): close the VM's console */
    for (struct vnc_vm **pv = &vnc->vms; *pv;) {
        struct vnc_vm *vm = *pv;
        bool moving = false;
        for (rfbClientPtr cl = vnc->lobby->clientHead; cl; cl = cl->next) {
            struct vnc_viewer *v = cl->clientData;
            moving |= v && v->move_to == vm;
        }
        if (!moving && (!vm->screen || !vm->screen->clientHead) && !vm->lost_ms) {
            *pv = vm->next;
            vm_free(vm);
        } else {
            pv = &vm->next;
        }
    }
}

/* The row of a VM we show names another host: follow it now, before its
 * old QEMU (paused by the migration, killed right after) is gone. */
static void vnc_vm_moved(void *state, int64_t vm_id, int64_t host_id)
{
    struct disp_vnc *vnc = state;
    for (struct vnc_vm *vm = vnc->vms; vm; vm = vm->next) {
        if (vm->vm_id != vm_id || !vm->up || !vm->up_host || vm->up_host == host_id)
            continue;
        /* a move sends two notes, the new host's and the old one's: only
         * the row says where the VM is now */
        if (disp_console_host(vnc->core, vm_id, &host_id) < 0 || !host_id ||
            host_id == vm->up_host)
            continue;
        if (vm_follow(vm, "vm moved") < 0) /* the loss of the old one retries */
            log_warn("vnc console not followed yet", "vm", LOG_INT(vm_id), "host_id",
                     LOG_INT(host_id));
    }
}

const struct disp_frontend_ops disp_vnc_ops = {
    .name = "vnc",
    .open = vnc_open,
    .prepare = vnc_prepare,
    .dispatch = vnc_dispatch,
    .close = vnc_close,
    .vm_moved = vnc_vm_moved,
};
