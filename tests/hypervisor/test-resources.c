/* hv_resources_effective and the QMP throttle arguments: what the boost does to limits. */
#include "hv.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static const struct hv_resources capped = {.cpu_weight = 300,
                                           .cpu_max_pct = 50,
                                           .memory_max_mb = 1024,
                                           .disk_iops = 200,
                                           .disk_bps = 1 << 20,
                                           .net_bps = 125000};

static void test_without_boost_the_row_is_applied_as_is(void **state)
{
    (void)state;
    struct hv_resources r;
    hv_resources_effective(&capped, false, false, &r);
    assert_memory_equal(&r, &capped, sizeof(r));
    struct hv_resources none = {0};
    hv_resources_effective(&none, false, false, &r);
    assert_int_equal(r.cpu_weight, 100); /* 0 = the default share */
}

static void test_boosted_vm_gets_top_weight_and_loses_every_cap(void **state)
{
    (void)state;
    struct hv_resources r;
    hv_resources_effective(&capped, true, false, &r);
    assert_int_equal(r.cpu_weight, HV_BOOST_WEIGHT);
    assert_int_equal(r.cpu_max_pct, 0);
    assert_int_equal(r.memory_max_mb, 0);
    assert_int_equal(r.disk_iops, 0);
    assert_int_equal(r.disk_bps, 0);
    assert_int_equal(r.net_bps, 0);
}

static void test_neighbours_of_a_boosted_vm_drop_weight_but_keep_caps(void **state)
{
    (void)state;
    struct hv_resources r;
    hv_resources_effective(&capped, false, true, &r);
    assert_int_equal(r.cpu_weight, HV_BOOST_OTHERS_WEIGHT);
    assert_int_equal(r.cpu_max_pct, 50);
    assert_int_equal(r.disk_iops, 200);
    struct hv_resources low = {.cpu_weight = 5};
    hv_resources_effective(&low, false, true, &r);
    assert_int_equal(r.cpu_weight, 5); /* already lower: kept */
}

static void test_throttle_args_name_the_disk_and_every_field(void **state)
{
    (void)state;
    json_t *a = hv_resources_throttle_args(&capped);
    assert_string_equal(json_string_value(json_object_get(a, "id")), HV_DISK_QDEV);
    assert_int_equal(json_integer_value(json_object_get(a, "iops")), 200);
    assert_int_equal(json_integer_value(json_object_get(a, "bps")), 1 << 20);
    const char *zero[] = {"bps_rd", "bps_wr", "iops_rd", "iops_wr"};
    for (size_t i = 0; i < 4; i++) {
        json_t *v = json_object_get(a, zero[i]);
        assert_true(json_is_integer(v)); /* QEMU refuses the command without them */
        assert_int_equal(json_integer_value(v), 0);
    }
    json_decref(a);
    struct hv_resources none = {0};
    a = hv_resources_throttle_args(&none);
    assert_int_equal(json_integer_value(json_object_get(a, "iops")), 0); /* 0 = unlimited */
    json_decref(a);
}

static void test_cgroup_init_refuses_slice_names_that_escape(void **state)
{
    (void)state;
    struct hv_cgroups cg;
    assert_int_equal(hv_cgroup_init("self", "../etc", &cg), -EINVAL);
    assert_int_equal(cg.mode, HV_CGROUP_NONE);
    assert_int_equal(hv_cgroup_init("self", "", &cg), -EINVAL);
    char dir[64];
    assert_int_equal(hv_cgroup_vm_dir(&cg, 1, "cpu", dir, sizeof(dir)), -EOPNOTSUPP);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_without_boost_the_row_is_applied_as_is),
        cmocka_unit_test(test_boosted_vm_gets_top_weight_and_loses_every_cap),
        cmocka_unit_test(test_neighbours_of_a_boosted_vm_drop_weight_but_keep_caps),
        cmocka_unit_test(test_throttle_args_name_the_disk_and_every_field),
        cmocka_unit_test(test_cgroup_init_refuses_slice_names_that_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
