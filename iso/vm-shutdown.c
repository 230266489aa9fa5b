/*
 * atrium-vm-shutdown: power off this host's desktop VMs when the host shuts
 * down.
 *
 * VMs outlive atrium-hostd on purpose (its unit has KillMode=process, so a
 * restart or an upgrade never stops a desktop).  At system shutdown that means
 * nobody would tell the guests: systemd's final kill would pull the plug on
 * every QEMU.  atrium-vm-shutdown.service runs this program as its ExecStop,
 * ordered so that it runs after atrium-hostd and atrium-displayd stopped and
 * their QMP connections are free, before file systems are unmounted:
 *
 *   1. every QEMU named by <runtime_dir>/vms/<id>/qemu.pid gets
 *      system_powerdown (ACPI power button) on its QMP socket;
 *   2. it waits for the processes to exit (pidfds in one poll), at most
 *      [hostd] stop_timeout seconds (or --timeout);
 *   3. QEMUs still running get "quit" (SIGTERM when QMP does not answer),
 *      then SIGKILL after QUIT_GRACE_MS.
 *
 * It logs one line per VM and a summary, and always exits 0 unless its
 * arguments or configuration are wrong: a shutdown must not stall on it.
 */
#include "common.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_VMS 4096
#define QMP_TIMEOUT_MS 3000 /* connect + greeting + one reply, per VM and socket */
#define QUIT_GRACE_MS 10000 /* after quit/SIGTERM, before SIGKILL */

struct vm {
    char id[32];
    char dir[512];
    pid_t pid;
    int pidfd; /* -1 once the process is gone */
};

static int pidfd_open_(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* Read one line (without '\n') from @fd into @buf before @deadline_ms. 0 or -errno. */
static int read_line(int fd, char *buf, size_t size, int64_t deadline_ms)
{
    size_t n = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, atr_deadline_left_ms(deadline_ms));
        if (r == 0)
            return -ETIMEDOUT;
        if (r < 0)
            return -errno;
        char c;
        ssize_t got = read(fd, &c, 1);
        if (got == 0)
            return -ECONNRESET;
        if (got < 0)
            return errno == EINTR ? 0 : -errno;
        if (c == '\n') {
            buf[n] = '\0';
            return 0;
        }
        if (n + 1 < size)
            buf[n++] = c;
    }
}

/* Send @cmd and read lines until its reply (events may come first). 0 or -errno. */
static int qmp_exec(int fd, const char *cmd, int64_t deadline_ms)
{
    char line[4096];
    char req[128];
    int len = snprintf(req, sizeof(req), "{\"execute\":\"%s\"}\n", cmd);
    if (write(fd, req, (size_t)len) != len)
        return -EIO;
    for (;;) {
        int r = read_line(fd, line, sizeof(line), deadline_ms);
        if (r < 0)
            return r;
        json_t *j = json_loads(line, 0, NULL);
        bool ret = j && json_object_get(j, "return");
        bool err = j && json_object_get(j, "error");
        json_decref(j);
        if (ret)
            return 0;
        if (err)
            return -EPROTO;
    }
}

/*
 * One QMP command on the socket @leaf of @vm.  A monitor another client still
 * holds accepts the connection but never greets: that is the timeout.
 */
static int qmp_command(const struct vm *vm, const char *leaf, const char *cmd)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", vm->dir, leaf) >=
        (int)sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int64_t deadline = atr_now_mono_ms() + QMP_TIMEOUT_MS;
    char greeting[4096];
    int r = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        r = -errno;
    if (r == 0)
        r = read_line(fd, greeting, sizeof(greeting), deadline);
    if (r == 0)
        r = qmp_exec(fd, "qmp_capabilities", deadline);
    if (r == 0)
        r = qmp_exec(fd, cmd, deadline);
    close(fd);
    return r;
}

/* @cmd through hostd's monitor, else displayd's.  0 or -errno of the last try. */
static int vm_send(const struct vm *vm, const char *cmd)
{
    int r = qmp_command(vm, "qmp.sock", cmd);
    if (r < 0)
        r = qmp_command(vm, "qmp-display.sock", cmd);
    return r;
}

/* Is @pid a QEMU (not a recycled pid)? */
static bool is_qemu(pid_t pid)
{
    char path[64], comm[64] = "";
    snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool ok = fgets(comm, sizeof(comm), f) && strncmp(comm, "qemu", 4) == 0;
    fclose(f);
    return ok;
}

/* The running VMs under @runtime_dir/vms into @vms. Returns how many. */
static size_t find_vms(const char *runtime_dir, struct vm *vms, size_t max)
{
    char vmsdir[512];
    snprintf(vmsdir, sizeof(vmsdir), "%s/vms", runtime_dir);
    DIR *d = opendir(vmsdir);
    if (!d) {
        if (errno != ENOENT)
            log_warn("cannot list VM runtime directories", "dir", vmsdir, "errno", LOG_INT(errno));
        return 0;
    }
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        if (e->d_name[0] == '.')
            continue;
        struct vm *vm = &vms[n];
        if (snprintf(vm->id, sizeof(vm->id), "%s", e->d_name) >= (int)sizeof(vm->id))
            continue;
        if (snprintf(vm->dir, sizeof(vm->dir), "%s/%s", vmsdir, e->d_name) >= (int)sizeof(vm->dir))
            continue;
        char pidpath[600], buf[32] = "";
        snprintf(pidpath, sizeof(pidpath), "%s/qemu.pid", vm->dir);
        FILE *f = fopen(pidpath, "re");
        if (!f)
            continue;
        bool got = fgets(buf, sizeof(buf), f) != NULL;
        fclose(f);
        buf[strcspn(buf, "\n")] = '\0';
        long long pid;
        if (!got || atr_parse_ll(buf, 2, INT32_MAX, &pid) < 0 || !is_qemu((pid_t)pid))
            continue;
        vm->pid = (pid_t)pid;
        vm->pidfd = pidfd_open_(vm->pid);
        if (vm->pidfd < 0)
            continue; /* exited meanwhile */
        n++;
    }
    closedir(d);
    return n;
}

/* Wait until every VM's process exited or @deadline_ms.  Returns how many still run. */
static size_t wait_exit(struct vm *vms, size_t n, int64_t deadline_ms)
{
    static struct pollfd p[MAX_VMS];
    for (;;) {
        size_t live = 0;
        for (size_t i = 0; i < n; i++)
            if (vms[i].pidfd >= 0)
                p[live++] = (struct pollfd){.fd = vms[i].pidfd, .events = POLLIN};
        if (live == 0)
            return 0;
        int r = poll(p, live, atr_deadline_left_ms(deadline_ms));
        if (r == 0)
            return live;
        if (r < 0 && errno != EINTR)
            return live;
        for (size_t i = 0; i < n; i++) {
            if (vms[i].pidfd < 0)
                continue;
            for (size_t k = 0; k < live; k++) {
                if (p[k].fd == vms[i].pidfd && (p[k].revents & (POLLIN | POLLHUP))) {
                    close(vms[i].pidfd);
                    vms[i].pidfd = -1;
                }
            }
        }
    }
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: atrium-vm-shutdown [--config PATH] [--timeout SECONDS]\n"
            "\n"
            "Power off every desktop VM running on this host: ACPI power button through\n"
            "QMP, then quit whatever still runs after the timeout.  Run by\n"
            "atrium-vm-shutdown.service when the host shuts down.\n"
            "\n"
            "  -c, --config PATH    configuration file (default: $ATRIUM_CONFIG, else %s)\n"
            "  -t, --timeout SECS   seconds the guests get (default: [hostd] stop_timeout)\n"
            "  -h, --help           show this help\n"
            "  -V, --version        show the version\n",
            ATR_CONFIG_DEFAULT_PATH);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0}};
    static struct vm vms[MAX_VMS];
    const char *config = NULL;
    long long timeout_s = -1;
    int c;
    if (atr_version_requested(argc, argv, "atrium-vm-shutdown"))
        return 0;
    while ((c = getopt_long(argc, argv, "c:t:h", opts, NULL)) != -1) {
        if (c == 'c') {
            config = optarg;
        } else if (c == 't') {
            if (atr_parse_ll(optarg, 0, 86400, &timeout_s) < 0) {
                fprintf(stderr, "atrium-vm-shutdown: --timeout must be 0 to 86400 seconds\n");
                return 2;
            }
        } else if (c == 'h') {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    log_init("vm-shutdown", LOG_LEVEL_INFO);
    struct atr_config *cfg = NULL;
    struct atr_error err = {0};
    if (atr_config_load(config, &cfg, &err) < 0) {
        fprintf(stderr, "atrium-vm-shutdown: %s\n", err.msg);
        return 3;
    }
    if (timeout_s < 0)
        timeout_s = cfg->hostd.stop_timeout_s;

    size_t n = find_vms(cfg->paths.runtime_dir, vms, MAX_VMS);
    int64_t t0 = atr_now_mono_ms();
    log_info("powering off VMs", "vms", LOG_INT(n), "timeout_s", LOG_INT(timeout_s));
    for (size_t i = 0; i < n; i++) {
        int r = vm_send(&vms[i], "system_powerdown");
        if (r < 0)
            log_warn("system_powerdown not delivered", "vm", vms[i].id, "pid", LOG_INT(vms[i].pid),
                     "errno", LOG_INT(-r));
        else
            log_info("system_powerdown sent", "vm", vms[i].id, "pid", LOG_INT(vms[i].pid));
    }
    size_t left = wait_exit(vms, n, t0 + timeout_s * 1000);
    size_t quit = 0, killed = 0;
    if (left > 0) {
        for (size_t i = 0; i < n; i++) {
            if (vms[i].pidfd < 0)
                continue;
            quit++;
            int r = vm_send(&vms[i], "quit");
            log_warn("guest did not power off in time: quit", "vm", vms[i].id, "pid",
                     LOG_INT(vms[i].pid), "qmp", r < 0 ? "no answer, SIGTERM" : "ok");
            if (r < 0)
                syscall(SYS_pidfd_send_signal, vms[i].pidfd, SIGTERM, NULL, 0);
        }
        if (wait_exit(vms, n, atr_now_mono_ms() + QUIT_GRACE_MS) > 0) {
            for (size_t i = 0; i < n; i++) {
                if (vms[i].pidfd < 0)
                    continue;
                killed++;
                log_error("QEMU did not quit: SIGKILL", "vm", vms[i].id, "pid",
                          LOG_INT(vms[i].pid));
                syscall(SYS_pidfd_send_signal, vms[i].pidfd, SIGKILL, NULL, 0);
                close(vms[i].pidfd);
                vms[i].pidfd = -1;
            }
        }
    }
    log_info("VMs powered off", "vms", LOG_INT(n), "by_guest", LOG_INT(n - quit), "quit",
             LOG_INT(quit - killed), "killed", LOG_INT(killed), "ms",
             LOG_INT(atr_now_mono_ms() - t0));
    atr_config_free(cfg);
    return 0;
}
