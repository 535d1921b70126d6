/* Transport registry and helpers shared by every transport. */
#include <string.h>

#include "ferry/error.h"
#include "ferry/transport.h"

static const struct fy_transport_ops *const transports[] = {
    &fy_transport_tcp,
#ifdef FY_HAVE_DPDK
    &fy_transport_dpdk,
#endif
#ifdef FY_HAVE_XDP
    &fy_transport_xdp,
#endif
};

const char *fy_transport_names(void)
{
    return "tcp"
#ifdef FY_HAVE_DPDK
           ",dpdk"
#endif
#ifdef FY_HAVE_XDP
           ",xdp"
#endif
        ;
}

const struct fy_transport_ops *fy_transport_find(const char *name)
{
    for (size_t i = 0; i < sizeof(transports) / sizeof(transports[0]); i++) {
        const struct fy_transport_ops *t = transports[i];
        if (name && strcmp(t->name, name) == 0) {
            if (t->abi != FY_TRANSPORT_ABI) {
                fy_error(FY_E_VERSION,
                         "transport %s implements contract v%u, this build "
                         "needs v%u",
                         t->name, t->abi, FY_TRANSPORT_ABI);
                return NULL;
            }
            return t;
        }
    }
    fy_error(FY_E_NOTFOUND,
             "no transport named '%s' in this build (it has: %s)",
             name ? name : "(none)", fy_transport_names());
    return NULL;
}

int fy_stream_send_all(struct fy_stream *s, const struct fy_op *ops,
                       unsigned n)
{
    while (n) {
        int k = s->tx_burst(s, ops, n);
        if (k < 0)
            return k;
        ops += k;
        n -= (unsigned)k;
    }
    return 0;
}
