/* Private to hypervisor/ and its tests: QMP client internals worth testing. */
#pragma once

#include "hv.h"

/*
 * QEMU sends one JSON object per line.  The longest line we accept: large
 * enough for query-qmp-schema (about 200 KiB on QEMU 7.2), small enough that
 * a confused or hostile peer cannot make hostd allocate without bound.
 */
#define HV_QMP_MAX_LINE (1024 * 1024)

/* Number of entries in the event table, and entry @i's name (tests check the order). */
size_t hv_qmp_event_table_size(void);
const char *hv_qmp_event_table_name(size_t i);

/* Bytes queued for QEMU and not yet written (tests read what the client sent). */
size_t hv_qmp_pending_output(const struct hv_qmp *q);
