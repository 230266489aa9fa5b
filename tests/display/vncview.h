/*
 * The libvncclient viewer set-up the test viewers share (tests/display
 * vnc-hold, tests/multihost vnc-watch): connect with a one-time VNC
 * password, raw encoding, shared session, libvncclient's own logging off.
 */
#pragma once

#include <rfb/rfbclient.h>
#include <stdbool.h>
#include <stdint.h>

/* Connected client, or NULL (then "refused" has been printed).  @password
 * must outlive the connection; @prog is argv[0]. */
rfbClient *vv_connect(char *prog, const char *host, const char *port, const char *password,
                      FinishedFrameBufferUpdateProc finished);

int64_t vv_now_ms(int clock);
/* Pixels of the picture that are not black. */
long vv_lit_pixels(const rfbClient *c);
/* The picture as binary PPM (P6); 0 or -1. */
int vv_write_ppm(const rfbClient *c, const char *path);
/* Type @word (lower-case letters and digits) and Enter. */
bool vv_type(rfbClient *c, const char *word);
