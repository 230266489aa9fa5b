/* Private to atriumctl: shared command context and exit codes. */
#pragma once

#include "common.h"
#include "db.h"

#include <stdbool.h>

/* Exit codes, documented in docs/atriumctl.md and `atriumctl --help`. */
enum ctl_exit {
    CTL_EXIT_OK = 0,
    CTL_EXIT_FAILED = 1,      /* the operation was tried and failed */
    CTL_EXIT_USAGE = 2,       /* bad command line */
    CTL_EXIT_CONFIG = 3,      /* configuration file missing or invalid */
    CTL_EXIT_DB = 4,          /* database unreachable */
    CTL_EXIT_SCHEMA = 5,      /* schema newer than this binary, or changed, or pending */
};

struct ctl {
    const char *config_path; /* --config, or NULL */
    bool json;               /* --json output */
    struct atr_config *cfg;  /* loaded on demand */
};

/* Load the configuration once; prints the error and returns an exit code on failure. */
int ctl_load_config(struct ctl *ctl);

/* Connect to the database; prints the error and returns an exit code on failure. */
int ctl_open_db(struct ctl *ctl, struct db **ret_db);

/* One entry per top-level command word; cmd-<name>.c defines its run(). */
struct ctl_command {
    const char *name;
    const char *summary;
    int (*run)(struct ctl *ctl, int argc, char **argv);
};

int ctl_cmd_db(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_image(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_pool(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_user(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_vm(struct ctl *ctl, int argc, char **argv);
int ctl_cmd_host(struct ctl *ctl, int argc, char **argv);

/* A VM by name or id; prints why not (no such VM, database error). */
int ctl_find_vm(struct db *db, const char *arg, struct db_vm *ret);

/*
 * Wait for task @id to end (at most @timeout_s), printing its progress and
 * message as they change (not with --json).  CTL_EXIT_OK with *ret set (the
 * caller frees it) once it ended, however it ended; otherwise an exit code,
 * its reason printed.
 */
int ctl_task_follow(struct ctl *ctl, struct db *db, int64_t id, int timeout_s,
                    struct db_task **ret);

/* `vm replication ...` and `vm recover ...` (cmd-replication.c); argv[0] is "vm". */
int ctl_cmd_vm_replication(struct ctl *ctl, int argc, char **argv);
/* One "replication:" line for `vm show` when VM @vm_id is replicated. */
void ctl_replication_show_line(struct db *db, int64_t vm_id);
