/* The local host (controlplane/host.h): a driver instance in this process,
 * this process's files, and both ends of the dataplane run here.  ferryd's
 * server side calls it for the host it runs on.
 *
 * Reading order: driver calls; files; the receiving end of a transfer; the
 * sending end; the table. */
#include "controlplane/host.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry/engine.h"
#include "ferry/error.h"
#include "ferry/region.h"
#include "ferry/transport.h"

#define ERR_MAX 1024
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_STREAMS 2

static struct fy_driver_handle *drv_of(struct fy_host *h)
{
    return h->impl;
}

#define DRV(h) (drv_of(h)->ops)
#define INST(h) (drv_of(h)->d)

/* An optional driver operation the driver does not have. */
static int missing(struct fy_host *h, const char *op)
{
    return fy_error(FY_E_UNSUPPORTED, "driver %s of host %s has no %s", DRV(h)->name,
                    h->name, op);
}

/* ---- driver calls --------------------------------------------------------- */

static int local_host_info(struct fy_host *h, struct fy_host_info *out)
{
    return DRV(h)->host_info(INST(h), out);
}

static int local_vm_info(struct fy_host *h, const char *vm, struct fy_vm_info *out)
{
    return DRV(h)->vm_info(INST(h), vm, out);
}

static int local_capabilities(struct fy_host *h, struct fy_host_caps *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->driver, sizeof(out->driver), "%s", DRV(h)->name);
    out->caps = DRV(h)->caps;
    return 0;
}

static int layout(struct fy_host *h, const char *vm, struct fy_memory_layout *out)
{
    if (!DRV(h)->memory_layout)
        return missing(h, "memory_layout");
    return DRV(h)->memory_layout(INST(h), vm, out);
}

static int local_memory_info(struct fy_host *h, const char *vm,
                             struct fy_host_memory *out)
{
    struct fy_memory_layout l;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = layout(h, vm, &l)) < 0)
        return rc;
    for (unsigned i = 0; i < l.n && i < FY_MAX_REGIONS; i++) {
        snprintf(out->regions[i].name, sizeof(out->regions[i].name), "%s",
                 l.regions[i].name);
        out->regions[i].size = l.regions[i].size;
        out->n = i + 1;
    }
    return 0;
}

static int local_vm_export(struct fy_host *h, const char *vm, char **out)
{
    return DRV(h)->vm_export(INST(h), vm, out);
}

static int local_vm_define(struct fy_host *h, const char *config, const char *name,
                           const char *const *paths, unsigned n)
{
    return DRV(h)->vm_define(INST(h), config, name, paths, n);
}

static int local_vm_undefine(struct fy_host *h, const char *vm)
{
    return DRV(h)->vm_undefine(INST(h), vm);
}

static int local_vm_start(struct fy_host *h, const char *vm)
{
    return DRV(h)->vm_start(INST(h), vm);
}

static int local_vm_stop(struct fy_host *h, const char *vm, bool force)
{
    return DRV(h)->vm_stop(INST(h), vm, force);
}

static int local_vm_pause(struct fy_host *h, const char *vm)
{
    return DRV(h)->vm_pause(INST(h), vm);
}

static int local_vm_resume(struct fy_host *h, const char *vm)
{
    return DRV(h)->vm_resume(INST(h), vm);
}

static int local_incoming_prepare(struct fy_host *h, const char *config, const char *vm)
{
    if (!DRV(h)->incoming_prepare)
        return missing(h, "incoming_prepare");
    return DRV(h)->incoming_prepare(INST(h), config, vm);
}

static int local_vm_suspend(struct fy_host *h, const char *vm, const char *image)
{
    if (!DRV(h)->vm_suspend)
        return missing(h, "vm_suspend");
    return DRV(h)->vm_suspend(INST(h), vm, image);
}

static int local_vm_restore(struct fy_host *h, const char *vm, const char *image)
{
    if (!DRV(h)->vm_restore)
        return missing(h, "vm_restore");
    return DRV(h)->vm_restore(INST(h), vm, image);
}

static int local_dirty_log_start(struct fy_host *h, const char *vm)
{
    if (!DRV(h)->dirty_log_start)
        return missing(h, "dirty_log_start");
    return DRV(h)->dirty_log_start(INST(h), vm);
}

static int local_dirty_log_stop(struct fy_host *h, const char *vm)
{
    if (!DRV(h)->dirty_log_stop)
        return missing(h, "dirty_log_stop");
    return DRV(h)->dirty_log_stop(INST(h), vm);
}

static int local_device_state_save(struct fy_host *h, const char *vm, void **out,
                                   size_t *len)
{
    if (!DRV(h)->device_state_save)
        return missing(h, "device_state_save");
    return DRV(h)->device_state_save(INST(h), vm, out, len);
}

static int local_device_state_load(struct fy_host *h, const char *vm,
                                   const void *state, size_t len)
{
    if (!DRV(h)->device_state_load)
        return missing(h, "device_state_load");
    return DRV(h)->device_state_load(INST(h), vm, state, len);
}

/* ---- files ---------------------------------------------------------------- */

static int local_file_create(struct fy_host *h, const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == EEXIST
                   ? fy_error(FY_E_EXISTS, "%s already exists on host %s: remove it or "
                              "choose another datastore", path, h->name)
                   : fy_error_sys("cannot create %s on host %s", path, h->name);
    close(fd);
    return 0;
}

static int local_file_remove(struct fy_host *h, const char *path)
{
    if (unlink(path) != 0 && errno != ENOENT)
        return fy_error_sys("cannot remove %s on host %s", path, h->name);
    return 0;
}

static int local_file_stat(struct fy_host *h, const char *path, uint64_t *size)
{
    struct stat st;

    if (stat(path, &st) != 0)
        return errno == ENOENT
                   ? fy_error(FY_E_NOTFOUND, "no file %s on host %s", path, h->name)
                   : fy_error_sys("cannot read %s on host %s", path, h->name);
    *size = (uint64_t)st.st_size;
    return 0;
}

/* ---- the receiving end ---------------------------------------------------- */

/* A listener and a thread that accepts one session per region, in order,
 * and fills it: a memory region; or a file's whole pages and then its last
 * partial page, which goes as a page of its own (a region is whole pages)
 * and is written to the file when it has arrived. */
struct fy_host_recv {
    struct fy_listener *l;
    struct fy_region *regions[2]; /* NULL: none */
    bool file;                    /* fresh regions; finish the file */
    char path[FY_PATH_MAX];
    uint64_t size;
    uint8_t session_id[16];
    int idle_ms;
    pthread_t tid;
    bool running;
    int rc;
    char detail[ERR_MAX];
    struct fy_migration_stats st;
};

/* A file's last partial page is in its tail region: write it, then give
 * the file its size. */
static int finish_file(struct fy_host_recv *j)
{
    uint64_t whole = j->size & ~(uint64_t)(FY_PAGE_SIZE - 1);
    size_t n = (size_t)(j->size - whole);
    int rc = 0, fd;

    if (n) {
        if ((fd = open(j->path, O_WRONLY | O_CLOEXEC)) < 0)
            return fy_error_sys("cannot open %s", j->path);
        if (pwrite(fd, fy_region_base(j->regions[1]), n, (off_t)whole) != (ssize_t)n)
            rc = fy_error_sys("cannot write the end of %s", j->path);
        close(fd);
        if (rc < 0)
            return rc;
    }
    if (truncate(j->path, (off_t)j->size) != 0)
        return fy_error_sys("cannot size %s", j->path);
    return 0;
}

static void *recv_main(void *arg)
{
    struct fy_host_recv *j = arg;
    bool first = true;

    j->rc = 0;
    for (unsigned i = 0; i < 2 && j->rc == 0; i++) {
        struct fy_accept_params ap = {.receiver_checks_pages = true,
                                      .session_id = j->session_id};
        struct fy_target_params tp = {.fresh = j->file, .idle_timeout_ms = j->idle_ms};
        struct fy_migration_stats st = {0};
        struct fy_session *s = NULL;

        if (!j->regions[i])
            continue;
        ap.region_size = fy_region_size(j->regions[i]);
        /* Pages are read straight into a mapped region (NULL otherwise). */
        ap.placement = fy_region_base(j->regions[i]);
        j->rc = j->l->ops->accept(j->l, &ap, &s);
        if (j->rc == 0)
            j->rc = fy_migrate_target(j->regions[i], s, &tp, &st);
        fy_session_close(s);
        j->st.wire_bytes += st.wire_bytes;
        j->st.verified = first ? st.verified : j->st.verified && st.verified;
        first = false;
    }
    if (j->rc == 0 && j->file)
        j->rc = finish_file(j);
    if (j->rc < 0)
        snprintf(j->detail, sizeof(j->detail), "%s", fy_error_detail());
    return NULL;
}

/* Opens the regions 'what' is received into. */
static int recv_regions(struct fy_host *h, const struct fy_host_data *w,
                        struct fy_host_recv *j)
{
    if (w->kind == FY_HOST_DATA_MEMORY) {
        struct fy_memory_layout ml;
        const struct fy_memory_region *r;
        int rc;

        if ((rc = layout(h, w->vm, &ml)) < 0)
            return rc;
        if (w->region >= ml.n)
            return fy_error(FY_E_PROTO, "VM %s on host %s has no memory region %u",
                            w->vm, h->name, w->region);
        r = &ml.regions[w->region];
        if (r->size != w->size)
            return fy_error(FY_E_PROTO, "memory region %s of VM %s has %llu bytes on "
                            "host %s, %llu are sent", r->name, w->vm,
                            (unsigned long long)r->size, h->name,
                            (unsigned long long)w->size);
        return r->fd >= 0 ? fy_region_open_fd(r->fd, r->offset, r->size, FY_REGION_RDWR,
                                              &j->regions[0])
                          : fy_region_open_pid(r->pid, r->addr, r->size, FY_REGION_RDWR,
                                               &j->regions[0]);
    }
    if (w->kind == FY_HOST_DATA_FILE) {
        uint64_t whole = w->size & ~(uint64_t)(FY_PAGE_SIZE - 1);
        int rc;

        j->file = true;
        j->size = w->size;
        snprintf(j->path, sizeof(j->path), "%s", w->path);
        if (whole && (rc = fy_region_open_file(w->path, 0, whole, FY_REGION_WRITE,
                                               &j->regions[0])) < 0)
            return rc;
        if (w->size > whole &&
            (rc = fy_region_create_memfd("ferry-file-tail", FY_PAGE_SIZE,
                                         &j->regions[1])) < 0)
            return rc;
        return 0;
    }
    return fy_error(FY_E_INVAL, "host %s: unknown kind of transfer %d", h->name,
                    (int)w->kind);
}

static void recv_free(struct fy_host_recv *j)
{
    if (j->l)
        j->l->ops->listener_close(j->l);
    fy_region_close(j->regions[0]);
    fy_region_close(j->regions[1]);
    free(j);
}

static int local_recv_start(struct fy_host *h, const struct fy_host_data *what,
                            const char *addr, int timeout_ms, struct fy_host_recv **job,
                            struct fy_host_endpoint *ep)
{
    struct fy_transport_opts o = {.timeout_ms = timeout_ms ? timeout_ms
                                                           : DEFAULT_TIMEOUT_MS};
    char listen_at[FY_NAME_MAX + 8];
    struct fy_host_recv *j;
    int rc;

    if (!job || !ep || !what || !addr)
        return fy_error(FY_E_INVAL, "recv_start: missing argument");
    *job = NULL;
    memset(ep, 0, sizeof(*ep));
    if (!(j = calloc(1, sizeof(*j))))
        return fy_error(FY_E_NOMEM, "no memory for a receiving job on host %s", h->name);
    j->idle_ms = o.timeout_ms;
    if ((rc = recv_regions(h, what, j)) < 0)
        goto fail;
    if (getrandom(j->session_id, sizeof(j->session_id), 0) != sizeof(j->session_id)) {
        rc = fy_error_sys("getrandom for a session id on host %s", h->name);
        goto fail;
    }
    snprintf(listen_at, sizeof(listen_at), strchr(addr, ':') ? "[%s]:0" : "%s:0", addr);
    if ((rc = fy_transport_tcp.listen(listen_at, &o, &j->l)) < 0) {
        rc = fy_error(-rc, "host %s cannot listen for migration data on %s: %s",
                      h->name, listen_at, fy_error_detail());
        goto fail;
    }
    if (pthread_create(&j->tid, NULL, recv_main, j) != 0) {
        rc = fy_error(FY_E_SYS, "cannot start the receiving thread on host %s", h->name);
        goto fail;
    }
    j->running = true;
    snprintf(ep->addr, sizeof(ep->addr), "%s", j->l->addr);
    memcpy(ep->session_id, j->session_id, sizeof(ep->session_id));
    *job = j;
    return 0;
fail:
    recv_free(j);
    return rc;
}

static int local_recv_join(struct fy_host *h, struct fy_host_recv *j,
                           struct fy_migration_stats *st)
{
    int rc = 0;

    if (!j)
        return fy_error(FY_E_INVAL, "recv_join: no job");
    if (j->running)
        pthread_join(j->tid, NULL);
    if (st)
        *st = j->st;
    if (j->rc < 0)
        rc = fy_error(-j->rc, "host %s receiving: %s", h->name, j->detail);
    recv_free(j);
    return rc;
}

/* A connection that closes before its handshake makes accept() give up, so
 * a job still waiting for its sender ends now rather than at its timeout. */
static void poke(const char *a)
{
    char host[80], port[16];
    const char *colon = strrchr(a, ':');
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    size_t hl = colon ? (size_t)(colon - a) : 0;

    if (!colon || hl >= sizeof(host) || (a[0] == '[' && hl < 2))
        return;
    memcpy(host, a[0] == '[' ? a + 1 : a, a[0] == '[' ? hl - 2 : hl);
    host[a[0] == '[' ? hl - 2 : hl] = '\0';
    snprintf(port, sizeof(port), "%s", colon + 1);
    if (getaddrinfo(host, port, &hints, &ai) != 0)
        return;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0)
            (void)0; /* accept() then times out instead */
        close(fd);
    }
    freeaddrinfo(ai);
}

static void local_recv_abort(struct fy_host *h, struct fy_host_recv *j)
{
    (void)h;
    if (!j)
        return;
    if (j->running) {
        poke(j->l->addr);
        pthread_join(j->tid, NULL);
    }
    recv_free(j);
}

/* ---- the sending end ------------------------------------------------------ */

/* The dirty log and the pause of the VM being sent, for the engine. */
struct send_ctx {
    struct fy_host *h;
    const char *vm;
    unsigned region;
    bool paused;
    const struct fy_host_send_params *p; /* its on_round */
};

static int send_sync(void *ctx, uint64_t *bitmap, uint64_t npages)
{
    struct send_ctx *c = ctx;
    return DRV(c->h)->dirty_log_sync(INST(c->h), c->vm, c->region, bitmap, npages);
}

static int send_pause(void *ctx)
{
    struct send_ctx *c = ctx;
    int rc = DRV(c->h)->vm_pause(INST(c->h), c->vm);
    if (rc == 0)
        c->paused = true;
    return rc;
}

static void send_round(void *ctx, const struct fy_round_stats *st)
{
    struct send_ctx *c = ctx;
    c->p->on_round(st, c->p->round_ctx);
}

/* Sends region 'r' in one session to 'to'; adds its statistics to 'sum'. */
static int send_region(struct fy_region *r, const struct fy_host_endpoint *to,
                       const struct fy_host_send_params *p,
                       const struct fy_source_params *sp, struct fy_migration_stats *sum,
                       bool first)
{
    char bind_at[FY_NAME_MAX + 8];
    struct fy_transport_opts o = {
        .streams = p->streams ? p->streams : DEFAULT_STREAMS,
        .timeout_ms = p->timeout_ms ? p->timeout_ms : DEFAULT_TIMEOUT_MS,
    };
    struct fy_session_info info = {.region_size = fy_region_size(r),
                                   .page_size = FY_PAGE_SIZE, .caps = FY_CAPS_V1};
    struct fy_migration_stats st = {0};
    struct fy_session *s = NULL;
    int rc;

    memcpy(info.session_id, to->session_id, sizeof(info.session_id));
    if (p->bind[0]) {
        snprintf(bind_at, sizeof(bind_at), strchr(p->bind, ':') ? "[%s]:0" : "%s:0",
                 p->bind);
        o.bind = bind_at;
    }
    if ((rc = fy_transport_tcp.connect(to->addr, &o, &info, &s)) < 0)
        return rc;
    rc = fy_migrate_source(r, s, sp, &st);
    fy_session_close(s);
    sum->rounds += st.rounds;
    sum->region_bytes += st.region_bytes;
    sum->pages_sent += st.pages_sent;
    sum->pages_zero += st.pages_zero;
    sum->pages_dup += st.pages_dup;
    sum->pages_resent += st.pages_resent;
    sum->wire_bytes += st.wire_bytes;
    sum->seconds += st.seconds;
    sum->downtime += st.downtime;
    sum->verify_seconds += st.verify_seconds;
    sum->converged = first ? st.converged : sum->converged && st.converged;
    sum->verified = first ? st.verified : sum->verified && st.verified;
    sum->digest = st.digest;
    return rc;
}

static int send_memory(struct fy_host *h, const struct fy_host_data *w,
                       const struct fy_host_endpoint *to,
                       const struct fy_host_send_params *p, struct fy_host_send_result *out)
{
    struct send_ctx c = {.h = h, .vm = w->vm, .region = w->region, .p = p};
    struct fy_source_params sp = {
        .downtime_ms = p->downtime_ms,
        .max_rounds = p->max_rounds,
        .dirty_sync = p->dirty_log ? send_sync : NULL,
        .pause = p->pause ? send_pause : NULL,
        .on_round = p->on_round ? send_round : NULL,
        .ctx = &c,
        .cancel = p->cancel,
    };
    struct fy_memory_layout ml;
    const struct fy_memory_region *mr;
    struct fy_region *r = NULL;
    int rc;

    if (p->dirty_log && !DRV(h)->dirty_log_sync)
        return missing(h, "dirty_log_sync");
    if ((rc = layout(h, w->vm, &ml)) < 0)
        return rc;
    if (w->region >= ml.n)
        return fy_error(FY_E_PROTO, "VM %s on host %s has no memory region %u", w->vm,
                        h->name, w->region);
    mr = &ml.regions[w->region];
    rc = mr->fd >= 0 ? fy_region_open_fd(mr->fd, mr->offset, mr->size, FY_REGION_READ, &r)
                     : fy_region_open_pid(mr->pid, mr->addr, mr->size, FY_REGION_READ, &r);
    if (rc == 0)
        rc = send_region(r, to, p, &sp, &out->st, true);
    fy_region_close(r);
    out->paused = c.paused;
    return rc;
}

/* The whole pages as a file region, then the last partial page (a file's
 * size need not be a page multiple) as a page of its own. */
static int send_file(const struct fy_host_data *w, const struct fy_host_endpoint *to,
                     const struct fy_host_send_params *p, struct fy_host_send_result *out)
{
    struct fy_source_params sp = {.cancel = p->cancel};
    uint64_t whole = w->size & ~(uint64_t)(FY_PAGE_SIZE - 1);
    size_t n = (size_t)(w->size - whole);
    struct fy_region *r = NULL;
    int rc = 0, fd = -1;

    if (whole) {
        if ((rc = fy_region_open_file(w->path, 0, whole, FY_REGION_READ, &r)) < 0)
            return rc;
        rc = send_region(r, to, p, &sp, &out->st, true);
        fy_region_close(r);
        r = NULL;
        if (rc < 0)
            return rc;
    }
    if (!n)
        return 0;
    if ((rc = fy_region_create_memfd("ferry-file-tail", FY_PAGE_SIZE, &r)) < 0)
        return rc;
    if ((fd = open(w->path, O_RDONLY | O_CLOEXEC)) < 0) {
        rc = fy_error_sys("cannot open %s", w->path);
        goto out;
    }
    if (pread(fd, fy_region_base(r), n, (off_t)whole) != (ssize_t)n) {
        rc = fy_error_sys("cannot read the end of %s", w->path);
        goto out;
    }
    rc = send_region(r, to, p, &sp, &out->st, whole == 0);
out:
    if (fd >= 0)
        close(fd);
    fy_region_close(r);
    return rc;
}

static int local_send(struct fy_host *h, const struct fy_host_data *what,
                      const struct fy_host_endpoint *to,
                      const struct fy_host_send_params *params,
                      struct fy_host_send_result *out)
{
    if (!what || !to || !params || !out)
        return fy_error(FY_E_INVAL, "send: missing argument");
    memset(out, 0, sizeof(*out));
    if (what->kind == FY_HOST_DATA_MEMORY)
        return send_memory(h, what, to, params, out);
    if (what->kind == FY_HOST_DATA_FILE)
        return send_file(what, to, params, out);
    return fy_error(FY_E_INVAL, "host %s: unknown kind of transfer %d", h->name,
                    (int)what->kind);
}

/* ---- the table ------------------------------------------------------------ */

const struct fy_host_ops fy_host_local_ops = {
    .name = "local",
    .host_info = local_host_info,
    .vm_info = local_vm_info,
    .capabilities = local_capabilities,
    .memory_info = local_memory_info,
    .vm_export = local_vm_export,
    .vm_define = local_vm_define,
    .vm_undefine = local_vm_undefine,
    .vm_start = local_vm_start,
    .vm_stop = local_vm_stop,
    .vm_pause = local_vm_pause,
    .vm_resume = local_vm_resume,
    .incoming_prepare = local_incoming_prepare,
    .vm_suspend = local_vm_suspend,
    .vm_restore = local_vm_restore,
    .dirty_log_start = local_dirty_log_start,
    .dirty_log_stop = local_dirty_log_stop,
    .device_state_save = local_device_state_save,
    .device_state_load = local_device_state_load,
    .file_create = local_file_create,
    .file_remove = local_file_remove,
    .file_stat = local_file_stat,
    .recv_start = local_recv_start,
    .recv_join = local_recv_join,
    .recv_abort = local_recv_abort,
    .send = local_send,
};

void fy_host_local_init(struct fy_host *h, const char *name, struct fy_driver_handle *drv)
{
    memset(h, 0, sizeof(*h));
    snprintf(h->name, sizeof(h->name), "%s", name ? name : "");
    h->ops = &fy_host_local_ops;
    h->impl = drv;
}
