/* The small error type: a -errno and one sentence for a person. */
#include "common.h"

#include <stdio.h>
#include <string.h>

int atr_error_set(struct atr_error *err, int code, const char *fmt, ...)
{
    if (!err)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    err->code = code;
    return code;
}

void atr_error_clear(struct atr_error *err)
{
    if (!err)
        return;
    err->code = 0;
    err->msg[0] = '\0';
}
