/* Specification of pool definitions and golden-image versions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pgtest-db.h"
#include "pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fx {
    char *conninfo;
    struct db *db;
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    if (!fx || pgt_db_fresh(&fx->conninfo, &fx->db) < 0)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    db_close(fx->db);
    pgt_db_drop(fx->conninfo);
    free(fx);
    return 0;
}

static struct db_pool named(const char *name)
{
    struct db_pool p;
    pool_defaults(&p);
    snprintf(p.name, sizeof(p.name), "%s", name);
    return p;
}

static void test_validation_names_the_problem(void **state)
{
    (void)state;
    struct atr_error err = {0};
    struct db_pool p = named("ok-pool_1.x");
    assert_int_equal(pool_validate(&p, &err), 0);

    p = named("-bad");
    assert_int_equal(pool_validate(&p, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "pool name '-bad'"));
    p = named("x'; DROP TABLE pools; --");
    assert_int_equal(pool_validate(&p, &err), -EINVAL);

    p = named("p");
    p.min_size = 5;
    p.max_size = 3;
    assert_int_equal(pool_validate(&p, &err), -EINVAL);
    assert_string_equal(err.msg, "min (5) must not exceed max (3)");
    p = named("p");
    p.spare = 11;
    assert_int_equal(pool_validate(&p, &err), -EINVAL);
    assert_string_equal(err.msg, "spare (11) must not exceed max (10)");
    p = named("p");
    p.protocols = 0;
    assert_int_equal(pool_validate(&p, &err), -EINVAL);
    p = named("p");
    snprintf(p.assignment, sizeof(p.assignment), "shared");
    assert_int_equal(pool_validate(&p, &err), -EINVAL);
    p = named("p");
    snprintf(p.name_pattern, sizeof(p.name_pattern), "desk");
    assert_int_equal(pool_validate(&p, &err), -EINVAL);
    assert_string_equal(err.msg, "naming pattern 'desk' must contain {n}");
    p = named("p");
    snprintf(p.name_pattern, sizeof(p.name_pattern), "{pool} {n}");
    assert_int_equal(pool_validate(&p, &err), -EINVAL);
    p = named("p");
    p.memory_mb = 10;
    assert_int_equal(pool_validate(&p, &err), -EINVAL);
}

static void test_vm_names_follow_the_pattern(void **state)
{
    (void)state;
    char buf[64];
    assert_int_equal(pool_vm_name("{pool}-{n}", "office", 12, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "office-12");
    assert_int_equal(pool_vm_name("d{n}.{pool}", "lab", 3, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "d3.lab");
    assert_int_equal(pool_vm_name("{pool}/{n}", "lab", 3, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(pool_vm_name("{pool}-{n}", "lab", 3, buf, 5), -EINVAL);
}

static void test_pool_create_read_update_delete(void **state)
{
    struct fx *fx = *state;
    struct atr_error err = {0};
    struct db_pool p = named("office");
    p.protocols = DB_PROTO_SPICE | DB_PROTO_VNC;
    p.min_size = 2;
    p.max_size = 20;
    p.spare = 3;
    int64_t id = 0;
    assert_int_equal(pool_create(fx->db, &p, &id, &err), 0);
    assert_int_equal(pool_create(fx->db, &p, &id, &err), -EEXIST);
    assert_string_equal(err.msg, "a pool named 'office' already exists");

    struct db_pool got;
    assert_int_equal(db_pool_get(fx->db, id, &got), 0);
    assert_string_equal(got.name, "office");
    assert_int_equal(got.protocols, DB_PROTO_SPICE | DB_PROTO_VNC);
    assert_int_equal(got.spare, 3);
    assert_string_equal(got.assignment, "floating");
    assert_true(got.enabled);

    got.max_size = 4;
    got.spare = 4;
    snprintf(got.assignment, sizeof(got.assignment), "dedicated");
    assert_int_equal(pool_update(fx->db, &got, &err), 0);
    struct db_pool again;
    assert_int_equal(db_pool_get_by_name(fx->db, "office", &again), 0);
    assert_int_equal(again.max_size, 4);
    assert_string_equal(again.assignment, "dedicated");
    got.id = id + 100;
    assert_int_equal(pool_update(fx->db, &got, &err), -ENOENT);

    struct db_pool *all = NULL;
    size_t n = 0;
    struct db_pool second = named("lab");
    int64_t id2;
    assert_int_equal(pool_create(fx->db, &second, &id2, &err), 0);
    assert_int_equal(db_pool_list(fx->db, &all, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(all[0].name, "lab");
    free(all);

    char sql[120];
    snprintf(sql, sizeof(sql), "INSERT INTO vms (name, pool_id) VALUES ('office-1', %lld)",
             (long long)id);
    assert_int_equal(pgt_exec(fx->conninfo, sql), 0);
    assert_int_equal(pool_delete(fx->db, id, &err), -EBUSY);
    assert_non_null(strstr(err.msg, "still has VMs"));
    assert_int_equal(pgt_exec(fx->conninfo, "DELETE FROM vms"), 0);
    assert_int_equal(pool_delete(fx->db, id, &err), 0);
    assert_int_equal(pool_delete(fx->db, id, &err), -ENOENT);
}

static void test_image_versions_are_numbered_and_protected_while_used(void **state)
{
    struct fx *fx = *state;
    struct atr_error err = {0};
    int64_t v1, v2, other;
    int n1, n2, no;
    assert_int_equal(db_image_version_new(fx->db, "debian", "first", &v1, &n1), 0);
    assert_int_equal(db_image_version_new(fx->db, "debian", "second", &v2, &n2), 0);
    assert_int_equal(db_image_version_new(fx->db, "windows", "", &other, &no), 0);
    assert_int_equal(n1, 1);
    assert_int_equal(n2, 2);
    assert_int_equal(no, 1);

    /* a pool cannot use a version that is still importing */
    struct db_pool p = named("office");
    p.image_version_id = v1;
    int64_t pid;
    assert_int_equal(pool_create(fx->db, &p, &pid, &err), -EINVAL);
    assert_string_equal(err.msg, "image debian version 1 is importing, not ready");

    struct db_image_version iv = {.id = v1};
    snprintf(iv.path, sizeof(iv.path), "/var/lib/atrium/images/debian-1.qcow2");
    snprintf(iv.sha256, sizeof(iv.sha256), "%064d", 0);
    iv.size_bytes = 1000;
    assert_int_equal(db_image_version_ready(fx->db, &iv), 0);
    assert_int_equal(db_image_version_ready(fx->db, &iv), -ENOENT); /* immutable once ready */
    assert_int_equal(db_image_version_failed(fx->db, v2, "bad checksum"), 0);
    assert_int_equal(pool_create(fx->db, &p, &pid, &err), 0);

    struct db_image_version *list = NULL;
    size_t n = 0;
    assert_int_equal(db_image_version_list(fx->db, "debian", &list, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(list[0].version, 2);
    assert_string_equal(list[0].state, "failed");
    assert_string_equal(list[1].state, "ready");
    free(list);

    assert_int_equal(db_image_version_delete(fx->db, v1), -EBUSY);
    assert_int_equal(db_image_version_delete(fx->db, v2), 0);
    assert_int_equal(pool_delete(fx->db, pid, &err), 0);
    assert_int_equal(db_image_version_delete(fx->db, v1), 0);
    assert_int_equal(db_image_version_delete(fx->db, v1), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validation_names_the_problem),
        cmocka_unit_test(test_vm_names_follow_the_pattern),
        cmocka_unit_test_setup_teardown(test_pool_create_read_update_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_image_versions_are_numbered_and_protected_while_used,
                                        setup, teardown),
    };
    return cmocka_run_group_tests_name("pool.define", tests, NULL, NULL);
}
