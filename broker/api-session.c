/*
 * An admin's (or operator's) control of anyone's desktop session:
 * disconnect it, or watch it view-only (shadow).
 *
 * Neither talks to displayd: both write rows it acts on.  A disconnect sets
 * disconnect_requested_at, whose trigger NOTIFYs displayd (and which it
 * re-reads after a database outage).  A shadow is a one-time console ticket
 * flagged view_only: displayd admits its viewer next to the person's
 * without taking the session over, drops its input, and marks the session
 * shadowed while it watches.
 */
#include "broker-priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int brk_api_session_disconnect(struct brk_request *req, struct brk_reply *rep)
{
    int r = db_session_request_disconnect(req->conn->db, req->ids[0]);
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "not_found", "no such live session");
    if (r < 0)
        return r;
    char b[24];
    snprintf(b, sizeof(b), "%lld", (long long)req->ids[0]);
    brk_audit(req, "session.disconnect", "session", b, NULL);
    return brk_reply_json(
        rep, 200,
        json_pack("{s:I, s:s}", "session_id", (json_int_t)req->ids[0], "state", "disconnected"));
}

int brk_api_session_shadow(struct brk_request *req, struct brk_reply *rep)
{
    const char *protocol;
    const struct atr_config *cfg = brk_server_config(req->server);
    if (!req->body || atr_json_get_str(req->body, "protocol", &protocol) < 0 ||
        json_object_size(req->body) != 1 ||
        (strcmp(protocol, "vnc") != 0 && strcmp(protocol, "browser") != 0))
        return brk_reply_error(rep, 400, "bad_request",
                               "send {\"protocol\": \"vnc\" | \"browser\"}: only those can watch "
                               "view-only");
    char gateway[256];
    if (brk_gateway_host(cfg->broker.public_address, brk_request_header(req, "Host"), gateway,
                         sizeof(gateway)) < 0)
        return brk_reply_error(rep, 400, "bad_request",
                               "the Host header is not a host name or address");
    struct db_session s;
    int r = db_session_get(req->conn->db, req->ids[0], &s);
    if (r == -ENOENT || (r == 0 && (strcmp(s.state, "ended") == 0 || !s.vm_id)))
        return brk_reply_error(rep, 404, "not_found", "no such live session");
    if (r < 0)
        return r;
    if (s.user_id == req->caller.user_id)
        return brk_reply_error(rep, 409, "own_session",
                               "this is your own session: connect to it from your desktops");

    unsigned proto = db_protocol_from_name(protocol);
    struct db_ticket_request tr = {
        .vm_id = s.vm_id,
        .session_id = s.id,
        .user_id = req->caller.user_id,
        .protocol = proto,
        .client_addr = req->client_addr[0] ? req->client_addr : NULL,
        .view_only = true,
    };
    char ticket[DB_TICKET_LEN + 1];
    r = brk_ticket_issue(req, &tr, ticket);
    if (r < 0)
        return r;

    char sid[24];
    snprintf(sid, sizeof(sid), "%lld", (long long)s.id);
    brk_audit(req, "session.shadow", "session", sid,
              json_pack("{s:I, s:I, s:s}", "user_id", (json_int_t)s.user_id, "vm_id",
                        (json_int_t)s.vm_id, "protocol", protocol));

    struct brk_conn_target t = brk_conn_target_make(cfg, gateway, "shadow", req->caller.username);
    json_t *viewer = NULL;
    r = brk_viewer_info(req, protocol, &t, ticket, &viewer);
    if (r < 0)
        return r;
    return brk_reply_json(rep, 200,
                          json_pack("{s:I, s:{s:I}, s:b, s:s, s:i, s:o}", "session_id",
                                    (json_int_t)s.id, "vm", "id", (json_int_t)s.vm_id, "view_only",
                                    1, "protocol", protocol, "ticket_ttl_s", tr.ttl_s, protocol,
                                    viewer));
}
