/*
 * Client input → values.  jansson does the JSON and libmicrohttpd the query
 * string; what is left here is the thin glue that says which values the API
 * accepts.  Everything is checked before it reaches auth/ or db/, so that a
 * malformed value is a clear 400 rather than whatever the layer below makes
 * of it, and so the fuzz target can drive all of it without a server.
 */
#include "broker-priv.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static int fail(char *why, size_t why_len, const char *msg)
{
    snprintf(why, why_len, "%s", msg);
    return -EINVAL;
}

int brk_body_parse(const char *buf, size_t len, json_t **ret_obj, char *why, size_t why_len)
{
    json_error_t jerr;
    /* JSON_REJECT_DUPLICATES: {"role":"user","role":"admin"} must not mean
     * whichever the parser happened to keep.  jansson refuses invalid UTF-8
     * and, without JSON_ALLOW_NUL, "\u0000" inside strings. */
    json_t *v = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!v) {
        snprintf(why, why_len, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        return -EINVAL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        return fail(why, why_len, "the request body must be a JSON object");
    }
    *ret_obj = v;
    return 0;
}

/* The users table's own rule for names; anything else cannot be a user. */
static bool username_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > DB_USERNAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ok = isalnum(c) || c == '_' || (i > 0 && (c == '.' || c == '@' || c == '-'));
        if (!ok || c > 127)
            return false;
    }
    return true;
}

int brk_login_input_parse(const json_t *body, struct brk_login_input *ret, char *why,
                          size_t why_len)
{
    struct brk_login_input in = {0};
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)body, key, val)
    {
        if (strcmp(key, "username") != 0 && strcmp(key, "password") != 0 &&
            strcmp(key, "totp") != 0) {
            snprintf(why, why_len, "unknown member '%.64s'", key);
            return -EINVAL;
        }
    }
    if (atr_json_get_str(body, "username", &in.username) < 0)
        return fail(why, why_len, "username must be a string");
    if (atr_json_get_str(body, "password", &in.password) < 0)
        return fail(why, why_len, "password must be a string");
    int r = atr_json_get_str(body, "totp", &in.totp);
    if (r == -EINVAL)
        return fail(why, why_len, "totp must be a string");
    if (!username_ok(in.username))
        return fail(why, why_len, "username must be 1 to 128 letters, digits or ._@- (not first)");
    size_t plen = strlen(in.password);
    /* jansson strings may hold no NUL (we do not pass JSON_ALLOW_NUL), so
     * strlen is the real length. */
    if (plen < 1 || plen > AUTH_PASSWORD_MAX)
        return fail(why, why_len, "password must be 1 to 1024 bytes");
    if (in.totp && (strlen(in.totp) > 64))
        return fail(why, why_len, "totp must be at most 64 characters");
    if (in.totp && !*in.totp)
        in.totp = NULL;
    *ret = in;
    return 0;
}

int brk_members_check(const json_t *body, const char *const *allowed, char *why, size_t why_len)
{
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)body, key, val)
    {
        const char *const *a = allowed;
        while (*a && strcmp(*a, key) != 0)
            a++;
        if (!*a) {
            snprintf(why, why_len, "unknown member '%.64s'", key);
            return -EINVAL;
        }
    }
    return 0;
}

static const char *qget(const struct brk_query *q, const char *key)
{
    return q && q->get ? q->get(q->userdata, key) : NULL;
}

static int parse_bounded(const char *v, long long min, long long max, long long *ret)
{
    /* atr_parse_ll accepts a leading sign and spaces like strtoll does; a
     * query value must be plain digits. */
    if (!*v || strspn(v, "0123456789") != strlen(v) || strlen(v) > 18)
        return -EINVAL;
    return atr_parse_ll(v, min, max, ret);
}

int brk_page_parse(const struct brk_query *q, struct db_page *ret_page, char *why, size_t why_len)
{
    struct db_page page = {.limit = BRK_LIMIT_DEFAULT, .offset = 0};
    long long n;
    const char *v = qget(q, "limit");
    if (v) {
        if (parse_bounded(v, 1, BRK_LIMIT_MAX, &n) < 0)
            return fail(why, why_len, "limit must be an integer from 1 to 500");
        page.limit = (int)n;
    }
    v = qget(q, "offset");
    if (v) {
        if (parse_bounded(v, 0, BRK_OFFSET_MAX, &n) < 0)
            return fail(why, why_len, "offset must be an integer from 0 to 10000000");
        page.offset = n;
    }
    *ret_page = page;
    return 0;
}

int brk_filter_text(const struct brk_query *q, const char *key, const char *const *choices,
                    const char **ret, char *why, size_t why_len)
{
    const char *v = qget(q, key);
    if (!v) {
        *ret = NULL;
        return 0;
    }
    size_t n = strlen(v);
    if (n == 0 || n > BRK_FILTER_MAX) {
        snprintf(why, why_len, "filter %s must be 1 to %d characters", key, BRK_FILTER_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) {
            snprintf(why, why_len, "filter %s holds a control character", key);
            return -EINVAL;
        }
    }
    if (choices) {
        for (const char *const *c = choices; *c; c++) {
            if (strcmp(*c, v) == 0) {
                *ret = v;
                return 0;
            }
        }
        snprintf(why, why_len, "filter %s has an unknown value", key);
        return -EINVAL;
    }
    *ret = v;
    return 0;
}

int brk_filter_id(const struct brk_query *q, const char *key, int64_t *ret, char *why,
                  size_t why_len)
{
    const char *v = qget(q, key);
    if (!v) {
        *ret = 0;
        return 0;
    }
    long long n;
    if (parse_bounded(v, 1, INT64_MAX, &n) < 0) {
        snprintf(why, why_len, "filter %s must be a positive integer id", key);
        return -EINVAL;
    }
    *ret = n;
    return 0;
}

/* Does @s match @shape, where 'd' is a digit and anything else itself? */
static size_t match_shape(const char *s, const char *shape)
{
    size_t i = 0;
    for (; shape[i]; i++) {
        if (shape[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != shape[i])
            return 0;
    }
    return i;
}

int brk_filter_time(const struct brk_query *q, const char *key, const char **ret, char *why,
                    size_t why_len)
{
    const char *v = qget(q, key);
    if (!v) {
        *ret = NULL;
        return 0;
    }
    /* 2026-11-25, optionally T12:00[:00[.123456]], optionally Z or ±hh[:mm].
     * PostgreSQL parses the value; this only keeps its other input forms
     * ("now", "epoch", "infinity") out of the API. */
    const char *p = v;
    size_t n = match_shape(p, "dddd-dd-dd");
    bool ok = n > 0;
    p += n;
    if (ok && (*p == 'T' || *p == ' ')) {
        n = match_shape(p + 1, "dd:dd");
        ok = n > 0;
        p += 1 + n;
        if (ok && *p == ':') {
            n = match_shape(p + 1, "dd");
            ok = n > 0;
            p += 1 + n;
            if (ok && *p == '.') {
                p++;
                size_t frac = strspn(p, "0123456789");
                ok = frac >= 1 && frac <= 6;
                p += frac;
            }
        }
    }
    if (ok && *p == 'Z') {
        p++;
    } else if (ok && (*p == '+' || *p == '-')) {
        n = match_shape(p + 1, "dd");
        ok = n > 0;
        p += 1 + n;
        if (ok && *p == ':') {
            n = match_shape(p + 1, "dd");
            ok = n > 0;
            p += 1 + n;
        }
    }
    if (!ok || *p) {
        snprintf(why, why_len, "filter %s must be an RFC 3339 time", key);
        return -EINVAL;
    }
    *ret = v;
    return 0;
}

/* An integer member within [min, max], when present. */
static int opt_int(const json_t *body, const char *key, long long min, long long max, int *io,
                   char *why, size_t why_len)
{
    long long v;
    int r = atr_json_get_int(body, key, min, max, &v);
    if (r == -ENOENT)
        return 0;
    if (r < 0) {
        snprintf(why, why_len, "%s must be an integer from %lld to %lld", key, min, max);
        return -EINVAL;
    }
    *io = (int)v;
    return 0;
}

/* A string member of at most @size - 1 bytes copied into @buf, when present. */
static int opt_str(const json_t *body, const char *key, char *buf, size_t size, char *why,
                   size_t why_len)
{
    const char *s;
    int r = atr_json_get_str(body, key, &s);
    if (r == -ENOENT)
        return 0;
    if (r < 0 || strlen(s) >= size) {
        snprintf(why, why_len, "%s must be a string of at most %zu bytes", key, size - 1);
        return -EINVAL;
    }
    memcpy(buf, s, strlen(s) + 1);
    return 0;
}

int brk_pool_input_apply(const json_t *body, struct db_pool *p, char *why, size_t why_len)
{
    static const char *const known[] = {"name",
                                        "description",
                                        "image_version_id",
                                        "vcpus",
                                        "memory_mb",
                                        "disk_gb",
                                        "protocols",
                                        "assignment",
                                        "min_size",
                                        "max_size",
                                        "spare",
                                        "name_pattern",
                                        "idle_timeout_s",
                                        "disconnect_timeout_s",
                                        "power_policy",
                                        "enabled",
                                        "clone",
                                        NULL};
    struct db_pool n = *p;
    if (brk_members_check(body, known, why, why_len) < 0)
        return -EINVAL;
    long long image = 0;
    int r = atr_json_get_int(body, "image_version_id", 0, INT64_MAX, &image);
    if (r == -EINVAL)
        return fail(why, why_len, "image_version_id must be an id (0: none)");
    if (r == 0)
        n.image_version_id = image;
    if (opt_str(body, "name", n.name, sizeof(n.name), why, why_len) < 0 ||
        opt_str(body, "description", n.description, sizeof(n.description), why, why_len) < 0 ||
        opt_str(body, "assignment", n.assignment, sizeof(n.assignment), why, why_len) < 0 ||
        opt_str(body, "name_pattern", n.name_pattern, sizeof(n.name_pattern), why, why_len) < 0 ||
        opt_str(body, "power_policy", n.power_policy, sizeof(n.power_policy), why, why_len) < 0 ||
        opt_str(body, "clone", n.clone_mode, sizeof(n.clone_mode), why, why_len) < 0 ||
        opt_int(body, "vcpus", 1, 256, &n.vcpus, why, why_len) < 0 ||
        opt_int(body, "memory_mb", 64, 4194304, &n.memory_mb, why, why_len) < 0 ||
        opt_int(body, "disk_gb", 1, 65536, &n.disk_gb, why, why_len) < 0 ||
        opt_int(body, "min_size", 0, 10000, &n.min_size, why, why_len) < 0 ||
        opt_int(body, "max_size", 0, 10000, &n.max_size, why, why_len) < 0 ||
        opt_int(body, "spare", 0, 10000, &n.spare, why, why_len) < 0 ||
        opt_int(body, "idle_timeout_s", 0, INT32_MAX, &n.idle_timeout_s, why, why_len) < 0 ||
        opt_int(body, "disconnect_timeout_s", 0, INT32_MAX, &n.disconnect_timeout_s, why, why_len) <
            0)
        return -EINVAL;
    r = atr_json_get_bool(body, "enabled", &n.enabled);
    if (r == -EINVAL)
        return fail(why, why_len, "enabled must be true or false");
    const json_t *protos = json_object_get(body, "protocols");
    if (protos) {
        if (!json_is_array(protos) || json_array_size(protos) < 1 || json_array_size(protos) > 4)
            return fail(why, why_len, "protocols must be a list of spice, rdp, vnc, browser");
        unsigned bits = 0;
        size_t i;
        json_t *v;
        json_array_foreach(protos, i, v)
        {
            unsigned b = json_is_string(v) ? db_protocol_from_name(json_string_value(v)) : 0;
            if (!b)
                return fail(why, why_len, "protocols must be a list of spice, rdp, vnc, browser");
            bits |= b;
        }
        n.protocols = bits;
    }
    *p = n;
    return 0;
}
