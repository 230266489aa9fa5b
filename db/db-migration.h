/*
 * Live migration of a VM between hosts (part of db.h; include "db.h", not this).
 *
 * A migration is two tasks: `vm.migrate` on the VM's host (the source
 * hostd drives QEMU's migrate and owns the outcome) and `vm.migrate_in` on
 * the destination (its hostd starts the listening QEMU).  They meet only
 * through these rows: the destination writes its URI into the source task
 * (a progress change, so the source host is woken by NOTIFY), the source
 * moves the VM's row when QEMU says completed, and cancels the destination
 * task when anything fails, which tells the destination to drop its QEMU.
 */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct db;

/*
 * Queue the migration of VM @vm_id to host @to_host_id (a `vm.migrate` task
 * on its current host, params {"to_host": id, "copy_storage": bool}); with
 * @copy_storage the disk is copied to the destination's own storage too.  Sets *ret_task.  -ENOENT no
 * such VM or host; -ENXIO the VM is on no host or already on @to_host_id;
 * -EBUSY a migration of this VM is already queued or running.
 */
int db_migration_request(struct db *db, int64_t vm_id, int64_t to_host_id, bool copy_storage,
                         int64_t created_by, int64_t *ret_task);

/* The same with a copy bandwidth cap (task param max_bandwidth_mbs; 0: hostd's default). */
struct db_migration_req {
    int64_t vm_id, to_host_id;
    bool copy_storage;
    int max_bandwidth_mbs;
    int64_t created_by; /* 0: none */
};
int db_migration_request_opts(struct db *db, const struct db_migration_req *req, int64_t *ret_task);

/*
 * The destination listens at @uri for source task @src_task (and, when the
 * storage is copied, exports its new disk @disk over NBD at @nbd,
 * "host:port"; else both NULL): recorded in the task's result ("uri",
 * "nbd", "disk") with progress 10, which wakes the source host.  -ENOENT
 * when the task no longer runs.
 */
int db_migration_listening(struct db *db, int64_t src_task, const char *uri, const char *nbd,
                           const char *disk);

/*
 * QEMU completed the migration: in one statement the VM's row moves from
 * @from_host to @to_host (qemu_pid cleared until the destination reports
 * its own; disk_path becomes @new_disk_path unless NULL) and @src_task
 * succeeds with @result.  -ENOENT when the VM is no longer on @from_host.
 */
int db_migration_commit(struct db *db, int64_t vm_id, int64_t from_host, int64_t to_host,
                        int64_t src_task, const char *new_disk_path, const json_t *result);

/* Cancel VM @vm_id's queued or running migration (its `vm.migrate` task):
 * the source hostd then cancels QEMU's migration.  -ENOENT when none. */
int db_migration_cancel(struct db *db, int64_t vm_id, int64_t *ret_task);

/*
 * Maintenance: when host @host_id is in state maintenance, queue the
 * migration of its next running VM (one at a time per host) to the online,
 * heart-beating host with the most memory left, skipping VMs whose
 * migration failed in the last minute (no retry storm).  Returns 1 and *ret_task when one
 * was queued, 0 when there is nothing to do (not in maintenance, a
 * migration already under way, no VM left, or no host to take it).
 */
int db_migration_drain(struct db *db, int64_t host_id, int64_t *ret_task);

/*
 * Destination of a migration: the VM's SPICE client has linked @n channels
 * to the new QEMU (the source starts the copy once they are all there).
 * Written into the source task @src_task; -ENOENT when it no longer runs.
 */
int db_migration_spice_channels(struct db *db, int64_t src_task, int n);
