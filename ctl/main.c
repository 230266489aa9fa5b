/*
 * atriumctl — the admin CLI.  On a host it works through the database like
 * the daemons do.  Global options come before the command word; each command
 * lives in its own cmd-<name>.c.
 */
#include "ctl-priv.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct ctl_command commands[] = {
    {"db", "database schema: migrate, status", ctl_cmd_db},
    {"image", "golden images: import, list, show, delete", ctl_cmd_image},
    {"pool", "desktop pools: create, list, show, resize, set-image, clear, delete", ctl_cmd_pool},
    {"user", "people: create, password, entitle", ctl_cmd_user},
    {"vm", "VMs: list, show, start, stop, pause, resume, reset, console-path", ctl_cmd_vm},
    {"host", "hypervisor hosts: list, info", ctl_cmd_host},
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: atriumctl [--config PATH] [--json] COMMAND [ARGS...]\n"
            "\n"
            "Administer an Atrium site.\n"
            "\n"
            "Options:\n"
            "  -c, --config PATH  configuration file (default: $ATRIUM_CONFIG, else %s)\n"
            "      --json         machine-readable output where supported\n"
            "  -h, --help         show this help\n"
            "  -V, --version      show the version\n"
            "\n"
            "Commands:\n",
            ATR_CONFIG_DEFAULT_PATH);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n"
                 "Run 'atriumctl COMMAND --help' for a command's options.\n"
                 "\n"
                 "Exit status:\n"
                 "  0  success\n"
                 "  1  the operation failed\n"
                 "  2  usage error\n"
                 "  3  configuration file missing or invalid\n"
                 "  4  database unreachable\n"
                 "  5  database schema newer than this atriumctl, changed, or not migrated\n");
}

int ctl_load_config(struct ctl *ctl)
{
    if (ctl->cfg)
        return CTL_EXIT_OK;
    struct atr_error err = {0};
    if (atr_config_load(ctl->config_path, &ctl->cfg, &err) < 0) {
        fprintf(stderr, "atriumctl: %s\n", err.msg);
        return CTL_EXIT_CONFIG;
    }
    log_set_level(ctl->cfg->log.level > LOG_LEVEL_WARN ? ctl->cfg->log.level : LOG_LEVEL_WARN);
    return CTL_EXIT_OK;
}

int ctl_open_db(struct ctl *ctl, struct db **ret_db)
{
    int rc = ctl_load_config(ctl);
    if (rc != CTL_EXIT_OK)
        return rc;
    struct atr_error err = {0};
    if (db_open(ctl->cfg->db.url, ctl->cfg->db.connect_timeout_s, "atriumctl", ret_db, &err) <
        0) {
        fprintf(stderr, "atriumctl: %s\n", err.msg);
        return CTL_EXIT_DB;
    }
    return CTL_EXIT_OK;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {0},
    };
    struct ctl ctl = {0};
    log_init("atriumctl", LOG_LEVEL_WARN);

    /* '+': stop at the first non-option, which is the command word. */
    int c;
    while ((c = getopt_long(argc, argv, "+c:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            ctl.config_path = optarg;
            break;
        case 'j':
            ctl.json = true;
            break;
        case 'h':
            usage(stdout);
            return CTL_EXIT_OK;
        case 'V':
            atr_version_print(stdout, "atriumctl");
            return CTL_EXIT_OK;
        default:
            usage(stderr);
            return CTL_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return CTL_EXIT_USAGE;
    }
    const char *name = argv[optind];
    int first = optind;
    int rc = -1;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(commands[i].name, name) == 0) {
            /* Commands parse their own options from their word on;
             * optind = 0 makes glibc's getopt start afresh. */
            optind = 0;
            rc = commands[i].run(&ctl, argc - first, argv + first);
            break;
        }
    }
    if (rc < 0) {
        fprintf(stderr, "atriumctl: unknown command '%s' (see 'atriumctl --help')\n", name);
        rc = CTL_EXIT_USAGE;
    }
    atr_config_free(ctl.cfg);
    return rc;
}
