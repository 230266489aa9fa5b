/*
 * The web console's static files (web/ in the source tree, installed under
 * ${datadir}/atrium/web), served for GET/HEAD requests that match no API
 * route.
 *
 * Only files beneath [broker] web_root are ever opened: the path's
 * characters are a whitelist, dot segments and hidden names are refused
 * before the file system sees them, and the open itself is openat2() with
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS relative to the root, so neither
 * ".." nor a symlink planted in the tree can lead outside it.
 *
 * The console is a single page with client-side routing: a path without a
 * file extension that names no file ("/admin/pools") gets index.html, while
 * a missing asset ("/app/nope.js") is a real 404, so a broken script never
 * arrives as HTML.  Every answer carries a strict Content-Security-Policy:
 * scripts and styles only from files of ours, no inline code, and
 * WebSockets only to the display gateway noVNC talks to.
 */
#include "broker-priv.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <microhttpd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef ATRIUM_WEB_ROOT_DEFAULT
#define ATRIUM_WEB_ROOT_DEFAULT "/usr/share/atrium/web"
#endif

#define WEB_PATH_MAX 512 /* longer request paths are never a file of ours */
#define WEB_INDEX "index.html"

static const struct {
    const char *ext;
    const char *type;
} web_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".woff2", "font/woff2"},
    {".txt", "text/plain; charset=utf-8"},
};

const char *brk_web_root(const struct atr_config *cfg)
{
    return cfg->broker.web_root && *cfg->broker.web_root ? cfg->broker.web_root
                                                         : ATRIUM_WEB_ROOT_DEFAULT;
}

bool brk_web_claims(const struct atr_config *cfg, const char *path)
{
    if (strcmp(path, "/api") == 0 || strncmp(path, "/api/", 5) == 0)
        return false;
    struct stat st;
    return stat(brk_web_root(cfg), &st) == 0 && S_ISDIR(st.st_mode);
}

static const char *web_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot && !strchr(dot, '/'))
        for (size_t i = 0; i < sizeof(web_types) / sizeof(web_types[0]); i++)
            if (strcmp(dot, web_types[i].ext) == 0)
                return web_types[i].type;
    return "application/octet-stream";
}

/*
 * Turn the request path into a name relative to the root, or -EINVAL.
 * Allowed: segments of [A-Za-z0-9._-] that do not start with a dot.
 * "/" and a trailing "/" name the index.
 */
static int web_rel_path(const char *path, char *buf, size_t size)
{
    if (path[0] != '/')
        return -EINVAL;
    const char *p = path + 1;
    size_t n = strlen(p);
    if (n + sizeof(WEB_INDEX) >= size)
        return -EINVAL;
    if (n == 0 || p[n - 1] == '/') {
        snprintf(buf, size, "%s%s", p, WEB_INDEX);
    } else {
        memcpy(buf, p, n + 1);
    }
    for (const char *seg = buf; *seg;) {
        size_t sn = strcspn(seg, "/");
        if (sn == 0 || seg[0] == '.')
            return -EINVAL;
        if (strspn(seg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != sn)
            return -EINVAL;
        seg += sn;
        if (*seg == '/')
            seg++;
    }
    return 0;
}

/* Open @rel beneath @root as a regular file.  An fd, or -errno. */
static int web_open(const char *root, const char *rel, struct stat *ret_st)
{
    int dfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    struct open_how how = {
        .flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    int fd = (int)syscall(SYS_openat2, dfd, rel, &how, sizeof(how));
    int r = fd < 0 ? -errno : 0;
    close(dfd);
    if (r < 0)
        return r;
    if (fstat(fd, ret_st) < 0)
        r = -errno;
    else if (!S_ISREG(ret_st->st_mode))
        r = S_ISDIR(ret_st->st_mode) ? -EISDIR : -EACCES;
    if (r < 0) {
        close(fd);
        return r;
    }
    return fd;
}

/* The policy for this request: the gateway's WebSocket origin comes from
 * [broker] public_address or the Host the browser used, as in connect. */
static void web_csp(const struct atr_config *cfg, const char *host_header, char *buf, size_t size)
{
    char gw[256], ws[300] = "";
    if (brk_gateway_host(cfg->broker.public_address, host_header, gw, sizeof(gw)) == 0)
        snprintf(ws, sizeof(ws), " %s://%s:%d", cfg->broker.tls ? "wss" : "ws", gw,
                 cfg->display.vnc_port);
    snprintf(buf, size,
             "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: "
             "blob:; font-src 'self'; connect-src 'self'%s; object-src 'none'; base-uri "
             "'none'; form-action 'self'; frame-ancestors 'none'",
             ws);
}

static void web_headers(const struct atr_config *cfg, struct MHD_Connection *conn,
                        struct MHD_Response *resp)
{
    char csp[700];
    web_csp(cfg, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host"), csp, sizeof(csp));
    MHD_add_response_header(resp, "Content-Security-Policy", csp);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    if (cfg->broker.tls)
        MHD_add_response_header(resp, "Strict-Transport-Security", "max-age=31536000");
}

static int web_send_text(const struct atr_config *cfg, struct MHD_Connection *conn, unsigned status,
                         const char *text, int *ret_status)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    web_headers(cfg, conn, resp);
    enum MHD_Result r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    *ret_status = (int)status;
    return r;
}

int brk_web_serve(const struct atr_config *cfg, void *mhd_conn, const char *path, int *ret_status)
{
    struct MHD_Connection *conn = mhd_conn;
    const char *root = brk_web_root(cfg);
    char rel[WEB_PATH_MAX];
    struct stat st = {0};
    int fd = -ENOENT;

    if (web_rel_path(path, rel, sizeof(rel)) == 0)
        fd = web_open(root, rel, &st);
    if (fd == -ENOENT || fd == -EISDIR || fd == -ELOOP || fd == -EXDEV || fd == -EINVAL) {
        /* Not a file of ours.  A route of the page (no extension) gets the
         * page; anything that looks like an asset is a 404. */
        const char *last = strrchr(path, '/');
        if (strchr(last ? last : path, '.'))
            return web_send_text(cfg, conn, 404, "not found\n", ret_status);
        snprintf(rel, sizeof(rel), "%s", WEB_INDEX);
        fd = web_open(root, rel, &st);
    }
    if (fd < 0) {
        log_warn("web file cannot be served", "path", path, "web_root", root, "errno",
                 LOG_INT(-fd));
        return web_send_text(cfg, conn, fd == -ENOENT ? 404 : 403,
                             fd == -ENOENT ? "not found\n" : "forbidden\n", ret_status);
    }

    char etag[80];
    snprintf(etag, sizeof(etag), "\"%llx-%llx-%llx\"", (unsigned long long)st.st_ino,
             (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec * 1000000000ULL +
                 (unsigned long long)st.st_mtim.tv_nsec);
    const char *inm = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "If-None-Match");
    unsigned status = 200;
    struct MHD_Response *resp;
    if (inm && strcmp(inm, etag) == 0) {
        close(fd);
        status = 304;
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    } else {
        /* libmicrohttpd owns and closes @fd from here on. */
        resp = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
        if (!resp)
            close(fd);
    }
    if (!resp)
        return MHD_NO;
    if (status == 200)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, web_type(rel));
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    /* File names carry no version, so the browser asks every time and the
     * ETag makes the answer a 304 when nothing changed. */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    web_headers(cfg, conn, resp);
    enum MHD_Result r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    *ret_status = (int)status;
    return r;
}
