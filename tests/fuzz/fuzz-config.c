/* Fuzz target: the configuration file parser must refuse, never crash. */
#include "common.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct atr_config *cfg = NULL;
    struct atr_error err = {0};
    if (atr_config_load_string((const char *)data, size, "fuzz.conf", &cfg, &err) == 0)
        atr_config_free(cfg);
    else if (!err.msg[0] || memchr(err.msg, '\n', strlen(err.msg)))
        __builtin_trap(); /* every refusal has one line of explanation */
    return 0;
}
