/*
 * A set of test VMs of the test guest driven by one poll loop: the shared
 * part of the instant-clone test (hv.instant) and bench (bench.instant).
 * Each VM is started with libatrium-hv; its QMP events feed its migration
 * job (template save) and note the guest opening the identity port; its
 * serial log's directory is watched with inotify so waiting for a line on
 * it wakes at once.  Every QEMU's pid is recorded at start so a teardown or
 * a signal handler can kill it without the handle.
 */
#pragma once

#include "hv.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define VS_MAX_VMS 48

struct vs_vm {
    struct hv_vm *vm;
    pid_t pid; /* recorded at start; 0 once stopped */
    struct hv_mig_job *job;
    bool port_open; /* the guest opened org.atrium.identity (VSERPORT_CHANGE) */
    bool save_done, load_done;
    int save_err, load_err;
    struct hv_mig_stats st; /* the save's */
    char load_msg[400];
    int64_t t0; /* when vs_start started it (monotonic ms) */
};

struct vs {
    char runtime[96];
    int inotify;
    struct vs_vm vms[VS_MAX_VMS];
};

/* The test guest's files (tests/guest/build.sh output) */
struct vs_guest {
    char kernel[PATH_MAX], initrd[PATH_MAX], golden[PATH_MAX], cmdline[256];
};

/* A whole file, NUL-terminated (free()), or NULL. */
char *vs_slurp(const char *path);
bool vs_file_has(const char *path, const char *needle);

/* Read GUEST_DIR's kernel, initrd, disk and command line names.  -errno. */
int vs_guest_load(const char *dir, struct vs_guest *g);

/* Empty set whose VMs keep their runtime dirs under @runtime (made here). */
int vs_init(struct vs *s, const char *runtime);

/* Start @d in @slot (its t0 and pid noted).  -errno with @err. */
int vs_start(struct vs *s, int slot, const struct hv_vm_def *d, struct atr_error *err);

/* Kill @slot's QEMU, wait up to @timeout_ms for it to end, free it. */
void vs_stop(struct vs *s, int slot, int timeout_ms);

/* Stop every VM; a VM whose handle is gone but whose pid was recorded is
 * killed by that pid and reaped.  Closes the inotify descriptor. */
void vs_close(struct vs *s);

/* Async-signal-safe: SIGKILL every recorded pid. */
void vs_kill_pids(struct vs *s);

typedef bool (*vs_cond_fn)(const void *arg);

/* Drive every VM's descriptors until @cond(@arg) or @timeout_ms: true if @cond. */
bool vs_drive_until(struct vs *s, vs_cond_fn cond, const void *arg, int timeout_ms);

bool vs_cond_flag(const void *arg);    /* arg: bool * */
bool vs_cond_running(const void *arg); /* arg: struct vs_vm * */
bool vs_cond_exited(const void *arg);  /* arg: struct vs_vm * */

/* Save @v's device state into @path (template; result in save_done/save_err/st). */
int vs_save_start(struct vs_vm *v, const char *path);
/* Load @path into @v, started with incoming_defer (result in load_done/load_err/load_msg). */
int vs_load_start(struct vs_vm *v, const char *path);
