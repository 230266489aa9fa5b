/* Private to hypervisor/: running helper programs (qemu-img) to completion. */
#pragma once

#include "hv.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * Run @argv (argv[0] is a path or a name looked up in $PATH) with stdin on
 * /dev/null and wait for it, at most @timeout_ms (<= 0: no limit; on
 * timeout the child is killed, -ETIMEDOUT).  Its stdout is collected into
 * *ret_out (malloc'd, NUL-terminated; may be NULL to discard), bounded by
 * @out_max bytes (-EMSGSIZE beyond).  The last bytes of its stderr go to
 * @err_tail (NUL-terminated, @err_size bytes; may be NULL).
 * Returns 0 when it exited with status 0, -EPROTO when it exited otherwise
 * (err_tail says why), or -errno when it could not be run.
 */
int hv_proc_run(char *const argv[], int timeout_ms, size_t out_max, char **ret_out, char *err_tail,
                size_t err_size);

/* True when /proc/@pid/cmdline has an argument equal to @arg (false for a
 * zombie or a process that is gone). */
bool hv_proc_cmdline_has(pid_t pid, const char *arg);
