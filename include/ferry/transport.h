/* The transport contract: how the migration engine hands pages to a network
 * and gets them back on the other side.
 *
 * A transport moves *operations*, not bytes: "place this page at this target
 * offset", "these pages are zero", "this page has the content whose hash is
 * H", plus a few control messages.  A byte-stream transport (TCP) serialises
 * them as protocol v1 frames (docs/protocol.md); a packet transport frames
 * them with its own reliability; a one-sided transport (RDMA) may write page
 * data straight into the registered destination memory and deliver only the
 * notification.
 *
 * A session is one migration's connection between a source and a target.
 * It has one or more streams (like QEMU's multifd channels), each an ordered,
 * reliable, bidirectional sequence of operations.  Stream 0 also carries the
 * control conversation.  Operations on different streams are not ordered
 * with respect to each other.
 *
 * Three roles, three places:
 *   - include/ferry/transport.h (this file): what engines call and what
 *     transports implement;
 *   - dataplane/transport.c: the registry (fy_transport_find());
 *   - dataplane/transport/<name>.c: one file per transport.  tcp.c is the
 *     reference implementation to copy.
 *
 * Return convention: every function returns 0 (or a count, where stated) on
 * success and a negative fy_err value on failure, with the detail recorded
 * by fy_error() at the failure site.
 */
#ifndef FERRY_TRANSPORT_H
#define FERRY_TRANSPORT_H

#include <stdint.h>

#include "ferry/classifier.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this contract; a transport built for another is refused. */
#define FY_TRANSPORT_ABI 3

/* ---- operations ------------------------------------------------------ */

enum fy_op_type {
    FY_OP_PAGE = 1,      /* offset, hash, data = FY_PAGE_SIZE bytes */
    FY_OP_ZERO = 2,      /* offset, len = bytes (whole pages) that are zero */
    FY_OP_REF = 3,       /* offset, hash: content the target already holds */
    FY_OP_ROUND_END = 4, /* offset = round; data = struct fy_round_counts */
    FY_OP_ROUND_ACK = 5, /* offset = round; data = struct fy_round_ack */
    FY_OP_MISS = 6,      /* data = uint64_t offsets[len / 8] to send again */
    FY_OP_VERIFY = 7,    /* hash = digest of the whole source region */
    FY_OP_VERIFY_RESULT = 8, /* hash = target's digest, offset = 1 if equal */
    FY_OP_ERROR = 9,     /* offset = fy_err code, data = message (len bytes) */
    FY_OP_DONE = 10,     /* the migration is over; the session may close */
    /* 11 is the PAGES frame of protocol v1, not an operation. */
    FY_OP_DATA = 12,     /* opaque bytes for the application on top of the
                            stream (dataplane/qstream.c): offset = the
                            application's channel tag (any value), len =
                            0..FY_DATA_MAX bytes at data.  The transport
                            carries them unchanged, whole, and in order
                            with the stream's other operations, up to its
                            data_max bytes (struct fy_transport_ops). */
};

/* Most bytes one DATA operation carries. */
#define FY_DATA_MAX FY_PAGE_SIZE

/* Counts one stream sent in one round; the receiver checks them against
 * what it received on that stream, so a lost operation cannot go unseen. */
struct fy_round_counts {
    uint64_t pages;      /* PAGE operations */
    uint64_t zero_pages; /* pages covered by ZERO operations */
    uint64_t ref_pages;  /* REF operations */
    uint64_t ops;        /* all operations before this ROUND_END */
};

struct fy_round_ack {
    uint64_t applied; /* pages placed this round, all streams */
    uint64_t misses;  /* references the target could not resolve; the
                         offsets follow in MISS operations on stream 0 */
};

#define FY_OP_F_FINAL 0x01 /* ROUND_END: this was the final round */
#define FY_OP_F_FIXUP 0x02 /* ROUND_END: answers the misses of this round */
/* Received PAGE only, never on the wire: its data has not been checked
 * against op->hash yet; the receiver must check it (see
 * fy_accept_params.receiver_checks_pages). */
#define FY_OP_F_UNCHECKED 0x80
/* Received PAGE only, never on the wire: the transport already wrote the
 * data at its offset of fy_accept_params.placement, and op->data points
 * there; the receiver need not copy it. */
#define FY_OP_F_PLACED 0x40

struct fy_op {
    uint8_t type;  /* enum fy_op_type */
    uint8_t flags; /* FY_OP_F_* */
    uint16_t reserved;
    uint32_t pad;
    uint64_t offset;
    uint64_t len;
    fy_hash128 hash;
    const void *data;
};

/* ---- sessions and streams -------------------------------------------- */

/* What the source announces in its handshake; the target's session carries
 * the same. */
struct fy_session_info {
    uint8_t session_id[16];
    uint64_t region_size; /* bytes; every offset must stay below this */
    uint32_t page_size;   /* FY_PAGE_SIZE in protocol v1 */
    uint32_t caps;        /* FY_CAP_* the sender uses */
    uint32_t streams;
};

#define FY_CAP_ZERO 0x01  /* ZERO range operations */
#define FY_CAP_REF 0x02   /* REF operations, answered with MISS if unknown */
#define FY_CAP_MULTI 0x04 /* more than one stream */
#define FY_CAPS_V1 (FY_CAP_ZERO | FY_CAP_REF | FY_CAP_MULTI)

struct fy_stream;

/* Sends ops[0..n-1] in order.  Returns how many were accepted (0..n); the
 * caller sends the rest again.  The data of accepted operations may be
 * reused as soon as this returns, unless the stream has tx_mark/tx_wait
 * (zero-copy, below).  Blocks until at least one is accepted or
 * the session's timeout passes (-FY_E_TIMEOUT).  One sending thread per
 * stream at a time; it may be another thread than the one receiving on the
 * stream, and different streams may be used from different threads. */
typedef int (*fy_tx_burst_fn)(struct fy_stream *s, const struct fy_op *ops,
                              unsigned n);

/* Receives up to 'max' operations into ops[].  Waits up to 'timeout_ms'
 * (-1: forever) for the first one.  Returns the count (>= 1), 0 on timeout,
 * -FY_E_CLOSED when the peer closed between operations, and another
 * negative error for a broken stream (truncated or malformed frame: see
 * docs/protocol.md).  The data pointers stay valid until the next call on
 * this stream.  Offsets of PAGE, ZERO and REF are already checked against
 * the session's region size and page alignment, and PAGE data against its
 * hash unless the op carries FY_OP_F_UNCHECKED.  One thread per stream. */
typedef int (*fy_rx_burst_fn)(struct fy_stream *s, struct fy_op *ops,
                              unsigned max, int timeout_ms);

/* Zero-copy sending (optional, both NULL or both set).  A transport that
 * hands PAGE data to the NIC in place (DPDK external buffers) keeps pointing
 * at it after tx_burst returned, until the peer acknowledged it: the caller
 * must not change or free that data before then.  tx_mark returns a mark
 * for everything tx_burst accepted so far; tx_wait blocks until everything
 * before 'mark' is acknowledged and the transport no longer refers to it
 * (0), or fails (-FY_E_TIMEOUT after timeout_ms, -FY_E_CANCELLED, a broken
 * stream).  Both are called from the stream's sending thread.  When NULL,
 * op data may be reused as soon as tx_burst returns (tcp). */
typedef uint64_t (*fy_tx_mark_fn)(struct fy_stream *s);
typedef int (*fy_tx_wait_fn)(struct fy_stream *s, uint64_t mark,
                             int timeout_ms);

struct fy_stream {
    fy_tx_burst_fn tx_burst; /* hot path: plain pointers, no ops lookup */
    fy_rx_burst_fn rx_burst;
    fy_tx_mark_fn tx_mark;   /* NULL unless the transport sends in place */
    fy_tx_wait_fn tx_wait;
    struct fy_session *session;
    unsigned index;
    uint64_t tx_wire_bytes; /* bytes this stream put on the wire */
    uint64_t rx_wire_bytes;
};

struct fy_transport_ops;

struct fy_session {
    const struct fy_transport_ops *ops;
    struct fy_session_info info;
    unsigned nstreams;
    struct fy_stream **streams; /* nstreams entries */
    char peer[64];              /* "ADDR:PORT" of the peer, for messages */
};

/* ---- setting up ------------------------------------------------------- */

struct fy_transport_opts {
    unsigned streams;   /* connect: streams to open; 0: one per online CPU */
    unsigned sockbuf;   /* socket buffer bytes; 0: 4 MiB */
    int timeout_ms;     /* connect/accept/send/receive limit; 0: 30000 */
    const char *bind;   /* connect: local address to send from (the host's
                           network for this traffic), or NULL */
    const char *params; /* transport-specific settings, "key=value" pairs
                           separated by ';' (docs/transports.md), or NULL;
                           tcp takes none */
};

struct fy_accept_params {
    uint64_t region_size;      /* refuse a source announcing another size;
                                  0 accepts any */
    void *placement;           /* destination memory (region_size bytes),
                                  for transports that write pages straight
                                  into it (FY_OP_F_PLACED); may be NULL */
    const uint8_t *session_id; /* 16 bytes: accept only this session; NULL:
                                  any */
    bool receiver_checks_pages; /* the caller checks each received PAGE
                                  against its hash where it places it, so
                                  the transport need not: PAGE ops then
                                  carry FY_OP_F_UNCHECKED (fy_migrate_target
                                  does this check) */
};

struct fy_listener {
    const struct fy_transport_ops *ops;
    char addr[64]; /* the bound "ADDR:PORT" (the real port if 0 was asked) */
};

struct fy_transport_ops {
    unsigned abi;     /* FY_TRANSPORT_ABI */
    const char *name; /* "tcp", "dpdk", ... */
    const char *description;
    /* Most bytes of one DATA operation this transport carries (and
     * delivers as one operation, unchanged); 0: it carries no DATA and
     * tx_burst refuses them.  tcp: FY_DATA_MAX. */
    unsigned data_max;

    /* Starts listening at 'addr' ("HOST:PORT"; port 0 picks one, see
     * listener->addr).  Required. */
    int (*listen)(const char *addr, const struct fy_transport_opts *opts,
                  struct fy_listener **out);

    /* Waits for one source to open a whole session (every stream), checks
     * its handshake against 'params', answers it (an ERROR frame when
     * refused) and returns the session.  Blocks up to the listener's
     * timeout.  Required. */
    int (*accept)(struct fy_listener *l, const struct fy_accept_params *params,
                  struct fy_session **out);

    /* Stops listening and frees the listener.  NULL is allowed. Required. */
    void (*listener_close)(struct fy_listener *l);

    /* Makes a blocked or later accept() on 'l' fail with -FY_E_CANCELLED,
     * so the thread waiting in it can be joined.  Safe from any thread.
     * Optional (NULL: a TCP connection that closes before its handshake
     * ends a tcp accept() the same way). */
    void (*listener_shutdown)(struct fy_listener *l);

    /* Opens a session to 'addr' with opts->streams streams and performs the
     * handshake announcing 'info' (its 'streams' field is filled in).  On
     * failure nothing stays open.  Required. */
    int (*connect)(const char *addr, const struct fy_transport_opts *opts,
                   const struct fy_session_info *info,
                   struct fy_session **out);

    /* Makes every blocked or later tx/rx call on the session fail with
     * -FY_E_CANCELLED, so the threads using it can be joined.  Safe from
     * any thread.  Required. */
    void (*shutdown)(struct fy_session *s);

    /* Closes every stream and frees the session.  No thread may be inside
     * tx/rx.  NULL is allowed.  Required. */
    void (*close)(struct fy_session *s);
};

/* The transport named 'name', or NULL (with the error recorded, listing the
 * transports this build has). */
const struct fy_transport_ops *fy_transport_find(const char *name);

/* Comma-separated names of the transports this build has. */
const char *fy_transport_names(void);

/* Convenience wrappers over s->ops. */
static inline void fy_session_shutdown(struct fy_session *s)
{
    if (s)
        s->ops->shutdown(s);
}

static inline void fy_session_close(struct fy_session *s)
{
    if (s)
        s->ops->close(s);
}

/* Sends all n operations, retrying partial sends.  Returns 0 or an error. */
int fy_stream_send_all(struct fy_stream *s, const struct fy_op *ops,
                       unsigned n);

extern const struct fy_transport_ops fy_transport_tcp;
/* Built with libdpdk only (FY_HAVE_DPDK); fy_transport_find("dpdk"). */
extern const struct fy_transport_ops fy_transport_dpdk;
/* Built with libxdp, libbpf and clang only (FY_HAVE_XDP);
 * fy_transport_find("xdp"). */
extern const struct fy_transport_ops fy_transport_xdp;

#ifdef __cplusplus
}
#endif

#endif /* FERRY_TRANSPORT_H */
