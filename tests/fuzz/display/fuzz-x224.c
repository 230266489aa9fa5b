/*
 * Fuzz target for the X.224 Connection Request peek (display/x224.c): no
 * read beyond the input, and a ticket is only ever returned NUL-terminated,
 * within the caller's size, made of [A-Za-z0-9].
 */
#include "disp-priv.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    char t[DB_TICKET_LEN + 1], small[4];
    char *outs[] = {t, small};
    size_t sizes[] = {sizeof(t), sizeof(small)};
    for (size_t i = 0; i < 2; i++) {
        if (disp_x224_ticket(buf, size, outs[i], sizes[i]) != 0)
            continue;
        size_t n = strnlen(outs[i], sizes[i]);
        if (n == 0 || n >= sizes[i] ||
            strspn(outs[i], "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != n)
            abort();
    }
    free(buf);
    return 0;
}
