/*
 * Specification of the pool manager's reconcile pass (pool_reconcile) on a
 * real PostgreSQL.  Hosts are rows with fresh heartbeats and VM states are
 * moved by the test where atrium-hostd would move them: what is checked here
 * is what the pool manager decides from the rows.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pgtest-db.h"
#include "pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fx {
    char *conninfo;
    struct db *db;
    struct pool_env env;
    int64_t pool, v1, v2;
};

#define qi(fx, ...) pgt_query_i64f((fx)->conninfo, __VA_ARGS__)

static char *qs(struct fx *fx, const char *sql)
{
    return pgt_query_value(fx->conninfo, sql);
}

static void sql(struct fx *fx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sql(struct fx *fx, const char *fmt, ...)
{
    char s[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s, sizeof(s), fmt, ap);
    va_end(ap);
    assert_int_equal(pgt_exec(fx->conninfo, s), 0);
}

static int64_t ready_version(struct fx *fx, const char *image)
{
    int64_t id;
    int version;
    assert_int_equal(db_image_version_new(fx->db, image, "", &id, &version), 0);
    struct db_image_version iv = {.id = id};
    snprintf(iv.path, sizeof(iv.path), "/var/lib/atrium/images/%s-%d.qcow2", image, version);
    snprintf(iv.boot_kernel, sizeof(iv.boot_kernel), "/var/lib/atrium/images/vmlinuz");
    snprintf(iv.boot_initrd, sizeof(iv.boot_initrd), "/var/lib/atrium/images/initrd.img");
    snprintf(iv.boot_cmdline, sizeof(iv.boot_cmdline), "console=ttyS0");
    assert_int_equal(db_image_version_ready(fx->db, &iv), 0);
    return id;
}

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    struct atr_error err = {0};
    if (!fx || pgt_db_fresh(&fx->conninfo, &fx->db) < 0)
        return -1;
    pool_env_defaults(&fx->env);
    fx->env.data_dir = "/srv/atrium";
    *state = fx;
    fx->v1 = ready_version(fx, "debian");
    fx->v2 = ready_version(fx, "debian");
    /* two healthy hosts: 16 GiB and 8 GiB, 4 CPUs each */
    sql(fx, "INSERT INTO hosts (name, state, cpus, memory_mb, cpu_capacity, memory_capacity_mb,"
            " heartbeat_at) VALUES ('big', 'online', 4, 16384, 4, 16384, now()),"
            " ('small', 'online', 4, 8192, 4, 8192, now())");
    struct db_pool p;
    pool_defaults(&p);
    snprintf(p.name, sizeof(p.name), "office");
    p.image_version_id = fx->v1;
    p.min_size = 3;
    p.spare = 2;
    p.max_size = 6;
    p.memory_mb = 1024;
    if (pool_create(fx->db, &p, &fx->pool, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
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

static struct pool_pass pass(struct fx *fx)
{
    struct pool_pass st = {0};
    assert_int_equal(pool_reconcile(fx->db, &fx->env, &st), 0);
    return st;
}

/* What hostd does once QEMU runs. */
static void all_ready(struct fx *fx)
{
    sql(fx, "UPDATE vms SET state = 'ready', actual_power = 'running'"
            " WHERE state IN ('provisioning', 'booting', 'refreshing')");
}

static void test_pool_grows_to_min_then_keeps_spares(void **state)
{
    struct fx *fx = *state;
    struct pool_pass st = pass(fx);
    assert_int_equal(st.created, 3); /* min 3 beats spare 2 */
    assert_int_equal(qi(fx, "SELECT count(*) FROM vms WHERE state = 'provisioning'"), 3);
    /* clones of the pool's image, with its boot files, spread over both hosts */
    assert_int_equal(qi(fx, "SELECT count(*) FROM vms WHERE image_version_id = %lld"
                            " AND boot = 'kernel' AND boot_initrd LIKE '%%initrd.img'"
                            " AND memory_mb = 1024 AND desired_power = 'running'",
                        (long long)fx->v1),
                     3);
    assert_int_equal(qi(fx, "SELECT count(DISTINCT host_id) FROM vms"), 2);
    char *names = qs(fx, "SELECT string_agg(name || '=' || disk_path, ' ' ORDER BY name) FROM vms");
    assert_string_equal(names, "office-1=/srv/atrium/overlays/office-1.qcow2 "
                               "office-2=/srv/atrium/overlays/office-2.qcow2 "
                               "office-3=/srv/atrium/overlays/office-3.qcow2");
    free(names);
    char *status = qs(fx, "SELECT status FROM pools");
    assert_string_equal(status, "provisioning");
    free(status);

    /* a second pass changes nothing while they boot */
    st = pass(fx);
    assert_int_equal(st.created + st.retired + st.refreshed, 0);

    all_ready(fx);
    st = pass(fx);
    assert_int_equal(st.created, 0);
    status = qs(fx, "SELECT status || ': ' || status_detail FROM pools");
    assert_string_equal(status, "ok: 3 ready, 0 in use");
    free(status);

    /* two people take desktops: one spare left, so one more is started */
    struct db_assignment a;
    assert_int_equal(pgt_exec(fx->conninfo, "INSERT INTO users (username) VALUES ('a'), ('b')"), 0);
    int64_t ua = qi(fx, "SELECT id FROM users WHERE username = 'a'");
    assert_int_equal(pool_assign(fx->db, ua, fx->pool, "spice", NULL, &a), 0);
    assert_int_equal(pass(fx).created, 0);
    assert_int_equal(pool_assign(fx->db, ua + 1, fx->pool, "spice", NULL, &a), 0);
    assert_int_equal(pass(fx).created, 1);
    char *newest = qs(fx, "SELECT name FROM vms ORDER BY id DESC LIMIT 1");
    assert_string_equal(newest, "office-4");
    free(newest);
}

static void test_pool_never_grows_beyond_max(void **state)
{
    struct fx *fx = *state;
    sql(fx, "UPDATE pools SET min_size = 0, spare = 4, max_size = 4");
    assert_int_equal(pass(fx).created, 4);
    all_ready(fx);
    sql(fx, "INSERT INTO users (username) SELECT 'u' || g FROM generate_series(1, 4) g");
    struct db_assignment a;
    for (int i = 0; i < 4; i++)
        assert_int_equal(pool_assign(fx->db, qi(fx, "SELECT min(id) FROM users") + i, fx->pool,
                                     "spice", NULL, &a),
                         0);
    assert_int_equal(pass(fx).created, 0);
    assert_int_equal(qi(fx, "SELECT count(*) FROM vms"), 4);
}

static void test_capacity_limit_stops_with_a_clear_status(void **state)
{
    struct fx *fx = *state;
    /* 10 GiB VMs: one fits on 'big' (16 GiB), none on 'small' (8 GiB) */
    sql(fx, "UPDATE pools SET memory_mb = 10240, min_size = 0, spare = 3, max_size = 5");
    assert_int_equal(pass(fx).created, 1);
    char *status = qs(fx, "SELECT status || ': ' || status_detail FROM pools");
    assert_string_equal(status, "no_capacity: 2 more VM(s) of 10240 MiB / 2 vCPU wanted; the "
                                "roomiest host has 8192 MiB free");
    free(status);
    assert_int_equal(qi(fx, "SELECT count(*) FROM vms v JOIN hosts h ON h.id = v.host_id"
                            " WHERE h.name = 'big'"),
                     1);
    /* a silent host is not used at all */
    sql(fx, "UPDATE hosts SET heartbeat_at = now() - interval '1 hour'");
    sql(fx, "DELETE FROM vms");
    assert_int_equal(pass(fx).created, 0);
    status = qs(fx, "SELECT status FROM pools");
    assert_string_equal(status, "no_capacity");
    free(status);
}

static void test_vm_numbers_are_never_reused(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(pass(fx).created, 3);
    sql(fx, "DELETE FROM vms"); /* as hostd would after deleting them */
    assert_int_equal(pass(fx).created, 3);
    char *names = qs(fx, "SELECT string_agg(name, ' ' ORDER BY id) FROM vms");
    assert_string_equal(names, "office-4 office-5 office-6");
    free(names);
}

static void test_failed_vms_are_replaced_until_the_pool_keeps_failing(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(pass(fx).created, 3);
    sql(fx, "UPDATE vms SET state = 'failed', last_error = 'qemu: could not open disk'"
            " WHERE name IN ('office-1', 'office-2')");
    struct pool_pass st = pass(fx);
    assert_int_equal(st.retired, 2);
    assert_int_equal(st.created, 2);
    assert_int_equal(qi(fx, "SELECT count(*) FROM audit_log WHERE action = 'pool.vm_failed'"
                            " AND detail->>'error' = 'qemu: could not open disk'"),
                     2);
    assert_int_equal(qi(fx, "SELECT count(*) FROM vms WHERE state = 'deleting'"
                            " AND desired_power = 'deleted'"),
                     2);
    /* a third failure within the window: the pool stops creating VMs */
    sql(fx, "UPDATE vms SET state = 'failed' WHERE name = 'office-3'");
    st = pass(fx);
    assert_int_equal(st.retired, 1);
    assert_int_equal(st.created, 0);
    char *status = qs(fx, "SELECT status FROM pools");
    assert_string_equal(status, "failing");
    free(status);
    assert_int_equal(qi(fx, "SELECT count(*) FROM audit_log WHERE action = 'pool.failing'"), 1);
    assert_int_equal(pass(fx).created, 0);

    /* an admin clears it: provisioning resumes with a fresh count */
    assert_int_equal(db_pool_set_failing(fx->db, fx->pool, false), 0);
    char id[24];
    snprintf(id, sizeof(id), "%lld", (long long)fx->pool);
    assert_int_equal(db_audit_add(fx->db, &(struct db_audit_entry){.actor = "admin",
                                                                  .action = "pool.clear",
                                                                  .target_type = "pool",
                                                                  .target_id = id,
                                                                  .outcome = "success"}),
                     0);
    st = pass(fx);
    assert_int_equal(st.created, 1);
    status = qs(fx, "SELECT status FROM pools");
    assert_string_equal(status, "provisioning");
    free(status);
}

static void test_clone_not_ready_in_time_is_destroyed_and_retried(void **state)
{
    struct fx *fx = *state;
    fx->env.provision_timeout_s = 60;
    assert_int_equal(pass(fx).created, 3);
    /* two statements: the row trigger stamps state_changed_at on a state change */
    sql(fx, "UPDATE vms SET state = 'booting' WHERE name = 'office-2'");
    sql(fx, "UPDATE vms SET state_changed_at = now() - interval '2 minutes'"
            " WHERE name = 'office-2'");
    struct pool_pass st = pass(fx);
    assert_int_equal(st.retired, 1);
    assert_int_equal(st.created, 1);
    char *err = qs(fx, "SELECT last_error FROM vms WHERE name = 'office-2'");
    assert_string_equal(err, "not ready within 60 s (was booting)");
    free(err);
}

static void test_logoff_refreshes_floating_vm_on_its_host(void **state)
{
    struct fx *fx = *state;
    pass(fx);
    all_ready(fx);
    sql(fx, "INSERT INTO users (username) VALUES ('a')");
    struct db_assignment a;
    assert_int_equal(pool_assign(fx->db, qi(fx, "SELECT id FROM users"), fx->pool, "spice", NULL,
                                 &a),
                     0);
    assert_int_equal(pool_session_logoff(fx->db, a.session_id, "logoff"), 0);
    struct pool_pass st = pass(fx);
    assert_int_equal(st.refreshed, 1);
    assert_int_equal(qi(fx, "SELECT count(*) FROM tasks WHERE kind = 'vm.refresh' AND vm_id = %lld"
                            " AND host_id = %lld AND state = 'queued'",
                        (long long)a.vm_id, (long long)a.host_id),
                     1);
    assert_int_equal(qi(fx, "SELECT count(*) FROM vms WHERE id = %lld AND state = 'refreshing'",
                        (long long)a.vm_id),
                     1);
    assert_int_equal(pass(fx).refreshed, 0); /* queued once only */
}

static void test_push_image_replaces_spares_now_and_used_vms_at_logoff(void **state)
{
    struct fx *fx = *state;
    pass(fx);
    all_ready(fx);
    sql(fx, "INSERT INTO users (username) VALUES ('a')");
    struct db_assignment a;
    assert_int_equal(pool_assign(fx->db, qi(fx, "SELECT id FROM users"), fx->pool, "spice", NULL,
                                 &a),
                     0);
    sql(fx, "UPDATE pools SET image_version_id = %lld", (long long)fx->v2);
    struct pool_pass st = pass(fx);
    assert_int_equal(st.retired, 2); /* the two spares */
    assert_int_equal(st.created, 2); /* min 3: 1 in use + 2 new */
    assert_int_equal(qi(fx, "SELECT count(*) FROM vms WHERE image_version_id = %lld",
                        (long long)fx->v2),
                     2);
    /* the person's VM is untouched, marked for replacement */
    assert_int_equal(qi(fx, "SELECT count(*) FROM vms WHERE id = %lld AND state = 'assigned'"
                            " AND image_stale AND image_version_id = %lld",
                        (long long)a.vm_id, (long long)fx->v1),
                     1);
    assert_int_equal(pool_session_logoff(fx->db, a.session_id, "logoff"), 0);
    st = pass(fx);
    assert_int_equal(st.refreshed, 0);
    assert_int_equal(st.retired, 1);
    assert_int_equal(qi(fx, "SELECT count(*) FROM vms WHERE id = %lld AND state = 'deleting'",
                        (long long)a.vm_id),
                     1);
}

static void test_silent_host_loses_its_vms_and_spares_are_rebuilt_elsewhere(void **state)
{
    struct fx *fx = *state;
    sql(fx, "UPDATE pools SET min_size = 0, spare = 2");
    pass(fx);
    all_ready(fx);
    sql(fx, "UPDATE hosts SET heartbeat_at = now() - interval '1 minute' WHERE name = 'small'");
    struct pool_pass st = pass(fx);
    assert_int_equal(st.lost, 1);
    assert_int_equal(st.retired, 1);
    assert_int_equal(st.created, 1);
    assert_int_equal(qi(fx, "SELECT count(*) FROM vms v JOIN hosts h ON h.id = v.host_id"
                            " WHERE h.name = 'big' AND v.state <> 'deleting'"),
                     2);
}

static void test_shrinking_a_pool_retires_spares_but_never_vms_in_use(void **state)
{
    struct fx *fx = *state;
    sql(fx, "UPDATE pools SET min_size = 0, spare = 4, max_size = 6");
    assert_int_equal(pass(fx).created, 4);
    all_ready(fx);
    sql(fx, "INSERT INTO users (username) VALUES ('a')");
    struct db_assignment a;
    assert_int_equal(pool_assign(fx->db, qi(fx, "SELECT id FROM users"), fx->pool, "spice", NULL,
                                 &a),
                     0);
    assert_int_equal(pass(fx).created, 1); /* back to 4 spares */
    all_ready(fx);
    sql(fx, "UPDATE pools SET spare = 1, min_size = 3");
    struct pool_pass st = pass(fx);
    assert_int_equal(st.retired, 2); /* 5 VMs, min 3: two spares go, newest first */
    assert_int_equal(qi(fx, "SELECT count(*) FROM vms WHERE state <> 'deleting'"), 3);
    assert_int_equal(qi(fx, "SELECT count(*) FROM vms WHERE id = %lld AND state = 'assigned'",
                        (long long)a.vm_id),
                     1);
    sql(fx, "UPDATE pools SET min_size = 0, spare = 0, max_size = 0");
    st = pass(fx);
    assert_int_equal(st.retired, 2);
    assert_int_equal(qi(fx, "SELECT count(*) FROM vms WHERE state <> 'deleting'"), 1);
    assert_int_equal(pass(fx).retired, 0);
}

static void test_session_disconnected_too_long_is_logged_off_and_refreshed(void **state)
{
    struct fx *fx = *state;
    sql(fx, "UPDATE pools SET disconnect_timeout_s = 60");
    pass(fx);
    all_ready(fx);
    sql(fx, "INSERT INTO users (username) VALUES ('a'), ('b')");
    struct db_assignment a, b;
    int64_t ua = qi(fx, "SELECT id FROM users WHERE username = 'a'");
    assert_int_equal(pool_assign(fx->db, ua, fx->pool, "spice", NULL, &a), 0);
    assert_int_equal(pool_assign(fx->db, ua + 1, fx->pool, "spice", NULL, &b), 0);
    assert_int_equal(pool_session_connected(fx->db, a.session_id, "spice", NULL), 0);
    assert_int_equal(pool_session_disconnected(fx->db, a.session_id), 0);
    assert_int_equal(pool_session_connected(fx->db, b.session_id, "spice", NULL), 0);
    assert_int_equal(pool_session_disconnected(fx->db, b.session_id), 0);
    /* a left two minutes ago, b just now */
    sql(fx, "UPDATE desktop_sessions SET disconnected_at = now() - interval '2 minutes'"
            " WHERE id = %lld", (long long)a.session_id);
    struct pool_pass st = pass(fx);
    assert_int_equal(st.logged_off, 1);
    assert_int_equal(st.refreshed, 1);
    struct db_session s;
    assert_int_equal(db_session_get(fx->db, a.session_id, &s), 0);
    assert_string_equal(s.state, "ended");
    assert_string_equal(s.end_reason, "disconnect timeout");
    assert_int_equal(db_session_get(fx->db, b.session_id, &s), 0);
    assert_string_equal(s.state, "disconnected");
    /* 0 means never */
    sql(fx, "UPDATE pools SET disconnect_timeout_s = 0");
    sql(fx, "UPDATE desktop_sessions SET disconnected_at = now() - interval '1 day'"
            " WHERE id = %lld", (long long)b.session_id);
    assert_int_equal(pass(fx).logged_off, 0);
}

/* Hosts of today's hostd promise to fence themselves (hosts.fence_deadline_s). */
static void test_spares_of_a_late_host_hold_their_place_and_come_back_with_it(void **state)
{
    struct fx *fx = *state;
    sql(fx, "UPDATE hosts SET fence_deadline_s = 60");
    sql(fx, "UPDATE pools SET min_size = 0, spare = 2");
    pass(fx);
    all_ready(fx);
    sql(fx, "UPDATE hosts SET heartbeat_at = now() - interval '30 seconds' WHERE name = 'small'");
    struct pool_pass st = pass(fx);
    assert_int_equal(st.lost, 1);
    assert_int_equal(st.retired, 0); /* not fenced: its VM may still run */
    assert_int_equal(st.created, 0); /* and holds its place */
    char *status = qs(fx, "SELECT status || ': ' || status_detail FROM pools");
    assert_string_equal(status, "degraded: 1 ready, 0 starting, 0 in use, 1 spare(s) on a silent "
                                "host, replaced once it is fenced");
    free(status);
    assert_int_equal(pass(fx).created, 0);
    /* back: its hostd still runs the VM and says so */
    sql(fx, "UPDATE hosts SET heartbeat_at = now() WHERE name = 'small'");
    int64_t id = qi(fx, "SELECT id FROM vms WHERE state = 'lost'");
    assert_int_equal(db_vm_found(fx->db, id, true), 0);
    st = pass(fx);
    assert_int_equal(st.created + st.retired + st.lost, 0);
    assert_int_equal(qi(fx, "SELECT count(*) FROM vms WHERE state = 'ready'"), 2);
    status = qs(fx, "SELECT status FROM pools");
    assert_string_equal(status, "ok");
    free(status);
}

static void test_a_fenced_hosts_desktops_are_rebuilt_elsewhere_and_its_sessions_end(void **state)
{
    struct fx *fx = *state;
    sql(fx, "UPDATE hosts SET fence_deadline_s = 60");
    sql(fx, "UPDATE pools SET min_size = 0, spare = 6, max_size = 10");
    assert_int_equal(pass(fx).created, 6);
    all_ready(fx);
    sql(fx, "INSERT INTO users (username) VALUES ('alice'), ('bob')");
    int64_t alice = qi(fx, "SELECT id FROM users WHERE username = 'alice'");
    int64_t bob = qi(fx, "SELECT id FROM users WHERE username = 'bob'");
    struct db_assignment a, b;
    assert_int_equal(pool_assign(fx->db, alice, fx->pool, "spice", NULL, &a), 0);
    assert_int_equal(pool_assign(fx->db, bob, fx->pool, "spice", NULL, &b), 0);
    int64_t big = qi(fx, "SELECT id FROM hosts WHERE name = 'big'");
    int64_t small = qi(fx, "SELECT id FROM hosts WHERE name = 'small'");
    assert_int_equal(a.host_id, big);
    assert_int_equal(b.host_id, small);
    assert_int_equal(pass(fx).created, 2);
    all_ready(fx);
    int on_small = (int)qi(fx, "SELECT count(*) FROM vms WHERE host_id = %lld", (long long)small);
    assert_true(on_small >= 4); /* more than the failure limit */

    /* silent (not for its deadline 60 s + margin 10 s: the HA pass does not
     * fence it), then fenced (as the HA pass does; pool.ha_fence says when) */
    sql(fx, "UPDATE hosts SET heartbeat_at = now() - interval '30 seconds' WHERE name = 'small'");
    struct pool_pass st = pass(fx);
    assert_int_equal(st.lost, on_small);
    assert_int_equal(st.created, 0);
    sql(fx, "UPDATE hosts SET state = 'fenced', fenced_at = now() WHERE name = 'small'");
    st = pass(fx);
    assert_int_equal(st.fence_retired, on_small);
    assert_int_equal(st.sessions_ended, 1);
    assert_int_equal(st.created, on_small - 1); /* back to 6 spares */
    assert_int_equal(qi(fx,
                        "SELECT count(*) FROM vms WHERE state = 'provisioning'"
                        " AND host_id = %lld",
                        (long long)big),
                     on_small - 1);
    assert_int_equal(qi(fx,
                        "SELECT count(*) FROM vms WHERE host_id = %lld"
                        " AND desired_power <> 'deleted'",
                        (long long)small),
                     0);
    /* not failures: the pool keeps provisioning */
    assert_int_equal(qi(fx, "SELECT count(*) FROM pools WHERE failing_since IS NULL"), 1);
    assert_int_equal(qi(fx, "SELECT count(*) FROM audit_log WHERE action = 'pool.vm_fenced'"),
                     on_small);
    /* bob's session ended, alice's lives on */
    struct db_session s;
    assert_int_equal(db_session_get(fx->db, b.session_id, &s), 0);
    assert_string_equal(s.state, "ended");
    assert_string_equal(s.end_reason, "host fenced");
    assert_int_equal(db_session_get(fx->db, a.session_id, &s), 0);
    assert_string_equal(s.state, "assigned");
    /* again: nothing (a new leader after a kill -9 continues from the rows) */
    st = pass(fx);
    assert_int_equal(st.fence_retired + st.created + st.retired, 0);
    /* bob gets a new desktop on big, not the dead one */
    all_ready(fx);
    struct db_assignment b2;
    assert_int_equal(pool_assign(fx->db, bob, fx->pool, "spice", NULL, &b2), 0);
    assert_false(b2.reconnect);
    assert_int_not_equal(b2.vm_id, b.vm_id);
    assert_int_equal(b2.host_id, big);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_pool_grows_to_min_then_keeps_spares),
        T(test_pool_never_grows_beyond_max),
        T(test_capacity_limit_stops_with_a_clear_status),
        T(test_vm_numbers_are_never_reused),
        T(test_failed_vms_are_replaced_until_the_pool_keeps_failing),
        T(test_clone_not_ready_in_time_is_destroyed_and_retried),
        T(test_logoff_refreshes_floating_vm_on_its_host),
        T(test_push_image_replaces_spares_now_and_used_vms_at_logoff),
        T(test_silent_host_loses_its_vms_and_spares_are_rebuilt_elsewhere),
        T(test_shrinking_a_pool_retires_spares_but_never_vms_in_use),
        T(test_session_disconnected_too_long_is_logged_off_and_refreshed),
        T(test_spares_of_a_late_host_hold_their_place_and_come_back_with_it),
        T(test_a_fenced_hosts_desktops_are_rebuilt_elsewhere_and_its_sessions_end),
    };
    return cmocka_run_group_tests_name("pool.reconcile", tests, NULL, NULL);
}
