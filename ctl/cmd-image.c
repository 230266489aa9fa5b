/* atriumctl image import | list | show | delete */
#include "ctl-priv.h"
#include "hv.h"
#include "pool.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void image_usage(FILE *out)
{
    fprintf(out, "Usage: atriumctl image import FILE --name NAME [--notes TEXT]\n"
                 "                              [--kernel FILE --initrd FILE [--cmdline TEXT]]\n"
                 "       atriumctl [--json] image list [NAME]\n"
                 "       atriumctl [--json] image show NAME[:VERSION]\n"
                 "       atriumctl image delete NAME:VERSION\n"
                 "\n"
                 "Golden images: immutable numbered versions of a desktop disk.\n"
                 "  import  convert FILE (qcow2 or raw) into a new version of NAME under\n"
                 "          <data_dir>/images, checksum it, and print the new version;\n"
                 "          --kernel/--initrd boot it directly instead of via its boot loader\n"
                 "  list    every version (of NAME), newest first, and the pools using it\n"
                 "  show    one version (default: the newest ready one)\n"
                 "  delete  remove a version no pool and no VM uses\n");
}

/* The import runs in a thread while the main thread draws the bar from the
 * destination file's growth against the source's allocated size. */
struct import_job {
    const char *src, *dst;
    struct hv_image_info info;
    struct atr_error err;
    int rc;
};

static void *import_thread(void *arg)
{
    struct import_job *j = arg;
    j->rc = hv_storage_import(NULL, j->src, j->dst, &j->info, &j->err);
    return NULL;
}

static void draw_bar(int pct, bool tty)
{
    if (!tty)
        return;
    char bar[41];
    int fill = pct * 40 / 100;
    for (int i = 0; i < 40; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[40] = '\0';
    fprintf(stderr, "\rimporting [%s] %3d%%", bar, pct);
    fflush(stderr);
}

/* Copy a boot file next to the image, read-only like the image. */
static int copy_boot_file(const char *src, const char *dst, struct atr_error *err)
{
    FILE *in = fopen(src, "rbe");
    if (!in)
        return atr_error_set(err, -errno, "cannot open %s: %s", src, strerror(errno));
    FILE *out = fopen(dst, "wbxe");
    if (!out) {
        int e = errno;
        fclose(in);
        return atr_error_set(err, -e, "cannot create %s: %s", dst, strerror(e));
    }
    char buf[65536];
    size_t n;
    int r = 0;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        if (fwrite(buf, 1, n, out) != n) {
            r = atr_error_set(err, -EIO, "cannot write %s", dst);
            break;
        }
    if (ferror(in))
        r = atr_error_set(err, -EIO, "cannot read %s", src);
    fclose(in);
    if (fclose(out) != 0 && r == 0)
        r = atr_error_set(err, -EIO, "cannot write %s", dst);
    if (r == 0)
        chmod(dst, 0444);
    else
        unlink(dst);
    return r;
}

static int cmd_import(struct ctl *ctl, const char *file, const char *name, const char *notes,
                      const char *kernel, const char *initrd, const char *cmdline)
{
    struct atr_error err = {0};
    if (!name) {
        fprintf(stderr, "atriumctl: image import needs --name NAME\n");
        return CTL_EXIT_USAGE;
    }
    if ((kernel == NULL) != (initrd == NULL)) {
        fprintf(stderr, "atriumctl: --kernel and --initrd go together\n");
        return CTL_EXIT_USAGE;
    }
    struct stat st;
    if (stat(file, &st) < 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "atriumctl: %s: not a readable file\n", file);
        return CTL_EXIT_FAILED;
    }
    struct db *db = NULL;
    int rc = ctl_open_db(ctl, &db);
    if (rc != CTL_EXIT_OK)
        return rc;
    char dir[400];
    if (strlen(ctl->cfg->paths.data_dir) > sizeof(dir) - 16) {
        fprintf(stderr, "atriumctl: [paths] data_dir is too long\n");
        db_close(db);
        return CTL_EXIT_CONFIG;
    }
    snprintf(dir, sizeof(dir), "%s/images", ctl->cfg->paths.data_dir);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "atriumctl: cannot create %s: %s\n", dir, strerror(errno));
        db_close(db);
        return CTL_EXIT_FAILED;
    }
    int64_t id;
    int version;
    int r = db_image_version_new(db, name, notes, &id, &version);
    if (r == -EINVAL) {
        fprintf(stderr, "atriumctl: '%s' is not a valid image name (1-128 characters)\n", name);
        db_close(db);
        return CTL_EXIT_FAILED;
    }
    if (r < 0) {
        fprintf(stderr, "atriumctl: cannot register the image: %s\n", strerror(-r));
        db_close(db);
        return CTL_EXIT_FAILED;
    }
    /* the file name carries the row id, which is never reused */
    struct db_image_version iv = {.id = id};
    snprintf(iv.path, sizeof(iv.path), "%s/%lld.qcow2", dir, (long long)id);
    struct import_job job = {.src = file, .dst = iv.path};
    pthread_t t;
    bool tty = isatty(STDERR_FILENO);
    if (pthread_create(&t, NULL, import_thread, &job) != 0) {
        db_image_version_failed(db, id, "cannot start the import");
        db_close(db);
        return CTL_EXIT_FAILED;
    }
    int64_t total = (int64_t)st.st_blocks * 512;
    /* wait for the import to end, redrawing the bar every 200 ms meanwhile */
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 200 * 1000 * 1000;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        if (pthread_timedjoin_np(t, NULL, &until) == 0)
            break;
        struct stat ds;
        int pct = 0;
        if (total > 0 && stat(iv.path, &ds) == 0)
            pct = (int)((int64_t)ds.st_blocks * 512 * 100 / total);
        draw_bar(pct > 99 ? 99 : pct, tty);
    }
    if (job.rc < 0) {
        if (tty)
            fprintf(stderr, "\n");
        fprintf(stderr, "atriumctl: import of %s failed: %s\n", file, job.err.msg);
        db_image_version_failed(db, id, job.err.msg);
        db_close(db);
        return CTL_EXIT_FAILED;
    }
    draw_bar(100, tty);
    if (tty)
        fprintf(stderr, "\n");
    iv.size_bytes = job.info.size_bytes;
    iv.virtual_size_bytes = job.info.virtual_size_bytes;
    snprintf(iv.sha256, sizeof(iv.sha256), "%s", job.info.sha256);
    if (kernel) {
        snprintf(iv.boot_kernel, sizeof(iv.boot_kernel), "%s/%lld.vmlinuz", dir, (long long)id);
        snprintf(iv.boot_initrd, sizeof(iv.boot_initrd), "%s/%lld.initrd", dir, (long long)id);
        snprintf(iv.boot_cmdline, sizeof(iv.boot_cmdline), "%s", cmdline ? cmdline : "");
        if (copy_boot_file(kernel, iv.boot_kernel, &err) < 0 ||
            copy_boot_file(initrd, iv.boot_initrd, &err) < 0) {
            fprintf(stderr, "atriumctl: %s\n", err.msg);
            db_image_version_failed(db, id, err.msg);
            unlink(iv.boot_kernel);
            hv_storage_delete(iv.path);
            db_close(db);
            return CTL_EXIT_FAILED;
        }
    }
    r = db_image_version_ready(db, &iv);
    if (r < 0) {
        fprintf(stderr, "atriumctl: cannot mark the version ready: %s\n", strerror(-r));
        db_close(db);
        return CTL_EXIT_FAILED;
    }
    if (ctl->json)
        printf("{\"image\":\"%s\",\"version\":%d,\"id\":%lld,\"sha256\":\"%s\"}\n", name, version,
               (long long)id, iv.sha256);
    else
        printf("imported %s version %d (%s, %.1f MiB, sha256 %s)\n", name, version,
               job.info.source_format, (double)iv.size_bytes / 1048576.0, iv.sha256);
    db_close(db);
    return CTL_EXIT_OK;
}

static json_t *version_json(const struct db_image_version *v)
{
    return json_pack("{s:I, s:s, s:i, s:s, s:s, s:I, s:I, s:s, s:s, s:s}", "id", (json_int_t)v->id,
                     "image", v->image_name, "version", v->version, "state", v->state, "path",
                     v->path, "size_bytes", (json_int_t)v->size_bytes, "virtual_size_bytes",
                     (json_int_t)v->virtual_size_bytes, "sha256", v->sha256, "boot_kernel",
                     v->boot_kernel, "notes", v->notes);
}

static int cmd_list(struct ctl *ctl, const char *name)
{
    struct db *db = NULL;
    int rc = ctl_open_db(ctl, &db);
    if (rc != CTL_EXIT_OK)
        return rc;
    struct db_image_version *list = NULL;
    size_t n = 0;
    struct db_pool *pools = NULL;
    size_t np = 0;
    if (db_image_version_list(db, name, &list, &n) < 0 || db_pool_list(db, &pools, &np) < 0) {
        fprintf(stderr, "atriumctl: cannot read images\n");
        free(list);
        db_close(db);
        return CTL_EXIT_FAILED;
    }
    json_t *arr = json_array();
    if (!ctl->json)
        printf("%-20s %-8s %-10s %10s  %-16s %s\n", "IMAGE", "VERSION", "STATE", "SIZE(MiB)",
               "SHA256", "POOLS");
    for (size_t i = 0; i < n; i++) {
        char used[256] = "";
        size_t len = 0;
        json_t *pj = json_array();
        for (size_t k = 0; k < np; k++)
            if (pools[k].image_version_id == list[i].id) {
                len += (size_t)snprintf(used + len, len < sizeof(used) ? sizeof(used) - len : 0,
                                        "%s%s", len ? "," : "", pools[k].name);
                json_array_append_new(pj, json_string(pools[k].name));
            }
        if (ctl->json) {
            json_t *o = version_json(&list[i]);
            json_object_set_new(o, "pools", pj);
            json_array_append_new(arr, o);
        } else {
            json_decref(pj);
            printf("%-20s %-8d %-10s %10.1f  %-16.16s %s\n", list[i].image_name, list[i].version,
                   list[i].state, (double)list[i].size_bytes / 1048576.0, list[i].sha256,
                   used[0] ? used : "-");
        }
    }
    if (ctl->json) {
        char *s = atr_json_dumps(arr);
        printf("%s\n", s ? s : "[]");
        free(s);
    }
    json_decref(arr);
    free(list);
    free(pools);
    db_close(db);
    return CTL_EXIT_OK;
}

static int cmd_show(struct ctl *ctl, const char *spec)
{
    struct db *db = NULL;
    int rc = ctl_open_db(ctl, &db);
    if (rc != CTL_EXIT_OK)
        return rc;
    struct db_image_version v;
    int r = pool_image_version_find(db, spec, &v);
    db_close(db);
    if (r == -EINVAL) {
        fprintf(stderr, "atriumctl: '%s': expected NAME or NAME:VERSION\n", spec);
        return CTL_EXIT_USAGE;
    }
    if (r < 0) {
        fprintf(stderr, "atriumctl: no image version '%s'\n", spec);
        return CTL_EXIT_FAILED;
    }
    if (ctl->json) {
        json_t *o = version_json(&v);
        char *s = atr_json_dumps(o);
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(o);
        return CTL_EXIT_OK;
    }
    printf("image:     %s\nversion:   %d\nstate:     %s\npath:      %s\n"
           "size:      %lld bytes on disk, %lld bytes virtual\nsha256:    %s\n",
           v.image_name, v.version, v.state, v.path, (long long)v.size_bytes,
           (long long)v.virtual_size_bytes, v.sha256);
    if (v.boot_kernel[0])
        printf("boot:      kernel %s, initrd %s, cmdline '%s'\n", v.boot_kernel, v.boot_initrd,
               v.boot_cmdline);
    if (v.notes[0])
        printf("notes:     %s\n", v.notes);
    return CTL_EXIT_OK;
}

static int cmd_delete(struct ctl *ctl, const char *spec)
{
    if (!strchr(spec, ':')) {
        fprintf(stderr, "atriumctl: image delete needs NAME:VERSION\n");
        return CTL_EXIT_USAGE;
    }
    struct db *db = NULL;
    int rc = ctl_open_db(ctl, &db);
    if (rc != CTL_EXIT_OK)
        return rc;
    struct db_image_version v;
    int r = pool_image_version_find(db, spec, &v);
    if (r == 0)
        r = db_image_version_delete(db, v.id);
    db_close(db);
    if (r == -EBUSY) {
        fprintf(stderr, "atriumctl: %s is still used by a pool or a VM\n", spec);
        return CTL_EXIT_FAILED;
    }
    if (r < 0) {
        fprintf(stderr, "atriumctl: no image version '%s'\n", spec);
        return CTL_EXIT_FAILED;
    }
    /* the row is gone: its files are no longer anyone's */
    if (v.path[0])
        hv_storage_delete(v.path);
    if (v.boot_kernel[0])
        unlink(v.boot_kernel);
    if (v.boot_initrd[0])
        unlink(v.boot_initrd);
    printf("deleted %s version %d\n", v.image_name, v.version);
    return CTL_EXIT_OK;
}

int ctl_cmd_image(struct ctl *ctl, int argc, char **argv)
{
    static const struct option opts[] = {
        {"name", required_argument, NULL, 'n'},    {"notes", required_argument, NULL, 'N'},
        {"kernel", required_argument, NULL, 'k'},  {"initrd", required_argument, NULL, 'i'},
        {"cmdline", required_argument, NULL, 'C'}, {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},          {0},
    };
    const char *name = NULL, *notes = NULL, *kernel = NULL, *initrd = NULL, *cmdline = NULL;
    int c;
    /* options may follow the subcommand: permute */
    while ((c = getopt_long(argc, argv, "hn:", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            name = optarg;
            break;
        case 'N':
            notes = optarg;
            break;
        case 'k':
            kernel = optarg;
            break;
        case 'i':
            initrd = optarg;
            break;
        case 'C':
            cmdline = optarg;
            break;
        case 'j':
            ctl->json = true;
            break;
        case 'h':
            image_usage(stdout);
            return CTL_EXIT_OK;
        default:
            image_usage(stderr);
            return CTL_EXIT_USAGE;
        }
    }
    int nargs = argc - optind;
    const char *sub = nargs > 0 ? argv[optind] : NULL;
    const char *arg = nargs > 1 ? argv[optind + 1] : NULL;
    if (!sub || nargs > 2) {
        image_usage(stderr);
        return CTL_EXIT_USAGE;
    }
    if (strcmp(sub, "import") == 0 && arg)
        return cmd_import(ctl, arg, name, notes, kernel, initrd, cmdline);
    if (strcmp(sub, "list") == 0)
        return cmd_list(ctl, arg);
    if (strcmp(sub, "show") == 0 && arg)
        return cmd_show(ctl, arg);
    if (strcmp(sub, "delete") == 0 && arg)
        return cmd_delete(ctl, arg);
    fprintf(stderr,
            "atriumctl: unknown or incomplete image command (see 'atriumctl image --help')\n");
    return CTL_EXIT_USAGE;
}
