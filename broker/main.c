/*
 * atrium-broker: the HTTPS entry of an Atrium site (user portal, admin and
 * automation API).  Start-up refuses a configuration, database or schema it
 * cannot serve, so a broker that runs is a broker that works; then it waits
 * for SIGTERM/SIGINT with sigwait, and stops cleanly.
 */
#include "broker-priv.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1,
    EXIT_USAGE = 2,
    EXIT_CONFIG = 3,
    EXIT_DB = 4,
    EXIT_SCHEMA = 5,
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: atrium-broker [--config PATH] [--port N] [--list-routes]\n"
            "\n"
            "Serve the Atrium portal and REST API over HTTPS.\n"
            "\n"
            "Options:\n"
            "  -c, --config PATH  configuration file (default: $ATRIUM_CONFIG, else %s)\n"
            "  -p, --port N       listen on port N instead of [broker] port; 0 picks a free\n"
            "                     port (logged as \"broker listening ... port=N\")\n"
            "      --list-routes  print \"METHOD PATH\" of every route and exit\n"
            "  -h, --help         show this help\n"
            "  -V, --version      show the version\n"
            "\n"
            "Exit status: 0 stopped by a signal, 1 failure, 2 usage, 3 configuration,\n"
            "4 database unreachable, 5 database schema not current.\n",
            ATR_CONFIG_DEFAULT_PATH);
}

static int schema_ok(struct brk_dbpool *pool)
{
    struct brk_conn *c = NULL;
    int r = brk_dbpool_get(pool, 10000, &c);
    if (r < 0) {
        log_error("database unreachable at start-up", "errno", LOG_INT(-r));
        return EXIT_DB;
    }
    struct atr_error err = {0};
    r = db_schema_check(c->db, &err);
    brk_dbpool_put(pool, c);
    if (r < 0) {
        log_error("refusing to start: database schema is not current", "error", err.msg);
        return EXIT_SCHEMA;
    }
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"port", required_argument, NULL, 'p'},
        {"list-routes", no_argument, NULL, 'L'},  {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},      {0},
    };
    const char *config_path = NULL;
    long long port = -1;
    int c;
    while ((c = getopt_long(argc, argv, "c:p:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 'p':
            if (atr_parse_ll(optarg, 0, 65535, &port) < 0) {
                fprintf(stderr, "atrium-broker: --port must be 0 to 65535\n");
                return EXIT_USAGE;
            }
            break;
        case 'L':
            brk_routes_print(stdout);
            return EXIT_OK;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        case 'V':
            atr_version_print(stdout, "atrium-broker");
            return EXIT_OK;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return EXIT_USAGE;
    }

    log_init("broker", LOG_LEVEL_INFO);
    if (!brk_metrics_routes_fit()) {
        log_error("route table larger than the metrics arrays");
        return EXIT_FAIL;
    }
    struct atr_config *cfg = NULL;
    struct brk_dbpool *pool = NULL;
    struct brk_server *server = NULL;
    struct atr_error err = {0};
    int rc = EXIT_OK;

    if (atr_config_load(config_path, &cfg, &err) < 0) {
        fprintf(stderr, "atrium-broker: %s\n", err.msg);
        rc = EXIT_CONFIG;
        goto out;
    }
    log_set_level(cfg->log.level);

    /* Block the stop signals before any thread exists, so every thread
     * inherits the mask and sigwait below is the only taker.  SIGPIPE from
     * a client that vanished mid-write must not kill the broker. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (brk_dbpool_new(cfg, cfg->broker.threads, &pool, &err) < 0) {
        log_error("cannot open database connections", "error", err.msg);
        rc = EXIT_DB;
        goto out;
    }
    rc = schema_ok(pool);
    if (rc != EXIT_OK)
        goto out;
    struct brk_server_options sopt = {.cfg = cfg, .port_override = (int)port};
    if (brk_server_start(&sopt, pool, &server, &err) < 0) {
        log_error("cannot start the HTTP server", "error", err.msg);
        rc = EXIT_FAIL;
        goto out;
    }
    sd_notify(0, "READY=1");
    log_info("broker ready");

    int sig = 0;
    sigwait(&stop, &sig);
    sd_notify(0, "STOPPING=1");
    log_info("broker stopping", "signal", LOG_INT(sig));
out:
    brk_server_stop(server);
    brk_dbpool_free(pool);
    atr_config_free(cfg);
    if (rc == EXIT_OK)
        log_info("broker stopped");
    return rc;
}
