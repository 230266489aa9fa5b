/*
 * Peek at an RDP client's X.224 Connection Request for the ticket (the only
 * bytes of RDP displayd reads itself; FreeRDP reads the same request again
 * once the socket is handed to it).  Layout, [MS-RDPBCGR] 2.2.1.1:
 *   TPKT   version=3, reserved, length (big-endian, whole packet)
 *   X.224  length indicator, CR code 0xE0, dst-ref(2), src-ref(2), class
 *   routingToken "Cookie: msts=<ticket>\r\n" or cookie "Cookie: mstshash=<user>\r\n"
 *   optional RDP_NEG_REQ
 * The routing token is the .rdp file's loadbalanceinfo, which mstsc and
 * FreeRDP send verbatim.  It must have the load-balancer form: FreeRDP 2's
 * own server (which reads the same request after us) accepts only
 * "Cookie: msts=" or "Cookie: mstshash=" there and fails on a bare token.
 * A cookie (or nothing) means a client without a ticket, which will log in
 * with a password.
 * Fuzzed by tests/fuzz/display/fuzz-x224.c.
 */
#include "disp-priv.h"

#include <errno.h>
#include <string.h>

#define TPKT_HEADER 4
#define X224_CR_HEADER 7

int disp_x224_ticket(const unsigned char *buf, size_t len, char *ret_ticket, size_t size)
{
    static const char lb_prefix[] = "Cookie: msts=";
    static const char cookie[] = "Cookie: mstshash=";
    if (len < TPKT_HEADER)
        return len > 0 && buf[0] != 3 ? -EBADMSG : -EAGAIN;
    if (buf[0] != 3)
        return -EBADMSG;
    size_t total = (size_t)buf[2] << 8 | buf[3];
    if (total < TPKT_HEADER + X224_CR_HEADER)
        return -EBADMSG;
    if (len < total)
        return -EAGAIN;
    const unsigned char *x = buf + TPKT_HEADER;
    /* length indicator counts the bytes after itself, within the TPKT */
    if ((size_t)x[0] + 1 != total - TPKT_HEADER || (x[1] & 0xF0) != 0xE0)
        return -EBADMSG;
    const unsigned char *p = x + X224_CR_HEADER;
    size_t avail = total - TPKT_HEADER - X224_CR_HEADER;
    /* no token (at most an RDP_NEG_REQ follows) or a cookie: a password log-in */
    if (avail == 0 || p[0] == 0x01 ||
        (avail >= sizeof(cookie) - 1 && memcmp(p, cookie, sizeof(cookie) - 1) == 0))
        return -ENOENT;
    if (avail < sizeof(lb_prefix) - 1 || memcmp(p, lb_prefix, sizeof(lb_prefix) - 1) != 0)
        return -EBADMSG;
    p += sizeof(lb_prefix) - 1;
    avail -= sizeof(lb_prefix) - 1;
    size_t n = 0;
    while (n < avail && ((p[n] >= '0' && p[n] <= '9') || (p[n] >= 'a' && p[n] <= 'z') ||
                         (p[n] >= 'A' && p[n] <= 'Z')))
        n++;
    if (n == 0 || n + 2 > avail || p[n] != '\r' || p[n + 1] != '\n')
        return -EBADMSG;
    if (n >= size)
        return -ENAMETOOLONG;
    memcpy(ret_ticket, p, n);
    ret_ticket[n] = '\0';
    return 0;
}
