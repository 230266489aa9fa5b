/*
 * Specification of console tickets, on a real PostgreSQL: a ticket opens one
 * console once, for one protocol, within its lifetime; VNC passwords are
 * short and live shorter; every refusal is audited and repeated failures
 * from one address are throttled.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "db.h"
#include "db-ticket.h" /* also reached through db.h */
#include "pgtest.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fx {
    char *conninfo;
    struct db *db;
    int64_t vm_id, user_id, session_id;
};

static const struct db_backoff rule = {.threshold = 3, .base_s = 60, .max_s = 600, .window_s = 600};

static int64_t query_i64(struct fx *fx, const char *sql)
{
    char *v = pgt_query_value(fx->conninfo, sql);
    int64_t n = v ? strtoll(v, NULL, 10) : -1;
    free(v);
    return n;
}

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    struct atr_error err = {0};
    size_t n;
    const struct db_migration *list = db_migrations_builtin(&n);
    if (!fx || pgt_db_create(&fx->conninfo) < 0)
        return -1;
    if (db_open(fx->conninfo, 10, "test", &fx->db, &err) < 0 ||
        db_migrate(fx->db, list, n, NULL, NULL, NULL, &err) < 0) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return -1;
    }
    if (pgt_exec(fx->conninfo, "INSERT INTO users (username) VALUES ('alice')") < 0 ||
        pgt_exec(fx->conninfo, "INSERT INTO vms (name) VALUES ('vm-1')") < 0 ||
        pgt_exec(fx->conninfo, "INSERT INTO desktop_sessions (user_id, vm_id)"
                               " SELECT u.id, v.id FROM users u, vms v") < 0)
        return -1;
    fx->user_id = query_i64(fx, "SELECT id FROM users");
    fx->vm_id = query_i64(fx, "SELECT id FROM vms");
    fx->session_id = query_i64(fx, "SELECT id FROM desktop_sessions");
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    db_close(fx->db);
    pgt_db_drop(fx->conninfo);
    free(fx);
    return 0;
}

static struct db_ticket_request req_for(struct fx *fx, unsigned proto, int ttl)
{
    return (struct db_ticket_request){.vm_id = fx->vm_id,
                                      .session_id = fx->session_id,
                                      .user_id = fx->user_id,
                                      .protocol = proto,
                                      .client_addr = "192.0.2.1",
                                      .ttl_s = ttl};
}

static int64_t audit_count(struct fx *fx, const char *outcome, const char *reason)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM audit_log WHERE action = 'console.ticket' AND outcome = '%s'"
             " AND detail->>'reason' = '%s'",
             outcome, reason);
    return query_i64(fx, sql);
}

static void test_ticket_is_128_random_bits_stored_only_as_its_hash(void **state)
{
    struct fx *fx = *state;
    struct db_ticket_request req = req_for(fx, DB_PROTO_SPICE, 30);
    char a[DB_TICKET_LEN + 1], b[DB_TICKET_LEN + 1];
    assert_int_equal(db_ticket_issue(fx->db, &req, a), 0);
    assert_int_equal(db_ticket_issue(fx->db, &req, b), 0);
    assert_int_equal(strlen(a), 32);
    assert_int_equal(strspn(a, "0123456789abcdef"), 32);
    assert_string_not_equal(a, b);
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM console_tickets WHERE ticket_hash = sha256('%s'::bytea)"
             " AND vnc_password IS NULL AND expires_at <= created_at + interval '30 s'",
             a);
    assert_int_equal(query_i64(fx, sql), 1);
    /* the clear text is nowhere in the row */
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM console_tickets t WHERE t::text LIKE '%%%s%%'",
             a);
    assert_int_equal(query_i64(fx, sql), 0);
}

static void test_ticket_works_once_and_names_its_vm_and_session(void **state)
{
    struct fx *fx = *state;
    struct db_ticket_request req = req_for(fx, DB_PROTO_VNC, 30);
    char t[DB_TICKET_LEN + 1];
    struct db_ticket_grant g = {0};
    enum db_ticket_refusal why;
    assert_int_equal(db_ticket_issue(fx->db, &req, t), 0);
    assert_int_equal(db_ticket_redeem(fx->db, t, DB_PROTO_VNC, "198.51.100.7", &rule, &g, &why), 0);
    assert_int_equal(why, DB_TICKET_OK);
    assert_int_equal(g.vm_id, fx->vm_id);
    assert_int_equal(g.session_id, fx->session_id);
    assert_int_equal(g.user_id, fx->user_id);
    assert_int_equal(audit_count(fx, "success", "ok"), 1);

    struct db_ticket_grant g2 = {.vm_id = 4242};
    assert_int_equal(db_ticket_redeem(fx->db, t, DB_PROTO_VNC, "198.51.100.7", &rule, &g2, &why),
                     -EACCES);
    assert_int_equal(why, DB_TICKET_USED);
    assert_int_equal(g2.vm_id, 4242); /* untouched on failure */
    assert_int_equal(audit_count(fx, "failure", "used"), 1);
    assert_int_equal(query_i64(fx, "SELECT count(*) FROM console_tickets"
                                   " WHERE used_by_addr = '198.51.100.7'"),
                     1);
}

static void test_expired_ticket_is_refused(void **state)
{
    struct fx *fx = *state;
    struct db_ticket_request req = req_for(fx, DB_PROTO_SPICE, 5);
    char t[DB_TICKET_LEN + 1];
    struct db_ticket_grant g;
    enum db_ticket_refusal why;
    assert_int_equal(db_ticket_issue(fx->db, &req, t), 0);
    /* move the ticket's whole life into the past instead of waiting for it */
    assert_int_equal(pgt_exec(fx->conninfo, "UPDATE console_tickets SET"
                                            " created_at = now() - interval '6 s',"
                                            " expires_at = now() - interval '1 s'"),
                     0);
    assert_int_equal(db_ticket_redeem(fx->db, t, DB_PROTO_SPICE, "192.0.2.9", &rule, &g, &why),
                     -EACCES);
    assert_int_equal(why, DB_TICKET_EXPIRED);
    assert_int_equal(audit_count(fx, "failure", "expired"), 1);
}

static void test_ticket_for_another_protocol_is_refused_and_stays_usable(void **state)
{
    struct fx *fx = *state;
    struct db_ticket_request req = req_for(fx, DB_PROTO_SPICE, 30);
    char t[DB_TICKET_LEN + 1];
    struct db_ticket_grant g;
    enum db_ticket_refusal why;
    assert_int_equal(db_ticket_issue(fx->db, &req, t), 0);
    assert_int_equal(db_ticket_redeem(fx->db, t, DB_PROTO_RDP, "192.0.2.9", &rule, &g, &why),
                     -EACCES);
    assert_int_equal(why, DB_TICKET_WRONG_PROTOCOL);
    assert_int_equal(audit_count(fx, "failure", "wrong_protocol"), 1);
    assert_int_equal(db_ticket_redeem(fx->db, t, DB_PROTO_SPICE, "192.0.2.9", &rule, &g, &why), 0);
}

static void test_forged_ticket_is_refused(void **state)
{
    struct fx *fx = *state;
    struct db_ticket_grant g;
    enum db_ticket_refusal why;
    assert_int_equal(db_ticket_redeem(fx->db, "00000000000000000000000000000000", DB_PROTO_VNC,
                                      "192.0.2.10", &rule, &g, &why),
                     -EACCES);
    assert_int_equal(why, DB_TICKET_UNKNOWN);
    assert_int_equal(audit_count(fx, "failure", "unknown"), 1);
}

static void test_ttl_longer_than_30_s_is_refused(void **state)
{
    struct fx *fx = *state;
    struct db_ticket_request req = req_for(fx, DB_PROTO_SPICE, 31);
    char t[DB_TICKET_LEN + 1] = "untouched";
    assert_int_equal(db_ticket_issue(fx->db, &req, t), -EINVAL);
    assert_string_equal(t, "untouched");
    req.ttl_s = 0;
    assert_int_equal(db_ticket_issue(fx->db, &req, t), -EINVAL);
}

static void test_vnc_password_is_8_chars_and_expires_within_10_s(void **state)
{
    struct fx *fx = *state;
    struct db_ticket_request req = req_for(fx, DB_PROTO_VNC, 11);
    char pw[DB_TICKET_VNC_LEN + 1];
    assert_int_equal(db_ticket_issue_vnc(fx->db, &req, pw), -EINVAL);
    req.ttl_s = 10;
    req.protocol = DB_PROTO_SPICE;
    assert_int_equal(db_ticket_issue_vnc(fx->db, &req, pw), -EINVAL);
    req.protocol = DB_PROTO_VNC;
    assert_int_equal(db_ticket_issue_vnc(fx->db, &req, pw), 0);
    assert_int_equal(strlen(pw), 8);
    assert_int_equal(strspn(pw, DB_TICKET_VNC_ALPHABET), 8);
    /* the schema itself refuses a long-lived VNC password */
    assert_int_not_equal(pgt_exec(fx->conninfo,
                                  "UPDATE console_tickets SET expires_at = created_at +"
                                  " interval '20 s' WHERE vnc_password IS NOT NULL"),
                         0);

    char(*live)[DB_TICKET_VNC_LEN + 1] = NULL;
    size_t n = 0;
    assert_int_equal(db_ticket_vnc_live(fx->db, 16, &live, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(live[0], pw);
    free(live);

    /* once used, the clear text is gone and the password opens nothing */
    struct db_ticket_grant g;
    enum db_ticket_refusal why;
    assert_int_equal(db_ticket_redeem(fx->db, pw, DB_PROTO_VNC, "192.0.2.3", &rule, &g, &why), 0);
    assert_int_equal(g.vm_id, fx->vm_id);
    assert_int_equal(query_i64(fx, "SELECT count(*) FROM console_tickets"
                                   " WHERE vnc_password IS NOT NULL"),
                     0);
    assert_int_equal(db_ticket_redeem(fx->db, pw, DB_PROTO_VNC, "192.0.2.3", &rule, &g, &why),
                     -EACCES);
    assert_int_equal(db_ticket_vnc_live(fx->db, 16, &live, &n), 0);
    assert_int_equal(n, 0);
    free(live);
}

static void test_expired_vnc_password_is_wiped(void **state)
{
    struct fx *fx = *state;
    struct db_ticket_request req = req_for(fx, DB_PROTO_VNC, 10);
    char pw[DB_TICKET_VNC_LEN + 1];
    assert_int_equal(db_ticket_issue_vnc(fx->db, &req, pw), 0);
    assert_int_equal(pgt_exec(fx->conninfo, "UPDATE console_tickets SET"
                                            " created_at = now() - interval '11 s',"
                                            " expires_at = now() - interval '1 s'"),
                     0);
    char(*live)[DB_TICKET_VNC_LEN + 1] = NULL;
    size_t n = 9;
    assert_int_equal(db_ticket_vnc_live(fx->db, 16, &live, &n), 0);
    assert_int_equal(n, 0);
    free(live);
    assert_int_equal(query_i64(fx, "SELECT count(*) FROM console_tickets"
                                   " WHERE vnc_password IS NOT NULL"),
                     0);
}

/* What the pool manager runs on every pass: an expired, never used password
 * goes, a live one stays. */
static void test_spent_vnc_passwords_are_wiped_without_a_viewer(void **state)
{
    struct fx *fx = *state;
    struct db_ticket_request req = req_for(fx, DB_PROTO_VNC, 10);
    char pw[DB_TICKET_VNC_LEN + 1];
    assert_int_equal(db_ticket_issue_vnc(fx->db, &req, pw), 0);
    assert_int_equal(pgt_exec(fx->conninfo, "UPDATE console_tickets SET"
                                            " created_at = now() - interval '11 s',"
                                            " expires_at = now() - interval '1 s'"),
                     0);
    assert_int_equal(db_ticket_issue_vnc(fx->db, &req, pw), 0);
    assert_int_equal(db_ticket_wipe_spent(fx->db), 1);
    assert_int_equal(db_ticket_wipe_spent(fx->db), 0);
    assert_int_equal(query_i64(fx, "SELECT count(*) FROM console_tickets"
                                   " WHERE vnc_password IS NOT NULL AND expires_at > now()"),
                     1);
}

static void test_address_that_keeps_failing_is_throttled_even_with_a_good_ticket(void **state)
{
    struct fx *fx = *state;
    struct db_ticket_grant g;
    enum db_ticket_refusal why;
    for (int i = 0; i < rule.threshold; i++)
        assert_int_equal(db_ticket_redeem(fx->db, "ffffffffffffffffffffffffffffffff", DB_PROTO_VNC,
                                          "203.0.113.5", &rule, &g, &why),
                         -EACCES);
    assert_int_equal(db_ticket_throttled(fx->db, "203.0.113.5"), 1);
    assert_int_equal(db_ticket_throttled(fx->db, "203.0.113.6"), 0);

    struct db_ticket_request req = req_for(fx, DB_PROTO_VNC, 30);
    char t[DB_TICKET_LEN + 1];
    assert_int_equal(db_ticket_issue(fx->db, &req, t), 0);
    assert_int_equal(db_ticket_redeem(fx->db, t, DB_PROTO_VNC, "203.0.113.5", &rule, &g, &why),
                     -EACCES);
    assert_int_equal(why, DB_TICKET_THROTTLED);
    assert_int_equal(audit_count(fx, "denied", "throttled"), 1);
    /* the refusal did not burn the ticket: another address may still use it */
    assert_int_equal(db_ticket_redeem(fx->db, t, DB_PROTO_VNC, "203.0.113.6", &rule, &g, &why), 0);
}

struct race {
    const char *conninfo;
    const char *ticket;
    int result;
};

static void *race_one(void *arg)
{
    struct race *rc = arg;
    struct db *db = NULL;
    struct db_ticket_grant g;
    rc->result = -1;
    if (db_open(rc->conninfo, 10, "race", &db, NULL) == 0)
        rc->result = db_ticket_consume(db, rc->ticket, DB_PROTO_SPICE, NULL, &g, NULL);
    db_close(db);
    return NULL;
}

static void test_eight_viewers_racing_with_one_ticket_let_exactly_one_in(void **state)
{
    struct fx *fx = *state;
    struct db_ticket_request req = req_for(fx, DB_PROTO_SPICE, 30);
    char t[DB_TICKET_LEN + 1];
    assert_int_equal(db_ticket_issue(fx->db, &req, t), 0);
    pthread_t th[8];
    struct race rc[8];
    for (int i = 0; i < 8; i++) {
        rc[i] = (struct race){.conninfo = fx->conninfo, .ticket = t};
        assert_int_equal(pthread_create(&th[i], NULL, race_one, &rc[i]), 0);
    }
    int won = 0, refused = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        won += rc[i].result == 0;
        refused += rc[i].result == -EACCES;
    }
    assert_int_equal(won, 1);
    assert_int_equal(refused, 7);
}

static void test_view_only_ticket_is_vnc_or_browser_bound_to_a_session(void **state)
{
    struct fx *fx = *state;
    char t[DB_TICKET_LEN + 1];
    struct db_ticket_grant g = {0};

    /* SPICE and RDP cannot filter a shadow's input: no view-only tickets */
    struct db_ticket_request req = req_for(fx, DB_PROTO_SPICE, 30);
    req.view_only = true;
    assert_int_equal(db_ticket_issue(fx->db, &req, t), -EINVAL);
    req.protocol = DB_PROTO_RDP;
    assert_int_equal(db_ticket_issue(fx->db, &req, t), -EINVAL);
    /* a shadow watches one session */
    req = req_for(fx, DB_PROTO_BROWSER, 30);
    req.view_only = true;
    req.session_id = 0;
    assert_int_equal(db_ticket_issue(fx->db, &req, t), -EINVAL);
    assert_int_equal(query_i64(fx, "SELECT count(*) FROM console_tickets"), 0);

    /* the grant says view-only, and so does the audit row */
    req.session_id = fx->session_id;
    assert_int_equal(db_ticket_issue(fx->db, &req, t), 0);
    assert_int_equal(db_ticket_redeem(fx->db, t, DB_PROTO_BROWSER, "192.0.2.9", &rule, &g, NULL),
                     0);
    assert_true(g.view_only);
    assert_int_equal(g.session_id, fx->session_id);
    assert_int_equal(query_i64(fx, "SELECT count(*) FROM audit_log WHERE action = 'console.ticket'"
                                   " AND outcome = 'success' AND detail->>'view_only' = 'true'"),
                     1);
    char pw[DB_TICKET_VNC_LEN + 1];
    req.protocol = DB_PROTO_VNC;
    req.ttl_s = 10;
    assert_int_equal(db_ticket_issue_vnc(fx->db, &req, pw), 0);
    assert_int_equal(db_ticket_consume(fx->db, pw, DB_PROTO_VNC, NULL, &g, NULL), 0);
    assert_true(g.view_only);

    /* an ordinary ticket is not */
    req = req_for(fx, DB_PROTO_BROWSER, 30);
    assert_int_equal(db_ticket_issue(fx->db, &req, t), 0);
    assert_int_equal(db_ticket_consume(fx->db, t, DB_PROTO_BROWSER, NULL, &g, NULL), 0);
    assert_false(g.view_only);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ticket_is_128_random_bits_stored_only_as_its_hash,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_ticket_works_once_and_names_its_vm_and_session, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_expired_ticket_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_ticket_for_another_protocol_is_refused_and_stays_usable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forged_ticket_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ttl_longer_than_30_s_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vnc_password_is_8_chars_and_expires_within_10_s, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_expired_vnc_password_is_wiped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spent_vnc_passwords_are_wiped_without_a_viewer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_address_that_keeps_failing_is_throttled_even_with_a_good_ticket, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_eight_viewers_racing_with_one_ticket_let_exactly_one_in, setup, teardown),
        cmocka_unit_test_setup_teardown(test_view_only_ticket_is_vnc_or_browser_bound_to_a_session,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
