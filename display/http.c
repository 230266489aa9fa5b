/*
 * The few bytes displayd reads itself before a library takes over: the head
 * of an HTTP CONNECT request (SPICE proxy) and of a WebSocket upgrade
 * (noVNC), only to find the ticket in them.  Everything after that is
 * libvncserver's (WebSocket handshake, RFB) or SPICE's (relayed as is).
 * Deliberately strict: one request line, ticket characters [A-Za-z0-9] only,
 * bounded lengths.  Fuzzed by tests/fuzz/display/fuzz-http.c.
 */
#include "disp-priv.h"

#include <errno.h>
#include <string.h>

int disp_http_head_len(const char *buf, size_t len)
{
    size_t n = len < DISP_HTTP_HEAD_MAX ? len : DISP_HTTP_HEAD_MAX;
    for (size_t i = 3; i < n; i++)
        if (buf[i - 3] == '\r' && buf[i - 2] == '\n' && buf[i - 1] == '\r' && buf[i] == '\n')
            return (int)(i + 1);
    return len >= DISP_HTTP_HEAD_MAX ? -EMSGSIZE : 0;
}

static bool ticket_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Copy the run of ticket characters at @p (at most @avail bytes) into @out. */
static int take_ticket(const char *p, size_t avail, char *out, size_t size, size_t *ret_used)
{
    size_t n = 0;
    while (n < avail && ticket_char(p[n]))
        n++;
    if (n == 0)
        return -EBADMSG;
    if (n >= size)
        return -ENAMETOOLONG;
    memcpy(out, p, n);
    out[n] = '\0';
    *ret_used = n;
    return 0;
}

/* Length of the request line (up to, not including, CRLF); -EBADMSG if none. */
static int request_line(const char *head, size_t len, size_t *ret_n)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (head[i] == '\r' && head[i + 1] == '\n') {
            *ret_n = i;
            return 0;
        }
        if (head[i] == '\0' || head[i] == '\n')
            return -EBADMSG;
    }
    return -EBADMSG;
}

/* Does the line end with " HTTP/1.0" or " HTTP/1.1" right at @p? */
static bool http_version_at(const char *p, size_t avail)
{
    return avail == 9 && (memcmp(p, " HTTP/1.1", 9) == 0 || memcmp(p, " HTTP/1.0", 9) == 0);
}

int disp_http_connect_ticket(const char *head, size_t len, char *ret_ticket, size_t size)
{
    static const char verb[] = "CONNECT ";
    char ticket[128];
    size_t line, used;
    int r = request_line(head, len, &line);
    if (r < 0)
        return r;
    if (line < sizeof(verb) - 1 || memcmp(head, verb, sizeof(verb) - 1) != 0)
        return -EBADMSG;
    const char *p = head + sizeof(verb) - 1;
    const char *end = head + line;
    r = take_ticket(p, (size_t)(end - p), ticket, sizeof(ticket), &used);
    if (r < 0)
        return r;
    p += used;
    /* ":port", 1..5 digits */
    if (p >= end || *p != ':')
        return -EBADMSG;
    p++;
    size_t digits = 0;
    while (p + digits < end && digits < 6 && p[digits] >= '0' && p[digits] <= '9')
        digits++;
    if (digits == 0 || digits > 5)
        return -EBADMSG;
    p += digits;
    if (!http_version_at(p, (size_t)(end - p)))
        return -EBADMSG;
    if (strlen(ticket) >= size)
        return -ENAMETOOLONG;
    memcpy(ret_ticket, ticket, strlen(ticket) + 1);
    return 0;
}

int disp_http_ws_ticket(const char *head, size_t len, char *ret_ticket, size_t size)
{
    static const char verb[] = "GET /";
    static const char key[] = "ticket=";
    char ticket[128];
    size_t line, used;
    int r = request_line(head, len, &line);
    if (r < 0)
        return r;
    if (line < sizeof(verb) - 1 || memcmp(head, verb, sizeof(verb) - 1) != 0)
        return -EBADMSG;
    /* the target runs up to the first space */
    const char *target = head + 4;
    const char *end = head + line;
    const char *sp = memchr(target, ' ', (size_t)(end - target));
    if (!sp || !http_version_at(sp, (size_t)(end - sp)))
        return -EBADMSG;
    const char *q = memchr(target, '?', (size_t)(sp - target));
    if (!q)
        return -EBADMSG;
    /* query parameters separated by '&'; the first "ticket=" wins */
    for (const char *p = q + 1; p < sp;) {
        const char *amp = memchr(p, '&', (size_t)(sp - p));
        const char *stop = amp ? amp : sp;
        if ((size_t)(stop - p) > sizeof(key) - 1 && memcmp(p, key, sizeof(key) - 1) == 0) {
            const char *v = p + sizeof(key) - 1;
            r = take_ticket(v, (size_t)(stop - v), ticket, sizeof(ticket), &used);
            if (r < 0)
                return r;
            if (v + used != stop)
                return -EBADMSG;
            if (used >= size)
                return -ENAMETOOLONG;
            memcpy(ret_ticket, ticket, used + 1);
            return 0;
        }
        p = amp ? amp + 1 : sp;
    }
    return -EBADMSG;
}
