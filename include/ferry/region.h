/* Memory regions: the guest memory a migration reads (source) or fills
 * (destination).
 *
 * A region is either
 *   - mapped: a file or memfd (offset + length) mapped MAP_SHARED, so writes
 *     land in the same pages the hypervisor uses; or
 *   - remote: a range of another process's address space, read with
 *     process_vm_readv() and written with process_vm_writev() (the caller
 *     needs ptrace permission over that process).
 *
 * Offsets are bytes from the start of the region; the length is a whole
 * number of pages.  Every access is bounds-checked: an access outside the
 * region fails with FY_E_RANGE and touches nothing.
 *
 * Threads: distinct pages may be read and written from several threads at
 * once.  Open and close are not thread-safe.
 */
#ifndef FERRY_REGION_H
#define FERRY_REGION_H

#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct fy_region;

enum fy_region_access {
    FY_REGION_READ = 1,
    FY_REGION_WRITE = 2,
    FY_REGION_RDWR = 3,
};

/* Creates an anonymous memfd region of 'len' bytes (a multiple of the page
 * size), zero-filled, named 'name' in /proc/PID/fd.  */
int fy_region_create_memfd(const char *name, uint64_t len,
                           struct fy_region **out);

/* Maps 'len' bytes of the file at 'path' from 'offset' (both multiples of
 * the page size).  With FY_REGION_WRITE the file is created if missing and
 * grown to offset + len; otherwise it must be at least that long. */
int fy_region_open_file(const char *path, uint64_t offset, uint64_t len,
                        enum fy_region_access access, struct fy_region **out);

/* Like fy_region_open_file() on an open descriptor (a memfd, or
 * /proc/PID/fd/N of a hypervisor).  The region keeps its own duplicate of
 * 'fd'; the caller still owns 'fd'. */
int fy_region_open_fd(int fd, uint64_t offset, uint64_t len,
                      enum fy_region_access access, struct fy_region **out);

/* A range of process 'pid' starting at address 'addr'.  Checked at open by
 * reading (and, with FY_REGION_WRITE, rewriting) its first page. */
int fy_region_open_pid(pid_t pid, uint64_t addr, uint64_t len,
                       enum fy_region_access access, struct fy_region **out);

/* A view: bytes another party keeps (a running VM's disk, served by its
 * hypervisor), reached only through these callbacks.  Each gets a byte
 * range inside the region (ctx is the one given at open) and returns 0 or
 * a negative fy_err with the detail recorded.  They may be called from
 * several threads at once, for distinct pages.  A view has no base and no
 * descriptor: the engine treats it like a remote region. */
struct fy_region_view_ops {
    int (*read)(void *ctx, uint64_t offset, void *buf, uint64_t len);
    /* NULL for a view opened read-only. */
    int (*write)(void *ctx, uint64_t offset, const void *buf, uint64_t len);
    /* Makes the range read as zero; NULL: zeros are written. */
    int (*zero)(void *ctx, uint64_t offset, uint64_t len);
};

/* A view of 'len' bytes (a multiple of the page size) named 'name' (for
 * messages).  'ops' and 'ctx' must outlive the region; closing it calls
 * nothing. */
int fy_region_open_view(const struct fy_region_view_ops *ops, void *ctx,
                        uint64_t len, enum fy_region_access access,
                        const char *name, struct fy_region **out);

/* Allocates and maps every page of a mapped, writable region now, as a
 * hypervisor preallocating guest RAM does, so placing pages later costs no
 * page faults.  A remote region is left as it is. */
int fy_region_prefault(struct fy_region *r);

/* Sets vec[i] to 1 if page first + i is in memory (reading it through the
 * mapping allocates nothing) and to 0 if not: a hole, which reads as zero,
 * or a page swapped out.  Read the latter with fy_region_read_nofault().
 * Remote regions report every page as resident. */
int fy_region_resident(struct fy_region *r, uint64_t first, uint64_t n,
                       uint8_t *vec);

/* Copies 'len' bytes at 'offset' into 'buf' like fy_region_read(), but
 * through the file (pread) when the region has one, so holes read as zero
 * without being allocated in the page cache as a mapping fault would. */
int fy_region_read_nofault(struct fy_region *r, uint64_t offset, void *buf,
                           uint64_t len);

/* Unmaps and closes.  NULL is allowed. */
void fy_region_close(struct fy_region *r);

uint64_t fy_region_size(const struct fy_region *r);
uint64_t fy_region_pages(const struct fy_region *r);

/* The region's memory in this process, or NULL for a remote region.
 * Writes through it are allowed only for regions opened with write access. */
void *fy_region_base(const struct fy_region *r);

/* The descriptor of a mapped region (owned by the region), or -1. */
int fy_region_fd(const struct fy_region *r);

/* A name for messages ("memfd:NAME", "file:PATH@OFF", "pid:PID@ADDR"). */
const char *fy_region_name(const struct fy_region *r);

/* Copies 'n' pages, numbered pages[0..n-1], into 'buf' one after another
 * (n * FY_PAGE_SIZE bytes).  A remote region does this in one system call
 * per up to 512 pages. */
int fy_region_read_pages(struct fy_region *r, const uint64_t *pages,
                         unsigned n, void *buf);

/* Writes 'n' pages: data[i] (FY_PAGE_SIZE bytes) to page pages[i]. */
int fy_region_write_pages(struct fy_region *r, const uint64_t *pages,
                          const void *const *data, unsigned n);

/* Copies 'len' bytes at 'offset' into 'buf' / from 'buf'. */
int fy_region_read(struct fy_region *r, uint64_t offset, void *buf,
                   uint64_t len);
int fy_region_write(struct fy_region *r, uint64_t offset, const void *buf,
                    uint64_t len);

/* Makes 'len' bytes at 'offset' (page-aligned) read as zero.  A mapped
 * region frees whole pages back to the file system (punches a hole) where
 * it can, so zero pages cost no memory at the destination. */
int fy_region_zero(struct fy_region *r, uint64_t offset, uint64_t len);

/* Copies one page within the region: page 'src' to page 'dst'. */
int fy_region_copy_page(struct fy_region *r, uint64_t dst, uint64_t src);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_REGION_H */
