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
