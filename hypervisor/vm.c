/*
 * One QEMU process per VM.
 *
 * Starting: hostd itself binds and listens on the VM's QMP socket and hands
 * the listening descriptor to QEMU (libvirt does the same).  hostd can then
 * connect at once — the connection waits in the listen backlog until QEMU's
 * main loop accepts it — so there is no window in which hostd polls for a
 * socket file to appear.  QEMU gets its own session (setsid) so that it
 * survives hostd; its stdout and stderr go to qemu.log, whose tail is the
 * "last words" reported when it dies.
 *
 * Watching: a pidfd says when the process is gone, whether or not it is our
 * child (after a restart hostd adopts QEMUs it did not fork), and QMP events
 * say what the guest did (STOP, RESUME, SHUTDOWN).  Nothing here polls on a
 * timer.
 */
#include "hv.h"
#include "proc-priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* The greeting comes when QEMU's main loop runs; under TCG with many VMs
 * starting on two cores that can take a while. */
#define QMP_HANDSHAKE_MS 60000
#define QMP_STATUS_MS 10000

struct hv_vm {
    int64_t id;
    struct hv_vm_paths paths;
    pid_t pid;
    int pidfd;
    bool is_child; /* forked by us: reap it and read its exit status */
    struct hv_qmp *qmp;
    enum hv_vm_power power;
    bool shutdown_seen; /* QEMU announced an orderly shutdown */
    char shutdown_reason[64];
    bool exit_clean;
    char exit_msg[1024];
    const struct hv_vm_ops *ops;
    void *userdata;
};

const char *hv_vm_power_name(enum hv_vm_power p)
{
    switch (p) {
    case HV_VM_STARTING:
        return "starting";
    case HV_VM_RUNNING:
        return "running";
    case HV_VM_PAUSED:
        return "paused";
    case HV_VM_EXITED:
        return "exited";
    }
    return "unknown";
}

static void notify(struct hv_vm *vm)
{
    if (vm->ops && vm->ops->changed)
        vm->ops->changed(vm, vm->userdata);
}

static void set_power(struct hv_vm *vm, enum hv_vm_power p)
{
    if (vm->power == p || vm->power == HV_VM_EXITED)
        return;
    vm->power = p;
    notify(vm);
}

static void on_status(struct hv_qmp *q, const struct hv_qmp_reply *r, void *userdata)
{
    (void)q;
    struct hv_vm *vm = userdata;
    if (r->error < 0) {
        log_debug("query-status failed", "vm", LOG_INT(vm->id), "error", LOG_INT(r->error));
        return;
    }
    bool running = json_is_true(json_object_get(r->ret, "running"));
    set_power(vm, running ? HV_VM_RUNNING : HV_VM_PAUSED);
}

static void on_ready(struct hv_qmp *q, void *userdata)
{
    struct hv_vm *vm = userdata;
    hv_qmp_send(q, "query-status", NULL, QMP_STATUS_MS, on_status, vm, NULL);
}

static void on_event(struct hv_qmp *q, enum hv_qmp_event ev, const char *name, json_t *data,
                     void *userdata)
{
    (void)q;
    struct hv_vm *vm = userdata;
    log_debug("qmp event", "vm", LOG_INT(vm->id), "event", name);
    switch (ev) {
    case HV_QMP_EVENT_STOP:
        if (vm->power != HV_VM_STARTING)
            set_power(vm, HV_VM_PAUSED);
        break;
    case HV_QMP_EVENT_RESUME:
        set_power(vm, HV_VM_RUNNING);
        break;
    case HV_QMP_EVENT_SHUTDOWN: {
        vm->shutdown_seen = true;
        const char *reason = json_string_value(json_object_get(data, "reason"));
        snprintf(vm->shutdown_reason, sizeof(vm->shutdown_reason), "%s",
                 reason ? reason : "unknown");
        break;
    }
    default:
        break;
    }
    if (vm->ops && vm->ops->event)
        vm->ops->event(vm, ev, data, vm->userdata);
}

static const struct hv_qmp_ops qmp_ops = {.event = on_event, .ready = on_ready};

/* The last lines of QEMU's log, on one line, into @buf. */
static void log_tail(const char *path, char *buf, size_t size)
{
    buf[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char raw[600];
    off_t end = lseek(fd, 0, SEEK_END);
    off_t start = end > (off_t)sizeof(raw) - 1 ? end - (off_t)sizeof(raw) + 1 : 0;
    ssize_t n = pread(fd, raw, sizeof(raw) - 1, start);
    close(fd);
    if (n <= 0)
        return;
    raw[n] = '\0';
    char *p = raw;
    if (start > 0 && strchr(p, '\n'))
        p = strchr(p, '\n') + 1; /* drop the partial first line */
    size_t len = strlen(p);
    while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
        p[--len] = '\0';
    for (char *c = p; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = '|';
    snprintf(buf, size, "%s", p);
}

static void process_gone(struct hv_vm *vm)
{
    int status = 0;
    bool have_status = false;
    if (vm->is_child) {
        pid_t r;
        do
            r = waitpid(vm->pid, &status, WNOHANG);
        while (r < 0 && errno == EINTR);
        have_status = r == vm->pid;
    }
    char how[128];
    if (!have_status)
        snprintf(how, sizeof(how), "QEMU (pid %d) exited", (int)vm->pid);
    else if (WIFSIGNALED(status))
        snprintf(how, sizeof(how), "QEMU (pid %d) was killed by signal %d", (int)vm->pid,
                 WTERMSIG(status));
    else
        snprintf(how, sizeof(how), "QEMU (pid %d) exited with status %d", (int)vm->pid,
                 WEXITSTATUS(status));
    /* Clean: QEMU announced the shutdown and, when we can tell, exited 0. */
    vm->exit_clean =
        vm->shutdown_seen && (!have_status || (WIFEXITED(status) && WEXITSTATUS(status) == 0));
    char tail[600];
    log_tail(vm->paths.qemu_log, tail, sizeof(tail));
    if (vm->exit_clean)
        snprintf(vm->exit_msg, sizeof(vm->exit_msg), "%s after shutdown (%s)", how,
                 vm->shutdown_reason);
    else
        snprintf(vm->exit_msg, sizeof(vm->exit_msg), "%s unexpectedly: %s", how,
                 tail[0] ? tail : "no output in qemu.log");
    if (vm->pidfd >= 0)
        close(vm->pidfd);
    vm->pidfd = -1;
    vm->qmp = hv_qmp_free(vm->qmp);
    vm->power = HV_VM_EXITED;
    notify(vm);
}

static int mkdir_p(const char *path, mode_t mode)
{
    char tmp[256];
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static struct hv_vm *vm_new(int64_t id, const struct hv_vm_paths *paths,
                            const struct hv_vm_ops *ops, void *userdata)
{
    struct hv_vm *vm = calloc(1, sizeof(*vm));
    if (!vm)
        return NULL;
    vm->id = id;
    vm->paths = *paths;
    vm->pidfd = -1;
    vm->pid = -1;
    vm->ops = ops;
    vm->userdata = userdata;
    vm->power = HV_VM_STARTING;
    return vm;
}

/*
 * In the child between fork and exec: only async-signal-safe calls.  The
 * descriptors were duplicated above 10 by the parent so the dup2s below
 * cannot clobber one another.
 */
static void __attribute__((noreturn))
exec_qemu(char **argv, int null_fd, int log_fd, int qmp_fd, int err_pipe)
{
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    setsid();
    if (dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0 || dup2(qmp_fd, 3) < 0)
        goto fail;
    /* Nothing else of hostd's (database socket, other VMs' sockets) may
     * leak into QEMU. */
    close_range(4, ~0U, CLOSE_RANGE_CLOEXEC);
    execv(argv[0], argv);
fail:;
    int e = errno;
    ssize_t w = write(err_pipe, &e, sizeof(e));
    (void)w;
    _exit(127);
}

int hv_vm_start(const struct hv_vm_def *def, const char *runtime_dir, const char *qemu,
                const struct hv_vm_ops *ops, void *userdata, struct hv_vm **ret_vm,
                struct atr_error *err)
{
    struct hv_vm_paths paths;
    struct hv_vm *vm = NULL;
    char **argv = NULL;
    int listen_fd = -1, log_fd = -1, null_fd = -1, pipefd[2] = {-1, -1};
    int hi_listen = -1, hi_log = -1, hi_null = -1;
    pid_t pid = -1;
    int r = hv_vm_paths_init(runtime_dir, def->id, &paths);
    if (r < 0) {
        atr_error_set(err, r, "runtime directory %s is too long for unix sockets", runtime_dir);
        goto out;
    }
    r = mkdir_p(paths.dir, 0700);
    if (r < 0) {
        atr_error_set(err, r, "cannot create %s: %s", paths.dir, strerror(-r));
        goto out;
    }
    unlink(paths.vnc);
    unlink(paths.spice);
    unlink(paths.pidfile);
    if (def->identity_port) {
        r = hv_instant_identity_fifos(&paths);
        if (r < 0) {
            atr_error_set(err, r, "cannot make the identity FIFOs %s.in/.out: %s", paths.identity,
                          strerror(-r));
            goto out;
        }
    }
    /* Fixed descriptor 3 in QEMU: see exec_qemu. */
    r = hv_qemu_argv_new(def, &paths, qemu, 3, &argv);
    if (r < 0) {
        atr_error_set(err, r, "VM %s has an incomplete definition", def->name);
        goto out;
    }
    listen_fd = listen_unix(paths.qmp);
    if (listen_fd < 0) {
        r = listen_fd;
        atr_error_set(err, r, "cannot listen on %s: %s", paths.qmp, strerror(-r));
        goto out;
    }
    log_fd = open(paths.qemu_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (log_fd < 0 || null_fd < 0) {
        r = -errno;
        atr_error_set(err, r, "cannot open %s: %s", paths.qemu_log, strerror(-r));
        goto out;
    }
    hi_listen = fcntl(listen_fd, F_DUPFD_CLOEXEC, 10);
    hi_log = fcntl(log_fd, F_DUPFD_CLOEXEC, 10);
    hi_null = fcntl(null_fd, F_DUPFD_CLOEXEC, 10);
    if (hi_listen < 0 || hi_log < 0 || hi_null < 0 || pipe2(pipefd, O_CLOEXEC) < 0) {
        r = -errno;
        atr_error_set(err, r, "cannot prepare descriptors: %s", strerror(-r));
        goto out;
    }
    vm = vm_new(def->id, &paths, ops, userdata);
    if (!vm) {
        r = atr_error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    pid = fork();
    if (pid < 0) {
        r = -errno;
        atr_error_set(err, r, "cannot fork: %s", strerror(-r));
        goto out;
    }
    if (pid == 0)
        exec_qemu(argv, hi_null, hi_log, hi_listen, pipefd[1]);
    close(pipefd[1]);
    pipefd[1] = -1;
    /* EOF: exec succeeded (the pipe was close-on-exec); else its errno. */
    int child_errno = 0;
    ssize_t n;
    do
        n = read(pipefd[0], &child_errno, sizeof(child_errno));
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        waitpid(pid, NULL, 0);
        pid = -1;
        r = -child_errno;
        atr_error_set(err, r, "cannot run %s: %s", qemu, strerror(child_errno));
        goto out;
    }
    vm->pid = pid;
    vm->is_child = true;
    vm->pidfd = pidfd_open(pid, 0);
    if (vm->pidfd < 0) {
        r = -errno;
        atr_error_set(err, r, "cannot watch QEMU pid %d: %s", (int)pid, strerror(-r));
        goto out;
    }
    r = hv_qmp_connect(paths.qmp, &qmp_ops, vm, QMP_HANDSHAKE_MS, &vm->qmp);
    if (r < 0) {
        atr_error_set(err, r, "cannot connect to QMP at %s: %s", paths.qmp, strerror(-r));
        goto out;
    }
    log_debug("qemu started", "vm", LOG_INT(def->id), "pid", LOG_INT(pid));
    *ret_vm = vm;
    vm = NULL;
    r = 0;
out:
    if (r < 0 && pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    hv_vm_free(vm);
    hv_argv_free(argv);
    int fds[] = {listen_fd, log_fd, null_fd, hi_listen, hi_log, hi_null, pipefd[0], pipefd[1]};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return r;
}

int hv_vm_attach(int64_t id, const char *runtime_dir, const struct hv_vm_ops *ops, void *userdata,
                 struct hv_vm **ret_vm, struct atr_error *err)
{
    struct hv_vm_paths paths;
    struct hv_vm *vm = NULL;
    int r = hv_vm_paths_init(runtime_dir, id, &paths);
    if (r < 0)
        return atr_error_set(err, r, "runtime directory %s is too long", runtime_dir);
    FILE *f = fopen(paths.pidfile, "re");
    int pid = 0;
    if (!f)
        return atr_error_set(err, -ESRCH, "no pid file %s", paths.pidfile);
    if (fscanf(f, "%d", &pid) != 1 || pid <= 1)
        pid = 0;
    fclose(f);
    /* The pid file names this VM's QEMU only if that process was started
     * with this pid file: anything else is a recycled pid. */
    if (!pid || !hv_proc_cmdline_has(pid, paths.pidfile))
        return atr_error_set(err, -ESRCH, "QEMU of VM %lld is not running", (long long)id);
    vm = vm_new(id, &paths, ops, userdata);
    if (!vm)
        return atr_error_set(err, -ENOMEM, "out of memory");
    vm->pid = pid;
    vm->pidfd = pidfd_open(pid, 0);
    if (vm->pidfd < 0) {
        r = atr_error_set(err, -ESRCH, "QEMU pid %d is gone", pid);
        goto out;
    }
    r = hv_qmp_connect(paths.qmp, &qmp_ops, vm, QMP_HANDSHAKE_MS, &vm->qmp);
    if (r < 0) {
        atr_error_set(err, r, "QMP of VM %lld at %s does not answer: %s", (long long)id, paths.qmp,
                      strerror(-r));
        goto out;
    }
    log_debug("qemu adopted", "vm", LOG_INT(id), "pid", LOG_INT(pid));
    *ret_vm = vm;
    vm = NULL;
out:
    hv_vm_free(vm);
    return r;
}

struct hv_vm *hv_vm_free(struct hv_vm *vm)
{
    if (!vm)
        return NULL;
    vm->ops = NULL; /* no callbacks from the teardown below */
    hv_qmp_free(vm->qmp);
    if (vm->pidfd >= 0)
        close(vm->pidfd);
    free(vm);
    return NULL;
}

int64_t hv_vm_id(const struct hv_vm *vm)
{
    return vm->id;
}

pid_t hv_vm_pid(const struct hv_vm *vm)
{
    return vm->pid;
}

enum hv_vm_power hv_vm_power(const struct hv_vm *vm)
{
    return vm->power;
}

const struct hv_vm_paths *hv_vm_paths(const struct hv_vm *vm)
{
    return &vm->paths;
}

struct hv_qmp *hv_vm_qmp(struct hv_vm *vm)
{
    return vm->qmp;
}

bool hv_vm_exit_clean(const struct hv_vm *vm)
{
    return vm->exit_clean;
}

const char *hv_vm_exit_message(const struct hv_vm *vm)
{
    return vm->exit_msg;
}

int hv_vm_pollfds(const struct hv_vm *vm, struct pollfd fds[static 2])
{
    int n = 0;
    if (vm->qmp)
        fds[n++] = (struct pollfd){.fd = hv_qmp_fd(vm->qmp), .events = hv_qmp_poll_events(vm->qmp)};
    if (vm->pidfd >= 0)
        fds[n++] = (struct pollfd){.fd = vm->pidfd, .events = POLLIN};
    return n;
}

int hv_vm_timeout_ms(const struct hv_vm *vm)
{
    return vm->qmp ? hv_qmp_timeout_ms(vm->qmp) : -1;
}

void hv_vm_dispatch(struct hv_vm *vm, const struct pollfd *fds, int n)
{
    bool gone = false;
    short qmp_revents = 0;
    for (int i = 0; i < n; i++) {
        if (vm->pidfd >= 0 && fds[i].fd == vm->pidfd && fds[i].revents)
            gone = true;
        else if (vm->qmp && fds[i].fd == hv_qmp_fd(vm->qmp))
            qmp_revents = fds[i].revents;
    }
    /* Read QMP first even when the process is gone: its last events (the
     * SHUTDOWN that makes an exit clean) are still in the socket. */
    if (vm->qmp) {
        int r = hv_qmp_dispatch(vm->qmp, qmp_revents);
        if (r < 0) {
            log_debug("qmp connection ended", "vm", LOG_INT(vm->id), "error", LOG_INT(r));
            vm->qmp = hv_qmp_free(vm->qmp);
            if (r == -ETIMEDOUT && vm->power == HV_VM_STARTING && !gone) {
                /* QEMU runs but never answered: useless, and the owner
                 * cannot manage it without QMP. */
                snprintf(vm->shutdown_reason, sizeof(vm->shutdown_reason), "qmp-timeout");
                hv_vm_kill(vm);
            }
        }
    }
    if (gone)
        process_gone(vm);
}

static int send_simple(struct hv_vm *vm, const char *cmd)
{
    if (!vm->qmp)
        return -ENOTCONN;
    return hv_qmp_send(vm->qmp, cmd, NULL, QMP_STATUS_MS, NULL, NULL, NULL);
}

int hv_vm_pause(struct hv_vm *vm)
{
    return send_simple(vm, "stop");
}

int hv_vm_resume(struct hv_vm *vm)
{
    return send_simple(vm, "cont");
}

int hv_vm_powerdown(struct hv_vm *vm)
{
    return send_simple(vm, "system_powerdown");
}

int hv_vm_reset(struct hv_vm *vm, int timeout_ms, struct atr_error *err)
{
    if (!vm->qmp)
        return atr_error_set(err, -ENOTCONN, "QEMU of VM %lld has no QMP connection",
                             (long long)vm->id);
    return hv_qmp_call(vm->qmp, "system_reset", NULL, timeout_ms, NULL, err);
}

int hv_vm_kill(struct hv_vm *vm)
{
    if (vm->pidfd < 0)
        return -ESRCH;
    /* Through the pidfd: never a recycled pid. */
    if (pidfd_send_signal(vm->pidfd, SIGKILL, NULL, 0) < 0 && errno != ESRCH)
        return -errno;
    return 0;
}

int hv_vm_remove_runtime(int64_t id, const char *runtime_dir)
{
    struct hv_vm_paths paths;
    int r = hv_vm_paths_init(runtime_dir, id, &paths);
    if (r < 0)
        return r;
    DIR *d = opendir(paths.dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) < 0 && errno != ENOENT) {
            r = -errno;
            break;
        }
    }
    closedir(d);
    if (r == 0 && rmdir(paths.dir) < 0 && errno != ENOENT)
        r = -errno;
    return r;
}
