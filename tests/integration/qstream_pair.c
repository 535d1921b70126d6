/* qstream_pair: both sides of a stream-mode migration in one process, over
 * a loopback TCP session, between a source QEMU and a destination QEMU on
 * this host (tests/integration/test_qstream_qemu.sh drives it).
 *
 *   qstream_pair SRC_SOCK DST_SOCK CHANNELS RAM_MIB
 *
 * Listens on SRC_SOCK (the source QEMU migrates to unix:SRC_SOCK), prints
 * "listening" on stdout once it does, connects to the destination QEMU's
 * incoming socket DST_SOCK, and when both sides are done prints one line of
 * key=value statistics per side and exits 0 (1 on failure, with the
 * reason on stderr). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/error.h"
#include "ferry/qstream.h"
#include "ferry/transport.h"

struct target {
    struct fy_listener *l;
    const char *dst_sock;
    struct fy_session *s;
    struct fy_qstream_stats st;
    int rc;
    char err[512];
};

static void *target_main(void *arg)
{
    struct target *t = arg;
    struct fy_accept_params ap = {0};
    struct fy_qstream_target_params tp = {.connect_path = t->dst_sock};

    t->rc = t->l->ops->accept(t->l, &ap, &t->s);
    if (t->rc == 0)
        t->rc = fy_qstream_target_run(t->s, &tp, &t->st);
    if (t->rc)
        snprintf(t->err, sizeof(t->err), "%s", fy_error_detail());
    return NULL;
}

static void on_listening(void *ctx)
{
    (void)ctx;
    printf("listening\n");
    fflush(stdout);
}

static void print_stats(const char *side, const struct fy_qstream_stats *st)
{
    printf("%s channels=%u parsed_all=%d main_bytes=%llu return_bytes=%llu "
           "multifd_bytes=%llu raw_bytes=%llu packets=%llu pages=%llu "
           "pages_sent=%llu pages_uncached=%llu pages_zero=%llu pages_dup=%llu "
           "pages_dup_shared=%llu qemu_zero_pages=%llu wire_bytes=%llu "
           "seconds=%.2f verified=%d\n",
           side, st->channels, st->parsed_all,
           (unsigned long long)st->main_bytes,
           (unsigned long long)st->return_bytes,
           (unsigned long long)st->multifd_bytes,
           (unsigned long long)st->raw_bytes, (unsigned long long)st->packets,
           (unsigned long long)st->pages, (unsigned long long)st->pages_sent,
           (unsigned long long)st->pages_uncached,
           (unsigned long long)st->pages_zero,
           (unsigned long long)st->pages_dup,
           (unsigned long long)st->pages_dup_shared,
           (unsigned long long)st->qemu_zero_pages,
           (unsigned long long)st->wire_bytes, st->seconds, st->verified);
    if (!st->parsed_all)
        printf("%s unparsed: %s\n", side, st->unparsed);
}

int main(int argc, char **argv)
{
    struct fy_transport_opts o = {.timeout_ms = 60000};
    struct fy_session_info info = {.page_size = FY_PAGE_SIZE, .caps = FY_CAPS_V1};
    struct fy_qstream_source_params sp = {.listen_fd = -1, .on_listening = on_listening,
                                          .timeout_ms = 60000};
    struct fy_qstream_stats st;
    struct target t = {0};
    struct fy_session *s = NULL;
    pthread_t tid;
    int rc;

    if (argc != 5) {
        fprintf(stderr, "usage: %s SRC_SOCK DST_SOCK CHANNELS RAM_MIB\n", argv[0]);
        return 2;
    }
    sp.listen_path = argv[1];
    t.dst_sock = argv[2];
    sp.channels = (unsigned)atoi(argv[3]);
    info.region_size = fy_qstream_key_space((uint64_t)atoi(argv[4]) << 20);
    o.streams = sp.channels + 1;
    if ((rc = fy_transport_tcp.listen("127.0.0.1:0", &o, &t.l)) < 0 ||
        pthread_create(&tid, NULL, target_main, &t) != 0) {
        fprintf(stderr, "qstream_pair: %s\n", fy_error_detail());
        return 1;
    }
    rc = fy_transport_tcp.connect(t.l->addr, &o, &info, &s);
    if (rc == 0)
        rc = fy_qstream_source_run(s, &sp, &st);
    if (rc < 0) {
        fprintf(stderr, "qstream_pair: source: %s\n", fy_error_detail());
        if (t.s)
            fy_session_shutdown(t.s);
    }
    pthread_join(tid, NULL);
    if (t.rc)
        fprintf(stderr, "qstream_pair: target: %s\n", t.err);
    if (rc == 0)
        print_stats("source", &st);
    if (t.rc == 0)
        print_stats("target", &t.st);
    fflush(stdout);
    fy_session_close(s);
    fy_session_close(t.s);
    fy_transport_tcp.listener_close(t.l);
    return rc || t.rc ? 1 : 0;
}
