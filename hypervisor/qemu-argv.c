/*
 * VM definition -> QEMU command line.
 *
 * The command line is built as an argv array and exec'd directly, never
 * through a shell, so no value is ever re-parsed by one.  Values that land
 * inside QEMU's own "key=value,key=value" option syntax are escaped by
 * doubling commas, which is QEMU's quoting rule.
 *
 * Every listener QEMU opens is a unix socket under the VM's runtime
 * directory: consoles are reached only through displayd (DESIGN.md), so a
 * TCP port here would be a hole around the ticket checks.
 */
#include "hv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct argv_builder {
    char **v;
    size_t n, cap;
    int error; /* first failure, sticky: callers check once at the end */
};

static void add(struct argv_builder *b, const char *s)
{
    if (b->error)
        return;
    if (b->n + 2 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        char **v = realloc(b->v, cap * sizeof(*v));
        if (!v) {
            b->error = -ENOMEM;
            return;
        }
        b->v = v;
        b->cap = cap;
    }
    char *dup = strdup(s);
    if (!dup) {
        b->error = -ENOMEM;
        return;
    }
    b->v[b->n++] = dup;
    b->v[b->n] = NULL;
}

__attribute__((format(printf, 2, 3))) static void addf(struct argv_builder *b, const char *fmt, ...)
{
    if (b->error)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (r < 0) {
        b->error = -ENOMEM;
        return;
    }
    add(b, s);
    free(s);
}

static void add2(struct argv_builder *b, const char *opt, const char *val)
{
    add(b, opt);
    add(b, val);
}

/* QEMU's option parser splits on ','; a literal comma is written ",,". */
static char *opt_escape(const char *s)
{
    size_t n = 0;
    for (const char *p = s; *p; p++)
        n += *p == ',' ? 2 : 1;
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    char *o = out;
    for (const char *p = s; *p; p++) {
        *o++ = *p;
        if (*p == ',')
            *o++ = ',';
    }
    *o = '\0';
    return out;
}

static bool name_ok(const char *name)
{
    if (!name || !name[0] || strlen(name) > 63)
        return false;
    for (const char *p = name; *p; p++) {
        bool alnum =
            (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9');
        if (!alnum && (p == name || (*p != '.' && *p != '_' && *p != '-')))
            return false;
    }
    return true;
}

static bool mac_ok(const char *mac)
{
    unsigned v[6];
    char tail;
    return strlen(mac) == 17 && sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3],
                                       &v[4], &v[5], &tail) == 6;
}

static bool ifname_ok(const char *br)
{
    if (!br || !br[0] || strlen(br) > 15)
        return false;
    return strpbrk(br, ",=/ \t") == NULL;
}

static bool empty(const char *s)
{
    return !s || !s[0];
}

const char *hv_accel_name(enum hv_accel a)
{
    return a == HV_ACCEL_KVM ? "kvm" : "tcg";
}

int hv_vm_paths_init(const char *runtime_dir, int64_t id, struct hv_vm_paths *ret)
{
    struct hv_vm_paths p;
    int n = snprintf(p.dir, sizeof(p.dir), "%s/vms/%" PRId64, runtime_dir, id);
    if (n < 0 || (size_t)n >= sizeof(p.dir))
        return -ENAMETOOLONG;
    struct {
        char *dst;
        size_t size;
        const char *leaf;
    } files[] = {
        {p.qmp, sizeof(p.qmp), "qmp.sock"},
        {p.qmp_display, sizeof(p.qmp_display), "qmp-display.sock"},
        {p.vnc, sizeof(p.vnc), "vnc.sock"},
        {p.spice, sizeof(p.spice), "spice.sock"},
        {p.pidfile, sizeof(p.pidfile), "qemu.pid"},
        {p.serial_log, sizeof(p.serial_log), "serial.log"},
        {p.qemu_log, sizeof(p.qemu_log), "qemu.log"},
        {p.identity, sizeof(p.identity), "identity"},
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        n = snprintf(files[i].dst, files[i].size, "%s/%s", p.dir, files[i].leaf);
        if (n < 0 || (size_t)n >= files[i].size)
            return -ENAMETOOLONG;
    }
    *ret = p;
    return 0;
}

char **hv_argv_free(char **argv)
{
    if (!argv)
        return NULL;
    for (char **a = argv; *a; a++)
        free(*a);
    free(argv);
    return NULL;
}

static int def_check(const struct hv_vm_def *def, const char *qemu)
{
    if (empty(qemu) || !name_ok(def->name) || def->id <= 0)
        return -EINVAL;
    if (def->vcpus < 1 || def->vcpus > 256 || def->memory_mb < 64)
        return -EINVAL;
    if (def->boot == HV_BOOT_KERNEL && empty(def->kernel))
        return -EINVAL;
    if (def->boot == HV_BOOT_DISK && empty(def->disk_path))
        return -EINVAL;
    if (def->nic == HV_NIC_BRIDGE && (!ifname_ok(def->bridge) || !ifname_ok(def->tap)))
        return -EINVAL;
    if (!empty(def->mac) && !mac_ok(def->mac))
        return -EINVAL;
    if (def->incoming_defer && (!empty(def->incoming) || !empty(def->loadvm)))
        return -EINVAL;
    if (!empty(def->ram_path) && strchr(def->ram_path, ','))
        return -EINVAL;
    if (!empty(def->incoming) && (strncmp(def->incoming, "tcp:", 4) != 0 ||
                                  strpbrk(def->incoming, ", \t") || !empty(def->loadvm)))
        return -EINVAL;
    return 0;
}

int hv_qemu_argv_new(const struct hv_vm_def *def, const struct hv_vm_paths *paths, const char *qemu,
                     int qmp_fd, char ***ret_argv)
{
    struct argv_builder b = {0};
    char *disk = NULL, *serial = NULL;
    char *vnc = NULL, *spice = NULL, *qmp = NULL, *qmpdisp = NULL, *ident = NULL;
    int r = def_check(def, qemu);
    if (r < 0)
        goto out;
    if (!(serial = opt_escape(paths->serial_log)) || !(vnc = opt_escape(paths->vnc)) ||
        !(spice = opt_escape(paths->spice)) || !(qmp = opt_escape(paths->qmp)) ||
        !(qmpdisp = opt_escape(paths->qmp_display)) || !(ident = opt_escape(paths->identity))) {
        r = -ENOMEM;
        goto out;
    }

    add(&b, qemu);
    /* debug-threads names vCPU threads in /proc, which the metrics code reads. */
    add(&b, "-name");
    addf(&b, "guest=%s,debug-threads=on", def->name);
    /* Nothing from /etc/qemu and no default devices: the VM is exactly
     * what this file says, on every host. */
    add(&b, "-no-user-config");
    add(&b, "-nodefaults");
    if (!empty(def->ram_path)) {
        /* Instant clones: the template's RAM is a file it writes through
         * (share=on); a clone maps the same file privately (share=off), so
         * pages it never writes stay shared with every other clone in the
         * page cache.  x-ignore-shared then leaves this block out of the
         * saved device state. */
        add2(&b, "-machine", "q35,memory-backend=ram");
        add(&b, "-object");
        addf(&b, "memory-backend-file,id=ram,size=%dM,mem-path=%s,share=%s", def->memory_mb,
             def->ram_path, def->ram_shared ? "on" : "off");
    } else {
        add2(&b, "-machine", "q35");
    }
    if (def->accel == HV_ACCEL_KVM) {
        add2(&b, "-accel", "kvm");
        add2(&b, "-cpu", "host");
    } else {
        /* One host thread per vCPU, as KVM would give. */
        add2(&b, "-accel", "tcg,thread=multi");
        add2(&b, "-cpu", "max");
    }
    add(&b, "-m");
    addf(&b, "%d", def->memory_mb);
    add(&b, "-smp");
    addf(&b, "%d", def->vcpus);
    if (def->start_paused)
        add(&b, "-S");
    if (!empty(def->loadvm))
        add2(&b, "-loadvm", def->loadvm);
    /* The one TCP listener a VM may have: the migration stream, on the
     * host's migration address, for the length of one migration. */
    if (!empty(def->incoming))
        add2(&b, "-incoming", def->incoming);
    if (def->incoming_defer)
        add2(&b, "-incoming", "defer");

    if (!empty(def->disk_path)) {
        if (!(disk = opt_escape(def->disk_path))) {
            r = -ENOMEM;
            goto out;
        }
        add(&b, "-blockdev");
        addf(&b, "driver=file,filename=%s,node-name=disk0-file", disk);
        add(&b, "-blockdev");
        add(&b, "driver=qcow2,file=disk0-file,node-name=disk0");
        /* werror=stop: a write that fails pauses the VM (hostd says why)
         * instead of handing the guest an I/O error, after which file
         * systems go read-only.  A replication job's copy-before-write
         * fails guest writes when its target is gone; the job is then
         * cancelled and the write retried on resume. */
        add2(&b, "-device", "virtio-blk-pci,drive=disk0,id=vda,bootindex=1,werror=stop");
    }
    if (def->boot == HV_BOOT_KERNEL) {
        /* -kernel and -initrd are plain file names, not option lists. */
        add2(&b, "-kernel", def->kernel);
        if (!empty(def->initrd))
            add2(&b, "-initrd", def->initrd);
        if (!empty(def->cmdline))
            add2(&b, "-append", def->cmdline);
    }

    if (def->nic != HV_NIC_NONE) {
        add(&b, "-netdev");
        if (def->nic == HV_NIC_BRIDGE)
            /* hostd made the tap and put it on the bridge (hv_net_tap_create):
             * QEMU only opens it, runs no script and no bridge helper, and
             * the tap's tc cap is hostd's to change. */
            addf(&b, "tap,id=net0,ifname=%s,script=no,downscript=no", def->tap);
        else
            /* No hostfwd: user networking then opens no port on the host. */
            add(&b, "user,id=net0");
        add(&b, "-device");
        if (!empty(def->mac))
            addf(&b, "virtio-net-pci,netdev=net0,id=nic0,mac=%s", def->mac);
        else
            add(&b, "virtio-net-pci,netdev=net0,id=nic0");
    }

    /* Display: qxl for SPICE, also served over VNC.  No local window. */
    add2(&b, "-vga", "qxl");
    add2(&b, "-display", "none");
    add(&b, "-vnc");
    addf(&b, "unix:%s", vnc);
    /* Passwords are set later by displayd through QMP, per connection. */
    add(&b, "-spice");
    /* Ticketing stays on with no password set: nobody gets in until
     * displayd sets a one-time password for a checked ticket. */
    addf(&b, "unix=on,addr=%s", spice);

    /* SPICE agent channel: clipboard and resolution follow the client. */
    add2(&b, "-device", "virtio-serial-pci,id=vser0");
    add2(&b, "-chardev", "spicevmc,id=vdagent,name=vdagent");
    add2(&b, "-device", "virtserialport,bus=vser0.0,chardev=vdagent,name=com.redhat.spice.0");
    if (def->identity_port) {
        /* An instant clone's identity (MAC, hostname, entropy) arrives here
         * after it resumed.  A pipe, not a socket: a pipe chardev is always
         * "connected", so the guest's read blocks until hostd writes instead
         * of seeing end-of-file while nobody is attached. */
        add(&b, "-chardev");
        addf(&b, "pipe,id=identity,path=%s", ident);
        add2(&b, "-device", "virtserialport,bus=vser0.0,chardev=identity,id=identity0,"
                            "name=org.atrium.identity");
    }

    /* USB: an absolute pointer for VNC, two SPICE USB redirection channels. */
    add2(&b, "-device", "qemu-xhci,id=usb");
    add2(&b, "-device", "usb-tablet,bus=usb.0");
    for (int i = 0; i < 2; i++) {
        add(&b, "-chardev");
        addf(&b, "spicevmc,id=usbredir%d,name=usbredir", i);
        add(&b, "-device");
        addf(&b, "usb-redir,chardev=usbredir%d,id=usbredirdev%d,bus=usb.0", i, i);
    }

    /* Audio goes to the SPICE client. */
    add2(&b, "-audiodev", "spice,id=audio0");
    add2(&b, "-device", "ich9-intel-hda,id=sound0");
    add2(&b, "-device", "hda-duplex,audiodev=audio0,bus=sound0.0");

    /* Memory can be given back while the VM runs. */
    add2(&b, "-device", "virtio-balloon-pci,id=balloon0");

    add(&b, "-chardev");
    if (qmp_fd >= 0)
        addf(&b, "socket,id=qmp,fd=%d,server=on,wait=off", qmp_fd);
    else
        addf(&b, "socket,id=qmp,path=%s,server=on,wait=off", qmp);
    add2(&b, "-mon", "chardev=qmp,mode=control");
    add(&b, "-chardev");
    addf(&b, "socket,id=qmpdisp,path=%s,server=on,wait=off", qmpdisp);
    add2(&b, "-mon", "chardev=qmpdisp,mode=control");

    add(&b, "-chardev");
    addf(&b, "file,id=serial0,path=%s", serial);
    add2(&b, "-serial", "chardev:serial0");

    add2(&b, "-pidfile", paths->pidfile);
    /* The seccomp filter: no exec of helpers (a bridged NIC's tap is made
     * by hostd, so QEMU needs no bridge helper), no privilege gain, no
     * scheduler games. */
    add(&b, "-sandbox");
    add(&b, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
    r = b.error;

out:
    free(disk);
    free(serial);
    free(vnc);
    free(spice);
    free(qmp);
    free(qmpdisp);
    free(ident);
    if (r < 0) {
        hv_argv_free(b.v);
        return r;
    }
    *ret_argv = b.v;
    return 0;
}
