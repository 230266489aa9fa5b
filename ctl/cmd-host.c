/* atriumctl host list | info | maintenance: the hypervisors of the site, from their hostd's
 * registration. */
#include "ctl-priv.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A host whose hostd missed this many milliseconds of heartbeats is shown as not responding. */
#define HOST_STALE_MS 10000

static void host_usage(FILE *out)
{
    fprintf(out, "Usage: atriumctl [--json] host list\n"
                 "       atriumctl [--json] host info HOST\n"
                 "       atriumctl host maintenance HOST on|off\n"
                 "\n"
                 "  list   every registered host: state, accelerator, capacity, VMs, heartbeat\n"
                 "  info   one host, with why its accelerator was chosen (KVM, or the reason\n"
                 "         for falling back to TCG)\n"
                 "  maintenance  on: the host's hostd live-migrates its running VMs to other\n"
                 "         online hosts, one at a time, and no new VM is placed on it;\n"
                 "         off: the host takes VMs again\n");
}

static const char *liveness(const struct db_host *h)
{
    if (h->heartbeat_age_ms < 0)
        return "never seen";
    return h->heartbeat_age_ms > HOST_STALE_MS ? "not responding" : "alive";
}

static json_t *host_json(const struct db_host *h)
{
    return json_pack(
        "{s:I, s:s, s:s, s:s, s:s, s:i, s:I, s:i, s:I, s:s, s:s, s:s, s:I, s:i, "
        "s:i}",
        "id", (json_int_t)h->id, "name", h->name, "address", h->address, "state", h->state,
        "liveness", liveness(h), "cpus", h->cpus, "memory_mb", (json_int_t)h->memory_mb,
        "cpu_capacity", h->cpu_capacity, "memory_capacity_mb", (json_int_t)h->memory_capacity_mb,
        "accel", h->accel, "accel_note", h->accel_note, "version", h->version, "heartbeat_age_ms",
        (json_int_t)h->heartbeat_age_ms, "vms", h->vm_count, "vms_running", h->vms_running);
}

static void print_json(json_t *o)
{
    char *s = atr_json_dumps(o);
    printf("%s\n", s ? s : "null");
    free(s);
    json_decref(o);
}

static int cmd_list(struct ctl *ctl, struct db *db)
{
    struct db_host *hosts = NULL;
    size_t n = 0;
    int r = db_host_list(db, &hosts, &n);
    if (r < 0) {
        fprintf(stderr, "atriumctl: cannot list hosts: %s\n", strerror(-r));
        return CTL_EXIT_FAILED;
    }
    if (ctl->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, host_json(&hosts[i]));
        print_json(arr);
    } else {
        printf("%-16s %-12s %-15s %-5s %5s %8s %9s %10s\n", "HOST", "STATE", "LIVENESS", "ACCEL",
               "CPUS", "MEM_MB", "VMS(RUN)", "HEARTBEAT");
        for (size_t i = 0; i < n; i++) {
            const struct db_host *h = &hosts[i];
            char vms[24], beat[24];
            snprintf(vms, sizeof(vms), "%d(%d)", h->vm_count, h->vms_running);
            if (h->heartbeat_age_ms < 0)
                snprintf(beat, sizeof(beat), "-");
            else
                snprintf(beat, sizeof(beat), "%llds ago", (long long)h->heartbeat_age_ms / 1000);
            printf("%-16s %-12s %-15s %-5s %5d %8lld %9s %10s\n", h->name, h->state, liveness(h),
                   h->accel, h->cpus, (long long)h->memory_mb, vms, beat);
        }
    }
    free(hosts);
    return CTL_EXIT_OK;
}

static int cmd_info(struct ctl *ctl, struct db *db, const char *name)
{
    struct db_host h;
    int r = db_host_get_by_name(db, name, &h);
    if (r == -ENOENT) {
        fprintf(stderr, "atriumctl: no host '%s'\n", name);
        return CTL_EXIT_FAILED;
    }
    if (r < 0) {
        fprintf(stderr, "atriumctl: cannot read host '%s': %s\n", name, strerror(-r));
        return CTL_EXIT_FAILED;
    }
    if (ctl->json) {
        print_json(host_json(&h));
        return CTL_EXIT_OK;
    }
    char beat[32];
    printf("name:         %s (id %lld)\n", h.name, (long long)h.id);
    printf("address:      %s\n", h.address[0] ? h.address : "-");
    printf("state:        %s, %s\n", h.state, liveness(&h));
    printf("heartbeat:    %s\n",
           h.heartbeat_at_us ? atr_time_format(h.heartbeat_at_us, beat) : "never");
    printf("accelerator:  %s\n", h.accel);
    printf("              %s\n", h.accel_note[0] ? h.accel_note : "-");
    printf("cpus:         %d (offered to VMs: %d)\n", h.cpus, h.cpu_capacity);
    printf("memory:       %lld MiB (offered to VMs: %lld MiB)\n", (long long)h.memory_mb,
           (long long)h.memory_capacity_mb);
    printf("vms:          %d, %d with QEMU running\n", h.vm_count, h.vms_running);
    printf("version:      %s\n", h.version[0] ? h.version : "-");
    return CTL_EXIT_OK;
}

static int cmd_maintenance(struct db *db, const char *name, const char *onoff)
{
    bool on = strcmp(onoff, "on") == 0;
    if (!on && strcmp(onoff, "off") != 0) {
        fprintf(stderr, "atriumctl: maintenance takes on or off, not '%s'\n", onoff);
        return CTL_EXIT_USAGE;
    }
    struct db_host h;
    int r = db_host_get_by_name(db, name, &h);
    if (r < 0) {
        fprintf(stderr, "atriumctl: %s\n", r == -ENOENT ? "no such host" : "cannot read the host");
        return CTL_EXIT_FAILED;
    }
    if ((r = db_host_set_state(db, h.id, on ? "maintenance" : "online")) < 0) {
        fprintf(stderr, "atriumctl: cannot change host %s: %s\n", h.name, strerror(-r));
        return CTL_EXIT_FAILED;
    }
    if (on)
        printf("host %s: maintenance; its %d running VMs migrate away\n", h.name, h.vms_running);
    else
        printf("host %s: online\n", h.name);
    return CTL_EXIT_OK;
}

int ctl_cmd_host(struct ctl *ctl, int argc, char **argv)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            host_usage(stdout);
            return CTL_EXIT_OK;
        }
        host_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    if (optind >= argc) {
        host_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    const char *sub = argv[optind];
    int nargs = argc - optind - 1;
    bool list = strcmp(sub, "list") == 0, info = strcmp(sub, "info") == 0;
    bool maint = strcmp(sub, "maintenance") == 0;
    if (!list && !info && !maint) {
        fprintf(stderr, "atriumctl: unknown host command '%s' (see 'atriumctl host --help')\n",
                sub);
        return CTL_EXIT_USAGE;
    }
    if ((list && nargs != 0) || (info && nargs != 1) || (maint && nargs != 2)) {
        host_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    struct db *db = NULL;
    int rc = ctl_open_db(ctl, &db);
    if (rc != CTL_EXIT_OK)
        return rc;
    rc = list    ? cmd_list(ctl, db)
         : maint ? cmd_maintenance(db, argv[optind + 1], argv[optind + 2])
                 : cmd_info(ctl, db, argv[optind + 1]);
    db_close(db);
    return rc;
}
