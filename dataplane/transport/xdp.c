/* AF_XDP packet backend: Ferry's frames through AF_XDP sockets, with Ferry's
 * own XDP program choosing which frames those are.
 *
 * Per open interface: the XDP program (xdp_redirect.bpf.c, embedded in the
 * library) attached once, and per queue one AF_XDP socket with its own UMEM
 * and its four rings.  The program redirects IPv4 UDP frames for the ports
 * in its fy_ports map (add_port) to the socket of the queue they arrived
 * on; every other frame goes on to the kernel, so SSH, ARP and the
 * management network keep working on the same NIC.
 *
 * UMEM of a queue: RX_FRAMES frames that only ever cycle through the fill
 * and rx rings, then TX_FRAMES frames for transmission.  Keeping them apart
 * means the core holding many frames for retransmission can never starve
 * reception (acknowledgements must still get in).  Each frame has a
 * reference count: the core's reference, plus one per copy of it sitting
 * in the tx ring; a frame goes back to its pool when the last one drops,
 * so the core may send a frame again while an earlier send of it is still
 * in flight.
 *
 * Zero-copy binding needs native XDP and a driver that supports it (ice,
 * i40e, mlx5, ...); elsewhere (veth, most virtual NICs) the socket binds in
 * copy mode and info.mode says so.  In copy mode every transmission happens
 * inside sendto(), at most 32 frames per call (256 where the kernel lets us
 * raise it): tx() kicks until the ring is drained or the kernel pushes
 * back, and rx() and alloc() kick again (tx_kick). */
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <xdp/xsk.h>

#include "dataplane/transport/pkt.h"
#include "dataplane/transport/xdp.h"
#include "ferry/error.h"
#include "ferry/transport.h"

/* The XDP program's object file, generated at build time (meson). */
extern const unsigned char fy_xdp_redirect_obj[];
extern const size_t fy_xdp_redirect_obj_len;

#define FRAME_SIZE 4096u
#define RX_FRAMES 4096u  /* = fill ring = rx ring: every rx frame fits */
#define TX_FRAMES 8192u
#define TX_RING 4096u    /* = completion ring */
#define MAX_QUEUES 64u   /* fy_xsks entries */
#define COPY_TX_BATCH 32u /* frames one sendto() sends in copy mode... */
#define COPY_TX_BUDGET 256u /* ...unless the kernel lets us raise it (6.17+) */
#ifndef XDP_MAX_TX_SKB_BUDGET
#define XDP_MAX_TX_SKB_BUDGET 9
#endif

struct xdp_frame {
    struct fy_pkt pkt; /* first: a struct fy_pkt * is a struct xdp_frame * */
    uint32_t ref;
    uint16_t queue;
    bool rx;           /* an rx-pool frame: goes back to the fill ring */
};

/* The core makes every call for a queue (alloc, tx, rx, free of its
 * packets) under its own lock of that queue, so nothing here locks. */
struct xdp_queue {
    struct fy_pktio *io;
    unsigned index;
    uint8_t *area;        /* the UMEM: RX_FRAMES then TX_FRAMES frames */
    size_t area_size;
    struct xsk_umem *umem;
    struct xsk_socket *xsk;
    int fd;
    struct xsk_ring_prod fill, tx;
    struct xsk_ring_cons comp, rx;
    struct xdp_frame *frames; /* RX_FRAMES + TX_FRAMES */
    uint32_t *tx_free;        /* indexes of free tx frames */
    unsigned tx_nfree;
    uint64_t kicks;           /* sendto() calls */
    uint64_t tx_stalls;       /* ...that could send nothing (backpressure) */
    uint64_t tx_errors;       /* ...that failed otherwise */
    unsigned tx_budget;       /* frames per sendto() in copy mode */
    bool zerocopy;
};

struct fy_pktio {
    char ifname[IF_NAMESIZE];
    int ifindex;
    unsigned nqueues;
    struct xdp_queue *q;
    struct bpf_object *obj;
    int prog_fd, xsks_fd, ports_fd, owner_fd, stats_fd;
    uint32_t prog_id;
    int link_fd;          /* -1: attached over netlink */
    uint32_t attach_mode; /* XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE */
    bool attached;
    struct fy_pktio_info info;
    struct fy_pktio *next; /* open_ports */
};

/* Ports open in this process, so exit() can detach netlink-attached
 * programs the caller never closed (link attachments go by themselves). */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fy_pktio *open_ports;
static bool atexit_done;

/* ---- libbpf messages ------------------------------------------------------ */

/* libbpf prints to stderr by default; its last warning becomes part of our
 * error instead, and debug chatter is dropped. */
static __thread char bpf_msg[256];

static int bpf_print(enum libbpf_print_level level, const char *fmt,
                     va_list ap) __attribute__((format(printf, 2, 0)));

static int bpf_print(enum libbpf_print_level level, const char *fmt,
                     va_list ap)
{
    if (level == LIBBPF_DEBUG)
        return 0;
    vsnprintf(bpf_msg, sizeof(bpf_msg), fmt, ap);
    size_t n = strlen(bpf_msg);
    while (n && (bpf_msg[n - 1] == '\n' || bpf_msg[n - 1] == ' '))
        bpf_msg[--n] = 0;
    return 0;
}

/* ---- interface facts from the kernel ------------------------------------- */

/* ioctl 'req' on 'ifname' with *ifr (cleared; ifr_data = data when set). */
static int if_ioctl(const char *ifname, unsigned long req, struct ifreq *ifr,
                    void *data)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int rc;

    if (fd < 0)
        return -1;
    memset(ifr, 0, sizeof(*ifr));
    snprintf(ifr->ifr_name, sizeof(ifr->ifr_name), "%s", ifname);
    if (data)
        ifr->ifr_data = data;
    rc = ioctl(fd, req, ifr);
    close(fd);
    return rc;
}

/* Queues the driver spreads received frames over (1 when it cannot say). */
static unsigned if_rx_queues(const char *ifname)
{
    struct ethtool_channels ch = {.cmd = ETHTOOL_GCHANNELS};
    struct ifreq ifr;
    unsigned n;

    if (if_ioctl(ifname, SIOCETHTOOL, &ifr, &ch) < 0)
        return 1;
    n = ch.combined_count > ch.rx_count ? ch.combined_count : ch.rx_count;
    return n ? n : 1;
}

static void if_driver(const char *ifname, char *buf, size_t cap)
{
    struct ethtool_drvinfo di = {.cmd = ETHTOOL_GDRVINFO};
    struct ifreq ifr;

    if (if_ioctl(ifname, SIOCETHTOOL, &ifr, &di) == 0 && di.driver[0])
        snprintf(buf, cap, "%s", di.driver);
    else
        snprintf(buf, cap, "unknown driver");
}

/* MAC, first IPv4 address (0 when none) and MTU of 'io->ifname'. */
static int if_facts(struct fy_pktio *io)
{
    struct ifreq ifr;
    unsigned mtu;

    if (if_ioctl(io->ifname, SIOCGIFHWADDR, &ifr, NULL) < 0)
        return fy_error_sys("xdp: reading the MAC address of %s", io->ifname);
    memcpy(io->info.mac, ifr.ifr_hwaddr.sa_data, 6);
    if (if_ioctl(io->ifname, SIOCGIFADDR, &ifr, NULL) == 0 &&
        ifr.ifr_addr.sa_family == AF_INET)
        io->info.ipv4 = ((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr.s_addr;
    if (if_ioctl(io->ifname, SIOCGIFMTU, &ifr, NULL) < 0)
        return fy_error_sys("xdp: reading the MTU of %s", io->ifname);
    /* A frame must fit an rx UMEM frame after the kernel's headroom. */
    mtu = (unsigned)ifr.ifr_mtu;
    if (mtu > FRAME_SIZE - XDP_PACKET_HEADROOM - 14)
        mtu = FRAME_SIZE - XDP_PACKET_HEADROOM - 14;
    io->info.mtu = (uint16_t)mtu;
    return 0;
}

/* ---- who owns an attached program ------------------------------------------ */

struct xdp_owner { /* = struct fy_xdp_owner in xdp_redirect.bpf.c */
    uint32_t pid;
    uint32_t reserved;
    uint64_t start_time;
};

/* Start time of process 'pid' (field 22 of /proc/PID/stat), 0 if there is
 * no such process.  With the pid it names a process for good: a pid reused
 * after a crash has another start time. */
static uint64_t proc_start_time(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long long t = 0;
    FILE *f;
    char *p;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "re");
    if (!f)
        return 0;
    p = fgets(buf, sizeof(buf), f);
    fclose(f);
    if (!p || !(p = strrchr(buf, ')')))
        return 0;
    /* After "pid (comm)": state is field 3, starttime field 22. */
    for (int field = 2; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    if (p)
        t = strtoull(p + 1, NULL, 10);
    return t;
}

static bool prog_name_is_ferry(int prog_fd, uint32_t *map_ids, uint32_t *nmaps)
{
    struct bpf_prog_info info;
    uint32_t len = sizeof(info);
    uint32_t cap = *nmaps;

    memset(&info, 0, sizeof(info));
    info.nr_map_ids = cap;
    info.map_ids = (uint64_t)(uintptr_t)map_ids;
    if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) < 0)
        return false;
    *nmaps = info.nr_map_ids < cap ? info.nr_map_ids : cap;
    return strcmp(info.name, FY_XDP_PROG_NAME) == 0;
}

/* Reads the fy_owner map among a program's maps. */
static bool prog_owner(const uint32_t *map_ids, uint32_t nmaps,
                       struct xdp_owner *out)
{
    for (uint32_t i = 0; i < nmaps; i++) {
        struct bpf_map_info mi;
        uint32_t len = sizeof(mi);
        uint32_t key = 0;
        int fd = bpf_map_get_fd_by_id(map_ids[i]);
        bool ok = false;

        if (fd < 0)
            continue;
        memset(&mi, 0, sizeof(mi));
        if (bpf_obj_get_info_by_fd(fd, &mi, &len) == 0 &&
            strcmp(mi.name, "fy_owner") == 0)
            ok = bpf_map_lookup_elem(fd, &key, out) == 0;
        close(fd);
        if (ok)
            return true;
    }
    return false;
}

/* Whether a BPF link holds program 'prog_id' (links end with their
 * process, so the holder is alive). */
static bool prog_has_link(uint32_t prog_id)
{
    uint32_t id = 0;

    while (bpf_link_get_next_id(id, &id) == 0) {
        struct bpf_link_info li;
        uint32_t len = sizeof(li);
        int fd = bpf_link_get_fd_by_id(id);

        if (fd < 0)
            continue;
        memset(&li, 0, sizeof(li));
        if (bpf_obj_get_info_by_fd(fd, &li, &len) == 0 &&
            li.type == BPF_LINK_TYPE_XDP && li.prog_id == prog_id) {
            close(fd);
            return true;
        }
        close(fd);
    }
    return false;
}

/* Makes the interface free for our program: nothing attached is fine; a
 * Ferry program whose owner is gone (a crashed process) is detached, with
 * one line on stderr; anything else is an error naming what holds it. */
static int clear_stale(struct fy_pktio *io)
{
    static const struct {
        uint32_t flag;
        const char *name;
    } modes[] = {{XDP_FLAGS_DRV_MODE, "native"},
                 {XDP_FLAGS_SKB_MODE, "skb"},
                 {XDP_FLAGS_HW_MODE, "offloaded"}};
    LIBBPF_OPTS(bpf_xdp_query_opts, q);
    uint32_t ids[3];

    if (bpf_xdp_query(io->ifindex, 0, &q) < 0)
        return fy_error_sys("xdp: querying the XDP programs of %s", io->ifname);
    ids[0] = q.drv_prog_id;
    ids[1] = q.skb_prog_id;
    ids[2] = q.hw_prog_id;
    for (unsigned m = 0; m < 3; m++) {
        uint32_t map_ids[8], nmaps = 8;
        struct xdp_owner owner = {0};
        bool ferry, linked, have_owner;
        int fd, rc;

        if (!ids[m])
            continue;
        fd = bpf_prog_get_fd_by_id(ids[m]);
        if (fd < 0)
            return fy_error_sys("xdp: opening XDP program %u on %s", ids[m],
                                io->ifname);
        ferry = prog_name_is_ferry(fd, map_ids, &nmaps);
        if (!ferry) {
            close(fd);
            return fy_error(FY_E_BUSY,
                            "xdp: %s already has an XDP program (id %u, %s "
                            "mode) that is not Ferry's; detach it (ip link "
                            "set dev %s xdp off) or give Ferry another "
                            "interface",
                            io->ifname, ids[m], modes[m].name, io->ifname);
        }
        have_owner = prog_owner(map_ids, nmaps, &owner);
        linked = prog_has_link(ids[m]);
        if (linked || (have_owner && owner.pid &&
                       proc_start_time((pid_t)owner.pid) == owner.start_time)) {
            close(fd);
            if (have_owner && owner.pid == (uint32_t)getpid())
                return fy_error(FY_E_BUSY,
                                "xdp: %s is already open in this process; "
                                "open it once (one port per interface)",
                                io->ifname);
            return fy_error(FY_E_BUSY,
                            "xdp: %s is in use by another Ferry process "
                            "(pid %u); stop it or use another interface",
                            io->ifname, have_owner ? owner.pid : 0);
        }
        LIBBPF_OPTS(bpf_xdp_attach_opts, ao, .old_prog_fd = fd);
        rc = bpf_xdp_detach(io->ifindex, modes[m].flag, &ao);
        close(fd);
        if (rc < 0) {
            errno = -rc;
            return fy_error_sys("xdp: detaching the stale Ferry XDP program "
                                "(id %u) from %s",
                                ids[m], io->ifname);
        }
        fprintf(stderr,
                "ferry: xdp: detached a stale Ferry XDP program (id %u, %s "
                "mode, left by process %u) from %s\n",
                ids[m], modes[m].name, owner.pid, io->ifname);
    }
    return 0;
}

/* ---- the XDP program ----------------------------------------------------- */

static int prog_load(struct fy_pktio *io)
{
    struct bpf_program *prog;
    struct bpf_prog_info pi;
    uint32_t len = sizeof(pi);
    struct xdp_owner owner = {.pid = (uint32_t)getpid()};
    uint32_t key = 0;
    int rc;

    bpf_msg[0] = 0;
    io->obj = bpf_object__open_mem(fy_xdp_redirect_obj, fy_xdp_redirect_obj_len,
                                   NULL);
    if (!io->obj) {
        io->obj = NULL;
        return fy_error(FY_E_IO, "xdp: the embedded XDP program does not "
                        "open: %s", bpf_msg);
    }
    rc = bpf_object__load(io->obj);
    if (rc < 0)
        return fy_error(FY_E_UNSUPPORTED,
                        "xdp: loading the XDP program failed (%s)%s%s; Ferry "
                        "needs root (CAP_BPF, CAP_NET_ADMIN) and a kernel "
                        "with BPF and XDP sockets",
                        strerror(-rc), bpf_msg[0] ? ": " : "", bpf_msg);
    prog = bpf_object__find_program_by_name(io->obj, FY_XDP_PROG_NAME);
    if (!prog)
        return fy_error(FY_E_IO, "xdp: the XDP object has no program %s",
                        FY_XDP_PROG_NAME);
    io->prog_fd = bpf_program__fd(prog);
    io->xsks_fd = bpf_object__find_map_fd_by_name(io->obj, "fy_xsks");
    io->ports_fd = bpf_object__find_map_fd_by_name(io->obj, "fy_ports");
    io->owner_fd = bpf_object__find_map_fd_by_name(io->obj, "fy_owner");
    io->stats_fd = bpf_object__find_map_fd_by_name(io->obj, "fy_stats");
    if (io->xsks_fd < 0 || io->ports_fd < 0 || io->owner_fd < 0 ||
        io->stats_fd < 0)
        return fy_error(FY_E_IO, "xdp: the XDP object lacks one of its maps");
    memset(&pi, 0, sizeof(pi));
    if (bpf_obj_get_info_by_fd(io->prog_fd, &pi, &len) < 0)
        return fy_error_sys("xdp: reading the XDP program's id");
    io->prog_id = pi.id;
    owner.start_time = proc_start_time(getpid());
    /* The program never reads fy_owner; binding it keeps it findable from
     * the program (its map ids) by a later process. */
    if (bpf_map_update_elem(io->owner_fd, &key, &owner, BPF_ANY) < 0 ||
        bpf_prog_bind_map(io->prog_fd, io->owner_fd, NULL) < 0)
        return fy_error_sys("xdp: recording the XDP program's owner");
    return 0;
}

static int attach_once(struct fy_pktio *io, uint32_t mode, bool use_link)
{
    int rc;

    if (use_link) {
        LIBBPF_OPTS(bpf_link_create_opts, lo, .flags = mode);
        rc = bpf_link_create(io->prog_fd, io->ifindex, BPF_XDP, &lo);
        if (rc >= 0) {
            io->link_fd = rc;
            rc = 0;
        }
    } else {
        rc = bpf_xdp_attach(io->ifindex, io->prog_fd,
                            mode | XDP_FLAGS_UPDATE_IF_NOEXIST, NULL);
    }
    if (rc == 0) {
        io->attach_mode = mode;
        io->attached = true;
    }
    return rc;
}

/* Attaches in the mode asked for ('auto': native, then skb). */
static int prog_attach(struct fy_pktio *io, const char *mode, bool use_link)
{
    bool try_native = strcmp(mode, "skb") != 0;
    bool try_skb = strcmp(mode, "native") != 0;
    int rc = -EINVAL;

    if (try_native)
        rc = attach_once(io, XDP_FLAGS_DRV_MODE, use_link);
    if (rc < 0 && try_skb)
        rc = attach_once(io, XDP_FLAGS_SKB_MODE, use_link);
    if (rc == -ERANGE)
        return fy_error(FY_E_CONFIG,
                        "xdp: the MTU of %s is too large for native XDP on "
                        "its driver: lower it (ip link set dev %s mtu 3500) "
                        "or use xdp_mode=skb",
                        io->ifname, io->ifname);
    if (rc < 0) {
        errno = -rc;
        return fy_error_sys("xdp: attaching the XDP program to %s (%s mode, "
                            "%s)%s",
                            io->ifname, mode, use_link ? "link" : "netlink",
                            strcmp(mode, "native") == 0
                                ? "; the driver may lack native XDP: try "
                                  "xdp_mode=skb"
                                : "");
    }
    return 0;
}

static void prog_detach(struct fy_pktio *io)
{
    if (!io->attached)
        return;
    if (io->link_fd >= 0) {
        close(io->link_fd);
        io->link_fd = -1;
    } else {
        LIBBPF_OPTS(bpf_xdp_attach_opts, ao, .old_prog_fd = io->prog_fd);
        bpf_xdp_detach(io->ifindex, io->attach_mode, &ao);
    }
    io->attached = false;
}

/* ---- queues ---------------------------------------------------------------- */

static inline struct xdp_frame *frame_of(struct fy_pkt *p)
{
    return (struct xdp_frame *)p;
}

/* Returns a frame whose last reference dropped to its pool. */
static void frame_release(struct xdp_queue *q, struct xdp_frame *f,
                          unsigned *fill_n)
{
    uint32_t idx = (uint32_t)(f - q->frames);

    if (f->rx) {
        uint32_t slot;
        /* The fill ring holds every rx frame, so there is always room. */
        if (xsk_ring_prod__reserve(&q->fill, 1, &slot) == 1) {
            *xsk_ring_prod__fill_addr(&q->fill, slot) =
                (uint64_t)idx * FRAME_SIZE;
            (*fill_n)++;
        }
    } else {
        q->tx_free[q->tx_nfree++] = idx;
    }
}

/* Takes the NIC's references back for frames it finished sending. */
static void reap_completions(struct xdp_queue *q)
{
    uint32_t slot, n;
    unsigned fill_n = 0;

    n = xsk_ring_cons__peek(&q->comp, TX_RING, &slot);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t addr = *xsk_ring_cons__comp_addr(&q->comp, slot + i);
        struct xdp_frame *f = &q->frames[addr / FRAME_SIZE];
        if (--f->ref == 0)
            frame_release(q, f, &fill_n);
    }
    if (n)
        xsk_ring_cons__release(&q->comp, n);
    if (fill_n)
        xsk_ring_prod__submit(&q->fill, fill_n);
}

/* Frames in the tx ring the kernel has not taken yet. */
static uint32_t tx_pending(const struct xdp_queue *q)
{
    return __atomic_load_n(q->tx.producer, __ATOMIC_ACQUIRE) -
           __atomic_load_n(q->tx.consumer, __ATOMIC_ACQUIRE);
}

/* Makes the kernel transmit what the tx ring holds.  Zero-copy: the driver
 * sends by itself once woken.  Copy mode: each sendto() sends up to
 * tx_budget frames, and fails with EAGAIN when more wait (budget used up)
 * or when it could send none: the completion ring or the socket's send
 * buffer (skbs still in flight) is full.  Then the frames stay in the ring
 * and the next call for this queue (tx, rx or alloc) kicks again, so they
 * leave as soon as the kernel can take them, not when the core next sends.
 * EBUSY: the device dropped a frame (the core retransmits it). */
static void tx_kick(struct xdp_queue *q)
{
    uint32_t pending = tx_pending(q), before;
    unsigned tries;

    if (!pending)
        return;
    if (q->zerocopy) {
        if (xsk_ring_prod__needs_wakeup(&q->tx)) {
            q->kicks++;
            sendto(q->fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
        }
        return;
    }
    for (tries = pending / q->tx_budget + 2; tries && pending; tries--) {
        before = pending;
        q->kicks++;
        if (sendto(q->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 &&
            errno != EAGAIN && errno != EBUSY && errno != EINTR) {
            q->tx_errors++; /* ENETDOWN, ENXIO: the next call tries again */
            break;
        }
        pending = tx_pending(q);
        if (pending == before) {
            q->tx_stalls++;
            break;
        }
    }
}

static void queue_fini(struct xdp_queue *q)
{
    if (q->xsk)
        xsk_socket__delete(q->xsk);
    if (q->umem)
        xsk_umem__delete(q->umem);
    if (q->area)
        munmap(q->area, q->area_size);
    free(q->frames);
    free(q->tx_free);
    memset(q, 0, sizeof(*q));
}

static int socket_create(struct xdp_queue *q, uint16_t bind_flags)
{
    struct xsk_umem_config uc = {
        .fill_size = RX_FRAMES,
        .comp_size = TX_RING,
        .frame_size = FRAME_SIZE,
        .frame_headroom = 0,
    };
    struct xsk_socket_config sc = {
        .rx_size = RX_FRAMES,
        .tx_size = TX_RING,
        .libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
        .bind_flags = bind_flags | XDP_USE_NEED_WAKEUP,
    };
    int rc;

    rc = xsk_umem__create(&q->umem, q->area, q->area_size, &q->fill, &q->comp,
                          &uc);
    if (rc < 0) {
        q->umem = NULL;
        return rc;
    }
    rc = xsk_socket__create(&q->xsk, q->io->ifname, q->index, q->umem, &q->rx,
                            &q->tx, &sc);
    if (rc < 0) {
        q->xsk = NULL;
        xsk_umem__delete(q->umem);
        q->umem = NULL;
    }
    return rc;
}

static int queue_init(struct fy_pktio *io, unsigned index, const char *bind)
{
    struct xdp_queue *q = &io->q[index];
    unsigned nframes = RX_FRAMES + TX_FRAMES;
    struct xdp_options xo;
    socklen_t xl = sizeof(xo);
    unsigned budget = COPY_TX_BUDGET;
    uint32_t slot;
    int rc = -ENOTSUP;

    q->io = io;
    q->index = index;
    q->fd = -1;
    q->area_size = (size_t)nframes * FRAME_SIZE;
    q->area = mmap(NULL, q->area_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    q->frames = calloc(nframes, sizeof(*q->frames));
    q->tx_free = calloc(TX_FRAMES, sizeof(*q->tx_free));
    if (q->area == MAP_FAILED) {
        q->area = NULL;
        return fy_error_sys("xdp: allocating %zu MiB of UMEM for %s queue %u",
                            q->area_size >> 20, io->ifname, index);
    }
    if (!q->frames || !q->tx_free)
        return fy_error(FY_E_NOMEM, "xdp: frame tables for %s queue %u",
                        io->ifname, index);
    for (unsigned i = 0; i < nframes; i++) {
        struct xdp_frame *f = &q->frames[i];
        f->pkt.data = q->area + (size_t)i * FRAME_SIZE;
        f->pkt.room = FRAME_SIZE;
        f->pkt.queue = (uint16_t)index;
        f->queue = (uint16_t)index;
        f->rx = i < RX_FRAMES;
    }
    for (unsigned i = 0; i < TX_FRAMES; i++)
        q->tx_free[i] = nframes - 1 - i; /* pops the lowest first */
    q->tx_nfree = TX_FRAMES;

    if (strcmp(bind, "copy") != 0)
        rc = socket_create(q, XDP_ZEROCOPY);
    if (rc < 0 && strcmp(bind, "zerocopy") != 0)
        rc = socket_create(q, XDP_COPY);
    if (rc < 0) {
        errno = -rc;
        return fy_error_sys("xdp: binding an AF_XDP socket to %s queue %u "
                            "(bind=%s)%s",
                            io->ifname, index, bind,
                            strcmp(bind, "zerocopy") == 0
                                ? "; the driver may lack zero-copy: try "
                                  "bind=copy"
                                : "");
    }
    q->fd = xsk_socket__fd(q->xsk);
    if (getsockopt(q->fd, SOL_XDP, XDP_OPTIONS, &xo, &xl) == 0)
        q->zerocopy = (xo.flags & XDP_OPTIONS_ZEROCOPY) != 0;
    /* Copy mode: fewer sendto() calls per frame where the kernel allows a
     * larger batch; older kernels refuse and keep 32.  The socket's send
     * buffer stays at the kernel's default: it caps the skbs in flight at
     * about 90, below what a veth peer's ring holds (256), so frames wait
     * in our tx ring (tx_kick) rather than being dropped by the device. */
    q->tx_budget = COPY_TX_BATCH;
    if (!q->zerocopy &&
        setsockopt(q->fd, SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &budget,
                   sizeof(budget)) == 0)
        q->tx_budget = budget;

    /* Every rx frame into the fill ring. */
    if (xsk_ring_prod__reserve(&q->fill, RX_FRAMES, &slot) != RX_FRAMES)
        return fy_error(FY_E_IO, "xdp: fill ring of %s queue %u is short",
                        io->ifname, index);
    for (unsigned i = 0; i < RX_FRAMES; i++)
        *xsk_ring_prod__fill_addr(&q->fill, slot + i) = (uint64_t)i * FRAME_SIZE;
    xsk_ring_prod__submit(&q->fill, RX_FRAMES);

    if (bpf_map_update_elem(io->xsks_fd, &index, &q->fd, BPF_ANY) < 0)
        return fy_error_sys("xdp: adding the socket of %s queue %u to the "
                            "XDP program's map",
                            io->ifname, index);
    return 0;
}

/* ---- ops ------------------------------------------------------------------- */

static void xdp_close(struct fy_pktio *io);

static void close_all_at_exit(void)
{
    pthread_mutex_lock(&open_lock);
    for (struct fy_pktio *io = open_ports; io; io = io->next)
        prog_detach(io);
    pthread_mutex_unlock(&open_lock);
}

static void bpf_print_init(void)
{
    libbpf_set_print(bpf_print);
}

static int get_choice(const char *params, const char *key, const char *dflt,
                      const char *const *allowed, char *buf, size_t cap)
{
    int rc = params ? fy_params_get(params, key, buf, cap) : 0;

    if (rc < 0)
        return fy_error(FY_E_INVAL, "xdp: %s= is too long", key);
    if (rc == 0)
        snprintf(buf, cap, "%s", dflt);
    for (unsigned i = 0; allowed[i]; i++)
        if (strcmp(buf, allowed[i]) == 0)
            return 0;
    return fy_error(FY_E_INVAL, "xdp: %s=%s is not one of %s|%s|%s", key, buf,
                    allowed[0], allowed[1], allowed[2] ? allowed[2] : "");
}

static int xdp_open(const char *params, unsigned queues, bool listener,
                    struct fy_pktio **out)
{
    static const char *const modes[] = {"auto", "native", "skb", NULL};
    static const char *const binds[] = {"auto", "zerocopy", "copy", NULL};
    static const char *const attaches[] = {"link", "netlink", NULL};
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    char mode[16], bind[16], attach[16], drv[32];
    struct fy_pktio *io;
    unsigned maxq;
    int rc;

    (void)listener;
    *out = NULL;
    pthread_once(&once, bpf_print_init);
    io = calloc(1, sizeof(*io));
    if (!io)
        return fy_error(FY_E_NOMEM, "xdp: port");
    io->link_fd = -1;
    io->prog_fd = io->xsks_fd = io->ports_fd = io->owner_fd = io->stats_fd = -1;

    rc = params ? fy_params_get(params, "dev", io->ifname, sizeof(io->ifname))
                : 0;
    if (rc <= 0) {
        rc = fy_error(FY_E_CONFIG,
                      rc < 0 ? "xdp: dev= is longer than an interface name"
                             : "xdp: no interface given: set dev=IFNAME in "
                               "the transport parameters");
        goto fail;
    }
    if ((rc = get_choice(params, "xdp_mode", "auto", modes, mode, sizeof(mode))) < 0 ||
        (rc = get_choice(params, "bind", "auto", binds, bind, sizeof(bind))) < 0 ||
        (rc = get_choice(params, "xdp_attach", "link", attaches, attach,
                         sizeof(attach))) < 0)
        goto fail;
    if (strcmp(bind, "zerocopy") == 0 && strcmp(mode, "skb") == 0) {
        rc = fy_error(FY_E_CONFIG, "xdp: bind=zerocopy needs native XDP, not "
                      "xdp_mode=skb");
        goto fail;
    }
    io->ifindex = (int)if_nametoindex(io->ifname);
    if (!io->ifindex) {
        rc = fy_error(FY_E_NOTFOUND,
                      "xdp: no interface named %s in this network namespace "
                      "(ip link show lists them)",
                      io->ifname);
        goto fail;
    }
    if ((rc = if_facts(io)) < 0)
        goto fail;

    maxq = if_rx_queues(io->ifname);
    if (maxq > MAX_QUEUES)
        maxq = MAX_QUEUES;
    /* The core reads queues= and asks for that many; a device gives at
     * most its rx queues. */
    io->nqueues = queues ? queues : 1;
    if (io->nqueues > maxq)
        io->nqueues = maxq;

    if ((rc = clear_stale(io)) < 0 || (rc = prog_load(io)) < 0 ||
        (rc = prog_attach(io, mode, strcmp(attach, "link") == 0)) < 0)
        goto fail;
    if (strcmp(bind, "zerocopy") != 0 && io->attach_mode == XDP_FLAGS_SKB_MODE)
        snprintf(bind, sizeof(bind), "copy"); /* zero-copy needs native */

    io->q = calloc(io->nqueues, sizeof(*io->q));
    if (!io->q) {
        rc = fy_error(FY_E_NOMEM, "xdp: queues");
        goto fail;
    }
    for (unsigned i = 0; i < io->nqueues; i++) {
        if ((rc = queue_init(io, i, bind)) < 0) {
            io->nqueues = i + 1; /* close() cleans up to this one */
            goto fail;
        }
    }

    if_driver(io->ifname, drv, sizeof(drv));
    io->info.queues = io->nqueues;
    io->info.extbuf = false;
    snprintf(io->info.mode, sizeof(io->info.mode),
             "AF_XDP %s (%s), %s XDP, %u queue%s",
             io->q[0].zerocopy ? "zero-copy" : "copy mode", drv,
             io->attach_mode == XDP_FLAGS_DRV_MODE ? "native" : "skb",
             io->nqueues, io->nqueues == 1 ? "" : "s");

    pthread_mutex_lock(&open_lock);
    io->next = open_ports;
    open_ports = io;
    if (!atexit_done) {
        atexit(close_all_at_exit);
        atexit_done = true;
    }
    pthread_mutex_unlock(&open_lock);
    *out = io;
    return 0;

fail:
    xdp_close(io);
    return rc;
}

static int xdp_add_port(struct fy_pktio *io, uint16_t udp_port)
{
    uint16_t key = htons(udp_port);
    uint8_t one = 1;

    if (bpf_map_update_elem(io->ports_fd, &key, &one, BPF_ANY) < 0)
        return fy_error_sys("xdp: adding UDP port %u to the XDP program's map "
                            "on %s",
                            udp_port, io->ifname);
    return 0;
}

static void xdp_close(struct fy_pktio *io)
{
    if (!io)
        return;
    pthread_mutex_lock(&open_lock);
    for (struct fy_pktio **p = &open_ports; *p; p = &(*p)->next) {
        if (*p == io) {
            *p = io->next;
            break;
        }
    }
    pthread_mutex_unlock(&open_lock);
    /* The program first: frames for our port then reach the kernel, not a
     * socket that is going away. */
    prog_detach(io);
    for (unsigned i = 0; io->q && i < io->nqueues; i++)
        queue_fini(&io->q[i]);
    free(io->q);
    if (io->obj)
        bpf_object__close(io->obj);
    free(io);
}

static void xdp_info(struct fy_pktio *io, struct fy_pktio_info *out)
{
    *out = io->info;
}

static int xdp_alloc(struct fy_pktio *io, unsigned queue, struct fy_pkt **pkts,
                     unsigned n)
{
    struct xdp_queue *q = &io->q[queue];
    unsigned k;

    if (q->tx_nfree < n)
        reap_completions(q);
    k = n < q->tx_nfree ? n : q->tx_nfree;
    for (unsigned i = 0; i < k; i++) {
        struct xdp_frame *f = &q->frames[q->tx_free[--q->tx_nfree]];
        f->ref = 1;
        f->pkt.len = 0;
        f->pkt.ext = NULL;
        f->pkt.ext_len = 0;
        pkts[i] = &f->pkt;
    }
    if (k == 0)
        tx_kick(q); /* frames still in the ring complete once sent */
    return (int)k;
}

static int xdp_tx(struct fy_pktio *io, unsigned queue, struct fy_pkt **pkts,
                  unsigned n)
{
    struct xdp_queue *q = &io->q[queue];
    uint32_t slot, k;

    reap_completions(q);
    k = xsk_prod_nb_free(&q->tx, n);
    if (k > n)
        k = n;
    if (k && xsk_ring_prod__reserve(&q->tx, k, &slot) != k)
        k = 0;
    for (uint32_t i = 0; i < k; i++) {
        struct xdp_desc *d = xsk_ring_prod__tx_desc(&q->tx, slot + i);
        frame_of(pkts[i])->ref++;
        d->addr = (uint64_t)(pkts[i]->data - q->area);
        d->len = pkts[i]->len;
        d->options = 0;
    }
    if (k)
        xsk_ring_prod__submit(&q->tx, k);
    tx_kick(q);
    return (int)k;
}

static int xdp_rx(struct fy_pktio *io, unsigned queue, struct fy_pkt **pkts,
                  unsigned max)
{
    struct xdp_queue *q = &io->q[queue];
    uint32_t slot, n;

    /* The core polls rx while it waits for acknowledgements: the moment
     * to push out frames a full send buffer held back. */
    tx_kick(q);
    n = xsk_ring_cons__peek(&q->rx, max, &slot);
    for (uint32_t i = 0; i < n; i++) {
        const struct xdp_desc *d = xsk_ring_cons__rx_desc(&q->rx, slot + i);
        uint64_t addr = xsk_umem__add_offset_to_addr(d->addr);
        struct xdp_frame *f = &q->frames[addr / FRAME_SIZE];
        f->ref = 1;
        f->pkt.data = q->area + addr;
        f->pkt.len = (uint16_t)d->len;
        f->pkt.room = (uint16_t)(FRAME_SIZE - addr % FRAME_SIZE);
        pkts[i] = &f->pkt;
    }
    if (n)
        xsk_ring_cons__release(&q->rx, n);
    /* Drivers that sleep until woken (zero-copy with need_wakeup). */
    if (n == 0 && xsk_ring_prod__needs_wakeup(&q->fill))
        recvfrom(q->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
    return (int)n;
}

static void xdp_free(struct fy_pktio *io, struct fy_pkt **pkts, unsigned n)
{
    unsigned i = 0;

    while (i < n) {
        struct xdp_queue *q = &io->q[frame_of(pkts[i])->queue];
        unsigned fill_n = 0;

        for (; i < n && frame_of(pkts[i])->queue == q->index; i++) {
            struct xdp_frame *f = frame_of(pkts[i]);
            if (--f->ref == 0)
                frame_release(q, f, &fill_n);
        }
        if (fill_n)
            xsk_ring_prod__submit(&q->fill, fill_n);
    }
}

int fy_xdp_stats(struct fy_pktio *io, struct fy_xdp_stats *out)
{
    int ncpu = libbpf_num_possible_cpus();
    uint64_t *vals;

    memset(out, 0, sizeof(*out));
    if (ncpu <= 0 || !(vals = calloc((size_t)ncpu, sizeof(*vals))))
        return fy_error(FY_E_NOMEM, "xdp: statistics");
    for (uint32_t k = 0; k < 2; k++) {
        if (bpf_map_lookup_elem(io->stats_fd, &k, vals) < 0)
            continue;
        for (int c = 0; c < ncpu; c++)
            (k ? &out->passed : &out->redirected)[0] += vals[c];
    }
    free(vals);
    for (unsigned i = 0; i < io->nqueues; i++) {
        struct xdp_statistics st;
        socklen_t sl = sizeof(st);
        if (getsockopt(io->q[i].fd, SOL_XDP, XDP_STATISTICS, &st, &sl) == 0)
            out->rx_dropped += st.rx_dropped + st.rx_ring_full +
                               st.rx_fill_ring_empty_descs;
        out->tx_kicks += io->q[i].kicks;
        out->tx_stalls += io->q[i].tx_stalls;
        out->tx_errors += io->q[i].tx_errors;
    }
    return 0;
}

const struct fy_pktio_ops fy_pktio_xdp = {
    .name = "xdp",
    .open = xdp_open,
    .add_port = xdp_add_port,
    .close = xdp_close,
    .info = xdp_info,
    .alloc = xdp_alloc,
    .tx = xdp_tx,
    .rx = xdp_rx,
    .free = xdp_free,
};

/* ---- the transport ------------------------------------------------------- */

static int xdp_listen(const char *addr, const struct fy_transport_opts *o,
                      struct fy_listener **out)
{
    return fy_pkt_listen(&fy_pktio_xdp, &fy_transport_xdp, addr, o, out);
}

static int xdp_connect(const char *addr, const struct fy_transport_opts *o,
                       const struct fy_session_info *info,
                       struct fy_session **out)
{
    return fy_pkt_connect(&fy_pktio_xdp, &fy_transport_xdp, addr, o, info,
                          out);
}

const struct fy_transport_ops fy_transport_xdp = {
    .abi = FY_TRANSPORT_ABI,
    .name = "xdp",
    .description = "Ferry's packet protocol over AF_XDP sockets; an XDP "
                   "program hands only Ferry's UDP port to them",
    .data_max = FY_DATA_MAX,
    .listen = xdp_listen,
    .accept = fy_pkt_accept,
    .listener_close = fy_pkt_listener_close,
    .listener_shutdown = fy_pkt_listener_shutdown,
    .connect = xdp_connect,
    .shutdown = fy_pkt_shutdown,
    .close = fy_pkt_close,
};
