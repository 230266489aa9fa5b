/* Specification of the RDP Connection Request peek (display/x224.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "disp-priv.h"

#include <errno.h>
#include <string.h>

#define T32 "0123456789abcdef0123456789abcdef"

/* A TPKT + X.224 CR carrying @payload, as xfreerdp and mstsc send it. */
static size_t build_cr(unsigned char *out, const char *payload)
{
    size_t pl = strlen(payload), body = 1 + 6 + pl, total = 4 + body;
    out[0] = 3, out[1] = 0, out[2] = (unsigned char)(total >> 8), out[3] = (unsigned char)total;
    out[4] = (unsigned char)(6 + pl);
    memcpy(out + 5, "\xE0\0\0\0\0\0", 6);
    memcpy(out + 11, payload, pl);
    return total;
}

static void test_routing_token_carries_the_ticket(void **state)
{
    (void)state;
    unsigned char b[256];
    char t[DB_TICKET_LEN + 1];
    size_t n = build_cr(b, "Cookie: msts=" T32 "\r\n\x01\x00\x08\x00\x03\x00\x00\x00");
    assert_int_equal(disp_x224_ticket(b, n, t, sizeof(t)), 0);
    assert_string_equal(t, T32);
    /* a bare token would make FreeRDP's own parser fail later: refused here */
    n = build_cr(b, T32 "\r\n\x01\x00\x08\x00\x03\x00\x00\x00");
    assert_int_equal(disp_x224_ticket(b, n, t, sizeof(t)), -EBADMSG);
}

static void test_incomplete_request_asks_for_more(void **state)
{
    (void)state;
    unsigned char b[256];
    char t[DB_TICKET_LEN + 1];
    size_t n = build_cr(b, "Cookie: msts=" T32 "\r\n");
    assert_int_equal(disp_x224_ticket(b, 0, t, sizeof(t)), -EAGAIN);
    assert_int_equal(disp_x224_ticket(b, 3, t, sizeof(t)), -EAGAIN);
    assert_int_equal(disp_x224_ticket(b, n - 1, t, sizeof(t)), -EAGAIN);
}

static void test_anything_but_a_ticket_is_refused(void **state)
{
    (void)state;
    unsigned char b[256];
    char t[DB_TICKET_LEN + 1];
    /* a plain client: no ticket, it will log in with a password */
    size_t n = build_cr(b, "Cookie: mstshash=alice\r\n");
    assert_int_equal(disp_x224_ticket(b, n, t, sizeof(t)), -ENOENT);
    n = build_cr(b, "");
    assert_int_equal(disp_x224_ticket(b, n, t, sizeof(t)), -ENOENT);
    n = build_cr(b, "\x01\x00\x08\x00\x03\x00\x00\x00"); /* only RDP_NEG_REQ */
    assert_int_equal(disp_x224_ticket(b, n, t, sizeof(t)), -ENOENT);
    n = build_cr(b, "tsv://MS Terminal Services Plugin.1.x\r\n"); /* someone else's token */
    assert_int_equal(disp_x224_ticket(b, n, t, sizeof(t)), -EBADMSG);
    n = build_cr(b, "Cookie: msts=" T32); /* no CRLF */
    assert_int_equal(disp_x224_ticket(b, n, t, sizeof(t)), -EBADMSG);
    n = build_cr(b, "Cookie: msts=ab-cd\r\n"); /* bad character */
    assert_int_equal(disp_x224_ticket(b, n, t, sizeof(t)), -EBADMSG);
    n = build_cr(b, "Cookie: msts=" T32 "\r\n");
    b[5] = 0xD0; /* not a CR */
    assert_int_equal(disp_x224_ticket(b, n, t, sizeof(t)), -EBADMSG);
    const unsigned char tls[] = {0x16, 0x03, 0x01, 0x00, 0x10};
    assert_int_equal(disp_x224_ticket(tls, sizeof(tls), t, sizeof(t)), -EBADMSG);
    n = build_cr(b, "Cookie: msts=" T32 "0\r\n");
    assert_int_equal(disp_x224_ticket(b, n, t, sizeof(t)), -ENAMETOOLONG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routing_token_carries_the_ticket),
        cmocka_unit_test(test_incomplete_request_asks_for_more),
        cmocka_unit_test(test_anything_but_a_ticket_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
