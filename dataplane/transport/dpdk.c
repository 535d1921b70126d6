/* DPDK packet backend: Ferry's frames through any DPDK poll-mode driver.
 *
 * The reliability, sessions and framing are the packet core's
 * (dataplane/transport/pkt.c); this file only opens a DPDK port and moves
 * whole Ethernet frames through it (struct fy_pktio_ops, pkt.h).
 *
 * Which port comes from the transport's params (docs/transports.md):
 *   dev=net_memif0,socket=PATH    a virtual device: net_memif (two agents on
 *                                 one host, the local default), net_af_xdp,
 *                                 net_af_packet (veth pairs), net_ring, ...
 *   pci=0000:03:00.0              a NIC bound to vfio-pci
 * plus queues=N, mtu=N (at most; default 9000), mbufs=N, rxd=N, txd=N,
 * extbuf=auto|on|off, and the EAL settings below.
 *
 * The EAL is set up once per process, by the first port opened, from that
 * port's params: eal="extra EAL arguments", lcores=, mem=MB, file-prefix=
 * (default ferry-<pid>: several agents on one host stay apart), huge=
 * auto|on|off.  With huge=auto it uses hugepages when the kernel has enough
 * free ones and --no-huge otherwise; info.mode says which.
 *
 * Packets are mbufs; each mbuf's private area holds the struct fy_pkt the
 * core sees.  Zero-copy transmit: a packet with fy_pkt.ext gets a second
 * segment, an mbuf attached to the caller's memory as an external buffer
 * (rte_pktmbuf_attach_extbuf), so page data is not copied into the mbuf.
 * That needs a PMD that transmits chained mbufs (RTE_ETH_TX_OFFLOAD_
 * MULTI_SEGS) and reads them with the CPU: net_memif and net_af_packet do
 * (memif copies each segment into its shared ring, so the page is copied
 * once instead of twice).  A NIC would DMA from that memory, which would
 * first have to be mapped for the device (rte_extmem_register,
 * rte_dev_dma_map); this backend does not do that yet, so PCI ports copy
 * and refuse extbuf=on. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "dataplane/transport/pkt.h"
#include "ferry/error.h"
#include "ferry/transport.h"

#define DEFAULT_MTU 9000
#define DEFAULT_MEM_MB 256
#define DEFAULT_DESC 1024
#define MAX_QUEUES 64
#define BURST 64
/* Ethernet header + a VLAN tag of slack. */
#define FRAME_OVERHEAD 18
/* How long a connecting memif waits for its link before the core starts
 * sending (the core retransmits anyway; this only avoids a first timeout). */
#define LINK_WAIT_MS 3000
/* net_af_packet's ring frame: TPACKET2 header and sockaddr_ll, aligned. */
#define AF_PACKET_FRAME_HDR 80
/* How long a memif server waits for its client to leave before closing. */
#define MEMIF_LEAVE_MS 1000

/* In each mbuf's private area: what the core sees, and the shared info of
 * the external buffer a transmit packet's second segment points at. */
struct dpdk_priv {
    struct fy_pkt pkt;
    struct rte_mbuf_ext_shared_info shinfo;
};

#define PRIV_SIZE RTE_ALIGN_CEIL(sizeof(struct dpdk_priv), RTE_MBUF_PRIV_ALIGN)

struct fy_pktio {
    uint16_t port;
    bool vdev;           /* created by us: removed on close */
    bool started;
    bool memif_server;   /* net_memif, listening side */
    char devname[128];   /* the DPDK device name */
    unsigned queues;
    uint16_t mtu;        /* what the core may put in an IPv4 packet */
    uint16_t room;       /* bytes of frame an mbuf holds */
    bool extbuf;
    struct rte_mempool *pool;     /* frames, rx and tx */
    struct rte_mempool *ext_pool; /* data-less mbufs for external buffers */
    struct fy_pktio_info info;
};

/* ---- params ------------------------------------------------------------- */

/* fy_params_get_uint() into an unsigned. */
static int param_uint(const char *params, const char *key, unsigned min,
                      unsigned max, unsigned *out)
{
    uint64_t v = *out;
    int rc = fy_params_get_uint(params, key, min, max, &v);

    *out = (unsigned)v;
    return rc;
}

/* auto|on|off (also 1/0, yes/no) into -1/1/0; *out untouched if absent. */
static int param_tristate(const char *params, const char *key, int *out)
{
    char buf[16];
    int rc = fy_params_get(params, key, buf, sizeof(buf));

    if (rc <= 0)
        return rc == 0 ? 0 : fy_error(FY_E_INVAL, "dpdk: %s= is too long", key);
    if (!strcmp(buf, "auto"))
        *out = -1;
    else if (!strcmp(buf, "on") || !strcmp(buf, "1") || !strcmp(buf, "yes"))
        *out = 1;
    else if (!strcmp(buf, "off") || !strcmp(buf, "0") || !strcmp(buf, "no"))
        *out = 0;
    else
        return fy_error(FY_E_INVAL, "dpdk: %s=%s: expected auto, on or off", key, buf);
    return 0;
}

/* Appends src to the string in dst[cap], cutting it off if it must. */
static void str_append(char *dst, size_t cap, const char *src)
{
    size_t used = strnlen(dst, cap), n = strlen(src);

    if (used + 1 >= cap)
        return;
    if (n > cap - used - 1)
        n = cap - used - 1;
    memcpy(dst + used, src, n);
    dst[used + n] = '\0';
}

/* "0000:03:00.0" or "03:00.0" */
static bool looks_pci(const char *s)
{
    unsigned a, b, c, d;
    char tail;

    return sscanf(s, "%x:%x:%x.%x%c", &a, &b, &c, &d, &tail) == 4 ||
           sscanf(s, "%x:%x.%x%c", &a, &b, &c, &tail) == 3;
}

/* ---- the EAL: once per process ------------------------------------------ */

static pthread_mutex_t eal_lock = PTHREAD_MUTEX_INITIALIZER;
static int eal_state = 1;        /* 1: not tried, 0: up, < 0: failed */
static char eal_failure[512];    /* why, when it failed (said again later) */
static char eal_memory[96];      /* "hugepages" / "--no-huge (why)" */
static const char *eal_memory_short = ""; /* "hugepages" / "--no-huge" */
static unsigned eal_mem_mb;      /* -m: what every pool of the process shares */
static unsigned vdev_seq;

/* Bytes of free hugepages of every size the kernel has reserved. */
static uint64_t free_hugepage_bytes(void)
{
    DIR *d = opendir("/sys/kernel/mm/hugepages");
    struct dirent *e;
    uint64_t total = 0;

    if (!d)
        return 0;
    while ((e = readdir(d))) {
        unsigned long kb, n = 0;
        char path[512];
        FILE *f;

        if (sscanf(e->d_name, "hugepages-%lukB", &kb) != 1)
            continue;
        snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/%s/free_hugepages",
                 e->d_name);
        if ((f = fopen(path, "r"))) {
            if (fscanf(f, "%lu", &n) != 1)
                n = 0;
            fclose(f);
        }
        total += (uint64_t)n * kb * 1024;
    }
    closedir(d);
    return total;
}

struct argv_buf {
    int argc;
    char *argv[64];
    char store[2048];
    size_t used;
};

static int arg_add(struct argv_buf *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int arg_add(struct argv_buf *a, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (a->argc >= (int)(sizeof(a->argv) / sizeof(a->argv[0])) - 1)
        return fy_error(FY_E_INVAL, "dpdk: too many EAL arguments");
    va_start(ap, fmt);
    n = vsnprintf(a->store + a->used, sizeof(a->store) - a->used, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(a->store) - a->used)
        return fy_error(FY_E_INVAL, "dpdk: EAL arguments longer than %zu bytes",
                        sizeof(a->store));
    a->argv[a->argc++] = a->store + a->used;
    a->argv[a->argc] = NULL;
    a->used += (size_t)n + 1;
    return 0;
}

/* Builds the EAL command line from params; says in eal_memory which memory
 * it chose and why. */
static int eal_args(const char *params, const char *pci, struct argv_buf *a)
{
    char buf[512], prefix[64];
    unsigned mem = DEFAULT_MEM_MB;
    int huge = -1, rc;
    uint64_t free_huge;

    if ((rc = param_uint(params, "mem", 16, 1u << 20, &mem)) < 0 ||
        (rc = param_tristate(params, "huge", &huge)) < 0)
        return rc;
    if ((rc = arg_add(a, "ferry")) < 0)
        return rc;
    if ((rc = fy_params_get(params, "file-prefix", prefix, sizeof(prefix))) < 0)
        return fy_error(FY_E_INVAL, "dpdk: file-prefix= is longer than %zu characters",
                        sizeof(prefix) - 1);
    if (rc == 0)
        snprintf(prefix, sizeof(prefix), "ferry-%ld", (long)getpid());
    if ((rc = arg_add(a, "--file-prefix=%s", prefix)) < 0)
        return rc;

    free_huge = free_hugepage_bytes();
    if (huge == 1 || (huge == -1 && free_huge >= (uint64_t)mem << 20)) {
        if (free_huge < (uint64_t)mem << 20)
            return fy_error(FY_E_NOSPACE, "dpdk: huge=on but only %llu MiB of free "
                            "hugepages for mem=%u MiB: reserve more (echo N > "
                            "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages) "
                            "or use huge=auto",
                            (unsigned long long)(free_huge >> 20), mem);
        /* In-memory: hugepages without hugetlbfs files or a mount, nothing
         * left behind in /dev/hugepages if the process dies. */
        snprintf(eal_memory, sizeof(eal_memory), "hugepages (%u MiB)", mem);
        eal_memory_short = "hugepages";
        if ((rc = arg_add(a, "--in-memory")) < 0)
            return rc;
    } else {
        eal_memory_short = "--no-huge";
        if (huge == 0)
            snprintf(eal_memory, sizeof(eal_memory), "--no-huge (huge=off)");
        else
            snprintf(eal_memory, sizeof(eal_memory),
                     "--no-huge (%llu MiB of free hugepages, %u wanted)",
                     (unsigned long long)(free_huge >> 20), mem);
        /* --no-huge is legacy memory, which --in-memory refuses; no shared
         * config files instead. */
        if ((rc = arg_add(a, "--no-huge")) < 0 || (rc = arg_add(a, "--no-shconf")) < 0)
            return rc;
    }
    if ((rc = arg_add(a, "-m")) < 0 || (rc = arg_add(a, "%u", mem)) < 0)
        return rc;
    eal_mem_mb = mem;
    if ((rc = fy_params_get(params, "lcores", buf, sizeof(buf))) < 0)
        return fy_error(FY_E_INVAL, "dpdk: lcores= is too long");
    if (rc == 1 && (rc = arg_add(a, "--lcores=%s", buf)) < 0)
        return rc;
    /* Only the named NIC: an EAL probing every vfio-pci device would take
     * NICs another agent on this host uses. */
    if (pci) {
        if ((rc = arg_add(a, "-a")) < 0 || (rc = arg_add(a, "%s", pci)) < 0)
            return rc;
    } else if ((rc = arg_add(a, "--no-pci")) < 0) {
        return rc;
    }
    /* Warnings and errors only; memif's warning that it cannot serve
     * secondary processes (there are none: no shared config) is noise. */
    if ((rc = arg_add(a, "--no-telemetry")) < 0 || (rc = arg_add(a, "--log-level=5")) < 0 ||
        (rc = arg_add(a, "--log-level=pmd.net.memif:4")) < 0 ||
        (rc = arg_add(a, "--log-level=lib.eal:4")) < 0)
        return rc;
    /* Extra arguments last, so they can override the above. */
    if ((rc = fy_params_get(params, "eal", buf, sizeof(buf))) < 0)
        return fy_error(FY_E_INVAL, "dpdk: eal= is longer than %zu characters",
                        sizeof(buf) - 1);
    if (rc == 1) {
        char *save = NULL;
        for (char *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save))
            if ((rc = arg_add(a, "%s", t)) < 0)
                return rc;
    }
    return 0;
}

/* Sets up the EAL the first time; later calls return its first result. */
static int eal_init(const char *params, const char *pci)
{
    struct argv_buf a = {0};
    cpu_set_t cpus;
    bool have_cpus;
    int rc;

    pthread_mutex_lock(&eal_lock);
    if (eal_state <= 0) {
        rc = eal_state;
        if (rc < 0)
            fy_error(-rc, "%s", eal_failure);
        goto out;
    }
    if ((rc = eal_args(params, pci, &a)) < 0)
        goto out; /* nothing tried yet: a later port may fix its params */
    /* EAL logs to stdout by default, which is where ferry-perf --json
     * writes. */
    rte_openlog_stream(stderr);
    /* rte_eal_init pins the calling thread to the main lcore, and every
     * thread it creates later would inherit that: Ferry runs its own
     * threads, so it keeps the affinity it had. */
    have_cpus = pthread_getaffinity_np(pthread_self(), sizeof(cpus), &cpus) == 0;
    if (rte_eal_init(a.argc, a.argv) < 0) {
        int e = rte_errno;
        char line[1024] = "";
        for (int i = 1; i < a.argc; i++)
            snprintf(line + strlen(line), sizeof(line) - strlen(line), " %s", a.argv[i]);
        snprintf(eal_failure, sizeof(eal_failure),
                 "dpdk: the EAL did not start (%s) with:%s; the EAL: lines above say "
                 "why", rte_strerror(e), line);
        rc = eal_state = fy_error(e == EALREADY ? FY_E_BUSY : FY_E_IO, "%s", eal_failure);
        goto out;
    }
    if (have_cpus)
        pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);
    /* With no shared config the run directory stays empty: do not leave one
     * behind per process. */
    rmdir(rte_eal_get_runtime_dir());
    /* Once per process, for the logs: which memory it got, and why. */
    fprintf(stderr, "dpdk: EAL up (%s, %s)\n", eal_memory, a.argv[1]);
    rc = eal_state = 0;
out:
    pthread_mutex_unlock(&eal_lock);
    return rc;
}

/* Threads the core creates are not EAL threads; registering them gives them
 * an lcore id and so a mempool cache.  Undone when the thread exits. */
static pthread_key_t lcore_key;
static pthread_once_t lcore_once = PTHREAD_ONCE_INIT;
static __thread bool lcore_tried;

static void lcore_release(void *arg)
{
    (void)arg;
    rte_thread_unregister();
}

static void lcore_key_init(void)
{
    pthread_key_create(&lcore_key, lcore_release);
}

static inline void lcore_register(void)
{
    if (likely(lcore_tried))
        return;
    lcore_tried = true;
    if (rte_lcore_id() != LCORE_ID_ANY)
        return;
    pthread_once(&lcore_once, lcore_key_init);
    /* Out of lcore ids, the thread still works, without a cache. */
    if (rte_thread_register() == 0)
        pthread_setspecific(lcore_key, (void *)1);
}

/* ---- opening a port -------------------------------------------------------- */

/* "net_memif, net_af_packet, ..." of the net PMDs this DPDK can load. */
static void known_vdevs(char *buf, size_t cap)
{
    DIR *d = opendir(RTE_EAL_PMD_PATH);
    struct dirent *e;
    size_t used = 0;

    buf[0] = '\0';
    if (!d)
        return;
    while ((e = readdir(d))) {
        static const char *const vdevs[] = {"memif", "af_xdp", "af_packet", "ring",
                                            "null", "pcap", "tap", "vhost"};
        for (size_t i = 0; i < sizeof(vdevs) / sizeof(vdevs[0]); i++) {
            char file[64];
            snprintf(file, sizeof(file), "librte_net_%s.so", vdevs[i]);
            if (!strcmp(e->d_name, file) && used < cap)
                used += (size_t)snprintf(buf + used, cap - used, "%snet_%s",
                                         used ? ", " : "", vdevs[i]);
        }
    }
    closedir(d);
}

/* The value of 'key' in a vdev's ",key=value" arguments, or "". */
static void devarg(const char *dev, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    const char *p = strchr(dev, ',');

    out[0] = '\0';
    while (p) {
        p++;
        if (!strncmp(p, key, kl) && p[kl] == '=') {
            size_t n = strcspn(p + kl + 1, ",");
            if (n >= cap)
                n = cap - 1;
            memcpy(out, p + kl + 1, n);
            out[n] = '\0';
            return;
        }
        p = strchr(p, ',');
    }
}

/* Creates the vdev 'dev' ("net_memif0,socket=/run/x.sock") under a name of
 * its own (a process may open the same device twice: a listener and a
 * connecting session) and returns its port.  memif gets its role from
 * 'listener', a socket file instead of an abstract name, and buffers that
 * hold a whole frame. */
static int vdev_open(struct fy_pktio *io, const char *dev, bool listener,
                     uint16_t frame, uint16_t *port)
{
    char driver[64], args[1024], sock[256];
    const char *comma = strchr(dev, ',');
    size_t dl = comma ? (size_t)(comma - dev) : strlen(dev);
    bool memif;
    int rc;

    if (dl == 0 || dl >= sizeof(driver))
        return fy_error(FY_E_INVAL, "dpdk: dev=%s: expected a vdev name such as "
                        "net_memif0,socket=/run/ferry/memif.sock", dev);
    memcpy(driver, dev, dl);
    driver[dl] = '\0';
    /* net_memif0 -> net_memif: the device number is ours to choose. */
    while (dl > 0 && isdigit((unsigned char)driver[dl - 1]))
        driver[--dl] = '\0';
    memif = !strcmp(driver, "net_memif");
    snprintf(args, sizeof(args), "%s", comma ? comma + 1 : "");
    if (memif) {
        char role[16], abstract[8];
        struct stat st;

        devarg(dev, "socket", sock, sizeof(sock));
        devarg(dev, "role", role, sizeof(role));
        devarg(dev, "socket-abstract", abstract, sizeof(abstract));
        if (!sock[0])
            return fy_error(FY_E_INVAL, "dpdk: net_memif needs socket=PATH, the same "
                            "path on both sides, e.g. dev=net_memif0,socket=/run/ferry/"
                            "memif.sock");
        if (!role[0])
            snprintf(args + strlen(args), sizeof(args) - strlen(args), "%srole=%s",
                     args[0] ? "," : "", listener ? "server" : "client");
        else if (strcmp(role, listener ? "server" : "client"))
            return fy_error(FY_E_INVAL, "dpdk: memif role=%s on the %s side: the "
                            "listening side is the server, the connecting side the "
                            "client (leave role= out)",
                            role, listener ? "listening" : "connecting");
        if (!abstract[0])
            snprintf(args + strlen(args), sizeof(args) - strlen(args),
                     ",socket-abstract=no");
        if (strstr(args, "bsize=") == NULL)
            snprintf(args + strlen(args), sizeof(args) - strlen(args), ",bsize=%u",
                     (unsigned)frame);
        if (strcmp(abstract, "yes") && !listener && stat(sock, &st) < 0)
            return fy_error(FY_E_NOTFOUND, "dpdk: no memif server at %s (%s): start the "
                            "listening side first, with the same socket= path",
                            sock, strerror(errno));
        if (strcmp(abstract, "yes") && listener && stat(sock, &st) == 0 &&
            S_ISSOCK(st.st_mode))
            /* A server that died left its socket behind; DPDK would fail to
             * bind it. */
            unlink(sock);
    }
    pthread_mutex_lock(&eal_lock);
    snprintf(io->devname, sizeof(io->devname), "%s_fy%u", driver, vdev_seq++);
    pthread_mutex_unlock(&eal_lock);
    rc = rte_eal_hotplug_add("vdev", io->devname, args);
    if (rc != 0) {
        char known[256];
        known_vdevs(known, sizeof(known));
        return fy_error(FY_E_NOTFOUND, "dpdk: could not create the DPDK device %s "
                        "(as %s%s%s): no such PMD, or arguments it refuses (see the "
                        "EAL lines above); this DPDK has %s",
                        dev, io->devname, args[0] ? "," : "", args,
                        known[0] ? known : "no vdev PMDs in " RTE_EAL_PMD_PATH);
    }
    io->vdev = true;
    if (rte_eth_dev_get_port_by_name(io->devname, port) != 0) {
        rte_eal_hotplug_remove("vdev", io->devname);
        io->vdev = false;
        return fy_error(FY_E_UNSUPPORTED, "dpdk: device %s is not an Ethernet port",
                        dev);
    }
    return 0;
}

static int pci_open(struct fy_pktio *io, const char *pci, uint16_t *port)
{
    int rc;

    snprintf(io->devname, sizeof(io->devname), "%s", pci);
    if (rte_eth_dev_get_port_by_name(pci, port) == 0)
        return 0;
    /* Not probed at EAL start (another address came first): probe now. */
    if ((rc = rte_dev_probe(pci)) < 0 || rte_eth_dev_get_port_by_name(pci, port) != 0)
        return fy_error(FY_E_NOTFOUND, "dpdk: no DPDK port for PCI device %s (%s): bind "
                        "it to vfio-pci first (dpdk-devbind.py --bind=vfio-pci %s, "
                        "docs/transports.md)", pci, rte_strerror(rc < 0 ? -rc : ENODEV),
                        pci);
    return 0;
}

static int pools_create(struct fy_pktio *io, unsigned nmbufs)
{
    char name[RTE_MEMPOOL_NAMESIZE];
    unsigned cache = nmbufs >= 4096 ? 256 : 32;
    /* 64 bytes more than a frame: memif then packs a chained frame (header
     * + external buffer) into one of its 'room'-byte buffers, so the peer
     * receives it in one mbuf instead of two. */
    uint32_t room = (uint32_t)io->room + 64 + RTE_PKTMBUF_HEADROOM;

    snprintf(name, sizeof(name), "fy%u_pkt", io->port);
    io->pool = rte_pktmbuf_pool_create(name, nmbufs, cache, PRIV_SIZE, (uint16_t)room,
                                       (int)rte_eth_dev_socket_id(io->port) < 0
                                           ? SOCKET_ID_ANY
                                           : rte_eth_dev_socket_id(io->port));
    if (!io->pool)
        return fy_error(FY_E_NOMEM, "dpdk: no memory for %u mbufs of %u bytes (%s): "
                        "give the EAL more with mem=MB or fewer with mbufs=N",
                        nmbufs, room, rte_strerror(rte_errno));
    if (!io->extbuf)
        return 0;
    snprintf(name, sizeof(name), "fy%u_ext", io->port);
    io->ext_pool = rte_pktmbuf_pool_create(name, nmbufs, cache, 0, 0, SOCKET_ID_ANY);
    if (!io->ext_pool)
        return fy_error(FY_E_NOMEM, "dpdk: no memory for %u external-buffer mbufs "
                        "(%s): give the EAL more with mem=MB", nmbufs,
                        rte_strerror(rte_errno));
    return 0;
}

/* Waits up to 'ms' for the port's link to be 'up' (or down). */
static void wait_link(uint16_t port, bool up, int ms)
{
    struct rte_eth_link link;

    for (int waited = 0; waited < ms; waited += 5) {
        memset(&link, 0, sizeof(link));
        if (rte_eth_link_get_nowait(port, &link) == 0 && (bool)link.link_status == up)
            return;
        usleep(5000);
    }
}

static void dpdk_close(struct fy_pktio *io);

static int dpdk_open(const char *params, unsigned queues, bool listener,
                     struct fy_pktio **out)
{
    struct rte_eth_dev_info di;
    struct rte_eth_conf conf = {0};
    struct rte_ether_addr mac;
    char dev[512], pci[64];
    unsigned mtu = DEFAULT_MTU, rxd = DEFAULT_DESC, txd = DEFAULT_DESC, nmbufs = 0;
    int extbuf = -1, rc, found;
    struct fy_pktio *io;
    bool memif = false, af_packet = false;

    if (!out)
        return fy_error(FY_E_INVAL, "dpdk: open without an output");
    *out = NULL;
    if (!params)
        params = "";
    if ((found = fy_params_get(params, "dev", dev, sizeof(dev))) == 0)
        found = fy_params_get(params, "vdev", dev, sizeof(dev));
    if (found < 0)
        return fy_error(FY_E_INVAL, "dpdk: dev= is longer than %zu characters",
                        sizeof(dev) - 1);
    if ((rc = fy_params_get(params, "pci", pci, sizeof(pci))) < 0)
        return fy_error(FY_E_INVAL, "dpdk: pci= is too long");
    if (rc == 0 && found == 1 && looks_pci(dev) && strlen(dev) < sizeof(pci)) {
        memcpy(pci, dev, strlen(dev) + 1);
        found = 0, rc = 1;
    }
    if ((rc == 1) == (found == 1))
        return fy_error(FY_E_INVAL, "dpdk: name one port: dev=VDEV (e.g. "
                        "dev=net_memif0,socket=/run/ferry/memif.sock) or pci=BDF (a NIC "
                        "bound to vfio-pci)%s",
                        rc == 1 ? ", not both" : "");
    if (rc == 1 && !looks_pci(pci))
        return fy_error(FY_E_INVAL, "dpdk: pci=%s is not a PCI address such as "
                        "0000:03:00.0", pci);
    if (found == 1) {
        memif = !strncmp(dev, "net_memif", 9);
        af_packet = !strncmp(dev, "net_af_packet", 13);
    }
    if (queues < 1)
        queues = 1;
    /* queues= is the core's: it passes it as 'queues'. */
    if ((rc = param_uint(params, "mtu", 576, 9600, &mtu)) < 0 ||
        (rc = param_uint(params, "rxd", 64, 16384, &rxd)) < 0 ||
        (rc = param_uint(params, "txd", 64, 16384, &txd)) < 0 ||
        (rc = param_uint(params, "mbufs", 1024, 1u << 22, &nmbufs)) < 0 ||
        (rc = param_tristate(params, "extbuf", &extbuf)) < 0)
        return rc;
    if (queues > MAX_QUEUES)
        queues = MAX_QUEUES;
    if ((rc = eal_init(params, found == 1 ? NULL : pci)) < 0)
        return rc;
    if (!(io = calloc(1, sizeof(*io))))
        return fy_error(FY_E_NOMEM, "dpdk: no memory for a port");
    io->port = RTE_MAX_ETHPORTS;
    /* An mbuf holds a whole frame: the core never sees chained received
     * frames.  memif buffers are sized to match. */
    io->room = (uint16_t)RTE_ALIGN_CEIL(mtu + FRAME_OVERHEAD, 64);
    if (found == 1)
        rc = vdev_open(io, dev, listener, io->room, &io->port);
    else
        rc = pci_open(io, pci, &io->port);
    if (rc < 0)
        goto fail;
    if ((rc = rte_eth_dev_info_get(io->port, &di)) != 0) {
        rc = fy_error(FY_E_IO, "dpdk: %s: no device info (%s)", io->devname,
                      rte_strerror(-rc));
        goto fail;
    }
    if (queues > di.max_rx_queues)
        queues = di.max_rx_queues;
    if (queues > di.max_tx_queues)
        queues = di.max_tx_queues;
    if (queues < 1) {
        rc = fy_error(FY_E_UNSUPPORTED, "dpdk: %s has no rx/tx queue pairs",
                      io->devname);
        goto fail;
    }
    io->queues = queues;

    /* The MTU: the largest the port allows, up to mtu= (9000).  Two vdevs
     * carry more than their ethdev's generic 1518-byte frame limit says,
     * and are configured at 1500 while carrying more:
     *   memif has no wire: frames of any length travel in its shared rings
     *   (chained descriptors), and the peer is another Ferry;
     *   af_packet carries what its ring frames (framesz=) and the kernel
     *   interface's MTU allow. */
    if (memif) {
        /* as asked */
    } else if (af_packet) {
        char v[32], iface[64], path[128];
        unsigned framesz = 2048, ifmtu = 1500;
        devarg(dev, "framesz", v, sizeof(v));
        if (v[0])
            framesz = (unsigned)strtoul(v, NULL, 10);
        devarg(dev, "iface", iface, sizeof(iface));
        snprintf(path, sizeof(path), "/sys/class/net/%s/mtu", iface);
        FILE *f = fopen(path, "r");
        if (f) {
            if (fscanf(f, "%u", &ifmtu) != 1)
                ifmtu = 1500;
            fclose(f);
        }
        /* Its ring frame holds a header and the sender's address before
         * the packet. */
        if (framesz > AF_PACKET_FRAME_HDR + FRAME_OVERHEAD && mtu > framesz -
            AF_PACKET_FRAME_HDR - FRAME_OVERHEAD)
            mtu = framesz - AF_PACKET_FRAME_HDR - FRAME_OVERHEAD;
        if (mtu > ifmtu)
            mtu = ifmtu;
        /* Its receive queues want an mbuf that holds a whole ring frame. */
        io->room = (uint16_t)RTE_ALIGN_CEIL(framesz > mtu + FRAME_OVERHEAD
                                                ? framesz : mtu + FRAME_OVERHEAD, 64);
    } else {
        uint32_t max = di.max_mtu;
        if (di.max_rx_pktlen > RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN &&
            di.max_rx_pktlen - RTE_ETHER_HDR_LEN - RTE_ETHER_CRC_LEN < max)
            max = di.max_rx_pktlen - RTE_ETHER_HDR_LEN - RTE_ETHER_CRC_LEN;
        if (mtu > max)
            mtu = max;
        conf.rxmode.mtu = mtu;
        io->room = (uint16_t)RTE_ALIGN_CEIL(mtu + FRAME_OVERHEAD, 64);
    }
    io->mtu = (uint16_t)mtu;
    /* Zero-copy transmit needs chained mbufs, read by the CPU (see the top
     * of this file). */
    if (extbuf == -1)
        io->extbuf = found == 1 && (di.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MULTI_SEGS);
    else if (extbuf == 1 && found != 1) {
        rc = fy_error(FY_E_UNSUPPORTED, "dpdk: extbuf=on is not supported for PCI NICs "
                      "yet (guest memory is not DMA-mapped for the device): use "
                      "extbuf=auto or off");
        goto fail;
    } else if (extbuf == 1 && !(di.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MULTI_SEGS)) {
        rc = fy_error(FY_E_UNSUPPORTED, "dpdk: extbuf=on, but %s cannot send chained "
                      "mbufs (no MULTI_SEGS): use extbuf=off or auto", io->devname);
        goto fail;
    } else
        io->extbuf = extbuf == 1;
    if (io->extbuf)
        conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
    if (queues > 1 && !memif && (di.flow_type_rss_offloads & RTE_ETH_RSS_UDP)) {
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_hf = di.flow_type_rss_offloads &
                                           (RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP);
    }
    if ((rc = rte_eth_dev_configure(io->port, (uint16_t)queues, (uint16_t)queues,
                                    &conf)) != 0) {
        rc = fy_error(FY_E_IO, "dpdk: %s refuses %u queue pairs with MTU %u (%s)",
                      io->devname, queues, conf.rxmode.mtu ? conf.rxmode.mtu : 1500,
                      rte_strerror(-rc));
        goto fail;
    }
    {
        uint16_t r = (uint16_t)rxd, t = (uint16_t)txd;
        rte_eth_dev_adjust_nb_rx_tx_desc(io->port, &r, &t);
        rxd = r, txd = t;
    }
    if (!nmbufs) {
        /* The rings, and the core's windows (2 x 512 frames per stream and
         * direction at its defaults) for a few streams; but no more than
         * half the EAL's memory, which other ports of the process share. */
        uint64_t per = sizeof(struct rte_mbuf) * 2 + PRIV_SIZE + io->room + 64 +
                       RTE_PKTMBUF_HEADROOM + 64;
        uint64_t fit = ((uint64_t)eal_mem_mb << 20) / 2 / per;
        nmbufs = queues * (rxd + txd) + 8192;
        if (nmbufs > fit)
            nmbufs = fit > 2048 ? (unsigned)fit : 2048;
    }
    if ((rc = pools_create(io, nmbufs)) < 0)
        goto fail;
    int sock = rte_eth_dev_socket_id(io->port);
    unsigned sid = sock < 0 ? (unsigned)SOCKET_ID_ANY : (unsigned)sock;
    for (unsigned q = 0; q < queues; q++) {
        if ((rc = rte_eth_rx_queue_setup(io->port, (uint16_t)q, (uint16_t)rxd,
                                         sid, NULL, io->pool)) != 0 ||
            (rc = rte_eth_tx_queue_setup(io->port, (uint16_t)q, (uint16_t)txd,
                                         sid, NULL)) != 0) {
            rc = fy_error(FY_E_IO, "dpdk: %s: queue %u setup failed (%s)", io->devname,
                          q, rte_strerror(-rc));
            goto fail;
        }
    }
    if ((rc = rte_eth_dev_start(io->port)) != 0) {
        rc = fy_error(FY_E_IO, "dpdk: %s did not start (%s)%s", io->devname,
                      rte_strerror(-rc),
                      memif && !listener ? ": is the listening side's memif server up?"
                                         : "");
        goto fail;
    }
    io->started = true;
    /* Configuring records the MTU; some PMDs apply it only here.  Whatever
     * took, is the MTU. */
    if (conf.rxmode.mtu) {
        uint16_t m = io->mtu;
        if (rte_eth_dev_set_mtu(io->port, io->mtu) != 0 &&
            rte_eth_dev_get_mtu(io->port, &m) == 0 && m < io->mtu)
            io->mtu = m;
    }
    /* Frames go to the peer's MAC, which the core learns; a NIC in
     * promiscuous mode would hand it everyone else's traffic too. */
    if (memif && !listener)
        wait_link(io->port, true, LINK_WAIT_MS);
    io->memif_server = memif && listener;

    rte_eth_macaddr_get(io->port, &mac);
    memcpy(io->info.mac, mac.addr_bytes, 6);
    io->info.mtu = io->mtu;
    io->info.queues = io->queues;
    io->info.extbuf = io->extbuf;
    io->info.ipv4 = 0;
    {
        char head[64];
        snprintf(head, sizeof(head), "%u queue%s, MTU %u, ", io->queues,
                 io->queues == 1 ? "" : "s", io->mtu);
        /* Said to the user as is; a cut-off tail is acceptable. */
        str_append(io->info.mode, sizeof(io->info.mode),
                   di.driver_name ? di.driver_name : "?");
        str_append(io->info.mode, sizeof(io->info.mode),
                   memif ? (listener ? " server, " : " client, ") : ", ");
        str_append(io->info.mode, sizeof(io->info.mode), head);
        str_append(io->info.mode, sizeof(io->info.mode), eal_memory_short);
        if (io->extbuf)
            str_append(io->info.mode, sizeof(io->info.mode), ", extbuf");
    }
    *out = io;
    return 0;
fail:
    dpdk_close(io);
    return rc;
}

static void dpdk_close(struct fy_pktio *io)
{
    if (!io)
        return;
    if (io->port < RTE_MAX_ETHPORTS) {
        /* memif's control thread tears the link down when the peer leaves;
         * a stop at the same moment frees the shared regions twice (DPDK
         * 22.11: "EAL: Error: Invalid memory").  The server lets its client
         * leave first. */
        if (io->started && io->memif_server) {
            wait_link(io->port, false, MEMIF_LEAVE_MS);
            /* The link reads down at the start of that teardown: let it
             * end. */
            usleep(50000);
        }
        if (io->started)
            rte_eth_dev_stop(io->port);
        rte_eth_dev_close(io->port);
    }
    if (io->vdev)
        rte_eal_hotplug_remove("vdev", io->devname);
    /* Every mbuf is back: the core freed its packets, close the PMD's. */
    rte_mempool_free(io->pool);
    rte_mempool_free(io->ext_pool);
    free(io);
}

static void dpdk_info(struct fy_pktio *io, struct fy_pktio_info *out)
{
    *out = io->info;
}

/* ---- the hot path ------------------------------------------------------------ */

static inline struct dpdk_priv *priv_of(struct rte_mbuf *m)
{
    return (struct dpdk_priv *)rte_mbuf_to_priv(m);
}

static inline struct rte_mbuf *mbuf_of(struct fy_pkt *p)
{
    return (struct rte_mbuf *)((char *)p - sizeof(struct rte_mbuf));
}

static inline struct fy_pkt *pkt_init(struct rte_mbuf *m, uint16_t room)
{
    struct dpdk_priv *pv = priv_of(m);

    pv->pkt.data = rte_pktmbuf_mtod(m, uint8_t *);
    pv->pkt.len = (uint16_t)rte_pktmbuf_data_len(m);
    pv->pkt.room = room;
    pv->pkt.queue = 0;
    pv->pkt.ext = NULL;
    pv->pkt.ext_len = 0;
    return &pv->pkt;
}

static int dpdk_alloc(struct fy_pktio *io, unsigned queue, struct fy_pkt **pkts,
                      unsigned n)
{
    struct rte_mbuf *m[BURST];
    unsigned done = 0;

    (void)queue;
    lcore_register();
    while (done < n) {
        unsigned k = n - done < BURST ? n - done : BURST;
        if (rte_pktmbuf_alloc_bulk(io->pool, m, k) != 0) {
            /* Fewer than k left: take what there is, one by one. */
            for (k = 0; k < BURST && done + k < n; k++)
                if (!(m[k] = rte_pktmbuf_alloc(io->pool)))
                    break;
            if (k == 0)
                break;
        }
        for (unsigned i = 0; i < k; i++)
            pkts[done + i] = pkt_init(m[i], io->room);
        done += k;
    }
    return (int)done;
}

/* The no-op free callback of an external buffer: the core owns that memory
 * and keeps it valid until it frees the packet. */
static void ext_free_cb(void *addr, void *opaque)
{
    (void)addr;
    (void)opaque;
}

/* Makes mbuf 'm' carry pkt's frame: data[0..len) and, for zero-copy, a
 * second segment over ext.  A packet sent again keeps its segment. */
static inline int frame_prepare(struct fy_pktio *io, struct rte_mbuf *m,
                                struct dpdk_priv *pv)
{
    struct rte_mbuf *e = m->next;

    m->data_len = pv->pkt.len;
    if (!pv->pkt.ext || !pv->pkt.ext_len) {
        if (unlikely(e != NULL)) {
            m->next = NULL;
            m->nb_segs = 1;
            rte_pktmbuf_free(e);
        }
        m->pkt_len = pv->pkt.len;
        return 0;
    }
    if (!e) {
        if (unlikely(!io->ext_pool))
            return -1;
        if (!(e = rte_pktmbuf_alloc(io->ext_pool)))
            return -1;
        pv->shinfo.free_cb = ext_free_cb;
        pv->shinfo.fcb_opaque = NULL;
        rte_mbuf_ext_refcnt_set(&pv->shinfo, 1);
        /* Read by the CPU only (see the top): the IOVA is not used. */
        rte_pktmbuf_attach_extbuf(e, (void *)(uintptr_t)pv->pkt.ext,
                                  (rte_iova_t)(uintptr_t)pv->pkt.ext, pv->pkt.ext_len,
                                  &pv->shinfo);
        e->data_len = pv->pkt.ext_len;
        e->pkt_len = pv->pkt.ext_len;
        m->next = e;
        m->nb_segs = 2;
    } else if (unlikely(e->buf_addr != pv->pkt.ext || e->buf_len != pv->pkt.ext_len)) {
        /* Not expected: the core resends packets unchanged. */
        e->buf_addr = (void *)(uintptr_t)pv->pkt.ext;
        e->buf_len = pv->pkt.ext_len;
        e->data_len = pv->pkt.ext_len;
    }
    m->pkt_len = (uint32_t)pv->pkt.len + pv->pkt.ext_len;
    return 0;
}

static inline void ref_chain(struct rte_mbuf *m, int16_t v)
{
    for (; m; m = m->next)
        rte_mbuf_refcnt_update(m, v);
}

static int dpdk_tx(struct fy_pktio *io, unsigned queue, struct fy_pkt **pkts,
                   unsigned n)
{
    struct rte_mbuf *m[BURST];
    unsigned sent = 0;

    lcore_register();
    if (unlikely(queue >= io->queues))
        queue %= io->queues;
    while (sent < n) {
        unsigned k = n - sent < BURST ? n - sent : BURST, prepared = 0, took;
        for (; prepared < k; prepared++) {
            struct rte_mbuf *mb = mbuf_of(pkts[sent + prepared]);
            if (frame_prepare(io, mb, priv_of(mb)) < 0)
                break;
            /* The NIC's reference: the core keeps its own to resend. */
            ref_chain(mb, 1);
            m[prepared] = mb;
        }
        took = prepared ? rte_eth_tx_burst(io->port, (uint16_t)queue, m,
                                           (uint16_t)prepared)
                        : 0;
        for (unsigned i = took; i < prepared; i++)
            ref_chain(m[i], -1);
        sent += took;
        if (took < k)
            break;
    }
    return (int)sent;
}

static int dpdk_rx(struct fy_pktio *io, unsigned queue, struct fy_pkt **pkts,
                   unsigned max)
{
    struct rte_mbuf *m[BURST];
    unsigned got = 0;

    lcore_register();
    if (unlikely(queue >= io->queues))
        return 0;
    if (max > BURST)
        max = BURST;
    unsigned n = rte_eth_rx_burst(io->port, (uint16_t)queue, m, (uint16_t)max);
    for (unsigned i = 0; i < n; i++) {
        struct fy_pkt *p;
        /* The core reads frames whole; a PMD that chained one (a jumbo
         * frame into small buffers) has it copied together, or dropped. */
        if (unlikely(m[i]->nb_segs > 1) && rte_pktmbuf_linearize(m[i]) != 0) {
            rte_pktmbuf_free(m[i]);
            continue;
        }
        p = pkt_init(m[i], io->room);
        p->queue = (uint16_t)queue;
        pkts[got++] = p;
    }
    return (int)got;
}

static void dpdk_free(struct fy_pktio *io, struct fy_pkt **pkts, unsigned n)
{
    (void)io;
    lcore_register();
    for (unsigned i = 0; i < n; i++)
        rte_pktmbuf_free(mbuf_of(pkts[i]));
}

const struct fy_pktio_ops fy_pktio_dpdk = {
    .name = "dpdk",
    .open = dpdk_open,
    .add_port = NULL,
    .close = dpdk_close,
    .info = dpdk_info,
    .alloc = dpdk_alloc,
    .tx = dpdk_tx,
    .rx = dpdk_rx,
    .free = dpdk_free,
    /* memif and af_packet copy the frame inside tx(); PCI ports, whose NIC
     * would read it later, do not use external buffers. */
    .busy = NULL,
};

/* ---- the transport ------------------------------------------------------------ */

static int dpdk_listen(const char *addr, const struct fy_transport_opts *o,
                       struct fy_listener **out)
{
    return fy_pkt_listen(&fy_pktio_dpdk, &fy_transport_dpdk, addr, o, out);
}

static int dpdk_connect(const char *addr, const struct fy_transport_opts *o,
                        const struct fy_session_info *info, struct fy_session **out)
{
    return fy_pkt_connect(&fy_pktio_dpdk, &fy_transport_dpdk, addr, o, info, out);
}

const struct fy_transport_ops fy_transport_dpdk = {
    .abi = FY_TRANSPORT_ABI,
    .name = "dpdk",
    .description = "Ferry's reliable frames over a DPDK port (net_memif, "
                   "net_af_xdp, net_af_packet, vfio-pci NICs)",
    .data_max = FY_DATA_MAX,
    .listen = dpdk_listen,
    .accept = fy_pkt_accept,
    .listener_close = fy_pkt_listener_close,
    .listener_shutdown = fy_pkt_listener_shutdown,
    .connect = dpdk_connect,
    .shutdown = fy_pkt_shutdown,
    .close = fy_pkt_close,
};
