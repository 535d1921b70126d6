/* Ferry's XDP program: hands Ferry's UDP traffic to its AF_XDP sockets and
 * every other frame to the kernel.
 *
 * An IPv4 UDP datagram whose destination port is a key of fy_ports goes to
 * the AF_XDP socket of the queue it arrived on (fy_xsks, indexed by rx
 * queue); everything else (ARP, SSH, TCP, other UDP, IPv6, fragments,
 * VLAN-tagged frames) returns XDP_PASS, so management traffic on the same
 * NIC keeps working.  A frame for a queue without a socket also passes.
 *
 * Built with clang -O2 -target bpf by meson and embedded in libferry
 * (dataplane/transport/xdp.c loads it from memory); nothing is installed.
 * The program name, fy_xdp_redirect, is how a later process recognises a
 * program left behind by a crashed one. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Who attached the program (userspace writes it after loading): lets a
 * later process tell a live owner from a crashed one. */
struct fy_xdp_owner {
    __u32 pid;
    __u32 reserved;
    __u64 start_time; /* /proc/PID/stat field 22, clock ticks since boot */
};

struct {
    __uint(type, BPF_MAP_TYPE_XSKMAP);
    __uint(max_entries, 64);
    __type(key, __u32);
    __type(value, __u32);
} fy_xsks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, __u16);  /* UDP port, network order */
    __type(value, __u8); /* unused */
} fy_ports SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct fy_xdp_owner);
} fy_owner SEC(".maps");

/* [0]: frames redirected to a socket, [1]: frames passed to the kernel. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 2);
    __type(key, __u32);
    __type(value, __u64);
} fy_stats SEC(".maps");

static __always_inline int pass(void)
{
    __u32 k = 1;
    __u64 *n = bpf_map_lookup_elem(&fy_stats, &k);

    if (n)
        *n += 1;
    return XDP_PASS;
}

SEC("xdp")
int fy_xdp_redirect(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip;
    struct udphdr *udp;
    __u16 port;
    __u32 k = 0;
    __u64 *n;

    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
        return pass();
    ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end || ip->ihl < 5 || ip->protocol != IPPROTO_UDP)
        return pass();
    /* Fragments (offset or more-fragments set) go to the kernel: Ferry
     * never fragments, and only a first fragment has the UDP header. */
    if (ip->frag_off & bpf_htons(0x3fff))
        return pass();
    udp = (void *)ip + ip->ihl * 4;
    if ((void *)(udp + 1) > end)
        return pass();
    port = udp->dest;
    if (!bpf_map_lookup_elem(&fy_ports, &port))
        return pass();
    n = bpf_map_lookup_elem(&fy_stats, &k);
    if (n)
        *n += 1;
    /* XDP_PASS as the fallback: no socket on this queue (yet). */
    return bpf_redirect_map(&fy_xsks, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
