/* Memory regions over a mapped file/memfd, another process's memory, or a
 * view whose bytes callbacks reach. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ferry/classifier.h"
#include "ferry/error.h"
#include "ferry/region.h"

/* process_vm_readv/writev take at most IOV_MAX segments per call. */
#define REMOTE_BATCH 512

struct fy_region {
    uint64_t size;
    int access;
    /* mapped */
    uint8_t *base;
    int fd;
    uint64_t file_offset;
    bool can_punch;
    bool use_mincore;
    /* remote */
    pid_t pid;
    uint64_t addr;
    /* view */
    const struct fy_region_view_ops *view;
    void *view_ctx;
    char name[128];
};

static bool page_aligned(uint64_t v)
{
    return (v & (FY_PAGE_SIZE - 1)) == 0;
}

static int check_len(uint64_t offset, uint64_t len)
{
    if (len == 0 || !page_aligned(len) || !page_aligned(offset))
        return fy_error(FY_E_INVAL,
                        "region offset %llu and length %llu must be non-zero "
                        "multiples of the %u-byte page",
                        (unsigned long long)offset, (unsigned long long)len,
                        FY_PAGE_SIZE);
    if (offset + len < offset)
        return fy_error(FY_E_RANGE, "region offset + length overflows");
    return 0;
}

static inline int check_range(const struct fy_region *r, uint64_t off,
                              uint64_t len)
{
    if (off > r->size || len > r->size - off)
        return fy_error(FY_E_RANGE,
                        "access of %llu bytes at %llu outside %s (%llu bytes)",
                        (unsigned long long)len, (unsigned long long)off,
                        r->name, (unsigned long long)r->size);
    return 0;
}

static int map_fd(int fd, uint64_t offset, uint64_t len,
                  enum fy_region_access access, const char *name,
                  struct fy_region **out)
{
    struct fy_region *r;
    int prot = PROT_READ | ((access & FY_REGION_WRITE) ? PROT_WRITE : 0);
    int rc;

    r = calloc(1, sizeof(*r));
    if (!r)
        return fy_error(FY_E_NOMEM, "no memory for region %s", name);
    r->fd = fd;
    r->size = len;
    r->access = access;
    r->file_offset = offset;
    r->can_punch = (access & FY_REGION_WRITE) != 0;
    r->use_mincore = true;
    snprintf(r->name, sizeof(r->name), "%s", name);
    r->base = mmap(NULL, len, prot, MAP_SHARED, fd, (off_t)offset);
    if (r->base == MAP_FAILED) {
        rc = fy_error_sys("cannot map %llu bytes of %s",
                          (unsigned long long)len, name);
        free(r);
        return rc;
    }
    /* Pages are read in order: read-ahead helps a file-backed source. */
    madvise(r->base, len, MADV_SEQUENTIAL);
    *out = r;
    return 0;
}

int fy_region_create_memfd(const char *name, uint64_t len,
                           struct fy_region **out)
{
    char label[128];
    int fd, rc;

    if (!out || !name)
        return fy_error(FY_E_INVAL, "memfd region: no name or output");
    if ((rc = check_len(0, len)) < 0)
        return rc;
    fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0)
        return fy_error_sys("memfd_create(%s)", name);
    if (ftruncate(fd, (off_t)len) < 0) {
        rc = fy_error_sys("cannot size memfd %s to %llu bytes", name,
                          (unsigned long long)len);
        close(fd);
        return rc;
    }
    snprintf(label, sizeof(label), "memfd:%s", name);
    rc = map_fd(fd, 0, len, FY_REGION_RDWR, label, out);
    if (rc < 0)
        close(fd);
    return rc;
}

int fy_region_open_fd(int fd, uint64_t offset, uint64_t len,
                      enum fy_region_access access, struct fy_region **out)
{
    char label[128];
    struct stat st;
    int dup_fd, rc;

    if (!out || fd < 0 || !(access & FY_REGION_RDWR))
        return fy_error(FY_E_INVAL, "region: bad descriptor or access");
    if ((rc = check_len(offset, len)) < 0)
        return rc;
    if (fstat(fd, &st) < 0)
        return fy_error_sys("cannot stat descriptor %d", fd);
    if ((uint64_t)st.st_size < offset + len)
        return fy_error(FY_E_RANGE,
                        "descriptor %d holds %llu bytes, the region needs %llu",
                        fd, (unsigned long long)st.st_size,
                        (unsigned long long)(offset + len));
    dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup_fd < 0)
        return fy_error_sys("cannot duplicate descriptor %d", fd);
    snprintf(label, sizeof(label), "fd:%d@%llu", fd,
             (unsigned long long)offset);
    rc = map_fd(dup_fd, offset, len, access, label, out);
    if (rc < 0)
        close(dup_fd);
    return rc;
}

int fy_region_open_file(const char *path, uint64_t offset, uint64_t len,
                        enum fy_region_access access, struct fy_region **out)
{
    char label[128];
    struct stat st;
    int flags, fd, rc;

    if (!out || !path || !(access & FY_REGION_RDWR))
        return fy_error(FY_E_INVAL, "file region: bad path or access");
    if ((rc = check_len(offset, len)) < 0)
        return rc;
    flags = O_CLOEXEC |
            ((access & FY_REGION_WRITE) ? (O_RDWR | O_CREAT) : O_RDONLY);
    fd = open(path, flags, 0600);
    if (fd < 0)
        return fy_error_sys("cannot open %s", path);
    if (fstat(fd, &st) < 0) {
        rc = fy_error_sys("cannot stat %s", path);
        goto fail;
    }
    if ((uint64_t)st.st_size < offset + len) {
        if (!(access & FY_REGION_WRITE)) {
            rc = fy_error(FY_E_RANGE, "%s holds %llu bytes, the region needs %llu",
                          path, (unsigned long long)st.st_size,
                          (unsigned long long)(offset + len));
            goto fail;
        }
        if (ftruncate(fd, (off_t)(offset + len)) < 0) {
            rc = fy_error_sys("cannot grow %s to %llu bytes", path,
                              (unsigned long long)(offset + len));
            goto fail;
        }
    }
    if (access & FY_REGION_WRITE) {
        /* A write through the mapping into a hole of a full file system
         * kills the process with SIGBUS: reserve the blocks now, and say
         * so clearly if they are not there. */
        int e = posix_fallocate(fd, (off_t)offset, (off_t)len);
        if (e == ENOSPC || e == EDQUOT) {
            rc = fy_error(FY_E_NOSPACE,
                          "no space for %llu bytes in %s: free space on its "
                          "file system or choose another datastore",
                          (unsigned long long)len, path);
            goto fail;
        }
    }
    snprintf(label, sizeof(label), "file:%s@%llu", path,
             (unsigned long long)offset);
    rc = map_fd(fd, offset, len, access, label, out);
    if (rc == 0)
        return 0;
fail:
    close(fd);
    return rc;
}

int fy_region_open_pid(pid_t pid, uint64_t addr, uint64_t len,
                       enum fy_region_access access, struct fy_region **out)
{
    struct fy_region *r;
    uint8_t probe[FY_PAGE_SIZE];
    uint64_t first = 0;
    int rc;

    if (!out || pid <= 0 || !(access & FY_REGION_RDWR))
        return fy_error(FY_E_INVAL, "pid region: bad pid or access");
    if ((rc = check_len(addr, len)) < 0)
        return rc;
    r = calloc(1, sizeof(*r));
    if (!r)
        return fy_error(FY_E_NOMEM, "no memory for a pid region");
    r->fd = -1;
    r->pid = pid;
    r->addr = addr;
    r->size = len;
    r->access = access;
    snprintf(r->name, sizeof(r->name), "pid:%d@0x%llx", (int)pid,
             (unsigned long long)addr);
    /* Prove access now rather than in the middle of a migration. */
    rc = fy_region_read_pages(r, &first, 1, probe);
    if (rc == 0 && (access & FY_REGION_WRITE)) {
        const void *p = probe;
        rc = fy_region_write_pages(r, &first, &p, 1);
    }
    if (rc < 0) {
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int fy_region_open_view(const struct fy_region_view_ops *ops, void *ctx,
                        uint64_t len, enum fy_region_access access,
                        const char *name, struct fy_region **out)
{
    struct fy_region *r;
    int rc;

    if (!out || !ops || !ops->read || !(access & FY_REGION_RDWR) ||
        ((access & FY_REGION_WRITE) && !ops->write))
        return fy_error(FY_E_INVAL, "view region %s: no read callback, or write access "
                        "without a write callback", name ? name : "");
    if ((rc = check_len(0, len)) < 0)
        return rc;
    if (!(r = calloc(1, sizeof(*r))))
        return fy_error(FY_E_NOMEM, "no memory for view region %s", name ? name : "");
    r->fd = -1;
    r->size = len;
    r->access = access;
    r->view = ops;
    r->view_ctx = ctx;
    snprintf(r->name, sizeof(r->name), "view:%s", name ? name : "");
    *out = r;
    return 0;
}

int fy_region_prefault(struct fy_region *r)
{
    if (!r->base || !(r->access & FY_REGION_WRITE))
        return 0;
    if (madvise(r->base, r->size, MADV_POPULATE_WRITE) == 0)
        return 0;
    if (errno != EINVAL)
        return fy_error_sys("cannot preallocate %s", r->name);
    /* Kernels before 5.14: touch every page. */
    for (uint64_t off = 0; off < r->size; off += FY_PAGE_SIZE)
        __atomic_fetch_add(r->base + off, 0, __ATOMIC_RELAXED);
    return 0;
}

int fy_region_resident(struct fy_region *r, uint64_t first, uint64_t n,
                       uint8_t *vec)
{
    uint64_t npages = r->size >> FY_PAGE_SHIFT;

    if (first > npages || n > npages - first)
        return fy_error(FY_E_RANGE, "pages %llu+%llu outside %s",
                        (unsigned long long)first, (unsigned long long)n, r->name);
    if (!r->base || r->fd < 0 || !r->use_mincore) {
        memset(vec, 1, n);
        return 0;
    }
    if (mincore(r->base + (first << FY_PAGE_SHIFT), n << FY_PAGE_SHIFT, vec) < 0) {
        r->use_mincore = false; /* cannot tell: read everything as mapped */
        memset(vec, 1, n);
        return 0;
    }
    for (uint64_t i = 0; i < n; i++)
        vec[i] &= 1;
    return 0;
}

int fy_region_read_nofault(struct fy_region *r, uint64_t offset, void *buf,
                           uint64_t len)
{
    uint8_t *dst = buf;
    int rc;

    if (r->fd < 0)
        return fy_region_read(r, offset, buf, len);
    if ((rc = check_range(r, offset, len)) < 0)
        return rc;
    while (len) {
        ssize_t k = pread(r->fd, dst, len, (off_t)(r->file_offset + offset));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 ? fy_error_sys("cannot read %s", r->name)
                         : fy_error(FY_E_IO, "%s: file shorter than the region",
                                    r->name);
        dst += k;
        offset += (uint64_t)k;
        len -= (uint64_t)k;
    }
    return 0;
}

void fy_region_close(struct fy_region *r)
{
    if (!r)
        return;
    if (r->base)
        munmap(r->base, r->size);
    if (r->fd >= 0)
        close(r->fd);
    free(r);
}

uint64_t fy_region_size(const struct fy_region *r)
{
    return r->size;
}

uint64_t fy_region_pages(const struct fy_region *r)
{
    return r->size >> FY_PAGE_SHIFT;
}

void *fy_region_base(const struct fy_region *r)
{
    return r->base;
}

int fy_region_fd(const struct fy_region *r)
{
    return r->fd;
}

const char *fy_region_name(const struct fy_region *r)
{
    return r->name;
}

/* One process_vm_readv/writev over up to REMOTE_BATCH pages; a short
 * transfer means part of the range is not mapped in the target process. */
static int remote_io(struct fy_region *r, const uint64_t *pages, unsigned n,
                     struct iovec *local, bool write)
{
    struct iovec remote[REMOTE_BATCH];
    ssize_t want = (ssize_t)n * FY_PAGE_SIZE, got;

    for (unsigned i = 0; i < n; i++) {
        remote[i].iov_base = (void *)(uintptr_t)(r->addr + (pages[i] << FY_PAGE_SHIFT));
        remote[i].iov_len = FY_PAGE_SIZE;
    }
    got = write ? process_vm_writev(r->pid, local, n, remote, n, 0)
                : process_vm_readv(r->pid, local, n, remote, n, 0);
    if (got < 0)
        return fy_error_sys("cannot %s %u pages of %s", write ? "write" : "read",
                            n, r->name);
    if (got != want)
        return fy_error(FY_E_IO, "%s: only %zd of %zd bytes %s (unmapped range?)",
                        r->name, got, want, write ? "written" : "read");
    return 0;
}

static int check_pages(const struct fy_region *r, const uint64_t *pages,
                       unsigned n)
{
    uint64_t npages = r->size >> FY_PAGE_SHIFT;

    for (unsigned i = 0; i < n; i++)
        if (pages[i] >= npages)
            return fy_error(FY_E_RANGE, "page %llu outside %s (%llu pages)",
                            (unsigned long long)pages[i], r->name,
                            (unsigned long long)npages);
    return 0;
}

/* Pages of a mapped region: copied through the mapping when in memory,
 * read through the file when not, so holes (never-touched guest memory) are
 * not allocated just to be found zero.  Residency is asked once per batch
 * when its pages lie close together, as a round's pages do. */
#define RESIDENT_SPAN 4096

static int read_mapped(struct fy_region *r, const uint64_t *pages, unsigned n,
                       uint8_t *dst)
{
    uint8_t vec[RESIDENT_SPAN];
    uint64_t lo = pages[0], hi = pages[0];
    bool know = false;
    int rc;

    for (unsigned i = 1; i < n; i++) {
        lo = pages[i] < lo ? pages[i] : lo;
        hi = pages[i] > hi ? pages[i] : hi;
    }
    if (r->fd >= 0 && r->use_mincore && hi - lo < RESIDENT_SPAN) {
        if ((rc = fy_region_resident(r, lo, hi - lo + 1, vec)) < 0)
            return rc;
        know = true;
    }
    for (unsigned i = 0; i < n;) {
        uint8_t *out = dst + ((size_t)i << FY_PAGE_SHIFT);
        uint64_t off = pages[i] << FY_PAGE_SHIFT;
        unsigned run = 1;
        if (!know || vec[pages[i] - lo]) {
            memcpy(out, r->base + off, FY_PAGE_SIZE);
            i++;
            continue;
        }
        /* One read for a run of consecutive pages not in memory. */
        while (i + run < n && pages[i + run] == pages[i] + run &&
               !vec[pages[i + run] - lo])
            run++;
        if ((rc = fy_region_read_nofault(r, off, out, (uint64_t)run << FY_PAGE_SHIFT)) < 0)
            return rc;
        i += run;
    }
    return 0;
}

/* A view is asked once per run of consecutive pages: its callbacks may be a
 * request to another process each. */
static int view_read_pages(struct fy_region *r, const uint64_t *pages, unsigned n,
                           uint8_t *dst)
{
    for (unsigned i = 0; i < n;) {
        unsigned run = 1;
        int rc;

        while (i + run < n && pages[i + run] == pages[i] + run)
            run++;
        rc = r->view->read(r->view_ctx, pages[i] << FY_PAGE_SHIFT,
                           dst + ((size_t)i << FY_PAGE_SHIFT), (uint64_t)run << FY_PAGE_SHIFT);
        if (rc < 0)
            return rc;
        i += run;
    }
    return 0;
}

/* Consecutive pages whose data also lie one after another go in one call. */
static int view_write_pages(struct fy_region *r, const uint64_t *pages,
                            const void *const *data, unsigned n)
{
    for (unsigned i = 0; i < n;) {
        unsigned run = 1;
        int rc;

        while (i + run < n && pages[i + run] == pages[i] + run &&
               (const uint8_t *)data[i + run] ==
                   (const uint8_t *)data[i] + ((size_t)run << FY_PAGE_SHIFT))
            run++;
        rc = r->view->write(r->view_ctx, pages[i] << FY_PAGE_SHIFT, data[i],
                            (uint64_t)run << FY_PAGE_SHIFT);
        if (rc < 0)
            return rc;
        i += run;
    }
    return 0;
}

int fy_region_read_pages(struct fy_region *r, const uint64_t *pages,
                         unsigned n, void *buf)
{
    uint8_t *dst = buf;
    int rc;

    if ((rc = check_pages(r, pages, n)) < 0)
        return rc;
    if (r->base)
        return read_mapped(r, pages, n, dst);
    if (r->view)
        return view_read_pages(r, pages, n, dst);
    while (n) {
        unsigned k = n < REMOTE_BATCH ? n : REMOTE_BATCH;
        struct iovec local[REMOTE_BATCH];
        for (unsigned i = 0; i < k; i++) {
            local[i].iov_base = dst + ((size_t)i << FY_PAGE_SHIFT);
            local[i].iov_len = FY_PAGE_SIZE;
        }
        if ((rc = remote_io(r, pages, k, local, false)) < 0)
            return rc;
        pages += k;
        dst += (size_t)k << FY_PAGE_SHIFT;
        n -= k;
    }
    return 0;
}

int fy_region_write_pages(struct fy_region *r, const uint64_t *pages,
                          const void *const *data, unsigned n)
{
    int rc;

    if (!(r->access & FY_REGION_WRITE))
        return fy_error(FY_E_INVAL, "%s is read-only", r->name);
    if ((rc = check_pages(r, pages, n)) < 0)
        return rc;
    if (r->base) {
        for (unsigned i = 0; i < n; i++)
            memcpy(r->base + (pages[i] << FY_PAGE_SHIFT), data[i], FY_PAGE_SIZE);
        return 0;
    }
    if (r->view)
        return view_write_pages(r, pages, data, n);
    while (n) {
        unsigned k = n < REMOTE_BATCH ? n : REMOTE_BATCH;
        struct iovec local[REMOTE_BATCH];
        for (unsigned i = 0; i < k; i++) {
            local[i].iov_base = (void *)data[i];
            local[i].iov_len = FY_PAGE_SIZE;
        }
        if ((rc = remote_io(r, pages, k, local, true)) < 0)
            return rc;
        pages += k;
        data += k;
        n -= k;
    }
    return 0;
}

int fy_region_read(struct fy_region *r, uint64_t offset, void *buf,
                   uint64_t len)
{
    int rc;

    if ((rc = check_range(r, offset, len)) < 0)
        return rc;
    if (r->base) {
        memcpy(buf, r->base + offset, len);
        return 0;
    }
    if (r->view)
        return r->view->read(r->view_ctx, offset, buf, len);
    struct iovec l = {buf, len}, rem = {(void *)(uintptr_t)(r->addr + offset), len};
    ssize_t got = process_vm_readv(r->pid, &l, 1, &rem, 1, 0);
    if (got < 0)
        return fy_error_sys("cannot read %llu bytes of %s",
                            (unsigned long long)len, r->name);
    if ((uint64_t)got != len)
        return fy_error(FY_E_IO, "%s: short read", r->name);
    return 0;
}

int fy_region_write(struct fy_region *r, uint64_t offset, const void *buf,
                    uint64_t len)
{
    int rc;

    if (!(r->access & FY_REGION_WRITE))
        return fy_error(FY_E_INVAL, "%s is read-only", r->name);
    if ((rc = check_range(r, offset, len)) < 0)
        return rc;
    if (r->base) {
        memcpy(r->base + offset, buf, len);
        return 0;
    }
    if (r->view)
        return r->view->write(r->view_ctx, offset, buf, len);
    struct iovec l = {(void *)buf, len},
                 rem = {(void *)(uintptr_t)(r->addr + offset), len};
    ssize_t got = process_vm_writev(r->pid, &l, 1, &rem, 1, 0);
    if (got < 0)
        return fy_error_sys("cannot write %llu bytes of %s",
                            (unsigned long long)len, r->name);
    if ((uint64_t)got != len)
        return fy_error(FY_E_IO, "%s: short write", r->name);
    return 0;
}

int fy_region_zero(struct fy_region *r, uint64_t offset, uint64_t len)
{
    static const uint8_t zeros[FY_PAGE_SIZE];
    int rc;

    if (!(r->access & FY_REGION_WRITE))
        return fy_error(FY_E_INVAL, "%s is read-only", r->name);
    if (!page_aligned(offset) || !page_aligned(len))
        return fy_error(FY_E_INVAL, "zero range %llu+%llu not page-aligned",
                        (unsigned long long)offset, (unsigned long long)len);
    if ((rc = check_range(r, offset, len)) < 0)
        return rc;
    if (len == 0)
        return 0; /* fallocate would fail and turn punching off for good */
    if (r->base) {
        /* A hole reads as zero and holds no memory; fall back to memset on
         * file systems that cannot punch. */
        if (r->can_punch &&
            fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      (off_t)(r->file_offset + offset), (off_t)len) == 0)
            return 0;
        r->can_punch = false;
        memset(r->base + offset, 0, len);
        return 0;
    }
    if (r->view && r->view->zero)
        return r->view->zero(r->view_ctx, offset, len);
    for (uint64_t done = 0; done < len; done += FY_PAGE_SIZE)
        if ((rc = fy_region_write(r, offset + done, zeros, FY_PAGE_SIZE)) < 0)
            return rc;
    return 0;
}

int fy_region_copy_page(struct fy_region *r, uint64_t dst, uint64_t src)
{
    uint8_t buf[FY_PAGE_SIZE];
    const void *p = buf;
    int rc;

    if (r->base) {
        uint64_t pages[2] = {dst, src};
        if ((rc = check_pages(r, pages, 2)) < 0)
            return rc;
        if (!(r->access & FY_REGION_WRITE))
            return fy_error(FY_E_INVAL, "%s is read-only", r->name);
        if (dst != src)
            memcpy(r->base + (dst << FY_PAGE_SHIFT),
                   r->base + (src << FY_PAGE_SHIFT), FY_PAGE_SIZE);
        return 0;
    }
    if ((rc = fy_region_read_pages(r, &src, 1, buf)) < 0)
        return rc;
    return fy_region_write_pages(r, &dst, &p, 1);
}
