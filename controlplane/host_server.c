/* The server side of remote hosts (controlplane/host_rpc.h): one "host.*"
 * method per operation of struct fy_host_ops, each decoding its params,
 * calling the served local host and encoding what it returns
 * (controlplane/host_json.h).
 *
 * Params and results, by method (members named as the C arguments):
 *   host.info {} -> host_info             host.vm_info {vm} -> vm_info
 *   host.capabilities {} -> host_caps     host.memory_info {vm} -> host_memory
 *   host.vm_export {vm} -> {config}
 *   host.vm_define {config, name?, disk_paths?: [path...]} -> {}
 *   host.vm_undefine / vm_start / vm_pause / vm_resume {vm} -> {}
 *   host.vm_stop {vm, force} -> {}
 *   host.incoming_prepare {config, vm} -> {}
 *   host.vm_suspend / vm_restore {vm, image} -> {}
 *   host.dirty_log_start / dirty_log_stop {vm} -> {}
 *   host.device_state_save {vm} -> {state: hex}
 *   host.device_state_load {vm, state: hex} -> {}
 *   host.file_create / file_remove {path} -> {}
 *   host.file_stat {path} -> {size}
 *   host.file_digest {path} -> {size, digest: 32 hex digits}   (heartbeats
 *       while it reads, like recv_join; the local host caches digests)
 *   host.disk_rebase {path, backing} -> {}
 *   host.disk_create {config, disk, path, virtual_size, backing} -> {}
 *   host.recv_start {what: host_data, listen_addr, timeout_ms, gang?}
 *       -> {job: N, endpoint: host_endpoint}   (gang: fy_host.gang of the
 *       receiving host for this transfer)
 *   host.recv_join {job} -> {st: migration_stats}
 *   host.recv_abort {job} -> {}
 *   host.send {what: host_data, to: host_endpoint, params: send_params}
 *       -> {st: migration_stats, paused, disks?: migration_stats,
 *           stream?: stream_stats, device_state_bytes?: N,
 *           error?: {code, message}}
 *       (send_params.disks: [host_endpoint]; stream: what.kind stream mode;
 *       device_state_bytes: what.kind device state)
 *
 * host.send answers a result also when the send failed, with the failure
 * in "error" (code as fy_errname()), because the caller needs 'paused'
 * either way; every other method fails as an RPC error.
 *
 * Receive jobs are kept by id in a table of the server (not of the
 * connection), so any connection may join or abort them.  recv_join and
 * send run on a thread of their own while the handler sends a progress
 * frame at least every second ({"op":..., "waiting_ms": N}, and for a send
 * one {"op":"send", "round": round_stats} after each pre-copy round), so
 * the caller's per-frame timeout is measured against a host that answers,
 * not against the length of the transfer.  A send whose caller has gone
 * (a progress frame cannot be delivered) is cancelled.
 *
 * Threads: handlers of different connections run at once.  The short
 * operations take a lock of the server, so the served host sees one of
 * them at a time (host.h); recv_join and send run without it (the engine
 * runs them on its own threads), so inventory keeps answering during a
 * transfer. */
#include "controlplane/host_rpc.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "controlplane/host_json.h"
#include "ferry/error.h"

#define MAX_JOBS 64
#define HEARTBEAT_MS 1000
#define ROUND_QUEUE 8
#define ERR_MAX 1024
/* What a binary value may take in a frame, hex-encoded, with room for the
 * rest of the message. */
#define BINARY_MAX ((FY_RPC_FRAME_MAX - 4096) / 2)

struct job_slot {
    uint64_t id; /* 0: free */
    struct fy_host_recv *job;
};

/* What fy_host_server.jobs points to. */
struct server_priv {
    pthread_mutex_t lock;    /* jobs, next_id */
    pthread_mutex_t op_lock; /* one short operation at a time */
    uint64_t next_id;
    struct job_slot jobs[MAX_JOBS];
};

static struct fy_host_server *server_of(void *ctx)
{
    return ctx;
}

static struct server_priv *priv_of(void *ctx)
{
    return server_of(ctx)->jobs;
}

static struct fy_host *local_of(void *ctx)
{
    return server_of(ctx)->local;
}

static void ops_lock(void *ctx)
{
    pthread_mutex_lock(&priv_of(ctx)->op_lock);
}

static void ops_unlock(void *ctx)
{
    pthread_mutex_unlock(&priv_of(ctx)->op_lock);
}

static int no_memory(const char *method)
{
    return fy_error(FY_E_NOMEM, "no memory for the answer to %s", method);
}

/* ---- the job table ---------------------------------------------------------- */

static int job_add(void *ctx, struct fy_host_recv *job, uint64_t *id)
{
    struct server_priv *p = priv_of(ctx);

    *id = 0;
    pthread_mutex_lock(&p->lock);
    for (unsigned i = 0; i < MAX_JOBS && !*id; i++)
        if (p->jobs[i].id == 0) {
            p->jobs[i].id = *id = ++p->next_id;
            p->jobs[i].job = job;
        }
    pthread_mutex_unlock(&p->lock);
    if (!*id)
        return fy_error(FY_E_BUSY, "host %s already runs %d receiving ends: let some "
                        "finish", local_of(ctx)->name, MAX_JOBS);
    return 0;
}

/* Takes job 'id' out of the table, so one caller alone ends it. */
static int job_take(void *ctx, uint64_t id, struct fy_host_recv **job)
{
    struct server_priv *p = priv_of(ctx);

    *job = NULL;
    pthread_mutex_lock(&p->lock);
    for (unsigned i = 0; i < MAX_JOBS && id; i++)
        if (p->jobs[i].id == id) {
            *job = p->jobs[i].job;
            p->jobs[i].id = 0;
            p->jobs[i].job = NULL;
            break;
        }
    pthread_mutex_unlock(&p->lock);
    if (!*job)
        return fy_error(FY_E_NOTFOUND, "host %s has no receiving job %llu (it ended "
                        "already or never started)", local_of(ctx)->name,
                        (unsigned long long)id);
    return 0;
}

/* ---- operations that take a while ---------------------------------------- */

/* A recv_join or a send, run on its own thread while the handler keeps the
 * caller informed. */
struct blocking {
    int (*fn)(struct blocking *b);
    struct fy_host *h;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int rc;
    char detail[ERR_MAX];
    /* recv_join */
    struct fy_host_recv *job;
    struct fy_migration_stats st;
    /* send */
    struct fy_host_data what;
    struct fy_host_endpoint to;
    struct fy_host_send_params sp;
    struct fy_host_send_result res;
    volatile int cancel;
    struct fy_round_stats rounds[ROUND_QUEUE]; /* not yet sent on */
    unsigned nrounds;
    /* file_digest */
    const char *path;
    uint64_t size;
    fy_hash128 digest;
};

static void *blocking_main(void *arg)
{
    struct blocking *b = arg;
    int rc = b->fn(b);

    pthread_mutex_lock(&b->lock);
    b->rc = rc;
    if (rc < 0)
        snprintf(b->detail, sizeof(b->detail), "%s", fy_error_detail());
    b->done = true;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

/* On the engine's thread: queues the round for the handler to send on.  A
 * full queue keeps the latest round in its last place. */
static void blocking_round(const struct fy_round_stats *st, void *ctx)
{
    struct blocking *b = ctx;

    pthread_mutex_lock(&b->lock);
    b->rounds[b->nrounds < ROUND_QUEUE ? b->nrounds++ : ROUND_QUEUE - 1] = *st;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends one progress frame; false once the caller cannot be reached. */
static bool progress(struct fy_rpc_call *call, const char *op, const char *key,
                     json_object *value)
{
    json_object *o = json_object_new_object();

    if (!o) {
        json_object_put(value);
        return true; /* no memory for a heartbeat: try again at the next */
    }
    json_object_object_add(o, "op", json_object_new_string(op));
    json_object_object_add(o, key, value);
    return fy_rpc_reply_progress(call, o) == 0;
}

/* Runs b->fn on a thread of its own and returns its result, with its
 * detail recorded on this thread.  Meanwhile sends the rounds it reports
 * and a heartbeat every HEARTBEAT_MS; when the caller has gone, sets
 * b->cancel and only waits. */
static int blocking_run(struct fy_rpc_call *call, struct blocking *b, const char *op)
{
    pthread_condattr_t ca;
    pthread_t tid;
    bool reachable = true;
    int64_t start = now_ms(), last = start;

    pthread_mutex_init(&b->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&tid, NULL, blocking_main, b) != 0) {
        /* No thread: run it here, without heartbeats. */
        blocking_main(b);
    } else {
        pthread_mutex_lock(&b->lock);
        while (!b->done) {
            int64_t due = last + HEARTBEAT_MS;
            struct timespec ts = {.tv_sec = due / 1000, .tv_nsec = (due % 1000) * 1000000};
            struct fy_round_stats rounds[ROUND_QUEUE];
            unsigned n;

            if (b->nrounds == 0)
                pthread_cond_timedwait(&b->cond, &b->lock, &ts);
            if (b->done)
                break;
            n = b->nrounds;
            memcpy(rounds, b->rounds, n * sizeof(rounds[0]));
            b->nrounds = 0;
            pthread_mutex_unlock(&b->lock);
            for (unsigned i = 0; i < n && reachable; i++)
                reachable = progress(call, op, "round", fy_json_round_stats_encode(&rounds[i]));
            if (reachable && n == 0 && now_ms() >= due)
                reachable = progress(call, op, "waiting_ms",
                                     json_object_new_int64(now_ms() - start));
            if (n || now_ms() >= due)
                last = now_ms();
            if (!reachable)
                b->cancel = 1;
            pthread_mutex_lock(&b->lock);
        }
        pthread_mutex_unlock(&b->lock);
        pthread_join(tid, NULL);
    }
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->lock);
    if (b->rc < 0)
        return fy_error(-b->rc, "%s", b->detail);
    return 0;
}

/* ---- inventory ---------------------------------------------------------- */

static int h_info(void *ctx, struct fy_rpc_call *call, const json_object *params,
                  json_object **result)
{
    struct fy_host_info hi;
    int rc;

    (void)call;
    (void)params;
    ops_lock(ctx);
    rc = local_of(ctx)->ops->host_info(local_of(ctx), &hi);
    ops_unlock(ctx);
    if (rc < 0)
        return rc;
    return (*result = fy_json_host_info_encode(&hi)) ? 0 : no_memory("host.info");
}

static int h_vm_info(void *ctx, struct fy_rpc_call *call, const json_object *params,
                     json_object **result)
{
    struct fy_vm_info vi;
    const char *vm;
    int rc;

    (void)call;
    if ((rc = fy_json_get_strp(params, "vm", "host.vm_info params", false, &vm)) < 0)
        return rc;
    ops_lock(ctx);
    rc = local_of(ctx)->ops->vm_info(local_of(ctx), vm, &vi);
    ops_unlock(ctx);
    if (rc < 0)
        return rc;
    return (*result = fy_json_vm_info_encode(&vi)) ? 0 : no_memory("host.vm_info");
}

static int h_capabilities(void *ctx, struct fy_rpc_call *call, const json_object *params,
                          json_object **result)
{
    struct fy_host_caps c;
    int rc;

    (void)call;
    (void)params;
    ops_lock(ctx);
    rc = local_of(ctx)->ops->capabilities(local_of(ctx), &c);
    ops_unlock(ctx);
    if (rc < 0)
        return rc;
    return (*result = fy_json_host_caps_encode(&c)) ? 0 : no_memory("host.capabilities");
}

static int h_memory_info(void *ctx, struct fy_rpc_call *call, const json_object *params,
                         json_object **result)
{
    struct fy_host_memory m;
    const char *vm;
    int rc;

    (void)call;
    if ((rc = fy_json_get_strp(params, "vm", "host.memory_info params", false, &vm)) < 0)
        return rc;
    ops_lock(ctx);
    rc = local_of(ctx)->ops->memory_info(local_of(ctx), vm, &m);
    ops_unlock(ctx);
    if (rc < 0)
        return rc;
    return (*result = fy_json_host_memory_encode(&m)) ? 0 : no_memory("host.memory_info");
}

/* ---- lifecycle ---------------------------------------------------------- */

static int h_vm_export(void *ctx, struct fy_rpc_call *call, const json_object *params,
                       json_object **result)
{
    const char *vm;
    char *config = NULL;
    int rc;

    (void)call;
    if ((rc = fy_json_get_strp(params, "vm", "host.vm_export params", false, &vm)) < 0)
        return rc;
    ops_lock(ctx);
    rc = local_of(ctx)->ops->vm_export(local_of(ctx), vm, &config);
    ops_unlock(ctx);
    if (rc < 0)
        return rc;
    if ((*result = json_object_new_object()))
        json_object_object_add(*result, "config", json_object_new_string(config));
    free(config);
    return *result ? 0 : no_memory("host.vm_export");
}

static int h_vm_define(void *ctx, struct fy_rpc_call *call, const json_object *params,
                       json_object **result)
{
    const char *w = "host.vm_define params";
    const char *config, *name, *paths[FY_MAX_DISKS];
    json_object *arr = NULL;
    size_t n = 0;
    int rc;

    (void)call;
    (void)result;
    if ((rc = fy_json_get_strp(params, "config", w, false, &config)) < 0 ||
        (rc = fy_json_get_strp(params, "name", w, true, &name)) < 0)
        return rc;
    if (json_object_object_get_ex(params, "disk_paths", &arr) &&
        !json_object_is_type(arr, json_type_null)) {
        if (!json_object_is_type(arr, json_type_array) ||
            (n = json_object_array_length(arr)) > FY_MAX_DISKS)
            return fy_error(FY_E_PROTO, "malformed %s: \"disk_paths\" is not an array of "
                            "at most %d paths", w, FY_MAX_DISKS);
        for (size_t i = 0; i < n; i++) {
            json_object *p = json_object_array_get_idx(arr, i);
            if (!json_object_is_type(p, json_type_string))
                return fy_error(FY_E_PROTO, "malformed %s: disk_paths[%zu] is not a "
                                "string", w, i);
            paths[i] = json_object_get_string(p);
        }
    } else {
        arr = NULL;
    }
    ops_lock(ctx);
    rc = local_of(ctx)->ops->vm_define(local_of(ctx), config, name, arr ? paths : NULL,
                                       (unsigned)n);
    ops_unlock(ctx);
    return rc;
}

/* The operations that take a VM's name alone. */
typedef int vm_op_fn(struct fy_host *h, const char *vm);

static int vm_only(void *ctx, const json_object *params, const char *method, vm_op_fn *op)
{
    char w[64];
    const char *vm;
    int rc;

    snprintf(w, sizeof(w), "%s params", method);
    if ((rc = fy_json_get_strp(params, "vm", w, false, &vm)) < 0)
        return rc;
    ops_lock(ctx);
    rc = op(local_of(ctx), vm);
    ops_unlock(ctx);
    return rc;
}

#define VM_ONLY(op)                                                                   \
    static int h_##op(void *ctx, struct fy_rpc_call *call, const json_object *params, \
                      json_object **result)                                           \
    {                                                                                 \
        (void)call;                                                                   \
        (void)result;                                                                 \
        return vm_only(ctx, params, "host." #op, local_of(ctx)->ops->op);            \
    }

VM_ONLY(vm_undefine)
VM_ONLY(vm_start)
VM_ONLY(vm_pause)
VM_ONLY(vm_resume)
VM_ONLY(dirty_log_start)
VM_ONLY(dirty_log_stop)

static int h_vm_stop(void *ctx, struct fy_rpc_call *call, const json_object *params,
                     json_object **result)
{
    const char *w = "host.vm_stop params";
    const char *vm;
    bool force;
    int rc;

    (void)call;
    (void)result;
    if ((rc = fy_json_get_strp(params, "vm", w, false, &vm)) < 0 ||
        (rc = fy_json_get_bool(params, "force", w, &force)) < 0)
        return rc;
    ops_lock(ctx);
    rc = local_of(ctx)->ops->vm_stop(local_of(ctx), vm, force);
    ops_unlock(ctx);
    return rc;
}

static int h_incoming_prepare(void *ctx, struct fy_rpc_call *call,
                              const json_object *params, json_object **result)
{
    const char *w = "host.incoming_prepare params";
    const char *config, *vm;
    int rc;

    (void)call;
    (void)result;
    if ((rc = fy_json_get_strp(params, "config", w, false, &config)) < 0 ||
        (rc = fy_json_get_strp(params, "vm", w, false, &vm)) < 0)
        return rc;
    ops_lock(ctx);
    rc = local_of(ctx)->ops->incoming_prepare(local_of(ctx), config, vm);
    ops_unlock(ctx);
    return rc;
}

/* vm_suspend and vm_restore: a VM and an image. */
typedef int image_op_fn(struct fy_host *h, const char *vm, const char *image);

static int vm_image(void *ctx, const json_object *params, const char *w, image_op_fn *op)
{
    const char *vm, *image;
    int rc;

    if ((rc = fy_json_get_strp(params, "vm", w, false, &vm)) < 0 ||
        (rc = fy_json_get_strp(params, "image", w, false, &image)) < 0)
        return rc;
    ops_lock(ctx);
    rc = op(local_of(ctx), vm, image);
    ops_unlock(ctx);
    return rc;
}

static int h_vm_suspend(void *ctx, struct fy_rpc_call *call, const json_object *params,
                        json_object **result)
{
    (void)call;
    (void)result;
    return vm_image(ctx, params, "host.vm_suspend params", local_of(ctx)->ops->vm_suspend);
}

static int h_vm_restore(void *ctx, struct fy_rpc_call *call, const json_object *params,
                        json_object **result)
{
    (void)call;
    (void)result;
    return vm_image(ctx, params, "host.vm_restore params", local_of(ctx)->ops->vm_restore);
}

/* ---- device state --------------------------------------------------------- */

static int h_device_state_save(void *ctx, struct fy_rpc_call *call,
                               const json_object *params, json_object **result)
{
    const char *vm;
    void *state = NULL;
    size_t len = 0;
    int rc;

    (void)call;
    if ((rc = fy_json_get_strp(params, "vm", "host.device_state_save params", false,
                               &vm)) < 0)
        return rc;
    ops_lock(ctx);
    rc = local_of(ctx)->ops->device_state_save(local_of(ctx), vm, &state, &len);
    ops_unlock(ctx);
    if (rc < 0)
        return rc;
    if (len > BINARY_MAX) {
        free(state);
        return fy_error(FY_E_TOOBIG, "device state of VM %s on host %s has %zu bytes; "
                        "the control API carries at most %u", vm, local_of(ctx)->name,
                        len, (unsigned)BINARY_MAX);
    }
    if ((*result = json_object_new_object()))
        json_object_object_add(*result, "state", fy_json_hex_encode(state, len));
    free(state);
    return *result ? 0 : no_memory("host.device_state_save");
}

static int h_device_state_load(void *ctx, struct fy_rpc_call *call,
                               const json_object *params, json_object **result)
{
    const char *w = "host.device_state_load params";
    const char *vm;
    void *state = NULL;
    size_t len = 0;
    int rc;

    (void)call;
    (void)result;
    if ((rc = fy_json_get_strp(params, "vm", w, false, &vm)) < 0 ||
        (rc = fy_json_hex_get(params, "state", w, &state, &len)) < 0)
        return rc;
    ops_lock(ctx);
    rc = local_of(ctx)->ops->device_state_load(local_of(ctx), vm, state, len);
    ops_unlock(ctx);
    free(state);
    return rc;
}

/* ---- files ---------------------------------------------------------------- */

typedef int path_op_fn(struct fy_host *h, const char *path);

static int path_only(void *ctx, const json_object *params, const char *w, path_op_fn *op)
{
    const char *path;
    int rc;

    if ((rc = fy_json_get_strp(params, "path", w, false, &path)) < 0)
        return rc;
    ops_lock(ctx);
    rc = op(local_of(ctx), path);
    ops_unlock(ctx);
    return rc;
}

static int h_file_create(void *ctx, struct fy_rpc_call *call, const json_object *params,
                         json_object **result)
{
    (void)call;
    (void)result;
    return path_only(ctx, params, "host.file_create params",
                     local_of(ctx)->ops->file_create);
}

static int h_file_remove(void *ctx, struct fy_rpc_call *call, const json_object *params,
                         json_object **result)
{
    (void)call;
    (void)result;
    return path_only(ctx, params, "host.file_remove params",
                     local_of(ctx)->ops->file_remove);
}

static int h_file_stat(void *ctx, struct fy_rpc_call *call, const json_object *params,
                       json_object **result)
{
    const char *path;
    uint64_t size = 0;
    int rc;

    (void)call;
    if ((rc = fy_json_get_strp(params, "path", "host.file_stat params", false, &path)) < 0)
        return rc;
    ops_lock(ctx);
    rc = local_of(ctx)->ops->file_stat(local_of(ctx), path, &size);
    ops_unlock(ctx);
    if (rc < 0)
        return rc;
    if ((*result = json_object_new_object()))
        json_object_object_add(*result, "size", json_object_new_uint64(size));
    return *result ? 0 : no_memory("host.file_stat");
}

static int h_disk_create(void *ctx, struct fy_rpc_call *call, const json_object *params,
                         json_object **result)
{
    const char *w = "host.disk_create params", *config, *path, *backing;
    unsigned disk;
    uint64_t size;
    int rc;

    (void)call;
    (void)result;
    if ((rc = fy_json_get_strp(params, "config", w, false, &config)) < 0 ||
        (rc = fy_json_get_uint(params, "disk", w, &disk)) < 0 ||
        (rc = fy_json_get_strp(params, "path", w, false, &path)) < 0 ||
        (rc = fy_json_get_u64(params, "virtual_size", w, &size)) < 0 ||
        (rc = fy_json_get_strp(params, "backing", w, false, &backing)) < 0)
        return rc;
    ops_lock(ctx);
    rc = local_of(ctx)->ops->disk_create(local_of(ctx), config, disk, path, size, backing);
    ops_unlock(ctx);
    return rc;
}

static int digest_fn(struct blocking *b)
{
    return b->h->ops->file_digest(b->h, b->path, &b->size, &b->digest);
}

/* Reading a big file takes a while: on a thread of its own, with
 * heartbeats, and without the operations lock (it does not use the
 * driver; the local implementation locks its cache itself), so inventory
 * keeps answering. */
static int h_file_digest(void *ctx, struct fy_rpc_call *call, const json_object *params,
                         json_object **result)
{
    struct blocking *b;
    int rc;

    if (!(b = calloc(1, sizeof(*b))))
        return no_memory("host.file_digest");
    if ((rc = fy_json_get_strp(params, "path", "host.file_digest params", false,
                               &b->path)) < 0)
        goto out;
    b->fn = digest_fn;
    b->h = local_of(ctx);
    if ((rc = blocking_run(call, b, "file_digest")) < 0)
        goto out;
    if ((*result = json_object_new_object())) {
        json_object_object_add(*result, "size", json_object_new_uint64(b->size));
        json_object_object_add(*result, "digest", fy_json_hash_encode(b->digest));
    }
    rc = *result ? 0 : no_memory("host.file_digest");
out:
    free(b);
    return rc;
}

static int h_disk_rebase(void *ctx, struct fy_rpc_call *call, const json_object *params,
                         json_object **result)
{
    const char *w = "host.disk_rebase params", *path, *backing;
    int rc;

    (void)call;
    (void)result;
    if ((rc = fy_json_get_strp(params, "path", w, false, &path)) < 0 ||
        (rc = fy_json_get_strp(params, "backing", w, false, &backing)) < 0)
        return rc;
    ops_lock(ctx);
    rc = local_of(ctx)->ops->disk_rebase(local_of(ctx), path, backing);
    ops_unlock(ctx);
    return rc;
}

/* ---- the dataplane ----------------------------------------------------------- */

static int h_recv_start(void *ctx, struct fy_rpc_call *call, const json_object *params,
                        json_object **result)
{
    const char *w = "host.recv_start params";
    struct fy_host *h = local_of(ctx), hg;
    struct fy_host_data what;
    struct fy_host_endpoint ep;
    struct fy_host_recv *job = NULL;
    json_object *o;
    const char *listen_addr, *gang = NULL;
    uint64_t id = 0;
    int timeout_ms, rc;

    (void)call;
    if (!json_object_object_get_ex(params, "what", &o))
        return fy_error(FY_E_PROTO, "malformed %s: member \"what\" is missing", w);
    if ((rc = fy_json_host_data_decode(o, &what)) < 0 ||
        (rc = fy_json_get_strp(params, "listen_addr", w, false, &listen_addr)) < 0 ||
        (rc = fy_json_get_int(params, "timeout_ms", w, &timeout_ms)) < 0 ||
        (rc = fy_json_get_strp(params, "gang", w, true, &gang)) < 0)
        return rc;
    if (gang && gang[0]) {
        /* The served host as this transfer's gang member (host.h). */
        if (strlen(gang) >= sizeof(hg.gang))
            return fy_error(FY_E_PROTO, "malformed %s: gang name longer than %zu", w,
                            sizeof(hg.gang) - 1);
        hg = *h;
        snprintf(hg.gang, sizeof(hg.gang), "%s", gang);
        h = &hg;
    }
    ops_lock(ctx);
    rc = h->ops->recv_start(h, &what, listen_addr, timeout_ms, &job, &ep);
    ops_unlock(ctx);
    if (rc < 0)
        return rc;
    if ((rc = job_add(ctx, job, &id)) < 0) {
        h->ops->recv_abort(h, job);
        return rc;
    }
    if (!(*result = json_object_new_object()) || !(o = fy_json_host_endpoint_encode(&ep))) {
        struct fy_host_recv *again;
        if (job_take(ctx, id, &again) == 0)
            h->ops->recv_abort(h, again);
        return no_memory("host.recv_start");
    }
    json_object_object_add(*result, "job", json_object_new_uint64(id));
    json_object_object_add(*result, "endpoint", o);
    return 0;
}

static int join_fn(struct blocking *b)
{
    return b->h->ops->recv_join(b->h, b->job, &b->st);
}

static int h_recv_join(void *ctx, struct fy_rpc_call *call, const json_object *params,
                       json_object **result)
{
    struct blocking *b;
    uint64_t id;
    int rc;

    if ((rc = fy_json_get_u64(params, "job", "host.recv_join params", &id)) < 0)
        return rc;
    if (!(b = calloc(1, sizeof(*b))))
        return no_memory("host.recv_join");
    if ((rc = job_take(ctx, id, &b->job)) < 0)
        goto out;
    b->fn = join_fn;
    b->h = local_of(ctx);
    if ((rc = blocking_run(call, b, "recv_join")) < 0)
        goto out;
    if ((*result = json_object_new_object()))
        json_object_object_add(*result, "st", fy_json_migration_stats_encode(&b->st));
    rc = *result ? 0 : no_memory("host.recv_join");
out:
    free(b);
    return rc;
}

static int h_recv_abort(void *ctx, struct fy_rpc_call *call, const json_object *params,
                        json_object **result)
{
    struct fy_host_recv *job;
    uint64_t id;
    int rc;

    (void)call;
    (void)result;
    if ((rc = fy_json_get_u64(params, "job", "host.recv_abort params", &id)) < 0 ||
        (rc = job_take(ctx, id, &job)) < 0)
        return rc;
    local_of(ctx)->ops->recv_abort(local_of(ctx), job);
    return 0;
}

static int send_fn(struct blocking *b)
{
    return b->h->ops->send(b->h, &b->what, &b->to, &b->sp, &b->res);
}

static int h_send(void *ctx, struct fy_rpc_call *call, const json_object *params,
                  json_object **result)
{
    const char *w = "host.send params";
    json_object *what, *to, *sp, *err;
    struct blocking *b;
    int rc;

    if (!json_object_object_get_ex(params, "what", &what) ||
        !json_object_object_get_ex(params, "to", &to) ||
        !json_object_object_get_ex(params, "params", &sp))
        return fy_error(FY_E_PROTO, "malformed %s: \"what\", \"to\" and \"params\" are "
                        "needed", w);
    if (!(b = calloc(1, sizeof(*b))))
        return no_memory("host.send");
    if ((rc = fy_json_host_data_decode(what, &b->what)) < 0 ||
        (rc = fy_json_host_endpoint_decode(to, &b->to)) < 0 ||
        (rc = fy_json_send_params_decode(sp, &b->sp)) < 0)
        goto out;
    b->fn = send_fn;
    b->h = local_of(ctx);
    b->sp.cancel = &b->cancel;
    b->sp.on_round = blocking_round;
    b->sp.round_ctx = b;
    rc = blocking_run(call, b, "send");
    if (!(*result = json_object_new_object())) {
        rc = no_memory("host.send");
        goto out;
    }
    json_object_object_add(*result, "st", fy_json_migration_stats_encode(&b->res.st));
    json_object_object_add(*result, "paused", json_object_new_boolean(b->res.paused));
    if (b->sp.ndisks)
        json_object_object_add(*result, "disks",
                               fy_json_migration_stats_encode(&b->res.disks));
    if (b->what.kind == FY_HOST_DATA_STREAM)
        json_object_object_add(*result, "stream",
                               fy_json_host_stream_stats_encode(&b->res.stream));
    if (b->what.kind == FY_HOST_DATA_DEVICE_STATE)
        json_object_object_add(*result, "device_state_bytes",
                               json_object_new_uint64(b->res.device_state_bytes));
    if (rc < 0 && (err = json_object_new_object())) {
        json_object_object_add(err, "code", json_object_new_string(fy_errname(rc)));
        json_object_object_add(err, "message", json_object_new_string(fy_error_detail()));
        json_object_object_add(*result, "error", err);
    }
    rc = 0;
out:
    free(b);
    return rc;
}

/* ---- the server ------------------------------------------------------------- */

static const struct fy_rpc_method methods[] = {
    {"host.info", h_info},
    {"host.vm_info", h_vm_info},
    {"host.vm_export", h_vm_export},
    {"host.vm_define", h_vm_define},
    {"host.vm_undefine", h_vm_undefine},
    {"host.vm_start", h_vm_start},
    {"host.vm_stop", h_vm_stop},
    {"host.vm_pause", h_vm_pause},
    {"host.vm_resume", h_vm_resume},
    {"host.incoming_prepare", h_incoming_prepare},
    {"host.vm_suspend", h_vm_suspend},
    {"host.vm_restore", h_vm_restore},
    {"host.dirty_log_start", h_dirty_log_start},
    {"host.dirty_log_stop", h_dirty_log_stop},
    {"host.device_state_save", h_device_state_save},
    {"host.device_state_load", h_device_state_load},
    {"host.capabilities", h_capabilities},
    {"host.memory_info", h_memory_info},
    {"host.file_create", h_file_create},
    {"host.file_remove", h_file_remove},
    {"host.file_stat", h_file_stat},
    {"host.file_digest", h_file_digest},
    {"host.disk_create", h_disk_create},
    {"host.disk_rebase", h_disk_rebase},
    {"host.recv_start", h_recv_start},
    {"host.recv_join", h_recv_join},
    {"host.recv_abort", h_recv_abort},
    {"host.send", h_send},
};

#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

size_t fy_host_server_methods(struct fy_rpc_method *out, size_t max)
{
    for (size_t i = 0; out && i < NMETHODS && i < max; i++)
        out[i] = methods[i];
    return NMETHODS;
}

int fy_host_server_init(struct fy_host_server *hs, struct fy_host *local)
{
    struct server_priv *p;

    if (!hs || !local || !local->ops)
        return fy_error(FY_E_INVAL, "fy_host_server_init: no host to serve");
    memset(hs, 0, sizeof(*hs));
    if (!(p = calloc(1, sizeof(*p))))
        return fy_error(FY_E_NOMEM, "no memory to serve host %s", local->name);
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->op_lock, NULL);
    hs->local = local;
    hs->jobs = p;
    return 0;
}

void fy_host_server_fini(struct fy_host_server *hs)
{
    struct server_priv *p;

    if (!hs || !(p = hs->jobs))
        return;
    for (unsigned i = 0; i < MAX_JOBS; i++)
        if (p->jobs[i].id)
            hs->local->ops->recv_abort(hs->local, p->jobs[i].job);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->op_lock);
    free(p);
    hs->jobs = NULL;
}
