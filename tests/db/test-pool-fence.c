/*
 * Specification, on a real PostgreSQL, of the queries that decide what
 * happens to a silent host's pool desktops: marking them lost (with the
 * state they were in), counting a lost spare as holding its place, retiring
 * them only once their host is fenced (ending a session on one), leaving a
 * late host's alone, and putting them back when their host returns.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "db.h"
#include "pgtest-db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fx {
    char *conninfo;
    struct db *db;
    int64_t office, devs, alice, bob;
};

#define sql(fx, ...) assert_int_equal(pgt_execf((fx)->conninfo, __VA_ARGS__), 0)
#define qi(fx, ...) pgt_query_i64f((fx)->conninfo, __VA_ARGS__)

/* The text of one value (static buffer: compare before the next call). */
static const char *qs(struct fx *fx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *qs(struct fx *fx, const char *fmt, ...)
{
    static char out[256];
    char s[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s, sizeof(s), fmt, ap);
    va_end(ap);
    char *v = pgt_query_value(fx->conninfo, s);
    snprintf(out, sizeof(out), "%s", v ? v : "(null)");
    free(v);
    return out;
}

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    if (!fx || pgt_db_fresh(&fx->conninfo, &fx->db) < 0)
        return -1;
    *state = fx;
    /* live: heart-beating.  late: silent for 30 s, promised 60 s (not
     * fenced).  dead: fenced.  old: silent, promised nothing. */
    sql(fx, "INSERT INTO hosts (name, state, cpus, memory_mb, cpu_capacity, memory_capacity_mb,"
            " heartbeat_at, fence_deadline_s) VALUES"
            " ('live', 'online', 4, 8192, 4, 8192, now(), 60),"
            " ('late', 'online', 4, 8192, 4, 8192, now() - interval '30 seconds', 60),"
            " ('dead', 'fenced', 4, 8192, 4, 8192, now() - interval '5 minutes', 60),"
            " ('old', 'online', 4, 8192, 4, 8192, now() - interval '30 seconds', 0)");
    sql(fx, "INSERT INTO pools (name, assignment) VALUES ('office', 'floating'),"
            " ('devs', 'dedicated')");
    fx->office = qi(fx, "SELECT id FROM pools WHERE name = 'office'");
    fx->devs = qi(fx, "SELECT id FROM pools WHERE name = 'devs'");
    sql(fx, "INSERT INTO users (username) VALUES ('alice'), ('bob')");
    fx->alice = qi(fx, "SELECT id FROM users WHERE username = 'alice'");
    fx->bob = qi(fx, "SELECT id FROM users WHERE username = 'bob'");
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

/* A VM of @pool on @host in @vm_state (running). */
static int64_t vm(struct fx *fx, const char *name, int64_t pool, const char *host,
                  const char *vm_state)
{
    sql(fx,
        "INSERT INTO vms (name, pool_id, host_id, state, desired_power, actual_power, memory_mb,"
        " vcpus) VALUES ('%s', %lld, (SELECT id FROM hosts WHERE name = '%s'), '%s', 'running',"
        " 'running', 256, 1)",
        name, (long long)pool, host, vm_state);
    return qi(fx, "SELECT id FROM vms WHERE name = '%s'", name);
}

/* @user holds @vm in a live session in @sess_state (the VM in the same state). */
static int64_t session(struct fx *fx, int64_t user, int64_t pool, int64_t vm_id,
                       const char *sess_state)
{
    sql(fx,
        "UPDATE vms SET state = '%s', assigned_user_id = %lld, assigned_at = now()"
        " WHERE id = %lld",
        sess_state, (long long)user, (long long)vm_id);
    sql(fx,
        "INSERT INTO desktop_sessions (user_id, pool_id, vm_id, state, protocol)"
        " VALUES (%lld, %lld, %lld, '%s', 'vnc')",
        (long long)user, (long long)pool, (long long)vm_id, sess_state);
    return qi(fx, "SELECT id FROM desktop_sessions WHERE vm_id = %lld", (long long)vm_id);
}

static void test_lost_vms_remember_their_state_and_lost_spares_hold_their_place(void **state)
{
    struct fx *fx = *state;
    int64_t spare = vm(fx, "o-1", fx->office, "late", "ready");
    int64_t booting = vm(fx, "o-2", fx->office, "late", "booting");
    int64_t used = vm(fx, "o-3", fx->office, "late", "ready");
    session(fx, fx->alice, fx->office, used, "connected");
    vm(fx, "o-4", fx->office, "live", "ready");

    assert_int_equal(db_vms_mark_lost(fx->db, 10), 3); /* late's three */
    assert_string_equal(qs(fx, "SELECT string_agg(state || ':' || lost_state, ',' ORDER BY id)"
                               " FROM vms WHERE host_id = (SELECT id FROM hosts"
                               " WHERE name = 'late')"),
                        "lost:ready,lost:booting,lost:connected");
    assert_int_equal(db_vms_mark_lost(fx->db, 10), 0); /* once */

    struct db_pool_counts c;
    assert_int_equal(db_pool_counts(fx->db, fx->office, &c), 0);
    assert_int_equal(c.ready, 1); /* o-4 only: a lost VM is never handed out */
    assert_int_equal(c.held, 2);  /* o-1 and o-2 keep their places */
    assert_int_equal(c.other, 3); /* every lost VM */
    assert_int_equal(c.total, 4);
    (void)spare;
    (void)booting;
}

static void
test_lost_vms_of_a_late_host_are_not_retired_those_of_a_host_without_promise_are(void **state)
{
    struct fx *fx = *state;
    int64_t late = vm(fx, "o-1", fx->office, "late", "ready");
    int64_t old = vm(fx, "o-2", fx->office, "old", "ready");
    assert_int_equal(db_vms_mark_lost(fx->db, 10), 2);

    struct db_vm_brief *b = NULL;
    size_t n = 0;
    assert_int_equal(db_pool_retire_broken(fx->db, fx->office, &b, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(b[0].id, old); /* an older hostd promises no fencing: as before */
    free(b);
    assert_string_equal(
        qs(fx, "SELECT state || '/' || desired_power FROM vms WHERE id = %lld", (long long)late),
        "lost/running");

    struct db_pool_fenced_vm *f = NULL;
    assert_int_equal(db_pool_retire_fenced(fx->db, fx->office, &f, &n), 0);
    assert_int_equal(n, 0); /* late is not fenced: never rebuilt */
    free(f);
}

static void test_fenced_hosts_pool_vms_are_retired_and_their_sessions_end(void **state)
{
    struct fx *fx = *state;
    int64_t spare = vm(fx, "o-1", fx->office, "dead", "ready");
    int64_t used = vm(fx, "o-2", fx->office, "dead", "ready");
    int64_t sid = session(fx, fx->alice, fx->office, used, "connected");
    int64_t other_pool = vm(fx, "d-1", fx->devs, "dead", "ready");
    int64_t on_live = vm(fx, "o-3", fx->office, "live", "ready");
    int64_t on_late = vm(fx, "o-4", fx->office, "late", "ready");
    sql(fx, "INSERT INTO vms (name, host_id, state, desired_power, memory_mb, vcpus)"
            " VALUES ('plain', (SELECT id FROM hosts WHERE name = 'dead'), 'ready', 'running',"
            " 256, 1)");
    assert_int_equal(db_vms_mark_lost(fx->db, 10), 5);

    struct db_pool_fenced_vm *f = NULL;
    size_t n = 0;
    assert_int_equal(db_pool_retire_fenced(fx->db, fx->office, &f, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(f[0].id, spare);
    assert_string_equal(f[0].was, "ready");
    assert_string_equal(f[0].host, "dead");
    assert_int_equal(f[0].session_id, 0);
    assert_int_equal(f[1].id, used);
    assert_string_equal(f[1].was, "connected");
    assert_int_equal(f[1].session_id, sid);
    free(f);

    assert_string_equal(qs(fx,
                           "SELECT string_agg(state || '/' || desired_power || '/'"
                           " || coalesce(assigned_user_id::text, '-') || '/' || last_error,"
                           " ',' ORDER BY id) FROM vms WHERE id IN (%lld, %lld)",
                           (long long)spare, (long long)used),
                        "deleting/deleted/-/host dead was fenced,"
                        "deleting/deleted/-/host dead was fenced");
    assert_string_equal(qs(fx,
                           "SELECT state || '/' || end_reason || '/' || (ended_at IS NOT NULL)"
                           " FROM desktop_sessions WHERE id = %lld",
                           (long long)sid),
                        "ended/host fenced/true");
    /* the VM stays on its host: that host's hostd deletes it when it returns */
    assert_int_equal(qi(fx,
                        "SELECT count(*) FROM vms WHERE id = %lld AND host_id ="
                        " (SELECT id FROM hosts WHERE name = 'dead')",
                        (long long)used),
                     1);
    /* other pools, VMs outside pools, other hosts: untouched */
    assert_string_equal(
        qs(fx,
           "SELECT string_agg(state, ',' ORDER BY id) FROM vms WHERE id IN (%lld, %lld, %lld)"
           " OR name = 'plain'",
           (long long)other_pool, (long long)on_live, (long long)on_late),
        "lost,ready,lost,lost");
    struct db_pool_counts c;
    assert_int_equal(db_pool_counts(fx->db, fx->office, &c), 0);
    assert_int_equal(c.total, 2); /* o-3 and the late o-4 */
    assert_int_equal(c.held, 1);

    /* again: nothing more (safe to repeat after a poold killed mid-way) */
    assert_int_equal(db_pool_retire_fenced(fx->db, fx->office, &f, &n), 0);
    assert_int_equal(n, 0);
    free(f);
}

static void test_a_host_back_before_its_fence_keeps_its_vms(void **state)
{
    struct fx *fx = *state;
    sql(fx, "UPDATE hosts SET state = 'fenced' WHERE name = 'late'");
    int64_t spare = vm(fx, "o-1", fx->office, "late", "ready");
    bool was_fenced = false;
    int64_t late = qi(fx, "SELECT id FROM hosts WHERE name = 'late'");
    assert_int_equal(db_host_heartbeat_unfence(fx->db, late, &was_fenced), 0);
    assert_true(was_fenced);
    struct db_pool_fenced_vm *f = NULL;
    size_t n = 0;
    assert_int_equal(db_pool_retire_fenced(fx->db, fx->office, &f, &n), 0);
    assert_int_equal(n, 0);
    free(f);
    assert_string_equal(qs(fx, "SELECT desired_power FROM vms WHERE id = %lld", (long long)spare),
                        "running");
}

static void test_found_vms_go_back_to_what_they_were(void **state)
{
    struct fx *fx = *state;
    int64_t spare = vm(fx, "o-1", fx->office, "late", "ready");
    int64_t off = vm(fx, "o-2", fx->office, "late", "ready");
    int64_t booting = vm(fx, "o-3", fx->office, "late", "booting");
    int64_t live = vm(fx, "o-4", fx->office, "late", "ready");
    int64_t live_sid = session(fx, fx->alice, fx->office, live, "connected");
    int64_t ended = vm(fx, "o-5", fx->office, "late", "ready");
    int64_t ended_sid = session(fx, fx->bob, fx->office, ended, "connected");
    int64_t mine = vm(fx, "d-1", fx->devs, "late", "ready");
    int64_t mine_sid = session(fx, fx->bob, fx->devs, mine, "connected");
    assert_int_equal(db_vms_mark_lost(fx->db, 10), 6);
    /* meanwhile: alice disconnected, bob logged off of both */
    sql(fx, "UPDATE desktop_sessions SET state = 'disconnected' WHERE id = %lld",
        (long long)live_sid);
    assert_int_equal(db_session_logoff(fx->db, ended_sid, "logoff"), 0);
    assert_int_equal(db_session_logoff(fx->db, mine_sid, "logoff"), 0);

    assert_int_equal(db_vm_found(fx->db, spare, true), 0);
    assert_int_equal(db_vm_found(fx->db, off, false), 0);
    assert_int_equal(db_vm_found(fx->db, booting, true), 0);
    assert_int_equal(db_vm_found(fx->db, live, true), 0);
    assert_int_equal(db_vm_found(fx->db, ended, true), 0);
    assert_int_equal(db_vm_found(fx->db, mine, true), 0);
    assert_string_equal(
        qs(fx, "SELECT string_agg(name || '=' || state || '/' || coalesce(assigned_user_id::text,"
               " '-') || '/' || coalesce(lost_state, '-'), ',' ORDER BY id) FROM vms"),
        "o-1=ready/-/-,o-2=stopped/-/-,o-3=ready/-/-,o-4=disconnected/1/-,"
        "o-5=logging_off/-/-,d-1=assigned/2/-");
    assert_int_equal(fx->alice, 1);
    assert_int_equal(fx->bob, 2);
    /* found once; a VM that is not lost is not touched */
    assert_int_equal(db_vm_found(fx->db, spare, true), -ENOENT);
    assert_int_equal(db_vm_found(fx->db, 999999, true), -ENOENT);
}

static void test_a_person_whose_desktop_is_on_a_late_host_is_asked_to_retry_not_moved(void **state)
{
    struct fx *fx = *state;
    int64_t late = vm(fx, "o-1", fx->office, "late", "ready");
    int64_t sid = session(fx, fx->alice, fx->office, late, "connected");
    int64_t old = vm(fx, "o-2", fx->office, "old", "ready");
    int64_t old_sid = session(fx, fx->bob, fx->office, old, "connected");
    vm(fx, "o-3", fx->office, "live", "ready");
    assert_int_equal(db_vms_mark_lost(fx->db, 10), 2);

    struct db_assignment a = {0};
    assert_int_equal(db_session_assign(fx->db, fx->alice, fx->office, DB_PROTO_VNC, NULL, &a),
                     -EHOSTUNREACH);
    char want[64];
    snprintf(want, sizeof(want), "connected/%lld", (long long)late);
    assert_string_equal(qs(fx, "SELECT state || '/' || vm_id FROM desktop_sessions WHERE id = %lld",
                           (long long)sid),
                        want);
    assert_int_equal(qi(fx, "SELECT assigned_user_id FROM vms WHERE id = %lld", (long long)late),
                     fx->alice);
    /* a host that promised nothing: as before, the session ends, a new VM */
    assert_int_equal(db_session_assign(fx->db, fx->bob, fx->office, DB_PROTO_VNC, NULL, &a), 0);
    assert_false(a.reconnect);
    assert_string_equal(qs(fx, "SELECT name FROM vms WHERE id = %lld", (long long)a.vm_id), "o-3");
    assert_string_equal(
        qs(fx, "SELECT end_reason FROM desktop_sessions WHERE id = %lld", (long long)old_sid),
        "desktop lost");
    /* the late host fenced and its VMs retired: alice's session ended, so
     * she is not held any more (no spare left here: -EAGAIN, not the dead VM) */
    sql(fx, "UPDATE hosts SET state = 'fenced' WHERE name = 'late'");
    struct db_pool_fenced_vm *f = NULL;
    size_t n = 0;
    assert_int_equal(db_pool_retire_fenced(fx->db, fx->office, &f, &n), 0);
    assert_int_equal(n, 1);
    free(f);
    assert_int_equal(db_session_assign(fx->db, fx->alice, fx->office, DB_PROTO_VNC, NULL, &a),
                     -EAGAIN);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_lost_vms_remember_their_state_and_lost_spares_hold_their_place),
        T(test_lost_vms_of_a_late_host_are_not_retired_those_of_a_host_without_promise_are),
        T(test_fenced_hosts_pool_vms_are_retired_and_their_sessions_end),
        T(test_a_host_back_before_its_fence_keeps_its_vms),
        T(test_found_vms_go_back_to_what_they_were),
        T(test_a_person_whose_desktop_is_on_a_late_host_is_asked_to_retry_not_moved),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
