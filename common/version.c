/*
 * --version for every Atrium program.  The daemons have no positional
 * arguments, so one scan of argv before getopt answers --version wherever it
 * stands, and each main needs one line instead of an option table entry.
 */
#include "common.h"

#include <string.h>

void atr_version_print(FILE *out, const char *prog)
{
    fprintf(out, "%s %s\n", prog, ATRIUM_VERSION);
}

bool atr_version_requested(int argc, char *const argv[], const char *prog)
{
    for (int i = 1; i < argc && argv[i]; i++) {
        if (strcmp(argv[i], "--") == 0)
            return false;
        if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
            atr_version_print(stdout, prog);
            return true;
        }
    }
    return false;
}
