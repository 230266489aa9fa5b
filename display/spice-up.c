/*
 * Upstream for SPICE: a connection handed to QEMU as an authenticated client.
 *
 * QEMU runs SPICE with ticketing on and never gets a password, so its
 * spice.sock admits nobody.  displayd admits a viewer itself (a console
 * ticket, a follow token, or a relay ticket on the VM's own host) and then
 * gives QEMU one end of a socketpair over the VM's display QMP socket:
 * "getfd" (the descriptor travels as SCM_RIGHTS) and "add_client" with
 * skipauth.  The SPICE password therefore never exists, is never sent over
 * the network, and no QMP command crosses hosts: each host's displayd hands
 * connections only to its own QEMUs (the relay's serving side does it for a
 * stream it admitted with a ticket bound to the VM and the kind "spice").
 * This is also what lets a SPICE client follow its VM across a live
 * migration: the destination's QEMU takes the client's new channels the
 * same way, with no password to carry over.
 *
 * Thread-safe: its own short QMP connection each time, one at a time in
 * this process (handover_lock).  QEMU serves one QMP client at a time and
 * listens with a backlog of one, so SPICE's channels, which connect all at
 * once, would find the queue full (EAGAIN) if the gateway thread and the
 * relay's threads connected together.
 */
#include "disp-priv.h"

#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#define QMP_TIMEOUT_MS 5000
#define FD_NAME "atrium-spice"

/* Serializes every QMP hand-over of this displayd (see above). */
static pthread_mutex_t handover_lock = PTHREAD_MUTEX_INITIALIZER;

int disp_spice_handover(const char *qmp_path, int *ret_fd)
{
    struct hv_qmp *q = NULL;
    struct atr_error err = {0};
    int sv[2] = {-1, -1};
    int r = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ? -errno : 0;
    pthread_mutex_lock(&handover_lock);
    if (r == 0)
        r = hv_qmp_connect(qmp_path, NULL, NULL, QMP_TIMEOUT_MS, &q);
    /* answered in order: the descriptor first, then the client that uses it */
    if (r == 0)
        r = hv_qmp_send_fd(q, "getfd", json_pack("{s:s}", "fdname", FD_NAME), sv[1],
                           QMP_TIMEOUT_MS, NULL, NULL, NULL);
    if (r == 0)
        r = hv_qmp_call(q, "add_client",
                        json_pack("{s:s, s:s, s:b, s:b}", "protocol", "spice", "fdname", FD_NAME,
                                  "skipauth", 1, "tls", 0),
                        QMP_TIMEOUT_MS, NULL, &err);
    hv_qmp_free(q);
    pthread_mutex_unlock(&handover_lock);
    if (sv[1] >= 0)
        close(sv[1]); /* QEMU holds its own copy now */
    if (r < 0) {
        log_debug("spice hand-over failed", "qmp", qmp_path, "errno", LOG_INT(-r), "detail",
                  err.msg);
        if (sv[0] >= 0)
            close(sv[0]);
        return r;
    }
    *ret_fd = sv[0];
    return 0;
}
