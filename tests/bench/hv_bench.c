/*
 * hv_bench: the measuring half of hv_bench.sh, which sets up both sides
 * (a private PostgreSQL database and the real atrium-hostd; a private
 * libvirtd with a dir storage pool) and tears them down.  This program
 * runs the same operations through each and prints "key value" lines:
 *
 *   - linked clone of the test guest's disk: Atrium through the hypervisor
 *     library's storage API (hv_storage_clone), libvirt through
 *     `virsh vol-create-as --backing-vol` in the dir pool; in blocks of ten,
 *     alternating, so both see the same background load;
 *   - a virsh call that only connects (`virsh uri`), to show what of the
 *     libvirt figure is the client's own start-up;
 *   - start of a new VM on a fresh clone -> "running" (QMP answered) and ->
 *     the guest's boot marker on its serial log.  Atrium: insert the VM row
 *     (desired power running), as atriumctl and poold do, and wait for hostd
 *     to report actual_power = running (LISTEN atrium_vm); libvirt: `virsh
 *     create` of a transient domain with the same devices, which returns
 *     once QEMU's monitor answered and the CPUs run.  The marker is awaited
 *     with inotify on the log's directory.  Rounds alternate between the
 *     two; the first round of each is a warm-up and not counted;
 *   - resident memory of hostd and libvirtd while each manages its one
 *     running VM, and of that VM's QEMU.
 *
 * Every wait has a deadline; a failure prints why and exits 1 (the script's
 * trap cleans up whatever was started).
 */
#include "db.h"
#include "hv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define BOOT_TIMEOUT_MS 240000
#define STATE_TIMEOUT_MS 120000
#define VIRSH_TIMEOUT_MS 120000
#define MARKER "ATRIUM-BOOT-OK"

static struct {
    const char *conninfo, *host, *runtime, *work, *guest, *uri, *pool;
    long long capacity;
    int rounds, clones;
    pid_t hostd, libvirtd;
    struct db *db;
    int64_t host_id;
    char cmdline[1024];
} B;

/* ---------------------------------------------------------------- helpers */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "hv_bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* snprintf into a path buffer; a path that does not fit ends the run. */
static void pathf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pathf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size)
        die("path too long: %s", fmt);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Median of @n samples (sorted in place). */
static int64_t median(int64_t *v, int n)
{
    qsort(v, (size_t)n, sizeof(v[0]), cmp_i64);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int64_t pct(int64_t *v, int n, int p)
{
    qsort(v, (size_t)n, sizeof(v[0]), cmp_i64);
    int i = (n * p + 99) / 100 - 1;
    return v[i < 0 ? 0 : i];
}

/* VmRSS or VmHWM of @pid in KiB; -1 when unreadable. */
static long long proc_status_kb(pid_t pid, const char *key)
{
    char path[64], line[256];
    pathf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    long long kb = -1;
    size_t klen = strlen(key);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            kb = strtoll(line + klen + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/*
 * The QEMU whose command line has "-name guest=@name,...": both Atrium and
 * libvirt name their QEMUs this way.  0 when none.
 */
static pid_t qemu_by_name(const char *name)
{
    char want[128];
    snprintf(want, sizeof(want), "guest=%s,", name);
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    pid_t found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], buf[8192];
        pathf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        if (!strstr(buf, "qemu-system"))
            continue;
        for (char *p = buf; p < buf + n; p += strlen(p) + 1)
            if (strncmp(p, want, strlen(want)) == 0) {
                found = (pid_t)atoi(e->d_name);
                break;
            }
    }
    closedir(d);
    return found;
}

/*
 * Run virsh with @args (NULL-terminated, after "-q -c URI") and wait for
 * it, at most VIRSH_TIMEOUT_MS.  Returns the time it took in ns; exits
 * with virsh's words on failure.
 */
static int64_t virsh(const char *const *args)
{
    const char *argv[32] = {"virsh", "-q", "-c", B.uri};
    int n = 4;
    for (; args[n - 4] && n < 31; n++)
        argv[n] = args[n - 4];
    argv[n] = NULL;

    char errpath[PATH_MAX];
    pathf(errpath, sizeof(errpath), "%s/virsh.err", B.work);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int64_t t0 = atr_now_mono_ns();
    pid_t pid;
    int r = posix_spawnp(&pid, "virsh", &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (r != 0)
        die("cannot run virsh: %s", strerror(r));
    /* Bounded: wait on the child's pidfd with a deadline. */
    int status;
    int pfd = pidfd_open(pid, 0);
    struct pollfd p = {.fd = pfd, .events = POLLIN};
    if (pfd < 0 || poll(&p, 1, VIRSH_TIMEOUT_MS) != 1) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        die("virsh %s did not answer within %d s", args[0], VIRSH_TIMEOUT_MS / 1000);
    }
    close(pfd);
    if (waitpid(pid, &status, 0) != pid)
        die("waitpid: %s", strerror(errno));
    int64_t took = atr_now_mono_ns() - t0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char msg[1024] = "";
        FILE *f = fopen(errpath, "re");
        if (f) {
            size_t m = fread(msg, 1, sizeof(msg) - 1, f);
            msg[m] = '\0';
            fclose(f);
        }
        die("virsh %s failed: %s", args[0], msg);
    }
    return took;
}

static int count_in_file(const char *path, const char *needle)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

/*
 * Wait until the file @path (its directory exists) holds a line with
 * @needle, watching the directory with inotify.  Returns the monotonic
 * time in ns when it was seen, or exits after @timeout_ms.
 */
static int64_t wait_marker(const char *path, const char *needle, int timeout_ms)
{
    char dir[PATH_MAX];
    pathf(dir, sizeof(dir), "%s", path);
    *strrchr(dir, '/') = '\0';
    int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (in < 0 || inotify_add_watch(in, dir, IN_MODIFY | IN_CREATE | IN_CLOSE_WRITE) < 0)
        die("inotify on %s: %s", dir, strerror(errno));
    int64_t deadline = atr_now_mono_ms() + timeout_ms;
    for (;;) {
        if (count_in_file(path, needle) > 0) {
            int64_t t = atr_now_mono_ns();
            close(in);
            return t;
        }
        struct pollfd p = {.fd = in, .events = POLLIN};
        int left = atr_deadline_left_ms(deadline);
        if (left == 0 || poll(&p, 1, left) < 0)
            die("no %s in %s within %d s", needle, path, timeout_ms / 1000);
        char buf[4096];
        while (read(in, buf, sizeof(buf)) > 0) {
        }
    }
}

/* Wait until VM @id's row satisfies: actual_power == @power, or (NULL) the row is gone. */
static void wait_row(int64_t id, const char *power, struct db_vm *ret)
{
    int64_t deadline = atr_now_mono_ms() + STATE_TIMEOUT_MS;
    for (;;) {
        struct db_vm v;
        int r = db_vm_get(B.db, id, &v);
        if (power && r == 0 && strcmp(v.actual_power, power) == 0) {
            if (ret)
                *ret = v;
            return;
        }
        if (power && r == 0 && strcmp(v.state, "failed") == 0)
            die("VM %lld failed: %s", (long long)id, v.last_error);
        if (!power && r == -ENOENT)
            return;
        if (r < 0 && r != -ENOENT)
            die("reading VM %lld: %s", (long long)id, strerror(-r));
        int left = atr_deadline_left_ms(deadline);
        if (left == 0 || db_wait(B.db, left) < 0)
            die("VM %lld: not %s within %d s", (long long)id, power ? power : "deleted",
                STATE_TIMEOUT_MS / 1000);
        char *ch, *pl;
        while (db_notify_next(B.db, &ch, &pl) == 1) {
            free(ch);
            free(pl);
        }
    }
}

/* ----------------------------------------------------------------- clones */

static void bench_clones(void)
{
    int n = B.clones;
    int64_t *atr = calloc((size_t)n, sizeof(int64_t)), *lv = calloc((size_t)n, sizeof(int64_t));
    if (!atr || !lv)
        die("out of memory");
    char base[PATH_MAX];
    pathf(base, sizeof(base), "%s/pool/base.qcow2", B.work);
    int done_a = 0, done_l = 0;
    while (done_a < n || done_l < n) {
        for (int k = 0; k < 10 && done_a < n; k++, done_a++) {
            char path[PATH_MAX];
            struct atr_error err = {0};
            pathf(path, sizeof(path), "%s/atr/clone-%d.qcow2", B.work, done_a);
            int64_t t0 = atr_now_mono_ns();
            if (hv_storage_clone(NULL, base, path, &err) < 0)
                die("hv_storage_clone %s: %s", path, err.msg);
            atr[done_a] = atr_now_mono_ns() - t0;
        }
        for (int k = 0; k < 10 && done_l < n; k++, done_l++) {
            char name[64], cap[32];
            snprintf(name, sizeof(name), "clone-%d.qcow2", done_l);
            snprintf(cap, sizeof(cap), "%lldB", B.capacity);
            const char *args[] = {"vol-create-as",
                                  B.pool,
                                  name,
                                  cap,
                                  "--format",
                                  "qcow2",
                                  "--backing-vol",
                                  "base.qcow2",
                                  "--backing-vol-format",
                                  "qcow2",
                                  NULL};
            lv[done_l] = virsh(args);
        }
    }
    /* The client's own cost: start virsh, connect, ask for the URI, exit. */
    int64_t noop[20];
    for (int i = 0; i < 20; i++) {
        const char *args[] = {"uri", NULL};
        noop[i] = virsh(args);
    }
    printf("clones %d\n", n);
    printf("atr_clone_median_us %" PRId64 "\n", median(atr, n) / 1000);
    printf("atr_clone_p90_us %" PRId64 "\n", pct(atr, n, 90) / 1000);
    printf("lv_clone_median_us %" PRId64 "\n", median(lv, n) / 1000);
    printf("lv_clone_p90_us %" PRId64 "\n", pct(lv, n, 90) / 1000);
    printf("lv_noop_median_us %" PRId64 "\n", median(noop, 20) / 1000);
    fflush(stdout);
    free(atr);
    free(lv);
}

/* ------------------------------------------------------------------ boots */

struct sample {
    int64_t qmp_ns, boot_ns;
    long long daemon_rss_kb, qemu_rss_kb;
};

static void atrium_round(int i, struct sample *s)
{
    char base[PATH_MAX], overlay[PATH_MAX], kernel[PATH_MAX], initrd[PATH_MAX], name[64];
    pathf(base, sizeof(base), "%s/pool/base.qcow2", B.work);
    pathf(overlay, sizeof(overlay), "%s/atr/boot-%d.qcow2", B.work, i);
    pathf(kernel, sizeof(kernel), "%s/vmlinuz", B.guest);
    pathf(initrd, sizeof(initrd), "%s/initrd.img", B.guest);
    snprintf(name, sizeof(name), "hvb-atr-%d", i);
    struct atr_error err = {0};
    if (hv_storage_clone(NULL, base, overlay, &err) < 0)
        die("hv_storage_clone %s: %s", overlay, err.msg);
    struct db_vm_new v = {
        .name = name,
        .host_id = B.host_id,
        .vcpus = 1,
        .memory_mb = 256,
        .disk_path = overlay,
        .boot = "kernel",
        .boot_kernel = kernel,
        .boot_initrd = initrd,
        .boot_cmdline = B.cmdline,
        .nic_mode = "user",
    };
    int64_t id;
    int64_t t0 = atr_now_mono_ns();
    int r = db_vm_create(B.db, &v, &id);
    if (r < 0)
        die("db_vm_create: %s", strerror(-r));
    struct db_vm row;
    wait_row(id, "running", &row);
    s->qmp_ns = atr_now_mono_ns() - t0;
    char serial[PATH_MAX];
    pathf(serial, sizeof(serial), "%s/vms/%lld/serial.log", B.runtime, (long long)id);
    s->boot_ns = wait_marker(serial, MARKER, BOOT_TIMEOUT_MS) - t0;
    s->daemon_rss_kb = proc_status_kb(B.hostd, "VmRSS");
    s->qemu_rss_kb = proc_status_kb(row.qemu_pid, "VmRSS");

    if ((r = db_vm_set_desired(B.db, id, "deleted")) < 0)
        die("db_vm_set_desired: %s", strerror(-r));
    wait_row(id, NULL, NULL);
    hv_storage_delete(overlay);
}

static void libvirt_round(int i, struct sample *s)
{
    char vol[64], name[64], dir[PATH_MAX], xml[PATH_MAX], disk[PATH_MAX], serial[PATH_MAX], cap[32];
    snprintf(vol, sizeof(vol), "boot-%d.qcow2", i);
    snprintf(name, sizeof(name), "hvb-lv-%d", i);
    pathf(dir, sizeof(dir), "%s/lv/%d", B.work, i);
    pathf(xml, sizeof(xml), "%s/domain.xml", dir);
    pathf(disk, sizeof(disk), "%s/pool/%s", B.work, vol);
    pathf(serial, sizeof(serial), "%s/serial.log", dir);
    snprintf(cap, sizeof(cap), "%lldB", B.capacity);
    if (mkdir(dir, 0700) < 0)
        die("mkdir %s: %s", dir, strerror(errno));
    const char *mk[] = {"vol-create-as",
                        B.pool,
                        vol,
                        cap,
                        "--format",
                        "qcow2",
                        "--backing-vol",
                        "base.qcow2",
                        "--backing-vol-format",
                        "qcow2",
                        NULL};
    virsh(mk);

    /* The same machine hv_qemu_argv_new builds: q35, TCG with -cpu max,
     * 1 vCPU, 256 MiB, virtio disk on the clone, virtio-net on user
     * networking, qxl served by VNC and SPICE on unix sockets, the SPICE
     * agent channel, a USB tablet and two SPICE USB redirection channels,
     * HDA audio to SPICE, a balloon, ttyS0 to a file, kernel boot. */
    FILE *f = fopen(xml, "we");
    if (!f)
        die("cannot write %s: %s", xml, strerror(errno));
    fprintf(
        f,
        "<domain type='qemu'>\n"
        "  <name>%s</name>\n"
        "  <memory unit='MiB'>256</memory>\n"
        "  <vcpu>1</vcpu>\n"
        "  <os>\n"
        "    <type arch='x86_64' machine='q35'>hvm</type>\n"
        "    <kernel>%s/vmlinuz</kernel>\n"
        "    <initrd>%s/initrd.img</initrd>\n"
        "    <cmdline>%s</cmdline>\n"
        "  </os>\n"
        "  <features><acpi/></features>\n"
        "  <cpu mode='maximum'/>\n"
        "  <on_poweroff>destroy</on_poweroff>\n"
        "  <devices>\n"
        "    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n"
        "    <disk type='file' device='disk'>\n"
        "      <driver name='qemu' type='qcow2'/>\n"
        "      <source file='%s'/>\n"
        "      <target dev='vda' bus='virtio'/>\n"
        "    </disk>\n"
        "    <interface type='user'><model type='virtio'/></interface>\n"
        "    <graphics type='vnc' socket='%s/vnc.sock'/>\n"
        "    <graphics type='spice'><listen type='socket' socket='%s/spice.sock'/></graphics>\n"
        "    <video><model type='qxl'/></video>\n"
        "    <channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>\n"
        "    <controller type='usb' model='qemu-xhci'/>\n"
        "    <input type='tablet' bus='usb'/>\n"
        "    <redirdev bus='usb' type='spicevmc'/>\n"
        "    <redirdev bus='usb' type='spicevmc'/>\n"
        "    <audio id='1' type='spice'/>\n"
        "    <sound model='ich9'><audio id='1'/></sound>\n"
        "    <memballoon model='virtio'/>\n"
        "    <serial type='file'><source path='%s'/><target port='0'/></serial>\n"
        "  </devices>\n"
        "</domain>\n",
        name, B.guest, B.guest, B.cmdline, disk, dir, dir, serial);
    if (fclose(f) != 0)
        die("cannot write %s", xml);

    const char *create[] = {"create", xml, NULL};
    int64_t t0 = atr_now_mono_ns();
    s->qmp_ns = virsh(create);
    s->boot_ns = wait_marker(serial, MARKER, BOOT_TIMEOUT_MS) - t0;
    s->daemon_rss_kb = proc_status_kb(B.libvirtd, "VmRSS");
    s->qemu_rss_kb = proc_status_kb(qemu_by_name(name), "VmRSS");

    const char *destroy[] = {"destroy", name, NULL};
    virsh(destroy);
    const char *del[] = {"vol-delete", vol, "--pool", B.pool, NULL};
    virsh(del);
}

static void print_samples(const char *key, struct sample *s, int n, int which)
{
    int64_t v[64];
    printf("%s_samples_ms", key);
    for (int i = 0; i < n; i++) {
        v[i] = which == 0 ? s[i].qmp_ns / 1000000 : s[i].boot_ns / 1000000;
        printf(" %" PRId64, v[i]);
    }
    printf("\n%s_median_ms %" PRId64 "\n", key, median(v, n));
}

static long long median_ll(struct sample *s, int n, bool daemon)
{
    int64_t v[64];
    for (int i = 0; i < n; i++)
        v[i] = daemon ? s[i].daemon_rss_kb : s[i].qemu_rss_kb;
    return (long long)median(v, n);
}

static void bench_boots(void)
{
    struct sample atr[64], lv[64], warm;
    /* Warm-up: the first start of each pays for things the others do not
     * (page cache of QEMU and the guest, libvirt's first domain). */
    atrium_round(0, &warm);
    libvirt_round(0, &warm);
    for (int i = 0; i < B.rounds; i++) {
        atrium_round(i + 1, &atr[i]);
        libvirt_round(i + 1, &lv[i]);
        fprintf(stderr, "hv_bench: round %d/%d: atrium %lld/%lld ms, libvirt %lld/%lld ms\n", i + 1,
                B.rounds, (long long)(atr[i].qmp_ns / 1000000),
                (long long)(atr[i].boot_ns / 1000000), (long long)(lv[i].qmp_ns / 1000000),
                (long long)(lv[i].boot_ns / 1000000));
    }
    printf("rounds %d\n", B.rounds);
    print_samples("atr_qmp", atr, B.rounds, 0);
    print_samples("lv_qmp", lv, B.rounds, 0);
    print_samples("atr_boot", atr, B.rounds, 1);
    print_samples("lv_boot", lv, B.rounds, 1);
    printf("atr_daemon_rss_kb %lld\n", median_ll(atr, B.rounds, true));
    printf("lv_daemon_rss_kb %lld\n", median_ll(lv, B.rounds, true));
    printf("atr_qemu_rss_kb %lld\n", median_ll(atr, B.rounds, false));
    printf("lv_qemu_rss_kb %lld\n", median_ll(lv, B.rounds, false));
    printf("atr_daemon_hwm_kb %lld\n", proc_status_kb(B.hostd, "VmHWM"));
    printf("lv_daemon_hwm_kb %lld\n", proc_status_kb(B.libvirtd, "VmHWM"));
}

/* ------------------------------------------------------------------- main */

static void usage(void)
{
    fprintf(stderr,
            "usage: hv_bench --db CONNINFO --host NAME --runtime DIR --work DIR --guest DIR\n"
            "                --uri LIBVIRT_URI --pool NAME --capacity BYTES --hostd-pid PID\n"
            "                --libvirtd-pid PID [--rounds N] [--clones N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},
        {"host", required_argument, NULL, 'h'},
        {"runtime", required_argument, NULL, 'r'},
        {"work", required_argument, NULL, 'w'},
        {"guest", required_argument, NULL, 'g'},
        {"uri", required_argument, NULL, 'u'},
        {"pool", required_argument, NULL, 'p'},
        {"capacity", required_argument, NULL, 'c'},
        {"rounds", required_argument, NULL, 'R'},
        {"clones", required_argument, NULL, 'C'},
        {"hostd-pid", required_argument, NULL, 'H'},
        {"libvirtd-pid", required_argument, NULL, 'L'},
        {0},
    };
    long long ll;
    B.rounds = 5;
    B.clones = 100;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'd':
            B.conninfo = optarg;
            break;
        case 'h':
            B.host = optarg;
            break;
        case 'r':
            B.runtime = optarg;
            break;
        case 'w':
            B.work = optarg;
            break;
        case 'g':
            B.guest = optarg;
            break;
        case 'u':
            B.uri = optarg;
            break;
        case 'p':
            B.pool = optarg;
            break;
        case 'c':
            if (atr_parse_ll(optarg, 1, 1LL << 40, &B.capacity) < 0)
                usage();
            break;
        case 'R':
            if (atr_parse_ll(optarg, 1, 63, &ll) < 0)
                usage();
            B.rounds = (int)ll;
            break;
        case 'C':
            if (atr_parse_ll(optarg, 1, 10000, &ll) < 0)
                usage();
            B.clones = (int)ll;
            break;
        case 'H':
            if (atr_parse_ll(optarg, 1, INT_MAX, &ll) < 0)
                usage();
            B.hostd = (pid_t)ll;
            break;
        case 'L':
            if (atr_parse_ll(optarg, 1, INT_MAX, &ll) < 0)
                usage();
            B.libvirtd = (pid_t)ll;
            break;
        default:
            usage();
        }
    }
    if (!B.conninfo || !B.host || !B.runtime || !B.work || !B.guest || !B.uri || !B.pool ||
        !B.capacity || !B.hostd || !B.libvirtd || optind != argc)
        usage();

    char path[PATH_MAX];
    pathf(path, sizeof(path), "%s/cmdline", B.guest);
    FILE *f = fopen(path, "re");
    if (!f || !fgets(B.cmdline, sizeof(B.cmdline), f))
        die("cannot read %s", path);
    fclose(f);
    B.cmdline[strcspn(B.cmdline, "\n")] = '\0';

    struct atr_error err = {0};
    if (db_open(B.conninfo, 10, "hv_bench", &B.db, &err) < 0)
        die("database: %s", err.msg);
    if (db_listen(B.db, DB_CHANNEL_VM) < 0)
        die("LISTEN %s failed", DB_CHANNEL_VM);
    struct db_host h;
    if (db_host_get_by_name(B.db, B.host, &h) < 0)
        die("host %s is not registered", B.host);
    B.host_id = h.id;

    bench_clones();
    bench_boots();
    db_close(B.db);
    return 0;
}
