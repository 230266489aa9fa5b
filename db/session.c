/*
 * Desktop assignment and desktop sessions.
 *
 * Why the assignment is shaped like this: hundreds of people may press
 * "connect" at once (the 9 a.m. rush).  Claiming a ready VM is one UPDATE
 * whose sub-SELECT takes the oldest ready row with FOR UPDATE SKIP LOCKED, so
 * concurrent claimers each lock a different row instead of queueing on the
 * same one.  Two unique indexes make double assignment impossible even if
 * this code were wrong: one VM per (pool, person) on vms, one live session
 * per (person, pool) and per VM on desktop_sessions.  Requests of one
 * person for one pool are serialised by a transaction-level advisory lock;
 * should a twin still lose on a unique index, the whole transaction is rolled
 * back and re-run, and the re-run finds the twin's session: same VM.
 */
#include "db-priv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASSIGN_RETRIES 5

/* Copy VM columns (id, host_id, name, state) of row 0 into *a. */
static void vm_into(const PGresult *res, int first_col, struct db_assignment *a)
{
    a->vm_id = db_get_i64(res, 0, first_col);
    a->host_id = db_get_i64(res, 0, first_col + 1);
    snprintf(a->vm_name, sizeof(a->vm_name), "%s", PQgetvalue(res, 0, first_col + 2));
    snprintf(a->vm_state, sizeof(a->vm_state), "%s", PQgetvalue(res, 0, first_col + 3));
}

/*
 * One attempt inside an open transaction.  0 assigned, 1 none ready, or
 * -errno (-EEXIST / -EAGAIN: lost a race, run again).
 */
static int assign_once(struct db *db, const char *user, const char *pool, unsigned protocol,
                       const char *client_addr, struct db_assignment *a)
{
    const char *proto = db_protocol_name(protocol);
    const char *p2[] = {user, pool};
    PGresult *res = NULL;
    int r;

    /* One person's twin requests (two tabs, a double click) queue here, so
     * the second one finds the first one's session instead of skipping the
     * rows the first one holds and reporting "none ready".  Different people
     * never wait for each other: the key is (person, pool). */
    r = db_exec(db,
                "SELECT pg_advisory_xact_lock(($1::bigint % 2147483647)::int,"
                " ($2::bigint % 2147483647)::int)",
                2, p2, NULL, NULL);
    if (r < 0)
        return r;

    /* the pool, locked against deletion while we assign from it */
    const char *pp[] = {pool, proto};
    r = db_exec(db,
                "SELECT enabled, $2 = ANY(protocols), assignment = 'dedicated'"
                " FROM pools WHERE id = $1 FOR KEY SHARE",
                2, pp, &res, NULL);
    if (r < 0)
        return r;
    if (PQntuples(res) != 1)
        r = -ENOENT;
    else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
        r = -EPERM;
    else if (strcmp(PQgetvalue(res, 0, 1), "t") != 0)
        r = -EPROTONOSUPPORT;
    bool dedicated = r == 0 && strcmp(PQgetvalue(res, 0, 2), "t") == 0;
    PQclear(res);
    if (r < 0)
        return r;

    /* 1. a live session: same VM again, unless that VM is gone or broken.
     * A VM lost on a host that promised to fence itself and is not fenced
     * yet may still run there (a cut link, a late heartbeat): the session
     * is kept for the person and they are told to retry; once the host is
     * fenced poold ends the session (db_pool_retire_fenced). */
    r = db_exec(db,
                "SELECT s.id, v.id, v.host_id, v.name, v.state,"
                " coalesce(v.state = 'lost' AND h.fence_deadline_s > 0"
                "   AND h.state <> 'fenced', false)"
                " FROM desktop_sessions s"
                " LEFT JOIN vms v ON v.id = s.vm_id LEFT JOIN hosts h ON h.id = v.host_id"
                " WHERE s.user_id = $1 AND s.pool_id = $2 AND s.state <> 'ended'"
                " FOR UPDATE OF s",
                2, p2, &res, NULL);
    if (r < 0)
        return r;
    if (PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 5), "t") == 0) {
        PQclear(res);
        return -EHOSTUNREACH;
    }
    if (PQntuples(res) == 1) {
        const char *vm_state = db_get(res, 0, 4);
        bool usable = vm_state && strcmp(vm_state, "failed") != 0 &&
                      strcmp(vm_state, "lost") != 0 && strcmp(vm_state, "deleting") != 0;
        char sid[24];
        snprintf(sid, sizeof(sid), "%s", PQgetvalue(res, 0, 0));
        if (usable) {
            a->session_id = db_get_i64(res, 0, 0);
            vm_into(res, 1, a);
            a->reconnect = true;
            PQclear(res);
            return 0;
        }
        PQclear(res);
        /* a stale session must not block the person: end it and release the VM */
        const char *ps[] = {sid};
        r = db_exec(db,
                    "WITH s AS (UPDATE desktop_sessions SET state = 'ended', ended_at = now(),"
                    "   end_reason = 'desktop lost' WHERE id = $1 RETURNING vm_id)"
                    " UPDATE vms SET assigned_user_id = NULL, assigned_at = NULL"
                    " WHERE id = (SELECT vm_id FROM s)",
                    1, ps, NULL, NULL);
        if (r < 0)
            return r;
    } else {
        PQclear(res);
    }

    /* 2. dedicated: the person's own VM */
    if (dedicated) {
        r = db_exec(db,
                    "UPDATE vms SET desired_power = 'running',"
                    " state = CASE WHEN state = 'ready' THEN 'assigned' ELSE state END"
                    " WHERE id = (SELECT id FROM vms WHERE assigned_user_id = $1 AND pool_id = $2"
                    "   AND state NOT IN ('failed', 'lost', 'deleting') FOR UPDATE)"
                    " RETURNING id, host_id, name, state",
                    2, p2, &res, NULL);
        if (r < 0)
            return r;
        if (PQntuples(res) == 1) {
            vm_into(res, 0, a);
            a->reconnect = true;
        }
        PQclear(res);
    }

    /* 3. the oldest ready VM nobody else is claiming right now */
    if (!a->vm_id) {
        r = db_exec(db,
                    "UPDATE vms SET state = 'assigned', assigned_user_id = $1,"
                    " assigned_at = now()"
                    " WHERE id = (SELECT id FROM vms WHERE pool_id = $2 AND state = 'ready'"
                    "   AND assigned_user_id IS NULL AND NOT image_stale"
                    "   AND desired_power = 'running'"
                    "   ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"
                    " RETURNING id, host_id, name, state",
                    2, p2, &res, NULL);
        if (r < 0)
            return r;
        if (PQntuples(res) == 1)
            vm_into(res, 0, a);
        PQclear(res);
    }
    if (!a->vm_id) {
        const char *pn[] = {pool};
        r = db_exec(db, "SELECT pg_notify('atrium_pool', $1)", 1, pn, NULL, NULL);
        return r < 0 ? r : 1;
    }

    char vm[24];
    const char *ps[] = {user, pool, db_param_i64(vm, a->vm_id), proto, client_addr};
    r = db_exec(db,
                "INSERT INTO desktop_sessions (user_id, pool_id, vm_id, state, protocol,"
                " client_addr) VALUES ($1, $2, $3, 'assigned', $4, $5::inet) RETURNING id",
                5, ps, &res, NULL);
    if (r < 0)
        return r;
    a->session_id = db_get_i64(res, 0, 0);
    PQclear(res);
    return 0;
}

int db_session_assign(struct db *db, int64_t user_id, int64_t pool_id, unsigned protocol,
                      const char *client_addr, struct db_assignment *ret)
{
    if (!db_protocol_name(protocol))
        return -EPROTONOSUPPORT;
    char user[24], pool[24];
    db_param_i64(user, user_id);
    db_param_i64(pool, pool_id);
    int r = -EEXIST;
    for (int attempt = 0; attempt < ASSIGN_RETRIES && (r == -EEXIST || r == -EAGAIN); attempt++) {
        struct db_assignment a = {0};
        r = db_begin(db);
        if (r < 0)
            return r;
        r = assign_once(db, user, pool, protocol, client_addr, &a);
        if (r < 0) {
            db_rollback(db);
            continue;
        }
        int c = db_commit(db);
        if (c < 0)
            return c;
        if (r == 1)
            return -EAGAIN; /* committed: the NOTIFY nudges provisioning */
        *ret = a;
        return 0;
    }
    return r;
}

#define SESSION_COLUMNS                                                                            \
    "id, user_id, pool_id, vm_id, state, coalesce(protocol, ''),"                                  \
    " coalesce(host(client_addr), ''),"                                                            \
    " (extract(epoch from started_at) * 1000000)::bigint,"                                         \
    " (extract(epoch from connected_at) * 1000000)::bigint,"                                       \
    " (extract(epoch from disconnected_at) * 1000000)::bigint,"                                    \
    " (extract(epoch from ended_at) * 1000000)::bigint, end_reason"

static void session_from_row(const PGresult *res, int row, void *elem)
{
    struct db_session *s = elem;
    memset(s, 0, sizeof(*s));
    s->id = db_get_i64(res, row, 0);
    s->user_id = db_get_i64(res, row, 1);
    s->pool_id = db_get_i64(res, row, 2);
    s->vm_id = db_get_i64(res, row, 3);
    snprintf(s->state, sizeof(s->state), "%s", PQgetvalue(res, row, 4));
    snprintf(s->protocol, sizeof(s->protocol), "%s", PQgetvalue(res, row, 5));
    snprintf(s->client_addr, sizeof(s->client_addr), "%s", PQgetvalue(res, row, 6));
    s->started_at_us = db_get_i64(res, row, 7);
    s->connected_at_us = db_get_i64(res, row, 8);
    s->disconnected_at_us = db_get_i64(res, row, 9);
    s->ended_at_us = db_get_i64(res, row, 10);
    snprintf(s->end_reason, sizeof(s->end_reason), "%s", PQgetvalue(res, row, 11));
}

int db_session_get(struct db *db, int64_t id, struct db_session *ret)
{
    char b[24];
    const char *v[] = {db_param_i64(b, id)};
    return db_exec_row(db, "SELECT " SESSION_COLUMNS " FROM desktop_sessions WHERE id = $1", 1, v,
                       session_from_row, ret);
}

int db_session_connected(struct db *db, int64_t id, unsigned protocol, const char *client_addr)
{
    const char *proto = db_protocol_name(protocol);
    if (!proto)
        return -EPROTONOSUPPORT;
    char b[24];
    const char *v[] = {db_param_i64(b, id), proto, client_addr};
    return db_exec_changed(db,
                           "WITH s AS (UPDATE desktop_sessions SET state = 'connected',"
                           "   connected_at = now(), disconnected_at = NULL, protocol = $2,"
                           "   client_addr = coalesce($3::inet, client_addr)"
                           "   WHERE id = $1 AND state IN ('assigned', 'connected', 'disconnected')"
                           "   RETURNING vm_id)"
                           " UPDATE vms SET state = 'connected' WHERE id = (SELECT vm_id FROM s)"
                           " RETURNING id",
                           3, v);
}

int db_session_disconnected(struct db *db, int64_t id)
{
    char b[24];
    const char *v[] = {db_param_i64(b, id)};
    return db_exec_changed(
        db,
        "WITH s AS (UPDATE desktop_sessions SET state = 'disconnected',"
        "   disconnected_at = now()"
        "   WHERE id = $1 AND state IN ('assigned', 'connected') RETURNING vm_id)"
        " UPDATE vms SET state = 'disconnected' WHERE id = (SELECT vm_id FROM s)"
        " RETURNING id",
        1, v);
}

int db_session_logoff(struct db *db, int64_t id, const char *reason)
{
    char b[24];
    const char *v[] = {db_param_i64(b, id), reason ? reason : "logoff"};
    PGresult *res;
    /* The session ends even if its VM was deleted meanwhile (vm_id NULL); a
     * shadow mark a crashed displayd left behind ends with it. */
    int r = db_exec(db,
                    "WITH s AS (UPDATE desktop_sessions SET state = 'ended', ended_at = now(),"
                    "   end_reason = $2, shadowed_at = NULL, shadowed_by = NULL"
                    "   WHERE id = $1 AND state <> 'ended'"
                    "   RETURNING vm_id, pool_id),"
                    " v AS (UPDATE vms SET"
                    "   state = CASE WHEN p.assignment = 'dedicated' THEN 'assigned'"
                    "                ELSE 'logging_off' END,"
                    "   assigned_user_id = CASE WHEN p.assignment = 'dedicated'"
                    "                THEN vms.assigned_user_id END,"
                    "   assigned_at = CASE WHEN p.assignment = 'dedicated' THEN vms.assigned_at END"
                    "   FROM s, pools p WHERE vms.id = s.vm_id AND p.id = s.pool_id"
                    "   AND vms.state NOT IN ('failed', 'lost', 'deleting'))"
                    " SELECT count(*) FROM s",
                    2, v, &res, NULL);
    if (r < 0)
        return r;
    r = db_get_i64(res, 0, 0) == 1 ? 0 : -ENOENT;
    PQclear(res);
    return r;
}

int db_session_request_disconnect(struct db *db, int64_t id)
{
    char b[24];
    const char *v[] = {db_param_i64(b, id)};
    /* one statement: the request, the state and the VM's state move together */
    return db_exec_changed(
        db,
        "WITH s AS (UPDATE desktop_sessions SET disconnect_requested_at = now(),"
        "   disconnected_at = CASE WHEN state = 'disconnected' THEN disconnected_at ELSE now() END,"
        "   state = 'disconnected'"
        "   WHERE id = $1 AND state IN ('assigned', 'connected', 'disconnected')"
        "   RETURNING id, vm_id),"
        " v AS (UPDATE vms SET state = 'disconnected' FROM s WHERE vms.id = s.vm_id"
        "   AND vms.state IN ('assigned', 'connected'))"
        " SELECT id FROM s",
        1, v);
}

static void control_from_row(const PGresult *res, int row, void *elem)
{
    struct db_session_control *c = elem;
    c->id = db_get_i64(res, row, 0);
    c->ended = strcmp(PQgetvalue(res, row, 1), "t") == 0;
    c->disconnect_age_ms = db_get(res, row, 2) ? db_get_i64(res, row, 2) : -1;
}

int db_session_control_get(struct db *db, const int64_t *ids, size_t n,
                           struct db_session_control **ret_rows, size_t *ret_n)
{
    if (n > 100000)
        return -EINVAL;
    /* the ids as one bigint[] literal: "{1,2,3}" */
    size_t cap = n * 21 + 3; /* ",-9223372036854775808" is 21 */
    char *arr = malloc(cap);
    if (!arr)
        return -ENOMEM;
    size_t len = 1;
    arr[0] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(arr + len, cap - len, "%s%" PRId64, i ? "," : "", ids[i]);
    snprintf(arr + len, cap - len, "}");
    const char *v[] = {arr};
    int r = db_exec_rows(
        db,
        "SELECT i.id, s.id IS NULL OR s.state = 'ended',"
        " (extract(epoch from clock_timestamp() - s.disconnect_requested_at) * 1000)::bigint"
        " FROM unnest($1::bigint[]) AS i(id) LEFT JOIN desktop_sessions s ON s.id = i.id",
        1, v, sizeof(**ret_rows), control_from_row, (void **)ret_rows, ret_n);
    free(arr);
    return r;
}

int db_session_shadowed(struct db *db, int64_t id, int64_t by_user_id)
{
    char b1[24], b2[24];
    const char *v[] = {db_param_i64(b1, id), db_param_id(b2, by_user_id)};
    return db_exec_changed(db,
                           "UPDATE desktop_sessions SET shadowed_by = $2::bigint,"
                           " shadowed_at = CASE WHEN $2::bigint IS NULL THEN NULL"
                           "   ELSE coalesce(shadowed_at, now()) END"
                           " WHERE id = $1",
                           2, v);
}

static void id_from_row(const PGresult *res, int row, void *elem)
{
    *(int64_t *)elem = db_get_i64(res, row, 0);
}

int db_session_stale_disconnected(struct db *db, int64_t pool_id, int timeout_s, int64_t **ret_ids,
                                  size_t *ret_n)
{
    char b1[24], b2[24];
    const char *v[] = {db_param_i64(b1, pool_id), db_param_i64(b2, timeout_s)};
    return db_exec_rows(db,
                        "SELECT id FROM desktop_sessions WHERE pool_id = $1"
                        " AND state = 'disconnected' AND $2::int > 0"
                        " AND disconnected_at < now() - make_interval(secs => $2::int)"
                        " ORDER BY id",
                        2, v, sizeof(**ret_ids), id_from_row, (void **)ret_ids, ret_n);
}
