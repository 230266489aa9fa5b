/*
 * Instant clones with libatrium-hv, the real QEMU (TCG) and the test guest:
 * a template boots once with its RAM in a file and saves its device state;
 * two clones resume from it, each gets its own identity through the
 * org.atrium.identity port, and their serial logs prove it (different MAC
 * addresses and hostnames, no second boot).
 *
 * Every QEMU the test starts is killed by its recorded pid and waited for
 * in the teardown, also after a failed assertion; the temp dir goes too.
 */
#include "vmset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define BOOT_TIMEOUT_MS 240000
#define STEP_TIMEOUT_MS 60000
#define MEMORY_MB 256

static struct {
    char dir[64]; /* short: unix socket paths must fit sun_path */
    char tpl[96];
    struct vs_guest g;
    struct vs vs;
} T = {.vs.inotify = -1};

struct serial_wait {
    const char *path, *needle;
};

static bool cond_serial(const void *arg)
{
    const struct serial_wait *w = arg;
    return vs_file_has(w->path, w->needle);
}

static void def_init(struct hv_vm_def *d, int64_t id, const char *name, const char *disk,
                     const char *ram, bool shared)
{
    *d = (struct hv_vm_def){.id = id,
                            .name = name,
                            .vcpus = 1,
                            .memory_mb = MEMORY_MB,
                            .disk_path = disk,
                            .boot = HV_BOOT_KERNEL,
                            .kernel = T.g.kernel,
                            .initrd = T.g.initrd,
                            .cmdline = T.g.cmdline,
                            .nic = HV_NIC_USER,
                            .mac = "52:54:00:00:00:01",
                            .accel = HV_ACCEL_TCG,
                            .ram_path = ram,
                            .ram_shared = shared,
                            .incoming_defer = !shared,
                            .identity_port = true};
}

static void start(int slot, const struct hv_vm_def *d)
{
    struct atr_error err = {0};
    if (vs_start(&T.vs, slot, d, &err) < 0)
        fail_msg("start %s: %s", d->name, err.msg);
}

static int setup(void **state)
{
    (void)state;
    const char *g = getenv("ATRIUM_GUEST_DIR");
    if (!g || vs_guest_load(g, &T.g) < 0)
        return -1;
    snprintf(T.dir, sizeof(T.dir), "/tmp/instant-test-XXXXXX");
    if (!mkdtemp(T.dir))
        return -1;
    char runtime[96];
    snprintf(runtime, sizeof(runtime), "%s/run", T.dir);
    snprintf(T.tpl, sizeof(T.tpl), "%s/tpl", T.dir);
    mkdir(T.tpl, 0700);
    return vs_init(&T.vs, runtime) < 0 ? -1 : 0;
}

static void rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char sub[PATH_MAX];
        snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
        struct stat st;
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
            rm_tree(sub);
        else
            unlink(sub);
    }
    closedir(d);
    rmdir(path);
}

static int teardown(void **state)
{
    (void)state;
    vs_close(&T.vs);
    rm_tree(T.dir);
    return 0;
}

/* Boot the template, wait until it settled, save it; returns the save's stats. */
static void make_template(const struct hv_instant_files *f)
{
    struct atr_error err = {0};
    assert_int_equal(hv_storage_clone(NULL, T.g.golden, f->disk, &err), 0);
    struct hv_vm_def d;
    def_init(&d, 1, "template", f->disk, f->ram, true);
    int64_t t0 = atr_now_mono_ms();
    start(0, &d);
    struct vs_vm *t = &T.vs.vms[0];
    const char *serial = hv_vm_paths(t->vm)->serial_log;
    /* Settled: the guest opened the identity port (QMP VSERPORT_CHANGE) and
     * printed its boot-time marker. */
    assert_true(vs_drive_until(&T.vs, vs_cond_flag, &t->port_open, BOOT_TIMEOUT_MS));
    struct serial_wait w = {serial, "ATRIUM-MARK: NONE"};
    assert_true(vs_drive_until(&T.vs, cond_serial, &w, BOOT_TIMEOUT_MS));
    int64_t t1 = atr_now_mono_ms();

    assert_int_equal(vs_save_start(t, f->state), 0);
    assert_true(vs_drive_until(&T.vs, vs_cond_flag, &t->save_done, STEP_TIMEOUT_MS));
    int64_t t2 = atr_now_mono_ms();
    assert_int_equal(t->save_err, 0);
    assert_string_equal(t->st.status, "completed");
    assert_int_equal(hv_instant_save_check(&t->st, MEMORY_MB), 0);
    struct stat st;
    assert_int_equal(stat(f->state, &st), 0);
    printf("template: boot to settled %" PRId64 " ms, save %" PRId64
           " ms, state file %lld bytes, RAM transferred %" PRId64 " bytes\n",
           t1 - t0, t2 - t1, (long long)st.st_size, t->st.ram_transferred);
    /* The guest's RAM stayed in the file, not in the stream. */
    assert_true(st.st_size < MEMORY_MB * 1024 * 1024 / 4);
    vs_stop(&T.vs, 0, 10000);
}

struct clone_result {
    int64_t start_ms; /* hv_vm_start to RUNNING */
    char line[256];   /* its ATRIUM-IDENTITY line */
};

static void clone_up(int slot, const struct hv_instant_files *f, const char *name, const char *mac,
                     struct clone_result *res)
{
    struct atr_error err = {0};
    char disk[256];
    snprintf(disk, sizeof(disk), "%s/%s.qcow2", T.dir, name);
    assert_int_equal(hv_storage_clone(NULL, f->disk, disk, &err), 0);
    struct hv_vm_def d;
    def_init(&d, slot + 1, name, disk, f->ram, false);

    int64_t t0 = atr_now_mono_ms();
    start(slot, &d);
    struct vs_vm *t = &T.vs.vms[slot];
    assert_int_equal(vs_load_start(t, f->state), 0);
    assert_true(vs_drive_until(&T.vs, vs_cond_flag, &t->load_done, STEP_TIMEOUT_MS));
    if (t->load_err)
        fail_msg("load %s: %s", name, t->load_msg);
    assert_true(vs_drive_until(&T.vs, vs_cond_running, t, STEP_TIMEOUT_MS));
    res->start_ms = atr_now_mono_ms() - t0;

    assert_int_equal(hv_instant_identity_send(hv_vm_paths(t->vm), mac, name, &err), 0);
    char want[128];
    snprintf(want, sizeof(want), "ATRIUM-IDENTITY mac=%s hostname=%s seeded=64", mac, name);
    const char *serial = hv_vm_paths(t->vm)->serial_log;
    struct serial_wait w = {serial, want};
    if (!vs_drive_until(&T.vs, cond_serial, &w, STEP_TIMEOUT_MS)) {
        char *s = vs_slurp(serial);
        fail_msg("%s: no '%s' on its serial port; it has:\n%s", name, want, s ? s : "");
    }
    snprintf(res->line, sizeof(res->line), "%s", want);
    /* It resumed the template's guest: no second boot on its serial port. */
    assert_false(vs_file_has(serial, "ATRIUM-BOOT-OK"));

    /* The guest's driver told QEMU the new address as well. */
    json_t *ret = NULL;
    assert_int_equal(hv_qmp_call(hv_vm_qmp(t->vm), "query-rx-filter", NULL, 10000, &ret, &err), 0);
    const char *main_mac = json_string_value(json_object_get(json_array_get(ret, 0), "main-mac"));
    assert_non_null(main_mac);
    assert_string_equal(main_mac, mac);
    json_decref(ret);
}

static void test_two_clones_of_one_template_come_up_with_their_own_mac_and_hostname(void **state)
{
    (void)state;
    struct hv_instant_files f;
    assert_int_equal(hv_instant_files_init(T.tpl, &f), 0);
    make_template(&f);
    char before[65], after[65];
    assert_int_equal(hv_storage_sha256(f.disk, before), 0);

    struct clone_result a, b;
    clone_up(1, &f, "clone-a", "52:54:00:12:34:0a", &a);
    clone_up(2, &f, "clone-b", "52:54:00:12:34:0b", &b);
    printf("clone-a: start to running %" PRId64 " ms; %s\n", a.start_ms, a.line);
    printf("clone-b: start to running %" PRId64 " ms; %s\n", b.start_ms, b.line);
    assert_string_not_equal(a.line, b.line);

    /* Both guests still answer: a typed line on clone-a reaches its serial
     * port (the resumed shell is live, not a frozen image). */
    struct atr_error err = {0};
    const char *keys[] = {"s", "h", "o", "w", "ret"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        assert_int_equal(hv_qmp_call(hv_vm_qmp(T.vs.vms[1].vm), "send-key",
                                     json_pack("{s:[{s:s,s:s}]}", "keys", "type", "qcode", "data",
                                               keys[i]),
                                     10000, NULL, &err),
                         0);
    struct serial_wait w = {hv_vm_paths(T.vs.vms[1].vm)->serial_log, "ATRIUM-TYPED: show"};
    assert_true(vs_drive_until(&T.vs, cond_serial, &w, STEP_TIMEOUT_MS));

    /* The template's disk is frozen: clones write only their own overlays. */
    assert_int_equal(hv_storage_sha256(f.disk, after), 0);
    assert_string_equal(before, after);

    /* A bad identity is refused before it reaches the guest. */
    assert_int_equal(hv_instant_identity_send(hv_vm_paths(T.vs.vms[1].vm), "52:54:00:zz:00:01",
                                              "x", &err),
                     -EINVAL);
    assert_int_equal(
        hv_instant_identity_send(hv_vm_paths(T.vs.vms[1].vm), "52:54:00:12:34:0a", "a b", &err),
        -EINVAL);
}

static void test_a_clone_given_a_state_that_is_not_one_fails_cleanly(void **state)
{
    (void)state;
    /* Garbage where the template's device state should be: QEMU refuses
     * the stream and exits; nothing hangs. */
    struct atr_error err = {0};
    char ram[128], disk[128], bad[128];
    snprintf(ram, sizeof(ram), "%s/badram", T.dir);
    snprintf(disk, sizeof(disk), "%s/bad.qcow2", T.dir);
    snprintf(bad, sizeof(bad), "%s/badstate", T.dir);
    assert_int_equal(hv_storage_clone(NULL, T.g.golden, disk, &err), 0);
    int fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "not a migration stream\n", 23), 23);
    close(fd);
    struct hv_vm_def d;
    def_init(&d, 4, "bad", disk, ram, false);
    start(3, &d);
    struct vs_vm *v = &T.vs.vms[3];
    assert_int_equal(vs_load_start(v, bad), 0);
    assert_true(vs_drive_until(&T.vs, vs_cond_exited, v, STEP_TIMEOUT_MS));
    assert_false(hv_vm_exit_clean(v->vm));
    printf("bad state: %s\n", hv_vm_exit_message(v->vm));
    vs_stop(&T.vs, 3, 10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_clones_of_one_template_come_up_with_their_own_mac_and_hostname),
        cmocka_unit_test(test_a_clone_given_a_state_that_is_not_one_fails_cleanly),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
