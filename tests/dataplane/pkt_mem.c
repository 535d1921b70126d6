/* A TEST packet backend: an in-process link made of rings (see
 * pkt_mem.h).  Each end has a pool of frame buffers and one receive ring
 * per queue; sending copies the frame into a buffer of the other end and
 * puts it on that end's ring, so the sender's buffer is free again when
 * tx returns (no NIC reference to track). */
#include "tests/dataplane/pkt_mem.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/error.h"

#define RING 8192u
#define MAX_QUEUES 16u

struct mbuf {
    struct fy_pkt pkt;
    struct mem_end *end;
};

struct ring {
    pthread_mutex_t lock;
    struct fy_pkt *v[RING];
    unsigned head, tail; /* head: next to take; tail: next free */
};

struct mem_link;

struct mem_end {
    struct mem_link *link;
    unsigned idx;
    bool open;
    unsigned queues;
    uint16_t mtu;
    bool extbuf;
    unsigned nframes, frame_size;
    struct mbuf *bufs;
    uint8_t *mem;
    pthread_mutex_t pool_lock;
    struct mbuf **free_stack;
    unsigned nfree;
    struct ring rings[MAX_QUEUES];
    uint64_t sent;
};

struct mem_link {
    struct mem_link *next;
    char name[64];
    struct mem_end end[2];
    int cut;
};

static pthread_mutex_t links_lock = PTHREAD_MUTEX_INITIALIZER;
/* Held for reading while a frame crosses to the other end, for writing
 * while an end closes: a closing end's buffers are never written. */
static pthread_rwlock_t cross_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct mem_link *links;

static struct mem_link *find_link(const char *name)
{
    struct mem_link *l = links;

    while (l && strcmp(l->name, name) != 0)
        l = l->next;
    return l;
}

static struct mem_end *E(struct fy_pktio *io)
{
    return (struct mem_end *)io;
}

static void end_free(struct mem_end *e)
{
    for (unsigned q = 0; q < MAX_QUEUES; q++)
        pthread_mutex_destroy(&e->rings[q].lock);
    pthread_mutex_destroy(&e->pool_lock);
    free(e->bufs);
    free(e->mem);
    free(e->free_stack);
    e->bufs = NULL;
    e->mem = NULL;
    e->free_stack = NULL;
}

static int mem_open(const char *params, unsigned queues, bool listener,
                    struct fy_pktio **out)
{
    char name[64] = "", endbuf[8] = "0";
    uint64_t end = 0, mtu = 1500, frames = 8192, extbuf = 0;
    struct mem_link *l;
    struct mem_end *e;
    int rc;

    (void)listener;
    if (fy_params_get(params, "link", name, sizeof(name)) != 1)
        return fy_error(FY_E_CONFIG, "pkt_mem: link=NAME is needed");
    if ((rc = fy_params_get(params, "end", endbuf, sizeof(endbuf))) < 0 ||
        (rc = fy_params_get_uint(params, "end", 0, 1, &end)) < 0 ||
        (rc = fy_params_get_uint(params, "mtu", 576, 9000, &mtu)) < 0 ||
        (rc = fy_params_get_uint(params, "frames", 64, 1u << 20, &frames)) < 0 ||
        (rc = fy_params_get_uint(params, "extbuf", 0, 1, &extbuf)) < 0)
        return rc;
    pthread_mutex_lock(&links_lock);
    l = find_link(name);
    if (!l) {
        l = calloc(1, sizeof(*l));
        if (!l) {
            pthread_mutex_unlock(&links_lock);
            return fy_error(FY_E_NOMEM, "pkt_mem: no memory");
        }
        snprintf(l->name, sizeof(l->name), "%s", name);
        l->next = links;
        links = l;
    }
    e = &l->end[end];
    if (e->open) {
        pthread_mutex_unlock(&links_lock);
        return fy_error(FY_E_BUSY, "pkt_mem: end %u of link %s is open already",
                        (unsigned)end, name);
    }
    memset(e, 0, sizeof(*e));
    e->link = l;
    e->idx = (unsigned)end;
    e->queues = queues > MAX_QUEUES ? MAX_QUEUES : (queues ? queues : 1);
    e->mtu = (uint16_t)mtu;
    e->extbuf = extbuf;
    e->nframes = (unsigned)frames;
    e->frame_size = ((unsigned)mtu + 14 + 63) & ~63u;
    e->bufs = calloc(e->nframes, sizeof(*e->bufs));
    e->mem = malloc((size_t)e->nframes * e->frame_size);
    e->free_stack = malloc(e->nframes * sizeof(*e->free_stack));
    pthread_mutex_init(&e->pool_lock, NULL);
    for (unsigned q = 0; q < MAX_QUEUES; q++)
        pthread_mutex_init(&e->rings[q].lock, NULL);
    if (!e->bufs || !e->mem || !e->free_stack) {
        end_free(e);
        pthread_mutex_unlock(&links_lock);
        return fy_error(FY_E_NOMEM, "pkt_mem: no memory for %u frames", e->nframes);
    }
    for (unsigned i = 0; i < e->nframes; i++) {
        struct mbuf *m = &e->bufs[i];
        m->end = e;
        m->pkt.data = e->mem + (size_t)i * e->frame_size;
        m->pkt.room = (uint16_t)e->frame_size;
        e->free_stack[i] = m;
    }
    e->nfree = e->nframes;
    e->open = true;
    pthread_mutex_unlock(&links_lock);
    *out = (struct fy_pktio *)e;
    return 0;
}

static void pool_put(struct mem_end *e, struct fy_pkt **pkts, unsigned n)
{
    pthread_mutex_lock(&e->pool_lock);
    for (unsigned i = 0; i < n; i++)
        e->free_stack[e->nfree++] = (struct mbuf *)pkts[i];
    pthread_mutex_unlock(&e->pool_lock);
}

static unsigned pool_get(struct mem_end *e, struct fy_pkt **pkts, unsigned n)
{
    unsigned k = 0;

    pthread_mutex_lock(&e->pool_lock);
    while (k < n && e->nfree) {
        struct mbuf *m = e->free_stack[--e->nfree];
        m->pkt.len = 0;
        m->pkt.ext = NULL;
        m->pkt.ext_len = 0;
        pkts[k++] = &m->pkt;
    }
    pthread_mutex_unlock(&e->pool_lock);
    return k;
}

static void mem_close(struct fy_pktio *io)
{
    struct mem_end *e = E(io);
    struct mem_link *l;

    if (!e)
        return;
    l = e->link;
    pthread_rwlock_wrlock(&cross_lock);
    pthread_mutex_lock(&links_lock);
    /* Frames still on our rings were never received: back to the pool. */
    for (unsigned q = 0; q < MAX_QUEUES; q++) {
        struct ring *r = &e->rings[q];
        pthread_mutex_lock(&r->lock);
        while (r->head != r->tail) {
            pool_put(e, &r->v[r->head % RING], 1);
            r->head++;
        }
        pthread_mutex_unlock(&r->lock);
    }
    if (e->nfree != e->nframes)
        fprintf(stderr, "pkt_mem: link %s end %u closed with %u frames not "
                "returned\n", l->name, e->idx, e->nframes - e->nfree);
    e->open = false;
    end_free(e);
    if (!l->end[0].open && !l->end[1].open) {
        struct mem_link **pp = &links;
        while (*pp != l)
            pp = &(*pp)->next;
        *pp = l->next;
        free(l);
    }
    pthread_mutex_unlock(&links_lock);
    pthread_rwlock_unlock(&cross_lock);
}

static void mem_info(struct fy_pktio *io, struct fy_pktio_info *out)
{
    struct mem_end *e = E(io);
    unsigned h = 0;

    for (const char *c = e->link->name; *c; c++)
        h = h * 31 + (unsigned char)*c;
    memset(out, 0, sizeof(*out));
    out->mtu = e->mtu;
    out->queues = e->queues;
    out->mac[0] = 0x02;
    out->mac[3] = (uint8_t)(h >> 8);
    out->mac[4] = (uint8_t)h;
    out->mac[5] = (uint8_t)e->idx;
    out->extbuf = e->extbuf;
    snprintf(out->mode, sizeof(out->mode), "test link %s end %u, %u queues",
             e->link->name, e->idx, e->queues);
}

static int mem_alloc(struct fy_pktio *io, unsigned queue, struct fy_pkt **pkts,
                     unsigned n)
{
    (void)queue;
    return (int)pool_get(E(io), pkts, n);
}

/* Puts a copy of 'len' bytes (two parts) on ring q of end 'to'. */
static bool deliver(struct mem_end *to, unsigned q, const void *a, unsigned alen,
                    const void *b, unsigned blen)
{
    struct fy_pkt *c;
    struct ring *r = &to->rings[q % to->queues];

    if (alen + blen > to->frame_size || pool_get(to, &c, 1) != 1)
        return false;
    memcpy(c->data, a, alen);
    if (blen)
        memcpy(c->data + alen, b, blen);
    c->len = (uint16_t)(alen + blen);
    c->queue = (uint16_t)(q % to->queues);
    pthread_mutex_lock(&r->lock);
    bool ok = r->tail - r->head < RING;
    if (ok)
        r->v[r->tail++ % RING] = c;
    pthread_mutex_unlock(&r->lock);
    if (!ok)
        pool_put(to, &c, 1);
    return ok;
}

static int mem_tx(struct fy_pktio *io, unsigned queue, struct fy_pkt **pkts,
                  unsigned n)
{
    struct mem_end *e = E(io);
    struct mem_end *peer = &e->link->end[!e->idx];

    pthread_rwlock_rdlock(&cross_lock);
    for (unsigned i = 0; i < n; i++) {
        const struct fy_pkt *p = pkts[i];
        __atomic_fetch_add(&e->sent, 1, __ATOMIC_RELAXED);
        /* A cut link, or nobody at the other end: lost on the wire. */
        if (__atomic_load_n(&e->link->cut, __ATOMIC_RELAXED) ||
            !__atomic_load_n(&peer->open, __ATOMIC_ACQUIRE))
            continue;
        deliver(peer, queue, p->data, p->len, p->ext, p->ext ? p->ext_len : 0);
    }
    pthread_rwlock_unlock(&cross_lock);
    return (int)n;
}

static int mem_rx(struct fy_pktio *io, unsigned queue, struct fy_pkt **pkts,
                  unsigned max)
{
    struct mem_end *e = E(io);
    struct ring *r = &e->rings[queue];
    unsigned k = 0;

    pthread_mutex_lock(&r->lock);
    while (k < max && r->head != r->tail)
        pkts[k++] = r->v[r->head++ % RING];
    pthread_mutex_unlock(&r->lock);
    return (int)k;
}

static void mem_free(struct fy_pktio *io, struct fy_pkt **pkts, unsigned n)
{
    struct mem_end *e = E(io);

    for (unsigned i = 0; i < n; i++)
        if (((struct mbuf *)pkts[i])->end != e)
            fprintf(stderr, "pkt_mem: frame freed to the wrong end\n");
    pool_put(e, pkts, n);
}

const struct fy_pktio_ops fy_pkt_mem_ops = {
    .name = "pkt_mem",
    .open = mem_open,
    .close = mem_close,
    .info = mem_info,
    .alloc = mem_alloc,
    .tx = mem_tx,
    .rx = mem_rx,
    .free = mem_free,
};

int fy_pkt_mem_inject(const char *link, unsigned end, unsigned queue,
                      const void *frame, unsigned len)
{
    struct mem_link *l;
    int rc = 0;

    pthread_rwlock_rdlock(&cross_lock);
    pthread_mutex_lock(&links_lock);
    l = find_link(link);
    if (!l || end > 1 || !l->end[end].open)
        rc = -FY_E_NOTFOUND;
    else if (!deliver(&l->end[end], queue, frame, len, NULL, 0))
        rc = -FY_E_NOSPACE;
    pthread_mutex_unlock(&links_lock);
    pthread_rwlock_unlock(&cross_lock);
    return rc;
}

void fy_pkt_mem_cut(const char *link, bool cut)
{
    pthread_mutex_lock(&links_lock);
    struct mem_link *l = find_link(link);
    if (l)
        __atomic_store_n(&l->cut, cut, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&links_lock);
}

long fy_pkt_mem_in_use(const char *link, unsigned end)
{
    long n = -1;

    pthread_mutex_lock(&links_lock);
    struct mem_link *l = find_link(link);
    if (l && end < 2 && l->end[end].open) {
        pthread_mutex_lock(&l->end[end].pool_lock);
        n = (long)l->end[end].nframes - (long)l->end[end].nfree;
        pthread_mutex_unlock(&l->end[end].pool_lock);
    }
    pthread_mutex_unlock(&links_lock);
    return n;
}

uint64_t fy_pkt_mem_sent(const char *link, unsigned end)
{
    uint64_t n = 0;

    pthread_mutex_lock(&links_lock);
    struct mem_link *l = find_link(link);
    if (l && end < 2)
        n = __atomic_load_n(&l->end[end].sent, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&links_lock);
    return n;
}
