/*
 * Log-in, log-out, who am I, and API tokens.
 *
 * The credentials themselves are auth/'s business (auth_login: PAM or local
 * argon2id, TOTP, lockout, throttling, and one audit row per attempt).  The
 * broker turns a granted log-in into a session: a random token in an
 * HttpOnly cookie plus a CSRF token in the reply body, both stored hashed.
 */
#include "broker-priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define API_TOKEN_TTL_DAYS_DEFAULT 90
#define API_TOKEN_TTL_DAYS_MAX 3650
#define API_TOKEN_NAME_MAX 128
#define BRK_SESSIONS_PER_USER 32 /* live browser sessions one person may hold */
#define ENROL_TTL_S 900 /* an enrolment-only session: long enough to scan a QR code */

static json_t *time_json(int64_t us)
{
    char buf[32];
    return json_string(atr_time_format(us, buf));
}

/* The cookie: not readable by scripts, only over TLS, never sent cross-site. */
static int set_session_cookie(struct brk_reply *rep, const char *token, int max_age_s)
{
    char v[256];
    snprintf(v, sizeof(v), "%s=%s; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=%d",
             BRK_COOKIE_NAME, token, max_age_s);
    return brk_reply_header(rep, "Set-Cookie", v);
}

/* Map a refused log-in to its reply.  Status codes tell a client what to do next. */
static int login_refused(struct brk_reply *rep, const struct auth_login_result *res)
{
    char retry[16];
    switch (res->outcome) {
    case AUTH_NEED_TOTP:
        return brk_reply_error(rep, 401, "totp_required",
                               "send the code from your authenticator app as \"totp\"");
    case AUTH_LOCKED:
        snprintf(retry, sizeof(retry), "%d", res->retry_after_s > 0 ? res->retry_after_s : 1);
        brk_reply_error(rep, 429, "locked", "too many failed log-ins; try again later");
        return brk_reply_header(rep, "Retry-After", retry);
    case AUTH_DISABLED:
        return brk_reply_error(rep, 403, "account_disabled", "this account is disabled");
    case AUTH_BAD_CREDENTIALS:
    default:
        return brk_reply_error(rep, 401, "bad_credentials", "wrong user name, password or code");
    }
}

int brk_api_login(struct brk_request *req, struct brk_reply *rep)
{
    char why[200];
    struct brk_login_input in;
    if (!req->body)
        return brk_reply_error(rep, 400, "bad_request",
                               "send {\"username\": ..., \"password\": ...}");
    if (brk_login_input_parse(req->body, &in, why, sizeof(why)) < 0)
        return brk_reply_error(rep, 400, "bad_request", why);

    struct auth_login_request areq = {
        .username = in.username,
        .password = in.password,
        .totp_code = in.totp,
        .client_addr = req->client_addr[0] ? req->client_addr : NULL,
    };
    struct auth_login_result res;
    int r = auth_login(req->conn->auth, &areq, &res);
    if (r == -EINVAL)
        return brk_reply_error(rep, 400, "bad_request", "incomplete log-in request");
    if (r < 0)
        return r;
    /* A right password whose role needs a second factor not yet enrolled
     * gets a short session that can do nothing but enrol one. */
    bool enrol_only = res.outcome == AUTH_NEED_TOTP_ENROLL;
    if (res.outcome != AUTH_OK && !enrol_only) {
        brk_metrics_login(false);
        return login_refused(rep, &res);
    }

    char token[BRK_TOKEN_TEXT_LEN + 1], csrf[BRK_TOKEN_TEXT_LEN + 1];
    unsigned char token_hash[DB_TOKEN_HASH_LEN], csrf_hash[DB_TOKEN_HASH_LEN];
    if (brk_token_new(token, token_hash) < 0 || brk_token_new(csrf, csrf_hash) < 0)
        return -EIO;
    int ttl = brk_server_config(req->server)->broker.session_ttl_s;
    if (enrol_only && ttl > ENROL_TTL_S)
        ttl = ENROL_TTL_S;
    struct db_login_new l = {
        .token_hash = token_hash,
        .csrf_hash = csrf_hash,
        .user_id = res.user_id,
        .kind = "browser",
        .mfa_passed = !enrol_only,
        .client_addr = areq.client_addr,
        .user_agent = req->user_agent,
        .ttl_s = ttl,
    };
    int64_t login_id, expires_us;
    r = db_login_create(req->conn->db, &l, &login_id, &expires_us);
    if (r < 0)
        return r;
    brk_metrics_login(true);
    /* Each log-in is a row: a person (or a script with their password)
     * cannot make the table grow without bound. */
    int revoked = 0;
    r = db_login_prune_user(req->conn->db, res.user_id, BRK_SESSIONS_PER_USER, &revoked);
    if (r < 0)
        log_warn("cannot prune old sessions", "user", res.username, "errno", LOG_INT(-r));
    else if (revoked > 0)
        log_info("oldest sessions revoked: too many at once", "user", res.username, "revoked",
                 LOG_INT(revoked));
    r = set_session_cookie(rep, token, ttl);
    if (r < 0)
        return r;
    return brk_reply_json(rep, 200,
                          json_pack("{s:{s:I, s:s, s:s}, s:s, s:o, s:b}", "user", "id",
                                    (json_int_t)res.user_id, "username", res.username, "role",
                                    auth_role_to_string(res.role), "csrf_token", csrf, "expires_at",
                                    time_json(expires_us), "totp_enrollment_required", enrol_only));
}

int brk_api_logout(struct brk_request *req, struct brk_reply *rep)
{
    int r = db_login_revoke(req->conn->db, req->caller.login_id, req->caller.user_id, NULL);
    if (r < 0 && r != -ENOENT)
        return r;
    if (req->caller.via_cookie) {
        r = set_session_cookie(rep, "", 0);
        if (r < 0)
            return r;
    }
    return brk_reply_json(rep, 200, json_pack("{s:b}", "logged_out", 1));
}

int brk_api_me(struct brk_request *req, struct brk_reply *rep)
{
    int64_t *pools = NULL;
    size_t n = 0;
    int r = auth_user_pools(req->conn->auth, req->caller.user_id, &pools, &n);
    if (r < 0)
        return r;
    json_t *ids = json_array();
    for (size_t i = 0; ids && i < n; i++)
        json_array_append_new(ids, json_integer(pools[i]));
    free(pools);
    if (!ids)
        return -ENOMEM;
    return brk_reply_json(
        rep, 200,
        json_pack("{s:I, s:s, s:s, s:s, s:o}", "id", (json_int_t)req->caller.user_id, "username",
                  req->caller.username, "role", auth_role_to_string(req->caller.role), "auth",
                  req->caller.via_bearer ? "api_token" : "session", "entitled_pool_ids", ids));
}

int brk_api_tokens_list(struct brk_request *req, struct brk_reply *rep)
{
    char why[200];
    struct db_page page;
    if (brk_page_parse(&req->query, &page, why, sizeof(why)) < 0)
        return brk_reply_error(rep, 400, "bad_request", why);
    json_t *items;
    int r = db_login_api_list(req->conn->db, page.limit, (int)page.offset, &items);
    if (r < 0)
        return r;
    return brk_reply_json(rep, 200,
                          json_pack("{s:o, s:i, s:I}", "items", items, "limit", page.limit,
                                    "offset", (json_int_t)page.offset));
}

int brk_api_tokens_create(struct brk_request *req, struct brk_reply *rep)
{
    const char *username = NULL, *name = "";
    long long days = API_TOKEN_TTL_DAYS_DEFAULT;
    if (!req->body || atr_json_get_str(req->body, "username", &username) < 0)
        return brk_reply_error(rep, 400, "bad_request", "username (string) is required");
    int r = atr_json_get_str(req->body, "name", &name);
    if (r == -EINVAL || strlen(name) > API_TOKEN_NAME_MAX)
        return brk_reply_error(rep, 400, "bad_request",
                               "name must be a string of at most 128 bytes");
    r = atr_json_get_int(req->body, "ttl_days", 1, API_TOKEN_TTL_DAYS_MAX, &days);
    if (r == -EINVAL)
        return brk_reply_error(rep, 400, "bad_request",
                               "ttl_days must be an integer from 1 to 3650");
    if (json_object_size(req->body) > 3)
        return brk_reply_error(rep, 400, "bad_request",
                               "only username, name and ttl_days are accepted");

    struct db_user *u = NULL;
    r = db_user_get_by_name(req->conn->db, username, &u);
    if (r == -ENOENT || r == -EINVAL)
        return brk_reply_error(rep, 404, "not_found", "no such user");
    if (r < 0)
        return r;
    char token[BRK_TOKEN_TEXT_LEN + 1];
    unsigned char hash[DB_TOKEN_HASH_LEN];
    int64_t id = 0, expires_us = 0;
    int64_t user_id = u->id;
    r = brk_token_new(token, hash);
    if (r == 0) {
        struct db_login_new l = {
            .token_hash = hash,
            .user_id = user_id,
            .kind = "api",
            .client_addr = req->client_addr[0] ? req->client_addr : NULL,
            .user_agent = req->user_agent,
            .name = name,
            .mfa_passed = true, /* made by an admin for automation: no second factor to ask */
            .ttl_s = (int)(days * 86400),
        };
        r = db_login_create(req->conn->db, &l, &id, &expires_us);
    }
    db_user_free(u);
    if (r < 0)
        return r;
    brk_audit(req, "token.create", "user", username,
              json_pack("{s:I, s:s}", "token_id", (json_int_t)id, "name", name));
    /* The token is shown here once; only its hash is kept. */
    return brk_reply_json(rep, 201,
                          json_pack("{s:I, s:s, s:s, s:I, s:s, s:o}", "id", (json_int_t)id, "token",
                                    token, "username", username, "user_id", (json_int_t)user_id,
                                    "name", name, "expires_at", time_json(expires_us)));
}

int brk_api_tokens_delete(struct brk_request *req, struct brk_reply *rep)
{
    int r = db_login_revoke(req->conn->db, req->ids[0], 0, "api");
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "not_found", "no such live API token");
    if (r < 0)
        return r;
    char idbuf[24];
    snprintf(idbuf, sizeof(idbuf), "%lld", (long long)req->ids[0]);
    brk_audit(req, "token.revoke", "token", idbuf, NULL);
    return brk_reply_json(rep, 200, json_pack("{s:b}", "revoked", 1));
}
