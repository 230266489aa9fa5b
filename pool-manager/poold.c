/*
 * atrium-poold — keeps every pool true.
 *
 * Several may run (one per host); exactly one acts.  The acting one holds a
 * session-level PostgreSQL advisory lock: if its process or its connection
 * dies, the server drops the lock and a standby, which retries every second,
 * takes over and continues from the rows alone (see reconcile.c).
 *
 * The leader runs a pass when woken by a NOTIFY (a pool changed, a VM
 * changed, a provisioning was nudged by a failed assignment) and at least
 * every few seconds (deadlines and heartbeats age without any event); each
 * pass also requeues tasks whose worker stopped heart-beating them.
 */
#include "pool.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#define PASS_INTERVAL_MS 2000 /* leader: a pass at least this often */
#define STANDBY_RETRY_MS 1000 /* standby: try for the lease this often */
#define RECONNECT_MS 1000
#define TASK_STALE_S 30 /* a running task's worker is gone after this without a heartbeat */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: atrium-poold [--config PATH]\n"
            "\n"
            "Atrium's pool manager: provisions spare desktops, refreshes them at logoff,\n"
            "pushes new images. Runs on every host; one instance acts at a time.\n"
            "\n"
            "  -c, --config PATH  configuration file (default: $ATRIUM_CONFIG, else %s)\n"
            "  -h, --help         show this help\n"
            "  -V, --version      show the version\n",
            ATR_CONFIG_DEFAULT_PATH);
}

/* A clone this poold started, timed until it is ready. */
struct pending {
    int64_t vm_id;
    int64_t task_id;
    int64_t started_ms;
    int progress;
};
#define MAX_PENDING 256

struct poold {
    struct atr_config *cfg;
    struct pending pending[MAX_PENDING];
    size_t n_pending;
    struct pool_env env;
    struct db *db;
    bool leader;
    int sigfd;
};

/* Drain pending notifications; returns true if any arrived. */
static bool drain(struct poold *d)
{
    bool any = false;
    char *ch, *pl;
    while (d->db && db_notify_next(d->db, &ch, &pl) == 1) {
        free(ch);
        free(pl);
        any = true;
    }
    return any;
}

static int connect_db(struct poold *d)
{
    struct atr_error err = {0};
    int r = db_open(d->cfg->db.url, d->cfg->db.connect_timeout_s, "atrium-poold", &d->db, &err);
    if (r < 0) {
        log_warn("database unreachable, retrying", "error", err.msg);
        return r;
    }
    r = db_schema_check(d->db, &err);
    if (r < 0) {
        log_error("database schema not usable", "error", err.msg);
        return r;
    }
    const char *channels[] = {DB_CHANNEL_POOL, DB_CHANNEL_VM, DB_CHANNEL_TASK};
    for (size_t i = 0; i < 3; i++) {
        r = db_listen(d->db, channels[i]);
        if (r < 0)
            return r;
    }
    return 0;
}

/*
 * Log how long each clone took from the pass that started it (the pass a
 * lacking spare or an assignment's NOTIFY triggered) to `ready`: the time a
 * person waits when they take the last spare.
 */
static void time_pending(struct poold *d)
{
    static const char *const kinds[] = {"vm.provision", NULL};
    int64_t now = atr_now_mono_ms();
    /* Take every queued provisioning task: the ones this pass made and any a
     * previous leader left (requeued when it stopped heart-beating). */
    struct db_task *t = NULL;
    while (d->n_pending < MAX_PENDING && db_task_claim(d->db, 0, kinds, "poold", &t) == 1) {
        d->pending[d->n_pending++] = (struct pending){t->vm_id, t->id, now, 0};
        t = db_task_free(t);
    }
    for (size_t i = 0; i < d->n_pending;) {
        struct pending *p = &d->pending[i];
        struct db_vm vm;
        int r = db_vm_get(d->db, p->vm_id, &vm);
        bool gone = r == -ENOENT;
        bool ready = r == 0 && strcmp(vm.state, "ready") == 0;
        bool failed = r == 0 && !ready && strcmp(vm.state, "provisioning") != 0 &&
                      strcmp(vm.state, "booting") != 0;
        if (ready) {
            log_info("spare ready", "vm", vm.name, "state", vm.state, "after_ms",
                     LOG_INT(now - p->started_ms));
            db_task_finish(d->db, p->task_id, NULL, NULL);
        } else if (gone || failed) {
            char why[300];
            snprintf(why, sizeof(why), "VM %s: %.200s", gone ? "deleted" : vm.state,
                     gone ? "" : vm.last_error);
            log_warn("spare did not become ready", "vm", gone ? LOG_INT(p->vm_id) : vm.name,
                     "state", gone ? "deleted" : vm.state);
            db_task_finish(d->db, p->task_id, why, NULL);
        } else if (r == 0) {
            int pct = strcmp(vm.state, "booting") == 0 ? 50 : 10;
            if (pct != p->progress &&
                db_task_progress(d->db, p->task_id, pct, pct == 50 ? "booting" : "cloning") == 0)
                p->progress = pct;
            else
                db_task_progress(d->db, p->task_id, p->progress, NULL); /* heartbeat */
        }
        if (ready || gone || failed || r < 0)
            *p = d->pending[--d->n_pending];
        else
            i++;
    }
}

/* Wait for a notification, a signal or @timeout_ms.  Returns 1 on a stop signal. */
static int wait_event(struct poold *d, int timeout_ms)
{
    struct pollfd p[2] = {{.fd = d->sigfd, .events = POLLIN},
                          {.fd = d->db ? db_fd(d->db) : -1, .events = POLLIN}};
    int r = poll(p, 2, timeout_ms);
    if (r < 0 && errno != EINTR)
        return -errno;
    if (r > 0 && (p[0].revents & POLLIN)) {
        struct signalfd_siginfo si;
        if (read(d->sigfd, &si, sizeof(si)) == sizeof(si))
            log_info("stopping", "signal", strsignal((int)si.ssi_signo));
        return 1;
    }
    return 0;
}

static int run(struct poold *d)
{
    int64_t next_pass = 0;
    for (;;) {
        /* (re)connect: a PostgreSQL restart costs the lease, never state */
        if (!d->db || db_ensure(d->db) < 0) {
            if (d->leader)
                log_warn("lost the database: no longer acting");
            d->leader = false;
            if (!d->db) {
                int r = connect_db(d);
                if (r == -EPROTONOSUPPORT || r == -ESTALE || r == -EBADMSG)
                    return r;
                if (r < 0)
                    d->db = db_close(d->db);
            }
            if (!d->db || db_fd(d->db) < 0) {
                if (wait_event(d, RECONNECT_MS) == 1)
                    return 0;
                continue;
            }
        }
        if (db_reconnected(d->db) && d->leader) {
            log_warn("database connection was re-made: lease lost, competing again");
            d->leader = false;
        }
        if (!d->leader) {
            bool got = false;
            if (db_try_lock(d->db, DB_LOCK_POOLD_LEADER, &got) == 0 && got) {
                d->leader = true;
                next_pass = 0;
                int requeued = db_task_requeue_stale(d->db, TASK_STALE_S);
                log_info("acting as pool manager", "requeued_tasks", LOG_INT(requeued));
            }
        }
        if (d->leader && atr_now_mono_ms() >= next_pass) {
            drain(d);
            /* Tasks whose worker died (hostd killed, or it could not say it
             * finished) go back to the queue on every pass, not only when a
             * leader takes over; their workers heart-beat them. */
            int requeued = db_task_requeue_stale(d->db, TASK_STALE_S);
            if (requeued > 0)
                log_warn("stale tasks requeued", "tasks", LOG_INT(requeued), "stale_s",
                         LOG_INT(TASK_STALE_S));
            /* a VNC password whose ticket expired unused (displayd down, or
             * no native viewer since) must not stay in clear text */
            int wiped = db_ticket_wipe_spent(d->db);
            if (wiped > 0)
                log_info("spent vnc passwords wiped", "tickets", LOG_INT(wiped));
            struct pool_pass st = {0};
            int r = pool_reconcile(d->db, &d->env, &st);
            if (st.created || st.retired || st.refreshed || st.lost || st.fenced || st.ha_moved ||
                st.fence_retired)
                log_info("pass", "created", LOG_INT(st.created), "retired", LOG_INT(st.retired),
                         "refreshed", LOG_INT(st.refreshed), "lost", LOG_INT(st.lost), "fenced",
                         LOG_INT(st.fenced), "ha_moved", LOG_INT(st.ha_moved), "fence_retired",
                         LOG_INT(st.fence_retired), "sessions_ended", LOG_INT(st.sessions_ended));
            if (r < 0)
                log_warn("pass incomplete", "errno", LOG_INT(r));
            time_pending(d);
            next_pass = atr_now_mono_ms() + PASS_INTERVAL_MS;
        }
        int timeout = d->leader ? atr_deadline_left_ms(next_pass) : STANDBY_RETRY_MS;
        int w = wait_event(d, timeout);
        if (w == 1)
            return 0;
        if (drain(d) && d->leader)
            next_pass = 0; /* something changed: pass now */
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"help", no_argument, NULL, 'h'}, {0}};
    const char *config = NULL;
    int c;
    if (atr_version_requested(argc, argv, "atrium-poold"))
        return 0;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (c == 'c') {
            config = optarg;
        } else if (c == 'h') {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    log_init("poold", LOG_LEVEL_INFO);
    struct poold d = {.sigfd = -1};
    struct atr_error err = {0};
    if (atr_config_load(config, &d.cfg, &err) < 0) {
        fprintf(stderr, "atrium-poold: %s\n", err.msg);
        return 3;
    }
    log_set_level(d.cfg->log.level);
    pool_env_defaults(&d.env);
    d.env.data_dir = d.cfg->paths.data_dir;
    d.env.provision_timeout_s = d.cfg->poold.provision_timeout_s;
    d.env.failure_limit = d.cfg->poold.failure_limit;
    d.env.failure_window_s = d.cfg->poold.failure_window_s;
    d.env.host_stale_s = d.cfg->poold.host_stale_s;
    d.env.cpu_overcommit = d.cfg->poold.cpu_overcommit;
    d.env.fence_margin_s = d.cfg->poold.fence_margin_s;

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    d.sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (d.sigfd < 0) {
        fprintf(stderr, "atrium-poold: signalfd: %s\n", strerror(errno));
        atr_config_free(d.cfg);
        return 1;
    }
    log_info("starting", "pid", LOG_INT(getpid()));
    sd_notify(0, "READY=1");
    int r = run(&d);
    sd_notify(0, "STOPPING=1");
    if (r < 0)
        log_error("stopped on error", "errno", LOG_INT(r));
    db_close(d.db);
    close(d.sigfd);
    atr_config_free(d.cfg);
    return r < 0 ? 1 : 0;
}
