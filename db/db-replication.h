/*
 * Disaster-recovery replication of a VM's disk to another host (part of
 * db.h; include "db.h", not this).
 *
 * One `vm_replication` row per replicated VM says where its copy goes and
 * how often.  A sync is two tasks that meet through their rows, like a
 * migration: `vm.replicate` on the VM's host (the source hostd runs QEMU's
 * backup job into the target's NBD export) and `vm.replicate_in` on the
 * target (its hostd makes a new qcow2 layer and serves it over NBD).  The
 * target records a complete copy, and ends both tasks, in one statement
 * (db_replication_commit); until then the previous copy stays the recovery
 * point.  `vm.recover` on the target starts the VM there from that copy.
 */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct db;
struct db_page;

#define DB_REPLICATION_INTERVAL_MIN 10     /* seconds between syncs */
#define DB_REPLICATION_INTERVAL_MAX 604800 /* a week */
#define DB_REPLICATION_MAX_BPS_MIN 4096    /* smallest copy bandwidth cap, bytes/s */
/* A host that heart-beat this recently is alive: its VMs are not recovered
 * elsewhere (unless forced). */
#define DB_REPLICATION_ALIVE_S 10

struct db_replication {
    int64_t vm_id;
    char vm_name[64];
    int64_t source_host_id; /* the VM's host now; 0 = none */
    char source_host[64];
    int64_t target_host_id;
    char target_host[64];
    int interval_s;
    int64_t max_bps; /* 0 = no cap */
    bool enabled;
    char layer_path[1024]; /* top of the last complete copy; "" = none yet */
    int64_t layer_host_id; /* host holding layer_path; 0 = none */
    int64_t layer_task, bitmap_task;
    int64_t point_at_us; /* recovery point; 0 = none */
    int64_t point_age_s; /* by the database clock; -1 = none */
    int syncs;
    int64_t last_sync_at_us;
    int64_t last_bytes; /* -1 = none */
    bool last_full;
    char last_error[512];
    int64_t next_sync_in_s;          /* may be negative: due */
    int64_t recovered_at_us;         /* 0 = never */
    int64_t source_heartbeat_age_ms; /* -1 = never or no host */
    /* recovering (a vm.recover under way), recovered, off, syncing (a
     * vm.replicate queued or running), failing (the last sync failed),
     * waiting (no complete copy yet) or ok. */
    char state[16];
    int64_t task_id; /* the vm.replicate or vm.recover under way; 0 = none */
};

/*
 * Replicate VM @vm_id to host @target_host_id every @interval_s seconds
 * (10..604800), the copy capped at @max_bps bytes/s (0: no cap).  Creates
 * or changes the row and enables it; a new target starts over with a full
 * copy.  The first sync is due at once.  -ENOENT no such VM or host;
 * -EINVAL the VM is on that host; -ERANGE bad interval or cap.
 */
int db_replication_set(struct db *db, int64_t vm_id, int64_t target_host_id, int interval_s,
                       int64_t max_bps);

/* Stop scheduling syncs of @vm_id (the copy stays).  -ENOENT when not replicated. */
int db_replication_disable(struct db *db, int64_t vm_id);

/* Make the next sync due now.  -ENOENT when not replicated or disabled;
 * -ESRCH when the VM is not running (only running VMs are synced). */
int db_replication_sync_now(struct db *db, int64_t vm_id);

int db_replication_get(struct db *db, int64_t vm_id, struct db_replication *ret);

/* Every replicated VM by name; *ret is malloc'd (free()). */
int db_replication_list(struct db *db, struct db_replication **ret, size_t *ret_n);

/*
 * What an admin sees of replications, as JSON (the API's and `atriumctl
 * --json`'s): objects of vm_id, vm, source_host_id, source_host,
 * target_host_id, target_host, interval_s, max_bps (null: no cap), enabled,
 * state (as struct db_replication's), copy_host_id, recovery_point_at,
 * recovery_point_age_s (null: no copy yet), syncs, last_sync_at (the last
 * complete sync), last_bytes, last_full, last_error, next_sync_at,
 * next_sync_in_s, recovered_at, source_heartbeat_age_ms, task_id and
 * task_progress (the sync or recovery under way).
 *
 * _list: a page by VM name (@page NULL: all) into *ret_items, a new array.
 * _get:  VM @vm_id's into *ret, a new object; -ENOENT when not replicated.
 */
int db_replication_list_json(struct db *db, const struct db_page *page, json_t **ret_items);
int db_replication_get_json(struct db *db, int64_t vm_id, json_t **ret);

enum db_replication_op {
    DB_REPLICATION_SET,     /* db_replication_set */
    DB_REPLICATION_OFF,     /* db_replication_disable */
    DB_REPLICATION_SYNC,    /* db_replication_sync_now */
    DB_REPLICATION_RECOVER, /* db_replication_recover_request */
};

/*
 * Why @op on VM @vm_id failed with @r, as a sentence for the admin (the CLI
 * and the API say the same): e.g. for a recovery refused because the VM's
 * host is alive, that host and how long ago it heart-beat.  Reads the
 * replication for that; writes @buf (NUL-terminated) and returns it.
 */
const char *db_replication_why(struct db *db, enum db_replication_op op, int64_t vm_id, int r,
                               char *buf, size_t size);

/*
 * Queue a `vm.replicate` task (params to_host, max_bps) for each VM on
 * host @host_id whose sync is due, that runs, and has no sync, migration
 * or recovery under way; their next sync is moved one interval on.  One
 * statement.  Returns how many were queued.
 */
int db_replication_schedule(struct db *db, int64_t host_id);

/*
 * Source: the backup job of task @src_task is about to run (it may clear
 * the dirty bitmap from now on); @ok false: it failed and left the bitmap
 * as it was.
 */
int db_replication_bitmap(struct db *db, int64_t vm_id, int64_t src_task, bool ok);

/*
 * Source: the copy for target task @in_task is complete and its NBD
 * connection closed: merge @result ("bytes", "point_us", "full") into that
 * task's result, with progress 90, which wakes the target host.  -ENOENT
 * when the task no longer runs.
 */
int db_replication_copied(struct db *db, int64_t in_task, const json_t *result);

/*
 * Target: @layer (on @host_id) is a complete copy of VM @vm_id as of
 * @point_us; in one statement it becomes the recovery point and tasks
 * @in_task and @src_task (if still running) succeed with @result.  Sets
 * *ret_old_layer (may be NULL) to the layer it replaces ("" none).
 * -ENOENT when the replication no longer targets @host_id or @in_task no
 * longer runs (the copy is then not used).
 */
int db_replication_commit(struct db *db, int64_t vm_id, int64_t host_id, const char *layer,
                          int64_t point_us, int64_t bytes, bool full, int64_t in_task,
                          int64_t src_task, const json_t *result, char *ret_old_layer,
                          size_t old_size);

/* Target: the copy's top layer was merged into @new_layer (same content). */
int db_replication_set_layer(struct db *db, int64_t vm_id, const char *old_layer,
                             const char *new_layer);

/* A sync failed: its reason is kept for `atriumctl vm replication`. */
int db_replication_failed(struct db *db, int64_t vm_id, const char *error);

/*
 * Queue `vm.recover` of VM @vm_id on host @host_id (params force).  Sets
 * *ret_task.  -ENOENT not replicated; -ENXIO no complete copy on that host;
 * -EALREADY the VM is already on that host; -EBUSY a recovery is under
 * way; -EADDRINUSE the VM's host heart-beat in the last @alive_s seconds
 * and @force is false.
 */
int db_replication_recover_request(struct db *db, int64_t vm_id, int64_t host_id, bool force,
                                   int alive_s, int64_t created_by, int64_t *ret_task);

/*
 * Target: in one statement the VM's row moves to @host_id with disk
 * @disk_path and desired power running (its hostd boots it), the
 * replication stops (the copy is now the VM's disk), syncs under way are
 * cancelled and task @task succeeds with @result.  Checks again that the
 * old host is not alive unless @force.  -EADDRINUSE when it is.
 */
int db_replication_recover_commit(struct db *db, int64_t vm_id, int64_t host_id,
                                  const char *disk_path, int64_t task, bool force, int alive_s,
                                  const json_t *result);
