/*
 * console_tickets: issue and redeem one-time console tickets.
 *
 * Redeeming is a single UPDATE whose WHERE clause holds every rule (unused,
 * unexpired, this protocol), so the database, not this code, decides who
 * wins when two viewers present one ticket at the same instant.  Only when
 * it matched nothing does a second, read-only query find out why, for the
 * audit log; that answer never grants anything.
 */
#include "db-priv.h"
#include "db-ticket.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TICKET_BYTES (DB_TICKET_LEN / 2)

static const char *const refusal_names[] = {
    [DB_TICKET_OK] = "ok",
    [DB_TICKET_UNKNOWN] = "unknown",
    [DB_TICKET_USED] = "used",
    [DB_TICKET_EXPIRED] = "expired",
    [DB_TICKET_WRONG_PROTOCOL] = "wrong_protocol",
    [DB_TICKET_THROTTLED] = "throttled",
};

const char *db_ticket_refusal_name(enum db_ticket_refusal why)
{
    if ((size_t)why >= sizeof(refusal_names) / sizeof(refusal_names[0]))
        return "invalid";
    return refusal_names[why];
}

int db_ticket_hash_param(const char *ticket, char out[static 2 + 64 + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    if (EVP_Digest(ticket, strlen(ticket), md, &len, EVP_sha256(), NULL) != 1 || len != 32)
        return -EIO;
    out[0] = '\\';
    out[1] = 'x';
    for (unsigned i = 0; i < len; i++)
        snprintf(out + 2 + 2 * i, 3, "%02x", md[i]);
    return 0;
}

static int request_check(const struct db_ticket_request *req, int max_ttl_s)
{
    if (req->vm_id <= 0 || !db_protocol_name(req->protocol) || req->ttl_s < 1 ||
        req->ttl_s > max_ttl_s)
        return -EINVAL;
    if (req->view_only && (req->session_id <= 0 ||
                           (req->protocol != DB_PROTO_VNC && req->protocol != DB_PROTO_BROWSER)))
        return -EINVAL;
    return 0;
}

static int ticket_insert(struct db *db, const struct db_ticket_request *req, const char *ticket,
                         const char *vnc_password)
{
    char hash[2 + 64 + 1], b1[24], b2[24], b3[24], b4[24];
    int r = db_ticket_hash_param(ticket, hash);
    if (r < 0)
        return r;
    const char *p[] = {hash,
                       db_param_i64(b1, req->vm_id),
                       db_param_id(b2, req->session_id),
                       db_param_id(b3, req->user_id),
                       db_protocol_name(req->protocol),
                       req->client_addr,
                       db_param_i64(b4, req->ttl_s),
                       vnc_password,
                       req->view_only ? "t" : "f"};
    /* created_at defaults to now(), the same instant as the expiry's now() */
    return db_exec(db,
                   "INSERT INTO console_tickets (ticket_hash, vm_id, session_id, user_id,"
                   " protocol, client_addr, expires_at, vnc_password, view_only)"
                   " VALUES ($1::bytea, $2, $3, $4, $5, $6::inet,"
                   " now() + make_interval(secs => $7::int), $8, $9::boolean)",
                   9, p, NULL, NULL);
}

int db_ticket_issue(struct db *db, const struct db_ticket_request *req,
                    char ret_ticket[static DB_TICKET_LEN + 1])
{
    unsigned char raw[TICKET_BYTES];
    char ticket[DB_TICKET_LEN + 1];
    int r = request_check(req, DB_TICKET_MAX_TTL_S);
    if (r < 0)
        return r;
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -EIO;
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(ticket + 2 * i, 3, "%02x", raw[i]);
    r = ticket_insert(db, req, ticket, NULL);
    if (r < 0)
        return r;
    memcpy(ret_ticket, ticket, sizeof(ticket));
    return 0;
}

int db_ticket_issue_vnc(struct db *db, const struct db_ticket_request *req,
                        char ret_password[static DB_TICKET_VNC_LEN + 1])
{
    static const char alphabet[] = DB_TICKET_VNC_ALPHABET;
    const unsigned n_alpha = sizeof(alphabet) - 1;
    /* largest multiple of n_alpha below 256: rejection sampling keeps it uniform */
    const unsigned limit = 256 - 256 % n_alpha;
    char pw[DB_TICKET_VNC_LEN + 1];
    size_t got = 0;

    if (req->protocol != DB_PROTO_VNC)
        return -EINVAL;
    int r = request_check(req, DB_TICKET_VNC_MAX_TTL_S);
    if (r < 0)
        return r;
    while (got < DB_TICKET_VNC_LEN) {
        unsigned char raw[32];
        if (RAND_bytes(raw, sizeof(raw)) != 1)
            return -EIO;
        for (size_t i = 0; i < sizeof(raw) && got < DB_TICKET_VNC_LEN; i++)
            if (raw[i] < limit)
                pw[got++] = alphabet[raw[i] % n_alpha];
    }
    pw[DB_TICKET_VNC_LEN] = '\0';
    /* ~46 bits: a clash with a live password is possible in principle; the
     * unique hash then refuses the insert and the caller may simply retry */
    r = ticket_insert(db, req, pw, pw);
    if (r < 0)
        return r;
    memcpy(ret_password, pw, sizeof(pw));
    return 0;
}

/* Why did the UPDATE match nothing?  Read-only; grants nothing. */
static enum db_ticket_refusal refusal_of(struct db *db, const char *hash, const char *proto)
{
    const char *p[] = {hash, proto};
    PGresult *res = NULL;
    enum db_ticket_refusal why = DB_TICKET_UNKNOWN;
    if (db_exec(db,
                "SELECT used_at IS NOT NULL, expires_at <= now(), protocol <> $2"
                " FROM console_tickets WHERE ticket_hash = $1::bytea",
                2, p, &res, NULL) < 0)
        return why;
    if (PQntuples(res) == 1) {
        if (strcmp(PQgetvalue(res, 0, 0), "t") == 0)
            why = DB_TICKET_USED;
        else if (strcmp(PQgetvalue(res, 0, 2), "t") == 0)
            why = DB_TICKET_WRONG_PROTOCOL;
        else if (strcmp(PQgetvalue(res, 0, 1), "t") == 0)
            why = DB_TICKET_EXPIRED;
    }
    PQclear(res);
    return why;
}

int db_ticket_consume(struct db *db, const char *ticket, unsigned protocol, const char *client_addr,
                      struct db_ticket_grant *ret_grant, enum db_ticket_refusal *ret_why)
{
    const char *proto = db_protocol_name(protocol);
    char hash[2 + 64 + 1];
    PGresult *res = NULL;
    if (!proto || !ticket)
        return -EINVAL;
    int r = db_ticket_hash_param(ticket, hash);
    if (r < 0)
        return r;
    const char *p[] = {hash, proto, client_addr};
    r = db_exec_one(db,
                    "UPDATE console_tickets SET used_at = now(), used_by_addr = $3::inet,"
                    " vnc_password = NULL"
                    " WHERE ticket_hash = $1::bytea AND used_at IS NULL AND expires_at > now()"
                    " AND protocol = $2"
                    " RETURNING id, vm_id, session_id, user_id, view_only",
                    3, p, &res);
    if (r == -ENOENT) {
        if (ret_why)
            *ret_why = refusal_of(db, hash, proto);
        return -EACCES;
    }
    if (r < 0)
        return r;
    ret_grant->ticket_id = db_get_i64(res, 0, 0);
    ret_grant->vm_id = db_get_i64(res, 0, 1);
    ret_grant->session_id = db_get_i64(res, 0, 2);
    ret_grant->user_id = db_get_i64(res, 0, 3);
    ret_grant->view_only = strcmp(PQgetvalue(res, 0, 4), "t") == 0;
    PQclear(res);
    if (ret_why)
        *ret_why = DB_TICKET_OK;
    return 0;
}

static int throttle_key(const char *client_addr, char buf[static 96])
{
    int n = snprintf(buf, 96, "console:%s", client_addr);
    return n < 0 || n >= 96 ? -ENAMETOOLONG : 0;
}

static void audit(struct db *db, unsigned protocol, const char *client_addr,
                  const struct db_ticket_grant *grant, enum db_ticket_refusal why)
{
    char vm[24];
    json_t *detail = json_pack("{s:s, s:s}", "protocol", db_protocol_name(protocol) ?: "?",
                               "reason", db_ticket_refusal_name(why));
    if (detail && grant && grant->session_id)
        json_object_set_new(detail, "session_id", json_integer(grant->session_id));
    if (detail && grant && grant->view_only)
        json_object_set_new(detail, "view_only", json_true());
    struct db_audit_entry e = {
        .actor_user_id = grant ? grant->user_id : 0,
        .actor = "atrium-displayd",
        .client_addr = client_addr,
        .action = "console.ticket",
        .target_type = grant ? "vm" : NULL,
        .target_id = grant ? db_param_i64(vm, grant->vm_id) : NULL,
        .outcome = why == DB_TICKET_OK          ? "success"
                   : why == DB_TICKET_THROTTLED ? "denied"
                                                : "failure",
        .detail = detail,
    };
    /* the audit row is a record, not a gate: its failure must not change
     * whether the viewer gets in (the caller's log line still says) */
    (void)db_audit_add(db, &e);
    json_decref(detail);
}

int db_ticket_throttled(struct db *db, const char *client_addr)
{
    char key[96];
    int64_t until = 0;
    if (!client_addr)
        return 0;
    int r = throttle_key(client_addr, key);
    if (r < 0)
        return r;
    r = db_throttle_check(db, key, (int64_t)time(NULL), &until);
    if (r < 0)
        return r;
    return until ? 1 : 0;
}

int db_ticket_fail(struct db *db, unsigned protocol, const char *client_addr,
                   enum db_ticket_refusal why, const struct db_backoff *rule)
{
    char key[96];
    audit(db, protocol, client_addr, NULL, why);
    if (!client_addr || why == DB_TICKET_THROTTLED)
        return 0;
    int r = throttle_key(client_addr, key);
    if (r < 0)
        return r;
    return db_throttle_fail(db, key, (int64_t)time(NULL), rule, NULL, NULL);
}

int db_ticket_redeem(struct db *db, const char *ticket, unsigned protocol, const char *client_addr,
                     const struct db_backoff *rule, struct db_ticket_grant *ret_grant,
                     enum db_ticket_refusal *ret_why)
{
    struct db_ticket_grant grant;
    enum db_ticket_refusal why = DB_TICKET_UNKNOWN;
    int r = db_ticket_throttled(db, client_addr);
    if (r < 0)
        return r;
    if (r > 0) {
        why = DB_TICKET_THROTTLED;
        r = -EACCES;
    } else {
        r = db_ticket_consume(db, ticket, protocol, client_addr, &grant, &why);
        if (r < 0 && r != -EACCES)
            return r;
    }
    if (r == 0) {
        audit(db, protocol, client_addr, &grant, DB_TICKET_OK);
        *ret_grant = grant;
    } else {
        int f = db_ticket_fail(db, protocol, client_addr, why, rule);
        if (f < 0)
            return f;
    }
    if (ret_why)
        *ret_why = why;
    return r;
}

int db_ticket_wipe_spent(struct db *db)
{
    PGresult *res;
    int r = db_exec(db,
                    "UPDATE console_tickets SET vnc_password = NULL WHERE vnc_password IS NOT NULL"
                    " AND (used_at IS NOT NULL OR expires_at <= now())",
                    0, NULL, &res, NULL);
    if (r < 0)
        return r;
    r = atoi(PQcmdTuples(res));
    PQclear(res);
    return r;
}

int db_ticket_vnc_live(struct db *db, size_t max, char (**ret_passwords)[DB_TICKET_VNC_LEN + 1],
                       size_t *ret_n)
{
    char b1[24];
    PGresult *res = NULL;
    char(*pw)[DB_TICKET_VNC_LEN + 1] = NULL;
    int r;

    if (max == 0 || max > 100000)
        return -EINVAL;
    /* clear text must not outlive its use: wipe used and expired ones first */
    r = db_ticket_wipe_spent(db);
    if (r < 0)
        goto out;
    const char *p[] = {db_param_i64(b1, (int64_t)max)};
    r = db_exec(db,
                "SELECT vnc_password FROM console_tickets WHERE vnc_password IS NOT NULL"
                " AND used_at IS NULL AND expires_at > now() AND protocol = 'vnc'"
                " ORDER BY expires_at LIMIT $1",
                1, p, &res, NULL);
    if (r < 0)
        goto out;
    size_t n = (size_t)PQntuples(res);
    pw = calloc(n ? n : 1, sizeof(*pw));
    if (!pw) {
        r = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        snprintf(pw[i], sizeof(pw[i]), "%s", PQgetvalue(res, (int)i, 0));
    *ret_passwords = pw;
    *ret_n = n;
    pw = NULL;
    r = 0;
out:
    free(pw);
    PQclear(res);
    return r;
}
