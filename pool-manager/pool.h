/*
 * libatrium-pool: desktop pools cloned from versioned golden images, and the
 * one place where a person is given a desktop.  The broker (web/API log-ins)
 * and displayd (RDP password log-ins at the gateway) both call pool_assign();
 * atrium-poold (the pool manager daemon) keeps pools at their sizes.
 *
 * Entitlement is checked by the caller (auth_entitled()) before assigning:
 * this library does not depend on auth/.
 */
#pragma once

#include "common.h"
#include "db.h"

#include <stdint.h>

/* A pool with the same defaults as the schema: floating, 2 vCPU, 2 GiB, spare 1. */
void pool_defaults(struct db_pool *p);

/*
 * Check a pool definition before it reaches the database: name syntax, sizes
 * (0 <= min <= max, spare <= max, max <= 10000), resources, at least one
 * protocol, assignment and power policy words, and a naming pattern that
 * contains "{n}".  Returns 0 or -EINVAL with one sentence in @err.
 */
int pool_validate(const struct db_pool *p, struct atr_error *err);

/*
 * Create a pool after pool_validate; its image version (if set) must be
 * ready.  Sets *ret_id.  -EEXIST for a taken name, -EINVAL, -errno.
 */
int pool_create(struct db *db, const struct db_pool *p, int64_t *ret_id, struct atr_error *err);

/* Replace the definition of pool p->id (validated as for create). */
int pool_update(struct db *db, const struct db_pool *p, struct atr_error *err);

/* Delete an empty pool.  -EBUSY (with a sentence) while it still has VMs. */
int pool_delete(struct db *db, int64_t pool_id, struct atr_error *err);

/*
 * Find an image version by "NAME" (its newest ready version) or
 * "NAME:VERSION" (that version, whatever its state).  Fills *ret; -EINVAL
 * for a malformed @spec, -ENOENT when there is no such version, -errno.
 */
int pool_image_version_find(struct db *db, const char *spec, struct db_image_version *ret);

/*
 * Render a VM name from @pattern: "{pool}" becomes the pool's name and "{n}"
 * the number @n.  Returns 0, or -EINVAL when the result is not a valid VM
 * name or does not fit @size.
 */
int pool_vm_name(const char *pattern, const char *pool_name, int64_t n, char *buf, size_t size);

/*
 * Give @user_id a desktop of @pool_id over @protocol ("spice", "rdp", "vnc",
 * "browser") — see db_session_assign() for the rules.  Returns 0 and *ret;
 * -EAGAIN when no desktop is ready (tell the person to retry shortly;
 * provisioning has been nudged), -EHOSTUNREACH (the person's desktop is on
 * a silent host that may still run it: kept for them, retry shortly),
 * -ENOENT, -EPERM (pool disabled),
 * -EPROTONOSUPPORT (protocol not offered by the pool), -errno.
 */
int pool_assign(struct db *db, int64_t user_id, int64_t pool_id, const char *protocol,
                const char *client_addr, struct db_assignment *ret);

/* Session life cycle, reported by displayd and the broker; see db-session.h. */
int pool_session_connected(struct db *db, int64_t session_id, const char *protocol,
                           const char *client_addr);
int pool_session_disconnected(struct db *db, int64_t session_id);
int pool_session_logoff(struct db *db, int64_t session_id, const char *reason);

/* ------------------------------------------------------------------------ */
/* Keeping pools true (atrium-poold's one pass)                             */
/* ------------------------------------------------------------------------ */

struct pool_env {
    const char *data_dir;     /* overlays go to <data_dir>/overlays/<vm name>.qcow2 */
    int provision_timeout_s;  /* a VM not ready by then is destroyed and retried */
    int failure_limit;        /* this many failures ... */
    int failure_window_s;     /* ... within this window stop provisioning */
    int host_stale_s;         /* a host silent this long is not used; its VMs are lost */
    int cpu_overcommit;       /* vCPUs per host CPU */
    int max_create_per_pass;  /* bound on clones started in one pass per pool */
    int fence_margin_s;       /* a host is fenced this long after its own fence deadline */
};

/* What one pass did, for logs and tests. */
struct pool_pass {
    int created;   /* new VMs (clones) asked of hosts */
    int retired;   /* VMs sent to deletion: broken, late or on an old image */
    int refreshed; /* VMs sent back to their pristine clone after logoff */
    int lost;      /* VMs marked lost because their host went silent */
    int logged_off; /* sessions ended after the pool's disconnect timeout */
    int fenced;     /* hosts declared fenced (heartbeat older than deadline + margin) */
    int ha_moved;   /* HA VMs moved off fenced hosts, to boot on healthy ones */
    int fence_retired;       /* pool VMs retired because their host was fenced */
    int sessions_ended;      /* of those, desktops in use whose session was ended */
    int64_t created_ids[64]; /* the first 64 VMs created, so the caller can time them */
    int n_created_ids;
};

/* Defaults: 300 s provisioning timeout, 3 failures in 20 min, 10 s host staleness, x8 vCPUs. */
void pool_env_defaults(struct pool_env *env);

/*
 * One pass over every pool, as the acting poold: mark VMs of silent hosts
 * lost (a lost spare holds its place until its host is fenced or back);
 * fence (pool_ha_pass); per pool retire the VMs of fenced hosts (ending
 * their sessions), broken, late and stale VMs, send logged-off VMs to
 * refresh, then start as many new linked clones as `spare` and `min` ask,
 * never beyond `max` or a host's capacity, placed on the healthy host with
 * the most free memory (preferring hosts with fewer VMs of this pool); and
 * write each pool's status.  Idempotent: running it twice changes nothing the
 * second time unless the world changed.  Adds what it did to *stats.
 */
int pool_reconcile(struct db *db, const struct pool_env *env, struct pool_pass *stats);

/*
 * HA (ha.c, run by pool_reconcile first): fence every host whose heartbeat
 * is older than its own fence deadline + env->fence_margin_s (its VMs are
 * dead by then: its hostd and fence guard kill them at the deadline), audit
 * it, then move each HA VM that should run off fenced hosts to the roomiest
 * healthy host, whose hostd boots it from its disk.  Never moves a VM off a
 * host that is not fenced.  Adds what it did to *stats.
 */
int pool_ha_pass(struct db *db, const struct pool_env *env, struct pool_pass *stats);
