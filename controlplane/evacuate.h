/* Host evacuation (SPEC section 6, seed 004): empties a host by moving its
 * VMs to other hosts of the cluster, each by the user's methods tried in
 * canonical order until one succeeds.  `ferryctl evacuate` is this
 * function plus a display; docs/evacuation.md walks through it.
 *
 * Who does what.  The controller is the caller (ferryctl): it holds no
 * state of its own between runs.  The cluster file (cluster.h) gives the
 * hosts, their limits and the placement policy; the agents (agent.h) are
 * asked for everything else when the evacuation starts: their capacity
 * and datastores (agent.info), their VMs with power, size, disks and
 * whether a migration holds them (agent.list), and which peers the
 * evacuated host's agent knows (agent.hosts).  The planner (planner.h)
 * turns that into the plan; this file runs it:
 *
 *   - Live, Quick, Move and Storage Migration are migrations run by the
 *     evacuated host's agent (agent.migrate, one connection each, so they
 *     run in parallel there): live and quick as their kinds, Move as a
 *     cold migration that starts the VM again at the target if it was
 *     running, Storage Migration as a live migration whose disks are
 *     copied when the target does not reach their datastore.  A stopped
 *     VM (with 'all') has no memory to move: every method but Failover
 *     moves it as a cold migration, and it stays off.
 *   - Failover is driven from here through both hosts' host.* operations
 *     (host_rpc.h): the VM is powered off at the source (refused if the
 *     source does not answer: it could then run twice), defined at the
 *     target from its exported configuration with the same disk paths
 *     (shared storage: the planner only offers hosts reaching them),
 *     started if it was running, and undefined at the source.  Memory is
 *     not carried: the VM boots again, as after a host failure.
 *
 * Scheduling: moves start in plan order as soon as the VMs they depend on
 * (on the evacuated host) have ended and the source, the target and the
 * link between them have room (a host's max-concurrent counts moves in
 * and out; the cluster's link-limit moves between the same two hosts).
 *
 * Fallback: when an attempt fails the next method in canonical order is
 * tried.  Its target is chosen again by the planner against the cluster
 * as it is then (VMs already moved, moving, or reserved by the plan), so
 * a target that stopped answering is left out: after a failure the target
 * is probed, and one whose agent does not answer is treated as down for
 * the rest of the run.  A failure because another operation holds the VM
 * (FY_E_BUSY) ends its attempts.  A migration that failed after its
 * switchover moved the VM (it runs at the target): it counts as moved,
 * with a note.
 *
 * Gang dedup: with 'gang', every migration of the run carries one gang
 * name, so the memory of all VMs going to the same target shares one
 * dedup index at both ends (host.h) and a content crosses once per target.
 *
 * The report (a JSON object; docs/evacuation.md lists its members) has
 * the hosts as seen, the plan, each VM with its attempts (method, target,
 * migration id at the source's agent, state, error, bytes), the reboots,
 * the totals (bytes on the wire; bytes saved by zero pages, by dedup
 * within a VM and across VMs) and the result: the worst of the VMs'
 * results by the rules of SPEC section 6 (fy_plan_entry_result()); a
 * dependent reboot that fails makes it at least a warning.
 *
 * Threads: the caller's thread plans and schedules; each attempt runs on
 * a thread of its own.  on_progress is called on the caller's thread. */
#ifndef FERRY_CP_EVACUATE_H
#define FERRY_CP_EVACUATE_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "controlplane/cluster.h"
#include "controlplane/rpc.h"

struct fy_evac_opts {
    const struct fy_cluster *cluster;
    const char *host;              /* the host to empty */
    const struct fy_rpc_key *key;  /* the cluster key */
    unsigned methods;              /* FY_PLAN_METHOD() bits; 0: the cluster
                                      file's, else "Migration, Failover" */
    bool all;                      /* stopped VMs too */
    bool reboot_dependents;
    bool dry_run;                  /* plan only */
    int gang;                      /* < 0: the cluster file's gang-dedup;
                                      0: off; > 0: on */
    uint32_t downtime_ms;          /* live: 0: the engine's default */
    unsigned streams;              /* 0: the agent's default */
    /* Called about every 250 ms with the report so far ('status',
     * borrowed), and with 'line' set, a sentence, whenever a move starts or
     * ends.  May be NULL. */
    void (*on_progress)(const json_object *status, const char *line, void *ctx);
    void *ctx;
};

/* Builds the cluster view, plans, and unless o->dry_run runs the plan;
 * '*report' (the caller frees it with json_object_put()) says what
 * happened, its "result" member the outcome.  Returns 0 when the plan
 * could be made (whatever became of the VMs: see the result), else a
 * negative fy_err with '*report' NULL: bad options (FY_E_INVAL), the host
 * to evacuate unknown to the cluster file (FY_E_NOTFOUND), its agent not
 * answering (the connection's error: FY_E_SYS, FY_E_TIMEOUT, FY_E_CLOSED,
 * FY_E_AUTH, FY_E_VERSION), the cluster file contradicting the agents or a
 * dependency cycle (FY_E_CONFIG). */
int fy_evacuate(const struct fy_evac_opts *o, json_object **report);

#endif /* FERRY_CP_EVACUATE_H */
