/* Packet transports: Ferry's reliable delivery over Ethernet/IPv4/UDP
 * frames, shared by every kernel-bypass backend.
 *
 * Three roles, three places:
 *   - dataplane/transport/pkt.h (this file): what a packet backend (a NIC
 *     access method) implements, and the core's entry points;
 *   - dataplane/transport/pkt*.c: the core, which turns a backend into a
 *     struct fy_transport_ops: shared ports, the service thread, session
 *     objects (pkt.c); listeners, the handshake, connect, close
 *     (pkt_session.c); per-stream sequence numbers, cumulative + selective
 *     acknowledgements, retransmission on timeout and on SACK holes, the
 *     flow-control window, idle back-off (pkt_stream.c); framing of
 *     operations (4 KiB pages split to the MTU, whole in a jumbo frame,
 *     sent in place when the backend can; DATA of up to FY_DATA_MAX bytes
 *     whole, in fragments like a page below MTU 4188) and their delivery
 *     into place (pkt_ops.c); the frame layout, its checks and the settings parser
 *     (pkt_frame.c); private declarations in pkt_internal.h.  The wire
 *     format is docs/protocol.md section 9, "Packet transports";
 *   - dataplane/transport/<backend>.c: dpdk.c (any DPDK PMD: net_memif,
 *     net_af_xdp, net_af_packet, vfio-pci NICs), xdp.c (AF_XDP sockets with
 *     Ferry's own XDP program), and pkt_lossy.c, a wrapper that drops,
 *     reorders and duplicates a set share of frames (the lossy-link
 *     harness).  tests/dataplane/pkt_mem.c is a test backend: two ends of
 *     an in-process link made of rings.
 *
 * A backend moves whole Ethernet frames on numbered queues; it knows
 * nothing of sessions or reliability.  The core never blocks inside a
 * backend call: every backend operation returns at once.
 *
 * Threads and locking: the core keeps one lock per queue.  Every backend
 * call for queue q -- alloc, tx and rx on q, and free of packets whose
 * 'queue' is q -- is made holding that lock, so a backend needs no locking
 * of its own per queue; calls for different queues run concurrently in
 * different threads.  open, close and info are not called concurrently
 * with anything else on the port; add_port may be (another session is
 * using the port).
 *
 * Packet budget: per stream the core holds at most 'window' received
 * frames (until the engine consumed them) and 'window' sent frames (until
 * acknowledged), window=N in the settings, default 512.  A backend's pool
 * should hold 2 x window x streams frames plus its rings.
 *
 * Return convention: as in include/ferry/transport.h (0 or a count on
 * success, a negative fy_err with the detail recorded by fy_error()).
 */
#ifndef FERRY_TRANSPORT_PKT_H
#define FERRY_TRANSPORT_PKT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/transport.h"

/* One frame buffer.  The backend owns the memory (a DPDK mbuf, an AF_XDP
 * UMEM frame) and embeds this header in or beside it; the core reads and
 * writes data[0..len) and never frees it itself. */
struct fy_pkt {
    uint8_t *data;   /* first byte of the Ethernet header */
    uint16_t len;    /* frame bytes (without FCS); with ext, the bytes in
                        data only */
    uint16_t room;   /* bytes data can hold (tx buffers) */
    uint16_t queue;  /* rx: the queue it arrived on (set by the backend);
                        tx: the queue it was allocated for (set by the
                        core after alloc) */
    uint16_t pad;
    /* Zero-copy transmit (optional, backends with info.extbuf): when
     * ext != NULL the frame is data[0..len) followed by ext[0..ext_len),
     * memory the backend sends in place (an external buffer) and does not
     * own; the core keeps it valid until the packet's last reference is
     * dropped (see fy_pktio_ops.free and .busy).  The core sets ext to NULL
     * on packets it allocates before using them, and backends leave it
     * NULL on received packets. */
    const void *ext;
    uint16_t ext_len;
};

struct fy_pktio; /* a backend's open port: private to the backend */

struct fy_pktio_info {
    uint16_t mtu;        /* largest IPv4 packet a frame carries (1500, 9000..) */
    unsigned queues;     /* rx/tx queue pairs the core may use (>= 1) */
    uint8_t mac[6];      /* this port's Ethernet address */
    uint32_t ipv4;       /* this port's address (network order), 0: unknown,
                            the core then needs one from params ("ip=") */
    bool extbuf;         /* fy_pkt.ext is supported (zero-copy transmit) */
    char mode[96];       /* what the user is told: "net_memif, 2 queues,
                            --no-huge", "AF_XDP copy mode (veth)", ... */
};

struct fy_pktio_ops {
    const char *name; /* "dpdk", "xdp", "lossy" */

    /* Opens the port described by 'params' (the transport's ';'-separated
     * key=value settings, docs/transports.md) with at least 'queues' queue
     * pairs if the device allows (fewer is fine: info says how many).
     * 'listener' is true for the accepting side (memif: the server); the
     * port is shared by everything of the process that names the same
     * params, so the first user decides.  Keys the backend does not know
     * must be ignored: the core reads ip=, window=, rto_ms=, lossy= and
     * queues= itself.  Required.  On failure nothing stays open. */
    int (*open)(const char *params, unsigned queues, bool listener,
                struct fy_pktio **out);

    /* Makes the port deliver Ferry's frames to UDP port 'udp_port' (both
     * directions use the same port number: a listener's port, and for a
     * connecting side the port it connects to).  Backends that see every
     * frame anyway (DPDK) leave it NULL; xdp adds the port to its XDP
     * program's map, so everything else still reaches the kernel.  Called
     * once per listener and per connect (the same number may come again);
     * may run while queues are in use. */
    int (*add_port)(struct fy_pktio *io, uint16_t udp_port);

    /* Stops the port and frees it; every packet the core still holds has
     * been freed first.  NULL allowed.  Required. */
    void (*close)(struct fy_pktio *io);

    /* Fills 'out'.  Required. */
    void (*info)(struct fy_pktio *io, struct fy_pktio_info *out);

    /* Allocates up to n transmit buffers for 'queue' (len 0, room >= mtu +
     * 14).  Returns how many (0 when none are free right now). Required. */
    int (*alloc)(struct fy_pktio *io, unsigned queue, struct fy_pkt **pkts,
                 unsigned n);

    /* Queues pkts[0..n) for transmission on 'queue' and returns how many it
     * took (the caller still holds the rest).  The core keeps its own
     * reference to every packet it sent, for retransmission: the backend
     * takes an extra reference for the NIC and drops it when the NIC is
     * done, so a packet may be sent again (even while a previous send of it
     * is in flight) until the core frees it.  The core never changes a
     * packet after its first tx.  Required. */
    int (*tx)(struct fy_pktio *io, unsigned queue, struct fy_pkt **pkts,
              unsigned n);

    /* Receives up to 'max' frames from 'queue'.  Returns the count (0 when
     * none); each returned packet holds one reference, the core's, and has
     * 'queue' set.  Required. */
    int (*rx)(struct fy_pktio *io, unsigned queue, struct fy_pkt **pkts,
              unsigned max);

    /* Drops the core's reference to each of pkts[0..n) (rx or tx, all of
     * the same queue, sent or never sent); the buffer returns to the
     * backend when no reference is left.  Required. */
    void (*free)(struct fy_pktio *io, struct fy_pkt **pkts, unsigned n);

    /* Optional, for backends with info.extbuf whose NIC reads the ext
     * memory after tx() returned (DMA): true while a transmit of 'pkt' has
     * not completed.  The core then frees a zero-copy packet, and lets the
     * caller reuse its data (tx_wait), only once this is false.  NULL: tx()
     * is done with the bytes when it returns (memif, copy modes).  Called
     * under the lock of pkt->queue. */
    bool (*busy)(struct fy_pktio *io, struct fy_pkt *pkt);
};

/* ---- the core ------------------------------------------------------------
 * A backend file defines its fy_transport_ops with thin wrappers:
 *
 *   static int dpdk_listen(const char *addr, const struct fy_transport_opts *o,
 *                          struct fy_listener **out)
 *   { return fy_pkt_listen(&dpdk_pktio, &fy_transport_dpdk, addr, o, out); }
 *   static int dpdk_connect(const char *addr,
 *                           const struct fy_transport_opts *o,
 *                           const struct fy_session_info *info,
 *                           struct fy_session **out)
 *   { return fy_pkt_connect(&dpdk_pktio, &fy_transport_dpdk, addr, o, info,
 *                           out); }
 *   const struct fy_transport_ops fy_transport_dpdk = {
 *       .abi = FY_TRANSPORT_ABI, .name = "dpdk", ...,
 *       .listen = dpdk_listen, .accept = fy_pkt_accept,
 *       .listener_close = fy_pkt_listener_close, .connect = dpdk_connect,
 *       .shutdown = fy_pkt_shutdown, .close = fy_pkt_close,
 *   };
 *
 * 'tops' is the transport table the listener and sessions point back at
 * (fy_listener.ops, fy_session.ops).
 *
 * Addresses are "IPV4:UDPPORT": the listener's own address on the port
 * (its UDP port is where sessions are accepted; 0 picks a free one; the
 * address may be 0.0.0.0 or the port's own), the address connect() sends
 * to.  Both sides send from and to that same UDP port, so a filter on one
 * port number catches a session's traffic both ways; streams and sessions
 * are told apart by the Ferry header, not by ports.  One open port per
 * (backend, params without window= and rto_ms=) is shared by every
 * listener and session of the process (reference-counted).
 *
 * opts->params is handed to the backend's open() and may also hold core
 * settings:
 *   ip=A.B.C.D     this side's address when the port has none;
 *   window=N       frames in flight per stream and direction (16..16384,
 *                  default 512);
 *   rto_ms=N       initial retransmission timeout (default 20; the
 *                  estimate from measured round trips takes over, never
 *                  below 5 ms);
 *   queues=N       queue pairs asked of the backend (default: the online
 *                  CPUs, at most 8);
 *   lossy=drop:P,reorder:P,dup:P[,seed:N]
 *                  wraps the backend in the lossy harness (pkt_lossy.c).
 * opts->bind is not used (the port's address is the source address).
 *
 * opts->timeout_ms (default 30000) bounds connect and accept, a send
 * waiting for the peer's window, and the silence of a peer: a session that
 * hears nothing from its peer for that long (it probes an idle peer every
 * quarter of it) fails its calls with -FY_E_TIMEOUT. */
int fy_pkt_listen(const struct fy_pktio_ops *io,
                  const struct fy_transport_ops *tops, const char *addr,
                  const struct fy_transport_opts *opts,
                  struct fy_listener **out);
int fy_pkt_connect(const struct fy_pktio_ops *io,
                   const struct fy_transport_ops *tops, const char *addr,
                   const struct fy_transport_opts *opts,
                   const struct fy_session_info *info,
                   struct fy_session **out);
int fy_pkt_accept(struct fy_listener *l, const struct fy_accept_params *params,
                  struct fy_session **out);
void fy_pkt_listener_close(struct fy_listener *l);
void fy_pkt_listener_shutdown(struct fy_listener *l);
void fy_pkt_shutdown(struct fy_session *s);
void fy_pkt_close(struct fy_session *s);

/* ---- counters, for tests and diagnostics ---------------------------------
 * Frames are counted whole (Ethernet header to the end of the payload). */
struct fy_pkt_stats {
    uint64_t tx_frames;       /* every frame sent, retransmissions included */
    uint64_t rx_frames;       /* frames accepted for a session */
    uint64_t retransmits;     /* data frames sent again */
    uint64_t fast_retransmits; /* of those, sent again because later frames
                                 were acknowledged (SACK) before the timer */
    uint64_t timeouts;        /* retransmission timer expiries */
    uint64_t dup_frames;      /* data frames received twice (dropped) */
    uint64_t acks_sent;       /* frames sent only to acknowledge */
    uint64_t window_stalls;   /* sends that waited for the peer's window */
    /* Port-wide (every session of the port): frames dropped on receipt. */
    uint64_t drop_malformed;  /* bad Ethernet/IPv4/UDP/Ferry header, bad
                                 lengths, bad checksum, bad payload */
    uint64_t drop_unknown;    /* well formed, but for no session, stream
                                 or listener here, or from the wrong peer */
    uint64_t drop_range;      /* page or operation outside the region */
};

/* Fills 'out' with the session's counters summed over its streams, plus
 * its port's drop counters. */
void fy_pkt_session_stats(const struct fy_session *s, struct fy_pkt_stats *out);

/* How the session's port runs, as its backend describes it (info.mode:
 * "net_memif, 2 queues, --no-huge", "AF_XDP copy mode (veth)", with the
 * lossy harness's settings appended when it is on).  Valid while the
 * session is open. */
const char *fy_pkt_session_mode(const struct fy_session *s);

/* The port's drop counters (and nothing else) for a listener. */
void fy_pkt_listener_stats(const struct fy_listener *l,
                           struct fy_pkt_stats *out);

/* ---- the lossy harness ------------------------------------------------- */

/* Wraps 'inner' so that frames it transmits are dropped, reordered (held
 * back behind later ones) or duplicated with the given probabilities
 * (0..1), seeded for repeatable tests.  pkt_lossy.c. */
struct fy_pkt_lossy_cfg {
    double drop, reorder, dup;
    uint64_t seed;
};

/* Parses "drop:P,reorder:P,dup:P[,seed:N]" (any subset, any order). */
int fy_pkt_lossy_parse(const char *spec, struct fy_pkt_lossy_cfg *cfg);

/* Opens the lossy wrapper over an open 'inner' port; closing the wrapper
 * closes 'inner'.  *ops_out is the wrapper's ops table. */
int fy_pkt_lossy_wrap(const struct fy_pktio_ops *inner_ops,
                      struct fy_pktio *inner,
                      const struct fy_pkt_lossy_cfg *cfg,
                      const struct fy_pktio_ops **ops_out,
                      struct fy_pktio **out);

/* ---- settings parsing, shared by the core and the backends -------------- */

/* Copies the value of 'key' in a "k=v;k=v" string into buf (NUL-ended).
 * Spaces around keys and values are ignored.  Returns 1 when found, 0 when
 * absent (or params is NULL), -FY_E_INVAL when it does not fit. */
int fy_params_get(const char *params, const char *key, char *buf,
                  size_t cap);

/* fy_params_get() of an unsigned number within [min, max]; *out keeps its
 * value when the key is absent.  -FY_E_CONFIG naming the key for a value
 * that is not a number in range. */
int fy_params_get_uint(const char *params, const char *key, uint64_t min,
                       uint64_t max, uint64_t *out);

#endif /* FERRY_TRANSPORT_PKT_H */
