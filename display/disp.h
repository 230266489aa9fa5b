/*
 * libatrium-display: the display gateway, the one network entry to VM
 * consoles.  QEMU serves each VM's VNC and SPICE consoles on unix sockets
 * only; the gateway listens on the network, admits a viewer only with a
 * one-time console ticket (db_ticket_redeem) and then joins it to the VM's
 * console.  Each protocol is a front end behind one vtable (disp-priv.h);
 * this header is what atrium-displayd and tests use.
 */
#pragma once

#include "common.h"
#include "db.h"

struct disp_gateway;

/*
 * A gateway for @cfg (display.* ports and address, paths.runtime_dir where
 * VM sockets live) using @db for tickets and session reports (borrowed; it
 * must outlive the gateway).  Binds every front end's listening socket now,
 * so a port in use is reported here (-EADDRINUSE, sentence in @err).
 * Sets *ret_gw (free with disp_gateway_free).
 */
int disp_gateway_new(const struct atr_config *cfg, struct db *db, struct disp_gateway **ret_gw,
                     struct atr_error *err);

/*
 * Serve until @stop_fd (an eventfd, signalfd or pipe) becomes readable.
 * Single-threaded: one poll() over every socket with the nearest deadline as
 * its timeout.  Returns 0 when stopped, -errno on a fatal error.
 */
int disp_gateway_run(struct disp_gateway *gw, int stop_fd);

/* Close every viewer and console connection.  Accepts NULL; returns NULL. */
struct disp_gateway *disp_gateway_free(struct disp_gateway *gw);
