/* Zeroed memory for large tables read at random (page maps, the dedup
 * index), backed by transparent huge pages where the kernel allows: one TLB
 * entry per 2 MiB instead of per 4 KiB, which matters most inside a VM,
 * where every TLB miss walks two sets of page tables. */
#ifndef FERRY_HUGEMEM_H
#define FERRY_HUGEMEM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

#define FY_HUGE_ALIGN (2u << 20)

static inline size_t fy_huge_size(size_t size)
{
    return (size + FY_HUGE_ALIGN - 1) & ~(size_t)(FY_HUGE_ALIGN - 1);
}

/* 'size' zeroed bytes, or NULL. Free with fy_huge_free(p, size). */
static inline void *fy_huge_alloc(size_t size)
{
    size_t len = fy_huge_size(size);
    /* Huge pages map only 2 MiB-aligned ranges: over-map, keep the aligned
     * part, give back the rest. */
    size_t over = len + FY_HUGE_ALIGN;
    char *p = mmap(NULL, over, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *a;

    if (p == MAP_FAILED)
        return NULL;
    a = (char *)(((uintptr_t)p + FY_HUGE_ALIGN - 1) & ~(uintptr_t)(FY_HUGE_ALIGN - 1));
    if (a > p)
        munmap(p, (size_t)(a - p));
    if (p + over > a + len)
        munmap(a + len, (size_t)(p + over - (a + len)));
    madvise(a, len, MADV_HUGEPAGE); /* a hint: fine if refused */
    return a;
}

static inline void fy_huge_free(void *p, size_t size)
{
    if (p)
        munmap(p, fy_huge_size(size));
}

#endif /* FERRY_HUGEMEM_H */
