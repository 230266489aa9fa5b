/*
 * HA restart with fencing (part of db.h; include "db.h", not this).
 *
 * A host promises, through hosts.fence_deadline_s, that none of its QEMUs
 * runs once it has gone that long without a database heartbeat (hostd and
 * its fence guard kill them).  poold (the leader) fences a host whose
 * heartbeat is older than that deadline plus a margin, and only then moves
 * its HA-flagged VMs (vms.ha) to healthy hosts, where their hostd boots
 * them from their (shared) disks.  The schema refuses any other move of a
 * VM off a host that stopped heart-beating (migration 0006).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db;

/* hostd at start: record this host's fence deadline (seconds, 1..3600). */
int db_host_set_fence_deadline(struct db *db, int64_t host_id, int deadline_s);

/*
 * hostd's heartbeat: the host is alive now.  A fenced host becomes online
 * again (in the same statement, under the host row's lock, so poold either
 * moved a VM before it or sees the host online and moves nothing).  Sets
 * *ret_was_fenced.  -ENOENT if the row is gone.
 */
int db_host_heartbeat_unfence(struct db *db, int64_t host_id, bool *ret_was_fenced);

struct db_fenced_host {
    int64_t id;
    char name[64];
    int64_t heartbeat_age_ms;
    int fence_deadline_s;
};

/*
 * poold: fence every host (not fenced yet, with a deadline) whose heartbeat
 * is older than its fence deadline + @margin_s seconds, one statement.  A
 * database that itself started less than that long ago fences nobody (no
 * heartbeat could be written while it was down).  *ret is malloc'd (free()).
 */
int db_host_fence_stale(struct db *db, int margin_s, struct db_fenced_host **ret, size_t *ret_n);

struct db_ha_move {
    int64_t vm_id;
    char vm_name[64];
    char from_host[64];
    int64_t to_host_id;
    char to_host[64];
};

/*
 * poold: move one HA VM that should run (desired running or paused) off a
 * fenced host to the online host, heart-beating within @stale_s, with the
 * most free memory that fits it (vCPUs x @cpu_overcommit too).  The row is
 * reset to provisioning/off so that host's hostd boots it.  One statement,
 * safe to repeat.  0 and *ret: moved; -ENOENT: none waits; -ENOSPC: some
 * wait but no host has room (*ret names one of them).
 */
int db_vm_ha_restart_next(struct db *db, int stale_s, int cpu_overcommit, struct db_ha_move *ret);

/* The VM's HA flag.  -EINVAL for a pool VM (not allowed), -ENOENT no such VM. */
int db_vm_set_ha(struct db *db, int64_t vm_id, bool on);
int db_vm_get_ha(struct db *db, int64_t vm_id, bool *ret_on);
