/* Entitlements: a person sees exactly the pools given to them or their groups. */
#include "auth-test.h"

#include "pgtest.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

/* Pools belong to pool-manager/; tests only need rows to point at. */
static int64_t make_pool(struct authfix *f, const char *name)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "INSERT INTO pools (name) VALUES ('%s')", name);
    assert_int_equal(pgt_exec(f->conninfo, sql), 0);
    snprintf(sql, sizeof(sql), "SELECT id FROM pools WHERE name = '%s'", name);
    return authfix_count(f, sql);
}

static int64_t make_user(struct authfix *f, const char *name)
{
    int64_t id;
    assert_int_equal(auth_local_user_create(f->auth, name, "pw", AUTH_ROLE_USER, &id), 0);
    return id;
}

static void assert_pools(struct authfix *f, int64_t user, const int64_t *want, size_t n_want)
{
    int64_t *ids = NULL;
    size_t n = 99;
    assert_int_equal(auth_user_pools(f->auth, user, &ids, &n), 0);
    assert_int_equal(n, n_want);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ids[i], want[i]);
    free(ids);
}

static bool entitled(struct authfix *f, int64_t user, int64_t pool)
{
    bool e = false;
    assert_int_equal(auth_entitled(f->auth, user, pool, &e), 0);
    return e;
}

static void test_user_sees_only_entitled_pools(void **state)
{
    struct authfix *f = *state;
    int64_t p1 = make_pool(f, "office"), p2 = make_pool(f, "cad"), p3 = make_pool(f, "lab");
    make_pool(f, "secret");
    int64_t ann = make_user(f, "ann"), bob = make_user(f, "bob"), cy = make_user(f, "cy");
    int64_t eng;
    assert_int_equal(db_group_create(f->db, "engineers", "local", "", &eng), 0);
    assert_int_equal(db_membership_add(f->db, bob, eng), 0);

    assert_int_equal(db_entitlement_add_user(f->db, p1, ann, NULL), 0);
    assert_int_equal(db_entitlement_add_user(f->db, p1, bob, NULL), 0);
    assert_int_equal(db_entitlement_add_group(f->db, p2, eng, NULL), 0);
    assert_int_equal(db_entitlement_add_group(f->db, p1, eng, NULL), 0);
    assert_int_equal(db_entitlement_add_user(f->db, p3, ann, NULL), 0);
    assert_int_equal(db_entitlement_add_user(f->db, p3, ann, NULL), -EEXIST);

    assert_pools(f, ann, (int64_t[]){p1, p3}, 2);
    /* Direct and through the group, p1 listed once. */
    assert_pools(f, bob, (int64_t[]){p1, p2}, 2);
    assert_pools(f, cy, NULL, 0);
    assert_true(entitled(f, bob, p2));
    assert_false(entitled(f, ann, p2));
    assert_false(entitled(f, cy, p1));
    assert_false(entitled(f, bob, p3));
}

static void test_disabled_user_has_no_pools(void **state)
{
    struct authfix *f = *state;
    int64_t p1 = make_pool(f, "office");
    int64_t ann = make_user(f, "ann");
    assert_int_equal(db_entitlement_add_user(f->db, p1, ann, NULL), 0);
    assert_true(entitled(f, ann, p1));
    assert_int_equal(db_user_set_disabled(f->db, ann, true), 0);
    assert_false(entitled(f, ann, p1));
    assert_pools(f, ann, NULL, 0);
}

static void test_unix_group_sync_touches_only_unix_groups(void **state)
{
    struct authfix *f = *state;
    int64_t p_eng = make_pool(f, "eng"), p_local = make_pool(f, "local");
    int64_t ann = make_user(f, "ann");
    int64_t g_unix, g_other, g_local;
    assert_int_equal(db_group_create(f->db, "engineering", "unix", "", &g_unix), 0);
    assert_int_equal(db_group_create(f->db, "sales", "unix", "", &g_other), 0);
    assert_int_equal(db_group_create(f->db, "helpdesk", "local", "", &g_local), 0);
    assert_int_equal(db_entitlement_add_group(f->db, p_eng, g_unix, NULL), 0);
    assert_int_equal(db_entitlement_add_group(f->db, p_local, g_local, NULL), 0);
    assert_int_equal(db_membership_add(f->db, ann, g_local), 0);

    int n = -1;
    const char *groups1[] = {"engineering", "users", "helpdesk", NULL};
    assert_int_equal(db_membership_sync_unix(f->db, ann, groups1, &n), 0);
    /* "users" is not declared, and "helpdesk" is a local group: not matched. */
    assert_int_equal(n, 1);
    assert_pools(f, ann, (int64_t[]){p_eng, p_local}, 2);

    const char *groups2[] = {"sales", NULL};
    assert_int_equal(db_membership_sync_unix(f->db, ann, groups2, &n), 0);
    assert_int_equal(n, 1);
    /* Left engineering in Unix: loses its pool; the local group stays. */
    assert_pools(f, ann, (int64_t[]){p_local}, 1);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM memberships"), 2);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, authfix_setup, authfix_teardown)
    const struct CMUnitTest tests[] = {
        T(test_user_sees_only_entitled_pools),
        T(test_disabled_user_has_no_pools),
        T(test_unix_group_sync_touches_only_unix_groups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
