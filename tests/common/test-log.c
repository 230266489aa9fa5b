/* Specification of structured logging and the small helpers in common/. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Capture what the logger writes through a pipe. */
static char *capture(void (*fn)(void))
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    log_set_fd(p[1]);
    fn();
    log_set_fd(STDERR_FILENO);
    close(p[1]);
    static char buf[8192];
    ssize_t n = read(p[0], buf, sizeof(buf) - 1);
    close(p[0]);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void emit_vm_started(void)
{
    log_info("vm started", "vm", LOG_INT(42), "path", "/run/atrium/vms/42");
}

static void test_line_has_level_module_message_and_fields(void **state)
{
    (void)state;
    log_init("hostd", LOG_LEVEL_INFO);
    assert_string_equal(capture(emit_vm_started),
                        "level=info mod=hostd msg=\"vm started\" vm=42 path=/run/atrium/vms/42\n");
}

static void emit_awkward(void)
{
    log_warn("odd", "empty", "", "quote", "say \"hi\"", "eq", "a=b", "nl", "x\ny", "null", NULL);
}

static void test_values_are_quoted_and_escaped_so_each_event_is_one_line(void **state)
{
    (void)state;
    log_init("t", LOG_LEVEL_DEBUG);
    assert_string_equal(capture(emit_awkward),
                        "level=warn mod=t msg=odd empty=\"\" quote=\"say \\\"hi\\\"\" eq=\"a=b\" "
                        "nl=\"x\\ny\" null=(null)\n");
}

static void emit_levels(void)
{
    log_debug("d");
    log_info("i");
    log_warn("w");
    log_error("e", "errno", LOG_INT(-5));
}

static void test_level_filter_drops_lower_levels(void **state)
{
    (void)state;
    log_init("t", LOG_LEVEL_WARN);
    assert_string_equal(capture(emit_levels),
                        "level=warn mod=t msg=w\nlevel=error mod=t msg=e errno=-5\n");
}

static void emit_huge(void)
{
    static char big[10000];
    memset(big, 'x', sizeof(big) - 1);
    log_info("huge", "v", big);
}

static void test_overlong_line_is_cut_and_marked(void **state)
{
    (void)state;
    log_init("t", LOG_LEVEL_INFO);
    char *out = capture(emit_huge);
    size_t n = strlen(out);
    assert_true(n <= 4096);
    assert_string_equal(out + n - strlen(" truncated=true\n"), " truncated=true\n");
    assert_null(strchr(out, '\n') != out + n - 1 ? strchr(out, '\n') : NULL);
}

static void test_level_names_parse(void **state)
{
    (void)state;
    enum log_level l;
    assert_int_equal(log_level_from_string("DEBUG", &l), 0);
    assert_int_equal(l, LOG_LEVEL_DEBUG);
    assert_int_equal(log_level_from_string("warning", &l), 0);
    assert_int_equal(l, LOG_LEVEL_WARN);
    assert_int_equal(log_level_from_string("verbose", &l), -EINVAL);
}

static void test_durations_parse_with_units(void **state)
{
    (void)state;
    int64_t ms = -1;
    assert_int_equal(atr_duration_parse("30s", &ms), 0);
    assert_int_equal(ms, 30000);
    assert_int_equal(atr_duration_parse("250ms", &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(atr_duration_parse("5m", &ms), 0);
    assert_int_equal(ms, 300000);
    assert_int_equal(atr_duration_parse("2", &ms), 0);
    assert_int_equal(ms, 2000);
    assert_int_equal(atr_duration_parse("1d", &ms), 0);
    assert_int_equal(ms, 86400000);
    ms = 7;
    assert_int_equal(atr_duration_parse("-1s", &ms), -EINVAL);
    assert_int_equal(atr_duration_parse("5 s", &ms), -EINVAL);
    assert_int_equal(atr_duration_parse("5w", &ms), -EINVAL);
    assert_int_equal(atr_duration_parse("99999999999999999999", &ms), -ERANGE);
    assert_int_equal(atr_duration_parse("9999999999999999d", &ms), -ERANGE);
    assert_int_equal(ms, 7);
}

static void test_time_format_is_rfc3339_utc(void **state)
{
    (void)state;
    char buf[32];
    assert_string_equal(atr_time_format(1764072000123456LL, buf), "2025-11-25T12:00:00.123Z");
    assert_string_equal(atr_time_format(0, buf), "1970-01-01T00:00:00.000Z");
    int64_t a = atr_now_mono_ms();
    assert_true(atr_deadline_left_ms(a + 100000) > 90000);
    assert_int_equal(atr_deadline_left_ms(a - 1), 0);
}

static void test_integers_parse_whole_string_in_range(void **state)
{
    (void)state;
    long long v = 3;
    assert_int_equal(atr_parse_ll("42", 0, 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(atr_parse_ll("42x", 0, 100, &v), -EINVAL);
    assert_int_equal(atr_parse_ll(" 4", 0, 100, &v), -EINVAL);
    assert_int_equal(atr_parse_ll("", 0, 100, &v), -EINVAL);
    assert_int_equal(atr_parse_ll("101", 0, 100, &v), -ERANGE);
    assert_int_equal(v, 42);
    assert_int_equal(atr_memeq_ct("abc", "abc", 3), 0);
    assert_int_not_equal(atr_memeq_ct("abc", "abd", 3), 0);
}

static void test_json_getters_check_type_and_range(void **state)
{
    (void)state;
    json_t *o = json_loads("{\"s\":\"x\",\"n\":5,\"b\":true,\"z\":null,\"big\":1e3}", 0, NULL);
    assert_non_null(o);
    const char *s = NULL;
    long long n = 0;
    bool b = false;
    assert_int_equal(atr_json_get_str(o, "s", &s), 0);
    assert_string_equal(s, "x");
    assert_int_equal(atr_json_get_str(o, "n", &s), -EINVAL);
    assert_int_equal(atr_json_get_str(o, "z", &s), -ENOENT);
    assert_int_equal(atr_json_get_str(o, "missing", &s), -ENOENT);
    assert_int_equal(atr_json_get_int(o, "n", 0, 10, &n), 0);
    assert_int_equal(n, 5);
    assert_int_equal(atr_json_get_int(o, "n", 6, 10, &n), -EINVAL);
    assert_int_equal(atr_json_get_int(o, "big", 0, 10000, &n), -EINVAL);
    assert_int_equal(atr_json_get_bool(o, "b", &b), 0);
    assert_true(b);
    json_decref(o);
    json_t *e = atr_json_error("not_found", "no pool 'x'");
    char *txt = atr_json_dumps(e);
    assert_string_equal(txt, "{\"error\":\"not_found\",\"detail\":\"no pool 'x'\"}");
    free(txt);
    json_decref(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_has_level_module_message_and_fields),
        cmocka_unit_test(test_values_are_quoted_and_escaped_so_each_event_is_one_line),
        cmocka_unit_test(test_level_filter_drops_lower_levels),
        cmocka_unit_test(test_overlong_line_is_cut_and_marked),
        cmocka_unit_test(test_level_names_parse),
        cmocka_unit_test(test_durations_parse_with_units),
        cmocka_unit_test(test_time_format_is_rfc3339_utc),
        cmocka_unit_test(test_integers_parse_whole_string_in_range),
        cmocka_unit_test(test_json_getters_check_type_and_range),
    };
    return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
