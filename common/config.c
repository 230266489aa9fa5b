/*
 * The configuration file.
 *
 * inih does the INI syntax; this file owns the meaning.  Every key Atrium
 * accepts is one row of key_table below, with its type, default and limits,
 * so an admin's typo is caught at start-up with the file, line and key named
 * instead of being silently ignored.  Later modules add their keys here.
 */
#include "common.h"

#include <errno.h>
#include <ini.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum key_type { KT_STR, KT_INT, KT_BOOL, KT_LEVEL, KT_CHOICE };

struct key_def {
    const char *section;
    const char *key;
    enum key_type type;
    size_t offset;
    const char *def; /* default, in file syntax; NULL = empty/unset */
    long long min, max;
    const char *choices; /* KT_CHOICE: comma-separated */
    bool secret;
};

#define OFF(field) offsetof(struct atr_config, field)

static const struct key_def key_table[] = {
    {"db", "url", KT_STR, OFF(db.url), "dbname=atrium", 0, 0, NULL, true},
    {"db", "connect_timeout", KT_INT, OFF(db.connect_timeout_s), "10", 1, 600, NULL, false},
    {"paths", "runtime_dir", KT_STR, OFF(paths.runtime_dir), "/run/atrium", 0, 0, NULL, false},
    {"paths", "data_dir", KT_STR, OFF(paths.data_dir), "/var/lib/atrium", 0, 0, NULL, false},
    {"log", "level", KT_LEVEL, OFF(log.level), "info", 0, 0, NULL, false},
    {"hostd", "name", KT_STR, OFF(hostd.name), NULL, 0, 0, NULL, false},
    {"hostd", "address", KT_STR, OFF(hostd.address), NULL, 0, 0, NULL, false},
    {"hostd", "accel", KT_CHOICE, OFF(hostd.accel), "auto", 0, 0, "auto,kvm,tcg", false},
    {"hostd", "qemu", KT_STR, OFF(hostd.qemu), "/usr/bin/qemu-system-x86_64", 0, 0, NULL, false},
    {"hostd", "heartbeat", KT_INT, OFF(hostd.heartbeat_s), "2", 1, 60, NULL, false},
    {"hostd", "metrics_interval", KT_INT, OFF(hostd.metrics_interval_s), "5", 1, 3600, NULL,
     false},
    {"hostd", "metrics_retention_hours", KT_INT, OFF(hostd.metrics_retention_h), "24", 1, 8760,
     NULL, false},
    {"hostd", "bridge", KT_STR, OFF(hostd.bridge), NULL, 0, 0, NULL, false},
    {"hostd", "stop_timeout", KT_INT, OFF(hostd.stop_timeout_s), "60", 1, 3600, NULL, false},
    {"hostd", "fence_deadline", KT_INT, OFF(hostd.fence_deadline_s), "60", 5, 3600, NULL, false},
    {"broker", "listen", KT_STR, OFF(broker.listen), "0.0.0.0", 0, 0, NULL, false},
    {"broker", "port", KT_INT, OFF(broker.port), "8443", 1, 65535, NULL, false},
    {"broker", "tls", KT_BOOL, OFF(broker.tls), "true", 0, 0, NULL, false},
    {"broker", "tls_cert", KT_STR, OFF(broker.tls_cert), "/etc/atrium/tls/cert.pem", 0, 0, NULL,
     false},
    {"broker", "tls_key", KT_STR, OFF(broker.tls_key), "/etc/atrium/tls/key.pem", 0, 0, NULL,
     false},
    {"broker", "public_address", KT_STR, OFF(broker.public_address), NULL, 0, 0, NULL, false},
    {"broker", "session_ttl", KT_INT, OFF(broker.session_ttl_s), "28800", 60, 2592000, NULL,
     false},
    {"broker", "threads", KT_INT, OFF(broker.threads), "4", 1, 64, NULL, false},
    {"broker", "max_connections", KT_INT, OFF(broker.max_connections), "1000", 1, 100000, NULL,
     false},
    {"broker", "login_queue", KT_INT, OFF(broker.login_queue), "64", 1, 100000, NULL, false},
    {"broker", "connection_timeout", KT_INT, OFF(broker.connection_timeout_s), "30", 1, 3600,
     NULL, false},
    {"broker", "max_body_bytes", KT_INT, OFF(broker.max_body_bytes), "1048576", 1024, 67108864,
     NULL, false},
    {"broker", "max_image_mb", KT_INT, OFF(broker.max_image_mb), "65536", 1, 16777216, NULL,
     false},
    {"broker", "web_root", KT_STR, OFF(broker.web_root), NULL, 0, 0, NULL, false},
    {"display", "listen", KT_STR, OFF(display.listen), "0.0.0.0", 0, 0, NULL, false},
    {"display", "spice_port", KT_INT, OFF(display.spice_port), "3128", 1, 65535, NULL, false},
    {"display", "rdp_port", KT_INT, OFF(display.rdp_port), "3389", 1, 65535, NULL, false},
    {"display", "vnc_port", KT_INT, OFF(display.vnc_port), "5900", 1, 65535, NULL, false},
    {"display", "tls_cert", KT_STR, OFF(display.tls_cert), "/etc/atrium/tls/cert.pem", 0, 0, NULL,
     false},
    {"display", "tls_key", KT_STR, OFF(display.tls_key), "/etc/atrium/tls/key.pem", 0, 0, NULL,
     false},
    {"display", "spice_tls", KT_BOOL, OFF(display.spice_tls), "false", 0, 0, NULL, false},
    {"display", "rdp_gfx", KT_BOOL, OFF(display.rdp_gfx), "false", 0, 0, NULL, false},
    {"display", "relay_port", KT_INT, OFF(display.relay_port), "0", 0, 65535, NULL, false},
    {"display", "relay_address", KT_STR, OFF(display.relay_address), NULL, 0, 0, NULL, false},
    {"poold", "provision_timeout", KT_INT, OFF(poold.provision_timeout_s), "300", 10, 86400, NULL,
     false},
    {"poold", "failure_limit", KT_INT, OFF(poold.failure_limit), "3", 1, 1000, NULL, false},
    {"poold", "failure_window", KT_INT, OFF(poold.failure_window_s), "1200", 10, 604800, NULL,
     false},
    {"poold", "host_stale", KT_INT, OFF(poold.host_stale_s), "10", 3, 3600, NULL, false},
    {"poold", "cpu_overcommit", KT_INT, OFF(poold.cpu_overcommit), "8", 1, 64, NULL, false},
    {"poold", "fence_margin", KT_INT, OFF(poold.fence_margin_s), "10", 1, 600, NULL, false},
};

#define N_KEYS (sizeof(key_table) / sizeof(key_table[0]))

static void *field(struct atr_config *cfg, const struct key_def *k)
{
    return (char *)cfg + k->offset;
}

static const struct key_def *key_find(const char *section, const char *key)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(key_table[i].section, section) == 0 && strcmp(key_table[i].key, key) == 0)
            return &key_table[i];
    return NULL;
}

static bool section_known(const char *section)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(key_table[i].section, section) == 0)
            return true;
    return false;
}

static bool choice_ok(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return true;
        if (!comma)
            break;
        p = comma + 1;
    }
    return false;
}

/*
 * Store @value into the field of @k.  Returns 0, or -EINVAL/-ENOMEM with a
 * description of what was expected in @why.
 */
static int key_set(struct atr_config *cfg, const struct key_def *k, const char *value, char *why,
                   size_t why_len)
{
    switch (k->type) {
    case KT_STR:
    case KT_CHOICE: {
        if (k->type == KT_CHOICE && !choice_ok(k->choices, value)) {
            snprintf(why, why_len, "must be one of %s", k->choices);
            return -EINVAL;
        }
        char *dup = strdup(value);
        if (!dup) {
            snprintf(why, why_len, "out of memory");
            return -ENOMEM;
        }
        char **slot = field(cfg, k);
        free(*slot);
        *slot = dup;
        return 0;
    }
    case KT_INT: {
        long long n;
        if (atr_parse_ll(value, k->min, k->max, &n) < 0) {
            snprintf(why, why_len, "must be an integer from %lld to %lld", k->min, k->max);
            return -EINVAL;
        }
        *(int *)field(cfg, k) = (int)n;
        return 0;
    }
    case KT_BOOL: {
        static const char *const yes[] = {"true", "yes", "on", "1"};
        static const char *const no[] = {"false", "no", "off", "0"};
        for (size_t i = 0; i < 4; i++) {
            if (strcasecmp(value, yes[i]) == 0) {
                *(bool *)field(cfg, k) = true;
                return 0;
            }
            if (strcasecmp(value, no[i]) == 0) {
                *(bool *)field(cfg, k) = false;
                return 0;
            }
        }
        snprintf(why, why_len, "must be true or false");
        return -EINVAL;
    }
    case KT_LEVEL:
        if (log_level_from_string(value, field(cfg, k)) < 0) {
            snprintf(why, why_len, "must be one of debug,info,warn,error");
            return -EINVAL;
        }
        return 0;
    }
    return -EINVAL;
}

struct atr_config *atr_config_free(struct atr_config *cfg)
{
    if (!cfg)
        return NULL;
    for (size_t i = 0; i < N_KEYS; i++)
        if (key_table[i].type == KT_STR || key_table[i].type == KT_CHOICE)
            free(*(char **)field(cfg, &key_table[i]));
    free(cfg->path);
    free(cfg);
    return NULL;
}

struct atr_config *atr_config_new_defaults(void)
{
    struct atr_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return NULL;
    char why[128];
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct key_def *k = &key_table[i];
        if (!k->def) {
            if (k->type == KT_STR && !(*(char **)field(cfg, k) = strdup("")))
                return atr_config_free(cfg);
            continue;
        }
        if (key_set(cfg, k, k->def, why, sizeof(why)) < 0)
            return atr_config_free(cfg);
    }
    return cfg;
}

struct parse_state {
    struct atr_config *cfg;
    const char *name;
    char first_error[400];
    int line;        /* lines handed to inih so far: the current line */
    int error_line;  /* line of first_error */
    bool seen[N_KEYS];
    /* input: a FILE or a memory buffer */
    FILE *file;
    const char *mem, *mem_end;
};

/*
 * inih's reader callback.  Reading through it lets us know which line the
 * handler is looking at, so every message names its line.
 */
static char *read_line(char *str, int num, void *stream)
{
    struct parse_state *st = stream;
    char *r;
    if (st->file) {
        r = fgets(str, num, st->file);
    } else {
        if (st->mem >= st->mem_end || num <= 1)
            return NULL;
        const char *nl = memchr(st->mem, '\n', (size_t)(st->mem_end - st->mem));
        size_t len = nl ? (size_t)(nl - st->mem) + 1 : (size_t)(st->mem_end - st->mem);
        if (len > (size_t)num - 1)
            len = (size_t)num - 1;
        memcpy(str, st->mem, len);
        str[len] = '\0';
        st->mem += len;
        r = str;
    }
    if (r && (strchr(r, '\n') || (st->file ? feof(st->file) : st->mem >= st->mem_end)))
        st->line++;
    return r;
}

/* inih calls this once per name=value; returning 0 marks that line as an error. */
static int on_key(void *user, const char *section, const char *key, const char *value)
{
    struct parse_state *st = user;
    char why[160];

    if (st->first_error[0])
        return 1; /* keep the first problem only */
    st->error_line = st->line;
    if (!*section) {
        snprintf(st->first_error, sizeof(st->first_error),
                 "key '%s' is outside any [section]", key);
        return 0;
    }
    if (!section_known(section)) {
        snprintf(st->first_error, sizeof(st->first_error), "unknown section [%s]", section);
        return 0;
    }
    const struct key_def *k = key_find(section, key);
    if (!k) {
        snprintf(st->first_error, sizeof(st->first_error), "unknown key '%s' in section [%s]",
                 key, section);
        return 0;
    }
    size_t idx = (size_t)(k - key_table);
    if (st->seen[idx]) {
        snprintf(st->first_error, sizeof(st->first_error), "key '%s' in [%s] is set twice", key,
                 section);
        return 0;
    }
    st->seen[idx] = true;
    if (key_set(st->cfg, k, value, why, sizeof(why)) < 0) {
        snprintf(st->first_error, sizeof(st->first_error), "bad value '%.64s' for [%s] %s: %s",
                 value, section, key, why);
        return 0;
    }
    return 1;
}

static int config_finish(struct parse_state *st, int rc, struct atr_config **ret_cfg,
                         struct atr_error *err)
{
    if (rc != 0) {
        if (rc > 0 && st->first_error[0] && st->error_line <= rc)
            atr_error_set(err, -EINVAL, "%s:%d: %s", st->name, st->error_line, st->first_error);
        else if (rc > 0)
            atr_error_set(err, -EINVAL, "%s:%d: syntax error (expected [section] or key = value)",
                          st->name, rc);
        else
            atr_error_set(err, -ENOMEM, "%s: out of memory while reading", st->name);
        st->cfg = atr_config_free(st->cfg);
        return rc > 0 ? -EINVAL : -ENOMEM;
    }
    if (!*st->cfg->db.url) {
        atr_error_set(err, -EINVAL, "%s: [db] url must not be empty", st->name);
        st->cfg = atr_config_free(st->cfg);
        return -EINVAL;
    }
    st->cfg->path = strdup(st->name);
    if (!st->cfg->path) {
        st->cfg = atr_config_free(st->cfg);
        return atr_error_set(err, -ENOMEM, "out of memory");
    }
    *ret_cfg = st->cfg;
    return 0;
}

int atr_config_load_string(const char *text, size_t len, const char *name,
                           struct atr_config **ret_cfg, struct atr_error *err)
{
    struct parse_state st = {.name = name ? name : "(config)"};
    if (memchr(text, '\0', len))
        return atr_error_set(err, -EINVAL, "%s: contains a NUL byte", st.name);
    st.mem = text;
    st.mem_end = text + len;
    st.cfg = atr_config_new_defaults();
    if (!st.cfg)
        return atr_error_set(err, -ENOMEM, "out of memory");
    int rc = ini_parse_stream(read_line, &st, on_key, &st);
    return config_finish(&st, rc, ret_cfg, err);
}

int atr_config_load(const char *path, struct atr_config **ret_cfg, struct atr_error *err)
{
    if (!path || !*path)
        path = getenv("ATRIUM_CONFIG");
    if (!path || !*path)
        path = ATR_CONFIG_DEFAULT_PATH;

    FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        return atr_error_set(err, -e, "%s: cannot open config file: %s", path, strerror(e));
    }
    struct parse_state st = {.name = path, .file = f};
    st.cfg = atr_config_new_defaults();
    if (!st.cfg) {
        fclose(f);
        return atr_error_set(err, -ENOMEM, "out of memory");
    }
    int rc = ini_parse_stream(read_line, &st, on_key, &st);
    if (rc == 0 && ferror(f))
        rc = -1;
    fclose(f);
    return config_finish(&st, rc, ret_cfg, err);
}

void atr_config_dump(const struct atr_config *cfg, FILE *out)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct key_def *k = &key_table[i];
        const void *p = (const char *)cfg + k->offset;
        fprintf(out, "%s.%s = ", k->section, k->key);
        switch (k->type) {
        case KT_STR:
        case KT_CHOICE:
            fprintf(out, "%s\n", k->secret ? "(set)" : *(char *const *)p);
            break;
        case KT_INT:
            fprintf(out, "%d\n", *(const int *)p);
            break;
        case KT_BOOL:
            fprintf(out, "%s\n", *(const bool *)p ? "true" : "false");
            break;
        case KT_LEVEL: {
            static const char *const names[] = {"debug", "info", "warn", "error"};
            fprintf(out, "%s\n", names[*(const enum log_level *)p]);
            break;
        }
        }
    }
}
