/*
 * The broker's input glue as a specification: which paths reach which
 * route, which bodies, pages, filters and Host headers are accepted, what
 * connection files and tokens look like.  Pure functions, no server.
 */
#include "broker-priv.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---------------------------------------------------------------- routes */

static const struct brk_route *match(const char *method, const char *path, int64_t *ret_id,
                                     bool *ret_known)
{
    int64_t ids[BRK_MAX_PATH_IDS] = {0};
    size_t n = 0;
    bool known = false;
    const struct brk_route *r = brk_route_match(method, path, ids, &n, &known);
    if (ret_id)
        *ret_id = n ? ids[0] : 0;
    if (ret_known)
        *ret_known = known;
    return r;
}

static void test_id_segments_match_only_positive_decimal_ids(void **state)
{
    (void)state;
    int64_t id;
    const struct brk_route *r = match("GET", "/api/v1/tasks/42", &id, NULL);
    assert_non_null(r);
    assert_string_equal(r->pattern, "/api/v1/tasks/{id}");
    assert_int_equal(id, 42);
    assert_null(match("GET", "/api/v1/tasks/0", NULL, NULL));
    assert_null(match("GET", "/api/v1/tasks/007", NULL, NULL));
    assert_null(match("GET", "/api/v1/tasks/-1", NULL, NULL));
    assert_null(match("GET", "/api/v1/tasks/1a", NULL, NULL));
    assert_null(match("GET", "/api/v1/tasks/1%20", NULL, NULL));
    assert_null(match("GET", "/api/v1/tasks/1234567890123456789", NULL, NULL));
    assert_non_null(match("GET", "/api/v1/tasks/123456789012345678", NULL, NULL));
}

static void test_paths_match_exactly(void **state)
{
    (void)state;
    assert_non_null(match("GET", "/api/v1/me", NULL, NULL));
    assert_null(match("GET", "/api/v1/me/", NULL, NULL));
    assert_null(match("GET", "//api/v1/me", NULL, NULL));
    assert_null(match("GET", "/api/v1/ME", NULL, NULL));
    assert_null(match("GET", "/api/v1/me/../users", NULL, NULL));
    assert_null(match("GET", "", NULL, NULL));
}

static void test_wrong_method_on_a_known_path_is_told_apart(void **state)
{
    (void)state;
    bool known = false;
    assert_null(match("DELETE", "/healthz", NULL, &known));
    assert_true(known); /* 405 */
    assert_null(match("GET", "/nope", NULL, &known));
    assert_false(known); /* 404 */
    const struct brk_route *r = match("HEAD", "/api/v1/me", NULL, NULL);
    assert_non_null(r); /* HEAD is answered like GET */
    assert_string_equal(r->method, "GET");
    assert_null(match("HEAD", "/api/v1/login", NULL, &known));
}

static void test_every_route_is_unique(void **state)
{
    (void)state;
    size_t n = brk_routes_count();
    assert_true(n > 0);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            assert_false(strcmp(brk_routes[i].method, brk_routes[j].method) == 0 &&
                         strcmp(brk_routes[i].pattern, brk_routes[j].pattern) == 0);
    assert_true(brk_metrics_routes_fit());
}

/* ------------------------------------------------------------------ body */

static void test_body_must_be_one_json_object(void **state)
{
    (void)state;
    char why[200];
    json_t *v = NULL;
    static const char *const bad[] = {
        "",
        "[1]",
        "\"s\"",
        "{\"a\":1,\"a\":2}",
        "{\"a\":\"\\u0000\"}",
        "{\"a\":1} {\"b\":2}",
        "{\"a\":\"\xff\"}",
        "{\"a\":",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(brk_body_parse(bad[i], strlen(bad[i]), &v, why, sizeof(why)), -EINVAL);
        assert_true(why[0] != '\0');
    }
    const char ok[] = "{\"username\":\"x\",\"n\":[1,2,{}]}";
    assert_int_equal(brk_body_parse(ok, strlen(ok), &v, why, sizeof(why)), 0);
    assert_true(json_is_object(v));
    json_decref(v);
}

static int login_of(const char *text, struct brk_login_input *in, json_t **keep)
{
    char why[200];
    json_t *v = NULL;
    if (brk_body_parse(text, strlen(text), &v, why, sizeof(why)) < 0)
        return -EBADMSG;
    int r = brk_login_input_parse(v, in, why, sizeof(why));
    *keep = v;
    return r;
}

static void test_login_body_takes_username_password_and_totp_only(void **state)
{
    (void)state;
    struct brk_login_input in;
    json_t *v = NULL;
    assert_int_equal(login_of("{\"username\":\"alice\",\"password\":\"pw\"}", &in, &v), 0);
    assert_string_equal(in.username, "alice");
    assert_null(in.totp);
    json_decref(v);
    assert_int_equal(
        login_of("{\"username\":\"a.b@c-d\",\"password\":\"pw\",\"totp\":\"123456\"}", &in, &v), 0);
    assert_string_equal(in.totp, "123456");
    json_decref(v);
    assert_int_equal(
        login_of("{\"username\":\"alice\",\"password\":\"pw\",\"totp\":\"\"}", &in, &v), 0);
    assert_null(in.totp); /* an empty code is no code */
    json_decref(v);

    static const char *const bad[] = {
        "{\"username\":\"alice\"}",
        "{\"password\":\"pw\"}",
        "{\"username\":\"alice\",\"password\":\"\"}",
        "{\"username\":\"\",\"password\":\"pw\"}",
        "{\"username\":\".alice\",\"password\":\"pw\"}",
        "{\"username\":\"al ice\",\"password\":\"pw\"}",
        "{\"username\":\"alice' OR 1=1\",\"password\":\"pw\"}",
        "{\"username\":\"ali\xc3\xa7"
        "e\",\"password\":\"pw\"}",
        "{\"username\":1,\"password\":\"pw\"}",
        "{\"username\":\"alice\",\"password\":\"pw\",\"role\":\"admin\"}",
        "{\"username\":\"alice\",\"password\":\"pw\",\"totp\":7}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = NULL;
        assert_int_equal(login_of(bad[i], &in, &v), -EINVAL);
        json_decref(v);
    }
    char *big = malloc(AUTH_PASSWORD_MAX + 64);
    assert_non_null(big);
    int n = sprintf(big, "{\"username\":\"a\",\"password\":\"");
    memset(big + n, 'p', AUTH_PASSWORD_MAX + 1);
    strcpy(big + n + AUTH_PASSWORD_MAX + 1, "\"}");
    assert_int_equal(login_of(big, &in, &v), -EINVAL);
    json_decref(v);
    free(big);
}

/* ------------------------------------------------------- query values */

struct kv {
    const char *k, *v;
};

static const char *kv_get(void *userdata, const char *key)
{
    for (const struct kv *p = userdata; p->k; p++)
        if (strcmp(p->k, key) == 0)
            return p->v;
    return NULL;
}

static int page_of(const char *limit, const char *offset, struct db_page *page)
{
    struct kv kv[] = {{limit ? "limit" : "-", limit}, {offset ? "offset" : "-", offset}, {0}};
    struct brk_query q = {kv_get, kv};
    char why[200];
    return brk_page_parse(&q, page, why, sizeof(why));
}

static void test_paging_has_defaults_and_bounds(void **state)
{
    (void)state;
    struct db_page p;
    assert_int_equal(page_of(NULL, NULL, &p), 0);
    assert_int_equal(p.limit, BRK_LIMIT_DEFAULT);
    assert_int_equal(p.offset, 0);
    assert_int_equal(page_of("500", "10000000", &p), 0);
    assert_int_equal(p.limit, 500);
    assert_int_equal(p.offset, 10000000);
    static const char *const bad_limits[] = {"0",  "501", "-1",   "+5", " 5",
                                             "5 ", "1e3", "0x10", "",   "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad_limits) / sizeof(bad_limits[0]); i++)
        assert_int_equal(page_of(bad_limits[i], NULL, &p), -EINVAL);
    assert_int_equal(page_of(NULL, "-1", &p), -EINVAL);
    assert_int_equal(page_of(NULL, "10000001", &p), -EINVAL);
}

static void test_filters_reject_what_no_row_can_hold(void **state)
{
    (void)state;
    static const char *const states[] = {"queued", "running", NULL};
    char why[200], longv[BRK_FILTER_MAX + 2];
    memset(longv, 'k', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    struct kv kv[] = {{"state", "queued"}, {"bad", "running; DROP"},
                      {"ctl", "a\x01"},    {"empty", ""},
                      {"long", longv},     {"sql", "' OR 1=1 --"},
                      {"id", "12"},        {"zero", "0"},
                      {"neg", "-3"},       {0}};
    struct brk_query q = {kv_get, kv};
    const char *s;
    int64_t id;
    assert_int_equal(brk_filter_text(&q, "state", states, &s, why, sizeof(why)), 0);
    assert_string_equal(s, "queued");
    assert_int_equal(brk_filter_text(&q, "bad", states, &s, why, sizeof(why)), -EINVAL);
    assert_int_equal(brk_filter_text(&q, "ctl", NULL, &s, why, sizeof(why)), -EINVAL);
    assert_int_equal(brk_filter_text(&q, "empty", NULL, &s, why, sizeof(why)), -EINVAL);
    assert_int_equal(brk_filter_text(&q, "long", NULL, &s, why, sizeof(why)), -EINVAL);
    /* free text goes to the database as a parameter: it is a value, not SQL */
    assert_int_equal(brk_filter_text(&q, "sql", NULL, &s, why, sizeof(why)), 0);
    assert_int_equal(brk_filter_text(&q, "absent", NULL, &s, why, sizeof(why)), 0);
    assert_null(s);
    assert_int_equal(brk_filter_id(&q, "id", &id, why, sizeof(why)), 0);
    assert_int_equal(id, 12);
    assert_int_equal(brk_filter_id(&q, "zero", &id, why, sizeof(why)), -EINVAL);
    assert_int_equal(brk_filter_id(&q, "neg", &id, why, sizeof(why)), -EINVAL);
    assert_int_equal(brk_filter_id(&q, "sql", &id, why, sizeof(why)), -EINVAL);
}

static int time_of(const char *v)
{
    struct kv kv[] = {{"t", v}, {0}};
    struct brk_query q = {kv_get, kv};
    const char *s;
    char why[200];
    return brk_filter_time(&q, "t", &s, why, sizeof(why));
}

static void test_time_filters_take_rfc3339_only(void **state)
{
    (void)state;
    static const char *const good[] = {"2026-11-25",
                                       "2026-11-25T12:00",
                                       "2026-11-25T12:00:59",
                                       "2026-11-25T12:00:59.123456Z",
                                       "2026-11-25 12:00:00+01",
                                       "2026-11-25T12:00:00-05:30"};
    static const char *const bad[] = {"now",
                                      "epoch",
                                      "infinity",
                                      "2026-11-25T",
                                      "2026-1-5",
                                      "2026-11-25T12:00:00.1234567",
                                      "2026-11-25Z ",
                                      "2026-11-25'; DROP TABLE audit_log; --",
                                      ""};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_int_equal(time_of(good[i]), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(time_of(bad[i]), -EINVAL);
}

/* ------------------------------------------------------ connection files */

static void test_gateway_host_is_a_plain_host_or_address(void **state)
{
    (void)state;
    char h[256];
    assert_int_equal(brk_gateway_host(NULL, "portal.example:8443", h, sizeof(h)), 0);
    assert_string_equal(h, "portal.example");
    assert_int_equal(brk_gateway_host(NULL, "192.0.2.7", h, sizeof(h)), 0);
    assert_string_equal(h, "192.0.2.7");
    assert_int_equal(brk_gateway_host(NULL, "[2001:db8::1]:8443", h, sizeof(h)), 0);
    assert_string_equal(h, "[2001:db8::1]");
    assert_int_equal(brk_gateway_host("vdi.example.org", "internal:8443", h, sizeof(h)), 0);
    assert_string_equal(h, "vdi.example.org"); /* the admin's public address wins */
    static const char *const bad[] = {
        "",          "evil.example/x", "a b",    "x\r\nproxy=http://evil",
        "user@host", "-host",          "host:",  "host:80x",
        "[::1",      "[zz::1]",        "[::1]x", NULL};
    for (size_t i = 0; bad[i]; i++)
        assert_int_equal(brk_gateway_host(NULL, bad[i], h, sizeof(h)), -EINVAL);
    assert_int_equal(brk_gateway_host(NULL, NULL, h, sizeof(h)), -EINVAL);
}

static void test_connection_files_name_gateway_and_ticket(void **state)
{
    (void)state;
    struct brk_conn_target t = {"portal.example", 3128, 3389, 5900, "office", "uma", false};
    const char *ticket = "0123456789abcdef0123456789abcdef";
    char *vv = brk_connfile_vv(&t, ticket);
    assert_non_null(vv);
    assert_true(strncmp(vv, "[virt-viewer]\ntype=spice\n", 25) == 0);
    assert_non_null(strstr(vv, "\nproxy=http://portal.example:3128\n"));
    assert_non_null(strstr(vv, "\nhost=0123456789abcdef0123456789abcdef\n"));
    assert_non_null(strstr(vv, "\npassword=0123456789abcdef0123456789abcdef\n"));
    assert_non_null(strstr(vv, "\ndelete-this-file=1\n"));
    free(vv);
    /* display.spice_tls: remote-viewer speaks TLS to an https:// proxy */
    t.spice_tls = true;
    vv = brk_connfile_vv(&t, ticket);
    assert_non_null(vv);
    assert_non_null(strstr(vv, "\nproxy=https://portal.example:3128\n"));
    free(vv);
    t.spice_tls = false;
    char *rdp = brk_connfile_rdp(&t, ticket);
    assert_non_null(rdp);
    assert_true(strncmp(rdp, "full address:s:portal.example:3389\r\n", 36) == 0);
    assert_non_null(strstr(rdp, "\r\nusername:s:uma\r\n"));
    assert_non_null(strstr(rdp, "\r\nloadbalanceinfo:s:Cookie: msts=0123456789abcdef0123456789abcdef\r\n"));
    free(rdp);
}

/* --------------------------------------------------------------- tokens */

static void test_tokens_are_256_random_bits_stored_as_sha256(void **state)
{
    (void)state;
    char a[BRK_TOKEN_TEXT_LEN + 1], b[BRK_TOKEN_TEXT_LEN + 1];
    unsigned char ha[DB_TOKEN_HASH_LEN], hb[DB_TOKEN_HASH_LEN], again[DB_TOKEN_HASH_LEN];
    assert_int_equal(brk_token_new(a, ha), 0);
    assert_int_equal(brk_token_new(b, hb), 0);
    assert_int_equal(strlen(a), 43);
    assert_true(brk_token_well_formed(a));
    assert_string_not_equal(a, b);
    assert_int_equal(brk_token_hash(a, again), 0);
    assert_memory_equal(ha, again, sizeof(ha));
    assert_memory_not_equal(ha, hb, sizeof(ha));
    /* SHA-256("abc"), FIPS 180-2 */
    static const unsigned char abc[] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
                                        0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                        0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
                                        0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    assert_int_equal(brk_token_hash("abc", again), 0);
    assert_memory_equal(abc, again, sizeof(abc));
    assert_false(brk_token_well_formed(NULL));
    assert_false(brk_token_well_formed("short"));
    a[5] = '+';
    assert_false(brk_token_well_formed(a)); /* base64url only */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_segments_match_only_positive_decimal_ids),
        cmocka_unit_test(test_paths_match_exactly),
        cmocka_unit_test(test_wrong_method_on_a_known_path_is_told_apart),
        cmocka_unit_test(test_every_route_is_unique),
        cmocka_unit_test(test_body_must_be_one_json_object),
        cmocka_unit_test(test_login_body_takes_username_password_and_totp_only),
        cmocka_unit_test(test_paging_has_defaults_and_bounds),
        cmocka_unit_test(test_filters_reject_what_no_row_can_hold),
        cmocka_unit_test(test_time_filters_take_rfc3339_only),
        cmocka_unit_test(test_gateway_host_is_a_plain_host_or_address),
        cmocka_unit_test(test_connection_files_name_gateway_and_ticket),
        cmocka_unit_test(test_tokens_are_256_random_bits_stored_as_sha256),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
