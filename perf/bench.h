/* Benchmark building blocks shared by ferry-perf and the integration tests:
 * synthetic guest memory, a writer that dirties it, and the two-process
 * pipeline run with its same-run baselines. */
#ifndef FERRY_BENCH_H
#define FERRY_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "ferry/engine.h"
#include "ferry/region.h"

/* ---- synthetic memory -------------------------------------------------- */

struct fy_bench_fill {
    double dup_ratio;  /* share of pages that copy another page's content */
    double zero_ratio; /* share of pages left zero */
    uint64_t seed;
};

/* Fills a region: each page is zero, a copy of one of 1024 shared contents,
 * or unique, in the given shares, placed at random (seeded).  Every page is
 * written, so zero pages are allocated zeros, not holes. */
int fy_bench_fill_region(struct fy_region *r, const struct fy_bench_fill *f);

/* ---- the dirtying writer ------------------------------------------------ */

/* A thread that writes 'pages_per_s' random pages of a mapped region (64
 * bytes each, so every write makes the page's content new) and keeps a
 * dirty log as KVM does: a bit per page, set after the write. */
struct fy_bench_writer;

int fy_bench_writer_start(struct fy_region *r, double pages_per_s,
                          uint64_t seed, struct fy_bench_writer **out);
/* Stops the thread and frees it.  NULL is allowed. */
void fy_bench_writer_stop(struct fy_bench_writer *w);
/* fy_dirty_sync_fn and fy_pause_fn over a writer (ctx = the writer). */
int fy_bench_writer_dirty_sync(void *ctx, uint64_t *bitmap, uint64_t npages);
int fy_bench_writer_pause(void *ctx);
uint64_t fy_bench_writer_writes(const struct fy_bench_writer *w);

/* ---- the pipeline ------------------------------------------------------- */

struct fy_pipeline_cfg {
    const char *transport;  /* "tcp" */
    uint64_t size;          /* region bytes */
    unsigned streams;       /* 0: half the CPUs (both ends run here) */
    double dup_ratio;
    double zero_ratio;
    double dirty_rate;      /* pages per second written during migration */
    bool rehash;            /* find dirty pages by re-hashing, not the log */
    uint32_t downtime_ms;
    unsigned max_rounds;
    bool baselines;         /* also time memcpy and raw TCP of the same bytes */
    bool check_bytes;       /* compare the two regions byte by byte after */
    unsigned repeat;        /* repetitions; the best of each measurement is
                               kept (0: 1) */
    fy_round_fn on_round;   /* source rounds, may be NULL */
    void *ctx;
};

struct fy_pipeline_result {
    struct fy_migration_stats src;
    struct fy_migration_stats tgt;
    int target_rc;          /* the target process's result */
    bool identical;         /* regions byte-identical (if checked) */
    unsigned streams;
    uint64_t writes;        /* pages the writer wrote */
    double src_cpu;         /* CPU seconds of the source process */
    double tgt_cpu;         /* CPU seconds of the target process */
    double memcpy_seconds;  /* baselines, 0 if not run */
    double raw_tcp_seconds;
    double raw_src_cpu, raw_tgt_cpu;
};

/* Fills a synthetic region, then migrates it cfg->repeat times between this
 * process (source) and a forked target process over loopback.  Returns the
 * source's result of the fastest repetition (baselines: their fastest); the
 * target's is in res->target_rc. */
int fy_bench_pipeline(const struct fy_pipeline_cfg *cfg,
                      struct fy_pipeline_result *res);

/* Times memcpy of the region into a fresh memfd of the same size. */
int fy_bench_memcpy(struct fy_region *src, double *seconds);

/* Times sending the region's bytes over 'streams' TCP connections to a
 * forked receiver that reads and discards them. */
int fy_bench_raw_tcp(struct fy_region *src, unsigned streams, double *seconds,
                     double *src_cpu, double *tgt_cpu);

/* The streams a pipeline run uses: cfg->streams, or by default half the
 * CPUs (at least 1). */
unsigned fy_bench_streams(const struct fy_pipeline_cfg *cfg);

/* Parses "1G", "512M", "64K", "4096" into bytes. */
int fy_bench_parse_size(const char *s, uint64_t *out);

#endif /* FERRY_BENCH_H */
