/*
 * HA restart with fencing, the cluster's half (the host's half is hostd's
 * lease and fence guard, hypervisor/fence.c).
 *
 * The order is the whole point: a host that stopped heart-beating may be
 * cut off but alive, its VMs still running.  Its hostd and guard promise
 * that none runs once the host has gone hosts.fence_deadline_s without a
 * heartbeat, measured from the last heartbeat the database recorded.  So
 * the leader waits until the heartbeat is older than that deadline plus a
 * margin (for the guard's reaction, clock rates and this pass's own delay),
 * declares the host fenced in one statement, and only then moves HA VMs off
 * it.  The move itself requires the fenced state in the same statement (and
 * the schema refuses moves off silent, unfenced hosts from anyone), so no
 * code path restarts a VM whose old copy may still run.
 */
#include "pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void audit_fence(struct db *db, const struct db_fenced_host *h, int margin_s)
{
    char id[24];
    snprintf(id, sizeof(id), "%lld", (long long)h->id);
    json_t *detail = json_pack("{s:s, s:I, s:i, s:i}", "host", h->name, "heartbeat_age_ms",
                               (json_int_t)h->heartbeat_age_ms, "fence_deadline_s",
                               h->fence_deadline_s, "margin_s", margin_s);
    db_audit_add(db, &(struct db_audit_entry){.actor = "poold",
                                              .action = "host.fence",
                                              .target_type = "host",
                                              .target_id = id,
                                              .outcome = "success",
                                              .detail = detail});
    json_decref(detail);
}

static void audit_move(struct db *db, const struct db_ha_move *m)
{
    char id[24];
    snprintf(id, sizeof(id), "%lld", (long long)m->vm_id);
    json_t *detail =
        json_pack("{s:s, s:s, s:s}", "vm", m->vm_name, "from", m->from_host, "to", m->to_host);
    db_audit_add(db, &(struct db_audit_entry){.actor = "poold",
                                              .action = "vm.ha_restart",
                                              .target_type = "vm",
                                              .target_id = id,
                                              .outcome = "success",
                                              .detail = detail});
    json_decref(detail);
}

int pool_ha_pass(struct db *db, const struct pool_env *env, struct pool_pass *stats)
{
    struct db_fenced_host *hosts = NULL;
    size_t n = 0;
    int r = db_host_fence_stale(db, env->fence_margin_s, &hosts, &n);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        log_warn("host fenced: no heartbeat for longer than its fence deadline plus the margin",
                 "host", hosts[i].name, "heartbeat_age_ms", LOG_INT(hosts[i].heartbeat_age_ms),
                 "fence_deadline_s", LOG_INT(hosts[i].fence_deadline_s), "margin_s",
                 LOG_INT(env->fence_margin_s));
        audit_fence(db, &hosts[i], env->fence_margin_s);
    }
    stats->fenced += (int)n;
    free(hosts);

    /* Bounded: each statement moves one VM; a pass moves at most this many. */
    for (int moved = 0; moved < 256; moved++) {
        struct db_ha_move m;
        r = db_vm_ha_restart_next(db, env->host_stale_s, env->cpu_overcommit, &m);
        if (r == -ENOENT)
            return 0;
        if (r == -ENOSPC) {
            log_warn("HA VM waits: no healthy host has room for it", "vm", m.vm_name, "from",
                     m.from_host);
            return 0;
        }
        if (r < 0)
            return r;
        log_warn("HA restart: VM moved off its fenced host", "vm", m.vm_name, "vm_id",
                 LOG_INT(m.vm_id), "from", m.from_host, "to", m.to_host);
        audit_move(db, &m);
        stats->ha_moved++;
    }
    return 0;
}
