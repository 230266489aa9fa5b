/*
 * Golden images and linked clones.
 *
 * All image work goes through qemu-img, the tool that owns the qcow2
 * format; this file only sequences it.  New files are written under a
 * temporary name in the destination directory and moved into place with a
 * rename, so a crash mid-way never leaves a half-written image under the
 * real name, and a reset clone is swapped in whole.
 */
#include "proc-priv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define QEMU_IMG_TIMEOUT_MS (30 * 60 * 1000)

static const char *tool(const char *qemu_img)
{
    return qemu_img && qemu_img[0] ? qemu_img : "qemu-img";
}

/* `qemu-img info --output=json` of @path as a new JSON reference. */
static int image_info(const char *qemu_img, const char *path, json_t **ret, struct atr_error *err)
{
    char *argv[] = {(char *)tool(qemu_img), "info", "--output=json", "-U", (char *)path, NULL};
    char *out = NULL, tail[512];
    int r = hv_proc_run(argv, 60000, 1 << 20, &out, tail, sizeof(tail));
    if (r < 0) {
        tail[strcspn(tail, "\n")] = '\0';
        return atr_error_set(err, r, "qemu-img info %s failed: %s", path, tail);
    }
    json_t *info = json_loads(out, 0, NULL);
    free(out);
    if (!json_is_object(info)) {
        json_decref(info);
        return atr_error_set(err, -EPROTO, "qemu-img info %s: unreadable output", path);
    }
    *ret = info;
    return 0;
}

int hv_storage_backing(const char *qemu_img, const char *image, char *buf, size_t size,
                       struct atr_error *err)
{
    json_t *info = NULL;
    int r = image_info(qemu_img, image, &info, err);
    if (r < 0)
        return r;
    const char *b = json_string_value(json_object_get(info, "full-backing-filename"));
    if (!b)
        b = json_string_value(json_object_get(info, "backing-filename"));
    if ((size_t)snprintf(buf, size, "%s", b ? b : "") >= size)
        r = -ENAMETOOLONG;
    json_decref(info);
    return r;
}

int hv_storage_sha256(const char *path, char ret_hex[static 65])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int r = 0;
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        r = -ENOMEM;
        goto out;
    }
    for (;;) {
        unsigned char buf[65536];
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            goto out;
        }
        if (n == 0)
            break;
        if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1) {
            r = -EIO;
            goto out;
        }
    }
    unsigned char md[32];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx, md, &len) != 1 || len != 32) {
        r = -EIO;
        goto out;
    }
    for (int i = 0; i < 32; i++)
        snprintf(ret_hex + i * 2, 3, "%02x", md[i]);
out:
    EVP_MD_CTX_free(ctx);
    close(fd);
    return r;
}

int hv_storage_usage(const char *path, int64_t *ret_bytes)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    *ret_bytes = (int64_t)st.st_blocks * 512;
    return 0;
}

int hv_storage_delete(const char *path)
{
    if (unlink(path) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

/* "<dir of @path>/.<name>.tmp-<pid>": same filesystem, so rename is atomic. */
static int temp_name(const char *path, char *buf, size_t size)
{
    const char *slash = strrchr(path, '/');
    int n = slash ? snprintf(buf, size, "%.*s/.%s.tmp-%d", (int)(slash - path), path, slash + 1,
                             (int)getpid())
                  : snprintf(buf, size, ".%s.tmp-%d", path, (int)getpid());
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* Move @tmp to @dst; -EEXIST (and @tmp removed) when @dst exists and !@replace. */
static int publish(const char *tmp, const char *dst, bool replace)
{
    int r = 0;
    if (replace) {
        if (rename(tmp, dst) < 0)
            r = -errno;
    } else if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_NOREPLACE) < 0) {
        r = -errno;
    }
    if (r < 0)
        unlink(tmp);
    return r;
}

static int create_overlay(const char *qemu_img, const char *base, const char *target,
                          struct atr_error *err)
{
    char *argv[] = {
        (char *)tool(qemu_img), "create",       "-q", "-f", "qcow2", "-F", "qcow2", "-b",
        (char *)base,           (char *)target, NULL};
    char tail[512];
    int r = hv_proc_run(argv, 60000, 0, NULL, tail, sizeof(tail));
    if (r < 0) {
        tail[strcspn(tail, "\n")] = '\0';
        unlink(target);
        return atr_error_set(err, r, "qemu-img create %s failed: %s", target, tail);
    }
    return 0;
}

int hv_storage_clone(const char *qemu_img, const char *base, const char *overlay,
                     struct atr_error *err)
{
    char tmp[PATH_MAX];
    if (base[0] != '/')
        return atr_error_set(err, -EINVAL, "backing image %s is not an absolute path", base);
    if (access(overlay, F_OK) == 0)
        return atr_error_set(err, -EEXIST, "%s already exists", overlay);
    int r = temp_name(overlay, tmp, sizeof(tmp));
    if (r < 0)
        return atr_error_set(err, r, "path too long: %s", overlay);
    r = create_overlay(qemu_img, base, tmp, err);
    if (r < 0)
        return r;
    r = publish(tmp, overlay, false);
    if (r < 0)
        return atr_error_set(err, r, "cannot create %s: %s", overlay, strerror(-r));
    return 0;
}

int hv_storage_reset(const char *qemu_img, const char *overlay, struct atr_error *err)
{
    char base[PATH_MAX], tmp[PATH_MAX];
    if (access(overlay, F_OK) < 0)
        return atr_error_set(err, -ENOENT, "%s does not exist", overlay);
    int r = hv_storage_backing(qemu_img, overlay, base, sizeof(base), err);
    if (r < 0)
        return r;
    if (!base[0])
        return atr_error_set(err, -EINVAL, "%s is not a linked clone (no backing file)", overlay);
    r = temp_name(overlay, tmp, sizeof(tmp));
    if (r < 0)
        return atr_error_set(err, r, "path too long: %s", overlay);
    r = create_overlay(qemu_img, base, tmp, err);
    if (r < 0)
        return r;
    r = publish(tmp, overlay, true);
    if (r < 0)
        return atr_error_set(err, r, "cannot replace %s: %s", overlay, strerror(-r));
    return 0;
}

int hv_storage_import(const char *qemu_img, const char *src, const char *dst,
                      struct hv_image_info *ret_info, struct atr_error *err)
{
    struct hv_image_info info = {0};
    json_t *si = NULL;
    char tmp[PATH_MAX], tail[512];
    bool tmp_made = false;
    int r;

    if (access(dst, F_OK) == 0) {
        r = atr_error_set(err, -EEXIST, "%s already exists", dst);
        goto out;
    }
    r = image_info(qemu_img, src, &si, err);
    if (r < 0)
        goto out;
    const char *fmt = json_string_value(json_object_get(si, "format"));
    if (!fmt || (strcmp(fmt, "qcow2") != 0 && strcmp(fmt, "raw") != 0)) {
        r = atr_error_set(err, -EMEDIUMTYPE, "%s is %s; only qcow2 and raw can be imported", src,
                          fmt ? fmt : "of unknown format");
        goto out;
    }
    if (json_object_get(si, "backing-filename")) {
        r = atr_error_set(err, -EMEDIUMTYPE,
                          "%s has a backing file; import the image it is based on", src);
        goto out;
    }
    /* A qcow2 external data file is a path on this host that convert would
     * read into the image: an uploaded disk must not name one. */
    if (json_object_get(json_object_get(json_object_get(si, "format-specific"), "data"),
                        "data-file")) {
        r = atr_error_set(err, -EMEDIUMTYPE,
                          "%s names an external data file; only self-contained images "
                          "can be imported",
                          src);
        goto out;
    }
    snprintf(info.source_format, sizeof(info.source_format), "%s", fmt);
    r = temp_name(dst, tmp, sizeof(tmp));
    if (r < 0) {
        atr_error_set(err, r, "path too long: %s", dst);
        goto out;
    }
    /* -f names the source format so a raw file is never probed as
     * something else (the classic raw-image format confusion). */
    char *argv[] = {(char *)tool(qemu_img),
                    "convert",
                    "-q",
                    "-f",
                    (char *)fmt,
                    "-O",
                    "qcow2",
                    (char *)src,
                    tmp,
                    NULL};
    tmp_made = true;
    r = hv_proc_run(argv, QEMU_IMG_TIMEOUT_MS, 0, NULL, tail, sizeof(tail));
    if (r < 0) {
        tail[strcspn(tail, "\n")] = '\0';
        atr_error_set(err, r, "qemu-img convert %s failed: %s", src, tail);
        goto out;
    }
    if (chmod(tmp, 0444) < 0) {
        r = atr_error_set(err, -errno, "cannot make %s read-only: %s", tmp, strerror(errno));
        goto out;
    }
    r = hv_storage_sha256(tmp, info.sha256);
    if (r < 0) {
        atr_error_set(err, r, "cannot checksum %s: %s", tmp, strerror(-r));
        goto out;
    }
    r = hv_storage_usage(tmp, &info.size_bytes);
    if (r < 0)
        goto out;
    json_t *vs = json_object_get(si, "virtual-size");
    info.virtual_size_bytes = json_is_integer(vs) ? (int64_t)json_integer_value(vs) : 0;
    r = publish(tmp, dst, false);
    tmp_made = false; /* publish removed it on failure */
    if (r < 0) {
        atr_error_set(err, r, "cannot create %s: %s", dst, strerror(-r));
        goto out;
    }
    *ret_info = info;
out:
    if (tmp_made)
        unlink(tmp);
    json_decref(si);
    return r;
}
