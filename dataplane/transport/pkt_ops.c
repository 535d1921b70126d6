/* Packet transport core: operations in and out of a stream -- framing
 * (tx_burst: v1 frames packed in OPS frames, pages cut into PAGE
 * fragments to the MTU or sent in place for zero-copy, DATA too large for
 * an OPS frame cut into DATA fragments), delivery (rx_burst: frames in
 * order into operations, page bytes copied once into the placement or a
 * per-stream buffer, DATA fragments joined in a per-stream buffer) and the
 * zero-copy marks.  The reliability underneath is pkt_stream.c. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/transport/pkt_internal.h"
#include "ferry/error.h"

/* ---- tx_burst ---------------------------------------------------------- */

/* Buffers one tx_burst takes at a time: enough for the largest operation,
 * a 4096-entry MISS list at the smallest MTU (74 frames). */
#define POOL 128u

struct build {
    struct pkt_port *p;
    struct pkt_stream *st;
    struct fy_pkt *pool[POOL];
    unsigned npool, used;
    uint64_t avail;         /* sequence numbers we may still use */
    unsigned nbuilt;        /* frames built at snd_nxt + i */
    struct fy_pkt *open;    /* a PT_OPS frame being filled */
    unsigned open_len;
    struct pkt_fph ackf;    /* acknowledgement fields all frames carry */
};

/* Where a build stood before an operation, to undo a failed one whole:
 * its frames are beyond snd_nxt, so nobody has seen them. */
struct build_mark {
    unsigned nbuilt, used;
    struct fy_pkt *open;
    unsigned open_len;
};

static struct build_mark build_mark(const struct build *b)
{
    return (struct build_mark){b->nbuilt, b->used, b->open, b->open_len};
}

static void build_undo(struct build *b, struct build_mark m)
{
    b->nbuilt = m.nbuilt;
    b->used = m.used;
    b->open = m.open;
    b->open_len = m.open_len;
}

/* Makes at least 'need' buffers ready; false if the backend has none. */
static bool reserve(struct build *b, unsigned need)
{
    if (b->npool - b->used >= need)
        return true;
    if (need > POOL)
        return false;
    if (b->used) {
        memmove(b->pool, b->pool + b->used, (b->npool - b->used) * sizeof(b->pool[0]));
        b->npool -= b->used;
        b->used = 0;
    }
    while (b->npool < need) {
        int k = b->p->ops->alloc(b->p->io, b->st->q, b->pool + b->npool,
                                 POOL - b->npool);
        if (k <= 0)
            return false;
        for (int i = 0; i < k; i++) {
            struct fy_pkt *pkt = b->pool[b->npool + (unsigned)i];
            pkt->queue = (uint16_t)b->st->q;
            pkt->ext = NULL;
            pkt->ext_len = 0;
        }
        b->npool += (unsigned)k;
    }
    return true;
}

/* Takes a buffer as the next frame (sequence snd_nxt + nbuilt). */
static struct fy_pkt *take(struct build *b, struct pkt_fph *f, uint8_t type)
{
    struct pkt_stream *st = b->st;
    struct fy_pkt *pkt = b->pool[b->used++];
    uint64_t seq = st->snd_nxt + b->nbuilt++;
    struct pkt_txslot *sl = &st->tx[seq & st->mask];

    *f = b->ackf;
    f->type = type;
    f->seq = (uint32_t)seq;
    *sl = (struct pkt_txslot){.pkt = pkt};
    return pkt;
}

static void close_open(struct build *b)
{
    struct pkt_fph f;

    if (!b->open)
        return;
    f = b->ackf;
    f.type = PT_OPS;
    f.seq = (uint32_t)(b->st->snd_nxt + b->nbuilt - 1);
    f.plen = (uint16_t)b->open_len;
    pkt_write_hdrs(b->open->data, &b->st->s->tmpl, &f, 0);
    b->open->len = (uint16_t)(PKT_HDRS_LEN + b->open_len);
    b->open = NULL;
}

/* Frames one PAGE.  0, 1 when it does not fit now, or an error. */
static int build_page(struct build *b, const struct fy_op *op)
{
    struct pkt_stream *st = b->st;
    struct pkt_sess *s = st->s;
    unsigned fmax = s->frag_max, nfrag = (FY_PAGE_SIZE + fmax - 1) / fmax;
    const uint8_t *data = op->data;

    if (!data || op->flags || op->offset % FY_PAGE_SIZE)
        return fy_error(FY_E_INVAL,
                        "stream %u: PAGE operation at 0x%" PRIx64
                        " without data, with flags, or not page-aligned",
                        st->pub.index, op->offset);
    if (b->nbuilt + nfrag > b->avail || !reserve(b, nfrag))
        return 1;
    close_open(b);
    for (unsigned k = 0; k < nfrag; k++) {
        struct pkt_fph f;
        unsigned foff = k * fmax;
        unsigned flen = FY_PAGE_SIZE - foff < fmax ? FY_PAGE_SIZE - foff : fmax;
        struct fy_pkt *pkt = take(b, &f, PT_PAGE);
        struct pkt_desc d = {.offset = op->offset, .hash = op->hash,
                             .frag_off = (uint16_t)foff, .frag_len = (uint16_t)flen};

        pkt_put_desc(pkt->data + PKT_HDRS_LEN, &d);
        if (s->zero_copy) {
            pkt->ext = data + foff;
            pkt->ext_len = (uint16_t)flen;
            pkt->len = (uint16_t)(PKT_HDRS_LEN + PKT_DESC_LEN);
        } else {
            memcpy(pkt->data + PKT_HDRS_LEN + PKT_DESC_LEN, data + foff, flen);
            pkt->len = (uint16_t)(PKT_HDRS_LEN + PKT_DESC_LEN + flen);
        }
        f.plen = (uint16_t)(PKT_DESC_LEN + flen);
        pkt_write_hdrs(pkt->data, &s->tmpl, &f, PKT_DESC_LEN);
    }
    return 0;
}

/* Encodes one v1 frame into the open PT_OPS frame, opening one if needed.
 * 0, 1 when it does not fit now, or an error. */
static int put_frame(struct build *b, const struct fy_op *op, size_t size)
{
    struct pkt_sess *s = b->st->s;
    struct pkt_fph f;
    int rc;

    if (!b->open || size > s->ops_max - b->open_len) {
        if (b->nbuilt + 1 > b->avail || !reserve(b, 1))
            return 1;
        close_open(b);
        b->open = take(b, &f, PT_OPS);
        b->open_len = 0;
    }
    rc = fy_proto_encode(op, b->open->data + PKT_HDRS_LEN + b->open_len,
                         s->ops_max - b->open_len);
    if (rc < 0)
        return rc;
    b->open_len += (unsigned)rc;
    return 0;
}

/* Frames one operation other than PAGE: 0, 1 (later), or an error.  A MISS
 * list longer than a frame holds goes as several MISS frames (the protocol
 * allows any split, docs/protocol.md section 5). */
static int build_small(struct build *b, const struct fy_op *op)
{
    struct pkt_sess *s = b->st->s;
    size_t size = fy_proto_encoded_size(op);
    struct build_mark m = build_mark(b);
    int rc;

    if (size == 0)
        return fy_proto_encode(op, NULL, 0); /* records why */
    if (op->type == FY_OP_ERROR && size > s->ops_max) {
        /* A small MTU: the message is cut to fit, as v1 cuts it at 512. */
        struct fy_op cut = *op;
        cut.len = s->ops_max - FY_FRAME_HDR_SIZE;
        if ((rc = put_frame(b, &cut, s->ops_max)) < 0)
            build_undo(b, m);
        return rc;
    }
    if (op->type != FY_OP_MISS || size <= s->ops_max) {
        if ((rc = put_frame(b, op, size)) < 0)
            build_undo(b, m);
        return rc;
    }

    unsigned per = (s->ops_max - FY_FRAME_HDR_SIZE) / 8;
    uint64_t entries = op->len / 8;
    unsigned frames = (unsigned)((entries + per - 1) / per);
    if (b->nbuilt + frames + 1 > b->avail || !reserve(b, frames + 1))
        return 1;
    for (uint64_t i = 0; i < entries; i += per) {
        struct fy_op part = *op;
        uint64_t k = entries - i < per ? entries - i : per;
        part.data = (const uint8_t *)op->data + i * 8;
        part.len = k * 8;
        rc = put_frame(b, &part, FY_FRAME_HDR_SIZE + k * 8);
        if (rc != 0) {
            build_undo(b, m);
            return rc < 0 ? rc : fy_error(FY_E_NOSPACE, "MISS split lost its frames");
        }
    }
    return 0;
}

_Static_assert(FY_DATA_MAX <= FY_PAGE_SIZE,
               "DATA is joined in the page buffers (pg_bufs)");

/* Frames one DATA: as a v1 frame in an OPS frame when that holds it (every
 * DATA from MTU 4188 on), else as DATA fragments of at most frag_max bytes
 * with a hash of the whole, like a page.  The bytes are always copied:
 * tx_mark/tx_wait keep only PAGE data in place, so the caller may reuse
 * DATA bytes as soon as tx_burst returns.  0, 1 when it does not fit now,
 * or an error. */
static int build_data(struct build *b, const struct fy_op *op)
{
    struct pkt_stream *st = b->st;
    struct pkt_sess *s = st->s;
    unsigned fmax = s->frag_max, len, nfrag;
    const uint8_t *data = op->data;
    fy_hash128 hash;

    if (op->len > FY_DATA_MAX || op->flags || (op->len && !data))
        return fy_error(FY_E_INVAL,
                        "stream %u: DATA operation (tag 0x%" PRIx64 ") of %" PRIu64
                        " bytes, flags 0x%02x%s: send at most %u bytes, no "
                        "flags, and data for a non-empty one",
                        st->pub.index, op->offset, op->len, op->flags,
                        op->len && !data ? ", data NULL" : "", FY_DATA_MAX);
    if (FY_FRAME_HDR_SIZE + op->len <= s->ops_max)
        return build_small(b, op);
    len = (unsigned)op->len;
    nfrag = (len + fmax - 1) / fmax;
    if (b->nbuilt + nfrag > b->avail || !reserve(b, nfrag))
        return 1;
    hash = fy_hash_bytes(data, len);
    close_open(b);
    for (unsigned k = 0; k < nfrag; k++) {
        struct pkt_fph f;
        unsigned foff = k * fmax;
        unsigned flen = len - foff < fmax ? len - foff : fmax;
        struct fy_pkt *pkt = take(b, &f, PT_DATA);
        struct pkt_desc d = {.offset = op->offset, .hash = hash,
                             .frag_off = (uint16_t)foff, .frag_len = (uint16_t)flen,
                             .total = len};

        pkt_put_desc(pkt->data + PKT_HDRS_LEN, &d);
        memcpy(pkt->data + PKT_HDRS_LEN + PKT_DESC_LEN, data + foff, flen);
        pkt->len = (uint16_t)(PKT_HDRS_LEN + PKT_DESC_LEN + flen);
        f.plen = (uint16_t)(PKT_DESC_LEN + flen);
        pkt_write_hdrs(pkt->data, &s->tmpl, &f, PKT_DESC_LEN);
    }
    return 0;
}

int pkt_tx_burst(struct fy_stream *fs, const struct fy_op *ops, unsigned n)
{
    struct pkt_stream *st = (struct pkt_stream *)fs;
    struct pkt_sess *s = st->s;
    struct pkt_port *p = s->port;
    struct pkt_queue *q = &p->q[st->q];
    struct pkt_backoff bo = {0};
    uint64_t deadline = pkt_now() + s->timeout;
    uint64_t una = UINT64_MAX;
    bool stalled = false;
    int rc;

    if (n == 0)
        return 0;
    for (;;) {
        struct build b = {.p = p, .st = st};
        unsigned done = 0;
        uint64_t now;

        if ((rc = pkt_sess_error(st)) < 0)
            return rc;
        pthread_mutex_lock(&q->lock);
        now = pkt_now();
        pkt_pump_locked(p, st->q, now);
        pthread_mutex_lock(&st->lock);
        uint64_t lim = st->snd_freed + st->W;
        if (st->peer_edge < lim)
            lim = st->peer_edge;
        b.avail = lim > st->snd_nxt ? lim - st->snd_nxt : 0;
        uint64_t ack_nxt = st->rcv_nxt, ack_edge = st->rcv_rel + st->W;
        if (b.avail) {
            pkt_fph_base(st, &b.ackf, PT_OPS);
            pkt_ack_peek(st, &b.ackf);
        }
        pthread_mutex_unlock(&st->lock);
        rc = 0;
        while (b.avail && done < n) {
            rc = ops[done].type == FY_OP_PAGE   ? build_page(&b, &ops[done])
                 : ops[done].type == FY_OP_DATA ? build_data(&b, &ops[done])
                                                : build_small(&b, &ops[done]);
            if (rc != 0)
                break;
            done++;
        }
        close_open(&b);
        if (b.npool > b.used)
            p->ops->free(p->io, b.pool + b.used, b.npool - b.used);
        pthread_mutex_lock(&st->lock);
        st->snd_nxt += b.nbuilt;
        st->wblocked = done == 0;
        /* Acknowledgements flowing: the window opens within a round trip,
         * so keep polling rather than sleep. */
        if (st->snd_una != una) {
            una = st->snd_una;
            pkt_backoff_reset(&bo);
        }
        if (b.nbuilt)
            pkt_ack_commit(st, ack_nxt, ack_edge);
        pthread_mutex_unlock(&st->lock);
        pkt_flush(p, st, now);
        pthread_mutex_unlock(&q->lock);
        if (done > 0)
            return (int)done;
        if (rc < 0)
            return rc;
        if (!stalled) {
            stalled = true;
            pkt_stat_add(&st->st.window_stalls, 1);
        }
        if (pkt_now() >= deadline)
            return fy_error(FY_E_TIMEOUT,
                            "stream %u to %s: the peer took nothing for %" PRIu64
                            " ms (its window stayed full)",
                            fs->index, s->pub.peer, s->timeout / PKT_MS);
        pkt_poll(p, st->q);
        pkt_backoff_wait(&bo);
    }
}

/* ---- zero-copy marks --------------------------------------------------- */

static uint64_t pkt_tx_mark(struct fy_stream *fs)
{
    struct pkt_stream *st = (struct pkt_stream *)fs;
    uint64_t m;

    pthread_mutex_lock(&st->lock);
    m = st->snd_nxt;
    pthread_mutex_unlock(&st->lock);
    return m;
}

static int pkt_tx_wait(struct fy_stream *fs, uint64_t mark, int timeout_ms)
{
    struct pkt_stream *st = (struct pkt_stream *)fs;
    struct pkt_sess *s = st->s;
    struct pkt_port *p = s->port;
    struct pkt_backoff bo = {0};
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX
                                       : pkt_now() + (uint64_t)timeout_ms * PKT_MS;
    int rc;

    for (;;) {
        pthread_mutex_lock(&p->q[st->q].lock);
        pkt_pump_locked(p, st->q, pkt_now());
        pthread_mutex_unlock(&p->q[st->q].lock);
        pthread_mutex_lock(&st->lock);
        bool done = st->snd_freed >= mark;
        pthread_mutex_unlock(&st->lock);
        if (done)
            return 0;
        if ((rc = pkt_sess_error(st)) < 0)
            return rc;
        if (pkt_now() >= deadline)
            return fy_error(FY_E_TIMEOUT,
                            "stream %u to %s: sent pages not acknowledged within %d ms",
                            fs->index, s->pub.peer, timeout_ms);
        pkt_poll(p, st->q);
        pkt_backoff_wait(&bo);
    }
}

/* ---- rx_burst ---------------------------------------------------------- */

/* Frees the frames handed out before: all of them at the start of a call
 * ('all'), or at its end those no operation points into. */
static void rx_release(struct pkt_port *p, struct pkt_stream *st, bool all)
{
    struct fy_pkt *v[256];
    unsigned n = 0;
    uint64_t rel = st->rcv_rel, seq;

    for (seq = st->rcv_rel; seq < st->rcv_del; seq++) {
        struct pkt_rxslot *sl = &st->rx[seq & st->mask];
        if (!sl->pkt || (!all && sl->ref))
            continue;
        v[n++] = sl->pkt;
        sl->pkt = NULL;
        if (n == 256) {
            pkt_free_any(p, v, n);
            n = 0;
        }
    }
    if (n)
        pkt_free_any(p, v, n);
    while (rel < st->rcv_del && !st->rx[rel & st->mask].pkt)
        rel++;
    if (rel == st->rcv_rel)
        return;
    pthread_mutex_lock(&st->lock);
    st->rcv_rel = rel;
    pthread_mutex_unlock(&st->lock);
}

/* 'type' is the frame at hand, PT_PAGE or PT_DATA; 'off' its offset or
 * tag. */
static int fail_frag(struct pkt_stream *st, uint8_t type, const char *what,
                     uint64_t off)
{
    bool data = type == PT_DATA;

    return pkt_stream_fail(st, FY_E_PROTO,
                       "stream %u from %s: %s fragments out of order (%s, "
                       "%s 0x%" PRIx64 ")",
                       st->pub.index, st->s->pub.peer, data ? "DATA" : "page",
                       what, data ? "tag" : "offset", off);
}

/* Turns in-order frames into operations.  Returns the count or an error
 * that breaks the stream. */
static int deliver(struct pkt_stream *st, struct fy_op *ops, unsigned max)
{
    struct pkt_sess *s = st->s;
    uint64_t nxt;
    unsigned n = 0;

    pthread_mutex_lock(&st->lock);
    nxt = st->rcv_nxt;
    pthread_mutex_unlock(&st->lock);
    while (n < max && st->rcv_del < nxt) {
        struct pkt_rxslot *sl = &st->rx[st->rcv_del & st->mask];
        const uint8_t *pl = sl->pkt->data + sl->poff;

        if (sl->type == PT_OPS) {
            size_t flen = 0;
            struct fy_op *op = &ops[n];
            int rc = fy_proto_decode(pl + st->del_off, sl->plen - st->del_off,
                                     &s->lim, op, &st->scratch[n], &flen);
            if (rc < 0)
                return pkt_stream_fail(st, -rc, "stream %u from %s: %s",
                                   st->pub.index, s->pub.peer, fy_error_detail());
            if (st->pg_active)
                return fail_frag(st, st->pg_type, "an operation between fragments",
                                 st->pg_off);
            if (op->type == FY_OP_MISS || op->type == FY_OP_ERROR ||
                op->type == FY_OP_DATA)
                sl->ref = true; /* op->data points into the frame */
            n++;
            st->del_off += (uint16_t)flen;
            if (st->del_off >= sl->plen) {
                st->del_off = 0;
                st->rcv_del++;
            }
            continue;
        }

        /* A PAGE or DATA fragment (pkt_parse() checked that it stays
         * inside its page or its DATA's total). */
        struct pkt_desc d;
        const uint8_t *frag = pl + PKT_DESC_LEN;
        bool data = sl->type == PT_DATA;
        pkt_get_desc(pl, &d);
        uint16_t total = data ? (uint16_t)d.total : (uint16_t)FY_PAGE_SIZE;
        if (d.frag_off == 0) {
            if (st->pg_active)
                return fail_frag(st, sl->type, "one started inside another", d.offset);
            st->pg_active = true;
            st->pg_type = sl->type;
            st->pg_len = total;
            st->pg_off = d.offset;
            st->pg_hash = d.hash;
            st->pg_have = 0;
            if (s->placement && !data) {
                st->pg_dst = s->placement + d.offset;
                st->pg_placed = true;
            } else if (d.frag_len == total) {
                st->pg_dst = (uint8_t *)frag; /* whole: point into the frame */
                st->pg_placed = false;
                sl->ref = true;
            } else {
                if (!st->pg_bufs &&
                    !(st->pg_bufs = malloc((size_t)(PKT_RX_MAX_OPS + 1) * FY_PAGE_SIZE)))
                    return pkt_stream_fail(st, FY_E_NOMEM,
                                       "stream %u: no memory for page buffers",
                                       st->pub.index);
                st->pg_dst = st->pg_bufs + (size_t)st->pg_slot * FY_PAGE_SIZE;
                st->pg_slot = (st->pg_slot + 1) % (PKT_RX_MAX_OPS + 1);
                st->pg_placed = false;
            }
        } else if (!st->pg_active || sl->type != st->pg_type || d.offset != st->pg_off ||
                   d.frag_off != st->pg_have || total != st->pg_len ||
                   !fy_hash_eq(d.hash, st->pg_hash)) {
            return fail_frag(st, sl->type, "a fragment that does not continue its operation",
                             d.offset);
        }
        if (st->pg_dst != frag)
            memcpy(st->pg_dst + d.frag_off, frag, d.frag_len);
        st->pg_have = (uint16_t)(st->pg_have + d.frag_len);
        st->rcv_del++;
        if (st->pg_have < st->pg_len)
            continue;
        st->pg_active = false;
        struct fy_op *op = &ops[n++];
        memset(op, 0, sizeof(*op));
        if (data) {
            /* DATA fragments carry no checksum of their bytes but this
             * hash (UDP's is off): always checked. */
            fy_hash128 got = fy_hash_bytes(st->pg_dst, st->pg_len);
            if (!fy_hash_eq(got, st->pg_hash))
                return pkt_stream_fail(st, FY_E_CHECKSUM,
                                   "stream %u from %s: the %u bytes of DATA with tag 0x%" PRIx64
                                   " hash to %016" PRIx64 "%016" PRIx64
                                   ", its frames say %016" PRIx64 "%016" PRIx64,
                                   st->pub.index, s->pub.peer, st->pg_len, st->pg_off,
                                   got.hi, got.lo, st->pg_hash.hi, st->pg_hash.lo);
            op->type = FY_OP_DATA;
            op->offset = st->pg_off;
            op->len = st->pg_len;
            op->data = st->pg_dst;
            continue;
        }
        op->type = FY_OP_PAGE;
        op->offset = st->pg_off;
        op->len = FY_PAGE_SIZE;
        op->hash = st->pg_hash;
        op->data = st->pg_dst;
        if (st->pg_placed)
            op->flags |= FY_OP_F_PLACED;
        if (s->lim.defer_page_check) {
            op->flags |= FY_OP_F_UNCHECKED;
        } else {
            fy_hash128 got = fy_page_hash(st->pg_dst);
            if (!fy_hash_eq(got, st->pg_hash))
                return pkt_stream_fail(st, FY_E_CHECKSUM,
                                   "stream %u from %s: the page for offset 0x%" PRIx64
                                   " hashes to %016" PRIx64 "%016" PRIx64
                                   ", its frame says %016" PRIx64 "%016" PRIx64,
                                   st->pub.index, s->pub.peer, st->pg_off, got.hi,
                                   got.lo, st->pg_hash.hi, st->pg_hash.lo);
        }
    }
    return (int)n;
}

/* Sends an acknowledgement now if one is due and the queue is free. */
static void try_sweep(struct pkt_port *p, struct pkt_stream *st)
{
    struct pkt_queue *q = &p->q[st->q];

    if (pthread_mutex_trylock(&q->lock) == 0) {
        pkt_pump_locked(p, st->q, pkt_now());
        pthread_mutex_unlock(&q->lock);
    }
}

int pkt_rx_burst(struct fy_stream *fs, struct fy_op *ops, unsigned max,
                        int timeout_ms)
{
    struct pkt_stream *st = (struct pkt_stream *)fs;
    struct pkt_sess *s = st->s;
    struct pkt_port *p = s->port;
    struct pkt_backoff bo = {0};
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX
                                       : pkt_now() + (uint64_t)timeout_ms * PKT_MS;
    int rc;

    if (st->err)
        return fy_error(st->err, "%s", st->errmsg);
    rx_release(p, st, true);
    if (max > PKT_RX_MAX_OPS)
        max = PKT_RX_MAX_OPS;
    if (max == 0)
        return 0;
    for (;;) {
        try_sweep(p, st);
        rc = deliver(st, ops, max);
        if (rc != 0) {
            if (rc > 0)
                rx_release(p, st, false);
            return rc;
        }
        pthread_mutex_lock(&st->lock);
        bool closed = st->fin_seq != UINT64_MAX && st->rcv_del >= st->fin_seq;
        pthread_mutex_unlock(&st->lock);
        if (closed)
            return fy_error(FY_E_CLOSED, "stream %u from %s closed", fs->index,
                            s->pub.peer);
        if ((rc = pkt_sess_error(st)) < 0)
            return rc;
        if (pkt_now() >= deadline)
            return 0;
        pkt_poll(p, st->q);
        pkt_backoff_wait(&bo);
    }
}

/* ---- zero-copy ---------------------------------------------------------- */

void pkt_stream_enable_zero_copy(struct pkt_stream *st)
{
    st->pub.tx_mark = pkt_tx_mark;
    st->pub.tx_wait = pkt_tx_wait;
}
