/* display_relay_tickets and hosts.display_relay*: see db-relay.h. */
#include "db-priv.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int db_relay_announce(struct db *db, const char *host_name, const char *relay,
                      const char *cert_sha256, int64_t *ret_host_id)
{
    const char *p[] = {host_name, relay, cert_sha256};
    PGresult *res;
    int r = db_exec_one(db,
                        "UPDATE hosts SET display_relay = $2, display_relay_cert = $3"
                        " WHERE name = $1 RETURNING id",
                        3, p, &res);
    if (r < 0)
        return r;
    *ret_host_id = db_get_i64(res, 0, 0);
    PQclear(res);
    return 0;
}

static void target_from_row(const PGresult *res, int row, void *elem)
{
    struct db_relay_target *t = elem;
    const char *v;
    memset(t, 0, sizeof(*t));
    t->host_id = db_get_i64(res, row, 0);
    snprintf(t->host_name, sizeof(t->host_name), "%s", (v = db_get(res, row, 1)) ? v : "");
    snprintf(t->relay, sizeof(t->relay), "%s", (v = db_get(res, row, 2)) ? v : "");
    snprintf(t->cert_sha256, sizeof(t->cert_sha256), "%s", (v = db_get(res, row, 3)) ? v : "");
}

int db_relay_locate(struct db *db, int64_t vm_id, struct db_relay_target *ret)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, vm_id)};
    struct db_relay_target t;
    int r = db_exec_row(db,
                        "SELECT v.host_id, h.name, h.display_relay, h.display_relay_cert"
                        " FROM vms v LEFT JOIN hosts h ON h.id = v.host_id WHERE v.id = $1",
                        1, p, target_from_row, &t);
    if (r < 0)
        return r;
    *ret = t;
    return 0;
}

int db_relay_host(struct db *db, int64_t host_id, struct db_relay_target *ret)
{
    char b1[24];
    const char *p[] = {db_param_i64(b1, host_id)};
    struct db_relay_target t;
    int r = db_exec_row(
        db, "SELECT id, name, display_relay, display_relay_cert FROM hosts WHERE id = $1", 1, p,
        target_from_row, &t);
    if (r < 0)
        return r;
    *ret = t;
    return 0;
}

int db_relay_ticket_issue(struct db *db, int64_t vm_id, int64_t host_id, const char *kind,
                          char ret_ticket[static 33])
{
    unsigned char raw[16];
    char ticket[33], hash[2 + 64 + 1], b1[24], b2[24], b3[24];
    if (vm_id <= 0 || host_id <= 0 || !kind)
        return -EINVAL;
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -EIO;
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(ticket + 2 * i, 3, "%02x", raw[i]);
    int r = db_ticket_hash_param(ticket, hash);
    if (r < 0)
        return r;
    const char *p[] = {hash, db_param_i64(b1, vm_id), db_param_i64(b2, host_id), kind,
                       db_param_i64(b3, DB_RELAY_TICKET_TTL_S)};
    /* one statement: the sweep of spent tickets rides along with the insert */
    r = db_exec(db,
                "WITH gone AS (DELETE FROM display_relay_tickets"
                "   WHERE used_at IS NOT NULL OR expires_at < now())"
                " INSERT INTO display_relay_tickets (ticket_hash, vm_id, host_id, kind, expires_at)"
                " VALUES ($1::bytea, $2, $3, $4, now() + make_interval(secs => $5::int))",
                5, p, NULL, NULL);
    if (r < 0)
        return r;
    memcpy(ret_ticket, ticket, sizeof(ticket));
    return 0;
}

int db_relay_ticket_consume(struct db *db, const char *ticket, int64_t host_id, int64_t *ret_vm_id,
                            char ret_kind[static 8])
{
    char hash[2 + 64 + 1], b1[24];
    PGresult *res;
    if (strlen(ticket) != 32)
        return -EACCES;
    int r = db_ticket_hash_param(ticket, hash);
    if (r < 0)
        return r;
    const char *p[] = {hash, db_param_i64(b1, host_id)};
    r = db_exec_one(db,
                    "UPDATE display_relay_tickets t SET used_at = now()"
                    " WHERE t.ticket_hash = $1::bytea AND t.used_at IS NULL"
                    " AND t.expires_at > now() AND t.host_id = $2"
                    " AND (EXISTS (SELECT 1 FROM vms v WHERE v.id = t.vm_id AND v.host_id = $2)"
                    "  OR (t.kind = 'spice' AND EXISTS (SELECT 1 FROM tasks k"
                    "   WHERE k.kind = 'vm.migrate_in' AND k.state = 'running'"
                    "   AND k.vm_id = t.vm_id AND k.host_id = $2)))"
                    " RETURNING t.vm_id, t.kind",
                    2, p, &res);
    if (r == -ENOENT)
        return -EACCES;
    if (r < 0)
        return r;
    *ret_vm_id = db_get_i64(res, 0, 0);
    snprintf(ret_kind, 8, "%s", db_get(res, 0, 1));
    PQclear(res);
    return 0;
}

int db_spice_follow_issue(struct db *db, int64_t vm_id, int64_t to_host, int ttl_s,
                          char ret_token[static 33])
{
    unsigned char raw[16];
    char token[33], hash[2 + 64 + 1], b1[24], b2[24], b3[24];
    if (vm_id <= 0 || to_host <= 0 || ttl_s <= 0 || ttl_s > 86400)
        return -EINVAL;
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -EIO;
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(token + 2 * i, 3, "%02x", raw[i]);
    int r = db_ticket_hash_param(token, hash);
    if (r < 0)
        return r;
    const char *p[] = {hash, db_param_i64(b1, vm_id), db_param_i64(b2, to_host),
                       db_param_i64(b3, ttl_s)};
    r = db_exec(db,
                "WITH gone AS (DELETE FROM display_spice_follow WHERE expires_at < now())"
                " INSERT INTO display_spice_follow (token_hash, vm_id, to_host, expires_at)"
                " VALUES ($1::bytea, $2, $3, now() + make_interval(secs => $4::int))",
                4, p, NULL, NULL);
    if (r < 0)
        return r;
    memcpy(ret_token, token, sizeof(token));
    OPENSSL_cleanse(token, sizeof(token));
    return 0;
}

int db_spice_follow_find(struct db *db, const char *token, int64_t *ret_vm_id, int64_t *ret_to_host)
{
    char hash[2 + 64 + 1];
    PGresult *res;
    if (strlen(token) != 32)
        return -EACCES;
    int r = db_ticket_hash_param(token, hash);
    if (r < 0)
        return r;
    const char *p[] = {hash};
    r = db_exec_one(db,
                    "SELECT vm_id, to_host FROM display_spice_follow"
                    " WHERE token_hash = $1::bytea AND expires_at > now()",
                    1, p, &res);
    if (r == -ENOENT)
        return -EACCES;
    if (r < 0)
        return r;
    *ret_vm_id = db_get_i64(res, 0, 0);
    *ret_to_host = db_get_i64(res, 0, 1);
    PQclear(res);
    return 0;
}
