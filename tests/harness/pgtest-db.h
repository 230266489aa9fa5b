/* Test helper: a fresh, migrated database (see pgtest.h for the server). */
#pragma once

#include "db.h"
#include "pgtest.h"

/*
 * Create an empty database on the run's private PostgreSQL, apply every
 * built-in migration and open it.  Returns 0 with *ret_conninfo (drop with
 * pgt_db_drop) and *ret_db (db_close), or -1 after printing why.
 */
int pgt_db_fresh(char **ret_conninfo, struct db **ret_db);
