/* Assignment and the desktop-session life cycle: thin rules over db-session. */
#include "pool.h"

#include <errno.h>

int pool_assign(struct db *db, int64_t user_id, int64_t pool_id, const char *protocol,
                const char *client_addr, struct db_assignment *ret)
{
    unsigned proto = db_protocol_from_name(protocol);
    if (!proto)
        return -EPROTONOSUPPORT;
    if (user_id <= 0 || pool_id <= 0)
        return -EINVAL;
    return db_session_assign(db, user_id, pool_id, proto, client_addr, ret);
}

int pool_session_connected(struct db *db, int64_t session_id, const char *protocol,
                           const char *client_addr)
{
    unsigned proto = db_protocol_from_name(protocol);
    if (!proto)
        return -EPROTONOSUPPORT;
    return db_session_connected(db, session_id, proto, client_addr);
}

int pool_session_disconnected(struct db *db, int64_t session_id)
{
    return db_session_disconnected(db, session_id);
}

int pool_session_logoff(struct db *db, int64_t session_id, const char *reason)
{
    return db_session_logoff(db, session_id, reason);
}
