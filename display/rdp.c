/*
 * RDP front end: FreeRDP 2's freerdp_peer API, one context (and thread) per
 * viewer, TLS always.  See docs/ARCHITECTURE.md for why not one shadow
 * server per VM.
 *
 * The gateway thread accepts, peeks at the X.224 Connection Request for the
 * ticket (routing token "Cookie: msts=<ticket>", the .rdp file's
 * loadbalanceinfo) and redeems it; only then does a peer thread adopt the
 * socket with freerdp_peer_new(), so FreeRDP reads the same request itself.
 * Each peer thread has its own libvncclient connection to the VM's QEMU VNC
 * console (its unix socket on this host, or a relayed stream from the VM's
 * host: see "Consoles" below): QEMU keeps the picture, tracks damage per
 * client and encodes nothing towards us (raw), and the thread turns each damaged
 * rectangle into 64x64 planar tiles: as classic bitmap updates, which every
 * RDP 6+ client decodes, or, with [display] rdp_gfx and a client that
 * offers it, over the Graphics Pipeline (RDPGFX surface commands, one frame
 * per update, paced by the client's frame acknowledgements).  No H.264
 * (AVC) either way.  rdp_gfx is off by default: FreeRDP 2's server sends
 * GFX data without bulk compression, while bitmap updates get MPPC/NCRUSH,
 * so the same tiles cost about 20 times the bytes over GFX (bench.display,
 * docs/PERFORMANCE.md).
 * Keys travel as scancodes (QEMU's extended key event), so the guest sees
 * the client's keyboard layout-independent keys.
 *
 * Resize, both ways.  The guest changing its mode reaches us as a new
 * framebuffer size from QEMU (ExtendedDesktopSize/NewFBSize): the peer sends
 * the client a Desktop Resize (a deactivation-reactivation) and then the
 * whole new picture.  A client that resizes its window (Display Control
 * dynamic channel, xfreerdp /dynamic-resolution, mstsc's resizable window)
 * asks for a size: the peer forwards it to QEMU as SetDesktopSize, which
 * hands it to the guest's display device; whether the guest takes it is
 * the guest's matter (a driver that follows the host's preferred mode does,
 * a text console does not), and only a size QEMU then reports is shown.
 *
 * A client without a ticket (the thin-client case: the device knows only
 * the gateway's address) logs in with username and password, which arrive
 * after TLS in the Client Info PDU.  Its peer thread then opens its own
 * database connection, checks them with auth_login() (throttles, lockout,
 * audit are auth/'s), takes the first pool the person is entitled to and
 * gets the desktop through pool_assign() — the broker's assignment, so a
 * person with a live session gets the same VM back — and only then connects
 * to that VM's console.
 *
 * Peer threads never touch the gateway's database handle or its state: they
 * report joined/left over a pipe the gateway thread reads.
 *
 * Consoles.  disp_console_open() (relay.c) gives a socket to the VM's VNC
 * console wherever the VM runs, but it uses the core's database handle and
 * the relay's list of streams, both the gateway thread's alone.  So peer
 * threads never open a console themselves: the gateway thread opens it and
 * hands the descriptor over.  A ticket's peer gets its first console at
 * start (start_peer); a peer that needs one later (a password log-in found
 * its VM, or its console ended) asks with RDP_MSG_CONSOLE on the pipe above,
 * and the answer -- an error, or a connected descriptor and the host that
 * serves it -- comes back on the peer's own console pipe.  Opening is quick
 * on the gateway thread (a local connect, or a relay ticket and a stream
 * thread: TLS and the other host are the relay's), and the peer does the
 * RFB handshake itself.  One thread owns each resource, no lock is needed,
 * and relay.c stays as it is.
 *
 * Following the VM (a live migration).  With the relay on, the core hears
 * when a VM's row names another host (vm_moved): the gateway thread opens a
 * console on the new host for every peer showing that VM and pushes it down
 * the same console pipe, before the old QEMU (paused at the migration's end,
 * killed soon after) is gone.  When a peer's console ends first, the peer
 * asks for a new one every FOLLOW_RETRY_MS for up to FOLLOW_MS.  Either way
 * the peer swaps its libvncclient connection under the same RDP session:
 * the client stays connected and keeps the last picture (keys typed while
 * there is no console are kept for the new one, see key_send), the new
 * QEMU sends its whole screen (the first update request is a full one) and
 * the peer sends it once it is current (held as the VNC front end holds its
 * viewers, see up_finished), so the viewer sees a pause, never a black
 * screen or a reconnect.
 */
#include "auth.h"
#include "disp-priv.h"
#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <freerdp/channels/channels.h>
#include <freerdp/channels/wtsvc.h>
#include <freerdp/codec/color.h>
#include <freerdp/codec/planar.h>
#include <freerdp/error.h>
#include <freerdp/freerdp.h>
#include <freerdp/input.h>
#include <freerdp/peer.h>
#include <freerdp/server/disp.h>
#include <freerdp/server/rdpgfx.h>
#include <freerdp/settings.h>
#include <freerdp/update.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <rfb/rfbclient.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <winpr/synch.h>
#include <winpr/wtsapi.h>

#define HEAD_MS 5000 /* the Connection Request must arrive by then */
#define MAX_PENDING 256
#define MAX_PEERS 256
#define TILE 64
#define GFX_SURFACE 1
#define GFX_FRAMES_AHEAD 3 /* frames sent but not yet acknowledged */
#define FOLLOW_MS 10000    /* a lost console is looked for this long (relay on) */
#define FOLLOW_RETRY_MS 250
#define CONSOLE_WAIT_MS 15000 /* the gateway's answer to a console request */
#define SETTLE_MS 1000        /* see up_finished */
#define KEYS_KEPT 128         /* keys typed while following, sent to the new console */
#define KEY_PACE_MS 10        /* between kept keys: QEMU's PS/2 queue holds 16 bytes */
#define UP_READ_S 10          /* libvncclient: a console silent this long mid-message is lost */

struct disp_rdp;

/* One viewer, owned by its thread until it reports RDP_MSG_DONE. */
struct rdp_peer {
    struct disp_rdp *rdp;
    int fd;
    char addr[64];
    int64_t vm_id, session_id; /* vm_id 0: not known until the password log-in */
    int up_fd;                 /* the first console (ticket), taken over by the thread */
    int64_t up_host;           /* its host (0: relay off) */
    int console_pipe[2];       /* gateway -> thread: struct rdp_console */
    int kick_fd;               /* eventfd: the gateway asks the thread to end */
    struct disp_viewer *dv;    /* gateway thread only */
    bool joined;               /* gateway thread only: RDP_MSG_JOINED seen */
    int64_t console_vm;        /* gateway thread only: VM of the last console handed over */
    int64_t console_host;      /* gateway thread only: its host */
    pthread_t thread;
    struct rdp_peer *next;
};

enum rdp_msg_kind { RDP_MSG_JOINED, RDP_MSG_CONSOLE, RDP_MSG_DONE };

struct rdp_msg {
    enum rdp_msg_kind kind;
    struct rdp_peer *peer;
    int64_t vm_id; /* RDP_MSG_CONSOLE: the VM whose console the peer wants */
};

/* A console for a peer (on its console pipe): asked for, or pushed because
 * the VM moved.  The descriptor belongs to whoever reads the message. */
struct rdp_console {
    int r;        /* 0, or -errno (no descriptor) */
    int fd;       /* blocking, connected to the VM's VNC console */
    int64_t host; /* the host serving it (0: relay off) */
    bool moved;   /* pushed: the VM's row names another host */
};

struct rdp_pending {
    int fd, idx;
    char addr[64];
    int64_t deadline_ms;
    struct rdp_pending *next;
};

struct disp_rdp {
    struct disp_core *core;
    int listen_fd, listen_idx;
    int msg_pipe[2], msg_idx; /* peer threads -> gateway thread */
    int stop_fd;              /* eventfd: every peer thread polls it */
    char *cert, *key;
    char *db_url; /* password log-ins: each peer thread connects itself */
    bool gfx;     /* [display] rdp_gfx */
    bool closing; /* rdp_close: no more consoles for peers */
    int db_timeout_s;
    struct rdp_pending *pending;
    size_t n_pending;
    struct rdp_peer *peers; /* threads running */
    size_t n_peers;
};

struct rdp_key {
    uint32_t code; /* QEMU key number, or an X keysym (sym) */
    bool down, sym;
};

/* The peer's FreeRDP context; rdpContext must come first. */
struct rdp_ctx {
    rdpContext base;
    struct rdp_peer *peer;
    rfbClient *up;
    char *fb;
    BITMAP_PLANAR_CONTEXT *planar;
    HANDLE vcm; /* virtual channels: drdynvc, then Display Control */
    DispServerContext *disp;
    int resize_fd; /* eventfd: the Display Control thread asked for a size */
    pthread_mutex_t resize_lock;
    uint32_t want_w, want_h; /* under resize_lock */
    bool disp_failed;
    RdpgfxServerContext *gfx; /* Graphics Pipeline, when the client offers it */
    bool gfx_failed, gfx_surface;
    int gfx_wake_fd;                /* eventfd: caps confirmed or a frame acknowledged */
    atomic_bool gfx_ready;          /* caps confirmed (set in FreeRDP's channel thread) */
    atomic_bool gfx_no_ack;         /* the client suspended acknowledgements */
    atomic_uint gfx_acked;          /* last frame the client acknowledged */
    uint32_t gfx_frame;             /* last frame sent */
    BYTE gfx_tile[TILE * TILE * 4]; /* one tile, rows reversed (see send_gfx) */
    bool activated;
    int64_t up_host;  /* host serving up (0: relay off) */
    int64_t lost_ms;  /* console lost at (monotonic), 0: not following */
    int64_t retry_ms; /* next request while following */
    bool asked;       /* a console request is out */
    bool holding;     /* a new console: wait until its picture is current */
    bool saw_content; /* holding: a non-black pixel arrived */
    int n_updates;    /* holding: complete updates from the new console */
    int64_t first_update_ms;
    int64_t switch_ms;              /* a new console was taken (0: none since the last frame) */
    int64_t last_sent_ms;           /* last frame sent to the client */
    struct rdp_key keys[KEYS_KEPT]; /* typed while following (lost_ms), see key_send */
    int n_keys, keys_sent;
    int64_t keys_due;       /* when the next kept key goes out */
    size_t fb_w, fb_h;      /* size of fb */
    int buttons;            /* VNC button mask */
    int dx1, dy1, dx2, dy2; /* damage bounding box; dx2 == 0: none */
};

static int up_tag;

static bool peer_report(struct rdp_peer *p, enum rdp_msg_kind kind)
{
    struct rdp_msg m = {.kind = kind, .peer = p, .vm_id = p->vm_id};
    /* smaller than PIPE_BUF: one atomic write, never partial */
    return write(p->rdp->msg_pipe[1], &m, sizeof(m)) == (ssize_t)sizeof(m);
}

/* ------------------------------------------------------------------------ */
/* Upstream: the VM's QEMU VNC socket                                        */
/* ------------------------------------------------------------------------ */

static void damage(struct rdp_ctx *c, int x, int y, int w, int h)
{
    if (c->dx2 == 0) {
        c->dx1 = x, c->dy1 = y, c->dx2 = x + w, c->dy2 = y + h;
        return;
    }
    if (x < c->dx1)
        c->dx1 = x;
    if (y < c->dy1)
        c->dy1 = y;
    if (x + w > c->dx2)
        c->dx2 = x + w;
    if (y + h > c->dy2)
        c->dy2 = y + h;
}

static rfbBool up_malloc_fb(rfbClient *up)
{
    struct rdp_ctx *c = rfbClientGetClientData(up, &up_tag);
    size_t w = (size_t)up->width, h = (size_t)up->height;
    if (w == 0 || h == 0 || w > 8192 || h > 8192)
        return FALSE;
    if (c->fb && c->fb_w == w && c->fb_h == h) {
        if (!up->frameBuffer) {
            /* a new console of the same size (the VM moved): the client keeps
             * the picture it has until the new one is current */
            up->frameBuffer = (uint8_t *)c->fb;
            return TRUE;
        }
        if (up->frameBuffer == (uint8_t *)c->fb) {
            /* the same size again (QEMU answering SetDesktopSize): keep the picture */
            damage(c, 0, 0, (int)w, (int)h);
            return TRUE;
        }
    }
    /* (a new console of another size: an older connection still pointing at
     * the old buffer is dropped before it reads again, see console_take) */
    char *fb = calloc(w * h, 4);
    if (!fb)
        return FALSE;
    free(c->fb);
    c->fb = fb;
    c->fb_w = w;
    c->fb_h = h;
    up->frameBuffer = (uint8_t *)fb;
    damage(c, 0, 0, (int)w, (int)h);
    return TRUE;
}

static void up_update(rfbClient *up, int x, int y, int w, int h)
{
    struct rdp_ctx *c = rfbClientGetClientData(up, &up_tag);
    damage(c, x, y, w, h);
    /* holding: look for content (see up_finished); libvncclient checked the
     * rectangle against the framebuffer before decoding it */
    for (int row = y; c->holding && !c->saw_content && row < y + h; row++) {
        const uint32_t *px =
            (const uint32_t *)(c->fb + ((size_t)row * (size_t)up->width + (size_t)x) * 4);
        for (int i = 0; i < w; i++)
            if (px[i] & 0x00ffffffu) {
                c->saw_content = true;
                break;
            }
    }
}

/*
 * A new console is held (nothing sent to the client, which keeps its last
 * picture) until QEMU's picture is current: QEMU renders a text-mode screen
 * only on its display refresh, so the first updates after connecting may
 * still carry a stale, black surface.  The first complete update that
 * brought a non-black pixel releases it, or SETTLE_MS after the first
 * update when the screen really is black (peer_main).
 */
static void up_finished(rfbClient *up)
{
    struct rdp_ctx *c = rfbClientGetClientData(up, &up_tag);
    if (!c->holding)
        return;
    if (c->n_updates++ == 0)
        c->first_update_ms = atr_now_mono_ms();
    if (c->saw_content) {
        c->holding = false;
        damage(c, 0, 0, up->width, up->height);
    }
}

/*
 * RFB on @fd, a connected console (taken over: closed on failure too).
 * Blocks for QEMU's handshake: a local socket answers at once, a relayed
 * stream within the relay's setup deadline.  NULL on failure.
 */
static rfbClient *up_connect(struct rdp_ctx *c, int fd)
{
    rfbClient *up = rfbGetClient(8, 3, 4);
    if (!up) {
        close(fd);
        return NULL;
    }
    /* B, G, R, X in memory: FreeRDP's PIXEL_FORMAT_BGRX32 */
    up->format.redShift = 16;
    up->format.greenShift = 8;
    up->format.blueShift = 0;
    rfbClientSetClientData(up, &up_tag, c);
    up->MallocFrameBuffer = up_malloc_fb;
    up->GotFrameBufferUpdate = up_update;
    up->FinishedFrameBufferUpdate = up_finished;
    up->canHandleNewFBSize = TRUE; /* the guest may change its mode */
    /* already connected: libvncclient skips its own connect when it
     * "listened", and speaks RFB on the socket it is given */
    up->listenSpecified = TRUE;
    up->sock = fd;
    up->readTimeout = UP_READ_S;
    up->appData.encodingsString = "copyrect raw";
    up->appData.shareDesktop = TRUE;
    /* rfbInitClient frees the client (and closes the socket) when it fails */
    if (!rfbInitClient(up, NULL, NULL))
        return NULL;
    if (!disp_rfb_set_encodings(up)) {
        rfbClientCleanup(up);
        return NULL;
    }
    return up;
}

/* ------------------------------------------------------------------------ */
/* Consoles, peer side: asked for, pushed, followed                          */
/* ------------------------------------------------------------------------ */

/*
 * Keys typed while the peer follows its VM (no console for a moment) are
 * kept, up to KEYS_KEPT events, and go to the new console once it is there,
 * so typing across a move loses nothing.  They go out one per KEY_PACE_MS:
 * QEMU puts a key straight into the guest's PS/2 queue, which drops what
 * does not fit in 16 bytes, so a burst of kept keys would lose most of
 * them.  Keys typed while some are still queued join the queue (order
 * kept).  Keys typed before a password log-in found the VM are dropped, as
 * is mouse input while following (the next motion puts the pointer right).
 */
static void key_send(struct rdp_ctx *c, uint32_t code, bool down, bool sym)
{
    if (!c->up && !c->lost_ms)
        return;
    if (c->up && c->keys_sent == c->n_keys) {
        if (sym)
            SendKeyEvent(c->up, code, down);
        else
            SendExtendedKeyEvent(c->up, 0, code, down);
        return;
    }
    if (c->n_keys >= KEYS_KEPT) {
        log_debug("rdp key dropped", "client", c->peer->addr, "reason", "too many kept");
        return;
    }
    c->keys[c->n_keys].code = code;
    c->keys[c->n_keys].down = down;
    c->keys[c->n_keys].sym = sym;
    c->n_keys++;
}

/* The next kept key, when its time has come (peer_main, with a console). */
static void keys_pace(struct rdp_ctx *c, int64_t now)
{
    if (!c->up || c->keys_sent == c->n_keys || now < c->keys_due)
        return;
    const struct rdp_key *k = &c->keys[c->keys_sent++];
    if (k->sym)
        SendKeyEvent(c->up, k->code, k->down);
    else
        SendExtendedKeyEvent(c->up, 0, k->code, k->down);
    c->keys_due = now + KEY_PACE_MS;
    if (c->keys_sent == c->n_keys) {
        log_info("rdp keys typed while following sent", "vm", LOG_INT(c->peer->vm_id), "client",
                 c->peer->addr, "events", LOG_INT(c->n_keys));
        c->n_keys = c->keys_sent = 0;
    }
}

/* Ask the gateway thread for a console of the peer's VM; the answer comes on
 * the console pipe (console_take). */
static void console_ask(struct rdp_ctx *c)
{
    c->asked = peer_report(c->peer, RDP_MSG_CONSOLE);
    c->retry_ms = atr_now_mono_ms() + (c->asked ? CONSOLE_WAIT_MS : FOLLOW_RETRY_MS);
}

/* The console is gone: look for the VM where it runs now (FOLLOW_MS with
 * the relay on; one attempt without, where a VM never changes host). */
static void console_lost(struct rdp_ctx *c, const char *why)
{
    log_warn("rdp: vnc console lost", "vm", LOG_INT(c->peer->vm_id), "client", c->peer->addr,
             "reason", why);
    if (c->up)
        rfbClientCleanup(c->up); /* the framebuffer is ours, not freed here */
    c->up = NULL;
    c->holding = false;
    if (!c->lost_ms) {
        c->lost_ms = atr_now_mono_ms();
        if (!c->asked)
            console_ask(c);
    }
}

/*
 * Use console @a from the gateway thread (takes its descriptor).  A new
 * libvncclient connection replaces the old one under the same RDP session;
 * it is held until its picture is current.  false when the session cannot
 * go on (lost, and the follow window is over).
 */
static bool console_take(struct rdp_ctx *c, const struct rdp_console *a)
{
    struct rdp_peer *p = c->peer;
    int64_t t0 = atr_now_mono_ms();
    if (!a->moved)
        c->asked = false;
    if (a->r == 0 && !a->moved && c->up) {
        close(a->fd); /* answers a request, but a push already gave us one */
        return true;
    }
    rfbClient *old = c->up, *up = NULL;
    int r = a->r;
    if (r == 0 && !(up = up_connect(c, a->fd))) {
        r = -ECONNREFUSED;
        /* every attempt of a follow fails this way while the VM is away */
        if (c->lost_ms)
            log_debug("rdp: vnc console handshake failed", "vm", LOG_INT(p->vm_id), "host_id",
                      LOG_INT(a->host));
        else
            log_warn("rdp: vnc console handshake failed", "vm", LOG_INT(p->vm_id), "host_id",
                     LOG_INT(a->host));
        /* an old connection whose buffer went to the failed one cannot go on */
        if (old && old->frameBuffer != (uint8_t *)c->fb)
            console_lost(c, "console replaced");
    }
    if (r < 0) {
        if (!c->lost_ms)
            return true;
        if (t0 - c->lost_ms >= (c->up_host ? FOLLOW_MS : 0)) {
            log_warn("rdp: vnc console gone", "vm", LOG_INT(p->vm_id), "client", p->addr, "errno",
                     LOG_INT(-r), "looked_ms", LOG_INT(t0 - c->lost_ms));
            return false;
        }
        c->retry_ms = t0 + FOLLOW_RETRY_MS;
        return true;
    }
    if (old)
        rfbClientCleanup(old);
    c->up = up;
    log_info("rdp console followed the vm", "vm", LOG_INT(p->vm_id), "client", p->addr, "reason",
             a->moved ? "vm moved" : "console lost", "from_host", LOG_INT(c->up_host), "to_host",
             LOG_INT(a->host), "ms", LOG_INT(atr_now_mono_ms() - t0), "lost_ms",
             LOG_INT(c->lost_ms ? atr_now_mono_ms() - c->lost_ms : 0));
    c->up_host = a->host;
    c->lost_ms = 0;
    c->holding = true;
    c->saw_content = false;
    c->n_updates = 0;
    c->switch_ms = t0;
    return true;
}

/* Read every console the gateway sent; false when the session cannot go on. */
static bool console_read(struct rdp_ctx *c)
{
    struct rdp_console a;
    while (read(c->peer->console_pipe[0], &a, sizeof(a)) == (ssize_t)sizeof(a))
        if (!console_take(c, &a))
            return false;
    return true;
}

/*
 * The first console of a password log-in: ask, and wait (bounded) for the
 * answer and QEMU's handshake.  0, or -errno.
 */
static int console_wait(struct rdp_ctx *c)
{
    int64_t deadline = atr_now_mono_ms() + CONSOLE_WAIT_MS;
    console_ask(c);
    if (!c->asked)
        return -EAGAIN;
    while (c->asked) {
        struct pollfd pfd[2] = {{.fd = c->peer->console_pipe[0], .events = POLLIN},
                                {.fd = c->peer->rdp->stop_fd, .events = POLLIN}};
        int64_t left = deadline - atr_now_mono_ms();
        if (left <= 0 || (poll(pfd, 2, (int)left) < 0 && errno != EINTR) || pfd[1].revents)
            return -ETIMEDOUT;
        struct rdp_console a;
        if (read(c->peer->console_pipe[0], &a, sizeof(a)) != (ssize_t)sizeof(a))
            continue;
        c->asked = false;
        if (a.r < 0)
            return a.r;
        if (!(c->up = up_connect(c, a.fd)))
            return -ECONNREFUSED;
        c->up_host = a.host;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Updates: damaged box -> 64x64 planar tiles -> Bitmap Update PDUs          */
/* ------------------------------------------------------------------------ */

static bool send_tiles(struct rdp_ctx *c)
{
    rdpContext *ctx = &c->base;
    rdpSettings *s = ctx->settings;
    int W = (int)c->fb_w, H = (int)c->fb_h; /* up may be gone while following */
    int x1 = c->dx1 & ~(TILE - 1), y1 = c->dy1 & ~(TILE - 1);
    int x2 = c->dx2 < W ? c->dx2 : W, y2 = c->dy2 < H ? c->dy2 : H;
    size_t max_tiles = (size_t)((x2 - x1 + TILE - 1) / TILE) * ((y2 - y1 + TILE - 1) / TILE);
    BITMAP_DATA *tiles = calloc(max_tiles ? max_tiles : 1, sizeof(*tiles));
    size_t n = 0, bytes = 1024;
    bool ok = tiles != NULL;
    c->dx2 = 0;

    for (int ty = y1; ok && ty < y2; ty += TILE) {
        for (int tx = x1; ok && tx < x2; tx += TILE) {
            BITMAP_DATA *b = &tiles[n];
            UINT32 w = (UINT32)(tx + TILE <= W ? TILE : W - tx);
            UINT32 h = (UINT32)(ty + TILE <= H ? TILE : H - ty);
            UINT32 size = 0;
            const BYTE *src = (const BYTE *)c->fb + ((size_t)ty * (size_t)W + (size_t)tx) * 4;
            BYTE *out = freerdp_bitmap_compress_planar(c->planar, src, PIXEL_FORMAT_BGRX32, w, h,
                                                       (UINT32)W * 4, NULL, &size);
            if (!out) {
                ok = false;
                break;
            }
            *b = (BITMAP_DATA){.destLeft = (UINT32)tx,
                               .destTop = (UINT32)ty,
                               .destRight = (UINT32)tx + w - 1,
                               .destBottom = (UINT32)ty + h - 1,
                               .width = w,
                               .height = h,
                               .bitsPerPixel = 32,
                               .compressed = TRUE,
                               .bitmapDataStream = out,
                               .bitmapLength = size,
                               .cbCompMainBodySize = size,
                               .cbScanWidth = w * 4,
                               .cbUncompressedSize = w * h * 4};
            n++;
            bytes += size + 32;
            /* one PDU must stay below what the client reassembles */
            bool last = tx + TILE >= x2 && ty + TILE >= y2;
            if (last || bytes + TILE * TILE * 4 + 1024 > s->MultifragMaxRequestSize) {
                BITMAP_UPDATE bu = {.number = (UINT32)n, .rectangles = tiles};
                ok = ctx->update->BitmapUpdate(ctx, &bu);
                for (size_t i = 0; i < n; i++)
                    free(tiles[i].bitmapDataStream);
                n = 0;
                bytes = 1024;
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        free(tiles[i].bitmapDataStream);
    free(tiles);
    return ok;
}

/* ------------------------------------------------------------------------ */
/* FreeRDP callbacks                                                         */
/* ------------------------------------------------------------------------ */

/*
 * A client without a ticket: username and password from the Client Info
 * PDU -> auth_login -> first entitled pool -> pool_assign -> the VM.  Runs in
 * the peer thread with its own database connection.  0 or -errno.
 */
static int peer_login(struct rdp_ctx *c, const rdpSettings *s)
{
    struct rdp_peer *p = c->peer;
    struct db *db = NULL;
    struct auth *a = NULL;
    struct auth_config acfg;
    struct auth_login_result res = {0};
    struct db_assignment as = {0};
    int64_t *pools = NULL;
    size_t n_pools = 0;
    int r;

    if (!s->Username || !*s->Username || !s->Password) {
        log_warn("rdp log-in refused", "client", p->addr, "reason", "no credentials");
        return -EACCES;
    }
    auth_config_defaults(&acfg);
    r = db_open(p->rdp->db_url, p->rdp->db_timeout_s, "atrium-displayd-rdp", &db, NULL);
    if (r == 0)
        r = auth_new(db, &acfg, &a);
    if (r < 0)
        goto out;
    struct auth_login_request req = {
        .username = s->Username, .password = s->Password, .client_addr = p->addr};
    r = auth_login(a, &req, &res);
    if (r < 0)
        goto out;
    if (res.outcome != AUTH_OK) {
        /* RDP has no place to ask for a TOTP code: such accounts use the broker */
        log_warn("rdp log-in refused", "client", p->addr, "user", s->Username, "reason",
                 auth_outcome_to_string(res.outcome));
        r = -EACCES;
        goto out;
    }
    r = auth_user_pools(a, res.user_id, &pools, &n_pools);
    if (r == 0 && n_pools == 0)
        r = -EPERM;
    if (r < 0) {
        log_warn("rdp log-in refused", "client", p->addr, "user", res.username, "reason",
                 "no pool");
        goto out;
    }
    /* several pools: the first one; choosing needs the broker's portal */
    r = pool_assign(db, res.user_id, pools[0], "rdp", p->addr, &as);
    if (r < 0) {
        log_warn("rdp log-in: no desktop", "client", p->addr, "user", res.username, "pool",
                 LOG_INT(pools[0]), "errno", LOG_INT(-r));
        goto out;
    }
    p->vm_id = as.vm_id;
    p->session_id = as.session_id;
    log_info("rdp log-in", "client", p->addr, "user", res.username, "vm", LOG_INT(as.vm_id),
             "session", LOG_INT(as.session_id), "reconnect", LOG_BOOL(as.reconnect));
out:
    free(pools);
    auth_free(a);
    db_close(db);
    return r;
}

static BOOL on_post_connect(freerdp_peer *client)
{
    struct rdp_ctx *c = (struct rdp_ctx *)client->context;
    rdpSettings *s = client->settings;
    if (!c->peer->vm_id) {
        int r;
        if (peer_login(c, s) < 0)
            return FALSE;
        if ((r = console_wait(c)) < 0) {
            log_warn("rdp: vnc console unreachable", "vm", LOG_INT(c->peer->vm_id), "errno",
                     LOG_INT(-r));
            return FALSE;
        }
        peer_report(c->peer, RDP_MSG_JOINED);
    }
    if (!c->up) /* lost before the client got this far: no size to tell it */
        return FALSE;
    log_info("rdp client connected", "client", c->peer->addr, "width", LOG_INT(s->DesktopWidth),
             "height", LOG_INT(s->DesktopHeight), "bpp", LOG_INT(s->ColorDepth));
    /* the desktop is the VM's: tell the client its size */
    if (s->DesktopWidth != (UINT32)c->up->width || s->DesktopHeight != (UINT32)c->up->height) {
        s->DesktopWidth = (UINT32)c->up->width;
        s->DesktopHeight = (UINT32)c->up->height;
        client->update->DesktopResize(client->context);
    }
    return TRUE;
}

static BOOL on_activate(freerdp_peer *client)
{
    struct rdp_ctx *c = (struct rdp_ctx *)client->context;
    c->activated = true;
    damage(c, 0, 0, (int)c->fb_w, (int)c->fb_h);
    return TRUE;
}

static BOOL on_refresh_rect(rdpContext *context, BYTE count, const RECTANGLE_16 *areas)
{
    struct rdp_ctx *c = (struct rdp_ctx *)context;
    (void)count;
    (void)areas;
    if (!c->up)
        return TRUE;
    damage(c, 0, 0, c->up->width, c->up->height);
    return TRUE;
}

static BOOL on_keyboard(rdpInput *input, UINT16 flags, UINT16 code)
{
    struct rdp_ctx *c = (struct rdp_ctx *)input->context;
    /* QEMU numbers keys as XT scancodes, 0xE0-prefixed ones with bit 7 set */
    uint32_t qnum = (code & 0x7f) | ((flags & KBD_FLAGS_EXTENDED) ? 0x80 : 0);
    bool down = !(flags & KBD_FLAGS_RELEASE);
    key_send(c, qnum, down, false);
    return TRUE;
}

static BOOL on_unicode(rdpInput *input, UINT16 flags, UINT16 code)
{
    struct rdp_ctx *c = (struct rdp_ctx *)input->context;
    /* X keysyms: Latin-1 as is, other BMP characters as 0x01000000 + code */
    uint32_t sym = code < 0x100 ? code : 0x01000000u + code;
    bool down = !(flags & KBD_FLAGS_RELEASE);
    key_send(c, sym, down, true);
    return TRUE;
}

static BOOL on_mouse(rdpInput *input, UINT16 flags, UINT16 x, UINT16 y)
{
    struct rdp_ctx *c = (struct rdp_ctx *)input->context;
    if (!c->up) /* input before the password log-in found the VM */
        return TRUE;
    if (flags & PTR_FLAGS_WHEEL) {
        int bit = (flags & PTR_FLAGS_WHEEL_NEGATIVE) ? 1 << 4 : 1 << 3;
        SendPointerEvent(c->up, x, y, c->buttons | bit);
        SendPointerEvent(c->up, x, y, c->buttons);
        return TRUE;
    }
    int bit = (flags & PTR_FLAGS_BUTTON1)   ? 1
              : (flags & PTR_FLAGS_BUTTON2) ? 4
              : (flags & PTR_FLAGS_BUTTON3) ? 2
                                            : 0;
    if (bit)
        c->buttons = (flags & PTR_FLAGS_DOWN) ? c->buttons | bit : c->buttons & ~bit;
    SendPointerEvent(c->up, x, y, c->buttons);
    return TRUE;
}

static BOOL on_ext_mouse(rdpInput *input, UINT16 flags, UINT16 x, UINT16 y)
{
    struct rdp_ctx *c = (struct rdp_ctx *)input->context;
    if (!c->up) /* input before the password log-in found the VM */
        return TRUE;
    (void)flags;
    SendPointerEvent(c->up, x, y, c->buttons);
    return TRUE;
}

static BOOL on_sync(rdpInput *input, UINT32 flags)
{
    (void)input;
    (void)flags;
    return TRUE;
}

/* ------------------------------------------------------------------------ */
/* Graphics Pipeline (RDPGFX): the same planar tiles as surface commands     */
/* ------------------------------------------------------------------------ */

static void gfx_wake(struct rdp_ctx *c)
{
    uint64_t one = 1;
    (void)!write(c->gfx_wake_fd, &one, sizeof(one));
}

/* The client's capability sets (FreeRDP's channel thread).  Planar surface
 * commands exist in every version: confirm the newest 8.x/10.x set offered,
 * with AVC (H.264) off since we never send it. */
static UINT on_gfx_caps(RdpgfxServerContext *gfx, const RDPGFX_CAPS_ADVERTISE_PDU *adv)
{
    struct rdp_ctx *c = gfx->custom;
    RDPGFX_CAPSET best = {0};
    for (UINT16 i = 0; i < adv->capsSetCount; i++)
        if (adv->capsSets[i].version > best.version)
            best = adv->capsSets[i];
    if (best.version == 0)
        return CHANNEL_RC_OK;
    best.flags &= ~(RDPGFX_CAPS_FLAG_AVC420_ENABLED);
    if (best.version >= RDPGFX_CAPVERSION_10)
        best.flags |= RDPGFX_CAPS_FLAG_AVC_DISABLED;
    RDPGFX_CAPS_CONFIRM_PDU confirm = {.capsSet = &best};
    UINT r = gfx->CapsConfirm(gfx, &confirm);
    if (r == CHANNEL_RC_OK) {
        atomic_store(&c->gfx_ready, true);
        gfx_wake(c);
    }
    return r;
}

static UINT on_gfx_ack(RdpgfxServerContext *gfx, const RDPGFX_FRAME_ACKNOWLEDGE_PDU *ack)
{
    struct rdp_ctx *c = gfx->custom;
    atomic_store(&c->gfx_no_ack, ack->queueDepth == SUSPEND_FRAME_ACKNOWLEDGEMENT);
    atomic_store(&c->gfx_acked, ack->frameId);
    gfx_wake(c);
    return CHANNEL_RC_OK;
}

static void gfx_open(struct rdp_ctx *c)
{
    RdpgfxServerContext *gfx = rdpgfx_server_context_new(c->vcm);
    if (!gfx) {
        c->gfx_failed = true;
        return;
    }
    gfx->rdpcontext = &c->base;
    gfx->custom = c;
    gfx->CapsAdvertise = on_gfx_caps;
    gfx->FrameAcknowledge = on_gfx_ack;
    if (!gfx->Open(gfx)) {
        /* the bitmap path carries on */
        log_warn("rdp: graphics pipeline unavailable", "client", c->peer->addr);
        rdpgfx_server_context_free(gfx);
        c->gfx_failed = true;
        return;
    }
    c->gfx = gfx;
}

/* Caps confirmed: one surface the size of the VM's screen, mapped to the
 * client's output.  false on a channel error. */
static bool gfx_surface_new(struct rdp_ctx *c)
{
    UINT32 w = (UINT32)c->fb_w, h = (UINT32)c->fb_h;
    MONITOR_DEF mon = {.left = 0,
                       .top = 0,
                       .right = (INT32)w - 1,
                       .bottom = (INT32)h - 1,
                       .flags = MONITOR_PRIMARY};
    RDPGFX_RESET_GRAPHICS_PDU reset = {
        .width = w, .height = h, .monitorCount = 1, .monitorDefArray = &mon};
    RDPGFX_CREATE_SURFACE_PDU create = {.surfaceId = GFX_SURFACE,
                                        .width = (UINT16)w,
                                        .height = (UINT16)h,
                                        .pixelFormat = GFX_PIXEL_FORMAT_XRGB_8888};
    RDPGFX_MAP_SURFACE_TO_OUTPUT_PDU map = {.surfaceId = GFX_SURFACE};
    if (c->gfx->ResetGraphics(c->gfx, &reset) != CHANNEL_RC_OK ||
        c->gfx->CreateSurface(c->gfx, &create) != CHANNEL_RC_OK ||
        c->gfx->MapSurfaceToOutput(c->gfx, &map) != CHANNEL_RC_OK)
        return false;
    c->gfx_surface = true;
    damage(c, 0, 0, (int)w, (int)h);
    log_info("rdp graphics pipeline", "client", c->peer->addr, "codec", "planar", "width",
             LOG_INT(w), "height", LOG_INT(h));
    return true;
}

/* The damaged box as one frame of planar surface commands.  Waits (keeps
 * the damage) while GFX_FRAMES_AHEAD frames are unacknowledged. */
static bool send_gfx(struct rdp_ctx *c)
{
    if (!atomic_load(&c->gfx_no_ack) &&
        c->gfx_frame - atomic_load(&c->gfx_acked) >= GFX_FRAMES_AHEAD)
        return true;
    int W = (int)c->fb_w, H = (int)c->fb_h; /* up may be gone while following */
    int x1 = c->dx1 & ~(TILE - 1), y1 = c->dy1 & ~(TILE - 1);
    int x2 = c->dx2 < W ? c->dx2 : W, y2 = c->dy2 < H ? c->dy2 : H;
    RDPGFX_START_FRAME_PDU start = {.frameId = ++c->gfx_frame};
    RDPGFX_END_FRAME_PDU end = {.frameId = c->gfx_frame};
    c->dx2 = 0;
    if (c->gfx->StartFrame(c->gfx, &start) != CHANNEL_RC_OK)
        return false;
    for (int ty = y1; ty < y2; ty += TILE) {
        for (int tx = x1; tx < x2; tx += TILE) {
            UINT32 w = (UINT32)(tx + TILE <= W ? TILE : W - tx);
            UINT32 h = (UINT32)(ty + TILE <= H ? TILE : H - ty);
            UINT32 size = 0;
            /* FreeRDP's planar encoder writes rows bottom-up, as classic
             * bitmaps want; a GFX surface command is top-down: hand the
             * encoder this tile's rows in reverse (one tile, never a frame) */
            for (UINT32 row = 0; row < h; row++)
                memcpy(c->gfx_tile + (size_t)(h - 1 - row) * w * 4,
                       c->fb + (((size_t)ty + row) * (size_t)W + (size_t)tx) * 4, (size_t)w * 4);
            BYTE *out = freerdp_bitmap_compress_planar(c->planar, c->gfx_tile, PIXEL_FORMAT_BGRX32,
                                                       w, h, w * 4, NULL, &size);
            if (!out)
                return false;
            RDPGFX_SURFACE_COMMAND cmd = {.surfaceId = GFX_SURFACE,
                                          .codecId = RDPGFX_CODECID_PLANAR,
                                          .format = PIXEL_FORMAT_BGRX32,
                                          .left = (UINT32)tx,
                                          .top = (UINT32)ty,
                                          .right = (UINT32)tx + w,
                                          .bottom = (UINT32)ty + h,
                                          .width = w,
                                          .height = h,
                                          .length = size,
                                          .data = out};
            UINT r = c->gfx->SurfaceCommand(c->gfx, &cmd);
            free(out);
            if (r != CHANNEL_RC_OK)
                return false;
        }
    }
    return c->gfx->EndFrame(c->gfx, &end) == CHANNEL_RC_OK;
}

/* ------------------------------------------------------------------------ */
/* Resize                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * The client's new monitor layout (Display Control).  Runs in FreeRDP's
 * channel thread: only notes the primary monitor's size for the peer thread,
 * which owns the VNC connection.
 */
static UINT on_disp_layout(DispServerContext *disp, const DISPLAY_CONTROL_MONITOR_LAYOUT_PDU *pdu)
{
    struct rdp_ctx *c = (struct rdp_ctx *)disp->rdpcontext;
    const DISPLAY_CONTROL_MONITOR_LAYOUT *m = NULL;
    for (UINT32 i = 0; i < pdu->NumMonitors; i++)
        if (!m || (pdu->Monitors[i].Flags & DISPLAY_CONTROL_MONITOR_PRIMARY))
            m = &pdu->Monitors[i];
    /* MS-RDPEDISP: 200..8192 pixels; anything else is ignored */
    if (!m || m->Width < 200 || m->Width > 8192 || m->Height < 200 || m->Height > 8192)
        return CHANNEL_RC_OK;
    uint64_t one = 1;
    pthread_mutex_lock(&c->resize_lock);
    c->want_w = m->Width;
    c->want_h = m->Height;
    pthread_mutex_unlock(&c->resize_lock);
    (void)!write(c->resize_fd, &one, sizeof(one));
    return CHANNEL_RC_OK;
}

/* Once the client's dynamic channels are up: offer Display Control. */
static void disp_open(struct rdp_ctx *c)
{
    DispServerContext *disp = disp_server_context_new(c->vcm);
    if (!disp)
        return;
    disp->rdpcontext = &c->base;
    disp->MaxNumMonitors = 1;
    disp->MaxMonitorAreaFactorA = 8192;
    disp->MaxMonitorAreaFactorB = 8192;
    disp->DispMonitorLayout = on_disp_layout;
    if (disp->Open(disp) != CHANNEL_RC_OK || disp->DisplayControlCaps(disp) != CHANNEL_RC_OK) {
        log_warn("rdp: display control unavailable", "client", c->peer->addr);
        disp_server_context_free(disp);
        /* not offered again: the rest of the session works without it */
        c->disp = NULL;
        c->disp_failed = true;
        return;
    }
    c->disp = disp;
    log_info("rdp display control open", "client", c->peer->addr);
}

/* The client asked for a size: ask QEMU (SetDesktopSize), which passes it
 * to the guest's display device. */
static void resize_requested(struct rdp_ctx *c)
{
    uint64_t n;
    uint32_t w, h;
    (void)!read(c->resize_fd, &n, sizeof(n));
    pthread_mutex_lock(&c->resize_lock);
    w = c->want_w;
    h = c->want_h;
    pthread_mutex_unlock(&c->resize_lock);
    if (!c->up || w == 0 || ((int)w == c->up->width && (int)h == c->up->height))
        return;
    bool sent = SendExtDesktopSize(c->up, (uint16_t)w, (uint16_t)h);
    log_info("rdp client asked for a size", "client", c->peer->addr, "width", LOG_INT(w), "height",
             LOG_INT(h), "forwarded", LOG_BOOL(sent));
}

/*
 * QEMU reports a framebuffer size other than the client's: the guest changed
 * its mode.  Tell the client (Desktop Resize: it deactivates, reactivates
 * with the new size, and on_activate asks for the whole picture).  false
 * when the client cannot follow (it did not announce Desktop Resize).
 */
static bool follow_guest_size(struct rdp_ctx *c)
{
    rdpSettings *s = c->base.settings;
    if (s->DesktopWidth == (UINT32)c->up->width && s->DesktopHeight == (UINT32)c->up->height)
        return true;
    log_info("rdp desktop resized", "client", c->peer->addr, "width", LOG_INT(c->up->width),
             "height", LOG_INT(c->up->height), "client_can", LOG_BOOL(s->DesktopResize));
    if (!s->DesktopResize)
        return false;
    s->DesktopWidth = (UINT32)c->up->width;
    s->DesktopHeight = (UINT32)c->up->height;
    c->activated = false; /* until the client confirms the new size */
    c->dx2 = 0;
    if (c->gfx_surface) {
        /* a new surface of the new size once the client is back */
        RDPGFX_DELETE_SURFACE_PDU del = {.surfaceId = GFX_SURFACE};
        (void)c->gfx->DeleteSurface(c->gfx, &del);
        c->gfx_surface = false;
    }
    return c->base.update->DesktopResize(&c->base) ? true : false;
}

/* ------------------------------------------------------------------------ */
/* Peer thread                                                               */
/* ------------------------------------------------------------------------ */

/* A frame went to the client.  The first one after a new console says how
 * long the client saw no change: from the last frame the old console
 * brought to this one (the pause a viewer sees, give or take the guest's
 * own pace of changes). */
static void frame_sent(struct rdp_ctx *c)
{
    int64_t now = atr_now_mono_ms();
    if (c->switch_ms && c->last_sent_ms)
        log_info("rdp console resumed", "vm", LOG_INT(c->peer->vm_id), "client", c->peer->addr,
                 "host_id", LOG_INT(c->up_host), "gap_ms", LOG_INT(now - c->last_sent_ms),
                 "held_ms", LOG_INT(now - c->switch_ms));
    c->switch_ms = 0;
    c->last_sent_ms = now;
}

static bool peer_setup(freerdp_peer *client, struct disp_rdp *rdp)
{
    rdpSettings *s = client->settings;
    if (!freerdp_settings_set_string(s, FreeRDP_CertificateFile, rdp->cert) ||
        !freerdp_settings_set_string(s, FreeRDP_PrivateKeyFile, rdp->key))
        return false;
    /* no RdpKeyFile: standard RDP security is off, and FreeRDP 2.11 leaks the
     * RSA key it would load from it for every peer (LeakSanitizer) */
    s->TlsSecurity = TRUE;
    s->NlaSecurity = FALSE; /* CredSSP would need the password's NT hash */
    s->RdpSecurity = FALSE; /* TLS always */
    s->ColorDepth = 32;
    s->RemoteFxCodec = FALSE;
    s->NSCodec = FALSE;
    s->SupportGraphicsPipeline = rdp->gfx ? TRUE : FALSE; /* and the client offers it */
    s->SupportDisplayControl = TRUE;
    s->RefreshRect = TRUE;
    s->SuppressOutput = FALSE;
    client->PostConnect = on_post_connect;
    client->Activate = on_activate;
    client->input->KeyboardEvent = on_keyboard;
    client->input->UnicodeKeyboardEvent = on_unicode;
    client->input->MouseEvent = on_mouse;
    client->input->ExtendedMouseEvent = on_ext_mouse;
    client->input->SynchronizeEvent = on_sync;
    client->update->RefreshRect = on_refresh_rect;
    return client->Initialize(client) ? true : false;
}

static void *peer_main(void *arg)
{
    struct rdp_peer *p = arg;
    struct disp_rdp *rdp = p->rdp;
    freerdp_peer *client = freerdp_peer_new(p->fd);
    struct rdp_ctx *c = NULL;

    if (!client) {
        close(p->fd);
        goto out;
    }
    client->ContextSize = sizeof(struct rdp_ctx);
    if (!freerdp_peer_context_new(client))
        goto out;
    c = (struct rdp_ctx *)client->context;
    c->peer = p;
    c->resize_fd = c->gfx_wake_fd = -1;
    pthread_mutex_init(&c->resize_lock, NULL);
    if ((c->resize_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
        (c->gfx_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
        !(c->vcm = WTSOpenServerA((LPSTR)client->context))) {
        log_warn("rdp peer setup failed", "client", p->addr, "reason", "virtual channels");
        goto out;
    }
    /* with a ticket the gateway opened the console; a password log-in asks
     * for it in PostConnect */
    if (p->up_fd >= 0) {
        int fd = p->up_fd;
        p->up_fd = -1;
        c->up_host = p->up_host;
        if (!(c->up = up_connect(c, fd))) {
            log_warn("rdp: vnc console handshake failed", "vm", LOG_INT(p->vm_id), "host_id",
                     LOG_INT(p->up_host));
            goto out;
        }
    }
    if (!(c->planar = freerdp_bitmap_planar_context_new(PLANAR_FORMAT_HEADER_RLE, TILE, TILE)))
        goto out;
    if (!peer_setup(client, rdp)) {
        log_warn("rdp peer setup failed", "client", p->addr);
        goto out;
    }
    if (p->vm_id)
        peer_report(p, RDP_MSG_JOINED);

    int vcm_fd = GetEventFileDescriptor(WTSVirtualChannelManagerGetEventHandle(c->vcm));
    for (;;) {
        void *rfds[32];
        int rcount = 0;
        struct pollfd pfd[40];
        nfds_t n = 0;
        if (!client->GetFileDescriptor(client, rfds, &rcount))
            break;
        for (int i = 0; i < rcount && n < 32; i++)
            pfd[n++] = (struct pollfd){.fd = (int)(intptr_t)rfds[i], .events = POLLIN};
        nfds_t i_gfx = n++, i_vcm = n++, i_resize = n++, i_up = n++, i_console = n++, i_kick = n++,
               i_stop = n++;
        pfd[i_gfx] = (struct pollfd){.fd = c->gfx_wake_fd, .events = POLLIN};
        pfd[i_vcm] = (struct pollfd){.fd = vcm_fd, .events = POLLIN};
        pfd[i_resize] = (struct pollfd){.fd = c->resize_fd, .events = POLLIN};
        /* before a password log-in, or while following the VM, there is no
         * console: poll nothing for it */
        pfd[i_up] = (struct pollfd){.fd = c->up ? c->up->sock : -1, .events = POLLIN};
        pfd[i_console] = (struct pollfd){.fd = p->console_pipe[0], .events = POLLIN};
        pfd[i_kick] = (struct pollfd){.fd = p->kick_fd, .events = POLLIN};
        pfd[i_stop] = (struct pollfd){.fd = rdp->stop_fd, .events = POLLIN};
        int64_t now = atr_now_mono_ms(), wake = -1;
        if (c->lost_ms)
            wake = c->retry_ms; /* the next request, or give up on the answer */
        if (c->holding && c->n_updates > 0 && (wake < 0 || c->first_update_ms + SETTLE_MS < wake))
            wake = c->first_update_ms + SETTLE_MS;
        if (c->up && c->keys_sent < c->n_keys && (wake < 0 || c->keys_due < wake))
            wake = c->keys_due;
        int timeout = wake < 0 ? -1 : wake > now ? (int)(wake - now) : 0;
        if (c->up && c->up->buffered > 0)
            timeout = 0;
        if (poll(pfd, n, timeout) < 0 && errno != EINTR)
            break;
        if (pfd[i_stop].revents)
            break;
        if (pfd[i_kick].revents) {
            /* taken over: the client shows "disconnected by another connection" */
            freerdp_set_error_info(client->context->rdp, ERRINFO_DISCONNECTED_BY_OTHER_CONNECTION);
            freerdp_send_error_info(client->context->rdp);
            log_info("rdp viewer closed", "client", p->addr, "reason", "taken over");
            break;
        }
        if (!client->CheckFileDescriptor(client) ||
            !WTSVirtualChannelManagerCheckFileDescriptor(c->vcm))
            break;
        if (!c->disp && !c->disp_failed && client->settings->SupportDisplayControl &&
            WTSVirtualChannelManagerGetDrdynvcState(c->vcm) == DRDYNVC_STATE_READY)
            disp_open(c);
        if (!c->gfx && !c->gfx_failed && client->settings->SupportGraphicsPipeline &&
            WTSVirtualChannelManagerGetDrdynvcState(c->vcm) == DRDYNVC_STATE_READY)
            gfx_open(c);
        if (pfd[i_resize].revents)
            resize_requested(c);
        if (pfd[i_gfx].revents) {
            uint64_t v;
            (void)!read(c->gfx_wake_fd, &v, sizeof(v));
        }
        /* a console pushed (the VM moved) or asked for: before reading the
         * old one, which the new one replaces */
        if (pfd[i_console].revents && !console_read(c))
            break;
        if (c->up && (pfd[i_up].revents || c->up->buffered > 0)) {
            bool alive = true;
            do
                alive = HandleRFBServerMessage(c->up);
            while (alive && c->up->buffered > 0);
            if (!alive)
                console_lost(c, "console ended");
        }
        now = atr_now_mono_ms();
        if (c->lost_ms && now >= c->retry_ms) {
            if (c->asked) { /* no answer in time: as if refused */
                struct rdp_console none = {.r = -ETIMEDOUT, .fd = -1};
                if (!console_take(c, &none))
                    break;
            } else if (now - c->lost_ms >= (c->up_host ? FOLLOW_MS : FOLLOW_RETRY_MS)) {
                log_warn("rdp: vnc console gone", "vm", LOG_INT(p->vm_id), "client", p->addr,
                         "looked_ms", LOG_INT(now - c->lost_ms));
                break;
            } else {
                console_ask(c);
            }
        }
        keys_pace(c, now);
        if (c->holding && c->n_updates > 0 && now >= c->first_update_ms + SETTLE_MS) {
            c->holding = false; /* the screen really is black */
            damage(c, 0, 0, (int)c->fb_w, (int)c->fb_h);
        }
        if (c->activated && c->up && !follow_guest_size(c)) {
            log_warn("rdp viewer closed", "client", p->addr, "reason",
                     "the guest changed its size and the client cannot follow");
            break;
        }
        if (c->activated && c->gfx && !c->gfx_surface && atomic_load(&c->gfx_ready) &&
            !gfx_surface_new(c))
            break;
        if (c->activated && c->dx2 && !c->holding) {
            if (!(c->gfx_surface ? send_gfx(c) : send_tiles(c)))
                break;
            if (c->dx2 == 0) /* sent (GFX may wait for acknowledgements) */
                frame_sent(c);
        }
    }
    client->Disconnect(client);
out:
    if (c) {
        if (c->disp) {
            c->disp->Close(c->disp);
            disp_server_context_free(c->disp);
        }
        if (c->gfx) {
            c->gfx->Close(c->gfx);
            rdpgfx_server_context_free(c->gfx);
        }
        if (c->gfx_wake_fd >= 0)
            close(c->gfx_wake_fd);
        if (c->vcm)
            WTSCloseServer(c->vcm);
        if (c->resize_fd >= 0)
            close(c->resize_fd);
        pthread_mutex_destroy(&c->resize_lock);
        if (c->up)
            rfbClientCleanup(c->up);
        free(c->fb);
        freerdp_bitmap_planar_context_free(c->planar);
    }
    if (client) {
        freerdp_peer_context_free(client);
        freerdp_peer_free(client);
    }
    if (p->up_fd >= 0) {
        close(p->up_fd);
        p->up_fd = -1;
    }
    peer_report(p, RDP_MSG_DONE);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Gateway side: accept, peek, redeem, start a peer                          */
/* ------------------------------------------------------------------------ */

static void pending_close(struct rdp_pending *p)
{
    close(p->fd);
    free(p);
}

/* Start a peer thread for @pd: with @ticket (redeemed here), or NULL for a
 * client that will log in with a password. */
static void peer_free(struct rdp_peer *p)
{
    if (!p)
        return;
    if (p->console_pipe[0] >= 0) {
        /* consoles sent after the thread's last read */
        struct rdp_console a;
        while (read(p->console_pipe[0], &a, sizeof(a)) == (ssize_t)sizeof(a))
            if (a.r == 0)
                close(a.fd);
    }
    for (int i = 0; i < 2; i++)
        if (p->console_pipe[i] >= 0)
            close(p->console_pipe[i]);
    if (p->kick_fd >= 0)
        close(p->kick_fd);
    if (p->up_fd >= 0)
        close(p->up_fd);
    free(p);
}

/* Start a peer thread for @pd: with @ticket (redeemed here, and the VM's
 * console opened here), or NULL for a client that will log in with a
 * password. */
static void start_peer(struct disp_rdp *rdp, struct rdp_pending *pd, const char *ticket)
{
    struct db_ticket_grant g = {0};
    struct rdp_peer *p = NULL;
    int r;
    if (ticket && disp_core_redeem(rdp->core, ticket, DB_PROTO_RDP, pd->addr, &g) < 0)
        goto fail;
    if (rdp->n_peers >= MAX_PEERS || !(p = calloc(1, sizeof(*p))))
        goto fail;
    p->rdp = rdp;
    p->fd = pd->fd;
    p->up_fd = p->kick_fd = p->console_pipe[0] = p->console_pipe[1] = -1;
    if ((p->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
        pipe2(p->console_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        goto fail;
    p->vm_id = g.vm_id;
    p->session_id = g.session_id;
    snprintf(p->addr, sizeof(p->addr), "%s", pd->addr);
    if (ticket) {
        r = disp_console_open(rdp->core, g.vm_id, DISP_CONSOLE_VNC, &p->up_fd, &p->up_host);
        if (r < 0) {
            log_warn("rdp: vnc console unreachable", "vm", LOG_INT(g.vm_id), "client", pd->addr,
                     "errno", LOG_INT(-r));
            goto fail;
        }
        p->console_vm = g.vm_id;
        p->console_host = p->up_host;
    }
    /* FreeRDP's transport wants a blocking socket */
    int fl = fcntl(p->fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(p->fd, F_SETFL, fl & ~O_NONBLOCK);
    if (pthread_create(&p->thread, NULL, peer_main, p) != 0)
        goto fail;
    p->next = rdp->peers;
    rdp->peers = p;
    rdp->n_peers++;
    free(pd);
    return;
fail:
    peer_free(p);
    /* no RDP answer: the client reports the connection as refused */
    pending_close(pd);
}

static bool pending_step(struct disp_rdp *rdp, struct rdp_pending *pd, int64_t now)
{
    unsigned char buf[1024];
    char ticket[DB_TICKET_LEN + 1];
    ssize_t n = recv(pd->fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        pending_close(pd);
        return true;
    }
    int r = disp_x224_ticket(buf, n > 0 ? (size_t)n : 0, ticket, sizeof(ticket));
    if (r == -EAGAIN && now < pd->deadline_ms)
        return false;
    if (r == -ENOENT) {
        start_peer(rdp, pd, NULL); /* no ticket: username and password after TLS */
        return true;
    }
    if (r < 0) {
        (void)db_ticket_fail(disp_core_db(rdp->core), DB_PROTO_RDP, pd->addr, DB_TICKET_UNKNOWN,
                             disp_core_backoff(rdp->core));
        log_warn("console ticket refused", "protocol", "rdp", "client", pd->addr, "reason",
                 r == -EAGAIN ? "no connection request in time" : "no ticket in request");
        pending_close(pd);
        return true;
    }
    start_peer(rdp, pd, ticket);
    return true;
}

static void rdp_accept(struct disp_rdp *rdp)
{
    for (;;) {
        char addr[64];
        int fd;
        int r = disp_net_accept(rdp->listen_fd, &fd, addr);
        if (r < 0) {
            if (r != -EAGAIN && r != -EWOULDBLOCK && r != -ECONNABORTED)
                log_warn("rdp accept failed", "errno", LOG_INT(-r));
            return;
        }
        struct rdp_pending *pd = rdp->n_pending < MAX_PENDING ? calloc(1, sizeof(*pd)) : NULL;
        if (!pd) {
            log_warn("rdp connection refused", "client", addr, "reason", "too many connections");
            close(fd);
            continue;
        }
        pd->fd = fd;
        pd->idx = -1;
        snprintf(pd->addr, sizeof(pd->addr), "%s", addr);
        pd->deadline_ms = atr_now_mono_ms() + HEAD_MS;
        pd->next = rdp->pending;
        rdp->pending = pd;
        rdp->n_pending++;
    }
}

static void peer_reap(struct disp_rdp *rdp, struct rdp_peer *p)
{
    pthread_join(p->thread, NULL);
    for (struct rdp_peer **pp = &rdp->peers; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    rdp->n_peers--;
    peer_free(p);
}

/* Taken over by a newer connection: the peer thread sends the client the
 * reason (ERRINFO_DISCONNECTED_BY_OTHER_CONNECTION) and ends. */
static void peer_kick(void *viewer, const char *why)
{
    struct rdp_peer *p = viewer;
    uint64_t one = 1;
    (void)why;
    (void)!write(p->kick_fd, &one, sizeof(one));
}

static const struct disp_viewer_ops rdp_viewer_ops = {.kick = peer_kick};

/*
 * Open a console of VM @vm_id for peer @p and send it down the peer's
 * console pipe (also a failure, unless @moved: a push that failed is
 * retried by the peer when its old console ends).  Gateway thread.
 */
static void console_give(struct disp_rdp *rdp, struct rdp_peer *p, int64_t vm_id, bool moved)
{
    struct rdp_console a = {.fd = -1, .moved = moved};
    a.r = rdp->closing ? -ESHUTDOWN
                       : disp_console_open(rdp->core, vm_id, DISP_CONSOLE_VNC, &a.fd, &a.host);
    if (a.r < 0 && moved) {
        log_warn("rdp console not followed yet", "vm", LOG_INT(vm_id), "client", p->addr, "errno",
                 LOG_INT(-a.r));
        return;
    }
    if (write(p->console_pipe[1], &a, sizeof(a)) != (ssize_t)sizeof(a)) {
        /* never full in practice (a few answers at most are in flight); the
         * peer treats a missing answer as a refusal after CONSOLE_WAIT_MS */
        if (a.r == 0)
            close(a.fd);
        return;
    }
    if (a.r == 0) {
        p->console_vm = vm_id;
        p->console_host = a.host;
    }
}

/* The row of VM @vm_id names another host: every peer showing it gets a
 * console there now, before its old QEMU (paused by the migration, killed
 * right after) is gone.  Gateway thread. */
static void rdp_vm_moved(void *state, int64_t vm_id, int64_t host_id)
{
    struct disp_rdp *rdp = state;
    int64_t now_on = 0;
    for (struct rdp_peer *p = rdp->peers; p; p = p->next) {
        if (p->console_vm != vm_id || !p->console_host || p->console_host == host_id)
            continue;
        /* a move sends two notes, the new host's and the old one's: only the
         * row says where the VM is now (read once per note) */
        if (!now_on && (disp_console_host(rdp->core, vm_id, &now_on) < 0 || !now_on))
            return;
        if (now_on != p->console_host)
            console_give(rdp, p, vm_id, true);
    }
}

static void read_messages(struct disp_rdp *rdp)
{
    struct rdp_msg m;
    while (read(rdp->msg_pipe[0], &m, sizeof(m)) == (ssize_t)sizeof(m)) {
        struct rdp_peer *p = m.peer;
        if (m.kind == RDP_MSG_CONSOLE) {
            console_give(rdp, p, m.vm_id, false);
        } else if (m.kind == RDP_MSG_JOINED) {
            log_info("rdp viewer joined", "vm", LOG_INT(p->vm_id), "client", p->addr);
            p->joined = true;
            p->dv = disp_core_viewer_joined(rdp->core, p->session_id, DB_PROTO_RDP, p->addr,
                                            &rdp_viewer_ops, p);
        } else {
            if (p->joined)
                log_info("rdp viewer left", "vm", LOG_INT(p->vm_id), "client", p->addr);
            disp_core_viewer_left(rdp->core, p->dv);
            peer_reap(rdp, p);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Front end                                                                */
/* ------------------------------------------------------------------------ */

static void rdp_close(void *state)
{
    struct disp_rdp *rdp = state;
    if (!rdp)
        return;
    rdp->closing = true; /* console requests are refused from now on */
    if (rdp->stop_fd >= 0) {
        uint64_t one = 1;
        (void)!write(rdp->stop_fd, &one, sizeof(one));
    }
    /* every thread ends with RDP_MSG_DONE; collect them all */
    while (rdp->peers) {
        struct pollfd pfd = {.fd = rdp->msg_pipe[0], .events = POLLIN};
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
            break;
        read_messages(rdp);
    }
    while (rdp->pending) {
        struct rdp_pending *pd = rdp->pending;
        rdp->pending = pd->next;
        pending_close(pd);
    }
    for (int i = 0; i < 2; i++)
        if (rdp->msg_pipe[i] >= 0)
            close(rdp->msg_pipe[i]);
    if (rdp->stop_fd >= 0)
        close(rdp->stop_fd);
    if (rdp->listen_fd >= 0)
        close(rdp->listen_fd);
    free(rdp->cert);
    free(rdp->key);
    free(rdp->db_url);
    free(rdp);
}

static int rdp_open(struct disp_core *core, const struct atr_config *cfg, void **ret_state,
                    struct atr_error *err)
{
    struct disp_rdp *rdp = calloc(1, sizeof(*rdp));
    int r;
    if (!rdp)
        return atr_error_set(err, -ENOMEM, "out of memory");
    rdp->core = core;
    rdp->listen_fd = rdp->stop_fd = rdp->msg_pipe[0] = rdp->msg_pipe[1] = -1;
    /* WinPR's virtual channel calls (WTSOpenServerA ...) are FreeRDP's */
    WTSRegisterWtsApiFunctionTable(FreeRDP_InitWtsApi());
    /* TLS always: no certificate, no RDP */
    if (access(cfg->display.tls_cert, R_OK) < 0 || access(cfg->display.tls_key, R_OK) < 0) {
        r = atr_error_set(err, -ENOENT, "RDP needs display.tls_cert and display.tls_key: %s",
                          strerror(errno));
        goto fail;
    }
    rdp->db_timeout_s = cfg->db.connect_timeout_s;
    rdp->gfx = cfg->display.rdp_gfx;
    if (!(rdp->cert = strdup(cfg->display.tls_cert)) ||
        !(rdp->key = strdup(cfg->display.tls_key)) || !(rdp->db_url = strdup(cfg->db.url)) ||
        pipe2(rdp->msg_pipe, O_CLOEXEC | O_NONBLOCK) < 0 ||
        (rdp->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        r = atr_error_set(err, -errno ?: -ENOMEM, "cannot set up RDP: %s", strerror(errno));
        goto fail;
    }
    r = disp_net_listen(cfg->display.listen, cfg->display.rdp_port, &rdp->listen_fd);
    if (r < 0) {
        atr_error_set(err, r, "cannot listen for RDP on %s port %d: %s", cfg->display.listen,
                      cfg->display.rdp_port, strerror(-r));
        goto fail;
    }
    *ret_state = rdp;
    return 0;
fail:
    rdp_close(rdp);
    return r;
}

static int rdp_prepare(void *state, struct disp_pollset *ps)
{
    struct disp_rdp *rdp = state;
    int64_t now = atr_now_mono_ms();
    if ((rdp->listen_idx = disp_pollset_add(ps, rdp->listen_fd, POLLIN)) < 0 ||
        (rdp->msg_idx = disp_pollset_add(ps, rdp->msg_pipe[0], POLLIN)) < 0)
        return -ENOMEM;
    for (struct rdp_pending *pd = rdp->pending; pd; pd = pd->next) {
        if ((pd->idx = disp_pollset_add(ps, pd->fd, POLLIN)) < 0)
            return -ENOMEM;
        disp_pollset_timeout(ps, pd->deadline_ms > now ? (int)(pd->deadline_ms - now) : 0);
    }
    return 0;
}

static void rdp_dispatch(void *state, const struct disp_pollset *ps)
{
    struct disp_rdp *rdp = state;
    int64_t now = atr_now_mono_ms();
    if (disp_pollset_revents(ps, rdp->msg_idx))
        read_messages(rdp);
    if (disp_pollset_revents(ps, rdp->listen_idx))
        rdp_accept(rdp);
    for (struct rdp_pending **pp = &rdp->pending; *pp;) {
        struct rdp_pending *pd = *pp;
        struct rdp_pending *next = pd->next;
        bool due = pd->idx >= 0 && (disp_pollset_revents(ps, pd->idx) || now >= pd->deadline_ms);
        if (due && pending_step(rdp, pd, now)) {
            *pp = next;
            rdp->n_pending--;
        } else {
            pp = &pd->next;
        }
    }
}

const struct disp_frontend_ops disp_rdp_ops = {
    .name = "rdp",
    .open = rdp_open,
    .prepare = rdp_prepare,
    .dispatch = rdp_dispatch,
    .close = rdp_close,
    .vm_moved = rdp_vm_moved,
};
