/* Integration: two processes on loopback migrate a 1 GiB region over TCP
 * while a writer thread in the source dirties pages; the destination must
 * end byte-identical with matching digests, and with 30 % duplicate and
 * 30 % zero pages the wire must carry at most 45 % of the region. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "ferry/error.h"
#include "perf/bench.h"

static void report(const char *name, const struct fy_pipeline_cfg *cfg,
                   const struct fy_pipeline_result *r)
{
    const struct fy_migration_stats *m = &r->src;
    printf("# %s: %llu MiB, %u streams, %u rounds, %.3f s, downtime %.3f s, "
           "wire %.1f MiB (%.1f%%), sent %llu zero %llu dup %llu resent %llu, "
           "writer %llu pages, verified %d, identical %d\n",
           name, (unsigned long long)(cfg->size >> 20), r->streams, m->rounds,
           m->seconds, m->downtime, (double)m->wire_bytes / (1 << 20),
           100.0 * (double)m->wire_bytes / (double)cfg->size,
           (unsigned long long)m->pages_sent, (unsigned long long)m->pages_zero,
           (unsigned long long)m->pages_dup, (unsigned long long)m->pages_resent,
           (unsigned long long)r->writes, m->verified, r->identical);
}

static void run(const char *name, struct fy_pipeline_cfg *cfg,
                struct fy_pipeline_result *r)
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
}

static void test_migrate_loopback__1g_with_dup_zero_and_writer__identical_and_wire_under_45_percent(void **state)
{
    (void)state;
    struct fy_pipeline_cfg cfg = {
        .transport = "tcp", .size = 1ull << 30, .dup_ratio = 0.3,
        .zero_ratio = 0.3, .dirty_rate = 5000, .check_bytes = true};
    struct fy_pipeline_result r;

    run("1 GiB, dirty log", &cfg, &r);
    assert_true(r.writes > 0);
    assert_true(r.src.rounds >= 2);
    assert_true(r.src.pages_zero > 0 && r.src.pages_dup > 0);
    assert_true((double)r.src.wire_bytes <= 0.45 * (double)cfg.size);
}

static void test_migrate_loopback__rehash_mode_with_writer__identical(void **state)
{
    (void)state;
    struct fy_pipeline_cfg cfg = {
        .transport = "tcp", .size = 256ull << 20, .dup_ratio = 0.2,
        .zero_ratio = 0.2, .dirty_rate = 20000, .rehash = true, .streams = 2,
        .check_bytes = true};
    struct fy_pipeline_result r;

    run("256 MiB, re-hash", &cfg, &r);
    assert_true(r.writes > 0);
}

static void test_migrate_loopback__writer_faster_than_link_with_tiny_downtime__stops_at_round_limit_and_verifies(void **state)
{
    (void)state;
    struct fy_pipeline_cfg cfg = {
        .transport = "tcp", .size = 128ull << 20, .dirty_rate = 1000000,
        .downtime_ms = 1, .max_rounds = 4, .streams = 1, .check_bytes = true};
    struct fy_pipeline_result r;

    run("128 MiB, round limit", &cfg, &r);
    assert_int_equal(r.src.rounds, 5); /* 4 live rounds, then the final one */
    assert_false(r.src.converged);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_loopback__1g_with_dup_zero_and_writer__identical_and_wire_under_45_percent),
        cmocka_unit_test(test_migrate_loopback__rehash_mode_with_writer__identical),
        cmocka_unit_test(test_migrate_loopback__writer_faster_than_link_with_tiny_downtime__stops_at_round_limit_and_verifies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
