/* atriumctl pool create | list | show | resize | set-image | clear | delete */
#include "ctl-priv.h"
#include "pool.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pool_usage(FILE *out)
{
    fprintf(out,
            "Usage: atriumctl pool create NAME --image IMAGE[:VERSION] [OPTIONS]\n"
            "       atriumctl [--json] pool list\n"
            "       atriumctl [--json] pool show NAME\n"
            "       atriumctl pool resize NAME [--min N] [--max N] [--spare N]\n"
            "       atriumctl pool set-image NAME IMAGE[:VERSION]\n"
            "       atriumctl pool clear NAME      resume provisioning after repeated failures\n"
            "       atriumctl pool delete NAME     (only once it holds no VMs)\n"
            "\n"
            "Options for create (defaults in brackets):\n"
            "  --vcpus N [2]  --memory MiB [2048]  --disk GiB [20]\n"
            "  --protocols LIST [spice,rdp,vnc,browser]\n"
            "  --assignment floating|dedicated [floating]\n"
            "  --min N [0]  --max N [10]  --spare N [1]\n"
            "  --pattern PATTERN [{pool}-{n}]   VM names; {n} is a number never reused\n"
            "  --idle-timeout S [0 = never]  --disconnect-timeout S [3600]\n"
            "  --power-policy on|paused|off [on]\n"
            "  --clone linked|instant [linked]   instant: desktops resume from a template\n"
            "  --disabled\n"
            "\n"
            "The pool manager (atrium-poold) provisions and refreshes the VMs; set-image\n"
            "replaces spares at once and VMs in use at their logoff.\n");
}

struct pool_opts {
    const char *image;
    long long vcpus, memory, disk, min, max, spare, idle, disconnect;
    const char *protocols, *assignment, *pattern, *power, *clone;
    bool disabled;
};

static int parse_num(const char *opt, const char *v, long long *ret)
{
    if (atr_parse_ll(v, 0, 100000000, ret) < 0) {
        fprintf(stderr, "atriumctl: %s wants a non-negative number, not '%s'\n", opt, v);
        return -EINVAL;
    }
    return 0;
}

static int parse_protocols(const char *list, unsigned *ret)
{
    unsigned bits = 0;
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        unsigned b = db_protocol_from_name(tok);
        if (!b) {
            fprintf(stderr, "atriumctl: unknown protocol '%s' (spice, rdp, vnc, browser)\n", tok);
            return -EINVAL;
        }
        bits |= b;
    }
    *ret = bits;
    return 0;
}

/* IMAGE or IMAGE:VERSION -> a version id, saying what is wrong when none. */
static int resolve_image(struct db *db, const char *spec, int64_t *ret_id)
{
    struct db_image_version v;
    int r = pool_image_version_find(db, spec, &v);
    if (r == -EINVAL)
        fprintf(stderr, "atriumctl: '%s': expected IMAGE or IMAGE:VERSION\n", spec);
    else if (r == -ENOENT)
        fprintf(stderr, "atriumctl: no %s version of image '%s'\n",
                strchr(spec, ':') ? "such" : "ready", spec);
    else if (r < 0)
        fprintf(stderr, "atriumctl: cannot read images: %s\n", strerror(-r));
    else
        *ret_id = v.id;
    return r;
}

static json_t *pool_json(const struct db_pool *p, const struct db_pool_counts *c)
{
    json_t *protos = json_array();
    for (unsigned b = 1; b <= DB_PROTO_BROWSER; b <<= 1)
        if (p->protocols & b)
            json_array_append_new(protos, json_string(db_protocol_name(b)));
    return json_pack("{s:I, s:s, s:I, s:i, s:i, s:i, s:o, s:s, s:i, s:i, s:i, s:s, s:i, s:i, "
                     "s:s, s:b, s:s, s:{s:i, s:i, s:i, s:i, s:i, s:i}}",
                     "id", (json_int_t)p->id, "name", p->name, "image_version_id",
                     (json_int_t)p->image_version_id, "vcpus", p->vcpus, "memory_mb", p->memory_mb,
                     "disk_gb", p->disk_gb, "protocols", protos, "assignment", p->assignment, "min",
                     p->min_size, "max", p->max_size, "spare", p->spare, "name_pattern",
                     p->name_pattern, "idle_timeout_s", p->idle_timeout_s, "disconnect_timeout_s",
                     p->disconnect_timeout_s, "power_policy", p->power_policy, "enabled",
                     p->enabled, "clone", p->clone_mode[0] ? p->clone_mode : "linked", "vms",
                     "ready", c->ready, "starting", c->inflight, "in_use", c->in_use, "other",
                     c->other, "held", c->held, "total", c->total);
}

static void print_json(json_t *o)
{
    char *s = atr_json_dumps(o);
    printf("%s\n", s ? s : "null");
    free(s);
    json_decref(o);
}

static int get_pool(struct db *db, const char *name, struct db_pool *ret)
{
    int r = db_pool_get_by_name(db, name, ret);
    if (r == -ENOENT)
        fprintf(stderr, "atriumctl: no pool named '%s'\n", name);
    else if (r < 0)
        fprintf(stderr, "atriumctl: cannot read pool '%s'\n", name);
    return r;
}

static int apply_opts(struct db *db, const struct pool_opts *o, struct db_pool *p)
{
    if (o->image && resolve_image(db, o->image, &p->image_version_id) < 0)
        return -EINVAL;
    if (o->vcpus >= 0)
        p->vcpus = (int)o->vcpus;
    if (o->memory >= 0)
        p->memory_mb = (int)o->memory;
    if (o->disk >= 0)
        p->disk_gb = (int)o->disk;
    if (o->min >= 0)
        p->min_size = (int)o->min;
    if (o->max >= 0)
        p->max_size = (int)o->max;
    if (o->spare >= 0)
        p->spare = (int)o->spare;
    if (o->idle >= 0)
        p->idle_timeout_s = (int)o->idle;
    if (o->disconnect >= 0)
        p->disconnect_timeout_s = (int)o->disconnect;
    if (o->protocols && parse_protocols(o->protocols, &p->protocols) < 0)
        return -EINVAL;
    if (o->assignment)
        snprintf(p->assignment, sizeof(p->assignment), "%s", o->assignment);
    if (o->pattern)
        snprintf(p->name_pattern, sizeof(p->name_pattern), "%s", o->pattern);
    if (o->power)
        snprintf(p->power_policy, sizeof(p->power_policy), "%s", o->power);
    if (o->clone)
        snprintf(p->clone_mode, sizeof(p->clone_mode), "%s",
                 strlen(o->clone) < sizeof(p->clone_mode) ? o->clone : "invalid");
    if (o->disabled)
        p->enabled = false;
    return 0;
}

static void audit_pool(struct db *db, const char *action, const struct db_pool *p)
{
    char id[24];
    snprintf(id, sizeof(id), "%lld", (long long)p->id);
    json_t *d = json_pack("{s:s}", "pool", p->name);
    db_audit_add(db, &(struct db_audit_entry){.actor = "atriumctl",
                                              .action = action,
                                              .target_type = "pool",
                                              .target_id = id,
                                              .outcome = "success",
                                              .detail = d});
    json_decref(d);
}

static int run(struct ctl *ctl, const char *sub, const char *name, const char *arg,
               const struct pool_opts *o)
{
    struct db *db = NULL;
    int rc = ctl_open_db(ctl, &db);
    if (rc != CTL_EXIT_OK)
        return rc;
    struct atr_error err = {0};
    struct db_pool p;
    struct db_pool_counts c = {0};
    rc = CTL_EXIT_FAILED;

    if (strcmp(sub, "list") == 0) {
        struct db_pool *pools = NULL;
        size_t n = 0;
        if (db_pool_list(db, &pools, &n) < 0)
            goto out;
        json_t *arr = json_array();
        if (!ctl->json)
            printf("%-16s %-10s %5s %5s %5s %6s %6s %6s  %s\n", "POOL", "ASSIGN", "MIN", "MAX",
                   "SPARE", "READY", "START", "INUSE", "STATUS");
        for (size_t i = 0; i < n; i++) {
            db_pool_counts(db, pools[i].id, &c);
            if (ctl->json)
                json_array_append_new(arr, pool_json(&pools[i], &c));
            else
                printf("%-16s %-10s %5d %5d %5d %6d %6d %6d\n", pools[i].name, pools[i].assignment,
                       pools[i].min_size, pools[i].max_size, pools[i].spare, c.ready, c.inflight,
                       c.in_use);
        }
        if (ctl->json)
            print_json(arr);
        else
            json_decref(arr);
        free(pools);
        rc = CTL_EXIT_OK;
        goto out;
    }
    if (strcmp(sub, "create") == 0) {
        pool_defaults(&p);
        snprintf(p.name, sizeof(p.name), "%s", name);
        if (strlen(name) >= sizeof(p.name)) {
            fprintf(stderr, "atriumctl: pool name too long\n");
            goto out;
        }
        if (!o->image) {
            fprintf(stderr, "atriumctl: pool create needs --image IMAGE[:VERSION]\n");
            rc = CTL_EXIT_USAGE;
            goto out;
        }
        if (apply_opts(db, o, &p) < 0)
            goto out;
        int64_t id;
        if (pool_create(db, &p, &id, &err) < 0) {
            fprintf(stderr, "atriumctl: %s\n", err.msg);
            goto out;
        }
        p.id = id;
        audit_pool(db, "pool.create", &p);
        printf("created pool %s (id %lld)\n", p.name, (long long)id);
        rc = CTL_EXIT_OK;
        goto out;
    }
    if (get_pool(db, name, &p) < 0)
        goto out;
    if (strcmp(sub, "show") == 0) {
        db_pool_counts(db, p.id, &c);
        if (ctl->json) {
            print_json(pool_json(&p, &c));
        } else {
            struct db_image_version iv = {0};
            if (p.image_version_id)
                db_image_version_get(db, p.image_version_id, &iv);
            printf("pool:        %s (id %lld)%s\n", p.name, (long long)p.id,
                   p.enabled ? "" : " DISABLED");
            printf("image:       %s version %d\n", iv.image_name[0] ? iv.image_name : "-",
                   iv.version);
            printf("desktop:     %d vCPU, %d MiB, %d GiB disk\n", p.vcpus, p.memory_mb, p.disk_gb);
            printf("assignment:  %s; size min %d max %d spare %d; names %s\n", p.assignment,
                   p.min_size, p.max_size, p.spare, p.name_pattern);
            printf("vms:         %d ready, %d starting, %d in use, %d other\n", c.ready, c.inflight,
                   c.in_use, c.other);
            if (c.held)
                printf("held:        %d spare(s) on a silent host, replaced once it is fenced\n",
                       c.held);
        }
        rc = CTL_EXIT_OK;
    } else if (strcmp(sub, "resize") == 0 || strcmp(sub, "set-image") == 0) {
        struct pool_opts o2 = *o;
        if (strcmp(sub, "set-image") == 0)
            o2.image = arg;
        if (apply_opts(db, &o2, &p) < 0)
            goto out;
        if (pool_update(db, &p, &err) < 0) {
            fprintf(stderr, "atriumctl: %s\n", err.msg);
            goto out;
        }
        audit_pool(db, strcmp(sub, "resize") == 0 ? "pool.resize" : "pool.set_image", &p);
        printf("pool %s updated\n", p.name);
        rc = CTL_EXIT_OK;
    } else if (strcmp(sub, "clear") == 0) {
        if (db_pool_set_failing(db, p.id, false) < 0)
            goto out;
        audit_pool(db, "pool.clear", &p);
        printf("pool %s cleared: provisioning resumes\n", p.name);
        rc = CTL_EXIT_OK;
    } else if (strcmp(sub, "delete") == 0) {
        if (pool_delete(db, p.id, &err) < 0) {
            fprintf(stderr, "atriumctl: %s\n", err.msg);
            goto out;
        }
        audit_pool(db, "pool.delete", &p);
        printf("deleted pool %s\n", p.name);
        rc = CTL_EXIT_OK;
    }
out:
    db_close(db);
    return rc;
}

int ctl_cmd_pool(struct ctl *ctl, int argc, char **argv)
{
    enum {
        O_VCPUS = 256,
        O_MEM,
        O_DISK,
        O_PROTO,
        O_ASSIGN,
        O_MIN,
        O_MAX,
        O_SPARE,
        O_PATTERN,
        O_IDLE,
        O_DISC,
        O_POWER,
        O_CLONE,
        O_DISABLED,
        O_IMAGE,
        O_JSON
    };
    static const struct option opts[] = {
        {"vcpus", required_argument, NULL, O_VCPUS},
        {"memory", required_argument, NULL, O_MEM},
        {"disk", required_argument, NULL, O_DISK},
        {"protocols", required_argument, NULL, O_PROTO},
        {"assignment", required_argument, NULL, O_ASSIGN},
        {"min", required_argument, NULL, O_MIN},
        {"max", required_argument, NULL, O_MAX},
        {"spare", required_argument, NULL, O_SPARE},
        {"pattern", required_argument, NULL, O_PATTERN},
        {"idle-timeout", required_argument, NULL, O_IDLE},
        {"disconnect-timeout", required_argument, NULL, O_DISC},
        {"power-policy", required_argument, NULL, O_POWER},
        {"clone", required_argument, NULL, O_CLONE},
        {"disabled", no_argument, NULL, O_DISABLED},
        {"image", required_argument, NULL, O_IMAGE},
        {"json", no_argument, NULL, O_JSON},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    struct pool_opts o = {.vcpus = -1,
                          .memory = -1,
                          .disk = -1,
                          .min = -1,
                          .max = -1,
                          .spare = -1,
                          .idle = -1,
                          .disconnect = -1};
    long long *nums[] = {[O_VCPUS - O_VCPUS] = &o.vcpus, [O_MEM - O_VCPUS] = &o.memory,
                         [O_DISK - O_VCPUS] = &o.disk,   [O_MIN - O_VCPUS] = &o.min,
                         [O_MAX - O_VCPUS] = &o.max,     [O_SPARE - O_VCPUS] = &o.spare,
                         [O_IDLE - O_VCPUS] = &o.idle,   [O_DISC - O_VCPUS] = &o.disconnect};
    int c, idx;
    while ((c = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
        if (c >= O_VCPUS && c <= O_DISC && nums[c - O_VCPUS]) {
            if (parse_num(opts[idx].name, optarg, nums[c - O_VCPUS]) < 0)
                return CTL_EXIT_USAGE;
            continue;
        }
        switch (c) {
        case O_PROTO:
            o.protocols = optarg;
            break;
        case O_ASSIGN:
            o.assignment = optarg;
            break;
        case O_PATTERN:
            o.pattern = optarg;
            break;
        case O_POWER:
            o.power = optarg;
            break;
        case O_CLONE:
            o.clone = optarg;
            break;
        case O_DISABLED:
            o.disabled = true;
            break;
        case O_IMAGE:
            o.image = optarg;
            break;
        case O_JSON:
            ctl->json = true;
            break;
        case 'h':
            pool_usage(stdout);
            return CTL_EXIT_OK;
        default:
            pool_usage(stderr);
            return CTL_EXIT_USAGE;
        }
    }
    int nargs = argc - optind;
    const char *sub = nargs > 0 ? argv[optind] : NULL;
    const char *name = nargs > 1 ? argv[optind + 1] : NULL;
    const char *arg = nargs > 2 ? argv[optind + 2] : NULL;
    static const struct {
        const char *sub;
        int args; /* words after the subcommand */
    } forms[] = {{"list", 0},      {"create", 1}, {"show", 1},  {"resize", 1},
                 {"set-image", 2}, {"clear", 1},  {"delete", 1}};
    for (size_t i = 0; sub && i < sizeof(forms) / sizeof(forms[0]); i++)
        if (strcmp(sub, forms[i].sub) == 0 && nargs - 1 == forms[i].args)
            return run(ctl, sub, name, arg, &o);
    fprintf(stderr,
            "atriumctl: unknown or incomplete pool command (see 'atriumctl pool --help')\n");
    return CTL_EXIT_USAGE;
}
