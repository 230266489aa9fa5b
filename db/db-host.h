/*
 * Hosts: one row per hypervisor (part of db.h; include "db.h", not this).
 *
 * Each atrium-hostd registers its host at start-up (capacity, accelerator,
 * address) and heart-beats it; a host whose heartbeat is older than a few
 * intervals is shown as not responding.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

struct db;

struct db_host {
    int64_t id;
    char name[64];
    char address[256];
    char state[16]; /* online, offline, maintenance */
    int cpus;
    int64_t memory_mb;
    int cpu_capacity;
    int64_t memory_capacity_mb;
    char accel[16]; /* unknown, kvm, tcg */
    char accel_note[512];
    char version[32];
    int64_t heartbeat_at_us;  /* 0 = never */
    int64_t heartbeat_age_ms; /* how long ago, by the database clock; -1 = never */
    int vm_count;             /* VMs placed on the host */
    int vms_running;          /* of which QEMU runs (running or paused) */
};

struct db_host_reg {
    const char *name; /* [A-Za-z0-9][A-Za-z0-9._-]{0,62} */
    const char *address;
    int cpus;
    int64_t memory_mb;
    const char *accel; /* kvm or tcg */
    const char *accel_note;
    const char *version;
};

/*
 * Register (or re-register after a restart) the host named reg->name: its
 * row is created or updated in one statement, set online and heart-beaten.
 * Capacity offered to VMs starts equal to the hardware and is kept when an
 * admin changed it.  Sets *ret_id.
 */
int db_host_register(struct db *db, const struct db_host_reg *reg, int64_t *ret_id);

/* Heartbeat: the host is alive now.  -ENOENT if the row is gone. */
int db_host_heartbeat(struct db *db, int64_t id);

/* Mark the host offline (hostd stopping cleanly). */
int db_host_set_state(struct db *db, int64_t id, const char *state);

int db_host_get(struct db *db, int64_t id, struct db_host *ret);
int db_host_get_by_name(struct db *db, const char *name, struct db_host *ret);

/* Every host, by name.  *ret_hosts is malloc'd (free()), *ret_n entries. */
int db_host_list(struct db *db, struct db_host **ret_hosts, size_t *ret_n);

/*
 * One metrics sample of this host (vm_id 0) or of one of its VMs.  Fields
 * that were not measured are negative and stored as their column default
 * (balloon_mb and vm_count: NULL).
 */
struct db_metric_sample {
    int64_t host_id;
    int64_t vm_id;
    double cpu_pct;
    int64_t mem_used_mb, mem_total_mb;
    int64_t balloon_mb;
    int64_t disk_rd_bytes, disk_wr_bytes, disk_rd_ops, disk_wr_ops;
    int64_t net_rx_bytes, net_tx_bytes;
    int vm_count;
};

/* Insert @n samples in one statement (taken now). */
int db_host_metrics_insert(struct db *db, const struct db_metric_sample *s, size_t n);

/* Delete this host's samples older than @hours.  Returns how many were deleted. */
int db_host_metrics_prune(struct db *db, int64_t host_id, int hours);
