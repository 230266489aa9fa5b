/*
 * Log-in sessions of the web console and API tokens (part of db.h; include
 * "db.h", not this).  A row holds only the SHA-256 of its opaque token (and
 * of its CSRF token), so a copy of the database lets nobody act as anyone.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db;

#define DB_TOKEN_HASH_LEN 32 /* SHA-256 */

struct db_login_new {
    const unsigned char *token_hash; /* DB_TOKEN_HASH_LEN bytes */
    const unsigned char *csrf_hash;  /* DB_TOKEN_HASH_LEN bytes, or NULL (API tokens) */
    int64_t user_id;
    const char *kind;        /* "browser" or "api" */
    bool mfa_passed;         /* passed every factor the user needs (false: enrolment only) */
    const char *client_addr; /* textual IP or NULL */
    const char *user_agent;  /* NULL = "" */
    const char *name;        /* API tokens: what the admin called it; NULL = "" */
    int ttl_s;               /* expires this many seconds after now (> 0) */
};

/* Insert a login.  Sets *ret_id and *ret_expires_us (may be NULL; µs since the epoch). */
int db_login_create(struct db *db, const struct db_login_new *l, int64_t *ret_id,
                    int64_t *ret_expires_us);

/*
 * Bound what one person's log-ins hold: revoke all but the newest @keep_live
 * live browser sessions of @user_id, and delete their log-ins that expired
 * or were revoked more than a day ago.  One statement.  Sets *ret_revoked
 * (may be NULL) to the number of sessions revoked now.
 */
int db_login_prune_user(struct db *db, int64_t user_id, int keep_live, int *ret_revoked);

/* A live (not revoked, not expired) login of an enabled user, as found by its token. */
struct db_login {
    int64_t id;
    int64_t user_id;
    char username[129];
    char role[16];
    char kind[8]; /* "browser" or "api" */
    unsigned char csrf_hash[DB_TOKEN_HASH_LEN];
    bool has_csrf;
    int64_t expires_us;
    bool mfa_passed; /* false: the user must enrol a second factor before anything else */
    bool stale_seen; /* last_seen_at is more than a minute old: worth a touch */
};

/*
 * Look up the live login whose token hashes to @token_hash.  -ENOENT when
 * none (unknown, expired, revoked, or the user is disabled).
 */
int db_login_lookup(struct db *db, const unsigned char *token_hash, struct db_login *ret_login);

/* Login @id has now passed every factor its user needs (TOTP enrolment finished). */
int db_login_set_mfa_passed(struct db *db, int64_t id);

/* Record that login @id was used now. */
int db_login_touch(struct db *db, int64_t id);

/*
 * Revoke login @id.  When @user_id is not 0 only a login of that user is
 * revoked, when @kind is not NULL only one of that kind.  -ENOENT when there
 * was no such live login.
 */
int db_login_revoke(struct db *db, int64_t id, int64_t user_id, const char *kind);

/*
 * API tokens (kind 'api'), newest first, as a JSON array of objects
 * {id, user_id, username, name, created_at, last_seen_at, expires_at,
 * revoked_at}: never the hash.  *ret_items is a new reference.
 */
int db_login_api_list(struct db *db, int limit, int offset, json_t **ret_items);
