/*
 * pool_bench_clones BASE.qcow2 WORKDIR: the disk side of provisioning.
 *   - 50 linked clones of BASE one after another (median and total),
 *   - 50 more from 4 threads at once (no clone may fail on a storage lock),
 *   - the disk use of a fresh clone, and of BASE, in bytes.
 * Prints "key value" lines that pool_bench.sh puts in its table.
 */
#include "hv.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 50
#define THREADS 4

static const char *base, *work;

static int cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

struct worker {
    int first, count, failures;
};

static void *clone_some(void *arg)
{
    struct worker *w = arg;
    for (int i = w->first; i < w->first + w->count; i++) {
        char path[512];
        struct atr_error err = {0};
        snprintf(path, sizeof(path), "%s/par-%d.qcow2", work, i);
        if (hv_storage_clone(NULL, base, path, &err) < 0) {
            fprintf(stderr, "clone %d failed: %s\n", i, err.msg);
            w->failures++;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: pool_bench_clones BASE.qcow2 WORKDIR\n");
        return 2;
    }
    base = argv[1];
    work = argv[2];
    int64_t t[N], total0 = atr_now_mono_ns();
    for (int i = 0; i < N; i++) {
        char path[512];
        struct atr_error err = {0};
        snprintf(path, sizeof(path), "%s/seq-%d.qcow2", work, i);
        int64_t t0 = atr_now_mono_ns();
        if (hv_storage_clone(NULL, base, path, &err) < 0) {
            fprintf(stderr, "clone %d failed: %s\n", i, err.msg);
            return 1;
        }
        t[i] = atr_now_mono_ns() - t0;
    }
    int64_t seq_total = atr_now_mono_ns() - total0;
    qsort(t, N, sizeof(t[0]), cmp);

    struct worker w[THREADS];
    pthread_t th[THREADS];
    int64_t p0 = atr_now_mono_ns();
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.first = i * (N / THREADS), .count = N / THREADS + (i == THREADS - 1 ? N % THREADS : 0)};
        pthread_create(&th[i], NULL, clone_some, &w[i]);
    }
    int failures = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        failures += w[i].failures;
    }
    int64_t par_total = atr_now_mono_ns() - p0;

    char path[512];
    int64_t clone_use = 0, base_use = 0;
    snprintf(path, sizeof(path), "%s/seq-0.qcow2", work);
    hv_storage_usage(path, &clone_use);
    hv_storage_usage(base, &base_use);
    printf("clone_median_ms %.1f\n", (double)t[N / 2] / 1e6);
    printf("clone_p90_ms %.1f\n", (double)t[N * 9 / 10] / 1e6);
    printf("clones_50_sequential_s %.2f\n", (double)seq_total / 1e9);
    printf("clones_50_parallel_s %.2f\n", (double)par_total / 1e9);
    printf("clones_parallel_failures %d\n", failures);
    printf("clone_disk_bytes %lld\n", (long long)clone_use);
    printf("base_disk_bytes %lld\n", (long long)base_use);
    return failures ? 1 : 0;
}
