/* Synthetic guest memory and a writer that dirties it. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ferry/error.h"
#include "perf/bench.h"

#define SHARED_CONTENTS 1024

static inline uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void fill_random(uint64_t *words, uint64_t *state)
{
    for (unsigned i = 0; i < FY_PAGE_SIZE / 8; i++)
        words[i] = xorshift(state) | 1; /* never a zero page */
}

int fy_bench_fill_region(struct fy_region *r, const struct fy_bench_fill *f)
{
    uint8_t *base = fy_region_base(r);
    uint64_t npages = fy_region_pages(r);
    uint64_t state = f->seed ? f->seed : 0x9e3779b97f4a7c15ull;
    uint64_t *shared;
    uint64_t zero_cut, dup_cut;

    if (!base)
        return fy_error(FY_E_INVAL, "fill: %s is not mapped", fy_region_name(r));
    if (f->dup_ratio < 0 || f->zero_ratio < 0 || f->dup_ratio + f->zero_ratio > 1)
        return fy_error(FY_E_INVAL,
                        "duplicate share %.2f plus zero share %.2f must be "
                        "within 0..1", f->dup_ratio, f->zero_ratio);
    shared = malloc((size_t)SHARED_CONTENTS * FY_PAGE_SIZE);
    if (!shared)
        return fy_error(FY_E_NOMEM, "no memory for shared page contents");
    for (unsigned i = 0; i < SHARED_CONTENTS; i++)
        fill_random(shared + (size_t)i * (FY_PAGE_SIZE / 8), &state);
    /* Thresholds on a 32-bit draw. */
    zero_cut = (uint64_t)(f->zero_ratio * 4294967296.0);
    dup_cut = zero_cut + (uint64_t)(f->dup_ratio * 4294967296.0);
    for (uint64_t p = 0; p < npages; p++) {
        uint64_t draw = xorshift(&state) >> 32;
        uint64_t *page = (uint64_t *)(base + (p << FY_PAGE_SHIFT));
        if (draw < zero_cut) {
            /* Zero but allocated, as pages a guest zeroed: a hole would be
             * found without reading it, which real zero pages rarely are
             * when they are scattered like these. */
            memset(page, 0, FY_PAGE_SIZE);
            continue;
        }
        if (draw < dup_cut)
            memcpy(page,
                   shared + (xorshift(&state) % SHARED_CONTENTS) * (FY_PAGE_SIZE / 8),
                   FY_PAGE_SIZE);
        else
            fill_random(page, &state);
    }
    free(shared);
    return 0;
}

struct fy_bench_writer {
    struct fy_region *r;
    uint8_t *base;
    uint64_t npages;
    double rate;
    uint64_t seed;
    uint64_t *log;        /* dirty log: one bit per page */
    pthread_t tid;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    bool pause;
    bool idle;            /* acknowledged the pause */
    uint64_t writes;
};

static void *writer_main(void *arg)
{
    struct fy_bench_writer *w = arg;
    uint64_t state = w->seed | 1, counter = 0;
    struct timespec t0, now;
    double done = 0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        pthread_mutex_lock(&w->lock);
        if (w->pause && !w->stop) {
            w->idle = true;
            pthread_cond_broadcast(&w->cond);
            while (w->pause && !w->stop)
                pthread_cond_wait(&w->cond, &w->lock);
            w->idle = false;
        }
        bool stop = w->stop;
        pthread_mutex_unlock(&w->lock);
        if (stop)
            break;

        /* Catch up with the rate, then sleep 1 ms. */
        clock_gettime(CLOCK_MONOTONIC, &now);
        double elapsed = (double)(now.tv_sec - t0.tv_sec) +
                         (double)(now.tv_nsec - t0.tv_nsec) * 1e-9;
        uint64_t due = (uint64_t)(elapsed * w->rate - done);
        for (uint64_t i = 0; i < due && i < 100000; i++) {
            uint64_t page = xorshift(&state) % w->npages;
            uint64_t line = xorshift(&state) % (FY_PAGE_SIZE / 64);
            uint64_t *p = (uint64_t *)(w->base + (page << FY_PAGE_SHIFT) + line * 64);
            counter++;
            for (unsigned k = 0; k < 8; k++)
                __atomic_store_n(&p[k], counter * 0x100000001b3ull + k + 1,
                                 __ATOMIC_RELAXED);
            /* The bit after the write: a log read between the two still
             * sees the page in the next period. */
            __atomic_fetch_or(&w->log[page >> 6], 1ull << (page & 63),
                              __ATOMIC_RELEASE);
            __atomic_fetch_add(&w->writes, 1, __ATOMIC_RELAXED);
        }
        done += (double)due;
        usleep(1000);
    }
    return NULL;
}

int fy_bench_writer_start(struct fy_region *r, double pages_per_s,
                          uint64_t seed, struct fy_bench_writer **out)
{
    struct fy_bench_writer *w;

    if (!fy_region_base(r))
        return fy_error(FY_E_INVAL, "writer: %s is not mapped", fy_region_name(r));
    w = calloc(1, sizeof(*w));
    if (!w)
        return fy_error(FY_E_NOMEM, "no memory for a writer");
    w->r = r;
    w->base = fy_region_base(r);
    w->npages = fy_region_pages(r);
    w->rate = pages_per_s;
    w->seed = seed ? seed : 42;
    w->log = calloc((w->npages + 63) / 64, 8);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (!w->log || pthread_create(&w->tid, NULL, writer_main, w) != 0) {
        free(w->log);
        free(w);
        return fy_error(FY_E_NOMEM, "cannot start the writer thread");
    }
    *out = w;
    return 0;
}

void fy_bench_writer_stop(struct fy_bench_writer *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->tid, NULL);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    free(w->log);
    free(w);
}

int fy_bench_writer_dirty_sync(void *ctx, uint64_t *bitmap, uint64_t npages)
{
    struct fy_bench_writer *w = ctx;
    uint64_t words = (npages + 63) / 64;

    if (npages != w->npages)
        return fy_error(FY_E_INVAL, "dirty log of %llu pages asked, writer has %llu",
                        (unsigned long long)npages, (unsigned long long)w->npages);
    for (uint64_t i = 0; i < words; i++)
        bitmap[i] = __atomic_exchange_n(&w->log[i], 0, __ATOMIC_ACQ_REL);
    return 0;
}

int fy_bench_writer_pause(void *ctx)
{
    struct fy_bench_writer *w = ctx;

    pthread_mutex_lock(&w->lock);
    w->pause = true;
    pthread_cond_broadcast(&w->cond);
    while (!w->idle && !w->stop)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

uint64_t fy_bench_writer_writes(const struct fy_bench_writer *w)
{
    return w ? __atomic_load_n(&w->writes, __ATOMIC_RELAXED) : 0;
}
