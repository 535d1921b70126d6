/* Unit tests of dataplane/transport/tcp.c over 127.0.0.1: sessions of one
 * and several streams, every operation type, wire byte counts, refused
 * handshakes, and broken or hostile peers built from raw sockets. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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

#define REGION_PAGES 64u
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
 * handshake; the accepted session is returned in *dst. */
static int raw_source(struct fy_listener *l, struct fy_session **dst)
{
    struct fy_session_info info = session_info(REGION_SIZE), peer;
    uint8_t hello[FY_FRAME_HDR_SIZE + FY_HELLO_PAYLOAD_SIZE];
    struct acceptor a;
    uint32_t idx;
    size_t flen;
    bool ack;
    int fd, n;

    acceptor_start(&a, l, REGION_SIZE);
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
        assert_int_equal(got->len, want->len);
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

static int pair_setup_n(void **state, unsigned streams)
{
    struct pair *p = calloc(1, sizeof(*p));
    struct acceptor a;

    if (!p)
        return -1;
    p->l = listen_local(TIMEOUT_MS);
    acceptor_start(&a, p->l, REGION_SIZE);
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

    fy_session_close(p->src);
    fy_session_close(p->dst);
    tcp->listener_close(p->l);
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
        P1(test_tcp_shutdown__rx_blocked_in_other_thread__returns_cancelled),
        P3(test_tcp_shutdown__all_streams__each_rx_returns_cancelled),
        cmocka_unit_test(test_tcp_transport_find__tcp__returns_the_tcp_ops),
    };
#undef P1
#undef P3
    return cmocka_run_group_tests_name("tcp", tests, NULL, NULL);
}
