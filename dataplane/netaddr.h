/* "HOST:PORT" addresses ("[V6]:PORT" for IPv6), shared by the TCP transport
 * and the control API. */
#ifndef FERRY_NETADDR_H
#define FERRY_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <netdb.h>
#include <sys/socket.h>

/* Splits 'addr' into host and port strings.  FY_E_INVAL for a malformed
 * address. */
int fy_addr_split(const char *addr, char *host, size_t hostlen, char *port,
                  size_t portlen);

/* Whether 'addr' reads HOST:PORT ([V6]:PORT) with a port from 1 to 65535.
 * Records no error. */
bool fy_addr_has_port(const char *addr);

/* getaddrinfo() of 'addr' for a stream socket ('passive': to bind).  The
 * caller frees *out with freeaddrinfo().  FY_E_NOTFOUND if it does not
 * resolve. */
int fy_addr_resolve(const char *addr, bool passive, struct addrinfo **out);

/* "ADDR:PORT" ("[V6]:PORT") of a socket address, numeric; "?" if it cannot
 * be printed. */
void fy_addr_format(const struct sockaddr *sa, char *buf, size_t len);

#endif /* FERRY_NETADDR_H */
