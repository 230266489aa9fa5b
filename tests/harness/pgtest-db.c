/* A fresh database with Atrium's whole schema, opened through libatrium-db. */
#include "pgtest-db.h"

#include <stdio.h>

int pgt_db_fresh(char **ret_conninfo, struct db **ret_db)
{
    char *ci = NULL;
    struct db *db = NULL;
    struct atr_error err = {0};
    size_t n;
    const struct db_migration *list = db_migrations_builtin(&n);
    if (pgt_db_create(&ci) < 0)
        return -1;
    if (db_open(ci, 10, "test", &db, &err) < 0 ||
        db_migrate(db, list, n, NULL, NULL, NULL, &err) < 0) {
        fprintf(stderr, "pgtest: %s\n", err.msg);
        db_close(db);
        pgt_db_drop(ci);
        return -1;
    }
    *ret_conninfo = ci;
    *ret_db = db;
    return 0;
}
