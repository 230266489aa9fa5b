/*
 * Structured logging: one line per event, key=value fields.
 *
 * A line is assembled in a stack buffer and written with a single write() so
 * that lines from different threads never interleave; journald and tests can
 * then parse each line on its own.  Lines longer than the buffer are cut and
 * marked with truncated=true rather than split.
 */
#include "common.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static char log_module[32] = "atrium";
static _Atomic int log_level = LOG_LEVEL_INFO;
static _Atomic int log_fd = STDERR_FILENO;

static const char *const level_names[] = {
    [LOG_LEVEL_DEBUG] = "debug",
    [LOG_LEVEL_INFO] = "info",
    [LOG_LEVEL_WARN] = "warn",
    [LOG_LEVEL_ERROR] = "error",
};

void log_init(const char *module, enum log_level level)
{
    snprintf(log_module, sizeof(log_module), "%s", module ? module : "atrium");
    atomic_store(&log_level, level);
}

void log_set_level(enum log_level level)
{
    atomic_store(&log_level, level);
}

enum log_level log_get_level(void)
{
    return atomic_load(&log_level);
}

void log_set_fd(int fd)
{
    atomic_store(&log_fd, fd);
}

int log_level_from_string(const char *s, enum log_level *ret_level)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (s && strcasecmp(s, level_names[i]) == 0) {
            *ret_level = (enum log_level)i;
            return 0;
        }
    }
    if (s && strcasecmp(s, "warning") == 0) {
        *ret_level = LOG_LEVEL_WARN;
        return 0;
    }
    return -EINVAL;
}

const char *log_fmt_int(char buf[static 24], long long v)
{
    snprintf(buf, 24, "%lld", v);
    return buf;
}

const char *log_fmt_uint(char buf[static 24], unsigned long long v)
{
    snprintf(buf, 24, "%llu", v);
    return buf;
}

static bool needs_quotes(const char *v)
{
    if (!*v)
        return true;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f)
            return true;
    return false;
}

/* Append one byte if room is left (one byte is always kept for the NUL). */
static size_t put(char *buf, size_t size, size_t len, char c)
{
    if (len + 1 < size)
        buf[len++] = c;
    return len;
}

static size_t put_str(char *buf, size_t size, size_t len, const char *s)
{
    while (*s)
        len = put(buf, size, len, *s++);
    return len;
}

static size_t put_value(char *buf, size_t size, size_t len, const char *v)
{
    if (!v)
        v = "(null)";
    if (!needs_quotes(v))
        return put_str(buf, size, len, v);
    len = put(buf, size, len, '"');
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        switch (*p) {
        case '"':
            len = put_str(buf, size, len, "\\\"");
            break;
        case '\\':
            len = put_str(buf, size, len, "\\\\");
            break;
        case '\n':
            len = put_str(buf, size, len, "\\n");
            break;
        case '\r':
            len = put_str(buf, size, len, "\\r");
            break;
        case '\t':
            len = put_str(buf, size, len, "\\t");
            break;
        default:
            if (*p < 0x20 || *p == 0x7f) {
                char hex[8];
                snprintf(hex, sizeof(hex), "\\x%02x", *p);
                len = put_str(buf, size, len, hex);
            } else {
                len = put(buf, size, len, (char)*p);
            }
        }
    }
    return put(buf, size, len, '"');
}

size_t log_append_field(char *buf, size_t size, size_t len, const char *key, const char *value)
{
    if (len > 0)
        len = put(buf, size, len, ' ');
    len = put_str(buf, size, len, key);
    len = put(buf, size, len, '=');
    len = put_value(buf, size, len, value);
    buf[len] = '\0';
    return len;
}

void log_emitv(enum log_level level, const char *msg, va_list ap)
{
    if ((int)level < atomic_load(&log_level))
        return;
    if ((int)level < LOG_LEVEL_DEBUG || level > LOG_LEVEL_ERROR)
        level = LOG_LEVEL_ERROR;

    char line[LOG_LINE_MAX];
    size_t len = 0;
    line[0] = '\0';
    len = log_append_field(line, sizeof(line), len, "level", level_names[level]);
    len = log_append_field(line, sizeof(line), len, "mod", log_module);
    len = log_append_field(line, sizeof(line), len, "msg", msg);
    for (;;) {
        const char *key = va_arg(ap, const char *);
        if (!key)
            break;
        const char *value = va_arg(ap, const char *);
        len = log_append_field(line, sizeof(line), len, key, value);
    }
    if (len + 1 >= sizeof(line) - 1) {
        static const char trunc[] = " truncated=true";
        len = sizeof(line) - sizeof(trunc) - 1;
        memcpy(line + len, trunc, sizeof(trunc) - 1);
        len += sizeof(trunc) - 1;
    }
    line[len++] = '\n';

    int fd = atomic_load(&log_fd);
    const char *p = line;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

void log_emit(enum log_level level, const char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    log_emitv(level, msg, ap);
    va_end(ap);
}
