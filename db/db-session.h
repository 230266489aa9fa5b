/*
 * Desktop assignment and desktop sessions (part of db.h; include "db.h").
 * Owned by pool-manager/ (pool.h wraps these with validation): the broker
 * and displayd both assign through pool_assign(), never through SQL of
 * their own, so "one VM, one person" holds in one place.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct db;

/*
 * displayd LISTENs here: a disconnect request or the end of a session
 * (payload: the session id) closes that session's viewers.
 */
#define DB_CHANNEL_SESSION "atrium_session"

struct db_assignment {
    int64_t session_id;
    int64_t vm_id;
    int64_t host_id;  /* 0 while the VM is not placed */
    char vm_name[64];
    char vm_state[16];
    bool reconnect;   /* the person already had this VM (live session or dedicated) */
};

/*
 * Give @user_id a desktop of @pool_id for @protocol (a DB_PROTO_ bit), in one
 * transaction:
 *   1. a live session in that pool → the same VM again;
 *   2. a dedicated pool → the VM that pool keeps for this person;
 *   3. otherwise the oldest `ready` VM, claimed with FOR UPDATE SKIP LOCKED.
 * A session whose VM was deleted or failed is ended first, so it never blocks
 * the person from a new desktop.  @client_addr may be NULL.
 * Returns 0 and *ret, or -EAGAIN (no ready VM: provisioning was nudged on
 * channel atrium_pool), -EHOSTUNREACH (the person's live session is on a VM
 * lost on a silent host that is not fenced yet: kept for them, retry
 * later), -ENOENT (no such pool), -EPERM (pool disabled),
 * -EPROTONOSUPPORT (protocol not offered), -errno.
 */
int db_session_assign(struct db *db, int64_t user_id, int64_t pool_id, unsigned protocol,
                      const char *client_addr, struct db_assignment *ret);

struct db_session {
    int64_t id;
    int64_t user_id, pool_id, vm_id;
    char state[16];   /* assigned | connected | disconnected | logging_off | ended */
    char protocol[16];
    char client_addr[64];
    int64_t started_at_us, connected_at_us, disconnected_at_us, ended_at_us;
    char end_reason[128];
};

int db_session_get(struct db *db, int64_t id, struct db_session *ret);

/* A console client attached (displayd): session and VM become `connected`. */
int db_session_connected(struct db *db, int64_t id, unsigned protocol, const char *client_addr);
/* The last console client left: `disconnected` (the disconnect timeout starts). */
int db_session_disconnected(struct db *db, int64_t id);
/*
 * Log off: the session ends.  A floating pool's VM goes to `logging_off`
 * (the pool manager refreshes it before anyone else gets it) and loses its
 * owner; a dedicated pool's VM stays the person's, idle in `assigned`.
 * -ENOENT when the session is not live.
 */
int db_session_logoff(struct db *db, int64_t id, const char *reason);

/*
 * Disconnect, as a person or an admin asks for it: the session's viewers are
 * dropped but the desktop session lives on.  Records disconnect_requested_at
 * (which tells displayd, on channel DB_CHANNEL_SESSION) and makes an
 * `assigned` or `connected` session and its VM `disconnected` at once, so
 * the pool's disconnect timeout starts now.  -ENOENT when the session is not
 * live.
 */
int db_session_request_disconnect(struct db *db, int64_t id);

/* What displayd needs to know to act on DB_CHANNEL_SESSION. */
struct db_session_control {
    int64_t id;
    bool ended;                /* logged off (or gone): every viewer goes */
    int64_t disconnect_age_ms; /* a disconnect was asked for this long ago; -1: never */
};

/*
 * The control state of sessions @ids (@n of them); sessions that no longer
 * exist come back as ended.  Sets *ret_rows (malloc'd, free(); one per id
 * found or not) and *ret_n.
 */
int db_session_control_get(struct db *db, const int64_t *ids, size_t n,
                           struct db_session_control **ret_rows, size_t *ret_n);

/*
 * An admin (@by_user_id) watches session @id view-only, or (@by_user_id 0)
 * nobody does any more: sets or clears shadowed_at/shadowed_by, which the
 * admin's session list shows.  -ENOENT when there is no such session.
 */
int db_session_shadowed(struct db *db, int64_t id, int64_t by_user_id);

/*
 * Live sessions of pool @pool_id that were disconnected longer than
 * @timeout_s seconds (0: never): their ids in *ret_ids (malloc'd, free()).
 */
int db_session_stale_disconnected(struct db *db, int64_t pool_id, int timeout_s,
                                  int64_t **ret_ids, size_t *ret_n);
