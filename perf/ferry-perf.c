/* ferry-perf: a perftest-style benchmark of Ferry's page pipeline.
 *
 *   ferry-perf hash       classifier speed (hash, zero test, dedup lookup)
 *   ferry-perf pipeline   a whole migration between two processes over
 *                         loopback, with same-run baselines
 */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ferry/dedup.h"
#include "ferry/error.h"
#include "ferry/transport.h"
#include "perf/bench.h"

#define EXIT_USAGE 2
#define GIB (1024.0 * 1024.0 * 1024.0)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static unsigned ncpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

static void usage(FILE *f)
{
    fprintf(f,
"usage: ferry-perf hash [--size SIZE] [--threads N] [--json]\n"
"       ferry-perf pipeline [--transport tcp] [--size SIZE] [--streams K]\n"
"                           [--dup-ratio D] [--zero-ratio Z] [--dirty-rate R]\n"
"                           [--rehash] [--downtime-ms MS] [--max-rounds N]\n"
"                           [--no-baselines] [--repeat N] [--json]\n"
"\n"
"hash      Speed of the page classifier on one core and on all cores:\n"
"          XXH3-128 page hashing, the zero-page test, and hash + dedup index\n"
"          insert/lookup, over SIZE bytes of random pages (default 256M).\n"
"\n"
"pipeline  Migrates a SIZE region (default 1G) from this process to a forked\n"
"          target process over loopback with K streams (default: half the\n"
"          CPUs, at least 1: both ends run on this machine, so each gets half,\n"
"          as each host would have all of its own).\n"
"          D and Z are the shares of duplicate and zero pages (0..1, default\n"
"          0), R the pages per second a writer thread dirties during the\n"
"          migration (default 0).  Dirty pages come from the writer's dirty\n"
"          log, or with --rehash from re-hashing every page.  In the same run\n"
"          it times memcpy of the same bytes and a raw TCP send of them over\n"
"          K connections, and prints the ratios.  Throughput is region bytes\n"
"          divided by migration time (effective); wire throughput is shown\n"
"          too.  CPU seconds per GiB come from getrusage of each process.\n"
"          Each measurement runs N times (default 3) and the fastest is kept,\n"
"          as perftest reports peak bandwidth; every run must verify.\n"
"\n"
"--json    one JSON object per test on its own line, with test, transport,\n"
"          bytes, wire_bytes, seconds, gbit_per_s and baseline_gbit_per_s.\n"
"Transports in this build: %s\n", fy_transport_names());
}

/* ---- hash ---------------------------------------------------------------- */

enum hash_kind { K_HASH, K_ZERO, K_CLASSIFY };

struct hash_job {
    enum hash_kind kind;
    const uint8_t *buf;
    uint64_t first, npages;
    struct fy_pagemap *pm;
    struct fy_dedup *d;
    int space;
    uint64_t sink;
};

static void *hash_worker(void *arg)
{
    struct hash_job *j = arg;
    uint64_t sink = 0;

    for (uint64_t p = j->first; p < j->first + j->npages; p++) {
        const uint8_t *page = j->buf + (p << FY_PAGE_SHIFT);
        if (j->kind == K_ZERO) {
            sink += fy_page_is_zero(page);
        } else if (j->kind == K_HASH) {
            sink += fy_page_hash(page).lo;
        } else {
            struct fy_dedup_loc loc;
            fy_hash128 h;
            if (fy_page_is_zero(page))
                continue;
            h = fy_page_hash(page);
            if (!fy_dedup_lookup(j->d, h, &loc)) {
                fy_pagemap_set(j->pm, p, h);
                fy_dedup_insert(j->d, h, (struct fy_dedup_loc){(uint32_t)j->space, p});
            }
            sink++;
        }
    }
    j->sink = sink;
    return NULL;
}

static double run_hash(enum hash_kind kind, const uint8_t *buf, uint64_t npages,
                       unsigned threads)
{
    struct hash_job jobs[64];
    pthread_t tid[64];
    struct fy_pagemap pm = {0};
    struct fy_dedup *d = NULL;
    int space = 0;
    double t0, t;

    if (kind == K_CLASSIFY) {
        if (fy_pagemap_init(&pm, npages) < 0 || !(d = fy_dedup_create(npages)))
            return -1;
        space = fy_dedup_add_space(d, &pm);
    }
    t0 = now();
    for (unsigned i = 0; i < threads; i++) {
        jobs[i] = (struct hash_job){.kind = kind, .buf = buf,
                                    .first = npages * i / threads,
                                    .npages = npages * (i + 1) / threads - npages * i / threads,
                                    .pm = &pm, .d = d, .space = space};
        pthread_create(&tid[i], NULL, hash_worker, &jobs[i]);
    }
    for (unsigned i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    t = now() - t0;
    fy_dedup_destroy(d);
    fy_pagemap_fini(&pm);
    return t;
}

static int cmd_hash(int argc, char **argv)
{
    static const struct option opts[] = {
        {"size", required_argument, NULL, 's'},
        {"threads", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    uint64_t size = 256ull << 20;
    unsigned threads = ncpus();
    bool json = false;
    int c;

    while ((c = getopt_long(argc, argv, "s:t:jh", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (fy_bench_parse_size(optarg, &size) < 0 || size < FY_PAGE_SIZE) {
                fprintf(stderr, "ferry-perf: %s\n", fy_error_detail());
                return EXIT_USAGE;
            }
            break;
        case 't':
            threads = (unsigned)atoi(optarg);
            if (threads < 1 || threads > 64) {
                fprintf(stderr, "ferry-perf: --threads takes 1..64\n");
                return EXIT_USAGE;
            }
            break;
        case 'j': json = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    uint64_t npages = size >> FY_PAGE_SHIFT;
    uint8_t *buf, *zeros;
    if (posix_memalign((void **)&buf, 4096, npages << FY_PAGE_SHIFT) ||
        posix_memalign((void **)&zeros, 4096, npages << FY_PAGE_SHIFT)) {
        fprintf(stderr, "ferry-perf: no memory for %llu bytes\n", (unsigned long long)size);
        return 1;
    }
    uint64_t st = 88172645463325252ull;
    for (uint64_t i = 0; i < (npages << FY_PAGE_SHIFT) / 8; i++) {
        st ^= st << 13; st ^= st >> 7; st ^= st << 17;
        ((uint64_t *)buf)[i] = st;
    }
    memset(zeros, 0, npages << FY_PAGE_SHIFT);

    static const struct { enum hash_kind k; const char *name; bool zero; } tests[] = {
        {K_HASH, "hash_xxh3_128", false},
        {K_ZERO, "zero_test", true},
        {K_CLASSIFY, "classify_dedup", false},
    };
    if (!json)
        printf("%-16s %8s %12s %10s %12s\n", "test", "threads", "bytes", "seconds", "GB/s");
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        unsigned counts[2] = {1, threads};
        for (int k = 0; k < (threads > 1 ? 2 : 1); k++) {
            const uint8_t *b = tests[i].zero ? zeros : buf;
            run_hash(tests[i].k, b, npages, counts[k]); /* warm */
            double t = run_hash(tests[i].k, b, npages, counts[k]);
            double gbs = (double)size / t / 1e9;
            if (json)
                printf("{\"test\":\"%s\",\"transport\":\"none\",\"threads\":%u,"
                       "\"bytes\":%llu,\"wire_bytes\":0,\"seconds\":%.6f,"
                       "\"gbyte_per_s\":%.3f,\"gbit_per_s\":%.3f}\n",
                       tests[i].name, counts[k], (unsigned long long)size, t, gbs,
                       gbs * 8);
            else
                printf("%-16s %8u %12llu %10.4f %12.2f\n", tests[i].name, counts[k],
                       (unsigned long long)size, t, gbs);
        }
    }
    free(buf);
    free(zeros);
    return 0;
}

/* ---- pipeline --------------------------------------------------------------- */

static void print_round(void *ctx, const struct fy_round_stats *st)
{
    static unsigned run;

    (void)ctx;
    if (st->round == 1)
        printf("run %u\n", ++run);
    printf("%5u%s %9llu %9llu %9llu %9llu %9llu %9.1f %7.3f %9.0f %9.3f\n",
           st->round, st->final ? "*" : " ", (unsigned long long)st->dirty_pages,
           (unsigned long long)st->pages_sent, (unsigned long long)st->pages_zero,
           (unsigned long long)st->pages_dup, (unsigned long long)st->pages_resent,
           (double)st->wire_bytes / (1 << 20), st->seconds, st->dirty_rate,
           st->expected_downtime);
    fflush(stdout);
}

static double gbit(uint64_t bytes, double s)
{
    return s > 0 ? (double)bytes * 8 / s / 1e9 : 0;
}

static int cmd_pipeline(int argc, char **argv)
{
    static const struct option opts[] = {
        {"transport", required_argument, NULL, 'T'},
        {"size", required_argument, NULL, 's'},
        {"streams", required_argument, NULL, 'k'},
        {"dup-ratio", required_argument, NULL, 'D'},
        {"zero-ratio", required_argument, NULL, 'Z'},
        {"dirty-rate", required_argument, NULL, 'R'},
        {"rehash", no_argument, NULL, 'H'},
        {"downtime-ms", required_argument, NULL, 'd'},
        {"max-rounds", required_argument, NULL, 'r'},
        {"no-baselines", no_argument, NULL, 'B'},
        {"repeat", required_argument, NULL, 'n'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    struct fy_pipeline_cfg cfg = {.transport = "tcp", .size = 1ull << 30,
                                  .baselines = true, .check_bytes = true,
                                  .repeat = 3};
    struct fy_pipeline_result res;
    bool json = false;
    int c, rc;

    while ((c = getopt_long(argc, argv, "T:s:k:D:Z:R:Hd:r:Bn:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'T': cfg.transport = optarg; break;
        case 's':
            if (fy_bench_parse_size(optarg, &cfg.size) < 0 || cfg.size < FY_PAGE_SIZE ||
                cfg.size % FY_PAGE_SIZE) {
                fprintf(stderr, "ferry-perf: --size must be a multiple of 4K: %s\n",
                        optarg);
                return EXIT_USAGE;
            }
            break;
        case 'k':
            cfg.streams = (unsigned)atoi(optarg);
            if (cfg.streams < 1 || cfg.streams > 256) {
                fprintf(stderr, "ferry-perf: --streams takes 1..256\n");
                return EXIT_USAGE;
            }
            break;
        case 'D': cfg.dup_ratio = atof(optarg); break;
        case 'Z': cfg.zero_ratio = atof(optarg); break;
        case 'R': cfg.dirty_rate = atof(optarg); break;
        case 'H': cfg.rehash = true; break;
        case 'd': cfg.downtime_ms = (uint32_t)atoi(optarg); break;
        case 'r': cfg.max_rounds = (unsigned)atoi(optarg); break;
        case 'B': cfg.baselines = false; break;
        case 'n':
            cfg.repeat = (unsigned)atoi(optarg);
            if (cfg.repeat < 1 || cfg.repeat > 100) {
                fprintf(stderr, "ferry-perf: --repeat takes 1..100\n");
                return EXIT_USAGE;
            }
            break;
        case 'j': json = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (cfg.dup_ratio < 0 || cfg.zero_ratio < 0 || cfg.dup_ratio + cfg.zero_ratio > 1 ||
        cfg.dirty_rate < 0) {
        fprintf(stderr, "ferry-perf: --dup-ratio and --zero-ratio are shares "
                        "(0..1, summing to at most 1); --dirty-rate >= 0\n");
        return EXIT_USAGE;
    }
    if (!fy_transport_find(cfg.transport)) {
        fprintf(stderr, "ferry-perf: %s\n", fy_error_detail());
        return EXIT_USAGE;
    }
    if (!json) {
        printf("pipeline: %s, %.2f GiB, %u stream(s), dup %.0f%%, zero %.0f%%, "
               "dirty %.0f pages/s (%s)\n",
               cfg.transport, (double)cfg.size / GIB,
               fy_bench_streams(&cfg), cfg.dup_ratio * 100, cfg.zero_ratio * 100,
               cfg.dirty_rate, cfg.rehash ? "re-hash" : "dirty log");
        printf("round      dirty      sent      zero       dup    resent  wire MiB    secs   dirty/s  downtime\n");
        cfg.on_round = print_round;
    }
    rc = fy_bench_pipeline(&cfg, &res);
    if (rc < 0) {
        fprintf(stderr, "ferry-perf: pipeline failed: %s\n", fy_error_detail());
        return 1;
    }

    const struct fy_migration_stats *m = &res.src;
    double gib = (double)cfg.size / GIB;
    double eff = gbit(cfg.size, m->seconds);
    double raw = gbit(cfg.size, res.raw_tcp_seconds);
    double mcp = gbit(cfg.size, res.memcpy_seconds);
    uint64_t moved = m->pages_sent + m->pages_zero + m->pages_dup;

    if (json) {
        printf("{\"test\":\"pipeline\",\"transport\":\"%s\",\"bytes\":%llu,"
               "\"wire_bytes\":%llu,\"seconds\":%.6f,\"gbit_per_s\":%.3f,"
               "\"baseline_gbit_per_s\":%.3f,\"ratio_to_baseline\":%.3f,"
               "\"wire_gbit_per_s\":%.3f,\"pages_per_s\":%.0f,\"streams\":%u,"
               "\"dup_ratio\":%.3f,\"zero_ratio\":%.3f,\"dirty_rate\":%.0f,"
               "\"rehash\":%s,\"rounds\":%u,\"pages_sent\":%llu,\"pages_zero\":%llu,"
               "\"pages_dup\":%llu,\"pages_resent\":%llu,\"writes\":%llu,"
               "\"downtime_s\":%.6f,\"verify_s\":%.6f,\"converged\":%s,"
               "\"verified\":%s,\"identical\":%s,\"wire_share\":%.4f,"
               "\"sender_cpu_s_per_gib\":%.3f,\"receiver_cpu_s_per_gib\":%.3f}\n",
               cfg.transport, (unsigned long long)cfg.size,
               (unsigned long long)m->wire_bytes, m->seconds, eff, raw,
               raw > 0 ? eff / raw : 0, gbit(m->wire_bytes, m->seconds),
               m->seconds > 0 ? (double)moved / m->seconds : 0, res.streams,
               cfg.dup_ratio, cfg.zero_ratio, cfg.dirty_rate,
               cfg.rehash ? "true" : "false", m->rounds,
               (unsigned long long)m->pages_sent, (unsigned long long)m->pages_zero,
               (unsigned long long)m->pages_dup, (unsigned long long)m->pages_resent,
               (unsigned long long)res.writes, m->downtime, m->verify_seconds,
               m->converged ? "true" : "false", m->verified ? "true" : "false",
               res.identical ? "true" : "false",
               (double)m->wire_bytes / (double)cfg.size, res.src_cpu / gib,
               res.tgt_cpu / gib);
        if (cfg.baselines) {
            printf("{\"test\":\"memcpy\",\"transport\":\"none\",\"bytes\":%llu,"
                   "\"wire_bytes\":0,\"seconds\":%.6f,\"gbit_per_s\":%.3f,"
                   "\"baseline_gbit_per_s\":%.3f}\n",
                   (unsigned long long)cfg.size, res.memcpy_seconds, mcp, mcp);
            printf("{\"test\":\"tcp_raw\",\"transport\":\"tcp\",\"bytes\":%llu,"
                   "\"wire_bytes\":%llu,\"seconds\":%.6f,\"gbit_per_s\":%.3f,"
                   "\"baseline_gbit_per_s\":%.3f,\"streams\":%u,"
                   "\"sender_cpu_s_per_gib\":%.3f,\"receiver_cpu_s_per_gib\":%.3f}\n",
                   (unsigned long long)cfg.size, (unsigned long long)cfg.size,
                   res.raw_tcp_seconds, raw, raw, res.streams,
                   res.raw_src_cpu / gib, res.raw_tgt_cpu / gib);
        }
    } else {
        printf("\nmigration  %.3f s, downtime %.3f s (verify %.3f s), %u rounds, %s\n",
               m->seconds, m->downtime, m->verify_seconds, m->rounds,
               m->converged ? "converged" : "round limit reached");
        printf("pages      %llu sent, %llu zero, %llu duplicate, %llu resent; "
               "writer wrote %llu\n",
               (unsigned long long)m->pages_sent, (unsigned long long)m->pages_zero,
               (unsigned long long)m->pages_dup, (unsigned long long)m->pages_resent,
               (unsigned long long)res.writes);
        printf("wire       %.1f MiB = %.1f%% of the region\n",
               (double)m->wire_bytes / (1 << 20),
               100.0 * (double)m->wire_bytes / (double)cfg.size);
        printf("result     %s, %s\n", m->verified ? "digests match" : "NOT verified",
               res.identical ? "regions byte-identical" : "regions DIFFER");
        printf("throughput %.2f Gbit/s effective, %.2f Gbit/s on the wire, %.0f pages/s\n",
               eff, gbit(m->wire_bytes, m->seconds),
               m->seconds > 0 ? (double)moved / m->seconds : 0);
        printf("cpu        sender %.2f s/GiB, receiver %.2f s/GiB\n",
               res.src_cpu / gib, res.tgt_cpu / gib);
        if (cfg.baselines) {
            printf("baselines  memcpy %.2f Gbit/s; raw tcp (%u streams) %.2f Gbit/s, "
                   "cpu %.2f + %.2f s/GiB\n",
                   mcp, res.streams, raw, res.raw_src_cpu / gib, res.raw_tgt_cpu / gib);
            printf("ratio      pipeline / raw tcp = %.2f; pipeline / memcpy = %.2f\n",
                   raw > 0 ? eff / raw : 0, mcp > 0 ? eff / mcp : 0);
        }
    }
    return res.identical || !cfg.check_bytes ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "hash"))
        return cmd_hash(argc - 1, argv + 1);
    if (!strcmp(argv[1], "pipeline"))
        return cmd_pipeline(argc - 1, argv + 1);
    fprintf(stderr, "ferry-perf: unknown test '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
