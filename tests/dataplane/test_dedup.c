/* Unit tests of dataplane/dedup.c: page maps and the dedup index, including
 * overwrites, several spaces, a full index, the memory bound and
 * concurrent use. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ferry/classifier.h"
#include "ferry/dedup.h"
#include "ferry/error.h"

/* A realistic content hash for content number 'n' (version 'v'). */
static fy_hash128 content(uint64_t n, uint64_t v)
{
    uint64_t key[2] = {n, v};
    return fy_hash_bytes(key, sizeof(key));
}

static uint16_t tag(fy_hash128 h)
{
    return (uint16_t)(h.hi >> 48);
}

/* Records content 'h' at 'page' of 'space' the way a user of the index
 * does: page map first, then the index. */
static bool place(struct fy_dedup *d, struct fy_pagemap *pm, int space,
                  uint64_t page, fy_hash128 h)
{
    fy_pagemap_set(pm, page, h);
    return fy_dedup_insert(d, h, (struct fy_dedup_loc){(uint32_t)space, page});
}

/* ---- fixture: an index with one space of 64 pages ------------------------ */

#define FIX_PAGES 64

struct fix {
    struct fy_dedup *d;
    struct fy_pagemap pm;
    int space;
};

static int fix_setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));

    if (!f || fy_pagemap_init(&f->pm, FIX_PAGES) < 0)
        return -1;
    f->d = fy_dedup_create(FIX_PAGES);
    if (!f->d)
        return -1;
    f->space = fy_dedup_add_space(f->d, &f->pm);
    if (f->space < 0)
        return -1;
    *state = f;
    return 0;
}

static int fix_teardown(void **state)
{
    struct fix *f = *state;

    fy_dedup_destroy(f->d);
    fy_pagemap_fini(&f->pm);
    free(f);
    return 0;
}

/* ---- page maps ---------------------------------------------------------------- */

static void test_pagemap_init__n_pages__all_entries_unknown(void **state)
{
    struct fy_pagemap pm = {0};

    (void)state;
    assert_int_equal(fy_pagemap_init(&pm, 1000), 0);
    assert_int_equal(pm.npages, 1000);
    assert_non_null(pm.held);
    for (uint64_t i = 0; i < 1000; i++)
        assert_true(fy_hash_is_unknown(fy_pagemap_get(&pm, i)));
    fy_pagemap_fini(&pm);
    assert_null(pm.held);
    assert_int_equal(pm.npages, 0);
}

static void test_pagemap_init__zero_pages_or_null__fails_inval(void **state)
{
    struct fy_pagemap pm = {0};

    (void)state;
    assert_int_equal(fy_pagemap_init(&pm, 0), -FY_E_INVAL);
    assert_int_equal(fy_pagemap_init(NULL, 10), -FY_E_INVAL);
    fy_pagemap_fini(NULL);
}

static void test_pagemap_set__one_entry__get_returns_it_and_others_unchanged(void **state)
{
    struct fy_pagemap pm = {0};
    fy_hash128 h = content(1, 0);

    (void)state;
    assert_int_equal(fy_pagemap_init(&pm, 8), 0);
    fy_pagemap_set(&pm, 3, h);
    assert_true(fy_hash_eq(fy_pagemap_get(&pm, 3), h));
    assert_true(fy_hash_is_unknown(fy_pagemap_get(&pm, 2)));
    assert_true(fy_hash_is_unknown(fy_pagemap_get(&pm, 4)));
    fy_pagemap_set(&pm, 3, FY_HASH_UNKNOWN);
    assert_true(fy_hash_is_unknown(fy_pagemap_get(&pm, 3)));
    fy_pagemap_fini(&pm);
}

/* ---- insert and lookup ----------------------------------------------------------- */

static void test_dedup_lookup__after_insert__finds_the_location(void **state)
{
    struct fix *f = *state;
    fy_hash128 h = content(42, 0);
    struct fy_dedup_loc loc = {99, 99};

    assert_true(place(f->d, &f->pm, f->space, 17, h));
    assert_true(fy_dedup_lookup(f->d, h, &loc));
    assert_int_equal(loc.space, f->space);
    assert_int_equal(loc.page, 17);
}

static void test_dedup_lookup__unknown_hash__fails(void **state)
{
    struct fix *f = *state;
    struct fy_dedup_loc loc;

    assert_true(place(f->d, &f->pm, f->space, 1, content(1, 0)));
    assert_false(fy_dedup_lookup(f->d, content(2, 0), &loc));
    assert_false(fy_dedup_lookup(f->d, FY_HASH_UNKNOWN, &loc));
}

static void test_dedup_lookup__hash_with_same_tag_and_home_but_other_low_bits__fails(void **state)
{
    struct fix *f = *state;
    fy_hash128 h = content(7, 0), other = h;
    struct fy_dedup_loc loc;

    /* Same home slot and tag, different content. */
    other.hi ^= 1;
    assert_true(place(f->d, &f->pm, f->space, 5, h));
    assert_false(fy_dedup_lookup(f->d, other, &loc));
}

static void test_dedup_lookup__inserted_but_page_map_not_set__fails(void **state)
{
    struct fix *f = *state;
    fy_hash128 h = content(5, 0);
    struct fy_dedup_loc loc;

    /* The index names a location only; the page map says what it holds. */
    assert_true(fy_dedup_insert(f->d, h, (struct fy_dedup_loc){(uint32_t)f->space, 2}));
    assert_false(fy_dedup_lookup(f->d, h, &loc));
}

static void test_dedup_insert__same_content_twice__keeps_first_location(void **state)
{
    struct fix *f = *state;
    fy_hash128 h = content(3, 0);
    struct fy_dedup_stats st;
    struct fy_dedup_loc loc;

    assert_true(place(f->d, &f->pm, f->space, 10, h));
    assert_true(place(f->d, &f->pm, f->space, 20, h));
    assert_true(fy_dedup_lookup(f->d, h, &loc));
    assert_int_equal(loc.page, 10);
    fy_dedup_get_stats(f->d, &st);
    assert_int_equal(st.used, 1);
}

static void test_dedup_insert__page_beyond_space__is_never_returned(void **state)
{
    struct fix *f = *state;
    fy_hash128 h = content(8, 0);
    struct fy_dedup_loc loc;

    /* A location past the end of its page map is treated as gone. */
    fy_dedup_insert(f->d, h, (struct fy_dedup_loc){(uint32_t)f->space, FIX_PAGES + 5});
    assert_false(fy_dedup_lookup(f->d, h, &loc));
    fy_dedup_insert(f->d, h, (struct fy_dedup_loc){FY_DEDUP_MAX_SPACES, 1});
    assert_false(fy_dedup_lookup(f->d, h, &loc));
}

/* ---- overwrites ------------------------------------------------------------------------ */

static void test_dedup_lookup__location_overwritten_by_target__fails(void **state)
{
    struct fix *f = *state;
    fy_hash128 h = content(100, 0), other = content(101, 0);
    struct fy_dedup_loc loc;

    assert_int_not_equal(tag(h), tag(other));
    assert_true(place(f->d, &f->pm, f->space, 5, h));
    /* The target wrote other content over page 5. */
    fy_pagemap_set(&f->pm, 5, other);
    assert_false(fy_dedup_lookup(f->d, h, &loc));
}

static void test_dedup_insert__after_overwrite__lookup_finds_new_page(void **state)
{
    struct fix *f = *state;
    fy_hash128 h = content(100, 0), other = content(101, 0);
    struct fy_dedup_loc loc;

    assert_int_not_equal(tag(h), tag(other));
    assert_true(place(f->d, &f->pm, f->space, 5, h));
    fy_pagemap_set(&f->pm, 5, other);
    assert_false(fy_dedup_lookup(f->d, h, &loc));

    assert_true(place(f->d, &f->pm, f->space, 9, h));
    assert_true(fy_dedup_lookup(f->d, h, &loc));
    assert_int_equal(loc.space, f->space);
    assert_int_equal(loc.page, 9);
}

/* 64 (the probe window) hashes that all start at slot 0 of the index, with
 * distinct tags. */
static fy_hash128 crowded(unsigned k)
{
    return (fy_hash128){k + 1, ((uint64_t)(k + 1) << 48) | 0x1234};
}

static void test_dedup_insert__neighbourhood_full_and_one_stale__reuses_the_stale_slot(void **state)
{
    struct fix *f = *state;
    struct fy_dedup_stats before, after;
    struct fy_dedup_loc loc;
    fy_hash128 late = crowded(200);

    for (unsigned k = 0; k < 64; k++)
        assert_true(place(f->d, &f->pm, f->space, k, crowded(k)));
    /* Full: a newcomer finds no room... */
    fy_dedup_get_stats(f->d, &before);
    assert_false(fy_dedup_insert(f->d, late, (struct fy_dedup_loc){(uint32_t)f->space, 0}));
    /* ...until page 5 is overwritten: its slot is stale and taken in place. */
    fy_pagemap_set(&f->pm, 5, late);
    assert_true(fy_dedup_insert(f->d, late, (struct fy_dedup_loc){(uint32_t)f->space, 5}));
    fy_dedup_get_stats(f->d, &after);
    assert_int_equal(after.used, before.used);
    assert_true(fy_dedup_lookup(f->d, late, &loc));
    assert_int_equal(loc.page, 5);
    assert_false(fy_dedup_lookup(f->d, crowded(5), &loc));
    /* Every other entry is still found. */
    for (unsigned k = 0; k < 64; k++) {
        if (k == 5)
            continue;
        assert_true(fy_dedup_lookup(f->d, crowded(k), &loc));
        assert_int_equal(loc.page, k);
    }
}

static void test_dedup_lookup__page_overwritten_with_new_content__finds_new_not_old(void **state)
{
    struct fix *f = *state;
    fy_hash128 a = content(200, 0), b = content(200, 1);
    struct fy_dedup_loc loc;

    assert_true(place(f->d, &f->pm, f->space, 30, a));
    assert_true(place(f->d, &f->pm, f->space, 30, b));
    assert_false(fy_dedup_lookup(f->d, a, &loc));
    assert_true(fy_dedup_lookup(f->d, b, &loc));
    assert_int_equal(loc.page, 30);
}

/* ---- several spaces ------------------------------------------------------------------- */

struct two_spaces {
    struct fy_dedup *d;
    struct fy_pagemap pm[2];
    int owner_tag[2];
    int space[2];
};

static int two_setup(void **state)
{
    struct two_spaces *t = calloc(1, sizeof(*t));

    if (!t || !(t->d = fy_dedup_create(256)))
        return -1;
    for (int i = 0; i < 2; i++) {
        if (fy_pagemap_init(&t->pm[i], 32) < 0)
            return -1;
        t->pm[i].owner = &t->owner_tag[i];
        t->space[i] = fy_dedup_add_space(t->d, &t->pm[i]);
        if (t->space[i] < 0)
            return -1;
    }
    *state = t;
    return 0;
}

static int two_teardown(void **state)
{
    struct two_spaces *t = *state;

    fy_dedup_destroy(t->d);
    fy_pagemap_fini(&t->pm[0]);
    fy_pagemap_fini(&t->pm[1]);
    free(t);
    return 0;
}

static void test_dedup_add_space__two_maps__distinct_space_numbers(void **state)
{
    struct two_spaces *t = *state;

    assert_true(t->space[0] >= 0);
    assert_true(t->space[1] >= 0);
    assert_int_not_equal(t->space[0], t->space[1]);
}

static void test_dedup_lookup__content_in_second_space__found_there(void **state)
{
    struct two_spaces *t = *state;
    fy_hash128 h = content(300, 0);
    struct fy_dedup_loc loc;

    assert_true(place(t->d, &t->pm[1], t->space[1], 12, h));
    assert_true(fy_dedup_lookup(t->d, h, &loc));
    assert_int_equal(loc.space, t->space[1]);
    assert_int_equal(loc.page, 12);
}

static void test_dedup_lookup__same_page_number_in_both_spaces__each_content_found_in_its_space(void **state)
{
    struct two_spaces *t = *state;
    fy_hash128 a = content(301, 0), b = content(302, 0);
    struct fy_dedup_loc loc;

    assert_true(place(t->d, &t->pm[0], t->space[0], 4, a));
    assert_true(place(t->d, &t->pm[1], t->space[1], 4, b));
    assert_true(fy_dedup_lookup(t->d, a, &loc));
    assert_int_equal(loc.space, t->space[0]);
    assert_true(fy_dedup_lookup(t->d, b, &loc));
    assert_int_equal(loc.space, t->space[1]);
}

static void test_dedup_remove_space__space_removed__lookups_in_it_fail(void **state)
{
    struct two_spaces *t = *state;
    fy_hash128 a = content(310, 0), b = content(311, 0);
    struct fy_dedup_loc loc;

    assert_true(place(t->d, &t->pm[0], t->space[0], 1, a));
    assert_true(place(t->d, &t->pm[1], t->space[1], 2, b));
    fy_dedup_remove_space(t->d, t->space[1]);
    assert_false(fy_dedup_lookup(t->d, b, &loc));
    /* The other space still answers. */
    assert_true(fy_dedup_lookup(t->d, a, &loc));
    assert_int_equal(loc.space, t->space[0]);
}

static void test_dedup_remove_space__space_removed__same_content_inserted_elsewhere_is_found(void **state)
{
    struct two_spaces *t = *state;
    fy_hash128 b = content(311, 0);
    struct fy_dedup_loc loc;

    assert_true(place(t->d, &t->pm[1], t->space[1], 2, b));
    fy_dedup_remove_space(t->d, t->space[1]);
    assert_true(place(t->d, &t->pm[0], t->space[0], 7, b));
    assert_true(fy_dedup_lookup(t->d, b, &loc));
    assert_int_equal(loc.space, t->space[0]);
    assert_int_equal(loc.page, 7);
}

static void test_dedup_remove_space__then_add_space__number_is_reused(void **state)
{
    struct two_spaces *t = *state;

    fy_dedup_remove_space(t->d, t->space[0]);
    assert_int_equal(fy_dedup_add_space(t->d, &t->pm[0]), t->space[0]);
}

static void test_dedup_space_owner__live_space__returns_its_owner(void **state)
{
    struct two_spaces *t = *state;
    void *owner = NULL;

    assert_int_equal(fy_dedup_space_owner(t->d, t->space[0], &owner), 0);
    assert_ptr_equal(owner, &t->owner_tag[0]);
    assert_int_equal(fy_dedup_space_owner(t->d, t->space[1], &owner), 0);
    assert_ptr_equal(owner, &t->owner_tag[1]);
}

static void test_dedup_space_owner__removed_or_unused_space__returns_null(void **state)
{
    struct two_spaces *t = *state;
    void *owner = &owner;

    fy_dedup_remove_space(t->d, t->space[1]);
    assert_int_equal(fy_dedup_space_owner(t->d, t->space[1], &owner), 0);
    assert_null(owner);
    owner = &owner;
    assert_int_equal(fy_dedup_space_owner(t->d, FY_DEDUP_MAX_SPACES - 1, &owner), 0);
    assert_null(owner);
}

static void test_dedup_space_owner__space_out_of_range__fails_inval(void **state)
{
    struct two_spaces *t = *state;
    void *owner;

    assert_int_equal(fy_dedup_space_owner(t->d, -1, &owner), -FY_E_INVAL);
    assert_int_equal(fy_dedup_space_owner(t->d, FY_DEDUP_MAX_SPACES, &owner), -FY_E_INVAL);
    assert_int_equal(fy_dedup_space_owner(t->d, 0, NULL), -FY_E_INVAL);
}

static void test_dedup_add_space__all_spaces_in_use__fails_nospace(void **state)
{
    struct fy_dedup *d = fy_dedup_create(16);
    struct fy_pagemap pm = {0};

    (void)state;
    assert_non_null(d);
    assert_int_equal(fy_pagemap_init(&pm, 4), 0);
    for (int i = 0; i < FY_DEDUP_MAX_SPACES; i++)
        assert_int_equal(fy_dedup_add_space(d, &pm), i);
    assert_int_equal(fy_dedup_add_space(d, &pm), -FY_E_NOSPACE);
    assert_int_equal(fy_dedup_add_space(d, NULL), -FY_E_INVAL);
    fy_dedup_destroy(d);
    fy_pagemap_fini(&pm);
}

/* ---- a full index ------------------------------------------------------------------------ */

static void test_dedup_insert__index_full__drops_inserts_and_never_answers_wrong(void **state)
{
    const uint64_t n = 8192;
    struct fy_dedup *d = fy_dedup_create(1);
    struct fy_pagemap pm = {0};
    struct fy_dedup_stats st;
    uint64_t ok = 0, found = 0;
    int space;

    (void)state;
    assert_non_null(d);
    assert_int_equal(fy_pagemap_init(&pm, n), 0);
    space = fy_dedup_add_space(d, &pm);
    assert_true(space >= 0);
    for (uint64_t i = 0; i < n; i++)
        ok += place(d, &pm, space, i, content(i, 7));
    fy_dedup_get_stats(d, &st);
    assert_true(st.dropped > 0);
    assert_int_equal(st.dropped, n - ok);
    assert_true(st.used <= st.slots);
    for (uint64_t i = 0; i < n; i++) {
        struct fy_dedup_loc loc;
        fy_hash128 h = content(i, 7);
        if (!fy_dedup_lookup(d, h, &loc))
            continue;
        found++;
        assert_int_equal(loc.space, space);
        assert_int_equal(loc.page, i);
    }
    /* Every accepted insert is still answered (none was evicted). */
    assert_int_equal(found, ok);
    /* Unknown content is not answered by a full index either. */
    for (uint64_t i = 0; i < 1000; i++) {
        struct fy_dedup_loc loc;
        assert_false(fy_dedup_lookup(d, content(n + i, 7), &loc));
    }
    fy_dedup_destroy(d);
    fy_pagemap_fini(&pm);
}

static void test_dedup_get_stats__new_index__minimum_slots_and_nothing_used(void **state)
{
    struct fy_dedup *d = fy_dedup_create(1);
    struct fy_dedup_stats st;

    (void)state;
    assert_non_null(d);
    fy_dedup_get_stats(d, &st);
    assert_true(st.slots >= 1024);
    assert_int_equal(st.bytes, st.slots * 8);
    assert_int_equal(st.used, 0);
    assert_int_equal(st.dropped, 0);
    fy_dedup_destroy(d);
    fy_dedup_get_stats(NULL, &st);
    assert_int_equal(st.slots, 0);
}

/* ---- the memory bound ---------------------------------------------------------------------- */

/* At most 32 bytes per distinct page, page map (16) included, and the
 * index holds all of them. */
static void check_memory_bound(uint64_t n)
{
    struct fy_dedup *d = fy_dedup_create(n);
    struct fy_pagemap pm = {0};
    struct fy_dedup_stats st;
    int space;

    assert_non_null(d);
    fy_dedup_get_stats(d, &st);
    if ((double)st.bytes / (double)n + 16.0 > 32.0)
        fail_msg("index for %llu distinct pages takes %llu bytes: %.2f bytes "
                 "per page with the page map, more than 32",
                 (unsigned long long)n, (unsigned long long)st.bytes,
                 (double)st.bytes / (double)n + 16.0);
    assert_true(st.slots >= n);

    assert_int_equal(fy_pagemap_init(&pm, n), 0);
    space = fy_dedup_add_space(d, &pm);
    assert_true(space >= 0);
    for (uint64_t i = 0; i < n; i++)
        place(d, &pm, space, i, content(i, 1));
    fy_dedup_get_stats(d, &st);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.used, n);
    for (uint64_t i = 0; i < n; i += 97) {
        struct fy_dedup_loc loc;
        assert_true(fy_dedup_lookup(d, content(i, 1), &loc));
        assert_int_equal(loc.page, i);
    }
    fy_dedup_destroy(d);
    fy_pagemap_fini(&pm);
}

static void test_dedup_create__power_of_two_pages__at_most_32_bytes_per_page(void **state)
{
    (void)state;
    check_memory_bound(1u << 18);
}

static void test_dedup_create__300000_pages__at_most_32_bytes_per_page(void **state)
{
    (void)state;
    check_memory_bound(300000);
}

static void test_dedup_create__just_above_a_power_of_two__at_most_32_bytes_per_page(void **state)
{
    (void)state;
    check_memory_bound((1u << 16) + 1);
}

/* ---- threads ------------------------------------------------------------------------------------ */

#define MT_THREADS 4
#define MT_PAGES 16384 /* per thread */

struct mt {
    struct fy_dedup *d;
    struct fy_pagemap pm;
    int space;
    unsigned id;
    unsigned errors;
};

static void *mt_worker(void *arg)
{
    struct mt *w = arg;
    uint64_t first = (uint64_t)w->id * MT_PAGES;
    struct fy_dedup_loc loc;

    for (uint64_t p = first; p < first + MT_PAGES; p++) {
        fy_hash128 h = content(p, 0);
        place(w->d, &w->pm, w->space, p, h);
        if (!fy_dedup_lookup(w->d, h, &loc) || loc.page != p)
            w->errors++;
        /* A look at another thread's content: absent or right, never wrong. */
        uint64_t q = (p + MT_PAGES) % ((uint64_t)MT_THREADS * MT_PAGES);
        fy_hash128 hq = content(q, 0);
        if (fy_dedup_lookup(w->d, hq, &loc) && loc.page != q)
            w->errors++;
    }
    /* Overwrite every other page with new content. */
    for (uint64_t p = first; p < first + MT_PAGES; p += 2) {
        fy_hash128 old = content(p, 0), h = content(p, 1);
        place(w->d, &w->pm, w->space, p, h);
        if (fy_dedup_lookup(w->d, old, &loc))
            w->errors++;
        if (!fy_dedup_lookup(w->d, h, &loc) || loc.page != p)
            w->errors++;
    }
    return NULL;
}

static void test_dedup__four_threads_inserting_disjoint_pages__every_lookup_correct(void **state)
{
    struct mt w[MT_THREADS];
    pthread_t tid[MT_THREADS];
    struct fy_dedup *d = fy_dedup_create((uint64_t)MT_THREADS * MT_PAGES * 2);
    struct fy_pagemap pm = {0};
    struct fy_dedup_stats st;
    int space;

    (void)state;
    assert_non_null(d);
    assert_int_equal(fy_pagemap_init(&pm, (uint64_t)MT_THREADS * MT_PAGES), 0);
    space = fy_dedup_add_space(d, &pm);
    for (unsigned i = 0; i < MT_THREADS; i++) {
        w[i] = (struct mt){.d = d, .space = space, .id = i};
        w[i].pm = pm; /* the same map: held and npages shared */
        assert_int_equal(pthread_create(&tid[i], NULL, mt_worker, &w[i]), 0);
    }
    for (unsigned i = 0; i < MT_THREADS; i++) {
        pthread_join(tid[i], NULL);
        assert_int_equal(w[i].errors, 0);
    }
    fy_dedup_get_stats(d, &st);
    assert_int_equal(st.dropped, 0);
    for (uint64_t p = 0; p < (uint64_t)MT_THREADS * MT_PAGES; p++) {
        struct fy_dedup_loc loc;
        fy_hash128 now = content(p, p % 2 == 0 ? 1 : 0);
        fy_hash128 old = content(p, 0);
        assert_true(fy_dedup_lookup(d, now, &loc));
        assert_int_equal(loc.space, space);
        assert_int_equal(loc.page, p);
        if (p % 2 == 0)
            assert_false(fy_dedup_lookup(d, old, &loc));
    }
    fy_dedup_destroy(d);
    fy_pagemap_fini(&pm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pagemap_init__n_pages__all_entries_unknown),
        cmocka_unit_test(test_pagemap_init__zero_pages_or_null__fails_inval),
        cmocka_unit_test(test_pagemap_set__one_entry__get_returns_it_and_others_unchanged),
#define FIX(f) cmocka_unit_test_setup_teardown(f, fix_setup, fix_teardown)
        FIX(test_dedup_lookup__after_insert__finds_the_location),
        FIX(test_dedup_lookup__unknown_hash__fails),
        FIX(test_dedup_lookup__hash_with_same_tag_and_home_but_other_low_bits__fails),
        FIX(test_dedup_lookup__inserted_but_page_map_not_set__fails),
        FIX(test_dedup_insert__same_content_twice__keeps_first_location),
        FIX(test_dedup_insert__page_beyond_space__is_never_returned),
        FIX(test_dedup_lookup__location_overwritten_by_target__fails),
        FIX(test_dedup_insert__after_overwrite__lookup_finds_new_page),
        FIX(test_dedup_insert__neighbourhood_full_and_one_stale__reuses_the_stale_slot),
        FIX(test_dedup_lookup__page_overwritten_with_new_content__finds_new_not_old),
#undef FIX
#define TWO(f) cmocka_unit_test_setup_teardown(f, two_setup, two_teardown)
        TWO(test_dedup_add_space__two_maps__distinct_space_numbers),
        TWO(test_dedup_lookup__content_in_second_space__found_there),
        TWO(test_dedup_lookup__same_page_number_in_both_spaces__each_content_found_in_its_space),
        TWO(test_dedup_remove_space__space_removed__lookups_in_it_fail),
        TWO(test_dedup_remove_space__space_removed__same_content_inserted_elsewhere_is_found),
        TWO(test_dedup_remove_space__then_add_space__number_is_reused),
        TWO(test_dedup_space_owner__live_space__returns_its_owner),
        TWO(test_dedup_space_owner__removed_or_unused_space__returns_null),
        TWO(test_dedup_space_owner__space_out_of_range__fails_inval),
#undef TWO
        cmocka_unit_test(test_dedup_add_space__all_spaces_in_use__fails_nospace),
        cmocka_unit_test(test_dedup_insert__index_full__drops_inserts_and_never_answers_wrong),
        cmocka_unit_test(test_dedup_get_stats__new_index__minimum_slots_and_nothing_used),
        cmocka_unit_test(test_dedup_create__power_of_two_pages__at_most_32_bytes_per_page),
        cmocka_unit_test(test_dedup_create__300000_pages__at_most_32_bytes_per_page),
        cmocka_unit_test(test_dedup_create__just_above_a_power_of_two__at_most_32_bytes_per_page),
        cmocka_unit_test(test_dedup__four_threads_inserting_disjoint_pages__every_lookup_correct),
    };
    return cmocka_run_group_tests_name("dedup", tests, NULL, NULL);
}
