/* Host evacuation: see evacuate.h for the model.
 *
 * Reading order: the cluster view (hosts and VMs as the agents and the
 * cluster file describe them) and the planner's input made from it; the
 * attempts (a thread each: a migration at the source's agent, or a
 * failover driven from here); choosing an attempt's target again after a
 * failure; the scheduler; dependent reboots; the report. */
#include "controlplane/evacuate.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "controlplane/host.h"
#include "controlplane/host_rpc.h"
#include "controlplane/json_util.h"
#include "controlplane/planner.h"
#include "ferry/error.h"

#define CONNECT_TIMEOUT_MS 10000
#define PROBE_TIMEOUT_MS 3000
#define CALL_TIMEOUT_MS 60000   /* per frame: a migration reports every second */
#define REMOTE_TIMEOUT_MS 60000 /* each host.* answer of a failover */
#define TICK_MS 250
#define LIST FY_CLUSTER_LIST_MAX
#define NONE ((size_t)-1)

/* ---- the cluster view ----------------------------------------------------- */

struct hview {
    const struct fy_cluster_host *c;
    enum fy_plan_host_state state; /* now: down once it stops answering */
    bool reachable;
    bool peer;                     /* the evacuated host's agent knows it */
    uint64_t mem_total, mem_free;  /* at the start */
    unsigned cpus_total, cpus_free;
    unsigned n_ds;
    char ds[LIST][FY_NAME_MAX];
    const char *ds_ptr[LIST];
    unsigned busy;                 /* attempts running in or out */
    char error[512];
};

struct vview {
    char name[FY_NAME_MAX];
    char power[16];
    size_t orig;                   /* host index at the start */
    size_t host;                   /* host index now */
    bool running;                  /* powered on at the start */
    uint64_t mem;
    unsigned vcpus;
    bool managed;
    int64_t busy;                  /* migration holding it, 0: none */
    unsigned n_ds;
    char ds[LIST][FY_NAME_MAX];
    const char *ds_ptr[LIST];
    const struct fy_cluster_vm *pol;
    unsigned n_dep, n_eq, n_ne;
    const char *dep_ptr[LIST], *eq_ptr[LIST], *ne_ptr[LIST];
    size_t run;                    /* its run, or NONE */
};

struct attempt {
    enum fy_migration_kind method;
    enum fy_migration_kind kind;   /* what ran: live, quick, cold, failover */
    size_t target;
    int64_t migration;             /* id at the source's agent, 0: none */
    char state[24];
    int rc;
    char error[768];
    char note[256];
    double seconds;
    uint64_t wire, sent, zero, dup, dup_shared, resent;
    bool moved;
};

enum run_state { R_PENDING, R_RUNNING, R_MOVED, R_FAILED, R_STAYS };

struct evac;

/* A plan entry as it runs (runs[i] is plan->entries[i]). */
struct run {
    struct evac *ev;
    size_t vm;
    enum run_state st;
    unsigned next;                 /* rank of the next method to try */
    enum fy_migration_kind method; /* the next or running attempt ... */
    size_t target;                 /* ... and its target, NONE: to choose */
    struct attempt att[FY_PLAN_ATTEMPTS_MAX];
    unsigned natt;
    char reason[512];
    /* The running attempt. */
    pthread_t tid;
    bool done;
    double t0, t_end;
    char action[64];
    unsigned round;
    uint64_t processed, total, wire;
};

struct reboot {
    size_t vm;
    char status[16];
    char detail[512];
};

struct evac {
    const struct fy_evac_opts *o;
    unsigned methods;
    bool gang_on;
    char gang[64];
    size_t src;
    struct hview *hosts;
    size_t nh;
    struct vview *vms;
    size_t nv;
    struct fy_plan_host *ph;
    struct fy_plan_vm *pv;
    struct fy_plan_input in;
    struct fy_plan *plan;
    struct run *runs;
    struct reboot *reboots;
    size_t nreboots;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    json_object *warnings, *log;
    double t0, seconds;
    bool started;
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void warn(struct evac *ev, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(struct evac *ev, const char *fmt, ...)
{
    char msg[768];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_object_array_add(ev->warnings, json_object_new_string(msg));
}

static const char *jstr(const json_object *o, const char *k)
{
    json_object *v;
    if (!o || !json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static int64_t jint(const json_object *o, const char *k)
{
    json_object *v;
    if (!o || !json_object_object_get_ex(o, k, &v))
        return 0;
    return json_object_get_int64(v);
}

static bool jbool(const json_object *o, const char *k)
{
    json_object *v;
    return o && json_object_object_get_ex(o, k, &v) && json_object_get_boolean(v);
}

static double jdouble(const json_object *o, const char *k)
{
    json_object *v;
    if (!o || !json_object_object_get_ex(o, k, &v))
        return 0;
    return json_object_get_double(v);
}

/* Calls 'method' at the agent at 'addr'; the result into '*res'. */
static int agent_call(const struct fy_rpc_key *key, const char *addr, const char *method,
                      json_object *params, json_object **res, int timeout_ms)
{
    struct fy_rpc_conn *c = NULL;
    int rc = fy_rpc_connect(addr, key, timeout_ms, &c);

    *res = NULL;
    if (rc < 0) {
        json_object_put(params);
        return rc;
    }
    rc = fy_rpc_call(c, method, params, res, NULL, NULL, timeout_ms);
    fy_rpc_close(c);
    return rc;
}

static size_t host_index(const struct evac *ev, const char *name)
{
    for (size_t i = 0; name && i < ev->nh; i++)
        if (strcmp(ev->hosts[i].c->name, name) == 0)
            return i;
    return NONE;
}

static size_t vm_index(const struct evac *ev, const char *name)
{
    for (size_t i = 0; name && i < ev->nv; i++)
        if (strcmp(ev->vms[i].name, name) == 0)
            return i;
    return NONE;
}

static const char *host_name(const struct evac *ev, size_t h)
{
    return h < ev->nh ? ev->hosts[h].c->name : "(none)";
}

/* One host's capacity and datastores from its agent.info. */
static void read_host(struct evac *ev, struct hview *h, const json_object *info)
{
    const struct fy_cluster_host *c = h->c;
    uint64_t a_total = (uint64_t)jint(info, "mem_total"), a_free = (uint64_t)jint(info, "mem_free");
    unsigned c_total = (unsigned)jint(info, "cpus_total"), c_free = (unsigned)jint(info, "cpus_free");
    uint64_t used = a_total > a_free ? a_total - a_free : 0;
    unsigned cused = c_total > c_free ? c_total - c_free : 0;
    const char *mig = jstr(info, "migration"), *prov = jstr(info, "provisioning");
    json_object *ds;

    /* The file sets the capacity the operator grants; what is used is what
     * the agent counts. */
    h->mem_total = c->memory ? c->memory : a_total;
    h->mem_free = h->mem_total > used ? h->mem_total - used : 0;
    h->cpus_total = c->cpus ? c->cpus : c_total;
    h->cpus_free = h->cpus_total > cused ? h->cpus_total - cused : 0;
    if (c->datastores_set) {
        h->n_ds = c->n_datastores;
        for (unsigned i = 0; i < h->n_ds; i++)
            snprintf(h->ds[i], FY_NAME_MAX, "%s", c->datastores[i]);
    } else if (json_object_object_get_ex(info, "datastores", &ds)) {
        for (size_t i = 0; i < json_object_array_length(ds) && h->n_ds < LIST; i++) {
            const char *n = jstr(json_object_array_get_idx(ds, i), "name");
            if (n)
                snprintf(h->ds[h->n_ds++], FY_NAME_MAX, "%s", n);
        }
    }
    for (unsigned i = 0; i < h->n_ds; i++)
        h->ds_ptr[i] = h->ds[i];
    if (jbool(info, "maintenance") && h->state == FY_PLAN_HOST_HEALTHY) {
        h->state = FY_PLAN_HOST_MAINTENANCE;
        warn(ev, "host %s reports maintenance mode: it takes no VMs", c->name);
    }
    if (c->migration[0] && mig && strcmp(mig, c->migration) != 0)
        warn(ev, "host %s: the cluster file says migration address %s, its agent uses %s",
             c->name, c->migration, mig[0] ? mig : "none (management)");
    if (c->provisioning[0] && prov && strcmp(prov, c->provisioning) != 0)
        warn(ev, "host %s: the cluster file says provisioning address %s, its agent uses %s",
             c->name, c->provisioning, prov[0] ? prov : "none (management)");
}

/* Adds the VMs of host 'hi' from its agent.list. */
static int read_vms(struct evac *ev, size_t hi, const json_object *list)
{
    json_object *vms;
    size_t n;

    if (!json_object_object_get_ex(list, "vms", &vms))
        return 0;
    n = json_object_array_length(vms);
    struct vview *grown = realloc(ev->vms, (ev->nv + n + 1) * sizeof(*grown));
    if (!grown)
        return fy_error(FY_E_NOMEM, "no memory for the VMs of host %s", host_name(ev, hi));
    ev->vms = grown;
    for (size_t i = 0; i < n; i++) {
        const json_object *o = json_object_array_get_idx(vms, i);
        const char *name = jstr(o, "name"), *power = jstr(o, "power");
        struct vview *v = &ev->vms[ev->nv];
        json_object *ds;
        size_t dup;

        if (!name)
            continue;
        if ((dup = vm_index(ev, name)) != NONE)
            return fy_error(FY_E_CONFIG, "VM %s is on host %s and on host %s: a VM must be "
                            "defined on one host only; remove the stale copy",
                            name, host_name(ev, ev->vms[dup].orig), host_name(ev, hi));
        memset(v, 0, sizeof(*v));
        snprintf(v->name, sizeof(v->name), "%s", name);
        snprintf(v->power, sizeof(v->power), "%s", power ? power : "unknown");
        v->orig = v->host = hi;
        v->running = power && (!strcmp(power, "running") || !strcmp(power, "paused"));
        v->mem = (uint64_t)jint(o, "mem_bytes");
        v->vcpus = (unsigned)jint(o, "vcpus");
        v->managed = !json_object_object_get_ex(o, "managed", NULL) || jbool(o, "managed");
        v->busy = jint(o, "busy");
        if (json_object_object_get_ex(o, "datastores", &ds))
            for (size_t k = 0; k < json_object_array_length(ds) && v->n_ds < LIST; k++)
                snprintf(v->ds[v->n_ds++], FY_NAME_MAX, "%s",
                         json_object_get_string(json_object_array_get_idx(ds, k)));
        v->run = NONE;
        ev->nv++;
    }
    return 0;
}

/* Asks every host's agent; fails only for the evacuated host. */
static int build_view(struct evac *ev)
{
    const struct fy_cluster *cl = ev->o->cluster;
    json_object *res = NULL, *hs;
    int rc;

    ev->nh = cl->n_hosts;
    if (!(ev->hosts = calloc(ev->nh, sizeof(*ev->hosts))))
        return fy_error(FY_E_NOMEM, "no memory for %zu hosts", ev->nh);
    for (size_t i = 0; i < ev->nh; i++) {
        struct hview *h = &ev->hosts[i];
        json_object *info = NULL, *list = NULL;

        h->c = &cl->hosts[i];
        h->state = h->c->state;
        h->peer = i == ev->src;
        if (h->state == FY_PLAN_HOST_DOWN && i != ev->src)
            continue; /* not asked: the file says it is down */
        rc = agent_call(ev->o->key, h->c->management, "agent.info", NULL, &info,
                        CONNECT_TIMEOUT_MS);
        if (rc == 0 && (!jstr(info, "name") || strcmp(jstr(info, "name"), h->c->name) != 0))
            rc = fy_error(FY_E_CONFIG, "the cluster file names the agent at %s host %s, but "
                          "it is host %s: fix the management address of [host %s]",
                          h->c->management, h->c->name, jstr(info, "name") ? jstr(info, "name")
                                                                            : "(unnamed)",
                          h->c->name);
        if (rc == 0)
            rc = agent_call(ev->o->key, h->c->management, "agent.list", NULL, &list,
                            CONNECT_TIMEOUT_MS);
        if (rc == 0) {
            h->reachable = true;
            read_host(ev, h, info);
            rc = read_vms(ev, i, list);
        }
        json_object_put(info);
        json_object_put(list);
        if (rc < 0 && (i == ev->src || rc == -FY_E_CONFIG || rc == -FY_E_NOMEM)) {
            if (i == ev->src)
                return fy_error(-rc, "host %s to evacuate: %s", h->c->name, fy_error_detail());
            return rc;
        }
        if (rc < 0) {
            snprintf(h->error, sizeof(h->error), "%s", fy_error_detail());
            warn(ev, "host %s does not answer (%s): treated as down", h->c->name, h->error);
            h->state = FY_PLAN_HOST_DOWN;
        }
    }
    /* Migrations are run by the evacuated host's agent: it must know the
     * target as a peer.  (Failover does not need it, but a host it cannot
     * migrate to is not offered at all, to keep one rule.) */
    if ((rc = agent_call(ev->o->key, ev->hosts[ev->src].c->management, "agent.hosts", NULL,
                         &res, CONNECT_TIMEOUT_MS)) < 0)
        return fy_error(-rc, "host %s to evacuate: %s", ev->hosts[ev->src].c->name,
                        fy_error_detail());
    if (json_object_object_get_ex(res, "hosts", &hs))
        for (size_t i = 0; i < json_object_array_length(hs); i++) {
            size_t k = host_index(ev, jstr(json_object_array_get_idx(hs, i), "name"));
            if (k != NONE)
                ev->hosts[k].peer = true;
        }
    json_object_put(res);
    for (size_t i = 0; i < ev->nh; i++) {
        struct hview *h = &ev->hosts[i];
        if (!h->peer && h->state == FY_PLAN_HOST_HEALTHY) {
            snprintf(h->error, sizeof(h->error), "not a peer of host %s: add it to peers= in "
                     "%s's ferryd configuration", ev->hosts[ev->src].c->name,
                     ev->hosts[ev->src].c->name);
            warn(ev, "host %s is %s; it takes no VMs", h->c->name, h->error);
        }
    }
    return 0;
}

/* The planner's input over the view (pointers into it). */
static int build_input(struct evac *ev)
{
    const struct fy_cluster *cl = ev->o->cluster;

    ev->ph = calloc(ev->nh + 1, sizeof(*ev->ph));
    ev->pv = calloc(ev->nv + 1, sizeof(*ev->pv));
    if (!ev->ph || !ev->pv)
        return fy_error(FY_E_NOMEM, "no memory for the evacuation plan");
    for (size_t i = 0; i < ev->nh; i++) {
        struct hview *h = &ev->hosts[i];
        ev->ph[i] = (struct fy_plan_host){
            .name = h->c->name,
            .state = h->peer ? h->state : FY_PLAN_HOST_DOWN,
            .mem_total = h->mem_total, .mem_free = h->mem_free,
            .cpus_total = h->cpus_total, .cpus_free = h->cpus_free,
            .datastores = h->ds_ptr, .n_datastores = h->n_ds,
            .max_concurrent = h->c->max_concurrent,
        };
    }
    for (size_t i = 0; i < ev->nv; i++) {
        struct vview *v = &ev->vms[i];
        const struct fy_cluster_vm *p = fy_cluster_vm(cl, v->name);

        v->pol = p;
        for (unsigned k = 0; k < v->n_ds; k++)
            v->ds_ptr[k] = v->ds[k];
        for (unsigned k = 0; p && k < p->n_depends_on; k++) {
            if (vm_index(ev, p->depends_on[k]) == NONE) {
                warn(ev, "VM %s depends on VM %s, which no agent has: dependency ignored",
                     v->name, p->depends_on[k]);
                continue;
            }
            v->dep_ptr[v->n_dep++] = p->depends_on[k];
        }
        for (unsigned k = 0; p && k < p->n_eq; k++)
            v->eq_ptr[v->n_eq++] = p->eq[k];
        for (unsigned k = 0; p && k < p->n_ne; k++)
            v->ne_ptr[v->n_ne++] = p->ne[k];
        ev->pv[i] = (struct fy_plan_vm){
            .name = v->name, .host = ev->hosts[v->host].c->name, .running = v->running,
            .memory = v->mem, .vcpus = v->vcpus,
            .datastores = v->ds_ptr, .n_datastores = v->n_ds,
            .managed = v->managed && !(p && p->unmanaged),
            .hold = p && p->hold, .busy = v->busy != 0, .maintenance = p && p->maintenance,
            .priority = p ? p->priority : 0,
            .depends_on = v->dep_ptr, .n_depends_on = v->n_dep,
            .eq_groups = v->eq_ptr, .n_eq_groups = v->n_eq,
            .ne_groups = v->ne_ptr, .n_ne_groups = v->n_ne,
        };
    }
    for (size_t i = 0; i < cl->n_vms; i++)
        if (vm_index(ev, cl->vms[i].name) == NONE)
            warn(ev, "the cluster file has a [vm %s] section but no agent has that VM",
                 cl->vms[i].name);
    ev->in = (struct fy_plan_input){
        .hosts = ev->ph, .n_hosts = ev->nh, .vms = ev->pv, .n_vms = ev->nv,
        .evacuate = ev->hosts[ev->src].c->name, .all = ev->o->all, .methods = ev->methods,
        .reboot_dependents = ev->o->reboot_dependents, .link_limit = cl->link_limit,
    };
    return 0;
}

static unsigned rank_of(enum fy_migration_kind m)
{
    for (unsigned i = 0; i < FY_PLAN_ATTEMPTS_MAX; i++)
        if (fy_plan_canonical_methods[i] == m)
            return i;
    return FY_PLAN_ATTEMPTS_MAX;
}

/* ---- attempts --------------------------------------------------------------- */

static void on_migrate_progress(void *ctx, const json_object *p)
{
    struct run *r = ctx;
    const char *action = jstr(p, "action");

    pthread_mutex_lock(&r->ev->lock);
    if (action)
        snprintf(r->action, sizeof(r->action), "%s", action);
    if (jint(p, "id"))
        r->att[r->natt - 1].migration = jint(p, "id");
    r->round = (unsigned)jint(p, "round");
    r->processed = (uint64_t)jint(p, "data_processed");
    r->total = (uint64_t)jint(p, "data_total");
    r->wire = (uint64_t)jint(p, "wire_bytes");
    pthread_cond_broadcast(&r->ev->cond);
    pthread_mutex_unlock(&r->ev->lock);
}

static void stats_from(struct attempt *a, const json_object *rec)
{
    a->seconds = jdouble(rec, "seconds");
    a->wire = (uint64_t)jint(rec, "wire_bytes");
    a->sent = (uint64_t)jint(rec, "pages_sent");
    a->zero = (uint64_t)jint(rec, "pages_zero");
    a->dup = (uint64_t)jint(rec, "pages_dup");
    a->dup_shared = (uint64_t)jint(rec, "pages_dup_shared");
    a->resent = (uint64_t)jint(rec, "pages_resent");
    if (jstr(rec, "state"))
        snprintf(a->state, sizeof(a->state), "%s", jstr(rec, "state"));
}

/* A migration run by the source's agent. */
static void attempt_migrate(struct run *r, struct attempt *a, const char *vm, bool running,
                            const char *src_addr, const char *target)
{
    struct evac *ev = r->ev;
    struct fy_rpc_conn *conn = NULL;
    json_object *p = json_object_new_object(), *res = NULL;
    int rc;

    switch (running ? a->method : FY_MIG_MOVE) {
    case FY_MIG_LIVE:
    case FY_MIG_STORAGE: a->kind = FY_MIG_LIVE; break;
    case FY_MIG_QUICK: a->kind = FY_MIG_QUICK; break;
    default: a->kind = FY_MIG_COLD; break;
    }
    fy_json_put_str(p, "vm", vm);
    fy_json_put_str(p, "kind", fy_migration_kind_name(a->kind));
    fy_json_put_str(p, "to", target);
    fy_json_put_bool(p, "power_on", running);
    if (ev->o->downtime_ms)
        fy_json_put_int(p, "downtime_ms", ev->o->downtime_ms);
    if (ev->o->streams)
        fy_json_put_int(p, "streams", ev->o->streams);
    if (ev->gang_on && a->kind == FY_MIG_LIVE)
        fy_json_put_str(p, "gang", ev->gang);
    if ((rc = fy_rpc_connect(src_addr, ev->o->key, CONNECT_TIMEOUT_MS, &conn)) < 0) {
        json_object_put(p);
    } else {
        rc = fy_rpc_call(conn, "agent.migrate", p, &res, on_migrate_progress, r,
                         CALL_TIMEOUT_MS);
        fy_rpc_close(conn);
    }
    if (rc == 0) {
        stats_from(a, res);
        a->migration = jint(res, "id");
        a->moved = true;
        json_object_put(res);
        return;
    }
    a->rc = rc;
    snprintf(a->error, sizeof(a->error), "%s", fy_error_detail());
    snprintf(a->state, sizeof(a->state), "%s", "not started");
    pthread_mutex_lock(&ev->lock);
    a->wire = r->wire;
    a->migration = r->att[r->natt - 1].migration; /* from its progress frames */
    pthread_mutex_unlock(&ev->lock);
    if (!a->migration)
        return;
    /* The record says what was left behind, and the bytes it moved. */
    json_object *q = json_object_new_object(), *rec = NULL;
    fy_json_put_int(q, "id", a->migration);
    if (agent_call(ev->o->key, src_addr, "agent.jobinfo", q, &rec, CONNECT_TIMEOUT_MS) == 0) {
        stats_from(a, rec);
        if (!strcmp(a->state, "failed")) {
            /* Failed after its switchover: the VM runs at the target. */
            a->moved = true;
            snprintf(a->note, sizeof(a->note), "failed after the switchover, the VM runs at "
                     "host %s: see `ferryctl events %" PRId64 "` at host %s", target,
                     a->migration, host_name(ev, ev->src));
        }
    }
    json_object_put(rec);
}

static void set_action(struct run *r, const char *action)
{
    pthread_mutex_lock(&r->ev->lock);
    snprintf(r->action, sizeof(r->action), "%s", action);
    pthread_cond_broadcast(&r->ev->cond);
    pthread_mutex_unlock(&r->ev->lock);
}

/* Failover (evacuate.h): through both hosts' host.* operations. */
static void attempt_failover(struct run *r, struct attempt *a, const char *vm, bool running,
                             const struct fy_cluster_host *src, const struct fy_cluster_host *dst)
{
    struct evac *ev = r->ev;
    struct fy_host s = {0}, d = {0};
    struct fy_vm_info vi;
    char *config = NULL;
    bool defined = false, stopped = false;
    double t0 = now_s();
    int rc;

    a->kind = FY_MIG_FAILOVER;
    set_action(r, "Connecting to both hosts");
    if ((rc = fy_host_remote_open(&s, src->name, src->management, ev->o->key,
                                  REMOTE_TIMEOUT_MS)) < 0) {
        fy_error(-rc, "the source host does not answer (%s): VM %s may still run there, so it "
                 "is not started elsewhere", fy_error_detail(), vm);
        goto out;
    }
    if ((rc = fy_host_remote_open(&d, dst->name, dst->management, ev->o->key,
                                  REMOTE_TIMEOUT_MS)) < 0)
        goto out;
    if ((rc = s.ops->vm_export(&s, vm, &config)) < 0 || (rc = s.ops->vm_info(&s, vm, &vi)) < 0)
        goto out;
    if (vi.power != FY_POWER_OFF) {
        set_action(r, "Powering off at the source");
        if ((rc = s.ops->vm_stop(&s, vm, true)) < 0)
            goto out;
        stopped = true;
    }
    set_action(r, "Registering at the target");
    if ((rc = d.ops->vm_define(&d, config, NULL, NULL, 0)) < 0)
        goto out;
    defined = true;
    if (running) {
        set_action(r, "Starting at the target");
        if ((rc = d.ops->vm_start(&d, vm)) < 0)
            goto out;
    }
    set_action(r, "Unregistering at the source");
    if (s.ops->vm_undefine(&s, vm) < 0)
        snprintf(a->note, sizeof(a->note), "VM %s is still registered (off) at host %s: %s",
                 vm, src->name, fy_error_detail());
    a->moved = true;
    snprintf(a->state, sizeof(a->state), "%s", "succeeded");
out:
    if (rc < 0) {
        a->rc = rc;
        snprintf(a->error, sizeof(a->error), "%s", fy_error_detail());
        snprintf(a->state, sizeof(a->state), "%s", "rolled_back");
        /* Back as it was: one copy, at the source, in its power state. */
        if (defined && d.ops && d.ops->vm_undefine(&d, vm) < 0)
            snprintf(a->note, sizeof(a->note), "VM %s left registered (off) at host %s: %s",
                     vm, dst->name, fy_error_detail());
        if (stopped && s.ops && s.ops->vm_start(&s, vm) < 0) {
            snprintf(a->note, sizeof(a->note), "VM %s could not be started again at host %s: "
                     "%s", vm, src->name, fy_error_detail());
            snprintf(a->state, sizeof(a->state), "%s", "failed");
        }
    }
    a->seconds = now_s() - t0;
    free(config);
    fy_host_remote_close(&s);
    fy_host_remote_close(&d);
}

static void *attempt_main(void *arg)
{
    struct run *r = arg;
    struct evac *ev = r->ev;
    struct attempt a;
    char vm[FY_NAME_MAX], target[FY_NAME_MAX];
    bool running;
    const struct fy_cluster_host *src, *dst;

    pthread_mutex_lock(&ev->lock);
    a = r->att[r->natt - 1];
    snprintf(vm, sizeof(vm), "%s", ev->vms[r->vm].name);
    snprintf(target, sizeof(target), "%s", host_name(ev, a.target));
    running = ev->vms[r->vm].running;
    src = ev->hosts[ev->src].c;
    dst = ev->hosts[a.target].c;
    pthread_mutex_unlock(&ev->lock);

    fy_error_clear();
    if (a.method == FY_MIG_FAILOVER)
        attempt_failover(r, &a, vm, running, src, dst);
    else
        attempt_migrate(r, &a, vm, running, src->management, target);

    pthread_mutex_lock(&ev->lock);
    a.migration = a.migration ? a.migration : r->att[r->natt - 1].migration;
    r->att[r->natt - 1] = a;
    r->done = true;
    r->t_end = now_s();
    pthread_cond_broadcast(&ev->cond);
    pthread_mutex_unlock(&ev->lock);
    return NULL;
}

/* ---- choosing a target again ------------------------------------------------ */

/* Where VM 'i' is or will be for placement, 'self' excepted: moved, moving
 * or reserved by the plan.  Under the lock. */
static size_t placed_at(const struct evac *ev, size_t i, const struct run *self)
{
    const struct vview *v = &ev->vms[i];
    const struct run *r = v->run != NONE ? &ev->runs[v->run] : NULL;

    if (!r || r == self)
        return v->host;
    if (r->st == R_RUNNING || (r->st == R_PENDING && r->target != NONE))
        return r->target;
    return v->host;
}

/* Picks run r's next attempt (method, target) with the planner against
 * the cluster as it is now.  false, with r->reason, if there is none.
 * Under the lock. */
static bool retarget(struct evac *ev, struct run *r)
{
    struct fy_plan_host *ph = malloc((ev->nh + 1) * sizeof(*ph));
    struct fy_plan_vm *pv = malloc((ev->nv + 1) * sizeof(*pv));
    struct fy_plan_input in = ev->in;
    struct fy_plan *plan = NULL;
    unsigned allowed = 0;
    bool found = false;

    for (unsigned k = r->next; k < FY_PLAN_ATTEMPTS_MAX; k++)
        allowed |= FY_PLAN_METHOD(fy_plan_canonical_methods[k]) & ev->methods;
    if (!allowed) {
        if (!r->reason[0])
            snprintf(r->reason, sizeof(r->reason), "no method left to try");
        goto out;
    }
    if (!ph || !pv) {
        snprintf(r->reason, sizeof(r->reason), "no memory to choose another target");
        goto out;
    }
    memcpy(ph, ev->ph, ev->nh * sizeof(*ph));
    memcpy(pv, ev->pv, ev->nv * sizeof(*pv));
    for (size_t h = 0; h < ev->nh; h++)
        if (ev->hosts[h].state != FY_PLAN_HOST_HEALTHY)
            ph[h].state = ev->hosts[h].state;
    for (size_t i = 0; i < ev->nv; i++) {
        size_t at = placed_at(ev, i, r);
        if (at != ev->vms[i].orig) {
            /* The agents counted it where it was: count it where it goes. */
            struct fy_plan_host *t = &ph[at];
            t->mem_free = t->mem_free > pv[i].memory ? t->mem_free - pv[i].memory : 0;
            t->cpus_free = t->cpus_free > pv[i].vcpus ? t->cpus_free - pv[i].vcpus : 0;
        }
        pv[i].host = ev->hosts[at].c->name;
        /* Only this VM is placed; the others stay where they are. */
        if (i != r->vm && at == ev->src)
            pv[i].hold = true;
    }
    in.hosts = ph;
    in.vms = pv;
    in.methods = allowed;
    in.reboot_dependents = false;
    if (fy_planner_plan(&in, &plan) < 0) {
        snprintf(r->reason, sizeof(r->reason), "%s", fy_error_detail());
        goto out;
    }
    for (size_t e = 0; e < plan->n_entries; e++) {
        const struct fy_plan_entry *pe = &plan->entries[e];
        if (pe->vm != r->vm)
            continue;
        if (pe->n_attempts) {
            r->method = pe->attempts[0].method;
            r->target = pe->attempts[0].host;
            r->next = rank_of(r->method);
            found = true;
        } else {
            /* After a failure the reason says both what failed and why
             * nothing else is left. */
            size_t used = r->natt ? strlen(r->reason) : 0;
            int w = snprintf(r->reason + used, sizeof(r->reason) - used, "%s%s",
                             used ? "; then " : "", pe->reason);
            (void)w;
        }
    }
out:
    fy_plan_destroy(plan);
    free(ph);
    free(pv);
    return found;
}

/* ---- the scheduler ------------------------------------------------------------ */

static void say(struct evac *ev, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct evac *ev, const char *fmt, ...)
{
    char msg[1024], stamp[16];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(stamp, sizeof(stamp), "%6.1f s", now_s() - ev->t0);
    char line[1100];
    snprintf(line, sizeof(line), "[%s] %s", stamp, msg);
    json_object_array_add(ev->log, json_object_new_string(line));
}

static bool run_ended(const struct run *r)
{
    return r->st == R_MOVED || r->st == R_FAILED || r->st == R_STAYS;
}

/* Whether every VM of the evacuated host that r's VM depends on has ended. */
static bool deps_ended(const struct evac *ev, const struct run *r)
{
    const struct vview *v = &ev->vms[r->vm];

    for (unsigned k = 0; k < v->n_dep; k++) {
        size_t j = vm_index(ev, v->dep_ptr[k]);
        if (j != NONE && ev->vms[j].run != NONE && !run_ended(&ev->runs[ev->vms[j].run]))
            return false;
    }
    return true;
}

static unsigned link_load(const struct evac *ev, size_t target)
{
    unsigned n = 0;
    for (size_t i = 0; i < ev->plan->n_entries; i++)
        n += ev->runs[i].st == R_RUNNING && ev->runs[i].target == target;
    return n;
}

static bool has_room(const struct evac *ev, size_t target)
{
    const struct hview *s = &ev->hosts[ev->src], *t = &ev->hosts[target];
    unsigned ls = s->c->max_concurrent, lt = t->c->max_concurrent;
    unsigned ll = ev->o->cluster->link_limit;

    return (!ls || s->busy < ls) && (!lt || t->busy < lt) && (!ll || link_load(ev, target) < ll);
}

static void fail_run(struct evac *ev, struct run *r)
{
    r->st = R_FAILED;
    say(ev, "%s: not moved: %s", ev->vms[r->vm].name, r->reason);
}

/* Starts what may start.  Under the lock. */
static void start_ready(struct evac *ev)
{
    for (size_t i = 0; i < ev->plan->n_entries; i++) {
        struct run *r = &ev->runs[i];

        if (r->st != R_PENDING || !deps_ended(ev, r))
            continue;
        if ((r->target == NONE || ev->hosts[r->target].state != FY_PLAN_HOST_HEALTHY) &&
            !retarget(ev, r)) {
            fail_run(ev, r);
            continue;
        }
        if (!has_room(ev, r->target))
            continue;
        struct attempt *a = &r->att[r->natt++];
        memset(a, 0, sizeof(*a));
        a->method = r->method;
        a->target = r->target;
        r->st = R_RUNNING;
        r->done = false;
        r->t0 = now_s();
        r->round = 0;
        r->processed = r->total = r->wire = 0;
        snprintf(r->action, sizeof(r->action), "Starting");
        ev->hosts[ev->src].busy++;
        ev->hosts[r->target].busy++;
        say(ev, "%s: %s to %s started", ev->vms[r->vm].name, fy_migration_kind_name(r->method),
            host_name(ev, r->target));
        if (pthread_create(&r->tid, NULL, attempt_main, r) != 0) {
            r->natt--;
            r->st = R_PENDING;
            ev->hosts[ev->src].busy--;
            ev->hosts[r->target].busy--;
            snprintf(r->reason, sizeof(r->reason), "cannot start a thread for the move");
            fail_run(ev, r);
        }
    }
}

/* Whether the agent of host 'h' answers.  Without the lock. */
static bool probe(const struct evac *ev, size_t h)
{
    json_object *res = NULL;
    int rc = agent_call(ev->o->key, ev->hosts[h].c->management, "agent.info", NULL, &res,
                        PROBE_TIMEOUT_MS);
    json_object_put(res);
    fy_error_clear();
    return rc == 0;
}

/* Collects ended attempts.  Called with the lock held; drops it to join
 * and probe. */
static void reap(struct evac *ev)
{
    for (size_t i = 0; i < ev->plan->n_entries; i++) {
        struct run *r = &ev->runs[i];
        if (r->st != R_RUNNING || !r->done)
            continue;
        struct attempt *a = &r->att[r->natt - 1];
        size_t t = a->target;
        pthread_mutex_unlock(&ev->lock);
        pthread_join(r->tid, NULL);
        bool down = !a->moved && ev->hosts[t].state == FY_PLAN_HOST_HEALTHY && !probe(ev, t);
        pthread_mutex_lock(&ev->lock);
        ev->hosts[ev->src].busy--;
        ev->hosts[t].busy--;
        if (down && ev->hosts[t].state == FY_PLAN_HOST_HEALTHY) {
            ev->hosts[t].state = FY_PLAN_HOST_DOWN;
            snprintf(ev->hosts[t].error, sizeof(ev->hosts[t].error),
                     "stopped answering during the evacuation");
            warn(ev, "host %s stopped answering during the evacuation: treated as down",
                 host_name(ev, t));
            say(ev, "host %s does not answer: treated as down", host_name(ev, t));
        }
        if (a->moved) {
            r->st = R_MOVED;
            ev->vms[r->vm].host = t;
            say(ev, "%s: moved to %s by %s in %.1f s%s%s", ev->vms[r->vm].name,
                host_name(ev, t), fy_migration_kind_name(a->method), r->t_end - r->t0,
                a->note[0] ? "; " : "", a->note);
            continue;
        }
        say(ev, "%s: %s to %s failed: %s", ev->vms[r->vm].name,
            fy_migration_kind_name(a->method), host_name(ev, t), a->error);
        snprintf(r->reason, sizeof(r->reason), "%s to %s failed: %s",
                 fy_migration_kind_name(a->method), host_name(ev, t), a->error);
        r->target = NONE;
        r->next = rank_of(a->method) + 1;
        if (a->rc == -FY_E_BUSY) {
            fail_run(ev, r); /* another operation has it: leave it alone */
            continue;
        }
        r->st = R_PENDING;
    }
}

static json_object *report_json(struct evac *ev, bool final);

/* Calls on_progress without the lock. */
static void progress(struct evac *ev, size_t *logged)
{
    if (!ev->o->on_progress)
        return;
    size_t n = json_object_array_length(ev->log);
    json_object *st = report_json(ev, false);
    pthread_mutex_unlock(&ev->lock);
    for (size_t i = *logged; i < n; i++)
        ev->o->on_progress(st, json_object_get_string(json_object_array_get_idx(ev->log, i)),
                           ev->o->ctx);
    ev->o->on_progress(st, NULL, ev->o->ctx);
    json_object_put(st);
    pthread_mutex_lock(&ev->lock);
    *logged = n;
}

static void run_plan(struct evac *ev)
{
    size_t logged = 0;
    double last = 0;

    pthread_mutex_lock(&ev->lock);
    ev->started = true;
    for (;;) {
        bool all_ended = true;

        reap(ev);
        start_ready(ev);
        for (size_t i = 0; i < ev->plan->n_entries; i++)
            all_ended &= run_ended(&ev->runs[i]);
        /* A display tick at most every TICK_MS, and a line per event. */
        if (all_ended || json_object_array_length(ev->log) > logged ||
            now_s() - last >= TICK_MS / 1000.0) {
            progress(ev, &logged);
            last = now_s();
        }
        if (all_ended)
            break;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += TICK_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        bool any_done = false;
        for (size_t i = 0; i < ev->plan->n_entries; i++)
            any_done |= ev->runs[i].st == R_RUNNING && ev->runs[i].done;
        if (!any_done)
            pthread_cond_timedwait(&ev->cond, &ev->lock, &until);
    }
    ev->seconds = now_s() - ev->t0;
    pthread_mutex_unlock(&ev->lock);
}

/* ---- dependent reboots ----------------------------------------------------------- */

static void reboot_dependents(struct evac *ev, const enum fy_plan_outcome *outcomes)
{
    if (!(ev->reboots = calloc(ev->plan->n_reboot + 1, sizeof(*ev->reboots))))
        return;
    for (size_t i = 0; i < ev->plan->n_reboot; i++) {
        struct reboot *rb = &ev->reboots[ev->nreboots++];
        size_t v = ev->plan->reboot[i];
        const struct fy_cluster_host *h = ev->hosts[ev->vms[v].host].c;
        struct fy_host host = {0};
        int rc;

        rb->vm = v;
        if (!fy_plan_reboot_ready(ev->plan, v, outcomes)) {
            snprintf(rb->status, sizeof(rb->status), "skipped");
            snprintf(rb->detail, sizeof(rb->detail), "not every VM it depends on moved");
            continue;
        }
        if ((rc = fy_host_remote_open(&host, h->name, h->management, ev->o->key,
                                      REMOTE_TIMEOUT_MS)) == 0 &&
            (rc = host.ops->vm_stop(&host, ev->vms[v].name, false)) == 0)
            rc = host.ops->vm_start(&host, ev->vms[v].name);
        fy_host_remote_close(&host);
        snprintf(rb->status, sizeof(rb->status), "%s", rc == 0 ? "rebooted" : "failed");
        snprintf(rb->detail, sizeof(rb->detail), "%s", rc == 0 ? "" : fy_error_detail());
        say(ev, "%s: dependent reboot at %s %s%s%s", ev->vms[v].name, h->name, rb->status,
            rc ? ": " : "", rc ? rb->detail : "");
    }
}

/* ---- the report ------------------------------------------------------------------ */

static const char *run_state_name(enum run_state s)
{
    static const char *const n[] = {"pending", "running", "moved", "failed", "stays"};
    return (unsigned)s < 5 ? n[s] : "unknown";
}

static const char *disposition_name(enum fy_plan_disposition d)
{
    switch (d) {
    case FY_PLAN_MOVE: return "move";
    case FY_PLAN_STAY_HOLD: return "hold";
    case FY_PLAN_STAY_UNMANAGED: return "unmanaged";
    case FY_PLAN_STAY_MAINTENANCE: return "maintenance";
    case FY_PLAN_STAY_BUSY: return "busy";
    }
    return "unknown";
}

static enum fy_plan_outcome outcome_of(const struct run *r)
{
    return r->st == R_MOVED ? FY_PLAN_MOVED : r->st == R_FAILED ? FY_PLAN_FAILED
                                                                : FY_PLAN_NOT_ATTEMPTED;
}

static json_object *attempt_json(const struct evac *ev, const struct attempt *a)
{
    json_object *o = json_object_new_object();

    fy_json_put_str(o, "method", fy_migration_kind_name(a->method));
    fy_json_put_str(o, "kind", fy_migration_kind_name(a->kind));
    fy_json_put_str(o, "target", host_name(ev, a->target));
    fy_json_put_int(o, "migration", a->migration);
    fy_json_put_str(o, "state", a->state);
    fy_json_put_bool(o, "moved", a->moved);
    fy_json_put_double(o, "seconds", a->seconds);
    fy_json_put_int(o, "wire_bytes", (int64_t)a->wire);
    fy_json_put_int(o, "pages_sent", (int64_t)a->sent);
    fy_json_put_int(o, "pages_zero", (int64_t)a->zero);
    fy_json_put_int(o, "pages_dup", (int64_t)a->dup);
    fy_json_put_int(o, "pages_dup_shared", (int64_t)a->dup_shared);
    fy_json_put_int(o, "pages_resent", (int64_t)a->resent);
    if (a->error[0])
        fy_json_put_str(o, "error", a->error);
    if (a->note[0])
        fy_json_put_str(o, "note", a->note);
    return o;
}

static json_object *hosts_json(const struct evac *ev)
{
    json_object *arr = json_object_new_array();

    for (size_t i = 0; i < ev->nh; i++) {
        const struct hview *h = &ev->hosts[i];
        json_object *o = json_object_new_object(), *ds = json_object_new_array();
        fy_json_put_str(o, "name", h->c->name);
        fy_json_put_str(o, "management", h->c->management);
        fy_json_put_str(o, "state", fy_cluster_state_name(h->state));
        fy_json_put_bool(o, "reachable", h->reachable);
        fy_json_put_bool(o, "evacuated", i == ev->src);
        fy_json_put_int(o, "mem_total", (int64_t)h->mem_total);
        fy_json_put_int(o, "mem_free", (int64_t)h->mem_free);
        fy_json_put_int(o, "cpus_total", h->cpus_total);
        fy_json_put_int(o, "cpus_free", h->cpus_free);
        fy_json_put_int(o, "max_concurrent", h->c->max_concurrent);
        for (unsigned k = 0; k < h->n_ds; k++)
            json_object_array_add(ds, json_object_new_string(h->ds[k]));
        json_object_object_add(o, "datastores", ds);
        if (h->error[0])
            fy_json_put_str(o, "error", h->error);
        json_object_array_add(arr, o);
    }
    return arr;
}

/* The report so far (final: the result counts).  Under the lock. */
static json_object *report_json(struct evac *ev, bool final)
{
    json_object *o = json_object_new_object(), *vms = json_object_new_array();
    json_object *methods = json_object_new_array(), *tot = json_object_new_object();
    enum fy_plan_outcome *outcomes = calloc(ev->plan->n_entries + 1, sizeof(*outcomes));
    uint64_t wire = 0, zero = 0, dup = 0, shared = 0, moved_mem = 0;
    unsigned n[5] = {0};
    char text[16384];

    fy_json_put_str(o, "host", ev->hosts[ev->src].c->name);
    fy_json_put_bool(o, "dry_run", ev->o->dry_run);
    fy_json_put_bool(o, "all", ev->o->all);
    fy_json_put_bool(o, "reboot_dependents", ev->o->reboot_dependents);
    for (unsigned k = 0; k < FY_PLAN_ATTEMPTS_MAX; k++)
        if (ev->methods & FY_PLAN_METHOD(fy_plan_canonical_methods[k]))
            json_object_array_add(methods, json_object_new_string(
                                               fy_migration_kind_name(fy_plan_canonical_methods[k])));
    json_object_object_add(o, "methods", methods);
    fy_json_put_bool(o, "gang", ev->gang_on);
    if (ev->gang_on)
        fy_json_put_str(o, "gang_name", ev->gang);
    fy_json_put_int(o, "link_limit", ev->o->cluster->link_limit);
    fy_json_put_str(o, "state", ev->o->dry_run ? "planned" : final ? "done" : "running");
    fy_json_put_double(o, "seconds", final ? ev->seconds : ev->started ? now_s() - ev->t0 : 0);
    fy_json_put_int(o, "waves", ev->plan->n_waves);
    if (fy_plan_format(ev->plan, text, sizeof(text)) < 0)
        fy_error_clear();
    fy_json_put_str(o, "plan", text);
    json_object_object_add(o, "hosts", hosts_json(ev));

    for (size_t i = 0; i < ev->plan->n_entries; i++) {
        const struct fy_plan_entry *e = &ev->plan->entries[i];
        const struct run *r = &ev->runs[i];
        const struct vview *v = &ev->vms[e->vm];
        json_object *vo = json_object_new_object(), *planned = json_object_new_array();
        json_object *atts = json_object_new_array();

        fy_json_put_str(vo, "name", v->name);
        fy_json_put_str(vo, "power", v->power);
        fy_json_put_int(vo, "memory", (int64_t)v->mem);
        fy_json_put_str(vo, "disposition", disposition_name(e->disposition));
        fy_json_put_int(vo, "wave", e->wave);
        for (size_t k = 0; k < e->n_attempts; k++) {
            json_object *p = json_object_new_object();
            fy_json_put_str(p, "method", fy_migration_kind_name(e->attempts[k].method));
            fy_json_put_str(p, "target", host_name(ev, e->attempts[k].host));
            json_object_array_add(planned, p);
        }
        json_object_object_add(vo, "planned", planned);
        fy_json_put_str(vo, "status", ev->o->dry_run && r->st == R_PENDING ? "planned"
                                                                          : run_state_name(r->st));
        fy_json_put_str(vo, "host", host_name(ev, v->host));
        if (r->reason[0] && r->st != R_MOVED)
            fy_json_put_str(vo, "reason", r->reason);
        else if (e->reason[0])
            fy_json_put_str(vo, "reason", e->reason);
        for (unsigned k = 0; k < r->natt; k++) {
            const struct attempt *a = &r->att[k];
            if (r->st == R_RUNNING && k == r->natt - 1)
                continue;
            json_object_array_add(atts, attempt_json(ev, a));
            wire += a->wire;
            zero += a->zero;
            dup += a->dup;
            shared += a->dup_shared;
            if (a->moved) {
                fy_json_put_str(vo, "method", fy_migration_kind_name(a->method));
                moved_mem += v->mem;
            }
        }
        json_object_object_add(vo, "attempts", atts);
        if (r->st == R_RUNNING) {
            json_object *p = json_object_new_object();
            fy_json_put_str(p, "method", fy_migration_kind_name(r->method));
            fy_json_put_str(p, "target", host_name(ev, r->target));
            fy_json_put_str(p, "action", r->action);
            fy_json_put_int(p, "round", r->round);
            fy_json_put_int(p, "data_processed", (int64_t)r->processed);
            fy_json_put_int(p, "data_total", (int64_t)r->total);
            fy_json_put_int(p, "wire_bytes", (int64_t)r->wire);
            fy_json_put_double(p, "elapsed", now_s() - r->t0);
            json_object_object_add(vo, "progress", p);
            wire += r->wire;
        }
        if (outcomes)
            outcomes[i] = outcome_of(r);
        if (final || ev->o->dry_run) {
            enum fy_plan_outcome oc = ev->o->dry_run
                ? (e->n_attempts ? FY_PLAN_MOVED : FY_PLAN_NOT_ATTEMPTED) : outcome_of(r);
            if (outcomes)
                outcomes[i] = oc;
            fy_json_put_str(vo, "result",
                            fy_plan_result_name(fy_plan_entry_result(ev->plan, i, oc)));
        }
        n[r->st]++;
        json_object_array_add(vms, vo);
    }
    /* Stopped VMs of the host that were not asked to move (no --all). */
    for (size_t i = 0; i < ev->nv; i++) {
        const struct vview *v = &ev->vms[i];
        if (v->orig != ev->src || v->run != NONE)
            continue;
        json_object *vo = json_object_new_object();
        fy_json_put_str(vo, "name", v->name);
        fy_json_put_str(vo, "power", v->power);
        fy_json_put_int(vo, "memory", (int64_t)v->mem);
        fy_json_put_str(vo, "disposition", "stopped");
        fy_json_put_int(vo, "wave", 0);
        fy_json_put_str(vo, "status", "stays");
        fy_json_put_str(vo, "host", host_name(ev, v->host));
        fy_json_put_str(vo, "reason", "stays: stopped (--all moves it too)");
        json_object_object_add(vo, "attempts", json_object_new_array());
        fy_json_put_str(vo, "result", "ok");
        json_object_array_add(vms, vo);
    }
    json_object_object_add(o, "vms", vms);

    if (ev->nreboots || ev->plan->n_reboot) {
        json_object *rbs = json_object_new_array();
        for (size_t i = 0; i < ev->plan->n_reboot; i++) {
            json_object *ro = json_object_new_object();
            size_t v = ev->plan->reboot[i];
            fy_json_put_str(ro, "vm", ev->vms[v].name);
            fy_json_put_str(ro, "host", host_name(ev, ev->vms[v].host));
            fy_json_put_str(ro, "status", i < ev->nreboots ? ev->reboots[i].status
                                                           : ev->o->dry_run ? "planned"
                                                                            : "pending");
            if (i < ev->nreboots && ev->reboots[i].detail[0])
                fy_json_put_str(ro, "detail", ev->reboots[i].detail);
            json_object_array_add(rbs, ro);
        }
        json_object_object_add(o, "reboots", rbs);
    }

    fy_json_put_int(tot, "vms", (int64_t)ev->plan->n_entries);
    fy_json_put_int(tot, "pending", n[R_PENDING]);
    fy_json_put_int(tot, "running", n[R_RUNNING]);
    fy_json_put_int(tot, "moved", n[R_MOVED]);
    fy_json_put_int(tot, "failed", n[R_FAILED]);
    fy_json_put_int(tot, "stayed", n[R_STAYS]);
    fy_json_put_int(tot, "memory_moved", (int64_t)moved_mem);
    fy_json_put_int(tot, "wire_bytes", (int64_t)wire);
    fy_json_put_int(tot, "saved_zero_bytes", (int64_t)(zero * FY_PAGE_SIZE));
    fy_json_put_int(tot, "saved_dup_vm_bytes",
                    (int64_t)((dup > shared ? dup - shared : 0) * FY_PAGE_SIZE));
    fy_json_put_int(tot, "saved_dup_shared_bytes", (int64_t)(shared * FY_PAGE_SIZE));
    json_object_object_add(o, "totals", tot);

    if (final || ev->o->dry_run) {
        enum fy_plan_result res = fy_planner_result(ev->plan, outcomes);
        for (size_t i = 0; i < ev->nreboots; i++)
            if (!strcmp(ev->reboots[i].status, "failed") && res < FY_PLAN_WARNING)
                res = FY_PLAN_WARNING;
        fy_json_put_str(o, "result", fy_plan_result_name(res));
    }
    free(outcomes);
    json_object_object_add(o, "warnings", json_object_get(ev->warnings));
    json_object_object_add(o, "log", json_object_get(ev->log));
    return o;
}

/* ---- the whole ------------------------------------------------------------------- */

static void evac_free(struct evac *ev)
{
    fy_plan_destroy(ev->plan);
    free(ev->runs);
    free(ev->reboots);
    free(ev->ph);
    free(ev->pv);
    free(ev->hosts);
    free(ev->vms);
    json_object_put(ev->warnings);
    json_object_put(ev->log);
    pthread_cond_destroy(&ev->cond);
    pthread_mutex_destroy(&ev->lock);
}

int fy_evacuate(const struct fy_evac_opts *o, json_object **report)
{
    struct evac ev = {.o = o};
    int rc;

    if (!report)
        return fy_error(FY_E_INVAL, "evacuate: no report pointer");
    *report = NULL;
    if (!o || !o->cluster || !o->host || !o->key)
        return fy_error(FY_E_INVAL, "evacuate: no cluster, host or key");
    pthread_mutex_init(&ev.lock, NULL);
    pthread_cond_init(&ev.cond, NULL);
    ev.warnings = json_object_new_array();
    ev.log = json_object_new_array();
    ev.t0 = now_s();
    ev.methods = o->methods ? o->methods
                 : o->cluster->methods ? o->cluster->methods : FY_PLAN_METHODS_DEFAULT;
    ev.gang_on = o->gang < 0 ? o->cluster->gang_dedup : o->gang > 0;
    if (ev.gang_on) {
        uint8_t rnd[4] = {0};
        if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
            memset(rnd, 0, sizeof(rnd));
        snprintf(ev.gang, sizeof(ev.gang), "evac-%.40s-%02x%02x%02x%02x", o->host, rnd[0],
                 rnd[1], rnd[2], rnd[3]);
    }
    ev.src = NONE;
    for (size_t i = 0; i < o->cluster->n_hosts; i++)
        if (!strcmp(o->cluster->hosts[i].name, o->host))
            ev.src = i;
    if (ev.src == NONE) {
        rc = fy_error(FY_E_NOTFOUND, "host %s is not in the cluster file: add a [host %s] "
                      "section, or name one of its hosts", o->host, o->host);
        goto out;
    }
    if ((rc = build_view(&ev)) < 0 || (rc = build_input(&ev)) < 0)
        goto out;
    if ((rc = fy_planner_plan(&ev.in, &ev.plan)) < 0)
        goto out;
    if (!(ev.runs = calloc(ev.plan->n_entries + 1, sizeof(*ev.runs)))) {
        rc = fy_error(FY_E_NOMEM, "no memory to run the plan");
        goto out;
    }
    for (size_t i = 0; i < ev.plan->n_entries; i++) {
        const struct fy_plan_entry *e = &ev.plan->entries[i];
        struct run *r = &ev.runs[i];
        r->ev = &ev;
        r->vm = e->vm;
        r->target = NONE;
        ev.vms[e->vm].run = i;
        if (e->disposition != FY_PLAN_MOVE) {
            r->st = R_STAYS;
        } else if (e->n_attempts == 0) {
            r->st = R_FAILED;
            snprintf(r->reason, sizeof(r->reason), "%s", e->reason);
        } else {
            r->st = R_PENDING;
            r->method = e->attempts[0].method;
            r->target = e->attempts[0].host;
            r->next = rank_of(r->method);
        }
    }
    if (!o->dry_run) {
        for (size_t i = 0; i < ev.plan->n_entries; i++)
            if (ev.runs[i].st == R_FAILED)
                say(&ev, "%s: not moved: %s", ev.vms[ev.runs[i].vm].name, ev.runs[i].reason);
        ev.t0 = now_s();
        run_plan(&ev);
        if (o->reboot_dependents && ev.plan->n_reboot) {
            enum fy_plan_outcome *oc = calloc(ev.plan->n_entries + 1, sizeof(*oc));
            for (size_t i = 0; oc && i < ev.plan->n_entries; i++)
                oc[i] = outcome_of(&ev.runs[i]);
            if (oc)
                reboot_dependents(&ev, oc);
            free(oc);
        }
    }
    pthread_mutex_lock(&ev.lock);
    *report = report_json(&ev, !o->dry_run);
    pthread_mutex_unlock(&ev.lock);
    rc = 0;
out:
    {
        char keep[1024];
        snprintf(keep, sizeof(keep), "%s", rc < 0 ? fy_error_detail() : "");
        evac_free(&ev);
        if (rc < 0)
            fy_error(-rc, "%s", keep);
    }
    return rc;
}
