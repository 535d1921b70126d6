/* Pieces shared by the source and target halves of the engine. */
#ifndef FERRY_ENGINE_INTERNAL_H
#define FERRY_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ferry/engine.h"
#include "ferry/error.h"

/* Pages one worker reads, classifies and sends at a time. */
#define FY_BATCH_PAGES 256
/* Pages a worker takes from the round's work at a time. */
#define FY_CHUNK_PAGES 1024

static inline double fy_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The first error any thread of a migration hit, with its detail (which
 * lives in that thread's fy_error buffer, so it is copied here). */
struct fy_first_error {
    pthread_mutex_t lock;
    int code; /* negative fy_err, 0 if none */
    char detail[1024];
};

static inline void fy_first_error_init(struct fy_first_error *e)
{
    pthread_mutex_init(&e->lock, NULL);
    e->code = 0;
    e->detail[0] = '\0';
}

/* Records rc (negative) with this thread's detail if it is the first. */
static inline void fy_first_error_set(struct fy_first_error *e, int rc)
{
    pthread_mutex_lock(&e->lock);
    if (e->code == 0) {
        e->code = rc;
        snprintf(e->detail, sizeof(e->detail), "%s", fy_error_detail());
    }
    pthread_mutex_unlock(&e->lock);
}

static inline int fy_first_error_get(struct fy_first_error *e)
{
    int rc;
    pthread_mutex_lock(&e->lock);
    rc = e->code;
    pthread_mutex_unlock(&e->lock);
    return rc;
}

/* Re-raises the recorded error on the calling thread. */
static inline int fy_first_error_raise(struct fy_first_error *e)
{
    return fy_error(-e->code, "%s", e->detail);
}

static inline uint64_t fy_session_wire_bytes(const struct fy_session *s)
{
    uint64_t b = 0;
    for (unsigned i = 0; i < s->nstreams; i++)
        /* relaxed loads: packet transports update these from pump threads */
        b += __atomic_load_n(&s->streams[i]->tx_wire_bytes, __ATOMIC_RELAXED) +
             __atomic_load_n(&s->streams[i]->rx_wire_bytes, __ATOMIC_RELAXED);
    return b;
}

static inline bool fy_bit_test(const uint64_t *bm, uint64_t i)
{
    return (bm[i >> 6] >> (i & 63)) & 1;
}

static inline void fy_bit_set_atomic(uint64_t *bm, uint64_t i)
{
    __atomic_fetch_or(&bm[i >> 6], 1ull << (i & 63), __ATOMIC_RELAXED);
}

/* Sends an ERROR operation (best effort: the stream may be broken). */
static inline void fy_send_error(struct fy_stream *s, int code, const char *msg)
{
    struct fy_op op = {.type = FY_OP_ERROR,
                       .offset = (uint64_t)(code < 0 ? -code : code),
                       .data = msg,
                       .len = strlen(msg) < 512 ? strlen(msg) : 512};
    fy_stream_send_all(s, &op, 1);
}

/* One side's record of what the target holds: the page map of 'r', joined
 * to 'shared' (gang dedup) or to an index of its own.  Checks first that the
 * session's region size is r's.  fy_held_close() undoes whatever part of it
 * was done, so it is called on failure too; with 'keep' (and 'shared') it
 * leaves the page map in the index and hands it over instead. */
struct fy_held {
    struct fy_pagemap map;
    struct fy_dedup *dedup;
    int space; /* -1 until joined */
    bool own;  /* the index is ours to destroy */
    /* A shared index points at this copy of 'map' (same 'held' array), so
     * that it can outlive the migration: see fy_source_params.keep. */
    struct fy_pagemap *pub;
    struct fy_kept *keep;
};

int fy_held_open(struct fy_held *h, struct fy_region *r,
                 const struct fy_session *s, struct fy_dedup *shared,
                 struct fy_kept *keep);
void fy_held_close(struct fy_held *h);

#endif /* FERRY_ENGINE_INTERNAL_H */
