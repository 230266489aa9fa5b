/* See vmset.h. */
#include "vmset.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define QEMU "/usr/bin/qemu-system-x86_64"

char *vs_slurp(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m) {
        fclose(f);
        return NULL;
    }
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fwrite(chunk, 1, n, m);
    fclose(f);
    fclose(m);
    return buf;
}

bool vs_file_has(const char *path, const char *needle)
{
    char *s = vs_slurp(path);
    bool yes = s && strstr(s, needle);
    free(s);
    return yes;
}

int vs_guest_load(const char *dir, struct vs_guest *g)
{
    snprintf(g->kernel, sizeof(g->kernel), "%s/vmlinuz", dir);
    snprintf(g->initrd, sizeof(g->initrd), "%s/initrd.img", dir);
    snprintf(g->golden, sizeof(g->golden), "%s/disk.qcow2", dir);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/cmdline", dir);
    char *c = vs_slurp(path);
    if (!c)
        return -ENOENT;
    c[strcspn(c, "\n")] = '\0';
    snprintf(g->cmdline, sizeof(g->cmdline), "%s", c);
    free(c);
    return 0;
}

int vs_init(struct vs *s, const char *runtime)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->runtime, sizeof(s->runtime), "%s", runtime);
    if (mkdir(runtime, 0700) < 0 && errno != EEXIST)
        return -errno;
    s->inotify = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    return s->inotify < 0 ? -errno : 0;
}

static void on_vm_event(struct hv_vm *vm, enum hv_qmp_event ev, json_t *data, void *userdata)
{
    (void)vm;
    struct vs_vm *v = userdata;
    const char *id = json_string_value(json_object_get(data, "id"));
    if (ev == HV_QMP_EVENT_OTHER && id && strcmp(id, "identity0") == 0 &&
        json_is_true(json_object_get(data, "open")))
        v->port_open = true;
    if (v->job)
        hv_migrate_event(v->job, ev, data);
}

static const struct hv_vm_ops vm_ops = {.event = on_vm_event};

int vs_start(struct vs *s, int slot, const struct hv_vm_def *d, struct atr_error *err)
{
    struct vs_vm *v = &s->vms[slot];
    *v = (struct vs_vm){.t0 = atr_now_mono_ms()};
    int r = hv_vm_start(d, s->runtime, QEMU, &vm_ops, v, &v->vm, err);
    if (r < 0)
        return r;
    v->pid = hv_vm_pid(v->vm);
    inotify_add_watch(s->inotify, hv_vm_paths(v->vm)->dir, IN_MODIFY | IN_CLOSE_WRITE);
    return 0;
}

void vs_stop(struct vs *s, int slot, int timeout_ms)
{
    struct vs_vm *v = &s->vms[slot];
    if (!v->vm)
        return;
    v->job = hv_migrate_job_free(v->job);
    hv_vm_kill(v->vm);
    vs_drive_until(s, vs_cond_exited, v, timeout_ms);
    v->vm = hv_vm_free(v->vm);
    if (v->pid > 0)
        waitpid(v->pid, NULL, WNOHANG);
    v->pid = 0;
}

void vs_close(struct vs *s)
{
    for (int i = 0; i < VS_MAX_VMS; i++) {
        struct vs_vm *v = &s->vms[i];
        if (v->vm) {
            vs_stop(s, i, 20000);
        } else if (v->pid > 0) {
            kill(v->pid, SIGKILL);
            waitpid(v->pid, NULL, 0);
            v->pid = 0;
        }
        if (v->pid > 0) { /* did not end within the stop's bound */
            kill(v->pid, SIGKILL);
            waitpid(v->pid, NULL, 0);
            v->pid = 0;
        }
        v->job = hv_migrate_job_free(v->job);
    }
    if (s->inotify >= 0)
        close(s->inotify);
    s->inotify = -1;
}

void vs_kill_pids(struct vs *s)
{
    for (int i = 0; i < VS_MAX_VMS; i++)
        if (s->vms[i].pid > 0)
            kill(s->vms[i].pid, SIGKILL);
}

bool vs_drive_until(struct vs *s, vs_cond_fn cond, const void *arg, int timeout_ms)
{
    int64_t deadline = atr_now_mono_ms() + timeout_ms;
    while (!cond(arg)) {
        struct pollfd fds[2 * VS_MAX_VMS + 1];
        int owner[2 * VS_MAX_VMS + 1], cnt[VS_MAX_VMS] = {0};
        int n = 0, t = 200;
        for (int i = 0; i < VS_MAX_VMS; i++) {
            if (!s->vms[i].vm)
                continue;
            cnt[i] = hv_vm_pollfds(s->vms[i].vm, &fds[n]);
            for (int k = 0; k < cnt[i]; k++)
                owner[n + k] = i;
            n += cnt[i];
            int vt = hv_vm_timeout_ms(s->vms[i].vm);
            if (vt >= 0 && vt < t)
                t = vt;
        }
        fds[n] = (struct pollfd){.fd = s->inotify, .events = POLLIN};
        int left = atr_deadline_left_ms(deadline);
        if (left == 0)
            return false;
        if (t > left)
            t = left;
        if (poll(fds, (nfds_t)n + 1, t) < 0 && errno != EINTR)
            return false;
        char buf[4096];
        while (read(s->inotify, buf, sizeof(buf)) > 0) {
        }
        for (int k = 0; k < n;) {
            int i = owner[k];
            hv_vm_dispatch(s->vms[i].vm, &fds[k], cnt[i]);
            k += cnt[i];
        }
    }
    return true;
}

bool vs_cond_flag(const void *arg)
{
    return *(const bool *)arg;
}

bool vs_cond_running(const void *arg)
{
    const struct vs_vm *v = arg;
    return v->vm && hv_vm_power(v->vm) == HV_VM_RUNNING;
}

bool vs_cond_exited(const void *arg)
{
    const struct vs_vm *v = arg;
    return !v->vm || hv_vm_power(v->vm) == HV_VM_EXITED;
}

static void on_saved(struct hv_mig_job *j, int error, const struct hv_mig_stats *st, void *userdata)
{
    (void)j;
    struct vs_vm *v = userdata;
    v->save_done = true;
    v->save_err = error;
    v->st = *st;
}

static const struct hv_mig_job_ops save_ops = {.done = on_saved};

int vs_save_start(struct vs_vm *v, const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int r = hv_instant_save_start(hv_vm_qmp(v->vm), fd, &save_ops, v, &v->job);
    close(fd);
    return r;
}

static void on_loaded(int error, const char *msg, void *userdata)
{
    struct vs_vm *v = userdata;
    v->load_done = true;
    v->load_err = error;
    snprintf(v->load_msg, sizeof(v->load_msg), "%s", msg);
}

int vs_load_start(struct vs_vm *v, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = hv_instant_load(hv_vm_qmp(v->vm), fd, on_loaded, v);
    close(fd);
    return r;
}
