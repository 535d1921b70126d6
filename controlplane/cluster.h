/* The cluster file: what the evacuation controller (ferryctl evacuate,
 * evacuate.h) knows about the hosts and the placement policy that the
 * agents do not keep.  docs/evacuation.md shows a whole file.
 *
 *     # comment
 *     [cluster]
 *     key        = /etc/ferry/cluster.key   # default for --key
 *     methods    = Migration, Failover      # default for --methods
 *     link-limit = 2                        # moves at once between two hosts
 *     gang-dedup = on                       # off: each VM dedups on its own
 *
 *     [host h1]
 *     management     = 10.0.0.1:7300        # required: its ferryd
 *     migration      = 10.0.1.1             # checked against the agent's
 *     provisioning   = 10.0.2.1
 *     memory         = 64G                  # capacity; default: the agent's
 *     cpus           = 32
 *     datastores     = shared1, h1-local    # default: the agent's
 *     state          = healthy              # or maintenance, down
 *     max-concurrent = 4                    # moves at once in or out; 0: no limit
 *
 *     [vm web1]
 *     priority    = 10                      # higher moves first
 *     depends-on  = db1, cache1
 *     eq          = frontend                # keep together with the group
 *     ne          = web                     # keep apart from the group
 *     hold        = no                      # yes: never moved
 *     maintenance = no                      # yes: in maintenance mode
 *     managed     = yes                     # no: Ferry leaves it alone
 *
 * Where a VM is, its power state, memory, vCPUs, disks and whether a
 * migration holds it are asked of the agents, never written here: the
 * agents are the truth about the inventory, this file about the policy.
 * A [vm] section for a VM no agent has is ignored (with a warning).
 *
 * Sizes take K, M, G or T (binary units); booleans yes/no, on/off,
 * true/false, 1/0; lists are separated by commas.  Every error names the
 * file, the line and the fix.
 *
 * Return convention: 0 or a negative fy_err with the detail recorded. */
#ifndef FERRY_CP_CLUSTER_H
#define FERRY_CP_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "controlplane/planner.h"
#include "ferry/driver.h"

#define FY_CLUSTER_LIST_MAX 16 /* datastores, dependencies, groups */
#define FY_CLUSTER_DEFAULT_MAX_CONCURRENT 4

struct fy_cluster_host {
    char name[FY_NAME_MAX];
    char management[FY_NAME_MAX];   /* "HOST:PORT" */
    char migration[FY_NAME_MAX];    /* "" : not given */
    char provisioning[FY_NAME_MAX];
    uint64_t memory;                /* bytes; 0: the agent's */
    unsigned cpus;                  /* 0: the agent's */
    bool datastores_set;            /* else: the agent's */
    unsigned n_datastores;
    char datastores[FY_CLUSTER_LIST_MAX][FY_NAME_MAX];
    enum fy_plan_host_state state;
    unsigned max_concurrent;        /* 0: no limit */
    unsigned line;                  /* of its section, for messages */
};

struct fy_cluster_vm {
    char name[FY_NAME_MAX];
    int priority;
    bool hold, maintenance, unmanaged;
    unsigned n_depends_on, n_eq, n_ne;
    char depends_on[FY_CLUSTER_LIST_MAX][FY_NAME_MAX];
    char eq[FY_CLUSTER_LIST_MAX][FY_NAME_MAX];
    char ne[FY_CLUSTER_LIST_MAX][FY_NAME_MAX];
};

struct fy_cluster {
    char key[FY_PATH_MAX];          /* "" : not given */
    unsigned methods;               /* FY_PLAN_METHOD() bits; 0: default */
    unsigned link_limit;            /* 0: no limit */
    bool gang_dedup;                /* default on */
    size_t n_hosts;
    struct fy_cluster_host *hosts;  /* malloc'd */
    size_t n_vms;
    struct fy_cluster_vm *vms;      /* malloc'd */
};

/* Parses the text of a cluster file ('name' names it in messages) into
 * '*c', which the caller releases with fy_cluster_free() (also after a
 * failure).  FY_E_CONFIG for a bad line, a host or VM listed twice, a host
 * without management address, or no host at all. */
int fy_cluster_parse(const char *text, const char *name, struct fy_cluster *c);

/* Reads and parses the file at 'path' (FY_E_SYS if it cannot be read). */
int fy_cluster_load(const char *path, struct fy_cluster *c);

/* Frees what parsing allocated and zeroes '*c'.  NULL is a no-op. */
void fy_cluster_free(struct fy_cluster *c);

/* The host or VM section named 'name', or NULL. */
const struct fy_cluster_host *fy_cluster_host(const struct fy_cluster *c, const char *name);
const struct fy_cluster_vm *fy_cluster_vm(const struct fy_cluster *c, const char *name);

/* A method list as users write it ("Migration, Failover", "live,move",
 * "Quick Migration", "storage-migration"; case and the separators ' ', '-'
 * and '_' inside a name do not matter) into FY_PLAN_METHOD() bits.
 * FY_E_INVAL naming the word that is not a method.  Empty: 0. */
int fy_cluster_methods_parse(const char *list, unsigned *mask);

/* "healthy", "maintenance", "down". */
const char *fy_cluster_state_name(enum fy_plan_host_state s);

#endif /* FERRY_CP_CLUSTER_H */
