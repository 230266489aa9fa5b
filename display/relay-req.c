/*
 * The one line a relay client sends after TLS (see relay.c):
 * "ATRIUM-RELAY 1 <32 lower-case hex digits>\n".  Nothing else is accepted.
 * Fuzzed in tests/fuzz/display/fuzz-relay.c.
 */
#include "disp-priv.h"

#include <errno.h>
#include <string.h>

#define RELAY_MAGIC "ATRIUM-RELAY 1 "

int disp_relay_request_ticket(const char *buf, size_t len, char *ret_ticket, size_t size)
{
    const size_t magic = sizeof(RELAY_MAGIC) - 1, want = magic + DISP_RELAY_TICKET_LEN + 1;
    size_t n = len < want ? len : want;
    /* a prefix of a valid line is incomplete; anything else is refused now */
    for (size_t i = 0; i < n; i++) {
        char c = buf[i];
        bool good = i < magic                            ? c == RELAY_MAGIC[i]
                    : i < magic + DISP_RELAY_TICKET_LEN ? (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
                                                         : c == '\n';
        if (!good)
            return -EBADMSG;
    }
    if (len < want)
        return 0;
    if (size < DISP_RELAY_TICKET_LEN + 1)
        return -ENAMETOOLONG;
    memcpy(ret_ticket, buf + magic, DISP_RELAY_TICKET_LEN);
    ret_ticket[DISP_RELAY_TICKET_LEN] = '\0';
    return (int)want;
}
