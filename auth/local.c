/* The local back end: people whose argon2id hash Atrium stores itself. */
#include "auth-priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int local_verify(struct auth *a, const char *username, const char *password,
                        const char *rhost, const struct db_user *user, struct auth_ident *ident)
{
    (void)username;
    (void)rhost;
    (void)ident;
    if (!user || !user->password_hash) {
        /* Spend the same time as for a real account, so response times do
         * not tell which names exist. */
        auth_password_verify(a->decoy_hash, password);
        return -ENOENT;
    }
    return auth_password_verify(user->password_hash, password);
}

static int local_after_login(struct auth *a, const struct db_user *user, const char *password,
                             const struct auth_ident *ident)
{
    (void)ident;
    if (!auth_password_needs_rehash(&a->cfg.argon2, user->password_hash))
        return 0;
    char *hash = NULL;
    int r = auth_password_hash(&a->cfg.argon2, password, &hash);
    if (r < 0)
        goto out;
    r = db_user_set_password_hash(a->db, user->id, hash, user->password_hash);
    /* The password changed while this log-in ran: the new hash wins and
     * will be rehashed at its own next log-in if it needs to be. */
    if (r == -ESTALE)
        r = 0;
    log_debug("password rehashed", "user", user->username, "result", LOG_INT(r));
out:
    free(hash);
    return r;
}

const struct auth_backend_ops auth_backend_local = {
    .source = "local",
    .verify = local_verify,
    .after_login = local_after_login,
};

static bool password_acceptable(const char *password)
{
    size_t n = password ? strlen(password) : 0;
    return n > 0 && n <= AUTH_PASSWORD_MAX;
}

int auth_local_user_create(struct auth *a, const char *username, const char *password,
                           enum auth_role role, int64_t *ret_id)
{
    if (!auth_username_valid(username) || !password_acceptable(password))
        return -EINVAL;
    const char *role_name = auth_role_to_string(role);
    if (strcmp(role_name, "invalid") == 0)
        return -EINVAL;
    char *hash = NULL;
    int r = auth_password_hash(&a->cfg.argon2, password, &hash);
    if (r < 0)
        goto out;
    struct db_user_new u = {
        .username = username, .source = "local", .role = role_name, .password_hash = hash};
    r = db_user_create(a->db, &u, ret_id);
out:
    free(hash);
    return r;
}

int auth_local_password_set(struct auth *a, int64_t user_id, const char *password)
{
    if (!password_acceptable(password))
        return -EINVAL;
    char *hash = NULL;
    int r = auth_password_hash(&a->cfg.argon2, password, &hash);
    if (r < 0)
        goto out;
    r = db_user_set_password_hash(a->db, user_id, hash, NULL);
out:
    free(hash);
    return r;
}
