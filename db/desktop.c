/* The user portal's desktops: entitled pools joined with the person's live session. */
#include "prepared-priv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* Ids travel as one bigint[] parameter in array literal syntax ("{1,2,3}"). */
static char *id_array(const int64_t *ids, size_t n)
{
    size_t cap = 3 + n * 21;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    size_t len = 0;
    s[len++] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s%" PRId64, i ? "," : "", ids[i]);
    s[len++] = '}';
    s[len] = '\0';
    return s;
}

int db_desktop_list(struct db *db, int64_t user_id, const int64_t *pool_ids, size_t n,
                    json_t **ret_items)
{
    char *arr = id_array(pool_ids, n);
    if (!arr)
        return -ENOMEM;
    char b1[24];
    const char *p[] = {db_param_i64(b1, user_id), arr};
    PGresult *res = NULL;
    /* The portal's front page, often reloaded: prepared (prepared-priv.h). */
    int r = db_exec_prepared(
        db, "atrium_desktop_list",
        "SELECT coalesce(json_agg(t ORDER BY t.name), '[]')::text FROM ("
        " SELECT p.id, p.name, p.description, p.protocols, p.assignment, p.enabled,"
        "  (SELECT json_build_object('id', s.id, 'state', s.state, 'protocol', s.protocol,"
        "     'vm_id', s.vm_id, 'vm_name', v.name, 'started_at', s.started_at,"
        "     'connected_at', s.connected_at,"
        "     'disconnect_requested_at', s.disconnect_requested_at)"
        "   FROM desktop_sessions s LEFT JOIN vms v ON v.id = s.vm_id"
        "   WHERE s.user_id = $1 AND s.pool_id = p.id AND s.state <> 'ended') AS session"
        " FROM pools p WHERE p.id = ANY($2::bigint[])) t",
        2, p, &res);
    free(arr);
    if (r < 0)
        return r;
    json_t *items = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    PQclear(res);
    if (!items)
        return -ENOMEM;
    *ret_items = items;
    return 0;
}

int db_desktop_live_session(struct db *db, int64_t user_id, int64_t pool_id,
                            int64_t *ret_session_id)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, user_id), db_param_i64(b2, pool_id)};
    PGresult *res;
    int r = db_exec_one(db,
                        "SELECT id FROM desktop_sessions WHERE user_id = $1 AND pool_id = $2"
                        " AND state <> 'ended'",
                        2, p, &res);
    if (r < 0)
        return r;
    *ret_session_id = db_get_i64(res, 0, 0);
    PQclear(res);
    return 0;
}
