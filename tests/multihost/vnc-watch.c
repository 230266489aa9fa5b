/*
 * vnc-watch HOST PORT PASSWORD LOG: a VNC viewer (libvncclient) that stays
 * connected and records when each framebuffer update arrives, for the test
 * of consoles that follow a migrating VM.
 *
 * Connects with a one-time VNC password, waits (at most 60 s) until the
 * picture shows something, prints "ready", and from then on appends one line
 * per complete framebuffer update to LOG: "<unix time in ms> <changed
 * pixels>".  Commands on stdin, one per line:
 *   type WORD   send WORD (lower-case letters and digits) and Enter; prints "typed"
 *   ppm FILE    write the current picture as PPM; prints "wrote"
 *   quit        exit 0
 * Exit 0 on quit or end of stdin, 3 when the server closed the connection
 * ("closed"), 1 when it could not connect or never saw a picture, 4 after
 * 900 s.
 */
#include <poll.h>
#include <rfb/rfbclient.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *password;
static FILE *log_file;
static uint32_t *shadow; /* the picture at the last update, to count changes */

static char *get_password(rfbClient *c)
{
    (void)c;
    return strdup(password); /* libvncclient frees it */
}

static void quiet(const char *format, ...)
{
    (void)format;
}

static int64_t now_ms(int clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
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

static void finished(rfbClient *c)
{
    size_t n = (size_t)c->width * c->height;
    const uint32_t *px = (const uint32_t *)c->frameBuffer;
    long changed = 0;
    if (!log_file)
        return;
    if (!shadow && !(shadow = calloc(n, sizeof(*shadow))))
        return;
    for (size_t i = 0; i < n; i++)
        if (shadow[i] != px[i]) {
            changed++;
            shadow[i] = px[i];
        }
    fprintf(log_file, "%lld %ld\n", (long long)now_ms(CLOCK_REALTIME), changed);
    fflush(log_file);
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

/* Everything the server sent; false when the connection ended. */
static bool drain(rfbClient *c)
{
    do {
        if (!HandleRFBServerMessage(c))
            return false;
    } while (c->buffered > 0);
    return true;
}

static bool type_word(rfbClient *c, const char *w)
{
    bool ok = true;
    for (const char *p = w; *p && ok; p++)
        ok = SendKeyEvent(c, (unsigned char)*p, TRUE) && SendKeyEvent(c, (unsigned char)*p, FALSE);
    return ok && SendKeyEvent(c, XK_Return, TRUE) && SendKeyEvent(c, XK_Return, FALSE);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: vnc-watch HOST PORT PASSWORD LOG\n");
        return 2;
    }
    password = argv[3];
    rfbClientLog = rfbClientErr = quiet;
    rfbClient *c = rfbGetClient(8, 3, 4);
    if (!c)
        return 1;
    c->GetPassword = get_password;
    c->FinishedFrameBufferUpdate = finished;
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
    int64_t end = now_ms(CLOCK_MONOTONIC) + 60000;
    while (lit_pixels(c) == 0 && now_ms(CLOCK_MONOTONIC) < end) {
        int r = WaitForMessage(c, 200000);
        if (r < 0 || (r > 0 && !drain(c))) {
            printf("closed before a picture\n");
            rfbClientCleanup(c);
            return 1;
        }
    }
    if (lit_pixels(c) == 0) {
        printf("no picture\n");
        rfbClientCleanup(c);
        return 1;
    }
    if (!(log_file = fopen(argv[4], "a"))) {
        perror(argv[4]);
        rfbClientCleanup(c);
        return 1;
    }
    printf("ready\n");
    fflush(stdout);

    int rc = 4;
    char line[512];
    size_t have = 0;
    bool in_open = true;
    end = now_ms(CLOCK_MONOTONIC) + 900000;
    while (now_ms(CLOCK_MONOTONIC) < end) {
        struct pollfd p[2] = {{.fd = c->sock, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
        if (poll(p, in_open ? 2 : 1, c->buffered > 0 ? 0 : 1000) < 0)
            continue;
        if ((p[0].revents || c->buffered > 0) && !drain(c)) {
            printf("closed\n");
            rc = 3;
            break;
        }
        if (!in_open || !p[1].revents)
            continue;
        ssize_t n = read(0, line + have, sizeof(line) - 1 - have);
        if (n <= 0) {
            rc = 0;
            break;
        }
        have += (size_t)n;
        line[have] = '\0';
        char *nl;
        bool quit = false;
        while ((nl = strchr(line, '\n'))) {
            *nl = '\0';
            if (strncmp(line, "type ", 5) == 0)
                printf(type_word(c, line + 5) ? "typed\n" : "type failed\n");
            else if (strncmp(line, "ppm ", 4) == 0)
                printf(write_ppm(c, line + 4) == 0 ? "wrote\n" : "write failed\n");
            else if (strcmp(line, "quit") == 0)
                quit = true;
            fflush(stdout);
            memmove(line, nl + 1, strlen(nl + 1) + 1);
            have = strlen(line);
        }
        if (quit) {
            rc = 0;
            break;
        }
        if (have == sizeof(line) - 1)
            have = 0; /* an overlong line is dropped */
    }
    fclose(log_file);
    free(shadow);
    free(c->frameBuffer); /* libvncclient's default allocation, not freed by its cleanup */
    rfbClientCleanup(c);
    return rc;
}
