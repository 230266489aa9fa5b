/* See vncview.h. */
#include "vncview.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *vv_password;

static char *get_password(rfbClient *c)
{
    (void)c;
    return strdup(vv_password); /* libvncclient frees it */
}

static void quiet(const char *format, ...)
{
    (void)format;
}

rfbClient *vv_connect(char *prog, const char *host, const char *port, const char *password,
                      FinishedFrameBufferUpdateProc finished)
{
    vv_password = password;
    rfbClientLog = rfbClientErr = quiet;
    rfbClient *c = rfbGetClient(8, 3, 4);
    if (!c)
        return NULL;
    c->GetPassword = get_password;
    c->FinishedFrameBufferUpdate = finished;
    free(c->serverHost);
    c->serverHost = strdup(host);
    c->serverPort = atoi(port);
    c->connectTimeout = 20;
    c->appData.encodingsString = "raw";
    c->appData.shareDesktop = TRUE;
    int argc = 1;
    char *argv[] = {prog, NULL};
    if (!rfbInitClient(c, &argc, argv)) { /* frees c on failure */
        printf("refused\n");
        return NULL;
    }
    return c;
}

int64_t vv_now_ms(int clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

long vv_lit_pixels(const rfbClient *c)
{
    long n = 0;
    const uint32_t *px = (const uint32_t *)c->frameBuffer;
    for (long i = 0; i < (long)c->width * c->height; i++)
        n += (px[i] & 0x00ffffffu) != 0;
    return n;
}

int vv_write_ppm(const rfbClient *c, const char *path)
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

bool vv_type(rfbClient *c, const char *word)
{
    bool ok = true;
    for (const char *p = word; *p && ok; p++)
        ok = SendKeyEvent(c, (unsigned char)*p, TRUE) && SendKeyEvent(c, (unsigned char)*p, FALSE);
    return ok && SendKeyEvent(c, XK_Return, TRUE) && SendKeyEvent(c, XK_Return, FALSE);
}
