/* The accelerator probe decides quickly and says why. */
#include "hv.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static void test_tcg_by_configuration_needs_no_probe(void **state)
{
    (void)state;
    struct hv_accel_result res;
    assert_int_equal(hv_accel_probe("tcg", 2000, &res), 0);
    assert_int_equal(res.accel, HV_ACCEL_TCG);
    assert_non_null(strstr(res.note, "configuration"));
    assert_true(res.took_ms < 100);
    assert_int_equal(hv_accel_probe("xen", 2000, &res), -EINVAL);
}

static void test_missing_device_is_reported(void **state)
{
    (void)state;
    char note[256] = "";
    assert_int_equal(hv_accel_kvm_check("/nonexistent/kvm", 2000, note, sizeof(note)), -ENOENT);
    assert_non_null(strstr(note, "/nonexistent/kvm"));
}

static void test_a_device_that_is_not_kvm_fails_the_probe(void **state)
{
    (void)state;
    char note[256] = "";
    int64_t start = atr_now_mono_ms();
    assert_int_equal(hv_accel_kvm_check("/dev/null", 2000, note, sizeof(note)), -ENODEV);
    assert_true(atr_now_mono_ms() - start < 2000);
    assert_non_null(strstr(note, "API version"));
}

/*
 * On this host class /dev/kvm may exist and hang guests: whatever happens,
 * the probe answers within its deadline (plus reaping), "auto" never fails,
 * and "kvm" fails exactly when "auto" fell back.
 */
static void test_auto_decides_within_the_deadline(void **state)
{
    (void)state;
    struct hv_accel_result res;
    int64_t start = atr_now_mono_ms();
    assert_int_equal(hv_accel_probe("auto", 2000, &res), 0);
    int64_t took = atr_now_mono_ms() - start;
    printf("# probe: accel=%s took=%lld ms note=%s\n", hv_accel_name(res.accel), (long long)took,
           res.note);
    assert_true(took < 3000);
    assert_true(res.note[0] != '\0');
    if (res.accel == HV_ACCEL_TCG)
        assert_non_null(strstr(res.note, "falling back to TCG"));
    struct hv_accel_result forced;
    int r = hv_accel_probe("kvm", 2000, &forced);
    if (res.accel == HV_ACCEL_KVM) {
        assert_int_equal(r, 0);
        assert_int_equal(forced.accel, HV_ACCEL_KVM);
    } else {
        assert_int_equal(r, -ENODEV);
        assert_non_null(strstr(forced.note, "KVM required"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcg_by_configuration_needs_no_probe),
        cmocka_unit_test(test_missing_device_is_reported),
        cmocka_unit_test(test_a_device_that_is_not_kvm_fails_the_probe),
        cmocka_unit_test(test_auto_decides_within_the_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
