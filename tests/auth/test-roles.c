/* Roles: what admins, operators and users may do. */
#include "auth.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static void test_operator_cannot_write_pools(void **state)
{
    (void)state;
    assert_false(auth_role_allows(AUTH_ROLE_OPERATOR, AUTH_ACTION_POOL_WRITE));
    assert_true(auth_role_allows(AUTH_ROLE_ADMIN, AUTH_ACTION_POOL_WRITE));
}

static void
test_operator_reads_and_acts_on_running_desktops_but_changes_no_configuration(void **state)
{
    (void)state;
    assert_true(auth_role_allows(AUTH_ROLE_OPERATOR, AUTH_ACTION_READ));
    assert_true(auth_role_allows(AUTH_ROLE_OPERATOR, AUTH_ACTION_AUDIT_READ));
    assert_true(auth_role_allows(AUTH_ROLE_OPERATOR, AUTH_ACTION_VM_POWER));
    assert_true(auth_role_allows(AUTH_ROLE_OPERATOR, AUTH_ACTION_SESSION_MANAGE));
    assert_false(auth_role_allows(AUTH_ROLE_OPERATOR, AUTH_ACTION_USER_WRITE));
    assert_false(auth_role_allows(AUTH_ROLE_OPERATOR, AUTH_ACTION_IMAGE_WRITE));
    assert_false(auth_role_allows(AUTH_ROLE_OPERATOR, AUTH_ACTION_HOST_WRITE));
    assert_false(auth_role_allows(AUTH_ROLE_OPERATOR, AUTH_ACTION_SETTINGS_WRITE));
    assert_false(auth_role_allows(AUTH_ROLE_OPERATOR, AUTH_ACTION_CONSOLE_ANY));
}

static void test_admin_may_do_everything(void **state)
{
    (void)state;
    for (int a = 0; a < AUTH_ACTION_COUNT_; a++)
        assert_true(auth_role_allows(AUTH_ROLE_ADMIN, (enum auth_action)a));
}

static void test_user_may_only_open_own_console(void **state)
{
    (void)state;
    for (int a = 0; a < AUTH_ACTION_COUNT_; a++)
        assert_int_equal(auth_role_allows(AUTH_ROLE_USER, (enum auth_action)a),
                         a == AUTH_ACTION_CONSOLE_OWN);
}

static void test_out_of_range_role_or_action_is_refused(void **state)
{
    (void)state;
    assert_false(auth_role_allows((enum auth_role)7, AUTH_ACTION_READ));
    assert_false(auth_role_allows(AUTH_ROLE_ADMIN, AUTH_ACTION_COUNT_));
    assert_false(auth_role_allows(AUTH_ROLE_ADMIN, (enum auth_action) - 1));
}

static void test_role_and_action_names_round_trip(void **state)
{
    (void)state;
    for (int r = AUTH_ROLE_USER; r <= AUTH_ROLE_ADMIN; r++) {
        enum auth_role back;
        assert_int_equal(auth_role_from_string(auth_role_to_string((enum auth_role)r), &back), 0);
        assert_int_equal(back, r);
    }
    for (int a = 0; a < AUTH_ACTION_COUNT_; a++) {
        enum auth_action back;
        const char *name = auth_action_to_string((enum auth_action)a);
        assert_non_null(name);
        assert_int_equal(auth_action_from_string(name, &back), 0);
        assert_int_equal(back, a);
    }
    enum auth_action act;
    assert_int_equal(auth_action_from_string("pool.write", &act), 0);
    assert_int_equal(act, AUTH_ACTION_POOL_WRITE);
    enum auth_role role = AUTH_ROLE_USER;
    assert_int_equal(auth_role_from_string("root", &role), -EINVAL);
    assert_int_equal(auth_role_from_string(NULL, &role), -EINVAL);
    assert_int_equal(role, AUTH_ROLE_USER);
    assert_int_equal(auth_action_from_string("pool.delete", &act), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_operator_cannot_write_pools),
        cmocka_unit_test(
            test_operator_reads_and_acts_on_running_desktops_but_changes_no_configuration),
        cmocka_unit_test(test_admin_may_do_everything),
        cmocka_unit_test(test_user_may_only_open_own_console),
        cmocka_unit_test(test_out_of_range_role_or_action_is_refused),
        cmocka_unit_test(test_role_and_action_names_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
