/*
 * Test set-up for the broker's script tests, through the real libraries:
 *   brk-seed migrate CONNINFO                     apply the built-in schema
 *   brk-seed user CONNINFO NAME PASSWORD ROLE     local user (argon2id, as auth/ makes them)
 *   brk-seed redeem CONNINFO TICKET PROTOCOL      consume a console ticket as displayd does;
 *                                                 prints the VM id, exit 3 when refused
 * Exit 0 on success; prints why on failure.
 */
#include "auth.h"
#include "db.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    struct atr_error err = {0};
    struct db *db = NULL;
    struct auth *a = NULL;
    int rc = 1;
    if (argc < 3) {
        fprintf(stderr, "usage: brk-seed migrate|user CONNINFO ...\n");
        return 2;
    }
    if (db_open(argv[2], 10, "brk-seed", &db, &err) < 0) {
        fprintf(stderr, "brk-seed: %s\n", err.msg);
        return 1;
    }
    if (strcmp(argv[1], "migrate") == 0 && argc == 3) {
        size_t n;
        const struct db_migration *m = db_migrations_builtin(&n);
        if (db_migrate(db, m, n, NULL, NULL, NULL, &err) < 0) {
            fprintf(stderr, "brk-seed: %s\n", err.msg);
            goto out;
        }
        rc = 0;
    } else if (strcmp(argv[1], "user") == 0 && argc == 6) {
        struct auth_config cfg;
        enum auth_role role;
        int64_t id;
        auth_config_defaults(&cfg);
        if (auth_role_from_string(argv[5], &role) < 0 || auth_new(db, &cfg, &a) < 0) {
            fprintf(stderr, "brk-seed: bad role or auth set-up\n");
            goto out;
        }
        int r = auth_local_user_create(a, argv[3], argv[4], role, &id);
        if (r < 0) {
            fprintf(stderr, "brk-seed: cannot create user %s: %s\n", argv[3], strerror(-r));
            goto out;
        }
        printf("%lld\n", (long long)id);
        rc = 0;
    } else if (strcmp(argv[1], "redeem") == 0 && argc == 5) {
        struct db_ticket_grant g;
        enum db_ticket_refusal why = DB_TICKET_OK;
        int r =
            db_ticket_consume(db, argv[3], db_protocol_from_name(argv[4]), "127.0.0.1", &g, &why);
        if (r == -EACCES) {
            printf("refused %s\n", db_ticket_refusal_name(why));
            rc = 3;
            goto out;
        }
        if (r < 0) {
            fprintf(stderr, "brk-seed: redeem failed: %s\n", strerror(-r));
            goto out;
        }
        printf("%lld\n", (long long)g.vm_id);
        rc = 0;
    } else {
        fprintf(stderr, "brk-seed: bad arguments\n");
    }
out:
    auth_free(a);
    db_close(db);
    return rc;
}
