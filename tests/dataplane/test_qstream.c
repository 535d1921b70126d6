/* Unit tests of stream mode (dataplane/qstream*.c): the multifd parser on
 * synthetic channels (checked headers, malformed packets refused with clear
 * errors, unknown versions carried raw), and whole runs of both sides over
 * a loopback TCP session between a fake source QEMU and a fake destination
 * QEMU on UNIX sockets, whose bytes must arrive exactly as sent. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "dataplane/qstream_internal.h"
#include "ferry/classifier.h"
#include "ferry/error.h"
#include "ferry/qstream.h"

#define PAGE FY_PAGE_SIZE
#define ALLOC 128u

/* ---- building channels --------------------------------------------------- */

struct bytes {
    uint8_t *p;
    size_t len, cap;
};

static void put(struct bytes *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 4096;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void put_be32(struct bytes *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
                    (uint8_t)v};
    put(b, x, 4);
}

static void put_be64(struct bytes *b, uint64_t v)
{
    put_be32(b, (uint32_t)(v >> 32));
    put_be32(b, (uint32_t)v);
}

static void put_init(struct bytes *b, uint32_t version, uint8_t id)
{
    uint8_t rest[56] = {0};

    put_be32(b, FY_MFD_MAGIC);
    put_be32(b, version);
    memset(rest, 0xab, 16);  /* uuid */
    rest[16] = id;
    put(b, rest, sizeof(rest));
}

/* Fills page content 'cls': 0 is the zero page, others distinct. */
static void fill(uint8_t *pg, unsigned cls)
{
    for (unsigned i = 0; i < PAGE; i++)
        pg[i] = cls ? (uint8_t)(i * 31u + cls * 7u + (i >> 8) * cls) : 0;
    if (cls)
        memcpy(pg, &cls, sizeof(cls));
}

struct pkt_spec {
    uint32_t version, flags, alloc, normal, zero, next;
    uint64_t num;
    const char *ramblock;
    const uint64_t *offs;  /* normal + zero offsets */
    const unsigned *cls;   /* normal page contents; NULL: none */
    size_t payload;        /* compressed: bytes of payload to append */
};

static void put_packet(struct bytes *b, const struct pkt_spec *s)
{
    uint8_t name[256] = {0}, unused[32] = {0};
    uint8_t pg[PAGE];

    put_be32(b, FY_MFD_MAGIC);
    put_be32(b, s->version ? s->version : FY_MFD_VERSION);
    put_be32(b, s->flags);
    put_be32(b, s->alloc ? s->alloc : ALLOC);
    put_be32(b, s->normal);
    put_be32(b, s->next ? s->next : s->normal * PAGE);
    put_be64(b, s->num);
    unused[0] = (uint8_t)(s->zero >> 24);
    unused[1] = (uint8_t)(s->zero >> 16);
    unused[2] = (uint8_t)(s->zero >> 8);
    unused[3] = (uint8_t)s->zero;
    put(b, unused, sizeof(unused));
    if (s->ramblock)
        memcpy(name, s->ramblock, strlen(s->ramblock));
    put(b, name, sizeof(name));
    for (uint32_t i = 0; i < (s->alloc ? s->alloc : ALLOC); i++)
        put_be64(b, i < s->normal + s->zero ? s->offs[i] : 0);
    for (uint32_t i = 0; s->cls && i < s->normal; i++) {
        fill(pg, s->cls[i]);
        put(b, pg, PAGE);
    }
    for (size_t i = 0; i < s->payload; i++) {
        uint8_t x = (uint8_t)(i * 13);
        put(b, &x, 1);
    }
}

/* A packet of n pages at offsets base + i * PAGE of contents cls[i]. */
static void put_simple(struct bytes *b, uint64_t num, const char *rb,
                       uint64_t base, unsigned n, const unsigned *cls)
{
    uint64_t offs[ALLOC];

    for (unsigned i = 0; i < n; i++)
        offs[i] = base + (uint64_t)i * PAGE;
    put_packet(b, &(struct pkt_spec){.num = num, .ramblock = rb, .normal = n,
                                     .offs = offs, .cls = cls});
}

static void put_sync(struct bytes *b, uint64_t num, uint32_t stale_next)
{
    put_packet(b, &(struct pkt_spec){.num = num, .flags = FY_MFD_FLAG_SYNC,
                                     .next = stale_next, .ramblock = ""});
}

/* ---- the parser ---------------------------------------------------------- */

struct items {
    unsigned n_bytes, n_pages, n_header;
    size_t total;
    uint64_t offs[64];
    char rb[64][32];
};

/* Runs the parser over b, handing it at most 'chunk' new bytes at a time
 * (as reads would), and checks that the items cover every byte in order. */
static void parse_all(struct fy_mfd_parser *p, const struct bytes *b,
                      size_t chunk, struct items *out)
{
    size_t have = 0, pos = 0;

    memset(out, 0, sizeof(*out));
    while (pos < b->len) {
        struct fy_mfd_item it;
        size_t need;

        if (have < b->len && (have - pos < PAGE * 2 || have == pos))
            have = have + chunk < b->len ? have + chunk : b->len;
        if (fy_mfd_next(p, b->p + pos, have - pos, &it, &need) == 0) {
            if (have == b->len) {
                fy_mfd_end(p, have - pos);
                out->total += have - pos;
                return;
            }
            have = have + chunk < b->len ? have + chunk : b->len;
            continue;
        }
        assert_true(it.len > 0 && it.len <= have - pos);
        if (it.kind == FY_MFD_PAGE) {
            assert_int_equal(it.len, PAGE);
            if (out->n_pages < 64) {
                out->offs[out->n_pages] = it.offset;
                snprintf(out->rb[out->n_pages], 32, "%s", it.ramblock);
            }
            out->n_pages++;
        } else {
            out->n_bytes++;
            out->n_header += it.header;
        }
        out->total += it.len;
        pos += it.len;
    }
}

static void assert_has(const char *s, const char *needle)
{
    if (!strstr(s, needle))
        fail_msg("\"%s\" lacks \"%s\"", s, needle);
}

static void test_qstream_parse__init_packets_and_sync__every_page_found_in_order(void **state)
{
    struct bytes b = {0};
    unsigned cls[3] = {1, 2, 1};
    size_t chunks[] = {1, 7, 333, 4096, 1 << 20};

    (void)state;
    put_init(&b, 1, 3);
    put_simple(&b, 1, "pc.ram", 0x10000, 3, cls);
    put_sync(&b, 2, 3 * PAGE); /* stale next_packet_size, no data */
    put_simple(&b, 3, "vga.vram", 0x2000, 1, cls);
    for (unsigned k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
        struct fy_mfd_parser p;
        struct items it;

        fy_mfd_parser_init(&p, true);
        parse_all(&p, &b, chunks[k], &it);
        assert_false(p.raw);
        assert_int_equal(it.total, b.len);
        assert_int_equal(it.n_pages, 4);
        assert_int_equal(it.n_header, 4); /* init + 3 packet headers */
        assert_int_equal(it.offs[0], 0x10000);
        assert_int_equal(it.offs[2], 0x10000 + 2 * PAGE);
        assert_string_equal(it.rb[1], "pc.ram");
        assert_string_equal(it.rb[3], "vga.vram");
        assert_int_equal(p.packets, 3);
        assert_int_equal(p.sync_packets, 1);
        assert_int_equal(p.id, 3);
        fy_mfd_parser_fini(&p);
    }
    free(b.p);
}

static void test_qstream_parse__unknown_channel_version__carried_raw_with_reason(void **state)
{
    struct bytes b = {0};
    unsigned cls[1] = {5};
    struct fy_mfd_parser p;
    struct items it;

    (void)state;
    put_init(&b, 2, 0);
    put_simple(&b, 1, "pc.ram", 0, 1, cls);
    fy_mfd_parser_init(&p, true);
    parse_all(&p, &b, 1 << 20, &it);
    assert_true(p.raw);
    assert_has(p.reason, "version 2");
    assert_int_equal(it.n_pages, 0);
    assert_int_equal(it.total, b.len);
    assert_int_equal(p.raw_bytes, b.len);
    fy_mfd_parser_fini(&p);
    free(b.p);
}

static void test_qstream_parse__bad_packet_magic_midway__raw_from_that_packet(void **state)
{
    struct bytes b = {0};
    unsigned cls[2] = {1, 2};
    struct fy_mfd_parser p;
    struct items it;
    size_t bad_at;

    (void)state;
    put_init(&b, 1, 0);
    put_simple(&b, 1, "pc.ram", 0, 2, cls);
    bad_at = b.len;
    put_simple(&b, 2, "pc.ram", 0x4000, 2, cls);
    b.p[bad_at] ^= 0xff;
    fy_mfd_parser_init(&p, true);
    parse_all(&p, &b, 1 << 20, &it);
    assert_true(p.raw);
    assert_has(p.reason, "magic");
    assert_int_equal(it.n_pages, 2);
    assert_int_equal(it.total, b.len);
    assert_int_equal(p.raw_bytes, b.len - bad_at);
    fy_mfd_parser_fini(&p);
    free(b.p);
}

static void test_qstream_parse__compressed_packet__payload_carried_then_parsing_goes_on(void **state)
{
    struct bytes b = {0};
    unsigned cls[1] = {9};
    uint64_t offs[2] = {0, PAGE};
    struct fy_mfd_parser p;
    struct items it;

    (void)state;
    put_init(&b, 1, 0);
    put_packet(&b, &(struct pkt_spec){.num = 1, .flags = 2 /* zlib */,
                                      .ramblock = "pc.ram", .normal = 2,
                                      .next = 777, .offs = offs,
                                      .payload = 777});
    put_simple(&b, 2, "pc.ram", 0x8000, 1, cls);
    fy_mfd_parser_init(&p, true);
    parse_all(&p, &b, 100, &it);
    assert_false(p.raw);
    assert_int_equal(p.compressed_packets, 1);
    assert_int_equal(it.n_pages, 1);
    assert_int_equal(it.offs[0], 0x8000);
    assert_int_equal(it.total, b.len);
    fy_mfd_parser_fini(&p);
    free(b.p);
}

static void test_qstream_parse__zero_pages_listed__counted_without_data(void **state)
{
    struct bytes b = {0};
    unsigned cls[1] = {4};
    uint64_t offs[3] = {0x1000, 0x5000, 0x9000};
    struct fy_mfd_parser p;
    struct items it;

    (void)state;
    put_init(&b, 1, 0);
    put_packet(&b, &(struct pkt_spec){.num = 1, .ramblock = "pc.ram",
                                      .normal = 1, .zero = 2, .offs = offs,
                                      .cls = cls});
    fy_mfd_parser_init(&p, true);
    parse_all(&p, &b, 1 << 20, &it);
    assert_false(p.raw);
    assert_int_equal(p.zero_listed, 2);
    assert_int_equal(it.n_pages, 1);
    assert_int_equal(it.total, b.len);
    fy_mfd_parser_fini(&p);
    free(b.p);
}

static void test_qstream_parse__channel_ends_inside_a_page__rest_raw_and_said(void **state)
{
    struct bytes b = {0};
    unsigned cls[2] = {1, 2};
    struct fy_mfd_parser p;
    struct items it;

    (void)state;
    put_init(&b, 1, 0);
    put_simple(&b, 1, "pc.ram", 0, 2, cls);
    b.len -= 100;
    fy_mfd_parser_init(&p, true);
    parse_all(&p, &b, 1 << 20, &it);
    assert_true(p.raw);
    assert_has(p.reason, "ended inside");
    assert_int_equal(it.total, b.len);
    fy_mfd_parser_fini(&p);
    free(b.p);
}

static void test_qstream_parse__main_channel__raw_without_a_reason(void **state)
{
    struct bytes b = {0};
    struct fy_mfd_parser p;
    struct items it;

    (void)state;
    put(&b, "QEVM\0\0\0\3 device state", 22);
    fy_mfd_parser_init(&p, false);
    parse_all(&p, &b, 5, &it);
    assert_false(p.raw);
    assert_string_equal(p.reason, "");
    assert_int_equal(it.total, b.len);
    fy_mfd_parser_fini(&p);
    free(b.p);
}

/* One malformed header field at a time: the check names what is wrong. */
static void check_bad_packet(const struct pkt_spec *s, int code,
                             const char *needle)
{
    struct bytes b = {0};
    struct fy_mfd_packet pkt;
    size_t need;

    put_packet(&b, s);
    fy_error_clear();
    assert_int_equal(fy_mfd_check_packet(b.p, b.len, &pkt, &need), -code);
    assert_has(fy_error_detail(), needle);
    free(b.p);
}

static void test_qstream_check_packet__wrong_version__fails_version(void **state)
{
    (void)state;
    check_bad_packet(&(struct pkt_spec){.version = 3, .num = 9}, FY_E_VERSION,
                     "version 3");
}

static void test_qstream_check_packet__unknown_flags__fails_proto_naming_them(void **state)
{
    (void)state;
    check_bad_packet(&(struct pkt_spec){.flags = 0x40}, FY_E_PROTO, "0x40");
}

static void test_qstream_check_packet__no_page_slots__fails_proto(void **state)
{
    struct bytes b = {0};
    struct fy_mfd_packet pkt;
    size_t need;

    (void)state;
    put_packet(&b, &(struct pkt_spec){.alloc = 1});
    b.p[12] = b.p[13] = b.p[14] = b.p[15] = 0; /* pages_alloc 0 */
    assert_int_equal(fy_mfd_check_packet(b.p, b.len, &pkt, &need), -FY_E_PROTO);
    assert_has(fy_error_detail(), "pages_alloc 0");
    free(b.p);
}

static void test_qstream_check_packet__more_pages_than_slots__fails_proto(void **state)
{
    uint64_t offs[4] = {0};

    (void)state;
    check_bad_packet(&(struct pkt_spec){.alloc = 2, .normal = 2, .zero = 1,
                                        .ramblock = "pc.ram", .offs = offs},
                     FY_E_PROTO, "do not fit");
}

static void test_qstream_check_packet__misaligned_offset__fails_proto(void **state)
{
    uint64_t offs[1] = {0x1234};

    (void)state;
    check_bad_packet(&(struct pkt_spec){.normal = 1, .ramblock = "pc.ram",
                                        .offs = offs},
                     FY_E_PROTO, "0x1234");
}

static void test_qstream_check_packet__pages_without_ramblock__fails_proto(void **state)
{
    uint64_t offs[1] = {0};

    (void)state;
    check_bad_packet(&(struct pkt_spec){.normal = 1, .offs = offs}, FY_E_PROTO,
                     "no RAM block");
}

static void test_qstream_check_packet__unterminated_ramblock__fails_proto(void **state)
{
    struct bytes b = {0};
    struct fy_mfd_packet pkt;
    size_t need;

    (void)state;
    put_packet(&b, &(struct pkt_spec){.num = 1});
    memset(b.p + 64, 'x', 256);
    assert_int_equal(fy_mfd_check_packet(b.p, b.len, &pkt, &need), -FY_E_PROTO);
    assert_has(fy_error_detail(), "not terminated");
    free(b.p);
}

static void test_qstream_check_packet__header_without_its_offsets__asks_for_them(void **state)
{
    struct bytes b = {0};
    struct fy_mfd_packet pkt;
    size_t need = 0;

    (void)state;
    put_sync(&b, 1, 0);
    assert_int_equal(fy_mfd_check_packet(b.p, 100, &pkt, &need), -FY_E_AGAIN);
    assert_int_equal(fy_mfd_check_packet(b.p, FY_MFD_HDR_SIZE, &pkt, &need),
                     -FY_E_AGAIN);
    assert_int_equal(need, FY_MFD_HDR_SIZE + 8 * ALLOC);
    assert_int_equal(fy_mfd_check_packet(b.p, b.len, &pkt, &need), 0);
    assert_int_equal(pkt.header_len, b.len);
    assert_int_equal(pkt.payload_len, 0);
    free(b.p);
}

static void test_qstream_check_init__wrong_magic__fails_proto(void **state)
{
    struct bytes b = {0};
    struct fy_mfd_init init;

    (void)state;
    put_init(&b, 1, 0);
    b.p[0] = 0;
    assert_int_equal(fy_mfd_check_init(b.p, b.len, &init), -FY_E_PROTO);
    assert_has(fy_error_detail(), "0x00223344");
    free(b.p);
}

/* ---- whole runs over loopback ------------------------------------------- */

#define MAXCH 5

struct run {
    unsigned channels;
    struct bytes in[MAXCH];   /* what the fake source QEMU sends */
    struct bytes out[MAXCH];  /* what the fake destination QEMU got */
    struct bytes rp_in;       /* return path the destination sends */
    struct bytes rp_out;      /* ... and what the source QEMU got */
    char src_path[108], dst_path[108];
    struct fy_dedup *src_dedup, *dst_dedup;
    struct fy_kept *src_keep, *dst_keep;
    struct fy_region *cache;
    bool no_destination;
    int src_rc, dst_rc;
    char src_err[512], dst_err[512];
    struct fy_qstream_stats src_st, dst_st;
    pthread_t fake_src;
    bool fake_src_started;
};

static void *fake_source_main(void *arg)
{
    struct run *r = arg;
    int fds[MAXCH];
    size_t sent[MAXCH] = {0};
    struct sockaddr_un a = {.sun_family = AF_UNIX};

    strcpy(a.sun_path, r->src_path);
    /* Main channel first, as QEMU does. */
    for (unsigned i = 0; i <= r->channels; i++) {
        fds[i] = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(fds[i], (struct sockaddr *)&a, sizeof(a)) < 0) {
            for (unsigned k = 0; k <= i; k++)
                close(fds[k]);
            return NULL;
        }
    }
    for (unsigned left = r->channels + 1; left > 0;) {
        struct pollfd pf[MAXCH];
        left = 0;
        for (unsigned i = 0; i <= r->channels; i++) {
            pf[i] = (struct pollfd){.fd = sent[i] < r->in[i].len ? fds[i] : -1,
                                    .events = POLLOUT};
            left += sent[i] < r->in[i].len;
        }
        if (!left)
            break;
        if (poll(pf, r->channels + 1, 5000) <= 0)
            break;
        for (unsigned i = 0; i <= r->channels; i++) {
            if (!(pf[i].revents & POLLOUT))
                continue;
            size_t n = r->in[i].len - sent[i];
            ssize_t k = send(fds[i], r->in[i].p + sent[i], n > 65536 ? 65536 : n,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            if (k > 0)
                sent[i] += (size_t)k;
            else if (k < 0 && errno != EAGAIN)
                sent[i] = r->in[i].len;
        }
    }
    for (unsigned i = 1; i <= r->channels; i++)
        close(fds[i]);
    shutdown(fds[0], SHUT_WR);
    /* The return path, until the destination is done. */
    for (;;) {
        uint8_t buf[4096];
        struct pollfd pf = {.fd = fds[0], .events = POLLIN};
        if (poll(&pf, 1, 10000) <= 0)
            break;
        ssize_t k = read(fds[0], buf, sizeof(buf));
        if (k <= 0)
            break;
        put(&r->rp_out, buf, (size_t)k);
    }
    close(fds[0]);
    return NULL;
}

static void on_listening(void *ctx)
{
    struct run *r = ctx;

    r->fake_src_started = pthread_create(&r->fake_src, NULL, fake_source_main, r) == 0;
}

/* The destination QEMU: accepts 1 + channels connections, sends the return
 * path on the first, reads everything until each closes. */
struct fake_dst {
    struct run *r;
    int lfd;
    pthread_t tid;
};

static void *fake_dest_main(void *arg)
{
    struct fake_dst *d = arg;
    struct run *r = d->r;
    int fds[MAXCH];
    unsigned n = r->channels + 1, open_ = 0;

    for (unsigned i = 0; i < n; i++) {
        struct pollfd pf = {.fd = d->lfd, .events = POLLIN};
        if (poll(&pf, 1, 10000) <= 0) {
            n = i;
            break;
        }
        fds[i] = accept(d->lfd, NULL, NULL);
    }
    if (n > 0 && r->rp_in.len)
        send(fds[0], r->rp_in.p, r->rp_in.len, MSG_NOSIGNAL);
    open_ = n;
    while (open_ > 0) {
        struct pollfd pf[MAXCH];
        for (unsigned i = 0; i < n; i++)
            pf[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
        if (poll(pf, n, 10000) <= 0)
            break;
        for (unsigned i = 0; i < n; i++) {
            uint8_t buf[65536];
            if (fds[i] < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t k = read(fds[i], buf, sizeof(buf));
            if (k > 0) {
                put(&r->out[i], buf, (size_t)k);
                continue;
            }
            close(fds[i]);
            fds[i] = -1;
            open_--;
        }
    }
    for (unsigned i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return NULL;
}

struct side {
    struct run *r;
    struct fy_session *s;
    pthread_t tid;
};

static void *target_main(void *arg)
{
    struct side *t = arg;
    struct run *r = t->r;
    struct fy_qstream_target_params tp = {
        .connect_path = r->dst_path, .cache = r->cache, .dedup = r->dst_dedup,
        .keep = r->dst_keep, .timeout_ms = 3000};

    r->dst_rc = fy_qstream_target_run(t->s, &tp, &r->dst_st);
    snprintf(r->dst_err, sizeof(r->dst_err), "%s", r->dst_rc ? fy_error_detail() : "");
    return NULL;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    strcpy(a.sun_path, path);
    unlink(path);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    return fd;
}

struct accepter {
    struct fy_listener *l;
    struct fy_session *s;
    int rc;
};

static void *accept_main(void *arg)
{
    struct accepter *a = arg;
    struct fy_accept_params ap = {0};

    a->rc = a->l->ops->accept(a->l, &ap, &a->s);
    return NULL;
}

/* Runs both sides with the fake QEMUs around them. */
static void run_both(struct run *r, uint64_t ram)
{
    struct fy_transport_opts o = {.streams = r->channels + 1, .timeout_ms = 5000};
    struct fy_session_info info = {.region_size = fy_qstream_key_space(ram),
                                   .page_size = PAGE, .caps = FY_CAPS_V1};
    struct fy_listener *l = NULL;
    struct accepter acc;
    struct fake_dst fd = {.r = r};
    struct side tgt = {.r = r};
    struct fy_session *src = NULL;
    pthread_t at;
    static unsigned seq;

    snprintf(r->src_path, sizeof(r->src_path), "/tmp/fy-qs-test-%d-%u-src.sock",
             (int)getpid(), seq);
    snprintf(r->dst_path, sizeof(r->dst_path), "/tmp/fy-qs-test-%d-%u-dst.sock",
             (int)getpid(), seq++);
    assert_int_equal(fy_transport_tcp.listen("127.0.0.1:0", &o, &l), 0);
    acc = (struct accepter){.l = l};
    assert_int_equal(pthread_create(&at, NULL, accept_main, &acc), 0);
    assert_int_equal(fy_transport_tcp.connect(l->addr, &o, &info, &src), 0);
    pthread_join(at, NULL);
    assert_int_equal(acc.rc, 0);
    tgt.s = acc.s;
    if (!r->no_destination) {
        fd.lfd = listen_unix(r->dst_path);
        assert_int_equal(pthread_create(&fd.tid, NULL, fake_dest_main, &fd), 0);
    }
    assert_int_equal(pthread_create(&tgt.tid, NULL, target_main, &tgt), 0);

    struct fy_qstream_source_params sp = {
        .listen_fd = -1, .listen_path = r->src_path, .channels = r->channels,
        .on_listening = on_listening, .ctx = r, .dedup = r->src_dedup,
        .keep = r->src_keep, .timeout_ms = 3000};
    r->src_rc = fy_qstream_source_run(src, &sp, &r->src_st);
    snprintf(r->src_err, sizeof(r->src_err), "%s", r->src_rc ? fy_error_detail() : "");
    if (r->src_rc)
        fy_session_shutdown(acc.s);
    pthread_join(tgt.tid, NULL);
    if (r->fake_src_started)
        pthread_join(r->fake_src, NULL);
    if (!r->no_destination) {
        pthread_join(fd.tid, NULL);
        close(fd.lfd);
        unlink(r->dst_path);
    }
    fy_session_close(src);
    fy_session_close(acc.s);
    fy_transport_tcp.listener_close(l);
}

static void run_free(struct run *r)
{
    for (unsigned i = 0; i < MAXCH; i++) {
        free(r->in[i].p);
        free(r->out[i].p);
    }
    free(r->rp_in.p);
    free(r->rp_out.p);
}

static void assert_same(const struct bytes *a, const struct bytes *b, unsigned ch)
{
    if (a->len != b->len)
        fail_msg("channel %u: %zu bytes sent, %zu arrived", ch, a->len, b->len);
    for (size_t i = 0; i < a->len; i++)
        if (a->p[i] != b->p[i]) {
            size_t pg = i & ~(size_t)(PAGE - 1);
            unsigned x, y;
            memcpy(&x, a->p + i, 4);
            memcpy(&y, b->p + i, 4);
            fail_msg("channel %u: first difference at byte %zu (sent %08x, got %08x; zero page arrived: %d)",
                     ch, i, x, y, fy_page_is_zero(b->p + pg) );
        }
}

static void print_stats(const char *what, const struct fy_qstream_stats *st)
{
    printf("%s: pages %lu sent %lu (uncached %lu) zero %lu dup %lu (shared %lu) "
           "multifd %lu wire %lu\n", what, (unsigned long)st->pages,
           (unsigned long)st->pages_sent, (unsigned long)st->pages_uncached,
           (unsigned long)st->pages_zero, (unsigned long)st->pages_dup,
           (unsigned long)st->pages_dup_shared, (unsigned long)st->multifd_bytes,
           (unsigned long)st->wire_bytes);
}

static void assert_ok(const struct run *r)
{
    if (getenv("QS_VERBOSE"))
        print_stats("source", &r->src_st);
    if (r->src_rc || r->dst_rc)
        fail_msg("source: %d %s / target: %d %s", r->src_rc, r->src_err,
                 r->dst_rc, r->dst_err);
}

/* QEMU-like channels: a main stream and multifd channels whose pages are
 * drawn from 'classes' contents (class 0 is the zero page), at offsets of
 * 'span' pages that come back (later "rounds") with new contents. */
static void make_channels(struct run *r, unsigned channels, unsigned packets,
                          unsigned classes, unsigned span, unsigned seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

    r->channels = channels;
    put(&r->in[0], "QEVM\0\0\0\3", 8);
    for (unsigned i = 0; i < 3000; i++) {
        uint8_t v = (uint8_t)(i * 7 + seed);
        put(&r->in[0], &v, 1);
    }
    for (unsigned c = 1; c <= channels; c++)
        put_init(&r->in[c], 1, (uint8_t)(c - 1));
    for (unsigned k = 0; k < packets; k++) {
        unsigned c = 1 + k % channels;
        unsigned cls[ALLOC];
        uint64_t base;

        x = x * 6364136223846793005ull + 1442695040888963407ull;
        base = (x >> 33) % span * PAGE;
        for (unsigned i = 0; i < 32; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            cls[i] = (unsigned)((x >> 33) % classes);
        }
        put_simple(&r->in[c], k + 1, k % 5 ? "pc.ram" : "vga.vram", base, 32, cls);
        if (k % 17 == 16)
            for (unsigned s = 1; s <= channels; s++)
                put_sync(&r->in[s], 10000 + k, 32 * PAGE);
    }
}

static void test_qstream_run__synthetic_channels__destination_gets_every_byte(void **state)
{
    struct run r = {0};

    (void)state;
    make_channels(&r, 3, 120, 40, 2000, 1);
    put(&r.rp_in, "return path message", 19);
    run_both(&r, 64ull << 20);
    assert_ok(&r);
    for (unsigned i = 0; i <= 3; i++)
        assert_same(&r.in[i], &r.out[i], i);
    assert_same(&r.rp_in, &r.rp_out, 0);
    assert_true(r.src_st.parsed_all);
    assert_true(r.dst_st.parsed_all);
    /* The target checked every channel against the source's sums. */
    assert_true(r.dst_st.verified);
    assert_false(r.src_st.verified);
    assert_int_equal(r.src_st.channels, 3);
    assert_int_equal(r.src_st.pages, 120 * 32);
    assert_true(r.src_st.pages_zero > 0);
    assert_true(r.src_st.pages_dup > 0);
    assert_int_equal(r.src_st.pages_sent + r.src_st.pages_zero + r.src_st.pages_dup,
                     r.src_st.pages);
    /* Both sides count the same pages. */
    assert_int_equal(r.dst_st.pages_zero, r.src_st.pages_zero);
    assert_int_equal(r.dst_st.pages_dup, r.src_st.pages_dup);
    assert_int_equal(r.dst_st.pages_sent, r.src_st.pages_sent);
    assert_int_equal(r.dst_st.pages_uncached, r.src_st.pages_uncached);
    assert_int_equal(r.src_st.return_bytes, 19);
    assert_int_equal(r.src_st.main_bytes, r.in[0].len);
    /* 40 contents over 3840 pages: the link carries a fraction of them. */
    assert_true(r.src_st.wire_bytes < r.src_st.multifd_bytes / 2);
    run_free(&r);
}

/* Few contents, many channels, offsets that come back on other channels:
 * what the rules about acknowledgements guard.  A REF resolved against the
 * wrong bytes fails the target (VERIFY); the output must be exact. */
static void test_qstream_run__duplicates_across_channels__every_reference_resolves(void **state)
{
    (void)state;
    for (unsigned seed = 1; seed <= 3; seed++) {
        struct run r = {0};

        make_channels(&r, 4, 400, 6, 64, seed);
        run_both(&r, 64ull << 20);
        assert_ok(&r);
        for (unsigned i = 0; i <= 4; i++)
            assert_same(&r.in[i], &r.out[i], i);
        assert_true(r.src_st.pages_dup > r.src_st.pages / 2);
        run_free(&r);
    }
}

static void test_qstream_run__unknown_version_channel__carried_unchanged_and_reported(void **state)
{
    struct run r = {0};
    unsigned cls[4] = {1, 1, 2, 0};

    (void)state;
    r.channels = 2;
    put(&r.in[0], "QEVM\0\0\0\3rest", 12);
    put_init(&r.in[1], 1, 0);
    put_simple(&r.in[1], 1, "pc.ram", 0, 4, cls);
    put_init(&r.in[2], 7, 1);
    put_simple(&r.in[2], 2, "pc.ram", 0x10000, 4, cls);
    run_both(&r, 16ull << 20);
    assert_ok(&r);
    for (unsigned i = 0; i <= 2; i++)
        assert_same(&r.in[i], &r.out[i], i);
    assert_false(r.src_st.parsed_all);
    assert_has(r.src_st.unparsed, "channel 2");
    assert_has(r.src_st.unparsed, "version 7");
    assert_false(r.dst_st.parsed_all);
    assert_has(r.dst_st.unparsed, "version 7");
    assert_true(r.dst_st.verified); /* raw channels are summed too */
    assert_int_equal(r.src_st.raw_bytes, r.in[2].len);
    assert_int_equal(r.src_st.pages, 4);
    run_free(&r);
}

static void test_qstream_run__second_vm_to_same_host__sends_cross_vm_references(void **state)
{
    struct fy_dedup *sd = fy_dedup_create(1 << 16), *td = fy_dedup_create(1 << 16);
    struct fy_kept sk = {.space = -1}, tk = {.space = -1};
    struct fy_region *cache = NULL;
    uint64_t ram = 16ull << 20;

    (void)state;
    assert_non_null(sd);
    assert_non_null(td);
    assert_int_equal(fy_region_create_memfd("qs-test-cache", fy_qstream_key_space(ram),
                                            &cache), 0);
    {
        struct run a = {.src_dedup = sd, .dst_dedup = td, .src_keep = &sk,
                        .dst_keep = &tk, .cache = cache};
        make_channels(&a, 2, 40, 500, 1000, 5);
        run_both(&a, ram);
        assert_ok(&a);
        assert_int_equal(a.src_st.pages_dup_shared, 0);
        assert_non_null(sk.map);
        assert_non_null(tk.map);
        run_free(&a);
    }
    {
        /* The same guest image again: its contents are at the target. */
        struct run b = {.src_dedup = sd, .dst_dedup = td};
        make_channels(&b, 2, 40, 500, 1000, 5);
        run_both(&b, ram);
        assert_ok(&b);
        for (unsigned i = 0; i <= 2; i++)
            assert_same(&b.in[i], &b.out[i], i);
        assert_true(b.src_st.pages_dup_shared > 0);
        assert_int_equal(b.dst_st.pages_dup_shared, b.src_st.pages_dup_shared);
        /* All but what the first run did not keep: pages sent outside
         * its cache, and contents its cache later overwrote. */
        assert_true(b.src_st.pages_dup_shared > b.src_st.pages * 3 / 4);
        assert_true(b.src_st.pages_sent < b.src_st.pages / 8);
        run_free(&b);
    }
    fy_kept_release(sd, &sk);
    fy_kept_release(td, &tk);
    fy_region_close(cache);
    fy_dedup_destroy(sd);
    fy_dedup_destroy(td);
}

static void test_qstream_run__no_destination_qemu__both_sides_fail_and_say_why(void **state)
{
    struct run r = {.no_destination = true};

    (void)state;
    make_channels(&r, 2, 10, 5, 100, 1);
    run_both(&r, 16ull << 20);
    assert_int_equal(r.dst_rc, -FY_E_SYS);
    assert_has(r.dst_err, "destination QEMU");
    assert_true(r.src_rc < 0);
    assert_has(r.src_err, "target");
    run_free(&r);
}

static void test_qstream_run__transport_without_data__refused_unsupported(void **state)
{
    struct fy_transport_opts o = {.streams = 2, .timeout_ms = 5000};
    struct fy_session_info info = {.region_size = fy_qstream_key_space(1 << 20),
                                   .page_size = PAGE, .caps = FY_CAPS_V1};
    struct fy_transport_ops no_data = fy_transport_tcp;
    struct fy_qstream_source_params sp = {.listen_fd = -1, .listen_path = "/nonexistent/x",
                                          .channels = 1};
    struct fy_qstream_target_params tp = {.connect_path = "/nonexistent/y"};
    struct fy_listener *l = NULL;
    struct fy_session *src = NULL;
    struct accepter acc;
    pthread_t at;

    (void)state;
    no_data.data_max = 0;
    no_data.name = "nodata";
    assert_int_equal(fy_transport_tcp.listen("127.0.0.1:0", &o, &l), 0);
    acc = (struct accepter){.l = l};
    assert_int_equal(pthread_create(&at, NULL, accept_main, &acc), 0);
    assert_int_equal(fy_transport_tcp.connect(l->addr, &o, &info, &src), 0);
    pthread_join(at, NULL);
    assert_int_equal(acc.rc, 0);
    src->ops = &no_data;
    acc.s->ops = &no_data;
    assert_int_equal(fy_qstream_source_run(src, &sp, NULL), -FY_E_UNSUPPORTED);
    assert_has(fy_error_detail(), "nodata");
    assert_int_equal(fy_qstream_target_run(acc.s, &tp, NULL), -FY_E_UNSUPPORTED);
    fy_session_close(src);
    fy_session_close(acc.s);
    fy_transport_tcp.listener_close(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qstream_parse__init_packets_and_sync__every_page_found_in_order),
        cmocka_unit_test(test_qstream_parse__unknown_channel_version__carried_raw_with_reason),
        cmocka_unit_test(test_qstream_parse__bad_packet_magic_midway__raw_from_that_packet),
        cmocka_unit_test(test_qstream_parse__compressed_packet__payload_carried_then_parsing_goes_on),
        cmocka_unit_test(test_qstream_parse__zero_pages_listed__counted_without_data),
        cmocka_unit_test(test_qstream_parse__channel_ends_inside_a_page__rest_raw_and_said),
        cmocka_unit_test(test_qstream_parse__main_channel__raw_without_a_reason),
        cmocka_unit_test(test_qstream_check_packet__wrong_version__fails_version),
        cmocka_unit_test(test_qstream_check_packet__unknown_flags__fails_proto_naming_them),
        cmocka_unit_test(test_qstream_check_packet__no_page_slots__fails_proto),
        cmocka_unit_test(test_qstream_check_packet__more_pages_than_slots__fails_proto),
        cmocka_unit_test(test_qstream_check_packet__misaligned_offset__fails_proto),
        cmocka_unit_test(test_qstream_check_packet__pages_without_ramblock__fails_proto),
        cmocka_unit_test(test_qstream_check_packet__unterminated_ramblock__fails_proto),
        cmocka_unit_test(test_qstream_check_packet__header_without_its_offsets__asks_for_them),
        cmocka_unit_test(test_qstream_check_init__wrong_magic__fails_proto),
        cmocka_unit_test(test_qstream_run__synthetic_channels__destination_gets_every_byte),
        cmocka_unit_test(test_qstream_run__duplicates_across_channels__every_reference_resolves),
        cmocka_unit_test(test_qstream_run__unknown_version_channel__carried_unchanged_and_reported),
        cmocka_unit_test(test_qstream_run__second_vm_to_same_host__sends_cross_vm_references),
        cmocka_unit_test(test_qstream_run__no_destination_qemu__both_sides_fail_and_say_why),
        cmocka_unit_test(test_qstream_run__transport_without_data__refused_unsupported),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
