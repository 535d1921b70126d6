/* Source half of the migration engine: pre-copy rounds, switchover and
 * verification (see include/ferry/engine.h for the sequence). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/digest.h"
#include "dataplane/engine_internal.h"
#include "dataplane/protocol.h"

#define DEFAULT_DOWNTIME_MS 300
#define DEFAULT_MAX_ROUNDS 30
#define MAX_FIXUPS 3
/* How long the end of a failed migration waits for a zero-copy transport
 * to let go of page data before shutting the session down. */
#define RELEASE_WAIT_MS 2000

struct src;

/* One sender per stream; its counts are the stream's ROUND_END. */
struct sender {
    struct src *m;
    struct fy_stream *stream;
    pthread_t tid;
    struct fy_round_counts counts;
    uint64_t shared_refs; /* of counts.ref_pages: into another region */
    uint64_t *pages;      /* FY_BATCH_PAGES page numbers being sent */
    uint8_t *buf;         /* FY_BATCH_PAGES pages of content: bufs[cur] */
    /* A zero-copy transport (stream->tx_mark) sends page data in place
     * until the peer acknowledged it, so the two buffers alternate: one is
     * refilled only once what was sent from it is acknowledged (mark),
     * while the other's pages are in flight. */
    uint8_t *bufs[2];
    unsigned cur;
    uint64_t mark[2];
    bool in_flight[2];
    struct fy_op *ops;    /* FY_BATCH_PAGES operations */
    struct fy_op *page_ops; /* the batch's PAGE operations, sent last */
    fy_hash128 hashes[FY_BATCH_PAGES];
    bool zero[FY_BATCH_PAGES];
    const uint8_t *data[FY_BATCH_PAGES]; /* each page's bytes */
    uint8_t resident[FY_CHUNK_PAGES];    /* residency of the batch's span */
};

struct src {
    struct fy_region *r;
    struct fy_session *s;
    struct fy_source_params p;
    uint64_t npages;
    uint64_t nwords;          /* bitmap words */
    struct fy_held idx;       /* page map (what the target holds) + index */
    fy_hash128 zero_hash;
    uint64_t *dirty;          /* pages this round moves */
    uint64_t *scratch_bm;     /* dirty log read during switchover */
    uint64_t *final_bm;       /* pages the final round read (paused), whose
                                 page map entries are the bytes' hashes */
    bool all_hashed;          /* the final re-hash scan read every page */
    unsigned round;
    bool final;
    uint64_t next_chunk;      /* work cursor of the round (atomic) */
    uint64_t nchunks;
    struct sender *senders;
    struct fy_first_error err;
    volatile int stop;        /* a sender failed: the others stop early */
};

static bool cancelled(const struct src *m)
{
    return m->p.cancel && *m->p.cancel;
}

/* ---- classification and sending ---------------------------------------- */

/* Makes w->buf a page buffer the transport no longer refers to.  Without
 * zero-copy the one buffer is always free again. */
static int take_buf(struct sender *w)
{
    struct fy_stream *s = w->stream;
    int rc;

    if (!s->tx_mark)
        return 0;
    w->cur ^= 1;
    w->buf = w->bufs[w->cur];
    if (w->in_flight[w->cur]) {
        /* The session's own timeout ends a wait on a vanished peer. */
        if ((rc = s->tx_wait(s, w->mark[w->cur], -1)) < 0)
            return rc;
        w->in_flight[w->cur] = false;
    }
    return 0;
}

/* Notes that pages of w->buf were handed to the transport. */
static void sent_from_buf(struct sender *w)
{
    struct fy_stream *s = w->stream;

    if (s->tx_mark) {
        w->mark[w->cur] = s->tx_mark(s);
        w->in_flight[w->cur] = true;
    }
}

/* Reads, classifies and sends 'n' pages (m->pages).  Zero pages travel as
 * ranges, content the target holds as references, the rest whole. */
/* Points w->data[i] at the bytes of page w->pages[i].  While the writer
 * runs, pages are copied into w->buf first, so that what is hashed is what
 * is sent even if the guest writes meanwhile.  Once it is paused (the final
 * round, or a region nothing writes) pages in memory are used where they
 * are; the rest are read, which allocates nothing for holes. */
static int batch_data(struct sender *w, unsigned n)
{
    struct src *m = w->m;
    const uint8_t *base = fy_region_base(m->r);
    uint64_t lo = w->pages[0], hi = w->pages[n - 1];
    int rc;

    if (!m->final || !base || hi - lo >= FY_CHUNK_PAGES) {
        if ((rc = fy_region_read_pages(m->r, w->pages, n, w->buf)) < 0)
            return rc;
        for (unsigned i = 0; i < n; i++)
            w->data[i] = w->buf + ((size_t)i << FY_PAGE_SHIFT);
        return 0;
    }
    if ((rc = fy_region_resident(m->r, lo, hi - lo + 1, w->resident)) < 0)
        return rc;
    for (unsigned i = 0; i < n; i++) {
        uint8_t *slot = w->buf + ((size_t)i << FY_PAGE_SHIFT);
        if (w->resident[w->pages[i] - lo]) {
            w->data[i] = base + (w->pages[i] << FY_PAGE_SHIFT);
            continue;
        }
        if ((rc = fy_region_read_pages(m->r, &w->pages[i], 1, slot)) < 0)
            return rc;
        w->data[i] = slot;
    }
    return 0;
}

static int send_batch(struct sender *w, unsigned n)
{
    struct src *m = w->m;
    unsigned nops = 0, npages = 0;
    int rc;

    if ((rc = take_buf(w)) < 0 || (rc = batch_data(w, n)) < 0)
        return rc;
    /* Hash the batch first and start loading each hash's index slot, so
     * the lookups below find them in cache rather than wait on each. */
    for (unsigned i = 0; i < n; i++) {
        const uint8_t *data = w->data[i];
        w->zero[i] = fy_page_is_zero(data);
        if (!w->zero[i]) {
            w->hashes[i] = fy_page_hash(data);
            fy_dedup_prefetch(m->idx.dedup, w->hashes[i]);
        }
    }
    for (unsigned i = 0; i < n; i++) {
        uint64_t page = w->pages[i];
        uint64_t off = page << FY_PAGE_SHIFT;
        const uint8_t *data = w->data[i];
        struct fy_dedup_loc loc;
        struct fy_op *op;
        fy_hash128 h;

        if (w->zero[i]) {
            if (fy_hash_eq(fy_pagemap_get(&m->idx.map, page), m->zero_hash))
                continue;
            fy_pagemap_set(&m->idx.map, page, m->zero_hash);
            w->counts.zero_pages++;
            op = nops ? &w->ops[nops - 1] : NULL;
            if (op && op->type == FY_OP_ZERO && op->offset + op->len == off) {
                op->len += FY_PAGE_SIZE;
                continue;
            }
            w->ops[nops++] = (struct fy_op){.type = FY_OP_ZERO, .offset = off,
                                            .len = FY_PAGE_SIZE};
            continue;
        }
        h = w->hashes[i];
        if (fy_hash_eq(fy_pagemap_get(&m->idx.map, page), h))
            continue; /* rewritten with what the target already has */
        fy_pagemap_set(&m->idx.map, page, h);
        if (fy_dedup_lookup(m->idx.dedup, h, &loc) &&
            !(loc.space == (uint32_t)m->idx.space && loc.page == page)) {
            w->counts.ref_pages++;
            w->shared_refs += loc.space != (uint32_t)m->idx.space;
            w->ops[nops++] = (struct fy_op){.type = FY_OP_REF, .offset = off,
                                            .hash = h};
            continue;
        }
        fy_dedup_insert(m->idx.dedup, h,
                        (struct fy_dedup_loc){(uint32_t)m->idx.space, page});
        w->counts.pages++;
        w->page_ops[npages++] = (struct fy_op){.type = FY_OP_PAGE, .offset = off,
                                               .len = FY_PAGE_SIZE, .hash = h,
                                               .data = data};
    }
    /* Within a round operations are unordered, so the pages go last and
     * together: a byte-stream transport packs them into few frames, which
     * the target can read straight into place. */
    memcpy(w->ops + nops, w->page_ops, npages * sizeof(*w->ops));
    nops += npages;
    w->counts.ops += nops;
    if (!nops)
        return 0;
    rc = fy_stream_send_all(w->stream, w->ops, nops);
    sent_from_buf(w);
    return rc;
}

/* Sends this stream's share of the round, then its ROUND_END. */
static int send_round(struct sender *w)
{
    struct src *m = w->m;
    unsigned n = 0;
    int rc;

    memset(&w->counts, 0, sizeof(w->counts));
    w->shared_refs = 0;
    for (;;) {
        uint64_t c = __atomic_fetch_add(&m->next_chunk, 1, __ATOMIC_RELAXED);
        if (c >= m->nchunks)
            break;
        if (m->stop || cancelled(m))
            return m->stop ? -FY_E_CANCELLED
                           : fy_error(FY_E_CANCELLED, "migration cancelled");
        uint64_t first = c * FY_CHUNK_PAGES;
        uint64_t last = first + FY_CHUNK_PAGES;
        if (last > m->npages)
            last = m->npages;
        for (uint64_t wd = first >> 6; wd < (last + 63) >> 6; wd++) {
            uint64_t bits = m->dirty[wd];
            while (bits) {
                uint64_t page = (wd << 6) + (uint64_t)__builtin_ctzll(bits);
                bits &= bits - 1;
                if (page < first || page >= last)
                    continue;
                w->pages[n++] = page;
                if (n == FY_BATCH_PAGES) {
                    if ((rc = send_batch(w, n)) < 0)
                        return rc;
                    n = 0;
                }
            }
        }
    }
    if (n && (rc = send_batch(w, n)) < 0)
        return rc;
    /* Another sender failed or the user cancelled while this one finished
     * its share: no ROUND_END, so the target does not wait for a round
     * that will not end. */
    if (m->stop || cancelled(m))
        return m->stop ? -FY_E_CANCELLED : fy_error(FY_E_CANCELLED, "migration cancelled");
    struct fy_op end = {.type = FY_OP_ROUND_END, .offset = m->round,
                        .flags = m->final ? FY_OP_F_FINAL : 0,
                        .data = &w->counts, .len = sizeof(w->counts)};
    return fy_stream_send_all(w->stream, &end, 1);
}

static void *sender_main(void *arg)
{
    struct sender *w = arg;
    int rc;

    if (w->stream->index > 0) {
        /* Named for top -H and perf: "fy-send-N". */
        char name[16];
        snprintf(name, sizeof(name), "fy-send-%u", (unsigned)(uint16_t)w->stream->index);
        pthread_setname_np(pthread_self(), name);
    }
    rc = send_round(w);

    if (rc < 0) {
        fy_first_error_set(&w->m->err, rc);
        w->m->stop = 1;
    }
    return NULL;
}

/* ---- the target's answers ---------------------------------------------- */

/* Reads the next operation on stream 0, turning an ERROR into the peer's
 * message. */
static int recv_control(struct src *m, struct fy_op *op)
{
    struct fy_stream *s0 = m->s->streams[0];
    int rc = s0->rx_burst(s0, op, 1, -1);

    if (rc < 0)
        return rc;
    if (rc == 0)
        return fy_error(FY_E_TIMEOUT, "no answer from the target %s", m->s->peer);
    if (op->type == FY_OP_ERROR)
        return fy_error(FY_E_PEER, "the target %s stopped the migration: %.*s (%s)",
                        m->s->peer, (int)op->len, (const char *)op->data,
                        fy_errname((int)op->offset));
    return 0;
}

/* After a stream failed, the target usually said why on stream 0. */
static void explain_failure(struct src *m)
{
    struct fy_stream *s0 = m->s->streams[0];
    struct fy_op op;

    for (int i = 0; i < 16; i++) {
        if (s0->rx_burst(s0, &op, 1, 200) <= 0)
            return;
        if (op.type == FY_OP_ERROR) {
            fy_error(FY_E_PEER, "the target %s stopped the migration: %.*s (%s)",
                     m->s->peer, (int)op.len, (const char *)op.data,
                     fy_errname((int)op.offset));
            m->err.code = -FY_E_PEER;
            snprintf(m->err.detail, sizeof(m->err.detail), "%s", fy_error_detail());
            return;
        }
    }
}

/* Waits for the ROUND_ACK of the current round and sends the pages it
 * missed again (on stream 0, as a fix-up), until none are missing. */
static int finish_round(struct src *m, struct fy_round_stats *st)
{
    struct fy_stream *s0 = m->s->streams[0];
    struct sender *w = &m->senders[0];
    uint64_t *missed = NULL;
    int rc;

    for (unsigned attempt = 0;; attempt++) {
        struct fy_op op;
        const struct fy_round_ack *ack;
        uint64_t nmiss = 0, want;

        if ((rc = recv_control(m, &op)) < 0)
            goto out;
        if (op.type != FY_OP_ROUND_ACK || op.offset != m->round) {
            rc = fy_error(FY_E_PROTO, "expected ROUND_ACK for round %u from %s, got %s",
                          m->round, m->s->peer, fy_proto_type_name(op.type));
            goto out;
        }
        ack = op.data;
        want = ack->misses;
        if (want == 0)
            break;
        if (attempt == MAX_FIXUPS || want > m->npages) {
            rc = fy_error(FY_E_PROTO, "the target %s keeps missing pages of round %u",
                          m->s->peer, m->round);
            goto out;
        }
        free(missed);
        missed = malloc(want * sizeof(*missed));
        if (!missed) {
            rc = fy_error(FY_E_NOMEM, "no memory for %llu missed pages",
                          (unsigned long long)want);
            goto out;
        }
        while (nmiss < want) {
            if ((rc = recv_control(m, &op)) < 0)
                goto out;
            if (op.type != FY_OP_MISS || op.len / 8 > want - nmiss) {
                rc = fy_error(FY_E_PROTO, "bad MISS list from %s", m->s->peer);
                goto out;
            }
            for (uint64_t i = 0; i < op.len / 8; i++)
                missed[nmiss++] = fy_proto_miss_offset(&op, i) >> FY_PAGE_SHIFT;
        }
        /* Send them whole: forget what we believed the target held there. */
        memset(&w->counts, 0, sizeof(w->counts));
        for (uint64_t i = 0; i < nmiss;) {
            unsigned n = 0;
            for (; n < FY_BATCH_PAGES && i < nmiss; n++, i++) {
                w->pages[n] = missed[i];
                fy_pagemap_set(&m->idx.map, missed[i], FY_HASH_UNKNOWN);
            }
            if ((rc = take_buf(w)) < 0)
                goto out;
            rc = fy_region_read_pages(m->r, w->pages, n, w->buf);
            if (rc < 0)
                goto out;
            for (unsigned k = 0; k < n; k++) {
                const uint8_t *data = w->buf + ((size_t)k << FY_PAGE_SHIFT);
                fy_hash128 h = fy_page_hash(data);
                fy_pagemap_set(&m->idx.map, w->pages[k], h);
                w->ops[k] = (struct fy_op){.type = FY_OP_PAGE,
                                           .offset = w->pages[k] << FY_PAGE_SHIFT,
                                           .len = FY_PAGE_SIZE, .hash = h,
                                           .data = data};
            }
            w->counts.pages += n;
            w->counts.ops += n;
            rc = fy_stream_send_all(s0, w->ops, n);
            sent_from_buf(w);
            if (rc < 0)
                goto out;
        }
        st->pages_resent += nmiss;
        st->pages_sent += nmiss;
        st->pages_dup -= nmiss < st->pages_dup ? nmiss : st->pages_dup;
        /* Misses are mostly references across regions (content another
         * migration had not delivered yet): count them off those first. */
        st->pages_dup_shared -= nmiss < st->pages_dup_shared ? nmiss : st->pages_dup_shared;
        if (st->pages_dup_shared > st->pages_dup)
            st->pages_dup_shared = st->pages_dup;
        struct fy_op end = {.type = FY_OP_ROUND_END, .offset = m->round,
                            .flags = FY_OP_F_FIXUP | (m->final ? FY_OP_F_FINAL : 0),
                            .data = &w->counts, .len = sizeof(w->counts)};
        if ((rc = fy_stream_send_all(s0, &end, 1)) < 0)
            goto out;
    }
    rc = 0;
out:
    free(missed);
    return rc;
}

/* ---- rounds ----------------------------------------------------------- */

static int run_round(struct src *m, struct fy_round_stats *st)
{
    unsigned k = m->s->nstreams;
    unsigned started = 1;
    int rc;

    m->next_chunk = 0;
    m->nchunks = (m->npages + FY_CHUNK_PAGES - 1) / FY_CHUNK_PAGES;
    m->stop = 0;
    for (unsigned i = 1; i < k; i++) {
        if (pthread_create(&m->senders[i].tid, NULL, sender_main, &m->senders[i]) != 0) {
            fy_first_error_set(&m->err, fy_error_sys("cannot start sender %u", i));
            m->stop = 1;
            break;
        }
        started++;
    }
    sender_main(&m->senders[0]);
    for (unsigned i = 1; i < started; i++)
        pthread_join(m->senders[i].tid, NULL);
    if ((rc = fy_first_error_get(&m->err)) < 0) {
        if (rc == -FY_E_CLOSED || rc == -FY_E_CANCELLED)
            explain_failure(m);
        return fy_first_error_raise(&m->err);
    }
    for (unsigned i = 0; i < k; i++) {
        st->pages_sent += m->senders[i].counts.pages;
        st->pages_zero += m->senders[i].counts.zero_pages;
        st->pages_dup += m->senders[i].counts.ref_pages;
        st->pages_dup_shared += m->senders[i].shared_refs;
    }
    return finish_round(m, st);
}

/* Re-hash mode: marks every page whose content differs from what the target
 * holds.  Returns the number of dirty pages found. */
struct scan_job {
    struct src *m;
    uint64_t next;
    uint64_t found;
    int rc;
};

static void *scan_worker(void *arg)
{
    struct scan_job *j = arg;
    struct src *m = j->m;
    const uint8_t *base = fy_region_base(m->r);
    uint8_t *buf = NULL;
    uint64_t pages[FY_BATCH_PAGES];
    uint64_t found = 0;

    if (!base && !(buf = malloc((size_t)FY_BATCH_PAGES << FY_PAGE_SHIFT))) {
        j->rc = fy_error(FY_E_NOMEM, "scan buffer");
        return NULL;
    }
    for (;;) {
        uint64_t c = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
        uint64_t first = c * FY_CHUNK_PAGES;
        if (first >= m->npages)
            break;
        uint64_t last = first + FY_CHUNK_PAGES < m->npages ? first + FY_CHUNK_PAGES
                                                            : m->npages;
        for (uint64_t p = first; p < last;) {
            unsigned n = 0;
            for (; n < FY_BATCH_PAGES && p < last; n++, p++)
                pages[n] = p;
            if (buf) {
                int rc = fy_region_read_pages(m->r, pages, n, buf);
                if (rc < 0) {
                    __atomic_store_n(&j->rc, rc, __ATOMIC_RELAXED);
                    free(buf);
                    return NULL;
                }
            }
            for (unsigned i = 0; i < n; i++) {
                const uint8_t *d = buf ? buf + ((size_t)i << FY_PAGE_SHIFT)
                                       : base + (pages[i] << FY_PAGE_SHIFT);
                fy_hash128 h = fy_page_is_zero(d) ? m->zero_hash : fy_page_hash(d);
                if (!fy_hash_eq(h, fy_pagemap_get(&m->idx.map, pages[i]))) {
                    fy_bit_set_atomic(m->dirty, pages[i]);
                    found++;
                }
            }
        }
    }
    __atomic_fetch_add(&j->found, found, __ATOMIC_RELAXED);
    free(buf);
    return NULL;
}

static int rehash_scan(struct src *m, uint64_t *found)
{
    struct scan_job j = {.m = m};
    pthread_t tid[64];
    unsigned n = 0, want = m->s->nstreams;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    if (cpus > 0 && (unsigned)cpus > want)
        want = (unsigned)cpus;
    for (unsigned i = 1; i < want && i < 64; i++)
        if (pthread_create(&tid[n], NULL, scan_worker, &j) == 0)
            n++;
    scan_worker(&j);
    for (unsigned i = 0; i < n; i++)
        pthread_join(tid[i], NULL);
    if (j.rc < 0)
        return j.rc;
    *found = j.found;
    return 0;
}

static uint64_t popcount_bitmap(const uint64_t *bm, uint64_t nwords)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < nwords; i++)
        n += (uint64_t)__builtin_popcountll(bm[i]);
    return n;
}

/* Fills m->dirty with the pages to move next (ORed into what is there).
 * Returns their count in *n and the scan time in *scan. */
static int collect_dirty(struct src *m, uint64_t *n, double *scan)
{
    double t0 = fy_now();
    int rc;

    if (m->p.dirty_sync) {
        memset(m->scratch_bm, 0, m->nwords * 8);
        rc = m->p.dirty_sync(m->p.ctx, m->scratch_bm, m->npages);
        if (rc < 0)
            return rc;
        for (uint64_t i = 0; i < m->nwords; i++)
            m->dirty[i] |= m->scratch_bm[i];
        /* Bits past the last page must stay clear. */
        if (m->npages & 63)
            m->dirty[m->nwords - 1] &= (1ull << (m->npages & 63)) - 1;
        *n = popcount_bitmap(m->dirty, m->nwords);
    } else {
        uint64_t found = 0;
        if ((rc = rehash_scan(m, &found)) < 0)
            return rc;
        *n = popcount_bitmap(m->dirty, m->nwords);
    }
    *scan = fy_now() - t0;
    return 0;
}

static int verify(struct src *m, struct fy_migration_stats *out)
{
    struct fy_op op = {.type = FY_OP_VERIFY};
    fy_hash128 digest;
    int rc;

    /* Every page's hash from the bytes held now, the writer paused: the
     * final round just hashed its pages (and a re-hash scan all of them);
     * read only the rest. */
    rc = fy_digest_pages(m->r, &m->idx.map, m->all_hashed ? NULL : m->final_bm,
                         0, &digest);
    if (rc < 0)
        return rc;
    op.hash = digest;
    if ((rc = fy_stream_send_all(m->s->streams[0], &op, 1)) < 0)
        return rc;
    if ((rc = recv_control(m, &op)) < 0)
        return rc;
    if (op.type != FY_OP_VERIFY_RESULT)
        return fy_error(FY_E_PROTO, "expected VERIFY_RESULT from %s, got %s",
                        m->s->peer, fy_proto_type_name(op.type));
    out->digest = digest;
    if (!fy_hash_eq(op.hash, digest) || op.offset != 1)
        return fy_error(FY_E_VERIFY,
                        "region digests differ after the final round: source "
                        "%016llx%016llx, target %016llx%016llx; the source "
                        "stays authoritative",
                        (unsigned long long)digest.hi, (unsigned long long)digest.lo,
                        (unsigned long long)op.hash.hi, (unsigned long long)op.hash.lo);
    out->verified = true;
    return 0;
}

/* ---- setup ------------------------------------------------------------ */

static int src_init(struct src *m, struct fy_region *r, struct fy_session *s,
                    const struct fy_source_params *p)
{
    int rc;

    memset(m, 0, sizeof(*m));
    m->idx.space = -1;
    m->r = r;
    m->s = s;
    if (p)
        m->p = *p;
    if (!m->p.downtime_ms)
        m->p.downtime_ms = DEFAULT_DOWNTIME_MS;
    if (!m->p.max_rounds)
        m->p.max_rounds = DEFAULT_MAX_ROUNDS;
    fy_first_error_init(&m->err);
    m->npages = fy_region_pages(r);
    m->nwords = (m->npages + 63) / 64;
    m->zero_hash = fy_hash_zero_page();
    if ((rc = fy_held_open(&m->idx, r, s, m->p.dedup, m->p.keep)) < 0)
        return rc;
    m->dirty = calloc(m->nwords, 8);
    m->scratch_bm = calloc(m->nwords, 8);
    m->final_bm = calloc(m->nwords, 8);
    m->senders = calloc(s->nstreams, sizeof(*m->senders));
    if (!m->dirty || !m->scratch_bm || !m->final_bm || !m->senders)
        return fy_error(FY_E_NOMEM, "no memory for the dirty bitmaps of %s",
                        fy_region_name(r));
    for (unsigned i = 0; i < s->nstreams; i++) {
        struct sender *w = &m->senders[i];
        w->m = m;
        w->stream = s->streams[i];
        w->pages = malloc(FY_BATCH_PAGES * sizeof(*w->pages));
        w->ops = malloc(FY_BATCH_PAGES * sizeof(*w->ops));
        w->page_ops = malloc(FY_BATCH_PAGES * sizeof(*w->page_ops));
        for (unsigned b = 0; b < (w->stream->tx_mark ? 2u : 1u); b++)
            if (posix_memalign((void **)&w->bufs[b], 4096,
                               (size_t)FY_BATCH_PAGES << FY_PAGE_SHIFT) != 0)
                w->bufs[b] = NULL;
        w->buf = w->bufs[0];
        if (!w->pages || !w->ops || !w->page_ops || !w->buf ||
            (w->stream->tx_mark && !w->bufs[1]))
            return fy_error(FY_E_NOMEM, "no memory for sender %u", i);
    }
    return 0;
}

static void src_fini(struct src *m)
{
    if (m->senders)
        for (unsigned i = 0; i < m->s->nstreams; i++) {
            free(m->senders[i].pages);
            free(m->senders[i].ops);
            free(m->senders[i].page_ops);
            free(m->senders[i].bufs[0]);
            free(m->senders[i].bufs[1]);
        }
    free(m->senders);
    free(m->dirty);
    free(m->scratch_bm);
    free(m->final_bm);
    fy_held_close(&m->idx);
}

/* Before the page buffers are freed and the caller may change the region:
 * a zero-copy transport lets go of every page it was given (acknowledged),
 * or, failing that (the peer is gone), the session is shut down so that it
 * reads none of them again.  Returns the first error of a wait. */
static int release_pages(struct src *m, int timeout_ms)
{
    int first = 0;

    for (unsigned i = 0; m->senders && i < m->s->nstreams; i++) {
        struct fy_stream *s = m->s->streams[i];
        int rc;

        if (!s->tx_mark)
            continue;
        rc = s->tx_wait(s, s->tx_mark(s), timeout_ms);
        if (rc < 0) {
            if (!first)
                first = rc;
            fy_session_shutdown(m->s);
            break;
        }
    }
    return first;
}

static void add_round(struct fy_migration_stats *tot, const struct fy_round_stats *st)
{
    tot->rounds = st->round;
    tot->pages_sent += st->pages_sent;
    tot->pages_zero += st->pages_zero;
    tot->pages_dup += st->pages_dup;
    tot->pages_dup_shared += st->pages_dup_shared;
    tot->pages_resent += st->pages_resent;
}

int fy_migrate_source(struct fy_region *src, struct fy_session *s,
                      const struct fy_source_params *p,
                      struct fy_migration_stats *out)
{
    struct fy_migration_stats tot = {0};
    struct src m;
    double t_start = fy_now(), t_pause = 0, scan = 0;
    uint64_t ndirty;
    double link_rate = 0; /* wire bytes per second a round achieved */
    int rc;

    if (!src || !s)
        return fy_error(FY_E_INVAL, "migrate: no region or session");
    if ((rc = src_init(&m, src, s, p)) < 0)
        goto out;
    tot.region_bytes = fy_region_size(src);

    /* Round 1 moves everything (or the caller's first_round); start the
     * dirty log first so nothing written while it runs is lost. */
    if (m.p.dirty_sync && (rc = m.p.dirty_sync(m.p.ctx, m.scratch_bm, m.npages)) < 0)
        goto out;
    if (m.p.first_round) {
        /* The caller's set, and what was written since it looked. */
        for (uint64_t i = 0; i < m.nwords; i++)
            m.dirty[i] = m.p.first_round[i] | m.scratch_bm[i];
        if (m.npages & 63)
            m.dirty[m.nwords - 1] &= (1ull << (m.npages & 63)) - 1;
        ndirty = popcount_bitmap(m.dirty, m.nwords);
    } else {
        memset(m.dirty, 0xff, m.nwords * 8);
        if (m.npages & 63)
            m.dirty[m.nwords - 1] = (1ull << (m.npages & 63)) - 1;
        ndirty = m.npages;
    }
    /* Nothing to pause means nothing writes: one round moves it all. */
    if (!m.p.pause) {
        m.final = true;
        tot.converged = true;
    }

    for (m.round = 1;; m.round++) {
        struct fy_round_stats st = {.round = m.round, .dirty_pages = ndirty,
                                    .scan_seconds = scan};
        uint64_t wire0 = fy_session_wire_bytes(s);
        double t0 = fy_now();

        st.final = m.final;
        if (m.final)
            memcpy(m.final_bm, m.dirty, m.nwords * 8);
        if ((rc = run_round(&m, &st)) < 0)
            goto out;
        memset(m.dirty, 0, m.nwords * 8);
        st.seconds = fy_now() - t0;
        st.wire_bytes = fy_session_wire_bytes(s) - wire0;
        st.throughput = st.seconds > 0 ? (double)st.wire_bytes / st.seconds : 0;
        st.page_rate = st.seconds > 0 ? (double)ndirty / st.seconds : 0;
        /* A round too small to measure the link keeps the last estimate. */
        if (st.wire_bytes >= (1u << 20) && st.throughput > 0)
            link_rate = st.throughput;
        add_round(&tot, &st);
        if (m.final) {
            if (m.p.on_round)
                m.p.on_round(m.p.ctx, &st);
            break;
        }

        /* What is left, and would it fit the downtime target? */
        double since = fy_now();
        if ((rc = collect_dirty(&m, &ndirty, &scan)) < 0)
            goto out;
        double log_period = st.seconds + (fy_now() - since);
        st.dirty_rate = log_period > 0 ? (double)ndirty / log_period : 0;
        /* Dirty pages are mostly new content: count each as a whole page
         * on the wire, at the rate the link showed (as QEMU's bandwidth x
         * downtime limit does).  Zero and duplicate pages only make the
         * final round shorter than this. */
        st.expected_downtime =
            (link_rate > 0 ? (double)ndirty * (FY_PAGE_SIZE + FY_PAGES_DESC_SIZE) / link_rate
                           : 0) +
            (m.p.dirty_sync ? 0 : scan);
        if (m.p.on_round)
            m.p.on_round(m.p.ctx, &st);
        if (cancelled(&m)) {
            rc = fy_error(FY_E_CANCELLED, "migration of %s cancelled before "
                          "switchover", fy_region_name(src));
            goto out;
        }
        bool fits = st.expected_downtime * 1000.0 <= (double)m.p.downtime_ms;
        if (fits || m.round >= m.p.max_rounds) {
            tot.converged = fits;
            if (m.p.pause && (rc = m.p.pause(m.p.ctx)) < 0)
                goto out;
            if (rc > 0)
                continue; /* the writer stops later: pre-copy what it wrote */
            t_pause = fy_now();
            m.final = true;
            /* Writes that landed between the last look and the pause. */
            if (m.p.dirty_sync) {
                if ((rc = collect_dirty(&m, &ndirty, &scan)) < 0)
                    goto out;
            } else {
                memset(m.dirty, 0, m.nwords * 8);
                if ((rc = collect_dirty(&m, &ndirty, &scan)) < 0)
                    goto out;
                m.all_hashed = true;
            }
        }
    }

    double tv = fy_now();
    if ((rc = verify(&m, &tot)) < 0)
        goto out;
    tot.verify_seconds = fy_now() - tv;
    struct fy_op done = {.type = FY_OP_DONE};
    for (unsigned i = 0; i < s->nstreams; i++)
        if ((rc = fy_stream_send_all(s->streams[i], &done, 1)) < 0)
            goto out;
    if ((rc = release_pages(&m, -1)) < 0)
        goto out;
    tot.seconds = fy_now() - t_start;
    tot.downtime = t_pause > 0 ? fy_now() - t_pause : 0;
    rc = 0;
out:
    tot.wire_bytes = fy_session_wire_bytes(s);
    if (rc < 0 && rc != -FY_E_PEER && rc != -FY_E_CLOSED) {
        /* Tell the target why, so its log says so too. */
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", fy_error_detail());
        int saved = rc;
        fy_send_error(s->streams[0], rc, msg);
        release_pages(&m, RELEASE_WAIT_MS);
        rc = fy_error(-saved, "%s", msg);
    } else if (rc < 0) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", fy_error_detail());
        release_pages(&m, RELEASE_WAIT_MS);
        rc = fy_error(-rc, "%s", msg);
    }
    if (out)
        *out = tot;
    src_fini(&m);
    return rc;
}
