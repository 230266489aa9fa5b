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
#include "hv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define BOOT_TIMEOUT_MS 240000
#define STEP_TIMEOUT_MS 60000
#define MEMORY_MB 256
#define MAX_VMS 4

struct tvm {
    struct hv_vm *vm;
    struct hv_mig_job *job;
    bool port_open;
    bool save_done;
    int save_err;
    struct hv_mig_stats st;
    bool load_done;
    int load_err;
    char load_msg[400];
};

static struct {
    char dir[64]; /* short: unix socket paths must fit sun_path */
    char runtime[96], tpl[96];
    char kernel[PATH_MAX], initrd[PATH_MAX], golden[PATH_MAX], cmdline[256];
    struct tvm vms[MAX_VMS];
    pid_t pids[MAX_VMS];
    int inotify;
} T;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fwrite(chunk, 1, n, m);
    fclose(f);
    fclose(m);
    return buf;
}

static bool file_has(const char *path, const char *needle)
{
    char *s = slurp(path);
    bool yes = s && strstr(s, needle);
    free(s);
    return yes;
}

static void on_vm_event(struct hv_vm *vm, enum hv_qmp_event ev, json_t *data, void *userdata)
{
    (void)vm;
    struct tvm *t = userdata;
    /* VSERPORT_CHANGE: the guest opened the identity port (its reader runs). */
    const char *id = json_string_value(json_object_get(data, "id"));
    if (ev == HV_QMP_EVENT_OTHER && id && strcmp(id, "identity0") == 0 &&
        json_is_true(json_object_get(data, "open")))
        t->port_open = true;
    if (t->job)
        hv_migrate_event(t->job, ev, data);
}

static const struct hv_vm_ops vm_ops = {.event = on_vm_event};

static void on_saved(struct hv_mig_job *j, int error, const struct hv_mig_stats *s, void *userdata)
{
    (void)j;
    struct tvm *t = userdata;
    t->save_done = true;
    t->save_err = error;
    t->st = *s;
}

static const struct hv_mig_job_ops save_ops = {.done = on_saved};

static void on_loaded(int error, const char *msg, void *userdata)
{
    struct tvm *t = userdata;
    t->load_done = true;
    t->load_err = error;
    snprintf(t->load_msg, sizeof(t->load_msg), "%s", msg);
}

typedef bool (*cond_fn)(const void *arg);

/* Drive every VM's descriptors (and the serial logs' inotify) until @cond or @timeout_ms. */
static bool drive_until(cond_fn cond, const void *arg, int timeout_ms)
{
    int64_t deadline = atr_now_mono_ms() + timeout_ms;
    while (!cond(arg)) {
        struct pollfd fds[2 * MAX_VMS + 1];
        int owner[2 * MAX_VMS + 1], cnt[MAX_VMS] = {0};
        int n = 0, t = 200;
        for (int i = 0; i < MAX_VMS; i++) {
            if (!T.vms[i].vm)
                continue;
            cnt[i] = hv_vm_pollfds(T.vms[i].vm, &fds[n]);
            for (int k = 0; k < cnt[i]; k++)
                owner[n + k] = i;
            n += cnt[i];
            int vt = hv_vm_timeout_ms(T.vms[i].vm);
            if (vt >= 0 && vt < t)
                t = vt;
        }
        fds[n] = (struct pollfd){.fd = T.inotify, .events = POLLIN};
        int left = atr_deadline_left_ms(deadline);
        if (left == 0)
            return false;
        if (t > left)
            t = left;
        if (poll(fds, (nfds_t)n + 1, t) < 0 && errno != EINTR)
            return false;
        char buf[4096];
        while (read(T.inotify, buf, sizeof(buf)) > 0) {
        }
        for (int k = 0; k < n;) {
            int i = owner[k];
            hv_vm_dispatch(T.vms[i].vm, &fds[k], cnt[i]);
            k += cnt[i];
        }
    }
    return true;
}

static bool cond_true_flag(const void *arg)
{
    return *(const bool *)arg;
}

struct serial_wait {
    const char *path, *needle;
};

static bool cond_serial(const void *arg)
{
    const struct serial_wait *w = arg;
    return file_has(w->path, w->needle);
}

static bool cond_power(const void *arg)
{
    const struct tvm *t = arg;
    return t->vm && hv_vm_power(t->vm) == HV_VM_RUNNING;
}

static bool cond_exited(const void *arg)
{
    const struct tvm *t = arg;
    return hv_vm_power(t->vm) == HV_VM_EXITED;
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
                            .kernel = T.kernel,
                            .initrd = T.initrd,
                            .cmdline = T.cmdline,
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
    T.vms[slot] = (struct tvm){0};
    int r = hv_vm_start(d, T.runtime, "/usr/bin/qemu-system-x86_64", &vm_ops, &T.vms[slot],
                        &T.vms[slot].vm, &err);
    if (r < 0)
        fail_msg("start %s: %s", d->name, err.msg);
    T.pids[slot] = hv_vm_pid(T.vms[slot].vm);
    inotify_add_watch(T.inotify, hv_vm_paths(T.vms[slot].vm)->dir, IN_MODIFY | IN_CLOSE_WRITE);
}

static void stop(int slot)
{
    if (!T.vms[slot].vm)
        return;
    T.vms[slot].job = hv_migrate_job_free(T.vms[slot].job);
    hv_vm_kill(T.vms[slot].vm);
    drive_until(cond_exited, &T.vms[slot], 10000);
    T.vms[slot].vm = hv_vm_free(T.vms[slot].vm);
    T.pids[slot] = 0;
}

static int setup(void **state)
{
    (void)state;
    const char *g = getenv("ATRIUM_GUEST_DIR");
    if (!g)
        return -1;
    snprintf(T.kernel, sizeof(T.kernel), "%s/vmlinuz", g);
    snprintf(T.initrd, sizeof(T.initrd), "%s/initrd.img", g);
    snprintf(T.golden, sizeof(T.golden), "%s/disk.qcow2", g);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/cmdline", g);
    char *c = slurp(path);
    if (!c)
        return -1;
    c[strcspn(c, "\n")] = '\0';
    snprintf(T.cmdline, sizeof(T.cmdline), "%s", c);
    free(c);
    snprintf(T.dir, sizeof(T.dir), "/tmp/instant-test-XXXXXX");
    if (!mkdtemp(T.dir))
        return -1;
    snprintf(T.runtime, sizeof(T.runtime), "%s/run", T.dir);
    snprintf(T.tpl, sizeof(T.tpl), "%s/tpl", T.dir);
    mkdir(T.runtime, 0700);
    mkdir(T.tpl, 0700);
    T.inotify = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    return T.inotify < 0 ? -1 : 0;
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
    for (int i = 0; i < MAX_VMS; i++) {
        if (T.vms[i].vm) {
            stop(i);
        } else if (T.pids[i] > 0) {
            /* Started, then an assertion lost the handle: the pid we recorded. */
            kill(T.pids[i], SIGKILL);
            waitpid(T.pids[i], NULL, 0);
        }
    }
    if (T.inotify >= 0)
        close(T.inotify);
    rm_tree(T.dir);
    return 0;
}

/* Boot the template, wait until it settled, save it; returns the save's stats. */
static void make_template(const struct hv_instant_files *f)
{
    struct atr_error err = {0};
    assert_int_equal(hv_storage_clone(NULL, T.golden, f->disk, &err), 0);
    struct hv_vm_def d;
    def_init(&d, 1, "template", f->disk, f->ram, true);
    int64_t t0 = atr_now_mono_ms();
    start(0, &d);
    struct tvm *t = &T.vms[0];
    const char *serial = hv_vm_paths(t->vm)->serial_log;
    /* Settled: the guest opened the identity port (QMP VSERPORT_CHANGE) and
     * printed its boot-time marker. */
    assert_true(drive_until(cond_true_flag, &t->port_open, BOOT_TIMEOUT_MS));
    struct serial_wait w = {serial, "ATRIUM-MARK: NONE"};
    assert_true(drive_until(cond_serial, &w, BOOT_TIMEOUT_MS));
    int64_t t1 = atr_now_mono_ms();

    int fd = open(f->state, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(hv_instant_save_start(hv_vm_qmp(t->vm), fd, &save_ops, t, &t->job), 0);
    close(fd);
    assert_true(drive_until(cond_true_flag, &t->save_done, STEP_TIMEOUT_MS));
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
    stop(0);
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
    struct tvm *t = &T.vms[slot];
    int fd = open(f->state, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(hv_instant_load(hv_vm_qmp(t->vm), fd, on_loaded, t), 0);
    close(fd);
    assert_true(drive_until(cond_true_flag, &t->load_done, STEP_TIMEOUT_MS));
    if (t->load_err)
        fail_msg("load %s: %s", name, t->load_msg);
    assert_true(drive_until(cond_power, t, STEP_TIMEOUT_MS));
    res->start_ms = atr_now_mono_ms() - t0;

    assert_int_equal(hv_instant_identity_send(hv_vm_paths(t->vm), mac, name, &err), 0);
    char want[128];
    snprintf(want, sizeof(want), "ATRIUM-IDENTITY mac=%s hostname=%s seeded=64", mac, name);
    const char *serial = hv_vm_paths(t->vm)->serial_log;
    struct serial_wait w = {serial, want};
    if (!drive_until(cond_serial, &w, STEP_TIMEOUT_MS)) {
        char *s = slurp(serial);
        fail_msg("%s: no '%s' on its serial port; it has:\n%s", name, want, s ? s : "");
    }
    snprintf(res->line, sizeof(res->line), "%s", want);
    /* It resumed the template's guest: no second boot on its serial port. */
    assert_false(file_has(serial, "ATRIUM-BOOT-OK"));

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
        assert_int_equal(hv_qmp_call(hv_vm_qmp(T.vms[1].vm), "send-key",
                                     json_pack("{s:[{s:s,s:s}]}", "keys", "type", "qcode", "data",
                                               keys[i]),
                                     10000, NULL, &err),
                         0);
    struct serial_wait w = {hv_vm_paths(T.vms[1].vm)->serial_log, "ATRIUM-TYPED: show"};
    assert_true(drive_until(cond_serial, &w, STEP_TIMEOUT_MS));

    /* The template's disk is frozen: clones write only their own overlays. */
    assert_int_equal(hv_storage_sha256(f.disk, after), 0);
    assert_string_equal(before, after);

    /* A bad identity is refused before it reaches the guest. */
    assert_int_equal(hv_instant_identity_send(hv_vm_paths(T.vms[1].vm), "52:54:00:zz:00:01",
                                              "x", &err),
                     -EINVAL);
    assert_int_equal(
        hv_instant_identity_send(hv_vm_paths(T.vms[1].vm), "52:54:00:12:34:0a", "a b", &err),
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
    assert_int_equal(hv_storage_clone(NULL, T.golden, disk, &err), 0);
    int fd = open(bad, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "not a migration stream\n", 23), 23);
    lseek(fd, 0, SEEK_SET);
    struct hv_vm_def d;
    def_init(&d, 4, "bad", disk, ram, false);
    start(3, &d);
    assert_int_equal(hv_instant_load(hv_vm_qmp(T.vms[3].vm), fd, on_loaded, &T.vms[3]), 0);
    close(fd);
    assert_true(drive_until(cond_exited, &T.vms[3], STEP_TIMEOUT_MS));
    assert_false(hv_vm_exit_clean(T.vms[3].vm));
    printf("bad state: %s\n", hv_vm_exit_message(T.vms[3].vm));
    T.vms[3].vm = hv_vm_free(T.vms[3].vm);
    T.pids[3] = 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_clones_of_one_template_come_up_with_their_own_mac_and_hostname),
        cmocka_unit_test(test_a_clone_given_a_state_that_is_not_one_fails_cleanly),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
