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
#include <rfb/rfbclient.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *password;

static char *get_password(rfbClient *c)
{
    (void)c;
    return strdup(password); /* libvncclient frees it */
}

static void quiet(const char *format, ...)
{
    (void)format;
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static long lit_pixels(const rfbClient *c)
{
    long n = 0;
    const uint32_t *px = (const uint32_t *)c->frameBuffer;
    for (long i = 0; i < (long)c->width * c->height; i++)
        n += (px[i] & 0x00ffffffu) != 0;
    return n;
}

static int write_ppm(const rfbClient *c, const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    fprintf(f, "P6\n%d %d\n255\n", c->width, c->height);
    const uint32_t *px = (const uint32_t *)c->frameBuffer;
    for (long i = 0; i < (long)c->width * c->height; i++) {
        uint32_t p = px[i];
        unsigned char rgb[3] = {(unsigned char)(p >> c->format.redShift),
                                (unsigned char)(p >> c->format.greenShift),
                                (unsigned char)(p >> c->format.blueShift)};
        fwrite(rgb, 1, 3, f);
    }
    return fclose(f);
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
    password = argv[3];
    const char *text = argc > 4 ? argv[4] : "";
    rfbClientLog = rfbClientErr = quiet;
    rfbClient *c = rfbGetClient(8, 3, 4);
    if (!c)
        return 1;
    c->GetPassword = get_password;
    free(c->serverHost);
    c->serverHost = strdup(argv[1]);
    c->serverPort = atoi(argv[2]);
    c->connectTimeout = 20;
    c->appData.encodingsString = "raw";
    c->appData.shareDesktop = TRUE;
    int argc2 = 1;
    char *argv2[] = {argv[0], NULL};
    if (!rfbInitClient(c, &argc2, argv2)) { /* frees c on failure */
        printf("refused\n");
        return 1;
    }
    long lit = 0;
    for (int64_t end = now_ms() + 30000; (lit = lit_pixels(c)) == 0 && now_ms() < end;)
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
    printf("ready lit=%ld size=%dx%d\n", lit_pixels(c), c->width, c->height);
    fflush(stdout);
    if (argc > 5 && write_ppm(c, argv[5]) < 0) {
        perror(argv[5]);
        rfbClientCleanup(c);
        return 1;
    }
    if (*text) {
        bool ok = true;
        for (const char *p = text; *p && ok; p++)
            ok = SendKeyEvent(c, (unsigned char)*p, TRUE) &&
                 SendKeyEvent(c, (unsigned char)*p, FALSE);
        ok = ok && SendKeyEvent(c, XK_Return, TRUE) && SendKeyEvent(c, XK_Return, FALSE);
        printf(ok ? "typed\n" : "type failed\n");
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
