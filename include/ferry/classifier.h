/* Page identity: the 128-bit content hash, the zero-page test, and the
 * classification of a page as zero, duplicate or new.
 *
 * Ferry moves memory in pages of FY_PAGE_SIZE bytes (4 KiB).  2 MiB pages
 * would be moved as 512 small pages: see docs/design.md.
 *
 * Hashes are XXH3-128 from the xxHash library.  A page's hash is both its
 * dedup key and the checksum of its PAGE frame.
 */
#ifndef FERRY_CLASSIFIER_H
#define FERRY_CLASSIFIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FY_PAGE_SHIFT 12
#define FY_PAGE_SIZE (1u << FY_PAGE_SHIFT)

typedef struct fy_hash128 {
    uint64_t lo;
    uint64_t hi;
} fy_hash128;

/* "Nothing known": no page hashes to this in practice (2^-128). */
#define FY_HASH_UNKNOWN ((fy_hash128){0, 0})

static inline bool fy_hash_eq(fy_hash128 a, fy_hash128 b)
{
    return a.lo == b.lo && a.hi == b.hi;
}

static inline bool fy_hash_is_unknown(fy_hash128 h)
{
    return h.lo == 0 && h.hi == 0;
}

/* XXH3-128 of 'len' bytes at 'data'. */
fy_hash128 fy_hash_bytes(const void *data, size_t len);

/* XXH3-128 of one page. */
static inline fy_hash128 fy_page_hash(const void *page)
{
    return fy_hash_bytes(page, FY_PAGE_SIZE);
}

/* The hash of a page of zeros, computed once. */
fy_hash128 fy_hash_zero_page(void);

/* True if the FY_PAGE_SIZE bytes at 'page' are all zero.  'page' must be
 * 8-byte aligned.  Stops at the first non-zero word, so a non-zero page is
 * usually rejected after its first cache line. */
bool fy_page_is_zero(const void *page);

enum fy_page_class {
    FY_PAGE_NEW = 0,  /* content the target does not hold: sent whole */
    FY_PAGE_ZERO = 1, /* all zero: sent as a range marker */
    FY_PAGE_DUP = 2,  /* content the target holds: sent as a reference */
};

const char *fy_page_class_name(enum fy_page_class c);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_CLASSIFIER_H */
