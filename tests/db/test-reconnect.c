/*
 * A PostgreSQL restart loses nothing: the connection comes back, LISTENs are
 * re-issued and committed rows are still there.  Runs its own private server
 * (tests/harness/pg.sh) so restarting it disturbs no other test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char state_dir[] = "/tmp/atrium-reconnect-XXXXXX";
static char conninfo[512];

static int run_pg(const char *verb)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s/tests/harness/pg.sh %s %s >/dev/null", getenv("ATRIUM_SOURCE_DIR"),
             verb, state_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int group_setup(void **state)
{
    (void)state;
    if (!getenv("ATRIUM_SOURCE_DIR") || !mkdtemp(state_dir))
        return -1;
    if (run_pg("start") < 0)
        return -1;
    char path[600];
    snprintf(path, sizeof(path), "%s/conninfo", state_dir);
    FILE *f = fopen(path, "re");
    if (!f || !fgets(conninfo, sizeof(conninfo), f))
        return -1;
    fclose(f);
    conninfo[strcspn(conninfo, "\n")] = '\0';
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    run_pg("stop");
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", state_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_restart_of_postgres_loses_nothing(void **state)
{
    (void)state;
    struct db *db = NULL, *writer = NULL;
    struct atr_error err = {0};
    size_t n;
    const struct db_migration *list = db_migrations_builtin(&n);
    assert_int_equal(db_open(conninfo, 10, "test", &db, &err), 0);
    assert_int_equal(db_migrate(db, list, n, NULL, NULL, NULL, &err), 0);
    assert_int_equal(db_listen(db, DB_CHANNEL_TASK), 0);
    int64_t before = 0;
    assert_int_equal(db_task_create(db, &(struct db_task_new){.kind = "image.import"}, &before), 0);
    char *ch, *pl;
    while (db_notify_next(db, &ch, &pl) == 1) {
        free(ch);
        free(pl);
    }

    assert_int_equal(run_pg("restart"), 0);

    /* the old connection is dead; the first query says so ... */
    struct db_task *t = NULL;
    int r = db_task_get(db, before, &t);
    assert_int_equal(r, -ENOTCONN);
    /* ... and db_ensure brings it back with its LISTEN */
    assert_int_equal(db_ensure(db), 0);
    assert_true(db_reconnected(db));
    assert_false(db_reconnected(db));
    assert_int_equal(db_task_get(db, before, &t), 0);
    assert_string_equal(t->state, "queued");
    db_task_free(t);
    assert_int_equal(db_schema_check(db, &err), 0);

    assert_int_equal(db_open(conninfo, 10, "writer", &writer, &err), 0);
    int64_t after = 0;
    assert_int_equal(db_task_create(writer, &(struct db_task_new){.kind = "image.import"}, &after),
                     0);
    assert_int_equal(db_wait(db, 5000), 1);
    assert_int_equal(db_notify_next(db, &ch, &pl), 1);
    char want[32];
    snprintf(want, sizeof(want), "%lld:", (long long)after);
    assert_string_equal(pl, want);
    free(ch);
    free(pl);
    db_close(writer);
    db_close(db);
}

static void test_unreachable_server_is_a_clear_error(void **state)
{
    (void)state;
    struct db *db = (void *)0x1;
    struct atr_error err = {0};
    assert_int_equal(db_open("host=/nonexistent-dir port=5999 dbname=x", 2, "t", &db, &err),
                     -ENOTCONN);
    assert_ptr_equal(db, (void *)0x1);
    assert_non_null(strstr(err.msg, "cannot connect to the database"));
    assert_null(strchr(err.msg, '\n'));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restart_of_postgres_loses_nothing),
        cmocka_unit_test(test_unreachable_server_is_a_clear_error),
    };
    return cmocka_run_group_tests_name("db.reconnect", tests, group_setup, group_teardown);
}
