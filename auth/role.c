/*
 * Roles and what each may do.  One table, read top to bottom: a new action
 * is one row, and a role that is not listed for it is refused.  Operators
 * are the help desk: they see everything and act on running desktops
 * (power, sessions) but change no configuration and watch no one's screen.
 */
#include "auth-priv.h"

#include <errno.h>
#include <string.h>

#define R_USER (1u << AUTH_ROLE_USER)
#define R_OPERATOR (1u << AUTH_ROLE_OPERATOR)
#define R_ADMIN (1u << AUTH_ROLE_ADMIN)

static const struct {
    const char *name;
    unsigned roles;
} actions[AUTH_ACTION_COUNT_] = {
    [AUTH_ACTION_READ] = {"read", R_ADMIN | R_OPERATOR},
    [AUTH_ACTION_AUDIT_READ] = {"audit.read", R_ADMIN | R_OPERATOR},
    [AUTH_ACTION_POOL_WRITE] = {"pool.write", R_ADMIN},
    [AUTH_ACTION_IMAGE_WRITE] = {"image.write", R_ADMIN},
    [AUTH_ACTION_HOST_WRITE] = {"host.write", R_ADMIN},
    [AUTH_ACTION_USER_WRITE] = {"user.write", R_ADMIN},
    [AUTH_ACTION_SETTINGS_WRITE] = {"settings.write", R_ADMIN},
    [AUTH_ACTION_VM_POWER] = {"vm.power", R_ADMIN | R_OPERATOR},
    [AUTH_ACTION_SESSION_MANAGE] = {"session.manage", R_ADMIN | R_OPERATOR},
    [AUTH_ACTION_CONSOLE_OWN] = {"console.own", R_ADMIN | R_OPERATOR | R_USER},
    [AUTH_ACTION_CONSOLE_ANY] = {"console.any", R_ADMIN},
};

static const char *const role_names[] = {
    [AUTH_ROLE_USER] = "user",
    [AUTH_ROLE_OPERATOR] = "operator",
    [AUTH_ROLE_ADMIN] = "admin",
};

#define N_ROLES (sizeof(role_names) / sizeof(role_names[0]))

int auth_role_from_string(const char *s, enum auth_role *ret_role)
{
    for (size_t i = 0; s && i < N_ROLES; i++)
        if (strcmp(s, role_names[i]) == 0) {
            *ret_role = (enum auth_role)i;
            return 0;
        }
    return -EINVAL;
}

const char *auth_role_to_string(enum auth_role role)
{
    return (unsigned)role < N_ROLES ? role_names[role] : "invalid";
}

int auth_action_from_string(const char *s, enum auth_action *ret_action)
{
    for (size_t i = 0; s && i < AUTH_ACTION_COUNT_; i++)
        if (strcmp(s, actions[i].name) == 0) {
            *ret_action = (enum auth_action)i;
            return 0;
        }
    return -EINVAL;
}

const char *auth_action_to_string(enum auth_action action)
{
    return (unsigned)action < AUTH_ACTION_COUNT_ ? actions[action].name : "invalid";
}

bool auth_role_allows(enum auth_role role, enum auth_action action)
{
    if ((unsigned)role >= N_ROLES || (unsigned)action >= AUTH_ACTION_COUNT_)
        return false;
    return (actions[action].roles & (1u << role)) != 0;
}
