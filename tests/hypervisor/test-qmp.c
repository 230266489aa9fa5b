/*
 * The QMP client against canned QEMU bytes over a socketpair (the shape of
 * libvirt's qemumonitorjsontest): the test plays QEMU, reads what the client
 * wrote and answers with the bytes QEMU 7.2 sends.
 */
#include "qmp-priv.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define GREETING                                                                                   \
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, "             \
    "\"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, \"capabilities\": [\"oob\"]}}\r\n"

struct fixture {
    struct hv_qmp *q;
    int peer; /* QEMU's end */
    int ready_calls;
    int n_events;
    enum hv_qmp_event events[8];
    char event_names[8][32];
    json_t *event_data[8];
};

struct reply_log {
    int calls;
    int error;
    json_t *ret;
    char err_class[64], err_desc[128], command[64];
};

static void on_event(struct hv_qmp *q, enum hv_qmp_event ev, const char *name, json_t *data,
                     void *userdata)
{
    (void)q;
    struct fixture *f = userdata;
    if (f->n_events < 8) {
        f->events[f->n_events] = ev;
        snprintf(f->event_names[f->n_events], 32, "%s", name);
        f->event_data[f->n_events] = json_incref(data);
        f->n_events++;
    }
}

static void on_ready(struct hv_qmp *q, void *userdata)
{
    (void)q;
    ((struct fixture *)userdata)->ready_calls++;
}

static const struct hv_qmp_ops ops = {.event = on_event, .ready = on_ready};

static void on_reply(struct hv_qmp *q, const struct hv_qmp_reply *r, void *userdata)
{
    (void)q;
    struct reply_log *l = userdata;
    l->calls++;
    l->error = r->error;
    snprintf(l->command, sizeof(l->command), "%s", r->command);
    json_decref(l->ret);
    l->ret = json_incref(r->ret);
    snprintf(l->err_class, sizeof(l->err_class), "%s", r->err_class ? r->err_class : "");
    snprintf(l->err_desc, sizeof(l->err_desc), "%s", r->err_desc ? r->err_desc : "");
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    int sv[2];
    if (!f || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    f->peer = sv[1];
    if (hv_qmp_new(sv[0], &ops, f, 2000, &f->q) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    hv_qmp_free(f->q);
    close(f->peer);
    for (int i = 0; i < f->n_events; i++)
        json_decref(f->event_data[i]);
    free(f);
    return 0;
}

static void peer_write(struct fixture *f, const char *s)
{
    assert_int_equal(write(f->peer, s, strlen(s)), (ssize_t)strlen(s));
}

/* Let the client process whatever the peer wrote (bounded wait). */
static int pump(struct fixture *f, int timeout_ms)
{
    struct pollfd p = {.fd = hv_qmp_fd(f->q), .events = hv_qmp_poll_events(f->q)};
    int n = poll(&p, 1, timeout_ms);
    assert_true(n >= 0);
    return hv_qmp_dispatch(f->q, n > 0 ? p.revents : 0);
}

/* Read one line the client sent and parse it; NULL if none within 1 s. */
static json_t *peer_read_msg(struct fixture *f)
{
    char line[4096];
    size_t len = 0;
    while (len < sizeof(line) - 1) {
        struct pollfd p = {.fd = f->peer, .events = POLLIN};
        if (poll(&p, 1, 1000) <= 0)
            return NULL;
        if (read(f->peer, &line[len], 1) != 1)
            return NULL;
        if (line[len++] == '\n')
            break;
    }
    return json_loadb(line, len, 0, NULL);
}

static long long msg_id(json_t *msg)
{
    json_t *id = json_object_get(msg, "id");
    assert_true(json_is_integer(id));
    return json_integer_value(id);
}

/* Greeting, capabilities, reply: the connection becomes ready. */
static void handshake(struct fixture *f)
{
    peer_write(f, GREETING);
    assert_int_equal(pump(f, 1000), 0);
    json_t *caps = peer_read_msg(f);
    assert_non_null(caps);
    assert_string_equal(json_string_value(json_object_get(caps, "execute")), "qmp_capabilities");
    char reply[64];
    snprintf(reply, sizeof(reply), "{\"return\": {}, \"id\": %lld}\r\n", msg_id(caps));
    json_decref(caps);
    assert_false(hv_qmp_is_ready(f->q));
    peer_write(f, reply);
    assert_int_equal(pump(f, 1000), 0);
    assert_true(hv_qmp_is_ready(f->q));
    assert_int_equal(f->ready_calls, 1);
}

static void test_commands_wait_for_the_handshake_then_go_out_in_order(void **state)
{
    struct fixture *f = *state;
    struct reply_log l = {0};
    assert_int_equal(hv_qmp_send(f->q, "query-status", NULL, 0, on_reply, &l, NULL), 0);
    /* Nothing may reach QEMU before qmp_capabilities. */
    assert_int_equal(hv_qmp_pending_output(f->q), 0);
    handshake(f);
    json_t *cmd = peer_read_msg(f);
    assert_non_null(cmd);
    assert_string_equal(json_string_value(json_object_get(cmd, "execute")), "query-status");
    char reply[128];
    snprintf(reply, sizeof(reply),
             "{\"return\": {\"status\": \"running\", \"running\": true}, \"id\": %lld}\r\n",
             msg_id(cmd));
    json_decref(cmd);
    peer_write(f, reply);
    assert_int_equal(pump(f, 1000), 0);
    assert_int_equal(l.calls, 1);
    assert_int_equal(l.error, 0);
    assert_string_equal(json_string_value(json_object_get(l.ret, "status")), "running");
    json_decref(l.ret);
}

/* getfd: the descriptor travels as SCM_RIGHTS on the bytes of its own
 * command, after what was queued before it and before what follows. */
static void test_a_descriptor_travels_with_its_own_command(void **state)
{
    struct fixture *f = *state;
    int pipefd[2];
    assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
    assert_int_equal(hv_qmp_send(f->q, "query-status", NULL, 0, NULL, NULL, NULL), 0);
    assert_int_equal(hv_qmp_send_fd(f->q, "getfd", json_pack("{s:s}", "fdname", "st"), pipefd[1],
                                    0, NULL, NULL, NULL),
                     0);
    assert_int_equal(hv_qmp_send(f->q, "query-name", NULL, 0, NULL, NULL, NULL), 0);
    handshake(f);
    assert_int_equal(pump(f, 100), 0);

    json_t *m = peer_read_msg(f);
    assert_string_equal(json_string_value(json_object_get(m, "execute")), "query-status");
    json_decref(m);
    /* The next bytes carry the descriptor. */
    char buf[512];
    union {
        char b[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf) - 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
                        .msg_controllen = sizeof(u.b)};
    ssize_t n = recvmsg(f->peer, &mh, MSG_CMSG_CLOEXEC);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "\"getfd\""));
    assert_null(strstr(buf, "query-name"));
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    assert_non_null(cm);
    assert_int_equal(cm->cmsg_type, SCM_RIGHTS);
    int got;
    memcpy(&got, CMSG_DATA(cm), sizeof(int));
    /* It is the pipe's write end: what we write arrives at the read end. */
    assert_int_equal(write(got, "x", 1), 1);
    char c = 0;
    assert_int_equal(read(pipefd[0], &c, 1), 1);
    assert_int_equal(c, 'x');
    close(got);
    close(pipefd[0]);
    close(pipefd[1]);
    m = peer_read_msg(f);
    assert_non_null(m);
    assert_string_equal(json_string_value(json_object_get(m, "execute")), "query-name");
    json_decref(m);
}

static void test_debug_log_never_shows_a_console_password(void **state)
{
    struct fixture *f = *state;
    struct reply_log l = {0};
    int p[2];
    assert_int_equal(pipe(p), 0);
    enum log_level before = log_get_level();
    log_set_level(LOG_LEVEL_DEBUG);
    log_set_fd(p[1]);
    json_t *args = json_pack("{s:s, s:s}", "protocol", "spice", "password", "Tk7-secret-9q");
    assert_int_equal(hv_qmp_send(f->q, "set_password", args, 0, on_reply, &l, NULL), 0);
    handshake(f);
    json_t *cmd = peer_read_msg(f);
    log_set_fd(STDERR_FILENO);
    log_set_level(before);
    close(p[1]);
    char buf[8192];
    ssize_t n = read(p[0], buf, sizeof(buf) - 1);
    close(p[0]);
    buf[n > 0 ? n : 0] = '\0';
    /* the password went to QEMU, and only there */
    assert_string_equal(json_string_value(json_object_get(json_object_get(cmd, "arguments"),
                                                          "password")),
                        "Tk7-secret-9q");
    json_decref(cmd);
    assert_non_null(strstr(buf, "command=set_password"));
    assert_null(strstr(buf, "Tk7-secret-9q"));
}

static void test_replies_are_matched_by_id_not_by_order(void **state)
{
    struct fixture *f = *state;
    handshake(f);
    struct reply_log a = {0}, b = {0};
    uint64_t ida, idb;
    json_t *args = json_pack("{s:s}", "device", "vda");
    assert_int_equal(hv_qmp_send(f->q, "query-a", args, 0, on_reply, &a, &ida), 0);
    assert_int_equal(hv_qmp_send(f->q, "query-b", NULL, 0, on_reply, &b, &idb), 0);
    assert_true(ida != idb);
    json_t *ma = peer_read_msg(f), *mb = peer_read_msg(f);
    assert_non_null(ma);
    assert_non_null(mb);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(ma, "arguments"), "device")), "vda");
    assert_int_equal(msg_id(ma), (long long)ida);
    char r[128];
    snprintf(r, sizeof(r), "{\"return\": \"B\", \"id\": %llu}\n{\"return\": \"A\", \"id\": %llu}\n",
             (unsigned long long)idb, (unsigned long long)ida);
    peer_write(f, r);
    assert_int_equal(pump(f, 1000), 0);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_string_equal(json_string_value(a.ret), "A");
    assert_string_equal(json_string_value(b.ret), "B");
    assert_string_equal(a.command, "query-a");
    json_decref(ma);
    json_decref(mb);
    json_decref(a.ret);
    json_decref(b.ret);
}

static void test_qemu_error_reaches_the_caller_with_class_and_text(void **state)
{
    struct fixture *f = *state;
    handshake(f);
    struct reply_log l = {0};
    uint64_t id;
    assert_int_equal(hv_qmp_send(f->q, "balloon", json_pack("{s:I}", "value", (json_int_t)1), 0,
                                 on_reply, &l, &id),
                     0);
    char r[200];
    snprintf(r, sizeof(r),
             "{\"id\": %llu, \"error\": {\"class\": \"DeviceNotActive\", \"desc\": \"No balloon "
             "device has been activated\"}}\r\n",
             (unsigned long long)id);
    peer_write(f, r);
    assert_int_equal(pump(f, 1000), 0);
    assert_int_equal(l.calls, 1);
    assert_int_equal(l.error, -EIO);
    assert_string_equal(l.err_class, "DeviceNotActive");
    assert_string_equal(l.err_desc, "No balloon device has been activated");
}

static void test_deadline_expires_and_a_late_reply_is_dropped(void **state)
{
    struct fixture *f = *state;
    handshake(f);
    struct reply_log slow = {0}, other = {0};
    uint64_t id;
    assert_int_equal(hv_qmp_send(f->q, "stop", NULL, 50, on_reply, &slow, &id), 0);
    assert_int_equal(hv_qmp_send(f->q, "cont", NULL, 0, on_reply, &other, NULL), 0);
    int t = hv_qmp_timeout_ms(f->q);
    assert_true(t >= 0 && t <= 50);
    int64_t start = atr_now_mono_ms();
    while (slow.calls == 0 && atr_now_mono_ms() - start < 2000)
        assert_int_equal(pump(f, hv_qmp_timeout_ms(f->q)), 0);
    assert_int_equal(slow.calls, 1);
    assert_int_equal(slow.error, -ETIMEDOUT);
    assert_int_equal(other.calls, 0);
    /* The late reply must not be taken for "cont"'s. */
    char r[64];
    snprintf(r, sizeof(r), "{\"return\": {}, \"id\": %llu}\n", (unsigned long long)id);
    peer_write(f, r);
    assert_int_equal(pump(f, 1000), 0);
    assert_int_equal(slow.calls, 1);
    assert_int_equal(other.calls, 0);
    f->q = hv_qmp_free(f->q);
    assert_int_equal(other.calls, 1);
    assert_int_equal(other.error, -ECANCELED);
}

static void test_events_are_dispatched_by_name(void **state)
{
    struct fixture *f = *state;
    handshake(f);
    peer_write(f, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\r\n"
                  "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 3}, \"event\": "
                  "\"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}\r\n"
                  "{\"event\": \"NIC_RX_FILTER_CHANGED\", \"data\": {}}\r\n"
                  "{\"event\": \"JOB_STATUS_CHANGE\", \"data\": {\"status\": \"concluded\", "
                  "\"id\": \"snap0\"}}\r\n");
    assert_int_equal(pump(f, 1000), 0);
    assert_int_equal(f->n_events, 4);
    assert_int_equal(f->events[0], HV_QMP_EVENT_STOP);
    assert_int_equal(f->events[1], HV_QMP_EVENT_SHUTDOWN);
    assert_true(json_is_true(json_object_get(f->event_data[1], "guest")));
    assert_int_equal(f->events[2], HV_QMP_EVENT_OTHER);
    assert_string_equal(f->event_names[2], "NIC_RX_FILTER_CHANGED");
    assert_int_equal(f->events[3], HV_QMP_EVENT_JOB_STATUS_CHANGE);
    assert_null(f->event_data[0]);
}

static void test_event_table_is_sorted_for_bsearch(void **state)
{
    (void)state;
    size_t n = hv_qmp_event_table_size();
    assert_true(n >= 20);
    for (size_t i = 1; i < n; i++)
        assert_true(strcmp(hv_qmp_event_table_name(i - 1), hv_qmp_event_table_name(i)) < 0);
    for (size_t i = 0; i < n; i++) {
        const char *name = hv_qmp_event_table_name(i);
        enum hv_qmp_event ev = hv_qmp_event_from_name(name);
        assert_int_not_equal(ev, HV_QMP_EVENT_OTHER);
        assert_string_equal(hv_qmp_event_name(ev), name);
    }
    assert_int_equal(hv_qmp_event_from_name("SHUTDOWNX"), HV_QMP_EVENT_OTHER);
    assert_int_equal(hv_qmp_event_from_name(""), HV_QMP_EVENT_OTHER);
}

static void test_bytes_split_anywhere_parse_the_same(void **state)
{
    struct fixture *f = *state;
    /* Byte at a time: the greeting and an event arrive in 1-byte reads. */
    const char *s = GREETING;
    for (size_t i = 0; s[i]; i++)
        assert_int_equal(hv_qmp_feed(f->q, &s[i], 1), 0);
    json_t *caps = peer_read_msg(f);
    assert_non_null(caps);
    char reply[96];
    snprintf(reply, sizeof(reply), "{\"return\": {}, \"id\": %lld}\r\n{\"event\": \"RES",
             msg_id(caps));
    json_decref(caps);
    assert_int_equal(hv_qmp_feed(f->q, reply, strlen(reply)), 0);
    assert_true(hv_qmp_is_ready(f->q));
    assert_int_equal(f->n_events, 0);
    assert_int_equal(hv_qmp_feed(f->q, "ET\"}\n", 5), 0);
    assert_int_equal(f->n_events, 1);
    assert_int_equal(f->events[0], HV_QMP_EVENT_RESET);
}

static void test_overlong_line_kills_the_connection_and_cancels_commands(void **state)
{
    struct fixture *f = *state;
    handshake(f);
    struct reply_log l = {0};
    assert_int_equal(hv_qmp_send(f->q, "query-status", NULL, 0, on_reply, &l, NULL), 0);
    char *junk = malloc(64 * 1024);
    assert_non_null(junk);
    memset(junk, ' ', 64 * 1024);
    int r = 0;
    for (size_t sent = 0; r == 0 && sent <= HV_QMP_MAX_LINE; sent += 64 * 1024)
        r = hv_qmp_feed(f->q, junk, 64 * 1024);
    free(junk);
    assert_int_equal(r, -EMSGSIZE);
    assert_int_equal(l.calls, 1);
    assert_int_equal(l.error, -ECANCELED);
    assert_int_equal(hv_qmp_send(f->q, "cont", NULL, 0, NULL, NULL, NULL), -EMSGSIZE);
}

static void test_garbage_instead_of_a_greeting_is_a_protocol_error(void **state)
{
    struct fixture *f = *state;
    peer_write(f, "{\"return\": {}}\n");
    assert_int_equal(pump(f, 1000), -EPROTO);
}

static void test_garbled_line_after_handshake_is_skipped(void **state)
{
    struct fixture *f = *state;
    handshake(f);
    peer_write(f, "{not json\n[1,2]\n{\"event\": \"RESUME\"}\n");
    assert_int_equal(pump(f, 1000), 0);
    assert_int_equal(f->n_events, 1);
    assert_int_equal(f->events[0], HV_QMP_EVENT_RESUME);
}

static void test_qemu_going_away_cancels_pending_commands(void **state)
{
    struct fixture *f = *state;
    handshake(f);
    struct reply_log l = {0};
    assert_int_equal(hv_qmp_send(f->q, "query-status", NULL, 0, on_reply, &l, NULL), 0);
    shutdown(f->peer, SHUT_RDWR);
    assert_int_equal(pump(f, 1000), -ECONNRESET);
    assert_int_equal(l.calls, 1);
    assert_int_equal(l.error, -ECANCELED);
}

static void test_silent_peer_fails_the_handshake_by_its_deadline(void **state)
{
    struct fixture *f = *state;
    hv_qmp_free(f->q);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    close(f->peer);
    f->peer = sv[1];
    assert_int_equal(hv_qmp_new(sv[0], &ops, f, 100, &f->q), 0);
    int64_t start = atr_now_mono_ms();
    assert_int_equal(hv_qmp_wait_ready(f->q, 5000), -ETIMEDOUT);
    int64_t took = atr_now_mono_ms() - start;
    assert_true(took >= 90 && took < 2000);
}

static void test_free_cancels_pending_commands(void **state)
{
    struct fixture *f = *state;
    struct reply_log l = {0};
    assert_int_equal(hv_qmp_send(f->q, "query-status", NULL, 0, on_reply, &l, NULL), 0);
    f->q = hv_qmp_free(f->q);
    assert_null(f->q);
    assert_int_equal(l.calls, 1);
    assert_int_equal(l.error, -ECANCELED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_commands_wait_for_the_handshake_then_go_out_in_order),
        T(test_a_descriptor_travels_with_its_own_command),
        T(test_debug_log_never_shows_a_console_password),
        T(test_replies_are_matched_by_id_not_by_order),
        T(test_qemu_error_reaches_the_caller_with_class_and_text),
        T(test_deadline_expires_and_a_late_reply_is_dropped),
        T(test_events_are_dispatched_by_name),
        cmocka_unit_test(test_event_table_is_sorted_for_bsearch),
        T(test_bytes_split_anywhere_parse_the_same),
        T(test_overlong_line_kills_the_connection_and_cancels_commands),
        T(test_garbage_instead_of_a_greeting_is_a_protocol_error),
        T(test_garbled_line_after_handshake_is_skipped),
        T(test_qemu_going_away_cancels_pending_commands),
        T(test_silent_peer_fails_the_handshake_by_its_deadline),
        T(test_free_cancels_pending_commands),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
