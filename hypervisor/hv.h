/*
 * libatrium-hv: everything Atrium does to QEMU on one host — command lines,
 * the QMP client, the accelerator probe, qcow2 images and overlays, and the
 * VM processes themselves.  This is the one header other modules include
 * from hypervisor/; files ending in -priv.h are private to it.
 *
 * Conventions: functions return 0 (or a positive count) on success and
 * -errno on failure; outputs go through ret_ parameters left untouched on
 * failure; library code logs at debug level only, the caller logs once.
 */
#pragma once

#include "common.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <poll.h>
#include <sys/types.h>

/* ------------------------------------------------------------------------ */
/* Accelerator                                                              */
/* ------------------------------------------------------------------------ */

enum hv_accel { HV_ACCEL_TCG = 0, HV_ACCEL_KVM = 1 };

/* "tcg" or "kvm". */
const char *hv_accel_name(enum hv_accel a);

struct hv_accel_result {
    enum hv_accel accel;
    char note[256];  /* why this accelerator: shown in `atriumctl host info` */
    int64_t took_ms; /* how long the probe ran */
};

/*
 * Decide the accelerator.  @want is "auto", "kvm" or "tcg" (hostd.accel).
 * "tcg" needs no probe.  "auto" and "kvm" run a vCPU through /dev/kvm in a
 * child process that must come back within @timeout_ms: a host where
 * /dev/kvm exists but guests hang is caught here instead of hanging every
 * VM.  "auto" falls back to TCG and says why in ret->note; "kvm" returns
 * -ENODEV when the probe fails (ret is still filled with the reason).
 */
int hv_accel_probe(const char *want, int timeout_ms, struct hv_accel_result *ret);

/*
 * The probe itself, on @dev (normally "/dev/kvm").  Returns 0 when a vCPU
 * ran guest code to a HLT within @timeout_ms, else -errno (-ETIMEDOUT when
 * it hung) with a sentence in @note (@note_size bytes).
 */
int hv_accel_kvm_check(const char *dev, int timeout_ms, char *note, size_t note_size);

/* ------------------------------------------------------------------------ */
/* VM definition and QEMU command line                                      */
/* ------------------------------------------------------------------------ */

enum hv_boot { HV_BOOT_DISK = 0, HV_BOOT_KERNEL };
enum hv_nic { HV_NIC_NONE = 0, HV_NIC_USER, HV_NIC_BRIDGE };

/* What a VM is made of; strings are borrowed. */
struct hv_vm_def {
    int64_t id;
    const char *name;      /* [A-Za-z0-9][A-Za-z0-9._-]* */
    int vcpus;             /* 1..256 */
    int memory_mb;         /* >= 64 */
    const char *disk_path; /* qcow2 (usually an overlay); NULL or "" = no disk */
    enum hv_boot boot;
    const char *kernel, *initrd, *cmdline; /* HV_BOOT_KERNEL */
    enum hv_nic nic;
    const char *bridge; /* HV_NIC_BRIDGE */
    const char *tap;    /* HV_NIC_BRIDGE: the tap hostd made on @bridge (hv_net_tap_create) */
    const char *mac;    /* "52:54:00:..", NULL or "" = QEMU picks */
    enum hv_accel accel;
    bool start_paused;  /* -S: CPUs stay stopped until "cont" */
    const char *loadvm; /* RAM snapshot of disk_path to resume from (-loadvm); NULL = boot */
    const char *incoming; /* "tcp:ADDR:PORT": wait for a live migration there (-incoming) */
    /* Instant clones (see "Instant clones" below).  A template and its
     * clones must agree on everything but these four and the disk. */
    const char *ram_path; /* guest RAM in this file (memory-backend-file); NULL = anonymous */
    bool ram_shared;      /* share=on (template: RAM written to the file); off = private COW map */
    bool incoming_defer;  /* -incoming defer: device state loaded later (hv_instant_load) */
    bool identity_port;   /* virtio-serial port org.atrium.identity on a pipe (paths.identity) */
};

/* Where one VM's runtime files live: <runtime_dir>/vms/<id>/. */
struct hv_vm_paths {
    char dir[256];
    char qmp[108]; /* unix socket paths are bounded by sun_path */
    /* A second monitor, for displayd (per-connection SPICE passwords):
     * QEMU serves one client per monitor and hostd keeps the first. */
    char qmp_display[108];
    char vnc[108];
    char spice[108];
    char pidfile[256];
    char serial_log[256]; /* guest's ttyS0 */
    char qemu_log[256];   /* QEMU's own stdout and stderr */
    char identity[240];   /* base of the identity port's FIFOs: <identity>.in, <identity>.out */
};

/* Fill @ret for VM @id under @runtime_dir.  -ENAMETOOLONG when a socket path would not fit. */
int hv_vm_paths_init(const char *runtime_dir, int64_t id, struct hv_vm_paths *ret);

/*
 * Build the argv of the QEMU that runs @def (argv[0] = @qemu).  @qmp_fd is a
 * listening unix socket QEMU inherits for its QMP monitor (so the monitor is
 * connectable before QEMU has even started), or -1 to let QEMU bind
 * paths->qmp itself.  Every console listens on a unix socket: the command
 * line never opens a TCP or UDP port.  Sets *ret_argv (NULL-terminated,
 * free with hv_argv_free).  -EINVAL on an incomplete definition.
 */
int hv_qemu_argv_new(const struct hv_vm_def *def, const struct hv_vm_paths *paths, const char *qemu,
                     int qmp_fd, char ***ret_argv);

/* Accepts NULL; returns NULL. */
char **hv_argv_free(char **argv);

/* ------------------------------------------------------------------------ */
/* Network: a bridged NIC's tap and the bandwidth cap                       */
/* ------------------------------------------------------------------------ */

#define HV_IFNAMSIZ 16 /* IFNAMSIZ: 15 characters and the NUL */

/*
 * The names of VM @id's tap ("atr<id>n0") and of the ifb device that shapes
 * what the guest sends ("atr<id>i0").  -ENAMETOOLONG for ids above 10 digits.
 */
int hv_net_names(int64_t id, char ret_tap[static HV_IFNAMSIZ], char ret_ifb[static HV_IFNAMSIZ]);

/*
 * Create the persistent tap @tap, enslaved to @bridge and up, for a QEMU to
 * open by name (-netdev tap,ifname=…).  A tap of that name left by an
 * earlier QEMU of the VM is replaced.  -ENODEV when @bridge does not exist;
 * @err says what failed.  Runs `ip`; needs CAP_NET_ADMIN.
 */
int hv_net_tap_create(const char *tap, const char *bridge, struct atr_error *err);

/* Remove @tap and @ifb (either may be NULL); 0 also when they were not there. */
int hv_net_tap_delete(const char *tap, const char *ifb);

/*
 * Cap the VM's traffic at @bps bytes per second each way, live: a tbf root
 * qdisc on @tap (to the guest) and, for what the guest sends, an ingress
 * redirect from @tap to @ifb (created here) with its own tbf.  @bps 0 lifts
 * the cap (qdiscs and @ifb removed).  Re-applying is idempotent.  -ENODEV
 * when @tap does not exist; -ERANGE for a rate tc cannot express.
 */
int hv_net_cap_apply(const char *tap, const char *ifb, int64_t bps, struct atr_error *err);

/* ------------------------------------------------------------------------ */
/* QMP client                                                               */
/* ------------------------------------------------------------------------ */

/*
 * An asynchronous QMP connection.  The owner polls hv_qmp_fd() for
 * hv_qmp_poll_events() with a timeout of hv_qmp_timeout_ms() and hands the
 * result to hv_qmp_dispatch(), which reads, parses, fires reply and event
 * callbacks and expires commands whose deadline passed.  Commands sent
 * before the greeting and capabilities negotiation are held and go out once
 * the connection is ready.  Not thread-safe: one owner thread.
 */
struct hv_qmp;

/* Events hostd acts on; anything else arrives as HV_QMP_EVENT_OTHER. */
enum hv_qmp_event {
    HV_QMP_EVENT_OTHER = 0,
    HV_QMP_EVENT_BALLOON_CHANGE,
    HV_QMP_EVENT_BLOCK_IO_ERROR,
    HV_QMP_EVENT_BLOCK_JOB_CANCELLED,
    HV_QMP_EVENT_BLOCK_JOB_COMPLETED,
    HV_QMP_EVENT_BLOCK_JOB_ERROR,
    HV_QMP_EVENT_DEVICE_DELETED,
    HV_QMP_EVENT_GUEST_PANICKED,
    HV_QMP_EVENT_JOB_STATUS_CHANGE,
    HV_QMP_EVENT_MIGRATION,
    HV_QMP_EVENT_MIGRATION_PASS,
    HV_QMP_EVENT_POWERDOWN,
    HV_QMP_EVENT_RESET,
    HV_QMP_EVENT_RESUME,
    HV_QMP_EVENT_RTC_CHANGE,
    HV_QMP_EVENT_SHUTDOWN,
    HV_QMP_EVENT_SPICE_CONNECTED,
    HV_QMP_EVENT_SPICE_DISCONNECTED,
    HV_QMP_EVENT_SPICE_INITIALIZED,
    HV_QMP_EVENT_STOP,
    HV_QMP_EVENT_SUSPEND,
    HV_QMP_EVENT_VNC_CONNECTED,
    HV_QMP_EVENT_VNC_DISCONNECTED,
    HV_QMP_EVENT_WAKEUP,
};

/* Map an event name to its enum (HV_QMP_EVENT_OTHER when unknown) and back. */
enum hv_qmp_event hv_qmp_event_from_name(const char *name);
const char *hv_qmp_event_name(enum hv_qmp_event ev);

struct hv_qmp_ops {
    /* An event; @data is borrowed (may be NULL), @name is QEMU's spelling. */
    void (*event)(struct hv_qmp *q, enum hv_qmp_event ev, const char *name, json_t *data,
                  void *userdata);
    /* Greeting seen and capabilities accepted. */
    void (*ready)(struct hv_qmp *q, void *userdata);
};

/* The outcome of one command, handed to its callback. */
struct hv_qmp_reply {
    const char *command;
    int error;             /* 0; -EIO QEMU returned an error; -ETIMEDOUT; -ECANCELED
                              (connection closed or freed first) */
    json_t *ret;           /* "return" value when error == 0, borrowed */
    const char *err_class; /* QEMU's error class when error == -EIO, else NULL */
    const char *err_desc;  /* QEMU's error text when error == -EIO, else NULL */
};

typedef void (*hv_qmp_reply_fn)(struct hv_qmp *q, const struct hv_qmp_reply *reply, void *userdata);

/*
 * Wrap connected socket @fd (ownership taken, also on failure).  The
 * greeting and capabilities must complete within @handshake_timeout_ms.
 * @ops may be NULL.  Sets *ret_q.
 */
int hv_qmp_new(int fd, const struct hv_qmp_ops *ops, void *userdata, int handshake_timeout_ms,
               struct hv_qmp **ret_q);

/* Connect to the unix socket @path and hv_qmp_new() it.  -ENOENT/-ECONNREFUSED when nobody listens.
 */
int hv_qmp_connect(const char *path, const struct hv_qmp_ops *ops, void *userdata,
                   int handshake_timeout_ms, struct hv_qmp **ret_q);

/* Close; pending commands get -ECANCELED.  Accepts NULL; returns NULL. */
struct hv_qmp *hv_qmp_free(struct hv_qmp *q);

int hv_qmp_fd(const struct hv_qmp *q);
short hv_qmp_poll_events(const struct hv_qmp *q);
/* Milliseconds until the nearest deadline (handshake or command), -1 when none. */
int hv_qmp_timeout_ms(const struct hv_qmp *q);
bool hv_qmp_is_ready(const struct hv_qmp *q);

/*
 * Handle @revents from poll() and expire deadlines.  Returns 0; -ECONNRESET
 * when QEMU closed the connection; -ETIMEDOUT when the handshake did not
 * complete in time; -EPROTO on a malformed greeting; -EMSGSIZE when QEMU
 * sent a line longer than the bound.  After an error the connection is dead
 * (pending commands were cancelled) and only hv_qmp_free is useful.
 */
int hv_qmp_dispatch(struct hv_qmp *q, short revents);

/*
 * Feed bytes as if read from the socket (hv_qmp_dispatch uses it; so do
 * tests and the fuzzer).  Same returns as hv_qmp_dispatch.
 */
int hv_qmp_feed(struct hv_qmp *q, const void *buf, size_t len);

/*
 * Queue @command with @args (reference stolen; NULL for none), to be
 * answered within @timeout_ms (<= 0: no deadline).  @fn (may be NULL) is
 * called exactly once with the outcome.  Sets *ret_id (may be NULL) to the
 * command's id.
 */
int hv_qmp_send(struct hv_qmp *q, const char *command, json_t *args, int timeout_ms,
                hv_qmp_reply_fn fn, void *userdata, uint64_t *ret_id);

/*
 * Like hv_qmp_send, with descriptor @fd (borrowed: a duplicate travels)
 * attached to the command's bytes as SCM_RIGHTS, for "getfd".  The
 * connection must be a socket (-EINVAL when detached).
 */
int hv_qmp_send_fd(struct hv_qmp *q, const char *command, json_t *args, int fd, int timeout_ms,
                   hv_qmp_reply_fn fn, void *userdata, uint64_t *ret_id);

/*
 * Run one command synchronously: drive the connection (events are still
 * dispatched) until its reply or @timeout_ms.  On success sets *ret_return
 * (may be NULL; new reference) and returns 0; -EIO with QEMU's words in
 * @err; -ETIMEDOUT; or a connection error.
 */
int hv_qmp_call(struct hv_qmp *q, const char *command, json_t *args, int timeout_ms,
                json_t **ret_return, struct atr_error *err);

/* Drive the connection until ready, at most @timeout_ms. */
int hv_qmp_wait_ready(struct hv_qmp *q, int timeout_ms);

/* ------------------------------------------------------------------------ */
/* Storage: golden images and linked clones (qcow2)                         */
/* ------------------------------------------------------------------------ */

struct hv_image_info {
    char source_format[16];     /* "qcow2" or "raw": what was imported */
    int64_t size_bytes;         /* bytes the file occupies on disk */
    int64_t virtual_size_bytes; /* disk size the guest sees */
    char sha256[65];            /* of the imported qcow2 file, lower-case hex */
};

/*
 * Import @src (qcow2 or raw; anything else, or an image with a backing
 * file, is refused with -EMEDIUMTYPE) as a standalone qcow2 at @dst via
 * `qemu-img convert`, checksum it and make it read-only (mode 0444): golden
 * images are never written after import.  @dst must not exist (-EEXIST);
 * nothing is left at @dst on failure.  @qemu_img NULL = "qemu-img".
 * Fills *ret_info.  @err receives the tool's last words on failure.
 */
int hv_storage_import(const char *qemu_img, const char *src, const char *dst,
                      struct hv_image_info *ret_info, struct atr_error *err);

/*
 * Create a linked clone: a qcow2 overlay at @overlay whose backing file is
 * @base (referenced by absolute path).  -EEXIST if @overlay exists.
 */
int hv_storage_clone(const char *qemu_img, const char *base, const char *overlay,
                     struct atr_error *err);

/*
 * Reset @overlay to pristine: replace it, atomically, by a fresh overlay of
 * the same backing file.  The VM using it must be stopped.  -ENOENT when
 * @overlay does not exist; -EINVAL when it has no backing file.
 */
int hv_storage_reset(const char *qemu_img, const char *overlay, struct atr_error *err);

/* Remove a disk file.  0 also when it was already gone. */
int hv_storage_delete(const char *path);

/* Bytes @path really occupies on disk (allocated blocks, not its apparent size). */
int hv_storage_usage(const char *path, int64_t *ret_bytes);

/* SHA-256 of the file at @path as 64 lower-case hex digits plus NUL. */
int hv_storage_sha256(const char *path, char ret_hex[static 65]);

/*
 * The backing file recorded in @image (absolute path) into @buf, "" when it
 * has none.  Reads `qemu-img info`.
 */
int hv_storage_backing(const char *qemu_img, const char *image, char *buf, size_t size,
                       struct atr_error *err);

/* ------------------------------------------------------------------------ */
/* VM processes                                                             */
/* ------------------------------------------------------------------------ */

/*
 * One QEMU process and its QMP connection.  QEMU runs in its own session
 * (setsid), so it outlives the process that started it; another hostd can
 * adopt it later with hv_vm_attach.  The owner polls the VM's descriptors
 * (hv_vm_pollfds) and hands results to hv_vm_dispatch; the VM learns its
 * state from QMP events and from the process's pidfd, and calls
 * ops->changed after every change.
 */
struct hv_vm;

enum hv_vm_power {
    HV_VM_STARTING = 0, /* process up, QMP not ready yet */
    HV_VM_RUNNING,
    HV_VM_PAUSED,
    HV_VM_EXITED, /* process gone: see hv_vm_exit_info */
};

const char *hv_vm_power_name(enum hv_vm_power p);

struct hv_vm_ops {
    void (*changed)(struct hv_vm *vm, void *userdata);
    /* Every QMP event, after the VM acted on it (may be NULL); @data borrowed. */
    void (*event)(struct hv_vm *vm, enum hv_qmp_event ev, json_t *data, void *userdata);
};

/*
 * Start QEMU for @def with runtime files under @runtime_dir/vms/<id>/ (made
 * if missing; stale sockets removed).  QEMU's stdout and stderr go to
 * paths.qemu_log.  Returns once the process exists; it becomes RUNNING (or
 * PAUSED with def->start_paused) when QMP answers.  Sets *ret_vm.
 */
int hv_vm_start(const struct hv_vm_def *def, const char *runtime_dir, const char *qemu,
                const struct hv_vm_ops *ops, void *userdata, struct hv_vm **ret_vm,
                struct atr_error *err);

/*
 * Adopt the QEMU of VM @id that is already running (hostd restarted): its
 * pid comes from the pid file and must be a process whose command line
 * names that pid file, so a recycled pid is never adopted.  -ESRCH when no
 * such QEMU runs; -ECONNREFUSED when its QMP socket does not answer.
 */
int hv_vm_attach(int64_t id, const char *runtime_dir, const struct hv_vm_ops *ops, void *userdata,
                 struct hv_vm **ret_vm, struct atr_error *err);

/* Close descriptors; the QEMU process is left alone.  Accepts NULL; returns NULL. */
struct hv_vm *hv_vm_free(struct hv_vm *vm);

int64_t hv_vm_id(const struct hv_vm *vm);
pid_t hv_vm_pid(const struct hv_vm *vm);
enum hv_vm_power hv_vm_power(const struct hv_vm *vm);
const struct hv_vm_paths *hv_vm_paths(const struct hv_vm *vm);
/* The QMP connection (NULL once QEMU is gone). */
struct hv_qmp *hv_vm_qmp(struct hv_vm *vm);

/* Up to 2 descriptors to poll (QMP socket, process pidfd) into @fds; returns how many. */
int hv_vm_pollfds(const struct hv_vm *vm, struct pollfd fds[static 2]);
/* Milliseconds until the VM needs hv_vm_dispatch without an event; -1 none. */
int hv_vm_timeout_ms(const struct hv_vm *vm);
/* Handle poll results for the @n descriptors hv_vm_pollfds gave. */
void hv_vm_dispatch(struct hv_vm *vm, const struct pollfd *fds, int n);

/* Power actions, asynchronous: the result shows up as a state change. */
int hv_vm_pause(struct hv_vm *vm);
int hv_vm_resume(struct hv_vm *vm);
/* ACPI power button; QEMU exits when the guest powers off. */
int hv_vm_powerdown(struct hv_vm *vm);
/* Hard reset, synchronous (waits for QEMU's answer, at most @timeout_ms). */
int hv_vm_reset(struct hv_vm *vm, int timeout_ms, struct atr_error *err);
/* SIGKILL the QEMU process group; the exit is seen through the pidfd. */
int hv_vm_kill(struct hv_vm *vm);

/*
 * After EXITED: whether QEMU shut down cleanly (guest powered off, or a
 * quit/powerdown we asked for) and a one-line account of how it ended,
 * with the tail of QEMU's own log ("QEMU's last words") when it crashed.
 */
bool hv_vm_exit_clean(const struct hv_vm *vm);
const char *hv_vm_exit_message(const struct hv_vm *vm);

/* Remove the VM's runtime directory (sockets, pid file, logs).  The VM must be gone. */
int hv_vm_remove_runtime(int64_t id, const char *runtime_dir);

/* ------------------------------------------------------------------------ */
/* Metrics                                                                  */
/* ------------------------------------------------------------------------ */

/* CPU time and resident memory of one process, from /proc. */
struct hv_proc_stat {
    int64_t cpu_ticks; /* utime + stime, in clock ticks */
    int64_t rss_kb;
};

int hv_metrics_proc(pid_t pid, struct hv_proc_stat *ret);

/* The host's CPU counters and memory, from /proc/stat and /proc/meminfo. */
struct hv_host_stat {
    int64_t busy_ticks, total_ticks;
    int64_t mem_total_kb, mem_available_kb;
};

int hv_metrics_host(struct hv_host_stat *ret);

/* Percent of one CPU used between two readings @wall_ms apart (clamped to >= 0). */
double hv_metrics_cpu_pct(int64_t ticks_before, int64_t ticks_after, int64_t wall_ms);

struct hv_vm_io {
    int64_t rd_bytes, wr_bytes, rd_ops, wr_ops;
};

/* Sum the counters of every device in a query-blockstats reply.  -EINVAL when malformed. */
int hv_metrics_blockstats(const json_t *ret, struct hv_vm_io *io);

/* The balloon's current size in MiB from a query-balloon reply.  -EINVAL when malformed. */
int hv_metrics_balloon_mb(const json_t *ret, int64_t *ret_mb);

/* ------------------------------------------------------------------------ */
/* Snapshots (internal qcow2 snapshots of a VM's overlay)                   */
/* ------------------------------------------------------------------------ */

/*
 * Snapshots live inside the VM's own qcow2 overlay (internal snapshots), so
 * the golden image under it is never written.  While QEMU runs they are
 * QMP jobs (snapshot-save / snapshot-load / snapshot-delete, RAM state in
 * the overlay too) or blockdev-snapshot-internal-sync (disk only); while it
 * does not, qemu-img does the same work on the file.
 */

/* The node name of a VM's disk in QEMU (its qcow2 overlay). */
#define HV_DISK_NODE "disk0"

enum hv_snap_op { HV_SNAP_SAVE = 0, HV_SNAP_LOAD, HV_SNAP_DELETE };

/* qemu-img snapshot on a file no QEMU has open: -c create, -a apply, -d delete. */
int hv_snapshot_offline(const char *qemu_img, const char *image, enum hv_snap_op op,
                        const char *tag, struct atr_error *err);

/* Whether @image (in use or not) holds a snapshot named @tag: sets *ret_found. */
int hv_snapshot_exists(const char *qemu_img, const char *image, const char *tag, bool *ret_found,
                       struct atr_error *err);

/*
 * A new linked clone at @dst holding the disk of snapshot @tag of @image:
 * backed by @image's own backing file, only the clusters that differ are
 * copied (qemu-img convert -B).  @image may be in use by a running QEMU
 * (snapshot clusters never change).  -EEXIST when @dst exists.
 */
int hv_snapshot_clone(const char *qemu_img, const char *image, const char *tag, const char *dst,
                      struct atr_error *err);

/* An asynchronous QMP snapshot job (save, load or delete). */
struct hv_snap_job;

struct hv_snap_job_ops {
    /* QEMU's job status changed ("created", "running", "concluded", ...); @pct is a guess. */
    void (*progress)(struct hv_snap_job *j, const char *status, int pct, void *userdata);
    /* Exactly once: 0, or -errno with QEMU's words in @msg. */
    void (*done)(struct hv_snap_job *j, int error, const char *msg, void *userdata);
};

/*
 * Start job @job_id doing @op with snapshot @tag of node @node (RAM state
 * stored in that node too) on @q.  Feed the VM's JOB_STATUS_CHANGE events
 * to hv_snapshot_job_event.  Sets *ret_job (free with hv_snapshot_job_free).
 */
int hv_snapshot_job_start(struct hv_qmp *q, enum hv_snap_op op, const char *job_id, const char *tag,
                          const char *node, const struct hv_snap_job_ops *ops, void *userdata,
                          struct hv_snap_job **ret_job);

/* A JOB_STATUS_CHANGE event's data; ignored when it is another job's. */
void hv_snapshot_job_event(struct hv_snap_job *j, const json_t *data);

/* Stop caring (no more callbacks); freed once QEMU's pending answers are in.  Accepts NULL. */
struct hv_snap_job *hv_snapshot_job_free(struct hv_snap_job *j);

/* ------------------------------------------------------------------------ */
/* Live resources: cgroups, disk throttling, the priority boost             */
/* ------------------------------------------------------------------------ */

/* Limits of one VM; 0 = none (cpu_weight: 100). */
struct hv_resources {
    int cpu_weight;  /* 1..10000, cgroup v2 cpu.weight scale */
    int cpu_max_pct; /* percent of one host CPU */
    int64_t memory_max_mb;
    int64_t disk_iops;
    int64_t disk_bps;
    int64_t net_bps;
};

/* Weight a boosted VM gets, and the most any other VM of its host keeps. */
#define HV_BOOST_WEIGHT 10000
#define HV_BOOST_OTHERS_WEIGHT 10

/*
 * What to apply: @want as is, or with the boost: the boosted VM gets
 * HV_BOOST_WEIGHT and none of its caps; while another VM of the host is
 * boosted (@neighbour_boosted) this one's weight drops to at most
 * HV_BOOST_OTHERS_WEIGHT.  Its caps stay.
 */
void hv_resources_effective(const struct hv_resources *want, bool boosted, bool neighbour_boosted,
                            struct hv_resources *ret);

/* Arguments of QMP block_set_io_throttle for the VM's disk (new reference). */
json_t *hv_resources_throttle_args(const struct hv_resources *r);

/* The qdev path block_set_io_throttle and query-block name the VM's disk by. */
#define HV_DISK_QDEV "/machine/peripheral/vda/virtio-backend"

/*
 * Per-VM cgroups under one slice.  cgroup v2 (cpu.weight, cpu.max,
 * memory.max) where the unified hierarchy has the cpu and memory
 * controllers; else the v1 cpu and memory hierarchies (cpu.shares,
 * cpu.cfs_quota_us, memory.limit_in_bytes, same meaning); else none, and
 * hv_cgroup_init says why.
 */
enum hv_cgroup_mode { HV_CGROUP_NONE = 0, HV_CGROUP_V2, HV_CGROUP_V1 };

struct hv_cgroups {
    enum hv_cgroup_mode mode;
    char v2[512];                  /* v2: the slice directory */
    char v1_cpu[512], v1_mem[512]; /* v1: the slice directory in each hierarchy */
    char note[1200];               /* which, or why none: for the log */
};

/*
 * Find the hierarchy and make the slice @slice (e.g. "atrium.slice") under
 * @parent: "" or "/" = the hierarchy's root, "self" = the cgroup this
 * process is in (for tests and nested setups), else a path in the
 * hierarchy.  Enables the cpu and memory controllers on the way (v2).
 * Always fills *ret; returns 0, or -errno when cgroups cannot be used
 * (ret->mode is HV_CGROUP_NONE and ret->note says why).
 */
int hv_cgroup_init(const char *parent, const char *slice, struct hv_cgroups *ret);

/* The directory of VM @id's cgroup for @controller ("cpu" or "memory"). */
int hv_cgroup_vm_dir(const struct hv_cgroups *cg, int64_t id, const char *controller, char *buf,
                     size_t size);

/* Make VM @id's cgroup and move process @pid (all its threads) into it. */
int hv_cgroup_vm_attach(const struct hv_cgroups *cg, int64_t id, pid_t pid);

/* Write @r's CPU and memory limits to VM @id's cgroup. */
int hv_cgroup_vm_apply(const struct hv_cgroups *cg, int64_t id, const struct hv_resources *r,
                       struct atr_error *err);

/* Remove VM @id's cgroup (its processes must be gone).  0 also when it was not there. */
int hv_cgroup_vm_remove(const struct hv_cgroups *cg, int64_t id);

/*
 * Weigh the slice like @nvms ordinary processes (cpu.weight 100 or v1
 * cpu.shares 1024 each): as one cgroup the VMs would otherwise share the
 * CPU of a single process against everything else on the host.
 */
int hv_cgroup_slice_share(const struct hv_cgroups *cg, int nvms);

/* Remove the slice if no VM cgroup is left in it (VMs outlive hostd: then it stays). */
void hv_cgroup_fini(const struct hv_cgroups *cg);

/*
 * Remove what dead hostds left next to this slice: every empty VM cgroup
 * and empty slice named atrium-*.slice.  A cgroup with a process in it
 * cannot be removed, so running VMs (anyone's) are never touched.
 */
void hv_cgroup_sweep(const struct hv_cgroups *cg);

/* ------------------------------------------------------------------------ */
/* Live migration (source side)                                             */
/* ------------------------------------------------------------------------ */

/* What query-migrate says; -1 where QEMU did not say. */
struct hv_mig_stats {
    char status[32]; /* setup, active, completed, failed, cancelled, ... ("none" before any) */
    int64_t total_ms, downtime_ms, expected_downtime_ms, setup_ms;
    int64_t ram_total, ram_transferred, ram_remaining, passes;
    int cpu_throttle_pct; /* auto-converge's current throttle */
    /* How fast the guest dirtied RAM at the last pass (dirty-pages-rate x
     * page-size, bytes/s); in done()'s stats the last rate seen while
     * copying, since QEMU stops saying it at the end. */
    int64_t dirty_bytes_per_s;
    int cpu_throttle_max_pct; /* in done()'s stats: the highest throttle seen during the job */
    char error[512];          /* QEMU's error-desc, or "" */
};

/* Parse a query-migrate answer into *ret.  -EINVAL when it is not an object. */
int hv_migrate_parse_stats(const json_t *ret, struct hv_mig_stats *out);

/* 0..99 while RAM is copied (from ram total and remaining), 100 when completed. */
int hv_migrate_progress_pct(const struct hv_mig_stats *s);

struct hv_mig_job;
struct hv_mig_job_ops {
    /* After each precopy pass; @s borrowed. */
    void (*progress)(struct hv_mig_job *j, const struct hv_mig_stats *s, void *userdata);
    /* Once: @error 0 (completed: the source QEMU is paused for good and the
     * destination runs the guest), -ECANCELED, -EIO (QEMU's words in
     * s->error) or a QMP error.  The job may be freed in here. */
    void (*done)(struct hv_mig_job *j, int error, const struct hv_mig_stats *s, void *userdata);
};

/*
 * Migrate the QEMU behind @q to @uri ("tcp:HOST:PORT", a QEMU started with
 * -incoming there) with auto-converge, at most @max_bandwidth_bps bytes/s.
 * Feed the VM's QMP events to hv_migrate_event.  Sets *ret_job.
 */
int hv_migrate_start(struct hv_qmp *q, const char *uri, int64_t max_bandwidth_bps,
                     const struct hv_mig_job_ops *ops, void *userdata, struct hv_mig_job **ret_job);
void hv_migrate_event(struct hv_mig_job *j, enum hv_qmp_event ev, const json_t *data);
/* migrate_cancel: the guest keeps running on the source; done() follows with -ECANCELED. */
int hv_migrate_cancel(struct hv_mig_job *j);
/* Let go of the job (no more callbacks).  Accepts NULL; returns NULL. */
struct hv_mig_job *hv_migrate_job_free(struct hv_mig_job *j);

/* ------------------------------------------------------------------------ */
/* Instant clones (instant.c)                                               */
/* ------------------------------------------------------------------------ */

/*
 * A template is the golden image booted once with def.ram_path set and
 * def.ram_shared true, def.identity_port true; once settled its device
 * state is saved (hv_instant_save_start) and its QEMU ends.  A clone is the
 * same definition with def.ram_shared false and def.incoming_defer true, a
 * disk overlay backed by the template's frozen disk, loaded with
 * hv_instant_load, then given its identity (hv_instant_identity_send).
 */

/* The files of one template in its directory. */
struct hv_instant_files {
    char ram[512];   /* guest RAM (memory-backend-file) */
    char disk[512];  /* the template's qcow2 overlay: frozen once saved */
    char state[512]; /* saved device state (migration stream) */
    char meta[512];  /* "ready": written last, says the other three are complete */
};

/* Fill @ret for template directory @dir.  -ENAMETOOLONG. */
int hv_instant_files_init(const char *dir, struct hv_instant_files *ret);

/* Make (afresh) the FIFOs paths->identity ".in"/".out" of the identity port's pipe chardev. */
int hv_instant_identity_fifos(const struct hv_vm_paths *p);

/*
 * Start saving the template behind @q into @state_fd (borrowed; a duplicate
 * goes to QEMU): getfd, x-ignore-shared, then a migration job to "fd:".
 * Feed the VM's QMP events to hv_migrate_event; ops->done says how it
 * ended, after which the template QEMU is paused for good.  Sets *ret_job.
 */
int hv_instant_save_start(struct hv_qmp *q, int state_fd, const struct hv_mig_job_ops *ops,
                          void *userdata, struct hv_mig_job **ret_job);

/* -EPROTO when a completed save @s of a @memory_mb guest carried the RAM (no x-ignore-shared). */
int hv_instant_save_check(const struct hv_mig_stats *s, int64_t memory_mb);

/* Called once: 0, or -errno with QEMU's words in @msg. */
typedef void (*hv_instant_load_fn)(int error, const char *msg, void *userdata);

/*
 * Load the template state @state_fd (borrowed) into the clone behind @q (a
 * QEMU started with def.incoming_defer): getfd, x-ignore-shared,
 * migrate-incoming.  @done (may be NULL) is called once QEMU accepted or
 * refused the three; the guest runs when RESUME arrives.
 */
int hv_instant_load(struct hv_qmp *q, int state_fd, hv_instant_load_fn done, void *userdata);

/*
 * Write the clone's identity line "mac=@mac hostname=@hostname seed=<64
 * hex digits from getrandom>" into its identity port.  -EINVAL for a MAC
 * that is not aa:bb:cc:dd:ee:ff or a hostname that is not one DNS label;
 * -ENXIO when no QEMU holds the port.
 */
int hv_instant_identity_send(const struct hv_vm_paths *p, const char *mac, const char *hostname,
                             struct atr_error *err);

/* ------------------------------------------------------------------------ */
/* Fencing (fence.c)                                                        */
/* ------------------------------------------------------------------------ */

/*
 * The host's lease: "<runtime_dir>/fence.lease" holds the CLOCK_BOOTTIME
 * instant (ms) after which no QEMU of this host may run.  hostd renews it
 * only after a database heartbeat that succeeded, to the time the heartbeat
 * was sent plus the fence deadline; the fence guard (a process of its own,
 * that outlives hostd like the VMs do) kills every VM of the host once it
 * has passed.
 */

/* Now on CLOCK_BOOTTIME (ms): keeps counting while the machine sleeps. */
int64_t hv_fence_now_ms(void);

/* Write the lease (@until_ms on hv_fence_now_ms's clock) atomically. */
int hv_fence_lease_write(const char *runtime_dir, int64_t until_ms);

/* Read it into *ret_until_ms.  -ENOENT: no lease was ever taken; -EINVAL: unreadable. */
int hv_fence_lease_read(const char *runtime_dir, int64_t *ret_until_ms);

/*
 * SIGKILL every QEMU under <runtime_dir>/vms whose id @keep does not accept
 * (@keep NULL: all).  A pid counts only if that process was started with the
 * VM's pid file (a recycled pid is never hit), and the signal goes through a
 * pidfd.  Sets *ret_killed (may be NULL) to how many were signalled.
 */
int hv_fence_kill_vms(const char *runtime_dir, bool (*keep)(int64_t id, void *userdata),
                      void *userdata, int *ret_killed);

/*
 * Start the fence guard for @runtime_dir: this executable again
 * (/proc/self/exe) with "--fence-guard @runtime_dir", in a session of its
 * own and no longer our child, so that it survives a kill -9 of the caller.
 * A guard already watching the directory keeps it (the new one exits: the
 * lock <runtime_dir>/fence.lock is held by one guard at a time).
 */
int hv_fence_guard_spawn(const char *runtime_dir);

/* True when a guard holds <runtime_dir>/fence.lock. */
bool hv_fence_guard_running(const char *runtime_dir);

/*
 * The guard itself (the process hv_fence_guard_spawn starts): takes the
 * lock, writes its pid to <runtime_dir>/fence.pid, and kills every VM of
 * the host whenever the lease has passed.  Returns when the runtime dir is
 * gone (0), when the lease has passed and no VM is left (0), at once when
 * another guard holds the lock (1), or on an error (-errno).
 * @on_kill (may be NULL) is told each time VMs were killed.
 */
int hv_fence_guard_run(const char *runtime_dir,
                       void (*on_kill)(int killed, int64_t late_ms, void *userdata),
                       void *userdata);

/* ------------------------------------------------------------------------ */
/* Replication: incremental copies of a disk to another host                */
/* ------------------------------------------------------------------------ */

/*
 * The source QEMU keeps a persistent dirty bitmap HV_REP_BITMAP on its
 * disk (HV_DISK_NODE) and runs a backup job HV_REP_JOB into node
 * HV_REP_NODE, an NBD client of the target's export HV_REP_EXPORT.  The
 * target serves a new qcow2 layer over the previous copy with qemu-nbd.
 */
#define HV_REP_BITMAP "atrium-rep"
#define HV_REP_JOB "atrium-rep"
#define HV_REP_NODE "atrium-rep-nbd"
#define HV_REP_EXPORT "replica"

enum hv_rep_bitmap {
    HV_REP_BITMAP_NONE = 0, /* no bitmap: the next copy is a full one */
    HV_REP_BITMAP_OK,       /* recording and consistent */
    HV_REP_BITMAP_BAD,      /* inconsistent (QEMU was killed) or not recording */
};

/* What a query-named-block-nodes answer says about the replication. */
struct hv_rep_disk {
    enum hv_rep_bitmap bitmap;
    int64_t virtual_size; /* of HV_DISK_NODE; -1 unknown */
    bool nbd_node;        /* HV_REP_NODE still attached (a sync under way or left over) */
};

/* Parse @nodes (the "return" of query-named-block-nodes).  -EINVAL when
 * malformed; -ENOENT when HV_DISK_NODE is not in it. */
int hv_replica_disk_parse(const json_t *nodes, struct hv_rep_disk *ret);

/*
 * Make the qcow2 layer @layer of @size bytes over @backing (a qcow2 file;
 * NULL or "" = none).  -EEXIST when @layer exists.
 */
int hv_replica_layer_create(const char *qemu_img, const char *backing, const char *layer,
                            int64_t size, struct atr_error *err);

/*
 * Merge @layer into its backing file (`qemu-img commit -d`): afterwards
 * the backing file reads exactly as @layer did, and @layer may be removed.
 * If it is interrupted, @layer over its backing file still reads the same.
 */
int hv_replica_layer_merge(const char *qemu_img, const char *layer, struct atr_error *err);

/* A qemu-nbd serving one layer, a child of the caller. */
struct hv_nbd_server {
    pid_t pid;
    int pidfd; /* readable once it exited; -1 after the reap */
    int port;
    bool exited;
    int status; /* waitpid status once exited */
};

/*
 * Serve @layer (qcow2, writable, export HV_REP_EXPORT) on @addr at a free
 * TCP port: the socket is bound and listening before this returns (passed
 * to qemu-nbd by socket activation), so a client may connect at once.
 * qemu-nbd exits after its one client disconnects, and when the caller
 * dies (PR_SET_PDEATHSIG).  Its output goes to @log.  @qemu_nbd NULL =
 * "qemu-nbd".  Fills *ret.
 */
int hv_replica_serve(const char *qemu_nbd, const char *layer, const char *addr, const char *log,
                     struct hv_nbd_server *ret, struct atr_error *err);

/*
 * Whether the server exited: 1 with *ret_status (a waitpid status) when it
 * did (its pidfd is then closed), 0 when it still runs.  Again after that:
 * 1 and the same status.
 */
int hv_replica_serve_reap(struct hv_nbd_server *s, int *ret_status);

/* SIGKILL the server and reap it. */
void hv_replica_serve_kill(struct hv_nbd_server *s);
