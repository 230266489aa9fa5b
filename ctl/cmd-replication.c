/*
 * atriumctl vm replication list | show VM | set VM --to HOST --interval S
 *                          [--max-bps N] | off VM | sync VM
 * atriumctl vm recover VM --on HOST [--force] [--no-wait]
 *
 * Disaster-recovery replication, through the database only: `set` writes
 * the VM's schedule (its host's hostd queues the syncs), `sync` makes the
 * next one due now, `recover` queues the start of the VM on the host that
 * holds its copy and waits for it.
 */
#include "ctl-priv.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: atriumctl [--json] vm replication list\n"
            "       atriumctl [--json] vm replication show VM\n"
            "       atriumctl vm replication set VM --to HOST --interval SECONDS [--max-bps N]\n"
            "       atriumctl vm replication off|sync VM\n"
            "       atriumctl [--json] vm recover VM --on HOST [--force] [--no-wait]\n"
            "\n"
            "  replication set   copy the VM's disk to HOST every SECONDS (10..604800): a full\n"
            "                    copy first, then only what changed (QEMU dirty bitmaps);\n"
            "                    --max-bps caps the copy's bytes per second.  HOST keeps the\n"
            "                    last complete copy; a sync that fails leaves it untouched\n"
            "  replication off   stop the schedule (the copy stays on its host)\n"
            "  replication sync  make the next sync due now\n"
            "  replication list, show\n"
            "                    target, schedule, recovery point and its age, last sync\n"
            "  recover           start the VM on HOST from its last complete copy; refused\n"
            "                    while the VM's own host still heart-beats (--force: only when\n"
            "                    its VMs are known to be dead, or the VM runs twice)\n");
}

static int find_host(struct db *db, const char *name, struct db_host *ret)
{
    int r = db_host_get_by_name(db, name, ret);
    if (r == -ENOENT)
        fprintf(stderr, "atriumctl: no host '%s'\n", name);
    else if (r < 0)
        fprintf(stderr, "atriumctl: cannot read host '%s': %s\n", name, strerror(-r));
    return r;
}

static void print_json(json_t *o)
{
    char *s = atr_json_dumps(o);
    printf("%s\n", s ? s : "null");
    free(s);
    json_decref(o);
}

/* "2026-11-25 18:00:00 UTC (12 s ago)" or "none yet". */
static const char *point_text(const struct db_replication *r, char *buf, size_t size)
{
    char t[32];
    if (!r->point_at_us)
        snprintf(buf, size, "none yet");
    else
        snprintf(buf, size, "%s (%lld s ago)", atr_time_format(r->point_at_us, t),
                 (long long)r->point_age_s);
    return buf;
}

void ctl_replication_show_line(struct db *db, int64_t vm_id)
{
    struct db_replication r;
    char p[96];
    if (db_replication_get(db, vm_id, &r) < 0)
        return;
    printf("replication:   to %s every %d s%s; recovery point %s\n", r.target_host, r.interval_s,
           r.enabled ? "" : " (off)", point_text(&r, p, sizeof(p)));
}

static int cmd_list(struct ctl *ctl, struct db *db)
{
    if (ctl->json) {
        json_t *a = NULL;
        int r = db_replication_list_json(db, NULL, &a);
        if (r < 0) {
            fprintf(stderr, "atriumctl: cannot list replications: %s\n", strerror(-r));
            return CTL_EXIT_FAILED;
        }
        print_json(a);
        return CTL_EXIT_OK;
    }
    struct db_replication *rs = NULL;
    size_t n = 0;
    int r = db_replication_list(db, &rs, &n);
    if (r < 0) {
        fprintf(stderr, "atriumctl: cannot list replications: %s\n", strerror(-r));
        return CTL_EXIT_FAILED;
    }
    printf("%-20s %-10s %-10s %8s %5s %10s %12s %-10s %s\n", "VM", "SOURCE", "TARGET", "INTERVAL",
           "ON", "POINT-AGE", "LAST-BYTES", "STATE", "LAST-ERROR");
    for (size_t i = 0; i < n; i++) {
        char age[24] = "-", bytes[24] = "-";
        if (rs[i].point_age_s >= 0)
            snprintf(age, sizeof(age), "%llds", (long long)rs[i].point_age_s);
        if (rs[i].last_bytes >= 0)
            snprintf(bytes, sizeof(bytes), "%lld", (long long)rs[i].last_bytes);
        printf("%-20s %-10s %-10s %7ds %5s %10s %12s %-10s %s\n", rs[i].vm_name,
               rs[i].source_host[0] ? rs[i].source_host : "-", rs[i].target_host, rs[i].interval_s,
               rs[i].enabled ? "yes" : "no", age, bytes, rs[i].state, rs[i].last_error);
    }
    free(rs);
    return CTL_EXIT_OK;
}

static int cmd_show(struct ctl *ctl, struct db *db, const char *arg)
{
    struct db_vm v;
    struct db_replication r;
    if (ctl_find_vm(db, arg, &v) < 0)
        return CTL_EXIT_FAILED;
    int rr = db_replication_get(db, v.id, &r);
    if (rr < 0) {
        fprintf(stderr, "atriumctl: vm %s: %s\n", v.name,
                rr == -ENOENT ? "not replicated" : strerror(-rr));
        return CTL_EXIT_FAILED;
    }
    json_t *o = NULL;
    if (ctl->json && (rr = db_replication_get_json(db, v.id, &o)) < 0) {
        fprintf(stderr, "atriumctl: vm %s: %s\n", v.name, strerror(-rr));
        return CTL_EXIT_FAILED;
    }
    if (ctl->json) {
        print_json(o);
        return CTL_EXIT_OK;
    }
    char p[96], t[32];
    printf("vm:             %s\n", r.vm_name);
    printf("source:         %s\n", r.source_host[0] ? r.source_host : "-");
    printf("target:         %s\n", r.target_host);
    printf("schedule:       every %d s%s\n", r.interval_s, r.enabled ? "" : " (off)");
    printf("state:          %s\n", r.state);
    if (r.max_bps)
        printf("bandwidth cap:  %lld bytes/s\n", (long long)r.max_bps);
    printf("recovery point: %s\n", point_text(&r, p, sizeof(p)));
    printf("syncs:          %d\n", r.syncs);
    if (r.last_sync_at_us)
        printf("last sync:      %s, %lld bytes, %s\n", atr_time_format(r.last_sync_at_us, t),
               (long long)r.last_bytes, r.last_full ? "full" : "incremental");
    if (r.enabled)
        printf("next sync:      %s\n", r.next_sync_in_s > 0 ? "scheduled" : "due");
    if (r.last_error[0])
        printf("last error:     %s\n", r.last_error);
    if (r.recovered_at_us)
        printf("recovered:      %s\n", atr_time_format(r.recovered_at_us, t));
    return CTL_EXIT_OK;
}

static int cmd_set(struct db *db, const char *arg, const char *to, const char *interval,
                   const char *max_bps)
{
    struct db_vm v;
    struct db_host h;
    long long iv = 0, bps = 0;
    if (!to || !interval) {
        fprintf(stderr, "atriumctl: replication set needs --to HOST and --interval SECONDS\n");
        return CTL_EXIT_USAGE;
    }
    if (atr_parse_ll(interval, DB_REPLICATION_INTERVAL_MIN, DB_REPLICATION_INTERVAL_MAX, &iv) < 0) {
        fprintf(stderr, "atriumctl: --interval takes %d..%d seconds, not '%s'\n",
                DB_REPLICATION_INTERVAL_MIN, DB_REPLICATION_INTERVAL_MAX, interval);
        return CTL_EXIT_USAGE;
    }
    if (max_bps && atr_parse_ll(max_bps, DB_REPLICATION_MAX_BPS_MIN, INT64_MAX, &bps) < 0) {
        fprintf(stderr, "atriumctl: --max-bps takes %d or more bytes/s, not '%s'\n",
                DB_REPLICATION_MAX_BPS_MIN, max_bps);
        return CTL_EXIT_USAGE;
    }
    if (ctl_find_vm(db, arg, &v) < 0 || find_host(db, to, &h) < 0)
        return CTL_EXIT_FAILED;
    int r = db_replication_set(db, v.id, h.id, (int)iv, bps);
    if (r < 0) {
        char why[200];
        fprintf(stderr, "atriumctl: cannot replicate vm %s to %s: %s\n", v.name, h.name,
                db_replication_why(db, DB_REPLICATION_SET, v.id, r, why, sizeof(why)));
        return CTL_EXIT_FAILED;
    }
    printf("vm %s: replicated to %s every %lld s\n", v.name, h.name, iv);
    return CTL_EXIT_OK;
}

static int cmd_off_sync(struct db *db, const char *arg, bool off)
{
    struct db_vm v;
    if (ctl_find_vm(db, arg, &v) < 0)
        return CTL_EXIT_FAILED;
    int r = off ? db_replication_disable(db, v.id) : db_replication_sync_now(db, v.id);
    if (r < 0) {
        char why[200];
        fprintf(stderr, "atriumctl: vm %s: %s\n", v.name,
                db_replication_why(db, off ? DB_REPLICATION_OFF : DB_REPLICATION_SYNC, v.id, r, why,
                                   sizeof(why)));
        return CTL_EXIT_FAILED;
    }
    printf("vm %s: %s\n", v.name, off ? "replication off" : "sync due now");
    return CTL_EXIT_OK;
}

static int cmd_recover(struct ctl *ctl, struct db *db, const char *arg, const char *on, bool force,
                       bool wait)
{
    struct db_vm v;
    struct db_host h;
    if (!on) {
        fprintf(stderr, "atriumctl: recover needs --on HOST\n");
        return CTL_EXIT_USAGE;
    }
    if (ctl_find_vm(db, arg, &v) < 0 || find_host(db, on, &h) < 0)
        return CTL_EXIT_FAILED;
    int64_t task = 0;
    int r = db_replication_recover_request(db, v.id, h.id, force, DB_REPLICATION_ALIVE_S, 0, &task);
    if (r < 0) {
        char why[200];
        fprintf(stderr, "atriumctl: cannot recover vm %s on %s: %s\n", v.name, h.name,
                db_replication_why(db, DB_REPLICATION_RECOVER, v.id, r, why, sizeof(why)));
        return CTL_EXIT_FAILED;
    }
    if (!wait) {
        if (ctl->json)
            print_json(json_pack("{s:s, s:I}", "vm", v.name, "task", (json_int_t)task));
        else
            printf("vm %s: recovery queued as task %lld\n", v.name, (long long)task);
        return CTL_EXIT_OK;
    }
    struct db_task *t = NULL;
    int rc = ctl_task_follow(ctl, db, task, 600, &t);
    if (rc != CTL_EXIT_OK)
        return rc;
    if (strcmp(t->state, "succeeded") != 0) {
        fprintf(stderr, "atriumctl: recovery of vm %s %s: %s\n", v.name, t->state,
                t->error[0] ? t->error : "no reason given");
        db_task_free(t);
        return CTL_EXIT_FAILED;
    }
    int64_t point = json_integer_value(json_object_get(t->result, "point_us"));
    int64_t age = json_integer_value(json_object_get(t->result, "point_age_s"));
    if (ctl->json) {
        print_json(json_pack("{s:s, s:s, s:I, s:I, s:I}", "vm", v.name, "host", h.name, "task",
                             (json_int_t)task, "recovery_point_us", (json_int_t)point,
                             "recovery_point_age_s", (json_int_t)age));
    } else {
        char ts[32];
        printf("vm %s: recovered on %s from the copy of %s (%lld s old); it boots there\n", v.name,
               h.name, atr_time_format(point, ts), (long long)age);
    }
    db_task_free(t);
    return CTL_EXIT_OK;
}

int ctl_cmd_vm_replication(struct ctl *ctl, int argc, char **argv)
{
    enum { O_TO = 256, O_INTERVAL, O_MAX_BPS, O_ON, O_FORCE, O_NO_WAIT };
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                         {"to", required_argument, NULL, O_TO},
                                         {"interval", required_argument, NULL, O_INTERVAL},
                                         {"max-bps", required_argument, NULL, O_MAX_BPS},
                                         {"on", required_argument, NULL, O_ON},
                                         {"force", no_argument, NULL, O_FORCE},
                                         {"no-wait", no_argument, NULL, O_NO_WAIT},
                                         {0}};
    const char *to = NULL, *interval = NULL, *max_bps = NULL, *on = NULL;
    bool force = false, wait = true;
    int c;
    /* argv[0] is "vm"; argv[1] "replication" or "recover". */
    optind = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            usage(stdout);
            return CTL_EXIT_OK;
        case O_TO:
            to = optarg;
            break;
        case O_INTERVAL:
            interval = optarg;
            break;
        case O_MAX_BPS:
            max_bps = optarg;
            break;
        case O_ON:
            on = optarg;
            break;
        case O_FORCE:
            force = true;
            break;
        case O_NO_WAIT:
            wait = false;
            break;
        default:
            usage(stderr);
            return CTL_EXIT_USAGE;
        }
    }
    int nargs = argc - optind;
    char **args = argv + optind;
    bool recover = nargs >= 1 && strcmp(args[0], "recover") == 0;
    const char *sub = recover ? "recover" : nargs >= 2 ? args[1] : "";
    bool set = strcmp(sub, "set") == 0;
    bool ok = recover                    ? nargs == 2 && !to && !interval && !max_bps
              : strcmp(sub, "list") == 0 ? nargs == 2
                                         : (set || strcmp(sub, "show") == 0 ||
                                            strcmp(sub, "off") == 0 || strcmp(sub, "sync") == 0) &&
                                               nargs == 3;
    if (!ok || (!recover && (on || force || !wait)) ||
        (!set && !recover && (to || interval || max_bps))) {
        usage(stderr);
        return CTL_EXIT_USAGE;
    }
    struct db *db = NULL;
    int rc = ctl_open_db(ctl, &db);
    if (rc != CTL_EXIT_OK)
        return rc;
    if (recover)
        rc = cmd_recover(ctl, db, args[1], on, force, wait);
    else if (strcmp(sub, "list") == 0)
        rc = cmd_list(ctl, db);
    else if (strcmp(sub, "show") == 0)
        rc = cmd_show(ctl, db, args[2]);
    else if (set)
        rc = cmd_set(db, args[2], to, interval, max_bps);
    else
        rc = cmd_off_sync(db, args[2], strcmp(sub, "off") == 0);
    db_close(db);
    return rc;
}
