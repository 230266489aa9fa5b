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
#include "vncview.h"

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static FILE *log_file;
static uint32_t *shadow; /* the picture at the last update, to count changes */

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
    fprintf(log_file, "%lld %ld\n", (long long)vv_now_ms(CLOCK_REALTIME), changed);
    fflush(log_file);
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

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: vnc-watch HOST PORT PASSWORD LOG\n");
        return 2;
    }
    rfbClient *c = vv_connect(argv[0], argv[1], argv[2], argv[3], finished);
    if (!c)
        return 1;
    int64_t end = vv_now_ms(CLOCK_MONOTONIC) + 60000;
    while (vv_lit_pixels(c) == 0 && vv_now_ms(CLOCK_MONOTONIC) < end) {
        int r = WaitForMessage(c, 200000);
        if (r < 0 || (r > 0 && !drain(c))) {
            printf("closed before a picture\n");
            rfbClientCleanup(c);
            return 1;
        }
    }
    if (vv_lit_pixels(c) == 0) {
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
    end = vv_now_ms(CLOCK_MONOTONIC) + 900000;
    while (vv_now_ms(CLOCK_MONOTONIC) < end) {
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
                printf(vv_type(c, line + 5) ? "typed\n" : "type failed\n");
            else if (strncmp(line, "ppm ", 4) == 0)
                printf(vv_write_ppm(c, line + 4) == 0 ? "wrote\n" : "write failed\n");
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
