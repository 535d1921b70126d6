/* The local host (controlplane/host.h): a driver instance in this process,
 * this process's files, and both ends of the dataplane run here.  ferryd's
 * server side calls it for the host it runs on.
 *
 * Reading order: driver calls; files; the receiving end of a transfer; the
 * sending end; the table. */
#include "controlplane/host.h"
#include "controlplane/host_local.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "ferry/classifier.h"
#include "ferry/engine.h"
#include "ferry/error.h"
#include "ferry/region.h"
#include "ferry/transport.h"

#define ERR_MAX 1024
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_STREAMS 2

static struct fy_driver_handle *drv_of(struct fy_host *h)
{
    return h->impl;
}

#define DRV(h) (drv_of(h)->ops)
#define INST(h) (drv_of(h)->d)

/* An optional driver operation the driver does not have. */
static int missing(struct fy_host *h, const char *op)
{
    return fy_error(FY_E_UNSUPPORTED, "driver %s of host %s has no %s", DRV(h)->name,
                    h->name, op);
}

/* ---- driver calls --------------------------------------------------------- */

static int local_host_info(struct fy_host *h, struct fy_host_info *out)
{
    return DRV(h)->host_info(INST(h), out);
}

static int local_vm_info(struct fy_host *h, const char *vm, struct fy_vm_info *out)
{
    return DRV(h)->vm_info(INST(h), vm, out);
}

static int local_capabilities(struct fy_host *h, struct fy_host_caps *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->driver, sizeof(out->driver), "%s", DRV(h)->name);
    out->caps = DRV(h)->caps;
    return 0;
}

static int layout(struct fy_host *h, const char *vm, struct fy_memory_layout *out)
{
    if (!DRV(h)->memory_layout)
        return missing(h, "memory_layout");
    return DRV(h)->memory_layout(INST(h), vm, out);
}

static int local_memory_info(struct fy_host *h, const char *vm,
                             struct fy_host_memory *out)
{
    struct fy_memory_layout l;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = layout(h, vm, &l)) < 0)
        return rc;
    for (unsigned i = 0; i < l.n && i < FY_MAX_REGIONS; i++) {
        snprintf(out->regions[i].name, sizeof(out->regions[i].name), "%s",
                 l.regions[i].name);
        out->regions[i].size = l.regions[i].size;
        out->n = i + 1;
    }
    return 0;
}

static int local_vm_export(struct fy_host *h, const char *vm, char **out)
{
    return DRV(h)->vm_export(INST(h), vm, out);
}

static int local_vm_define(struct fy_host *h, const char *config, const char *name,
                           const char *const *paths, unsigned n)
{
    return DRV(h)->vm_define(INST(h), config, name, paths, n);
}

static int local_vm_undefine(struct fy_host *h, const char *vm)
{
    return DRV(h)->vm_undefine(INST(h), vm);
}

static int local_vm_start(struct fy_host *h, const char *vm)
{
    return DRV(h)->vm_start(INST(h), vm);
}

static int local_vm_stop(struct fy_host *h, const char *vm, bool force)
{
    return DRV(h)->vm_stop(INST(h), vm, force);
}

static int local_vm_pause(struct fy_host *h, const char *vm)
{
    return DRV(h)->vm_pause(INST(h), vm);
}

static int local_vm_resume(struct fy_host *h, const char *vm)
{
    return DRV(h)->vm_resume(INST(h), vm);
}

static int local_incoming_prepare(struct fy_host *h, const char *config, const char *vm)
{
    if (!DRV(h)->incoming_prepare)
        return missing(h, "incoming_prepare");
    return DRV(h)->incoming_prepare(INST(h), config, vm);
}

static int local_vm_suspend(struct fy_host *h, const char *vm, const char *image)
{
    if (!DRV(h)->vm_suspend)
        return missing(h, "vm_suspend");
    return DRV(h)->vm_suspend(INST(h), vm, image);
}

static int local_vm_restore(struct fy_host *h, const char *vm, const char *image)
{
    if (!DRV(h)->vm_restore)
        return missing(h, "vm_restore");
    return DRV(h)->vm_restore(INST(h), vm, image);
}

static int local_dirty_log_start(struct fy_host *h, const char *vm)
{
    if (!DRV(h)->dirty_log_start)
        return missing(h, "dirty_log_start");
    return DRV(h)->dirty_log_start(INST(h), vm);
}

static int local_dirty_log_stop(struct fy_host *h, const char *vm)
{
    if (!DRV(h)->dirty_log_stop)
        return missing(h, "dirty_log_stop");
    return DRV(h)->dirty_log_stop(INST(h), vm);
}

static int local_device_state_save(struct fy_host *h, const char *vm, void **out,
                                   size_t *len)
{
    if (!DRV(h)->device_state_save)
        return missing(h, "device_state_save");
    return DRV(h)->device_state_save(INST(h), vm, out, len);
}

static int local_device_state_load(struct fy_host *h, const char *vm,
                                   const void *state, size_t len)
{
    if (!DRV(h)->device_state_load)
        return missing(h, "device_state_load");
    return DRV(h)->device_state_load(INST(h), vm, state, len);
}

/* ---- files ---------------------------------------------------------------- */

static int local_file_create(struct fy_host *h, const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == EEXIST
                   ? fy_error(FY_E_EXISTS, "%s already exists on host %s: remove it or "
                              "choose another datastore", path, h->name)
                   : fy_error_sys("cannot create %s on host %s", path, h->name);
    close(fd);
    return 0;
}

static int local_file_remove(struct fy_host *h, const char *path)
{
    if (unlink(path) != 0 && errno != ENOENT)
        return fy_error_sys("cannot remove %s on host %s", path, h->name);
    return 0;
}

static int local_file_stat(struct fy_host *h, const char *path, uint64_t *size)
{
    struct stat st;

    if (stat(path, &st) != 0)
        return errno == ENOENT
                   ? fy_error(FY_E_NOTFOUND, "no file %s on host %s", path, h->name)
                   : fy_error_sys("cannot read %s on host %s", path, h->name);
    *size = (uint64_t)st.st_size;
    return 0;
}

/* file_digest.  Reading a base image of many GiB takes seconds, and the
 * same bases serve many VMs, so the digests of the last DIGEST_CACHE
 * files read stay in this process (the host's agent), keyed by what
 * changes when the file does: path, device, inode, size, modification and
 * change times.  A digest is kept only if the file did not change while
 * it was read. */
#define DIGEST_CACHE 32
#define DIGEST_CHUNK (1u << 20) /* bytes read at a time */

struct digest_key {
    char path[FY_PATH_MAX];
    uint64_t dev, ino, size;
    int64_t mtime_ns, ctime_ns;
};

static struct {
    pthread_mutex_t lock;
    struct {
        struct digest_key k;
        fy_hash128 digest;
        uint64_t used; /* stamp of the last use: the oldest goes first */
        bool valid;
    } e[DIGEST_CACHE];
    uint64_t clock;
    struct fy_host_digest_stats st;
} digests = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void digest_key_of(struct digest_key *k, const char *path, const struct stat *st)
{
    memset(k, 0, sizeof(*k));
    snprintf(k->path, sizeof(k->path), "%s", path);
    k->dev = (uint64_t)st->st_dev;
    k->ino = (uint64_t)st->st_ino;
    k->size = (uint64_t)st->st_size;
    k->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    k->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
}

static bool digest_key_eq(const struct digest_key *a, const struct digest_key *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns &&
           strcmp(a->path, b->path) == 0;
}

static bool digest_cached(const struct digest_key *k, fy_hash128 *out)
{
    bool hit = false;

    pthread_mutex_lock(&digests.lock);
    for (unsigned i = 0; i < DIGEST_CACHE && !hit; i++) {
        if (digests.e[i].valid && digest_key_eq(&digests.e[i].k, k)) {
            *out = digests.e[i].digest;
            digests.e[i].used = ++digests.clock;
            digests.st.cache_hits++;
            hit = true;
        }
    }
    pthread_mutex_unlock(&digests.lock);
    return hit;
}

static void digest_keep(const struct digest_key *k, fy_hash128 d)
{
    int same = -1, unused = -1, oldest = 0;
    unsigned pick;

    pthread_mutex_lock(&digests.lock);
    for (int i = 0; i < DIGEST_CACHE; i++) {
        if (!digests.e[i].valid) {
            if (unused < 0)
                unused = i;
        } else if (strcmp(digests.e[i].k.path, k->path) == 0) {
            same = i;
        } else if (digests.e[i].used < digests.e[oldest].used) {
            oldest = i;
        }
    }
    /* The entry of an older version of the file, else a free one, else
     * the least recently used. */
    pick = (unsigned)(same >= 0 ? same : unused >= 0 ? unused : oldest);
    digests.e[pick].k = *k;
    digests.e[pick].digest = d;
    digests.e[pick].used = ++digests.clock;
    digests.e[pick].valid = true;
    pthread_mutex_unlock(&digests.lock);
}

void fy_host_local_digest_stats(struct fy_host_digest_stats *out)
{
    pthread_mutex_lock(&digests.lock);
    *out = digests.st;
    pthread_mutex_unlock(&digests.lock);
}

/* fy_region_digest()'s definition over the 'size' bytes of 'fd': the
 * XXH3-128 of the page hashes (little-endian, low half first), streamed so
 * that memory does not grow with the file. */
static int digest_fd(struct fy_host *h, const char *path, int fd, uint64_t size,
                     fy_hash128 *out)
{
    enum { PAGES = DIGEST_CHUNK / FY_PAGE_SIZE };
    XXH3_state_t *state = XXH3_createState();
    uint8_t *buf = malloc(DIGEST_CHUNK);
    fy_hash128 hashes[PAGES];
    uint64_t off = 0;
    int rc = 0;

    if (!state || !buf || XXH3_128bits_reset(state) != XXH_OK) {
        rc = fy_error(FY_E_NOMEM, "host %s: no memory to compute the digest of %s", h->name,
                      path);
        goto out;
    }
    while (off < size) {
        size_t want = size - off < DIGEST_CHUNK ? (size_t)(size - off) : DIGEST_CHUNK;
        size_t got = 0;
        unsigned n;

        while (got < want) {
            ssize_t r = pread(fd, buf + got, want - got, (off_t)(off + got));
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                rc = fy_error_sys("host %s: cannot read %s at byte %llu for its digest; "
                                  "check the file and its disk", h->name, path,
                                  (unsigned long long)(off + got));
                goto out;
            }
            if (r == 0) {
                rc = fy_error(FY_E_IO, "host %s: %s ended at byte %llu while its digest "
                              "was computed, %llu bytes expected: something is writing "
                              "it; stop that and migrate again", h->name, path,
                              (unsigned long long)(off + got), (unsigned long long)size);
                goto out;
            }
            got += (size_t)r;
        }
        /* The last page is padded with zeros, as a region's would be. */
        n = (unsigned)((got + FY_PAGE_SIZE - 1) / FY_PAGE_SIZE);
        memset(buf + got, 0, (size_t)n * FY_PAGE_SIZE - got);
        for (unsigned i = 0; i < n; i++) {
            hashes[i] = fy_page_hash(buf + (size_t)i * FY_PAGE_SIZE);
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
            hashes[i].lo = __builtin_bswap64(hashes[i].lo);
            hashes[i].hi = __builtin_bswap64(hashes[i].hi);
#endif
        }
        if (XXH3_128bits_update(state, hashes, n * sizeof(hashes[0])) != XXH_OK) {
            rc = fy_error(FY_E_INVAL, "host %s: digest of %s failed", h->name, path);
            goto out;
        }
        off += got;
        pthread_mutex_lock(&digests.lock);
        digests.st.bytes_read += got;
        pthread_mutex_unlock(&digests.lock);
    }
    XXH128_hash_t x = XXH3_128bits_digest(state);
    *out = (fy_hash128){x.low64, x.high64};
out:
    free(buf);
    XXH3_freeState(state);
    return rc;
}

static int local_file_digest(struct fy_host *h, const char *path, uint64_t *size,
                             fy_hash128 *digest)
{
    struct digest_key k, after;
    struct stat st;
    int fd, rc;

    if (stat(path, &st) != 0)
        return errno == ENOENT
                   ? fy_error(FY_E_NOTFOUND, "no file %s on host %s", path, h->name)
                   : fy_error_sys("cannot read %s on host %s", path, h->name);
    if (!S_ISREG(st.st_mode))
        return fy_error(FY_E_INVAL, "%s on host %s is not a regular file: no digest of it",
                        path, h->name);
    digest_key_of(&k, path, &st);
    *size = k.size;
    if (digest_cached(&k, digest))
        return 0;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return fy_error_sys("cannot open %s on host %s to compute its digest; check its "
                            "permissions", path, h->name);
    if (fstat(fd, &st) != 0) {
        rc = fy_error_sys("cannot read %s on host %s", path, h->name);
        goto out;
    }
    digest_key_of(&k, path, &st);
    *size = k.size;
    /* Read once, front to back: tell the kernel to read ahead. */
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    if ((rc = digest_fd(h, path, fd, k.size, digest)) < 0)
        goto out;
    if (fstat(fd, &st) == 0) {
        digest_key_of(&after, path, &st);
        if (digest_key_eq(&k, &after))
            digest_keep(&k, *digest);
    }
out:
    close(fd);
    return rc;
}

static int local_disk_create(struct fy_host *h, const char *config, unsigned disk,
                             const char *path, uint64_t virtual_size, const char *backing)
{
    if (!DRV(h)->disk_create)
        return missing(h, "disk_create");
    return DRV(h)->disk_create(INST(h), config, disk, path, virtual_size,
                               backing ? backing : "");
}

static int local_disk_rebase(struct fy_host *h, const char *path, const char *backing)
{
    if (!DRV(h)->disk_rebase)
        return fy_error(FY_E_UNSUPPORTED, "driver %s of host %s cannot point disk image %s "
                        "at a base image under another name (%s): it has no disk_rebase; "
                        "remove or rename the different file at the target that has the "
                        "base's name", DRV(h)->name, h->name, path, backing);
    return DRV(h)->disk_rebase(INST(h), path, backing);
}

/* ---- hot disks as regions ---------------------------------------------------- */

/* A VM's disk as the engine sees it: a view region over the driver's
 * disk_read/write/zero.  The region is whole pages; bytes past the disk's
 * virtual size read as zero and must be written as zero. */
struct disk_view {
    const struct fy_driver_ops *ops;
    struct fy_disk_io *io; /* NULL: closed */
    uint64_t size;         /* virtual size */
};

static uint64_t dv_clip(const struct disk_view *v, uint64_t off, uint64_t len)
{
    return off >= v->size ? 0 : (len < v->size - off ? len : v->size - off);
}

static int dv_read(void *ctx, uint64_t off, void *buf, uint64_t len)
{
    struct disk_view *v = ctx;
    uint64_t n = dv_clip(v, off, len);
    int rc;

    if (n && (rc = v->ops->disk_read(v->io, off, buf, n)) < 0)
        return rc;
    memset((char *)buf + n, 0, len - n);
    return 0;
}

static int dv_write(void *ctx, uint64_t off, const void *buf, uint64_t len)
{
    struct disk_view *v = ctx;
    uint64_t n = dv_clip(v, off, len);

    for (uint64_t i = n; i < len; i++)
        if (((const char *)buf)[i])
            return fy_error(FY_E_RANGE, "data past the end of a disk of %llu bytes",
                            (unsigned long long)v->size);
    return n ? v->ops->disk_write(v->io, off, buf, n) : 0;
}

static int dv_zero(void *ctx, uint64_t off, uint64_t len)
{
    struct disk_view *v = ctx;
    uint64_t n = dv_clip(v, off, len);

    return n ? v->ops->disk_zero(v->io, off, n) : 0;
}

static const struct fy_region_view_ops disk_view_ops = {dv_read, dv_write, dv_zero};

/* Opens disk 'disk' of VM 'vm' (mode) as region '*r' over 'v'. */
static int disk_region(struct fy_host *h, const char *vm, unsigned disk, enum fy_disk_mode mode,
                       struct disk_view *v, struct fy_region **r)
{
    char name[FY_NAME_MAX + 16];
    uint64_t len;
    int rc;

    memset(v, 0, sizeof(*v));
    *r = NULL;
    if (!(DRV(h)->caps & FY_DRV_STORAGE))
        return missing(h, "disk_open (FY_DRV_STORAGE)");
    v->ops = DRV(h);
    if ((rc = DRV(h)->disk_open(INST(h), vm, disk, mode, &v->io, &v->size)) < 0)
        return rc;
    len = (v->size + FY_PAGE_SIZE - 1) & ~(uint64_t)(FY_PAGE_SIZE - 1);
    snprintf(name, sizeof(name), "%s/disk%u", vm, disk);
    rc = len ? fy_region_open_view(&disk_view_ops, v, len,
                                   mode == FY_DISK_TARGET ? FY_REGION_RDWR : FY_REGION_READ,
                                   name, r)
             : fy_error(FY_E_INVAL, "disk %u of VM %s on host %s is empty", disk, vm, h->name);
    if (rc < 0) {
        char keep[ERR_MAX];

        snprintf(keep, sizeof(keep), "%s", fy_error_detail());
        v->ops->disk_close(v->io);
        v->io = NULL;
        rc = fy_error(-rc, "%s", keep);
    }
    return rc;
}

/* Closes what disk_region opened; the driver's close result (the target
 * flushes what it wrote). */
static int disk_region_close(struct disk_view *v, struct fy_region **r)
{
    int rc = 0;

    fy_region_close(*r);
    *r = NULL;
    if (v->io)
        rc = v->ops->disk_close(v->io);
    v->io = NULL;
    return rc;
}

/* ---- gang dedup ------------------------------------------------------------ */

/* The shared dedup indexes of gangs (host.h), process-wide because every
 * transfer of a host runs in this process: one per (side, host, gang name).
 *
 * A gang remembers what its ended transfers delivered, so that a VM whose
 * migration starts after another's ended still finds that content at the
 * target: the engine hands over each region's page map (fy_source_params
 * .keep), which stays in the index.  At the source that is what the
 * target holds; at the target, the bytes of a region the gang keeps open,
 * which a receive resolving a reference reads and checks, so a page the
 * resumed VM has rewritten since only costs a MISS and a resend.  Kept
 * regions also cover receives that read another one's region while it
 * ends.  The gang lives while transfers use it and GANG_LINGER_S seconds
 * after the last one (the waves of one evacuation); then everything it
 * kept is freed. */
#define GANG_MIN_PAGES (1ull << 19) /* an index for at least 2 GiB of pages */
#define GANG_MAX_PAGES (1ull << 25) /* at most 512 MiB of slots */
#define GANG_LINGER_S 30

/* A transfer's page map and region, kept in the gang. */
struct kept {
    struct fy_kept k;        /* empty: not in the index */
    struct fy_region *r;     /* closed with the gang; NULL at the source */
};

struct gang {
    struct gang *next;
    char key[4 * FY_NAME_MAX];
    struct fy_dedup *dedup;
    unsigned users;          /* transfers using it */
    unsigned idle_gen;       /* bumped whenever users drops to 0 */
    struct kept *kept;
    size_t nkept, cap;       /* cap: a slot for every user */
};

static pthread_mutex_t gangs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct gang *gangs;

static void gang_free(struct gang *g)
{
    for (size_t i = 0; i < g->nkept; i++)
        fy_kept_release(g->dedup, &g->kept[i].k);
    fy_dedup_destroy(g->dedup);
    for (size_t i = 0; i < g->nkept; i++)
        fy_region_close(g->kept[i].r);
    free(g->kept);
    free(g);
}

static void gang_unlink(struct gang *g)
{
    for (struct gang **p = &gangs; *p; p = &(*p)->next)
        if (*p == g) {
            *p = g->next;
            return;
        }
}

/* The gang of host 'h' on side 'side' ("send", "recv") for a region of
 * 'npages', created if there is none, with room to keep one more
 * transfer; NULL with the error recorded. */
static struct gang *gang_get(struct fy_host *h, const char *side, uint64_t npages)
{
    char key[sizeof(((struct gang *)0)->key)];
    struct gang *g;
    bool fresh = false;

    snprintf(key, sizeof(key), "%s/%s/%s", side, h->name, h->gang);
    pthread_mutex_lock(&gangs_lock);
    for (g = gangs; g && strcmp(g->key, key) != 0; g = g->next)
        ;
    if (!g && (g = calloc(1, sizeof(*g)))) {
        /* Sized for many VMs like this one: an index cannot grow, and a
         * full one only drops inserts (less dedup, never a wrong answer). */
        uint64_t want = 16 * npages;
        want = want < GANG_MIN_PAGES ? GANG_MIN_PAGES : want;
        want = want > GANG_MAX_PAGES ? GANG_MAX_PAGES : want;
        snprintf(g->key, sizeof(g->key), "%s", key);
        fresh = true;
        if (!(g->dedup = fy_dedup_create(want))) {
            free(g);
            g = NULL;
        }
    }
    if (g && g->nkept + g->users >= g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 8;
        struct kept *n = realloc(g->kept, cap * sizeof(*n));
        if (n) {
            g->kept = n;
            g->cap = cap;
        } else {
            if (fresh)
                gang_free(g);
            g = NULL;
        }
    }
    if (g && fresh) {
        g->next = gangs;
        gangs = g;
    }
    if (g)
        g->users++;
    pthread_mutex_unlock(&gangs_lock);
    if (!g)
        fy_error(FY_E_NOMEM, "host %s: no memory for the dedup index of gang %s",
                 h->name, h->gang);
    return g;
}

struct reaper {
    struct gang *g;
    unsigned gen;
};

/* Frees the gang once it has stayed idle for GANG_LINGER_S. */
static void *reaper_main(void *arg)
{
    struct reaper *rp = arg;
    struct gang *g = rp->g;
    bool gone = false;

    sleep(GANG_LINGER_S);
    pthread_mutex_lock(&gangs_lock);
    if (g->users == 0 && g->idle_gen == rp->gen) {
        gang_unlink(g);
        gone = true;
    }
    pthread_mutex_unlock(&gangs_lock);
    if (gone)
        gang_free(g);
    free(rp);
    return NULL;
}

/* Ends one transfer's use of 'g', keeping 'k' (its page map and region;
 * may be NULL). */
static void gang_put(struct gang *g, const struct kept *k)
{
    struct reaper *rp = NULL;
    pthread_t tid;
    pthread_attr_t attr;
    bool now = false;

    pthread_mutex_lock(&gangs_lock);
    if (k && (k->k.map || k->r))
        g->kept[g->nkept++] = *k; /* gang_get made room */
    if (--g->users == 0) {
        g->idle_gen++;
        if ((rp = malloc(sizeof(*rp)))) {
            *rp = (struct reaper){g, g->idle_gen};
            pthread_attr_init(&attr);
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            if (pthread_create(&tid, &attr, reaper_main, rp) != 0) {
                free(rp);
                rp = NULL;
            }
            pthread_attr_destroy(&attr);
        }
        if (!rp) {
            /* No thread to wait with: end it now. */
            gang_unlink(g);
            now = true;
        }
    }
    pthread_mutex_unlock(&gangs_lock);
    if (now)
        gang_free(g);
}

/* For host_stream.c (host_local.h). */
struct gang *fy_host_gang_get(struct fy_host *h, const char *side, uint64_t npages)
{
    return gang_get(h, side, npages);
}

struct fy_dedup *fy_host_gang_dedup(const struct gang *g)
{
    return g->dedup;
}

void fy_host_gang_put(struct gang *g, const struct fy_kept *k, struct fy_region *r)
{
    struct kept kk = {.k = k ? *k : (struct fy_kept){.space = -1}, .r = r};
    gang_put(g, &kk);
}

/* ---- the receiving end ---------------------------------------------------- */

/* A listener and a thread that accepts one session per region, in order,
 * and fills it: a memory region; or a file's whole pages and then its last
 * partial page, which goes as a page of its own (a region is whole pages)
 * and is written to the file when it has arrived. */
struct fy_host_recv {
    struct fy_listener *l;
    struct fy_region *regions[2]; /* NULL: none */
    bool file;                    /* fresh regions; finish the file */
    char path[FY_PATH_MAX];
    uint64_t size;
    uint8_t session_id[16];
    int idle_ms;
    struct gang *gang;            /* memory of a gang (host.h); NULL: none */
    struct fy_kept kept;          /* its page map, handed over by the engine */
    struct disk_view disk;        /* a hot disk: regions[0] views it */
    struct fy_stream_recv *stream; /* stream mode: all of it (host_stream.c) */
    struct fy_devstate_recv *devstate; /* a device state (host_devstate.c) */
    pthread_t tid;
    bool running;
    int rc;
    char detail[ERR_MAX];
    struct fy_migration_stats st;
};

/* A file's last partial page is in its tail region: write it, then give
 * the file its size. */
static int finish_file(struct fy_host_recv *j)
{
    uint64_t whole = j->size & ~(uint64_t)(FY_PAGE_SIZE - 1);
    size_t n = (size_t)(j->size - whole);
    int rc = 0, fd;

    if (n) {
        if ((fd = open(j->path, O_WRONLY | O_CLOEXEC)) < 0)
            return fy_error_sys("cannot open %s", j->path);
        if (pwrite(fd, fy_region_base(j->regions[1]), n, (off_t)whole) != (ssize_t)n)
            rc = fy_error_sys("cannot write the end of %s", j->path);
        close(fd);
        if (rc < 0)
            return rc;
    }
    if (truncate(j->path, (off_t)j->size) != 0)
        return fy_error_sys("cannot size %s", j->path);
    return 0;
}

static void *recv_main(void *arg)
{
    struct fy_host_recv *j = arg;
    bool first = true;

    j->rc = 0;
    for (unsigned i = 0; i < 2 && j->rc == 0; i++) {
        struct fy_accept_params ap = {.receiver_checks_pages = true,
                                      .session_id = j->session_id};
        struct fy_target_params tp = {.fresh = j->file, .idle_timeout_ms = j->idle_ms,
                                      .dedup = j->gang ? j->gang->dedup : NULL,
                                      .keep = j->gang ? &j->kept : NULL};
        struct fy_migration_stats st = {0};
        struct fy_session *s = NULL;

        if (!j->regions[i])
            continue;
        ap.region_size = fy_region_size(j->regions[i]);
        /* Pages are read straight into a mapped region (NULL otherwise). */
        ap.placement = fy_region_base(j->regions[i]);
        j->rc = j->l->ops->accept(j->l, &ap, &s);
        if (j->rc == 0)
            j->rc = fy_migrate_target(j->regions[i], s, &tp, &st);
        fy_session_close(s);
        j->st.wire_bytes += st.wire_bytes;
        j->st.verified = first ? st.verified : j->st.verified && st.verified;
        first = false;
    }
    if (j->rc == 0 && j->file)
        j->rc = finish_file(j);
    if (j->rc < 0)
        snprintf(j->detail, sizeof(j->detail), "%s", fy_error_detail());
    return NULL;
}

/* Opens the regions 'what' is received into. */
static int recv_regions(struct fy_host *h, const struct fy_host_data *w,
                        struct fy_host_recv *j)
{
    if (w->kind == FY_HOST_DATA_MEMORY) {
        struct fy_memory_layout ml;
        const struct fy_memory_region *r;
        int rc;

        if ((rc = layout(h, w->vm, &ml)) < 0)
            return rc;
        if (w->region >= ml.n)
            return fy_error(FY_E_PROTO, "VM %s on host %s has no memory region %u",
                            w->vm, h->name, w->region);
        r = &ml.regions[w->region];
        if (r->size != w->size)
            return fy_error(FY_E_PROTO, "memory region %s of VM %s has %llu bytes on "
                            "host %s, %llu are sent", r->name, w->vm,
                            (unsigned long long)r->size, h->name,
                            (unsigned long long)w->size);
        return r->fd >= 0 ? fy_region_open_fd(r->fd, r->offset, r->size, FY_REGION_RDWR,
                                              &j->regions[0])
                          : fy_region_open_pid(r->pid, r->addr, r->size, FY_REGION_RDWR,
                                               &j->regions[0]);
    }
    if (w->kind == FY_HOST_DATA_DISK) {
        int rc = disk_region(h, w->vm, w->region, FY_DISK_TARGET, &j->disk, &j->regions[0]);

        if (rc == 0 && j->disk.size != w->size)
            rc = fy_error(FY_E_PROTO, "disk %u of VM %s has %llu bytes on host %s, the "
                          "source's %llu", w->region, w->vm,
                          (unsigned long long)j->disk.size, h->name,
                          (unsigned long long)w->size);
        return rc;
    }
    if (w->kind == FY_HOST_DATA_FILE) {
        uint64_t whole = w->size & ~(uint64_t)(FY_PAGE_SIZE - 1);
        int rc;

        j->file = true;
        j->size = w->size;
        snprintf(j->path, sizeof(j->path), "%s", w->path);
        if (whole && (rc = fy_region_open_file(w->path, 0, whole, FY_REGION_WRITE,
                                               &j->regions[0])) < 0)
            return rc;
        if (w->size > whole &&
            (rc = fy_region_create_memfd("ferry-file-tail", FY_PAGE_SIZE,
                                         &j->regions[1])) < 0)
            return rc;
        return 0;
    }
    return fy_error(FY_E_INVAL, "host %s: unknown kind of transfer %d", h->name,
                    (int)w->kind);
}

/* 'delivered': the job received its memory, verified (a gang keeps it). */
/* The transport for data this host receives at, or sends from, address
 * 'local': the configured one (struct fy_host.transport) on the migration
 * network, which is where its port is; tcp on the others.  Both ends pick
 * alike: the workflow gives them the same network. */
static const struct fy_transport_ops *data_transport(const struct fy_host *h,
                                                    const char *local,
                                                    const char **params)
{
    bool mine = h->transport[0] && h->net[FY_NET_MIGRATION][0] && local &&
                !strcmp(local, h->net[FY_NET_MIGRATION]);

    *params = mine ? h->transport_params : NULL;
    return fy_transport_find(mine ? h->transport : "tcp");
}

const struct fy_transport_ops *fy_host_local_transport(const struct fy_host *h,
                                                       const char *local,
                                                       const char **params)
{
    return data_transport(h, local, params);
}

static void recv_free(struct fy_host_recv *j)
{
    if (j->l)
        j->l->ops->listener_close(j->l);
    if (j->gang) {
        /* The gang keeps the region: its page map may be in the index, and
         * another receive may be reading it. */
        struct kept k = {.k = j->kept, .r = j->regions[0]};
        gang_put(j->gang, &k);
        j->regions[0] = NULL;
    }
    if (j->disk.io)
        disk_region_close(&j->disk, &j->regions[0]);
    fy_region_close(j->regions[0]);
    fy_region_close(j->regions[1]);
    free(j);
}

static int local_recv_start(struct fy_host *h, const struct fy_host_data *what,
                            const char *addr, int timeout_ms, struct fy_host_recv **job,
                            struct fy_host_endpoint *ep)
{
    struct fy_transport_opts o = {.timeout_ms = timeout_ms ? timeout_ms
                                                           : DEFAULT_TIMEOUT_MS};
    const struct fy_transport_ops *t = data_transport(h, addr, &o.params);
    struct fy_host_recv *j;
    int rc;

    if (!job || !ep || !what || !addr)
        return fy_error(FY_E_INVAL, "recv_start: missing argument");
    *job = NULL;
    memset(ep, 0, sizeof(*ep));
    if (!(j = calloc(1, sizeof(*j))))
        return fy_error(FY_E_NOMEM, "no memory for a receiving job on host %s", h->name);
    if (what->kind == FY_HOST_DATA_STREAM) {
        /* Stream mode is a job of its own (host_stream.c). */
        if ((rc = fy_host_stream_recv_start(h, what, addr, timeout_ms, &j->stream, ep)) < 0)
            goto fail;
        *job = j;
        return 0;
    }
    if (what->kind == FY_HOST_DATA_DEVICE_STATE) {
        /* So is a device state (host_devstate.c). */
        if ((rc = fy_host_devstate_recv_start(h, what, addr, timeout_ms, &j->devstate,
                                              ep)) < 0)
            goto fail;
        *job = j;
        return 0;
    }
    j->idle_ms = o.timeout_ms;
    if ((rc = recv_regions(h, what, j)) < 0)
        goto fail;
    if (what->kind == FY_HOST_DATA_MEMORY && h->gang[0] &&
        !(j->gang = gang_get(h, "recv", what->size / FY_PAGE_SIZE))) {
        rc = -FY_E_NOMEM;
        goto fail;
    }
    if ((rc = fy_host_local_listen_job(h, t, addr, &o, "migration data", j->session_id,
                                       &j->l, &j->tid, recv_main, j, ep)) < 0)
        goto fail;
    j->running = true;
    *job = j;
    return 0;
fail:
    recv_free(j);
    return rc;
}

static int local_recv_join(struct fy_host *h, struct fy_host_recv *j,
                           struct fy_migration_stats *st)
{
    int rc = 0;

    if (!j)
        return fy_error(FY_E_INVAL, "recv_join: no job");
    if (j->stream) {
        rc = fy_host_stream_recv_join(h, j->stream, st);
        j->stream = NULL;
        recv_free(j);
        return rc;
    }
    if (j->devstate) {
        rc = fy_host_devstate_recv_join(h, j->devstate, st);
        j->devstate = NULL;
        recv_free(j);
        return rc;
    }
    if (j->running)
        pthread_join(j->tid, NULL);
    if (st)
        *st = j->st;
    if (j->rc < 0)
        rc = fy_error(-j->rc, "host %s receiving: %s", h->name, j->detail);
    else if (j->disk.io && (rc = disk_region_close(&j->disk, &j->regions[0])) < 0)
        rc = fy_error(-rc, "host %s receiving: %s", h->name, fy_error_detail());
    recv_free(j);
    return rc;
}

/* A connection that closes before its handshake makes accept() give up, so
 * a job still waiting for its sender ends now rather than at its timeout. */
static void poke(const char *a)
{
    char host[80], port[16];
    const char *colon = strrchr(a, ':');
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    size_t hl = colon ? (size_t)(colon - a) : 0;

    if (!colon || hl >= sizeof(host) || (a[0] == '[' && hl < 2))
        return;
    memcpy(host, a[0] == '[' ? a + 1 : a, a[0] == '[' ? hl - 2 : hl);
    host[a[0] == '[' ? hl - 2 : hl] = '\0';
    snprintf(port, sizeof(port), "%s", colon + 1);
    if (getaddrinfo(host, port, &hints, &ai) != 0)
        return;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0)
            (void)0; /* accept() then times out instead */
        close(fd);
    }
    freeaddrinfo(ai);
}

static void local_recv_abort(struct fy_host *h, struct fy_host_recv *j)
{
    if (!j)
        return;
    if (j->stream) {
        fy_host_stream_recv_abort(h, j->stream);
        j->stream = NULL;
    }
    if (j->devstate) {
        fy_host_devstate_recv_abort(h, j->devstate);
        j->devstate = NULL;
    }
    if (j->running) {
        if (j->l->ops->listener_shutdown)
            j->l->ops->listener_shutdown(j->l);
        else
            poke(j->l->addr);
        pthread_join(j->tid, NULL);
    }
    recv_free(j);
}

int fy_host_local_listen_job(const struct fy_host *h, const struct fy_transport_ops *t,
                       const char *addr, const struct fy_transport_opts *o,
                       const char *what, uint8_t session_id[16],
                       struct fy_listener **l, pthread_t *tid,
                       void *(*fn)(void *), void *arg, struct fy_host_endpoint *ep)
{
    char listen_at[FY_NAME_MAX + 8];
    int rc;

    if (getrandom(session_id, 16, 0) != 16)
        return fy_error_sys("getrandom for a session id on host %s", h->name);
    snprintf(listen_at, sizeof(listen_at), strchr(addr, ':') ? "[%s]:0" : "%s:0", addr);
    if (!t || (rc = t->listen(listen_at, o, l)) < 0)
        return fy_error(t ? -rc : FY_E_NOTFOUND, "host %s cannot listen for %s on %s: %s",
                        h->name, what, listen_at,
                        t ? fy_error_detail() : "its data transport is not built");
    if (pthread_create(tid, NULL, fn, arg) != 0)
        return fy_error(FY_E_SYS, "cannot start the receiving thread on host %s", h->name);
    snprintf(ep->addr, sizeof(ep->addr), "%s", (*l)->addr);
    memcpy(ep->session_id, session_id, sizeof(ep->session_id));
    return 0;
}

void fy_host_local_listener_stop(struct fy_listener *l)
{
    if (l->ops->listener_shutdown)
        l->ops->listener_shutdown(l);
    else
        poke(l->addr);
}

/* ---- the sending end ------------------------------------------------------ */

/* The dirty log and the pause of the VM being sent, for the engine. */
struct send_ctx {
    struct fy_host *h;
    const char *vm;
    unsigned region;
    bool paused;
    const struct fy_host_send_params *p; /* its on_round */
    struct pause_member *gang;           /* hot disks share the pause */
};

static int send_sync(void *ctx, uint64_t *bitmap, uint64_t npages)
{
    struct send_ctx *c = ctx;
    return DRV(c->h)->dirty_log_sync(INST(c->h), c->vm, c->region, bitmap, npages);
}

static int send_pause(void *ctx)
{
    struct send_ctx *c = ctx;
    int rc = DRV(c->h)->vm_pause(INST(c->h), c->vm);
    if (rc == 0)
        c->paused = true;
    return rc;
}

static void send_round(void *ctx, const struct fy_round_stats *st)
{
    struct send_ctx *c = ctx;
    c->p->on_round(st, c->p->round_ctx);
}

/* Sends region 'r' in one session to 'to'; adds its statistics to 'sum'. */
static int send_region(const struct fy_host *h, struct fy_region *r,
                       const struct fy_host_endpoint *to,
                       const struct fy_host_send_params *p,
                       const struct fy_source_params *sp, struct fy_migration_stats *sum,
                       bool first)
{
    char bind_at[FY_NAME_MAX + 8];
    struct fy_transport_opts o = {
        .streams = p->streams ? p->streams : DEFAULT_STREAMS,
        .timeout_ms = p->timeout_ms ? p->timeout_ms : DEFAULT_TIMEOUT_MS,
    };
    const struct fy_transport_ops *t = data_transport(h, p->bind, &o.params);
    struct fy_session_info info = {.region_size = fy_region_size(r),
                                   .page_size = FY_PAGE_SIZE, .caps = FY_CAPS_V1};
    struct fy_migration_stats st = {0};
    struct fy_session *s = NULL;
    int rc;

    memcpy(info.session_id, to->session_id, sizeof(info.session_id));
    if (p->bind[0]) {
        snprintf(bind_at, sizeof(bind_at), strchr(p->bind, ':') ? "[%s]:0" : "%s:0",
                 p->bind);
        o.bind = bind_at;
    }
    if (!t)
        return -FY_E_NOTFOUND;
    if ((rc = t->connect(to->addr, &o, &info, &s)) < 0)
        return rc;
    rc = fy_migrate_source(r, s, sp, &st);
    fy_session_close(s);
    sum->rounds += st.rounds;
    sum->region_bytes += st.region_bytes;
    sum->pages_sent += st.pages_sent;
    sum->pages_zero += st.pages_zero;
    sum->pages_dup += st.pages_dup;
    sum->pages_dup_shared += st.pages_dup_shared;
    sum->pages_resent += st.pages_resent;
    sum->wire_bytes += st.wire_bytes;
    sum->seconds += st.seconds;
    sum->downtime += st.downtime;
    sum->verify_seconds += st.verify_seconds;
    sum->converged = first ? st.converged : sum->converged && st.converged;
    sum->verified = first ? st.verified : sum->verified && st.verified;
    sum->digest = st.digest;
    return rc;
}

/* ---- hot disks beside memory ----------------------------------------------- */

/* The memory send and the disk sends of one VM share its pause: each
 * engine asks for it when its own rounds have converged, and the VM
 * pauses once all of them have; until then each hears "not yet" and runs
 * another round (after a short wait for the others). */
#define PAUSE_WAIT_MS 200

struct pause_gang {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned n, ready;      /* engines, and those that converged */
    bool paused, failed;    /* failed: one ended before the pause */
    struct timespec t_pause; /* CLOCK_MONOTONIC, when it paused */
    struct send_ctx *c;     /* pauses the VM (send_pause) */
};

struct pause_member {
    struct pause_gang *g;
    bool ready;
};

static int gang_pause(struct pause_member *me)
{
    struct pause_gang *g = me->g;
    struct timespec ts;
    int rc = 1;

    pthread_mutex_lock(&g->lock);
    if (!me->ready) {
        me->ready = true;
        g->ready++;
        pthread_cond_broadcast(&g->cond);
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += PAUSE_WAIT_MS * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    while (!g->paused && !g->failed && g->ready < g->n)
        if (pthread_cond_timedwait(&g->cond, &g->lock, &ts) == ETIMEDOUT)
            break;
    if (g->failed) {
        rc = fy_error(FY_E_CANCELLED, "VM %s: another part of its migration failed before "
                      "the pause", g->c->vm);
    } else if (g->paused) {
        rc = 0;
    } else if (g->ready == g->n) {
        if ((rc = send_pause(g->c)) == 0) {
            g->paused = true;
            clock_gettime(CLOCK_MONOTONIC, &g->t_pause);
        } else {
            g->failed = true;
        }
        pthread_cond_broadcast(&g->cond);
    }
    pthread_mutex_unlock(&g->lock);
    return rc;
}

/* An engine of the gang ended with an error: the others stop at their
 * next pause (if the VM is not paused yet). */
static void gang_fail(struct pause_gang *g)
{
    pthread_mutex_lock(&g->lock);
    if (!g->paused)
        g->failed = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

static int memory_gang_pause(void *ctx)
{
    struct send_ctx *c = ctx;
    return gang_pause(c->gang);
}

/* One disk's send, on a thread of its own. */
struct hot_disk {
    struct fy_host *h;
    const struct fy_host_send_params *p;
    struct fy_host_endpoint to;
    struct disk_view v;
    struct fy_region *r;
    uint64_t *first;          /* round 1: the blocks the active image holds */
    struct pause_member me;
    volatile int *cancel;
    struct fy_migration_stats st;
    int rc;
    char detail[ERR_MAX];
    pthread_t tid;
    bool started;
};

static int disk_sync(void *ctx, uint64_t *bitmap, uint64_t npages)
{
    struct hot_disk *k = ctx;
    return k->v.ops->disk_dirty(k->v.io, bitmap, npages);
}

static int disk_pause(void *ctx)
{
    struct hot_disk *k = ctx;
    return gang_pause(&k->me);
}

static void *disk_main(void *arg)
{
    struct hot_disk *k = arg;
    struct fy_source_params sp = {
        .downtime_ms = k->p->downtime_ms,
        .max_rounds = k->p->max_rounds,
        .dirty_sync = disk_sync,
        .pause = disk_pause,
        .ctx = k,
        .cancel = k->cancel,
        .first_round = k->first,
    };

    pthread_setname_np(pthread_self(), "fy-disk");
    k->rc = send_region(k->h, k->r, &k->to, k->p, &sp, &k->st, true);
    if (k->rc < 0) {
        snprintf(k->detail, sizeof(k->detail), "%s", fy_error_detail());
        gang_fail(k->me.g);
    }
    return NULL;
}

/* The hot disks of a memory send: opened, their first round's blocks
 * found, their sends started. */
struct hot_disks {
    struct pause_gang g;
    struct pause_member mem; /* the memory's place in the gang */
    volatile int cancel;     /* set when the memory send fails */
    unsigned n;
    struct hot_disk k[FY_MAX_DISKS];
};

static int hot_disks_start(struct fy_host *h, const char *vm,
                           const struct fy_host_send_params *p, struct send_ctx *c,
                           struct hot_disks *hd)
{
    int rc;

    memset(hd, 0, sizeof(*hd));
    pthread_mutex_init(&hd->g.lock, NULL);
    pthread_cond_init(&hd->g.cond, NULL);
    hd->g.c = c;
    hd->g.n = 1;
    hd->mem.g = &hd->g;
    if (p->ndisks > FY_MAX_DISKS)
        return fy_error(FY_E_INVAL, "VM %s: %u disks to send, at most %d", vm, p->ndisks,
                        FY_MAX_DISKS);
    for (unsigned i = 0; i < p->ndisks; i++) {
        struct hot_disk *k = &hd->k[i];
        uint64_t npages;

        k->h = h;
        k->p = p;
        k->to = p->disks[i];
        k->me.g = &hd->g;
        k->cancel = &hd->cancel;
        if ((rc = disk_region(h, vm, i, FY_DISK_SOURCE, &k->v, &k->r)) < 0)
            return rc;
        hd->n = i + 1;
        npages = fy_region_pages(k->r);
        if (!(k->first = calloc((npages + 63) / 64, 8)))
            return fy_error(FY_E_NOMEM, "no memory for the block map of disk %u of VM %s",
                            i, vm);
        if ((rc = k->v.ops->disk_dirty(k->v.io, k->first, npages)) < 0)
            return rc;
    }
    hd->g.n = 1 + hd->n;
    for (unsigned i = 0; i < hd->n; i++) {
        if (pthread_create(&hd->k[i].tid, NULL, disk_main, &hd->k[i]) != 0) {
            hd->g.n = 1 + i;
            return fy_error(FY_E_SYS, "cannot start the send of disk %u of VM %s on host %s",
                            i, vm, h->name);
        }
        hd->k[i].started = true;
    }
    return 0;
}

/* Waits for the disk sends (failing them if the memory send failed, rc <
 * 0), closes the disks and sums their statistics into 'sum'.  Returns the
 * first disk failure. */
static int hot_disks_end(struct hot_disks *hd, int rc, struct fy_migration_stats *sum)
{
    int first = 0;
    char detail[ERR_MAX] = "";

    if (rc < 0) {
        hd->cancel = 1;
        gang_fail(&hd->g);
    }
    for (unsigned i = 0; i < hd->n; i++) {
        struct hot_disk *k = &hd->k[i];

        if (k->started)
            pthread_join(k->tid, NULL);
        if (k->started && k->rc < 0 && !first) {
            first = k->rc;
            snprintf(detail, sizeof(detail), "disk %u: %s", i, k->detail);
        }
        sum->rounds += k->st.rounds;
        sum->region_bytes += k->st.region_bytes;
        sum->pages_sent += k->st.pages_sent;
        sum->pages_zero += k->st.pages_zero;
        sum->pages_dup += k->st.pages_dup;
        sum->pages_resent += k->st.pages_resent;
        sum->wire_bytes += k->st.wire_bytes;
        sum->downtime = k->st.downtime > sum->downtime ? k->st.downtime : sum->downtime;
        sum->verify_seconds = k->st.verify_seconds > sum->verify_seconds
                                  ? k->st.verify_seconds : sum->verify_seconds;
        sum->verified = (i == 0 || sum->verified) && k->started && k->st.verified;
        disk_region_close(&k->v, &k->r);
        free(k->first);
    }
    pthread_mutex_destroy(&hd->g.lock);
    pthread_cond_destroy(&hd->g.cond);
    return first ? fy_error(-first, "%s", detail) : 0;
}

static int send_memory(struct fy_host *h, const struct fy_host_data *w,
                       const struct fy_host_endpoint *to,
                       const struct fy_host_send_params *p, struct fy_host_send_result *out)
{
    struct send_ctx c = {.h = h, .vm = w->vm, .region = w->region, .p = p};
    struct fy_source_params sp = {
        .downtime_ms = p->downtime_ms,
        .max_rounds = p->max_rounds,
        .dirty_sync = p->dirty_log ? send_sync : NULL,
        .pause = p->pause ? send_pause : NULL,
        .on_round = p->on_round ? send_round : NULL,
        .ctx = &c,
        .cancel = p->cancel,
    };
    struct fy_memory_layout ml;
    const struct fy_memory_region *mr;
    struct fy_region *r = NULL;
    struct gang *g = NULL;
    struct kept k = {.k = {.space = -1}};
    struct hot_disks *hd = NULL;
    int rc, drc;

    if (p->dirty_log && !DRV(h)->dirty_log_sync)
        return missing(h, "dirty_log_sync");
    if (p->ndisks && !p->pause)
        return fy_error(FY_E_INVAL, "VM %s: disks move beside memory that pauses the VM",
                        w->vm);
    if ((rc = layout(h, w->vm, &ml)) < 0)
        return rc;
    if (w->region >= ml.n)
        return fy_error(FY_E_PROTO, "VM %s on host %s has no memory region %u", w->vm,
                        h->name, w->region);
    mr = &ml.regions[w->region];
    rc = mr->fd >= 0 ? fy_region_open_fd(mr->fd, mr->offset, mr->size, FY_REGION_READ, &r)
                     : fy_region_open_pid(mr->pid, mr->addr, mr->size, FY_REGION_READ, &r);
    if (rc == 0 && h->gang[0]) {
        /* The source side of the gang only keeps hashes (what the target
         * holds), so nothing of this region outlives the send. */
        if ((g = gang_get(h, "send", mr->size / FY_PAGE_SIZE))) {
            sp.dedup = g->dedup;
            sp.keep = &k.k;
        } else {
            rc = -FY_E_NOMEM;
        }
    }
    if (rc == 0 && p->ndisks) {
        /* Hot disks: their sends run beside this one and share the pause. */
        if (!(hd = malloc(sizeof(*hd)))) {
            rc = fy_error(FY_E_NOMEM, "no memory for the disks of VM %s", w->vm);
        } else {
            rc = hot_disks_start(h, w->vm, p, &c, hd);
            c.gang = &hd->mem;
            sp.pause = memory_gang_pause;
        }
    }
    if (rc == 0)
        rc = send_region(h, r, to, p, &sp, &out->st, true);
    if (hd) {
        /* The failure that stopped the others is the one to report: not a
         * cancellation, which one side's failure causes in the other. */
        char keep[ERR_MAX];

        snprintf(keep, sizeof(keep), "%s", fy_error_detail());
        drc = hot_disks_end(hd, rc, &out->disks);
        if (hd->g.paused) {
            /* The VM was paused for the disks' final rounds and their
             * verification too, and perhaps by a disk's engine before the
             * memory's asked: the send's downtime runs from that pause. */
            struct timespec t;
            double since;

            clock_gettime(CLOCK_MONOTONIC, &t);
            since = (double)(t.tv_sec - hd->g.t_pause.tv_sec) +
                    (double)(t.tv_nsec - hd->g.t_pause.tv_nsec) / 1e9;
            if (since > out->st.downtime)
                out->st.downtime = since;
        }
        if (rc < 0 && (drc == 0 || (rc != -FY_E_CANCELLED && drc == -FY_E_CANCELLED)))
            fy_error(-rc, "%s", keep);
        else if (drc < 0)
            rc = drc;
        free(hd);
    }
    if (g) {
        /* The source keeps only hashes (what the target holds): nothing of
         * the region itself outlives the send. */
        if (k.k.map)
            k.k.map->owner = NULL;
        gang_put(g, &k);
    }
    fy_region_close(r);
    out->paused = c.paused;
    return rc;
}

/* The whole pages as a file region, then the last partial page (a file's
 * size need not be a page multiple) as a page of its own. */
static int send_file(const struct fy_host *h, const struct fy_host_data *w,
                     const struct fy_host_endpoint *to,
                     const struct fy_host_send_params *p, struct fy_host_send_result *out)
{
    struct fy_source_params sp = {.cancel = p->cancel};
    uint64_t whole = w->size & ~(uint64_t)(FY_PAGE_SIZE - 1);
    size_t n = (size_t)(w->size - whole);
    struct fy_region *r = NULL;
    int rc = 0, fd = -1;

    if (whole) {
        if ((rc = fy_region_open_file(w->path, 0, whole, FY_REGION_READ, &r)) < 0)
            return rc;
        rc = send_region(h, r, to, p, &sp, &out->st, true);
        fy_region_close(r);
        r = NULL;
        if (rc < 0)
            return rc;
    }
    if (!n)
        return 0;
    if ((rc = fy_region_create_memfd("ferry-file-tail", FY_PAGE_SIZE, &r)) < 0)
        return rc;
    if ((fd = open(w->path, O_RDONLY | O_CLOEXEC)) < 0) {
        rc = fy_error_sys("cannot open %s", w->path);
        goto out;
    }
    if (pread(fd, fy_region_base(r), n, (off_t)whole) != (ssize_t)n) {
        rc = fy_error_sys("cannot read the end of %s", w->path);
        goto out;
    }
    rc = send_region(h, r, to, p, &sp, &out->st, whole == 0);
out:
    if (fd >= 0)
        close(fd);
    fy_region_close(r);
    return rc;
}

static int local_send(struct fy_host *h, const struct fy_host_data *what,
                      const struct fy_host_endpoint *to,
                      const struct fy_host_send_params *params,
                      struct fy_host_send_result *out)
{
    if (!what || !to || !params || !out)
        return fy_error(FY_E_INVAL, "send: missing argument");
    memset(out, 0, sizeof(*out));
    if (what->kind == FY_HOST_DATA_MEMORY)
        return send_memory(h, what, to, params, out);
    if (what->kind == FY_HOST_DATA_FILE)
        return send_file(h, what, to, params, out);
    if (what->kind == FY_HOST_DATA_STREAM)
        return fy_host_stream_send(h, what, to, params, out);
    if (what->kind == FY_HOST_DATA_DEVICE_STATE)
        return fy_host_devstate_send(h, what, to, params, out);
    if (what->kind == FY_HOST_DATA_DISK)
        return fy_error(FY_E_INVAL, "host %s: a disk of VM %s is sent beside its memory "
                        "(send_params.disks), not alone", h->name, what->vm);
    return fy_error(FY_E_INVAL, "host %s: unknown kind of transfer %d", h->name,
                    (int)what->kind);
}

/* ---- the table ------------------------------------------------------------ */

const struct fy_host_ops fy_host_local_ops = {
    .name = "local",
    .host_info = local_host_info,
    .vm_info = local_vm_info,
    .capabilities = local_capabilities,
    .memory_info = local_memory_info,
    .vm_export = local_vm_export,
    .vm_define = local_vm_define,
    .vm_undefine = local_vm_undefine,
    .vm_start = local_vm_start,
    .vm_stop = local_vm_stop,
    .vm_pause = local_vm_pause,
    .vm_resume = local_vm_resume,
    .incoming_prepare = local_incoming_prepare,
    .vm_suspend = local_vm_suspend,
    .vm_restore = local_vm_restore,
    .dirty_log_start = local_dirty_log_start,
    .dirty_log_stop = local_dirty_log_stop,
    .device_state_save = local_device_state_save,
    .device_state_load = local_device_state_load,
    .file_create = local_file_create,
    .file_remove = local_file_remove,
    .file_stat = local_file_stat,
    .file_digest = local_file_digest,
    .disk_create = local_disk_create,
    .disk_rebase = local_disk_rebase,
    .recv_start = local_recv_start,
    .recv_join = local_recv_join,
    .recv_abort = local_recv_abort,
    .send = local_send,
};

void fy_host_local_init(struct fy_host *h, const char *name, struct fy_driver_handle *drv)
{
    memset(h, 0, sizeof(*h));
    snprintf(h->name, sizeof(h->name), "%s", name ? name : "");
    h->ops = &fy_host_local_ops;
    h->impl = drv;
}
