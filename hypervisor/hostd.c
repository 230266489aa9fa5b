/*
 * atrium-hostd: one per host.  Makes the QEMU processes on this host match
 * what the database asks for, and writes back what they really do.
 *
 * One thread, one poll() loop over: the database connection (LISTEN
 * atrium_vm and atrium_task, so a change to one of this host's VMs wakes us
 * at once), every VM's QMP socket and pidfd, and a signalfd.  The only
 * timers are deadlines: the next heartbeat, a guest's power-off grace
 * period, QMP command deadlines.
 *
 * Restart safety: QEMU runs in its own session and outlives hostd.  At
 * start-up hostd first adopts every QEMU of this host that still runs (by
 * its pid file and QMP socket) and only then reconciles, so a restart never
 * restarts a VM.  A QEMU that died while hostd was away is reported failed.
 */
#include "db.h"
#include "hv.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/sysinfo.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#define PROBE_TIMEOUT_MS 2000
#define RESET_TIMEOUT_MS 10000
#define DB_RETRY_MS 1000

struct local_vm {
    struct local_vm *next;
    int64_t id;
    char name[64];
    char disk_path[1024];
    struct hv_vm *vm;
    bool fresh;          /* started by this hostd: first RUNNING makes it ready */
    bool ready_lost;     /* that 'ready' was not written (database away): on reconnect */
    bool stop_requested; /* we asked for the power-off (or the kill) */
    bool deleting;       /* desired_power = deleted: remove everything once gone */
    bool killed_on_timeout;
    int64_t stop_deadline_ms; /* 0: none */
    bool reap;                /* process gone and reported: drop the entry */
    int64_t refresh_task;     /* vm.refresh under way: reset the overlay once QEMU is gone */
    /* metrics: the previous CPU reading, and the latest QMP answers */
    int64_t prev_cpu_ticks, prev_sample_ms;
    int64_t balloon_mb; /* -1: not known yet */
    struct hv_vm_io io;
    bool have_io;
    int applying_gen;       /* resources generation sent to QEMU, awaiting its answer */
    bool resources_due;     /* a new QEMU starts without limits: apply them again */
    int64_t net_bps_on_tap; /* cap set on the bridged NIC's tap; -1 unknown (adopted) */
    struct snap_op *snap;   /* snapshot job under way (one at a time per VM) */
    int64_t revert_task;    /* disk-only revert: apply the snapshot once QEMU is gone */
    char revert_tag[64];
    struct mig_op *mig;    /* outgoing live migration under way */
    struct mig_in *mig_in; /* incoming: QEMU waits for the stream; the row is not ours yet */
    bool moved_away;       /* migrated or dropped: QEMU goes quietly, the row is not ours */
    bool identity_due;     /* instant clone loading: its identity goes in on RUNNING */
    int64_t instant_t0_ms;
    char mac[18];
    struct rep_op *rep;    /* outgoing replication sync under way (hostd-replicate.inc) */
    bool io_stopped;       /* paused by a failed disk write (werror=stop): not resumed */
};

/*
 * A disk copy (clone from a snapshot) run by a child of hostd, so that the
 * loop keeps serving every other VM while qemu-img works: the child writes
 * its error (nothing on success) to a pipe and exits; EOF on the pipe says
 * it is done.
 */
struct bg_op {
    struct bg_op *next;
    pid_t pid;
    int fd;
    int64_t task, vm_id, target_vm;
    char target_name[64];
    char msg[1024];
    size_t len;
};

/* A snapshot task being done by a QMP job of the VM's QEMU. */
struct snap_op {
    struct hostd *h;
    int64_t vm_id, task, snap_id;
    enum hv_snap_op op;
    char tag[64];
    char vm_power[16]; /* how the VM was when the job started */
    struct hv_snap_job *job;
};

/* An outgoing live migration (vm.migrate task): see hostd-migrate.inc. */
struct mig_op {
    struct hostd *h;
    int64_t vm_id, task, in_task, to_host;
    int64_t deadline_ms;    /* destination's answer, then the whole copy */
    int64_t bandwidth_bps, timeout_ms;
    struct hv_mig_job *job; /* NULL until the destination listens */
    bool cancelling;
    json_t *commit;         /* completed, the row not moved yet: retried */
    struct mig_mirror *mirror; /* without shared storage: the disk copy */
    bool spice_told;        /* client_migrate_info sent (hostd-migrate.inc) */
    int spice_channels;     /* the SPICE client's channels here; 0: none, or no longer waited for */
};

/* An incoming one (vm.migrate_in task). */
struct mig_in {
    int64_t task, src_task;
    char uri[96];
    bool announced; /* the source task has our URI */
    char nbd[96];   /* without shared storage: host:port of our disk's NBD export */
    bool exporting; /* NBD export asked for, answers pending */
    int spice_channels; /* SPICE channels the client linked to our QEMU so far */
};

/* A task's outcome the database could not take yet (kept until written). */
struct task_outcome {
    struct task_outcome *next;
    int64_t task;
    char *error; /* NULL: succeeded */
};

struct hostd {
    struct atr_config *cfg;
    struct db *db;
    int64_t host_id;
    char host_name[64];
    char claimer[160];
    struct hv_accel_result accel;
    int stop_timeout_s;
    struct local_vm *vms;
    bool dirty;       /* reconcile on the next turn */
    bool tasks_dirty; /* look for tasks on the next turn */
    int64_t next_heartbeat_ms;
    int64_t next_metrics_ms, next_prune_ms;
    struct hv_host_stat prev_host;
    bool have_prev_host;
    int64_t db_retry_ms; /* 0: connected */
    int sigfd;
    bool quit;
    struct hv_cgroups cg;
    struct bg_op *bg;               /* disk copies under way */
    struct task_outcome *unwritten; /* finished tasks whose end is not recorded yet */
    struct tpl *tpls;               /* instant-clone templates (hostd-instant.inc) */
    int64_t lease_until_ms; /* fence lease (hostd-fence.inc); 0: none taken yet */
    bool fence_killed;      /* the lease ran out and the VMs were killed */
    struct rep_in *rep_ins;         /* incoming replication syncs (this host is the target) */
};

static struct local_vm *find_vm(struct hostd *h, int64_t id)
{
    for (struct local_vm *l = h->vms; l; l = l->next)
        if (l->id == id && !l->reap)
            return l;
    return NULL;
}

/*
 * Record the end of @task (@error NULL: succeeded).  When the database
 * cannot take it now (PostgreSQL restarting), the outcome is kept and
 * written by flush_outcomes() once the connection is back, so a finished
 * task is never left 'running' for poold to requeue and run again.
 */
static void finish_task(struct hostd *h, int64_t task, const char *error)
{
    int r = db_task_finish(h->db, task, error, NULL);
    if (r == 0 || r == -ENOENT)
        return;
    if (r != -ENOTCONN && r != -EAGAIN) {
        log_error("cannot finish task", "task", LOG_INT(task), "errno", LOG_INT(-r));
        return;
    }
    struct task_outcome *o = calloc(1, sizeof(*o));
    if (o && error && !(o->error = strdup(error)))
        o = atr_free(o);
    if (!o) {
        log_error("cannot finish task", "task", LOG_INT(task), "errno", LOG_INT(ENOMEM));
        return;
    }
    log_warn("cannot finish task yet; kept until the database is back", "task", LOG_INT(task),
             "errno", LOG_INT(-r));
    o->task = task;
    o->next = h->unwritten;
    h->unwritten = o;
    if (!h->db_retry_ms)
        h->db_retry_ms = atr_now_mono_ms();
}

/* Write the outcomes finish_task() had to keep; stops at the first that still cannot be. */
static void flush_outcomes(struct hostd *h)
{
    while (h->unwritten) {
        struct task_outcome *o = h->unwritten;
        int r = db_task_finish(h->db, o->task, o->error, NULL);
        if (r == -ENOTCONN || r == -EAGAIN)
            return;
        if (r < 0 && r != -ENOENT)
            log_error("cannot finish task", "task", LOG_INT(o->task), "errno", LOG_INT(-r));
        else
            log_info("task end recorded after reconnecting", "task", LOG_INT(o->task), "error",
                     o->error ? o->error : "");
        h->unwritten = o->next;
        free(o->error);
        free(o);
    }
}

static int report(struct hostd *h, int64_t id, const struct db_vm_report *rep)
{
    int r = db_vm_report(h->db, id, rep);
    log_debug("vm report", "vm", LOG_INT(id), "state", rep->state ? rep->state : "-", "power",
              rep->actual_power ? rep->actual_power : "-", "pid", LOG_INT(rep->qemu_pid), "result",
              LOG_INT(r));
    if (r < 0 && r != -ENOENT)
        log_error("cannot record VM state", "vm", LOG_INT(id), "errno", LOG_INT(-r));
    if (r == -ENOTCONN && !h->db_retry_ms)
        h->db_retry_ms = atr_now_mono_ms();
    return r;
}

/* Disk files hostd may delete with their VM: linked clones only, never a
 * file without a backing image (that could be someone's only copy). */
static void delete_overlay(const char *path, int64_t id)
{
    if (!path[0])
        return;
    char backing[1024];
    struct atr_error err = {0};
    if (hv_storage_backing(NULL, path, backing, sizeof(backing), &err) < 0) {
        log_warn("cannot inspect disk of deleted VM", "vm", LOG_INT(id), "error", err.msg);
        return;
    }
    if (!backing[0]) {
        log_warn("disk of deleted VM is not a linked clone; kept", "vm", LOG_INT(id), "disk", path);
        return;
    }
    int r = hv_storage_delete(path);
    if (r < 0)
        log_error("cannot delete overlay", "vm", LOG_INT(id), "disk", path, "errno", LOG_INT(-r));
}

/*
 * At start: overlays of VMs that are gone, left by a hostd killed in the
 * middle (of a refresh, a delete).  Only what hostd itself makes in
 * <data_dir>/overlays is touched: "<name>.qcow2" linked clones that no VM
 * row (of any host: storage may be shared) names, and the temporaries
 * ".<name>.qcow2.tmp-<pid>" of a hostd that is not running any more whose
 * overlay belongs to no VM or to one of this host's.  The directory is read
 * before the rows, and an overlay is only ever made for an existing row,
 * so a file that no row names cannot be one being made right now.
 */
static void sweep_overlays(struct hostd *h)
{
    char dir[1024];
    int n = snprintf(dir, sizeof(dir), "%s/overlays", h->cfg->paths.data_dir);
    if (n < 0 || (size_t)n >= sizeof(dir))
        return;
    DIR *d = opendir(dir);
    if (!d)
        return;
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *name = e->d_name;
        size_t len = strlen(name);
        char path[1280], target[1280];
        struct stat st;
        if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path) ||
            lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
            continue;
        int64_t host = 0;
        const char *tmp = strstr(name, ".qcow2.tmp-");
        if (name[0] != '.' && len > 6 && strcmp(name + len - 6, ".qcow2") == 0) {
            if (db_vm_disk_owner(h->db, path, &host) != -ENOENT)
                continue;
            log_info("overlay names no VM; removing it", "disk", path);
            delete_overlay(path, 0);
            removed++;
        } else if (name[0] == '.' && tmp && tmp[11]) {
            char *end = NULL;
            long pid = strtol(tmp + 11, &end, 10);
            if (*end || pid <= 1 || pid == getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
                continue;
            snprintf(target, sizeof(target), "%s/%.*s", dir, (int)(tmp + 6 - name - 1), name + 1);
            int r = db_vm_disk_owner(h->db, target, &host);
            if ((r < 0 && r != -ENOENT) || (r == 0 && host != h->host_id))
                continue;
            if (unlink(path) == 0) {
                log_info("temporary overlay of a stopped hostd removed", "disk", path);
                removed++;
            }
        }
    }
    closedir(d);
    if (removed)
        log_info("overlay sweep", "removed", LOG_INT(removed));
}

/* A bridged VM's tap and ifb go with its QEMU (nothing to do for other NICs). */
static void net_remove(int64_t id)
{
    char tap[HV_IFNAMSIZ], ifb[HV_IFNAMSIZ];
    if (hv_net_names(id, tap, ifb) < 0)
        return;
    int r = hv_net_tap_delete(tap, ifb);
    if (r < 0)
        log_error("cannot remove the VM's tap", "vm", LOG_INT(id), "tap", tap, "errno",
                  LOG_INT(-r));
}

static void finish_delete(struct hostd *h, int64_t id, const char *name, const char *disk)
{
    hv_cgroup_vm_remove(&h->cg, id);
    net_remove(id);
    int r = hv_vm_remove_runtime(id, h->cfg->paths.runtime_dir);
    if (r < 0)
        log_error("cannot remove VM runtime directory", "vm", LOG_INT(id), "errno", LOG_INT(-r));
    delete_overlay(disk, id);
    r = db_vm_delete(h->db, id);
    if (r < 0 && r != -ENOENT)
        log_error("cannot delete VM row", "vm", LOG_INT(id), "errno", LOG_INT(-r));
    else
        log_info("vm deleted", "vm", LOG_INT(id), "name", name);
}

#include "hostd-instant.inc"

static bool mig_vm_changed(struct hostd *h, struct local_vm *l);
static void mig_adopt(struct hostd *h, struct local_vm *l, const struct db_vm *row);
static void mig_deadlines(struct hostd *h, int64_t now);
static void mig_in_spice_channel(struct hostd *h, struct local_vm *l);
static void rep_deadlines(struct hostd *h, int64_t now);
static void rep_event(struct hostd *h, struct local_vm *l, enum hv_qmp_event ev, json_t *data);
static void rep_vm_gone(struct hostd *h, struct local_vm *l);
static bool rep_io_error(struct hostd *h, struct local_vm *l);
static bool rep_ending(const struct local_vm *l);
static void mig_event(struct hostd *h, struct local_vm *l, enum hv_qmp_event ev, json_t *data);
static bool fence_lease_expired(struct hostd *h);

/* hv_vm callback: the VM's process or guest changed state. */
static void vm_changed(struct hv_vm *vm, void *userdata)
{
    struct hostd *h = userdata;
    struct local_vm *l = find_vm(h, hv_vm_id(vm));
    if (l && l->rep && hv_vm_power(vm) == HV_VM_EXITED)
        rep_vm_gone(h, l);
    if (!l || mig_vm_changed(h, l))
        return;
    struct db_vm_report rep = {.qemu_pid = -1};
    /* A wish that came while QEMU could not act on it (QMP not ready yet,
     * e.g. just after adoption) is acted on now. */
    h->dirty = true;
    switch (hv_vm_power(vm)) {
    case HV_VM_STARTING:
        return;
    case HV_VM_RUNNING:
        rep.actual_power = "running";
        if (l->identity_due)
            instant_identity(h, l, hv_vm_paths(vm));
        if (l->fresh) {
            rep.state = "ready";
            l->fresh = false;
            log_info("vm running", "vm", LOG_INT(l->id), "name", l->name, "pid",
                     LOG_INT(hv_vm_pid(vm)));
        }
        break;
    case HV_VM_PAUSED:
        rep.actual_power = "paused";
        /* An instant clone is paused while it loads its template's state. */
        if (!l->identity_due)
            l->fresh = false;
        break;
    case HV_VM_EXITED:
        l->reap = true;
        /* Killed by fencing (the guard or fence_check): a stop, so that a
         * row still ours boots again here once the database is back. */
        if (fence_lease_expired(h))
            l->stop_requested = true;
        if (l->deleting || l->refresh_task || l->revert_task)
            return; /* finish_delete / _refresh / _revert run when the entry is reaped */
        rep.qemu_pid = 0;
        if (hv_vm_exit_clean(vm) || l->stop_requested) {
            rep.state = "stopped";
            rep.actual_power = "off";
            rep.last_error = l->killed_on_timeout ? hv_vm_exit_message(vm) : "";
            log_info("vm stopped", "vm", LOG_INT(l->id), "name", l->name, "how",
                     hv_vm_exit_message(vm));
            if (!l->stop_requested) {
                /* The guest powered itself off: that is the new wish, or
                 * the reconcile loop would boot it straight back up. */
                int r = db_vm_set_desired(h->db, l->id, "stopped");
                if (r < 0)
                    log_error("cannot record guest power-off", "vm", LOG_INT(l->id));
            }
        } else {
            rep.state = "failed";
            rep.actual_power = "crashed";
            rep.last_error = hv_vm_exit_message(vm);
            log_warn("vm failed", "vm", LOG_INT(l->id), "name", l->name, "error",
                     hv_vm_exit_message(vm));
        }
        break;
    }
    int r = report(h, l->id, &rep);
    if (rep.state && strcmp(rep.state, "ready") == 0)
        l->ready_lost = r < 0 && r != -ENOENT;
}

static void vm_event(struct hv_vm *vm, enum hv_qmp_event ev, json_t *data, void *userdata);
static void snap_abandon(struct hostd *h, struct local_vm *l);
static void slice_share(struct hostd *h);
static void finish_revert(struct hostd *h, struct local_vm *l);

static const struct hv_vm_ops vm_ops = {.changed = vm_changed, .event = vm_event};

static void add_local(struct hostd *h, const struct db_vm *row, struct hv_vm *vm, bool fresh)
{
    struct local_vm *l = calloc(1, sizeof(*l));
    if (!l) {
        log_error("out of memory tracking a VM; killing it", "vm", LOG_INT(row->id));
        hv_vm_kill(vm);
        hv_vm_free(vm);
        return;
    }
    l->id = row->id;
    snprintf(l->name, sizeof(l->name), "%s", row->name);
    snprintf(l->disk_path, sizeof(l->disk_path), "%s", row->disk_path);
    snprintf(l->mac, sizeof(l->mac), "%s", row->mac);
    l->vm = vm;
    l->fresh = fresh;
    l->balloon_mb = -1;
    l->resources_due = fresh;
    /* A fresh QEMU got a fresh tap (no cap); an adopted one kept its tap
     * and whatever tc has on it. */
    l->net_bps_on_tap = fresh ? 0 : -1;
    l->next = h->vms;
    h->vms = l;
}

/*
 * A pool VM's disk is a linked clone of its image version, made the first
 * time the VM starts, on the host that runs it: overlays are host-local files
 * and only this host's hostd may create them.
 */
static int ensure_disk(struct hostd *h, const struct db_vm *row, struct atr_error *err)
{
    if (!row->disk_path[0] || !row->image_version_id || access(row->disk_path, F_OK) == 0)
        return 0;
    struct db_image_version iv;
    int r = db_image_version_get(h->db, row->image_version_id, &iv);
    if (r < 0)
        return atr_error_set(err, r, "cannot read image version %lld of the VM",
                             (long long)row->image_version_id);
    if (strcmp(iv.state, "ready") != 0)
        return atr_error_set(err, -EINVAL, "image %s version %d is %s, not ready", iv.image_name,
                             iv.version, iv.state);
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s", row->disk_path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0750) < 0 && errno != EEXIST)
            return atr_error_set(err, -errno, "cannot create %s: %s", dir, strerror(errno));
    }
    r = hv_storage_clone(NULL, iv.path, row->disk_path, err);
    if (r == 0)
        log_info("linked clone created", "vm", LOG_INT(row->id), "disk", row->disk_path, "image",
                 iv.image_name, "version", LOG_INT(iv.version));
    return r;
}

/* Start QEMU for @row; with @incoming it waits for a migration stream and
 * the row (still another host's) is left alone. */
static struct local_vm *start_qemu(struct hostd *h, const struct db_vm *row, const char *loadvm,
                                   const char *incoming, struct atr_error *ret_err)
{
    struct hv_vm_def def = {
        .id = row->id,
        .name = row->name,
        .vcpus = row->vcpus,
        .memory_mb = row->memory_mb,
        .disk_path = row->disk_path,
        .boot = strcmp(row->boot, "kernel") == 0 ? HV_BOOT_KERNEL : HV_BOOT_DISK,
        .kernel = row->boot_kernel,
        .initrd = row->boot_initrd,
        .cmdline = row->boot_cmdline,
        .nic = strcmp(row->nic_mode, "none") == 0     ? HV_NIC_NONE
               : strcmp(row->nic_mode, "bridge") == 0 ? HV_NIC_BRIDGE
                                                      : HV_NIC_USER,
        .bridge = row->bridge[0] ? row->bridge : h->cfg->hostd.bridge,
        .mac = row->mac,
        .accel = h->accel.accel,
        .start_paused = strcmp(row->desired_power, "paused") == 0,
        .loadvm = loadvm,
        .incoming = incoming,
    };
    struct hv_vm *vm = NULL;
    struct atr_error err = {0};
    char tap[HV_IFNAMSIZ] = "", ifb[HV_IFNAMSIZ] = "";
    int mode = incoming || loadvm ? 0 : vm_is_instant(h, row);
    if (mode < 0) {
        /* Booting a clone of an instant pool would be a different desktop:
         * wait for the database to say which it is. */
        log_warn("cannot read the VM's pool; start deferred", "vm", LOG_INT(row->id), "errno",
                 LOG_INT(-mode));
        return NULL;
    }
    bool instant = mode == 1;
    int r = incoming ? 0 : instant ? instant_prepare(h, row, &def, &err) : ensure_disk(h, row, &err);
    if (r == -EAGAIN)
        return NULL; /* its template is being built: started once it is ready */
    if (r == 0 && def.nic == HV_NIC_BRIDGE) {
        /* hostd makes the tap, so that it can put tc on it (the network
         * cap) and QEMU needs no bridge helper. */
        if ((r = hv_net_names(row->id, tap, ifb)) < 0)
            atr_error_set(&err, r, "VM id %lld is too long for a tap name", (long long)row->id);
        else if (!def.bridge || !def.bridge[0])
            r = atr_error_set(&err, -EINVAL,
                              "the VM has a bridged NIC but no bridge is named (vms.bridge or "
                              "[hostd] bridge)");
        else if ((r = hv_net_tap_delete(NULL, ifb)) < 0) /* a dead hostd's leftover */
            atr_error_set(&err, r, "cannot remove the old %s", ifb);
        else
            r = hv_net_tap_create(tap, def.bridge, &err);
        def.tap = tap;
    }
    if (r == 0)
        r = hv_vm_start(&def, h->cfg->paths.runtime_dir, h->cfg->hostd.qemu, &vm_ops, h, &vm, &err);
    if (r < 0) {
        if (tap[0])
            hv_net_tap_delete(tap, NULL);
        log_error("vm start failed", "vm", LOG_INT(row->id), "name", row->name, "error", err.msg);
        if (ret_err)
            *ret_err = err;
        if (!incoming) {
            struct db_vm_report rep = {
                .state = "failed", .actual_power = "off", .qemu_pid = 0, .last_error = err.msg};
            report(h, row->id, &rep);
        }
        return NULL;
    }
    log_info("vm starting", "vm", LOG_INT(row->id), "name", row->name, "pid",
             LOG_INT(hv_vm_pid(vm)), "accel", hv_accel_name(h->accel.accel), "incoming",
             incoming ? incoming : "");
    add_local(h, row, vm, !incoming);
    if (incoming)
        return find_vm(h, row->id);
    if (instant) {
        struct tpl *t = NULL;
        char key[96];
        tpl_key(row, key);
        t = tpl_find(h, key);
        if (!t || instant_started(h, find_vm(h, row->id), t->f.state, &err) < 0) {
            log_error("instant clone not loaded", "vm", LOG_INT(row->id), "error", err.msg);
            hv_vm_kill(vm);
        }
    }
    if (h->cg.mode != HV_CGROUP_NONE &&
        (r = hv_cgroup_vm_attach(&h->cg, row->id, hv_vm_pid(vm))) < 0)
        log_warn("cannot move QEMU into its cgroup; no CPU or memory limits for it", "vm",
                 LOG_INT(row->id), "errno", LOG_INT(-r));
    slice_share(h);
    struct db_vm_report rep = {.state = "booting",
                               .actual_power = "starting",
                               .qemu_pid = hv_vm_pid(vm),
                               .last_error = ""};
    report(h, row->id, &rep);
    return find_vm(h, row->id);
}

/* The slice weighs as much as the VMs in it would as separate processes. */
static void slice_share(struct hostd *h)
{
    int n = 0;
    for (struct local_vm *l = h->vms; l; l = l->next)
        n += !l->reap;
    int r = hv_cgroup_slice_share(&h->cg, n);
    if (r < 0)
        log_debug("cannot weigh the VM slice", "errno", LOG_INT(-r));
}

static void start_vm(struct hostd *h, const struct db_vm *row, const char *loadvm)
{
    /* Without a valid fence lease the guard would kill it at once: wait
     * for the next heartbeat (which reconciles again). */
    if (fence_lease_expired(h)) {
        log_debug("vm start waits for a fence lease", "vm", LOG_INT(row->id));
        return;
    }
    start_qemu(h, row, loadvm, NULL, NULL);
}

/* One application of a resources generation: QEMU's answers it waits for. */
struct res_req {
    struct hostd *h;
    int64_t id;
    int gen;
    int pending;
    char err[512];
};

static void res_note(struct res_req *b, const char *what, const char *why)
{
    size_t len = strlen(b->err);
    snprintf(b->err + len, sizeof(b->err) - len, "%s%s not applied: %s", len ? "; " : "", what,
             why);
}

static void res_finish(struct res_req *b)
{
    struct local_vm *l = find_vm(b->h, b->id);
    if (l && l->applying_gen == b->gen)
        l->applying_gen = 0;
    /* Recorded as applied also when a part failed, with the reason: retrying
     * would fail the same way until the admin changes the limits. */
    struct db_vm_report rep = {.qemu_pid = -1, .applied_gen = b->gen};
    if (b->err[0]) {
        rep.last_error = b->err;
        log_warn("resource change partly failed", "vm", LOG_INT(b->id), "error", b->err);
    } else {
        log_info("resources applied", "vm", LOG_INT(b->id), "generation", LOG_INT(b->gen));
    }
    if (b->gen > 0)
        report(b->h, b->id, &rep);
    free(b);
}

static void on_resource_reply(struct hv_qmp *q, const struct hv_qmp_reply *r, void *userdata)
{
    (void)q;
    struct res_req *b = userdata;
    if (r->error < 0 && r->error != -ECANCELED)
        res_note(b, strcmp(r->command, "balloon") == 0 ? "memory target" : "disk limits",
                 r->err_desc ? r->err_desc : strerror(-r->error));
    if (--b->pending == 0) {
        if (r->error == -ECANCELED) /* QEMU went away: nothing to record */
            free(b);
        else
            res_finish(b);
    }
}

/*
 * The network cap: tc on a bridged VM's tap (hv_net_cap_apply), changed
 * only when it differs from what the tap has.  User networking cannot be
 * capped: slirp in QEMU 7.2 has no rate limiter and the VM's traffic leaves
 * through QEMU's own host sockets, where no per-VM tc applies.  The cap is
 * kept in the row (it bites once the VM is bridged) and the VM's
 * last_error says it is not enforced.
 */
static void apply_net_cap(struct local_vm *l, const struct db_vm *row, int64_t bps,
                          struct res_req *b)
{
    if (strcmp(row->nic_mode, "bridge") != 0) {
        if (bps > 0)
            res_note(b, "network cap",
                     strcmp(row->nic_mode, "none") == 0
                         ? "the VM has no NIC"
                         : "QEMU's user networking has no rate limiter; only a bridged NIC "
                           "can be capped");
        return;
    }
    if (bps == l->net_bps_on_tap)
        return;
    char tap[HV_IFNAMSIZ], ifb[HV_IFNAMSIZ];
    struct atr_error err = {0};
    int r = hv_net_names(row->id, tap, ifb);
    if (r == 0)
        r = hv_net_cap_apply(tap, ifb, bps, &err);
    if (r < 0) {
        l->net_bps_on_tap = -1; /* unknown: try again with the next change */
        res_note(b, "network cap", err.msg[0] ? err.msg : strerror(-r));
        return;
    }
    l->net_bps_on_tap = bps;
    log_info("network cap set", "vm", LOG_INT(row->id), "tap", tap, "bytes_per_s", LOG_INT(bps));
}

/*
 * Live resources, no restart: CPU weight and cap and the memory cap through
 * the VM's cgroup, the balloon target and disk limits through QMP, the
 * priority boost folded in by hv_resources_effective.  The generation is
 * recorded as applied once QEMU answered.
 */
static void apply_resources(struct hostd *h, struct local_vm *l, const struct db_vm *row,
                            bool neighbour_boosted)
{
    bool due = l->resources_due;
    if (!due && (row->resources_gen == row->applied_gen || row->resources_gen <= 0 ||
                 l->applying_gen == row->resources_gen))
        return;
    struct hv_qmp *q = hv_vm_qmp(l->vm);
    struct res_req *b = calloc(1, sizeof(*b));
    if (!q || !b) {
        free(b);
        return;
    }
    l->resources_due = false;
    *b = (struct res_req){.h = h, .id = row->id, .gen = row->resources_gen};
    struct hv_resources want = {.cpu_weight = row->cpu_weight,
                                .cpu_max_pct = row->cpu_max_pct,
                                .memory_max_mb = row->memory_max_mb,
                                .disk_iops = row->disk_iops,
                                .disk_bps = row->disk_bps,
                                .net_bps = row->net_bps},
                        eff;
    hv_resources_effective(&want, row->boosted, neighbour_boosted, &eff);
    struct atr_error err = {0};
    /* (Re)attaching is idempotent and covers a QEMU adopted from a hostd
     * that ran it without a cgroup. */
    int r =
        h->cg.mode == HV_CGROUP_NONE ? 0 : hv_cgroup_vm_attach(&h->cg, row->id, hv_vm_pid(l->vm));
    if (r < 0)
        res_note(b, "CPU/memory limits", "cannot move QEMU into its cgroup");
    else if (h->cg.mode != HV_CGROUP_NONE && hv_cgroup_vm_apply(&h->cg, row->id, &eff, &err) < 0)
        res_note(b, "CPU/memory limits", err.msg);
    apply_net_cap(l, row, eff.net_bps, b);
    int64_t mb = row->balloon_mb > 0 ? row->balloon_mb : row->memory_mb;
    l->applying_gen = row->resources_gen;
    b->pending = 1; /* held until every command is queued */
    b->pending++;
    if (hv_qmp_send(q, "balloon", json_pack("{s:I}", "value", (json_int_t)(mb * 1024 * 1024)),
                    10000, on_resource_reply, b, NULL) < 0)
        b->pending--;
    if (row->disk_path[0]) {
        b->pending++;
        if (hv_qmp_send(q, "block_set_io_throttle", hv_resources_throttle_args(&eff), 10000,
                        on_resource_reply, b, NULL) < 0)
            b->pending--;
    }
    log_debug("applying resources", "vm", LOG_INT(row->id), "generation",
              LOG_INT(row->resources_gen), "cpu_weight", LOG_INT(eff.cpu_weight), "boosted",
              row->boosted ? "yes" : "no");
    if (--b->pending == 0)
        res_finish(b);
}

static void request_stop(struct hostd *h, struct local_vm *l)
{
    if (l->stop_requested)
        return;
    l->stop_requested = true;
    l->stop_deadline_ms = atr_now_mono_ms() + (int64_t)h->stop_timeout_s * 1000;
    /* A paused guest cannot see the power button. */
    if (hv_vm_power(l->vm) == HV_VM_PAUSED)
        hv_vm_resume(l->vm);
    if (hv_vm_powerdown(l->vm) < 0)
        l->stop_deadline_ms = atr_now_mono_ms(); /* no QMP: straight to the kill */
    log_info("vm stopping", "vm", LOG_INT(l->id), "name", l->name, "grace_s",
             LOG_INT(h->stop_timeout_s));
}

/*
 * A row poold marked lost while this host was silent (a cut link, a hostd
 * restarted, a heartbeat late under load) but did not fence: the VM is
 * still ours and goes back to the state it was lost in, so its pool does
 * not rebuild it.  One that is not running and should be is simply started
 * (start_vm reports booting); one still starting reports itself.
 */
static void found_vm(struct hostd *h, const struct local_vm *l, const struct db_vm *row)
{
    bool on =
        strcmp(row->desired_power, "running") == 0 || strcmp(row->desired_power, "paused") == 0;
    enum hv_vm_power p = l ? hv_vm_power(l->vm) : HV_VM_EXITED;
    bool running = l && !l->reap && (p == HV_VM_RUNNING || p == HV_VM_PAUSED);
    if (!running && (l || on))
        return;
    int r = db_vm_found(h->db, row->id, running);
    if (r == 0)
        log_info("vm found again: its host was silent but not fenced", "vm", LOG_INT(row->id),
                 "name", row->name, "running", running ? "yes" : "no");
    else if (r != -ENOENT)
        log_error("cannot record a lost VM as found", "vm", LOG_INT(row->id), "errno", LOG_INT(-r));
}

/* Make one VM row and its local process agree. */
static void reconcile_vm(struct hostd *h, const struct db_vm *row, bool neighbour_boosted)
{
    struct local_vm *l = find_vm(h, row->id);
    const char *want = row->desired_power;
    if (strcmp(row->state, "lost") == 0 && strcmp(want, "deleted") != 0)
        found_vm(h, l, row);
    if (strcmp(want, "deleted") == 0) {
        if (l && !l->deleting) {
            l->deleting = true;
            l->stop_requested = true;
            hv_vm_kill(l->vm);
            log_info("vm deleting", "vm", LOG_INT(row->id), "name", row->name);
        } else if (!l) {
            finish_delete(h, row->id, row->name, row->disk_path);
        }
        return;
    }
    if (!l) {
        bool on = strcmp(want, "running") == 0 || strcmp(want, "paused") == 0;
        /* A failed VM stays down until someone asks again (which clears
         * the failure): no crash loops. */
        if (on && strcmp(row->state, "failed") != 0) {
            start_vm(h, row, NULL);
        } else if (strcmp(row->actual_power, "off") != 0 &&
                   strcmp(row->actual_power, "crashed") != 0) {
            struct db_vm_report rep = {.actual_power = "off", .qemu_pid = 0};
            if (strcmp(row->state, "failed") != 0)
                rep.state = "stopped";
            report(h, row->id, &rep);
        }
        return;
    }
    if (l->mig_in) {
        mig_adopt(h, l, row);
        return;
    }
    /* A snapshot job stops and resumes the guest itself: hands off; so
     * does a migration (a completed one leaves QEMU paused for good). */
    if (l->stop_requested || l->deleting || l->snap || l->mig || l->moved_away)
        return;
    enum hv_vm_power p = hv_vm_power(l->vm);
    if (strcmp(want, "running") != 0)
        l->io_stopped = false; /* paused or stopped by hand: the next resume retries */
    if (strcmp(want, "stopped") == 0)
        request_stop(h, l);
    else if (strcmp(want, "paused") == 0 && p == HV_VM_RUNNING)
        hv_vm_pause(l->vm);
    else if (strcmp(want, "running") == 0 && p == HV_VM_PAUSED && !l->io_stopped &&
             !rep_ending(l))
        hv_vm_resume(l->vm);
    if (p == HV_VM_RUNNING || p == HV_VM_PAUSED)
        apply_resources(h, l, row, neighbour_boosted);
}

static void reconcile(struct hostd *h)
{
    struct db_vm *rows = NULL;
    size_t n = 0;
    int r = db_vm_list(h->db, h->host_id, &rows, &n);
    if (r < 0) {
        log_error("cannot list this host's VMs", "errno", LOG_INT(-r));
        return;
    }
    h->dirty = false;
    int64_t boosted = 0;
    for (size_t i = 0; i < n; i++)
        if (rows[i].boosted)
            boosted = rows[i].id;
    for (size_t i = 0; i < n; i++)
        reconcile_vm(h, &rows[i], boosted && boosted != rows[i].id);
    /* A VM whose row vanished or moved to another host: its QEMU must go. */
    for (struct local_vm *l = h->vms; l; l = l->next) {
        bool listed = false;
        for (size_t i = 0; i < n && !listed; i++)
            listed = rows[i].id == l->id;
        if (!listed && !l->reap && !l->deleting && !l->mig_in && !l->moved_away) {
            log_warn("vm no longer belongs to this host; killing its QEMU", "vm", LOG_INT(l->id),
                     "name", l->name);
            l->deleting = true;
            hv_vm_kill(l->vm);
        }
    }
    instant_gc(h, rows, n);
    free(rows);
}

/*
 * The refresh of a floating VM after logoff: its overlay goes back to a
 * pristine clone of the golden image (QEMU must be gone), then the reconcile
 * loop boots it again and its first RUNNING makes it `ready`.
 */
static void finish_refresh(struct hostd *h, int64_t task, int64_t id, const char *disk)
{
    struct atr_error err = {0};
    int r = disk[0] ? hv_storage_reset(NULL, disk, &err) : 0;
    if (r == -ENOENT)
        r = 0; /* never started: ensure_disk makes a fresh clone at start */
    if (r < 0)
        log_error("vm refresh failed", "vm", LOG_INT(id), "error", err.msg);
    else
        log_info("vm refreshed to its golden image", "vm", LOG_INT(id));
    /* A fresh overlay holds no snapshots: their rows go too. */
    if (r == 0 && db_snapshot_forget_vm(h->db, id) < 0)
        log_warn("cannot forget the snapshots of a refreshed VM", "vm", LOG_INT(id));
    finish_task(h, task, r < 0 ? err.msg : NULL);
    h->dirty = true;
}

/* Drop entries whose process is gone; finish deletions. */
static void reap(struct hostd *h)
{
    struct local_vm **pp = &h->vms;
    while (*pp) {
        struct local_vm *l = *pp;
        if (!l->reap) {
            pp = &l->next;
            continue;
        }
        *pp = l->next;
        snap_abandon(h, l);
        hv_cgroup_vm_remove(&h->cg, l->id); /* a new QEMU gets a fresh one */
        net_remove(l->id);                  /* and a fresh tap */
        hv_cgroup_fini(&h->cg);             /* the slice lives while it holds VMs */
        slice_share(h);
        if (l->deleting)
            finish_delete(h, l->id, l->name, l->disk_path);
        else if (l->refresh_task)
            finish_refresh(h, l->refresh_task, l->id, l->disk_path);
        else if (l->revert_task)
            finish_revert(h, l);
        hv_vm_free(l->vm);
        free(l->rep);
        free(l);
        h->dirty = true; /* the row may want the VM back (restart after stop) */
    }
}

static void enforce_stop_deadlines(struct hostd *h)
{
    int64_t now = atr_now_mono_ms();
    mig_deadlines(h, now);
    rep_deadlines(h, now);
    for (struct local_vm *l = h->vms; l; l = l->next) {
        if (l->stop_deadline_ms && now >= l->stop_deadline_ms && !l->reap) {
            log_warn("guest did not power off in time; killing QEMU", "vm", LOG_INT(l->id), "name",
                     l->name);
            l->stop_deadline_ms = 0;
            l->killed_on_timeout = true;
            hv_vm_kill(l->vm);
        }
    }
}

static void on_balloon(struct hv_qmp *q, const struct hv_qmp_reply *r, void *userdata)
{
    (void)q;
    struct local_vm *l = userdata;
    int64_t mb;
    if (r->error == 0 && hv_metrics_balloon_mb(r->ret, &mb) == 0)
        l->balloon_mb = mb;
}

static void on_blockstats(struct hv_qmp *q, const struct hv_qmp_reply *r, void *userdata)
{
    (void)q;
    struct local_vm *l = userdata;
    if (r->error == 0 && hv_metrics_blockstats(r->ret, &l->io) == 0)
        l->have_io = true;
}

static struct db_metric_sample unmeasured(int64_t host_id, int64_t vm_id)
{
    return (struct db_metric_sample){.host_id = host_id,
                                     .vm_id = vm_id,
                                     .mem_used_mb = -1,
                                     .mem_total_mb = -1,
                                     .balloon_mb = -1,
                                     .disk_rd_bytes = -1,
                                     .disk_wr_bytes = -1,
                                     .disk_rd_ops = -1,
                                     .disk_wr_ops = -1,
                                     .net_rx_bytes = -1,
                                     .net_tx_bytes = -1,
                                     .vm_count = -1};
}

/*
 * One sample of the host and of every VM whose QEMU runs.  CPU is the
 * change since the previous sample; balloon and disk counters are QEMU's
 * answers to the queries sent at the previous sample (asked now, used next
 * time), so sampling never waits on QEMU.  Network counters are not
 * collected yet (user networking has no per-NIC counters in QMP).
 */
static void sample_metrics(struct hostd *h)
{
    int64_t now = atr_now_mono_ms();
    size_t cap = 1, n = 0;
    int running = 0;
    for (struct local_vm *l = h->vms; l; l = l->next)
        cap++;
    struct db_metric_sample *s = calloc(cap, sizeof(*s));
    if (!s)
        return;
    for (struct local_vm *l = h->vms; l; l = l->next) {
        enum hv_vm_power p = hv_vm_power(l->vm);
        if (l->reap || (p != HV_VM_RUNNING && p != HV_VM_PAUSED))
            continue;
        running++;
        struct hv_proc_stat ps;
        if (hv_metrics_proc(hv_vm_pid(l->vm), &ps) < 0)
            continue;
        struct db_metric_sample *m = &s[n++];
        *m = unmeasured(h->host_id, l->id);
        m->mem_used_mb = ps.rss_kb / 1024;
        m->balloon_mb = l->balloon_mb;
        if (l->prev_sample_ms)
            m->cpu_pct =
                hv_metrics_cpu_pct(l->prev_cpu_ticks, ps.cpu_ticks, now - l->prev_sample_ms);
        if (l->have_io) {
            m->disk_rd_bytes = l->io.rd_bytes;
            m->disk_wr_bytes = l->io.wr_bytes;
            m->disk_rd_ops = l->io.rd_ops;
            m->disk_wr_ops = l->io.wr_ops;
        }
        l->prev_cpu_ticks = ps.cpu_ticks;
        l->prev_sample_ms = now;
        struct hv_qmp *q = hv_vm_qmp(l->vm);
        if (q) {
            hv_qmp_send(q, "query-balloon", NULL, 5000, on_balloon, l, NULL);
            hv_qmp_send(q, "query-blockstats", NULL, 5000, on_blockstats, l, NULL);
        }
    }
    struct hv_host_stat hs;
    if (hv_metrics_host(&hs) == 0) {
        struct db_metric_sample *m = &s[n++];
        *m = unmeasured(h->host_id, 0);
        m->mem_used_mb = (hs.mem_total_kb - hs.mem_available_kb) / 1024;
        m->mem_total_mb = hs.mem_total_kb / 1024;
        m->vm_count = running;
        if (h->have_prev_host && hs.total_ticks > h->prev_host.total_ticks)
            m->cpu_pct = 100.0 * (double)(hs.busy_ticks - h->prev_host.busy_ticks) /
                         (double)(hs.total_ticks - h->prev_host.total_ticks);
        h->prev_host = hs;
        h->have_prev_host = true;
    }
    int r = db_host_metrics_insert(h->db, s, n);
    if (r < 0)
        log_warn("cannot store metrics", "errno", LOG_INT(-r));
    free(s);
    if (now >= h->next_prune_ms) {
        r = db_host_metrics_prune(h->db, h->host_id, h->cfg->hostd.metrics_retention_h);
        if (r > 0)
            log_debug("old metrics pruned", "rows", LOG_INT(r));
        h->next_prune_ms = now + 60000;
    }
}

/* ------------------------------------------------------------ snapshots */

static const char *const snap_kinds[] = {"vm.snapshot.create", "vm.snapshot.revert",
                                         "vm.snapshot.delete", "vm.snapshot.clone"};

static void task_done(struct hostd *h, int64_t task, const char *error, const char *kind,
                      int64_t vm)
{
    log_info("task done", "task", LOG_INT(task), "kind", kind, "vm", LOG_INT(vm), "error",
             error ? error : "");
    finish_task(h, task, error);
}

/* Size of the overlay after a snapshot: what the snapshot (and the VM) cost on disk. */
static int64_t disk_usage(const char *disk)
{
    int64_t bytes = 0;
    return disk[0] && hv_storage_usage(disk, &bytes) == 0 ? bytes : -1;
}

static void snap_progress(struct hv_snap_job *j, const char *status, int pct, void *userdata)
{
    (void)j;
    struct snap_op *o = userdata;
    char msg[64];
    snprintf(msg, sizeof(msg), "QEMU job %s", status);
    db_task_progress(o->h->db, o->task, pct, msg);
}

static void snap_done(struct hv_snap_job *j, int error, const char *msg, void *userdata)
{
    (void)j;
    struct snap_op *o = userdata;
    struct hostd *h = o->h;
    struct local_vm *l = find_vm(h, o->vm_id);
    char why[1200];
    snprintf(why, sizeof(why), "QEMU: %s", msg);
    switch (o->op) {
    case HV_SNAP_SAVE:
        db_snapshot_report(h->db, o->snap_id, error ? "failed" : "ready", error ? why : "",
                           o->vm_power, error || !l ? -1 : disk_usage(l->disk_path));
        break;
    case HV_SNAP_LOAD:
        break;
    case HV_SNAP_DELETE:
        if (!error)
            db_snapshot_delete(h->db, o->snap_id);
        else
            db_snapshot_report(h->db, o->snap_id, "failed", why, NULL, -1);
        break;
    }
    task_done(h, o->task, error ? why : NULL,
              snap_kinds[o->op == HV_SNAP_SAVE   ? 0
                         : o->op == HV_SNAP_LOAD ? 1
                                                 : 2],
              o->vm_id);
    if (l && l->snap == o)
        l->snap = NULL;
    hv_snapshot_job_free(o->job);
    free(o);
    h->dirty = true; /* wishes that came during the job */
}

static const struct hv_snap_job_ops snap_job_ops = {.progress = snap_progress, .done = snap_done};

static void vm_event(struct hv_vm *vm, enum hv_qmp_event ev, json_t *data, void *userdata)
{
    struct hostd *h = userdata;
    struct local_vm *l = find_vm(h, hv_vm_id(vm));
    if (l && l->snap && ev == HV_QMP_EVENT_JOB_STATUS_CHANGE)
        hv_snapshot_job_event(l->snap->job, data);
    if (l && l->mig)
        mig_event(h, l, ev, data);
    if (l && l->mig_in && ev == HV_QMP_EVENT_SPICE_INITIALIZED)
        mig_in_spice_channel(h, l);
    if (l)
        rep_event(h, l, ev, data);
    if (l && ev == HV_QMP_EVENT_BLOCK_IO_ERROR && !l->io_stopped && !rep_io_error(h, l)) {
        /* The guest stays paused until someone pauses or stops it and asks
         * again: resuming at once would fail the same write in a loop. */
        const char *why = json_string_value(json_object_get(data, "reason"));
        char msg[300];
        snprintf(msg, sizeof(msg), "paused: a disk write failed (%s)", why ? why : "I/O error");
        l->io_stopped = true;
        log_warn("vm paused on a disk write error", "vm", LOG_INT(l->id), "error", msg);
        struct db_vm_report rep = {.qemu_pid = -1, .last_error = msg};
        report(h, l->id, &rep);
    }
}

/* QEMU died during a snapshot job: the task fails, the job object goes. */
static void snap_abandon(struct hostd *h, struct local_vm *l)
{
    struct snap_op *o = l->snap;
    if (!o)
        return;
    l->snap = NULL;
    const char *why = "QEMU exited during the snapshot operation";
    if (o->op == HV_SNAP_SAVE)
        db_snapshot_report(h->db, o->snap_id, "failed", why, NULL, -1);
    task_done(h, o->task, why, "vm.snapshot", o->vm_id);
    hv_snapshot_job_free(o->job);
    free(o);
}

static int start_job(struct hostd *h, struct local_vm *l, const struct db_task *t,
                     const struct db_snapshot *snap, enum hv_snap_op op, struct atr_error *err)
{
    struct snap_op *o = calloc(1, sizeof(*o));
    if (!o)
        return atr_error_set(err, -ENOMEM, "out of memory");
    *o = (struct snap_op){.h = h, .vm_id = l->id, .task = t->id, .snap_id = snap->id, .op = op};
    snprintf(o->tag, sizeof(o->tag), "%s", snap->name);
    snprintf(o->vm_power, sizeof(o->vm_power), "%s",
             hv_vm_power(l->vm) == HV_VM_PAUSED ? "paused" : "running");
    char job_id[64];
    snprintf(job_id, sizeof(job_id), "atrium-task-%lld", (long long)t->id);
    int r = hv_snapshot_job_start(hv_vm_qmp(l->vm), op, job_id, snap->name, HV_DISK_NODE,
                                  &snap_job_ops, o, &o->job);
    if (r < 0) {
        free(o);
        return atr_error_set(err, r, "cannot start the QEMU job: %s", strerror(-r));
    }
    l->snap = o;
    db_task_progress(h->db, t->id, 5, "QEMU job started");
    log_info("snapshot job started", "vm", LOG_INT(l->id), "task", LOG_INT(t->id), "kind", t->kind,
             "snapshot", snap->name);
    return 0;
}

/* Disk-only revert of a running VM, second half: QEMU is gone; roll the overlay back. */
static void finish_revert(struct hostd *h, struct local_vm *l)
{
    struct atr_error err = {0};
    int r = hv_snapshot_offline(NULL, l->disk_path, HV_SNAP_LOAD, l->revert_tag, &err);
    if (r == 0)
        log_info("vm reverted to a disk snapshot", "vm", LOG_INT(l->id), "snapshot", l->revert_tag);
    struct db_vm_report rep = {.state = "booting", .actual_power = "off", .qemu_pid = 0};
    report(h, l->id, &rep);
    task_done(h, l->revert_task, r < 0 ? err.msg : NULL, "vm.snapshot.revert", l->id);
}

static int snapshot_create(struct hostd *h, struct local_vm *l, bool up, const struct db_task *t,
                           const struct db_vm *row, const struct db_snapshot *snap,
                           struct atr_error *err)
{
    if (up && snap->with_ram)
        return start_job(h, l, t, snap, HV_SNAP_SAVE, err);
    if (!up && snap->with_ram)
        return atr_error_set(err, -ENOTCONN,
                             "a snapshot with RAM needs the VM running; take a disk-only one");
    int r;
    const char *power = "off";
    if (up) {
        /* Disk only: an internal snapshot of the overlay, taken at once
         * while the guest runs (crash-consistent, like pulling the plug). */
        power = hv_vm_power(l->vm) == HV_VM_PAUSED ? "paused" : "running";
        r = hv_qmp_call(hv_vm_qmp(l->vm), "blockdev-snapshot-internal-sync",
                        json_pack("{s:s, s:s}", "device", HV_DISK_NODE, "name", snap->name), 30000,
                        NULL, err);
    } else {
        r = hv_snapshot_offline(NULL, row->disk_path, HV_SNAP_SAVE, snap->name, err);
    }
    if (r == 0)
        db_snapshot_report(h->db, snap->id, "ready", "", power, disk_usage(row->disk_path));
    return r;
}

static int snapshot_revert(struct hostd *h, struct local_vm *l, bool up, const struct db_task *t,
                           const struct db_vm *row, const struct db_snapshot *snap,
                           struct atr_error *err, bool *ret_pending)
{
    if (snap->with_ram && up)
        return start_job(h, l, t, snap, HV_SNAP_LOAD, err);
    if (!snap->with_ram && l) {
        /* The disk goes back under a running guest only through a restart:
         * QEMU goes (no shutdown: the state is being thrown away), the
         * overlay is rolled back when it is gone, and the reconcile loop
         * boots the VM again. */
        l->revert_task = t->id;
        snprintf(l->revert_tag, sizeof(l->revert_tag), "%s", snap->name);
        l->stop_requested = true;
        hv_vm_kill(l->vm);
        db_task_progress(h->db, t->id, 20, "stopping the VM");
        *ret_pending = true;
        return 0;
    }
    int r = hv_snapshot_offline(NULL, row->disk_path, HV_SNAP_LOAD, snap->name, err);
    if (r < 0 || !snap->with_ram)
        return r;
    /* A RAM snapshot of a VM that is off: QEMU starts from it (-loadvm),
     * running or paused as the VM was when the snapshot was taken. */
    const char *want = strcmp(snap->vm_power, "paused") == 0 ? "paused" : "running";
    r = db_vm_set_desired(h->db, row->id, want);
    if (r < 0)
        return atr_error_set(err, r, "cannot record the VM's new power state");
    struct db_vm again;
    r = db_vm_get(h->db, row->id, &again);
    if (r < 0)
        return atr_error_set(err, r, "cannot read the VM");
    start_vm(h, &again, snap->name);
    if (!find_vm(h, row->id))
        return atr_error_set(err, -EIO, "QEMU did not start from the snapshot");
    return 0;
}

/* Queue the copy of snapshot @snap's disk for the new VM of task @t (done by a child). */
static int snapshot_clone(struct hostd *h, const struct db_task *t, const struct db_vm *row,
                          const struct db_snapshot *snap, struct atr_error *err, bool *ret_pending)
{
    int64_t target = json_integer_value(json_object_get(t->params, "target_vm_id"));
    struct db_vm dst;
    int r = target > 0 ? db_vm_get(h->db, target, &dst) : -ENOENT;
    if (r < 0)
        return atr_error_set(err, r, "the new VM (id %lld) does not exist", (long long)target);
    if (!dst.disk_path[0])
        return atr_error_set(err, -EINVAL, "the new VM %s has no disk path", dst.name);
    struct bg_op *op = calloc(1, sizeof(*op));
    int pfd[2];
    if (!op || pipe2(pfd, O_CLOEXEC) < 0) {
        free(op);
        return atr_error_set(err, -ENOMEM, "cannot prepare the copy");
    }
    pid_t pid = fork();
    if (pid < 0) {
        r = -errno;
        close(pfd[0]);
        close(pfd[1]);
        free(op);
        return atr_error_set(err, r, "cannot fork: %s", strerror(-r));
    }
    if (pid == 0) {
        /* The child only runs qemu-img: no database, no QMP, no exit handlers. */
        close(pfd[0]);
        struct atr_error e = {0};
        int rc = hv_snapshot_clone(NULL, row->disk_path, snap->name, dst.disk_path, &e);
        if (rc < 0) {
            ssize_t w = write(pfd[1], e.msg, strlen(e.msg));
            (void)w;
        }
        _exit(rc < 0 ? 1 : 0);
    }
    close(pfd[1]);
    *op = (struct bg_op){.next = h->bg,
                         .pid = pid,
                         .fd = pfd[0],
                         .task = t->id,
                         .vm_id = row->id,
                         .target_vm = dst.id};
    snprintf(op->target_name, sizeof(op->target_name), "%s", dst.name);
    h->bg = op;
    db_task_progress(h->db, t->id, 10, "copying the snapshot's disk");
    *ret_pending = true;
    return 0;
}

/* A disk copy's pipe is readable: collect its words; at EOF finish its task. */
static void bg_dispatch(struct hostd *h, struct bg_op *op)
{
    char buf[512];
    ssize_t n = read(op->fd, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n > 0) {
        size_t room = sizeof(op->msg) - 1 - op->len;
        size_t take = (size_t)n < room ? (size_t)n : room;
        memcpy(op->msg + op->len, buf, take);
        op->len += take;
        op->msg[op->len] = '\0';
        return;
    }
    int status = 0;
    while (waitpid(op->pid, &status, 0) < 0 && errno == EINTR) {
    }
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    const char *error = ok ? NULL : op->msg[0] ? op->msg : "the disk copy failed";
    if (ok) {
        log_info("vm cloned from a snapshot", "vm", LOG_INT(op->target_vm), "name", op->target_name,
                 "source", LOG_INT(op->vm_id));
        int r = db_vm_set_desired(h->db, op->target_vm, "running");
        if (r < 0)
            error = "the disk is made but the new VM could not be started";
    }
    task_done(h, op->task, error, "vm.snapshot.clone", op->vm_id);
    close(op->fd);
    for (struct bg_op **pp = &h->bg; *pp; pp = &(*pp)->next) {
        if (*pp == op) {
            *pp = op->next;
            break;
        }
    }
    free(op);
}

static void run_snapshot_task(struct hostd *h, struct db_task *t)
{
    struct local_vm *l = find_vm(h, t->vm_id);
    struct atr_error err = {0};
    struct db_vm row;
    struct db_snapshot snap;
    bool pending = false;
    int r;
    bool create = strcmp(t->kind, "vm.snapshot.create") == 0;
    if (db_vm_get(h->db, t->vm_id, &row) < 0) {
        atr_error_set(&err, -ENOENT, "the VM no longer exists");
        goto out;
    }
    r = create
            ? db_snapshot_get_by_name(
                  h->db, row.id, json_string_value(json_object_get(t->params, "name")) ?: "", &snap)
            : db_snapshot_get(h->db, json_integer_value(json_object_get(t->params, "snapshot_id")),
                              &snap);
    if (r < 0) {
        atr_error_set(&err, -ENOENT, "the snapshot no longer exists");
        goto out;
    }
    if (!row.disk_path[0]) {
        atr_error_set(&err, -EINVAL, "VM %s has no disk to snapshot", row.name);
        goto fail_snap;
    }
    enum hv_vm_power p = l ? hv_vm_power(l->vm) : HV_VM_EXITED;
    bool up = l && !l->stop_requested && !l->deleting && hv_vm_qmp(l->vm) &&
              (p == HV_VM_RUNNING || p == HV_VM_PAUSED);
    if (l && (l->snap || l->revert_task)) {
        atr_error_set(&err, -EBUSY, "another snapshot operation of VM %s is under way", row.name);
        goto fail_snap;
    }
    if (l && !up && !l->deleting) {
        atr_error_set(&err, -EAGAIN, "VM %s is starting or stopping; try again", row.name);
        goto fail_snap;
    }
    if (l && l->deleting) {
        atr_error_set(&err, -ENOENT, "VM %s is being deleted", row.name);
        goto fail_snap;
    }
    bool delete = strcmp(t->kind, "vm.snapshot.delete") == 0;
    if (t->attempts > 1 && (create || delete)) {
        /* Requeued after a hostd died mid-way: the work may be done already
         * (QEMU writes a snapshot's entry last, so one that is listed is whole). */
        bool found = false;
        if (hv_snapshot_exists(NULL, row.disk_path, snap.name, &found, &err) < 0)
            goto fail_snap;
        if (found == create) {
            log_info("snapshot task was done before a restart", "task", LOG_INT(t->id), "kind",
                     t->kind);
            if (create)
                db_snapshot_report(h->db, snap.id, "ready", "", NULL, disk_usage(row.disk_path));
            else
                db_snapshot_delete(h->db, snap.id);
            goto out;
        }
    }
    if (create) {
        r = snapshot_create(h, l, up, t, &row, &snap, &err);
        pending = r == 0 && l && l->snap;
    } else if (strcmp(t->kind, "vm.snapshot.revert") == 0) {
        r = snapshot_revert(h, l, up, t, &row, &snap, &err, &pending);
        pending = pending || (r == 0 && l && l->snap);
    } else if (delete) {
        if (up) {
            r = start_job(h, l, t, &snap, HV_SNAP_DELETE, &err);
            pending = r == 0;
        } else {
            r = hv_snapshot_offline(NULL, row.disk_path, HV_SNAP_DELETE, snap.name, &err);
            /* A snapshot that failed while being made may not be in the file. */
            if (r == 0 || strcmp(snap.state, "failed") == 0) {
                r = 0;
                err = (struct atr_error){0};
                db_snapshot_delete(h->db, snap.id);
            }
        }
    } else {
        r = snapshot_clone(h, t, &row, &snap, &err, &pending);
    }
    if (r < 0 && !err.code)
        atr_error_set(&err, r, "%s", strerror(-r));
fail_snap:
    if (err.code && create)
        db_snapshot_report(h->db, snap.id, "failed", err.msg, NULL, -1);
    else if (err.code && delete)
        db_snapshot_report(h->db, snap.id, "failed", err.msg, NULL, -1);
out:
    if (!pending)
        task_done(h, t->id, err.code ? err.msg : NULL, t->kind, t->vm_id);
}

#include "hostd-migrate.inc"
#include "hostd-fence.inc"
#include "hostd-replicate.inc"

static void run_tasks(struct hostd *h)
{
    static const char *const kinds[] = {"vm.reset",
                                        "vm.refresh",
                                        "vm.snapshot.create",
                                        "vm.snapshot.revert",
                                        "vm.snapshot.delete",
                                        "vm.snapshot.clone",
                                        "vm.migrate",
                                        "vm.migrate_in",
                                        "vm.replicate",
                                        "vm.replicate_in",
                                        "vm.recover",
                                        NULL};
    h->tasks_dirty = false;
    mig_check(h); /* a migration's other half may have moved */
    rep_check(h); /* so may a replication sync's */
    for (;;) {
        struct db_task *t = NULL;
        int r = db_task_claim(h->db, h->host_id, kinds, h->claimer, &t);
        if (r <= 0) {
            if (r < 0)
                log_error("cannot claim tasks", "errno", LOG_INT(-r));
            return;
        }
        if (strncmp(t->kind, "vm.snapshot.", 12) == 0) {
            run_snapshot_task(h, t);
            db_task_free(t);
            continue;
        }
        if (strncmp(t->kind, "vm.migrate", 10) == 0) {
            run_migrate_task(h, t);
            db_task_free(t);
            continue;
        }
        if (strncmp(t->kind, "vm.replicate", 12) == 0 || strcmp(t->kind, "vm.recover") == 0) {
            run_replication_task(h, t);
            db_task_free(t);
            continue;
        }
        struct local_vm *l = find_vm(h, t->vm_id);
        struct atr_error err = {0};
        if (strcmp(t->kind, "vm.refresh") == 0) {
            struct db_vm row;
            bool have_row = db_vm_get(h->db, t->vm_id, &row) == 0;
            if (l && (l->deleting || l->refresh_task)) {
                finish_task(h, t->id, l->deleting ? "the VM is being deleted" : NULL);
            } else if (t->attempts > 1 && have_row && strcmp(row.state, "refreshing") != 0) {
                /* Requeued after its hostd died or could not record the
                 * end: a VM leaves 'refreshing' only after its overlay was
                 * reset (it is booting, ready, even someone's again), or as
                 * failed, which is never served again; running it twice
                 * could throw away a live desktop. */
                log_info("refresh was done before a restart", "task", LOG_INT(t->id), "vm",
                         LOG_INT(t->vm_id), "state", row.state);
                finish_task(h, t->id, NULL);
            } else if (l) {
                /* The person logged off: nothing in this VM is worth a clean
                 * shutdown.  The task is finished once QEMU is gone (reap). */
                l->refresh_task = t->id;
                l->stop_requested = true;
                if (hv_vm_power(l->vm) != HV_VM_EXITED)
                    hv_vm_kill(l->vm);
                db_task_progress(h->db, t->id, 20, "stopping the VM");
                log_info("vm refreshing", "vm", LOG_INT(t->vm_id), "task", LOG_INT(t->id));
            } else if (have_row) {
                finish_refresh(h, t->id, t->vm_id, row.disk_path);
            } else {
                finish_task(h, t->id, "the VM no longer exists");
            }
            db_task_free(t);
            continue;
        }
        if (!l || l->stop_requested || hv_vm_power(l->vm) == HV_VM_EXITED)
            atr_error_set(&err, -ENOTCONN, "VM %lld is not running on this host",
                          (long long)t->vm_id);
        else
            hv_vm_reset(l->vm, RESET_TIMEOUT_MS, &err);
        log_info("task done", "task", LOG_INT(t->id), "kind", t->kind, "vm", LOG_INT(t->vm_id),
                 "error", err.code ? err.msg : "");
        finish_task(h, t->id, err.code ? err.msg : NULL);
        db_task_free(t);
    }
}

/* How long a VM the previous hostd was starting may take to be attachable. */
#define ADOPT_STARTING_MS 15000

/* Adopt every QEMU of this host that outlived the previous hostd.  Returns how many. */
static int adopt(struct hostd *h)
{
    struct db_vm *rows = NULL;
    size_t n = 0;
    int adopted = 0;
    int r = db_vm_list(h->db, h->host_id, &rows, &n);
    if (r < 0) {
        log_error("cannot list this host's VMs", "errno", LOG_INT(-r));
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        const struct db_vm *row = &rows[i];
        struct hv_vm *vm = NULL;
        struct atr_error err = {0};
        r = hv_vm_attach(row->id, h->cfg->paths.runtime_dir, &vm_ops, h, &vm, &err);
        /* A QEMU the previous hostd had only just spawned may not have
         * written its pid file or opened QMP yet (seconds on a loaded
         * machine): given up on too soon, it would be marked failed and
         * then killed as a stray. */
        for (int64_t until = atr_now_mono_ms() + ADOPT_STARTING_MS;
             r < 0 && strcmp(row->actual_power, "starting") == 0 && atr_now_mono_ms() < until;) {
            poll(NULL, 0, 250);
            err = (struct atr_error){0};
            r = hv_vm_attach(row->id, h->cfg->paths.runtime_dir, &vm_ops, h, &vm, &err);
        }
        if (r == 0) {
            /* A QEMU started by the previous hostd before its RUNNING event
             * was seen: the row still says booting, so it becomes ready the
             * way a fresh one does, once QMP's query-status says running. */
            bool starting =
                strcmp(row->state, "booting") == 0 || strcmp(row->state, "provisioning") == 0;
            add_local(h, row, vm, starting);
            log_info("vm re-attached", "vm", LOG_INT(row->id), "name", row->name, "pid",
                     LOG_INT(hv_vm_pid(vm)), "state", row->state);
            struct db_vm_report rep = {.qemu_pid = hv_vm_pid(vm)};
            report(h, row->id, &rep);
            adopted++;
            continue;
        }
        bool was_up = strcmp(row->actual_power, "starting") == 0 ||
                      strcmp(row->actual_power, "running") == 0 ||
                      strcmp(row->actual_power, "paused") == 0;
        if (!was_up)
            continue;
        char msg[1024];
        snprintf(msg, sizeof(msg), "QEMU was gone when hostd restarted: %s", err.msg);
        log_warn("vm lost while hostd was down", "vm", LOG_INT(row->id), "name", row->name, "error",
                 err.msg);
        struct db_vm_report rep = {
            .state = "failed", .actual_power = "crashed", .qemu_pid = 0, .last_error = msg};
        report(h, row->id, &rep);
    }
    free(rows);
    return adopted;
}

static int register_host(struct hostd *h)
{
    char hostname[64] = "";
    gethostname(hostname, sizeof(hostname) - 1);
    snprintf(h->host_name, sizeof(h->host_name), "%s",
             h->cfg->hostd.name[0] ? h->cfg->hostd.name : hostname);
    struct sysinfo si;
    int64_t mem_mb = sysinfo(&si) == 0 ? (int64_t)si.totalram * si.mem_unit / (1024 * 1024) : 0;
    struct db_host_reg reg = {
        .name = h->host_name,
        .address = h->cfg->hostd.address[0] ? h->cfg->hostd.address : hostname,
        .cpus = (int)sysconf(_SC_NPROCESSORS_ONLN),
        .memory_mb = mem_mb,
        .accel = hv_accel_name(h->accel.accel),
        .accel_note = h->accel.note,
        .version = ATRIUM_VERSION,
    };
    int r = db_host_register(h->db, &reg, &h->host_id);
    if (r < 0)
        return r;
    /* Unique per run (a pid can come back after a restart): tasks claimed
     * under any other name on this host belong to a hostd that is gone. */
    snprintf(h->claimer, sizeof(h->claimer), "hostd:%s:%d:%lld", h->host_name, (int)getpid(),
             (long long)(atr_now_real_us() / 1000000));
    log_info("host registered", "host", h->host_name, "id", LOG_INT(h->host_id), "cpus",
             LOG_INT(reg.cpus), "memory_mb", LOG_INT(mem_mb), "accel", reg.accel);
    return 0;
}

static void on_notification(struct hostd *h, const char *channel, const char *payload)
{
    const char *colon = strchr(payload, ':');
    long long host = colon && colon[1] ? strtoll(colon + 1, NULL, 10) : 0;
    if (host != h->host_id)
        return;
    if (strcmp(channel, DB_CHANNEL_VM) == 0)
        h->dirty = true;
    else if (strcmp(channel, DB_CHANNEL_TASK) == 0)
        h->tasks_dirty = true;
}

static void drain_notifications(struct hostd *h)
{
    char *channel, *payload;
    int r;
    while ((r = db_notify_next(h->db, &channel, &payload)) == 1) {
        on_notification(h, channel, payload);
        free(channel);
        free(payload);
    }
    if (r < 0) {
        log_warn("database connection lost; retrying");
        h->db_retry_ms = atr_now_mono_ms();
    }
}

static void db_retry(struct hostd *h)
{
    if (db_ensure(h->db) < 0) {
        h->db_retry_ms = atr_now_mono_ms() + DB_RETRY_MS;
        return;
    }
    log_info("database connection restored");
    h->db_retry_ms = 0;
    h->next_heartbeat_ms = 0; /* heart-beat (and learn of a fence) before reconciling */
    flush_outcomes(h);
    /* A VM that became ready while PostgreSQL was away says so now, or it
     * would stay 'booting' until poold retires it. */
    for (struct local_vm *l = h->vms; l; l = l->next) {
        if (!l->ready_lost || l->reap || hv_vm_power(l->vm) != HV_VM_RUNNING)
            continue;
        struct db_vm_report rep = {
            .state = "ready", .actual_power = "running", .qemu_pid = hv_vm_pid(l->vm)};
        int r = report(h, l->id, &rep);
        l->ready_lost = r < 0 && r != -ENOENT;
        if (!l->ready_lost)
            log_info("vm ready recorded after reconnecting", "vm", LOG_INT(l->id));
    }
    h->dirty = h->tasks_dirty = true; /* notifications may have been missed */
}

static int min_timeout(int a, int b)
{
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    return a < b ? a : b;
}

static void handle_signal(struct hostd *h)
{
    struct signalfd_siginfo si;
    while (read(h->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
            /* VMs keep running: the next hostd adopts them. */
            log_info("stopping; VMs keep running", "signal", LOG_INT(si.ssi_signo));
            h->quit = true;
        }
    }
}

static int run(struct hostd *h)
{
    size_t cap = 0;
    struct pollfd *fds = NULL;
    struct local_vm **owner = NULL;
    int rc = 0;
    while (!h->quit) {
        fence_check(h);
        if (h->db_retry_ms && atr_now_mono_ms() >= h->db_retry_ms)
            db_retry(h);
        if (!h->db_retry_ms) {
            if (atr_now_mono_ms() >= h->next_heartbeat_ms) {
                int r = fence_heartbeat(h);
                if (r == -ENOTCONN)
                    h->db_retry_ms = atr_now_mono_ms();
                else if (r < 0)
                    log_error("heartbeat failed", "errno", LOG_INT(-r));
                /* Tasks under way are alive with us, progress or not:
                 * poold requeues only those whose heartbeat goes stale. */
                if (r == 0 && (r = db_task_heartbeat(h->db, h->claimer)) < 0)
                    log_warn("task heartbeat failed", "errno", LOG_INT(-r));
                flush_outcomes(h);
                if (!h->db_retry_ms) {
                    mig_drain(h); /* maintenance mode */
                    rep_tick(h);  /* replication schedule and progress */
                }
                h->next_heartbeat_ms = atr_now_mono_ms() + h->cfg->hostd.heartbeat_s * 1000;
            }
            if (atr_now_mono_ms() >= h->next_metrics_ms) {
                sample_metrics(h);
                h->next_metrics_ms = atr_now_mono_ms() + h->cfg->hostd.metrics_interval_s * 1000;
            }
            if (h->dirty)
                reconcile(h);
            if (h->tasks_dirty)
                run_tasks(h);
        }
        enforce_stop_deadlines(h);
        /* libpq reads notifications that arrive while a query runs into its
         * own queue; the socket then stays quiet, so look there before
         * sleeping on it. */
        if (!h->db_retry_ms)
            drain_notifications(h);

        size_t nvm = 0;
        for (struct local_vm *l = h->vms; l; l = l->next)
            nvm++;
        for (struct bg_op *op = h->bg; op; op = op->next)
            nvm++; /* one descriptor each; counted with the VMs' two */
        nvm += (size_t)tpl_count(h);
        for (struct rep_in *in = h->rep_ins; in; in = in->next)
            nvm++; /* qemu-nbd's pidfd */
        if (2 + nvm * 2 > cap) {
            cap = 2 + nvm * 2 + 16;
            free(fds);
            free(owner);
            fds = calloc(cap, sizeof(*fds));
            owner = calloc(cap, sizeof(*owner));
            if (!fds || !owner) {
                log_error("out of memory");
                rc = 1;
                break;
            }
        }
        int n = 0;
        fds[n++] = (struct pollfd){.fd = h->sigfd, .events = POLLIN};
        fds[n++] = (struct pollfd){.fd = h->db_retry_ms ? -1 : db_fd(h->db), .events = POLLIN};
        int timeout = h->db_retry_ms ? atr_deadline_left_ms(h->db_retry_ms)
                                     : min_timeout(atr_deadline_left_ms(h->next_heartbeat_ms),
                                                   atr_deadline_left_ms(h->next_metrics_ms));
        timeout = min_timeout(timeout, fence_timeout(h));
        for (struct local_vm *l = h->vms; l; l = l->next) {
            int k = hv_vm_pollfds(l->vm, &fds[n]);
            for (int i = 0; i < k; i++)
                owner[n + i] = l;
            n += k;
            timeout = min_timeout(timeout, hv_vm_timeout_ms(l->vm));
            if (l->stop_deadline_ms)
                timeout = min_timeout(timeout, atr_deadline_left_ms(l->stop_deadline_ms));
            if (l->mig)
                timeout = min_timeout(timeout, atr_deadline_left_ms(l->mig->deadline_ms));
        }
        int first_bg = n;
        for (struct bg_op *op = h->bg; op; op = op->next) {
            owner[n] = NULL;
            fds[n++] = (struct pollfd){.fd = op->fd, .events = POLLIN};
        }
        int first_tpl = n;
        n += tpl_pollfds(h, &fds[n]);
        int first_rep = n;
        for (struct rep_in *in = h->rep_ins; in; in = in->next) {
            owner[n] = NULL;
            fds[n++] = (struct pollfd){.fd = in->nbd.pidfd, .events = POLLIN};
        }
        timeout = min_timeout(timeout, rep_timeout(h));
        if (h->dirty || h->tasks_dirty)
            timeout = 0;
        int got = poll(fds, (nfds_t)n, timeout);
        if (got < 0 && errno != EINTR) {
            log_error("poll failed", "errno", LOG_INT(errno));
            rc = 1;
            break;
        }
        if (got > 0 && fds[0].revents)
            handle_signal(h);
        if (got > 0 && fds[1].revents && !h->db_retry_ms)
            drain_notifications(h);
        /* Every VM gets its turn, with or without events: QMP deadlines. */
        if (got > 0)
            tpl_dispatch_all(h, &fds[first_tpl], first_rep - first_tpl);
        for (int i = first_rep; i < n && got > 0; i++) {
            if (fds[i].revents && !h->db_retry_ms) {
                rep_in_check_all(h); /* a qemu-nbd exited */
                break;
            }
        }
        for (int i = first_bg; i < first_tpl && got > 0; i++) {
            if (!fds[i].revents)
                continue;
            for (struct bg_op *op = h->bg; op; op = op->next) {
                if (op->fd == fds[i].fd) {
                    bg_dispatch(h, op);
                    break;
                }
            }
        }
        for (int i = 2; i < first_bg;) {
            struct local_vm *l = owner[i];
            int j = i;
            while (j < n && owner[j] == l)
                j++;
            hv_vm_dispatch(l->vm, &fds[i], j - i);
            i = j;
        }
        reap(h);
    }
    free(fds);
    free(owner);
    return rc;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: atrium-hostd [--config PATH] [--stop-timeout SECONDS]\n"
            "\n"
            "Run and watch this host's desktop VMs as the Atrium database asks.\n"
            "\n"
            "  -c, --config PATH        configuration file (default: $ATRIUM_CONFIG, else %s)\n"
            "      --stop-timeout S     seconds a guest gets to power off before QEMU is\n"
            "                           killed (default: [hostd] stop_timeout, 60)\n",
            ATR_CONFIG_DEFAULT_PATH);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"stop-timeout", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    struct hostd h = {.sigfd = -1, .stop_timeout_s = -1}; /* -1: from [hostd] stop_timeout */
    const char *config = NULL;
    int c, rc = 1;
    if (atr_version_requested(argc, argv, "atrium-hostd"))
        return 0;
    if (argc == 3 && strcmp(argv[1], "--fence-guard") == 0)
        return fence_guard_main(argv[2]);
    log_init("hostd", LOG_LEVEL_INFO);
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        long long v;
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 's':
            if (atr_parse_ll(optarg, 1, 3600, &v) < 0) {
                fprintf(stderr, "atrium-hostd: --stop-timeout must be 1..3600\n");
                return 2;
            }
            h.stop_timeout_s = (int)v;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    struct atr_error err = {0};
    if (atr_config_load(config, &h.cfg, &err) < 0) {
        log_error("cannot load configuration", "error", err.msg);
        return 3;
    }
    log_set_level(h.cfg->log.level);
    if (h.stop_timeout_s < 0)
        h.stop_timeout_s = h.cfg->hostd.stop_timeout_s;

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    h.sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (h.sigfd < 0) {
        log_error("signalfd failed", "errno", LOG_INT(errno));
        goto out;
    }

    if (db_open(h.cfg->db.url, h.cfg->db.connect_timeout_s, "atrium-hostd", &h.db, &err) < 0) {
        log_error("cannot connect to the database", "error", err.msg);
        rc = 4;
        goto out;
    }
    if (db_schema_check(h.db, &err) < 0) {
        log_error("database schema does not match", "error", err.msg);
        rc = 5;
        goto out;
    }

    int r = hv_accel_probe(h.cfg->hostd.accel, PROBE_TIMEOUT_MS, &h.accel);
    if (r < 0) {
        log_error("accelerator unusable", "wanted", h.cfg->hostd.accel, "reason", h.accel.note);
        goto out;
    }
    /* Said once, here, and kept in hosts.accel_note for `atriumctl host info`. */
    if (h.accel.accel == HV_ACCEL_TCG && strcmp(h.cfg->hostd.accel, "tcg") != 0)
        log_warn("KVM unusable; VMs run under TCG (slow)", "reason", h.accel.note, "probe_ms",
                 LOG_INT(h.accel.took_ms));
    else
        log_info("accelerator chosen", "accel", hv_accel_name(h.accel.accel), "reason",
                 h.accel.note, "probe_ms", LOG_INT(h.accel.took_ms));

    int64_t registered_ms = hv_fence_now_ms();
    if ((r = register_host(&h)) < 0) {
        log_error("cannot register this host", "errno", LOG_INT(-r));
        goto out;
    }
    char slice[96];
    snprintf(slice, sizeof(slice), "atrium-%s.slice", h.host_name);
    /* Under systemd (INVOCATION_ID set) the VMs' slice is a top-level
     * cgroup of its own, outside the unit's: cgroup v2 lets a cgroup hand
     * controllers to children only while it holds no process, and systemd
     * 252 must be able to put a restarted hostd back into its unit's cgroup
     * while VMs run.  Elsewhere (tests, nested setups) it is made under the
     * cgroup hostd runs in. */
    const char *cg_parent = getenv("INVOCATION_ID") ? "/" : "self";
    if (hv_cgroup_init(cg_parent, slice, &h.cg) < 0)
        log_warn("VMs run without CPU and memory limits", "reason", h.cg.note);
    else
        log_info("cgroups for VM limits", "where", h.cg.note);
    /* Leftovers of hostds killed while their VMs ran, then of those VMs. */
    hv_cgroup_sweep(&h.cg);
    instant_sweep(&h);
    /* The fence guard lands in the cgroup hostd ended up in (its leaf). */
    fence_start(&h, registered_ms);
    if ((r = db_listen(h.db, DB_CHANNEL_VM)) < 0 || (r = db_listen(h.db, DB_CHANNEL_TASK)) < 0) {
        log_error("cannot LISTEN", "errno", LOG_INT(-r));
        goto out;
    }
    int adopted = adopt(&h);
    fence_kill_strays(&h);
    slice_share(&h);
    /* Tasks the previous hostd of this host claimed and never finished:
     * queued again now (a kind that is not idempotent checks its effect
     * before redoing it), failed after DB_TASK_MAX_ATTEMPTS claims. */
    if ((r = db_task_requeue_host(h.db, h.host_id, h.claimer)) > 0)
        log_warn("tasks of the previous hostd requeued", "tasks", LOG_INT(r));
    else if (r < 0)
        log_error("cannot requeue the previous hostd's tasks", "errno", LOG_INT(-r));
    h.dirty = h.tasks_dirty = true;
    reconcile(&h);
    sweep_overlays(&h);
    h.next_heartbeat_ms = atr_now_mono_ms() + h.cfg->hostd.heartbeat_s * 1000;
    sd_notify(0, "READY=1\nSTATUS=reconciling");
    log_info("hostd ready", "host", h.host_name, "vms_adopted", LOG_INT(adopted));
    rc = run(&h);
    sd_notify(0, "STOPPING=1");
out:
    while (h.vms) {
        struct local_vm *next = h.vms->next;
        hv_vm_free(h.vms->vm);
        free(h.vms->rep);
        free(h.vms);
        h.vms = next;
    }
    /* An incoming sync's qemu-nbd dies with us (PR_SET_PDEATHSIG); the
     * task is requeued and refused by the next hostd, which drops its layer. */
    while (h.rep_ins) {
        struct rep_in *next = h.rep_ins->next;
        free(h.rep_ins);
        h.rep_ins = next;
    }
    /* A disk copy still running finishes on its own; its task is requeued
     * when its heartbeat goes stale. */
    while (h.bg) {
        struct bg_op *next = h.bg->next;
        close(h.bg->fd);
        free(h.bg);
        h.bg = next;
    }
    if (h.unwritten && h.db)
        flush_outcomes(&h);
    while (h.unwritten) {
        struct task_outcome *next = h.unwritten->next;
        log_warn("task end not recorded; the next hostd requeues it", "task",
                 LOG_INT(h.unwritten->task));
        free(h.unwritten->error);
        free(h.unwritten);
        h.unwritten = next;
    }
    hv_cgroup_fini(&h.cg);
    db_close(h.db);
    if (h.sigfd >= 0)
        close(h.sigfd);
    atr_config_free(h.cfg);
    return rc;
}
