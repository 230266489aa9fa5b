/* The audit log: append-only rows. */
#include "db-priv.h"

#include <errno.h>
#include <stdlib.h>

int db_audit_add(struct db *db, const struct db_audit_entry *e)
{
    if (!e->action || !e->outcome)
        return -EINVAL;
    char *detail = e->detail ? atr_json_dumps(e->detail) : NULL;
    if (e->detail && !detail)
        return -ENOMEM;
    char b1[24];
    const char *p[] = {db_param_id(b1, e->actor_user_id),
                       e->actor ? e->actor : "",
                       e->client_addr,
                       e->action,
                       e->target_type ? e->target_type : "",
                       e->target_id ? e->target_id : "",
                       e->outcome,
                       detail ? detail : "{}"};
    int r = db_exec(db,
                    "INSERT INTO audit_log (actor_user_id, actor, client_addr, action,"
                    " target_type, target_id, outcome, detail)"
                    " VALUES ($1, $2, $3::inet, $4, $5, $6, $7, $8::jsonb)",
                    8, p, NULL, NULL);
    free(detail);
    return r;
}
