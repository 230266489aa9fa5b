/*
 * bench.instant: instant clones against linked clones of the test guest
 * (TCG), with libatrium-hv and QEMU only.
 *
 *   instant_bench GUEST_DIR [N]      (N clones of each kind, default 20)
 *
 * 1. One linked clone alone: QEMU start to the guest's boot-time marker
 *    (cold boot).  One template: boot, settle, save.  One instant clone
 *    alone: QEMU start to its ATRIUM-IDENTITY line (identity applied).
 *    The ratio of the two is the desktop-creation speed-up.
 * 2. N instant clones, one after another; N linked clones booted together.
 *    Each set idles 10 s, then the sum of PSS over its QEMU processes
 *    (/proc/PID/smaps_rollup) is taken, split in anonymous and file pages.
 *    The template's RAM file pages that sit in the page cache and that no
 *    clone maps are counted separately (mincore), so nothing is hidden.
 *
 * Prints Markdown tables.  Every QEMU is killed by its recorded pid and
 * waited for, the temp dir removed, also when a step fails (exit 1).
 */
#include "vmset.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_VMS VS_MAX_VMS
#define MEMORY_MB 256

static struct {
    char dir[64];
    struct vs_guest g;
    struct vs vs;
    char names[MAX_VMS][32];
    int64_t t_up[MAX_VMS]; /* when its awaited serial line was seen */
} B = {.vs.inotify = -1};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* ctest's timeout or ^C: the QEMUs run in their own sessions, so kill them
 * by the pids recorded (kill and _exit are async-signal-safe); the temp
 * dir is left to the next run's eyes (its name says instant-bench). */
static void on_signal(int sig)
{
    vs_kill_pids(&B.vs);
    _exit(128 + sig);
}

static void cleanup(void)
{
    vs_close(&B.vs);
    if (B.dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", B.dir);
        if (system(cmd) != 0)
            fprintf(stderr, "instant_bench: could not remove %s\n", B.dir);
        B.dir[0] = '\0';
    }
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "instant_bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    cleanup();
    exit(1);
}

static bool drive_until(vs_cond_fn cond, const void *arg, int timeout_ms)
{
    return vs_drive_until(&B.vs, cond, arg, timeout_ms);
}

struct serial_set {
    int from, to;
    const char *needle; /* NULL: each VM's own ATRIUM-IDENTITY line */
};

/* Every VM in [from, to) has @needle on its serial port; stamps t_up. */
static bool cond_serials(const void *arg)
{
    const struct serial_set *s = arg;
    bool all = true;
    for (int i = s->from; i < s->to; i++) {
        struct vs_vm *b = &B.vs.vms[i];
        if (B.t_up[i])
            continue;
        char want[128];
        if (s->needle)
            snprintf(want, sizeof(want), "%s", s->needle);
        else
            snprintf(want, sizeof(want), "ATRIUM-IDENTITY mac=52:54:00:77:%02x:%02x hostname=%s",
                     i / 256, i % 256, B.names[i]);
        if (b->vm && vs_file_has(hv_vm_paths(b->vm)->serial_log, want))
            B.t_up[i] = atr_now_mono_ms();
        else
            all = false;
    }
    return all;
}

static void def_init(struct hv_vm_def *d, int slot, const char *disk, const char *ram, int kind)
{
    /* kind 0: linked clone (plain boot), 1: template, 2: instant clone */
    *d = (struct hv_vm_def){.id = slot + 1,
                            .name = B.names[slot],
                            .vcpus = 1,
                            .memory_mb = MEMORY_MB,
                            .disk_path = disk,
                            .boot = HV_BOOT_KERNEL,
                            .kernel = B.g.kernel,
                            .initrd = B.g.initrd,
                            .cmdline = B.g.cmdline,
                            .nic = HV_NIC_USER,
                            .mac = "52:54:00:00:00:01",
                            .accel = HV_ACCEL_TCG,
                            .ram_path = kind ? ram : NULL,
                            .ram_shared = kind == 1,
                            .incoming_defer = kind == 2,
                            .identity_port = kind != 0};
}

static void start(int slot, const struct hv_vm_def *d)
{
    struct atr_error err = {0};
    B.t_up[slot] = 0;
    if (vs_start(&B.vs, slot, d, &err) < 0)
        die("start %s: %s", d->name, err.msg);
}

static void stop(int slot)
{
    vs_stop(&B.vs, slot, 20000);
}

static void disk_for(int slot, const char *base, char *buf, size_t size)
{
    struct atr_error err = {0};
    snprintf(buf, size, "%s/%s.qcow2", B.dir, B.names[slot]);
    if (hv_storage_clone(NULL, base, buf, &err) < 0)
        die("clone %s: %s", buf, err.msg);
}

/* Start instant clone @slot and wait for its identity line; returns ms. */
static int64_t instant_clone(int slot, const struct hv_instant_files *f)
{
    struct vs_vm *b = &B.vs.vms[slot];
    const char *name = B.names[slot];
    snprintf(B.names[slot], sizeof(B.names[slot]), "ic%d", slot);
    char disk[256];
    disk_for(slot, f->disk, disk, sizeof(disk));
    struct hv_vm_def d;
    def_init(&d, slot, disk, f->ram, 2);
    start(slot, &d);
    if (vs_load_start(b, f->state) < 0)
        die("load %s", name);
    if (!drive_until(vs_cond_flag, &b->load_done, 60000) || b->load_err)
        die("load %s: %s", name, b->load_msg);
    if (!drive_until(vs_cond_running, b, 60000))
        die("%s never ran", name);
    char mac[18];
    snprintf(mac, sizeof(mac), "52:54:00:77:%02x:%02x", slot / 256, slot % 256);
    struct atr_error err = {0};
    if (hv_instant_identity_send(hv_vm_paths(b->vm), mac, name, &err) < 0)
        die("identity %s: %s", name, err.msg);
    struct serial_set s = {slot, slot + 1, NULL};
    if (!drive_until(cond_serials, &s, 60000))
        die("%s printed no identity", name);
    return B.t_up[slot] - b->t0;
}

struct pss {
    int64_t pss, anon, file; /* kB */
};

static void pss_add(pid_t pid, struct pss *sum)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        die("cannot read %s", path);
    char line[256];
    long long v;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "Pss: %lld kB", &v) == 1)
            sum->pss += v;
        else if (sscanf(line, "Pss_Anon: %lld kB", &v) == 1)
            sum->anon += v;
        else if (sscanf(line, "Pss_File: %lld kB", &v) == 1)
            sum->file += v;
    }
    fclose(f);
}

/* kB of @path resident in the page cache. */
static int64_t cached_kb(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size == 0)
        die("cannot open %s", path);
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        die("cannot map %s", path);
    long pg = sysconf(_SC_PAGESIZE);
    size_t pages = ((size_t)st.st_size + (size_t)pg - 1) / (size_t)pg;
    unsigned char *vec = malloc(pages);
    if (!vec || mincore(p, (size_t)st.st_size, vec) < 0)
        die("mincore %s", path);
    int64_t n = 0;
    for (size_t i = 0; i < pages; i++)
        n += vec[i] & 1;
    free(vec);
    munmap(p, (size_t)st.st_size);
    return n * pg / 1024;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void idle(int seconds)
{
    bool never = false;
    drive_until(vs_cond_flag, &never, seconds * 1000);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s GUEST_DIR [N]\n", argv[0]);
        return 2;
    }
    int n = argc == 3 ? atoi(argv[2]) : 20;
    if (n < 1 || 2 * n + 3 > MAX_VMS) {
        fprintf(stderr, "instant_bench: N must be 1..%d\n", (MAX_VMS - 3) / 2);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (vs_guest_load(argv[1], &B.g) < 0)
        die("no %s/cmdline (build the guest first)", argv[1]);
    snprintf(B.dir, sizeof(B.dir), "/tmp/instant-bench-XXXXXX");
    if (!mkdtemp(B.dir)) {
        B.dir[0] = '\0';
        die("mkdtemp failed");
    }
    char runtime[96];
    snprintf(runtime, sizeof(runtime), "%s/run", B.dir);
    if (vs_init(&B.vs, runtime) < 0)
        die("cannot set up %s", runtime);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    /* Slots: 0 template, 1 lone linked, 2 lone instant, 3.. the sets. */
    char disk[256];
    struct hv_instant_files f;
    char tpl[128];
    snprintf(tpl, sizeof(tpl), "%s/tpl", B.dir);
    mkdir(tpl, 0700);
    if (hv_instant_files_init(tpl, &f) < 0)
        die("template paths");

    /* One linked clone alone: cold boot to the guest's marker. */
    snprintf(B.names[1], sizeof(B.names[1]), "lone-linked");
    disk_for(1, B.g.golden, disk, sizeof(disk));
    struct hv_vm_def d;
    def_init(&d, 1, disk, NULL, 0);
    start(1, &d);
    struct serial_set lone = {1, 2, "ATRIUM-MARK: NONE"};
    if (!drive_until(cond_serials, &lone, 600000))
        die("the lone linked clone did not boot");
    int64_t cold_ms = B.t_up[1] - B.vs.vms[1].t0;
    stop(1);

    /* The template. */
    snprintf(B.names[0], sizeof(B.names[0]), "template");
    struct atr_error err = {0};
    if (hv_storage_clone(NULL, B.g.golden, f.disk, &err) < 0)
        die("template disk: %s", err.msg);
    def_init(&d, 0, f.disk, f.ram, 1);
    start(0, &d);
    struct serial_set tmark = {0, 1, "ATRIUM-MARK: NONE"};
    if (!drive_until(vs_cond_flag, &B.vs.vms[0].port_open, 600000) ||
        !drive_until(cond_serials, &tmark, 600000))
        die("the template did not settle");
    int64_t settle_ms = B.t_up[0] - B.vs.vms[0].t0;
    int64_t s0 = atr_now_mono_ms();
    if (vs_save_start(&B.vs.vms[0], f.state) < 0)
        die("save");
    if (!drive_until(vs_cond_flag, &B.vs.vms[0].save_done, 60000) || B.vs.vms[0].save_err)
        die("save failed");
    int64_t save_ms = atr_now_mono_ms() - s0;
    stop(0);
    struct stat st;
    stat(f.state, &st);

    /* One instant clone alone. */
    int64_t lone_instant_ms = instant_clone(2, &f);
    stop(2);

    printf("\n| one desktop of the test guest (TCG, %d MiB), nothing else running | ms |\n",
           MEMORY_MB);
    printf("|---|---:|\n");
    printf("| linked clone: QEMU start → boot-time marker (cold boot) | %" PRId64 " |\n", cold_ms);
    printf("| instant clone: QEMU start → identity applied (ATRIUM-IDENTITY) | %" PRId64 " |\n",
           lone_instant_ms);
    printf("| **ratio cold boot / instant** | **%.1fx** |\n",
           (double)cold_ms / (double)(lone_instant_ms ? lone_instant_ms : 1));
    printf("| template (once per image version and host): start → settled | %" PRId64 " |\n",
           settle_ms);
    printf("| template: save device state (%lld bytes) | %" PRId64 " |\n", (long long)st.st_size,
           save_ms);

    /* N instant clones, one after another. */
    int64_t times_i[MAX_VMS], times_l[MAX_VMS];
    for (int i = 0; i < n; i++)
        times_i[i] = instant_clone(3 + i, &f);
    idle(10);
    struct pss pi = {0};
    for (int i = 0; i < n; i++)
        pss_add(B.vs.vms[3 + i].pid, &pi);
    int64_t ram_cached = cached_kb(f.ram);
    /* What of the RAM file the clones map is already in their Pss_File; the
     * rest of its cached pages is charged to nobody by PSS. */
    for (int i = 0; i < n; i++)
        stop(3 + i);
    int64_t ram_cached_after = cached_kb(f.ram);

    /* N linked clones, booted together. */
    for (int i = 0; i < n; i++) {
        int slot = 3 + n + i;
        snprintf(B.names[slot], sizeof(B.names[slot]), "lc%d", i);
        disk_for(slot, B.g.golden, disk, sizeof(disk));
        def_init(&d, slot, disk, NULL, 0);
        start(slot, &d);
    }
    struct serial_set all = {3 + n, 3 + 2 * n, "ATRIUM-MARK: NONE"};
    if (!drive_until(cond_serials, &all, 1200000))
        die("not every linked clone booted within 20 min");
    for (int i = 0; i < n; i++)
        times_l[i] = B.t_up[3 + n + i] - B.vs.vms[3 + n + i].t0;
    idle(10);
    struct pss pl = {0};
    for (int i = 0; i < n; i++)
        pss_add(B.vs.vms[3 + n + i].pid, &pl);
    for (int i = 0; i < n; i++)
        stop(3 + n + i);

    qsort(times_i, (size_t)n, sizeof(int64_t), cmp_i64);
    qsort(times_l, (size_t)n, sizeof(int64_t), cmp_i64);
    printf("\n| %d idle desktops (TCG, %d MiB each) | PSS sum MiB | per desktop MiB | anon MiB | "
           "file MiB | start → usable p50 / max ms |\n",
           n, MEMORY_MB);
    printf("|---|---:|---:|---:|---:|---:|\n");
    printf("| linked clones (booted together) | %.0f | %.1f | %.0f | %.0f | %" PRId64 " / %" PRId64
           " |\n",
           pl.pss / 1024.0, pl.pss / 1024.0 / n, pl.anon / 1024.0, pl.file / 1024.0,
           times_l[n / 2], times_l[n - 1]);
    printf("| instant clones (one after another) | %.0f | %.1f | %.0f | %.0f | %" PRId64
           " / %" PRId64 " |\n",
           pi.pss / 1024.0, pi.pss / 1024.0 / n, pi.anon / 1024.0, pi.file / 1024.0,
           times_i[n / 2], times_i[n - 1]);
    printf("| instant, plus the template RAM file's cached pages once more (%.0f MiB; upper bound) | %.0f | %.1f | | | "
           "|\n",
           ram_cached / 1024.0, (pi.pss + ram_cached) / 1024.0,
           (pi.pss + ram_cached) / 1024.0 / n);
    printf("\nLinked / instant PSS: %.2fx (%.2fx counting the whole template RAM file once); "
           "template RAM file cached after the clones ended: %.0f MiB.\n",
           (double)pl.pss / (double)pi.pss, (double)pl.pss / (double)(pi.pss + ram_cached),
           ram_cached_after / 1024.0);
    cleanup();
    return pl.pss > pi.pss ? 0 : 1;
}
