/* argon2id password hashes: verification, salts, parameters, rehash decisions. */
#include "auth.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

static const struct auth_argon2_params fast = {.m_cost_kib = 64, .t_cost = 1, .parallelism = 1};

static void test_hash_verifies_only_its_own_password(void **state)
{
    (void)state;
    char *h = NULL;
    assert_int_equal(auth_password_hash(&fast, "correct horse", &h), 0);
    assert_int_equal(auth_password_verify(h, "correct horse"), 0);
    assert_int_equal(auth_password_verify(h, "correct horsE"), -EACCES);
    assert_int_equal(auth_password_verify(h, "correct hors"), -EACCES);
    assert_int_equal(auth_password_verify(h, ""), -EACCES);
    free(h);
}

static void test_each_hash_gets_its_own_salt(void **state)
{
    (void)state;
    char *a = NULL, *b = NULL;
    assert_int_equal(auth_password_hash(&fast, "same", &a), 0);
    assert_int_equal(auth_password_hash(&fast, "same", &b), 0);
    assert_string_not_equal(a, b);
    /* The salt field (after the 4th '$') differs, not only the digest. */
    const char *sa = a, *sb = b;
    for (int i = 0; i < 4; i++) {
        sa = strchr(sa, '$') + 1;
        sb = strchr(sb, '$') + 1;
    }
    assert_memory_not_equal(sa, sb, 22);
    free(a);
    free(b);
}

static void test_hash_records_argon2id_and_its_parameters(void **state)
{
    (void)state;
    char *h = NULL;
    assert_int_equal(auth_password_hash(&fast, "pw", &h), 0);
    assert_true(strncmp(h, "$argon2id$v=19$m=64,t=1,p=1$", 28) == 0);
    free(h);
}

static void test_needs_rehash_when_parameters_differ(void **state)
{
    (void)state;
    char *h = NULL;
    assert_int_equal(auth_password_hash(&fast, "pw", &h), 0);
    assert_false(auth_password_needs_rehash(&fast, h));
    struct auth_argon2_params more_memory = fast, more_passes = fast, more_lanes = fast;
    more_memory.m_cost_kib = 128;
    more_passes.t_cost = 2;
    more_lanes.parallelism = 2;
    more_lanes.m_cost_kib = 64;
    assert_true(auth_password_needs_rehash(&more_memory, h));
    assert_true(auth_password_needs_rehash(&more_passes, h));
    assert_true(auth_password_needs_rehash(&more_lanes, h));
    /* Other algorithms and foreign strings always need a new hash. */
    assert_true(auth_password_needs_rehash(&fast, "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA"));
    assert_true(auth_password_needs_rehash(&fast, "$6$salt$crypt"));
    assert_true(auth_password_needs_rehash(&fast, NULL));
    free(h);
}

static void test_malformed_hash_is_refused_not_accepted(void **state)
{
    (void)state;
    assert_int_equal(auth_password_verify("", "pw"), -EINVAL);
    assert_int_equal(auth_password_verify("$argon2id$v=19$m=64,t=1,p=1$", "pw"), -EINVAL);
    assert_int_equal(auth_password_verify("plaintext", "plaintext"), -EINVAL);
}

static void test_empty_and_oversized_passwords_are_not_hashed(void **state)
{
    (void)state;
    char *h = NULL;
    assert_int_equal(auth_password_hash(&fast, "", &h), -EINVAL);
    char *big = malloc(AUTH_PASSWORD_MAX + 2);
    assert_non_null(big);
    memset(big, 'x', AUTH_PASSWORD_MAX + 1);
    big[AUTH_PASSWORD_MAX + 1] = '\0';
    assert_int_equal(auth_password_hash(&fast, big, &h), -EINVAL);
    assert_null(h);
    free(big);
}

static void test_default_config_uses_owasp_argon2id_parameters(void **state)
{
    (void)state;
    struct auth_config cfg;
    auth_config_defaults(&cfg);
    assert_int_equal(cfg.argon2.m_cost_kib, 19456);
    assert_int_equal(cfg.argon2.t_cost, 2);
    assert_int_equal(cfg.argon2.parallelism, 1);
    assert_string_equal(cfg.pam_service, "atrium");
    assert_int_equal(cfg.account.threshold, 5);
    assert_int_equal(cfg.account.base_s, 60);
}

/* The decoy checked for unknown names must cost what a real hash costs:
 * the same algorithm, parameters and salt and digest lengths, so argon2
 * runs in full and says "mismatch" (not "malformed", which returns early). */
static void test_decoy_is_a_well_formed_hash_of_no_password(void **state)
{
    (void)state;
    char *d = NULL, *e = NULL;
    assert_int_equal(auth_password_decoy(&fast, &d), 0);
    assert_int_equal(auth_password_decoy(&fast, &e), 0);
    assert_true(strncmp(d, "$argon2id$v=19$m=64,t=1,p=1$", 28) == 0);
    assert_false(auth_password_needs_rehash(&fast, d));
    assert_string_not_equal(d, e);
    assert_int_equal(auth_password_verify(d, "pw"), -EACCES);
    assert_int_equal(auth_password_verify(d, ""), -EACCES);
    free(d);
    free(e);
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Every broker connection's auth context makes a decoy at start: making one
 * must not run argon2.  CPU time of this thread, so a loaded machine does
 * not matter: 100 decoys cost less than one hash with the production cost. */
static void test_decoy_costs_less_than_one_real_hash(void **state)
{
    (void)state;
    struct auth_config cfg;
    auth_config_defaults(&cfg);
    char *h = NULL;
    double t0 = cpu_s();
    assert_int_equal(auth_password_hash(&cfg.argon2, "pw", &h), 0);
    double one_hash = cpu_s() - t0;
    free(h);
    t0 = cpu_s();
    for (int i = 0; i < 100; i++) {
        assert_int_equal(auth_password_decoy(&cfg.argon2, &h), 0);
        free(h);
    }
    double hundred_decoys = cpu_s() - t0;
    print_message("one argon2id hash %.1f ms CPU, 100 decoys %.3f ms CPU\n", one_hash * 1e3,
                  hundred_decoys * 1e3);
    assert_true(hundred_decoys < one_hash);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_verifies_only_its_own_password),
        cmocka_unit_test(test_each_hash_gets_its_own_salt),
        cmocka_unit_test(test_hash_records_argon2id_and_its_parameters),
        cmocka_unit_test(test_needs_rehash_when_parameters_differ),
        cmocka_unit_test(test_malformed_hash_is_refused_not_accepted),
        cmocka_unit_test(test_empty_and_oversized_passwords_are_not_hashed),
        cmocka_unit_test(test_default_config_uses_owasp_argon2id_parameters),
        cmocka_unit_test(test_decoy_is_a_well_formed_hash_of_no_password),
        cmocka_unit_test(test_decoy_costs_less_than_one_real_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
