/*
 * Prometheus counters of this broker process.  Worker threads bump them with
 * relaxed atomic adds (no lock: each counter is independent and a scrape
 * that sees one request's count before its latency is harmless).  Counts
 * that belong to the site rather than to this process — desktop sessions by
 * state, console tickets — are read from the database at scrape time, so
 * every broker of a site reports the same truth.
 */
#include "broker-priv.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUTES 96 /* routes.c has far fewer; checked at start-up */

static const int status_codes[] = {200, 201, 204, 400, 401, 403, 404, 405,
                                   409, 413, 415, 429, 431, 500, 503};
#define N_STATUS (sizeof(status_codes) / sizeof(status_codes[0]))
#define STATUS_OTHER N_STATUS

/* Upper bounds of the latency buckets, in microseconds. */
static const int64_t bucket_us[] = {1000,   2500,   5000,    10000,   25000,   50000,   100000,
                                    250000, 500000, 1000000, 2500000, 5000000, 10000000};
#define N_BUCKETS (sizeof(bucket_us) / sizeof(bucket_us[0]))

/* Index MAX_ROUTES - 1 counts requests that matched no route. */
static atomic_uint_least64_t requests[MAX_ROUTES][N_STATUS + 1];
static atomic_uint_least64_t latency_bucket[MAX_ROUTES][N_BUCKETS + 1];
static atomic_uint_least64_t latency_sum_us[MAX_ROUTES];
static atomic_uint_least64_t logins_ok, logins_failed;
static atomic_uint_least64_t assign_ok, assign_reconnect, assign_none_ready;

void brk_metrics_request(size_t route_index, int status, int64_t duration_us)
{
    size_t r = route_index < MAX_ROUTES - 1 ? route_index : MAX_ROUTES - 1;
    size_t s = STATUS_OTHER;
    for (size_t i = 0; i < N_STATUS; i++)
        if (status_codes[i] == status)
            s = i;
    atomic_fetch_add_explicit(&requests[r][s], 1, memory_order_relaxed);
    size_t b = N_BUCKETS;
    for (size_t i = 0; i < N_BUCKETS; i++) {
        if (duration_us <= bucket_us[i]) {
            b = i;
            break;
        }
    }
    atomic_fetch_add_explicit(&latency_bucket[r][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&latency_sum_us[r], (uint64_t)(duration_us > 0 ? duration_us : 0),
                              memory_order_relaxed);
}

void brk_metrics_login(bool ok)
{
    atomic_fetch_add_explicit(ok ? &logins_ok : &logins_failed, 1, memory_order_relaxed);
}

void brk_metrics_assignment(int result)
{
    atomic_uint_least64_t *c = result == BRK_ASSIGN_NEW         ? &assign_ok
                               : result == BRK_ASSIGN_RECONNECT ? &assign_reconnect
                                                                : &assign_none_ready;
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static uint64_t get(atomic_uint_least64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* A growing text buffer; on allocation failure it stays failed. */
struct buf {
    char *s;
    size_t len, cap;
    bool failed;
};

static void add(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(struct buf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->failed = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

static const char *route_label(size_t i, size_t n_routes)
{
    return i < n_routes ? brk_routes[i].metric_name : "unmatched";
}

static void render_db(struct buf *b, const json_t *stats)
{
    add(b, "# HELP atrium_desktop_sessions Desktop sessions by state (site-wide, from the "
           "database).\n# TYPE atrium_desktop_sessions gauge\n");
    static const char *const states[] = {"assigned", "connected", "disconnected", "logging_off",
                                         "ended"};
    const json_t *sessions = json_object_get(stats, "sessions");
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
        add(b, "atrium_desktop_sessions{state=\"%s\"} %lld\n", states[i],
            (long long)json_integer_value(json_object_get(sessions, states[i])));
    const json_t *vms = json_object_get(stats, "vms");
    add(b, "# HELP atrium_vms Desktop VMs by state (site-wide).\n# TYPE atrium_vms gauge\n");
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)vms, key, val)
    {
        /* States come from the schema's CHECK list: no quoting needed. */
        add(b, "atrium_vms{state=\"%s\"} %lld\n", key, (long long)json_integer_value(val));
    }
    const json_t *t = json_object_get(stats, "tickets");
    add(b,
        "# HELP atrium_console_tickets_issued_total Console tickets issued (site-wide, "
        "rows kept).\n# TYPE atrium_console_tickets_issued_total counter\n"
        "atrium_console_tickets_issued_total %lld\n",
        (long long)json_integer_value(json_object_get(t, "issued")));
    add(b,
        "# HELP atrium_console_tickets_used_total Console tickets redeemed.\n"
        "# TYPE atrium_console_tickets_used_total counter\n"
        "atrium_console_tickets_used_total %lld\n",
        (long long)json_integer_value(json_object_get(t, "used")));
    add(b,
        "# HELP atrium_console_tickets_expired_unused Console tickets that expired unused.\n"
        "# TYPE atrium_console_tickets_expired_unused gauge\n"
        "atrium_console_tickets_expired_unused %lld\n",
        (long long)json_integer_value(json_object_get(t, "expired_unused")));
}

char *brk_metrics_render(const json_t *db_stats)
{
    struct buf b = {.s = malloc(8192), .cap = 8192};
    if (!b.s)
        return NULL;
    b.s[0] = '\0';
    size_t n_routes = brk_routes_count();
    add(&b, "# HELP atrium_http_requests_total HTTP requests by route and status.\n"
            "# TYPE atrium_http_requests_total counter\n");
    for (size_t r = 0; r < MAX_ROUTES; r++) {
        if (r >= n_routes && r != MAX_ROUTES - 1)
            continue;
        for (size_t s = 0; s <= N_STATUS; s++) {
            uint64_t v = get(&requests[r][s]);
            if (!v)
                continue;
            if (s < N_STATUS)
                add(&b, "atrium_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                    route_label(r, n_routes), status_codes[s], (unsigned long long)v);
            else
                add(&b, "atrium_http_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                    route_label(r, n_routes), (unsigned long long)v);
        }
    }
    add(&b, "# HELP atrium_http_request_duration_seconds Time from request line to reply.\n"
            "# TYPE atrium_http_request_duration_seconds histogram\n");
    for (size_t r = 0; r < MAX_ROUTES; r++) {
        if (r >= n_routes && r != MAX_ROUTES - 1)
            continue;
        uint64_t cum = 0;
        for (size_t i = 0; i <= N_BUCKETS; i++)
            cum += get(&latency_bucket[r][i]);
        if (!cum)
            continue;
        const char *label = route_label(r, n_routes);
        uint64_t acc = 0;
        for (size_t i = 0; i < N_BUCKETS; i++) {
            acc += get(&latency_bucket[r][i]);
            add(&b, "atrium_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                label, (double)bucket_us[i] / 1e6, (unsigned long long)acc);
        }
        add(&b,
            "atrium_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n"
            "atrium_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
            "atrium_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
            label, (unsigned long long)cum, label, (double)get(&latency_sum_us[r]) / 1e6, label,
            (unsigned long long)cum);
    }
    add(&b,
        "# HELP atrium_logins_total Successful log-ins through this broker.\n"
        "# TYPE atrium_logins_total counter\natrium_logins_total %llu\n"
        "# HELP atrium_login_failures_total Refused log-ins through this broker.\n"
        "# TYPE atrium_login_failures_total counter\natrium_login_failures_total %llu\n",
        (unsigned long long)get(&logins_ok), (unsigned long long)get(&logins_failed));
    add(&b,
        "# HELP atrium_assignments_total Desktop connects through this broker by result.\n"
        "# TYPE atrium_assignments_total counter\n"
        "atrium_assignments_total{result=\"new\"} %llu\n"
        "atrium_assignments_total{result=\"reconnect\"} %llu\n"
        "atrium_assignments_total{result=\"none_ready\"} %llu\n",
        (unsigned long long)get(&assign_ok), (unsigned long long)get(&assign_reconnect),
        (unsigned long long)get(&assign_none_ready));
    if (db_stats)
        render_db(&b, db_stats);
    add(&b,
        "# HELP atrium_database_up Whether this scrape could read the database.\n"
        "# TYPE atrium_database_up gauge\natrium_database_up %d\n",
        db_stats ? 1 : 0);
    if (b.failed) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

bool brk_metrics_routes_fit(void)
{
    return brk_routes_count() < MAX_ROUTES;
}
