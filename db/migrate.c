/*
 * Schema migrations.
 *
 * Why this shape: PostgreSQL runs DDL inside transactions, so each migration
 * and the row recording it commit together or not at all — a migration that
 * fails halfway leaves nothing behind.  A transaction-level advisory lock
 * serialises migrators (two hosts upgraded at once), and the applied set is
 * re-read under that lock before each step.  Each applied migration's SHA-256
 * is stored so that a binary whose migration text differs from what the
 * database ran is refused rather than silently diverging.
 */
#include "db-priv.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char sql_ensure_table[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version integer PRIMARY KEY,"
    " name text NOT NULL,"
    " checksum text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())";

static void checksum(const char *sql, char out[static 65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(sql, strlen(sql), md, &len, EVP_sha256(), NULL);
    for (unsigned int i = 0; i < len && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static const struct db_migration *find(const struct db_migration *list, size_t n, int version)
{
    for (size_t i = 0; i < n; i++)
        if (list[i].version == version)
            return &list[i];
    return NULL;
}

/* Does schema_migrations exist?  Avoids creating it from read-only paths. */
static int table_exists(struct db *db, bool *ret, struct atr_error *err)
{
    PGresult *res;
    int r = db_exec(db, "SELECT to_regclass('schema_migrations') IS NOT NULL", 0, NULL, &res, err);
    if (r < 0)
        return r;
    *ret = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return 0;
}

int db_schema_status(struct db *db, const struct db_migration *list, size_t n,
                     struct db_schema_status *ret_status, struct atr_error *err)
{
    struct db_schema_status st = {0};
    for (size_t i = 0; i < n; i++)
        if (list[i].version > st.latest)
            st.latest = list[i].version;

    bool exists;
    int r = table_exists(db, &exists, err);
    if (r < 0)
        return r;
    if (exists) {
        PGresult *res;
        r = db_exec(db,
                    "SELECT version, name, checksum,"
                    " to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                    " FROM schema_migrations ORDER BY version",
                    0, NULL, &res, err);
        if (r < 0)
            return r;
        int rows = PQntuples(res);
        st.applied = calloc(rows > 0 ? (size_t)rows : 1, sizeof(*st.applied));
        if (!st.applied) {
            PQclear(res);
            return atr_error_set(err, -ENOMEM, "out of memory");
        }
        st.n_applied = (size_t)rows;
        for (int i = 0; i < rows; i++) {
            struct db_applied_migration *a = &st.applied[i];
            a->version = (int)db_get_i64(res, i, 0);
            snprintf(a->name, sizeof(a->name), "%s", PQgetvalue(res, i, 1));
            snprintf(a->applied_at, sizeof(a->applied_at), "%s", PQgetvalue(res, i, 3));
            const struct db_migration *m = find(list, n, a->version);
            a->known = m != NULL;
            if (m) {
                char sum[65];
                checksum(m->sql, sum);
                a->checksum_ok = strcmp(sum, PQgetvalue(res, i, 2)) == 0;
                if (!a->checksum_ok)
                    st.drifted = true;
            } else {
                st.newer = true;
            }
            if (a->version > st.current)
                st.current = a->version;
        }
        PQclear(res);
    }
    for (size_t i = 0; i < n; i++) {
        bool applied = false;
        for (size_t j = 0; j < st.n_applied; j++)
            applied |= st.applied[j].version == list[i].version;
        if (!applied)
            st.pending++;
    }
    *ret_status = st;
    return 0;
}

/* Refuse databases we must not touch.  Returns 0 or -errno with @err set. */
static int check_compatible(const struct db_schema_status *st, struct atr_error *err)
{
    if (st->newer)
        return atr_error_set(err, -EPROTONOSUPPORT,
                             "database schema is at version %d, newer than this Atrium "
                             "(knows versions up to %d); upgrade Atrium before using this database",
                             st->current, st->latest);
    for (size_t i = 0; i < st->n_applied; i++)
        if (!st->applied[i].checksum_ok)
            return atr_error_set(err, -EBADMSG,
                                 "migration %d (%s) in the database differs from the one in this "
                                 "Atrium; refusing to continue",
                                 st->applied[i].version, st->applied[i].name);
    return 0;
}

/* Apply the first pending migration, if any.  Returns 1 applied, 0 none, -errno. */
static int migrate_step(struct db *db, const struct db_migration *list, size_t n,
                        void (*progress)(const struct db_migration *, void *), void *userdata,
                        struct atr_error *err)
{
    char key[24];
    const char *lock_params[] = {db_param_i64(key, DB_LOCK_MIGRATE)};
    struct db_schema_status st = {0};
    int r = db_begin(db);
    if (r < 0)
        return atr_error_set(err, r, "cannot start a transaction");
    r = db_exec(db, "SELECT pg_advisory_xact_lock($1::bigint)", 1, lock_params, NULL, err);
    if (r < 0)
        goto fail;
    r = db_exec(db, sql_ensure_table, 0, NULL, NULL, err);
    if (r < 0)
        goto fail;
    r = db_schema_status(db, list, n, &st, err);
    if (r < 0)
        goto fail;
    r = check_compatible(&st, err);
    if (r < 0)
        goto fail;

    const struct db_migration *next = NULL;
    for (size_t i = 0; i < n && !next; i++) {
        bool applied = false;
        for (size_t j = 0; j < st.n_applied; j++)
            applied |= st.applied[j].version == list[i].version;
        if (!applied)
            next = &list[i];
    }
    if (!next) {
        r = db_commit(db);
        free(st.applied);
        return r < 0 ? atr_error_set(err, r, "commit failed") : 0;
    }
    if (progress)
        progress(next, userdata);

    /* The migration text is a fixed file compiled into the binary, run as a
     * multi-statement script: PQexec is the only libpq call that takes one. */
    PGresult *res = PQexec(db->conn, next->sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        r = atr_error_set(err, -EPROTO, "migration %d (%s) failed: %s", next->version,
                          next->name, m ? m : "connection lost");
        PQclear(res);
        goto fail;
    }
    PQclear(res);

    char ver[24], sum[65];
    checksum(next->sql, sum);
    const char *params[] = {db_param_i64(ver, next->version), next->name, sum};
    r = db_exec(db, "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                3, params, NULL, err);
    if (r < 0)
        goto fail;
    r = db_commit(db);
    if (r < 0) {
        atr_error_set(err, r, "commit of migration %d failed", next->version);
        goto fail;
    }
    free(st.applied);
    return 1;

fail:
    db_rollback(db);
    free(st.applied);
    return r;
}

int db_migrate(struct db *db, const struct db_migration *list, size_t n,
               void (*progress)(const struct db_migration *m, void *userdata), void *userdata,
               int *ret_applied, struct atr_error *err)
{
    for (size_t i = 1; i < n; i++)
        if (list[i].version != list[i - 1].version + 1)
            return atr_error_set(err, -EINVAL, "migration list has a gap after version %d",
                                 list[i - 1].version);
    int applied = 0;
    for (;;) {
        int r = migrate_step(db, list, n, progress, userdata, err);
        if (r < 0)
            return r;
        if (r == 0)
            break;
        applied++;
    }
    if (ret_applied)
        *ret_applied = applied;
    return 0;
}

int db_schema_check(struct db *db, struct atr_error *err)
{
    size_t n;
    const struct db_migration *list = db_migrations_builtin(&n);
    struct db_schema_status st;
    int r = db_schema_status(db, list, n, &st, err);
    if (r < 0)
        return r;
    r = check_compatible(&st, err);
    if (r == 0 && st.pending > 0)
        r = atr_error_set(err, -ESTALE,
                          "database schema is at version %d but this Atrium needs %d; "
                          "run 'atriumctl db migrate'",
                          st.current, st.latest);
    free(st.applied);
    return r;
}
