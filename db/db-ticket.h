/*
 * One-time console tickets (part of db.h; include "db.h", not this).
 *
 * The broker issues a ticket when a person asks for a console; displayd
 * redeems it when the viewer connects.  A ticket is bound to one VM, one
 * protocol and (usually) one desktop session, works once, and expires within
 * 30 seconds.  Only its SHA-256 is stored, so reading the table does not let
 * anyone connect.
 *
 * Classic VNC authentication is the exception: it carries at most 8
 * characters and proves knowledge of them with DES over a server challenge,
 * so the server needs the password itself, not a hash, to check the answer.
 * Those "VNC passwords" are therefore short (8 characters, ~46 bits), live at
 * most 10 seconds, are kept in clear only until used or expired (the column
 * is wiped on both), and failures are rate-limited per client address.
 * docs/ARCHITECTURE.md ("Display gateway") has the whole reasoning.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db;
struct db_backoff;

/* A full ticket: 128 random bits as 32 lower-case hex digits (URL and host-name safe). */
#define DB_TICKET_LEN 32
/* A VNC password ticket: 8 characters from DB_TICKET_VNC_ALPHABET. */
#define DB_TICKET_VNC_LEN 8
/* No 0/O, 1/l/I: people may have to type it. */
#define DB_TICKET_VNC_ALPHABET "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
#define DB_TICKET_MAX_TTL_S 30
#define DB_TICKET_VNC_MAX_TTL_S 10

struct db_ticket_request {
    int64_t vm_id;           /* required */
    int64_t session_id;      /* 0 = none (admin console) */
    int64_t user_id;         /* 0 = none */
    unsigned protocol;       /* one DB_PROTO_ bit */
    const char *client_addr; /* address of the requester, or NULL */
    int ttl_s; /* 1..DB_TICKET_MAX_TTL_S (..DB_TICKET_VNC_MAX_TTL_S for VNC passwords) */
    /* an admin's shadow: watches @session_id without taking it over, sends
     * no input; DB_PROTO_VNC or DB_PROTO_BROWSER only (-EINVAL otherwise) */
    bool view_only;
};

/*
 * Issue a full ticket for @req: 128 bits from RAND_bytes, stored as SHA-256.
 * Writes DB_TICKET_LEN digits plus NUL into @ret_ticket.
 * Returns 0, -EINVAL (bad request, e.g. ttl out of range), -EIO (no
 * randomness) or -errno from the database.
 */
int db_ticket_issue(struct db *db, const struct db_ticket_request *req,
                    char ret_ticket[static DB_TICKET_LEN + 1]);

/*
 * Issue a VNC password ticket (protocol must be DB_PROTO_VNC, ttl at most
 * DB_TICKET_VNC_MAX_TTL_S).  Writes DB_TICKET_VNC_LEN characters plus NUL
 * into @ret_password.  Same returns as db_ticket_issue.
 */
int db_ticket_issue_vnc(struct db *db, const struct db_ticket_request *req,
                        char ret_password[static DB_TICKET_VNC_LEN + 1]);

/* What a redeemed ticket grants. */
struct db_ticket_grant {
    int64_t ticket_id;
    int64_t vm_id;
    int64_t session_id; /* 0 = none */
    int64_t user_id;    /* 0 = none */
    bool view_only;     /* a shadow viewer (see db_ticket_request) */
};

/*
 * Why a ticket was refused; db_ticket_redeem reports it so that callers and
 * the audit log can tell them apart.
 */
enum db_ticket_refusal {
    DB_TICKET_OK = 0,
    DB_TICKET_UNKNOWN,        /* no such ticket (forged or mistyped) */
    DB_TICKET_USED,           /* redeemed before */
    DB_TICKET_EXPIRED,        /* too late */
    DB_TICKET_WRONG_PROTOCOL, /* issued for another protocol */
    DB_TICKET_THROTTLED,      /* the client address failed too often; not even looked up */
};

/* "unknown", "used", ... for logs and the audit detail. */
const char *db_ticket_refusal_name(enum db_ticket_refusal why);

/*
 * Consume @ticket for @protocol in one statement (UPDATE ... WHERE unused,
 * unexpired, right protocol ... RETURNING), so two viewers racing with one
 * ticket cannot both win.  @client_addr (textual IP or NULL) is recorded as
 * used_by_addr.  No audit, no throttle: see db_ticket_redeem.
 * Returns 0 and *ret_grant, -EACCES when refused (*ret_why, may be NULL,
 * says why), -errno on database errors.
 */
int db_ticket_consume(struct db *db, const char *ticket, unsigned protocol, const char *client_addr,
                      struct db_ticket_grant *ret_grant, enum db_ticket_refusal *ret_why);

/*
 * What displayd calls: refuse at once while @client_addr is throttled
 * (failures counted under "console:<addr>" with @rule), else consume; count a
 * failure against the address; write one audit row (action
 * "console.ticket", outcome success/failure/denied, detail with protocol and
 * reason) either way.  Returns as db_ticket_consume.
 */
int db_ticket_redeem(struct db *db, const char *ticket, unsigned protocol, const char *client_addr,
                     const struct db_backoff *rule, struct db_ticket_grant *ret_grant,
                     enum db_ticket_refusal *ret_why);

/*
 * Report one failed attempt that never reached a ticket (a VNC DES answer
 * that matched no live password): counts against @client_addr and audits,
 * like a refused db_ticket_redeem.
 */
int db_ticket_fail(struct db *db, unsigned protocol, const char *client_addr,
                   enum db_ticket_refusal why, const struct db_backoff *rule);

/* True (1) while @client_addr is blocked by failed attempts, 0 if not, -errno. */
int db_ticket_throttled(struct db *db, const char *client_addr);

/*
 * Wipe the clear text of used and expired VNC passwords; returns how many,
 * or -errno.  displayd does it before each native VNC log-in and the pool
 * manager on every pass, so none outlives its ticket by more than a pass.
 */
int db_ticket_wipe_spent(struct db *db);

/*
 * The live VNC passwords (unused, unexpired), for checking a DES answer
 * against each; at most @max.  Wipes the clear text of used and expired ones
 * first.  Sets *ret_passwords to a malloc'd array of NUL-terminated
 * DB_TICKET_VNC_LEN-character strings (free()) and *ret_n.
 */
int db_ticket_vnc_live(struct db *db, size_t max, char (**ret_passwords)[DB_TICKET_VNC_LEN + 1],
                       size_t *ret_n);
