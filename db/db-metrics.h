/*
 * Reading the metric samples hostd records (part of db.h; include "db.h",
 * not this).  hostd writes them (db_host_metrics_insert); the broker reads
 * them here for the console's live charts.
 *
 * Both functions answer one JSON object built by PostgreSQL:
 *   {"now": <server time>, ..., "truncated": bool, "items": [<sample>, ...]}
 * with the samples taken strictly after @since (RFC 3339 text, NULL: the
 * last @window_s seconds), oldest first.  When more than @limit samples
 * match, the newest @limit are returned and "truncated" is true, so a
 * caller that passes back the newest "at" it has never loses the present.
 * "now" is the server's clock, so a chart's time axis does not depend on
 * the browser's.  -ENOENT when the host or VM does not exist, -EINVAL when
 * @since does not parse or @limit < 1.
 */
#pragma once

#include <jansson.h>
#include <stdint.h>

struct db;

/* Samples of host @host_id itself (not its VMs): {"host_id", "name", "now",
 * "truncated", "items": [{at, cpu_pct, mem_used_mb, mem_total_mb, vm_count,
 * disk_*, net_*}]}. */
int db_metrics_host(struct db *db, int64_t host_id, const char *since, int window_s, int limit,
                    json_t **ret_reply);

/* Samples of VM @vm_id, on whichever host ran it: {"vm_id", "name",
 * "memory_mb", "vcpus", "now", "truncated", "items": [{at, host_id,
 * cpu_pct (100 = one host CPU), mem_used_mb (QEMU's resident memory),
 * balloon_mb, disk_*, net_*}]}. */
int db_metrics_vm(struct db *db, int64_t vm_id, const char *since, int window_s, int limit,
                  json_t **ret_reply);
