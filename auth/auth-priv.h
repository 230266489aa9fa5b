/* Private to auth/: the context, the back-end vtable and shared helpers. */
#pragma once

#include "auth.h"

#define AUTH_MAX_BACKENDS 4

/* What a back end learned about a person while checking their password. */
struct auth_ident {
    char **unix_groups; /* NULL-terminated, owned; NULL when the back end has none */
};

/*
 * One way of checking passwords.  The log-in core only calls these; it never
 * asks which back end it is talking to.  Each back end owns the users rows
 * whose source equals its @source.
 */
struct auth_backend_ops {
    const char *source; /* users.source it owns: "local", "pam" */

    /*
     * Check @password for @username.  @user is the person's users row, or
     * NULL when the database has none yet (then a back end that knows the
     * person may accept them, and the core creates the row with @source).
     * @rhost: client address or NULL.  Fills @ident on success.
     * Returns 0, -EACCES wrong password, -ENOENT unknown person, -EPERM the
     * back end refuses the account, other -errno on failure.
     */
    int (*verify)(struct auth *a, const char *username, const char *password, const char *rhost,
                  const struct db_user *user, struct auth_ident *ident);

    /*
     * After a log-in fully succeeded (second factor included): keep what the
     * back end stores about @user current.  NULL when nothing to do.
     */
    int (*after_login)(struct auth *a, const struct db_user *user, const char *password,
                       const struct auth_ident *ident);
};

extern const struct auth_backend_ops auth_backend_local;
extern const struct auth_backend_ops auth_backend_pam;

struct auth {
    struct db *db;
    struct auth_config cfg; /* string members point at the copies below */
    char *backends;
    char *pam_service;
    char *pam_confdir;
    const struct auth_backend_ops *order[AUTH_MAX_BACKENDS]; /* tried for unknown names */
    size_t n_order;
    /* A hash with the current parameters of a password nobody knows: checked
     * for names that do not exist so they take as long as names that do. */
    char *decoy_hash;
    bool oath_inited;
};

/* Seconds since the epoch from the configured clock. */
int64_t auth_now(const struct auth *a);

/* The back end owning users.source @source, NULL when none is compiled in. */
const struct auth_backend_ops *auth_backend_find(const char *source);

/* Whether @name is a valid users.username (same rule as the schema). */
bool auth_username_valid(const char *name);

/* Fill @buf with @n random bytes from OpenSSL's CSPRNG.  0 or -EIO. */
int auth_random(void *buf, size_t n);

/* Second factor checks used by the log-in core (totp.c). */
/*
 * Check 6-digit @code against @secret at @now_s with a window of one step
 * either side.  Sets *ret_step to the step the code belongs to.  0 or -EACCES.
 */
int auth_totp_check(const unsigned char *secret, size_t len, const char *code, int64_t now_s,
                    int64_t *ret_step);

/* Whether @code has the shape of a TOTP code (6 digits) rather than a recovery code. */
bool auth_totp_code_shape(const char *code);

/*
 * Spend recovery code @code of @user_id.  0 and *ret_left, -EACCES when it
 * is not an unused code of theirs.
 */
int auth_recovery_use(struct auth *a, int64_t user_id, const char *code, int *ret_left);
