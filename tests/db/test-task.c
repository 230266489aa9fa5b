/* Specification of tasks, the audit log and wake-ups on a real PostgreSQL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "db.h"
#include "pgtest-db.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct fx {
    char *conninfo;
    struct db *db;
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    if (!fx || pgt_db_fresh(&fx->conninfo, &fx->db) < 0)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    db_close(fx->db);
    pgt_db_drop(fx->conninfo);
    free(fx);
    return 0;
}

static const char *const kinds[] = {"image.import", "vm.snapshot", NULL};

static void test_task_runs_through_queued_running_succeeded(void **state)
{
    struct fx *fx = *state;
    json_t *params = json_pack("{s:s}", "path", "/tmp/x.qcow2");
    int64_t id = 0;
    assert_int_equal(
        db_task_create(fx->db, &(struct db_task_new){.kind = "image.import", .params = params},
                       &id),
        0);
    json_decref(params);
    assert_true(id > 0);

    struct db_task *t = NULL;
    assert_int_equal(db_task_claim(fx->db, 0, kinds, "poold@test", &t), 1);
    assert_int_equal(t->id, id);
    assert_string_equal(t->state, "running");
    assert_string_equal(t->claimed_by, "poold@test");
    assert_string_equal(json_string_value(json_object_get(t->params, "path")), "/tmp/x.qcow2");
    assert_int_equal(t->attempts, 1);
    db_task_free(t);

    /* nothing else to claim */
    t = NULL;
    assert_int_equal(db_task_claim(fx->db, 0, kinds, "poold@test", &t), 0);
    assert_null(t);

    assert_int_equal(db_task_progress(fx->db, id, 150, "copying"), 0);
    assert_int_equal(db_task_get(fx->db, id, &t), 0);
    assert_int_equal(t->progress, 100);
    assert_string_equal(t->message, "copying");
    db_task_free(t);
    assert_int_equal(db_task_progress(fx->db, id, -3, NULL), 0);
    assert_int_equal(db_task_get(fx->db, id, &t), 0);
    assert_int_equal(t->progress, 0);
    assert_string_equal(t->message, "copying");
    db_task_free(t);

    json_t *result = json_pack("{s:i}", "version", 3);
    assert_int_equal(db_task_finish(fx->db, id, NULL, result), 0);
    json_decref(result);
    assert_int_equal(db_task_get(fx->db, id, &t), 0);
    assert_string_equal(t->state, "succeeded");
    assert_int_equal(t->progress, 100);
    assert_int_equal(json_integer_value(json_object_get(t->result, "version")), 3);
    assert_true(t->finished_at_us >= t->started_at_us && t->started_at_us > 0);
    db_task_free(t);

    /* finishing twice or reporting on a finished task is refused */
    assert_int_equal(db_task_finish(fx->db, id, "late", NULL), -ENOENT);
    assert_int_equal(db_task_progress(fx->db, id, 5, NULL), -ENOENT);
    assert_int_equal(db_task_get(fx->db, id + 1000, &t), -ENOENT);
}

static void test_failed_task_keeps_its_error_and_progress(void **state)
{
    struct fx *fx = *state;
    int64_t id = 0;
    struct db_task *t = NULL;
    assert_int_equal(db_task_create(fx->db, &(struct db_task_new){.kind = "vm.snapshot"}, &id), 0);
    assert_int_equal(db_task_claim(fx->db, 0, kinds, "hostd@a", &t), 1);
    db_task_free(t);
    assert_int_equal(db_task_progress(fx->db, id, 40, NULL), 0);
    assert_int_equal(db_task_finish(fx->db, id, "disk full", NULL), 0);
    assert_int_equal(db_task_get(fx->db, id, &t), 0);
    assert_string_equal(t->state, "failed");
    assert_string_equal(t->error, "disk full");
    assert_int_equal(t->progress, 40);
    db_task_free(t);
}

static void test_host_bound_task_is_claimed_only_by_that_host(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(pgt_exec(fx->conninfo, "INSERT INTO hosts (id, name) VALUES (1, 'a'), (2, 'b')"),
                     0);
    int64_t id = 0;
    struct db_task *t = NULL;
    assert_int_equal(
        db_task_create(fx->db, &(struct db_task_new){.kind = "vm.snapshot", .host_id = 2}, &id), 0);
    assert_int_equal(db_task_claim(fx->db, 0, kinds, "poold", &t), 0);
    assert_int_equal(db_task_claim(fx->db, 1, kinds, "hostd@a", &t), 0);
    const char *const other[] = {"image.import", NULL};
    assert_int_equal(db_task_claim(fx->db, 2, other, "hostd@b", &t), 0);
    assert_int_equal(db_task_claim(fx->db, 2, kinds, "hostd@b", &t), 1);
    assert_int_equal(t->host_id, 2);
    db_task_free(t);
}

struct claimer {
    const char *conninfo;
    int claimed;
    int64_t ids[64];
    int rc;
};

static void *claim_all(void *arg)
{
    struct claimer *c = arg;
    struct db *db = NULL;
    struct atr_error err = {0};
    c->rc = db_open(c->conninfo, 10, "claimer", &db, &err);
    while (c->rc == 0) {
        struct db_task *t = NULL;
        int r = db_task_claim(db, 0, kinds, "racer", &t);
        if (r <= 0) {
            c->rc = r;
            break;
        }
        if (c->claimed < 64)
            c->ids[c->claimed] = t->id;
        c->claimed++;
        db_task_free(t);
    }
    db_close(db);
    return NULL;
}

static void test_two_claimers_never_get_the_same_task(void **state)
{
    struct fx *fx = *state;
    enum { TASKS = 60 };
    for (int i = 0; i < TASKS; i++) {
        int64_t id;
        assert_int_equal(db_task_create(fx->db, &(struct db_task_new){.kind = "image.import"}, &id),
                         0);
    }
    struct claimer a = {.conninfo = fx->conninfo}, b = {.conninfo = fx->conninfo};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, claim_all, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, claim_all, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(a.rc, 0);
    assert_int_equal(b.rc, 0);
    assert_int_equal(a.claimed + b.claimed, TASKS);
    for (int i = 0; i < a.claimed; i++)
        for (int j = 0; j < b.claimed; j++)
            assert_true(a.ids[i] != b.ids[j]);
    char *n = pgt_query_value(fx->conninfo,
                              "SELECT count(*) FROM tasks WHERE state = 'running' AND attempts = 1");
    assert_string_equal(n, "60");
    free(n);
}

static void test_task_of_a_dead_worker_is_requeued(void **state)
{
    struct fx *fx = *state;
    int64_t id = 0;
    struct db_task *t = NULL;
    assert_int_equal(db_task_create(fx->db, &(struct db_task_new){.kind = "image.import"}, &id), 0);
    assert_int_equal(db_task_claim(fx->db, 0, kinds, "poold@dead", &t), 1);
    db_task_free(t);
    assert_int_equal(db_task_requeue_stale(fx->db, 30), 0); /* still fresh */
    assert_int_equal(pgt_exec(fx->conninfo,
                              "UPDATE tasks SET heartbeat_at = now() - interval '1 minute'"),
                     0);
    assert_int_equal(db_task_requeue_stale(fx->db, 30), 1);
    assert_int_equal(db_task_claim(fx->db, 0, kinds, "poold@new", &t), 1);
    assert_int_equal(t->id, id);
    assert_int_equal(t->attempts, 2);
    db_task_free(t);
    assert_int_equal(db_task_cancel(fx->db, id), 0);
    assert_int_equal(db_task_cancel(fx->db, id), -ENOENT);
    assert_int_equal(db_task_finish(fx->db, id, NULL, NULL), -ENOENT);
}

static void test_heartbeat_keeps_a_live_workers_task_and_attempts_are_bounded(void **state)
{
    struct fx *fx = *state;
    int64_t id = 0;
    struct db_task *t = NULL;
    assert_int_equal(db_task_create(fx->db, &(struct db_task_new){.kind = "image.import"}, &id), 0);
    for (int i = 1; i <= DB_TASK_MAX_ATTEMPTS; i++) {
        assert_int_equal(db_task_claim(fx->db, 0, kinds, "worker", &t), 1);
        assert_int_equal(t->attempts, i);
        t = db_task_free(t);
        assert_int_equal(pgt_exec(fx->conninfo,
                                  "UPDATE tasks SET heartbeat_at = now() - interval '1 minute'"),
                         0);
        /* a worker that is alive heart-beats what it holds, progress or not */
        assert_int_equal(db_task_heartbeat(fx->db, "worker"), 1);
        assert_int_equal(db_task_heartbeat(fx->db, "someone else"), 0);
        assert_int_equal(db_task_requeue_stale(fx->db, 30), 0);
        assert_int_equal(pgt_exec(fx->conninfo,
                                  "UPDATE tasks SET heartbeat_at = now() - interval '1 minute'"),
                         0);
        assert_int_equal(db_task_requeue_stale(fx->db, 30), 1);
    }
    /* claimed DB_TASK_MAX_ATTEMPTS times, its worker died each time: failed */
    assert_int_equal(db_task_claim(fx->db, 0, kinds, "worker", &t), 0);
    assert_int_equal(db_task_get(fx->db, id, &t), 0);
    assert_string_equal(t->state, "failed");
    assert_non_null(strstr(t->error, "stopped 5 times"));
    db_task_free(t);
}

static void test_new_hostd_requeues_what_its_hosts_old_hostd_held(void **state)
{
    struct fx *fx = *state;
    static const char *const hk[] = {"vm.refresh", NULL};
    int64_t mine = 0, other = 0;
    struct db_task *t = NULL;
    assert_int_equal(pgt_exec(fx->conninfo, "INSERT INTO hosts (id, name) VALUES (1, 'a'), (2, 'b')"),
                     0);
    assert_int_equal(db_task_create(fx->db, &(struct db_task_new){.kind = "vm.refresh", .host_id = 1},
                                    &mine),
                     0);
    assert_int_equal(
        db_task_create(fx->db, &(struct db_task_new){.kind = "vm.refresh", .host_id = 2}, &other),
        0);
    assert_int_equal(db_task_claim(fx->db, 1, hk, "hostd:a:10:1", &t), 1);
    t = db_task_free(t);
    assert_int_equal(db_task_claim(fx->db, 2, hk, "hostd:b:11:1", &t), 1);
    t = db_task_free(t);
    /* host a's hostd restarted: its old claim goes back, host b's stays */
    assert_int_equal(db_task_requeue_host(fx->db, 1, "hostd:a:12:2"), 1);
    assert_int_equal(db_task_requeue_host(fx->db, 1, "hostd:a:12:2"), 0);
    assert_int_equal(db_task_claim(fx->db, 1, hk, "hostd:a:12:2", &t), 1);
    assert_int_equal(t->id, mine);
    assert_int_equal(t->attempts, 2);
    t = db_task_free(t);
    assert_int_equal(db_task_requeue_host(fx->db, 1, "hostd:a:12:2"), 0); /* its own: kept */
    assert_int_equal(db_task_get(fx->db, other, &t), 0);
    assert_string_equal(t->state, "running");
    db_task_free(t);
}

static void test_bad_task_kind_is_rejected_by_the_schema(void **state)
{
    struct fx *fx = *state;
    int64_t id = 77;
    assert_int_equal(
        db_task_create(fx->db, &(struct db_task_new){.kind = "'; DROP TABLE tasks; --"}, &id),
        -EINVAL);
    assert_int_equal(id, 77);
    char *v = pgt_query_value(fx->conninfo, "SELECT to_regclass('tasks') IS NOT NULL");
    assert_string_equal(v, "t");
    free(v);
}

static void test_queued_task_wakes_a_listener(void **state)
{
    struct fx *fx = *state;
    struct db *listener = NULL;
    struct atr_error err = {0};
    assert_int_equal(db_open(fx->conninfo, 10, "listener", &listener, &err), 0);
    assert_int_equal(db_listen(listener, DB_CHANNEL_TASK), 0);
    assert_int_equal(db_wait(listener, 50), 0); /* nothing yet */

    int64_t id = 0;
    assert_int_equal(db_task_create(fx->db, &(struct db_task_new){.kind = "image.import"}, &id), 0);
    int64_t t0 = atr_now_mono_ms();
    assert_int_equal(db_wait(listener, 5000), 1);
    assert_true(atr_now_mono_ms() - t0 < 2000);
    char *ch = NULL, *payload = NULL;
    assert_int_equal(db_notify_next(listener, &ch, &payload), 1);
    assert_string_equal(ch, "atrium_task");
    char want[40];
    snprintf(want, sizeof(want), "%lld:", (long long)id);
    assert_string_equal(payload, want);
    free(ch);
    free(payload);
    assert_int_equal(db_notify_next(listener, &ch, &payload), 0);
    db_close(listener);
}

static void test_audit_entry_is_stored_with_its_detail(void **state)
{
    struct fx *fx = *state;
    json_t *detail = json_pack("{s:s}", "reason", "bad password");
    assert_int_equal(db_audit_add(fx->db, &(struct db_audit_entry){.actor = "alice",
                                                                  .client_addr = "192.0.2.7",
                                                                  .action = "login",
                                                                  .outcome = "failure",
                                                                  .detail = detail}),
                     0);
    json_decref(detail);
    char *v = pgt_query_value(fx->conninfo,
                              "SELECT actor || ' ' || host(client_addr) || ' ' || action || ' ' ||"
                              " outcome || ' ' || (detail->>'reason') FROM audit_log");
    assert_string_equal(v, "alice 192.0.2.7 login failure bad password");
    free(v);
    /* a malformed address is refused, not stored half */
    assert_int_equal(db_audit_add(fx->db, &(struct db_audit_entry){.client_addr = "not-an-ip",
                                                                  .action = "login",
                                                                  .outcome = "failure"}),
                     -EINVAL);
    assert_int_equal(db_audit_add(fx->db, &(struct db_audit_entry){.action = "login"}), -EINVAL);
}

static void test_leader_lock_is_held_by_one_session(void **state)
{
    struct fx *fx = *state;
    struct db *other = NULL;
    struct atr_error err = {0};
    assert_int_equal(db_open(fx->conninfo, 10, "other", &other, &err), 0);
    bool got = false;
    assert_int_equal(db_try_lock(fx->db, DB_LOCK_POOLD_LEADER, &got), 0);
    assert_true(got);
    assert_int_equal(db_try_lock(other, DB_LOCK_POOLD_LEADER, &got), 0);
    assert_false(got);
    /* The leader's connection ends: the lease passes on as soon as the
     * server has ended that backend, which happens after PQfinish returns;
     * a standby retries, and must get it well within the 5 s promised. */
    fx->db = db_close(fx->db);
    int64_t deadline = atr_now_mono_ms() + 5000;
    do {
        assert_int_equal(db_try_lock(other, DB_LOCK_POOLD_LEADER, &got), 0);
        if (!got)
            nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    } while (!got && atr_now_mono_ms() < deadline);
    assert_true(got);
    db_close(other);
    assert_int_equal(db_open(fx->conninfo, 10, "test", &fx->db, &err), 0);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_task_runs_through_queued_running_succeeded),
        T(test_failed_task_keeps_its_error_and_progress),
        T(test_host_bound_task_is_claimed_only_by_that_host),
        T(test_two_claimers_never_get_the_same_task),
        T(test_task_of_a_dead_worker_is_requeued),
        T(test_heartbeat_keeps_a_live_workers_task_and_attempts_are_bounded),
        T(test_new_hostd_requeues_what_its_hosts_old_hostd_held),
        T(test_bad_task_kind_is_rejected_by_the_schema),
        T(test_queued_task_wakes_a_listener),
        T(test_audit_entry_is_stored_with_its_detail),
        T(test_leader_lock_is_held_by_one_session),
    };
    return cmocka_run_group_tests_name("db.task", tests, NULL, NULL);
}
