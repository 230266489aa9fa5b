/*
 * Disaster-recovery replication from the console or a script, the same
 * acts as `atriumctl vm replication` and `atriumctl vm recover`:
 *   GET    /api/v1/replications                 every replicated VM (api-admin.c)
 *   GET    /api/v1/vms/{id}/replication         one VM's
 *   PUT    /api/v1/vms/{id}/replication         {"to_host", "interval_s", "max_bps"?}
 *   DELETE /api/v1/vms/{id}/replication         stop the schedule (the copy stays)
 *   POST   /api/v1/vms/{id}/replication/sync    make the next sync due now
 *   POST   /api/v1/vms/{id}/recover             {"on_host", "force"?}: a vm.recover task
 * The broker only writes rows (db_replication_*); the VM's hostd queues
 * the syncs and the target's hostd runs the recovery.  The refusals say
 * what the CLI says (db_replication_why).  Writes are for admins (a
 * host-level act, like a migration) and audited as vm.replication.set,
 * vm.replication.off, vm.replication.sync and vm.recover.
 */
#include "broker-priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* A host id member: an integer >= 1. */
static bool host_id_ok(const json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 1;
}

int brk_replication_input_parse(const json_t *body, struct brk_replication_input *ret, char *why,
                                size_t why_len)
{
    static const char *const allowed[] = {"to_host", "interval_s", "max_bps", NULL};
    if (!json_is_object(body)) {
        snprintf(why, why_len, "the body must be an object with to_host and interval_s");
        return -EINVAL;
    }
    if (brk_members_check(body, allowed, why, why_len) < 0)
        return -EINVAL;
    const json_t *to = json_object_get(body, "to_host");
    if (!host_id_ok(to)) {
        snprintf(why, why_len, "to_host must be a host id (an integer of at least 1)");
        return -EINVAL;
    }
    const json_t *iv = json_object_get(body, "interval_s");
    if (!json_is_integer(iv) || json_integer_value(iv) < DB_REPLICATION_INTERVAL_MIN ||
        json_integer_value(iv) > DB_REPLICATION_INTERVAL_MAX) {
        snprintf(why, why_len, "interval_s must be an integer from %d to %d (seconds)",
                 DB_REPLICATION_INTERVAL_MIN, DB_REPLICATION_INTERVAL_MAX);
        return -EINVAL;
    }
    const json_t *bps = json_object_get(body, "max_bps");
    if (bps && !json_is_null(bps) &&
        (!json_is_integer(bps) || json_integer_value(bps) < DB_REPLICATION_MAX_BPS_MIN)) {
        snprintf(why, why_len,
                 "max_bps must be null (no cap) or an integer of at least %d (bytes/s)",
                 DB_REPLICATION_MAX_BPS_MIN);
        return -EINVAL;
    }
    *ret = (struct brk_replication_input){
        .to_host = json_integer_value(to),
        .interval_s = (int)json_integer_value(iv),
        .max_bps = json_is_integer(bps) ? json_integer_value(bps) : 0,
    };
    return 0;
}

int brk_recover_input_parse(const json_t *body, struct brk_recover_input *ret, char *why,
                            size_t why_len)
{
    static const char *const allowed[] = {"on_host", "force", NULL};
    if (!json_is_object(body)) {
        snprintf(why, why_len, "the body must be an object with on_host");
        return -EINVAL;
    }
    if (brk_members_check(body, allowed, why, why_len) < 0)
        return -EINVAL;
    const json_t *on = json_object_get(body, "on_host");
    if (!host_id_ok(on)) {
        snprintf(why, why_len, "on_host must be a host id (an integer of at least 1)");
        return -EINVAL;
    }
    const json_t *force = json_object_get(body, "force");
    if (force && !json_is_boolean(force)) {
        snprintf(why, why_len, "force must be true or false");
        return -EINVAL;
    }
    *ret = (struct brk_recover_input){.on_host = json_integer_value(on),
                                      .force = force && json_is_true(force)};
    return 0;
}

/* The VM of the path and host @host_id (of body member @member): 0, 1 when
 * one does not exist (a 404 is in @rep), or -errno. */
static int path_vm_and_host(struct brk_request *req, struct brk_reply *rep, int64_t host_id,
                            const char *member, struct db_vm *ret_vm, struct db_host *ret_host)
{
    int r = brk_path_vm(req, rep, ret_vm);
    if (r != 0)
        return r;
    r = db_host_get(req->conn->db, host_id, ret_host);
    if (r != -ENOENT)
        return r;
    char why[96];
    snprintf(why, sizeof(why), "no such host (%s)", member);
    brk_reply_error(rep, 404, "not_found", why);
    return 1;
}

/* Reply @status with VM @vm_id's replication as it is now. */
static int reply_replication(struct brk_request *req, struct brk_reply *rep, int status,
                             int64_t vm_id)
{
    json_t *o = NULL;
    int r = db_replication_get_json(req->conn->db, vm_id, &o);
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "not_found", "the VM is not replicated");
    if (r < 0)
        return r;
    return brk_reply_json(rep, status, o);
}

/* A 409 saying why @op on VM @v failed with @r, in the CLI's words. */
static int conflict(struct brk_request *req, struct brk_reply *rep, enum db_replication_op op,
                    const struct db_vm *v, int r)
{
    char why[200], detail[280];
    db_replication_why(req->conn->db, op, v->id, r, why, sizeof(why));
    snprintf(detail, sizeof(detail), "vm %s: %s", v->name, why);
    return brk_reply_error(rep, 409, "conflict", detail);
}

static void audit(struct brk_request *req, const char *action, int64_t vm_id, json_t *detail)
{
    char b[24];
    snprintf(b, sizeof(b), "%lld", (long long)vm_id);
    brk_audit(req, action, "vm", b, detail);
}

int brk_api_vm_replication_get(struct brk_request *req, struct brk_reply *rep)
{
    struct db_vm v;
    int r = brk_path_vm(req, rep, &v);
    if (r != 0)
        return r > 0 ? 0 : r;
    return reply_replication(req, rep, 200, v.id);
}

int brk_api_vm_replication_set(struct brk_request *req, struct brk_reply *rep)
{
    struct brk_replication_input in;
    struct db_vm v;
    struct db_host h;
    char why[200];
    if (brk_replication_input_parse(req->body, &in, why, sizeof(why)) < 0)
        return brk_reply_error(rep, 400, "bad_request", why);
    int r = path_vm_and_host(req, rep, in.to_host, "to_host", &v, &h);
    if (r != 0)
        return r > 0 ? 0 : r;
    r = db_replication_set(req->conn->db, v.id, h.id, in.interval_s, in.max_bps);
    if (r == -EINVAL)
        return conflict(req, rep, DB_REPLICATION_SET, &v, r);
    if (r == -ENOENT) /* deleted meanwhile */
        return brk_reply_error(rep, 404, "not_found", "no such VM or host");
    if (r < 0)
        return r;
    audit(req, "vm.replication.set", v.id,
          json_pack("{s:s, s:i, s:I}", "to_host", h.name, "interval_s", in.interval_s, "max_bps",
                    (json_int_t)in.max_bps));
    return reply_replication(req, rep, 200, v.id);
}

int brk_api_vm_replication_off(struct brk_request *req, struct brk_reply *rep)
{
    struct db_vm v;
    int r = brk_path_vm(req, rep, &v);
    if (r != 0)
        return r > 0 ? 0 : r;
    r = db_replication_disable(req->conn->db, v.id);
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "not_found", "the VM is not replicated");
    if (r < 0)
        return r;
    audit(req, "vm.replication.off", v.id, NULL);
    return reply_replication(req, rep, 200, v.id);
}

int brk_api_vm_replication_sync(struct brk_request *req, struct brk_reply *rep)
{
    struct db_vm v;
    struct db_replication rp;
    int r = brk_path_vm(req, rep, &v);
    if (r != 0)
        return r > 0 ? 0 : r;
    r = db_replication_get(req->conn->db, v.id, &rp);
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "not_found", "the VM is not replicated");
    if (r < 0)
        return r;
    if (!rp.enabled)
        return brk_reply_error(rep, 409, "conflict",
                               "its replication is off: set it again to sync (the copy is kept)");
    r = db_replication_sync_now(req->conn->db, v.id);
    if (r == -ENOENT || r == -ESRCH)
        return conflict(req, rep, DB_REPLICATION_SYNC, &v, r);
    if (r < 0)
        return r;
    audit(req, "vm.replication.sync", v.id, NULL);
    return reply_replication(req, rep, 202, v.id);
}

int brk_api_vm_recover(struct brk_request *req, struct brk_reply *rep)
{
    struct brk_recover_input in;
    struct db_vm v;
    struct db_host h;
    char why[200];
    if (brk_recover_input_parse(req->body, &in, why, sizeof(why)) < 0)
        return brk_reply_error(rep, 400, "bad_request", why);
    int r = path_vm_and_host(req, rep, in.on_host, "on_host", &v, &h);
    if (r != 0)
        return r > 0 ? 0 : r;
    int64_t task = 0;
    r = db_replication_recover_request(req->conn->db, v.id, h.id, in.force, DB_REPLICATION_ALIVE_S,
                                       req->caller.user_id, &task);
    if (r == -ENOENT || r == -ENXIO || r == -EALREADY || r == -EBUSY || r == -EADDRINUSE)
        return conflict(req, rep, DB_REPLICATION_RECOVER, &v, r);
    if (r < 0)
        return r;
    audit(req, "vm.recover", v.id,
          json_pack("{s:s, s:b, s:I}", "on_host", h.name, "force", in.force, "task",
                    (json_int_t)task));
    return brk_reply_json(rep, 202,
                          json_pack("{s:I, s:I, s:I}", "task_id", (json_int_t)task, "vm_id",
                                    (json_int_t)v.id, "on_host", (json_int_t)h.id));
}
