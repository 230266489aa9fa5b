/*
 * Connection files and addresses handed to viewers.
 *
 * Every value written into a file is checked or produced by us: the gateway
 * host (validated below), ports from the config, pool and user names (the
 * schema restricts them to [A-Za-z0-9._@-]) and tickets (hex or the VNC
 * alphabet).  So no client input can add a line to a .vv or .rdp file.
 *
 * The gateway is named by the address the client used to reach the broker
 * (its Host header) unless the admin configured [broker] public_address:
 * an internal host name would be useless to a viewer outside.
 */
#include "broker-priv.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct brk_conn_target brk_conn_target_make(const struct atr_config *cfg, const char *gateway,
                                            const char *title, const char *username)
{
    return (struct brk_conn_target){
        .gateway = gateway,
        .spice_port = cfg->display.spice_port,
        .spice_tls = cfg->display.spice_tls,
        .rdp_port = cfg->display.rdp_port,
        .vnc_port = cfg->display.vnc_port,
        .title = title,
        .username = username,
    };
}

int brk_gateway_host(const char *public_address, const char *host_header, char *buf, size_t size)
{
    const char *h = public_address && *public_address ? public_address : host_header;
    if (!h || !*h)
        return -EINVAL;
    size_t n;
    if (h[0] == '[') {
        /* [IPv6] with an optional :port */
        const char *end = strchr(h, ']');
        if (!end || end == h + 1)
            return -EINVAL;
        for (const char *p = h + 1; p < end; p++)
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
                return -EINVAL;
        n = (size_t)(end - h) + 1;
        if (end[1] &&
            (end[1] != ':' || !end[2] || strspn(end + 2, "0123456789") != strlen(end + 2)))
            return -EINVAL;
    } else {
        n = strspn(h, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-");
        if (n == 0 || h[0] == '-' || h[0] == '.')
            return -EINVAL;
        if (h[n] &&
            (h[n] != ':' || !h[n + 1] || strspn(h + n + 1, "0123456789") != strlen(h + n + 1)))
            return -EINVAL;
    }
    if (n > 253 || n + 1 > size)
        return -EINVAL;
    memcpy(buf, h, n);
    buf[n] = '\0';
    return 0;
}

char *brk_connfile_vv(const struct brk_conn_target *t, const char *ticket)
{
    char *s = NULL;
    /* remote-viewer connects through displayd's HTTP CONNECT proxy and asks
     * for "<ticket>:5900": the ticket is both the route and the password
     * (display/spice.c).  The port is not used by the proxy.  With
     * display.spice_tls the proxy speaks TLS, which spice-gtk does for an
     * https:// proxy (checking the certificate against the system's CAs). */
    int r = asprintf(&s,
                     "[virt-viewer]\n"
                     "type=spice\n"
                     "proxy=%s://%s:%d\n"
                     "host=%s\n"
                     "port=5900\n"
                     "password=%s\n"
                     "title=%s (Atrium)\n"
                     "delete-this-file=1\n"
                     "secure-attention=ctrl+alt+end\n"
                     "release-cursor=shift+f12\n",
                     t->spice_tls ? "https" : "http", t->gateway, t->spice_port, ticket, ticket,
                     t->title);
    return r < 0 ? NULL : s;
}

char *brk_connfile_rdp(const struct brk_conn_target *t, const char *ticket)
{
    char *s = NULL;
    /* loadbalanceinfo travels as the routing token of the X.224 connection
     * request, before TLS: the gateway routes (and admits) by it, so the
     * person is not asked for a password again.  It must be in the
     * load-balancer form "Cookie: msts=<ticket>": FreeRDP 2's server (behind
     * displayd) refuses a bare routing token. */
    int r = asprintf(&s,
                     "full address:s:%s:%d\r\n"
                     "username:s:%s\r\n"
                     "loadbalanceinfo:s:Cookie: msts=%s\r\n"
                     "prompt for credentials:i:0\r\n"
                     "authentication level:i:2\r\n"
                     "screen mode id:i:2\r\n"
                     "use multimon:i:0\r\n"
                     "redirectclipboard:i:1\r\n",
                     t->gateway, t->rdp_port, t->username, ticket);
    return r < 0 ? NULL : s;
}
