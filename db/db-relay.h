/*
 * Console relay between hosts (part of db.h; include "db.h", not this).
 *
 * A VM's console sockets exist only on its own host.  A displayd that serves
 * a viewer of a VM on another host connects to that host's displayd (the
 * relay, TLS) and presents a one-time internal ticket written here, bound to
 * the VM, the console kind and the host that must serve it.  The owning
 * displayd consumes it in one statement, so a ticket opens one console
 * stream once.  docs/ARCHITECTURE.md ("Consoles across hosts") has the why.
 */
#pragma once

#include <stdint.h>

struct db;

#define DB_RELAY_TICKET_TTL_S 15

/* Where a VM's console is served. */
struct db_relay_target {
    int64_t host_id;        /* 0: the VM is on no host */
    char host_name[64];
    char relay[256];        /* "address:port" of that host's relay; empty: none announced */
    char cert_sha256[65];   /* lower-case hex of its certificate's SHA-256 */
};

/*
 * The displayd of host @host_name announces its relay (@relay "addr:port",
 * @cert_sha256 hex).  Sets *ret_host_id.  -ENOENT while the host has no row
 * yet (its hostd registers it).
 */
int db_relay_announce(struct db *db, const char *host_name, const char *relay,
                      const char *cert_sha256, int64_t *ret_host_id);

/* Where VM @vm_id is now.  -ENOENT: no such VM. */
int db_relay_locate(struct db *db, int64_t vm_id, struct db_relay_target *ret);

/* The relay of host @host_id (a VM arriving there).  -ENOENT: no such host. */
int db_relay_host(struct db *db, int64_t host_id, struct db_relay_target *ret);

/*
 * Issue a ticket for the console @kind ("vnc", "spice", "qmp") of @vm_id,
 * to be served by @host_id; expires in DB_RELAY_TICKET_TTL_S.  Spent and
 * expired tickets are deleted on the way.  Writes 32 hex digits + NUL.
 */
int db_relay_ticket_issue(struct db *db, int64_t vm_id, int64_t host_id, const char *kind,
                          char ret_ticket[static 33]);

/*
 * Consume @ticket on host @host_id in one statement: unused, unexpired,
 * issued for this host, and the VM still on it (a "spice" ticket also while
 * the VM is arriving here: a running vm.migrate_in task of this host, whose
 * QEMU takes the SPICE client's channels before the guest moves).  Sets *ret_vm_id and the
 * kind in @ret_kind.  -EACCES when refused, -errno on database errors.
 */
int db_relay_ticket_consume(struct db *db, const char *ticket, int64_t host_id,
                            int64_t *ret_vm_id, char ret_kind[static 8]);

/*
 * SPICE across a live migration: the source hostd issues a token for the
 * SPICE client of @vm_id (QEMU's client_migrate_info names it as the host to
 * connect to), bound to the destination @to_host and valid @ttl_s seconds
 * (the migration's own deadline and some; at most a day).  Expired ones are
 * deleted on the way.  Writes 32 hex digits + NUL.
 */
int db_spice_follow_issue(struct db *db, int64_t vm_id, int64_t to_host, int ttl_s,
                          char ret_token[static 33]);

/*
 * The VM and destination host of an unexpired follow @token (a displayd
 * checks it is the name a live viewer of that VM asks for).  -EACCES when
 * there is none, -errno on database errors.  Not consumed: every channel of
 * the client uses it.
 */
int db_spice_follow_find(struct db *db, const char *token, int64_t *ret_vm_id,
                         int64_t *ret_to_host);
