/*
 * Path matching.  Patterns are literal segments and id segments ("{id}",
 * or a named one such as "{user}" where a path has two), which match a
 * decimal id >= 1 only; so "/api/v1/tasks/abc" is a 404 before any
 * handler runs, and a handler never sees an id it has to parse.  The table
 * is small (tens of routes), so a linear scan costs less than building a
 * tree would save.
 */
#include "broker-priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Compare one segment of @path (length @n) with a pattern segment. */
static bool segment_match(const char *seg, size_t n, const char *pat, size_t pn, int64_t *ret_id,
                          bool *ret_is_id)
{
    *ret_is_id = false;
    if (pn >= 3 && pat[0] == '{' && pat[pn - 1] == '}') {
        if (n == 0 || n > 18 || seg[0] == '0')
            return false;
        int64_t v = 0;
        for (size_t i = 0; i < n; i++) {
            if (seg[i] < '0' || seg[i] > '9')
                return false;
            v = v * 10 + (seg[i] - '0');
        }
        *ret_id = v;
        *ret_is_id = true;
        return true;
    }
    return n == pn && memcmp(seg, pat, n) == 0;
}

static bool path_match(const char *pattern, const char *path, int64_t ids[BRK_MAX_PATH_IDS],
                       size_t *ret_n)
{
    size_t n_ids = 0;
    const char *p = pattern, *s = path;
    for (;;) {
        if (*p != '/' || *s != '/')
            return false;
        p++;
        s++;
        size_t pn = strcspn(p, "/"), sn = strcspn(s, "/");
        int64_t id;
        bool is_id;
        if (!segment_match(s, sn, p, pn, &id, &is_id))
            return false;
        if (is_id) {
            if (n_ids == BRK_MAX_PATH_IDS)
                return false;
            ids[n_ids++] = id;
        }
        p += pn;
        s += sn;
        if (!*p && !*s) {
            *ret_n = n_ids;
            return true;
        }
        if (!*p || !*s)
            return false;
    }
}

const struct brk_route *brk_route_match(const char *method, const char *path,
                                        int64_t ret_ids[static BRK_MAX_PATH_IDS], size_t *ret_n_ids,
                                        bool *ret_path_known)
{
    bool known = false;
    for (const struct brk_route *r = brk_routes; r->method; r++) {
        int64_t ids[BRK_MAX_PATH_IDS];
        size_t n = 0;
        if (!path_match(r->pattern, path, ids, &n))
            continue;
        known = true;
        /* HEAD is answered like GET, without the body (libmicrohttpd drops it). */
        if (strcmp(r->method, method) == 0 ||
            (strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0)) {
            memcpy(ret_ids, ids, sizeof(ids));
            *ret_n_ids = n;
            *ret_path_known = true;
            return r;
        }
    }
    *ret_path_known = known;
    return NULL;
}

void brk_route_allowed(const char *path, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    for (const struct brk_route *r = brk_routes; r->method; r++) {
        int64_t ids[BRK_MAX_PATH_IDS];
        size_t n = 0;
        if (!path_match(r->pattern, path, ids, &n))
            continue;
        int w = snprintf(buf + len, size - len, "%s%s%s", len ? ", " : "", r->method,
                         strcmp(r->method, "GET") == 0 ? ", HEAD" : "");
        if (w < 0 || (size_t)w >= size - len)
            break;
        len += (size_t)w;
    }
}

size_t brk_routes_count(void)
{
    size_t n = 0;
    while (brk_routes[n].method)
        n++;
    return n;
}

static int route_cmp(const void *a, const void *b)
{
    const struct brk_route *x = *(const struct brk_route *const *)a;
    const struct brk_route *y = *(const struct brk_route *const *)b;
    int c = strcmp(x->pattern, y->pattern);
    return c ? c : strcmp(x->method, y->method);
}

void brk_routes_print(FILE *out)
{
    size_t n = brk_routes_count();
    const struct brk_route **v = calloc(n ? n : 1, sizeof(*v));
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        v[i] = &brk_routes[i];
    qsort(v, n, sizeof(*v), route_cmp);
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%s %s\n", v[i]->method, v[i]->pattern);
    free(v);
}

int brk_path_vm(struct brk_request *req, struct brk_reply *rep, struct db_vm *ret)
{
    int r = db_vm_get(req->conn->db, req->ids[0], ret);
    if (r != -ENOENT)
        return r;
    brk_reply_error(rep, 404, "not_found", "no such VM");
    return 1;
}
