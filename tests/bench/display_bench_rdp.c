/*
 * display_bench_rdp: one RDP viewer's view of a server, measured.  The same
 * client (FreeRDP 2's library with its software GDI, no window) for every
 * server, so displayd and xrdp are compared on equal terms.
 *
 *   display_bench_rdp [--gfx] HOST PORT SECONDS WxH USER PASSWORD [LOADBALANCEINFO]
 *
 * TLS, 32 bpp, bitmap updates (no RemoteFX: what both servers offer to a
 * plain client); with --gfx the client also offers the Graphics Pipeline
 * (FreeRDP's rdpgfx channel, decoded by the same GDI), which a server may
 * use instead.  LOADBALANCEINFO is sent as the X.224 routing token
 * (displayd's ticket: "Cookie: msts=<ticket>"); USER and PASSWORD go in the
 * Client Info PDU (xrdp's autorun needs some).
 *
 * While the server's screen changes, a "frame" is one wake-up of the client
 * in which something was painted (what a viewer would present), an "update"
 * one server update PDU batch (BeginPaint..EndPaint).  Bytes are what the
 * kernel received on the client's TCP sockets (TCP_INFO), so TLS and protocol
 * overhead count.  Prints one line:
 *   "<frames> <updates> <seconds> <bytes> <W>x<H> <pixels>"
 * where pixels is the painted area summed over all updates.  With
 * SERVER_PID in the environment a seventh field follows: that process's CPU
 * time (user + system, seconds) over the measured interval only.  The first
 * picture (the whole screen after log-in) and one second after it are not
 * measured.
 */
#include <dirent.h>
#include <freerdp/addin.h>
#include <freerdp/client/channels.h>
#include <freerdp/client/cmdline.h>
#include <freerdp/client/rdpgfx.h>
#include <freerdp/event.h>
#include <freerdp/freerdp.h>
#include <freerdp/gdi/gdi.h>
#include <freerdp/gdi/gfx.h>
#include <freerdp/settings.h>
#include <linux/tcp.h> /* tcpi_bytes_received: newer than glibc's struct tcp_info */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <winpr/synch.h>
#include <winpr/wlog.h>

static long updates;
static unsigned long long pixels;
static int painted;

/* CPU seconds used so far by process @pid (utime + stime), -1 when unknown. */
static double cpu_s(const char *pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%s/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* fields after the command name, which may contain spaces: from ") " on */
    const char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Bytes received on every TCP socket of this process (the RDP connection). */
static unsigned long long bytes_received(void)
{
    unsigned long long sum = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));) {
        int fd = atoi(e->d_name);
        struct tcp_info ti;
        socklen_t len = sizeof(ti);
        if (e->d_name[0] == '.' || fd == dirfd(d))
            continue;
        if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0)
            sum += (unsigned long long)ti.tcpi_bytes_received;
    }
    closedir(d);
    return sum;
}

/* The painted area: the GDI's invalid region of this update. */
static BOOL end_paint(rdpContext *context)
{
    rdpGdi *gdi = context->gdi;
    HGDI_WND hwnd = gdi->primary->hdc->hwnd;
    if (hwnd->invalid->null)
        return TRUE;
    for (INT32 i = 0; i < hwnd->ninvalid; i++)
        pixels += (unsigned long long)hwnd->cinvalid[i].w * (unsigned long long)hwnd->cinvalid[i].h;
    hwnd->invalid->null = TRUE;
    hwnd->ninvalid = 0;
    updates++;
    painted = 1;
    return TRUE;
}

static int gfx_used;

/* The Graphics Pipeline channel is up: let the GDI draw what it carries. */
static void channel_connected(void *ctx, ChannelConnectedEventArgs *e)
{
    rdpContext *context = ctx;
    if (strcmp(e->name, RDPGFX_DVC_CHANNEL_NAME) == 0 &&
        gdi_graphics_pipeline_init(context->gdi, (RdpgfxClientContext *)e->pInterface))
        gfx_used = 1;
}

static void channel_disconnected(void *ctx, ChannelDisconnectedEventArgs *e)
{
    rdpContext *context = ctx;
    if (strcmp(e->name, RDPGFX_DVC_CHANNEL_NAME) == 0)
        gdi_graphics_pipeline_uninit(context->gdi, (RdpgfxClientContext *)e->pInterface);
}

static BOOL pre_connect(freerdp *instance)
{
    rdpContext *context = instance->context;
    if (!instance->settings->SupportGraphicsPipeline)
        return TRUE;
    PubSub_SubscribeChannelConnected(context->pubSub, channel_connected);
    PubSub_SubscribeChannelDisconnected(context->pubSub, channel_disconnected);
    return freerdp_client_load_addins(context->channels, instance->settings);
}

static BOOL post_connect(freerdp *instance)
{
    if (!gdi_init(instance, PIXEL_FORMAT_BGRX32))
        return FALSE;
    instance->update->EndPaint = end_paint;
    return TRUE;
}

static DWORD accept_cert(freerdp *instance, const char *host, UINT16 port, const char *common_name,
                         const char *subject, const char *issuer, const char *fingerprint,
                         DWORD flags)
{
    (void)instance, (void)host, (void)port, (void)common_name, (void)subject, (void)issuer;
    (void)fingerprint, (void)flags;
    return 2; /* accept for this session only: a bench on loopback */
}

/* Wait for and handle whatever arrives within @seconds; returns whether the
 * connection is still up. */
static int pump(freerdp *inst, double seconds)
{
    HANDLE handles[64];
    DWORD n = freerdp_get_event_handles(inst->context, handles, 64);
    DWORD ms = seconds > 0 ? (DWORD)(seconds * 1000) : 0;
    if (n == 0)
        return 0;
    if (WaitForMultipleObjects(n, handles, FALSE, ms) == WAIT_FAILED)
        return 0;
    if (!freerdp_check_event_handles(inst->context))
        return 0;
    return !freerdp_shall_disconnect(inst);
}

int main(int argc, char **argv)
{
    int gfx = argc > 1 && strcmp(argv[1], "--gfx") == 0;
    argc -= gfx;
    argv += gfx;
    if (argc < 7) {
        fprintf(stderr, "usage: display_bench_rdp [--gfx] HOST PORT SECONDS WxH USER PASSWORD "
                        "[LOADBALANCEINFO]\n");
        return 2;
    }
    double seconds = atof(argv[3]);
    unsigned w = 0, h = 0;
    if (sscanf(argv[4], "%ux%u", &w, &h) != 2 || w == 0 || h == 0) {
        fprintf(stderr, "display_bench_rdp: bad size %s\n", argv[4]);
        return 2;
    }
    WLog_SetLogLevel(WLog_GetRoot(), WLOG_ERROR);

    freerdp_register_addin_provider(freerdp_channels_load_static_addin_entry, 0);
    freerdp *inst = freerdp_new();
    if (!inst || !freerdp_context_new(inst))
        return 1;
    inst->PreConnect = pre_connect;
    inst->PostConnect = post_connect;
    inst->VerifyCertificateEx = accept_cert;
    rdpSettings *s = inst->settings;
    if (!freerdp_settings_set_string(s, FreeRDP_ServerHostname, argv[1]) ||
        !freerdp_settings_set_string(s, FreeRDP_Username, argv[5]) ||
        !freerdp_settings_set_string(s, FreeRDP_Password, argv[6]))
        return 1;
    s->ServerPort = (UINT32)atoi(argv[2]);
    s->DesktopWidth = w;
    s->DesktopHeight = h;
    s->ColorDepth = 32;
    s->IgnoreCertificate = TRUE;
    s->TlsSecurity = TRUE;
    s->NlaSecurity = FALSE;
    s->RdpSecurity = FALSE;
    s->ExtSecurity = FALSE;
    s->SupportGraphicsPipeline = gfx ? TRUE : FALSE;
    s->RemoteFxCodec = FALSE;
    s->NSCodec = FALSE;
    s->AutoReconnectionEnabled = FALSE;
    if (argc > 7) {
        size_t len = strlen(argv[7]);
        s->LoadBalanceInfo = (BYTE *)strdup(argv[7]);
        s->LoadBalanceInfoLength = (UINT32)len;
    }
    if (!freerdp_connect(inst)) {
        fprintf(stderr, "display_bench_rdp: cannot connect (error 0x%08x)\n",
                freerdp_get_last_error(inst->context));
        return 1;
    }
    /* the first picture (the whole screen after log-in), then one more
     * second to let it settle: not measured */
    double deadline = now_s() + 30;
    while (updates == 0)
        if (now_s() > deadline || !pump(inst, deadline - now_s())) {
            fprintf(stderr, "display_bench_rdp: no first picture\n");
            return 1;
        }
    for (double settle = now_s() + 1; now_s() < settle;)
        if (!pump(inst, settle - now_s()))
            return 1;
    long frames = 0;
    updates = 0;
    pixels = 0;
    const char *spid = getenv("SERVER_PID");
    double c0 = spid ? cpu_s(spid) : -1;
    unsigned long long b0 = bytes_received();
    double t0 = now_s(), end = t0 + seconds;
    for (double t = t0; t < end; t = now_s()) {
        painted = 0;
        if (!pump(inst, end - t)) {
            fprintf(stderr, "display_bench_rdp: connection lost\n");
            return 1;
        }
        frames += painted;
    }
    double t = now_s() - t0;
    printf("%ld %ld %.3f %llu %ux%u %llu", frames, updates, t, bytes_received() - b0,
           inst->settings->DesktopWidth, inst->settings->DesktopHeight, pixels);
    if (spid)
        printf(" %.2f", c0 >= 0 ? cpu_s(spid) - c0 : -1.0);
    printf("\n");
    if (gfx && !gfx_used)
        fprintf(stderr, "display_bench_rdp: the server did not use the Graphics Pipeline\n");
    freerdp_disconnect(inst);
    gdi_free(inst);
    freerdp_context_free(inst);
    freerdp_free(inst);
    return 0;
}
