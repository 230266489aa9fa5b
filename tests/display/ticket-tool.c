/*
 * Test helper for the display tests: migrate a test database and issue
 * console tickets the way the broker will (through db_ticket_issue*), so the
 * shell-driven tests exercise the one implementation.
 *
 *   display-ticket-tool migrate CONNINFO
 *   display-ticket-tool issue CONNINFO VM_ID SESSION_ID PROTOCOL TTL_S
 *   display-ticket-tool issue-vnc CONNINFO VM_ID SESSION_ID TTL_S
 *   display-ticket-tool vncpasswd PASSWORD FILE   (viewer's obfuscated password file)
 *   display-ticket-tool user-add CONNINFO NAME PASSWORD  (a local user, through auth/)
 */
#include "auth.h"
#include "db.h"
#include "db-ticket.h"

#include <rfb/rfb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int open_db(const char *conninfo, struct db **db)
{
    struct atr_error err = {0};
    if (db_open(conninfo, 10, "display-ticket-tool", db, &err) < 0) {
        fprintf(stderr, "display-ticket-tool: %s\n", err.msg);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct db *db = NULL;
    struct atr_error err = {0};
    int rc = 1;
    long long vm, session, ttl;

    if (argc == 4 && strcmp(argv[1], "vncpasswd") == 0)
        return rfbEncryptAndStorePasswd(argv[2], argv[3]) == 0 ? 0 : 1;
    if (argc == 3 && strcmp(argv[1], "migrate") == 0) {
        size_t n;
        const struct db_migration *list = db_migrations_builtin(&n);
        if (open_db(argv[2], &db) < 0)
            return 1;
        if (db_migrate(db, list, n, NULL, NULL, NULL, &err) < 0)
            fprintf(stderr, "display-ticket-tool: %s\n", err.msg);
        else
            rc = 0;
        db_close(db);
        return rc;
    }
    if (argc == 5 && strcmp(argv[1], "user-add") == 0) {
        struct auth_config acfg;
        struct auth *a = NULL;
        int64_t id;
        auth_config_defaults(&acfg);
        if (open_db(argv[2], &db) < 0)
            return 1;
        int r = auth_new(db, &acfg, &a);
        if (r == 0)
            r = auth_local_user_create(a, argv[3], argv[4], AUTH_ROLE_USER, &id);
        if (r < 0)
            fprintf(stderr, "display-ticket-tool: cannot add user: %s\n", strerror(-r));
        else
            printf("%lld\n", (long long)id);
        auth_free(a);
        db_close(db);
        return r < 0 ? 1 : 0;
    }
    bool vnc = argc == 6 && strcmp(argv[1], "issue-vnc") == 0;
    bool full = argc == 7 && strcmp(argv[1], "issue") == 0;
    if (!vnc && !full) {
        fprintf(stderr, "usage: see the comment at the top of ticket-tool.c\n");
        return 2;
    }
    if (atr_parse_ll(argv[3], 1, INT64_MAX, &vm) < 0 ||
        atr_parse_ll(argv[4], 0, INT64_MAX, &session) < 0 ||
        atr_parse_ll(argv[vnc ? 5 : 6], 1, 3600, &ttl) < 0) {
        fprintf(stderr, "display-ticket-tool: bad number\n");
        return 2;
    }
    struct db_ticket_request req = {.vm_id = vm,
                                    .session_id = session,
                                    .ttl_s = (int)ttl,
                                    .protocol =
                                        vnc ? DB_PROTO_VNC : db_protocol_from_name(argv[5])};
    if (open_db(argv[2], &db) < 0)
        return 1;
    char ticket[DB_TICKET_LEN + 1];
    int r = vnc ? db_ticket_issue_vnc(db, &req, ticket) : db_ticket_issue(db, &req, ticket);
    if (r < 0)
        fprintf(stderr, "display-ticket-tool: cannot issue: %s\n", strerror(-r));
    else {
        printf("%s\n", ticket);
        rc = 0;
    }
    db_close(db);
    return rc;
}
