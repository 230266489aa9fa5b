/*
 * Who is calling.  Two ways in:
 *   - browsers: the atrium_session cookie (HttpOnly, so page scripts cannot
 *     read it) plus, on every request that changes something, the CSRF token
 *     from the login reply in the X-CSRF-Token header.  A cross-site page
 *     can make the browser send the cookie but cannot read the CSRF token,
 *     and SameSite=Strict keeps most such requests from carrying the cookie
 *     at all; the header is the part that does not depend on the browser.
 *   - automation: Authorization: Bearer <API token>.  No cookie, so no
 *     ambient authority to forge and no CSRF token needed.
 * Both are opaque random tokens whose SHA-256 is looked up in logins.
 */
#include "broker-priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int lookup(struct brk_request *req, const char *token, bool bearer)
{
    unsigned char h[DB_TOKEN_HASH_LEN];
    /* A value of the wrong shape cannot be ours: skip the database. */
    if (!brk_token_well_formed(token))
        return 0;
    if (brk_token_hash(token, h) < 0)
        return -EIO;
    struct db_login l;
    int r = db_login_lookup(req->conn->db, h, &l);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    /* A bearer token must be an API token and a cookie a browser login with
     * a CSRF token, so a browser session lifted out of a cookie jar cannot
     * be replayed as a bearer token to skip the CSRF check. */
    if (bearer ? strcmp(l.kind, "api") != 0 : strcmp(l.kind, "browser") != 0 || !l.has_csrf)
        return 0;
    enum auth_role role;
    if (auth_role_from_string(l.role, &role) < 0)
        return 0;
    if (l.stale_seen)
        (void)db_login_touch(req->conn->db, l.id); /* best effort: only a timestamp */
    struct brk_caller *c = &req->caller;
    c->authenticated = true;
    c->user_id = l.user_id;
    c->login_id = l.id;
    snprintf(c->username, sizeof(c->username), "%s", l.username);
    c->role = role;
    c->via_bearer = bearer;
    c->via_cookie = !bearer;
    memcpy(c->csrf_hash, l.csrf_hash, sizeof(c->csrf_hash));
    c->enrol_only = !l.mfa_passed;
    return 0;
}

int brk_session_authenticate(struct brk_request *req)
{
    const char *authz = brk_request_header(req, "Authorization");
    if (authz) {
        /* An Authorization header that is not ours never falls back to the
         * cookie: the client said how it means to authenticate. */
        if (strncasecmp(authz, "Bearer ", 7) != 0)
            return 0;
        const char *t = authz + 7;
        while (*t == ' ')
            t++;
        return lookup(req, t, true);
    }
    const char *cookie = brk_request_cookie(req, BRK_COOKIE_NAME);
    return cookie ? lookup(req, cookie, false) : 0;
}

bool brk_session_csrf_ok(const struct brk_request *req)
{
    if (!req->caller.via_cookie)
        return false;
    const char *v = brk_request_header(req, BRK_CSRF_HEADER);
    if (!brk_token_well_formed(v))
        return false;
    unsigned char h[DB_TOKEN_HASH_LEN];
    if (brk_token_hash(v, h) < 0)
        return false;
    return atr_memeq_ct(h, req->caller.csrf_hash, sizeof(h)) == 0;
}
