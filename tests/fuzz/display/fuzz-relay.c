/*
 * Fuzz target for display/relay-req.c: the one line a relay client sends
 * after TLS.  Beyond "no crash": a ticket is returned only with a length
 * within the input, NUL-terminated, exactly 32 lower-case hex digits; a
 * too-small buffer is never written past.
 */
#include "disp-priv.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    char t[DISP_RELAY_TICKET_LEN + 1], small[8];
    int r = disp_relay_request_ticket(buf, size, t, sizeof(t));
    if (r > 0 && ((size_t)r > size || strlen(t) != DISP_RELAY_TICKET_LEN ||
                  strspn(t, "0123456789abcdef") != DISP_RELAY_TICKET_LEN))
        abort();
    r = disp_relay_request_ticket(buf, size, small, sizeof(small));
    if (r > 0)
        abort(); /* 8 bytes cannot hold a ticket: must be -ENAMETOOLONG */
    free(buf);
    return 0;
}
