/* Stream mode, target side: Ferry streams in, the destination QEMU's
 * migration channels out (include/ferry/qstream.h; docs/qstream.md).
 *
 * One thread per stream turns operations back into the channel's bytes,
 * in order, and writes them to its connection to QEMU: DATA bytes as they
 * are, PAGEs (also kept in the content cache at their key), REFs copied
 * from the cache page the source named (checked against their hash),
 * cross-VM references from another migration's kept cache, ZERO as zeros.
 * After each burst holding cache operations it acknowledges how many
 * operations it processed, which is what lets the source name pages other
 * streams brought (see qstream_source.c).  One more thread carries the
 * destination's return path back on stream 0. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
#define ZBUF (64u << 10)
/* Flush the write list before it could overflow with a burst's last op. */
#define IOV_FLUSH (IOV_MAX - ZERO_IOV_MAX - 2)
#define ZERO_IOV_MAX 40

static const uint8_t zeros[ZBUF];

struct tgt;

struct tchan {
    struct tgt *q;
    unsigned index;
    int fd;
    struct fy_stream *st;
    pthread_t thr;
    bool started;
    uint64_t processed; /* cache operations (PAGE, REF) */
    uint8_t (*bounce)[FY_PAGE_SIZE]; /* BATCH pages: copies of referenced
                                        content until written */
    struct iovec iov[IOV_MAX];
    int niov;
    XXH3_state_t *sum;    /* of every byte given to the destination QEMU */
    uint64_t sum_len;
    uint8_t src_sum[FY_QS_EOF_SUM_SIZE]; /* the source's, from its EOF */
    bool src_summed;
    bool verified;        /* the two matched */
    struct fy_qstream_stats st_local;
    char status[FY_DATA_MAX + 1];
};

struct tgt {
    struct fy_session *s;
    const struct fy_qstream_target_params *p;
    unsigned nch;
    struct tchan *ch;
    int timeout_ms;
    struct fy_region *cache;
    bool own_cache;
    uint8_t *base;
    uint64_t npages;
    struct fy_pagemap map; /* with dedup and keep: what the cache holds */
    pthread_t rp;
    bool rp_started;
    int rp_stop;           /* atomic: give up on the return path */
    bool rp_eof_sent;
    /* run state (tx0: stream 0's senders are the return path, DONE and
     * fail()) */
    struct fy_qs_run run;
};

static bool stopped(struct tgt *q)
{
    return fy_qs_stopped(&q->run);
}

static void fail(struct tgt *q, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* As the source's: the first failure is kept and sent back on stream 0;
 * the session and QEMU's connections are shut down, so the destination's
 * incoming migration fails. */
static void fail(struct tgt *q, int code, const char *fmt, ...)
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

static void thread_done(struct tgt *q)
{
    pthread_mutex_lock(&q->run.mu);
    q->run.running--;
    pthread_cond_broadcast(&q->run.cv);
    pthread_mutex_unlock(&q->run.mu);
}

/* ---- rebuilding a channel ------------------------------------------------ */

static int flush_iov(struct tchan *c)
{
    int rc = 0;

    for (int i = 0; i < c->niov; i++) {
        XXH3_128bits_update(c->sum, c->iov[i].iov_base, c->iov[i].iov_len);
        c->sum_len += c->iov[i].iov_len;
    }
    if (c->niov > 0)
        rc = fy_qs_write_all(c->fd, c->iov, c->niov, &c->q->run.stop);
    c->niov = 0;
    if (rc < 0)
        return fy_error(-rc, "channel %u to the destination QEMU: %s",
                        c->index, fy_error_detail());
    return 0;
}

static int add(struct tchan *c, const void *p, size_t len)
{
    if (c->niov > 0) {
        struct iovec *last = &c->iov[c->niov - 1];
        if ((const uint8_t *)last->iov_base + last->iov_len == (const uint8_t *)p) {
            last->iov_len += len;
            return 0;
        }
    }
    c->iov[c->niov++] = (struct iovec){(void *)p, len};
    return c->niov >= IOV_FLUSH ? flush_iov(c) : 0;
}

/* Copies content h from another migration's kept cache (cross-VM) into
 * 'page'.  The index may name a region that changed since: the bytes are
 * checked. */
static int resolve_shared(struct tgt *q, unsigned stream, fy_hash128 h,
                          uint8_t *page)
{
    struct fy_dedup_loc loc;
    struct fy_region *from = NULL;
    int rc;

    if (!q->p->dedup || !fy_dedup_lookup(q->p->dedup, h, &loc))
        return fy_error(FY_E_NOTFOUND,
                        "stream %u: the source referenced content "
                        "%016" PRIx64 "%016" PRIx64 " of another migration, "
                        "which this host does not hold (share the dedup "
                        "index and keep on both sides, or neither)",
                        stream, h.hi, h.lo);
    if ((rc = fy_dedup_space_owner(q->p->dedup, (int)loc.space, (void **)&from)) < 0 ||
        !from)
        return fy_error(FY_E_NOTFOUND, "stream %u: content %016" PRIx64
                        "%016" PRIx64 " left this host", stream, h.hi, h.lo);
    if ((rc = fy_region_read_pages(from, &loc.page, 1, page)) < 0)
        return rc;
    if (!fy_hash_eq(fy_page_hash(page), h))
        return fy_error(FY_E_VERIFY, "stream %u: the kept copy of content "
                        "%016" PRIx64 "%016" PRIx64 " changed", stream, h.hi,
                        h.lo);
    return 0;
}

/* One operation; *eof when the source says QEMU closed the channel. */
static int apply(struct tchan *c, const struct fy_op *op, unsigned slot,
                 bool *cache_ops, bool *eof)
{
    struct tgt *q = c->q;
    int rc;

    switch (op->type) {
    case FY_OP_PAGE:
        if ((op->flags & FY_OP_F_UNCHECKED) &&
            !fy_hash_eq(fy_page_hash(op->data), op->hash))
            return fy_error(FY_E_CHECKSUM, "stream %u: page for cache offset "
                            "0x%" PRIx64 " does not match its hash", c->index,
                            op->offset);
        memcpy(q->base + op->offset, op->data, FY_PAGE_SIZE);
        if (q->map.held)
            fy_pagemap_set(&q->map, op->offset >> FY_PAGE_SHIFT, op->hash);
        c->st_local.pages_sent++;
        *cache_ops = true;
        /* From the receive buffer, not the cache: a later PAGE of this
         * burst may overwrite the cache page before the burst is
         * written. */
        return add(c, op->data, FY_PAGE_SIZE);
    case FY_OP_REF:
        /* Copied out for the same reason. */
        memcpy(c->bounce[slot], q->base + op->offset, FY_PAGE_SIZE);
        if (!fy_hash_eq(fy_page_hash(c->bounce[slot]), op->hash))
            return fy_error(FY_E_VERIFY, "stream %u: the cache page at 0x%" PRIx64
                            " does not hold the referenced content (a source "
                            "and target of different builds?)", c->index,
                            op->offset);
        c->st_local.pages_dup++;
        *cache_ops = true;
        return add(c, c->bounce[slot], FY_PAGE_SIZE);
    case FY_OP_ZERO:
        c->st_local.pages_zero += op->len / FY_PAGE_SIZE;
        for (uint64_t left = op->len; left > 0;) {
            size_t n = left < ZBUF ? (size_t)left : ZBUF;
            /* Not merged with the previous entry: each zero run starts at
             * the same buffer. */
            c->iov[c->niov++] = (struct iovec){(void *)zeros, n};
            if (c->niov >= IOV_FLUSH && (rc = flush_iov(c)) < 0)
                return rc;
            left -= n;
        }
        return 0;
    case FY_OP_DATA:
        switch (op->offset) {
        case FY_QS_PAGE:
            if (op->len != FY_PAGE_SIZE)
                return fy_error(FY_E_PROTO, "stream %u: uncached page of %" PRIu64
                                " bytes", c->index, op->len);
            c->st_local.pages_sent++;
            c->st_local.pages_uncached++;
            return add(c, op->data, FY_PAGE_SIZE);
        case FY_QS_BYTES:
            if (c->index == 0)
                c->st_local.main_bytes += op->len;
            else
                c->st_local.multifd_bytes += op->len;
            return op->len ? add(c, op->data, op->len) : 0;
        case FY_QS_XREF: {
            fy_hash128 h;
            if (op->len != 16)
                return fy_error(FY_E_PROTO, "stream %u: cross-VM reference of "
                                "%" PRIu64 " bytes, expected 16", c->index, op->len);
            h.lo = fy_qs_get_le64(op->data);
            h.hi = fy_qs_get_le64((const uint8_t *)op->data + 8);
            if ((rc = resolve_shared(q, c->index, h, c->bounce[slot])) < 0)
                return rc;
            c->st_local.pages_dup++;
            c->st_local.pages_dup_shared++;
            return add(c, c->bounce[slot], FY_PAGE_SIZE);
        }
        case FY_QS_STATUS:
            if (c->st_local.parsed_all) {
                size_t n = op->len;
                c->st_local.parsed_all = false;
                for (size_t i = 0; i < n; i++) {
                    char ch = ((const char *)op->data)[i];
                    c->status[i] = ch >= 0x20 && ch < 0x7f ? ch : '?';
                }
                c->status[n] = '\0';
                snprintf(c->st_local.unparsed, sizeof(c->st_local.unparsed),
                         "%.200s", c->status);
            }
            return 0;
        case FY_QS_EOF:
            *eof = true;
            if (op->len == FY_QS_EOF_SUM_SIZE) {
                memcpy(c->src_sum, op->data, FY_QS_EOF_SUM_SIZE);
                c->src_summed = true;
            }
            return 0;
        default:
            return fy_error(FY_E_PROTO, "stream %u: DATA with tag %" PRIu64
                            ", which stream mode v%u does not use", c->index,
                            op->offset, FY_QS_VERSION);
        }
    case FY_OP_ERROR: {
        char msg[FY_ERROR_MSG_MAX + 1];
        size_t m = op->len < FY_ERROR_MSG_MAX ? op->len : FY_ERROR_MSG_MAX;
        for (size_t i = 0; i < m; i++) {
            char ch = ((const char *)op->data)[i];
            msg[i] = ch >= 0x20 && ch < 0x7f ? ch : '?';
        }
        msg[m] = '\0';
        return fy_error(FY_E_PEER, "the source stopped the migration: %s", msg);
    }
    default:
        return fy_error(FY_E_PROTO, "stream %u: unexpected %s operation in "
                        "stream mode", c->index, fy_proto_type_name(op->type));
    }
}

/* At a channel's end: what the destination QEMU was given must be what
 * the source QEMU sent (a source without sums leaves it unverified). */
static int check_sum(struct tchan *c)
{
    XXH128_hash_t h = XXH3_128bits_digest(c->sum);
    uint64_t len = fy_qs_get_le64(c->src_sum);

    if (!c->src_summed)
        return 0;
    if (len != c->sum_len || fy_qs_get_le64(c->src_sum + 8) != h.low64 ||
        fy_qs_get_le64(c->src_sum + 16) != h.high64)
        return fy_error(FY_E_VERIFY, "channel %u: the stream given to the destination "
                        "QEMU (%" PRIu64 " bytes) differs from the one the source QEMU "
                        "sent (%" PRIu64 " bytes): the migration must not resume there",
                        c->index, c->sum_len, len);
    c->verified = true;
    return 0;
}

static int send_ack(struct tchan *c, bool eof)
{
    uint8_t v[8];
    struct fy_op ops[2] = {
        {.type = FY_OP_DATA, .offset = FY_QS_ACK, .data = v, .len = 8},
        {.type = FY_OP_DATA, .offset = FY_QS_EOF},
    };

    fy_qs_put_le64(v, c->processed);
    return fy_stream_send_all(c->st, ops, eof ? 2 : 1);
}

static void *chan_main(void *arg)
{
    struct tchan *c = arg;
    struct tgt *q = c->q;
    struct fy_op ops[BATCH];
    bool eof = false;
    int rc = 0;

    while (!eof) {
        bool cache_ops = false;
        int n = c->st->rx_burst(c->st, ops, BATCH, POLL_MS);

        if (stopped(q))
            goto out;
        if (n == 0)
            continue;
        if (n < 0) {
            char why[400];

            snprintf(why, sizeof(why), "%s", fy_error_detail());
            /* As the source: its reason comes on stream 0. */
            for (int k = 0; c->index > 0 && k < 20 && !stopped(q); k++)
                usleep(50000);
            rc = fy_error(-n, "stream %u from the source: %s", c->index, why);
            break;
        }
        for (int i = 0; i < n && rc == 0 && !eof; i++) {
            rc = apply(c, &ops[i], (unsigned)i, &cache_ops, &eof);
            if (ops[i].type == FY_OP_PAGE || ops[i].type == FY_OP_REF)
                c->processed++;
        }
        /* Processed means in the cache, or copied out of it: the burst's
         * writes to QEMU, which may wait for QEMU, need not be done.  The
         * main channel carries no cache operations (its sender is the
         * return path thread). */
        if (rc == 0 && c->index > 0 && cache_ops && !eof)
            rc = send_ack(c, false);
        if (rc == 0)
            rc = flush_iov(c);
        if (rc == 0 && eof)
            rc = check_sum(c);
        if (rc == 0 && eof)
            shutdown(c->fd, SHUT_WR); /* QEMU sees the channel end */
        if (rc == 0 && c->index > 0 && eof)
            rc = send_ack(c, true);
        if (rc < 0)
            break;
    }
    if (rc < 0 && !stopped(q))
        fail(q, rc, "%s", fy_error_detail());
out:
    thread_done(q);
    return NULL;
}

/* The destination's return path, back to the source QEMU on stream 0. */
static void *rp_main(void *arg)
{
    struct tgt *q = arg;
    struct tchan *c = &q->ch[0];
    uint8_t buf[FY_DATA_MAX];
    int rc = 0;

    for (;;) {
        struct pollfd pf = {.fd = c->fd, .events = POLLIN};
        struct fy_op op = {.type = FY_OP_DATA, .offset = FY_QS_BYTES, .data = buf};
        ssize_t k;

        if (stopped(q) || __atomic_load_n(&q->rp_stop, __ATOMIC_ACQUIRE))
            goto out;
        if (poll(&pf, 1, POLL_MS) <= 0)
            continue;
        k = read(c->fd, buf, sizeof(buf));
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (k <= 0) {
            /* Closed (or reset after a finished migration): say so. */
            op.offset = FY_QS_EOF;
            op.len = 0;
            pthread_mutex_lock(&q->run.tx0);
            rc = fy_stream_send_all(q->s->streams[0], &op, 1);
            pthread_mutex_unlock(&q->run.tx0);
            q->rp_eof_sent = rc == 0;
            break;
        }
        op.len = (uint64_t)k;
        c->st_local.return_bytes += (uint64_t)k;
        pthread_mutex_lock(&q->run.tx0);
        rc = fy_stream_send_all(q->s->streams[0], &op, 1);
        pthread_mutex_unlock(&q->run.tx0);
        if (rc < 0)
            break;
    }
    if (rc < 0 && !stopped(q))
        fail(q, rc, "return path to the source: %s", fy_error_detail());
out:
    thread_done(q);
    return NULL;
}

/* ---- setting up ---------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The source's HELLO: the first operation of stream 0. */
static int read_hello(struct tgt *q)
{
    struct fy_stream *st = q->s->streams[0];
    int64_t deadline = now_ms() + q->timeout_ms;
    struct fy_op op;
    const uint8_t *h;
    int n;

    for (;;) {
        if (q->p->cancel && *q->p->cancel)
            return fy_error(FY_E_CANCELLED, "stream mode: cancelled");
        n = st->rx_burst(st, &op, 1, POLL_MS);
        if (n < 0)
            return fy_error(-n, "stream mode: waiting for the source's hello: %s",
                            fy_error_detail());
        if (n == 1)
            break;
        if (now_ms() > deadline)
            return fy_error(FY_E_TIMEOUT, "stream mode: no hello from the "
                            "source in %d ms", q->timeout_ms);
    }
    h = op.data;
    if (op.type != FY_OP_DATA || op.offset != FY_QS_HELLO ||
        op.len != FY_QS_HELLO_SIZE || memcmp(h, FY_QS_HELLO_MAGIC, 4) != 0)
        return fy_error(FY_E_PROTO, "stream mode: the session does not open "
                        "with a stream mode hello (%s operation): is the "
                        "source running fy_qstream_source_run()?",
                        fy_proto_type_name(op.type));
    if (fy_qs_get_le32(h + 4) != FY_QS_VERSION)
        return fy_error(FY_E_VERSION, "stream mode: the source speaks version "
                        "%" PRIu32 ", this build version %u",
                        fy_qs_get_le32(h + 4), FY_QS_VERSION);
    if (fy_qs_get_le32(h + 8) != q->nch - 1)
        return fy_error(FY_E_PROTO, "stream mode: the source announces %" PRIu32
                        " multifd channels on a session of %u streams",
                        fy_qs_get_le32(h + 8), q->nch);
    return 0;
}

/* Connects the channels in stream order, main first: QEMU 7.2 takes the
 * first connection it accepts as the main channel and tells the multifd
 * channels apart by their opening packet.  QEMU may not listen yet:
 * retried until the timeout. */
static int connect_channels(struct tgt *q)
{
    const char *path = q->p->connect_path;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int64_t deadline = now_ms() + q->timeout_ms;

    if (!path || strlen(path) >= sizeof(a.sun_path))
        return fy_error(FY_E_INVAL, "stream mode: destination socket path %s",
                        path ? "too long" : "missing");
    strcpy(a.sun_path, path);
    for (unsigned i = 0; i < q->nch; i++) {
        for (;;) {
            int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

            if (fd < 0)
                return fy_error_sys("socket");
            if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
                q->ch[i].fd = fd;
                break;
            }
            int e = errno;
            close(fd);
            if ((e != ENOENT && e != ECONNREFUSED && e != EAGAIN) ||
                now_ms() > deadline || (q->p->cancel && *q->p->cancel)) {
                errno = e;
                return fy_error_sys("cannot connect migration channel %u to "
                                    "the destination QEMU at %s (started with "
                                    "-incoming defer and migrate-incoming "
                                    "unix:%s?)", i, path, path);
            }
            usleep(20000);
        }
    }
    return 0;
}

static int cache_open(struct tgt *q)
{
    const struct fy_qstream_target_params *p = q->p;
    uint64_t size = q->s->info.region_size;
    int rc;

    q->npages = size / FY_PAGE_SIZE;
    if (p->keep && (!p->cache || !p->dedup))
        return fy_error(FY_E_INVAL, "stream mode: keep needs a shared dedup "
                        "index and a cache region of the caller's");
    if (p->cache) {
        q->cache = p->cache;
    } else {
        if ((rc = fy_region_create_memfd("ferry-qstream-cache", size, &q->cache)) < 0)
            return rc;
        q->own_cache = true;
    }
    if (fy_region_size(q->cache) < size || !(q->base = fy_region_base(q->cache)))
        return fy_error(FY_E_INVAL, "stream mode: the cache %s must be a mapped "
                        "region of at least %" PRIu64 " bytes",
                        fy_region_name(q->cache), size);
    if (p->keep && (rc = fy_pagemap_init(&q->map, q->npages)) < 0)
        return rc;
    return 0;
}

/* With keep: the cache joins the shared index, for later migrations. */
static int cache_keep(struct tgt *q)
{
    const struct fy_qstream_target_params *p = q->p;
    struct fy_pagemap *pub;
    int space;

    if (!p->keep || !q->map.held)
        return 0;
    if (!(pub = malloc(sizeof(*pub))))
        return fy_error(FY_E_NOMEM, "no memory for a page map");
    *pub = q->map;
    pub->owner = q->cache;
    if ((space = fy_dedup_add_space(p->dedup, pub)) < 0) {
        free(pub);
        return space;
    }
    for (uint64_t i = 0; i < pub->npages; i++) {
        fy_hash128 h = fy_pagemap_get(pub, i);
        if (!fy_hash_is_unknown(h))
            fy_dedup_insert(p->dedup, h, (struct fy_dedup_loc){(uint32_t)space, i});
    }
    p->keep->map = pub;
    p->keep->space = space;
    q->map.held = NULL;
    q->map.npages = 0;
    return 0;
}

static void sum_stats(struct tgt *q, struct fy_qstream_stats *out, double secs)
{
    memset(out, 0, sizeof(*out));
    out->channels = q->nch - 1;
    out->parsed_all = true;
    out->verified = true;
    for (unsigned i = 0; i < q->nch; i++) {
        const struct fy_qstream_stats *l = &q->ch[i].st_local;

        out->verified = out->verified && q->ch[i].verified;
        out->main_bytes += l->main_bytes;
        out->return_bytes += l->return_bytes;
        out->multifd_bytes += l->multifd_bytes;
        out->pages_sent += l->pages_sent;
        out->pages_uncached += l->pages_uncached;
        out->pages_zero += l->pages_zero;
        out->pages_dup += l->pages_dup;
        out->pages_dup_shared += l->pages_dup_shared;
        if (!l->parsed_all && out->parsed_all) {
            out->parsed_all = false;
            snprintf(out->unparsed, sizeof(out->unparsed), "%s", l->unparsed);
        }
    }
    /* Pages count as multifd bytes here too, as QEMU sent them. */
    out->multifd_bytes += (out->pages_sent + out->pages_zero + out->pages_dup) *
                          FY_PAGE_SIZE;
    out->pages = out->pages_sent + out->pages_zero + out->pages_dup;
    fy_qs_stats_add_wire(out, q->s);
    out->seconds = secs;
}

int fy_qstream_target_run(struct fy_session *s,
                          const struct fy_qstream_target_params *p,
                          struct fy_qstream_stats *out)
{
    struct tgt *q;
    int64_t t0 = now_ms();
    unsigned want;
    int rc;

    if (!s || !p)
        return fy_error(FY_E_INVAL, "fy_qstream_target_run: session or params is NULL");
    if (s->ops->data_max < FY_DATA_MAX)
        return fy_error(FY_E_UNSUPPORTED, "stream mode needs a transport that "
                        "carries DATA operations of %u bytes; %s does not "
                        "(tcp does)", FY_DATA_MAX, s->ops->name);
    if (s->nstreams < 2)
        return fy_error(FY_E_INVAL, "stream mode: a session of %u stream(s); "
                        "the main channel and at least one multifd channel "
                        "need two", s->nstreams);
    q = calloc(1, sizeof(*q));
    if (!q || !(q->ch = calloc(s->nstreams, sizeof(*q->ch)))) {
        free(q);
        return fy_error(FY_E_NOMEM, "no memory for stream mode");
    }
    q->s = s;
    q->p = p;
    q->nch = s->nstreams;
    q->timeout_ms = p->timeout_ms > 0 ? p->timeout_ms : DEFAULT_TIMEOUT_MS;
    pthread_mutex_init(&q->run.mu, NULL);
    pthread_mutex_init(&q->run.tx0, NULL);
    pthread_cond_init(&q->run.cv, NULL);
    for (unsigned i = 0; i < q->nch; i++) {
        struct tchan *c = &q->ch[i];
        c->q = q;
        c->index = i;
        c->fd = -1;
        c->st = s->streams[i];
        c->st_local.parsed_all = true;
        c->sum = XXH3_createState();
        if (!(c->bounce = malloc((size_t)BATCH * FY_PAGE_SIZE)) || !c->sum ||
            XXH3_128bits_reset(c->sum) != XXH_OK) {
            rc = fy_error(FY_E_NOMEM, "no memory for channel buffers");
            goto out;
        }
    }
    if ((rc = cache_open(q)) < 0 || (rc = read_hello(q)) < 0 ||
        (rc = connect_channels(q)) < 0) {
        fail(q, rc, "%s", fy_error_detail());
        goto out;
    }
    want = q->nch + 1;
    pthread_mutex_lock(&q->run.mu);
    q->run.running = want;
    pthread_mutex_unlock(&q->run.mu);
    for (unsigned i = 0; i < q->nch; i++) {
        q->ch[i].started = pthread_create(&q->ch[i].thr, NULL, chan_main, &q->ch[i]) == 0;
        if (!q->ch[i].started)
            thread_done(q);
    }
    q->rp_started = pthread_create(&q->rp, NULL, rp_main, q) == 0;
    if (!q->rp_started)
        thread_done(q);
    for (unsigned i = 0; i < q->nch; i++)
        if (!q->ch[i].started)
            fail(q, FY_E_SYS, "cannot start stream mode threads");
    /* Wait for the channels, then give the destination its time to close
     * the main channel (the return path ends there). */
    {
        int64_t rp_deadline = -1;

        pthread_mutex_lock(&q->run.mu);
        while (q->run.running > 0) {
            struct timespec ts;

            if (p->cancel && *p->cancel && !q->run.err) {
                pthread_mutex_unlock(&q->run.mu);
                fail(q, FY_E_CANCELLED, "stream mode migration cancelled");
                pthread_mutex_lock(&q->run.mu);
            }
            if (q->run.running == 1 && q->rp_started && rp_deadline < 0)
                rp_deadline = now_ms() + q->timeout_ms;
            if (rp_deadline >= 0 && now_ms() > rp_deadline)
                __atomic_store_n(&q->rp_stop, 1, __ATOMIC_RELEASE);
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&q->run.cv, &q->run.mu, &ts);
        }
        pthread_mutex_unlock(&q->run.mu);
    }
    for (unsigned i = 0; i < q->nch; i++)
        if (q->ch[i].started)
            pthread_join(q->ch[i].thr, NULL);
    if (q->rp_started)
        pthread_join(q->rp, NULL);
    if (q->run.err) {
        rc = fy_error(q->run.err, "%s", q->run.errmsg);
        goto out;
    }
    {
        struct fy_op fin[2] = {{.type = FY_OP_DATA, .offset = FY_QS_EOF},
                               {.type = FY_OP_DONE}};
        /* Without the destination's EOF, the return path is cut here. */
        rc = q->rp_eof_sent ? fy_stream_send_all(s->streams[0], &fin[1], 1)
                            : fy_stream_send_all(s->streams[0], fin, 2);
    }
    if (rc == 0)
        rc = cache_keep(q);
out:
    if (out)
        sum_stats(q, out, (double)(now_ms() - t0) / 1000.0);
    {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", rc < 0 ? fy_error_detail() : "");
        for (unsigned i = 0; i < q->nch; i++) {
            if (q->ch[i].fd >= 0)
                close(q->ch[i].fd);
            free(q->ch[i].bounce);
            XXH3_freeState(q->ch[i].sum);
        }
        fy_pagemap_fini(&q->map);
        if (q->own_cache)
            fy_region_close(q->cache);
        if (rc < 0)
            fy_error(-rc, "%s", msg);
    }
    pthread_mutex_destroy(&q->run.mu);
    pthread_mutex_destroy(&q->run.tx0);
    pthread_cond_destroy(&q->run.cv);
    free(q->ch);
    free(q);
    return rc;
}
