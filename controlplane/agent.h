/* The host agent (ferryd's logic, docs/agent.md), usable in-process so
 * tests can run two hosts in one program.
 *
 * An agent holds one host: its driver instance, its migration store and one
 * authenticated RPC server (rpc.h) on the host's management address.  That
 * server answers two families of methods:
 *
 *   host.*   the local host's operations, for the agents of other hosts
 *            (host_rpc.h: a migration's workflow reaches its target host
 *            through them);
 *   agent.*  what ferryctl asks:
 *     agent.info        {}  -> this host: name, driver, addresses, capacity
 *                              (mem_/cpus_ total and free), maintenance,
 *                              datastores [{name, shared, free}]
 *     agent.hosts       {}  -> {"hosts":[{name, management, self, reachable,
 *                              error?}]}: this host and its configured peers
 *     agent.list        {}  -> {"host":H, "vms":[{name, power, mem_bytes,
 *                              vcpus, managed, busy (the id of the migration
 *                              holding its lock, 0: none), datastores
 *                              (of its disks)}]}
 *     agent.define      {config, start?} -> {name}: defines (and starts) a VM
 *     agent.migrate     {vm, kind: live|cold|quick, to: peer name or its
 *                        ADDR:PORT, downtime_ms?, streams?, power_on?,
 *                        gang?: a name; migrations of one gang to the same
 *                        target share their dedup index (host.h)}
 *                       progress frames: {id, action, elapsed, ...rounds}
 *                       -> {id, state, seconds, downtime, wire_bytes,
 *                           pages_sent, pages_zero, pages_dup,
 *                           pages_dup_shared, pages_resent, verified,
 *                           error} (pages_dup_shared, pages_resent: of
 *                           the memory rounds this agent saw)
 *     agent.jobinfo     {id} -> domjobinfo-like figures (agent_job_json)
 *     agent.events      {id} -> {"id":N, "events":[{task, category, ts_us,
 *                              side, text}]}
 *     agent.migrations  {}  -> {"migrations":[record...]}
 *     agent.cancel      {id} -> {}: sets a running migration's cancel flag
 *
 * The migration's record and events are kept in the SOURCE host's store:
 * jobinfo and events of a migration are asked of the agent that ran it.
 *
 * Refused connections are logged to stderr, one line each with the time.
 *
 * Return convention: 0 or a negative fy_err value with the detail recorded
 * (fy_error_detail()). */
#ifndef FERRY_CP_AGENT_H
#define FERRY_CP_AGENT_H

#include "controlplane/config.h"

struct fy_agent;

/* Starts the agent of 'cfg' (copied): loads the cluster key, opens the
 * driver and the store, settles migrations a previous run left running
 * (marked failed after the switchover, else rolled back, their VM locks
 * released) and serves on cfg->management.  Every failure names what
 * failed (the key file, the driver .so, the database, the address) and
 * leaves nothing running; '*out' is then NULL. */
int fy_agent_start(const struct fy_agent_config *cfg, struct fy_agent **out);

/* The address the agent serves on, "ADDR:PORT" with the actual port (the
 * configuration may say port 0).  Valid until fy_agent_stop(). */
const char *fy_agent_addr(const struct fy_agent *a);

/* Cancels the migrations still running (before their switchover), stops
 * serving, waits for every handler, closes the store and the driver (its
 * VMs keep their recorded power state) and frees 'a'.  NULL is a no-op.
 * Must not be called from a handler. */
void fy_agent_stop(struct fy_agent *a);

#endif /* FERRY_CP_AGENT_H */
