/*
 * Fuzz target for PATCH /api/v1/vms/{id}/resources bodies: the bytes go
 * through brk_body_parse like a request's, then brk_vm_resources_input_parse
 * for VMs of three sizes.  Whatever it accepts must be inside the ranges the
 * database functions are promised (a value out of range reaching them is a
 * bug even though PostgreSQL's CHECKs would still refuse it).
 */
#include "broker-priv.h"

#include <stdint.h>
#include <stdlib.h>

static void check(const json_t *body, int memory_mb)
{
    struct brk_vm_resources_input in;
    char why[200];
    if (brk_vm_resources_input_parse(body, memory_mb, &in, why, sizeof(why)) < 0)
        return;
    const struct db_vm_resources *r = &in.res;
    if (in.balloon_mb != -1 && in.balloon_mb != 0 &&
        (in.balloon_mb < 64 || in.balloon_mb > memory_mb))
        abort();
    if (r->cpu_weight < 0 || r->cpu_weight > 10000)
        abort();
    if (r->cpu_max_pct < -1 || r->cpu_max_pct > 100000 || r->memory_max_mb < -1 ||
        (r->memory_max_mb > 0 && r->memory_max_mb < 64) || r->disk_iops < -1 || r->disk_bps < -1 ||
        r->net_bps < -1 || in.boost < -1 || in.boost > 1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body = NULL;
    char why[200];
    if (brk_body_parse((const char *)data, size, &body, why, sizeof(why)) == 0) {
        check(body, 64);
        check(body, 2048);
        check(body, 4194304);
        json_decref(body);
    }
    check(NULL, 2048); /* no body at all */
    return 0;
}
