/*
 * Fuzz target for POST /api/v1/vms/{id}/migrate bodies: the bytes go
 * through brk_body_parse like a request's, then brk_migrate_input_parse.
 * What it accepts must be what the task expects: a host id >= 1 and a
 * bandwidth cap of 0 (not given) or 1..100000.
 */
#include "broker-priv.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body = NULL;
    char why[200];
    struct brk_migrate_input in;
    if (brk_body_parse((const char *)data, size, &body, why, sizeof(why)) == 0) {
        if (brk_migrate_input_parse(body, &in, why, sizeof(why)) == 0 &&
            (in.to_host < 1 || in.max_bandwidth_mbs < 0 || in.max_bandwidth_mbs > 100000))
            abort();
        json_decref(body);
    }
    brk_migrate_input_parse(NULL, &in, why, sizeof(why));
    return 0;
}
