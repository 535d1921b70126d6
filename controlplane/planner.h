/* The evacuation planner (SPEC section 6, seed 004): which VMs leave a host,
 * by which methods, to which targets, in which order, and what the outcome
 * of running that plan means.
 *
 * The planner is pure: it reads the cluster view it is given, allocates the
 * plan and does nothing else (no I/O, no drivers, no threads, no clock).
 * The same input always yields the same plan: every tie is broken by name,
 * so even the order of the input arrays does not matter.
 *
 * Functions return 0 on success or a negative fy_err (reported with
 * fy_error()), except where noted.
 *
 * The model
 * ---------
 * Every VM on the evacuated host is looked at; a stopped VM only with
 * 'all' (without it stopped VMs are neither moved nor judged, as in seed
 * 004: "only powered-on VMs are judged").  In this order:
 *   Hold constraint      stays, zero attempts (no effect on the result);
 *   unmanaged            stays, zero attempts (no effect);
 *   in maintenance mode  stays, zero attempts (warning);
 *   busy                 stays, zero attempts (error);
 *   otherwise the VM must move: it gets one attempt per allowed method, in
 *   the canonical order live, quick, move, storage, failover, each with the
 *   target chosen for that method; a method no host can take is left out;
 *   a VM with no attempt at all carries a reason saying what was missing.
 *
 * A target host for a method must be:
 *   - another host, healthy (never one in maintenance or down);
 *   - have the VM's memory and vCPUs free once the VMs already planned onto
 *     it are counted (a stopped VM too, so that it can start there);
 *   - for a running VM, keep its EQ groups together (every running member
 *     on or planned to that host) and its NE groups apart (no running member
 *     on or planned to it).  Stopped VMs are not bound by placement
 *     constraints (seed 004), and do not bind others;
 *   - for live, quick and failover: reach every datastore the VM's disks
 *     are on.  Move and storage may take a host that does not, provided it
 *     reaches some datastore: the disks are then copied to a datastore the
 *     target reaches (for storage migration that is the point of the
 *     method: seed 004 does not say more, so storage migration is modelled
 *     as moving the VM with its disks, not as a disk-only move on the same
 *     host, which would not empty it).
 * Among valid targets a host reaching all the VM's disks comes first, then
 * the most free memory (after planned VMs), then the name.  Placement
 * constraints are hard filters, so they win over disk access (seed 004).
 *
 * Capacity and constraints count a VM as planned onto the target of its
 * first attempt (what is expected to happen); the fallback targets are
 * chosen against the same bookkeeping and the executor rechecks them when
 * it gets there.  EQ members still on the evacuated host and not yet
 * planned do not constrain the first of them to be placed.
 *
 * Order: the VMs to move are ordered so that a VM comes after the VMs on
 * the evacuated host it depends on; among those free to go, higher
 * priority first, then the name.  Placement follows that order, so higher
 * priorities get the first pick of capacity.  A dependency cycle among the
 * VMs on the evacuated host is an error naming the VMs in it.
 * Dependencies on VMs elsewhere do not order anything.
 *
 * Waves: every move takes one slot on the evacuated host and one on the
 * target of its first attempt; a host's 'max_concurrent' (0: no limit)
 * bounds how many moves one wave puts on it, and 'link_limit' (0: no
 * limit) how many go between the same two hosts.  Each move goes into the
 * first wave that has room on both hosts and the link and that comes after
 * the waves of every VM it depends on.  Waves are numbered from 1; VMs
 * that do not move are in wave 0.  A wave is what may run at once; the
 * executor (evacuate.h) starts each move in plan order as soon as the VMs
 * it depends on have ended and its hosts and link have room, so no move
 * waits for an unrelated slow one of the wave before.
 *
 * Reboot dependents: with 'reboot_dependents' the plan lists the VMs (on
 * any host) that depend on a VM the plan moves and may be rebooted (running,
 * managed, not in maintenance, not busy).  Whether one is rebooted is
 * decided at run time: fy_plan_reboot_ready() says so once every VM of the
 * evacuated host it depends on has moved.
 *
 * Ownership: the plan points into the input (names, indices); the input
 * must stay unchanged and alive until fy_plan_destroy(). */
#ifndef FERRY_CP_PLANNER_H
#define FERRY_CP_PLANNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "controlplane/migration.h"

enum fy_plan_host_state {
    FY_PLAN_HOST_HEALTHY = 0,
    FY_PLAN_HOST_MAINTENANCE,
    FY_PLAN_HOST_DOWN,
};

/* A host as the planner sees it.  Names are compared with strcmp(). */
struct fy_plan_host {
    const char *name;
    enum fy_plan_host_state state;
    uint64_t mem_total, mem_free;      /* bytes */
    unsigned cpus_total, cpus_free;
    const char *const *datastores;     /* the datastores this host reaches */
    size_t n_datastores;
    unsigned max_concurrent;           /* migrations at once in or out; 0: no limit */
};

/* A VM as the planner sees it. */
struct fy_plan_vm {
    const char *name;
    const char *host;                  /* the host it is on */
    bool running;                      /* power on (false: off) */
    uint64_t memory;                   /* bytes */
    unsigned vcpus;
    const char *const *datastores;     /* where its disks are */
    size_t n_datastores;
    bool managed;                      /* false: unmanaged, never moved */
    bool hold;                         /* Hold constraint: never moved */
    bool busy;                         /* in another operation */
    bool maintenance;                  /* the VM itself is in maintenance mode */
    int priority;                      /* higher moves first */
    const char *const *depends_on;     /* names of VMs it depends on */
    size_t n_depends_on;
    const char *const *eq_groups;      /* keep together with other members */
    size_t n_eq_groups;
    const char *const *ne_groups;      /* keep apart from other members */
    size_t n_ne_groups;
};

/* Bit of a method in fy_plan_input.methods. */
#define FY_PLAN_METHOD(kind) (1u << (kind))
/* "Migration, Failover", the default when methods is 0. */
#define FY_PLAN_METHODS_DEFAULT (FY_PLAN_METHOD(FY_MIG_LIVE) | FY_PLAN_METHOD(FY_MIG_FAILOVER))
/* Every method the planner accepts. */
#define FY_PLAN_METHODS_ALL                                                 \
    (FY_PLAN_METHOD(FY_MIG_LIVE) | FY_PLAN_METHOD(FY_MIG_QUICK) |          \
     FY_PLAN_METHOD(FY_MIG_MOVE) | FY_PLAN_METHOD(FY_MIG_STORAGE) |        \
     FY_PLAN_METHOD(FY_MIG_FAILOVER))

struct fy_plan_input {
    const struct fy_plan_host *hosts;
    size_t n_hosts;
    const struct fy_plan_vm *vms;
    size_t n_vms;
    const char *evacuate;              /* the host to empty */
    bool all;                          /* stopped VMs too */
    unsigned methods;                  /* FY_PLAN_METHOD() bits; 0: default */
    bool reboot_dependents;
    unsigned link_limit;               /* moves at once between two hosts;
                                          0: no limit */
};

/* Why a VM of the evacuated host is or is not moved. */
enum fy_plan_disposition {
    FY_PLAN_MOVE = 0,                  /* must move (attempts may be empty) */
    FY_PLAN_STAY_HOLD,
    FY_PLAN_STAY_UNMANAGED,
    FY_PLAN_STAY_MAINTENANCE,
    FY_PLAN_STAY_BUSY,
};

struct fy_plan_attempt {
    enum fy_migration_kind method;
    size_t host;                       /* index into the input's hosts */
};

#define FY_PLAN_ATTEMPTS_MAX 5
#define FY_PLAN_REASON_MAX 256

struct fy_plan_entry {
    size_t vm;                         /* index into the input's vms */
    enum fy_plan_disposition disposition;
    unsigned wave;                     /* 1.. for a move with attempts; else 0 */
    struct fy_plan_attempt attempts[FY_PLAN_ATTEMPTS_MAX]; /* canonical order */
    size_t n_attempts;
    char reason[FY_PLAN_REASON_MAX];   /* why it stays or has no target; "" */
};

/* Entries are in execution order: moves by wave (and within a wave by
 * dependencies, priority, name), then the VMs that stay or have no
 * target, in the same order. */
struct fy_plan {
    const struct fy_plan_input *in;
    struct fy_plan_entry *entries;
    size_t n_entries;
    unsigned n_waves;
    size_t *reboot;                    /* indices into the input's vms */
    size_t n_reboot;
};

/* The canonical order methods are tried in (seed 004): live, quick, move,
 * storage, failover. */
extern const enum fy_migration_kind fy_plan_canonical_methods[FY_PLAN_ATTEMPTS_MAX];

/* The method set of a user's list, in any order, into *mask.  -FY_E_INVAL
 * for a kind evacuation does not use (cold, bulk) or outside the enum,
 * and *mask is then left unchanged.  An empty list gives 0 (the default). */
int fy_planner_methods(const enum fy_migration_kind *list, size_t n, unsigned *mask);

/* Plans the evacuation of in->evacuate into a new *out, which the caller
 * frees with fy_plan_destroy().  Fails, with *out set to NULL, with
 * -FY_E_INVAL (bad arguments or methods), -FY_E_NOTFOUND (the host to
 * evacuate, a VM's host or a dependency is not in the input), -FY_E_CONFIG
 * (a name used twice, or a dependency cycle: the detail names its VMs) or
 * -FY_E_NOMEM.  A VM without a target is not a failure: see its reason. */
int fy_planner_plan(const struct fy_plan_input *in, struct fy_plan **out);

/* Frees 'plan'; NULL is allowed. */
void fy_plan_destroy(struct fy_plan *plan);

/* The plan as a table (wave, VM, attempts or reason, then the reboot
 * candidates) into 'buf', always NUL-terminated when len > 0.  0, or
 * -FY_E_NOSPACE when it did not fit (buf holds the beginning), or
 * -FY_E_INVAL. */
int fy_plan_format(const struct fy_plan *plan, char *buf, size_t len);

/* What happened to an entry when the plan ran. */
enum fy_plan_outcome {
    FY_PLAN_NOT_ATTEMPTED = 0,
    FY_PLAN_MOVED,
    FY_PLAN_FAILED,
};

/* Ordered: the overall result is the worst one. */
enum fy_plan_result {
    FY_PLAN_OK = 0,
    FY_PLAN_WARNING,
    FY_PLAN_ERROR,
};

/* What entry 'i' with 'outcome' contributes (SPEC section 6): moved: ok;
 * not moved, checked in this order: Hold: ok (no effect); unmanaged: ok;
 * maintenance mode: warning; busy: error; had to move: error. */
enum fy_plan_result fy_plan_entry_result(const struct fy_plan *plan, size_t i,
                                         enum fy_plan_outcome outcome);

/* The evacuation's result: the worst over the entries, 'outcomes' being
 * indexed like plan->entries (NULL: nothing attempted).  Never fails. */
enum fy_plan_result fy_planner_result(const struct fy_plan *plan,
                                      const enum fy_plan_outcome *outcomes);

/* Whether reboot candidate 'vm' (an index into the input's vms) may be
 * rebooted now: every VM of the evacuated host it depends on is in the
 * plan and has moved ('outcomes' indexed like plan->entries). */
bool fy_plan_reboot_ready(const struct fy_plan *plan, size_t vm,
                          const enum fy_plan_outcome *outcomes);

/* "ok", "warning", "error". */
const char *fy_plan_result_name(enum fy_plan_result r);

#endif /* FERRY_CP_PLANNER_H */
