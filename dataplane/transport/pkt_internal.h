/* Packet transport core: what pkt.c (ports, sessions, handshake),
 * pkt_stream.c (reliable streams) and pkt_frame.c (frame layout) share.
 * Private to dataplane/transport/pkt*.c; backends use pkt.h only.
 *
 * Locks, in the only order they are ever nested:
 *   1. the process-wide port table lock (port_get/port_put only);
 *   2. port->lock: the port's sessions, listeners, pending handshakes,
 *      and changes of the tag table and of the per-queue stream lists;
 *   3. queue locks (pkt_queue.lock), several only in index order: every
 *      backend call for the queue, and reading the tag table and the
 *      queue's stream list (both change only with every queue lock held);
 *   4. a stream's lock (pkt_stream.lock): its acknowledgement and
 *      receive-window state, touched by whichever thread pumps a queue
 *      where the stream's frames arrive;
 *   5. port->ctl_lock (leaf): the ring of handshake frames.
 * A thread pumping a queue holds exactly one queue lock and takes stream
 * locks one at a time. */
#ifndef FERRY_TRANSPORT_PKT_INTERNAL_H
#define FERRY_TRANSPORT_PKT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "dataplane/protocol.h"
#include "dataplane/transport/pkt.h"
#include "ferry/classifier.h"

/* ---- frame layout (docs/protocol.md, "Packet transports") ------------- */

#define PKT_ETH_LEN 14u
#define PKT_IP_LEN 20u
#define PKT_UDP_LEN 8u
#define PKT_FPH_LEN 40u /* the Ferry packet header */
#define PKT_L2L4_LEN (PKT_ETH_LEN + PKT_IP_LEN + PKT_UDP_LEN)
#define PKT_HDRS_LEN (PKT_L2L4_LEN + PKT_FPH_LEN)
#define PKT_DESC_LEN 32u /* page or DATA fragment descriptor */
#define PKT_HELLO_TRAILER 8u
#define PKT_HELLO_PAYLOAD (FY_FRAME_HDR_SIZE + FY_HELLO_PAYLOAD_SIZE + PKT_HELLO_TRAILER)
#define PKT_MAGIC0 0x46u /* 'F' */
#define PKT_MAGIC1 0x59u /* 'Y' */
#define PKT_VERSION 1u
#define PKT_MTU_MIN 576u
/* An ACK frame's payload: the selective acknowledgement continued past
 * the header's 64 frames, up to the window's largest (16384 frames). */
#define PKT_SACK_EXT_MAX 2048u
#define PKT_FRAME_MAX 9216u /* largest frame the core builds */

enum pkt_type {
    PT_HELLO = 1,     /* tag 0; payload: v1 HELLO frame + trailer */
    PT_HELLO_ACK = 2, /* payload: v1 HELLO_ACK frame + trailer */
    PT_REFUSE = 3,    /* payload: v1 ERROR frame */
    PT_OPS = 4,       /* seq; payload: one or more v1 frames */
    PT_PAGE = 5,      /* seq; payload: descriptor + page fragment */
    PT_ACK = 6,       /* no payload */
    PT_FIN = 7,       /* seq = the sender's next sequence number */
    PT_DATA = 8,      /* seq; payload: descriptor + DATA fragment (a DATA
                         operation too large for an OPS frame) */
};

#define PKT_F_PROBE 0x0001u /* answer with an ACK at once */

/* A received frame's fields, once pkt_parse() checked them. */
struct pkt_hdr {
    uint8_t src_mac[6];
    uint32_t src_ip, dst_ip; /* network order */
    uint16_t dport;
    uint8_t type;
    uint16_t flags;
    uint32_t tag, src_tag;
    uint16_t stream;
    uint32_t seq, ack;
    uint16_t window;
    uint64_t sack;
    uint16_t poff, plen; /* payload offset in the frame and length */
};

/* A page or DATA fragment's descriptor.  PAGE: offset = the page's,
 * hash = hash(page), total = 0 (reserved).  DATA: offset = the tag, hash =
 * XXH3-128 of all the operation's bytes, total = their count. */
struct pkt_desc {
    uint64_t offset;
    fy_hash128 hash;
    uint16_t frag_off, frag_len;
    uint32_t total;
};

/* The Ethernet, IPv4 and UDP headers a session sends with, prepared once:
 * each frame copies them and sets its lengths and IPv4 checksum. */
struct pkt_tmpl {
    uint8_t bytes[PKT_L2L4_LEN];
    uint32_t sum; /* ones' complement sum of the IPv4 header, length 0 */
};

/* Fields of a Ferry header to write. */
struct pkt_fph {
    uint8_t type;
    uint16_t flags;
    uint32_t tag, src_tag;
    uint16_t stream;
    uint32_t seq, ack;
    uint16_t window;
    uint64_t sack;
    uint16_t plen;
};

void pkt_tmpl_init(struct pkt_tmpl *t, const uint8_t src_mac[6],
                   const uint8_t dst_mac[6], uint32_t src_ip,
                   uint32_t dst_ip, uint16_t udp_port);
/* Writes the headers (template + Ferry header) at frame[0..PKT_HDRS_LEN)
 * for a payload of f->plen bytes, whose first 'covered' bytes (the page
 * descriptor) must already be in place: the header checksum covers them. */
void pkt_write_hdrs(uint8_t *frame, const struct pkt_tmpl *t,
                    const struct pkt_fph *f, unsigned covered);
/* Checks everything a frame's headers say (docs/protocol.md) and fills h.
 * Returns 0, or -1 for a malformed frame (nothing recorded: the caller
 * counts it). */
int pkt_parse(const uint8_t *frame, unsigned len, struct pkt_hdr *h);
void pkt_put_desc(uint8_t *p, const struct pkt_desc *d);
void pkt_get_desc(const uint8_t *p, struct pkt_desc *d);
void pkt_put_trailer(uint8_t *p, uint16_t mtu, uint16_t window);
void pkt_get_trailer(const uint8_t *p, uint16_t *mtu, uint16_t *window);
uint16_t pkt_le16(const uint8_t *p);

/* ---- time and waiting ---------------------------------------------------- */

static inline uint64_t pkt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#define PKT_MS ((uint64_t)1000000)
#define PKT_US ((uint64_t)1000)

/* Idle back-off of a waiting thread: poll for BACKOFF_SPIN_NS (yielding
 * the CPU between polls), then sleep BACKOFF_SLEEP0_NS, doubling up to
 * BACKOFF_SLEEP_MAX_NS, until progress resets it. */
#define BACKOFF_SPIN_NS (50 * PKT_US)
#define BACKOFF_SLEEP0_NS (10 * PKT_US)
#define BACKOFF_SLEEP_MAX_NS (1 * PKT_MS)

struct pkt_backoff {
    uint64_t start;
    uint64_t sleep;
};

void pkt_backoff_wait(struct pkt_backoff *b);
static inline void pkt_backoff_reset(struct pkt_backoff *b)
{
    b->start = 0;
    b->sleep = 0;
}

/* ---- ports --------------------------------------------------------------- */

struct pkt_stream;
struct pkt_sess;
struct pkt_listener;

struct pkt_queue {
    pthread_mutex_t lock;
    struct pkt_stream **streams; /* streams sending on this queue */
    unsigned nstreams, cap;
    uint64_t last_pump;          /* ns, atomic */
    uint64_t next_sweep;         /* ns; under lock */
} __attribute__((aligned(64)));

#define PKT_TAG_BUCKETS 256u
#define PKT_CTL_MAX 64u

struct pkt_port {
    struct pkt_port *next; /* the process-wide table */
    unsigned refs;
    char *key;
    const struct fy_pktio_ops *base_ops; /* what the table is keyed by */
    const struct fy_pktio_ops *ops;      /* base_ops or the lossy wrapper */
    struct fy_pktio *io;
    struct fy_pktio_info info;
    uint32_t ip;  /* network order */
    unsigned nq;
    struct pkt_queue *q;

    pthread_mutex_t lock;
    struct pkt_sess *tags[PKT_TAG_BUCKETS]; /* sessions by tag */
    struct pkt_sess *sessions;              /* all, by next */
    struct pkt_listener *listeners;

    pthread_mutex_t ctl_lock;
    struct fy_pkt *ctl[PKT_CTL_MAX]; /* HELLO frames for the listeners */
    unsigned nctl;

    uint64_t drop_malformed, drop_unknown, drop_range; /* atomic */

    unsigned users;       /* sessions (atomic): the service thread's pace;
                             a listener's accept() pumps for itself */
    pthread_t svc;
    int svc_stop; /* atomic */
    bool svc_started;
};

/* ---- streams and sessions ------------------------------------------------ */

struct pkt_txslot {
    struct fy_pkt *pkt;
    uint64_t sent;  /* ns of the last transmission, 0: not yet sent */
    uint16_t xmits;
    bool sacked;
    bool lost;      /* found lost: send again at the next sweep */
};

struct pkt_rxslot {
    struct fy_pkt *pkt; /* NULL: not received (or already freed) */
    uint16_t poff, plen;
    uint8_t type;
    bool ref;           /* an operation handed out points into it */
};

#define PKT_RX_MAX_OPS 256u

struct pkt_stream {
    struct fy_stream pub;
    struct pkt_sess *s;
    unsigned q;      /* the queue this stream sends on */
    uint32_t W, mask; /* ring size (the window) */
    pthread_mutex_t lock;

    /* Sending.  Slots [snd_freed, snd_nxt) hold packets; [snd_una,
     * snd_txq) were sent and are not yet acknowledged as a prefix. */
    struct pkt_txslot *tx;
    uint64_t snd_freed, snd_una, snd_txq, snd_nxt;
    uint64_t peer_edge;   /* sequence numbers below it may be sent */
    /* RACK (RFC 8985): the latest-sent frame (by send time, then
     * sequence) the peer acknowledged, and its round trip. */
    uint64_t rack_sent, rack_seq, rack_rtt;
    uint64_t srtt, rttvar, rto; /* ns; srtt 0: no sample yet */
    uint64_t last_progress; /* ns: snd_una last moved, or sending began */
    uint64_t last_wprobe;
    uint64_t last_tx;     /* ns of the last data frame sent (or again) */
    bool tlp_armed;       /* a tail loss probe may be sent */
    bool retx_pending;    /* some slot is marked lost */
    bool wblocked;        /* a send waits for the peer's window */

    /* Receiving.  Slots [rcv_rel, rcv_nxt + window) are ours; everything
     * below rcv_nxt arrived; [rcv_rel, rcv_del) was handed out. */
    struct pkt_rxslot *rx;
    uint64_t rcv_rel, rcv_del, rcv_nxt;
    uint64_t rcv_max;     /* one past the highest frame received */
    uint64_t fin_seq;     /* UINT64_MAX: the peer has not closed */
    unsigned unacked;     /* data frames since the last acknowledgement */
    uint64_t ack_due;     /* ns */
    bool ack_now;
    uint64_t edge_sent;   /* rcv_rel + W in the last acknowledgement */

    /* Delivery state: the receiving thread's only. */
    uint16_t del_off;     /* next v1 frame in the PT_OPS frame at rcv_del */
    bool pg_active;       /* a page or DATA is being assembled */
    bool pg_placed;
    uint8_t pg_type;      /* PT_PAGE or PT_DATA */
    uint64_t pg_off;      /* PAGE: its offset; DATA: its tag */
    fy_hash128 pg_hash;
    uint16_t pg_have;
    uint16_t pg_len;      /* bytes the operation has: FY_PAGE_SIZE, or the
                             DATA's total */
    uint8_t *pg_dst;
    uint8_t *pg_bufs;     /* PKT_RX_MAX_OPS + 1 pages, for pages without
                             placement and DATA in fragments: each
                             operation a call returns takes at most one,
                             one more may be half assembled */
    unsigned pg_slot;
    int err;              /* a broken stream: every later call fails */
    char errmsg[256];
    union fy_proto_scratch scratch[PKT_RX_MAX_OPS];

    /* Handshake (connecting side), under lock. */
    bool hello_acked;
    int refused;          /* negative fy_err: the listener's refusal */
    char refused_msg[FY_ERROR_MSG_MAX + 64];
    uint64_t hello_next;  /* ns of the next HELLO */
    uint64_t hello_ivl;

    struct fy_pkt_stats st; /* counters (relaxed atomics) */
};

enum pkt_sess_state { PS_CONNECTING, PS_ESTABLISHED };

struct pkt_sess {
    struct fy_session pub;
    struct pkt_port *port;
    struct pkt_sess *tag_next, *next;
    uint32_t tag, peer_tag;
    uint32_t peer_ip;
    uint16_t udp_port;
    uint8_t peer_mac[6];
    int state;
    bool source;             /* the connecting side */
    uint64_t timeout;        /* ns */
    uint32_t window;         /* our receive ring per stream */
    uint64_t rto0;           /* ns */
    uint16_t mtu;            /* what both sides take */
    uint16_t frag_max;       /* page bytes per PT_PAGE frame */
    uint16_t ops_max;        /* payload bytes per PT_OPS frame */
    struct pkt_tmpl tmpl;
    struct fy_proto_limits lim;
    uint8_t *placement;
    bool zero_copy;
    int cancelled;           /* atomic */
    int err;                 /* atomic: negative fy_err, session broken */
    char errmsg[256];
    uint64_t last_heard;     /* ns, atomic */
    uint64_t last_probe;
    unsigned fins;           /* streams the peer closed (atomic) */
    struct pkt_stream *st;
    struct fy_stream **ptrs;
};

/* ---- pkt.c --------------------------------------------------------------- */

void pkt_ip_str(uint32_t ip, char *buf, size_t len);
/* "A.B.C.D:PORT" into a network-order address and a host-order port. */
int pkt_parse_addr(const char *addr, uint32_t *ip, uint16_t *port);
/* The session settings of opts->params (docs/protocol.md 9.7). */
int pkt_read_settings(const struct fy_transport_opts *o, uint64_t *timeout,
                      uint32_t *window, uint64_t *rto0);
/* Every queue lock of the port, in index order, and back. */
void pkt_lock_queues(struct pkt_port *p);
void pkt_unlock_queues(struct pkt_port *p);
/* The open port of (ops, params), opened if need be; the caller holds a
 * reference until pkt_port_put().  pkt_port_ref() takes another. */
int pkt_port_get(const struct fy_pktio_ops *ops, const char *params,
                 bool listener, struct pkt_port **out);
void pkt_port_ref(struct pkt_port *p);
void pkt_port_put(struct pkt_port *p);
void pkt_port_stats(const struct pkt_port *p, struct fy_pkt_stats *out);
/* A session object for n streams on p, not yet published. */
int pkt_sess_new(struct pkt_port *p, const struct fy_transport_ops *tops,
                 unsigned n, uint64_t timeout, uint32_t window, uint64_t rto0,
                 struct pkt_sess **out);
void pkt_sess_free(struct pkt_sess *s);
/* Publishes a session (a fresh tag, the tag table, the queues' stream
 * lists; caller holds port->lock), and takes it out again. */
int pkt_sess_publish_locked(struct pkt_port *p, struct pkt_sess *s);
void pkt_sess_unpublish(struct pkt_sess *s);
/* Frame sizes from s->mtu; s->pub.peer from the peer's address. */
void pkt_sess_set_mtu(struct pkt_sess *s);
void pkt_sess_peer_name(struct pkt_sess *s);

/* The session whose tag is 'tag' (caller holds a queue lock or port->lock). */
struct pkt_sess *pkt_sess_lookup(struct pkt_port *p, uint32_t tag);
/* Moves a HELLO frame to the control ring (caller holds its queue lock);
 * false when the ring is full (the caller frees it). */
bool pkt_ctl_push(struct pkt_port *p, struct fy_pkt *pkt);
/* Handles queued HELLO frames (pkt_session.c); without 'wait' only if
 * port->lock is free. */
void pkt_ctl_run(struct pkt_port *p, bool wait);
/* Records a session-wide failure (first wins) with the detail given. */
void pkt_sess_fail(struct pkt_sess *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Frees n packets, each under the lock of its queue. */
void pkt_free_any(struct pkt_port *p, struct fy_pkt **pkts, unsigned n);

/* ---- pkt_stream.c ------------------------------------------------------- */

/* Receives and handles frames of queue q, then does the timed work of the
 * streams sending on q (retransmissions, acknowledgements, frees).  The
 * caller holds q's lock.  Returns the frames received. */
unsigned pkt_pump_locked(struct pkt_port *p, unsigned q, uint64_t now);
/* What a waiting thread does between checks: pumps 'q' (if no other
 * thread is), other queues nobody pumped lately, and handshake frames. */
unsigned pkt_poll(struct pkt_port *p, unsigned q);
/* Sets up a stream's rings and sequence state (the session's window and
 * rto0 set).  -FY_E_NOMEM. */
int pkt_stream_init(struct pkt_sess *s, struct pkt_stream *st, unsigned index);
/* Frees every packet a stream holds (session already out of the tables). */
void pkt_stream_fini(struct pkt_sess *s, struct pkt_stream *st);
/* Shared by pkt_stream.c and pkt_ops.c. */
bool pkt_sess_cancelled(const struct pkt_sess *s);
/* The error a call on a shut down or failed session or stream returns
 * (recorded), or 0. */
int pkt_sess_error(struct pkt_stream *st);
/* Breaks the stream: this and every later call returns the error. */
int pkt_stream_fail(struct pkt_stream *st, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The acknowledgement fields a frame leaving now carries (stream lock
 * held), and noting that they left (for fields computed when rcv_nxt and
 * the window's edge were nxt and edge). */
void pkt_ack_peek(struct pkt_stream *st, struct pkt_fph *f);
void pkt_ack_commit(struct pkt_stream *st, uint64_t nxt, uint64_t edge);
/* A Ferry header of 'type' from this stream to the peer, fields zero. */
void pkt_fph_base(struct pkt_stream *st, struct pkt_fph *f, uint8_t type);
/* Hands built frames not yet sent to the backend (queue lock held). */
void pkt_flush(struct pkt_port *p, struct pkt_stream *st, uint64_t now);

/* ---- pkt_ops.c ------------------------------------------------------------ */

int pkt_tx_burst(struct fy_stream *fs, const struct fy_op *ops, unsigned n);
int pkt_rx_burst(struct fy_stream *fs, struct fy_op *ops, unsigned max,
                 int timeout_ms);
/* Gives the stream tx_mark/tx_wait (the port sends pages in place). */
void pkt_stream_enable_zero_copy(struct pkt_stream *st);
/* Sends a FIN (best effort). */
void pkt_stream_send_fin(struct pkt_stream *st);
/* True once everything sent on the stream is acknowledged. */
bool pkt_stream_drained(struct pkt_stream *st);
/* Sends a frame built from the session template on queue q (caller holds
 * q's lock); the frame is freed after transmission.  'payload' of 'plen'
 * bytes is copied in.  Returns 0 or a negative error (no buffer, ring
 * full). */
int pkt_send_ctl(struct pkt_port *p, unsigned q, const struct pkt_tmpl *t,
                 const struct pkt_fph *f, const void *payload);

static inline void pkt_stat_add(uint64_t *c, uint64_t v)
{
    __atomic_fetch_add(c, v, __ATOMIC_RELAXED);
}

static inline uint64_t pkt_unwrap(uint32_t w, uint64_t ref)
{
    return (uint64_t)((int64_t)ref + (int32_t)(w - (uint32_t)ref));
}

#endif /* FERRY_TRANSPORT_PKT_INTERNAL_H */
