/* Connections, transactions, LISTEN/NOTIFY and advisory locks over libpq. */
#include "db-priv.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void notice_quiet(void *arg, const char *message)
{
    (void)arg;
    log_debug("postgres notice", "text", message);
}

static int connect_now(struct db *db, struct atr_error *err)
{
    char timeout[16];
    snprintf(timeout, sizeof(timeout), "%d", db->timeout_s);
    /* expand_dbname lets @conninfo be a full conninfo or URI; the later
     * keywords fill only what it does not set.  Over TCP, a peer that
     * vanished (a cut link) fails the connection within the connect
     * timeout instead of the kernel's ~15 minutes of retransmissions, so
     * daemons notice they lost the database (hostd's fencing counts on it);
     * unix sockets ignore these. */
    char user_timeout[24];
    snprintf(user_timeout, sizeof(user_timeout), "%d", db->timeout_s * 1000);
    const char *keys[] = {"dbname",           "connect_timeout",     "application_name",
                          "tcp_user_timeout", "keepalives_idle",     "keepalives_interval",
                          "keepalives_count", NULL};
    const char *vals[] = {db->conninfo, timeout, db->app_name, user_timeout, "5", "2", "3", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c)
        return atr_error_set(err, -ENOMEM, "out of memory connecting to the database");
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[400];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        msg[strcspn(msg, "\n")] = '\0';
        PQfinish(c);
        return atr_error_set(err, -ENOTCONN, "cannot connect to the database: %s", msg);
    }
    PQsetNoticeProcessor(c, notice_quiet, NULL);
    PQfinish(db->conn);
    db->conn = c;
    return 0;
}

int db_open(const char *conninfo, int timeout_s, const char *app_name, struct db **ret_db,
            struct atr_error *err)
{
    struct db *db = calloc(1, sizeof(*db));
    if (!db)
        return atr_error_set(err, -ENOMEM, "out of memory");
    db->conninfo = strdup(conninfo ? conninfo : "");
    db->app_name = strdup(app_name ? app_name : "atrium");
    db->timeout_s = timeout_s > 0 ? timeout_s : 10;
    db->notes_tail = &db->notes;
    if (!db->conninfo || !db->app_name) {
        db_close(db);
        return atr_error_set(err, -ENOMEM, "out of memory");
    }
    int r = connect_now(db, err);
    if (r < 0) {
        db_close(db);
        return r;
    }
    *ret_db = db;
    return 0;
}

struct db *db_close(struct db *db)
{
    if (!db)
        return NULL;
    PQfinish(db->conn);
    for (size_t i = 0; i < db->n_listen; i++)
        free(db->listen[i]);
    while (db->notes) {
        struct db_note *next = db->notes->next;
        free(db->notes->channel);
        free(db->notes->payload);
        free(db->notes);
        db->notes = next;
    }
    free(db->conninfo);
    free(db->app_name);
    free(db);
    return NULL;
}

static int listen_now(struct db *db, const char *channel)
{
    char *ident = PQescapeIdentifier(db->conn, channel, strlen(channel));
    if (!ident)
        return -ENOMEM;
    /* LISTEN takes no parameters; the channel is quoted by libpq, and only
     * the DB_CHANNEL_ constants reach here. */
    char sql[128];
    snprintf(sql, sizeof(sql), "LISTEN %s", ident);
    PQfreemem(ident);
    PGresult *res = PQexec(db->conn, sql);
    int r = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : db_result_errno(res);
    PQclear(res);
    return r;
}

int db_ensure(struct db *db)
{
    if (PQstatus(db->conn) == CONNECTION_OK)
        return 0;
    struct atr_error err;
    if (connect_now(db, &err) < 0) {
        log_debug("database reconnect failed", "error", err.msg);
        return -ENOTCONN;
    }
    for (size_t i = 0; i < db->n_listen; i++) {
        int r = listen_now(db, db->listen[i]);
        if (r < 0)
            return r;
    }
    db->reconnected = true;
    return 0;
}

bool db_reconnected(struct db *db)
{
    bool r = db->reconnected;
    db->reconnected = false;
    return r;
}

int db_server_version(struct db *db)
{
    return PQserverVersion(db->conn);
}

int db_result_errno(const PGresult *res)
{
    if (!res)
        return -ENOMEM;
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (!state)
        return -ENOTCONN; /* client-side failure: connection lost */
    if (strcmp(state, "23505") == 0)
        return -EEXIST;
    if (strncmp(state, "23", 2) == 0 || strncmp(state, "22", 2) == 0)
        return -EINVAL;
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 || strcmp(state, "55P03") == 0)
        return -EAGAIN;
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0)
        return -ENOTCONN;
    return -EPROTO;
}

int db_exec(struct db *db, const char *sql, int nparams, const char *const *params,
            PGresult **ret_res, struct atr_error *err)
{
    PGresult *res = PQexecParams(db->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (res && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)) {
        if (ret_res)
            *ret_res = res;
        else
            PQclear(res);
        return 0;
    }
    /* No result at all on a connection that broke is a lost connection,
     * not a lack of memory: callers retry those after reconnecting. */
    int r = !res && PQstatus(db->conn) != CONNECTION_OK ? -ENOTCONN : db_result_errno(res);
    if (err) {
        const char *m = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        atr_error_set(err, r, "database error: %s", m ? m : PQerrorMessage(db->conn));
        err->msg[strcspn(err->msg, "\n")] = '\0';
    }
    log_debug("query failed", "error", PQerrorMessage(db->conn));
    PQclear(res);
    return r;
}

int db_exec_changed(struct db *db, const char *sql, int nparams, const char *const *params)
{
    PGresult *res;
    int r = db_exec(db, sql, nparams, params, &res, NULL);
    if (r < 0)
        return r;
    const char *tuples = PQcmdTuples(res);
    r = (PQntuples(res) > 0 || (tuples[0] && strcmp(tuples, "0") != 0)) ? 0 : -ENOENT;
    PQclear(res);
    return r;
}

int db_exec_one(struct db *db, const char *sql, int nparams, const char *const *params,
                PGresult **ret_res)
{
    PGresult *res;
    int r = db_exec(db, sql, nparams, params, &res, NULL);
    if (r < 0)
        return r;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return -ENOENT;
    }
    *ret_res = res;
    return 0;
}

int db_exec_rows(struct db *db, const char *sql, int nparams, const char *const *params,
                 size_t elem_size, db_row_fn fill, void **ret_items, size_t *ret_n)
{
    PGresult *res;
    int r = db_exec(db, sql, nparams, params, &res, NULL);
    if (r < 0)
        return r;
    int n = PQntuples(res);
    char *items = calloc(n > 0 ? (size_t)n : 1, elem_size);
    if (!items) {
        PQclear(res);
        return -ENOMEM;
    }
    for (int i = 0; i < n; i++)
        fill(res, i, items + (size_t)i * elem_size);
    PQclear(res);
    *ret_items = items;
    *ret_n = (size_t)n;
    return 0;
}

int db_exec_row(struct db *db, const char *sql, int nparams, const char *const *params,
                db_row_fn fill, void *elem)
{
    PGresult *res;
    int r = db_exec(db, sql, nparams, params, &res, NULL);
    if (r < 0)
        return r;
    if (PQntuples(res) == 1)
        fill(res, 0, elem);
    else
        r = -ENOENT;
    PQclear(res);
    return r;
}

const char *db_get(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return NULL;
    return PQgetvalue(res, row, col);
}

int64_t db_get_i64(const PGresult *res, int row, int col)
{
    const char *v = db_get(res, row, col);
    return v ? strtoll(v, NULL, 10) : 0;
}

const char *db_param_id(char buf[static 24], int64_t v)
{
    if (v == 0)
        return NULL;
    snprintf(buf, 24, "%" PRId64, v);
    return buf;
}

const char *db_param_i64(char buf[static 24], int64_t v)
{
    snprintf(buf, 24, "%" PRId64, v);
    return buf;
}

static int simple(struct db *db, const char *sql)
{
    return db_exec(db, sql, 0, NULL, NULL, NULL);
}

int db_begin(struct db *db)
{
    return simple(db, "BEGIN");
}

int db_commit(struct db *db)
{
    return simple(db, "COMMIT");
}

int db_rollback(struct db *db)
{
    return simple(db, "ROLLBACK");
}

int db_listen(struct db *db, const char *channel)
{
    for (size_t i = 0; i < db->n_listen; i++)
        if (strcmp(db->listen[i], channel) == 0)
            return 0;
    if (db->n_listen == DB_MAX_LISTEN)
        return -ENOSPC;
    char *dup = strdup(channel);
    if (!dup)
        return -ENOMEM;
    int r = listen_now(db, channel);
    if (r < 0) {
        free(dup);
        return r;
    }
    db->listen[db->n_listen++] = dup;
    return 0;
}

int db_fd(struct db *db)
{
    return PQstatus(db->conn) == CONNECTION_OK ? PQsocket(db->conn) : -1;
}

/* Move every notification libpq has buffered into our queue. */
static int drain(struct db *db)
{
    if (!PQconsumeInput(db->conn) || PQstatus(db->conn) != CONNECTION_OK)
        return -ENOTCONN;
    PGnotify *n;
    while ((n = PQnotifies(db->conn))) {
        struct db_note *note = calloc(1, sizeof(*note));
        if (note) {
            note->channel = strdup(n->relname);
            note->payload = strdup(n->extra ? n->extra : "");
        }
        PQfreemem(n);
        if (!note || !note->channel || !note->payload) {
            if (note) {
                free(note->channel);
                free(note->payload);
            }
            free(note);
            return -ENOMEM;
        }
        *db->notes_tail = note;
        db->notes_tail = &note->next;
    }
    return 0;
}

int db_notify_next(struct db *db, char **ret_channel, char **ret_payload)
{
    if (!db->notes) {
        int r = drain(db);
        if (r < 0)
            return r;
    }
    struct db_note *note = db->notes;
    if (!note)
        return 0;
    db->notes = note->next;
    if (!db->notes)
        db->notes_tail = &db->notes;
    *ret_channel = note->channel;
    *ret_payload = note->payload;
    free(note);
    return 1;
}

int db_wait(struct db *db, int timeout_ms)
{
    int64_t deadline = atr_now_mono_ms() + timeout_ms;
    for (;;) {
        if (db->notes)
            return 1;
        int r = drain(db);
        if (r < 0)
            return r;
        if (db->notes)
            return 1;
        struct pollfd p = {.fd = PQsocket(db->conn), .events = POLLIN};
        r = poll(&p, 1, atr_deadline_left_ms(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return 0;
        /* readable: loop to consume; a dead peer shows up as a consume failure */
    }
}

int db_try_lock(struct db *db, int64_t key, bool *ret_got)
{
    char k[24];
    const char *params[] = {db_param_i64(k, key)};
    PGresult *res;
    int r = db_exec(db, "SELECT pg_try_advisory_lock($1::bigint)", 1, params, &res, NULL);
    if (r < 0)
        return r;
    *ret_got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return 0;
}

int db_unlock(struct db *db, int64_t key)
{
    char k[24];
    const char *params[] = {db_param_i64(k, key)};
    return db_exec(db, "SELECT pg_advisory_unlock($1::bigint)", 1, params, NULL, NULL);
}
