/* The two-process pipeline run and its same-run baselines. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/sockopt.h"
#include "ferry/error.h"
#include "ferry/transport.h"
#include "perf/bench.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_seconds(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

unsigned fy_bench_streams(const struct fy_pipeline_cfg *cfg)
{
    long n;

    if (cfg->streams)
        return cfg->streams;
    /* Both ends run on this machine: each gets half of its CPUs, as each
     * host would have all of its own. */
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 1 ? (unsigned)n / 2 : 1;
}

int fy_bench_parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s)
        return fy_error(FY_E_INVAL, "bad size '%s': expected e.g. 1G, 512M, 64K", s);
    switch (*end) {
    case 'G': case 'g': v <<= 30; end++; break;
    case 'M': case 'm': v <<= 20; end++; break;
    case 'K': case 'k': v <<= 10; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'B')
        end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
    if (*end)
        return fy_error(FY_E_INVAL, "bad size '%s': expected e.g. 1G, 512M, 64K", s);
    *out = v;
    return 0;
}

int fy_bench_memcpy(struct fy_region *src, double *seconds)
{
    struct fy_region *dst;
    int rc = fy_region_create_memfd("ferry-perf-memcpy", fy_region_size(src), &dst);
    if (rc < 0)
        return rc;
    /* Like the pipeline's destination: allocated before the clock starts. */
    if ((rc = fy_region_prefault(dst)) < 0) {
        fy_region_close(dst);
        return rc;
    }
    double t0 = now();
    memcpy(fy_region_base(dst), fy_region_base(src), fy_region_size(src));
    *seconds = now() - t0;
    fy_region_close(dst);
    return 0;
}

/* ---- raw TCP baseline --------------------------------------------------- */

struct raw_sender {
    int fd;
    const uint8_t *data;
    uint64_t len;
    int rc;
};

static void *raw_send_main(void *arg)
{
    struct raw_sender *s = arg;
    char c;

    while (s->len) {
        ssize_t k = write(s->fd, s->data, s->len > (1u << 20) ? (1u << 20) : s->len);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            s->rc = -errno;
            return NULL;
        }
        s->data += k;
        s->len -= (uint64_t)k;
    }
    /* Wait until the receiver has drained and closed. */
    shutdown(s->fd, SHUT_WR);
    while (read(s->fd, &c, 1) > 0)
        ;
    return NULL;
}

static void *raw_recv_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    uint8_t *buf = malloc(1u << 20);

    while (buf && read(fd, buf, 1u << 20) > 0)
        ;
    free(buf);
    close(fd);
    return NULL;
}

int fy_bench_raw_tcp(struct fy_region *src, unsigned streams, double *seconds,
                     double *src_cpu, double *tgt_cpu)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    int pfd[2], lfd, status;
    pid_t pid;

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        return fy_error_sys("socket");
    fy_tune_socket(lfd, 0);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 64) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0) {
        close(lfd);
        return fy_error_sys("raw tcp baseline: listen on loopback");
    }
    if (pipe(pfd) < 0) {
        close(lfd);
        return fy_error_sys("pipe");
    }
    pid = fork();
    if (pid < 0) {
        close(lfd);
        return fy_error_sys("fork");
    }
    if (pid == 0) {
        pthread_t tid[256];
        double cpu;
        close(pfd[0]);
        for (unsigned i = 0; i < streams; i++) {
            int fd = accept(lfd, NULL, NULL);
            if (fd < 0)
                _exit(1);
            pthread_create(&tid[i], NULL, raw_recv_main, (void *)(intptr_t)fd);
        }
        for (unsigned i = 0; i < streams; i++)
            pthread_join(tid[i], NULL);
        cpu = cpu_seconds(RUSAGE_SELF);
        if (write(pfd[1], &cpu, sizeof(cpu)) != sizeof(cpu))
            _exit(1);
        _exit(0);
    }
    close(pfd[1]);
    close(lfd);

    struct raw_sender snd[256];
    pthread_t tid[256];
    uint64_t size = fy_region_size(src);
    uint64_t share = (size / streams) & ~(uint64_t)(FY_PAGE_SIZE - 1);
    const uint8_t *base = fy_region_base(src);
    int rc = 0;

    for (unsigned i = 0; i < streams; i++) {
        snd[i] = (struct raw_sender){.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
        fy_tune_socket(snd[i].fd, 0);
        if (snd[i].fd < 0 || connect(snd[i].fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            rc = fy_error_sys("raw tcp baseline: connect");
            break;
        }
        snd[i].data = base + share * i;
        snd[i].len = i == streams - 1 ? size - share * i : share;
    }
    if (rc == 0) {
        double c0 = cpu_seconds(RUSAGE_SELF), t0 = now();
        for (unsigned i = 0; i < streams; i++)
            pthread_create(&tid[i], NULL, raw_send_main, &snd[i]);
        for (unsigned i = 0; i < streams; i++)
            pthread_join(tid[i], NULL);
        *seconds = now() - t0;
        *src_cpu = cpu_seconds(RUSAGE_SELF) - c0;
        for (unsigned i = 0; i < streams; i++)
            if (snd[i].rc < 0)
                rc = fy_error(FY_E_IO, "raw tcp baseline: send failed: %s",
                              strerror(-snd[i].rc));
    }
    for (unsigned i = 0; i < streams; i++)
        if (snd[i].fd >= 0)
            close(snd[i].fd);
    if (read(pfd[0], tgt_cpu, sizeof(*tgt_cpu)) != sizeof(*tgt_cpu) && rc == 0)
        rc = fy_error(FY_E_IO, "raw tcp baseline: receiver died");
    close(pfd[0]);
    waitpid(pid, &status, 0);
    return rc;
}

/* ---- the pipeline ------------------------------------------------------- */

/* What a side's process tells the parent, over a pipe: first (target only)
 * where it listens, then how the migration went. */
struct side_msg {
    int kind;               /* MSG_LISTENING or MSG_DONE */
    int rc;
    char addr[64];
    struct fy_bench_side_result res;
    char detail[512];
};

enum { MSG_LISTENING = 1, MSG_DONE = 2 };

struct side_ctx {
    const struct fy_pipeline_cfg *cfg;
    int fd;
};

static void side_send(int fd, const struct side_msg *m)
{
    if (write(fd, m, sizeof(*m)) != sizeof(*m))
        _exit(3);
}

static void target_listening(void *ctx, const char *addr)
{
    struct side_ctx *c = ctx;
    struct side_msg m = {.kind = MSG_LISTENING};

    snprintf(m.addr, sizeof(m.addr), "%s", addr);
    side_send(c->fd, &m);
}

/* Runs one side in this (forked) process and exits with its result. */
static void __attribute__((noreturn))
side_main(const struct fy_pipeline_cfg *cfg, const struct fy_bench_env *env,
          enum fy_bench_side side, struct fy_region *region, const char *addr, int fd)
{
    struct side_ctx c = {.cfg = cfg, .fd = fd};
    struct fy_bench_side_cfg sc = {
        .transport = cfg->transport, .addr = addr, .params = env->params[side],
        .size = cfg->size, .streams = cfg->streams, .dirty_rate = cfg->dirty_rate,
        .rehash = cfg->rehash, .downtime_ms = cfg->downtime_ms,
        .max_rounds = cfg->max_rounds,
    };
    struct side_msg m = {.kind = MSG_DONE};

    if ((m.rc = fy_bench_env_enter(env, side)) == 0) {
        if (side == FY_BENCH_TARGET) {
            sc.on_listen = target_listening;
            sc.ctx = &c;
            m.rc = fy_bench_recv_region(&sc, region, &m.res);
        } else {
            sc.on_round = cfg->on_round;
            sc.ctx = cfg->ctx;
            m.rc = fy_bench_send_region(&sc, region, &m.res);
        }
    }
    if (m.rc < 0)
        snprintf(m.detail, sizeof(m.detail), "%s", fy_error_detail());
    fflush(stdout);
    side_send(fd, &m);
    _exit(m.rc < 0 ? 1 : 0);
}

static pid_t side_fork(const struct fy_pipeline_cfg *cfg, const struct fy_bench_env *env,
                       enum fy_bench_side side, struct fy_region *region, const char *addr,
                       int *fd)
{
    int pfd[2];
    pid_t pid;

    if (pipe(pfd) < 0)
        return fy_error_sys("pipe");
    /* What this process printed must not be printed again by the child. */
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return fy_error_sys("fork");
    }
    if (pid == 0) {
        close(pfd[0]);
        side_main(cfg, env, side, region, addr, pfd[1]);
    }
    close(pfd[1]);
    *fd = pfd[0];
    return pid;
}

/* Reads the next message of a side; a side that died is an error, and a
 * side silent for 'timeout_ms' (-1: no limit) too. */
static int side_read(int fd, const char *who, int timeout_ms, struct side_msg *m)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    size_t got = 0;

    while (got < sizeof(*m)) {
        int r = poll(&p, 1, timeout_ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return fy_error(FY_E_TIMEOUT, "the %s process said nothing for %d ms", who,
                            timeout_ms);
        ssize_t k = read(fd, (char *)m + got, sizeof(*m) - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return fy_error(FY_E_IO, "the %s process died", who);
        got += (size_t)k;
    }
    return 0;
}

static void side_reap(pid_t *pid, int *fd, bool kill_it)
{
    int status;

    if (*pid > 0) {
        if (kill_it)
            kill(*pid, SIGKILL);
        waitpid(*pid, &status, 0);
        *pid = -1;
    }
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* One repetition over an already filled source region. */
static int run_once(const struct fy_pipeline_cfg *cfg, const struct fy_bench_env *env,
                    struct fy_region *src, struct fy_pipeline_result *res)
{
    struct fy_region *dst = NULL;
    struct side_msg tm = {0}, sm = {0};
    pid_t tpid = -1, spid = -1;
    int tfd = -1, sfd = -1, rc;

    memset(res, 0, sizeof(*res));
    res->streams = fy_bench_streams(cfg);
    snprintf(res->env_note, sizeof(res->env_note), "%s", env->note);
    if (cfg->baselines) {
        if ((rc = fy_bench_memcpy(src, &res->memcpy_seconds)) < 0)
            goto out;
        if ((rc = fy_bench_raw_tcp(src, res->streams, &res->raw_tcp_seconds,
                                   &res->raw_src_cpu, &res->raw_tgt_cpu)) < 0)
            goto out;
    }

    /* Shared with the target process, which writes into it. */
    if ((rc = fy_region_create_memfd("ferry-perf-dst", cfg->size, &dst)) < 0)
        goto out;
    if ((rc = tpid = side_fork(cfg, env, FY_BENCH_TARGET, dst, env->listen, &tfd)) < 0)
        goto out;
    /* Setting up a port (a DPDK EAL, an XDP program) takes a while, not
     * minutes. */
    if ((rc = side_read(tfd, "target", 120000, &tm)) < 0)
        goto out;
    if (tm.kind != MSG_LISTENING) {
        rc = fy_error(tm.rc < 0 ? -tm.rc : FY_E_IO, "target: %s", tm.detail);
        goto out;
    }
    if ((rc = spid = side_fork(cfg, env, FY_BENCH_SOURCE, src, tm.addr, &sfd)) < 0)
        goto out;
    rc = side_read(sfd, "source", -1, &sm);
    if (rc == 0 && sm.rc < 0)
        rc = fy_error(-sm.rc, "source: %s", sm.detail);
    /* A target whose source failed may wait for its timeout: it gets a
     * while to notice, then it is stopped. */
    char why[512] = "";
    if (rc < 0)
        snprintf(why, sizeof(why), "%s", fy_error_detail());
    if (side_read(tfd, "target", rc < 0 ? 5000 : 120000, &tm) < 0) {
        tm.rc = -FY_E_IO;
        if (rc == 0)
            rc = -FY_E_IO; /* side_read said why */
        else
            fy_error(-rc, "%s", why); /* the source's failure is the news */
    } else if (rc == 0 && tm.rc < 0) {
        rc = fy_error(-tm.rc, "target: %s", tm.detail);
    }
    res->src = sm.res.st;
    res->src_cpu = sm.res.cpu;
    res->writes = sm.res.writes;
    res->tgt = tm.res.st;
    res->tgt_cpu = tm.res.cpu;
    res->target_rc = tm.rc;
    snprintf(res->mode, sizeof(res->mode), "%s",
             tm.res.mode[0] ? tm.res.mode : sm.res.mode);
    res->src_side = sm.res;
    res->tgt_side = tm.res;
    if (rc == 0 && cfg->check_bytes)
        res->identical = memcmp(fy_region_base(src), fy_region_base(dst), cfg->size) == 0;
out:
    side_reap(&spid, &sfd, rc < 0);
    side_reap(&tpid, &tfd, rc < 0);
    fy_region_close(dst);
    return rc;
}

int fy_bench_pipeline(const struct fy_pipeline_cfg *cfg,
                      struct fy_pipeline_result *res)
{
    struct fy_region *src = NULL;
    struct fy_bench_env env;
    struct fy_bench_fill fill = {.dup_ratio = cfg->dup_ratio,
                                 .zero_ratio = cfg->zero_ratio, .seed = 1};
    const char *name = cfg->transport ? cfg->transport : "tcp";
    unsigned repeat = cfg->repeat ? cfg->repeat : 1;
    int rc;

    memset(res, 0, sizeof(*res));
    if (!fy_transport_find(name))
        return -FY_E_NOTFOUND;
    if ((rc = fy_bench_env_setup(name, cfg->params, &env)) < 0)
        return rc;
    struct fy_pipeline_cfg c = *cfg;
    c.transport = name;
    if ((rc = fy_region_create_memfd("ferry-perf-src", cfg->size, &src)) < 0)
        goto out;
    if ((rc = fy_bench_fill_region(src, &fill)) < 0)
        goto out;
    /* The machine is shared and noisy: keep the best of each measurement,
     * as perftest reports peak bandwidth; every repetition must verify. */
    for (unsigned i = 0; i < repeat; i++) {
        struct fy_pipeline_result r;
        if (c.on_run)
            c.on_run(c.ctx, i + 1);
        if ((rc = run_once(&c, &env, src, &r)) < 0)
            goto out;
        if (i == 0) {
            *res = r;
            continue;
        }
        res->identical = res->identical && r.identical;
        if (r.src.seconds < res->src.seconds) {
            bool same = res->identical;
            double mc = res->memcpy_seconds, rt = res->raw_tcp_seconds;
            double rs = res->raw_src_cpu, rg = res->raw_tgt_cpu;
            *res = r;
            res->identical = same;
            res->memcpy_seconds = mc, res->raw_tcp_seconds = rt;
            res->raw_src_cpu = rs, res->raw_tgt_cpu = rg;
        }
        if (r.memcpy_seconds > 0 && r.memcpy_seconds < res->memcpy_seconds)
            res->memcpy_seconds = r.memcpy_seconds;
        if (r.raw_tcp_seconds > 0 && r.raw_tcp_seconds < res->raw_tcp_seconds) {
            res->raw_tcp_seconds = r.raw_tcp_seconds;
            res->raw_src_cpu = r.raw_src_cpu;
            res->raw_tgt_cpu = r.raw_tgt_cpu;
        }
    }
out:
    fy_region_close(src);
    fy_bench_env_teardown(&env);
    return rc;
}
