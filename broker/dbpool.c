/*
 * A fixed set of database connections shared by the HTTP worker threads.
 *
 * libpq connections (and the auth context that uses one) may be used by one
 * thread at a time, so a request borrows a connection for its whole life.
 * The pool is sized to the number of worker threads, so a wait only happens
 * when a handler runs long; waiting is on a condition variable, bounded by
 * the caller's deadline, and a request that cannot get one answers 503.
 */
#include "broker-priv.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

struct brk_dbpool {
    pthread_mutex_t lock; /* guards busy flags of conns */
    pthread_cond_t returned;
    size_t n;
    struct brk_conn *conns;
};

struct brk_dbpool *brk_dbpool_free(struct brk_dbpool *pool)
{
    if (!pool)
        return NULL;
    for (size_t i = 0; i < pool->n; i++) {
        auth_free(pool->conns[i].auth);
        db_close(pool->conns[i].db);
    }
    free(pool->conns);
    pthread_cond_destroy(&pool->returned);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
    return NULL;
}

int brk_dbpool_new(const struct atr_config *cfg, int n, struct brk_dbpool **ret_pool,
                   struct atr_error *err)
{
    int r = 0;
    struct brk_dbpool *pool = calloc(1, sizeof(*pool));
    if (!pool)
        return atr_error_set(err, -ENOMEM, "out of memory");
    pthread_mutex_init(&pool->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&pool->returned, &ca);
    pthread_condattr_destroy(&ca);
    pool->conns = calloc((size_t)n, sizeof(*pool->conns));
    if (!pool->conns) {
        r = atr_error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    pool->n = (size_t)n;
    struct auth_config acfg;
    auth_config_defaults(&acfg);
    for (size_t i = 0; i < pool->n; i++) {
        r = db_open(cfg->db.url, cfg->db.connect_timeout_s, "atrium-broker", &pool->conns[i].db,
                    err);
        if (r < 0)
            goto out;
        r = auth_new(pool->conns[i].db, &acfg, &pool->conns[i].auth);
        if (r < 0) {
            atr_error_set(err, r, "cannot set up authentication");
            goto out;
        }
    }
    *ret_pool = pool;
    pool = NULL;
out:
    brk_dbpool_free(pool);
    return r;
}

int brk_dbpool_get(struct brk_dbpool *pool, int timeout_ms, struct brk_conn **ret_conn)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    struct brk_conn *c = NULL;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        for (size_t i = 0; i < pool->n; i++) {
            if (!pool->conns[i].busy) {
                c = &pool->conns[i];
                c->busy = true;
                break;
            }
        }
        if (c)
            break;
        if (pthread_cond_timedwait(&pool->returned, &pool->lock, &deadline) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&pool->lock);
    if (!c)
        return -ETIMEDOUT;
    /* Outside the lock: a reconnect can take connect_timeout seconds. */
    if (db_ensure(c->db) < 0) {
        brk_dbpool_put(pool, c);
        return -ENOTCONN;
    }
    *ret_conn = c;
    return 0;
}

void brk_dbpool_put(struct brk_dbpool *pool, struct brk_conn *conn)
{
    if (!conn)
        return;
    pthread_mutex_lock(&pool->lock);
    conn->busy = false;
    pthread_cond_signal(&pool->returned);
    pthread_mutex_unlock(&pool->lock);
}
