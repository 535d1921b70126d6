/* Packet transport core: listeners, the handshake, connect, shutdown and
 * close (see pkt.h; ports and session objects are pkt.c).
 *
 * Handshake (docs/protocol.md, "Packet transports"): the connecting side
 * sends a HELLO per stream (protocol v1 HELLO frame plus its MTU and
 * window) to the broadcast MAC, again every 10 ms doubling up to 200 ms,
 * until each stream has a HELLO_ACK or a REFUSE.  The listener gathers the
 * HELLOs of a session (several sessions may be opening at once), checks
 * them against the accept() in progress, and once every stream arrived
 * answers each with a HELLO_ACK carrying its own tag.  Each side names the
 * session by the tag the other chose; the peer's MAC comes from its
 * frames. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "dataplane/transport/pkt_internal.h"
#include "ferry/error.h"

#define MAX_STREAMS 256u
#define MAX_PENDING 16u
#define HELLO_IVL_MAX (200 * PKT_MS)
#define LINGER_MAX (2000 * PKT_MS)

static const uint8_t bcast_mac[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

/* A session being gathered by a listener. */
struct pkt_pending {
    struct pkt_pending *next;
    uint32_t peer_ip, peer_tag;
    uint8_t peer_mac[6];
    uint16_t peer_mtu, peer_window;
    struct fy_session_info info;
    uint64_t joined[MAX_STREAMS / 64];
    unsigned njoined;
    uint64_t created;
    bool claimed; /* an accept() is turning it into a session */
};

struct pkt_listener {
    struct fy_listener pub;
    struct pkt_listener *next;
    struct pkt_port *port;
    uint16_t udp_port;
    uint64_t timeout;
    uint32_t window;
    uint64_t rto0;
    pthread_mutex_t accept_lock; /* one accept() at a time */
    /* Under port->lock: */
    bool accepting;
    struct fy_accept_params params;
    uint8_t sid[16];
    int cancelled; /* set by fy_pkt_listener_shutdown (atomic) */
    int refusal; /* positive fy_err of a refusal accept() reports */
    char refusal_msg[FY_ERROR_MSG_MAX];
    struct pkt_pending *pending;
    unsigned npending;
};

/* ---- the listener's side of the handshake --------------------------------- */

static void hello_payload(const struct pkt_sess *s, uint32_t index, bool ack,
                          uint8_t *buf)
{
    fy_proto_encode_hello(&s->pub.info, index, ack, buf, FY_FRAME_HDR_SIZE + FY_HELLO_PAYLOAD_SIZE);
    pkt_put_trailer(buf + FY_FRAME_HDR_SIZE + FY_HELLO_PAYLOAD_SIZE,
                    s->port->info.mtu, (uint16_t)s->window);
}

static void send_hello_ack(struct pkt_sess *s, unsigned i)
{
    struct pkt_port *p = s->port;
    struct pkt_stream *st = &s->st[i];
    uint8_t buf[PKT_HELLO_PAYLOAD];
    struct pkt_fph f = {.type = PT_HELLO_ACK, .tag = s->peer_tag, .src_tag = s->tag,
                        .stream = (uint16_t)i, .plen = PKT_HELLO_PAYLOAD};

    hello_payload(s, i, true, buf);
    pthread_mutex_lock(&p->q[st->q].lock);
    if (pkt_send_ctl(p, st->q, &s->tmpl, &f, buf) == 0) {
        pkt_stat_add(&st->st.tx_frames, 1);
        pkt_stat_add(&st->pub.tx_wire_bytes, PKT_HDRS_LEN + PKT_HELLO_PAYLOAD);
    }
    pthread_mutex_unlock(&p->q[st->q].lock);
}

/* Answers a HELLO with an ERROR frame (port->lock held); accept() reports
 * the refusal too when no session is being gathered. */
static void refuse(struct pkt_port *p, struct pkt_listener *l,
                   const struct pkt_hdr *h, int code, const char *msg)
{
    uint8_t buf[FY_FRAME_HDR_SIZE + FY_ERROR_MSG_MAX];
    /* Cut to what a frame of the port holds (576-byte MTUs). */
    size_t room = p->info.mtu - PKT_IP_LEN - PKT_UDP_LEN - PKT_FPH_LEN - FY_FRAME_HDR_SIZE;
    struct fy_op op = {.type = FY_OP_ERROR, .offset = (uint64_t)code,
                       .data = msg, .len = strlen(msg) < room ? strlen(msg) : room};
    int n = fy_proto_encode(&op, buf, sizeof(buf));
    struct pkt_tmpl t;
    unsigned q = h->stream % p->nq;

    if (n > 0) {
        struct pkt_fph f = {.type = PT_REFUSE, .tag = h->src_tag,
                            .stream = h->stream, .plen = (uint16_t)n};
        pkt_tmpl_init(&t, p->info.mac, h->src_mac, p->ip, h->src_ip, h->dport);
        pthread_mutex_lock(&p->q[q].lock);
        pkt_send_ctl(p, q, &t, &f, buf);
        pthread_mutex_unlock(&p->q[q].lock);
    }
    if (l && l->accepting && l->npending == 0 && !l->refusal) {
        l->refusal = code;
        snprintf(l->refusal_msg, sizeof(l->refusal_msg), "%s", msg);
    }
}

/* One HELLO (port->lock held). */
static void handle_hello(struct pkt_port *p, struct fy_pkt *pkt)
{
    struct pkt_hdr h;
    struct pkt_listener *l;
    struct fy_session_info info;
    uint32_t idx;
    bool ack;
    size_t flen;
    uint16_t mtu, window;
    char msg[FY_ERROR_MSG_MAX], peer[64], ip[INET_ADDRSTRLEN];
    const uint8_t *payload;
    int rc;

    if (pkt_parse(pkt->data, pkt->len, &h) < 0)
        return;
    for (l = p->listeners; l && l->udp_port != h.dport; l = l->next)
        ;
    if (!l) {
        pkt_stat_add(&p->drop_unknown, 1);
        return;
    }
    pkt_ip_str(h.src_ip, ip, sizeof(ip));
    snprintf(peer, sizeof(peer), "%s:%u", ip, h.dport);
    payload = pkt->data + h.poff;
    rc = fy_proto_decode_hello(payload, FY_FRAME_HDR_SIZE + FY_HELLO_PAYLOAD_SIZE,
                               &info, &idx, &ack, &flen);
    if (rc == -FY_E_VERSION) {
        snprintf(msg, sizeof(msg), "%s", fy_error_detail());
        refuse(p, l, &h, FY_E_VERSION, msg);
        return;
    }
    pkt_get_trailer(payload + FY_FRAME_HDR_SIZE + FY_HELLO_PAYLOAD_SIZE, &mtu, &window);
    if (rc < 0 || ack || idx != h.stream || h.src_tag == 0 || mtu < PKT_MTU_MIN ||
        window < 16) {
        pkt_stat_add(&p->drop_malformed, 1);
        return;
    }
    /* A stream of an open session whose HELLO_ACK was lost. */
    for (struct pkt_sess *s = p->sessions; s; s = s->next)
        if (!s->source && s->peer_ip == h.src_ip && s->peer_tag == h.src_tag &&
            s->udp_port == h.dport) {
            if (memcmp(info.session_id, s->pub.info.session_id, 16) == 0 &&
                idx < s->pub.nstreams)
                send_hello_ack(s, idx);
            return;
        }
    for (struct pkt_pending *pd = l->pending; pd; pd = pd->next)
        if (pd->peer_ip == h.src_ip && pd->peer_tag == h.src_tag) {
            if (memcmp(info.session_id, pd->info.session_id, 16) != 0 ||
                info.streams != pd->info.streams || info.region_size != pd->info.region_size) {
                pkt_stat_add(&p->drop_malformed, 1);
                return;
            }
            if (!(pd->joined[idx / 64] >> (idx % 64) & 1)) {
                pd->joined[idx / 64] |= 1ull << (idx % 64);
                pd->njoined++;
            }
            return;
        }
    if (!l->accepting)
        return; /* the source tries again; an accept() will hear it */
    if (l->params.session_id && memcmp(l->sid, info.session_id, 16) != 0) {
        snprintf(msg, sizeof(msg), "%s opened an unexpected session", peer);
        refuse(p, l, &h, FY_E_AUTH, msg);
        return;
    }
    if (l->params.region_size && l->params.region_size != info.region_size) {
        snprintf(msg, sizeof(msg),
                 "source %s announced a region of %" PRIu64 " bytes, the "
                 "destination has %" PRIu64, peer, info.region_size,
                 l->params.region_size);
        refuse(p, l, &h, FY_E_PROTO, msg);
        return;
    }
    if (l->npending >= MAX_PENDING) {
        snprintf(msg, sizeof(msg), "%s: %u sessions are being opened already",
                 l->pub.addr, l->npending);
        refuse(p, l, &h, FY_E_BUSY, msg);
        return;
    }
    struct pkt_pending *pd = calloc(1, sizeof(*pd));
    if (!pd)
        return;
    pd->peer_ip = h.src_ip;
    pd->peer_tag = h.src_tag;
    memcpy(pd->peer_mac, h.src_mac, 6);
    pd->peer_mtu = mtu;
    pd->peer_window = window;
    pd->info = info;
    pd->joined[idx / 64] |= 1ull << (idx % 64);
    pd->njoined = 1;
    pd->created = pkt_now();
    pd->next = l->pending;
    l->pending = pd;
    l->npending++;
}

void pkt_ctl_run(struct pkt_port *p, bool wait)
{
    struct fy_pkt *v[PKT_CTL_MAX];
    unsigned n;

    if (wait)
        pthread_mutex_lock(&p->lock);
    else if (pthread_mutex_trylock(&p->lock) != 0)
        return;
    pthread_mutex_lock(&p->ctl_lock);
    n = p->nctl;
    memcpy(v, p->ctl, n * sizeof(v[0]));
    __atomic_store_n(&p->nctl, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&p->ctl_lock);
    for (unsigned i = 0; i < n; i++)
        handle_hello(p, v[i]);
    pkt_free_any(p, v, n);
    pthread_mutex_unlock(&p->lock);
}

/* ---- listen / accept -------------------------------------------------------- */

int fy_pkt_listen(const struct fy_pktio_ops *io, const struct fy_transport_ops *tops,
                  const char *addr, const struct fy_transport_opts *opts,
                  struct fy_listener **out)
{
    struct fy_transport_opts o = opts ? *opts : (struct fy_transport_opts){0};
    struct pkt_listener *l = NULL;
    struct pkt_port *p = NULL;
    uint32_t ip;
    uint16_t port;
    char ipbuf[INET_ADDRSTRLEN];
    int rc;

    if (!io || !tops || !out)
        return fy_error(FY_E_INVAL, "packet listen: missing backend or output");
    if ((rc = pkt_parse_addr(addr, &ip, &port)) < 0)
        return rc;
    l = calloc(1, sizeof(*l));
    if (!l)
        return fy_error(FY_E_NOMEM, "no memory for a listener");
    if ((rc = pkt_read_settings(&o, &l->timeout, &l->window, &l->rto0)) < 0)
        goto fail;
    if ((rc = pkt_port_get(io, o.params, true, &p)) < 0)
        goto fail;
    if (ip && ip != p->ip) {
        char have[INET_ADDRSTRLEN];
        pkt_ip_str(p->ip, have, sizeof(have));
        rc = fy_error(FY_E_CONFIG, "cannot listen on %s: the %s port's address is %s",
                      addr, io->name, have);
        goto fail;
    }
    pthread_mutex_init(&l->accept_lock, NULL);
    l->pub.ops = tops;
    l->port = p;
    pthread_mutex_lock(&p->lock);
    if (port == 0) {
        /* Any port no other listener here has, from a fixed range. */
        for (port = 47000; port; port++) {
            struct pkt_listener *o2 = p->listeners;
            while (o2 && o2->udp_port != port)
                o2 = o2->next;
            if (!o2)
                break;
        }
    }
    for (struct pkt_listener *o2 = p->listeners; o2; o2 = o2->next)
        if (o2->udp_port == port) {
            pthread_mutex_unlock(&p->lock);
            rc = fy_error(FY_E_EXISTS, "UDP port %u of the %s port is listened on "
                          "already", port, io->name);
            goto fail_mutex;
        }
    if (p->ops->add_port && (rc = p->ops->add_port(p->io, port)) < 0) {
        pthread_mutex_unlock(&p->lock);
        goto fail_mutex;
    }
    l->udp_port = port;
    l->next = p->listeners;
    p->listeners = l;
    pthread_mutex_unlock(&p->lock);
    pkt_ip_str(p->ip, ipbuf, sizeof(ipbuf));
    snprintf(l->pub.addr, sizeof(l->pub.addr), "%s:%u", ipbuf, port);
    *out = &l->pub;
    return 0;
fail_mutex:
    pthread_mutex_destroy(&l->accept_lock);
fail:
    {
        char saved[512];
        snprintf(saved, sizeof(saved), "%s", fy_error_detail());
        pkt_port_put(p);
        free(l);
        return fy_error(-rc, "%s", saved);
    }
}

void fy_pkt_listener_shutdown(struct fy_listener *fl)
{
    struct pkt_listener *l = (struct pkt_listener *)fl;

    if (l)
        __atomic_store_n(&l->cancelled, 1, __ATOMIC_RELEASE);
}

void fy_pkt_listener_close(struct fy_listener *fl)
{
    struct pkt_listener *l = (struct pkt_listener *)fl;
    struct pkt_port *p;

    if (!l)
        return;
    p = l->port;
    pthread_mutex_lock(&p->lock);
    for (struct pkt_listener **pp = &p->listeners; *pp; pp = &(*pp)->next)
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    while (l->pending) {
        struct pkt_pending *pd = l->pending;
        l->pending = pd->next;
        free(pd);
    }
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_destroy(&l->accept_lock);
    free(l);
    pkt_port_put(p);
}

/* Opens the session a listener gathered. */
static int accept_pending(struct pkt_listener *l, struct pkt_pending *pd,
                          const struct fy_accept_params *params,
                          struct pkt_sess **out)
{
    struct pkt_port *p = l->port;
    struct pkt_sess *s;
    int rc;

    rc = pkt_sess_new(p, l->pub.ops, pd->info.streams, l->timeout, l->window, l->rto0, &s);
    if (rc < 0)
        return rc;
    s->pub.info = pd->info;
    s->peer_ip = pd->peer_ip;
    s->peer_tag = pd->peer_tag;
    memcpy(s->peer_mac, pd->peer_mac, 6);
    s->udp_port = l->udp_port;
    if (pd->peer_mtu < s->mtu)
        s->mtu = pd->peer_mtu;
    pkt_sess_set_mtu(s);
    pkt_sess_peer_name(s);
    pkt_tmpl_init(&s->tmpl, p->info.mac, s->peer_mac, p->ip, s->peer_ip, s->udp_port);
    s->lim.region_size = pd->info.region_size;
    if (params) {
        s->lim.defer_page_check = params->receiver_checks_pages;
        /* The placement is as large as the announced region only when the
         * caller fixed the size. */
        if (params->receiver_checks_pages && params->region_size)
            s->placement = params->placement;
    }
    for (unsigned i = 0; i < s->pub.nstreams; i++)
        s->st[i].peer_edge = pd->peer_window;
    s->last_heard = pkt_now();
    s->state = PS_ESTABLISHED;
    pthread_mutex_lock(&p->lock);
    rc = pkt_sess_publish_locked(p, s);
    for (struct pkt_pending **pp = &l->pending; *pp; pp = &(*pp)->next)
        if (*pp == pd) {
            *pp = pd->next;
            l->npending--;
            break;
        }
    free(pd);
    if (rc == 0)
        for (unsigned i = 0; i < s->pub.nstreams; i++)
            send_hello_ack(s, i);
    pthread_mutex_unlock(&p->lock);
    if (rc < 0) {
        pkt_sess_free(s);
        return rc;
    }
    pkt_port_ref(p); /* the session's own reference */
    *out = s;
    return 0;
}

int fy_pkt_accept(struct fy_listener *fl, const struct fy_accept_params *params,
                  struct fy_session **out)
{
    struct pkt_listener *l = (struct pkt_listener *)fl;
    struct pkt_port *p;
    struct pkt_backoff bo = {0};
    uint64_t deadline;
    struct pkt_sess *s = NULL;
    int rc;

    if (!l || !out)
        return fy_error(FY_E_INVAL, "packet accept: no listener or output");
    p = l->port;
    pthread_mutex_lock(&l->accept_lock);
    pthread_mutex_lock(&p->lock);
    l->accepting = true;
    l->params = params ? *params : (struct fy_accept_params){0};
    if (params && params->session_id)
        memcpy(l->sid, params->session_id, 16);
    l->refusal = 0;
    pthread_mutex_unlock(&p->lock);
    deadline = pkt_now() + l->timeout;
    for (;;) {
        struct pkt_pending *ready = NULL;
        uint64_t now;

        pkt_poll(p, 0);
        pkt_ctl_run(p, true);
        now = pkt_now();
        pthread_mutex_lock(&p->lock);
        if (l->refusal) {
            char msg[FY_ERROR_MSG_MAX];
            int code = l->refusal;
            snprintf(msg, sizeof(msg), "%s", l->refusal_msg);
            l->refusal = 0;
            l->accepting = false;
            pthread_mutex_unlock(&p->lock);
            rc = fy_error(code, "%s", msg);
            goto out;
        }
        for (struct pkt_pending **pp = &l->pending; *pp;) {
            struct pkt_pending *pd = *pp;
            if (!pd->claimed && pd->njoined == pd->info.streams && !ready) {
                ready = pd;
                pd->claimed = true;
            } else if (!pd->claimed && now - pd->created > l->timeout) {
                /* A source that never completed its session. */
                *pp = pd->next;
                l->npending--;
                free(pd);
                continue;
            }
            pp = &pd->next;
        }
        if (ready)
            l->accepting = false;
        pthread_mutex_unlock(&p->lock);
        if (ready) {
            rc = accept_pending(l, ready, params, &s);
            if (rc == 0)
                *out = &s->pub;
            goto out;
        }
        if (__atomic_load_n(&l->cancelled, __ATOMIC_ACQUIRE)) {
            pthread_mutex_lock(&p->lock);
            l->accepting = false;
            pthread_mutex_unlock(&p->lock);
            rc = fy_error(FY_E_CANCELLED, "waiting for a session on %s was cancelled",
                          l->pub.addr);
            goto out;
        }
        if (now >= deadline) {
            pthread_mutex_lock(&p->lock);
            l->accepting = false;
            pthread_mutex_unlock(&p->lock);
            rc = fy_error(FY_E_TIMEOUT,
                          "no complete migration session arrived on %s within %" PRIu64
                          " ms", l->pub.addr, l->timeout / PKT_MS);
            goto out;
        }
        pkt_backoff_wait(&bo);
    }
out:
    pthread_mutex_unlock(&l->accept_lock);
    return rc;
}

/* ---- connect -------------------------------------------------------------- */

static void send_hello(struct pkt_sess *s, unsigned i)
{
    struct pkt_port *p = s->port;
    struct pkt_stream *st = &s->st[i];
    uint8_t buf[PKT_HELLO_PAYLOAD];
    struct pkt_fph f = {.type = PT_HELLO, .src_tag = s->tag, .stream = (uint16_t)i,
                        .plen = PKT_HELLO_PAYLOAD};

    hello_payload(s, i, false, buf);
    pthread_mutex_lock(&p->q[st->q].lock);
    if (pkt_send_ctl(p, st->q, &s->tmpl, &f, buf) == 0) {
        pkt_stat_add(&st->st.tx_frames, 1);
        pkt_stat_add(&st->pub.tx_wire_bytes, PKT_HDRS_LEN + PKT_HELLO_PAYLOAD);
    }
    pthread_mutex_unlock(&p->q[st->q].lock);
}

int fy_pkt_connect(const struct fy_pktio_ops *io, const struct fy_transport_ops *tops,
                   const char *addr, const struct fy_transport_opts *opts,
                   const struct fy_session_info *info, struct fy_session **out)
{
    struct fy_transport_opts o = opts ? *opts : (struct fy_transport_opts){0};
    struct pkt_port *p = NULL;
    struct pkt_sess *s = NULL;
    struct pkt_backoff bo = {0};
    uint64_t timeout, rto0, deadline;
    uint32_t window, ip;
    uint16_t port;
    unsigned n = o.streams;
    bool published = false;
    int rc;

    if (!io || !tops || !info || !out)
        return fy_error(FY_E_INVAL, "packet connect: missing backend, session info or output");
    if ((rc = pkt_parse_addr(addr, &ip, &port)) < 0)
        return rc;
    if (port == 0 || ip == 0)
        return fy_error(FY_E_INVAL, "connect to %s: a target address and port are needed",
                        addr);
    if (n == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (unsigned)c : 1;
    }
    if (n > MAX_STREAMS)
        return fy_error(FY_E_INVAL, "%u streams asked, at most %u", n, MAX_STREAMS);
    if ((rc = pkt_read_settings(&o, &timeout, &window, &rto0)) < 0)
        return rc;
    if ((rc = pkt_port_get(io, o.params, false, &p)) < 0)
        return rc;
    if (p->ops->add_port && (rc = p->ops->add_port(p->io, port)) < 0)
        goto fail;
    if ((rc = pkt_sess_new(p, tops, n, timeout, window, rto0, &s)) < 0)
        goto fail;
    s->source = true;
    s->pub.info = *info;
    s->pub.info.streams = n;
    s->pub.info.page_size = FY_PAGE_SIZE;
    if (n > 1)
        s->pub.info.caps |= FY_CAP_MULTI;
    {
        static const uint8_t zero_id[16];
        if (memcmp(s->pub.info.session_id, zero_id, 16) == 0 &&
            getrandom(s->pub.info.session_id, 16, 0) != 16) {
            rc = fy_error_sys("getrandom for a session id");
            goto fail;
        }
    }
    {
        /* Check the announcement before anything is sent. */
        uint8_t hb[FY_FRAME_HDR_SIZE + FY_HELLO_PAYLOAD_SIZE];
        if ((rc = fy_proto_encode_hello(&s->pub.info, 0, false, hb, sizeof(hb))) < 0)
            goto fail;
    }
    s->peer_ip = ip;
    s->udp_port = port;
    memcpy(s->peer_mac, bcast_mac, 6);
    pkt_sess_peer_name(s);
    s->lim.region_size = s->pub.info.region_size;
    pkt_tmpl_init(&s->tmpl, p->info.mac, bcast_mac, p->ip, ip, port);
    pthread_mutex_lock(&p->lock);
    rc = pkt_sess_publish_locked(p, s);
    pthread_mutex_unlock(&p->lock);
    if (rc < 0)
        goto fail;
    published = true;

    deadline = pkt_now() + timeout;
    for (;;) {
        uint64_t now = pkt_now();
        bool all = true;

        for (unsigned i = 0; i < n; i++) {
            struct pkt_stream *st = &s->st[i];
            pthread_mutex_lock(&st->lock);
            bool acked = st->hello_acked;
            int refused = st->refused;
            pthread_mutex_unlock(&st->lock);
            if (refused) {
                rc = fy_error(FY_E_PEER, "%s", st->refused_msg);
                goto fail;
            }
            if (acked)
                continue;
            all = false;
            if (now >= st->hello_next) {
                send_hello(s, i);
                st->hello_next = now + st->hello_ivl;
                st->hello_ivl = st->hello_ivl * 2 > HELLO_IVL_MAX ? HELLO_IVL_MAX
                                                                  : st->hello_ivl * 2;
            }
        }
        if (all)
            break;
        if (now >= deadline) {
            rc = fy_error(FY_E_TIMEOUT,
                          "no answer to the handshake from %s in %" PRIu64
                          " ms: is a target listening there, and the link up?",
                          s->pub.peer, timeout / PKT_MS);
            goto fail;
        }
        pkt_poll(p, 0);
        pkt_backoff_wait(&bo);
    }
    /* Every stream answered: the peer's MAC and MTU are known. */
    pkt_lock_queues(p);
    pkt_sess_set_mtu(s);
    pkt_tmpl_init(&s->tmpl, p->info.mac, s->peer_mac, p->ip, ip, port);
    s->last_heard = pkt_now();
    __atomic_store_n(&s->state, PS_ESTABLISHED, __ATOMIC_RELEASE);
    pkt_unlock_queues(p);
    *out = &s->pub;
    return 0;
fail:
    {
        char saved[1024];
        snprintf(saved, sizeof(saved), "%s", fy_error_detail());
        if (s) {
            if (published)
                pkt_sess_unpublish(s);
            pkt_sess_free(s);
        }
        pkt_port_put(p);
        return fy_error(-rc, "%s", saved);
    }
}

/* ---- shutdown / close / stats --------------------------------------------- */

void fy_pkt_shutdown(struct fy_session *fs)
{
    struct pkt_sess *s = (struct pkt_sess *)fs;

    if (!s)
        return;
    __atomic_store_n(&s->cancelled, 1, __ATOMIC_RELEASE);
    /* Wait out any sweep already sending from the caller's pages: none
     * starts after this. */
    for (unsigned i = 0; i < s->port->nq; i++) {
        pthread_mutex_lock(&s->port->q[i].lock);
        pthread_mutex_unlock(&s->port->q[i].lock);
    }
}

void fy_pkt_close(struct fy_session *fs)
{
    struct pkt_sess *s = (struct pkt_sess *)fs;
    struct pkt_port *p;

    if (!s)
        return;
    p = s->port;
    if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) == PS_ESTABLISHED) {
        /* Linger, as a TCP close does: what was sent (DONE, say) reaches
         * the peer unless it is gone. */
        struct pkt_backoff bo = {0};
        uint64_t linger = s->timeout < LINGER_MAX ? s->timeout : LINGER_MAX;
        uint64_t deadline = pkt_now() + linger;
        while (!__atomic_load_n(&s->cancelled, __ATOMIC_ACQUIRE) &&
               !__atomic_load_n(&s->err, __ATOMIC_ACQUIRE) && pkt_now() < deadline) {
            bool drained = true;
            for (unsigned i = 0; i < s->pub.nstreams && drained; i++)
                drained = pkt_stream_drained(&s->st[i]);
            if (drained)
                break;
            pkt_poll(p, s->st[0].q);
            pkt_backoff_wait(&bo);
        }
        for (int k = 0; k < 2; k++)
            for (unsigned i = 0; i < s->pub.nstreams; i++)
                pkt_stream_send_fin(&s->st[i]);
    }
    pkt_sess_unpublish(s);
    pkt_sess_free(s);
    pkt_port_put(p);
}

void fy_pkt_listener_stats(const struct fy_listener *fl, struct fy_pkt_stats *out)
{
    const struct pkt_listener *l = (const struct pkt_listener *)fl;

    memset(out, 0, sizeof(*out));
    if (l)
        pkt_port_stats(l->port, out);
}
