/* Log-in sessions and API tokens: rows in logins, found by the token's hash. */
#include "prepared-priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * bytea parameters travel in text form as "\x" + hex, so the one text-only
 * db_exec serves them too.
 */
static void hex_param(char out[static 2 + DB_TOKEN_HASH_LEN * 2 + 1], const unsigned char *h)
{
    static const char digits[] = "0123456789abcdef";
    out[0] = '\\';
    out[1] = 'x';
    for (size_t i = 0; i < DB_TOKEN_HASH_LEN; i++) {
        out[2 + 2 * i] = digits[h[i] >> 4];
        out[3 + 2 * i] = digits[h[i] & 15];
    }
    out[2 + DB_TOKEN_HASH_LEN * 2] = '\0';
}

static int unhex(const char *s, unsigned char *out, size_t n)
{
    if (strncmp(s, "\\x", 2) != 0 || strlen(s) != 2 + 2 * n)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned int b;
        if (sscanf(s + 2 + 2 * i, "%2x", &b) != 1)
            return -EINVAL;
        out[i] = (unsigned char)b;
    }
    return 0;
}

int db_login_create(struct db *db, const struct db_login_new *l, int64_t *ret_id,
                    int64_t *ret_expires_us)
{
    if (!l->token_hash || !l->kind || l->user_id <= 0 || l->ttl_s <= 0)
        return -EINVAL;
    char th[2 + DB_TOKEN_HASH_LEN * 2 + 1], ch[2 + DB_TOKEN_HASH_LEN * 2 + 1];
    char b1[24], b2[24];
    hex_param(th, l->token_hash);
    if (l->csrf_hash)
        hex_param(ch, l->csrf_hash);
    const char *p[] = {th,
                       l->csrf_hash ? ch : NULL,
                       db_param_i64(b1, l->user_id),
                       l->kind,
                       l->mfa_passed ? "t" : "f",
                       l->client_addr,
                       l->user_agent ? l->user_agent : "",
                       l->name ? l->name : "",
                       db_param_i64(b2, l->ttl_s)};
    PGresult *res;
    int r = db_exec(db,
                    "INSERT INTO logins (token_hash, csrf_hash, user_id, kind, mfa_passed,"
                    " client_addr, user_agent, name, expires_at)"
                    " VALUES ($1::bytea, $2::bytea, $3, $4, $5, $6::inet, $7, $8,"
                    "   now() + make_interval(secs => $9::int))"
                    " RETURNING id, (extract(epoch from expires_at) * 1000000)::bigint",
                    9, p, &res, NULL);
    if (r < 0)
        return r;
    if (ret_id)
        *ret_id = db_get_i64(res, 0, 0);
    if (ret_expires_us)
        *ret_expires_us = db_get_i64(res, 0, 1);
    PQclear(res);
    return 0;
}

int db_login_prune_user(struct db *db, int64_t user_id, int keep_live, int *ret_revoked)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, user_id), db_param_i64(b2, keep_live)};
    PGresult *res;
    /* The day of grace keeps a revoked or expired row visible to an admin
     * looking into a report; the audit log keeps the events for longer. */
    int r = db_exec(db,
                    "WITH gone AS ("
                    "  DELETE FROM logins WHERE user_id = $1"
                    "  AND (expires_at < now() - interval '1 day'"
                    "       OR revoked_at < now() - interval '1 day')),"
                    " extra AS ("
                    "  UPDATE logins SET revoked_at = now() WHERE id IN ("
                    "   SELECT id FROM logins WHERE user_id = $1 AND kind = 'browser'"
                    "   AND revoked_at IS NULL AND expires_at > now()"
                    "   ORDER BY id DESC OFFSET $2) RETURNING 1)"
                    " SELECT count(*) FROM extra",
                    2, p, &res, NULL);
    if (r < 0)
        return r;
    if (ret_revoked)
        *ret_revoked = (int)db_get_i64(res, 0, 0);
    PQclear(res);
    return 0;
}

int db_login_lookup(struct db *db, const unsigned char *token_hash, struct db_login *ret_login)
{
    char th[2 + DB_TOKEN_HASH_LEN * 2 + 1];
    hex_param(th, token_hash);
    const char *p[] = {th};
    PGresult *res = NULL;
    /* Every authenticated request: prepared (prepared-priv.h). */
    int r = db_exec_prepared(db, "atrium_login_lookup",
                             "SELECT l.id, l.user_id, u.username, u.role, l.kind, l.csrf_hash,"
                             " (extract(epoch from l.expires_at) * 1000000)::bigint,"
                             " l.last_seen_at < now() - interval '1 minute', l.mfa_passed"
                             " FROM logins l JOIN users u ON u.id = l.user_id"
                             " WHERE l.token_hash = $1::bytea AND l.revoked_at IS NULL"
                             " AND l.expires_at > now() AND NOT u.disabled",
                             1, p, &res);
    if (r < 0)
        return r;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return -ENOENT;
    }
    struct db_login l = {0};
    l.id = db_get_i64(res, 0, 0);
    l.user_id = db_get_i64(res, 0, 1);
    snprintf(l.username, sizeof(l.username), "%s", PQgetvalue(res, 0, 2));
    snprintf(l.role, sizeof(l.role), "%s", PQgetvalue(res, 0, 3));
    snprintf(l.kind, sizeof(l.kind), "%s", PQgetvalue(res, 0, 4));
    const char *csrf = db_get(res, 0, 5);
    if (csrf) {
        r = unhex(csrf, l.csrf_hash, sizeof(l.csrf_hash));
        if (r < 0) {
            PQclear(res);
            return -EPROTO;
        }
        l.has_csrf = true;
    }
    l.expires_us = db_get_i64(res, 0, 6);
    l.stale_seen = strcmp(PQgetvalue(res, 0, 7), "t") == 0;
    l.mfa_passed = strcmp(PQgetvalue(res, 0, 8), "t") == 0;
    PQclear(res);
    *ret_login = l;
    return 0;
}

int db_login_set_mfa_passed(struct db *db, int64_t id)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, id)};
    return db_exec(db, "UPDATE logins SET mfa_passed = true WHERE id = $1", 1, p, NULL, NULL);
}

int db_login_touch(struct db *db, int64_t id)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, id)};
    return db_exec(db, "UPDATE logins SET last_seen_at = now() WHERE id = $1", 1, p, NULL, NULL);
}

int db_login_revoke(struct db *db, int64_t id, int64_t user_id, const char *kind)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, id), db_param_id(b2, user_id), kind};
    PGresult *res;
    int r = db_exec(db,
                    "UPDATE logins SET revoked_at = now() WHERE id = $1"
                    " AND ($2::bigint IS NULL OR user_id = $2::bigint)"
                    " AND ($3::text IS NULL OR kind = $3::text)"
                    " AND revoked_at IS NULL AND expires_at > now()",
                    3, p, &res, NULL);
    if (r < 0)
        return r;
    r = strcmp(PQcmdTuples(res), "1") == 0 ? 0 : -ENOENT;
    PQclear(res);
    return r;
}

int db_login_api_list(struct db *db, int limit, int offset, json_t **ret_items)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, limit), db_param_i64(b2, offset)};
    PGresult *res;
    int r = db_exec(db,
                    "SELECT coalesce(json_agg(t), '[]')::text FROM ("
                    " SELECT l.id, l.user_id, u.username, l.name, l.created_at,"
                    "  l.last_seen_at, l.expires_at, l.revoked_at"
                    " FROM logins l JOIN users u ON u.id = l.user_id WHERE l.kind = 'api'"
                    " ORDER BY l.id DESC LIMIT $1 OFFSET $2) t",
                    2, p, &res, NULL);
    if (r < 0)
        return r;
    json_t *items = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    PQclear(res);
    if (!items)
        return -ENOMEM;
    *ret_items = items;
    return 0;
}
