/* What a target holds: per-page content hashes (the page map) and an index
 * from content hash to a page that holds it (the dedup index).
 *
 * Both sides keep one.  The source keeps its belief of the target's content:
 * it decides which pages are dirty (re-hash mode) and which can travel as a
 * reference.  The target keeps the truth, computed from what it received,
 * and resolves references with it.
 *
 * Memory: 16 bytes per page for the page map plus one 8-byte slot per
 * distinct page at a load factor of at least 1/2, so at most 32 bytes per
 * distinct page.
 *
 * Correct when pages are overwritten: an index slot names only a location,
 * never content.  A lookup returns a location only if the page map still
 * says that location holds the requested hash, so a slot left behind by an
 * overwrite is never followed; it is reused by a later insert.  A full index
 * drops inserts (less dedup, never wrong answers).
 *
 * Threads: lookups, inserts and page map updates may run concurrently from
 * any number of threads (slots are updated with compare-and-swap, page map
 * entries with relaxed atomics).  A lookup racing an overwrite may answer
 * with a location that has just changed: the target re-checks every
 * reference against the actual bytes before it copies them.
 */
#ifndef FERRY_DEDUP_H
#define FERRY_DEDUP_H

#include <stdbool.h>
#include <stdint.h>

#include "ferry/classifier.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Per-page hashes of one region, as held by the target.  An entry is
 * FY_HASH_UNKNOWN until something is recorded. */
struct fy_pagemap {
    fy_hash128 *held;
    uint64_t npages;
    void *owner; /* the region these pages belong to (a target resolving a
                    reference copies from it); set by the engine */
};

/* Allocates a map of 'npages' unknown entries.  On failure nothing is
 * allocated. */
int fy_pagemap_init(struct fy_pagemap *pm, uint64_t npages);
void fy_pagemap_fini(struct fy_pagemap *pm);

static inline fy_hash128 fy_pagemap_get(const struct fy_pagemap *pm,
                                        uint64_t page)
{
    fy_hash128 h;
    h.lo = __atomic_load_n(&pm->held[page].lo, __ATOMIC_RELAXED);
    h.hi = __atomic_load_n(&pm->held[page].hi, __ATOMIC_RELAXED);
    return h;
}

static inline void fy_pagemap_set(struct fy_pagemap *pm, uint64_t page,
                                  fy_hash128 h)
{
    __atomic_store_n(&pm->held[page].lo, h.lo, __ATOMIC_RELAXED);
    __atomic_store_n(&pm->held[page].hi, h.hi, __ATOMIC_RELAXED);
}

/* Most regions one index can span (an evacuation's VMs moving to one
 * target share an index). */
#define FY_DEDUP_MAX_SPACES 256

struct fy_dedup_loc {
    uint32_t space; /* as returned by fy_dedup_add_space() */
    uint64_t page;  /* page number within that space */
};

struct fy_dedup;

/* Creates an index for about 'distinct' distinct pages (its memory is fixed:
 * 8 bytes per slot, slots = 2 * distinct, at least 1024).  On failure
 * returns NULL with the error recorded. */
struct fy_dedup *fy_dedup_create(uint64_t distinct);
void fy_dedup_destroy(struct fy_dedup *d);

/* Adds a region's page map to the index and returns its space number
 * (>= 0), or a negative error when FY_DEDUP_MAX_SPACES are in use.  The map
 * must outlive the index or be removed first. */
int fy_dedup_add_space(struct fy_dedup *d, struct fy_pagemap *pm);

/* The owner recorded in the page map of 'space' (see struct fy_pagemap).
 * Returns 0 with *owner set (NULL if removed), or a negative error for a
 * space number out of range. */
int fy_dedup_space_owner(struct fy_dedup *d, int space, void **owner);

/* Stops answering with locations in 'space'.  Its slots become reusable. */
void fy_dedup_remove_space(struct fy_dedup *d, int space);

/* Finds a location whose page map entry equals 'h'.  Returns true and fills
 * *loc if one is known.  Never blocks. */
bool fy_dedup_lookup(struct fy_dedup *d, fy_hash128 h, struct fy_dedup_loc *loc);

/* Records that 'loc' holds content 'h' (the caller has already set the page
 * map entry).  Keeps an existing valid location for 'h'.  Returns false if
 * the index had no free or stale slot near h's home (the entry is dropped). */
bool fy_dedup_insert(struct fy_dedup *d, fy_hash128 h, struct fy_dedup_loc loc);

/* Starts loading the slot where a lookup or insert of 'h' begins, so that a
 * caller with many hashes in hand can hide the memory latency: prefetch
 * them all, then look them up. */
void fy_dedup_prefetch(const struct fy_dedup *d, fy_hash128 h);

struct fy_dedup_stats {
    uint64_t slots;
    uint64_t used;     /* non-empty slots, valid or stale */
    uint64_t bytes;    /* memory of the slot table */
    uint64_t dropped;  /* inserts that found no slot */
};
void fy_dedup_get_stats(const struct fy_dedup *d, struct fy_dedup_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_DEDUP_H */
