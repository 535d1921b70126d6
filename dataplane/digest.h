/* The region digest, computed with page hashes a side already holds. */
#ifndef FERRY_DIGEST_H
#define FERRY_DIGEST_H

#include "ferry/dedup.h"
#include "ferry/region.h"

/* The digest of 'r' (see fy_region_digest()), taking the hash of page p
 * from 'known' instead of reading it when 'known' is not NULL and either
 * 'known_bm' is NULL or has bit p set.  The caller vouches that those
 * hashes were computed from the bytes the region holds now. */
int fy_digest_pages(struct fy_region *r, const struct fy_pagemap *known,
                    const uint64_t *known_bm, unsigned threads, fy_hash128 *out);

#endif /* FERRY_DIGEST_H */
