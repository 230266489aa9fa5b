/*
 * atrium-displayd: the display gateway daemon.  Loads the configuration,
 * connects to the database, opens every front end's port and serves until
 * SIGTERM/SIGINT (a signalfd in the gateway's poll set).
 */
#include "disp.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out, "Usage: atrium-displayd [--config PATH]\n"
                 "Serves VM consoles over VNC (and WebSocket) and SPICE to viewers that\n"
                 "present a one-time console ticket.\n"
                 "  -c, --config PATH  configuration file\n"
                 "  -h, --help         show this help\n"
                 "  -V, --version      show the version\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    const char *config = NULL;
    struct atr_config *cfg = NULL;
    struct db *db = NULL;
    struct disp_gateway *gw = NULL;
    struct atr_error err = {0};
    int c, rc = 1, sigfd = -1;

    if (atr_version_requested(argc, argv, "atrium-displayd"))
        return 0;
    log_init("displayd", LOG_LEVEL_INFO);
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (atr_config_load(config, &cfg, &err) < 0) {
        log_error("cannot load configuration", "error", err.msg);
        return 3;
    }
    log_set_level(cfg->log.level);

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigfd < 0) {
        log_error("signalfd failed", "errno", LOG_INT(errno));
        goto out;
    }
    if (db_open(cfg->db.url, cfg->db.connect_timeout_s, "atrium-displayd", &db, &err) < 0) {
        log_error("cannot connect to the database", "error", err.msg);
        rc = 4;
        goto out;
    }
    if (db_schema_check(db, &err) < 0) {
        log_error("database schema does not match", "error", err.msg);
        rc = 5;
        goto out;
    }
    if (disp_gateway_new(cfg, db, &gw, &err) < 0) {
        log_error("cannot start the display gateway", "error", err.msg);
        goto out;
    }
    sd_notify(0, "READY=1\nSTATUS=serving consoles");
    log_info("displayd ready", "vnc_port", LOG_INT(cfg->display.vnc_port), "spice_port",
             LOG_INT(cfg->display.spice_port));
    int r = disp_gateway_run(gw, sigfd);
    sd_notify(0, "STOPPING=1");
    if (r < 0)
        log_error("display gateway stopped", "errno", LOG_INT(-r));
    else
        log_info("displayd stopping");
    rc = r < 0 ? 1 : 0;
out:
    disp_gateway_free(gw);
    db_close(db);
    if (sigfd >= 0)
        close(sigfd);
    atr_config_free(cfg);
    return rc;
}
