/*
 * Fuzz target for the broker's request input: bytes are taken as a request
 * body and go through the same parsing a request does (brk_body_parse,
 * then the login checks); the members of a parsed object also serve as the
 * query string for the paging and filter checks; and the bytes are matched
 * as a path against the route table and as a Host header for connection
 * files.  Any crash, leak or sanitizer report
 * is a bug in our glue — the parsing itself is jansson's and
 * libmicrohttpd's.
 */
#include "broker-priv.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *from_object(void *userdata, const char *key)
{
    const json_t *v = json_object_get(userdata, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void check_query(json_t *obj)
{
    static const char *const states[] = {"queued", "running", NULL};
    struct brk_query q = {from_object, obj};
    char why[200];
    struct db_page page;
    const char *s;
    int64_t id;
    if (brk_page_parse(&q, &page, why, sizeof(why)) == 0 &&
        (page.limit < 1 || page.limit > BRK_LIMIT_MAX || page.offset < 0 ||
         page.offset > BRK_OFFSET_MAX))
        abort(); /* a page out of bounds must never be accepted */
    brk_filter_text(&q, "state", states, &s, why, sizeof(why));
    brk_filter_text(&q, "kind", NULL, &s, why, sizeof(why));
    if (brk_filter_id(&q, "pool", &id, why, sizeof(why)) == 0 && id < 0)
        abort();
    brk_filter_time(&q, "since", &s, why, sizeof(why));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[200];
    json_t *body = NULL;
    if (brk_body_parse((const char *)data, size, &body, why, sizeof(why)) == 0) {
        struct brk_login_input in;
        if (brk_login_input_parse(body, &in, why, sizeof(why)) == 0 &&
            (strlen(in.username) > DB_USERNAME_MAX || strlen(in.password) > AUTH_PASSWORD_MAX))
            abort();
        check_query(body);
        struct db_pool pool;
        pool_defaults(&pool);
        if (brk_pool_input_apply(body, &pool, why, sizeof(why)) == 0 &&
            (pool.vcpus < 1 || pool.max_size < 0 || pool.protocols & ~(unsigned)DB_PROTO_ALL ||
             memchr(pool.name, '\0', sizeof(pool.name)) == NULL))
            abort(); /* accepted values stay within their bounds and buffers */
        json_decref(body);
    }

    char *path = malloc(size + 1);
    if (!path)
        return 0;
    memcpy(path, data, size);
    path[size] = '\0';
    int64_t ids[BRK_MAX_PATH_IDS];
    size_t n_ids;
    bool known;
    static const char *const methods[] = {"GET", "POST", "DELETE", "HEAD"};
    for (size_t i = 0; i < 4; i++) {
        const struct brk_route *r = brk_route_match(methods[i], path, ids, &n_ids, &known);
        if (r && n_ids > BRK_MAX_PATH_IDS)
            abort();
        for (size_t k = 0; r && k < n_ids; k++)
            if (ids[k] < 1)
                abort();
    }
    brk_token_well_formed(path);

    /* The bytes as a Host header: whatever is accepted must not be able to
     * add a line (or a field) to a connection file. */
    char host[256];
    if (brk_gateway_host(NULL, path, host, sizeof(host)) == 0) {
        if (strpbrk(host, "\r\n=/?#@ \t"))
            abort();
        struct brk_conn_target t = {host, 3128, 3389, 5900, "pool", "user", false};
        char *vv = brk_connfile_vv(&t, "00000000000000000000000000000000");
        char *rdp = brk_connfile_rdp(&t, "00000000000000000000000000000000");
        free(vv);
        free(rdp);
    }
    free(path);
    return 0;
}
