/*
 * Second factor enrolment for the caller, and the admin's resets.
 *
 * Enrolment is two calls so that TOTP is only switched on once the person
 * proved their app produces the right codes: begin returns the otpauth://
 * URI (a QR code in the portal), confirm takes the first code and returns
 * the recovery codes, once.  A person whose role requires TOTP and who has
 * none logs in to an enrolment-only session (server.c lets it reach only
 * BRK_ROUTE_ENROL routes); confirming lifts that restriction on the spot.
 */
#include "broker-priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int brk_api_totp_begin(struct brk_request *req, struct brk_reply *rep)
{
    char *uri = NULL;
    int r = auth_totp_enroll_begin(req->conn->auth, req->caller.user_id, &uri);
    if (r == -EALREADY)
        return brk_reply_error(rep, 409, "totp_enabled",
                               "a second factor is already enrolled; an admin can reset it");
    if (r < 0)
        return r;
    json_t *body = json_pack("{s:s}", "otpauth_uri", uri);
    free(uri);
    return body ? brk_reply_json(rep, 200, body) : -ENOMEM;
}

int brk_api_totp_confirm(struct brk_request *req, struct brk_reply *rep)
{
    const char *code;
    if (!req->body || atr_json_get_str(req->body, "code", &code) < 0 ||
        json_object_size(req->body) != 1 || strlen(code) > 16)
        return brk_reply_error(rep, 400, "bad_request", "send {\"code\": \"123456\"}");
    char **codes = NULL;
    int r = auth_totp_enroll_confirm(req->conn->auth, req->caller.user_id, code, &codes);
    if (r == -EACCES)
        return brk_reply_error(rep, 400, "wrong_code", "that code is not the current one");
    if (r == -ENOENT)
        return brk_reply_error(rep, 409, "no_enrolment", "start with POST /api/v1/me/totp");
    if (r == -EALREADY)
        return brk_reply_error(rep, 409, "totp_enabled", "a second factor is already enrolled");
    if (r < 0)
        return r;
    if (req->caller.enrol_only) {
        r = db_login_set_mfa_passed(req->conn->db, req->caller.login_id);
        if (r < 0) {
            auth_strv_free(codes);
            return r;
        }
    }
    json_t *list = json_array();
    for (char **c = codes; list && c && *c; c++)
        json_array_append_new(list, json_string(*c));
    auth_strv_free(codes);
    if (!list)
        return -ENOMEM;
    char b[24];
    snprintf(b, sizeof(b), "%lld", (long long)req->caller.user_id);
    brk_audit(req, "totp.enroll", "user", b, NULL);
    /* Shown once: only their hashes are kept. */
    return brk_reply_json(rep, 200,
                          json_pack("{s:b, s:o}", "totp_enabled", 1, "recovery_codes", list));
}

int brk_api_user_totp_reset(struct brk_request *req, struct brk_reply *rep)
{
    int r = auth_totp_disable(req->conn->auth, req->ids[0]);
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "not_found", "no such user");
    if (r < 0)
        return r;
    char b[24];
    snprintf(b, sizeof(b), "%lld", (long long)req->ids[0]);
    brk_audit(req, "user.totp_reset", "user", b, NULL);
    return brk_reply_json(rep, 200, json_pack("{s:b}", "totp_enabled", 0));
}

int brk_api_user_unlock(struct brk_request *req, struct brk_reply *rep)
{
    int r = auth_user_unlock(req->conn->auth, req->ids[0]);
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "not_found", "no such user");
    if (r < 0)
        return r;
    char b[24];
    snprintf(b, sizeof(b), "%lld", (long long)req->ids[0]);
    brk_audit(req, "user.unlock", "user", b, NULL);
    return brk_reply_json(rep, 200, json_pack("{s:b}", "unlocked", 1));
}

static const char *const policy_roles[] = {"admin", "operator", "user", NULL};

/* {"admin": bool, "operator": bool, "user": bool}: which roles must use TOTP. */
static int policy_read(struct brk_request *req, json_t **ret)
{
    json_t *o = json_object();
    if (!o)
        return -ENOMEM;
    for (const char *const *role = policy_roles; *role; role++) {
        bool required = false;
        int r = db_role_totp_required(req->conn->db, *role, &required);
        if (r < 0) {
            json_decref(o);
            return r;
        }
        json_object_set_new(o, *role, json_boolean(required));
    }
    *ret = o;
    return 0;
}

int brk_api_totp_policy_get(struct brk_request *req, struct brk_reply *rep)
{
    json_t *o = NULL;
    int r = policy_read(req, &o);
    return r < 0 ? r : brk_reply_json(rep, 200, o);
}

int brk_api_totp_policy_set(struct brk_request *req, struct brk_reply *rep)
{
    if (!req->body || json_object_size(req->body) == 0)
        return brk_reply_error(rep, 400, "bad_request",
                               "send {\"admin\": true, \"operator\": false, ...}");
    const char *key;
    json_t *val;
    json_object_foreach(req->body, key, val)
    {
        const char *const *role = policy_roles;
        while (*role && strcmp(*role, key) != 0)
            role++;
        if (!*role || !json_is_boolean(val))
            return brk_reply_error(rep, 400, "bad_request",
                                   "members are admin, operator, user with true or false");
    }
    /* All roles or none: a half-applied policy would be a surprise. */
    int r = db_begin(req->conn->db);
    if (r < 0)
        return r;
    json_object_foreach(req->body, key, val)
    {
        r = db_role_set_totp_required(req->conn->db, key, json_is_true(val));
        if (r < 0)
            break;
    }
    if (r < 0) {
        db_rollback(req->conn->db);
        return r;
    }
    r = db_commit(req->conn->db);
    if (r < 0)
        return r;
    brk_audit(req, "policy.totp", "policy", "totp", json_incref(req->body));
    json_t *o = NULL;
    r = policy_read(req, &o);
    return r < 0 ? r : brk_reply_json(rep, 200, o);
}
