/* Between the files of the local host implementation (controlplane/host.h):
 * host_local.c (driver calls, files, the engine's transfers, gang dedup),
 * host_stream.c (stream mode: the hypervisor's own live migration, Ferry
 * its transport) and host_devstate.c (a VM's device state at its
 * switchover).  Nothing outside these three uses it.
 *
 * Return convention as in host.h. */
#ifndef FERRY_CP_HOST_LOCAL_H
#define FERRY_CP_HOST_LOCAL_H

#include <pthread.h>
#include <stdint.h>

#include "controlplane/host.h"
#include "ferry/dedup.h"
#include "ferry/engine.h"
#include "ferry/region.h"
#include "ferry/transport.h"

/* ---- host_local.c ---------------------------------------------------------- */

/* The transport for data host 'h' receives at, or sends from, its address
 * 'local' (the configured one on the migration network, tcp elsewhere),
 * with its settings in *params; NULL if that transport is not built. */
const struct fy_transport_ops *fy_host_local_transport(const struct fy_host *h,
                                                       const char *local,
                                                       const char **params);

/* Opens a receiving job's door: a fresh session id in 'session_id', a
 * listener of transport 't' (NULL: not built) at a port picked on the
 * address 'addr' in *l, and a thread running fn(arg), which accepts on *l,
 * in *tid; 'ep' gets what the sender needs.  'what' names the data in
 * errors ("migration data").  On failure *l may be set (the caller closes
 * it) and no thread runs. */
int fy_host_local_listen_job(const struct fy_host *h, const struct fy_transport_ops *t,
                       const char *addr, const struct fy_transport_opts *o,
                       const char *what, uint8_t session_id[16],
                       struct fy_listener **l, pthread_t *tid,
                       void *(*fn)(void *), void *arg, struct fy_host_endpoint *ep);

/* Makes a thread waiting in l->ops->accept() give up now. */
void fy_host_local_listener_stop(struct fy_listener *l);

/* Gang dedup (host.h): the shared index of host 'h''s gang (h->gang must
 * be set) on side 'side' — a name of its own per kind of transfer, since
 * an index serves one kind ("qsend", "qrecv" for stream mode) — sized for
 * regions of about 'npages', with room to keep one more transfer.  NULL
 * with the error recorded.  Each get is ended by one put, which keeps 'k'
 * (a page map the transfer left in the index; may be NULL or empty) and
 * 'r' (a region the map's entries point into, closed with the gang; may
 * be NULL) until the gang ends. */
struct gang;
struct gang *fy_host_gang_get(struct fy_host *h, const char *side, uint64_t npages);
struct fy_dedup *fy_host_gang_dedup(const struct gang *g);
void fy_host_gang_put(struct gang *g, const struct fy_kept *k, struct fy_region *r);

/* ---- host_stream.c --------------------------------------------------------- */

/* The ends of a FY_HOST_DATA_STREAM transfer, as host.h's recv_start,
 * recv_join, recv_abort and send describe them. */
struct fy_stream_recv;
int fy_host_stream_recv_start(struct fy_host *h, const struct fy_host_data *what,
                              const char *addr, int timeout_ms,
                              struct fy_stream_recv **job, struct fy_host_endpoint *ep);
int fy_host_stream_recv_join(struct fy_host *h, struct fy_stream_recv *job,
                             struct fy_migration_stats *st);
void fy_host_stream_recv_abort(struct fy_host *h, struct fy_stream_recv *job);
int fy_host_stream_send(struct fy_host *h, const struct fy_host_data *what,
                        const struct fy_host_endpoint *to,
                        const struct fy_host_send_params *p,
                        struct fy_host_send_result *out);

/* ---- host_devstate.c ------------------------------------------------------- */

/* The ends of a FY_HOST_DATA_DEVICE_STATE transfer, as host.h's recv_start,
 * recv_join, recv_abort and send describe them. */
struct fy_devstate_recv;
int fy_host_devstate_recv_start(struct fy_host *h, const struct fy_host_data *what,
                                const char *addr, int timeout_ms,
                                struct fy_devstate_recv **job,
                                struct fy_host_endpoint *ep);
int fy_host_devstate_recv_join(struct fy_host *h, struct fy_devstate_recv *job,
                               struct fy_migration_stats *st);
void fy_host_devstate_recv_abort(struct fy_host *h, struct fy_devstate_recv *job);
int fy_host_devstate_send(struct fy_host *h, const struct fy_host_data *what,
                          const struct fy_host_endpoint *to,
                          const struct fy_host_send_params *p,
                          struct fy_host_send_result *out);

#endif /* FERRY_CP_HOST_LOCAL_H */
