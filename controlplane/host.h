/* A host as the migration workflow sees it: a name, the addresses of its
 * networks, and a table of the operations the workflow performs on it.
 *
 * Two implementations (one file each):
 *   - controlplane/host_local.c: the host is a driver instance in this
 *     process (fy_host_local_init()); its files are this process's files and
 *     it runs its ends of the dataplane in this process.
 *   - controlplane/host_remote.c (host_rpc.h): forwards every operation to the
 *     host's ferryd, whose server side calls the local implementation there.
 *
 * So every operation must be expressible as a message: plain values and
 * strings in, plain values out, nothing that only means something in this
 * process (pointers to shared state, file descriptors).  That is why the
 * dataplane ends take a struct fy_host_data ("region N of VM X", "file PATH
 * of SIZE bytes") and not regions: the descriptors of a driver's
 * memory_layout stay inside the host implementation.  The two exceptions,
 * both in this process only, are said where they occur: the opaque receive
 * job (a remote implementation keeps its id in it) and the cancel flag of
 * send (a remote implementation forwards its change as a message).
 *
 * Return convention: every operation returns 0 on success or a negative
 * fy_err value (include/ferry/error.h) with the detail recorded by
 * fy_error() where it failed, naming the host, the VM or file and, when
 * there is one, the fix.  The caller passes it up without reporting it
 * again.
 *
 * Blocking and threads: every operation may block (it may talk to a
 * hypervisor or, remote, to another host) and gives up within the host's
 * timeout.  A host is used by one thread at a time, the workflow's; the
 * engine threads a send or a receive job runs stay inside the
 * implementation.
 *
 * Strings passed in are borrowed for the call.  Outputs go to caller-provided
 * structures, except where an operation says it returns malloc'd memory,
 * which the caller frees with free().
 *
 * Every pointer in the table is required: an implementation that cannot do
 * something returns FY_E_UNSUPPORTED.  The workflow asks 'capabilities'
 * before using the operations a capability governs (dirty log, device
 * state, suspend/restore). */
#ifndef FERRY_CP_HOST_H
#define FERRY_CP_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "controlplane/driver.h"
#include "ferry/driver.h"
#include "ferry/engine.h"

struct fy_host_ops;

/* A host.  The workflow reads name, net and datastore and calls ops; impl
 * belongs to the implementation. */
struct fy_host {
    char name[FY_NAME_MAX];
    const struct fy_host_ops *ops;
    void *impl;
    /* Address of each network role; "" takes the host's host_info. */
    char net[FY_NET__COUNT][FY_NAME_MAX];
    /* At the target: the datastore the VM's disks go to; "" keeps them where
     * they are when the target reaches that datastore (shared), else the
     * target's first datastore. */
    char datastore[FY_NAME_MAX];
    /* Gang dedup (an evacuation's VMs moving to one target): "" none.
     * Memory sends from a host whose gang names are equal, while they
     * overlap, share one dedup index at the source, and memory receives at
     * a host whose gang names are equal share one at the target; so a page
     * content one of them already delivered travels as a reference.  The
     * source-side name must therefore differ per target ("EVAC>TARGET");
     * a remote host passes its name to the receiving host with recv_start.
     * Files never share. */
    char gang[2 * FY_NAME_MAX];
    /* Migration data transport, fy_transport_find() name ("" : tcp), and
     * its settings (fy_transport_opts.params, docs/transports.md).  Both
     * ends of a transfer must use the same transport. */
    char transport[16];
    char transport_params[FY_PATH_MAX];
};

/* What the host's hypervisor can do. */
struct fy_host_caps {
    char driver[FY_NAME_MAX]; /* "sim": a VM moves only between hosts of one
                                 driver */
    uint32_t caps;            /* enum fy_driver_cap */
};

/* A VM's memory as plain values: the regions of its memory_layout, without
 * their descriptors. */
struct fy_host_memory {
    unsigned n;
    struct {
        char name[FY_NAME_MAX];
        uint64_t size; /* bytes, a multiple of FY_PAGE_SIZE */
    } regions[FY_MAX_REGIONS];
};

/* What a transfer moves: the same description is given to the receiving
 * host (recv_start) and the sending one (send). */
enum fy_host_data_kind {
    FY_HOST_DATA_MEMORY = 1, /* region 'region' of VM 'vm', 'size' bytes */
    FY_HOST_DATA_FILE = 2,   /* file 'path', 'size' bytes */
    /* Disk 'region' (its index in vm_info's disks) of VM 'vm', whose
     * virtual size is 'size' bytes: its guest-visible contents, hot
     * (FY_DRV_STORAGE).  Received into a placeholder's disk; sent only
     * alongside the VM's memory (fy_host_send_params.disks). */
    FY_HOST_DATA_DISK = 3,
    /* Stream mode (FY_DRV_STREAM; docs/qstream.md): VM 'vm''s live
     * migration run by its hypervisor, whose 'region' channels (besides
     * the main one) Ferry carries; 'size' is the VM's RAM in bytes.
     * recv_start: the placeholder from incoming_prepare starts its
     * incoming migration (the driver's stream_incoming) and a job accepts
     * the session and feeds it; recv_join returns once the hypervisor has
     * loaded it all (the VM then waits for vm_resume).  send: the running
     * VM migrates (stream_outgoing, stream_start; downtime_ms, cancel and
     * on_round of the params; streams is ignored: channels + 1); returns
     * when the hypervisor completed, the VM paused (paused), or failed,
     * the VM running on.  Needs a transport that carries DATA (tcp). */
    FY_HOST_DATA_STREAM = 4,
    /* The device state of VM 'vm' (FY_DRV_DEVICE_STATE), at its
     * switchover; 'size' is unused (the source learns it when it saves).
     * recv_start: a job accepts one session, receives the state (DATA
     * operations of the transport's data_max bytes, then its total length
     * and digest, both checked) and calls the driver's device_state_load
     * for the VM (the placeholder, paused) with it; recv_join returns the
     * load's result.  send: the driver's device_state_save of the paused
     * VM, whose bytes it sends; returns once the target has loaded them,
     * with the target's reason if it could not (the VM stays paused at
     * the source; the caller resumes it), device_state_bytes set.  Needs a
     * transport that carries DATA (tcp, dpdk, xdp): FY_E_UNSUPPORTED
     * otherwise.  (controlplane/host_devstate.c) */
    FY_HOST_DATA_DEVICE_STATE = 5,
};

struct fy_host_data {
    enum fy_host_data_kind kind;
    char vm[FY_NAME_MAX];
    unsigned region;
    char path[FY_PATH_MAX];
    uint64_t size;
};

/* Where the sender connects: the receiving host's listener, and the session
 * id it accepts (only the sender that was told this id gets in). */
struct fy_host_endpoint {
    char addr[64]; /* "ADDR:PORT" ("[V6]:PORT") */
    uint8_t session_id[16];
};

/* How to send. */
struct fy_host_send_params {
    char bind[FY_NAME_MAX]; /* the sending host's address to send from
                               (its network for this data); "": any */
    unsigned streams;       /* 0: 2 */
    int timeout_ms;         /* connect/idle limit; 0: 30000 */
    /* Memory only. */
    uint32_t downtime_ms;   /* 0: the engine's default */
    unsigned max_rounds;    /* 0: the engine's default */
    bool dirty_log;         /* find dirty pages with the VM's dirty log
                               (started with dirty_log_start); else re-hash */
    bool pause;             /* pause the VM before the final round; else the
                               region is sent in one round (the VM is paused
                               already) */
    /* Set non-zero to cancel before the pause.  A pointer in this process:
     * a remote implementation watches it and sends the cancel on.  May be
     * NULL. */
    volatile int *cancel;
    /* Memory only: called after each pre-copy round with its statistics,
     * on an engine thread, with 'round_ctx'.  A pointer in this process
     * (progress for the agent's client): a remote implementation may drop
     * it.  May be NULL. */
    void (*on_round)(const struct fy_round_stats *st, void *round_ctx);
    void *round_ctx;
    /* Memory with pause: the VM's first ndisks disks move in the same send,
     * disk i to disks[i] (a recv_start of FY_HOST_DATA_DISK), each by its
     * own pre-copy rounds beside the memory's: the first round the blocks
     * its active image holds, then those the guest wrote (the driver's
     * disk_dirty).  The VM is paused once memory and every disk have
     * converged; their final rounds run paused. */
    unsigned ndisks;
    struct fy_host_endpoint disks[FY_MAX_DISKS];
};

/* Stream mode (FY_HOST_DATA_STREAM): what the hypervisor and Ferry saw
 * of a migration.  "hv_" figures are the hypervisor's (QEMU's
 * query-migrate), the others Ferry's (struct fy_qstream_stats). */
struct fy_host_stream_stats {
    unsigned channels;         /* multifd channels carried */
    bool parsed_all;           /* Ferry parsed every channel */
    char unparsed[256];        /* if not: the first channel and why */
    uint64_t pages_sent;       /* whole */
    uint64_t pages_dup;        /* as references to content the target held */
    uint64_t pages_dup_shared; /* of those: from other VMs' migrations */
    uint64_t pages_zero;       /* as ZERO operations */
    uint64_t pages_uncached;   /* of pages_sent: not kept by the target */
    uint64_t qemu_zero_pages;  /* listed without data in multifd packets */
    uint64_t wire_bytes;       /* Ferry's session, all streams, both ways */
    uint64_t hv_transferred;   /* bytes the hypervisor sent */
    uint64_t hv_pages_normal;  /* pages it sent with contents */
    uint64_t hv_pages_zero;    /* zero pages it sent as markers */
    uint64_t hv_dirty_syncs;   /* about its iterations */
    double hv_seconds;         /* its total time */
    double hv_downtime;        /* its pause */
};

struct fy_host_send_result {
    struct fy_migration_stats st; /* of the engine (summed over sessions) */
    struct fy_migration_stats disks; /* of the disks sent alongside, summed */
    bool paused;                  /* the send paused the VM; set also on
                                     failure (the caller resumes it) */
    struct fy_host_stream_stats stream; /* FY_HOST_DATA_STREAM */
    uint64_t device_state_bytes;  /* FY_HOST_DATA_DEVICE_STATE: the state's
                                     length, once the target loaded it */
};

/* A receiving end that runs: opaque; a remote implementation keeps the id
 * of its job at the host in it. */
struct fy_host_recv;

struct fy_host_ops {
    const char *name; /* of the implementation: "local", "remote" */

    /* -- inventory -- */

    /* The host's inventory (the driver's host_info). */
    int (*host_info)(struct fy_host *h, struct fy_host_info *out);

    /* A VM's description.  FY_E_NOTFOUND for an unknown VM. */
    int (*vm_info)(struct fy_host *h, const char *vm, struct fy_vm_info *out);

    /* The driver's name and capabilities. */
    int (*capabilities)(struct fy_host *h, struct fy_host_caps *out);

    /* The names and sizes of the regions of a running or paused VM's
     * memory (its memory_layout without descriptors). */
    int (*memory_info)(struct fy_host *h, const char *vm,
                       struct fy_host_memory *out);

    /* -- lifecycle: the driver operations of the same names -- */

    /* '*out' is malloc'd text; the caller frees it.  Left NULL on failure. */
    int (*vm_export)(struct fy_host *h, const char *vm, char **out);
    /* disk_paths may be NULL (keep the exported paths), name NULL (keep). */
    int (*vm_define)(struct fy_host *h, const char *config, const char *name,
                     const char *const *disk_paths, unsigned ndisks);
    int (*vm_undefine)(struct fy_host *h, const char *vm);
    int (*vm_start)(struct fy_host *h, const char *vm);
    int (*vm_stop)(struct fy_host *h, const char *vm, bool force);
    int (*vm_pause)(struct fy_host *h, const char *vm);
    int (*vm_resume)(struct fy_host *h, const char *vm);
    /* The paused placeholder VM whose memory a MEMORY transfer fills. */
    int (*incoming_prepare)(struct fy_host *h, const char *config,
                            const char *vm);
    /* Quick migration: 'image' is a file on this host. */
    int (*vm_suspend)(struct fy_host *h, const char *vm, const char *image);
    int (*vm_restore)(struct fy_host *h, const char *vm, const char *image);

    /* -- dirty log (FY_DRV_DIRTY_LOG) -- */

    /* Starts and stops recording written pages.  The syncs in between are
     * made by 'send' on the same host (dirty_log = true). */
    int (*dirty_log_start)(struct fy_host *h, const char *vm);
    int (*dirty_log_stop)(struct fy_host *h, const char *vm);

    /* -- device state (FY_DRV_DEVICE_STATE) -- */

    /* The paused VM's device state: '*out' malloc'd (the caller frees it),
     * left NULL on failure. */
    int (*device_state_save)(struct fy_host *h, const char *vm, void **out,
                             size_t *len);
    int (*device_state_load)(struct fy_host *h, const char *vm,
                             const void *state, size_t len);

    /* -- files on the host -- */

    /* Creates an empty file, refusing one that exists (FY_E_EXISTS). */
    int (*file_create)(struct fy_host *h, const char *path);
    /* Removes a file; one that does not exist is not an error. */
    int (*file_remove)(struct fy_host *h, const char *path);
    /* A file's size into *size; FY_E_NOTFOUND if there is none. */
    int (*file_stat)(struct fy_host *h, const char *path, uint64_t *size);
    /* A file's size into *size and the digest of its contents into
     * *digest, so two hosts can tell whether they hold the same file
     * without moving it (a base image the target already has).  The digest
     * is fy_region_digest()'s (include/ferry/engine.h: XXH3-128 over the
     * XXH3-128 of every 4 KiB page) of the file's bytes, its last page
     * padded with zeros; compare sizes as well.  FY_E_NOTFOUND if there is
     * no file.  Reads the whole file (1 MiB at a time), which for a big
     * base image takes a while: the implementation that reads it (the
     * local one, in the host's agent for a remote host) remembers the
     * digests of the last files it read, keyed by path, device, inode,
     * size and modification and change times (ns), so asking again about
     * a file that did not change costs a stat (a second migration over the
     * same base); a file rewritten since gets a new digest. */
    int (*file_digest)(struct fy_host *h, const char *path, uint64_t *size,
                       fy_hash128 *digest);
    /* Hot disks (FY_DRV_STORAGE): the driver's disk_create, making the
     * empty image of disk 'disk' of the VM 'config' describes at 'path'
     * (reserved with file_create) over 'backing' ("" none). */
    int (*disk_create)(struct fy_host *h, const char *config, unsigned disk,
                       const char *path, uint64_t virtual_size, const char *backing);
    /* The driver's disk_rebase: makes the disk image at 'path' (a file of
     * this host) read its base from 'backing' (a file of this host holding
     * the same contents as the base it names now) without changing what
     * it reads: a base image sent under another name because the target
     * has a different file under its own.  FY_E_UNSUPPORTED if the driver
     * cannot. */
    int (*disk_rebase)(struct fy_host *h, const char *path, const char *backing);

    /* -- the dataplane -- */

    /* Starts receiving 'what' on this host: listens at 'listen_addr' (an
     * address of this host, port 0 picked) and returns at once with the
     * endpoint the sender must connect to, while a job of the host waits
     * for the sender (each wait gives up after timeout_ms; 0: 30000).
     * MEMORY: into region what->region of the VM's memory (a placeholder
     * from incoming_prepare), which must have what->size bytes.  FILE: into
     * the file what->path (existing, empty), which ends with what->size
     * bytes.  DISK: into the placeholder's disk what->region (the driver's
     * disk_open), whose virtual size must be what->size.  On success '*job' must be ended with recv_join or recv_abort;
     * on failure nothing runs and '*job' is NULL. */
    int (*recv_start)(struct fy_host *h, const struct fy_host_data *what,
                      const char *listen_addr, int timeout_ms,
                      struct fy_host_recv **job, struct fy_host_endpoint *ep);

    /* Waits for the job to end and returns its result (FY_E_VERIFY when the
     * received copy does not match).  'st' (may be NULL) gets the target's
     * statistics: wire_bytes and verified.  Frees the job either way. */
    int (*recv_join)(struct fy_host *h, struct fy_host_recv *job,
                     struct fy_migration_stats *st);

    /* Ends a job whose sender failed or never came (it stops waiting) and
     * frees it; what it received is discarded.  NULL is allowed.  Records
     * no error. */
    void (*recv_abort)(struct fy_host *h, struct fy_host_recv *job);

    /* Sends 'what' from this host to the receiving end at 'to', and returns
     * when the receiver has it, verified.  MEMORY: region what->region of
     * the VM, by pre-copy rounds (fy_migrate_source) whose dirty log and
     * pause act on this host's VM (params).  FILE: the file what->path,
     * which must have what->size bytes.  'out' is set also on failure (see
     * paused); it may not be NULL. */
    int (*send)(struct fy_host *h, const struct fy_host_data *what,
                const struct fy_host_endpoint *to,
                const struct fy_host_send_params *params,
                struct fy_host_send_result *out);
};

/* Makes 'h' the local host 'name' whose hypervisor is the open driver
 * instance 'drv', which it borrows: 'drv' must stay open while 'h' is used.
 * net and datastore are left empty.  Nothing to free. */
void fy_host_local_init(struct fy_host *h, const char *name,
                        struct fy_driver_handle *drv);

/* The local implementation's table, for a server or a wrapper that calls it
 * on a host made with fy_host_local_init(). */
extern const struct fy_host_ops fy_host_local_ops;

/* Of this process's local file_digest: the bytes it has read and the
 * answers its cache gave, since the process started (tests, statistics). */
struct fy_host_digest_stats {
    uint64_t bytes_read;
    uint64_t cache_hits;
};
void fy_host_local_digest_stats(struct fy_host_digest_stats *out);

#endif /* FERRY_CP_HOST_H */
