/* The driver contract: how Ferry talks to a hypervisor.
 *
 * A driver is a shared object, ferry-<name>.so, in a drivers directory. It
 * exports one function, made by FY_DRIVER_REGISTER(ops), that returns its
 * operations table. Ferry loads it once with dlopen, checks the table's ABI
 * version and required operations, and refuses it with a message naming the
 * file and the reason otherwise (controlplane/driver.c). drivers/skeleton/
 * is the starting point to copy; docs/driver-guide.md walks through it;
 * tests/conformance/ checks any driver.
 *
 * Return convention: every operation returns 0 on success or a negative
 * fy_err value (include/ferry/error.h), recording the detail with
 * fy_error() at the failure site: name the VM, device or resource and, when
 * there is one, the fix. Operations may block (they talk to a hypervisor)
 * but must give up within their instance's timeout.
 *
 * Threads: an instance is used by one controlling thread at a time, except
 * dirty_log_sync, which the migration engine calls from its own thread while
 * the controlling thread waits.
 *
 * Names: a VM is named by the string the hypervisor knows it by. Strings
 * passed in are borrowed for the call; strings and arrays returned are in
 * caller-provided structures (fixed sizes below), so nothing crosses the
 * boundary that one side must free with the other's allocator, except
 * where an operation says so.
 */
#ifndef FERRY_DRIVER_H
#define FERRY_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ferry/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this contract. Bump when any structure or operation changes;
 * a driver built for another version is refused. */
#define FY_DRIVER_ABI 3

#define FY_NAME_MAX 64
#define FY_PATH_MAX 256
#define FY_MAX_DATASTORES 16
#define FY_MAX_DEVICES 32
#define FY_MAX_DISKS 16
#define FY_MAX_REGIONS 8

/* ---- what a driver can do ------------------------------------------------ */

enum fy_driver_cap {
    FY_DRV_LIVE = 1u << 0,      /* memory regions + pause/resume while running */
    FY_DRV_COLD = 1u << 1,      /* define/undefine a stopped VM elsewhere */
    FY_DRV_QUICK = 1u << 2,     /* suspend to a memory image and restore */
    FY_DRV_STORAGE = 1u << 3,   /* move a running VM's active disks while it
                                   runs: the disk_* operations (ABI 3) */
    FY_DRV_DIRTY_LOG = 1u << 4, /* dirty_log_* report written pages */
    FY_DRV_SUSPEND = 1u << 5,   /* pause without losing state */
    FY_DRV_FAILOVER = 1u << 6,  /* start a VM whose host is dead from shared
                                   storage (vm_define + vm_start) */
    FY_DRV_DEVICE_STATE = 1u << 7, /* device_state_save/load */
    /* Quick migration moves memory region to region, not through a suspend
     * image: the source VM paused, the target a placeholder from
     * incoming_prepare whose memory_layout is filled in one round, then
     * device_state_save/load and vm_resume at the target (QEMU: shared RAM
     * backends and x-ignore-shared).  Preferred over vm_suspend/vm_restore
     * when both hosts have it.  (ABI 2) */
    FY_DRV_RAM_DIRECT = 1u << 8,
    /* Stream mode: the hypervisor runs the live migration itself (dirty
     * tracking, convergence, downtime limit) to a local UNIX socket, and
     * Ferry carries its channels between the hosts (QEMU: multifd, one
     * Ferry stream per channel; include/ferry/qstream.h).  The stream_*
     * operations.  (ABI 3) */
    FY_DRV_STREAM = 1u << 9,
};

/* ---- inventory ------------------------------------------------------------ */

enum fy_net_role {
    FY_NET_MANAGEMENT = 0,
    FY_NET_MIGRATION = 1,    /* hot data: memory, device state, child deltas */
    FY_NET_PROVISIONING = 2, /* cold data; management if none */
    FY_NET__COUNT
};

struct fy_datastore {
    char name[FY_NAME_MAX];
    char path[FY_PATH_MAX]; /* where its files live on this host */
    uint64_t capacity;      /* bytes */
    uint64_t free;          /* bytes */
    bool shared;            /* other hosts reach it too (same name) */
};

struct fy_host_info {
    char name[FY_NAME_MAX];
    char hypervisor[FY_NAME_MAX]; /* "sim", "qemu", "hyperv": never changes
                                     during a migration */
    char cpu_vendor[16];          /* "GenuineIntel", "AuthenticAMD", ... */
    char cpu_model[FY_NAME_MAX];
    uint64_t mem_total, mem_free; /* bytes */
    unsigned cpus_total, cpus_free;
    bool dynamic_memory;          /* can run VMs with dynamic memory */
    bool maintenance;
    /* Address of each network role ("10.0.0.1"), "" if the host has none. */
    char net[FY_NET__COUNT][FY_NAME_MAX];
    unsigned ndatastores;
    struct fy_datastore datastores[FY_MAX_DATASTORES];
};

enum fy_power {
    FY_POWER_OFF = 0,
    FY_POWER_RUNNING = 1,
    FY_POWER_PAUSED = 2,    /* stopped in memory (switchover) */
    FY_POWER_SUSPENDED = 3, /* memory saved to an image, not running */
};

enum fy_device_kind {
    FY_DEV_USB = 1,
    FY_DEV_FLOPPY = 2,
    FY_DEV_CDROM = 3,      /* path: the ISO image, "" if empty */
    FY_DEV_PASSTHROUGH = 4, /* a host device or raw-mapped disk */
    FY_DEV_NIC = 5,
};

struct fy_device {
    enum fy_device_kind kind;
    char name[FY_NAME_MAX];
    char path[FY_PATH_MAX]; /* medium or image, "" if none */
    bool media;             /* a medium is inserted (floppy, CD-ROM) */
};

struct fy_disk {
    char name[FY_NAME_MAX];     /* "vda" */
    char path[FY_PATH_MAX];     /* the active (child) image */
    char datastore[FY_NAME_MAX];
    uint64_t size;              /* bytes the file occupies */
    uint64_t virtual_size;
    /* Backing chain, nearest first: cold data (base images, non-child
     * deltas), moved over the provisioning network. */
    unsigned nbacking;
    char backing[4][FY_PATH_MAX];
};

struct fy_vm_info {
    char name[FY_NAME_MAX];
    char uuid[40];
    enum fy_power power;
    uint64_t mem_bytes;
    unsigned vcpus;
    char cpu_vendor[16];     /* the CPU it was started on (live migration
                                may not change vendor) */
    bool dynamic_memory;
    bool managed;            /* false: Ferry must leave it alone */
    unsigned ndevices;
    struct fy_device devices[FY_MAX_DEVICES];
    unsigned ndisks;
    struct fy_disk disks[FY_MAX_DISKS];
};

struct fy_vm_list {
    unsigned n;
    char (*names)[FY_NAME_MAX]; /* malloc'd by the driver; the caller frees
                                   it with free() */
};

/* ---- memory --------------------------------------------------------------- */

/* One region of guest RAM, as the dataplane reads (source) or fills
 * (target) it: a descriptor to map, or another process's address range. */
struct fy_memory_region {
    char name[FY_NAME_MAX]; /* "pc.ram" */
    uint64_t size;          /* bytes, a multiple of 4 KiB */
    int fd;                 /* >= 0: map this (owned by the driver, valid
                               until the VM stops or is undefined) */
    uint64_t offset;        /* into fd */
    pid_t pid;              /* fd < 0: read/write process pid ... */
    uint64_t addr;          /* ... at this address */
};

struct fy_memory_layout {
    unsigned n;
    struct fy_memory_region regions[FY_MAX_REGIONS];
};

/* ---- hot disks ------------------------------------------------------------ */

/* A running VM's disk opened for a hot move (FY_DRV_STORAGE): private to
 * the driver, ended with disk_close. */
struct fy_disk_io;

enum fy_disk_mode {
    FY_DISK_SOURCE = 1, /* read it and track the guest's writes */
    FY_DISK_TARGET = 2, /* write it (a placeholder's, before it resumes) */
};

/* The unit of the dirty bitmaps of disk_dirty: 4 KiB blocks. */
#define FY_DISK_BLOCK 4096u

/* ---- stream mode ----------------------------------------------------------- */

/* How the hypervisor migrates (FY_DRV_STREAM). */
struct fy_stream_params {
    unsigned channels;    /* parallel channels besides the main one (QEMU's
                             multifd-channels), >= 1 */
    uint32_t downtime_ms; /* the pause the last iteration may take; 0: the
                             hypervisor's default */
    uint64_t bandwidth;   /* bytes per second the hypervisor may send; 0:
                             the driver's configured limit, else none */
};

enum fy_stream_state {
    FY_STREAM_NONE = 0,      /* no migration started (or the hypervisor
                                forgot it) */
    FY_STREAM_ACTIVE = 1,    /* setting up, iterating, or in its final pause */
    FY_STREAM_COMPLETED = 2, /* source: all sent, the VM paused for good;
                                target: all loaded, the VM waits for
                                vm_resume */
    FY_STREAM_FAILED = 3,    /* failed or cancelled: a source VM runs on */
};

/* A migration's progress as the hypervisor reports it (QEMU:
 * query-migrate); figures it does not report are 0. */
struct fy_stream_status {
    enum fy_stream_state state;
    char status[32];          /* the hypervisor's own word ("active",
                                 "device", "completed", ...) */
    char error[256];          /* FAILED: the hypervisor's reason */
    double seconds;           /* since the migration started */
    double downtime;          /* COMPLETED source: the pause, seconds */
    double expected_downtime; /* ACTIVE: if it paused now, seconds */
    uint64_t ram_total;       /* bytes of RAM migrated */
    uint64_t ram_remaining;   /* of those, still to send this iteration */
    uint64_t transferred;     /* bytes the hypervisor sent */
    uint64_t pages_normal;    /* pages sent with their contents */
    uint64_t pages_zero;      /* pages the hypervisor found zero and sent as
                                 a marker (QEMU's "duplicate") */
    uint64_t dirty_syncs;     /* dirty-bitmap syncs: about its iterations */
    uint64_t dirty_rate;      /* pages dirtied per second */
    unsigned throttle_pct;    /* auto-converge's CPU throttle */
};

/* ---- the operations -------------------------------------------------------- */

struct fy_driver; /* an instance, private to the driver */

struct fy_driver_ops {
    unsigned abi;            /* FY_DRIVER_ABI. Required. */
    const char *name;        /* "sim". Required. */
    const char *description; /* one line. Required. */
    uint32_t caps;           /* enum fy_driver_cap. */

    /* Opens an instance. 'config' is "key=value" pairs separated by ';'
     * (the host's ferryd configuration passes it through; e.g.
     * "state=/var/lib/ferry/sim/host1" or "uri=qemu:///system"). Unknown
     * keys are refused with FY_E_CONFIG naming them. Required. */
    int (*open)(const char *config, struct fy_driver **out);

    /* Closes an instance; VMs keep running. NULL allowed. Required. */
    void (*close)(struct fy_driver *d);

    /* -- inventory (all required) -- */
    int (*host_info)(struct fy_driver *d, struct fy_host_info *out);
    int (*vm_list)(struct fy_driver *d, struct fy_vm_list *out);
    /* FY_E_NOTFOUND for an unknown VM. */
    int (*vm_info)(struct fy_driver *d, const char *vm, struct fy_vm_info *out);

    /* -- lifecycle (all required) -- */
    int (*vm_start)(struct fy_driver *d, const char *vm);
    /* force: power off; otherwise ask the guest to shut down and wait. */
    int (*vm_stop)(struct fy_driver *d, const char *vm, bool force);
    int (*vm_pause)(struct fy_driver *d, const char *vm);
    int (*vm_resume)(struct fy_driver *d, const char *vm);

    /* The VM's configuration as an opaque text (libvirt XML, the sim
     * driver's line format, ...) that vm_define on another host of the same
     * driver accepts. '*out' is malloc'd; the caller frees it. Required. */
    int (*vm_export)(struct fy_driver *d, const char *vm, char **out);

    /* Registers a VM from an exported configuration, with disk i's path
     * replaced by disk_paths[i] (NULL: keep the exported paths) and the name
     * replaced by 'name' (NULL: keep). The VM is defined powered off.
     * FY_E_EXISTS if the name is taken. Required. */
    int (*vm_define)(struct fy_driver *d, const char *config, const char *name,
                     const char *const *disk_paths, unsigned ndisks);

    /* Unregisters a stopped VM; its disk files stay. Required. */
    int (*vm_undefine)(struct fy_driver *d, const char *vm);

    /* Renames a VM (bulk migration renames the source). NULL if unsupported. */
    int (*vm_rename)(struct fy_driver *d, const char *vm, const char *name);

    /* Disconnects every NIC of a VM. NULL if unsupported. */
    int (*vm_disconnect_nics)(struct fy_driver *d, const char *vm);

    /* -- memory (required with FY_DRV_LIVE, FY_DRV_QUICK or
     *    FY_DRV_RAM_DIRECT) -- */

    /* The regions of a running or paused VM's RAM. */
    int (*memory_layout)(struct fy_driver *d, const char *vm,
                         struct fy_memory_layout *out);

    /* Defines and starts a VM from 'config' that waits, paused, for its
     * memory to be filled: its memory_layout is then the destination.
     * vm_resume starts it (after device_state_load, when the driver has
     * device state). Required with FY_DRV_LIVE or FY_DRV_RAM_DIRECT. */
    int (*incoming_prepare)(struct fy_driver *d, const char *config,
                            const char *name);

    /* -- dirty log (required with FY_DRV_DIRTY_LOG) -- */

    /* Starts recording written pages of every region. */
    int (*dirty_log_start)(struct fy_driver *d, const char *vm);
    /* Fills 'bitmap' (npages bits, LSB first) with the pages of region
     * 'region' written since the previous call and starts a new period,
     * as KVM_GET_DIRTY_LOG. Called from the migration engine's thread. */
    int (*dirty_log_sync)(struct fy_driver *d, const char *vm, unsigned region,
                          uint64_t *bitmap, uint64_t npages);
    int (*dirty_log_stop)(struct fy_driver *d, const char *vm);

    /* -- device state (required with FY_DRV_DEVICE_STATE or
     *    FY_DRV_RAM_DIRECT) -- */

    /* The paused VM's device state ('*out' malloc'd, caller frees): all
     * the hypervisor needs besides the memory regions (QEMU: its migration
     * stream without the shared RAM).  It crosses the agents' control
     * connection, hex-encoded in one message of at most 1 MiB: keep it
     * under about 500 KiB (compress it). The loading side is a
     * placeholder from incoming_prepare. */
    int (*device_state_save)(struct fy_driver *d, const char *vm, void **out,
                             size_t *len);
    int (*device_state_load)(struct fy_driver *d, const char *vm,
                             const void *state, size_t len);

    /* -- quick migration (required with FY_DRV_QUICK) -- */

    /* Suspends a running VM, saving its memory to 'image' (a file), and
     * restores one from an image, leaving it running. */
    int (*vm_suspend)(struct fy_driver *d, const char *vm, const char *image);
    int (*vm_restore)(struct fy_driver *d, const char *vm, const char *image);

    /* -- hot disks (all required with FY_DRV_STORAGE; ABI 3) --
     *
     * A live migration to a host that does not reach the VM's datastore
     * moves each disk's active (child) image while the guest runs: base
     * images travel first as cold data (files); the target gets an empty
     * delta over them (disk_create) before its placeholder starts; then
     * the guest-visible contents move by pre-copy rounds from a source
     * disk_open to a target one, the first round holding only the blocks
     * the active image holds itself, the next ones the blocks written
     * since (disk_dirty), the last with the VM paused. */

    /* Creates disk 'disk' (its index in vm_info's disks) of the VM that
     * 'config' (vm_export's text) describes, at 'path', a file of this
     * host that exists empty (the migration reserved it): an image of
     * 'virtual_size' bytes, of the format the configuration gives the
     * disk, that reads as its backing file 'backing' (a file of this host;
     * "" for none: then it reads as zero). */
    int (*disk_create)(struct fy_driver *d, const char *config, unsigned disk,
                       const char *path, uint64_t virtual_size,
                       const char *backing);

    /* Opens disk 'disk' of a running or paused VM (FY_DISK_SOURCE: writes
     * are tracked from now on) or of a placeholder from incoming_prepare
     * (FY_DISK_TARGET), and gives its virtual size in bytes. */
    int (*disk_open)(struct fy_driver *d, const char *vm, unsigned disk,
                     enum fy_disk_mode mode, struct fy_disk_io **out,
                     uint64_t *size);

    /* The guest-visible bytes of a range (what the guest would read,
     * backing images included); the target writes into its active image
     * only.  Ranges lie inside the virtual size.  These three and
     * disk_dirty are called from the migration engine's threads, several
     * at once on one io: they must not use the instance's unguarded
     * state. */
    int (*disk_read)(struct fy_disk_io *io, uint64_t offset, void *buf, uint64_t len);
    int (*disk_write)(struct fy_disk_io *io, uint64_t offset, const void *buf,
                      uint64_t len);
    int (*disk_zero)(struct fy_disk_io *io, uint64_t offset, uint64_t len);

    /* Source: fills 'bitmap' (nblocks bits of FY_DISK_BLOCK bytes, LSB
     * first) with, at the first call, the blocks the active image holds
     * itself (not read from its backing images), and at each later call
     * the blocks written since the call before. */
    int (*disk_dirty)(struct fy_disk_io *io, uint64_t *bitmap, uint64_t nblocks);

    /* Target: makes what was written durable.  Both: stops tracking and
     * serving the disk, and frees 'io' whatever it returns. */
    int (*disk_close)(struct fy_disk_io *io);

    /* -- stream mode (all required with FY_DRV_STREAM; ABI 3) --
     *
     * Target: incoming_prepare's placeholder; stream_incoming; Ferry
     * connects the channels to 'path' in order (main first) and writes
     * each as the source hypervisor sent it; stream_status until
     * COMPLETED; vm_resume.  Source: stream_outgoing; Ferry listens at
     * 'path'; stream_start; Ferry accepts the channels and carries them;
     * stream_status until COMPLETED (the VM is then paused) or FAILED
     * (it runs on); stream_end in every case.  The source VM's memory
     * need not be shared: the hypervisor reads it. */

    /* Target: the placeholder 'vm' (incoming_prepare) starts waiting for
     * its incoming migration of p->channels channels on a UNIX socket of
     * this host, whose path it puts in 'path' ('len' bytes). */
    int (*stream_incoming)(struct fy_driver *d, const char *vm,
                           const struct fy_stream_params *p, char *path,
                           size_t len);

    /* Source: sets up the running VM 'vm''s outgoing migration (p) and
     * names, in 'path', where the caller is to listen: a UNIX socket path
     * in a directory the hypervisor can reach (the caller binds it and
     * removes it). */
    int (*stream_outgoing)(struct fy_driver *d, const char *vm,
                           const struct fy_stream_params *p, char *path,
                           size_t len);

    /* Source: starts the migration to 'path', where the caller listens. */
    int (*stream_start)(struct fy_driver *d, const char *vm, const char *path);

    /* Either end: the migration's state now, without waiting. */
    int (*stream_status)(struct fy_driver *d, const char *vm,
                         struct fy_stream_status *out);

    /* Either end, after stream_outgoing or stream_incoming, whatever
     * happened: a migration still active is cancelled (the source VM runs
     * on; it stays paused if it completed), and the VM's settings go back
     * to what other migrations expect.  Records no error when there is
     * nothing to undo. */
    int (*stream_end)(struct fy_driver *d, const char *vm);

    /* -- base images under another name (optional; ABI 3) -- */

    /* Makes the disk image at 'path' (a file of this host, of a VM not
     * running) read its base image from 'backing' (a file of this host)
     * instead of the one it names now, without changing its own contents:
     * 'backing' holds the same bytes as the base the image was made over.
     * A migration sends a base image under another name when the target
     * has a different file under the base's own; this points the moved
     * image (or the moved base above it) at the copy.  NULL: such a
     * migration fails, saying so. */
    int (*disk_rebase)(struct fy_driver *d, const char *path, const char *backing);
};

/* Makes 'ops' the driver's entry point. Use once per driver, at file
 * scope. */
#define FY_DRIVER_ENTRY_SYMBOL "ferry_driver_entry"
#define FY_DRIVER_REGISTER(ops)                                              \
    __attribute__((visibility("default"))) const struct fy_driver_ops *      \
    ferry_driver_entry(void);                                                \
    const struct fy_driver_ops *ferry_driver_entry(void) { return &(ops); }

#ifdef __cplusplus
}
#endif

#endif /* FERRY_DRIVER_H */
