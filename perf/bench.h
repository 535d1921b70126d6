/* Benchmark building blocks shared by ferry-perf and the integration tests:
 * synthetic guest memory, a writer that dirties it, the environment each
 * transport runs in, one side of a migration, and the two-process pipeline
 * run with its same-run baselines. */
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

/* ---- transport environments --------------------------------------------
 * Where the two sides of a benchmark migration run, per transport: tcp over
 * loopback; dpdk over a net_memif link whose socket lives in a private
 * directory; xdp between two network namespaces joined by a veth pair
 * (perf/env_xdp.c).  Each side runs in its own process: a DPDK EAL is set
 * up once per process, so the pipeline forks both sides before any
 * transport is touched. */

enum fy_bench_side { FY_BENCH_TARGET = 0, FY_BENCH_SOURCE = 1 };

struct fy_bench_env {
    char transport[16];
    char dir[128];        /* private directory (memif socket), "" if none;
                             teardown removes it */
    char listen[64];      /* where the target listens, "ADDR:PORT" (port 0:
                             any; the target reports the real one) */
    char params[2][512];  /* fy_transport_opts.params of each side, by
                             enum fy_bench_side */
    char netns[2][64];    /* network namespace each side enters (a name
                             under /var/run/netns or a path), "" : this one */
    char note[128];       /* what the environment is, for the report */
    void *priv;           /* the environment's own state */
};

/* Prepares the environment for 'transport'; 'extra' (may be NULL or "")
 * is appended to both sides' params (";"-separated key=value).  On
 * failure nothing is left behind. */
int fy_bench_env_setup(const char *transport, const char *extra,
                       struct fy_bench_env *env);

/* Called in a side's process, after fork and before any transport call or
 * thread: enters that side's network namespace, if it has one. */
int fy_bench_env_enter(const struct fy_bench_env *env, enum fy_bench_side side);

/* Removes what setup made.  Safe on a zeroed or failed env. */
void fy_bench_env_teardown(struct fy_bench_env *env);

/* perf/env_xdp.c: the xdp environment.  setup fills env->listen,
 * env->params[] (without 'extra', which the caller appends), env->netns[],
 * env->note and whatever it needs in env->priv (two namespaces joined by a
 * veth pair, addresses, MTU); teardown removes all of it, also after a
 * failed or partial setup. */
int fy_bench_env_xdp_setup(struct fy_bench_env *env);
void fy_bench_env_xdp_teardown(struct fy_bench_env *env);

/* ---- one side of a migration ---------------------------------------------- */

struct fy_bench_side_cfg {
    const char *transport;
    const char *addr;       /* recv: listen here; send: connect here */
    const char *params;     /* transport params, may be NULL */
    uint64_t size;          /* region bytes */
    unsigned streams;       /* send: 0: fy_bench_streams() */
    double dup_ratio;       /* send: the synthetic region's content */
    double zero_ratio;
    double dirty_rate;      /* send: writer pages per second */
    bool rehash;
    uint32_t downtime_ms;
    unsigned max_rounds;
    int timeout_ms;         /* transport timeout; 0: its default */
    fy_round_fn on_round;   /* may be NULL */
    void *ctx;
    /* recv: called once listening, with the bound address (port 0 asked:
     * the real one); may be NULL. */
    void (*on_listen)(void *ctx, const char *addr);
};

struct fy_bench_side_result {
    struct fy_migration_stats st;
    double cpu;             /* CPU seconds of this process during the
                               migration (getrusage RUSAGE_SELF) */
    uint64_t writes;        /* send: pages the writer wrote */
    unsigned streams;
    char mode[96];          /* how the transport ran, if it says */
    struct {                /* packet transports (pkt.h): this side's
                               session counters */
        bool valid;
        uint64_t tx_frames, rx_frames;
        uint64_t retransmits; /* frames sent again (loss repaired) */
        uint64_t timeouts;    /* retransmission timer expiries */
        uint64_t dup_frames;  /* frames received twice, dropped */
        uint64_t dropped;     /* malformed, unknown or out of range */
    } pkt;
};

/* Receives one migration into a fresh region of cfg->size bytes.
 * Returns 0 when the digests matched, FY_E_VERIFY when they did not, or
 * another error; *res is filled as far as it got. */
int fy_bench_recv(const struct fy_bench_side_cfg *cfg,
                  struct fy_bench_side_result *res);

/* Receives into 'dst' (fresh: it reads as zero), the pipeline's. */
int fy_bench_recv_region(const struct fy_bench_side_cfg *cfg, struct fy_region *dst,
                         struct fy_bench_side_result *res);

/* Fills a synthetic region (seed 1, as the pipeline) and migrates it to
 * cfg->addr while a writer dirties it at cfg->dirty_rate. */
int fy_bench_send(const struct fy_bench_side_cfg *cfg,
                  struct fy_bench_side_result *res);

/* Migrates an already filled region 'src' (the pipeline's). */
int fy_bench_send_region(const struct fy_bench_side_cfg *cfg,
                         struct fy_region *src,
                         struct fy_bench_side_result *res);

/* ---- the pipeline ------------------------------------------------------- */

struct fy_pipeline_cfg {
    const char *transport;  /* "tcp", "dpdk", "xdp" */
    const char *params;     /* extra transport params for both sides
                               (fy_bench_env_setup), may be NULL */
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
    fy_round_fn on_round;   /* source rounds (called in the source's
                               process), may be NULL */
    void (*on_run)(void *ctx, unsigned run); /* before repetition 'run'
                               (1, 2, ...), in this process; may be NULL */
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
    char mode[96];          /* how the transport ran (target side), if it
                               says; "" for tcp */
    struct fy_bench_side_result src_side, tgt_side; /* each side's report */
    char env_note[128];     /* where it ran (fy_bench_env.note) */
};

/* Fills a synthetic region, then migrates it cfg->repeat times between two
 * forked processes, a source and a target, in the transport's environment
 * (fy_bench_env_setup).  This process never sets up a transport itself.
 * Returns the source's result of the fastest repetition (baselines: their
 * fastest); the target's is in res->target_rc. */
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
