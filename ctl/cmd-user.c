/* atriumctl user create | password | entitle | unentitle — the people who log in. */
#include "auth.h"
#include "ctl-priv.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static void user_usage(FILE *out)
{
    fprintf(out,
            "Usage: atriumctl user create NAME [--role admin|operator|user]\n"
            "                              [--password-stdin | --random-password | --pam]\n"
            "       atriumctl user password NAME (--password-stdin | --random-password)\n"
            "       atriumctl user entitle NAME POOL\n"
            "       atriumctl user unentitle NAME POOL\n"
            "\n"
            "  create    a local user (argon2id password) or, with --pam, a user whose\n"
            "            password the site's PAM stack checks (so pools can be given to\n"
            "            them before their first log-in); --random-password prints a new\n"
            "            20-character password once\n"
            "  password  set a local user's password\n"
            "  entitle   give POOL to user NAME\n"
            "  unentitle take POOL away from user NAME (a live session stays; entitlements\n"
            "            through groups are not touched)\n");
}

/* 20 characters from a 57-letter alphabet without look-alikes: ~116 bits. */
static int random_password(char out[static 21])
{
    static const char alphabet[] = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    unsigned char raw[64];
    size_t n = 0;
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        return -EIO;
    for (size_t i = 0; i < sizeof(raw) && n < 20; i++)
        if (raw[i] < 256 - 256 % (sizeof(alphabet) - 1)) /* no modulo bias */
            out[n++] = alphabet[raw[i] % (sizeof(alphabet) - 1)];
    out[n] = '\0';
    return n == 20 ? 0 : -EAGAIN;
}

static int read_password(char *buf, size_t size)
{
    if (!fgets(buf, (int)size, stdin))
        return -EINVAL;
    buf[strcspn(buf, "\r\n")] = '\0';
    return buf[0] ? 0 : -EINVAL;
}

/* Fill @pw from --password-stdin or --random-password; prints the random one. */
static int get_password(bool from_stdin, bool random, char *pw, size_t size, bool *ret_show)
{
    if (from_stdin == random) {
        fprintf(stderr, "atriumctl: give exactly one of --password-stdin, --random-password\n");
        return CTL_EXIT_USAGE;
    }
    if (from_stdin && read_password(pw, size) < 0) {
        fprintf(stderr, "atriumctl: no password on standard input\n");
        return CTL_EXIT_USAGE;
    }
    if (random) {
        int r;
        while ((r = random_password(pw)) == -EAGAIN)
            ;
        if (r < 0) {
            fprintf(stderr, "atriumctl: no randomness available\n");
            return CTL_EXIT_FAILED;
        }
    }
    *ret_show = random;
    return CTL_EXIT_OK;
}

static int user_id(struct db *db, const char *name, int64_t *ret)
{
    struct db_user *u = NULL;
    int r = db_user_get_by_name(db, name, &u);
    if (r == 0)
        *ret = u->id;
    db_user_free(u);
    if (r == -ENOENT)
        fprintf(stderr, "atriumctl: no user named '%s'\n", name);
    else if (r < 0)
        fprintf(stderr, "atriumctl: cannot read user '%s'\n", name);
    return r;
}

static void audit_user(struct db *db, const char *action, const char *name, json_t *detail)
{
    db_audit_add(db, &(struct db_audit_entry){.actor = "atriumctl",
                                              .action = action,
                                              .target_type = "user",
                                              .target_id = name,
                                              .outcome = "success",
                                              .detail = detail});
    json_decref(detail);
}

int ctl_cmd_user(struct ctl *ctl, int argc, char **argv)
{
    enum { O_ROLE = 256, O_STDIN, O_RANDOM, O_PAM };
    static const struct option opts[] = {
        {"role", required_argument, NULL, O_ROLE},
        {"password-stdin", no_argument, NULL, O_STDIN},
        {"random-password", no_argument, NULL, O_RANDOM},
        {"pam", no_argument, NULL, O_PAM},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    const char *role_name = "user";
    bool from_stdin = false, random = false, pam = false;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_ROLE:
            role_name = optarg;
            break;
        case O_STDIN:
            from_stdin = true;
            break;
        case O_RANDOM:
            random = true;
            break;
        case O_PAM:
            pam = true;
            break;
        case 'h':
            user_usage(stdout);
            return CTL_EXIT_OK;
        default:
            user_usage(stderr);
            return CTL_EXIT_USAGE;
        }
    }
    int nargs = argc - optind;
    const char *sub = nargs > 0 ? argv[optind] : "";
    const char *name = nargs > 1 ? argv[optind + 1] : NULL;
    bool create = strcmp(sub, "create") == 0 && nargs == 2;
    bool password = strcmp(sub, "password") == 0 && nargs == 2;
    bool entitle = strcmp(sub, "entitle") == 0 && nargs == 3;
    bool unentitle = strcmp(sub, "unentitle") == 0 && nargs == 3;
    if (!create && !password && !entitle && !unentitle) {
        fprintf(stderr, "atriumctl: unknown or incomplete user command (see 'atriumctl user --help')\n");
        return CTL_EXIT_USAGE;
    }
    enum auth_role role;
    if (auth_role_from_string(role_name, &role) < 0) {
        fprintf(stderr, "atriumctl: unknown role '%s' (admin, operator, user)\n", role_name);
        return CTL_EXIT_USAGE;
    }
    char pw[256] = "";
    bool show = false;
    int rc;
    if ((create && !pam) || password) {
        rc = get_password(from_stdin, random, pw, sizeof(pw), &show);
        if (rc != CTL_EXIT_OK)
            return rc;
    } else if (create && (from_stdin || random)) {
        fprintf(stderr, "atriumctl: --pam users have no Atrium password\n");
        return CTL_EXIT_USAGE;
    }

    struct db *db = NULL;
    rc = ctl_open_db(ctl, &db);
    if (rc != CTL_EXIT_OK)
        return rc;
    struct auth_config acfg;
    auth_config_defaults(&acfg);
    struct auth *a = NULL;
    int r = auth_new(db, &acfg, &a);
    rc = CTL_EXIT_FAILED;
    if (r < 0) {
        fprintf(stderr, "atriumctl: cannot set up authentication: %s\n", strerror(-r));
        goto out;
    }
    int64_t id = 0;
    if (create && pam) {
        r = db_user_create(db, &(struct db_user_new){.username = name, .source = "pam",
                                                     .role = role_name},
                           &id);
    } else if (create) {
        r = auth_local_user_create(a, name, pw, role, &id);
    } else if (password) {
        r = user_id(db, name, &id);
        if (r < 0)
            goto out;
        r = auth_local_password_set(a, id, pw);
        if (r == -ENOENT) {
            fprintf(stderr, "atriumctl: '%s' is not a local user\n", name);
            goto out;
        }
    } else {
        struct db_pool p;
        r = user_id(db, name, &id);
        if (r < 0)
            goto out;
        r = db_pool_get_by_name(db, argv[optind + 2], &p);
        if (r == -ENOENT) {
            fprintf(stderr, "atriumctl: no pool named '%s'\n", argv[optind + 2]);
            goto out;
        }
        if (r == 0 && unentitle) {
            r = db_entitlement_delete_user(db, p.id, id);
            if (r == -ENOENT) {
                fprintf(stderr, "atriumctl: %s has no entitlement of their own to pool %s\n", name,
                        p.name);
                goto out;
            }
            if (r == 0) {
                audit_user(db, "entitlement.delete", name, json_pack("{s:s}", "pool", p.name));
                printf("%s may no longer use pool %s\n", name, p.name);
                rc = CTL_EXIT_OK;
                goto out;
            }
        }
        int64_t eid;
        if (r == 0)
            r = db_entitlement_add_user(db, p.id, id, &eid);
        if (r == -EEXIST) {
            printf("%s already has pool %s\n", name, p.name);
            rc = CTL_EXIT_OK;
            goto out;
        }
        if (r == 0) {
            audit_user(db, "entitlement.add", name, json_pack("{s:s}", "pool", p.name));
            printf("%s may now use pool %s\n", name, p.name);
            rc = CTL_EXIT_OK;
            goto out;
        }
    }
    if (r == -EEXIST) {
        fprintf(stderr, "atriumctl: a user named '%s' already exists\n", name);
        goto out;
    }
    if (r == -EINVAL) {
        fprintf(stderr, "atriumctl: '%s' is not a valid user name, or the password is empty "
                        "or too long\n", name);
        goto out;
    }
    if (r < 0) {
        fprintf(stderr, "atriumctl: %s failed: %s\n", sub, strerror(-r));
        goto out;
    }
    audit_user(db, create ? "user.create" : "user.password", name,
               json_pack("{s:s, s:s}", "role", role_name, "source", pam ? "pam" : "local"));
    if (create)
        printf("created %s user %s (%s)\n", pam ? "PAM" : "local", name, role_name);
    else
        printf("password of %s changed\n", name);
    if (show)
        printf("password: %s\n", pw);
    rc = CTL_EXIT_OK;
out:
    explicit_bzero(pw, sizeof(pw));
    auth_free(a);
    db_close(db);
    return rc;
}
