/* ferry-perf: a perftest-style benchmark of Ferry's page pipeline.
 *
 *   ferry-perf hash       classifier speed (hash, zero test, dedup lookup)
 *   ferry-perf pipeline   a whole migration between two processes over
 *                         each transport, with same-run baselines
 *   ferry-perf recv/send  one side of a migration each (two hosts, two
 *                         network namespaces)
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
#define MAX_TRANSPORTS 8

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
"       ferry-perf pipeline [--transport T[,T...]|all] [--params P] [--size SIZE]\n"
"                           [--streams K] [--dup-ratio D] [--zero-ratio Z]\n"
"                           [--dirty-rate R] [--rehash] [--downtime-ms MS]\n"
"                           [--max-rounds N] [--no-baselines] [--repeat N] [--json]\n"
"       ferry-perf recv --listen ADDR:PORT [--transport T] [--params P]\n"
"                       [--size SIZE] [--timeout-ms MS] [--ready-file FILE] [--json]\n"
"       ferry-perf send --to ADDR:PORT [--transport T] [--params P] [--size SIZE]\n"
"                       [--streams K] [--dup-ratio D] [--zero-ratio Z]\n"
"                       [--dirty-rate R] [--rehash] [--downtime-ms MS]\n"
"                       [--max-rounds N] [--timeout-ms MS] [--json]\n"
"\n"
"hash      Speed of the page classifier on one core and on all cores:\n"
"          XXH3-128 page hashing, the zero-page test, and hash + dedup index\n"
"          insert/lookup, over SIZE bytes of random pages (default 256M).\n"
"\n"
"pipeline  Migrates a SIZE region (default 1G) between two forked processes,\n"
"          a source and a target, with K streams (default: half the CPUs, at\n"
"          least 1: both ends run on this machine, so each gets half, as each\n"
"          host would have all of its own), over each transport named (a\n"
"          comma list, or all of this build's), one after the other in the\n"
"          same run: tcp over loopback, dpdk over a net_memif link between\n"
"          the two processes, xdp over a veth pair between two network\n"
"          namespaces.  P adds transport settings to both sides\n"
"          (docs/transports.md), e.g. 'queues=2' or\n"
"          'lossy=drop:0.01,reorder:0.01,dup:0.01'.\n"
"          D and Z are the shares of duplicate and zero pages (0..1, default\n"
"          0), R the pages per second a writer thread dirties during the\n"
"          migration (default 0).  Dirty pages come from the writer's dirty\n"
"          log, or with --rehash from re-hashing every page.  In the same run\n"
"          it times memcpy of the same bytes and a raw TCP send of them over\n"
"          K connections, and prints every transport's ratio to that raw TCP.\n"
"          Throughput is region bytes divided by migration time (effective);\n"
"          wire throughput is shown too.  CPU seconds per GiB (of the region)\n"
"          come from getrusage of each side's process during the migration.\n"
"          Each measurement runs N times (default 3) and the fastest is kept,\n"
"          as perftest reports peak bandwidth; every run must verify.\n"
"\n"
"recv      One side of a migration, for two hosts or two namespaces: listens\n"
"send      at ADDR:PORT (port 0: any; the address is printed on stderr and\n"
"          written to FILE) and receives a SIZE region; send fills a region as\n"
"          the pipeline does and migrates it to ADDR:PORT while the writer\n"
"          dirties it.  Both print their statistics and the region digest;\n"
"          each exits 0 only if the digests matched.  SIZE must be the same.\n"
"\n"
"--json    one JSON object per test on its own line, with test, transport,\n"
"          bytes, wire_bytes, seconds, gbit_per_s and baseline_gbit_per_s;\n"
"          pipeline lines add ratio_to_baseline, wire_percent,\n"
"          sender_cpu_s_per_gib, receiver_cpu_s_per_gib, transport_mode, ...\n"
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

static void print_run(void *ctx, unsigned run)
{
    (void)ctx;
    printf("run %u\n", run);
    fflush(stdout);
}

static void print_round(void *ctx, const struct fy_round_stats *st)
{
    (void)ctx;
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

/* The transports a --transport value names: "tcp", "tcp,dpdk", "all". */
static int parse_transports(const char *arg, char names[][16], unsigned max, unsigned *n)
{
    char buf[256];
    char *save = NULL;

    *n = 0;
    snprintf(buf, sizeof(buf), "%s", strcmp(arg, "all") ? arg : fy_transport_names());
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (*n == max || strlen(t) >= 16) {
            fprintf(stderr, "ferry-perf: --transport takes at most %u names\n", max);
            return -1;
        }
        if (!fy_transport_find(t)) {
            fprintf(stderr, "ferry-perf: %s\n", fy_error_detail());
            return -1;
        }
        for (unsigned i = 0; i < *n; i++)
            if (!strcmp(names[i], t)) {
                fprintf(stderr, "ferry-perf: --transport names %s twice\n", t);
                return -1;
            }
        snprintf(names[(*n)++], 16, "%s", t);
    }
    if (*n == 0) {
        fprintf(stderr, "ferry-perf: --transport needs a name (this build has: %s)\n",
                fy_transport_names());
        return -1;
    }
    return 0;
}

static void json_str(const char *key, const char *s)
{
    printf(",\"%s\":\"", key);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

static void print_result(const struct fy_pipeline_cfg *cfg,
                         const struct fy_pipeline_result *res, double raw_s,
                         double tcp_pipeline_gbit, bool json)
{
    const struct fy_migration_stats *m = &res->src;
    double gib = (double)cfg->size / GIB;
    double eff = gbit(cfg->size, m->seconds);
    double raw = gbit(cfg->size, raw_s);
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
               "\"sender_cpu_s_per_gib\":%.3f,\"receiver_cpu_s_per_gib\":%.3f,"
               "\"wire_percent\":%.2f,\"sender_cpu_s\":%.3f,\"receiver_cpu_s\":%.3f",
               cfg->transport, (unsigned long long)cfg->size,
               (unsigned long long)m->wire_bytes, m->seconds, eff, raw,
               raw > 0 ? eff / raw : 0, gbit(m->wire_bytes, m->seconds),
               m->seconds > 0 ? (double)moved / m->seconds : 0, res->streams,
               cfg->dup_ratio, cfg->zero_ratio, cfg->dirty_rate,
               cfg->rehash ? "true" : "false", m->rounds,
               (unsigned long long)m->pages_sent, (unsigned long long)m->pages_zero,
               (unsigned long long)m->pages_dup, (unsigned long long)m->pages_resent,
               (unsigned long long)res->writes, m->downtime, m->verify_seconds,
               m->converged ? "true" : "false", m->verified ? "true" : "false",
               res->identical ? "true" : "false",
               (double)m->wire_bytes / (double)cfg->size, res->src_cpu / gib,
               res->tgt_cpu / gib, 100.0 * (double)m->wire_bytes / (double)cfg->size,
               res->src_cpu, res->tgt_cpu);
        if (tcp_pipeline_gbit > 0)
            printf(",\"ratio_to_tcp_pipeline\":%.3f", eff / tcp_pipeline_gbit);
        if (res->src_side.pkt.valid && res->tgt_side.pkt.valid)
            printf(",\"sender_frames\":%llu,\"sender_retransmits\":%llu,"
                   "\"sender_timeouts\":%llu,\"receiver_frames\":%llu,"
                   "\"receiver_dup_frames\":%llu,\"frames_dropped\":%llu",
                   (unsigned long long)res->src_side.pkt.tx_frames,
                   (unsigned long long)res->src_side.pkt.retransmits,
                   (unsigned long long)res->src_side.pkt.timeouts,
                   (unsigned long long)res->tgt_side.pkt.tx_frames,
                   (unsigned long long)res->tgt_side.pkt.dup_frames,
                   (unsigned long long)(res->src_side.pkt.dropped +
                                        res->tgt_side.pkt.dropped));
        json_str("transport_mode", res->mode);
        json_str("environment", res->env_note);
        if (cfg->params)
            json_str("params", cfg->params);
        printf("}\n");
        return;
    }
    printf("\n%s: migration  %.3f s, downtime %.3f s (verify %.3f s), %u rounds, %s\n",
           cfg->transport, m->seconds, m->downtime, m->verify_seconds, m->rounds,
           m->converged ? "converged" : "round limit reached");
    if (res->mode[0] || res->env_note[0])
        printf("how        %s%s%s\n", res->mode, res->mode[0] ? " over " : "",
               res->env_note);
    printf("pages      %llu sent, %llu zero, %llu duplicate, %llu resent; "
           "writer wrote %llu\n",
           (unsigned long long)m->pages_sent, (unsigned long long)m->pages_zero,
           (unsigned long long)m->pages_dup, (unsigned long long)m->pages_resent,
           (unsigned long long)res->writes);
    printf("wire       %.1f MiB = %.1f%% of the region\n",
           (double)m->wire_bytes / (1 << 20),
           100.0 * (double)m->wire_bytes / (double)cfg->size);
    if (res->src_side.pkt.valid && res->tgt_side.pkt.valid)
        printf("frames     sender %llu (%llu sent again, %llu timeouts), receiver %llu "
               "(%llu duplicates dropped)\n",
               (unsigned long long)res->src_side.pkt.tx_frames,
               (unsigned long long)res->src_side.pkt.retransmits,
               (unsigned long long)res->src_side.pkt.timeouts,
               (unsigned long long)res->tgt_side.pkt.tx_frames,
               (unsigned long long)res->tgt_side.pkt.dup_frames);
    printf("result     %s, %s\n", m->verified ? "digests match" : "NOT verified",
           !cfg->check_bytes ? "regions not compared"
           : res->identical  ? "regions byte-identical"
                             : "regions DIFFER");
    printf("throughput %.2f Gbit/s effective, %.2f Gbit/s on the wire, %.0f pages/s\n",
           eff, gbit(m->wire_bytes, m->seconds),
           m->seconds > 0 ? (double)moved / m->seconds : 0);
    printf("cpu        sender %.2f s/GiB, receiver %.2f s/GiB\n", res->src_cpu / gib,
           res->tgt_cpu / gib);
    if (raw > 0)
        printf("ratio      %s pipeline / raw tcp = %.2f\n", cfg->transport, eff / raw);
}

static int cmd_pipeline(int argc, char **argv)
{
    static const struct option opts[] = {
        {"transport", required_argument, NULL, 'T'},
        {"params", required_argument, NULL, 'P'},
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
    struct fy_pipeline_cfg cfg = {.size = 1ull << 30, .baselines = true,
                                  .check_bytes = true, .repeat = 3};
    struct fy_pipeline_result res[MAX_TRANSPORTS];
    int rcs[MAX_TRANSPORTS];
    char names[MAX_TRANSPORTS][16];
    const char *transports = "tcp";
    unsigned nt = 0;
    bool json = false, baselines;
    int c, status = 0;

    while ((c = getopt_long(argc, argv, "T:P:s:k:D:Z:R:Hd:r:Bn:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'T': transports = optarg; break;
        case 'P': cfg.params = optarg; break;
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
    if (parse_transports(transports, names, MAX_TRANSPORTS, &nt) < 0)
        return EXIT_USAGE;

    /* The baselines run once, with the first transport: every ratio of
     * this run is to the same raw TCP measurement. */
    baselines = cfg.baselines;
    for (unsigned i = 0; i < nt; i++) {
        cfg.transport = names[i];
        cfg.baselines = baselines && i == 0;
        if (!json) {
            printf("%spipeline: %s, %.2f GiB, %u stream(s), dup %.0f%%, zero %.0f%%, "
                   "dirty %.0f pages/s (%s)%s%s\n",
                   i ? "\n" : "", cfg.transport, (double)cfg.size / GIB,
                   fy_bench_streams(&cfg), cfg.dup_ratio * 100, cfg.zero_ratio * 100,
                   cfg.dirty_rate, cfg.rehash ? "re-hash" : "dirty log",
                   cfg.params ? ", params " : "", cfg.params ? cfg.params : "");
            printf("round      dirty      sent      zero       dup    resent  wire MiB    secs   dirty/s  downtime\n");
            cfg.on_round = print_round;
            cfg.on_run = print_run;
        }
        rcs[i] = fy_bench_pipeline(&cfg, &res[i]);
        if (rcs[i] < 0) {
            fprintf(stderr, "ferry-perf: %s pipeline failed: %s\n", cfg.transport,
                    fy_error_detail());
            status = 1;
            continue;
        }
        if (cfg.check_bytes && !res[i].identical)
            status = 1;
    }

    double raw_s = nt && rcs[0] == 0 ? res[0].raw_tcp_seconds : 0;
    double tcp_gbit = 0;
    for (unsigned i = 0; i < nt; i++)
        if (!strcmp(names[i], "tcp") && rcs[i] == 0)
            tcp_gbit = gbit(cfg.size, res[i].src.seconds);
    for (unsigned i = 0; i < nt; i++) {
        if (rcs[i] < 0)
            continue;
        cfg.transport = names[i];
        print_result(&cfg, &res[i], raw_s, strcmp(names[i], "tcp") ? tcp_gbit : 0,
                     json);
    }
    if (nt && rcs[0] == 0 && baselines) {
        const struct fy_pipeline_result *b = &res[0];
        double gib = (double)cfg.size / GIB;
        double mcp = gbit(cfg.size, b->memcpy_seconds), raw = gbit(cfg.size, raw_s);
        if (json) {
            printf("{\"test\":\"memcpy\",\"transport\":\"none\",\"bytes\":%llu,"
                   "\"wire_bytes\":0,\"seconds\":%.6f,\"gbit_per_s\":%.3f,"
                   "\"baseline_gbit_per_s\":%.3f}\n",
                   (unsigned long long)cfg.size, b->memcpy_seconds, mcp, mcp);
            printf("{\"test\":\"tcp_raw\",\"transport\":\"tcp\",\"bytes\":%llu,"
                   "\"wire_bytes\":%llu,\"seconds\":%.6f,\"gbit_per_s\":%.3f,"
                   "\"baseline_gbit_per_s\":%.3f,\"streams\":%u,"
                   "\"sender_cpu_s_per_gib\":%.3f,\"receiver_cpu_s_per_gib\":%.3f}\n",
                   (unsigned long long)cfg.size, (unsigned long long)cfg.size, raw_s,
                   raw, raw, b->streams, b->raw_src_cpu / gib, b->raw_tgt_cpu / gib);
        } else {
            printf("\nbaselines  memcpy %.2f Gbit/s; raw tcp (%u streams) %.2f Gbit/s, "
                   "cpu %.2f + %.2f s/GiB\n",
                   mcp, b->streams, raw, b->raw_src_cpu / gib, b->raw_tgt_cpu / gib);
        }
    }
    if (!json && nt > 1) {
        double gib = (double)cfg.size / GIB;
        printf("\nsame run   %-10s %8s %10s %7s %12s %14s\n", "transport", "Gbit/s",
               "/ raw tcp", "wire %", "sender s/GiB", "receiver s/GiB");
        for (unsigned i = 0; i < nt; i++) {
            if (rcs[i] < 0) {
                printf("           %-10s failed\n", names[i]);
                continue;
            }
            double eff = gbit(cfg.size, res[i].src.seconds);
            double raw = gbit(cfg.size, raw_s);
            printf("           %-10s %8.2f %10.2f %7.1f %12.2f %14.2f\n", names[i], eff,
                   raw > 0 ? eff / raw : 0,
                   100.0 * (double)res[i].src.wire_bytes / (double)cfg.size,
                   res[i].src_cpu / gib, res[i].tgt_cpu / gib);
        }
    }
    return status;
}

/* ---- send / recv: one side each ------------------------------------------------ */

static void print_side(const char *test, const char *transport, uint64_t size,
                       int rc, const struct fy_bench_side_result *r, bool json)
{
    const struct fy_migration_stats *m = &r->st;
    double gib = (double)size / GIB;
    char digest[40];

    snprintf(digest, sizeof(digest), "%016llx%016llx", (unsigned long long)m->digest.hi,
             (unsigned long long)m->digest.lo);
    if (json) {
        printf("{\"test\":\"%s\",\"transport\":\"%s\",\"bytes\":%llu,\"wire_bytes\":%llu,"
               "\"seconds\":%.6f,\"gbit_per_s\":%.3f,\"streams\":%u,\"rounds\":%u,"
               "\"pages_sent\":%llu,\"pages_zero\":%llu,\"pages_dup\":%llu,"
               "\"pages_resent\":%llu,\"writes\":%llu,\"downtime_s\":%.6f,"
               "\"verified\":%s,\"cpu_s\":%.3f,\"cpu_s_per_gib\":%.3f",
               test, transport, (unsigned long long)size,
               (unsigned long long)m->wire_bytes, m->seconds, gbit(size, m->seconds),
               r->streams, m->rounds, (unsigned long long)m->pages_sent,
               (unsigned long long)m->pages_zero, (unsigned long long)m->pages_dup,
               (unsigned long long)m->pages_resent, (unsigned long long)r->writes,
               m->downtime, rc == 0 && m->verified ? "true" : "false", r->cpu,
               r->cpu / gib);
        json_str("digest", digest);
        json_str("transport_mode", r->mode);
        if (rc < 0)
            json_str("error", fy_error_detail());
        printf("}\n");
        return;
    }
    if (rc < 0)
        printf("%s: FAILED: %s\n", test, fy_error_detail());
    printf("%s: %s, %.2f GiB in %.3f s (%.2f Gbit/s), %u stream(s), %u rounds, "
           "downtime %.3f s, wire %.1f MiB\n",
           test, transport, gib, m->seconds, gbit(size, m->seconds), r->streams, m->rounds,
           m->downtime, (double)m->wire_bytes / (1 << 20));
    if (r->mode[0])
        printf("%s: how: %s\n", test, r->mode);
    printf("%s: cpu %.3f s (%.2f s/GiB); digest %s; %s\n", test, r->cpu, r->cpu / gib,
           digest, rc == 0 && m->verified ? "verified" : "NOT verified");
}

struct listen_note {
    const char *ready_file;
};

static void on_listen(void *ctx, const char *addr)
{
    struct listen_note *n = ctx;

    fprintf(stderr, "recv: listening on %s\n", addr);
    if (n->ready_file) {
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s.tmp", n->ready_file);
        FILE *f = fopen(tmp, "w");
        /* Written whole, then renamed: a script polling for the file never
         * reads half an address. */
        if (!f || fprintf(f, "%s\n", addr) < 0 || fclose(f) != 0 ||
            rename(tmp, n->ready_file) != 0)
            fprintf(stderr, "recv: cannot write %s\n", n->ready_file);
    }
}

static int cmd_side(int argc, char **argv, bool recv)
{
    static const struct option opts[] = {
        {"transport", required_argument, NULL, 'T'},
        {"listen", required_argument, NULL, 'L'},
        {"to", required_argument, NULL, 't'},
        {"params", required_argument, NULL, 'P'},
        {"size", required_argument, NULL, 's'},
        {"streams", required_argument, NULL, 'k'},
        {"dup-ratio", required_argument, NULL, 'D'},
        {"zero-ratio", required_argument, NULL, 'Z'},
        {"dirty-rate", required_argument, NULL, 'R'},
        {"rehash", no_argument, NULL, 'H'},
        {"downtime-ms", required_argument, NULL, 'd'},
        {"max-rounds", required_argument, NULL, 'r'},
        {"timeout-ms", required_argument, NULL, 'o'},
        {"ready-file", required_argument, NULL, 'F'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    const char *test = recv ? "recv" : "send";
    struct fy_bench_side_cfg cfg = {.transport = "tcp", .size = 1ull << 30};
    struct fy_bench_side_result res;
    struct listen_note note = {0};
    bool json = false;
    int c, rc;

    while ((c = getopt_long(argc, argv, "T:L:t:P:s:k:D:Z:R:Hd:r:o:F:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'T': cfg.transport = optarg; break;
        case 'L':
        case 't':
            if ((c == 'L') != recv) {
                fprintf(stderr, "ferry-perf: %s takes %s, not --%s\n", test,
                        recv ? "--listen ADDR" : "--to ADDR", c == 'L' ? "listen" : "to");
                return EXIT_USAGE;
            }
            cfg.addr = optarg;
            break;
        case 'P': cfg.params = optarg; break;
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
        case 'o': cfg.timeout_ms = atoi(optarg); break;
        case 'F': note.ready_file = optarg; break;
        case 'j': json = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (!cfg.addr) {
        fprintf(stderr, "ferry-perf: %s needs %s\n", test,
                recv ? "--listen ADDR:PORT" : "--to ADDR:PORT");
        return EXIT_USAGE;
    }
    if (cfg.dup_ratio < 0 || cfg.zero_ratio < 0 || cfg.dup_ratio + cfg.zero_ratio > 1 ||
        cfg.dirty_rate < 0 || cfg.timeout_ms < 0) {
        fprintf(stderr, "ferry-perf: --dup-ratio and --zero-ratio are shares "
                        "(0..1, summing to at most 1); --dirty-rate and --timeout-ms "
                        ">= 0\n");
        return EXIT_USAGE;
    }
    if (!fy_transport_find(cfg.transport)) {
        fprintf(stderr, "ferry-perf: %s\n", fy_error_detail());
        return EXIT_USAGE;
    }
    if (!json) {
        printf("round      dirty      sent      zero       dup    resent  wire MiB    secs   dirty/s  downtime\n");
        cfg.on_round = print_round;
    }
    if (recv) {
        cfg.on_listen = on_listen;
        /* print_round ignores its context; the listener's is the note. */
        cfg.ctx = &note;
        rc = fy_bench_recv(&cfg, &res);
    } else {
        rc = fy_bench_send(&cfg, &res);
    }
    print_side(test, cfg.transport, cfg.size, rc, &res, json);
    if (rc < 0 && !json)
        fprintf(stderr, "ferry-perf: %s failed: %s\n", test, fy_error_detail());
    return rc == 0 && res.st.verified ? 0 : 1;
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
    if (!strcmp(argv[1], "recv"))
        return cmd_side(argc - 1, argv + 1, true);
    if (!strcmp(argv[1], "send"))
        return cmd_side(argc - 1, argv + 1, false);
    fprintf(stderr, "ferry-perf: unknown test '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
