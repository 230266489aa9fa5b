/* Live resources: the priority boost and QEMU's disk throttling arguments. */
#include "hv.h"

void hv_resources_effective(const struct hv_resources *want, bool boosted, bool neighbour_boosted,
                            struct hv_resources *ret)
{
    struct hv_resources r = *want;
    if (r.cpu_weight <= 0)
        r.cpu_weight = 100;
    if (boosted) {
        /* Everything at once: first in line for CPU, and no cap of its own
         * holds it back. */
        r = (struct hv_resources){.cpu_weight = HV_BOOST_WEIGHT};
    } else if (neighbour_boosted && r.cpu_weight > HV_BOOST_OTHERS_WEIGHT) {
        r.cpu_weight = HV_BOOST_OTHERS_WEIGHT;
    }
    *ret = r;
}

json_t *hv_resources_throttle_args(const struct hv_resources *r)
{
    /* QEMU wants every field; 0 means unlimited.  Bursts stay QEMU's default. */
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "id", HV_DISK_QDEV, "bps",
                     (json_int_t)(r->disk_bps > 0 ? r->disk_bps : 0), "bps_rd", (json_int_t)0,
                     "bps_wr", (json_int_t)0, "iops",
                     (json_int_t)(r->disk_iops > 0 ? r->disk_iops : 0), "iops_rd", (json_int_t)0,
                     "iops_wr", (json_int_t)0);
}
