/* auth_throttle: per-key failure counters with a growing block. */
#include "db-priv.h"

#include <errno.h>
#include <stdlib.h>

int db_throttle_check(struct db *db, const char *key, int64_t now_s, int64_t *ret_blocked_until)
{
    char b1[24];
    const char *p[] = {key, db_param_i64(b1, now_s)};
    PGresult *res;
    int r = db_exec(db,
                    "SELECT extract(epoch from blocked_until)::bigint FROM auth_throttle"
                    " WHERE key = $1 AND blocked_until > to_timestamp($2::bigint)",
                    2, p, &res, NULL);
    if (r < 0)
        return r;
    *ret_blocked_until = PQntuples(res) == 1 ? db_get_i64(res, 0, 0) : 0;
    PQclear(res);
    return 0;
}

int db_throttle_fail(struct db *db, const char *key, int64_t now_s, const struct db_backoff *rule,
                     int *ret_failures, int64_t *ret_blocked_until)
{
    if (rule->threshold < 1 || rule->base_s < 1 || rule->max_s < rule->base_s || rule->window_s < 1)
        return -EINVAL;
    char b1[24], b2[24], b3[24], b4[24], b5[24];
    const char *p[] = {key,
                       db_param_i64(b1, now_s),
                       db_param_i64(b2, rule->threshold),
                       db_param_i64(b3, rule->base_s),
                       db_param_i64(b4, rule->max_s),
                       db_param_i64(b5, rule->window_s)};
    PGresult *res;
    /*
     * One upsert, so concurrent failures each count.  "stale" is repeated
     * in every SET expression because they all read the old row.  Keeping
     * blocked_until after the block ends lets the delay keep doubling for
     * an attacker who comes back right after each block, while a person who
     * stays away for @window_s starts from zero.  The shift is capped so the
     * doubling cannot overflow before least() applies the maximum.
     */
    int r = db_exec(
        db,
        "WITH s AS (SELECT to_timestamp($2::bigint) AS now,"
        "                  to_timestamp($2::bigint - $6::bigint) AS horizon)"
        " INSERT INTO auth_throttle AS t (key, failures, window_start, blocked_until)"
        " SELECT $1, 1, s.now, CASE WHEN $3::int <= 1 THEN s.now + make_interval(secs => $4::int)"
        "        END FROM s"
        " ON CONFLICT (key) DO UPDATE SET"
        "  failures = CASE WHEN coalesce(t.blocked_until, t.window_start) < (SELECT horizon FROM s)"
        "             THEN 1 ELSE t.failures + 1 END,"
        "  window_start = CASE WHEN coalesce(t.blocked_until, t.window_start)"
        "                 < (SELECT horizon FROM s) THEN (SELECT now FROM s) ELSE t.window_start "
        "END,"
        "  blocked_until = CASE"
        "   WHEN coalesce(t.blocked_until, t.window_start) < (SELECT horizon FROM s) THEN"
        "     CASE WHEN $3::int <= 1 THEN (SELECT now FROM s) + make_interval(secs => $4::int) END"
        "   WHEN t.failures + 1 >= $3::int THEN (SELECT now FROM s) + make_interval(secs =>"
        "     least($5::bigint, $4::bigint * (1::bigint << least(t.failures + 1 - $3::int, 30))))"
        "   ELSE t.blocked_until END"
        " RETURNING failures, extract(epoch from blocked_until)::bigint",
        6, p, &res, NULL);
    if (r < 0)
        return r;
    int failures = (int)db_get_i64(res, 0, 0);
    int64_t until = db_get_i64(res, 0, 1);
    PQclear(res);
    if (ret_failures)
        *ret_failures = failures;
    if (ret_blocked_until)
        *ret_blocked_until = until > now_s ? until : 0;
    return 0;
}

int db_throttle_reset(struct db *db, const char *key)
{
    const char *p[] = {key};
    return db_exec(db, "DELETE FROM auth_throttle WHERE key = $1", 1, p, NULL, NULL);
}

int db_throttle_prune(struct db *db, int64_t now_s, int window_s)
{
    char b1[24], b2[24];
    const char *p[] = {db_param_i64(b1, now_s), db_param_i64(b2, window_s)};
    PGresult *res;
    int r = db_exec(db,
                    "DELETE FROM auth_throttle WHERE coalesce(blocked_until, window_start)"
                    " < to_timestamp($1::bigint - $2::bigint)",
                    2, p, &res, NULL);
    if (r < 0)
        return r;
    r = atoi(PQcmdTuples(res));
    PQclear(res);
    return r;
}
