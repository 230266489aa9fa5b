/*
 * Fuzz target for the query of POST /api/v1/images/versions (api-upload.c):
 * the input is up to three values separated by '\n' — name, notes, sha256 —
 * and a first byte whose low bits say which of them the query carries.  An
 * accepted name must be safe as an image name (1..128 of A-Z a-z 0-9 . _ -,
 * not starting with . _ -), notes must hold no control character and the
 * checksum must be 64 lower-case hex digits.
 */
#include "broker-priv.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct table {
    const char *name, *notes, *sha256;
};

static const char *lookup(void *userdata, const char *key)
{
    const struct table *t = userdata;
    if (strcmp(key, "name") == 0)
        return t->name;
    if (strcmp(key, "notes") == 0)
        return t->notes;
    if (strcmp(key, "sha256") == 0)
        return t->sha256;
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned present = data[0];
    char *buf = malloc(size);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    char *vals[3] = {buf, NULL, NULL};
    for (int i = 1; i < 3 && vals[i - 1]; i++) {
        char *nl = strchr(vals[i - 1], '\n');
        if (nl) {
            *nl = '\0';
            vals[i] = nl + 1;
        }
    }
    struct table t = {
        .name = present & 1 ? vals[0] : NULL,
        .notes = present & 2 ? (vals[1] ? vals[1] : "") : NULL,
        .sha256 = present & 4 ? (vals[2] ? vals[2] : "") : NULL,
    };
    struct brk_query q = {lookup, &t};
    struct brk_image_upload_input in;
    char why[200] = "";
    if (brk_image_upload_input_parse(&q, &in, why, sizeof(why)) == 0) {
        size_t n = strlen(in.name);
        if (n < 1 || n > 128 || strchr("._-", in.name[0]) || strlen(in.notes) > 255)
            abort();
        if (strspn(in.name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
            n)
            abort();
        for (const char *p = in.notes; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                abort();
        if (in.sha256[0] &&
            (strlen(in.sha256) != 64 || strspn(in.sha256, "0123456789abcdef") != 64))
            abort();
    } else if (!why[0]) {
        abort(); /* a refusal always says why */
    }
    free(buf);
    return 0;
}
