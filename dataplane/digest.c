/* Whole-region digest: XXH3-128 over the XXH3-128 of every page, in page
 * order (16 bytes each, little-endian low half first).
 *
 * Defined over page hashes so that a side which already hashed a page from
 * the bytes it holds (the target as it places pages, the source as it reads
 * them paused) need not read it again: only pages without a fresh hash are
 * read.  The result does not depend on how many threads compute it. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/digest.h"
#include "dataplane/engine_internal.h"
#include "ferry/error.h"

#define DIGEST_CHUNK 4096 /* pages a worker takes at a time */

struct digest_job {
    struct fy_region *r;
    const struct fy_pagemap *known;
    const uint64_t *known_bm;
    fy_hash128 *out;       /* one per page */
    uint64_t npages;
    uint64_t next;         /* next chunk (atomic) */
    fy_hash128 zero;
    int rc;
};

#define SLICE 64 /* pages read at a time from a chunk with holes */

static int hash_chunk(struct digest_job *j, uint64_t first, uint64_t last,
                      const uint8_t *base, uint8_t *buf)
{
    uint8_t vec[SLICE];
    uint64_t pages[SLICE];
    int rc;

    for (uint64_t p = first; p < last;) {
        uint64_t n = last - p < SLICE ? last - p : SLICE;
        const uint8_t *src = buf;
        bool all_resident = false;

        if (base) {
            /* In memory: hash in place.  Otherwise read through the file,
             * where holes read as zero without being allocated. */
            if ((rc = fy_region_resident(j->r, p, n, vec)) < 0)
                return rc;
            all_resident = memchr(vec, 0, n) == NULL;
        }
        if (all_resident) {
            src = base + (p << FY_PAGE_SHIFT);
        } else {
            for (uint64_t i = 0; i < n; i++)
                pages[i] = p + i;
            if ((rc = fy_region_read_pages(j->r, pages, (unsigned)n, buf)) < 0)
                return rc;
        }
        for (uint64_t i = 0; i < n; i++, p++) {
            if (j->known && (!j->known_bm || fy_bit_test(j->known_bm, p))) {
                j->out[p] = fy_pagemap_get(j->known, p);
                continue;
            }
            const uint8_t *page = src + (i << FY_PAGE_SHIFT);
            j->out[p] = fy_page_is_zero(page) ? j->zero : fy_page_hash(page);
        }
    }
    return 0;
}

/* True if some page of [first, last) must be read. */
static bool needs_reading(const struct digest_job *j, uint64_t first, uint64_t last)
{
    if (!j->known)
        return true;
    if (!j->known_bm)
        return false;
    for (uint64_t p = first; p < last; p++)
        if (!fy_bit_test(j->known_bm, p))
            return true;
    return false;
}

static void *digest_worker(void *arg)
{
    struct digest_job *j = arg;
    const uint8_t *base = fy_region_base(j->r);
    uint8_t *buf = malloc((size_t)SLICE << FY_PAGE_SHIFT);

    if (!buf) {
        __atomic_store_n(&j->rc, fy_error(FY_E_NOMEM, "digest buffer"),
                         __ATOMIC_RELAXED);
        return NULL;
    }
    for (;;) {
        uint64_t first = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED) * DIGEST_CHUNK;
        if (first >= j->npages || __atomic_load_n(&j->rc, __ATOMIC_RELAXED))
            break;
        uint64_t last = first + DIGEST_CHUNK < j->npages ? first + DIGEST_CHUNK : j->npages;

        if (!needs_reading(j, first, last)) {
            for (uint64_t p = first; p < last; p++)
                j->out[p] = fy_pagemap_get(j->known, p);
            continue;
        }
        int rc = hash_chunk(j, first, last, base, buf);
        if (rc < 0) {
            __atomic_store_n(&j->rc, rc, __ATOMIC_RELAXED);
            break;
        }
    }
    free(buf);
    return NULL;
}

/* The digest of an array of page hashes. */
static fy_hash128 digest_of(fy_hash128 *hashes, uint64_t n)
{
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    for (uint64_t i = 0; i < n; i++) {
        hashes[i].lo = __builtin_bswap64(hashes[i].lo);
        hashes[i].hi = __builtin_bswap64(hashes[i].hi);
    }
#endif
    return fy_hash_bytes(hashes, n * sizeof(*hashes));
}

int fy_digest_pages(struct fy_region *r, const struct fy_pagemap *known,
                    const uint64_t *known_bm, unsigned threads, fy_hash128 *out)
{
    struct digest_job j = {.r = r, .known = known, .known_bm = known_bm};
    pthread_t tid[64];
    unsigned started = 0;

    if (!r || !out)
        return fy_error(FY_E_INVAL, "digest: no region or output");
    j.npages = fy_region_pages(r);
    if (known && known->npages != j.npages)
        return fy_error(FY_E_INVAL, "digest: page map of %llu pages for %llu",
                        (unsigned long long)known->npages,
                        (unsigned long long)j.npages);
    j.zero = fy_hash_zero_page();
    j.out = malloc(j.npages * sizeof(*j.out));
    if (!j.out)
        return fy_error(FY_E_NOMEM, "no memory for %llu page hashes",
                        (unsigned long long)j.npages);
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (unsigned)n : 1;
    }
    /* Copying known hashes is cheap: do not start threads for that. */
    if (known && !known_bm)
        threads = 1;
    for (unsigned i = 1; i < threads && i < 64 && i * DIGEST_CHUNK < j.npages; i++)
        if (pthread_create(&tid[started], NULL, digest_worker, &j) == 0)
            started++;
    digest_worker(&j);
    for (unsigned i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    if (j.rc == 0)
        *out = digest_of(j.out, j.npages);
    free(j.out);
    return j.rc;
}

int fy_region_digest(struct fy_region *r, unsigned threads, fy_hash128 *out)
{
    return fy_digest_pages(r, NULL, NULL, threads, out);
}
