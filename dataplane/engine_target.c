/* Target half of the migration engine: places pages as they arrive,
 * resolves references at the end of each round, answers the source's
 * rounds and verification. */
#include <stdlib.h>
#include <string.h>

#include "dataplane/digest.h"
#include "dataplane/engine_internal.h"
#include "dataplane/protocol.h"

#define RX_BURST 256
#define POLL_MS 500
#define DEFAULT_IDLE_MS 60000

struct tgt;

struct ref {
    uint64_t page;
    fy_hash128 hash;
};

/* One receiver per stream; stream 0's runs on the caller's thread and also
 * holds the control conversation. */
struct receiver {
    struct tgt *m;
    struct fy_stream *stream;
    pthread_t tid;
    struct fy_round_counts got; /* what arrived this round */
    struct ref *refs;           /* references waiting for the round's end */
    size_t nrefs, cap;
    uint64_t pages[RX_BURST];   /* PAGE operations not yet written */
    const void *data[RX_BURST];
    fy_hash128 hashes[RX_BURST];
    bool unchecked[RX_BURST];   /* the transport left the hash to us */
    bool placed[RX_BURST];      /* the transport wrote it in place */
    uint64_t copy_pages[RX_BURST];
    const void *copy_data[RX_BURST];
    unsigned npending;
};

struct tgt {
    struct fy_region *r;
    struct fy_session *s;
    struct fy_target_params p;
    uint64_t npages;
    struct fy_held idx;       /* page map (what the target holds) + index */
    fy_hash128 zero_hash;
    struct receiver *rx;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned ended;       /* other streams that reached the round's end */
    uint64_t generation;  /* bumped when a round is resolved */
    pthread_mutex_t tx0;  /* sends on stream 0 */
    struct fy_first_error err;
    volatile int stop;
    uint64_t *claimed;    /* pages an operation of this round named */
    uint64_t *settled;    /* pages whose bytes for this round are in place */
    int lost_rc;          /* another stream was closed by the source */
    char lost_detail[512];
    uint8_t *page_buf;    /* one page, for remote regions */
    struct fy_round_stats round; /* counted as operations arrive */
    uint64_t wire_mark;          /* wire bytes at the last round's end */
    struct fy_migration_stats tot;
};

/* Records the first failure, tells the source, and wakes every thread. */
static void fail(struct tgt *m, int rc)
{
    bool first;

    pthread_mutex_lock(&m->err.lock);
    first = m->err.code == 0;
    pthread_mutex_unlock(&m->err.lock);
    fy_first_error_set(&m->err, rc);
    if (first && rc != -FY_E_PEER && rc != -FY_E_CANCELLED) {
        pthread_mutex_lock(&m->tx0);
        fy_send_error(m->s->streams[0], rc, m->err.detail);
        pthread_mutex_unlock(&m->tx0);
    }
    pthread_mutex_lock(&m->lock);
    m->stop = 1;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    fy_session_shutdown(m->s);
}

/* ---- one operation per page per round ---------------------------------- */

/* A round names each page at most once; a source that names one twice is
 * broken, and letting it through would let two writers race on a page. */
static int claim(struct tgt *m, struct receiver *w, uint64_t page)
{
    uint64_t bit = 1ull << (page & 63);

    if (__atomic_fetch_or(&m->claimed[page >> 6], bit, __ATOMIC_RELAXED) & bit)
        return fy_error(FY_E_PROTO,
                        "stream %u: the source sent offset 0x%llx twice in one "
                        "round", w->stream->index,
                        (unsigned long long)(page << FY_PAGE_SHIFT));
    return 0;
}

/* The page's bytes for this round are in place and its page map entry is
 * their hash; nothing else writes it before the round ends. */
static void settle(struct tgt *m, uint64_t page)
{
    __atomic_fetch_or(&m->settled[page >> 6], 1ull << (page & 63), __ATOMIC_RELEASE);
}

static bool settled(struct tgt *m, uint64_t page)
{
    return (__atomic_load_n(&m->settled[page >> 6], __ATOMIC_ACQUIRE) >> (page & 63)) & 1;
}

static void new_round(struct tgt *m)
{
    size_t bytes = (m->npages + 63) / 64 * 8;
    memset(m->claimed, 0, bytes);
    memset(m->settled, 0, bytes);
}

/* ---- placing pages ---------------------------------------------------- */

static int page_checksum_error(struct receiver *w, unsigned i, fy_hash128 got)
{
    return fy_error(FY_E_CHECKSUM,
                    "stream %u: the page for offset 0x%llx hashes to "
                    "%016llx%016llx, its frame says %016llx%016llx",
                    w->stream->index,
                    (unsigned long long)(w->pages[i] << FY_PAGE_SHIFT),
                    (unsigned long long)got.hi, (unsigned long long)got.lo,
                    (unsigned long long)w->hashes[i].hi,
                    (unsigned long long)w->hashes[i].lo);
}

/* Writes the pending pages.  Pages the transport did not check are checked
 * here: in place for a mapped region, so the page map records the hash of
 * the bytes this side really holds (the digest relies on it); before the
 * write for a remote one.  A page that fails its check stays inside the
 * region, and the session ends. */
static int flush_pages(struct receiver *w)
{
    struct tgt *m = w->m;
    const uint8_t *base = fy_region_base(m->r);
    int rc;

    if (!w->npending)
        return 0;
    if (!base)
        for (unsigned i = 0; i < w->npending; i++) {
            fy_hash128 got;
            if (w->unchecked[i] &&
                !fy_hash_eq(got = fy_page_hash(w->data[i]), w->hashes[i]))
                return page_checksum_error(w, i, got);
        }
    /* Pages the transport placed already sit where they belong. */
    unsigned copy = 0;
    for (unsigned i = 0; i < w->npending; i++)
        if (!w->placed[i]) {
            w->copy_pages[copy] = w->pages[i];
            w->copy_data[copy++] = w->data[i];
        }
    if (copy && (rc = fy_region_write_pages(m->r, w->copy_pages, w->copy_data, copy)) < 0)
        return rc;
    if (base)
        for (unsigned i = 0; i < w->npending; i++) {
            fy_hash128 got;
            if (w->unchecked[i] &&
                !fy_hash_eq(got = fy_page_hash(base + (w->pages[i] << FY_PAGE_SHIFT)),
                            w->hashes[i])) {
                fy_pagemap_set(&m->idx.map, w->pages[i], got);
                return page_checksum_error(w, i, got);
            }
        }
    for (unsigned i = 0; i < w->npending; i++) {
        fy_pagemap_set(&m->idx.map, w->pages[i], w->hashes[i]);
        fy_dedup_insert(m->idx.dedup, w->hashes[i],
                        (struct fy_dedup_loc){(uint32_t)m->idx.space, w->pages[i]});
        settle(m, w->pages[i]);
    }
    w->npending = 0;
    return 0;
}

/* Zeroes the pages of the range that do not already read as zero. */
static int apply_zero(struct tgt *m, uint64_t offset, uint64_t len)
{
    uint64_t first = offset >> FY_PAGE_SHIFT, end = first + (len >> FY_PAGE_SHIFT);
    uint64_t run = 0, nrun = 0;
    int rc;

    for (uint64_t p = first; p <= end; p++) {
        bool need = p < end && !fy_hash_eq(fy_pagemap_get(&m->idx.map, p), m->zero_hash);
        if (need) {
            if (!nrun)
                run = p;
            nrun++;
            fy_pagemap_set(&m->idx.map, p, m->zero_hash);
            continue;
        }
        if (nrun) {
            rc = fy_region_zero(m->r, run << FY_PAGE_SHIFT, nrun << FY_PAGE_SHIFT);
            if (rc < 0)
                return rc;
            nrun = 0;
        }
    }
    return 0;
}

static int queue_ref(struct receiver *w, uint64_t page, fy_hash128 h)
{
    if (w->nrefs == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 4096;
        struct ref *n = realloc(w->refs, cap * sizeof(*n));
        if (!n)
            return fy_error(FY_E_NOMEM, "no memory for %zu references", cap);
        w->refs = n;
        w->cap = cap;
    }
    w->refs[w->nrefs++] = (struct ref){page, h};
    return 0;
}

/* The content hash of page 'page' of region 'r' as it is now. */
static int hash_page(struct tgt *m, struct fy_region *r, uint64_t page,
                     fy_hash128 *h)
{
    const uint8_t *base = fy_region_base(r);
    int rc;

    if (base) {
        *h = fy_page_hash(base + (page << FY_PAGE_SHIFT));
        return 0;
    }
    if ((rc = fy_region_read_pages(r, &page, 1, m->page_buf)) < 0)
        return rc;
    *h = fy_page_hash(m->page_buf);
    return 0;
}

/* Copies content 'h' to 'page' from wherever this host holds it and checks
 * the bytes.  Returns 1 if placed, 0 if the content is not here. */
static int resolve_one(struct tgt *m, uint64_t page, fy_hash128 h)
{
    struct fy_dedup_loc loc;
    struct fy_region *from;
    fy_hash128 now;
    int rc;

    if (!fy_dedup_lookup(m->idx.dedup, h, &loc))
        return 0;
    from = loc.space == (uint32_t)m->idx.space ? m->r : NULL;
    if (!from) {
        /* Another region known to this host (gang dedup). */
        if ((rc = fy_dedup_space_owner(m->idx.dedup, (int)loc.space, (void **)&from)) < 0 ||
            !from)
            return 0;
        if ((rc = fy_region_read_pages(from, &loc.page, 1, m->page_buf)) < 0)
            return 0;
        const void *d = m->page_buf;
        if ((rc = fy_region_write_pages(m->r, &page, &d, 1)) < 0)
            return rc;
    } else {
        /* This side's page map is the truth about its own bytes and
         * nothing else writes them now: the copy holds h. */
        if ((rc = fy_region_copy_page(m->r, page, loc.page)) < 0)
            return rc;
        fy_pagemap_set(&m->idx.map, page, h);
        return 1;
    }
    /* Another migration's region may change under us: check the copy. */
    if ((rc = hash_page(m, m->r, page, &now)) < 0)
        return rc;
    if (!fy_hash_eq(now, h)) {
        fy_pagemap_set(&m->idx.map, page, now);
        return 0;
    }
    fy_pagemap_set(&m->idx.map, page, h);
    return 1;
}

/* Resolves every queued reference; the offsets it could not resolve are
 * returned in *missed (malloc'd). */
static int resolve_refs(struct tgt *m, uint64_t **missed, uint64_t *nmissed)
{
    uint64_t total = 0, n = 0;
    int rc;

    for (unsigned i = 0; i < m->s->nstreams; i++)
        total += m->rx[i].nrefs;
    *missed = NULL;
    *nmissed = 0;
    for (unsigned i = 0; i < m->s->nstreams; i++) {
        struct receiver *w = &m->rx[i];
        for (size_t k = 0; k < w->nrefs; k++) {
            rc = resolve_one(m, w->refs[k].page, w->refs[k].hash);
            if (rc < 0)
                return rc;
            if (rc == 1)
                continue;
            if (!*missed && !(*missed = malloc(total * sizeof(uint64_t))))
                return fy_error(FY_E_NOMEM, "no memory for missed references");
            (*missed)[n++] = w->refs[k].page << FY_PAGE_SHIFT;
        }
        w->nrefs = 0;
    }
    *nmissed = n;
    return 0;
}

/* ---- the round barrier ------------------------------------------------ */

static int check_counts(struct receiver *w, const struct fy_op *op)
{
    const struct fy_round_counts *c = op->data;

    if (c->pages != w->got.pages || c->zero_pages != w->got.zero_pages ||
        c->ref_pages != w->got.ref_pages || c->ops != w->got.ops)
        return fy_error(FY_E_PROTO,
                        "stream %u, round %llu: the source sent %llu pages, "
                        "%llu zero, %llu references in %llu operations, but "
                        "%llu, %llu, %llu in %llu arrived",
                        w->stream->index, (unsigned long long)op->offset,
                        (unsigned long long)c->pages, (unsigned long long)c->zero_pages,
                        (unsigned long long)c->ref_pages, (unsigned long long)c->ops,
                        (unsigned long long)w->got.pages,
                        (unsigned long long)w->got.zero_pages,
                        (unsigned long long)w->got.ref_pages,
                        (unsigned long long)w->got.ops);
    memset(&w->got, 0, sizeof(w->got));
    return 0;
}

/* A non-zero stream waits here until stream 0 has resolved the round. */
static int wait_resolved(struct tgt *m)
{
    pthread_mutex_lock(&m->lock);
    uint64_t gen = m->generation;
    m->ended++;
    pthread_cond_broadcast(&m->cond);
    while (m->generation == gen && !m->stop)
        pthread_cond_wait(&m->cond, &m->lock);
    pthread_mutex_unlock(&m->lock);
    return m->stop ? -FY_E_CANCELLED : 0;
}

static int send_control(struct tgt *m, const struct fy_op *ops, unsigned n)
{
    pthread_mutex_lock(&m->tx0);
    int rc = fy_stream_send_all(m->s->streams[0], ops, n);
    pthread_mutex_unlock(&m->tx0);
    return rc;
}

/* Stream 0 at a ROUND_END found another stream closed by the source.  A
 * source that failed sends its reason on stream 0 before closing, possibly
 * after this ROUND_END (its other senders may still have been finishing
 * the round), so look for it there briefly before reporting a bare close. */
static int lost_verdict(struct tgt *m)
{
    struct fy_stream *s0 = m->s->streams[0];
    double deadline = fy_now() + 2.0;
    struct fy_op op;

    while (fy_now() < deadline) {
        int n = s0->rx_burst(s0, &op, 1, 100);
        if (n < 0)
            break;
        if (n == 1 && op.type == FY_OP_ERROR)
            return fy_error(FY_E_PEER, "the source %s stopped the migration: %.*s (%s)",
                            m->s->peer, (int)op.len, (const char *)op.data,
                            fy_errname((int)op.offset));
    }
    return fy_error(-m->lost_rc, "%s", m->lost_detail);
}

/* Stream 0 at a ROUND_END: wait for the other streams, resolve, answer. */
static int end_round(struct tgt *m, const struct fy_op *end)
{
    bool fixup = end->flags & FY_OP_F_FIXUP;
    uint64_t *missed = NULL, nmissed = 0;
    int rc;

    if (!fixup) {
        pthread_mutex_lock(&m->lock);
        while (m->ended < m->s->nstreams - 1 && !m->stop && !m->lost_rc)
            pthread_cond_wait(&m->cond, &m->lock);
        pthread_mutex_unlock(&m->lock);
        if (m->stop)
            return -FY_E_CANCELLED;
        if (m->lost_rc)
            return lost_verdict(m);
    }
    if ((rc = resolve_refs(m, &missed, &nmissed)) < 0)
        goto out;
    new_round(m);

    struct fy_round_ack ack = {
        .applied = m->round.pages_sent + m->round.pages_zero + m->round.pages_dup - nmissed,
        .misses = nmissed};
    struct fy_op op = {.type = FY_OP_ROUND_ACK, .offset = end->offset,
                       .data = &ack, .len = sizeof(ack)};
    if ((rc = send_control(m, &op, 1)) < 0)
        goto out;
    for (uint64_t i = 0; i < nmissed; i += FY_MISS_MAX_PER_FRAME) {
        uint64_t k = nmissed - i < FY_MISS_MAX_PER_FRAME ? nmissed - i
                                                          : FY_MISS_MAX_PER_FRAME;
        struct fy_op miss = {.type = FY_OP_MISS, .data = missed + i, .len = k * 8};
        if ((rc = send_control(m, &miss, 1)) < 0)
            goto out;
    }
    if (fixup) {
        /* Pages sent again for references this side could not resolve. */
        m->tot.pages_resent += m->round.pages_sent;
        m->tot.pages_sent += m->round.pages_sent;
    } else {
        m->round.round = (unsigned)end->offset;
        m->round.final = end->flags & FY_OP_F_FINAL;
        m->round.pages_dup -= nmissed;
        m->round.wire_bytes = fy_session_wire_bytes(m->s) - m->wire_mark;
        m->wire_mark += m->round.wire_bytes;
        m->tot.rounds = m->round.round;
        m->tot.pages_sent += m->round.pages_sent;
        m->tot.pages_zero += m->round.pages_zero;
        m->tot.pages_dup += m->round.pages_dup;
        if (m->p.on_round)
            m->p.on_round(m->p.ctx, &m->round);
    }
    memset(&m->round, 0, sizeof(m->round));
    /* Release the other streams into the next round. */
    pthread_mutex_lock(&m->lock);
    if (!fixup) {
        m->ended = 0;
        m->generation++;
        pthread_cond_broadcast(&m->cond);
    }
    pthread_mutex_unlock(&m->lock);
    rc = 0;
out:
    free(missed);
    return rc;
}

static int answer_verify(struct tgt *m, const struct fy_op *req)
{
    fy_hash128 digest;
    double t0 = fy_now();
    int rc;

    /* The page map holds the hash of every page as placed (checked in
     * place, zeroed, or copied and re-hashed); only pages it does not know
     * are read. */
    uint64_t *known = NULL, nunknown = 0;
    for (uint64_t p = 0; p < m->npages; p++)
        nunknown += fy_hash_is_unknown(fy_pagemap_get(&m->idx.map, p));
    if (nunknown) {
        known = calloc((m->npages + 63) / 64, 8);
        if (!known)
            return fy_error(FY_E_NOMEM, "no memory for the digest bitmap");
        for (uint64_t p = 0; p < m->npages; p++)
            if (!fy_hash_is_unknown(fy_pagemap_get(&m->idx.map, p)))
                known[p >> 6] |= 1ull << (p & 63);
    }
    rc = fy_digest_pages(m->r, &m->idx.map, known, 0, &digest);
    free(known);
    if (rc < 0)
        return rc;
    m->tot.verify_seconds = fy_now() - t0;
    m->tot.digest = digest;
    bool same = fy_hash_eq(digest, req->hash);
    struct fy_op op = {.type = FY_OP_VERIFY_RESULT, .hash = digest,
                       .offset = same ? 1 : 0};
    if ((rc = send_control(m, &op, 1)) < 0)
        return rc;
    if (!same)
        return fy_error(FY_E_VERIFY,
                        "region digests differ: source %016llx%016llx, target "
                        "%016llx%016llx; the target copy is not usable",
                        (unsigned long long)req->hash.hi,
                        (unsigned long long)req->hash.lo,
                        (unsigned long long)digest.hi, (unsigned long long)digest.lo);
    m->tot.verified = true;
    return 0;
}

/* ---- receiving -------------------------------------------------------- */

/* A reference whose content already settled in this region this round is
 * copied now, spreading the work over the round; any other waits for the
 * round's end, when nothing moves. */
static int place_ref(struct receiver *w, uint64_t page, fy_hash128 h)
{
    struct tgt *m = w->m;
    struct fy_dedup_loc loc;
    int rc;

    if ((rc = claim(m, w, page)) < 0)
        return rc;
    if (fy_dedup_lookup(m->idx.dedup, h, &loc) && loc.space == (uint32_t)m->idx.space &&
        loc.page != page && settled(m, loc.page)) {
        if ((rc = fy_region_copy_page(m->r, page, loc.page)) < 0)
            return rc;
        fy_pagemap_set(&m->idx.map, page, h);
        settle(m, page);
        return 0;
    }
    return queue_ref(w, page, h);
}

/* Handles one operation.  Returns 1 when the stream is done. */
static int handle(struct receiver *w, const struct fy_op *op)
{
    struct tgt *m = w->m;
    bool control = w->stream->index == 0;
    int rc;

    if (op->type != FY_OP_PAGE && (rc = flush_pages(w)) < 0)
        return rc;
    switch (op->type) {
    case FY_OP_PAGE:
        if ((rc = claim(m, w, op->offset >> FY_PAGE_SHIFT)) < 0)
            return rc;
        w->pages[w->npending] = op->offset >> FY_PAGE_SHIFT;
        w->data[w->npending] = op->data;
        w->hashes[w->npending] = op->hash;
        w->unchecked[w->npending] = op->flags & FY_OP_F_UNCHECKED;
        fy_dedup_prefetch(m->idx.dedup, op->hash); /* inserted at the flush */
        w->placed[w->npending] = (op->flags & FY_OP_F_PLACED) &&
                                 op->data == (const uint8_t *)fy_region_base(m->r) + op->offset;
        if (++w->npending == RX_BURST && (rc = flush_pages(w)) < 0)
            return rc;
        w->got.pages++;
        w->got.ops++;
        __atomic_fetch_add(&m->round.pages_sent, 1, __ATOMIC_RELAXED);
        return 0;
    case FY_OP_ZERO:
        for (uint64_t p = op->offset >> FY_PAGE_SHIFT,
                      e = p + (op->len >> FY_PAGE_SHIFT); p < e; p++)
            if ((rc = claim(m, w, p)) < 0)
                return rc;
        w->got.zero_pages += op->len >> FY_PAGE_SHIFT;
        w->got.ops++;
        __atomic_fetch_add(&m->round.pages_zero, op->len >> FY_PAGE_SHIFT,
                           __ATOMIC_RELAXED);
        return apply_zero(m, op->offset, op->len);
    case FY_OP_REF:
        w->got.ref_pages++;
        w->got.ops++;
        __atomic_fetch_add(&m->round.pages_dup, 1, __ATOMIC_RELAXED);
        return place_ref(w, op->offset >> FY_PAGE_SHIFT, op->hash);
    case FY_OP_ROUND_END:
        if ((rc = check_counts(w, op)) < 0)
            return rc;
        if (!control) {
            if (op->flags & FY_OP_F_FIXUP)
                return fy_error(FY_E_PROTO, "fix-up round on stream %u",
                                w->stream->index);
            return wait_resolved(m);
        }
        return end_round(m, op);
    case FY_OP_VERIFY:
        if (!control)
            break;
        return answer_verify(m, op);
    case FY_OP_DONE:
        return 1;
    case FY_OP_ERROR:
        return fy_error(FY_E_PEER, "the source %s stopped the migration: %.*s (%s)",
                        m->s->peer, (int)op->len, (const char *)op->data,
                        fy_errname((int)op->offset));
    default:
        break;
    }
    return fy_error(FY_E_PROTO, "unexpected %s from the source on stream %u",
                    fy_proto_type_name(op->type), w->stream->index);
}

static int receive_loop(struct receiver *w)
{
    struct tgt *m = w->m;
    struct fy_op ops[RX_BURST];
    int idle_ms = m->p.idle_timeout_ms ? m->p.idle_timeout_ms : DEFAULT_IDLE_MS;
    int quiet = 0;

    for (;;) {
        int n = w->stream->rx_burst(w->stream, ops, RX_BURST, POLL_MS);
        if (m->stop)
            return -FY_E_CANCELLED;
        if (n < 0)
            return n;
        if (n == 0) {
            if (m->p.cancel && *m->p.cancel)
                return fy_error(FY_E_CANCELLED, "migration cancelled at the target");
            quiet += POLL_MS;
            if (quiet >= idle_ms)
                return fy_error(FY_E_TIMEOUT, "nothing from the source %s on "
                                "stream %u for %d ms", m->s->peer,
                                w->stream->index, idle_ms);
            continue;
        }
        quiet = 0;
        for (int i = 0; i < n; i++) {
            int rc = handle(w, &ops[i]);
            if (rc != 0)
                return rc;
        }
        /* Page data points into the transport's buffer: place it now. */
        int rc = flush_pages(w);
        if (rc < 0)
            return rc;
    }
}

static void *receiver_main(void *arg)
{
    struct receiver *w = arg;
    char name[16];
    int rc;

    /* Named for top -H and perf: "fy-recv-N". */
    snprintf(name, sizeof(name), "fy-recv-%u", w->stream->index);
    pthread_setname_np(pthread_self(), name);
    rc = receive_loop(w);

    if (rc == -FY_E_CLOSED || rc == -FY_E_TRUNCATED) {
        /* The source closed this stream.  If it failed it said why on
         * stream 0, which may not have been read yet: leave the verdict to
         * stream 0 rather than report a bare "closed". */
        struct tgt *m = w->m;
        pthread_mutex_lock(&m->lock);
        if (!m->lost_rc) {
            m->lost_rc = rc;
            snprintf(m->lost_detail, sizeof(m->lost_detail), "%s", fy_error_detail());
        }
        pthread_cond_broadcast(&m->cond);
        pthread_mutex_unlock(&m->lock);
    } else if (rc < 0) {
        fail(w->m, rc);
    }
    return NULL;
}

/* ---- setup ------------------------------------------------------------ */

static int tgt_init(struct tgt *m, struct fy_region *r, struct fy_session *s,
                    const struct fy_target_params *p)
{
    int rc;

    memset(m, 0, sizeof(*m));
    m->idx.space = -1;
    m->r = r;
    m->s = s;
    if (p)
        m->p = *p;
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    pthread_mutex_init(&m->tx0, NULL);
    fy_first_error_init(&m->err);
    m->npages = fy_region_pages(r);
    m->zero_hash = fy_hash_zero_page();
    if ((rc = fy_held_open(&m->idx, r, s, m->p.dedup, m->p.keep)) < 0)
        return rc;
    if (m->p.fresh)
        for (uint64_t i = 0; i < m->npages; i++)
            m->idx.map.held[i] = m->zero_hash;
    m->rx = calloc(s->nstreams, sizeof(*m->rx));
    m->page_buf = malloc(FY_PAGE_SIZE);
    m->claimed = calloc((m->npages + 63) / 64, 8);
    m->settled = calloc((m->npages + 63) / 64, 8);
    if (!m->rx || !m->page_buf || !m->claimed || !m->settled)
        return fy_error(FY_E_NOMEM, "no memory for %u receivers", s->nstreams);
    for (unsigned i = 0; i < s->nstreams; i++) {
        m->rx[i].m = m;
        m->rx[i].stream = s->streams[i];
    }
    return 0;
}

static void tgt_fini(struct tgt *m)
{
    if (m->rx)
        for (unsigned i = 0; i < m->s->nstreams; i++)
            free(m->rx[i].refs);
    free(m->rx);
    free(m->page_buf);
    free(m->claimed);
    free(m->settled);
    fy_held_close(&m->idx);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->tx0);
}

int fy_migrate_target(struct fy_region *dst, struct fy_session *s,
                      const struct fy_target_params *p,
                      struct fy_migration_stats *out)
{
    struct tgt m;
    unsigned started = 1;
    double t0 = fy_now();
    int rc;

    if (!dst || !s)
        return fy_error(FY_E_INVAL, "receive: no region or session");
    if ((rc = tgt_init(&m, dst, s, p)) < 0) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", fy_error_detail());
        fy_send_error(s->streams[0], rc, msg);
        fy_error(-rc, "%s", msg);
        goto out;
    }
    m.tot.region_bytes = fy_region_size(dst);
    for (unsigned i = 1; i < s->nstreams; i++) {
        if (pthread_create(&m.rx[i].tid, NULL, receiver_main, &m.rx[i]) != 0) {
            fail(&m, fy_error_sys("cannot start receiver %u", i));
            break;
        }
        started++;
    }
    if (!m.stop) {
        rc = receive_loop(&m.rx[0]);
        if (rc < 0)
            fail(&m, rc);
    }
    for (unsigned i = 1; i < started; i++)
        pthread_join(m.rx[i].tid, NULL);
    rc = fy_first_error_get(&m.err);
    if (rc < 0)
        fy_first_error_raise(&m.err);
out:
    m.tot.seconds = fy_now() - t0;
    m.tot.wire_bytes = fy_session_wire_bytes(s);
    if (out)
        *out = m.tot;
    tgt_fini(&m);
    return rc;
}
