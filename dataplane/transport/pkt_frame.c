/* Packet transports: the frame layout (Ethernet, IPv4, UDP, Ferry packet
 * header, page and DATA fragment descriptor) and its checks, and the settings
 * parser.  docs/protocol.md, "Packet transports", is the specification.
 *
 * Parsing never trusts the frame: every length is checked against the
 * others and against the frame, so nothing is read outside it, and a
 * frame that fails any check is dropped by the caller (counted, never an
 * error of a session). */
#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sched.h>
#include <xxhash.h>

#include "dataplane/transport/pkt_internal.h"
#include "ferry/error.h"

/* ---- byte order ----------------------------------------------------------- */

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

uint16_t pkt_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4); /* x86 and arm64 Linux are little-endian */
}

static uint32_t get_le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "pkt_frame.c writes little-endian fields with memcpy");

/* ---- IPv4 checksum -------------------------------------------------------- */

static uint32_t sum16(const uint8_t *p, unsigned n, uint32_t sum)
{
    for (unsigned i = 0; i + 1 < n; i += 2)
        sum += get_be16(p + i);
    return sum;
}

static uint16_t fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* ---- Ferry header offsets (from its start) --------------------------------- */

#define FPH_HSUM 0
#define FPH_MAGIC 4
#define FPH_VERSION 6
#define FPH_TYPE 7
#define FPH_TAG 8
#define FPH_SRC_TAG 12
#define FPH_STREAM 16
#define FPH_FLAGS 18
#define FPH_SEQ 20
#define FPH_ACK 24
#define FPH_WINDOW 28
#define FPH_PLEN 30
#define FPH_SACK 32

static uint32_t fph_sum(const uint8_t *fph, unsigned covered)
{
    return (uint32_t)XXH3_64bits(fph + 4, PKT_FPH_LEN - 4 + covered);
}

/* ---- writing ------------------------------------------------------------ */

void pkt_tmpl_init(struct pkt_tmpl *t, const uint8_t src_mac[6],
                   const uint8_t dst_mac[6], uint32_t src_ip,
                   uint32_t dst_ip, uint16_t udp_port)
{
    uint8_t *e = t->bytes, *ip = e + PKT_ETH_LEN, *udp = ip + PKT_IP_LEN;

    memset(t, 0, sizeof(*t));
    memcpy(e, dst_mac, 6);
    memcpy(e + 6, src_mac, 6);
    put_be16(e + 12, 0x0800);
    ip[0] = 0x45;         /* IPv4, 20-byte header */
    put_be16(ip + 6, 0x4000); /* don't fragment */
    ip[8] = 64;           /* TTL */
    ip[9] = 17;           /* UDP */
    memcpy(ip + 12, &src_ip, 4);
    memcpy(ip + 16, &dst_ip, 4);
    put_be16(udp, udp_port);
    put_be16(udp + 2, udp_port);
    /* UDP checksum 0: none (the page hashes and v1 frame sums cover the
     * payload end to end, the header sum the Ferry header). */
    t->sum = sum16(ip, PKT_IP_LEN, 0);
}

void pkt_write_hdrs(uint8_t *frame, const struct pkt_tmpl *t,
                    const struct pkt_fph *f, unsigned covered)
{
    uint8_t *ip = frame + PKT_ETH_LEN, *udp = ip + PKT_IP_LEN;
    uint8_t *h = udp + PKT_UDP_LEN;
    uint16_t udp_len = (uint16_t)(PKT_UDP_LEN + PKT_FPH_LEN + f->plen);
    uint16_t ip_len = (uint16_t)(PKT_IP_LEN + udp_len);

    memcpy(frame, t->bytes, PKT_L2L4_LEN);
    put_be16(ip + 2, ip_len);
    put_be16(ip + 10, fold(t->sum + ip_len));
    put_be16(udp + 4, udp_len);
    h[FPH_MAGIC] = PKT_MAGIC0;
    h[FPH_MAGIC + 1] = PKT_MAGIC1;
    h[FPH_VERSION] = PKT_VERSION;
    h[FPH_TYPE] = f->type;
    put_le32(h + FPH_TAG, f->tag);
    put_le32(h + FPH_SRC_TAG, f->src_tag);
    put_le16(h + FPH_STREAM, f->stream);
    put_le16(h + FPH_FLAGS, f->flags);
    put_le32(h + FPH_SEQ, f->seq);
    put_le32(h + FPH_ACK, f->ack);
    put_le16(h + FPH_WINDOW, f->window);
    put_le16(h + FPH_PLEN, f->plen);
    put_le64(h + FPH_SACK, f->sack);
    put_le32(h + FPH_HSUM, fph_sum(h, covered));
}

void pkt_put_desc(uint8_t *p, const struct pkt_desc *d)
{
    put_le64(p, d->offset);
    put_le64(p + 8, d->hash.lo);
    put_le64(p + 16, d->hash.hi);
    put_le16(p + 24, d->frag_off);
    put_le16(p + 26, d->frag_len);
    put_le32(p + 28, d->total);
}

void pkt_get_desc(const uint8_t *p, struct pkt_desc *d)
{
    d->offset = get_le64(p);
    d->hash.lo = get_le64(p + 8);
    d->hash.hi = get_le64(p + 16);
    d->frag_off = pkt_le16(p + 24);
    d->frag_len = pkt_le16(p + 26);
    d->total = get_le32(p + 28);
}

void pkt_put_trailer(uint8_t *p, uint16_t mtu, uint16_t window)
{
    put_le16(p, mtu);
    put_le16(p + 2, window);
    put_le32(p + 4, 0);
}

void pkt_get_trailer(const uint8_t *p, uint16_t *mtu, uint16_t *window)
{
    *mtu = pkt_le16(p);
    *window = pkt_le16(p + 2);
}

/* ---- parsing ------------------------------------------------------------- */

/* The payload lengths a Ferry frame type allows. */
static bool plen_ok(unsigned type, unsigned plen)
{
    switch (type) {
    case PT_HELLO:
    case PT_HELLO_ACK:
        return plen == PKT_HELLO_PAYLOAD;
    case PT_REFUSE:
        return plen >= FY_FRAME_HDR_SIZE &&
               plen <= FY_FRAME_HDR_SIZE + FY_ERROR_MSG_MAX;
    case PT_OPS:
        return plen >= FY_FRAME_HDR_SIZE;
    case PT_PAGE:
        return plen > PKT_DESC_LEN && plen <= PKT_DESC_LEN + FY_PAGE_SIZE;
    case PT_DATA:
        return plen > PKT_DESC_LEN && plen <= PKT_DESC_LEN + FY_DATA_MAX;
    case PT_ACK:
        return plen <= PKT_SACK_EXT_MAX && plen % 8 == 0;
    case PT_FIN:
        return plen == 0;
    default:
        return false;
    }
}

int pkt_parse(const uint8_t *f, unsigned len, struct pkt_hdr *h)
{
    const uint8_t *ip = f + PKT_ETH_LEN, *udp = ip + PKT_IP_LEN;
    const uint8_t *fph = udp + PKT_UDP_LEN;
    unsigned ip_len, udp_len, plen, covered = 0;

    if (len < PKT_HDRS_LEN || get_be16(f + 12) != 0x0800)
        return -1;
    /* IPv4 without options, not a fragment, UDP, a valid checksum, and a
     * length the frame holds (Ethernet may pad short frames). */
    if (ip[0] != 0x45 || (get_be16(ip + 6) & 0x3fff) != 0 || ip[9] != 17)
        return -1;
    ip_len = get_be16(ip + 2);
    if (ip_len < PKT_IP_LEN + PKT_UDP_LEN + PKT_FPH_LEN ||
        ip_len > len - PKT_ETH_LEN)
        return -1;
    if (fold(sum16(ip, PKT_IP_LEN, 0)) != 0)
        return -1;
    udp_len = get_be16(udp + 4);
    if (udp_len != ip_len - PKT_IP_LEN)
        return -1;
    if (fph[FPH_MAGIC] != PKT_MAGIC0 || fph[FPH_MAGIC + 1] != PKT_MAGIC1 ||
        fph[FPH_VERSION] != PKT_VERSION)
        return -1;
    plen = pkt_le16(fph + FPH_PLEN);
    if (plen != udp_len - PKT_UDP_LEN - PKT_FPH_LEN || !plen_ok(fph[FPH_TYPE], plen))
        return -1;
    if (fph[FPH_TYPE] == PT_PAGE || fph[FPH_TYPE] == PT_DATA)
        covered = PKT_DESC_LEN;
    if (get_le32(fph + FPH_HSUM) != fph_sum(fph, covered))
        return -1;

    memcpy(h->src_mac, f + 6, 6);
    memcpy(&h->src_ip, ip + 12, 4);
    memcpy(&h->dst_ip, ip + 16, 4);
    h->dport = get_be16(udp + 2);
    h->type = fph[FPH_TYPE];
    h->flags = pkt_le16(fph + FPH_FLAGS);
    h->tag = get_le32(fph + FPH_TAG);
    h->src_tag = get_le32(fph + FPH_SRC_TAG);
    h->stream = pkt_le16(fph + FPH_STREAM);
    h->seq = get_le32(fph + FPH_SEQ);
    h->ack = get_le32(fph + FPH_ACK);
    h->window = pkt_le16(fph + FPH_WINDOW);
    h->sack = get_le64(fph + FPH_SACK);
    h->poff = (uint16_t)PKT_HDRS_LEN;
    h->plen = (uint16_t)plen;
    if (h->flags & ~PKT_F_PROBE)
        return -1;
    if ((h->type == PT_HELLO) != (h->tag == 0))
        return -1;
    if (h->type == PT_PAGE) {
        struct pkt_desc d;
        pkt_get_desc(fph + PKT_FPH_LEN, &d);
        if (d.frag_len != plen - PKT_DESC_LEN ||
            (unsigned)d.frag_off + d.frag_len > FY_PAGE_SIZE ||
            d.offset % FY_PAGE_SIZE || d.total != 0)
            return -1;
    }
    if (h->type == PT_DATA) {
        /* The tag is the application's: any value (no alignment or region
         * rule).  The bytes stay inside the operation's total, which
         * stays inside what a DATA operation carries. */
        struct pkt_desc d;
        pkt_get_desc(fph + PKT_FPH_LEN, &d);
        if (d.frag_len != plen - PKT_DESC_LEN || d.total > FY_DATA_MAX ||
            (uint32_t)d.frag_off + d.frag_len > d.total)
            return -1;
    }
    return 0;
}

/* ---- waiting ------------------------------------------------------------- */

void pkt_backoff_wait(struct pkt_backoff *b)
{
    uint64_t now = pkt_now();

    if (!b->start)
        b->start = now;
    if (now - b->start < BACKOFF_SPIN_NS) {
        /* Another thread of this process may be the one to make progress
         * (both ends share 2 CPUs in tests): let it run. */
        sched_yield();
        return;
    }
    b->sleep = b->sleep ? b->sleep * 2 : BACKOFF_SLEEP0_NS;
    if (b->sleep > BACKOFF_SLEEP_MAX_NS)
        b->sleep = BACKOFF_SLEEP_MAX_NS;
    struct timespec ts = {0, (long)b->sleep};
    nanosleep(&ts, NULL);
}

/* ---- settings ------------------------------------------------------------ */

int fy_params_get(const char *params, const char *key, char *buf, size_t cap)
{
    size_t klen = key ? strlen(key) : 0;
    const char *p = params;

    if (!params || !key || !klen)
        return 0;
    while (*p) {
        const char *end = strchr(p, ';');
        const char *stop = end ? end : p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *k = p, *kend = eq ? eq : stop;

        while (k < kend && isspace((unsigned char)*k))
            k++;
        while (kend > k && isspace((unsigned char)kend[-1]))
            kend--;
        if (eq && (size_t)(kend - k) == klen && memcmp(k, key, klen) == 0) {
            const char *v = eq + 1, *vend = stop;
            while (v < vend && isspace((unsigned char)*v))
                v++;
            while (vend > v && isspace((unsigned char)vend[-1]))
                vend--;
            if ((size_t)(vend - v) + 1 > cap)
                return fy_error(FY_E_INVAL,
                                "setting %s: value of %zu bytes, at most %zu",
                                key, (size_t)(vend - v), cap ? cap - 1 : 0);
            memcpy(buf, v, (size_t)(vend - v));
            buf[vend - v] = '\0';
            return 1;
        }
        if (!end)
            break;
        p = end + 1;
    }
    return 0;
}

int fy_params_get_uint(const char *params, const char *key, uint64_t min,
                       uint64_t max, uint64_t *out)
{
    char buf[32], *end;
    unsigned long long v;
    int rc = fy_params_get(params, key, buf, sizeof(buf));

    if (rc <= 0)
        return rc < 0 ? fy_error(FY_E_CONFIG, "setting %s: value too long", key)
                      : 0;
    v = strtoull(buf, &end, 10);
    if (!buf[0] || *end || buf[0] == '-' || v < min || v > max)
        return fy_error(FY_E_CONFIG,
                        "setting %s=%s: expected a number in %" PRIu64
                        "..%" PRIu64, key, buf, min, max);
    *out = v;
    return 0;
}
