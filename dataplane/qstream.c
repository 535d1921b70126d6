/* Stream mode: what both sides share (see include/ferry/qstream.h). */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "dataplane/qstream_internal.h"
#include "ferry/error.h"

#define KEY_SLACK (128ull << 20)

uint64_t fy_qstream_key_space(uint64_t ram_bytes)
{
    uint64_t chunk = 1ull << FY_QS_CHUNK_SHIFT;
    uint64_t n = ram_bytes + KEY_SLACK;

    return (n + chunk - 1) / chunk * chunk;
}

int fy_qs_write_all(int fd, const struct iovec *iov_in, int n,
                    const volatile int *stop)
{
    struct iovec iov[IOV_MAX];
    struct iovec *v = iov;

    if (n > IOV_MAX)
        return fy_error(FY_E_INVAL, "fy_qs_write_all: %d buffers, at most %d",
                        n, IOV_MAX);
    memcpy(iov, iov_in, sizeof(*iov) * (size_t)n);
    while (n > 0) {
        struct msghdr mh = {.msg_iov = v, .msg_iovlen = (size_t)n};
        ssize_t k = sendmsg(fd, &mh, MSG_NOSIGNAL);

        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd pf = {.fd = fd, .events = POLLOUT};
                if (stop && *stop)
                    return fy_error(FY_E_CANCELLED, "stopped while writing to QEMU");
                poll(&pf, 1, 200);
                continue;
            }
            if (errno == EPIPE || errno == ECONNRESET)
                return fy_error(FY_E_CLOSED, "QEMU closed the migration "
                                "channel while Ferry was writing to it");
            return fy_error_sys("write to QEMU's migration channel");
        }
        while (n > 0 && (size_t)k >= v->iov_len) {
            k -= (ssize_t)v->iov_len;
            v++;
            n--;
        }
        if (n > 0) {
            v->iov_base = (uint8_t *)v->iov_base + k;
            v->iov_len -= (size_t)k;
        }
    }
    return 0;
}

int fy_qs_send(struct fy_stream *s, const struct fy_op *ops, unsigned n,
               int timeout_ms)
{
    int rc;

    if (n == 0)
        return 0;
    rc = fy_stream_send_all(s, ops, n);
    if (rc < 0 || !s->tx_mark)
        return rc;
    /* A zero-copy transport still points at the data; the caller reuses
     * its buffer next. */
    return s->tx_wait(s, s->tx_mark(s), timeout_ms);
}

void fy_qs_stats_add_wire(struct fy_qstream_stats *st,
                          const struct fy_session *s)
{
    st->wire_bytes = 0;
    for (unsigned i = 0; i < s->nstreams; i++)
        st->wire_bytes += s->streams[i]->tx_wire_bytes +
                          s->streams[i]->rx_wire_bytes;
}

int fy_qs_lock_tx0(struct fy_qs_run *r)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 1;
    return pthread_mutex_timedlock(&r->tx0, &ts);
}

bool fy_qs_failv(struct fy_qs_run *r, struct fy_session *s, int code,
                 const char *fmt, va_list ap)
{
    bool first;

    pthread_mutex_lock(&r->mu);
    first = r->err == 0;
    if (first) {
        r->err = code < 0 ? -code : code;
        vsnprintf(r->errmsg, sizeof(r->errmsg), fmt, ap);
    }
    __atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (!first)
        return false;
    if (fy_qs_lock_tx0(r) == 0) {
        struct fy_op e = {.type = FY_OP_ERROR, .offset = (uint64_t)r->err,
                          .data = r->errmsg, .len = strlen(r->errmsg)};
        s->streams[0]->tx_burst(s->streams[0], &e, 1);
        pthread_mutex_unlock(&r->tx0);
    }
    fy_session_shutdown(s);
    return true;
}
