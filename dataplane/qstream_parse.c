/* QEMU multifd channels: header checks and the incremental parser that
 * splits a channel's bytes into headers, pages and raw runs (see
 * qstream_internal.h for the format).
 *
 * The parser only decides how bytes travel, never what they are: every
 * input byte is handed out exactly once, in order, so whatever it concludes
 * the channel arrives unchanged.  What it cannot parse it hands out raw
 * from that point on, and says why. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/qstream_internal.h"
#include "ferry/classifier.h"
#include "ferry/error.h"

enum { ST_INIT, ST_PACKET, ST_PAGES, ST_PAYLOAD, ST_RAW };

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static uint64_t be64(const uint8_t *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

void fy_qs_put_le32(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void fy_qs_put_le64(uint8_t *p, uint64_t v)
{
    for (unsigned i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

uint32_t fy_qs_get_le32(const uint8_t *p)
{
    uint32_t v = 0;

    for (unsigned i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

uint64_t fy_qs_get_le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ---- headers ----------------------------------------------------------- */

int fy_mfd_check_init(const uint8_t *b, size_t len, struct fy_mfd_init *out)
{
    uint32_t magic, version;

    if (!b || !out)
        return fy_error(FY_E_INVAL, "fy_mfd_check_init: NULL argument");
    if (len < FY_MFD_INIT_SIZE)
        return -FY_E_AGAIN;
    magic = be32(b);
    version = be32(b + 4);
    if (magic != FY_MFD_MAGIC)
        return fy_error(FY_E_PROTO,
                        "multifd channel: opening magic 0x%08" PRIx32
                        ", expected 0x%08x",
                        magic, FY_MFD_MAGIC);
    if (version != FY_MFD_VERSION)
        return fy_error(FY_E_VERSION,
                        "multifd channel: version %" PRIu32
                        ", this build parses version %u",
                        version, FY_MFD_VERSION);
    out->version = version;
    memcpy(out->uuid, b + 8, 16);
    out->id = b[24];
    return 0;
}

int fy_mfd_check_packet(const uint8_t *b, size_t len,
                        struct fy_mfd_packet *out, size_t *need)
{
    struct fy_mfd_packet p;
    uint32_t magic, version;
    const uint8_t *name;
    size_t nlen;

    if (!b || !out || !need)
        return fy_error(FY_E_INVAL, "fy_mfd_check_packet: NULL argument");
    *need = 0;
    if (len < FY_MFD_HDR_SIZE)
        return -FY_E_AGAIN;
    memset(&p, 0, sizeof(p));
    magic = be32(b);
    version = be32(b + 4);
    p.flags = be32(b + 8);
    p.pages_alloc = be32(b + 12);
    p.normal_pages = be32(b + 16);
    p.next_packet_size = be32(b + 20);
    p.packet_num = be64(b + 24);
    p.zero_pages = be32(b + 32);
    if (magic != FY_MFD_MAGIC)
        return fy_error(FY_E_PROTO,
                        "multifd packet: magic 0x%08" PRIx32
                        ", expected 0x%08x",
                        magic, FY_MFD_MAGIC);
    if (version != FY_MFD_VERSION)
        return fy_error(FY_E_VERSION,
                        "multifd packet %" PRIu64 ": version %" PRIu32
                        ", this build parses version %u",
                        p.packet_num, version, FY_MFD_VERSION);
    if (p.flags & ~(FY_MFD_FLAG_SYNC | FY_MFD_FLAG_COMP_MASK))
        return fy_error(FY_E_PROTO,
                        "multifd packet %" PRIu64 ": flags 0x%" PRIx32
                        " with bits this build does not know (0x%" PRIx32
                        "): another packet layout",
                        p.packet_num, p.flags,
                        p.flags & ~(FY_MFD_FLAG_SYNC | FY_MFD_FLAG_COMP_MASK));
    if (p.pages_alloc == 0 || p.pages_alloc > FY_MFD_MAX_PAGES)
        return fy_error(FY_E_PROTO,
                        "multifd packet %" PRIu64 ": pages_alloc %" PRIu32
                        ", expected 1..%u",
                        p.packet_num, p.pages_alloc, FY_MFD_MAX_PAGES);
    if ((uint64_t)p.normal_pages + p.zero_pages > p.pages_alloc)
        return fy_error(FY_E_PROTO,
                        "multifd packet %" PRIu64 ": %" PRIu32
                        " normal and %" PRIu32
                        " zero pages do not fit its %" PRIu32 " slots",
                        p.packet_num, p.normal_pages, p.zero_pages,
                        p.pages_alloc);
    name = b + 64;
    nlen = strnlen((const char *)name, FY_MFD_RAMBLOCK_MAX);
    if (nlen == FY_MFD_RAMBLOCK_MAX)
        return fy_error(FY_E_PROTO,
                        "multifd packet %" PRIu64
                        ": RAM block name not terminated within %u bytes",
                        p.packet_num, FY_MFD_RAMBLOCK_MAX);
    if (p.normal_pages + p.zero_pages > 0 && nlen == 0)
        return fy_error(FY_E_PROTO,
                        "multifd packet %" PRIu64 ": %" PRIu32
                        " pages but no RAM block name",
                        p.packet_num, p.normal_pages + p.zero_pages);
    memcpy(p.ramblock, name, nlen);
    p.ramblock[nlen] = '\0';
    p.header_len = FY_MFD_HDR_SIZE + (size_t)8 * p.pages_alloc;
    p.compressed = (p.flags & FY_MFD_FLAG_COMP_MASK) != 0;
    if (p.normal_pages == 0)
        p.payload_len = 0;
    else if (p.compressed)
        p.payload_len = p.next_packet_size;
    else
        p.payload_len = (size_t)p.normal_pages * FY_PAGE_SIZE;
    if (len < p.header_len) {
        *need = p.header_len;
        return -FY_E_AGAIN;
    }
    for (uint32_t i = 0; i < p.normal_pages + p.zero_pages; i++) {
        uint64_t off = be64(b + FY_MFD_HDR_SIZE + 8 * (size_t)i);

        if (off % FY_PAGE_SIZE)
            return fy_error(FY_E_PROTO,
                            "multifd packet %" PRIu64 ": page %" PRIu32
                            " at offset 0x%" PRIx64
                            " of %s, not a multiple of %u (not x86's page "
                            "size?)",
                            p.packet_num, i, off, p.ramblock, FY_PAGE_SIZE);
    }
    *out = p;
    return 0;
}

uint64_t fy_mfd_packet_offset(const uint8_t *hdr, unsigned i)
{
    return be64(hdr + FY_MFD_HDR_SIZE + 8 * (size_t)i);
}

/* ---- parser ------------------------------------------------------------ */

void fy_mfd_parser_init(struct fy_mfd_parser *p, bool multifd)
{
    memset(p, 0, sizeof(*p));
    p->state = multifd ? ST_INIT : ST_RAW;
}

void fy_mfd_parser_fini(struct fy_mfd_parser *p)
{
    free(p->offs);
    p->offs = NULL;
    p->offs_cap = 0;
}

/* From here on the channel goes raw; the first reason is kept. */
static void go_raw(struct fy_mfd_parser *p, const char *why)
{
    if (!p->raw) {
        p->raw = true;
        snprintf(p->reason, sizeof(p->reason), "%s", why);
    }
    p->state = ST_RAW;
}

static int bytes_item(struct fy_mfd_item *it, size_t len, bool header)
{
    memset(it, 0, sizeof(*it));
    it->kind = FY_MFD_BYTES;
    it->len = len;
    it->header = header;
    return 1;
}

int fy_mfd_next(struct fy_mfd_parser *p, const uint8_t *buf, size_t len,
                struct fy_mfd_item *it, size_t *need)
{
    struct fy_mfd_init init;
    int rc;

    *need = 0;
    if (len == 0) {
        *need = 1;
        return 0;
    }
    for (;;) {
        switch (p->state) {
        case ST_INIT:
            rc = fy_mfd_check_init(buf, len, &init);
            if (rc == -FY_E_AGAIN) {
                *need = FY_MFD_INIT_SIZE;
                return 0;
            }
            if (rc < 0) {
                go_raw(p, fy_error_detail());
                continue;
            }
            p->have_id = true;
            p->id = init.id;
            p->state = ST_PACKET;
            return bytes_item(it, FY_MFD_INIT_SIZE, true);
        case ST_PACKET: {
            size_t want = 0;

            rc = fy_mfd_check_packet(buf, len, &p->pkt, &want);
            if (rc == -FY_E_AGAIN) {
                *need = want ? want : FY_MFD_HDR_SIZE;
                return 0;
            }
            if (rc < 0) {
                go_raw(p, fy_error_detail());
                continue;
            }
            if (p->pkt.normal_pages > p->offs_cap) {
                uint64_t *o = realloc(p->offs, sizeof(*o) * p->pkt.normal_pages);
                if (!o) {
                    go_raw(p, "no memory for a multifd packet's offsets");
                    continue;
                }
                p->offs = o;
                p->offs_cap = p->pkt.normal_pages;
            }
            for (unsigned i = 0; i < p->pkt.normal_pages; i++)
                p->offs[i] = fy_mfd_packet_offset(buf, i);
            p->packets++;
            p->zero_listed += p->pkt.zero_pages;
            if (p->pkt.flags & FY_MFD_FLAG_SYNC)
                p->sync_packets++;
            p->page_i = 0;
            if (p->pkt.payload_len == 0) {
                p->state = ST_PACKET;
            } else if (p->pkt.compressed) {
                p->compressed_packets++;
                p->left = p->pkt.payload_len;
                p->state = ST_PAYLOAD;
            } else {
                p->state = ST_PAGES;
            }
            return bytes_item(it, p->pkt.header_len, true);
        }
        case ST_PAGES:
            if (len < FY_PAGE_SIZE) {
                *need = FY_PAGE_SIZE;
                return 0;
            }
            memset(it, 0, sizeof(*it));
            it->kind = FY_MFD_PAGE;
            it->len = FY_PAGE_SIZE;
            it->ramblock = p->pkt.ramblock;
            it->offset = p->offs[p->page_i];
            it->packet = p->packets;
            p->pages++;
            if (++p->page_i == p->pkt.normal_pages)
                p->state = ST_PACKET;
            return 1;
        case ST_PAYLOAD: {
            size_t n = len < p->left ? len : (size_t)p->left;

            p->left -= n;
            if (p->left == 0)
                p->state = ST_PACKET;
            return bytes_item(it, n, false);
        }
        default: /* ST_RAW */
            p->raw_bytes += len;
            return bytes_item(it, len, false);
        }
    }
}

void fy_mfd_end(struct fy_mfd_parser *p, size_t len)
{
    char why[160];

    if (len == 0 || p->state == ST_RAW)
        return;
    snprintf(why, sizeof(why),
             "the channel ended inside a multifd %s (%zu bytes of it)",
             p->state == ST_INIT     ? "channel header"
             : p->state == ST_PACKET ? "packet header"
                                     : "packet's data",
             len);
    go_raw(p, why);
    p->raw_bytes += len;
}
