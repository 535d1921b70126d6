/* Unit tests of the AF_XDP backend (dataplane/transport/xdp.c): its
 * settings, and its XDP program (xdp_redirect.bpf.c, the object embedded in
 * the library) run on crafted frames with BPF_PROG_TEST_RUN, so the parser
 * is checked without any interface.  The program's counters tell a frame it
 * redirected (to a queue without a socket here, so its return value is the
 * XDP_PASS fallback) from one it passed.  Running BPF programs needs root:
 * those tests skip without it; test_xdp.sh covers real traffic. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include "dataplane/transport/xdp.h"
#include "ferry/error.h"
#include "ferry/transport.h"

extern const unsigned char fy_xdp_redirect_obj[];
extern const size_t fy_xdp_redirect_obj_len;

#define PORT 47001

/* ---- settings -------------------------------------------------------------- */

static void open_fails(const char *params, int code)
{
    struct fy_pktio *io = (struct fy_pktio *)1;

    assert_int_equal(fy_pktio_xdp.open(params, 1, true, &io), -code);
    assert_null(io);
    assert_true(strlen(fy_error_detail()) > 0);
}

static void test_xdp__no_dev__config_error(void **state)
{
    (void)state;
    open_fails(NULL, FY_E_CONFIG);
    open_fails("queues=2;window=64", FY_E_CONFIG);
    assert_non_null(strstr(fy_error_detail(), "dev="));
}

static void test_xdp__unknown_choice__invalid(void **state)
{
    (void)state;
    open_fails("dev=lo;xdp_mode=turbo", FY_E_INVAL);
    assert_non_null(strstr(fy_error_detail(), "xdp_mode=turbo"));
    open_fails("dev=lo;bind=fast", FY_E_INVAL);
    open_fails("dev=lo;xdp_attach=tc", FY_E_INVAL);
}

static void test_xdp__zerocopy_on_skb_path__config_error(void **state)
{
    (void)state;
    open_fails("dev=lo;xdp_mode=skb;bind=zerocopy", FY_E_CONFIG);
}

static void test_xdp__unknown_interface__not_found(void **state)
{
    (void)state;
    open_fails("dev=fyx-nonexist", FY_E_NOTFOUND);
    assert_non_null(strstr(fy_error_detail(), "fyx-nonexist"));
}

static void test_xdp__transport__registered(void **state)
{
    (void)state;
    assert_ptr_equal(fy_transport_find("xdp"), &fy_transport_xdp);
    assert_non_null(strstr(fy_transport_names(), "xdp"));
}

/* ---- the XDP program ------------------------------------------------------- */

struct prog {
    struct bpf_object *obj;
    int fd, ports_fd, stats_fd;
};

static int prog_setup(void **state)
{
    static struct prog p;
    uint16_t key = htons(PORT);
    uint8_t one = 1;

    if (geteuid() != 0) {
        *state = NULL;
        return 0;
    }
    p.obj = bpf_object__open_mem(fy_xdp_redirect_obj, fy_xdp_redirect_obj_len, NULL);
    assert_non_null(p.obj);
    assert_int_equal(bpf_object__load(p.obj), 0);
    p.fd = bpf_program__fd(bpf_object__find_program_by_name(p.obj, FY_XDP_PROG_NAME));
    p.ports_fd = bpf_object__find_map_fd_by_name(p.obj, "fy_ports");
    p.stats_fd = bpf_object__find_map_fd_by_name(p.obj, "fy_stats");
    assert_true(p.fd >= 0 && p.ports_fd >= 0 && p.stats_fd >= 0);
    assert_int_equal(bpf_map_update_elem(p.ports_fd, &key, &one, BPF_ANY), 0);
    *state = &p;
    return 0;
}

static int prog_teardown(void **state)
{
    struct prog *p = *state;

    if (p)
        bpf_object__close(p->obj);
    return 0;
}

static uint64_t counter(struct prog *p, uint32_t k)
{
    int ncpu = libbpf_num_possible_cpus();
    uint64_t *v = calloc((size_t)ncpu, sizeof(*v)), sum = 0;

    assert_non_null(v);
    assert_int_equal(bpf_map_lookup_elem(p->stats_fd, &k, v), 0);
    for (int c = 0; c < ncpu; c++)
        sum += v[c];
    free(v);
    return sum;
}

enum verdict { PASSED, REDIRECTED };

/* Runs the program on frame[0..len) and says what it did with it. */
static enum verdict run(struct prog *p, const uint8_t *frame, uint32_t len)
{
    uint64_t red = counter(p, 0), pas = counter(p, 1);
    uint8_t out[256];
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = frame, .data_size_in = len,
                .data_out = out, .data_size_out = sizeof(out), .repeat = 1);

    assert_int_equal(bpf_prog_test_run_opts(p->fd, &o), 0);
    /* No socket on the queue: a redirect falls back to XDP_PASS too. */
    assert_int_equal(o.retval, XDP_PASS);
    if (counter(p, 0) == red + 1 && counter(p, 1) == pas)
        return REDIRECTED;
    assert_int_equal(counter(p, 1), pas + 1);
    return PASSED;
}

/* Ethernet + IPv4 (ihl words) + a UDP or TCP header, 'plen' payload. */
static uint32_t build(uint8_t *f, uint16_t ethertype, uint8_t proto,
                      unsigned ihl, uint16_t frag, uint16_t dport, unsigned plen)
{
    uint8_t *ip = f + 14, *l4 = ip + ihl * 4;
    uint16_t v;

    memset(f, 0, 14 + ihl * 4 + 20 + plen);
    memset(f, 0xff, 6);
    f[6] = 0x02;
    v = htons(ethertype);
    memcpy(f + 12, &v, 2);
    ip[0] = (uint8_t)(0x40 | ihl);
    v = htons((uint16_t)(ihl * 4 + 8 + plen));
    memcpy(ip + 2, &v, 2);
    v = htons(frag);
    memcpy(ip + 6, &v, 2);
    ip[8] = 64;
    ip[9] = proto;
    v = htons(PORT);
    memcpy(l4, &v, 2);
    v = htons(dport);
    memcpy(l4 + 2, &v, 2);
    return 14 + ihl * 4 + 8 + plen;
}

#define NEED_ROOT(state)                                                     \
    do {                                                                     \
        if (!*(state))                                                       \
            skip();                                                          \
    } while (0)

static void test_xdp__udp_to_ferry_port__redirected(void **state)
{
    uint8_t f[128];

    NEED_ROOT(state);
    assert_int_equal(run(*state, f, build(f, 0x0800, 17, 5, 0, PORT, 32)),
                     REDIRECTED);
    /* Don't-fragment is not a fragment. */
    assert_int_equal(run(*state, f, build(f, 0x0800, 17, 5, 0x4000, PORT, 32)),
                     REDIRECTED);
}

static void test_xdp__ip_options__redirected(void **state)
{
    uint8_t f[128];

    NEED_ROOT(state);
    assert_int_equal(run(*state, f, build(f, 0x0800, 17, 7, 0, PORT, 16)),
                     REDIRECTED);
}

static void test_xdp__udp_to_other_port__passed(void **state)
{
    uint8_t f[128];

    NEED_ROOT(state);
    assert_int_equal(run(*state, f, build(f, 0x0800, 17, 5, 0, PORT + 1, 32)),
                     PASSED);
    assert_int_equal(run(*state, f, build(f, 0x0800, 17, 5, 0, 53, 32)), PASSED);
}

static void test_xdp__tcp_to_ferry_port__passed(void **state)
{
    uint8_t f[128];

    NEED_ROOT(state);
    assert_int_equal(run(*state, f, build(f, 0x0800, 6, 5, 0, PORT, 32)), PASSED);
}

static void test_xdp__fragment__passed(void **state)
{
    uint8_t f[128];

    NEED_ROOT(state);
    /* More fragments, then a later fragment (offset 8 bytes). */
    assert_int_equal(run(*state, f, build(f, 0x0800, 17, 5, 0x2000, PORT, 32)),
                     PASSED);
    assert_int_equal(run(*state, f, build(f, 0x0800, 17, 5, 0x0001, PORT, 32)),
                     PASSED);
}

static void test_xdp__not_ipv4__passed(void **state)
{
    uint8_t f[128];

    NEED_ROOT(state);
    assert_int_equal(run(*state, f, build(f, 0x86dd, 17, 5, 0, PORT, 32)), PASSED);
    assert_int_equal(run(*state, f, build(f, 0x0806, 17, 5, 0, PORT, 32)), PASSED);
    assert_int_equal(run(*state, f, build(f, 0x8100, 17, 5, 0, PORT, 32)), PASSED);
}

static void test_xdp__truncated_frame__passed(void **state)
{
    uint8_t f[128];

    NEED_ROOT(state);
    build(f, 0x0800, 17, 5, 0, PORT, 0);
    /* Ethernet only, IPv4 cut short, UDP cut short: never read past the
     * end, never taken. */
    assert_int_equal(run(*state, f, 14), PASSED);
    assert_int_equal(run(*state, f, 14 + 12), PASSED);
    assert_int_equal(run(*state, f, 14 + 20 + 4), PASSED);
    /* An IHL below 5 is not IPv4. */
    build(f, 0x0800, 17, 5, 0, PORT, 32);
    f[14] = 0x44;
    assert_int_equal(run(*state, f, 14 + 20 + 8 + 32), PASSED);
}

int main(void)
{
    const struct CMUnitTest settings[] = {
        cmocka_unit_test(test_xdp__no_dev__config_error),
        cmocka_unit_test(test_xdp__unknown_choice__invalid),
        cmocka_unit_test(test_xdp__zerocopy_on_skb_path__config_error),
        cmocka_unit_test(test_xdp__unknown_interface__not_found),
        cmocka_unit_test(test_xdp__transport__registered),
    };
    const struct CMUnitTest program[] = {
        cmocka_unit_test(test_xdp__udp_to_ferry_port__redirected),
        cmocka_unit_test(test_xdp__ip_options__redirected),
        cmocka_unit_test(test_xdp__udp_to_other_port__passed),
        cmocka_unit_test(test_xdp__tcp_to_ferry_port__passed),
        cmocka_unit_test(test_xdp__fragment__passed),
        cmocka_unit_test(test_xdp__not_ipv4__passed),
        cmocka_unit_test(test_xdp__truncated_frame__passed),
    };
    int failed = cmocka_run_group_tests(settings, NULL, NULL);

    return failed + cmocka_run_group_tests(program, prog_setup, prog_teardown);
}
