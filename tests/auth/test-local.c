/*
 * Local users end to end on a real database: passwords, rehash, lockout per
 * account and per address, disabled accounts and the audit trail.
 */
#include "auth-test.h"

#include "pgtest.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ADDR "192.0.2.10"

static int64_t make_user(struct authfix *f, const char *name, const char *pw, enum auth_role role)
{
    int64_t id = 0;
    assert_int_equal(auth_local_user_create(f->auth, name, pw, role, &id), 0);
    assert_true(id > 0);
    return id;
}

static void test_local_user_logs_in_with_right_password(void **state)
{
    struct authfix *f = *state;
    int64_t id = make_user(f, "anna", "s3cret-pw", AUTH_ROLE_OPERATOR);
    struct auth_login_result res;
    assert_int_equal(authfix_login(f, "anna", "s3cret-pw", NULL, ADDR, &res), AUTH_OK);
    assert_int_equal(res.user_id, id);
    assert_int_equal(res.role, AUTH_ROLE_OPERATOR);
    assert_string_equal(res.username, "anna");
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM users WHERE username = 'anna'"
                                      " AND last_login_at IS NOT NULL"),
                     1);
}

static void test_local_user_is_refused_with_wrong_password(void **state)
{
    struct authfix *f = *state;
    make_user(f, "anna", "s3cret-pw", AUTH_ROLE_USER);
    struct auth_login_result res;
    assert_int_equal(authfix_login(f, "anna", "s3cret-pX", NULL, ADDR, &res), AUTH_BAD_CREDENTIALS);
    assert_int_equal(res.user_id, 0);
    assert_int_equal(authfix_login(f, "anna", "", NULL, ADDR, NULL), AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_login(f, "Anna", "s3cret-pw", NULL, ADDR, NULL), AUTH_BAD_CREDENTIALS);
}

static void test_unknown_and_malformed_names_are_bad_credentials(void **state)
{
    struct authfix *f = *state;
    assert_int_equal(authfix_login(f, "nobody", "pw", NULL, ADDR, NULL), AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_login(f, "bad name'; --", "pw", NULL, ADDR, NULL),
                     AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_login(f, "\xff\xfe", "pw", NULL, ADDR, NULL), AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM users"), 0);
}

static void test_production_argon2_parameters_are_what_is_stored(void **state)
{
    struct authfix *f = *state;
    auth_config_defaults(&f->cfg);
    f->cfg.backends = "local";
    authfix_reload(f);
    make_user(f, "prod", "production-pw", AUTH_ROLE_USER);
    char *hash =
        pgt_query_value(f->conninfo, "SELECT password_hash FROM users WHERE username = 'prod'");
    assert_non_null(hash);
    assert_true(strncmp(hash, "$argon2id$v=19$m=19456,t=2,p=1$", 31) == 0);
    free(hash);
    assert_int_equal(authfix_login(f, "prod", "production-pw", NULL, ADDR, NULL), AUTH_OK);
}

static void test_outdated_hash_is_rehashed_on_successful_login(void **state)
{
    struct authfix *f = *state;
    make_user(f, "rita", "rehash-me", AUTH_ROLE_USER);
    char *before =
        pgt_query_value(f->conninfo, "SELECT password_hash FROM users WHERE username = 'rita'");
    assert_non_null(before);
    assert_true(strstr(before, "m=64,t=1,p=1") != NULL);

    f->cfg.argon2 = (struct auth_argon2_params){.m_cost_kib = 128, .t_cost = 2, .parallelism = 1};
    authfix_reload(f);
    /* A wrong password must not trigger a rehash. */
    assert_int_equal(authfix_login(f, "rita", "wrong", NULL, ADDR, NULL), AUTH_BAD_CREDENTIALS);
    char *unchanged =
        pgt_query_value(f->conninfo, "SELECT password_hash FROM users WHERE username = 'rita'");
    assert_string_equal(unchanged, before);

    assert_int_equal(authfix_login(f, "rita", "rehash-me", NULL, ADDR, NULL), AUTH_OK);
    char *after =
        pgt_query_value(f->conninfo, "SELECT password_hash FROM users WHERE username = 'rita'");
    assert_non_null(after);
    assert_true(strncmp(after, "$argon2id$v=19$m=128,t=2,p=1$", 29) == 0);
    assert_false(auth_password_needs_rehash(&f->cfg.argon2, after));
    assert_int_equal(auth_password_verify(after, "rehash-me"), 0);
    /* And the new hash keeps working. */
    assert_int_equal(authfix_login(f, "rita", "rehash-me", NULL, ADDR, NULL), AUTH_OK);
    free(before);
    free(unchanged);
    free(after);
}

static void test_wrong_password_locks_account_after_limit(void **state)
{
    struct authfix *f = *state;
    int64_t id = make_user(f, "lena", "right-pw", AUTH_ROLE_USER);
    for (int i = 0; i < 4; i++)
        assert_int_equal(authfix_login(f, "lena", "wrong", NULL, ADDR, NULL), AUTH_BAD_CREDENTIALS);
    /* Four failures: not locked yet. */
    assert_int_equal(authfix_login(f, "lena", "right-pw", NULL, ADDR, NULL), AUTH_OK);
    for (int i = 0; i < 5; i++)
        assert_int_equal(authfix_login(f, "lena", "wrong", NULL, "192.0.2.11", NULL),
                         AUTH_BAD_CREDENTIALS);
    struct auth_login_result res;
    /* Locked: even the right password is refused, from any address. */
    assert_int_equal(authfix_login(f, "lena", "right-pw", NULL, "198.51.100.1", &res), AUTH_LOCKED);
    assert_int_equal(res.retry_after_s, 60);
    assert_int_equal(res.user_id, 0);
    f->now += 30;
    assert_int_equal(authfix_login(f, "lena", "right-pw", NULL, ADDR, &res), AUTH_LOCKED);
    assert_int_equal(res.retry_after_s, 30);
    f->now += 30;
    assert_int_equal(authfix_login(f, "lena", "right-pw", NULL, ADDR, &res), AUTH_OK);
    assert_int_equal(res.user_id, id);
}

static void test_account_lock_doubles_and_resets_on_success(void **state)
{
    struct authfix *f = *state;
    make_user(f, "lena", "right-pw", AUTH_ROLE_USER);
    struct auth_login_result res;
    for (int i = 0; i < 5; i++)
        authfix_login(f, "lena", "wrong", NULL, NULL, NULL);
    assert_int_equal(authfix_login(f, "lena", "right-pw", NULL, NULL, &res), AUTH_LOCKED);
    assert_int_equal(res.retry_after_s, 60);
    f->now += 60;
    assert_int_equal(authfix_login(f, "lena", "wrong", NULL, NULL, NULL), AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_login(f, "lena", "right-pw", NULL, NULL, &res), AUTH_LOCKED);
    assert_int_equal(res.retry_after_s, 120);
    f->now += 120;
    assert_int_equal(authfix_login(f, "lena", "wrong", NULL, NULL, NULL), AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_login(f, "lena", "right-pw", NULL, NULL, &res), AUTH_LOCKED);
    assert_int_equal(res.retry_after_s, 240);

    /* The cap: many more failures never lock longer than max_s. */
    for (int i = 0; i < 12; i++) {
        f->now += 3600;
        authfix_login(f, "lena", "wrong", NULL, NULL, NULL);
    }
    assert_int_equal(authfix_login(f, "lena", "right-pw", NULL, NULL, &res), AUTH_LOCKED);
    assert_int_equal(res.retry_after_s, 3600);

    f->now += 3600;
    assert_int_equal(authfix_login(f, "lena", "right-pw", NULL, NULL, NULL), AUTH_OK);
    assert_int_equal(authfix_count(f, "SELECT failed_logins FROM users WHERE username = 'lena'"),
                     0);
    /* After the reset one wrong password is just one failure again. */
    assert_int_equal(authfix_login(f, "lena", "wrong", NULL, NULL, NULL), AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_login(f, "lena", "right-pw", NULL, NULL, NULL), AUTH_OK);
}

static void test_address_is_blocked_after_limit_across_accounts(void **state)
{
    struct authfix *f = *state;
    f->cfg.address =
        (struct db_backoff){.threshold = 3, .base_s = 30, .max_s = 600, .window_s = 300};
    authfix_reload(f);
    make_user(f, "vic", "vic-pw", AUTH_ROLE_USER);
    /* A spray over three names, none of which reaches its own lock. */
    assert_int_equal(authfix_login(f, "vic", "guess1", NULL, "203.0.113.5", NULL),
                     AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_login(f, "ghost", "guess2", NULL, "203.0.113.5", NULL),
                     AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_login(f, "phantom", "guess3", NULL, "203.0.113.5", NULL),
                     AUTH_BAD_CREDENTIALS);
    struct auth_login_result res;
    assert_int_equal(authfix_login(f, "vic", "vic-pw", NULL, "203.0.113.5", &res), AUTH_LOCKED);
    assert_int_equal(res.retry_after_s, 30);
    /* Another address is not affected, and the account itself is not locked. */
    assert_int_equal(authfix_login(f, "vic", "vic-pw", NULL, "203.0.113.6", NULL), AUTH_OK);

    /* Coming back right after the block: the next failure blocks twice as long. */
    f->now += 30;
    assert_int_equal(authfix_login(f, "ghost", "guess4", NULL, "203.0.113.5", NULL),
                     AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_login(f, "vic", "vic-pw", NULL, "203.0.113.5", &res), AUTH_LOCKED);
    assert_int_equal(res.retry_after_s, 60);

    /* Success from the address clears its count. */
    f->now += 60;
    assert_int_equal(authfix_login(f, "vic", "vic-pw", NULL, "203.0.113.5", NULL), AUTH_OK);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM auth_throttle"), 0);
    assert_int_equal(authfix_login(f, "ghost", "guess5", NULL, "203.0.113.5", NULL),
                     AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_login(f, "vic", "vic-pw", NULL, "203.0.113.5", NULL), AUTH_OK);
}

static void test_admin_unlock_lifts_account_lock_and_address_block(void **state)
{
    struct authfix *f = *state;
    f->cfg.address =
        (struct db_backoff){.threshold = 5, .base_s = 30, .max_s = 600, .window_s = 300};
    authfix_reload(f);
    int64_t id = make_user(f, "lena", "right-pw", AUTH_ROLE_USER);
    for (int i = 0; i < 5; i++)
        authfix_login(f, "lena", "wrong", NULL, "2001:db8::5", NULL);
    assert_int_equal(authfix_login(f, "lena", "right-pw", NULL, "192.0.2.99", NULL), AUTH_LOCKED);
    assert_int_equal(auth_user_unlock(f->auth, id), 0);
    assert_int_equal(authfix_login(f, "lena", "right-pw", NULL, "192.0.2.99", NULL), AUTH_OK);
    /* The address stays blocked until an admin lifts that too (same /64). */
    assert_int_equal(authfix_login(f, "lena", "right-pw", NULL, "2001:db8::6", NULL), AUTH_LOCKED);
    assert_int_equal(auth_address_unblock(f->auth, "2001:db8::7"), 0);
    assert_int_equal(authfix_login(f, "lena", "right-pw", NULL, "2001:db8::6", NULL), AUTH_OK);
    assert_int_equal(auth_user_unlock(f->auth, 424242), -ENOENT);
    assert_int_equal(auth_address_unblock(f->auth, "example.com"), -EINVAL);
}

static void test_address_count_is_forgotten_after_a_quiet_window(void **state)
{
    struct authfix *f = *state;
    f->cfg.address =
        (struct db_backoff){.threshold = 3, .base_s = 30, .max_s = 600, .window_s = 300};
    authfix_reload(f);
    make_user(f, "vic", "vic-pw", AUTH_ROLE_USER);
    authfix_login(f, "ghost", "x", NULL, ADDR, NULL);
    authfix_login(f, "ghost", "x", NULL, ADDR, NULL);
    f->now += 301;
    /* Two old failures plus one new: below the threshold of three. */
    authfix_login(f, "ghost", "x", NULL, ADDR, NULL);
    assert_int_equal(authfix_login(f, "vic", "vic-pw", NULL, ADDR, NULL), AUTH_OK);
}

static void test_prune_drops_only_quiet_address_counters(void **state)
{
    struct authfix *f = *state;
    f->cfg.address =
        (struct db_backoff){.threshold = 2, .base_s = 600, .max_s = 600, .window_s = 300};
    authfix_reload(f);
    make_user(f, "vic", "vic-pw", AUTH_ROLE_USER);
    authfix_login(f, "ghost", "x", NULL, "192.0.2.1", NULL); /* one failure, never blocked */
    authfix_login(f, "ghost", "x", NULL, "192.0.2.2", NULL);
    authfix_login(f, "ghost", "x", NULL, "192.0.2.2", NULL); /* blocked for 600 s */
    f->now += 301;
    authfix_login(f, "ghost", "x", NULL, "192.0.2.3", NULL); /* fresh */
    assert_int_equal(auth_throttle_prune(f->auth), 1);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM auth_throttle"), 2);
    /* The block that is still running survives the prune. */
    assert_int_equal(authfix_login(f, "vic", "vic-pw", NULL, "192.0.2.2", NULL), AUTH_LOCKED);
    /* Both are quiet for a window once the block has ended. */
    f->now += 600;
    assert_int_equal(auth_throttle_prune(f->auth), 2);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM auth_throttle"), 0);
}

static void test_ipv6_clients_are_throttled_per_64_prefix(void **state)
{
    struct authfix *f = *state;
    f->cfg.address =
        (struct db_backoff){.threshold = 2, .base_s = 30, .max_s = 600, .window_s = 300};
    authfix_reload(f);
    make_user(f, "vic", "vic-pw", AUTH_ROLE_USER);
    authfix_login(f, "ghost", "x", NULL, "2001:db8:1:2::1", NULL);
    authfix_login(f, "ghost", "x", NULL, "2001:db8:1:2:ffff::9", NULL);
    assert_int_equal(authfix_login(f, "vic", "vic-pw", NULL, "2001:db8:1:2::77", NULL),
                     AUTH_LOCKED);
    assert_int_equal(authfix_login(f, "vic", "vic-pw", NULL, "2001:db8:1:3::1", NULL), AUTH_OK);
    /* An IPv4-mapped address counts as the IPv4 address. */
    authfix_login(f, "ghost", "x", NULL, "::ffff:198.51.100.7", NULL);
    authfix_login(f, "ghost", "x", NULL, "198.51.100.7", NULL);
    assert_int_equal(authfix_login(f, "vic", "vic-pw", NULL, "198.51.100.7", NULL), AUTH_LOCKED);
}

static void test_unparsable_client_address_is_an_error(void **state)
{
    struct authfix *f = *state;
    struct auth_login_request req = {.username = "x", .password = "y", .client_addr = "not-an-ip"};
    struct auth_login_result res = {.outcome = AUTH_OK};
    assert_int_equal(auth_login(f->auth, &req, &res), -EINVAL);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM audit_log"), 0);
}

static void test_disabled_user_is_told_so_only_with_right_password(void **state)
{
    struct authfix *f = *state;
    int64_t id = make_user(f, "dora", "dora-pw", AUTH_ROLE_ADMIN);
    assert_int_equal(db_user_set_disabled(f->db, id, true), 0);
    struct auth_login_result res;
    assert_int_equal(authfix_login(f, "dora", "nope", NULL, ADDR, &res), AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_login(f, "dora", "dora-pw", NULL, ADDR, &res), AUTH_DISABLED);
    assert_int_equal(res.user_id, 0);
    assert_int_equal(db_user_set_disabled(f->db, id, false), 0);
    assert_int_equal(authfix_login(f, "dora", "dora-pw", NULL, ADDR, &res), AUTH_OK);
}

static void test_every_attempt_is_audited_without_the_password(void **state)
{
    struct authfix *f = *state;
    int64_t id = make_user(f, "otto", "Tr0ub4dor&3", AUTH_ROLE_USER);
    authfix_login(f, "otto", "Tr0ub4dor&3", NULL, ADDR, NULL);
    authfix_login(f, "otto", "wrong-Tr0ub4dor", NULL, ADDR, NULL);
    authfix_login(f, "nobody", "Tr0ub4dor&3", NULL, NULL, NULL);
    /* Four more wrong ones lock the account (five in all); the fifth and
     * the right password after it are refused as locked. */
    for (int i = 0; i < 5; i++)
        authfix_login(f, "otto", "wrong-Tr0ub4dor", NULL, ADDR, NULL);
    authfix_login(f, "otto", "Tr0ub4dor&3", NULL, ADDR, NULL);

    assert_int_equal(authfix_count(f, "SELECT count(*) FROM audit_log WHERE action = 'login'"), 9);
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM audit_log WHERE action = 'login' AND outcome = 'success'"
             " AND actor = 'otto' AND actor_user_id = %lld AND client_addr = '" ADDR "'"
             " AND detail->>'source' = 'local'",
             (long long)id);
    assert_int_equal(authfix_count(f, sql), 1);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM audit_log WHERE outcome = 'failure'"
                                      " AND actor = 'otto' AND detail->>'reason' = 'bad_password'"),
                     5);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM audit_log WHERE outcome = 'failure'"
                                      " AND actor = 'nobody' AND actor_user_id IS NULL"
                                      " AND client_addr IS NULL"
                                      " AND detail->>'reason' = 'unknown_user'"),
                     1);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM audit_log WHERE outcome = 'denied'"
                                      " AND detail->>'reason' = 'account_locked'"),
                     2);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM audit_log"
                                      " WHERE audit_log::text LIKE '%Tr0ub4dor%'"),
                     0);
}

static void test_password_change_takes_effect(void **state)
{
    struct authfix *f = *state;
    int64_t id = make_user(f, "pete", "old-pw", AUTH_ROLE_USER);
    assert_int_equal(auth_local_password_set(f->auth, id, "new-pw"), 0);
    assert_int_equal(authfix_login(f, "pete", "old-pw", NULL, NULL, NULL), AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_login(f, "pete", "new-pw", NULL, NULL, NULL), AUTH_OK);
    assert_int_equal(auth_local_password_set(f->auth, 999999, "x"), -ENOENT);
    int64_t other;
    assert_int_equal(auth_local_user_create(f->auth, "pete", "pw", AUTH_ROLE_USER, &other),
                     -EEXIST);
    assert_int_equal(auth_local_user_create(f->auth, "-bad", "pw", AUTH_ROLE_USER, &other),
                     -EINVAL);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, authfix_setup, authfix_teardown)
    const struct CMUnitTest tests[] = {
        T(test_local_user_logs_in_with_right_password),
        T(test_local_user_is_refused_with_wrong_password),
        T(test_unknown_and_malformed_names_are_bad_credentials),
        T(test_production_argon2_parameters_are_what_is_stored),
        T(test_outdated_hash_is_rehashed_on_successful_login),
        T(test_wrong_password_locks_account_after_limit),
        T(test_account_lock_doubles_and_resets_on_success),
        T(test_address_is_blocked_after_limit_across_accounts),
        T(test_admin_unlock_lifts_account_lock_and_address_block),
        T(test_address_count_is_forgotten_after_a_quiet_window),
        T(test_prune_drops_only_quiet_address_counters),
        T(test_ipv6_clients_are_throttled_per_64_prefix),
        T(test_unparsable_client_address_is_an_error),
        T(test_disabled_user_is_told_so_only_with_right_password),
        T(test_every_attempt_is_audited_without_the_password),
        T(test_password_change_takes_effect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
