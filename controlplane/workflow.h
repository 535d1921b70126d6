/* The migration workflow (SPEC section 3, after vCenter's
 * VpxdVmprov::Migrate): a queue of actions run in order with one context
 * passed to all of them; an action may append more (ComputeSpec appends
 * the tail of the kind being run).  docs/workflow.md lists the actions of
 * each kind, their events and the rollback rules.
 *
 * Rollback: until the workflow is committed (the switchover: the VM runs
 * at the target, or for cold migration is registered there), a failure or
 * a cancel undoes the actions that ran, in reverse, so the source keeps
 * the VM as it was.  After the commit a failure rolls forward: the rest of
 * the queue still runs and the first error is returned.
 *
 * Return convention: 0 or a negative fy_err value with the detail
 * recorded (fy_error_detail()). */
#ifndef FERRY_CP_WORKFLOW_H
#define FERRY_CP_WORKFLOW_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "controlplane/events.h"
#include "controlplane/host.h"
#include "controlplane/migration.h"

/* ---- the generic engine ------------------------------------------------ */

struct fy_workflow;

struct fy_action {
    const char *name; /* "PrepareSource": stable, used by fail_at and tests */
    /* Does the step.  Returns 0 or a negative fy_err with the detail. */
    int (*run)(struct fy_workflow *wf, void *ctx);
    /* Undoes a step that ran, during rollback.  NULL: nothing to undo.
     * Must not fail: it records what it could not undo. */
    void (*undo)(struct fy_workflow *wf, void *ctx);
};

#define FY_WORKFLOW_MAX 48

struct fy_workflow {
    void *ctx;
    const struct fy_action *queue[FY_WORKFLOW_MAX];
    unsigned n;         /* actions queued */
    unsigned next;      /* the next to run */
    bool committed;     /* past the point of no return */
    /* Called before each action; a negative return fails the action
     * without running it (cancel, injected failures).  May be NULL. */
    int (*before)(struct fy_workflow *wf, const struct fy_action *a, void *ctx);
    /* Called after each action with its result, and for each undo with
     * rc = 1.  May be NULL. */
    void (*after)(struct fy_workflow *wf, const struct fy_action *a, int rc,
                  void *ctx);
    int failed;         /* index of the first failed action, -1 if none */
    bool rolled_back;   /* the failure was undone */
};

/* Prepares an empty workflow over 'ctx'. */
void fy_workflow_init(struct fy_workflow *wf, void *ctx);

/* Appends 'a' (which must outlive the run) to the end of the queue.
 * FY_E_TOOBIG if the queue is full. */
int fy_workflow_append(struct fy_workflow *wf, const struct fy_action *a);

/* Marks the point of no return: later failures roll forward. */
void fy_workflow_commit(struct fy_workflow *wf);

/* Runs the queue from wf->next to its end (appended actions included).
 * On a failure before the commit, undoes the actions that ran in reverse
 * and returns that failure's code; after it, runs the rest and returns the
 * first failure's code.  The error detail is the first failure's. */
int fy_workflow_run(struct fy_workflow *wf);

/* ---- migrations ------------------------------------------------------- */

/* The hosts (struct fy_host) are in controlplane/host.h: every call the
 * workflow makes on one goes through its ops table. */

/* How a live migration moves memory. */
enum fy_live_mode {
    /* Stream mode when both hosts' drivers have it (FY_DRV_STREAM) and no
     * disk changes datastore; else Ferry's engine (RAM-direct for QEMU). */
    FY_LIVE_AUTO = 0,
    /* The hypervisor migrates itself (its dirty tracking, convergence and
     * downtime limit) and Ferry carries its channels (docs/qstream.md);
     * refused when a driver lacks it or disks must move. */
    FY_LIVE_STREAM = 1,
    /* Ferry's engine copies the memory regions in pre-copy rounds, dirty
     * pages found by the driver's dirty log or by re-hashing (QEMU:
     * RAM-direct, docs/libvirt.md), then the device state. */
    FY_LIVE_RAM_DIRECT = 2,
};

/* "auto", "stream", "ram-direct"; and back (0, or -1 for another name). */
static inline const char *fy_live_mode_name(enum fy_live_mode m)
{
    return m == FY_LIVE_STREAM ? "stream" : m == FY_LIVE_RAM_DIRECT ? "ram-direct" : "auto";
}

static inline int fy_live_mode_parse(const char *name, enum fy_live_mode *out)
{
    for (int m = FY_LIVE_AUTO; m <= FY_LIVE_RAM_DIRECT; m++)
        if (name && !strcmp(name, fy_live_mode_name((enum fy_live_mode)m))) {
            *out = (enum fy_live_mode)m;
            return 0;
        }
    return -1;
}

struct fy_migration_request {
    enum fy_migration_kind kind; /* live, cold or quick */
    const char *vm;
    bool power_on;        /* cold: start at the target even if it was off */
    uint32_t downtime_ms; /* live: 0: the engine's default */
    unsigned max_rounds;  /* live: 0: the engine's default */
    unsigned streams;     /* dataplane streams; 0: 2 */
    int timeout_ms;       /* dataplane connect/idle limit; 0: 30000 */
    /* Set non-zero (from any thread) to cancel; honoured until the
     * switchover begins (live), or until the VM is registered at the
     * target (cold, quick). */
    volatile int cancel;
    /* Test hook: the action with this name fails with FY_E_IO "injected
     * failure" instead of running.  NULL: none. */
    const char *fail_at;
    enum fy_live_mode mode; /* live: how memory moves */
    /* Called with each action's name before it runs.  May be NULL. */
    void (*on_action)(const char *name, void *ctx);
    /* Called after each pre-copy round of a live migration's memory, on an
     * engine thread of the source host (progress bars, jobinfo).  May be
     * NULL. */
    void (*on_round)(const struct fy_round_stats *st, void *ctx);
    void *ctx;          /* passed to on_action and on_round */
};

/* Migrates req->vm from 'src' to 'dst', recording the migration and its
 * events in 'store' (its id into *migration_id, which may be NULL; set as
 * soon as the record exists, also on failure).  The VM is locked in the
 * store for the whole migration.
 *
 * Returns 0 when the VM runs (or, cold and off, is defined) at the target
 * and is gone from the source; FY_E_PRECHECK with the refusals' messages;
 * FY_E_BUSY when another migration holds the VM; FY_E_CANCELLED; or the
 * failing action's error.  The record's state says what was left behind:
 * rolled_back / cancelled (the source has the VM as before) or failed (a
 * failure after the switchover: the VM runs at the target). */
int fy_migrate(const struct fy_migration_request *req, struct fy_host *src,
               struct fy_host *dst, struct fy_store *store,
               int64_t *migration_id);

/* What decides a migration's tail besides its kind. */
struct fy_plan_opts {
    bool move_disks;  /* the disks change datastore */
    bool was_running; /* cold: stop first (and start at the target) */
    bool power_on;    /* cold: start at the target */
    bool ram_direct;  /* quick: both hosts have FY_DRV_RAM_DIRECT, so memory
                         moves region to region (no suspend image) */
};

/* The names of the actions fy_migrate() runs for 'kind', in order, head
 * and tail, into names[0..max-1]; returns how many (possibly more than
 * max), or FY_E_UNSUPPORTED for a kind the workflow does not run yet. */
int fy_workflow_plan(enum fy_migration_kind kind, const struct fy_plan_opts *o,
                     const char **names, unsigned max);

#endif /* FERRY_CP_WORKFLOW_H */
