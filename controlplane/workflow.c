/* The migration workflow: the action queue, and the actions of live, cold
 * and quick migration (see workflow.h and docs/workflow.md).
 *
 * Reading order: the generic engine; the migration's context; the dataplane
 * transfers; the actions; the plan of each kind; fy_migrate().  Everything
 * done on a host goes through its ops table (controlplane/host.h), so a host
 * may be a driver in this process or another machine's ferryd. */
#include "controlplane/workflow.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "controlplane/prechecks.h"
#include "ferry/error.h"

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
    /* Where base image b of disk i is at the target (copy_backing), and
     * whether that is not the base's own name there (the target has a
     * different file under it): then the image above it must be pointed
     * at this one (disk_rebase). */
    char base_paths[FY_MAX_DISKS][4][FY_PATH_MAX];
    bool base_renamed[FY_MAX_DISKS][4];

    /* Networks: the address each end uses for hot and cold data. */
    char hot_src[FY_NAME_MAX], hot_dst[FY_NAME_MAX], hot_role[16];
    char cold_src[FY_NAME_MAX], cold_dst[FY_NAME_MAX], cold_role[16];

    /* What has been done, for undo. */
    bool dirty_logging, placeholder, src_paused, src_stopped, src_unregistered,
        src_suspended, dst_defined, dst_running, no_cancel;
    /* Quick migration region to region (FY_DRV_RAM_DIRECT on both hosts):
     * the live actions with the source paused first. */
    bool ram_direct;
    bool disks_copied; /* the active disks moved while it was paused */
    /* Live, disks moving, both drivers FY_DRV_STORAGE: the active images
     * move while the VM runs, beside its memory (InitiateSource); the
     * target receives each into its placeholder's disk. */
    bool hot_disks;
    struct fy_host_recv *disk_jobs[FY_MAX_DISKS];
    struct fy_host_endpoint disk_eps[FY_MAX_DISKS];
    struct fy_migration_stats disk_st; /* of the hot disks, verified both ends */
    /* Live in stream mode (FY_DRV_STREAM on both hosts): the hypervisor
     * migrates, Ferry carries its channels (one memory "transfer" of kind
     * FY_HOST_DATA_STREAM); no device state step. */
    bool stream;
    char image[FY_PATH_MAX], dst_image[FY_PATH_MAX]; /* quick: saved state */

    struct fy_host_caps src_caps, dst_caps;

    /* Live: memory.  The target receives one region at a time. */
    struct fy_host_memory src_mem;
    struct fy_host_recv *mem_job;
    struct fy_host_endpoint mem_ep;
    struct timespec t_pause, t_start;
    struct fy_migration_record stats;
    unsigned files_sent;     /* files moved through the dataplane */
    bool files_unverified;   /* one of them did not verify */
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

/* ---- dataplane transfers -------------------------------------------------- */

static bool host_can(const struct fy_host_caps *c, uint32_t cap)
{
    return (c->caps & cap) == cap;
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

static int timeout_ms(const struct mig *m)
{
    return m->req->timeout_ms ? m->req->timeout_ms : 30000;
}

static struct fy_host_send_params send_params(const struct mig *m, const char *from)
{
    struct fy_host_send_params p = {
        .streams = m->req->streams ? m->req->streams : 2,
        .timeout_ms = timeout_ms(m),
    };
    snprintf(p.bind, sizeof(p.bind), "%s", from ? from : "");
    return p;
}

static void add_stats(struct mig *m, const struct fy_migration_stats *st)
{
    m->stats.wire_bytes += st->wire_bytes;
    m->stats.pages_sent += st->pages_sent;
    m->stats.pages_zero += st->pages_zero;
    m->stats.pages_dup += st->pages_dup;
}

static int file_data(struct fy_host_data *d, const char *path, uint64_t size)
{
    memset(d, 0, sizeof(*d));
    d->kind = FY_HOST_DATA_FILE;
    d->size = size;
    if (snprintf(d->path, sizeof(d->path), "%s", path) >= (int)sizeof(d->path))
        return fy_error(FY_E_TOOBIG, "path %s too long", path);
    return 0;
}

/* Copies file 'from' on the source to 'to' on the target (which this
 * migration created, empty) through the dataplane over the network whose
 * addresses are given: the target receives, the source sends. */
static int copy_file(struct mig *m, const char *from, const char *to,
                     const char *src_addr, const char *dst_addr)
{
    struct fy_host_data sd, dd;
    struct fy_host_endpoint ep;
    struct fy_host_recv *j = NULL;
    struct fy_host_send_params sp = send_params(m, src_addr);
    struct fy_host_send_result res = {0};
    uint64_t size = 0;
    int rc;

    sp.cancel = m->no_cancel ? NULL : (volatile int *)&m->req->cancel;
    if ((rc = m->src->ops->file_stat(m->src, from, &size)) < 0)
        return rc;
    if ((rc = file_data(&sd, from, size)) < 0 || (rc = file_data(&dd, to, size)) < 0)
        return rc;
    if ((rc = m->dst->ops->recv_start(m->dst, &dd, dst_addr, timeout_ms(m), &j, &ep)) < 0)
        return rc;
    if ((rc = m->src->ops->send(m->src, &sd, &ep, &sp, &res)) < 0) {
        m->dst->ops->recv_abort(m->dst, j);
        return rc;
    }
    struct fy_migration_stats rst = {0};
    if ((rc = m->dst->ops->recv_join(m->dst, j, &rst)) < 0)
        return rc;
    add_stats(m, &res.st);
    m->files_sent++;
    if (!res.st.verified || !rst.verified)
        m->files_unverified = true;
    return 0;
}

/* After the switchover: the disk images that moved are the target's now.
 * Only each disk's own (active) image goes: base images may back other
 * VMs at the source. */
static void remove_moved_source_disks(struct mig *m)
{
    if (!m->move_disks)
        return;
    for (unsigned i = 0; i < m->vm.ndisks; i++) {
        ev(m, FY_EV_CLEANUP, FY_SIDE_SOURCE, "Removing source disk file %s",
           m->vm.disks[i].path);
        if (m->src->ops->file_remove(m->src, m->vm.disks[i].path) < 0)
            ev(m, FY_EV_CLEANUP, FY_SIDE_SOURCE, "Could not remove %s: %s",
               m->vm.disks[i].path, fy_error_detail());
    }
}

/* Starts the target receiving memory region i into its placeholder. */
static int recv_memory(struct mig *m, unsigned i)
{
    struct fy_host_data d = {.kind = FY_HOST_DATA_MEMORY, .region = i,
                             .size = m->src_mem.regions[i].size};

    snprintf(d.vm, sizeof(d.vm), "%s", m->req->vm);
    return m->dst->ops->recv_start(m->dst, &d, m->hot_dst, timeout_ms(m), &m->mem_job,
                                   &m->mem_ep);
}

static void recv_memory_abort(struct mig *m)
{
    if (m->mem_job)
        m->dst->ops->recv_abort(m->dst, m->mem_job);
    m->mem_job = NULL;
}

/* Hot disks: starts the target receiving each disk into its placeholder's. */
static int recv_disks(struct mig *m)
{
    int rc;

    for (unsigned i = 0; i < m->vm.ndisks; i++) {
        struct fy_host_data d = {.kind = FY_HOST_DATA_DISK, .region = i,
                                 .size = m->vm.disks[i].virtual_size};

        snprintf(d.vm, sizeof(d.vm), "%s", m->req->vm);
        snprintf(d.path, sizeof(d.path), "%s", m->disk_paths[i]);
        if ((rc = m->dst->ops->recv_start(m->dst, &d, m->hot_dst, timeout_ms(m),
                                          &m->disk_jobs[i], &m->disk_eps[i])) < 0)
            return rc;
    }
    return 0;
}

static void recv_disks_abort(struct mig *m)
{
    for (unsigned i = 0; i < FY_MAX_DISKS; i++) {
        if (m->disk_jobs[i])
            m->dst->ops->recv_abort(m->dst, m->disk_jobs[i]);
        m->disk_jobs[i] = NULL;
    }
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
    if ((rc = m->src->ops->host_info(m->src, &m->src_info)) < 0 ||
        (rc = m->src->ops->vm_info(m->src, vmname(m), &m->vm)) < 0)
        return rc;
    m->was_running = m->vm.power == FY_POWER_RUNNING;
    m->side = DST;
    ev(m, T, DST, "Collecting target details");
    if ((rc = m->dst->ops->host_info(m->dst, &m->dst_info)) < 0)
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

/* ---- stream mode (live) ------------------------------------------------ */

/* Live: stream mode or the engine (fy_migration_request.mode). */
static int stream_choose(struct mig *m)
{
    bool can = host_can(&m->src_caps, FY_DRV_STREAM) && host_can(&m->dst_caps, FY_DRV_STREAM);
    enum fy_live_mode mode = m->req->mode;

    m->stream = false;
    if (mode == FY_LIVE_STREAM && !can)
        return fy_error(FY_E_UNSUPPORTED, "driver %s has no stream mode (FY_DRV_STREAM): "
                        "migrate VM %s without --mode stream", m->src_caps.driver,
                        vmname(m));
    /* Disks that change datastore move beside the engine's memory rounds
     * (or while it is paused): stream mode does not carry them yet. */
    if (mode == FY_LIVE_STREAM && m->move_disks)
        return fy_error(FY_E_UNSUPPORTED, "VM %s: its disks must move to datastore %s, "
                        "which stream mode does not do: put them on shared storage, or "
                        "migrate with --mode ram-direct (it moves them)", vmname(m),
                        m->dst_ds->name);
    if (mode == FY_LIVE_RAM_DIRECT || !can)
        return 0;
    if (m->move_disks) {
        ev(m, T, SRC, "VM %s's disks move to datastore %s: memory moves in RAM-direct "
           "mode, beside them (stream mode does not move disks)", vmname(m),
           m->dst_ds->name);
        return 0;
    }
    m->stream = true;
    m->hot_disks = false;
    return 0;
}

static unsigned stream_channels(const struct mig *m)
{
    return m->req->streams ? m->req->streams : 2;
}

static int stream_recv(struct mig *m);
static int stream_send(struct mig *m);

static int a_check_compatibility(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    static const uint32_t need[] = {
        [FY_MIG_LIVE] = FY_DRV_LIVE, [FY_MIG_COLD] = FY_DRV_COLD,
        [FY_MIG_QUICK] = FY_DRV_QUICK,
    };
    uint32_t caps = need[m->req->kind];
    int rc;

    (void)wf;
    m->side = DST;
    if ((rc = m->src->ops->capabilities(m->src, &m->src_caps)) < 0 ||
        (rc = m->dst->ops->capabilities(m->dst, &m->dst_caps)) < 0)
        return rc;
    m->ram_direct = m->req->kind == FY_MIG_QUICK &&
                    host_can(&m->src_caps, FY_DRV_RAM_DIRECT) &&
                    host_can(&m->dst_caps, FY_DRV_RAM_DIRECT);
    m->hot_disks = m->req->kind == FY_MIG_LIVE && m->move_disks && m->vm.ndisks &&
                   host_can(&m->src_caps, FY_DRV_STORAGE) &&
                   host_can(&m->dst_caps, FY_DRV_STORAGE);
    if (m->ram_direct)
        caps = FY_DRV_RAM_DIRECT;
    if (strcmp(m->src_caps.driver, m->dst_caps.driver) != 0)
        return fy_error(FY_E_PRECHECK, "host %s uses driver %s, host %s uses %s: a VM "
                        "moves only between hosts of one driver", m->src->name,
                        m->src_caps.driver, m->dst->name, m->dst_caps.driver);
    if (m->req->kind == FY_MIG_LIVE && (rc = stream_choose(m)) < 0)
        return rc;
    if (m->stream)
        caps = FY_DRV_STREAM;
    if (!host_can(&m->src_caps, caps) || !host_can(&m->dst_caps, caps))
        return fy_error(FY_E_UNSUPPORTED, "driver %s cannot do %s migration",
                        m->src_caps.driver, fy_migration_kind_name(m->req->kind));
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
        if ((rc = m->dst->ops->file_create(m->dst, m->disk_paths[i])) < 0 ||
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
        m->dst->ops->file_remove(m->dst, m->created[--m->ncreated]);
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

/* A digest as the events print it: its first 16 hex digits. */
static const char *digest_str(fy_hash128 d, char buf[20])
{
    snprintf(buf, 20, "%016llx...", (unsigned long long)d.hi);
    return buf;
}

/* Whether host 'h' has file 'path' and whether it has 'size' bytes; if
 * so, its digest into '*out'.  Sizes first: a quick reject without reading
 * the file. */
static int same_file(struct fy_host *h, const char *path, uint64_t size, fy_hash128 *out,
                     bool *exists, bool *same_size)
{
    uint64_t have = 0;
    int rc;

    *exists = *same_size = false;
    if ((rc = h->ops->file_stat(h, path, &have)) == -FY_E_NOTFOUND)
        return 0;
    if (rc < 0)
        return rc;
    *exists = true;
    if (have != size)
        return 0;
    if ((rc = h->ops->file_digest(h, path, &have, out)) < 0)
        return rc;
    *same_size = have == size;
    return 0;
}

/* Sends base image 'from' to the new file 'to' at the target, pointing
 * the copy at the target's base below it ('below', "" none) when that is
 * not under its own name. */
static int send_base(struct mig *m, const char *from, const char *to, const char *below)
{
    int rc;

    if ((rc = m->dst->ops->file_create(m->dst, to)) < 0 || (rc = add_created(m, to)) < 0)
        return rc;
    ev(m, T, SRC, "Copying base image %s to %s over %s %s", from, to, m->cold_role,
       m->cold_dst);
    if ((rc = copy_file(m, from, to, m->cold_src, m->cold_dst)) < 0)
        return rc;
    if (below[0]) {
        ev(m, T, DST, "Pointing base image %s at the base below it, %s", to, below);
        if ((rc = m->dst->ops->disk_rebase(m->dst, to, below)) < 0)
            return rc;
    }
    return 0;
}

/* Places base image b of disk i at the target (see copy_backing). */
static int place_base(struct mig *m, unsigned i, unsigned b)
{
    const struct fy_disk *d = &m->vm.disks[i];
    const char *name = strrchr(d->backing[b], '/'), *slash = strrchr(d->path, '/');
    const char *dot, *below = "";
    char from[FY_PATH_MAX], plain[FY_PATH_MAX], alt[FY_PATH_MAX], h1[20], h2[20];
    fy_hash128 want = FY_HASH_UNKNOWN, have = FY_HASH_UNKNOWN;
    uint64_t size = 0;
    bool exists, same_size, below_moved;
    int n, rc;

    name = name ? name + 1 : d->backing[b];
    if (d->backing[b][0] == '/' || !slash)
        n = snprintf(from, sizeof(from), "%s", d->backing[b]);
    else
        n = snprintf(from, sizeof(from), "%.*s/%s", (int)(slash - d->path), d->path,
                     d->backing[b]);
    if (n < 0 || (size_t)n >= sizeof(from) ||
        (size_t)snprintf(plain, sizeof(plain), "%s/%s", m->dst_ds->path, name) >=
            sizeof(plain))
        return fy_error(FY_E_TOOBIG, "VM %s disk %s: path of base image %s too long at "
                        "the source or in target datastore %s", vmname(m), d->name,
                        d->backing[b], m->dst_ds->path);
    /* The same base under an earlier disk of this VM: placed already. */
    for (unsigned j = 0; j <= i; j++)
        for (unsigned c = 0; c < m->vm.disks[j].nbacking && c < 4; c++) {
            if ((j == i && c <= b) || strcmp(m->vm.disks[j].backing[c], d->backing[b]) != 0)
                continue;
            if (!m->base_paths[j][c][0])
                continue;
            memcpy(m->base_paths[i][b], m->base_paths[j][c], FY_PATH_MAX);
            m->base_renamed[i][b] = m->base_renamed[j][c];
            return 0;
        }
    /* A copy at the target reads its own base by the name the source's
     * holds, i.e. at its own name there: if that one was placed under
     * another name, the target's copy of this one cannot serve as it is. */
    below_moved = b + 1 < d->nbacking && b + 1 < 4 && m->base_renamed[i][b + 1];
    if (below_moved)
        below = m->base_paths[i][b + 1];
    if ((rc = m->src->ops->file_stat(m->src, from, &size)) < 0)
        return rc;
    memcpy(m->base_paths[i][b], plain, FY_PATH_MAX);
    m->base_renamed[i][b] = false;
    if ((rc = same_file(m->dst, plain, size, &have, &exists, &same_size)) < 0)
        return rc;
    if (!exists)
        return send_base(m, from, plain, below);
    /* The target has a file of that name: the base only if it holds the
     * same bytes (base images do not change, and several VMs share them).
     * Otherwise it is left alone (other VMs at the target may use it) and
     * the base goes beside it under a name of its own. */
    if ((rc = m->src->ops->file_digest(m->src, from, &size, &want)) < 0)
        return rc;
    if (same_size && fy_hash_eq(have, want) && !below_moved) {
        ev(m, T, DST, "Base image %s is at the target already as %s (same content, digest "
           "%s): not sent", from, plain, digest_str(want, h1));
        return 0;
    }
    dot = strrchr(name, '.');
    if (!dot || dot == name)
        dot = name + strlen(name);
    n = snprintf(alt, sizeof(alt), "%s/%.*s.ferry-%08llx%s", m->dst_ds->path,
                 (int)(dot - name), name, (unsigned long long)(want.hi >> 32), dot);
    if (n < 0 || (size_t)n >= sizeof(alt))
        return fy_error(FY_E_TOOBIG, "VM %s disk %s: name for base image %s in target "
                        "datastore %s too long", vmname(m), d->name, from, m->dst_ds->path);
    if (!same_size || !fy_hash_eq(have, want))
        ev(m, T, DST, "Target file %s is not base image %s (%s, digest %s; the base: digest "
           "%s): it stays as it is (other VMs may use it); the base goes to %s", plain,
           from, same_size ? "same size" : "another size",
           same_size ? digest_str(have, h1) : "not read", digest_str(want, h2), alt);
    else
        ev(m, T, DST, "Target file %s holds base image %s over a different base below it: "
           "the base goes to %s", plain, from, alt);
    memcpy(m->base_paths[i][b], alt, FY_PATH_MAX);
    m->base_renamed[i][b] = true;
    if ((rc = same_file(m->dst, alt, size, &have, &exists, &same_size)) < 0)
        return rc;
    if (!exists)
        return send_base(m, from, alt, below);
    if (same_size && fy_hash_eq(have, want) && !below_moved) {
        ev(m, T, DST, "Base image %s is at the target already as %s (same content, digest "
           "%s): not sent", from, alt, digest_str(want, h1));
        return 0;
    }
    /* That name is taken too (a copy pointed at other bases below): one
     * of this migration's own. */
    n = snprintf(alt, sizeof(alt), "%s/%.*s.ferry-%08llx-%lld%s", m->dst_ds->path,
                 (int)(dot - name), name, (unsigned long long)(want.hi >> 32),
                 (long long)m->id, dot);
    if (n < 0 || (size_t)n >= sizeof(alt))
        return fy_error(FY_E_TOOBIG, "VM %s disk %s: name for base image %s in target "
                        "datastore %s too long", vmname(m), d->name, from, m->dst_ds->path);
    memcpy(m->base_paths[i][b], alt, FY_PATH_MAX);
    return send_base(m, from, alt, below);
}

/* Copies the base images (cold data) of every disk to the target, unless
 * the target holds them already: a file of the base's name there with the
 * same content (size, then digest: file_digest).  A different file under
 * that name stays; the base is sent beside it under another name, and the
 * image above (a base, here; the disk itself: point_at_base) is pointed at
 * it.  The deepest base first, so each knows where the one below went. */
static int copy_backing(struct mig *m)
{
    int rc;

    for (unsigned i = 0; i < m->vm.ndisks; i++)
        for (unsigned b = m->vm.disks[i].nbacking < 4 ? m->vm.disks[i].nbacking : 4; b-- > 0;)
            if ((rc = place_base(m, i, b)) < 0)
                return rc;
    return 0;
}

/* The target's copy of disk i (the active image, just copied whole):
 * pointed at its base when copy_backing placed that under another name. */
static int point_at_base(struct mig *m, unsigned i)
{
    if (!m->vm.disks[i].nbacking || !m->base_renamed[i][0])
        return 0;
    ev(m, T, DST, "Pointing disk %s at %s at its base image %s", m->vm.disks[i].name,
       m->disk_paths[i], m->base_paths[i][0]);
    return m->dst->ops->disk_rebase(m->dst, m->disk_paths[i], m->base_paths[i][0]);
}

/* Copies disk i's active image whole to its target path over the network
 * 'role' (from address 'src' to 'dst'), pointed at its base there. */
static int copy_disk(struct mig *m, unsigned i, const char *role, const char *src,
                     const char *dst)
{
    int rc;

    ev(m, T, SRC, "Copying disk %s to %s over %s %s", m->vm.disks[i].name,
       m->disk_paths[i], role, dst);
    if ((rc = copy_file(m, m->vm.disks[i].path, m->disk_paths[i], src, dst)) < 0)
        return rc;
    return point_at_base(m, i);
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
    /* Hot disks: an empty delta over the base images just placed, which
     * the placeholder opens and the running VM's writes then fill. */
    for (unsigned i = 0; m->hot_disks && i < m->vm.ndisks; i++) {
        const struct fy_disk *d = &m->vm.disks[i];
        /* Over the base where copy_backing placed it. */
        const char *backing = d->nbacking ? m->base_paths[i][0] : "";

        ev(m, T, DST, "Creating disk %s at %s%s%s: its contents move while the VM runs",
           d->name, m->disk_paths[i], backing[0] ? " over " : "", backing);
        if ((rc = m->dst->ops->disk_create(m->dst, m->config, i, m->disk_paths[i],
                                           d->virtual_size, backing)) < 0)
            return rc;
    }
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
    if ((rc = m->dst->ops->vm_define(m->dst, m->config, NULL, paths, m->vm.ndisks)) < 0)
        return rc;
    rc = m->dst->ops->vm_export(m->dst, vmname(m), &m->dst_config);
    if ((rc2 = m->dst->ops->vm_undefine(m->dst, vmname(m))) < 0 && rc == 0)
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
    if (host_can(&m->src_caps, FY_DRV_DIRTY_LOG)) {
        if ((rc = m->src->ops->dirty_log_start(m->src, vmname(m))) < 0)
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
        m->src->ops->dirty_log_stop(m->src, vmname(m));
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
    if ((rc = m->dst->ops->incoming_prepare(m->dst, m->dst_config ? m->dst_config : m->config,
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
    m->dst->ops->vm_stop(m->dst, vmname(m), true);
    if (m->dst->ops->vm_undefine(m->dst, vmname(m)) < 0)
        ev(m, C, DST, "Could not remove placeholder VM %s at target side: %s",
           vmname(m), fy_error_detail());
    m->placeholder = false;
}

static int a_initiate_destination(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    struct fy_host_memory dm;
    int rc;

    (void)wf;
    m->side = DST;
    ev(m, T, DST, "Starting relocate task on target side");
    if (m->stream)
        return stream_recv(m);
    if ((rc = m->dst->ops->memory_info(m->dst, vmname(m), &dm)) < 0)
        return rc;
    if (dm.n != m->src_mem.n)
        return fy_error(FY_E_PROTO, "placeholder VM %s at target has %u memory regions, "
                        "the source has %u", vmname(m), dm.n, m->src_mem.n);
    for (unsigned i = 0; i < dm.n; i++)
        if (dm.regions[i].size != m->src_mem.regions[i].size)
            return fy_error(FY_E_PROTO, "memory region %s of VM %s has %llu bytes at "
                            "target, %llu at source", dm.regions[i].name, vmname(m),
                            (unsigned long long)dm.regions[i].size,
                            (unsigned long long)m->src_mem.regions[i].size);
    /* Region 0 now; each of the others when the one before has arrived
     * (InitiateSource), so no receiver waits through the pre-copy.  Hot
     * disks travel beside region 0. */
    if ((rc = recv_memory(m, 0)) < 0)
        return rc;
    return m->hot_disks ? recv_disks(m) : 0;
}

static void u_initiate_destination(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);

    (void)wf;
    if (m->mem_job || m->disk_jobs[0])
        ev(m, C, DST, "Clearing up switchover target side");
    recv_memory_abort(m);
    recv_disks_abort(m);
}

/* Pauses the source VM: the switchover's downtime starts. */
static int pause_source(struct mig *m)
{
    int rc = m->src->ops->vm_pause(m->src, vmname(m));
    if (rc == 0) {
        m->src_paused = true;
        clock_gettime(CLOCK_MONOTONIC, &m->t_pause);
    }
    return rc;
}

/* The source paused the VM while sending, st->downtime seconds before the
 * send returned. */
static void source_paused(struct mig *m, const struct fy_migration_stats *st)
{
    double ago = st->downtime > 0 ? st->downtime : 0;

    m->src_paused = true;
    clock_gettime(CLOCK_MONOTONIC, &m->t_pause);
    m->t_pause.tv_sec -= (time_t)ago;
    m->t_pause.tv_nsec -= (long)((ago - (double)(time_t)ago) * 1e9);
    if (m->t_pause.tv_nsec < 0) {
        m->t_pause.tv_nsec += 1000000000L;
        m->t_pause.tv_sec--;
    }
}

/* Hot disks, once the send beside which they moved returned: each
 * target's verdict, and the figures. */
static int join_disks(struct mig *m, const struct fy_migration_stats *st)
{
    bool verified = st->verified;
    int rc = 0;

    for (unsigned i = 0; i < m->vm.ndisks; i++) {
        struct fy_migration_stats rst = {0};
        int r = m->dst->ops->recv_join(m->dst, m->disk_jobs[i], &rst);

        m->disk_jobs[i] = NULL;
        if (r < 0 && rc == 0)
            rc = r;
        verified = verified && rst.verified;
    }
    if (rc < 0) {
        recv_disks_abort(m);
        return rc;
    }
    m->disk_st = *st;
    m->disk_st.verified = verified;
    return 0;
}

/* InitiateDestination: the placeholder waits for the hypervisor's stream
 * and the target's agent for Ferry's session. */
static int stream_recv(struct mig *m)
{
    struct fy_host_data d = {.kind = FY_HOST_DATA_STREAM, .region = stream_channels(m),
                             .size = m->vm.mem_bytes};

    snprintf(d.vm, sizeof(d.vm), "%s", vmname(m));
    ev(m, T, DST, "Placeholder VM %s waits for the hypervisor's migration (%u channels "
       "besides the main one), Ferry's session on %s %s", vmname(m), d.region, m->hot_role,
       m->hot_dst);
    return m->dst->ops->recv_start(m->dst, &d, m->hot_dst, timeout_ms(m), &m->mem_job,
                                   &m->mem_ep);
}

/* InitiateSource: the hypervisor migrates the running VM through Ferry
 * until it pauses it (completed: the target has it all) or fails (the VM
 * runs on).  Then the figures, as the job reports them. */
static int stream_send(struct mig *m)
{
    struct fy_host_data d = {.kind = FY_HOST_DATA_STREAM, .region = stream_channels(m),
                             .size = m->vm.mem_bytes};
    struct fy_host_send_params sp = send_params(m, m->hot_src);
    struct fy_host_send_result res = {0};
    struct fy_migration_stats rst = {0};
    const struct fy_host_stream_stats *q = &res.stream;
    char limit[32] = "the hypervisor's default";
    int rc;

    snprintf(d.vm, sizeof(d.vm), "%s", vmname(m));
    note_net(m, FY_DATA_MEMORY, m->hot_role, m->hot_dst);
    if (m->req->downtime_ms)
        snprintf(limit, sizeof(limit), "%u ms", m->req->downtime_ms);
    ev(m, T, SRC, "Stream mode: the hypervisor migrates VM %s (multifd, %u channels, "
       "downtime limit %s), Ferry carries every channel over %s %s", vmname(m), d.region,
       limit, m->hot_role, m->hot_dst);
    sp.downtime_ms = m->req->downtime_ms;
    sp.cancel = (volatile int *)&m->req->cancel;
    sp.on_round = m->req->on_round;
    sp.round_ctx = m->req->ctx;
    rc = m->src->ops->send(m->src, &d, &m->mem_ep, &sp, &res);
    if (res.paused)
        source_paused(m, &res.st);
    if (rc < 0)
        return rc;
    rc = m->dst->ops->recv_join(m->dst, m->mem_job, &rst);
    m->mem_job = NULL;
    if (rc < 0)
        return rc;
    add_stats(m, &res.st);
    /* No digest of the memory itself (the hypervisor loads its own
     * stream): the target checked each reference against its content hash
     * and each channel's bytes against the source QEMU's sum of them. */
    m->stats.verified = rst.verified;
    ev(m, T, SRC, "The hypervisor migrated VM %s in %.2f s over %llu dirty-bitmap syncs: "
       "%llu pages with contents, %llu zero pages sent as markers, %llu bytes; its "
       "downtime %.1f ms", vmname(m), q->hv_seconds, (unsigned long long)q->hv_dirty_syncs,
       (unsigned long long)q->hv_pages_normal, (unsigned long long)q->hv_pages_zero,
       (unsigned long long)q->hv_transferred, q->hv_downtime * 1000.0);
    ev(m, T, SRC, "Ferry carried it over %s %s: pages_sent=%llu pages_dup=%llu "
       "pages_dup_shared=%llu pages_zero=%llu qemu_zero_pages=%llu pages_uncached=%llu "
       "wire_bytes=%llu channels=%u parsed_all=%s%s%s", m->hot_role, m->hot_dst,
       (unsigned long long)q->pages_sent, (unsigned long long)q->pages_dup,
       (unsigned long long)q->pages_dup_shared, (unsigned long long)q->pages_zero,
       (unsigned long long)q->qemu_zero_pages, (unsigned long long)q->pages_uncached,
       (unsigned long long)q->wire_bytes, q->channels, q->parsed_all ? "yes" : "no",
       q->unparsed[0] ? " unparsed=" : "", q->unparsed);
    ev(m, T, SRC, "Memory transferred in stream mode over %s %s: %llu pages sent, %llu zero, "
       "%llu duplicate, %llu bytes on the wire (%s)", m->hot_role, m->hot_dst,
       (unsigned long long)m->stats.pages_sent, (unsigned long long)m->stats.pages_zero,
       (unsigned long long)m->stats.pages_dup, (unsigned long long)m->stats.wire_bytes,
       m->stats.verified ? "verified: every channel as the source QEMU sent it"
                         : "not verified: the source sent no channel sums");
    ev(m, T, SRC, "Relocate task finished on source side");
    return 0;
}

static int a_initiate_source(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    struct fy_migration_stats total = {0}, rst;
    bool target_verified = true;
    int rc;

    (void)wf;
    m->side = SRC;
    ev(m, T, SRC, "Starting relocate task on source side");
    if (m->stream)
        return stream_send(m);
    note_net(m, FY_DATA_MEMORY, m->hot_role, m->hot_dst);
    for (unsigned i = 0; i < m->src_mem.n; i++) {
        struct fy_host_data d = {.kind = FY_HOST_DATA_MEMORY, .region = i,
                                 .size = m->src_mem.regions[i].size};
        struct fy_host_send_params sp = send_params(m, m->hot_src);
        struct fy_host_send_result res = {0};

        /* Region 0 is pre-copied and pauses the VM; the others follow,
         * paused, in one round each. */
        snprintf(d.vm, sizeof(d.vm), "%s", vmname(m));
        sp.downtime_ms = m->req->downtime_ms;
        sp.max_rounds = m->req->max_rounds;
        sp.dirty_log = i == 0 && m->dirty_logging;
        sp.pause = i == 0 && !m->src_paused;
        sp.cancel = (volatile int *)&m->req->cancel;
        sp.on_round = m->req->on_round;
        sp.round_ctx = m->req->ctx;
        if (i == 0 && m->hot_disks) {
            note_net(m, FY_DATA_DISKS_HOT, m->hot_role, m->hot_dst);
            ev(m, T, SRC, "Moving %u disk(s) while the VM runs, beside its memory, over "
               "%s %s", m->vm.ndisks, m->hot_role, m->hot_dst);
            sp.ndisks = m->vm.ndisks;
            memcpy(sp.disks, m->disk_eps, sizeof(sp.disks));
        }
        if (!m->mem_job && (rc = recv_memory(m, i)) < 0)
            return rc;
        rc = m->src->ops->send(m->src, &d, &m->mem_ep, &sp, &res);
        if (res.paused)
            source_paused(m, &res.st);
        if (rc < 0)
            return rc;
        rc = m->dst->ops->recv_join(m->dst, m->mem_job, &rst);
        m->mem_job = NULL;
        if (rc < 0)
            return rc;
        if (sp.ndisks && (rc = join_disks(m, &res.disks)) < 0)
            return rc;
        add_stats(m, &res.st);
        total.rounds += res.st.rounds;
        total.verified = i == 0 ? res.st.verified : total.verified && res.st.verified;
        target_verified = target_verified && rst.verified;
    }
    m->stats.verified = total.verified && target_verified;
    ev(m, T, SRC, "Memory transferred in %u rounds over %s %s: %llu pages sent, %llu zero, "
       "%llu duplicate, %llu bytes on the wire%s",
       total.rounds, m->hot_role, m->hot_dst, (unsigned long long)m->stats.pages_sent,
       (unsigned long long)m->stats.pages_zero, (unsigned long long)m->stats.pages_dup,
       (unsigned long long)m->stats.wire_bytes, m->stats.verified ? ", verified" : "");
    if (m->hot_disks) {
        const struct fy_migration_stats *st = &m->disk_st;

        add_stats(m, st);
        if (!st->verified)
            m->files_unverified = true;
        ev(m, T, SRC, "Disks moved while the VM ran, in %u rounds over %s %s: %llu blocks "
           "sent, %llu zero, %llu duplicate, %llu bytes on the wire%s; their final round "
           "and check took %.1f ms of the pause (the check %.1f ms)", st->rounds,
           m->hot_role, m->hot_dst, (unsigned long long)st->pages_sent,
           (unsigned long long)st->pages_zero, (unsigned long long)st->pages_dup,
           (unsigned long long)st->wire_bytes, st->verified ? ", verified" : "",
           st->downtime * 1000.0, st->verify_seconds * 1000.0);
    }
    /* The active disk images are hot data: without a driver that tracks
     * disk writes (FY_DRV_STORAGE), they move while the VM is paused. */
    if (m->move_disks && !m->disks_copied && !m->hot_disks) {
        note_net(m, FY_DATA_DISKS_HOT, m->hot_role, m->hot_dst);
        for (unsigned i = 0; i < m->vm.ndisks; i++) {
            if ((rc = copy_disk(m, i, m->hot_role, m->hot_src, m->hot_dst)) < 0)
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
    recv_memory_abort(m);
    if (m->src_paused) {
        if (m->src->ops->vm_resume(m->src, vmname(m)) < 0)
            ev(m, C, SRC, "Could not resume source VM %s: %s", vmname(m), fy_error_detail());
        else
            ev(m, C, SRC, "Source VM %s resumed", vmname(m));
        m->src_paused = false;
    }
}

/* SwitchHostAndPool: the target starts receiving the VM's device state,
 * on the network its memory took. */
static int devstate_recv(struct mig *m, struct fy_host_recv **job,
                         struct fy_host_endpoint *ep)
{
    struct fy_host_data d = {.kind = FY_HOST_DATA_DEVICE_STATE};

    snprintf(d.vm, sizeof(d.vm), "%s", vmname(m));
    note_net(m, FY_DATA_DEVICE_STATE, m->hot_role, m->hot_dst);
    return m->dst->ops->recv_start(m->dst, &d, m->hot_dst, timeout_ms(m), job, ep);
}

/* The source saves the paused VM's device state and sends it over the
 * dataplane, agent to agent (not through this controller: it may be far
 * larger than a control message); the target's agent loads it into the
 * placeholder.  Ends 'job' either way. */
static int devstate_move(struct mig *m, struct fy_host_recv *job,
                         const struct fy_host_endpoint *ep)
{
    struct fy_host_data d = {.kind = FY_HOST_DATA_DEVICE_STATE};
    struct fy_host_send_params sp = send_params(m, m->hot_src);
    struct fy_host_send_result res = {0};
    struct fy_migration_stats rst = {0};
    struct timespec t0;
    int rc;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    snprintf(d.vm, sizeof(d.vm), "%s", vmname(m));
    sp.streams = 1;
    if ((rc = m->src->ops->send(m->src, &d, ep, &sp, &res)) < 0) {
        m->dst->ops->recv_abort(m->dst, job);
        return rc;
    }
    if ((rc = m->dst->ops->recv_join(m->dst, job, &rst)) < 0)
        return rc;
    m->stats.wire_bytes += res.st.wire_bytes;
    ev(m, S, SRC, "Device state of VM %s crossed the dataplane over %s %s: %llu bytes "
       "(%llu on the wire) saved, sent and loaded at the target in %.1f ms%s", vmname(m),
       m->hot_role, m->hot_dst, (unsigned long long)res.device_state_bytes,
       (unsigned long long)res.st.wire_bytes, since(&t0) * 1000.0,
       res.st.verified && rst.verified ? ", verified" : "");
    return 0;
}

static int a_switch_live(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    /* Stream mode: the device state was in the hypervisor's stream. */
    bool devstate = host_can(&m->src_caps, FY_DRV_DEVICE_STATE) && !m->stream;
    struct fy_host_recv *job = NULL;
    struct fy_host_endpoint ep;
    int rc = 0;

    m->no_cancel = true;
    m->side = DST;
    ev(m, S, SRC, "Switchover started");
    /* The target listens first: before the pause when the VM still runs
     * (the engine pauses it before its final round, RAM-direct quick
     * before its memory moves; then this costs one call in the pause). */
    if (devstate && (rc = devstate_recv(m, &job, &ep)) < 0)
        return rc;
    if (!m->src_paused) {
        /* A driver without a writer to pause still stops here. */
        if ((rc = pause_source(m)) < 0) {
            m->dst->ops->recv_abort(m->dst, job);
            return rc;
        }
    }
    /* Any failure from here to the target's vm_resume leaves the source
     * paused, and the undo of InitiateSource (or SuspendSourceVm) resumes
     * it. */
    if (devstate && (rc = devstate_move(m, job, &ep)) < 0)
        return rc;
    if ((rc = m->dst->ops->vm_resume(m->dst, vmname(m))) < 0)
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
        m->src->ops->dirty_log_stop(m->src, vmname(m));
        m->dirty_logging = false;
    }
    if (m->src_suspended) {
        m->src->ops->file_remove(m->src, m->image);
    } else {
        ev(m, C, SRC, "Removing source VM %s", vmname(m));
        if ((rc = m->src->ops->vm_stop(m->src, vmname(m), true)) < 0 ||
            (rc = m->src->ops->vm_undefine(m->src, vmname(m))) < 0)
            return rc;
    }
    remove_moved_source_disks(m);
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
        m->dst->ops->file_remove(m->dst, m->dst_image);
    if ((rc = m->dst->ops->vm_info(m->dst, vmname(m), &vi)) < 0)
        return rc;
    ev(m, C, DST, "Clearing up switchover target side completed");
    return 0;
}

/* -- quick, RAM-direct: the live actions with the source paused first -- */

static int a_pause_source(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);

    (void)wf;
    m->side = SRC;
    ev(m, T, SRC, "Suspending source VM %s (paused: its memory moves region to region)",
       vmname(m));
    return pause_source(m);
}

static void u_pause_source(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);

    (void)wf;
    if (!m->src_paused)
        return;
    if (m->src->ops->vm_resume(m->src, vmname(m)) < 0)
        ev(m, C, SRC, "Could not resume source VM %s: %s", vmname(m), fy_error_detail());
    else
        ev(m, C, SRC, "Source VM %s resumed", vmname(m));
    m->src_paused = false;
}

/* The active disks, while the VM is paused, before the target's
 * placeholder opens them. */
static int a_copy_disks_paused(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    int rc;

    (void)wf;
    m->side = SRC;
    note_net(m, FY_DATA_DISKS_HOT, m->hot_role, m->hot_dst);
    for (unsigned i = 0; i < m->vm.ndisks; i++) {
        if ((rc = copy_disk(m, i, m->hot_role, m->hot_src, m->hot_dst)) < 0)
            return rc;
    }
    m->disks_copied = true;
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
    if ((rc = m->src->ops->vm_stop(m->src, vmname(m), false)) < 0)
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
    if (m->src->ops->vm_start(m->src, vmname(m)) < 0)
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
    if ((rc = m->src->ops->vm_suspend(m->src, vmname(m), m->image)) < 0)
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
    if (m->src->ops->vm_restore(m->src, vmname(m), m->image) < 0)
        ev(m, C, SRC, "Could not resume source VM %s from %s: %s", vmname(m), m->image,
           fy_error_detail());
    else
        ev(m, C, SRC, "Source VM %s resumed from its saved state", vmname(m));
    m->src->ops->file_remove(m->src, m->image);
    m->src_suspended = false;
}

static int a_unregister_source(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    int rc;

    (void)wf;
    m->side = SRC;
    ev(m, T, SRC, "Unregistering source VM %s", vmname(m));
    if ((rc = m->src->ops->vm_undefine(m->src, vmname(m))) < 0)
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
    if (m->src->ops->vm_define(m->src, m->config, NULL, NULL, 0) < 0)
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
        if ((rc = copy_disk(m, i, m->cold_role, m->cold_src, m->cold_dst)) < 0)
            return rc;
        paths[i] = m->disk_paths[i];
    }
    ev(m, T, SRC, "Relocate task finished on source side");
    m->side = DST;
    ev(m, S, DST, "Creating VM %s at target side", vmname(m));
    if ((rc = m->dst->ops->vm_define(m->dst, m->config, NULL, paths, m->vm.ndisks)) < 0)
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
    m->dst->ops->vm_stop(m->dst, vmname(m), true);
    if (m->dst->ops->vm_undefine(m->dst, vmname(m)) < 0)
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
    if ((rc = m->dst->ops->vm_define(m->dst, m->config, NULL, NULL, 0)) < 0)
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
    remove_moved_source_disks(m);
    return 0;
}

static int a_power_on_destination(struct fy_workflow *wf, void *ctx)
{
    struct mig *m = M(ctx);
    int rc;

    (void)wf;
    m->side = DST;
    ev(m, S, DST, "Power On initiated on target VM");
    if ((rc = m->dst->ops->vm_start(m->dst, vmname(m))) < 0)
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
    if ((rc = m->dst->ops->file_create(m->dst, m->dst_image)) < 0 ||
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
    if ((rc = m->dst->ops->vm_restore(m->dst, vmname(m), m->dst_image)) < 0)
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
    A_RESTORE_DESTINATION = {"RestoreDestinationVm", a_restore_destination, NULL},
    /* quick, RAM-direct */
    A_PAUSE_SOURCE = {"SuspendSourceVm", a_pause_source, u_pause_source},
    A_COPY_DISKS_PAUSED = {"RelocateDisks", a_copy_disks_paused, NULL};

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
        if (o->ram_direct) {
            /* The placeholder starts before the pause (it takes a
             * hypervisor's start-up time), unless it needs the disks,
             * which move only once the VM is paused. */
            if (o->move_disks) {
                out[n++] = &A_PAUSE_SOURCE;
                out[n++] = &A_CREATE_DUMMY_DISKS;
                out[n++] = &A_COPY_DISKS_PAUSED;
                out[n++] = &A_CREATE_DESTINATION_VM_HOT;
            }
            out[n++] = &A_PREPARE_DESTINATION;
            out[n++] = &A_INITIATE_DESTINATION;
            if (!o->move_disks)
                out[n++] = &A_PAUSE_SOURCE;
            out[n++] = &A_INITIATE_SOURCE;
            out[n++] = &A_SWITCH_LIVE;
            out[n++] = &A_COMPLETE_SOURCE;
            out[n++] = &A_COMPLETE_DESTINATION;
            break;
        }
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
                             .power_on = m->req->power_on, .ram_direct = m->ram_direct};
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
    if ((rc = m->src->ops->vm_export(m->src, vmname(m), &m->config)) < 0)
        return rc;
    /* Stream mode needs no access to the VM's memory: the hypervisor
     * reads it. */
    if (((m->req->kind == FY_MIG_LIVE && !m->stream) || m->ram_direct) &&
        (rc = m->src->ops->memory_info(m->src, vmname(m), &m->src_mem)) < 0)
        return rc;
    if (((m->req->kind == FY_MIG_LIVE && !m->stream) || m->ram_direct) && m->src_mem.n == 0)
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
    /* Every transfer checks its digest at both ends: memory (live) and
     * each file moved (disks, saved images).  Nothing moved: nothing
     * verified. */
    if (m->req->kind == FY_MIG_LIVE || m->ram_direct)
        m->stats.verified = m->stats.verified && !m->files_unverified;
    else
        m->stats.verified = m->files_sent > 0 && !m->files_unverified;
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
    if (!req || !req->vm || !src || !dst || !store || !src->ops || !dst->ops)
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
    recv_memory_abort(m);
    recv_disks_abort(m);
    free(m->config);
    free(m->dst_config);
    free(m);
    return rc;
}
