/*
 * Snapshots of a VM from the console:
 *   GET    /api/v1/vms/{id}/snapshots
 *   POST   /api/v1/vms/{id}/snapshots               {"name", "with_ram"?, "description"?}
 *   POST   /api/v1/vms/{id}/snapshots/{snap}/revert
 *   DELETE /api/v1/vms/{id}/snapshots/{snap}
 * A snapshot lives inside the VM's qcow2 overlay on its host, so the broker
 * only catalogues the request and queues the task (db_snapshot_request,
 * db_snapshot_task) that the VM's hostd claims; the replies carry the task
 * id, whose progress GET /tasks/{id} shows.  Admins and operators (the help
 * desk powers VMs; going back to a snapshot is how it mends a broken one).
 */
#include "broker-priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SNAP_NAME_MAX 63
#define SNAP_DESCRIPTION_MAX 255

int brk_snapshot_input_parse(const json_t *body, struct brk_snapshot_input *ret, char *why,
                             size_t why_len)
{
    if (!json_is_object(body)) {
        snprintf(why, why_len, "the body must be an object with a name");
        return -EINVAL;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)body, key, val)
    {
        if (strcmp(key, "name") != 0 && strcmp(key, "with_ram") != 0 &&
            strcmp(key, "description") != 0) {
            snprintf(why, why_len, "unknown member '%.64s'", key);
            return -EINVAL;
        }
    }
    const json_t *name = json_object_get(body, "name");
    const char *n = json_string_value(name);
    size_t len = n ? strlen(n) : 0;
    if (!n || len == 0 || len > SNAP_NAME_MAX ||
        strspn(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != len ||
        strchr("._-", n[0])) {
        snprintf(why, why_len,
                 "name must be 1 to 63 of A-Z a-z 0-9 . _ - (not starting with . _ -)");
        return -EINVAL;
    }
    const json_t *ram = json_object_get(body, "with_ram");
    if (ram && !json_is_boolean(ram)) {
        snprintf(why, why_len, "with_ram must be true or false");
        return -EINVAL;
    }
    const json_t *desc = json_object_get(body, "description");
    const char *d = NULL;
    if (desc) {
        d = json_string_value(desc);
        if (!d || strlen(d) > SNAP_DESCRIPTION_MAX) {
            snprintf(why, why_len, "description must be a string of at most 255 bytes");
            return -EINVAL;
        }
        for (const char *p = d; *p; p++) {
            if ((unsigned char)*p < 0x20 || *p == 0x7f) {
                snprintf(why, why_len, "description holds a control character");
                return -EINVAL;
            }
        }
    }
    *ret = (struct brk_snapshot_input){
        .name = n,
        .with_ram = ram ? json_is_true(ram) : -1,
        .description = d,
    };
    return 0;
}

static json_t *snapshot_json(const struct db_snapshot *s)
{
    char at[32];
    return json_pack("{s:I, s:s, s:s, s:b, s:s, s:s, s:o, s:s, s:s, s:o}", "id", (json_int_t)s->id,
                     "name", s->name, "description", s->description, "with_ram", s->with_ram,
                     "state", s->state, "vm_power", s->vm_power, "size_bytes",
                     s->size_bytes > 0 ? json_integer(s->size_bytes) : json_null(), "error",
                     s->error, "created_at", atr_time_format(s->created_at_us, at), "task_id",
                     s->task_id ? json_integer(s->task_id) : json_null());
}

int brk_api_vm_snapshots(struct brk_request *req, struct brk_reply *rep)
{
    struct db_vm v;
    int r = brk_path_vm(req, rep, &v);
    if (r != 0)
        return r < 0 ? r : 0;
    struct db_snapshot *s = NULL;
    size_t n = 0;
    r = db_snapshot_list(req->conn->db, v.id, &s, &n);
    if (r < 0)
        return r;
    json_t *items = json_array();
    for (size_t i = 0; items && i < n; i++) {
        if (json_array_append_new(items, snapshot_json(&s[i])) < 0) {
            json_decref(items);
            items = NULL;
        }
    }
    free(s);
    if (!items)
        return -ENOMEM;
    return brk_reply_json(
        rep, 200,
        json_pack("{s:I, s:s, s:o}", "vm_id", (json_int_t)v.id, "vm_name", v.name, "items", items));
}

static int task_reply(struct brk_reply *rep, int64_t snap_id, int64_t task)
{
    return brk_reply_json(
        rep, 202,
        json_pack("{s:I, s:I}", "snapshot_id", (json_int_t)snap_id, "task_id", (json_int_t)task));
}

int brk_api_vm_snapshot_create(struct brk_request *req, struct brk_reply *rep)
{
    struct db_vm v;
    int r = brk_path_vm(req, rep, &v);
    if (r != 0)
        return r < 0 ? r : 0;
    struct brk_snapshot_input in;
    char why[200];
    if (brk_snapshot_input_parse(req->body, &in, why, sizeof(why)) < 0)
        return brk_reply_error(rep, 400, "bad_request", why);
    bool up = strcmp(v.actual_power, "running") == 0 || strcmp(v.actual_power, "paused") == 0;
    bool with_ram = in.with_ram == 1 || (in.with_ram == -1 && up);
    if (with_ram && !up)
        return brk_reply_error(rep, 409, "conflict",
                               "the VM is not running: a snapshot with its RAM needs it running "
                               "(take a disk-only one)");
    int64_t snap = 0, task = 0;
    r = db_snapshot_request(req->conn->db, v.id, in.name, with_ram, in.description, &snap, &task);
    if (r == -EEXIST)
        return brk_reply_error(rep, 409, "conflict", "the VM already has a snapshot of that name");
    if (r == -ENXIO)
        return brk_reply_error(rep, 409, "conflict", "the VM has no host to take it");
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "not_found", "no such VM");
    if (r < 0)
        return r;
    char b[24];
    snprintf(b, sizeof(b), "%lld", (long long)v.id);
    brk_audit(req, "vm.snapshot", "vm", b,
              json_pack("{s:s, s:b, s:I}", "name", in.name, "with_ram", with_ram, "task",
                        (json_int_t)task));
    return task_reply(rep, snap, task);
}

/* revert and delete: a task on snapshot {snap} of VM {id}. */
static int snapshot_task(struct brk_request *req, struct brk_reply *rep, const char *kind,
                         const char *audit_action)
{
    struct db_snapshot s;
    int r = db_snapshot_get(req->conn->db, req->ids[1], &s);
    if (r == -ENOENT || (r == 0 && s.vm_id != req->ids[0]))
        return brk_reply_error(rep, 404, "not_found", "this VM has no such snapshot");
    if (r < 0)
        return r;
    int64_t task = 0;
    r = db_snapshot_task(req->conn->db, s.id, kind, 0, &task);
    if (r == -EBUSY)
        return brk_reply_error(rep, 409, "conflict",
                               strcmp(s.state, "deleting") == 0
                                   ? "the snapshot is being deleted"
                                   : "the snapshot is not ready yet (its task still runs)");
    if (r == -ENXIO)
        return brk_reply_error(rep, 409, "conflict", "the VM has no host to do it");
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "not_found", "this VM has no such snapshot");
    if (r < 0)
        return r;
    char b[24];
    snprintf(b, sizeof(b), "%lld", (long long)s.vm_id);
    brk_audit(req, audit_action, "vm", b,
              json_pack("{s:s, s:I}", "name", s.name, "task", (json_int_t)task));
    return task_reply(rep, s.id, task);
}

int brk_api_vm_snapshot_revert(struct brk_request *req, struct brk_reply *rep)
{
    return snapshot_task(req, rep, "vm.snapshot.revert", "vm.snapshot.revert");
}

int brk_api_vm_snapshot_delete(struct brk_request *req, struct brk_reply *rep)
{
    return snapshot_task(req, rep, "vm.snapshot.delete", "vm.snapshot.delete");
}
