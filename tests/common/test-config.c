/* Specification of the configuration loader (common/config.c). */
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

static int load(const char *text, struct atr_config **cfg, struct atr_error *err)
{
    return atr_config_load_string(text, strlen(text), "test.conf", cfg, err);
}

static void test_defaults_fill_every_key(void **state)
{
    (void)state;
    struct atr_config *cfg = atr_config_new_defaults();
    assert_non_null(cfg);
    assert_string_equal(cfg->db.url, "dbname=atrium");
    assert_string_equal(cfg->paths.runtime_dir, "/run/atrium");
    assert_string_equal(cfg->paths.data_dir, "/var/lib/atrium");
    assert_int_equal(cfg->log.level, LOG_LEVEL_INFO);
    assert_int_equal(cfg->broker.port, 8443);
    assert_true(cfg->broker.tls);
    assert_string_equal(cfg->hostd.accel, "auto");
    assert_int_equal(cfg->hostd.heartbeat_s, 2);
    atr_config_free(cfg);
}

static void test_valid_file_sets_values(void **state)
{
    (void)state;
    struct atr_config *cfg = NULL;
    struct atr_error err = {0};
    const char *text = "; comment\n"
                       "[db]\n"
                       "url = host=/tmp port=5433 dbname=x\n"
                       "\n"
                       "[log]\n"
                       "level = debug\n"
                       "[broker]\n"
                       "port = 9443\n"
                       "tls = off\n"
                       "[hostd]\n"
                       "accel = tcg\n";
    assert_int_equal(load(text, &cfg, &err), 0);
    assert_string_equal(cfg->db.url, "host=/tmp port=5433 dbname=x");
    assert_int_equal(cfg->log.level, LOG_LEVEL_DEBUG);
    assert_int_equal(cfg->broker.port, 9443);
    assert_false(cfg->broker.tls);
    assert_string_equal(cfg->hostd.accel, "tcg");
    assert_string_equal(cfg->path, "test.conf");
    atr_config_free(cfg);
}

static void test_typo_key_names_file_line_and_key(void **state)
{
    (void)state;
    struct atr_config *cfg = (void *)0x1;
    struct atr_error err = {0};
    assert_int_equal(load("[db]\n\nurll = dbname=x\n", &cfg, &err), -EINVAL);
    assert_ptr_equal(cfg, (void *)0x1); /* untouched on failure */
    assert_string_equal(err.msg, "test.conf:3: unknown key 'urll' in section [db]");
    assert_null(strchr(err.msg, '\n'));
}

static void test_unknown_section_is_an_error(void **state)
{
    (void)state;
    struct atr_config *cfg = NULL;
    struct atr_error err = {0};
    assert_int_equal(load("[dbb]\nurl = x\n", &cfg, &err), -EINVAL);
    assert_string_equal(err.msg, "test.conf:2: unknown section [dbb]");
}

static void test_bad_value_names_key_and_expected_range(void **state)
{
    (void)state;
    struct atr_config *cfg = NULL;
    struct atr_error err = {0};
    assert_int_equal(load("[broker]\nport = 99999\n", &cfg, &err), -EINVAL);
    assert_string_equal(err.msg, "test.conf:2: bad value '99999' for [broker] port: must be an "
                                 "integer from 1 to 65535");
    assert_int_equal(load("[broker]\nport = 80x\n", &cfg, &err), -EINVAL);
    assert_int_equal(load("[broker]\ntls = maybe\n", &cfg, &err), -EINVAL);
    assert_string_equal(err.msg,
                        "test.conf:2: bad value 'maybe' for [broker] tls: must be true or false");
    assert_int_equal(load("[hostd]\naccel = xen\n", &cfg, &err), -EINVAL);
    assert_string_equal(err.msg,
                        "test.conf:2: bad value 'xen' for [hostd] accel: must be one of auto,kvm,tcg");
    assert_int_equal(load("[log]\nlevel = loud\n", &cfg, &err), -EINVAL);
}

static void test_first_problem_is_reported_with_its_own_line(void **state)
{
    (void)state;
    struct atr_config *cfg = NULL;
    struct atr_error err = {0};
    /* line 2 is not key=value, line 4 has a typo: the syntax error comes first */
    assert_int_equal(load("[db]\nthis is not ini\n[log]\nlevell = info\n", &cfg, &err), -EINVAL);
    assert_string_equal(err.msg,
                        "test.conf:2: syntax error (expected [section] or key = value)");
    assert_int_equal(load("[log]\nlevell = info\n[db]\nnonsense\n", &cfg, &err), -EINVAL);
    assert_string_equal(err.msg, "test.conf:2: unknown key 'levell' in section [log]");
}

static void test_key_set_twice_is_an_error(void **state)
{
    (void)state;
    struct atr_config *cfg = NULL;
    struct atr_error err = {0};
    assert_int_equal(load("[db]\nurl = a\nurl = b\n", &cfg, &err), -EINVAL);
    assert_string_equal(err.msg, "test.conf:3: key 'url' in [db] is set twice");
}

static void test_key_outside_section_and_empty_url_are_errors(void **state)
{
    (void)state;
    struct atr_config *cfg = NULL;
    struct atr_error err = {0};
    assert_int_equal(load("url = x\n", &cfg, &err), -EINVAL);
    assert_string_equal(err.msg, "test.conf:1: key 'url' is outside any [section]");
    assert_int_equal(load("[db]\nurl =\n", &cfg, &err), -EINVAL);
    assert_string_equal(err.msg, "test.conf: [db] url must not be empty");
}

static void test_nul_byte_is_refused(void **state)
{
    (void)state;
    struct atr_config *cfg = NULL;
    struct atr_error err = {0};
    assert_int_equal(atr_config_load_string("[db]\0url=x\n", 11, "n.conf", &cfg, &err), -EINVAL);
    assert_string_equal(err.msg, "n.conf: contains a NUL byte");
}

static void test_missing_file_names_the_path(void **state)
{
    (void)state;
    struct atr_config *cfg = NULL;
    struct atr_error err = {0};
    assert_int_equal(atr_config_load("/nonexistent/atrium.conf", &cfg, &err), -ENOENT);
    assert_string_equal(err.msg,
                        "/nonexistent/atrium.conf: cannot open config file: No such file or directory");
}

static void test_env_variable_names_the_file(void **state)
{
    (void)state;
    char path[] = "/tmp/atrium-cfg-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = "[db]\nurl = dbname=fromenv\n";
    assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
    close(fd);
    setenv("ATRIUM_CONFIG", path, 1);
    struct atr_config *cfg = NULL;
    struct atr_error err = {0};
    int r = atr_config_load(NULL, &cfg, &err);
    unsetenv("ATRIUM_CONFIG");
    unlink(path);
    assert_int_equal(r, 0);
    assert_string_equal(cfg->db.url, "dbname=fromenv");
    assert_string_equal(cfg->path, path);
    atr_config_free(cfg);
}

static void test_dump_masks_the_database_url(void **state)
{
    (void)state;
    struct atr_config *cfg = NULL;
    struct atr_error err = {0};
    assert_int_equal(load("[db]\nurl = password=secret\n", &cfg, &err), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    atr_config_dump(cfg, f);
    fclose(f);
    assert_null(strstr(buf, "secret"));
    assert_non_null(strstr(buf, "db.url = (set)\n"));
    assert_non_null(strstr(buf, "broker.port = 8443\n"));
    free(buf);
    atr_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_fill_every_key),
        cmocka_unit_test(test_valid_file_sets_values),
        cmocka_unit_test(test_typo_key_names_file_line_and_key),
        cmocka_unit_test(test_unknown_section_is_an_error),
        cmocka_unit_test(test_bad_value_names_key_and_expected_range),
        cmocka_unit_test(test_first_problem_is_reported_with_its_own_line),
        cmocka_unit_test(test_key_set_twice_is_an_error),
        cmocka_unit_test(test_key_outside_section_and_empty_url_are_errors),
        cmocka_unit_test(test_nul_byte_is_refused),
        cmocka_unit_test(test_missing_file_names_the_path),
        cmocka_unit_test(test_env_variable_names_the_file),
        cmocka_unit_test(test_dump_masks_the_database_url),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
