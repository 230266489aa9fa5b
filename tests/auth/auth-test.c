#include "auth-test.h"

#include "pgtest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

const struct auth_argon2_params authfix_fast_argon2 = {
    .m_cost_kib = 64, .t_cost = 1, .parallelism = 1};

static int64_t fake_clock(void *userdata)
{
    return ((struct authfix *)userdata)->now;
}

void authfix_reload(struct authfix *f)
{
    f->auth = auth_free(f->auth);
    assert_int_equal(auth_new(f->db, &f->cfg, &f->auth), 0);
}

int authfix_setup(void **state)
{
    struct authfix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(pgt_db_create(&f->conninfo), 0);
    struct atr_error err;
    assert_int_equal(db_open(f->conninfo, 10, "test-auth", &f->db, &err), 0);
    size_t n;
    const struct db_migration *m = db_migrations_builtin(&n);
    assert_int_equal(db_migrate(f->db, m, n, NULL, NULL, NULL, &err), 0);
    auth_config_defaults(&f->cfg);
    f->cfg.argon2 = authfix_fast_argon2;
    f->cfg.backends = "local";
    f->cfg.clock = fake_clock;
    f->cfg.clock_userdata = f;
    f->now = 1800000000; /* 2027-01-15, a multiple of 30 s */
    authfix_reload(f);
    *state = f;
    return 0;
}

int authfix_teardown(void **state)
{
    struct authfix *f = *state;
    auth_free(f->auth);
    db_close(f->db);
    pgt_db_drop(f->conninfo);
    free(f);
    return 0;
}

long long authfix_count(struct authfix *f, const char *sql)
{
    char *v = pgt_query_value(f->conninfo, sql);
    assert_non_null(v);
    long long n = atoll(v);
    free(v);
    return n;
}

enum auth_outcome authfix_login(struct authfix *f, const char *user, const char *password,
                                const char *code, const char *addr, struct auth_login_result *ret)
{
    struct auth_login_result res;
    struct auth_login_request req = {
        .username = user, .password = password, .totp_code = code, .client_addr = addr};
    assert_int_equal(auth_login(f->auth, &req, &res), 0);
    if (ret)
        *ret = res;
    return res.outcome;
}
