/*
 * The source side of a live migration (hv_migrate_*) against canned QEMU
 * bytes over a socketpair: the test plays QEMU 7.2, reads each command the
 * job sends and answers as QEMU does (events MIGRATION / MIGRATION_PASS,
 * query-migrate answers).
 */
#include "hv.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define GREETING                                                                                   \
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, "             \
    "\"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, \"capabilities\": [\"oob\"]}}\r\n"

/* What query-migrate says while RAM is copied, and once it completed. */
#define ACTIVE                                                                                     \
    "{\"expected-downtime\": 300, \"status\": \"active\", \"setup-time\": 3, "                     \
    "\"total-time\": 412, \"ram\": {\"total\": 285810688, \"remaining\": 71452672, "               \
    "\"transferred\": 21237760, \"dirty-sync-count\": 2, \"mbps\": 412.5}, "                       \
    "\"cpu-throttle-percentage\": 20}"
#define COMPLETED                                                                                  \
    "{\"status\": \"completed\", \"setup-time\": 3, \"downtime\": 37, \"total-time\": 616, "       \
    "\"ram\": {\"total\": 285810688, \"remaining\": 0, \"transferred\": 23962122, "                \
    "\"dirty-sync-count\": 3}}"

/* A pass of a busy guest: sync count, dirty pages per second, throttle. */
#define ACTIVE_BUSY(sync, rate, throttle)                                                          \
    "{\"expected-downtime\": 4216, \"status\": \"active\", \"setup-time\": 3, "                    \
    "\"total-time\": 16760, \"ram\": {\"total\": 285810688, \"remaining\": 16777216, "             \
    "\"transferred\": 275300918, \"page-size\": 4096, \"dirty-sync-count\": " #sync                \
    ", \"dirty-pages-rate\": " #rate                                                               \
    ", \"mbps\": 134.28}, \"cpu-throttle-percentage\": " #throttle "}"

struct fixture {
    struct hv_qmp *q;
    struct hv_mig_job *job;
    int peer;
    char buf[65536];
    size_t len;
    int progress_calls, done_calls, done_error, last_pct;
    struct hv_mig_stats done_stats;
};

static void on_event(struct hv_qmp *q, enum hv_qmp_event ev, const char *name, json_t *data,
                     void *userdata)
{
    (void)q;
    (void)name;
    struct fixture *f = userdata;
    hv_migrate_event(f->job, ev, data);
}

static const struct hv_qmp_ops qmp_ops = {.event = on_event};

static void on_progress(struct hv_mig_job *j, const struct hv_mig_stats *s, void *userdata)
{
    (void)j;
    struct fixture *f = userdata;
    f->progress_calls++;
    f->last_pct = hv_migrate_progress_pct(s);
}

static void on_done(struct hv_mig_job *j, int error, const struct hv_mig_stats *s, void *userdata)
{
    struct fixture *f = userdata;
    f->done_calls++;
    f->done_error = error;
    f->done_stats = *s;
    f->job = hv_migrate_job_free(j);
}

static const struct hv_mig_job_ops job_ops = {.progress = on_progress, .done = on_done};

static void pump(struct fixture *f)
{
    struct pollfd p = {.fd = hv_qmp_fd(f->q), .events = hv_qmp_poll_events(f->q)};
    int n = poll(&p, 1, 200);
    assert_true(n >= 0);
    hv_qmp_dispatch(f->q, n > 0 ? p.revents : 0);
}

static void peer_write(struct fixture *f, const char *s)
{
    assert_int_equal(write(f->peer, s, strlen(s)), (ssize_t)strlen(s));
    pump(f);
}

/* The next command the client wrote (bounded wait); caller decrefs. */
static json_t *peer_read_cmd(struct fixture *f)
{
    for (int tries = 0; tries < 50; tries++) {
        char *nl = memchr(f->buf, '\n', f->len);
        if (nl) {
            size_t n = (size_t)(nl - f->buf) + 1;
            json_t *cmd = json_loadb(f->buf, n, 0, NULL);
            memmove(f->buf, f->buf + n, f->len - n);
            f->len -= n;
            assert_non_null(cmd);
            return cmd;
        }
        pump(f);
        struct pollfd p = {.fd = f->peer, .events = POLLIN};
        if (poll(&p, 1, 100) > 0) {
            ssize_t r = read(f->peer, f->buf + f->len, sizeof(f->buf) - f->len - 1);
            assert_true(r > 0);
            f->len += (size_t)r;
        }
    }
    fail_msg("the client sent no command");
    return NULL;
}

/* Read one command, check its name, answer with @ret_json (an object). */
static json_t *expect_cmd(struct fixture *f, const char *name, const char *ret_json)
{
    json_t *cmd = peer_read_cmd(f);
    assert_string_equal(json_string_value(json_object_get(cmd, "execute")), name);
    json_t *reply = json_pack("{s:o}", "return", json_loads(ret_json, 0, NULL));
    json_object_set(reply, "id", json_object_get(cmd, "id"));
    char *s = json_dumps(reply, JSON_COMPACT);
    json_decref(reply);
    char line[8192];
    snprintf(line, sizeof(line), "%s\r\n", s);
    free(s);
    peer_write(f, line);
    return cmd;
}

static void event(struct fixture *f, const char *name, const char *data)
{
    char line[512];
    snprintf(line, sizeof(line),
             "{\"timestamp\": {\"seconds\": 1764086400, \"microseconds\": 1}, \"event\": \"%s\", "
             "\"data\": %s}\r\n",
             name, data);
    peer_write(f, line);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    int sv[2];
    if (!f || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    f->peer = sv[1];
    if (hv_qmp_new(sv[0], &qmp_ops, f, 2000, &f->q) < 0)
        return -1;
    *state = f;
    peer_write(f, GREETING);
    json_decref(expect_cmd(f, "qmp_capabilities", "{}"));
    return hv_qmp_is_ready(f->q) ? 0 : -1;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    hv_migrate_job_free(f->job);
    hv_qmp_free(f->q);
    close(f->peer);
    free(f);
    return 0;
}

/* Capabilities (auto-converge, events), the bandwidth, then migrate. */
static void start(struct fixture *f)
{
    assert_int_equal(
        hv_migrate_start(f->q, "tcp:10.213.7.12:40001", 1024LL * 1024 * 1024, &job_ops, f, &f->job),
        0);
    json_t *cmd = expect_cmd(f, "migrate-set-capabilities", "{}");
    json_t *caps = json_object_get(json_object_get(cmd, "arguments"), "capabilities");
    bool ac = false, ev = false;
    size_t i;
    json_t *c;
    json_array_foreach(caps, i, c)
    {
        const char *name = json_string_value(json_object_get(c, "capability"));
        bool on = json_is_true(json_object_get(c, "state"));
        ac |= on && strcmp(name, "auto-converge") == 0;
        ev |= on && strcmp(name, "events") == 0;
    }
    assert_true(ac && ev);
    json_decref(cmd);
    cmd = expect_cmd(f, "migrate-set-parameters", "{}");
    json_t *args = json_object_get(cmd, "arguments");
    assert_int_equal(json_integer_value(json_object_get(args, "max-bandwidth")),
                     1024LL * 1024 * 1024);
    /* Auto-converge's steps: faster to the cap than QEMU's 20 + 10. */
    assert_int_equal(json_integer_value(json_object_get(args, "cpu-throttle-initial")), 30);
    assert_int_equal(json_integer_value(json_object_get(args, "cpu-throttle-increment")), 20);
    json_decref(cmd);
    cmd = expect_cmd(f, "migrate", "{}");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(cmd, "arguments"), "uri")),
        "tcp:10.213.7.12:40001");
    json_decref(cmd);
}

static void test_completed_migration_reports_downtime(void **state)
{
    struct fixture *f = *state;
    start(f);
    event(f, "MIGRATION", "{\"status\": \"setup\"}");
    event(f, "MIGRATION", "{\"status\": \"active\"}");
    assert_int_equal(f->done_calls, 0);
    /* Each pass: progress from query-migrate. */
    event(f, "MIGRATION_PASS", "{\"pass\": 2}");
    json_decref(expect_cmd(f, "query-migrate", ACTIVE));
    assert_int_equal(f->progress_calls, 1);
    assert_int_equal(f->last_pct, 74); /* (285810688 - 71452672) * 99 / 285810688 */
    event(f, "MIGRATION", "{\"status\": \"completed\"}");
    json_decref(expect_cmd(f, "query-migrate", COMPLETED));
    assert_int_equal(f->done_calls, 1);
    assert_int_equal(f->done_error, 0);
    assert_string_equal(f->done_stats.status, "completed");
    assert_int_equal(f->done_stats.downtime_ms, 37);
    assert_int_equal(f->done_stats.total_ms, 616);
    assert_int_equal(f->done_stats.passes, 3);
    assert_int_equal(hv_migrate_progress_pct(&f->done_stats), 100);
}

/* A busy guest: auto-converge raised the throttle over the passes.  QEMU's
 * end answer has no dirty rate and the throttle back at 0, so the job keeps
 * what the passes said: the highest throttle and the last dirty rate. */
static void test_busy_guest_reports_highest_throttle_and_dirty_rate(void **state)
{
    struct fixture *f = *state;
    start(f);
    event(f, "MIGRATION_PASS", "{\"pass\": 2}");
    json_decref(expect_cmd(f, "query-migrate", ACTIVE_BUSY(2, 4012, 20)));
    event(f, "MIGRATION_PASS", "{\"pass\": 3}");
    json_decref(expect_cmd(f, "query-migrate", ACTIVE_BUSY(3, 3975, 90)));
    event(f, "MIGRATION_PASS", "{\"pass\": 4}");
    json_decref(expect_cmd(f, "query-migrate", ACTIVE_BUSY(4, 554, 60)));
    assert_int_equal(f->progress_calls, 3);
    event(f, "MIGRATION", "{\"status\": \"completed\"}");
    json_decref(expect_cmd(f, "query-migrate",
                           "{\"status\": \"completed\", \"setup-time\": 3, \"downtime\": 10, "
                           "\"total-time\": 87649, \"ram\": {\"total\": 285810688, "
                           "\"remaining\": 0, \"transferred\": 1399812096, \"page-size\": 4096, "
                           "\"dirty-pages-rate\": 0, \"dirty-sync-count\": 24}}"));
    assert_int_equal(f->done_calls, 1);
    assert_int_equal(f->done_error, 0);
    assert_int_equal(f->done_stats.cpu_throttle_pct, 0);
    assert_int_equal(f->done_stats.cpu_throttle_max_pct, 90);
    assert_int_equal(f->done_stats.dirty_bytes_per_s, 554 * 4096);
    assert_int_equal(f->done_stats.ram_transferred, 1399812096);
    assert_int_equal(f->done_stats.downtime_ms, 10);
}

/* An idle guest: no throttle, and a dirty rate only if QEMU said one. */
static void test_idle_guest_reports_no_throttle(void **state)
{
    struct fixture *f = *state;
    start(f);
    event(f, "MIGRATION", "{\"status\": \"completed\"}");
    json_decref(expect_cmd(f, "query-migrate", COMPLETED));
    assert_int_equal(f->done_calls, 1);
    assert_int_equal(f->done_stats.cpu_throttle_max_pct, 0);
    assert_int_equal(f->done_stats.dirty_bytes_per_s, -1);
}

/* The end event can come while a progress query is out (QEMU answers that
 * query with the state before the end): the job must ask again, not wait
 * for an event that was already sent. */
static void test_end_event_during_a_progress_query_is_not_lost(void **state)
{
    struct fixture *f = *state;
    start(f);
    event(f, "MIGRATION_PASS", "{\"pass\": 2}");
    json_t *q = peer_read_cmd(f); /* the progress query, not answered yet */
    assert_string_equal(json_string_value(json_object_get(q, "execute")), "query-migrate");
    event(f, "MIGRATION", "{\"status\": \"completed\"}");
    json_t *reply = json_pack("{s:o, s:O}", "return", json_loads(ACTIVE, 0, NULL), "id",
                              json_object_get(q, "id"));
    char *s = json_dumps(reply, JSON_COMPACT);
    char line[8192];
    snprintf(line, sizeof(line), "%s\r\n", s);
    free(s);
    json_decref(reply);
    json_decref(q);
    peer_write(f, line);
    assert_int_equal(f->done_calls, 0);
    json_decref(expect_cmd(f, "query-migrate", COMPLETED));
    assert_int_equal(f->done_calls, 1);
    assert_int_equal(f->done_error, 0);
    assert_int_equal(f->done_stats.downtime_ms, 37);
}

/* "completed" before QEMU wrote its figures (total time and downtime 0):
 * asked again until they are there. */
static void test_completed_without_figures_is_asked_again(void **state)
{
    struct fixture *f = *state;
    start(f);
    event(f, "MIGRATION", "{\"status\": \"completed\"}");
    json_decref(expect_cmd(f, "query-migrate",
                           "{\"status\": \"completed\", \"setup-time\": 0, \"downtime\": 0, "
                           "\"total-time\": 0, \"ram\": {\"total\": 285810688, \"remaining\": 0, "
                           "\"transferred\": 23962122, \"dirty-sync-count\": 3}}"));
    assert_int_equal(f->done_calls, 0);
    json_decref(expect_cmd(f, "query-migrate", COMPLETED));
    assert_int_equal(f->done_calls, 1);
    assert_int_equal(f->done_stats.downtime_ms, 37);
    assert_int_equal(f->done_stats.total_ms, 616);
}

static void test_failed_migration_carries_qemus_words(void **state)
{
    struct fixture *f = *state;
    start(f);
    event(f, "MIGRATION", "{\"status\": \"failed\"}");
    json_decref(expect_cmd(f, "query-migrate",
                           "{\"status\": \"failed\", \"error-desc\": \"Unable to write to "
                           "socket: Connection reset by peer\"}"));
    assert_int_equal(f->done_calls, 1);
    assert_int_equal(f->done_error, -EIO);
    assert_string_equal(f->done_stats.error, "Unable to write to socket: Connection reset by peer");
}

static void test_cancel_sends_migrate_cancel_and_ends_cancelled(void **state)
{
    struct fixture *f = *state;
    start(f);
    assert_int_equal(hv_migrate_cancel(f->job), 0);
    json_decref(expect_cmd(f, "migrate_cancel", "{}"));
    event(f, "MIGRATION", "{\"status\": \"cancelling\"}");
    assert_int_equal(f->done_calls, 0);
    event(f, "MIGRATION", "{\"status\": \"cancelled\"}");
    json_decref(expect_cmd(f, "query-migrate", "{\"status\": \"cancelled\"}"));
    assert_int_equal(f->done_calls, 1);
    assert_int_equal(f->done_error, -ECANCELED);
}

static void test_refused_migrate_fails_the_job(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(hv_migrate_start(f->q, "tcp:10.213.7.12:40001", 1 << 20, &job_ops, f, &f->job),
                     0);
    json_decref(expect_cmd(f, "migrate-set-capabilities", "{}"));
    json_decref(expect_cmd(f, "migrate-set-parameters", "{}"));
    json_t *cmd = peer_read_cmd(f);
    char *id = json_dumps(json_object_get(cmd, "id"), JSON_ENCODE_ANY);
    char line[512];
    snprintf(line, sizeof(line),
             "{\"id\": %s, \"error\": {\"class\": \"GenericError\", \"desc\": \"Failed to "
             "connect to '10.213.7.12:40001': Connection refused\"}}\r\n",
             id ? id : "0");
    free(id);
    json_decref(cmd);
    peer_write(f, line);
    assert_int_equal(f->done_calls, 1);
    assert_int_equal(f->done_error, -EIO);
    assert_non_null(strstr(f->done_stats.error, "Connection refused"));
}

static void test_bad_arguments_and_malformed_answers(void **state)
{
    struct fixture *f = *state;
    struct hv_mig_job *j = NULL;
    assert_int_equal(hv_migrate_start(f->q, "unix:/tmp/x", 1, &job_ops, f, &j), -EINVAL);
    assert_int_equal(hv_migrate_start(f->q, "tcp:1.2.3.4:5", 0, &job_ops, f, &j), -EINVAL);
    assert_int_equal(hv_migrate_start(NULL, "tcp:1.2.3.4:5", 1, &job_ops, f, &j), -ENOTCONN);
    assert_null(j);
    struct hv_mig_stats s;
    json_t *arr = json_array();
    assert_int_equal(hv_migrate_parse_stats(arr, &s), -EINVAL);
    json_decref(arr);
    json_t *empty = json_object();
    assert_int_equal(hv_migrate_parse_stats(empty, &s), 0);
    assert_string_equal(s.status, "none");
    assert_int_equal(s.downtime_ms, -1);
    assert_int_equal(hv_migrate_progress_pct(&s), 0);
    json_decref(empty);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_completed_migration_reports_downtime, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_guest_reports_highest_throttle_and_dirty_rate,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_guest_reports_no_throttle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_end_event_during_a_progress_query_is_not_lost, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_completed_without_figures_is_asked_again, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failed_migration_carries_qemus_words, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_sends_migrate_cancel_and_ends_cancelled, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refused_migrate_fails_the_job, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments_and_malformed_answers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
