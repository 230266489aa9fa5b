/*
 * The PAM configuration directory can be moved away from /etc/pam.d: the
 * system libpam, no wrapper, reads service "atrium-test" from the test's
 * directory, which names pam_matrix and its password file.
 */
#include "auth.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

static void test_pam_confdir_override_selects_the_service_file(void **state)
{
    (void)state;
    const char *dir = getenv("ATRIUM_TEST_PAM_DIR");
    assert_non_null(dir);
    assert_int_equal(auth_pam_check("atrium-test", dir, "erin", "erin-pam-pw", NULL, NULL), 0);
    assert_int_equal(auth_pam_check("atrium-test", dir, "erin", "wrong", NULL, NULL), -EACCES);
    /* Another directory, without that service file: its "other" denies. */
    const char *other = getenv("ATRIUM_TEST_PAM_OTHER_DIR");
    assert_non_null(other);
    assert_int_equal(auth_pam_check("atrium-test", other, "erin", "erin-pam-pw", NULL, NULL),
                     -EACCES);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pam_confdir_override_selects_the_service_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
