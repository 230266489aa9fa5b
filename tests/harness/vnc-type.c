/*
 * vnc-type SOCKET TEXT: connect to a VNC server on a unix socket (a VM's
 * console, as QEMU serves it) with libvncclient and type TEXT followed by
 * Enter, as a person at the keyboard would.  For tests: exit 0 when every
 * key event was sent, 1 otherwise.  Lower-case letters, digits, space and
 * simple punctuation only (no shift handling needed).
 */
#include <rfb/rfbclient.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void quiet(const char *format, ...)
{
    (void)format;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: vnc-type SOCKET TEXT\n");
        return 2;
    }
    rfbClientLog = rfbClientErr = quiet; /* errors are reported below, once */
    rfbClient *c = rfbGetClient(8, 3, 4);
    if (!c)
        return 1;
    free(c->serverHost);
    c->serverHost = strdup(argv[1]); /* a socket path: libvncclient connects to it as unix */
    c->serverPort = 0;
    c->connectTimeout = 10;
    c->readTimeout = 10;
    int argc2 = 1;
    char *argv2[] = {argv[0], NULL};
    if (!rfbInitClient(c, &argc2, argv2)) { /* frees c on failure */
        fprintf(stderr, "vnc-type: cannot connect to %s\n", argv[1]);
        return 1;
    }
    int ok = 1;
    for (const char *p = argv[2]; *p && ok; p++) {
        rfbKeySym k = (unsigned char)*p;
        ok = SendKeyEvent(c, k, TRUE) && SendKeyEvent(c, k, FALSE);
    }
    ok = ok && SendKeyEvent(c, XK_Return, TRUE) && SendKeyEvent(c, XK_Return, FALSE);
    /* QEMU paces key events (key-delay-ms) and drops what is still queued
     * when the client goes: stay connected, serving the server's messages,
     * for about 30 ms per event before leaving. */
    int64_t stay_ms = 300 + 60 * (int64_t)(strlen(argv[2]) + 1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        int64_t left = stay_ms - ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0 || !ok)
            break;
        int r = WaitForMessage(c, (unsigned)(left * 1000));
        if (r < 0 || (r > 0 && !HandleRFBServerMessage(c)))
            break;
    }
    free(c->frameBuffer);
    c->frameBuffer = NULL;
    rfbClientCleanup(c);
    if (!ok)
        fprintf(stderr, "vnc-type: sending keys failed\n");
    return ok ? 0 : 1;
}
