/*
 * Per-VM cgroups: CPU share (weight), CPU cap and memory cap of each QEMU.
 *
 * cgroup v2 is the target (cpu.weight, cpu.max, memory.max).  Hosts that
 * still mount the cpu and memory controllers on v1 hierarchies (a "hybrid"
 * layout: the unified hierarchy then has neither controller) get the same
 * three limits through the v1 files with the same meaning: cpu.shares
 * (1024 per 100 of weight), cpu.cfs_quota_us over a 100 ms period, and
 * memory.limit_in_bytes.  Where neither can be written, VMs run without
 * limits and hostd says so once.
 */
#include "hv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define V2_MOUNT "/sys/fs/cgroup"
#define V2_HYBRID_MOUNT "/sys/fs/cgroup/unified"
#define V1_CPU "/sys/fs/cgroup/cpu"
#define V1_MEM "/sys/fs/cgroup/memory"
#define CFS_PERIOD_US 100000

static int write_file(const char *dir, const char *leaf, const char *value)
{
    char path[1024];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, leaf) >= sizeof(path))
        return -ENAMETOOLONG;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, value, strlen(value));
    int r = n == (ssize_t)strlen(value) ? 0 : n < 0 ? -errno : -EIO;
    close(fd);
    return r;
}

static int read_file(const char *dir, const char *leaf, char *buf, size_t size)
{
    char path[1024];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, leaf) >= sizeof(path))
        return -ENAMETOOLONG;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, size - 1);
    int e = errno;
    close(fd);
    if (n < 0)
        return -e;
    buf[n] = '\0';
    return 0;
}

static bool has_word(const char *list, const char *word)
{
    size_t len = strlen(word);
    for (const char *p = list; (p = strstr(p, word)); p += len)
        if ((p == list || p[-1] == ' ' || p[-1] == ',' || p[-1] == ':') &&
            (p[len] == '\0' || p[len] == ' ' || p[len] == '\n' || p[len] == ','))
            return true;
    return false;
}

/* This process's path in the hierarchy holding @controller ("" for v2). */
static int self_path(const char *controller, char *buf, size_t size)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return -errno;
    char line[1024];
    int r = -ENOENT;
    while (r < 0 && fgets(line, sizeof(line), f)) {
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        bool match = controller[0] ? has_word(c1 + 1, controller) : c1[1] == '\0';
        if (!match)
            continue;
        c2[1 + strcspn(c2 + 1, "\n")] = '\0';
        r = (size_t)snprintf(buf, size, "%s", strcmp(c2 + 1, "/") == 0 ? "" : c2 + 1) < size
                ? 0
                : -ENAMETOOLONG;
    }
    fclose(f);
    return r;
}

/* <mount><parent>/<slice>, made if missing. */
static int make_slice(const char *mount, const char *controller, const char *parent,
                      const char *slice, char *buf, size_t size)
{
    char self[512] = "";
    if (strcmp(parent, "self") == 0) {
        int r = self_path(controller, self, sizeof(self));
        if (r < 0)
            return r;
        parent = self;
    } else if (strcmp(parent, "/") == 0) {
        parent = "";
    }
    if ((size_t)snprintf(buf, size, "%s%s%s/%s", mount, parent[0] && parent[0] != '/' ? "/" : "",
                         parent, slice) >= size)
        return -ENAMETOOLONG;
    if (mkdir(buf, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int init_v2(const char *mount, const char *parent, const char *slice, struct hv_cgroups *cg)
{
    char ctl[256];
    if (read_file(mount, "cgroup.controllers", ctl, sizeof(ctl)) < 0)
        return -ENOENT;
    if (!has_word(ctl, "cpu") || !has_word(ctl, "memory"))
        return -EOPNOTSUPP;
    char dir[512];
    int r = make_slice(mount, "", parent, slice, dir, sizeof(dir));
    if (r < 0)
        return r;
    /* Controllers must be enabled on every level above the VMs' cgroups. */
    char up[512];
    snprintf(up, sizeof(up), "%s", dir);
    *strrchr(up, '/') = '\0';
    char have[256] = "";
    if (read_file(up, "cgroup.subtree_control", have, sizeof(have)) < 0 || !has_word(have, "cpu") ||
        !has_word(have, "memory")) {
        r = write_file(up, "cgroup.subtree_control", "+cpu +memory");
        if (r == -EBUSY) {
            /* v2 lets a cgroup hand controllers to its children only while
             * it holds no process itself.  hostd in its own (delegated)
             * service cgroup moves into a leaf next to the slice. */
            char leaf[600], pid[24];
            snprintf(leaf, sizeof(leaf), "%s/hostd", up);
            snprintf(pid, sizeof(pid), "%d", (int)getpid());
            if ((mkdir(leaf, 0755) == 0 || errno == EEXIST) &&
                write_file(leaf, "cgroup.procs", pid) == 0)
                r = write_file(up, "cgroup.subtree_control", "+cpu +memory");
        }
        if (r < 0)
            return r;
    }
    r = write_file(dir, "cgroup.subtree_control", "+cpu +memory");
    if (r < 0)
        return r;
    cg->mode = HV_CGROUP_V2;
    snprintf(cg->v2, sizeof(cg->v2), "%s", dir);
    snprintf(cg->note, sizeof(cg->note), "cgroup v2 at %s", dir);
    return 0;
}

static int init_v1(const char *parent, const char *slice, struct hv_cgroups *cg)
{
    int r = make_slice(V1_CPU, "cpu", parent, slice, cg->v1_cpu, sizeof(cg->v1_cpu));
    if (r == 0)
        r = make_slice(V1_MEM, "memory", parent, slice, cg->v1_mem, sizeof(cg->v1_mem));
    if (r < 0)
        return r;
    cg->mode = HV_CGROUP_V1;
    snprintf(cg->note, sizeof(cg->note),
             "cgroup v1 (cpu and memory are not on the unified hierarchy): %s, %s", cg->v1_cpu,
             cg->v1_mem);
    return 0;
}

int hv_cgroup_init(const char *parent, const char *slice, struct hv_cgroups *ret)
{
    struct hv_cgroups cg = {.mode = HV_CGROUP_NONE};
    if (!parent)
        parent = "";
    if (!slice || !slice[0] || strchr(slice, '/') || strcmp(slice, "..") == 0) {
        *ret = (struct hv_cgroups){.mode = HV_CGROUP_NONE};
        snprintf(ret->note, sizeof(ret->note), "invalid cgroup slice name");
        return -EINVAL;
    }
    struct stat st;
    const char *v2 = stat(V2_MOUNT "/cgroup.controllers", &st) == 0 ? V2_MOUNT : V2_HYBRID_MOUNT;
    int r2 = init_v2(v2, parent, slice, &cg);
    if (r2 == 0) {
        *ret = cg;
        return 0;
    }
    int r1 = strcmp(v2, V2_MOUNT) == 0 ? -ENOENT : init_v1(parent, slice, &cg);
    if (r1 == 0) {
        *ret = cg;
        return 0;
    }
    *ret = (struct hv_cgroups){.mode = HV_CGROUP_NONE};
    snprintf(ret->note, sizeof(ret->note), "no usable cgroups: v2 at %s: %s; v1 cpu/memory: %s", v2,
             strerror(-r2), strerror(-r1));
    return r1;
}

int hv_cgroup_vm_dir(const struct hv_cgroups *cg, int64_t id, const char *controller, char *buf,
                     size_t size)
{
    const char *base = cg->mode == HV_CGROUP_V2 ? cg->v2
                       : cg->mode == HV_CGROUP_V1 && controller
                           ? (strcmp(controller, "memory") == 0 ? cg->v1_mem : cg->v1_cpu)
                           : NULL;
    if (!base)
        return -EOPNOTSUPP;
    if ((size_t)snprintf(buf, size, "%s/vm-%lld", base, (long long)id) >= size)
        return -ENAMETOOLONG;
    return 0;
}

int hv_cgroup_vm_attach(const struct hv_cgroups *cg, int64_t id, pid_t pid)
{
    static const char *const controllers[] = {"cpu", "memory"};
    int n = cg->mode == HV_CGROUP_V2 ? 1 : cg->mode == HV_CGROUP_V1 ? 2 : 0;
    if (!n)
        return -EOPNOTSUPP;
    char spid[24];
    snprintf(spid, sizeof(spid), "%d", (int)pid);
    /* The slice exists only while it holds VMs (hv_cgroup_fini): make it again. */
    const char *slices[] = {cg->mode == HV_CGROUP_V2 ? cg->v2 : cg->v1_cpu, cg->v1_mem};
    for (int i = 0; i < n; i++) {
        if (mkdir(slices[i], 0755) == 0) {
            int r = cg->mode == HV_CGROUP_V2
                        ? write_file(slices[i], "cgroup.subtree_control", "+cpu +memory")
                        : 0;
            if (r < 0)
                return r;
        } else if (errno != EEXIST) {
            return -errno;
        }
    }
    for (int i = 0; i < n; i++) {
        char dir[600];
        int r = hv_cgroup_vm_dir(cg, id, controllers[i], dir, sizeof(dir));
        if (r < 0)
            return r;
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            return -errno;
        r = write_file(dir, "cgroup.procs", spid);
        if (r < 0)
            return r;
    }
    return 0;
}

int hv_cgroup_vm_apply(const struct hv_cgroups *cg, int64_t id, const struct hv_resources *r,
                       struct atr_error *err)
{
    char cpu[600], mem[600], v[64];
    int rc = hv_cgroup_vm_dir(cg, id, "cpu", cpu, sizeof(cpu));
    if (rc == 0)
        rc = hv_cgroup_vm_dir(cg, id, "memory", mem, sizeof(mem));
    if (rc < 0)
        return atr_error_set(err, rc, "no cgroup for VM %lld", (long long)id);
    int weight = r->cpu_weight > 0 ? r->cpu_weight : 100;
    struct {
        const char *dir, *leaf;
        char value[64];
    } w[3];
    if (cg->mode == HV_CGROUP_V2) {
        w[0].dir = cpu, w[0].leaf = "cpu.weight";
        snprintf(w[0].value, sizeof(w[0].value), "%d", weight);
        w[1].dir = cpu, w[1].leaf = "cpu.max";
        if (r->cpu_max_pct > 0)
            snprintf(w[1].value, sizeof(w[1].value), "%lld %d",
                     (long long)r->cpu_max_pct * CFS_PERIOD_US / 100, CFS_PERIOD_US);
        else
            snprintf(w[1].value, sizeof(w[1].value), "max %d", CFS_PERIOD_US);
        w[2].dir = mem, w[2].leaf = "memory.max";
        if (r->memory_max_mb > 0)
            snprintf(w[2].value, sizeof(w[2].value), "%lld", (long long)r->memory_max_mb << 20);
        else
            snprintf(w[2].value, sizeof(w[2].value), "max");
    } else {
        long long shares = (long long)weight * 1024 / 100;
        w[0].dir = cpu, w[0].leaf = "cpu.shares";
        snprintf(w[0].value, sizeof(w[0].value), "%lld", shares < 2 ? 2 : shares);
        w[1].dir = cpu, w[1].leaf = "cpu.cfs_quota_us";
        snprintf(w[1].value, sizeof(w[1].value), "%lld",
                 r->cpu_max_pct > 0 ? (long long)r->cpu_max_pct * CFS_PERIOD_US / 100 : -1LL);
        w[2].dir = mem, w[2].leaf = "memory.limit_in_bytes";
        snprintf(w[2].value, sizeof(w[2].value), "%lld",
                 r->memory_max_mb > 0 ? (long long)r->memory_max_mb << 20 : -1LL);
        if (r->cpu_max_pct > 0) {
            snprintf(v, sizeof(v), "%d", CFS_PERIOD_US);
            rc = write_file(cpu, "cpu.cfs_period_us", v);
            if (rc < 0)
                return atr_error_set(err, rc, "cannot write %s/cpu.cfs_period_us: %s", cpu,
                                     strerror(-rc));
        }
    }
    for (int i = 0; i < 3; i++) {
        rc = write_file(w[i].dir, w[i].leaf, w[i].value);
        if (rc < 0)
            return atr_error_set(err, rc, "cannot write %s to %s/%s: %s", w[i].value, w[i].dir,
                                 w[i].leaf, strerror(-rc));
    }
    return 0;
}

int hv_cgroup_vm_remove(const struct hv_cgroups *cg, int64_t id)
{
    static const char *const controllers[] = {"cpu", "memory"};
    int n = cg->mode == HV_CGROUP_V2 ? 1 : cg->mode == HV_CGROUP_V1 ? 2 : 0;
    int r = 0;
    for (int i = 0; i < n; i++) {
        char dir[600];
        if (hv_cgroup_vm_dir(cg, id, controllers[i], dir, sizeof(dir)) == 0 && rmdir(dir) < 0 &&
            errno != ENOENT)
            r = -errno;
    }
    return r;
}

void hv_cgroup_fini(const struct hv_cgroups *cg)
{
    const char *dirs[] = {cg->v2, cg->v1_cpu, cg->v1_mem};
    for (size_t i = 0; i < 3; i++)
        if ((cg->mode == HV_CGROUP_V2) == (i == 0) && cg->mode != HV_CGROUP_NONE && dirs[i][0])
            rmdir(dirs[i]); /* fails while a VM's cgroup is in it: that is the point */
}

void hv_cgroup_sweep(const struct hv_cgroups *cg)
{
    const char *slices[] = {cg->v2, cg->v1_cpu, cg->v1_mem};
    for (size_t i = 0; i < 3; i++) {
        if (cg->mode == HV_CGROUP_NONE || (cg->mode == HV_CGROUP_V2) != (i == 0) || !slices[i][0])
            continue;
        char parent[512];
        snprintf(parent, sizeof(parent), "%s", slices[i]);
        *strrchr(parent, '/') = '\0';
        DIR *d = opendir(parent);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            size_t len = strlen(e->d_name);
            if (strncmp(e->d_name, "atrium-", 7) != 0 || len < 13 ||
                strcmp(e->d_name + len - 6, ".slice") != 0)
                continue;
            char slice[800];
            snprintf(slice, sizeof(slice), "%s/%s", parent, e->d_name);
            DIR *sd = opendir(slice);
            struct dirent *v;
            while (sd && (v = readdir(sd))) {
                if (strncmp(v->d_name, "vm-", 3) != 0)
                    continue;
                char vm[1100];
                snprintf(vm, sizeof(vm), "%s/%s", slice, v->d_name);
                rmdir(vm); /* EBUSY while a QEMU is in it */
            }
            if (sd)
                closedir(sd);
            rmdir(slice);
        }
        if (d)
            closedir(d);
    }
}

int hv_cgroup_slice_share(const struct hv_cgroups *cg, int nvms)
{
    if (cg->mode == HV_CGROUP_NONE || nvms <= 0)
        return 0;
    char v[32];
    const char *dir = cg->mode == HV_CGROUP_V2 ? cg->v2 : cg->v1_cpu;
    if (cg->mode == HV_CGROUP_V2)
        snprintf(v, sizeof(v), "%d", nvms * 100 > 10000 ? 10000 : nvms * 100);
    else
        snprintf(v, sizeof(v), "%d", nvms * 1024 > 262144 ? 262144 : nvms * 1024);
    int r = write_file(dir, cg->mode == HV_CGROUP_V2 ? "cpu.weight" : "cpu.shares", v);
    return r == -ENOENT ? 0 : r; /* no slice: no VM either */
}
