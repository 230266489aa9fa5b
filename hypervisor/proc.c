/*
 * Helper programs run to completion.  Output is read through pipes with
 * poll() until both close, then the child is reaped: no temporary files and
 * no sleeping.  Memory is bounded: stdout by the caller's limit, stderr by
 * keeping only its tail, which is where tools put the sentence that matters.
 */
#include "proc-priv.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Keep the last @size-1 bytes seen in @tail. */
static void tail_append(char *tail, size_t size, size_t *len, const char *buf, size_t n)
{
    if (!tail || size < 2)
        return;
    size_t cap = size - 1;
    if (n >= cap) {
        memcpy(tail, buf + n - cap, cap);
        *len = cap;
    } else {
        if (*len + n > cap) {
            size_t drop = *len + n - cap;
            memmove(tail, tail + drop, *len - drop);
            *len -= drop;
        }
        memcpy(tail + *len, buf, n);
        *len += n;
    }
    tail[*len] = '\0';
}

int hv_proc_run(char *const argv[], int timeout_ms, size_t out_max, char **ret_out, char *err_tail,
                size_t err_size)
{
    int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    bool fa_init = false;
    char *out = NULL;
    size_t out_len = 0, err_len = 0;
    pid_t pid = -1;
    int r;

    if (err_tail && err_size)
        err_tail[0] = '\0';
    if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0) {
        r = -errno;
        goto out;
    }
    r = -posix_spawn_file_actions_init(&fa);
    if (r < 0)
        goto out;
    fa_init = true;
    if ((r = -posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) < 0 ||
        (r = -posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1)) < 0 ||
        (r = -posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2)) < 0)
        goto out;
    r = -posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    if (r < 0) {
        pid = -1;
        goto out;
    }
    close(out_pipe[1]);
    close(err_pipe[1]);
    out_pipe[1] = err_pipe[1] = -1;

    int64_t deadline = timeout_ms > 0 ? atr_now_mono_ms() + timeout_ms : 0;
    struct pollfd p[2] = {{.fd = out_pipe[0], .events = POLLIN},
                          {.fd = err_pipe[0], .events = POLLIN}};
    while (p[0].fd >= 0 || p[1].fd >= 0) {
        int n = poll(p, 2, deadline ? atr_deadline_left_ms(deadline) : -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            goto out;
        }
        if (n == 0) {
            r = -ETIMEDOUT;
            goto out;
        }
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !p[i].revents)
                continue;
            char buf[8192];
            ssize_t got = read(p[i].fd, buf, sizeof(buf));
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {
                p[i].fd = -1; /* closed; the pipe fd itself is closed at out */
                continue;
            }
            if (i == 1) {
                tail_append(err_tail, err_size, &err_len, buf, (size_t)got);
                continue;
            }
            if (!ret_out)
                continue;
            if (out_len + (size_t)got > out_max) {
                r = -EMSGSIZE;
                goto out;
            }
            char *grown = realloc(out, out_len + (size_t)got + 1);
            if (!grown) {
                r = -ENOMEM;
                goto out;
            }
            out = grown;
            memcpy(out + out_len, buf, (size_t)got);
            out_len += (size_t)got;
            out[out_len] = '\0';
        }
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            r = -errno;
            goto out;
        }
    }
    pid = -1;
    r = WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EPROTO;
    if (r == 0 && ret_out) {
        if (!out && !(out = calloc(1, 1))) {
            r = -ENOMEM;
            goto out;
        }
        *ret_out = out;
        out = NULL;
    }
out:
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (fa_init)
        posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 2; i++) {
        if (out_pipe[i] >= 0)
            close(out_pipe[i]);
        if (err_pipe[i] >= 0)
            close(err_pipe[i]);
    }
    free(out);
    return r;
}

/* True when /proc/@pid/cmdline has an argument equal to @arg. */
bool hv_proc_cmdline_has(pid_t pid, const char *arg)
{
    char path[64], buf[8192];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    for (char *p = buf; p < buf + n; p += strlen(p) + 1)
        if (strcmp(p, arg) == 0)
            return true;
    return false;
}
