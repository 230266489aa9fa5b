/*
 * atriumctl vm list | show | start | stop | pause | resume | reset | console-path
 *
 * Through the database only: power commands set the VM's desired power and
 * the hostd of its host converges (DESIGN.md); reset is a task that hostd
 * claims.  Nothing here talks to QEMU.
 */
#include "ctl-priv.h"
#include "hv.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void vm_usage(FILE *out)
{
    fprintf(out,
            "Usage: atriumctl [--json] vm list [--host HOST]\n"
            "       atriumctl [--json] vm show VM\n"
            "       atriumctl vm start|stop|pause|resume VM\n"
            "       atriumctl vm reset VM\n"
            "       atriumctl [--json] vm resources VM [--balloon MiB|none]\n"
            "       atriumctl vm console-path VM [vnc|spice|qmp|serial]\n"
            "\n"
            "VM is a name or a numeric id.\n"
            "  start, stop, pause, resume  set the desired power; the VM's host acts on it\n"
            "                              (stop presses the ACPI power button, then kills\n"
            "                              QEMU after the grace period).  Starting a failed\n"
            "                              VM clears its failure.\n"
            "  reset                       queue a hard reset (a task run by the VM's host)\n"
            "  resources                   show, or change without a restart, the live memory\n"
            "                              target (virtio balloon; none = all its memory)\n"
            "  console-path                the VM's unix socket or log on its host (all four\n"
            "                              without a kind); run it on that host\n");
}

static int find_vm(struct db *db, const char *arg, struct db_vm *ret)
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
                     "s:I}",
                     "id", (json_int_t)v->id, "name", v->name, "host", host, "host_id",
                     (json_int_t)v->host_id, "state", v->state, "desired_power", v->desired_power,
                     "actual_power", v->actual_power, "vcpus", v->vcpus, "memory_mb", v->memory_mb,
                     "disk_path", v->disk_path, "boot", v->boot, "qemu_pid", v->qemu_pid,
                     "last_error", v->last_error, "pool_id", (json_int_t)v->pool_id,
                     "assigned_user_id", (json_int_t)v->assigned_user_id);
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
    if (find_vm(db, arg, &v) < 0)
        return CTL_EXIT_FAILED;
    struct db_host h = {0};
    const char *host = "-";
    if (v.host_id && db_host_get(db, v.host_id, &h) == 0)
        host = h.name;
    if (ctl->json) {
        print_json(vm_json(&v, host));
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
    if (v.last_error[0])
        printf("last error:    %s\n", v.last_error);
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
    if (find_vm(db, arg, &v) < 0)
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
    if (find_vm(db, arg, &v) < 0)
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

static int cmd_resources(struct ctl *ctl, struct db *db, const char *arg, const char *balloon)
{
    struct db_vm v;
    if (find_vm(db, arg, &v) < 0)
        return CTL_EXIT_FAILED;
    if (balloon) {
        long long mb = 0;
        if (strcmp(balloon, "none") != 0 && atr_parse_ll(balloon, 64, v.memory_mb, &mb) < 0) {
            fprintf(stderr, "atriumctl: --balloon wants none or 64..%d (MiB), not '%s'\n",
                    v.memory_mb, balloon);
            return CTL_EXIT_USAGE;
        }
        int r = db_vm_set_balloon(db, v.id, (int)mb);
        if (r < 0) {
            fprintf(stderr, "atriumctl: cannot change VM %s: %s\n", v.name, strerror(-r));
            return CTL_EXIT_FAILED;
        }
        if (find_vm(db, arg, &v) < 0)
            return CTL_EXIT_FAILED;
    }
    if (ctl->json) {
        print_json(json_pack("{s:s, s:i, s:o, s:i, s:i, s:b}", "vm", v.name, "memory_mb",
                             v.memory_mb, "balloon_mb",
                             v.balloon_mb ? json_integer(v.balloon_mb) : json_null(),
                             "resources_gen", v.resources_gen, "applied_gen", v.applied_gen,
                             "applied", v.applied_gen == v.resources_gen));
        return CTL_EXIT_OK;
    }
    printf("memory:        %d MiB\n", v.memory_mb);
    if (v.balloon_mb)
        printf("memory target: %d MiB (balloon)\n", v.balloon_mb);
    else
        printf("memory target: none\n");
    printf("applied:       %s\n", v.applied_gen == v.resources_gen ? "yes" : "not yet");
    return CTL_EXIT_OK;
}

static int cmd_console_path(struct ctl *ctl, struct db *db, const char *arg, const char *kind)
{
    struct db_vm v;
    if (find_vm(db, arg, &v) < 0)
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
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                         {"host", required_argument, NULL, 'H'},
                                         {"balloon", required_argument, NULL, 'B'},
                                         {0}};
    const char *host = NULL, *balloon = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            vm_usage(stdout);
            return CTL_EXIT_OK;
        }
        if (c == 'H' || c == 'B') {
            *(c == 'H' ? &host : &balloon) = optarg;
            continue;
        }
        vm_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    if (optind >= argc) {
        vm_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    const char *sub = argv[optind];
    int nargs = argc - optind - 1;
    char **args = argv + optind + 1;
    bool list = strcmp(sub, "list") == 0;
    bool console = strcmp(sub, "console-path") == 0;
    bool res = strcmp(sub, "resources") == 0;
    bool known = list || console || res || strcmp(sub, "show") == 0 || strcmp(sub, "reset") == 0 ||
                 strcmp(sub, "start") == 0 || strcmp(sub, "stop") == 0 ||
                 strcmp(sub, "pause") == 0 || strcmp(sub, "resume") == 0;
    if (!known) {
        fprintf(stderr, "atriumctl: unknown vm command '%s' (see 'atriumctl vm --help')\n", sub);
        return CTL_EXIT_USAGE;
    }
    if ((list && nargs != 0) || (!list && !console && nargs != 1) || (balloon && !res) ||
        (console && (nargs < 1 || nargs > 2)) || (host && !list)) {
        vm_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    struct db *db = NULL;
    int rc = ctl_open_db(ctl, &db);
    if (rc != CTL_EXIT_OK)
        return rc;
    if (list)
        rc = cmd_list(ctl, db, host);
    else if (strcmp(sub, "show") == 0)
        rc = cmd_show(ctl, db, args[0]);
    else if (strcmp(sub, "reset") == 0)
        rc = cmd_reset(ctl, db, args[0]);
    else if (res)
        rc = cmd_resources(ctl, db, args[0], balloon);
    else if (console)
        rc = cmd_console_path(ctl, db, args[0], nargs == 2 ? args[1] : NULL);
    else
        rc = cmd_power(db, args[0], sub);
    db_close(db);
    return rc;
}
