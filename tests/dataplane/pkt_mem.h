/* A TEST packet backend: two ends of an in-process link made of rings, so
 * the packet transport core (dataplane/transport/pkt*.c) can be tested
 * without a NIC.  Not part of any build but the tests.
 *
 * Settings (the transport's params): link=NAME (both ends name the same
 * link), end=0|1, mtu=N (default 1500), frames=N (buffers per end,
 * default 8192), extbuf=1 (claim zero-copy transmit: ext bytes are copied
 * at tx time, as memif does), plus the core's own keys (ip= is needed: the
 * ends have no address).  A frame sent on queue q of one end arrives on
 * queue q % (the other end's queues) of the other, copied into a buffer of
 * the receiving end, as through a wire. */
#ifndef FERRY_TEST_PKT_MEM_H
#define FERRY_TEST_PKT_MEM_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/transport/pkt.h"

extern const struct fy_pktio_ops fy_pkt_mem_ops;

/* Delivers a raw frame to queue 'queue' of end 'end' of 'link', as if the
 * other end had sent it.  0, or -FY_E_NOTFOUND / -FY_E_NOSPACE. */
int fy_pkt_mem_inject(const char *link, unsigned end, unsigned queue,
                      const void *frame, unsigned len);

/* While cut, every frame either end sends is lost. */
void fy_pkt_mem_cut(const char *link, bool cut);

/* Buffers of end 'end' not in its pool (held by the core or in a ring);
 * -1 if the end is not open. */
long fy_pkt_mem_in_use(const char *link, unsigned end);

/* Frames end 'end' has sent (copied to the other end or lost). */
uint64_t fy_pkt_mem_sent(const char *link, unsigned end);

#endif /* FERRY_TEST_PKT_MEM_H */
