/*
 * The user portal's read side (part of db.h; include "db.h", not this):
 * the desktops a person may use, with their live session in each.  Which
 * pools a person is entitled to is auth/'s answer (auth_user_pools); these
 * queries take that list as a parameter.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct db;

/*
 * Pools @pool_ids (@n ids) as a JSON array, ordered by name, each
 * {id, name, description, protocols, assignment, enabled, session} where
 * session is null or the user's live desktop session in that pool
 * {id, state, protocol, vm_id, vm_name, started_at, connected_at}.
 * *ret_items is a new reference.
 */
int db_desktop_list(struct db *db, int64_t user_id, const int64_t *pool_ids, size_t n,
                    json_t **ret_items);

/* The live (not ended) desktop session of @user_id in @pool_id.  -ENOENT when none. */
int db_desktop_live_session(struct db *db, int64_t user_id, int64_t pool_id,
                            int64_t *ret_session_id);
