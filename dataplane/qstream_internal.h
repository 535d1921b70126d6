/* Stream mode internals (include/ferry/qstream.h is the interface): QEMU's
 * multifd wire format, its incremental parser, and how qstream uses the
 * DATA operation.  docs/qstream.md describes both; tests include this
 * header to drive the parser on synthetic streams.
 *
 * QEMU's multifd format (migration/multifd.h; all integers big-endian,
 * structures packed), version 1, the same from QEMU 7.2 to 9.x:
 *
 *   each channel opens with MultiFDInit_t (64 bytes):
 *     u32 magic 0x11223344, u32 version 1, u8 uuid[16], u8 id,
 *     u8 unused1[7], u64 unused2[4]
 *   then packets, each MultiFDPacket_t (320 bytes) and its offsets:
 *     u32 magic, u32 version, u32 flags, u32 pages_alloc,
 *     u32 normal_pages, u32 next_packet_size, u64 packet_num,
 *     u32 zero_pages (QEMU >= 9.0; 0 before: it was unused), u32 unused,
 *     u64 unused[3], char ramblock[256], u64 offset[pages_alloc]
 *   followed, when normal_pages > 0, by the page data: normal_pages *
 *   4096 bytes for the pages at offset[0..normal_pages-1] (uncompressed),
 *   or next_packet_size bytes of compressed data (flags' compression
 *   bits set).  Offsets are bytes into the named RAM block.  A packet
 *   with no normal pages (a SYNC) has no data, whatever next_packet_size
 *   says (QEMU 7.2 leaves the previous packet's value there: checked by
 *   capture); zero_pages offsets follow the normal ones and have no data.
 *
 * The header length counts pages_alloc offset slots, not only the used
 * ones (QEMU 7.2 sends 320 + 8 * 128 bytes for x86's 4 KiB pages).
 */
#ifndef FERRY_QSTREAM_INTERNAL_H
#define FERRY_QSTREAM_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "ferry/qstream.h"
#include "ferry/transport.h"

#define FY_MFD_MAGIC 0x11223344u
#define FY_MFD_VERSION 1u
#define FY_MFD_INIT_SIZE 64u
#define FY_MFD_HDR_SIZE 320u
/* Largest pages_alloc accepted: QEMU uses 512 KiB / target page size (128
 * for 4 KiB pages); a far larger value means the header is not what we
 * think it is. */
#define FY_MFD_MAX_PAGES 65536u
#define FY_MFD_FLAG_SYNC 0x01u
/* Compression method bits (QEMU: 0xf << 1 at most; 7.2 uses 7 << 1). */
#define FY_MFD_FLAG_COMP_MASK 0x1eu
#define FY_MFD_RAMBLOCK_MAX 256u
/* QEMU's main migration stream opens with "QEVM". */
#define FY_QEMU_VM_MAGIC 0x5145564du

/* ---- headers ----------------------------------------------------------- */

struct fy_mfd_init {
    uint32_t version;
    uint8_t uuid[16];
    uint8_t id;
};

/* Checks the MultiFDInit_t at b[0..len).  Returns 0 with *out filled;
 * -FY_E_AGAIN if len < FY_MFD_INIT_SIZE; -FY_E_PROTO (magic) or
 * -FY_E_VERSION with the detail recorded. */
int fy_mfd_check_init(const uint8_t *b, size_t len, struct fy_mfd_init *out);

struct fy_mfd_packet {
    uint32_t flags;
    uint32_t pages_alloc;
    uint32_t normal_pages;
    uint32_t zero_pages;
    uint32_t next_packet_size;
    uint64_t packet_num;
    char ramblock[FY_MFD_RAMBLOCK_MAX + 1];
    size_t header_len;  /* 320 + 8 * pages_alloc */
    size_t payload_len; /* data bytes after the header */
    bool compressed;
};

/* Checks the packet header at b[0..len).  Returns 0 with *out filled once
 * the whole header (with its offsets) is there; -FY_E_AGAIN with *need =
 * the bytes needed (0 if not known yet: fewer than 320); or an error with
 * the detail recorded: -FY_E_PROTO (magic, counts, flags, RAM block name,
 * an offset not a multiple of 4096), -FY_E_VERSION. */
int fy_mfd_check_packet(const uint8_t *b, size_t len,
                        struct fy_mfd_packet *out, size_t *need);

/* Offset i of a checked packet header. */
uint64_t fy_mfd_packet_offset(const uint8_t *hdr, unsigned i);

/* ---- parser ------------------------------------------------------------ */

enum fy_mfd_kind {
    FY_MFD_BYTES = 1, /* carry these bytes as they are */
    FY_MFD_PAGE = 2,  /* one page of data (FY_PAGE_SIZE bytes) */
};

struct fy_mfd_item {
    enum fy_mfd_kind kind;
    size_t len;           /* input bytes the item spans */
    bool header;          /* BYTES: a multifd header (else payload or raw) */
    const char *ramblock; /* PAGE: its RAM block (owned by the parser, valid
                             until the next packet) */
    uint64_t offset;      /* PAGE: its offset in the RAM block */
    uint64_t packet;      /* PAGE: packets parsed so far, a serial that
                             changes with the RAM block name */
};

struct fy_mfd_parser {
    int state;
    struct fy_mfd_packet pkt;
    uint64_t *offs;       /* offsets of the current packet's normal pages */
    unsigned offs_cap;
    unsigned page_i;
    uint64_t left;        /* compressed payload bytes still to come */
    bool have_id;
    uint8_t id;
    bool raw;             /* carrying everything unparsed from here */
    char reason[256];     /* why (empty while parsing) */
    uint64_t packets, pages, zero_listed, compressed_packets, sync_packets;
    uint64_t raw_bytes;   /* bytes handed out while raw */
};

/* 'multifd': the channel opens with MultiFDInit_t; false carries every
 * byte raw from the start without calling it a failure (the main
 * channel). */
void fy_mfd_parser_init(struct fy_mfd_parser *p, bool multifd);
void fy_mfd_parser_fini(struct fy_mfd_parser *p);

/* The next item at buf[0..len).  Returns 1 with *it filled (it->len <=
 * len, > 0); 0 when more bytes are needed to decide, with *need = the
 * total bytes from buf the parser waits for.  Never fails: bytes it cannot
 * parse switch it to raw for the rest of the channel (p->raw, p->reason);
 * carried raw, the stream still arrives unchanged. */
int fy_mfd_next(struct fy_mfd_parser *p, const uint8_t *buf, size_t len,
                struct fy_mfd_item *it, size_t *need);

/* The channel ended with 'len' bytes left over that the parser was
 * waiting to complete: they go raw, and the reason says so unless the
 * parser was already raw or idle between packets (len 0). */
void fy_mfd_end(struct fy_mfd_parser *p, size_t len);

/* ---- qstream over Ferry streams ------------------------------------------
 *
 * Source to target, on the stream of each QEMU channel (0: main):
 *   DATA tag BYTES   channel bytes to append, as they are
 *   PAGE offset K    a page to append, and to keep at cache offset K
 *   REF  offset L    append the cache's page at L (hash: its content)
 *   ZERO len n*4096  append n zero pages
 *   DATA tag PAGE    a page to append that the cache does not keep
 *   DATA tag XREF    payload: 16-byte hash; append the page with that
 *                    content from another migration's cache on this host
 *   DATA tag STATUS  text: this channel is carried raw from here, why
 *   DATA tag HELLO   first op of stream 0 (struct below)
 *   DATA tag EOF     QEMU closed this channel; payload (optional, 24
 *                    bytes): u64 count and XXH3-128 (struct fy_hash128,
 *                    low then high, little-endian) of every byte QEMU sent
 *                    on it.  The target checks them against the bytes it
 *                    gave the destination QEMU: the rebuilt stream must be
 *                    QEMU's own, byte for byte.
 * Target to source:
 *   DATA tag ACK     u64: PAGE and REF operations processed on this
 *                    stream so far
 *   DATA tag BYTES   stream 0: the return path
 *   DATA tag EOF     stream 0: the destination QEMU closed the main
 *                    channel; other streams: the stream is finished
 *   DONE             stream 0: the target is finished
 *   ERROR            either way: the sender failed
 */
enum fy_qs_tag {
    FY_QS_BYTES = 0,
    FY_QS_EOF = 1,
    FY_QS_ACK = 2,
    FY_QS_HELLO = 3,
    FY_QS_STATUS = 4,
    FY_QS_XREF = 5,
    FY_QS_PAGE = 6,
};

#define FY_QS_EOF_SUM_SIZE 24u

#define FY_QS_HELLO_MAGIC "FYQS"
#define FY_QS_VERSION 1u
#define FY_QS_HELLO_SIZE 16u /* magic[4], u32 version, u32 channels, u32 0 */

/* Key space: RAM blocks are laid out in it in chunks of this size, in the
 * order the source first meets them. */
#define FY_QS_CHUNK_SHIFT 21
#define FY_QS_MAX_RAMBLOCKS 64

void fy_qs_put_le32(uint8_t *p, uint32_t v);
void fy_qs_put_le64(uint8_t *p, uint64_t v);
uint32_t fy_qs_get_le32(const uint8_t *p);
uint64_t fy_qs_get_le64(const uint8_t *p);

/* Shared by both sides: reads and writes on QEMU's sockets. */
int fy_qs_write_all(int fd, const struct iovec *iov, int n,
                    const volatile int *stop);
/* Sends all ops on s; returns 0 or an error.  (fy_stream_send_all, plus
 * waiting for zero-copy transports to let go of the data.) */
int fy_qs_send(struct fy_stream *s, const struct fy_op *ops, unsigned n,
               int timeout_ms);
void fy_qs_stats_add_wire(struct fy_qstream_stats *st,
                          const struct fy_session *s);

/* How a run of either side stops: its first failure, the stop flag its
 * threads watch, stream 0's sender lock.  Both sides embed one. */
struct fy_qs_run {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_mutex_t tx0;  /* stream 0 has several senders */
    int stop;             /* atomic */
    int err;              /* the first failure, under mu */
    char errmsg[512];
    unsigned running;     /* threads, under mu */
};

static inline bool fy_qs_stopped(struct fy_qs_run *r)
{
    return __atomic_load_n(&r->stop, __ATOMIC_ACQUIRE);
}

/* Takes tx0, waiting at most a second: another sender of stream 0 may be
 * in the middle of a small send, but not one the peer's backlog keeps
 * blocked.  0, or an errno value (not taken). */
int fy_qs_lock_tx0(struct fy_qs_run *r);

/* Records the first failure (code and message), sets stop and wakes every
 * waiter.  The first failure is also sent to the other side on stream 0 of
 * 's' (ERROR) and 's' is shut down.  Returns whether this was the first:
 * the caller then shuts down its QEMU sockets, so QEMU's migration fails
 * (and at the source the guest runs on). */
bool fy_qs_failv(struct fy_qs_run *r, struct fy_session *s, int code,
                 const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

#endif /* FERRY_QSTREAM_INTERNAL_H */
