/*
 * libFuzzer target: arbitrary bytes from "QEMU" into the QMP client.
 *
 * The first input byte picks the chunk size the rest is fed in, so the
 * fuzzer also explores lines split across reads.  A detached client (no
 * socket) registers its commands as sent, so a reply with id 1 completes
 * the handshake and ids 2 and 3 answer the two commands queued here: the
 * reply, error and event paths are all reachable from input bytes.
 */
#include "qmp-priv.h"

#include <stddef.h>
#include <stdint.h>

static void on_event(struct hv_qmp *q, enum hv_qmp_event ev, const char *name, json_t *data,
                     void *userdata)
{
    (void)q;
    (void)userdata;
    /* Touch what a real handler would read. */
    if (ev == HV_QMP_EVENT_OTHER && name)
        (void)hv_qmp_event_from_name(name);
    if (json_is_true(json_object_get(data, "guest")))
        (void)hv_qmp_event_name(ev);
}

static void on_reply(struct hv_qmp *q, const struct hv_qmp_reply *r, void *userdata)
{
    (void)q;
    (void)userdata;
    if (r->error == 0)
        (void)json_typeof(r->ret);
}

static const struct hv_qmp_ops ops = {.event = on_event};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)data[0] + 1;
    data++;
    size--;
    struct hv_qmp *q;
    if (hv_qmp_new(-1, &ops, NULL, 1000, &q) < 0)
        return 0;
    hv_qmp_send(q, "query-status", NULL, 0, on_reply, NULL, NULL);
    hv_qmp_send(q, "query-balloon", json_object(), 0, on_reply, NULL, NULL);
    while (size > 0) {
        size_t n = size < chunk ? size : chunk;
        if (hv_qmp_feed(q, data, n) < 0)
            break;
        data += n;
        size -= n;
    }
    hv_qmp_free(q);
    return 0;
}
