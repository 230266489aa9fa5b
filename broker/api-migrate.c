/*
 * Live migration of a VM from the console or a script:
 *   POST /api/v1/vms/{id}/migrate         {"to_host", "copy_storage"?, "max_bandwidth_mbs"?}
 *   POST /api/v1/vms/{id}/migrate/cancel
 * The broker only queues the source host's `vm.migrate` task
 * (db_migration_request_opts) or cancels it (db_migration_cancel); the two
 * hostds do the rest.  The task's progress and, at the end, the measured
 * downtime and total time are in GET /tasks/{id}.  Admins only (a host-level
 * operation, like maintenance mode); audited as vm.migrate and
 * vm.migrate.cancel.
 */
#include "broker-priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define MIGRATE_MAX_BANDWIDTH_MBS 100000

int brk_migrate_input_parse(const json_t *body, struct brk_migrate_input *ret, char *why,
                            size_t why_len)
{
    if (!json_is_object(body)) {
        snprintf(why, why_len, "the body must be an object with to_host");
        return -EINVAL;
    }
    static const char *const allowed[] = {"to_host", "copy_storage", "max_bandwidth_mbs", NULL};
    if (brk_members_check(body, allowed, why, why_len) < 0)
        return -EINVAL;
    const json_t *to = json_object_get(body, "to_host");
    if (!json_is_integer(to) || json_integer_value(to) < 1) {
        snprintf(why, why_len, "to_host must be a host id (an integer of at least 1)");
        return -EINVAL;
    }
    const json_t *copy = json_object_get(body, "copy_storage");
    if (copy && !json_is_boolean(copy)) {
        snprintf(why, why_len, "copy_storage must be true or false");
        return -EINVAL;
    }
    const json_t *bw = json_object_get(body, "max_bandwidth_mbs");
    if (bw && (!json_is_integer(bw) || json_integer_value(bw) < 1 ||
               json_integer_value(bw) > MIGRATE_MAX_BANDWIDTH_MBS)) {
        snprintf(why, why_len, "max_bandwidth_mbs must be an integer from 1 to %d (MiB/s)",
                 MIGRATE_MAX_BANDWIDTH_MBS);
        return -EINVAL;
    }
    *ret = (struct brk_migrate_input){
        .to_host = json_integer_value(to),
        .copy_storage = copy && json_is_true(copy),
        .max_bandwidth_mbs = bw ? (int)json_integer_value(bw) : 0,
    };
    return 0;
}

int brk_api_vm_migrate(struct brk_request *req, struct brk_reply *rep)
{
    struct brk_migrate_input in;
    struct db_vm v;
    struct db_host h;
    char why[200];
    int r = brk_path_vm(req, rep, &v);
    if (r != 0)
        return r > 0 ? 0 : r;
    if (brk_migrate_input_parse(req->body, &in, why, sizeof(why)) < 0)
        return brk_reply_error(rep, 400, "bad_request", why);
    r = db_host_get(req->conn->db, in.to_host, &h);
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "not_found", "no such host (to_host)");
    if (r < 0)
        return r;
    if (v.host_id == h.id)
        return brk_reply_error(rep, 409, "conflict", "the VM is already on that host");
    if (strcmp(h.state, "online") != 0) {
        snprintf(why, sizeof(why), "host %s is %s%s: it takes no VMs", h.name,
                 strcmp(h.state, "maintenance") == 0 ? "in " : "", h.state);
        return brk_reply_error(rep, 409, "conflict", why);
    }
    if (strcmp(v.actual_power, "running") != 0 && strcmp(v.actual_power, "paused") != 0)
        return brk_reply_error(rep, 409, "conflict",
                               "the VM is not running: only a running VM migrates live");
    struct db_migration_req mr = {.vm_id = v.id,
                                  .to_host_id = h.id,
                                  .copy_storage = in.copy_storage,
                                  .max_bandwidth_mbs = in.max_bandwidth_mbs,
                                  .created_by = req->caller.user_id};
    int64_t task = 0;
    r = db_migration_request_opts(req->conn->db, &mr, &task);
    if (r == -EBUSY)
        return brk_reply_error(rep, 409, "conflict", "a migration of the VM is already under way");
    if (r == -ENXIO)
        return brk_reply_error(rep, 409, "conflict", "the VM is on no host or already on that one");
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "not_found", "no such VM or host");
    if (r < 0)
        return r;
    char b[24];
    snprintf(b, sizeof(b), "%lld", (long long)v.id);
    brk_audit(req, "vm.migrate", "vm", b,
              json_pack("{s:s, s:b, s:I}", "to_host", h.name, "copy_storage", in.copy_storage,
                        "task", (json_int_t)task));
    return brk_reply_json(rep, 202,
                          json_pack("{s:I, s:I, s:I}", "task_id", (json_int_t)task, "vm_id",
                                    (json_int_t)v.id, "to_host", (json_int_t)h.id));
}

int brk_api_vm_migrate_cancel(struct brk_request *req, struct brk_reply *rep)
{
    struct db_vm v;
    int r = brk_path_vm(req, rep, &v);
    if (r != 0)
        return r > 0 ? 0 : r;
    int64_t task = 0;
    r = db_migration_cancel(req->conn->db, v.id, &task);
    if (r == -ENOENT)
        return brk_reply_error(rep, 409, "conflict", "no migration of the VM is under way");
    if (r < 0)
        return r;
    char b[24];
    snprintf(b, sizeof(b), "%lld", (long long)v.id);
    brk_audit(req, "vm.migrate.cancel", "vm", b, json_pack("{s:I}", "task", (json_int_t)task));
    return brk_reply_json(rep, 200, json_pack("{s:I, s:I}", "task_id", (json_int_t)task, "vm_id",
                                              (json_int_t)v.id));
}
