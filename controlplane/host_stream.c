/* Stream mode on the local host (host.h: FY_HOST_DATA_STREAM): the
 * hypervisor runs the live migration, Ferry is its transport.
 *
 * Target (recv_start .. recv_join): the driver's stream_incoming makes the
 * placeholder wait on a UNIX socket; a job thread accepts the Ferry session
 * and runs fy_qstream_target_run() into that socket; recv_join then waits
 * for the hypervisor to report the incoming migration completed.
 *
 * Source (send): the driver's stream_outgoing sets the migration up and
 * names a socket path; this file listens there, connects the session (one
 * stream for the main channel and one per multifd channel), runs
 * fy_qstream_source_run() on a thread, starts the migration
 * (stream_start) and polls the hypervisor (stream_status) until it
 * completes — the VM is then paused at the source, and the send returns —
 * or fails, the VM running on.  Every driver call is made on the calling
 * thread (the driver contract's controlling thread); the threads here only
 * move bytes.
 *
 * Cross-VM dedup: with a gang (host.h, h->gang), the source shares one
 * index per (source host, gang) — the agent names the gang per target,
 * "EVAC>TARGET" — and the target one per (target host, gang), both kept
 * with what ended migrations left there (fy_host_gang_*).  Those indexes
 * are stream mode's own ("qsend", "qrecv"): a source-side index never
 * serves a target (include/ferry/qstream.h).
 *
 * docs/qstream.md describes the proxy, docs/libvirt.md the driver's side. */
#include "controlplane/host_local.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "controlplane/driver.h"
#include "ferry/error.h"
#include "ferry/qstream.h"

#define ERR_MAX 1024
#define DEFAULT_TIMEOUT_MS 30000
/* How often the source asks the hypervisor how its migration goes: often
 * near the end, which the downtime includes until it is seen (the VM
 * paused, then resumed at the target), less while much remains. */
#define POLL_FAST_US 5000
#define POLL_SLOW_US 20000
#define NEAR_END_BYTES (64ull << 20)
/* Socket buffers of the session: what QEMU has handed over but the target
 * has not yet written to the destination is part of the final pause
 * (with the return path QEMU completes only once the destination has
 * loaded it all), and QEMU's estimate of it does not see Ferry's buffers:
 * keep them small.  A multifd packet is 512 KiB. */
#define STREAM_SOCKBUF (1u << 20)
/* Progress for the caller (on_round) at most this often. */
#define ROUND_EVERY_S 1.0

static struct fy_driver_handle *drv_of(struct fy_host *h)
{
    return h->impl;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Refuses what stream mode cannot run on: a driver without it, a
 * transport that does not carry DATA operations, channels out of range. */
static int check(struct fy_host *h, const struct fy_host_data *w,
                 const struct fy_transport_ops *t)
{
    const struct fy_driver_ops *ops = drv_of(h)->ops;

    if (!(ops->caps & FY_DRV_STREAM))
        return fy_error(FY_E_UNSUPPORTED, "driver %s of host %s has no stream mode "
                        "(FY_DRV_STREAM): migrate VM %s live in RAM-direct mode "
                        "(ferryctl migrate --mode ram-direct)", ops->name, h->name, w->vm);
    if (!t)
        return fy_error(FY_E_NOTFOUND, "host %s: its migration transport is not built "
                        "into this Ferry", h->name);
    if (t->data_max < FY_DATA_MAX)
        return fy_error(FY_E_UNSUPPORTED, "host %s: stream mode needs a transport that "
                        "carries DATA operations of %u bytes, and the migration network's "
                        "transport %s does not (tcp does): configure tcp for it, or "
                        "migrate VM %s with --mode ram-direct", h->name, FY_DATA_MAX,
                        t->name, w->vm);
    if (w->region < 1 || w->region > FY_QSTREAM_MAX_CHANNELS)
        return fy_error(FY_E_INVAL, "VM %s: stream mode with %u multifd channels; 1-%u "
                        "(ferryctl migrate --streams)", w->vm, w->region,
                        FY_QSTREAM_MAX_CHANNELS);
    if (w->size == 0)
        return fy_error(FY_E_INVAL, "VM %s: stream mode needs the VM's RAM size", w->vm);
    return 0;
}

/* ---- the target ------------------------------------------------------------- */

struct fy_stream_recv {
    char vm[FY_NAME_MAX];
    char path[FY_PATH_MAX];       /* the hypervisor's incoming socket */
    struct fy_listener *l;
    uint8_t session_id[16];
    uint64_t key_space;
    int timeout_ms;
    struct gang *gang;            /* cross-VM dedup; NULL: none */
    struct fy_region *cache;      /* with a gang: the content cache it keeps */
    struct fy_kept kept;
    pthread_mutex_t lock;         /* s, against abort */
    struct fy_session *s;
    volatile int cancel;
    pthread_t tid;
    bool running, incoming;
    int rc;
    char detail[ERR_MAX];
    struct fy_qstream_stats st;
};

static void *stream_recv_main(void *arg)
{
    struct fy_stream_recv *j = arg;
    struct fy_accept_params ap = {.region_size = j->key_space, .session_id = j->session_id};
    struct fy_qstream_target_params tp = {
        .connect_path = j->path,
        .cache = j->cache,
        .dedup = j->gang ? fy_host_gang_dedup(j->gang) : NULL,
        .keep = j->gang ? &j->kept : NULL,
        .timeout_ms = j->timeout_ms,
        .cancel = &j->cancel,
    };
    struct fy_session *s = NULL;

    pthread_setname_np(pthread_self(), "fy-qs-recv");
    j->rc = j->l->ops->accept(j->l, &ap, &s);
    if (j->rc == 0) {
        pthread_mutex_lock(&j->lock);
        j->s = s;
        if (j->cancel)
            fy_session_shutdown(s);
        pthread_mutex_unlock(&j->lock);
        j->rc = fy_qstream_target_run(s, &tp, &j->st);
    }
    if (j->rc < 0) {
        snprintf(j->detail, sizeof(j->detail), "%s", fy_error_detail());
        /* The source learns it now (its reads end), not when the job is
         * joined, which waits for the source. */
        pthread_mutex_lock(&j->lock);
        if (j->s)
            fy_session_shutdown(j->s);
        pthread_mutex_unlock(&j->lock);
    }
    return NULL;
}

static void stream_recv_free(struct fy_host *h, struct fy_stream_recv *j, bool keep)
{
    if (j->l)
        j->l->ops->listener_close(j->l);
    pthread_mutex_lock(&j->lock);
    fy_session_close(j->s);
    j->s = NULL;
    pthread_mutex_unlock(&j->lock);
    if (j->incoming)
        drv_of(h)->ops->stream_end(drv_of(h)->d, j->vm);
    if (j->gang) {
        /* Kept: the cache serves later migrations to this host until the
         * gang ends; else the cache goes now, and what the run left in
         * the index with it. */
        if (!keep)
            fy_kept_release(fy_host_gang_dedup(j->gang), &j->kept);
        fy_host_gang_put(j->gang, keep ? &j->kept : NULL, keep ? j->cache : NULL);
        if (keep)
            j->cache = NULL;
    }
    fy_region_close(j->cache);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

int fy_host_stream_recv_start(struct fy_host *h, const struct fy_host_data *w,
                              const char *addr, int timeout_ms,
                              struct fy_stream_recv **job, struct fy_host_endpoint *ep)
{
    struct fy_driver_handle *drv = drv_of(h);
    struct fy_transport_opts o = {.timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS,
                                  .streams = w->region + 1, .sockbuf = STREAM_SOCKBUF};
    const struct fy_transport_ops *t = fy_host_local_transport(h, addr, &o.params);
    struct fy_stream_params sp = {.channels = w->region};
    struct fy_stream_recv *j;
    int rc;

    *job = NULL;
    if ((rc = check(h, w, t)) < 0)
        return rc;
    if (!(j = calloc(1, sizeof(*j))))
        return fy_error(FY_E_NOMEM, "no memory for a receiving job on host %s", h->name);
    pthread_mutex_init(&j->lock, NULL);
    snprintf(j->vm, sizeof(j->vm), "%s", w->vm);
    j->timeout_ms = o.timeout_ms;
    j->key_space = fy_qstream_key_space(w->size);
    j->kept.space = -1;
    if (h->gang[0]) {
        /* The cache must outlive the run (the gang keeps it), so it is
         * made here rather than by the proxy. */
        if (!(j->gang = fy_host_gang_get(h, "qrecv", j->key_space / FY_PAGE_SIZE))) {
            rc = -FY_E_NOMEM;
            goto fail;
        }
        if ((rc = fy_region_create_memfd("ferry-qstream-cache", j->key_space, &j->cache)) < 0)
            goto fail;
    }
    if ((rc = drv->ops->stream_incoming(drv->d, w->vm, &sp, j->path, sizeof(j->path))) < 0)
        goto fail;
    j->incoming = true;
    if ((rc = fy_host_local_listen_job(h, t, addr, &o, "migration data", j->session_id,
                                       &j->l, &j->tid, stream_recv_main, j, ep)) < 0)
        goto fail;
    j->running = true;
    *job = j;
    return 0;
fail:
    stream_recv_free(h, j, false);
    return rc;
}

/* Waits for the hypervisor at this end to load the whole migration. */
static int wait_loaded(struct fy_host *h, struct fy_stream_recv *j)
{
    struct fy_driver_handle *drv = drv_of(h);
    double deadline = now_s() + j->timeout_ms / 1000.0;
    struct fy_stream_status st;
    int rc;

    for (unsigned i = 0;; i++) {
        if ((rc = drv->ops->stream_status(drv->d, j->vm, &st)) < 0)
            return rc;
        if (st.state == FY_STREAM_COMPLETED)
            return 0;
        if (st.state == FY_STREAM_FAILED)
            return fy_error(FY_E_IO, "VM %s on host %s: the incoming migration %s: %s",
                            j->vm, h->name, st.status, st.error);
        if (now_s() > deadline)
            return fy_error(FY_E_TIMEOUT, "VM %s on host %s: the incoming migration is "
                            "still '%s' %d s after Ferry delivered it all", j->vm, h->name,
                            st.status, j->timeout_ms / 1000);
        usleep(i < 100 ? POLL_FAST_US : POLL_SLOW_US);
    }
}

int fy_host_stream_recv_join(struct fy_host *h, struct fy_stream_recv *j,
                             struct fy_migration_stats *st)
{
    int rc;

    if (j->running)
        pthread_join(j->tid, NULL);
    j->running = false;
    if (j->rc < 0)
        rc = fy_error(-j->rc, "host %s receiving VM %s in stream mode: %s", h->name, j->vm,
                      j->detail);
    else
        rc = wait_loaded(h, j);
    if (st) {
        memset(st, 0, sizeof(*st));
        st->pages_sent = j->st.pages_sent;
        st->pages_zero = j->st.pages_zero + j->st.qemu_zero_pages;
        st->pages_dup = j->st.pages_dup;
        st->pages_dup_shared = j->st.pages_dup_shared;
        st->wire_bytes = j->st.wire_bytes;
        st->seconds = j->st.seconds;
        /* Every reference was checked against its hash, and every
         * channel's bytes against the source QEMU's sum of them. */
        st->verified = rc == 0 && j->st.verified;
    }
    stream_recv_free(h, j, rc == 0);
    return rc;
}

void fy_host_stream_recv_abort(struct fy_host *h, struct fy_stream_recv *j)
{
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
    stream_recv_free(h, j, false);
}

/* ---- the source ------------------------------------------------------------- */

struct source_run {
    struct fy_session *s;
    struct fy_qstream_source_params p;
    struct fy_qstream_stats st;
    volatile int cancel;
    volatile int done;
    int rc;
    char detail[ERR_MAX];
    pthread_t tid;
};

static void *source_main(void *arg)
{
    struct source_run *r = arg;

    pthread_setname_np(pthread_self(), "fy-qs-send");
    r->rc = fy_qstream_source_run(r->s, &r->p, &r->st);
    if (r->rc < 0)
        snprintf(r->detail, sizeof(r->detail), "%s", fy_error_detail());
    __atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* A listening UNIX socket at 'path' (replacing a stale one). */
static int listen_unix(const char *path, const char *vm, int backlog, int *fd)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    *fd = -1;
    if (strlen(path) >= sizeof(sa.sun_path))
        return fy_error(FY_E_TOOBIG, "VM %s: socket path %s too long", vm, path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    unlink(path);
    if ((*fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        bind(*fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(*fd, backlog) != 0) {
        int rc = fy_error_sys("VM %s: cannot listen on %s for its migration", vm, path);
        if (*fd >= 0)
            close(*fd);
        *fd = -1;
        return rc;
    }
    return 0;
}

/* Progress for the caller: what the hypervisor moved since the last
 * report, as a round. */
struct progress {
    const struct fy_host_send_params *p;
    unsigned round;
    uint64_t pages;    /* normal + zero pages reported so far */
    uint64_t bytes;    /* transferred so far */
    double t_last;
};

static void report(struct progress *pr, const struct fy_stream_status *st, bool final,
                   const struct fy_qstream_stats *fy)
{
    struct fy_round_stats rs = {0};
    uint64_t pages = st->pages_normal + st->pages_zero;
    double now = now_s(), dt = now - pr->t_last;

    if (!pr->p->on_round)
        return;
    /* The hypervisor's iteration (its dirty-bitmap syncs), not ours. */
    rs.round = st->dirty_syncs > pr->round ? (unsigned)st->dirty_syncs : pr->round;
    pr->round = rs.round;
    rs.final = final;
    rs.dirty_pages = pages > pr->pages ? pages - pr->pages : 0;
    rs.seconds = dt;
    rs.dirty_rate = (double)st->dirty_rate;
    rs.throughput = dt > 0 ? (double)(st->transferred - pr->bytes) / dt : 0;
    rs.page_rate = dt > 0 ? (double)rs.dirty_pages / dt : 0;
    rs.expected_downtime = st->expected_downtime;
    if (fy) {
        /* Ferry's own figures exist only at the end: the last report
         * carries all of them. */
        rs.pages_sent = fy->pages_sent;
        rs.pages_zero = fy->pages_zero + fy->qemu_zero_pages + st->pages_zero;
        rs.pages_dup = fy->pages_dup;
        rs.pages_dup_shared = fy->pages_dup_shared;
        rs.wire_bytes = fy->wire_bytes;
    }
    pr->pages = pages;
    pr->bytes = st->transferred;
    pr->t_last = now;
    pr->p->on_round(&rs, pr->p->round_ctx);
}

int fy_host_stream_send(struct fy_host *h, const struct fy_host_data *w,
                        const struct fy_host_endpoint *to,
                        const struct fy_host_send_params *p,
                        struct fy_host_send_result *out)
{
    struct fy_driver_handle *drv = drv_of(h);
    const struct fy_driver_ops *ops = drv->ops;
    int timeout_ms = p->timeout_ms ? p->timeout_ms : DEFAULT_TIMEOUT_MS;
    struct fy_transport_opts o = {.streams = w->region + 1, .timeout_ms = timeout_ms,
                                  .sockbuf = STREAM_SOCKBUF};
    const struct fy_transport_ops *t = fy_host_local_transport(h, p->bind, &o.params);
    struct fy_session_info info = {.region_size = fy_qstream_key_space(w->size),
                                   .page_size = FY_PAGE_SIZE, .caps = FY_CAPS_V1};
    struct fy_stream_params sp = {.channels = w->region, .downtime_ms = p->downtime_ms};
    struct fy_stream_status st = {0};
    struct source_run *r = NULL;
    struct progress pr = {.p = p, .t_last = now_s()};
    struct gang *g = NULL;
    struct fy_kept kept = {.space = -1};
    char path[FY_PATH_MAX] = "", bind_at[FY_NAME_MAX + 8], keep[ERR_MAX] = "";
    int lfd = -1, rc;
    bool outgoing = false, started = false, completed = false;
    double t_done = 0, t_moved = now_s();
    uint64_t moved = 0;

    if ((rc = check(h, w, t)) < 0)
        return rc;
    if (!(r = calloc(1, sizeof(*r))))
        return fy_error(FY_E_NOMEM, "no memory for the migration of VM %s", w->vm);
    if ((rc = ops->stream_outgoing(drv->d, w->vm, &sp, path, sizeof(path))) < 0)
        goto out;
    outgoing = true;
    if ((rc = listen_unix(path, w->vm, (int)w->region + 8, &lfd)) < 0)
        goto out;
    memcpy(info.session_id, to->session_id, sizeof(info.session_id));
    if (p->bind[0]) {
        snprintf(bind_at, sizeof(bind_at), strchr(p->bind, ':') ? "[%s]:0" : "%s:0",
                 p->bind);
        o.bind = bind_at;
    }
    if ((rc = t->connect(to->addr, &o, &info, &r->s)) < 0)
        goto out;
    if (h->gang[0]) {
        if (!(g = fy_host_gang_get(h, "qsend", info.region_size / FY_PAGE_SIZE))) {
            rc = -FY_E_NOMEM;
            goto out;
        }
        r->p.dedup = fy_host_gang_dedup(g);
        r->p.keep = &kept;
    }
    r->p.listen_fd = lfd;
    r->p.channels = w->region;
    r->p.timeout_ms = timeout_ms;
    /* The proxy stops on our word (QEMU failed, the caller cancelled) or
     * on its own (the target failed, the session broke): its connections
     * to QEMU then close and QEMU's migration fails. */
    r->p.cancel = &r->cancel;
    if (pthread_create(&r->tid, NULL, source_main, r) != 0) {
        rc = fy_error(FY_E_SYS, "cannot start the stream mode thread for VM %s on host %s",
                      w->vm, h->name);
        goto out;
    }
    started = true;
    /* The socket listens already: QEMU's connections wait in its backlog
     * until the proxy accepts them. */
    if ((rc = ops->stream_start(drv->d, w->vm, path)) < 0)
        goto out;
    for (unsigned i = 0;; i++) {
        bool fy_done = __atomic_load_n(&r->done, __ATOMIC_ACQUIRE);

        if ((rc = ops->stream_status(drv->d, w->vm, &st)) < 0)
            goto out;
        if (st.state == FY_STREAM_COMPLETED) {
            completed = true;
            t_done = now_s();
            break;
        }
        if (st.state == FY_STREAM_FAILED) {
            /* The proxy's reason, when it failed first, says more (e.g.
             * "the target stopped the migration: destination QEMU ..."):
             * it ends on its own once QEMU has closed its sockets. */
            for (int k = 0; k < 400 && !__atomic_load_n(&r->done, __ATOMIC_ACQUIRE); k++)
                usleep(POLL_FAST_US);
            r->cancel = 1;
            pthread_join(r->tid, NULL);
            started = false;
            rc = r->rc < 0 && r->rc != -FY_E_CANCELLED
                     ? fy_error(-r->rc, "VM %s: QEMU's migration %s (%s); Ferry: %s", w->vm,
                                st.status, st.error, r->detail)
                     : fy_error(FY_E_IO, "VM %s: QEMU's migration %s: %s", w->vm, st.status,
                                st.error);
            goto out;
        }
        if (st.state == FY_STREAM_NONE && i > 2000 / (POLL_FAST_US / 1000)) {
            rc = fy_error(FY_E_IO, "VM %s: QEMU has not started its migration", w->vm);
            goto out;
        }
        if (p->cancel && *p->cancel) {
            rc = fy_error(FY_E_CANCELLED, "migration of VM %s cancelled while QEMU "
                          "migrated it (%s)", w->vm, st.status);
            goto out;
        }
        /* A proxy that ended while QEMU is still at it failed: QEMU sees
         * its sockets close and fails next (reported above). */
        if (fy_done && r->rc == 0 && now_s() - t_moved > timeout_ms / 1000.0) {
            rc = fy_error(FY_E_PROTO, "VM %s: Ferry carried QEMU's channels to their end "
                          "but QEMU still reports '%s'", w->vm, st.status);
            goto out;
        }
        if (st.transferred != moved) {
            moved = st.transferred;
            t_moved = now_s();
        } else if (now_s() - t_moved > timeout_ms / 1000.0) {
            rc = fy_error(FY_E_TIMEOUT, "VM %s: QEMU's migration (%s) moved nothing for %d s%s%s",
                          w->vm, st.status, timeout_ms / 1000, fy_done ? "; Ferry: " : "",
                          fy_done ? r->detail : "");
            goto out;
        }
        if (now_s() - pr.t_last >= ROUND_EVERY_S)
            report(&pr, &st, false, NULL);
        usleep(i < 400 || st.ram_remaining < NEAR_END_BYTES || strcmp(st.status, "active")
                   ? POLL_FAST_US : POLL_SLOW_US);
    }
    /* QEMU has sent it all and paused the VM; with the return path on, it
     * completes only once the destination has loaded it.  The proxy ends
     * when the target has written every channel. */
    pthread_join(r->tid, NULL);
    started = false;
    if (r->rc < 0) {
        rc = fy_error(-r->rc, "VM %s: QEMU completed its migration but Ferry failed: %s",
                      w->vm, r->detail);
        goto out;
    }
    rc = 0;
out:
    if (rc < 0)
        snprintf(keep, sizeof(keep), "%s", fy_error_detail());
    if (started) {
        /* QEMU's side first: its migration ends (the guest runs on), then
         * the proxy, whose sockets QEMU has closed. */
        if (outgoing)
            ops->stream_end(drv->d, w->vm);
        outgoing = false;
        r->cancel = 1;
        pthread_join(r->tid, NULL);
    }
    if (outgoing && (ops->stream_end(drv->d, w->vm) < 0) && rc == 0) {
        /* The VM moved: settings left behind do not undo that. */
        fprintf(stderr, "ferry: host %s: %s\n", h->name, fy_error_detail());
    }
    if (r->s)
        fy_session_close(r->s);
    if (lfd >= 0)
        close(lfd);
    if (path[0])
        unlink(path);
    if (g) {
        /* A migration that failed after the proxy's success must not
         * leave a record of content the target then dropped. */
        if (rc < 0)
            fy_kept_release(fy_host_gang_dedup(g), &kept);
        fy_host_gang_put(g, rc == 0 ? &kept : NULL, NULL);
    }
    out->paused = completed;
    if (completed) {
        /* Paused since QEMU's downtime started: its downtime before it
         * reported completion, plus the time since. */
        out->st.downtime = st.downtime + (now_s() - t_done);
    }
    out->st.rounds = (unsigned)st.dirty_syncs;
    out->st.region_bytes = st.ram_total;
    out->st.pages_sent = r->st.pages_sent;
    out->st.pages_zero = r->st.pages_zero + r->st.qemu_zero_pages + st.pages_zero;
    out->st.pages_dup = r->st.pages_dup;
    out->st.pages_dup_shared = r->st.pages_dup_shared;
    out->st.wire_bytes = r->st.wire_bytes;
    out->st.seconds = st.seconds;
    out->st.converged = completed;
    out->stream = (struct fy_host_stream_stats){
        .channels = r->st.channels,
        .parsed_all = r->st.parsed_all,
        .pages_sent = r->st.pages_sent,
        .pages_dup = r->st.pages_dup,
        .pages_dup_shared = r->st.pages_dup_shared,
        .pages_zero = r->st.pages_zero,
        .pages_uncached = r->st.pages_uncached,
        .qemu_zero_pages = r->st.qemu_zero_pages,
        .wire_bytes = r->st.wire_bytes,
        .hv_transferred = st.transferred,
        .hv_pages_normal = st.pages_normal,
        .hv_pages_zero = st.pages_zero,
        .hv_dirty_syncs = st.dirty_syncs,
        .hv_seconds = st.seconds,
        .hv_downtime = st.downtime,
    };
    snprintf(out->stream.unparsed, sizeof(out->stream.unparsed), "%s", r->st.unparsed);
    if (completed && rc == 0)
        report(&pr, &st, true, &r->st);
    free(r);
    if (rc < 0)
        rc = fy_error(-rc, "%s", keep);
    return rc;
}
