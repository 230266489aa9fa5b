/*
 * The user portal: my desktops, connect, disconnect, log off; and the
 * admin's log-off of anyone's session (api-session.c has the rest of the
 * admin's session control).
 *
 * Connect is: entitlement (auth/), assignment (pool-manager's one
 * transaction that cannot give one VM to two people), a one-time console
 * ticket bound to that VM and protocol (db/ticket.c), and what the viewer
 * needs to use it.  A pool the caller is not entitled to answers 404, the
 * same as a pool that does not exist, so the API does not tell people which
 * pools exist.
 */
#include "broker-priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_AFTER_S "10" /* no desktop ready: provisioning a spare takes about this */

int brk_api_desktops(struct brk_request *req, struct brk_reply *rep)
{
    int64_t *ids = NULL;
    size_t n = 0;
    int r = auth_user_pools(req->conn->auth, req->caller.user_id, &ids, &n);
    if (r < 0)
        return r;
    json_t *items = NULL;
    r = db_desktop_list(req->conn->db, req->caller.user_id, ids, n, &items);
    free(ids);
    if (r < 0)
        return r;
    return brk_reply_json(rep, 200, json_pack("{s:o}", "items", items));
}

/* Entitled and existing, or a 404 in @rep (returns 1 when the caller may go on). */
static int desktop_visible(struct brk_request *req, struct brk_reply *rep, struct db_pool *ret_pool)
{
    bool entitled = false;
    int r = auth_entitled(req->conn->auth, req->caller.user_id, req->ids[0], &entitled);
    if (r < 0 && r != -ENOENT)
        return r;
    if (entitled)
        r = db_pool_get(req->conn->db, req->ids[0], ret_pool);
    if (!entitled || r == -ENOENT) {
        brk_reply_error(rep, 404, "not_found", "no such desktop");
        return 0;
    }
    return r < 0 ? r : 1;
}

static int connect_refused(struct brk_reply *rep, int r)
{
    switch (r) {
    case -EAGAIN:
        brk_reply_error(rep, 503, "no_desktop_ready",
                        "every desktop of this pool is in use; one is being prepared, try again "
                        "shortly");
        return brk_reply_header(rep, "Retry-After", RETRY_AFTER_S);
    case -EHOSTUNREACH:
        brk_reply_error(rep, 503, "desktop_unreachable",
                        "the host of your desktop is not reachable; your desktop is kept for you "
                        "while it may come back (or is rebuilt elsewhere once it is fenced), try "
                        "again shortly");
        return brk_reply_header(rep, "Retry-After", RETRY_AFTER_S);
    case -EPERM:
        return brk_reply_error(rep, 409, "pool_disabled", "this desktop pool is disabled");
    case -EPROTONOSUPPORT:
        return brk_reply_error(rep, 400, "protocol_not_offered",
                               "this pool does not offer that protocol");
    case -ENOENT:
        return brk_reply_error(rep, 404, "not_found", "no such desktop");
    default:
        return r;
    }
}

int brk_ticket_issue(struct brk_request *req, struct db_ticket_request *tr,
                     char ticket[static DB_TICKET_LEN + 1])
{
    /* Native VNC carries at most an 8-character password: displayd checks
     * those separately and they live shorter (db-ticket.h). */
    if (tr->protocol == DB_PROTO_VNC) {
        tr->ttl_s = DB_TICKET_VNC_MAX_TTL_S;
        return db_ticket_issue_vnc(req->conn->db, tr, ticket);
    }
    tr->ttl_s = DB_TICKET_MAX_TTL_S;
    return db_ticket_issue(req->conn->db, tr, ticket);
}

int brk_viewer_info(struct brk_request *req, const char *protocol,
                       const struct brk_conn_target *t, const char *ticket, json_t **ret)
{
    char url[512];
    const struct atr_config *cfg = brk_server_config(req->server);
    if (strcmp(protocol, "spice") == 0) {
        char *vv = brk_connfile_vv(t, ticket);
        if (!vv)
            return -ENOMEM;
        *ret = json_pack("{s:s%}", "vv", vv, strlen(vv));
        free(vv);
    } else if (strcmp(protocol, "rdp") == 0) {
        char *rdp = brk_connfile_rdp(t, ticket);
        if (!rdp)
            return -ENOMEM;
        *ret = json_pack("{s:s%}", "rdp", rdp, strlen(rdp));
        free(rdp);
    } else if (strcmp(protocol, "vnc") == 0) {
        snprintf(url, sizeof(url), "vnc://%s:%d", t->gateway, t->vnc_port);
        *ret = json_pack("{s:s, s:s}", "url", url, "password", ticket);
    } else {
        /* noVNC speaks WebSocket to displayd's VNC port; the ticket in the
         * path is the credential (display/vnc.c). */
        snprintf(url, sizeof(url), "%s://%s:%d/websockify?ticket=%s",
                 cfg->broker.tls ? "wss" : "ws", t->gateway, t->vnc_port, ticket);
        *ret = json_pack("{s:s, s:s, s:i, s:s+}", "websocket_url", url, "host", t->gateway, "port",
                         t->vnc_port, "path", "websockify?ticket=", ticket);
    }
    return *ret ? 0 : -ENOMEM;
}

int brk_api_desktop_connect(struct brk_request *req, struct brk_reply *rep)
{
    const char *protocol;
    const struct atr_config *cfg = brk_server_config(req->server);
    if (!req->body || atr_json_get_str(req->body, "protocol", &protocol) < 0 ||
        json_object_size(req->body) != 1 || !db_protocol_from_name(protocol))
        return brk_reply_error(rep, 400, "bad_request",
                               "send {\"protocol\": \"spice\" | \"rdp\" | \"vnc\" | \"browser\"}");
    char gateway[256];
    if (brk_gateway_host(cfg->broker.public_address, brk_request_header(req, "Host"), gateway,
                         sizeof(gateway)) < 0)
        return brk_reply_error(rep, 400, "bad_request",
                               "the Host header is not a host name or address");
    struct db_pool pool;
    int r = desktop_visible(req, rep, &pool);
    if (r <= 0)
        return r;

    struct db_assignment a;
    const char *addr = req->client_addr[0] ? req->client_addr : NULL;
    r = pool_assign(req->conn->db, req->caller.user_id, pool.id, protocol, addr, &a);
    if (r == -EAGAIN)
        brk_metrics_assignment(BRK_ASSIGN_NONE_READY);
    if (r < 0)
        return connect_refused(rep, r);
    brk_metrics_assignment(a.reconnect ? BRK_ASSIGN_RECONNECT : BRK_ASSIGN_NEW);

    unsigned proto = db_protocol_from_name(protocol);
    struct db_ticket_request tr = {
        .vm_id = a.vm_id,
        .session_id = a.session_id,
        .user_id = req->caller.user_id,
        .protocol = proto,
        .client_addr = addr,
    };
    char ticket[DB_TICKET_LEN + 1];
    r = brk_ticket_issue(req, &tr, ticket);
    if (r < 0)
        return r;

    char sid[24];
    snprintf(sid, sizeof(sid), "%lld", (long long)a.session_id);
    brk_audit(req, "desktop.connect", "session", sid,
              json_pack("{s:I, s:I, s:s, s:b}", "pool_id", (json_int_t)pool.id, "vm_id",
                        (json_int_t)a.vm_id, "protocol", protocol, "reconnect", a.reconnect));

    struct brk_conn_target t =
        brk_conn_target_make(cfg, gateway, pool.name, req->caller.username);
    /* A client that asks for the file itself (a plain download link) gets it. */
    const char *accept = brk_request_header(req, "Accept");
    if (accept && (proto == DB_PROTO_SPICE || proto == DB_PROTO_RDP)) {
        const char *type =
            proto == DB_PROTO_SPICE ? "application/x-virt-viewer" : "application/x-rdp";
        if (strcmp(accept, type) == 0) {
            rep->text = proto == DB_PROTO_SPICE ? brk_connfile_vv(&t, ticket)
                                                : brk_connfile_rdp(&t, ticket);
            if (!rep->text)
                return -ENOMEM;
            char disp[128];
            snprintf(disp, sizeof(disp), "attachment; filename=\"%s.%s\"", pool.name,
                     proto == DB_PROTO_SPICE ? "vv" : "rdp");
            rep->status = 200;
            rep->content_type = type;
            return brk_reply_header(rep, "Content-Disposition", disp);
        }
    }
    json_t *viewer = NULL;
    r = brk_viewer_info(req, protocol, &t, ticket, &viewer);
    if (r < 0)
        return r;
    return brk_reply_json(rep, 200,
                          json_pack("{s:I, s:{s:I, s:s}, s:b, s:s, s:i, s:o}", "session_id",
                                    (json_int_t)a.session_id, "vm", "id", (json_int_t)a.vm_id,
                                    "name", a.vm_name, "reconnect", a.reconnect, "protocol",
                                    protocol, "ticket_ttl_s", tr.ttl_s, protocol, viewer));
}

/* -ENOENT (the session is gone, maybe ended meanwhile) is a 404; others pass on. */
static int no_session(struct brk_reply *rep, int r)
{
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "no_session", "you have no session on this desktop");
    return r;
}

/*
 * The caller's live session on the desktop the path names: 1 with *sid set,
 * or the reply (404 when there is none) / a negative errno.
 */
static int my_live_session(struct brk_request *req, struct brk_reply *rep, int64_t *sid)
{
    struct db_pool pool;
    int r = desktop_visible(req, rep, &pool);
    if (r <= 0)
        return r;
    r = db_desktop_live_session(req->conn->db, req->caller.user_id, pool.id, sid);
    return r == 0 ? 1 : no_session(rep, r);
}

int brk_api_desktop_logoff(struct brk_request *req, struct brk_reply *rep)
{
    int64_t sid;
    int r = my_live_session(req, rep, &sid);
    if (r <= 0)
        return r;
    r = pool_session_logoff(req->conn->db, sid, "logged off by the user");
    if (r < 0)
        return no_session(rep, r);
    char b[24];
    snprintf(b, sizeof(b), "%lld", (long long)sid);
    brk_audit(req, "desktop.logoff", "session", b, NULL);
    return brk_reply_json(rep, 200,
                          json_pack("{s:I, s:b}", "session_id", (json_int_t)sid, "logged_off", 1));
}

/*
 * Disconnect: displayd drops the person's viewers (it LISTENs for the
 * request), the desktop session lives on and the pool's disconnect timeout
 * starts.  Nothing to drop is not an error: the session is disconnected.
 */
int brk_api_desktop_disconnect(struct brk_request *req, struct brk_reply *rep)
{
    int64_t sid;
    int r = my_live_session(req, rep, &sid);
    if (r <= 0)
        return r;
    r = db_session_request_disconnect(req->conn->db, sid);
    if (r < 0)
        return no_session(rep, r);
    char b[24];
    snprintf(b, sizeof(b), "%lld", (long long)sid);
    brk_audit(req, "desktop.disconnect", "session", b, NULL);
    return brk_reply_json(
        rep, 200, json_pack("{s:I, s:s}", "session_id", (json_int_t)sid, "state", "disconnected"));
}

int brk_api_session_logoff(struct brk_request *req, struct brk_reply *rep)
{
    char reason[200];
    snprintf(reason, sizeof(reason), "logged off by %s", req->caller.username);
    int r = pool_session_logoff(req->conn->db, req->ids[0], reason);
    if (r == -ENOENT)
        return brk_reply_error(rep, 404, "not_found", "no such live session");
    if (r < 0)
        return r;
    char b[24];
    snprintf(b, sizeof(b), "%lld", (long long)req->ids[0]);
    brk_audit(req, "session.logoff", "session", b, NULL);
    return brk_reply_json(
        rep, 200, json_pack("{s:I, s:b}", "session_id", (json_int_t)req->ids[0], "logged_off", 1));
}
