/* Pool definitions: validation and the create/update/delete rules. */
#include "pool.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL_MAX_SIZE 10000

void pool_defaults(struct db_pool *p)
{
    memset(p, 0, sizeof(*p));
    p->vcpus = 2;
    p->memory_mb = 2048;
    p->disk_gb = 20;
    p->protocols = DB_PROTO_ALL;
    snprintf(p->assignment, sizeof(p->assignment), "floating");
    p->max_size = 10;
    p->spare = 1;
    snprintf(p->name_pattern, sizeof(p->name_pattern), "{pool}-{n}");
    p->disconnect_timeout_s = 3600;
    snprintf(p->power_policy, sizeof(p->power_policy), "on");
    p->enabled = true;
    snprintf(p->clone_mode, sizeof(p->clone_mode), "linked");
}

/* Same rule as the schema's CHECK: [A-Za-z0-9][A-Za-z0-9._-]{0,62} */
static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || !isalnum((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

int pool_vm_name(const char *pattern, const char *pool_name, int64_t n, char *buf, size_t size)
{
    size_t len = 0;
    for (const char *p = pattern; *p;) {
        char piece[80];
        const char *add;
        size_t step;
        if (strncmp(p, "{pool}", 6) == 0) {
            add = pool_name;
            step = 6;
        } else if (strncmp(p, "{n}", 3) == 0) {
            snprintf(piece, sizeof(piece), "%lld", (long long)n);
            add = piece;
            step = 3;
        } else {
            piece[0] = *p;
            piece[1] = '\0';
            add = piece;
            step = 1;
        }
        size_t al = strlen(add);
        if (len + al >= size)
            return -EINVAL;
        memcpy(buf + len, add, al);
        len += al;
        p += step;
    }
    buf[len] = '\0';
    return name_ok(buf) ? 0 : -EINVAL;
}

int pool_validate(const struct db_pool *p, struct atr_error *err)
{
    if (!name_ok(p->name))
        return atr_error_set(err, -EINVAL,
                             "pool name '%.64s' must be 1-63 letters, digits, '.', '_' or '-', "
                             "starting with a letter or digit",
                             p->name);
    if (p->min_size < 0 || p->max_size < 0 || p->spare < 0 || p->max_size > POOL_MAX_SIZE)
        return atr_error_set(err, -EINVAL, "pool sizes must be between 0 and %d", POOL_MAX_SIZE);
    if (p->min_size > p->max_size)
        return atr_error_set(err, -EINVAL, "min (%d) must not exceed max (%d)", p->min_size,
                             p->max_size);
    if (p->spare > p->max_size)
        return atr_error_set(err, -EINVAL, "spare (%d) must not exceed max (%d)", p->spare,
                             p->max_size);
    if (p->vcpus < 1 || p->vcpus > 256)
        return atr_error_set(err, -EINVAL, "vcpus must be between 1 and 256");
    if (p->memory_mb < 64 || p->memory_mb > 4194304)
        return atr_error_set(err, -EINVAL, "memory must be between 64 MiB and 4 TiB");
    if (p->disk_gb < 1 || p->disk_gb > 65536)
        return atr_error_set(err, -EINVAL, "disk must be between 1 and 65536 GiB");
    if (!p->protocols || (p->protocols & ~(unsigned)DB_PROTO_ALL))
        return atr_error_set(err, -EINVAL,
                             "a pool offers at least one of spice, rdp, vnc, browser");
    if (strcmp(p->assignment, "floating") != 0 && strcmp(p->assignment, "dedicated") != 0)
        return atr_error_set(err, -EINVAL, "assignment must be floating or dedicated");
    if (strcmp(p->power_policy, "on") != 0 && strcmp(p->power_policy, "paused") != 0 &&
        strcmp(p->power_policy, "off") != 0)
        return atr_error_set(err, -EINVAL, "power policy must be on, paused or off");
    if (p->clone_mode[0] && strcmp(p->clone_mode, "linked") != 0 &&
        strcmp(p->clone_mode, "instant") != 0)
        return atr_error_set(err, -EINVAL, "clone must be linked or instant");
    if (p->idle_timeout_s < 0 || p->disconnect_timeout_s < 0)
        return atr_error_set(err, -EINVAL, "timeouts must not be negative");
    if (!strstr(p->name_pattern, "{n}"))
        return atr_error_set(err, -EINVAL, "naming pattern '%.64s' must contain {n}",
                             p->name_pattern);
    char probe[64];
    if (pool_vm_name(p->name_pattern, p->name, 99999, probe, sizeof(probe)) < 0)
        return atr_error_set(err, -EINVAL, "naming pattern '%.64s' does not give valid VM names",
                             p->name_pattern);
    return 0;
}

static int check_image(struct db *db, const struct db_pool *p, struct atr_error *err)
{
    if (!p->image_version_id)
        return 0;
    struct db_image_version v;
    int r = db_image_version_get(db, p->image_version_id, &v);
    if (r == -ENOENT)
        return atr_error_set(err, -EINVAL, "image version %lld does not exist",
                             (long long)p->image_version_id);
    if (r < 0)
        return atr_error_set(err, r, "cannot read image version %lld",
                             (long long)p->image_version_id);
    if (strcmp(v.state, "ready") != 0)
        return atr_error_set(err, -EINVAL, "image %s version %d is %s, not ready", v.image_name,
                             v.version, v.state);
    return 0;
}

int pool_create(struct db *db, const struct db_pool *p, int64_t *ret_id, struct atr_error *err)
{
    int r = pool_validate(p, err);
    if (r < 0)
        return r;
    r = check_image(db, p, err);
    if (r < 0)
        return r;
    r = db_pool_insert(db, p, ret_id);
    if (r == -EEXIST)
        return atr_error_set(err, r, "a pool named '%s' already exists", p->name);
    if (r < 0)
        return atr_error_set(err, r, "the database refused pool '%s'", p->name);
    return 0;
}

int pool_update(struct db *db, const struct db_pool *p, struct atr_error *err)
{
    int r = pool_validate(p, err);
    if (r < 0)
        return r;
    r = check_image(db, p, err);
    if (r < 0)
        return r;
    r = db_pool_update(db, p);
    if (r == -ENOENT)
        return atr_error_set(err, r, "no pool with id %lld", (long long)p->id);
    if (r == -EEXIST)
        return atr_error_set(err, r, "a pool named '%s' already exists", p->name);
    if (r < 0)
        return atr_error_set(err, r, "the database refused the change to pool '%s'", p->name);
    return 0;
}

int pool_delete(struct db *db, int64_t pool_id, struct atr_error *err)
{
    int r = db_pool_delete(db, pool_id);
    if (r == -EBUSY)
        return atr_error_set(err, r, "pool %lld still has VMs; resize it to 0 first",
                             (long long)pool_id);
    if (r == -ENOENT)
        return atr_error_set(err, r, "no pool with id %lld", (long long)pool_id);
    if (r < 0)
        return atr_error_set(err, r, "cannot delete pool %lld", (long long)pool_id);
    return 0;
}

int pool_image_version_find(struct db *db, const char *spec, struct db_image_version *ret)
{
    char name[129];
    snprintf(name, sizeof(name), "%s", spec);
    long long want = 0;
    char *colon = strrchr(name, ':');
    if (colon) {
        *colon = '\0';
        if (atr_parse_ll(colon + 1, 1, 1000000, &want) < 0)
            return -EINVAL;
    }
    struct db_image_version *list = NULL;
    size_t n = 0;
    int r = db_image_version_list(db, name, &list, &n);
    if (r < 0)
        return r;
    r = -ENOENT;
    for (size_t i = 0; i < n && r == -ENOENT; i++) {
        if (want ? list[i].version != want : strcmp(list[i].state, "ready") != 0)
            continue;
        *ret = list[i];
        r = 0;
    }
    free(list);
    return r;
}
