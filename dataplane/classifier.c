/* Page hash (XXH3-128 from libxxhash) and the zero-page test. */
#include <pthread.h>
#include <string.h>
#include <xxhash.h>
#if FY_HAVE_XXH_DISPATCH
/* libxxhash's run-time dispatch picks AVX2/AVX-512 code where the CPU has
 * it: twice the SSE2 default's speed on the pages we hash. */
#include <xxh_x86dispatch.h>
#define fy_xxh3_128 XXH3_128bits_dispatch
#else
#define fy_xxh3_128 XXH3_128bits
#endif

#include "ferry/classifier.h"

fy_hash128 fy_hash_bytes(const void *data, size_t len)
{
    XXH128_hash_t h = fy_xxh3_128(data, len);
    return (fy_hash128){h.low64, h.high64};
}

static fy_hash128 zero_hash;
static pthread_once_t zero_once = PTHREAD_ONCE_INIT;

static void zero_hash_init(void)
{
    static const uint64_t zeros[FY_PAGE_SIZE / 8];
    zero_hash = fy_page_hash(zeros);
}

fy_hash128 fy_hash_zero_page(void)
{
    pthread_once(&zero_once, zero_hash_init);
    return zero_hash;
}

bool fy_page_is_zero(const void *page)
{
    const uint64_t *w = page;

    /* Most non-zero pages differ in the first line: test it alone first,
     * then OR whole cache lines so the loop vectorises. */
    for (unsigned i = 0; i < 8; i++)
        if (w[i])
            return false;
    for (unsigned i = 8; i < FY_PAGE_SIZE / 8; i += 8) {
        uint64_t acc = w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] |
                       w[i + 5] | w[i + 6] | w[i + 7];
        if (acc)
            return false;
    }
    return true;
}

const char *fy_page_class_name(enum fy_page_class c)
{
    switch (c) {
    case FY_PAGE_NEW:
        return "new";
    case FY_PAGE_ZERO:
        return "zero";
    case FY_PAGE_DUP:
        return "duplicate";
    }
    return "unknown";
}
