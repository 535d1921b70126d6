/* The migration engine: pre-copy rounds over one memory region.
 *
 * Source side (fy_migrate_source):
 *   round 1     every page;
 *   rounds 2..  the pages dirtied since the previous round, from the
 *               caller's dirty log (dirty_sync) or, without one, found by
 *               re-hashing every page and comparing with what the target
 *               holds;
 *   switchover  once the dirty pages left, sent whole at the wire rate the
 *               last round achieved, fit the downtime target (or after
 *               max_rounds), the
 *               engine asks the caller to pause the writer (pause), takes
 *               the final dirty set and runs the final round;
 *   verify      both sides compute a digest of the whole region from its
 *               bytes; a mismatch is FY_E_VERIFY.
 *
 * Each page is classified: zero (sent as a range), duplicate of content the
 * target holds (sent as a reference by hash) or new (sent whole).  The
 * target resolves references at the end of each round against the bytes it
 * holds and asks again (MISS) for any it cannot, so a wrong guess by the
 * source costs a page, never correctness.
 *
 * Threads: each side runs one thread per stream, plus the caller's.
 */
#ifndef FERRY_ENGINE_H
#define FERRY_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "ferry/classifier.h"
#include "ferry/dedup.h"
#include "ferry/region.h"
#include "ferry/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Statistics of one round (and, summed, of a migration). */
struct fy_round_stats {
    unsigned round;         /* 1-based */
    bool final;             /* the writer was paused for this round */
    uint64_t dirty_pages;   /* pages this round had to move */
    uint64_t pages_sent;    /* sent whole (new content) */
    uint64_t pages_zero;    /* sent as zero ranges */
    uint64_t pages_dup;     /* sent as references */
    uint64_t pages_dup_shared; /* of pages_dup: references to content of
                                  another region sharing the dedup index
                                  (gang dedup across VMs) */
    uint64_t pages_resent;  /* references the target missed, sent again */
    uint64_t wire_bytes;    /* bytes on the wire, all streams, both ways */
    double seconds;         /* wall time of the round */
    double scan_seconds;    /* re-hash scan that found the dirty pages */
    double dirty_rate;      /* pages dirtied per second while it ran */
    double throughput;      /* wire bytes per second */
    double page_rate;       /* dirty pages moved per second */
    double expected_downtime; /* seconds the final round would take if the
                                 writer were paused now */
};

struct fy_migration_stats {
    unsigned rounds;
    uint64_t region_bytes;
    uint64_t pages_sent;
    uint64_t pages_zero;
    uint64_t pages_dup;
    uint64_t pages_dup_shared; /* see struct fy_round_stats */
    uint64_t pages_resent;
    uint64_t wire_bytes;
    double seconds;          /* from start to verified */
    double downtime;         /* from pause to verified */
    double verify_seconds;   /* digest compare (part of the downtime) */
    bool converged;          /* the downtime target was met, not the limit */
    bool verified;
    fy_hash128 digest;
};

/* A region's page map left in a shared dedup index after its migration
 * ended (gang dedup: see fy_source_params.keep). */
struct fy_kept {
    struct fy_pagemap *map; /* malloc'd; NULL: nothing kept */
    int space;              /* its space in the index */
};

/* Removes a kept page map's space from 'd' and frees it; then '*k' keeps
 * nothing.  NULL or an empty one is a no-op. */
void fy_kept_release(struct fy_dedup *d, struct fy_kept *k);

/* Dirty log: fills 'bitmap' (one bit per page, npages bits, LSB first in
 * each 64-bit word) with the pages written since the previous call, and
 * starts a new log period.  The first call starts logging.  Returns 0 or a
 * negative error. */
typedef int (*fy_dirty_sync_fn)(void *ctx, uint64_t *bitmap, uint64_t npages);

/* Stops (pause) the region's writer before the final round.  Returns 0 or a
 * negative error, which aborts the migration (the writer keeps running).
 * A positive value means "not yet": the writer cannot stop now (it also
 * writes regions other migrations are still pre-copying, and stops when
 * they all have converged), so the engine runs another pre-copy round and
 * asks again; the caller sees to it that the answer comes. */
typedef int (*fy_pause_fn)(void *ctx);

/* Called after each round with its statistics, from the engine's thread. */
typedef void (*fy_round_fn)(void *ctx, const struct fy_round_stats *st);

struct fy_source_params {
    uint32_t downtime_ms;   /* target pause; 0: 300 */
    unsigned max_rounds;    /* rounds before switchover regardless; 0: 30 */
    fy_dirty_sync_fn dirty_sync; /* NULL: find dirty pages by re-hashing */
    fy_pause_fn pause;      /* NULL: nothing writes the region, so round 1
                               is the final round */
    fy_round_fn on_round;   /* may be NULL */
    void *ctx;              /* passed to the three callbacks */
    /* Shared with other migrations to the same target (gang dedup); NULL:
     * the engine keeps its own.  'space' is then this region's space. */
    struct fy_dedup *dedup;
    /* With 'dedup': when the migration ends (also after a failure) this
     * region's page map, what the target holds, stays in the index and is
     * handed over here, so later migrations sharing the index still find
     * that content; the caller ends it with fy_kept_release().  NULL: it
     * leaves the index with the migration. */
    struct fy_kept *keep;
    volatile int *cancel;   /* set non-zero to cancel before switchover */
    /* Pages round 1 moves (one bit per page, LSB first, as the dirty log);
     * NULL: every page.  The caller vouches that the target holds the
     * others already, byte for byte (a disk's blocks that come from base
     * images both hosts have): the verification at the end checks it.
     * Writes the dirty log reports before round 1 are added to it. */
    const uint64_t *first_round;
};

/* Migrates 'src' over the open session 's' (which announced a region of the
 * same size).  On success the target holds an identical copy, verified, and
 * the writer is still paused.  On failure before the pause, the writer was
 * never paused; after it, the caller decides (resume the source).  The
 * session is left open either way.  'out' may be NULL. */
int fy_migrate_source(struct fy_region *src, struct fy_session *s,
                      const struct fy_source_params *p,
                      struct fy_migration_stats *out);

struct fy_target_params {
    fy_round_fn on_round;
    void *ctx;
    struct fy_dedup *dedup; /* content already at this host; NULL: own */
    /* As fy_source_params.keep; the kept map's owner is 'dst', which must
     * stay open until fy_kept_release() (a reference is resolved by
     * reading it, and checked, since its VM may have written since). */
    struct fy_kept *keep;
    bool fresh;             /* 'dst' was just created and reads as zero, so
                               zero ranges need no writes */
    int idle_timeout_ms;    /* give up after this long without a frame;
                               0: 60000 */
    volatile int *cancel;
};

/* Receives a migration into 'dst' from an accepted session until the
 * source's DONE.  Returns 0 once the digests matched; FY_E_VERIFY if they
 * did not; another error if the session broke (the caller discards 'dst'). */
int fy_migrate_target(struct fy_region *dst, struct fy_session *s,
                      const struct fy_target_params *p,
                      struct fy_migration_stats *out);

/* The digest both sides compare: XXH3-128 over the XXH3-128 of every page
 * (16 bytes each, little-endian, low half first), computed from the
 * region's bytes with 'threads' threads (0: one per CPU).  Holes are known
 * to be zero without being read. */
int fy_region_digest(struct fy_region *r, unsigned threads, fy_hash128 *out);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_ENGINE_H */
