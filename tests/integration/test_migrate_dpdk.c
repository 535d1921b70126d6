/* Integration: a 1 GiB region migrates over the DPDK transport between two
 * processes joined by a net_memif link while a writer dirties it; the
 * digests must match and the regions end byte-identical.  Then the same
 * through the lossy-link harness dropping, reordering and duplicating 1 %
 * of the frames each way: it must still complete and verify, having really
 * repaired loss.
 *
 * Hugepages: the test reserves 2 MiB pages itself when it can (and gives
 * the count back afterwards), else it runs DPDK with --no-huge; it says
 * which.  FERRY_TEST_HUGE=off forces --no-huge. */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "ferry/error.h"
#include "perf/bench.h"

#define NR_HUGE "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
#define FREE_HUGE "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"
/* Per process: the EAL's mem= in MiB; two processes. */
#define MEM_MB 256
#define PAGES_NEEDED (2 * MEM_MB / 2 + 8)

static long huge_before = -1; /* nr_hugepages to restore, -1: untouched */
static char params[128];

static long read_long(const char *path)
{
    FILE *f = fopen(path, "r");
    long v = -1;

    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

static bool write_long(const char *path, long v)
{
    FILE *f = fopen(path, "w");
    bool ok;

    if (!f)
        return false;
    ok = fprintf(f, "%ld\n", v) > 0;
    return fclose(f) == 0 && ok;
}

/* Reserves enough free 2 MiB pages for both processes, if it can. */
static bool hugepages_reserve(void)
{
    const char *force = getenv("FERRY_TEST_HUGE");
    long nr = read_long(NR_HUGE), fr = read_long(FREE_HUGE);

    if (force && !strcmp(force, "off")) {
        printf("# hugepages: FERRY_TEST_HUGE=off, DPDK runs --no-huge\n");
        return false;
    }
    if (nr < 0 || fr < 0) {
        printf("# hugepages: %s unreadable, DPDK runs --no-huge\n", NR_HUGE);
        return false;
    }
    if (fr >= PAGES_NEEDED) {
        printf("# hugepages: %ld free 2 MiB pages already, DPDK uses them\n", fr);
        return true;
    }
    if (!write_long(NR_HUGE, nr + (PAGES_NEEDED - fr))) {
        printf("# hugepages: cannot write %s (not root?), DPDK runs --no-huge\n", NR_HUGE);
        return false;
    }
    huge_before = nr;
    fr = read_long(FREE_HUGE);
    if (fr < PAGES_NEEDED) {
        /* Memory too fragmented for the kernel to find them. */
        printf("# hugepages: asked for %d, the kernel has %ld free; DPDK runs "
               "--no-huge\n", PAGES_NEEDED, fr);
        write_long(NR_HUGE, huge_before);
        huge_before = -1;
        return false;
    }
    printf("# hugepages: nr_hugepages %ld -> %ld (%ld free for DPDK), restored after\n",
           nr, read_long(NR_HUGE), fr);
    return true;
}

/* A test stopped by its timeout (SIGTERM) or ^C gives the pages back too. */
static void on_signal(int sig)
{
    char buf[32];
    int n;

    if (huge_before >= 0) {
        int fd = open(NR_HUGE, O_WRONLY);
        n = snprintf(buf, sizeof(buf), "%ld\n", huge_before);
        if (fd >= 0) {
            if (write(fd, buf, (size_t)n) != n)
                n = 0;
            close(fd);
        }
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static int setup(void **state)
{
    bool huge;

    (void)state;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    huge = hugepages_reserve();
    snprintf(params, sizeof(params), "mem=%d;huge=%s", MEM_MB, huge ? "on" : "off");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (huge_before >= 0) {
        if (!write_long(NR_HUGE, huge_before))
            printf("# hugepages: could not restore nr_hugepages to %ld\n", huge_before);
        else
            printf("# hugepages: nr_hugepages restored to %ld\n", huge_before);
        huge_before = -1;
    }
    return 0;
}

static void report(const char *name, const struct fy_pipeline_cfg *cfg,
                   const struct fy_pipeline_result *r)
{
    const struct fy_migration_stats *m = &r->src;
    printf("# %s: %llu MiB, %u streams, %u rounds, %.3f s (%.2f Gbit/s), downtime "
           "%.3f s, wire %.1f MiB, resent %llu, writer %llu pages, verified %d, "
           "identical %d, cpu %.2f + %.2f s\n",
           name, (unsigned long long)(cfg->size >> 20), r->streams, m->rounds,
           m->seconds, m->seconds > 0 ? (double)cfg->size * 8 / m->seconds / 1e9 : 0,
           m->downtime, (double)m->wire_bytes / (1 << 20),
           (unsigned long long)m->pages_resent, (unsigned long long)r->writes,
           m->verified, r->identical, r->src_cpu, r->tgt_cpu);
    if (r->mode[0])
        printf("# %s: %s\n", name, r->mode);
    if (r->src_side.pkt.valid)
        printf("# %s: frames: sender %llu (%llu sent again, %llu timeouts), receiver "
               "%llu (%llu duplicates dropped)\n",
               name, (unsigned long long)r->src_side.pkt.tx_frames,
               (unsigned long long)r->src_side.pkt.retransmits,
               (unsigned long long)r->src_side.pkt.timeouts,
               (unsigned long long)r->tgt_side.pkt.tx_frames,
               (unsigned long long)r->tgt_side.pkt.dup_frames);
}

static void run(const char *name, struct fy_pipeline_cfg *cfg, struct fy_pipeline_result *r)
{
    int rc = fy_bench_pipeline(cfg, r);
    if (rc < 0)
        fail_msg("%s: migration failed: %s", name, fy_error_detail());
    report(name, cfg, r);
    assert_int_equal(r->target_rc, 0);
    assert_true(r->src.verified);
    assert_true(r->tgt.verified);
    assert_true(r->identical);
    assert_true(fy_hash_eq(r->src.digest, r->tgt.digest));
    assert_true(r->writes > 0);
    assert_true(r->src.rounds >= 2);
}

static void test_migrate_dpdk__1g_over_memif_with_writer__verifies_identical(void **state)
{
    struct fy_pipeline_cfg cfg = {
        .transport = "dpdk", .params = params, .size = 1ull << 30,
        .dirty_rate = 5000, .check_bytes = true, .repeat = 1};
    struct fy_pipeline_result r;

    (void)state;
    run("1 GiB over memif", &cfg, &r);
    assert_true(r.src_side.pkt.valid && r.tgt_side.pkt.valid);
}

static void test_migrate_dpdk__1g_with_1pct_drop_reorder_dup__completes_and_verifies(void **state)
{
    char lossy[256];
    struct fy_pipeline_cfg cfg = {
        .transport = "dpdk", .params = lossy, .size = 1ull << 30,
        .dirty_rate = 5000, .check_bytes = true, .repeat = 1};
    struct fy_pipeline_result r;

    (void)state;
    snprintf(lossy, sizeof(lossy), "%s;lossy=drop:0.01,reorder:0.01,dup:0.01", params);
    run("1 GiB, 1% drop + reorder + dup", &cfg, &r);
    /* The harness really was in the way, and the core repaired it. */
    assert_true(r.src_side.pkt.retransmits > 0);
    assert_true(r.tgt_side.pkt.dup_frames > 0 || r.src_side.pkt.dup_frames > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_dpdk__1g_over_memif_with_writer__verifies_identical),
        cmocka_unit_test(test_migrate_dpdk__1g_with_1pct_drop_reorder_dup__completes_and_verifies),
    };
    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests(tests, setup, teardown);
}
