/*
 * TOTP second factor and recovery codes on a real database, with codes made
 * independently by liboath from the secret in the enrolment URI.
 */
#include "auth-test.h"

#include "pgtest.h"

#include <liboath/oath.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

struct enrolled {
    int64_t id;
    char secret[64];
    size_t secret_len;
    char **recovery;
};

/* The secret= parameter of an otpauth URI, decoded. */
static void secret_from_uri(const char *uri, struct enrolled *e)
{
    const char *s = strstr(uri, "?secret=");
    assert_non_null(s);
    s += 8;
    size_t n = strcspn(s, "&");
    char *raw = NULL;
    size_t rawlen = 0;
    assert_int_equal(oath_base32_decode(s, n, &raw, &rawlen), OATH_OK);
    assert_true(rawlen <= sizeof(e->secret));
    memcpy(e->secret, raw, rawlen);
    e->secret_len = rawlen;
    free(raw);
}

/* The code an authenticator app shows at @t. */
static void code_at(const struct enrolled *e, int64_t t, char out[static 7])
{
    assert_int_equal(oath_totp_generate(e->secret, e->secret_len, (time_t)t, 30, 0, 6, out),
                     OATH_OK);
}

/* A local user with TOTP enrolled and confirmed at f->now. */
static void enrol(struct authfix *f, const char *name, struct enrolled *e)
{
    memset(e, 0, sizeof(*e));
    assert_int_equal(auth_local_user_create(f->auth, name, "pw-of-user", AUTH_ROLE_USER, &e->id),
                     0);
    char *uri = NULL;
    assert_int_equal(auth_totp_enroll_begin(f->auth, e->id, &uri), 0);
    secret_from_uri(uri, e);
    free(uri);
    char code[7];
    code_at(e, f->now, code);
    assert_int_equal(auth_totp_enroll_confirm(f->auth, e->id, code, &e->recovery), 0);
    /* Move to the next step so the confirmation code's step is in the past. */
    f->now += 30;
}

static int totp_setup(void **state)
{
    assert_int_equal(oath_init(), OATH_OK);
    return authfix_setup(state);
}

static int totp_teardown(void **state)
{
    oath_done();
    return authfix_teardown(state);
}

static void test_enrolment_uri_carries_a_160_bit_secret_for_atrium(void **state)
{
    struct authfix *f = *state;
    int64_t id;
    assert_int_equal(auth_local_user_create(f->auth, "erin", "pw", AUTH_ROLE_USER, &id), 0);
    char *uri = NULL;
    assert_int_equal(auth_totp_enroll_begin(f->auth, id, &uri), 0);
    assert_true(strncmp(uri, "otpauth://totp/Atrium:erin?secret=", 34) == 0);
    assert_non_null(strstr(uri, "&issuer=Atrium&digits=6&period=30"));
    struct enrolled e;
    secret_from_uri(uri, &e);
    assert_int_equal(e.secret_len, 20);
    /* The stored pending secret is the one in the URI, not yet enabled. */
    struct db_user *u = NULL;
    assert_int_equal(db_user_get(f->db, id, &u), 0);
    assert_int_equal(u->totp_secret_len, 20);
    assert_memory_equal(u->totp_secret, e.secret, 20);
    assert_false(u->totp_enabled);
    db_user_free(u);
    /* A second begin makes a different secret. */
    char *uri2 = NULL;
    assert_int_equal(auth_totp_enroll_begin(f->auth, id, &uri2), 0);
    assert_string_not_equal(uri, uri2);
    free(uri);
    free(uri2);
    /* Pending enrolment does not yet demand a code at log-in. */
    assert_int_equal(authfix_login(f, "erin", "pw", NULL, NULL, NULL), AUTH_OK);
}

static void test_enrolment_needs_a_right_code_and_yields_ten_recovery_codes(void **state)
{
    struct authfix *f = *state;
    int64_t id;
    assert_int_equal(auth_local_user_create(f->auth, "erin", "pw", AUTH_ROLE_USER, &id), 0);
    char **codes = NULL;
    assert_int_equal(auth_totp_enroll_confirm(f->auth, id, "123456", &codes), -ENOENT);
    char *uri = NULL;
    assert_int_equal(auth_totp_enroll_begin(f->auth, id, &uri), 0);
    struct enrolled e;
    secret_from_uri(uri, &e);
    free(uri);
    char good[7], bad[16];
    code_at(&e, f->now, good);
    snprintf(bad, sizeof(bad), "%06d", (atoi(good) + 1) % 1000000);
    assert_int_equal(auth_totp_enroll_confirm(f->auth, id, bad, &codes), -EACCES);
    assert_null(codes);
    assert_int_equal(auth_totp_enroll_confirm(f->auth, id, good, &codes), 0);
    size_t n = 0;
    for (; codes[n]; n++) {
        assert_int_equal(strlen(codes[n]), 19);
        for (size_t j = 0; j < n; j++)
            assert_string_not_equal(codes[n], codes[j]);
    }
    assert_int_equal(n, 10);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM recovery_codes"), 10);
    /* Only digests are stored, never the codes. */
    char sql[200];
    snprintf(
        sql, sizeof(sql),
        "SELECT count(*) FROM recovery_codes WHERE encode(code_hash, 'escape') LIKE '%%%.4s%%'",
        codes[0]);
    assert_int_equal(authfix_count(f, sql), 0);
    auth_strv_free(codes);
    assert_int_equal(auth_totp_enroll_begin(f->auth, id, &uri), -EALREADY);
}

static void test_totp_required_when_enrolled(void **state)
{
    struct authfix *f = *state;
    struct enrolled e;
    enrol(f, "tom", &e);
    struct auth_login_result res;
    assert_int_equal(authfix_login(f, "tom", "pw-of-user", NULL, NULL, &res), AUTH_NEED_TOTP);
    assert_int_equal(res.user_id, e.id);
    assert_int_equal(authfix_login(f, "tom", "pw-of-user", "", NULL, NULL), AUTH_NEED_TOTP);
    /* A right code does not rescue a wrong password. */
    char code[7];
    code_at(&e, f->now, code);
    assert_int_equal(authfix_login(f, "tom", "wrong", code, NULL, NULL), AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_login(f, "tom", "pw-of-user", code, NULL, &res), AUTH_OK);
    assert_false(res.recovery_code_used);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM audit_log WHERE outcome = 'denied'"
                                      " AND detail->>'reason' = 'second_factor_needed'"),
                     2);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM audit_log WHERE outcome = 'success'"
                                      " AND detail->>'factor' = 'totp'"),
                     1);
    auth_strv_free(e.recovery);
}

static void test_totp_accepts_one_step_either_side(void **state)
{
    struct authfix *f = *state;
    struct enrolled e;
    enrol(f, "tom", &e);
    f->now += 60; /* well past the step used to confirm enrolment */
    char code[7];
    /* A phone 30 s behind: the code of the previous step. */
    code_at(&e, f->now - 30, code);
    assert_int_equal(authfix_login(f, "tom", "pw-of-user", code, NULL, NULL), AUTH_OK);
    f->now += 30;
    code_at(&e, f->now, code);
    assert_int_equal(authfix_login(f, "tom", "pw-of-user", code, NULL, NULL), AUTH_OK);
    /* A phone 30 s ahead: the code of the next step. */
    code_at(&e, f->now + 30, code);
    assert_int_equal(authfix_login(f, "tom", "pw-of-user", code, NULL, NULL), AUTH_OK);
    auth_strv_free(e.recovery);
}

static void test_totp_refuses_two_steps_away(void **state)
{
    struct authfix *f = *state;
    struct enrolled e;
    enrol(f, "tom", &e);
    f->now += 300;
    char code[7];
    code_at(&e, f->now - 60, code);
    assert_int_equal(authfix_login(f, "tom", "pw-of-user", code, NULL, NULL), AUTH_BAD_CREDENTIALS);
    code_at(&e, f->now + 60, code);
    assert_int_equal(authfix_login(f, "tom", "pw-of-user", code, NULL, NULL), AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM audit_log WHERE outcome = 'failure'"
                                      " AND detail->>'reason' = 'bad_totp'"),
                     2);
    /* The current one still works: the refusals were about the time. */
    code_at(&e, f->now, code);
    assert_int_equal(authfix_login(f, "tom", "pw-of-user", code, NULL, NULL), AUTH_OK);
    auth_strv_free(e.recovery);
}

static void test_totp_refuses_replayed_code(void **state)
{
    struct authfix *f = *state;
    struct enrolled e;
    enrol(f, "tom", &e);
    char code[7], older[7];
    code_at(&e, f->now, code);
    code_at(&e, f->now - 30, older);
    assert_int_equal(authfix_login(f, "tom", "pw-of-user", code, NULL, NULL), AUTH_OK);
    /* Same code again, within its validity: refused. */
    assert_int_equal(authfix_login(f, "tom", "pw-of-user", code, NULL, NULL), AUTH_BAD_CREDENTIALS);
    /* An older step, still inside the window, is refused too. */
    assert_int_equal(authfix_login(f, "tom", "pw-of-user", older, NULL, NULL),
                     AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM audit_log"
                                      " WHERE detail->>'reason' = 'totp_replay'"),
                     2);
    f->now += 30;
    code_at(&e, f->now, code);
    assert_int_equal(authfix_login(f, "tom", "pw-of-user", code, NULL, NULL), AUTH_OK);
    auth_strv_free(e.recovery);
}

static void test_confirmation_code_cannot_be_replayed_at_login(void **state)
{
    struct authfix *f = *state;
    int64_t id;
    assert_int_equal(auth_local_user_create(f->auth, "una", "pw", AUTH_ROLE_USER, &id), 0);
    char *uri = NULL;
    assert_int_equal(auth_totp_enroll_begin(f->auth, id, &uri), 0);
    struct enrolled e;
    secret_from_uri(uri, &e);
    free(uri);
    char code[7];
    code_at(&e, f->now, code);
    char **rc = NULL;
    assert_int_equal(auth_totp_enroll_confirm(f->auth, id, code, &rc), 0);
    assert_int_equal(authfix_login(f, "una", "pw", code, NULL, NULL), AUTH_BAD_CREDENTIALS);
    auth_strv_free(rc);
}

static void test_wrong_totp_codes_lock_the_account(void **state)
{
    struct authfix *f = *state;
    struct enrolled e;
    enrol(f, "tom", &e);
    char good[7], bad[16];
    code_at(&e, f->now, good);
    snprintf(bad, sizeof(bad), "%06d", (atoi(good) + 500000) % 1000000);
    for (int i = 0; i < 5; i++)
        assert_int_equal(authfix_login(f, "tom", "pw-of-user", bad, NULL, NULL),
                         AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_login(f, "tom", "pw-of-user", good, NULL, NULL), AUTH_LOCKED);
    auth_strv_free(e.recovery);
}

static void test_recovery_code_works_once(void **state)
{
    struct authfix *f = *state;
    struct enrolled e;
    enrol(f, "rob", &e);
    struct auth_login_result res;
    assert_int_equal(authfix_login(f, "rob", "pw-of-user", e.recovery[3], NULL, &res), AUTH_OK);
    assert_true(res.recovery_code_used);
    assert_int_equal(res.recovery_codes_left, 9);
    assert_int_equal(authfix_login(f, "rob", "pw-of-user", e.recovery[3], NULL, NULL),
                     AUTH_BAD_CREDENTIALS);
    /* Typed without dashes and in lower case, another code works. */
    char typed[32];
    size_t n = 0;
    for (const char *c = e.recovery[7]; *c; c++)
        if (*c != '-')
            typed[n++] = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
    typed[n] = '\0';
    assert_int_equal(authfix_login(f, "rob", "pw-of-user", typed, NULL, &res), AUTH_OK);
    assert_int_equal(res.recovery_codes_left, 8);
    assert_int_equal(authfix_login(f, "rob", "pw-of-user", "AAAA-BBBB-CCCC-DDDD", NULL, NULL),
                     AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM recovery_codes"
                                      " WHERE used_at IS NOT NULL"),
                     2);
    /* Another user's code is not this user's. */
    struct enrolled other;
    enrol(f, "sam", &other);
    assert_int_equal(authfix_login(f, "rob", "pw-of-user", other.recovery[0], NULL, NULL),
                     AUTH_BAD_CREDENTIALS);
    auth_strv_free(e.recovery);
    auth_strv_free(other.recovery);
}

static void test_regenerated_recovery_codes_replace_the_old_ones(void **state)
{
    struct authfix *f = *state;
    struct enrolled e;
    enrol(f, "rob", &e);
    char **fresh = NULL;
    assert_int_equal(auth_recovery_codes_regenerate(f->auth, e.id, &fresh), 0);
    assert_int_equal(authfix_login(f, "rob", "pw-of-user", e.recovery[0], NULL, NULL),
                     AUTH_BAD_CREDENTIALS);
    assert_int_equal(authfix_login(f, "rob", "pw-of-user", fresh[0], NULL, NULL), AUTH_OK);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM recovery_codes"), 10);
    auth_strv_free(fresh);
    auth_strv_free(e.recovery);
}

static void test_role_policy_requires_enrolment_before_access(void **state)
{
    struct authfix *f = *state;
    int64_t id;
    assert_int_equal(auth_local_user_create(f->auth, "adam", "pw", AUTH_ROLE_ADMIN, &id), 0);
    int64_t uid;
    assert_int_equal(auth_local_user_create(f->auth, "ursula", "pw", AUTH_ROLE_USER, &uid), 0);
    assert_int_equal(db_role_set_totp_required(f->db, "admin", true), 0);
    struct auth_login_result res;
    assert_int_equal(authfix_login(f, "adam", "pw", NULL, NULL, &res), AUTH_NEED_TOTP_ENROLL);
    assert_int_equal(res.user_id, id);
    assert_int_equal(res.role, AUTH_ROLE_ADMIN);
    /* Other roles are not affected. */
    assert_int_equal(authfix_login(f, "ursula", "pw", NULL, NULL, NULL), AUTH_OK);
    /* Once enrolled, the admin logs in with a code. */
    char *uri = NULL;
    assert_int_equal(auth_totp_enroll_begin(f->auth, id, &uri), 0);
    struct enrolled e;
    secret_from_uri(uri, &e);
    free(uri);
    char code[7];
    code_at(&e, f->now, code);
    char **rc = NULL;
    assert_int_equal(auth_totp_enroll_confirm(f->auth, id, code, &rc), 0);
    f->now += 30;
    code_at(&e, f->now, code);
    assert_int_equal(authfix_login(f, "adam", "pw", NULL, NULL, NULL), AUTH_NEED_TOTP);
    assert_int_equal(authfix_login(f, "adam", "pw", code, NULL, NULL), AUTH_OK);
    auth_strv_free(rc);
}

static void test_disabling_totp_removes_secret_and_codes(void **state)
{
    struct authfix *f = *state;
    struct enrolled e;
    enrol(f, "tom", &e);
    assert_int_equal(auth_totp_disable(f->auth, e.id), 0);
    assert_int_equal(authfix_login(f, "tom", "pw-of-user", NULL, NULL, NULL), AUTH_OK);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM recovery_codes"), 0);
    assert_int_equal(authfix_count(f, "SELECT count(*) FROM users WHERE totp_secret IS NOT NULL"),
                     0);
    auth_strv_free(e.recovery);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, totp_setup, totp_teardown)
    const struct CMUnitTest tests[] = {
        T(test_enrolment_uri_carries_a_160_bit_secret_for_atrium),
        T(test_enrolment_needs_a_right_code_and_yields_ten_recovery_codes),
        T(test_totp_required_when_enrolled),
        T(test_totp_accepts_one_step_either_side),
        T(test_totp_refuses_two_steps_away),
        T(test_totp_refuses_replayed_code),
        T(test_confirmation_code_cannot_be_replayed_at_login),
        T(test_wrong_totp_codes_lock_the_account),
        T(test_recovery_code_works_once),
        T(test_regenerated_recovery_codes_replace_the_old_ones),
        T(test_role_policy_requires_enrolment_before_access),
        T(test_disabling_totp_removes_secret_and_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
