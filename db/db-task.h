/*
 * Tasks: long operations as rows (part of db.h; include "db.h", not this).
 *
 * A task is queued by whoever wants the work done and claimed by the daemon
 * that does it (FOR UPDATE SKIP LOCKED), which reports progress 0..100 and
 * finishes it.  Tasks bound to a host (host_id) are claimed only by that
 * host's hostd.  A running task whose claimer stopped heart-beating is put
 * back in the queue by db_task_requeue_stale, so a killed daemon loses none;
 * workers heart-beat their running tasks (db_task_heartbeat) and a task kind
 * that is not idempotent checks whether its effect is there before redoing it.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct db;

struct db_task {
    int64_t id;
    char kind[64];
    char state[16]; /* queued, running, succeeded, failed, cancelled */
    int64_t host_id, vm_id, pool_id, image_version_id, created_by; /* 0 = none */
    int progress;   /* 0..100 */
    int attempts;
    json_t *params; /* owned */
    json_t *result; /* owned */
    char *message;  /* owned */
    char *error;    /* owned */
    char claimed_by[128];
    int64_t created_at_us, started_at_us, finished_at_us; /* 0 = not yet */
};

struct db_task_new {
    const char *kind;      /* [a-z][a-z0-9_.]* */
    int64_t host_id;       /* 0 = any daemon that handles @kind */
    int64_t vm_id, pool_id, image_version_id, created_by; /* 0 = none */
    const json_t *params;  /* NULL = {} */
};

/* Queue a task.  Sets *ret_id. */
int db_task_create(struct db *db, const struct db_task_new *t, int64_t *ret_id);

/*
 * Claim the oldest queued task of one of @kinds (NULL-terminated) for
 * @host_id (0: tasks bound to no host).  @claimer names the daemon instance.
 * Returns 1 and *ret_task (free with db_task_free), 0 when there is none.
 */
int db_task_claim(struct db *db, int64_t host_id, const char *const *kinds, const char *claimer,
                  struct db_task **ret_task);

/* Report progress (clamped to 0..100) and an optional message; also a heartbeat. */
int db_task_progress(struct db *db, int64_t id, int progress, const char *message);

/*
 * Finish a running task: succeeded when @error is NULL, else failed with
 * @error.  @result may be NULL.  -ENOENT if it is not running (cancelled).
 */
int db_task_finish(struct db *db, int64_t id, const char *error, const json_t *result);

/* Cancel a queued or running task.  -ENOENT if already finished. */
int db_task_cancel(struct db *db, int64_t id);

int db_task_get(struct db *db, int64_t id, struct db_task **ret_task);

/* A task claimed this many times without finishing is failed, not requeued. */
#define DB_TASK_MAX_ATTEMPTS 5

/*
 * Requeue running tasks whose heartbeat is older than @stale_s seconds
 * (their daemon died); those already claimed DB_TASK_MAX_ATTEMPTS times
 * fail instead.  Returns the number requeued or failed.
 */
int db_task_requeue_stale(struct db *db, int stale_s);

/*
 * The same for running tasks bound to @host_id that @claimer (this host's
 * new hostd) did not claim: a previous hostd of the host left them.
 */
int db_task_requeue_host(struct db *db, int64_t host_id, const char *claimer);

/*
 * Heartbeat of every running task @claimer holds (its worker is alive even
 * when a task shows no progress).  Returns how many.
 */
int db_task_heartbeat(struct db *db, const char *claimer);

/* Accepts NULL; returns NULL. */
struct db_task *db_task_free(struct db_task *t);
