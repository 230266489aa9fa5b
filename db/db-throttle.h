/*
 * Failed-attempt throttles (part of db.h; include "db.h", not this).
 *
 * Two counters slow down password guessing: one per account (users.
 * failed_logins / locked_until, see db-user.h) and one per throttle key in
 * auth_throttle (a client address, "addr:192.0.2.7").  Both grow the same
 * way, described by struct db_backoff, and both are updated in one statement
 * each so that concurrent failures from many broker threads or hosts never
 * lose a count.
 *
 * Times are seconds since the epoch chosen by the caller (auth/ passes its
 * own clock, which tests can move), never the server's now().
 */
#pragma once

#include <stdint.h>

struct db;

/*
 * How failures turn into a block: from the @threshold-th failure on, each
 * failure blocks for @base_s seconds, doubled for every further failure,
 * at most @max_s.  A throttle key whose last block (or, never blocked, whose
 * first failure) is more than @window_s old starts counting afresh.
 */
struct db_backoff {
    int threshold; /* >= 1 */
    int base_s;    /* >= 1 */
    int max_s;     /* >= base_s */
    int window_s;  /* >= 1; used by auth_throttle only */
};

/*
 * Blocked-until time of @key at @now_s: sets *ret_blocked_until to the end
 * of the block (seconds since the epoch), or 0 when @key is not blocked.
 */
int db_throttle_check(struct db *db, const char *key, int64_t now_s, int64_t *ret_blocked_until);

/*
 * Count one failure for @key at @now_s.  Sets *ret_failures (may be NULL) to
 * the count after this failure and *ret_blocked_until (may be NULL) to the
 * end of the block it caused, 0 when none.
 */
int db_throttle_fail(struct db *db, const char *key, int64_t now_s, const struct db_backoff *rule,
                     int *ret_failures, int64_t *ret_blocked_until);

/* Forget @key's failures (after a successful log-in from it). */
int db_throttle_reset(struct db *db, const char *key);

/*
 * Delete keys that would start counting afresh anyway (last block or first
 * failure more than @window_s before @now_s), so that failures from many
 * addresses cannot grow the table without bound.  Returns the number deleted.
 */
int db_throttle_prune(struct db *db, int64_t now_s, int window_s);
