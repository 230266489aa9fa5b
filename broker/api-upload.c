/*
 * Golden image upload from the console:
 *   POST /api/v1/images/versions?name=NAME[&notes=TEXT][&sha256=HEX]
 *   Content-Type: application/octet-stream, Content-Length: the disk's size
 * The body is the disk itself, qcow2 or raw, never wrapped in a form: the
 * browser sends the File as is (XMLHttpRequest, for its upload progress),
 * curl sends it with -T.  It becomes a new version of image NAME (created
 * when absent) through the import atriumctl uses (hv_storage_import:
 * qemu-img convert to a standalone qcow2, checksum, read-only), and the
 * answer is 201 with the version.  Admins only (image.write).
 *
 * Why the body never becomes an image half-way: it is written to an
 * unnamed file (O_TMPFILE) in <data_dir>/images, so until the last byte is
 * in there is no name to find and nothing to clean up — a client that
 * stops sending, a broker that dies, a refused request all leave nothing
 * behind, because the kernel frees the file with its last descriptor.
 * Only a complete body is given a name (linkat through /proc/self/fd) for
 * qemu-img to read, and the version row is written only after the import
 * succeeded, so a refused disk (wrong format, backing file, checksum the
 * client did not expect) leaves no row either.
 *
 * Bounds: Content-Length is required (411 without) and checked against
 * [broker] max_image_mb (413) and the free space of the image area (507:
 * the upload and its converted copy live there at the same time) before
 * the body is read; the file is allocated in full up front, so the disk
 * cannot fill up under it.  Memory is one SHA-256 context per upload: the
 * pieces libmicrohttpd hands over go straight to the file.
 */
#include "broker-priv.h"
#include "hv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define UPLOAD_NAME_MAX 128
#define UPLOAD_NOTES_MAX 255
/* Free space kept beyond the upload and its converted copy. */
#define UPLOAD_DISK_MARGIN (64LL * 1024 * 1024)
#define UPLOAD_CONTENT_TYPE "application/octet-stream"

static const char name_chars[] =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";

int brk_image_upload_input_parse(const struct brk_query *q, struct brk_image_upload_input *ret,
                                 char *why, size_t why_len)
{
    struct brk_image_upload_input in = {0};
    const char *name = q->get(q->userdata, "name");
    size_t len = name ? strlen(name) : 0;
    if (!name || len == 0 || len > UPLOAD_NAME_MAX || strspn(name, name_chars) != len ||
        strchr("._-", name[0])) {
        snprintf(why, why_len,
                 "name must be 1 to 128 of A-Z a-z 0-9 . _ - (not starting with . _ -)");
        return -EINVAL;
    }
    memcpy(in.name, name, len + 1);
    const char *notes = q->get(q->userdata, "notes");
    if (notes) {
        size_t n = strlen(notes);
        bool ctl = false;
        for (size_t i = 0; i < n; i++)
            ctl |= (unsigned char)notes[i] < 0x20 || notes[i] == 0x7f;
        if (n > UPLOAD_NOTES_MAX || ctl) {
            snprintf(why, why_len, "notes must be at most 255 bytes without control characters");
            return -EINVAL;
        }
        memcpy(in.notes, notes, n + 1);
    }
    const char *sha = q->get(q->userdata, "sha256");
    if (sha) {
        if (strlen(sha) != 64 || strspn(sha, "0123456789abcdefABCDEF") != 64) {
            snprintf(why, why_len, "sha256 must be 64 hexadecimal digits");
            return -EINVAL;
        }
        for (size_t i = 0; i < 64; i++)
            in.sha256[i] = (char)(sha[i] >= 'A' && sha[i] <= 'F' ? sha[i] - 'A' + 'a' : sha[i]);
    }
    *ret = in;
    return 0;
}

struct upload {
    int fd; /* O_TMPFILE: unnamed until the handler links it */
    EVP_MD_CTX *md;
    int64_t expected, received;
    int error; /* first failure while receiving (-errno), answered by the handler */
    struct brk_image_upload_input in;
    char dir[400]; /* <data_dir>/images (fits a version's path with its file name) */
};

static void upload_free(void *sink)
{
    struct upload *u = sink;
    if (!u)
        return;
    if (u->fd >= 0)
        close(u->fd);
    EVP_MD_CTX_free(u->md);
    free(u);
}

static void upload_write(void *sink, const char *data, size_t len)
{
    struct upload *u = sink;
    if (u->error)
        return; /* the rest is read and dropped; the handler answers */
    if (len > (uint64_t)(u->expected - u->received)) {
        u->error = -EFBIG;
        return;
    }
    if (EVP_DigestUpdate(u->md, data, len) != 1) {
        u->error = -EIO;
        return;
    }
    while (len > 0) {
        ssize_t w = pwrite(u->fd, data, len, (off_t)u->received);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            u->error = -errno;
            return;
        }
        data += w;
        len -= (size_t)w;
        u->received += w;
    }
}

static void size_text(int64_t bytes, char *buf, size_t size)
{
    if (bytes >= 1LL << 30)
        snprintf(buf, size, "%.1f GiB", (double)bytes / (double)(1LL << 30));
    else
        snprintf(buf, size, "%.0f MiB", (double)bytes / (double)(1LL << 20));
}

static bool is_octet_stream(const char *ct)
{
    size_t n = strlen(UPLOAD_CONTENT_TYPE);
    return ct && strncasecmp(ct, UPLOAD_CONTENT_TYPE, n) == 0 && (ct[n] == '\0' || ct[n] == ';');
}

static int upload_open(struct brk_request *req, int64_t content_length, void **ret_sink,
                       struct brk_reply *rep)
{
    const struct atr_config *cfg = brk_server_config(req->server);
    struct brk_image_upload_input in;
    char why[200], a[32], b[32];
    if (brk_image_upload_input_parse(&req->query, &in, why, sizeof(why)) < 0)
        return brk_reply_error(rep, 400, "bad_request", why);
    if (!is_octet_stream(brk_request_header(req, "Content-Type")))
        return brk_reply_error(rep, 415, "unsupported_media_type",
                               "send the disk image itself as application/octet-stream");
    if (content_length < 0)
        return brk_reply_error(rep, 411, "length_required",
                               "an image upload must declare its Content-Length");
    if (content_length == 0)
        return brk_reply_error(rep, 400, "bad_request", "the upload is empty");
    int64_t max = (int64_t)cfg->broker.max_image_mb * 1024 * 1024;
    if (content_length > max) {
        size_text(content_length, a, sizeof(a));
        size_text(max, b, sizeof(b));
        snprintf(why, sizeof(why), "the image is %s; this broker accepts at most %s (max_image_mb)",
                 a, b);
        return brk_reply_error(rep, 413, "image_too_large", why);
    }

    struct upload *u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    u->fd = -1;
    u->in = in;
    u->expected = content_length;
    int r = 0;
    if ((size_t)snprintf(u->dir, sizeof(u->dir), "%s/images", cfg->paths.data_dir) >=
        sizeof(u->dir)) {
        r = -ENAMETOOLONG;
        goto out;
    }
    if (mkdir(u->dir, 0755) < 0 && errno != EEXIST) {
        r = -errno;
        goto out;
    }
    struct statvfs vfs;
    if (statvfs(u->dir, &vfs) < 0) {
        r = -errno;
        goto out;
    }
    /* The body and the qcow2 made from it are both on this disk for a while. */
    int64_t avail = (int64_t)vfs.f_bavail * (int64_t)vfs.f_frsize;
    int64_t need = content_length > (INT64_MAX - UPLOAD_DISK_MARGIN) / 2
                       ? INT64_MAX
                       : 2 * content_length + UPLOAD_DISK_MARGIN;
    if (avail < need) {
        size_text(avail, a, sizeof(a));
        size_text(need, b, sizeof(b));
        snprintf(why, sizeof(why),
                 "the image area has %s free; this upload needs %s (the file and its "
                 "converted copy)",
                 a, b);
        brk_reply_error(rep, 507, "insufficient_storage", why);
        goto out;
    }
    u->fd = open(u->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (u->fd < 0) {
        r = -errno;
        goto out;
    }
    /* Reserve the whole file now: a disk that fills up later cannot cut it. */
    r = posix_fallocate(u->fd, 0, (off_t)content_length);
    if (r == ENOSPC || r == EDQUOT) {
        r = 0;
        brk_reply_error(rep, 507, "insufficient_storage",
                        "the image area has no room for this upload");
        goto out;
    }
    if (r != 0 && r != EOPNOTSUPP) {
        r = -r;
        goto out;
    }
    r = 0;
    u->md = EVP_MD_CTX_new();
    if (!u->md || EVP_DigestInit_ex(u->md, EVP_sha256(), NULL) != 1) {
        r = -ENOMEM;
        goto out;
    }
    *ret_sink = u;
    u = NULL;
out:
    upload_free(u);
    return r;
}

const struct brk_body_sink_ops brk_image_upload_sink = {
    .open = upload_open,
    .write = upload_write,
    .free = upload_free,
};

/* qemu-img's words name our file; the client should read "the upload". */
static void client_words(const char *msg, const char *path, char *buf, size_t size)
{
    size_t n = strlen(path);
    if (strncmp(msg, path, n) == 0)
        snprintf(buf, size, "the upload%s", msg + n);
    else
        snprintf(buf, size, "%s", msg);
}

static json_t *version_json(const struct db_image_version *iv, const char *image, int version,
                            const struct hv_image_info *info, int64_t upload_bytes,
                            const char *upload_sha256)
{
    return json_pack("{s:I, s:s, s:i, s:s, s:I, s:I, s:s, s:s, s:I, s:s, s:s}", "id",
                     (json_int_t)iv->id, "image", image, "version", version, "state", "ready",
                     "size_bytes", (json_int_t)iv->size_bytes, "virtual_size_bytes",
                     (json_int_t)iv->virtual_size_bytes, "sha256", iv->sha256, "source_format",
                     info->source_format, "upload_bytes", (json_int_t)upload_bytes, "upload_sha256",
                     upload_sha256, "notes", iv->notes);
}

int brk_api_image_upload(struct brk_request *req, struct brk_reply *rep)
{
    struct upload *u = req->sink;
    char src[PATH_MAX], tmp[PATH_MAX], proc[64], why[600], hex[65];
    bool src_made = false, tmp_made = false;
    int r = 0;

    if (!u)
        return -EINVAL;
    if (u->error == -ENOSPC || u->error == -EDQUOT)
        return brk_reply_error(rep, 507, "insufficient_storage",
                               "the image area ran out of space during the upload");
    if (u->error)
        return u->error;
    if (u->received != u->expected)
        return brk_reply_error(rep, 400, "bad_request", "the upload ended early");
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (EVP_DigestFinal_ex(u->md, md, &mdlen) != 1 || mdlen != 32)
        return -EIO;
    for (int i = 0; i < 32; i++)
        snprintf(hex + i * 2, 3, "%02x", md[i]);
    if (u->in.sha256[0] && strcmp(u->in.sha256, hex) != 0) {
        snprintf(why, sizeof(why), "the upload's SHA-256 is %s, not the %s that was sent with it",
                 hex, u->in.sha256);
        return brk_reply_error(rep, 422, "checksum_mismatch", why);
    }

    /* Name the complete body for qemu-img; the row id is not known yet, so
     * the names carry random bits (linkat refuses to replace anything). */
    unsigned char rnd[8];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return -EIO;
    char tag[17];
    for (int i = 0; i < 8; i++)
        snprintf(tag + i * 2, 3, "%02x", rnd[i]);
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", u->fd);
    if ((size_t)snprintf(src, sizeof(src), "%s/.upload-%s", u->dir, tag) >= sizeof(src) ||
        (size_t)snprintf(tmp, sizeof(tmp), "%s/.upload-%s.qcow2", u->dir, tag) >= sizeof(tmp))
        return -ENAMETOOLONG;
    if (linkat(AT_FDCWD, proc, AT_FDCWD, src, AT_SYMLINK_FOLLOW) < 0)
        return -errno;
    src_made = true;
    close(u->fd); /* the name holds the file now */
    u->fd = -1;

    struct hv_image_info info;
    struct atr_error err = {0};
    int64_t import_start = atr_now_mono_ms();
    r = hv_storage_import(NULL, src, tmp, &info, &err);
    int64_t import_ms = atr_now_mono_ms() - import_start;
    unlink(src);
    src_made = false;
    if (r < 0) {
        client_words(err.msg, src, why, sizeof(why));
        log_info("image upload refused", "image", u->in.name, "errno", LOG_INT(-r), "why", err.msg);
        if (r == -EMEDIUMTYPE)
            r = brk_reply_error(rep, 415, "unsupported_image", why);
        else if (r == -ENOSPC || r == -EDQUOT)
            r = brk_reply_error(rep, 507, "insufficient_storage", why);
        else
            r = brk_reply_error(rep, 422, "bad_image", why);
        goto out;
    }
    tmp_made = true;

    int64_t id;
    int version;
    r = db_image_version_new(req->conn->db, u->in.name, u->in.notes, &id, &version);
    if (r < 0)
        goto out;
    struct db_image_version iv = {.id = id};
    snprintf(iv.path, sizeof(iv.path), "%s/%lld.qcow2", u->dir, (long long)id);
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, iv.path, RENAME_NOREPLACE) < 0) {
        r = -errno;
        db_image_version_failed(req->conn->db, id, "cannot move the imported file in place");
        goto out;
    }
    tmp_made = false;
    iv.size_bytes = info.size_bytes;
    iv.virtual_size_bytes = info.virtual_size_bytes;
    snprintf(iv.sha256, sizeof(iv.sha256), "%s", info.sha256);
    snprintf(iv.notes, sizeof(iv.notes), "%s", u->in.notes);
    r = db_image_version_ready(req->conn->db, &iv);
    if (r < 0) {
        db_image_version_failed(req->conn->db, id, "cannot mark the version ready");
        hv_storage_delete(iv.path);
        goto out;
    }
    char idtext[24];
    snprintf(idtext, sizeof(idtext), "%lld", (long long)id);
    brk_audit(req, "image.upload", "image_version", idtext,
              json_pack("{s:s, s:i, s:s, s:I, s:s, s:s}", "image", u->in.name, "version", version,
                        "source_format", info.source_format, "upload_bytes",
                        (json_int_t)u->received, "upload_sha256", hex, "sha256", info.sha256));
    log_info("image uploaded", "image", u->in.name, "version", LOG_INT(version), "id", LOG_INT(id),
             "bytes", LOG_INT(u->received), "format", info.source_format, "import_ms",
             LOG_INT(import_ms));
    brk_reply_json(rep, 201, version_json(&iv, u->in.name, version, &info, u->received, hex));
    r = 0;
out:
    if (src_made)
        unlink(src);
    if (tmp_made)
        hv_storage_delete(tmp);
    return r;
}
