/*
 * Replication's pieces on one host: what a query-named-block-nodes answer
 * says about the dirty bitmap (canned QEMU 7.2 answers), and the target's
 * layers and qemu-nbd with the real qemu-img, qemu-nbd and qemu-io.
 */
#include "hv.h"

#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

/* Trimmed from a QEMU 7.2 answer: the disk, its file node, the NBD client. */
#define NODES(bitmaps, extra)                                                                      \
    "[{\"node-name\": \"disk0\", \"drv\": \"qcow2\", \"image\": {\"virtual-size\": 67108864,"      \
    " \"filename\": \"/x/ov.qcow2\", \"format\": \"qcow2\"}, \"dirty-bitmaps\": " bitmaps "},"     \
    " {\"node-name\": \"disk0-file\", \"drv\": \"file\", \"image\": {\"virtual-size\": 1}}" extra  \
    "]"

static struct hv_rep_disk parse_ok(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    struct hv_rep_disk d;
    assert_int_equal(hv_replica_disk_parse(j, &d), 0);
    json_decref(j);
    return d;
}

static void test_disk_without_bitmap_needs_a_full_copy(void **state)
{
    (void)state;
    struct hv_rep_disk d = parse_ok(NODES("[]", ""));
    assert_int_equal(d.bitmap, HV_REP_BITMAP_NONE);
    assert_int_equal(d.virtual_size, 67108864);
    assert_false(d.nbd_node);
}

static void test_recording_bitmap_allows_an_incremental_copy(void **state)
{
    (void)state;
    struct hv_rep_disk d = parse_ok(NODES(
        "[{\"name\": \"atrium-rep\", \"recording\": true, \"persistent\": true,"
        " \"busy\": false, \"granularity\": 65536, \"count\": 131072}]",
        ", {\"node-name\": \"atrium-rep-nbd\", \"drv\": \"nbd\"}"));
    assert_int_equal(d.bitmap, HV_REP_BITMAP_OK);
    assert_true(d.nbd_node);
}

static void test_inconsistent_bitmap_is_not_trusted(void **state)
{
    (void)state;
    /* QEMU killed while the bitmap was in use: it comes back inconsistent. */
    struct hv_rep_disk d = parse_ok(NODES(
        "[{\"name\": \"other\", \"recording\": true, \"persistent\": false},"
        " {\"name\": \"atrium-rep\", \"recording\": true, \"persistent\": true,"
        " \"inconsistent\": true}]",
        ""));
    assert_int_equal(d.bitmap, HV_REP_BITMAP_BAD);
    d = parse_ok(NODES("[{\"name\": \"atrium-rep\", \"recording\": false, \"persistent\": true}]",
                       ""));
    assert_int_equal(d.bitmap, HV_REP_BITMAP_BAD);
}

static void test_malformed_answers_are_refused(void **state)
{
    (void)state;
    struct hv_rep_disk d = {.virtual_size = 7};
    json_t *j = json_loads("{\"return\": []}", 0, NULL);
    assert_int_equal(hv_replica_disk_parse(j, &d), -EINVAL);
    json_decref(j);
    j = json_loads("[{\"node-name\": \"disk1\"}, 3, {\"node-name\": 5}]", 0, NULL);
    assert_int_equal(hv_replica_disk_parse(j, &d), -ENOENT);
    json_decref(j);
    assert_int_equal(hv_replica_disk_parse(NULL, &d), -EINVAL);
    assert_int_equal(d.virtual_size, 7); /* left alone on failure */
}

static char dir[64];

static int run(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A layer over a base, written over NBD, reads as base + writes; merged down, the base does. */
static void test_layer_served_written_and_merged(void **state)
{
    (void)state;
    char base[128], layer[128], log[128], cmd[512];
    struct atr_error err = {0};
    snprintf(base, sizeof(base), "%s/base.qcow2", dir);
    snprintf(layer, sizeof(layer), "%s/1.qcow2", dir);
    snprintf(log, sizeof(log), "%s/nbd.log", dir);
    assert_int_equal(hv_replica_layer_create(NULL, NULL, base, 4 << 20, &err), 0);
    snprintf(cmd, sizeof(cmd), "qemu-io -f qcow2 -c 'write -q -P 0x11 0 1M' %s", base);
    assert_int_equal(run(cmd), 0);
    assert_int_equal(hv_replica_layer_create(NULL, base, layer, 4 << 20, &err), 0);
    assert_int_equal(hv_replica_layer_create(NULL, base, layer, 4 << 20, &err), -EEXIST);

    struct hv_nbd_server s;
    assert_int_equal(hv_replica_serve(NULL, layer, "127.0.0.1", log, &s, &err), 0);
    assert_true(s.port > 0);
    int status = -1;
    assert_int_equal(hv_replica_serve_reap(&s, &status), 0); /* listening, no client yet */
    /* The socket listened before serve returned: connect at once. */
    snprintf(cmd, sizeof(cmd),
             "qemu-io -f raw -c 'write -q -P 0x22 64k 64k' nbd://127.0.0.1:%d/" HV_REP_EXPORT,
             s.port);
    assert_int_equal(run(cmd), 0);
    /* One client came and went: qemu-nbd flushed and exited by itself. */
    struct pollfd p = {.fd = s.pidfd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 20000), 1);
    assert_int_equal(hv_replica_serve_reap(&s, &status), 1);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(hv_replica_serve_reap(&s, &status), 1);

    snprintf(cmd, sizeof(cmd),
             "qemu-io -r -f qcow2 -c 'read -q -P 0x11 0 64k' -c 'read -q -P 0x22 64k 64k'"
             " -c 'read -q -P 0x11 128k 896k' %s | grep -q . && exit 1; exit 0",
             layer);
    assert_int_equal(run(cmd), 0);
    assert_int_equal(hv_replica_layer_merge(NULL, layer, &err), 0);
    snprintf(cmd, sizeof(cmd),
             "qemu-io -r -f qcow2 -c 'read -q -P 0x22 64k 64k' %s | grep -q . && exit 1; exit 0",
             base);
    assert_int_equal(run(cmd), 0);
}

static void test_server_is_killed_and_reaped(void **state)
{
    (void)state;
    char layer[128], log[128];
    struct atr_error err = {0};
    snprintf(layer, sizeof(layer), "%s/2.qcow2", dir);
    snprintf(log, sizeof(log), "%s/nbd2.log", dir);
    assert_int_equal(hv_replica_layer_create(NULL, "", layer, 1 << 20, &err), 0);
    struct hv_nbd_server s;
    assert_int_equal(hv_replica_serve(NULL, layer, "127.0.0.1", log, &s, &err), 0);
    hv_replica_serve_kill(&s);
    int status = 0;
    assert_int_equal(hv_replica_serve_reap(&s, &status), 1);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(hv_replica_serve(NULL, layer, "not-an-address", log, &s, &err), -EINVAL);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/atrium-hv-replica.XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_disk_without_bitmap_needs_a_full_copy),
        cmocka_unit_test(test_recording_bitmap_allows_an_incremental_copy),
        cmocka_unit_test(test_inconsistent_bitmap_is_not_trusted),
        cmocka_unit_test(test_malformed_answers_are_refused),
        cmocka_unit_test(test_layer_served_written_and_merged),
        cmocka_unit_test(test_server_is_killed_and_reaped),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        rc = rc ? rc : 1;
    return rc;
}
