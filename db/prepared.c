/* Prepared statements for hot queries: see prepared-priv.h. */
#include "prepared-priv.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

int db_exec_prepared(struct db *db, const char *name, const char *sql, int n,
                     const char *const *params, PGresult **ret_res)
{
    for (int attempt = 0;; attempt++) {
        PGresult *res = PQexecPrepared(db->conn, name, n, params, NULL, NULL, 0);
        ExecStatusType st = PQresultStatus(res);
        if (res && (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)) {
            *ret_res = res;
            return 0;
        }
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        bool unknown = state && strcmp(state, "26000") == 0;
        int r = db_result_errno(res);
        PQclear(res);
        if (!unknown || attempt > 0)
            return r;
        res = PQprepare(db->conn, name, sql, n, NULL);
        r = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : db_result_errno(res);
        PQclear(res);
        if (r < 0)
            return r;
    }
}
