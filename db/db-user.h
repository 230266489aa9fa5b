/*
 * People who log in, their second factor and recovery codes, and the
 * per-role policy (part of db.h; include "db.h", not this).
 *
 * Times given to and returned by these functions are seconds since the
 * epoch; 0 means "none".  Secrets (TOTP seed, recovery-code hashes) travel
 * as raw bytes.
 */
#pragma once

#include "db-throttle.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db;

#define DB_USERNAME_MAX 128
#define DB_TOTP_SECRET_MAX 64

struct db_user {
    int64_t id;
    char username[DB_USERNAME_MAX + 1];
    char source[8];      /* "local" or "pam" */
    char role[16];       /* "admin", "operator" or "user" */
    char *password_hash; /* owned; argon2id encoded string, NULL for pam users */
    bool disabled;
    unsigned char totp_secret[DB_TOTP_SECRET_MAX];
    size_t totp_secret_len; /* 0: no secret (not enrolled, not pending) */
    bool totp_enabled;      /* false with a secret: enrolment not yet confirmed */
    int64_t totp_last_step; /* highest TOTP time step accepted so far */
    int failed_logins;
    int64_t locked_until; /* 0: not locked (or never was) */
    int64_t last_login_at;
};

struct db_user_new {
    const char *username;      /* ^[A-Za-z0-9_][A-Za-z0-9._@-]{0,127}$ */
    const char *source;        /* "local" or "pam" */
    const char *role;          /* "admin", "operator" or "user" */
    const char *password_hash; /* local users only; NULL for pam */
    const char *display_name;  /* NULL = "" */
};

/* Accepts NULL; returns NULL.  Wipes the secrets it held. */
struct db_user *db_user_free(struct db_user *u);

/* Insert a user.  -EEXIST when the name is taken, -EINVAL on a bad field. */
int db_user_create(struct db *db, const struct db_user_new *u, int64_t *ret_id);

/* Look a user up by name / id.  *ret_user is new (db_user_free).  -ENOENT when absent. */
int db_user_get_by_name(struct db *db, const char *username, struct db_user **ret_user);
int db_user_get(struct db *db, int64_t id, struct db_user **ret_user);

/*
 * Replace the password hash of local user @id.  When @expected_old is not
 * NULL the update happens only if the stored hash still equals it (a
 * rehash must not undo a password change made meanwhile): -ESTALE otherwise.
 * -ENOENT when there is no such local user.
 */
int db_user_set_password_hash(struct db *db, int64_t id, const char *hash,
                              const char *expected_old);

/* Change @id's role ("admin", "operator", "user") or disabled flag.  -ENOENT when absent,
 * -EINVAL for an unknown role. */
int db_user_set_role(struct db *db, int64_t id, const char *role);
int db_user_set_disabled(struct db *db, int64_t id, bool disabled);

/*
 * Count a failed log-in of user @id at @now_s and lock the account per
 * @rule (threshold, base_s, max_s; window_s is not used: the account count
 * lasts until a successful log-in).  Sets *ret_failures and
 * *ret_locked_until (0 when not locked); both may be NULL.
 */
int db_user_login_failed(struct db *db, int64_t id, int64_t now_s, const struct db_backoff *rule,
                         int *ret_failures, int64_t *ret_locked_until);

/* A successful log-in at @now_s: clear the failure count and lock. */
int db_user_login_succeeded(struct db *db, int64_t id, int64_t now_s);

/* An admin lifts the lock of @id: clear the failure count and lock. -ENOENT when absent. */
int db_user_unlock(struct db *db, int64_t id);

/*
 * Store @secret as the user's pending TOTP seed (totp_enabled stays false)
 * and forget the last used step.  -EALREADY when TOTP is already enabled
 * (disable it first), -ENOENT when there is no such user.
 */
int db_user_totp_set_pending(struct db *db, int64_t id, const unsigned char *secret, size_t len);

/*
 * Enable TOTP for @id if its pending seed is still @secret, record @step
 * as used, and replace the recovery codes with the @n hashes in @hashes
 * (each @hash_len bytes) — all in one statement.  -ESTALE when the seed
 * changed or TOTP is already enabled.
 */
int db_user_totp_enable(struct db *db, int64_t id, const unsigned char *secret, size_t len,
                        int64_t step, const unsigned char *const *hashes, size_t n,
                        size_t hash_len);

/* Remove the second factor and the recovery codes of @id. */
int db_user_totp_disable(struct db *db, int64_t id);

/*
 * Accept TOTP time step @step for @id only if it is later than every step
 * accepted before (one statement, so two log-ins racing with the same code
 * cannot both win).  -EALREADY for a replayed or older step.
 */
int db_user_totp_use_step(struct db *db, int64_t id, int64_t step);

/*
 * Spend the unused recovery code of @id whose hash is @hash.  -ENOENT when
 * there is none (wrong or already used).  Sets *ret_left (may be NULL) to the
 * number of unused codes that remain.
 */
int db_user_recovery_use(struct db *db, int64_t id, const unsigned char *hash, size_t len,
                         int *ret_left);

/* Replace all recovery codes of @id with @n new hashes, in one statement. */
int db_user_recovery_replace(struct db *db, int64_t id, const unsigned char *const *hashes,
                             size_t n, size_t hash_len);

/* Whether role @role must use a second factor (role_policies.totp_required). */
int db_role_totp_required(struct db *db, const char *role, bool *ret_required);
int db_role_set_totp_required(struct db *db, const char *role, bool required);
