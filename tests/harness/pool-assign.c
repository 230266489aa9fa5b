/*
 * pool-assign: the pool library's assignment from the shell, for tests that
 * run before (or without) the broker.
 *   pool-assign CONNINFO assign USERNAME POOLNAME   -> prints "<session> <vm id> <vm name>"
 *   pool-assign CONNINFO logoff SESSION_ID
 * The user row is created when missing.  Exit 0 ok, 3 no desktop ready, 1 error.
 */
#include "pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: pool-assign CONNINFO assign USER POOL | logoff SESSION\n");
        return 2;
    }
    struct db *db = NULL;
    struct atr_error err = {0};
    if (db_open(argv[1], 10, "pool-assign", &db, &err) < 0) {
        fprintf(stderr, "pool-assign: %s\n", err.msg);
        return 1;
    }
    int rc = 1;
    if (strcmp(argv[2], "logoff") == 0) {
        long long sid;
        if (atr_parse_ll(argv[3], 1, INT64_MAX, &sid) == 0 && pool_session_logoff(db, sid, "test") == 0)
            rc = 0;
        else
            fprintf(stderr, "pool-assign: logoff of session %s failed\n", argv[3]);
    } else if (strcmp(argv[2], "assign") == 0 && argc == 5) {
        struct db_pool p;
        struct db_user *u = NULL;
        int r = db_pool_get_by_name(db, argv[4], &p);
        if (r == 0 && db_user_get_by_name(db, argv[3], &u) == -ENOENT) {
            int64_t id;
            r = db_user_create(db,
                               &(struct db_user_new){.username = argv[3], .source = "pam", .role = "user"},
                               &id);
            if (r == 0)
                r = db_user_get_by_name(db, argv[3], &u);
        }
        int64_t uid = u ? u->id : 0;
        db_user_free(u);
        struct db_assignment a;
        if (r == 0 && uid)
            r = pool_assign(db, uid, p.id, "vnc", NULL, &a);
        if (r == 0) {
            printf("%lld %lld %s\n", (long long)a.session_id, (long long)a.vm_id, a.vm_name);
            rc = 0;
        } else if (r == -EAGAIN) {
            fprintf(stderr, "pool-assign: no desktop ready in %s\n", argv[4]);
            rc = 3;
        } else {
            fprintf(stderr, "pool-assign: %s\n", strerror(-r));
        }
    }
    db_close(db);
    return rc;
}
