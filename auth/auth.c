/* The auth context: configuration, back-end order and small shared helpers. */
#include "auth-priv.h"

#include <ctype.h>
#include <errno.h>
#include <liboath/oath.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Every back end compiled in; auth_config.backends picks from these by source. */
static const struct auth_backend_ops *const all_backends[] = {
    &auth_backend_local,
    &auth_backend_pam,
};

void auth_config_defaults(struct auth_config *cfg)
{
    *cfg = (struct auth_config){
        .argon2 = {.m_cost_kib = AUTH_ARGON2_M_COST_KIB,
                   .t_cost = AUTH_ARGON2_T_COST,
                   .parallelism = AUTH_ARGON2_PARALLELISM},
        .account = {.threshold = 5, .base_s = 60, .max_s = 3600, .window_s = 900},
        /* An office behind one NAT address shares this counter, hence a
         * higher threshold than the account's. */
        .address = {.threshold = 20, .base_s = 60, .max_s = 3600, .window_s = 900},
        .backends = "local,pam",
        .pam_service = AUTH_PAM_SERVICE,
        .pam_confdir = NULL,
    };
}

const struct auth_backend_ops *auth_backend_find(const char *source)
{
    for (size_t i = 0; i < sizeof(all_backends) / sizeof(all_backends[0]); i++)
        if (strcmp(all_backends[i]->source, source) == 0)
            return all_backends[i];
    return NULL;
}

static bool backoff_valid(const struct db_backoff *b)
{
    return b->threshold >= 1 && b->base_s >= 1 && b->max_s >= b->base_s && b->window_s >= 1;
}

/* Parse "local,pam" into a->order. */
static int parse_order(struct auth *a)
{
    char *save = NULL;
    for (char *tok = strtok_r(a->backends, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        const struct auth_backend_ops *ops = auth_backend_find(tok);
        if (!ops || a->n_order == AUTH_MAX_BACKENDS)
            return -EINVAL;
        a->order[a->n_order++] = ops;
    }
    return 0;
}

static char *strdup_or_null(const char *s, bool *oom)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = true;
    return d;
}

int auth_new(struct db *db, const struct auth_config *cfg, struct auth **ret_auth)
{
    if (!db || !cfg || !backoff_valid(&cfg->account) || !backoff_valid(&cfg->address) ||
        cfg->argon2.t_cost < 1 || cfg->argon2.parallelism < 1 ||
        cfg->argon2.m_cost_kib < 8 * cfg->argon2.parallelism)
        return -EINVAL;
    int r = -ENOMEM;
    bool oom = false;
    struct auth *a = calloc(1, sizeof(*a));
    if (!a)
        goto out;
    a->db = db;
    a->cfg = *cfg;
    a->backends = strdup_or_null(cfg->backends ? cfg->backends : "local,pam", &oom);
    a->pam_service = strdup_or_null(cfg->pam_service ? cfg->pam_service : AUTH_PAM_SERVICE, &oom);
    a->pam_confdir = strdup_or_null(cfg->pam_confdir, &oom);
    if (oom)
        goto out;
    a->cfg.backends = NULL; /* parse_order cuts a->backends into tokens */
    a->cfg.pam_service = a->pam_service;
    a->cfg.pam_confdir = a->pam_confdir;
    r = parse_order(a);
    if (r < 0)
        goto out;
    /* liboath keeps no state we share across threads; init is reference
     * counted, so each context takes and drops its own reference. */
    if (oath_init() != OATH_OK) {
        r = -EIO;
        goto out;
    }
    a->oath_inited = true;
    /* Random bytes in the shape of a hash, not the hash of a random
     * password: hashing one costs a full argon2id run per context, and the
     * broker makes one context per database connection at start.  In a TCG
     * guest (the appliance's install tests) those runs alone kept the broker
     * from becoming ready within systemd's 90 s start timeout. */
    r = auth_password_decoy(&a->cfg.argon2, &a->decoy_hash);
    if (r < 0)
        goto out;
    *ret_auth = a;
    a = NULL;
out:
    auth_free(a);
    return r;
}

struct auth *auth_free(struct auth *a)
{
    if (!a)
        return NULL;
    if (a->oath_inited)
        oath_done();
    free(a->decoy_hash);
    free(a->backends);
    free(a->pam_service);
    free(a->pam_confdir);
    free(a);
    return NULL;
}

char **auth_strv_free(char **v)
{
    if (!v)
        return NULL;
    /* These vectors carry recovery codes: wipe before giving memory back. */
    for (char **p = v; *p; p++) {
        OPENSSL_cleanse(*p, strlen(*p));
        free(*p);
    }
    free(v);
    return NULL;
}

int64_t auth_now(const struct auth *a)
{
    if (a->cfg.clock)
        return a->cfg.clock(a->cfg.clock_userdata);
    return (int64_t)time(NULL);
}

bool auth_username_valid(const char *name)
{
    /* Mirrors users.username's CHECK so a bad name never reaches SQL. */
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > DB_USERNAME_MAX)
        return false;
    if (!((unsigned char)name[0] < 0x80 && isalnum((unsigned char)name[0])) && name[0] != '_')
        return false;
    for (size_t i = 1; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!(c < 0x80 && (isalnum(c) || c == '_' || c == '.' || c == '@' || c == '-')))
            return false;
    }
    return true;
}

int auth_random(void *buf, size_t n)
{
    return RAND_bytes(buf, (int)n) == 1 ? 0 : -EIO;
}
