/* Wire protocol v1: encoding and decoding of frames.  docs/protocol.md is
 * the specification; this is its only implementation.
 *
 * A frame is a 24-byte header followed by 'length' payload bytes:
 *
 *   off size field
 *     0   1  magic        0xFE
 *     1   1  version      1
 *     2   1  type         enum fy_frame_type
 *     3   1  flags        FY_OP_F_* (type-specific)
 *     4   4  length       payload bytes
 *     8   8  arg          offset / round / error code (type-specific)
 *    16   4  payload_sum  low 32 bits of XXH3-64 of the payload (for PAGE:
 *                         of its first 16 bytes, the page hash)
 *    20   4  header_sum   low 32 bits of XXH3-64 of bytes 0..19
 *
 * All integers are little-endian.  A PAGE payload is the 16-byte XXH3-128
 * of the page followed by the page; the receiver recomputes that hash, so
 * the page data is checked too.
 *
 * Decoding never trusts the peer: the header is checked before the payload
 * is waited for, lengths are exact per type, offsets are page-aligned and
 * inside the region, and nothing is written anywhere but the output
 * structure.  These functions do no I/O and keep no state.
 */
#ifndef FERRY_PROTOCOL_H
#define FERRY_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/transport.h"

#define FY_PROTO_MAGIC 0xFEu
#define FY_PROTO_VERSION 1u
#define FY_FRAME_HDR_SIZE 24u
/* PAGES: up to FY_PAGES_MAX pages in one frame, described first (offset and
 * hash, FY_PAGES_DESC_SIZE bytes each) so a receiver knows where each page
 * goes before its bytes arrive and can read them straight into place. */
#define FY_PAGES_MAX 64u
#define FY_PAGES_DESC_SIZE 24u
/* Largest payload of any frame type in v1 (a full PAGES frame). */
#define FY_FRAME_MAX_PAYLOAD (FY_PAGES_MAX * (FY_PAGES_DESC_SIZE + 4096u))
/* Most offsets one MISS frame carries. */
#define FY_MISS_MAX_PER_FRAME 4096u
/* Longest ERROR message carried (longer ones are cut). */
#define FY_ERROR_MSG_MAX 512u
/* The 8 bytes that open a HELLO payload. */
#define FY_HELLO_MAGIC "FERRYMIG"
#define FY_HELLO_PAYLOAD_SIZE 48u

/* Frame types: the operation types of transport.h, plus the handshake. */
enum fy_frame_type {
    FY_FRAME_PAGES = 0x0B, /* several PAGE operations in one frame */
    FY_FRAME_HELLO = 0x20,
    FY_FRAME_HELLO_ACK = 0x21,
};

/* What the decoder checks offsets against (from the handshake). */
struct fy_proto_limits {
    uint64_t region_size;
    uint32_t page_size;
    /* Leave the page hash of PAGE frames to the receiver, which checks it
     * where it places the page (the decoded op carries FY_OP_F_UNCHECKED).
     * Saves hashing each page twice. */
    bool defer_page_check;
};

/* Bytes fy_proto_encode() writes for 'op': header plus the inline payload,
 * which for PAGE is the hash only (the page follows separately). */
size_t fy_proto_encoded_size(const struct fy_op *op);

/* Encodes 'op' into buf[0..cap).  Returns the bytes written (header and
 * inline payload), or a negative error: FY_E_INVAL for an unknown type or
 * an operation that breaks the rules of its type, FY_E_NOSPACE if cap is too
 * small.  For PAGE the caller sends op->data (FY_PAGE_SIZE bytes) right
 * after; op->hash must already be the page's hash.  An ERROR message longer
 * than FY_ERROR_MSG_MAX is cut. */
int fy_proto_encode(const struct fy_op *op, uint8_t *buf, size_t cap);

/* Encodes only the 24-byte header of a DATA operation (its payload
 * checksum covers op->data), so a sender can pass the bytes to the socket
 * from where they are instead of copying them behind the header.  Returns
 * FY_FRAME_HDR_SIZE or a negative error as fy_proto_encode(); the caller
 * sends op->len bytes of op->data right after. */
int fy_proto_encode_data_header(const struct fy_op *op, uint8_t *buf,
                                size_t cap);

/* Decodes the frame at the start of buf[0..avail).
 *
 * Returns 0 and fills *op and *frame_len (bytes consumed) for a complete,
 * valid frame; op->data points into buf (for MISS at the little-endian
 * offsets array: use fy_proto_miss_offset() to read them; for ROUND_END and
 * ROUND_ACK at a decoded copy in *scratch).  A PAGES frame decodes to an op
 * of type FY_FRAME_PAGES with len = its page count and data = the frame
 * start: read it with fy_proto_decode_pages_prefix(); its pages follow the
 * prefix and were checked against their hashes unless lim says to defer.
 *
 * Returns -FY_E_AGAIN when buf holds a valid start but not yet the whole
 * frame (*frame_len is then the total size needed, when known; else 0).
 *
 * Any other negative value ends the session: FY_E_PROTO (bad magic, unknown
 * type, wrong length for the type, bad field), FY_E_VERSION, FY_E_CHECKSUM
 * (header, payload or page hash), FY_E_TOOBIG, FY_E_RANGE (offset not
 * aligned or outside lim->region_size).  HELLO and HELLO_ACK frames are
 * refused here with FY_E_PROTO: after the handshake they are violations. */
union fy_proto_scratch {
    struct fy_round_counts counts;
    struct fy_round_ack ack;
};
int fy_proto_decode(const uint8_t *buf, size_t avail,
                    const struct fy_proto_limits *lim, struct fy_op *op,
                    union fy_proto_scratch *scratch, size_t *frame_len);

/* Encodes the header and descriptors of a PAGES frame carrying ops[0..n-1]
 * (all PAGE operations with their hashes, 1 <= n <= FY_PAGES_MAX).  Returns
 * the bytes written (FY_FRAME_HDR_SIZE + n * FY_PAGES_DESC_SIZE); the caller
 * sends the n pages right after, in order.  Negative error as
 * fy_proto_encode(). */
int fy_proto_encode_pages(const struct fy_op *ops, unsigned n, uint8_t *buf,
                          size_t cap);

/* The start of a PAGES frame, known before its pages arrive. */
struct fy_pages_prefix {
    unsigned n;           /* pages in the frame */
    size_t prefix_len;    /* header + descriptors */
    size_t frame_len;     /* the whole frame */
    const uint8_t *desc;  /* the descriptors, inside the caller's buffer */
};

/* If buf starts with a PAGES frame whose header and descriptors are all in
 * buf[0..avail), checks them (header checksum and rules, descriptor
 * checksum, every offset aligned and inside the region) and returns 0 with
 * *pp filled.  Returns 1 if the frame at buf is of another type (decode it
 * with fy_proto_decode()), -FY_E_AGAIN if more bytes are needed to tell, or
 * an error as fy_proto_decode() for a malformed frame. */
int fy_proto_decode_pages_prefix(const uint8_t *buf, size_t avail,
                                 const struct fy_proto_limits *lim,
                                 struct fy_pages_prefix *pp);

/* Reads descriptor i of a checked PAGES prefix. */
void fy_proto_pages_desc(const struct fy_pages_prefix *pp, unsigned i,
                         uint64_t *offset, fy_hash128 *hash);

/* Reads the i-th offset of a decoded MISS operation. */
uint64_t fy_proto_miss_offset(const struct fy_op *op, uint64_t i);

/* Encodes a HELLO (ack = false, sent by the source on each stream) or
 * HELLO_ACK (ack = true, the target's answer) into buf; returns the bytes
 * written (FY_FRAME_HDR_SIZE + FY_HELLO_PAYLOAD_SIZE) or a negative error. */
int fy_proto_encode_hello(const struct fy_session_info *info,
                          uint32_t stream_index, bool ack, uint8_t *buf,
                          size_t cap);

/* Decodes a HELLO or HELLO_ACK.  Returns 0 with *info, *stream_index and
 * *ack filled; -FY_E_AGAIN as fy_proto_decode(); -FY_E_VERSION naming both
 * versions when the peer speaks another; -FY_E_PEER with the peer's message
 * recorded when the frame is an ERROR; another negative error for a
 * malformed frame. */
int fy_proto_decode_hello(const uint8_t *buf, size_t avail,
                          struct fy_session_info *info,
                          uint32_t *stream_index, bool *ack,
                          size_t *frame_len);

/* A name for a frame type, for messages ("PAGE", "HELLO"; "unknown"). */
const char *fy_proto_type_name(unsigned type);

#endif /* FERRY_PROTOCOL_H */
