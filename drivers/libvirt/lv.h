/* The libvirt driver's private interface between its files
 * (docs/libvirt.md describes the driver; include/ferry/driver.h the
 * contract it implements).
 *
 *   libvirt.c   operations table, open/close and configuration, host_info,
 *               libvirt errors and the event loop
 *   domain.c    inventory (vm_list, vm_info) and lifecycle, export/define
 *   domxml.c    reading and rewriting domain XML (libxml2)
 *   qcow2.c     disk images: backing chains, sizes, rebasing
 *   memory.c    the QEMU process of a domain and its shared RAM (memory_layout)
 *   ramdirect.c RAM-direct: the incoming placeholder and device state over
 *               QEMU's migration stream with shared RAM left out
 *   qmp.c       QMP commands through libvirt-qemu
 *   stream.c    stream mode: QEMU's own (multifd) live migration to a socket
 *               the agent carries over Ferry's dataplane
 *   nbd_disk.c  hot disks: a running guest's disk read, tracked (dirty
 *               bitmaps) and written through QEMU's NBD server (libnbd)
 *
 * Every function returns 0 or a negative fy_err with the detail recorded
 * by fy_error() where it failed, as the driver contract asks. */
#ifndef FERRY_DRIVERS_LIBVIRT_LV_H
#define FERRY_DRIVERS_LIBVIRT_LV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "ferry/driver.h"
#include "ferry/error.h"

struct json_object;

#define LV_MAX_MEMVMS 64

struct lv_datastore {
    char name[FY_NAME_MAX];
    char path[FY_PATH_MAX];
    bool shared;
};

/* The memory of one running domain, as memory_layout last found it: the
 * descriptors stay open (the contract lets the dataplane use them until the
 * VM stops), and are closed when the VM stops, is undefined, or its QEMU
 * process changes. */
struct lv_memvm {
    bool used;
    unsigned char uuid[VIR_UUID_BUFLEN];
    pid_t pid;
    struct fy_memory_layout layout;
};

struct fy_driver {
    virConnectPtr conn;
    char uri[FY_PATH_MAX];
    char root[FY_PATH_MAX];  /* qemu:///embed's root, "" otherwise */
    char host[FY_NAME_MAX];
    char work[FY_PATH_MAX];  /* private directory for migration sockets */
    unsigned nds;
    struct lv_datastore ds[FY_MAX_DATASTORES];
    char net[FY_NET__COUNT][FY_NAME_MAX];
    uint64_t mem_limit;      /* 0: the node's memory */
    unsigned cpus_limit;     /* 0: 4 vCPUs per host CPU */
    bool maintenance;
    int timeout_s;           /* QMP waits (device state) */
    int shutdown_s;          /* a guest's own shutdown */
    uint64_t stream_bw;      /* stream mode: QEMU's max-bandwidth, bytes/s;
                                0: unlimited */
    unsigned seq;            /* for unique socket names */
    struct lv_memvm mem[LV_MAX_MEMVMS];
};

/* ---- libvirt.c ------------------------------------------------------------ */

/* Reports the last libvirt error as 'code' (or, for a domain libvirt does
 * not know, FY_E_NOTFOUND), prefixed by the formatted context. */
__attribute__((format(printf, 2, 3)))
int lv_fail(int code, const char *fmt, ...);

/* The domain named 'vm', or FY_E_NOTFOUND naming the host. */
int lv_lookup(struct fy_driver *d, const char *vm, virDomainPtr *out);

/* The CPU vendor of the host ("GenuineIntel", ...), "" if unknown. */
void lv_host_cpu(struct fy_driver *d, char *vendor, size_t vlen, char *model,
                 size_t mlen);

/* The configured datastore holding 'path', or NULL. */
const struct lv_datastore *lv_datastore_of(struct fy_driver *d, const char *path);

/* ---- domain.c (the operations) ------------------------------------------ */

int lv_vm_list(struct fy_driver *d, struct fy_vm_list *out);
int lv_vm_info(struct fy_driver *d, const char *vm, struct fy_vm_info *out);
int lv_vm_start(struct fy_driver *d, const char *vm);
int lv_vm_stop(struct fy_driver *d, const char *vm, bool force);
int lv_vm_pause(struct fy_driver *d, const char *vm);
int lv_vm_resume(struct fy_driver *d, const char *vm);
int lv_vm_export(struct fy_driver *d, const char *vm, char **out);
int lv_vm_define(struct fy_driver *d, const char *config, const char *name,
                 const char *const *disk_paths, unsigned ndisks);
int lv_vm_undefine(struct fy_driver *d, const char *vm);
int lv_vm_rename(struct fy_driver *d, const char *vm, const char *name);
int lv_vm_suspend(struct fy_driver *d, const char *vm, const char *image);
int lv_vm_restore(struct fy_driver *d, const char *vm, const char *image);

/* The state of a domain as the contract names it. */
int lv_power(virDomainPtr dom, enum fy_power *out);

/* ---- domxml.c ------------------------------------------------------------- */

/* What the XML says of a VM: name, uuid, memory, vCPUs, devices, and disks
 * (path and target name; sizes and backing chains are the caller's). */
int lv_xml_info(const char *xml, struct fy_vm_info *out);

enum lv_xml_edit {
    LV_XML_KEEP = 0,
    LV_XML_INCOMING = 1, /* add QEMU's "-incoming defer" (RAM-direct target) */
};

/* A copy of 'xml' with the name replaced (NULL: kept; a new name also drops
 * the UUID and MAC addresses, so the copy gets its own identity), disk i's
 * source file replaced by paths[i] (NULL or n == 0: kept), any "-incoming"
 * from an earlier RAM-direct arrival removed, and 'edit' applied.  '*out'
 * is malloc'd. */
int lv_xml_rewrite(const char *xml, const char *name, const char *const *paths,
                   unsigned n, enum lv_xml_edit edit, char **out);

/* The name in the XML (for messages), into a fixed buffer. */
void lv_xml_name(const char *xml, char *out, size_t len);

/* Attribute 'name' of the child element 'elem' of disk 'disk' (counted as
 * vm_info counts them) in the XML, "" if absent: ("driver", "type") is
 * its image format, ("alias", "name") libvirt's device id in a running
 * domain's XML. */
void lv_xml_disk_attr(const char *xml, unsigned disk, const char *elem, const char *name,
                      char *out, size_t len);

/* ---- qcow2.c -------------------------------------------------------------- */

/* Fills disk->size (bytes allocated), disk->virtual_size and the backing
 * chain (absolute paths, nearest first) of the image at disk->path.  A raw
 * image has no chain.  A missing file leaves the sizes 0. */
int lv_disk_chain(struct fy_disk *disk);

/* After a disk moved to 'path': makes each image of its chain that names
 * its backing file by a path outside the image's own directory name it by
 * the file of the same name beside it, when there is one (the workflow
 * copies base images next to the disk).  Rewrites only the header's
 * reference (qemu-img rebase -u). */
int lv_disk_relink(const char *path);

/* The driver's disk_rebase (include/ferry/driver.h): the qcow2 image
 * 'path' names 'backing' as its base (qemu-img rebase -u: the header only),
 * by file name when both are in one directory. */
int lv_disk_rebase(struct fy_driver *d, const char *path, const char *backing);

/* Creates (or overwrites) the image 'path' with qemu-img: 'format',
 * 'virtual_size' bytes, over 'backing' (NULL or "": none), which it names
 * by file name when both are in one directory. */
int lv_disk_create_image(const char *path, const char *format, uint64_t virtual_size,
                         const char *backing);

/* ---- memory.c ------------------------------------------------------------- */

int lv_memory_layout(struct fy_driver *d, const char *vm,
                     struct fy_memory_layout *out);

/* The QEMU process running 'dom' (libvirt's pid file, else the process
 * with its UUID on the command line), or FY_E_NOTFOUND. */
int lv_qemu_pid(struct fy_driver *d, virDomainPtr dom, pid_t *pid);

/* Closes the memory descriptors kept for 'dom' (it stopped or left). */
void lv_memory_forget(struct fy_driver *d, virDomainPtr dom);
void lv_memory_forget_all(struct fy_driver *d);

/* ---- qmp.c ---------------------------------------------------------------- */

/* Runs one QMP command (JSON text) on the domain's QEMU.  With 'ret' the
 * reply's "return" member is handed over (json_object_put it); a QMP error
 * is FY_E_IO with QEMU's description. */
int lv_qmp(virDomainPtr dom, const char *cmd, struct json_object **ret);

/* Sets one migration capability. */
int lv_qmp_migrate_cap(virDomainPtr dom, const char *cap, bool on);

/* Waits up to timeout_s for the domain's migration (either end) to finish:
 * 0 when QEMU reports "completed", FY_E_IO with its error when "failed" or
 * "cancelled", FY_E_TIMEOUT otherwise. */
int lv_qmp_migrate_wait(virDomainPtr dom, int timeout_s, const char *what);

/* ---- ramdirect.c ---------------------------------------------------------- */

int lv_incoming_prepare(struct fy_driver *d, const char *config, const char *name);
int lv_device_state_save(struct fy_driver *d, const char *vm, void **out, size_t *len);
int lv_device_state_load(struct fy_driver *d, const char *vm, const void *state,
                         size_t len);

/* ---- nbd_disk.c (built with libnbd: FY_DRV_STORAGE) ---------------------- */

int lv_disk_create(struct fy_driver *d, const char *config, unsigned disk, const char *path,
                   uint64_t virtual_size, const char *backing);
int lv_disk_open(struct fy_driver *d, const char *vm, unsigned disk, enum fy_disk_mode mode,
                 struct fy_disk_io **out, uint64_t *size);
int lv_disk_read(struct fy_disk_io *io, uint64_t offset, void *buf, uint64_t len);
int lv_disk_write(struct fy_disk_io *io, uint64_t offset, const void *buf, uint64_t len);
int lv_disk_zero(struct fy_disk_io *io, uint64_t offset, uint64_t len);
int lv_disk_dirty(struct fy_disk_io *io, uint64_t *bitmap, uint64_t nblocks);
int lv_disk_close(struct fy_disk_io *io);

/* ---- stream.c (FY_DRV_STREAM: QEMU's multifd migration, Ferry its
 *      transport) ------------------------------------------------------------ */

int lv_stream_incoming(struct fy_driver *d, const char *vm, const struct fy_stream_params *p,
                       char *path, size_t len);
int lv_stream_outgoing(struct fy_driver *d, const char *vm, const struct fy_stream_params *p,
                       char *path, size_t len);
int lv_stream_start(struct fy_driver *d, const char *vm, const char *path);
int lv_stream_status(struct fy_driver *d, const char *vm, struct fy_stream_status *out);
int lv_stream_end(struct fy_driver *d, const char *vm);

#endif /* FERRY_DRIVERS_LIBVIRT_LV_H */
