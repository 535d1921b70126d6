/* Unit tests of the packet transport core (dataplane/transport/pkt*.c)
 * over the in-process test backend (tests/dataplane/pkt_mem.c): handshake
 * and refusals, every operation type both ways, pages in fragments and
 * whole in jumbo frames, receive-into-place, DATA operations (in OPS
 * frames and in fragments, among pages, over a clean and a lossy link),
 * migrations with a dirtying writer over a clean and a lossy link,
 * malformed and hostile frames, shutdown, a vanished peer, and two
 * sessions on one port. */
#include <arpa/inet.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dataplane/protocol.h"
#include "dataplane/transport/pkt.h"
#include "dataplane/transport/pkt_internal.h"
#include "ferry/classifier.h"
#include "ferry/engine.h"
#include "ferry/error.h"
#include "ferry/region.h"
#include "ferry/transport.h"
#include "perf/bench.h"
#include "tests/dataplane/pkt_mem.h"

#define REGION_PAGES 1024u
#define REGION_SIZE ((uint64_t)REGION_PAGES * FY_PAGE_SIZE)
#define TIMEOUT_MS 5000
#define SRC_IP "10.77.0.1"
#define DST_IP "10.77.0.2"
#define PORT 4791

/* ---- the transport over the test backend ------------------------------- */

static const struct fy_transport_ops memt;

static int memt_listen(const char *addr, const struct fy_transport_opts *o,
                       struct fy_listener **out)
{
    return fy_pkt_listen(&fy_pkt_mem_ops, &memt, addr, o, out);
}

static int memt_connect(const char *addr, const struct fy_transport_opts *o,
                        const struct fy_session_info *info, struct fy_session **out)
{
    return fy_pkt_connect(&fy_pkt_mem_ops, &memt, addr, o, info, out);
}

static const struct fy_transport_ops memt = {
    .abi = FY_TRANSPORT_ABI,
    .name = "pktmem",
    .description = "packet core over the in-process test link",
    .data_max = FY_DATA_MAX,
    .listen = memt_listen,
    .accept = fy_pkt_accept,
    .listener_close = fy_pkt_listener_close,
    .listener_shutdown = fy_pkt_listener_shutdown,
    .connect = memt_connect,
    .shutdown = fy_pkt_shutdown,
    .close = fy_pkt_close,
};

/* ---- helpers ------------------------------------------------------------ */

static unsigned link_counter;

/* A link name no other test (or parallel run) uses. */
static void new_link(char *buf, size_t len)
{
    snprintf(buf, len, "t%d-%u", (int)getpid(), link_counter++);
}

static void fill_page(uint8_t *p, unsigned seed)
{
    for (unsigned i = 0; i < FY_PAGE_SIZE; i++)
        p[i] = (uint8_t)(i * 7u + seed * 31u + 3u);
}

static struct fy_session_info session_info(uint64_t region_size)
{
    struct fy_session_info info = {.region_size = region_size,
                                   .page_size = FY_PAGE_SIZE,
                                   .caps = FY_CAP_ZERO | FY_CAP_REF,
                                   .streams = 1};
    for (int i = 0; i < 16; i++)
        info.session_id[i] = (uint8_t)(0xa0 + i);
    return info;
}

struct acceptor {
    struct fy_listener *l;
    struct fy_accept_params params;
    struct fy_session *s;
    int rc;
    char detail[1024];
    pthread_t tid;
};

static void *acceptor_main(void *arg)
{
    struct acceptor *a = arg;

    a->rc = a->l->ops->accept(a->l, &a->params, &a->s);
    snprintf(a->detail, sizeof(a->detail), "%s", a->rc < 0 ? fy_error_detail() : "");
    return NULL;
}

static void acceptor_start(struct acceptor *a, struct fy_listener *l,
                           const struct fy_accept_params *params)
{
    memset(a, 0, sizeof(*a));
    a->l = l;
    a->params = *params;
    assert_int_equal(pthread_create(&a->tid, NULL, acceptor_main, a), 0);
}

static void acceptor_join(struct acceptor *a)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 30;
    if (pthread_timedjoin_np(a->tid, NULL, &ts) != 0)
        fail_msg("accept() did not return within 30 s");
}

/* Both ends of one test link, and a session between them. */
struct pair {
    char link[32];
    char src_params[256], dst_params[256];
    struct fy_listener *l;
    struct fy_session *src, *dst;
    struct fy_accept_params ap;
    uint8_t *placement;
};

static void pair_params(struct pair *p, const char *extra)
{
    new_link(p->link, sizeof(p->link));
    snprintf(p->src_params, sizeof(p->src_params), "link=%s;end=0;ip=%s;%s",
             p->link, SRC_IP, extra ? extra : "");
    snprintf(p->dst_params, sizeof(p->dst_params), "link=%s;end=1;ip=%s;%s",
             p->link, DST_IP, extra ? extra : "");
}

static void pair_listen(struct pair *p, int timeout_ms)
{
    struct fy_transport_opts o = {.timeout_ms = timeout_ms, .params = p->dst_params};

    if (memt.listen(DST_IP ":4791", &o, &p->l) != 0)
        fail_msg("listen: %s", fy_error_detail());
}

static int pair_connect(struct pair *p, unsigned streams, uint64_t region,
                        int timeout_ms, struct fy_session **out)
{
    struct fy_transport_opts o = {.streams = streams, .timeout_ms = timeout_ms,
                                  .params = p->src_params};
    struct fy_session_info info = session_info(region);

    return memt.connect(DST_IP ":4791", &o, &info, out);
}

/* Opens a session of 'streams' streams; 'extra' goes to both sides'
 * params. */
static struct pair *pair_open(unsigned streams, const char *extra,
                              const struct fy_accept_params *ap)
{
    struct pair *p = calloc(1, sizeof(*p));
    struct acceptor a;
    struct fy_accept_params def = {.region_size = REGION_SIZE};

    assert_non_null(p);
    pair_params(p, extra);
    pair_listen(p, TIMEOUT_MS);
    p->ap = ap ? *ap : def;
    acceptor_start(&a, p->l, &p->ap);
    if (pair_connect(p, streams, REGION_SIZE, TIMEOUT_MS, &p->src) != 0)
        fail_msg("connect: %s", fy_error_detail());
    acceptor_join(&a);
    if (a.rc != 0)
        fail_msg("accept: %s", a.detail);
    p->dst = a.s;
    return p;
}

static void pair_close(struct pair *p)
{
    if (!p)
        return;
    fy_session_close(p->src);
    fy_session_close(p->dst);
    memt.listener_close(p->l);
    free(p->placement);
    free(p);
}

static int pair_setup_1(void **state)
{
    *state = pair_open(1, NULL, NULL);
    return 0;
}

static int pair_setup_3(void **state)
{
    *state = pair_open(3, NULL, NULL);
    return 0;
}

static int pair_setup_jumbo(void **state)
{
    *state = pair_open(2, "mtu=9000", NULL);
    return 0;
}

static int pair_teardown(void **state)
{
    pair_close(*state);
    return 0;
}

static int recv_one(struct fy_stream *s, struct fy_op *op)
{
    return s->rx_burst(s, op, 1, TIMEOUT_MS);
}

static void assert_same_op(const struct fy_op *got, const struct fy_op *want)
{
    assert_int_equal(got->type, want->type);
    assert_int_equal(got->flags & ~(FY_OP_F_UNCHECKED | FY_OP_F_PLACED), want->flags);
    assert_int_equal(got->offset, want->offset);
    switch (want->type) {
    case FY_OP_PAGE:
        assert_true(fy_hash_eq(got->hash, want->hash));
        assert_memory_equal(got->data, want->data, FY_PAGE_SIZE);
        break;
    case FY_OP_ZERO:
        assert_int_equal(got->len, want->len);
        break;
    case FY_OP_REF:
    case FY_OP_VERIFY:
    case FY_OP_VERIFY_RESULT:
        assert_true(fy_hash_eq(got->hash, want->hash));
        break;
    case FY_OP_ROUND_END:
    case FY_OP_ROUND_ACK:
    case FY_OP_MISS:
    case FY_OP_ERROR:
        assert_int_equal(got->len, want->len);
        assert_memory_equal(got->data, want->data, want->len);
        break;
    case FY_OP_DATA:
        assert_int_equal(got->len, want->len);
        if (want->len)
            assert_memory_equal(got->data, want->data, want->len);
        break;
    default:
        break;
    }
}

/* ---- settings ----------------------------------------------------------- */

static void test_fy_params_get__present_absent_and_spaced__found_as_written(void **state)
{
    char buf[32];

    (void)state;
    assert_int_equal(fy_params_get("a=1;ip=10.0.0.1; window = 64 ;x=", "ip", buf, sizeof(buf)), 1);
    assert_string_equal(buf, "10.0.0.1");
    assert_int_equal(fy_params_get("a=1;ip=10.0.0.1; window = 64 ;x=", "window", buf, sizeof(buf)), 1);
    assert_string_equal(buf, "64");
    assert_int_equal(fy_params_get("a=1;ip=10.0.0.1; window = 64 ;x=", "x", buf, sizeof(buf)), 1);
    assert_string_equal(buf, "");
    assert_int_equal(fy_params_get("a=1;ipx=2", "ip", buf, sizeof(buf)), 0);
    assert_int_equal(fy_params_get(NULL, "ip", buf, sizeof(buf)), 0);
    assert_int_equal(fy_params_get("ip=123456789", "ip", buf, 4), -FY_E_INVAL);
}

static void test_fy_params_get_uint__out_of_range__fails_config(void **state)
{
    uint64_t v = 7;

    (void)state;
    assert_int_equal(fy_params_get_uint("window=8", "window", 16, 100, &v), -FY_E_CONFIG);
    assert_int_equal(fy_params_get_uint("window=abc", "window", 16, 100, &v), -FY_E_CONFIG);
    assert_int_equal(fy_params_get_uint("other=1", "window", 16, 100, &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(fy_params_get_uint("window=64", "window", 16, 100, &v), 0);
    assert_int_equal(v, 64);
}

/* ---- handshake ------------------------------------------------------------ */

static void test_pkt_connect__three_streams__both_sides_hold_three_streams_and_the_id(void **state)
{
    struct pair *p = *state;

    assert_int_equal(p->src->nstreams, 3);
    assert_int_equal(p->dst->nstreams, 3);
    assert_memory_equal(p->src->info.session_id, p->dst->info.session_id, 16);
    assert_int_equal(p->dst->info.region_size, REGION_SIZE);
    assert_string_equal(p->src->peer, DST_IP ":4791");
    assert_non_null(strstr(p->dst->peer, SRC_IP));
    assert_null(p->src->streams[0]->tx_mark); /* pkt_mem copies: no zero-copy */
}

static void test_pkt_accept__region_size_differs__accept_fails_and_connect_gets_peer_error(void **state)
{
    struct pair p = {0};
    struct acceptor a;
    struct fy_accept_params ap = {.region_size = 2 * REGION_SIZE};
    struct fy_session *s = NULL;

    (void)state;
    pair_params(&p, NULL);
    pair_listen(&p, TIMEOUT_MS);
    acceptor_start(&a, p.l, &ap);
    assert_int_equal(pair_connect(&p, 2, REGION_SIZE, TIMEOUT_MS, &s), -FY_E_PEER);
    assert_non_null(strstr(fy_error_detail(), "announced a region"));
    assert_null(s);
    acceptor_join(&a);
    assert_int_equal(a.rc, -FY_E_PROTO);
    assert_non_null(strstr(a.detail, "announced a region"));
    memt.listener_close(p.l);
}

static void test_pkt_accept__other_session_id_expected__refused_with_auth(void **state)
{
    struct pair p = {0};
    struct acceptor a;
    uint8_t want[16] = {1, 2, 3};
    struct fy_accept_params ap = {.region_size = REGION_SIZE, .session_id = want};
    struct fy_session *s = NULL;

    (void)state;
    pair_params(&p, NULL);
    pair_listen(&p, TIMEOUT_MS);
    acceptor_start(&a, p.l, &ap);
    assert_int_equal(pair_connect(&p, 1, REGION_SIZE, TIMEOUT_MS, &s), -FY_E_PEER);
    assert_non_null(strstr(fy_error_detail(), "unexpected session"));
    acceptor_join(&a);
    assert_int_equal(a.rc, -FY_E_AUTH);
    memt.listener_close(p.l);
}

static void test_pkt_connect__nobody_listening__fails_timeout(void **state)
{
    struct pair p = {0};
    struct fy_session *s = NULL;
    struct fy_transport_opts o = {.timeout_ms = 50, .params = NULL};
    struct fy_listener *l = NULL;

    (void)state;
    pair_params(&p, NULL);
    /* The other end is open (a listener on another UDP port) but nobody
     * listens on 4791. */
    o.params = p.dst_params;
    assert_int_equal(memt.listen(DST_IP ":4000", &o, &l), 0);
    assert_int_equal(pair_connect(&p, 1, REGION_SIZE, 300, &s), -FY_E_TIMEOUT);
    assert_non_null(strstr(fy_error_detail(), "no answer"));
    memt.listener_close(l);
}

static void test_pkt_accept__nobody_connects__fails_timeout(void **state)
{
    struct pair p = {0};
    struct fy_session *s = NULL;
    struct fy_accept_params ap = {0};

    (void)state;
    pair_params(&p, NULL);
    pair_listen(&p, 200);
    assert_int_equal(memt.accept(p.l, &ap, &s), -FY_E_TIMEOUT);
    memt.listener_close(p.l);
}

static void test_pkt_listen__address_not_the_ports__fails_config(void **state)
{
    struct pair p = {0};
    struct fy_transport_opts o = {0};
    struct fy_listener *l = NULL;

    (void)state;
    pair_params(&p, NULL);
    o.params = p.dst_params;
    assert_int_equal(memt.listen("10.1.1.1:4791", &o, &l), -FY_E_CONFIG);
    assert_int_equal(memt.listen("0.0.0.0:0", &o, &l), 0);
    assert_non_null(strstr(l->addr, DST_IP ":"));
    memt.listener_close(l);
}

/* ---- operations ----------------------------------------------------------- */

/* A zero-copy port may still retransmit pages whose acks were lost: they
 * are the caller's again only once the transport lets go of them. */
static void release_pages(struct fy_stream *tx)
{
    if (tx->tx_mark)
        assert_int_equal(tx->tx_wait(tx, tx->tx_mark(tx), TIMEOUT_MS), 0);
}

static void exchange_all_types(struct pair *p)
{
    unsigned n = p->src->nstreams;
    uint8_t (*pages)[FY_PAGE_SIZE] = malloc((size_t)n * FY_PAGE_SIZE);
    struct fy_round_counts *counts = calloc(n, sizeof(*counts));
    char msg[64];

    assert_non_null(pages);
    assert_non_null(counts);
    for (unsigned i = 0; i < n; i++) {
        fill_page(pages[i], i + 1);
        counts[i] = (struct fy_round_counts){.pages = 1 + i, .zero_pages = 3,
                                             .ref_pages = 1, .ops = 3 + 100 * i};
        snprintf(msg, sizeof(msg), "stream %u gives up", i);
        struct fy_op ops[6] = {
            {.type = FY_OP_PAGE, .offset = (uint64_t)(i + 1) * FY_PAGE_SIZE,
             .len = FY_PAGE_SIZE, .hash = fy_page_hash(pages[i]), .data = pages[i]},
            {.type = FY_OP_ZERO, .offset = (uint64_t)(10 + i) * FY_PAGE_SIZE,
             .len = 3 * FY_PAGE_SIZE},
            {.type = FY_OP_REF, .offset = (REGION_PAGES - 1 - i) * (uint64_t)FY_PAGE_SIZE,
             .hash = {0x1111 + i, 0x2222}},
            {.type = FY_OP_ROUND_END, .flags = FY_OP_F_FINAL, .offset = 7 + i,
             .data = &counts[i], .len = sizeof(counts[i])},
            {.type = FY_OP_ERROR, .offset = FY_E_VERIFY, .data = msg, .len = strlen(msg)},
            {.type = FY_OP_DONE},
        };
        assert_int_equal(fy_stream_send_all(p->src->streams[i], ops, 6), 0);
        for (unsigned k = 0; k < 6; k++) {
            struct fy_op got;
            assert_int_equal(recv_one(p->dst->streams[i], &got), 1);
            assert_same_op(&got, &ops[k]);
        }
        release_pages(p->src->streams[i]);
    }
    free(pages);
    free(counts);
}

static void test_pkt_tx_burst__every_source_op_type_one_stream__received_identical(void **state)
{
    exchange_all_types(*state);
}

static void test_pkt_tx_burst__every_source_op_type_three_streams__received_identical_on_same_stream(void **state)
{
    exchange_all_types(*state);
}

static void test_pkt_tx_burst__every_source_op_type_jumbo__received_identical(void **state)
{
    exchange_all_types(*state);
}

static void test_pkt_tx_burst__target_answers__received_identical_by_source(void **state)
{
    struct pair *p = *state;
    struct fy_round_ack ack = {.applied = 60, .misses = 2};
    uint64_t missed[2] = {4 * FY_PAGE_SIZE, 9 * FY_PAGE_SIZE};
    struct fy_op ops[5] = {
        {.type = FY_OP_ROUND_ACK, .offset = 3, .data = &ack, .len = sizeof(ack)},
        {.type = FY_OP_MISS, .data = missed, .len = sizeof(missed)},
        {.type = FY_OP_VERIFY, .hash = {7, 8}},
        {.type = FY_OP_VERIFY_RESULT, .offset = 1, .hash = {5, 6}},
        {.type = FY_OP_DONE},
    };

    assert_int_equal(fy_stream_send_all(p->dst->streams[0], ops, 5), 0);
    for (unsigned k = 0; k < 5; k++) {
        struct fy_op got;
        assert_int_equal(recv_one(p->src->streams[0], &got), 1);
        assert_same_op(&got, &ops[k]);
    }
}

static void test_pkt_tx_burst__miss_of_4096_offsets__arrives_split_in_order(void **state)
{
    struct pair *p = *state;
    uint64_t *missed = malloc(4096 * sizeof(*missed));
    struct fy_op op = {.type = FY_OP_MISS, .data = missed, .len = 4096 * 8};
    uint64_t got_n = 0;

    assert_non_null(missed);
    for (unsigned i = 0; i < 4096; i++)
        missed[i] = (uint64_t)(i % REGION_PAGES) * FY_PAGE_SIZE;
    assert_int_equal(fy_stream_send_all(p->dst->streams[0], &op, 1), 0);
    while (got_n < 4096) {
        struct fy_op got;
        assert_int_equal(recv_one(p->src->streams[0], &got), 1);
        assert_int_equal(got.type, FY_OP_MISS);
        for (uint64_t i = 0; i < got.len / 8; i++)
            assert_int_equal(fy_proto_miss_offset(&got, i), missed[got_n + i]);
        got_n += got.len / 8;
    }
    assert_int_equal(got_n, 4096);
    free(missed);
}

/* Many pages in flight, read back by another thread in bursts of 'burst':
 * order and content kept across fragment and burst boundaries. */
struct page_reader {
    struct fy_stream *rx;
    const struct fy_op *ops;
    unsigned npages, burst, received;
    char error[256];
    pthread_t tid;
};

static void *page_reader_main(void *arg)
{
    struct page_reader *r = arg;
    struct fy_op got[64];

    while (r->received < r->npages) {
        int n = r->rx->rx_burst(r->rx, got, r->burst, TIMEOUT_MS);
        if (n <= 0) {
            snprintf(r->error, sizeof(r->error), "rx_burst after %u pages: %d %s",
                     r->received, n, fy_error_detail());
            return NULL;
        }
        for (int i = 0; i < n; i++) {
            const struct fy_op *want = &r->ops[r->received + (unsigned)i];
            if (got[i].type != FY_OP_PAGE || got[i].offset != want->offset ||
                memcmp(got[i].data, want->data, FY_PAGE_SIZE) != 0) {
                snprintf(r->error, sizeof(r->error), "page %u differs",
                         r->received + (unsigned)i);
                return NULL;
            }
        }
        r->received += (unsigned)n;
    }
    return NULL;
}

static void send_and_check_pages(struct pair *p, unsigned npages, unsigned burst)
{
    uint8_t *pages = malloc((size_t)npages * FY_PAGE_SIZE);
    struct fy_op *ops = calloc(npages, sizeof(*ops));
    struct page_reader r = {.rx = p->dst->streams[0], .npages = npages, .burst = burst};

    assert_non_null(pages);
    assert_non_null(ops);
    for (unsigned i = 0; i < npages; i++) {
        uint8_t *pg = pages + (size_t)i * FY_PAGE_SIZE;
        fill_page(pg, 1000 + i);
        ops[i] = (struct fy_op){.type = FY_OP_PAGE,
                                .offset = (uint64_t)(i % REGION_PAGES) * FY_PAGE_SIZE,
                                .len = FY_PAGE_SIZE, .hash = fy_page_hash(pg), .data = pg};
    }
    r.ops = ops;
    assert_int_equal(pthread_create(&r.tid, NULL, page_reader_main, &r), 0);
    if (fy_stream_send_all(p->src->streams[0], ops, npages) != 0)
        fail_msg("send: %s", fy_error_detail());
    pthread_join(r.tid, NULL);
    if (r.error[0])
        fail_msg("%s", r.error);
    release_pages(p->src->streams[0]);
    free(pages);
    free(ops);
}

static void test_pkt_rx_burst__2000_pages_one_per_call__in_order_intact(void **state)
{
    send_and_check_pages(*state, 2000, 1);
}

static void test_pkt_rx_burst__2000_pages_seven_per_call__in_order_intact(void **state)
{
    send_and_check_pages(*state, 2000, 7);
}

static void test_pkt_rx_burst__jumbo_2000_pages__each_page_one_frame(void **state)
{
    struct pair *p = *state;
    struct fy_pkt_stats st;

    send_and_check_pages(p, 2000, 64);
    fy_pkt_session_stats(p->src, &st);
    assert_true(st.tx_frames >= 2000 && st.tx_frames < 2000 + 400);
}

static void test_pkt_wire_bytes__pages_sent__count_headers_and_fragments(void **state)
{
    struct pair *p = *state;
    uint64_t tx0 = p->src->streams[0]->tx_wire_bytes;

    send_and_check_pages(p, 100, 64);
    uint64_t tx = p->src->streams[0]->tx_wire_bytes - tx0;
    /* 3 fragments per page at MTU 1500, each with 14+20+8+40+32 bytes of
     * headers. */
    assert_true(tx >= 100 * (FY_PAGE_SIZE + 3 * 114));
    assert_true(p->dst->streams[0]->rx_wire_bytes >= 100 * (FY_PAGE_SIZE + 3 * 114));
}

static void test_pkt_rx_burst__placement__pages_copied_into_place_flagged_placed_unchecked(void **state)
{
    uint8_t *dst = calloc(1, REGION_SIZE);
    struct fy_accept_params ap = {.region_size = REGION_SIZE, .placement = dst,
                                  .receiver_checks_pages = true};
    struct pair *p = pair_open(1, NULL, &ap);
    uint8_t page[FY_PAGE_SIZE];
    struct fy_op op = {.type = FY_OP_PAGE, .offset = 17 * FY_PAGE_SIZE,
                       .len = FY_PAGE_SIZE}, got;

    (void)state;
    fill_page(page, 5);
    op.hash = fy_page_hash(page);
    op.data = page;
    assert_int_equal(fy_stream_send_all(p->src->streams[0], &op, 1), 0);
    assert_int_equal(recv_one(p->dst->streams[0], &got), 1);
    assert_int_equal(got.flags, FY_OP_F_PLACED | FY_OP_F_UNCHECKED);
    assert_ptr_equal(got.data, dst + 17 * FY_PAGE_SIZE);
    assert_memory_equal(dst + 17 * FY_PAGE_SIZE, page, FY_PAGE_SIZE);
    pair_close(p);
    free(dst);
}

static void test_pkt_rx_burst__page_hash_not_of_its_data__fails_checksum(void **state)
{
    struct pair *p = *state;
    uint8_t page[FY_PAGE_SIZE];
    struct fy_op op = {.type = FY_OP_PAGE, .offset = 0, .len = FY_PAGE_SIZE,
                       .hash = {1, 2}, .data = page}, got;

    fill_page(page, 9);
    assert_int_equal(fy_stream_send_all(p->src->streams[0], &op, 1), 0);
    assert_int_equal(recv_one(p->dst->streams[0], &got), -FY_E_CHECKSUM);
    assert_int_equal(recv_one(p->dst->streams[0], &got), -FY_E_CHECKSUM);
}

static void test_pkt_rx_burst__nothing_sent__returns_zero_after_timeout(void **state)
{
    struct pair *p = *state;
    struct fy_op got;

    assert_int_equal(p->dst->streams[0]->rx_burst(p->dst->streams[0], &got, 1, 30), 0);
}

static void test_pkt_rx_burst__peer_closed__ops_then_fails_closed(void **state)
{
    struct pair *p = *state;
    struct fy_op done = {.type = FY_OP_DONE}, got;

    assert_int_equal(fy_stream_send_all(p->src->streams[0], &done, 1), 0);
    fy_session_close(p->src);
    p->src = NULL;
    assert_int_equal(recv_one(p->dst->streams[0], &got), 1);
    assert_int_equal(got.type, FY_OP_DONE);
    assert_int_equal(recv_one(p->dst->streams[0], &got), -FY_E_CLOSED);
}


static void migrate(const char *extra, uint64_t size, unsigned streams,
                    struct fy_pkt_stats *stats_out);

/* ---- malformed and hostile frames ------------------------------------------ */

/* A frame as the source would send it to the target's session 'dst'. */
static unsigned hostile_frame(uint8_t *buf, struct fy_session *dst, uint8_t type,
                              uint32_t seq, const void *payload, unsigned plen)
{
    struct pkt_sess *s = (struct pkt_sess *)dst;
    struct pkt_tmpl t;
    uint8_t my_mac[6], src_ip[4], dst_ip[4];
    struct fy_pktio_info info;

    s->port->ops->info(s->port->io, &info);
    memcpy(my_mac, info.mac, 6);
    inet_pton(AF_INET, SRC_IP, src_ip);
    inet_pton(AF_INET, DST_IP, dst_ip);
    uint32_t sip, dip;
    memcpy(&sip, src_ip, 4);
    memcpy(&dip, dst_ip, 4);
    pkt_tmpl_init(&t, s->peer_mac, my_mac, sip, dip, PORT);
    struct pkt_fph f = {.type = type, .tag = s->tag, .src_tag = s->peer_tag,
                        .stream = 0, .seq = seq, .window = 16, .plen = (uint16_t)plen};
    if (plen)
        memcpy(buf + PKT_HDRS_LEN, payload, plen);
    pkt_write_hdrs(buf, &t, &f, type == PT_PAGE || type == PT_DATA ? PKT_DESC_LEN : 0);
    return PKT_HDRS_LEN + plen;
}

static void inject(struct pair *p, const uint8_t *frame, unsigned len)
{
    assert_int_equal(fy_pkt_mem_inject(p->link, 1, 0, frame, len), 0);
}

static void test_pkt_rx__malformed_and_hostile_frames__dropped_counted_session_intact(void **state)
{
    struct pair *p = *state;
    struct pkt_sess *ds = (struct pkt_sess *)p->dst;
    uint8_t f[2048], payload[1024];
    unsigned len;
    struct fy_pkt_stats before, after;
    uint64_t far_seq = 100000;
    struct fy_op got;

    fy_pkt_session_stats(p->dst, &before);
    memset(payload, 0x5a, sizeof(payload));
    /* Garbage, and frames too short for their headers. */
    inject(p, payload, 200);
    inject(p, payload, 10);
    len = hostile_frame(f, p->dst, PT_ACK, 0, NULL, 0);
    inject(p, f, 40);
    /* Each header field broken in turn. */
    struct { unsigned off; uint8_t xor; } breaks[] = {
        {12, 0x01},                          /* ethertype */
        {PKT_ETH_LEN, 0x10},                 /* IP version */
        {PKT_ETH_LEN + 3, 0x40},             /* IP total length */
        {PKT_ETH_LEN + 9, 0x01},             /* IP protocol */
        {PKT_ETH_LEN + 10, 0x01},            /* IP checksum */
        {PKT_ETH_LEN + PKT_IP_LEN + 5, 0x01}, /* UDP length */
        {PKT_L2L4_LEN + 4, 0x01},            /* magic */
        {PKT_L2L4_LEN + 6, 0x01},            /* version */
        {PKT_L2L4_LEN + 0, 0x01},            /* header sum */
        {PKT_L2L4_LEN + 20, 0x01},           /* seq, under the sum */
    };
    for (unsigned i = 0; i < sizeof(breaks) / sizeof(breaks[0]); i++) {
        len = hostile_frame(f, p->dst, PT_ACK, 0, NULL, 0);
        f[breaks[i].off] ^= breaks[i].xor;
        inject(p, f, len);
    }
    /* A page fragment running past the page, one with a bad descriptor. */
    struct pkt_desc d = {.offset = 0, .frag_off = 4000, .frag_len = 200};
    pkt_put_desc(payload, &d);
    inject(p, f, hostile_frame(f, p->dst, PT_PAGE, 0, payload, PKT_DESC_LEN + 200));
    d = (struct pkt_desc){.offset = 123, .frag_off = 0, .frag_len = 100};
    pkt_put_desc(payload, &d);
    inject(p, f, hostile_frame(f, p->dst, PT_PAGE, 0, payload, PKT_DESC_LEN + 100));
    /* Operations that are not v1 frames. */
    inject(p, f, hostile_frame(f, p->dst, PT_OPS, 0, payload, 100));
    unsigned malformed = 2 + 1 + 10 + 2 + 1;

    /* Well formed, but for nobody here: unknown tag, wrong peer tag,
     * stream out of range, another UDP port. */
    len = hostile_frame(f, p->dst, PT_ACK, 0, NULL, 0);
    uint32_t tag = ds->tag;
    ds->tag ^= 0x55;
    len = hostile_frame(f, p->dst, PT_ACK, 0, NULL, 0);
    ds->tag = tag;
    inject(p, f, len);
    ds->peer_tag ^= 0x55;
    len = hostile_frame(f, p->dst, PT_ACK, 0, NULL, 0);
    ds->peer_tag ^= 0x55;
    inject(p, f, len);
    {
        struct pkt_tmpl t;
        uint32_t sip, dip;
        inet_pton(AF_INET, SRC_IP, &sip);
        inet_pton(AF_INET, DST_IP, &dip);
        pkt_tmpl_init(&t, ds->peer_mac, (const uint8_t[6]){0}, sip, dip, PORT);
        struct fy_pktio_info info;
        ds->port->ops->info(ds->port->io, &info);
        pkt_tmpl_init(&t, ds->peer_mac, info.mac, sip, dip, PORT);
        struct pkt_fph h = {.type = PT_ACK, .tag = ds->tag, .src_tag = ds->peer_tag,
                            .stream = 99};
        pkt_write_hdrs(f, &t, &h, 0);
        inject(p, f, PKT_HDRS_LEN);
        pkt_tmpl_init(&t, ds->peer_mac, info.mac, sip, dip, PORT + 1);
        h.stream = 0;
        pkt_write_hdrs(f, &t, &h, 0);
        inject(p, f, PKT_HDRS_LEN);
    }
    unsigned unknown = 4;

    /* Offsets outside the region: a page and a ZERO range. */
    d = (struct pkt_desc){.offset = REGION_SIZE, .frag_off = 0, .frag_len = 100};
    pkt_put_desc(payload, &d);
    inject(p, f, hostile_frame(f, p->dst, PT_PAGE, (uint32_t)far_seq, payload,
                               PKT_DESC_LEN + 100));
    struct fy_op zero = {.type = FY_OP_ZERO, .offset = REGION_SIZE - FY_PAGE_SIZE,
                         .len = 2 * FY_PAGE_SIZE};
    int zl = fy_proto_encode(&zero, payload, sizeof(payload));
    assert_true(zl > 0);
    inject(p, f, hostile_frame(f, p->dst, PT_OPS, 0, payload, (unsigned)zl));
    unsigned range = 2;

    /* Let the target's port take them all, then check the counts. */
    assert_int_equal(p->dst->streams[0]->rx_burst(p->dst->streams[0], &got, 1, 100), 0);
    fy_pkt_session_stats(p->dst, &after);
    assert_int_equal(after.drop_malformed - before.drop_malformed, malformed);
    assert_int_equal(after.drop_unknown - before.drop_unknown, unknown);
    assert_int_equal(after.drop_range - before.drop_range, range);
    /* The session goes on as if nothing happened. */
    exchange_all_types(p);
}


/* Thousands of frames with random bytes changed, built from frames the
 * session would take (their sequence numbers far outside its window, so
 * even one that stays valid changes nothing): none crashes anything, and
 * the session goes on. */
static void test_pkt_rx__mutated_frames_fuzz__no_crash_session_intact(void **state)
{
    struct pair *p = *state;
    uint8_t base[5][2048], f[2048], payload[1024];
    unsigned blen[5];
    uint64_t rng = 0x1234567;
    struct fy_op got;

    struct fy_op zero = {.type = FY_OP_ZERO, .offset = 0, .len = FY_PAGE_SIZE};
    int zl = fy_proto_encode(&zero, payload, sizeof(payload));
    assert_true(zl > 0);
    blen[0] = hostile_frame(base[0], p->dst, PT_OPS, 1u << 30, payload, (unsigned)zl);
    struct pkt_desc d = {.offset = FY_PAGE_SIZE, .frag_off = 0, .frag_len = 600};
    pkt_put_desc(payload, &d);
    blen[1] = hostile_frame(base[1], p->dst, PT_PAGE, 1u << 30, payload, PKT_DESC_LEN + 600);
    blen[2] = hostile_frame(base[2], p->dst, PT_ACK, 0, NULL, 0);
    blen[3] = hostile_frame(base[3], p->dst, PT_FIN, 1u << 30, NULL, 0);
    d = (struct pkt_desc){.offset = 77, .frag_off = 1400, .frag_len = 500, .total = 4000};
    pkt_put_desc(payload, &d);
    blen[4] = hostile_frame(base[4], p->dst, PT_DATA, 1u << 30, payload, PKT_DESC_LEN + 500);
    for (unsigned i = 0; i < 5000; i++) {
        unsigned k = i % 5, len = blen[k], flips;
        memcpy(f, base[k], len);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        flips = 1 + (unsigned)(rng % 4);
        for (unsigned j = 0; j < flips; j++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            f[(rng >> 8) % (len < 160 ? len : 160)] ^= (uint8_t)(1u << (rng % 8));
        }
        if (rng % 16 == 0)
            len = (unsigned)(rng >> 20) % len; /* cut short too */
        while (fy_pkt_mem_inject(p->link, 1, 0, f, len) == -FY_E_NOSPACE)
            p->dst->streams[0]->rx_burst(p->dst->streams[0], &got, 1, 1);
    }
    assert_int_equal(p->dst->streams[0]->rx_burst(p->dst->streams[0], &got, 1, 100), 0);
    exchange_all_types(p);
}

/* ---- shutdown, a vanished peer --------------------------------------------- */

struct blocked {
    struct fy_stream *s;
    bool tx;
    const struct fy_op *ops;
    unsigned n;
    int rc;
    pthread_t tid;
};

static void *blocked_main(void *arg)
{
    struct blocked *b = arg;
    struct fy_op got;

    if (b->tx) {
        b->rc = 1;
        while (b->rc > 0)
            b->rc = b->s->tx_burst(b->s, b->ops, b->n);
    } else {
        b->rc = b->s->rx_burst(b->s, &got, 1, -1);
    }
    return NULL;
}

static void join_within(pthread_t tid, int seconds)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += seconds;
    if (pthread_timedjoin_np(tid, NULL, &ts) != 0)
        fail_msg("the blocked call did not return within %d s", seconds);
}

static void test_pkt_shutdown__rx_blocked_in_other_thread__returns_cancelled(void **state)
{
    struct pair *p = *state;
    struct blocked b = {.s = p->dst->streams[0]};

    assert_int_equal(pthread_create(&b.tid, NULL, blocked_main, &b), 0);
    usleep(50000);
    fy_session_shutdown(p->dst);
    join_within(b.tid, 5);
    assert_int_equal(b.rc, -FY_E_CANCELLED);
}

static void test_pkt_shutdown__tx_blocked_on_full_window__returns_cancelled(void **state)
{
    struct pair *p = *state;
    uint8_t page[FY_PAGE_SIZE];
    struct fy_op op = {.type = FY_OP_PAGE, .offset = 0, .len = FY_PAGE_SIZE};
    struct blocked b = {.s = p->src->streams[0], .tx = true, .ops = &op, .n = 1};

    fill_page(page, 3);
    op.hash = fy_page_hash(page);
    op.data = page;
    /* Nobody reads at the target: the window (16 frames) fills. */
    assert_int_equal(pthread_create(&b.tid, NULL, blocked_main, &b), 0);
    usleep(200000);
    fy_session_shutdown(p->src);
    join_within(b.tid, 5);
    assert_int_equal(b.rc, -FY_E_CANCELLED);
}

static int pair_setup_small_window(void **state)
{
    *state = pair_open(1, "window=16", NULL);
    return 0;
}

static void test_pkt_rx_burst__link_cut__fails_timeout_not_a_hang(void **state)
{
    struct pair *p = calloc(1, sizeof(*p));
    struct acceptor a;
    struct fy_op got;

    (void)state;
    pair_params(p, NULL);
    pair_listen(p, 400);
    p->ap = (struct fy_accept_params){.region_size = REGION_SIZE};
    acceptor_start(&a, p->l, &p->ap);
    assert_int_equal(pair_connect(p, 1, REGION_SIZE, 400, &p->src), 0);
    acceptor_join(&a);
    assert_int_equal(a.rc, 0);
    p->dst = a.s;
    fy_pkt_mem_cut(p->link, true);
    double t0 = (double)pkt_now() / 1e9;
    assert_int_equal(p->src->streams[0]->rx_burst(p->src->streams[0], &got, 1, -1),
                     -FY_E_TIMEOUT);
    double waited = (double)pkt_now() / 1e9 - t0;
    assert_true(waited < 3.0);
    assert_non_null(strstr(fy_error_detail(), "nothing heard"));
    pair_close(p);
}

static void test_pkt_tx_burst__link_cut_mid_send__fails_timeout(void **state)
{
    struct pair *p = calloc(1, sizeof(*p));
    struct acceptor a;
    uint8_t page[FY_PAGE_SIZE];
    struct fy_op op = {.type = FY_OP_PAGE, .offset = 0, .len = FY_PAGE_SIZE};
    int rc = 1;

    (void)state;
    pair_params(p, NULL);
    pair_listen(p, 400);
    p->ap = (struct fy_accept_params){.region_size = REGION_SIZE};
    acceptor_start(&a, p->l, &p->ap);
    assert_int_equal(pair_connect(p, 1, REGION_SIZE, 400, &p->src), 0);
    acceptor_join(&a);
    p->dst = a.s;
    fill_page(page, 3);
    op.hash = fy_page_hash(page);
    op.data = page;
    fy_pkt_mem_cut(p->link, true);
    for (int i = 0; i < 100000 && rc > 0; i++)
        rc = p->src->streams[0]->tx_burst(p->src->streams[0], &op, 1);
    assert_int_equal(rc, -FY_E_TIMEOUT);
    pair_close(p);
}

/* ---- two sessions on one port ----------------------------------------------- */

struct connector {
    struct pair *p;
    uint8_t id;
    struct fy_session *s;
    int rc;
    char detail[512];
    pthread_t tid;
};

static void *connector_main(void *arg)
{
    struct connector *c = arg;
    struct fy_transport_opts o = {.streams = 2, .timeout_ms = TIMEOUT_MS,
                                  .params = c->p->src_params};
    struct fy_session_info info = session_info(REGION_SIZE);

    info.session_id[0] = c->id;
    c->rc = memt.connect(DST_IP ":4791", &o, &info, &c->s);
    snprintf(c->detail, sizeof(c->detail), "%s", c->rc ? fy_error_detail() : "");
    return NULL;
}

static void test_pkt_accept__two_sources_at_once_on_one_port__both_sessions_work(void **state)
{
    struct pair p = {0};
    struct connector c[2] = {{.p = &p, .id = 1}, {.p = &p, .id = 2}};
    struct fy_session *acc[2] = {NULL, NULL};
    struct fy_accept_params ap = {.region_size = REGION_SIZE};

    (void)state;
    pair_params(&p, NULL);
    pair_listen(&p, TIMEOUT_MS);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&c[i].tid, NULL, connector_main, &c[i]), 0);
    for (int i = 0; i < 2; i++)
        if (memt.accept(p.l, &ap, &acc[i]) != 0)
            fail_msg("accept %d: %s", i, fy_error_detail());
    for (int i = 0; i < 2; i++) {
        pthread_join(c[i].tid, NULL);
        if (c[i].rc)
            fail_msg("connect %d: %s", i, c[i].detail);
    }
    /* Match each accepted session with its source by the id. */
    for (int i = 0; i < 2; i++) {
        struct pair q = p;
        q.src = c[i].s;
        q.dst = acc[0]->info.session_id[0] == c[i].id ? acc[0] : acc[1];
        assert_int_equal(q.dst->info.session_id[0], c[i].id);
        exchange_all_types(&q);
    }
    for (int i = 0; i < 2; i++) {
        fy_session_close(c[i].s);
        fy_session_close(acc[i]);
    }
    /* Everything the core held went back to the test link, once the
     * port's service thread took the last FINs off its rings. */
    long in_use = -1;
    for (int i = 0; i < 200 && in_use != 0; i++) {
        in_use = fy_pkt_mem_in_use(p.link, 1);
        usleep(5000);
    }
    assert_int_equal(in_use, 0);
    memt.listener_close(p.l);
}

/* ---- zero-copy sending ------------------------------------------------------ */

static void test_pkt_tx_wait__extbuf_port__marks_released_once_acknowledged(void **state)
{
    struct pair *p = pair_open(1, "extbuf=1", NULL);
    struct fy_stream *tx = p->src->streams[0];
    uint8_t page[FY_PAGE_SIZE];
    struct fy_op op = {.type = FY_OP_PAGE, .offset = 0, .len = FY_PAGE_SIZE}, got;

    (void)state;
    assert_non_null(tx->tx_mark);
    assert_non_null(tx->tx_wait);
    fill_page(page, 77);
    op.hash = fy_page_hash(page);
    op.data = page;
    assert_int_equal(fy_stream_send_all(tx, &op, 1), 0);
    uint64_t mark = tx->tx_mark(tx);
    assert_true(mark > 0);
    assert_int_equal(recv_one(p->dst->streams[0], &got), 1);
    assert_memory_equal(got.data, page, FY_PAGE_SIZE);
    assert_int_equal(tx->tx_wait(tx, mark, TIMEOUT_MS), 0);
    pair_close(p);
}

static void test_pkt_migrate__64m_zero_copy_lossy__digests_equal(void **state)
{
    struct fy_pkt_stats st;

    (void)state;
    migrate("extbuf=1;lossy=drop:0.01,reorder:0.01,dup:0.01,seed:9", 64ull << 20, 2, &st);
    assert_true(st.retransmits > 0);
}



static void test_pkt_tx_burst__invalid_op_after_valid_ones__prefix_sent_then_inval_stream_intact(void **state)
{
    struct pair *p = *state;
    uint64_t bad_miss[600];
    struct fy_op ops[3] = {
        {.type = FY_OP_ZERO, .offset = 0, .len = FY_PAGE_SIZE},
        {.type = FY_OP_ERROR, .offset = 0, .data = "no code", .len = 7},
        {.type = FY_OP_DONE},
    };
    struct fy_op miss = {.type = FY_OP_MISS, .data = bad_miss, .len = sizeof(bad_miss)};
    struct fy_op got;
    struct fy_stream *tx = p->src->streams[0];

    for (unsigned i = 0; i < 600; i++)
        bad_miss[i] = (uint64_t)i * FY_PAGE_SIZE + (i == 500 ? 1 : 0);
    assert_int_equal(tx->tx_burst(tx, ops, 3), 1);
    assert_int_equal(tx->tx_burst(tx, ops + 1, 2), -FY_E_INVAL);
    /* A MISS list split over frames whose 501st entry is bad: nothing of
     * it goes. */
    assert_int_equal(tx->tx_burst(tx, &miss, 1), -FY_E_INVAL);
    assert_int_equal(tx->tx_burst(tx, ops + 2, 1), 1);
    assert_int_equal(recv_one(p->dst->streams[0], &got), 1);
    assert_same_op(&got, &ops[0]);
    assert_int_equal(recv_one(p->dst->streams[0], &got), 1);
    assert_same_op(&got, &ops[2]);
    exchange_all_types(p);
}


/* Streams on more queues at one end than the other: frames of a stream
 * arrive on a queue that is not the one it sends on, as with RSS. */
static void test_pkt_queues__one_at_the_source_three_at_the_target__every_stream_works(void **state)
{
    struct pair *p = calloc(1, sizeof(*p));
    struct acceptor a;

    (void)state;
    assert_non_null(p);
    pair_params(p, NULL);
    strncat(p->src_params, "queues=1", sizeof(p->src_params) - strlen(p->src_params) - 1);
    strncat(p->dst_params, "queues=3", sizeof(p->dst_params) - strlen(p->dst_params) - 1);
    pair_listen(p, TIMEOUT_MS);
    p->ap = (struct fy_accept_params){.region_size = REGION_SIZE};
    acceptor_start(&a, p->l, &p->ap);
    if (pair_connect(p, 3, REGION_SIZE, TIMEOUT_MS, &p->src) != 0)
        fail_msg("connect: %s", fy_error_detail());
    acceptor_join(&a);
    assert_int_equal(a.rc, 0);
    p->dst = a.s;
    exchange_all_types(p);
    /* And back: the target's stream 2 sends on its queue 2, which the
     * source (one queue) receives on its queue 0. */
    struct pair back = *p;
    back.src = p->dst;
    back.dst = p->src;
    exchange_all_types(&back);
    pair_close(p);
}


static void test_pkt_tx_burst__mtu_576_long_error_and_miss__cut_and_split_to_fit(void **state)
{
    struct pair *p = pair_open(1, "mtu=576", NULL);
    char msg[600];
    uint64_t *missed = malloc(4096 * sizeof(*missed));
    struct fy_op ops[2] = {
        {.type = FY_OP_ERROR, .offset = FY_E_PROTO, .data = msg, .len = 512},
        {.type = FY_OP_MISS, .data = missed, .len = 4096 * 8},
    };
    struct fy_op got;
    uint64_t n = 0;

    (void)state;
    memset(msg, 'x', sizeof(msg));
    for (unsigned i = 0; i < 4096; i++)
        missed[i] = (uint64_t)(i % REGION_PAGES) * FY_PAGE_SIZE;
    assert_int_equal(fy_stream_send_all(p->dst->streams[0], ops, 2), 0);
    assert_int_equal(recv_one(p->src->streams[0], &got), 1);
    assert_int_equal(got.type, FY_OP_ERROR);
    assert_true(got.len > 400 && got.len < 512);
    while (n < 4096) {
        assert_int_equal(recv_one(p->src->streams[0], &got), 1);
        assert_int_equal(got.type, FY_OP_MISS);
        n += got.len / 8;
    }
    send_and_check_pages(p, 200, 9);
    free(missed);
    pair_close(p);
}

/* ---- DATA operations ---------------------------------------------------------- */

/* Sizes a mixed sequence cycles through: empty, one byte, 1400, the most
 * an OPS frame holds at MTU 1500 (1408) and one more, two full fragments
 * at MTU 1500 (2800) and one more, the largest. */
static const unsigned data_sizes[] = {0, 1, 1400, 4096, 1408, 1409, 2800, 2801};
#define NDATA_SIZES (sizeof(data_sizes) / sizeof(data_sizes[0]))

/* Operation i of a mixed sequence: every third a PAGE, the others DATA of
 * the sizes above with tags of any value (unaligned, beyond any region). */
static bool mixed_is_page(unsigned i)
{
    return i % 3 == 1;
}

static unsigned mixed_data_len(unsigned i)
{
    return data_sizes[(i / 3 * 2 + i % 3 / 2) % NDATA_SIZES];
}

static uint64_t mixed_tag(unsigned i)
{
    return (uint64_t)i * 0x9e3779b97f4a7c15ull + 1;
}

static void fill_data(uint8_t *p, unsigned len, unsigned seed)
{
    uint64_t x = seed * 0x2545f4914f6cdd1dull + 7;

    for (unsigned k = 0; k < len; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[k] = (uint8_t)x;
    }
}

struct mixed_reader {
    struct fy_stream *rx;
    unsigned n, burst, received;
    char error[256];
    pthread_t tid;
};

static void *mixed_reader_main(void *arg)
{
    struct mixed_reader *r = arg;
    struct fy_op got[64];
    uint8_t want[FY_PAGE_SIZE];

    while (r->received < r->n) {
        int n = r->rx->rx_burst(r->rx, got, r->burst, TIMEOUT_MS);
        if (n <= 0) {
            snprintf(r->error, sizeof(r->error), "rx_burst after %u ops: %d %s",
                     r->received, n, fy_error_detail());
            return NULL;
        }
        /* Every operation of the burst is checked only now, after the
         * call: its data must still be there. */
        for (int k = 0; k < n; k++) {
            unsigned i = r->received + (unsigned)k;
            const struct fy_op *g = &got[k];
            bool page = mixed_is_page(i);
            unsigned len = page ? FY_PAGE_SIZE : mixed_data_len(i);
            uint64_t off = page ? (uint64_t)(i % REGION_PAGES) * FY_PAGE_SIZE
                                : mixed_tag(i);
            if (page)
                fill_page(want, i);
            else
                fill_data(want, len, i);
            if (g->type != (page ? FY_OP_PAGE : FY_OP_DATA) || g->offset != off ||
                g->len != len || (len && memcmp(g->data, want, len) != 0) ||
                (!page && g->flags)) {
                snprintf(r->error, sizeof(r->error),
                         "op %u: type %u offset 0x%llx len %llu flags 0x%x, "
                         "expected type %u offset 0x%llx len %u (or other bytes)",
                         i, g->type, (unsigned long long)g->offset,
                         (unsigned long long)g->len, g->flags,
                         page ? FY_OP_PAGE : FY_OP_DATA, (unsigned long long)off, len);
                return NULL;
            }
        }
        r->received += (unsigned)n;
    }
    return NULL;
}

/* Sends n mixed operations from tx, in batches of up to 16, while a thread
 * reads them from rx in bursts of 'burst' and checks type, tag or offset,
 * length, bytes and order.  DATA buffers are overwritten as soon as a
 * batch is sent (the transport must have copied them); pages stay put
 * (zero-copy ports send them in place). */
static void send_and_check_mixed(struct fy_stream *tx, struct fy_stream *rx,
                                 unsigned n, unsigned burst)
{
    uint8_t *pages = malloc((size_t)n * FY_PAGE_SIZE);
    uint8_t (*bufs)[FY_DATA_MAX] = malloc(16 * (size_t)FY_DATA_MAX);
    struct mixed_reader r = {.rx = rx, .n = n, .burst = burst};

    assert_non_null(pages);
    assert_non_null(bufs);
    assert_int_equal(pthread_create(&r.tid, NULL, mixed_reader_main, &r), 0);
    for (unsigned i = 0; i < n;) {
        struct fy_op ops[16];
        unsigned k = 0;
        for (; k < 16 && i + k < n; k++) {
            unsigned j = i + k;
            if (mixed_is_page(j)) {
                uint8_t *pg = pages + (size_t)j * FY_PAGE_SIZE;
                fill_page(pg, j);
                ops[k] = (struct fy_op){.type = FY_OP_PAGE,
                                        .offset = (uint64_t)(j % REGION_PAGES) * FY_PAGE_SIZE,
                                        .len = FY_PAGE_SIZE, .hash = fy_page_hash(pg),
                                        .data = pg};
            } else {
                unsigned len = mixed_data_len(j);
                fill_data(bufs[k], len, j);
                ops[k] = (struct fy_op){.type = FY_OP_DATA, .offset = mixed_tag(j),
                                        .len = len, .data = len ? bufs[k] : NULL};
            }
        }
        if (fy_stream_send_all(tx, ops, k) != 0)
            fail_msg("send of ops %u..%u: %s", i, i + k - 1, fy_error_detail());
        memset(bufs, 0xee, 16 * (size_t)FY_DATA_MAX);
        i += k;
    }
    join_within(r.tid, 60);
    if (r.error[0])
        fail_msg("%s", r.error);
    assert_int_equal(r.received, n);
    release_pages(tx);
    free(pages);
    free(bufs);
}

/* Both ways on every stream, in bursts of 64 and of 1. */
static void exchange_mixed(struct pair *p, unsigned n)
{
    for (unsigned i = 0; i < p->src->nstreams; i++) {
        send_and_check_mixed(p->src->streams[i], p->dst->streams[i], n, 64);
        send_and_check_mixed(p->dst->streams[i], p->src->streams[i], n / 4, 1);
    }
}

static void print_stats(const char *what, const struct fy_session *s)
{
    struct fy_pkt_stats st;

    fy_pkt_session_stats(s, &st);
    printf("# %s: %llu frames, %llu retransmits (%llu fast), %llu timeouts, %llu dups\n",
           what, (unsigned long long)st.tx_frames, (unsigned long long)st.retransmits,
           (unsigned long long)st.fast_retransmits, (unsigned long long)st.timeouts,
           (unsigned long long)st.dup_frames);
}

static void test_pkt_data__among_pages_mtu_1500__whole_in_order_both_ways(void **state)
{
    exchange_mixed(*state, 600);
}

static void test_pkt_data__among_pages_mtu_9000_two_streams__whole_in_order_both_ways(void **state)
{
    exchange_mixed(*state, 600);
}

static void test_pkt_data__among_pages_mtu_576__nine_fragments_whole_in_order(void **state)
{
    struct pair *p = pair_open(1, "mtu=576", NULL);

    (void)state;
    exchange_mixed(p, 300);
    pair_close(p);
}

static void test_pkt_data__lossy_link_mtu_1500__whole_in_order_with_retransmits(void **state)
{
    struct pair *p = pair_open(2, "lossy=drop:0.05,reorder:0.05,dup:0.05,seed:11", NULL);
    struct fy_pkt_stats st;

    (void)state;
    exchange_mixed(p, 600);
    print_stats("DATA lossy 1500", p->src);
    fy_pkt_session_stats(p->src, &st);
    assert_true(st.retransmits > 0);
    pair_close(p);
}

static void test_pkt_data__lossy_link_mtu_9000__whole_in_order_with_retransmits(void **state)
{
    struct pair *p = pair_open(1, "mtu=9000;lossy=drop:0.05,reorder:0.05,dup:0.05,seed:12",
                               NULL);
    struct fy_pkt_stats st;

    (void)state;
    exchange_mixed(p, 600);
    print_stats("DATA lossy 9000", p->src);
    fy_pkt_session_stats(p->src, &st);
    assert_true(st.retransmits > 0);
    pair_close(p);
}

/* A port that sends pages in place: DATA is still copied (the caller
 * reuses its buffer at once), pages are not, over a lossy link. */
static void test_pkt_data__zero_copy_port_lossy__data_copied_whole_in_order(void **state)
{
    struct pair *p = pair_open(1, "extbuf=1;lossy=drop:0.02,reorder:0.02,dup:0.02,seed:13",
                               NULL);

    (void)state;
    assert_non_null(p->src->streams[0]->tx_mark);
    send_and_check_mixed(p->src->streams[0], p->dst->streams[0], 600, 64);
    pair_close(p);
}

/* New frames (not counting retransmissions) the source sent for 'op',
 * once the target received it whole. */
static uint64_t frames_for(struct pair *p, const struct fy_op *op)
{
    struct fy_pkt_stats a, b;
    struct fy_op got;

    fy_pkt_session_stats(p->src, &a);
    assert_int_equal(fy_stream_send_all(p->src->streams[0], op, 1), 0);
    assert_int_equal(recv_one(p->dst->streams[0], &got), 1);
    assert_same_op(&got, op);
    fy_pkt_session_stats(p->src, &b);
    return (b.tx_frames - b.retransmits) - (a.tx_frames - a.retransmits);
}

static void test_pkt_data__frames_per_size__ops_frame_when_it_fits_else_fragments(void **state)
{
    uint8_t bytes[FY_DATA_MAX];
    struct fy_op op = {.type = FY_OP_DATA, .offset = 5, .data = bytes};
    struct pair *p = *state, *jumbo;
    struct { unsigned len; uint64_t at1500, at9000; } want[] = {
        {0, 1, 1}, {1, 1, 1}, {1400, 1, 1}, {1408, 1, 1},
        {1409, 2, 1}, {2800, 2, 1}, {2801, 3, 1}, {4096, 3, 1},
    };

    fill_data(bytes, sizeof(bytes), 1);
    jumbo = pair_open(1, "mtu=9000", NULL);
    for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        op.len = want[i].len;
        assert_int_equal(frames_for(p, &op), want[i].at1500);
        assert_int_equal(frames_for(jumbo, &op), want[i].at9000);
    }
    pair_close(jumbo);
}

static void test_pkt_tx_burst__data_too_long_flagged_or_without_bytes__fails_inval_stream_intact(void **state)
{
    struct pair *p = *state;
    uint8_t bytes[FY_DATA_MAX + 1] = {0};
    struct fy_stream *tx = p->src->streams[0];
    struct fy_op bad[3] = {
        {.type = FY_OP_DATA, .offset = 1, .data = bytes, .len = FY_DATA_MAX + 1},
        {.type = FY_OP_DATA, .offset = 1, .flags = FY_OP_F_FINAL, .data = bytes, .len = 2000},
        {.type = FY_OP_DATA, .offset = 1, .data = NULL, .len = 2000},
    };

    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(tx->tx_burst(tx, &bad[i], 1), -FY_E_INVAL);
        assert_non_null(strstr(fy_error_detail(), "DATA"));
    }
    exchange_mixed(p, 60);
}

/* DATA frames that break the descriptor's rules: dropped and counted as
 * malformed; a well-formed one with any tag is no range error; the
 * session goes on. */
static void test_pkt_rx__hostile_data_frames__dropped_counted_session_intact(void **state)
{
    struct pair *p = *state;
    uint8_t f[2048], payload[1024];
    struct fy_pkt_stats before, after;
    struct fy_op got;
    struct {
        struct pkt_desc d;
        unsigned plen;
    } bad[] = {
        /* a total beyond what DATA carries */
        {{.offset = 1, .frag_off = 0, .frag_len = 100, .total = FY_DATA_MAX + 1}, 100},
        {{.offset = 1, .frag_off = 0, .frag_len = 100, .total = 0xffffffffu}, 100},
        /* a fragment beyond its total, one starting past it */
        {{.offset = 1, .frag_off = 50, .frag_len = 100, .total = 100}, 100},
        {{.offset = 1, .frag_off = 4000, .frag_len = 200, .total = 4096}, 200},
        {{.offset = 1, .frag_off = 65535, .frag_len = 100, .total = 4096}, 100},
        /* frag_len not the payload's */
        {{.offset = 1, .frag_off = 0, .frag_len = 99, .total = 100}, 100},
        /* no bytes at all */
        {{.offset = 1, .frag_off = 0, .frag_len = 0, .total = 100}, 0},
    };
    unsigned nbad = sizeof(bad) / sizeof(bad[0]);

    fy_pkt_session_stats(p->dst, &before);
    memset(payload, 0x5a, sizeof(payload));
    for (unsigned i = 0; i < nbad; i++) {
        pkt_put_desc(payload, &bad[i].d);
        inject(p, f, hostile_frame(f, p->dst, PT_DATA, 0, payload,
                                   PKT_DESC_LEN + bad[i].plen));
    }
    /* The descriptor is under the header sum: changing it after fails
     * that check. */
    struct pkt_desc ok = {.offset = 3, .frag_off = 0, .frag_len = 100, .total = 100};
    pkt_put_desc(payload, &ok);
    unsigned len = hostile_frame(f, p->dst, PT_DATA, 0, payload, PKT_DESC_LEN + 100);
    f[PKT_HDRS_LEN + 28] ^= 1;
    inject(p, f, len);
    /* Well formed, a tag of any value (no alignment, no region), far out
     * of the window: taken by nobody, counted nowhere. */
    ok.offset = UINT64_MAX - 3;
    pkt_put_desc(payload, &ok);
    inject(p, f, hostile_frame(f, p->dst, PT_DATA, 1u << 30, payload, PKT_DESC_LEN + 100));

    assert_int_equal(p->dst->streams[0]->rx_burst(p->dst->streams[0], &got, 1, 100), 0);
    fy_pkt_session_stats(p->dst, &after);
    assert_int_equal(after.drop_malformed - before.drop_malformed, nbad + 1);
    assert_int_equal(after.drop_range - before.drop_range, 0);
    assert_int_equal(after.drop_unknown - before.drop_unknown, 0);
    exchange_mixed(p, 60);
}

/* Injects DATA fragment frames as the stream's frames 0, 1, ... */
static void inject_data(struct pair *p, uint32_t seq, uint64_t tag, fy_hash128 hash,
                        unsigned off, unsigned len, unsigned total)
{
    uint8_t f[2048], payload[1600];
    struct pkt_desc d = {.offset = tag, .hash = hash, .frag_off = (uint16_t)off,
                         .frag_len = (uint16_t)len, .total = total};

    assert_true(len <= sizeof(payload) - PKT_DESC_LEN);
    pkt_put_desc(payload, &d);
    fill_data(payload + PKT_DESC_LEN, len, 0);
    inject(p, f, hostile_frame(f, p->dst, PT_DATA, seq, payload, PKT_DESC_LEN + len));
}

static void test_pkt_rx_burst__data_hash_not_of_its_bytes__fails_checksum(void **state)
{
    struct pair *p = *state;
    uint8_t bytes[1000];
    struct fy_op got;

    fill_data(bytes, sizeof(bytes), 0);
    /* Right: one whole DATA in one frame, then one in two fragments. */
    inject_data(p, 0, 9, fy_hash_bytes(bytes, 1000), 0, 1000, 1000);
    assert_int_equal(recv_one(p->dst->streams[0], &got), 1);
    assert_int_equal(got.type, FY_OP_DATA);
    assert_int_equal(got.offset, 9);
    assert_int_equal(got.len, 1000);
    assert_memory_equal(got.data, bytes, 1000);
    /* Wrong: a hash of other bytes. */
    fy_hash128 h = fy_hash_bytes(bytes, 999);
    inject_data(p, 1, 9, h, 0, 500, 1000);
    inject_data(p, 2, 9, h, 500, 500, 1000);
    assert_int_equal(recv_one(p->dst->streams[0], &got), -FY_E_CHECKSUM);
    assert_non_null(strstr(fy_error_detail(), "DATA"));
    assert_int_equal(recv_one(p->dst->streams[0], &got), -FY_E_CHECKSUM);
}

static void test_pkt_rx_burst__data_fragment_without_its_start__fails_proto(void **state)
{
    struct pair *p = *state;
    struct fy_op got;

    inject_data(p, 0, 9, (fy_hash128){1, 2}, 500, 500, 1000);
    assert_int_equal(recv_one(p->dst->streams[0], &got), -FY_E_PROTO);
    assert_non_null(strstr(fy_error_detail(), "DATA fragments out of order"));
}

static void test_pkt_rx_burst__operation_between_data_fragments__fails_proto(void **state)
{
    struct pair *p = *state;
    uint8_t f[256], payload[64];
    struct fy_op done = {.type = FY_OP_DONE}, got;
    int dl = fy_proto_encode(&done, payload, sizeof(payload));

    assert_true(dl > 0);
    inject_data(p, 0, 9, (fy_hash128){1, 2}, 0, 500, 1000);
    inject(p, f, hostile_frame(f, p->dst, PT_OPS, 1, payload, (unsigned)dl));
    inject_data(p, 2, 9, (fy_hash128){1, 2}, 500, 500, 1000);
    assert_int_equal(recv_one(p->dst->streams[0], &got), -FY_E_PROTO);
}

static void test_pkt_rx_burst__page_fragment_continued_by_data__fails_proto(void **state)
{
    struct pair *p = *state;
    uint8_t f[2048], payload[1024];
    struct pkt_desc d = {.offset = 0, .hash = {1, 2}, .frag_off = 0, .frag_len = 500};
    struct fy_op got;

    pkt_put_desc(payload, &d);
    inject(p, f, hostile_frame(f, p->dst, PT_PAGE, 0, payload, PKT_DESC_LEN + 500));
    inject_data(p, 1, 0, (fy_hash128){1, 2}, 500, 500, 4096);
    assert_int_equal(recv_one(p->dst->streams[0], &got), -FY_E_PROTO);
}

/* ---- loss, tiny windows, sequence numbers ------------------------------------ */

static void test_pkt_connect__link_drops_a_tenth__handshake_retries_and_ops_arrive(void **state)
{
    struct pair *p = pair_open(3, "lossy=drop:0.1,seed:5", NULL);
    struct fy_pkt_stats st;

    (void)state;
    exchange_all_types(p);
    send_and_check_pages(p, 300, 16);
    fy_pkt_session_stats(p->src, &st);
    printf("# drop 10%%: %llu frames, %llu retransmits (%llu fast), %llu timeouts\n",
           (unsigned long long)st.tx_frames, (unsigned long long)st.retransmits,
           (unsigned long long)st.fast_retransmits, (unsigned long long)st.timeouts);
    assert_true(st.retransmits > 0);
    pair_close(p);
}

static void test_pkt_tx_burst__window_of_16__pages_flow_in_order(void **state)
{
    send_and_check_pages(*state, 1000, 5);
}

static void test_pkt_unwrap__around_2_pow_32__nearest_64_bit_value(void **state)
{
    (void)state;
    assert_int_equal(pkt_unwrap(5, 0), 5);
    assert_int_equal(pkt_unwrap(0xfffffff0u, 0x100000005ull), 0xfffffff0ull);
    assert_int_equal(pkt_unwrap(3, 0xfffffff0ull), 0x100000003ull);
    assert_int_equal(pkt_unwrap(7, 0x300000000ull), 0x300000007ull);
}

static void test_fy_pkt_lossy_parse__good_and_bad_specs__parsed_or_config(void **state)
{
    struct fy_pkt_lossy_cfg c;

    (void)state;
    assert_int_equal(fy_pkt_lossy_parse("drop:0.1,reorder:0.2,dup:0.05,seed:9", &c), 0);
    assert_true(c.drop == 0.1 && c.reorder == 0.2 && c.dup == 0.05 && c.seed == 9);
    assert_int_equal(fy_pkt_lossy_parse("drop:2", &c), -FY_E_CONFIG);
    assert_int_equal(fy_pkt_lossy_parse("loss:0.1", &c), -FY_E_CONFIG);
    assert_int_equal(fy_pkt_lossy_parse("drop=0.1", &c), -FY_E_CONFIG);
    assert_int_equal(fy_pkt_lossy_parse("drop:0.1x", &c), -FY_E_CONFIG);
}

static void test_pkt_listen__bad_settings__fail_config(void **state)
{
    struct pair p = {0};
    struct fy_transport_opts o = {0};
    struct fy_listener *l = NULL;
    char params[320];

    (void)state;
    pair_params(&p, NULL);
    snprintf(params, sizeof(params), "%s;window=3", p.dst_params);
    o.params = params;
    assert_int_equal(memt.listen(DST_IP ":4791", &o, &l), -FY_E_CONFIG);
    snprintf(params, sizeof(params), "link=%s;end=1", p.link);
    assert_int_equal(memt.listen(DST_IP ":4791", &o, &l), -FY_E_CONFIG);
    assert_non_null(strstr(fy_error_detail(), "ip="));
    snprintf(params, sizeof(params), "%s;lossy=drop:7", p.dst_params);
    assert_int_equal(memt.listen(DST_IP ":4791", &o, &l), -FY_E_CONFIG);
    assert_null(l);
}

/* ---- migrations ---------------------------------------------------------- */

struct target_run {
    struct fy_session *s;
    struct fy_region *r;
    int rc;
    char detail[1024];
    struct fy_migration_stats st;
    pthread_t tid;
};

static void *target_main(void *arg)
{
    struct target_run *t = arg;
    struct fy_target_params tp = {.fresh = true, .idle_timeout_ms = 20000};

    t->rc = fy_migrate_target(t->r, t->s, &tp, &t->st);
    snprintf(t->detail, sizeof(t->detail), "%s", t->rc < 0 ? fy_error_detail() : "");
    return NULL;
}

struct relay {
    struct fy_bench_writer *w;
};

static int relay_sync(void *ctx, uint64_t *bm, uint64_t n)
{
    return fy_bench_writer_dirty_sync(((struct relay *)ctx)->w, bm, n);
}

static int relay_pause(void *ctx)
{
    return fy_bench_writer_pause(((struct relay *)ctx)->w);
}

/* Migrates 'size' bytes with a writer dirtying pages, over a link with
 * 'extra' settings; checks both digests and the bytes. */
static void migrate(const char *extra, uint64_t size, unsigned streams,
                    struct fy_pkt_stats *stats_out)
{
    struct fy_region *src = NULL, *dst = NULL;
    struct fy_bench_fill fill = {.dup_ratio = 0.2, .zero_ratio = 0.2, .seed = 7};
    struct pair p = {0};
    struct acceptor a;
    struct target_run t = {0};
    struct relay rl = {0};
    struct fy_migration_stats st;
    int rc;

    assert_int_equal(fy_region_create_memfd("pkt-src", size, &src), 0);
    assert_int_equal(fy_region_create_memfd("pkt-dst", size, &dst), 0);
    assert_int_equal(fy_bench_fill_region(src, &fill), 0);
    assert_int_equal(fy_region_prefault(dst), 0);
    pair_params(&p, extra);
    pair_listen(&p, 20000);
    struct fy_accept_params ap = {.region_size = size, .placement = fy_region_base(dst),
                                  .receiver_checks_pages = true};
    acceptor_start(&a, p.l, &ap);
    struct fy_transport_opts o = {.streams = streams, .timeout_ms = 20000,
                                  .params = p.src_params};
    struct fy_session_info info = {.region_size = size, .caps = FY_CAPS_V1};
    if (memt.connect(DST_IP ":4791", &o, &info, &p.src) != 0)
        fail_msg("connect: %s", fy_error_detail());
    acceptor_join(&a);
    if (a.rc != 0)
        fail_msg("accept: %s", a.detail);
    p.dst = a.s;

    t.s = p.dst;
    t.r = dst;
    assert_int_equal(pthread_create(&t.tid, NULL, target_main, &t), 0);
    assert_int_equal(fy_bench_writer_start(src, 3000, 11, &rl.w), 0);
    struct fy_source_params sp = {.dirty_sync = relay_sync, .pause = relay_pause,
                                  .ctx = &rl, .downtime_ms = 50, .max_rounds = 6};
    rc = fy_migrate_source(src, p.src, &sp, &st);
    if (rc != 0) {
        char d[1024];
        snprintf(d, sizeof(d), "%s", fy_error_detail());
        fy_session_shutdown(p.src);
        pthread_join(t.tid, NULL);
        fail_msg("migration failed: %s (target: %d %s; frames in use %ld/%ld, "
                 "sent %llu/%llu)", d, t.rc, t.detail,
                 fy_pkt_mem_in_use(p.link, 0), fy_pkt_mem_in_use(p.link, 1),
                 (unsigned long long)fy_pkt_mem_sent(p.link, 0),
                 (unsigned long long)fy_pkt_mem_sent(p.link, 1));
    }
    pthread_join(t.tid, NULL);
    if (t.rc != 0)
        fail_msg("target failed: %s", t.detail);
    assert_true(st.verified);
    assert_true(fy_hash_eq(st.digest, t.st.digest));
    assert_true(st.rounds >= 2);
    assert_memory_equal(fy_region_base(src), fy_region_base(dst), size);
    if (stats_out)
        fy_pkt_session_stats(p.src, stats_out);
    printf("# %s: %llu MiB, %u rounds, %.3f s, wire %.1f MiB, writer %llu\n",
           extra ? extra : "", (unsigned long long)(size >> 20), st.rounds, st.seconds,
           (double)st.wire_bytes / (1 << 20),
           (unsigned long long)fy_bench_writer_writes(rl.w));
    fy_bench_writer_stop(rl.w);
    fy_session_close(p.src);
    fy_session_close(p.dst);
    memt.listener_close(p.l);
    fy_region_close(src);
    fy_region_close(dst);
}

static void test_pkt_migrate__64m_mtu_1500_with_writer__digests_equal(void **state)
{
    (void)state;
    migrate("mtu=1500", 64ull << 20, 2, NULL);
}

static void test_pkt_migrate__64m_mtu_9000_with_writer__digests_equal(void **state)
{
    (void)state;
    migrate("mtu=9000", 64ull << 20, 2, NULL);
}

static void test_pkt_migrate__64m_lossy_link__completes_with_retransmits_and_digests_equal(void **state)
{
    struct fy_pkt_stats st;

    (void)state;
    migrate("lossy=drop:0.01,reorder:0.01,dup:0.01,seed:3", 64ull << 20, 2, &st);
    printf("# lossy: %llu frames, %llu retransmits (%llu fast), %llu timeouts, %llu dups\n",
           (unsigned long long)st.tx_frames, (unsigned long long)st.retransmits,
           (unsigned long long)st.fast_retransmits, (unsigned long long)st.timeouts,
           (unsigned long long)st.dup_frames);
    assert_true(st.retransmits > 0);
}

int main(int argc, char **argv)
{
    /* test_pkt PATTERN runs the tests whose names match PATTERN. */
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fy_params_get__present_absent_and_spaced__found_as_written),
        cmocka_unit_test(test_fy_params_get_uint__out_of_range__fails_config),
        cmocka_unit_test_setup_teardown(test_pkt_connect__three_streams__both_sides_hold_three_streams_and_the_id, pair_setup_3, pair_teardown),
        cmocka_unit_test(test_pkt_accept__region_size_differs__accept_fails_and_connect_gets_peer_error),
        cmocka_unit_test(test_pkt_accept__other_session_id_expected__refused_with_auth),
        cmocka_unit_test(test_pkt_connect__nobody_listening__fails_timeout),
        cmocka_unit_test(test_pkt_accept__nobody_connects__fails_timeout),
        cmocka_unit_test(test_pkt_listen__address_not_the_ports__fails_config),
        cmocka_unit_test_setup_teardown(test_pkt_tx_burst__every_source_op_type_one_stream__received_identical, pair_setup_1, pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkt_tx_burst__every_source_op_type_three_streams__received_identical_on_same_stream, pair_setup_3, pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkt_tx_burst__every_source_op_type_jumbo__received_identical, pair_setup_jumbo, pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkt_tx_burst__target_answers__received_identical_by_source, pair_setup_1, pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkt_tx_burst__miss_of_4096_offsets__arrives_split_in_order, pair_setup_1, pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkt_rx_burst__2000_pages_one_per_call__in_order_intact, pair_setup_1, pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkt_rx_burst__2000_pages_seven_per_call__in_order_intact, pair_setup_1, pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkt_rx_burst__jumbo_2000_pages__each_page_one_frame, pair_setup_jumbo, pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkt_wire_bytes__pages_sent__count_headers_and_fragments, pair_setup_1, pair_teardown),
        cmocka_unit_test(test_pkt_rx_burst__placement__pages_copied_into_place_flagged_placed_unchecked),
        cmocka_unit_test_setup_teardown(test_pkt_rx_burst__page_hash_not_of_its_data__fails_checksum, pair_setup_1, pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkt_rx_burst__nothing_sent__returns_zero_after_timeout, pair_setup_1, pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkt_rx_burst__peer_closed__ops_then_fails_closed, pair_setup_1, pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkt_rx__malformed_and_hostile_frames__dropped_counted_session_intact, pair_setup_1, pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkt_rx__mutated_frames_fuzz__no_crash_session_intact, pair_setup_1, pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkt_shutdown__rx_blocked_in_other_thread__returns_cancelled, pair_setup_1, pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkt_shutdown__tx_blocked_on_full_window__returns_cancelled, pair_setup_small_window, pair_teardown),
        cmocka_unit_test(test_pkt_rx_burst__link_cut__fails_timeout_not_a_hang),
        cmocka_unit_test(test_pkt_tx_burst__link_cut_mid_send__fails_timeout),
        cmocka_unit_test(test_pkt_accept__two_sources_at_once_on_one_port__both_sessions_work),
        cmocka_unit_test(test_pkt_tx_wait__extbuf_port__marks_released_once_acknowledged),
        cmocka_unit_test(test_pkt_connect__link_drops_a_tenth__handshake_retries_and_ops_arrive),
        cmocka_unit_test_setup_teardown(test_pkt_tx_burst__window_of_16__pages_flow_in_order, pair_setup_small_window, pair_teardown),
        cmocka_unit_test(test_pkt_queues__one_at_the_source_three_at_the_target__every_stream_works),
        cmocka_unit_test(test_pkt_tx_burst__mtu_576_long_error_and_miss__cut_and_split_to_fit),
        cmocka_unit_test(test_pkt_unwrap__around_2_pow_32__nearest_64_bit_value),
        cmocka_unit_test_setup_teardown(test_pkt_tx_burst__invalid_op_after_valid_ones__prefix_sent_then_inval_stream_intact, pair_setup_1, pair_teardown),
        cmocka_unit_test(test_fy_pkt_lossy_parse__good_and_bad_specs__parsed_or_config),
        cmocka_unit_test(test_pkt_listen__bad_settings__fail_config),
        cmocka_unit_test_setup_teardown(test_pkt_data__among_pages_mtu_1500__whole_in_order_both_ways, pair_setup_1, pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkt_data__among_pages_mtu_9000_two_streams__whole_in_order_both_ways, pair_setup_jumbo, pair_teardown),
        cmocka_unit_test(test_pkt_data__among_pages_mtu_576__nine_fragments_whole_in_order),
        cmocka_unit_test(test_pkt_data__lossy_link_mtu_1500__whole_in_order_with_retransmits),
        cmocka_unit_test(test_pkt_data__lossy_link_mtu_9000__whole_in_order_with_retransmits),
        cmocka_unit_test(test_pkt_data__zero_copy_port_lossy__data_copied_whole_in_order),
        cmocka_unit_test_setup_teardown(test_pkt_data__frames_per_size__ops_frame_when_it_fits_else_fragments, pair_setup_1, pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkt_tx_burst__data_too_long_flagged_or_without_bytes__fails_inval_stream_intact, pair_setup_1, pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkt_rx__hostile_data_frames__dropped_counted_session_intact, pair_setup_1, pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkt_rx_burst__data_hash_not_of_its_bytes__fails_checksum, pair_setup_1, pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkt_rx_burst__data_fragment_without_its_start__fails_proto, pair_setup_1, pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkt_rx_burst__operation_between_data_fragments__fails_proto, pair_setup_1, pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkt_rx_burst__page_fragment_continued_by_data__fails_proto, pair_setup_1, pair_teardown),
        cmocka_unit_test(test_pkt_migrate__64m_mtu_1500_with_writer__digests_equal),
        cmocka_unit_test(test_pkt_migrate__64m_mtu_9000_with_writer__digests_equal),
        cmocka_unit_test(test_pkt_migrate__64m_lossy_link__completes_with_retransmits_and_digests_equal),
        cmocka_unit_test(test_pkt_migrate__64m_zero_copy_lossy__digests_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
