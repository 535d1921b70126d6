/* Hosts over the control API (rpc.h): the agent of a host serves its local
 * host's operations (host.h) as "host.*" methods, and a migration's
 * workflow, running in the source host's agent, reaches the target host
 * through a remote host whose operations call those methods.
 *
 * Return convention as in host.h: 0 or a negative fy_err, with the detail
 * recorded; an error at the far host comes back with its code and its
 * message prefixed by the host's name. */
#ifndef FERRY_CP_HOST_RPC_H
#define FERRY_CP_HOST_RPC_H

#include "controlplane/host.h"
#include "controlplane/rpc.h"

/* ---- serving a host ------------------------------------------------------- */

/* What the host.* handlers work on.  The agent passes, as the RPC server's
 * context, a pointer to a structure whose FIRST member is a struct
 * fy_host_server, so the handlers find it whatever else the agent keeps
 * there. */
struct fy_host_server {
    struct fy_host *local;  /* served; a local host (host_local.c) */
    void *jobs;             /* receiving ends in progress, by id: private */
};

/* Prepares / releases a server for 'local'.  Release aborts receiving ends
 * still running. */
int fy_host_server_init(struct fy_host_server *hs, struct fy_host *local);
void fy_host_server_fini(struct fy_host_server *hs);

/* Copies the host.* methods into out[0..max-1] and returns how many there
 * are (the agent appends its own methods and starts one RPC server). */
size_t fy_host_server_methods(struct fy_rpc_method *out, size_t max);

/* ---- reaching a host ------------------------------------------------------- */

/* Makes 'h' a remote host named 'name' whose operations run at the agent
 * listening on 'addr' ("HOST:PORT"), authenticating with 'key'.  The
 * connection is opened here and kept; calls are sequential.  'timeout_ms'
 * bounds each answer's wait (a receive join waits as long as the transfer
 * goes on, fed by the agent's progress frames). */
int fy_host_remote_open(struct fy_host *h, const char *name, const char *addr,
                        const struct fy_rpc_key *key, int timeout_ms);

/* Closes the connection; 'h' may be reopened.  A closed or zeroed host is
 * allowed. */
void fy_host_remote_close(struct fy_host *h);

#endif /* FERRY_CP_HOST_RPC_H */
