/*
 * Test helpers: a fresh, empty database on the run's private PostgreSQL
 * (tests/harness/pg.sh, started by the ctest fixture "pg").  Each test gets its
 * own database so tests can run in parallel and never see each other's rows.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/*
 * Create a new empty database and return its conninfo (malloc'd) in
 * *ret_conninfo; its name is remembered for pgt_db_drop.  Returns 0 or -1
 * after printing why (fixture not running, server down).
 */
int pgt_db_create(char **ret_conninfo);

/* Drop the database of @conninfo (terminating its connections) and free it. */
void pgt_db_drop(char *conninfo);

/* Conninfo of the server's maintenance database; static storage. NULL if none. */
const char *pgt_server_conninfo(void);

/* Run one SQL statement (no parameters) on @conninfo; 0 or -1. For test setup only. */
int pgt_exec(const char *conninfo, const char *sql);

/* First column of the first row of @sql as a malloc'd string, NULL on error/no row. */
char *pgt_query_value(const char *conninfo, const char *sql);

/* pgt_exec of a printf-formatted statement (at most 4 KiB); 0 or -1. */
int pgt_execf(const char *conninfo, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* pgt_query_value of a printf-formatted query (malloc'd; NULL on error/no row). */
char *pgt_query_valuef(const char *conninfo, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The same as a number: -1 on error, no row or SQL NULL. */
int64_t pgt_query_i64f(const char *conninfo, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
