/* Typed access to JSON objects parsed by jansson, and the API error body. */
#include "common.h"

#include <errno.h>

int atr_json_get_str(const json_t *obj, const char *key, const char **ret)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return -ENOENT;
    if (!json_is_string(v))
        return -EINVAL;
    *ret = json_string_value(v);
    return 0;
}

int atr_json_get_int(const json_t *obj, const char *key, long long min, long long max,
                     long long *ret)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return -ENOENT;
    if (!json_is_integer(v))
        return -EINVAL;
    long long n = json_integer_value(v);
    if (n < min || n > max)
        return -EINVAL;
    *ret = n;
    return 0;
}

int atr_json_get_bool(const json_t *obj, const char *key, bool *ret)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return -ENOENT;
    if (!json_is_boolean(v))
        return -EINVAL;
    *ret = json_is_true(v);
    return 0;
}

json_t *atr_json_error(const char *error, const char *detail)
{
    return json_pack("{s:s, s:s}", "error", error ? error : "error", "detail",
                     detail ? detail : "");
}

char *atr_json_dumps(const json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}
