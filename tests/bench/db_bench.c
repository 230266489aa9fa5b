/*
 * db_bench: what the foundation costs.  Prints a table:
 *   - schema migration, empty database -> latest (median of 5)
 *   - db_schema_check, which every daemon runs at start (median of 200)
 *   - task queue: create, then claim+finish by 2 workers (tasks/s)
 *   - NOTIFY wake-up latency from task insert to a LISTENing daemon (p50/p99)
 *   - peer: pgbench's simple-update transactions (-N, 2 clients) on the same
 *     server in the same run, and our claim+finish rate as a ratio of it.
 * Runs against the private PostgreSQL of the ctest fixture "pg"
 * (ctest -L bench), or any server named by ATRIUM_TEST_PG_FILE.
 */
#include "db.h"
#include "pgtest.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct(int64_t *v, size_t n, double p)
{
    qsort(v, n, sizeof(*v), cmp_i64);
    size_t i = (size_t)(p * (double)(n - 1));
    return (double)v[i];
}

static struct db *open_or_die(const char *ci)
{
    struct db *db = NULL;
    struct atr_error err = {0};
    if (db_open(ci, 10, "bench", &db, &err) < 0) {
        fprintf(stderr, "db_bench: %s\n", err.msg);
        exit(1);
    }
    return db;
}

static const char *const kinds[] = {"bench.noop", NULL};

struct worker {
    const char *ci;
    int done;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    struct db *db = open_or_die(w->ci);
    for (;;) {
        struct db_task *t = NULL;
        if (db_task_claim(db, 0, kinds, "bench", &t) != 1)
            break;
        db_task_finish(db, t->id, NULL, NULL);
        db_task_free(t);
        w->done++;
    }
    db_close(db);
    return NULL;
}

int main(void)
{
    size_t n;
    const struct db_migration *list = db_migrations_builtin(&n);
    struct atr_error err = {0};
    int64_t samples[1000];

    /* 1. migrations */
    for (int i = 0; i < 5; i++) {
        char *ci;
        if (pgt_db_create(&ci) < 0)
            return 1;
        struct db *db = open_or_die(ci);
        int64_t t0 = atr_now_mono_ns();
        if (db_migrate(db, list, n, NULL, NULL, NULL, &err) < 0) {
            fprintf(stderr, "db_bench: %s\n", err.msg);
            return 1;
        }
        samples[i] = atr_now_mono_ns() - t0;
        db_close(db);
        pgt_db_drop(ci);
    }
    double migrate_ms = pct(samples, 5, 0.5) / 1e6;

    char *ci;
    if (pgt_db_create(&ci) < 0)
        return 1;
    struct db *db = open_or_die(ci);
    db_migrate(db, list, n, NULL, NULL, NULL, &err);

    /* 2. start-up schema check */
    for (int i = 0; i < 200; i++) {
        int64_t t0 = atr_now_mono_ns();
        db_schema_check(db, &err);
        samples[i] = atr_now_mono_ns() - t0;
    }
    double check_us = pct(samples, 200, 0.5) / 1e3;

    /* 3. task queue */
    enum { TASKS = 4000 };
    int64_t t0 = atr_now_mono_ns();
    for (int i = 0; i < TASKS; i++) {
        int64_t id;
        db_task_create(db, &(struct db_task_new){.kind = "bench.noop"}, &id);
    }
    double create_s = (double)(atr_now_mono_ns() - t0) / 1e9;
    struct worker w[2] = {{.ci = ci}, {.ci = ci}};
    pthread_t th[2];
    t0 = atr_now_mono_ns();
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, work, &w[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    double claim_s = (double)(atr_now_mono_ns() - t0) / 1e9;
    if (w[0].done + w[1].done != TASKS) {
        fprintf(stderr, "db_bench: claimed %d of %d tasks\n", w[0].done + w[1].done, TASKS);
        return 1;
    }

    /* 4. wake-up latency */
    struct db *listener = open_or_die(ci);
    db_listen(listener, DB_CHANNEL_TASK);
    enum { WAKES = 300 };
    for (int i = 0; i < WAKES; i++) {
        int64_t id;
        t0 = atr_now_mono_ns();
        db_task_create(db, &(struct db_task_new){.kind = "bench.noop"}, &id);
        if (db_wait(listener, 5000) != 1) {
            fprintf(stderr, "db_bench: no wake-up\n");
            return 1;
        }
        samples[i] = atr_now_mono_ns() - t0;
        char *c, *p;
        while (db_notify_next(listener, &c, &p) == 1) {
            free(c);
            free(p);
        }
    }
    double wake_p50 = pct(samples, WAKES, 0.5) / 1e3, wake_p99 = pct(samples, WAKES, 0.99) / 1e3;
    db_close(listener);
    db_close(db);

    /* 5. peer: pgbench simple-update on the same server */
    char cmd[1024], line[256];
    double pgbench_tps = 0;
    snprintf(cmd, sizeof(cmd),
             "/usr/lib/postgresql/15/bin/pgbench -i -q -s 1 '%s' >/dev/null 2>&1 && "
             "/usr/lib/postgresql/15/bin/pgbench -N -c 2 -j 2 -T 5 '%s' 2>/dev/null",
             ci, ci);
    FILE *p = popen(cmd, "r");
    while (p && fgets(line, sizeof(line), p))
        if (strncmp(line, "tps = ", 6) == 0)
            pgbench_tps = strtod(line + 6, NULL);
    if (p)
        pclose(p);
    pgt_db_drop(ci);

    double claim_rate = TASKS / claim_s;
    printf("%-52s %12s\n", "db_bench (PostgreSQL 15, private server, fsync=off)", "result");
    printf("%-52s %9.1f ms\n", "migrate empty -> latest (median of 5)", migrate_ms);
    printf("%-52s %9.0f us\n", "schema check at daemon start (median of 200)", check_us);
    printf("%-52s %9.0f /s\n", "task create (1 connection)", TASKS / create_s);
    printf("%-52s %9.0f /s\n", "task claim+finish (2 workers, SKIP LOCKED)", claim_rate);
    printf("%-52s %9.0f us\n", "NOTIFY wake-up, insert -> listener (p50)", wake_p50);
    printf("%-52s %9.0f us\n", "NOTIFY wake-up, insert -> listener (p99)", wake_p99);
    if (pgbench_tps > 0) {
        printf("%-52s %9.0f /s\n", "peer: pgbench -N simple-update tx (2 clients)", pgbench_tps);
        printf("%-52s %9.2f x\n", "ratio: claim+finish cycles / pgbench tx", claim_rate / pgbench_tps);
    } else {
        printf("%-52s %12s\n", "peer: pgbench", "unavailable");
    }
    return 0;
}
