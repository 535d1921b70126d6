/* Packet transport core: shared ports, the tag table, session objects,
 * counters (see pkt.h; listeners, the handshake, connect and close are
 * pkt_session.c; reliable streams pkt_stream.c and pkt_ops.c).
 *
 * A port is a backend's open device, shared by every listener and session
 * of the process that names it with the same settings, and closed when
 * the last of them goes.  Each port has a service thread that pumps the
 * queues nobody else pumped for a millisecond, so acknowledgements,
 * retransmissions, probes and handshake answers go on while the engine is
 * busy elsewhere (it sleeps 1 ms between passes, 20 ms with no session). */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "dataplane/transport/pkt_internal.h"
#include "ferry/error.h"

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_WINDOW 512u
#define DEFAULT_RTO_MS 20u
#define SVC_BUSY_NS (1 * PKT_MS)
#define SVC_IDLE_NS (20 * PKT_MS)

static pthread_mutex_t ports_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pkt_port *ports;

/* ---- small helpers -------------------------------------------------------- */

static uint32_t random32(void)
{
    uint32_t v;

    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == sizeof(v))
        return v;
    return (uint32_t)(pkt_now() * 0x9e3779b97f4a7c15ull >> 32) ^ (uint32_t)getpid();
}

void pkt_ip_str(uint32_t ip, char *buf, size_t len)
{
    if (!inet_ntop(AF_INET, &ip, buf, (socklen_t)len))
        snprintf(buf, len, "?");
}

/* "A.B.C.D:PORT" into network-order address and host-order port. */
int pkt_parse_addr(const char *addr, uint32_t *ip, uint16_t *port)
{
    char host[64];
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    char *end;
    unsigned long v;

    if (!colon || (size_t)(colon - addr) >= sizeof(host))
        return fy_error(FY_E_INVAL, "address '%s': expected IPV4:PORT",
                        addr ? addr : "(null)");
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    if (inet_pton(AF_INET, host, ip) != 1)
        return fy_error(FY_E_INVAL, "address '%s': '%s' is not an IPv4 address "
                        "(packet transports take numeric IPv4)", addr, host);
    v = strtoul(colon + 1, &end, 10);
    if (!colon[1] || *end || v > 65535)
        return fy_error(FY_E_INVAL, "address '%s': bad UDP port", addr);
    *port = (uint16_t)v;
    return 0;
}

static unsigned pow2_up(unsigned v)
{
    unsigned p = 16;
    while (p < v)
        p <<= 1;
    return p;
}

/* The session settings of opts->params. */
int pkt_read_settings(const struct fy_transport_opts *o, uint64_t *timeout,
                         uint32_t *window, uint64_t *rto0)
{
    uint64_t w = DEFAULT_WINDOW, r = DEFAULT_RTO_MS;
    int rc;

    if ((rc = fy_params_get_uint(o->params, "window", 16, 16384, &w)) < 0 ||
        (rc = fy_params_get_uint(o->params, "rto_ms", 1, 10000, &r)) < 0)
        return rc;
    *window = pow2_up((unsigned)w);
    *rto0 = r * PKT_MS;
    *timeout = (uint64_t)(o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS) * PKT_MS;
    return 0;
}

void pkt_free_any(struct pkt_port *p, struct fy_pkt **pkts, unsigned n)
{
    struct fy_pkt *v[64];

    for (unsigned i = 0; i < n; i++) {
        if (!pkts[i])
            continue;
        unsigned q = pkts[i]->queue < p->nq ? pkts[i]->queue : 0, k = 0;
        pthread_mutex_lock(&p->q[q].lock);
        for (unsigned j = i; j < n; j++) {
            if (!pkts[j] || (pkts[j]->queue < p->nq ? pkts[j]->queue : 0) != q)
                continue;
            v[k++] = pkts[j];
            pkts[j] = NULL;
            if (k == 64) {
                p->ops->free(p->io, v, k);
                k = 0;
            }
        }
        if (k)
            p->ops->free(p->io, v, k);
        pthread_mutex_unlock(&p->q[q].lock);
    }
}

void pkt_lock_queues(struct pkt_port *p)
{
    for (unsigned i = 0; i < p->nq; i++)
        pthread_mutex_lock(&p->q[i].lock);
}

void pkt_unlock_queues(struct pkt_port *p)
{
    for (unsigned i = p->nq; i-- > 0;)
        pthread_mutex_unlock(&p->q[i].lock);
}

/* ---- ports ---------------------------------------------------------------- */

/* params without the per-session keys: what names a port. */
static char *port_key(const char *params)
{
    const char *p = params ? params : "";
    char *key = malloc(strlen(p) + 1), *out = key;

    if (!key)
        return NULL;
    while (*p) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *k = p;
        while (k < p + len && (*k == ' ' || *k == '\t'))
            k++;
        bool session_key = (strncmp(k, "window", 6) == 0 || strncmp(k, "rto_ms", 6) == 0) &&
                           memchr(k, '=', len - (size_t)(k - p)) &&
                           (k[6] == '=' || k[6] == ' ');
        if (!session_key && len) {
            if (out != key)
                *out++ = ';';
            memcpy(out, p, len);
            out += len;
        }
        p += len;
        if (*p == ';')
            p++;
    }
    *out = '\0';
    return key;
}

static void *svc_main(void *arg)
{
    struct pkt_port *p = arg;

    pthread_setname_np(pthread_self(), "fy-pkt-svc");
    while (!__atomic_load_n(&p->svc_stop, __ATOMIC_ACQUIRE)) {
        bool busy = __atomic_load_n(&p->users, __ATOMIC_RELAXED) != 0;
        struct timespec ts = {0, (long)(busy ? SVC_BUSY_NS : SVC_IDLE_NS)};
        nanosleep(&ts, NULL);
        uint64_t now = pkt_now();
        for (unsigned i = 0; i < p->nq; i++) {
            struct pkt_queue *q = &p->q[i];
            if (now - __atomic_load_n(&q->last_pump, __ATOMIC_RELAXED) < SVC_BUSY_NS)
                continue;
            if (pthread_mutex_trylock(&q->lock) == 0) {
                pkt_pump_locked(p, i, now);
                pthread_mutex_unlock(&q->lock);
            }
        }
        if (__atomic_load_n(&p->nctl, __ATOMIC_RELAXED))
            pkt_ctl_run(p, false);
    }
    return NULL;
}

static void port_destroy(struct pkt_port *p)
{
    if (p->svc_started) {
        __atomic_store_n(&p->svc_stop, 1, __ATOMIC_RELEASE);
        pthread_join(p->svc, NULL);
    }
    if (p->nctl)
        pkt_free_any(p, p->ctl, p->nctl);
    if (p->io)
        p->ops->close(p->io);
    if (p->q) {
        for (unsigned i = 0; i < p->nq; i++) {
            pthread_mutex_destroy(&p->q[i].lock);
            free(p->q[i].streams);
        }
        free(p->q);
    }
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->ctl_lock);
    free(p->key);
    free(p);
}

/* The open port of (ops, params), opened if need be.  The caller holds a
 * reference until pkt_port_put(). */
int pkt_port_get(const struct fy_pktio_ops *ops, const char *params,
                    bool listener, struct pkt_port **out)
{
    struct pkt_port *p;
    char *key = port_key(params);
    char buf[128];
    uint64_t queues;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int rc;

    if (!key)
        return fy_error(FY_E_NOMEM, "no memory for a port name");
    pthread_mutex_lock(&ports_lock);
    for (p = ports; p; p = p->next)
        if (p->base_ops == ops && strcmp(p->key, key) == 0) {
            p->refs++;
            pthread_mutex_unlock(&ports_lock);
            free(key);
            *out = p;
            return 0;
        }
    p = calloc(1, sizeof(*p));
    if (!p) {
        pthread_mutex_unlock(&ports_lock);
        free(key);
        return fy_error(FY_E_NOMEM, "no memory for a port");
    }
    p->key = key;
    p->base_ops = p->ops = ops;
    p->refs = 1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->ctl_lock, NULL);
    queues = cpus > 0 ? (cpus < 8 ? (uint64_t)cpus : 8) : 1;
    if ((rc = fy_params_get_uint(params, "queues", 1, 64, &queues)) < 0)
        goto fail;
    if ((rc = ops->open(params, (unsigned)queues, listener, &p->io)) < 0)
        goto fail;
    ops->info(p->io, &p->info);
    if ((rc = fy_params_get(params, "lossy", buf, sizeof(buf))) < 0)
        goto fail;
    if (rc == 1) {
        struct fy_pkt_lossy_cfg cfg;
        const struct fy_pktio_ops *lops;
        struct fy_pktio *lio;
        if ((rc = fy_pkt_lossy_parse(buf, &cfg)) < 0 ||
            (rc = fy_pkt_lossy_wrap(ops, p->io, &cfg, &lops, &lio)) < 0)
            goto fail;
        p->ops = lops;
        p->io = lio;
    }
    p->ip = p->info.ipv4;
    if ((rc = fy_params_get(params, "ip", buf, sizeof(buf))) < 0)
        goto fail;
    if (rc == 1 && inet_pton(AF_INET, buf, &p->ip) != 1) {
        rc = fy_error(FY_E_CONFIG, "setting ip=%s: not an IPv4 address", buf);
        goto fail;
    }
    if (!p->ip) {
        rc = fy_error(FY_E_CONFIG, "%s port (%s) has no IPv4 address: give "
                      "this side's with ip=A.B.C.D", ops->name, p->info.mode);
        goto fail;
    }
    if (p->info.mtu < PKT_MTU_MIN) {
        rc = fy_error(FY_E_CONFIG, "%s port: MTU %u, at least %u needed",
                      ops->name, p->info.mtu, PKT_MTU_MIN);
        goto fail;
    }
    if (p->info.mtu > PKT_FRAME_MAX - PKT_ETH_LEN)
        p->info.mtu = PKT_FRAME_MAX - PKT_ETH_LEN;
    p->nq = p->info.queues ? (p->info.queues > 64 ? 64 : p->info.queues) : 1;
    p->q = aligned_alloc(64, sizeof(*p->q) * p->nq);
    if (!p->q) {
        rc = fy_error(FY_E_NOMEM, "no memory for %u queues", p->nq);
        goto fail;
    }
    memset(p->q, 0, sizeof(*p->q) * p->nq);
    for (unsigned i = 0; i < p->nq; i++)
        pthread_mutex_init(&p->q[i].lock, NULL);
    if (pthread_create(&p->svc, NULL, svc_main, p) != 0) {
        rc = fy_error_sys("cannot start the %s port's service thread", ops->name);
        goto fail;
    }
    p->svc_started = true;
    p->next = ports;
    ports = p;
    pthread_mutex_unlock(&ports_lock);
    *out = p;
    return 0;
fail:
    pthread_mutex_unlock(&ports_lock);
    {
        char saved[512];
        snprintf(saved, sizeof(saved), "%s", fy_error_detail());
        port_destroy(p);
        return fy_error(-rc, "%s", saved);
    }
}

void pkt_port_ref(struct pkt_port *p)
{
    pthread_mutex_lock(&ports_lock);
    p->refs++;
    pthread_mutex_unlock(&ports_lock);
}

void pkt_port_put(struct pkt_port *p)
{
    bool last;

    if (!p)
        return;
    pthread_mutex_lock(&ports_lock);
    last = --p->refs == 0;
    if (last) {
        struct pkt_port **pp = &ports;
        while (*pp != p)
            pp = &(*pp)->next;
        *pp = p->next;
    }
    pthread_mutex_unlock(&ports_lock);
    if (last)
        port_destroy(p);
}

/* ---- the tag table and handshake frames ----------------------------------- */

struct pkt_sess *pkt_sess_lookup(struct pkt_port *p, uint32_t tag)
{
    struct pkt_sess *s = p->tags[tag % PKT_TAG_BUCKETS];

    while (s && s->tag != tag)
        s = s->tag_next;
    return s;
}

bool pkt_ctl_push(struct pkt_port *p, struct fy_pkt *pkt)
{
    bool ok;

    pthread_mutex_lock(&p->ctl_lock);
    ok = p->nctl < PKT_CTL_MAX;
    if (ok) {
        p->ctl[p->nctl] = pkt;
        __atomic_store_n(&p->nctl, p->nctl + 1, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&p->ctl_lock);
    return ok;
}

void pkt_sess_fail(struct pkt_sess *s, int code, const char *fmt, ...)
{
    va_list ap;
    int zero = 0;
    char msg[sizeof(s->errmsg)];

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* The first failure wins; its message is written before the code is
     * published, and never again. */
    if (!__atomic_compare_exchange_n(&s->err, &zero, INT32_MIN, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;
    memcpy(s->errmsg, msg, sizeof(msg));
    __atomic_store_n(&s->err, -code, __ATOMIC_RELEASE);
}

/* Publishes a session: a fresh tag, the tag table, the queues' stream
 * lists.  Caller holds port->lock. */
int pkt_sess_publish_locked(struct pkt_port *p, struct pkt_sess *s)
{
    unsigned tries = 0;

    do {
        s->tag = random32();
        if (++tries > 1000)
            return fy_error(FY_E_BUSY, "no free session tag on the port");
    } while (s->tag == 0 || pkt_sess_lookup(p, s->tag));
    for (unsigned i = 0; i < s->pub.nstreams; i++) {
        struct pkt_queue *q = &p->q[s->st[i].q];
        if (q->nstreams == q->cap) {
            unsigned cap = q->cap ? q->cap * 2 : 8;
            struct pkt_stream **v = realloc(q->streams, cap * sizeof(*v));
            if (!v)
                return fy_error(FY_E_NOMEM, "no memory for the queue's streams");
            /* realloc under every queue lock: a pump reads this list. */
            pkt_lock_queues(p);
            q->streams = v;
            q->cap = cap;
            pkt_unlock_queues(p);
        }
    }
    pkt_lock_queues(p);
    for (unsigned i = 0; i < s->pub.nstreams; i++) {
        struct pkt_queue *q = &p->q[s->st[i].q];
        q->streams[q->nstreams++] = &s->st[i];
    }
    s->tag_next = p->tags[s->tag % PKT_TAG_BUCKETS];
    p->tags[s->tag % PKT_TAG_BUCKETS] = s;
    s->next = p->sessions;
    p->sessions = s;
    __atomic_fetch_add(&p->users, 1, __ATOMIC_RELAXED);
    pkt_unlock_queues(p);
    return 0;
}

void pkt_sess_unpublish(struct pkt_sess *s)
{
    struct pkt_port *p = s->port;

    pthread_mutex_lock(&p->lock);
    pkt_lock_queues(p);
    for (struct pkt_sess **pp = &p->tags[s->tag % PKT_TAG_BUCKETS]; *pp; pp = &(*pp)->tag_next)
        if (*pp == s) {
            *pp = s->tag_next;
            break;
        }
    for (struct pkt_sess **pp = &p->sessions; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            __atomic_fetch_sub(&p->users, 1, __ATOMIC_RELAXED);
            break;
        }
    for (unsigned i = 0; i < s->pub.nstreams; i++) {
        struct pkt_queue *q = &p->q[s->st[i].q];
        for (unsigned k = 0; k < q->nstreams; k++)
            if (q->streams[k] == &s->st[i]) {
                q->streams[k] = q->streams[--q->nstreams];
                break;
            }
    }
    pkt_unlock_queues(p);
    pthread_mutex_unlock(&p->lock);
}

/* A session object for n streams on p, not yet published.  Takes over the
 * caller's reference to p only on success. */
int pkt_sess_new(struct pkt_port *p, const struct fy_transport_ops *tops,
                    unsigned n, uint64_t timeout, uint32_t window, uint64_t rto0,
                    struct pkt_sess **out)
{
    struct pkt_sess *s = calloc(1, sizeof(*s));
    int rc = 0;

    if (!s)
        return fy_error(FY_E_NOMEM, "no memory for a session");
    s->st = calloc(n, sizeof(*s->st));
    s->ptrs = calloc(n, sizeof(*s->ptrs));
    if (!s->st || !s->ptrs) {
        free(s->st);
        free(s->ptrs);
        free(s);
        return fy_error(FY_E_NOMEM, "no memory for a %u-stream session", n);
    }
    s->pub.ops = tops;
    s->pub.nstreams = n;
    s->pub.streams = s->ptrs;
    s->port = p;
    s->timeout = timeout;
    s->window = window;
    s->rto0 = rto0;
    s->mtu = p->info.mtu;
    s->lim.page_size = FY_PAGE_SIZE;
    s->zero_copy = p->info.extbuf;
    for (unsigned i = 0; i < n && rc == 0; i++) {
        rc = pkt_stream_init(s, &s->st[i], i);
        s->ptrs[i] = &s->st[i].pub;
        if (rc == 0 && s->zero_copy)
            pkt_stream_enable_zero_copy(&s->st[i]);
    }
    if (rc < 0) {
        for (unsigned i = 0; i < n; i++)
            if (s->st[i].s)
                pkt_stream_fini(s, &s->st[i]);
        free(s->st);
        free(s->ptrs);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void pkt_sess_free(struct pkt_sess *s)
{
    for (unsigned i = 0; i < s->pub.nstreams; i++)
        pkt_stream_fini(s, &s->st[i]);
    free(s->st);
    free(s->ptrs);
    free(s);
}

/* Frame sizes from the MTU both sides take. */
void pkt_sess_set_mtu(struct pkt_sess *s)
{
    unsigned ops_max = s->mtu - PKT_IP_LEN - PKT_UDP_LEN - PKT_FPH_LEN;
    unsigned frag = ops_max - PKT_DESC_LEN;

    s->ops_max = (uint16_t)ops_max;
    s->frag_max = (uint16_t)(frag > FY_PAGE_SIZE ? FY_PAGE_SIZE : frag);
}

void pkt_sess_peer_name(struct pkt_sess *s)
{
    char ip[INET_ADDRSTRLEN];

    pkt_ip_str(s->peer_ip, ip, sizeof(ip));
    snprintf(s->pub.peer, sizeof(s->pub.peer), "%s:%u", ip, s->udp_port);
}

static void add_stats(struct fy_pkt_stats *o, const struct fy_pkt_stats *a)
{
    const uint64_t *src = (const uint64_t *)a;
    uint64_t *dst = (uint64_t *)o;

    for (size_t i = 0; i < sizeof(*o) / sizeof(uint64_t); i++)
        dst[i] += __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

void pkt_port_stats(const struct pkt_port *p, struct fy_pkt_stats *out)
{
    out->drop_malformed = __atomic_load_n(&p->drop_malformed, __ATOMIC_RELAXED);
    out->drop_unknown = __atomic_load_n(&p->drop_unknown, __ATOMIC_RELAXED);
    out->drop_range = __atomic_load_n(&p->drop_range, __ATOMIC_RELAXED);
}

const char *fy_pkt_session_mode(const struct fy_session *fs)
{
    const struct pkt_sess *s = (const struct pkt_sess *)fs;

    return s ? s->port->info.mode : "";
}

void fy_pkt_session_stats(const struct fy_session *fs, struct fy_pkt_stats *out)
{
    const struct pkt_sess *s = (const struct pkt_sess *)fs;

    memset(out, 0, sizeof(*out));
    if (!s)
        return;
    for (unsigned i = 0; i < fs->nstreams; i++)
        add_stats(out, &s->st[i].st);
    pkt_port_stats(s->port, out);
}
