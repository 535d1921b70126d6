/* Stream mode, source side: QEMU's migration channels in, Ferry streams
 * out (include/ferry/qstream.h; docs/qstream.md).
 *
 * Per channel two threads: 'forward' reads QEMU's socket, parses multifd
 * packets and sends their pages classified; 'reverse' reads what the
 * target sends back (acknowledgements; on stream 0 QEMU's return path).
 *
 * The mirror.  The source keeps what the target's cache holds at each key
 * (page map + dedup index), so a repeated content can go as a REF naming
 * the cache page that holds it.  Streams are not ordered with respect to
 * each other, so two rules keep every REF resolvable without the source
 * ever waiting:
 *   - a REF on stream r may name page L only if the PAGE that filled L was
 *     sent on r itself, or the target has acknowledged processing it
 *     (tag[L]: writer stream and operation index);
 *   - a PAGE may overwrite key K only if no REF naming K on another stream
 *     is still unprocessed (pin[K]), and K's previous PAGE, if sent on
 *     another stream, was processed (so the two writes cannot land in the
 *     wrong order).  Otherwise the page goes whole but uncached (DATA), and
 *     the mirror keeps K's old content, which is what the target keeps.
 * The target acknowledges, per stream, how many cache operations (PAGE,
 * REF) it processed; only those are counted, so a transport may deliver
 * the DATA between them as it likes.
 * All decisions are taken under one lock, so they form one order. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "dataplane/protocol.h"
#include "dataplane/qstream_internal.h"
#include "ferry/classifier.h"
#include "ferry/error.h"

#define DEFAULT_TIMEOUT_MS 30000
#define POLL_MS 200
#define BATCH 256
#define BUF_CAP (2u << 20)
#define ZERO_MERGE_MAX (512u * FY_PAGE_SIZE)
#define IDX_MASK ((1ull << 56) - 1)
#define PIN_MULTI (0xffull << 56)
#define NO_KEY UINT64_MAX
/* Chunks one RAM block may span: 2 TiB. */
#define MAX_RB_CHUNKS (1u << 20)

/* The owner recorded for a kept map of a finished stream-mode migration:
 * content the target keeps unchanged, safe to reference from another
 * migration.  Live migrations' maps have another owner. */
static const char settled_marker = 's';
static const char live_marker = 'l';

struct rb {
    char name[FY_MFD_RAMBLOCK_MAX + 1];
    uint32_t *chunk; /* key chunk + 1 per 2 MiB of the block; 0: none */
    size_t nchunk;
};

struct src;

struct chan {
    struct src *q;
    unsigned index;
    int fd;
    bool multifd;
    struct fy_stream *st;
    pthread_t fwd, rev;
    bool fwd_started, rev_started;
    /* forward thread */
    uint64_t next_index; /* cache operations (PAGE, REF) sent so far */
    struct fy_op ops[BATCH];
    uint8_t xref[BATCH][16];
    unsigned nops;
    uint8_t *buf;
    size_t start, end;
    struct fy_mfd_parser parser;
    bool raw_reported;
    char status[320];
    uint64_t rb_packet;
    int rb;
    uint64_t bounce[FY_PAGE_SIZE / 8];
    struct recent *recent; /* RECENT entries, under q->lock */
    XXH3_state_t *sum;     /* of every byte QEMU sent on the channel */
    uint64_t sum_len;
    struct fy_qstream_stats st_local;
    /* shared */
    uint64_t acked;    /* atomic: cache operations the target processed */
    uint64_t last_ref; /* under q->lock: index of the last REF sent */
};

struct src {
    struct fy_session *s;
    const struct fy_qstream_source_params *p;
    unsigned nch;
    struct chan *ch;
    int timeout_ms;
    int listen_fd;
    bool own_listen;
    /* the mirror, under 'lock' */
    pthread_mutex_t lock;
    struct fy_pagemap map;
    struct fy_pagemap *pub;
    uint64_t *tag, *pin;
    uint64_t npages;
    struct fy_dedup *dedup;
    bool own_dedup;
    int space;
    struct rb rbs[FY_QS_MAX_RAMBLOCKS];
    unsigned nrb;
    uint64_t next_chunk, nchunks;
    /* run state (tx0: stream 0's sender is its forward thread or fail()) */
    struct fy_qs_run run;
    bool done;           /* the target's DONE arrived, under run.mu */
};

static bool stopped(struct src *q)
{
    return fy_qs_stopped(&q->run);
}

static uint64_t acked(struct src *q, unsigned x)
{
    return __atomic_load_n(&q->ch[x].acked, __ATOMIC_ACQUIRE);
}

static void fail(struct src *q, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the first failure, tells the target, and unblocks every thread:
 * the session and QEMU's sockets are shut down, so QEMU's migration fails
 * and its guest runs on. */
static void fail(struct src *q, int code, const char *fmt, ...)
{
    va_list ap;
    bool first;

    va_start(ap, fmt);
    first = fy_qs_failv(&q->run, q->s, code, fmt, ap);
    va_end(ap);
    for (unsigned i = 0; first && i < q->nch; i++)
        if (q->ch[i].fd >= 0)
            shutdown(q->ch[i].fd, SHUT_RDWR);
}

/* ---- the mirror -------------------------------------------------------- */

static uint64_t pack(unsigned stream, uint64_t index)
{
    return (uint64_t)(stream + 1) << 56 | (index & IDX_MASK);
}

/* The operation 'v' (pack()ed) is processed at the target, or was sent on
 * stream r, so that r's later operations come after it. */
static bool settled(struct src *q, uint64_t v, unsigned r)
{
    unsigned w = (unsigned)(v >> 56) - 1;

    return w == r || acked(q, w) >= (v & IDX_MASK);
}

static bool space_settled(struct src *q, uint32_t space)
{
    void *owner = NULL;

    return fy_dedup_space_owner(q->dedup, (int)space, &owner) == 0 &&
           owner == &settled_marker;
}

/* May stream w write key k now (see the rules at the top)? */
static bool overwrite_ok(struct src *q, uint64_t k, unsigned w)
{
    uint64_t t = q->tag[k], pn = q->pin[k];

    if (t && !settled(q, t, w))
        return false;
    if (!pn)
        return true;
    if (pn == PIN_MULTI) {
        for (unsigned x = 0; x < q->nch; x++)
            if (x != w && acked(q, x) < q->ch[x].last_ref)
                return false;
        return true;
    }
    return settled(q, pn, w);
}

static void pin_add(struct src *q, uint64_t l, unsigned r, uint64_t j)
{
    uint64_t pn = q->pin[l];

    q->ch[r].last_ref = j;
    if (pn == PIN_MULTI)
        return;
    q->pin[l] = pn == 0 || settled(q, pn, r) ? pack(r, j) : PIN_MULTI;
}

static int rb_find(struct src *q, const char *name)
{
    for (unsigned i = 0; i < q->nrb; i++)
        if (strcmp(q->rbs[i].name, name) == 0)
            return (int)i;
    if (q->nrb == FY_QS_MAX_RAMBLOCKS)
        return -1;
    snprintf(q->rbs[q->nrb].name, sizeof(q->rbs[q->nrb].name), "%s", name);
    return (int)q->nrb++;
}

/* The key page of (RAM block, offset), laying out a new 2 MiB chunk of the
 * key space when the block's chunk has none; NO_KEY when the space is
 * full. */
static uint64_t key_of(struct src *q, struct chan *c, const char *name,
                       uint64_t off, uint64_t packet)
{
    struct rb *b;
    uint64_t ci = off >> FY_QS_CHUNK_SHIFT;

    if (c->rb_packet != packet) {
        c->rb = rb_find(q, name);
        c->rb_packet = packet;
    }
    if (c->rb < 0 || ci >= MAX_RB_CHUNKS)
        return NO_KEY;
    b = &q->rbs[c->rb];
    if (ci >= b->nchunk) {
        size_t n = b->nchunk ? b->nchunk : 64;
        uint32_t *g;

        while (n <= ci)
            n *= 2;
        g = realloc(b->chunk, n * sizeof(*g));
        if (!g)
            return NO_KEY;
        memset(g + b->nchunk, 0, (n - b->nchunk) * sizeof(*g));
        b->chunk = g;
        b->nchunk = n;
    }
    if (!b->chunk[ci]) {
        if (q->next_chunk >= q->nchunks)
            return NO_KEY;
        b->chunk[ci] = (uint32_t)++q->next_chunk;
    }
    return ((uint64_t)(b->chunk[ci] - 1) << (FY_QS_CHUNK_SHIFT - FY_PAGE_SHIFT)) +
           ((off & ((1ull << FY_QS_CHUNK_SHIFT) - 1)) >> FY_PAGE_SHIFT);
}

/* The pages this stream sent last, by content: the index keeps one
 * location per content, and while that one waits for its acknowledgement
 * (another stream sent it), the stream can still name its own copy. */
#define RECENT 4096u

struct recent {
    fy_hash128 h;
    uint64_t key;
};

static struct recent *recent_slot(struct chan *c, fy_hash128 h)
{
    return &c->recent[h.lo % RECENT];
}

enum decision { D_PAGE, D_REF, D_XREF, D_UNCACHED };

/* How stream r sends a page of content h at key k as its operation j;
 * *where: the cache page (REF: to copy from; PAGE: to fill).  Under
 * q->lock. */
static bool may_ref(struct src *q, unsigned r, uint64_t l, fy_hash128 h)
{
    uint64_t t = q->tag[l];

    return t && fy_hash_eq(fy_pagemap_get(&q->map, l), h) && settled(q, t, r);
}

static enum decision decide(struct src *q, struct chan *c, uint64_t j,
                            fy_hash128 h, uint64_t k, uint64_t *where)
{
    unsigned r = c->index;
    struct recent *rc = recent_slot(c, h);
    struct fy_dedup_loc loc;
    uint64_t l = NO_KEY;

    if (fy_dedup_lookup(q->dedup, h, &loc)) {
        if ((int)loc.space == q->space) {
            if (may_ref(q, r, loc.page, h))
                l = loc.page;
        } else if (space_settled(q, loc.space)) {
            return D_XREF;
        }
    }
    if (l == NO_KEY && fy_hash_eq(rc->h, h) && may_ref(q, r, rc->key, h))
        l = rc->key;
    if (l != NO_KEY) {
        pin_add(q, l, r, j);
        *where = l;
        return D_REF;
    }
    if (k == NO_KEY || !overwrite_ok(q, k, r))
        return D_UNCACHED;
    fy_pagemap_set(&q->map, k, h);
    q->tag[k] = pack(r, j);
    q->pin[k] = 0;
    fy_dedup_insert(q->dedup, h, (struct fy_dedup_loc){(uint32_t)q->space, k});
    rc->h = h;
    rc->key = k;
    *where = k;
    return D_PAGE;
}

/* ---- forward: QEMU to the stream --------------------------------------- */

static int flush(struct chan *c)
{
    struct src *q = c->q;
    int rc;

    if (c->nops == 0)
        return 0;
    if (c->index == 0)
        pthread_mutex_lock(&q->run.tx0);
    rc = fy_qs_send(c->st, c->ops, c->nops, q->timeout_ms);
    if (c->index == 0)
        pthread_mutex_unlock(&q->run.tx0);
    c->nops = 0;
    return rc;
}

/* Appends one operation; a PAGE or REF becomes cache operation
 * ++next_index of the stream. */
static int append(struct chan *c, const struct fy_op *op)
{
    int rc;

    if (c->nops == BATCH && (rc = flush(c)) < 0)
        return rc;
    c->ops[c->nops++] = *op;
    /* The reverse thread reads it to check acknowledgements. */
    if (op->type == FY_OP_PAGE || op->type == FY_OP_REF)
        __atomic_store_n(&c->next_index, c->next_index + 1, __ATOMIC_RELAXED);
    return 0;
}

static int append_data(struct chan *c, uint64_t tag, const void *data,
                       size_t len)
{
    const uint8_t *p = data;
    int rc;

    do {
        size_t n = len < FY_DATA_MAX ? len : FY_DATA_MAX;
        struct fy_op op = {.type = FY_OP_DATA, .offset = tag, .data = p,
                           .len = n};

        if ((rc = append(c, &op)) < 0)
            return rc;
        p += n;
        len -= n;
    } while (len);
    return 0;
}

static int append_zero(struct chan *c)
{
    struct fy_op *last = c->nops ? &c->ops[c->nops - 1] : NULL;
    struct fy_op op = {.type = FY_OP_ZERO, .offset = 0, .len = FY_PAGE_SIZE};

    /* The target appends zeros and keeps nothing, so consecutive zero
     * pages are one operation. */
    if (last && last->type == FY_OP_ZERO && last->len < ZERO_MERGE_MAX) {
        last->len += FY_PAGE_SIZE;
        return 0;
    }
    return append(c, &op);
}

static int send_page(struct chan *c, const struct fy_mfd_item *it,
                     const uint8_t *pg)
{
    struct src *q = c->q;
    const void *z = pg;
    fy_hash128 h;
    uint64_t j, k, where = 0;
    enum decision d;
    struct fy_op op;

    if ((uintptr_t)pg % 8) {
        memcpy(c->bounce, pg, FY_PAGE_SIZE);
        z = c->bounce;
    }
    if (fy_page_is_zero(z)) {
        c->st_local.pages_zero++;
        return append_zero(c);
    }
    h = fy_page_hash(pg);
    if (c->nops == BATCH) {
        int rc = flush(c);
        if (rc < 0)
            return rc;
    }
    j = c->next_index + 1;
    pthread_mutex_lock(&q->lock);
    k = key_of(q, c, it->ramblock, it->offset, it->packet);
    d = decide(q, c, j, h, k, &where);
    pthread_mutex_unlock(&q->lock);
    switch (d) {
    case D_PAGE:
        c->st_local.pages_sent++;
        op = (struct fy_op){.type = FY_OP_PAGE, .offset = where << FY_PAGE_SHIFT,
                            .len = FY_PAGE_SIZE, .hash = h, .data = pg};
        break;
    case D_REF:
        c->st_local.pages_dup++;
        op = (struct fy_op){.type = FY_OP_REF, .offset = where << FY_PAGE_SHIFT,
                            .hash = h};
        break;
    case D_XREF:
        c->st_local.pages_dup++;
        c->st_local.pages_dup_shared++;
        fy_qs_put_le64(c->xref[c->nops], h.lo);
        fy_qs_put_le64(c->xref[c->nops] + 8, h.hi);
        op = (struct fy_op){.type = FY_OP_DATA, .offset = FY_QS_XREF,
                            .data = c->xref[c->nops], .len = 16};
        break;
    default:
        c->st_local.pages_sent++;
        c->st_local.pages_uncached++;
        op = (struct fy_op){.type = FY_OP_DATA, .offset = FY_QS_PAGE,
                            .data = pg, .len = FY_PAGE_SIZE};
        break;
    }
    return append(c, &op);
}

/* Says once, on the stream, that this channel went raw and why. */
static int report_raw(struct chan *c)
{
    if (!c->parser.raw || c->raw_reported)
        return 0;
    c->raw_reported = true;
    snprintf(c->status, sizeof(c->status), "channel %u: %s", c->index,
             c->parser.reason);
    return append_data(c, FY_QS_STATUS, c->status, strlen(c->status));
}

static int emit(struct chan *c, const struct fy_mfd_item *it, const uint8_t *b)
{
    int rc;

    if (it->kind == FY_MFD_PAGE)
        return send_page(c, it, b);
    if ((rc = report_raw(c)) < 0)
        return rc;
    return append_data(c, FY_QS_BYTES, b, it->len);
}

/* Parses and sends what the buffer holds; stops at an incomplete item. */
static int drain(struct chan *c)
{
    struct fy_mfd_item it;
    size_t need;
    int rc;

    while (c->start < c->end &&
           fy_mfd_next(&c->parser, c->buf + c->start, c->end - c->start, &it,
                       &need) == 1) {
        if ((rc = emit(c, &it, c->buf + c->start)) < 0)
            return rc;
        c->start += it.len;
    }
    /* The sent operations point into buf: send them before moving it. */
    if ((rc = flush(c)) < 0)
        return rc;
    if (c->start > 0) {
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    return 0;
}

static void *forward_main(void *arg)
{
    struct chan *c = arg;
    struct src *q = c->q;
    const char *what = "";
    int rc = 0;

    for (;;) {
        struct pollfd pf = {.fd = c->fd, .events = POLLIN};
        ssize_t k;

        if (stopped(q))
            goto out;
        if (poll(&pf, 1, POLL_MS) <= 0)
            continue;
        k = read(c->fd, c->buf + c->end, BUF_CAP - c->end);
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (stopped(q))
            goto out;
        if (k < 0) {
            rc = fy_error_sys("channel %u: read from QEMU", c->index);
            what = "reading QEMU";
            break;
        }
        if (k == 0)
            break;
        if (c->multifd)
            c->st_local.multifd_bytes += (uint64_t)k;
        else
            c->st_local.main_bytes += (uint64_t)k;
        XXH3_128bits_update(c->sum, c->buf + c->end, (size_t)k);
        c->sum_len += (uint64_t)k;
        c->end += (size_t)k;
        if ((rc = drain(c)) < 0) {
            what = "sending";
            break;
        }
        if (c->end == BUF_CAP) {
            /* Cannot happen with the header limits; carry it rather than
             * stall. */
            fy_mfd_end(&c->parser, c->end);
            struct fy_mfd_item it = {.kind = FY_MFD_BYTES, .len = c->end};
            if ((rc = emit(c, &it, c->buf)) < 0 || (rc = flush(c)) < 0) {
                what = "sending";
                break;
            }
            c->end = 0;
        }
    }
    if (rc == 0) {
        /* QEMU closed the channel: what is left goes as it is, then the
         * sum of it all for the target to check. */
        uint8_t sum[FY_QS_EOF_SUM_SIZE];
        XXH128_hash_t h = XXH3_128bits_digest(c->sum);
        struct fy_op eof = {.type = FY_OP_DATA, .offset = FY_QS_EOF, .data = sum,
                            .len = sizeof(sum)};

        fy_qs_put_le64(sum, c->sum_len);
        fy_qs_put_le64(sum + 8, h.low64);
        fy_qs_put_le64(sum + 16, h.high64);

        fy_mfd_end(&c->parser, c->end - c->start);
        if (c->end > c->start) {
            struct fy_mfd_item it = {.kind = FY_MFD_BYTES,
                                     .len = c->end - c->start};
            rc = emit(c, &it, c->buf + c->start);
        }
        if (rc == 0 && (rc = report_raw(c)) == 0 && (rc = append(c, &eof)) == 0)
            rc = flush(c);
        what = "sending";
    }
    if (rc < 0 && !stopped(q)) {
        char why[400];

        snprintf(why, sizeof(why), "%s", fy_error_detail());
        /* A lost stream usually means the target failed: it says why on
         * stream 0 before closing, so give that message the chance to
         * arrive (its receiver then stops this run with the reason). */
        for (int k = 0; !strcmp(what, "sending") && k < 20 && !stopped(q); k++)
            usleep(50000);
        if (!stopped(q))
            fail(q, rc, "channel %u: %s: %s", c->index, what, why);
    }
out:
    pthread_mutex_lock(&q->run.mu);
    q->run.running--;
    pthread_cond_broadcast(&q->run.cv);
    pthread_mutex_unlock(&q->run.mu);
    return NULL;
}

/* ---- reverse: the target's answers -------------------------------------- */

static void *reverse_main(void *arg)
{
    struct chan *c = arg;
    struct src *q = c->q;
    struct fy_op ops[64];
    bool over = false;

    while (!over) {
        int n = c->st->rx_burst(c->st, ops, 64, POLL_MS);

        if (stopped(q))
            break;
        if (n == 0)
            continue;
        if (n < 0) {
            char why[400];

            snprintf(why, sizeof(why), "%s", fy_error_detail());
            /* A target that failed says why on stream 0 before it closes
             * the others: give that message the chance to arrive. */
            for (int k = 0; c->index > 0 && k < 20 && !stopped(q); k++)
                usleep(50000);
            if (!stopped(q))
                fail(q, n, "stream %u from the target: %s", c->index, why);
            break;
        }
        for (int i = 0; i < n && !over; i++) {
            const struct fy_op *op = &ops[i];

            if (op->type == FY_OP_DATA && op->offset == FY_QS_ACK && op->len == 8) {
                uint64_t v = fy_qs_get_le64(op->data);
                uint64_t sent = __atomic_load_n(&c->next_index, __ATOMIC_RELAXED);
                if (v > sent) {
                    fail(q, FY_E_PROTO, "stream %u: the target acknowledged "
                         "%" PRIu64 " operations of %" PRIu64, c->index, v,
                         sent);
                    over = true;
                } else if (v > acked(q, c->index)) {
                    __atomic_store_n(&c->acked, v, __ATOMIC_RELEASE);
                }
            } else if (op->type == FY_OP_DATA && op->offset == FY_QS_BYTES &&
                       c->index == 0) {
                struct iovec v = {(void *)op->data, op->len};
                int rc = fy_qs_write_all(c->fd, &v, 1, &q->run.stop);
                if (rc < 0) {
                    fail(q, rc, "return path to QEMU: %s", fy_error_detail());
                    over = true;
                }
                c->st_local.return_bytes += op->len;
            } else if (op->type == FY_OP_DATA && op->offset == FY_QS_EOF) {
                if (c->index == 0)
                    shutdown(c->fd, SHUT_WR); /* the destination closed */
                else
                    over = true;
            } else if (op->type == FY_OP_DONE && c->index == 0) {
                pthread_mutex_lock(&q->run.mu);
                q->done = true;
                pthread_mutex_unlock(&q->run.mu);
                over = true;
            } else if (op->type == FY_OP_ERROR) {
                char msg[FY_ERROR_MSG_MAX + 1];
                size_t m = op->len < FY_ERROR_MSG_MAX ? op->len : FY_ERROR_MSG_MAX;
                for (size_t k = 0; k < m; k++) {
                    char ch = ((const char *)op->data)[k];
                    msg[k] = ch >= 0x20 && ch < 0x7f ? ch : '?';
                }
                msg[m] = '\0';
                fail(q, FY_E_PEER, "the target stopped the migration: %s", msg);
                over = true;
            } else {
                fail(q, FY_E_PROTO, "stream %u: unexpected %s operation from "
                     "the target", c->index, fy_proto_type_name(op->type));
                over = true;
            }
        }
    }
    pthread_mutex_lock(&q->run.mu);
    q->run.running--;
    pthread_cond_broadcast(&q->run.cv);
    pthread_mutex_unlock(&q->run.mu);
    return NULL;
}

/* ---- setting up ---------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int mirror_open(struct src *q)
{
    const struct fy_qstream_source_params *p = q->p;
    int rc;

    q->npages = q->s->info.region_size / FY_PAGE_SIZE;
    q->nchunks = q->s->info.region_size >> FY_QS_CHUNK_SHIFT;
    q->space = -1;
    if ((rc = fy_pagemap_init(&q->map, q->npages)) < 0)
        return rc;
    q->map.owner = (void *)&live_marker;
    q->tag = calloc(q->npages, sizeof(*q->tag));
    q->pin = calloc(q->npages, sizeof(*q->pin));
    if (!q->tag || !q->pin)
        return fy_error(FY_E_NOMEM, "no memory for the bookkeeping of %" PRIu64
                        " key pages", q->npages);
    q->dedup = p->dedup;
    if (!q->dedup) {
        if (!(q->dedup = fy_dedup_create(q->npages)))
            return -FY_E_NOMEM;
        q->own_dedup = true;
    } else {
        /* The index may outlive this run (keep): it points at a copy of
         * the map's header, sharing its entries. */
        if (!(q->pub = malloc(sizeof(*q->pub))))
            return fy_error(FY_E_NOMEM, "no memory for a page map");
        *q->pub = q->map;
    }
    rc = fy_dedup_add_space(q->dedup, q->pub ? q->pub : &q->map);
    if (rc < 0)
        return rc;
    q->space = rc;
    return 0;
}

static void mirror_close(struct src *q, bool success)
{
    const struct fy_qstream_source_params *p = q->p;

    if (success && p->keep && q->pub && q->space >= 0) {
        /* What the target now keeps, unchanged: others may name it. */
        q->pub->owner = (void *)&settled_marker;
        p->keep->map = q->pub;
        p->keep->space = q->space;
        q->pub = NULL;
        q->space = -1;
        q->map.held = NULL;
        q->map.npages = 0;
    }
    if (q->dedup && q->space >= 0)
        fy_dedup_remove_space(q->dedup, q->space);
    free(q->pub);
    if (q->own_dedup)
        fy_dedup_destroy(q->dedup);
    fy_pagemap_fini(&q->map);
    free(q->tag);
    free(q->pin);
    for (unsigned i = 0; i < q->nrb; i++)
        free(q->rbs[i].chunk);
}

static int open_listener(struct src *q)
{
    const char *path = q->p->listen_path;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd;

    if (q->p->listen_fd >= 0) {
        q->listen_fd = q->p->listen_fd;
        return 0;
    }
    if (!path || strlen(path) >= sizeof(a.sun_path))
        return fy_error(FY_E_INVAL, "stream mode: listen path %s%s", path ? path : "(none)",
                        path ? " is too long for a UNIX socket" : ": give listen_fd or listen_path");
    strcpy(a.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fy_error_sys("socket for %s", path);
    unlink(path);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(fd, (int)q->nch + 8) < 0) {
        int rc = fy_error_sys("cannot listen on %s", path);
        close(fd);
        return rc;
    }
    q->listen_fd = fd;
    q->own_listen = true;
    return 0;
}

/* Accepts QEMU's 1 + channels connections and gives each its stream: the
 * main channel ("QEVM") stream 0, multifd channels the next ones in the
 * order they came.  A connection opening with neither takes the first free
 * stream and goes raw. */
static int accept_channels(struct src *q)
{
    int64_t deadline = now_ms() + q->timeout_ms;
    int fds[FY_QSTREAM_MAX_CHANNELS + 1];
    unsigned got = 0, next_mfd = 1;

    for (unsigned i = 0; i <= FY_QSTREAM_MAX_CHANNELS; i++)
        fds[i] = -1;
    int rc = 0;

    while (got < q->nch) {
        struct pollfd pf = {.fd = q->listen_fd, .events = POLLIN};
        int fd;

        if (q->p->cancel && *q->p->cancel) {
            rc = fy_error(FY_E_CANCELLED, "stream mode: cancelled while "
                          "waiting for QEMU to connect");
            goto out;
        }
        if (now_ms() > deadline) {
            rc = fy_error(FY_E_TIMEOUT, "stream mode: QEMU opened %u of its %u "
                          "migration channels in %d ms (is multifd-channels "
                          "%u on the source QEMU?)", got, q->nch, q->timeout_ms,
                          q->nch - 1);
            goto out;
        }
        if (poll(&pf, 1, POLL_MS) <= 0)
            continue;
        fd = accept4(q->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED)
                continue;
            rc = fy_error_sys("accept QEMU's migration channel");
            goto out;
        }
        fds[got++] = fd;
    }
    /* Every channel sends its opening bytes on its own: look at them. */
    for (unsigned i = 0; i < q->nch; i++) {
        uint8_t m[4];
        ssize_t k = 0;

        while (k < 4) {
            struct pollfd pf = {.fd = fds[i], .events = POLLIN};
            if (now_ms() > deadline || (q->p->cancel && *q->p->cancel)) {
                rc = fy_error(FY_E_TIMEOUT, "stream mode: QEMU's migration "
                              "channel %u sent nothing in %d ms", i, q->timeout_ms);
                goto out;
            }
            if (poll(&pf, 1, POLL_MS) <= 0)
                continue;
            k = recv(fds[i], m, 4, MSG_PEEK);
            if (k == 0 || (k < 0 && errno != EINTR && errno != EAGAIN)) {
                rc = fy_error(FY_E_CLOSED, "stream mode: QEMU closed migration "
                              "channel %u before sending anything", i);
                goto out;
            }
            if (k < 0)
                k = 0;
        }
        uint32_t magic = (uint32_t)m[0] << 24 | (uint32_t)m[1] << 16 |
                         (uint32_t)m[2] << 8 | m[3];
        if (magic == FY_QEMU_VM_MAGIC && q->ch[0].fd < 0) {
            q->ch[0].fd = fds[i];
            fds[i] = -1;
        } else if (magic == FY_MFD_MAGIC && next_mfd < q->nch) {
            q->ch[next_mfd++].fd = fds[i];
            fds[i] = -1;
        }
    }
    /* The rest (not recognised) fill the free streams in order: carried
     * raw, and a multifd stream says why. */
    for (unsigned i = 0, slot = 0; i < q->nch; i++) {
        if (fds[i] < 0)
            continue;
        while (q->ch[slot].fd >= 0)
            slot++;
        q->ch[slot].fd = fds[i];
        fds[i] = -1;
    }
    for (unsigned i = 0; i < q->nch; i++)
        q->ch[i].multifd = i > 0;
out:
    for (unsigned i = 0; i < got; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return rc;
}

static int send_hello(struct src *q)
{
    uint8_t h[FY_QS_HELLO_SIZE] = {0};
    struct fy_op op = {.type = FY_OP_DATA, .offset = FY_QS_HELLO, .data = h,
                       .len = sizeof(h)};
    int rc;

    memcpy(h, FY_QS_HELLO_MAGIC, 4);
    fy_qs_put_le32(h + 4, FY_QS_VERSION);
    fy_qs_put_le32(h + 8, q->nch - 1);
    rc = fy_qs_send(q->s->streams[0], &op, 1, q->timeout_ms);
    if (rc < 0) {
        if (rc == -FY_E_UNSUPPORTED || rc == -FY_E_INVAL)
            return fy_error(-rc, "stream mode needs a transport that carries "
                            "DATA operations (tcp does): %s", fy_error_detail());
        return rc;
    }
    return 0;
}

static void sum_stats(struct src *q, struct fy_qstream_stats *out, double secs)
{
    memset(out, 0, sizeof(*out));
    out->channels = q->nch - 1;
    out->parsed_all = true;
    for (unsigned i = 0; i < q->nch; i++) {
        struct chan *c = &q->ch[i];
        const struct fy_qstream_stats *l = &c->st_local;

        out->main_bytes += l->main_bytes;
        out->return_bytes += l->return_bytes;
        out->multifd_bytes += l->multifd_bytes;
        out->pages_sent += l->pages_sent;
        out->pages_uncached += l->pages_uncached;
        out->pages_zero += l->pages_zero;
        out->pages_dup += l->pages_dup;
        out->pages_dup_shared += l->pages_dup_shared;
        if (!c->multifd)
            continue;
        out->raw_bytes += c->parser.raw_bytes;
        out->packets += c->parser.packets;
        out->compressed_packets += c->parser.compressed_packets;
        out->pages += c->parser.pages;
        out->qemu_zero_pages += c->parser.zero_listed;
        if (c->parser.raw && out->parsed_all) {
            out->parsed_all = false;
            snprintf(out->unparsed, sizeof(out->unparsed), "channel %u: %.200s",
                     i, c->parser.reason);
        }
    }
    if (out->compressed_packets && out->parsed_all)
        snprintf(out->unparsed, sizeof(out->unparsed),
                 "%" PRIu64 " compressed packets carried as they are (their "
                 "pages not deduplicated)", out->compressed_packets);
    fy_qs_stats_add_wire(out, q->s);
    out->seconds = secs;
}

int fy_qstream_source_run(struct fy_session *s,
                          const struct fy_qstream_source_params *p,
                          struct fy_qstream_stats *out)
{
    struct src *q = NULL;
    int64_t t0 = now_ms();
    bool success = false;
    int rc;

    if (!s || !p)
        return fy_error(FY_E_INVAL, "fy_qstream_source_run: session or params is NULL");
    if (p->channels < 1 || p->channels > FY_QSTREAM_MAX_CHANNELS)
        return fy_error(FY_E_INVAL, "stream mode: %u multifd channels, 1..%u "
                        "allowed", p->channels, FY_QSTREAM_MAX_CHANNELS);
    if (s->nstreams != p->channels + 1)
        return fy_error(FY_E_INVAL, "stream mode: the session has %u streams, "
                        "%u multifd channels need %u (one for the main channel)",
                        s->nstreams, p->channels, p->channels + 1);
    if (s->ops->data_max < FY_DATA_MAX)
        return fy_error(FY_E_UNSUPPORTED, "stream mode needs a transport that "
                        "carries DATA operations of %u bytes; %s does not "
                        "(tcp does)", FY_DATA_MAX, s->ops->name);
    if (s->info.region_size < (1ull << FY_QS_CHUNK_SHIFT))
        return fy_error(FY_E_INVAL, "stream mode: the session's region of %" PRIu64
                        " bytes is smaller than one 2 MiB chunk of key space "
                        "(use fy_qstream_key_space())", s->info.region_size);
    q = calloc(1, sizeof(*q));
    if (!q || !(q->ch = calloc(s->nstreams, sizeof(*q->ch)))) {
        free(q);
        return fy_error(FY_E_NOMEM, "no memory for stream mode");
    }
    q->s = s;
    q->p = p;
    q->nch = s->nstreams;
    q->timeout_ms = p->timeout_ms > 0 ? p->timeout_ms : DEFAULT_TIMEOUT_MS;
    q->listen_fd = -1;
    pthread_mutex_init(&q->lock, NULL);
    pthread_mutex_init(&q->run.mu, NULL);
    pthread_mutex_init(&q->run.tx0, NULL);
    pthread_cond_init(&q->run.cv, NULL);
    for (unsigned i = 0; i < q->nch; i++) {
        struct chan *c = &q->ch[i];
        c->q = q;
        c->index = i;
        c->fd = -1;
        c->st = s->streams[i];
        c->rb_packet = UINT64_MAX;
        c->rb = -1;
        c->recent = calloc(RECENT, sizeof(*c->recent));
        c->sum = XXH3_createState();
        if (!(c->buf = malloc(BUF_CAP)) || !c->recent || !c->sum ||
            XXH3_128bits_reset(c->sum) != XXH_OK) {
            rc = fy_error(FY_E_NOMEM, "no memory for channel buffers");
            goto out;
        }
    }
    if ((rc = mirror_open(q)) < 0 || (rc = open_listener(q)) < 0 ||
        (rc = send_hello(q)) < 0)
        goto out;
    if (p->on_listening)
        p->on_listening(p->ctx);
    if ((rc = accept_channels(q)) < 0) {
        fail(q, rc, "%s", fy_error_detail());
        goto out;
    }
    for (unsigned i = 0; i < q->nch; i++) {
        struct chan *c = &q->ch[i];

        fy_mfd_parser_init(&c->parser, c->multifd);
        pthread_mutex_lock(&q->run.mu);
        q->run.running += 2;
        pthread_mutex_unlock(&q->run.mu);
        c->fwd_started = pthread_create(&c->fwd, NULL, forward_main, c) == 0;
        c->rev_started = pthread_create(&c->rev, NULL, reverse_main, c) == 0;
        if (!c->fwd_started || !c->rev_started) {
            pthread_mutex_lock(&q->run.mu);
            q->run.running -= !c->fwd_started + !c->rev_started;
            pthread_mutex_unlock(&q->run.mu);
            fail(q, FY_E_SYS, "cannot start stream mode threads");
            break;
        }
    }
    /* Wait for every thread, watching for cancellation. */
    pthread_mutex_lock(&q->run.mu);
    while (q->run.running > 0) {
        struct timespec ts;

        if (p->cancel && *p->cancel && !q->run.err) {
            pthread_mutex_unlock(&q->run.mu);
            fail(q, FY_E_CANCELLED, "stream mode migration cancelled");
            pthread_mutex_lock(&q->run.mu);
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&q->run.cv, &q->run.mu, &ts);
    }
    pthread_mutex_unlock(&q->run.mu);
    for (unsigned i = 0; i < q->nch; i++) {
        if (q->ch[i].fwd_started)
            pthread_join(q->ch[i].fwd, NULL);
        if (q->ch[i].rev_started)
            pthread_join(q->ch[i].rev, NULL);
    }
    if (q->run.err)
        rc = fy_error(q->run.err, "%s", q->run.errmsg);
    else if (!q->done)
        rc = fy_error(FY_E_PROTO, "stream mode: the target ended without "
                      "saying it was done");
    else
        rc = 0;
    success = rc == 0;
out:
    if (out)
        sum_stats(q, out, (double)(now_ms() - t0) / 1000.0);
    {
        /* Keep the error of this run, not one of the cleanup. */
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", rc < 0 ? fy_error_detail() : "");
        for (unsigned i = 0; i < q->nch; i++) {
            if (q->ch[i].fd >= 0)
                close(q->ch[i].fd);
            free(q->ch[i].buf);
            free(q->ch[i].recent);
            XXH3_freeState(q->ch[i].sum);
            fy_mfd_parser_fini(&q->ch[i].parser);
        }
        if (q->own_listen) {
            close(q->listen_fd);
            unlink(p->listen_path);
        }
        mirror_close(q, success);
        if (rc < 0)
            fy_error(-rc, "%s", msg);
    }
    pthread_mutex_destroy(&q->lock);
    pthread_mutex_destroy(&q->run.mu);
    pthread_mutex_destroy(&q->run.tx0);
    pthread_cond_destroy(&q->run.cv);
    free(q->ch);
    free(q);
    return rc;
}
