/* Inside the sim driver: the structures its files share.
 *
 *   sim.c     the operations table, the host (open, close, host_info)
 *   vm.c      VM inventory and lifecycle operations, state files, disks
 *   vmconf.c  the VM configuration text: parse and format
 *   guest.c   guest memory (file, fill, mapping), the workload thread, the
 *             dirty log and the device state blob
 *
 * Locking: struct fy_driver's lock guards the VM list and every VM's
 * configuration; each guest has its own lock for its thread's run state.
 */
#ifndef FERRY_DRIVERS_SIM_PRIV_H
#define FERRY_DRIVERS_SIM_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "ferry/driver.h"

enum sim_pattern {
    SIM_PATTERN_RANDOM = 0,
    SIM_PATTERN_SEQUENTIAL = 1,
    SIM_PATTERN_HOT = 2, /* 90 % of writes to the first 10 % of pages */
};

/* A VM's configuration: what its .conf file and vm_export hold. */
struct sim_vmconf {
    char name[FY_NAME_MAX];
    char uuid[40];
    uint64_t mem_bytes;
    unsigned vcpus;
    char cpu_vendor[16];
    bool dynamic_memory;
    bool managed;
    enum fy_power power;
    double rate;          /* pages written per second */
    enum sim_pattern pattern;
    uint64_t shared_seed; /* VMs with equal seeds share "kernel" pages */
    unsigned zero_pct;    /* start pattern: % of zero pages (40) ... */
    unsigned shared_pct;  /* ... % of "kernel" pages (20) ... */
    unsigned pool;        /* ... drawn from this many contents (512; 0: one
                             per page, so none repeats within the VM) */
    unsigned ndevices;
    struct fy_device devices[FY_MAX_DEVICES];
    char nic_network[FY_MAX_DEVICES][FY_NAME_MAX]; /* by device index */
    /* Disks: path "" until define places it; backing paths as written
     * (relative ones are relative to the disk's directory); size unused,
     * virtual_size is the configured size. */
    unsigned ndisks;
    struct fy_disk disks[FY_MAX_DISKS];
};

/* Parses 'text' into 'c' (defaults first). FY_E_CONFIG names the line. */
int sim_vmconf_parse(const char *text, struct sim_vmconf *c);

/* Formats 'c' as text into '*out' (malloc'd). */
int sim_vmconf_format(const struct sim_vmconf *c, char **out);

/* A VM, device or disk name: 1-63 of [A-Za-z0-9._-], not starting with
 * '.', so it is safe in a file name. */
bool sim_name_ok(const char *s);

/* "off", "running", "paused" or "suspended". */
const char *sim_power_name(enum fy_power p);

/* "64M" -> 67108864. Returns false if 's' is not a size. */
bool sim_parse_size(const char *s, uint64_t *out);

/* The workload's registers, saved as device state. */
struct sim_wlstate {
    uint64_t counter; /* writes so far */
    uint64_t rng;     /* xorshift state, never 0 */
    uint64_t next;    /* next page of the sequential pattern */
};

struct sim_guest {
    uint8_t *mem;       /* MAP_SHARED mapping of the memory file */
    uint64_t npages;
    uint64_t *dirty;    /* npages bits, set after each write */
    bool logging;       /* atomic: record writes in 'dirty' */
    double rate;
    enum sim_pattern pattern;
    struct sim_wlstate wl; /* owned by the thread while it runs */

    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t tid;
    bool alive;         /* the thread exists */
    bool park;          /* asked to stop writing */
    bool parked;        /* has stopped writing */
    bool stop;          /* asked to exit */
};

struct sim_vm {
    struct sim_vm *next;
    struct sim_vmconf conf;
    int fd;             /* the memory file, open while the VM exists */
    struct sim_guest guest;
};

struct sim_datastore {
    char name[FY_NAME_MAX];
    char path[FY_PATH_MAX];
    uint64_t capacity;
    bool shared;
};

struct fy_driver {
    char state[FY_PATH_MAX];
    char name[FY_NAME_MAX];
    char cpu_vendor[16];
    uint64_t mem_total;
    unsigned cpus;
    bool dynamic_memory;
    bool maintenance;
    char net[FY_NET__COUNT][FY_NAME_MAX];
    unsigned ndatastores;
    struct sim_datastore datastores[FY_MAX_DATASTORES];
    unsigned seed_vms;

    int lock_fd;          /* flock on DIR/lock: one instance per host */
    pthread_mutex_t lock;
    struct sim_vm *vms;
};

/* ---- guest.c ---- */

/* Creates the memory file at 'path' (mem_bytes) and opens it: filled with
 * the VM's start pattern, or sparse zero if 'zero'. Returns the fd or a
 * negative fy_err. */
int sim_mem_create(const char *path, const struct sim_vmconf *c, bool zero);

/* Maps 'fd' and prepares the (stopped) workload. */
int sim_guest_init(struct sim_guest *g, int fd, const struct sim_vmconf *c);
/* Stops the thread and unmaps. */
void sim_guest_fini(struct sim_guest *g);
/* Starts the thread, or lets a parked one write again. */
int sim_guest_run(struct sim_guest *g, const char *vm);
/* Returns once the thread writes no more (it stays, parked). */
void sim_guest_park(struct sim_guest *g);
/* Ends the thread. */
void sim_guest_kill(struct sim_guest *g);

void sim_guest_dirty_start(struct sim_guest *g);
void sim_guest_dirty_stop(struct sim_guest *g);
void sim_guest_dirty_sync(struct sim_guest *g, uint64_t *bitmap);

int sim_guest_state_save(struct sim_guest *g, const char *vm, void **out,
                         size_t *len);
int sim_guest_state_load(struct sim_guest *g, const char *vm,
                         const void *state, size_t len);

/* ---- vm.c ---- */

struct sim_vm *sim_vm_find(struct fy_driver *d, const char *name);
/* Loads every DIR/vms/NAME.conf and restarts the VMs recorded running. */
int sim_vms_load(struct fy_driver *d);
/* Creates vm1..vmN (running) in a new state directory. */
int sim_vms_seed(struct fy_driver *d, unsigned n);
/* Stops every thread and frees the list (the files stay). */
void sim_vms_free(struct fy_driver *d);
/* The datastore named 'name', or NULL. */
const struct sim_datastore *sim_datastore_find(const struct fy_driver *d,
                                               const char *name);

int sim_vm_list(struct fy_driver *d, struct fy_vm_list *out);
int sim_vm_info(struct fy_driver *d, const char *vm, struct fy_vm_info *out);
int sim_vm_start(struct fy_driver *d, const char *vm);
int sim_vm_stop(struct fy_driver *d, const char *vm, bool force);
int sim_vm_pause(struct fy_driver *d, const char *vm);
int sim_vm_resume(struct fy_driver *d, const char *vm);
int sim_vm_export(struct fy_driver *d, const char *vm, char **out);
int sim_vm_define(struct fy_driver *d, const char *config, const char *name,
                  const char *const *disk_paths, unsigned ndisks);
int sim_vm_undefine(struct fy_driver *d, const char *vm);
int sim_vm_rename(struct fy_driver *d, const char *vm, const char *name);
int sim_vm_disconnect_nics(struct fy_driver *d, const char *vm);
int sim_memory_layout(struct fy_driver *d, const char *vm,
                      struct fy_memory_layout *out);
int sim_incoming_prepare(struct fy_driver *d, const char *config,
                         const char *name);
int sim_dirty_log_start(struct fy_driver *d, const char *vm);
int sim_dirty_log_sync(struct fy_driver *d, const char *vm, unsigned region,
                       uint64_t *bitmap, uint64_t npages);
int sim_dirty_log_stop(struct fy_driver *d, const char *vm);
int sim_device_state_save(struct fy_driver *d, const char *vm, void **out,
                          size_t *len);
int sim_device_state_load(struct fy_driver *d, const char *vm,
                          const void *state, size_t len);
int sim_vm_suspend(struct fy_driver *d, const char *vm, const char *image);
int sim_vm_restore(struct fy_driver *d, const char *vm, const char *image);

#endif /* FERRY_DRIVERS_SIM_PRIV_H */
