/* Page maps and the dedup index (see include/ferry/dedup.h).
 *
 * The index is an open-addressing table of 8-byte slots:
 *   bits 63..48  tag: the top 16 bits of the hash's high word
 *   bits 47..0   location + 1 (0 means empty): space << 40 | page
 * The table has exactly 2 slots per distinct page (not a power of two, so
 * the 32-byte bound holds for every size); the home slot is the hash's low
 * word scaled onto the table (multiply-shift); probing is linear and
 * bounded.  A slot is never emptied once used, so probe chains never break;
 * a stale slot (its location now holds other content) is overwritten in
 * place by a later insert. */
#include <stdlib.h>
#include <string.h>

#include "ferry/dedup.h"
#include "dataplane/hugemem.h"
#include "ferry/error.h"

#define PAGE_BITS 40
#define PAGE_LIMIT ((1ull << PAGE_BITS) - 1)
#define LOC_MASK ((1ull << 48) - 1)
#define MAX_PROBE 64

struct fy_dedup {
    uint64_t *slots;
    uint64_t nslots;
    struct fy_pagemap *spaces[FY_DEDUP_MAX_SPACES];
    uint64_t used;
    uint64_t dropped;
};

int fy_pagemap_init(struct fy_pagemap *pm, uint64_t npages)
{
    if (!pm || npages == 0)
        return fy_error(FY_E_INVAL, "page map of %llu pages",
                        (unsigned long long)npages);
    pm->held = fy_huge_alloc(npages * sizeof(*pm->held));
    if (!pm->held)
        return fy_error(FY_E_NOMEM, "no memory for a page map of %llu pages",
                        (unsigned long long)npages);
    pm->npages = npages;
    return 0;
}

void fy_pagemap_fini(struct fy_pagemap *pm)
{
    if (!pm)
        return;
    fy_huge_free(pm->held, pm->npages * sizeof(*pm->held));
    pm->held = NULL;
    pm->npages = 0;
}

struct fy_dedup *fy_dedup_create(uint64_t distinct)
{
    struct fy_dedup *d;
    uint64_t slots = 1024;

    if (distinct > (1ull << 39))
        distinct = 1ull << 39;
    if (slots < 2 * distinct)
        slots = 2 * distinct;
    d = calloc(1, sizeof(*d));
    if (!d) {
        fy_error(FY_E_NOMEM, "no memory for a dedup index");
        return NULL;
    }
    d->slots = fy_huge_alloc(slots * sizeof(*d->slots));
    if (!d->slots) {
        fy_error(FY_E_NOMEM, "no memory for a dedup index of %llu slots",
                 (unsigned long long)slots);
        free(d);
        return NULL;
    }
    d->nslots = slots;
    return d;
}

void fy_dedup_destroy(struct fy_dedup *d)
{
    if (!d)
        return;
    fy_huge_free(d->slots, d->nslots * sizeof(*d->slots));
    free(d);
}

int fy_dedup_add_space(struct fy_dedup *d, struct fy_pagemap *pm)
{
    if (!d || !pm)
        return fy_error(FY_E_INVAL, "dedup space: no index or page map");
    for (int i = 0; i < FY_DEDUP_MAX_SPACES; i++) {
        struct fy_pagemap *expect = NULL;
        if (__atomic_compare_exchange_n(&d->spaces[i], &expect, pm, false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return i;
    }
    return fy_error(FY_E_NOSPACE, "dedup index already spans %d regions",
                    FY_DEDUP_MAX_SPACES);
}

int fy_dedup_space_owner(struct fy_dedup *d, int space, void **owner)
{
    struct fy_pagemap *pm;

    if (!d || !owner || space < 0 || space >= FY_DEDUP_MAX_SPACES)
        return fy_error(FY_E_INVAL, "no dedup space %d", space);
    pm = __atomic_load_n(&d->spaces[space], __ATOMIC_ACQUIRE);
    *owner = pm ? pm->owner : NULL;
    return 0;
}

void fy_dedup_remove_space(struct fy_dedup *d, int space)
{
    if (d && space >= 0 && space < FY_DEDUP_MAX_SPACES)
        __atomic_store_n(&d->spaces[space], NULL, __ATOMIC_RELEASE);
}

static inline uint64_t home_of(const struct fy_dedup *d, fy_hash128 h)
{
    return (uint64_t)(((unsigned __int128)h.lo * d->nslots) >> 64);
}

static inline uint64_t next_slot(const struct fy_dedup *d, uint64_t i)
{
    return i + 1 == d->nslots ? 0 : i + 1;
}

static inline uint64_t tag_of(fy_hash128 h)
{
    return h.hi >> 48;
}

static inline uint64_t pack(fy_hash128 h, struct fy_dedup_loc loc)
{
    uint64_t l = ((uint64_t)loc.space << PAGE_BITS) | loc.page;
    return (tag_of(h) << 48) | (l + 1);
}

static inline struct fy_dedup_loc unpack(uint64_t slot)
{
    uint64_t l = (slot & LOC_MASK) - 1;
    return (struct fy_dedup_loc){(uint32_t)(l >> PAGE_BITS), l & PAGE_LIMIT};
}

/* What the slot's location holds now, or false if the location is gone. */
static bool slot_content(const struct fy_dedup *d, uint64_t slot,
                         fy_hash128 *held)
{
    struct fy_dedup_loc loc = unpack(slot);
    struct fy_pagemap *pm;

    if (loc.space >= FY_DEDUP_MAX_SPACES)
        return false;
    pm = __atomic_load_n(&d->spaces[loc.space], __ATOMIC_ACQUIRE);
    if (!pm || loc.page >= pm->npages)
        return false;
    *held = fy_pagemap_get(pm, loc.page);
    return true;
}

bool fy_dedup_lookup(struct fy_dedup *d, fy_hash128 h, struct fy_dedup_loc *loc)
{
    uint64_t i = home_of(d, h);
    uint64_t tag = tag_of(h);
    fy_hash128 held;

    for (unsigned probe = 0; probe < MAX_PROBE; probe++) {
        uint64_t s = __atomic_load_n(&d->slots[i], __ATOMIC_ACQUIRE);
        if (s == 0)
            return false;
        if ((s >> 48) == tag && slot_content(d, s, &held) &&
            fy_hash_eq(held, h)) {
            *loc = unpack(s);
            return true;
        }
        i = next_slot(d, i);
    }
    return false;
}

bool fy_dedup_insert(struct fy_dedup *d, fy_hash128 h, struct fy_dedup_loc loc)
{
    uint64_t home = home_of(d, h), i;
    uint64_t tag = tag_of(h);
    uint64_t want;
    fy_hash128 held;

    if (loc.space >= FY_DEDUP_MAX_SPACES || loc.page >= PAGE_LIMIT)
        return false;
    want = pack(h, loc);
    /* An entry for h sits before the first empty slot of its chain (slots
     * are never emptied), so: look for it up to there, else take that
     * empty slot.  Only a matching tag costs a look at the page map. */
    i = home;
    for (unsigned probe = 0; probe < MAX_PROBE;) {
        uint64_t s = __atomic_load_n(&d->slots[i], __ATOMIC_ACQUIRE);
        if (s == 0) {
            if (__atomic_compare_exchange_n(&d->slots[i], &s, want, false,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                __atomic_fetch_add(&d->used, 1, __ATOMIC_RELAXED);
                return true;
            }
            continue; /* lost a race for it: look at what is there now */
        }
        if ((s >> 48) == tag && slot_content(d, s, &held) && fy_hash_eq(held, h))
            return true; /* a valid location for h is already known */
        i = next_slot(d, i);
        probe++;
    }
    /* A crowded neighbourhood: reuse a slot whose location no longer holds
     * what the slot says (its page was overwritten), in place. */
    i = home;
    for (unsigned probe = 0; probe < MAX_PROBE;) {
        uint64_t s = __atomic_load_n(&d->slots[i], __ATOMIC_ACQUIRE);
        bool live = slot_content(d, s, &held);
        if (!live || tag_of(held) != (s >> 48)) {
            if (__atomic_compare_exchange_n(&d->slots[i], &s, want, false,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                return true;
            continue;
        }
        i = next_slot(d, i);
        probe++;
    }
    __atomic_fetch_add(&d->dropped, 1, __ATOMIC_RELAXED);
    return false;
}

void fy_dedup_prefetch(const struct fy_dedup *d, fy_hash128 h)
{
    __builtin_prefetch(&d->slots[home_of(d, h)], 0, 1);
}

void fy_dedup_get_stats(const struct fy_dedup *d, struct fy_dedup_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (!d)
        return;
    st->slots = d->nslots;
    st->used = __atomic_load_n(&d->used, __ATOMIC_RELAXED);
    st->bytes = st->slots * sizeof(uint64_t);
    st->dropped = __atomic_load_n(&d->dropped, __ATOMIC_RELAXED);
}
