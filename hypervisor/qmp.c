/*
 * QMP client: JSON over a unix socket to one QEMU.
 *
 * QEMU writes one JSON object per line, so the byte stream is cut at '\n'
 * and each complete line goes to jansson's json_loadb; the partial tail
 * waits in a buffer bounded by HV_QMP_MAX_LINE.  We never parse JSON by hand.
 *
 * Every command carries a numeric "id" and a deadline; replies are matched
 * by id, not by order, so a late reply to a command that already timed out
 * is recognised and dropped instead of being taken for the next command's.
 * Events go through a table sorted by name and searched with bsearch
 * (libvirt's shape): adding one is one line.
 *
 * The whole exchange is logged at debug level; errors handed to callers
 * carry only the command name and QEMU's short description.
 */
#include "qmp-priv.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum qmp_state { QMP_GREETING, QMP_CAPS, QMP_READY, QMP_DEAD };

struct qmp_cmd {
    struct qmp_cmd *next;
    uint64_t id;
    char *command;
    char *line;          /* serialized with its '\n'; held until the connection is ready */
    int64_t deadline_ms; /* 0: none */
    hv_qmp_reply_fn fn;
    void *userdata;
    int pass_fd; /* a descriptor sent with the line (SCM_RIGHTS), owned; -1: none */
    bool sent;
};

struct hv_qmp {
    int fd; /* -1: detached (fed by hand, output discarded) */
    const struct hv_qmp_ops *ops;
    void *userdata;
    enum qmp_state state;
    int dead_error;
    int64_t handshake_deadline_ms;
    uint64_t next_id, caps_id;
    bool in_dispatch; /* callbacks may send, but not drive the connection */
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_off;
    struct qmp_cmd *cmds, **cmds_tail;
};

static const struct {
    const char *name;
    enum hv_qmp_event ev;
} event_table[] = {
    /* Sorted by name (strcmp): bsearch depends on it, a unit test checks it. */
    {"BALLOON_CHANGE", HV_QMP_EVENT_BALLOON_CHANGE},
    {"BLOCK_IO_ERROR", HV_QMP_EVENT_BLOCK_IO_ERROR},
    {"BLOCK_JOB_CANCELLED", HV_QMP_EVENT_BLOCK_JOB_CANCELLED},
    {"BLOCK_JOB_COMPLETED", HV_QMP_EVENT_BLOCK_JOB_COMPLETED},
    {"BLOCK_JOB_ERROR", HV_QMP_EVENT_BLOCK_JOB_ERROR},
    {"DEVICE_DELETED", HV_QMP_EVENT_DEVICE_DELETED},
    {"GUEST_PANICKED", HV_QMP_EVENT_GUEST_PANICKED},
    {"JOB_STATUS_CHANGE", HV_QMP_EVENT_JOB_STATUS_CHANGE},
    {"MIGRATION", HV_QMP_EVENT_MIGRATION},
    {"MIGRATION_PASS", HV_QMP_EVENT_MIGRATION_PASS},
    {"POWERDOWN", HV_QMP_EVENT_POWERDOWN},
    {"RESET", HV_QMP_EVENT_RESET},
    {"RESUME", HV_QMP_EVENT_RESUME},
    {"RTC_CHANGE", HV_QMP_EVENT_RTC_CHANGE},
    {"SHUTDOWN", HV_QMP_EVENT_SHUTDOWN},
    {"SPICE_CONNECTED", HV_QMP_EVENT_SPICE_CONNECTED},
    {"SPICE_DISCONNECTED", HV_QMP_EVENT_SPICE_DISCONNECTED},
    {"SPICE_INITIALIZED", HV_QMP_EVENT_SPICE_INITIALIZED},
    {"STOP", HV_QMP_EVENT_STOP},
    {"SUSPEND", HV_QMP_EVENT_SUSPEND},
    {"VNC_CONNECTED", HV_QMP_EVENT_VNC_CONNECTED},
    {"VNC_DISCONNECTED", HV_QMP_EVENT_VNC_DISCONNECTED},
    {"WAKEUP", HV_QMP_EVENT_WAKEUP},
};
#define N_EVENTS (sizeof(event_table) / sizeof(event_table[0]))

static int event_cmp(const void *key, const void *elem)
{
    return strcmp(key, *(const char *const *)elem);
}

enum hv_qmp_event hv_qmp_event_from_name(const char *name)
{
    const void *e = bsearch(name, event_table, N_EVENTS, sizeof(event_table[0]), event_cmp);
    return e ? ((const __typeof__(event_table[0]) *)e)->ev : HV_QMP_EVENT_OTHER;
}

const char *hv_qmp_event_name(enum hv_qmp_event ev)
{
    for (size_t i = 0; i < N_EVENTS; i++)
        if (event_table[i].ev == ev)
            return event_table[i].name;
    return "OTHER";
}

size_t hv_qmp_event_table_size(void)
{
    return N_EVENTS;
}

const char *hv_qmp_event_table_name(size_t i)
{
    return i < N_EVENTS ? event_table[i].name : NULL;
}

size_t hv_qmp_pending_output(const struct hv_qmp *q)
{
    return q->out_len - q->out_off;
}

static struct qmp_cmd *cmd_free(struct qmp_cmd *c)
{
    if (!c)
        return NULL;
    if (c->pass_fd >= 0)
        close(c->pass_fd);
    free(c->command);
    free(c->line);
    free(c);
    return NULL;
}

/* Unlink @c from the list; the caller owns it afterwards. */
static void cmd_unlink(struct hv_qmp *q, struct qmp_cmd *c)
{
    for (struct qmp_cmd **pp = &q->cmds; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            if (q->cmds_tail == &c->next)
                q->cmds_tail = pp;
            c->next = NULL;
            return;
        }
    }
}

static void cmd_complete(struct hv_qmp *q, struct qmp_cmd *c, const struct hv_qmp_reply *reply)
{
    cmd_unlink(q, c);
    if (c->fn)
        c->fn(q, reply, c->userdata);
    cmd_free(c);
}

static void cmd_fail(struct hv_qmp *q, struct qmp_cmd *c, int error)
{
    struct hv_qmp_reply reply = {.command = c->command, .error = error};
    cmd_complete(q, c, &reply);
}

/* Mark the connection dead and cancel everything pending.  Returns @error. */
static int qmp_kill(struct hv_qmp *q, int error)
{
    if (q->state == QMP_DEAD)
        return q->dead_error;
    q->state = QMP_DEAD;
    q->dead_error = error;
    log_debug("qmp connection closed", "error", LOG_INT(error));
    while (q->cmds)
        cmd_fail(q, q->cmds, -ECANCELED);
    return error;
}

static int out_append(struct hv_qmp *q, const char *s, size_t len)
{
    if (q->fd < 0)
        return 0; /* detached: nobody to write to */
    if (q->out_off > 0 && q->out_off == q->out_len)
        q->out_off = q->out_len = 0;
    char *n = realloc(q->out, q->out_len + len);
    if (!n)
        return -ENOMEM;
    memcpy(n + q->out_len, s, len);
    q->out = n;
    q->out_len += len;
    return 0;
}

static int out_flush(struct hv_qmp *q)
{
    while (q->fd >= 0 && q->out_off < q->out_len) {
        ssize_t n = send(q->fd, q->out + q->out_off, q->out_len - q->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n < 0)
            return -ECONNRESET;
        q->out_off += (size_t)n;
    }
    return 0;
}

/*
 * What the debug log may show of a command: the whole JSON, except for
 * commands whose arguments are secrets (console passwords): their name only.
 */
static const char *loggable(const struct qmp_cmd *c)
{
    static const char *const secret[] = {"set_password", "change-vnc-password"};
    for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++)
        if (strcmp(c->command, secret[i]) == 0)
            return "(arguments withheld: they hold a password)";
    return c->line;
}

/*
 * Send @c's line with its descriptor attached to the first byte.  Only
 * called with the output buffer drained, so the descriptor travels with its
 * own command (QEMU takes it from the recvmsg that carries "getfd").  What
 * the socket did not take goes to the buffer like any other line.
 */
static int send_with_fd(struct hv_qmp *q, struct qmp_cmd *c)
{
    size_t len = strlen(c->line);
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof(u));
    struct iovec iov = {.iov_base = c->line, .iov_len = len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                        .msg_controllen = sizeof(u.buf)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &c->pass_fd, sizeof(int));
    ssize_t n;
    do
        n = sendmsg(q->fd, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0; /* not sent; tried again when the socket is writable */
    if (n < 0)
        return -ECONNRESET;
    c->sent = true;
    close(c->pass_fd);
    c->pass_fd = -1;
    return (size_t)n < len ? out_append(q, c->line + n, len - (size_t)n) : 0;
}

/* Put every held command on the wire (once the connection is ready). */
static int send_held(struct hv_qmp *q)
{
    for (struct qmp_cmd *c = q->cmds; c; c = c->next) {
        if (c->sent)
            continue;
        log_debug("qmp send", "command", c->command, "json", loggable(c));
        if (q->fd >= 0 && c->pass_fd >= 0) {
            int r = out_flush(q);
            if (r < 0)
                return r;
            if (q->out_off < q->out_len)
                return 0; /* the rest waits for POLLOUT: see hv_qmp_dispatch */
            r = send_with_fd(q, c);
            if (r < 0)
                return r;
            if (!c->sent)
                return 0;
            continue;
        }
        int r = out_append(q, c->line, strlen(c->line));
        if (r < 0)
            return r;
        c->sent = true;
    }
    return out_flush(q);
}

/* Whether a command is still held back (behind a descriptor that waits for the socket). */
static bool any_held(const struct hv_qmp *q)
{
    for (const struct qmp_cmd *c = q->cmds; c; c = c->next)
        if (!c->sent)
            return true;
    return false;
}

static int queue_cmd(struct hv_qmp *q, const char *command, json_t *args, int timeout_ms,
                     int pass_fd, hv_qmp_reply_fn fn, void *userdata, uint64_t *ret_id)
{
    struct qmp_cmd *c = NULL;
    json_t *msg = NULL;
    char *text = NULL;
    int r = -ENOMEM;

    c = calloc(1, sizeof(*c));
    if (!c)
        goto out;
    c->pass_fd = -1;
    if (pass_fd >= 0) {
        c->pass_fd = fcntl(pass_fd, F_DUPFD_CLOEXEC, 3);
        if (c->pass_fd < 0) {
            r = -errno;
            goto out;
        }
    }
    c->id = ++q->next_id;
    msg = json_pack("{s:s, s:I}", "execute", command, "id", (json_int_t)c->id);
    if (!msg || (args && json_object_set(msg, "arguments", args) < 0))
        goto out;
    text = json_dumps(msg, JSON_COMPACT);
    if (!text)
        goto out;
    c->command = strdup(command);
    if (asprintf(&c->line, "%s\n", text) < 0)
        c->line = NULL;
    if (!c->command || !c->line)
        goto out;
    c->deadline_ms = timeout_ms > 0 ? atr_now_mono_ms() + timeout_ms : 0;
    c->fn = fn;
    c->userdata = userdata;
    *q->cmds_tail = c;
    q->cmds_tail = &c->next;
    if (ret_id)
        *ret_id = c->id;
    c = NULL;
    r = 0;
out:
    cmd_free(c);
    free(text);
    json_decref(msg);
    json_decref(args);
    return r;
}

int hv_qmp_send(struct hv_qmp *q, const char *command, json_t *args, int timeout_ms,
                hv_qmp_reply_fn fn, void *userdata, uint64_t *ret_id)
{
    if (!command || !command[0]) {
        json_decref(args);
        return -EINVAL;
    }
    if (q->state == QMP_DEAD) {
        json_decref(args);
        return q->dead_error;
    }
    int r = queue_cmd(q, command, args, timeout_ms, -1, fn, userdata, ret_id);
    if (r < 0)
        return r;
    return q->state == QMP_READY ? send_held(q) : 0;
}

int hv_qmp_send_fd(struct hv_qmp *q, const char *command, json_t *args, int fd, int timeout_ms,
                   hv_qmp_reply_fn fn, void *userdata, uint64_t *ret_id)
{
    if (!command || !command[0] || fd < 0 || q->fd < 0) {
        json_decref(args);
        return -EINVAL;
    }
    if (q->state == QMP_DEAD) {
        json_decref(args);
        return q->dead_error;
    }
    int r = queue_cmd(q, command, args, timeout_ms, fd, fn, userdata, ret_id);
    if (r < 0)
        return r;
    return q->state == QMP_READY ? send_held(q) : 0;
}

static int handle_greeting(struct hv_qmp *q, json_t *msg)
{
    if (!json_is_object(json_object_get(msg, "QMP")))
        return -EPROTO;
    /* The negotiation command goes first, ahead of anything held. */
    struct qmp_cmd *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->pass_fd = -1;
    c->id = ++q->next_id;
    c->command = strdup("qmp_capabilities");
    if (asprintf(&c->line, "{\"execute\":\"qmp_capabilities\",\"id\":%llu}\n",
                 (unsigned long long)c->id) < 0)
        c->line = NULL;
    if (!c->command || !c->line) {
        cmd_free(c);
        return -ENOMEM;
    }
    c->sent = true;
    c->next = q->cmds;
    q->cmds = c;
    if (q->cmds_tail == &q->cmds)
        q->cmds_tail = &c->next;
    q->caps_id = c->id;
    q->state = QMP_CAPS;
    log_debug("qmp send", "json", c->line);
    int r = out_append(q, c->line, strlen(c->line));
    return r < 0 ? r : out_flush(q);
}

static struct qmp_cmd *cmd_find(struct hv_qmp *q, json_t *id)
{
    if (!json_is_integer(id))
        return NULL;
    json_int_t v = json_integer_value(id);
    for (struct qmp_cmd *c = q->cmds; c; c = c->next)
        if (c->sent && (json_int_t)c->id == v)
            return c;
    return NULL;
}

static int handle_reply(struct hv_qmp *q, json_t *msg)
{
    struct qmp_cmd *c = cmd_find(q, json_object_get(msg, "id"));
    if (!c) {
        /* A reply to a command that already timed out, or not ours. */
        log_debug("qmp reply without a pending command");
        return 0;
    }
    bool caps = c->id == q->caps_id;
    json_t *ret = json_object_get(msg, "return");
    json_t *error = json_object_get(msg, "error");
    struct hv_qmp_reply reply = {.command = c->command};
    if (ret) {
        reply.ret = ret;
    } else {
        reply.error = -EIO;
        reply.err_class = json_string_value(json_object_get(error, "class"));
        reply.err_desc = json_string_value(json_object_get(error, "desc"));
        if (!reply.err_class)
            reply.err_class = "GenericError";
        if (!reply.err_desc)
            reply.err_desc = "unknown error";
    }
    if (caps) {
        cmd_unlink(q, c);
        cmd_free(c);
        if (reply.error)
            return -EPROTO;
        q->state = QMP_READY;
        if (q->ops && q->ops->ready)
            q->ops->ready(q, q->userdata);
        return q->state == QMP_READY ? send_held(q) : 0;
    }
    cmd_complete(q, c, &reply);
    return 0;
}

static void handle_event(struct hv_qmp *q, json_t *msg)
{
    const char *name = json_string_value(json_object_get(msg, "event"));
    enum hv_qmp_event ev = hv_qmp_event_from_name(name);
    if (q->ops && q->ops->event)
        q->ops->event(q, ev, name, json_object_get(msg, "data"), q->userdata);
}

static int handle_line(struct hv_qmp *q, const char *line, size_t len)
{
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    if (len == 0)
        return 0;
    json_error_t jerr;
    json_t *msg = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    q->in_len = 0; /* consumed: callbacks below see a clean buffer */
    if (!msg || !json_is_object(msg)) {
        /* QEMU only sends objects; a garbled line is dropped, not fatal,
         * unless it is the greeting we cannot do without. */
        log_debug("qmp unparsable line", "error", jerr.text);
        json_decref(msg);
        return q->state == QMP_GREETING ? -EPROTO : 0;
    }
    int r = 0;
    if (q->state == QMP_GREETING)
        r = handle_greeting(q, msg);
    else if (json_is_string(json_object_get(msg, "event")))
        handle_event(q, msg);
    else if (json_object_get(msg, "return") || json_is_object(json_object_get(msg, "error")))
        r = handle_reply(q, msg);
    else
        log_debug("qmp message of unknown shape");
    json_decref(msg);
    return r;
}

int hv_qmp_feed(struct hv_qmp *q, const void *buf, size_t len)
{
    if (q->state == QMP_DEAD)
        return q->dead_error;
    const char *p = buf;
    while (len > 0) {
        const char *nl = memchr(p, '\n', len);
        size_t take = nl ? (size_t)(nl - p) + 1 : len;
        if (q->in_len + take > HV_QMP_MAX_LINE)
            return qmp_kill(q, -EMSGSIZE);
        if (q->in_len + take > q->in_cap) {
            size_t cap = q->in_cap ? q->in_cap : 4096;
            while (cap < q->in_len + take)
                cap *= 2;
            if (cap > HV_QMP_MAX_LINE)
                cap = HV_QMP_MAX_LINE;
            char *n = realloc(q->in, cap);
            if (!n)
                return qmp_kill(q, -ENOMEM);
            q->in = n;
            q->in_cap = cap;
        }
        memcpy(q->in + q->in_len, p, take);
        q->in_len += take;
        p += take;
        len -= take;
        if (nl) {
            if (log_get_level() == LOG_LEVEL_DEBUG) {
                char *line = strndup(q->in, q->in_len);
                if (line)
                    log_debug("qmp recv", "json", line);
                free(line);
            }
            int r = handle_line(q, q->in, q->in_len);
            if (r < 0)
                return qmp_kill(q, r);
            if (q->state == QMP_DEAD)
                return q->dead_error;
        }
    }
    return 0;
}

static int expire(struct hv_qmp *q)
{
    int64_t now = atr_now_mono_ms();
    if (q->state != QMP_READY && q->state != QMP_DEAD && now >= q->handshake_deadline_ms)
        return qmp_kill(q, -ETIMEDOUT);
    struct qmp_cmd *c = q->cmds;
    while (c) {
        struct qmp_cmd *next = c->next;
        if (c->deadline_ms && now >= c->deadline_ms) {
            log_debug("qmp command timed out", "command", c->command);
            cmd_fail(q, c, -ETIMEDOUT);
        }
        c = next;
    }
    return 0;
}

int hv_qmp_dispatch(struct hv_qmp *q, short revents)
{
    if (q->state == QMP_DEAD)
        return q->dead_error;
    int r = 0;
    q->in_dispatch = true;
    if (revents & POLLOUT) {
        r = any_held(q) && q->state == QMP_READY ? send_held(q) : out_flush(q);
        if (r < 0) {
            r = qmp_kill(q, r);
            goto out;
        }
    }
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
        /* Read until the socket is drained; EOF means QEMU went away. */
        for (;;) {
            char buf[16384];
            ssize_t n = recv(q->fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            if (n <= 0) {
                r = qmp_kill(q, -ECONNRESET);
                goto out;
            }
            r = hv_qmp_feed(q, buf, (size_t)n);
            if (r < 0)
                goto out;
        }
    }
    r = expire(q);
out:
    q->in_dispatch = false;
    return r;
}

int hv_qmp_new(int fd, const struct hv_qmp_ops *ops, void *userdata, int handshake_timeout_ms,
               struct hv_qmp **ret_q)
{
    struct hv_qmp *q = calloc(1, sizeof(*q));
    if (!q) {
        if (fd >= 0)
            close(fd);
        return -ENOMEM;
    }
    q->fd = fd;
    q->ops = ops;
    q->userdata = userdata;
    q->state = QMP_GREETING;
    q->cmds_tail = &q->cmds;
    q->handshake_deadline_ms =
        atr_now_mono_ms() + (handshake_timeout_ms > 0 ? handshake_timeout_ms : 30000);
    *ret_q = q;
    return 0;
}

int hv_qmp_connect(const char *path, const struct hv_qmp_ops *ops, void *userdata,
                   int handshake_timeout_ms, struct hv_qmp **ret_q)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    /* A unix socket connect does not wait for accept(): it completes as
     * soon as the listener queues it, so non-blocking here is immediate. */
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return e == EAGAIN ? -ECONNREFUSED : -e;
    }
    return hv_qmp_new(fd, ops, userdata, handshake_timeout_ms, ret_q);
}

struct hv_qmp *hv_qmp_free(struct hv_qmp *q)
{
    if (!q)
        return NULL;
    qmp_kill(q, -ECANCELED);
    if (q->fd >= 0)
        close(q->fd);
    free(q->in);
    free(q->out);
    free(q);
    return NULL;
}

int hv_qmp_fd(const struct hv_qmp *q)
{
    return q->fd;
}

short hv_qmp_poll_events(const struct hv_qmp *q)
{
    if (q->state == QMP_DEAD)
        return 0;
    bool want_out = q->out_off < q->out_len || (q->state == QMP_READY && any_held(q));
    return POLLIN | (want_out ? POLLOUT : 0);
}

int hv_qmp_timeout_ms(const struct hv_qmp *q)
{
    if (q->state == QMP_DEAD)
        return -1;
    int64_t next = q->state == QMP_READY ? 0 : q->handshake_deadline_ms;
    for (const struct qmp_cmd *c = q->cmds; c; c = c->next)
        if (c->deadline_ms && (!next || c->deadline_ms < next))
            next = c->deadline_ms;
    return next ? atr_deadline_left_ms(next) : -1;
}

bool hv_qmp_is_ready(const struct hv_qmp *q)
{
    return q->state == QMP_READY;
}

/* Drive the connection until *@done or @deadline_ms. */
static int drive(struct hv_qmp *q, const bool *done, int64_t deadline_ms)
{
    if (q->in_dispatch)
        return -EBUSY;
    while (!*done) {
        if (q->state == QMP_DEAD)
            return q->dead_error;
        int left = atr_deadline_left_ms(deadline_ms);
        if (left == 0)
            return -ETIMEDOUT;
        int t = hv_qmp_timeout_ms(q);
        if (t < 0 || t > left)
            t = left;
        struct pollfd p = {.fd = q->fd, .events = hv_qmp_poll_events(q)};
        int n = poll(&p, 1, t);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        int r = hv_qmp_dispatch(q, n > 0 ? p.revents : 0);
        if (r < 0)
            return r;
    }
    return 0;
}

struct call_result {
    bool done;
    int error;
    json_t *ret;
    char err_text[400];
};

static void call_reply(struct hv_qmp *q, const struct hv_qmp_reply *reply, void *userdata)
{
    (void)q;
    struct call_result *cr = userdata;
    cr->done = true;
    cr->error = reply->error;
    if (reply->error == 0)
        cr->ret = json_incref(reply->ret);
    else if (reply->error == -EIO)
        snprintf(cr->err_text, sizeof(cr->err_text), "%s: %s", reply->err_class, reply->err_desc);
}

int hv_qmp_call(struct hv_qmp *q, const char *command, json_t *args, int timeout_ms,
                json_t **ret_return, struct atr_error *err)
{
    if (q->in_dispatch) {
        json_decref(args);
        return -EBUSY;
    }
    struct call_result cr = {0};
    int64_t deadline = atr_now_mono_ms() + (timeout_ms > 0 ? timeout_ms : 30000);
    int r = hv_qmp_send(q, command, args, timeout_ms, call_reply, &cr, NULL);
    if (r < 0)
        return atr_error_set(err, r, "QMP %s could not be sent", command);
    r = drive(q, &cr.done, deadline);
    if (r < 0 && !cr.done)
        return atr_error_set(err, r, "QMP %s: connection failed before the reply", command);
    if (cr.error == -EIO)
        return atr_error_set(err, -EIO, "QMP %s failed: %s", command, cr.err_text);
    if (cr.error < 0)
        return atr_error_set(err, cr.error, "QMP %s got no reply", command);
    if (ret_return)
        *ret_return = cr.ret;
    else
        json_decref(cr.ret);
    return 0;
}

int hv_qmp_wait_ready(struct hv_qmp *q, int timeout_ms)
{
    if (q->state == QMP_READY)
        return 0;
    int64_t deadline = atr_now_mono_ms() + timeout_ms;
    if (q->in_dispatch)
        return -EBUSY;
    while (q->state != QMP_READY) {
        if (q->state == QMP_DEAD)
            return q->dead_error;
        int left = atr_deadline_left_ms(deadline);
        if (left == 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = q->fd, .events = hv_qmp_poll_events(q)};
        int t = hv_qmp_timeout_ms(q);
        if (t < 0 || t > left)
            t = left;
        int n = poll(&p, 1, t);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        int r = hv_qmp_dispatch(q, n > 0 ? p.revents : 0);
        if (r < 0)
            return r;
    }
    return 0;
}
