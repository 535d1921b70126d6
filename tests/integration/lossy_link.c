/* lossy_link: makes two interfaces of one namespace a lossy wire
 * (lossy_link.bpf.c), for test_xdp.sh.
 *
 *   lossy_link A B drop=P,dup=P,reorder=P[,delay_us=N] [HA HA_PEER HB HB_PEER]
 *
 * Frames entering A leave through B and the other way round; P are shares
 * (0..1) of frames dropped, duplicated and held back.  Reordering needs two
 * veth pairs in the namespace, HA<->HA_PEER and HB<->HB_PEER: a frame from
 * A held back is sent into HA, read here from HA_PEER, kept delay_us
 * microseconds (default 1000) and written to B, so frames sent after it
 * overtake it (and likewise from B through HB to A).  Disable IPv6 on the
 * hold pairs so nothing but held frames crosses them.
 *
 * Prints "ready" once attached; on SIGTERM or SIGINT prints "lossy_link:
 * forwarded N, dropped N, duplicated N, held back N, relayed N", detaches
 * and exits 0. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

extern const unsigned char fy_lossy_link_obj[];
extern const size_t fy_lossy_link_obj_len;

struct lossy_cfg { /* = lossy_link.bpf.c */
    uint32_t if_a, if_b;
    uint32_t drop_ppm, dup_ppm, reorder_ppm;
    uint32_t hold_a, hold_b;
};

#define HELD_MAX 8192u
#define FRAME_MAX 2048u

/* Frames held back on one direction, in arrival order (a fixed delay keeps
 * release order = arrival order). */
struct hold {
    int in, out;       /* AF_PACKET: the hold pair's far end, the exit */
    unsigned head, n;
    uint64_t due[HELD_MAX];
    uint16_t len[HELD_MAX];
    uint8_t (*buf)[FRAME_MAX];
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int parse_spec(char *spec, struct lossy_cfg *c, unsigned *delay_us)
{
    for (char *tok = strtok(spec, ","); tok; tok = strtok(NULL, ",")) {
        char *eq = strchr(tok, '=');
        if (!eq)
            return -1;
        *eq++ = 0;
        if (strcmp(tok, "delay_us") == 0) {
            *delay_us = (unsigned)strtoul(eq, NULL, 10);
            continue;
        }
        uint32_t ppm = (uint32_t)(atof(eq) * 1e6 + 0.5);
        if (strcmp(tok, "drop") == 0)
            c->drop_ppm = ppm;
        else if (strcmp(tok, "dup") == 0)
            c->dup_ppm = ppm;
        else if (strcmp(tok, "reorder") == 0)
            c->reorder_ppm = ppm;
        else
            return -1;
    }
    return 0;
}

static int packet_socket(int ifindex, bool rx)
{
    struct sockaddr_ll sll = {.sll_family = AF_PACKET,
                              .sll_ifindex = ifindex,
                              .sll_protocol = rx ? htons(ETH_P_ALL) : 0};
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    rx ? htons(ETH_P_ALL) : 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
        perror("lossy_link: AF_PACKET socket");
        exit(1);
    }
    return fd;
}

static int hold_open(struct hold *h, const char *peer, int out_ifindex)
{
    int ifi = (int)if_nametoindex(peer);

    if (!ifi) {
        fprintf(stderr, "lossy_link: no interface %s\n", peer);
        return -1;
    }
    h->buf = calloc(HELD_MAX, FRAME_MAX);
    if (!h->buf)
        return -1;
    h->in = packet_socket(ifi, true);
    h->out = packet_socket(out_ifindex, false);
    return 0;
}

/* Reads every frame waiting on the hold pair and queues it. */
static void hold_take(struct hold *h, uint64_t due)
{
    for (;;) {
        struct sockaddr_ll from;
        socklen_t fl = sizeof(from);
        unsigned slot = (h->head + h->n) % HELD_MAX;
        ssize_t k;

        if (h->n == HELD_MAX)
            return; /* full: the kernel queue holds the rest */
        k = recvfrom(h->in, h->buf[slot], FRAME_MAX, 0,
                     (struct sockaddr *)&from, &fl);
        if (k <= 0)
            return;
        if (from.sll_pkttype == PACKET_OUTGOING)
            continue;
        h->due[slot] = due;
        h->len[slot] = (uint16_t)k;
        h->n++;
    }
}

/* Sends the frames whose time came; returns how many. */
static unsigned hold_release(struct hold *h, uint64_t t)
{
    unsigned sent = 0;

    while (h->n && h->due[h->head] <= t) {
        if (send(h->out, h->buf[h->head], h->len[h->head], 0) < 0 &&
            errno == EAGAIN)
            break;
        h->head = (h->head + 1) % HELD_MAX;
        h->n--;
        sent++;
    }
    return sent;
}

int main(int argc, char **argv)
{
    struct lossy_cfg cfg = {0};
    struct bpf_object *obj;
    struct bpf_program *prog;
    struct hold holds[2];
    uint64_t totals[4] = {0}, relayed = 0;
    unsigned delay_us = 1000, nholds = 0;
    int ifs[2], cfg_fd, stats_fd, ncpu, sfd, rc;
    uint32_t key = 0;
    sigset_t set;

    if ((argc != 4 && argc != 8) || parse_spec(argv[3], &cfg, &delay_us) < 0) {
        fprintf(stderr, "usage: lossy_link A B drop=P,dup=P,reorder=P"
                        "[,delay_us=N] [HA HA_PEER HB HB_PEER]\n");
        return 2;
    }
    ifs[0] = (int)if_nametoindex(argv[1]);
    ifs[1] = (int)if_nametoindex(argv[2]);
    if (!ifs[0] || !ifs[1]) {
        fprintf(stderr, "lossy_link: no interface %s or %s here\n", argv[1],
                argv[2]);
        return 1;
    }
    cfg.if_a = (uint32_t)ifs[0];
    cfg.if_b = (uint32_t)ifs[1];
    if (argc == 8) {
        cfg.hold_a = if_nametoindex(argv[4]);
        cfg.hold_b = if_nametoindex(argv[6]);
        /* Held frames from A leave through B, and from B through A. */
        if (!cfg.hold_a || !cfg.hold_b || hold_open(&holds[0], argv[5], ifs[1]) < 0 ||
            hold_open(&holds[1], argv[7], ifs[0]) < 0) {
            fprintf(stderr, "lossy_link: bad hold interfaces\n");
            return 1;
        }
        nholds = 2;
    }

    obj = bpf_object__open_mem(fy_lossy_link_obj, fy_lossy_link_obj_len, NULL);
    if (!obj || bpf_object__load(obj) < 0) {
        fprintf(stderr, "lossy_link: loading the BPF program failed\n");
        return 1;
    }
    prog = bpf_object__find_program_by_name(obj, "lossy_link");
    cfg_fd = bpf_object__find_map_fd_by_name(obj, "lossy_cfg");
    stats_fd = bpf_object__find_map_fd_by_name(obj, "lossy_stats");
    if (!prog || cfg_fd < 0 || stats_fd < 0 ||
        bpf_map_update_elem(cfg_fd, &key, &cfg, BPF_ANY) < 0) {
        fprintf(stderr, "lossy_link: the BPF object is incomplete\n");
        return 1;
    }
    for (int i = 0; i < 2; i++) {
        LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifs[i],
                    .attach_point = BPF_TC_INGRESS);
        LIBBPF_OPTS(bpf_tc_opts, to, .prog_fd = bpf_program__fd(prog));
        rc = bpf_tc_hook_create(&hook);
        if (rc < 0 && rc != -EEXIST) {
            fprintf(stderr, "lossy_link: clsact on %s: %s\n", argv[1 + i],
                    strerror(-rc));
            return 1;
        }
        if ((rc = bpf_tc_attach(&hook, &to)) < 0) {
            fprintf(stderr, "lossy_link: attaching to %s: %s\n", argv[1 + i],
                    strerror(-rc));
            return 1;
        }
    }

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    sfd = signalfd(-1, &set, SFD_CLOEXEC);
    printf("ready\n");
    fflush(stdout);

    for (;;) {
        struct pollfd pf[3] = {{.fd = sfd, .events = POLLIN}};
        uint64_t t = now_us(), next = UINT64_MAX;
        int timeout = -1;

        for (unsigned i = 0; i < nholds; i++) {
            relayed += hold_release(&holds[i], t);
            pf[1 + i] = (struct pollfd){.fd = holds[i].in, .events = POLLIN};
            if (holds[i].n && holds[i].due[holds[i].head] < next)
                next = holds[i].due[holds[i].head];
        }
        if (next != UINT64_MAX)
            timeout = next > t ? (int)((next - t + 999) / 1000) : 0;
        if (poll(pf, 1 + nholds, timeout) < 0 && errno != EINTR)
            break;
        if (pf[0].revents)
            break;
        t = now_us();
        for (unsigned i = 0; i < nholds; i++)
            if (pf[1 + i].revents)
                hold_take(&holds[i], t + delay_us);
    }

    ncpu = libbpf_num_possible_cpus();
    for (uint32_t k = 0; k < 4 && ncpu > 0; k++) {
        uint64_t *v = calloc((size_t)ncpu, sizeof(*v));
        if (v && bpf_map_lookup_elem(stats_fd, &k, v) == 0)
            for (int c = 0; c < ncpu; c++)
                totals[k] += v[c];
        free(v);
    }
    printf("lossy_link: forwarded %llu, dropped %llu, duplicated %llu, "
           "held back %llu, relayed %llu\n",
           (unsigned long long)totals[0], (unsigned long long)totals[1],
           (unsigned long long)totals[2], (unsigned long long)totals[3],
           (unsigned long long)relayed);
    for (int i = 0; i < 2; i++) {
        LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifs[i],
                    .attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS);
        bpf_tc_hook_destroy(&hook);
    }
    bpf_object__close(obj);
    for (unsigned i = 0; i < nholds; i++) {
        close(holds[i].in);
        close(holds[i].out);
        free(holds[i].buf);
    }
    return 0;
}
