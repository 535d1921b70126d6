/* "HOST:PORT" addresses: parsing, resolving and printing them, for every
 * socket Ferry opens (the TCP transport, the control API). */
#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dataplane/netaddr.h"
#include "ferry/error.h"

/* Splits "HOST:PORT" or "[V6]:PORT" into host and port strings. */
int fy_addr_split(const char *addr, char *host, size_t hostlen, char *port,
                      size_t portlen)
{
    const char *colon;
    size_t hl;

    if (!addr || !*addr)
        return fy_error(FY_E_INVAL, "empty address: expected HOST:PORT");
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (!end || end[1] != ':')
            return fy_error(FY_E_INVAL, "bad address '%s': expected [V6]:PORT", addr);
        hl = (size_t)(end - addr - 1);
        colon = end + 1;
        addr++;
    } else {
        colon = strrchr(addr, ':');
        if (!colon)
            return fy_error(FY_E_INVAL, "bad address '%s': expected HOST:PORT", addr);
        hl = (size_t)(colon - addr);
    }
    if (hl == 0 || hl >= hostlen || strlen(colon + 1) == 0 ||
        strlen(colon + 1) >= portlen)
        return fy_error(FY_E_INVAL, "bad address '%s': expected HOST:PORT", addr);
    memcpy(host, addr, hl);
    host[hl] = '\0';
    strcpy(port, colon + 1);
    return 0;
}

bool fy_addr_has_port(const char *addr)
{
    const char *c = addr ? strrchr(addr, ':') : NULL;
    char *end;
    long port;

    if (!c || c == addr || !c[1] || (addr[0] == '[' && c[-1] != ']'))
        return false;
    errno = 0;
    port = strtol(c + 1, &end, 10);
    return !errno && !*end && port > 0 && port < 65536;
}

int fy_addr_resolve(const char *addr, bool passive, struct addrinfo **out)
{
    char host[256], port[32];
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = passive ? AI_PASSIVE : 0};
    int rc;

    if ((rc = fy_addr_split(addr, host, sizeof(host), port, sizeof(port))) < 0)
        return rc;
    rc = getaddrinfo(host, port, &hints, out);
    if (rc != 0)
        return fy_error(FY_E_NOTFOUND, "cannot resolve '%s': %s", addr,
                        gai_strerror(rc));
    return 0;
}

void fy_addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[NI_MAXHOST], port[NI_MAXSERV];
    socklen_t sl = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);

    if (getnameinfo(sa, sl, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(buf, len, "?");
        return;
    }
    snprintf(buf, len, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host,
             port);
}

