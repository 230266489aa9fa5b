/* Per-test databases on the run's private PostgreSQL. */
#include "pgtest.h"

#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *pgt_server_conninfo(void)
{
    static char conninfo[512];
    if (conninfo[0])
        return conninfo;
    const char *file = getenv("ATRIUM_TEST_PG_FILE");
    if (!file) {
        fprintf(stderr, "pgtest: ATRIUM_TEST_PG_FILE is not set (run through ctest)\n");
        return NULL;
    }
    FILE *f = fopen(file, "re");
    if (!f || !fgets(conninfo, sizeof(conninfo), f)) {
        fprintf(stderr, "pgtest: cannot read %s: is the pg fixture running?\n", file);
        if (f)
            fclose(f);
        conninfo[0] = '\0';
        return NULL;
    }
    fclose(f);
    conninfo[strcspn(conninfo, "\n")] = '\0';
    return conninfo;
}

int pgt_exec(const char *conninfo, const char *sql)
{
    PGconn *c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "pgtest: connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return -1;
    }
    PGresult *res = PQexec(c, sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "pgtest: %s: %s", sql, PQerrorMessage(c));
    PQclear(res);
    PQfinish(c);
    return ok ? 0 : -1;
}

char *pgt_query_value(const char *conninfo, const char *sql)
{
    PGconn *c = PQconnectdb(conninfo);
    char *v = NULL;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *res = PQexec(c, sql);
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0)
            v = strdup(PQgetisnull(res, 0, 0) ? "" : PQgetvalue(res, 0, 0));
        else
            fprintf(stderr, "pgtest: %s: %s", sql, PQerrorMessage(c));
        PQclear(res);
    }
    PQfinish(c);
    return v;
}

#define PGT_SQL_MAX 4096

int pgt_execf(const char *conninfo, const char *fmt, ...)
{
    char sql[PGT_SQL_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    return pgt_exec(conninfo, sql);
}

char *pgt_query_valuef(const char *conninfo, const char *fmt, ...)
{
    char sql[PGT_SQL_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    return pgt_query_value(conninfo, sql);
}

int64_t pgt_query_i64f(const char *conninfo, const char *fmt, ...)
{
    char sql[PGT_SQL_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    char *v = pgt_query_value(conninfo, sql);
    int64_t n = v && *v ? strtoll(v, NULL, 10) : -1;
    free(v);
    return n;
}

int pgt_db_create(char **ret_conninfo)
{
    const char *server = pgt_server_conninfo();
    if (!server)
        return -1;
    static unsigned counter;
    char name[64], sql[128];
    snprintf(name, sizeof(name), "t_%d_%u_%ld", (int)getpid(), counter++, (long)random() % 100000);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s TEMPLATE template0 ENCODING 'UTF8'", name);
    if (pgt_exec(server, sql) < 0)
        return -1;
    size_t len = strlen(server) + 80;
    char *ci = malloc(len);
    if (!ci)
        return -1;
    /* The later dbname wins in a conninfo string. */
    snprintf(ci, len, "%s dbname=%s", server, name);
    *ret_conninfo = ci;
    return 0;
}

void pgt_db_drop(char *conninfo)
{
    if (!conninfo)
        return;
    const char *p = strrchr(conninfo, '=');
    const char *server = pgt_server_conninfo();
    if (p && server) {
        char sql[160];
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", p + 1);
        pgt_exec(server, sql);
    }
    free(conninfo);
}
