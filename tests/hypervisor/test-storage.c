/* Golden images and linked clones, with the real qemu-img. */
#include "hv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/atrium-hv-storage-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void path_of(char *buf, const char *leaf)
{
    snprintf(buf, PATH_MAX, "%s/%s", dir, leaf);
}

/* Run a shell command built from trusted test strings; its exit status. */
__attribute__((format(printf, 1, 2))) static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void make_raw(const char *path)
{
    /* 8 MiB raw disk with a recognisable block at 1 MiB. */
    assert_int_equal(sh("truncate -s 8M '%s' && printf ATRIUM-GOLDEN | dd of='%s' bs=1 "
                        "seek=1048576 conv=notrunc status=none",
                        path, path),
                     0);
}

static void test_raw_import_becomes_readonly_qcow2_with_checksum(void **state)
{
    (void)state;
    char raw[PATH_MAX], gold[PATH_MAX];
    path_of(raw, "src.raw");
    path_of(gold, "golden.qcow2");
    make_raw(raw);
    struct hv_image_info info;
    struct atr_error err = {0};
    assert_int_equal(hv_storage_import(NULL, raw, gold, &info, &err), 0);
    assert_string_equal(info.source_format, "raw");
    assert_int_equal(info.virtual_size_bytes, 8 << 20);
    assert_true(info.size_bytes > 0 && info.size_bytes < (8 << 20));
    assert_int_equal(sh("qemu-img info '%s' | grep -q 'file format: qcow2'", gold), 0);
    /* Same guest-visible bytes as the source. */
    assert_int_equal(sh("qemu-img compare -q -f raw -F qcow2 '%s' '%s'", raw, gold), 0);
    struct stat st;
    assert_int_equal(stat(gold, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0444);
    /* The checksum is the file's, computed independently. */
    assert_int_equal(sh("echo '%s  %s' | sha256sum -c --status", info.sha256, gold), 0);
    /* Importing over an existing image is refused. */
    assert_int_equal(hv_storage_import(NULL, raw, gold, &info, &err), -EEXIST);
}

static void test_qcow2_import_keeps_contents(void **state)
{
    (void)state;
    char raw[PATH_MAX], q[PATH_MAX], gold[PATH_MAX];
    path_of(raw, "src.raw");
    path_of(q, "src.qcow2");
    path_of(gold, "golden.qcow2");
    make_raw(raw);
    assert_int_equal(sh("qemu-img convert -f raw -O qcow2 '%s' '%s'", raw, q), 0);
    struct hv_image_info info;
    assert_int_equal(hv_storage_import(NULL, q, gold, &info, NULL), 0);
    assert_string_equal(info.source_format, "qcow2");
    assert_int_equal(sh("qemu-img compare -q '%s' '%s'", raw, gold), 0);
}

static void test_import_refuses_other_formats_and_backed_images(void **state)
{
    (void)state;
    char vmdk[PATH_MAX], gold[PATH_MAX], base[PATH_MAX], ov[PATH_MAX];
    path_of(vmdk, "src.vmdk");
    path_of(gold, "golden.qcow2");
    path_of(base, "base.qcow2");
    path_of(ov, "ov.qcow2");
    assert_int_equal(sh("qemu-img create -q -f vmdk '%s' 16M", vmdk), 0);
    struct hv_image_info info;
    memset(&info, 0x5a, sizeof(info));
    struct atr_error err = {0};
    assert_int_equal(hv_storage_import(NULL, vmdk, gold, &info, &err), -EMEDIUMTYPE);
    assert_non_null(strstr(err.msg, "vmdk"));
    assert_int_equal(access(gold, F_OK), -1);
    assert_int_equal((unsigned char)info.sha256[0], 0x5a);
    assert_int_equal(sh("qemu-img create -q -f qcow2 '%s' 16M && qemu-img create -q -f qcow2 "
                        "-F qcow2 -b '%s' '%s'",
                        base, base, ov),
                     0);
    assert_int_equal(hv_storage_import(NULL, ov, gold, &info, &err), -EMEDIUMTYPE);
    assert_int_equal(hv_storage_import(NULL, "/nonexistent/x.raw", gold, &info, &err), -EPROTO);
    /* No temporary file left behind by the failures. */
    assert_int_equal(sh("test -z \"$(ls -A '%s' | grep tmp)\"", dir), 0);
}

static void test_linked_clone_writes_never_reach_the_golden_image(void **state)
{
    (void)state;
    char raw[PATH_MAX], gold[PATH_MAX], clone[PATH_MAX], backing[PATH_MAX];
    path_of(raw, "src.raw");
    path_of(gold, "golden.qcow2");
    path_of(clone, "vm1.qcow2");
    make_raw(raw);
    struct hv_image_info info;
    assert_int_equal(hv_storage_import(NULL, raw, gold, &info, NULL), 0);
    struct atr_error err = {0};
    assert_int_equal(hv_storage_clone(NULL, gold, clone, &err), 0);
    assert_int_equal(hv_storage_backing(NULL, clone, backing, sizeof(backing), &err), 0);
    assert_string_equal(backing, gold);
    int64_t used;
    assert_int_equal(hv_storage_usage(clone, &used), 0);
    assert_true(used > 0 && used < (1 << 20));
    assert_int_equal(sh("qemu-img compare -q '%s' '%s'", gold, clone), 0);

    assert_int_equal(sh("qemu-io -f qcow2 -c 'write -P 0xab 0 64k' '%s' >/dev/null", clone), 0);
    assert_int_equal(sh("qemu-img compare -q '%s' '%s'", gold, clone), 1);
    char sum[65];
    assert_int_equal(hv_storage_sha256(gold, sum), 0);
    assert_string_equal(sum, info.sha256);

    /* Reset: pristine again, and the golden image still untouched. */
    assert_int_equal(hv_storage_reset(NULL, clone, &err), 0);
    assert_int_equal(sh("qemu-img compare -q '%s' '%s'", gold, clone), 0);
    assert_int_equal(hv_storage_backing(NULL, clone, backing, sizeof(backing), &err), 0);
    assert_string_equal(backing, gold);
    assert_int_equal(hv_storage_sha256(gold, sum), 0);
    assert_string_equal(sum, info.sha256);

    assert_int_equal(hv_storage_clone(NULL, gold, clone, &err), -EEXIST);
    assert_int_equal(hv_storage_delete(clone), 0);
    assert_int_equal(access(clone, F_OK), -1);
    assert_int_equal(hv_storage_delete(clone), 0);
    assert_int_equal(hv_storage_reset(NULL, clone, &err), -ENOENT);
    assert_int_equal(hv_storage_clone(NULL, "relative.qcow2", clone, &err), -EINVAL);
}

static void test_reset_refuses_a_disk_that_is_not_a_clone(void **state)
{
    (void)state;
    char q[PATH_MAX];
    path_of(q, "own.qcow2");
    assert_int_equal(sh("qemu-img create -q -f qcow2 '%s' 16M", q), 0);
    struct atr_error err = {0};
    assert_int_equal(hv_storage_reset(NULL, q, &err), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_raw_import_becomes_readonly_qcow2_with_checksum),
        T(test_qcow2_import_keeps_contents),
        T(test_import_refuses_other_formats_and_backed_images),
        T(test_linked_clone_writes_never_reach_the_golden_image),
        T(test_reset_refuses_a_disk_that_is_not_a_clone),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
