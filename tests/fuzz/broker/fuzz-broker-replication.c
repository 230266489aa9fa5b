/*
 * Fuzz target for PUT /api/v1/vms/{id}/replication and POST
 * /api/v1/vms/{id}/recover bodies: the bytes go through brk_body_parse like
 * a request's, then brk_replication_input_parse and brk_recover_input_parse.
 * What they accept must be what the database functions are promised: host
 * ids >= 1, an interval of 10..604800 s and a bandwidth cap of 0 (none) or
 * at least 4096 bytes/s.
 */
#include "broker-priv.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body = NULL;
    char why[200];
    struct brk_replication_input rin;
    struct brk_recover_input cin;
    if (brk_body_parse((const char *)data, size, &body, why, sizeof(why)) == 0) {
        if (brk_replication_input_parse(body, &rin, why, sizeof(why)) == 0 &&
            (rin.to_host < 1 || rin.interval_s < DB_REPLICATION_INTERVAL_MIN ||
             rin.interval_s > DB_REPLICATION_INTERVAL_MAX || rin.max_bps < 0 ||
             (rin.max_bps && rin.max_bps < DB_REPLICATION_MAX_BPS_MIN)))
            abort();
        if (brk_recover_input_parse(body, &cin, why, sizeof(why)) == 0 && cin.on_host < 1)
            abort();
        json_decref(body);
    }
    brk_replication_input_parse(NULL, &rin, why, sizeof(why));
    brk_recover_input_parse(NULL, &cin, why, sizeof(why));
    return 0;
}
