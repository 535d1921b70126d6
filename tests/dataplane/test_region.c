/* Unit tests of dataplane/region.c: memfd, file, descriptor and process
 * regions, and the bounds checks every access goes through. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ferry/classifier.h"
#include "ferry/error.h"
#include "ferry/region.h"

#define NPAGES 16u
#define REGION_LEN ((uint64_t)NPAGES * FY_PAGE_SIZE)

/* ---- helpers ---------------------------------------------------------- */

static void fill_page(uint8_t *p, unsigned seed)
{
    for (unsigned i = 0; i < FY_PAGE_SIZE; i++)
        p[i] = (uint8_t)(i * 13u + seed * 101u + 7u);
}

static bool page_has_pattern(const uint8_t *p, unsigned seed)
{
    for (unsigned i = 0; i < FY_PAGE_SIZE; i++)
        if (p[i] != (uint8_t)(i * 13u + seed * 101u + 7u))
            return false;
    return true;
}

static bool all_bytes(const uint8_t *p, size_t len, uint8_t v)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != v)
            return false;
    return true;
}

static uint8_t *base_of(const struct fy_region *r)
{
    return fy_region_base(r);
}

/* Writes pattern 'page' (its own number as seed) into every page. */
static void fill_region(struct fy_region *r)
{
    uint8_t page[FY_PAGE_SIZE];

    for (uint64_t i = 0; i < fy_region_pages(r); i++) {
        const void *d = page;
        fill_page(page, (unsigned)i);
        assert_int_equal(fy_region_write_pages(r, &i, &d, 1), 0);
    }
}

/* Copies the whole region, for "nothing changed" checks. */
static uint8_t *snapshot(struct fy_region *r)
{
    uint8_t *buf = malloc(fy_region_size(r));

    assert_non_null(buf);
    assert_int_equal(fy_region_read(r, 0, buf, fy_region_size(r)), 0);
    return buf;
}

static void assert_unchanged(struct fy_region *r, const uint8_t *before)
{
    uint8_t *now = snapshot(r);

    assert_memory_equal(now, before, fy_region_size(r));
    free(now);
}

/* ---- fixtures ---------------------------------------------------------- */

/* A memfd region of NPAGES pages, page i filled with pattern i. */
static int memfd_setup(void **state)
{
    struct fy_region *r = NULL;

    if (fy_region_create_memfd("test-region", REGION_LEN, &r) < 0)
        return -1;
    fill_region(r);
    *state = r;
    return 0;
}

static int region_teardown(void **state)
{
    fy_region_close(*state);
    return 0;
}

/* A process region over a page-aligned buffer of this process. */
struct self_region {
    uint8_t *buf;
    struct fy_region *r;
};

static int pid_setup(void **state)
{
    struct self_region *sr = calloc(1, sizeof(*sr));

    if (!sr || posix_memalign((void **)&sr->buf, FY_PAGE_SIZE, REGION_LEN) != 0)
        return -1;
    for (unsigned i = 0; i < NPAGES; i++)
        fill_page(sr->buf + (size_t)i * FY_PAGE_SIZE, i);
    if (fy_region_open_pid(getpid(), (uint64_t)(uintptr_t)sr->buf, REGION_LEN,
                           FY_REGION_RDWR, &sr->r) < 0) {
        fprintf(stderr, "pid region over self: %s\n", fy_error_detail());
        return -1;
    }
    *state = sr;
    return 0;
}

static int pid_teardown(void **state)
{
    struct self_region *sr = *state;

    fy_region_close(sr->r);
    free(sr->buf);
    free(sr);
    return 0;
}

/* A fresh temporary directory under /tmp for file regions. */
struct tmpdir {
    char dir[64];
    char path[128];
};

static int tmpdir_setup(void **state)
{
    struct tmpdir *t = calloc(1, sizeof(*t));

    if (!t)
        return -1;
    snprintf(t->dir, sizeof(t->dir), "/tmp/ferry-test-region-XXXXXX");
    if (!mkdtemp(t->dir))
        return -1;
    snprintf(t->path, sizeof(t->path), "%s/guest.ram", t->dir);
    *state = t;
    return 0;
}

static int tmpdir_teardown(void **state)
{
    struct tmpdir *t = *state;

    unlink(t->path);
    rmdir(t->dir);
    free(t);
    return 0;
}

/* ---- memfd regions ------------------------------------------------------ */

static void test_region_create_memfd__valid_length__size_pages_and_name_set(void **state)
{
    struct fy_region *r = NULL;

    (void)state;
    assert_int_equal(fy_region_create_memfd("guest0", REGION_LEN, &r), 0);
    assert_non_null(r);
    assert_int_equal(fy_region_size(r), REGION_LEN);
    assert_int_equal(fy_region_pages(r), NPAGES);
    assert_non_null(fy_region_base(r));
    assert_true(fy_region_fd(r) >= 0);
    assert_string_equal(fy_region_name(r), "memfd:guest0");
    fy_region_close(r);
}

static void test_region_create_memfd__new_region__reads_zero(void **state)
{
    struct fy_region *r = NULL;
    uint8_t *buf = malloc(REGION_LEN);

    (void)state;
    assert_non_null(buf);
    assert_int_equal(fy_region_create_memfd("zero", REGION_LEN, &r), 0);
    memset(buf, 0xaa, REGION_LEN);
    assert_int_equal(fy_region_read(r, 0, buf, REGION_LEN), 0);
    assert_true(all_bytes(buf, REGION_LEN, 0));
    fy_region_close(r);
    free(buf);
}

static void test_region_create_memfd__zero_or_unaligned_length__fails_inval(void **state)
{
    struct fy_region *r = NULL;

    (void)state;
    assert_int_equal(fy_region_create_memfd("bad", 0, &r), -FY_E_INVAL);
    assert_int_equal(fy_region_create_memfd("bad", FY_PAGE_SIZE + 1, &r), -FY_E_INVAL);
    assert_int_equal(fy_region_create_memfd("bad", 100, &r), -FY_E_INVAL);
    assert_null(r);
}

static void test_region_read_pages__pages_out_of_order__copied_in_list_order(void **state)
{
    struct fy_region *r = *state;
    uint64_t pages[4] = {7, 0, 15, 7};
    uint8_t *buf = malloc(4 * FY_PAGE_SIZE);

    assert_non_null(buf);
    assert_int_equal(fy_region_read_pages(r, pages, 4, buf), 0);
    for (unsigned i = 0; i < 4; i++)
        assert_true(page_has_pattern(buf + (size_t)i * FY_PAGE_SIZE, (unsigned)pages[i]));
    free(buf);
}

static void test_region_write_pages__scattered_pages__land_at_their_numbers(void **state)
{
    struct fy_region *r = *state;
    uint8_t a[FY_PAGE_SIZE], b[FY_PAGE_SIZE], out[FY_PAGE_SIZE];
    uint64_t pages[2] = {12, 3};
    const void *data[2] = {a, b};

    fill_page(a, 200);
    fill_page(b, 201);
    assert_int_equal(fy_region_write_pages(r, pages, data, 2), 0);
    assert_int_equal(fy_region_read(r, 12 * FY_PAGE_SIZE, out, FY_PAGE_SIZE), 0);
    assert_memory_equal(out, a, FY_PAGE_SIZE);
    assert_int_equal(fy_region_read(r, 3 * FY_PAGE_SIZE, out, FY_PAGE_SIZE), 0);
    assert_memory_equal(out, b, FY_PAGE_SIZE);
    /* Neighbours untouched. */
    assert_true(page_has_pattern(base_of(r) + 11 * FY_PAGE_SIZE, 11));
    assert_true(page_has_pattern(base_of(r) + 13 * FY_PAGE_SIZE, 13));
    assert_true(page_has_pattern(base_of(r) + 2 * FY_PAGE_SIZE, 2));
    assert_true(page_has_pattern(base_of(r) + 4 * FY_PAGE_SIZE, 4));
}

static void test_region_write__unaligned_bytes__read_back_equal(void **state)
{
    struct fy_region *r = *state;
    const char msg[] = "ferry carries pages across";
    char out[sizeof(msg)];

    assert_int_equal(fy_region_write(r, 5 * FY_PAGE_SIZE - 7, msg, sizeof(msg)), 0);
    assert_int_equal(fy_region_read(r, 5 * FY_PAGE_SIZE - 7, out, sizeof(out)), 0);
    assert_memory_equal(out, msg, sizeof(msg));
}

static void test_region_write__base_pointer__sees_the_same_bytes(void **state)
{
    struct fy_region *r = *state;
    uint8_t *base = fy_region_base(r);
    uint32_t v = 0xdeadbeef;

    assert_int_equal(fy_region_write(r, 4 * FY_PAGE_SIZE + 8, &v, sizeof(v)), 0);
    assert_memory_equal(base + 4 * FY_PAGE_SIZE + 8, &v, sizeof(v));
}

static void test_region_zero__memfd_range__reads_zero_and_neighbours_kept(void **state)
{
    struct fy_region *r = *state;
    uint8_t *buf = malloc(REGION_LEN);

    assert_non_null(buf);
    assert_int_equal(fy_region_zero(r, 2 * FY_PAGE_SIZE, 3 * FY_PAGE_SIZE), 0);
    assert_int_equal(fy_region_read(r, 0, buf, REGION_LEN), 0);
    for (unsigned i = 0; i < NPAGES; i++) {
        const uint8_t *p = buf + (size_t)i * FY_PAGE_SIZE;
        if (i >= 2 && i < 5)
            assert_true(all_bytes(p, FY_PAGE_SIZE, 0));
        else
            assert_true(page_has_pattern(p, i));
    }
    /* The mapping sees the hole too. */
    assert_true(all_bytes((uint8_t *)base_of(r) + 2 * FY_PAGE_SIZE,
                          3 * FY_PAGE_SIZE, 0));
    free(buf);
}

static void test_region_zero__whole_region__reads_zero(void **state)
{
    struct fy_region *r = *state;
    uint8_t *buf = malloc(REGION_LEN);

    assert_non_null(buf);
    assert_int_equal(fy_region_zero(r, 0, REGION_LEN), 0);
    assert_int_equal(fy_region_read(r, 0, buf, REGION_LEN), 0);
    assert_true(all_bytes(buf, REGION_LEN, 0));
    free(buf);
}

static long long allocated_bytes(const struct fy_region *r)
{
    struct stat st;

    assert_int_equal(fstat(fy_region_fd(r), &st), 0);
    return (long long)st.st_blocks * 512;
}

static void test_region_zero__memfd_pages__memory_given_back(void **state)
{
    struct fy_region *r = *state;
    long long before = allocated_bytes(r);

    assert_int_equal(fy_region_zero(r, 4 * FY_PAGE_SIZE, 8 * FY_PAGE_SIZE), 0);
    assert_true(allocated_bytes(r) <= before - 8 * FY_PAGE_SIZE);
}

static void test_region_zero__zero_length_first__succeeds_and_later_zeros_still_give_memory_back(void **state)
{
    struct fy_region *r = *state;
    uint8_t *before = snapshot(r);
    long long bytes;

    assert_int_equal(fy_region_zero(r, FY_PAGE_SIZE, 0), 0);
    assert_unchanged(r, before);
    bytes = allocated_bytes(r);
    assert_int_equal(fy_region_zero(r, 4 * FY_PAGE_SIZE, 8 * FY_PAGE_SIZE), 0);
    assert_true(allocated_bytes(r) <= bytes - 8 * FY_PAGE_SIZE);
    free(before);
}

static void test_region_zero__misaligned_offset__fails_inval_and_changes_nothing(void **state)
{
    struct fy_region *r = *state;
    uint8_t *before = snapshot(r);

    assert_int_equal(fy_region_zero(r, FY_PAGE_SIZE + 1, FY_PAGE_SIZE), -FY_E_INVAL);
    assert_unchanged(r, before);
    free(before);
}

static void test_region_zero__misaligned_length__fails_inval_and_changes_nothing(void **state)
{
    struct fy_region *r = *state;
    uint8_t *before = snapshot(r);

    assert_int_equal(fy_region_zero(r, FY_PAGE_SIZE, 100), -FY_E_INVAL);
    assert_int_equal(fy_region_zero(r, 0, FY_PAGE_SIZE + 512), -FY_E_INVAL);
    assert_unchanged(r, before);
    free(before);
}

static void test_region_copy_page__distinct_pages__destination_gets_source_bytes(void **state)
{
    struct fy_region *r = *state;
    const uint8_t *base = base_of(r);

    assert_int_equal(fy_region_copy_page(r, 9, 2), 0);
    assert_true(page_has_pattern(base + 9 * FY_PAGE_SIZE, 2));
    assert_true(page_has_pattern(base + 2 * FY_PAGE_SIZE, 2));
    assert_true(page_has_pattern(base + 8 * FY_PAGE_SIZE, 8));
    assert_true(page_has_pattern(base + 10 * FY_PAGE_SIZE, 10));
}

static void test_region_copy_page__same_page__content_kept(void **state)
{
    struct fy_region *r = *state;

    assert_int_equal(fy_region_copy_page(r, 6, 6), 0);
    assert_true(page_has_pattern((uint8_t *)base_of(r) + 6 * FY_PAGE_SIZE, 6));
}

/* ---- residency and reads that do not fault -------------------------------- */

static void test_region_resident__new_memfd_then_one_page_written__only_that_page_resident(void **state)
{
    struct fy_region *r = NULL;
    uint8_t vec[NPAGES];
    uint8_t page[FY_PAGE_SIZE];
    const void *d = page;
    uint64_t p = 3;

    (void)state;
    assert_int_equal(fy_region_create_memfd("resident", REGION_LEN, &r), 0);
    memset(vec, 0xaa, sizeof(vec));
    assert_int_equal(fy_region_resident(r, 0, NPAGES, vec), 0);
    assert_true(all_bytes(vec, NPAGES, 0));
    fill_page(page, 3);
    assert_int_equal(fy_region_write_pages(r, &p, &d, 1), 0);
    assert_int_equal(fy_region_resident(r, 0, NPAGES, vec), 0);
    for (unsigned i = 0; i < NPAGES; i++)
        assert_int_equal(vec[i], i == 3 ? 1 : 0);
    /* A sub-range answers for its own pages. */
    assert_int_equal(fy_region_resident(r, 3, 2, vec), 0);
    assert_int_equal(vec[0], 1);
    assert_int_equal(vec[1], 0);
    /* Zeroing gives the page back. */
    assert_int_equal(fy_region_zero(r, 3 * FY_PAGE_SIZE, FY_PAGE_SIZE), 0);
    assert_int_equal(fy_region_resident(r, 3, 1, vec), 0);
    assert_int_equal(vec[0], 0);
    fy_region_close(r);
}

static void test_region_resident__range_past_the_end__fails_range_vector_untouched(void **state)
{
    struct fy_region *r = *state;
    uint8_t vec[NPAGES + 1];

    memset(vec, 0xaa, sizeof(vec));
    assert_int_equal(fy_region_resident(r, 0, NPAGES + 1, vec), -FY_E_RANGE);
    assert_int_equal(fy_region_resident(r, NPAGES, 1, vec), -FY_E_RANGE);
    assert_int_equal(fy_region_resident(r, 1, UINT64_MAX, vec), -FY_E_RANGE);
    assert_true(all_bytes(vec, sizeof(vec), 0xaa));
}

static void test_region_read_nofault__hole__reads_zero_and_stays_a_hole(void **state)
{
    struct fy_region *r = NULL;
    uint8_t buf[2 * FY_PAGE_SIZE], vec[2];
    uint8_t page[FY_PAGE_SIZE];
    const void *d = page;
    uint64_t p = 5;

    (void)state;
    assert_int_equal(fy_region_create_memfd("nofault", REGION_LEN, &r), 0);
    fill_page(page, 5);
    assert_int_equal(fy_region_write_pages(r, &p, &d, 1), 0);
    memset(buf, 0xaa, sizeof(buf));
    assert_int_equal(fy_region_read_nofault(r, 4 * FY_PAGE_SIZE, buf, sizeof(buf)), 0);
    assert_true(all_bytes(buf, FY_PAGE_SIZE, 0));
    assert_true(page_has_pattern(buf + FY_PAGE_SIZE, 5));
    assert_int_equal(fy_region_resident(r, 4, 2, vec), 0);
    assert_int_equal(vec[0], 0);
    assert_int_equal(vec[1], 1);
    fy_region_close(r);
}

static void test_region_read_nofault__unaligned_bytes__equal_to_read(void **state)
{
    struct fy_region *r = *state;
    uint8_t a[300], b[300];

    assert_int_equal(fy_region_read_nofault(r, 3 * FY_PAGE_SIZE - 100, a, sizeof(a)), 0);
    assert_int_equal(fy_region_read(r, 3 * FY_PAGE_SIZE - 100, b, sizeof(b)), 0);
    assert_memory_equal(a, b, sizeof(a));
}

static void test_region_read_nofault__past_the_end__fails_range_buffer_untouched(void **state)
{
    struct fy_region *r = *state;
    uint8_t buf[64];

    memset(buf, 0x5a, sizeof(buf));
    assert_int_equal(fy_region_read_nofault(r, REGION_LEN - 32, buf, 64), -FY_E_RANGE);
    assert_int_equal(fy_region_read_nofault(r, UINT64_MAX - 15, buf, 64), -FY_E_RANGE);
    assert_true(all_bytes(buf, sizeof(buf), 0x5a));
}

static void test_region_prefault__new_memfd__every_page_resident_and_zero(void **state)
{
    struct fy_region *r = NULL;
    uint8_t vec[NPAGES];

    (void)state;
    assert_int_equal(fy_region_create_memfd("prefault", REGION_LEN, &r), 0);
    assert_int_equal(fy_region_prefault(r), 0);
    assert_int_equal(fy_region_resident(r, 0, NPAGES, vec), 0);
    assert_true(all_bytes(vec, NPAGES, 1));
    assert_true(all_bytes(base_of(r), REGION_LEN, 0));
    fy_region_close(r);
}

/* ---- out-of-range accesses (memfd) -------------------------------------- */

static void test_region_read_pages__page_equal_to_npages__fails_range_buffer_untouched(void **state)
{
    struct fy_region *r = *state;
    uint64_t page = NPAGES;
    uint8_t buf[FY_PAGE_SIZE];

    memset(buf, 0x5a, sizeof(buf));
    assert_int_equal(fy_region_read_pages(r, &page, 1, buf), -FY_E_RANGE);
    assert_true(all_bytes(buf, sizeof(buf), 0x5a));
}

static void test_region_read_pages__last_of_list_out_of_range__fails_range_buffer_untouched(void **state)
{
    struct fy_region *r = *state;
    uint64_t pages[3] = {0, 1, UINT64_MAX};
    uint8_t *buf = malloc(3 * FY_PAGE_SIZE);

    assert_non_null(buf);
    memset(buf, 0x5a, 3 * FY_PAGE_SIZE);
    assert_int_equal(fy_region_read_pages(r, pages, 3, buf), -FY_E_RANGE);
    assert_true(all_bytes(buf, 3 * FY_PAGE_SIZE, 0x5a));
    free(buf);
}

static void test_region_write_pages__one_page_out_of_range__fails_range_and_changes_nothing(void **state)
{
    struct fy_region *r = *state;
    uint8_t *before = snapshot(r);
    uint8_t a[FY_PAGE_SIZE];
    uint64_t pages[3] = {1, NPAGES, 2};
    const void *data[3] = {a, a, a};
    uint64_t huge = UINT64_MAX >> FY_PAGE_SHIFT;

    memset(a, 0xee, sizeof(a));
    assert_int_equal(fy_region_write_pages(r, pages, data, 3), -FY_E_RANGE);
    /* A page number whose byte offset would wrap around. */
    assert_int_equal(fy_region_write_pages(r, &huge, data, 1), -FY_E_RANGE);
    assert_unchanged(r, before);
    free(before);
}

static void test_region_read__past_the_end__fails_range_buffer_untouched(void **state)
{
    struct fy_region *r = *state;
    uint8_t buf[64];

    memset(buf, 0x5a, sizeof(buf));
    assert_int_equal(fy_region_read(r, REGION_LEN - 32, buf, 64), -FY_E_RANGE);
    assert_int_equal(fy_region_read(r, REGION_LEN, buf, 1), -FY_E_RANGE);
    assert_int_equal(fy_region_read(r, REGION_LEN + FY_PAGE_SIZE, buf, 0), -FY_E_RANGE);
    assert_true(all_bytes(buf, sizeof(buf), 0x5a));
}

static void test_region_read__overflowing_offset__fails_range_buffer_untouched(void **state)
{
    struct fy_region *r = *state;
    uint8_t buf[64];

    memset(buf, 0x5a, sizeof(buf));
    /* offset + len wraps to a small number. */
    assert_int_equal(fy_region_read(r, UINT64_MAX - 15, buf, 64), -FY_E_RANGE);
    assert_int_equal(fy_region_read(r, 64, buf, UINT64_MAX - 31), -FY_E_RANGE);
    assert_true(all_bytes(buf, sizeof(buf), 0x5a));
}

static void test_region_write__past_the_end_or_overflowing__fails_range_and_changes_nothing(void **state)
{
    struct fy_region *r = *state;
    uint8_t *before = snapshot(r);
    uint8_t buf[64];

    memset(buf, 0xee, sizeof(buf));
    assert_int_equal(fy_region_write(r, REGION_LEN - 32, buf, 64), -FY_E_RANGE);
    assert_int_equal(fy_region_write(r, REGION_LEN, buf, 1), -FY_E_RANGE);
    assert_int_equal(fy_region_write(r, UINT64_MAX - 15, buf, 64), -FY_E_RANGE);
    assert_int_equal(fy_region_write(r, 64, buf, UINT64_MAX - 31), -FY_E_RANGE);
    assert_unchanged(r, before);
    free(before);
}

static void test_region_zero__past_the_end_or_overflowing__fails_range_and_changes_nothing(void **state)
{
    struct fy_region *r = *state;
    uint8_t *before = snapshot(r);
    uint64_t wrap = UINT64_MAX & ~(uint64_t)(FY_PAGE_SIZE - 1);

    assert_int_equal(fy_region_zero(r, REGION_LEN - FY_PAGE_SIZE, 2 * FY_PAGE_SIZE),
                     -FY_E_RANGE);
    assert_int_equal(fy_region_zero(r, REGION_LEN, FY_PAGE_SIZE), -FY_E_RANGE);
    assert_int_equal(fy_region_zero(r, wrap, 2 * FY_PAGE_SIZE), -FY_E_RANGE);
    assert_int_equal(fy_region_zero(r, FY_PAGE_SIZE, wrap), -FY_E_RANGE);
    assert_unchanged(r, before);
    free(before);
}

static void test_region_copy_page__page_out_of_range__fails_range_and_changes_nothing(void **state)
{
    struct fy_region *r = *state;
    uint8_t *before = snapshot(r);

    assert_int_equal(fy_region_copy_page(r, NPAGES, 0), -FY_E_RANGE);
    assert_int_equal(fy_region_copy_page(r, 0, NPAGES), -FY_E_RANGE);
    assert_int_equal(fy_region_copy_page(r, UINT64_MAX, 1), -FY_E_RANGE);
    assert_int_equal(fy_region_copy_page(r, 1, UINT64_MAX >> FY_PAGE_SHIFT), -FY_E_RANGE);
    assert_unchanged(r, before);
    free(before);
}

/* ---- file regions ---------------------------------------------------------- */

static void test_region_open_file__missing_file_with_write__created_and_grown(void **state)
{
    struct tmpdir *t = *state;
    struct fy_region *r = NULL;
    struct stat st;

    assert_int_equal(fy_region_open_file(t->path, 2 * FY_PAGE_SIZE, REGION_LEN,
                                         FY_REGION_RDWR, &r), 0);
    assert_int_equal(stat(t->path, &st), 0);
    assert_int_equal(st.st_size, 2 * FY_PAGE_SIZE + REGION_LEN);
    assert_int_equal(fy_region_size(r), REGION_LEN);
    assert_int_equal(fy_region_pages(r), NPAGES);
    assert_non_null(strstr(fy_region_name(r), t->path));
    fy_region_close(r);
}

static void test_region_open_file__write_at_offset__lands_in_the_file_at_offset(void **state)
{
    struct tmpdir *t = *state;
    struct fy_region *r = NULL;
    uint8_t page[FY_PAGE_SIZE], out[FY_PAGE_SIZE];
    const void *d = page;
    uint64_t p = 1;
    int fd;

    assert_int_equal(fy_region_open_file(t->path, 2 * FY_PAGE_SIZE, REGION_LEN,
                                         FY_REGION_RDWR, &r), 0);
    fill_page(page, 77);
    assert_int_equal(fy_region_write_pages(r, &p, &d, 1), 0);
    fy_region_close(r);

    fd = open(t->path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, out, FY_PAGE_SIZE, 3 * FY_PAGE_SIZE), FY_PAGE_SIZE);
    close(fd);
    assert_memory_equal(out, page, FY_PAGE_SIZE);
}

static void test_region_open_file__reopened_read_only__sees_written_data(void **state)
{
    struct tmpdir *t = *state;
    struct fy_region *r = NULL;
    uint8_t out[FY_PAGE_SIZE];
    uint64_t p = 5;

    assert_int_equal(fy_region_open_file(t->path, 0, REGION_LEN, FY_REGION_RDWR, &r), 0);
    fill_region(r);
    fy_region_close(r);
    r = NULL;
    assert_int_equal(fy_region_open_file(t->path, 0, REGION_LEN, FY_REGION_READ, &r), 0);
    assert_int_equal(fy_region_read_pages(r, &p, 1, out), 0);
    assert_true(page_has_pattern(out, 5));
    fy_region_close(r);
}

static void test_region_open_file__read_only__refuses_writes_with_inval(void **state)
{
    struct tmpdir *t = *state;
    struct fy_region *r = NULL;
    uint8_t page[FY_PAGE_SIZE];
    const void *d = page;
    uint64_t p = 0;
    uint8_t *before;

    assert_int_equal(fy_region_open_file(t->path, 0, REGION_LEN, FY_REGION_RDWR, &r), 0);
    fill_region(r);
    fy_region_close(r);
    r = NULL;
    assert_int_equal(fy_region_open_file(t->path, 0, REGION_LEN, FY_REGION_READ, &r), 0);
    before = snapshot(r);
    memset(page, 0xee, sizeof(page));
    assert_int_equal(fy_region_write_pages(r, &p, &d, 1), -FY_E_INVAL);
    assert_int_equal(fy_region_write(r, 0, page, 16), -FY_E_INVAL);
    assert_int_equal(fy_region_zero(r, 0, FY_PAGE_SIZE), -FY_E_INVAL);
    assert_int_equal(fy_region_copy_page(r, 1, 0), -FY_E_INVAL);
    assert_unchanged(r, before);
    free(before);
    fy_region_close(r);
}

static void test_region_open_file__read_only_file_too_short__fails_range(void **state)
{
    struct tmpdir *t = *state;
    struct fy_region *r = NULL;
    int fd = open(t->path, O_CREAT | O_RDWR, 0600);

    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, REGION_LEN - FY_PAGE_SIZE), 0);
    close(fd);
    assert_int_equal(fy_region_open_file(t->path, 0, REGION_LEN, FY_REGION_READ, &r),
                     -FY_E_RANGE);
    assert_null(r);
    /* Long enough, but not from this offset. */
    assert_int_equal(fy_region_open_file(t->path, 2 * FY_PAGE_SIZE,
                                         REGION_LEN - 2 * FY_PAGE_SIZE,
                                         FY_REGION_READ, &r), -FY_E_RANGE);
    assert_null(r);
}

static void test_region_open_file__missing_file_read_only__fails(void **state)
{
    struct tmpdir *t = *state;
    struct fy_region *r = NULL;

    assert_true(fy_region_open_file(t->path, 0, REGION_LEN, FY_REGION_READ, &r) < 0);
    assert_null(r);
    assert_int_equal(access(t->path, F_OK), -1);
}

static void test_region_open_file__unaligned_offset_or_length__fails_inval(void **state)
{
    struct tmpdir *t = *state;
    struct fy_region *r = NULL;

    assert_int_equal(fy_region_open_file(t->path, 100, REGION_LEN, FY_REGION_RDWR, &r),
                     -FY_E_INVAL);
    assert_int_equal(fy_region_open_file(t->path, 0, REGION_LEN + 1, FY_REGION_RDWR, &r),
                     -FY_E_INVAL);
    assert_int_equal(fy_region_open_file(t->path, 0, 0, FY_REGION_RDWR, &r), -FY_E_INVAL);
    assert_null(r);
}

static void test_region_zero__file_region__reads_zero(void **state)
{
    struct tmpdir *t = *state;
    struct fy_region *r = NULL;
    uint8_t out[2 * FY_PAGE_SIZE];

    assert_int_equal(fy_region_open_file(t->path, FY_PAGE_SIZE, REGION_LEN,
                                         FY_REGION_RDWR, &r), 0);
    fill_region(r);
    assert_int_equal(fy_region_zero(r, 4 * FY_PAGE_SIZE, 2 * FY_PAGE_SIZE), 0);
    assert_int_equal(fy_region_read(r, 4 * FY_PAGE_SIZE, out, sizeof(out)), 0);
    assert_true(all_bytes(out, sizeof(out), 0));
    assert_int_equal(fy_region_read(r, 3 * FY_PAGE_SIZE, out, FY_PAGE_SIZE), 0);
    assert_true(page_has_pattern(out, 3));
    assert_int_equal(fy_region_read(r, 6 * FY_PAGE_SIZE, out, FY_PAGE_SIZE), 0);
    assert_true(page_has_pattern(out, 6));
    fy_region_close(r);
}

/* ---- descriptor regions ------------------------------------------------------ */

static void test_region_open_fd__caller_closes_its_fd__region_still_works(void **state)
{
    struct fy_region *r = NULL;
    uint8_t page[FY_PAGE_SIZE], out[FY_PAGE_SIZE];
    const void *d = page;
    uint64_t p = 3;
    int fd = memfd_create("caller", MFD_CLOEXEC);

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)REGION_LEN), 0);
    fill_page(page, 3);
    assert_int_equal(pwrite(fd, page, FY_PAGE_SIZE, 3 * FY_PAGE_SIZE), FY_PAGE_SIZE);
    assert_int_equal(fy_region_open_fd(fd, 0, REGION_LEN, FY_REGION_RDWR, &r), 0);
    assert_true(fy_region_fd(r) >= 0);
    assert_int_not_equal(fy_region_fd(r), fd);
    assert_int_equal(close(fd), 0);

    assert_int_equal(fy_region_read_pages(r, &p, 1, out), 0);
    assert_true(page_has_pattern(out, 3));
    fill_page(page, 44);
    p = 10;
    assert_int_equal(fy_region_write_pages(r, &p, &d, 1), 0);
    assert_int_equal(fy_region_read_pages(r, &p, 1, out), 0);
    assert_true(page_has_pattern(out, 44));
    /* Its own descriptor is open and sees the writes. */
    assert_int_equal(pread(fy_region_fd(r), out, FY_PAGE_SIZE, 10 * FY_PAGE_SIZE),
                     FY_PAGE_SIZE);
    assert_true(page_has_pattern(out, 44));
    /* Zeroing punches through its own descriptor. */
    assert_int_equal(fy_region_zero(r, 10 * FY_PAGE_SIZE, FY_PAGE_SIZE), 0);
    assert_int_equal(fy_region_read_pages(r, &p, 1, out), 0);
    assert_true(all_bytes(out, FY_PAGE_SIZE, 0));
    fy_region_close(r);
}

static void test_region_open_fd__offset_into_descriptor__maps_from_offset(void **state)
{
    struct fy_region *r = NULL;
    uint8_t page[FY_PAGE_SIZE], out[FY_PAGE_SIZE];
    uint64_t p = 0;
    int fd = memfd_create("offset", MFD_CLOEXEC);

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)(REGION_LEN + 4 * FY_PAGE_SIZE)), 0);
    fill_page(page, 9);
    assert_int_equal(pwrite(fd, page, FY_PAGE_SIZE, 4 * FY_PAGE_SIZE), FY_PAGE_SIZE);
    assert_int_equal(fy_region_open_fd(fd, 4 * FY_PAGE_SIZE, REGION_LEN,
                                       FY_REGION_READ, &r), 0);
    close(fd);
    assert_int_equal(fy_region_read_pages(r, &p, 1, out), 0);
    assert_true(page_has_pattern(out, 9));
    fy_region_close(r);
}

static void test_region_open_fd__descriptor_too_short__fails_range(void **state)
{
    struct fy_region *r = NULL;
    int fd = memfd_create("short", MFD_CLOEXEC);

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)(REGION_LEN - FY_PAGE_SIZE)), 0);
    assert_int_equal(fy_region_open_fd(fd, 0, REGION_LEN, FY_REGION_READ, &r),
                     -FY_E_RANGE);
    assert_null(r);
    close(fd);
}

static void test_region_open_fd__bad_descriptor__fails(void **state)
{
    struct fy_region *r = NULL;

    (void)state;
    assert_int_equal(fy_region_open_fd(-1, 0, REGION_LEN, FY_REGION_READ, &r),
                     -FY_E_INVAL);
    assert_true(fy_region_open_fd(1000, 0, REGION_LEN, FY_REGION_READ, &r) < 0);
    assert_null(r);
}

/* ---- process regions (this process) ------------------------------------------ */

static void test_region_open_pid__self__reads_the_buffer(void **state)
{
    struct self_region *sr = *state;
    uint64_t pages[3] = {15, 0, 8};
    uint8_t *buf = malloc(3 * FY_PAGE_SIZE);

    assert_non_null(buf);
    assert_null(fy_region_base(sr->r));
    assert_int_equal(fy_region_fd(sr->r), -1);
    assert_int_equal(fy_region_size(sr->r), REGION_LEN);
    assert_int_equal(fy_region_pages(sr->r), NPAGES);
    assert_non_null(strstr(fy_region_name(sr->r), "pid:"));
    assert_int_equal(fy_region_read_pages(sr->r, pages, 3, buf), 0);
    for (unsigned i = 0; i < 3; i++)
        assert_true(page_has_pattern(buf + (size_t)i * FY_PAGE_SIZE, (unsigned)pages[i]));
    free(buf);
}

static void test_region_write_pages__self_pid_region__changes_the_buffer(void **state)
{
    struct self_region *sr = *state;
    uint8_t a[FY_PAGE_SIZE], b[FY_PAGE_SIZE];
    uint64_t pages[2] = {4, 11};
    const void *data[2] = {a, b};

    fill_page(a, 50);
    fill_page(b, 51);
    assert_int_equal(fy_region_write_pages(sr->r, pages, data, 2), 0);
    assert_memory_equal(sr->buf + 4 * FY_PAGE_SIZE, a, FY_PAGE_SIZE);
    assert_memory_equal(sr->buf + 11 * FY_PAGE_SIZE, b, FY_PAGE_SIZE);
    assert_true(page_has_pattern(sr->buf + 5 * FY_PAGE_SIZE, 5));
}

static void test_region_read_write__self_pid_region__bytes_round_trip(void **state)
{
    struct self_region *sr = *state;
    const char msg[] = "remote bytes";
    char out[sizeof(msg)];

    assert_int_equal(fy_region_write(sr->r, 3 * FY_PAGE_SIZE - 5, msg, sizeof(msg)), 0);
    assert_memory_equal(sr->buf + 3 * FY_PAGE_SIZE - 5, msg, sizeof(msg));
    assert_int_equal(fy_region_read(sr->r, 3 * FY_PAGE_SIZE - 5, out, sizeof(out)), 0);
    assert_memory_equal(out, msg, sizeof(msg));
}

static void test_region_zero__self_pid_region__buffer_reads_zero(void **state)
{
    struct self_region *sr = *state;

    assert_int_equal(fy_region_zero(sr->r, 6 * FY_PAGE_SIZE, 2 * FY_PAGE_SIZE), 0);
    assert_true(all_bytes(sr->buf + 6 * FY_PAGE_SIZE, 2 * FY_PAGE_SIZE, 0));
    assert_true(page_has_pattern(sr->buf + 5 * FY_PAGE_SIZE, 5));
    assert_true(page_has_pattern(sr->buf + 8 * FY_PAGE_SIZE, 8));
}

static void test_region_copy_page__self_pid_region__destination_gets_source_bytes(void **state)
{
    struct self_region *sr = *state;

    assert_int_equal(fy_region_copy_page(sr->r, 1, 14), 0);
    assert_true(page_has_pattern(sr->buf + 1 * FY_PAGE_SIZE, 14));
    assert_true(page_has_pattern(sr->buf + 14 * FY_PAGE_SIZE, 14));
}

static void test_region_access__self_pid_region_out_of_range__fails_range_and_changes_nothing(void **state)
{
    struct self_region *sr = *state;
    uint8_t *before = malloc(REGION_LEN);
    uint8_t page[FY_PAGE_SIZE];
    const void *d = page;
    uint64_t bad = NPAGES, huge = UINT64_MAX >> FY_PAGE_SHIFT;

    assert_non_null(before);
    memcpy(before, sr->buf, REGION_LEN);
    memset(page, 0x5a, sizeof(page));
    assert_int_equal(fy_region_read_pages(sr->r, &bad, 1, page), -FY_E_RANGE);
    assert_true(all_bytes(page, sizeof(page), 0x5a));
    assert_int_equal(fy_region_write_pages(sr->r, &bad, &d, 1), -FY_E_RANGE);
    assert_int_equal(fy_region_write_pages(sr->r, &huge, &d, 1), -FY_E_RANGE);
    assert_int_equal(fy_region_write(sr->r, REGION_LEN - 8, page, 16), -FY_E_RANGE);
    assert_int_equal(fy_region_write(sr->r, UINT64_MAX - 7, page, 16), -FY_E_RANGE);
    assert_int_equal(fy_region_read(sr->r, REGION_LEN - 8, page, 16), -FY_E_RANGE);
    assert_int_equal(fy_region_zero(sr->r, REGION_LEN, FY_PAGE_SIZE), -FY_E_RANGE);
    assert_int_equal(fy_region_copy_page(sr->r, NPAGES, 0), -FY_E_RANGE);
    assert_int_equal(fy_region_copy_page(sr->r, 0, NPAGES), -FY_E_RANGE);
    assert_true(all_bytes(page, sizeof(page), 0x5a));
    assert_memory_equal(sr->buf, before, REGION_LEN);
    free(before);
}

static void test_region_resident__self_pid_region__every_page_reported_resident(void **state)
{
    struct self_region *sr = *state;
    uint8_t vec[NPAGES];

    memset(vec, 0, sizeof(vec));
    assert_int_equal(fy_region_resident(sr->r, 0, NPAGES, vec), 0);
    assert_true(all_bytes(vec, NPAGES, 1));
}

static void test_region_read_nofault__self_pid_region__reads_the_buffer(void **state)
{
    struct self_region *sr = *state;
    uint8_t buf[FY_PAGE_SIZE];

    assert_int_equal(fy_region_read_nofault(sr->r, 7 * FY_PAGE_SIZE, buf, sizeof(buf)), 0);
    assert_true(page_has_pattern(buf, 7));
}

static void test_region_open_pid__unmapped_address__fails_at_open(void **state)
{
    struct fy_region *r = NULL;
    void *p;
    int rc;

    (void)state;
    /* An address range that surely has nothing mapped: map it, unmap it. */
    p = mmap(NULL, REGION_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    assert_int_equal(munmap(p, REGION_LEN), 0);
    rc = fy_region_open_pid(getpid(), (uint64_t)(uintptr_t)p, REGION_LEN,
                            FY_REGION_READ, &r);
    assert_true(rc == -FY_E_SYS || rc == -FY_E_IO);
    assert_null(r);
    rc = fy_region_open_pid(getpid(), (uint64_t)(uintptr_t)p, REGION_LEN,
                            FY_REGION_RDWR, &r);
    assert_true(rc == -FY_E_SYS || rc == -FY_E_IO);
    assert_null(r);
}

static void test_region_open_pid__read_only_mapping_with_write__fails_at_open(void **state)
{
    struct fy_region *r = NULL;
    void *p;
    int rc;

    (void)state;
    p = mmap(NULL, REGION_LEN, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    /* Readable: a read-only region opens. */
    assert_int_equal(fy_region_open_pid(getpid(), (uint64_t)(uintptr_t)p, REGION_LEN,
                                        FY_REGION_READ, &r), 0);
    fy_region_close(r);
    r = NULL;
    /* Not writable: the probe write at open fails. */
    rc = fy_region_open_pid(getpid(), (uint64_t)(uintptr_t)p, REGION_LEN,
                            FY_REGION_RDWR, &r);
    assert_true(rc < 0);
    assert_null(r);
    munmap(p, REGION_LEN);
}

static void test_region_read_pages__pid_region_partly_unmapped__fails(void **state)
{
    struct fy_region *r = NULL;
    uint8_t *p, *buf;
    uint64_t pages[2] = {0, NPAGES - 1};

    (void)state;
    p = mmap(NULL, REGION_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    assert_int_equal(fy_region_open_pid(getpid(), (uint64_t)(uintptr_t)p, REGION_LEN,
                                        FY_REGION_READ, &r), 0);
    assert_int_equal(munmap(p + REGION_LEN / 2, REGION_LEN / 2), 0);
    buf = malloc(2 * FY_PAGE_SIZE);
    assert_non_null(buf);
    assert_true(fy_region_read_pages(r, pages, 2, buf) < 0);
    fy_region_close(r);
    munmap(p, REGION_LEN / 2);
    free(buf);
}

static void test_region_open_pid__unaligned_address_or_bad_pid__fails_inval(void **state)
{
    struct fy_region *r = NULL;
    static uint8_t buf[2 * FY_PAGE_SIZE];

    (void)state;
    assert_int_equal(fy_region_open_pid(getpid(), (uint64_t)(uintptr_t)buf | 1,
                                        FY_PAGE_SIZE, FY_REGION_READ, &r), -FY_E_INVAL);
    assert_int_equal(fy_region_open_pid(0, 0x10000, FY_PAGE_SIZE, FY_REGION_READ, &r),
                     -FY_E_INVAL);
    assert_null(r);
}

static void test_region_close__null__does_nothing(void **state)
{
    (void)state;
    fy_region_close(NULL);
}

static void test_region_open_file__file_system_too_small__fails_nospace_not_sigbus(void **state)
{
    char dir[] = "/tmp/ferry-nospace-XXXXXX", path[64];
    struct fy_region *r = NULL;

    (void)state;
    assert_non_null(mkdtemp(dir));
    if (mount("tmpfs", dir, "tmpfs", 0, "size=64k") != 0) {
        rmdir(dir);
        skip(); /* needs root to mount a tiny file system */
    }
    snprintf(path, sizeof(path), "%s/disk.img", dir);
    assert_int_equal(fy_region_open_file(path, 0, 1 << 20, FY_REGION_RDWR, &r),
                     -FY_E_NOSPACE);
    assert_null(r);
    assert_non_null(strstr(fy_error_detail(), "no space"));
    umount(dir);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_region_open_file__file_system_too_small__fails_nospace_not_sigbus),
        cmocka_unit_test(test_region_create_memfd__valid_length__size_pages_and_name_set),
        cmocka_unit_test(test_region_create_memfd__new_region__reads_zero),
        cmocka_unit_test(test_region_create_memfd__zero_or_unaligned_length__fails_inval),
#define MEMFD_TEST(f) cmocka_unit_test_setup_teardown(f, memfd_setup, region_teardown)
        MEMFD_TEST(test_region_read_pages__pages_out_of_order__copied_in_list_order),
        MEMFD_TEST(test_region_write_pages__scattered_pages__land_at_their_numbers),
        MEMFD_TEST(test_region_write__unaligned_bytes__read_back_equal),
        MEMFD_TEST(test_region_write__base_pointer__sees_the_same_bytes),
        MEMFD_TEST(test_region_zero__memfd_range__reads_zero_and_neighbours_kept),
        MEMFD_TEST(test_region_zero__whole_region__reads_zero),
        MEMFD_TEST(test_region_zero__memfd_pages__memory_given_back),
        MEMFD_TEST(test_region_zero__zero_length_first__succeeds_and_later_zeros_still_give_memory_back),
        MEMFD_TEST(test_region_zero__misaligned_offset__fails_inval_and_changes_nothing),
        MEMFD_TEST(test_region_zero__misaligned_length__fails_inval_and_changes_nothing),
        MEMFD_TEST(test_region_copy_page__distinct_pages__destination_gets_source_bytes),
        MEMFD_TEST(test_region_copy_page__same_page__content_kept),
        cmocka_unit_test(test_region_resident__new_memfd_then_one_page_written__only_that_page_resident),
        MEMFD_TEST(test_region_resident__range_past_the_end__fails_range_vector_untouched),
        cmocka_unit_test(test_region_read_nofault__hole__reads_zero_and_stays_a_hole),
        MEMFD_TEST(test_region_read_nofault__unaligned_bytes__equal_to_read),
        MEMFD_TEST(test_region_read_nofault__past_the_end__fails_range_buffer_untouched),
        cmocka_unit_test(test_region_prefault__new_memfd__every_page_resident_and_zero),
        MEMFD_TEST(test_region_read_pages__page_equal_to_npages__fails_range_buffer_untouched),
        MEMFD_TEST(test_region_read_pages__last_of_list_out_of_range__fails_range_buffer_untouched),
        MEMFD_TEST(test_region_write_pages__one_page_out_of_range__fails_range_and_changes_nothing),
        MEMFD_TEST(test_region_read__past_the_end__fails_range_buffer_untouched),
        MEMFD_TEST(test_region_read__overflowing_offset__fails_range_buffer_untouched),
        MEMFD_TEST(test_region_write__past_the_end_or_overflowing__fails_range_and_changes_nothing),
        MEMFD_TEST(test_region_zero__past_the_end_or_overflowing__fails_range_and_changes_nothing),
        MEMFD_TEST(test_region_copy_page__page_out_of_range__fails_range_and_changes_nothing),
#undef MEMFD_TEST
#define FILE_TEST(f) cmocka_unit_test_setup_teardown(f, tmpdir_setup, tmpdir_teardown)
        FILE_TEST(test_region_open_file__missing_file_with_write__created_and_grown),
        FILE_TEST(test_region_open_file__write_at_offset__lands_in_the_file_at_offset),
        FILE_TEST(test_region_open_file__reopened_read_only__sees_written_data),
        FILE_TEST(test_region_open_file__read_only__refuses_writes_with_inval),
        FILE_TEST(test_region_open_file__read_only_file_too_short__fails_range),
        FILE_TEST(test_region_open_file__missing_file_read_only__fails),
        FILE_TEST(test_region_open_file__unaligned_offset_or_length__fails_inval),
        FILE_TEST(test_region_zero__file_region__reads_zero),
#undef FILE_TEST
        cmocka_unit_test(test_region_open_fd__caller_closes_its_fd__region_still_works),
        cmocka_unit_test(test_region_open_fd__offset_into_descriptor__maps_from_offset),
        cmocka_unit_test(test_region_open_fd__descriptor_too_short__fails_range),
        cmocka_unit_test(test_region_open_fd__bad_descriptor__fails),
#define PID_TEST(f) cmocka_unit_test_setup_teardown(f, pid_setup, pid_teardown)
        PID_TEST(test_region_open_pid__self__reads_the_buffer),
        PID_TEST(test_region_write_pages__self_pid_region__changes_the_buffer),
        PID_TEST(test_region_read_write__self_pid_region__bytes_round_trip),
        PID_TEST(test_region_zero__self_pid_region__buffer_reads_zero),
        PID_TEST(test_region_copy_page__self_pid_region__destination_gets_source_bytes),
        PID_TEST(test_region_access__self_pid_region_out_of_range__fails_range_and_changes_nothing),
        PID_TEST(test_region_resident__self_pid_region__every_page_reported_resident),
        PID_TEST(test_region_read_nofault__self_pid_region__reads_the_buffer),
#undef PID_TEST
        cmocka_unit_test(test_region_open_pid__unmapped_address__fails_at_open),
        cmocka_unit_test(test_region_open_pid__read_only_mapping_with_write__fails_at_open),
        cmocka_unit_test(test_region_read_pages__pid_region_partly_unmapped__fails),
        cmocka_unit_test(test_region_open_pid__unaligned_address_or_bad_pid__fails_inval),
        cmocka_unit_test(test_region_close__null__does_nothing),
    };
    return cmocka_run_group_tests_name("region", tests, NULL, NULL);
}
