/*
 * Fuzz target for the bytes displayd reads before a library takes over: the
 * HTTP CONNECT head of the SPICE proxy and the WebSocket upgrade head of the
 * VNC port (display/http.c).  Checks, beyond "no crash": a ticket is only
 * ever returned NUL-terminated, within the caller's size, and made of
 * [A-Za-z0-9]; a head length is never beyond the input.
 */
#include "disp-priv.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_ticket(int r, const char *t, size_t size)
{
    if (r != 0)
        return;
    size_t n = strnlen(t, size);
    if (n == 0 || n >= size ||
        strspn(t, "0123456789abcdefghijklmnopqrstuvwxyz"
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != n)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a copy of exactly @size bytes, so reads past the end are caught */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    int hl = disp_http_head_len(buf, size);
    if (hl > 0 && (size_t)hl > size)
        abort();
    size_t len = hl > 0 ? (size_t)hl : size;
    char t[DB_TICKET_LEN + 1], small[4];
    check_ticket(disp_http_connect_ticket(buf, len, t, sizeof(t)), t, sizeof(t));
    check_ticket(disp_http_connect_ticket(buf, len, small, sizeof(small)), small, sizeof(small));
    check_ticket(disp_http_ws_ticket(buf, len, t, sizeof(t)), t, sizeof(t));
    check_ticket(disp_http_ws_ticket(buf, len, small, sizeof(small)), small, sizeof(small));
    free(buf);
    return 0;
}
