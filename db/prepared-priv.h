/*
 * Prepared statements for hot queries (private to db/).
 *
 * PQexecParams plans a statement on every call; for the short lookups that
 * run on every broker request the planning costs more than the execution.
 * db_exec_prepared runs @sql as the named prepared statement @name, and
 * prepares it first when the connection does not know it yet (a new or
 * re-established connection: the server answers SQLSTATE 26000), then
 * repeats the call once.  Same returns as db_exec.
 *
 * Not for use inside a transaction: the unknown-statement error of the first
 * call on a connection would abort it.
 */
#pragma once

#include "db-priv.h"

int db_exec_prepared(struct db *db, const char *name, const char *sql, int nparams,
                     const char *const *params, PGresult **ret_res);
