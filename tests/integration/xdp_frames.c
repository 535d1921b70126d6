/* xdp_frames: drives the AF_XDP backend (dataplane/transport/xdp.c) at
 * frame level, below the packet core, for test_xdp.sh.
 *
 *   xdp_frames send PARAMS DSTMAC DSTIP PORT COUNT [DUP]
 *       sends COUNT numbered UDP frames of 1400 payload bytes to
 *       DSTIP:PORT; with DUP=1 each frame is transmitted twice from the
 *       same buffer, the second time before the first send completed (as
 *       the core does when it retransmits)
 *   xdp_frames recv PARAMS PORT COUNT SECONDS
 *       receives until COUNT distinct frames arrived, SECONDS passed or
 *       nothing came for 2 s;
 *       checks every payload; prints "received N distinct, D duplicates,
 *       L late, B bad" (late: arrived after a frame sent later) and the XDP
 *       program's counters; exit 0 when B == 0 and every missing frame
 *       (at most 20%) is one the socket dropped because this process fell
 *       behind (rx ring full: the machine is busy)
 *   xdp_frames hold PARAMS PORT
 *       opens the port and waits to be killed (crash-recovery tests)
 *
 * PARAMS are the transport settings, e.g. "dev=fyx0;xdp_mode=native".
 * recv and hold print "ready MODE" on stdout once frames can arrive. */
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/transport/xdp.h"
#include "ferry/error.h"

#define PAYLOAD 1400u
#define HDRS (14u + 20u + 8u)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint8_t pattern(uint32_t seq, unsigned i)
{
    return (uint8_t)(seq * 31u + i * 7u);
}

static uint16_t ip_csum(const uint8_t *h)
{
    uint32_t s = 0;
    for (unsigned i = 0; i < 20; i += 2)
        s += (uint32_t)(h[i] << 8 | h[i + 1]);
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

static void build(uint8_t *f, const uint8_t *dmac, const uint8_t *smac,
                  uint32_t sip, uint32_t dip, uint16_t port, uint32_t seq)
{
    uint8_t *ip = f + 14, *udp = ip + 20, *pl = udp + 8;
    uint16_t ilen = htons(20 + 8 + PAYLOAD), ulen = htons(8 + PAYLOAD);
    uint16_t p = htons(port), c;
    uint32_t s = htonl(seq);

    memcpy(f, dmac, 6);
    memcpy(f + 6, smac, 6);
    f[12] = 0x08;
    f[13] = 0x00;
    memset(ip, 0, 20);
    ip[0] = 0x45;
    memcpy(ip + 2, &ilen, 2);
    ip[6] = 0x40; /* DF */
    ip[8] = 64;
    ip[9] = 17;
    memcpy(ip + 12, &sip, 4);
    memcpy(ip + 16, &dip, 4);
    c = htons(ip_csum(ip));
    memcpy(ip + 10, &c, 2);
    memcpy(udp, &p, 2);
    memcpy(udp + 2, &p, 2);
    memcpy(udp + 4, &ulen, 2);
    memset(udp + 6, 0, 2);
    memcpy(pl, &s, 4);
    for (unsigned i = 4; i < PAYLOAD; i++)
        pl[i] = pattern(seq, i);
}

static int open_port(const char *params, uint16_t port, struct fy_pktio **io,
                     struct fy_pktio_info *info)
{
    int rc = fy_pktio_xdp.open(params, 1, true, io);
    if (rc < 0) {
        fprintf(stderr, "xdp_frames: open: %s\n", fy_error_detail());
        return rc;
    }
    fy_pktio_xdp.info(*io, info);
    if (port && (rc = fy_pktio_xdp.add_port(*io, port)) < 0) {
        fprintf(stderr, "xdp_frames: add_port: %s\n", fy_error_detail());
        fy_pktio_xdp.close(*io);
        return rc;
    }
    return 0;
}

static int do_send(int argc, char **argv)
{
    struct fy_pktio *io;
    struct fy_pktio_info info;
    struct fy_xdp_stats st;
    uint8_t dmac[6];
    struct in_addr dip;
    uint16_t port;
    uint32_t count, sent = 0;
    bool dup;
    double t0;

    if (argc < 7 ||
        sscanf(argv[3], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &dmac[0], &dmac[1],
               &dmac[2], &dmac[3], &dmac[4], &dmac[5]) != 6 ||
        inet_pton(AF_INET, argv[4], &dip) != 1)
        return 2;
    port = (uint16_t)atoi(argv[5]);
    count = (uint32_t)strtoul(argv[6], NULL, 10);
    dup = argc > 7 && atoi(argv[7]) != 0;
    if (open_port(argv[2], 0, &io, &info) < 0)
        return 1;
    printf("mode %s, mtu %u\n", info.mode, info.mtu);
    t0 = now();
    while (sent < count) {
        struct fy_pkt *p[64];
        unsigned want = count - sent < 64 ? count - sent : 64;
        int n = fy_pktio_xdp.alloc(io, 0, p, want), k, k2 = 0;
        if (n <= 0) {
            usleep(100);
            continue;
        }
        for (int i = 0; i < n; i++) {
            build(p[i]->data, dmac, info.mac, info.ipv4, dip.s_addr, port,
                  sent + (uint32_t)i);
            p[i]->len = (uint16_t)(HDRS + PAYLOAD);
        }
        for (k = 0; k < n;) {
            int r = fy_pktio_xdp.tx(io, 0, p + k, (unsigned)(n - k));
            if (r == 0)
                usleep(50);
            k += r;
        }
        /* The same buffers again while the first sends may be in flight. */
        while (dup && k2 < n) {
            int r = fy_pktio_xdp.tx(io, 0, p + k2, (unsigned)(n - k2));
            if (r == 0)
                usleep(50);
            k2 += r;
        }
        fy_pktio_xdp.free(io, p, (unsigned)n);
        sent += (uint32_t)n;
        /* No flow control here (the core has its own): stay under about
         * 100k frames/s so a receiver descheduled for a while does not
         * overrun its 4096-frame ring. */
        if ((sent & 1023) == 0)
            usleep(10000);
    }
    fy_xdp_stats(io, &st);
    printf("sent %u frames%s in %.3f s, %llu sendto() wake-ups (%llu "
           "stalled)\n",
           sent, dup ? " twice" : "", now() - t0,
           (unsigned long long)st.tx_kicks, (unsigned long long)st.tx_stalls);
    usleep(100000); /* let the last completions land before detaching */
    fy_pktio_xdp.close(io);
    return 0;
}

static int do_recv(int argc, char **argv)
{
    struct fy_pktio *io;
    struct fy_pktio_info info;
    struct fy_xdp_stats st;
    uint32_t count, distinct = 0, dups = 0, bad = 0, late = 0, top = 0;
    uint8_t *seen;
    double deadline, last = 0;
    uint16_t port;

    if (argc < 6)
        return 2;
    port = (uint16_t)atoi(argv[3]);
    count = (uint32_t)strtoul(argv[4], NULL, 10);
    deadline = now() + atof(argv[5]);
    seen = calloc(count + 1, 1);
    if (!seen || open_port(argv[2], port, &io, &info) < 0)
        return 1;
    printf("ready %s\n", info.mode);
    fflush(stdout);
    while (distinct < count && now() < deadline) {
        struct fy_pkt *p[64];
        int n = fy_pktio_xdp.rx(io, 0, p, 64);
        if (n == 0) {
            /* Two quiet seconds after the flow started: it is over. */
            if (last && now() > last + 2)
                break;
            usleep(20);
            continue;
        }
        last = now();
        for (int i = 0; i < n; i++) {
            const uint8_t *pl = p[i]->data + HDRS;
            uint32_t seq;
            bool ok = p[i]->len == HDRS + PAYLOAD;
            if (ok) {
                memcpy(&seq, pl, 4);
                seq = ntohl(seq);
                ok = seq < count;
                for (unsigned j = 4; ok && j < PAYLOAD; j++)
                    ok = pl[j] == pattern(seq, j);
            }
            if (ok && seq < top)
                late++; /* arrived after a later frame: reordered */
            if (ok && seq > top)
                top = seq;
            if (!ok)
                bad++;
            else if (seen[seq])
                dups++;
            else {
                seen[seq] = 1;
                distinct++;
            }
        }
        fy_pktio_xdp.free(io, p, (unsigned)n);
    }
    fy_xdp_stats(io, &st);
    printf("received %u distinct, %u duplicates, %u late, %u bad of %u; "
           "xdp redirected %llu, passed %llu, socket drops %llu\n",
           distinct, dups, late, bad, count, (unsigned long long)st.redirected,
           (unsigned long long)st.passed, (unsigned long long)st.rx_dropped);
    fy_pktio_xdp.close(io);
    free(seen);
    /* Frames this process was too slow for (rx ring full) are the socket's
     * drops, counted by the kernel; any other loss is a failure. */
    return bad == 0 && (uint64_t)(count - distinct) <= st.rx_dropped &&
                   count - distinct <= count / 5
               ? 0
               : 1;
}

static int do_hold(int argc, char **argv)
{
    struct fy_pktio *io;
    struct fy_pktio_info info;

    if (argc < 4)
        return 2;
    if (open_port(argv[2], (uint16_t)atoi(argv[3]), &io, &info) < 0)
        return 1;
    printf("ready %s\n", info.mode);
    fflush(stdout);
    for (;;)
        pause();
}

int main(int argc, char **argv)
{
    int rc = 2;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "send") == 0)
        rc = do_send(argc, argv);
    else if (argc >= 2 && strcmp(argv[1], "recv") == 0)
        rc = do_recv(argc, argv);
    else if (argc >= 2 && strcmp(argv[1], "hold") == 0)
        rc = do_hold(argc, argv);
    if (rc == 2)
        fprintf(stderr, "usage: see the comment at the top of xdp_frames.c\n");
    return rc;
}
