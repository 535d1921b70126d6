/* ferryd: the Ferry agent of one host (docs/agent.md).  Reads its
 * configuration, starts the agent (controlplane/agent.c) and serves until
 * SIGTERM or SIGINT. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "controlplane/agent.h"
#include "controlplane/config.h"
#include "ferry/error.h"

static const char usage_text[] =
    "Usage: ferryd --config FILE [--foreground]\n"
    "\n"
    "The Ferry agent of one host: loads the host's hypervisor driver, keeps its\n"
    "migrations and their events in a SQLite store, and serves the control API\n"
    "(ferryctl, and the agents of peer hosts) on the host's management address.\n"
    "Every connection must authenticate with the cluster key; refusals are logged\n"
    "to standard error, one line each.\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE  the host's configuration (docs/agent.md): host, driver,\n"
    "                     driver-config, drivers-dir, key, store, management,\n"
    "                     migration, provisioning, peers\n"
    "  -f, --foreground   stay attached to the terminal; without it ferryd goes to\n"
    "                     the background once it serves (standard error stays open\n"
    "                     for its log)\n"
    "  -h, --help         print this help\n"
    "\n"
    "Prints \"ferryd HOST: serving on ADDR:PORT, driver NAME\" once it serves, and\n"
    "stops cleanly on SIGTERM or SIGINT.  Exit status: 0 after a clean stop, 1 if\n"
    "it cannot start (the message names the file or address and the fix), 2 on a\n"
    "usage error.\n";

/* Without --foreground: forks; the parent waits for the child's word that
 * it serves (or failed) and exits with it.  Returns the write end of that
 * pipe in the child, -1 in the foreground. */
static int background(void)
{
    int fds[2];
    pid_t pid;
    char status = 1;

    if (pipe(fds) < 0) {
        fprintf(stderr, "ferryd: cannot go to the background: pipe: %s\n", strerror(errno));
        exit(1);
    }
    if ((pid = fork()) < 0) {
        fprintf(stderr, "ferryd: cannot go to the background: fork: %s\n", strerror(errno));
        exit(1);
    }
    if (pid > 0) {
        close(fds[1]);
        if (read(fds[0], &status, 1) != 1)
            status = 1;
        exit(status);
    }
    close(fds[0]);
    setsid();
    return fds[1];
}

static void tell_parent(int fd, char status)
{
    if (fd < 0)
        return;
    if (write(fd, &status, 1) != 1) {
        /* The parent is gone: nothing to tell. */
    }
    close(fd);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"foreground", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct fy_agent_config cfg;
    struct fy_agent *agent = NULL;
    const char *config = NULL;
    bool foreground = false;
    sigset_t set;
    int o, sig = 0, parent = -1;

    while ((o = getopt_long(argc, argv, "c:fh", opts, NULL)) != -1) {
        switch (o) {
        case 'c': config = optarg; break;
        case 'f': foreground = true; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default:
            fprintf(stderr, "Run `ferryd --help` for usage.\n");
            return 2;
        }
    }
    if (!config || optind < argc) {
        fprintf(stderr, "ferryd: %s\nRun `ferryd --help` for usage.\n",
                config ? "unexpected argument" : "--config FILE is required");
        return 2;
    }
    if (fy_agent_config_load(config, &cfg) < 0) {
        fprintf(stderr, "ferryd: %s\n", fy_error_detail());
        return 1;
    }
    if (!foreground)
        parent = background();

    /* Signals are taken by sigwait() here, so every thread the agent
     * starts inherits them blocked. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (fy_agent_start(&cfg, &agent) < 0) {
        fprintf(stderr, "ferryd %s: %s\n", cfg.host, fy_error_detail());
        tell_parent(parent, 1);
        return 1;
    }
    printf("ferryd %s: serving on %s, driver %s\n", cfg.host, fy_agent_addr(agent), cfg.driver);
    fflush(stdout);
    if (parent >= 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
            close(null);
        }
        tell_parent(parent, 0);
    }

    while (sigwait(&set, &sig) != 0) {
    }
    fprintf(stderr, "ferryd %s: %s received, stopping\n", cfg.host, strsignal(sig));
    fy_agent_stop(agent);
    fprintf(stderr, "ferryd %s: stopped\n", cfg.host);
    return 0;
}
