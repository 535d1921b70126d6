/* TCP transport: protocol v1 frames over K TCP connections.
 *
 * The reference transport: copy this file to add one.  Each stream is one
 * connection.  Sends are scatter-gather (sendmsg of frame headers interleaved
 * with page data straight from the caller's buffers); receives fill a
 * per-stream buffer and decode frames in place, so a received page is
 * copied once, from that buffer into the destination region. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/netaddr.h"
#include "dataplane/protocol.h"
#include "dataplane/sockopt.h"
#include "ferry/error.h"
#include "ferry/transport.h"

#define DEFAULT_TIMEOUT_MS 30000
#define RX_BUF_SIZE (2u << 20)
#define TX_HDR_SIZE (256u << 10)
#define TX_IOV_MAX 1024
/* With a placement, reads stop this far ahead: enough for the next PAGES
 * frame's header and descriptors, so its pages can be read into place. */
#define RX_TAIL (FY_FRAME_HDR_SIZE + FY_PAGES_MAX * FY_PAGES_DESC_SIZE)
#define RX_MAX_OPS 256
#define MAX_STREAMS 256
/* Largest frame a listener reads before a session exists: an ERROR. */
#define HANDSHAKE_MAX (FY_FRAME_HDR_SIZE + FY_ERROR_MSG_MAX)

struct tcp_session;

struct tcp_stream {
    struct fy_stream pub;
    struct tcp_session *sess;
    int fd;
    struct fy_proto_limits lim;
    uint8_t *rx;          /* RX_BUF_SIZE bytes */
    size_t rx_start;      /* first byte not yet decoded */
    size_t rx_end;        /* one past the last byte read */
    uint8_t *tx_hdr;      /* TX_HDR_SIZE bytes of encoded headers */
    uint8_t *placement;   /* destination memory pages are read into, or
                             NULL: pages are decoded from rx */
    /* The pages of the last PAGES frame not yet handed out (a caller may
     * ask for fewer operations than a frame carries).  While any wait, rx
     * is neither compacted nor refilled, so their data stays put. */
    struct fy_op pend[FY_PAGES_MAX];
    unsigned pend_n, pend_i;
    union fy_proto_scratch scratch[RX_MAX_OPS];
};

struct tcp_session {
    struct fy_session pub;
    int timeout_ms;
    int cancelled;        /* set by shutdown from any thread (atomic) */
    struct tcp_stream *st;
    struct fy_stream *ptrs[MAX_STREAMS];
};

struct tcp_listener {
    struct fy_listener pub;
    int fd;
    int timeout_ms;
    unsigned sockbuf;
};

static bool is_cancelled(struct tcp_session *s)
{
    return __atomic_load_n(&s->cancelled, __ATOMIC_ACQUIRE);
}

/* ---- addresses and sockets ------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for 'events' on fd up to timeout_ms (-1 forever).  Returns 1 when
 * ready, 0 on timeout, negative on error. */
static int wait_fd(int fd, short events, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;

    for (;;) {
        int left = deadline < 0 ? -1 : (int)(deadline - now_ms());
        if (deadline >= 0 && left < 0)
            left = 0;
        int n = poll(&p, 1, left);
        if (n > 0)
            return 1;
        if (n == 0)
            return 0;
        if (errno != EINTR)
            return fy_error_sys("poll");
    }
}

/* ---- sending ----------------------------------------------------------- */

static int write_iov(struct tcp_stream *st, struct iovec *iov, int n)
{
    struct tcp_session *s = st->sess;

    while (n > 0) {
        /* sendmsg, not writev: MSG_NOSIGNAL turns a peer that went away
         * into EPIPE instead of a SIGPIPE that kills the process. */
        struct msghdr mh = {.msg_iov = iov,
                            .msg_iovlen = (size_t)(n > IOV_MAX ? IOV_MAX : n)};
        ssize_t k = sendmsg(st->fd, &mh, MSG_NOSIGNAL);
        if (is_cancelled(s))
            return fy_error(FY_E_CANCELLED, "stream %u to %s: session shut down",
                            st->pub.index, s->pub.peer);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int w = wait_fd(st->fd, POLLOUT, s->timeout_ms);
                if (w < 0)
                    return w;
                if (w == 0)
                    return fy_error(FY_E_TIMEOUT,
                                    "stream %u to %s: peer did not read for %d ms",
                                    st->pub.index, s->pub.peer, s->timeout_ms);
                continue;
            }
            if (errno == EPIPE || errno == ECONNRESET)
                return fy_error(FY_E_CLOSED, "stream %u to %s: connection lost",
                                st->pub.index, s->pub.peer);
            return fy_error_sys("stream %u to %s: send", st->pub.index,
                                s->pub.peer);
        }
        st->pub.tx_wire_bytes += (uint64_t)k;
        while (n > 0 && (size_t)k >= iov->iov_len) {
            k -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + k;
            iov->iov_len -= (size_t)k;
        }
    }
    return 0;
}

static int tcp_tx_burst(struct fy_stream *fs, const struct fy_op *ops,
                        unsigned n)
{
    struct tcp_stream *st = (struct tcp_stream *)fs;
    struct iovec iov[TX_IOV_MAX];
    size_t used = 0;
    int niov = 0, rc;
    unsigned i = 0;

    if (is_cancelled(st->sess))
        return fy_error(FY_E_CANCELLED, "stream %u: session shut down", fs->index);
    while (i < n) {
        if (ops[i].type == FY_OP_PAGE) {
            /* A run of pages travels as one PAGES frame: descriptors, then
             * the pages straight from the caller's buffers. */
            unsigned k = 1;
            while (i + k < n && k < FY_PAGES_MAX && ops[i + k].type == FY_OP_PAGE)
                k++;
            size_t need = FY_FRAME_HDR_SIZE + (size_t)k * FY_PAGES_DESC_SIZE;
            if (need > TX_HDR_SIZE - used || niov + 1 + (int)k > TX_IOV_MAX)
                break;
            rc = fy_proto_encode_pages(&ops[i], k, st->tx_hdr + used,
                                       TX_HDR_SIZE - used);
            if (rc < 0)
                return rc;
            iov[niov++] = (struct iovec){st->tx_hdr + used, (size_t)rc};
            used += (size_t)rc;
            for (unsigned j = 0; j < k; j++)
                iov[niov++] = (struct iovec){(void *)ops[i + j].data, FY_PAGE_SIZE};
            i += k;
            continue;
        }
        if (ops[i].type == FY_OP_DATA && ops[i].len > 0) {
            /* Like pages, the bytes go from the caller's buffer. */
            if (FY_FRAME_HDR_SIZE > TX_HDR_SIZE - used || niov + 2 > TX_IOV_MAX)
                break;
            rc = fy_proto_encode_data_header(&ops[i], st->tx_hdr + used,
                                             TX_HDR_SIZE - used);
            if (rc < 0)
                return rc;
            iov[niov++] = (struct iovec){st->tx_hdr + used, (size_t)rc};
            used += (size_t)rc;
            iov[niov++] = (struct iovec){(void *)ops[i].data, (size_t)ops[i].len};
            i++;
            continue;
        }
        size_t need = fy_proto_encoded_size(&ops[i]);
        if (need > TX_HDR_SIZE - used || niov + 1 > TX_IOV_MAX)
            break;
        rc = fy_proto_encode(&ops[i], st->tx_hdr + used, TX_HDR_SIZE - used);
        if (rc < 0)
            return rc;
        /* Consecutive small frames share one segment. */
        if (niov > 0 && (uint8_t *)iov[niov - 1].iov_base + iov[niov - 1].iov_len ==
                            st->tx_hdr + used)
            iov[niov - 1].iov_len += (size_t)rc;
        else
            iov[niov++] = (struct iovec){st->tx_hdr + used, (size_t)rc};
        used += (size_t)rc;
        i++;
    }
    if (i == 0)
        return fy_error(FY_E_TOOBIG, "stream %u: operation too large to send",
                        fs->index);
    rc = write_iov(st, iov, niov);
    return rc < 0 ? rc : (int)i;
}

/* ---- receiving --------------------------------------------------------- */

/* Reads more bytes into the rx buffer.  Returns bytes read (> 0), 0 on
 * timeout, or a negative error (-FY_E_CLOSED / -FY_E_TRUNCATED at EOF). */
static void compact(struct tcp_stream *st)
{
    if (st->rx_start > 0) {
        memmove(st->rx, st->rx + st->rx_start, st->rx_end - st->rx_start);
        st->rx_end -= st->rx_start;
        st->rx_start = 0;
    }
}

static int fill(struct tcp_stream *st, int timeout_ms)
{
    struct tcp_session *s = st->sess;
    size_t want = RX_BUF_SIZE - st->rx_end;
    ssize_t k;

    compact(st);
    want = RX_BUF_SIZE - st->rx_end;
    /* Reading far ahead would pull pages into rx that could have been read
     * straight into place. */
    if (st->placement && want > RX_TAIL)
        want = RX_TAIL;
    for (;;) {
        k = read(st->fd, st->rx + st->rx_end, want);
        if (is_cancelled(s))
            return fy_error(FY_E_CANCELLED, "stream %u from %s: session shut down",
                            st->pub.index, s->pub.peer);
        if (k > 0) {
            st->rx_end += (size_t)k;
            st->pub.rx_wire_bytes += (uint64_t)k;
            return (int)k;
        }
        if (k == 0) {
            if (st->rx_end > 0)
                return fy_error(FY_E_TRUNCATED,
                                "stream %u from %s closed in the middle of a "
                                "frame (%zu bytes of it received)",
                                st->pub.index, s->pub.peer, st->rx_end);
            return fy_error(FY_E_CLOSED, "stream %u from %s closed",
                            st->pub.index, s->pub.peer);
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int w = wait_fd(st->fd, POLLIN, timeout_ms);
            if (w <= 0)
                return w;
            continue;
        }
        if (errno == ECONNRESET)
            return fy_error(FY_E_CLOSED, "stream %u from %s: connection reset",
                            st->pub.index, s->pub.peer);
        return fy_error_sys("stream %u from %s: receive", st->pub.index,
                            s->pub.peer);
    }
}

/* Reads the rest of a PAGES frame whose prefix (and maybe some pages) is
 * in rx straight into the placement, and a little of what follows into rx.
 * On return the frame's bytes in rx are consumed. */
static int place_pages(struct tcp_stream *st, const struct fy_pages_prefix *pp)
{
    struct tcp_session *s = st->sess;
    struct iovec iov[FY_PAGES_MAX + 1];
    size_t have = st->rx_end - st->rx_start - pp->prefix_len;
    const uint8_t *buffered = st->rx + st->rx_start + pp->prefix_len;
    size_t left = (size_t)pp->n * FY_PAGE_SIZE - have;
    int niov = 0;

    for (unsigned i = 0; i < pp->n; i++) {
        uint64_t off;
        fy_hash128 h;
        size_t from = (size_t)i * FY_PAGE_SIZE, done;

        fy_proto_pages_desc(pp, i, &off, &h);
        done = have > from ? have - from : 0;
        if (done > FY_PAGE_SIZE)
            done = FY_PAGE_SIZE;
        if (done)
            memcpy(st->placement + off, buffered + from, done);
        if (done < FY_PAGE_SIZE)
            iov[niov++] = (struct iovec){st->placement + off + done,
                                         FY_PAGE_SIZE - done};
    }
    /* Consume the frame's buffered bytes; what is read past the pages
     * lands after them and is decoded next. */
    size_t tail_at = st->rx_end;
    size_t tail = RX_BUF_SIZE - tail_at < RX_TAIL ? RX_BUF_SIZE - tail_at : RX_TAIL;
    if (tail)
        iov[niov++] = (struct iovec){st->rx + tail_at, tail};
    st->rx_start = st->rx_end;

    struct iovec *v = iov;
    while (left) {
        ssize_t k = readv(st->fd, v, niov);
        if (is_cancelled(s))
            return fy_error(FY_E_CANCELLED, "stream %u from %s: session shut down",
                            st->pub.index, s->pub.peer);
        if (k == 0)
            return fy_error(FY_E_TRUNCATED,
                            "stream %u from %s closed in the middle of a PAGES "
                            "frame (%zu page bytes missing)",
                            st->pub.index, s->pub.peer, left);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int w = wait_fd(st->fd, POLLIN, s->timeout_ms);
                if (w < 0)
                    return w;
                if (w == 0)
                    return fy_error(FY_E_TIMEOUT,
                                    "stream %u from %s: a PAGES frame stalled "
                                    "for %d ms", st->pub.index, s->pub.peer,
                                    s->timeout_ms);
                continue;
            }
            return fy_error_sys("stream %u from %s: receive", st->pub.index,
                                s->pub.peer);
        }
        st->pub.rx_wire_bytes += (uint64_t)k;
        size_t got = (size_t)k;
        size_t pages_got = got < left ? got : left;
        left -= pages_got;
        st->rx_end += got - pages_got; /* bytes that went into the tail */
        while (got && niov) {
            size_t take = got < v->iov_len ? got : v->iov_len;
            v->iov_base = (uint8_t *)v->iov_base + take;
            v->iov_len -= take;
            got -= take;
            if (v->iov_len == 0) {
                v++;
                niov--;
            }
        }
    }
    return 0;
}

/* Turns a checked PAGES prefix into PAGE operations: data in place when
 * 'placed', else right after the descriptors in rx. */
static void emit_pages(struct tcp_stream *st, const struct fy_pages_prefix *pp,
                       bool placed, struct fy_op *ops)
{
    const uint8_t *pages = pp->desc + (size_t)pp->n * FY_PAGES_DESC_SIZE;
    uint8_t flags = st->lim.defer_page_check ? FY_OP_F_UNCHECKED : 0;

    for (unsigned i = 0; i < pp->n; i++) {
        struct fy_op *op = &ops[i];
        memset(op, 0, sizeof(*op));
        fy_proto_pages_desc(pp, i, &op->offset, &op->hash);
        op->type = FY_OP_PAGE;
        op->len = FY_PAGE_SIZE;
        op->flags = flags | (placed ? FY_OP_F_PLACED : 0);
        op->data = placed ? st->placement + op->offset
                          : pages + (size_t)i * FY_PAGE_SIZE;
    }
}

/* Hands out up to 'room' pending pages. */
static unsigned drain(struct tcp_stream *st, struct fy_op *ops, unsigned room)
{
    unsigned k = st->pend_n - st->pend_i;

    if (k > room)
        k = room;
    memcpy(ops, st->pend + st->pend_i, k * sizeof(*ops));
    st->pend_i += k;
    if (st->pend_i == st->pend_n)
        st->pend_i = st->pend_n = 0;
    return k;
}

static int tcp_rx_burst(struct fy_stream *fs, struct fy_op *ops, unsigned max,
                        int timeout_ms)
{
    struct tcp_stream *st = (struct tcp_stream *)fs;
    unsigned n;
    int rc;

    if (max > RX_MAX_OPS)
        max = RX_MAX_OPS;
    if (max == 0)
        return 0;
    n = drain(st, ops, max);
    for (;;) {
        if (n == 0)
            compact(st); /* nothing handed out points into rx yet */
        while (n < max) {
            const uint8_t *p = st->rx + st->rx_start;
            size_t avail = st->rx_end - st->rx_start, flen = 0;
            struct fy_pages_prefix pp;

            rc = st->placement ? fy_proto_decode_pages_prefix(p, avail, &st->lim, &pp)
                               : 1;
            if (rc == 0) {
                bool placed = avail < pp.frame_len;
                if (placed && (rc = place_pages(st, &pp)) < 0)
                    return rc;
                emit_pages(st, &pp, placed, st->pend);
                st->pend_n = pp.n;
                if (!placed)
                    st->rx_start += pp.frame_len;
                n += drain(st, ops + n, max - n);
                continue;
            }
            if (rc == 1)
                rc = fy_proto_decode(p, avail, &st->lim, &ops[n], &st->scratch[n],
                                     &flen);
            if (rc == -FY_E_AGAIN)
                break;
            if (rc < 0)
                return fy_error(-rc, "stream %u from %s: %s", fs->index,
                                st->sess->pub.peer, fy_error_detail());
            st->rx_start += flen;
            if (ops[n].type != FY_FRAME_PAGES) {
                n++;
                continue;
            }
            /* A whole PAGES frame in rx (no placement): hand out its pages. */
            if ((rc = fy_proto_decode_pages_prefix(p, avail, &st->lim, &pp)) != 0)
                return fy_error(FY_E_PROTO, "stream %u: PAGES frame decoded twice "
                                "differently", fs->index);
            emit_pages(st, &pp, false, st->pend);
            st->pend_n = pp.n;
            n += drain(st, ops + n, max - n);
        }
        if (n > 0)
            return (int)n;
        rc = fill(st, timeout_ms);
        if (rc <= 0)
            return rc;
    }
}

/* ---- sessions ---------------------------------------------------------- */

static struct tcp_session *session_new(unsigned nstreams, int timeout_ms)
{
    struct tcp_session *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->st = calloc(nstreams, sizeof(*s->st));
    if (!s->st) {
        free(s);
        return NULL;
    }
    s->pub.ops = &fy_transport_tcp;
    s->pub.nstreams = nstreams;
    s->pub.streams = s->ptrs;
    s->timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS;
    for (unsigned i = 0; i < nstreams; i++) {
        struct tcp_stream *st = &s->st[i];
        st->fd = -1;
        st->sess = s;
        st->pub.index = i;
        st->pub.session = &s->pub;
        st->pub.tx_burst = tcp_tx_burst;
        st->pub.rx_burst = tcp_rx_burst;
        st->rx = malloc(RX_BUF_SIZE);
        st->tx_hdr = malloc(TX_HDR_SIZE);
        s->ptrs[i] = &st->pub;
        if (!st->rx || !st->tx_hdr) {
            s->pub.nstreams = i + 1;
            fy_transport_tcp.close(&s->pub);
            return NULL;
        }
    }
    return s;
}

static void set_limits(struct tcp_session *s)
{
    for (unsigned i = 0; i < s->pub.nstreams; i++) {
        s->st[i].lim.region_size = s->pub.info.region_size;
        s->st[i].lim.page_size = s->pub.info.page_size;
    }
}

static void tcp_shutdown(struct fy_session *fs)
{
    struct tcp_session *s = (struct tcp_session *)fs;

    __atomic_store_n(&s->cancelled, 1, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < fs->nstreams; i++)
        if (s->st[i].fd >= 0)
            shutdown(s->st[i].fd, SHUT_RDWR);
}

static void tcp_close(struct fy_session *fs)
{
    struct tcp_session *s = (struct tcp_session *)fs;

    if (!fs)
        return;
    for (unsigned i = 0; i < fs->nstreams; i++) {
        if (s->st[i].fd >= 0)
            close(s->st[i].fd);
        free(s->st[i].rx);
        free(s->st[i].tx_hdr);
    }
    free(s->st);
    free(s);
}

/* Sends a whole small buffer on a raw descriptor (handshake, refusals). */
static int send_raw(int fd, const void *buf, size_t len, int timeout_ms)
{
    const uint8_t *p = buf;

    while (len) {
        ssize_t k = send(fd, p, len, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int w = wait_fd(fd, POLLOUT, timeout_ms);
                if (w <= 0)
                    return w < 0 ? w : fy_error(FY_E_TIMEOUT, "handshake send timed out");
                continue;
            }
            return fy_error_sys("handshake send");
        }
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

static void send_refusal(int fd, int code, const char *msg)
{
    uint8_t buf[FY_FRAME_HDR_SIZE + FY_ERROR_MSG_MAX];
    struct fy_op op = {.type = FY_OP_ERROR, .offset = (uint64_t)(code < 0 ? -code : code),
                       .data = msg, .len = strlen(msg)};
    int n = fy_proto_encode(&op, buf, sizeof(buf));
    if (n > 0)
        send_raw(fd, buf, (size_t)n, 1000);
}

/* Reads one HELLO/HELLO_ACK from a fresh connection into st->rx. */
static int read_hello(struct tcp_stream *st, int64_t deadline,
                      struct fy_session_info *info, uint32_t *index, bool *ack)
{
    for (;;) {
        size_t flen = 0;
        int rc = fy_proto_decode_hello(st->rx + st->rx_start,
                                       st->rx_end - st->rx_start, info, index,
                                       ack, &flen);
        if (rc == 0) {
            st->rx_start += flen;
            return 0;
        }
        if (rc != -FY_E_AGAIN)
            return rc;
        int left = (int)(deadline - now_ms());
        if (left <= 0)
            return fy_error(FY_E_TIMEOUT, "no handshake from %s in time",
                            st->sess->pub.peer);
        rc = fill(st, left);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return fy_error(FY_E_TIMEOUT, "no handshake from %s in time",
                            st->sess->pub.peer);
    }
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return fy_error_sys("fcntl(O_NONBLOCK)");
    return 0;
}

static int tcp_connect(const char *addr, const struct fy_transport_opts *opts,
                       const struct fy_session_info *info,
                       struct fy_session **out)
{
    struct fy_transport_opts o = opts ? *opts : (struct fy_transport_opts){0};
    struct addrinfo *ai = NULL, *bind_ai = NULL;
    struct tcp_session *s = NULL;
    unsigned n = o.streams;
    int64_t deadline;
    int rc;

    if (!addr || !info || !out)
        return fy_error(FY_E_INVAL, "tcp connect: missing address or session info");
    if (n == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (unsigned)c : 1;
    }
    if (n > MAX_STREAMS)
        return fy_error(FY_E_INVAL, "%u streams asked, at most %u", n, MAX_STREAMS);
    if ((rc = fy_addr_resolve(addr, false, &ai)) < 0)
        return rc;
    if (o.bind && (rc = fy_addr_resolve(o.bind, true, &bind_ai)) < 0)
        goto out;
    s = session_new(n, o.timeout_ms);
    if (!s) {
        rc = fy_error(FY_E_NOMEM, "no memory for a %u-stream session", n);
        goto out;
    }
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
    fy_addr_format(ai->ai_addr, s->pub.peer, sizeof(s->pub.peer));
    set_limits(s);
    deadline = now_ms() + s->timeout_ms;
    for (unsigned i = 0; i < n; i++) {
        struct tcp_stream *st = &s->st[i];
        uint8_t hello[FY_FRAME_HDR_SIZE + FY_HELLO_PAYLOAD_SIZE];

        st->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (st->fd < 0) {
            rc = fy_error_sys("socket");
            goto fail;
        }
        fy_tune_socket(st->fd, o.sockbuf);
        if (bind_ai && bind(st->fd, bind_ai->ai_addr, bind_ai->ai_addrlen) < 0) {
            rc = fy_error_sys("cannot send from %s (is it an address of this host?)",
                              o.bind);
            goto fail;
        }
        if (connect(st->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            rc = fy_error_sys("cannot connect stream %u to %s", i, addr);
            if (errno == ECONNREFUSED)
                rc = fy_error(FY_E_CLOSED,
                              "connection to %s refused: is the target agent "
                              "listening there?", addr);
            goto fail;
        }
        if ((rc = set_nonblock(st->fd)) < 0)
            goto fail;
        rc = fy_proto_encode_hello(&s->pub.info, i, false, hello, sizeof(hello));
        if (rc < 0 || (rc = send_raw(st->fd, hello, (size_t)rc, s->timeout_ms)) < 0)
            goto fail;
    }
    for (unsigned i = 0; i < n; i++) {
        struct fy_session_info peer;
        uint32_t idx;
        bool ack;

        rc = read_hello(&s->st[i], deadline, &peer, &idx, &ack);
        if (rc < 0) {
            rc = fy_error(-rc, "handshake with %s on stream %u: %s", addr, i,
                          fy_error_detail());
            goto fail;
        }
        if (!ack || idx != i || memcmp(peer.session_id, s->pub.info.session_id, 16)) {
            rc = fy_error(FY_E_PROTO, "handshake with %s: stream %u answered "
                          "for another stream or session", addr, i);
            goto fail;
        }
    }
    *out = &s->pub;
    s = NULL;
    rc = 0;
fail:
    if (s)
        tcp_close(&s->pub);
out:
    if (ai)
        freeaddrinfo(ai);
    if (bind_ai)
        freeaddrinfo(bind_ai);
    return rc;
}

static int tcp_listen(const char *addr, const struct fy_transport_opts *opts,
                      struct fy_listener **out)
{
    struct tcp_listener *l;
    struct addrinfo *ai = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int one = 1, rc;

    if (!out)
        return fy_error(FY_E_INVAL, "tcp listen: no output");
    if ((rc = fy_addr_resolve(addr, true, &ai)) < 0)
        return rc;
    l = calloc(1, sizeof(*l));
    if (!l) {
        freeaddrinfo(ai);
        return fy_error(FY_E_NOMEM, "no memory for a listener");
    }
    l->pub.ops = &fy_transport_tcp;
    l->timeout_ms = opts && opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    l->sockbuf = opts ? opts->sockbuf : 0;
    l->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l->fd < 0) {
        rc = fy_error_sys("socket");
        goto fail;
    }
    setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* Accepted sockets inherit the buffer sizes set before listen(). */
    fy_tune_socket(l->fd, l->sockbuf);
    if (bind(l->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        rc = fy_error_sys("cannot listen on %s", addr);
        goto fail;
    }
    if (listen(l->fd, 64) < 0) {
        rc = fy_error_sys("listen on %s", addr);
        goto fail;
    }
    if (getsockname(l->fd, (struct sockaddr *)&ss, &sl) == 0)
        fy_addr_format((struct sockaddr *)&ss, l->pub.addr, sizeof(l->pub.addr));
    freeaddrinfo(ai);
    *out = &l->pub;
    return 0;
fail:
    if (l->fd >= 0)
        close(l->fd);
    free(l);
    freeaddrinfo(ai);
    return rc;
}

static void tcp_listener_close(struct fy_listener *fl)
{
    struct tcp_listener *l = (struct tcp_listener *)fl;

    if (!l)
        return;
    close(l->fd);
    free(l);
}

static int tcp_accept(struct fy_listener *fl,
                      const struct fy_accept_params *params,
                      struct fy_session **out)
{
    struct tcp_listener *l = (struct tcp_listener *)fl;
    struct tcp_session *s = NULL;
    char peer[64] = "";
    int64_t deadline = now_ms() + l->timeout_ms;
    unsigned joined = 0;
    int rc;

    if (!l || !out)
        return fy_error(FY_E_INVAL, "tcp accept: no listener or output");
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        struct fy_session_info info = {0}; /* read below even when refused */
        uint32_t idx = 0;
        bool ack = false;
        int left = (int)(deadline - now_ms());
        int fd;

        if (left <= 0) {
            rc = fy_error(FY_E_TIMEOUT,
                          "no complete migration session arrived on %s within %d ms",
                          l->pub.addr, l->timeout_ms);
            goto fail;
        }
        rc = wait_fd(l->fd, POLLIN, left);
        if (rc < 0)
            goto fail;
        if (rc == 0)
            continue;
        fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED)
                continue;
            rc = fy_error_sys("accept on %s", l->pub.addr);
            goto fail;
        }
        fy_tune_socket(fd, l->sockbuf);

        uint8_t hbuf[HANDSHAKE_MAX];
        fy_addr_format((struct sockaddr *)&ss, peer, sizeof(peer));
        rc = -FY_E_AGAIN;
        {
            /* Read exactly one handshake frame, never more: a HELLO, or
             * the ERROR of a source giving up, whose header says how long
             * it is.  Anything else fails as soon as its bytes show it. */
            size_t got = 0, want = FY_FRAME_HDR_SIZE;
            while (rc == -FY_E_AGAIN) {
                int64_t rest = deadline - now_ms();
                int w = wait_fd(fd, POLLIN, rest > 0 ? (int)rest : 0);
                if (w <= 0) {
                    rc = w < 0 ? w : fy_error(FY_E_TIMEOUT, "no handshake from %s",
                                              peer);
                    break;
                }
                ssize_t k = read(fd, hbuf + got, want - got);
                if (k == 0) {
                    rc = fy_error(FY_E_TRUNCATED, "%s closed during the handshake",
                                  peer);
                    break;
                }
                if (k < 0) {
                    if (errno == EINTR || errno == EAGAIN)
                        continue;
                    rc = fy_error_sys("handshake read from %s", peer);
                    break;
                }
                got += (size_t)k;
                size_t flen = 0;
                rc = fy_proto_decode_hello(hbuf, got, &info, &idx, &ack, &flen);
                if (rc != -FY_E_AGAIN || got < want)
                    continue;
                if (flen <= got || flen > sizeof(hbuf)) {
                    rc = fy_error(FY_E_PROTO, "%s sent a handshake frame of %zu "
                                  "bytes", peer, flen);
                    break;
                }
                want = flen;
            }
        }
        if (rc == 0 && ack)
            rc = fy_error(FY_E_PROTO, "%s sent a HELLO_ACK to a listener",
                          peer);
        if (rc == 0 && params && params->session_id &&
            memcmp(params->session_id, info.session_id, 16) != 0)
            rc = fy_error(FY_E_AUTH, "%s opened an unexpected session",
                          peer);
        if (rc == 0 && params && params->region_size &&
            params->region_size != info.region_size)
            rc = fy_error(FY_E_PROTO,
                          "source %s announced a region of %llu bytes, the "
                          "destination has %llu",
                          peer, (unsigned long long)info.region_size,
                          (unsigned long long)params->region_size);
        if (rc == 0 && s &&
            (memcmp(info.session_id, s->pub.info.session_id, 16) != 0 ||
             info.streams != s->pub.nstreams))
            rc = fy_error(FY_E_BUSY, "%s: another session is being accepted",
                          peer);
        if (rc == 0 && s && s->st[idx].fd >= 0)
            rc = fy_error(FY_E_PROTO, "%s opened stream %u twice",
                          peer, idx);
        if (rc < 0) {
            /* Refuse this connection only; a session being joined goes on
             * unless this was one of its own streams. */
            send_refusal(fd, rc, fy_error_detail());
            close(fd);
            if (s && memcmp(info.session_id, s->pub.info.session_id, 16) == 0)
                goto fail;
            if (!s && rc != -FY_E_BUSY) {
                /* Nothing joined yet: report the refusal to our caller. */
                goto fail;
            }
            continue;
        }
        if (!s) {
            s = session_new(info.streams, l->timeout_ms);
            if (!s) {
                close(fd);
                rc = fy_error(FY_E_NOMEM, "no memory for a session");
                goto fail;
            }
            s->pub.info = info;
            memcpy(s->pub.peer, peer, sizeof(s->pub.peer));
            set_limits(s);
            /* Pages go straight into the destination only when the caller
             * checks them there. */
            for (unsigned i = 0; params && i < s->pub.nstreams; i++) {
                s->st[i].lim.defer_page_check = params->receiver_checks_pages;
                /* The placement is as large as the announced region only
                 * when the caller fixed the size. */
                if (params->receiver_checks_pages && params->region_size)
                    s->st[i].placement = params->placement;
            }
        }
        s->st[idx].fd = fd;
        if (++joined == s->pub.nstreams)
            break;
    }
    for (unsigned i = 0; i < s->pub.nstreams; i++) {
        uint8_t ackbuf[FY_FRAME_HDR_SIZE + FY_HELLO_PAYLOAD_SIZE];
        rc = fy_proto_encode_hello(&s->pub.info, i, true, ackbuf, sizeof(ackbuf));
        if (rc < 0 || (rc = send_raw(s->st[i].fd, ackbuf, (size_t)rc, s->timeout_ms)) < 0)
            goto fail;
    }
    *out = &s->pub;
    return 0;
fail:
    if (s)
        tcp_close(&s->pub);
    return rc;
}

const struct fy_transport_ops fy_transport_tcp = {
    .abi = FY_TRANSPORT_ABI,
    .name = "tcp",
    .description = "protocol v1 frames over parallel TCP connections",
    .data_max = FY_DATA_MAX,
    .listen = tcp_listen,
    .accept = tcp_accept,
    .listener_close = tcp_listener_close,
    .connect = tcp_connect,
    .shutdown = tcp_shutdown,
    .close = tcp_close,
};
