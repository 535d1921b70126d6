/* Where each transport's benchmark runs (bench.h): tcp on loopback, dpdk
 * over a net_memif link in a private directory, xdp in two network
 * namespaces (env_xdp.c). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry/error.h"
#include "perf/bench.h"

/* The memif link's two ends get addresses of their own: the packet core
 * sends IPv4/UDP frames and a memif port has no address. */
#define MEMIF_TARGET_IP "10.77.0.1"
#define MEMIF_SOURCE_IP "10.77.0.2"

static bool has_key(const char *params, const char *key)
{
    size_t kl = strlen(key);

    for (const char *p = params; p && *p;) {
        while (*p == ';' || *p == ' ')
            p++;
        if (!strncmp(p, key, kl) && p[kl] == '=')
            return true;
        p = strchr(p, ';');
    }
    return false;
}

/* Appends ";extra" to each side's params. */
static int add_extra(struct fy_bench_env *env, const char *extra)
{
    if (!extra || !*extra)
        return 0;
    for (int side = 0; side < 2; side++) {
        char *p = env->params[side];
        size_t used = strlen(p);
        int n = snprintf(p + used, sizeof(env->params[side]) - used, "%s%s",
                         used ? ";" : "", extra);
        if (n < 0 || (size_t)n >= sizeof(env->params[side]) - used)
            return fy_error(FY_E_INVAL, "transport params longer than %zu characters",
                            sizeof(env->params[side]) - 1);
    }
    return 0;
}

static int dpdk_setup(struct fy_bench_env *env, const char *extra)
{
    static const char *const ip[2] = {MEMIF_TARGET_IP, MEMIF_SOURCE_IP};
    bool own_dev = has_key(extra, "dev") || has_key(extra, "vdev") || has_key(extra, "pci");

    snprintf(env->dir, sizeof(env->dir), "/tmp/ferry-perf-XXXXXX");
    if (!mkdtemp(env->dir)) {
        env->dir[0] = '\0';
        return fy_error_sys("cannot make a directory for the memif socket in /tmp");
    }
    for (int side = 0; side < 2; side++) {
        char *p = env->params[side];
        size_t cap = sizeof(env->params[side]);
        /* Each process has its own EAL: its own file prefix (the default,
         * ferry-<pid>) and its end of the link. */
        if (!own_dev)
            snprintf(p, cap, "dev=net_memif0,socket=%s/memif.sock", env->dir);
        snprintf(p + strlen(p), cap - strlen(p), "%sip=%s", p[0] ? ";" : "", ip[side]);
    }
    snprintf(env->listen, sizeof(env->listen), "%s:0", MEMIF_TARGET_IP);
    snprintf(env->note, sizeof(env->note), "%s",
             own_dev ? "the DPDK port given in the params"
                     : "net_memif between two processes");
    return 0;
}

int fy_bench_env_setup(const char *transport, const char *extra,
                       struct fy_bench_env *env)
{
    int rc;

    memset(env, 0, sizeof(*env));
    if (!transport || strlen(transport) >= sizeof(env->transport))
        return fy_error(FY_E_INVAL, "bench environment: bad transport name");
    snprintf(env->transport, sizeof(env->transport), "%s", transport);
    if (!strcmp(transport, "dpdk")) {
        rc = dpdk_setup(env, extra);
    } else if (!strcmp(transport, "xdp")) {
        rc = fy_bench_env_xdp_setup(env);
    } else {
        snprintf(env->listen, sizeof(env->listen), "127.0.0.1:0");
        snprintf(env->note, sizeof(env->note), "loopback");
        rc = 0;
    }
    if (rc == 0)
        rc = add_extra(env, extra);
    if (rc < 0)
        fy_bench_env_teardown(env);
    return rc;
}

int fy_bench_env_enter(const struct fy_bench_env *env, enum fy_bench_side side)
{
    const char *ns = env->netns[side];
    char path[256];
    int fd;

    if (!ns[0])
        return 0;
    snprintf(path, sizeof(path), "%s%s", ns[0] == '/' ? "" : "/var/run/netns/", ns);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return fy_error_sys("cannot open network namespace %s", path);
    /* Only this thread moves; every thread and socket made after it is in
     * the namespace, which is why this runs first in a side's process. */
    if (setns(fd, CLONE_NEWNET) < 0) {
        int rc = fy_error_sys("cannot enter network namespace %s", path);
        close(fd);
        return rc;
    }
    close(fd);
    return 0;
}

void fy_bench_env_teardown(struct fy_bench_env *env)
{
    if (!strcmp(env->transport, "xdp"))
        fy_bench_env_xdp_teardown(env);
    if (env->dir[0]) {
        /* Flat: the memif socket, if its server did not remove it. */
        DIR *d = opendir(env->dir);
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                unlinkat(dirfd(d), e->d_name, 0);
        if (d)
            closedir(d);
        if (rmdir(env->dir) < 0)
            fprintf(stderr, "ferry-perf: could not remove %s: %s\n", env->dir,
                    strerror(errno));
        env->dir[0] = '\0';
    }
}
