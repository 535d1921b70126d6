/* Packet transport core: reliable streams over a packet backend.
 *
 * Each stream numbers its data frames (PT_OPS, PT_PAGE, PT_DATA) from 0 in each
 * direction.  The receiver keeps a ring of 'window' frames: it takes any
 * frame inside the ring (out of order too), delivers them in order, and
 * acknowledges with the next number it expects (cumulative), a bitmap of
 * the 64 frames after it that it already holds (selective), and how many
 * frames it can take beyond the cumulative point (the window).  Every
 * data frame carries these fields for the reverse direction; a receiver
 * that has nothing to send sends an ACK frame after ACK_EVERY frames or
 * ACK_DELAY_NS, whichever comes first, and at once when a frame arrives
 * out of order, twice, or the window opened by a quarter.
 *
 * The sender keeps each frame until it is acknowledged.  Loss is found two
 * ways: a frame is lost when a frame sent more than a reordering window
 * (a quarter of the smoothed round trip) after it was acknowledged (RACK,
 * RFC 8985: fast retransmit on SACK holes), or when its retransmission
 * timer expires (RFC 6298: RTO from the smoothed round trip and its
 * variation, at least RTO_MIN_NS, doubling on each expiry up to
 * RTO_MAX_NS).  Round trips are measured on frames sent once (Karn).  A
 * sender that has sent nothing for two round trips (at least TLP_MIN_NS)
 * while frames are outstanding sends its last frame again once (a tail
 * loss probe, RFC 8985), so the acknowledgement shows what the tail lost
 * without waiting for the timer.
 *
 * Operations travel as protocol v1 frames (dataplane/protocol.c) packed in
 * PT_OPS frames; a page travels as PT_PAGE fragments, each with a
 * descriptor, sized to the MTU (3 at 1500, one whole page at 9000), and so
 * does a DATA operation too large for a PT_OPS frame (PT_DATA).  The
 * receiver copies a page's bytes once, in order, from the frames into the
 * placement (or a per-stream buffer), so a later round's page is never
 * overwritten by an earlier one's retransmission.
 *
 * Threads: whichever thread holds a queue's lock pumps it (receives, hands
 * acknowledgements to the streams they are for, queues data on them) and
 * does the timed work of the streams sending on it (sweep_stream).  The
 * receiving thread of a stream copies its data out without any lock. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/transport/pkt_internal.h"
#include "ferry/error.h"

#define BURST 32u
#define RX_ROUNDS 4u                 /* bursts one pump takes at most */
#define ACK_EVERY_MAX 32u
#define ACK_DELAY_NS (200 * PKT_US)
#define RTO_MIN_NS (5 * PKT_MS)
#define RTO_MAX_NS (250 * PKT_MS)
#define REO_MIN_NS (20 * PKT_US)
#define TLP_MIN_NS (1 * PKT_MS)
#define SWEEP_NS (100 * PKT_US)      /* timed work at least this often */
#define OTHER_QUEUE_NS (100 * PKT_US) /* a waiter pumps a queue nobody
                                         pumped for this long */
#define RETX_MAX 64u                 /* frames one sweep sends again */

static unsigned ack_every(const struct pkt_stream *st)
{
    unsigned a = st->W / 8;
    return a > ACK_EVERY_MAX ? ACK_EVERY_MAX : (a ? a : 1);
}

bool pkt_sess_cancelled(const struct pkt_sess *s)
{
    return __atomic_load_n(&s->cancelled, __ATOMIC_ACQUIRE);
}

/* The error every later call of a failed session returns. */
int pkt_sess_error(struct pkt_stream *st)
{
    struct pkt_sess *s = st->s;

    if (pkt_sess_cancelled(s))
        return fy_error(FY_E_CANCELLED, "stream %u with %s: session shut down",
                        st->pub.index, s->pub.peer);
    int e = __atomic_load_n(&s->err, __ATOMIC_ACQUIRE);
    if (e && e != INT32_MIN) /* INT32_MIN: the message is being written */
        return fy_error(-e, "%s", s->errmsg);
    if (st->err)
        return fy_error(st->err, "%s", st->errmsg);
    return 0;
}

int pkt_stream_fail(struct pkt_stream *st, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(st->errmsg, sizeof(st->errmsg), fmt, ap);
    va_end(ap);
    st->err = code;
    return fy_error(code, "%s", st->errmsg);
}

/* ---- acknowledgement state ---------------------------------------------- */

/* Fills the acknowledgement fields of a frame about to leave (stream lock
 * held) and notes that the peer now knows them. */
static void ack_fields(struct pkt_stream *st, struct pkt_fph *f);

/* Notes that frames carrying fields computed when rcv_nxt was 'nxt' left
 * (stream lock held); arrivals since then still need acknowledging. */
void pkt_ack_commit(struct pkt_stream *st, uint64_t nxt, uint64_t edge)
{
    if (st->rcv_nxt == nxt) {
        st->unacked = 0;
        st->ack_now = false;
    }
    if (edge > st->edge_sent)
        st->edge_sent = edge;
}

void pkt_ack_peek(struct pkt_stream *st, struct pkt_fph *f)
{
    uint64_t sack = 0, edge = st->rcv_rel + st->W;

    for (unsigned i = 0; i < 64; i++) {
        uint64_t seq = st->rcv_nxt + 1 + i;
        if (seq >= edge)
            break;
        if (st->rx[seq & st->mask].pkt)
            sack |= 1ull << i;
    }
    f->ack = (uint32_t)st->rcv_nxt;
    f->sack = sack;
    f->window = (uint16_t)(edge - st->rcv_nxt);
}

/* The selective acknowledgement past the header's 64 frames, for an ACK
 * frame's payload (stream lock held): bit i of little-endian word k is
 * frame rcv_nxt + 65 + 64 k + i.  Returns the bytes written (0: nothing
 * beyond the header's bitmap arrived). */
static unsigned ack_ext(struct pkt_stream *st, uint8_t *buf, unsigned cap)
{
    uint64_t first = st->rcv_nxt + 65, end = st->rcv_max;
    unsigned words;

    if (end <= first)
        return 0;
    words = (unsigned)((end - first + 63) / 64);
    if (words > cap / 8)
        words = cap / 8;
    for (unsigned k = 0; k < words; k++) {
        uint64_t w = 0;
        for (unsigned i = 0; i < 64; i++) {
            uint64_t seq = first + 64 * k + i;
            if (seq >= end)
                break;
            if (st->rx[seq & st->mask].pkt)
                w |= 1ull << i;
        }
        memcpy(buf + 8 * k, &w, 8);
    }
    return words * 8;
}

static void ack_fields(struct pkt_stream *st, struct pkt_fph *f)
{
    pkt_ack_peek(st, f);
    st->unacked = 0;
    st->ack_now = false;
    st->edge_sent = st->rcv_rel + st->W;
}

static void rto_reset(struct pkt_stream *st);

static void rtt_sample(struct pkt_stream *st, uint64_t r)
{
    if (!st->srtt) {
        st->srtt = r;
        st->rttvar = r / 2;
    } else {
        uint64_t d = st->srtt > r ? st->srtt - r : r - st->srtt;
        st->rttvar = (3 * st->rttvar + d) / 4;
        st->srtt = (7 * st->srtt + r) / 8;
    }
    rto_reset(st);
}

/* The timeout from the estimate, without the back-off of expiries. */
static void rto_reset(struct pkt_stream *st)
{
    if (!st->srtt) {
        st->rto = st->s->rto0;
        return;
    }
    st->rto = st->srtt + 4 * st->rttvar;
    if (st->rto < RTO_MIN_NS)
        st->rto = RTO_MIN_NS;
    if (st->rto > RTO_MAX_NS)
        st->rto = RTO_MAX_NS;
}

/* A frame the peer has: the latest sent of those (RACK) moves on. */
static void rack_update(struct pkt_stream *st, uint64_t seq,
                        const struct pkt_txslot *sl, uint64_t now)
{
    /* A frame sent again may be acknowledged for its first copy: its time
     * says nothing of what was sent before it. */
    if (sl->xmits != 1 || !sl->sent)
        return;
    if (sl->sent > st->rack_sent || (sl->sent == st->rack_sent && seq >= st->rack_seq)) {
        st->rack_sent = sl->sent;
        st->rack_seq = seq + 1;
        st->rack_rtt = now > sl->sent ? now - sl->sent : 0;
    }
}

/* The acknowledgement fields of a received frame (stream lock held). */
static void rx_ack(struct pkt_stream *st, const struct pkt_hdr *h,
                   const uint8_t *ext, uint64_t now)
{
    uint64_t ack = pkt_unwrap(h->ack, st->snd_una);

    /* Older than what we know (a late or resent frame), or acknowledging
     * what was never sent: nothing to learn. */
    if (ack < st->snd_una || ack > st->snd_txq)
        return;
    if (ack > st->snd_una) {
        struct pkt_txslot *last = &st->tx[(ack - 1) & st->mask];
        for (uint64_t seq = st->snd_una; seq < ack; seq++) {
            struct pkt_txslot *sl = &st->tx[seq & st->mask];
            rack_update(st, seq, sl, now);
            sl->lost = false;
        }
        if (last->xmits == 1 && last->sent && now > last->sent)
            rtt_sample(st, now - last->sent);
        else
            rto_reset(st); /* progress ends the back-off */
        st->snd_una = ack;
        st->last_progress = now;
        st->tlp_armed = true;
    }
    if (ack + h->window > st->peer_edge)
        st->peer_edge = ack + h->window;
    for (uint64_t bits = h->sack; bits; bits &= bits - 1) {
        uint64_t seq = ack + 1 + (uint64_t)__builtin_ctzll(bits);
        if (seq >= st->snd_txq)
            break;
        struct pkt_txslot *sl = &st->tx[seq & st->mask];
        if (!sl->sacked) {
            sl->sacked = true;
            rack_update(st, seq, sl, now);
        }
    }
    for (unsigned k = 0; ext && k < h->plen / 8u; k++) {
        uint64_t bits;
        memcpy(&bits, ext + 8 * k, 8);
        for (; bits; bits &= bits - 1) {
            uint64_t seq = ack + 65 + 64 * (uint64_t)k + (uint64_t)__builtin_ctzll(bits);
            if (seq >= st->snd_txq)
                break;
            struct pkt_txslot *sl = &st->tx[seq & st->mask];
            if (!sl->sacked) {
                sl->sacked = true;
                rack_update(st, seq, sl, now);
            }
        }
    }
    if (st->rack_seq > st->snd_una)
        st->retx_pending = true; /* the sweep looks for holes */
}

/* RACK loss detection (stream lock held): a frame not acknowledged, sent
 * before the latest-sent one the peer has, and outstanding for longer than
 * that one's round trip plus a reordering window (a quarter of the
 * smoothed round trip), is lost.  Returns true while some frame may still
 * turn out lost later. */
static bool rack_detect(struct pkt_stream *st, uint64_t now)
{
    uint64_t reo = st->srtt / 4 > REO_MIN_NS ? st->srtt / 4 : REO_MIN_NS;
    uint64_t end = st->rack_seq < st->snd_txq ? st->rack_seq : st->snd_txq;
    bool waiting = false;

    for (uint64_t seq = st->snd_una; seq < end; seq++) {
        struct pkt_txslot *sl = &st->tx[seq & st->mask];
        if (sl->sacked || sl->lost)
            continue;
        if (sl->sent > st->rack_sent)
            continue; /* sent again after: not before the latest */
        if (now >= sl->sent + st->rack_rtt + reo)
            sl->lost = true;
        else
            waiting = true;
    }
    return waiting;
}

/* A data frame (stream lock held).  Returns true if the stream keeps it. */
static bool rx_data(struct pkt_stream *st, const struct pkt_hdr *h,
                    struct fy_pkt *pkt, uint64_t now)
{
    uint64_t seq = pkt_unwrap(h->seq, st->rcv_nxt);
    struct pkt_rxslot *sl;

    if (seq < st->rcv_nxt || seq >= st->rcv_rel + st->W) {
        if (seq < st->rcv_nxt) {
            /* Sent again: our acknowledgement was lost or late. */
            pkt_stat_add(&st->st.dup_frames, 1);
            st->ack_now = true;
        }
        return false;
    }
    sl = &st->rx[seq & st->mask];
    if (sl->pkt) {
        pkt_stat_add(&st->st.dup_frames, 1);
        st->ack_now = true;
        return false;
    }
    sl->pkt = pkt;
    sl->poff = h->poff;
    sl->plen = h->plen;
    sl->type = h->type;
    sl->ref = false;
    if (seq >= st->rcv_max)
        st->rcv_max = seq + 1;
    if (seq == st->rcv_nxt) {
        uint64_t edge = st->rcv_rel + st->W;
        do
            st->rcv_nxt++;
        while (st->rcv_nxt < edge && st->rx[st->rcv_nxt & st->mask].pkt);
    } else {
        /* A hole: tell the sender now, so it can send the frame again
         * before its timer expires. */
        st->ack_now = true;
    }
    if (st->unacked++ == 0)
        st->ack_due = now + ACK_DELAY_NS;
    return true;
}

/* ---- frames of one queue ------------------------------------------------- */

/* Checks the operations of a PT_OPS payload against the session's limits:
 * 0, -1 malformed, -2 outside the region. */
static int check_ops(struct pkt_sess *s, const uint8_t *p, unsigned plen)
{
    unsigned off = 0;

    while (off < plen) {
        struct fy_op op;
        union fy_proto_scratch scratch;
        size_t flen = 0;
        int rc = fy_proto_decode(p + off, plen - off, &s->lim, &op, &scratch,
                                 &flen);
        if (rc == -FY_E_RANGE)
            return -2;
        if (rc < 0 || op.type == FY_OP_PAGE || op.type == FY_FRAME_PAGES)
            return -1;
        off += (unsigned)flen;
    }
    return 0;
}

/* The answer to our HELLO on stream st (connecting side). */
static void rx_handshake(struct pkt_sess *s, struct pkt_stream *st,
                         const struct pkt_hdr *h, const uint8_t *payload)
{
    struct fy_session_info info;
    uint32_t idx;
    bool ack;
    size_t flen;
    int rc;

    if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != PS_CONNECTING)
        return; /* a late copy: the session is open */
    rc = fy_proto_decode_hello(payload, h->plen, &info, &idx, &ack, &flen);
    pthread_mutex_lock(&st->lock);
    if (st->hello_acked || st->refused) {
        pthread_mutex_unlock(&st->lock);
        return;
    }
    if (h->type == PT_REFUSE) {
        if (rc == -FY_E_PEER) {
            st->refused = rc;
            snprintf(st->refused_msg, sizeof(st->refused_msg), "%s: %s",
                     s->pub.peer, fy_error_detail());
        }
    } else if (rc == 0 && ack && idx == h->stream && flen + PKT_HELLO_TRAILER == h->plen &&
               memcmp(info.session_id, s->pub.info.session_id, 16) == 0 &&
               info.streams == s->pub.nstreams && h->src_tag != 0) {
        uint16_t mtu, window;
        uint32_t known = __atomic_load_n(&s->peer_tag, __ATOMIC_ACQUIRE);
        pkt_get_trailer(payload + flen, &mtu, &window);
        if ((known == 0 || known == h->src_tag) && mtu >= PKT_MTU_MIN && window >= 16) {
            if (mtu < s->mtu)
                s->mtu = mtu;
            memcpy(s->peer_mac, h->src_mac, 6);
            st->peer_edge = window;
            __atomic_store_n(&s->peer_tag, h->src_tag, __ATOMIC_RELEASE);
            st->hello_acked = true;
        }
    }
    pthread_mutex_unlock(&st->lock);
}

/* One received frame.  Returns true if it was kept (the caller frees the
 * rest). */
static bool handle_frame(struct pkt_port *p, struct fy_pkt *pkt, uint64_t now)
{
    static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    struct pkt_hdr h;
    struct pkt_sess *s;
    struct pkt_stream *st;
    const uint8_t *payload;
    bool kept = false;

    if (pkt_parse(pkt->data, pkt->len, &h) < 0) {
        pkt_stat_add(&p->drop_malformed, 1);
        return false;
    }
    if (h.dst_ip != p->ip || (memcmp(pkt->data, p->info.mac, 6) != 0 &&
                              memcmp(pkt->data, bcast, 6) != 0)) {
        pkt_stat_add(&p->drop_unknown, 1);
        return false;
    }
    if (h.type == PT_HELLO) {
        if (pkt_ctl_push(p, pkt))
            return true;
        pkt_stat_add(&p->drop_unknown, 1);
        return false;
    }
    s = pkt_sess_lookup(p, h.tag);
    if (!s || h.src_ip != s->peer_ip || h.dport != s->udp_port ||
        h.stream >= s->pub.nstreams) {
        pkt_stat_add(&p->drop_unknown, 1);
        return false;
    }
    st = &s->st[h.stream];
    payload = pkt->data + h.poff;
    if (h.type == PT_HELLO_ACK || h.type == PT_REFUSE) {
        if (!s->source) {
            pkt_stat_add(&p->drop_unknown, 1);
            return false;
        }
        rx_handshake(s, st, &h, payload);
        return false;
    }
    if (h.src_tag == 0 || h.src_tag != __atomic_load_n(&s->peer_tag, __ATOMIC_ACQUIRE)) {
        pkt_stat_add(&p->drop_unknown, 1);
        return false;
    }
    if (h.type == PT_PAGE) {
        struct pkt_desc d;
        pkt_get_desc(payload, &d);
        if (d.offset >= s->lim.region_size) {
            pkt_stat_add(&p->drop_range, 1);
            return false;
        }
    } else if (h.type == PT_OPS) {
        int rc = check_ops(s, payload, h.plen);
        if (rc < 0) {
            pkt_stat_add(rc == -2 ? &p->drop_range : &p->drop_malformed, 1);
            return false;
        }
    }
    __atomic_store_n(&s->last_heard, now, __ATOMIC_RELAXED);
    pkt_stat_add(&st->st.rx_frames, 1);
    pkt_stat_add(&st->pub.rx_wire_bytes, pkt->len);
    pthread_mutex_lock(&st->lock);
    rx_ack(st, &h, h.type == PT_ACK && h.plen ? payload : NULL, now);
    switch (h.type) {
    case PT_OPS:
    case PT_PAGE:
    case PT_DATA:
        kept = rx_data(st, &h, pkt, now);
        break;
    case PT_ACK:
        if (h.flags & PKT_F_PROBE)
            st->ack_now = true;
        break;
    case PT_FIN: {
        uint64_t fin = pkt_unwrap(h.seq, st->rcv_nxt);
        if (st->fin_seq == UINT64_MAX && fin >= st->rcv_nxt &&
            fin <= st->rcv_rel + st->W) {
            st->fin_seq = fin;
            __atomic_fetch_add(&s->fins, 1, __ATOMIC_RELAXED);
        }
        break;
    }
    default:
        break;
    }
    pthread_mutex_unlock(&st->lock);
    return kept;
}

/* ---- sending ------------------------------------------------------------ */

int pkt_send_ctl(struct pkt_port *p, unsigned q, const struct pkt_tmpl *t,
                 const struct pkt_fph *f, const void *payload)
{
    struct fy_pkt *pkt;

    if (p->ops->alloc(p->io, q, &pkt, 1) != 1)
        return -FY_E_AGAIN;
    pkt->queue = (uint16_t)q;
    pkt->ext = NULL;
    pkt->ext_len = 0;
    if (f->plen)
        memcpy(pkt->data + PKT_HDRS_LEN, payload, f->plen);
    pkt_write_hdrs(pkt->data, t, f, 0);
    pkt->len = (uint16_t)(PKT_HDRS_LEN + f->plen);
    int k = p->ops->tx(p->io, q, &pkt, 1);
    p->ops->free(p->io, &pkt, 1);
    return k == 1 ? 0 : -FY_E_AGAIN;
}

void pkt_fph_base(struct pkt_stream *st, struct pkt_fph *f, uint8_t type)
{
    memset(f, 0, sizeof(*f));
    f->type = type;
    f->tag = __atomic_load_n(&st->s->peer_tag, __ATOMIC_ACQUIRE);
    f->src_tag = st->s->tag;
    f->stream = (uint16_t)st->pub.index;
}

/* Hands the built frames [snd_txq, snd_nxt) to the backend (queue lock
 * held). */
void pkt_flush(struct pkt_port *p, struct pkt_stream *st, uint64_t now)
{
    while (st->snd_txq < st->snd_nxt) {
        struct fy_pkt *v[64];
        unsigned n = st->snd_nxt - st->snd_txq > 64 ? 64
                                                     : (unsigned)(st->snd_nxt - st->snd_txq);
        uint64_t bytes = 0;

        for (unsigned i = 0; i < n; i++)
            v[i] = st->tx[(st->snd_txq + i) & st->mask].pkt;
        int k = p->ops->tx(p->io, st->q, v, n);
        if (k <= 0)
            return;
        pthread_mutex_lock(&st->lock);
        for (int i = 0; i < k; i++) {
            struct pkt_txslot *sl = &st->tx[(st->snd_txq + (unsigned)i) & st->mask];
            sl->sent = now;
            sl->xmits = 1;
            bytes += v[i]->len + v[i]->ext_len;
        }
        if (st->snd_una == st->snd_txq)
            st->last_progress = now; /* the timer starts with the first */
        st->snd_txq += (unsigned)k;
        st->last_tx = now;
        st->tlp_armed = true;
        pthread_mutex_unlock(&st->lock);
        pkt_stat_add(&st->st.tx_frames, (uint64_t)k);
        pkt_stat_add(&st->pub.tx_wire_bytes, bytes);
        if ((unsigned)k < n)
            return;
    }
}

/* The timed work of one stream sending on the queue whose lock is held:
 * frees acknowledged frames, sends lost and timed-out ones again, sends a
 * due acknowledgement or probe. */
static void sweep_stream(struct pkt_port *p, struct pkt_stream *st, uint64_t now)
{
    struct pkt_sess *s = st->s;
    struct fy_pkt *frees[64];
    struct pkt_txslot *retx[RETX_MAX];
    unsigned nf = 0, nr = 0, nfast = 0;
    struct pkt_fph af;
    uint8_t ext[PKT_SACK_EXT_MAX];
    bool send_ack = false, probe = false, cancelled = pkt_sess_cancelled(s);

    if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != PS_ESTABLISHED)
        return;
    pthread_mutex_lock(&st->lock);
    while (st->snd_freed < st->snd_una && nf < 64) {
        struct pkt_txslot *sl = &st->tx[st->snd_freed & st->mask];
        if (sl->pkt->ext && p->ops->busy && p->ops->busy(p->io, sl->pkt))
            break;
        frees[nf++] = sl->pkt;
        sl->pkt = NULL;
        st->snd_freed++;
    }
    if (!cancelled) {
        if (st->retx_pending) {
            st->retx_pending = rack_detect(st, now);
            uint64_t end = st->rack_seq < st->snd_txq ? st->rack_seq : st->snd_txq;
            for (uint64_t seq = st->snd_una; seq < end; seq++) {
                struct pkt_txslot *sl = &st->tx[seq & st->mask];
                if (!sl->lost)
                    continue;
                if (nr == RETX_MAX) {
                    st->retx_pending = true;
                    break;
                }
                sl->lost = false;
                sl->sent = now;
                sl->xmits++;
                retx[nr++] = sl;
                nfast++;
            }
        }
        if (st->snd_una < st->snd_txq && st->tlp_armed && nr < RETX_MAX) {
            uint64_t pto = 2 * st->srtt > TLP_MIN_NS ? 2 * st->srtt : TLP_MIN_NS;
            struct pkt_txslot *last = &st->tx[(st->snd_txq - 1) & st->mask];
            if (now >= st->last_tx + pto && !last->sacked &&
                now < st->tx[st->snd_una & st->mask].sent + st->rto) {
                st->tlp_armed = false;
                last->sent = now;
                last->xmits++;
                retx[nr++] = last;
            }
        }
        if (st->snd_una < st->snd_txq) {
            struct pkt_txslot *first = &st->tx[st->snd_una & st->mask];
            if (now >= first->sent + st->rto && nr < RETX_MAX) {
                /* Only the oldest goes again: its acknowledgement shows
                 * (SACK, RACK) what else is missing, where resending the
                 * whole window would mostly repeat what arrived. */
                first->lost = false;
                first->sent = now;
                first->xmits++;
                if (nr == 0 || retx[nr - 1] != first)
                    retx[nr++] = first;
                st->rto = st->rto * 2 > RTO_MAX_NS ? RTO_MAX_NS : st->rto * 2;
                pkt_stat_add(&st->st.timeouts, 1);
            }
            if (now - st->last_progress >= s->timeout && !__atomic_load_n(&s->err, __ATOMIC_RELAXED))
                pkt_sess_fail(s, FY_E_TIMEOUT,
                              "stream %u to %s: the peer acknowledged nothing for "
                              "%" PRIu64 " ms: it is gone or the link is down",
                              st->pub.index, s->pub.peer, s->timeout / PKT_MS);
        }
        /* A sender waiting for window with nothing in flight learns of a
         * lost window update only by asking: the window may be shut, or
         * open by fewer frames than its next operation needs (a page in
         * fragments), so ask whenever it waits. */
        if (st->wblocked && st->snd_una == st->snd_txq &&
            now - st->last_wprobe >= st->rto) {
            probe = true;
            st->last_wprobe = now;
        }
        uint64_t edge = st->rcv_rel + st->W;
        if (probe || st->ack_now || st->unacked >= ack_every(st) ||
            (st->unacked && now >= st->ack_due) || edge - st->edge_sent >= st->W / 4) {
            pkt_fph_base(st, &af, PT_ACK);
            ack_fields(st, &af);
            af.plen = (uint16_t)ack_ext(st, ext, s->ops_max < PKT_SACK_EXT_MAX
                                                     ? s->ops_max : PKT_SACK_EXT_MAX);
            af.flags = probe ? PKT_F_PROBE : 0;
            send_ack = true;
        }
    }
    pthread_mutex_unlock(&st->lock);

    if (nr) {
        struct fy_pkt *v[RETX_MAX];
        uint64_t bytes = 0;
        for (unsigned i = 0; i < nr; i++) {
            v[i] = retx[i]->pkt;
            bytes += v[i]->len + v[i]->ext_len;
        }
        int k = p->ops->tx(p->io, st->q, v, nr);
        if (k > 0) {
            pkt_stat_add(&st->st.retransmits, (uint64_t)k);
            pkt_stat_add(&st->st.fast_retransmits,
                         nfast < (unsigned)k ? nfast : (uint64_t)k);
            pkt_stat_add(&st->st.tx_frames, (uint64_t)k);
            pkt_stat_add(&st->pub.tx_wire_bytes, bytes);
        }
        /* Frames the backend did not take wait for their timer. */
    }
    if (send_ack && pkt_send_ctl(p, st->q, &s->tmpl, &af, ext) == 0) {
        pkt_stat_add(&st->st.acks_sent, 1);
        pkt_stat_add(&st->st.tx_frames, 1);
        pkt_stat_add(&st->pub.tx_wire_bytes, PKT_HDRS_LEN + af.plen);
    } else if (send_ack) {
        pthread_mutex_lock(&st->lock);
        st->ack_now = true; /* no buffer: try at the next sweep */
        pthread_mutex_unlock(&st->lock);
    }
    if (nf)
        p->ops->free(p->io, frees, nf);
    if (!cancelled)
        pkt_flush(p, st, now);
}

/* Session-wide: probes a quiet peer, fails the session when it stays
 * silent (stream 0's sweep). */
static void sweep_session(struct pkt_port *p, struct pkt_sess *s, uint64_t now)
{
    uint64_t heard = __atomic_load_n(&s->last_heard, __ATOMIC_RELAXED);
    uint64_t ivl = s->timeout / 4;

    if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != PS_ESTABLISHED ||
        pkt_sess_cancelled(s) || __atomic_load_n(&s->err, __ATOMIC_RELAXED) ||
        now < heard)
        return;
    /* The peer closed every stream: it will not answer, nor need to.  A
     * stream whose FIN came but not all its data still times out. */
    if (__atomic_load_n(&s->fins, __ATOMIC_RELAXED) == s->pub.nstreams)
        return;
    if (now - heard >= s->timeout) {
        pkt_sess_fail(s, FY_E_TIMEOUT,
                      "nothing heard from %s for %" PRIu64
                      " ms: it is gone or the link is down",
                      s->pub.peer, s->timeout / PKT_MS);
        return;
    }
    if (now - heard >= ivl && now - s->last_probe >= ivl) {
        struct pkt_stream *st = &s->st[0];
        struct pkt_fph f;
        pkt_fph_base(st, &f, PT_ACK);
        pthread_mutex_lock(&st->lock);
        ack_fields(st, &f);
        pthread_mutex_unlock(&st->lock);
        f.flags = PKT_F_PROBE;
        if (pkt_send_ctl(p, st->q, &s->tmpl, &f, NULL) == 0)
            s->last_probe = now;
    }
}

unsigned pkt_pump_locked(struct pkt_port *p, unsigned qi, uint64_t now)
{
    struct pkt_queue *q = &p->q[qi];
    unsigned total = 0;
    bool got = false;

    for (unsigned r = 0; r < RX_ROUNDS; r++) {
        struct fy_pkt *pkts[BURST], *frees[BURST];
        unsigned nf = 0;
        int n = p->ops->rx(p->io, qi, pkts, BURST);

        if (n <= 0)
            break;
        got = true;
        total += (unsigned)n;
        for (int i = 0; i < n; i++) {
            pkts[i]->queue = (uint16_t)qi;
            if (!handle_frame(p, pkts[i], now))
                frees[nf++] = pkts[i];
        }
        if (nf)
            p->ops->free(p->io, frees, nf);
        if ((unsigned)n < BURST)
            break;
    }
    __atomic_store_n(&q->last_pump, now, __ATOMIC_RELAXED);
    if (got || now >= q->next_sweep) {
        q->next_sweep = now + SWEEP_NS;
        for (unsigned i = 0; i < q->nstreams; i++) {
            struct pkt_stream *st = q->streams[i];
            sweep_stream(p, st, now);
            if (st->pub.index == 0)
                sweep_session(p, st->s, now);
        }
    }
    return total;
}

unsigned pkt_poll(struct pkt_port *p, unsigned qi)
{
    uint64_t now = pkt_now();
    unsigned got = 0;

    for (unsigned k = 0; k < p->nq; k++) {
        unsigned i = (qi + k) % p->nq;
        struct pkt_queue *q = &p->q[i];
        if (k > 0 && now - __atomic_load_n(&q->last_pump, __ATOMIC_RELAXED) < OTHER_QUEUE_NS)
            continue;
        if (pthread_mutex_trylock(&q->lock) == 0) {
            got += pkt_pump_locked(p, i, now);
            pthread_mutex_unlock(&q->lock);
        }
    }
    if (__atomic_load_n(&p->nctl, __ATOMIC_RELAXED))
        pkt_ctl_run(p, false);
    return got;
}

/* ---- setting up and tearing down ---------------------------------------- */

int pkt_stream_init(struct pkt_sess *s, struct pkt_stream *st, unsigned index)
{
    st->s = s;
    st->q = index % s->port->nq;
    st->W = s->window;
    st->mask = s->window - 1;
    st->pub.index = index;
    st->pub.session = &s->pub;
    st->pub.tx_burst = pkt_tx_burst;
    st->pub.rx_burst = pkt_rx_burst;
    st->fin_seq = UINT64_MAX;
    st->rto = s->rto0;
    st->edge_sent = st->W;
    st->hello_ivl = 10 * PKT_MS;
    pthread_mutex_init(&st->lock, NULL);
    st->tx = calloc(st->W, sizeof(*st->tx));
    st->rx = calloc(st->W, sizeof(*st->rx));
    if (!st->tx || !st->rx)
        return fy_error(FY_E_NOMEM, "no memory for stream %u's rings of %u frames",
                        index, st->W);
    return 0;
}

void pkt_stream_fini(struct pkt_sess *s, struct pkt_stream *st)
{
    struct pkt_port *p = s->port;

    if (st->tx) {
        struct fy_pkt *v[64];
        unsigned n = 0;
        pthread_mutex_lock(&p->q[st->q].lock);
        for (uint64_t seq = st->snd_freed; seq < st->snd_nxt; seq++) {
            struct pkt_txslot *sl = &st->tx[seq & st->mask];
            if (!sl->pkt)
                continue;
            v[n++] = sl->pkt;
            sl->pkt = NULL;
            if (n == 64) {
                p->ops->free(p->io, v, n);
                n = 0;
            }
        }
        if (n)
            p->ops->free(p->io, v, n);
        pthread_mutex_unlock(&p->q[st->q].lock);
    }
    if (st->rx) {
        for (uint32_t i = 0; i < st->W; i++)
            if (st->rx[i].pkt) {
                pkt_free_any(p, &st->rx[i].pkt, 1);
                st->rx[i].pkt = NULL;
            }
    }
    free(st->tx);
    free(st->rx);
    free(st->pg_bufs);
    pthread_mutex_destroy(&st->lock);
}

void pkt_stream_send_fin(struct pkt_stream *st)
{
    struct pkt_port *p = st->s->port;
    struct pkt_fph f;

    pkt_fph_base(st, &f, PT_FIN);
    pthread_mutex_lock(&p->q[st->q].lock);
    pthread_mutex_lock(&st->lock);
    ack_fields(st, &f);
    f.seq = (uint32_t)st->snd_nxt;
    pthread_mutex_unlock(&st->lock);
    if (pkt_send_ctl(p, st->q, &st->s->tmpl, &f, NULL) == 0) {
        pkt_stat_add(&st->st.tx_frames, 1);
        pkt_stat_add(&st->pub.tx_wire_bytes, PKT_HDRS_LEN);
    }
    pthread_mutex_unlock(&p->q[st->q].lock);
}

bool pkt_stream_drained(struct pkt_stream *st)
{
    bool d;

    pthread_mutex_lock(&st->lock);
    d = st->snd_una == st->snd_nxt;
    pthread_mutex_unlock(&st->lock);
    return d;
}
