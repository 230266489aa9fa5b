/*
 * libatrium-auth: who may log in, with what second factor, in which role,
 * and to which pools.  This is the one public header of auth/.
 *
 * People come from two back ends behind one interface: local users (argon2id
 * password hashes in the database) and PAM (service "atrium", so the host's
 * own accounts, LDAP/SSSD or Kerberos work as the admin configured them).
 * A PAM user's first successful log-in creates their users row.  On top of
 * either back end sit TOTP (RFC 6238) with one-time recovery codes, account
 * lockout and per-address throttling, roles, and pool entitlements.
 *
 * Conventions (STYLE.md): functions return 0 or -errno; outputs go through
 * ret_ parameters, untouched on failure; the library logs at debug level
 * only.  A struct auth uses its struct db from one thread at a time.
 */
#pragma once

#include "db.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct auth;

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */
/* ------------------------------------------------------------------------ */

/*
 * Production password-hashing cost: the OWASP Password Storage Cheat Sheet's
 * argon2id setting (19 MiB, 2 passes, 1 lane).  The only place these numbers
 * live; stored hashes that differ are rehashed at the next log-in.
 */
#define AUTH_ARGON2_M_COST_KIB 19456
#define AUTH_ARGON2_T_COST 2
#define AUTH_ARGON2_PARALLELISM 1
#define AUTH_ARGON2_SALT_LEN 16
#define AUTH_ARGON2_HASH_LEN 32

/* Longest password accepted; bounds the work one request can cause. */
#define AUTH_PASSWORD_MAX 1024

/* Default PAM service; /etc/pam.d/atrium ships in auth/pam/atrium. */
#define AUTH_PAM_SERVICE "atrium"

struct auth_argon2_params {
    uint32_t m_cost_kib;
    uint32_t t_cost;
    uint32_t parallelism;
};

struct auth_config {
    struct auth_argon2_params argon2;
    /* Account lockout (window_s unused: counts last until a success). */
    struct db_backoff account;
    /* Per client address throttle (IPv6: per /64). */
    struct db_backoff address;
    /* Back ends tried, in order, for a name that has no users row yet;
     * comma-separated sources ("local,pam").  A name that has a row is
     * always checked by the back end of its source only. */
    const char *backends;
    const char *pam_service; /* NULL: AUTH_PAM_SERVICE */
    const char *pam_confdir; /* NULL: the system's (/etc/pam.d) */
    /* Wall clock in seconds since the epoch; NULL: time().  Tests move it. */
    int64_t (*clock)(void *userdata);
    void *clock_userdata;
};

/*
 * Fill @cfg with production defaults: OWASP argon2id, account lock after 5
 * failures for 1 min doubling up to 1 h, address block after 20 failures
 * for 1 min doubling up to 1 h (forgotten after 15 min of quiet), back ends
 * "local,pam", PAM service "atrium", system clock.
 */
void auth_config_defaults(struct auth_config *cfg);

/*
 * New auth context over @db (borrowed; must outlive the context) with a copy
 * of @cfg.  -EINVAL for a bad config (unknown back end, impossible limits).
 * Free with auth_free.
 */
int auth_new(struct db *db, const struct auth_config *cfg, struct auth **ret_auth);

/* Accepts NULL; returns NULL. */
struct auth *auth_free(struct auth *a);

/* Free a NULL-terminated string vector this library returned; accepts NULL. */
char **auth_strv_free(char **v);

/* ------------------------------------------------------------------------ */
/* Roles and permissions                                                    */
/* ------------------------------------------------------------------------ */

enum auth_role {
    AUTH_ROLE_USER = 0, /* uses desktops it is entitled to */
    AUTH_ROLE_OPERATOR, /* help desk: sees everything, powers VMs, ends sessions */
    AUTH_ROLE_ADMIN,    /* everything */
};

enum auth_action {
    AUTH_ACTION_READ = 0,       /* inventory: hosts, pools, VMs, images, sessions */
    AUTH_ACTION_AUDIT_READ,     /* the audit log */
    AUTH_ACTION_POOL_WRITE,     /* create/change/delete pools and entitlements */
    AUTH_ACTION_IMAGE_WRITE,    /* import/delete golden images, push versions */
    AUTH_ACTION_HOST_WRITE,     /* add hosts, maintenance mode */
    AUTH_ACTION_USER_WRITE,     /* users, groups, roles, TOTP resets */
    AUTH_ACTION_SETTINGS_WRITE, /* site settings */
    AUTH_ACTION_VM_POWER,       /* start/stop/reset any VM */
    AUTH_ACTION_SESSION_MANAGE, /* disconnect/log off other people's sessions */
    AUTH_ACTION_CONSOLE_OWN,    /* open a console of one's own desktop */
    AUTH_ACTION_CONSOLE_ANY,    /* open a console of any VM */
    AUTH_ACTION_COUNT_
};

/* "admin", "operator", "user" <-> enum.  from_string: 0 or -EINVAL. */
int auth_role_from_string(const char *s, enum auth_role *ret_role);
const char *auth_role_to_string(enum auth_role role);

/* "read", "audit.read", "pool.write", ... "console.any" <-> enum. */
int auth_action_from_string(const char *s, enum auth_action *ret_action);
const char *auth_action_to_string(enum auth_action action);

/* Whether @role may do @action.  False for out-of-range values. */
bool auth_role_allows(enum auth_role role, enum auth_action action);

/* ------------------------------------------------------------------------ */
/* Log-in                                                                   */
/* ------------------------------------------------------------------------ */

enum auth_outcome {
    AUTH_OK = 0,           /* authenticated; the only outcome that grants access */
    AUTH_NEED_TOTP,        /* password right, TOTP code (or recovery code) needed */
    AUTH_NEED_TOTP_ENROLL, /* password right, role requires TOTP: enrol before access */
    AUTH_BAD_CREDENTIALS,  /* unknown user, wrong password or wrong/replayed code */
    AUTH_LOCKED,           /* account or address blocked; see retry_after_s */
    AUTH_DISABLED,         /* account disabled (in Atrium or by the PAM account stack) */
};

const char *auth_outcome_to_string(enum auth_outcome o);

struct auth_login_request {
    const char *username;
    const char *password;
    const char *totp_code;   /* NULL/"": none; 6 digits or a recovery code */
    const char *client_addr; /* textual IPv4/IPv6 address, NULL when unknown */
};

struct auth_login_result {
    enum auth_outcome outcome;
    /* Set for AUTH_OK, AUTH_NEED_TOTP and AUTH_NEED_TOTP_ENROLL, else 0. */
    int64_t user_id;
    enum auth_role role;
    char username[DB_USERNAME_MAX + 1];
    int retry_after_s;       /* AUTH_LOCKED: seconds until another try may work */
    bool recovery_code_used; /* AUTH_OK through a recovery code */
    int recovery_codes_left; /* ... and how many remain */
};

/*
 * Authenticate one log-in attempt.  In order: the client address's block,
 * the account's lock, the password (through the user's back end, or for a
 * name not yet in the database the configured back ends in order), the
 * account's disabled flag, then the second factor when the user enrolled
 * one.  Wrong passwords and codes count against the account and the address;
 * success clears both, rehashes an outdated local hash and refreshes a PAM
 * user's Unix group memberships.  Every attempt leaves one audit_log row
 * (action "login"; never the password or code).
 * Returns 0 and fills *ret (whatever the outcome), -EINVAL for a missing
 * field or an unparsable client address, or -errno when the database or PAM
 * failed (then nothing is granted).
 */
int auth_login(struct auth *a, const struct auth_login_request *req, struct auth_login_result *ret);

/* Admin actions on the throttles: lift an account's lock (and its failure
 * count), or an address's block.  -ENOENT for an unknown user; -EINVAL for
 * an unparsable address. */
int auth_user_unlock(struct auth *a, int64_t user_id);
int auth_address_unblock(struct auth *a, const char *client_addr);

/*
 * Forget address counters that have been quiet longer than the address
 * window; the broker calls this now and then (e.g. every few minutes) so
 * failures from many addresses cannot grow the table without bound.
 * Returns the number of counters dropped, or -errno.
 */
int auth_throttle_prune(struct auth *a);

/* ------------------------------------------------------------------------ */
/* Back ends                                                                */
/* ------------------------------------------------------------------------ */

/*
 * Run PAM service @service (NULL: "atrium") from @confdir (NULL: the system
 * directory) for @username: pam_authenticate with a conversation that
 * answers with @password (never logged), then pam_acct_mgmt.  @rhost (may be
 * NULL) is passed as PAM_RHOST.  On success sets *ret_groups (may be NULL)
 * to the user's Unix groups from getgrouplist (auth_strv_free; empty when
 * NSS does not know the user).
 * Returns 0, -EACCES for wrong credentials, -ENOENT for an unknown user,
 * -EPERM when the account stack refuses (expired, locked, disabled),
 * -EIO for any other PAM failure.
 */
int auth_pam_check(const char *service, const char *confdir, const char *username,
                   const char *password, const char *rhost, char ***ret_groups);

/*
 * Create a local user with @password hashed per the context's argon2
 * parameters.  -EEXIST when the name is taken, -EINVAL for a bad name or
 * an empty/too long password.
 */
int auth_local_user_create(struct auth *a, const char *username, const char *password,
                           enum auth_role role, int64_t *ret_id);

/* Set a new password for local user @user_id.  -ENOENT when no such local user. */
int auth_local_password_set(struct auth *a, int64_t user_id, const char *password);

/* ------------------------------------------------------------------------ */
/* Password hashes (argon2id)                                               */
/* ------------------------------------------------------------------------ */

/*
 * Hash @password with @params and a fresh random salt.  Sets *ret_encoded
 * to the PHC string ("$argon2id$v=19$m=...,t=...,p=...$salt$hash"; free()).
 */
int auth_password_hash(const struct auth_argon2_params *params, const char *password,
                       char **ret_encoded);

/*
 * A PHC string with @params, a random salt and a random digest: the hash of
 * no password anyone can find (verifying against it costs one argon2id run
 * with @params, like a real hash, and fails with -EACCES).  Made without
 * running argon2, so it is free to make; see auth_new() for why that
 * matters.  Sets *ret_encoded (free()); 0, -ENOMEM or -EIO.
 */
int auth_password_decoy(const struct auth_argon2_params *params, char **ret_encoded);

/* 0 when @password matches @encoded, -EACCES when not, -EINVAL when @encoded is malformed. */
int auth_password_verify(const char *encoded, const char *password);

/*
 * True when @encoded was not made with exactly @params (or is not a
 * well-formed argon2id v19 hash of our salt and hash lengths).
 */
bool auth_password_needs_rehash(const struct auth_argon2_params *params, const char *encoded);

/* ------------------------------------------------------------------------ */
/* Second factor (TOTP, RFC 6238: SHA-1, 6 digits, 30 s)                    */
/* ------------------------------------------------------------------------ */

#define AUTH_TOTP_SECRET_LEN 20 /* 160 bits, RFC 4226's recommendation */
#define AUTH_TOTP_DIGITS 6
#define AUTH_TOTP_PERIOD_S 30
#define AUTH_RECOVERY_CODES 10

/*
 * Start TOTP enrolment of @user_id: store a new random secret as pending
 * and set *ret_uri (free()) to
 * "otpauth://totp/Atrium:<user>?secret=<base32>&issuer=Atrium&digits=6&period=30"
 * for the authenticator app.  -EALREADY when TOTP is already enabled.
 */
int auth_totp_enroll_begin(struct auth *a, int64_t user_id, char **ret_uri);

/*
 * Finish enrolment with a @code from the app: enables TOTP, marks the code's
 * step used, and sets *ret_codes to AUTH_RECOVERY_CODES new recovery codes
 * ("XXXX-XXXX-XXXX-XXXX", NULL-terminated, auth_strv_free).  They are shown
 * once: only their hashes are stored.  -EACCES for a wrong code, -ENOENT
 * when no enrolment is pending, -EALREADY when TOTP is already enabled.
 */
int auth_totp_enroll_confirm(struct auth *a, int64_t user_id, const char *code, char ***ret_codes);

/* Remove @user_id's second factor and recovery codes (admin reset). */
int auth_totp_disable(struct auth *a, int64_t user_id);

/* Replace @user_id's recovery codes with new ones (as enroll_confirm). -ENOENT without TOTP. */
int auth_recovery_codes_regenerate(struct auth *a, int64_t user_id, char ***ret_codes);

/* ------------------------------------------------------------------------ */
/* Entitlements                                                             */
/* ------------------------------------------------------------------------ */

/*
 * Pools @user_id may use, directly or through a group (local groups and
 * the Unix groups PAM reported at their last log-in).  Sets *ret_pool_ids
 * (free(), NULL when none) and *ret_n.  None for a disabled user.
 */
int auth_user_pools(struct auth *a, int64_t user_id, int64_t **ret_pool_ids, size_t *ret_n);

/* Whether @user_id may use pool @pool_id. */
int auth_entitled(struct auth *a, int64_t user_id, int64_t pool_id, bool *ret_entitled);
