/* The host agent's configuration file (docs/agent.md):
 *
 *     # comment
 *     host          = host1
 *     driver        = sim
 *     driver-config = state=/var/lib/ferry/host1
 *     drivers-dir   = /usr/lib/x86_64-linux-gnu/ferry/drivers
 *     key           = /etc/ferry/cluster.key
 *     store         = /var/lib/ferry/host1/ferry.db
 *     management    = 10.0.0.1:7300
 *     migration     = 10.0.1.1
 *     provisioning  = 10.0.2.1
 *     peers         = host2=10.0.0.2:7300, host3=10.0.0.3:7300
 *     transport     = dpdk
 *     transport-params = dev=net_memif0,socket=/run/ferry/memif.sock;ip=10.0.1.1
 *
 * One "key = value" per line; blank lines and lines starting with '#' are
 * ignored.  host, driver, key, store and management are required; every
 * error names the file, the line and the fix.  transport (default tcp)
 * names the migration data transport, one of this build's, and
 * transport-params its settings (docs/transports.md). */
#ifndef FERRY_CP_CONFIG_H
#define FERRY_CP_CONFIG_H

#include "ferry/driver.h"

#define FY_MAX_PEERS 32

struct fy_peer {
    char name[FY_NAME_MAX];
    char addr[FY_NAME_MAX]; /* "HOST:PORT" of its management address */
};

struct fy_agent_config {
    char host[FY_NAME_MAX];
    char driver[FY_NAME_MAX];
    char driver_config[FY_PATH_MAX];
    char drivers_dir[FY_PATH_MAX];  /* "" : the default */
    char key[FY_PATH_MAX];
    char store[FY_PATH_MAX];
    char management[FY_NAME_MAX];   /* "HOST:PORT" */
    char migration[FY_NAME_MAX];    /* address, "" if none */
    char provisioning[FY_NAME_MAX]; /* address, "" if none */
    char transport[16];             /* "" : tcp */
    char transport_params[FY_PATH_MAX]; /* fy_transport_opts.params */
    unsigned npeers;
    struct fy_peer peers[FY_MAX_PEERS];
};

/* Reads 'path' into *cfg.  Returns 0, or FY_E_CONFIG (FY_E_SYS if the file
 * cannot be read) with a message naming the file and line. */
int fy_agent_config_load(const char *path, struct fy_agent_config *cfg);

/* Parses configuration text (for tests and tools); 'name' names it in
 * messages. */
int fy_agent_config_parse(const char *text, const char *name,
                          struct fy_agent_config *cfg);

/* The peer named 'name', or NULL. */
const struct fy_peer *fy_agent_config_peer(const struct fy_agent_config *cfg,
                                           const char *name);

#endif /* FERRY_CP_CONFIG_H */
