/*
 * Instant clones: desktops forked from a running template's memory.
 *
 * A template is the golden image booted once with its RAM in a file
 * (memory-backend-file, share=on, so every guest write lands in the file).
 * Once the guest has settled, its device state is migrated into a second
 * file with the x-ignore-shared capability: the shared RAM block is left
 * out, so the state is a megabyte or so (video RAM, device registers), and
 * the migration takes tens of milliseconds.  The template QEMU then ends;
 * its disk overlay is never written again.
 *
 * A clone is a QEMU with exactly the same devices, the same RAM file mapped
 * share=off (private and copy-on-write: the pages a clone never writes stay
 * one copy in the page cache for every clone of the template), a qcow2
 * overlay on the template's frozen overlay, and -incoming defer.  hostd
 * hands it the state file over QMP (getfd + migrate-incoming "fd:"), and
 * QEMU resumes the guest where the template stopped.
 *
 * Everything the guest learned while it booted is the template's: MAC
 * address (virtio-net migrates it), hostname, the kernel's entropy pool.  The
 * clone gets its own through the virtio-serial port org.atrium.identity: one
 * line, "mac=… hostname=… seed=…", written into the port's FIFO right after
 * the clone resumed.  The guest sets the MAC on its NIC (virtio-net tells
 * QEMU, so query-rx-filter shows it too), the hostname, and mixes the seed
 * into its entropy pool.  The NIC is not hot-plugged anew: the guest's
 * own driver changing the address is one step and keeps the device set
 * identical to the template's.
 */
#include "hv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define INSTANT_FD_NAME "atrium-state"
#define INSTANT_QMP_TIMEOUT_MS 30000

int hv_instant_identity_fifos(const struct hv_vm_paths *p)
{
    const char *suffix[] = {".in", ".out"};
    for (int i = 0; i < 2; i++) {
        char path[sizeof(p->identity) + 8];
        snprintf(path, sizeof(path), "%s%s", p->identity, suffix[i]);
        /* A FIFO left by an earlier QEMU of this VM may still hold an old line. */
        if (unlink(path) < 0 && errno != ENOENT)
            return -errno;
        if (mkfifo(path, 0600) < 0)
            return -errno;
    }
    return 0;
}

static bool hostname_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return false;
    for (const char *p = s; *p; p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || (*p == '-' && p != s);
        if (!ok)
            return false;
    }
    return true;
}

static bool mac_ok(const char *s)
{
    if (strlen(s) != 17)
        return false;
    for (int i = 0; i < 17; i++) {
        char c = s[i];
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (i % 3 == 2 ? c != ':' : !hex)
            return false;
    }
    return true;
}

int hv_instant_identity_send(const struct hv_vm_paths *p, const char *mac, const char *hostname,
                             struct atr_error *err)
{
    if (!mac_ok(mac) || !hostname_ok(hostname))
        return atr_error_set(err, -EINVAL, "identity mac=%s hostname=%s is not valid", mac,
                             hostname);
    unsigned char seed[32];
    if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
        return atr_error_set(err, -EIO, "getrandom failed: %s", strerror(errno));
    char hex[2 * sizeof(seed) + 1];
    for (size_t i = 0; i < sizeof(seed); i++)
        snprintf(hex + 2 * i, 3, "%02x", seed[i]);
    char line[256];
    int n = snprintf(line, sizeof(line), "mac=%s hostname=%s seed=%s\n", mac, hostname, hex);
    char path[sizeof(p->identity) + 8];
    snprintf(path, sizeof(path), "%s.in", p->identity);
    /* O_NONBLOCK: ENXIO instead of hanging when QEMU does not hold the
     * FIFO open.  One write under PIPE_BUF bytes is atomic. */
    int fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return atr_error_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
    ssize_t w = write(fd, line, (size_t)n);
    int e = errno;
    close(fd);
    explicit_bzero(line, sizeof(line));
    explicit_bzero(hex, sizeof(hex));
    if (w != n)
        return atr_error_set(err, w < 0 ? -e : -EIO, "cannot write the identity to %s", path);
    return 0;
}

int hv_instant_files_init(const char *dir, struct hv_instant_files *ret)
{
    struct hv_instant_files f;
    struct {
        char *dst;
        const char *leaf;
    } files[] = {{f.ram, "ram"}, {f.disk, "disk.qcow2"}, {f.state, "state"}, {f.meta, "ready"}};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        int n = snprintf(files[i].dst, sizeof(f.ram), "%s/%s", dir, files[i].leaf);
        if (n < 0 || (size_t)n >= sizeof(f.ram))
            return -ENAMETOOLONG;
    }
    *ret = f;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Saving a template                                                        */
/* ------------------------------------------------------------------------ */

int hv_instant_save_start(struct hv_qmp *q, int state_fd, const struct hv_mig_job_ops *ops,
                          void *userdata, struct hv_mig_job **ret_job)
{
    if (!q)
        return -ENOTCONN;
    if (state_fd < 0)
        return -EBADF;
    /* In order on the wire, answered in order: the descriptor, then
     * x-ignore-shared (the RAM file is left out of the stream), then the
     * migration job itself (which adds its own capabilities).  A failure of
     * the first two makes "migrate" fail too (no such fd, or the RAM would
     * be copied: then the job ends in error, never in a silent 256 MiB copy
     * — hv_instant_save_check tells). */
    int r = hv_qmp_send_fd(q, "getfd", json_pack("{s:s}", "fdname", INSTANT_FD_NAME), state_fd,
                           INSTANT_QMP_TIMEOUT_MS, NULL, NULL, NULL);
    if (r < 0)
        return r;
    r = hv_qmp_send(q, "migrate-set-capabilities",
                    json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability", "x-ignore-shared",
                              "state", 1),
                    INSTANT_QMP_TIMEOUT_MS, NULL, NULL, NULL);
    if (r < 0)
        return r;
    /* No bandwidth cap worth the name: the stream goes to a local file. */
    return hv_migrate_start(q, "fd:" INSTANT_FD_NAME, (int64_t)1 << 40, ops, userdata, ret_job);
}

int hv_instant_save_check(const struct hv_mig_stats *s, int64_t memory_mb)
{
    /* The guest's RAM is never in the stream: more than a quarter of it
     * there means x-ignore-shared did not apply and the clones would start
     * from a copy instead of the shared file. */
    if (s->ram_transferred >= 0 && s->ram_transferred > memory_mb * 1024 * 1024 / 4)
        return -EPROTO;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Loading a clone                                                          */
/* ------------------------------------------------------------------------ */

struct load_req {
    hv_instant_load_fn done;
    void *userdata;
    int pending;
    int error;
    char msg[400];
};

static void on_load_reply(struct hv_qmp *q, const struct hv_qmp_reply *r, void *userdata)
{
    (void)q;
    struct load_req *l = userdata;
    if (r->error < 0 && l->error == 0) {
        l->error = r->error;
        snprintf(l->msg, sizeof(l->msg), "%s: %s", r->command,
                 r->err_desc ? r->err_desc : strerror(-r->error));
    }
    if (--l->pending > 0)
        return;
    if (l->done)
        l->done(l->error, l->error ? l->msg : "", l->userdata);
    free(l);
}

int hv_instant_load(struct hv_qmp *q, int state_fd, hv_instant_load_fn done, void *userdata)
{
    if (!q)
        return -ENOTCONN;
    if (state_fd < 0)
        return -EBADF;
    struct load_req *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->done = done;
    l->userdata = userdata;
    l->pending = 3;
    int sent = 0;
    int r = hv_qmp_send_fd(q, "getfd", json_pack("{s:s}", "fdname", INSTANT_FD_NAME), state_fd,
                           INSTANT_QMP_TIMEOUT_MS, on_load_reply, l, NULL);
    if (r == 0) {
        sent++;
        r = hv_qmp_send(q, "migrate-set-capabilities",
                        json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability",
                                  "x-ignore-shared", "state", 1),
                        INSTANT_QMP_TIMEOUT_MS, on_load_reply, l, NULL);
    }
    if (r == 0) {
        sent++;
        /* Returns at once; QEMU loads in the background and, started
         * without -S, runs the guest when done (RESUME). */
        r = hv_qmp_send(q, "migrate-incoming", json_pack("{s:s}", "uri", "fd:" INSTANT_FD_NAME),
                        INSTANT_QMP_TIMEOUT_MS, on_load_reply, l, NULL);
    }
    if (r == 0)
        return 0;
    /* What went out answers into @l, which must then not call back. */
    l->done = NULL;
    l->pending -= 3 - sent;
    if (l->pending == 0)
        free(l);
    return r;
}
