/* Integration: the DPDK packet backend on its own (dataplane/transport/
 * dpdk.c, no packet core): two processes open the two ends of a net_memif
 * link and exchange frames through struct fy_pktio_ops, with and without
 * external buffers, on one queue and on three, sending one packet several
 * times; and bad settings are refused with messages that say what to do.
 *
 * Every DPDK call runs in a forked child: the EAL is set up once per
 * process, and a process forked after that could not set up its own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "dataplane/transport/pkt.h"
#include "ferry/error.h"
#include "ferry/transport.h"

extern const struct fy_pktio_ops fy_pktio_dpdk;

#define FRAMES 20000
#define RESENDS 3
#define EXT_LEN 4096
#define HDR_LEN 64

static char dir[] = "/tmp/ferry-dpdk-port-XXXXXX";
static char sock[256];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Frame i: its number, then a pattern that depends on it. */
static void fill(uint8_t *p, unsigned len, uint32_t i)
{
    memcpy(p, &i, 4);
    for (unsigned k = 4; k < len; k++)
        p[k] = (uint8_t)(i * 31 + k);
}

static bool check(const uint8_t *p, unsigned len, uint32_t *num)
{
    uint32_t i;
    memcpy(&i, p, 4);
    for (unsigned k = 4; k < len; k++)
        if (p[k] != (uint8_t)(i * 31 + k))
            return false;
    *num = i;
    return true;
}

static char params[512];

static unsigned nqueues = 1;

static void set_params(unsigned queues, const char *extra)
{
    nqueues = queues;
    snprintf(params, sizeof(params), "dev=net_memif0,socket=%s;mem=128;mbufs=4096%s%s",
             sock, extra[0] ? ";" : "", extra);
}

/* The receiving end: counts frames until it has 'expect' or 10 s pass;
 * the exit status says what went wrong. */
static int receiver(unsigned expect, int ready_fd)
{
    struct fy_pktio *io;
    struct fy_pktio_info info;
    struct fy_pkt *pk[64];
    unsigned got = 0, bad = 0;
    double t0;

    if (fy_pktio_dpdk.open(params, nqueues, true, &io) < 0) {
        fprintf(stderr, "receiver: %s\n", fy_error_detail());
        return 10;
    }
    fy_pktio_dpdk.info(io, &info);
    printf("# receiver: %s\n", info.mode);
    if (write(ready_fd, "r", 1) != 1)
        return 11;
    t0 = now();
    while (got < expect && now() - t0 < 10) {
        for (unsigned q = 0; q < nqueues; q++) {
            int n = fy_pktio_dpdk.rx(io, q, pk, 64);
            for (int i = 0; i < n; i++) {
                uint32_t num;
                /* Frame i went out on queue i % nqueues, and a memif
                 * queue pair is a ring pair: it arrives on that queue. */
                if (pk[i]->queue != q || !check(pk[i]->data, pk[i]->len, &num) ||
                    (num != 7 && num % nqueues != q))
                    bad++;
                got++;
            }
            if (n > 0)
                fy_pktio_dpdk.free(io, pk, (unsigned)n);
        }
    }
    printf("# receiver: %u frames (%u bad) in %.3f s\n", got, bad, now() - t0);
    fy_pktio_dpdk.close(io);
    return got == expect && bad == 0 ? 0 : 12;
}

static void run_pair(bool ext)
{
    struct fy_pktio *io;
    struct fy_pktio_info info;
    unsigned expect = FRAMES + RESENDS;
    int pfd[2], status;
    char c;
    pid_t pid;

    assert_int_equal(pipe(pfd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        fflush(stdout);
        exit(receiver(expect, pfd[1]));
    }
    close(pfd[1]);
    assert_int_equal(read(pfd[0], &c, 1), 1);
    close(pfd[0]);

    /* The sender is another child too: this process never starts DPDK. */
    pid_t spid = fork();
    assert_true(spid >= 0);
    if (spid == 0) {
        static uint8_t payload[EXT_LEN * 64];
        struct fy_pkt *pk[64];
        unsigned sent = 0;
        double t0;
        int rc = 0;

        if (fy_pktio_dpdk.open(params, nqueues, false, &io) < 0) {
            fprintf(stderr, "sender: %s\n", fy_error_detail());
            exit(20);
        }
        fy_pktio_dpdk.info(io, &info);
        printf("# sender: %s\n", info.mode);
        if (info.mtu != 9000 || info.queues != nqueues || info.extbuf != ext) {
            fprintf(stderr, "sender: mtu %u queues %u extbuf %d\n", info.mtu,
                    info.queues, info.extbuf);
            exit(21);
        }
        t0 = now();
        /* Frames base..base+64*nq-1 in each pass: queue q sends those
         * whose number is q modulo nq. */
        for (unsigned base = 0; base < FRAMES && now() - t0 < 10; base += 64 * nqueues) {
            for (unsigned q = 0; q < nqueues; q++) {
                unsigned want = 0;
                while (want < 64 && base + q + want * nqueues < FRAMES)
                    want++;
                int n = want ? fy_pktio_dpdk.alloc(io, q, pk, want) : 0;
                for (int i = 0; i < n; i++) {
                    uint32_t num = base + q + (unsigned)i * nqueues;
                    pk[i]->queue = (uint16_t)q;
                    if (ext) {
                        /* The frame is the header in the mbuf, then the
                         * payload in place; the pattern runs across both. */
                        uint8_t whole[HDR_LEN + EXT_LEN];
                        fill(whole, sizeof(whole), num);
                        memcpy(pk[i]->data, whole, HDR_LEN);
                        memcpy(payload + (size_t)i * EXT_LEN, whole + HDR_LEN, EXT_LEN);
                        pk[i]->len = HDR_LEN;
                        pk[i]->ext = payload + (size_t)i * EXT_LEN;
                        pk[i]->ext_len = EXT_LEN;
                    } else {
                        fill(pk[i]->data, HDR_LEN + EXT_LEN, num);
                        pk[i]->len = HDR_LEN + EXT_LEN;
                    }
                }
                int k = 0;
                while (k < n && now() - t0 < 10)
                    k += fy_pktio_dpdk.tx(io, q, pk + k, (unsigned)(n - k));
                /* The core's references: sent packets are freed by it. */
                if (n > 0)
                    fy_pktio_dpdk.free(io, pk, (unsigned)n);
                sent += (unsigned)k;
            }
        }
        printf("# sender: %u frames in %.3f s (%.2f Gbit/s of frames)\n", sent,
               now() - t0,
               (double)sent * (HDR_LEN + EXT_LEN) * 8 / (now() - t0) / 1e9);
        /* One packet sent RESENDS times: the backend's reference for the
         * NIC leaves the core's intact. */
        if (fy_pktio_dpdk.alloc(io, 0, pk, 1) != 1)
            exit(22);
        pk[0]->queue = 0;
        fill(pk[0]->data, HDR_LEN, 7);
        pk[0]->len = HDR_LEN;
        for (unsigned r = 0; r < RESENDS; r++) {
            while (fy_pktio_dpdk.tx(io, 0, pk, 1) != 1 && now() - t0 < 12)
                ;
            if (pk[0]->len != HDR_LEN)
                rc = 23;
        }
        fy_pktio_dpdk.free(io, pk, 1);
        /* Let the receiver drain before the link goes. */
        usleep(500000);
        fy_pktio_dpdk.close(io);
        fflush(stdout);
        exit(sent == FRAMES ? rc : 24);
    }
    assert_int_equal(waitpid(spid, &status, 0), spid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_dpdk_port__memif_two_processes_copying__frames_arrive_intact(void **state)
{
    (void)state;
    set_params(1, "extbuf=off");
    run_pair(false);
}

static void test_dpdk_port__memif_two_processes_external_buffers__frames_arrive_intact(void **state)
{
    (void)state;
    set_params(1, "");
    run_pair(true);
}

static void test_dpdk_port__memif_three_queues__each_frame_arrives_on_its_queue(void **state)
{
    (void)state;
    set_params(3, "");
    run_pair(true);
}

/* Opens 'p' in a child and passes the error message back. */
static int open_error(const char *p, bool listener, char *msg, size_t cap)
{
    int pfd[2], status;
    ssize_t n;
    pid_t pid;

    if (pipe(pfd) != 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        struct fy_pktio *io;
        int rc = fy_pktio_dpdk.open(p, 1, listener, &io);
        const char *d = rc < 0 ? fy_error_detail() : "opened";
        if (write(pfd[1], d, strlen(d)) < 0)
            exit(2);
        if (rc == 0)
            fy_pktio_dpdk.close(io);
        exit(rc < 0 ? 1 : 0);
    }
    close(pfd[1]);
    n = read(pfd[0], msg, cap - 1);
    msg[n > 0 ? n : 0] = '\0';
    close(pfd[0]);
    waitpid(pid, &status, 0);
    printf("# %s -> %s\n", p, msg);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_dpdk_port__unknown_pmd__error_names_it_and_the_known_ones(void **state)
{
    char msg[1024];
    (void)state;
    assert_int_equal(open_error("dev=net_nosuch0;mem=64", true, msg, sizeof(msg)), 1);
    assert_non_null(strstr(msg, "net_nosuch0"));
    assert_non_null(strstr(msg, "no such PMD"));
    assert_non_null(strstr(msg, "net_memif"));
}

static void test_dpdk_port__memif_without_socket__error_asks_for_one(void **state)
{
    char msg[1024];
    (void)state;
    assert_int_equal(open_error("dev=net_memif0;mem=64", true, msg, sizeof(msg)), 1);
    assert_non_null(strstr(msg, "socket=PATH"));
}

static void test_dpdk_port__memif_client_without_server__error_says_start_it_first(void **state)
{
    char p[512], msg[1024];
    (void)state;
    snprintf(p, sizeof(p), "dev=net_memif0,socket=%s/nobody.sock;mem=64", dir);
    assert_int_equal(open_error(p, false, msg, sizeof(msg)), 1);
    assert_non_null(strstr(msg, "no memif server"));
    assert_non_null(strstr(msg, "start the listening side first"));
}

static void test_dpdk_port__no_port_named__error_shows_both_forms(void **state)
{
    char msg[1024];
    (void)state;
    assert_int_equal(open_error("mem=64", true, msg, sizeof(msg)), 1);
    assert_non_null(strstr(msg, "dev=VDEV"));
    assert_non_null(strstr(msg, "pci=BDF"));
}

static void test_dpdk_port__bad_number__error_gives_the_range(void **state)
{
    char msg[1024];
    (void)state;
    assert_int_equal(open_error("dev=net_memif0,socket=/tmp/x.sock;mtu=99999", true, msg,
                                sizeof(msg)), 1);
    assert_non_null(strstr(msg, "mtu=99999"));
    assert_non_null(strstr(msg, "576..9600"));
}

/* Through the transport (the packet core opens the port): the backend's
 * message reaches the caller of listen and of connect. */
static void test_dpdk_port__bad_params_through_the_transport__listen_and_connect_give_the_port_message(void **state)
{
    int pfd[2], status;
    char msg[2048];
    ssize_t n;
    pid_t pid;

    (void)state;
    assert_int_equal(pipe(pfd), 0);
    pid = fork();
    if (pid == 0) {
        const struct fy_transport_ops *t = fy_transport_find("dpdk");
        struct fy_transport_opts o = {.params = "dev=net_nosuch0;ip=10.77.9.1;mem=64",
                                      .timeout_ms = 2000};
        struct fy_session_info info = {.region_size = 1 << 20, .caps = FY_CAPS_V1};
        struct fy_listener *l = NULL;
        struct fy_session *s = NULL;
        char both[2048];
        if (!t || t->listen("10.77.9.1:0", &o, &l) == 0)
            exit(2);
        snprintf(both, sizeof(both), "listen: %s", fy_error_detail());
        o.params = "dev=net_memif0;ip=10.77.9.2;mem=64";
        if (t->connect("10.77.9.1:47000", &o, &info, &s) == 0)
            exit(3);
        snprintf(both + strlen(both), sizeof(both) - strlen(both), " | connect: %s",
                 fy_error_detail());
        if (write(pfd[1], both, strlen(both)) < 0)
            exit(4);
        exit(0);
    }
    close(pfd[1]);
    n = read(pfd[0], msg, sizeof(msg) - 1);
    msg[n > 0 ? n : 0] = '\0';
    close(pfd[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    printf("# %s\n", msg);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_non_null(strstr(msg, "listen: "));
    assert_non_null(strstr(msg, "no such PMD"));
    assert_non_null(strstr(msg, "connect: "));
    assert_non_null(strstr(msg, "socket=PATH"));
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(sock, sizeof(sock), "%s/memif.sock", dir);
    return 0;
}

static int teardown(void **state)
{
    char cmd[300];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dpdk_port__memif_two_processes_copying__frames_arrive_intact),
        cmocka_unit_test(test_dpdk_port__memif_two_processes_external_buffers__frames_arrive_intact),
        cmocka_unit_test(test_dpdk_port__memif_three_queues__each_frame_arrives_on_its_queue),
        cmocka_unit_test(test_dpdk_port__unknown_pmd__error_names_it_and_the_known_ones),
        cmocka_unit_test(test_dpdk_port__memif_without_socket__error_asks_for_one),
        cmocka_unit_test(test_dpdk_port__memif_client_without_server__error_says_start_it_first),
        cmocka_unit_test(test_dpdk_port__no_port_named__error_shows_both_forms),
        cmocka_unit_test(test_dpdk_port__bad_number__error_gives_the_range),
        cmocka_unit_test(test_dpdk_port__bad_params_through_the_transport__listen_and_connect_give_the_port_message),
    };
    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests(tests, setup, teardown);
}
