/* The lossy wire of the XDP tests: a tc program on the ingress of two
 * interfaces of a "wire" namespace that forwards every frame to the other
 * one, dropping, duplicating or holding back a set share of them on the
 * way.
 *
 * It stands in for tc netem, which this kernel lacks and which could not
 * touch AF_XDP traffic anyway: AF_XDP transmits bypass the sender's qdiscs
 * and XDP runs before the receiver's, so the impairment has to sit on a
 * hop in between.  A frame held back goes out through a "hold" veth
 * instead; lossy_link.c reads it from the other end, keeps it for a while
 * and sends it on, after frames that came later: reordered.  ARP passes
 * untouched so neighbours resolve.
 *
 * Loaded by lossy_link.c, which fills in lossy_cfg. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Filled in by lossy_link.c before it attaches the program. */
struct lossy_cfg {
    __u32 if_a, if_b;    /* the two interfaces */
    __u32 drop_ppm;      /* shares in parts per million */
    __u32 dup_ppm;
    __u32 reorder_ppm;
    __u32 hold_a;        /* frames from if_a held back go here, 0: none */
    __u32 hold_b;        /* frames from if_b held back go here */
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct lossy_cfg);
} lossy_cfg SEC(".maps");

/* [0] forwarded at once, [1] dropped, [2] duplicated, [3] held back. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 4);
    __type(key, __u32);
    __type(value, __u64);
} lossy_stats SEC(".maps");

static __always_inline void count(__u32 k)
{
    __u64 *n = bpf_map_lookup_elem(&lossy_stats, &k);

    if (n)
        *n += 1;
}

static __always_inline int chance(__u32 ppm)
{
    return ppm && bpf_get_prandom_u32() % 1000000 < ppm;
}

SEC("tc")
int lossy_link(struct __sk_buff *skb)
{
    __u32 k = 0, out, hold;
    struct lossy_cfg *c = bpf_map_lookup_elem(&lossy_cfg, &k);

    if (!c)
        return TC_ACT_SHOT;
    out = skb->ifindex == c->if_a ? c->if_b : c->if_a;
    hold = skb->ifindex == c->if_a ? c->hold_a : c->hold_b;
    if (skb->protocol != bpf_htons(ETH_P_ARP)) {
        if (chance(c->drop_ppm)) {
            count(1);
            return TC_ACT_SHOT;
        }
        if (chance(c->dup_ppm)) {
            bpf_clone_redirect(skb, out, 0);
            count(2);
        }
        if (hold && chance(c->reorder_ppm)) {
            count(3);
            return bpf_redirect(hold, 0);
        }
    }
    count(0);
    return bpf_redirect(out, 0);
}

char _license[] SEC("license") = "GPL";
