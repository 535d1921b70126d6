/* The xdp benchmark environment (bench.h): two network namespaces joined by
 * a veth pair, one per side, each end with an IPv4 address, MTU 3500 and a
 * queue pair per CPU.  The AF_XDP transport attaches its XDP program to
 * each end (native XDP on veth) and binds its sockets in copy mode: veth
 * has no zero-copy.
 *
 * Made with `ip` (iproute2), run without a shell: named namespaces are
 * what `ip netns` manages, and fy_bench_env_enter() finds them under
 * /var/run/netns.  Names carry this process's pid, so runs side by side do
 * not collide; teardown deletes the namespaces, and the veth pair with
 * them. */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ferry/error.h"
#include "perf/bench.h"

extern char **environ;

#define XDP_TARGET_IP "10.79.0.1"
#define XDP_SOURCE_IP "10.79.0.2"
/* A migration network runs jumbo frames; 3500 is about the most native XDP
 * on veth takes (an AF_XDP frame holds at most 3826 anyway), and puts a
 * 4 KiB page in two frames instead of three at 1500. */
#define XDP_MTU "3500"

struct xdp_env {
    char ns[2][32];  /* by enum fy_bench_side */
    char dev[2][16];
    bool made[2];
};

/* Runs 'ip' with the given arguments (NULL-terminated); its stderr shows. */
static int run_ip(const char *const *args)
{
    const char *argv[24];
    pid_t pid;
    int st, i = 0, rc;

    argv[i++] = "ip";
    for (; *args && i < 23; args++)
        argv[i++] = *args;
    argv[i] = NULL;
    rc = posix_spawnp(&pid, "ip", NULL, NULL, (char *const *)argv, environ);
    if (rc != 0) {
        errno = rc;
        return fy_error_sys("xdp environment: cannot run ip (install iproute2)");
    }
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return fy_error_sys("xdp environment: waiting for ip");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char cmd[256] = "";
        for (int k = 1; argv[k]; k++)
            snprintf(cmd + strlen(cmd), sizeof(cmd) - strlen(cmd), " %s", argv[k]);
        return fy_error(FY_E_SYS,
                        "xdp environment: 'ip%s' failed (it needs root: "
                        "CAP_NET_ADMIN and CAP_SYS_ADMIN)",
                        cmd);
    }
    return 0;
}

#define IP(...) run_ip((const char *const[]){__VA_ARGS__, NULL})

int fy_bench_env_xdp_setup(struct fy_bench_env *env)
{
    static const char *const ip[2] = {XDP_TARGET_IP "/24", XDP_SOURCE_IP "/24"};
    struct xdp_env *x = calloc(1, sizeof(*x));
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int pid = (int)getpid(), rc;
    char nq[8];

    if (!x)
        return fy_error(FY_E_NOMEM, "xdp environment");
    env->priv = x;
    for (int s = 0; s < 2; s++) {
        snprintf(x->ns[s], sizeof(x->ns[s]), "ferry-perf-%d-%c", pid, s ? 's' : 't');
        snprintf(x->dev[s], sizeof(x->dev[s]), "fyp%d%c", pid, s ? 's' : 't');
        if ((rc = IP("netns", "add", x->ns[s])) < 0)
            return rc;
        x->made[s] = true;
    }
    /* As many queue pairs as CPUs (at most 8, the core's default), so
     * --streams K with K queues spreads over them; veth's default is 1. */
    snprintf(nq, sizeof(nq), "%ld", ncpu < 1 ? 1 : ncpu > 8 ? 8 : ncpu);
    if ((rc = IP("link", "add", x->dev[0], "numtxqueues", nq, "numrxqueues", nq,
                 "netns", x->ns[0], "type", "veth", "peer", "name", x->dev[1],
                 "numtxqueues", nq, "numrxqueues", nq, "netns", x->ns[1])) < 0)
        return rc;
    for (int s = 0; s < 2; s++) {
        if ((rc = IP("-n", x->ns[s], "addr", "add", ip[s], "dev", x->dev[s])) < 0 ||
            (rc = IP("-n", x->ns[s], "link", "set", x->dev[s], "mtu", XDP_MTU)) < 0 ||
            (rc = IP("-n", x->ns[s], "link", "set", x->dev[s], "up")) < 0 ||
            (rc = IP("-n", x->ns[s], "link", "set", "lo", "up")) < 0)
            return rc;
        snprintf(env->netns[s], sizeof(env->netns[s]), "%s", x->ns[s]);
        snprintf(env->params[s], sizeof(env->params[s]), "dev=%s", x->dev[s]);
    }
    snprintf(env->listen, sizeof(env->listen), "%s:0", XDP_TARGET_IP);
    snprintf(env->note, sizeof(env->note),
             "two network namespaces joined by a veth pair (%s, %s), MTU %s",
             x->dev[0], x->dev[1], XDP_MTU);
    return 0;
}

void fy_bench_env_xdp_teardown(struct fy_bench_env *env)
{
    struct xdp_env *x = env->priv;

    if (!x)
        return;
    for (int s = 0; s < 2; s++)
        if (x->made[s])
            IP("netns", "del", x->ns[s]);
    free(x);
    env->priv = NULL;
}
