/* The migration workflow: the action queue, and the actions of live, cold
 * and quick migration (see workflow.h and docs/workflow.md).
 *
 * Reading order: the generic engine; the migration's context; "host calls",
 * the only code that talks to a host (its driver, its files, its end of
 * the dataplane), so it can move behind ferryd's RPC; the dataplane
 * transfers; the actions; the plan of each kind; fy_migrate(). */
#include "controlplane/workflow.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "controlplane/prechecks.h"
#include "ferry/engine.h"
#include "ferry/error.h"
#include "ferry/region.h"
#include "ferry/transport.h"

#define ERR_MAX 1024

/* ---- the generic engine ------------------------------------------------ */

void fy_workflow_init(struct fy_workflow *wf, void *ctx)
{
    memset(wf, 0, sizeof(*wf));
    wf->ctx = ctx;
    wf->failed = -1;
}

int fy_workflow_append(struct fy_workflow *wf, const struct fy_action *a)
{
    if (!wf || !a || !a->name || !a->run)
        return fy_error(FY_E_INVAL, "fy_workflow_append: incomplete action");
    if (wf->n == FY_WORKFLOW_MAX)
        return fy_error(FY_E_TOOBIG, "workflow queue full (%d actions) appending %s",
                        FY_WORKFLOW_MAX, a->name);
    wf->queue[wf->n++] = a;
    return 0;
}

void fy_workflow_commit(struct fy_workflow *wf)
{
    wf->committed = true;
}

int fy_workflow_run(struct fy_workflow *wf)
{
    char first[ERR_MAX] = "";
    int first_rc = 0;

    if (!wf)
        return fy_error(FY_E_INVAL, "fy_workflow_run: no workflow");
    /* wf->n grows while this runs: actions append. */
    while (wf->next < wf->n) {
        unsigned i = wf->next++;
        const struct fy_action *a = wf->queue[i];
        int rc = wf->before ? wf->before(wf, a, wf->ctx) : 0;

        if (rc == 0)
            rc = a->run(wf, wf->ctx);
        if (rc < 0 && first_rc == 0)
            snprintf(first, sizeof(first), "%s", fy_error_detail());
        if (wf->after)
            wf->after(wf, a, rc, wf->ctx);
        if (rc >= 0)
            continue;
        if (first_rc == 0) {
            first_rc = rc;
            wf->failed = (int)i;
        }
        if (wf->committed)
            continue; /* roll forward */
        /* Roll back: the failed action may have done part of its step. */
        for (int k = (int)i; k >= 0; k--) {
            const struct fy_action *u = wf->queue[k];
            if (!u->undo)
                continue;
            u->undo(wf, wf->ctx);
            if (wf->after)
                wf->after(wf, u, 1, wf->ctx);
        }
        wf->rolled_back = true;
        break;
    }
    if (first_rc < 0)
        return fy_error(-first_rc, "%s", first);
    return 0;
}

/* ---- the migration's context ------------------------------------------ */

/* One end of a dataplane transfer, run by the receiving host: a listener
 * and a thread that accepts one session per region, in order, and fills
 * the region. */
struct recv_job {
    struct fy_listener *l;
    struct fy_region *regions[FY_MAX_REGIONS];
    unsigned n;
    bool fresh;
    int idle_ms;
    pthread_t tid;
    bool running;
    int rc;
    char detail[ERR_MAX];
    struct fy_migration_stats st;
};

struct mig {
    const struct fy_migration_request *req;
    struct fy_host *src, *dst;
    struct fy_store *store;
    int64_t id;
    struct fy_workflow wf;
    enum fy_event_side side; /* of the action running, for its failure */

    struct fy_host_info src_info, dst_info;
    struct fy_vm_info vm;
    bool was_running;
    char *config;     /* the source VM's export */
    char *dst_config; /* live with moving disks: paths rewritten */

    /* Storage at the target. */
    const struct fy_datastore *dst_ds;
    bool move_disks;
    char disk_paths[FY_MAX_DISKS][FY_PATH_MAX];
    char created[FY_MAX_DISKS * 6][FY_PATH_MAX]; /* files made at the target */
    unsigned ncreated;

    /* Networks: the address each end uses for hot and cold data. */
    char hot_src[FY_NAME_MAX], hot_dst[FY_NAME_MAX], hot_role[16];
    char cold_src[FY_NAME_MAX], cold_dst[FY_NAME_MAX], cold_role[16];

    /* What has been done, for undo. */
    bool dirty_logging, placeholder, src_paused, src_stopped, src_unregistered,
        src_suspended, dst_defined, dst_running, no_cancel;
    char image[FY_PATH_MAX], dst_image[FY_PATH_MAX]; /* quick: saved state */

    /* Live: memory. */
    struct fy_memory_layout src_layout;
    struct recv_job mem_job;
    struct timespec t_pause, t_start;
    struct fy_migration_record stats;
};

static double since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Records an event.  A store that cannot write does not stop a migration;
 * the error detail of the failure being reported is kept. */
__attribute__((format(printf, 4, 5)))
static void ev(struct mig *m, enum fy_event_category cat, enum fy_event_side side,
               const char *fmt, ...)
{
    char text[FY_EVENT_TEXT_MAX], keep[ERR_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    snprintf(keep, sizeof(keep), "%s", fy_error_detail());
    if (fy_store_event_add(m->store, m->id, cat, side, text, NULL) < 0) {
        fprintf(stderr, "ferry: migration %lld: event not recorded (%s): %s\n",
                (long long)m->id, fy_error_detail(), text);
        if (keep[0])
            fy_error(FY_E_IO, "%s", keep);
    }
}

/* ---- host calls --------------------------------------------------------- */

/* Every call on a host's driver goes through drv(): a local instance now,
 * an RPC to the host's ferryd later. */
#define DRV(h) ((h)->drv.ops)
#define INST(h) ((h)->drv.d)

static int host_info(struct fy_host *h, struct fy_host_info *out)
{
    return DRV(h)->host_info(INST(h), out);
}

static int host_vm_info(struct fy_host *h, const char *vm, struct fy_vm_info *out)
{
    return DRV(h)->vm_info(INST(h), vm, out);
}

static int host_vm_export(struct fy_host *h, const char *vm, char **out)
{
    return DRV(h)->vm_export(INST(h), vm, out);
}

static int host_vm_define(struct fy_host *h, const char *config, const char *name,
                          const char *const *paths, unsigned n)
{
    return DRV(h)->vm_define(INST(h), config, name, paths, n);
}

static int host_vm_undefine(struct fy_host *h, const char *vm)
{
    return DRV(h)->vm_undefine(INST(h), vm);
}

static int host_vm_start(struct fy_host *h, const char *vm)
{
    return DRV(h)->vm_start(INST(h), vm);
}

static int host_vm_stop(struct fy_host *h, const char *vm, bool force)
{
    return DRV(h)->vm_stop(INST(h), vm, force);
}

static int host_vm_pause(struct fy_host *h, const char *vm)
{
    return DRV(h)->vm_pause(INST(h), vm);
}

static int host_vm_resume(struct fy_host *h, const char *vm)
{
    return DRV(h)->vm_resume(INST(h), vm);
}

static int host_incoming_prepare(struct fy_host *h, const char *config, const char *vm)
{
    return DRV(h)->incoming_prepare(INST(h), config, vm);
}

static int host_memory_layout(struct fy_host *h, const char *vm,
                              struct fy_memory_layout *out)
{
    return DRV(h)->memory_layout(INST(h), vm, out);
}

static bool host_can(struct fy_host *h, uint32_t cap)
{
    return (DRV(h)->caps & cap) == cap;
}

static int host_dirty_log_start(struct fy_host *h, const char *vm)
{
    return DRV(h)->dirty_log_start(INST(h), vm);
}

static int host_dirty_log_stop(struct fy_host *h, const char *vm)
{
    return DRV(h)->dirty_log_stop(INST(h), vm);
}

static int host_device_state_save(struct fy_host *h, const char *vm, void **out,
                                  size_t *len)
{
    return DRV(h)->device_state_save(INST(h), vm, out, len);
}

static int host_device_state_load(struct fy_host *h, const char *vm,
                                  const void *state, size_t len)
{
    return DRV(h)->device_state_load(INST(h), vm, state, len);
}

static int host_vm_suspend(struct fy_host *h, const char *vm, const char *image)
{
    return DRV(h)->vm_suspend(INST(h), vm, image);
}

static int host_vm_restore(struct fy_host *h, const char *vm, const char *image)
{
    return DRV(h)->vm_restore(INST(h), vm, image);
}

/* Files on a host: made empty (refusing one that exists), and removed. */
static int host_file_create(struct fy_host *h, const char *path)
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

static void host_file_remove(struct fy_host *h, const char *path)
{
    (void)h;
    unlink(path);
}

static bool host_file_exists(struct fy_host *h, const char *path, uint64_t *size)
{
    struct stat st;
    (void)h;
    if (stat(path, &st) != 0)
        return false;
    if (size)
        *size = (uint64_t)st.st_size;
    return true;
}

/* Remembers a file this migration created at the target, for undo. */
static int add_created(struct mig *m, const char *path)
{
    size_t len = strlen(path);

    if (m->ncreated == sizeof(m->created) / sizeof(m->created[0]) || len >= FY_PATH_MAX)
        return fy_error(FY_E_TOOBIG, "too many or too long target files for VM %s (%s)",
                        m->req->vm, path);
    memcpy(m->created[m->ncreated++], path, len + 1);
    return 0;
}

/* The receiving end of a transfer: accepts one session per region. */
static void *recv_main(void *arg)
{
    struct recv_job *j = arg;

    j->rc = 0;
    for (unsigned i = 0; i < j->n && j->rc == 0; i++) {
        struct fy_accept_params ap = {.region_size = fy_region_size(j->regions[i]),
                                      .receiver_checks_pages = true};
        struct fy_target_params tp = {.fresh = j->fresh, .idle_timeout_ms = j->idle_ms};
        struct fy_migration_stats st = {0};
        struct fy_session *s = NULL;

        j->rc = j->l->ops->accept(j->l, &ap, &s);
        if (j->rc == 0)
            j->rc = fy_migrate_target(j->regions[i], s, &tp, &st);
        fy_session_close(s);
        j->st.wire_bytes += st.wire_bytes;
        j->st.verified = i == 0 ? st.verified : j->st.verified && st.verified;
    }
    if (j->rc < 0)
        snprintf(j->detail, sizeof(j->detail), "%s", fy_error_detail());
    return NULL;
}

/* Starts receiving into j->regions on host 'h' at 'addr' (port 0). */
static int host_recv_start(struct fy_host *h, const char *addr, int timeout_ms,
                           struct recv_job *j)
{
    struct fy_transport_opts o = {.timeout_ms = timeout_ms};
    char listen_at[FY_NAME_MAX + 8];
    int rc;

    snprintf(listen_at, sizeof(listen_at), strchr(addr, ':') ? "[%s]:0" : "%s:0", addr);
    if ((rc = fy_transport_tcp.listen(listen_at, &o, &j->l)) < 0)
        return fy_error(-rc, "host %s cannot listen for migration data on %s: %s",
                        h->name, listen_at, fy_error_detail());
    j->idle_ms = timeout_ms;
    if (pthread_create(&j->tid, NULL, recv_main, j) != 0) {
        fy_transport_tcp.listener_close(j->l);
        j->l = NULL;
        return fy_error(FY_E_SYS, "cannot start the receiving thread on host %s", h->name);
    }
    j->running = true;
    return 0;
}

/* Waits for the receiving end; returns its result. */
static int host_recv_join(struct fy_host *h, struct recv_job *j)
{
    if (j->running) {
        pthread_join(j->tid, NULL);
        j->running = false;
    }
    if (j->l) {
        j->l->ops->listener_close(j->l);
        j->l = NULL;
    }
    if (j->rc < 0)
        return fy_error(-j->rc, "host %s receiving: %s", h->name, j->detail);
    return 0;
}

/* Ends a receiving end that may still wait for a session: a connection
 * that closes before its handshake makes accept() give up. */
static void host_recv_abort(struct fy_host *h, struct recv_job *j)
{
    if (j->running && j->l) {
        char host[80], port[16];
        const char *a = j->l->addr, *colon = strrchr(a, ':');
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
        size_t hl = colon ? (size_t)(colon - a) : 0;

        if (colon && hl < sizeof(host)) {
            memcpy(host, a[0] == '[' ? a + 1 : a, a[0] == '[' ? hl - 2 : hl);
            host[a[0] == '[' ? hl - 2 : hl] = '\0';
            snprintf(port, sizeof(port), "%s", colon + 1);
            if (getaddrinfo(host, port, &hints, &ai) == 0) {
                int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd >= 0) {
                    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0)
                        (void)0; /* accept() then times out instead */
                    close(fd);
                }
                freeaddrinfo(ai);
            }
        }
    }
    int keep = j->rc;
    host_recv_join(h, j);
    j->rc = keep;
    for (unsigned i = 0; i < j->n; i++) {
        fy_region_close(j->regions[i]);
        j->regions[i] = NULL;
    }
    j->n = 0;
}

/* ---- dataplane transfers -------------------------------------------------- */

/* Sends region 'r' to the listener at 'to', from local address 'from'. */
static int send_region(struct mig *m, struct fy_region *r, const char *to,
                       const char *from, const struct fy_source_params *sp,
                       struct fy_migration_stats *st)
{
    char bind_at[FY_NAME_MAX + 8];
    struct fy_transport_opts o = {
        .streams = m->req->streams ? m->req->streams : 2,
        .timeout_ms = m->req->timeout_ms ? m->req->timeout_ms : 30000,
    };
    struct fy_session_info info = {.region_size = fy_region_size(r),
                                   .page_size = FY_PAGE_SIZE, .caps = FY_CAPS_V1};
    struct fy_session *s = NULL;
    int rc;

    if (from && from[0]) {
        snprintf(bind_at, sizeof(bind_at), strchr(from, ':') ? "[%s]:0" : "%s:0", from);
        o.bind = bind_at;
    }
    if ((rc = fy_transport_tcp.connect(to, &o, &info, &s)) < 0)
        return rc;
    rc = fy_migrate_source(r, s, sp, st);
    fy_session_close(s);
    return rc;
}

static void add_stats(struct mig *m, const struct fy_migration_stats *st)
{
    m->stats.wire_bytes += st->wire_bytes;
    m->stats.pages_sent += st->pages_sent;
    m->stats.pages_zero += st->pages_zero;
    m->stats.pages_dup += st->pages_dup;
}

/* Copies file 'from' on the source to 'to' on the target (which this
 * migration created, empty) through the dataplane over the network whose
 * addresses are given.  The whole pages go as a file region; the last
 * partial page (a file's size need not be a page multiple) goes over the
 * control connection. */
static int copy_file(struct mig *m, const char *from, const char *to,
                     const char *src_addr, const char *dst_addr)
{
    struct recv_job j = {.fresh = true};
    struct fy_region *r = NULL;
    struct fy_migration_stats st = {0};
    struct fy_source_params sp = {.cancel = m->no_cancel ? NULL : (volatile int *)&m->req->cancel};
    uint64_t size = 0, whole;
    int timeout = m->req->timeout_ms ? m->req->timeout_ms : 30000;
    int rc = 0, in = -1, out = -1;

    if (!host_file_exists(m->src, from, &size))
        return fy_error_sys("cannot read %s on host %s", from, m->src->name);
    whole = size & ~(uint64_t)(FY_PAGE_SIZE - 1);
    if (whole) {
        if ((rc = fy_region_open_file(from, 0, whole, FY_REGION_READ, &r)) < 0)
            goto out;
        if ((rc = fy_region_open_file(to, 0, whole, FY_REGION_WRITE, &j.regions[0])) < 0)
            goto out;
        j.n = 1;
        if ((rc = host_recv_start(m->dst, dst_addr, timeout, &j)) < 0)
            goto out;
        rc = send_region(m, r, j.l->addr, src_addr, &sp, &st);
        if (rc < 0) {
            host_recv_abort(m->dst, &j);
            goto out;
        }
        if ((rc = host_recv_join(m->dst, &j)) < 0)
            goto out;
        add_stats(m, &st);
    }
    if (size > whole) {
        char tail[FY_PAGE_SIZE];
        size_t n = (size_t)(size - whole);
        if ((in = open(from, O_RDONLY | O_CLOEXEC)) < 0 ||
            (out = open(to, O_WRONLY | O_CLOEXEC)) < 0) {
            rc = fy_error_sys("cannot open %s or %s", from, to);
            goto out;
        }
        if (pread(in, tail, n, (off_t)whole) != (ssize_t)n ||
            pwrite(out, tail, n, (off_t)whole) != (ssize_t)n) {
            rc = fy_error_sys("cannot copy the end of %s to %s", from, to);
            goto out;
        }
    }
    if (truncate(to, (off_t)size) != 0)
        rc = fy_error_sys("cannot size %s", to);
out:
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    if (j.running || j.l)
        host_recv_abort(m->dst, &j);
    fy_region_close(j.regions[0]);
    fy_region_close(r);
    return rc;
}

/* ---- the actions ---------------------------------------------------------- */

#define M(ctx) ((struct mig *)(ctx))
#define T FY_EV_TRANSFER
#define S FY_EV_SWITCHOVER
#define C FY_EV_CLEANUP
#define SRC FY_SIDE_SOURCE
#define DST FY_SIDE_TARGET

static const char *vmname(const struct mig *m)
{
    return m->req->vm;
}

static const char *net_addr(struct fy_host *h, const struct fy_host_info *info,
                            enum fy_net_role r)
{
    return h->net[r][0] ? h->net[r] : info->net[r];
}

static const struct fy_datastore *host_datastore(const struct fy_host_info *h,
                                                 const char *name)
{
    for (unsigned i = 0; i < h->ndatastores && i < FY_MAX_DATASTORES; i++)
        if (strcmp(h->datastores[i].name, name) == 0)
            return &h->datastores[i];
    return NULL;
}

/* The target datastore: the one asked for; else the disks' own when the
 * target shares it; else the target's first. */
static int choose_datastore(struct mig *m)
{
    const struct fy_host_info *d = &m->dst_info;

    if (m->dst->datastore[0]) {
        if (!(m->dst_ds = host_datastore(d, m->dst->datastore)))
            return fy_error(FY_E_NOTFOUND, "target host %s has no datastore '%s': "
                            "choose one of its datastores", m->dst->name,
                            m->dst->datastore);
    } else if (m->vm.ndisks) {
        m->dst_ds = host_datastore(d, m->vm.disks[0].datastore);
        if (m->dst_ds && !m->dst_ds->shared)
            m->dst_ds = NULL;
    }
    if (!m->dst_ds) {
        if (d->ndatastores == 0)
            return fy_error(FY_E_NOTFOUND, "target host %s has no datastore",
                            m->dst->name);
        m->dst_ds = &d->datastores[0];
    }
    m->move_disks = false;
    for (unsigned i = 0; i < m->vm.ndisks; i++)
        if (!m->dst_ds->shared || strcmp(m->vm.disks[i].datastore, m->dst_ds->name) != 0)
            m->move_disks = true;
    return 0;
}

static int a_invoke_prechecks(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    struct fy_precheck_report rep;
    char keep[ERR_MAX];
    int rc;

    (void)wf;
    m->side = SRC;
    ev(m, T, SRC, "Collecting source details");
    if ((rc = host_info(m->src, &m->src_info)) < 0 ||
        (rc = host_vm_info(m->src, vmname(m), &m->vm)) < 0)
        return rc;
    m->was_running = m->vm.power == FY_POWER_RUNNING;
    m->side = DST;
    ev(m, T, DST, "Collecting target details");
    if ((rc = host_info(m->dst, &m->dst_info)) < 0)
        return rc;
    if ((rc = choose_datastore(m)) < 0)
        return rc;
    rc = fy_prechecks_run(m->req->kind, &m->vm, &m->src_info, &m->dst_info,
                          m->move_disks ? m->dst_ds->name : NULL, &rep);
    snprintf(keep, sizeof(keep), "%s", fy_error_detail());
    m->side = SRC;
    for (unsigned i = 0; i < rep.n; i++)
        ev(m, T, SRC, "Precheck %s (%s): %s",
           rep.findings[i].level == FY_PRECHECK_REFUSE ? "refused" : "warning",
           rep.findings[i].code, rep.findings[i].message);
    if (rc < 0)
        return fy_error(-rc, "%s", keep);
    return 0;
}

static int a_select_destination(struct fy_workflow *wf, void *ctx);

static int a_check_permission(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);

    (void)wf;
    m->side = DST;
    ev(m, T, DST, "Validating target details");
    if (strcmp(m->src_info.name, m->dst_info.name) == 0 && m->src_info.name[0])
        return fy_error(FY_E_INVAL, "source and target are the same host %s: "
                        "choose another target", m->dst_info.name);
    if (m->dst_info.maintenance)
        return fy_error(FY_E_PRECHECK, "target host %s is in maintenance mode: "
                        "choose another host or end its maintenance", m->dst->name);
    return 0;
}

static int a_check_compatibility(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    static const uint32_t need[] = {
        [FY_MIG_LIVE] = FY_DRV_LIVE, [FY_MIG_COLD] = FY_DRV_COLD,
        [FY_MIG_QUICK] = FY_DRV_QUICK,
    };
    uint32_t caps = need[m->req->kind];

    (void)wf;
    m->side = DST;
    if (strcmp(DRV(m->src)->name, DRV(m->dst)->name) != 0)
        return fy_error(FY_E_PRECHECK, "host %s uses driver %s, host %s uses %s: a VM "
                        "moves only between hosts of one driver", m->src->name,
                        DRV(m->src)->name, m->dst->name, DRV(m->dst)->name);
    if (!host_can(m->src, caps) || !host_can(m->dst, caps))
        return fy_error(FY_E_UNSUPPORTED, "driver %s cannot do %s migration",
                        DRV(m->src)->name, fy_migration_kind_name(m->req->kind));
    return 0;
}

/* Creates the (empty) target files of the disks, so a name taken at the
 * target is found before anything moves. */
static int a_reserve_directory(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    int rc;

    (void)wf;
    m->side = DST;
    ev(m, T, DST, "Reserving storage for disks on datastore %s", m->dst_ds->name);
    for (unsigned i = 0; i < m->vm.ndisks; i++) {
        if ((rc = host_file_create(m->dst, m->disk_paths[i])) < 0 ||
            (rc = add_created(m, m->disk_paths[i])) < 0)
            return rc;
    }
    return 0;
}

static void u_reserve_directory(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);

    (void)wf;
    if (!m->ncreated)
        return;
    ev(m, C, DST, "Removing %u file(s) created on target datastore %s", m->ncreated,
       m->dst_ds->name);
    while (m->ncreated)
        host_file_remove(m->dst, m->created[--m->ncreated]);
}

static int a_noop(struct fy_workflow *wf, void *ctx)
{
    (void)wf;
    (void)ctx;
    return 0;
}

static int a_compute_spec(struct fy_workflow *wf, void *ctx);

static int a_invoke_callbacks(struct fy_workflow *wf, void *ctx)
{
    /* Pre-migration hooks: none are registered yet. */
    return a_noop(wf, ctx);
}

/* -- live -- */

/* Copies the base images (cold data) of every disk to the target. */
static int copy_backing(struct mig *m)
{
    int rc;

    for (unsigned i = 0; i < m->vm.ndisks; i++) {
        const struct fy_disk *d = &m->vm.disks[i];
        for (unsigned b = 0; b < d->nbacking && b < 4; b++) {
            char from[FY_PATH_MAX], to[FY_PATH_MAX + FY_PATH_MAX];
            const char *base = strrchr(d->backing[b], '/');
            const char *slash = strrchr(d->path, '/');
            uint64_t have = 0, want = 0;

            if (d->backing[b][0] == '/' || !slash)
                snprintf(from, sizeof(from), "%s", d->backing[b]);
            else
                snprintf(from, sizeof(from), "%.*s/%s", (int)(slash - d->path),
                         d->path, d->backing[b]);
            snprintf(to, sizeof(to), "%s/%s", m->dst_ds->path, base ? base + 1 : d->backing[b]);
            /* A base image the target already holds stays (base images
             * do not change; several VMs share them). */
            if (host_file_exists(m->dst, to, &have) &&
                host_file_exists(m->src, from, &want) && have == want)
                continue;
            if ((rc = host_file_create(m->dst, to)) < 0 || (rc = add_created(m, to)) < 0)
                return rc;
            ev(m, T, SRC, "Copying base image %s to %s over %s %s", from, to,
               m->cold_role, m->cold_dst);
            if ((rc = copy_file(m, from, to, m->cold_src, m->cold_dst)) < 0)
                return rc;
        }
    }
    return 0;
}

static void note_net(struct mig *m, enum fy_data_class c, const char *role,
                     const char *addr)
{
    char buf[FY_STORE_NET_MAX];
    snprintf(buf, sizeof(buf), "%s %s", role, addr);
    fy_store_migration_set_net(m->store, m->id, c, buf);
}

static int a_create_dummy_disks(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    int rc;

    (void)wf;
    m->side = DST;
    ev(m, T, DST, "Creating disks on target datastore %s", m->dst_ds->name);
    if ((rc = copy_backing(m)) < 0)
        return rc;
    note_net(m, FY_DATA_DISKS_COLD, m->cold_role, m->cold_dst);
    return 0;
}

/* Undo for the files: the reservation's undo removes every created file. */

/* Makes the configuration the target VM will have: the source's with the
 * disks at their target paths, by defining it there, exporting it and
 * removing it again (the configuration is the driver's own format). */
static int a_create_destination_vm_hot(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    const char *paths[FY_MAX_DISKS];
    int rc, rc2;

    (void)wf;
    m->side = DST;
    ev(m, T, DST, "Preparing target side for migration");
    for (unsigned i = 0; i < m->vm.ndisks; i++)
        paths[i] = m->disk_paths[i];
    if ((rc = host_vm_define(m->dst, m->config, NULL, paths, m->vm.ndisks)) < 0)
        return rc;
    rc = host_vm_export(m->dst, vmname(m), &m->dst_config);
    if ((rc2 = host_vm_undefine(m->dst, vmname(m))) < 0 && rc == 0)
        rc = rc2;
    return rc;
}

static int a_prepare_source(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    int rc;

    (void)wf;
    m->side = SRC;
    ev(m, T, SRC, "Preparing source side for migration");
    if (host_can(m->src, FY_DRV_DIRTY_LOG)) {
        if ((rc = host_dirty_log_start(m->src, vmname(m))) < 0)
            return rc;
        m->dirty_logging = true;
    }
    return 0;
}

static void u_prepare_source(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);

    (void)wf;
    if (m->dirty_logging) {
        host_dirty_log_stop(m->src, vmname(m));
        m->dirty_logging = false;
        ev(m, C, SRC, "Stopped dirty page logging on source side");
    }
}

static int a_prepare_destination(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    int rc;

    (void)wf;
    m->side = DST;
    ev(m, T, DST, "Creating placeholder VM at target side");
    if ((rc = host_incoming_prepare(m->dst, m->dst_config ? m->dst_config : m->config,
                                    vmname(m))) < 0)
        return rc;
    m->placeholder = true;
    return 0;
}

static void u_prepare_destination(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);

    (void)wf;
    if (!m->placeholder)
        return;
    ev(m, C, DST, "Removing placeholder VM at target side");
    host_vm_stop(m->dst, vmname(m), true);
    if (host_vm_undefine(m->dst, vmname(m)) < 0)
        ev(m, C, DST, "Could not remove placeholder VM %s at target side: %s",
           vmname(m), fy_error_detail());
    m->placeholder = false;
}

static int a_initiate_destination(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    struct fy_memory_layout dl;
    int rc;

    (void)wf;
    m->side = DST;
    ev(m, T, DST, "Starting relocate task on target side");
    if ((rc = host_memory_layout(m->dst, vmname(m), &dl)) < 0)
        return rc;
    if (dl.n != m->src_layout.n)
        return fy_error(FY_E_PROTO, "placeholder VM %s at target has %u memory regions, "
                        "the source has %u", vmname(m), dl.n, m->src_layout.n);
    for (unsigned i = 0; i < dl.n; i++) {
        const struct fy_memory_region *r = &dl.regions[i];
        if (r->size != m->src_layout.regions[i].size)
            return fy_error(FY_E_PROTO, "memory region %s of VM %s has %llu bytes at "
                            "target, %llu at source", r->name, vmname(m),
                            (unsigned long long)r->size,
                            (unsigned long long)m->src_layout.regions[i].size);
        rc = r->fd >= 0 ? fy_region_open_fd(r->fd, r->offset, r->size, FY_REGION_RDWR,
                                            &m->mem_job.regions[i])
                        : fy_region_open_pid(r->pid, r->addr, r->size, FY_REGION_RDWR,
                                             &m->mem_job.regions[i]);
        if (rc < 0)
            return rc;
        m->mem_job.n = i + 1;
    }
    return host_recv_start(m->dst, m->hot_dst,
                           m->req->timeout_ms ? m->req->timeout_ms : 30000, &m->mem_job);
}

static void u_initiate_destination(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);

    (void)wf;
    if (m->mem_job.n || m->mem_job.running)
        ev(m, C, DST, "Clearing up switchover target side");
    host_recv_abort(m->dst, &m->mem_job);
}

static int sync_cb(void *ctx, uint64_t *bitmap, uint64_t npages)
{
    struct mig *m = ctx;
    return DRV(m->src)->dirty_log_sync(INST(m->src), vmname(m), 0, bitmap, npages);
}

static int pause_cb(void *ctx)
{
    struct mig *m = ctx;
    int rc = host_vm_pause(m->src, vmname(m));
    if (rc == 0) {
        m->src_paused = true;
        clock_gettime(CLOCK_MONOTONIC, &m->t_pause);
    }
    return rc;
}

static int a_initiate_source(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    struct fy_migration_stats total = {0};
    int rc;

    (void)wf;
    m->side = SRC;
    ev(m, T, SRC, "Starting relocate task on source side");
    note_net(m, FY_DATA_MEMORY, m->hot_role, m->hot_dst);
    for (unsigned i = 0; i < m->src_layout.n; i++) {
        const struct fy_memory_region *mr = &m->src_layout.regions[i];
        struct fy_region *r = NULL;
        struct fy_migration_stats st = {0};
        /* Region 0 is pre-copied and pauses the VM; the others follow,
         * paused, in one round each. */
        struct fy_source_params sp = {
            .downtime_ms = m->req->downtime_ms,
            .max_rounds = m->req->max_rounds,
            .dirty_sync = i == 0 && m->dirty_logging ? sync_cb : NULL,
            .pause = i == 0 ? pause_cb : NULL,
            .ctx = m,
            .cancel = (volatile int *)&m->req->cancel,
        };
        rc = mr->fd >= 0 ? fy_region_open_fd(mr->fd, mr->offset, mr->size, FY_REGION_READ, &r)
                         : fy_region_open_pid(mr->pid, mr->addr, mr->size, FY_REGION_READ, &r);
        if (rc == 0)
            rc = send_region(m, r, m->mem_job.l->addr, m->hot_src, &sp, &st);
        fy_region_close(r);
        if (rc < 0)
            return rc;
        add_stats(m, &st);
        total.rounds += st.rounds;
        total.verified = i == 0 ? st.verified : total.verified && st.verified;
    }
    if ((rc = host_recv_join(m->dst, &m->mem_job)) < 0)
        return rc;
    m->stats.verified = total.verified && m->mem_job.st.verified;
    ev(m, T, SRC, "Memory transferred in %u rounds over %s %s: %llu pages sent, %llu zero, "
       "%llu duplicate, %llu bytes on the wire%s",
       total.rounds, m->hot_role, m->hot_dst, (unsigned long long)m->stats.pages_sent,
       (unsigned long long)m->stats.pages_zero, (unsigned long long)m->stats.pages_dup,
       (unsigned long long)m->stats.wire_bytes, m->stats.verified ? ", verified" : "");
    /* The active disk images are hot data: without a disk dirty log yet,
     * they move while the VM is paused. */
    if (m->move_disks) {
        note_net(m, FY_DATA_DISKS_HOT, m->hot_role, m->hot_dst);
        for (unsigned i = 0; i < m->vm.ndisks; i++) {
            ev(m, T, SRC, "Copying disk %s to %s over %s %s", m->vm.disks[i].name,
               m->disk_paths[i], m->hot_role, m->hot_dst);
            if ((rc = copy_file(m, m->vm.disks[i].path, m->disk_paths[i], m->hot_src,
                                m->hot_dst)) < 0)
                return rc;
        }
    }
    ev(m, T, SRC, "Relocate task finished on source side");
    return 0;
}

static void u_initiate_source(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);

    (void)wf;
    host_recv_abort(m->dst, &m->mem_job);
    if (m->src_paused) {
        if (host_vm_resume(m->src, vmname(m)) < 0)
            ev(m, C, SRC, "Could not resume source VM %s: %s", vmname(m), fy_error_detail());
        else
            ev(m, C, SRC, "Source VM %s resumed", vmname(m));
        m->src_paused = false;
    }
}

static int a_switch_live(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    void *state = NULL;
    size_t len = 0;
    int rc = 0;

    m->no_cancel = true;
    m->side = DST;
    ev(m, S, SRC, "Switchover started");
    if (!m->src_paused) {
        /* The engine pauses the VM before the final round; a driver without
         * a writer to pause still stops here. */
        if ((rc = pause_cb(m)) < 0)
            return rc;
    }
    if (host_can(m->src, FY_DRV_DEVICE_STATE)) {
        note_net(m, FY_DATA_DEVICE_STATE, m->hot_role, m->hot_dst);
        if ((rc = host_device_state_save(m->src, vmname(m), &state, &len)) < 0)
            return rc;
        rc = host_device_state_load(m->dst, vmname(m), state, len);
        free(state);
        if (rc < 0)
            return rc;
    }
    if ((rc = host_vm_resume(m->dst, vmname(m))) < 0)
        return rc;
    /* The VM runs at the target: from here on, roll forward. */
    m->dst_running = true;
    m->placeholder = false;
    fy_workflow_commit(wf);
    m->stats.downtime = since(&m->t_pause);
    ev(m, S, DST, "Relocate task finished on target side");
    ev(m, S, DST, "Switchover completed: downtime %.1f ms", m->stats.downtime * 1000.0);
    ev(m, S, DST, "Post migration actions initiated at target");
    return 0;
}

static int a_complete_source(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    int rc;

    (void)wf;
    m->side = SRC;
    ev(m, C, SRC, "Post migration actions initiated at source");
    ev(m, C, SRC, "Clearing up switchover source side");
    if (m->dirty_logging) {
        host_dirty_log_stop(m->src, vmname(m));
        m->dirty_logging = false;
    }
    if (m->src_suspended) {
        host_file_remove(m->src, m->image);
    } else {
        ev(m, C, SRC, "Removing source VM %s", vmname(m));
        if ((rc = host_vm_stop(m->src, vmname(m), true)) < 0 ||
            (rc = host_vm_undefine(m->src, vmname(m))) < 0)
            return rc;
    }
    ev(m, C, SRC, "Clearing up switchover source side completed");
    return 0;
}

static int a_complete_destination(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    struct fy_vm_info vi;
    int rc;

    (void)wf;
    m->side = DST;
    ev(m, C, DST, "Clearing up switchover target side");
    if (m->dst_image[0])
        host_file_remove(m->dst, m->dst_image);
    if ((rc = host_vm_info(m->dst, vmname(m), &vi)) < 0)
        return rc;
    ev(m, C, DST, "Clearing up switchover target side completed");
    return 0;
}

/* -- cold and quick -- */

static int a_power_off_source(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    int rc;

    (void)wf;
    m->side = SRC;
    ev(m, T, SRC, "Guest shutdown of source VM");
    if ((rc = host_vm_stop(m->src, vmname(m), false)) < 0)
        return rc;
    m->src_stopped = true;
    return 0;
}

static void u_power_off_source(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);

    (void)wf;
    if (!m->src_stopped)
        return;
    if (host_vm_start(m->src, vmname(m)) < 0)
        ev(m, C, SRC, "Could not start source VM %s again: %s", vmname(m),
           fy_error_detail());
    else
        ev(m, C, SRC, "Source VM %s started again", vmname(m));
    m->src_stopped = false;
}

/* Quick: where the saved state goes at the source (the datastore of the
 * VM's first disk) and at the target. */
static int image_paths(struct mig *m)
{
    const struct fy_datastore *sds = NULL;
    int a, b;

    if (m->vm.ndisks)
        sds = host_datastore(&m->src_info, m->vm.disks[0].datastore);
    if (!sds && m->src_info.ndatastores)
        sds = &m->src_info.datastores[0];
    if (!sds)
        return fy_error(FY_E_NOTFOUND, "source host %s has no datastore for the saved "
                        "state of VM %s", m->src->name, vmname(m));
    a = snprintf(m->image, sizeof(m->image), "%.*s/%s.ferry-%lld.save", FY_PATH_MAX / 2,
                 sds->path, vmname(m), (long long)m->id);
    b = snprintf(m->dst_image, sizeof(m->dst_image), "%.*s/%s.ferry-%lld.restore",
                 FY_PATH_MAX / 2, m->dst_ds->path, vmname(m), (long long)m->id);
    if (a < 0 || b < 0 || (size_t)a >= sizeof(m->image) ||
        (size_t)b >= sizeof(m->dst_image) || strlen(sds->path) > FY_PATH_MAX / 2 ||
        strlen(m->dst_ds->path) > FY_PATH_MAX / 2)
        return fy_error(FY_E_INVAL, "datastore path too long for the saved state of VM %s",
                        vmname(m));
    return 0;
}

static int a_suspend_source(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    int rc;

    (void)wf;
    m->side = SRC;
    ev(m, T, SRC, "Suspending source VM to %s", m->image);
    if ((rc = host_vm_suspend(m->src, vmname(m), m->image)) < 0)
        return rc;
    m->src_suspended = true;
    return 0;
}

static void u_suspend_source(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);

    (void)wf;
    if (!m->src_suspended)
        return;
    if (host_vm_restore(m->src, vmname(m), m->image) < 0)
        ev(m, C, SRC, "Could not resume source VM %s from %s: %s", vmname(m), m->image,
           fy_error_detail());
    else
        ev(m, C, SRC, "Source VM %s resumed from its saved state", vmname(m));
    host_file_remove(m->src, m->image);
    m->src_suspended = false;
}

static int a_unregister_source(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    int rc;

    (void)wf;
    m->side = SRC;
    ev(m, T, SRC, "Unregistering source VM %s", vmname(m));
    if ((rc = host_vm_undefine(m->src, vmname(m))) < 0)
        return rc;
    m->src_unregistered = true;
    return 0;
}

static void u_unregister_source(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);

    (void)wf;
    if (!m->src_unregistered)
        return;
    if (host_vm_define(m->src, m->config, NULL, NULL, 0) < 0)
        ev(m, C, SRC, "Could not register source VM %s again: %s (its configuration: "
           "migration %lld)", vmname(m), fy_error_detail(), (long long)m->id);
    else
        ev(m, C, SRC, "Source VM %s registered again", vmname(m));
    m->src_unregistered = false;
}

static int a_switch_cold(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);

    (void)wf;
    m->side = DST;
    ev(m, S, DST, "Starting relocate task on target side");
    return 0;
}

static int a_create_destination_vm(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    const char *paths[FY_MAX_DISKS];
    int rc;

    (void)wf;
    m->side = SRC;
    ev(m, T, SRC, "Starting relocate task on source side");
    note_net(m, FY_DATA_DISKS_COLD, m->cold_role, m->cold_dst);
    if ((rc = copy_backing(m)) < 0)
        return rc;
    for (unsigned i = 0; i < m->vm.ndisks; i++) {
        ev(m, T, SRC, "Copying disk %s to %s over %s %s", m->vm.disks[i].name,
           m->disk_paths[i], m->cold_role, m->cold_dst);
        if ((rc = copy_file(m, m->vm.disks[i].path, m->disk_paths[i], m->cold_src,
                            m->cold_dst)) < 0)
            return rc;
        paths[i] = m->disk_paths[i];
    }
    ev(m, T, SRC, "Relocate task finished on source side");
    m->side = DST;
    ev(m, S, DST, "Creating VM %s at target side", vmname(m));
    if ((rc = host_vm_define(m->dst, m->config, NULL, paths, m->vm.ndisks)) < 0)
        return rc;
    m->dst_defined = true;
    m->no_cancel = true;
    return 0;
}

static void u_destination_vm(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);

    (void)wf;
    if (!m->dst_defined)
        return;
    host_vm_stop(m->dst, vmname(m), true);
    if (host_vm_undefine(m->dst, vmname(m)) < 0)
        ev(m, C, DST, "Could not remove VM %s at target side: %s", vmname(m),
           fy_error_detail());
    else
        ev(m, C, DST, "Removed VM %s at target side", vmname(m));
    m->dst_defined = false;
}

static int a_register_destination_vm(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    int rc;

    (void)wf;
    m->side = DST;
    ev(m, S, DST, "Registering VM %s at target side", vmname(m));
    if ((rc = host_vm_define(m->dst, m->config, NULL, NULL, 0)) < 0)
        return rc;
    m->dst_defined = true;
    m->no_cancel = true;
    return 0;
}

/* Cold: the VM is registered at the target; powering it on is after the
 * point of no return. */
static int a_reconfigure_vm(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);

    m->side = DST;
    fy_workflow_commit(wf);
    ev(m, S, DST, "Relocate task finished on target side");
    ev(m, S, DST, "Post migration actions initiated at target");
    return 0;
}

static int a_power_on_destination(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    int rc;

    (void)wf;
    m->side = DST;
    ev(m, S, DST, "Power On initiated on target VM");
    if ((rc = host_vm_start(m->dst, vmname(m))) < 0)
        return rc;
    m->dst_running = true;
    return 0;
}

/* Quick: image and disks to the target, then the VM defined there. */
static int a_create_destination_vm_quick(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    int rc;

    m->side = SRC;
    if ((rc = host_file_create(m->dst, m->dst_image)) < 0 ||
        (rc = add_created(m, m->dst_image)) < 0)
        return rc;
    note_net(m, FY_DATA_MEMORY, m->cold_role, m->cold_dst);
    ev(m, T, SRC, "Moving saved-state image %s to %s over %s %s", m->image, m->dst_image,
       m->cold_role, m->cold_dst);
    if ((rc = copy_file(m, m->image, m->dst_image, m->cold_src, m->cold_dst)) < 0)
        return rc;
    if (m->move_disks)
        return a_create_destination_vm(wf, ctx);
    return a_register_destination_vm(wf, ctx);
}

static int a_restore_destination(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    int rc;

    m->side = DST;
    ev(m, S, DST, "Resuming VM %s at target side from its saved state", vmname(m));
    if ((rc = host_vm_restore(m->dst, vmname(m), m->dst_image)) < 0)
        return rc;
    m->dst_running = true;
    fy_workflow_commit(wf);
    ev(m, S, DST, "Relocate task finished on target side");
    ev(m, S, DST, "Post migration actions initiated at target");
    return 0;
}

/* ---- the actions of each kind ----------------------------------------- */

static const struct fy_action
    A_INVOKE_PRECHECKS = {"InvokePrechecks", a_invoke_prechecks, NULL},
    A_SELECT_DESTINATION = {"SelectDestination", a_select_destination, NULL},
    A_CHECK_PERMISSION = {"CheckPermission", a_check_permission, NULL},
    A_CHECK_COMPATIBILITY = {"CheckCompatibility", a_check_compatibility, NULL},
    A_RESERVE_DIRECTORY = {"ReserveDirectory", a_reserve_directory, u_reserve_directory},
    A_CREATE_INVENTORY_VM = {"CreateInventoryVm", a_noop, NULL},
    A_COMPUTE_SPEC = {"ComputeSpec", a_compute_spec, NULL},
    A_INVOKE_CALLBACKS = {"InvokeCallbacks", a_invoke_callbacks, NULL},
    /* hot */
    A_CREATE_DUMMY_DISKS = {"CreateDummyDisks", a_create_dummy_disks, NULL},
    A_CREATE_DESTINATION_VM_HOT = {"CreateDestinationVm", a_create_destination_vm_hot, NULL},
    A_RELAYOUT_SNAPSHOTS = {"RelayoutSnapshots", a_noop, NULL},
    A_PREPARE_SOURCE = {"PrepareSource", a_prepare_source, u_prepare_source},
    A_PREPARE_DESTINATION = {"PrepareDestination", a_prepare_destination, u_prepare_destination},
    A_INITIATE_DESTINATION = {"InitiateDestination", a_initiate_destination, u_initiate_destination},
    A_INITIATE_SOURCE = {"InitiateSource", a_initiate_source, u_initiate_source},
    A_SWITCH_LIVE = {"SwitchHostAndPool", a_switch_live, NULL},
    A_COMPLETE_SOURCE = {"CompleteSource", a_complete_source, NULL},
    A_COMPLETE_DESTINATION = {"CompleteDestination", a_complete_destination, NULL},
    /* cold */
    A_POWER_OFF_SOURCE = {"PowerOffSourceVm", a_power_off_source, u_power_off_source},
    A_UNREGISTER_SOURCE = {"UnregisterSourceVm", a_unregister_source, u_unregister_source},
    A_SWITCH_COLD = {"SwitchHostAndPool", a_switch_cold, NULL},
    A_CREATE_DESTINATION_VM = {"CreateDestinationVm", a_create_destination_vm, u_destination_vm},
    A_RELAY_SNAPSHOT = {"RelaySnapshot", a_noop, NULL},
    A_REGISTER_DESTINATION_VM = {"RegisterDestinationVm", a_register_destination_vm, u_destination_vm},
    A_RECONFIGURE_VM = {"ReconfigureVm", a_reconfigure_vm, NULL},
    A_RELAYOUT_SNAPSHOT = {"RelayoutSnapshot", a_noop, NULL},
    A_POWER_ON_DESTINATION = {"PowerOnDestinationVm", a_power_on_destination, NULL},
    /* quick */
    A_SUSPEND_SOURCE = {"SuspendSourceVm", a_suspend_source, u_suspend_source},
    A_CREATE_DESTINATION_VM_QUICK = {"CreateDestinationVm", a_create_destination_vm_quick,
                                     u_destination_vm},
    A_RESTORE_DESTINATION = {"RestoreDestinationVm", a_restore_destination, NULL};

/* The head after SelectDestination, which appends it. */
static unsigned head_rest(const struct fy_plan_opts *o, const struct fy_action **out)
{
    unsigned n = 0;
    out[n++] = &A_CHECK_PERMISSION;
    out[n++] = &A_CHECK_COMPATIBILITY;
    if (o->move_disks)
        out[n++] = &A_RESERVE_DIRECTORY;
    out[n++] = &A_CREATE_INVENTORY_VM;
    out[n++] = &A_COMPUTE_SPEC;
    out[n++] = &A_INVOKE_CALLBACKS;
    return n;
}

/* The tail ComputeSpec appends (SPEC section 3). */
static int tail(enum fy_migration_kind kind, const struct fy_plan_opts *o,
                const struct fy_action **out)
{
    unsigned n = 0;

    switch (kind) {
    case FY_MIG_LIVE:
        if (o->move_disks) {
            out[n++] = &A_CREATE_DUMMY_DISKS;
            out[n++] = &A_CREATE_DESTINATION_VM_HOT;
            out[n++] = &A_RELAYOUT_SNAPSHOTS;
        }
        out[n++] = &A_PREPARE_SOURCE;
        out[n++] = &A_PREPARE_DESTINATION;
        out[n++] = &A_INITIATE_DESTINATION;
        out[n++] = &A_INITIATE_SOURCE;
        out[n++] = &A_SWITCH_LIVE;
        out[n++] = &A_COMPLETE_SOURCE;
        out[n++] = &A_COMPLETE_DESTINATION;
        break;
    case FY_MIG_COLD:
        if (o->was_running)
            out[n++] = &A_POWER_OFF_SOURCE;
        out[n++] = &A_UNREGISTER_SOURCE;
        out[n++] = &A_SWITCH_COLD;
        if (o->move_disks) {
            out[n++] = &A_CREATE_DESTINATION_VM;
            out[n++] = &A_RELAY_SNAPSHOT;
            out[n++] = &A_RECONFIGURE_VM;
        } else {
            out[n++] = &A_REGISTER_DESTINATION_VM;
            out[n++] = &A_RECONFIGURE_VM;
            out[n++] = &A_RELAYOUT_SNAPSHOT;
        }
        if (o->was_running || o->power_on)
            out[n++] = &A_POWER_ON_DESTINATION;
        break;
    case FY_MIG_QUICK:
        out[n++] = &A_SUSPEND_SOURCE;
        out[n++] = &A_UNREGISTER_SOURCE;
        out[n++] = &A_SWITCH_COLD;
        out[n++] = &A_CREATE_DESTINATION_VM_QUICK;
        out[n++] = &A_RESTORE_DESTINATION;
        out[n++] = &A_COMPLETE_SOURCE;
        out[n++] = &A_COMPLETE_DESTINATION;
        break;
    default:
        return fy_error(FY_E_UNSUPPORTED, "the workflow does not run %s migration yet",
                        fy_migration_kind_name(kind));
    }
    return (int)n;
}

static struct fy_plan_opts plan_opts(const struct mig *m)
{
    struct fy_plan_opts o = {.move_disks = m->move_disks, .was_running = m->was_running,
                             .power_on = m->req->power_on};
    return o;
}

static int a_select_destination(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    const struct fy_action *rest[16];
    struct fy_plan_opts o = plan_opts(m);
    const char *a;
    unsigned n;
    int rc;

    m->side = DST;
    ev(m, T, DST, "Resolving transport endpoint");
    /* Hot data over the migration network, cold over provisioning; the
     * management network when a host has no such network. */
    a = net_addr(m->dst, &m->dst_info, FY_NET_MIGRATION);
    snprintf(m->hot_role, sizeof(m->hot_role), a[0] ? "migration" : "management");
    snprintf(m->hot_dst, sizeof(m->hot_dst), "%s",
             a[0] ? a : net_addr(m->dst, &m->dst_info, FY_NET_MANAGEMENT));
    a = net_addr(m->src, &m->src_info, FY_NET_MIGRATION);
    snprintf(m->hot_src, sizeof(m->hot_src), "%s",
             a[0] ? a : net_addr(m->src, &m->src_info, FY_NET_MANAGEMENT));
    a = net_addr(m->dst, &m->dst_info, FY_NET_PROVISIONING);
    snprintf(m->cold_role, sizeof(m->cold_role), a[0] ? "provisioning" : "management");
    snprintf(m->cold_dst, sizeof(m->cold_dst), "%s",
             a[0] ? a : net_addr(m->dst, &m->dst_info, FY_NET_MANAGEMENT));
    a = net_addr(m->src, &m->src_info, FY_NET_PROVISIONING);
    snprintf(m->cold_src, sizeof(m->cold_src), "%s",
             a[0] ? a : net_addr(m->src, &m->src_info, FY_NET_MANAGEMENT));
    if (!m->hot_dst[0] || !m->cold_dst[0])
        return fy_error(FY_E_CONFIG, "target host %s has no management network address: "
                        "configure one", m->dst->name);
    ev(m, T, DST, "Transport endpoint: hot data over %s %s, cold data over %s %s",
       m->hot_role, m->hot_dst, m->cold_role, m->cold_dst);
    if (m->move_disks) {
        for (unsigned i = 0; i < m->vm.ndisks; i++) {
            const char *base = strrchr(m->vm.disks[i].path, '/');
            if (snprintf(m->disk_paths[i], FY_PATH_MAX, "%s/%s", m->dst_ds->path,
                         base ? base + 1 : m->vm.disks[i].path) >= FY_PATH_MAX)
                return fy_error(FY_E_INVAL, "target path of disk %s too long",
                                m->vm.disks[i].name);
        }
    }
    if (m->req->kind == FY_MIG_QUICK && (rc = image_paths(m)) < 0)
        return rc;
    n = head_rest(&o, rest);
    for (unsigned i = 0; i < n; i++)
        if ((rc = fy_workflow_append(wf, rest[i])) < 0)
            return rc;
    return 0;
}

static int a_compute_spec(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    const struct fy_action *t[24];
    struct fy_plan_opts o = plan_opts(m);
    int rc, n;

    m->side = SRC;
    ev(m, T, SRC, "Reconfiguring source agent");
    if ((rc = host_vm_export(m->src, vmname(m), &m->config)) < 0)
        return rc;
    if (m->req->kind == FY_MIG_LIVE &&
        (rc = host_memory_layout(m->src, vmname(m), &m->src_layout)) < 0)
        return rc;
    if (m->req->kind == FY_MIG_LIVE && m->src_layout.n == 0)
        return fy_error(FY_E_UNSUPPORTED, "VM %s has no memory regions to migrate",
                        vmname(m));
    m->side = DST;
    ev(m, T, DST, "Reconfiguring target agent");
    if ((n = tail(m->req->kind, &o, t)) < 0)
        return n;
    for (int i = 0; i < n; i++)
        if ((rc = fy_workflow_append(wf, t[i])) < 0)
            return rc;
    return 0;
}

int fy_workflow_plan(enum fy_migration_kind kind, const struct fy_plan_opts *o,
                     const char **names, unsigned max)
{
    static const struct fy_plan_opts none = {0};
    const struct fy_action *a[FY_WORKFLOW_MAX];
    unsigned n = 0;
    int k;

    if (!o)
        o = &none;
    a[n++] = &A_INVOKE_PRECHECKS;
    a[n++] = &A_SELECT_DESTINATION;
    n += head_rest(o, a + n);
    if ((k = tail(kind, o, a + n)) < 0)
        return k;
    n += (unsigned)k;
    for (unsigned i = 0; i < n && i < max; i++)
        names[i] = a[i]->name;
    return (int)n;
}

/* ---- running a migration ------------------------------------------------ */

static int before(struct fy_workflow *wf, const struct fy_action *a, void *ctx)
{
    struct mig *m = M(ctx);

    if (m->req->on_action)
        m->req->on_action(a->name, m->req->ctx);
    if (!wf->committed && !m->no_cancel && m->req->cancel)
        return fy_error(FY_E_CANCELLED, "migration %lld of VM %s cancelled before %s",
                        (long long)m->id, vmname(m), a->name);
    if (m->req->fail_at && strcmp(m->req->fail_at, a->name) == 0)
        return fy_error(FY_E_IO, "injected failure in %s", a->name);
    return 0;
}

static void after(struct fy_workflow *wf, const struct fy_action *a, int rc, void *ctx)
{
    struct mig *m = M(ctx);

    if (rc >= 0)
        return;
    ev(m, wf->committed ? C : T, m->side, "%s failed: %s%s", a->name, fy_error_detail(),
       wf->committed ? " (after the switchover: rolling forward)"
                     : " (before the switchover: rolling back)");
}

static void finish(struct mig *m, int rc)
{
    char err[FY_STORE_ERROR_MAX] = "";
    enum fy_mig_state state = FY_MIG_SUCCEEDED;

    m->stats.seconds = since(&m->t_start);
    fy_store_migration_set_stats(m->store, m->id, &m->stats);
    if (rc < 0) {
        snprintf(err, sizeof(err), "%s: %s",
                 m->wf.failed >= 0 ? m->wf.queue[m->wf.failed]->name : "Lock",
                 fy_error_detail());
        state = m->wf.committed ? FY_MIG_FAILED
                : rc == -FY_E_CANCELLED ? FY_MIG_CANCELLED
                                        : FY_MIG_ROLLED_BACK;
    }
    fy_store_migration_set_state(m->store, m->id, state, err);
}

int fy_migrate(const struct fy_migration_request *req, struct fy_host *src,
               struct fy_host *dst, struct fy_store *store, int64_t *migration_id)
{
    struct fy_migration_record rec = {0};
    struct mig *m;
    char keep[ERR_MAX];
    int rc;

    if (migration_id)
        *migration_id = 0;
    if (!req || !req->vm || !src || !dst || !store || !src->drv.ops || !dst->drv.ops)
        return fy_error(FY_E_INVAL, "fy_migrate: missing request, host or store");
    if (req->kind != FY_MIG_LIVE && req->kind != FY_MIG_COLD && req->kind != FY_MIG_QUICK)
        return fy_error(FY_E_UNSUPPORTED, "the workflow does not run %s migration yet",
                        fy_migration_kind_name(req->kind));
    if (!(m = calloc(1, sizeof(*m))))
        return fy_error(FY_E_NOMEM, "no memory for a migration");
    m->req = req;
    m->src = src;
    m->dst = dst;
    m->store = store;
    clock_gettime(CLOCK_MONOTONIC, &m->t_start);

    snprintf(rec.vm, sizeof(rec.vm), "%s", req->vm);
    rec.kind = req->kind;
    snprintf(rec.source, sizeof(rec.source), "%s", src->name);
    snprintf(rec.target, sizeof(rec.target), "%s", dst->name);
    if ((rc = fy_store_migration_create(store, &rec, &m->id)) < 0)
        goto out;
    if (migration_id)
        *migration_id = m->id;

    fy_workflow_init(&m->wf, m);
    m->wf.before = before;
    m->wf.after = after;
    if ((rc = fy_store_lock_vm(store, req->vm, m->id)) < 0) {
        ev(m, T, SRC, "Migration concurrency lock not granted: %s", fy_error_detail());
        finish(m, rc);
        goto out;
    }
    ev(m, T, SRC, "Migration concurrency lock acquired");
    fy_workflow_append(&m->wf, &A_INVOKE_PRECHECKS);
    fy_workflow_append(&m->wf, &A_SELECT_DESTINATION);
    rc = fy_workflow_run(&m->wf);
    snprintf(keep, sizeof(keep), "%s", fy_error_detail());
    finish(m, rc);
    fy_store_unlock_vm(store, req->vm, m->id);
    ev(m, C, SRC, "Migration concurrency lock released");
    if (rc == 0)
        ev(m, C, SRC, "Migration completed");
    else if (m->wf.committed)
        ev(m, C, SRC, "Migration failed after the switchover: VM %s runs at target host %s",
           req->vm, dst->name);
    else
        ev(m, C, SRC, "Migration %s: VM %s stays at source host %s",
           rc == -FY_E_CANCELLED ? "cancelled" : "rolled back", req->vm, src->name);
    if (rc < 0)
        rc = fy_error(-rc, "%s", keep);
out:
    host_recv_abort(dst, &m->mem_job);
    free(m->config);
    free(m->dst_config);
    free(m);
    return rc;
}
