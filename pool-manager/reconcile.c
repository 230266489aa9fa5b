/*
 * One reconcile pass of the pool manager.
 *
 * Why a level-triggered pass instead of reacting to single events: any
 * poold may die between two steps, and a standby must be able to take over
 * from nothing but the rows.  So each pass recomputes, from the database
 * alone, what every pool lacks and what it holds too much of, and every step
 * it takes is one statement that is safe to repeat.  Events (NOTIFY) only
 * make the next pass come sooner.
 */
#include "pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pool_env_defaults(struct pool_env *env)
{
    memset(env, 0, sizeof(*env));
    env->data_dir = "/var/lib/atrium";
    env->provision_timeout_s = 300;
    env->failure_limit = 3;
    env->failure_window_s = 1200;
    env->host_stale_s = 10;
    env->cpu_overcommit = 8;
    env->max_create_per_pass = 16;
    env->fence_margin_s = 10;
}

static void audit_vm(struct db *db, const struct db_pool *p, const struct db_vm_brief *vm,
                     const char *action, const char *outcome)
{
    char pool_id[24];
    snprintf(pool_id, sizeof(pool_id), "%lld", (long long)p->id);
    json_t *detail = json_pack("{s:s, s:I, s:s}", "vm", vm->name, "vm_id", (json_int_t)vm->id,
                               "error", vm->last_error);
    db_audit_add(db, &(struct db_audit_entry){.actor = "poold",
                                              .action = action,
                                              .target_type = "pool",
                                              .target_id = pool_id,
                                              .outcome = outcome,
                                              .detail = detail});
    json_decref(detail);
}

/* Choose a host for one more VM of @p: enough memory and vCPUs, then the
 * fewest VMs of this pool (spreading), then the most free memory. */
static struct db_host_room *place(struct db_host_room *rooms, size_t n, const struct db_pool *p)
{
    struct db_host_room *best = NULL;
    for (size_t i = 0; i < n; i++) {
        struct db_host_room *h = &rooms[i];
        if (h->free_memory_mb < p->memory_mb || h->free_vcpus < p->vcpus)
            continue;
        if (!best || h->pool_vms < best->pool_vms ||
            (h->pool_vms == best->pool_vms && h->free_memory_mb > best->free_memory_mb))
            best = h;
    }
    return best;
}

static int create_vm(struct db *db, const struct pool_env *env, const struct db_pool *p,
                     const struct db_image_version *iv, struct db_host_room *host, char *name,
                     size_t name_size, struct pool_pass *stats)
{
    int64_t n;
    int r = db_pool_next_vm_number(db, p->id, &n);
    if (r < 0)
        return r;
    r = pool_vm_name(p->name_pattern, p->name, n, name, name_size);
    if (r < 0)
        return r;
    char disk[1024];
    snprintf(disk, sizeof(disk), "%s/overlays/%s.qcow2", env->data_dir, name);
    bool kernel = iv->boot_kernel[0] != '\0';
    int64_t id;
    r = db_vm_create(db,
                     &(struct db_vm_new){.name = name,
                                         .host_id = host->host_id,
                                         .pool_id = p->id,
                                         .image_version_id = iv->id,
                                         .vcpus = p->vcpus,
                                         .memory_mb = p->memory_mb,
                                         .disk_path = disk,
                                         .boot = kernel ? "kernel" : "disk",
                                         .boot_kernel = kernel ? iv->boot_kernel : NULL,
                                         .boot_initrd = kernel ? iv->boot_initrd : NULL,
                                         .boot_cmdline = kernel ? iv->boot_cmdline : NULL,
                                         .desired_power = "running"},
                     &id);
    if (r < 0)
        return r;
    /* visible to admins as a task with progress; atrium-poold moves it */
    int64_t task;
    r = db_task_create(
        db, &(struct db_task_new){.kind = "vm.provision", .vm_id = id, .pool_id = p->id}, &task);
    if (r < 0)
        return r;
    if (stats->n_created_ids < (int)(sizeof(stats->created_ids) / sizeof(stats->created_ids[0])))
        stats->created_ids[stats->n_created_ids++] = id;
    host->free_memory_mb -= p->memory_mb;
    host->free_vcpus -= p->vcpus;
    host->pool_vms++;
    return 0;
}

static void audit_fenced(struct db *db, const struct db_pool *p, const struct db_pool_fenced_vm *f)
{
    char pool_id[24];
    snprintf(pool_id, sizeof(pool_id), "%lld", (long long)p->id);
    json_t *detail =
        json_pack("{s:s, s:I, s:s, s:s, s:I}", "vm", f->name, "vm_id", (json_int_t)f->id, "host",
                  f->host, "was", f->was, "session_id", (json_int_t)f->session_id);
    db_audit_add(db, &(struct db_audit_entry){.actor = "poold",
                                              .action = "pool.vm_fenced",
                                              .target_type = "pool",
                                              .target_id = pool_id,
                                              .outcome = "success",
                                              .detail = detail});
    json_decref(detail);
}

/*
 * The pool's VMs on fenced hosts: retired (their QEMUs are dead by the
 * host's promise), a session on one ended, and replaced by the creation
 * step of this same pass on healthy hosts.  Until its host is fenced a lost
 * spare holds its place (db_pool_counts' held): a host that is only late
 * keeps its VMs (its hostd puts them back, db_vm_found), and a replacement
 * never starts while an old VM may still run.  Not a provisioning failure:
 * a dead host says nothing about the pool, and counting its spares would
 * stop the pool (failure_limit) exactly when it has to rebuild.
 */
static int retire_fenced(struct db *db, const struct db_pool *p, struct pool_pass *stats)
{
    struct db_pool_fenced_vm *vms = NULL;
    size_t n = 0;
    int r = db_pool_retire_fenced(db, p->id, &vms, &n);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        log_warn("vm retired: its host was fenced; replaced on a healthy host", "pool", p->name,
                 "vm", vms[i].name, "host", vms[i].host, "was", vms[i].was, "session_ended",
                 LOG_INT(vms[i].session_id));
        audit_fenced(db, p, &vms[i]);
        if (vms[i].session_id)
            stats->sessions_ended++;
    }
    stats->fence_retired += (int)n;
    free(vms);
    return 0;
}

static int reconcile_pool(struct db *db, const struct pool_env *env, const struct db_pool *p,
                          struct pool_pass *stats)
{
    struct db_vm_brief *vms = NULL;
    size_t n = 0;
    int r;
    char detail[256] = "";

    /* even for a disabled pool: the sessions on dead VMs must end */
    r = retire_fenced(db, p, stats);
    if (r < 0)
        return r;

    if (!p->enabled)
        return db_pool_set_status(db, p->id, "disabled", "the pool is disabled");

    /* retire what cannot serve anyone, counting each as a provisioning failure */
    r = db_pool_retire_broken(db, p->id, &vms, &n);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        log_warn("vm retired", "pool", p->name, "vm", vms[i].name, "why", vms[i].last_error);
        audit_vm(db, p, &vms[i], "pool.vm_failed", "failure");
    }
    stats->retired += (int)n;
    vms = atr_free(vms);

    r = db_pool_retire_late(db, p->id, env->provision_timeout_s, &vms, &n);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        log_warn("vm not ready in time, retired", "pool", p->name, "vm", vms[i].name, "timeout_s",
                 LOG_INT(env->provision_timeout_s));
        audit_vm(db, p, &vms[i], "pool.vm_failed", "failure");
    }
    stats->retired += (int)n;
    vms = atr_free(vms);

    if (p->image_version_id) {
        r = db_pool_retire_stale(db, p->id, p->image_version_id, &vms, &n);
        if (r < 0)
            return r;
        for (size_t i = 0; i < n; i++)
            log_info("spare on old image retired", "pool", p->name, "vm", vms[i].name);
        stats->retired += (int)n;
        vms = atr_free(vms);
    }

    /* a person who left (disconnected) longer than the pool allows is logged
     * off, so the desktop goes back to the pool */
    int64_t *stale = NULL;
    size_t nstale = 0;
    r = db_session_stale_disconnected(db, p->id, p->disconnect_timeout_s, &stale, &nstale);
    if (r < 0)
        return r;
    for (size_t i = 0; i < nstale; i++) {
        if (db_session_logoff(db, stale[i], "disconnect timeout") == 0) {
            log_info("session logged off: disconnected too long", "pool", p->name, "session",
                     LOG_INT(stale[i]), "timeout_s", LOG_INT(p->disconnect_timeout_s));
            stats->logged_off++;
        }
    }
    free(stale);

    r = db_pool_after_logoff(db, p->id, &vms, &n);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(vms[i].state, "refreshing") == 0) {
            int64_t task;
            r = db_task_create(db,
                               &(struct db_task_new){.kind = "vm.refresh",
                                                     .host_id = vms[i].host_id,
                                                     .vm_id = vms[i].id,
                                                     .pool_id = p->id},
                               &task);
            if (r < 0) {
                free(vms);
                return r;
            }
            log_info("vm refresh queued", "pool", p->name, "vm", vms[i].name, "task",
                     LOG_INT(task));
            stats->refreshed++;
        } else {
            log_info("vm on old image retired at logoff", "pool", p->name, "vm", vms[i].name);
            stats->retired++;
        }
    }
    vms = atr_free(vms);
    r = db_pool_drop_unplaced(db, p->id);
    if (r < 0)
        return r;

    /* is the pool allowed to make VMs at all? */
    if (!p->image_version_id)
        return db_pool_set_status(db, p->id, "no_image", "the pool has no golden image version");
    struct db_image_version iv;
    r = db_image_version_get(db, p->image_version_id, &iv);
    if (r < 0)
        return r;
    if (strcmp(iv.state, "ready") != 0) {
        snprintf(detail, sizeof(detail), "image %s version %d is %s", iv.image_name, iv.version,
                 iv.state);
        return db_pool_set_status(db, p->id, "no_image", detail);
    }
    bool failing = false;
    int failures = 0;
    r = db_pool_is_failing(db, p->id, &failing);
    if (r < 0)
        return r;
    if (!failing) {
        r = db_pool_failures(db, p->id, env->failure_window_s, &failures);
        if (r < 0)
            return r;
        if (failures >= env->failure_limit) {
            failing = true;
            r = db_pool_set_failing(db, p->id, true);
            if (r < 0)
                return r;
            char pool_id[24];
            snprintf(pool_id, sizeof(pool_id), "%lld", (long long)p->id);
            json_t *d =
                json_pack("{s:i, s:i}", "failures", failures, "window_s", env->failure_window_s);
            db_audit_add(db, &(struct db_audit_entry){.actor = "poold",
                                                      .action = "pool.failing",
                                                      .target_type = "pool",
                                                      .target_id = pool_id,
                                                      .outcome = "failure",
                                                      .detail = d});
            json_decref(d);
            log_error("pool keeps failing, provisioning stopped", "pool", p->name, "failures",
                      LOG_INT(failures));
        }
    }
    if (failing) {
        snprintf(detail, sizeof(detail),
                 "provisioning stopped after %d failures within %d min; clear the pool to retry",
                 env->failure_limit, env->failure_window_s / 60);
        return db_pool_set_status(db, p->id, "failing", detail);
    }

    /* how many more: enough spares, at least min, never beyond max */
    struct db_pool_counts c;
    r = db_pool_counts(db, p->id, &c);
    if (r < 0)
        return r;
    int want = p->spare - (c.ready + c.inflight + c.held);
    if (p->min_size - c.total > want)
        want = p->min_size - c.total;
    if (want > p->max_size - c.total)
        want = p->max_size - c.total;
    if (want > env->max_create_per_pass)
        want = env->max_create_per_pass;

    /* the pool shrank: spares beyond `spare` (but not below `min`) and
     * anything beyond `max` go, never a VM in use */
    if (want < 0) {
        int extra = -want;
        int above_min = c.total - p->min_size;
        if (c.total <= p->max_size && extra > above_min)
            extra = above_min;
        if (extra > 0) {
            r = db_pool_retire_extra(db, p->id, extra, &vms, &n);
            if (r < 0)
                return r;
            for (size_t i = 0; i < n; i++)
                log_info("spare retired: pool shrank", "pool", p->name, "vm", vms[i].name);
            stats->retired += (int)n;
            vms = atr_free(vms);
            r = db_pool_drop_unplaced(db, p->id);
            if (r < 0)
                return r;
            r = db_pool_counts(db, p->id, &c);
            if (r < 0)
                return r;
        }
        want = 0;
    }

    struct db_host_room *rooms = NULL;
    size_t nrooms = 0;
    int made = 0;
    if (want > 0) {
        r = db_host_rooms(db, p->id, env->host_stale_s, env->cpu_overcommit, &rooms, &nrooms);
        if (r < 0)
            return r;
    }
    for (; made < want; made++) {
        struct db_host_room *h = place(rooms, nrooms, p);
        if (!h)
            break;
        char name[64];
        r = create_vm(db, env, p, &iv, h, name, sizeof(name), stats);
        if (r < 0) {
            free(rooms);
            return r;
        }
        log_info("vm provisioning", "pool", p->name, "vm", name, "host", h->name);
    }
    stats->created += made;

    if (made < want) {
        int64_t most = 0;
        for (size_t i = 0; i < nrooms; i++)
            if (rooms[i].free_memory_mb > most)
                most = rooms[i].free_memory_mb;
        if (nrooms == 0)
            snprintf(detail, sizeof(detail),
                     "no healthy host: %d more VM(s) wanted but no host is online", want - made);
        else
            snprintf(detail, sizeof(detail),
                     "%d more VM(s) of %d MiB / %d vCPU wanted; the roomiest host "
                     "has %lld MiB free",
                     want - made, p->memory_mb, p->vcpus, (long long)most);
        free(rooms);
        return db_pool_set_status(db, p->id, "no_capacity", detail);
    }
    free(rooms);
    if (c.held > 0) {
        snprintf(detail, sizeof(detail),
                 "%d ready, %d starting, %d in use, %d spare(s) on a silent host, replaced once "
                 "it is fenced",
                 c.ready, c.inflight + made, c.in_use, c.held);
        return db_pool_set_status(db, p->id, "degraded", detail);
    }
    if (c.inflight + made > 0) {
        snprintf(detail, sizeof(detail), "%d ready, %d starting, %d in use", c.ready,
                 c.inflight + made, c.in_use);
        return db_pool_set_status(db, p->id, "provisioning", detail);
    }
    snprintf(detail, sizeof(detail), "%d ready, %d in use", c.ready, c.in_use);
    return db_pool_set_status(db, p->id, "ok", detail);
}

int pool_reconcile(struct db *db, const struct pool_env *env, struct pool_pass *stats)
{
    int r = db_vms_mark_lost(db, env->host_stale_s);
    if (r < 0)
        return r;
    if (r > 0)
        log_warn("vms marked lost: their host stopped sending heartbeats", "count", LOG_INT(r));
    stats->lost += r;
    r = pool_ha_pass(db, env, stats);
    if (r < 0)
        log_warn("HA pass incomplete", "errno", LOG_INT(r));

    struct db_pool *pools = NULL;
    size_t n = 0;
    r = db_pool_list(db, &pools, &n);
    if (r < 0)
        return r;
    int first_error = 0;
    for (size_t i = 0; i < n; i++) {
        r = reconcile_pool(db, env, &pools[i], stats);
        if (r < 0) {
            log_error("pool reconcile failed", "pool", pools[i].name, "errno", LOG_INT(r));
            if (!first_error)
                first_error = r;
        }
    }
    free(pools);
    return first_error;
}
