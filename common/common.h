/*
 * libatrium-common: what every Atrium module needs and nothing more —
 * structured logging, the configuration file, a small error type, time and
 * JSON helpers.  This is the only header other modules include from common/.
 */
#pragma once

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * A negative errno plus one human sentence.  Functions that can fail in ways a
 * person must read about (config, database, migrations) fill one of these;
 * everything else just returns -errno.  Never built from fragments: the
 * message is one formatted sentence.
 */
struct atr_error {
    int code;         /* -errno, 0 when no error was recorded */
    char msg[512];
};

/* Record an error; @err may be NULL (then only @code is returned).  Returns @code. */
int atr_error_set(struct atr_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reset @err to "no error". */
void atr_error_clear(struct atr_error *err);

/* ------------------------------------------------------------------------ */
/* Logging                                                                  */
/* ------------------------------------------------------------------------ */

enum log_level { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/*
 * Every line is one event:  level=info mod=hostd msg="vm started" vm=42
 * Fields are key/value string pairs ended by the macros' NULL sentinel; values
 * with spaces, quotes or '=' are quoted and escaped.  Numbers go through
 * LOG_INT()/LOG_UINT(), which format into a temporary that lives until the end
 * of the enclosing statement.  Thread-safe: a line is written with one write().
 */
void log_init(const char *module, enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Redirect output (default: stderr).  Used by tests; @fd is not closed. */
void log_set_fd(int fd);
/* Parse "debug", "info", "warn" or "error".  Returns 0 or -EINVAL. */
int log_level_from_string(const char *s, enum log_level *ret_level);

void log_emit(enum log_level level, const char *msg, ...) __attribute__((sentinel));
void log_emitv(enum log_level level, const char *msg, va_list ap);

#define log_debug(msg, ...) log_emit(LOG_LEVEL_DEBUG, msg, ##__VA_ARGS__, (char *)NULL)
#define log_info(msg, ...) log_emit(LOG_LEVEL_INFO, msg, ##__VA_ARGS__, (char *)NULL)
#define log_warn(msg, ...) log_emit(LOG_LEVEL_WARN, msg, ##__VA_ARGS__, (char *)NULL)
#define log_error(msg, ...) log_emit(LOG_LEVEL_ERROR, msg, ##__VA_ARGS__, (char *)NULL)

const char *log_fmt_int(char buf[static 24], long long v);
const char *log_fmt_uint(char buf[static 24], unsigned long long v);
#define LOG_INT(v) log_fmt_int((char[24]){0}, (long long)(v))
#define LOG_UINT(v) log_fmt_uint((char[24]){0}, (unsigned long long)(v))
#define LOG_BOOL(v) ((v) ? "true" : "false")

/*
 * Append "key=value" to @buf (size @size, currently @len long) with the same
 * quoting the logger uses.  Returns the new length (bounded by size-1).
 */
size_t log_append_field(char *buf, size_t size, size_t len, const char *key, const char *value);

/* ------------------------------------------------------------------------ */
/* Configuration (/etc/atrium/atrium.conf, INI)                             */
/* ------------------------------------------------------------------------ */

#define ATR_CONFIG_DEFAULT_PATH "/etc/atrium/atrium.conf"

/*
 * The whole configuration of one Atrium site member.  Every key the file may
 * hold is listed in common/config.c's key table, with its type and limits;
 * any other key is an error.  Strings are owned by the struct.
 */
struct atr_config {
    char *path; /* file it was read from */
    struct {
        char *url; /* libpq conninfo */
        int connect_timeout_s;
    } db;
    struct {
        char *runtime_dir; /* sockets, pid files: /run/atrium */
        char *data_dir;    /* images, overlays: /var/lib/atrium */
    } paths;
    struct {
        enum log_level level;
    } log;
    struct {
        char *name;      /* host name registered in the database; default: hostname */
        char *address;   /* address other members and clients use for this host */
        char *accel;     /* "auto", "kvm" or "tcg" */
        char *qemu;      /* path of qemu-system-x86_64 */
        int heartbeat_s; /* seconds between heartbeats */
        int metrics_interval_s;
        int metrics_retention_h;
        char *bridge;    /* default bridge for VMs with bridged NICs; empty: user networking */
        int stop_timeout_s; /* seconds a guest gets to power off before QEMU is killed */
        int fence_deadline_s; /* without a database heartbeat this long, no VM here runs */
    } hostd;
    struct {
        char *listen;     /* address to bind */
        int port;
        bool tls;         /* false only for tests */
        char *tls_cert;
        char *tls_key;
        char *public_address; /* address written into connection files; empty: the Host the client used */
        int session_ttl_s;
        int threads;          /* HTTP worker threads, each with its own database connection */
        int max_connections;  /* open client connections at once; more are refused */
        int login_queue;      /* password checks waiting for a hashing thread; more get 503 */
        int connection_timeout_s; /* idle client connection is closed after this */
        int max_body_bytes;   /* request bodies above this get 413 */
        int max_image_mb;     /* largest golden image upload (MiB); larger ones get 413 */
        char *web_root;       /* web console files; empty: the installed ${datadir}/atrium/web */
    } broker;
    struct {
        char *listen;
        int spice_port;
        int rdp_port;
        int vnc_port;
        char *tls_cert;
        char *tls_key;
        bool spice_tls; /* TLS on the SPICE CONNECT proxy (.vv says proxy=https://) */
        bool rdp_gfx;   /* RDP Graphics Pipeline for clients that offer it */
        int relay_port; /* consoles of this host for other hosts' displayd (TLS); 0: off */
        char *relay_address; /* announced for the relay; empty: hostd.address, then listen */
    } display;
    struct {
        int provision_timeout_s; /* a clone not ready by then is destroyed and retried */
        int failure_limit;       /* failures within failure_window stop a pool's provisioning */
        int failure_window_s;
        int host_stale_s;        /* a host silent this long is skipped and its VMs are lost */
        int cpu_overcommit;      /* vCPUs offered per host CPU */
        int fence_margin_s;      /* fence a host this long after its own fence deadline */
    } poold;
};

/*
 * Load @path (or, when NULL, $ATRIUM_CONFIG, else the default path) into a new
 * config.  Unknown sections or keys, bad values and missing files are errors;
 * @err then holds one line naming file, line and key.
 * Returns 0 and sets *ret_cfg (free with atr_config_free) or -errno.
 */
int atr_config_load(const char *path, struct atr_config **ret_cfg, struct atr_error *err);

/* Parse config text held in memory; @name is used in messages.  As above. */
int atr_config_load_string(const char *text, size_t len, const char *name,
                           struct atr_config **ret_cfg, struct atr_error *err);

/* A config with every default filled in (no file read).  NULL on ENOMEM. */
struct atr_config *atr_config_new_defaults(void);

/* Accepts NULL; returns NULL. */
struct atr_config *atr_config_free(struct atr_config *cfg);

/* Write "section.key = value" lines of the effective config (secrets masked). */
void atr_config_dump(const struct atr_config *cfg, FILE *out);

/* ------------------------------------------------------------------------ */
/* Time                                                                     */
/* ------------------------------------------------------------------------ */

/* Monotonic clock in nanoseconds / milliseconds: for deadlines and durations. */
int64_t atr_now_mono_ns(void);
int64_t atr_now_mono_ms(void);
/* Wall clock in microseconds since the epoch: for timestamps people read. */
int64_t atr_now_real_us(void);
/* Milliseconds left until @deadline_ms (monotonic); 0 when passed.  For poll(). */
int atr_deadline_left_ms(int64_t deadline_ms);
/* Format @real_us as RFC 3339 UTC ("2026-11-25T12:00:00.123Z") into @buf. */
const char *atr_time_format(int64_t real_us, char buf[static 32]);
/*
 * Parse a duration: a number with an optional unit ms, s, m, h, d ("30s",
 * "5m", "250ms"; a bare number is seconds).  Returns 0 and *ret_ms, or -EINVAL
 * / -ERANGE.
 */
int atr_duration_parse(const char *s, int64_t *ret_ms);

/* ------------------------------------------------------------------------ */
/* JSON (jansson) helpers                                                   */
/* ------------------------------------------------------------------------ */

/*
 * Typed getters for a member of a JSON object.  Return 0 and set the output,
 * -ENOENT when absent (or JSON null), -EINVAL when of the wrong type or out of
 * range.  Strings are borrowed from @obj.
 */
int atr_json_get_str(const json_t *obj, const char *key, const char **ret);
int atr_json_get_int(const json_t *obj, const char *key, long long min, long long max,
                     long long *ret);
int atr_json_get_bool(const json_t *obj, const char *key, bool *ret);

/* {"error": @error, "detail": @detail} as a new reference; NULL on ENOMEM. */
json_t *atr_json_error(const char *error, const char *detail);

/* Serialize compactly into a malloc'd NUL-terminated string (free()); NULL on ENOMEM. */
char *atr_json_dumps(const json_t *v);

/* ------------------------------------------------------------------------ */
/* Small utilities                                                          */
/* ------------------------------------------------------------------------ */

/* free() that returns NULL, for p = atr_free(p). */
void *atr_free(void *p);
/* Parse a whole string as a base-10 integer within [min, max]. 0, -EINVAL or -ERANGE. */
int atr_parse_ll(const char *s, long long min, long long max, long long *ret);
/* Compare two buffers in time independent of their contents. 0 when equal. */
int atr_memeq_ct(const void *a, const void *b, size_t n);

/* ------------------------------------------------------------------------ */
/* Version                                                                  */
/* ------------------------------------------------------------------------ */

/* Print "PROG VERSION" and a newline to @out (the package version). */
void atr_version_print(FILE *out, const char *prog);
/*
 * True when argv asks for the version ("--version" or "-V" before any "--");
 * it has then been printed to stdout and main should exit 0.  For programs
 * whose arguments are all options: main calls it first, before getopt.
 */
bool atr_version_requested(int argc, char *const argv[], const char *prog);
