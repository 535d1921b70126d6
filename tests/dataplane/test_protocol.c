/* Unit tests of the wire protocol v1 codec (dataplane/protocol.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <xxhash.h>

#include "dataplane/protocol.h"
#include "ferry/classifier.h"
#include "ferry/error.h"

#define HDR FY_FRAME_HDR_SIZE
#define PAGE FY_PAGE_SIZE
#define REGION (64u * PAGE)
#define BUF_SIZE (HDR + FY_FRAME_MAX_PAYLOAD + 64)
#define PAGE_FRAME (HDR + 16 + PAGE)
#define HELLO_FRAME (HDR + FY_HELLO_PAYLOAD_SIZE)
#define DESC FY_PAGES_DESC_SIZE
/* Payload bytes one page adds to a PAGES frame. */
#define PAGES_UNIT (DESC + PAGE)
#define PAGES_FRAME(n) (HDR + (size_t)(n) * PAGES_UNIT)
#define PAGES_PREFIX(n) (HDR + (size_t)(n) * DESC)

static const struct fy_proto_limits lim = {REGION, PAGE};

struct fixture {
    uint8_t buf[BUF_SIZE];
    uint8_t page[PAGE];
    uint8_t pages[FY_PAGES_MAX][PAGE]; /* each with its own content */
    struct fy_op pops[FY_PAGES_MAX + 1]; /* PAGE ops over pages[] */
    struct fy_op op;
    union fy_proto_scratch scratch;
    size_t frame_len;
    struct fy_session_info info;
    uint32_t index;
    bool ack;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    for (unsigned i = 0; i < PAGE; i++)
        f->page[i] = (uint8_t)(i * 7 + 3);
    for (unsigned k = 0; k < FY_PAGES_MAX; k++)
        for (unsigned i = 0; i < PAGE; i++)
            f->pages[k][i] = (uint8_t)(i * 13 + k * 101 + 1);
    for (unsigned i = 0; i < 16; i++)
        f->info.session_id[i] = (uint8_t)(0xA0 + i);
    f->info.region_size = REGION;
    f->info.page_size = PAGE;
    f->info.caps = FY_CAPS_V1;
    f->info.streams = 4;
    fy_error_clear();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    free(*state);
    return 0;
}

/* ---- helpers ----------------------------------------------------------- */

static void le32_put(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void le64_put(uint8_t *p, uint64_t v)
{
    for (unsigned i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t le32_get(const uint8_t *p)
{
    uint32_t v = 0;

    for (unsigned i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t le64_get(const uint8_t *p)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Recomputes the header checksum, as a peer that means what it sends. */
static void reseal_header(uint8_t *buf)
{
    le32_put(buf + 20, (uint32_t)XXH3_64bits(buf, 20));
}

/* Recomputes the payload checksum (when the payload it covers is within
 * 'have' bytes) and then the header checksum.  For PAGE the sum covers the
 * hash, for PAGES the descriptors (arg of them). */
static void reseal(uint8_t *buf, size_t have)
{
    uint64_t n = le32_get(buf + 4);

    if (buf[2] == FY_OP_PAGE)
        n = 16;
    else if (buf[2] == FY_FRAME_PAGES)
        n = le64_get(buf + 8) <= FY_PAGES_MAX ? le64_get(buf + 8) * DESC
                                              : UINT64_MAX;
    if (have >= HDR && n <= have - HDR)
        le32_put(buf + 16, (uint32_t)XXH3_64bits(buf + HDR, n));
    reseal_header(buf);
}

/* Writes a frame from raw fields with correct checksums, independently of
 * the encoder, so that frames the encoder refuses can be built. */
static size_t raw_frame(uint8_t *buf, unsigned type, unsigned flags,
                        uint32_t length, uint64_t arg, const void *payload,
                        size_t payload_len)
{
    buf[0] = FY_PROTO_MAGIC;
    buf[1] = FY_PROTO_VERSION;
    buf[2] = (uint8_t)type;
    buf[3] = (uint8_t)flags;
    le32_put(buf + 4, length);
    le64_put(buf + 8, arg);
    if (payload_len)
        memcpy(buf + HDR, payload, payload_len);
    reseal(buf, HDR + payload_len);
    return HDR + payload_len;
}

static int decode(struct fixture *f, size_t avail)
{
    return fy_proto_decode(f->buf, avail, &lim, &f->op, &f->scratch,
                           &f->frame_len);
}

static int decode_hello(struct fixture *f, size_t avail)
{
    return fy_proto_decode_hello(f->buf, avail, &f->info, &f->index, &f->ack,
                                 &f->frame_len);
}

static size_t put_op(struct fixture *f, const struct fy_op *op)
{
    int n = fy_proto_encode(op, f->buf, sizeof(f->buf));

    assert_true(n > 0);
    assert_int_equal((size_t)n, fy_proto_encoded_size(op));
    return (size_t)n;
}

/* A whole PAGE frame (header, hash, page) at f->buf. */
static size_t put_page(struct fixture *f, uint64_t off)
{
    struct fy_op op = {.type = FY_OP_PAGE, .offset = off,
                       .hash = fy_page_hash(f->page), .data = f->page,
                       .len = PAGE};
    size_t n = put_op(f, &op);

    memcpy(f->buf + n, f->page, PAGE);
    return n + PAGE;
}

static size_t put_zero(struct fixture *f, uint64_t off, uint64_t len)
{
    struct fy_op op = {.type = FY_OP_ZERO, .offset = off, .len = len};

    return put_op(f, &op);
}

static size_t put_hello(struct fixture *f, uint32_t index, bool ack)
{
    int n = fy_proto_encode_hello(&f->info, index, ack, f->buf,
                                  sizeof(f->buf));

    assert_int_equal(n, HELLO_FRAME);
    return (size_t)n;
}

/* Offset of page i in the PAGES frames of these tests: distinct for up to
 * 64 pages and out of order, so a decoder that assumed consecutive pages
 * would be caught. */
static uint64_t pages_off(unsigned i)
{
    return (uint64_t)((i * 5u + 3u) % 64u) * PAGE;
}

/* A whole PAGES frame of f->pages[0..n-1] at buf (header, descriptors,
 * pages); f->pops[0..n-1] are the PAGE operations it carries.  Returns the
 * frame size. */
static size_t put_pages_at(struct fixture *f, uint8_t *buf, size_t cap,
                           unsigned n)
{
    int w;

    for (unsigned i = 0; i < n; i++)
        f->pops[i] = (struct fy_op){.type = FY_OP_PAGE, .offset = pages_off(i),
                                    .len = PAGE,
                                    .hash = fy_page_hash(f->pages[i]),
                                    .data = f->pages[i]};
    w = fy_proto_encode_pages(f->pops, n, buf, cap);
    assert_int_equal(w, PAGES_PREFIX(n));
    assert_true(PAGES_FRAME(n) <= cap);
    for (unsigned i = 0; i < n; i++)
        memcpy(buf + w + (size_t)i * PAGE, f->pages[i], PAGE);
    return PAGES_FRAME(n);
}

static size_t put_pages(struct fixture *f, unsigned n)
{
    return put_pages_at(f, f->buf, sizeof(f->buf), n);
}

static int decode_prefix(struct fixture *f, size_t avail,
                         struct fy_pages_prefix *pp)
{
    return fy_proto_decode_pages_prefix(f->buf, avail, &lim, pp);
}

/* Rewrites the offset of descriptor i of the PAGES frame at f->buf and
 * reseals it, as a peer that means it. */
static void pages_set_offset(struct fixture *f, unsigned i, uint64_t off)
{
    unsigned n = (unsigned)le64_get(f->buf + 8);

    le64_put(f->buf + HDR + (size_t)i * DESC, off);
    reseal(f->buf, PAGES_PREFIX(n));
}

/* *pp describes the frame put_pages(f, n) wrote at f->buf. */
static void assert_prefix_of_put_pages(const struct fixture *f,
                                       const struct fy_pages_prefix *pp,
                                       unsigned n)
{
    assert_int_equal(pp->n, n);
    assert_int_equal(pp->prefix_len, PAGES_PREFIX(n));
    assert_int_equal(pp->frame_len, PAGES_FRAME(n));
    assert_ptr_equal(pp->desc, f->buf + HDR);
    for (unsigned i = 0; i < n; i++) {
        uint64_t off = 1;
        fy_hash128 h = {0, 0};

        fy_proto_pages_desc(pp, i, &off, &h);
        assert_int_equal(off, f->pops[i].offset);
        assert_true(fy_hash_eq(h, f->pops[i].hash));
    }
}

static void assert_detail_has(const char *needle)
{
    const char *d = fy_error_detail();

    if (!strstr(d, needle))
        fail_msg("error detail \"%s\" lacks \"%s\"", d, needle);
}

static void assert_encode_fails(const struct fy_op *op, int code)
{
    uint8_t buf[HDR + 8 * FY_MISS_MAX_PER_FRAME + 64];

    assert_int_equal(fy_proto_encode(op, buf, sizeof(buf)), -code);
}

/* ---- round trips ------------------------------------------------------- */

static void test_protocol__page_roundtrip__decodes_same_offset_hash_data(
    void **state)
{
    struct fixture *f = *state;
    size_t n = put_page(f, 5 * PAGE);

    assert_int_equal(n, PAGE_FRAME);
    assert_int_equal(decode(f, n), 0);
    assert_int_equal(f->frame_len, n);
    assert_int_equal(f->op.type, FY_OP_PAGE);
    assert_int_equal(f->op.flags, 0);
    assert_int_equal(f->op.offset, 5 * PAGE);
    assert_int_equal(f->op.len, PAGE);
    assert_true(fy_hash_eq(f->op.hash, fy_page_hash(f->page)));
    assert_ptr_equal(f->op.data, f->buf + HDR + 16);
    assert_memory_equal(f->op.data, f->page, PAGE);
}

static void test_protocol__page_in_last_slot__decodes(void **state)
{
    struct fixture *f = *state;
    size_t n = put_page(f, REGION - PAGE);

    assert_int_equal(decode(f, n), 0);
    assert_int_equal(f->op.offset, REGION - PAGE);
}

static void test_protocol__zero_roundtrip__decodes_same_offset_and_length(
    void **state)
{
    struct fixture *f = *state;
    size_t n = put_zero(f, 2 * PAGE, 7 * PAGE);

    assert_int_equal(n, HDR + 8);
    assert_int_equal(decode(f, n), 0);
    assert_int_equal(f->frame_len, n);
    assert_int_equal(f->op.type, FY_OP_ZERO);
    assert_int_equal(f->op.offset, 2 * PAGE);
    assert_int_equal(f->op.len, 7 * PAGE);
}

static void test_protocol__zero_range_to_region_end__decodes(void **state)
{
    struct fixture *f = *state;
    size_t n = put_zero(f, 0, REGION);

    assert_int_equal(decode(f, n), 0);
    assert_int_equal(f->op.len, REGION);
}

static void test_protocol__ref_roundtrip__decodes_same_offset_and_hash(
    void **state)
{
    struct fixture *f = *state;
    struct fy_op op = {.type = FY_OP_REF, .offset = 9 * PAGE,
                       .hash = {0x1122334455667788u, 0x99aabbccddeeff00u}};
    size_t n = put_op(f, &op);

    assert_int_equal(n, HDR + 16);
    assert_int_equal(decode(f, n), 0);
    assert_int_equal(f->op.type, FY_OP_REF);
    assert_int_equal(f->op.offset, 9 * PAGE);
    assert_true(fy_hash_eq(f->op.hash, op.hash));
}

static void test_protocol__round_end_roundtrip__decodes_counts_and_flags(
    void **state)
{
    struct fixture *f = *state;
    struct fy_round_counts c = {11, 22, 33, 66};
    struct fy_op op = {.type = FY_OP_ROUND_END,
                       .flags = FY_OP_F_FINAL | FY_OP_F_FIXUP,
                       .offset = 7, .data = &c, .len = sizeof(c)};
    size_t n = put_op(f, &op);
    const struct fy_round_counts *got;

    assert_int_equal(n, HDR + 32);
    assert_int_equal(decode(f, n), 0);
    assert_int_equal(f->op.type, FY_OP_ROUND_END);
    assert_int_equal(f->op.flags, FY_OP_F_FINAL | FY_OP_F_FIXUP);
    assert_int_equal(f->op.offset, 7);
    assert_ptr_equal(f->op.data, &f->scratch.counts);
    assert_int_equal(f->op.len, sizeof(c));
    got = f->op.data;
    assert_int_equal(got->pages, 11);
    assert_int_equal(got->zero_pages, 22);
    assert_int_equal(got->ref_pages, 33);
    assert_int_equal(got->ops, 66);
}

static void test_protocol__round_ack_roundtrip__decodes_applied_and_misses(
    void **state)
{
    struct fixture *f = *state;
    struct fy_round_ack a = {1000, 3};
    struct fy_op op = {.type = FY_OP_ROUND_ACK, .offset = 2, .data = &a};
    size_t n = put_op(f, &op);
    const struct fy_round_ack *got;

    assert_int_equal(n, HDR + 16);
    assert_int_equal(decode(f, n), 0);
    assert_int_equal(f->op.type, FY_OP_ROUND_ACK);
    assert_int_equal(f->op.offset, 2);
    assert_ptr_equal(f->op.data, &f->scratch.ack);
    assert_int_equal(f->op.len, sizeof(a));
    got = f->op.data;
    assert_int_equal(got->applied, 1000);
    assert_int_equal(got->misses, 3);
}

static void test_protocol__miss_roundtrip__decodes_every_offset(void **state)
{
    struct fixture *f = *state;
    uint64_t offs[3] = {0, 17 * PAGE, REGION - PAGE};
    struct fy_op op = {.type = FY_OP_MISS, .data = offs, .len = sizeof(offs)};
    size_t n = put_op(f, &op);

    assert_int_equal(n, HDR + 24);
    assert_int_equal(decode(f, n), 0);
    assert_int_equal(f->op.type, FY_OP_MISS);
    assert_int_equal(f->op.len, 24);
    assert_ptr_equal(f->op.data, f->buf + HDR);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(fy_proto_miss_offset(&f->op, i), offs[i]);
    /* The array on the wire is little-endian whatever the host. */
    assert_int_equal(f->buf[HDR + 8 + 1], (17 * PAGE) >> 8 & 0xff);
}

static void test_protocol__miss_with_most_entries__decodes_all(void **state)
{
    struct fixture *f = *state;
    uint64_t *offs = calloc(FY_MISS_MAX_PER_FRAME, sizeof(*offs));
    struct fy_op op = {.type = FY_OP_MISS, .data = offs,
                       .len = 8 * FY_MISS_MAX_PER_FRAME};
    size_t n;

    assert_non_null(offs);
    for (unsigned i = 0; i < FY_MISS_MAX_PER_FRAME; i++)
        offs[i] = (uint64_t)(i % 64) * PAGE;
    n = put_op(f, &op);
    assert_int_equal(decode(f, n), 0);
    assert_int_equal(f->op.len / 8, FY_MISS_MAX_PER_FRAME);
    assert_int_equal(fy_proto_miss_offset(&f->op, 4095), 63u * PAGE);
    free(offs);
}

static void test_protocol__verify_roundtrip__decodes_digest(void **state)
{
    struct fixture *f = *state;
    struct fy_op op = {.type = FY_OP_VERIFY, .hash = {1, 2}};
    size_t n = put_op(f, &op);

    assert_int_equal(decode(f, n), 0);
    assert_int_equal(f->op.type, FY_OP_VERIFY);
    assert_true(fy_hash_eq(f->op.hash, op.hash));
}

static void
test_protocol__verify_result_roundtrip__decodes_digest_and_equal_flag(
    void **state)
{
    struct fixture *f = *state;

    for (uint64_t eq = 0; eq <= 1; eq++) {
        struct fy_op op = {.type = FY_OP_VERIFY_RESULT, .offset = eq,
                           .hash = {3, 4}};
        size_t n = put_op(f, &op);

        assert_int_equal(decode(f, n), 0);
        assert_int_equal(f->op.type, FY_OP_VERIFY_RESULT);
        assert_int_equal(f->op.offset, eq);
        assert_true(fy_hash_eq(f->op.hash, op.hash));
    }
}

static void test_protocol__error_roundtrip__decodes_code_and_message(
    void **state)
{
    struct fixture *f = *state;
    const char *msg = "region size differs";
    struct fy_op op = {.type = FY_OP_ERROR, .offset = FY_E_PRECHECK,
                       .data = msg, .len = strlen(msg)};
    size_t n = put_op(f, &op);

    assert_int_equal(n, HDR + strlen(msg));
    assert_int_equal(decode(f, n), 0);
    assert_int_equal(f->op.type, FY_OP_ERROR);
    assert_int_equal(f->op.offset, FY_E_PRECHECK);
    assert_int_equal(f->op.len, strlen(msg));
    assert_memory_equal(f->op.data, msg, strlen(msg));
}

static void test_protocol__error_without_message__decodes_empty(void **state)
{
    struct fixture *f = *state;
    struct fy_op op = {.type = FY_OP_ERROR, .offset = FY_E_IO};
    size_t n = put_op(f, &op);

    assert_int_equal(n, HDR);
    assert_int_equal(decode(f, n), 0);
    assert_int_equal(f->op.offset, FY_E_IO);
    assert_int_equal(f->op.len, 0);
}

static void test_protocol__error_with_unknown_code__decodes_as_peer(
    void **state)
{
    struct fixture *f = *state;
    uint64_t codes[] = {0, FY_E__COUNT, 0xffffffffffffffffu};

    for (unsigned i = 0; i < 3; i++) {
        size_t n = raw_frame(f->buf, FY_OP_ERROR, 0, 2, codes[i], "no", 2);

        assert_int_equal(decode(f, n), 0);
        assert_int_equal(f->op.offset, FY_E_PEER);
    }
}

static void test_protocol__data_roundtrip__decodes_tag_and_bytes(
    void **state)
{
    struct fixture *f = *state;
    struct fy_op op = {.type = FY_OP_DATA, .offset = 0xfeedface12345678u,
                       .data = f->page, .len = 1000};
    size_t n = put_op(f, &op);

    assert_int_equal(n, HDR + 1000);
    assert_int_equal(decode(f, n), 0);
    assert_int_equal(f->frame_len, n);
    assert_int_equal(f->op.type, FY_OP_DATA);
    assert_int_equal(f->op.offset, 0xfeedface12345678u);
    assert_int_equal(f->op.len, 1000);
    assert_memory_equal(f->op.data, f->page, 1000);
}

static void test_protocol__data_of_no_bytes__decodes_empty(void **state)
{
    struct fixture *f = *state;
    struct fy_op op = {.type = FY_OP_DATA, .offset = 7};
    size_t n = put_op(f, &op);

    assert_int_equal(n, HDR);
    assert_int_equal(decode(f, n), 0);
    assert_int_equal(f->op.offset, 7);
    assert_int_equal(f->op.len, 0);
}

static void test_protocol__data_header_then_bytes__same_frame_as_encode(
    void **state)
{
    struct fixture *f = *state;
    struct fy_op op = {.type = FY_OP_DATA, .offset = 3, .data = f->page,
                       .len = PAGE};
    uint8_t whole[HDR + PAGE];

    assert_int_equal(fy_proto_encode(&op, whole, sizeof(whole)), HDR + PAGE);
    assert_int_equal(fy_proto_encode_data_header(&op, f->buf, HDR), HDR);
    memcpy(f->buf + HDR, f->page, PAGE);
    assert_memory_equal(f->buf, whole, sizeof(whole));
    assert_int_equal(decode(f, HDR + PAGE), 0);
    assert_int_equal(f->op.len, PAGE);
}

static void test_protocol__data_longer_than_a_page__fails_inval(void **state)
{
    struct fixture *f = *state;
    struct fy_op op = {.type = FY_OP_DATA, .data = f->buf, .len = PAGE + 1};

    assert_encode_fails(&op, FY_E_INVAL);
    assert_detail_has("at most 4096");
    assert_int_equal(fy_proto_encode_data_header(&op, f->buf, HDR),
                     -FY_E_INVAL);
}

static void test_protocol__data_frame_longer_than_a_page__fails_proto(
    void **state)
{
    struct fixture *f = *state;

    raw_frame(f->buf, FY_OP_DATA, 0, PAGE + 1, 0, NULL, 0);
    assert_int_equal(decode(f, HDR), -FY_E_PROTO);
    assert_detail_has("DATA");
}

static void test_protocol__flipped_data_byte__fails_checksum(void **state)
{
    struct fixture *f = *state;
    struct fy_op op = {.type = FY_OP_DATA, .data = f->page, .len = 64};
    size_t n = put_op(f, &op);

    f->buf[HDR + 10] ^= 0x01;
    assert_int_equal(decode(f, n), -FY_E_CHECKSUM);
}

static void test_protocol__done_roundtrip__decodes_type_only(void **state)
{
    struct fixture *f = *state;
    struct fy_op op = {.type = FY_OP_DONE};
    size_t n = put_op(f, &op);

    assert_int_equal(n, HDR);
    assert_int_equal(decode(f, n), 0);
    assert_int_equal(f->frame_len, HDR);
    assert_int_equal(f->op.type, FY_OP_DONE);
    assert_int_equal(f->op.offset, 0);
    assert_int_equal(f->op.len, 0);
}

static void
test_protocol__hello_roundtrip__decodes_session_info_and_stream_index(
    void **state)
{
    struct fixture *f = *state;
    struct fy_session_info sent = f->info;
    size_t n = put_hello(f, 3, false);

    memset(&f->info, 0x5a, sizeof(f->info));
    assert_int_equal(decode_hello(f, n), 0);
    assert_int_equal(f->frame_len, n);
    assert_memory_equal(f->info.session_id, sent.session_id, 16);
    assert_int_equal(f->info.region_size, REGION);
    assert_int_equal(f->info.page_size, PAGE);
    assert_int_equal(f->info.caps, FY_CAPS_V1);
    assert_int_equal(f->info.streams, 4);
    assert_int_equal(f->index, 3);
    assert_false(f->ack);
}

static void test_protocol__hello_ack_roundtrip__decodes_ack(void **state)
{
    struct fixture *f = *state;
    size_t n = put_hello(f, 0, true);

    assert_int_equal(f->buf[2], FY_FRAME_HELLO_ACK);
    assert_int_equal(decode_hello(f, n), 0);
    assert_true(f->ack);
    assert_int_equal(f->index, 0);
}

/* ---- the bytes on the wire --------------------------------------------- */

static void test_protocol__ref_frame__matches_header_table_layout(
    void **state)
{
    struct fixture *f = *state;
    struct fy_op op = {.type = FY_OP_REF, .offset = 0x3000,
                       .hash = {0x0102030405060708u, 0x1112131415161718u}};
    const uint8_t want[] = {
        0xfe, 0x01, 0x03, 0x00, 0x10, 0x00, 0x00, 0x00,
        0x00, 0x30, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    };
    const uint8_t payload[] = {
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
        0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11,
    };
    size_t n = put_op(f, &op);

    assert_int_equal(n, 40);
    assert_memory_equal(f->buf, want, sizeof(want));
    assert_memory_equal(f->buf + HDR, payload, sizeof(payload));
    assert_int_equal(le32_get(f->buf + 16),
                     (uint32_t)XXH3_64bits(payload, sizeof(payload)));
    assert_int_equal(le32_get(f->buf + 20), (uint32_t)XXH3_64bits(f->buf, 20));
}

static void test_protocol__page_frame__sums_only_the_hash(void **state)
{
    struct fixture *f = *state;
    size_t n = put_page(f, 0);
    fy_hash128 h = fy_page_hash(f->page);

    assert_int_equal(le32_get(f->buf + 4), 16 + PAGE);
    assert_int_equal(le64_get(f->buf + HDR), h.lo);
    assert_int_equal(le64_get(f->buf + HDR + 8), h.hi);
    assert_int_equal(le32_get(f->buf + 16),
                     (uint32_t)XXH3_64bits(f->buf + HDR, 16));
    assert_int_equal(n, PAGE_FRAME);
}

static void test_protocol__hello_frame__matches_payload_layout(void **state)
{
    struct fixture *f = *state;
    const uint8_t *p = f->buf + HDR;

    put_hello(f, 2, false);
    assert_int_equal(f->buf[2], FY_FRAME_HELLO);
    assert_int_equal(le32_get(f->buf + 4), FY_HELLO_PAYLOAD_SIZE);
    assert_int_equal(le64_get(f->buf + 8), 0);
    assert_memory_equal(p, "FERRYMIG", 8);
    assert_int_equal(le32_get(p + 8), 1);
    assert_int_equal(le32_get(p + 12), FY_CAPS_V1);
    assert_memory_equal(p + 16, f->info.session_id, 16);
    assert_int_equal(le64_get(p + 32), REGION);
    assert_int_equal(le32_get(p + 40), PAGE);
    assert_int_equal(p[44] | p[45] << 8, 2);
    assert_int_equal(p[46] | p[47] << 8, 4);
}

static void test_protocol__encoded_size__counts_header_and_inline_payload(
    void **state)
{
    struct fy_op page = {.type = FY_OP_PAGE};
    struct fy_op miss = {.type = FY_OP_MISS, .len = 80};
    struct fy_op err = {.type = FY_OP_ERROR, .len = 10000};
    struct fy_op done = {.type = FY_OP_DONE};
    struct fy_op bad = {.type = 0x7f};

    (void)state;
    assert_int_equal(fy_proto_encoded_size(&page), HDR + 16);
    assert_int_equal(fy_proto_encoded_size(&miss), HDR + 80);
    assert_int_equal(fy_proto_encoded_size(&err), HDR + FY_ERROR_MSG_MAX);
    assert_int_equal(fy_proto_encoded_size(&done), HDR);
    assert_int_equal(fy_proto_encoded_size(&bad), 0);
    assert_int_equal(fy_proto_encoded_size(NULL), 0);
}

static void test_protocol__type_name__names_every_type_and_unknown(
    void **state)
{
    (void)state;
    assert_string_equal(fy_proto_type_name(FY_OP_PAGE), "PAGE");
    assert_string_equal(fy_proto_type_name(FY_OP_ZERO), "ZERO");
    assert_string_equal(fy_proto_type_name(FY_OP_REF), "REF");
    assert_string_equal(fy_proto_type_name(FY_OP_ROUND_END), "ROUND_END");
    assert_string_equal(fy_proto_type_name(FY_OP_ROUND_ACK), "ROUND_ACK");
    assert_string_equal(fy_proto_type_name(FY_OP_MISS), "MISS");
    assert_string_equal(fy_proto_type_name(FY_OP_VERIFY), "VERIFY");
    assert_string_equal(fy_proto_type_name(FY_OP_VERIFY_RESULT),
                        "VERIFY_RESULT");
    assert_string_equal(fy_proto_type_name(FY_OP_ERROR), "ERROR");
    assert_string_equal(fy_proto_type_name(FY_OP_DONE), "DONE");
    assert_string_equal(fy_proto_type_name(FY_OP_DATA), "DATA");
    assert_string_equal(fy_proto_type_name(FY_FRAME_PAGES), "PAGES");
    assert_string_equal(fy_proto_type_name(FY_FRAME_HELLO), "HELLO");
    assert_string_equal(fy_proto_type_name(FY_FRAME_HELLO_ACK), "HELLO_ACK");
    assert_string_equal(fy_proto_type_name(0), "unknown");
    assert_string_equal(fy_proto_type_name(0x7f), "unknown");
    assert_string_equal(fy_proto_type_name(12345), "unknown");
}

static void test_protocol__miss_offset_past_the_end__returns_all_ones(
    void **state)
{
    struct fixture *f = *state;
    uint64_t offs[2] = {PAGE, 2 * PAGE};
    struct fy_op op = {.type = FY_OP_MISS, .data = offs, .len = sizeof(offs)};
    size_t n = put_op(f, &op);

    assert_int_equal(decode(f, n), 0);
    assert_int_equal(fy_proto_miss_offset(&f->op, 1), 2 * PAGE);
    assert_int_equal(fy_proto_miss_offset(&f->op, 2), UINT64_MAX);
}

/* ---- encoder rules ----------------------------------------------------- */

static void test_protocol__encode_into_small_buffer__fails_nospace(
    void **state)
{
    struct fixture *f = *state;
    struct fy_op op = {.type = FY_OP_REF, .offset = PAGE};

    assert_int_equal(fy_proto_encode(&op, f->buf, HDR + 15), -FY_E_NOSPACE);
    assert_int_equal(fy_proto_encode(&op, f->buf, HDR + 16), HDR + 16);
    assert_int_equal(fy_proto_encode_hello(&f->info, 0, false, f->buf,
                                           HELLO_FRAME - 1),
                     -FY_E_NOSPACE);
}

static void test_protocol__encode_unknown_type__fails_inval(void **state)
{
    struct fy_op op = {.type = 0x20};

    (void)state;
    assert_encode_fails(&op, FY_E_INVAL);
    op.type = 0;
    assert_encode_fails(&op, FY_E_INVAL);
    assert_int_equal(fy_proto_encode(NULL, NULL, 0), -FY_E_INVAL);
}

static void test_protocol__encode_misaligned_offset__fails_inval(
    void **state)
{
    struct fy_op page = {.type = FY_OP_PAGE, .offset = PAGE + 1};
    struct fy_op zero = {.type = FY_OP_ZERO, .offset = 8, .len = PAGE};
    struct fy_op ref = {.type = FY_OP_REF, .offset = 512};

    (void)state;
    assert_encode_fails(&page, FY_E_INVAL);
    assert_encode_fails(&zero, FY_E_INVAL);
    assert_encode_fails(&ref, FY_E_INVAL);
}

static void test_protocol__encode_bad_zero_length__fails_inval(void **state)
{
    struct fy_op empty = {.type = FY_OP_ZERO, .len = 0};
    struct fy_op partial = {.type = FY_OP_ZERO, .len = PAGE + 1};
    struct fy_op wraps = {.type = FY_OP_ZERO, .offset = UINT64_MAX - PAGE + 1,
                          .len = 2 * PAGE};

    (void)state;
    assert_encode_fails(&empty, FY_E_INVAL);
    assert_encode_fails(&partial, FY_E_INVAL);
    assert_encode_fails(&wraps, FY_E_INVAL);
}

static void test_protocol__encode_flags_outside_round_end__fails_inval(
    void **state)
{
    struct fy_round_counts c = {0};
    struct fy_op page = {.type = FY_OP_PAGE, .flags = FY_OP_F_FINAL};
    struct fy_op end = {.type = FY_OP_ROUND_END, .flags = 0x04, .data = &c};

    (void)state;
    assert_encode_fails(&page, FY_E_INVAL);
    assert_encode_fails(&end, FY_E_INVAL);
}

static void test_protocol__encode_bad_miss_count__fails_inval(void **state)
{
    uint64_t offs[2] = {0, PAGE};
    struct fy_op none = {.type = FY_OP_MISS, .data = offs, .len = 0};
    struct fy_op odd = {.type = FY_OP_MISS, .data = offs, .len = 12};
    struct fy_op many = {.type = FY_OP_MISS, .data = offs,
                         .len = 8 * (FY_MISS_MAX_PER_FRAME + 1)};
    struct fy_op null = {.type = FY_OP_MISS, .len = 16};

    (void)state;
    assert_encode_fails(&none, FY_E_INVAL);
    assert_encode_fails(&odd, FY_E_INVAL);
    assert_encode_fails(&many, FY_E_INVAL);
    assert_encode_fails(&null, FY_E_INVAL);
}

static void test_protocol__encode_misaligned_miss_entry__fails_inval(
    void **state)
{
    uint64_t offs[2] = {0, PAGE + 8};
    struct fy_op op = {.type = FY_OP_MISS, .data = offs, .len = sizeof(offs)};

    (void)state;
    assert_encode_fails(&op, FY_E_INVAL);
}

static void test_protocol__encode_reserved_arg__fails_inval(void **state)
{
    uint64_t offs[1] = {0};
    struct fy_op miss = {.type = FY_OP_MISS, .offset = 1, .data = offs,
                         .len = 8};
    struct fy_op verify = {.type = FY_OP_VERIFY, .offset = 1};
    struct fy_op done = {.type = FY_OP_DONE, .offset = 1};
    struct fy_op result = {.type = FY_OP_VERIFY_RESULT, .offset = 2};

    (void)state;
    assert_encode_fails(&miss, FY_E_INVAL);
    assert_encode_fails(&verify, FY_E_INVAL);
    assert_encode_fails(&done, FY_E_INVAL);
    assert_encode_fails(&result, FY_E_INVAL);
}

static void test_protocol__encode_round_without_counts__fails_inval(
    void **state)
{
    struct fy_op end = {.type = FY_OP_ROUND_END};
    struct fy_op ack = {.type = FY_OP_ROUND_ACK};

    (void)state;
    assert_encode_fails(&end, FY_E_INVAL);
    assert_encode_fails(&ack, FY_E_INVAL);
}

static void test_protocol__encode_error_code_outside_table__fails_inval(
    void **state)
{
    struct fy_op zero = {.type = FY_OP_ERROR, .offset = 0};
    struct fy_op past = {.type = FY_OP_ERROR, .offset = FY_E__COUNT};
    struct fy_op null = {.type = FY_OP_ERROR, .offset = FY_E_IO, .len = 3};

    (void)state;
    assert_encode_fails(&zero, FY_E_INVAL);
    assert_encode_fails(&past, FY_E_INVAL);
    assert_encode_fails(&null, FY_E_INVAL);
}

static void test_protocol__encode_long_error_message__is_cut_to_max(
    void **state)
{
    struct fixture *f = *state;
    char msg[FY_ERROR_MSG_MAX + 100];
    struct fy_op op = {.type = FY_OP_ERROR, .offset = FY_E_IO, .data = msg,
                       .len = sizeof(msg)};
    size_t n;

    memset(msg, 'x', sizeof(msg));
    n = put_op(f, &op);
    assert_int_equal(n, HDR + FY_ERROR_MSG_MAX);
    assert_int_equal(decode(f, n), 0);
    assert_int_equal(f->op.len, FY_ERROR_MSG_MAX);
}

static void test_protocol__encode_hello_breaking_rules__fails_inval(
    void **state)
{
    struct fixture *f = *state;
    struct fy_session_info good = f->info;
    struct fy_session_info bad;

    assert_int_equal(fy_proto_encode_hello(&good, 4, false, f->buf,
                                           sizeof(f->buf)),
                     -FY_E_INVAL);
    bad = good;
    bad.page_size = 8192;
    assert_int_equal(fy_proto_encode_hello(&bad, 0, false, f->buf,
                                           sizeof(f->buf)),
                     -FY_E_INVAL);
    bad = good;
    bad.streams = 257;
    assert_int_equal(fy_proto_encode_hello(&bad, 0, false, f->buf,
                                           sizeof(f->buf)),
                     -FY_E_INVAL);
    bad = good;
    bad.caps = 0x80;
    assert_int_equal(fy_proto_encode_hello(&bad, 0, false, f->buf,
                                           sizeof(f->buf)),
                     -FY_E_INVAL);
    bad = good;
    bad.region_size = PAGE + 1;
    assert_int_equal(fy_proto_encode_hello(&bad, 0, false, f->buf,
                                           sizeof(f->buf)),
                     -FY_E_INVAL);
    assert_int_equal(fy_proto_encode_hello(NULL, 0, false, f->buf,
                                           sizeof(f->buf)),
                     -FY_E_INVAL);
}

/* ---- incomplete input -------------------------------------------------- */

static void test_protocol__empty_input__asks_for_more_without_size(
    void **state)
{
    struct fixture *f = *state;

    f->frame_len = 99;
    assert_int_equal(fy_proto_decode(NULL, 0, &lim, &f->op, &f->scratch,
                                     &f->frame_len),
                     -FY_E_AGAIN);
    assert_int_equal(f->frame_len, 0);
}

static void test_protocol__truncated_header__asks_for_more(void **state)
{
    struct fixture *f = *state;

    put_zero(f, 0, PAGE);
    for (size_t avail = 1; avail < HDR; avail++) {
        f->frame_len = 99;
        assert_int_equal(decode(f, avail), -FY_E_AGAIN);
        assert_int_equal(f->frame_len, 0);
    }
}

static void test_protocol__truncated_payload__asks_for_more_with_total_size(
    void **state)
{
    struct fixture *f = *state;
    size_t n = put_zero(f, 0, PAGE);

    for (size_t avail = HDR; avail < n; avail++) {
        assert_int_equal(decode(f, avail), -FY_E_AGAIN);
        assert_int_equal(f->frame_len, n);
    }
}

static void test_protocol__truncated_page__asks_for_more_with_total_size(
    void **state)
{
    struct fixture *f = *state;
    size_t n = put_page(f, PAGE);

    assert_int_equal(decode(f, HDR), -FY_E_AGAIN);
    assert_int_equal(f->frame_len, PAGE_FRAME);
    assert_int_equal(decode(f, n - 1), -FY_E_AGAIN);
    assert_int_equal(f->frame_len, PAGE_FRAME);
}

static void test_protocol__asking_for_more__records_no_error(void **state)
{
    struct fixture *f = *state;
    size_t n = put_page(f, PAGE);

    fy_error_clear();
    assert_int_equal(decode(f, 10), -FY_E_AGAIN);
    assert_int_equal(decode(f, n - 1), -FY_E_AGAIN);
    assert_string_equal(fy_error_detail(), "");
}

static void test_protocol__truncated_hello__asks_for_more(void **state)
{
    struct fixture *f = *state;
    size_t n = put_hello(f, 0, false);

    assert_int_equal(decode_hello(f, HDR - 1), -FY_E_AGAIN);
    assert_int_equal(f->frame_len, 0);
    assert_int_equal(decode_hello(f, n - 1), -FY_E_AGAIN);
    assert_int_equal(f->frame_len, HELLO_FRAME);
}

/* ---- malformed headers ------------------------------------------------- */

static void test_protocol__bad_magic__fails_proto(void **state)
{
    struct fixture *f = *state;
    size_t n = put_zero(f, 0, PAGE);

    f->buf[0] = 0xEF;
    reseal(f->buf, n);
    assert_int_equal(decode(f, n), -FY_E_PROTO);
}

static void test_protocol__bad_magic_in_first_byte__fails_proto_at_once(
    void **state)
{
    struct fixture *f = *state;

    f->buf[0] = 'G'; /* "GET / HTTP/1.1": someone else's protocol */
    assert_int_equal(decode(f, 1), -FY_E_PROTO);
    assert_int_equal(decode_hello(f, 1), -FY_E_PROTO);
}

static void test_protocol__wrong_version__fails_version(void **state)
{
    struct fixture *f = *state;
    size_t n = put_zero(f, 0, PAGE);

    f->buf[1] = 2;
    reseal(f->buf, n);
    assert_int_equal(decode(f, n), -FY_E_VERSION);
    assert_detail_has("v2");
    assert_detail_has("v1");
}

static void test_protocol__wrong_version_in_second_byte__fails_at_once(
    void **state)
{
    struct fixture *f = *state;

    f->buf[0] = FY_PROTO_MAGIC;
    f->buf[1] = 2;
    assert_int_equal(decode(f, 2), -FY_E_VERSION);
    assert_int_equal(decode_hello(f, 2), -FY_E_VERSION);
}

/* A later version may checksum its header differently, so the version is
 * read first, and the answer does not depend on how the bytes arrived. */
static void test_protocol__wrong_version_with_other_header_sum__fails_version(
    void **state)
{
    struct fixture *f = *state;
    size_t n = put_zero(f, 0, PAGE);

    f->buf[1] = 2;
    for (size_t avail = 2; avail <= n; avail++)
        assert_int_equal(decode(f, avail), -FY_E_VERSION);
}

static void test_protocol__flipped_header_byte__fails_checksum(void **state)
{
    struct fixture *f = *state;
    size_t n = put_zero(f, 3 * PAGE, PAGE);

    for (size_t i = 2; i < HDR; i++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            f->buf[i] ^= (uint8_t)(1u << bit);
            assert_int_equal(decode(f, n), -FY_E_CHECKSUM);
            f->buf[i] ^= (uint8_t)(1u << bit);
        }
    }
    assert_int_equal(decode(f, n), 0);
}

static void test_protocol__unknown_type__fails_proto(void **state)
{
    struct fixture *f = *state;
    const unsigned types[] = {0x00, 0x0d, 0x1f, 0x22, 0x7f, 0xff};

    for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        size_t n = raw_frame(f->buf, types[i], 0, 0, 0, NULL, 0);

        assert_int_equal(decode(f, n), -FY_E_PROTO);
        assert_detail_has("unknown frame type");
        assert_int_equal(decode_hello(f, n), -FY_E_PROTO);
    }
}

static void test_protocol__oversized_length__fails_toobig(void **state)
{
    struct fixture *f = *state;
    const uint32_t lens[] = {FY_FRAME_MAX_PAYLOAD + 1, 0xffffffffu};

    for (unsigned i = 0; i < 2; i++) {
        /* Only the header is there: no waiting for 4 GiB. */
        raw_frame(f->buf, FY_OP_MISS, 0, lens[i], 0, NULL, 0);
        assert_int_equal(decode(f, HDR), -FY_E_TOOBIG);
        assert_int_equal(decode_hello(f, HDR), -FY_E_PROTO);
        raw_frame(f->buf, FY_OP_ERROR, 0, lens[i], 0, NULL, 0);
        assert_int_equal(decode_hello(f, HDR), -FY_E_TOOBIG);
    }
}

static void test_protocol__wrong_length_for_type__fails_proto(void **state)
{
    struct fixture *f = *state;
    uint8_t zeros[64] = {0};
    struct {
        unsigned type;
        uint32_t length;
    } cases[] = {
        {FY_OP_PAGE, PAGE}, {FY_OP_PAGE, 16 + PAGE + 1},
        {FY_OP_ZERO, 16},   {FY_OP_REF, 8},
        {FY_OP_ROUND_END, 24}, {FY_OP_ROUND_ACK, 32},
        {FY_OP_VERIFY, 0},  {FY_OP_VERIFY_RESULT, 17},
        {FY_OP_DONE, 1},
    };

    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        raw_frame(f->buf, cases[i].type, 0, cases[i].length, 0, zeros,
                  sizeof(zeros));
        /* Refused from the header alone. */
        assert_int_equal(decode(f, HDR), -FY_E_PROTO);
        assert_detail_has("payload length");
    }
}

static void test_protocol__empty_miss__fails_proto(void **state)
{
    struct fixture *f = *state;
    size_t n = raw_frame(f->buf, FY_OP_MISS, 0, 0, 0, NULL, 0);

    assert_int_equal(decode(f, n), -FY_E_PROTO);
}

static void test_protocol__miss_length_not_multiple_of_8__fails_proto(
    void **state)
{
    struct fixture *f = *state;
    uint8_t zeros[12] = {0};
    size_t n = raw_frame(f->buf, FY_OP_MISS, 0, 12, 0, zeros, 12);

    assert_int_equal(decode(f, n), -FY_E_PROTO);
}

static void test_protocol__miss_with_too_many_entries__fails_proto(
    void **state)
{
    struct fixture *f = *state;

    raw_frame(f->buf, FY_OP_MISS, 0, 8 * (FY_MISS_MAX_PER_FRAME + 1), 0,
              NULL, 0);
    assert_int_equal(decode(f, HDR), -FY_E_PROTO);
}

static void test_protocol__error_message_too_long__fails_proto(void **state)
{
    struct fixture *f = *state;
    char msg[FY_ERROR_MSG_MAX + 1];
    size_t n;

    memset(msg, 'x', sizeof(msg));
    n = raw_frame(f->buf, FY_OP_ERROR, 0, sizeof(msg), FY_E_IO, msg,
                  sizeof(msg));
    assert_int_equal(decode(f, n), -FY_E_PROTO);
}

static void test_protocol__hello_after_handshake__fails_proto(void **state)
{
    struct fixture *f = *state;
    size_t n = put_hello(f, 0, false);

    assert_int_equal(decode(f, n), -FY_E_PROTO);
    assert_detail_has("after the handshake");
    n = put_hello(f, 0, true);
    assert_int_equal(decode(f, n), -FY_E_PROTO);
}

static void test_protocol__flags_on_page__fails_proto(void **state)
{
    struct fixture *f = *state;
    size_t n = put_page(f, 0);

    f->buf[3] = FY_OP_F_FINAL;
    reseal(f->buf, n);
    assert_int_equal(decode(f, n), -FY_E_PROTO);
    assert_detail_has("flags");
}

static void test_protocol__unknown_round_end_flag__fails_proto(void **state)
{
    struct fixture *f = *state;
    struct fy_round_counts c = {1, 2, 3, 4};
    struct fy_op op = {.type = FY_OP_ROUND_END, .data = &c};
    size_t n = put_op(f, &op);

    f->buf[3] = 0x04;
    reseal(f->buf, n);
    assert_int_equal(decode(f, n), -FY_E_PROTO);
}

static void test_protocol__reserved_arg_not_zero__fails_proto(void **state)
{
    struct fixture *f = *state;
    uint64_t offs[1] = {0};
    struct fy_op ops[] = {
        {.type = FY_OP_MISS, .data = offs, .len = 8},
        {.type = FY_OP_VERIFY},
        {.type = FY_OP_DONE},
    };

    for (unsigned i = 0; i < 3; i++) {
        size_t n = put_op(f, &ops[i]);

        le64_put(f->buf + 8, 1);
        reseal(f->buf, n);
        assert_int_equal(decode(f, n), -FY_E_PROTO);
        assert_detail_has("reserved");
    }
}

static void test_protocol__verify_result_arg_above_one__fails_proto(
    void **state)
{
    struct fixture *f = *state;
    struct fy_op op = {.type = FY_OP_VERIFY_RESULT, .offset = 1};
    size_t n = put_op(f, &op);

    le64_put(f->buf + 8, 2);
    reseal(f->buf, n);
    assert_int_equal(decode(f, n), -FY_E_PROTO);
}

/* ---- checksums --------------------------------------------------------- */

static void test_protocol__flipped_payload_byte__fails_checksum(void **state)
{
    struct fixture *f = *state;
    struct fy_round_counts c = {1, 2, 3, 6};
    struct fy_op op = {.type = FY_OP_ROUND_END, .offset = 1, .data = &c};
    size_t n = put_op(f, &op);

    for (size_t i = HDR; i < n; i++) {
        f->buf[i] ^= 0x10;
        assert_int_equal(decode(f, n), -FY_E_CHECKSUM);
        f->buf[i] ^= 0x10;
    }
}

static void test_protocol__flipped_page_hash_byte__fails_checksum(
    void **state)
{
    struct fixture *f = *state;
    size_t n = put_page(f, 0);

    f->buf[HDR + 5] ^= 0x01;
    assert_int_equal(decode(f, n), -FY_E_CHECKSUM);
}

static void test_protocol__flipped_page_byte__fails_checksum(void **state)
{
    struct fixture *f = *state;
    size_t n = put_page(f, 0);
    const size_t at[] = {HDR + 16, HDR + 16 + 2000, n - 1};

    for (unsigned i = 0; i < 3; i++) {
        f->buf[at[i]] ^= 0x80;
        assert_int_equal(decode(f, n), -FY_E_CHECKSUM);
        assert_detail_has("PAGE");
        f->buf[at[i]] ^= 0x80;
    }
}

static void test_protocol__flipped_page_byte_deferred__decodes_unchecked(
    void **state)
{
    struct fixture *f = *state;
    const struct fy_proto_limits deferred = {REGION, PAGE, true};
    size_t n = put_page(f, 2 * PAGE);

    f->buf[HDR + 16 + 99] ^= 0x08;
    assert_int_equal(fy_proto_decode(f->buf, n, &deferred, &f->op,
                                     &f->scratch, &f->frame_len),
                     0);
    assert_int_equal(f->op.type, FY_OP_PAGE);
    assert_int_equal(f->op.flags, FY_OP_F_UNCHECKED);
    assert_int_equal(f->op.offset, 2 * PAGE);
    assert_ptr_equal(f->op.data, f->buf + HDR + 16);
}

static void test_protocol__flipped_error_text__fails_checksum(void **state)
{
    struct fixture *f = *state;
    struct fy_op op = {.type = FY_OP_ERROR, .offset = FY_E_IO, .data = "disk",
                       .len = 4};
    size_t n = put_op(f, &op);

    f->buf[HDR + 1] ^= 0x20;
    assert_int_equal(decode(f, n), -FY_E_CHECKSUM);
}

/* ---- offsets and ranges ------------------------------------------------ */

static void test_protocol__page_offset_past_region__fails_range(void **state)
{
    struct fixture *f = *state;
    size_t n = put_page(f, REGION);

    assert_int_equal(decode(f, n), -FY_E_RANGE);
    assert_detail_has("PAGE");
    assert_detail_has("region size");
}

static void test_protocol__page_offset_near_u64_max__fails_range(
    void **state)
{
    struct fixture *f = *state;
    size_t n = put_page(f, UINT64_MAX - PAGE + 1);

    assert_int_equal(decode(f, n), -FY_E_RANGE);
}

static void test_protocol__page_offset_past_region__fails_before_the_page(
    void **state)
{
    struct fixture *f = *state;

    put_page(f, 2 * REGION);
    assert_int_equal(decode(f, HDR), -FY_E_RANGE);
}

static void test_protocol__misaligned_offset__fails_range(void **state)
{
    struct fixture *f = *state;
    size_t n;

    n = put_page(f, 0);
    le64_put(f->buf + 8, 1);
    reseal(f->buf, n);
    assert_int_equal(decode(f, n), -FY_E_RANGE);
    assert_detail_has("page size");

    n = put_zero(f, 0, PAGE);
    le64_put(f->buf + 8, PAGE / 2);
    reseal(f->buf, n);
    assert_int_equal(decode(f, n), -FY_E_RANGE);
}

static void test_protocol__ref_offset_past_region__fails_range(void **state)
{
    struct fixture *f = *state;
    struct fy_op op = {.type = FY_OP_REF, .offset = REGION, .hash = {1, 1}};
    size_t n = put_op(f, &op);

    assert_int_equal(decode(f, n), -FY_E_RANGE);
}

static void test_protocol__misaligned_ref_offset__fails_range(void **state)
{
    struct fixture *f = *state;
    struct fy_op op = {.type = FY_OP_REF, .offset = PAGE, .hash = {1, 1}};
    size_t n = put_op(f, &op);

    le64_put(f->buf + 8, PAGE + 64);
    reseal(f->buf, n);
    assert_int_equal(decode(f, n), -FY_E_RANGE);
}

static void test_protocol__zero_range_past_region__fails_range(void **state)
{
    struct fixture *f = *state;
    size_t n = put_zero(f, PAGE, REGION);

    assert_int_equal(decode(f, n), -FY_E_RANGE);
}

static void test_protocol__zero_range_overflowing_u64__fails_range(
    void **state)
{
    struct fixture *f = *state;
    uint8_t len[8];
    size_t n;

    /* offset + length wraps to a small number, inside the region. */
    le64_put(len, UINT64_MAX - PAGE + 1);
    n = raw_frame(f->buf, FY_OP_ZERO, 0, 8, 2 * PAGE, len, 8);
    assert_int_equal(decode(f, n), -FY_E_RANGE);
}

static void test_protocol__zero_range_of_no_bytes__fails_proto(void **state)
{
    struct fixture *f = *state;
    uint8_t len[8] = {0};
    size_t n = raw_frame(f->buf, FY_OP_ZERO, 0, 8, 0, len, 8);

    assert_int_equal(decode(f, n), -FY_E_PROTO);
}

static void test_protocol__zero_range_of_partial_page__fails_proto(
    void **state)
{
    struct fixture *f = *state;
    uint8_t len[8];
    size_t n;

    le64_put(len, PAGE + 512);
    n = raw_frame(f->buf, FY_OP_ZERO, 0, 8, 0, len, 8);
    assert_int_equal(decode(f, n), -FY_E_PROTO);
}

static void test_protocol__miss_entry_past_region__fails_range(void **state)
{
    struct fixture *f = *state;
    uint64_t offs[3] = {0, PAGE, REGION};
    struct fy_op op = {.type = FY_OP_MISS, .data = offs, .len = sizeof(offs)};
    size_t n = put_op(f, &op);

    assert_int_equal(decode(f, n), -FY_E_RANGE);
    assert_detail_has("MISS");
}

static void test_protocol__misaligned_miss_entry__fails_range(void **state)
{
    struct fixture *f = *state;
    uint64_t offs[2] = {0, PAGE};
    struct fy_op op = {.type = FY_OP_MISS, .data = offs, .len = sizeof(offs)};
    size_t n = put_op(f, &op);

    le64_put(f->buf + HDR + 8, PAGE + 4);
    reseal(f->buf, n);
    assert_int_equal(decode(f, n), -FY_E_RANGE);
}

static void test_protocol__failed_decode__leaves_op_untouched(void **state)
{
    struct fixture *f = *state;
    size_t n = put_zero(f, PAGE, REGION);
    struct fy_op before;

    memset(&f->op, 0xa5, sizeof(f->op));
    before = f->op;
    assert_int_equal(decode(f, n), -FY_E_RANGE);
    assert_memory_equal(&f->op, &before, sizeof(before));
    assert_int_equal(f->frame_len, 0);
}

static void test_protocol__null_arguments__fail_inval(void **state)
{
    struct fixture *f = *state;
    size_t n = put_zero(f, 0, PAGE);

    assert_int_equal(fy_proto_decode(f->buf, n, NULL, &f->op, &f->scratch,
                                     &f->frame_len),
                     -FY_E_INVAL);
    assert_int_equal(fy_proto_decode(f->buf, n, &lim, NULL, &f->scratch,
                                     &f->frame_len),
                     -FY_E_INVAL);
    assert_int_equal(fy_proto_decode(f->buf, n, &lim, &f->op, &f->scratch,
                                     NULL),
                     -FY_E_INVAL);
    assert_int_equal(fy_proto_decode(NULL, n, &lim, &f->op, &f->scratch,
                                     &f->frame_len),
                     -FY_E_INVAL);
    assert_int_equal(fy_proto_decode_hello(f->buf, n, NULL, &f->index,
                                           &f->ack, &f->frame_len),
                     -FY_E_INVAL);
}

static void test_protocol__limits_with_other_page_size__fail_inval(
    void **state)
{
    struct fixture *f = *state;
    struct fy_proto_limits big = {REGION, 2u << 20};
    size_t n = put_zero(f, 0, PAGE);

    assert_int_equal(fy_proto_decode(f->buf, n, &big, &f->op, &f->scratch,
                                     &f->frame_len),
                     -FY_E_INVAL);
}

/* ---- handshake --------------------------------------------------------- */

/* Rewrites a field of the HELLO payload at f->buf and reseals the frame. */
static void hello_set32(struct fixture *f, size_t off, uint32_t v)
{
    le32_put(f->buf + HDR + off, v);
    reseal(f->buf, HELLO_FRAME);
}

static void hello_set16(struct fixture *f, size_t off, uint16_t v)
{
    f->buf[HDR + off] = (uint8_t)v;
    f->buf[HDR + off + 1] = (uint8_t)(v >> 8);
    reseal(f->buf, HELLO_FRAME);
}

static void test_protocol__hello_wrong_version__fails_version(void **state)
{
    struct fixture *f = *state;

    put_hello(f, 0, false);
    hello_set32(f, 8, 3);
    assert_int_equal(decode_hello(f, HELLO_FRAME), -FY_E_VERSION);
    assert_detail_has("v3");
    assert_detail_has("v1");
}

static void test_protocol__hello_frame_of_other_version__fails_version(
    void **state)
{
    struct fixture *f = *state;

    put_hello(f, 0, false);
    f->buf[1] = 2;
    reseal(f->buf, HELLO_FRAME);
    assert_int_equal(decode_hello(f, HELLO_FRAME), -FY_E_VERSION);
    assert_detail_has("v2");
}

static void test_protocol__hello_wrong_page_size__fails_proto(void **state)
{
    struct fixture *f = *state;

    put_hello(f, 0, false);
    hello_set32(f, 40, 2u << 20);
    assert_int_equal(decode_hello(f, HELLO_FRAME), -FY_E_PROTO);
    assert_detail_has("page size");
}

static void test_protocol__hello_bad_stream_index__fails_proto(void **state)
{
    struct fixture *f = *state;

    put_hello(f, 0, false);
    hello_set16(f, 44, 4); /* of 4 streams */
    assert_int_equal(decode_hello(f, HELLO_FRAME), -FY_E_PROTO);
    assert_detail_has("stream index");
}

static void test_protocol__hello_without_streams__fails_proto(void **state)
{
    struct fixture *f = *state;

    put_hello(f, 0, false);
    hello_set16(f, 46, 0);
    assert_int_equal(decode_hello(f, HELLO_FRAME), -FY_E_PROTO);
}

static void test_protocol__hello_with_257_streams__fails_proto(void **state)
{
    struct fixture *f = *state;

    put_hello(f, 0, false);
    hello_set16(f, 46, 257);
    assert_int_equal(decode_hello(f, HELLO_FRAME), -FY_E_PROTO);
}

static void test_protocol__hello_with_256_streams__decodes(void **state)
{
    struct fixture *f = *state;

    f->info.streams = 256;
    put_hello(f, 255, false);
    assert_int_equal(decode_hello(f, HELLO_FRAME), 0);
    assert_int_equal(f->info.streams, 256);
    assert_int_equal(f->index, 255);
}

static void test_protocol__hello_empty_region__fails_proto(void **state)
{
    struct fixture *f = *state;

    put_hello(f, 0, false);
    le64_put(f->buf + HDR + 32, 0);
    reseal(f->buf, HELLO_FRAME);
    assert_int_equal(decode_hello(f, HELLO_FRAME), -FY_E_PROTO);
}

static void test_protocol__hello_region_of_partial_page__fails_proto(
    void **state)
{
    struct fixture *f = *state;

    put_hello(f, 0, false);
    le64_put(f->buf + HDR + 32, REGION + 100);
    reseal(f->buf, HELLO_FRAME);
    assert_int_equal(decode_hello(f, HELLO_FRAME), -FY_E_PROTO);
}

static void test_protocol__hello_unknown_caps__fails_proto(void **state)
{
    struct fixture *f = *state;

    put_hello(f, 0, false);
    hello_set32(f, 12, FY_CAPS_V1 | 0x100);
    assert_int_equal(decode_hello(f, HELLO_FRAME), -FY_E_PROTO);
    assert_detail_has("capability");
}

static void test_protocol__hello_bad_magic__fails_proto(void **state)
{
    struct fixture *f = *state;

    put_hello(f, 0, false);
    memcpy(f->buf + HDR, "FERRYMIX", 8);
    reseal(f->buf, HELLO_FRAME);
    assert_int_equal(decode_hello(f, HELLO_FRAME), -FY_E_PROTO);
}

static void test_protocol__hello_reserved_arg__fails_proto(void **state)
{
    struct fixture *f = *state;

    put_hello(f, 0, false);
    le64_put(f->buf + 8, 1);
    reseal(f->buf, HELLO_FRAME);
    assert_int_equal(decode_hello(f, HELLO_FRAME), -FY_E_PROTO);
}

static void test_protocol__hello_flipped_payload_byte__fails_checksum(
    void **state)
{
    struct fixture *f = *state;

    put_hello(f, 0, false);
    f->buf[HDR + 20] ^= 1;
    assert_int_equal(decode_hello(f, HELLO_FRAME), -FY_E_CHECKSUM);
}

static void test_protocol__error_frame_during_handshake__fails_peer(
    void **state)
{
    struct fixture *f = *state;
    const char *msg = "region size differs: 1 GiB here";
    struct fy_op op = {.type = FY_OP_ERROR, .offset = FY_E_PRECHECK,
                       .data = msg, .len = strlen(msg)};
    size_t n = put_op(f, &op);

    assert_int_equal(decode_hello(f, n), -FY_E_PEER);
    assert_string_equal(fy_error_detail(),
                        "peer refused: region size differs: 1 GiB here");
}

static void test_protocol__empty_error_frame_during_handshake__names_code(
    void **state)
{
    struct fixture *f = *state;
    struct fy_op op = {.type = FY_OP_ERROR, .offset = FY_E_AUTH};
    size_t n = put_op(f, &op);

    assert_int_equal(decode_hello(f, n), -FY_E_PEER);
    assert_detail_has("peer refused: ");
    assert_detail_has(fy_strerror(FY_E_AUTH));
}

static void test_protocol__peer_message_control_bytes__are_replaced(
    void **state)
{
    struct fixture *f = *state;
    const char msg[] = "bad\033[2Jthing\n";
    struct fy_op op = {.type = FY_OP_ERROR, .offset = FY_E_IO, .data = msg,
                       .len = sizeof(msg) - 1};
    size_t n = put_op(f, &op);

    assert_int_equal(decode_hello(f, n), -FY_E_PEER);
    assert_string_equal(fy_error_detail(), "peer refused: bad?[2Jthing?");
}

static void test_protocol__data_frame_during_handshake__fails_proto(
    void **state)
{
    struct fixture *f = *state;
    size_t n = put_page(f, 0);

    assert_int_equal(decode_hello(f, n), -FY_E_PROTO);
    assert_int_equal(decode_hello(f, HDR), -FY_E_PROTO);
}

/* ---- PAGES frames ------------------------------------------------------ */

/* Encodes n pages, decodes the whole frame and reads every page back. */
static void check_pages_roundtrip(struct fixture *f, unsigned n)
{
    size_t len = put_pages(f, n);
    struct fy_pages_prefix pp;
    const uint8_t *pages;

    assert_int_equal(len, PAGES_FRAME(n));
    assert_int_equal(decode(f, len), 0);
    assert_int_equal(f->frame_len, len);
    assert_int_equal(f->op.type, FY_FRAME_PAGES);
    assert_int_equal(f->op.flags, 0);
    assert_int_equal(f->op.len, n);
    assert_ptr_equal(f->op.data, f->buf);

    /* The decoded op is read with the prefix decoder. */
    assert_int_equal(fy_proto_decode_pages_prefix(f->op.data, f->frame_len,
                                                  &lim, &pp),
                     0);
    assert_prefix_of_put_pages(f, &pp, n);
    pages = pp.desc + (size_t)n * DESC;
    for (unsigned i = 0; i < n; i++)
        assert_memory_equal(pages + (size_t)i * PAGE, f->pages[i], PAGE);
}

static void test_protocol__pages_roundtrip_one_page__decodes_offset_hash_data(
    void **state)
{
    check_pages_roundtrip(*state, 1);
}

static void test_protocol__pages_roundtrip_two_pages__decodes_offsets_hashes_data(
    void **state)
{
    check_pages_roundtrip(*state, 2);
}

static void test_protocol__pages_roundtrip_64_pages__decodes_offsets_hashes_data(
    void **state)
{
    check_pages_roundtrip(*state, FY_PAGES_MAX);
}

static void test_protocol__pages_frame__matches_layout_and_sums_descriptors(
    void **state)
{
    struct fixture *f = *state;
    size_t len = put_pages(f, 3);
    const uint8_t *d = f->buf + HDR;

    assert_int_equal(f->buf[0], FY_PROTO_MAGIC);
    assert_int_equal(f->buf[1], FY_PROTO_VERSION);
    assert_int_equal(f->buf[2], 0x0B);
    assert_int_equal(f->buf[3], 0);
    assert_int_equal(le32_get(f->buf + 4), 3 * PAGES_UNIT);
    assert_int_equal(le64_get(f->buf + 8), 3);
    /* payload_sum covers the descriptors only; the pages their hashes. */
    assert_int_equal(le32_get(f->buf + 16),
                     (uint32_t)XXH3_64bits(d, 3 * DESC));
    assert_int_equal(le32_get(f->buf + 20), (uint32_t)XXH3_64bits(f->buf, 20));
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(le64_get(d + i * DESC), pages_off(i));
        assert_int_equal(le64_get(d + i * DESC + 8), f->pops[i].hash.lo);
        assert_int_equal(le64_get(d + i * DESC + 16), f->pops[i].hash.hi);
        assert_memory_equal(f->buf + PAGES_PREFIX(3) + i * PAGE, f->pages[i],
                            PAGE);
    }
    assert_int_equal(len, PAGES_FRAME(3));
}

static void test_protocol__pages_prefix_without_pages__prefix_decodes_frame_waits(
    void **state)
{
    struct fixture *f = *state;
    struct fy_pages_prefix pp;

    put_pages(f, 5);
    fy_error_clear();
    assert_int_equal(decode_prefix(f, PAGES_PREFIX(5), &pp), 0);
    assert_prefix_of_put_pages(f, &pp, 5);
    /* The whole-frame decoder waits for the pages, saying how many. */
    assert_int_equal(decode(f, PAGES_PREFIX(5)), -FY_E_AGAIN);
    assert_int_equal(f->frame_len, PAGES_FRAME(5));
    assert_int_equal(decode(f, PAGES_FRAME(5) - 1), -FY_E_AGAIN);
    assert_int_equal(f->frame_len, PAGES_FRAME(5));
    assert_string_equal(fy_error_detail(), "");
}

static void test_protocol__pages_prefix_with_whole_frame__prefix_decodes(
    void **state)
{
    struct fixture *f = *state;
    struct fy_pages_prefix pp;
    size_t len = put_pages(f, FY_PAGES_MAX);

    assert_int_equal(decode_prefix(f, len, &pp), 0);
    assert_prefix_of_put_pages(f, &pp, FY_PAGES_MAX);
    /* Bytes past the frame are not its business. */
    assert_int_equal(decode_prefix(f, sizeof(f->buf), &pp), 0);
    assert_int_equal(pp.frame_len, len);
}

static void test_protocol__pages_prefix_incomplete__asks_for_more(void **state)
{
    struct fixture *f = *state;
    struct fy_pages_prefix pp;

    put_pages(f, 4);
    fy_error_clear();
    for (size_t avail = 0; avail < PAGES_PREFIX(4); avail++) {
        /* An exact-size copy, so a read past 'avail' is caught under
         * AddressSanitizer. */
        uint8_t *copy = malloc(avail ? avail : 1);

        assert_non_null(copy);
        memcpy(copy, f->buf, avail);
        assert_int_equal(fy_proto_decode_pages_prefix(avail ? copy : NULL,
                                                      avail, &lim, &pp),
                         -FY_E_AGAIN);
        free(copy);
    }
    assert_string_equal(fy_error_detail(), "");
}

static void test_protocol__pages_prefix_of_other_type__returns_one(
    void **state)
{
    struct fixture *f = *state;
    struct fy_pages_prefix pp;
    struct fy_op done = {.type = FY_OP_DONE};
    size_t n;

    n = put_zero(f, PAGE, PAGE);
    assert_int_equal(decode_prefix(f, n, &pp), 1);
    /* Three bytes tell the type; the rest of the header is not needed. */
    assert_int_equal(decode_prefix(f, 3, &pp), 1);
    assert_int_equal(decode_prefix(f, 2, &pp), -FY_E_AGAIN);

    n = put_page(f, PAGE);
    assert_int_equal(decode_prefix(f, n, &pp), 1);
    assert_int_equal(decode_prefix(f, HDR, &pp), 1);

    n = put_op(f, &done);
    assert_int_equal(decode_prefix(f, n, &pp), 1);

    /* Not a frame at all: refused, not passed on. */
    f->buf[0] = 0xEF;
    assert_int_equal(decode_prefix(f, n, &pp), -FY_E_PROTO);
    f->buf[0] = FY_PROTO_MAGIC;
    f->buf[1] = 2;
    assert_int_equal(decode_prefix(f, n, &pp), -FY_E_VERSION);
}

static void test_protocol__pages_prefix_null_arguments__fail_inval(
    void **state)
{
    struct fixture *f = *state;
    struct fy_pages_prefix pp;
    size_t n = put_pages(f, 1);

    assert_int_equal(fy_proto_decode_pages_prefix(NULL, n, &lim, &pp),
                     -FY_E_INVAL);
    assert_int_equal(fy_proto_decode_pages_prefix(f->buf, n, NULL, &pp),
                     -FY_E_INVAL);
    assert_int_equal(fy_proto_decode_pages_prefix(f->buf, n, &lim, NULL),
                     -FY_E_INVAL);
}

static void test_protocol__pages_of_no_pages__fails_proto(void **state)
{
    struct fixture *f = *state;
    struct fy_pages_prefix pp;
    size_t n;

    /* Length 0: no PAGES frame is that short. */
    n = raw_frame(f->buf, FY_FRAME_PAGES, 0, 0, 0, NULL, 0);
    assert_int_equal(decode(f, n), -FY_E_PROTO);
    assert_int_equal(decode_prefix(f, n, &pp), -FY_E_PROTO);

    /* A page's worth of length, but arg 0: refused from the header. */
    put_pages(f, 1);
    le64_put(f->buf + 8, 0);
    reseal_header(f->buf);
    assert_int_equal(decode(f, HDR), -FY_E_PROTO);
    assert_detail_has("PAGES");
    assert_int_equal(decode(f, PAGES_FRAME(1)), -FY_E_PROTO);
    assert_int_equal(decode_prefix(f, PAGES_FRAME(1), &pp), -FY_E_PROTO);
}

static void test_protocol__pages_of_65_pages__fails_proto(void **state)
{
    struct fixture *f = *state;
    struct fy_pages_prefix pp;

    /* The largest legal length with one page too many in arg. */
    put_pages(f, FY_PAGES_MAX);
    le64_put(f->buf + 8, FY_PAGES_MAX + 1);
    reseal_header(f->buf);
    assert_int_equal(decode(f, HDR), -FY_E_PROTO);
    assert_detail_has("1..64");
    assert_int_equal(decode(f, PAGES_FRAME(FY_PAGES_MAX)), -FY_E_PROTO);
    assert_int_equal(decode_prefix(f, PAGES_FRAME(FY_PAGES_MAX), &pp),
                     -FY_E_PROTO);

    le64_put(f->buf + 8, UINT64_MAX);
    reseal_header(f->buf);
    assert_int_equal(decode(f, HDR), -FY_E_PROTO);
    assert_int_equal(decode_prefix(f, HDR, &pp), -FY_E_PROTO);
}

static void test_protocol__pages_of_65_pages_with_their_length__fails_toobig(
    void **state)
{
    struct fixture *f = *state;
    struct fy_pages_prefix pp;

    /* 65 pages' worth of length is past the largest frame: refused from
     * the header before anything is waited for. */
    raw_frame(f->buf, FY_FRAME_PAGES, 0, 65 * PAGES_UNIT, 65, NULL, 0);
    assert_int_equal(decode(f, HDR), -FY_E_TOOBIG);
    assert_int_equal(decode_prefix(f, HDR, &pp), -FY_E_TOOBIG);
}

static void test_protocol__pages_length_not_n_units__fails_proto(void **state)
{
    struct fixture *f = *state;
    struct fy_pages_prefix pp;
    const struct {
        uint64_t arg;
        uint32_t length;
    } cases[] = {
        {2, PAGES_UNIT},          {1, PAGES_UNIT + 1},
        {1, PAGES_UNIT - 1},      {2, 3 * PAGES_UNIT},
        {64, 63 * PAGES_UNIT},    {3, 3 * DESC},
        {1, PAGE},                {1, DESC + 16 + PAGE},
    };

    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        raw_frame(f->buf, FY_FRAME_PAGES, 0, cases[i].length, cases[i].arg,
                  NULL, 0);
        /* Refused from the header alone, by both decoders. */
        assert_int_equal(decode(f, HDR), -FY_E_PROTO);
        assert_detail_has("payload length");
        assert_int_equal(decode_prefix(f, HDR, &pp), -FY_E_PROTO);
    }
}

static void test_protocol__pages_with_flags__fails_proto(void **state)
{
    struct fixture *f = *state;
    struct fy_pages_prefix pp;
    size_t n = put_pages(f, 2);

    f->buf[3] = FY_OP_F_FINAL;
    reseal_header(f->buf);
    assert_int_equal(decode(f, n), -FY_E_PROTO);
    assert_int_equal(decode_prefix(f, n, &pp), -FY_E_PROTO);
    /* The receive-side flags are never valid on the wire either. */
    f->buf[3] = FY_OP_F_UNCHECKED | FY_OP_F_PLACED;
    reseal_header(f->buf);
    assert_int_equal(decode(f, n), -FY_E_PROTO);
    assert_int_equal(decode_prefix(f, n, &pp), -FY_E_PROTO);
}

static void test_protocol__flipped_pages_descriptor_byte__fails_checksum(
    void **state)
{
    struct fixture *f = *state;
    struct fy_pages_prefix pp;
    size_t n = put_pages(f, 3);

    for (size_t i = HDR; i < PAGES_PREFIX(3); i++) {
        f->buf[i] ^= 0x04;
        assert_int_equal(decode(f, n), -FY_E_CHECKSUM);
        assert_int_equal(decode_prefix(f, PAGES_PREFIX(3), &pp),
                         -FY_E_CHECKSUM);
        f->buf[i] ^= 0x04;
    }
    assert_int_equal(decode(f, n), 0);
}

static void test_protocol__flipped_pages_page_byte__fails_checksum(
    void **state)
{
    struct fixture *f = *state;
    struct fy_pages_prefix pp;
    size_t n = put_pages(f, 3);
    const size_t at[] = {PAGES_PREFIX(3), PAGES_PREFIX(3) + PAGE - 1,
                         PAGES_PREFIX(3) + PAGE + 1234, n - 1};

    for (unsigned i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        f->buf[at[i]] ^= 0x80;
        assert_int_equal(decode(f, n), -FY_E_CHECKSUM);
        assert_detail_has("PAGES");
        /* The prefix does not cover the pages: the receiver that reads
         * them in place checks them there. */
        assert_int_equal(decode_prefix(f, n, &pp), 0);
        f->buf[at[i]] ^= 0x80;
    }
    assert_int_equal(decode(f, n), 0);
}

static void test_protocol__flipped_pages_page_byte_deferred__decodes_unchecked(
    void **state)
{
    struct fixture *f = *state;
    const struct fy_proto_limits deferred = {REGION, PAGE, true};
    size_t n = put_pages(f, 3);

    f->buf[PAGES_PREFIX(3) + PAGE + 77] ^= 0x01;
    assert_int_equal(fy_proto_decode(f->buf, n, &deferred, &f->op,
                                     &f->scratch, &f->frame_len),
                     0);
    assert_int_equal(f->op.type, FY_FRAME_PAGES);
    assert_int_equal(f->op.flags, FY_OP_F_UNCHECKED);
    assert_int_equal(f->op.len, 3);
    assert_ptr_equal(f->op.data, f->buf);
    assert_int_equal(f->frame_len, n);
    /* Deferring the page hashes does not defer the descriptor sum. */
    f->buf[HDR + 3] ^= 0x01;
    assert_int_equal(fy_proto_decode(f->buf, n, &deferred, &f->op,
                                     &f->scratch, &f->frame_len),
                     -FY_E_CHECKSUM);
}

static void test_protocol__pages_offset_past_region__fails_range(void **state)
{
    struct fixture *f = *state;
    struct fy_pages_prefix pp;
    const uint64_t bad[] = {REGION, 2 * REGION, UINT64_MAX - PAGE + 1};
    size_t n;

    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        n = put_pages(f, 3);
        pages_set_offset(f, 2, bad[i]);
        /* Before any page has arrived ... */
        assert_int_equal(decode_prefix(f, PAGES_PREFIX(3), &pp), -FY_E_RANGE);
        assert_detail_has("PAGES");
        assert_detail_has("region size");
        /* ... and with the whole frame. */
        assert_int_equal(decode_prefix(f, n, &pp), -FY_E_RANGE);
        assert_int_equal(decode(f, n), -FY_E_RANGE);
    }
    /* The last page of the region is inside it. */
    put_pages(f, 3);
    pages_set_offset(f, 2, REGION - PAGE);
    assert_int_equal(decode_prefix(f, PAGES_PREFIX(3), &pp), 0);
}

static void test_protocol__misaligned_pages_offset__fails_range(void **state)
{
    struct fixture *f = *state;
    struct fy_pages_prefix pp;
    const uint64_t bad[] = {1, PAGE + 8, 5 * PAGE - 1};

    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = put_pages(f, 3);

        pages_set_offset(f, 0, bad[i]);
        assert_int_equal(decode_prefix(f, PAGES_PREFIX(3), &pp), -FY_E_RANGE);
        assert_detail_has("page size");
        assert_int_equal(decode_prefix(f, n, &pp), -FY_E_RANGE);
        assert_int_equal(decode(f, n), -FY_E_RANGE);
    }
}

static void test_protocol__failed_pages_decode__leaves_op_untouched(
    void **state)
{
    struct fixture *f = *state;
    size_t n = put_pages(f, 2);
    struct fy_op before;

    pages_set_offset(f, 1, REGION);
    memset(&f->op, 0xa5, sizeof(f->op));
    before = f->op;
    assert_int_equal(decode(f, n), -FY_E_RANGE);
    assert_memory_equal(&f->op, &before, sizeof(before));
    assert_int_equal(f->frame_len, 0);
}

static void test_protocol__encode_pages_of_0_or_65__fails_inval(void **state)
{
    struct fixture *f = *state;

    put_pages(f, FY_PAGES_MAX);
    f->pops[FY_PAGES_MAX] = f->pops[0];
    assert_int_equal(fy_proto_encode_pages(f->pops, 0, f->buf, sizeof(f->buf)),
                     -FY_E_INVAL);
    assert_int_equal(fy_proto_encode_pages(f->pops, FY_PAGES_MAX + 1, f->buf,
                                           sizeof(f->buf)),
                     -FY_E_INVAL);
    assert_int_equal(fy_proto_encode_pages(f->pops, FY_PAGES_MAX, f->buf,
                                           sizeof(f->buf)),
                     PAGES_PREFIX(FY_PAGES_MAX));
}

static void test_protocol__encode_pages_with_other_op__fails_inval(
    void **state)
{
    struct fixture *f = *state;
    const uint8_t others[] = {FY_OP_ZERO, FY_OP_REF, FY_OP_DONE, 0,
                              FY_FRAME_PAGES};

    put_pages(f, 3);
    for (unsigned i = 0; i < sizeof(others); i++) {
        struct fy_op saved = f->pops[1];

        f->pops[1].type = others[i];
        assert_int_equal(fy_proto_encode_pages(f->pops, 3, f->buf,
                                               sizeof(f->buf)),
                         -FY_E_INVAL);
        assert_detail_has("entry 1");
        f->pops[1] = saved;
    }
    assert_int_equal(fy_proto_encode_pages(f->pops, 3, f->buf, sizeof(f->buf)),
                     PAGES_PREFIX(3));
}

static void test_protocol__encode_pages_breaking_page_rules__fails_inval(
    void **state)
{
    struct fixture *f = *state;

    put_pages(f, 2);
    f->pops[1].flags = FY_OP_F_UNCHECKED;
    assert_int_equal(fy_proto_encode_pages(f->pops, 2, f->buf, sizeof(f->buf)),
                     -FY_E_INVAL);
    f->pops[1].flags = 0;
    f->pops[1].data = NULL;
    assert_int_equal(fy_proto_encode_pages(f->pops, 2, f->buf, sizeof(f->buf)),
                     -FY_E_INVAL);
    f->pops[1].data = f->pages[1];
    f->pops[1].offset = PAGE + 512;
    assert_int_equal(fy_proto_encode_pages(f->pops, 2, f->buf, sizeof(f->buf)),
                     -FY_E_INVAL);
}

static void test_protocol__encode_pages_into_small_buffer__fails_nospace(
    void **state)
{
    struct fixture *f = *state;

    put_pages(f, 4);
    assert_int_equal(fy_proto_encode_pages(f->pops, 4, f->buf,
                                           PAGES_PREFIX(4) - 1),
                     -FY_E_NOSPACE);
    /* The pages are the caller's to send: room for the prefix is enough. */
    assert_int_equal(fy_proto_encode_pages(f->pops, 4, f->buf,
                                           PAGES_PREFIX(4)),
                     PAGES_PREFIX(4));
}

static void test_protocol__encode_pages_null_arguments__fail_inval(
    void **state)
{
    struct fixture *f = *state;

    put_pages(f, 1);
    assert_int_equal(fy_proto_encode_pages(NULL, 1, f->buf, sizeof(f->buf)),
                     -FY_E_INVAL);
    assert_int_equal(fy_proto_encode_pages(f->pops, 1, NULL, 0), -FY_E_INVAL);
    assert_int_equal(fy_proto_encode_pages(f->pops, 1, NULL, 4096),
                     -FY_E_INVAL);
}

/* ---- streams ------------------------------------------------------------ */

/* One frame of every post-handshake type, back to back, with PAGES frames
 * of two pages and of one among them; returns the size. */
static size_t put_stream(struct fixture *f, uint8_t *types, unsigned *count)
{
    static const uint64_t offs[3] = {0, 5 * PAGE, 63 * PAGE};
    struct fy_round_counts c = {1, 2, 1, 4};
    struct fy_round_ack a = {4, 3};
    struct fy_op ops[] = {
        {.type = FY_OP_ZERO, .offset = PAGE, .len = 2 * PAGE},
        {.type = FY_OP_REF, .offset = 3 * PAGE, .hash = {5, 6}},
        {.type = FY_OP_ROUND_END, .flags = FY_OP_F_FINAL, .offset = 1,
         .data = &c},
        {.type = FY_OP_ROUND_ACK, .offset = 1, .data = &a},
        {.type = FY_OP_MISS, .data = offs, .len = sizeof(offs)},
        {.type = FY_OP_VERIFY, .hash = {7, 8}},
        {.type = FY_OP_VERIFY_RESULT, .offset = 1, .hash = {7, 8}},
        {.type = FY_OP_ERROR, .offset = FY_E_IO, .data = "bye", .len = 3},
        {.type = FY_OP_DONE},
    };
    size_t n = put_page(f, 7 * PAGE);
    unsigned k = 0;

    types[k++] = FY_OP_PAGE;
    n += put_pages_at(f, f->buf + n, sizeof(f->buf) - n, 2);
    types[k++] = FY_FRAME_PAGES;
    for (unsigned i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        int w = fy_proto_encode(&ops[i], f->buf + n, sizeof(f->buf) - n);

        assert_true(w > 0);
        n += (size_t)w;
        types[k++] = ops[i].type;
        if (ops[i].type == FY_OP_MISS) {
            n += put_pages_at(f, f->buf + n, sizeof(f->buf) - n, 1);
            types[k++] = FY_FRAME_PAGES;
        }
    }
    *count = k;
    return n;
}

/* The prefix decoder on buf[0..avail), the start of the clean frame
 * 'whole' of type 'type': it waits for the whole prefix of a PAGES frame,
 * and passes on any other type as soon as its type byte is in. */
static void check_prefix_decode(const uint8_t *buf, size_t avail,
                                unsigned type, const uint8_t *whole)
{
    struct fy_pages_prefix pp;
    size_t prefix = type == FY_FRAME_PAGES ? PAGES_PREFIX(le64_get(whole + 8))
                                           : 0;
    int rc = fy_proto_decode_pages_prefix(avail ? buf : NULL, avail, &lim,
                                          &pp);

    if (type == FY_FRAME_PAGES && avail >= prefix) {
        assert_int_equal(rc, 0);
        assert_int_equal(pp.prefix_len, prefix);
        assert_ptr_equal(pp.desc, buf + HDR);
    } else if (type != FY_FRAME_PAGES && avail >= 3) {
        assert_int_equal(rc, 1);
    } else {
        assert_int_equal(rc, -FY_E_AGAIN);
    }
}

static void test_protocol__stream_fed_byte_by_byte__decodes_every_frame(
    void **state)
{
    struct fixture *f = *state;
    uint8_t types[16];
    unsigned count, got = 0;
    size_t n = put_stream(f, types, &count);
    size_t pos = 0;

    for (size_t have = 0; have <= n; have++) {
        for (;;) {
            /* An exact-size copy, so a read past 'avail' is caught under
             * AddressSanitizer. */
            size_t avail = have - pos;
            uint8_t *copy = malloc(avail ? avail : 1);
            size_t flen = 12345;
            int rc;

            assert_non_null(copy);
            memcpy(copy, f->buf + pos, avail);
            if (got < count)
                check_prefix_decode(copy, avail, types[got], f->buf + pos);
            rc = fy_proto_decode(copy, avail, &lim, &f->op, &f->scratch,
                                 &flen);
            free(copy);
            if (rc == -FY_E_AGAIN) {
                assert_true(flen == 0 || flen > avail);
                assert_true(avail >= HDR || flen == 0);
                break;
            }
            assert_int_equal(rc, 0);
            assert_true(flen <= avail);
            assert_true(got < count);
            assert_int_equal(f->op.type, types[got]);
            got++;
            pos += flen;
        }
    }
    assert_int_equal(pos, n);
    assert_int_equal(got, count);
}

/* xorshift64*: fixed seed, same run every time. */
static uint64_t next_random(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Du;
}

/* A PAGES prefix the decoder accepted from 'avail' bytes. */
static void check_pages_prefix_in_region(const struct fy_pages_prefix *pp,
                                         size_t avail)
{
    assert_true(pp->n >= 1 && pp->n <= FY_PAGES_MAX);
    assert_int_equal(pp->prefix_len, PAGES_PREFIX(pp->n));
    assert_int_equal(pp->frame_len, PAGES_FRAME(pp->n));
    assert_true(pp->prefix_len <= avail);
    for (unsigned i = 0; i < pp->n; i++) {
        uint64_t off;
        fy_hash128 h;

        fy_proto_pages_desc(pp, i, &off, &h);
        assert_int_equal(off % PAGE, 0);
        assert_true(off < REGION);
    }
}

static void check_decoded_in_region(const struct fy_op *op, size_t flen,
                                    size_t avail)
{
    assert_true(flen >= HDR && flen <= avail);
    switch (op->type) {
    case FY_OP_PAGE:
    case FY_OP_REF:
        assert_int_equal(op->offset % PAGE, 0);
        assert_true(op->offset < REGION);
        break;
    case FY_OP_ZERO:
        assert_int_equal(op->offset % PAGE, 0);
        assert_true(op->len > 0 && op->len % PAGE == 0);
        assert_true(op->offset < REGION && op->len <= REGION - op->offset);
        break;
    case FY_OP_MISS:
        assert_true(op->len >= 8 && op->len % 8 == 0);
        for (uint64_t i = 0; i < op->len / 8; i++) {
            uint64_t off = fy_proto_miss_offset(op, i);

            assert_int_equal(off % PAGE, 0);
            assert_true(off < REGION);
        }
        break;
    case FY_OP_ERROR:
        assert_true(op->offset > 0 && op->offset < FY_E__COUNT);
        assert_true(op->len <= FY_ERROR_MSG_MAX);
        break;
    case FY_FRAME_PAGES: {
        struct fy_pages_prefix pp;

        assert_true(op->len >= 1 && op->len <= FY_PAGES_MAX);
        assert_int_equal(flen, PAGES_FRAME(op->len));
        assert_int_equal(op->flags, 0);
        assert_int_equal(fy_proto_decode_pages_prefix(op->data, flen, &lim,
                                                      &pp),
                         0);
        check_pages_prefix_in_region(&pp, flen);
        /* Decoded without deferring: every page matches its hash. */
        for (unsigned i = 0; i < pp.n; i++) {
            uint64_t off;
            fy_hash128 h;

            fy_proto_pages_desc(&pp, i, &off, &h);
            assert_true(fy_hash_eq(h, fy_page_hash(pp.desc + pp.n * DESC +
                                                   (size_t)i * PAGE)));
        }
        break;
    }
    default:
        break;
    }
}

static void test_protocol__random_mutations__never_crash_or_leave_region(
    void **state)
{
    struct fixture *f = *state;
    uint8_t types[16];
    unsigned count, ok = 0, bad = 0, prefixes = 0;
    size_t starts[17], n = put_stream(f, types, &count);
    uint8_t *frames = malloc(n + HELLO_FRAME);
    uint64_t seed = 0x9E3779B97F4A7C15u;

    assert_non_null(frames);
    memcpy(frames, f->buf, n);
    /* Frame boundaries, by decoding the clean stream once. */
    starts[0] = 0;
    for (unsigned i = 0; i < count; i++) {
        assert_int_equal(fy_proto_decode(frames + starts[i], n - starts[i],
                                         &lim, &f->op, &f->scratch,
                                         &f->frame_len),
                         0);
        starts[i + 1] = starts[i] + f->frame_len;
    }
    put_hello(f, 1, false);
    memcpy(frames + n, f->buf, HELLO_FRAME);
    starts[count + 1] = n + HELLO_FRAME;

    for (unsigned iter = 0; iter < 20000; iter++) {
        unsigned k = (unsigned)(next_random(&seed) % (count + 1));
        size_t len = starts[k + 1] - starts[k];
        unsigned flips = 1 + (unsigned)(next_random(&seed) % 4);
        size_t avail;
        uint8_t *copy;
        size_t flen;
        struct fy_pages_prefix pp;
        int rc;

        memcpy(f->buf, frames + starts[k], len);
        for (unsigned j = 0; j < flips; j++) {
            uint64_t r = next_random(&seed);

            f->buf[r % len] ^= (uint8_t)(1u << (r >> 32) % 8);
        }
        /* Half the time as a lying peer would send it: checksums right. */
        if (iter % 2)
            reseal(f->buf, len);
        avail = next_random(&seed) % 4 ? len
                                       : (size_t)(next_random(&seed) % len);
        copy = malloc(avail ? avail : 1);
        assert_non_null(copy);
        memcpy(copy, f->buf, avail);

        rc = fy_proto_decode_pages_prefix(copy, avail, &lim, &pp);
        if (rc == 0) {
            check_pages_prefix_in_region(&pp, avail);
            prefixes++;
        } else {
            assert_true(rc == 1 || (rc < 0 && -rc < FY_E__COUNT));
        }

        rc = fy_proto_decode(copy, avail, &lim, &f->op, &f->scratch, &flen);
        if (rc == 0) {
            check_decoded_in_region(&f->op, flen, avail);
            ok++;
        } else {
            assert_true(rc < 0 && -rc < FY_E__COUNT);
            if (rc == -FY_E_AGAIN)
                assert_true(flen == 0 || flen > avail);
            else
                bad++;
        }

        rc = fy_proto_decode_hello(copy, avail, &f->info, &f->index, &f->ack,
                                   &flen);
        if (rc == 0) {
            assert_int_equal(flen, HELLO_FRAME);
            assert_true(flen <= avail);
            assert_int_equal(f->info.page_size, PAGE);
            assert_true(f->info.region_size % PAGE == 0);
            assert_true(f->index < f->info.streams);
            assert_true(f->info.streams >= 1 && f->info.streams <= 256);
        } else {
            assert_true(rc < 0 && -rc < FY_E__COUNT);
        }
        free(copy);
    }
    /* Both outcomes were exercised, and PAGES prefixes were accepted. */
    assert_true(ok > 100);
    assert_true(bad > 100);
    assert_true(prefixes > 20);
    free(frames);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_protocol__page_roundtrip__decodes_same_offset_hash_data),
        T(test_protocol__page_in_last_slot__decodes),
        T(test_protocol__zero_roundtrip__decodes_same_offset_and_length),
        T(test_protocol__zero_range_to_region_end__decodes),
        T(test_protocol__ref_roundtrip__decodes_same_offset_and_hash),
        T(test_protocol__round_end_roundtrip__decodes_counts_and_flags),
        T(test_protocol__round_ack_roundtrip__decodes_applied_and_misses),
        T(test_protocol__miss_roundtrip__decodes_every_offset),
        T(test_protocol__miss_with_most_entries__decodes_all),
        T(test_protocol__verify_roundtrip__decodes_digest),
        T(test_protocol__verify_result_roundtrip__decodes_digest_and_equal_flag),
        T(test_protocol__error_roundtrip__decodes_code_and_message),
        T(test_protocol__error_without_message__decodes_empty),
        T(test_protocol__error_with_unknown_code__decodes_as_peer),
        T(test_protocol__done_roundtrip__decodes_type_only),
        T(test_protocol__data_roundtrip__decodes_tag_and_bytes),
        T(test_protocol__data_of_no_bytes__decodes_empty),
        T(test_protocol__data_header_then_bytes__same_frame_as_encode),
        T(test_protocol__data_longer_than_a_page__fails_inval),
        T(test_protocol__data_frame_longer_than_a_page__fails_proto),
        T(test_protocol__flipped_data_byte__fails_checksum),
        T(test_protocol__hello_roundtrip__decodes_session_info_and_stream_index),
        T(test_protocol__hello_ack_roundtrip__decodes_ack),
        T(test_protocol__ref_frame__matches_header_table_layout),
        T(test_protocol__page_frame__sums_only_the_hash),
        T(test_protocol__hello_frame__matches_payload_layout),
        T(test_protocol__encoded_size__counts_header_and_inline_payload),
        T(test_protocol__type_name__names_every_type_and_unknown),
        T(test_protocol__miss_offset_past_the_end__returns_all_ones),
        T(test_protocol__encode_into_small_buffer__fails_nospace),
        T(test_protocol__encode_unknown_type__fails_inval),
        T(test_protocol__encode_misaligned_offset__fails_inval),
        T(test_protocol__encode_bad_zero_length__fails_inval),
        T(test_protocol__encode_flags_outside_round_end__fails_inval),
        T(test_protocol__encode_bad_miss_count__fails_inval),
        T(test_protocol__encode_misaligned_miss_entry__fails_inval),
        T(test_protocol__encode_reserved_arg__fails_inval),
        T(test_protocol__encode_round_without_counts__fails_inval),
        T(test_protocol__encode_error_code_outside_table__fails_inval),
        T(test_protocol__encode_long_error_message__is_cut_to_max),
        T(test_protocol__encode_hello_breaking_rules__fails_inval),
        T(test_protocol__empty_input__asks_for_more_without_size),
        T(test_protocol__truncated_header__asks_for_more),
        T(test_protocol__truncated_payload__asks_for_more_with_total_size),
        T(test_protocol__truncated_page__asks_for_more_with_total_size),
        T(test_protocol__asking_for_more__records_no_error),
        T(test_protocol__truncated_hello__asks_for_more),
        T(test_protocol__bad_magic__fails_proto),
        T(test_protocol__bad_magic_in_first_byte__fails_proto_at_once),
        T(test_protocol__wrong_version__fails_version),
        T(test_protocol__wrong_version_in_second_byte__fails_at_once),
        T(test_protocol__wrong_version_with_other_header_sum__fails_version),
        T(test_protocol__flipped_header_byte__fails_checksum),
        T(test_protocol__unknown_type__fails_proto),
        T(test_protocol__oversized_length__fails_toobig),
        T(test_protocol__wrong_length_for_type__fails_proto),
        T(test_protocol__empty_miss__fails_proto),
        T(test_protocol__miss_length_not_multiple_of_8__fails_proto),
        T(test_protocol__miss_with_too_many_entries__fails_proto),
        T(test_protocol__error_message_too_long__fails_proto),
        T(test_protocol__hello_after_handshake__fails_proto),
        T(test_protocol__flags_on_page__fails_proto),
        T(test_protocol__unknown_round_end_flag__fails_proto),
        T(test_protocol__reserved_arg_not_zero__fails_proto),
        T(test_protocol__verify_result_arg_above_one__fails_proto),
        T(test_protocol__flipped_payload_byte__fails_checksum),
        T(test_protocol__flipped_page_hash_byte__fails_checksum),
        T(test_protocol__flipped_page_byte__fails_checksum),
        T(test_protocol__flipped_page_byte_deferred__decodes_unchecked),
        T(test_protocol__flipped_error_text__fails_checksum),
        T(test_protocol__page_offset_past_region__fails_range),
        T(test_protocol__page_offset_near_u64_max__fails_range),
        T(test_protocol__page_offset_past_region__fails_before_the_page),
        T(test_protocol__misaligned_offset__fails_range),
        T(test_protocol__ref_offset_past_region__fails_range),
        T(test_protocol__misaligned_ref_offset__fails_range),
        T(test_protocol__zero_range_past_region__fails_range),
        T(test_protocol__zero_range_overflowing_u64__fails_range),
        T(test_protocol__zero_range_of_no_bytes__fails_proto),
        T(test_protocol__zero_range_of_partial_page__fails_proto),
        T(test_protocol__miss_entry_past_region__fails_range),
        T(test_protocol__misaligned_miss_entry__fails_range),
        T(test_protocol__failed_decode__leaves_op_untouched),
        T(test_protocol__null_arguments__fail_inval),
        T(test_protocol__limits_with_other_page_size__fail_inval),
        T(test_protocol__hello_wrong_version__fails_version),
        T(test_protocol__hello_frame_of_other_version__fails_version),
        T(test_protocol__hello_wrong_page_size__fails_proto),
        T(test_protocol__hello_bad_stream_index__fails_proto),
        T(test_protocol__hello_without_streams__fails_proto),
        T(test_protocol__hello_with_257_streams__fails_proto),
        T(test_protocol__hello_with_256_streams__decodes),
        T(test_protocol__hello_empty_region__fails_proto),
        T(test_protocol__hello_region_of_partial_page__fails_proto),
        T(test_protocol__hello_unknown_caps__fails_proto),
        T(test_protocol__hello_bad_magic__fails_proto),
        T(test_protocol__hello_reserved_arg__fails_proto),
        T(test_protocol__hello_flipped_payload_byte__fails_checksum),
        T(test_protocol__error_frame_during_handshake__fails_peer),
        T(test_protocol__empty_error_frame_during_handshake__names_code),
        T(test_protocol__peer_message_control_bytes__are_replaced),
        T(test_protocol__data_frame_during_handshake__fails_proto),
        T(test_protocol__pages_roundtrip_one_page__decodes_offset_hash_data),
        T(test_protocol__pages_roundtrip_two_pages__decodes_offsets_hashes_data),
        T(test_protocol__pages_roundtrip_64_pages__decodes_offsets_hashes_data),
        T(test_protocol__pages_frame__matches_layout_and_sums_descriptors),
        T(test_protocol__pages_prefix_without_pages__prefix_decodes_frame_waits),
        T(test_protocol__pages_prefix_with_whole_frame__prefix_decodes),
        T(test_protocol__pages_prefix_incomplete__asks_for_more),
        T(test_protocol__pages_prefix_of_other_type__returns_one),
        T(test_protocol__pages_prefix_null_arguments__fail_inval),
        T(test_protocol__pages_of_no_pages__fails_proto),
        T(test_protocol__pages_of_65_pages__fails_proto),
        T(test_protocol__pages_of_65_pages_with_their_length__fails_toobig),
        T(test_protocol__pages_length_not_n_units__fails_proto),
        T(test_protocol__pages_with_flags__fails_proto),
        T(test_protocol__flipped_pages_descriptor_byte__fails_checksum),
        T(test_protocol__flipped_pages_page_byte__fails_checksum),
        T(test_protocol__flipped_pages_page_byte_deferred__decodes_unchecked),
        T(test_protocol__pages_offset_past_region__fails_range),
        T(test_protocol__misaligned_pages_offset__fails_range),
        T(test_protocol__failed_pages_decode__leaves_op_untouched),
        T(test_protocol__encode_pages_of_0_or_65__fails_inval),
        T(test_protocol__encode_pages_with_other_op__fails_inval),
        T(test_protocol__encode_pages_breaking_page_rules__fails_inval),
        T(test_protocol__encode_pages_into_small_buffer__fails_nospace),
        T(test_protocol__encode_pages_null_arguments__fail_inval),
        T(test_protocol__stream_fed_byte_by_byte__decodes_every_frame),
        T(test_protocol__random_mutations__never_crash_or_leave_region),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
