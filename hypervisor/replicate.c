/*
 * Replication's pieces on one host: reading the state of the source's
 * dirty bitmap, the target's qcow2 layers, and the qemu-nbd that serves a
 * new layer to the source's backup job.
 *
 * Why qemu-nbd and a new layer per sync: the target must always hold one
 * complete, consistent copy.  Each sync writes only into a fresh qcow2
 * layer over the last complete copy; a sync that dies half-way leaves a
 * half-filled layer nobody points at, and the copy under it is untouched.
 * Only when the source says the job completed (and the server flushed and
 * exited) does the new layer become the recovery point; it is then merged
 * down (qemu-img commit), which keeps the chain one file deep.  No QEMU
 * runs on the target while it only holds a copy, so a small server owns
 * the file during the sync: qemu-nbd, which exits by itself when the
 * source disconnects.  Its listening socket is made here and handed over
 * by socket activation (LISTEN_FDS), so it accepts from the first moment
 * and no port is picked and then raced for.
 */
#include "proc-priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define QEMU_IMG_MS (10 * 60 * 1000)

static const char *tool(const char *given, const char *dflt)
{
    return given && given[0] ? given : dflt;
}

int hv_replica_disk_parse(const json_t *nodes, struct hv_rep_disk *ret)
{
    if (!json_is_array(nodes))
        return -EINVAL;
    struct hv_rep_disk d = {.bitmap = HV_REP_BITMAP_NONE, .virtual_size = -1};
    bool found = false;
    size_t i;
    json_t *n;
    json_array_foreach(nodes, i, n)
    {
        const char *name = json_string_value(json_object_get(n, "node-name"));
        if (!name)
            continue;
        if (strcmp(name, HV_REP_NODE) == 0)
            d.nbd_node = true;
        if (strcmp(name, HV_DISK_NODE) != 0)
            continue;
        found = true;
        json_t *img = json_object_get(n, "image");
        json_t *vs = json_object_get(img, "virtual-size");
        if (json_is_integer(vs))
            d.virtual_size = json_integer_value(vs);
        size_t k;
        json_t *b;
        json_array_foreach(json_object_get(n, "dirty-bitmaps"), k, b)
        {
            const char *bn = json_string_value(json_object_get(b, "name"));
            if (!bn || strcmp(bn, HV_REP_BITMAP) != 0)
                continue;
            bool bad = json_is_true(json_object_get(b, "inconsistent")) ||
                       json_is_false(json_object_get(b, "recording")) ||
                       json_is_false(json_object_get(b, "persistent"));
            d.bitmap = bad ? HV_REP_BITMAP_BAD : HV_REP_BITMAP_OK;
        }
    }
    if (!found)
        return -ENOENT;
    *ret = d;
    return 0;
}

int hv_replica_layer_create(const char *qemu_img, const char *backing, const char *layer,
                            int64_t size, struct atr_error *err)
{
    if (!layer || !layer[0] || size <= 0)
        return atr_error_set(err, -EINVAL, "a layer needs a path and a size");
    if (access(layer, F_OK) == 0)
        return atr_error_set(err, -EEXIST, "%s exists", layer);
    char sz[32];
    snprintf(sz, sizeof(sz), "%lld", (long long)size);
    char *with[] = {(char *)tool(qemu_img, "qemu-img"),
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-F",
                    "qcow2",
                    "-b",
                    (char *)backing,
                    (char *)layer,
                    sz,
                    NULL};
    char *without[] = {
        (char *)tool(qemu_img, "qemu-img"), "create", "-q", "-f", "qcow2", (char *)layer, sz, NULL};
    char tail[512];
    int r = hv_proc_run(backing && backing[0] ? with : without, QEMU_IMG_MS, 0, NULL, tail,
                        sizeof(tail));
    if (r < 0) {
        tail[strcspn(tail, "\n")] = '\0';
        unlink(layer);
        return atr_error_set(err, r, "qemu-img create %s failed: %s", layer, tail);
    }
    return 0;
}

int hv_replica_layer_merge(const char *qemu_img, const char *layer, struct atr_error *err)
{
    char *argv[] = {(char *)tool(qemu_img, "qemu-img"),
                    "commit",
                    "-q",
                    "-d",
                    "-f",
                    "qcow2",
                    (char *)layer,
                    NULL};
    char tail[512];
    int r = hv_proc_run(argv, QEMU_IMG_MS, 0, NULL, tail, sizeof(tail));
    if (r < 0) {
        tail[strcspn(tail, "\n")] = '\0';
        return atr_error_set(err, r, "qemu-img commit %s failed: %s", layer, tail);
    }
    return 0;
}

int hv_replica_serve(const char *qemu_nbd, const char *layer, const char *addr, const char *log,
                     struct hv_nbd_server *ret, struct atr_error *err)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (!addr || inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
        return atr_error_set(err, -EINVAL, "'%s' is not an IPv4 address to serve on",
                             addr ? addr : "");
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        return atr_error_set(err, -errno, "socket: %s", strerror(errno));
    socklen_t len = sizeof(sa);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &len) < 0) {
        int e = errno;
        close(lfd);
        return atr_error_set(err, -e, "cannot listen on %s: %s", addr, strerror(e));
    }
    int logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (logfd < 0) {
        int e = errno;
        close(lfd);
        return atr_error_set(err, -e, "cannot open %s: %s", log, strerror(e));
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(lfd);
        close(logfd);
        return atr_error_set(err, -e, "fork: %s", strerror(e));
    }
    if (pid == 0) {
        /* Only async-signal-safe calls until exec. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0 ||
            dup2(lfd, 3) < 0)
            _exit(127);
        /* fd 3 from dup2 has no FD_CLOEXEC: qemu-nbd keeps it. */
        char pidbuf[32];
        snprintf(pidbuf, sizeof(pidbuf), "LISTEN_PID=%d", (int)getpid());
        char *envp[] = {pidbuf, "LISTEN_FDS=1", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
        char *argv[] = {(char *)tool(qemu_nbd, "qemu-nbd"),
                        "--format=qcow2",
                        "--export-name=" HV_REP_EXPORT,
                        "--cache=writeback",
                        (char *)layer,
                        NULL};
        execvpe(argv[0], argv, envp);
        _exit(127);
    }
    close(lfd);
    close(logfd);
    int pfd = pidfd_open(pid, 0);
    if (pfd < 0) {
        int e = errno;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return atr_error_set(err, -e, "pidfd_open: %s", strerror(e));
    }
    *ret = (struct hv_nbd_server){.pid = pid, .pidfd = pfd, .port = ntohs(sa.sin_port)};
    return 0;
}

int hv_replica_serve_reap(struct hv_nbd_server *s, int *ret_status)
{
    if (!s->exited) {
        int status = 0;
        pid_t r = waitpid(s->pid, &status, WNOHANG);
        if (r == 0)
            return 0;
        if (r < 0 && errno != ECHILD)
            return -errno;
        s->exited = true;
        s->status = r < 0 ? -1 : status;
        if (s->pidfd >= 0)
            close(s->pidfd);
        s->pidfd = -1;
    }
    if (ret_status)
        *ret_status = s->status;
    return 1;
}

void hv_replica_serve_kill(struct hv_nbd_server *s)
{
    if (s->exited || s->pid <= 0)
        return;
    kill(s->pid, SIGKILL);
    int status = 0;
    while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR) {
    }
    s->exited = true;
    s->status = status;
    if (s->pidfd >= 0)
        close(s->pidfd);
    s->pidfd = -1;
}
