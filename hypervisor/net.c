/*
 * The tap of a bridged NIC and the VM's network bandwidth cap.
 *
 * hostd, not QEMU, owns a bridged VM's tap: it creates a persistent tap
 * named after the VM, enslaves it to the bridge and hands QEMU only its
 * name (-netdev tap,ifname=…,script=no).  QEMU then runs no helper (its
 * seccomp filter denies spawning), and the tap outlives a hostd restart
 * with whatever was configured on it, so a re-adopted VM keeps its cap.
 *
 * The cap is tc on the host side of the tap.  Traffic to the guest leaves
 * the host through the tap: a tbf root qdisc there.  Traffic from the guest
 * enters the host through the tap, where only policing is possible; the
 * kernels we run on (containers included) may lack act_police, so the
 * ingress traffic is redirected (act_mirred) to an ifb device of the VM
 * that has its own tbf, which shapes instead of dropping bursts outright.
 *
 * Everything goes through `ip` and `tc` (iproute2): a few short children
 * per change of the cap, in exchange for not re-implementing tc's netlink
 * encoding of rate tables.
 */
#include "proc-priv.h"

#include <errno.h>
#include <inttypes.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>

#define NET_TOOL_TIMEOUT_MS 10000

int hv_net_names(int64_t id, char ret_tap[static HV_IFNAMSIZ], char ret_ifb[static HV_IFNAMSIZ])
{
    char tap[32], ifb[32];
    if (id <= 0)
        return -EINVAL;
    int n = snprintf(tap, sizeof(tap), "atr%" PRId64 "n0", id);
    int m = snprintf(ifb, sizeof(ifb), "atr%" PRId64 "i0", id);
    if (n < 0 || m < 0 || n >= HV_IFNAMSIZ || m >= HV_IFNAMSIZ)
        return -ENAMETOOLONG;
    memcpy(ret_tap, tap, (size_t)n + 1);
    memcpy(ret_ifb, ifb, (size_t)m + 1);
    return 0;
}

static bool link_exists(const char *name)
{
    return if_nametoindex(name) != 0;
}

/* Run one iproute2 command; on failure @err gets the command's own words. */
static int run(char *const argv[], struct atr_error *err)
{
    char tail[512] = "";
    int r = hv_proc_run(argv, NET_TOOL_TIMEOUT_MS, 0, NULL, tail, sizeof(tail));
    if (r < 0 && err) {
        tail[strcspn(tail, "\n")] = '\0';
        char cmd[256] = "";
        size_t len = 0;
        for (char *const *a = argv; *a && len < sizeof(cmd) - 1; a++) {
            int k = snprintf(cmd + len, sizeof(cmd) - len, "%s%s", len ? " " : "", *a);
            if (k < 0)
                break;
            len += (size_t)k;
        }
        return atr_error_set(err, r, "`%s` failed: %s", cmd, tail[0] ? tail : strerror(-r));
    }
    return r;
}

static int link_delete(const char *name)
{
    if (!link_exists(name))
        return 0;
    char *argv[] = {"ip", "link", "del", "dev", (char *)name, NULL};
    int r = run(argv, NULL);
    return r < 0 && link_exists(name) ? r : 0;
}

int hv_net_tap_create(const char *tap, const char *bridge, struct atr_error *err)
{
    if (!tap || !tap[0] || strlen(tap) >= HV_IFNAMSIZ)
        return atr_error_set(err, -EINVAL, "invalid tap name");
    if (!bridge || !bridge[0] || strlen(bridge) >= HV_IFNAMSIZ)
        return atr_error_set(err, -EINVAL, "invalid bridge name");
    if (!link_exists(bridge))
        return atr_error_set(err, -ENODEV, "bridge %s does not exist on this host", bridge);
    /* A tap of the same name is a leftover of this VM's previous QEMU (the
     * name carries the VM id and no QEMU of this VM runs): start clean. */
    int r = link_delete(tap);
    if (r < 0)
        return atr_error_set(err, r, "cannot remove the old tap %s", tap);
    char *add[] = {"ip", "tuntap", "add", "dev", (char *)tap, "mode", "tap", NULL};
    if ((r = run(add, err)) < 0)
        return r;
    char *up[] = {"ip", "link", "set", "dev", (char *)tap, "master", (char *)bridge, "up", NULL};
    if ((r = run(up, err)) < 0)
        link_delete(tap);
    return r;
}

int hv_net_tap_delete(const char *tap, const char *ifb)
{
    int r = tap ? link_delete(tap) : 0;
    int s = ifb ? link_delete(ifb) : 0;
    return r < 0 ? r : s;
}

/* tbf on @dev at @bps bytes per second. */
static int tbf(const char *dev, int64_t bps, struct atr_error *err)
{
    /* The bucket holds a tenth of a second, at least ten full frames (tbf
     * needs one frame; small buckets starve TCP), at most 64 MiB. */
    int64_t burst = bps / 10;
    if (burst < 15140)
        burst = 15140;
    if (burst > (64 << 20))
        burst = 64 << 20;
    char rate[32], bur[32];
    snprintf(rate, sizeof(rate), "%" PRId64 "bit", bps * 8);
    snprintf(bur, sizeof(bur), "%" PRId64, burst);
    char *argv[] = {"tc",   "qdisc", "replace", "dev", (char *)dev, "root", "tbf",
                    "rate", rate,    "burst",   bur,   "latency",   "50ms", NULL};
    return run(argv, err);
}

int hv_net_cap_apply(const char *tap, const char *ifb, int64_t bps, struct atr_error *err)
{
    if (!tap || !ifb)
        return atr_error_set(err, -EINVAL, "no tap");
    if (bps < 0 || bps > INT64_MAX / 8)
        return atr_error_set(err, -ERANGE, "%" PRId64 " bytes/s is out of range", bps);
    if (!link_exists(tap))
        return atr_error_set(err, -ENODEV, "the VM's tap %s does not exist", tap);
    int r;
    if (bps == 0) {
        /* Lifted: back to the kernel's default qdisc, no redirect, no ifb.
         * Deleting what is not there fails; only the outcome counts. */
        char *root[] = {"tc", "qdisc", "del", "dev", (char *)tap, "root", NULL};
        char *ingress[] = {"tc", "qdisc", "del", "dev", (char *)tap, "ingress", NULL};
        run(root, NULL);
        run(ingress, NULL);
        if ((r = link_delete(ifb)) < 0)
            return atr_error_set(err, r, "cannot remove %s", ifb);
        return 0;
    }
    if ((r = tbf(tap, bps, err)) < 0)
        return r;
    if (!link_exists(ifb)) {
        char *add[] = {"ip", "link", "add", "dev", (char *)ifb, "type", "ifb", NULL};
        if ((r = run(add, err)) < 0)
            return r;
    }
    char *up[] = {"ip", "link", "set", "dev", (char *)ifb, "up", NULL};
    if ((r = run(up, err)) < 0 || (r = tbf(ifb, bps, err)) < 0)
        return r;
    char *ingress[] = {"tc",     "qdisc", "replace", "dev", (char *)tap,
                       "handle", "ffff:", "ingress", NULL};
    if ((r = run(ingress, err)) < 0)
        return r;
    /* One u32 filter matching everything, replaced in place (fixed handle). */
    char *redirect[] = {"tc",       "filter", "replace",   "dev", (char *)tap, "parent",   "ffff:",
                        "protocol", "all",    "prio",      "1",   "handle",    "800::800", "u32",
                        "match",    "u32",    "0",         "0",   "action",    "mirred",   "egress",
                        "redirect", "dev",    (char *)ifb, NULL};
    return run(redirect, err);
}
