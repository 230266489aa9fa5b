/*
 * Specification of schema migrations on a real PostgreSQL
 * (the run's private server; each test has its own empty database).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "db.h"
#include "pgtest.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fx {
    char *conninfo;
    struct db *db;
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    struct atr_error err = {0};
    if (!fx || pgt_db_create(&fx->conninfo) < 0)
        return -1;
    if (db_open(fx->conninfo, 10, "test", &fx->db, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
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

/* A fingerprint of the whole schema: tables, columns, types, constraints, indexes. */
static char *schema_fingerprint(const char *conninfo)
{
    return pgt_query_value(
        conninfo,
        "SELECT md5(coalesce(string_agg(x, ',' ORDER BY x), '')) FROM ("
        " SELECT table_name || '.' || column_name || ':' || data_type || ':' ||"
        "        coalesce(column_default, '') AS x"
        "   FROM information_schema.columns WHERE table_schema = 'public'"
        " UNION ALL SELECT conrelid::regclass || ':' || conname || ':' || pg_get_constraintdef(oid)"
        "   FROM pg_constraint WHERE connamespace = 'public'::regnamespace"
        " UNION ALL SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'"
        " UNION ALL SELECT tgname FROM pg_trigger WHERE NOT tgisinternal) s");
}

static void test_migrate_empty_database_to_latest(void **state)
{
    struct fx *fx = *state;
    size_t n;
    const struct db_migration *list = db_migrations_builtin(&n);
    assert_true(n >= 1);
    struct atr_error err = {0};
    int applied = -1;
    assert_int_equal(db_migrate(fx->db, list, n, NULL, NULL, &applied, &err), 0);
    assert_int_equal(applied, (int)n);

    struct db_schema_status st;
    assert_int_equal(db_schema_status(fx->db, list, n, &st, &err), 0);
    assert_int_equal(st.current, list[n - 1].version);
    assert_int_equal(st.pending, 0);
    assert_false(st.newer);
    assert_false(st.drifted);
    free(st.applied);
    assert_int_equal(db_schema_check(fx->db, &err), 0);

    /* every table the mission needs is there */
    static const char *const tables[] = {
        "hosts", "images", "image_versions", "pools", "vms", "users", "groups", "memberships",
        "entitlements", "logins", "desktop_sessions", "console_tickets", "tasks", "audit_log",
        "metric_samples", "snapshots", "recovery_codes", "role_policies", "auth_throttle"};
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT to_regclass('%s') IS NOT NULL", tables[i]);
        char *v = pgt_query_value(fx->conninfo, sql);
        assert_non_null(v);
        if (strcmp(v, "t") != 0)
            fail_msg("table %s is missing", tables[i]);
        free(v);
    }
}

static void test_second_migrate_changes_nothing(void **state)
{
    struct fx *fx = *state;
    size_t n;
    const struct db_migration *list = db_migrations_builtin(&n);
    struct atr_error err = {0};
    assert_int_equal(db_migrate(fx->db, list, n, NULL, NULL, NULL, &err), 0);
    char *fp1 = schema_fingerprint(fx->conninfo);
    char *rows1 = pgt_query_value(fx->conninfo,
                                  "SELECT string_agg(version || '@' || applied_at, ',')"
                                  " FROM schema_migrations");
    int applied = -1;
    assert_int_equal(db_migrate(fx->db, list, n, NULL, NULL, &applied, &err), 0);
    assert_int_equal(applied, 0);
    char *fp2 = schema_fingerprint(fx->conninfo);
    char *rows2 = pgt_query_value(fx->conninfo,
                                  "SELECT string_agg(version || '@' || applied_at, ',')"
                                  " FROM schema_migrations");
    assert_non_null(fp1);
    assert_string_equal(fp1, fp2);
    assert_string_equal(rows1, rows2);
    free(fp1);
    free(fp2);
    free(rows1);
    free(rows2);
}

static void test_newer_schema_is_refused(void **state)
{
    struct fx *fx = *state;
    size_t n;
    const struct db_migration *list = db_migrations_builtin(&n);
    struct atr_error err = {0};
    assert_int_equal(db_migrate(fx->db, list, n, NULL, NULL, NULL, &err), 0);
    assert_int_equal(pgt_exec(fx->conninfo, "INSERT INTO schema_migrations (version, name, checksum)"
                                            " VALUES (9999, 'from_the_future', 'x')"),
                     0);
    char *fp1 = schema_fingerprint(fx->conninfo);
    assert_int_equal(db_migrate(fx->db, list, n, NULL, NULL, NULL, &err), -EPROTONOSUPPORT);
    assert_non_null(strstr(err.msg, "version 9999, newer than this Atrium"));
    assert_int_equal(db_schema_check(fx->db, &err), -EPROTONOSUPPORT);
    char *fp2 = schema_fingerprint(fx->conninfo);
    assert_string_equal(fp1, fp2);
    free(fp1);
    free(fp2);
}

static void test_failing_migration_leaves_schema_as_it_was(void **state)
{
    struct fx *fx = *state;
    size_t n;
    const struct db_migration *builtin = db_migrations_builtin(&n);
    struct atr_error err = {0};
    assert_int_equal(db_migrate(fx->db, builtin, n, NULL, NULL, NULL, &err), 0);
    char *fp1 = schema_fingerprint(fx->conninfo);

    /* version n+1 creates a table and alters another, then fails */
    struct db_migration *list = calloc(n + 1, sizeof(*list));
    memcpy(list, builtin, n * sizeof(*list));
    list[n].version = builtin[n - 1].version + 1;
    list[n].name = "half_done";
    list[n].sql = "CREATE TABLE half_done (id int);"
                  "ALTER TABLE hosts ADD COLUMN half_done int;"
                  "INSERT INTO role_policies (role) VALUES ('nonsense');";
    int applied = -1;
    assert_int_equal(db_migrate(fx->db, list, n + 1, NULL, NULL, &applied, &err), -EPROTO);
    assert_int_equal(applied, -1);
    assert_non_null(strstr(err.msg, "half_done"));

    char *fp2 = schema_fingerprint(fx->conninfo);
    assert_string_equal(fp1, fp2);
    char *exists = pgt_query_value(fx->conninfo, "SELECT to_regclass('half_done') IS NOT NULL");
    assert_string_equal(exists, "f");
    char *max = pgt_query_value(fx->conninfo, "SELECT max(version) FROM schema_migrations");
    char want[16];
    snprintf(want, sizeof(want), "%d", builtin[n - 1].version);
    assert_string_equal(max, want);
    /* the connection is still usable afterwards */
    assert_int_equal(db_schema_check(fx->db, &err), 0);
    free(exists);
    free(max);
    free(fp1);
    free(fp2);
    free(list);
}

static void test_changed_applied_migration_is_refused(void **state)
{
    struct fx *fx = *state;
    size_t n;
    const struct db_migration *list = db_migrations_builtin(&n);
    struct atr_error err = {0};
    assert_int_equal(db_migrate(fx->db, list, n, NULL, NULL, NULL, &err), 0);
    assert_int_equal(pgt_exec(fx->conninfo, "UPDATE schema_migrations SET checksum = 'edited'"
                                            " WHERE version = 1"),
                     0);
    assert_int_equal(db_migrate(fx->db, list, n, NULL, NULL, NULL, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "migration 1 (initial) in the database differs"));
}

static void test_pending_migrations_fail_the_daemon_check(void **state)
{
    struct fx *fx = *state;
    struct atr_error err = {0};
    assert_int_equal(db_schema_check(fx->db, &err), -ESTALE);
    assert_non_null(strstr(err.msg, "run 'atriumctl db migrate'"));
}

static void test_migration_list_with_gap_is_rejected(void **state)
{
    struct fx *fx = *state;
    struct db_migration list[] = {{1, "a", "SELECT 1"}, {3, "c", "SELECT 1"}};
    struct atr_error err = {0};
    assert_int_equal(db_migrate(fx->db, list, 2, NULL, NULL, NULL, &err), -EINVAL);
    char *exists = pgt_query_value(fx->conninfo, "SELECT to_regclass('schema_migrations') IS NULL");
    assert_string_equal(exists, "t");
    free(exists);
}

struct racer {
    const char *conninfo;
    int applied;
    int rc;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct db *db = NULL;
    struct atr_error err = {0};
    size_t n;
    const struct db_migration *list = db_migrations_builtin(&n);
    r->rc = db_open(r->conninfo, 10, "racer", &db, &err);
    if (r->rc == 0)
        r->rc = db_migrate(db, list, n, NULL, NULL, &r->applied, &err);
    db_close(db);
    return NULL;
}

static void test_concurrent_migrators_apply_each_migration_once(void **state)
{
    struct fx *fx = *state;
    enum { N = 4 };
    struct racer r[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        r[i] = (struct racer){.conninfo = fx->conninfo};
        assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(r[i].rc, 0);
        total += r[i].applied;
    }
    size_t n;
    db_migrations_builtin(&n);
    assert_int_equal(total, (int)n);
    char *count = pgt_query_value(fx->conninfo, "SELECT count(*) FROM schema_migrations");
    char want[16];
    snprintf(want, sizeof(want), "%zu", n);
    assert_string_equal(count, want);
    free(count);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_migrate_empty_database_to_latest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_migrate_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_migration_leaves_schema_as_it_was, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_changed_applied_migration_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pending_migrations_fail_the_daemon_check, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_migration_list_with_gap_is_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_migrators_apply_each_migration_once,
                                        setup, teardown),
    };
    return cmocka_run_group_tests_name("db.migrate", tests, NULL, NULL);
}
