/* The host agent: one driver instance, one store, one RPC server serving
 * the host.* methods (host_rpc.h) and the agent.* methods ferryctl calls
 * (agent.h).
 *
 * Reading order: the agent and its log; migrations as jobs (a worker thread
 * runs fy_migrate while the handler's thread streams progress); the
 * agent.* handlers; start (with the recovery of migrations a previous run
 * left running) and stop. */
#include "controlplane/agent.h"
#include "controlplane/json_util.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "controlplane/driver.h"
#include "controlplane/events.h"
#include "controlplane/host.h"
#include "controlplane/host_rpc.h"
#include "controlplane/rpc.h"
#include "controlplane/workflow.h"
#include "ferry/error.h"

#define MAX_METHODS 64
#define KEEP_FINISHED 32          /* finished jobs kept for jobinfo */
#define PEER_TIMEOUT_MS 5000      /* agent.info / agent.hosts of a peer */
#define REMOTE_TIMEOUT_MS 120000  /* each answer of the target's host.* */
#define PROGRESS_EVERY_MS 1000    /* a progress frame at least this often */

/* A migration this agent runs (or ran, since it started). */
struct job {
    struct job *next;
    struct fy_agent *a;
    int64_t id;      /* 0 until the store has the record */
    int64_t raw_id;  /* written by fy_migrate on the worker thread */
    char vm[FY_NAME_MAX], target[FY_NAME_MAX];
    char fail_at[FY_NAME_MAX]; /* test hook (workflow.h): "" for none */
    enum fy_migration_kind kind;
    struct fy_migration_request req;
    struct fy_host src, dst;
    pthread_t worker;
    bool attached;   /* a handler waits on it */

    /* Under the agent's lock. */
    char action[FY_NAME_MAX];
    struct timespec t0;
    double elapsed;  /* when done */
    bool done;
    int rc;
    char error[FY_STORE_ERROR_MAX];
    unsigned seq;    /* bumped on every change */
    uint64_t mem_total;
    unsigned rounds;
    struct fy_round_stats last;
    uint64_t processed, sent, zero, dup, dup_shared, resent, wire;
};

struct fy_agent {
    struct fy_host_server hs; /* first: the host.* handlers' context */
    struct fy_agent_config cfg;
    struct fy_rpc_key key;
    struct fy_driver_handle drv;
    struct fy_host local;
    struct fy_store *store;
    struct fy_rpc_server *srv;
    bool hs_ready;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* broadcast on every job change */
    struct job *jobs;
};

/* ---- log ------------------------------------------------------------------- */

/* One line to stderr: "2024-05-01 10:00:00 ferryd host1: ...". */
__attribute__((format(printf, 2, 3)))
static void agent_log(const struct fy_agent *a, const char *fmt, ...)
{
    char line[1024], stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    va_list ap;
    int n;

    localtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
    n = snprintf(line, sizeof(line), "%s ferryd %s: ", stamp, a->cfg.host);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

static void rpc_log(void *ctx, const char *line)
{
    agent_log(ctx, "%s", line);
}

/* ---- JSON helpers ---------------------------------------------------------- */

static const char *get_str(const json_object *o, const char *k)
{
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static bool get_int(const json_object *o, const char *k, int64_t *out)
{
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v) ||
        !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_string)))
        return false;
    *out = json_object_get_int64(v);
    return true;
}

static bool get_bool(const json_object *o, const char *k, bool dflt)
{
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v))
        return dflt;
    return json_object_get_boolean(v);
}

/* The "id" parameter of jobinfo, events and cancel. */
static int param_id(const json_object *params, const char *method, int64_t *id)
{
    if (!get_int(params, "id", id) || *id <= 0)
        return fy_error(FY_E_INVAL, "%s needs a migration id (a positive number): "
                        "list them with `ferryctl migrations`", method);
    return 0;
}

static const char *power_name(enum fy_power p)
{
    switch (p) {
    case FY_POWER_OFF: return "off";
    case FY_POWER_RUNNING: return "running";
    case FY_POWER_PAUSED: return "paused";
    case FY_POWER_SUSPENDED: return "suspended";
    }
    return "unknown";
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static json_object *record_json(const struct fy_migration_record *r)
{
    json_object *o = json_object_new_object(), *net = json_object_new_object();

    fy_json_put_int(o, "id", r->id);
    fy_json_put_str(o, "vm", r->vm);
    fy_json_put_str(o, "kind", fy_migration_kind_name(r->kind));
    fy_json_put_str(o, "source", r->source);
    fy_json_put_str(o, "target", r->target);
    fy_json_put_str(o, "state", fy_mig_state_name(r->state));
    fy_json_put_int(o, "started_us", r->started_us);
    fy_json_put_int(o, "ended_us", r->ended_us);
    fy_json_put_double(o, "seconds", r->seconds);
    fy_json_put_double(o, "downtime", r->downtime);
    fy_json_put_int(o, "wire_bytes", (int64_t)r->wire_bytes);
    fy_json_put_int(o, "pages_sent", (int64_t)r->pages_sent);
    fy_json_put_int(o, "pages_zero", (int64_t)r->pages_zero);
    fy_json_put_int(o, "pages_dup", (int64_t)r->pages_dup);
    fy_json_put_bool(o, "verified", r->verified);
    fy_json_put_str(o, "error", r->error);
    for (unsigned c = 0; c < FY_DATA__COUNT; c++)
        if (r->net[c][0])
            fy_json_put_str(net, fy_data_class_name((enum fy_data_class)c), r->net[c]);
    json_object_object_add(o, "net", net);
    return o;
}

/* ---- migrations as jobs ------------------------------------------------------ */

/* What a running job reports (progress frames and jobinfo).  Under the
 * agent's lock. */
static json_object *job_json(const struct job *j)
{
    json_object *o = json_object_new_object();
    double remaining = 0;

    fy_json_put_int(o, "id", j->id);
    fy_json_put_str(o, "vm", j->vm);
    fy_json_put_str(o, "kind", fy_migration_kind_name(j->kind));
    fy_json_put_str(o, "source", j->src.name);
    fy_json_put_str(o, "target", j->target);
    fy_json_put_str(o, "state", j->done ? (j->rc == 0 ? "succeeded" : "failed") : "running");
    fy_json_put_str(o, "action", j->action);
    fy_json_put_double(o, "elapsed", j->done ? j->elapsed : seconds_since(&j->t0));
    fy_json_put_int(o, "round", j->rounds);
    fy_json_put_bool(o, "final", j->last.final);
    /* What the next round has to move: the final round's time estimate at
     * the rate pages moved. */
    if (j->rounds && !j->last.final && !j->done)
        remaining = j->last.expected_downtime * j->last.page_rate * FY_PAGE_SIZE;
    if (j->rounds == 0 && !j->done)
        remaining = (double)j->mem_total;
    if (remaining > (double)j->mem_total)
        remaining = (double)j->mem_total;
    fy_json_put_int(o, "data_processed", (int64_t)j->processed);
    fy_json_put_int(o, "data_remaining", (int64_t)remaining);
    fy_json_put_int(o, "data_total", (int64_t)j->mem_total);
    fy_json_put_double(o, "throughput", j->last.throughput);
    fy_json_put_double(o, "dirty_rate", j->last.dirty_rate);
    fy_json_put_int(o, "pages_sent", (int64_t)j->sent);
    fy_json_put_int(o, "pages_zero", (int64_t)j->zero);
    fy_json_put_int(o, "pages_dup", (int64_t)j->dup);
    fy_json_put_int(o, "pages_dup_shared", (int64_t)j->dup_shared);
    fy_json_put_int(o, "pages_resent", (int64_t)j->resent);
    fy_json_put_int(o, "wire_bytes", (int64_t)j->wire);
    fy_json_put_double(o, "expected_downtime", j->last.expected_downtime);
    if (j->done && j->rc < 0)
        fy_json_put_str(o, "error", j->error);
    return o;
}

static void job_on_action(const char *name, void *ctx)
{
    struct job *j = ctx;

    pthread_mutex_lock(&j->a->lock);
    if (!j->id)
        j->id = j->raw_id;
    snprintf(j->action, sizeof(j->action), "%s", name);
    j->seq++;
    pthread_cond_broadcast(&j->a->cond);
    pthread_mutex_unlock(&j->a->lock);
}

static void job_on_round(const struct fy_round_stats *st, void *ctx)
{
    struct job *j = ctx;

    pthread_mutex_lock(&j->a->lock);
    j->rounds = st->round;
    j->last = *st;
    j->processed += st->dirty_pages * FY_PAGE_SIZE;
    j->sent += st->pages_sent;
    j->zero += st->pages_zero;
    j->dup += st->pages_dup;
    j->dup_shared += st->pages_dup_shared;
    j->resent += st->pages_resent;
    j->wire += st->wire_bytes;
    j->seq++;
    pthread_cond_broadcast(&j->a->cond);
    pthread_mutex_unlock(&j->a->lock);
}

static void *job_main(void *arg)
{
    struct job *j = arg;
    int rc = fy_migrate(&j->req, &j->src, &j->dst, j->a->store, &j->raw_id);

    pthread_mutex_lock(&j->a->lock);
    if (!j->id)
        j->id = j->raw_id;
    j->rc = rc;
    if (rc < 0)
        snprintf(j->error, sizeof(j->error), "%s", fy_error_detail());
    j->elapsed = seconds_since(&j->t0);
    j->done = true;
    j->seq++;
    pthread_cond_broadcast(&j->a->cond);
    pthread_mutex_unlock(&j->a->lock);
    return NULL;
}

/* Drops finished jobs beyond KEEP_FINISHED (the store has them).  Under
 * the lock. */
static void jobs_prune(struct fy_agent *a)
{
    unsigned kept = 0;

    for (struct job **p = &a->jobs; *p;) {
        struct job *j = *p;
        if (j->done && !j->attached && ++kept > KEEP_FINISHED) {
            *p = j->next;
            free(j);
            continue;
        }
        p = &j->next;
    }
}

static struct job *job_find(struct fy_agent *a, int64_t id)
{
    for (struct job *j = a->jobs; j; j = j->next)
        if (j->id == id)
            return j;
    return NULL;
}

/* The peer 'to' names (its name, or its management address). */
static const struct fy_peer *resolve_peer(const struct fy_agent *a, const char *to)
{
    const struct fy_peer *p = fy_agent_config_peer(&a->cfg, to);

    for (unsigned i = 0; !p && i < a->cfg.npeers; i++)
        if (strcmp(a->cfg.peers[i].addr, to) == 0)
            p = &a->cfg.peers[i];
    return p;
}

static int no_peer(const struct fy_agent *a, const char *to)
{
    char names[512] = "";
    size_t n = 0;

    for (unsigned i = 0; i < a->cfg.npeers && n < sizeof(names); i++)
        n += (size_t)snprintf(names + n, sizeof(names) - n, "%s%s", i ? ", " : "",
                              a->cfg.peers[i].name);
    return fy_error(FY_E_NOTFOUND, "host %s is not a peer of host %s (peers: %s): add "
                    "it to peers= in %s's configuration", to, a->cfg.host,
                    names[0] ? names : "none", a->cfg.host);
}

/* Calls 'method' at the agent 'addr'; the result into *out. */
static int peer_call(const struct fy_agent *a, const char *addr, const char *method,
                     json_object **out)
{
    struct fy_rpc_conn *c = NULL;
    int rc = fy_rpc_connect(addr, &a->key, PEER_TIMEOUT_MS, &c);

    *out = NULL;
    if (rc == 0)
        rc = fy_rpc_call(c, method, NULL, out, NULL, NULL, PEER_TIMEOUT_MS);
    fy_rpc_close(c);
    return rc;
}

/* Opens the remote host of peer 'p', its networks from its agent.info. */
static int open_target(struct fy_agent *a, const struct fy_peer *p, struct fy_host *h)
{
    static const char *const roles[FY_NET__COUNT] = {"management_host", "migration",
                                                     "provisioning"};
    json_object *info = NULL;
    int rc;

    if ((rc = peer_call(a, p->addr, "agent.info", &info)) < 0)
        return rc;
    rc = fy_host_remote_open(h, p->name, p->addr, &a->key, REMOTE_TIMEOUT_MS);
    for (unsigned r = 0; rc == 0 && r < FY_NET__COUNT; r++) {
        const char *v = get_str(info, roles[r]);
        snprintf(h->net[r], sizeof(h->net[r]), "%s", v ? v : "");
    }
    json_object_put(info);
    return rc;
}

/* ---- the agent.* handlers ------------------------------------------------------ */

#define AGENT(ctx) ((struct fy_agent *)(ctx))

/* "HOST" of "HOST:PORT" / "[V6]:PORT". */
static void addr_host(const char *addr, char *out, size_t n)
{
    const char *end = strrchr(addr, ':');
    size_t len = end ? (size_t)(end - addr) : strlen(addr);

    if (len >= 2 && addr[0] == '[' && addr[len - 1] == ']') {
        addr++;
        len -= 2;
    }
    if (len >= n)
        len = n - 1;
    memcpy(out, addr, len);
    out[len] = '\0';
}

static json_object *self_info(struct fy_agent *a)
{
    json_object *o = json_object_new_object();
    struct fy_host_info hi;
    struct fy_vm_list vl = {0};

    fy_json_put_str(o, "name", a->cfg.host);
    fy_json_put_str(o, "driver", a->drv.ops->name);
    fy_json_put_str(o, "management", fy_agent_addr(a));
    fy_json_put_str(o, "management_host", a->local.net[FY_NET_MANAGEMENT]);
    fy_json_put_str(o, "migration", a->local.net[FY_NET_MIGRATION]);
    fy_json_put_str(o, "provisioning", a->local.net[FY_NET_PROVISIONING]);
    if (a->drv.ops->host_info(a->drv.d, &hi) == 0) {
        fy_json_put_str(o, "cpu_vendor", hi.cpu_vendor);
        fy_json_put_int(o, "mem_total", (int64_t)hi.mem_total);
        fy_json_put_int(o, "mem_free", (int64_t)hi.mem_free);
        fy_json_put_int(o, "cpus_total", hi.cpus_total);
        fy_json_put_int(o, "cpus_free", hi.cpus_free);
        fy_json_put_bool(o, "maintenance", hi.maintenance);
        json_object *ds = json_object_new_array();
        for (unsigned i = 0; i < hi.ndatastores && i < FY_MAX_DATASTORES; i++) {
            json_object *d = json_object_new_object();
            fy_json_put_str(d, "name", hi.datastores[i].name);
            fy_json_put_bool(d, "shared", hi.datastores[i].shared);
            fy_json_put_int(d, "free", (int64_t)hi.datastores[i].free);
            json_object_array_add(ds, d);
        }
        json_object_object_add(o, "datastores", ds);
    }
    if (a->drv.ops->vm_list(a->drv.d, &vl) == 0) {
        fy_json_put_int(o, "vms", vl.n);
        free(vl.names);
    }
    return o;
}

static int h_info(void *ctx, struct fy_rpc_call *call, const json_object *params,
                  json_object **result)
{
    (void)call;
    (void)params;
    *result = self_info(AGENT(ctx));
    return 0;
}

static int h_hosts(void *ctx, struct fy_rpc_call *call, const json_object *params,
                   json_object **result)
{
    struct fy_agent *a = AGENT(ctx);
    json_object *hosts = json_object_new_array(), *self = self_info(a);

    (void)call;
    (void)params;
    fy_json_put_bool(self, "self", true);
    fy_json_put_bool(self, "reachable", true);
    json_object_array_add(hosts, self);
    for (unsigned i = 0; i < a->cfg.npeers; i++) {
        const struct fy_peer *p = &a->cfg.peers[i];
        json_object *info = NULL, *h;

        if (peer_call(a, p->addr, "agent.info", &info) == 0) {
            h = info;
            fy_json_put_bool(h, "reachable", true);
        } else {
            h = json_object_new_object();
            fy_json_put_bool(h, "reachable", false);
            fy_json_put_str(h, "error", fy_error_detail());
        }
        /* The name and address this host knows it by. */
        fy_json_put_str(h, "name", p->name);
        fy_json_put_str(h, "management", p->addr);
        fy_json_put_bool(h, "self", false);
        json_object_array_add(hosts, h);
    }
    *result = json_object_new_object();
    json_object_object_add(*result, "hosts", hosts);
    return 0;
}

static int h_list(void *ctx, struct fy_rpc_call *call, const json_object *params,
                  json_object **result)
{
    struct fy_agent *a = AGENT(ctx);
    struct fy_vm_list vl = {0};
    json_object *vms;
    int rc;

    (void)call;
    (void)params;
    if ((rc = a->drv.ops->vm_list(a->drv.d, &vl)) < 0)
        return rc;
    vms = json_object_new_array();
    for (unsigned i = 0; i < vl.n; i++) {
        struct fy_vm_info vi;
        json_object *v = json_object_new_object();

        fy_json_put_str(v, "name", vl.names[i]);
        if (a->drv.ops->vm_info(a->drv.d, vl.names[i], &vi) == 0) {
            json_object *ds = json_object_new_array();
            int64_t holder = 0;
            fy_json_put_str(v, "power", power_name(vi.power));
            fy_json_put_int(v, "mem_bytes", (int64_t)vi.mem_bytes);
            fy_json_put_int(v, "vcpus", vi.vcpus);
            fy_json_put_bool(v, "managed", vi.managed);
            /* Busy: a migration holds its lock (the evacuation planner). */
            if (fy_store_lock_holder(a->store, vl.names[i], &holder) < 0)
                holder = 0;
            fy_json_put_int(v, "busy", holder);
            for (unsigned d = 0; d < vi.ndisks && d < FY_MAX_DISKS; d++) {
                bool seen = false;
                for (unsigned e = 0; e < d; e++)
                    seen |= strcmp(vi.disks[e].datastore, vi.disks[d].datastore) == 0;
                if (!seen && vi.disks[d].datastore[0])
                    json_object_array_add(ds, json_object_new_string(vi.disks[d].datastore));
            }
            json_object_object_add(v, "datastores", ds);
        } else {
            fy_json_put_str(v, "power", "unknown");
        }
        json_object_array_add(vms, v);
    }
    free(vl.names);
    *result = json_object_new_object();
    fy_json_put_str(*result, "host", a->cfg.host);
    json_object_object_add(*result, "vms", vms);
    return 0;
}

/* The VM name of a configuration text: its "name NAME" line (sim), or
 * its <name>NAME</name> element (libvirt's domain XML). */
static int config_name(const char *config, char *out, size_t n)
{
    const char *x = strstr(config, "<name>");
    if (x && strstr(config, "<domain")) {
        size_t len = strcspn(x + 6, "<");
        if (len && len < n) {
            memcpy(out, x + 6, len);
            out[len] = '\0';
            return 0;
        }
    }
    for (const char *l = config; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        while (*l == ' ' || *l == '\t')
            l++;
        if (strncmp(l, "name", 4) == 0 && (l[4] == ' ' || l[4] == '\t')) {
            l += 4;
            while (*l == ' ' || *l == '\t')
                l++;
            size_t len = strcspn(l, " \t\r\n");
            if (len && len < n) {
                memcpy(out, l, len);
                out[len] = '\0';
                return 0;
            }
        }
    }
    return fy_error(FY_E_INVAL, "agent.define: the configuration has no \"name NAME\" line: "
                    "add one (drivers/sim/README.md shows the format)");
}

static int h_define(void *ctx, struct fy_rpc_call *call, const json_object *params,
                    json_object **result)
{
    struct fy_agent *a = AGENT(ctx);
    const char *config = get_str(params, "config");
    char name[FY_NAME_MAX];
    int rc;

    (void)call;
    if (!config)
        return fy_error(FY_E_INVAL, "agent.define needs \"config\": the VM's "
                        "configuration text in the driver's format");
    if ((rc = config_name(config, name, sizeof(name))) < 0)
        return rc;
    if ((rc = a->drv.ops->vm_define(a->drv.d, config, NULL, NULL, 0)) < 0)
        return rc;
    if (get_bool(params, "start", false) && (rc = a->drv.ops->vm_start(a->drv.d, name)) < 0)
        return rc;
    agent_log(a, "VM %s defined%s", name, get_bool(params, "start", false) ? " and started" : "");
    *result = json_object_new_object();
    fy_json_put_str(*result, "name", name);
    return 0;
}

/* Streams the job's progress to the client until the job is done.  A
 * client that goes away stops the frames, not the migration. */
static void pump_progress(struct fy_agent *a, struct job *j, struct fy_rpc_call *call)
{
    unsigned seen = 0;
    bool client = true;

    pthread_mutex_lock(&a->lock);
    while (!j->done) {
        if (j->seq == seen) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += PROGRESS_EVERY_MS / 1000;
            if (pthread_cond_timedwait(&a->cond, &a->lock, &until) == 0 && j->seq == seen)
                continue;
        }
        if (j->done)
            break;
        seen = j->seq;
        if (client && j->id) {
            json_object *p = job_json(j);
            pthread_mutex_unlock(&a->lock);
            if (fy_rpc_reply_progress(call, p) < 0)
                client = false;
            pthread_mutex_lock(&a->lock);
        }
    }
    pthread_mutex_unlock(&a->lock);
}

static int h_migrate(void *ctx, struct fy_rpc_call *call, const json_object *params,
                     json_object **result)
{
    struct fy_agent *a = AGENT(ctx);
    const char *vm = get_str(params, "vm"), *to = get_str(params, "to");
    const char *kind = get_str(params, "kind"), *gang = get_str(params, "gang");
    const char *fail_at, *mode;
    const struct fy_peer *peer;
    struct fy_migration_record rec;
    struct fy_vm_info vi;
    struct job *j;
    int64_t v;
    int rc;

    if (!vm || !vm[0] || !to || !to[0])
        return fy_error(FY_E_INVAL, "agent.migrate needs \"vm\" and \"to\" (a peer host)");
    if (!(peer = resolve_peer(a, to))) {
        if (strcmp(to, a->cfg.host) == 0)
            return fy_error(FY_E_INVAL, "VM %s: host %s is the source: choose another host "
                            "as the target", vm, to);
        return no_peer(a, to);
    }
    if (!(j = calloc(1, sizeof(*j))))
        return fy_error(FY_E_NOMEM, "no memory for a migration");
    j->a = a;
    j->kind = FY_MIG_LIVE;
    if (kind && fy_migration_kind_parse(kind, &j->kind) < 0) {
        free(j);
        return fy_error(FY_E_INVAL, "unknown migration kind '%s': use live, cold or quick",
                        kind);
    }
    snprintf(j->vm, sizeof(j->vm), "%s", vm);
    snprintf(j->target, sizeof(j->target), "%s", peer->name);
    j->req.kind = j->kind;
    j->req.vm = j->vm;
    j->req.power_on = get_bool(params, "power_on", false);
    if (get_int(params, "downtime_ms", &v) && v > 0)
        j->req.downtime_ms = (uint32_t)v;
    if (get_int(params, "streams", &v) && v > 0)
        j->req.streams = (unsigned)v;
    /* Live: how memory moves ("stream", "ram-direct"; default auto:
     * stream mode where both drivers have it). */
    if ((mode = get_str(params, "mode")) && mode[0] &&
        fy_live_mode_parse(mode, &j->req.mode) < 0) {
        free(j);
        return fy_error(FY_E_INVAL, "unknown live migration mode '%s': use stream, "
                        "ram-direct or auto", mode);
    }
    /* The workflow's failure injection, for tests that check each action's
     * rollback with real hypervisors (ferryctl migrate --fail-at). */
    if ((fail_at = get_str(params, "fail_at")) && fail_at[0]) {
        snprintf(j->fail_at, sizeof(j->fail_at), "%s", fail_at);
        j->req.fail_at = j->fail_at;
    }
    j->req.on_action = job_on_action;
    j->req.on_round = job_on_round;
    j->req.ctx = j;
    j->src = a->local;
    if (a->drv.ops->vm_info(a->drv.d, vm, &vi) == 0)
        j->mem_total = vi.mem_bytes;
    if ((rc = open_target(a, peer, &j->dst)) < 0) {
        free(j);
        return rc;
    }
    if (gang && gang[0]) {
        /* Gang dedup (host.h): this migration's memory shares the dedup
         * index of the gang's other migrations to the same target, at
         * both ends. */
        snprintf(j->src.gang, sizeof(j->src.gang), "%.*s>%s", FY_NAME_MAX - 1, gang,
                 peer->name);
        snprintf(j->dst.gang, sizeof(j->dst.gang), "%s", gang);
    }
    clock_gettime(CLOCK_MONOTONIC, &j->t0);
    snprintf(j->action, sizeof(j->action), "Start");
    j->attached = true;

    pthread_mutex_lock(&a->lock);
    j->next = a->jobs;
    a->jobs = j;
    jobs_prune(a);
    pthread_mutex_unlock(&a->lock);

    agent_log(a, "%s migration of VM %s to host %s started",
              fy_migration_kind_name(j->kind), vm, peer->name);
    if (pthread_create(&j->worker, NULL, job_main, j) != 0) {
        /* Run it here, without progress frames. */
        job_main(j);
    } else {
        pump_progress(a, j, call);
        pthread_join(j->worker, NULL);
    }
    fy_host_remote_close(&j->dst);

    pthread_mutex_lock(&a->lock);
    j->attached = false;
    rc = j->rc;
    pthread_mutex_unlock(&a->lock);

    if (j->id && fy_store_migration_get(a->store, j->id, &rec) == 0) {
        agent_log(a, "migration %lld (%s of VM %s to host %s): %s%s%s", (long long)j->id,
                  fy_migration_kind_name(j->kind), vm, peer->name,
                  fy_mig_state_name(rec.state), rc < 0 ? ": " : "", rc < 0 ? j->error : "");
        if (rc < 0)
            return fy_error(-rc, "migration %lld of VM %s to host %s %s: %s", (long long)j->id,
                            vm, peer->name, fy_mig_state_name(rec.state), j->error);
        *result = record_json(&rec);
        /* Not in the store: counted from the rounds this run saw. */
        pthread_mutex_lock(&a->lock);
        fy_json_put_int(*result, "pages_dup_shared", (int64_t)j->dup_shared);
        fy_json_put_int(*result, "pages_resent", (int64_t)j->resent);
        pthread_mutex_unlock(&a->lock);
        return 0;
    }
    if (rc < 0)
        return fy_error(-rc, "migration of VM %s to host %s: %s", vm, peer->name, j->error);
    return fy_error(FY_E_IO, "migration %lld of VM %s: its record cannot be read: %s",
                    (long long)j->id, vm, fy_error_detail());
}

/* jobinfo of a migration only the store knows. */
static json_object *stored_jobinfo(const struct fy_migration_record *r)
{
    json_object *o = record_json(r);
    uint64_t moved = (r->pages_sent + r->pages_zero + r->pages_dup) * FY_PAGE_SIZE;

    fy_json_put_str(o, "action", "");
    fy_json_put_double(o, "elapsed", r->seconds);
    fy_json_put_int(o, "data_processed", (int64_t)moved);
    fy_json_put_int(o, "data_remaining", 0);
    fy_json_put_int(o, "data_total", (int64_t)moved);
    fy_json_put_double(o, "throughput", r->seconds > 0 ? (double)r->wire_bytes / r->seconds : 0);
    return o;
}

static int h_jobinfo(void *ctx, struct fy_rpc_call *call, const json_object *params,
                     json_object **result)
{
    struct fy_agent *a = AGENT(ctx);
    struct fy_migration_record rec;
    struct job *j;
    int64_t id;
    int rc;

    (void)call;
    if ((rc = param_id(params, "jobinfo", &id)) < 0)
        return rc;
    pthread_mutex_lock(&a->lock);
    if ((j = job_find(a, id)) && !j->done)
        *result = job_json(j);
    pthread_mutex_unlock(&a->lock);
    if (*result)
        return 0;
    if ((rc = fy_store_migration_get(a->store, id, &rec)) < 0)
        return fy_error(-rc, "no migration %lld on host %s: list them with `ferryctl "
                        "migrations` on the migration's source host", (long long)id,
                        a->cfg.host);
    *result = stored_jobinfo(&rec);
    /* Figures only the live job had (rounds, rates) while this run knows them. */
    pthread_mutex_lock(&a->lock);
    if ((j = job_find(a, id))) {
        json_object *live = job_json(j);
        static const char *const keep[] = {"round", "final", "data_processed", "data_total",
                                           "dirty_rate", "expected_downtime"};
        for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
            json_object *v;
            if (json_object_object_get_ex(live, keep[i], &v))
                json_object_object_add(*result, keep[i], json_object_get(v));
        }
        json_object_put(live);
    }
    pthread_mutex_unlock(&a->lock);
    return 0;
}

static int h_events(void *ctx, struct fy_rpc_call *call, const json_object *params,
                    json_object **result)
{
    struct fy_agent *a = AGENT(ctx);
    struct fy_migration_record rec;
    struct fy_event *ev = NULL;
    size_t n = 0;
    json_object *arr;
    int64_t id;
    int rc;

    (void)call;
    if ((rc = param_id(params, "events", &id)) < 0)
        return rc;
    if ((rc = fy_store_migration_get(a->store, id, &rec)) < 0)
        return fy_error(-rc, "no migration %lld on host %s: list them with `ferryctl "
                        "migrations` on the migration's source host", (long long)id,
                        a->cfg.host);
    if ((rc = fy_store_events_list(a->store, id, &ev, &n)) < 0)
        return rc;
    arr = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_new_object();
        fy_json_put_int(e, "task", ev[i].task);
        fy_json_put_str(e, "category", fy_event_category_name(ev[i].category));
        fy_json_put_int(e, "ts_us", ev[i].ts_us);
        fy_json_put_str(e, "side", fy_event_side_name(ev[i].side));
        fy_json_put_str(e, "text", ev[i].text);
        json_object_array_add(arr, e);
    }
    free(ev);
    *result = json_object_new_object();
    json_object_object_add(*result, "migration", record_json(&rec));
    json_object_object_add(*result, "events", arr);
    return 0;
}

static int h_migrations(void *ctx, struct fy_rpc_call *call, const json_object *params,
                        json_object **result)
{
    struct fy_agent *a = AGENT(ctx);
    struct fy_migration_record *recs = NULL;
    const char *vm = get_str(params, "vm");
    json_object *arr;
    size_t n = 0;
    int rc;

    (void)call;
    if ((rc = fy_store_migration_list(a->store, vm && vm[0] ? vm : NULL, &recs, &n)) < 0)
        return rc;
    arr = json_object_new_array();
    for (size_t i = 0; i < n; i++)
        json_object_array_add(arr, record_json(&recs[i]));
    free(recs);
    *result = json_object_new_object();
    fy_json_put_str(*result, "host", a->cfg.host);
    json_object_object_add(*result, "migrations", arr);
    return 0;
}

static int h_cancel(void *ctx, struct fy_rpc_call *call, const json_object *params,
                    json_object **result)
{
    struct fy_agent *a = AGENT(ctx);
    struct fy_migration_record rec;
    struct job *j;
    int64_t id;
    int rc;
    bool found = false;
    char action[FY_NAME_MAX] = "";

    (void)call;
    if ((rc = param_id(params, "cancel", &id)) < 0)
        return rc;
    pthread_mutex_lock(&a->lock);
    if ((j = job_find(a, id)) && !j->done) {
        j->req.cancel = 1;
        found = true;
        snprintf(action, sizeof(action), "%s", j->action);
    }
    pthread_mutex_unlock(&a->lock);
    if (!found) {
        if (fy_store_migration_get(a->store, id, &rec) < 0)
            return fy_error(FY_E_NOTFOUND, "no migration %lld on host %s: cancel it at the "
                            "migration's source host", (long long)id, a->cfg.host);
        return fy_error(FY_E_INVAL, "migration %lld of VM %s is not running (%s): nothing "
                        "to cancel", (long long)id, rec.vm, fy_mig_state_name(rec.state));
    }
    agent_log(a, "migration %lld: cancel requested during %s", (long long)id, action);
    *result = json_object_new_object();
    fy_json_put_int(*result, "id", id);
    fy_json_put_bool(*result, "requested", true);
    fy_json_put_str(*result, "action", action);
    return 0;
}

static const struct fy_rpc_method agent_methods[] = {
    {"agent.info", h_info},
    {"agent.hosts", h_hosts},
    {"agent.list", h_list},
    {"agent.define", h_define},
    {"agent.migrate", h_migrate},
    {"agent.jobinfo", h_jobinfo},
    {"agent.events", h_events},
    {"agent.migrations", h_migrations},
    {"agent.cancel", h_cancel},
};

/* ---- start and stop --------------------------------------------------------------- */

/* Migrations a previous run of this agent left running: it died during
 * them.  One that had passed the switchover is failed (the VM runs at the
 * target), any other rolled back; the VM lock is released, and a source VM
 * left paused is resumed. */
static void recover(struct fy_agent *a)
{
    struct fy_migration_record *recs = NULL;
    size_t n = 0;

    if (fy_store_migration_list(a->store, NULL, &recs, &n) < 0) {
        agent_log(a, "cannot list migrations to recover: %s", fy_error_detail());
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct fy_migration_record *r = &recs[i];
        struct fy_event *ev = NULL;
        size_t nev = 0;
        bool switched = false;
        struct fy_vm_info vi;
        enum fy_mig_state st;

        if (r->state != FY_MIG_RUNNING)
            continue;
        if (fy_store_events_list(a->store, r->id, &ev, &nev) == 0)
            for (size_t k = 0; k < nev; k++)
                if (strncmp(ev[k].text, "Switchover completed", 20) == 0)
                    switched = true;
        free(ev);
        st = switched ? FY_MIG_FAILED : FY_MIG_ROLLED_BACK;
        fy_store_event_add(a->store, r->id, FY_EV_CLEANUP, FY_SIDE_SOURCE,
                           switched ? "ferryd restarted during the migration: past the "
                                      "switchover, the VM runs at the target"
                                    : "ferryd restarted during the migration: VM stays at "
                                      "the source; remove any placeholder at the target",
                           NULL);
        fy_store_migration_set_state(a->store, r->id, st,
                                     "ferryd stopped during the migration");
        fy_store_unlock_vm(a->store, r->vm, r->id);
        if (!switched && a->drv.ops->vm_info(a->drv.d, r->vm, &vi) == 0 &&
            vi.power == FY_POWER_PAUSED)
            a->drv.ops->vm_resume(a->drv.d, r->vm);
        agent_log(a, "migration %lld of VM %s was running when ferryd stopped: marked %s",
                  (long long)r->id, r->vm, fy_mig_state_name(st));
    }
    free(recs);
    fy_error_clear();
}

const char *fy_agent_addr(const struct fy_agent *a)
{
    return a->srv ? fy_rpc_server_addr(a->srv) : a->cfg.management;
}

int fy_agent_start(const struct fy_agent_config *cfg, struct fy_agent **out)
{
    struct fy_rpc_method methods[MAX_METHODS];
    struct fy_agent *a;
    size_t n;
    int rc;

    if (!out)
        return fy_error(FY_E_INVAL, "fy_agent_start: NULL out");
    *out = NULL;
    if (!cfg)
        return fy_error(FY_E_INVAL, "fy_agent_start: NULL configuration");
    if (!(a = calloc(1, sizeof(*a))))
        return fy_error(FY_E_NOMEM, "no memory for the agent");
    a->cfg = *cfg;
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->cond, NULL);

    if ((rc = fy_rpc_key_load(cfg->key, &a->key)) < 0)
        goto fail;
    if ((rc = fy_driver_open(cfg->drivers_dir[0] ? cfg->drivers_dir : NULL, cfg->driver,
                             cfg->driver_config, &a->drv)) < 0)
        goto fail;
    fy_host_local_init(&a->local, cfg->host, &a->drv);
    addr_host(cfg->management, a->local.net[FY_NET_MANAGEMENT],
              sizeof(a->local.net[FY_NET_MANAGEMENT]));
    snprintf(a->local.net[FY_NET_MIGRATION], FY_NAME_MAX, "%s", cfg->migration);
    snprintf(a->local.net[FY_NET_PROVISIONING], FY_NAME_MAX, "%s", cfg->provisioning);
    snprintf(a->local.transport, sizeof(a->local.transport), "%s", cfg->transport);
    snprintf(a->local.transport_params, sizeof(a->local.transport_params), "%s",
             cfg->transport_params);
    if ((rc = fy_store_open(cfg->store, &a->store)) < 0)
        goto fail;
    recover(a);
    if ((rc = fy_host_server_init(&a->hs, &a->local)) < 0)
        goto fail;
    a->hs_ready = true;

    n = fy_host_server_methods(methods, MAX_METHODS);
    if (n + sizeof(agent_methods) / sizeof(agent_methods[0]) > MAX_METHODS) {
        rc = fy_error(FY_E_TOOBIG, "too many RPC methods for the agent");
        goto fail;
    }
    memcpy(methods + n, agent_methods, sizeof(agent_methods));
    n += sizeof(agent_methods) / sizeof(agent_methods[0]);
    if ((rc = fy_rpc_server_start(cfg->management, &a->key, methods, n, a, rpc_log,
                                  &a->srv)) < 0)
        goto fail;
    *out = a;
    return 0;

fail:
    {
        char keep[1024];
        snprintf(keep, sizeof(keep), "%s", fy_error_detail());
        fy_agent_stop(a);
        return fy_error(-rc, "%s", keep);
    }
}

void fy_agent_stop(struct fy_agent *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->lock);
    for (struct job *j = a->jobs; j; j = j->next)
        if (!j->done)
            j->req.cancel = 1;
    pthread_mutex_unlock(&a->lock);
    fy_rpc_server_stop(a->srv);
    a->srv = NULL;
    if (a->hs_ready)
        fy_host_server_fini(&a->hs);
    fy_store_close(a->store);
    fy_driver_close(&a->drv);
    fy_rpc_key_wipe(&a->key);
    while (a->jobs) {
        struct job *j = a->jobs;
        a->jobs = j->next;
        free(j);
    }
    pthread_cond_destroy(&a->cond);
    pthread_mutex_destroy(&a->lock);
    free(a);
}
