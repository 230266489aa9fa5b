/* Small helpers every module uses. */
#include "common.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>

void *atr_free(void *p)
{
    free(p);
    return NULL;
}

int atr_parse_ll(const char *s, long long min, long long max, long long *ret)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    char *end;
    long long n = strtoll(s, &end, 10);
    if (*end != '\0')
        return -EINVAL;
    if (errno == ERANGE || n < min || n > max)
        return -ERANGE;
    *ret = n;
    return 0;
}

int atr_memeq_ct(const void *a, const void *b, size_t n)
{
    const volatile unsigned char *x = a, *y = b;
    unsigned char d = 0;
    for (size_t i = 0; i < n; i++)
        d |= x[i] ^ y[i];
    return d != 0;
}
