/* One side of a benchmark migration (bench.h): the receiver that listens
 * and places pages, and the sender with its synthetic region and dirtying
 * writer.  ferry-perf recv/send run one each; the pipeline runs both, each
 * in its own forked process. */
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ferry/error.h"
#include "ferry/transport.h"
#include "dataplane/transport/pkt.h"
#include "perf/bench.h"

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

/* What a packet transport says about the session: its counters (loss
 * repaired, duplicates dropped); tcp has nothing to say. */
static void session_report(const struct fy_session *s, struct fy_bench_side_result *res)
{
    struct fy_pkt_stats st;

    if (!s || !strcmp(s->ops->name, "tcp"))
        return;
    fy_pkt_session_stats(s, &st);
    res->pkt.valid = true;
    res->pkt.tx_frames = st.tx_frames;
    res->pkt.rx_frames = st.rx_frames;
    res->pkt.retransmits = st.retransmits;
    res->pkt.timeouts = st.timeouts;
    res->pkt.dup_frames = st.dup_frames;
    res->pkt.dropped = st.drop_malformed + st.drop_unknown + st.drop_range;
    snprintf(res->mode, sizeof(res->mode), "%s", fy_pkt_session_mode(s));
}

int fy_bench_recv_region(const struct fy_bench_side_cfg *cfg, struct fy_region *dst,
                         struct fy_bench_side_result *res)
{
    const struct fy_transport_ops *t;
    struct fy_transport_opts o = {.timeout_ms = cfg->timeout_ms, .params = cfg->params};
    struct fy_listener *l = NULL;
    struct fy_session *s = NULL;
    struct fy_target_params tp = {.fresh = true, .on_round = cfg->on_round,
                                  .ctx = cfg->ctx};
    int rc;

    memset(res, 0, sizeof(*res));
    if (!(t = fy_transport_find(cfg->transport)))
        return -FY_E_NOTFOUND;
    /* The destination VM's memory exists before its pages arrive (QEMU with
     * -mem-prealloc, or a placeholder VM): allocated before the clock. */
    if ((rc = fy_region_prefault(dst)) < 0)
        goto out;
    if ((rc = t->listen(cfg->addr, &o, &l)) < 0)
        goto out;
    if (cfg->on_listen)
        cfg->on_listen(cfg->ctx, l->addr);

    struct fy_accept_params ap = {.region_size = cfg->size,
                                  .placement = fy_region_base(dst),
                                  .receiver_checks_pages = true};
    double c0 = cpu_seconds();
    if ((rc = t->accept(l, &ap, &s)) < 0)
        goto out;
    res->streams = s->nstreams;
    rc = fy_migrate_target(dst, s, &tp, &res->st);
    res->cpu = cpu_seconds() - c0;
    session_report(s, res);
out:
    fy_session_close(s);
    if (l)
        l->ops->listener_close(l);
    return rc;
}

int fy_bench_recv(const struct fy_bench_side_cfg *cfg, struct fy_bench_side_result *res)
{
    struct fy_region *dst = NULL;
    int rc;

    memset(res, 0, sizeof(*res));
    if ((rc = fy_region_create_memfd("ferry-perf-dst", cfg->size, &dst)) < 0)
        return rc;
    rc = fy_bench_recv_region(cfg, dst, res);
    fy_region_close(dst);
    return rc;
}

/* The engine passes one context to all its callbacks: route them. */
struct relay {
    struct fy_bench_writer *w;
    const struct fy_bench_side_cfg *cfg;
};

static int relay_dirty_sync(void *ctx, uint64_t *bitmap, uint64_t npages)
{
    return fy_bench_writer_dirty_sync(((struct relay *)ctx)->w, bitmap, npages);
}

static int relay_pause(void *ctx)
{
    return fy_bench_writer_pause(((struct relay *)ctx)->w);
}

static void relay_round(void *ctx, const struct fy_round_stats *st)
{
    struct relay *rl = ctx;
    rl->cfg->on_round(rl->cfg->ctx, st);
}

int fy_bench_send_region(const struct fy_bench_side_cfg *cfg, struct fy_region *src,
                         struct fy_bench_side_result *res)
{
    const struct fy_transport_ops *t;
    struct fy_pipeline_cfg pc = {.streams = cfg->streams};
    struct fy_transport_opts o = {.timeout_ms = cfg->timeout_ms, .params = cfg->params};
    struct fy_session_info info = {.region_size = fy_region_size(src),
                                   .page_size = FY_PAGE_SIZE, .caps = FY_CAPS_V1};
    struct fy_bench_writer *w = NULL;
    struct fy_session *s = NULL;
    int rc;

    memset(res, 0, sizeof(*res));
    if (!(t = fy_transport_find(cfg->transport)))
        return -FY_E_NOTFOUND;
    o.streams = res->streams = fy_bench_streams(&pc);
    if ((rc = t->connect(cfg->addr, &o, &info, &s)) < 0)
        return rc;
    if (cfg->dirty_rate > 0 &&
        (rc = fy_bench_writer_start(src, cfg->dirty_rate, 7, &w)) < 0)
        goto out;

    struct relay rl = {.w = w, .cfg = cfg};
    struct fy_source_params sp = {
        .downtime_ms = cfg->downtime_ms,
        .max_rounds = cfg->max_rounds,
        .dirty_sync = (w && !cfg->rehash) ? relay_dirty_sync : NULL,
        .pause = w ? relay_pause : NULL,
        .on_round = cfg->on_round ? relay_round : NULL,
        .ctx = &rl,
    };
    double c0 = cpu_seconds();
    rc = fy_migrate_source(src, s, &sp, &res->st);
    res->cpu = cpu_seconds() - c0;
    res->writes = fy_bench_writer_writes(w);
    session_report(s, res);
out:
    fy_bench_writer_stop(w);
    fy_session_close(s);
    return rc;
}

int fy_bench_send(const struct fy_bench_side_cfg *cfg, struct fy_bench_side_result *res)
{
    struct fy_region *src = NULL;
    struct fy_bench_fill fill = {.dup_ratio = cfg->dup_ratio,
                                 .zero_ratio = cfg->zero_ratio, .seed = 1};
    int rc;

    memset(res, 0, sizeof(*res));
    if ((rc = fy_region_create_memfd("ferry-perf-src", cfg->size, &src)) < 0)
        return rc;
    if ((rc = fy_bench_fill_region(src, &fill)) == 0)
        rc = fy_bench_send_region(cfg, src, res);
    fy_region_close(src);
    return rc;
}
