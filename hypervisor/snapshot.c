/*
 * Snapshots: internal qcow2 snapshots of a VM's overlay.
 *
 * Why internal snapshots: the overlay is the only file of a VM that is
 * ever written, so keeping its snapshots (and the RAM state of RAM
 * snapshots) inside it leaves the golden image untouched, moves with the
 * VM's one file and goes away when the VM is deleted.  QEMU's snapshot-save
 * and snapshot-load are jobs: the command returns at once, the outcome
 * comes as JOB_STATUS_CHANGE events, and the job's error (if any) is read
 * with query-jobs before the job is dismissed.
 */
#include "proc-priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SNAP_TOOL_TIMEOUT_MS (10 * 60 * 1000)
#define SNAP_QMP_TIMEOUT_MS 30000

static const char *tool(const char *qemu_img)
{
    return qemu_img && qemu_img[0] ? qemu_img : "qemu-img";
}

int hv_snapshot_offline(const char *qemu_img, const char *image, enum hv_snap_op op,
                        const char *tag, struct atr_error *err)
{
    static const char *const flag[] = {"-c", "-a", "-d"};
    static const char *const what[] = {"create", "apply", "delete"};
    char *argv[] = {(char *)tool(qemu_img), "snapshot", (char *)flag[op], (char *)tag,
                    (char *)image,          NULL};
    char tail[512];
    int r = hv_proc_run(argv, SNAP_TOOL_TIMEOUT_MS, 0, NULL, tail, sizeof(tail));
    if (r < 0) {
        tail[strcspn(tail, "\n")] = '\0';
        return atr_error_set(err, r, "cannot %s snapshot %s of %s: %s", what[op], tag, image,
                             tail[0] ? tail : strerror(-r));
    }
    return 0;
}

int hv_snapshot_exists(const char *qemu_img, const char *image, const char *tag, bool *ret_found,
                       struct atr_error *err)
{
    char *argv[] = {(char *)tool(qemu_img), "info", "--output=json", "-U", (char *)image, NULL};
    char *out = NULL, tail[512];
    int r = hv_proc_run(argv, 60000, 4 << 20, &out, tail, sizeof(tail));
    if (r < 0) {
        tail[strcspn(tail, "\n")] = '\0';
        return atr_error_set(err, r, "qemu-img info %s failed: %s", image, tail);
    }
    json_t *info = json_loads(out, 0, NULL);
    free(out);
    if (!json_is_object(info)) {
        json_decref(info);
        return atr_error_set(err, -EPROTO, "qemu-img info %s: unreadable output", image);
    }
    bool found = false;
    size_t i;
    json_t *sn;
    json_array_foreach(json_object_get(info, "snapshots"), i, sn)
    {
        const char *name = json_string_value(json_object_get(sn, "name"));
        found = found || (name && strcmp(name, tag) == 0);
    }
    json_decref(info);
    *ret_found = found;
    return 0;
}

int hv_snapshot_clone(const char *qemu_img, const char *image, const char *tag, const char *dst,
                      struct atr_error *err)
{
    if (access(dst, F_OK) == 0)
        return atr_error_set(err, -EEXIST, "%s already exists", dst);
    char backing[4096];
    int r = hv_storage_backing(qemu_img, image, backing, sizeof(backing), err);
    if (r < 0)
        return r;
    char snap[128], tmp[4096];
    snprintf(snap, sizeof(snap), "snapshot.name=%s", tag);
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.part", dst) >= sizeof(tmp))
        return atr_error_set(err, -ENAMETOOLONG, "path too long: %s", dst);
    /* -U: the source may be open in a running QEMU; a snapshot's clusters
     * are never written again, so reading them unlocked is safe. */
    char *with_backing[] = {(char *)tool(qemu_img),
                            "convert",
                            "-U",
                            "-f",
                            "qcow2",
                            "-O",
                            "qcow2",
                            "-l",
                            snap,
                            "-B",
                            backing,
                            "-F",
                            "qcow2",
                            (char *)image,
                            tmp,
                            NULL};
    char *standalone[] = {
        (char *)tool(qemu_img), "convert", "-U", "-f", "qcow2", "-O", "qcow2", "-l", snap,
        (char *)image,          tmp,       NULL};
    char tail[512];
    unlink(tmp);
    r = hv_proc_run(backing[0] ? with_backing : standalone, SNAP_TOOL_TIMEOUT_MS, 0, NULL, tail,
                    sizeof(tail));
    if (r < 0) {
        unlink(tmp);
        tail[strcspn(tail, "\n")] = '\0';
        return atr_error_set(err, r, "cannot copy snapshot %s of %s: %s", tag, image,
                             tail[0] ? tail : strerror(-r));
    }
    if (rename(tmp, dst) < 0) {
        r = -errno;
        unlink(tmp);
        return atr_error_set(err, r, "cannot create %s: %s", dst, strerror(-r));
    }
    return 0;
}

struct hv_snap_job {
    struct hv_qmp *q;
    char id[64];
    const struct hv_snap_job_ops *ops;
    void *userdata;
    int pending;   /* QMP commands whose answer has not come yet */
    bool finished; /* done() was called */
    bool orphan;   /* the owner let go: free once pending is 0 */
};

static void job_release(struct hv_snap_job *j)
{
    if (j->orphan && j->pending == 0)
        free(j);
}

static void job_done(struct hv_snap_job *j, int error, const char *msg)
{
    if (j->finished)
        return;
    j->finished = true;
    if (!j->orphan && j->ops && j->ops->done)
        j->ops->done(j, error, msg, j->userdata);
}

static void on_start(struct hv_qmp *q, const struct hv_qmp_reply *r, void *userdata)
{
    (void)q;
    struct hv_snap_job *j = userdata;
    /* pending drops only after done(): the owner may let go of the job in
     * done(), and it must not be freed under this callback. */
    if (r->error < 0)
        job_done(j, r->error, r->err_desc ? r->err_desc : strerror(-r->error));
    j->pending--;
    job_release(j);
}

static void on_query_jobs(struct hv_qmp *q, const struct hv_qmp_reply *r, void *userdata)
{
    struct hv_snap_job *j = userdata;
    if (r->error < 0) {
        job_done(j, r->error, r->err_desc ? r->err_desc : strerror(-r->error));
        j->pending--;
        job_release(j);
        return;
    }
    const char *error = NULL;
    bool found = false;
    size_t i;
    json_t *job;
    json_array_foreach(r->ret, i, job)
    {
        if (strcmp(json_string_value(json_object_get(job, "id")) ?: "", j->id) == 0) {
            found = true;
            error = json_string_value(json_object_get(job, "error"));
        }
    }
    /* Concluded jobs stay listed until dismissed: dismiss it now. */
    if (found && !j->finished)
        hv_qmp_send(q, "job-dismiss", json_pack("{s:s}", "id", j->id), SNAP_QMP_TIMEOUT_MS, NULL,
                    NULL, NULL);
    if (!found)
        job_done(j, -EPROTO, "QEMU no longer knows the job");
    else if (error)
        job_done(j, -EIO, error);
    else
        job_done(j, 0, "");
    j->pending--;
    job_release(j);
}

int hv_snapshot_job_start(struct hv_qmp *q, enum hv_snap_op op, const char *job_id, const char *tag,
                          const char *node, const struct hv_snap_job_ops *ops, void *userdata,
                          struct hv_snap_job **ret_job)
{
    static const char *const cmd[] = {"snapshot-save", "snapshot-load", "snapshot-delete"};
    if (!q)
        return -ENOTCONN;
    struct hv_snap_job *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    if ((size_t)snprintf(j->id, sizeof(j->id), "%s", job_id) >= sizeof(j->id)) {
        free(j);
        return -ENAMETOOLONG;
    }
    j->q = q;
    j->ops = ops;
    j->userdata = userdata;
    json_t *args = op == HV_SNAP_DELETE ? json_pack("{s:s, s:s, s:[s]}", "job-id", job_id, "tag",
                                                    tag, "devices", node)
                                        : json_pack("{s:s, s:s, s:s, s:[s]}", "job-id", job_id,
                                                    "tag", tag, "vmstate", node, "devices", node);
    j->pending++;
    int r = hv_qmp_send(q, cmd[op], args, SNAP_QMP_TIMEOUT_MS, on_start, j, NULL);
    if (r < 0) {
        free(j);
        return r;
    }
    *ret_job = j;
    return 0;
}

void hv_snapshot_job_event(struct hv_snap_job *j, const json_t *data)
{
    if (!j || j->finished ||
        strcmp(json_string_value(json_object_get(data, "id")) ?: "", j->id) != 0)
        return;
    const char *status = json_string_value(json_object_get(data, "status"));
    if (!status)
        return;
    static const struct {
        const char *status;
        int pct;
    } steps[] = {{"created", 10}, {"running", 20},   {"waiting", 80},
                 {"pending", 85}, {"concluded", 90}, {"aborting", 90}};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
        if (strcmp(steps[i].status, status) == 0 && j->ops && j->ops->progress && !j->orphan)
            j->ops->progress(j, status, steps[i].pct, j->userdata);
    if (strcmp(status, "concluded") == 0) {
        j->pending++;
        if (hv_qmp_send(j->q, "query-jobs", NULL, SNAP_QMP_TIMEOUT_MS, on_query_jobs, j, NULL) <
            0) {
            job_done(j, -ENOTCONN, "QMP connection lost");
            j->pending--;
            job_release(j);
        }
    }
}

struct hv_snap_job *hv_snapshot_job_free(struct hv_snap_job *j)
{
    if (!j)
        return NULL;
    j->orphan = true;
    job_release(j);
    return NULL;
}
