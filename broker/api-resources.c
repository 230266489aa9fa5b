/*
 * Live resources of a VM, changed without a restart:
 *   GET   /api/v1/vms/{id}/resources
 *   PATCH /api/v1/vms/{id}/resources  {"balloon_mb": 512, "cpu_weight": 200, ...}
 * The broker only writes the desired values (db_vm_set_balloon,
 * db_vm_set_resources, db_vm_boost, in one transaction); the VM's hostd
 * applies them (QMP balloon, cgroup limits) and records the generation it
 * applied, which the GET reply compares ("applied").  Admins and operators
 * (the help desk powers VMs, so it may also give one more room).
 */
#include "broker-priv.h"

#include <errno.h>
#include <string.h>

/* A member that is either null (lift: 0) or an integer in [min, max]; absent: untouched. */
static int limit_member(const json_t *body, const char *key, long long min, long long max,
                        int64_t *io, char *why, size_t why_len)
{
    const json_t *v = json_object_get(body, key);
    if (!v)
        return 0;
    if (json_is_null(v)) {
        *io = 0;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        snprintf(why, why_len, "%s must be null (no limit) or an integer from %lld to %lld", key,
                 min, max);
        return -EINVAL;
    }
    *io = json_integer_value(v);
    return 0;
}

int brk_vm_resources_input_parse(const json_t *body, int memory_mb,
                                 struct brk_vm_resources_input *ret, char *why, size_t why_len)
{
    static const char *const known[] = {"balloon_mb",    "cpu_weight", "cpu_max_pct",
                                        "memory_max_mb", "disk_iops",  "disk_bps",
                                        "net_bps",       "boost",      NULL};
    if (!json_is_object(body) || json_object_size(body) == 0) {
        snprintf(why, why_len,
                 "the body must be an object with at least one of balloon_mb, "
                 "cpu_weight, cpu_max_pct, memory_max_mb, disk_iops, disk_bps, "
                 "net_bps, boost");
        return -EINVAL;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)body, key, val)
    {
        bool ok = false;
        for (const char *const *k = known; *k && !ok; k++)
            ok = strcmp(*k, key) == 0;
        if (!ok) {
            snprintf(why, why_len, "unknown member '%.64s'", key);
            return -EINVAL;
        }
    }
    int64_t balloon = -1, weight = -1, cpu_max = -1, mem_max = -1, iops = -1, bps = -1, net = -1;
    if (memory_mb < 64) /* the schema's floor; a VM row never has less */
        memory_mb = 64;
    if (limit_member(body, "balloon_mb", 64, memory_mb, &balloon, why, why_len) < 0 ||
        limit_member(body, "cpu_max_pct", 1, 100000, &cpu_max, why, why_len) < 0 ||
        limit_member(body, "memory_max_mb", 64, 4194304, &mem_max, why, why_len) < 0 ||
        limit_member(body, "disk_iops", 1, 2147483647, &iops, why, why_len) < 0 ||
        limit_member(body, "disk_bps", 1, INT64_MAX, &bps, why, why_len) < 0 ||
        limit_member(body, "net_bps", 1, INT64_MAX, &net, why, why_len) < 0)
        return -EINVAL;
    const json_t *w = json_object_get(body, "cpu_weight");
    if (w) {
        if (!json_is_integer(w) || json_integer_value(w) < 1 || json_integer_value(w) > 10000) {
            snprintf(why, why_len, "cpu_weight must be an integer from 1 to 10000 (100: equal)");
            return -EINVAL;
        }
        weight = json_integer_value(w);
    }
    const json_t *b = json_object_get(body, "boost");
    if (b && !json_is_boolean(b)) {
        snprintf(why, why_len, "boost must be true or false");
        return -EINVAL;
    }
    *ret = (struct brk_vm_resources_input){
        .balloon_mb = (int)balloon,
        .res = {.cpu_weight = weight > 0 ? (int)weight : 0,
                .cpu_max_pct = (int)cpu_max,
                .memory_max_mb = (int)mem_max,
                .disk_iops = (int)iops,
                .disk_bps = bps,
                .net_bps = net},
        .boost = b ? json_is_true(b) : -1,
    };
    return 0;
}

static json_t *limit_json(int64_t v)
{
    return v ? json_integer(v) : json_null();
}

static json_t *resources_json(const struct db_vm *v)
{
    return json_pack("{s:I, s:s, s:i, s:i, s:o, s:i, s:o, s:o, s:o, s:o, s:o, s:b, s:i, s:i, s:b}",
                     "vm_id", (json_int_t)v->id, "name", v->name, "memory_mb", v->memory_mb,
                     "vcpus", v->vcpus, "balloon_mb", limit_json(v->balloon_mb), "cpu_weight",
                     v->cpu_weight, "cpu_max_pct", limit_json(v->cpu_max_pct), "memory_max_mb",
                     limit_json(v->memory_max_mb), "disk_iops", limit_json(v->disk_iops),
                     "disk_bps", limit_json(v->disk_bps), "net_bps", limit_json(v->net_bps),
                     "boosted", v->boosted, "resources_gen", v->resources_gen, "applied_gen",
                     v->applied_gen, "applied", v->applied_gen == v->resources_gen);
}

int brk_api_vm_resources_get(struct brk_request *req, struct brk_reply *rep)
{
    struct db_vm v;
    int r = brk_path_vm(req, rep, &v);
    if (r != 0)
        return r > 0 ? 0 : r;
    json_t *body = resources_json(&v);
    return body ? brk_reply_json(rep, 200, body) : -ENOMEM;
}

/* The three writes, all or none. */
static int apply(struct db *db, int64_t id, const struct brk_vm_resources_input *in)
{
    const struct db_vm_resources *res = &in->res;
    int r = db_begin(db);
    if (r < 0)
        return r;
    if (in->balloon_mb >= 0)
        r = db_vm_set_balloon(db, id, in->balloon_mb);
    if (r >= 0 && (res->cpu_weight > 0 || res->cpu_max_pct >= 0 || res->memory_max_mb >= 0 ||
                   res->disk_iops >= 0 || res->disk_bps >= 0 || res->net_bps >= 0))
        r = db_vm_set_resources(db, id, res);
    if (r >= 0 && in->boost >= 0)
        r = db_vm_boost(db, id, in->boost == 1);
    if (r >= 0)
        r = db_commit(db);
    if (r < 0)
        db_rollback(db);
    return r < 0 ? r : 0;
}

int brk_api_vm_resources_set(struct brk_request *req, struct brk_reply *rep)
{
    struct db_vm v;
    int r = brk_path_vm(req, rep, &v);
    if (r != 0)
        return r > 0 ? 0 : r;
    struct brk_vm_resources_input in;
    char why[200];
    if (brk_vm_resources_input_parse(req->body, v.memory_mb, &in, why, sizeof(why)) < 0)
        return brk_reply_error(rep, 400, "bad_request", why);
    r = apply(req->conn->db, v.id, &in);
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "not_found", "no such VM");
    if (r == -EINVAL)
        return brk_reply_error(rep, 400, "bad_request", "a value is out of range for this VM");
    if (r < 0)
        return r;
    char b[24];
    snprintf(b, sizeof(b), "%lld", (long long)v.id);
    brk_audit(req, "vm.resources", "vm", b, json_deep_copy(req->body));
    r = db_vm_get(req->conn->db, v.id, &v);
    if (r < 0)
        return r;
    json_t *body = resources_json(&v);
    return body ? brk_reply_json(rep, 200, body) : -ENOMEM;
}
