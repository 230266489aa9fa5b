/*
 * atrium-hostd against the real PostgreSQL, the real QEMU (TCG) and the
 * test guest (tests/guest).  The test only writes desired state into the
 * database, as the broker and atriumctl do, and watches what hostd and the
 * guest do: rows (through LISTEN atrium_vm), the guest's serial log
 * (through inotify), the VM's sockets and processes.
 *
 * Clean-up is unconditional: the group teardown kills hostd and the process
 * group of every QEMU whose pid file is in the test's runtime directory,
 * waits for them through pidfds, and removes the directory and database.
 */
#include "db.h"
#include "vmset.h"
#include "pgtest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sched.h>
#include <sys/inotify.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define BOOT_TIMEOUT_MS 120000
#define STATE_TIMEOUT_MS 30000

static struct {
    char dir[64]; /* short: unix socket paths must fit sun_path */
    char runtime[96], data[96], config[96], hostd_log[96], notify_sock[96];
    char guest[1024];
    char *conninfo;
    struct db *db;
    pid_t hostd;
    int64_t host_id;
    struct hv_cgroups cg; /* where hostd puts VM cgroups (same cgroup as this test) */
    char slice[96];
} T;

/* ---------------------------------------------------------------- helpers */

static int64_t now_ms(void)
{
    return atr_now_mono_ms();
}

static int count_in_file(const char *path, const char *needle)
{
    char *s = vs_slurp(path);
    int n = 0;
    for (const char *p = s; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    free(s);
    return n;
}

/* Wait until @path holds @needle at least @count times (inotify on its directory). */
static bool wait_serial(const char *path, const char *needle, int count, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    *strrchr(dir, '/') = '\0';
    int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    assert_true(in >= 0);
    bool ok = false;
    if (inotify_add_watch(in, dir, IN_MODIFY | IN_CREATE | IN_CLOSE_WRITE) < 0)
        goto out;
    for (;;) {
        if (count_in_file(path, needle) >= count) {
            ok = true;
            break;
        }
        struct pollfd p = {.fd = in, .events = POLLIN};
        int left = atr_deadline_left_ms(deadline);
        if (left == 0 || poll(&p, 1, left) <= 0)
            break;
        char buf[4096];
        while (read(in, buf, sizeof(buf)) > 0) {
        }
    }
out:
    close(in);
    return ok;
}

typedef bool (*vm_pred)(const struct db_vm *v, const void *arg);

/* Wait until VM @id satisfies @pred (re-read on every atrium_vm notification). */
static bool wait_vm(int64_t id, vm_pred pred, const void *arg, int timeout_ms, struct db_vm *out)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        struct db_vm v;
        int r = db_vm_get(T.db, id, &v);
        if (r == 0 && pred(&v, arg)) {
            if (out)
                *out = v;
            return true;
        }
        if (r == -ENOENT && pred(NULL, arg))
            return true;
        int left = atr_deadline_left_ms(deadline);
        if (left == 0)
            return false;
        if (db_wait(T.db, left) < 0)
            return false;
        char *ch, *pl;
        while (db_notify_next(T.db, &ch, &pl) == 1) {
            free(ch);
            free(pl);
        }
    }
}

static bool power_is(const struct db_vm *v, const void *arg)
{
    return v && strcmp(v->actual_power, arg) == 0;
}

static bool state_is(const struct db_vm *v, const void *arg)
{
    return v && strcmp(v->state, arg) == 0;
}

static bool row_gone(const struct db_vm *v, const void *arg)
{
    (void)arg;
    return v == NULL;
}

static void start_hostd(void)
{
    int ns = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(ns >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", T.notify_sock);
    unlink(T.notify_sock);
    assert_int_equal(bind(ns, (struct sockaddr *)&sa, sizeof(sa)), 0);

    char exe[PATH_MAX];
    snprintf(exe, sizeof(exe), "%s/hypervisor/atrium-hostd", getenv("ATRIUM_BINARY_DIR"));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(T.hostd_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        setenv("NOTIFY_SOCKET", T.notify_sock, 1);
        execl(exe, exe, "--config", T.config, "--stop-timeout", "30", (char *)NULL);
        _exit(127);
    }
    T.hostd = pid;
    /* hostd says READY=1 once it registered, adopted and reconciled. */
    int64_t deadline = now_ms() + 30000;
    bool ready = false;
    while (!ready) {
        struct pollfd p = {.fd = ns, .events = POLLIN};
        int left = atr_deadline_left_ms(deadline);
        if (left == 0 || poll(&p, 1, left) <= 0)
            break;
        char buf[256];
        ssize_t n = recv(ns, buf, sizeof(buf) - 1, 0);
        if (n > 0) {
            buf[n] = '\0';
            ready = strstr(buf, "READY=1") != NULL;
        }
    }
    close(ns);
    if (!ready) {
        char *log = vs_slurp(T.hostd_log);
        print_error("hostd did not become ready; its log:\n%s\n", log ? log : "");
        free(log);
        fail();
    }
}

static void kill_and_wait(pid_t pid, bool group)
{
    int pfd = pidfd_open(pid, 0);
    if (group)
        kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    if (pfd >= 0) {
        struct pollfd p = {.fd = pfd, .events = POLLIN};
        poll(&p, 1, 5000);
        close(pfd);
    }
    waitpid(pid, NULL, WNOHANG);
}

static void kill_hostd(void)
{
    if (T.hostd > 0) {
        kill_and_wait(T.hostd, false);
        waitpid(T.hostd, NULL, 0);
        T.hostd = -1;
    }
}

/* Every QEMU this test's hostd started: by pid file under the runtime dir. */
static void kill_all_qemu(void)
{
    char vms[PATH_MAX];
    snprintf(vms, sizeof(vms), "%s/vms", T.runtime);
    DIR *d = opendir(vms);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char pf[PATH_MAX + 300];
        snprintf(pf, sizeof(pf), "%s/%s/qemu.pid", vms, e->d_name);
        FILE *f = fopen(pf, "re");
        int pid = 0;
        if (f) {
            if (fscanf(f, "%d", &pid) != 1)
                pid = 0;
            fclose(f);
        }
        if (pid > 1)
            kill_and_wait(pid, true); /* QEMU leads its own session and group */
    }
    closedir(d);
}

static int64_t create_vm_nic(const char *name, const char *overlay_leaf, const char *nic,
                             const char *bridge)
{
    char gold[PATH_MAX], overlay[PATH_MAX], kernel[PATH_MAX], initrd[PATH_MAX], cmdpath[PATH_MAX];
    snprintf(gold, sizeof(gold), "%s/disk.qcow2", T.guest);
    snprintf(overlay, sizeof(overlay), "%s/%s", T.data, overlay_leaf);
    snprintf(kernel, sizeof(kernel), "%s/vmlinuz", T.guest);
    snprintf(initrd, sizeof(initrd), "%s/initrd.img", T.guest);
    snprintf(cmdpath, sizeof(cmdpath), "%s/cmdline", T.guest);
    char *cmdline = vs_slurp(cmdpath);
    assert_non_null(cmdline);
    cmdline[strcspn(cmdline, "\n")] = '\0';
    struct atr_error err = {0};
    assert_int_equal(hv_storage_clone(NULL, gold, overlay, &err), 0);
    struct db_vm_new v = {
        .name = name,
        .host_id = T.host_id,
        .vcpus = 1,
        .memory_mb = 256,
        .disk_path = overlay,
        .boot = "kernel",
        .boot_kernel = kernel,
        .boot_initrd = initrd,
        .boot_cmdline = cmdline,
        .nic_mode = nic,
        .bridge = bridge,
    };
    int64_t id;
    assert_int_equal(db_vm_create(T.db, &v, &id), 0);
    free(cmdline);
    return id;
}

static int64_t create_vm(const char *name, const char *overlay_leaf)
{
    return create_vm_nic(name, overlay_leaf, "user", NULL);
}

static void vm_path(char *buf, int64_t id, const char *leaf)
{
    snprintf(buf, PATH_MAX, "%s/vms/%lld/%s", T.runtime, (long long)id, leaf);
}

/* Alive and not a zombie: an orphaned QEMU's exit is reaped by pid 1, maybe late. */
static bool process_alive(pid_t pid)
{
    if (pid <= 0 || kill(pid, 0) < 0)
        return false;
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')'); /* comm may hold spaces */
    return paren && paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X';
}

/* The socket inodes of every TCP/UDP socket on the host, from /proc/net. */
static bool inode_is_inet(const char *inode)
{
    static const char *const tables[] = {"/proc/net/tcp", "/proc/net/tcp6", "/proc/net/udp",
                                         "/proc/net/udp6"};
    for (size_t t = 0; t < 4; t++) {
        FILE *f = fopen(tables[t], "re");
        if (!f)
            continue;
        char line[512];
        bool found = false;
        if (!fgets(line, sizeof(line), f)) { /* header */
            fclose(f);
            continue;
        }
        while (!found && fgets(line, sizeof(line), f)) {
            char ino[32];
            /* sl local rem st tx:rx tr:tm retr uid timeout inode */
            if (sscanf(line, "%*s %*s %*s %*s %*s %*s %*s %*s %*s %31s", ino) == 1)
                found = strcmp(ino, inode) == 0;
        }
        fclose(f);
        if (found)
            return true;
    }
    return false;
}

/* QEMU @pid holds no TCP or UDP socket at all: every listener is a unix socket. */
static void assert_no_inet_sockets(pid_t pid)
{
    char fddir[64];
    snprintf(fddir, sizeof(fddir), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(fddir);
    assert_non_null(d);
    struct dirent *e;
    int sockets = 0;
    while ((e = readdir(d))) {
        char link[PATH_MAX], target[256];
        snprintf(link, sizeof(link), "%s/%s", fddir, e->d_name);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        char inode[32];
        if (sscanf(target, "socket:[%31[0-9]]", inode) != 1)
            continue;
        sockets++;
        if (inode_is_inet(inode)) {
            print_error("QEMU pid %d holds an inet socket (fd %s)\n", (int)pid, e->d_name);
            fail();
        }
    }
    closedir(d);
    assert_true(sockets >= 3); /* the unix sockets: QMP, VNC, SPICE at least */
}

/* The command line QEMU really runs with, checked by hv's own rule. */
static void assert_cmdline_has_no_tcp(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    char buf[16384];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n > 0);
    buf[n] = '\0';
    bool vnc_unix = false;
    for (char *p = buf; p < buf + n; p += strlen(p) + 1) {
        assert_null(strstr(p, "tcp:"));
        assert_null(strstr(p, "port="));
        assert_null(strstr(p, "hostfwd"));
        assert_null(strstr(p, "websocket"));
        if (strcmp(p, "-vnc") == 0)
            vnc_unix = strncmp(p + strlen(p) + 1, "unix:", 5) == 0;
    }
    assert_true(vnc_unix);
}

static void assert_vnc_answers_rfb(int64_t id)
{
    char path[PATH_MAX];
    vm_path(path, id, "vnc.sock");
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    char hello[13] = {0};
    size_t got = 0;
    while (got < 12) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        assert_int_equal(poll(&p, 1, 5000), 1);
        ssize_t n = read(fd, hello + got, 12 - got);
        assert_true(n > 0);
        got += (size_t)n;
    }
    close(fd);
    assert_string_equal(hello, "RFB 003.008\n");
}

static int64_t reset_task(int64_t vm_id)
{
    struct db_task_new t = {.kind = "vm.reset", .host_id = T.host_id, .vm_id = vm_id};
    int64_t id;
    assert_int_equal(db_task_create(T.db, &t, &id), 0);
    return id;
}

static bool wait_task_done(int64_t task_id, int timeout_ms, char *state, size_t size)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        struct db_task *t = NULL;
        if (db_task_get(T.db, task_id, &t) == 0) {
            bool done = strcmp(t->state, "succeeded") == 0 || strcmp(t->state, "failed") == 0;
            snprintf(state, size, "%s%s%s", t->state, t->error[0] ? ": " : "", t->error);
            db_task_free(t);
            if (done)
                return true;
        }
        int left = atr_deadline_left_ms(deadline);
        if (left == 0 || db_wait(T.db, left) <= 0)
            return false;
        char *ch, *pl;
        while (db_notify_next(T.db, &ch, &pl) == 1) {
            free(ch);
            free(pl);
        }
    }
}

/* ------------------------------------------------------------ fixtures */

static int group_setup(void **state)
{
    (void)state;
    const char *gd = getenv("ATRIUM_GUEST_DIR");
    if (gd && gd[0])
        snprintf(T.guest, sizeof(T.guest), "%s", gd);
    else
        snprintf(T.guest, sizeof(T.guest), "%s/guest", getenv("ATRIUM_BINARY_DIR"));
    char probe[PATH_MAX];
    snprintf(probe, sizeof(probe), "%s/vmlinuz", T.guest);
    if (access(probe, R_OK) < 0) {
        fprintf(stderr, "test guest missing in %s (fixture.guest.build)\n", T.guest);
        return -1;
    }
    snprintf(T.dir, sizeof(T.dir), "/tmp/ahv-XXXXXX");
    if (!mkdtemp(T.dir))
        return -1;
    snprintf(T.runtime, sizeof(T.runtime), "%s/run", T.dir);
    snprintf(T.data, sizeof(T.data), "%s/data", T.dir);
    snprintf(T.config, sizeof(T.config), "%s/atrium.conf", T.dir);
    snprintf(T.hostd_log, sizeof(T.hostd_log), "%s/hostd.log", T.dir);
    snprintf(T.notify_sock, sizeof(T.notify_sock), "%s/notify", T.dir);
    mkdir(T.runtime, 0700);
    mkdir(T.data, 0700);
    if (pgt_db_create(&T.conninfo) < 0)
        return -1;
    struct atr_error err = {0};
    if (db_open(T.conninfo, 10, "test-hostd", &T.db, &err) < 0)
        return -1;
    size_t n;
    const struct db_migration *m = db_migrations_builtin(&n);
    if (db_migrate(T.db, m, n, NULL, NULL, NULL, &err) < 0) {
        fprintf(stderr, "migrate: %s\n", err.msg);
        return -1;
    }
    if (db_listen(T.db, DB_CHANNEL_VM) < 0 || db_listen(T.db, DB_CHANNEL_TASK) < 0)
        return -1;
    FILE *f = fopen(T.config, "we");
    if (!f)
        return -1;
    /* TCG by configuration: the KVM probe has its own test (hv.accel). */
    fprintf(f,
            "[db]\nurl = %s\n[paths]\nruntime_dir = %s\ndata_dir = %s\n"
            "[hostd]\nname = test-%d\naccel = tcg\nmetrics_interval = 1\n[log]\nlevel = debug\n",
            T.conninfo, T.runtime, T.data, (int)getpid());
    fclose(f);
    T.hostd = -1;
    /* The slice hostd makes: "atrium-<host name>.slice" under its own cgroup. */
    snprintf(T.slice, sizeof(T.slice), "atrium-test-%d.slice", (int)getpid());
    if (hv_cgroup_init("self", T.slice, &T.cg) < 0)
        fprintf(stderr, "# no cgroups here: %s\n", T.cg.note);
    return 0;
}

/* hostd's cgroup slice and any VM cgroup left in it (v1: one per hierarchy). */
static void remove_slice(void)
{
    if (T.cg.mode == HV_CGROUP_NONE)
        return;
    const char *dirs[] = {T.cg.v2, T.cg.v1_cpu, T.cg.v1_mem};
    for (size_t i = 0; i < 3; i++) {
        if (!dirs[i][0])
            continue;
        DIR *d = opendir(dirs[i]);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (strncmp(e->d_name, "vm-", 3) != 0)
                continue;
            char sub[1200];
            snprintf(sub, sizeof(sub), "%s/%s", dirs[i], e->d_name);
            rmdir(sub);
        }
        if (d)
            closedir(d);
        if (rmdir(dirs[i]) < 0 && errno != ENOENT)
            fprintf(stderr, "could not remove cgroup %s: %s\n", dirs[i], strerror(errno));
    }
}

static int group_teardown(void **state)
{
    (void)state;
    kill_hostd();
    kill_all_qemu();
    remove_slice();
    if (getenv("ATRIUM_TEST_KEEP"))
        fprintf(stderr, "kept %s\n", T.dir);
    else if (T.dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", T.dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", T.dir);
    }
    db_close(T.db);
    if (getenv("ATRIUM_TEST_KEEP"))
        fprintf(stderr, "kept database: %s\n", T.conninfo);
    else
        pgt_db_drop(T.conninfo);
    return 0;
}

static void ensure_hostd(void)
{
    if (T.hostd > 0)
        return;
    start_hostd();
    struct db_host h;
    char name[64];
    snprintf(name, sizeof(name), "test-%d", (int)getpid());
    assert_int_equal(db_host_get_by_name(T.db, name, &h), 0);
    T.host_id = h.id;
}

/* ---------------------------------------------------------------- tests */

static void test_host_registers_with_capacity_and_accelerator(void **state)
{
    (void)state;
    ensure_hostd();
    struct db_host h;
    assert_int_equal(db_host_get(T.db, T.host_id, &h), 0);
    assert_string_equal(h.state, "online");
    assert_string_equal(h.accel, "tcg");
    assert_non_null(strstr(h.accel_note, "configuration"));
    assert_true(h.cpus >= 1);
    assert_true(h.memory_mb > 0);
    assert_true(h.heartbeat_age_ms >= 0 && h.heartbeat_age_ms < 5000);
    /* Heart-beaten every 2 s.  Hosts rows send no NOTIFY, so the test
     * waits the interval (plus slack) once and looks again. */
    int64_t first = h.heartbeat_at_us;
    poll(NULL, 0, 2500);
    assert_int_equal(db_host_get(T.db, T.host_id, &h), 0);
    assert_true(h.heartbeat_at_us > first);
}

static bool running_with_pid(const struct db_vm *v, const void *arg)
{
    (void)arg;
    return v && strcmp(v->actual_power, "running") == 0 && v->qemu_pid > 0;
}

static bool applied_all(const struct db_vm *v, const void *arg)
{
    (void)arg;
    return v && v->resources_gen > 0 && v->applied_gen == v->resources_gen;
}

static void test_vm_boots_serves_vnc_and_obeys_power_changes(void **state)
{
    (void)state;
    ensure_hostd();
    int64_t t0 = now_ms();
    int64_t id = create_vm("boot-1", "boot-1.qcow2");
    struct db_vm v;
    assert_true(wait_vm(id, power_is, "running", STATE_TIMEOUT_MS, &v));
    int64_t t_qmp = now_ms();
    assert_string_equal(v.state, "ready");
    assert_true(v.qemu_pid > 0);
    char serial[PATH_MAX];
    vm_path(serial, id, "serial.log");
    assert_true(wait_serial(serial, "ATRIUM-BOOT-OK", 1, BOOT_TIMEOUT_MS));
    int64_t t_boot = now_ms();
    printf("# measured: insert row -> QEMU running (QMP ready) %lld ms; -> ATRIUM-BOOT-OK %lld ms "
           "(TCG)\n",
           (long long)(t_qmp - t0), (long long)(t_boot - t0));
    /* Fully up (acpid runs) once the guest shows its mark. */
    assert_true(wait_serial(serial, "ATRIUM-MARK:", 1, BOOT_TIMEOUT_MS));

    /* Metrics (every second here): QEMU's RSS, its balloon (no target set:
     * all 256 MiB) and the disk reads of the guest's mount. */
    poll(NULL, 0, 3500);
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) >= 2 AND bool_and(mem_used_mb > 0) AND max(balloon_mb) = 256"
             " AND max(disk_rd_bytes) > 0 FROM metric_samples WHERE vm_id = %lld",
             (long long)id);
    char *ok = pgt_query_value(T.conninfo, sql);
    assert_non_null(ok);
    assert_string_equal(ok, "t");
    free(ok);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) >= 2 AND max(vm_count) >= 1 AND bool_and(mem_total_mb > 0)"
             " FROM metric_samples WHERE vm_id IS NULL AND host_id = %lld",
             (long long)T.host_id);
    ok = pgt_query_value(T.conninfo, sql);
    assert_non_null(ok);
    assert_string_equal(ok, "t");
    free(ok);

    /* Live memory: a balloon target reaches QEMU without a restart. */
    struct db_vm before;
    assert_int_equal(db_vm_get(T.db, id, &before), 0);
    assert_int_equal(db_vm_set_balloon(T.db, id, 160), 0);
    assert_int_equal(db_vm_set_balloon(T.db, id, 1024), -EINVAL); /* more than it has */
    assert_true(wait_vm(id, applied_all, NULL, STATE_TIMEOUT_MS, NULL));
    bool shrunk = false;
    for (int i = 0; i < 12 && !shrunk; i++) {
        /* The guest's driver inflates the balloon at its pace; samples
         * arrive every second and carry QEMU's query-balloon answer. */
        poll(NULL, 0, 2500);
        snprintf(sql, sizeof(sql),
                 "SELECT balloon_mb = 160 FROM metric_samples WHERE vm_id = %lld"
                 " ORDER BY at DESC LIMIT 1",
                 (long long)id);
        ok = pgt_query_value(T.conninfo, sql);
        shrunk = ok && strcmp(ok, "t") == 0;
        free(ok);
    }
    assert_true(shrunk);
    struct db_vm now_;
    assert_int_equal(db_vm_get(T.db, id, &now_), 0);
    assert_int_equal(now_.qemu_pid, before.qemu_pid);

    assert_vnc_answers_rfb(id);
    assert_cmdline_has_no_tcp(v.qemu_pid);
    assert_no_inet_sockets(v.qemu_pid);

    /* Pause and resume go through QMP; the row follows QEMU's events. */
    assert_int_equal(db_vm_set_desired(T.db, id, "paused"), 0);
    assert_true(wait_vm(id, power_is, "paused", STATE_TIMEOUT_MS, NULL));
    assert_int_equal(db_vm_set_desired(T.db, id, "running"), 0);
    assert_true(wait_vm(id, power_is, "running", STATE_TIMEOUT_MS, NULL));

    /* Stop: ACPI power button, the guest powers off, QEMU exits cleanly. */
    struct db_vm after;
    assert_int_equal(db_vm_set_desired(T.db, id, "stopped"), 0);
    assert_true(wait_vm(id, state_is, "stopped", 60000, &after));
    assert_string_equal(after.actual_power, "off");
    assert_int_equal(after.qemu_pid, 0);
    assert_string_equal(after.last_error, "");
    assert_true(count_in_file(serial, "ATRIUM-POWEROFF") >= 1);
    assert_false(process_alive(v.qemu_pid));

    /* Start again: a new QEMU on the same overlay. */
    assert_int_equal(db_vm_set_desired(T.db, id, "running"), 0);
    assert_true(wait_vm(id, running_with_pid, NULL, STATE_TIMEOUT_MS, &v));
    assert_true(wait_serial(serial, "ATRIUM-BOOT-OK", 1, BOOT_TIMEOUT_MS));

    /* Reset is a task; the guest boots a second time in the same QEMU. */
    char st[256];
    int64_t task = reset_task(id);
    assert_true(wait_task_done(task, STATE_TIMEOUT_MS, st, sizeof(st)));
    assert_string_equal(st, "succeeded");
    assert_true(wait_serial(serial, "ATRIUM-BOOT-OK", 2, BOOT_TIMEOUT_MS));
    assert_int_equal(db_vm_get(T.db, id, &after), 0);
    assert_int_equal(after.qemu_pid, v.qemu_pid);
    assert_string_equal(after.actual_power, "running");

    /* Delete: no process, no runtime directory, no overlay, no row. */
    char overlay[PATH_MAX], rdir[PATH_MAX];
    snprintf(overlay, sizeof(overlay), "%s/boot-1.qcow2", T.data);
    snprintf(rdir, sizeof(rdir), "%s/vms/%lld", T.runtime, (long long)id);
    assert_int_equal(db_vm_set_desired(T.db, id, "deleted"), 0);
    assert_true(wait_vm(id, row_gone, NULL, STATE_TIMEOUT_MS, NULL));
    assert_false(process_alive(v.qemu_pid));
    assert_int_equal(access(overlay, F_OK), -1);
    assert_int_equal(access(rdir, F_OK), -1);
}

static void test_hostd_killed_then_restarted_readopts_the_same_qemus(void **state)
{
    (void)state;
    ensure_hostd();
    int64_t ids[3];
    int pids[3];
    char serial[3][PATH_MAX];
    for (int i = 0; i < 3; i++) {
        char name[32], leaf[32];
        snprintf(name, sizeof(name), "keep-%d", i);
        snprintf(leaf, sizeof(leaf), "keep-%d.qcow2", i);
        ids[i] = create_vm(name, leaf);
    }
    for (int i = 0; i < 3; i++) {
        struct db_vm v;
        assert_true(wait_vm(ids[i], running_with_pid, NULL, STATE_TIMEOUT_MS, &v));
        pids[i] = v.qemu_pid;
        vm_path(serial[i], ids[i], "serial.log");
    }
    for (int i = 0; i < 3; i++)
        assert_true(wait_serial(serial[i], "ATRIUM-BOOT-OK", 1, BOOT_TIMEOUT_MS));

    /* A VM an earlier test left running (it failed half-way) is adopted
     * too; the count to expect is what runs now. */
    char *running = pgt_query_value(T.conninfo, "SELECT count(*) FROM vms WHERE qemu_pid > 0");
    assert_non_null(running);
    char adopted[64];
    snprintf(adopted, sizeof(adopted), "vms_adopted=%s", running);
    free(running);
    kill_hostd(); /* SIGKILL: no goodbye */
    for (int i = 0; i < 3; i++)
        assert_true(process_alive(pids[i]));
    start_hostd();

    for (int i = 0; i < 3; i++) {
        struct db_vm v;
        assert_int_equal(db_vm_get(T.db, ids[i], &v), 0);
        assert_int_equal(v.qemu_pid, pids[i]);
        assert_string_equal(v.actual_power, "running");
        assert_true(process_alive(pids[i]));
    }
    char *log = vs_slurp(T.hostd_log);
    assert_non_null(log);
    assert_non_null(strstr(log, adopted));
    free(log);
    /* Metrics flow again for the adopted VMs (sampled every second here). */
    char *restarted = pgt_query_value(T.conninfo, "SELECT now()");
    assert_non_null(restarted);
    poll(NULL, 0, 3500);
    for (int i = 0; i < 3; i++) {
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) >= 2 FROM metric_samples WHERE vm_id = %lld AND at > '%s'",
                 (long long)ids[i], restarted);
        char *ok = pgt_query_value(T.conninfo, sql);
        assert_non_null(ok);
        assert_string_equal(ok, "t");
        free(ok);
    }
    free(restarted);
    /* Re-attached for real: the new hostd drives QEMU over QMP. */
    assert_int_equal(db_vm_set_desired(T.db, ids[0], "paused"), 0);
    assert_true(wait_vm(ids[0], power_is, "paused", STATE_TIMEOUT_MS, NULL));
    assert_int_equal(db_vm_set_desired(T.db, ids[0], "running"), 0);
    assert_true(wait_vm(ids[0], power_is, "running", STATE_TIMEOUT_MS, NULL));
    /* Boot count unchanged: nothing was restarted. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(count_in_file(serial[i], "ATRIUM-BOOT-OK"), 1);

    /* kill -9 of one adopted QEMU: failed within 5 s, with QEMU's account. */
    int64_t t0 = now_ms();
    kill(pids[1], SIGKILL);
    struct db_vm v;
    assert_true(wait_vm(ids[1], state_is, "failed", 5000, &v));
    printf("# measured: kill -9 QEMU -> VM failed in %lld ms\n", (long long)(now_ms() - t0));
    assert_string_equal(v.actual_power, "crashed");
    assert_int_equal(v.qemu_pid, 0);
    assert_non_null(strstr(v.last_error, "unexpectedly"));
    /* A failed VM is not restarted behind the admin's back. */
    assert_int_equal(db_vm_get(T.db, ids[1], &v), 0);
    assert_string_equal(v.state, "failed");

    /* Delete all three: nothing of them is left. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(db_vm_set_desired(T.db, ids[i], "deleted"), 0);
    for (int i = 0; i < 3; i++) {
        assert_true(wait_vm(ids[i], row_gone, NULL, STATE_TIMEOUT_MS, NULL));
        assert_false(process_alive(pids[i]));
        char rdir[PATH_MAX], overlay[PATH_MAX];
        snprintf(rdir, sizeof(rdir), "%s/vms/%lld", T.runtime, (long long)ids[i]);
        snprintf(overlay, sizeof(overlay), "%s/keep-%d.qcow2", T.data, i);
        assert_int_equal(access(rdir, F_OK), -1);
        assert_int_equal(access(overlay, F_OK), -1);
    }
}

static void test_qemu_killed_while_hostd_is_down_is_reported_failed(void **state)
{
    (void)state;
    ensure_hostd();
    int64_t id = create_vm("lost-1", "lost-1.qcow2");
    struct db_vm v;
    assert_true(wait_vm(id, running_with_pid, NULL, STATE_TIMEOUT_MS, &v));
    kill_hostd();
    kill_and_wait(v.qemu_pid, true);
    start_hostd();
    assert_true(wait_vm(id, state_is, "failed", 5000, &v));
    assert_non_null(strstr(v.last_error, "hostd restarted"));
    assert_int_equal(db_vm_set_desired(T.db, id, "deleted"), 0);
    assert_true(wait_vm(id, row_gone, NULL, STATE_TIMEOUT_MS, NULL));
}

static void test_ten_vms_started_at_once_all_boot_and_leave_nothing_when_deleted(void **state)
{
    (void)state;
    ensure_hostd();
    enum { N = 10 };
    int64_t ids[N];
    char serial[N][PATH_MAX];
    int64_t t0 = now_ms();
    /* One transaction: hostd sees all ten in one reconcile. */
    assert_int_equal(db_begin(T.db), 0);
    for (int i = 0; i < N; i++) {
        char name[32], leaf[32];
        snprintf(name, sizeof(name), "ten-%d", i);
        snprintf(leaf, sizeof(leaf), "ten-%d.qcow2", i);
        ids[i] = create_vm(name, leaf);
        vm_path(serial[i], ids[i], "serial.log");
    }
    assert_int_equal(db_commit(T.db), 0);
    int pids[N];
    for (int i = 0; i < N; i++) {
        struct db_vm v;
        assert_true(wait_vm(ids[i], running_with_pid, NULL, 60000, &v));
        pids[i] = v.qemu_pid;
    }
    int64_t t_qmp = now_ms();
    for (int i = 0; i < N; i++)
        assert_true(wait_serial(serial[i], "ATRIUM-BOOT-OK", 1, 300000));
    int64_t t_boot = now_ms();
    struct hv_proc_stat ps = {0};
    assert_int_equal(hv_metrics_proc(T.hostd, &ps), 0);
    printf("# measured: 10 VMs at once: all QMP-ready %lld ms, all ATRIUM-BOOT-OK %lld ms (TCG, "
           "2 host CPUs); hostd RSS %lld KiB (ASan build)\n",
           (long long)(t_qmp - t0), (long long)(t_boot - t0), (long long)ps.rss_kb);
    for (int i = 0; i < N; i++)
        assert_int_equal(db_vm_set_desired(T.db, ids[i], "deleted"), 0);
    for (int i = 0; i < N; i++) {
        assert_true(wait_vm(ids[i], row_gone, NULL, STATE_TIMEOUT_MS, NULL));
        assert_false(process_alive(pids[i]));
        char rdir[PATH_MAX], overlay[PATH_MAX];
        snprintf(rdir, sizeof(rdir), "%s/vms/%lld", T.runtime, (long long)ids[i]);
        snprintf(overlay, sizeof(overlay), "%s/ten-%d.qcow2", T.data, i);
        assert_int_equal(access(rdir, F_OK), -1);
        assert_int_equal(access(overlay, F_OK), -1);
    }
}

/* ------------------------------------------------- snapshots, resources */

/* A second QMP connection to the VM (the display monitor): keys and queries. */
static struct hv_qmp *qmp_open(int64_t id)
{
    char path[PATH_MAX];
    vm_path(path, id, "qmp-display.sock");
    struct hv_qmp *q = NULL;
    assert_int_equal(hv_qmp_connect(path, NULL, NULL, 30000, &q), 0);
    assert_int_equal(hv_qmp_wait_ready(q, 30000), 0);
    return q;
}

/* Type @line and Enter on the guest's keyboard (lower-case letters, digits, space). */
static void type_line(int64_t id, const char *line)
{
    struct hv_qmp *q = qmp_open(id);
    for (const char *c = line;; c++) {
        char key[8];
        if (!*c)
            snprintf(key, sizeof(key), "ret");
        else if (*c == ' ')
            snprintf(key, sizeof(key), "spc");
        else
            snprintf(key, sizeof(key), "%c", *c);
        struct atr_error err = {0};
        json_t *args = json_pack("{s:[{s:s, s:s}]}", "keys", "type", "qcode", "data", key);
        assert_int_equal(hv_qmp_call(q, "send-key", args, 10000, NULL, &err), 0);
        if (!*c)
            break;
    }
    hv_qmp_free(q);
}

static bool task_ok(int64_t task, int timeout_ms)
{
    char st[1200];
    if (!wait_task_done(task, timeout_ms, st, sizeof(st))) {
        print_error("task %lld did not finish\n", (long long)task);
        return false;
    }
    if (strcmp(st, "succeeded") != 0)
        print_error("task %lld: %s\n", (long long)task, st);
    return strcmp(st, "succeeded") == 0;
}

static int64_t snapshot(int64_t vm, const char *name, bool ram)
{
    int64_t snap, task;
    assert_int_equal(db_snapshot_request(T.db, vm, name, ram, NULL, &snap, &task), 0);
    int64_t t0 = now_ms();
    assert_true(task_ok(task, 180000));
    printf("# measured: %s snapshot of a running 256 MiB guest: %lld ms (TCG)\n",
           ram ? "RAM" : "disk-only", (long long)(now_ms() - t0));
    struct db_snapshot s;
    assert_int_equal(db_snapshot_get(T.db, snap, &s), 0);
    assert_string_equal(s.state, "ready");
    assert_string_equal(s.vm_power, "running");
    assert_true(s.with_ram == ram);
    return snap;
}

static int64_t snapshot_task(int64_t snap, const char *kind, int64_t target)
{
    int64_t task;
    assert_int_equal(db_snapshot_task(T.db, snap, kind, target, &task), 0);
    return task;
}

static void mark(int64_t id, const char *serial, const char *word)
{
    char cmd[64], want[96];
    snprintf(cmd, sizeof(cmd), "mark %s", word);
    snprintf(want, sizeof(want), "ATRIUM-MARK-WRITTEN: %s", word);
    int before = count_in_file(serial, want);
    type_line(id, cmd);
    assert_true(wait_serial(serial, want, before + 1, BOOT_TIMEOUT_MS));
}

static void assert_guest_shows(int64_t id, const char *serial, const char *word)
{
    char want[96];
    snprintf(want, sizeof(want), "ATRIUM-MARK: %s", word);
    int typed = count_in_file(serial, "ATRIUM-TYPED: show");
    int before = count_in_file(serial, want);
    type_line(id, "show");
    /* The guest still takes keys: it echoes the line, then answers. */
    assert_true(wait_serial(serial, "ATRIUM-TYPED: show", typed + 1, BOOT_TIMEOUT_MS));
    if (!wait_serial(serial, want, before + 1, 30000)) {
        char *log = vs_slurp(serial);
        print_error("guest does not show %s; serial log:\n%s\n", want, log ? log : "");
        free(log);
        fail();
    }
}

static void test_snapshots_revert_the_guest_exactly_and_clone_to_a_new_vm(void **state)
{
    (void)state;
    ensure_hostd();
    char gold[PATH_MAX], gold_sum[65], gold_after[65];
    snprintf(gold, sizeof(gold), "%s/disk.qcow2", T.guest);
    assert_int_equal(hv_storage_sha256(gold, gold_sum), 0);

    int64_t id = create_vm("snap-1", "snap-1.qcow2");
    struct db_vm v, after;
    assert_true(wait_vm(id, running_with_pid, NULL, STATE_TIMEOUT_MS, &v));
    char serial[PATH_MAX];
    vm_path(serial, id, "serial.log");
    assert_true(wait_serial(serial, "ATRIUM-MARK: NONE", 1, BOOT_TIMEOUT_MS));
    mark(id, serial, "alpha");

    /* RAM snapshot, then change the disk; revert: the marker written after
     * the snapshot is gone, the same QEMU runs on, nothing rebooted. */
    int64_t s1 = snapshot(id, "s1", true);
    mark(id, serial, "beta");
    int64_t t0 = now_ms();
    assert_true(task_ok(snapshot_task(s1, "vm.snapshot.revert", 0), 180000));
    printf("# measured: revert to the RAM snapshot: %lld ms (TCG)\n", (long long)(now_ms() - t0));
    assert_true(wait_vm(id, power_is, "running", STATE_TIMEOUT_MS, &after));
    assert_int_equal(after.qemu_pid, v.qemu_pid);
    assert_guest_shows(id, serial, "alpha");
    assert_int_equal(count_in_file(serial, "ATRIUM-BOOT-OK"), 1);

    /* Disk-only snapshot of the running VM; revert restarts it on the old disk. */
    mark(id, serial, "delta");
    int64_t d1 = snapshot(id, "d1", false);
    mark(id, serial, "gamma");
    assert_true(task_ok(snapshot_task(d1, "vm.snapshot.revert", 0), 180000));
    assert_true(wait_serial(serial, "ATRIUM-BOOT-OK", 1, BOOT_TIMEOUT_MS));
    assert_true(wait_vm(id, running_with_pid, NULL, STATE_TIMEOUT_MS, &after));
    assert_true(after.qemu_pid != v.qemu_pid);
    assert_true(wait_serial(serial, "ATRIUM-MARK: delta", 1, BOOT_TIMEOUT_MS));
    assert_guest_shows(id, serial, "delta");

    /* A new VM from the disk snapshot boots with the snapshot's disk. */
    char clone_disk[PATH_MAX];
    snprintf(clone_disk, sizeof(clone_disk), "%s/snap-clone.qcow2", T.data);
    struct db_vm_new nv = {.name = "snap-clone",
                           .host_id = T.host_id,
                           .vcpus = 1,
                           .memory_mb = 256,
                           .disk_path = clone_disk,
                           .boot = "kernel",
                           .boot_kernel = after.boot_kernel,
                           .boot_initrd = after.boot_initrd,
                           .boot_cmdline = after.boot_cmdline,
                           .nic_mode = "user",
                           .desired_power = "stopped",
                           .source_snapshot = "snap-1/d1"};
    int64_t clone;
    assert_int_equal(db_vm_create(T.db, &nv, &clone), 0);
    assert_true(task_ok(snapshot_task(d1, "vm.snapshot.clone", clone), 180000));
    char backing[PATH_MAX];
    struct atr_error err = {0};
    assert_int_equal(hv_storage_backing(NULL, clone_disk, backing, sizeof(backing), &err), 0);
    assert_string_equal(backing, gold); /* a linked clone of the same golden image */
    assert_true(wait_vm(clone, running_with_pid, NULL, STATE_TIMEOUT_MS, NULL));
    char clone_serial[PATH_MAX];
    vm_path(clone_serial, clone, "serial.log");
    assert_true(wait_serial(clone_serial, "ATRIUM-MARK: delta", 1, BOOT_TIMEOUT_MS));

    /* Delete while running (a QMP job), then list: only d1 is left. */
    assert_true(task_ok(snapshot_task(s1, "vm.snapshot.delete", 0), 180000));
    struct db_snapshot *list = NULL;
    size_t n = 0;
    assert_int_equal(db_snapshot_list(T.db, id, &list, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].name, "d1");
    free(list);
    /* A second snapshot of the same name is refused. */
    assert_int_equal(db_snapshot_request(T.db, id, "d1", false, NULL, NULL, NULL), -EEXIST);

    /* Stopped: a RAM snapshot is refused by hostd, disk-only works offline. */
    assert_int_equal(db_vm_set_desired(T.db, id, "stopped"), 0);
    assert_true(wait_vm(id, state_is, "stopped", 60000, NULL));
    int64_t snap, task;
    char st[1200];
    assert_int_equal(db_snapshot_request(T.db, id, "off-ram", true, NULL, &snap, &task), 0);
    assert_true(wait_task_done(task, STATE_TIMEOUT_MS, st, sizeof(st)));
    assert_non_null(strstr(st, "failed: a snapshot with RAM needs the VM running"));
    assert_int_equal(db_snapshot_request(T.db, id, "off-disk", false, NULL, &snap, &task), 0);
    assert_true(task_ok(task, STATE_TIMEOUT_MS));

    /* A task requeued after its hostd died is not done twice: the snapshot
     * already in the file is taken for the finished work. */
    kill_hostd();
    assert_int_equal(db_snapshot_request(T.db, id, "again", false, NULL, &snap, &task), 0);
    char sql[160], overlay[PATH_MAX];
    snprintf(sql, sizeof(sql), "UPDATE tasks SET attempts = 1 WHERE id = %lld RETURNING true",
             (long long)task);
    char *upd = pgt_query_value(T.conninfo, sql);
    assert_non_null(upd);
    free(upd);
    snprintf(overlay, sizeof(overlay), "%s/snap-1.qcow2", T.data);
    assert_int_equal(hv_snapshot_offline(NULL, overlay, HV_SNAP_SAVE, "again", &err), 0);
    start_hostd();
    assert_true(task_ok(task, STATE_TIMEOUT_MS));
    char cmd[PATH_MAX + 64], line[512];
    snprintf(cmd, sizeof(cmd), "qemu-img snapshot -l -U %s", overlay);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    int copies = 0;
    while (fgets(line, sizeof(line), p))
        copies += strstr(line, " again ") != NULL;
    pclose(p);
    assert_int_equal(copies, 1);

    assert_int_equal(hv_storage_sha256(gold, gold_after), 0);
    assert_string_equal(gold_sum, gold_after); /* the golden image was never written */

    int64_t ids[] = {id, clone};
    for (int i = 0; i < 2; i++)
        assert_int_equal(db_vm_set_desired(T.db, ids[i], "deleted"), 0);
    for (int i = 0; i < 2; i++)
        assert_true(wait_vm(ids[i], row_gone, NULL, STATE_TIMEOUT_MS, NULL));
    assert_int_equal(access(clone_disk, F_OK), -1);
}

/* Run atriumctl with this test's configuration; its output (stdout and stderr) into @out. */
static int ctl(char *out, size_t size, const char *args)
{
    char cmd[PATH_MAX * 2];
    snprintf(cmd, sizeof(cmd), "%s/ctl/atriumctl --config %s %s 2>&1", getenv("ATRIUM_BINARY_DIR"),
             T.config, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A RAM snapshot taken while running brings a stopped VM back running, where
 * it was; driven through atriumctl, which waits for hostd's tasks. */
static void test_ram_snapshot_restores_a_stopped_vm_where_it_was(void **state)
{
    (void)state;
    ensure_hostd();
    int64_t id = create_vm("snap-2", "snap-2.qcow2");
    struct db_vm v;
    assert_true(wait_vm(id, running_with_pid, NULL, STATE_TIMEOUT_MS, &v));
    char serial[PATH_MAX];
    vm_path(serial, id, "serial.log");
    assert_true(wait_serial(serial, "ATRIUM-MARK: NONE", 1, BOOT_TIMEOUT_MS));
    mark(id, serial, "kept");
    char out[8192];
    int rc = ctl(out, sizeof(out), "vm snapshot snap-2 live");
    if (rc != 0)
        print_error("atriumctl vm snapshot: %s\n", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "snapshot with RAM queued as task"));
    assert_non_null(strstr(out, ": done"));
    assert_int_equal(ctl(out, sizeof(out), "vm snapshots snap-2"), 0);
    assert_non_null(strstr(out, "live "));
    assert_non_null(strstr(out, " ready "));
    assert_int_equal(db_vm_set_desired(T.db, id, "stopped"), 0);
    assert_true(wait_vm(id, state_is, "stopped", 60000, NULL));
    int boots = count_in_file(serial, "ATRIUM-BOOT-OK");
    rc = ctl(out, sizeof(out), "vm revert snap-2 live");
    if (rc != 0)
        print_error("atriumctl vm revert: %s\n", out);
    assert_int_equal(rc, 0);
    assert_true(wait_vm(id, running_with_pid, NULL, STATE_TIMEOUT_MS, &v));
    assert_string_equal(v.desired_power, "running");
    /* Resumed, not booted: the serial log is new (a new QEMU), and the guest
     * answers at once without printing its boot marker. */
    assert_guest_shows(id, serial, "kept");
    assert_int_equal(count_in_file(serial, "ATRIUM-BOOT-OK"), 0);
    (void)boots;
    assert_int_equal(db_vm_set_desired(T.db, id, "deleted"), 0);
    assert_true(wait_vm(id, row_gone, NULL, STATE_TIMEOUT_MS, NULL));
}

static long long cg_read(int64_t id, const char *controller, const char *leaf)
{
    char dir[1024], path[1200];
    assert_int_equal(hv_cgroup_vm_dir(&T.cg, id, controller, dir, sizeof(dir)), 0);
    snprintf(path, sizeof(path), "%s/%s", dir, leaf);
    char *s = vs_slurp(path);
    assert_non_null(s);
    long long v = strncmp(s, "max", 3) == 0 ? -1 : strtoll(s, NULL, 10);
    free(s);
    return v;
}

/* cgroup values as they read back: v1 files, or v2 ("max" = -1). */
static void assert_cgroup(int64_t id, int pid, int weight, int cpu_pct, long long mem_mb)
{
    if (T.cg.mode == HV_CGROUP_NONE) {
        printf("# skipped cgroup checks: %s\n", T.cg.note);
        return;
    }
    char dir[1024], procs[1200], spid[24];
    assert_int_equal(hv_cgroup_vm_dir(&T.cg, id, "cpu", dir, sizeof(dir)), 0);
    snprintf(procs, sizeof(procs), "%s/cgroup.procs", dir);
    snprintf(spid, sizeof(spid), "%d\n", pid);
    char *p = vs_slurp(procs);
    assert_non_null(p);
    assert_non_null(strstr(p, spid)); /* QEMU runs in its own cgroup */
    free(p);
    if (T.cg.mode == HV_CGROUP_V2) {
        assert_int_equal(cg_read(id, "cpu", "cpu.weight"), weight);
        assert_int_equal(cg_read(id, "cpu", "cpu.max"), cpu_pct ? cpu_pct * 1000 : -1);
        assert_int_equal(cg_read(id, "memory", "memory.max"), mem_mb ? mem_mb << 20 : -1);
    } else {
        long long shares = (long long)weight * 1024 / 100;
        assert_int_equal(cg_read(id, "cpu", "cpu.shares"), shares < 2 ? 2 : shares);
        assert_int_equal(cg_read(id, "cpu", "cpu.cfs_quota_us"), cpu_pct ? cpu_pct * 1000 : -1);
        long long mem = cg_read(id, "memory", "memory.limit_in_bytes");
        if (mem_mb)
            assert_int_equal(mem, mem_mb << 20);
        else
            assert_true(mem > (1LL << 50)); /* unlimited */
    }
}

/* The VM disk's iops and bps limits as QEMU reports them (query-block). */
static void assert_disk_limits(int64_t id, long long iops, long long bps)
{
    struct hv_qmp *q = qmp_open(id);
    json_t *ret = NULL;
    struct atr_error err = {0};
    assert_int_equal(hv_qmp_call(q, "query-block", NULL, 10000, &ret, &err), 0);
    size_t i;
    json_t *dev;
    bool seen = false;
    json_array_foreach(ret, i, dev)
    {
        const char *qdev = json_string_value(json_object_get(dev, "qdev"));
        if (!qdev || strcmp(qdev, HV_DISK_QDEV) != 0)
            continue;
        json_t *ins = json_object_get(dev, "inserted");
        assert_int_equal(json_integer_value(json_object_get(ins, "iops")), iops);
        assert_int_equal(json_integer_value(json_object_get(ins, "bps")), bps);
        seen = true;
    }
    json_decref(ret);
    hv_qmp_free(q);
    assert_true(seen);
}

static void test_live_resources_and_boost_apply_without_restart(void **state)
{
    (void)state;
    ensure_hostd();
    int64_t a = create_vm("res-a", "res-a.qcow2");
    int64_t b = create_vm("res-b", "res-b.qcow2");
    struct db_vm va, vb, now_;
    assert_true(wait_vm(a, running_with_pid, NULL, STATE_TIMEOUT_MS, &va));
    assert_true(wait_vm(b, running_with_pid, NULL, STATE_TIMEOUT_MS, &vb));
    assert_cgroup(a, va.qemu_pid, 100, 0, 0);

    struct db_vm_resources r = {.cpu_weight = 300,
                                .cpu_max_pct = 50,
                                .memory_max_mb = 1024,
                                .disk_iops = 200,
                                .disk_bps = 1048576,
                                .net_bps = -1};
    assert_int_equal(db_vm_set_resources(T.db, a, &r), 0);
    struct db_vm_resources bad = {.cpu_weight = 20000,
                                  .cpu_max_pct = -1,
                                  .memory_max_mb = -1,
                                  .disk_iops = -1,
                                  .disk_bps = -1,
                                  .net_bps = -1};
    assert_int_equal(db_vm_set_resources(T.db, a, &bad), -EINVAL);
    int64_t t0 = now_ms();
    assert_true(wait_vm(a, applied_all, NULL, STATE_TIMEOUT_MS, &now_));
    printf("# measured: resources row change -> applied_gen (cgroup + QMP): %lld ms\n",
           (long long)(now_ms() - t0));
    assert_string_equal(now_.last_error, "");
    assert_cgroup(a, va.qemu_pid, 300, 50, 1024);
    assert_disk_limits(a, 200, 1048576);

    /* Boost a: it gets everything, b drops to a low weight; undo restores both. */
    assert_int_equal(db_vm_boost(T.db, a, true), 0);
    assert_true(wait_vm(a, applied_all, NULL, STATE_TIMEOUT_MS, NULL));
    assert_true(wait_vm(b, applied_all, NULL, STATE_TIMEOUT_MS, NULL));
    assert_cgroup(a, va.qemu_pid, HV_BOOST_WEIGHT, 0, 0);
    assert_cgroup(b, vb.qemu_pid, HV_BOOST_OTHERS_WEIGHT, 0, 0);
    assert_disk_limits(a, 0, 0);
    assert_int_equal(db_vm_boost(T.db, a, false), 0);
    assert_true(wait_vm(a, applied_all, NULL, STATE_TIMEOUT_MS, &now_));
    assert_true(wait_vm(b, applied_all, NULL, STATE_TIMEOUT_MS, NULL));
    assert_false(now_.boosted);
    assert_cgroup(a, va.qemu_pid, 300, 50, 1024);
    assert_cgroup(b, vb.qemu_pid, 100, 0, 0);
    assert_disk_limits(a, 200, 1048576);

    /* Lifting the limits. */
    struct db_vm_resources lift = {.cpu_weight = 100,
                                   .cpu_max_pct = 0,
                                   .memory_max_mb = 0,
                                   .disk_iops = 0,
                                   .disk_bps = 0,
                                   .net_bps = -1};
    assert_int_equal(db_vm_set_resources(T.db, a, &lift), 0);
    assert_true(wait_vm(a, applied_all, NULL, STATE_TIMEOUT_MS, &now_));
    assert_cgroup(a, va.qemu_pid, 100, 0, 0);
    assert_disk_limits(a, 0, 0);
    assert_int_equal(now_.qemu_pid, va.qemu_pid); /* never restarted */

    int64_t ids[] = {a, b};
    for (int i = 0; i < 2; i++)
        assert_int_equal(db_vm_set_desired(T.db, ids[i], "deleted"), 0);
    for (int i = 0; i < 2; i++)
        assert_true(wait_vm(ids[i], row_gone, NULL, STATE_TIMEOUT_MS, NULL));
    if (T.cg.mode != HV_CGROUP_NONE) {
        char dir[1024];
        assert_int_equal(hv_cgroup_vm_dir(&T.cg, a, "cpu", dir, sizeof(dir)), 0);
        assert_int_equal(access(dir, F_OK), -1); /* the VM's cgroup went with it */
    }
}

/* ------------------------------------------------------------------------ */
/* Network cap (hv.netcap): tc on a bridged VM's tap                        */
/* ------------------------------------------------------------------------ */

#define NETCAP_BRIDGE "atrbr0"
#define NETCAP_HOST_IP "10.77.0.1"
#define NETCAP_GUEST_IP "10.77.0.2"

/* Run a command (fixed strings and numbers only) and return its stdout. */
static char *sh_out(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "re");
    if (!p)
        return NULL;
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);
    size_t k;
    while (buf && (k = fread(buf + n, 1, cap - n - 1, p)) > 0)
        n += k;
    pclose(p);
    if (buf)
        buf[n] = '\0';
    return buf;
}

/* "Sent N bytes … (dropped D" of the first qdisc of @kind ("tbf"; "" = any) on @dev, -1 if none. */
static long long qdisc_stat(const char *dev, const char *kind, long long *ret_dropped)
{
    char *out = sh_out("tc -s qdisc show dev %s", dev);
    long long sent = -1;
    char want[32];
    snprintf(want, sizeof(want), kind[0] ? "qdisc %s " : "qdisc %s", kind);
    const char *q = out ? strstr(out, want) : NULL;
    const char *s = q ? strstr(q, "Sent ") : NULL;
    if (s)
        sent = strtoll(s + 5, NULL, 10);
    const char *d = s ? strstr(s, "(dropped ") : NULL;
    if (ret_dropped)
        *ret_dropped = d ? strtoll(d + 9, NULL, 10) : -1;
    free(out);
    return sent;
}

static long long qdisc_sent(const char *dev, const char *kind)
{
    return qdisc_stat(dev, kind, NULL);
}

/* Whether `tc @what show dev @dev` mentions @needle; the output is printed when not @expect. */
static bool tc_says(const char *what, const char *dev, const char *needle, bool expect)
{
    char *out = sh_out("tc %s show dev %s 2>&1", what, dev);
    bool yes = out && strstr(out, needle);
    if (yes != expect)
        print_message("# tc %s show dev %s:\n%s", what, dev, out ? out : "");
    free(out);
    return yes;
}

static bool tc_shows(const char *what, const char *dev, const char *needle)
{
    return tc_says(what, dev, needle, true);
}

static bool tc_lacks(const char *what, const char *dev, const char *needle)
{
    return !tc_says(what, dev, needle, false);
}

/* The test runs in a network namespace of its own (hostd, QEMU, ip and tc
 * inherit it): the kernel removes it, with the bridge and every tap, when
 * the last process in it is gone, also when the test is killed. */
static int netcap_setup(void **state)
{
    if (unshare(CLONE_NEWNET) < 0) {
        fprintf(stderr, "cannot make a network namespace: %s\n", strerror(errno));
        return -1;
    }
    if (system("ip link set lo up && ip link add " NETCAP_BRIDGE " type bridge && "
               "ip addr add " NETCAP_HOST_IP "/24 dev " NETCAP_BRIDGE " && "
               "ip link set " NETCAP_BRIDGE " up") != 0) {
        fprintf(stderr, "cannot set up the test bridge\n");
        return -1;
    }
    return group_setup(state);
}

static bool applied_with_error(const struct db_vm *v, const void *arg)
{
    return applied_all(v, NULL) && strstr(v->last_error, (const char *)arg);
}

static bool link_gone(const char *dev)
{
    return if_nametoindex(dev) == 0;
}

/* Blast UDP at the guest's address for @ms; returns the bytes the host accepted. */
static long long blast(int ms)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(9)};
    inet_pton(AF_INET, NETCAP_GUEST_IP, &to.sin_addr);
    static char payload[1400];
    long long sent = 0;
    int64_t end = now_ms() + ms;
    while (now_ms() < end) {
        ssize_t n = sendto(fd, payload, sizeof(payload), 0, (struct sockaddr *)&to, sizeof(to));
        if (n > 0)
            sent += n;
        else if (errno == EAGAIN || errno == ENOBUFS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            poll(&p, 1, 1);
        }
    }
    close(fd);
    return sent;
}

static void set_net_bps(int64_t id, int64_t bps)
{
    struct db_vm_resources r = {.cpu_weight = -1,
                                .cpu_max_pct = -1,
                                .memory_max_mb = -1,
                                .disk_iops = -1,
                                .disk_bps = -1,
                                .net_bps = bps};
    assert_int_equal(db_vm_set_resources(T.db, id, &r), 0);
}

static void test_bridged_vm_network_cap_is_tc_on_its_tap_and_changes_live(void **state)
{
    (void)state;
    ensure_hostd();
    int64_t a = create_vm_nic("net-a", "net-a.qcow2", "bridge", NETCAP_BRIDGE);
    int64_t u = create_vm("net-user", "net-user.qcow2");
    struct db_vm va, now_;
    assert_true(wait_vm(a, running_with_pid, NULL, STATE_TIMEOUT_MS, &va));
    char tap[HV_IFNAMSIZ], ifb[HV_IFNAMSIZ];
    assert_int_equal(hv_net_names(a, tap, ifb), 0);

    /* hostd made the tap and put it on the bridge; QEMU opened it. */
    assert_false(link_gone(tap));
    /* (/sys shows the namespace it was mounted in, not ours: ask ip.) */
    char *o = sh_out("ip -o link show dev %s", tap);
    assert_non_null(o);
    assert_non_null(strstr(o, " master " NETCAP_BRIDGE " "));
    free(o);

    /* Frames for the guest's address go out of the tap (no ARP needed). */
    const char *mac = va.mac[0] ? va.mac : "52:54:00:12:34:56";
    o = sh_out("ip neigh replace " NETCAP_GUEST_IP " lladdr %s dev " NETCAP_BRIDGE
               " nud permanent 2>&1; echo rc=$?",
               mac);
    assert_non_null(strstr(o, "rc=0"));
    free(o);

    /* Uncapped: what the host pushes through the tap in 2 s. */
    long long before = qdisc_sent(tap, "");
    long long offered = blast(2000);
    long long after = qdisc_sent(tap, "");
    printf("# measured: uncapped: offered %.0f KB/s, tap qdisc passed %.0f KB/s\n",
           offered / 2.0 / 1000, (after - before) / 2.0 / 1000);

    /* Cap at 1 Mbit/s. */
    const int64_t cap = 125000;
    int64_t t0 = now_ms();
    set_net_bps(a, cap);
    assert_true(wait_vm(a, applied_all, NULL, STATE_TIMEOUT_MS, &now_));
    printf("# measured: net_bps row change -> applied_gen (tc): %lld ms\n",
           (long long)(now_ms() - t0));
    assert_string_equal(now_.last_error, "");
    assert_true(tc_shows("qdisc", tap, "qdisc tbf"));
    assert_true(tc_shows("qdisc", tap, "rate 1Mbit"));
    assert_true(tc_shows("qdisc", tap, "qdisc ingress ffff:"));
    char tap_ingress[64];
    snprintf(tap_ingress, sizeof(tap_ingress), "%s ingress", tap);
    assert_true(tc_shows("filter", tap_ingress, "mirred (Egress Redirect to device"));
    assert_true(tc_shows("qdisc", ifb, "rate 1Mbit"));

    /* The cap bites: 2 s of the same blast pass about 1 Mbit/s (plus the bucket). */
    before = qdisc_sent(tap, "tbf");
    offered = blast(2000);
    after = qdisc_sent(tap, "tbf");
    double passed = (after - before) / 2.0;
    printf("# measured: cap %lld B/s: offered %.0f KB/s, tbf passed %.0f KB/s\n", (long long)cap,
           offered / 2.0 / 1000, passed / 1000);
    assert_true(offered / 2.0 > 3.0 * cap); /* the sender did push more than the cap */
    assert_true(passed <= 1.3 * cap);
    assert_true(passed >= 0.5 * cap);

    /* From the guest: QEMU sends RARP announcements out of the NIC itself
     * (QMP announce-self; the test guest has no network of its own).  They
     * enter the host through the tap's ingress and pass the ifb's tbf: at
     * 1000 B/s, 1000 frames of 60 bytes in about a second mostly drop. */
    set_net_bps(a, 1000);
    assert_true(wait_vm(a, applied_all, NULL, STATE_TIMEOUT_MS, &now_));
    assert_string_equal(now_.last_error, "");
    long long drop_before = 0, drop_after = 0;
    before = qdisc_stat(ifb, "tbf", &drop_before);
    struct hv_qmp *q = qmp_open(a);
    struct atr_error qerr = {0};
    int64_t t_ann = now_ms();
    assert_int_equal(hv_qmp_call(q, "announce-self",
                                 json_pack("{s:i, s:i, s:i, s:i}", "initial", 1, "max", 1, "rounds",
                                           1000, "step", 0),
                                 10000, NULL, &qerr),
                     0);
    hv_qmp_free(q);
    poll(NULL, 0, 2000); /* the measuring window, not a wait for state */
    after = qdisc_stat(ifb, "tbf", &drop_after);
    double secs = (now_ms() - t_ann) / 1000.0;
    printf("# measured: from the guest, cap 1000 B/s: ifb tbf passed %lld bytes in %.1f s "
           "(bucket 15140), dropped %lld frames\n",
           after - before, secs, drop_after - drop_before);
    assert_true(drop_after - drop_before > 100);
    assert_true(after - before <= 15140 + 1000 * secs + 1500);
    assert_true(after - before > 0);

    /* Live change: same QEMU, new rate. */
    set_net_bps(a, 1000000);
    assert_true(wait_vm(a, applied_all, NULL, STATE_TIMEOUT_MS, &now_));
    assert_string_equal(now_.last_error, "");
    assert_true(tc_shows("qdisc", tap, "rate 8Mbit"));
    assert_true(tc_shows("qdisc", ifb, "rate 8Mbit"));
    assert_int_equal(now_.qemu_pid, va.qemu_pid);

    /* hostd restarted: the re-adopted VM keeps its tap and its cap. */
    kill_hostd();
    start_hostd();
    assert_true(wait_vm(a, running_with_pid, NULL, STATE_TIMEOUT_MS, &now_));
    assert_int_equal(now_.qemu_pid, va.qemu_pid);
    assert_true(tc_shows("qdisc", tap, "rate 8Mbit"));
    assert_true(tc_shows("qdisc", ifb, "rate 8Mbit"));

    /* Lifted: no tbf, no ingress redirect, no ifb. */
    set_net_bps(a, 0);
    assert_true(wait_vm(a, applied_all, NULL, STATE_TIMEOUT_MS, &now_));
    assert_string_equal(now_.last_error, "");
    assert_true(tc_lacks("qdisc", tap, "tbf"));
    assert_true(tc_lacks("qdisc", tap, "ingress"));
    assert_true(link_gone(ifb));
    assert_int_equal(now_.qemu_pid, va.qemu_pid);

    /* User networking cannot be capped: stored, and the VM says why. */
    set_net_bps(u, cap);
    assert_true(wait_vm(u, applied_with_error, "user networking has no rate limiter",
                        STATE_TIMEOUT_MS, &now_));
    assert_int_equal(now_.net_bps, cap);

    /* The tap and the ifb go with the VM. */
    set_net_bps(a, cap);
    assert_true(wait_vm(a, applied_all, NULL, STATE_TIMEOUT_MS, NULL));
    assert_false(link_gone(ifb));
    int64_t ids[] = {a, u};
    for (int i = 0; i < 2; i++)
        assert_int_equal(db_vm_set_desired(T.db, ids[i], "deleted"), 0);
    for (int i = 0; i < 2; i++)
        assert_true(wait_vm(ids[i], row_gone, NULL, STATE_TIMEOUT_MS, NULL));
    assert_true(link_gone(tap));
    assert_true(link_gone(ifb));
    assert_false(process_alive(va.qemu_pid));
}

int main(int argc, char **argv)
{
    /* "snapshots" / "resources": their own ctests (hv.snapshots, hv.resources). */
    if (argc > 1 && strcmp(argv[1], "snapshots") == 0) {
        const struct CMUnitTest snaps[] = {
            cmocka_unit_test(test_snapshots_revert_the_guest_exactly_and_clone_to_a_new_vm),
            cmocka_unit_test(test_ram_snapshot_restores_a_stopped_vm_where_it_was),
        };
        return cmocka_run_group_tests(snaps, group_setup, group_teardown);
    }
    if (argc > 1 && strcmp(argv[1], "resources") == 0) {
        const struct CMUnitTest res[] = {
            cmocka_unit_test(test_live_resources_and_boost_apply_without_restart),
        };
        return cmocka_run_group_tests(res, group_setup, group_teardown);
    }
    if (argc > 1 && strcmp(argv[1], "netcap") == 0) {
        const struct CMUnitTest net[] = {
            cmocka_unit_test(test_bridged_vm_network_cap_is_tc_on_its_tap_and_changes_live),
        };
        return cmocka_run_group_tests(net, netcap_setup, group_teardown);
    }
    /* "ten": the ten-VM load test alone (its own ctest, hv.hostd_ten). */
    if (argc > 1 && strcmp(argv[1], "ten") == 0) {
        const struct CMUnitTest ten[] = {
            cmocka_unit_test(test_ten_vms_started_at_once_all_boot_and_leave_nothing_when_deleted),
        };
        return cmocka_run_group_tests(ten, group_setup, group_teardown);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_registers_with_capacity_and_accelerator),
        cmocka_unit_test(test_vm_boots_serves_vnc_and_obeys_power_changes),
        cmocka_unit_test(test_hostd_killed_then_restarted_readopts_the_same_qemus),
        cmocka_unit_test(test_qemu_killed_while_hostd_is_down_is_reported_failed),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
