/*
 * Pools, golden images and their versions (part of db.h; include "db.h").
 * Owned by pool-manager/: other modules go through pool.h.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db;

/* Display protocols a pool offers, as a bit set. */
enum db_protocol {
    DB_PROTO_SPICE = 1 << 0,
    DB_PROTO_RDP = 1 << 1,
    DB_PROTO_VNC = 1 << 2,
    DB_PROTO_BROWSER = 1 << 3,
};
#define DB_PROTO_ALL (DB_PROTO_SPICE | DB_PROTO_RDP | DB_PROTO_VNC | DB_PROTO_BROWSER)

/* "spice" -> DB_PROTO_SPICE ...; 0 for an unknown name. */
unsigned db_protocol_from_name(const char *name);
/* DB_PROTO_SPICE -> "spice" ...; NULL for anything but one known bit. */
const char *db_protocol_name(unsigned proto);

struct db_pool {
    int64_t id;
    char name[64];
    char description[512];
    int64_t image_version_id; /* 0 = none yet */
    int vcpus;
    int memory_mb;
    int disk_gb;
    unsigned protocols;       /* DB_PROTO_ bits */
    char assignment[16];      /* floating | dedicated */
    int min_size, max_size, spare;
    char name_pattern[64];    /* "{pool}-{n}" */
    int idle_timeout_s;
    int disconnect_timeout_s;
    char power_policy[16];    /* on | paused | off */
    bool enabled;
    char clone_mode[8];       /* linked | instant ("" = linked) */
};

/* Insert; sets *ret_id.  -EEXIST for a taken name, -EINVAL for a value the schema refuses. */
int db_pool_insert(struct db *db, const struct db_pool *p, int64_t *ret_id);
/* Update every column of row p->id.  -ENOENT if there is none. */
int db_pool_update(struct db *db, const struct db_pool *p);
/* Fill *ret from row @id (or @name).  -ENOENT if there is none. */
int db_pool_get(struct db *db, int64_t id, struct db_pool *ret);
int db_pool_get_by_name(struct db *db, const char *name, struct db_pool *ret);
/* All pools ordered by name; *ret_pools is malloc'd (free()). */
int db_pool_list(struct db *db, struct db_pool **ret_pools, size_t *ret_n);
/* Delete a pool that holds no VMs: -EBUSY if it still does, -ENOENT if none. */
int db_pool_delete(struct db *db, int64_t id);

struct db_image_version {
    int64_t id;
    int64_t image_id;
    char image_name[128];
    int version;
    char state[16];           /* importing | ready | failed | deleting */
    char path[512];
    int64_t size_bytes;
    int64_t virtual_size_bytes;
    char sha256[65];
    char boot_kernel[512];
    char boot_initrd[512];
    char boot_cmdline[512];
    char notes[512];
};

/*
 * Register a new version of image @name (created when absent), numbered one
 * above its latest, state 'importing'.  Sets *ret_id and *ret_version.
 */
int db_image_version_new(struct db *db, const char *name, const char *notes, int64_t *ret_id,
                         int *ret_version);
/* Mark an importing version ready with its file's facts.  -ENOENT unless importing. */
int db_image_version_ready(struct db *db, const struct db_image_version *v);
int db_image_version_failed(struct db *db, int64_t id, const char *error);
int db_image_version_get(struct db *db, int64_t id, struct db_image_version *ret);
/* Versions of every image (or of @image_name when not NULL), newest first; free(). */
int db_image_version_list(struct db *db, const char *image_name,
                          struct db_image_version **ret_versions, size_t *ret_n);
/* Delete a version no pool or VM uses: -EBUSY when in use. */
int db_image_version_delete(struct db *db, int64_t id);

/* ------------------------------------------------- pool manager (poold) -- */

/* VMs of one pool by phase (VMs being deleted are not counted). */
struct db_pool_counts {
    int ready;    /* spare, waiting for a person */
    int inflight; /* provisioning, booting, refreshing */
    int in_use;   /* assigned, connected, disconnected, logging_off */
    int other;    /* stopped, failed, lost, migrating */
    int held;     /* of other: spares lost on a silent host, holding their place
                     (not replaced) until the host is fenced or heart-beats again */
    int total;    /* all of the above */
};
int db_pool_counts(struct db *db, int64_t pool_id, struct db_pool_counts *ret);

/* Take the next VM number of a pool (numbers only grow).  Sets *ret_n. */
int db_pool_next_vm_number(struct db *db, int64_t pool_id, int64_t *ret_n);

/* Record the pool's status if it changed (so an unchanged status fires no NOTIFY). */
int db_pool_set_status(struct db *db, int64_t pool_id, const char *status, const char *detail);

/* Mark the pool failing (stop provisioning) or clear it (an admin's decision). */
int db_pool_set_failing(struct db *db, int64_t pool_id, bool failing);
/* Is provisioning stopped for repeated failures? */
int db_pool_is_failing(struct db *db, int64_t pool_id, bool *ret);

/* Provisioning failures of a pool in the last @window_s seconds (from the audit log). */
int db_pool_failures(struct db *db, int64_t pool_id, int window_s, int *ret_n);

/* A host able to take VMs, with what is left of its capacity. */
struct db_host_room {
    int64_t host_id;
    char name[64];
    int64_t free_memory_mb; /* memory capacity minus memory of its VMs */
    int free_vcpus;         /* vCPU capacity (cpu_capacity x overcommit) minus vCPUs of its VMs */
    int pool_vms;           /* VMs of the pool asked about already there (for spreading) */
};

/*
 * Online hosts whose heartbeat is younger than @stale_s seconds, with their
 * room for more VMs (@overcommit multiplies each host's cpu_capacity) and how
 * many VMs of @pool_id each holds.  *ret_rooms is malloc'd (free()).
 */
int db_host_rooms(struct db *db, int64_t pool_id, int stale_s, int overcommit,
                  struct db_host_room **ret_rooms, size_t *ret_n);

/*
 * Mark VMs on hosts whose heartbeat is older than @stale_s seconds `lost`
 * (remembering the state each was in, vms.lost_state, for db_vm_found).
 * Returns how many were marked.
 */
int db_vms_mark_lost(struct db *db, int stale_s);

/* A VM the pool manager retired or sent to refresh: which, where, why. */
struct db_vm_brief {
    int64_t id;
    int64_t host_id;
    char name[64];
    char state[16];       /* the state it is in now */
    char last_error[256];
};

/*
 * State transitions the pool manager makes on pool @pool_id; each returns
 * the VMs it changed in *ret (malloc'd, free()) and their count in *ret_n.
 *
 * retire_broken:  failed VMs, and lost VMs of hosts that promise no fencing
 *                 (fence_deadline_s 0), nobody holds a live session on
 *                 -> deleting (desired 'deleted'); lost VMs of other hosts
 *                 wait for db_pool_retire_fenced or for their host
 * retire_late:    provisioning/booting/refreshing longer than @timeout_s
 *                 -> deleting, last_error says so
 * retire_stale:   VMs on another image version than the pool's: unowned
 *                 spares -> deleting; VMs in use -> image_stale (replaced at logoff)
 * after_logoff:   logging_off VMs -> refreshing (same image) or deleting
 *                 (stale image); dedicated VMs whose image is stale and whose
 *                 owner has no live session -> deleting
 */
int db_pool_retire_broken(struct db *db, int64_t pool_id, struct db_vm_brief **ret, size_t *ret_n);

/* A pool VM retired because its host was fenced. */
struct db_pool_fenced_vm {
    int64_t id;
    int64_t host_id; /* the fenced host; its hostd deletes the row when it returns */
    char name[64];
    char host[64];
    char was[16];       /* its state before its host went silent (ready, connected, ...) */
    int64_t session_id; /* the desktop session ended with it, 0: none */
};

/*
 * Retire every VM of @pool_id on a fenced host (its QEMUs are dead by the
 * host's own promise): desired deleted, state deleting, the assignment
 * cleared, and a live session on it ended (end_reason 'host fenced', which
 * NOTIFYs displayd to close its viewers).  One statement, safe to repeat;
 * VMs on hosts that are merely silent are never touched.  *ret is
 * malloc'd (free()).
 */
int db_pool_retire_fenced(struct db *db, int64_t pool_id, struct db_pool_fenced_vm **ret,
                          size_t *ret_n);
int db_pool_retire_late(struct db *db, int64_t pool_id, int timeout_s, struct db_vm_brief **ret,
                        size_t *ret_n);
int db_pool_retire_stale(struct db *db, int64_t pool_id, int64_t image_version_id,
                         struct db_vm_brief **ret, size_t *ret_n);
int db_pool_after_logoff(struct db *db, int64_t pool_id, struct db_vm_brief **ret,
                         size_t *ret_n);

/*
 * Retire up to @count unowned ready (or stopped) VMs of the pool, newest
 * first, because the pool shrank.  VMs in use are never touched.
 */
int db_pool_retire_extra(struct db *db, int64_t pool_id, int count, struct db_vm_brief **ret,
                         size_t *ret_n);

/* Delete rows of deleting VMs that were never placed on a host (no hostd will). */
int db_pool_drop_unplaced(struct db *db, int64_t pool_id);
