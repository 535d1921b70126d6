/* The lossy-link harness: a packet backend wrapping another, which drops,
 * reorders and duplicates a set share of the frames it transmits (see
 * pkt.h).  Settings "lossy=drop:P,reorder:P,dup:P[,seed:N]" make the core
 * wrap any backend in it.
 *
 * A frame picked for reordering is copied (into a buffer of the inner
 * backend) and held back until 1 to 3 later frames of its queue went out,
 * or at the latest HOLD_NS later (on the next tx or rx of the queue).  A
 * dropped frame is reported as sent.  Frames the inner backend refuses
 * are dropped too: this link loses frames anyway.  All state is per queue
 * and touched only under the core's queue lock. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/transport/pkt_internal.h"
#include "ferry/error.h"

#define HOLD_MAX 8u
#define HOLD_NS (1 * PKT_MS)

struct held {
    struct fy_pkt *pkt;
    unsigned countdown; /* frames still to pass it */
    uint64_t since;
};

struct lq {
    uint64_t rng;
    struct held held[HOLD_MAX];
    unsigned nheld;
};

struct lossy {
    const struct fy_pktio_ops *in_ops;
    struct fy_pktio *in;
    struct fy_pkt_lossy_cfg cfg;
    struct fy_pktio_info info;
    struct lq *q;
};

static uint64_t rnd(struct lq *q)
{
    uint64_t x = q->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return q->rng = x;
}

/* A uniform draw in [0, 1). */
static double draw(struct lq *q)
{
    return (double)(rnd(q) >> 11) * (1.0 / 9007199254740992.0);
}

static struct lossy *L(struct fy_pktio *io)
{
    return (struct lossy *)io;
}

/* Sends one frame now (queue lock held), freeing it if it is a copy. */
static void send_one(struct lossy *l, unsigned queue, struct fy_pkt *pkt, bool copy)
{
    l->in_ops->tx(l->in, queue, &pkt, 1);
    if (copy)
        l->in_ops->free(l->in, &pkt, 1);
}

/* Sends held frames whose turn came: all with 'all', else those counted
 * down to 0 or held too long. */
static void release(struct lossy *l, unsigned queue, bool all, uint64_t now)
{
    struct lq *q = &l->q[queue];

    for (unsigned i = 0; i < q->nheld;) {
        struct held *h = &q->held[i];
        if (all || h->countdown == 0 || now - h->since >= HOLD_NS) {
            send_one(l, queue, h->pkt, true);
            q->held[i] = q->held[--q->nheld];
            continue;
        }
        i++;
    }
}

static void passed(struct lossy *l, unsigned queue)
{
    struct lq *q = &l->q[queue];

    for (unsigned i = 0; i < q->nheld; i++)
        if (q->held[i].countdown)
            q->held[i].countdown--;
}

/* Holds a copy of pkt back; false if it cannot (it is then sent now). */
static bool hold(struct lossy *l, unsigned queue, const struct fy_pkt *pkt)
{
    struct lq *q = &l->q[queue];
    struct fy_pkt *c;
    unsigned len = pkt->len + (pkt->ext ? pkt->ext_len : 0);

    if (q->nheld == HOLD_MAX || l->in_ops->alloc(l->in, queue, &c, 1) != 1)
        return false;
    if (c->room < len) {
        l->in_ops->free(l->in, &c, 1);
        return false;
    }
    memcpy(c->data, pkt->data, pkt->len);
    if (pkt->ext)
        memcpy(c->data + pkt->len, pkt->ext, pkt->ext_len);
    c->len = (uint16_t)len;
    c->ext = NULL;
    c->ext_len = 0;
    c->queue = (uint16_t)queue;
    q->held[q->nheld++] = (struct held){c, 1 + (unsigned)(rnd(q) % 3), pkt_now()};
    return true;
}

static int lossy_tx(struct fy_pktio *io, unsigned queue, struct fy_pkt **pkts,
                    unsigned n)
{
    struct lossy *l = L(io);
    struct lq *q = &l->q[queue];
    uint64_t now = pkt_now();

    for (unsigned i = 0; i < n; i++) {
        double r = draw(q);
        if (r < l->cfg.drop)
            continue;
        if (r < l->cfg.drop + l->cfg.reorder && hold(l, queue, pkts[i]))
            continue;
        send_one(l, queue, pkts[i], false);
        if (draw(q) < l->cfg.dup)
            send_one(l, queue, pkts[i], false);
        passed(l, queue);
        release(l, queue, false, now);
    }
    return (int)n;
}

static int lossy_rx(struct fy_pktio *io, unsigned queue, struct fy_pkt **pkts,
                    unsigned max)
{
    struct lossy *l = L(io);

    if (l->q[queue].nheld)
        release(l, queue, false, pkt_now());
    return l->in_ops->rx(l->in, queue, pkts, max);
}

static int lossy_alloc(struct fy_pktio *io, unsigned queue, struct fy_pkt **pkts,
                       unsigned n)
{
    return L(io)->in_ops->alloc(L(io)->in, queue, pkts, n);
}

static void lossy_free(struct fy_pktio *io, struct fy_pkt **pkts, unsigned n)
{
    L(io)->in_ops->free(L(io)->in, pkts, n);
}

static bool lossy_busy(struct fy_pktio *io, struct fy_pkt *pkt)
{
    struct lossy *l = L(io);
    return l->in_ops->busy ? l->in_ops->busy(l->in, pkt) : false;
}

static int lossy_add_port(struct fy_pktio *io, uint16_t udp_port)
{
    struct lossy *l = L(io);
    return l->in_ops->add_port ? l->in_ops->add_port(l->in, udp_port) : 0;
}

static void lossy_info(struct fy_pktio *io, struct fy_pktio_info *out)
{
    *out = L(io)->info;
}

static void lossy_close(struct fy_pktio *io)
{
    struct lossy *l = L(io);

    if (!l)
        return;
    for (unsigned i = 0; i < l->info.queues; i++)
        for (unsigned k = 0; k < l->q[i].nheld; k++)
            l->in_ops->free(l->in, &l->q[i].held[k].pkt, 1);
    l->in_ops->close(l->in);
    free(l->q);
    free(l);
}

static int lossy_open(const char *params, unsigned queues, bool listener,
                      struct fy_pktio **out)
{
    (void)params;
    (void)queues;
    (void)listener;
    (void)out;
    return fy_error(FY_E_UNSUPPORTED, "the lossy harness wraps an open port: "
                    "use fy_pkt_lossy_wrap()");
}

static const struct fy_pktio_ops lossy_ops = {
    .name = "lossy",
    .open = lossy_open,
    .add_port = lossy_add_port,
    .close = lossy_close,
    .info = lossy_info,
    .alloc = lossy_alloc,
    .tx = lossy_tx,
    .rx = lossy_rx,
    .free = lossy_free,
    .busy = lossy_busy,
};

int fy_pkt_lossy_parse(const char *spec, struct fy_pkt_lossy_cfg *cfg)
{
    const char *p = spec;

    memset(cfg, 0, sizeof(*cfg));
    cfg->seed = 1;
    while (p && *p) {
        char key[16];
        const char *colon = strchr(p, ':');
        const char *end = strchr(p, ',');
        char *num_end;

        if (!end)
            end = p + strlen(p);
        if (!colon || colon > end || (size_t)(colon - p) >= sizeof(key))
            return fy_error(FY_E_CONFIG, "lossy=%s: expected name:value pairs "
                            "(drop:0.01,reorder:0.01,dup:0.01,seed:1)", spec);
        memcpy(key, p, (size_t)(colon - p));
        key[colon - p] = '\0';
        if (strcmp(key, "seed") == 0) {
            cfg->seed = strtoull(colon + 1, &num_end, 10);
        } else {
            double v = strtod(colon + 1, &num_end);
            if (v < 0 || v > 1)
                return fy_error(FY_E_CONFIG, "lossy=%s: %s must be within 0..1",
                                spec, key);
            if (strcmp(key, "drop") == 0)
                cfg->drop = v;
            else if (strcmp(key, "reorder") == 0)
                cfg->reorder = v;
            else if (strcmp(key, "dup") == 0)
                cfg->dup = v;
            else
                return fy_error(FY_E_CONFIG, "lossy=%s: unknown '%s' (drop, "
                                "reorder, dup, seed)", spec, key);
        }
        if (num_end != end)
            return fy_error(FY_E_CONFIG, "lossy=%s: bad number for %s", spec, key);
        p = *end ? end + 1 : end;
    }
    if (cfg->drop + cfg->reorder > 1)
        return fy_error(FY_E_CONFIG, "lossy=%s: drop + reorder above 1", spec);
    return 0;
}

int fy_pkt_lossy_wrap(const struct fy_pktio_ops *inner_ops, struct fy_pktio *inner,
                      const struct fy_pkt_lossy_cfg *cfg,
                      const struct fy_pktio_ops **ops_out, struct fy_pktio **out)
{
    struct lossy *l;

    if (!inner_ops || !inner || !cfg || !ops_out || !out)
        return fy_error(FY_E_INVAL, "lossy wrap: missing argument");
    l = calloc(1, sizeof(*l));
    if (!l)
        return fy_error(FY_E_NOMEM, "no memory for the lossy harness");
    l->in_ops = inner_ops;
    l->in = inner;
    l->cfg = *cfg;
    inner_ops->info(inner, &l->info);
    if (l->info.queues == 0)
        l->info.queues = 1;
    snprintf(l->info.mode + strnlen(l->info.mode, sizeof(l->info.mode) - 1),
             sizeof(l->info.mode) - strnlen(l->info.mode, sizeof(l->info.mode) - 1),
             ", lossy");
    l->q = calloc(l->info.queues, sizeof(*l->q));
    if (!l->q) {
        free(l);
        return fy_error(FY_E_NOMEM, "no memory for the lossy harness");
    }
    for (unsigned i = 0; i < l->info.queues; i++)
        l->q[i].rng = (cfg->seed ? cfg->seed : 1) * 0x9e3779b97f4a7c15ull + i * 7919 + 1;
    *ops_out = &lossy_ops;
    *out = (struct fy_pktio *)l;
    return 0;
}
