/*
 * Every route the broker serves, with the permission it needs.  The one
 * table serves dispatch, --list-routes (which the OpenAPI test diffs against
 * docs/api/openapi.yaml) and the route label of /metrics.
 */
#include "broker-priv.h"

#define ANY_CALLER (-1)

const struct brk_route brk_routes[] = {
    {"GET", "/healthz", brk_api_healthz, BRK_ROUTE_PUBLIC, ANY_CALLER, "/healthz"},
    {"GET", "/metrics", brk_api_metrics, BRK_ROUTE_PUBLIC, ANY_CALLER, "/metrics"},

    {"POST", "/api/v1/login", brk_api_login, BRK_ROUTE_PUBLIC, ANY_CALLER, "/api/v1/login"},
    {"POST", "/api/v1/logout", brk_api_logout, BRK_ROUTE_ENROL, ANY_CALLER, "/api/v1/logout"},
    {"GET", "/api/v1/me", brk_api_me, BRK_ROUTE_ENROL, ANY_CALLER, "/api/v1/me"},
    {"POST", "/api/v1/me/totp", brk_api_totp_begin, BRK_ROUTE_ENROL, ANY_CALLER, "/api/v1/me/totp"},
    {"POST", "/api/v1/me/totp/confirm", brk_api_totp_confirm, BRK_ROUTE_ENROL, ANY_CALLER,
     "/api/v1/me/totp/confirm"},
    {"GET", "/api/v1/desktops", brk_api_desktops, 0, AUTH_ACTION_CONSOLE_OWN, "/api/v1/desktops"},
    {"POST", "/api/v1/desktops/{id}/connect", brk_api_desktop_connect, 0, AUTH_ACTION_CONSOLE_OWN,
     "/api/v1/desktops/{id}/connect"},
    {"POST", "/api/v1/desktops/{id}/logoff", brk_api_desktop_logoff, 0, AUTH_ACTION_CONSOLE_OWN,
     "/api/v1/desktops/{id}/logoff"},

    {"GET", "/api/v1/tokens", brk_api_tokens_list, 0, AUTH_ACTION_USER_WRITE, "/api/v1/tokens"},
    {"POST", "/api/v1/tokens", brk_api_tokens_create, 0, AUTH_ACTION_USER_WRITE, "/api/v1/tokens"},
    {"DELETE", "/api/v1/tokens/{id}", brk_api_tokens_delete, 0, AUTH_ACTION_USER_WRITE,
     "/api/v1/tokens/{id}"},

    {"GET", "/api/v1/hosts", brk_api_hosts, 0, AUTH_ACTION_READ, "/api/v1/hosts"},
    {"GET", "/api/v1/hosts/{id}/metrics", brk_api_host_metrics, 0, AUTH_ACTION_READ,
     "/api/v1/hosts/{id}/metrics"},
    {"GET", "/api/v1/vms/{id}/metrics", brk_api_vm_metrics, 0, AUTH_ACTION_READ,
     "/api/v1/vms/{id}/metrics"},
    {"GET", "/api/v1/tasks", brk_api_tasks, 0, AUTH_ACTION_READ, "/api/v1/tasks"},
    {"GET", "/api/v1/tasks/{id}", brk_api_task_get, 0, AUTH_ACTION_READ, "/api/v1/tasks/{id}"},
    {"GET", "/api/v1/audit", brk_api_audit, 0, AUTH_ACTION_AUDIT_READ, "/api/v1/audit"},
    {"GET", "/api/v1/users", brk_api_users, 0, AUTH_ACTION_READ, "/api/v1/users"},
    {"GET", "/api/v1/groups", brk_api_groups, 0, AUTH_ACTION_READ, "/api/v1/groups"},
    {"GET", "/api/v1/pools", brk_api_pools, 0, AUTH_ACTION_READ, "/api/v1/pools"},
    {"GET", "/api/v1/vms", brk_api_vms, 0, AUTH_ACTION_READ, "/api/v1/vms"},
    {"GET", "/api/v1/sessions", brk_api_sessions, 0, AUTH_ACTION_READ, "/api/v1/sessions"},
    {"GET", "/api/v1/images", brk_api_images, 0, AUTH_ACTION_READ, "/api/v1/images"},
    {"GET", "/api/v1/pools/{id}/entitlements", brk_api_entitlements, 0, AUTH_ACTION_READ,
     "/api/v1/pools/{id}/entitlements"},
    {"POST", "/api/v1/vms/{id}/power", brk_api_vm_power, 0, AUTH_ACTION_VM_POWER,
     "/api/v1/vms/{id}/power"},
    {"DELETE", "/api/v1/vms/{id}", brk_api_vm_delete, 0, AUTH_ACTION_POOL_WRITE,
     "/api/v1/vms/{id}"},
    {"PATCH", "/api/v1/hosts/{id}", brk_api_host_update, 0, AUTH_ACTION_HOST_WRITE,
     "/api/v1/hosts/{id}"},
    {"POST", "/api/v1/sessions/{id}/logoff", brk_api_session_logoff, 0, AUTH_ACTION_SESSION_MANAGE,
     "/api/v1/sessions/{id}/logoff"},

    {"POST", "/api/v1/users", brk_api_user_create, 0, AUTH_ACTION_USER_WRITE, "/api/v1/users"},
    {"PATCH", "/api/v1/users/{id}", brk_api_user_update, 0, AUTH_ACTION_USER_WRITE,
     "/api/v1/users/{id}"},
    {"DELETE", "/api/v1/users/{id}/totp", brk_api_user_totp_reset, 0, AUTH_ACTION_USER_WRITE,
     "/api/v1/users/{id}/totp"},
    {"POST", "/api/v1/users/{id}/unlock", brk_api_user_unlock, 0, AUTH_ACTION_USER_WRITE,
     "/api/v1/users/{id}/unlock"},
    {"GET", "/api/v1/policies/totp", brk_api_totp_policy_get, 0, AUTH_ACTION_READ,
     "/api/v1/policies/totp"},
    {"PATCH", "/api/v1/policies/totp", brk_api_totp_policy_set, 0, AUTH_ACTION_SETTINGS_WRITE,
     "/api/v1/policies/totp"},
    {"POST", "/api/v1/groups", brk_api_group_create, 0, AUTH_ACTION_USER_WRITE, "/api/v1/groups"},
    {"POST", "/api/v1/groups/{id}/members", brk_api_group_member_add, 0, AUTH_ACTION_USER_WRITE,
     "/api/v1/groups/{id}/members"},
    {"POST", "/api/v1/pools", brk_api_pool_create, 0, AUTH_ACTION_POOL_WRITE, "/api/v1/pools"},
    {"PATCH", "/api/v1/pools/{id}", brk_api_pool_update, 0, AUTH_ACTION_POOL_WRITE,
     "/api/v1/pools/{id}"},
    {"DELETE", "/api/v1/pools/{id}", brk_api_pool_delete, 0, AUTH_ACTION_POOL_WRITE,
     "/api/v1/pools/{id}"},
    {"POST", "/api/v1/pools/{id}/entitlements", brk_api_entitlement_add, 0, AUTH_ACTION_POOL_WRITE,
     "/api/v1/pools/{id}/entitlements"},
    {0},
};
