/* Unit tests of the migration engine (dataplane/engine_source.c and
 * engine_target.c) end to end in one process: the source runs on the test's
 * thread, the target on another, over the TCP transport on 127.0.0.1, both
 * regions memfds. */
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

#include "ferry/classifier.h"
#include "ferry/dedup.h"
#include "ferry/engine.h"
#include "ferry/error.h"
#include "ferry/region.h"
#include "ferry/transport.h"

#define MIB (1024ull * 1024ull)
#define TIMEOUT_MS 10000

/* ---- page contents ------------------------------------------------------ */

/* A page whose content is determined by 'seed' and differs for every seed
 * (never all zero). */
static void fill_page(uint8_t *p, uint64_t seed)
{
    uint64_t *w = (uint64_t *)p;
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;

    for (unsigned i = 0; i < FY_PAGE_SIZE / 8; i++) {
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdull;
        x ^= x >> 29;
        w[i] = x + i;
    }
    w[0] = seed + 1;
}

static uint8_t *base_of(const struct fy_region *r)
{
    return fy_region_base(r);
}

static uint8_t *page_of(const struct fy_region *r, uint64_t page)
{
    return base_of(r) + (page << FY_PAGE_SHIFT);
}

/* What a mixed region holds, by construction. */
struct mix {
    uint64_t zero;     /* all-zero pages */
    uint64_t dup;      /* pages whose content an earlier page already has */
    uint64_t distinct; /* first copies of non-zero content */
};

/* Fills 'r' with a mix: every 5th page zero, every 5th a copy of one of
 * three shared contents, the rest unique. */
static struct mix fill_mixed(struct fy_region *r)
{
    struct mix m = {0};
    bool shared_seen[3] = {false, false, false};

    for (uint64_t i = 0; i < fy_region_pages(r); i++) {
        uint8_t *p = page_of(r, i);
        switch (i % 5) {
        case 0:
            memset(p, 0, FY_PAGE_SIZE);
            m.zero++;
            break;
        case 3:
            fill_page(p, 1000000 + i % 3);
            if (shared_seen[i % 3]) {
                m.dup++;
            } else {
                shared_seen[i % 3] = true;
                m.distinct++;
            }
            break;
        default:
            fill_page(p, i);
            m.distinct++;
            break;
        }
    }
    return m;
}

static struct fy_region *memfd(const char *name, uint64_t size)
{
    struct fy_region *r = NULL;

    assert_int_equal(fy_region_create_memfd(name, size, &r), 0);
    return r;
}

static void assert_regions_equal(struct fy_region *a, struct fy_region *b)
{
    assert_int_equal(fy_region_size(a), fy_region_size(b));
    if (memcmp(base_of(a), base_of(b), fy_region_size(a)) != 0) {
        for (uint64_t i = 0; i < fy_region_pages(a); i++)
            if (memcmp(page_of(a, i), page_of(b, i), FY_PAGE_SIZE) != 0)
                fail_msg("regions differ first at page %llu", (unsigned long long)i);
    }
}

/* ---- a writer that dirties pages until paused -------------------------- */

struct writer {
    struct fy_region *r;
    uint64_t first, npages;   /* the pages it writes */
    unsigned delay_us;        /* between writes; 0: as fast as it can */
    uint64_t *log;            /* dirty bitmap it sets after writing, or NULL */
    int stop;                 /* atomic */
    uint64_t writes;
    pthread_t tid;
    bool running;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    uint64_t x = 88172645463325252ull;

    while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t page = w->first + x % w->npages;
        uint8_t *p = page_of(w->r, page);
        /* Zero now and then, so zero pages come and go too. */
        if (x % 7 == 0)
            memset(p, 0, FY_PAGE_SIZE);
        else
            fill_page(p, 5000000 + w->writes);
        if (w->log)
            __atomic_fetch_or(&w->log[page >> 6], 1ull << (page & 63), __ATOMIC_RELEASE);
        w->writes++;
        if (w->delay_us)
            usleep(w->delay_us);
    }
    return NULL;
}

static void writer_start(struct writer *w)
{
    __atomic_store_n(&w->stop, 0, __ATOMIC_RELEASE);
    assert_int_equal(pthread_create(&w->tid, NULL, writer_main, w), 0);
    w->running = true;
}

static void writer_stop(struct writer *w)
{
    if (!w->running)
        return;
    __atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
    pthread_join(w->tid, NULL);
    w->running = false;
}

/* ---- the source's callbacks ------------------------------------------------- */

struct src_ctx {
    struct writer *w;         /* stopped by pause, may be NULL */
    unsigned pause_calls;
    uint64_t *log;            /* the writer's dirty bitmap, for dirty_sync */
    uint64_t log_words;
    unsigned sync_calls;
    /* Pages the writer is sure to have rewritten in each log period until
     * paused, however the threads were scheduled: dirty_sync writes them
     * itself, on the engine's thread, before it reads the log. */
    struct fy_region *burst_region;
    uint64_t burst_pages;
    bool paused;
    unsigned rounds;
    struct fy_round_stats first; /* round 1 */
    volatile int *cancel_after_round1;
};

static int ctx_pause(void *arg)
{
    struct src_ctx *c = arg;

    c->pause_calls++;
    c->paused = true;
    if (c->w)
        writer_stop(c->w);
    return 0;
}

static int ctx_dirty_sync(void *arg, uint64_t *bitmap, uint64_t npages)
{
    struct src_ctx *c = arg;

    assert_int_equal((npages + 63) / 64, c->log_words);
    for (uint64_t p = 0; !c->paused && p < c->burst_pages; p++) {
        fill_page(page_of(c->burst_region, p), 9000000 + c->sync_calls * npages + p);
        __atomic_fetch_or(&c->log[p >> 6], 1ull << (p & 63), __ATOMIC_RELEASE);
    }
    for (uint64_t i = 0; i < c->log_words; i++)
        bitmap[i] = __atomic_exchange_n(&c->log[i], 0, __ATOMIC_ACQUIRE);
    c->sync_calls++;
    return 0;
}

static void ctx_on_round(void *arg, const struct fy_round_stats *st)
{
    struct src_ctx *c = arg;

    c->rounds++;
    if (st->round == 1)
        c->first = *st;
    if (c->cancel_after_round1 && st->round == 1)
        *c->cancel_after_round1 = 1;
}

/* ---- one migration: target thread + source on this thread ------------------- */

struct target {
    struct fy_listener *l;
    struct fy_region *dst;
    struct fy_accept_params ap;
    struct fy_target_params tp;
    struct fy_migration_stats st;
    int rc;
    char detail[1024];
    pthread_t tid;
};

static void *target_main(void *arg)
{
    struct target *t = arg;
    struct fy_session *s = NULL;

    t->rc = t->l->ops->accept(t->l, &t->ap, &s);
    if (t->rc == 0)
        t->rc = fy_migrate_target(t->dst, s, &t->tp, &t->st);
    snprintf(t->detail, sizeof(t->detail), "%s", t->rc < 0 ? fy_error_detail() : "");
    fy_session_close(s);
    return NULL;
}

struct run {
    int rc;                         /* fy_migrate_source (or connect) */
    int connect_rc;
    char detail[1024];
    struct fy_migration_stats st;
    struct target t;
};

/* Migrates src into dst over 'streams' streams.  The target is set up by
 * run->t (ap, tp) before the call. */
static void migrate(struct run *run, struct fy_region *src, struct fy_region *dst,
                    unsigned streams, const struct fy_source_params *sp)
{
    struct fy_transport_opts o = {.streams = streams, .timeout_ms = TIMEOUT_MS};
    struct fy_session_info info = {.region_size = fy_region_size(src),
                                   .page_size = FY_PAGE_SIZE,
                                   .caps = FY_CAPS_V1};
    struct fy_session *s = NULL;
    struct timespec ts;

    assert_int_equal(fy_transport_tcp.listen("127.0.0.1:0", &o, &run->t.l), 0);
    run->t.dst = dst;
    if (!run->t.tp.idle_timeout_ms)
        run->t.tp.idle_timeout_ms = TIMEOUT_MS;
    assert_int_equal(pthread_create(&run->t.tid, NULL, target_main, &run->t), 0);

    run->connect_rc = fy_transport_tcp.connect(run->t.l->addr, &o, &info, &s);
    if (run->connect_rc < 0) {
        run->rc = run->connect_rc;
    } else {
        assert_int_equal(s->nstreams, streams);
        run->rc = fy_migrate_source(src, s, sp, &run->st);
    }
    snprintf(run->detail, sizeof(run->detail), "%s", run->rc < 0 ? fy_error_detail() : "");
    fy_session_close(s);

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 30;
    if (pthread_timedjoin_np(run->t.tid, NULL, &ts) != 0)
        fail_msg("the target did not finish within 30 s of the source");
    fy_transport_tcp.listener_close(run->t.l);
}

static void assert_migrated(const struct run *run)
{
    if (run->rc != 0 || run->t.rc != 0)
        fail_msg("migration failed: source %s (%s), target %s (%s)",
                 fy_errname(run->rc), run->detail, fy_errname(run->t.rc), run->t.detail);
    assert_true(run->st.verified);
    assert_true(run->t.st.verified);
    assert_true(fy_hash_eq(run->st.digest, run->t.st.digest));
}

/* ---- a still region ------------------------------------------------------------------ */

static void migrate_mixed(unsigned streams, uint64_t size, bool receiver_checks)
{
    struct fy_region *src = memfd("src", size), *dst = memfd("dst", size);
    struct src_ctx c = {0};
    struct fy_source_params sp = {.on_round = ctx_on_round, .ctx = &c};
    struct run run = {0};
    struct mix m = fill_mixed(src);
    uint64_t npages = fy_region_pages(src);

    run.t.tp.fresh = true;
    run.t.ap.receiver_checks_pages = receiver_checks;
    migrate(&run, src, dst, streams, &sp);
    assert_migrated(&run);
    assert_regions_equal(src, dst);

    /* Round 1 moved every page once, as one of the three kinds. */
    assert_int_equal(c.first.round, 1);
    assert_int_equal(c.first.dirty_pages, npages);
    assert_int_equal(c.first.pages_sent + c.first.pages_zero + c.first.pages_dup, npages);
    assert_int_equal(c.first.pages_zero, m.zero);
    assert_true(c.first.wire_bytes > 0);
    /* The region is still (no pause callback): nothing more to move after
     * round 1. */
    assert_int_equal(run.st.pages_sent + run.st.pages_zero + run.st.pages_dup, npages);
    assert_int_equal(run.st.pages_resent, 0);
    assert_int_equal(run.st.region_bytes, size);
    assert_true(run.st.converged);
    assert_true(run.st.rounds >= 1);
    assert_int_equal(c.rounds, run.st.rounds);
    /* Duplicates travel as references: at least the shared copies. */
    assert_true(run.st.pages_dup >= m.dup - (streams - 1) * 3);
    assert_true(run.st.pages_sent <= m.distinct + (streams - 1) * 3);
    if (streams == 1) {
        assert_int_equal(run.st.pages_dup, m.dup);
        assert_int_equal(run.st.pages_sent, m.distinct);
    }
    /* Both sides count the same pages. */
    assert_int_equal(run.t.st.pages_sent, run.st.pages_sent);
    assert_int_equal(run.t.st.pages_zero, run.st.pages_zero);
    assert_int_equal(run.t.st.pages_dup, run.st.pages_dup);
    assert_int_equal(run.t.st.rounds, run.st.rounds);
    assert_true(run.st.wire_bytes > m.distinct * FY_PAGE_SIZE);
    fy_region_close(src);
    fy_region_close(dst);
}

static void test_migrate__mixed_zero_dup_unique_pages_one_stream__target_identical_and_stats_add_up(void **state)
{
    (void)state;
    migrate_mixed(1, 8 * MIB, false);
}

static void test_migrate__mixed_pages_two_streams__target_identical(void **state)
{
    (void)state;
    migrate_mixed(2, 8 * MIB, false);
}

static void test_migrate__mixed_pages_four_streams__target_identical(void **state)
{
    (void)state;
    migrate_mixed(4, 16 * MIB, false);
}

static void test_migrate__target_checks_pages_itself__target_identical(void **state)
{
    (void)state;
    /* The transport leaves the page hash to fy_migrate_target. */
    migrate_mixed(2, 8 * MIB, true);
}

static void test_migrate__size_not_a_multiple_of_chunks__target_identical(void **state)
{
    (void)state;
    /* 4096-page digest chunks and 1024-page work chunks: end on neither. */
    migrate_mixed(2, 4 * MIB + 3 * FY_PAGE_SIZE, false);
}

static void test_migrate__target_holds_old_data_not_fresh__zero_pages_cleared_and_identical(void **state)
{
    struct fy_region *src = memfd("src", 4 * MIB), *dst = memfd("dst", 4 * MIB);
    struct fy_source_params sp = {0};
    struct run run = {0};

    (void)state;
    fill_mixed(src);
    for (uint64_t i = 0; i < fy_region_pages(dst); i++)
        fill_page(page_of(dst, i), 777777 + i);
    run.t.tp.fresh = false;
    migrate(&run, src, dst, 2, &sp);
    assert_migrated(&run);
    assert_regions_equal(src, dst);
    fy_region_close(src);
    fy_region_close(dst);
}

static void test_migrate__all_zero_region__sent_as_zero_ranges_only(void **state)
{
    struct fy_region *src = memfd("src", 4 * MIB), *dst = memfd("dst", 4 * MIB);
    struct fy_source_params sp = {0};
    struct run run = {0};

    (void)state;
    run.t.tp.fresh = true;
    migrate(&run, src, dst, 1, &sp);
    assert_migrated(&run);
    assert_regions_equal(src, dst);
    assert_int_equal(run.st.pages_zero, fy_region_pages(src));
    assert_int_equal(run.st.pages_sent, 0);
    assert_int_equal(run.st.pages_dup, 0);
    /* Zero ranges, not pages, on the wire. */
    assert_true(run.st.wire_bytes < 64 * 1024);
    fy_region_close(src);
    fy_region_close(dst);
}

/* ---- a region written while it moves ---------------------------------------------- */

static void test_migrate__rehash_mode_with_writer__converges_pauses_once_and_identical(void **state)
{
    struct fy_region *src = memfd("src", 8 * MIB), *dst = memfd("dst", 8 * MIB);
    struct writer w = {.r = src, .first = 100, .npages = 64, .delay_us = 200};
    struct src_ctx c = {.w = &w};
    struct fy_source_params sp = {.pause = ctx_pause, .on_round = ctx_on_round,
                                  .ctx = &c};
    struct run run = {0};

    (void)state;
    fill_mixed(src);
    run.t.tp.fresh = true;
    writer_start(&w);
    migrate(&run, src, dst, 2, &sp);
    writer_stop(&w);
    assert_migrated(&run);
    assert_int_equal(c.pause_calls, 1);
    assert_true(w.writes > 0);
    assert_true(run.st.converged);
    assert_regions_equal(src, dst);
    fy_region_close(src);
    fy_region_close(dst);
}

static void test_migrate__dirty_log_mode_with_writer__converges_and_identical(void **state)
{
    struct fy_region *src = memfd("src", 8 * MIB), *dst = memfd("dst", 8 * MIB);
    uint64_t words = (fy_region_pages(src) + 63) / 64;
    uint64_t *log = calloc(words, 8);
    struct writer w = {.r = src, .first = 10, .npages = 300, .delay_us = 100, .log = log};
    struct src_ctx c = {.w = &w, .log = log, .log_words = words};
    struct fy_source_params sp = {.pause = ctx_pause, .dirty_sync = ctx_dirty_sync,
                                  .on_round = ctx_on_round, .ctx = &c};
    struct run run = {0};

    (void)state;
    assert_non_null(log);
    fill_mixed(src);
    run.t.tp.fresh = true;
    writer_start(&w);
    migrate(&run, src, dst, 2, &sp);
    writer_stop(&w);
    assert_migrated(&run);
    assert_int_equal(c.pause_calls, 1);
    /* Started the log, then read it after each round and after the pause. */
    assert_true(c.sync_calls >= 3);
    assert_true(run.st.converged);
    assert_regions_equal(src, dst);
    free(log);
    fy_region_close(src);
    fy_region_close(dst);
}

static void test_migrate__tiny_downtime_and_fast_writer__hits_max_rounds_not_converged_still_identical(void **state)
{
    struct fy_region *src = memfd("src", 16 * MIB), *dst = memfd("dst", 16 * MIB);
    uint64_t words = (fy_region_pages(src) + 63) / 64;
    uint64_t *log = calloc(words, 8);
    struct writer w = {.r = src, .first = 0, .npages = fy_region_pages(src),
                       .delay_us = 0, .log = log};
    /* Every period rewrites at least a quarter of the region: moving it
     * again takes longer than 1 ms on any machine, so no round fits. */
    struct src_ctx c = {.w = &w, .log = log, .log_words = words,
                        .burst_region = src, .burst_pages = fy_region_pages(src) / 4};
    struct fy_source_params sp = {.downtime_ms = 1, .max_rounds = 3,
                                  .dirty_sync = ctx_dirty_sync, .pause = ctx_pause,
                                  .on_round = ctx_on_round, .ctx = &c};
    struct run run = {0};

    (void)state;
    assert_non_null(log);
    fill_mixed(src);
    run.t.tp.fresh = true;
    writer_start(&w);
    migrate(&run, src, dst, 2, &sp);
    writer_stop(&w);
    assert_migrated(&run);
    assert_false(run.st.converged);
    assert_int_equal(c.pause_calls, 1);
    /* max_rounds rounds before the switchover, then the final one. */
    assert_int_equal(run.st.rounds, 4);
    assert_regions_equal(src, dst);
    free(log);
    fy_region_close(src);
    fy_region_close(dst);
}

/* ---- refusals and cancellation --------------------------------------------------- */

static void assert_bytes_unchanged(struct fy_region *r, fy_hash128 before)
{
    fy_hash128 now;

    assert_int_equal(fy_region_digest(r, 1, &now), 0);
    assert_true(fy_hash_eq(now, before));
}

static void test_migrate__target_region_size_differs__source_fails_peer_region_untouched(void **state)
{
    struct fy_region *src = memfd("src", 4 * MIB), *dst = memfd("dst", 2 * MIB);
    struct src_ctx c = {0};
    struct fy_source_params sp = {.pause = ctx_pause, .ctx = &c};
    struct run run = {0};
    fy_hash128 before;

    (void)state;
    fill_mixed(src);
    assert_int_equal(fy_region_digest(src, 1, &before), 0);
    /* The transport accepts any size; the engine at the target refuses. */
    run.t.ap.region_size = 0;
    migrate(&run, src, dst, 1, &sp);
    assert_int_equal(run.t.rc, -FY_E_INVAL);
    assert_int_equal(run.rc, -FY_E_PEER);
    assert_non_null(strstr(run.detail, "bytes"));
    assert_int_equal(c.pause_calls, 0);
    assert_false(run.st.verified);
    assert_bytes_unchanged(src, before);
    fy_region_close(src);
    fy_region_close(dst);
}

static void test_migrate__target_agent_refuses_size_at_accept__connect_fails_peer_region_untouched(void **state)
{
    struct fy_region *src = memfd("src", 4 * MIB), *dst = memfd("dst", 2 * MIB);
    struct fy_source_params sp = {0};
    struct run run = {0};
    fy_hash128 before;

    (void)state;
    fill_mixed(src);
    assert_int_equal(fy_region_digest(src, 1, &before), 0);
    run.t.ap.region_size = fy_region_size(dst);
    migrate(&run, src, dst, 1, &sp);
    assert_int_equal(run.connect_rc, -FY_E_PEER);
    assert_int_equal(run.t.rc, -FY_E_PROTO);
    assert_bytes_unchanged(src, before);
    fy_region_close(src);
    fy_region_close(dst);
}

static void test_migrate__cancelled_before_start__fails_cancelled_and_never_pauses(void **state)
{
    struct fy_region *src = memfd("src", 4 * MIB), *dst = memfd("dst", 4 * MIB);
    volatile int cancel = 1;
    struct src_ctx c = {0};
    struct fy_source_params sp = {.pause = ctx_pause, .ctx = &c, .cancel = &cancel};
    struct run run = {0};

    (void)state;
    fill_mixed(src);
    run.t.tp.fresh = true;
    migrate(&run, src, dst, 2, &sp);
    assert_int_equal(run.rc, -FY_E_CANCELLED);
    assert_int_equal(c.pause_calls, 0);
    assert_false(run.st.verified);
    /* The target gave up too, with the source's reason, although the close
     * of stream 1 may reach it before the ERROR on stream 0. */
    if (run.t.rc != -FY_E_PEER)
        fail_msg("target: %s (%s), want PEER", fy_errname(run.t.rc), run.t.detail);
    fy_region_close(src);
    fy_region_close(dst);
}

static void test_migrate__cancelled_after_first_round__fails_cancelled_and_never_pauses(void **state)
{
    struct fy_region *src = memfd("src", 4 * MIB), *dst = memfd("dst", 4 * MIB);
    volatile int cancel = 0;
    struct src_ctx c = {.cancel_after_round1 = &cancel};
    struct fy_source_params sp = {.pause = ctx_pause, .on_round = ctx_on_round,
                                  .ctx = &c, .cancel = &cancel};
    struct run run = {0};

    (void)state;
    fill_mixed(src);
    run.t.tp.fresh = true;
    migrate(&run, src, dst, 1, &sp);
    assert_int_equal(run.rc, -FY_E_CANCELLED);
    assert_int_equal(c.rounds, 1);
    assert_int_equal(c.pause_calls, 0);
    assert_int_equal(run.t.rc, -FY_E_PEER);
    assert_non_null(strstr(run.t.detail, "cancelled"));
    fy_region_close(src);
    fy_region_close(dst);
}

static int pause_fails(void *arg)
{
    struct src_ctx *c = arg;

    c->pause_calls++;
    return fy_error(FY_E_BUSY, "the test's writer refuses to pause");
}

static void test_migrate__pause_fails__source_fails_with_its_error(void **state)
{
    struct fy_region *src = memfd("src", 4 * MIB), *dst = memfd("dst", 4 * MIB);
    struct src_ctx c = {0};
    struct fy_source_params sp = {.pause = pause_fails, .ctx = &c};
    struct run run = {0};

    (void)state;
    fill_mixed(src);
    run.t.tp.fresh = true;
    migrate(&run, src, dst, 1, &sp);
    assert_int_equal(run.rc, -FY_E_BUSY);
    assert_int_equal(c.pause_calls, 1);
    assert_non_null(strstr(run.detail, "refuses to pause"));
    assert_int_equal(run.t.rc, -FY_E_PEER);
    fy_region_close(src);
    fy_region_close(dst);
}

/* ---- references the target cannot resolve ------------------------------------------- */

static void test_migrate__source_dedup_claims_content_target_lacks__misses_resent_and_identical(void **state)
{
    struct fy_region *src = memfd("src", 4 * MIB), *dst = memfd("dst", 4 * MIB);
    uint64_t npages = fy_region_pages(src);
    struct fy_dedup *d = fy_dedup_create(2 * npages);
    struct fy_pagemap fake = {0};
    struct fy_source_params sp = {.dedup = d};
    struct run run = {0};
    const uint64_t claimed = 100;
    uint64_t claimed_nonzero = 0;
    int space;

    (void)state;
    assert_non_null(d);
    fill_mixed(src);
    /* Another region "at the target" that supposedly holds the content of
     * the source's first pages: the source believes it, the target has no
     * such region. */
    assert_int_equal(fy_pagemap_init(&fake, npages), 0);
    space = fy_dedup_add_space(d, &fake);
    assert_true(space >= 0);
    for (uint64_t i = 0; i < claimed; i++) {
        const uint8_t *p = page_of(src, i);
        if (fy_page_is_zero(p))
            continue;
        fy_hash128 h = fy_page_hash(p);
        fy_pagemap_set(&fake, i, h);
        if (fy_dedup_insert(d, h, (struct fy_dedup_loc){(uint32_t)space, i}))
            claimed_nonzero++;
    }
    /* Other copies of the three shared contents: claimed too. */
    uint64_t claimed_pages = 0;
    for (uint64_t i = 0; i < npages; i++) {
        const uint8_t *p = page_of(src, i);
        struct fy_dedup_loc loc;
        if (!fy_page_is_zero(p) && fy_dedup_lookup(d, fy_page_hash(p), &loc))
            claimed_pages++;
    }
    assert_true(claimed_nonzero > 50);

    run.t.tp.fresh = true;
    migrate(&run, src, dst, 2, &sp);
    assert_migrated(&run);
    assert_regions_equal(src, dst);
    /* Every claimed page went as a reference, missed, and was sent again. */
    assert_int_equal(run.st.pages_resent, claimed_pages);
    assert_int_equal(run.t.st.pages_resent, claimed_pages);
    assert_int_equal(run.st.pages_sent + run.st.pages_zero + run.st.pages_dup,
                     npages);
    /* The engine took its own space (whose page map it freed) out of the
     * shared index again: content only it knew is no longer answered. */
    struct fy_dedup_loc loc;
    assert_false(fy_dedup_lookup(d, fy_page_hash(page_of(src, 201)), &loc));
    assert_true(fy_dedup_lookup(d, fy_page_hash(page_of(src, 1)), &loc));
    assert_int_equal(loc.space, space);
    fy_dedup_destroy(d);
    fy_pagemap_fini(&fake);
    fy_region_close(src);
    fy_region_close(dst);
}

/* ---- the digest ---------------------------------------------------------------------- */

/* Plays a source by hand: opens a one-stream session to a target running
 * fy_migrate_target on 'dst', sends 'ops', and returns what the target sent
 * back first (an ERROR, if it refused them). */
static void hand_driven(struct run *run, struct fy_region *dst,
                        const struct fy_op *ops, unsigned n, struct fy_op *answer)
{
    struct fy_transport_opts o = {.streams = 1, .timeout_ms = TIMEOUT_MS};
    struct fy_session_info info = {.region_size = fy_region_size(dst),
                                   .page_size = FY_PAGE_SIZE, .caps = FY_CAPS_V1};
    struct fy_session *s = NULL;

    assert_int_equal(fy_transport_tcp.listen("127.0.0.1:0", &o, &run->t.l), 0);
    run->t.dst = dst;
    run->t.tp.idle_timeout_ms = TIMEOUT_MS;
    assert_int_equal(pthread_create(&run->t.tid, NULL, target_main, &run->t), 0);
    assert_int_equal(fy_transport_tcp.connect(run->t.l->addr, &o, &info, &s), 0);
    assert_int_equal(fy_stream_send_all(s->streams[0], ops, n), 0);
    assert_int_equal(s->streams[0]->rx_burst(s->streams[0], answer, 1, TIMEOUT_MS), 1);
    pthread_join(run->t.tid, NULL);
    fy_session_close(s);
    fy_transport_tcp.listener_close(run->t.l);
}

static void test_migrate_target__source_names_a_page_twice_in_a_round__fails_proto_and_tells_it(void **state)
{
    struct fy_region *dst = memfd("dst", 4 * MIB);
    uint8_t page[FY_PAGE_SIZE];
    struct fy_round_counts c = {.pages = 2, .ops = 2};
    struct fy_op ops[3] = {
        {.type = FY_OP_PAGE, .offset = 8 * FY_PAGE_SIZE, .len = FY_PAGE_SIZE, .data = page},
        {.type = FY_OP_REF, .offset = 8 * FY_PAGE_SIZE},
        {.type = FY_OP_ROUND_END, .offset = 1, .data = &c, .len = sizeof(c)},
    };
    struct run run = {0};
    struct fy_op answer;

    (void)state;
    fill_page(page, 5);
    ops[0].hash = ops[1].hash = fy_page_hash(page);
    run.t.tp.fresh = true;
    hand_driven(&run, dst, ops, 3, &answer);
    assert_int_equal(run.t.rc, -FY_E_PROTO);
    assert_non_null(strstr(run.t.detail, "twice"));
    assert_int_equal(answer.type, FY_OP_ERROR);
    assert_int_equal(answer.offset, FY_E_PROTO);
    fy_region_close(dst);
}

static void test_migrate_target__placed_page_fails_its_hash__fails_checksum_inside_region(void **state)
{
    struct fy_region *dst = memfd("dst", 4 * MIB);
    uint8_t page[FY_PAGE_SIZE];
    struct fy_op ops[1] = {
        {.type = FY_OP_PAGE, .offset = 3 * FY_PAGE_SIZE, .len = FY_PAGE_SIZE, .data = page},
    };
    struct run run = {0};
    struct fy_op answer;

    (void)state;
    fill_page(page, 6);
    ops[0].hash = fy_page_hash(page);
    ops[0].hash.lo ^= 1; /* the page is not what its frame says */
    run.t.ap = (struct fy_accept_params){.region_size = 4 * MIB,
                                         .placement = base_of(dst),
                                         .receiver_checks_pages = true};
    run.t.tp.fresh = true;
    hand_driven(&run, dst, ops, 1, &answer);
    assert_int_equal(run.t.rc, -FY_E_CHECKSUM);
    assert_int_equal(answer.type, FY_OP_ERROR);
    assert_int_equal(answer.offset, FY_E_CHECKSUM);
    fy_region_close(dst);
}

static void test_region_digest__any_thread_count__same_digest(void **state)
{
    struct fy_region *r = memfd("digest", 4 * MIB + 5 * FY_PAGE_SIZE);
    fy_hash128 one, two, many;

    (void)state;
    fill_mixed(r);
    assert_int_equal(fy_region_digest(r, 1, &one), 0);
    assert_int_equal(fy_region_digest(r, 2, &two), 0);
    assert_int_equal(fy_region_digest(r, 0, &many), 0);
    assert_true(fy_hash_eq(one, two));
    assert_true(fy_hash_eq(one, many));
    page_of(r, fy_region_pages(r) - 1)[17] ^= 1;
    assert_int_equal(fy_region_digest(r, 2, &two), 0);
    assert_false(fy_hash_eq(one, two));
    fy_region_close(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate__mixed_zero_dup_unique_pages_one_stream__target_identical_and_stats_add_up),
        cmocka_unit_test(test_migrate__mixed_pages_two_streams__target_identical),
        cmocka_unit_test(test_migrate__mixed_pages_four_streams__target_identical),
        cmocka_unit_test(test_migrate__target_checks_pages_itself__target_identical),
        cmocka_unit_test(test_migrate__size_not_a_multiple_of_chunks__target_identical),
        cmocka_unit_test(test_migrate__target_holds_old_data_not_fresh__zero_pages_cleared_and_identical),
        cmocka_unit_test(test_migrate__all_zero_region__sent_as_zero_ranges_only),
        cmocka_unit_test(test_migrate__rehash_mode_with_writer__converges_pauses_once_and_identical),
        cmocka_unit_test(test_migrate__dirty_log_mode_with_writer__converges_and_identical),
        cmocka_unit_test(test_migrate__tiny_downtime_and_fast_writer__hits_max_rounds_not_converged_still_identical),
        cmocka_unit_test(test_migrate__target_region_size_differs__source_fails_peer_region_untouched),
        cmocka_unit_test(test_migrate__target_agent_refuses_size_at_accept__connect_fails_peer_region_untouched),
        cmocka_unit_test(test_migrate__cancelled_before_start__fails_cancelled_and_never_pauses),
        cmocka_unit_test(test_migrate__cancelled_after_first_round__fails_cancelled_and_never_pauses),
        cmocka_unit_test(test_migrate__pause_fails__source_fails_with_its_error),
        cmocka_unit_test(test_migrate__source_dedup_claims_content_target_lacks__misses_resent_and_identical),
        cmocka_unit_test(test_migrate_target__source_names_a_page_twice_in_a_round__fails_proto_and_tells_it),
        cmocka_unit_test(test_migrate_target__placed_page_fails_its_hash__fails_checksum_inside_region),
        cmocka_unit_test(test_region_digest__any_thread_count__same_digest),
    };
    return cmocka_run_group_tests_name("engine", tests, NULL, NULL);
}
