/*
 * Fuzz target for POST /api/v1/vms/{id}/snapshots bodies: the bytes go
 * through brk_body_parse like a request's, then brk_snapshot_input_parse.
 * An accepted name must be what the snapshot catalogue and hostd expect
 * (1..63 of A-Z a-z 0-9 . _ -, not starting with . _ -).
 */
#include "broker-priv.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body = NULL;
    char why[200];
    struct brk_snapshot_input in;
    if (brk_body_parse((const char *)data, size, &body, why, sizeof(why)) == 0) {
        if (brk_snapshot_input_parse(body, &in, why, sizeof(why)) == 0) {
            size_t n = strlen(in.name);
            if (n < 1 || n > 63 || strchr("._-", in.name[0]) || in.with_ram < -1 ||
                in.with_ram > 1 || (in.description && strlen(in.description) > 255))
                abort();
            for (size_t i = 0; i < n; i++)
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
                            in.name[i]))
                    abort();
        }
        json_decref(body);
    }
    brk_snapshot_input_parse(NULL, &in, why, sizeof(why));
    return 0;
}
