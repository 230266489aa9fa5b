/*
 * Admin writes: users, groups, memberships, pools and entitlements.  The
 * rules live below us — auth/ hashes passwords, pool-manager/ validates
 * pools, the schema's constraints guard the rest — so these handlers only
 * turn JSON into calls and errno values into statuses, and leave one audit
 * row per change.  The route table requires user.write or pool.write.
 */
#include "broker-priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* True when @body has no member outside @allowed; else a 400 is set in @rep. */
static bool only_members(const json_t *body, const char *const *allowed, struct brk_reply *rep)
{
    char why[128];
    if (brk_members_check(body, allowed, why, sizeof(why)) == 0)
        return true;
    brk_reply_error(rep, 400, "bad_request", why);
    return false;
}

static bool need_body(struct brk_request *req, struct brk_reply *rep)
{
    if (req->body)
        return true;
    brk_reply_error(rep, 400, "bad_request", "a JSON object body is required");
    return false;
}

static const char *id_text(char buf[static 24], int64_t id)
{
    snprintf(buf, 24, "%lld", (long long)id);
    return buf;
}

int brk_api_user_create(struct brk_request *req, struct brk_reply *rep)
{
    static const char *const allowed[] = {"username", "password", "role", NULL};
    const char *username, *password, *role_s = "user";
    enum auth_role role;
    if (!need_body(req, rep) || !only_members(req->body, allowed, rep))
        return 0;
    if (atr_json_get_str(req->body, "username", &username) < 0 ||
        atr_json_get_str(req->body, "password", &password) < 0)
        return brk_reply_error(rep, 400, "bad_request", "username and password are required");
    if (atr_json_get_str(req->body, "role", &role_s) == -EINVAL ||
        auth_role_from_string(role_s, &role) < 0)
        return brk_reply_error(rep, 400, "bad_request", "role must be admin, operator or user");
    int64_t id;
    int r = auth_local_user_create(req->conn->auth, username, password, role, &id);
    if (r == -EEXIST)
        return brk_reply_error(rep, 409, "exists", "a user with that name exists");
    if (r == -EINVAL)
        return brk_reply_error(rep, 400, "bad_request",
                               "bad user name, or password empty or longer than 1024 bytes");
    if (r < 0)
        return r;
    char b[24];
    brk_audit(req, "user.create", "user", id_text(b, id),
              json_pack("{s:s, s:s}", "username", username, "role", role_s));
    return brk_reply_json(
        rep, 201,
        json_pack("{s:I, s:s, s:s}", "id", (json_int_t)id, "username", username, "role", role_s));
}

int brk_api_user_update(struct brk_request *req, struct brk_reply *rep)
{
    static const char *const allowed[] = {"role", "disabled", "password", NULL};
    const char *role_s = NULL, *password = NULL;
    bool disabled = false;
    enum auth_role role;
    if (!need_body(req, rep) || !only_members(req->body, allowed, rep))
        return 0;
    int rr = atr_json_get_str(req->body, "role", &role_s);
    int rd = atr_json_get_bool(req->body, "disabled", &disabled);
    int rp = atr_json_get_str(req->body, "password", &password);
    if (rr == -EINVAL || (rr == 0 && auth_role_from_string(role_s, &role) < 0))
        return brk_reply_error(rep, 400, "bad_request", "role must be admin, operator or user");
    if (rd == -EINVAL)
        return brk_reply_error(rep, 400, "bad_request", "disabled must be true or false");
    if (rp == -EINVAL)
        return brk_reply_error(rep, 400, "bad_request", "password must be a string");
    if (rr && rd && rp)
        return brk_reply_error(rep, 400, "bad_request", "nothing to change");
    int64_t id = req->ids[0];
    if (id == req->caller.user_id &&
        ((rr == 0 && role != AUTH_ROLE_ADMIN) || (rd == 0 && disabled)))
        return brk_reply_error(rep, 409, "self", "admins cannot demote or disable themselves");

    /* One transaction: a refused password leaves the role unchanged too. */
    int r = db_begin(req->conn->db);
    if (r < 0)
        return r;
    if (r == 0 && rr == 0)
        r = db_user_set_role(req->conn->db, id, role_s);
    if (r == 0 && rd == 0)
        r = db_user_set_disabled(req->conn->db, id, disabled);
    if (r == 0 && rp == 0)
        r = auth_local_password_set(req->conn->auth, id, password);
    if (r < 0) {
        db_rollback(req->conn->db);
        if (r == -ENOENT)
            return brk_reply_error(rep, 404, "not_found",
                                   rp == 0 ? "no such local user" : "no such user");
        if (r == -EINVAL)
            return brk_reply_error(rep, 400, "bad_request", "a value was refused");
        return r;
    }
    r = db_commit(req->conn->db);
    if (r < 0)
        return r;
    char b[24];
    json_t *detail = json_object();
    if (rr == 0)
        json_object_set_new(detail, "role", json_string(role_s));
    if (rd == 0)
        json_object_set_new(detail, "disabled", json_boolean(disabled));
    if (rp == 0)
        json_object_set_new(detail, "password", json_string("changed"));
    brk_audit(req, "user.update", "user", id_text(b, id), detail);
    return brk_reply_json(rep, 200, json_pack("{s:I, s:b}", "id", (json_int_t)id, "updated", 1));
}

int brk_api_group_create(struct brk_request *req, struct brk_reply *rep)
{
    static const char *const allowed[] = {"name", "description", "source", NULL};
    const char *name, *desc = "", *source = "local";
    if (!need_body(req, rep) || !only_members(req->body, allowed, rep))
        return 0;
    if (atr_json_get_str(req->body, "name", &name) < 0 || !*name || strlen(name) > 128)
        return brk_reply_error(rep, 400, "bad_request", "name must be 1 to 128 bytes");
    if (atr_json_get_str(req->body, "description", &desc) == -EINVAL || strlen(desc) > 1024)
        return brk_reply_error(rep, 400, "bad_request", "description must be a string");
    if (atr_json_get_str(req->body, "source", &source) == -EINVAL ||
        (strcmp(source, "local") != 0 && strcmp(source, "unix") != 0))
        return brk_reply_error(rep, 400, "bad_request",
                               "source must be local or unix (mirrors a Unix group)");
    int64_t id;
    int r = db_group_create(req->conn->db, name, source, desc, &id);
    if (r == -EEXIST)
        return brk_reply_error(rep, 409, "exists", "a group with that name exists");
    if (r == -EINVAL)
        return brk_reply_error(rep, 400, "bad_request", "the group was refused");
    if (r < 0)
        return r;
    char b[24];
    brk_audit(req, "group.create", "group", id_text(b, id),
              json_pack("{s:s, s:s}", "name", name, "source", source));
    return brk_reply_json(
        rep, 201,
        json_pack("{s:I, s:s, s:s}", "id", (json_int_t)id, "name", name, "source", source));
}

int brk_api_group_member_add(struct brk_request *req, struct brk_reply *rep)
{
    static const char *const allowed[] = {"user_id", NULL};
    long long user_id;
    if (!need_body(req, rep) || !only_members(req->body, allowed, rep))
        return 0;
    if (atr_json_get_int(req->body, "user_id", 1, INT64_MAX, &user_id) < 0)
        return brk_reply_error(rep, 400, "bad_request", "user_id must be an id");
    int r = db_membership_add(req->conn->db, user_id, req->ids[0]);
    if (r == -EINVAL)
        return brk_reply_error(rep, 404, "not_found", "no such user or group");
    if (r < 0)
        return r;
    char b[24];
    brk_audit(req, "group.member_add", "group", id_text(b, req->ids[0]),
              json_pack("{s:I}", "user_id", (json_int_t)user_id));
    return brk_reply_json(rep, 200,
                          json_pack("{s:I, s:I}", "group_id", (json_int_t)req->ids[0], "user_id",
                                    (json_int_t)user_id));
}

int brk_api_group_member_delete(struct brk_request *req, struct brk_reply *rep)
{
    int64_t group_id = req->ids[0], user_id = req->ids[1];
    int r = db_membership_delete(req->conn->db, user_id, group_id);
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "not_found", "that user is not a member of that group");
    if (r < 0)
        return r;
    char b[24];
    brk_audit(req, "group.member_delete", "group", id_text(b, group_id),
              json_pack("{s:I}", "user_id", (json_int_t)user_id));
    return brk_reply_json(rep, 200,
                          json_pack("{s:I, s:I, s:b}", "group_id", (json_int_t)group_id, "user_id",
                                    (json_int_t)user_id, "deleted", 1));
}

static int pool_error(struct brk_reply *rep, int r, const struct atr_error *err)
{
    switch (r) {
    case -EEXIST:
        return brk_reply_error(rep, 409, "exists", "a pool with that name exists");
    case -EINVAL:
        return brk_reply_error(rep, 400, "bad_request",
                               err->msg[0] ? err->msg : "the pool definition was refused");
    case -ENOENT:
        return brk_reply_error(rep, 404, "not_found", "no such pool");
    case -EBUSY:
        return brk_reply_error(rep, 409, "busy", err->msg[0] ? err->msg : "the pool still has VMs");
    default:
        return r;
    }
}

int brk_api_pool_create(struct brk_request *req, struct brk_reply *rep)
{
    char why[200];
    struct atr_error err = {0};
    struct db_pool p;
    if (!need_body(req, rep))
        return 0;
    pool_defaults(&p);
    if (brk_pool_input_apply(req->body, &p, why, sizeof(why)) < 0)
        return brk_reply_error(rep, 400, "bad_request", why);
    if (!json_object_get(req->body, "name"))
        return brk_reply_error(rep, 400, "bad_request", "name is required");
    int r = pool_validate(&p, &err);
    int64_t id = 0;
    if (r == 0)
        r = pool_create(req->conn->db, &p, &id, &err);
    if (r < 0)
        return pool_error(rep, r, &err);
    char b[24];
    brk_audit(req, "pool.create", "pool", id_text(b, id), json_pack("{s:s}", "name", p.name));
    return brk_reply_json(rep, 201, json_pack("{s:I, s:s}", "id", (json_int_t)id, "name", p.name));
}

int brk_api_pool_update(struct brk_request *req, struct brk_reply *rep)
{
    char why[200];
    struct atr_error err = {0};
    struct db_pool p;
    if (!need_body(req, rep))
        return 0;
    int r = db_pool_get(req->conn->db, req->ids[0], &p);
    if (r < 0)
        return pool_error(rep, r, &err);
    if (brk_pool_input_apply(req->body, &p, why, sizeof(why)) < 0)
        return brk_reply_error(rep, 400, "bad_request", why);
    r = pool_validate(&p, &err);
    if (r == 0)
        r = pool_update(req->conn->db, &p, &err);
    if (r < 0)
        return pool_error(rep, r, &err);
    char b[24];
    /* The body as sent is the change; it passed the checks above. */
    brk_audit(req, "pool.update", "pool", id_text(b, p.id), json_incref(req->body));
    return brk_reply_json(rep, 200, json_pack("{s:I, s:b}", "id", (json_int_t)p.id, "updated", 1));
}

int brk_api_pool_delete(struct brk_request *req, struct brk_reply *rep)
{
    struct atr_error err = {0};
    int r = pool_delete(req->conn->db, req->ids[0], &err);
    if (r < 0)
        return pool_error(rep, r, &err);
    char b[24];
    brk_audit(req, "pool.delete", "pool", id_text(b, req->ids[0]), NULL);
    return brk_reply_json(rep, 200, json_pack("{s:b}", "deleted", 1));
}

int brk_api_entitlement_add(struct brk_request *req, struct brk_reply *rep)
{
    static const char *const allowed[] = {"user_id", "group_id", NULL};
    long long user_id = 0, group_id = 0;
    if (!need_body(req, rep) || !only_members(req->body, allowed, rep))
        return 0;
    int ru = atr_json_get_int(req->body, "user_id", 1, INT64_MAX, &user_id);
    int rg = atr_json_get_int(req->body, "group_id", 1, INT64_MAX, &group_id);
    if (ru == -EINVAL || rg == -EINVAL || (ru == 0) == (rg == 0))
        return brk_reply_error(rep, 400, "bad_request", "give exactly one of user_id, group_id");
    int64_t id;
    int r = ru == 0 ? db_entitlement_add_user(req->conn->db, req->ids[0], user_id, &id)
                    : db_entitlement_add_group(req->conn->db, req->ids[0], group_id, &id);
    if (r == -EEXIST)
        return brk_reply_error(rep, 409, "exists", "already entitled");
    if (r == -EINVAL)
        return brk_reply_error(rep, 404, "not_found", "no such pool, user or group");
    if (r < 0)
        return r;
    char b[24];
    brk_audit(req, "entitlement.add", "pool", id_text(b, req->ids[0]),
              ru == 0 ? json_pack("{s:I}", "user_id", (json_int_t)user_id)
                      : json_pack("{s:I}", "group_id", (json_int_t)group_id));
    return brk_reply_json(
        rep, 201,
        json_pack("{s:I, s:I}", "id", (json_int_t)id, "pool_id", (json_int_t)req->ids[0]));
}

int brk_api_entitlement_delete(struct brk_request *req, struct brk_reply *rep)
{
    int64_t pool_id = req->ids[0], id = req->ids[1];
    int r = db_entitlement_delete(req->conn->db, pool_id, id);
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "not_found", "no such entitlement of that pool");
    if (r < 0)
        return r;
    char b[24];
    brk_audit(req, "entitlement.delete", "pool", id_text(b, pool_id),
              json_pack("{s:I}", "entitlement_id", (json_int_t)id));
    return brk_reply_json(rep, 200,
                          json_pack("{s:I, s:I, s:b}", "id", (json_int_t)id, "pool_id",
                                    (json_int_t)pool_id, "deleted", 1));
}

int brk_api_vm_power(struct brk_request *req, struct brk_reply *rep)
{
    static const char *const allowed[] = {"desired", NULL};
    const char *desired;
    if (!need_body(req, rep) || !only_members(req->body, allowed, rep))
        return 0;
    /* "deleted" is not a power state: DELETE /api/v1/vms/{id} (pool.write). */
    if (atr_json_get_str(req->body, "desired", &desired) < 0 ||
        (strcmp(desired, "running") != 0 && strcmp(desired, "paused") != 0 &&
         strcmp(desired, "stopped") != 0))
        return brk_reply_error(rep, 400, "bad_request",
                               "desired must be running, paused or stopped");
    int r = db_vm_set_desired(req->conn->db, req->ids[0], desired);
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "not_found", "no such VM");
    if (r < 0)
        return r;
    char b[24];
    brk_audit(req, "vm.power", "vm", id_text(b, req->ids[0]),
              json_pack("{s:s}", "desired", desired));
    /* hostd acts on it (LISTEN atrium_vm); the VM's state shows when done. */
    return brk_reply_json(
        rep, 202, json_pack("{s:I, s:s}", "id", (json_int_t)req->ids[0], "desired", desired));
}

int brk_api_vm_delete(struct brk_request *req, struct brk_reply *rep)
{
    int r = db_vm_set_desired(req->conn->db, req->ids[0], "deleted");
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "not_found", "no such VM");
    if (r < 0)
        return r;
    char b[24];
    brk_audit(req, "vm.delete", "vm", id_text(b, req->ids[0]), NULL);
    return brk_reply_json(
        rep, 202, json_pack("{s:I, s:s}", "id", (json_int_t)req->ids[0], "desired", "deleted"));
}

/*
 * HA restart of a VM outside pools (admin): when its host is fenced, poold
 * starts it on a healthy host.  A pool's VMs are refused (409): their
 * spares are rebuilt elsewhere instead.
 */
int brk_api_vm_update(struct brk_request *req, struct brk_reply *rep)
{
    static const char *const allowed[] = {"ha", NULL};
    bool ha;
    if (!need_body(req, rep) || !only_members(req->body, allowed, rep))
        return 0;
    if (atr_json_get_bool(req->body, "ha", &ha) < 0)
        return brk_reply_error(rep, 400, "bad_request", "ha must be true or false");
    struct db_vm v;
    int r = brk_path_vm(req, rep, &v);
    if (r != 0)
        return r > 0 ? 0 : r;
    if (ha && v.pool_id)
        return brk_reply_error(rep, 409, "pool_vm",
                               "this VM belongs to a pool: HA restart is for VMs outside pools "
                               "(a pool's spares are rebuilt on other hosts instead)");
    r = db_vm_set_ha(req->conn->db, v.id, ha);
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "not_found", "no such VM");
    if (r < 0)
        return r;
    char b[24];
    brk_audit(req, "vm.update", "vm", id_text(b, v.id), json_pack("{s:b}", "ha", ha));
    return brk_reply_json(rep, 200, json_pack("{s:I, s:b}", "id", (json_int_t)v.id, "ha", ha));
}

int brk_api_host_update(struct brk_request *req, struct brk_reply *rep)
{
    static const char *const allowed[] = {"state", NULL};
    const char *state;
    if (!need_body(req, rep) || !only_members(req->body, allowed, rep))
        return 0;
    /* "offline" is what hostd reports about itself, not an admin's choice. */
    if (atr_json_get_str(req->body, "state", &state) < 0 ||
        (strcmp(state, "online") != 0 && strcmp(state, "maintenance") != 0))
        return brk_reply_error(rep, 400, "bad_request", "state must be online or maintenance");
    int r = db_host_set_state(req->conn->db, req->ids[0], state);
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "not_found", "no such host");
    if (r < 0)
        return r;
    char b[24];
    brk_audit(req, "host.update", "host", id_text(b, req->ids[0]),
              json_pack("{s:s}", "state", state));
    return brk_reply_json(rep, 200,
                          json_pack("{s:I, s:s}", "id", (json_int_t)req->ids[0], "state", state));
}
