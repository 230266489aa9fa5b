/*
 * The audit log (part of db.h; include "db.h", not this).  Every security-
 * relevant act — log-ins, failed log-ins, admin changes, console tickets —
 * leaves one row.
 */
#pragma once

#include <jansson.h>
#include <stdint.h>

struct db;

struct db_audit_entry {
    int64_t actor_user_id;   /* 0 = none (anonymous or daemon) */
    const char *actor;       /* username or daemon name */
    const char *client_addr; /* textual IP or NULL */
    const char *action;      /* "login", "pool.update", ... */
    const char *target_type; /* "pool", "vm", ... or NULL */
    const char *target_id;   /* or NULL */
    const char *outcome;     /* "success", "failure" or "denied" */
    const json_t *detail;    /* NULL = {} */
};

/* Append one entry. */
int db_audit_add(struct db *db, const struct db_audit_entry *e);
