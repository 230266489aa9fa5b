/*
 * The PAM back end through the real libpam, loaded under pam_wrapper so that
 * service "atrium" comes from the test's directory (pam_matrix with a
 * password file), and nss_wrapper supplying the users' Unix groups.
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

static int pam_setup(void **state)
{
    int r = authfix_setup(state);
    struct authfix *f = *state;
    f->cfg.backends = "local,pam";
    authfix_reload(f);
    return r;
}

static bool strv_has(char **v, const char *s)
{
    for (; v && *v; v++)
        if (strcmp(*v, s) == 0)
            return true;
    return false;
}

static void test_pam_check_accepts_right_password_and_reports_unix_groups(void **state)
{
    (void)state;
    char **groups = NULL;
    assert_int_equal(auth_pam_check(NULL, NULL, "carol", "carol-pam-pw", "192.0.2.1", &groups), 0);
    assert_non_null(groups);
    assert_true(strv_has(groups, "carol"));
    assert_true(strv_has(groups, "engineering"));
    assert_true(strv_has(groups, "bigdept"));
    assert_false(strv_has(groups, "sales"));
    auth_strv_free(groups);
}

static void test_pam_check_refuses_wrong_password_and_unknown_user(void **state)
{
    (void)state;
    char **groups = NULL;
    int r = auth_pam_check(NULL, NULL, "carol", "carol-pam-pX", NULL, &groups);
    assert_int_equal(r, -EACCES);
    assert_null(groups);
    r = auth_pam_check(NULL, NULL, "mallory", "whatever", NULL, &groups);
    assert_true(r == -EACCES || r == -ENOENT);
    assert_null(groups);
}

static void test_pam_service_name_is_configurable(void **state)
{
    (void)state;
    /* erin may use only service "atrium-test", carol only "atrium". */
    assert_int_equal(auth_pam_check("atrium-test", NULL, "erin", "erin-pam-pw", NULL, NULL), 0);
    assert_true(auth_pam_check(NULL, NULL, "erin", "erin-pam-pw", NULL, NULL) < 0);
    assert_true(auth_pam_check("atrium-test", NULL, "carol", "carol-pam-pw", NULL, NULL) < 0);
    /* No such service file: PAM falls back to "other", which denies. */
    assert_true(auth_pam_check("atrium-missing", NULL, "erin", "erin-pam-pw", NULL, NULL) < 0);
}

static void test_pam_user_first_login_creates_a_pam_users_row(void **state)
{
    struct authfix *f = *state;
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM users"), 0);
    struct auth_login_result res;
    assert_int_equal(authfix_login(f, "carol", "carol-pam-pw", NULL, "192.0.2.1", &res), AUTH_OK);
    assert_true(res.user_id > 0);
    assert_int_equal(res.role, AUTH_ROLE_USER);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM users WHERE username = 'carol'"
                                      " AND source = 'pam' AND role = 'user'"
                                      " AND password_hash IS NULL"),
                     1);
    /* The second log-in reuses the row. */
    struct auth_login_result again;
    assert_int_equal(authfix_login(f, "carol", "carol-pam-pw", NULL, "192.0.2.1", &again), AUTH_OK);
    assert_int_equal(again.user_id, res.user_id);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM users"), 1);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM audit_log WHERE outcome = 'success'"
                                      " AND detail->>'source' = 'pam'"),
                     2);
}

static void test_pam_user_refused_with_wrong_password(void **state)
{
    struct authfix *f = *state;
    assert_int_equal(authfix_login(f, "carol", "nope", NULL, "192.0.2.1", NULL),
                     AUTH_BAD_CREDENTIALS);
    /* No row for someone PAM did not accept. */
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM users"), 0);
    assert_int_equal(authfix_login(f, "carol", "carol-pam-pw", NULL, "192.0.2.1", NULL), AUTH_OK);
    /* Once the row exists, wrong PAM passwords count toward its lock. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(authfix_login(f, "carol", "nope", NULL, "192.0.2.1", NULL),
                         AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_login(f, "carol", "carol-pam-pw", NULL, "192.0.2.1", NULL),
                     AUTH_LOCKED);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM audit_log WHERE outcome = 'failure'"
                                      " AND actor = 'carol'"),
                     6);
}

static void test_pam_refusing_the_account_is_reported_as_disabled(void **state)
{
    struct authfix *f = *state;
    /* erin's password is right but the password file allows her only the
     * "atrium-test" service: PAM refuses her account for "atrium". */
    assert_int_equal(authfix_login(f, "erin", "erin-pam-pw", NULL, NULL, NULL), AUTH_DISABLED);
    assert_int_equal(authfix_login(f, "erin", "not-her-pw", NULL, NULL, NULL),
                     AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM users"), 0);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM audit_log WHERE outcome = 'denied'"
                                      " AND actor = 'erin'"
                                      " AND detail->>'reason' = 'refused_by_backend'"),
                     1);
}

static void test_local_account_is_never_checked_through_pam(void **state)
{
    struct authfix *f = *state;
    /* "alice" is in the PAM password file too, with another password. */
    int64_t id;
    assert_int_equal(
        auth_local_user_create(f->auth, "alice", "alice-local-pw", AUTH_ROLE_ADMIN, &id), 0);
    assert_int_equal(authfix_login(f, "alice", "alice-pam-pw", NULL, NULL, NULL),
                     AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_login(f, "alice", "alice-local-pw", NULL, NULL, NULL), AUTH_OK);
}

static void test_pam_only_backend_order_skips_local(void **state)
{
    struct authfix *f = *state;
    f->cfg.backends = "local";
    authfix_reload(f);
    /* With PAM not configured, a PAM-only person cannot get in. */
    assert_int_equal(authfix_login(f, "carol", "carol-pam-pw", NULL, NULL, NULL),
                     AUTH_BAD_CREDENTIALS);
    f->cfg.backends = "pam";
    authfix_reload(f);
    assert_int_equal(authfix_login(f, "carol", "carol-pam-pw", NULL, NULL, NULL), AUTH_OK);
    f->cfg.backends = "local,kerberos";
    assert_int_equal(auth_new(f->db, &f->cfg, &(struct auth *){NULL}), -EINVAL);
}

static void test_unix_group_from_pam_entitles_pool(void **state)
{
    struct authfix *f = *state;
    assert_int_equal(pgt_exec(f->conninfo, "INSERT INTO pools (name) VALUES ('cad'), ('crm')"), 0);
    int64_t cad = authfix_count(f, "SELECT id FROM pools WHERE name = 'cad'");
    int64_t crm = authfix_count(f, "SELECT id FROM pools WHERE name = 'crm'");
    int64_t eng, sales;
    assert_int_equal(db_group_create(f->db, "engineering", "unix", "", &eng), 0);
    assert_int_equal(db_group_create(f->db, "sales", "unix", "", &sales), 0);
    assert_int_equal(db_entitlement_add_group(f->db, cad, eng, NULL), 0);
    assert_int_equal(db_entitlement_add_group(f->db, crm, sales, NULL), 0);

    struct auth_login_result carol, dave;
    assert_int_equal(authfix_login(f, "carol", "carol-pam-pw", NULL, NULL, &carol), AUTH_OK);
    assert_int_equal(authfix_login(f, "dave", "dave-pam-pw", NULL, NULL, &dave), AUTH_OK);

    int64_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(auth_user_pools(f->auth, carol.user_id, &ids, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], cad);
    free(ids);
    bool ok = true;
    assert_int_equal(auth_entitled(f->auth, carol.user_id, crm, &ok), 0);
    assert_false(ok);
    assert_int_equal(auth_entitled(f->auth, dave.user_id, crm, &ok), 0);
    assert_true(ok);
    assert_int_equal(auth_entitled(f->auth, dave.user_id, cad, &ok), 0);
    assert_false(ok);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, pam_setup, authfix_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pam_check_accepts_right_password_and_reports_unix_groups),
        cmocka_unit_test(test_pam_check_refuses_wrong_password_and_unknown_user),
        cmocka_unit_test(test_pam_service_name_is_configurable),
        T(test_pam_user_first_login_creates_a_pam_users_row),
        T(test_pam_user_refused_with_wrong_password),
        T(test_pam_refusing_the_account_is_reported_as_disabled),
        T(test_local_account_is_never_checked_through_pam),
        T(test_pam_only_backend_order_skips_local),
        T(test_unix_group_from_pam_entitles_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
