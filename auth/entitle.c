/* Which pools a person may use: thin wrappers over db/, where the query lives. */
#include "auth-priv.h"

int auth_user_pools(struct auth *a, int64_t user_id, int64_t **ret_pool_ids, size_t *ret_n)
{
    return db_entitlement_user_pools(a->db, user_id, ret_pool_ids, ret_n);
}

int auth_entitled(struct auth *a, int64_t user_id, int64_t pool_id, bool *ret_entitled)
{
    return db_entitlement_check(a->db, user_id, pool_id, ret_entitled);
}
