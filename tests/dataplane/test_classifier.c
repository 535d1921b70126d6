/* Unit tests of dataplane/classifier.c: the zero-page test and the page
 * hash, checked against libxxhash directly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <xxhash.h>

#include "ferry/classifier.h"

/* One page, 8-byte aligned as fy_page_is_zero() requires. */
static uint64_t page_words[FY_PAGE_SIZE / 8];

static uint8_t *page_zeroed(void)
{
    memset(page_words, 0, sizeof(page_words));
    return (uint8_t *)page_words;
}

static void fill_pattern(uint8_t *p, unsigned seed)
{
    for (unsigned i = 0; i < FY_PAGE_SIZE; i++)
        p[i] = (uint8_t)(i * 31u + seed * 7u + 1u);
}

/* ---- fy_page_is_zero ---------------------------------------------------- */

static void test_page_is_zero__all_zero_page__returns_true(void **state)
{
    (void)state;
    assert_true(fy_page_is_zero(page_zeroed()));
}

static void test_page_is_zero__first_byte_set__returns_false(void **state)
{
    uint8_t *p = page_zeroed();

    (void)state;
    p[0] = 1;
    assert_false(fy_page_is_zero(p));
}

static void test_page_is_zero__middle_byte_set__returns_false(void **state)
{
    uint8_t *p = page_zeroed();

    (void)state;
    p[FY_PAGE_SIZE / 2 + 3] = 0x80;
    assert_false(fy_page_is_zero(p));
}

static void test_page_is_zero__last_byte_set__returns_false(void **state)
{
    uint8_t *p = page_zeroed();

    (void)state;
    p[FY_PAGE_SIZE - 1] = 1;
    assert_false(fy_page_is_zero(p));
}

static void test_page_is_zero__any_single_byte_set__returns_false(void **state)
{
    uint8_t *p = page_zeroed();

    (void)state;
    /* Every position, so no word or cache line is skipped by the loop. */
    for (unsigned i = 0; i < FY_PAGE_SIZE; i++) {
        p[i] = 0x01;
        if (fy_page_is_zero(p))
            fail_msg("page with byte %u set was reported zero", i);
        p[i] = 0;
    }
    assert_true(fy_page_is_zero(p));
}

static void test_page_is_zero__does_not_modify_page__bytes_unchanged(void **state)
{
    uint8_t copy[FY_PAGE_SIZE];
    uint8_t *p = page_zeroed();

    (void)state;
    fill_pattern(p, 3);
    memcpy(copy, p, sizeof(copy));
    (void)fy_page_is_zero(p);
    assert_memory_equal(copy, p, FY_PAGE_SIZE);
}

/* ---- fy_page_hash / fy_hash_bytes ---------------------------------------- */

static void test_page_hash__pattern_page__equals_xxh3_128(void **state)
{
    uint8_t *p = page_zeroed();
    XXH128_hash_t want;
    fy_hash128 got;

    (void)state;
    fill_pattern(p, 11);
    want = XXH3_128bits(p, FY_PAGE_SIZE);
    got = fy_page_hash(p);
    assert_int_equal(got.lo, want.low64);
    assert_int_equal(got.hi, want.high64);
}

static void test_page_hash__random_pages__equal_xxh3_128(void **state)
{
    uint8_t *p = page_zeroed();

    (void)state;
    srand(12345);
    for (int n = 0; n < 64; n++) {
        for (unsigned i = 0; i < FY_PAGE_SIZE; i++)
            p[i] = (uint8_t)rand();
        XXH128_hash_t want = XXH3_128bits(p, FY_PAGE_SIZE);
        fy_hash128 got = fy_page_hash(p);
        assert_int_equal(got.lo, want.low64);
        assert_int_equal(got.hi, want.high64);
    }
}

static void test_page_hash__one_bit_changed__hash_differs(void **state)
{
    uint8_t *p = page_zeroed();
    fy_hash128 a, b;

    (void)state;
    fill_pattern(p, 5);
    a = fy_page_hash(p);
    p[1234] ^= 0x04;
    b = fy_page_hash(p);
    assert_false(fy_hash_eq(a, b));
}

static void test_hash_bytes__odd_length__equals_xxh3_128(void **state)
{
    uint8_t *p = page_zeroed();
    XXH128_hash_t want;
    fy_hash128 got;

    (void)state;
    fill_pattern(p, 9);
    want = XXH3_128bits(p, 1001);
    got = fy_hash_bytes(p, 1001);
    assert_int_equal(got.lo, want.low64);
    assert_int_equal(got.hi, want.high64);
}

static void test_page_hash__real_page__is_not_unknown(void **state)
{
    uint8_t *p = page_zeroed();

    (void)state;
    fill_pattern(p, 1);
    assert_false(fy_hash_is_unknown(fy_page_hash(p)));
    assert_false(fy_hash_is_unknown(fy_hash_zero_page()));
}

/* ---- fy_hash_zero_page ---------------------------------------------------- */

static void test_hash_zero_page__any_call__equals_xxh3_128_of_zeros(void **state)
{
    static const uint8_t zeros[FY_PAGE_SIZE];
    XXH128_hash_t want = XXH3_128bits(zeros, FY_PAGE_SIZE);
    fy_hash128 got;

    (void)state;
    got = fy_hash_zero_page();
    assert_int_equal(got.lo, want.low64);
    assert_int_equal(got.hi, want.high64);
    /* Computed once: later calls give the same value. */
    assert_true(fy_hash_eq(fy_hash_zero_page(), got));
    assert_true(fy_hash_eq(fy_page_hash(page_zeroed()), got));
}

/* ---- fy_hash_eq -------------------------------------------------------------- */

static void test_hash_eq__same_halves__returns_true(void **state)
{
    fy_hash128 a = {0x0123456789abcdefull, 0xfedcba9876543210ull};
    fy_hash128 b = a;

    (void)state;
    assert_true(fy_hash_eq(a, b));
    assert_true(fy_hash_eq(FY_HASH_UNKNOWN, FY_HASH_UNKNOWN));
}

static void test_hash_eq__low_half_differs__returns_false(void **state)
{
    fy_hash128 a = {1, 2}, b = {3, 2};

    (void)state;
    assert_false(fy_hash_eq(a, b));
}

static void test_hash_eq__high_half_differs__returns_false(void **state)
{
    fy_hash128 a = {1, 2}, b = {1, 4};

    (void)state;
    assert_false(fy_hash_eq(a, b));
}

static void test_hash_eq__halves_swapped__returns_false(void **state)
{
    fy_hash128 a = {1, 2}, b = {2, 1};

    (void)state;
    assert_false(fy_hash_eq(a, b));
}

static void test_hash_is_unknown__zero_hash__returns_true(void **state)
{
    fy_hash128 a = {0, 1};

    (void)state;
    assert_true(fy_hash_is_unknown(FY_HASH_UNKNOWN));
    assert_false(fy_hash_is_unknown(a));
}

static void test_page_class_name__each_class__names_it(void **state)
{
    (void)state;
    assert_string_equal(fy_page_class_name(FY_PAGE_NEW), "new");
    assert_string_equal(fy_page_class_name(FY_PAGE_ZERO), "zero");
    assert_string_equal(fy_page_class_name(FY_PAGE_DUP), "duplicate");
    assert_string_equal(fy_page_class_name((enum fy_page_class)42), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_page_is_zero__all_zero_page__returns_true),
        cmocka_unit_test(test_page_is_zero__first_byte_set__returns_false),
        cmocka_unit_test(test_page_is_zero__middle_byte_set__returns_false),
        cmocka_unit_test(test_page_is_zero__last_byte_set__returns_false),
        cmocka_unit_test(test_page_is_zero__any_single_byte_set__returns_false),
        cmocka_unit_test(test_page_is_zero__does_not_modify_page__bytes_unchanged),
        cmocka_unit_test(test_page_hash__pattern_page__equals_xxh3_128),
        cmocka_unit_test(test_page_hash__random_pages__equal_xxh3_128),
        cmocka_unit_test(test_page_hash__one_bit_changed__hash_differs),
        cmocka_unit_test(test_hash_bytes__odd_length__equals_xxh3_128),
        cmocka_unit_test(test_page_hash__real_page__is_not_unknown),
        cmocka_unit_test(test_hash_zero_page__any_call__equals_xxh3_128_of_zeros),
        cmocka_unit_test(test_hash_eq__same_halves__returns_true),
        cmocka_unit_test(test_hash_eq__low_half_differs__returns_false),
        cmocka_unit_test(test_hash_eq__high_half_differs__returns_false),
        cmocka_unit_test(test_hash_eq__halves_swapped__returns_false),
        cmocka_unit_test(test_hash_is_unknown__zero_hash__returns_true),
        cmocka_unit_test(test_page_class_name__each_class__names_it),
    };
    return cmocka_run_group_tests_name("classifier", tests, NULL, NULL);
}
