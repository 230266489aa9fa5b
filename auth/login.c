/*
 * The log-in core: one attempt from start to audit row.
 *
 * Why this order: blocks are checked before any password work, so a blocked
 * address or a locked account costs an attacker a round trip and costs us
 * no argon2 or PAM run.  The disabled flag is checked only after the
 * password matched, so it reveals nothing to someone guessing.  The second
 * factor comes last and its failures count like wrong passwords, so TOTP
 * codes cannot be guessed faster than passwords.  The core never asks which
 * back end it talks to: it looks the back end up by the user's source.
 */
#include "auth-priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* "addr:<ip>" for IPv4, "addr:<prefix>/64" for IPv6: one IPv6 host can use
 * its whole /64, so the /64 is the unit that is throttled. */
static int throttle_key(const char *addr, char *buf, size_t size)
{
    struct in6_addr a6;
    struct in_addr a4;
    char text[INET6_ADDRSTRLEN];
    if (inet_pton(AF_INET, addr, &a4) == 1) {
        inet_ntop(AF_INET, &a4, text, sizeof(text));
        snprintf(buf, size, "addr:%s", text);
        return 0;
    }
    if (inet_pton(AF_INET6, addr, &a6) != 1)
        return -EINVAL;
    if (IN6_IS_ADDR_V4MAPPED(&a6)) {
        memcpy(&a4, &a6.s6_addr[12], 4);
        inet_ntop(AF_INET, &a4, text, sizeof(text));
        snprintf(buf, size, "addr:%s", text);
        return 0;
    }
    memset(&a6.s6_addr[8], 0, 8);
    inet_ntop(AF_INET6, &a6, text, sizeof(text));
    snprintf(buf, size, "addr:%s/64", text);
    return 0;
}

/* Everything known about one attempt, for the audit row and the result. */
struct attempt {
    const struct auth_login_request *req;
    const char *key; /* throttle key, NULL without an address */
    int64_t now;
    struct db_user *user; /* NULL while unknown */
    const struct auth_backend_ops *backend;
    const char *reason; /* short word for the audit row */
    const char *factor; /* "totp", "recovery" or NULL */
};

static const char *audit_outcome(enum auth_outcome o)
{
    switch (o) {
    case AUTH_OK:
        return "success";
    case AUTH_BAD_CREDENTIALS:
        return "failure";
    default:
        return "denied";
    }
}

static int audit(struct auth *a, const struct attempt *at, enum auth_outcome o)
{
    json_t *detail = json_object();
    if (!detail)
        return -ENOMEM;
    int r = json_object_set_new(detail, "result", json_string(auth_outcome_to_string(o)));
    if (r == 0 && at->reason)
        r = json_object_set_new(detail, "reason", json_string(at->reason));
    if (r == 0 && at->backend)
        r = json_object_set_new(detail, "source", json_string(at->backend->source));
    if (r == 0 && at->factor)
        r = json_object_set_new(detail, "factor", json_string(at->factor));
    if (r < 0) {
        json_decref(detail);
        return -ENOMEM;
    }
    /* A name that fails the username rule is attacker-chosen bytes, maybe
     * not even UTF-8: it is not copied into the log. */
    const char *actor = auth_username_valid(at->req->username) ? at->req->username : "";
    struct db_audit_entry e = {
        .actor_user_id = at->user ? at->user->id : 0,
        .actor = actor,
        .client_addr = at->req->client_addr,
        .action = "login",
        .target_type = "user",
        .target_id = actor,
        .outcome = audit_outcome(o),
        .detail = detail,
    };
    r = db_audit_add(a->db, &e);
    json_decref(detail);
    return r;
}

/* A wrong password or code: count it against the account and the address. */
static int count_failure(struct auth *a, const struct attempt *at)
{
    int r = 0;
    if (at->user)
        r = db_user_login_failed(a->db, at->user->id, at->now, &a->cfg.account, NULL, NULL);
    if (r == 0 && at->key)
        r = db_throttle_fail(a->db, at->key, at->now, &a->cfg.address, NULL, NULL);
    return r;
}

static int retry_after(int64_t until, int64_t now)
{
    int64_t d = until - now;
    return d < 1 ? 1 : d > INT32_MAX ? INT32_MAX : (int)d;
}

/*
 * Check the password through the user's back end, or, for a name without a
 * row, through the configured back ends in order; a back end that accepts
 * an unknown name gets a users row created for it.
 */
static int check_password(struct auth *a, struct attempt *at, struct auth_ident *ident)
{
    const struct auth_login_request *req = at->req;
    if (at->user) {
        at->backend = auth_backend_find(at->user->source);
        if (!at->backend)
            return -EPROTO;
        return at->backend->verify(a, req->username, req->password, req->client_addr, at->user,
                                   ident);
    }
    int r = -ENOENT;
    for (size_t i = 0; i < a->n_order; i++) {
        r = a->order[i]->verify(a, req->username, req->password, req->client_addr, NULL, ident);
        if (r == -ENOENT || r == -EACCES)
            continue;
        at->backend = a->order[i];
        break;
    }
    if (r < 0)
        return r;
    struct db_user_new nu = {
        .username = req->username, .source = at->backend->source, .role = "user"};
    int64_t id;
    r = db_user_create(a->db, &nu, &id);
    /* -EEXIST: a parallel first log-in of the same person created it. */
    if (r < 0 && r != -EEXIST)
        return r;
    r = db_user_get_by_name(a->db, req->username, &at->user);
    if (r < 0)
        return r;
    /* The row that won a creation race must belong to this back end. */
    if (strcmp(at->user->source, at->backend->source) != 0)
        return -EACCES;
    return 0;
}

/* The second factor, for a user who enrolled one.  0, -EACCES or -errno. */
static int check_second_factor(struct auth *a, struct attempt *at, struct auth_login_result *res)
{
    const char *code = at->req->totp_code;
    if (auth_totp_code_shape(code)) {
        at->factor = "totp";
        int64_t step;
        int r =
            auth_totp_check(at->user->totp_secret, at->user->totp_secret_len, code, at->now, &step);
        if (r < 0) {
            at->reason = "bad_totp";
            return r;
        }
        r = db_user_totp_use_step(a->db, at->user->id, step);
        if (r == -EALREADY) {
            at->reason = "totp_replay";
            return -EACCES;
        }
        return r;
    }
    at->factor = "recovery";
    int left = 0;
    int r = auth_recovery_use(a, at->user->id, code, &left);
    if (r == -EACCES)
        at->reason = "bad_recovery_code";
    if (r < 0)
        return r;
    res->recovery_code_used = true;
    res->recovery_codes_left = left;
    return 0;
}

static void result_user(struct auth_login_result *res, const struct db_user *u)
{
    res->user_id = u->id;
    snprintf(res->username, sizeof(res->username), "%s", u->username);
    enum auth_role role = AUTH_ROLE_USER;
    auth_role_from_string(u->role, &role);
    res->role = role;
}

/* Set res->outcome = reject and at->reason = why; returns 0 so callers can "return reject(...)". */
static int reject(struct auth_login_result *res, struct attempt *at, enum auth_outcome o,
                  const char *reason)
{
    *res = (struct auth_login_result){.outcome = o};
    at->reason = reason;
    return 0;
}

/*
 * Decide the outcome of one attempt (see the comment at the top).  Returns
 * 0 with res->outcome set, or -errno when the database or a back end failed.
 */
static int decide(struct auth *a, struct attempt *at, struct auth_ident *ident,
                  struct auth_login_result *res)
{
    const struct auth_login_request *req = at->req;
    int64_t until = 0;
    int r;
    if (at->key) {
        r = db_throttle_check(a->db, at->key, at->now, &until);
        if (r < 0)
            return r;
        if (until) {
            reject(res, at, AUTH_LOCKED, "address_blocked");
            res->retry_after_s = retry_after(until, at->now);
            return 0;
        }
    }

    size_t pwlen = strlen(req->password);
    if (!auth_username_valid(req->username) || pwlen == 0 || pwlen > AUTH_PASSWORD_MAX)
        return reject(res, at, AUTH_BAD_CREDENTIALS, "malformed");

    r = db_user_get_by_name(a->db, req->username, &at->user);
    if (r < 0 && r != -ENOENT)
        return r;
    if (at->user && at->user->locked_until > at->now) {
        reject(res, at, AUTH_LOCKED, "account_locked");
        res->retry_after_s = retry_after(at->user->locked_until, at->now);
        return 0;
    }

    r = check_password(a, at, ident);
    if (r == -ENOENT)
        return reject(res, at, AUTH_BAD_CREDENTIALS, "unknown_user");
    if (r == -EACCES)
        return reject(res, at, AUTH_BAD_CREDENTIALS, "bad_password");
    if (r == -EPERM)
        return reject(res, at, AUTH_DISABLED, "refused_by_backend");
    if (r < 0)
        return r;
    if (at->user->disabled)
        return reject(res, at, AUTH_DISABLED, "disabled");

    result_user(res, at->user);
    if (at->user->totp_enabled) {
        if (!req->totp_code || !req->totp_code[0]) {
            res->outcome = AUTH_NEED_TOTP;
            at->reason = "second_factor_needed";
            return 0;
        }
        r = check_second_factor(a, at, res);
        if (r == -EACCES)
            return reject(res, at, AUTH_BAD_CREDENTIALS, at->reason);
        if (r < 0)
            return r;
    } else {
        bool required = false;
        r = db_role_totp_required(a->db, at->user->role, &required);
        if (r < 0)
            return r;
        if (required) {
            res->outcome = AUTH_NEED_TOTP_ENROLL;
            at->reason = "enrolment_required";
            return 0;
        }
    }

    if (at->backend->after_login) {
        r = at->backend->after_login(a, at->user, req->password, ident);
        if (r < 0)
            return r;
    }
    r = db_user_login_succeeded(a->db, at->user->id, at->now);
    if (r == 0 && at->key)
        r = db_throttle_reset(a->db, at->key);
    if (r < 0)
        return r;
    res->outcome = AUTH_OK;
    return 0;
}

int auth_login(struct auth *a, const struct auth_login_request *req, struct auth_login_result *ret)
{
    if (!req || !req->username || !req->password || !ret)
        return -EINVAL;
    char key[INET6_ADDRSTRLEN + 16];
    struct attempt at = {.req = req, .now = auth_now(a)};
    struct auth_ident ident = {0};
    struct auth_login_result res = {.outcome = AUTH_BAD_CREDENTIALS};
    int r = 0;
    if (req->client_addr) {
        r = throttle_key(req->client_addr, key, sizeof(key));
        if (r < 0)
            goto out;
        at.key = key;
    }
    r = decide(a, &at, &ident, &res);
    if (r < 0)
        goto out;
    /* Every wrong password or code counts, whatever made it wrong. */
    if (res.outcome == AUTH_BAD_CREDENTIALS) {
        r = count_failure(a, &at);
        if (r < 0)
            goto out;
    }
    r = audit(a, &at, res.outcome);
    if (r < 0)
        goto out;
    *ret = res;
out:
    log_debug("login attempt", "user", auth_username_valid(req->username) ? req->username : "",
              "outcome", r < 0 ? "error" : auth_outcome_to_string(res.outcome), "reason",
              at.reason ? at.reason : "", "errno", LOG_INT(r));
    auth_strv_free(ident.unix_groups);
    db_user_free(at.user);
    return r;
}

int auth_user_unlock(struct auth *a, int64_t user_id)
{
    return db_user_unlock(a->db, user_id);
}

int auth_address_unblock(struct auth *a, const char *client_addr)
{
    char key[INET6_ADDRSTRLEN + 16];
    int r = client_addr ? throttle_key(client_addr, key, sizeof(key)) : -EINVAL;
    if (r < 0)
        return r;
    return db_throttle_reset(a->db, key);
}

int auth_throttle_prune(struct auth *a)
{
    return db_throttle_prune(a->db, auth_now(a), a->cfg.address.window_s);
}

const char *auth_outcome_to_string(enum auth_outcome o)
{
    static const char *const names[] = {
        [AUTH_OK] = "ok",
        [AUTH_NEED_TOTP] = "need_totp",
        [AUTH_NEED_TOTP_ENROLL] = "need_totp_enroll",
        [AUTH_BAD_CREDENTIALS] = "bad_credentials",
        [AUTH_LOCKED] = "locked",
        [AUTH_DISABLED] = "disabled",
    };
    return (unsigned)o < sizeof(names) / sizeof(names[0]) ? names[o] : "invalid";
}
