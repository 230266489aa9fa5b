/* Groups, memberships and pool entitlements. */
#include "db-priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int insert_returning_id(struct db *db, const char *sql, int n, const char *const *p,
                               int64_t *ret_id)
{
    PGresult *res;
    int r = db_exec(db, sql, n, p, &res, NULL);
    if (r < 0)
        return r;
    if (ret_id)
        *ret_id = db_get_i64(res, 0, 0);
    PQclear(res);
    return 0;
}

int db_group_create(struct db *db, const char *name, const char *source, const char *description,
                    int64_t *ret_id)
{
    if (!name || !source)
        return -EINVAL;
    const char *p[] = {name, source, description ? description : ""};
    return insert_returning_id(
        db, "INSERT INTO groups (name, source, description) VALUES ($1, $2, $3) RETURNING id", 3, p,
        ret_id);
}

int db_group_get_id(struct db *db, const char *name, int64_t *ret_id)
{
    const char *p[] = {name};
    PGresult *res;
    int r = db_exec(db, "SELECT id FROM groups WHERE name = $1", 1, p, &res, NULL);
    if (r < 0)
        return r;
    if (PQntuples(res) == 1)
        *ret_id = db_get_i64(res, 0, 0);
    else
        r = -ENOENT;
    PQclear(res);
    return r;
}

int db_membership_add(struct db *db, int64_t user_id, int64_t group_id)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, user_id), db_param_i64(b2, group_id)};
    return db_exec(db,
                   "INSERT INTO memberships (user_id, group_id) VALUES ($1, $2)"
                   " ON CONFLICT DO NOTHING",
                   2, p, NULL, NULL);
}

int db_membership_delete(struct db *db, int64_t user_id, int64_t group_id)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, user_id), db_param_i64(b2, group_id)};
    return db_exec_changed(db, "DELETE FROM memberships WHERE user_id = $1 AND group_id = $2", 2,
                           p);
}

/* Names travel as one text[] parameter in array literal syntax, every
 * element quoted so that any group name survives. */
static char *text_array_new(const char *const *items)
{
    size_t len = 3;
    for (const char *const *s = items; s && *s; s++)
        len += strlen(*s) * 2 + 3;
    char *a = malloc(len);
    if (!a)
        return NULL;
    char *p = a;
    *p++ = '{';
    for (const char *const *s = items; s && *s; s++) {
        if (s != items)
            *p++ = ',';
        *p++ = '"';
        for (const char *c = *s; *c; c++) {
            if (*c == '"' || *c == '\\')
                *p++ = '\\';
            *p++ = *c;
        }
        *p++ = '"';
    }
    *p++ = '}';
    *p = '\0';
    return a;
}

int db_membership_sync_unix(struct db *db, int64_t user_id, const char *const *names, int *ret_n)
{
    char *arr = text_array_new(names);
    if (!arr)
        return -ENOMEM;
    char b1[24];
    const char *p[] = {db_param_i64(b1, user_id), arr};
    PGresult *res;
    int r = db_exec(db,
                    "WITH g AS (SELECT id FROM groups WHERE source = 'unix'"
                    "   AND name = ANY($2::text[])),"
                    " d AS (DELETE FROM memberships m USING groups x"
                    "   WHERE m.user_id = $1 AND m.group_id = x.id AND x.source = 'unix'"
                    "   AND x.id NOT IN (SELECT id FROM g)),"
                    " i AS (INSERT INTO memberships (user_id, group_id) SELECT $1, id FROM g"
                    "   ON CONFLICT DO NOTHING)"
                    " SELECT count(*) FROM g",
                    2, p, &res, NULL);
    free(arr);
    if (r < 0)
        return r;
    if (ret_n)
        *ret_n = (int)db_get_i64(res, 0, 0);
    PQclear(res);
    return 0;
}

int db_entitlement_add_user(struct db *db, int64_t pool_id, int64_t user_id, int64_t *ret_id)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, pool_id), db_param_i64(b2, user_id)};
    return insert_returning_id(
        db, "INSERT INTO entitlements (pool_id, user_id) VALUES ($1, $2) RETURNING id", 2, p,
        ret_id);
}

int db_entitlement_add_group(struct db *db, int64_t pool_id, int64_t group_id, int64_t *ret_id)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, pool_id), db_param_i64(b2, group_id)};
    return insert_returning_id(
        db, "INSERT INTO entitlements (pool_id, group_id) VALUES ($1, $2) RETURNING id", 2, p,
        ret_id);
}

int db_entitlement_delete(struct db *db, int64_t pool_id, int64_t entitlement_id)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, pool_id), db_param_i64(b2, entitlement_id)};
    return db_exec_changed(db, "DELETE FROM entitlements WHERE pool_id = $1 AND id = $2", 2, p);
}

int db_entitlement_delete_user(struct db *db, int64_t pool_id, int64_t user_id)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, pool_id), db_param_i64(b2, user_id)};
    return db_exec_changed(db, "DELETE FROM entitlements WHERE pool_id = $1 AND user_id = $2", 2,
                           p);
}

/* Entitlements of an enabled user: direct ones and those of their groups. */
#define ENTITLED_POOLS                                                                             \
    "SELECT e.pool_id FROM entitlements e JOIN users u ON u.id = $1 AND NOT u.disabled"            \
    " WHERE (e.user_id = u.id"                                                                     \
    "  OR e.group_id IN (SELECT group_id FROM memberships WHERE user_id = u.id))"

int db_entitlement_user_pools(struct db *db, int64_t user_id, int64_t **ret_ids, size_t *ret_n)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, user_id)};
    PGresult *res;
    int r = db_exec(db, "SELECT DISTINCT pool_id FROM (" ENTITLED_POOLS ") x ORDER BY 1", 1, p,
                    &res, NULL);
    if (r < 0)
        return r;
    size_t n = (size_t)PQntuples(res);
    int64_t *ids = NULL;
    if (n) {
        ids = calloc(n, sizeof(*ids));
        if (!ids) {
            PQclear(res);
            return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
            ids[i] = db_get_i64(res, (int)i, 0);
    }
    PQclear(res);
    *ret_ids = ids;
    *ret_n = n;
    return 0;
}

int db_entitlement_check(struct db *db, int64_t user_id, int64_t pool_id, bool *ret_entitled)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, user_id), db_param_i64(b2, pool_id)};
    PGresult *res;
    int r = db_exec(db, "SELECT EXISTS (" ENTITLED_POOLS " AND e.pool_id = $2)", 2, p, &res, NULL);
    if (r < 0)
        return r;
    *ret_entitled = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return 0;
}
