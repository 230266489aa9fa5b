/* Private to db/: the connection object and query helpers. */
#pragma once

#include "db.h"

#include <libpq-fe.h>

#define DB_MAX_LISTEN 8

struct db_note {
    struct db_note *next;
    char *channel, *payload;
};

struct db {
    PGconn *conn;
    char *conninfo;
    int timeout_s;
    char *app_name;
    bool reconnected;
    size_t n_listen;
    char *listen[DB_MAX_LISTEN];
    struct db_note *notes, **notes_tail; /* received, not yet handed out */
};

/*
 * Run one parameterised statement.  @params are text values (NULL = SQL
 * NULL).  On success returns 0 and *ret_res (PQclear it) when ret_res is not
 * NULL; on failure maps the SQLSTATE to -errno (see db.h) and fills @err.
 */
int db_exec(struct db *db, const char *sql, int nparams, const char *const *params,
            PGresult **ret_res, struct atr_error *err);

/*
 * Run a statement that must change (or return) at least one row: 0 when it
 * did, -ENOENT when it touched none, -errno on failure.
 */
int db_exec_changed(struct db *db, const char *sql, int nparams, const char *const *params);

/* Fill one element of a result array from row @row. */
typedef void (*db_row_fn)(const PGresult *res, int row, void *elem);

/*
 * Run a query and turn every row into an element of @elem_size bytes with
 * @fill: *ret_items is a new array (free()) of *ret_n elements, never NULL
 * on success.
 */
int db_exec_rows(struct db *db, const char *sql, int nparams, const char *const *params,
                 size_t elem_size, db_row_fn fill, void **ret_items, size_t *ret_n);

/* The same for a query of one row: @fill writes @elem only when there is
 * exactly one; -ENOENT otherwise (and @elem is left as it was). */
int db_exec_row(struct db *db, const char *sql, int nparams, const char *const *params,
                db_row_fn fill, void *elem);

/* Map a failed result to -errno. */
int db_result_errno(const PGresult *res);

/* Text of column @col of row @row, NULL when SQL NULL. */
const char *db_get(const PGresult *res, int row, int col);
int64_t db_get_i64(const PGresult *res, int row, int col); /* 0 when NULL */

/* Format an int64 as a parameter into @buf, or NULL when @v is 0 (SQL NULL). */
const char *db_param_id(char buf[static 24], int64_t v);
const char *db_param_i64(char buf[static 24], int64_t v);

/* "\x" + hex of SHA-256(@ticket): bytea text input for a parameter (ticket.c). */
int db_ticket_hash_param(const char *ticket, char out[static 2 + 64 + 1]);
