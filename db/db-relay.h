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

/*
 * Issue a ticket for the console @kind ("vnc", "spice", "qmp") of @vm_id,
 * to be served by @host_id; expires in DB_RELAY_TICKET_TTL_S.  Spent and
 * expired tickets are deleted on the way.  Writes 32 hex digits + NUL.
 */
int db_relay_ticket_issue(struct db *db, int64_t vm_id, int64_t host_id, const char *kind,
                          char ret_ticket[static 33]);

/*
 * Consume @ticket on host @host_id in one statement: unused, unexpired,
 * issued for this host, and the VM still on it.  Sets *ret_vm_id and the
 * kind in @ret_kind.  -EACCES when refused, -errno on database errors.
 */
int db_relay_ticket_consume(struct db *db, const char *ticket, int64_t host_id,
                            int64_t *ret_vm_id, char ret_kind[static 8]);
