/* A host reached over the control API (controlplane/host_rpc.h): every
 * operation of struct fy_host_ops is one call of the matching "host.*"
 * method (host_server.c lists their params and results) on one
 * connection, one call at a time.
 *
 * What does not cross the wire:
 *   - A receive job is, here, the id of the job at the far host.
 *   - send's cancel flag is read once, before the call: a remote send is
 *     not cancellable mid-transfer, because the connection it would go
 *     on is busy with the send itself (a second connection could carry
 *     it; not written).  The far host cancels on its own when it can no
 *     longer reach us.
 *   - send's on_round is called here, on the caller's thread, with the
 *     rounds the far host reports in its progress frames.
 *
 * An error at the far host comes back with its code and message as the
 * RPC layer gives them ("host ADDR: ..."); only values that do not decode
 * are reported here, naming the host. */
#include "controlplane/host_rpc.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controlplane/host_json.h"
#include "ferry/error.h"

#define DEFAULT_TIMEOUT_MS 30000
#define ERR_MAX 1024

struct remote {
    pthread_mutex_t lock; /* one call at a time on conn */
    struct fy_rpc_conn *conn;
    int timeout_ms;
};

/* What a struct fy_host_recv * points to here. */
struct remote_job {
    uint64_t id;
};

/* ---- calls ------------------------------------------------------------------ */

/* Calls 'method' with 'params' (consumed; NULL means it could not be
 * built) and, on success, hands its result to '*result' if not NULL. */
static int call_cb(struct fy_host *h, const char *method, json_object *params,
                   json_object **result, fy_rpc_progress_fn *cb, void *cb_ctx)
{
    struct remote *r = h->impl;
    int rc;

    if (result)
        *result = NULL;
    if (!r) {
        json_object_put(params);
        return fy_error(FY_E_CLOSED, "host %s is not connected", h->name);
    }
    if (!params)
        return fy_error(FY_E_NOMEM, "no memory for a call of %s to host %s", method,
                        h->name);
    pthread_mutex_lock(&r->lock);
    rc = fy_rpc_call(r->conn, method, params, result, cb, cb_ctx, r->timeout_ms);
    pthread_mutex_unlock(&r->lock);
    return rc;
}

static int call(struct fy_host *h, const char *method, json_object *params,
                json_object **result)
{
    return call_cb(h, method, params, result, NULL, NULL);
}

/* A value from host 'h' that does not decode: the decoder's detail, with
 * the host and method. */
static int malformed(struct fy_host *h, const char *method)
{
    return fy_error(FY_E_PROTO, "host %s answered %s with %s", h->name, method,
                    fy_error_detail());
}

/* Params objects; NULL when out of memory (call() reports it). */
static json_object *params1(const char *k, const char *v)
{
    json_object *o = json_object_new_object();
    if (o)
        json_object_object_add(o, k, json_object_new_string(v ? v : ""));
    return o;
}

static json_object *params2(const char *k1, const char *v1, const char *k2, const char *v2)
{
    json_object *o = params1(k1, v1);
    if (o)
        json_object_object_add(o, k2, json_object_new_string(v2 ? v2 : ""));
    return o;
}

/* ---- inventory -------------------------------------------------------------- */

static int remote_host_info(struct fy_host *h, struct fy_host_info *out)
{
    json_object *res;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = call(h, "host.info", json_object_new_object(), &res)) < 0)
        return rc;
    rc = fy_json_host_info_decode(res, out);
    json_object_put(res);
    return rc < 0 ? malformed(h, "host.info") : 0;
}

static int remote_vm_info(struct fy_host *h, const char *vm, struct fy_vm_info *out)
{
    json_object *res;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = call(h, "host.vm_info", params1("vm", vm), &res)) < 0)
        return rc;
    rc = fy_json_vm_info_decode(res, out);
    json_object_put(res);
    return rc < 0 ? malformed(h, "host.vm_info") : 0;
}

static int remote_capabilities(struct fy_host *h, struct fy_host_caps *out)
{
    json_object *res;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = call(h, "host.capabilities", json_object_new_object(), &res)) < 0)
        return rc;
    rc = fy_json_host_caps_decode(res, out);
    json_object_put(res);
    return rc < 0 ? malformed(h, "host.capabilities") : 0;
}

static int remote_memory_info(struct fy_host *h, const char *vm, struct fy_host_memory *out)
{
    json_object *res;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = call(h, "host.memory_info", params1("vm", vm), &res)) < 0)
        return rc;
    rc = fy_json_host_memory_decode(res, out);
    json_object_put(res);
    return rc < 0 ? malformed(h, "host.memory_info") : 0;
}

/* ---- lifecycle -------------------------------------------------------------- */

static int remote_vm_export(struct fy_host *h, const char *vm, char **out)
{
    json_object *res;
    const char *config;
    int rc;

    *out = NULL;
    if ((rc = call(h, "host.vm_export", params1("vm", vm), &res)) < 0)
        return rc;
    if (fy_json_get_strp(res, "config", "vm_export answer", false, &config) < 0)
        rc = malformed(h, "host.vm_export");
    else if (!(*out = strdup(config)))
        rc = fy_error(FY_E_NOMEM, "no memory for the configuration of VM %s", vm);
    json_object_put(res);
    return rc;
}

static int remote_vm_define(struct fy_host *h, const char *config, const char *name,
                            const char *const *disk_paths, unsigned ndisks)
{
    json_object *p = params1("config", config), *arr;

    if (p && name)
        json_object_object_add(p, "name", json_object_new_string(name));
    if (p && disk_paths) {
        arr = json_object_new_array();
        for (unsigned i = 0; arr && i < ndisks; i++)
            json_object_array_add(arr, json_object_new_string(disk_paths[i]));
        json_object_object_add(p, "disk_paths", arr);
    }
    return call(h, "host.vm_define", p, NULL);
}

static int remote_vm_undefine(struct fy_host *h, const char *vm)
{
    return call(h, "host.vm_undefine", params1("vm", vm), NULL);
}

static int remote_vm_start(struct fy_host *h, const char *vm)
{
    return call(h, "host.vm_start", params1("vm", vm), NULL);
}

static int remote_vm_stop(struct fy_host *h, const char *vm, bool force)
{
    json_object *p = params1("vm", vm);

    if (p)
        json_object_object_add(p, "force", json_object_new_boolean(force));
    return call(h, "host.vm_stop", p, NULL);
}

static int remote_vm_pause(struct fy_host *h, const char *vm)
{
    return call(h, "host.vm_pause", params1("vm", vm), NULL);
}

static int remote_vm_resume(struct fy_host *h, const char *vm)
{
    return call(h, "host.vm_resume", params1("vm", vm), NULL);
}

static int remote_incoming_prepare(struct fy_host *h, const char *config, const char *vm)
{
    return call(h, "host.incoming_prepare", params2("config", config, "vm", vm), NULL);
}

static int remote_vm_suspend(struct fy_host *h, const char *vm, const char *image)
{
    return call(h, "host.vm_suspend", params2("vm", vm, "image", image), NULL);
}

static int remote_vm_restore(struct fy_host *h, const char *vm, const char *image)
{
    return call(h, "host.vm_restore", params2("vm", vm, "image", image), NULL);
}

static int remote_dirty_log_start(struct fy_host *h, const char *vm)
{
    return call(h, "host.dirty_log_start", params1("vm", vm), NULL);
}

static int remote_dirty_log_stop(struct fy_host *h, const char *vm)
{
    return call(h, "host.dirty_log_stop", params1("vm", vm), NULL);
}

/* ---- device state ------------------------------------------------------------ */

static int remote_device_state_save(struct fy_host *h, const char *vm, void **out,
                                    size_t *len)
{
    json_object *res;
    int rc;

    *out = NULL;
    *len = 0;
    if ((rc = call(h, "host.device_state_save", params1("vm", vm), &res)) < 0)
        return rc;
    rc = fy_json_hex_get(res, "state", "device_state_save answer", out, len);
    json_object_put(res);
    if (rc == -FY_E_PROTO)
        rc = malformed(h, "host.device_state_save");
    return rc;
}

static int remote_device_state_load(struct fy_host *h, const char *vm, const void *state,
                                    size_t len)
{
    json_object *p = params1("vm", vm), *hex;

    if (p) {
        if (!(hex = fy_json_hex_encode(state, len))) {
            json_object_put(p);
            p = NULL;
        } else {
            json_object_object_add(p, "state", hex);
        }
    }
    return call(h, "host.device_state_load", p, NULL);
}

/* ---- files -------------------------------------------------------------------- */

static int remote_file_create(struct fy_host *h, const char *path)
{
    return call(h, "host.file_create", params1("path", path), NULL);
}

static int remote_file_remove(struct fy_host *h, const char *path)
{
    return call(h, "host.file_remove", params1("path", path), NULL);
}

static int remote_disk_create(struct fy_host *h, const char *config, unsigned disk,
                              const char *path, uint64_t virtual_size, const char *backing)
{
    json_object *p = json_object_new_object();

    if (p) {
        json_object_object_add(p, "config", json_object_new_string(config));
        json_object_object_add(p, "disk", json_object_new_uint64(disk));
        json_object_object_add(p, "path", json_object_new_string(path));
        json_object_object_add(p, "virtual_size", json_object_new_uint64(virtual_size));
        json_object_object_add(p, "backing", json_object_new_string(backing ? backing : ""));
    }
    return call(h, "host.disk_create", p, NULL);
}

static int remote_file_stat(struct fy_host *h, const char *path, uint64_t *size)
{
    json_object *res;
    int rc;

    if ((rc = call(h, "host.file_stat", params1("path", path), &res)) < 0)
        return rc;
    if (fy_json_get_u64(res, "size", "file_stat answer", size) < 0)
        rc = malformed(h, "host.file_stat");
    json_object_put(res);
    return rc;
}

static int remote_file_digest(struct fy_host *h, const char *path, uint64_t *size,
                              fy_hash128 *digest)
{
    json_object *res;
    int rc;

    /* The far host sends a progress frame every second while it reads. */
    if ((rc = call(h, "host.file_digest", params1("path", path), &res)) < 0)
        return rc;
    if (fy_json_get_u64(res, "size", "file_digest answer", size) < 0 ||
        fy_json_hash_get(res, "digest", "file_digest answer", digest) < 0)
        rc = malformed(h, "host.file_digest");
    json_object_put(res);
    return rc;
}

static int remote_disk_rebase(struct fy_host *h, const char *path, const char *backing)
{
    json_object *p = params1("path", path);

    if (p)
        json_object_object_add(p, "backing", json_object_new_string(backing));
    return call(h, "host.disk_rebase", p, NULL);
}

/* ---- the dataplane ------------------------------------------------------------ */

/* Ends job 'id' at the far host, keeping this thread's error detail. */
static void abort_job(struct fy_host *h, uint64_t id)
{
    char saved[ERR_MAX];
    json_object *p = json_object_new_object();

    snprintf(saved, sizeof(saved), "%s", fy_error_detail());
    if (p)
        json_object_object_add(p, "job", json_object_new_uint64(id));
    if (call(h, "host.recv_abort", p, NULL) < 0) {
        if (saved[0])
            fy_error(FY_E_IO, "%s", saved);
        else
            fy_error_clear();
    }
}

static int remote_recv_start(struct fy_host *h, const struct fy_host_data *what,
                             const char *listen_addr, int timeout_ms,
                             struct fy_host_recv **job, struct fy_host_endpoint *ep)
{
    json_object *p, *res, *e;
    struct remote_job *j;
    uint64_t id = 0;
    int rc;

    if (!job || !ep || !what || !listen_addr)
        return fy_error(FY_E_INVAL, "recv_start: missing argument");
    *job = NULL;
    memset(ep, 0, sizeof(*ep));
    if ((p = json_object_new_object())) {
        json_object_object_add(p, "what", fy_json_host_data_encode(what));
        json_object_object_add(p, "listen_addr", json_object_new_string(listen_addr));
        json_object_object_add(p, "timeout_ms", json_object_new_int(timeout_ms));
        if (h->gang[0])
            json_object_object_add(p, "gang", json_object_new_string(h->gang));
    }
    if ((rc = call(h, "host.recv_start", p, &res)) < 0)
        return rc;
    if (fy_json_get_u64(res, "job", "recv_start answer", &id) < 0 ||
        !json_object_object_get_ex(res, "endpoint", &e) ||
        fy_json_host_endpoint_decode(e, ep) < 0) {
        rc = malformed(h, "host.recv_start");
        goto fail;
    }
    if (!(j = calloc(1, sizeof(*j)))) {
        rc = fy_error(FY_E_NOMEM, "no memory for a receiving job of host %s", h->name);
        goto fail;
    }
    j->id = id;
    *job = (struct fy_host_recv *)j;
    json_object_put(res);
    return 0;
fail:
    if (id)
        abort_job(h, id);
    json_object_put(res);
    memset(ep, 0, sizeof(*ep));
    return rc;
}

static int remote_recv_join(struct fy_host *h, struct fy_host_recv *job,
                            struct fy_migration_stats *st)
{
    struct remote_job *j = (struct remote_job *)job;
    json_object *p, *res, *o;
    int rc;

    if (st)
        memset(st, 0, sizeof(*st));
    if (!j)
        return fy_error(FY_E_INVAL, "recv_join: no job");
    if ((p = json_object_new_object()))
        json_object_object_add(p, "job", json_object_new_uint64(j->id));
    free(j);
    /* The far host sends a progress frame every second while it waits. */
    if ((rc = call(h, "host.recv_join", p, &res)) < 0)
        return rc;
    if (st && (!json_object_object_get_ex(res, "st", &o) ||
               fy_json_migration_stats_decode(o, st) < 0))
        rc = malformed(h, "host.recv_join");
    json_object_put(res);
    return rc;
}

static void remote_recv_abort(struct fy_host *h, struct fy_host_recv *job)
{
    struct remote_job *j = (struct remote_job *)job;

    if (!j)
        return;
    abort_job(h, j->id);
    free(j);
}

/* Progress frames of host.send: rounds for the caller's on_round. */
static void send_progress(void *ctx, const json_object *progress)
{
    const struct fy_host_send_params *sp = ctx;
    struct fy_round_stats rs;
    json_object *o;

    if (sp->on_round && json_object_object_get_ex(progress, "round", &o) &&
        fy_json_round_stats_decode(o, &rs) == 0)
        sp->on_round(&rs, sp->round_ctx);
}

/* The far send's own failure, from the "error" member of its answer. */
static int far_error(struct fy_host *h, const json_object *err)
{
    const char *name = NULL, *msg = NULL;
    int code = FY_E_PEER;

    fy_json_get_strp(err, "code", "send error", true, &name);
    fy_json_get_strp(err, "message", "send error", true, &msg);
    for (int i = 1; name && i < FY_E__COUNT; i++)
        if (strcmp(fy_errname(i), name) == 0)
            code = i;
    return fy_error(code, "host %s: %s", h->name, msg ? msg : fy_strerror(code));
}

static int remote_send(struct fy_host *h, const struct fy_host_data *what,
                       const struct fy_host_endpoint *to,
                       const struct fy_host_send_params *params,
                       struct fy_host_send_result *out)
{
    json_object *p, *res, *o;
    int rc;

    if (!what || !to || !params || !out)
        return fy_error(FY_E_INVAL, "send: missing argument");
    memset(out, 0, sizeof(*out));
    if (params->cancel && *params->cancel)
        return fy_error(FY_E_CANCELLED, "sending from host %s cancelled before it "
                        "started", h->name);
    if ((p = json_object_new_object())) {
        json_object_object_add(p, "what", fy_json_host_data_encode(what));
        json_object_object_add(p, "to", fy_json_host_endpoint_encode(to));
        json_object_object_add(p, "params", fy_json_send_params_encode(params));
    }
    if ((rc = call_cb(h, "host.send", p, &res, send_progress, (void *)params)) < 0)
        return rc;
    if (!json_object_object_get_ex(res, "st", &o) ||
        fy_json_migration_stats_decode(o, &out->st) < 0 ||
        fy_json_get_bool(res, "paused", "send answer", &out->paused) < 0 ||
        (json_object_object_get_ex(res, "disks", &o) &&
         fy_json_migration_stats_decode(o, &out->disks) < 0) ||
        (json_object_object_get_ex(res, "stream", &o) &&
         fy_json_host_stream_stats_decode(o, &out->stream) < 0) ||
        (json_object_object_get_ex(res, "device_state_bytes", &o) &&
         fy_json_get_u64(res, "device_state_bytes", "send answer",
                         &out->device_state_bytes) < 0))
        rc = malformed(h, "host.send");
    else if (json_object_object_get_ex(res, "error", &o))
        rc = far_error(h, o);
    json_object_put(res);
    return rc;
}

/* ---- the table, opening and closing ------------------------------------------- */

static const struct fy_host_ops remote_ops = {
    .name = "remote",
    .host_info = remote_host_info,
    .vm_info = remote_vm_info,
    .capabilities = remote_capabilities,
    .memory_info = remote_memory_info,
    .vm_export = remote_vm_export,
    .vm_define = remote_vm_define,
    .vm_undefine = remote_vm_undefine,
    .vm_start = remote_vm_start,
    .vm_stop = remote_vm_stop,
    .vm_pause = remote_vm_pause,
    .vm_resume = remote_vm_resume,
    .incoming_prepare = remote_incoming_prepare,
    .vm_suspend = remote_vm_suspend,
    .vm_restore = remote_vm_restore,
    .dirty_log_start = remote_dirty_log_start,
    .dirty_log_stop = remote_dirty_log_stop,
    .device_state_save = remote_device_state_save,
    .device_state_load = remote_device_state_load,
    .file_create = remote_file_create,
    .file_remove = remote_file_remove,
    .file_stat = remote_file_stat,
    .file_digest = remote_file_digest,
    .disk_create = remote_disk_create,
    .disk_rebase = remote_disk_rebase,
    .recv_start = remote_recv_start,
    .recv_join = remote_recv_join,
    .recv_abort = remote_recv_abort,
    .send = remote_send,
};

int fy_host_remote_open(struct fy_host *h, const char *name, const char *addr,
                        const struct fy_rpc_key *key, int timeout_ms)
{
    struct remote *r;
    int rc;

    if (!h || !addr || !key)
        return fy_error(FY_E_INVAL, "fy_host_remote_open: NULL argument");
    memset(h, 0, sizeof(*h));
    if (!(r = calloc(1, sizeof(*r))))
        return fy_error(FY_E_NOMEM, "no memory for host %s", name ? name : addr);
    r->timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS;
    if ((rc = fy_rpc_connect(addr, key, r->timeout_ms, &r->conn)) < 0) {
        free(r);
        return rc;
    }
    pthread_mutex_init(&r->lock, NULL);
    snprintf(h->name, sizeof(h->name), "%s", name ? name : addr);
    h->ops = &remote_ops;
    h->impl = r;
    return 0;
}

void fy_host_remote_close(struct fy_host *h)
{
    struct remote *r;

    if (!h || !(r = h->impl) || h->ops != &remote_ops)
        return;
    fy_rpc_close(r->conn);
    pthread_mutex_destroy(&r->lock);
    free(r);
    memset(h, 0, sizeof(*h));
}
