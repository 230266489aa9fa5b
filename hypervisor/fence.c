/*
 * Fencing: proving that a host that lost the database runs no VM any more.
 *
 * Why a lease file and a guard process, not a watchdog thread in hostd:
 * VMs outlive hostd by design (a restarted hostd adopts them), so when
 * hostd itself is killed -9 nothing of hostd is left to kill its VMs.  The
 * guard is a second, tiny process per host that does nothing but read one
 * file and kill: hostd renews the lease only after a database heartbeat
 * that succeeded, to the time that heartbeat was *sent* plus the deadline,
 * so whatever stops the heartbeats (hostd killed or hung, the host's link
 * cut, PostgreSQL unreachable) lets the lease run out, and the guard kills
 * every QEMU of the host no later than the deadline after the last
 * heartbeat the database recorded.  The cluster (poold) waits out that
 * deadline plus a margin before it declares the host fenced and restarts
 * its VMs elsewhere.  A hostd restarted within the deadline renews the lease
 * before it expires, and its VMs never notice.
 *
 * The clock is CLOCK_BOOTTIME: it counts on while the machine is suspended,
 * which is when the rest of the site keeps counting too.
 */
#include "hv.h"
#include "proc-priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GUARD_PERIOD_MS 500 /* the guard looks at least this often */

int64_t hv_fence_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int path_in(char *buf, size_t size, const char *dir, const char *name)
{
    int n = snprintf(buf, size, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* Write @text to @dir/@name through a temporary and a rename. */
static int write_atomic(const char *dir, const char *name, const char *text)
{
    char path[1024], tmp[1040];
    int r = path_in(path, sizeof(path), dir, name);
    if (r < 0)
        return r;
    snprintf(tmp, sizeof(tmp), "%s.tmp-%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    size_t len = strlen(text);
    ssize_t w = write(fd, text, len);
    r = w == (ssize_t)len ? 0 : (w < 0 ? -errno : -EIO);
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0)
        unlink(tmp);
    return r;
}

int hv_fence_lease_write(const char *runtime_dir, int64_t until_ms)
{
    char text[32];
    snprintf(text, sizeof(text), "%" PRId64 "\n", until_ms);
    return write_atomic(runtime_dir, "fence.lease", text);
}

int hv_fence_lease_read(const char *runtime_dir, int64_t *ret_until_ms)
{
    char path[1024], buf[32];
    int r = path_in(path, sizeof(path), runtime_dir, "fence.lease");
    if (r < 0)
        return r;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -EINVAL;
    buf[n] = '\0';
    char *end = NULL;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || end == buf || (*end && *end != '\n') || v < 0)
        return -EINVAL;
    *ret_until_ms = v;
    return 0;
}

/* The pid in @pidfile, if that process is the QEMU started with it. */
static pid_t vm_pid(const char *pidfile)
{
    FILE *f = fopen(pidfile, "re");
    int pid = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%d", &pid) != 1 || pid <= 1)
        pid = 0;
    fclose(f);
    return pid && hv_proc_cmdline_has(pid, pidfile) ? pid : 0;
}

int hv_fence_kill_vms(const char *runtime_dir, bool (*keep)(int64_t id, void *userdata),
                      void *userdata, int *ret_killed)
{
    char dir[1024];
    int r = path_in(dir, sizeof(dir), runtime_dir, "vms");
    if (r < 0)
        return r;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    int killed = 0, first_error = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end = NULL;
        long long id = strtoll(e->d_name, &end, 10);
        if (id <= 0 || *end || (keep && keep(id, userdata)))
            continue;
        struct hv_vm_paths paths;
        if (hv_vm_paths_init(runtime_dir, id, &paths) < 0)
            continue;
        pid_t pid = vm_pid(paths.pidfile);
        if (!pid)
            continue;
        /* Through a pidfd taken after the check: if the pid was recycled in
         * between, the check above was about another process; look again. */
        int pfd = pidfd_open(pid, 0);
        if (pfd < 0)
            continue;
        if (!hv_proc_cmdline_has(pid, paths.pidfile)) {
            close(pfd);
            continue;
        }
        if (pidfd_send_signal(pfd, SIGKILL, NULL, 0) == 0)
            killed++;
        else if (errno != ESRCH && !first_error)
            first_error = -errno;
        close(pfd);
    }
    closedir(d);
    if (ret_killed)
        *ret_killed = killed;
    return first_error;
}

int hv_fence_guard_spawn(const char *runtime_dir)
{
    /* Double fork: the guard is nobody's child (hostd need not reap it)
     * and leads a session of its own, like QEMU. */
    char *argv[] = {"atrium-fence", "--fence-guard", (char *)runtime_dir, NULL};
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        setsid();
        pid_t g = fork();
        if (g != 0)
            _exit(g < 0 ? 1 : 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL); /* hostd blocks its signals for signalfd */
        signal(SIGPIPE, SIG_DFL);
        int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1); /* stderr stays: the guard logs where hostd does */
        }
        close_range(3, ~0U, 0);
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -ECHILD;
}

bool hv_fence_guard_running(const char *runtime_dir)
{
    char lock[1024];
    if (path_in(lock, sizeof(lock), runtime_dir, "fence.lock") < 0)
        return false;
    int fd = open(lock, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool held = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    close(fd); /* releases the lock if we took it */
    return held;
}

int hv_fence_guard_run(const char *runtime_dir,
                       void (*on_kill)(int killed, int64_t late_ms, void *userdata),
                       void *userdata)
{
    char lock[1024];
    int r = path_in(lock, sizeof(lock), runtime_dir, "fence.lock");
    if (r < 0)
        return r;
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        r = errno == EWOULDBLOCK ? 1 : -errno;
        close(fd);
        return r;
    }
    struct stat mine;
    if (fstat(fd, &mine) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    char pid[24];
    snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if ((r = write_atomic(runtime_dir, "fence.pid", pid)) < 0) {
        close(fd);
        return r;
    }
    for (;;) {
        /* The runtime dir removed (or the lock file replaced): this host's
         * VMs are not ours to guard any more. */
        struct stat now_st;
        if (stat(lock, &now_st) < 0 || now_st.st_ino != mine.st_ino ||
            now_st.st_dev != mine.st_dev)
            break;
        int64_t until = 0, now = hv_fence_now_ms(), wait = GUARD_PERIOD_MS;
        if (hv_fence_lease_read(runtime_dir, &until) == 0) {
            if (now >= until) {
                int killed = 0;
                hv_fence_kill_vms(runtime_dir, NULL, NULL, &killed);
                if (killed && on_kill)
                    on_kill(killed, now - until, userdata);
                /* Expired and nothing left to kill: done.  A hostd that
                 * renews the lease starts a guard again. */
                if (!killed)
                    break;
            } else if (until - now < wait) {
                wait = until - now; /* wake right at the deadline */
            }
        }
        poll(NULL, 0, (int)wait);
    }
    close(fd);
    return 0;
}
