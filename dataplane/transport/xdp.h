/* The AF_XDP packet backend (dataplane/transport/xdp.c), for the tests and
 * tools that drive it at frame level.  Engines use fy_transport_xdp
 * (include/ferry/transport.h), which is this backend under the packet core
 * (dataplane/transport/pkt.h). */
#ifndef FERRY_TRANSPORT_XDP_H
#define FERRY_TRANSPORT_XDP_H

#include "dataplane/transport/pkt.h"

/* Settings (';'-separated in fy_transport_opts.params, docs/transports.md):
 *   dev=IFNAME                 the interface (required)
 *   queues=N                   queue pairs to use (default: what the core
 *                              asks, at most the interface's rx queues)
 *   xdp_mode=auto|native|skb   where the XDP program runs: in the driver
 *                              (native) or on the generic skb path; auto
 *                              tries native first
 *   bind=auto|zerocopy|copy    AF_XDP socket mode; auto tries zero-copy
 *                              first (needs native XDP and driver support)
 *   xdp_attach=link|netlink    link (default): a BPF link, detached by the
 *                              kernel when the process ends, even by
 *                              SIGKILL; netlink: the classic attachment
 *                              (kernels without XDP links), detached on
 *                              close and at exit, and by the next open
 *                              after a crash
 * Opening detaches a Ferry program a crashed process left on the
 * interface (once, with a message on stderr); a program of a live Ferry
 * process or any other XDP program makes open fail with FY_E_BUSY. */
extern const struct fy_pktio_ops fy_pktio_xdp;

/* The name the XDP program is loaded under (BPF names hold 15 chars). */
#define FY_XDP_PROG_NAME "fy_xdp_redirect"

/* Counters of the XDP program on an open port: frames it redirected to
 * Ferry's sockets and frames it passed to the kernel, summed over CPUs,
 * plus the sockets' drop counters.  For tests and ferry-perf. */
struct fy_xdp_stats {
    uint64_t redirected;
    uint64_t passed;
    uint64_t rx_dropped;     /* rx ring full or no fill buffer */
    uint64_t tx_kicks;       /* sendto() wake-ups */
    uint64_t tx_stalls;      /* wake-ups that sent nothing: the kernel was
                                full (completion ring, send buffer) */
    uint64_t tx_errors;      /* wake-ups that failed otherwise */
};

int fy_xdp_stats(struct fy_pktio *io, struct fy_xdp_stats *out);

#endif /* FERRY_TRANSPORT_XDP_H */
