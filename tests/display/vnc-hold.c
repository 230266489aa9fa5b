/*
 * vnc-hold HOST PORT PASSWORD [TEXT [OUT.ppm]]: a VNC viewer for the session
 * control tests, on libvncclient.  Connects with a one-time VNC password,
 * waits until the picture shows something (a non-black pixel, at most 30 s),
 * prints "ready lit=N size=WxH", writes the picture to OUT.ppm when asked,
 * types TEXT and Enter when TEXT is not empty (printing "typed"), and then
 * stays connected until the server closes the connection ("closed", exit 0)
 * or 120 s pass (exit 4).  Exit 1 when it cannot connect or never sees a
 * picture.  Lower-case letters and digits only in TEXT.
 */
#include "vncview.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ms(void)
{
    return vv_now_ms(CLOCK_MONOTONIC);
}

/* Serve the server's messages for up to @ms; false when the connection ended. */
static bool serve(rfbClient *c, int64_t ms)
{
    int64_t end = now_ms() + ms;
    for (int64_t left; (left = end - now_ms()) > 0;) {
        int r = WaitForMessage(c, (unsigned)(left * 1000));
        if (r < 0 || (r > 0 && !HandleRFBServerMessage(c)))
            return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 6) {
        fprintf(stderr, "usage: vnc-hold HOST PORT PASSWORD [TEXT [OUT.ppm]]\n");
        return 2;
    }
    const char *text = argc > 4 ? argv[4] : "";
    rfbClient *c = vv_connect(argv[0], argv[1], argv[2], argv[3], NULL);
    if (!c)
        return 1;
    long lit = 0;
    for (int64_t end = now_ms() + 30000; (lit = vv_lit_pixels(c)) == 0 && now_ms() < end;)
        if (!serve(c, 200)) {
            printf("closed before a picture\n");
            rfbClientCleanup(c);
            return 1;
        }
    if (!lit) {
        printf("no picture\n");
        rfbClientCleanup(c);
        return 1;
    }
    /* a little longer, so the picture is complete (updates come in pieces) */
    if (!serve(c, 500)) {
        printf("closed\n");
        rfbClientCleanup(c);
        return 0;
    }
    printf("ready lit=%ld size=%dx%d\n", vv_lit_pixels(c), c->width, c->height);
    fflush(stdout);
    if (argc > 5 && vv_write_ppm(c, argv[5]) < 0) {
        perror(argv[5]);
        rfbClientCleanup(c);
        return 1;
    }
    if (*text) {
        printf(vv_type(c, text) ? "typed\n" : "type failed\n");
        fflush(stdout);
    }
    int rc = 4;
    if (!serve(c, 120000)) {
        printf("closed\n");
        rc = 0;
    }
    fflush(stdout);
    rfbClientCleanup(c);
    return rc;
}
