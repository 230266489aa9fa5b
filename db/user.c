/* Users, TOTP state, recovery codes and role policies. */
#include "db-priv.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USER_COLUMNS                                                                               \
    "id, username, source, role, password_hash, disabled, encode(totp_secret, 'hex'),"             \
    " totp_enabled, totp_last_step, failed_logins,"                                                \
    " coalesce(extract(epoch from locked_until)::bigint, 0),"                                      \
    " coalesce(extract(epoch from last_login_at)::bigint, 0)"

/* bytea goes over the wire as hex text: decode($n, 'hex') on the SQL side. */
static char *hex_new(const unsigned char *b, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char *s = malloc(2 * n + 1);
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        s[2 * i] = digits[b[i] >> 4];
        s[2 * i + 1] = digits[b[i] & 0xf];
    }
    s[2 * n] = '\0';
    return s;
}

/* A text[] literal of hex strings, "{ab01,cd02}"; hex needs no quoting. */
static char *hex_array_new(const unsigned char *const *items, size_t n, size_t len)
{
    char *s = malloc(n * (2 * len + 1) + 3);
    if (!s)
        return NULL;
    char *p = s;
    *p++ = '{';
    for (size_t i = 0; i < n; i++) {
        char *h = hex_new(items[i], len);
        if (!h) {
            free(s);
            return NULL;
        }
        if (i)
            *p++ = ',';
        memcpy(p, h, 2 * len);
        p += 2 * len;
        free(h);
    }
    *p++ = '}';
    *p = '\0';
    return s;
}

static int hex_decode(const char *s, unsigned char *out, size_t cap, size_t *ret_len)
{
    size_t n = strlen(s);
    if (n % 2 || n / 2 > cap)
        return -EINVAL;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -EINVAL;
        out[i] = (unsigned char)v;
    }
    *ret_len = n / 2;
    return 0;
}

struct db_user *db_user_free(struct db_user *u)
{
    if (!u)
        return NULL;
    if (u->password_hash)
        OPENSSL_cleanse(u->password_hash, strlen(u->password_hash));
    free(u->password_hash);
    OPENSSL_cleanse(u, sizeof(*u));
    free(u);
    return NULL;
}

static int user_from_row(const PGresult *res, int row, struct db_user **ret)
{
    struct db_user *u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    int r = 0;
    u->id = db_get_i64(res, row, 0);
    snprintf(u->username, sizeof(u->username), "%s", PQgetvalue(res, row, 1));
    snprintf(u->source, sizeof(u->source), "%s", PQgetvalue(res, row, 2));
    snprintf(u->role, sizeof(u->role), "%s", PQgetvalue(res, row, 3));
    const char *hash = db_get(res, row, 4);
    if (hash && !(u->password_hash = strdup(hash))) {
        r = -ENOMEM;
        goto out;
    }
    u->disabled = strcmp(PQgetvalue(res, row, 5), "t") == 0;
    const char *secret = db_get(res, row, 6);
    if (secret) {
        r = hex_decode(secret, u->totp_secret, sizeof(u->totp_secret), &u->totp_secret_len);
        if (r < 0)
            goto out;
    }
    u->totp_enabled = strcmp(PQgetvalue(res, row, 7), "t") == 0;
    u->totp_last_step = db_get_i64(res, row, 8);
    u->failed_logins = (int)db_get_i64(res, row, 9);
    u->locked_until = db_get_i64(res, row, 10);
    u->last_login_at = db_get_i64(res, row, 11);
    *ret = u;
    u = NULL;
out:
    db_user_free(u);
    return r;
}

static int get_one(struct db *db, const char *sql, const char *param, struct db_user **ret_user)
{
    const char *p[] = {param};
    PGresult *res;
    int r = db_exec(db, sql, 1, p, &res, NULL);
    if (r < 0)
        return r;
    r = PQntuples(res) == 1 ? user_from_row(res, 0, ret_user) : -ENOENT;
    PQclear(res);
    return r;
}

int db_user_get_by_name(struct db *db, const char *username, struct db_user **ret_user)
{
    return get_one(db, "SELECT " USER_COLUMNS " FROM users WHERE username = $1", username,
                   ret_user);
}

int db_user_get(struct db *db, int64_t id, struct db_user **ret_user)
{
    char b1[24];
    return get_one(db, "SELECT " USER_COLUMNS " FROM users WHERE id = $1", db_param_i64(b1, id),
                   ret_user);
}

int db_user_create(struct db *db, const struct db_user_new *u, int64_t *ret_id)
{
    if (!u->username || !u->source || !u->role)
        return -EINVAL;
    const char *p[] = {u->username, u->source, u->role, u->password_hash,
                       u->display_name ? u->display_name : ""};
    PGresult *res;
    int r = db_exec(db,
                    "INSERT INTO users (username, source, role, password_hash, display_name)"
                    " VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    5, p, &res, NULL);
    if (r < 0)
        return r;
    *ret_id = db_get_i64(res, 0, 0);
    PQclear(res);
    return 0;
}

/* Run an UPDATE expected to touch one row: 0, or -ENOENT when it touched none. */
static int update_one(struct db *db, const char *sql, int n, const char *const *p)
{
    PGresult *res;
    int r = db_exec(db, sql, n, p, &res, NULL);
    if (r < 0)
        return r;
    r = strcmp(PQcmdTuples(res), "0") == 0 ? -ENOENT : 0;
    PQclear(res);
    return r;
}

int db_user_set_password_hash(struct db *db, int64_t id, const char *hash, const char *expected_old)
{
    if (!hash)
        return -EINVAL;
    char b1[24];
    const char *p[] = {db_param_i64(b1, id), hash, expected_old};
    int r = update_one(db,
                       "UPDATE users SET password_hash = $2 WHERE id = $1 AND source = 'local'"
                       " AND ($3::text IS NULL OR password_hash = $3)",
                       3, p);
    if (r == -ENOENT && expected_old) {
        /* Tell "no such user" from "changed meanwhile". */
        struct db_user *u = NULL;
        if (db_user_get(db, id, &u) == 0 && strcmp(u->source, "local") == 0)
            r = -ESTALE;
        db_user_free(u);
    }
    return r;
}

int db_user_set_role(struct db *db, int64_t id, const char *role)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, id), role};
    return update_one(db, "UPDATE users SET role = $2 WHERE id = $1", 2, p);
}

int db_user_set_disabled(struct db *db, int64_t id, bool disabled)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, id), disabled ? "true" : "false"};
    return update_one(db, "UPDATE users SET disabled = $2::boolean WHERE id = $1", 2, p);
}

int db_user_login_failed(struct db *db, int64_t id, int64_t now_s, const struct db_backoff *rule,
                         int *ret_failures, int64_t *ret_locked_until)
{
    if (rule->threshold < 1 || rule->base_s < 1 || rule->max_s < rule->base_s)
        return -EINVAL;
    char b1[24], b2[24], b3[24], b4[24], b5[24];
    const char *p[] = {db_param_i64(b1, id), db_param_i64(b2, now_s),
                       db_param_i64(b3, rule->threshold), db_param_i64(b4, rule->base_s),
                       db_param_i64(b5, rule->max_s)};
    PGresult *res;
    /* SET expressions read the old failed_logins; RETURNING sees the new one. */
    int r = db_exec_one(db,
                        "UPDATE users SET failed_logins = failed_logins + 1,"
                        " locked_until = CASE WHEN failed_logins + 1 >= $3::int"
                        "  THEN to_timestamp($2::bigint) + make_interval(secs => least($5::bigint,"
                        "   $4::bigint * (1::bigint << least(failed_logins + 1 - $3::int, 30))))"
                        "  ELSE locked_until END"
                        " WHERE id = $1"
                        " RETURNING failed_logins,"
                        "  coalesce(extract(epoch from locked_until)::bigint, 0)",
                        5, p, &res);
    if (r < 0)
        return r;
    int failures = (int)db_get_i64(res, 0, 0);
    int64_t until = db_get_i64(res, 0, 1);
    PQclear(res);
    if (ret_failures)
        *ret_failures = failures;
    if (ret_locked_until)
        *ret_locked_until = until > now_s ? until : 0;
    return 0;
}

int db_user_login_succeeded(struct db *db, int64_t id, int64_t now_s)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, id), db_param_i64(b2, now_s)};
    return update_one(db,
                      "UPDATE users SET failed_logins = 0, locked_until = NULL,"
                      " last_login_at = to_timestamp($2::bigint) WHERE id = $1",
                      2, p);
}

int db_user_unlock(struct db *db, int64_t id)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, id)};
    return update_one(db, "UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = $1",
                      1, p);
}

int db_user_totp_set_pending(struct db *db, int64_t id, const unsigned char *secret, size_t len)
{
    if (len == 0 || len > DB_TOTP_SECRET_MAX)
        return -EINVAL;
    char *hex = hex_new(secret, len);
    if (!hex)
        return -ENOMEM;
    char b1[24];
    const char *p[] = {db_param_i64(b1, id), hex};
    PGresult *res;
    int r = db_exec(db,
                    "UPDATE users SET totp_secret = CASE WHEN totp_enabled THEN totp_secret"
                    "  ELSE decode($2, 'hex') END,"
                    " totp_last_step = CASE WHEN totp_enabled THEN totp_last_step ELSE 0 END"
                    " WHERE id = $1 RETURNING NOT totp_enabled",
                    2, p, &res, NULL);
    OPENSSL_cleanse(hex, strlen(hex));
    free(hex);
    if (r < 0)
        return r;
    if (PQntuples(res) != 1)
        r = -ENOENT;
    else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
        r = -EALREADY;
    PQclear(res);
    return r;
}

int db_user_totp_enable(struct db *db, int64_t id, const unsigned char *secret, size_t len,
                        int64_t step, const unsigned char *const *hashes, size_t n, size_t hash_len)
{
    char *hex = hex_new(secret, len);
    char *arr = hex_array_new(hashes, n, hash_len);
    int r = -ENOMEM;
    PGresult *res = NULL;
    if (!hex || !arr)
        goto out;
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, id), hex, db_param_i64(b2, step), arr};
    /* One statement: the second factor never becomes active without its
     * fresh recovery codes, and old codes never survive a new enrolment. */
    r = db_exec(db,
                "WITH u AS (UPDATE users SET totp_enabled = true, totp_last_step = $3"
                "   WHERE id = $1 AND NOT totp_enabled AND totp_secret = decode($2, 'hex')"
                "   RETURNING id),"
                " d AS (DELETE FROM recovery_codes WHERE user_id IN (SELECT id FROM u)),"
                " i AS (INSERT INTO recovery_codes (user_id, code_hash)"
                "   SELECT u.id, decode(h, 'hex') FROM u, unnest($4::text[]) AS h)"
                " SELECT count(*) FROM u",
                4, p, &res, NULL);
    if (r < 0)
        goto out;
    r = strcmp(PQgetvalue(res, 0, 0), "1") == 0 ? 0 : -ESTALE;
out:
    PQclear(res);
    if (hex)
        OPENSSL_cleanse(hex, strlen(hex));
    free(hex);
    free(arr);
    return r;
}

int db_user_totp_disable(struct db *db, int64_t id)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, id)};
    PGresult *res;
    int r = db_exec(db,
                    "WITH u AS (UPDATE users SET totp_secret = NULL, totp_enabled = false,"
                    "   totp_last_step = 0 WHERE id = $1 RETURNING id),"
                    " d AS (DELETE FROM recovery_codes WHERE user_id IN (SELECT id FROM u))"
                    " SELECT count(*) FROM u",
                    1, p, &res, NULL);
    if (r < 0)
        return r;
    r = strcmp(PQgetvalue(res, 0, 0), "1") == 0 ? 0 : -ENOENT;
    PQclear(res);
    return r;
}

int db_user_totp_use_step(struct db *db, int64_t id, int64_t step)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, id), db_param_i64(b2, step)};
    int r = update_one(db,
                       "UPDATE users SET totp_last_step = $2"
                       " WHERE id = $1 AND totp_enabled AND totp_last_step < $2",
                       2, p);
    return r == -ENOENT ? -EALREADY : r;
}

int db_user_recovery_use(struct db *db, int64_t id, const unsigned char *hash, size_t len,
                         int *ret_left)
{
    char *hex = hex_new(hash, len);
    if (!hex)
        return -ENOMEM;
    char b1[24];
    const char *p[] = {db_param_i64(b1, id), hex};
    PGresult *res;
    /* "used_at IS NULL" in the UPDATE's WHERE makes each code single use even
     * when two log-ins present it at the same moment: the row lock serialises
     * them and the second finds it used. */
    int r = db_exec(db,
                    "WITH used AS (UPDATE recovery_codes SET used_at = now()"
                    "   WHERE user_id = $1 AND code_hash = decode($2, 'hex') AND used_at IS NULL"
                    "   RETURNING id)"
                    " SELECT (SELECT count(*) FROM used),"
                    "  (SELECT count(*) FROM recovery_codes WHERE user_id = $1"
                    "   AND used_at IS NULL) - (SELECT count(*) FROM used)",
                    2, p, &res, NULL);
    free(hex);
    if (r < 0)
        return r;
    r = strcmp(PQgetvalue(res, 0, 0), "1") == 0 ? 0 : -ENOENT;
    if (r == 0 && ret_left)
        *ret_left = (int)db_get_i64(res, 0, 1);
    PQclear(res);
    return r;
}

int db_user_recovery_replace(struct db *db, int64_t id, const unsigned char *const *hashes,
                             size_t n, size_t hash_len)
{
    char *arr = hex_array_new(hashes, n, hash_len);
    if (!arr)
        return -ENOMEM;
    char b1[24];
    const char *p[] = {db_param_i64(b1, id), arr};
    PGresult *res;
    int r = db_exec(db,
                    "WITH u AS (SELECT id FROM users WHERE id = $1 AND totp_enabled FOR UPDATE),"
                    " d AS (DELETE FROM recovery_codes WHERE user_id IN (SELECT id FROM u)),"
                    " i AS (INSERT INTO recovery_codes (user_id, code_hash)"
                    "   SELECT u.id, decode(h, 'hex') FROM u, unnest($2::text[]) AS h)"
                    " SELECT count(*) FROM u",
                    2, p, &res, NULL);
    free(arr);
    if (r < 0)
        return r;
    r = strcmp(PQgetvalue(res, 0, 0), "1") == 0 ? 0 : -ENOENT;
    PQclear(res);
    return r;
}

int db_role_totp_required(struct db *db, const char *role, bool *ret_required)
{
    const char *p[] = {role};
    PGresult *res;
    int r =
        db_exec(db, "SELECT totp_required FROM role_policies WHERE role = $1", 1, p, &res, NULL);
    if (r < 0)
        return r;
    if (PQntuples(res) == 1)
        *ret_required = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    else
        r = -ENOENT;
    PQclear(res);
    return r;
}

int db_role_set_totp_required(struct db *db, const char *role, bool required)
{
    const char *p[] = {role, required ? "true" : "false"};
    return update_one(db, "UPDATE role_policies SET totp_required = $2::boolean WHERE role = $1", 2,
                      p);
}
