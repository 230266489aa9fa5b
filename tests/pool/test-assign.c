/*
 * Specification of desktop assignment (pool_assign) on a real PostgreSQL.
 * Ready VMs are rows made directly in the test database: the point here is
 * the atomicity of the assignment, not provisioning.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pgtest-db.h"
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fx {
    char *conninfo;
    struct db *db;
    int64_t pool, dedicated;
};

static char *q(struct fx *fx, const char *sql)
{
    return pgt_query_value(fx->conninfo, sql);
}

#define qi(fx, ...) pgt_query_i64f((fx)->conninfo, __VA_ARGS__)

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    struct atr_error err = {0};
    if (!fx || pgt_db_fresh(&fx->conninfo, &fx->db) < 0)
        return -1;
    struct db_pool p;
    pool_defaults(&p);
    snprintf(p.name, sizeof(p.name), "office");
    p.max_size = 100;
    p.protocols = DB_PROTO_SPICE | DB_PROTO_BROWSER;
    if (pool_create(fx->db, &p, &fx->pool, &err) < 0)
        return -1;
    snprintf(p.name, sizeof(p.name), "devs");
    snprintf(p.assignment, sizeof(p.assignment), "dedicated");
    p.protocols = DB_PROTO_ALL;
    if (pool_create(fx->db, &p, &fx->dedicated, &err) < 0)
        return -1;
    if (pgt_exec(fx->conninfo, "INSERT INTO users (username) SELECT 'u' || g"
                               " FROM generate_series(1, 500) g") < 0)
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

/* @count ready VMs in @pool named <prefix>-<n>. */
static void make_ready_vms(struct fx *fx, int64_t pool, const char *prefix, int count)
{
    char sql[300];
    snprintf(sql, sizeof(sql),
             "INSERT INTO vms (name, pool_id, state, actual_power) SELECT '%s-' || g, %lld,"
             " 'ready', 'running' FROM generate_series(1, %d) g",
             prefix, (long long)pool, count);
    assert_int_equal(pgt_exec(fx->conninfo, sql), 0);
}

static int64_t user_id(struct fx *fx, int n)
{
    return qi(fx, "SELECT id FROM users WHERE username = 'u%d'", n);
}

struct racer {
    const char *conninfo;
    int64_t user, pool;
    pthread_barrier_t *go;
    int rc;
    struct db_assignment a;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct db *db = NULL;
    struct atr_error err = {0};
    int o = db_open(r->conninfo, 30, "racer", &db, &err);
    pthread_barrier_wait(r->go);
    r->rc = o < 0 ? o : pool_assign(db, r->user, r->pool, "spice", "192.0.2.1", &r->a);
    db_close(db);
    return NULL;
}

static void test_500_people_and_50_ready_vms_give_exactly_50_distinct_desktops(void **state)
{
    struct fx *fx = *state;
    enum { PEOPLE = 500, VMS = 50 };
    make_ready_vms(fx, fx->pool, "office", VMS);
    int64_t first_user = user_id(fx, 1);
    static struct racer r[PEOPLE];
    pthread_t t[PEOPLE];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, PEOPLE);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (int i = 0; i < PEOPLE; i++) {
        r[i] = (struct racer){.conninfo = fx->conninfo, .user = first_user + i, .pool = fx->pool,
                              .go = &go};
        assert_int_equal(pthread_create(&t[i], &attr, race, &r[i]), 0);
    }
    int assigned = 0, busy = 0, other = 0;
    for (int i = 0; i < PEOPLE; i++) {
        pthread_join(t[i], NULL);
        if (r[i].rc == 0)
            assigned++;
        else if (r[i].rc == -EAGAIN)
            busy++;
        else
            other++;
    }
    pthread_barrier_destroy(&go);
    pthread_attr_destroy(&attr);
    assert_int_equal(other, 0);
    assert_int_equal(assigned, VMS);
    assert_int_equal(busy, PEOPLE - VMS);
    for (int i = 0; i < PEOPLE; i++)
        for (int j = i + 1; j < PEOPLE; j++)
            if (r[i].rc == 0 && r[j].rc == 0)
                assert_true(r[i].a.vm_id != r[j].a.vm_id);
    /* the database agrees: 50 VMs, each with one owner and one live session */
    assert_int_equal(qi(fx, "SELECT count(DISTINCT assigned_user_id) FROM vms"
                            " WHERE state = 'assigned'"),
                     VMS);
    assert_int_equal(qi(fx, "SELECT count(*) FROM desktop_sessions WHERE state = 'assigned'"), VMS);
    assert_int_equal(qi(fx, "SELECT count(DISTINCT vm_id) FROM desktop_sessions"), VMS);
}

static void test_same_person_connecting_twice_gets_the_same_vm(void **state)
{
    struct fx *fx = *state;
    make_ready_vms(fx, fx->pool, "office", 3);
    struct db_assignment a = {0}, b = {0};
    int64_t u = user_id(fx, 7);
    assert_int_equal(pool_assign(fx->db, u, fx->pool, "spice", NULL, &a), 0);
    assert_false(a.reconnect);
    assert_int_equal(pool_assign(fx->db, u, fx->pool, "browser", NULL, &b), 0);
    assert_true(b.reconnect);
    assert_int_equal(a.vm_id, b.vm_id);
    assert_int_equal(a.session_id, b.session_id);
    assert_int_equal(qi(fx, "SELECT count(*) FROM vms WHERE state = 'ready'"), 2);
}

static void test_same_person_racing_with_twenty_tabs_gets_one_vm(void **state)
{
    struct fx *fx = *state;
    enum { TABS = 20 };
    make_ready_vms(fx, fx->pool, "office", 10);
    int64_t u = user_id(fx, 9);
    struct racer r[TABS];
    pthread_t t[TABS];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, TABS);
    for (int i = 0; i < TABS; i++) {
        r[i] = (struct racer){.conninfo = fx->conninfo, .user = u, .pool = fx->pool, .go = &go};
        assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
    }
    for (int i = 0; i < TABS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(r[i].rc, 0);
        assert_int_equal(r[i].a.vm_id, r[0].a.vm_id);
    }
    pthread_barrier_destroy(&go);
    assert_int_equal(qi(fx, "SELECT count(*) FROM vms WHERE assigned_user_id IS NOT NULL"), 1);
    assert_int_equal(qi(fx, "SELECT count(*) FROM vms WHERE state = 'ready'"), 9);
}

static void test_no_ready_vm_is_a_retry_later_and_nudges_provisioning(void **state)
{
    struct fx *fx = *state;
    struct db *listener = NULL;
    struct atr_error err = {0};
    assert_int_equal(db_open(fx->conninfo, 10, "poold", &listener, &err), 0);
    assert_int_equal(db_listen(listener, DB_CHANNEL_POOL), 0);
    struct db_assignment a = {0};
    assert_int_equal(pool_assign(fx->db, user_id(fx, 1), fx->pool, "spice", NULL, &a), -EAGAIN);
    assert_int_equal(a.vm_id, 0);
    assert_int_equal(db_wait(listener, 5000), 1);
    char *ch, *payload;
    assert_int_equal(db_notify_next(listener, &ch, &payload), 1);
    char want[24];
    snprintf(want, sizeof(want), "%lld", (long long)fx->pool);
    assert_string_equal(ch, "atrium_pool");
    assert_string_equal(payload, want);
    free(ch);
    free(payload);
    db_close(listener);
    assert_int_equal(qi(fx, "SELECT count(*) FROM desktop_sessions"), 0);
}

static void test_pool_rules_refuse_bad_requests(void **state)
{
    struct fx *fx = *state;
    make_ready_vms(fx, fx->pool, "office", 1);
    struct db_assignment a = {0};
    int64_t u = user_id(fx, 1);
    assert_int_equal(pool_assign(fx->db, u, fx->pool, "rdp", NULL, &a), -EPROTONOSUPPORT);
    assert_int_equal(pool_assign(fx->db, u, fx->pool, "telnet", NULL, &a), -EPROTONOSUPPORT);
    assert_int_equal(pool_assign(fx->db, u, fx->pool + 1000, "spice", NULL, &a), -ENOENT);
    assert_int_equal(pool_assign(fx->db, u, fx->pool, "spice", "not-an-address", &a), -EINVAL);
    assert_int_equal(pgt_exec(fx->conninfo, "UPDATE pools SET enabled = false"), 0);
    assert_int_equal(pool_assign(fx->db, u, fx->pool, "spice", NULL, &a), -EPERM);
    /* nothing was handed out by any of these */
    assert_int_equal(qi(fx, "SELECT count(*) FROM vms WHERE state = 'ready'"), 1);
    assert_int_equal(qi(fx, "SELECT count(*) FROM desktop_sessions"), 0);
}

static void test_spare_an_admin_stops_or_deletes_is_never_handed_out(void **state)
{
    struct fx *fx = *state;
    make_ready_vms(fx, fx->pool, "office", 2);
    assert_int_equal(pgt_exec(fx->conninfo, "UPDATE vms SET desired_power = 'stopped'"
                                            " WHERE name = 'office-1'"),
                     0);
    assert_int_equal(pgt_exec(fx->conninfo, "UPDATE vms SET desired_power = 'deleted'"
                                            " WHERE name = 'office-2'"),
                     0);
    struct db_assignment a = {0};
    assert_int_equal(pool_assign(fx->db, user_id(fx, 1), fx->pool, "spice", NULL, &a), -EAGAIN);
}

static void test_session_moves_through_connected_disconnected_and_logoff(void **state)
{
    struct fx *fx = *state;
    make_ready_vms(fx, fx->pool, "office", 2);
    struct db_assignment a = {0};
    int64_t u = user_id(fx, 3);
    assert_int_equal(pool_assign(fx->db, u, fx->pool, "spice", "192.0.2.5", &a), 0);
    struct db_session s;
    assert_int_equal(pool_session_connected(fx->db, a.session_id, "spice", "192.0.2.6"), 0);
    assert_int_equal(db_session_get(fx->db, a.session_id, &s), 0);
    assert_string_equal(s.state, "connected");
    assert_string_equal(s.client_addr, "192.0.2.6");
    assert_true(s.connected_at_us > 0);
    assert_int_equal(pool_session_disconnected(fx->db, a.session_id), 0);
    char sql[120];
    snprintf(sql, sizeof(sql), "SELECT state FROM vms WHERE id = %lld", (long long)a.vm_id);
    char *st = q(fx, sql);
    assert_string_equal(st, "disconnected");
    free(st);
    /* reconnect after a drop: the same session and VM */
    struct db_assignment b = {0};
    assert_int_equal(pool_assign(fx->db, u, fx->pool, "spice", NULL, &b), 0);
    assert_int_equal(b.session_id, a.session_id);
    assert_int_equal(pool_session_connected(fx->db, a.session_id, "browser", NULL), 0);

    /* floating logoff: the VM leaves the person and waits for its refresh */
    assert_int_equal(pool_session_logoff(fx->db, a.session_id, "user logoff"), 0);
    assert_int_equal(pool_session_logoff(fx->db, a.session_id, "again"), -ENOENT);
    assert_int_equal(pool_session_connected(fx->db, a.session_id, "spice", NULL), -ENOENT);
    assert_int_equal(db_session_get(fx->db, a.session_id, &s), 0);
    assert_string_equal(s.state, "ended");
    assert_string_equal(s.end_reason, "user logoff");
    st = q(fx, sql);
    assert_string_equal(st, "logging_off");
    free(st);
    snprintf(sql, sizeof(sql), "SELECT assigned_user_id IS NULL FROM vms WHERE id = %lld",
             (long long)a.vm_id);
    st = q(fx, sql);
    assert_string_equal(st, "t");
    free(st);
    /* the next session of that person is on another, fresh VM */
    assert_int_equal(pool_assign(fx->db, u, fx->pool, "spice", NULL, &b), 0);
    assert_true(b.vm_id != a.vm_id);
    assert_false(b.reconnect);
}

static void test_dedicated_pool_gives_a_person_back_their_own_vm(void **state)
{
    struct fx *fx = *state;
    make_ready_vms(fx, fx->dedicated, "devs", 2);
    struct db_assignment a = {0}, b = {0}, c = {0};
    int64_t alice = user_id(fx, 1), bob = user_id(fx, 2);
    assert_int_equal(pool_assign(fx->db, alice, fx->dedicated, "rdp", NULL, &a), 0);
    assert_int_equal(pool_session_logoff(fx->db, a.session_id, "logoff"), 0);
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT state || ' ' || assigned_user_id FROM vms WHERE id = %lld",
             (long long)a.vm_id);
    char *st = q(fx, sql), want[64];
    snprintf(want, sizeof(want), "assigned %lld", (long long)alice);
    assert_string_equal(st, want);
    free(st);
    assert_int_equal(pool_assign(fx->db, bob, fx->dedicated, "rdp", NULL, &b), 0);
    assert_true(b.vm_id != a.vm_id);
    assert_int_equal(pool_assign(fx->db, alice, fx->dedicated, "vnc", NULL, &c), 0);
    assert_int_equal(c.vm_id, a.vm_id);
    assert_true(c.reconnect);
    assert_true(c.session_id != a.session_id);
}

static void test_deleted_or_failed_vm_never_blocks_a_new_desktop(void **state)
{
    struct fx *fx = *state;
    make_ready_vms(fx, fx->pool, "office", 3);
    struct db_assignment a = {0}, b = {0}, c = {0};
    int64_t u = user_id(fx, 4);
    assert_int_equal(pool_assign(fx->db, u, fx->pool, "spice", NULL, &a), 0);
    char sql[120];
    snprintf(sql, sizeof(sql), "DELETE FROM vms WHERE id = %lld", (long long)a.vm_id);
    assert_int_equal(pgt_exec(fx->conninfo, sql), 0);
    assert_int_equal(pool_assign(fx->db, u, fx->pool, "spice", NULL, &b), 0);
    assert_true(b.vm_id != a.vm_id && b.vm_id != 0);
    assert_true(b.session_id != a.session_id);

    snprintf(sql, sizeof(sql), "UPDATE vms SET state = 'failed' WHERE id = %lld",
             (long long)b.vm_id);
    assert_int_equal(pgt_exec(fx->conninfo, sql), 0);
    assert_int_equal(pool_assign(fx->db, u, fx->pool, "spice", NULL, &c), 0);
    assert_true(c.vm_id != b.vm_id && c.vm_id != a.vm_id);
    assert_int_equal(qi(fx, "SELECT count(*) FROM desktop_sessions WHERE state <> 'ended'"), 1);
    snprintf(sql, sizeof(sql), "SELECT assigned_user_id IS NULL FROM vms WHERE id = %lld",
             (long long)b.vm_id);
    char *st = q(fx, sql);
    assert_string_equal(st, "t");
    free(st);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_500_people_and_50_ready_vms_give_exactly_50_distinct_desktops),
        T(test_same_person_connecting_twice_gets_the_same_vm),
        T(test_same_person_racing_with_twenty_tabs_gets_one_vm),
        T(test_no_ready_vm_is_a_retry_later_and_nudges_provisioning),
        T(test_pool_rules_refuse_bad_requests),
        T(test_spare_an_admin_stops_or_deletes_is_never_handed_out),
        T(test_session_moves_through_connected_disconnected_and_logoff),
        T(test_dedicated_pool_gives_a_person_back_their_own_vm),
        T(test_deleted_or_failed_vm_never_blocks_a_new_desktop),
    };
    return cmocka_run_group_tests_name("pool.assign", tests, NULL, NULL);
}
