/* Specification of the few request bytes displayd reads itself (display/http.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "disp-priv.h"

#include <errno.h>
#include <string.h>

#define T32 "0123456789abcdef0123456789abcdef"

static int connect_ticket(const char *head, char *t, size_t size)
{
    return disp_http_connect_ticket(head, strlen(head), t, size);
}

static int ws_ticket(const char *head, char *t, size_t size)
{
    return disp_http_ws_ticket(head, strlen(head), t, size);
}

static void test_head_ends_at_the_blank_line_and_is_bounded(void **state)
{
    (void)state;
    const char *h = "CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\nSPICE-bytes";
    assert_int_equal(disp_http_head_len(h, strlen(h)), (int)(strlen(h) - strlen("SPICE-bytes")));
    assert_int_equal(disp_http_head_len(h, 20), 0);
    static char big[DISP_HTTP_HEAD_MAX + 10];
    memset(big, 'x', sizeof(big));
    assert_int_equal(disp_http_head_len(big, sizeof(big)), -EMSGSIZE);
}

static void test_connect_names_the_ticket_as_its_host(void **state)
{
    (void)state;
    char t[DB_TICKET_LEN + 1];
    assert_int_equal(
        connect_ticket("CONNECT " T32 ":5900 HTTP/1.1\r\nHost: x\r\n\r\n", t, sizeof(t)), 0);
    assert_string_equal(t, T32);
    assert_int_equal(connect_ticket("CONNECT " T32 ":1 HTTP/1.0\r\n\r\n", t, sizeof(t)), 0);
}

static void test_connect_anything_else_is_refused(void **state)
{
    (void)state;
    char t[DB_TICKET_LEN + 1] = "untouched";
    const char *bad[] = {
        "GET " T32 ":5900 HTTP/1.1\r\n\r\n",       /* not CONNECT */
        "CONNECT " T32 " HTTP/1.1\r\n\r\n",        /* no port */
        "CONNECT " T32 ":123456 HTTP/1.1\r\n\r\n", /* port too long */
        "CONNECT " T32 ":5900 HTTP/2\r\n\r\n",     /* unknown version */
        "CONNECT " T32 ":5900 HTTP/1.1 x\r\n\r\n", /* trailing junk */
        "CONNECT ab.cd:5900 HTTP/1.1\r\n\r\n",     /* a real host name */
        "CONNECT :5900 HTTP/1.1\r\n\r\n",          /* empty */
        "CONNECT " T32 ":5900 HTTP/1.1\n\n",       /* bare LF */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(connect_ticket(bad[i], t, sizeof(t)), -EBADMSG);
    assert_string_equal(t, "untouched");
    assert_int_equal(connect_ticket("CONNECT " T32 "0:5900 HTTP/1.1\r\n\r\n", t, sizeof(t)),
                     -ENAMETOOLONG);
}

static void test_websocket_ticket_comes_from_the_query(void **state)
{
    (void)state;
    char t[DB_TICKET_LEN + 1];
    assert_int_equal(ws_ticket("GET /websockify?ticket=" T32 " HTTP/1.1\r\n\r\n", t, sizeof(t)), 0);
    assert_string_equal(t, T32);
    assert_int_equal(ws_ticket("GET /?a=1&ticket=" T32 "&b=2 HTTP/1.1\r\n\r\n", t, sizeof(t)), 0);
    assert_string_equal(t, T32);
    assert_int_equal(ws_ticket("GET /websockify HTTP/1.1\r\n\r\n", t, sizeof(t)), -EBADMSG);
    assert_int_equal(ws_ticket("GET /?ticket= HTTP/1.1\r\n\r\n", t, sizeof(t)), -EBADMSG);
    assert_int_equal(ws_ticket("GET /?ticket=ab%20cd HTTP/1.1\r\n\r\n", t, sizeof(t)), -EBADMSG);
    assert_int_equal(ws_ticket("GET /?xticket=" T32 " HTTP/1.1\r\n\r\n", t, sizeof(t)), -EBADMSG);
    assert_int_equal(ws_ticket("POST /?ticket=" T32 " HTTP/1.1\r\n\r\n", t, sizeof(t)), -EBADMSG);
    assert_int_equal(ws_ticket("GET /?ticket=" T32 "0 HTTP/1.1\r\n\r\n", t, sizeof(t)),
                     -ENAMETOOLONG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_ends_at_the_blank_line_and_is_bounded),
        cmocka_unit_test(test_connect_names_the_ticket_as_its_host),
        cmocka_unit_test(test_connect_anything_else_is_refused),
        cmocka_unit_test(test_websocket_ticket_comes_from_the_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
