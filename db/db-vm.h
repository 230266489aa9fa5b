/*
 * VMs (part of db.h; include "db.h", not this).
 *
 * The row holds desired state (desired_power, written by the broker, poold
 * and atriumctl) and actual state (state, actual_power, qemu_pid,
 * last_error, written by the hostd of vms.host_id).  Every change fires
 * NOTIFY atrium_vm '<vm id>:<host id>' so hostd reconciles at once.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

struct db;

struct db_vm {
    int64_t id;
    char name[64];
    int64_t pool_id, host_id, image_version_id, assigned_user_id; /* 0 = none */
    char state[16];
    char desired_power[16]; /* running, paused, stopped, deleted */
    char actual_power[16];  /* off, starting, running, paused, crashed */
    int vcpus;
    int memory_mb;
    int disk_gb;
    char disk_path[1024];
    char boot[8]; /* disk, kernel */
    char boot_kernel[1024];
    char boot_initrd[1024];
    char boot_cmdline[1024];
    char nic_mode[8]; /* none, user, bridge */
    char bridge[16];
    char mac[18];
    int balloon_mb;            /* live memory target; 0 = none (all of memory_mb) */
    int resources_gen;         /* bumped on every change of the live resources */
    int applied_gen;           /* what hostd applied */
    int cpu_weight;            /* cgroup cpu.weight 1..10000 (100: everyone equal) */
    int cpu_max_pct;           /* CPU cap in percent of one host CPU; 0 = none */
    int memory_max_mb;         /* cgroup memory.max of the QEMU process; 0 = none */
    int disk_iops;             /* disk operations per second; 0 = unlimited */
    int64_t disk_bps;          /* disk bytes per second; 0 = unlimited */
    int64_t net_bps;           /* network bytes per second; 0 = unlimited */
    bool boosted;              /* has the host first (db_vm_boost) */
    char source_snapshot[160]; /* "VM/SNAPSHOT" this VM was cloned from, or "" */
    int qemu_pid;              /* 0 = none */
    int64_t qemu_started_at_us;
    char last_error[2048];
    int64_t state_changed_at_us, created_at_us, updated_at_us;
};

/* A new VM row; strings NULL = column default. */
struct db_vm_new {
    const char *name;
    int64_t host_id, pool_id, image_version_id; /* 0 = none */
    int vcpus;                                  /* 0 = default */
    int memory_mb;                              /* 0 = default */
    const char *disk_path;
    const char *boot; /* disk, kernel */
    const char *boot_kernel, *boot_initrd, *boot_cmdline;
    const char *nic_mode; /* none, user, bridge */
    const char *bridge;
    const char *desired_power;   /* running (default), paused, stopped */
    const char *source_snapshot; /* NULL = none */
};

int db_vm_create(struct db *db, const struct db_vm_new *v, int64_t *ret_id);

int db_vm_get(struct db *db, int64_t id, struct db_vm *ret);
int db_vm_get_by_name(struct db *db, const char *name, struct db_vm *ret);

/*
 * VMs on host @host_id (0: every VM), by name.  *ret_vms is malloc'd
 * (free()), *ret_n entries.
 */
int db_vm_list(struct db *db, int64_t host_id, struct db_vm **ret_vms, size_t *ret_n);

/*
 * What hostd saw.  NULL strings and qemu_pid < 0 leave a column as it is;
 * qemu_pid 0 clears it (and qemu_started_at), a positive pid sets both.
 */
struct db_vm_report {
    const char *state;
    const char *actual_power;
    int qemu_pid;
    const char *last_error;
    int applied_gen; /* <= 0: unchanged (generations start at 1) */
};

/* Write hostd's view of VM @id.  -ENOENT if the row is gone. */
int db_vm_report(struct db *db, int64_t id, const struct db_vm_report *rep);

/*
 * hostd, for a row poold marked `lost` while this host was silent but not
 * fenced: the VM is still here.  @running: its QEMU runs (or is paused);
 * false: it is off and should be.  The row goes back to the state it was
 * lost in (vms.lost_state), with what happened meanwhile applied: a live
 * session gives its state; a desktop whose session ended meanwhile goes to
 * logging_off (a floating pool refreshes it, its person unassigned) unless
 * a dedicated pool still assigns it to its person (assigned); a spare or a
 * VM outside pools is ready when running, stopped when not.  One
 * statement.  0: restored; -ENOENT: not lost (or no such row).
 */
int db_vm_found(struct db *db, int64_t id, bool running);

/*
 * Ask for @desired (running, paused, stopped, deleted).  Asking a failed VM
 * to run again clears its failure (state becomes stopped, then hostd starts
 * it), which is the admin's "try again".  -ENOENT if there is no such VM.
 */
int db_vm_set_desired(struct db *db, int64_t id, const char *desired);

/*
 * Set the live memory target of VM @id to @balloon_mb MiB (0: none, the VM
 * gets all its memory back), applied by hostd without a restart.  Bumps
 * resources_gen.  -EINVAL when out of range (64 .. memory_mb).
 */
int db_vm_set_balloon(struct db *db, int64_t id, int balloon_mb);

/*
 * Live resource limits, applied by hostd without a restart (cgroup, QMP).
 * A field < 0 leaves its column as it is; 0 lifts the limit (cpu_weight: 0
 * also means unchanged).  Bumps resources_gen.  -EINVAL when a value is
 * out of range (cpu_weight 1..10000, memory_max_mb >= 64), -ENOENT when
 * there is no such VM.
 */
struct db_vm_resources {
    int cpu_weight;
    int cpu_max_pct;
    int memory_max_mb;
    int disk_iops;
    int64_t disk_bps;
    int64_t net_bps;
};

int db_vm_set_resources(struct db *db, int64_t id, const struct db_vm_resources *res);

/*
 * Give VM @id its host first (@on) or end that (!@on).  One statement: the
 * VM becomes the only boosted VM of its host and every VM of that host gets
 * a new resources generation, so hostd re-applies the weights of all of
 * them.  -ENOENT when there is no such VM.
 */
int db_vm_boost(struct db *db, int64_t id, bool on);

/* Remove VM @id's row (hostd, after its process, sockets and disk are gone). */
int db_vm_delete(struct db *db, int64_t id);

/*
 * Which host's VM names @disk_path (or a file of the same name in any
 * directory) as its disk: sets *ret_host_id (0: a VM on no host yet).
 * -ENOENT when no VM row names it.
 */
int db_vm_disk_owner(struct db *db, const char *disk_path, int64_t *ret_host_id);

#include "db-snapshot.h"
