/* Socket tuning shared by the TCP transport and the raw-TCP baseline of
 * ferry-perf, so the baseline runs with exactly the transport's settings. */
#ifndef FERRY_SOCKOPT_H
#define FERRY_SOCKOPT_H

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#define FY_DEFAULT_SOCKBUF (4u << 20)

/* TCP_NODELAY (control messages must not wait behind Nagle) and large
 * buffers: SO_*BUFFORCE passes rmem_max/wmem_max when we may (root); else
 * the plain request is clamped by the kernel. */
static inline void fy_tune_socket(int fd, unsigned sockbuf)
{
    int one = 1;
    int sz = (int)(sockbuf ? sockbuf : FY_DEFAULT_SOCKBUF);

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
}

#endif /* FERRY_SOCKOPT_H */
