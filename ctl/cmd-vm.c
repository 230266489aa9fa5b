/*
 * atriumctl vm list | show | start | stop | pause | resume | reset | console-path | set |
 *              resources | snapshot | snapshots | revert | snapshot-delete |
 *              clone-from-snapshot
 *
 * Through the database only: power commands set the VM's desired power and
 * the hostd of its host converges (DESIGN.md); reset is a task that hostd
 * claims, and so are the snapshot commands (which wait for the task and
 * show its progress unless --no-wait).  Nothing here talks to QEMU.
 */
#include "ctl-priv.h"
#include "hv.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void vm_usage(FILE *out)
{
    fprintf(out,
            "Usage: atriumctl [--json] vm list [--host HOST]\n"
            "       atriumctl [--json] vm show VM\n"
            "       atriumctl vm start|stop|pause|resume VM\n"
            "       atriumctl vm reset VM\n"
            "       atriumctl [--json] vm resources VM [--balloon MiB|none] [--cpu-weight N]\n"
            "                 [--cpu-max PCT|none] [--memory-max MiB|none] [--disk-iops N|none]\n"
            "                 [--disk-bps N|none] [--net-bps N|none] [--boost|--unboost]\n"
            "       atriumctl [--json] vm snapshot VM NAME [--ram|--disk-only] [--no-wait]\n"
            "       atriumctl [--json] vm snapshots VM\n"
            "       atriumctl [--json] vm revert VM NAME [--no-wait]\n"
            "       atriumctl [--json] vm snapshot-delete VM NAME [--no-wait]\n"
            "       atriumctl [--json] vm clone-from-snapshot VM NAME NEW_VM [--no-wait]\n"
            "       atriumctl vm console-path VM [vnc|spice|qmp|serial]\n"
            "       atriumctl [--json] vm migrate VM --to HOST [--copy-storage]\n"
            "                 [--max-bandwidth MIB] [--no-wait]\n"
            "       atriumctl vm migrate-cancel VM\n"
            "       atriumctl vm set VM --ha on|off\n"
            "       atriumctl vm replication list|show|set|off|sync ...  (vm replication --help)\n"
            "       atriumctl vm recover VM --on HOST [--force] [--no-wait]\n"
            "\n"
            "VM is a name or a numeric id.\n"
            "  start, stop, pause, resume  set the desired power; the VM's host acts on it\n"
            "                              (stop presses the ACPI power button, then kills\n"
            "                              QEMU after the grace period).  Starting a failed\n"
            "                              VM clears its failure.\n"
            "  reset                       queue a hard reset (a task run by the VM's host)\n"
            "  resources                   show, or change without a restart, the live memory\n"
            "                              target (virtio balloon; none = all its memory),\n"
            "                              CPU weight (1..10000, 100 = equal share) and cap\n"
            "                              (percent of one host CPU), memory cap, disk IOPS\n"
            "                              and bytes/s, network bytes/s; --boost gives the VM\n"
            "                              its host first (others drop to a low weight),\n"
            "                              --unboost ends that\n"
            "  snapshot                    snapshot the VM's disk, with its RAM (--ram, the\n"
            "                              default while it runs: revert resumes it where it\n"
            "                              was) or disk only (--disk-only, the default when\n"
            "                              it is off)\n"
            "  snapshots                   list the VM's snapshots\n"
            "  revert                      go back to a snapshot (a disk-only revert of a\n"
            "                              running VM restarts it)\n"
            "  snapshot-delete             remove a snapshot\n"
            "  clone-from-snapshot         a new VM (NEW_VM) on the same host whose disk is the\n"
            "                              snapshot's; it boots once the copy is made\n"
            "  --no-wait                   queue the task and return; otherwise wait for it,\n"
            "                              showing its progress\n"
            "  console-path                the VM's unix socket or log on its host (all four\n"
            "                              without a kind); run it on that host\n"
            "  migrate                     live-migrate the running VM to HOST and print the\n"
            "                              downtime QEMU measured; the disk stays where it is\n"
            "                              (shared storage) unless --copy-storage, which\n"
            "                              mirrors it to HOST's data dir first (linked clones:\n"
            "                              the golden image must be on HOST too);\n"
            "                              --max-bandwidth caps the copy at MIB MiB/s\n"
            "                              (1-100000; default: hostd's, 1024)\n"
            "  migrate-cancel              cancel it: the VM keeps running where it was\n"
            "  set --ha on|off             HA restart: when the VM's host is fenced (no\n"
            "                              heartbeat for its fence deadline plus poold's\n"
            "                              margin), the VM boots on a healthy host from its\n"
            "                              disk (which must be on shared storage); not for\n"
            "                              pool VMs (pool spares are rebuilt instead)\n");
}

int ctl_find_vm(struct db *db, const char *arg, struct db_vm *ret)
{
    long long id;
    int r = db_vm_get_by_name(db, arg, ret);
    if (r == -ENOENT && atr_parse_ll(arg, 1, INT64_MAX, &id) == 0)
        r = db_vm_get(db, id, ret);
    if (r == -ENOENT)
        fprintf(stderr, "atriumctl: no VM '%s'\n", arg);
    else if (r < 0)
        fprintf(stderr, "atriumctl: cannot read VM '%s': %s\n", arg, strerror(-r));
    return r;
}

static const char *host_name(struct db_host *hosts, size_t n, int64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (hosts[i].id == id)
            return hosts[i].name;
    return id ? "?" : "-";
}

static json_t *vm_json(const struct db_vm *v, const char *host)
{
    return json_pack("{s:I, s:s, s:s, s:I, s:s, s:s, s:s, s:i, s:i, s:s, s:s, s:i, s:s, s:I, "
                     "s:I, s:b, s:s}",
                     "id", (json_int_t)v->id, "name", v->name, "host", host, "host_id",
                     (json_int_t)v->host_id, "state", v->state, "desired_power", v->desired_power,
                     "actual_power", v->actual_power, "vcpus", v->vcpus, "memory_mb", v->memory_mb,
                     "disk_path", v->disk_path, "boot", v->boot, "qemu_pid", v->qemu_pid,
                     "last_error", v->last_error, "pool_id", (json_int_t)v->pool_id,
                     "assigned_user_id", (json_int_t)v->assigned_user_id, "boosted", v->boosted,
                     "source_snapshot", v->source_snapshot);
}

static void print_json(json_t *o)
{
    char *s = atr_json_dumps(o);
    printf("%s\n", s ? s : "null");
    free(s);
    json_decref(o);
}

static int cmd_list(struct ctl *ctl, struct db *db, const char *host_filter)
{
    struct db_host *hosts = NULL;
    struct db_vm *vms = NULL;
    size_t nh = 0, nv = 0;
    int rc = CTL_EXIT_FAILED;
    int64_t host_id = 0;
    int r = db_host_list(db, &hosts, &nh);
    if (r < 0) {
        fprintf(stderr, "atriumctl: cannot list hosts: %s\n", strerror(-r));
        goto out;
    }
    if (host_filter) {
        for (size_t i = 0; i < nh && !host_id; i++)
            if (strcmp(hosts[i].name, host_filter) == 0)
                host_id = hosts[i].id;
        if (!host_id) {
            fprintf(stderr, "atriumctl: no host '%s'\n", host_filter);
            goto out;
        }
    }
    r = db_vm_list(db, host_id, &vms, &nv);
    if (r < 0) {
        fprintf(stderr, "atriumctl: cannot list VMs: %s\n", strerror(-r));
        goto out;
    }
    if (ctl->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < nv; i++)
            json_array_append_new(arr, vm_json(&vms[i], host_name(hosts, nh, vms[i].host_id)));
        print_json(arr);
    } else {
        printf("%-6s %-20s %-14s %-12s %-8s %-8s %8s %5s %6s\n", "ID", "NAME", "HOST", "STATE",
               "WANTED", "POWER", "PID", "VCPUS", "MEM_MB");
        for (size_t i = 0; i < nv; i++) {
            const struct db_vm *v = &vms[i];
            char pid[16] = "-";
            if (v->qemu_pid)
                snprintf(pid, sizeof(pid), "%d", v->qemu_pid);
            printf("%-6lld %-20s %-14s %-12s %-8s %-8s %8s %5d %6d\n", (long long)v->id, v->name,
                   host_name(hosts, nh, v->host_id), v->state, v->desired_power, v->actual_power,
                   pid, v->vcpus, v->memory_mb);
        }
    }
    rc = CTL_EXIT_OK;
out:
    free(hosts);
    free(vms);
    return rc;
}

static int cmd_show(struct ctl *ctl, struct db *db, const char *arg)
{
    struct db_vm v;
    if (ctl_find_vm(db, arg, &v) < 0)
        return CTL_EXIT_FAILED;
    struct db_host h = {0};
    const char *host = "-";
    if (v.host_id && db_host_get(db, v.host_id, &h) == 0)
        host = h.name;
    bool ha = false;
    db_vm_get_ha(db, v.id, &ha);
    if (ctl->json) {
        json_t *o = vm_json(&v, host);
        json_object_set_new(o, "ha", json_boolean(ha));
        print_json(o);
        return CTL_EXIT_OK;
    }
    char changed[32];
    printf("id:            %lld\n", (long long)v.id);
    printf("name:          %s\n", v.name);
    printf("host:          %s\n", host);
    printf("state:         %s (since %s)\n", v.state,
           atr_time_format(v.state_changed_at_us, changed));
    printf("desired power: %s\n", v.desired_power);
    printf("actual power:  %s\n", v.actual_power);
    if (v.qemu_pid)
        printf("qemu pid:      %d\n", v.qemu_pid);
    printf("vcpus:         %d\n", v.vcpus);
    printf("memory:        %d MiB\n", v.memory_mb);
    printf("disk:          %s\n", v.disk_path[0] ? v.disk_path : "-");
    printf("boot:          %s%s%s\n", v.boot, strcmp(v.boot, "kernel") == 0 ? " " : "",
           strcmp(v.boot, "kernel") == 0 ? v.boot_kernel : "");
    printf("network:       %s%s%s\n", v.nic_mode, v.bridge[0] ? " " : "", v.bridge);
    printf("ha:            %s\n", ha ? "on (restarted elsewhere if its host is fenced)" : "off");
    if (v.boosted)
        printf("boosted:       yes (see vm resources)\n");
    if (v.source_snapshot[0])
        printf("cloned from:   snapshot %s\n", v.source_snapshot);
    if (v.last_error[0])
        printf("last error:    %s\n", v.last_error);
    ctl_replication_show_line(db, v.id);
    return CTL_EXIT_OK;
}

static int cmd_set(struct db *db, const char *arg, const char *ha)
{
    bool on = strcmp(ha, "on") == 0;
    if (!on && strcmp(ha, "off") != 0) {
        fprintf(stderr, "atriumctl: --ha wants on or off, not '%s'\n", ha);
        return CTL_EXIT_USAGE;
    }
    struct db_vm v;
    if (ctl_find_vm(db, arg, &v) < 0)
        return CTL_EXIT_FAILED;
    if (on && v.pool_id) {
        fprintf(stderr, "atriumctl: VM '%s' belongs to a pool; HA restart is for VMs outside "
                        "pools (a pool's spares are rebuilt on other hosts instead)\n",
                v.name);
        return CTL_EXIT_FAILED;
    }
    int r = db_vm_set_ha(db, v.id, on);
    if (r < 0) {
        fprintf(stderr, "atriumctl: cannot set HA of VM '%s': %s\n", v.name, strerror(-r));
        return CTL_EXIT_FAILED;
    }
    printf("vm %s: ha %s\n", v.name, on ? "on" : "off");
    return CTL_EXIT_OK;
}

static int cmd_power(struct db *db, const char *arg, const char *verb)
{
    static const struct {
        const char *verb, *desired;
    } map[] = {
        {"start", "running"}, {"stop", "stopped"}, {"pause", "paused"}, {"resume", "running"}};
    const char *desired = NULL;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(map[i].verb, verb) == 0)
            desired = map[i].desired;
    struct db_vm v;
    if (ctl_find_vm(db, arg, &v) < 0)
        return CTL_EXIT_FAILED;
    if (strcmp(v.desired_power, "deleted") == 0) {
        fprintf(stderr, "atriumctl: VM %s is being deleted\n", v.name);
        return CTL_EXIT_FAILED;
    }
    if (strcmp(verb, "resume") == 0 && strcmp(v.desired_power, "paused") != 0 &&
        strcmp(v.actual_power, "paused") != 0) {
        fprintf(stderr, "atriumctl: VM %s is not paused\n", v.name);
        return CTL_EXIT_FAILED;
    }
    int r = db_vm_set_desired(db, v.id, desired);
    if (r < 0) {
        fprintf(stderr, "atriumctl: cannot change VM %s: %s\n", v.name, strerror(-r));
        return CTL_EXIT_FAILED;
    }
    printf("vm %s: desired power is now %s%s\n", v.name, desired,
           v.host_id ? "; its host acts on it" : " (no host assigned yet)");
    return CTL_EXIT_OK;
}

static int cmd_reset(struct ctl *ctl, struct db *db, const char *arg)
{
    struct db_vm v;
    if (ctl_find_vm(db, arg, &v) < 0)
        return CTL_EXIT_FAILED;
    if (!v.host_id ||
        (strcmp(v.actual_power, "running") != 0 && strcmp(v.actual_power, "paused") != 0)) {
        fprintf(stderr, "atriumctl: VM %s is not running (power: %s)\n", v.name, v.actual_power);
        return CTL_EXIT_FAILED;
    }
    struct db_task_new t = {.kind = "vm.reset", .host_id = v.host_id, .vm_id = v.id};
    int64_t id;
    int r = db_task_create(db, &t, &id);
    if (r < 0) {
        fprintf(stderr, "atriumctl: cannot queue the reset: %s\n", strerror(-r));
        return CTL_EXIT_FAILED;
    }
    if (ctl->json)
        print_json(json_pack("{s:s, s:I}", "vm", v.name, "task", (json_int_t)id));
    else
        printf("vm %s: reset queued as task %lld\n", v.name, (long long)id);
    return CTL_EXIT_OK;
}

/* The resource options of `vm resources`; NULL = not given. */
struct res_opts {
    const char *balloon, *cpu_weight, *cpu_max, *memory_max, *disk_iops, *disk_bps, *net_bps;
    int boost; /* 1 boost, -1 unboost, 0 neither */
};

static bool res_opts_any(const struct res_opts *o)
{
    return o->balloon || o->cpu_weight || o->cpu_max || o->memory_max || o->disk_iops ||
           o->disk_bps || o->net_bps || o->boost;
}

/* A limit option: "none" (0: lift it) or a number in [min, max]; -1 when not given. */
static int parse_limit(const char *opt, const char *val, long long min, long long max, int64_t *ret)
{
    long long v;
    if (!val) {
        *ret = -1;
        return 0;
    }
    if (strcmp(val, "none") == 0) {
        *ret = 0;
        return 0;
    }
    if (atr_parse_ll(val, min, max, &v) < 0) {
        fprintf(stderr, "atriumctl: --%s wants none or %lld..%lld, not '%s'\n", opt, min, max, val);
        return -EINVAL;
    }
    *ret = v;
    return 0;
}

static json_t *limit_json(int64_t v)
{
    return v ? json_integer(v) : json_null();
}

static void print_limit(const char *label, int64_t v, const char *unit)
{
    if (v)
        printf("%-15s%lld%s\n", label, (long long)v, unit);
    else
        printf("%-15snone\n", label);
}

static int cmd_resources(struct ctl *ctl, struct db *db, const char *arg, const struct res_opts *o)
{
    struct db_vm v;
    if (ctl_find_vm(db, arg, &v) < 0)
        return CTL_EXIT_FAILED;
    if (o->balloon) {
        long long mb = 0;
        if (strcmp(o->balloon, "none") != 0 && atr_parse_ll(o->balloon, 64, v.memory_mb, &mb) < 0) {
            fprintf(stderr, "atriumctl: --balloon wants none or 64..%d (MiB), not '%s'\n",
                    v.memory_mb, o->balloon);
            return CTL_EXIT_USAGE;
        }
        int r = db_vm_set_balloon(db, v.id, (int)mb);
        if (r < 0) {
            fprintf(stderr, "atriumctl: cannot change VM %s: %s\n", v.name, strerror(-r));
            return CTL_EXIT_FAILED;
        }
    }
    int64_t weight = -1, cpu_max, mem_max, iops, bps, net;
    if (o->cpu_weight) {
        long long w;
        if (atr_parse_ll(o->cpu_weight, 1, 10000, &w) < 0) {
            fprintf(stderr, "atriumctl: --cpu-weight wants 1..10000, not '%s'\n", o->cpu_weight);
            return CTL_EXIT_USAGE;
        }
        weight = w;
    }
    if (parse_limit("cpu-max", o->cpu_max, 1, 100000, &cpu_max) < 0 ||
        parse_limit("memory-max", o->memory_max, 64, 4194304, &mem_max) < 0 ||
        parse_limit("disk-iops", o->disk_iops, 1, 2147483647, &iops) < 0 ||
        parse_limit("disk-bps", o->disk_bps, 1, INT64_MAX, &bps) < 0 ||
        parse_limit("net-bps", o->net_bps, 1, INT64_MAX, &net) < 0)
        return CTL_EXIT_USAGE;
    if (weight > 0 || cpu_max >= 0 || mem_max >= 0 || iops >= 0 || bps >= 0 || net >= 0) {
        struct db_vm_resources res = {.cpu_weight = weight > 0 ? (int)weight : 0,
                                      .cpu_max_pct = (int)cpu_max,
                                      .memory_max_mb = (int)mem_max,
                                      .disk_iops = (int)iops,
                                      .disk_bps = bps,
                                      .net_bps = net};
        int r = db_vm_set_resources(db, v.id, &res);
        if (r < 0) {
            fprintf(stderr, "atriumctl: cannot change VM %s: %s\n", v.name, strerror(-r));
            return CTL_EXIT_FAILED;
        }
    }
    if (o->boost) {
        int r = db_vm_boost(db, v.id, o->boost > 0);
        if (r < 0) {
            fprintf(stderr, "atriumctl: cannot change VM %s: %s\n", v.name, strerror(-r));
            return CTL_EXIT_FAILED;
        }
    }
    if (res_opts_any(o) && ctl_find_vm(db, arg, &v) < 0)
        return CTL_EXIT_FAILED;
    if (ctl->json) {
        print_json(json_pack("{s:s, s:i, s:o, s:i, s:o, s:o, s:o, s:o, s:o, s:b, s:i, s:i, s:b}",
                             "vm", v.name, "memory_mb", v.memory_mb, "balloon_mb",
                             limit_json(v.balloon_mb), "cpu_weight", v.cpu_weight, "cpu_max_pct",
                             limit_json(v.cpu_max_pct), "memory_max_mb",
                             limit_json(v.memory_max_mb), "disk_iops", limit_json(v.disk_iops),
                             "disk_bps", limit_json(v.disk_bps), "net_bps", limit_json(v.net_bps),
                             "boosted", v.boosted, "resources_gen", v.resources_gen, "applied_gen",
                             v.applied_gen, "applied", v.applied_gen == v.resources_gen));
        return CTL_EXIT_OK;
    }
    printf("memory:        %d MiB\n", v.memory_mb);
    if (v.balloon_mb)
        printf("memory target: %d MiB (balloon)\n", v.balloon_mb);
    else
        printf("memory target: none\n");
    printf("cpu weight:    %d%s\n", v.cpu_weight,
           v.boosted ? " (boosted: the host is its first)" : "");
    print_limit("cpu max:", v.cpu_max_pct, " % of one CPU");
    print_limit("memory max:", v.memory_max_mb, " MiB");
    print_limit("disk iops:", v.disk_iops, "");
    print_limit("disk bytes/s:", v.disk_bps, "");
    print_limit("net bytes/s:", v.net_bps, "");
    printf("applied:       %s\n", v.applied_gen == v.resources_gen ? "yes" : "not yet");
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------------ snapshots */

/*
 * Wait for task @id, printing its progress as it changes (not with --json),
 * at most @timeout_s.  Exit code: OK when it succeeded.
 */
static int wait_task(struct ctl *ctl, struct db *db, int64_t id, int timeout_s)
{
    struct db_task *t = NULL;
    int rc = ctl_task_follow(ctl, db, id, timeout_s, &t);
    if (rc != CTL_EXIT_OK)
        return rc;
    rc = strcmp(t->state, "succeeded") == 0 ? CTL_EXIT_OK : CTL_EXIT_FAILED;
    if (ctl->json)
        print_json(json_pack("{s:I, s:s, s:s, s:i}", "task", (json_int_t)id, "state", t->state,
                             "error", t->error, "progress", t->progress));
    else if (rc == CTL_EXIT_OK)
        printf("task %lld: done\n", (long long)id);
    else
        fprintf(stderr, "atriumctl: task %lld %s: %s\n", (long long)id, t->state,
                t->error[0] ? t->error : "no reason given");
    db_task_free(t);
    return rc;
}

static int queued(struct ctl *ctl, struct db *db, const char *vm, const char *what, int64_t task,
                  bool wait);

static int cmd_migrate(struct ctl *ctl, struct db *db, const char *arg, const char *to,
                       bool copy_storage, int max_bandwidth_mbs, bool wait)
{
    struct db_vm v;
    struct db_host h;
    int64_t task = 0;
    if (ctl_find_vm(db, arg, &v) < 0)
        return CTL_EXIT_FAILED;
    int r;
    if ((r = db_host_get_by_name(db, to, &h)) < 0) {
        fprintf(stderr, "atriumctl: %s\n", r == -ENOENT ? "no such host" : "cannot read the host");
        return CTL_EXIT_FAILED;
    }
    struct db_migration_req mr = {.vm_id = v.id,
                                  .to_host_id = h.id,
                                  .copy_storage = copy_storage,
                                  .max_bandwidth_mbs = max_bandwidth_mbs};
    r = db_migration_request_opts(db, &mr, &task);
    if (r < 0) {
        fprintf(stderr, "atriumctl: cannot migrate vm %s: %s\n", v.name,
                r == -EBUSY   ? "a migration of it is already under way"
                : r == -ENXIO ? "it is on no host or already on that one"
                              : strerror(-r));
        return CTL_EXIT_FAILED;
    }
    int rc = queued(ctl, db, v.name, "migration", task, wait);
    if (rc != CTL_EXIT_OK || !wait || ctl->json)
        return rc;
    struct db_task *t = NULL;
    if (db_task_get(db, task, &t) == 0) {
        /* Auto-converge slowed the guest down to finish: say how far. */
        long long thr = json_integer_value(json_object_get(t->result, "cpu_throttle_max_pct"));
        char throttled[64] = "";
        if (thr > 0)
            snprintf(throttled, sizeof(throttled), ", guest CPU throttled up to %lld%%", thr);
        printf("vm %s: migrated to %s, downtime %lld ms, total %lld ms%s\n", v.name, h.name,
               (long long)json_integer_value(json_object_get(t->result, "downtime_ms")),
               (long long)json_integer_value(json_object_get(t->result, "total_ms")), throttled);
        db_task_free(t);
    }
    return rc;
}

static int cmd_migrate_cancel(struct db *db, const char *arg)
{
    struct db_vm v;
    int64_t task = 0;
    if (ctl_find_vm(db, arg, &v) < 0)
        return CTL_EXIT_FAILED;
    int r;
    if ((r = db_migration_cancel(db, v.id, &task)) < 0) {
        fprintf(stderr, "atriumctl: vm %s: %s\n", v.name,
                r == -ENOENT ? "no migration under way" : strerror(-r));
        return CTL_EXIT_FAILED;
    }
    printf("vm %s: migration task %lld cancelled\n", v.name, (long long)task);
    return CTL_EXIT_OK;
}

static int queued(struct ctl *ctl, struct db *db, const char *vm, const char *what, int64_t task,
                  bool wait)
{
    if (!wait) {
        if (ctl->json)
            print_json(json_pack("{s:s, s:I}", "vm", vm, "task", (json_int_t)task));
        else
            printf("vm %s: %s queued as task %lld\n", vm, what, (long long)task);
        return CTL_EXIT_OK;
    }
    if (!ctl->json)
        printf("vm %s: %s queued as task %lld\n", vm, what, (long long)task);
    return wait_task(ctl, db, task, 1800);
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 ||
        !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
          (s[0] >= '0' && s[0] <= '9')))
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static int cmd_snapshot(struct ctl *ctl, struct db *db, const char *arg, const char *name, int ram,
                        bool wait)
{
    if (!valid_name(name)) {
        fprintf(stderr, "atriumctl: snapshot names are 1..63 of A-Z a-z 0-9 . _ - (not starting "
                        "with . _ -)\n");
        return CTL_EXIT_USAGE;
    }
    struct db_vm v;
    if (ctl_find_vm(db, arg, &v) < 0)
        return CTL_EXIT_FAILED;
    bool up = strcmp(v.actual_power, "running") == 0 || strcmp(v.actual_power, "paused") == 0;
    bool with_ram = ram > 0 || (ram == 0 && up);
    if (with_ram && !up) {
        fprintf(stderr,
                "atriumctl: VM %s is not running (power: %s): a snapshot with RAM needs "
                "it running; use --disk-only\n",
                v.name, v.actual_power);
        return CTL_EXIT_FAILED;
    }
    int64_t snap, task;
    int r = db_snapshot_request(db, v.id, name, with_ram, NULL, &snap, &task);
    if (r == -EEXIST) {
        fprintf(stderr, "atriumctl: VM %s already has a snapshot '%s'\n", v.name, name);
        return CTL_EXIT_FAILED;
    }
    if (r == -ENXIO) {
        fprintf(stderr, "atriumctl: VM %s has no host yet\n", v.name);
        return CTL_EXIT_FAILED;
    }
    if (r < 0) {
        fprintf(stderr, "atriumctl: cannot snapshot VM %s: %s\n", v.name, strerror(-r));
        return CTL_EXIT_FAILED;
    }
    return queued(ctl, db, v.name, with_ram ? "snapshot with RAM" : "disk-only snapshot", task,
                  wait);
}

static int cmd_snapshots(struct ctl *ctl, struct db *db, const char *arg)
{
    struct db_vm v;
    if (ctl_find_vm(db, arg, &v) < 0)
        return CTL_EXIT_FAILED;
    struct db_snapshot *s = NULL;
    size_t n = 0;
    int r = db_snapshot_list(db, v.id, &s, &n);
    if (r < 0) {
        fprintf(stderr, "atriumctl: cannot list snapshots of VM %s: %s\n", v.name, strerror(-r));
        return CTL_EXIT_FAILED;
    }
    if (ctl->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            char at[32];
            json_array_append_new(
                arr,
                json_pack("{s:I, s:s, s:s, s:b, s:s, s:I, s:s, s:s}", "id", (json_int_t)s[i].id,
                          "name", s[i].name, "state", s[i].state, "ram", s[i].with_ram, "vm_power",
                          s[i].vm_power, "size_bytes", (json_int_t)s[i].size_bytes, "created_at",
                          atr_time_format(s[i].created_at_us, at), "error", s[i].error));
        }
        print_json(arr);
    } else {
        printf("%-20s %-9s %-4s %-8s %12s  %-20s %s\n", "NAME", "STATE", "RAM", "VM_WAS",
               "DISK_BYTES", "CREATED", "ERROR");
        for (size_t i = 0; i < n; i++) {
            char at[32];
            printf("%-20s %-9s %-4s %-8s %12lld  %-20s %s\n", s[i].name, s[i].state,
                   s[i].with_ram ? "yes" : "no", s[i].vm_power, (long long)s[i].size_bytes,
                   atr_time_format(s[i].created_at_us, at), s[i].error);
        }
    }
    free(s);
    return CTL_EXIT_OK;
}

/* revert, snapshot-delete and clone-from-snapshot: a task on a ready snapshot. */
static int cmd_snapshot_task(struct ctl *ctl, struct db *db, const char *arg, const char *name,
                             const char *kind, const char *new_vm, bool wait)
{
    struct db_vm v;
    if (ctl_find_vm(db, arg, &v) < 0)
        return CTL_EXIT_FAILED;
    struct db_snapshot snap;
    int r = db_snapshot_get_by_name(db, v.id, name, &snap);
    if (r == -ENOENT) {
        fprintf(stderr, "atriumctl: VM %s has no snapshot '%s'\n", v.name, name);
        return CTL_EXIT_FAILED;
    }
    if (r < 0) {
        fprintf(stderr, "atriumctl: cannot read snapshot '%s': %s\n", name, strerror(-r));
        return CTL_EXIT_FAILED;
    }
    int64_t target = 0, task;
    bool tx = false;
    if (new_vm) {
        if (!valid_name(new_vm)) {
            fprintf(stderr, "atriumctl: '%s' is not a valid VM name\n", new_vm);
            return CTL_EXIT_USAGE;
        }
        if (!v.disk_path[0]) {
            fprintf(stderr, "atriumctl: VM %s has no disk\n", v.name);
            return CTL_EXIT_FAILED;
        }
        /* The new VM's overlay sits next to the source's, on the same host. */
        char disk[1100], source[160];
        snprintf(disk, sizeof(disk), "%s", v.disk_path);
        char *slash = strrchr(disk, '/');
        size_t dir_len = slash ? (size_t)(slash - disk + 1) : 0;
        snprintf(disk + dir_len, sizeof(disk) - dir_len, "%s.qcow2", new_vm);
        snprintf(source, sizeof(source), "%s/%s", v.name, snap.name);
        struct db_vm_new nv = {.name = new_vm,
                               .host_id = v.host_id,
                               .image_version_id = v.image_version_id,
                               .vcpus = v.vcpus,
                               .memory_mb = v.memory_mb,
                               .disk_path = disk,
                               .boot = v.boot,
                               .boot_kernel = v.boot_kernel,
                               .boot_initrd = v.boot_initrd,
                               .boot_cmdline = v.boot_cmdline,
                               .nic_mode = v.nic_mode,
                               .bridge = v.bridge,
                               .desired_power = "stopped", /* until its disk exists */
                               .source_snapshot = source};
        if ((r = db_begin(db)) < 0) {
            fprintf(stderr, "atriumctl: cannot start a transaction: %s\n", strerror(-r));
            return CTL_EXIT_FAILED;
        }
        tx = true;
        r = db_vm_create(db, &nv, &target);
        if (r == -EEXIST) {
            fprintf(stderr, "atriumctl: a VM named %s exists already\n", new_vm);
            db_rollback(db);
            return CTL_EXIT_FAILED;
        }
        if (r < 0) {
            fprintf(stderr, "atriumctl: cannot create VM %s: %s\n", new_vm, strerror(-r));
            db_rollback(db);
            return CTL_EXIT_FAILED;
        }
    }
    r = db_snapshot_task(db, snap.id, kind, target, &task);
    if (r == 0 && tx)
        r = db_commit(db);
    if (r < 0) {
        if (tx)
            db_rollback(db);
        if (r == -EBUSY)
            fprintf(stderr, "atriumctl: snapshot '%s' is %s, not ready\n", snap.name, snap.state);
        else
            fprintf(stderr, "atriumctl: cannot queue the task: %s\n", strerror(-r));
        return CTL_EXIT_FAILED;
    }
    const char *what = strcmp(kind, "vm.snapshot.revert") == 0   ? "revert"
                       : strcmp(kind, "vm.snapshot.delete") == 0 ? "snapshot delete"
                                                                 : "clone from snapshot";
    return queued(ctl, db, v.name, what, task, wait);
}

static int cmd_console_path(struct ctl *ctl, struct db *db, const char *arg, const char *kind)
{
    struct db_vm v;
    if (ctl_find_vm(db, arg, &v) < 0)
        return CTL_EXIT_FAILED;
    struct hv_vm_paths p;
    if (hv_vm_paths_init(ctl->cfg->paths.runtime_dir, v.id, &p) < 0) {
        fprintf(stderr, "atriumctl: runtime directory %s is too long\n",
                ctl->cfg->paths.runtime_dir);
        return CTL_EXIT_CONFIG;
    }
    const struct {
        const char *kind, *path;
    } all[] = {{"vnc", p.vnc}, {"spice", p.spice}, {"qmp", p.qmp}, {"serial", p.serial_log}};
    if (kind) {
        for (size_t i = 0; i < 4; i++) {
            if (strcmp(all[i].kind, kind) == 0) {
                printf("%s\n", all[i].path);
                return CTL_EXIT_OK;
            }
        }
        fprintf(stderr, "atriumctl: console kind must be vnc, spice, qmp or serial\n");
        return CTL_EXIT_USAGE;
    }
    if (ctl->json) {
        print_json(json_pack("{s:s, s:s, s:s, s:s, s:s}", "vm", v.name, "vnc", p.vnc, "spice",
                             p.spice, "qmp", p.qmp, "serial", p.serial_log));
        return CTL_EXIT_OK;
    }
    for (size_t i = 0; i < 4; i++)
        printf("%-7s %s\n", all[i].kind, all[i].path);
    return CTL_EXIT_OK;
}

int ctl_cmd_vm(struct ctl *ctl, int argc, char **argv)
{
    enum {
        O_BALLOON = 256,
        O_CPU_WEIGHT,
        O_CPU_MAX,
        O_MEM_MAX,
        O_IOPS,
        O_BPS,
        O_NET,
        O_BOOST,
        O_UNBOOST,
        O_RAM,
        O_DISK_ONLY,
        O_NO_WAIT,
        O_TO,
        O_COPY_STORAGE,
        O_MAX_BW,
        O_HA
    };
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                         {"host", required_argument, NULL, 'H'},
                                         {"balloon", required_argument, NULL, O_BALLOON},
                                         {"cpu-weight", required_argument, NULL, O_CPU_WEIGHT},
                                         {"cpu-max", required_argument, NULL, O_CPU_MAX},
                                         {"memory-max", required_argument, NULL, O_MEM_MAX},
                                         {"disk-iops", required_argument, NULL, O_IOPS},
                                         {"disk-bps", required_argument, NULL, O_BPS},
                                         {"net-bps", required_argument, NULL, O_NET},
                                         {"boost", no_argument, NULL, O_BOOST},
                                         {"unboost", no_argument, NULL, O_UNBOOST},
                                         {"ram", no_argument, NULL, O_RAM},
                                         {"disk-only", no_argument, NULL, O_DISK_ONLY},
                                         {"no-wait", no_argument, NULL, O_NO_WAIT},
                                         {"to", required_argument, NULL, O_TO},
                                         {"copy-storage", no_argument, NULL, O_COPY_STORAGE},
                                         {"max-bandwidth", required_argument, NULL, O_MAX_BW},
                                         {"ha", required_argument, NULL, O_HA},
                                         {0}};
    if (argc >= 2 && (strcmp(argv[1], "replication") == 0 || strcmp(argv[1], "recover") == 0))
        return ctl_cmd_vm_replication(ctl, argc, argv);
    const char *host = NULL, *to = NULL, *ha = NULL;
    struct res_opts res_o = {0};
    int ram = 0, c, max_bw = 0;
    bool wait = true, bad = false, copy_storage = false;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            vm_usage(stdout);
            return CTL_EXIT_OK;
        case 'H':
            host = optarg;
            break;
        case O_BALLOON:
            res_o.balloon = optarg;
            break;
        case O_CPU_WEIGHT:
            res_o.cpu_weight = optarg;
            break;
        case O_CPU_MAX:
            res_o.cpu_max = optarg;
            break;
        case O_MEM_MAX:
            res_o.memory_max = optarg;
            break;
        case O_IOPS:
            res_o.disk_iops = optarg;
            break;
        case O_BPS:
            res_o.disk_bps = optarg;
            break;
        case O_NET:
            res_o.net_bps = optarg;
            break;
        case O_BOOST:
        case O_UNBOOST:
            bad = bad || res_o.boost;
            res_o.boost = c == O_BOOST ? 1 : -1;
            break;
        case O_RAM:
        case O_DISK_ONLY:
            bad = bad || ram;
            ram = c == O_RAM ? 1 : -1;
            break;
        case O_NO_WAIT:
            wait = false;
            break;
        case O_TO:
            to = optarg;
            break;
        case O_COPY_STORAGE:
            copy_storage = true;
            break;
        case O_MAX_BW: {
            char *end = NULL;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 1 || v > 100000) {
                fprintf(stderr,
                        "atriumctl: --max-bandwidth takes MiB/s from 1 to 100000, not '%s'\n",
                        optarg);
                return CTL_EXIT_USAGE;
            }
            max_bw = (int)v;
            break;
        }
        case O_HA:
            ha = optarg;
            break;
        default:
            vm_usage(stderr);
            return CTL_EXIT_USAGE;
        }
    }
    if (bad) {
        fprintf(stderr, "atriumctl: --boost/--unboost and --ram/--disk-only exclude each other\n");
        return CTL_EXIT_USAGE;
    }
    if (optind >= argc) {
        vm_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    const char *sub = argv[optind];
    int nargs = argc - optind - 1;
    char **args = argv + optind + 1;
    static const struct {
        const char *name;
        int min, max;
        bool waits; /* takes --no-wait */
    } subs[] = {
        {"list", 0, 0, false},           {"show", 1, 1, false},
        {"reset", 1, 1, false},          {"start", 1, 1, false},
        {"stop", 1, 1, false},           {"pause", 1, 1, false},
        {"resume", 1, 1, false},         {"resources", 1, 1, false},
        {"console-path", 1, 2, false},   {"snapshot", 2, 2, true},
        {"snapshots", 1, 1, false},      {"revert", 2, 2, true},
        {"snapshot-delete", 2, 2, true}, {"clone-from-snapshot", 3, 3, true},
        {"migrate", 1, 1, true},         {"migrate-cancel", 1, 1, false},
        {"set", 1, 1, false},
    };
    int which = -1;
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
        if (strcmp(subs[i].name, sub) == 0)
            which = (int)i;
    if (which < 0) {
        fprintf(stderr, "atriumctl: unknown vm command '%s' (see 'atriumctl vm --help')\n", sub);
        return CTL_EXIT_USAGE;
    }
    bool res = strcmp(sub, "resources") == 0;
    bool snap = strcmp(sub, "snapshot") == 0;
    if (nargs < subs[which].min || nargs > subs[which].max || (res_opts_any(&res_o) && !res) ||
        (host && strcmp(sub, "list") != 0) || (ram && !snap) || (!wait && !subs[which].waits) ||
        (!to != (strcmp(sub, "migrate") != 0)) || ((copy_storage || max_bw) && !to) ||
        (!ha != (strcmp(sub, "set") != 0))) {
        vm_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    struct db *db = NULL;
    int rc = ctl_open_db(ctl, &db);
    if (rc != CTL_EXIT_OK)
        return rc;
    if (strcmp(sub, "list") == 0)
        rc = cmd_list(ctl, db, host);
    else if (strcmp(sub, "show") == 0)
        rc = cmd_show(ctl, db, args[0]);
    else if (strcmp(sub, "reset") == 0)
        rc = cmd_reset(ctl, db, args[0]);
    else if (res)
        rc = cmd_resources(ctl, db, args[0], &res_o);
    else if (strcmp(sub, "console-path") == 0)
        rc = cmd_console_path(ctl, db, args[0], nargs == 2 ? args[1] : NULL);
    else if (snap)
        rc = cmd_snapshot(ctl, db, args[0], args[1], ram, wait);
    else if (strcmp(sub, "snapshots") == 0)
        rc = cmd_snapshots(ctl, db, args[0]);
    else if (strcmp(sub, "revert") == 0)
        rc = cmd_snapshot_task(ctl, db, args[0], args[1], "vm.snapshot.revert", NULL, wait);
    else if (strcmp(sub, "snapshot-delete") == 0)
        rc = cmd_snapshot_task(ctl, db, args[0], args[1], "vm.snapshot.delete", NULL, wait);
    else if (strcmp(sub, "clone-from-snapshot") == 0)
        rc = cmd_snapshot_task(ctl, db, args[0], args[1], "vm.snapshot.clone", args[2], wait);
    else if (strcmp(sub, "migrate") == 0)
        rc = cmd_migrate(ctl, db, args[0], to, copy_storage, max_bw, wait);
    else if (strcmp(sub, "migrate-cancel") == 0)
        rc = cmd_migrate_cancel(db, args[0]);
    else if (strcmp(sub, "set") == 0)
        rc = cmd_set(db, args[0], ha);
    else
        rc = cmd_power(db, args[0], sub);
    db_close(db);
    return rc;
}
