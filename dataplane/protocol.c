/* Wire protocol v1: frame encoding and decoding (see protocol.h and
 * docs/protocol.md).
 *
 * Every rule of a frame type is written once and used by both sides: the
 * encoder refuses an operation that breaks it with FY_E_INVAL (a bug in the
 * caller), the decoder refuses a frame that breaks it with FY_E_PROTO or
 * FY_E_RANGE (a broken or hostile peer).
 *
 * Decoding checks in the order the bytes arrive, so a bad stream fails as
 * soon as it can instead of waiting for bytes that may never come:
 *
 *   1. magic (byte 0), then version (byte 1), even from a partial header;
 *   2. with the whole header: its checksum, the type, the length (the limit,
 *      then the exact length for the type), flags and arg;
 *   3. with the whole frame: the payload checksum, then the payload fields
 *      (for PAGE, the page hash over the data last, being the dearest).
 *
 * The version is read before the header checksum because a later version
 * may lay out or checksum its header differently; reading it first also
 * gives the same answer however the bytes were split into reads.
 */
#include "dataplane/protocol.h"

#include <inttypes.h>
#include <string.h>
#include <xxhash.h>

#include "ferry/classifier.h"
#include "ferry/error.h"

/* Payload bytes per fixed-size frame type. */
#define PAGE_PAYLOAD (16u + FY_PAGE_SIZE)
#define ZERO_PAYLOAD 8u
#define HASH_PAYLOAD 16u
#define COUNTS_PAYLOAD 32u
#define ACK_PAYLOAD 16u
#define MISS_PAYLOAD_MAX (8u * FY_MISS_MAX_PER_FRAME)

#define PAGES_UNIT (FY_PAGES_DESC_SIZE + FY_PAGE_SIZE)

#define ROUND_END_FLAGS (FY_OP_F_FINAL | FY_OP_F_FIXUP)
#define MAX_STREAMS 256u

/* ---- little-endian fields -------------------------------------------- */

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (unsigned i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static uint32_t get_le32(const uint8_t *p)
{
    uint32_t v = 0;

    for (unsigned i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void put_hash(uint8_t *p, fy_hash128 h)
{
    put_le64(p, h.lo);
    put_le64(p + 8, h.hi);
}

static fy_hash128 get_hash(const uint8_t *p)
{
    return (fy_hash128){get_le64(p), get_le64(p + 8)};
}

static uint32_t sum32(const void *p, size_t n)
{
    return (uint32_t)XXH3_64bits(p, n);
}

/* ---- frame types ------------------------------------------------------ */

const char *fy_proto_type_name(unsigned type)
{
    switch (type) {
    case FY_OP_PAGE:
        return "PAGE";
    case FY_OP_ZERO:
        return "ZERO";
    case FY_OP_REF:
        return "REF";
    case FY_OP_ROUND_END:
        return "ROUND_END";
    case FY_OP_ROUND_ACK:
        return "ROUND_ACK";
    case FY_OP_MISS:
        return "MISS";
    case FY_OP_VERIFY:
        return "VERIFY";
    case FY_OP_VERIFY_RESULT:
        return "VERIFY_RESULT";
    case FY_OP_ERROR:
        return "ERROR";
    case FY_OP_DONE:
        return "DONE";
    case FY_OP_DATA:
        return "DATA";
    case FY_FRAME_PAGES:
        return "PAGES";
    case FY_FRAME_HELLO:
        return "HELLO";
    case FY_FRAME_HELLO_ACK:
        return "HELLO_ACK";
    default:
        return "unknown";
    }
}

static bool type_known(unsigned type)
{
    return (type >= FY_OP_PAGE && type <= FY_OP_DONE) ||
           type == FY_OP_DATA || type == FY_FRAME_PAGES || type == FY_FRAME_HELLO ||
           type == FY_FRAME_HELLO_ACK;
}

/* The payload lengths a type allows: min..max in steps of 'step'. */
struct len_rule {
    uint32_t min, max, step;
};

static struct len_rule payload_rule(unsigned type)
{
    switch (type) {
    case FY_OP_PAGE:
        return (struct len_rule){PAGE_PAYLOAD, PAGE_PAYLOAD, 1};
    case FY_OP_ZERO:
        return (struct len_rule){ZERO_PAYLOAD, ZERO_PAYLOAD, 1};
    case FY_OP_ROUND_END:
        return (struct len_rule){COUNTS_PAYLOAD, COUNTS_PAYLOAD, 1};
    case FY_OP_ROUND_ACK:
        return (struct len_rule){ACK_PAYLOAD, ACK_PAYLOAD, 1};
    case FY_OP_MISS:
        return (struct len_rule){8, MISS_PAYLOAD_MAX, 8};
    case FY_OP_REF:
    case FY_OP_VERIFY:
    case FY_OP_VERIFY_RESULT:
        return (struct len_rule){HASH_PAYLOAD, HASH_PAYLOAD, 1};
    case FY_OP_ERROR:
        return (struct len_rule){0, FY_ERROR_MSG_MAX, 1};
    case FY_OP_DATA:
        return (struct len_rule){0, FY_DATA_MAX, 1};
    case FY_FRAME_PAGES:
        return (struct len_rule){PAGES_UNIT, FY_PAGES_MAX * PAGES_UNIT, PAGES_UNIT};
    case FY_FRAME_HELLO:
    case FY_FRAME_HELLO_ACK:
        return (struct len_rule){FY_HELLO_PAYLOAD_SIZE, FY_HELLO_PAYLOAD_SIZE,
                                 1};
    default: /* DONE */
        return (struct len_rule){0, 0, 1};
    }
}

static int check_length(unsigned type, uint32_t length)
{
    struct len_rule r = payload_rule(type);

    if (length >= r.min && length <= r.max && length % r.step == 0)
        return 0;
    if (r.min == r.max)
        return fy_error(FY_E_PROTO,
                        "%s frame: payload length %" PRIu32
                        ", this type has exactly %" PRIu32,
                        fy_proto_type_name(type), length, r.min);
    return fy_error(FY_E_PROTO,
                    "%s frame: payload length %" PRIu32
                    ", this type has %" PRIu32 "..%" PRIu32
                    " bytes in steps of %" PRIu32,
                    fy_proto_type_name(type), length, r.min, r.max, r.step);
}

/* ---- rules shared by encoder and decoder ------------------------------ */

/* 'enc' says who checks: the encoder (the caller broke a rule: FY_E_INVAL)
 * or the decoder (the peer did: the code given). */
static const char *noun(bool enc)
{
    return enc ? "operation" : "frame";
}

static int rule_code(bool enc, int code)
{
    return enc ? FY_E_INVAL : code;
}

static int check_flags(bool enc, unsigned type, uint8_t flags)
{
    unsigned allowed = type == FY_OP_ROUND_END ? ROUND_END_FLAGS : 0;

    if (flags & ~allowed)
        return fy_error(rule_code(enc, FY_E_PROTO),
                        "%s %s: flags 0x%02x, only 0x%02x allowed",
                        fy_proto_type_name(type), noun(enc), flags, allowed);
    return 0;
}

static int check_aligned(bool enc, unsigned type, const char *field,
                         uint64_t off)
{
    if (off % FY_PAGE_SIZE)
        return fy_error(rule_code(enc, FY_E_RANGE),
                        "%s %s: %s 0x%" PRIx64
                        " is not a multiple of the page size %u",
                        fy_proto_type_name(type), noun(enc), field, off,
                        FY_PAGE_SIZE);
    return 0;
}

/* Decoder only: [off, off + len) inside the region, without overflow. */
static int check_in_region(unsigned type, const char *field, uint64_t off,
                           uint64_t len, const struct fy_proto_limits *lim)
{
    if (len > lim->region_size || off > lim->region_size - len)
        return fy_error(FY_E_RANGE,
                        "%s frame: %s 0x%" PRIx64 " + 0x%" PRIx64
                        " bytes passes the region size 0x%" PRIx64,
                        fy_proto_type_name(type), field, off, len,
                        lim->region_size);
    return 0;
}

/* The rules on flags and arg, which the decoder can check from the header
 * alone.  'lim' is NULL when encoding (the encoder knows no region). */
static int check_header_rules(bool enc, unsigned type, uint8_t flags,
                              uint64_t arg, const struct fy_proto_limits *lim)
{
    int rc = check_flags(enc, type, flags);

    if (rc)
        return rc;
    switch (type) {
    case FY_OP_PAGE:
    case FY_OP_REF:
        rc = check_aligned(enc, type, "offset", arg);
        if (!rc && lim)
            rc = check_in_region(type, "offset", arg, FY_PAGE_SIZE, lim);
        return rc;
    case FY_OP_ZERO:
        /* The range check needs the length, in the payload. */
        return check_aligned(enc, type, "offset", arg);
    case FY_OP_ROUND_END:
    case FY_OP_ROUND_ACK:
        return 0; /* arg is the round: any value */
    case FY_OP_DATA:
        return 0; /* arg is the application's tag: any value */
    case FY_FRAME_PAGES:
        if (arg == 0 || arg > FY_PAGES_MAX)
            return fy_error(rule_code(enc, FY_E_PROTO),
                            "PAGES %s: %" PRIu64 " pages, 1..%u allowed",
                            noun(enc), arg, FY_PAGES_MAX);
        return 0;
    case FY_OP_VERIFY_RESULT:
        if (arg > 1)
            return fy_error(rule_code(enc, FY_E_PROTO),
                            "VERIFY_RESULT %s: arg %" PRIu64
                            ", only 0 (differ) or 1 (equal) allowed",
                            noun(enc), arg);
        return 0;
    case FY_OP_ERROR:
        /* The decoder reads codes it does not know as FY_E_PEER: a later
         * build may append codes.  Ours must be real. */
        if (enc && (arg == 0 || arg >= FY_E__COUNT))
            return fy_error(FY_E_INVAL,
                            "ERROR operation: code %" PRIu64
                            " is not an error code (1..%d)",
                            arg, FY_E__COUNT - 1);
        return 0;
    default: /* MISS, VERIFY, DONE, HELLO, HELLO_ACK: arg reserved */
        if (arg != 0)
            return fy_error(rule_code(enc, FY_E_PROTO),
                            "%s %s: arg 0x%" PRIx64 " is reserved, must be 0",
                            fy_proto_type_name(type), noun(enc), arg);
        return 0;
    }
}

/* ZERO: len > 0, whole pages, [off, off + len) does not wrap. */
static int check_zero_len(bool enc, uint64_t off, uint64_t len)
{
    if (len == 0 || len % FY_PAGE_SIZE)
        return fy_error(rule_code(enc, FY_E_PROTO),
                        "ZERO %s: length 0x%" PRIx64
                        " is not a non-zero multiple of the page size %u",
                        noun(enc), len, FY_PAGE_SIZE);
    if (len > UINT64_MAX - off)
        return fy_error(rule_code(enc, FY_E_RANGE),
                        "ZERO %s: offset 0x%" PRIx64 " + length 0x%" PRIx64
                        " passes 2^64",
                        noun(enc), off, len);
    return 0;
}

/* ---- encoding --------------------------------------------------------- */

/* The payload length in the header and the bytes written inline (they
 * differ only for PAGE, whose data the caller sends itself); false for an
 * unknown type or a MISS of no or too many entries. */
static bool payload_sizes(const struct fy_op *op, uint32_t *length,
                          uint32_t *inline_len)
{
    switch (op->type) {
    case FY_OP_PAGE:
        *length = PAGE_PAYLOAD;
        *inline_len = HASH_PAYLOAD;
        return true;
    case FY_OP_MISS:
        if (op->len == 0 || op->len > MISS_PAYLOAD_MAX || op->len % 8)
            return false;
        *length = *inline_len = (uint32_t)op->len;
        return true;
    case FY_OP_ERROR:
        *length = *inline_len = op->len > FY_ERROR_MSG_MAX
                                    ? FY_ERROR_MSG_MAX
                                    : (uint32_t)op->len;
        return true;
    case FY_OP_DATA:
        if (op->len > FY_DATA_MAX)
            return false;
        *length = *inline_len = (uint32_t)op->len;
        return true;
    case FY_OP_ZERO:
    case FY_OP_REF:
    case FY_OP_ROUND_END:
    case FY_OP_ROUND_ACK:
    case FY_OP_VERIFY:
    case FY_OP_VERIFY_RESULT:
    case FY_OP_DONE:
        *length = *inline_len = payload_rule(op->type).min;
        return true;
    default:
        return false;
    }
}

size_t fy_proto_encoded_size(const struct fy_op *op)
{
    uint32_t length, inline_len;

    if (!op || !payload_sizes(op, &length, &inline_len))
        return 0;
    return FY_FRAME_HDR_SIZE + inline_len;
}

/* The payload rules the encoder checks beyond check_header_rules(). */
static int check_op_payload(const struct fy_op *op, uint32_t length)
{
    const char *name = fy_proto_type_name(op->type);

    switch (op->type) {
    case FY_OP_ZERO:
        return check_zero_len(true, op->offset, op->len);
    case FY_OP_ROUND_END:
    case FY_OP_ROUND_ACK:
        if (!op->data)
            return fy_error(FY_E_INVAL, "%s operation: data is NULL, must "
                            "point at its counts", name);
        return 0;
    case FY_OP_MISS:
        if (!op->data)
            return fy_error(FY_E_INVAL, "MISS operation: data is NULL with "
                            "length %" PRIu64, op->len);
        for (uint32_t i = 0; i < length / 8; i++) {
            uint64_t off;
            int rc;

            memcpy(&off, (const uint8_t *)op->data + 8 * i, sizeof(off));
            rc = check_aligned(true, op->type, "entry", off);
            if (rc)
                return rc;
        }
        return 0;
    case FY_OP_ERROR:
        if (length && !op->data)
            return fy_error(FY_E_INVAL, "ERROR operation: message is NULL "
                            "with length %" PRIu64, op->len);
        return 0;
    case FY_OP_DATA:
        if (length && !op->data)
            return fy_error(FY_E_INVAL, "DATA operation: data is NULL "
                            "with length %" PRIu64, op->len);
        return 0;
    default:
        return 0;
    }
}

static void put_header(uint8_t *buf, unsigned type, uint8_t flags,
                       uint32_t length, uint64_t arg, uint32_t payload_sum)
{
    buf[0] = FY_PROTO_MAGIC;
    buf[1] = FY_PROTO_VERSION;
    buf[2] = (uint8_t)type;
    buf[3] = flags;
    put_le32(buf + 4, length);
    put_le64(buf + 8, arg);
    put_le32(buf + 16, payload_sum);
    put_le32(buf + 20, sum32(buf, 20));
}

int fy_proto_encode(const struct fy_op *op, uint8_t *buf, size_t cap)
{
    uint32_t length, inline_len;
    uint8_t *p;
    int rc;

    if (!op || (!buf && cap))
        return fy_error(FY_E_INVAL, "fy_proto_encode: op or buf is NULL");
    if (!payload_sizes(op, &length, &inline_len)) {
        if (op->type == FY_OP_MISS)
            return fy_error(FY_E_INVAL,
                            "MISS operation: length %" PRIu64
                            ", must be 8..%u bytes in steps of 8",
                            op->len, MISS_PAYLOAD_MAX);
        if (op->type == FY_OP_DATA)
            return fy_error(FY_E_INVAL,
                            "DATA operation: %" PRIu64
                            " bytes, at most %u per operation",
                            op->len, FY_DATA_MAX);
        return fy_error(FY_E_INVAL, "operation of unknown type %u",
                        op->type);
    }
    rc = check_header_rules(true, op->type, op->flags, op->offset, NULL);
    if (!rc)
        rc = check_op_payload(op, length);
    if (rc)
        return rc;
    if (cap < FY_FRAME_HDR_SIZE + inline_len)
        return fy_error(FY_E_NOSPACE,
                        "%s operation: frame of %u bytes, buffer of %zu",
                        fy_proto_type_name(op->type),
                        FY_FRAME_HDR_SIZE + inline_len, cap);

    p = buf + FY_FRAME_HDR_SIZE;
    switch (op->type) {
    case FY_OP_PAGE:
    case FY_OP_REF:
    case FY_OP_VERIFY:
    case FY_OP_VERIFY_RESULT:
        put_hash(p, op->hash);
        break;
    case FY_OP_ZERO:
        put_le64(p, op->len);
        break;
    case FY_OP_ROUND_END: {
        struct fy_round_counts c;

        memcpy(&c, op->data, sizeof(c));
        put_le64(p, c.pages);
        put_le64(p + 8, c.zero_pages);
        put_le64(p + 16, c.ref_pages);
        put_le64(p + 24, c.ops);
        break;
    }
    case FY_OP_ROUND_ACK: {
        struct fy_round_ack a;

        memcpy(&a, op->data, sizeof(a));
        put_le64(p, a.applied);
        put_le64(p + 8, a.misses);
        break;
    }
    case FY_OP_MISS:
        /* op->data is the caller's array in host order. */
        for (uint32_t i = 0; i < length / 8; i++) {
            uint64_t off;

            memcpy(&off, (const uint8_t *)op->data + 8 * i, sizeof(off));
            put_le64(p + 8 * i, off);
        }
        break;
    case FY_OP_ERROR:
    case FY_OP_DATA:
        if (length)
            memcpy(p, op->data, length);
        break;
    default: /* DONE */
        break;
    }
    put_header(buf, op->type, op->flags, length, op->offset,
               sum32(p, inline_len));
    return (int)(FY_FRAME_HDR_SIZE + inline_len);
}

int fy_proto_encode_data_header(const struct fy_op *op, uint8_t *buf,
                                size_t cap)
{
    uint32_t length, inline_len;
    int rc;

    if (!op || !buf || op->type != FY_OP_DATA)
        return fy_error(FY_E_INVAL, "fy_proto_encode_data_header: not a DATA "
                        "operation");
    if (!payload_sizes(op, &length, &inline_len))
        return fy_error(FY_E_INVAL,
                        "DATA operation: %" PRIu64
                        " bytes, at most %u per operation",
                        op->len, FY_DATA_MAX);
    rc = check_header_rules(true, op->type, op->flags, op->offset, NULL);
    if (!rc)
        rc = check_op_payload(op, length);
    if (rc)
        return rc;
    if (cap < FY_FRAME_HDR_SIZE)
        return fy_error(FY_E_NOSPACE, "DATA operation: header of %u bytes, "
                        "buffer of %zu", FY_FRAME_HDR_SIZE, cap);
    put_header(buf, FY_OP_DATA, 0, length, op->offset,
               sum32(length ? op->data : buf, length));
    return FY_FRAME_HDR_SIZE;
}

/* ---- decoding --------------------------------------------------------- */

struct frame_hdr {
    uint8_t type;
    uint8_t flags;
    uint32_t length;
    uint64_t arg;
    uint32_t payload_sum;
};

/* Steps 1 and 2 of the order above.  'handshake' selects which types are
 * welcome: HELLO, HELLO_ACK and ERROR, or every type but the first two.
 * Returns 0 with *h filled, -FY_E_AGAIN for a partial header, or an
 * error. */
static int read_header(const uint8_t *buf, size_t avail, bool handshake,
                       struct frame_hdr *h)
{
    uint32_t sum;

    if (avail >= 1 && buf[0] != FY_PROTO_MAGIC)
        return fy_error(FY_E_PROTO,
                        "not a Ferry frame: first byte 0x%02x, expected "
                        "0x%02x",
                        buf[0], FY_PROTO_MAGIC);
    if (avail >= 2 && buf[1] != FY_PROTO_VERSION)
        return fy_error(FY_E_VERSION,
                        "peer speaks protocol v%u, this build speaks v%u",
                        buf[1], FY_PROTO_VERSION);
    if (avail < FY_FRAME_HDR_SIZE)
        return -FY_E_AGAIN;

    sum = get_le32(buf + 20);
    if (sum != sum32(buf, 20))
        return fy_error(FY_E_CHECKSUM,
                        "frame header checksum 0x%08" PRIx32
                        " does not match its bytes (0x%08" PRIx32 ")",
                        sum, sum32(buf, 20));

    h->type = buf[2];
    h->flags = buf[3];
    h->length = get_le32(buf + 4);
    h->arg = get_le64(buf + 8);
    h->payload_sum = get_le32(buf + 16);

    if (!type_known(h->type))
        return fy_error(FY_E_PROTO, "unknown frame type 0x%02x", h->type);
    if (handshake && h->type != FY_FRAME_HELLO &&
        h->type != FY_FRAME_HELLO_ACK && h->type != FY_OP_ERROR)
        return fy_error(FY_E_PROTO,
                        "%s frame during the handshake, expected HELLO, "
                        "HELLO_ACK or ERROR",
                        fy_proto_type_name(h->type));
    if (!handshake &&
        (h->type == FY_FRAME_HELLO || h->type == FY_FRAME_HELLO_ACK))
        return fy_error(FY_E_PROTO, "%s frame after the handshake",
                        fy_proto_type_name(h->type));
    if (h->length > FY_FRAME_MAX_PAYLOAD)
        return fy_error(FY_E_TOOBIG,
                        "%s frame: payload length %" PRIu32
                        " exceeds the limit %u",
                        fy_proto_type_name(h->type), h->length,
                        FY_FRAME_MAX_PAYLOAD);
    return check_length(h->type, h->length);
}

/* The start of step 3: the payload checksum (for PAGE, of the hash). */
static int check_payload_sum(const struct frame_hdr *h, const uint8_t *p)
{
    uint32_t n = h->type == FY_OP_PAGE    ? HASH_PAYLOAD
                 : h->type == FY_FRAME_PAGES ? (uint32_t)h->arg * FY_PAGES_DESC_SIZE
                                             : h->length;
    uint32_t sum = sum32(p, n);

    if (sum != h->payload_sum)
        return fy_error(FY_E_CHECKSUM,
                        "%s frame: payload checksum 0x%08" PRIx32
                        " does not match its %" PRIu32 " bytes (0x%08" PRIx32
                        ")",
                        fy_proto_type_name(h->type), h->payload_sum, n, sum);
    return 0;
}

/* The rest of step 3: payload fields into *op (a local of the caller, so
 * that its own is written only on success). */
static int read_payload(const struct frame_hdr *h, const uint8_t *p,
                        const struct fy_proto_limits *lim, struct fy_op *op,
                        union fy_proto_scratch *scratch)
{
    int rc;

    memset(op, 0, sizeof(*op));
    op->type = h->type;
    op->flags = h->flags;
    op->offset = h->arg;

    switch (h->type) {
    case FY_OP_PAGE: {
        fy_hash128 got;

        op->hash = get_hash(p);
        op->data = p + HASH_PAYLOAD;
        op->len = FY_PAGE_SIZE;
        if (lim->defer_page_check) {
            op->flags |= FY_OP_F_UNCHECKED;
            return 0;
        }
        got = fy_page_hash(op->data);
        if (!fy_hash_eq(got, op->hash))
            return fy_error(FY_E_CHECKSUM,
                            "PAGE frame: page at offset 0x%" PRIx64
                            " hashes to %016" PRIx64 "%016" PRIx64
                            ", the frame says %016" PRIx64 "%016" PRIx64,
                            h->arg, got.hi, got.lo, op->hash.hi, op->hash.lo);
        return 0;
    }
    case FY_OP_ZERO:
        op->len = get_le64(p);
        rc = check_zero_len(false, h->arg, op->len);
        if (!rc)
            rc = check_in_region(h->type, "offset", h->arg, op->len, lim);
        return rc;
    case FY_OP_REF:
    case FY_OP_VERIFY:
    case FY_OP_VERIFY_RESULT:
        op->hash = get_hash(p);
        return 0;
    case FY_OP_ROUND_END:
        scratch->counts.pages = get_le64(p);
        scratch->counts.zero_pages = get_le64(p + 8);
        scratch->counts.ref_pages = get_le64(p + 16);
        scratch->counts.ops = get_le64(p + 24);
        op->data = &scratch->counts;
        op->len = sizeof(scratch->counts);
        return 0;
    case FY_OP_ROUND_ACK:
        scratch->ack.applied = get_le64(p);
        scratch->ack.misses = get_le64(p + 8);
        op->data = &scratch->ack;
        op->len = sizeof(scratch->ack);
        return 0;
    case FY_OP_MISS:
        for (uint32_t i = 0; i < h->length / 8; i++) {
            uint64_t off = get_le64(p + 8 * i);

            rc = check_aligned(false, h->type, "entry", off);
            if (!rc)
                rc = check_in_region(h->type, "entry", off, FY_PAGE_SIZE,
                                     lim);
            if (rc)
                return rc;
        }
        op->data = p;
        op->len = h->length;
        return 0;
    case FY_OP_ERROR:
        if (h->arg == 0 || h->arg >= FY_E__COUNT)
            op->offset = FY_E_PEER;
        op->data = p;
        op->len = h->length;
        return 0;
    case FY_OP_DATA:
        op->data = p;
        op->len = h->length;
        return 0;
    default: /* DONE */
        return 0;
    }
}

/* PAGES: the payload holds exactly arg descriptors and pages. */
static int check_pages_length(const struct frame_hdr *h)
{
    if (h->type != FY_FRAME_PAGES || h->length == h->arg * PAGES_UNIT)
        return 0;
    return fy_error(FY_E_PROTO,
                    "PAGES frame: payload length %" PRIu32 " for %" PRIu64
                    " pages, must be %" PRIu64,
                    h->length, h->arg, h->arg * PAGES_UNIT);
}

/* Every page of a whole PAGES frame against its hash. */
static int check_pages_data(const struct fy_pages_prefix *pp)
{
    const uint8_t *pages = pp->desc + (size_t)pp->n * FY_PAGES_DESC_SIZE;

    for (unsigned i = 0; i < pp->n; i++) {
        uint64_t off;
        fy_hash128 want, got;

        fy_proto_pages_desc(pp, i, &off, &want);
        got = fy_page_hash(pages + (size_t)i * FY_PAGE_SIZE);
        if (!fy_hash_eq(got, want))
            return fy_error(FY_E_CHECKSUM,
                            "PAGES frame: page %u (offset 0x%" PRIx64
                            ") hashes to %016" PRIx64 "%016" PRIx64
                            ", the frame says %016" PRIx64 "%016" PRIx64,
                            i, off, got.hi, got.lo, want.hi, want.lo);
    }
    return 0;
}

int fy_proto_decode_pages_prefix(const uint8_t *buf, size_t avail,
                                 const struct fy_proto_limits *lim,
                                 struct fy_pages_prefix *pp)
{
    struct frame_hdr h;
    size_t prefix;
    int rc;

    if ((!buf && avail) || !lim || !pp)
        return fy_error(FY_E_INVAL, "fy_proto_decode_pages_prefix: NULL argument");
    if (avail >= 3 && buf[0] == FY_PROTO_MAGIC && buf[1] == FY_PROTO_VERSION &&
        buf[2] != FY_FRAME_PAGES)
        return 1;
    rc = read_header(buf, avail, false, &h);
    if (rc)
        return rc;
    if (h.type != FY_FRAME_PAGES)
        return 1;
    rc = check_header_rules(false, h.type, h.flags, h.arg, lim);
    if (!rc)
        rc = check_pages_length(&h);
    if (rc)
        return rc;
    prefix = FY_FRAME_HDR_SIZE + (size_t)h.arg * FY_PAGES_DESC_SIZE;
    if (avail < prefix)
        return -FY_E_AGAIN;
    rc = check_payload_sum(&h, buf + FY_FRAME_HDR_SIZE);
    if (rc)
        return rc;
    pp->n = (unsigned)h.arg;
    pp->prefix_len = prefix;
    pp->frame_len = FY_FRAME_HDR_SIZE + (size_t)h.length;
    pp->desc = buf + FY_FRAME_HDR_SIZE;
    for (unsigned i = 0; i < pp->n; i++) {
        uint64_t off = get_le64(pp->desc + (size_t)i * FY_PAGES_DESC_SIZE);
        rc = check_aligned(false, h.type, "page offset", off);
        if (!rc)
            rc = check_in_region(h.type, "page offset", off, FY_PAGE_SIZE, lim);
        if (rc)
            return rc;
    }
    return 0;
}

void fy_proto_pages_desc(const struct fy_pages_prefix *pp, unsigned i,
                         uint64_t *offset, fy_hash128 *hash)
{
    const uint8_t *d = pp->desc + (size_t)i * FY_PAGES_DESC_SIZE;

    *offset = get_le64(d);
    *hash = get_hash(d + 8);
}

int fy_proto_encode_pages(const struct fy_op *ops, unsigned n, uint8_t *buf,
                          size_t cap)
{
    size_t need = FY_FRAME_HDR_SIZE + (size_t)n * FY_PAGES_DESC_SIZE;
    uint8_t *d;

    if (!ops || !buf)
        return fy_error(FY_E_INVAL, "fy_proto_encode_pages: ops or buf is NULL");
    if (n == 0 || n > FY_PAGES_MAX)
        return fy_error(FY_E_INVAL, "PAGES operation: %u pages, 1..%u allowed",
                        n, FY_PAGES_MAX);
    if (cap < need)
        return fy_error(FY_E_NOSPACE, "PAGES operation: frame prefix of %zu "
                        "bytes, buffer of %zu", need, cap);
    d = buf + FY_FRAME_HDR_SIZE;
    for (unsigned i = 0; i < n; i++) {
        int rc;
        if (ops[i].type != FY_OP_PAGE || ops[i].flags || !ops[i].data)
            return fy_error(FY_E_INVAL, "PAGES operation: entry %u is not a "
                            "PAGE with data", i);
        if ((rc = check_aligned(true, FY_FRAME_PAGES, "page offset", ops[i].offset)))
            return rc;
        put_le64(d + (size_t)i * FY_PAGES_DESC_SIZE, ops[i].offset);
        put_hash(d + (size_t)i * FY_PAGES_DESC_SIZE + 8, ops[i].hash);
    }
    put_header(buf, FY_FRAME_PAGES, 0, n * PAGES_UNIT, n,
               sum32(d, (size_t)n * FY_PAGES_DESC_SIZE));
    return (int)need;
}

int fy_proto_decode(const uint8_t *buf, size_t avail,
                    const struct fy_proto_limits *lim, struct fy_op *op,
                    union fy_proto_scratch *scratch, size_t *frame_len)
{
    struct frame_hdr h;
    struct fy_op o;
    size_t total;
    int rc;

    if (frame_len)
        *frame_len = 0;
    if ((!buf && avail) || !lim || !op || !scratch || !frame_len)
        return fy_error(FY_E_INVAL, "fy_proto_decode: NULL argument");
    if (lim->page_size != 0 && lim->page_size != FY_PAGE_SIZE)
        return fy_error(FY_E_INVAL,
                        "fy_proto_decode: page size %" PRIu32
                        ", protocol v1 has %u",
                        lim->page_size, FY_PAGE_SIZE);

    rc = read_header(buf, avail, false, &h);
    if (!rc)
        rc = check_header_rules(false, h.type, h.flags, h.arg, lim);
    if (!rc)
        rc = check_pages_length(&h);
    if (rc)
        return rc;
    total = FY_FRAME_HDR_SIZE + (size_t)h.length;
    if (avail < total) {
        *frame_len = total;
        return -FY_E_AGAIN;
    }
    if (h.type == FY_FRAME_PAGES) {
        struct fy_pages_prefix pp;
        rc = fy_proto_decode_pages_prefix(buf, avail, lim, &pp);
        if (!rc && !lim->defer_page_check)
            rc = check_pages_data(&pp);
        if (rc)
            return rc;
        memset(op, 0, sizeof(*op));
        op->type = FY_FRAME_PAGES;
        op->len = pp.n;
        op->data = buf;
        if (lim->defer_page_check)
            op->flags = FY_OP_F_UNCHECKED;
        *frame_len = total;
        return 0;
    }
    rc = check_payload_sum(&h, buf + FY_FRAME_HDR_SIZE);
    if (!rc)
        rc = read_payload(&h, buf + FY_FRAME_HDR_SIZE, lim, &o, scratch);
    if (rc)
        return rc;
    *op = o;
    *frame_len = total;
    return 0;
}

uint64_t fy_proto_miss_offset(const struct fy_op *op, uint64_t i)
{
    /* Past the end is a caller bug; no valid offset looks like this. */
    if (!op || !op->data || i >= op->len / 8)
        return UINT64_MAX;
    return get_le64((const uint8_t *)op->data + 8 * i);
}

/* ---- handshake -------------------------------------------------------- */

/* HELLO payload offsets. */
#define HELLO_OFF_MAGIC 0
#define HELLO_OFF_VERSION 8
#define HELLO_OFF_CAPS 12
#define HELLO_OFF_SESSION 16
#define HELLO_OFF_REGION 32
#define HELLO_OFF_PAGE 40
#define HELLO_OFF_INDEX 44
#define HELLO_OFF_COUNT 46

/* The session rules both sides of the handshake check. */
static int check_session(bool enc, unsigned type, uint64_t region_size,
                         uint32_t page_size, uint32_t caps, uint32_t streams,
                         uint32_t index)
{
    const char *name = fy_proto_type_name(type);
    const char *what = noun(enc);
    int code = rule_code(enc, FY_E_PROTO);

    if (page_size != FY_PAGE_SIZE)
        return fy_error(code,
                        "%s %s: page size %" PRIu32 ", protocol v1 has %u",
                        name, what, page_size, FY_PAGE_SIZE);
    if (region_size == 0 || region_size % FY_PAGE_SIZE)
        return fy_error(code,
                        "%s %s: region size 0x%" PRIx64
                        " is not a non-zero multiple of the page size %u",
                        name, what, region_size, FY_PAGE_SIZE);
    if (streams < 1 || streams > MAX_STREAMS)
        return fy_error(code, "%s %s: stream count %" PRIu32 ", must be 1..%u",
                        name, what, streams, MAX_STREAMS);
    if (index >= streams)
        return fy_error(code,
                        "%s %s: stream index %" PRIu32
                        " is not below the stream count %" PRIu32,
                        name, what, index, streams);
    if (caps & ~(uint32_t)FY_CAPS_V1)
        return fy_error(code,
                        "%s %s: capability bits 0x%" PRIx32
                        " unknown, protocol v1 knows 0x%x",
                        name, what, caps & ~(uint32_t)FY_CAPS_V1, FY_CAPS_V1);
    return 0;
}

int fy_proto_encode_hello(const struct fy_session_info *info,
                          uint32_t stream_index, bool ack, uint8_t *buf,
                          size_t cap)
{
    const size_t size = FY_FRAME_HDR_SIZE + FY_HELLO_PAYLOAD_SIZE;
    unsigned type;
    uint8_t *p;
    int rc;

    if (!info || (!buf && cap))
        return fy_error(FY_E_INVAL, "fy_proto_encode_hello: NULL argument");
    type = ack ? FY_FRAME_HELLO_ACK : FY_FRAME_HELLO;
    rc = check_session(true, type, info->region_size, info->page_size,
                       info->caps, info->streams, stream_index);
    if (rc)
        return rc;
    if (cap < size)
        return fy_error(FY_E_NOSPACE,
                        "%s operation: frame of %zu bytes, buffer of %zu",
                        fy_proto_type_name(type), size, cap);

    p = buf + FY_FRAME_HDR_SIZE;
    memcpy(p + HELLO_OFF_MAGIC, FY_HELLO_MAGIC, 8);
    put_le32(p + HELLO_OFF_VERSION, FY_PROTO_VERSION);
    put_le32(p + HELLO_OFF_CAPS, info->caps);
    memcpy(p + HELLO_OFF_SESSION, info->session_id, 16);
    put_le64(p + HELLO_OFF_REGION, info->region_size);
    put_le32(p + HELLO_OFF_PAGE, info->page_size);
    put_le16(p + HELLO_OFF_INDEX, (uint16_t)stream_index);
    put_le16(p + HELLO_OFF_COUNT, (uint16_t)info->streams);
    put_header(buf, type, 0, FY_HELLO_PAYLOAD_SIZE, 0,
               sum32(p, FY_HELLO_PAYLOAD_SIZE));
    return (int)size;
}

/* An ERROR frame answering a HELLO: the peer's refusal, recorded. */
static int peer_refused(const struct frame_hdr *h, const uint8_t *p)
{
    char msg[FY_ERROR_MSG_MAX + 1];
    int code = h->arg > 0 && h->arg < FY_E__COUNT ? (int)h->arg : FY_E_PEER;

    /* The text is the peer's: keep control bytes out of logs and terminals. */
    for (uint32_t i = 0; i < h->length; i++)
        msg[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    msg[h->length] = '\0';
    return fy_error(FY_E_PEER, "peer refused: %s",
                    h->length ? msg : fy_strerror(code));
}

int fy_proto_decode_hello(const uint8_t *buf, size_t avail,
                          struct fy_session_info *info,
                          uint32_t *stream_index, bool *ack,
                          size_t *frame_len)
{
    struct frame_hdr h;
    const uint8_t *p;
    uint32_t version, caps, page_size, index, count;
    uint64_t region_size;
    size_t total;
    int rc;

    if (frame_len)
        *frame_len = 0;
    if ((!buf && avail) || !info || !stream_index || !ack || !frame_len)
        return fy_error(FY_E_INVAL, "fy_proto_decode_hello: NULL argument");

    rc = read_header(buf, avail, true, &h);
    if (!rc)
        rc = check_header_rules(false, h.type, h.flags, h.arg, NULL);
    if (rc)
        return rc;
    total = FY_FRAME_HDR_SIZE + (size_t)h.length;
    if (avail < total) {
        *frame_len = total;
        return -FY_E_AGAIN;
    }
    p = buf + FY_FRAME_HDR_SIZE;
    rc = check_payload_sum(&h, p);
    if (rc)
        return rc;
    if (h.type == FY_OP_ERROR)
        return peer_refused(&h, p);

    if (memcmp(p + HELLO_OFF_MAGIC, FY_HELLO_MAGIC, 8) != 0)
        return fy_error(FY_E_PROTO, "%s frame: payload does not open with "
                        "\"%s\"", fy_proto_type_name(h.type), FY_HELLO_MAGIC);
    version = get_le32(p + HELLO_OFF_VERSION);
    if (version != FY_PROTO_VERSION)
        return fy_error(FY_E_VERSION,
                        "peer speaks protocol v%" PRIu32
                        ", this build speaks v%u",
                        version, FY_PROTO_VERSION);
    caps = get_le32(p + HELLO_OFF_CAPS);
    region_size = get_le64(p + HELLO_OFF_REGION);
    page_size = get_le32(p + HELLO_OFF_PAGE);
    index = get_le16(p + HELLO_OFF_INDEX);
    count = get_le16(p + HELLO_OFF_COUNT);
    rc = check_session(false, h.type, region_size, page_size, caps, count,
                       index);
    if (rc)
        return rc;

    memset(info, 0, sizeof(*info));
    memcpy(info->session_id, p + HELLO_OFF_SESSION, 16);
    info->region_size = region_size;
    info->page_size = page_size;
    info->caps = caps;
    info->streams = count;
    *stream_index = index;
    *ack = h.type == FY_FRAME_HELLO_ACK;
    *frame_len = total;
    return 0;
}
