/*
 * Metrics: what the kernel says about QEMU processes and the host, and the
 * two QMP replies (query-blockstats, query-balloon) that only QEMU knows.
 * Readings are raw counters; hostd turns two of them into rates.
 */
#include "hv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int read_file(const char *path, char *buf, size_t size)
{
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

int hv_metrics_proc(pid_t pid, struct hv_proc_stat *ret)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int r = read_file(path, buf, sizeof(buf));
    if (r < 0)
        return r;
    /* comm (field 2) may hold spaces and parentheses: parse after the last ')'. */
    const char *p = strrchr(buf, ')');
    unsigned long long utime, stime;
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        return -EINVAL;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    r = read_file(path, buf, sizeof(buf));
    if (r < 0)
        return r;
    const char *rss = strstr(buf, "\nVmRSS:");
    long long kb = 0;
    if (!rss || sscanf(rss + 7, "%lld", &kb) != 1)
        return -EINVAL;
    ret->cpu_ticks = (int64_t)(utime + stime);
    ret->rss_kb = kb;
    return 0;
}

int hv_metrics_host(struct hv_host_stat *ret)
{
    char buf[4096];
    int r = read_file("/proc/stat", buf, sizeof(buf));
    if (r < 0)
        return r;
    unsigned long long v[8] = {0};
    if (sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]) < 4)
        return -EINVAL;
    unsigned long long total = 0;
    for (int i = 0; i < 8; i++)
        total += v[i];
    struct hv_host_stat s = {
        .total_ticks = (int64_t)total,
        .busy_ticks = (int64_t)(total - v[3] - v[4]), /* minus idle and iowait */
    };
    r = read_file("/proc/meminfo", buf, sizeof(buf));
    if (r < 0)
        return r;
    const char *t = strstr(buf, "MemTotal:"), *a = strstr(buf, "MemAvailable:");
    long long tk, ak;
    if (!t || !a || sscanf(t + 9, "%lld", &tk) != 1 || sscanf(a + 13, "%lld", &ak) != 1)
        return -EINVAL;
    s.mem_total_kb = tk;
    s.mem_available_kb = ak;
    *ret = s;
    return 0;
}

double hv_metrics_cpu_pct(int64_t ticks_before, int64_t ticks_after, int64_t wall_ms)
{
    long hz = sysconf(_SC_CLK_TCK);
    if (wall_ms <= 0 || hz <= 0 || ticks_after < ticks_before)
        return 0;
    return (double)(ticks_after - ticks_before) * 1000.0 * 100.0 / ((double)hz * (double)wall_ms);
}

int hv_metrics_blockstats(const json_t *ret, struct hv_vm_io *io)
{
    if (!json_is_array(ret))
        return -EINVAL;
    struct hv_vm_io sum = {0};
    size_t i;
    json_t *dev;
    json_array_foreach(ret, i, dev)
    {
        json_t *st = json_object_get(dev, "stats");
        long long rb, wb, ro, wo;
        if (atr_json_get_int(st, "rd_bytes", 0, INT64_MAX, &rb) < 0 ||
            atr_json_get_int(st, "wr_bytes", 0, INT64_MAX, &wb) < 0 ||
            atr_json_get_int(st, "rd_operations", 0, INT64_MAX, &ro) < 0 ||
            atr_json_get_int(st, "wr_operations", 0, INT64_MAX, &wo) < 0)
            return -EINVAL;
        sum.rd_bytes += rb;
        sum.wr_bytes += wb;
        sum.rd_ops += ro;
        sum.wr_ops += wo;
    }
    *io = sum;
    return 0;
}

int hv_metrics_balloon_mb(const json_t *ret, int64_t *ret_mb)
{
    long long actual;
    if (atr_json_get_int(ret, "actual", 0, INT64_MAX, &actual) < 0)
        return -EINVAL;
    *ret_mb = actual / (1024 * 1024);
    return 0;
}
