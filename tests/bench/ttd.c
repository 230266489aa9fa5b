/* ttd: time to desktop, as a person meets it, split like Horizon's logon
 * segments.  One run = log in through the API (fresh TLS connection), ask
 * for a desktop, open the console through displayd with the ticket, and stop
 * the clock at the first framebuffer update that shows the guest (at least
 * 500 lit pixels: its text on a black screen), then log off.
 *
 *   authentication  POST /api/v1/login round trip (TCP + TLS + argon2id)
 *   brokering       connect request sent -> the ticket row's created_at
 *                   (entitlement, assignment; the server's clock, same host)
 *   ticket          ticket created_at -> connect reply received
 *   handshake       console: VNC = TCP + RFB + VNC auth + ServerInit through
 *                   displayd; RDP = TCP + X.224 (ticket) + TLS + MCS +
 *                   capabilities (FreeRDP 2 client library)
 *   first frame     handshake done -> first update that shows the guest
 *   guest usable    (--runtime DIR) first frame -> the guest's serial port
 *                   says it reached its prompt (boot-time marker, or an
 *                   instant clone's identity line); 0 when it already had
 *
 * usage: ttd --broker URL --cacert PEM --db CONNINFO --pool ID --user NAME
 *            --password PW --protocol vnc|rdp --vnc PORT --rdp PORT --runs N
 *            [--cold]  [--label TEXT]  [--runtime DIR]
 * Warm runs wait for a spare that has been ready for 15 s (its guest booted).
 * --cold: a run starts when the pool has no ready VM (the VM of the previous
 * run is deleted after it, and the pool manager provisions its replacement
 * spare meanwhile); connect is repeated every 250 ms (not after Retry-After:
 * the bench measures provisioning, not the client's patience) until a
 * desktop is assigned.  (A pool with spare 0 is no use here: it never
 * provisions on demand, its 503 says "one is being prepared" all the same.)  Prints one table row per segment (p50, p95).
 */
#include <curl/curl.h>
#include <errno.h>
#include <freerdp/freerdp.h>
#include <freerdp/gdi/gdi.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <rfb/rfbclient.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { SEG_AUTH, SEG_BROKER, SEG_TICKET, SEG_HANDSHAKE, SEG_FRAME, SEG_USABLE, SEG_TOTAL, SEG_N };
static const char *const seg_names[SEG_N] = {"authentication", "brokering",   "ticket",
                                             "console handshake", "first frame", "guest usable",
                                             "total"};

static struct {
    const char *broker, *cacert, *db, *user, *password, *protocol, *label;
    const char *runtime; /* hostd's runtime dir: the guests' serial logs (--runtime) */
    int vnc_port, rdp_port, runs;
    long pool;
    bool cold;
} o = {.runs = 10};

static double now_real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static void die(const char *what)
{
    fprintf(stderr, "ttd: %s\n", what);
    exit(1);
}

/* ------------------------------------------------------------------ HTTP */

struct buf {
    char *p;
    size_t n;
};

static size_t on_body(char *d, size_t sz, size_t nm, void *u)
{
    struct buf *b = u;
    size_t add = sz * nm;
    char *p = realloc(b->p, b->n + add + 1);
    if (!p || b->n + add > 1 << 20)
        return 0;
    memcpy(p + b->n, d, add);
    b->n += add;
    p[b->n] = 0;
    b->p = p;
    return add;
}

/* POST @path with @body; returns the status, the JSON reply in @ret (or NULL). */
static long post(CURL *c, const char *csrf, const char *path, const char *body, json_t **ret)
{
    char url[512], hdr[256];
    struct buf b = {0};
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (csrf) {
        snprintf(hdr, sizeof(hdr), "X-CSRF-Token: %s", csrf);
        h = curl_slist_append(h, hdr);
    }
    snprintf(url, sizeof(url), "%s%s", o.broker, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    *ret = b.p ? json_loads(b.p, 0, NULL) : NULL;
    curl_slist_free_all(h);
    free(b.p);
    return status;
}

/* ------------------------------------------------------------------ pixels */

/* Pixels with any colour channel above 64 in a 32-bit framebuffer. */
static long lit(const uint8_t *fb, int w, int h, int stride)
{
    long n = 0;
    for (int y = 0; y < h; y++) {
        const uint8_t *row = fb + (size_t)y * (size_t)stride;
        for (int x = 0; x < w; x++)
            if (row[4 * x] > 64 || row[4 * x + 1] > 64 || row[4 * x + 2] > 64)
                n++;
    }
    return n;
}

#define SHOWS_GUEST 500

/* ------------------------------------------------------------------ VNC */

static const char *vnc_pw;
static double vnc_frame_at;

static char *vnc_password(rfbClient *cl)
{
    (void)cl;
    return strdup(vnc_pw);
}

static void vnc_frame(rfbClient *cl)
{
    if (vnc_frame_at == 0 &&
        lit(cl->frameBuffer, cl->width, cl->height, cl->width * 4) >= SHOWS_GUEST)
        vnc_frame_at = now_real_ms();
}

static void vnc_quiet(const char *fmt, ...)
{
    (void)fmt;
}

/* Returns 0 with the handshake and first-frame times in @ret_hs/@ret_ff. */
static int view_vnc(const char *password, int timeout_s, double *ret_hs, double *ret_ff)
{
    double start = now_real_ms();
    rfbClient *cl = rfbGetClient(8, 3, 4);
    vnc_pw = password;
    vnc_frame_at = 0;
    cl->GetPassword = vnc_password;
    cl->FinishedFrameBufferUpdate = vnc_frame;
    free(cl->serverHost);
    cl->serverHost = strdup("127.0.0.1");
    cl->serverPort = o.vnc_port;
    if (!rfbInitClient(cl, NULL, NULL)) {
        fprintf(stderr, "ttd: vnc: viewer refused\n");
        return -1;
    }
    double hs = now_real_ms();
    while (vnc_frame_at == 0 && now_real_ms() < hs + timeout_s * 1000.0) {
        int n = WaitForMessage(cl, 100000);
        if (n < 0 || (n > 0 && !HandleRFBServerMessage(cl)))
            break;
    }
    free(cl->frameBuffer);
    cl->frameBuffer = NULL;
    rfbClientCleanup(cl);
    if (vnc_frame_at == 0)
        return -1;
    *ret_hs = hs - start;
    *ret_ff = vnc_frame_at - hs;
    return 0;
}

/* ------------------------------------------------------------------ RDP */

static double rdp_frame_at;

static BOOL rdp_end_paint(rdpContext *ctx)
{
    rdpGdi *gdi = ctx->gdi;
    if (rdp_frame_at == 0 && gdi && gdi->primary_buffer &&
        lit(gdi->primary_buffer, (int)gdi->width, (int)gdi->height, (int)gdi->stride) >=
            SHOWS_GUEST)
        rdp_frame_at = now_real_ms();
    return TRUE;
}

static BOOL rdp_post_connect(freerdp *inst)
{
    if (!gdi_init(inst, PIXEL_FORMAT_BGRX32))
        return FALSE;
    inst->update->EndPaint = rdp_end_paint;
    return TRUE;
}

static DWORD rdp_accept_cert(freerdp *inst, const char *host, UINT16 port, const char *cn,
                             const char *subject, const char *issuer, const char *fp, DWORD flags)
{
    (void)inst, (void)host, (void)port, (void)cn, (void)subject, (void)issuer, (void)fp;
    (void)flags;
    return 2; /* accept for this session only (the test's throw-away certificate) */
}

static int view_rdp(const char *ticket, int timeout_s, double *ret_hs, double *ret_ff)
{
    int r = -1;
    double start = now_real_ms();
    freerdp *inst = freerdp_new();
    if (!inst)
        return -1;
    inst->PostConnect = rdp_post_connect;
    inst->VerifyCertificateEx = rdp_accept_cert;
    if (!freerdp_context_new(inst)) {
        freerdp_free(inst);
        return -1;
    }
    rdpSettings *s = inst->settings;
    char lb[128];
    snprintf(lb, sizeof(lb), "Cookie: msts=%s", ticket);
    freerdp_settings_set_string(s, FreeRDP_ServerHostname, "127.0.0.1");
    freerdp_settings_set_uint32(s, FreeRDP_ServerPort, (UINT32)o.rdp_port);
    freerdp_settings_set_string(s, FreeRDP_Username, o.user);
    freerdp_settings_set_string(s, FreeRDP_Password, "");
    freerdp_settings_set_bool(s, FreeRDP_NlaSecurity, FALSE);
    freerdp_settings_set_bool(s, FreeRDP_RdpSecurity, FALSE);
    freerdp_settings_set_bool(s, FreeRDP_TlsSecurity, TRUE);
    freerdp_settings_set_bool(s, FreeRDP_IgnoreCertificate, TRUE);
    freerdp_settings_set_uint32(s, FreeRDP_DesktopWidth, 720);
    freerdp_settings_set_uint32(s, FreeRDP_DesktopHeight, 400);
    freerdp_settings_set_uint32(s, FreeRDP_ColorDepth, 32);
    /* FreeRDP 2 has no setter for it; the settings own (and free) the copy */
    s->LoadBalanceInfo = (BYTE *)_strdup(lb);
    s->LoadBalanceInfoLength = s->LoadBalanceInfo ? (UINT32)strlen(lb) : 0;
    rdp_frame_at = 0;
    if (!freerdp_connect(inst)) {
        fprintf(stderr, "ttd: rdp connect failed: %s\n",
                freerdp_get_last_error_string(freerdp_get_last_error(inst->context)));
        goto out;
    }
    double hs = now_real_ms();
    while (rdp_frame_at == 0 && now_real_ms() < hs + timeout_s * 1000.0 &&
           !freerdp_shall_disconnect(inst)) {
        HANDLE handles[64];
        DWORD n = freerdp_get_event_handles(inst->context, handles, 64);
        if (n == 0)
            break;
        WaitForMultipleObjects(n, handles, FALSE, 100);
        if (!freerdp_check_event_handles(inst->context))
            break;
    }
    if (rdp_frame_at == 0)
        fprintf(stderr, "ttd: rdp: no frame showing the guest within %d s (%s)\n", timeout_s,
                freerdp_shall_disconnect(inst) ? "server disconnected" : "timeout");
    freerdp_disconnect(inst);
    if (rdp_frame_at != 0) {
        *ret_hs = hs - start;
        *ret_ff = rdp_frame_at - hs;
        r = 0;
    }
out:
    freerdp_context_free(inst);
    freerdp_free(inst);
    return r;
}

/* ------------------------------------------------------------------ a run */

static PGconn *pg;

static double ticket_created_ms(int64_t session)
{
    char sid[24];
    snprintf(sid, sizeof(sid), "%" PRId64, session);
    const char *p[] = {sid};
    PGresult *res = PQexecParams(pg,
                                 "SELECT extract(epoch FROM created_at) * 1000 FROM console_tickets"
                                 " WHERE session_id = $1 ORDER BY id DESC LIMIT 1",
                                 1, NULL, p, NULL, NULL, 0);
    double v = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        v = atof(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

static void sql(const char *q)
{
    PGresult *res = PQexec(pg, q);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        fprintf(stderr, "ttd: %s: %s", q, PQerrorMessage(pg));
    PQclear(res);
}

static bool sql_true(const char *q)
{
    PGresult *res = PQexec(pg, q);
    bool t = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
             strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return t;
}

/*
 * "Guest usable": the desktop's guest reached its prompt — its serial port
 * has the boot-time marker (a booted VM) or the identity line (an instant
 * clone, which resumed at the prompt).  The first frame of a cold linked
 * clone is its boot text, long before that.  Waits at most @timeout_s;
 * returns when it was seen (wall-clock ms), or -1.
 */
static double wait_usable(int64_t session, int timeout_s)
{
    char sid[24];
    snprintf(sid, sizeof(sid), "%" PRId64, session);
    const char *p[] = {sid};
    PGresult *res = PQexecParams(pg, "SELECT vm_id FROM desktop_sessions WHERE id = $1", 1, NULL, p,
                                 NULL, NULL, 0);
    long vm = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1
                  ? atol(PQgetvalue(res, 0, 0))
                  : 0;
    PQclear(res);
    if (vm <= 0)
        return -1;
    char path[1024];
    snprintf(path, sizeof(path), "%s/vms/%ld/serial.log", o.runtime, vm);
    double deadline = now_real_ms() + timeout_s * 1000.0;
    while (now_real_ms() < deadline) {
        FILE *f = fopen(path, "re");
        char line[512];
        bool seen = false;
        while (f && !seen && fgets(line, sizeof(line), f))
            seen = strncmp(line, "ATRIUM-MARK:", 12) == 0 || strncmp(line, "ATRIUM-IDENTITY ", 16) == 0;
        if (f)
            fclose(f);
        if (seen)
            return now_real_ms();
        sleep_ms(50);
    }
    return -1;
}

static int one_run(double seg[SEG_N])
{
    int ret = -1;
    json_t *j = NULL;
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_CAINFO, o.cacert);
    curl_easy_setopt(c, CURLOPT_COOKIEFILE, "");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    char body[512], path[128], csrf[160], secret[64];
    double t0 = now_real_ms();
    snprintf(body, sizeof(body), "{\"username\":\"%s\",\"password\":\"%s\"}", o.user, o.password);
    if (post(c, NULL, "/api/v1/login", body, &j) != 200 || !json_string_value(json_object_get(j, "csrf_token")))
        goto out;
    snprintf(csrf, sizeof(csrf), "%s", json_string_value(json_object_get(j, "csrf_token")));
    json_decref(j);
    j = NULL;
    double t1 = now_real_ms();
    snprintf(path, sizeof(path), "/api/v1/desktops/%ld/connect", o.pool);
    snprintf(body, sizeof(body), "{\"protocol\":\"%s\"}", o.protocol);
    double sent;
    long st;
    for (;;) {
        sent = now_real_ms();
        st = post(c, csrf, path, body, &j);
        if (st != 503 || !o.cold || now_real_ms() - t1 > 300000)
            break;
        json_decref(j);
        j = NULL;
        sleep_ms(250);
    }
    if (st != 200) {
        fprintf(stderr, "ttd: connect answered %ld\n", st);
        goto out;
    }
    double t2 = now_real_ms();
    int64_t session = json_integer_value(json_object_get(j, "session_id"));
    const char *tk = NULL;
    if (strcmp(o.protocol, "vnc") == 0) {
        tk = json_string_value(json_object_get(json_object_get(j, "vnc"), "password"));
    } else {
        /* the ticket as the .rdp file carries it */
        const char *rdp = json_string_value(json_object_get(json_object_get(j, "rdp"), "rdp"));
        const char *m = rdp ? strstr(rdp, "msts=") : NULL;
        if (m && sscanf(m + 5, "%63[0-9a-f]", secret) == 1)
            tk = secret;
    }
    if (!tk)
        goto out;
    char keep[64];
    snprintf(keep, sizeof(keep), "%s", tk);
    double tc = ticket_created_ms(session);
    double hs = 0, ff = 0;
    int timeout = o.cold ? 120 : 30;
    int r = strcmp(o.protocol, "vnc") == 0 ? view_vnc(keep, timeout, &hs, &ff)
                                           : view_rdp(keep, timeout, &hs, &ff);
    if (r < 0)
        goto out;
    double shown = now_real_ms();
    seg[SEG_USABLE] = 0;
    if (o.runtime) {
        double u = wait_usable(session, o.cold ? 300 : 30);
        if (u < 0) {
            fprintf(stderr, "ttd: the guest never reached its prompt\n");
            goto out;
        }
        /* its marker may predate the first frame: then nothing to add */
        seg[SEG_USABLE] = u > shown + 50 ? u - shown : 0;
    }
    seg[SEG_AUTH] = t1 - t0;
    /* the connect request started at the last attempt; in cold runs the
     * waiting for provisioning is brokering too */
    double from = o.cold ? t1 : sent;
    seg[SEG_BROKER] = tc > 0 ? tc - from : t2 - from;
    seg[SEG_TICKET] = tc > 0 ? t2 - tc : 0;
    if (seg[SEG_TICKET] < 0) { /* clocks: the reply cannot precede the row */
        seg[SEG_BROKER] += seg[SEG_TICKET];
        seg[SEG_TICKET] = 0;
    }
    seg[SEG_HANDSHAKE] = hs;
    seg[SEG_FRAME] = ff;
    seg[SEG_TOTAL] = seg[SEG_AUTH] + (t2 - t1) + hs + ff + seg[SEG_USABLE];
    ret = 0;
out:
    json_decref(j);
    j = NULL;
    snprintf(path, sizeof(path), "/api/v1/desktops/%ld/logoff", o.pool);
    post(c, csrf, path, NULL, &j);
    json_decref(j);
    curl_easy_cleanup(c);
    return ret;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_d);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (strcmp(a, "--cold") == 0) {
            o.cold = true;
            continue;
        }
        i++;
        if (strcmp(a, "--broker") == 0)
            o.broker = v;
        else if (strcmp(a, "--cacert") == 0)
            o.cacert = v;
        else if (strcmp(a, "--db") == 0)
            o.db = v;
        else if (strcmp(a, "--pool") == 0)
            o.pool = atol(v);
        else if (strcmp(a, "--user") == 0)
            o.user = v;
        else if (strcmp(a, "--password") == 0)
            o.password = v;
        else if (strcmp(a, "--protocol") == 0)
            o.protocol = v;
        else if (strcmp(a, "--vnc") == 0)
            o.vnc_port = atoi(v);
        else if (strcmp(a, "--rdp") == 0)
            o.rdp_port = atoi(v);
        else if (strcmp(a, "--runs") == 0)
            o.runs = atoi(v);
        else if (strcmp(a, "--label") == 0)
            o.label = v;
        else if (strcmp(a, "--runtime") == 0)
            o.runtime = v;
        else
            die("unknown option (see the comment at the top of ttd.c)");
    }
    if (!o.broker || !o.cacert || !o.db || !o.user || !o.password || !o.protocol || o.pool <= 0 ||
        o.runs < 1 || o.runs > 1000 ||
        (strcmp(o.protocol, "vnc") != 0 && strcmp(o.protocol, "rdp") != 0))
        die("missing or bad options (see the comment at the top of ttd.c)");
    rfbClientLog = vnc_quiet;
    rfbClientErr = vnc_quiet;
    WLog_SetLogLevel(WLog_GetRoot(), WLOG_OFF);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pg = PQconnectdb(o.db);
    if (PQstatus(pg) != CONNECTION_OK)
        die(PQerrorMessage(pg));

    double(*v)[SEG_N] = calloc((size_t)o.runs, sizeof(*v));
    int ok = 0, failed = 0;
    char q[256];
    for (int run = 0; run < o.runs && failed < 5; run++) {
        /* a warm run starts with a ready spare; a cold one with no VM */
        snprintf(q, sizeof(q),
                 o.cold ? "SELECT count(*) = 0 FROM vms WHERE pool_id = %ld AND state = 'ready'"
                        : "SELECT count(*) > 0 FROM vms WHERE pool_id = %ld AND state = 'ready'"
                          " AND state_changed_at < now() - interval '15 seconds'",
                 o.pool);
        if (o.cold) {
            /* no spare ready: retire the one the pool manager keeps */
            char d[256];
            snprintf(d, sizeof(d),
                     "UPDATE vms SET desired_power = 'deleted', state = 'deleting' "
                     "WHERE pool_id = %ld AND state = 'ready'",
                     o.pool);
            sql(d);
        }
        for (int w = 0; w < 1200 && !sql_true(q); w++)
            sleep_ms(250);
        if (one_run(v[ok]) == 0)
            ok++;
        else
            failed++;
        if (o.cold) {
            snprintf(q, sizeof(q),
                     "UPDATE vms SET desired_power = 'deleted', state = 'deleting', "
                     "assigned_user_id = NULL WHERE pool_id = %ld",
                     o.pool);
            sql(q);
        }
    }
    if (getenv("TTD_HEADER")) {
        printf("| protocol | desktops | runs |");
        for (int s = 0; s < SEG_N; s++)
            printf(" %s p50 / p95 ms |", seg_names[s]);
        printf("\n|---|---|---|");
        for (int s = 0; s < SEG_N; s++)
            printf("---|");
        printf("\n");
    }
    printf("| %s | %s | %d of %d |", o.label ? o.label : o.protocol, o.cold ? "cold" : "spare ready",
           ok, o.runs);
    double col[1000];
    for (int s = 0; s < SEG_N; s++) {
        for (int i = 0; i < ok; i++)
            col[i] = v[i][s];
        if (ok)
            printf(" %.0f / %.0f |", pct(col, ok, 0.5), pct(col, ok, 0.95));
        else
            printf(" – |");
    }
    printf("\n");
    free(v);
    PQfinish(pg);
    curl_global_cleanup();
    return ok > 0 ? 0 : 1; /* failed runs show in the table's runs column */
}
