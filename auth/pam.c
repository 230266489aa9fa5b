/*
 * The PAM back end: the host's own account stack (pam_unix, SSSD, LDAP,
 * Kerberos ...) under Atrium's service name, so an admin configures it in
 * /etc/pam.d/atrium like any other service.
 *
 * Only authentication and account management run: Atrium opens no Unix
 * session and sets no credentials on the broker's host.  Unix groups come
 * from NSS (getgrouplist) after PAM accepted the person, so groups from
 * /etc/group, LDAP or SSSD all count for entitlements.
 */
#include "auth-priv.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <pwd.h>
#include <security/pam_appl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Upper bounds on groups read for one person and on the buffer for one
 * group entry (big directory groups list thousands of members): they bound
 * what NSS can make us allocate. */
#define PAM_MAX_GROUPS 4096
#define PAM_MAX_NSS_BUF (4 * 1024 * 1024)

struct conv_data {
    const char *username;
    const char *password;
};

/*
 * Answers PAM's prompts: the password for hidden prompts, the user name for
 * visible ones (some modules ask again), nothing for messages.  Replies are
 * malloc'd because PAM frees them.
 */
static int conv(int n, const struct pam_message **msg, struct pam_response **ret_resp,
                void *appdata)
{
    const struct conv_data *d = appdata;
    if (n <= 0 || n > PAM_MAX_NUM_MSG)
        return PAM_CONV_ERR;
    struct pam_response *resp = calloc((size_t)n, sizeof(*resp));
    if (!resp)
        return PAM_BUF_ERR;
    for (int i = 0; i < n; i++) {
        const char *answer = NULL;
        switch (msg[i]->msg_style) {
        case PAM_PROMPT_ECHO_OFF:
            answer = d->password;
            break;
        case PAM_PROMPT_ECHO_ON:
            answer = d->username;
            break;
        case PAM_ERROR_MSG:
        case PAM_TEXT_INFO:
            continue;
        default:
            goto fail;
        }
        resp[i].resp = strdup(answer);
        if (!resp[i].resp)
            goto fail;
    }
    *ret_resp = resp;
    return PAM_SUCCESS;
fail:
    for (int i = 0; i < n; i++) {
        if (resp[i].resp) {
            OPENSSL_cleanse(resp[i].resp, strlen(resp[i].resp));
            free(resp[i].resp);
        }
    }
    free(resp);
    return PAM_CONV_ERR;
}

/*
 * Atrium throttles failures itself (account lock, address block), so a
 * module's own fail delay (pam_unix sleeps about 2 s) would only hold a
 * broker thread and help anyone trying to exhaust them.
 */
static void no_fail_delay(int status, unsigned int delay_us, void *appdata)
{
    (void)status;
    (void)delay_us;
    (void)appdata;
}

static int pam_to_errno(int pr)
{
    switch (pr) {
    case PAM_SUCCESS:
        return 0;
    case PAM_AUTH_ERR:
    case PAM_CRED_INSUFFICIENT:
    case PAM_MAXTRIES:
        return -EACCES;
    case PAM_USER_UNKNOWN:
        return -ENOENT;
    /* The account stack said no: expired, locked, outside allowed hours,
     * or a password that must be changed first (Atrium has no dialog for
     * changing it, so the person cannot proceed here). */
    case PAM_ACCT_EXPIRED:
    case PAM_PERM_DENIED:
    case PAM_NEW_AUTHTOK_REQD:
    case PAM_AUTHTOK_EXPIRED:
        return -EPERM;
    default:
        return -EIO;
    }
}

/* getgrgid_r returning its error as POSIX says, also for NSS shims (such as
 * nss_wrapper) that return -1 and leave the error in errno. */
static int grgid(gid_t gid, struct group *gr, char *buf, size_t size, struct group **ret)
{
    errno = 0;
    int e = getgrgid_r(gid, gr, buf, size, ret);
    return e < 0 ? errno : e;
}

/* The Unix groups of @username as a new string vector (empty when NSS does not know them). */
static int unix_groups(const char *username, char ***ret_groups)
{
    int r = 0;
    char **v = NULL;
    gid_t *gids = NULL;
    char *buf = NULL;
    size_t n_out = 0;

    long bufsize = sysconf(_SC_GETPW_R_SIZE_MAX);
    long grbufsize = sysconf(_SC_GETGR_R_SIZE_MAX);
    if (bufsize < 16384)
        bufsize = 16384;
    if (grbufsize > bufsize)
        bufsize = grbufsize;
    buf = malloc((size_t)bufsize);
    if (!buf) {
        r = -ENOMEM;
        goto out;
    }
    struct passwd pw, *pwp = NULL;
    int e = getpwnam_r(username, &pw, buf, (size_t)bufsize, &pwp);
    int ngroups = 0;
    if (e == 0 && pwp) {
        ngroups = 64;
        for (;;) {
            gid_t *g = realloc(gids, (size_t)ngroups * sizeof(*gids));
            if (!g) {
                r = -ENOMEM;
                goto out;
            }
            gids = g;
            int want = ngroups;
            if (getgrouplist(username, pw.pw_gid, gids, &want) >= 0) {
                ngroups = want;
                break;
            }
            if (want <= ngroups || want > PAM_MAX_GROUPS) {
                r = -E2BIG;
                goto out;
            }
            ngroups = want;
        }
    }
    v = calloc((size_t)ngroups + 1, sizeof(*v));
    if (!v) {
        r = -ENOMEM;
        goto out;
    }
    for (int i = 0; i < ngroups; i++) {
        struct group gr, *grp = NULL;
        while ((e = grgid(gids[i], &gr, buf, (size_t)bufsize, &grp)) == ERANGE &&
               bufsize < PAM_MAX_NSS_BUF) {
            char *bigger = realloc(buf, (size_t)bufsize * 2);
            if (!bigger) {
                r = -ENOMEM;
                goto out;
            }
            buf = bigger;
            bufsize *= 2;
        }
        /* A gid without a name (stale /etc/group) cannot be entitled: skip it. */
        if (e != 0 || !grp)
            continue;
        v[n_out] = strdup(grp->gr_name);
        if (!v[n_out]) {
            r = -ENOMEM;
            goto out;
        }
        n_out++;
    }
    *ret_groups = v;
    v = NULL;
out:
    auth_strv_free(v);
    free(gids);
    free(buf);
    return r;
}

int auth_pam_check(const char *service, const char *confdir, const char *username,
                   const char *password, const char *rhost, char ***ret_groups)
{
    if (!username || !password)
        return -EINVAL;
    struct conv_data d = {.username = username, .password = password};
    struct pam_conv pc = {.conv = conv, .appdata_ptr = &d};
    pam_handle_t *pamh = NULL;
    char **groups = NULL;
    int r;
    const char *svc = service ? service : AUTH_PAM_SERVICE;
    /* pam_start_confdir only when asked: test shims such as pam_wrapper
     * redirect plain pam_start and know nothing of the confdir variant. */
    int pr = confdir ? pam_start_confdir(svc, username, &pc, confdir, &pamh)
                     : pam_start(svc, username, &pc, &pamh);
    if (pr != PAM_SUCCESS) {
        log_debug("pam_start failed", "service", svc, "code", LOG_INT(pr));
        pamh = NULL;
        r = -EIO;
        goto out;
    }
    pr = pam_set_item(pamh, PAM_FAIL_DELAY, (const void *)no_fail_delay);
    if (pr == PAM_SUCCESS && rhost)
        pr = pam_set_item(pamh, PAM_RHOST, rhost);
    if (pr != PAM_SUCCESS) {
        r = -EIO;
        goto out;
    }
    pr = pam_authenticate(pamh, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
    if (pr == PAM_SUCCESS)
        pr = pam_acct_mgmt(pamh, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
    r = pam_to_errno(pr);
    if (r < 0) {
        log_debug("pam refused", "service", svc, "user", username, "pam", pam_strerror(pamh, pr));
        goto out;
    }
    if (ret_groups) {
        r = unix_groups(username, &groups);
        if (r < 0)
            goto out;
        *ret_groups = groups;
        groups = NULL;
    }
out:
    auth_strv_free(groups);
    if (pamh)
        pam_end(pamh, pr);
    return r;
}

static int pam_verify(struct auth *a, const char *username, const char *password, const char *rhost,
                      const struct db_user *user, struct auth_ident *ident)
{
    (void)user;
    return auth_pam_check(a->cfg.pam_service, a->cfg.pam_confdir, username, password, rhost,
                          &ident->unix_groups);
}

static int pam_after_login(struct auth *a, const struct db_user *user, const char *password,
                           const struct auth_ident *ident)
{
    (void)password;
    /* Memberships follow the groups NSS reports now: someone removed from
     * a Unix group loses its pools at their next log-in. */
    const char *const empty[] = {NULL};
    const char *const *names = ident->unix_groups ? (const char *const *)ident->unix_groups : empty;
    return db_membership_sync_unix(a->db, user->id, names, NULL);
}

const struct auth_backend_ops auth_backend_pam = {
    .source = "pam",
    .verify = pam_verify,
    .after_login = pam_after_login,
};
