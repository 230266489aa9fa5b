/* Audit rows for what callers change through the API (log-ins are audited by auth/). */
#include "broker-priv.h"

void brk_audit(struct brk_request *req, const char *action, const char *target_type,
               const char *target_id, json_t *detail)
{
    struct db_audit_entry e = {
        .actor_user_id = req->caller.user_id,
        .actor = req->caller.username,
        .client_addr = req->client_addr[0] ? req->client_addr : NULL,
        .action = action,
        .target_type = target_type,
        .target_id = target_id,
        .outcome = "success",
        .detail = detail,
    };
    int r = db_audit_add(req->conn->db, &e);
    if (r < 0)
        log_error("cannot write audit row", "action", action, "errno", LOG_INT(-r));
    json_decref(detail);
}
