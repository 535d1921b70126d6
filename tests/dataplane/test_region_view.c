/* Unit tests of view regions (dataplane/region.c: bytes reached through
 * callbacks, as a running VM's disk behind its hypervisor) and of the two
 * engine features hot disks use: a first round limited to the pages the
 * target lacks (fy_source_params.first_round) and a pause that answers
 * "not yet" (several migrations sharing one writer).  The views here keep
 * their bytes in plain memory and count the calls. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "ferry/classifier.h"
#include "ferry/engine.h"
#include "ferry/error.h"
#include "ferry/region.h"
#include "ferry/transport.h"

#define PAGES 1024u
#define SIZE ((uint64_t)PAGES * FY_PAGE_SIZE)
#define TIMEOUT_MS 10000

/* ---- a view over memory ------------------------------------------------- */

struct mem_view {
    uint8_t *bytes;
    uint64_t size;
    unsigned reads, writes, zeros; /* calls */
    uint64_t bytes_written;
};

static int mv_read(void *ctx, uint64_t off, void *buf, uint64_t len)
{
    struct mem_view *v = ctx;

    assert_true(off + len <= v->size);
    __atomic_fetch_add(&v->reads, 1, __ATOMIC_RELAXED);
    memcpy(buf, v->bytes + off, len);
    return 0;
}

static int mv_write(void *ctx, uint64_t off, const void *buf, uint64_t len)
{
    struct mem_view *v = ctx;

    assert_true(off + len <= v->size);
    __atomic_fetch_add(&v->writes, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&v->bytes_written, len, __ATOMIC_RELAXED);
    memcpy(v->bytes + off, buf, len);
    return 0;
}

static int mv_zero(void *ctx, uint64_t off, uint64_t len)
{
    struct mem_view *v = ctx;

    assert_true(off + len <= v->size);
    __atomic_fetch_add(&v->zeros, 1, __ATOMIC_RELAXED);
    memset(v->bytes + off, 0, len);
    return 0;
}

static const struct fy_region_view_ops mv_ops = {mv_read, mv_write, mv_zero};
static const struct fy_region_view_ops mv_ro_ops = {.read = mv_read};

static void mv_init(struct mem_view *v, uint64_t size)
{
    memset(v, 0, sizeof(*v));
    v->bytes = calloc(1, size);
    assert_non_null(v->bytes);
    v->size = size;
}

/* A page whose bytes depend on 'seed' only. */
static void fill(uint8_t *p, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (unsigned i = 0; i < FY_PAGE_SIZE / 8; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(p + 8 * i, &x, 8);
    }
}

/* ---- the region itself ----------------------------------------------------- */

static void test_region_view__pages_and_bytes__go_through_callbacks_in_runs(void **state)
{
    struct mem_view v;
    struct fy_region *r = NULL;
    uint8_t buf[4 * FY_PAGE_SIZE], page[FY_PAGE_SIZE];
    uint64_t pages[4] = {3, 4, 5, 9};
    const void *data[4];

    (void)state;
    mv_init(&v, SIZE);
    for (unsigned p = 0; p < PAGES; p++)
        fill(v.bytes + (uint64_t)p * FY_PAGE_SIZE, p);
    assert_int_equal(fy_region_open_view(&mv_ops, &v, SIZE, FY_REGION_RDWR, "disk", &r), 0);
    assert_null(fy_region_base(r));
    assert_int_equal(fy_region_fd(r), -1);
    assert_string_equal(fy_region_name(r), "view:disk");
    assert_int_equal(fy_region_pages(r), PAGES);

    /* Pages 3-5 are one run, 9 another: two reads. */
    assert_int_equal(fy_region_read_pages(r, pages, 4, buf), 0);
    assert_int_equal(v.reads, 2);
    for (unsigned i = 0; i < 4; i++)
        assert_memory_equal(buf + i * FY_PAGE_SIZE, v.bytes + pages[i] * FY_PAGE_SIZE,
                            FY_PAGE_SIZE);

    /* Data lying one after another is written in one call per run. */
    for (unsigned i = 0; i < 4; i++) {
        fill(buf + i * FY_PAGE_SIZE, 5000 + i);
        data[i] = buf + i * FY_PAGE_SIZE;
    }
    assert_int_equal(fy_region_write_pages(r, pages, data, 4), 0);
    assert_int_equal(v.writes, 2);
    assert_memory_equal(v.bytes + 9 * FY_PAGE_SIZE, buf + 3 * FY_PAGE_SIZE, FY_PAGE_SIZE);

    /* Zero ranges use the zero callback; copies read then write. */
    assert_int_equal(fy_region_zero(r, 4 * FY_PAGE_SIZE, 2 * FY_PAGE_SIZE), 0);
    assert_int_equal(v.zeros, 1);
    memset(page, 0, sizeof(page));
    assert_memory_equal(v.bytes + 5 * FY_PAGE_SIZE, page, FY_PAGE_SIZE);
    assert_int_equal(fy_region_copy_page(r, 100, 3), 0);
    assert_memory_equal(v.bytes + 100 * FY_PAGE_SIZE, v.bytes + 3 * FY_PAGE_SIZE, FY_PAGE_SIZE);

    /* Bounds are checked before any callback. */
    pages[0] = PAGES;
    unsigned reads = v.reads;
    assert_int_equal(fy_region_read_pages(r, pages, 1, buf), -FY_E_RANGE);
    assert_int_equal(v.reads, reads);
    fy_region_close(r);
    free(v.bytes);
}

static void test_region_view__read_only_view__refuses_writes(void **state)
{
    struct mem_view v;
    struct fy_region *r = NULL;
    uint8_t buf[FY_PAGE_SIZE] = {0};
    uint64_t p = 0;
    const void *d = buf;

    (void)state;
    mv_init(&v, SIZE);
    assert_int_equal(fy_region_open_view(&mv_ro_ops, &v, SIZE, FY_REGION_RDWR, "ro", &r),
                     -FY_E_INVAL);
    assert_int_equal(fy_region_open_view(&mv_ro_ops, &v, SIZE, FY_REGION_READ, "ro", &r), 0);
    assert_int_equal(fy_region_write_pages(r, &p, &d, 1), -FY_E_INVAL);
    assert_int_equal(v.writes, 0);
    fy_region_close(r);
    free(v.bytes);
}

/* ---- the engine between two views -------------------------------------------- */

struct target {
    struct fy_listener *l;
    struct fy_region *dst;
    struct fy_migration_stats st;
    int rc;
    pthread_t tid;
};

static void *target_main(void *arg)
{
    struct target *t = arg;
    struct fy_accept_params ap = {.region_size = fy_region_size(t->dst)};
    struct fy_target_params tp = {.idle_timeout_ms = TIMEOUT_MS};
    struct fy_session *s = NULL;

    t->rc = t->l->ops->accept(t->l, &ap, &s);
    if (t->rc == 0)
        t->rc = fy_migrate_target(t->dst, s, &tp, &t->st);
    fy_session_close(s);
    return NULL;
}

static int migrate(struct fy_region *src, struct fy_region *dst,
                   const struct fy_source_params *sp, struct fy_migration_stats *st,
                   struct target *t)
{
    struct fy_transport_opts o = {.streams = 2, .timeout_ms = TIMEOUT_MS};
    struct fy_session_info info = {.region_size = fy_region_size(src),
                                   .page_size = FY_PAGE_SIZE, .caps = FY_CAPS_V1};
    struct fy_session *s = NULL;
    int rc;

    memset(t, 0, sizeof(*t));
    assert_int_equal(fy_transport_tcp.listen("127.0.0.1:0", &o, &t->l), 0);
    t->dst = dst;
    assert_int_equal(pthread_create(&t->tid, NULL, target_main, t), 0);
    rc = fy_transport_tcp.connect(t->l->addr, &o, &info, &s);
    if (rc == 0)
        rc = fy_migrate_source(src, s, sp, st);
    fy_session_close(s);
    pthread_join(t->tid, NULL);
    fy_transport_tcp.listener_close(t->l);
    return rc;
}

/* The source writes 'burst' pages between rounds and reports them. */
struct writer {
    struct mem_view *v;
    uint64_t next_seed;
    unsigned syncs;
    unsigned pauses;         /* calls of the pause callback */
    unsigned not_yet;        /* answer "not yet" this many times first */
    bool paused;
};

static int w_sync(void *ctx, uint64_t *bm, uint64_t npages)
{
    struct writer *w = ctx;

    (void)npages;
    w->syncs++;
    if (w->paused || w->syncs > 4)
        return 0;
    /* Pages 600-603 rewritten: new content the target must get. */
    for (uint64_t p = 600; p < 604; p++) {
        fill(w->v->bytes + p * FY_PAGE_SIZE, w->next_seed++);
        bm[p >> 6] |= 1ull << (p & 63);
    }
    return 0;
}

static int w_pause(void *ctx)
{
    struct writer *w = ctx;

    w->pauses++;
    if (w->pauses <= w->not_yet)
        return 1;
    w->paused = true;
    return 0;
}

static void test_engine_first_round__target_holds_the_rest__only_those_pages_move_and_verified(void **state)
{
    struct mem_view sv, tv;
    struct fy_region *src = NULL, *dst = NULL;
    uint64_t first[PAGES / 64] = {0};
    struct writer w = {.next_seed = 90000};
    struct fy_source_params sp = {.dirty_sync = w_sync, .pause = w_pause, .ctx = &w,
                                  .first_round = first};
    struct fy_migration_stats st = {0};
    struct target t;

    (void)state;
    mv_init(&sv, SIZE);
    mv_init(&tv, SIZE);
    w.v = &sv;
    /* A "base": pages 0-499 with content both sides hold already. */
    for (uint64_t p = 0; p < 500; p++) {
        fill(sv.bytes + p * FY_PAGE_SIZE, p);
        fill(tv.bytes + p * FY_PAGE_SIZE, p);
    }
    /* The "delta" only the source has: pages 700-709 (two of them zero
     * over target bytes that are not: the target must clear them), and
     * 710-719 a copy of base pages (references). */
    for (uint64_t p = 700; p < 710; p++)
        fill(sv.bytes + p * FY_PAGE_SIZE, 1000 + p);
    fill(tv.bytes + 708 * FY_PAGE_SIZE, 1);
    fill(tv.bytes + 709 * FY_PAGE_SIZE, 2);
    memset(sv.bytes + 708 * FY_PAGE_SIZE, 0, 2 * FY_PAGE_SIZE);
    for (uint64_t p = 710; p < 720; p++)
        fill(sv.bytes + p * FY_PAGE_SIZE, 1000 + 700);
    for (uint64_t p = 700; p < 720; p++)
        first[p >> 6] |= 1ull << (p & 63);
    assert_int_equal(fy_region_open_view(&mv_ro_ops, &sv, SIZE, FY_REGION_READ, "src", &src),
                     0);
    assert_int_equal(fy_region_open_view(&mv_ops, &tv, SIZE, FY_REGION_RDWR, "dst", &dst), 0);

    assert_int_equal(migrate(src, dst, &sp, &st, &t), 0);
    assert_int_equal(t.rc, 0);
    assert_true(st.verified);
    assert_true(t.st.verified);
    assert_memory_equal(sv.bytes, tv.bytes, SIZE);
    /* Round 1 moved the 20 delta pages and the 4 written meanwhile; later
     * rounds the rewrites only: never the 500 base pages. */
    assert_true(st.pages_sent + st.pages_zero + st.pages_dup < 100);
    assert_int_equal(st.pages_zero, 2);
    assert_true(st.pages_dup >= 8);
    assert_true(tv.bytes_written < 100 * FY_PAGE_SIZE);
    assert_true(tv.zeros >= 1);
    assert_int_equal(w.pauses, 1);
    fy_region_close(src);
    fy_region_close(dst);
    free(sv.bytes);
    free(tv.bytes);
}

static void test_engine_pause__answers_not_yet_twice__two_more_rounds_then_final_identical(void **state)
{
    struct mem_view sv, tv;
    struct fy_region *src = NULL, *dst = NULL;
    struct writer w = {.next_seed = 70000, .not_yet = 2};
    struct fy_source_params sp = {.dirty_sync = w_sync, .pause = w_pause, .ctx = &w};
    struct fy_migration_stats st = {0}, st1 = {0};
    struct target t;

    (void)state;
    mv_init(&sv, SIZE);
    mv_init(&tv, SIZE);
    w.v = &sv;
    for (uint64_t p = 0; p < PAGES; p += 3)
        fill(sv.bytes + p * FY_PAGE_SIZE, p);
    assert_int_equal(fy_region_open_view(&mv_ro_ops, &sv, SIZE, FY_REGION_READ, "src", &src),
                     0);
    assert_int_equal(fy_region_open_view(&mv_ops, &tv, SIZE, FY_REGION_RDWR, "dst", &dst), 0);
    assert_int_equal(migrate(src, dst, &sp, &st, &t), 0);
    assert_int_equal(t.rc, 0);
    assert_true(st.verified);
    assert_memory_equal(sv.bytes, tv.bytes, SIZE);
    assert_int_equal(w.pauses, 3);
    unsigned rounds_not_yet = st.rounds;

    /* The same without "not yet": two rounds fewer. */
    struct mem_view sv2, tv2;
    struct writer w2 = {.next_seed = 70000};
    sp.ctx = &w2;
    mv_init(&sv2, SIZE);
    mv_init(&tv2, SIZE);
    w2.v = &sv2;
    memcpy(sv2.bytes, sv.bytes, SIZE);
    fy_region_close(src);
    fy_region_close(dst);
    assert_int_equal(fy_region_open_view(&mv_ro_ops, &sv2, SIZE, FY_REGION_READ, "src", &src),
                     0);
    assert_int_equal(fy_region_open_view(&mv_ops, &tv2, SIZE, FY_REGION_RDWR, "dst", &dst), 0);
    assert_int_equal(migrate(src, dst, &sp, &st1, &t), 0);
    assert_int_equal(w2.pauses, 1);
    assert_int_equal(rounds_not_yet, st1.rounds + 2);
    fy_region_close(src);
    fy_region_close(dst);
    free(sv.bytes);
    free(tv.bytes);
    free(sv2.bytes);
    free(tv2.bytes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_region_view__pages_and_bytes__go_through_callbacks_in_runs),
        cmocka_unit_test(test_region_view__read_only_view__refuses_writes),
        cmocka_unit_test(test_engine_first_round__target_holds_the_rest__only_those_pages_move_and_verified),
        cmocka_unit_test(test_engine_pause__answers_not_yet_twice__two_more_rounds_then_final_identical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
