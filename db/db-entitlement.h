/*
 * Groups, memberships and entitlements (part of db.h; include "db.h", not
 * this).  An entitlement gives one pool to one user or to one group; a
 * person is entitled to a pool directly or through any group they belong
 * to.  Groups with source 'unix' mirror Unix groups: their memberships are
 * rewritten from what PAM/NSS report at each log-in of a PAM user.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db;

/* Create group @name with @source "local" or "unix".  -EEXIST when taken. */
int db_group_create(struct db *db, const char *name, const char *source, const char *description,
                    int64_t *ret_id);

/* Id of group @name; -ENOENT when absent. */
int db_group_get_id(struct db *db, const char *name, int64_t *ret_id);

/* Make user @user_id a member of group @group_id (no error when already one). */
int db_membership_add(struct db *db, int64_t user_id, int64_t group_id);

/*
 * End user @user_id's membership of group @group_id.  -ENOENT when they were
 * not a member (or either does not exist).  A unix-source group's
 * memberships are rewritten at the person's next PAM log-in.
 */
int db_membership_delete(struct db *db, int64_t user_id, int64_t group_id);

/*
 * Set the user's memberships in unix-source groups to exactly those of
 * @names (NULL-terminated; names with no unix-source group are ignored, an
 * admin declares which Unix groups Atrium knows).  Local groups are left as
 * they are.  One statement.  Sets *ret_n (may be NULL) to the number of
 * unix-source groups the user is now a member of.
 */
int db_membership_sync_unix(struct db *db, int64_t user_id, const char *const *names, int *ret_n);

/* Entitle user @user_id / group @group_id to pool @pool_id; -EEXIST if already. */
int db_entitlement_add_user(struct db *db, int64_t pool_id, int64_t user_id, int64_t *ret_id);
int db_entitlement_add_group(struct db *db, int64_t pool_id, int64_t group_id, int64_t *ret_id);

/*
 * Remove entitlement @entitlement_id of pool @pool_id / the direct
 * entitlement of user @user_id to pool @pool_id.  -ENOENT when there is no
 * such entitlement (of that pool).  Live desktop sessions are left alone;
 * the person just cannot connect to the pool again.
 */
int db_entitlement_delete(struct db *db, int64_t pool_id, int64_t entitlement_id);
int db_entitlement_delete_user(struct db *db, int64_t pool_id, int64_t user_id);

/*
 * The pools user @user_id is entitled to, directly or through a group,
 * ascending and without duplicates; none for a disabled user.  Sets
 * *ret_ids (malloc'd, free(); NULL when *ret_n is 0) and *ret_n.
 */
int db_entitlement_user_pools(struct db *db, int64_t user_id, int64_t **ret_ids, size_t *ret_n);

/* Whether user @user_id is entitled to pool @pool_id (false for a disabled user). */
int db_entitlement_check(struct db *db, int64_t user_id, int64_t pool_id, bool *ret_entitled);
