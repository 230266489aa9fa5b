/*
 * Snapshots of a VM's disk, with or without its RAM (part of db.h through
 * db-vm.h; include "db.h", not this).
 *
 * The row is the catalogue; the snapshot itself lives inside the VM's qcow2
 * overlay on its host.  Creating, reverting, deleting and cloning are tasks
 * bound to the VM's host (kinds vm.snapshot.create, vm.snapshot.revert,
 * vm.snapshot.delete, vm.snapshot.clone; params carry "snapshot_id") that
 * its hostd claims and finishes, updating the row.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

struct db;

struct db_snapshot {
    int64_t id, vm_id, task_id; /* task_id 0 = none */
    char name[64];
    char description[256];
    bool with_ram;
    char state[16];    /* creating, ready, failed, deleting */
    char vm_power[16]; /* off, running, paused: how the VM was when taken */
    int64_t size_bytes;
    char error[1024];
    int64_t created_at_us;
};

/*
 * Catalogue snapshot @name of VM @vm_id (state creating) and queue the
 * vm.snapshot.create task for the VM's host, in one statement.  -EEXIST
 * when the VM already has a snapshot of that name, -ENOENT when there is no
 * such VM, -ENXIO when it has no host.  Sets *ret_id and *ret_task (either
 * may be NULL).
 */
int db_snapshot_request(struct db *db, int64_t vm_id, const char *name, bool with_ram,
                        const char *description, int64_t *ret_id, int64_t *ret_task);

int db_snapshot_get(struct db *db, int64_t id, struct db_snapshot *ret);
int db_snapshot_get_by_name(struct db *db, int64_t vm_id, const char *name,
                            struct db_snapshot *ret);

/* Snapshots of VM @vm_id, oldest first.  *ret_snaps is malloc'd (free()). */
int db_snapshot_list(struct db *db, int64_t vm_id, struct db_snapshot **ret_snaps, size_t *ret_n);

/*
 * Queue a task of @kind (vm.snapshot.revert, vm.snapshot.delete or
 * vm.snapshot.clone) for snapshot @id on its VM's host, with @target_vm_id
 * (clone: the new VM; else 0).  delete also marks the row deleting.  Only a
 * ready snapshot qualifies (-EBUSY otherwise; a failed one may be deleted).
 */
int db_snapshot_task(struct db *db, int64_t id, const char *kind, int64_t target_vm_id,
                     int64_t *ret_task);

/*
 * hostd's account: @state (ready or failed), @error ("" when ready),
 * @vm_power and @size_bytes (< 0: unchanged).
 */
int db_snapshot_report(struct db *db, int64_t id, const char *state, const char *error,
                       const char *vm_power, int64_t size_bytes);

/* Remove the row (hostd, once the snapshot is gone from the overlay). */
int db_snapshot_delete(struct db *db, int64_t id);

/* Forget every snapshot of VM @vm_id (its overlay was replaced by a fresh clone).  Returns how
 * many. */
int db_snapshot_forget_vm(struct db *db, int64_t vm_id);
