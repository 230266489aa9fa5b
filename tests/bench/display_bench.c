/*
 * display_bench: one VNC viewer's view of a server, measured.
 *
 *   display_bench HOST PORT MODE SECONDS ENCODINGS [PASSWORD]
 *
 * MODE "full": ask for the whole screen again and again (non-incremental
 * requests) — frames/s and bytes per full-screen update, the worst case.
 * MODE "incr": normal viewer behaviour (incremental requests) while the
 * screen changes — updates/s and bytes per update.
 * Bytes are what the kernel received on the socket (TCP_INFO), so protocol
 * overhead counts.  Prints one line:
 *   "<updates> <seconds> <bytes> <W>x<H> <pixels>"
 * where pixels is the area of all rectangles received: a server may answer
 * a request with less than was asked (QEMU does), so full-screen frames are
 * counted as pixels / (W * H), never as replies.
 * libvncclient does the RFB work; PASSWORD answers VNC authentication.
 */
#include <errno.h>
#include <netinet/in.h>
#include <linux/tcp.h> /* tcpi_bytes_received: newer than glibc's struct tcp_info */
#include <poll.h>
#include <rfb/rfbclient.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *password;
static long frames;
static unsigned long long pixels;

static void got_rect(rfbClient *c, int x, int y, int w, int h)
{
    (void)c, (void)x, (void)y;
    pixels += (unsigned long long)w * (unsigned long long)h;
}

static char *get_password(rfbClient *c)
{
    (void)c;
    return strdup(password ? password : "");
}

static void finished(rfbClient *c)
{
    (void)c;
    frames++;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned long long bytes_received(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return 0;
    return (unsigned long long)ti.tcpi_bytes_received;
}

static void quiet(const char *fmt, ...)
{
    (void)fmt;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: display_bench HOST PORT full|incr SECONDS ENCODINGS [PASSWORD]\n");
        return 2;
    }
    int full = strcmp(argv[3], "full") == 0;
    double seconds = atof(argv[4]);
    password = argc > 6 ? argv[6] : NULL;
    rfbClientLog = quiet;
    rfbClientErr = quiet;

    rfbClient *c = rfbGetClient(8, 3, 4);
    if (!c)
        return 1;
    free(c->serverHost);
    c->serverHost = strdup(argv[1]);
    c->serverPort = atoi(argv[2]);
    c->GetPassword = get_password;
    c->FinishedFrameBufferUpdate = finished;
    c->GotFrameBufferUpdate = got_rect;
    c->appData.encodingsString = argv[5];
    c->appData.compressLevel = 6;
    c->appData.qualityLevel = 8;
    if (!rfbInitClient(c, NULL, NULL)) {
        fprintf(stderr, "display_bench: cannot connect\n");
        return 1;
    }
    /* the first (full) update is the baseline, not part of the measurement */
    while (frames == 0)
        if (WaitForMessage(c, 5000000) <= 0 || !HandleRFBServerMessage(c))
            return 1;
    frames = 0;
    pixels = 0;
    unsigned long long b0 = bytes_received(c->sock);
    double t0 = now_s(), end = t0 + seconds;
    if (full)
        SendFramebufferUpdateRequest(c, 0, 0, c->width, c->height, FALSE);
    while (now_s() < end) {
        int left_us = (int)((end - now_s()) * 1e6);
        int r = WaitForMessage(c, left_us > 0 ? (unsigned)left_us : 0);
        if (r < 0)
            return 1;
        if (r == 0)
            continue;
        long before = frames;
        if (!HandleRFBServerMessage(c))
            return 1;
        /* libvncclient asks incrementally after each update; in "full" mode
         * also ask for everything again */
        if (full && frames != before)
            SendFramebufferUpdateRequest(c, 0, 0, c->width, c->height, FALSE);
    }
    double t = now_s() - t0;
    printf("%ld %.3f %llu %dx%d %llu\n", frames, t, bytes_received(c->sock) - b0, c->width,
           c->height, pixels);
    free(c->frameBuffer); /* rfbClientCleanup leaves it */
    rfbClientCleanup(c);
    return 0;
}
