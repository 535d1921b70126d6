/* The evacuation planner: see planner.h for the model. */
#include "controlplane/planner.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/error.h"

/* The order methods are tried in, whatever the user's order (seed 004). */
const enum fy_migration_kind fy_plan_canonical_methods[FY_PLAN_ATTEMPTS_MAX] = {
    FY_MIG_LIVE, FY_MIG_QUICK, FY_MIG_MOVE, FY_MIG_STORAGE, FY_MIG_FAILOVER,
};
#define canonical_methods fy_plan_canonical_methods

#define NONE ((size_t)-1)

/* Working state of one planning run. */
struct planner {
    const struct fy_plan_input *in;
    size_t src;                 /* the evacuated host */
    size_t *vm_host;            /* host index of each VM */
    size_t *planned;            /* planned target of each VM, or NONE */
    uint64_t *mem_planned;      /* per host */
    unsigned *cpus_planned;     /* per host */
};

static size_t host_find(const struct fy_plan_input *in, const char *name)
{
    for (size_t i = 0; name && i < in->n_hosts; i++)
        if (in->hosts[i].name && strcmp(in->hosts[i].name, name) == 0)
            return i;
    return NONE;
}

static size_t vm_find(const struct fy_plan_input *in, const char *name)
{
    for (size_t i = 0; name && i < in->n_vms; i++)
        if (in->vms[i].name && strcmp(in->vms[i].name, name) == 0)
            return i;
    return NONE;
}

static bool name_in(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] && strcmp(list[i], name) == 0)
            return true;
    return false;
}

static bool reaches_all(const struct fy_plan_host *h, const struct fy_plan_vm *vm)
{
    for (size_t i = 0; i < vm->n_datastores; i++)
        if (!name_in(vm->datastores[i], h->datastores, h->n_datastores))
            return false;
    return true;
}

static bool needs_shared_storage(enum fy_migration_kind m)
{
    return m != FY_MIG_MOVE && m != FY_MIG_STORAGE;
}

/* Where VM 'j' is or will be for placement constraints: its planned
 * target, its host if it stays, or NONE if it will move but is not placed
 * yet. */
static size_t vm_location(const struct planner *p, size_t j, const bool *moving)
{
    if (p->planned[j] != NONE)
        return p->planned[j];
    if (moving[j])
        return NONE;
    return p->vm_host[j];
}

static bool constraints_ok(const struct planner *p, size_t v, size_t h, const bool *moving)
{
    const struct fy_plan_vm *vm = &p->in->vms[v];

    if (!vm->running)
        return true;
    for (size_t j = 0; j < p->in->n_vms; j++) {
        const struct fy_plan_vm *o = &p->in->vms[j];
        if (j == v || !o->running)
            continue;
        size_t loc = vm_location(p, j, moving);
        if (loc == NONE)
            continue;
        for (size_t g = 0; g < vm->n_eq_groups; g++)
            if (name_in(vm->eq_groups[g], o->eq_groups, o->n_eq_groups) && loc != h)
                return false;
        for (size_t g = 0; g < vm->n_ne_groups; g++)
            if (name_in(vm->ne_groups[g], o->ne_groups, o->n_ne_groups) && loc == h)
                return false;
    }
    return true;
}

static bool capacity_ok(const struct planner *p, size_t v, size_t h)
{
    const struct fy_plan_host *host = &p->in->hosts[h];
    const struct fy_plan_vm *vm = &p->in->vms[v];

    return host->mem_free >= p->mem_planned[h] &&
           host->mem_free - p->mem_planned[h] >= vm->memory &&
           host->cpus_free >= p->cpus_planned[h] &&
           host->cpus_free - p->cpus_planned[h] >= vm->vcpus;
}

static bool host_usable(const struct planner *p, size_t h)
{
    return h != p->src && p->in->hosts[h].state == FY_PLAN_HOST_HEALTHY;
}

static bool storage_ok(const struct fy_plan_host *h, const struct fy_plan_vm *vm,
                       enum fy_migration_kind m)
{
    if (reaches_all(h, vm))
        return true;
    return !needs_shared_storage(m) && h->n_datastores > 0;
}

/* Whether candidate 'a' ranks before 'b' for VM 'v'. */
static bool better(const struct planner *p, size_t v, size_t a, size_t b)
{
    const struct fy_plan_vm *vm = &p->in->vms[v];
    const struct fy_plan_host *ha = &p->in->hosts[a], *hb = &p->in->hosts[b];
    bool ra = reaches_all(ha, vm), rb = reaches_all(hb, vm);
    if (ra != rb)
        return ra;
    uint64_t fa = ha->mem_free - p->mem_planned[a];
    uint64_t fb = hb->mem_free - p->mem_planned[b];
    if (fa != fb)
        return fa > fb;
    return strcmp(ha->name, hb->name) < 0;
}

static size_t pick_target(const struct planner *p, size_t v, enum fy_migration_kind m,
                          const bool *moving)
{
    size_t best = NONE;

    for (size_t h = 0; h < p->in->n_hosts; h++) {
        if (!host_usable(p, h) || !storage_ok(&p->in->hosts[h], &p->in->vms[v], m) ||
            !capacity_ok(p, v, h) || !constraints_ok(p, v, h, moving))
            continue;
        if (best == NONE || better(p, v, h, best))
            best = h;
    }
    return best;
}

static void format_bytes(char *buf, size_t len, uint64_t bytes)
{
    const uint64_t mib = 1024ull * 1024ull, gib = 1024ull * mib;

    if (bytes % gib == 0)
        snprintf(buf, len, "%" PRIu64 " GiB", bytes / gib);
    else if (bytes % mib == 0)
        snprintf(buf, len, "%" PRIu64 " MiB", bytes / mib);
    else
        snprintf(buf, len, "%" PRIu64 " bytes", bytes);
}

/* Appends to 'buf' (of 'len', NUL-terminated); reports truncation. */
static bool append(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool append(char *buf, size_t len, const char *fmt, ...)
{
    size_t used = strlen(buf);
    va_list ap;

    if (used + 1 >= len)
        return false;
    va_start(ap, fmt);
    int n = vsnprintf(buf + used, len - used, fmt, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < len - used;
}

/* Says what was missing for VM 'v' of 'e', narrowing the hosts filter by
 * filter in the order storage, capacity, constraints, for the most
 * permissive of the allowed methods. */
static void explain_no_target(const struct planner *p, size_t v, unsigned methods,
                              struct fy_plan_entry *e)
{
    const struct fy_plan_vm *vm = &p->in->vms[v];
    bool shared = !(methods & (FY_PLAN_METHOD(FY_MIG_MOVE) | FY_PLAN_METHOD(FY_MIG_STORAGE)));
    enum fy_migration_kind m = shared ? FY_MIG_LIVE : FY_MIG_MOVE;
    size_t n_usable = 0, n_storage = 0, n_capacity = 0;
    char mem[32], ds[96] = "";

    for (size_t h = 0; h < p->in->n_hosts; h++) {
        if (!host_usable(p, h))
            continue;
        n_usable++;
        if (!storage_ok(&p->in->hosts[h], vm, m))
            continue;
        n_storage++;
        if (capacity_ok(p, v, h))
            n_capacity++;
    }
    format_bytes(mem, sizeof(mem), vm->memory);
    if (shared && vm->n_datastores > 0) {
        append(ds, sizeof(ds), " reaching datastore%s ", vm->n_datastores > 1 ? "s" : "");
        for (size_t i = 0; i < vm->n_datastores; i++)
            append(ds, sizeof(ds), "%s%s", i ? "," : "", vm->datastores[i]);
    }
    if (n_usable == 0)
        snprintf(e->reason, sizeof(e->reason), "no healthy host other than %s",
                 p->in->hosts[p->src].name);
    else if (n_storage == 0)
        snprintf(e->reason, sizeof(e->reason), "no healthy host%s", ds);
    else if (n_capacity == 0)
        snprintf(e->reason, sizeof(e->reason),
                 "no host with %s free memory and %u free CPUs%s", mem, vm->vcpus, ds);
    else
        snprintf(e->reason, sizeof(e->reason),
                 "no host with %s free memory and %u free CPUs%s satisfying its EQ/NE constraints",
                 mem, vm->vcpus, ds);
}

static int check_input(const struct fy_plan_input *in, size_t *src)
{
    if (!in || !in->evacuate || (in->n_hosts && !in->hosts) || (in->n_vms && !in->vms))
        return fy_error(FY_E_INVAL, "evacuation plan: no input or no host to evacuate");
    if (in->methods & ~(unsigned)FY_PLAN_METHODS_ALL)
        return fy_error(FY_E_INVAL, "evacuation plan: methods 0x%x include a kind "
                        "evacuation does not use (only live, quick, move, storage, failover)",
                        in->methods);
    for (size_t i = 0; i < in->n_hosts; i++) {
        if (!in->hosts[i].name || (in->hosts[i].n_datastores && !in->hosts[i].datastores))
            return fy_error(FY_E_INVAL, "evacuation plan: host %zu has no name or datastores", i);
        if (host_find(in, in->hosts[i].name) != i)
            return fy_error(FY_E_CONFIG, "evacuation plan: host %s is listed twice",
                            in->hosts[i].name);
    }
    *src = host_find(in, in->evacuate);
    if (*src == NONE)
        return fy_error(FY_E_NOTFOUND, "evacuation plan: host %s to evacuate is unknown",
                        in->evacuate);
    for (size_t i = 0; i < in->n_vms; i++) {
        const struct fy_plan_vm *vm = &in->vms[i];
        if (!vm->name || (vm->n_datastores && !vm->datastores) ||
            (vm->n_depends_on && !vm->depends_on) || (vm->n_eq_groups && !vm->eq_groups) ||
            (vm->n_ne_groups && !vm->ne_groups))
            return fy_error(FY_E_INVAL, "evacuation plan: VM %zu has no name or a NULL list", i);
        if (vm_find(in, vm->name) != i)
            return fy_error(FY_E_CONFIG, "evacuation plan: VM %s is listed twice", vm->name);
        if (host_find(in, vm->host) == NONE)
            return fy_error(FY_E_NOTFOUND, "evacuation plan: VM %s is on unknown host %s",
                            vm->name, vm->host ? vm->host : "(none)");
        for (size_t d = 0; d < vm->n_depends_on; d++)
            if (vm_find(in, vm->depends_on[d]) == NONE)
                return fy_error(FY_E_NOTFOUND, "evacuation plan: VM %s depends on unknown VM %s",
                                vm->name, vm->depends_on[d] ? vm->depends_on[d] : "(null)");
    }
    return 0;
}

/* Whether VM 'a' goes before VM 'b' among VMs free to go. */
static bool goes_first(const struct fy_plan_input *in, size_t a, size_t b)
{
    if (in->vms[a].priority != in->vms[b].priority)
        return in->vms[a].priority > in->vms[b].priority;
    return strcmp(in->vms[a].name, in->vms[b].name) < 0;
}

/* Orders the 'n' VMs of 'set' (indices into vms) dependencies first, then
 * by priority and name, into 'order'.  On a cycle reports the VMs left. */
static int order_vms(const struct fy_plan_input *in, const size_t *set, size_t n,
                     size_t *order)
{
    bool *done = calloc(n ? n : 1, sizeof(*done));
    int rc = 0;

    if (!done)
        return fy_error(FY_E_NOMEM, "evacuation plan: out of memory ordering %zu VMs", n);
    for (size_t k = 0; k < n; k++) {
        size_t pick = NONE;
        for (size_t i = 0; i < n; i++) {
            if (done[i])
                continue;
            const struct fy_plan_vm *vm = &in->vms[set[i]];
            bool ready = true;
            for (size_t j = 0; j < n && ready; j++)
                if (!done[j] && j != i &&
                    name_in(in->vms[set[j]].name, vm->depends_on, vm->n_depends_on))
                    ready = false;
            if (ready && (pick == NONE || goes_first(in, set[i], set[pick])))
                pick = i;
        }
        if (pick == NONE) {
            char names[FY_PLAN_REASON_MAX] = "";
            for (size_t i = 0; i < n; i++)
                if (!done[i])
                    append(names, sizeof(names), "%s%s", names[0] ? ", " : "",
                           in->vms[set[i]].name);
            rc = fy_error(FY_E_CONFIG, "evacuation plan: dependency cycle among VMs %s "
                          "(on host %s); remove one of their dependencies", names, in->evacuate);
            goto out;
        }
        done[pick] = true;
        order[k] = set[pick];
    }
out:
    free(done);
    return rc;
}

static enum fy_plan_disposition disposition_of(const struct fy_plan_vm *vm)
{
    if (vm->hold)
        return FY_PLAN_STAY_HOLD;
    if (!vm->managed)
        return FY_PLAN_STAY_UNMANAGED;
    if (vm->maintenance)
        return FY_PLAN_STAY_MAINTENANCE;
    if (vm->busy)
        return FY_PLAN_STAY_BUSY;
    return FY_PLAN_MOVE;
}

static const char *const stay_reasons[] = {
    [FY_PLAN_MOVE] = "",
    [FY_PLAN_STAY_HOLD] = "stays: Hold constraint",
    [FY_PLAN_STAY_UNMANAGED] = "stays: unmanaged",
    [FY_PLAN_STAY_MAINTENANCE] = "stays: in maintenance mode",
    [FY_PLAN_STAY_BUSY] = "stays: busy with another operation",
};

/* Puts the moves of 'plan' into waves (see planner.h). */
static int assign_waves(struct fy_plan *plan, size_t src)
{
    const struct fy_plan_input *in = plan->in;
    size_t cap = plan->n_entries + 1;
    unsigned *load = calloc(cap * in->n_hosts + 1, sizeof(*load)); /* [wave][host] */
    unsigned *wave_of = calloc(in->n_vms + 1, sizeof(*wave_of));
    int rc = 0;

    if (!load || !wave_of) {
        rc = fy_error(FY_E_NOMEM, "evacuation plan: out of memory assigning waves");
        goto out;
    }
    for (size_t i = 0; i < plan->n_entries; i++) {
        struct fy_plan_entry *e = &plan->entries[i];
        const struct fy_plan_vm *vm = &in->vms[e->vm];
        if (e->n_attempts == 0)
            continue;
        unsigned w = 1;
        for (size_t d = 0; d < vm->n_depends_on; d++) {
            size_t j = vm_find(in, vm->depends_on[d]);
            if (wave_of[j] >= w)
                w = wave_of[j] + 1;
        }
        size_t dst = e->attempts[0].host;
        unsigned lsrc = in->hosts[src].max_concurrent, ldst = in->hosts[dst].max_concurrent;
        /* Each wave has at least one move, so 'cap' waves always suffice. */
        /* Every move of the plan leaves 'src', so the moves at 'dst' in a
         * wave are also those on the link between the two. */
        unsigned llink = in->link_limit;
        if (llink && (!ldst || llink < ldst))
            ldst = llink;
        while ((lsrc && load[w * in->n_hosts + src] >= lsrc) ||
               (ldst && load[w * in->n_hosts + dst] >= ldst))
            w++;
        load[w * in->n_hosts + src]++;
        load[w * in->n_hosts + dst]++;
        e->wave = w;
        wave_of[e->vm] = w;
        if (w > plan->n_waves)
            plan->n_waves = w;
    }
out:
    free(load);
    free(wave_of);
    return rc;
}

static int entry_rank(const struct fy_plan_entry *e)
{
    return e->wave ? (int)e->wave : 1 << 30;
}

/* Moves by wave, then the rest; keeps the planning order otherwise. */
static void sort_entries(struct fy_plan *plan)
{
    for (size_t i = 1; i < plan->n_entries; i++) {
        struct fy_plan_entry tmp = plan->entries[i];
        size_t j = i;
        while (j > 0 && entry_rank(&plan->entries[j - 1]) > entry_rank(&tmp)) {
            plan->entries[j] = plan->entries[j - 1];
            j--;
        }
        plan->entries[j] = tmp;
    }
}

static int list_reboots(struct fy_plan *plan, const bool *moved_set)
{
    const struct fy_plan_input *in = plan->in;
    size_t *set = calloc(in->n_vms + 1, sizeof(*set));

    if (!set)
        return fy_error(FY_E_NOMEM, "evacuation plan: out of memory listing reboots");
    for (size_t i = 0; i < in->n_vms; i++) {
        const struct fy_plan_vm *vm = &in->vms[i];
        if (!vm->running || !vm->managed || vm->maintenance || vm->busy)
            continue;
        bool depends = false;
        for (size_t d = 0; d < vm->n_depends_on && !depends; d++)
            depends = moved_set[vm_find(in, vm->depends_on[d])];
        if (!depends)
            continue;
        /* Insert in priority-then-name order. */
        size_t k = plan->n_reboot;
        while (k > 0 && goes_first(in, i, set[k - 1])) {
            set[k] = set[k - 1];
            k--;
        }
        set[k] = i;
        plan->n_reboot++;
    }
    plan->reboot = set;
    return 0;
}

int fy_planner_methods(const enum fy_migration_kind *list, size_t n, unsigned *mask)
{
    unsigned m = 0;

    if (!mask || (n && !list))
        return fy_error(FY_E_INVAL, "evacuation methods: no list or no result");
    for (size_t i = 0; i < n; i++) {
        if ((unsigned)list[i] >= FY_MIG__COUNT ||
            !(FY_PLAN_METHOD(list[i]) & FY_PLAN_METHODS_ALL))
            return fy_error(FY_E_INVAL, "evacuation methods: %s is not one of live, quick, "
                            "move, storage, failover", fy_migration_kind_name(list[i]));
        m |= FY_PLAN_METHOD(list[i]);
    }
    *mask = m;
    return 0;
}

int fy_planner_plan(const struct fy_plan_input *in, struct fy_plan **out)
{
    struct planner p = { .in = in };
    struct fy_plan *plan = NULL;
    size_t *set = NULL, *order = NULL, n = 0;
    bool *moving = NULL;
    int rc;

    if (!out)
        return fy_error(FY_E_INVAL, "evacuation plan: no result pointer");
    *out = NULL;
    rc = check_input(in, &p.src);
    if (rc < 0)
        return rc;
    unsigned methods = in->methods ? in->methods : FY_PLAN_METHODS_DEFAULT;

    size_t nv = in->n_vms + 1, nh = in->n_hosts + 1;
    p.vm_host = calloc(nv, sizeof(*p.vm_host));
    p.planned = calloc(nv, sizeof(*p.planned));
    p.mem_planned = calloc(nh, sizeof(*p.mem_planned));
    p.cpus_planned = calloc(nh, sizeof(*p.cpus_planned));
    set = calloc(nv, sizeof(*set));
    order = calloc(nv, sizeof(*order));
    moving = calloc(nv, sizeof(*moving));
    plan = calloc(1, sizeof(*plan));
    if (plan)
        plan->entries = calloc(nv, sizeof(*plan->entries));
    if (!p.vm_host || !p.planned || !p.mem_planned || !p.cpus_planned || !set || !order ||
        !moving || !plan || !plan->entries) {
        rc = fy_error(FY_E_NOMEM, "evacuation plan: out of memory for %zu VMs", in->n_vms);
        goto out;
    }
    plan->in = in;

    for (size_t i = 0; i < in->n_vms; i++) {
        p.vm_host[i] = host_find(in, in->vms[i].host);
        p.planned[i] = NONE;
        if (p.vm_host[i] != p.src || (!in->vms[i].running && !in->all))
            continue;
        set[n++] = i;
        moving[i] = disposition_of(&in->vms[i]) == FY_PLAN_MOVE;
    }
    rc = order_vms(in, set, n, order);
    if (rc < 0)
        goto out;

    for (size_t k = 0; k < n; k++) {
        size_t v = order[k];
        struct fy_plan_entry *e = &plan->entries[plan->n_entries++];
        e->vm = v;
        e->disposition = disposition_of(&in->vms[v]);
        if (e->disposition != FY_PLAN_MOVE) {
            snprintf(e->reason, sizeof(e->reason), "%s", stay_reasons[e->disposition]);
            continue;
        }
        for (size_t c = 0; c < FY_PLAN_ATTEMPTS_MAX; c++) {
            enum fy_migration_kind m = canonical_methods[c];
            if (!(methods & FY_PLAN_METHOD(m)))
                continue;
            size_t h = pick_target(&p, v, m, moving);
            if (h == NONE)
                continue;
            e->attempts[e->n_attempts].method = m;
            e->attempts[e->n_attempts].host = h;
            e->n_attempts++;
        }
        if (e->n_attempts == 0) {
            explain_no_target(&p, v, methods, e);
            continue;
        }
        size_t h = e->attempts[0].host;
        p.planned[v] = h;
        p.mem_planned[h] += in->vms[v].memory;
        p.cpus_planned[h] += in->vms[v].vcpus;
    }

    rc = assign_waves(plan, p.src);
    if (rc < 0)
        goto out;
    sort_entries(plan);
    if (in->reboot_dependents) {
        bool *moved_set = calloc(nv, sizeof(*moved_set));
        if (!moved_set) {
            rc = fy_error(FY_E_NOMEM, "evacuation plan: out of memory listing reboots");
            goto out;
        }
        for (size_t i = 0; i < plan->n_entries; i++)
            moved_set[plan->entries[i].vm] = plan->entries[i].n_attempts > 0;
        rc = list_reboots(plan, moved_set);
        free(moved_set);
        if (rc < 0)
            goto out;
    }
    *out = plan;
    plan = NULL;
out:
    fy_plan_destroy(plan);
    free(p.vm_host);
    free(p.planned);
    free(p.mem_planned);
    free(p.cpus_planned);
    free(set);
    free(order);
    free(moving);
    return rc;
}

void fy_plan_destroy(struct fy_plan *plan)
{
    if (!plan)
        return;
    free(plan->entries);
    free(plan->reboot);
    free(plan);
}

int fy_plan_format(const struct fy_plan *plan, char *buf, size_t len)
{
    bool ok = true;

    if (!plan || !buf || len == 0)
        return fy_error(FY_E_INVAL, "plan format: no plan or no buffer");
    buf[0] = '\0';
    const struct fy_plan_input *in = plan->in;
    ok &= append(buf, len, "evacuate %s: %zu VM(s), %u wave(s)\n", in->evacuate,
                 plan->n_entries, plan->n_waves);
    ok &= append(buf, len, "%-5s %-20s %s\n", "WAVE", "VM", "ATTEMPTS");
    for (size_t i = 0; i < plan->n_entries; i++) {
        const struct fy_plan_entry *e = &plan->entries[i];
        char wave[16] = "-";
        if (e->wave)
            snprintf(wave, sizeof(wave), "%u", e->wave);
        ok &= append(buf, len, "%-5s %-20s ", wave, in->vms[e->vm].name);
        for (size_t a = 0; a < e->n_attempts; a++)
            ok &= append(buf, len, "%s%s->%s", a ? ", " : "",
                         fy_migration_kind_name(e->attempts[a].method),
                         in->hosts[e->attempts[a].host].name);
        if (e->n_attempts == 0)
            ok &= append(buf, len, "%s", e->reason);
        ok &= append(buf, len, "\n");
    }
    if (plan->n_reboot) {
        ok &= append(buf, len, "reboot once their dependencies moved:");
        for (size_t i = 0; i < plan->n_reboot; i++)
            ok &= append(buf, len, " %s", in->vms[plan->reboot[i]].name);
        ok &= append(buf, len, "\n");
    }
    if (!ok)
        return fy_error(FY_E_NOSPACE, "plan format: %zu bytes are not enough", len);
    return 0;
}

enum fy_plan_result fy_plan_entry_result(const struct fy_plan *plan, size_t i,
                                         enum fy_plan_outcome outcome)
{
    if (!plan || i >= plan->n_entries)
        return FY_PLAN_OK;
    if (outcome == FY_PLAN_MOVED)
        return FY_PLAN_OK;
    const struct fy_plan_vm *vm = &plan->in->vms[plan->entries[i].vm];
    if (vm->hold || !vm->managed)
        return FY_PLAN_OK;
    if (vm->maintenance)
        return FY_PLAN_WARNING;
    return FY_PLAN_ERROR; /* busy, or had to move and did not */
}

enum fy_plan_result fy_planner_result(const struct fy_plan *plan,
                                      const enum fy_plan_outcome *outcomes)
{
    enum fy_plan_result worst = FY_PLAN_OK;

    for (size_t i = 0; plan && i < plan->n_entries; i++) {
        enum fy_plan_result r =
            fy_plan_entry_result(plan, i, outcomes ? outcomes[i] : FY_PLAN_NOT_ATTEMPTED);
        if (r > worst)
            worst = r;
    }
    return worst;
}

bool fy_plan_reboot_ready(const struct fy_plan *plan, size_t vm,
                          const enum fy_plan_outcome *outcomes)
{
    if (!plan || !outcomes || vm >= plan->in->n_vms)
        return false;
    const struct fy_plan_input *in = plan->in;
    const struct fy_plan_vm *v = &in->vms[vm];
    for (size_t d = 0; d < v->n_depends_on; d++) {
        size_t j = vm_find(in, v->depends_on[d]);
        if (j == NONE || !in->vms[j].host || strcmp(in->vms[j].host, in->evacuate) != 0)
            continue;
        size_t i = 0;
        while (i < plan->n_entries && plan->entries[i].vm != j)
            i++;
        if (i == plan->n_entries || outcomes[i] != FY_PLAN_MOVED)
            return false;
    }
    return true;
}

const char *fy_plan_result_name(enum fy_plan_result r)
{
    switch (r) {
    case FY_PLAN_OK: return "ok";
    case FY_PLAN_WARNING: return "warning";
    case FY_PLAN_ERROR: return "error";
    }
    return "unknown";
}
