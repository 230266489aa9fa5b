/* Metrics readers: /proc parsing and QEMU's query-blockstats / query-balloon replies. */
#include "hv.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* A QEMU 7.2 reply with the root node of a virtio disk and an empty CD. */
static const char *const blockstats =
    "[{\"device\": \"\", \"qdev\": \"/machine/peripheral/vda/virtio-backend\", \"node-name\": "
    "\"disk0\", \"stats\": {\"flush_total_time_ns\": 0, \"wr_highest_offset\": 8192, "
    "\"wr_total_time_ns\": 5, \"failed_wr_operations\": 0, \"wr_bytes\": 4096, "
    "\"rd_operations\": 31, \"rd_bytes\": 1187840, \"wr_operations\": 2, \"account_failed\": "
    "true, \"idle_time_ns\": 1}}, {\"device\": \"cd0\", \"stats\": {\"wr_bytes\": 0, "
    "\"rd_operations\": 1, \"rd_bytes\": 2048, \"wr_operations\": 0}}]";

static void test_blockstats_sum_every_device(void **state)
{
    (void)state;
    json_t *ret = json_loads(blockstats, 0, NULL);
    assert_non_null(ret);
    struct hv_vm_io io;
    assert_int_equal(hv_metrics_blockstats(ret, &io), 0);
    assert_int_equal(io.rd_bytes, 1187840 + 2048);
    assert_int_equal(io.rd_ops, 32);
    assert_int_equal(io.wr_bytes, 4096);
    assert_int_equal(io.wr_ops, 2);
    json_decref(ret);
}

static void test_malformed_replies_are_refused_and_output_untouched(void **state)
{
    (void)state;
    struct hv_vm_io io = {.rd_bytes = 7};
    json_t *bad = json_loads("[{\"stats\": {\"rd_bytes\": \"x\"}}]", 0, NULL);
    assert_int_equal(hv_metrics_blockstats(bad, &io), -EINVAL);
    json_decref(bad);
    bad = json_loads("{\"stats\": {}}", 0, NULL);
    assert_int_equal(hv_metrics_blockstats(bad, &io), -EINVAL);
    assert_int_equal(io.rd_bytes, 7);
    int64_t mb = 5;
    assert_int_equal(hv_metrics_balloon_mb(bad, &mb), -EINVAL);
    assert_int_equal(mb, 5);
    json_decref(bad);
}

static void test_balloon_size_in_mib(void **state)
{
    (void)state;
    json_t *ret = json_loads("{\"actual\": 268435456}", 0, NULL);
    int64_t mb = 0;
    assert_int_equal(hv_metrics_balloon_mb(ret, &mb), 0);
    assert_int_equal(mb, 256);
    json_decref(ret);
}

static void test_cpu_percent_of_one_cpu(void **state)
{
    (void)state;
    long hz = sysconf(_SC_CLK_TCK);
    /* hz ticks in 1000 ms = one full CPU; half of that in 2 s = 25 %. */
    assert_true(hv_metrics_cpu_pct(0, hz, 1000) > 99.9 && hv_metrics_cpu_pct(0, hz, 1000) < 100.1);
    assert_true(hv_metrics_cpu_pct(100, 100 + hz / 2, 2000) > 24.9);
    assert_true(hv_metrics_cpu_pct(100, 100 + hz / 2, 2000) < 25.1);
    assert_true(hv_metrics_cpu_pct(10, 5, 1000) == 0); /* counter went backwards: pid reused */
    assert_true(hv_metrics_cpu_pct(0, 10, 0) == 0);
}

static void test_proc_and_host_readings_are_sane(void **state)
{
    (void)state;
    struct hv_proc_stat ps;
    assert_int_equal(hv_metrics_proc(getpid(), &ps), 0);
    assert_true(ps.rss_kb > 100);
    volatile unsigned long spin = 0;
    int64_t end = atr_now_mono_ms() + 200;
    while (atr_now_mono_ms() < end)
        spin++;
    struct hv_proc_stat after;
    assert_int_equal(hv_metrics_proc(getpid(), &after), 0);
    assert_true(after.cpu_ticks > ps.cpu_ticks); /* 200 ms of spinning shows up */
    assert_int_equal(hv_metrics_proc(-1, &ps), -ENOENT);
    struct hv_host_stat hs;
    assert_int_equal(hv_metrics_host(&hs), 0);
    assert_true(hs.total_ticks > hs.busy_ticks && hs.busy_ticks > 0);
    assert_true(hs.mem_total_kb > hs.mem_available_kb && hs.mem_available_kb > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blockstats_sum_every_device),
        cmocka_unit_test(test_malformed_replies_are_refused_and_output_untouched),
        cmocka_unit_test(test_balloon_size_in_mib),
        cmocka_unit_test(test_cpu_percent_of_one_cpu),
        cmocka_unit_test(test_proc_and_host_readings_are_sane),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
