/* The device state of a VM at its switchover, between the agents' own
 * hands (host.h: FY_HOST_DATA_DEVICE_STATE): the source's driver saves it,
 * one Ferry session carries it, the target's driver loads it.  It used to
 * travel through the controller (device_state_save, then
 * device_state_load), hex in JSON-RPC messages of at most 1 MiB, which a
 * guest with a large device state (video memory, many devices) exceeds.
 *
 * On the wire, one stream, source to target, DATA operations:
 *   DATA tag HEAD   u64 total length (little-endian)
 *   DATA tag BYTES  the next bytes of the state, at most the transport's
 *                   data_max each
 *   DATA tag END    u64 total length, then the XXH3-128 of the whole state
 *                   (lo, hi; little-endian)
 * and back, once the target's driver has loaded it (or failed to, or the
 * state did not arrive whole): DONE, or ERROR with the code and the
 * target's reason (fy_send_error, as the engine's targets answer).  The
 * source closes on that answer; the target waits for the close, so that a
 * transport never drops the answer with the session.
 *
 * The load runs on the job's thread while the target's controlling thread
 * waits elsewhere (the source's send, then recv_join), as the engine's
 * threads pause a VM during a send. */
#include "controlplane/host_local.h"

#include <endian.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "controlplane/driver.h"
#include "dataplane/engine_internal.h"
#include "dataplane/protocol.h"
#include "ferry/error.h"

#define ERR_MAX 1024
#define DEFAULT_TIMEOUT_MS 30000
/* A state larger than this is refused before it is allocated: QEMU's are
 * a few hundred KB to a few tens of MB (video memory). */
#define STATE_MAX (1ull << 30)
/* Operations handed to the transport at a time. */
#define BURST 32
/* How long the target waits for the source to close after its answer. */
#define CLOSE_WAIT_MS 2000

enum { TAG_HEAD = 1, TAG_BYTES = 2, TAG_END = 3 };

#define END_SIZE (8 + 16)

static struct fy_driver_handle *drv_of(struct fy_host *h)
{
    return h->impl;
}

/* '*t': the transport host 'h' uses at its address 'addr', which must
 * carry DATA operations. */
static int data_transport(const struct fy_host *h, const char *addr, const char *vm,
                          const struct fy_transport_ops **t, const char **params)
{
    if (!(*t = fy_host_local_transport(h, addr, params)))
        return fy_error(FY_E_NOTFOUND, "host %s: its migration transport is not built "
                        "into this Ferry", h->name);
    if ((*t)->data_max == 0)
        return fy_error(FY_E_UNSUPPORTED, "host %s: the device state of VM %s crosses the "
                        "dataplane in DATA operations, which its transport %s does not "
                        "carry: configure tcp, dpdk or xdp for the migration network",
                        h->name, vm, (*t)->name);
    return 0;
}

static void put_le64(uint8_t *b, uint64_t v)
{
    v = htole64(v);
    memcpy(b, &v, 8);
}

static uint64_t get_le64(const uint8_t *b)
{
    uint64_t v;
    memcpy(&v, b, 8);
    return le64toh(v);
}

/* ---- the target ------------------------------------------------------------- */

struct fy_devstate_recv {
    struct fy_driver_handle *drv; /* the host's, which outlives the job */
    char host[FY_NAME_MAX];
    char vm[FY_NAME_MAX];
    struct fy_listener *l;
    uint8_t session_id[16];
    int timeout_ms;
    pthread_mutex_t lock; /* s, against abort */
    struct fy_session *s;
    volatile int cancel;
    pthread_t tid;
    bool running;
    int rc;
    char detail[ERR_MAX];
    uint64_t bytes, wire_bytes;
};

/* Receives the whole state into '*out' ('*len' bytes), checked against its
 * length and digest. */
static int recv_state(struct fy_devstate_recv *j, struct fy_stream *s0, uint8_t **out,
                      uint64_t *len)
{
    uint8_t *buf = NULL;
    uint64_t total = 0, got = 0;
    bool head = false;
    struct fy_op ops[BURST];
    int n, rc;

    *out = NULL;
    for (;;) {
        if ((n = s0->rx_burst(s0, ops, BURST, j->timeout_ms)) < 0) {
            rc = n;
            goto fail;
        }
        if (n == 0) {
            rc = fy_error(FY_E_TIMEOUT, "the device state of VM %s stopped arriving from "
                          "%s: nothing for %d ms", j->vm, s0->session->peer, j->timeout_ms);
            goto fail;
        }
        for (int i = 0; i < n; i++) {
            const struct fy_op *op = &ops[i];

            if (op->type == FY_OP_ERROR) {
                rc = fy_error(FY_E_PEER, "the source %s stopped sending the device state "
                              "of VM %s: %.*s (%s)", s0->session->peer, j->vm,
                              (int)(op->len < 512 ? op->len : 512),
                              (const char *)op->data, fy_errname((int)op->offset));
                goto fail;
            }
            if (op->type != FY_OP_DATA ||
                (op->offset == TAG_HEAD) == head ||
                (op->offset != TAG_HEAD && op->offset != TAG_BYTES && op->offset != TAG_END)) {
                rc = fy_error(FY_E_PROTO, "unexpected %s (tag %llu) from %s in the device "
                              "state of VM %s", fy_proto_type_name(op->type),
                              (unsigned long long)op->offset, s0->session->peer, j->vm);
                goto fail;
            }
            if (op->offset == TAG_HEAD) {
                if (op->len != 8) {
                    rc = fy_error(FY_E_PROTO, "device state header of %llu bytes from %s",
                                  (unsigned long long)op->len, s0->session->peer);
                    goto fail;
                }
                total = get_le64(op->data);
                if (total > STATE_MAX) {
                    rc = fy_error(FY_E_TOOBIG, "the device state of VM %s has %llu bytes, "
                                  "more than the %llu a host accepts", j->vm,
                                  (unsigned long long)total, (unsigned long long)STATE_MAX);
                    goto fail;
                }
                if (!(buf = malloc(total ? total : 1))) {
                    rc = fy_error(FY_E_NOMEM, "no memory for the %llu bytes of VM %s's "
                                  "device state", (unsigned long long)total, j->vm);
                    goto fail;
                }
                head = true;
            } else if (op->offset == TAG_BYTES) {
                if (op->len > total - got) {
                    rc = fy_error(FY_E_PROTO, "more device state from %s than the %llu "
                                  "bytes announced for VM %s", s0->session->peer,
                                  (unsigned long long)total, j->vm);
                    goto fail;
                }
                memcpy(buf + got, op->data, op->len);
                got += op->len;
            } else {
                fy_hash128 sent, have;

                if (op->len != END_SIZE || get_le64(op->data) != total || got != total) {
                    rc = fy_error(FY_E_PROTO, "the device state of VM %s ended after %llu "
                                  "of %llu bytes", j->vm, (unsigned long long)got,
                                  (unsigned long long)total);
                    goto fail;
                }
                sent.lo = get_le64((const uint8_t *)op->data + 8);
                sent.hi = get_le64((const uint8_t *)op->data + 16);
                have = fy_hash_bytes(buf, total);
                if (!fy_hash_eq(sent, have)) {
                    rc = fy_error(FY_E_CHECKSUM, "the device state of VM %s arrived "
                                  "altered: its digest differs from the source's", j->vm);
                    goto fail;
                }
                *out = buf;
                *len = total;
                return 0;
            }
        }
    }
fail:
    free(buf);
    return rc;
}

/* Waits for the source to close after the answer (it closes on it). */
static void wait_close(struct fy_devstate_recv *j, struct fy_stream *s0)
{
    struct fy_op op;
    struct timespec t0, t;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (s0->rx_burst(s0, &op, 1, 100) < 0 || j->cancel)
            return;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >
            CLOSE_WAIT_MS)
            return;
    }
}

static void *recv_main(void *arg)
{
    struct fy_devstate_recv *j = arg;
    struct fy_accept_params ap = {.session_id = j->session_id};
    struct fy_session *s = NULL;
    struct fy_stream *s0;
    uint8_t *state = NULL;
    uint64_t len = 0;
    int rc;

    pthread_setname_np(pthread_self(), "fy-ds-recv");
    if ((rc = j->l->ops->accept(j->l, &ap, &s)) < 0)
        goto out;
    pthread_mutex_lock(&j->lock);
    j->s = s;
    if (j->cancel)
        fy_session_shutdown(s);
    pthread_mutex_unlock(&j->lock);
    s0 = s->streams[0];
    rc = recv_state(j, s0, &state, &len);
    if (rc == 0) {
        rc = j->drv->ops->device_state_load(j->drv->d, j->vm, state, (size_t)len);
        if (rc < 0)
            rc = fy_error(-rc, "host %s could not load the device state of VM %s: %s",
                          j->host, j->vm, fy_error_detail());
    }
    free(state);
    if (rc == 0) {
        struct fy_op done = {.type = FY_OP_DONE};

        j->bytes = len;
        if ((rc = fy_stream_send_all(s0, &done, 1)) < 0)
            rc = fy_error(-rc, "host %s loaded the device state of VM %s but could not "
                          "tell the source: %s", j->host, j->vm, fy_error_detail());
    } else if (rc != -FY_E_PEER && rc != -FY_E_CLOSED && rc != -FY_E_CANCELLED) {
        /* The source's send returns this reason. */
        char msg[512];

        snprintf(msg, sizeof(msg), "%s", fy_error_detail());
        fy_send_error(s0, rc, msg);
        rc = fy_error(-rc, "%s", msg);
    }
    wait_close(j, s0);
out:
    if (rc < 0)
        snprintf(j->detail, sizeof(j->detail), "%s", fy_error_detail());
    j->rc = rc;
    if (s)
        j->wire_bytes = fy_session_wire_bytes(s);
    return NULL;
}

static void recv_free(struct fy_devstate_recv *j)
{
    if (j->l)
        j->l->ops->listener_close(j->l);
    fy_session_close(j->s);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

int fy_host_devstate_recv_start(struct fy_host *h, const struct fy_host_data *w,
                                const char *addr, int timeout_ms,
                                struct fy_devstate_recv **job, struct fy_host_endpoint *ep)
{
    struct fy_transport_opts o = {.timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS,
                                  .streams = 1};
    const struct fy_transport_ops *t;
    char what[FY_NAME_MAX + 32];
    struct fy_devstate_recv *j;
    int rc;

    *job = NULL;
    if ((rc = data_transport(h, addr, w->vm, &t, &o.params)) < 0)
        return rc;
    if (!drv_of(h)->ops->device_state_load)
        return fy_error(FY_E_UNSUPPORTED, "driver %s of host %s has no device_state_load",
                        drv_of(h)->ops->name, h->name);
    if (!(j = calloc(1, sizeof(*j))))
        return fy_error(FY_E_NOMEM, "no memory for a receiving job on host %s", h->name);
    pthread_mutex_init(&j->lock, NULL);
    j->drv = drv_of(h);
    snprintf(j->host, sizeof(j->host), "%s", h->name);
    snprintf(j->vm, sizeof(j->vm), "%s", w->vm);
    j->timeout_ms = o.timeout_ms;
    snprintf(what, sizeof(what), "the device state of VM %s", w->vm);
    if ((rc = fy_host_local_listen_job(h, t, addr, &o, what, j->session_id, &j->l,
                                       &j->tid, recv_main, j, ep)) < 0)
        goto fail;
    j->running = true;
    *job = j;
    return 0;
fail:
    recv_free(j);
    return rc;
}

int fy_host_devstate_recv_join(struct fy_host *h, struct fy_devstate_recv *j,
                               struct fy_migration_stats *st)
{
    int rc = 0;

    if (j->running)
        pthread_join(j->tid, NULL);
    j->running = false;
    if (j->rc < 0)
        rc = fy_error(-j->rc, "host %s receiving the device state of VM %s: %s", h->name,
                      j->vm, j->detail);
    if (st) {
        memset(st, 0, sizeof(*st));
        st->region_bytes = j->bytes;
        st->wire_bytes = j->wire_bytes;
        /* Its length and digest were checked before the load. */
        st->verified = rc == 0;
    }
    recv_free(j);
    return rc;
}

void fy_host_devstate_recv_abort(struct fy_host *h, struct fy_devstate_recv *j)
{
    (void)h;
    if (!j)
        return;
    if (j->running) {
        j->cancel = 1;
        pthread_mutex_lock(&j->lock);
        if (j->s)
            fy_session_shutdown(j->s);
        pthread_mutex_unlock(&j->lock);
        fy_host_local_listener_stop(j->l);
        pthread_join(j->tid, NULL);
    }
    recv_free(j);
}

/* ---- the source ------------------------------------------------------------- */

/* Sends the state in DATA operations of at most 'max' bytes. */
static int send_state(struct fy_stream *s0, const uint8_t *state, uint64_t len,
                      unsigned max)
{
    uint8_t head[8], end[END_SIZE];
    fy_hash128 d = fy_hash_bytes(state, len);
    struct fy_op ops[BURST];
    uint64_t off = 0;
    unsigned n = 0;
    int rc;

    put_le64(head, len);
    put_le64(end, len);
    put_le64(end + 8, d.lo);
    put_le64(end + 16, d.hi);
    ops[n++] = (struct fy_op){.type = FY_OP_DATA, .offset = TAG_HEAD, .len = 8, .data = head};
    for (;;) {
        bool last = off == len;

        if (last)
            ops[n++] = (struct fy_op){.type = FY_OP_DATA, .offset = TAG_END,
                                      .len = END_SIZE, .data = end};
        while (!last && n < BURST && off < len) {
            uint64_t k = len - off < max ? len - off : max;

            ops[n++] = (struct fy_op){.type = FY_OP_DATA, .offset = TAG_BYTES, .len = k,
                                      .data = state + off};
            off += k;
        }
        if ((rc = fy_stream_send_all(s0, ops, n)) < 0)
            return rc;
        n = 0;
        if (last)
            return 0;
    }
}

/* The target's answer: DONE once it loaded the state, or its reason. */
static int target_answer(struct fy_stream *s0, const char *vm, int timeout_ms)
{
    struct fy_op op;
    int n = s0->rx_burst(s0, &op, 1, timeout_ms);

    if (n < 0)
        return fy_error(-n, "the target %s did not answer after the device state of VM "
                        "%s: %s", s0->session->peer, vm, fy_error_detail());
    if (n == 0)
        return fy_error(FY_E_TIMEOUT, "the target %s has not loaded the device state of "
                        "VM %s after %d ms", s0->session->peer, vm, timeout_ms);
    if (op.type == FY_OP_ERROR)
        return fy_error(FY_E_PEER, "the target %s refused the device state of VM %s: "
                        "%.*s (%s)", s0->session->peer, vm,
                        (int)(op.len < 512 ? op.len : 512), (const char *)op.data,
                        fy_errname((int)op.offset));
    if (op.type != FY_OP_DONE)
        return fy_error(FY_E_PROTO, "unexpected %s from the target %s after the device "
                        "state of VM %s", fy_proto_type_name(op.type), s0->session->peer,
                        vm);
    return 0;
}

int fy_host_devstate_send(struct fy_host *h, const struct fy_host_data *w,
                          const struct fy_host_endpoint *to,
                          const struct fy_host_send_params *p,
                          struct fy_host_send_result *out)
{
    struct fy_driver_handle *drv = drv_of(h);
    int timeout_ms = p->timeout_ms ? p->timeout_ms : DEFAULT_TIMEOUT_MS;
    struct fy_transport_opts o = {.streams = 1, .timeout_ms = timeout_ms};
    const struct fy_transport_ops *t;
    struct fy_session_info info = {.region_size = FY_PAGE_SIZE, .page_size = FY_PAGE_SIZE,
                                   .caps = FY_CAPS_V1};
    struct fy_session *s = NULL;
    char bind_at[FY_NAME_MAX + 8];
    void *state = NULL;
    size_t len = 0;
    double t0 = fy_now();
    int rc;

    if ((rc = data_transport(h, p->bind, w->vm, &t, &o.params)) < 0)
        return rc;
    if (!drv->ops->device_state_save)
        return fy_error(FY_E_UNSUPPORTED, "driver %s of host %s has no device_state_save",
                        drv->ops->name, h->name);
    if ((rc = drv->ops->device_state_save(drv->d, w->vm, &state, &len)) < 0)
        return rc;
    memcpy(info.session_id, to->session_id, sizeof(info.session_id));
    if (p->bind[0]) {
        snprintf(bind_at, sizeof(bind_at), strchr(p->bind, ':') ? "[%s]:0" : "%s:0",
                 p->bind);
        o.bind = bind_at;
    }
    if ((rc = t->connect(to->addr, &o, &info, &s)) < 0)
        goto out;
    /* The receiver's transport may carry less than ours: FY_DATA_MAX is
     * what every DATA-carrying transport takes. */
    rc = send_state(s->streams[0], state, len, t->data_max < FY_DATA_MAX ? t->data_max
                                                                         : FY_DATA_MAX);
    if (rc < 0) {
        char msg[512];

        /* A broken session: the target may have said why. */
        snprintf(msg, sizeof(msg), "%s", fy_error_detail());
        if (target_answer(s->streams[0], w->vm, 200) != -FY_E_PEER)
            fy_error(-rc, "sending the device state of VM %s to %s: %s", w->vm, to->addr,
                     msg);
        else
            rc = -FY_E_PEER;
        goto out;
    }
    rc = target_answer(s->streams[0], w->vm, timeout_ms);
out:
    if (s) {
        out->st.wire_bytes = fy_session_wire_bytes(s);
        fy_session_close(s);
    }
    free(state);
    out->st.region_bytes = len;
    out->st.seconds = fy_now() - t0;
    out->st.verified = rc == 0;
    out->device_state_bytes = rc == 0 ? len : 0;
    return rc;
}
