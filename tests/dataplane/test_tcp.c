/* Unit tests of dataplane/transport/tcp.c over 127.0.0.1: sessions of one
 * and several streams, every operation type, runs of pages as PAGES frames
 * (read straight into a placement when the receiver checks pages), wire
 * byte counts, refused handshakes, and broken or hostile peers built from
 * raw sockets. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dataplane/protocol.h"
#include "ferry/classifier.h"
#include "ferry/error.h"
#include "ferry/transport.h"

#define REGION_PAGES 1024u /* 4 MiB: room for runs of distinct pages */
#define REGION_SIZE ((uint64_t)REGION_PAGES * FY_PAGE_SIZE)
#define TIMEOUT_MS 5000

static const struct fy_transport_ops *tcp = &fy_transport_tcp;

/* ---- helpers ---------------------------------------------------------- */

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

static struct fy_listener *listen_local(int timeout_ms)
{
    struct fy_transport_opts o = {.timeout_ms = timeout_ms};
    struct fy_listener *l = NULL;

    assert_int_equal(tcp->listen("127.0.0.1:0", &o, &l), 0);
    assert_non_null(l);
    return l;
}

static int port_of(const struct fy_listener *l)
{
    const char *colon = strrchr(l->addr, ':');

    assert_non_null(colon);
    return atoi(colon + 1);
}

/* accept() in a thread, keeping its result and its error detail (which is
 * thread-local). */
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

static void acceptor_start_with(struct acceptor *a, struct fy_listener *l,
                                const struct fy_accept_params *params)
{
    memset(a, 0, sizeof(*a));
    a->l = l;
    a->params = *params;
    assert_int_equal(pthread_create(&a->tid, NULL, acceptor_main, a), 0);
}

static void acceptor_start(struct acceptor *a, struct fy_listener *l,
                           uint64_t region_size)
{
    struct fy_accept_params params = {.region_size = region_size};

    acceptor_start_with(a, l, &params);
}

static void acceptor_join(struct acceptor *a)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    if (pthread_timedjoin_np(a->tid, NULL, &ts) != 0)
        fail_msg("accept() did not return within 20 s");
}

static int connect_streams(struct fy_listener *l, unsigned streams,
                           uint64_t region_size, struct fy_session **out)
{
    struct fy_transport_opts o = {.streams = streams, .timeout_ms = TIMEOUT_MS};
    struct fy_session_info info = session_info(region_size);

    return tcp->connect(l->addr, &o, &info, out);
}

/* A plain TCP connection to the listener, no Ferry code involved. */
static int raw_connect(const struct fy_listener *l)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port_of(l))};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void raw_write(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len) {
        ssize_t k = send(fd, p, len, MSG_NOSIGNAL);
        assert_true(k > 0);
        p += k;
        len -= (size_t)k;
    }
}

static void raw_read_exact(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len) {
        ssize_t k = read(fd, p, len);
        assert_true(k > 0);
        p += k;
        len -= (size_t)k;
    }
}

/* A source built by hand: a raw connection that completes a valid
 * handshake with a target accepting with 'params'; the accepted session is
 * returned in *dst. */
static int raw_source_with(struct fy_listener *l,
                           const struct fy_accept_params *params,
                           struct fy_session **dst)
{
    struct fy_session_info info = session_info(REGION_SIZE), peer;
    uint8_t hello[FY_FRAME_HDR_SIZE + FY_HELLO_PAYLOAD_SIZE];
    struct acceptor a;
    uint32_t idx;
    size_t flen;
    bool ack;
    int fd, n;

    acceptor_start_with(&a, l, params);
    fd = raw_connect(l);
    n = fy_proto_encode_hello(&info, 0, false, hello, sizeof(hello));
    assert_int_equal(n, sizeof(hello));
    raw_write(fd, hello, (size_t)n);
    acceptor_join(&a);
    assert_int_equal(a.rc, 0);
    /* Read the answer, so closing later sends a FIN, not a reset. */
    raw_read_exact(fd, hello, sizeof(hello));
    assert_int_equal(fy_proto_decode_hello(hello, sizeof(hello), &peer, &idx,
                                           &ack, &flen), 0);
    assert_true(ack);
    assert_int_equal(idx, 0);
    *dst = a.s;
    return fd;
}

static int raw_source(struct fy_listener *l, struct fy_session **dst)
{
    struct fy_accept_params params = {.region_size = REGION_SIZE};

    return raw_source_with(l, &params, dst);
}

/* Encodes op into buf (PAGE data appended) and returns the frame size. */
static size_t encode_frame(const struct fy_op *op, uint8_t *buf, size_t cap)
{
    int n = fy_proto_encode(op, buf, cap);

    assert_true(n > 0);
    if (op->type == FY_OP_PAGE) {
        assert_true((size_t)n + FY_PAGE_SIZE <= cap);
        memcpy(buf + n, op->data, FY_PAGE_SIZE);
        n += FY_PAGE_SIZE;
    }
    return (size_t)n;
}

/* Bytes one operation sent alone puts on the wire (a lone PAGE travels as a
 * PAGES frame of one page). */
static size_t wire_size(const struct fy_op *op)
{
    if (op->type == FY_OP_PAGE)
        return FY_FRAME_HDR_SIZE + FY_PAGES_DESC_SIZE + FY_PAGE_SIZE;
    return fy_proto_encoded_size(op);
}

/* Receives exactly one operation (its data valid until the next call). */
static int recv_one(struct fy_stream *s, struct fy_op *op)
{
    int rc = s->rx_burst(s, op, 1, TIMEOUT_MS);

    if (rc == 0)
        fail_msg("nothing received on stream %u within %d ms", s->index, TIMEOUT_MS);
    return rc;
}

static void assert_same_op(const struct fy_op *got, const struct fy_op *want)
{
    assert_int_equal(got->type, want->type);
    assert_int_equal(got->flags, want->flags);
    assert_int_equal(got->offset, want->offset);
    switch (want->type) {
    case FY_OP_PAGE:
        assert_int_equal(got->len, FY_PAGE_SIZE);
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
        assert_int_equal(got->len, sizeof(struct fy_round_counts));
        assert_memory_equal(got->data, want->data, sizeof(struct fy_round_counts));
        break;
    case FY_OP_ROUND_ACK:
        assert_int_equal(got->len, sizeof(struct fy_round_ack));
        assert_memory_equal(got->data, want->data, sizeof(struct fy_round_ack));
        break;
    case FY_OP_MISS:
        assert_int_equal(got->len, want->len);
        for (uint64_t i = 0; i < want->len / 8; i++)
            assert_int_equal(fy_proto_miss_offset(got, i),
                             ((const uint64_t *)want->data)[i]);
        break;
    case FY_OP_ERROR:
    case FY_OP_DATA:
        assert_int_equal(got->len, want->len);
        if (want->len)
            assert_memory_equal(got->data, want->data, want->len);
        break;
    default:
        break;
    }
}

/* ---- fixture: a connected session pair ----------------------------------- */

struct pair {
    struct fy_listener *l;
    struct fy_session *src; /* connect side */
    struct fy_session *dst; /* accept side */
};

/* Connects a pair whose target accepts with 'params'. */
static int pair_open(struct pair *p, unsigned streams,
                     const struct fy_accept_params *params)
{
    struct acceptor a;

    memset(p, 0, sizeof(*p));
    p->l = listen_local(TIMEOUT_MS);
    acceptor_start_with(&a, p->l, params);
    if (connect_streams(p->l, streams, REGION_SIZE, &p->src) < 0) {
        fprintf(stderr, "connect: %s\n", fy_error_detail());
        return -1;
    }
    acceptor_join(&a);
    if (a.rc < 0) {
        fprintf(stderr, "accept: %s\n", a.detail);
        return -1;
    }
    p->dst = a.s;
    return 0;
}

static void pair_close(struct pair *p)
{
    fy_session_close(p->src);
    fy_session_close(p->dst);
    tcp->listener_close(p->l);
}

static int pair_setup_n(void **state, unsigned streams)
{
    struct pair *p = calloc(1, sizeof(*p));
    struct fy_accept_params params = {.region_size = REGION_SIZE};

    if (!p)
        return -1;
    if (pair_open(p, streams, &params) < 0) {
        free(p);
        return -1;
    }
    *state = p;
    return 0;
}

static int pair1_setup(void **state)
{
    return pair_setup_n(state, 1);
}

static int pair3_setup(void **state)
{
    return pair_setup_n(state, 3);
}

static int pair_teardown(void **state)
{
    struct pair *p = *state;

    pair_close(p);
    free(p);
    return 0;
}

/* ---- sessions --------------------------------------------------------- */

static void test_tcp_listen__port_zero__addr_names_the_real_port(void **state)
{
    struct fy_listener *l;

    (void)state;
    l = listen_local(TIMEOUT_MS);
    assert_ptr_equal(l->ops, tcp);
    assert_true(strncmp(l->addr, "127.0.0.1:", 10) == 0);
    assert_true(port_of(l) > 0);
    tcp->listener_close(l);
    tcp->listener_close(NULL);
}

static void check_pair(const struct pair *p, unsigned streams)
{
    assert_int_equal(p->src->nstreams, streams);
    assert_int_equal(p->dst->nstreams, streams);
    assert_int_equal(p->dst->info.streams, streams);
    assert_int_equal(p->dst->info.region_size, REGION_SIZE);
    assert_int_equal(p->dst->info.page_size, FY_PAGE_SIZE);
    assert_memory_equal(p->dst->info.session_id, p->src->info.session_id, 16);
    for (unsigned i = 0; i < streams; i++) {
        assert_int_equal(p->src->streams[i]->index, i);
        assert_int_equal(p->dst->streams[i]->index, i);
        assert_ptr_equal(p->src->streams[i]->session, p->src);
        assert_ptr_equal(p->dst->streams[i]->session, p->dst);
        assert_non_null(p->src->streams[i]->tx_burst);
        assert_non_null(p->dst->streams[i]->rx_burst);
    }
    if (streams > 1)
        assert_true(p->dst->info.caps & FY_CAP_MULTI);
}

static void test_tcp_connect__one_stream__both_sides_hold_one_stream(void **state)
{
    check_pair(*state, 1);
}

static void test_tcp_connect__three_streams__both_sides_hold_three_streams(void **state)
{
    check_pair(*state, 3);
}

/* Sends PAGE, ZERO, REF, ROUND_END and ERROR on each stream, each stream
 * with its own content, and checks each arrives intact on its stream. */
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
        struct fy_op ops[5] = {
            {.type = FY_OP_PAGE, .offset = (uint64_t)(i + 1) * FY_PAGE_SIZE,
             .len = FY_PAGE_SIZE, .hash = fy_page_hash(pages[i]), .data = pages[i]},
            {.type = FY_OP_ZERO, .offset = (uint64_t)(10 + i) * FY_PAGE_SIZE,
             .len = 3 * FY_PAGE_SIZE},
            {.type = FY_OP_REF, .offset = (REGION_PAGES - 1 - i) * (uint64_t)FY_PAGE_SIZE,
             .hash = {0x1111 + i, 0x2222}},
            {.type = FY_OP_ROUND_END, .flags = FY_OP_F_FINAL, .offset = 7 + i,
             .data = &counts[i], .len = sizeof(counts[i])},
            {.type = FY_OP_ERROR, .offset = FY_E_VERIFY, .data = msg, .len = strlen(msg)},
        };
        assert_int_equal(fy_stream_send_all(p->src->streams[i], ops, 5), 0);
        for (unsigned k = 0; k < 5; k++) {
            struct fy_op got;
            assert_int_equal(recv_one(p->dst->streams[i], &got), 1);
            assert_same_op(&got, &ops[k]);
        }
    }
    free(pages);
    free(counts);
}

static void test_tcp_tx_burst__every_source_op_type_one_stream__received_identical(void **state)
{
    exchange_all_types(*state);
}

static void test_tcp_tx_burst__every_source_op_type_three_streams__received_identical_on_same_stream(void **state)
{
    exchange_all_types(*state);
}

static void test_tcp_tx_burst__target_answers__received_identical_by_source(void **state)
{
    struct pair *p = *state;
    struct fy_round_ack ack = {.applied = 60, .misses = 2};
    uint64_t missed[2] = {4 * FY_PAGE_SIZE, 9 * FY_PAGE_SIZE};
    struct fy_op ops[4] = {
        {.type = FY_OP_ROUND_ACK, .offset = 3, .data = &ack, .len = sizeof(ack)},
        {.type = FY_OP_MISS, .data = missed, .len = sizeof(missed)},
        {.type = FY_OP_VERIFY_RESULT, .offset = 1, .hash = {5, 6}},
        {.type = FY_OP_DONE},
    };

    assert_int_equal(fy_stream_send_all(p->dst->streams[0], ops, 4), 0);
    for (unsigned k = 0; k < 4; k++) {
        struct fy_op got;
        assert_int_equal(recv_one(p->src->streams[0], &got), 1);
        assert_same_op(&got, &ops[k]);
    }
}

/* DATA of 0, 1 and 4096 bytes (the last sent from the caller's buffer),
 * between pages, both ways: each arrives whole, in order, with its tag. */
static void test_tcp_tx_burst__data_between_pages__received_identical_both_ways(void **state)
{
    struct pair *p = *state;
    uint8_t page[FY_PAGE_SIZE], bytes[FY_DATA_MAX];
    struct fy_op ops[5] = {
        {.type = FY_OP_DATA, .offset = 1, .data = bytes, .len = FY_DATA_MAX},
        {.type = FY_OP_PAGE, .offset = FY_PAGE_SIZE, .len = FY_PAGE_SIZE,
         .data = page},
        {.type = FY_OP_DATA, .offset = 0xffffffffffffffffu},
        {.type = FY_OP_DATA, .offset = 2, .data = bytes + 77, .len = 1},
        {.type = FY_OP_REF, .offset = 0, .hash = {1, 2}},
    };

    fill_page(page, 5);
    fill_page(bytes, 9);
    ops[1].hash = fy_page_hash(page);
    assert_int_equal(fy_stream_send_all(p->src->streams[0], ops, 5), 0);
    assert_int_equal(fy_stream_send_all(p->dst->streams[0], &ops[3], 1), 0);
    for (unsigned k = 0; k < 5; k++) {
        struct fy_op got;
        assert_int_equal(recv_one(p->dst->streams[0], &got), 1);
        assert_same_op(&got, &ops[k]);
    }
    struct fy_op back;
    assert_int_equal(recv_one(p->src->streams[0], &back), 1);
    assert_same_op(&back, &ops[3]);
}

static void test_tcp_rx_burst__many_ops_in_flight__burst_returns_several_in_order(void **state)
{
    struct pair *p = *state;
    struct fy_op ops[32], got[32];
    unsigned received = 0;

    for (unsigned i = 0; i < 32; i++)
        ops[i] = (struct fy_op){.type = FY_OP_ZERO, .offset = (uint64_t)i * FY_PAGE_SIZE,
                                .len = FY_PAGE_SIZE};
    assert_int_equal(fy_stream_send_all(p->src->streams[0], ops, 32), 0);
    while (received < 32) {
        int n = p->dst->streams[0]->rx_burst(p->dst->streams[0], got, 32, TIMEOUT_MS);
        assert_true(n > 0);
        for (int k = 0; k < n; k++)
            assert_same_op(&got[k], &ops[received + (unsigned)k]);
        received += (unsigned)n;
    }
    assert_int_equal(received, 32);
}

static void test_tcp_wire_bytes__ops_sent__tx_and_rx_count_the_frames(void **state)
{
    struct pair *p = *state;
    struct fy_stream *tx = p->src->streams[0], *rx = p->dst->streams[0];
    uint8_t page[FY_PAGE_SIZE];
    struct fy_round_counts c = {1, 2, 0, 2};
    struct fy_op ops[3] = {
        {.type = FY_OP_PAGE, .offset = 0, .hash = {0}, .data = page, .len = FY_PAGE_SIZE},
        {.type = FY_OP_ZERO, .offset = FY_PAGE_SIZE, .len = 2 * FY_PAGE_SIZE},
        {.type = FY_OP_ROUND_END, .offset = 1, .data = &c, .len = sizeof(c)},
    };
    uint64_t tx0 = tx->tx_wire_bytes, rx0 = rx->rx_wire_bytes, want = 0;

    fill_page(page, 9);
    ops[0].hash = fy_page_hash(page);
    for (unsigned k = 0; k < 3; k++)
        want += wire_size(&ops[k]);
    assert_int_equal(fy_stream_send_all(tx, ops, 3), 0);
    assert_int_equal(tx->tx_wire_bytes - tx0, want);
    for (unsigned k = 0; k < 3; k++) {
        struct fy_op got;
        assert_int_equal(recv_one(rx, &got), 1);
    }
    assert_int_equal(rx->rx_wire_bytes - rx0, want);
    assert_true(want > FY_PAGE_SIZE);
}

static void test_tcp_rx_burst__page_hash_not_of_its_data__fails_checksum(void **state)
{
    struct pair *p = *state;
    uint8_t page[FY_PAGE_SIZE];
    struct fy_op op = {.type = FY_OP_PAGE, .offset = 0, .len = FY_PAGE_SIZE,
                       .data = page};
    struct fy_op got;

    fill_page(page, 4);
    op.hash = fy_page_hash(page);
    op.hash.lo ^= 1;
    assert_int_equal(fy_stream_send_all(p->src->streams[0], &op, 1), 0);
    assert_int_equal(p->dst->streams[0]->rx_burst(p->dst->streams[0], &got, 1, TIMEOUT_MS),
                     -FY_E_CHECKSUM);
}

static void test_tcp_rx_burst__receiver_checks_pages__bad_page_delivered_unchecked(void **state)
{
    struct fy_listener *l = listen_local(TIMEOUT_MS);
    uint8_t page[FY_PAGE_SIZE];
    struct fy_op ops[2] = {
        {.type = FY_OP_PAGE, .offset = 0, .len = FY_PAGE_SIZE, .data = page},
        {.type = FY_OP_PAGE, .offset = FY_PAGE_SIZE, .len = FY_PAGE_SIZE, .data = page},
    };
    struct fy_session *src = NULL;
    struct fy_op got;
    struct acceptor a;

    (void)state;
    acceptor_start_with(&a, l, &(struct fy_accept_params){
                                   .region_size = REGION_SIZE,
                                   .receiver_checks_pages = true});
    assert_int_equal(connect_streams(l, 1, REGION_SIZE, &src), 0);
    acceptor_join(&a);
    assert_int_equal(a.rc, 0);
    fill_page(page, 12);
    ops[0].hash = fy_page_hash(page);
    ops[1].hash = ops[0].hash;
    ops[1].hash.hi ^= 1; /* wrong: left for the receiver to find */
    assert_int_equal(fy_stream_send_all(src->streams[0], ops, 2), 0);
    for (unsigned k = 0; k < 2; k++) {
        assert_int_equal(recv_one(a.s->streams[0], &got), 1);
        assert_int_equal(got.type, FY_OP_PAGE);
        assert_true(got.flags & FY_OP_F_UNCHECKED);
        assert_true(fy_hash_eq(got.hash, ops[k].hash));
        assert_memory_equal(got.data, page, FY_PAGE_SIZE);
    }
    fy_session_close(src);
    fy_session_close(a.s);
    tcp->listener_close(l);
}

static void test_tcp_rx_burst__nothing_sent__returns_zero_after_timeout(void **state)
{
    struct pair *p = *state;
    struct fy_op got;
    struct timespec t0, t1;
    double ms;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(p->dst->streams[0]->rx_burst(p->dst->streams[0], &got, 1, 100), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    assert_true(ms >= 90);
    assert_true(ms < 3000);
}

/* ---- refused handshakes ---------------------------------------------------- */

static void test_tcp_accept__region_size_differs__accept_fails_and_connect_gets_peer_error(void **state)
{
    struct fy_listener *l = listen_local(TIMEOUT_MS);
    struct fy_session *s = NULL;
    struct acceptor a;
    int rc;

    (void)state;
    acceptor_start(&a, l, REGION_SIZE * 2);
    rc = connect_streams(l, 1, REGION_SIZE, &s);
    acceptor_join(&a);
    /* The target said why; the source reports the target's reason. */
    assert_int_equal(rc, -FY_E_PEER);
    assert_null(s);
    assert_non_null(strstr(fy_error_detail(), "region"));
    assert_int_equal(a.rc, -FY_E_PROTO);
    assert_null(a.s);
    assert_non_null(strstr(a.detail, "region"));
    tcp->listener_close(l);
}

static void test_tcp_accept__other_session_id_expected__refused_with_auth(void **state)
{
    struct fy_listener *l = listen_local(TIMEOUT_MS);
    static const uint8_t want_id[16] = {1, 2, 3};
    struct fy_session *s = NULL;
    struct acceptor a;
    int rc;

    (void)state;
    acceptor_start_with(&a, l, &(struct fy_accept_params){.session_id = want_id});
    rc = connect_streams(l, 1, REGION_SIZE, &s);
    acceptor_join(&a);
    assert_null(a.s);
    assert_null(s);
    assert_int_equal(a.rc, -FY_E_AUTH);
    assert_int_equal(rc, -FY_E_PEER);
    tcp->listener_close(l);
}

static void test_tcp_connect__nobody_listening__fails_closed(void **state)
{
    struct fy_listener *l = listen_local(TIMEOUT_MS);
    char addr[64];
    struct fy_transport_opts o = {.streams = 1, .timeout_ms = TIMEOUT_MS};
    struct fy_session_info info = session_info(REGION_SIZE);
    struct fy_session *s = NULL;

    (void)state;
    snprintf(addr, sizeof(addr), "%s", l->addr);
    tcp->listener_close(l);
    assert_int_equal(tcp->connect(addr, &o, &info, &s), -FY_E_CLOSED);
    assert_null(s);
}

static void test_tcp_connect__bad_address__fails_inval(void **state)
{
    struct fy_transport_opts o = {.streams = 1};
    struct fy_session_info info = session_info(REGION_SIZE);
    struct fy_session *s = NULL;

    (void)state;
    assert_int_equal(tcp->connect("no-port-here", &o, &info, &s), -FY_E_INVAL);
    assert_int_equal(tcp->connect("", &o, &info, &s), -FY_E_INVAL);
    assert_null(s);
}

static void test_tcp_accept__nobody_connects__fails_timeout(void **state)
{
    struct fy_listener *l = listen_local(200);
    struct fy_session *s = NULL;

    (void)state;
    assert_int_equal(tcp->accept(l, NULL, &s), -FY_E_TIMEOUT);
    assert_null(s);
    tcp->listener_close(l);
}

/* ---- hostile or broken sources (raw sockets) ---------------------------------- */

static void test_tcp_accept__garbage_instead_of_hello__fails_proto_with_clear_error(void **state)
{
    struct fy_listener *l = listen_local(TIMEOUT_MS);
    const char junk[] = "GET / HTTP/1.1\r\nHost: ferry\r\n\r\n";
    struct acceptor a;
    uint8_t reply[1024];
    int fd;

    (void)state;
    acceptor_start(&a, l, REGION_SIZE);
    fd = raw_connect(l);
    raw_write(fd, junk, sizeof(junk) - 1);
    acceptor_join(&a);
    assert_int_equal(a.rc, -FY_E_PROTO);
    assert_null(a.s);
    assert_non_null(strstr(a.detail, "not a Ferry frame"));
    /* The raw peer was told, then closed: read until EOF. */
    while (read(fd, reply, sizeof(reply)) > 0)
        ;
    close(fd);
    tcp->listener_close(l);
}

static void test_tcp_accept__garbage_with_ferry_magic__fails_and_listener_keeps_working(void **state)
{
    struct fy_listener *l = listen_local(TIMEOUT_MS);
    uint8_t junk[FY_FRAME_HDR_SIZE + FY_HELLO_PAYLOAD_SIZE];
    struct fy_session *s = NULL;
    struct acceptor a;
    int fd, rc;

    (void)state;
    memset(junk, 0x41, sizeof(junk));
    junk[0] = FY_PROTO_MAGIC;
    junk[1] = FY_PROTO_VERSION;
    acceptor_start(&a, l, REGION_SIZE);
    fd = raw_connect(l);
    raw_write(fd, junk, sizeof(junk));
    acceptor_join(&a);
    assert_int_equal(a.rc, -FY_E_CHECKSUM);
    assert_null(a.s);
    assert_true(strlen(a.detail) > 0);
    close(fd);

    /* A real source is still accepted afterwards. */
    acceptor_start(&a, l, REGION_SIZE);
    rc = connect_streams(l, 2, REGION_SIZE, &s);
    acceptor_join(&a);
    assert_int_equal(rc, 0);
    assert_int_equal(a.rc, 0);
    fy_session_close(s);
    fy_session_close(a.s);
    tcp->listener_close(l);
}

static void test_tcp_accept__error_frame_longer_than_hello__fails_peer_without_crash(void **state)
{
    struct fy_listener *l = listen_local(TIMEOUT_MS);
    char msg[300];
    uint8_t frame[FY_FRAME_HDR_SIZE + sizeof(msg)];
    struct fy_op op = {.type = FY_OP_ERROR, .offset = FY_E_CONFIG, .data = msg,
                       .len = sizeof(msg)};
    struct acceptor a;
    int fd, n;

    (void)state;
    memset(msg, 'x', sizeof(msg));
    n = fy_proto_encode(&op, frame, sizeof(frame));
    assert_int_equal(n, sizeof(frame));
    acceptor_start(&a, l, REGION_SIZE);
    fd = raw_connect(l);
    raw_write(fd, frame, (size_t)n);
    acceptor_join(&a);
    assert_int_equal(a.rc, -FY_E_PEER);
    assert_null(a.s);
    assert_non_null(strstr(a.detail, "xxxx"));
    close(fd);
    tcp->listener_close(l);
}

static void test_tcp_accept__hello_ack_sent_to_listener__fails_proto(void **state)
{
    struct fy_listener *l = listen_local(TIMEOUT_MS);
    struct fy_session_info info = session_info(REGION_SIZE);
    uint8_t hello[FY_FRAME_HDR_SIZE + FY_HELLO_PAYLOAD_SIZE];
    struct acceptor a;
    int fd;

    (void)state;
    assert_int_equal(fy_proto_encode_hello(&info, 0, true, hello, sizeof(hello)),
                     sizeof(hello));
    acceptor_start(&a, l, REGION_SIZE);
    fd = raw_connect(l);
    raw_write(fd, hello, sizeof(hello));
    acceptor_join(&a);
    assert_int_equal(a.rc, -FY_E_PROTO);
    assert_null(a.s);
    close(fd);
    tcp->listener_close(l);
}

static void test_tcp_accept__source_closes_mid_hello__fails_truncated(void **state)
{
    struct fy_listener *l = listen_local(TIMEOUT_MS);
    struct fy_session_info info = session_info(REGION_SIZE);
    uint8_t hello[FY_FRAME_HDR_SIZE + FY_HELLO_PAYLOAD_SIZE];
    struct acceptor a;
    int fd;

    (void)state;
    assert_int_equal(fy_proto_encode_hello(&info, 0, false, hello, sizeof(hello)),
                     sizeof(hello));
    acceptor_start(&a, l, REGION_SIZE);
    fd = raw_connect(l);
    raw_write(fd, hello, 30);
    close(fd);
    acceptor_join(&a);
    assert_int_equal(a.rc, -FY_E_TRUNCATED);
    assert_null(a.s);
    tcp->listener_close(l);
}

static void test_tcp_accept__source_stalls_mid_hello__fails_timeout(void **state)
{
    struct fy_listener *l = listen_local(300);
    struct fy_session_info info = session_info(REGION_SIZE);
    uint8_t hello[FY_FRAME_HDR_SIZE + FY_HELLO_PAYLOAD_SIZE];
    struct acceptor a;
    int fd;

    (void)state;
    assert_int_equal(fy_proto_encode_hello(&info, 0, false, hello, sizeof(hello)),
                     sizeof(hello));
    acceptor_start(&a, l, REGION_SIZE);
    fd = raw_connect(l);
    raw_write(fd, hello, 30);
    acceptor_join(&a);
    assert_int_equal(a.rc, -FY_E_TIMEOUT);
    assert_null(a.s);
    close(fd);
    tcp->listener_close(l);
}

static void test_tcp_rx_burst__corrupted_page_data__fails_checksum_with_detail(void **state)
{
    struct fy_listener *l = listen_local(TIMEOUT_MS);
    uint8_t page[FY_PAGE_SIZE], frame[FY_FRAME_HDR_SIZE + 16 + FY_PAGE_SIZE];
    struct fy_op op = {.type = FY_OP_PAGE, .offset = 2 * FY_PAGE_SIZE,
                       .len = FY_PAGE_SIZE, .data = page};
    struct fy_session *dst;
    struct fy_op got;
    size_t n;
    int fd;

    (void)state;
    fd = raw_source(l, &dst);
    fill_page(page, 5);
    op.hash = fy_page_hash(page);
    n = encode_frame(&op, frame, sizeof(frame));
    frame[n - 100] ^= 0x10; /* one bit of the page data */
    raw_write(fd, frame, n);
    assert_int_equal(dst->streams[0]->rx_burst(dst->streams[0], &got, 4, TIMEOUT_MS),
                     -FY_E_CHECKSUM);
    /* The detail names the stream and the reason. */
    assert_non_null(strstr(fy_error_detail(), "stream 0"));
    assert_non_null(strstr(fy_error_detail(), "PAGE frame"));
    close(fd);
    fy_session_close(dst);
    tcp->listener_close(l);
}

static void test_tcp_rx_burst__corrupted_frame_header__fails_checksum(void **state)
{
    struct fy_listener *l = listen_local(TIMEOUT_MS);
    uint8_t frame[64];
    struct fy_op op = {.type = FY_OP_ZERO, .offset = 0, .len = FY_PAGE_SIZE};
    struct fy_session *dst;
    struct fy_op got;
    size_t n;
    int fd;

    (void)state;
    fd = raw_source(l, &dst);
    n = encode_frame(&op, frame, sizeof(frame));
    frame[9] ^= 0x01; /* the offset, covered by the header sum */
    raw_write(fd, frame, n);
    assert_int_equal(dst->streams[0]->rx_burst(dst->streams[0], &got, 1, TIMEOUT_MS),
                     -FY_E_CHECKSUM);
    close(fd);
    fy_session_close(dst);
    tcp->listener_close(l);
}

static void test_tcp_rx_burst__half_a_frame_then_close__fails_truncated(void **state)
{
    struct fy_listener *l = listen_local(TIMEOUT_MS);
    uint8_t page[FY_PAGE_SIZE], frame[FY_FRAME_HDR_SIZE + 16 + FY_PAGE_SIZE];
    struct fy_op op = {.type = FY_OP_PAGE, .offset = 0, .len = FY_PAGE_SIZE,
                       .data = page};
    struct fy_session *dst;
    struct fy_op got;
    size_t n;
    int fd;

    (void)state;
    fd = raw_source(l, &dst);
    fill_page(page, 6);
    op.hash = fy_page_hash(page);
    n = encode_frame(&op, frame, sizeof(frame));
    raw_write(fd, frame, n / 2);
    close(fd);
    assert_int_equal(dst->streams[0]->rx_burst(dst->streams[0], &got, 1, TIMEOUT_MS),
                     -FY_E_TRUNCATED);
    fy_session_close(dst);
    tcp->listener_close(l);
}

static void test_tcp_rx_burst__close_between_frames__op_then_fails_closed(void **state)
{
    struct fy_listener *l = listen_local(TIMEOUT_MS);
    uint8_t frame[64];
    struct fy_op op = {.type = FY_OP_DONE};
    struct fy_session *dst;
    struct fy_op got;
    size_t n;
    int fd;

    (void)state;
    fd = raw_source(l, &dst);
    n = encode_frame(&op, frame, sizeof(frame));
    raw_write(fd, frame, n);
    close(fd);
    assert_int_equal(recv_one(dst->streams[0], &got), 1);
    assert_int_equal(got.type, FY_OP_DONE);
    assert_int_equal(dst->streams[0]->rx_burst(dst->streams[0], &got, 1, TIMEOUT_MS),
                     -FY_E_CLOSED);
    fy_session_close(dst);
    tcp->listener_close(l);
}

static void test_tcp_rx_burst__page_offset_past_region__fails_range(void **state)
{
    struct fy_listener *l = listen_local(TIMEOUT_MS);
    uint8_t page[FY_PAGE_SIZE], frame[FY_FRAME_HDR_SIZE + 16 + FY_PAGE_SIZE];
    struct fy_op op = {.type = FY_OP_PAGE, .offset = REGION_SIZE, .len = FY_PAGE_SIZE,
                       .data = page};
    struct fy_session *dst;
    struct fy_op got;
    size_t n;
    int fd;

    (void)state;
    fd = raw_source(l, &dst);
    fill_page(page, 7);
    op.hash = fy_page_hash(page);
    n = encode_frame(&op, frame, sizeof(frame));
    raw_write(fd, frame, n);
    assert_int_equal(dst->streams[0]->rx_burst(dst->streams[0], &got, 1, TIMEOUT_MS),
                     -FY_E_RANGE);
    close(fd);
    fy_session_close(dst);
    tcp->listener_close(l);
}

static void test_tcp_rx_burst__zero_range_past_region__fails_range(void **state)
{
    struct fy_listener *l = listen_local(TIMEOUT_MS);
    uint8_t frame[64];
    struct fy_op op = {.type = FY_OP_ZERO, .offset = REGION_SIZE - FY_PAGE_SIZE,
                       .len = 2 * FY_PAGE_SIZE};
    struct fy_session *dst;
    struct fy_op got;
    size_t n;
    int fd;

    (void)state;
    fd = raw_source(l, &dst);
    n = encode_frame(&op, frame, sizeof(frame));
    raw_write(fd, frame, n);
    assert_int_equal(dst->streams[0]->rx_burst(dst->streams[0], &got, 1, TIMEOUT_MS),
                     -FY_E_RANGE);
    close(fd);
    fy_session_close(dst);
    tcp->listener_close(l);
}

static void test_tcp_tx_burst__peer_closed__fails_closed_without_sigpipe(void **state)
{
    struct fy_listener *l = listen_local(TIMEOUT_MS);
    uint8_t page[FY_PAGE_SIZE];
    struct fy_op ops[16];
    struct fy_session *dst;
    int fd, rc = 0;

    (void)state;
    fd = raw_source(l, &dst);
    close(fd);
    fill_page(page, 8);
    for (unsigned i = 0; i < 16; i++)
        ops[i] = (struct fy_op){.type = FY_OP_PAGE, .offset = (uint64_t)i * FY_PAGE_SIZE,
                                .len = FY_PAGE_SIZE, .hash = fy_page_hash(page),
                                .data = page};
    /* The first sends may land in the socket buffer; the reset comes back. */
    for (int tries = 0; tries < 2000 && rc == 0; tries++) {
        rc = fy_stream_send_all(dst->streams[0], ops, 16);
        if (rc == 0)
            usleep(1000);
    }
    assert_int_equal(rc, -FY_E_CLOSED);
    fy_session_close(dst);
    tcp->listener_close(l);
}

/* ---- runs of pages: PAGES frames and placement ----------------------------- */

/* n pages, each with its own content, and the PAGE ops that carry them to
 * distinct offsets of the region, out of order. */
struct page_run {
    unsigned n;
    uint8_t (*pages)[FY_PAGE_SIZE];
    struct fy_op *ops;
};

/* Bytes of a PAGES frame of n pages. */
static size_t pp_frame_size(unsigned n)
{
    return FY_FRAME_HDR_SIZE + (size_t)n * (FY_PAGES_DESC_SIZE + FY_PAGE_SIZE);
}

static uint64_t run_offset(unsigned i)
{
    return (uint64_t)((i * 37u + 11u) % REGION_PAGES) * FY_PAGE_SIZE;
}

static void page_run_init(struct page_run *r, unsigned n, unsigned seed)
{
    r->n = n;
    r->pages = malloc((size_t)n * FY_PAGE_SIZE);
    r->ops = calloc(n, sizeof(*r->ops));
    assert_non_null(r->pages);
    assert_non_null(r->ops);
    for (unsigned i = 0; i < n; i++) {
        fill_page(r->pages[i], seed + i);
        r->ops[i] = (struct fy_op){.type = FY_OP_PAGE, .offset = run_offset(i),
                                   .len = FY_PAGE_SIZE,
                                   .hash = fy_page_hash(r->pages[i]),
                                   .data = r->pages[i]};
    }
}

static void page_run_free(struct page_run *r)
{
    free(r->pages);
    free(r->ops);
}

/* Destination memory for a placement: the whole region, filled with
 * PLACEMENT_FILL so that a write where no page was sent shows. */
#define PLACEMENT_FILL 0xEE

static uint8_t *placement_new(void)
{
    uint8_t *m = aligned_alloc(FY_PAGE_SIZE, REGION_SIZE);

    assert_non_null(m);
    memset(m, PLACEMENT_FILL, REGION_SIZE);
    return m;
}

static bool placement_untouched(const uint8_t *m)
{
    for (uint64_t i = 0; i < REGION_SIZE; i++)
        if (m[i] != PLACEMENT_FILL)
            return false;
    return true;
}

static bool points_into(const void *p, const uint8_t *m)
{
    uintptr_t a = (uintptr_t)p, lo = (uintptr_t)m;

    return a >= lo && a < lo + REGION_SIZE;
}

/* Sends ops from another thread, so a burst larger than the socket buffers
 * cannot block the test that receives it. */
struct sender {
    struct fy_stream *s;
    const struct fy_op *ops;
    unsigned n;
    int rc;
    char detail[1024];
    pthread_t tid;
};

static void *sender_main(void *arg)
{
    struct sender *b = arg;

    b->rc = fy_stream_send_all(b->s, b->ops, b->n);
    snprintf(b->detail, sizeof(b->detail), "%s", b->rc < 0 ? fy_error_detail() : "");
    return NULL;
}

static void sender_start(struct sender *b, struct fy_stream *s,
                         const struct fy_op *ops, unsigned n)
{
    memset(b, 0, sizeof(*b));
    b->s = s;
    b->ops = ops;
    b->n = n;
    b->rc = 1;
    assert_int_equal(pthread_create(&b->tid, NULL, sender_main, b), 0);
}

static void sender_join(struct sender *b)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    if (pthread_timedjoin_np(b->tid, NULL, &ts) != 0)
        fail_msg("send did not return within 20 s");
    if (b->rc != 0)
        fail_msg("send failed (%d): %s", b->rc, b->detail);
}

/* Receives want[0..n-1], at most 'max' per call, checking each burst before
 * the next call (unplaced data is valid only until then).  PAGE ops must
 * carry exactly 'page_flags'; with FY_OP_F_PLACED their data must be at
 * placement + offset, else (with a placement given) outside it. */
static void recv_and_check(struct fy_stream *s, const struct fy_op *want,
                           unsigned n, unsigned max, const uint8_t *placement,
                           uint8_t page_flags)
{
    struct fy_op got[256];
    unsigned done = 0;

    assert_true(max <= 256);
    while (done < n) {
        int k = s->rx_burst(s, got, max, TIMEOUT_MS);

        if (k <= 0)
            fail_msg("rx_burst returned %d after %u of %u ops: %s", k, done, n,
                     fy_error_detail());
        assert_true((unsigned)k <= max);
        assert_true(done + (unsigned)k <= n);
        for (int i = 0; i < k; i++, done++) {
            const struct fy_op *g = &got[i], *w = &want[done];

            if (w->type != FY_OP_PAGE) {
                assert_same_op(g, w);
                continue;
            }
            assert_int_equal(g->type, FY_OP_PAGE);
            assert_int_equal(g->flags, page_flags);
            assert_int_equal(g->offset, w->offset);
            assert_int_equal(g->len, FY_PAGE_SIZE);
            assert_true(fy_hash_eq(g->hash, w->hash));
            assert_memory_equal(g->data, w->data, FY_PAGE_SIZE);
            if (page_flags & FY_OP_F_PLACED)
                assert_ptr_equal(g->data, placement + w->offset);
            else if (placement)
                assert_false(points_into(g->data, placement));
        }
    }
}

static void test_tcp_tx_burst__run_of_100_pages__received_as_100_identical_pages(void **state)
{
    struct pair *p = *state;
    struct fy_stream *tx = p->src->streams[0], *rx = p->dst->streams[0];
    uint64_t tx0 = tx->tx_wire_bytes, rx0 = rx->rx_wire_bytes;
    /* Two frames: 64 pages and 36, each a header and 24-byte descriptors. */
    const uint64_t wire = 2 * FY_FRAME_HDR_SIZE +
                          100 * (uint64_t)(FY_PAGES_DESC_SIZE + FY_PAGE_SIZE);
    struct page_run r;
    struct sender b;

    page_run_init(&r, 100, 1);
    sender_start(&b, tx, r.ops, r.n);
    recv_and_check(rx, r.ops, r.n, 256, NULL, 0);
    sender_join(&b);
    assert_int_equal(tx->tx_wire_bytes - tx0, wire);
    assert_int_equal(rx->rx_wire_bytes - rx0, wire);
    page_run_free(&r);
}

/* A target built by hand: a raw listening socket that answers the
 * handshake of a real one-stream source, returned in *src; the raw
 * connection is returned. */
struct connector {
    char addr[64];
    struct fy_session *s;
    int rc;
    pthread_t tid;
};

static void *connector_main(void *arg)
{
    struct connector *c = arg;
    struct fy_transport_opts o = {.streams = 1, .timeout_ms = TIMEOUT_MS};
    struct fy_session_info info = session_info(REGION_SIZE);

    c->rc = tcp->connect(c->addr, &o, &info, &c->s);
    return NULL;
}

static int raw_target(struct fy_session **src)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    uint8_t hello[FY_FRAME_HDR_SIZE + FY_HELLO_PAYLOAD_SIZE];
    struct fy_session_info info;
    struct connector c = {.rc = 1};
    struct timespec ts;
    uint32_t idx;
    size_t flen;
    bool ack;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), fd;

    assert_true(lfd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 1), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(c.addr, sizeof(c.addr), "127.0.0.1:%u", ntohs(sa.sin_port));
    assert_int_equal(pthread_create(&c.tid, NULL, connector_main, &c), 0);
    fd = accept(lfd, NULL, NULL);
    assert_true(fd >= 0);
    raw_read_exact(fd, hello, sizeof(hello));
    assert_int_equal(fy_proto_decode_hello(hello, sizeof(hello), &info, &idx,
                                           &ack, &flen), 0);
    assert_false(ack);
    assert_int_equal(fy_proto_encode_hello(&info, idx, true, hello, sizeof(hello)),
                     sizeof(hello));
    raw_write(fd, hello, sizeof(hello));
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    if (pthread_timedjoin_np(c.tid, NULL, &ts) != 0)
        fail_msg("connect() did not return within 20 s");
    close(lfd);
    assert_int_equal(c.rc, 0);
    *src = c.s;
    return fd;
}

/* Reads one whole frame from a raw connection into buf and decodes it (not
 * for ROUND_END or ROUND_ACK, whose data would point at a local here). */
static void raw_read_frame(int fd, uint8_t *buf, struct fy_op *op)
{
    const struct fy_proto_limits lim = {REGION_SIZE, FY_PAGE_SIZE};
    union fy_proto_scratch scratch;
    size_t flen = 0;
    int rc;

    raw_read_exact(fd, buf, FY_FRAME_HDR_SIZE);
    rc = fy_proto_decode(buf, FY_FRAME_HDR_SIZE, &lim, op, &scratch, &flen);
    if (rc == 0) { /* a frame of header only */
        assert_int_equal(flen, FY_FRAME_HDR_SIZE);
        return;
    }
    assert_int_equal(rc, -FY_E_AGAIN);
    assert_true(flen > FY_FRAME_HDR_SIZE);
    raw_read_exact(fd, buf + FY_FRAME_HDR_SIZE, flen - FY_FRAME_HDR_SIZE);
    assert_int_equal(fy_proto_decode(buf, flen, &lim, op, &scratch, &flen), 0);
}

/* The PAGES frame at buf carries exactly want[0..n-1], pages included. */
static void assert_pages_frame(const uint8_t *buf, const struct fy_op *op,
                               const struct fy_op *want, unsigned n)
{
    const struct fy_proto_limits lim = {REGION_SIZE, FY_PAGE_SIZE};
    struct fy_pages_prefix pp;

    assert_int_equal(op->type, FY_FRAME_PAGES);
    assert_int_equal(op->len, n);
    assert_int_equal(fy_proto_decode_pages_prefix(buf, pp_frame_size(n), &lim, &pp),
                     0);
    assert_int_equal(pp.n, n);
    for (unsigned i = 0; i < n; i++) {
        uint64_t off;
        fy_hash128 h;

        fy_proto_pages_desc(&pp, i, &off, &h);
        assert_int_equal(off, want[i].offset);
        assert_true(fy_hash_eq(h, want[i].hash));
        assert_memory_equal(pp.desc + (size_t)n * FY_PAGES_DESC_SIZE +
                                (size_t)i * FY_PAGE_SIZE,
                            want[i].data, FY_PAGE_SIZE);
    }
}

static void test_tcp_tx_burst__run_of_100_pages__sent_as_pages_frames_of_64_and_36(void **state)
{
    uint8_t *frame = malloc(FY_FRAME_HDR_SIZE + FY_FRAME_MAX_PAYLOAD);
    struct fy_session *src;
    struct page_run r;
    struct sender b;
    struct fy_op op;
    int fd;

    (void)state;
    assert_non_null(frame);
    page_run_init(&r, 100, 3);
    fd = raw_target(&src);
    sender_start(&b, src->streams[0], r.ops, r.n);
    raw_read_frame(fd, frame, &op);
    assert_pages_frame(frame, &op, r.ops, 64);
    raw_read_frame(fd, frame, &op);
    assert_pages_frame(frame, &op, r.ops + 64, 36);
    sender_join(&b);
    close(fd);
    fy_session_close(src);
    page_run_free(&r);
    free(frame);
}

static void test_tcp_tx_burst__pages_between_other_ops__each_run_its_own_pages_frame(void **state)
{
    uint8_t *frame = malloc(FY_FRAME_HDR_SIZE + FY_FRAME_MAX_PAYLOAD);
    struct fy_session *src;
    struct page_run r;
    struct fy_op ops[9], op;
    int fd;

    (void)state;
    assert_non_null(frame);
    page_run_init(&r, 6, 40);
    /* PAGE PAGE PAGE ZERO PAGE REF PAGE PAGE DONE */
    ops[0] = r.ops[0];
    ops[1] = r.ops[1];
    ops[2] = r.ops[2];
    ops[3] = (struct fy_op){.type = FY_OP_ZERO, .offset = 0, .len = 2 * FY_PAGE_SIZE};
    ops[4] = r.ops[3];
    ops[5] = (struct fy_op){.type = FY_OP_REF, .offset = 5 * FY_PAGE_SIZE,
                            .hash = {1, 2}};
    ops[6] = r.ops[4];
    ops[7] = r.ops[5];
    ops[8] = (struct fy_op){.type = FY_OP_DONE};
    fd = raw_target(&src);
    assert_int_equal(src->streams[0]->tx_burst(src->streams[0], ops, 9), 9);
    raw_read_frame(fd, frame, &op);
    assert_pages_frame(frame, &op, &ops[0], 3);
    raw_read_frame(fd, frame, &op);
    assert_same_op(&op, &ops[3]);
    raw_read_frame(fd, frame, &op);
    assert_pages_frame(frame, &op, &ops[4], 1);
    raw_read_frame(fd, frame, &op);
    assert_same_op(&op, &ops[5]);
    raw_read_frame(fd, frame, &op);
    assert_pages_frame(frame, &op, &ops[6], 2);
    raw_read_frame(fd, frame, &op);
    assert_same_op(&op, &ops[8]);
    close(fd);
    fy_session_close(src);
    page_run_free(&r);
    free(frame);
}

/* The target side of a pair that checks pages itself and gives a
 * placement. */
static void placed_pair_open(struct pair *p, uint8_t *placement)
{
    struct fy_accept_params params = {.region_size = REGION_SIZE,
                                      .placement = placement,
                                      .receiver_checks_pages = true};

    assert_int_equal(pair_open(p, 1, &params), 0);
}

static void test_tcp_rx_burst__placement__pages_read_into_place_flagged_placed_unchecked(void **state)
{
    uint8_t *placement = placement_new();
    uint64_t rx0;
    struct page_run r;
    struct sender b;
    struct pair p;

    (void)state;
    placed_pair_open(&p, placement);
    page_run_init(&r, 100, 7);
    rx0 = p.dst->streams[0]->rx_wire_bytes;
    sender_start(&b, p.src->streams[0], r.ops, r.n);
    recv_and_check(p.dst->streams[0], r.ops, r.n, 256, placement,
                   FY_OP_F_PLACED | FY_OP_F_UNCHECKED);
    sender_join(&b);
    /* Bytes read into place count as received: frames of 64 and 36. */
    assert_int_equal(p.dst->streams[0]->rx_wire_bytes - rx0,
                     pp_frame_size(64) + pp_frame_size(36));
    /* What was sent is where it was sent to, and nothing else was written. */
    for (unsigned i = 0; i < r.n; i++) {
        assert_memory_equal(placement + r.ops[i].offset, r.pages[i], FY_PAGE_SIZE);
        memset(placement + r.ops[i].offset, PLACEMENT_FILL, FY_PAGE_SIZE);
    }
    assert_true(placement_untouched(placement));
    pair_close(&p);
    page_run_free(&r);
    free(placement);
}

/* ZERO, 70 PAGE, REF, 5 PAGE, ROUND_END, received 'max' at a time from a
 * pair whose target reads pages into a placement, or (placed false) keeps
 * them in its receive buffer while handing them out. */
static void check_mix(unsigned max, bool placed)
{
    uint8_t *placement = placement_new();
    struct fy_accept_params params = {.region_size = REGION_SIZE};
    struct fy_round_counts counts = {75, 1, 1, 77};
    struct page_run r;
    struct fy_op ops[79];
    struct sender b;
    struct pair p;
    unsigned n = 0;

    if (placed)
        placed_pair_open(&p, placement);
    else
        assert_int_equal(pair_open(&p, 1, &params), 0);
    page_run_init(&r, 75, 11);
    ops[n++] = (struct fy_op){.type = FY_OP_ZERO, .offset = 2 * FY_PAGE_SIZE,
                              .len = FY_PAGE_SIZE};
    for (unsigned i = 0; i < 70; i++)
        ops[n++] = r.ops[i];
    ops[n++] = (struct fy_op){.type = FY_OP_REF, .offset = 4 * FY_PAGE_SIZE,
                              .hash = {3, 4}};
    for (unsigned i = 70; i < 75; i++)
        ops[n++] = r.ops[i];
    ops[n++] = (struct fy_op){.type = FY_OP_ROUND_END, .offset = 1,
                              .data = &counts, .len = sizeof(counts)};
    assert_int_equal(n, 78);
    sender_start(&b, p.src->streams[0], ops, n);
    recv_and_check(p.dst->streams[0], ops, n, max, placement,
                   placed ? FY_OP_F_PLACED | FY_OP_F_UNCHECKED : 0);
    sender_join(&b);
    for (unsigned i = 0; placed && i < r.n; i++)
        assert_memory_equal(placement + r.ops[i].offset, r.pages[i], FY_PAGE_SIZE);
    if (!placed)
        assert_true(placement_untouched(placement));
    pair_close(&p);
    page_run_free(&r);
    free(placement);
}

static void test_tcp_rx_burst__placement_one_op_per_call__pages_handed_out_one_at_a_time(void **state)
{
    (void)state;
    check_mix(1, true);
}

static void test_tcp_rx_burst__placement_seven_ops_per_call__bursts_cross_frame_ends(void **state)
{
    (void)state;
    check_mix(7, true);
}

static void test_tcp_rx_burst__unplaced_one_op_per_call__pages_handed_out_intact(void **state)
{
    (void)state;
    check_mix(1, false);
}

static void test_tcp_rx_burst__unplaced_seven_ops_per_call__bursts_cross_frame_ends(void **state)
{
    (void)state;
    check_mix(7, false);
}

static void test_tcp_rx_burst__placement_page_hash_wrong__delivered_placed_for_receiver_to_check(void **state)
{
    uint8_t *placement = placement_new();
    struct page_run r;
    struct pair p;

    (void)state;
    placed_pair_open(&p, placement);
    page_run_init(&r, 3, 21);
    r.ops[1].hash.lo ^= 1; /* wrong: the receiver finds it where it lands */
    assert_int_equal(fy_stream_send_all(p.src->streams[0], r.ops, r.n), 0);
    recv_and_check(p.dst->streams[0], r.ops, r.n, 256, placement,
                   FY_OP_F_PLACED | FY_OP_F_UNCHECKED);
    pair_close(&p);
    page_run_free(&r);
    free(placement);
}

/* A PAGES frame of ops[0..n-1] as a source sends it (prefix, then the
 * pages) at buf; returns its size. */
static size_t put_pages_frame(const struct fy_op *ops, unsigned n, uint8_t *buf)
{
    int w = fy_proto_encode_pages(ops, n, buf, pp_frame_size(n));

    assert_int_equal(w, FY_FRAME_HDR_SIZE + n * FY_PAGES_DESC_SIZE);
    for (unsigned i = 0; i < n; i++)
        memcpy(buf + w + (size_t)i * FY_PAGE_SIZE, ops[i].data, FY_PAGE_SIZE);
    return pp_frame_size(n);
}

/* Writes a buffer to a raw connection in small pieces of odd sizes with
 * pauses, so that reads end inside headers, descriptors and pages. */
struct slow_writer {
    int fd;
    const uint8_t *buf;
    size_t len;
    int err; /* errno of a failed send, else 0 */
    pthread_t tid;
};

static void *slow_writer_main(void *arg)
{
    static const size_t pieces[] = {5, 19, 1, 700, 1237, 4096, 3001, 333, 24, 2000};
    struct slow_writer *w = arg;
    size_t off = 0;
    unsigned k = 0;
    int one = 1;

    setsockopt(w->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    while (off < w->len) {
        size_t piece = pieces[k++ % (sizeof(pieces) / sizeof(pieces[0]))];
        ssize_t sent;

        if (piece > w->len - off)
            piece = w->len - off;
        sent = send(w->fd, w->buf + off, piece, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR)
            continue;
        if (sent <= 0) {
            w->err = errno ? errno : EIO;
            break;
        }
        off += (size_t)sent;
        usleep(300);
    }
    return NULL;
}

/* A 64-page and a 3-page PAGES frame then DONE, trickled from a raw source
 * to a target accepting with 'params'; checks what arrives. */
static void check_slow_pages(const struct fy_accept_params *params,
                             uint8_t page_flags)
{
    struct fy_listener *l = listen_local(TIMEOUT_MS);
    size_t cap = pp_frame_size(64) + pp_frame_size(3) + FY_FRAME_HDR_SIZE, n;
    uint8_t *stream = malloc(cap);
    struct fy_op ops[68], done = {.type = FY_OP_DONE};
    struct slow_writer w = {0};
    struct fy_session *dst;
    struct page_run r;
    struct timespec ts;

    assert_non_null(stream);
    page_run_init(&r, 67, 31);
    n = put_pages_frame(r.ops, 64, stream);
    n += put_pages_frame(r.ops + 64, 3, stream + n);
    n += encode_frame(&done, stream + n, cap - n);
    assert_int_equal(n, cap);
    memcpy(ops, r.ops, 67 * sizeof(ops[0]));
    ops[67] = done;

    w.fd = raw_source_with(l, params, &dst);
    w.buf = stream;
    w.len = n;
    assert_int_equal(pthread_create(&w.tid, NULL, slow_writer_main, &w), 0);
    recv_and_check(dst->streams[0], ops, 68, 256, params->placement, page_flags);
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    if (pthread_timedjoin_np(w.tid, NULL, &ts) != 0)
        fail_msg("slow writer still writing after 20 s");
    assert_int_equal(w.err, 0);
    if (params->placement)
        for (unsigned i = 0; i < r.n; i++)
            assert_memory_equal((const uint8_t *)params->placement + r.ops[i].offset,
                                r.pages[i], FY_PAGE_SIZE);
    close(w.fd);
    fy_session_close(dst);
    tcp->listener_close(l);
    page_run_free(&r);
    free(stream);
}

static void test_tcp_rx_burst__placement_frame_arrives_slowly__pages_placed_intact(void **state)
{
    uint8_t *placement = placement_new();
    struct fy_accept_params params = {.region_size = REGION_SIZE,
                                      .placement = placement,
                                      .receiver_checks_pages = true};

    (void)state;
    check_slow_pages(&params, FY_OP_F_PLACED | FY_OP_F_UNCHECKED);
    free(placement);
}

static void test_tcp_rx_burst__pages_frame_arrives_slowly_without_placement__pages_intact(void **state)
{
    struct fy_accept_params params = {.region_size = REGION_SIZE};

    (void)state;
    check_slow_pages(&params, 0);
}

/* A raw source sends the first 'len' bytes of a 4-page PAGES frame and
 * closes; the target accepts with or without a placement. */
static void check_pages_cut_short(bool placed, size_t len)
{
    struct fy_listener *l = listen_local(TIMEOUT_MS);
    uint8_t *placement = placement_new();
    struct fy_accept_params params = {.region_size = REGION_SIZE,
                                      .placement = placed ? placement : NULL,
                                      .receiver_checks_pages = placed};
    uint8_t *frame = malloc(pp_frame_size(4));
    struct fy_session *dst;
    struct page_run r;
    struct fy_op got[4];
    int fd;

    assert_non_null(frame);
    page_run_init(&r, 4, 50);
    assert_true(put_pages_frame(r.ops, 4, frame) > len);
    fd = raw_source_with(l, &params, &dst);
    raw_write(fd, frame, len);
    close(fd);
    assert_int_equal(dst->streams[0]->rx_burst(dst->streams[0], got, 4, TIMEOUT_MS),
                     -FY_E_TRUNCATED);
    assert_non_null(strstr(fy_error_detail(), "stream 0"));
    fy_session_close(dst);
    tcp->listener_close(l);
    page_run_free(&r);
    free(frame);
    free(placement);
}

#define PREFIX4 (FY_FRAME_HDR_SIZE + 4 * FY_PAGES_DESC_SIZE)

static void test_tcp_rx_burst__placement_pages_prefix_then_close__fails_truncated(void **state)
{
    (void)state;
    check_pages_cut_short(true, PREFIX4);
}

static void test_tcp_rx_burst__placement_close_mid_pages__fails_truncated(void **state)
{
    (void)state;
    check_pages_cut_short(true, PREFIX4 + FY_PAGE_SIZE + FY_PAGE_SIZE / 2);
}

static void test_tcp_rx_burst__placement_close_mid_prefix__fails_truncated(void **state)
{
    (void)state;
    check_pages_cut_short(true, PREFIX4 - 10);
}

static void test_tcp_rx_burst__pages_prefix_then_close_without_placement__fails_truncated(void **state)
{
    (void)state;
    check_pages_cut_short(false, PREFIX4);
    check_pages_cut_short(false, PREFIX4 + 3 * FY_PAGE_SIZE);
}

static void test_tcp_rx_burst__placement_offset_past_region__fails_range_without_writing(void **state)
{
    struct fy_listener *l = listen_local(TIMEOUT_MS);
    uint8_t *placement = placement_new();
    struct fy_accept_params params = {.region_size = REGION_SIZE,
                                      .placement = placement,
                                      .receiver_checks_pages = true};
    uint8_t *frame = malloc(pp_frame_size(3));
    struct fy_session *dst;
    struct page_run r;
    struct fy_op got[4];
    size_t n;
    int fd;

    (void)state;
    assert_non_null(frame);
    page_run_init(&r, 3, 60);
    r.ops[2].offset = REGION_SIZE; /* one page past the end */
    n = put_pages_frame(r.ops, 3, frame);
    fd = raw_source_with(l, &params, &dst);
    raw_write(fd, frame, n);
    assert_int_equal(dst->streams[0]->rx_burst(dst->streams[0], got, 4, TIMEOUT_MS),
                     -FY_E_RANGE);
    /* Refused from the descriptors: no page was written anywhere. */
    assert_true(placement_untouched(placement));
    close(fd);
    fy_session_close(dst);
    tcp->listener_close(l);
    page_run_free(&r);
    free(frame);
    free(placement);
}

static void test_tcp_rx_burst__placement_single_page_frame__delivered_unplaced_unchecked(void **state)
{
    struct fy_listener *l = listen_local(TIMEOUT_MS);
    uint8_t *placement = placement_new();
    struct fy_accept_params params = {.region_size = REGION_SIZE,
                                      .placement = placement,
                                      .receiver_checks_pages = true};
    uint8_t frame[FY_FRAME_HDR_SIZE + 16 + FY_PAGE_SIZE + FY_FRAME_HDR_SIZE];
    struct fy_op ops[2];
    struct fy_session *dst;
    struct page_run r;
    size_t n;
    int fd;

    (void)state;
    /* A peer may send runs of pages as PAGE frames: still accepted, from
     * the receive buffer. */
    page_run_init(&r, 1, 90);
    ops[0] = r.ops[0];
    ops[1] = (struct fy_op){.type = FY_OP_DONE};
    n = encode_frame(&ops[0], frame, sizeof(frame));
    n += encode_frame(&ops[1], frame + n, sizeof(frame) - n);
    fd = raw_source_with(l, &params, &dst);
    raw_write(fd, frame, n);
    recv_and_check(dst->streams[0], ops, 2, 1, placement, FY_OP_F_UNCHECKED);
    assert_true(placement_untouched(placement));
    close(fd);
    fy_session_close(dst);
    tcp->listener_close(l);
    page_run_free(&r);
    free(placement);
}

/* A raw source that sends the prefix of a 4-page PAGES frame and then
 * nothing, to a target with a placement (its session timeout is the
 * listener's). */
static int stalled_placed_source(struct fy_listener *l, uint8_t *placement,
                                 struct fy_session **dst, struct page_run *r)
{
    struct fy_accept_params params = {.region_size = REGION_SIZE,
                                      .placement = placement,
                                      .receiver_checks_pages = true};
    uint8_t prefix[PREFIX4];
    int fd;

    page_run_init(r, 4, 80);
    assert_int_equal(fy_proto_encode_pages(r->ops, 4, prefix, sizeof(prefix)),
                     PREFIX4);
    fd = raw_source_with(l, &params, dst);
    raw_write(fd, prefix, sizeof(prefix));
    return fd;
}

static void test_tcp_rx_burst__placement_pages_stall__fails_timeout(void **state)
{
    struct fy_listener *l = listen_local(500);
    uint8_t *placement = placement_new();
    struct fy_session *dst;
    struct page_run r;
    struct fy_op got[4];
    int fd;

    (void)state;
    fd = stalled_placed_source(l, placement, &dst, &r);
    /* Mid-frame the session's timeout applies, not the caller's wait. */
    assert_int_equal(dst->streams[0]->rx_burst(dst->streams[0], got, 4, -1),
                     -FY_E_TIMEOUT);
    assert_non_null(strstr(fy_error_detail(), "PAGES"));
    close(fd);
    fy_session_close(dst);
    tcp->listener_close(l);
    page_run_free(&r);
    free(placement);
}

/* Pages sent to a target that gave a placement but accepted with 'params'
 * under which it must not be used. */
static void check_placement_unused(struct fy_accept_params params,
                                   uint8_t page_flags)
{
    uint8_t *placement = placement_new();
    struct page_run r;
    struct sender b;
    struct pair p;

    params.placement = placement;
    assert_int_equal(pair_open(&p, 1, &params), 0);
    page_run_init(&r, 70, 70);
    sender_start(&b, p.src->streams[0], r.ops, r.n);
    recv_and_check(p.dst->streams[0], r.ops, r.n, 256, placement, page_flags);
    sender_join(&b);
    assert_true(placement_untouched(placement));
    pair_close(&p);
    page_run_free(&r);
    free(placement);
}

static void test_tcp_rx_burst__placement_without_receiver_checks__not_used(void **state)
{
    (void)state;
    check_placement_unused((struct fy_accept_params){.region_size = REGION_SIZE},
                           0);
}

static void test_tcp_rx_burst__placement_with_region_size_zero__not_used(void **state)
{
    (void)state;
    check_placement_unused((struct fy_accept_params){.receiver_checks_pages = true},
                           FY_OP_F_UNCHECKED);
}

/* ---- shutdown ------------------------------------------------------------------- */

struct blocked_rx {
    struct fy_stream *s;
    int rc;
};

static void *blocked_rx_main(void *arg)
{
    struct blocked_rx *b = arg;
    struct fy_op op;

    b->rc = b->s->rx_burst(b->s, &op, 1, -1);
    return NULL;
}

static void test_tcp_shutdown__rx_blocked_in_other_thread__returns_cancelled(void **state)
{
    struct pair *p = *state;
    struct blocked_rx b = {.s = p->dst->streams[0], .rc = 1};
    struct fy_op op = {.type = FY_OP_DONE};
    pthread_t tid;
    struct timespec ts;

    assert_int_equal(pthread_create(&tid, NULL, blocked_rx_main, &b), 0);
    usleep(100 * 1000);
    fy_session_shutdown(p->dst);
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    if (pthread_timedjoin_np(tid, NULL, &ts) != 0)
        fail_msg("rx_burst still blocked 10 s after shutdown");
    assert_int_equal(b.rc, -FY_E_CANCELLED);
    /* Later calls fail the same way. */
    assert_int_equal(p->dst->streams[0]->tx_burst(p->dst->streams[0], &op, 1),
                     -FY_E_CANCELLED);
    assert_int_equal(p->dst->streams[0]->rx_burst(p->dst->streams[0], &op, 1, 100),
                     -FY_E_CANCELLED);
}

static void test_tcp_shutdown__all_streams__each_rx_returns_cancelled(void **state)
{
    struct pair *p = *state;
    struct blocked_rx b[3];
    pthread_t tid[3];

    for (unsigned i = 0; i < 3; i++) {
        b[i] = (struct blocked_rx){.s = p->dst->streams[i], .rc = 1};
        assert_int_equal(pthread_create(&tid[i], NULL, blocked_rx_main, &b[i]), 0);
    }
    usleep(100 * 1000);
    fy_session_shutdown(p->dst);
    for (unsigned i = 0; i < 3; i++) {
        pthread_join(tid[i], NULL);
        assert_int_equal(b[i].rc, -FY_E_CANCELLED);
    }
}

static void test_tcp_shutdown__rx_blocked_mid_placed_pages__returns_cancelled(void **state)
{
    struct fy_listener *l = listen_local(TIMEOUT_MS);
    uint8_t *placement = placement_new();
    struct fy_session *dst;
    struct page_run r;
    struct blocked_rx b = {.rc = 1};
    struct timespec ts;
    pthread_t tid;
    int fd;

    (void)state;
    fd = stalled_placed_source(l, placement, &dst, &r);
    b.s = dst->streams[0];
    assert_int_equal(pthread_create(&tid, NULL, blocked_rx_main, &b), 0);
    usleep(100 * 1000);
    fy_session_shutdown(dst);
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    if (pthread_timedjoin_np(tid, NULL, &ts) != 0)
        fail_msg("rx_burst still blocked 10 s after shutdown");
    assert_int_equal(b.rc, -FY_E_CANCELLED);
    close(fd);
    fy_session_close(dst);
    tcp->listener_close(l);
    page_run_free(&r);
    free(placement);
}

static void test_tcp_transport_find__tcp__returns_the_tcp_ops(void **state)
{
    (void)state;
    assert_ptr_equal(fy_transport_find("tcp"), tcp);
    assert_null(fy_transport_find("carrier-pigeon"));
    assert_non_null(strstr(fy_error_detail(), "tcp"));
}

int main(void)
{
#define P1(f) cmocka_unit_test_setup_teardown(f, pair1_setup, pair_teardown)
#define P3(f) cmocka_unit_test_setup_teardown(f, pair3_setup, pair_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_listen__port_zero__addr_names_the_real_port),
        P1(test_tcp_connect__one_stream__both_sides_hold_one_stream),
        P3(test_tcp_connect__three_streams__both_sides_hold_three_streams),
        P1(test_tcp_tx_burst__every_source_op_type_one_stream__received_identical),
        P3(test_tcp_tx_burst__every_source_op_type_three_streams__received_identical_on_same_stream),
        P1(test_tcp_tx_burst__target_answers__received_identical_by_source),
        P1(test_tcp_tx_burst__data_between_pages__received_identical_both_ways),
        P1(test_tcp_rx_burst__many_ops_in_flight__burst_returns_several_in_order),
        P1(test_tcp_wire_bytes__ops_sent__tx_and_rx_count_the_frames),
        P1(test_tcp_rx_burst__page_hash_not_of_its_data__fails_checksum),
        cmocka_unit_test(test_tcp_rx_burst__receiver_checks_pages__bad_page_delivered_unchecked),
        P1(test_tcp_rx_burst__nothing_sent__returns_zero_after_timeout),
        cmocka_unit_test(test_tcp_accept__region_size_differs__accept_fails_and_connect_gets_peer_error),
        cmocka_unit_test(test_tcp_accept__other_session_id_expected__refused_with_auth),
        cmocka_unit_test(test_tcp_connect__nobody_listening__fails_closed),
        cmocka_unit_test(test_tcp_connect__bad_address__fails_inval),
        cmocka_unit_test(test_tcp_accept__nobody_connects__fails_timeout),
        cmocka_unit_test(test_tcp_accept__garbage_instead_of_hello__fails_proto_with_clear_error),
        cmocka_unit_test(test_tcp_accept__garbage_with_ferry_magic__fails_and_listener_keeps_working),
        cmocka_unit_test(test_tcp_accept__error_frame_longer_than_hello__fails_peer_without_crash),
        cmocka_unit_test(test_tcp_accept__hello_ack_sent_to_listener__fails_proto),
        cmocka_unit_test(test_tcp_accept__source_closes_mid_hello__fails_truncated),
        cmocka_unit_test(test_tcp_accept__source_stalls_mid_hello__fails_timeout),
        cmocka_unit_test(test_tcp_rx_burst__corrupted_page_data__fails_checksum_with_detail),
        cmocka_unit_test(test_tcp_rx_burst__corrupted_frame_header__fails_checksum),
        cmocka_unit_test(test_tcp_rx_burst__half_a_frame_then_close__fails_truncated),
        cmocka_unit_test(test_tcp_rx_burst__close_between_frames__op_then_fails_closed),
        cmocka_unit_test(test_tcp_rx_burst__page_offset_past_region__fails_range),
        cmocka_unit_test(test_tcp_rx_burst__zero_range_past_region__fails_range),
        cmocka_unit_test(test_tcp_tx_burst__peer_closed__fails_closed_without_sigpipe),
        P1(test_tcp_tx_burst__run_of_100_pages__received_as_100_identical_pages),
        cmocka_unit_test(test_tcp_tx_burst__run_of_100_pages__sent_as_pages_frames_of_64_and_36),
        cmocka_unit_test(test_tcp_tx_burst__pages_between_other_ops__each_run_its_own_pages_frame),
        cmocka_unit_test(test_tcp_rx_burst__placement__pages_read_into_place_flagged_placed_unchecked),
        cmocka_unit_test(test_tcp_rx_burst__placement_one_op_per_call__pages_handed_out_one_at_a_time),
        cmocka_unit_test(test_tcp_rx_burst__placement_seven_ops_per_call__bursts_cross_frame_ends),
        cmocka_unit_test(test_tcp_rx_burst__unplaced_one_op_per_call__pages_handed_out_intact),
        cmocka_unit_test(test_tcp_rx_burst__unplaced_seven_ops_per_call__bursts_cross_frame_ends),
        cmocka_unit_test(test_tcp_rx_burst__placement_page_hash_wrong__delivered_placed_for_receiver_to_check),
        cmocka_unit_test(test_tcp_rx_burst__placement_single_page_frame__delivered_unplaced_unchecked),
        cmocka_unit_test(test_tcp_rx_burst__placement_frame_arrives_slowly__pages_placed_intact),
        cmocka_unit_test(test_tcp_rx_burst__pages_frame_arrives_slowly_without_placement__pages_intact),
        cmocka_unit_test(test_tcp_rx_burst__placement_pages_prefix_then_close__fails_truncated),
        cmocka_unit_test(test_tcp_rx_burst__placement_close_mid_pages__fails_truncated),
        cmocka_unit_test(test_tcp_rx_burst__placement_close_mid_prefix__fails_truncated),
        cmocka_unit_test(test_tcp_rx_burst__pages_prefix_then_close_without_placement__fails_truncated),
        cmocka_unit_test(test_tcp_rx_burst__placement_offset_past_region__fails_range_without_writing),
        cmocka_unit_test(test_tcp_rx_burst__placement_pages_stall__fails_timeout),
        cmocka_unit_test(test_tcp_rx_burst__placement_without_receiver_checks__not_used),
        cmocka_unit_test(test_tcp_rx_burst__placement_with_region_size_zero__not_used),
        P1(test_tcp_shutdown__rx_blocked_in_other_thread__returns_cancelled),
        P3(test_tcp_shutdown__all_streams__each_rx_returns_cancelled),
        cmocka_unit_test(test_tcp_shutdown__rx_blocked_mid_placed_pages__returns_cancelled),
        cmocka_unit_test(test_tcp_transport_find__tcp__returns_the_tcp_ops),
    };
#undef P1
#undef P3
    return cmocka_run_group_tests_name("tcp", tests, NULL, NULL);
}
