/* atriumctl db migrate | status */
#include "ctl-priv.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void db_usage(FILE *out)
{
    fprintf(out, "Usage: atriumctl db migrate\n"
                 "       atriumctl [--json] db status\n"
                 "\n"
                 "  migrate  apply every pending schema migration, each in its own transaction;\n"
                 "           running it again changes nothing\n"
                 "  status   show the schema version, applied and pending migrations\n"
                 "\n"
                 "Exit status: 0 ok; 3 config error; 4 database unreachable;\n"
                 "5 schema newer than this atriumctl, changed, or (status) migrations pending;\n"
                 "1 a migration failed (the schema is left as it was before it).\n");
}

static int schema_exit(int r)
{
    return (r == -EPROTONOSUPPORT || r == -EBADMSG || r == -ESTALE) ? CTL_EXIT_SCHEMA
           : r == -ENOTCONN                                        ? CTL_EXIT_DB
                                                                   : CTL_EXIT_FAILED;
}

static void on_migration(const struct db_migration *m, void *userdata)
{
    (void)userdata;
    printf("applying migration %04d_%s\n", m->version, m->name);
    fflush(stdout);
}

static int cmd_migrate(struct ctl *ctl)
{
    struct db *db = NULL;
    int rc = ctl_open_db(ctl, &db);
    if (rc != CTL_EXIT_OK)
        return rc;
    size_t n;
    const struct db_migration *list = db_migrations_builtin(&n);
    struct atr_error err = {0};
    int applied = 0;
    int r = db_migrate(db, list, n, on_migration, NULL, &applied, &err);
    if (r < 0) {
        fprintf(stderr, "atriumctl: %s\n", err.msg);
        rc = schema_exit(r);
    } else if (applied == 0) {
        printf("schema is up to date at version %d\n", list[n - 1].version);
    } else {
        printf("applied %d migration%s; schema is at version %d\n", applied,
               applied == 1 ? "" : "s", list[n - 1].version);
    }
    db_close(db);
    return rc;
}

static int cmd_status(struct ctl *ctl)
{
    struct db *db = NULL;
    int rc = ctl_open_db(ctl, &db);
    if (rc != CTL_EXIT_OK)
        return rc;
    size_t n;
    const struct db_migration *list = db_migrations_builtin(&n);
    struct atr_error err = {0};
    struct db_schema_status st;
    int r = db_schema_status(db, list, n, &st, &err);
    if (r < 0) {
        fprintf(stderr, "atriumctl: %s\n", err.msg);
        db_close(db);
        return schema_exit(r);
    }
    int sv = db_server_version(db);
    const char *verdict = st.newer     ? "newer than this atriumctl"
                          : st.drifted ? "changed since applied"
                          : st.pending ? "migrations pending"
                                       : "up to date";
    if (ctl->json) {
        json_t *applied = json_array();
        for (size_t i = 0; i < st.n_applied; i++)
            json_array_append_new(applied,
                                  json_pack("{s:i, s:s, s:s, s:b, s:b}", "version",
                                            st.applied[i].version, "name", st.applied[i].name,
                                            "applied_at", st.applied[i].applied_at, "known",
                                            st.applied[i].known, "checksum_ok",
                                            st.applied[i].checksum_ok));
        json_t *pending = json_array();
        for (size_t i = 0; i < n; i++) {
            bool done = false;
            for (size_t j = 0; j < st.n_applied; j++)
                done |= st.applied[j].version == list[i].version;
            if (!done)
                json_array_append_new(pending, json_pack("{s:i, s:s}", "version",
                                                         list[i].version, "name", list[i].name));
        }
        json_t *o = json_pack("{s:i, s:i, s:i, s:s, s:b, s:b, s:o, s:o}", "server_version", sv,
                              "current", st.current, "latest", st.latest, "status", verdict,
                              "newer", st.newer, "drifted", st.drifted, "applied", applied,
                              "pending", pending);
        char *s = atr_json_dumps(o);
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(o);
    } else {
        printf("server:   PostgreSQL %d.%d\n", sv / 10000, sv % 10000);
        printf("schema:   version %d of %d (%s)\n", st.current, st.latest, verdict);
        printf("%-8s %-28s %-22s %s\n", "VERSION", "NAME", "APPLIED", "NOTE");
        for (size_t i = 0; i < st.n_applied; i++) {
            const struct db_applied_migration *a = &st.applied[i];
            printf("%-8d %-28s %-22s %s\n", a->version, a->name, a->applied_at,
                   !a->known ? "unknown to this atriumctl"
                   : !a->checksum_ok ? "differs from this atriumctl"
                                     : "");
        }
        for (size_t i = 0; i < n; i++) {
            bool done = false;
            for (size_t j = 0; j < st.n_applied; j++)
                done |= st.applied[j].version == list[i].version;
            if (!done)
                printf("%-8d %-28s %-22s %s\n", list[i].version, list[i].name, "-", "pending");
        }
    }
    rc = (st.newer || st.drifted || st.pending) ? CTL_EXIT_SCHEMA : CTL_EXIT_OK;
    free(st.applied);
    db_close(db);
    return rc;
}

int ctl_cmd_db(struct ctl *ctl, int argc, char **argv)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {0}};
    int c;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        if (c == 'h') {
            db_usage(stdout);
            return CTL_EXIT_OK;
        }
        db_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    if (optind >= argc) {
        db_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    const char *sub = argv[optind];
    if (optind + 1 < argc) {
        if (strcmp(argv[optind + 1], "--help") == 0 || strcmp(argv[optind + 1], "-h") == 0) {
            db_usage(stdout);
            return CTL_EXIT_OK;
        }
        fprintf(stderr, "atriumctl: db %s takes no arguments\n", sub);
        return CTL_EXIT_USAGE;
    }
    if (strcmp(sub, "migrate") == 0)
        return cmd_migrate(ctl);
    if (strcmp(sub, "status") == 0)
        return cmd_status(ctl);
    fprintf(stderr, "atriumctl: unknown db command '%s' (see 'atriumctl db --help')\n", sub);
    return CTL_EXIT_USAGE;
}
