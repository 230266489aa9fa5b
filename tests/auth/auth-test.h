/* Shared set-up for the auth tests that need a database. */
#pragma once

#include "auth.h"

#include <stdint.h>

struct authfix {
    char *conninfo;
    struct db *db;
    struct auth *auth;
    struct auth_config cfg;
    int64_t now; /* the clock auth sees; tests move it */
};

/*
 * cmocka group/test set-up: a fresh migrated database and an auth context
 * with cheap argon2 parameters, backends "local" and a fake clock.
 */
int authfix_setup(void **state);
int authfix_teardown(void **state);

/* Replace the auth context with one made from f->cfg (after a test changed it). */
void authfix_reload(struct authfix *f);

/* Cheap argon2 parameters: tests check behaviour, not cost. */
extern const struct auth_argon2_params authfix_fast_argon2;

/* Integer value of a one-value query on the test database. */
long long authfix_count(struct authfix *f, const char *sql);

/* Log in and return the outcome (asserting the call itself worked). */
enum auth_outcome authfix_login(struct authfix *f, const char *user, const char *password,
                                const char *code, const char *addr, struct auth_login_result *ret);
