/* A sim guest: its memory file, the workload thread that dirties it, the
 * dirty log the thread keeps, and the device state that carries the
 * workload's registers to another host.
 *
 * The workload runs inside the process that opened the host's driver
 * instance, one thread per running VM: the VM runs while its host's agent
 * runs.  Memory is the VM's file mapped MAP_SHARED, so the dataplane,
 * mapping the same file through memory_layout's fd, sees every write. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "drivers/sim/sim_priv.h"
#include "ferry/classifier.h"

#define FILL_CHUNK_PAGES 256
#define SHARED_POOL 512      /* distinct "kernel" pages per shared seed */
#define MAX_BURST 100000     /* writes per 1 ms tick at most */
#define STATE_MAGIC 0x3153445f4d495346ull /* "FSIM_DS1" */
#define STATE_VERSION 1

static inline uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* splitmix64's finaliser: spreads nearby inputs over the whole range. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t str_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;

    while (*s)
        h = (h ^ (uint8_t)*s++) * 0x100000001b3ull;
    return h;
}

static void fill_random(uint64_t *words, uint64_t state)
{
    state |= 1;
    for (unsigned i = 0; i < FY_PAGE_SIZE / 8; i++)
        words[i] = xorshift(&state) | 1; /* never a zero page */
}

/* Page p's content at first start.  Its class depends only on the shared
 * seed and p, so VMs with one seed hold the same "kernel" pages at the same
 * places: by default 40 % zero, 20 % from a pool of SHARED_POOL contents
 * (also duplicates within the VM), the rest unique to the VM.  The VM's
 * workload line may change the shares and the pool (pool 0: each kernel
 * page's content depends on its place only, so none repeats in the VM). */
static void start_page(uint64_t *page, uint64_t p, const struct sim_vmconf *c,
                       uint64_t vm_seed)
{
    uint64_t shared_seed = c->shared_seed;
    uint64_t h = mix64(shared_seed ^ mix64(p));
    unsigned cls = (unsigned)(h % 100);

    if (cls < c->zero_pct)
        memset(page, 0, FY_PAGE_SIZE);
    else if (cls < c->zero_pct + c->shared_pct)
        fill_random(page, mix64(shared_seed * 0x100000001b3ull +
                                (c->pool ? (h >> 32) % c->pool : p + SHARED_POOL)));
    else
        fill_random(page, mix64(vm_seed ^ mix64(p + 0x51ed270b27dull)));
}

int sim_mem_create(const char *path, const struct sim_vmconf *c, bool zero)
{
    uint64_t npages = c->mem_bytes / FY_PAGE_SIZE;
    uint64_t vm_seed = str_hash(c->uuid[0] ? c->uuid : c->name);
    uint64_t *buf = NULL;
    int fd, rc = 0;

    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return fy_error_sys("cannot create memory file %s of VM %s", path,
                            c->name);
    if (ftruncate(fd, (off_t)c->mem_bytes) != 0) {
        rc = fy_error_sys("cannot size memory file %s to %llu bytes", path,
                          (unsigned long long)c->mem_bytes);
        goto out;
    }
    if (zero)
        goto out;
    /* Written out in full so every page is allocated, as a guest that has
     * touched all its memory. */
    buf = malloc((size_t)FILL_CHUNK_PAGES * FY_PAGE_SIZE);
    if (!buf) {
        rc = fy_error(FY_E_NOMEM, "no memory to fill VM %s", c->name);
        goto out;
    }
    for (uint64_t p = 0; p < npages; p += FILL_CHUNK_PAGES) {
        uint64_t n = npages - p < FILL_CHUNK_PAGES ? npages - p : FILL_CHUNK_PAGES;
        size_t len = (size_t)n * FY_PAGE_SIZE;
        for (uint64_t i = 0; i < n; i++)
            start_page(buf + i * (FY_PAGE_SIZE / 8), p + i, c, vm_seed);
        if (pwrite(fd, buf, len, (off_t)(p * FY_PAGE_SIZE)) != (ssize_t)len) {
            rc = errno ? fy_error_sys("cannot write memory file %s", path)
                       : fy_error(FY_E_NOSPACE, "short write to memory file %s",
                                  path);
            goto out;
        }
    }
out:
    free(buf);
    if (rc) {
        close(fd);
        unlink(path);
        return rc;
    }
    return fd;
}

int sim_guest_init(struct sim_guest *g, int fd, const struct sim_vmconf *c)
{
    memset(g, 0, sizeof(*g));
    g->npages = c->mem_bytes / FY_PAGE_SIZE;
    g->dirty = calloc((g->npages + 63) / 64, sizeof(uint64_t));
    if (!g->dirty)
        return fy_error(FY_E_NOMEM, "no memory for the dirty log of VM %s",
                        c->name);
    g->mem = mmap(NULL, c->mem_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (g->mem == MAP_FAILED) {
        g->mem = NULL;
        free(g->dirty);
        g->dirty = NULL;
        return fy_error_sys("cannot map the memory of VM %s", c->name);
    }
    g->rate = c->rate;
    g->pattern = c->pattern;
    g->wl.rng = mix64(str_hash(c->uuid[0] ? c->uuid : c->name)) | 1;
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    return 0;
}

void sim_guest_fini(struct sim_guest *g)
{
    if (!g->dirty)
        return;
    sim_guest_kill(g);
    munmap(g->mem, g->npages * FY_PAGE_SIZE);
    free(g->dirty);
    g->dirty = NULL;
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cond);
}

/* One guest write: a cache line of the chosen page, then its dirty bit. */
static void write_one(struct sim_guest *g)
{
    struct sim_wlstate *wl = &g->wl;
    uint64_t r = xorshift(&wl->rng), page, *p;

    switch (g->pattern) {
    case SIM_PATTERN_SEQUENTIAL:
        page = wl->next;
        wl->next = (wl->next + 1) % g->npages;
        break;
    case SIM_PATTERN_HOT: {
        uint64_t hot = g->npages / 10 ? g->npages / 10 : 1;
        page = (r & 0xff) < 230 ? (r >> 8) % hot : (r >> 8) % g->npages;
        break;
    }
    default:
        page = (r >> 8) % g->npages;
        break;
    }
    p = (uint64_t *)(g->mem + page * FY_PAGE_SIZE + (r % 64) * 64);
    wl->counter++;
    for (unsigned k = 0; k < 8; k++)
        __atomic_store_n(&p[k], wl->counter * 0x100000001b3ull + k + 1,
                         __ATOMIC_RELAXED);
    /* The bit after the write (KVM's order): a sync between the two still
     * finds the page in the next period. */
    if (__atomic_load_n(&g->logging, __ATOMIC_ACQUIRE))
        __atomic_fetch_or(&g->dirty[page >> 6], 1ull << (page & 63),
                          __ATOMIC_RELEASE);
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) +
           (double)(now.tv_nsec - t0->tv_nsec) * 1e-9;
}

static void *guest_main(void *arg)
{
    struct sim_guest *g = arg;
    struct timespec t0;
    double done = 0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        bool stop;

        pthread_mutex_lock(&g->lock);
        if (g->park && !g->stop) {
            g->parked = true;
            pthread_cond_broadcast(&g->cond);
            while (g->park && !g->stop)
                pthread_cond_wait(&g->cond, &g->lock);
            g->parked = false;
            /* A paused guest does not catch up when it resumes. */
            clock_gettime(CLOCK_MONOTONIC, &t0);
            done = 0;
        }
        stop = g->stop;
        pthread_mutex_unlock(&g->lock);
        if (stop)
            break;

        double due = seconds_since(&t0) * g->rate - done;
        uint64_t n = due > MAX_BURST ? MAX_BURST : (uint64_t)due;
        for (uint64_t i = 0; i < n; i++)
            write_one(g);
        done += due > MAX_BURST ? due : (double)n;
        usleep(1000);
    }
    return NULL;
}

int sim_guest_run(struct sim_guest *g, const char *vm)
{
    int rc = 0;

    pthread_mutex_lock(&g->lock);
    if (g->alive) {
        g->park = false;
        pthread_cond_broadcast(&g->cond);
    } else {
        g->park = g->parked = g->stop = false;
        if (pthread_create(&g->tid, NULL, guest_main, g) != 0)
            rc = fy_error(FY_E_AGAIN, "cannot start the workload thread of VM %s",
                          vm);
        else
            g->alive = true;
    }
    pthread_mutex_unlock(&g->lock);
    return rc;
}

void sim_guest_park(struct sim_guest *g)
{
    pthread_mutex_lock(&g->lock);
    if (g->alive) {
        g->park = true;
        pthread_cond_broadcast(&g->cond);
        while (!g->parked)
            pthread_cond_wait(&g->cond, &g->lock);
    }
    pthread_mutex_unlock(&g->lock);
}

void sim_guest_kill(struct sim_guest *g)
{
    pthread_mutex_lock(&g->lock);
    if (!g->alive) {
        pthread_mutex_unlock(&g->lock);
        return;
    }
    g->stop = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
    pthread_join(g->tid, NULL);
    g->alive = g->park = g->parked = g->stop = false;
}

void sim_guest_dirty_start(struct sim_guest *g)
{
    uint64_t words = (g->npages + 63) / 64;

    for (uint64_t i = 0; i < words; i++)
        __atomic_store_n(&g->dirty[i], 0, __ATOMIC_RELAXED);
    __atomic_store_n(&g->logging, true, __ATOMIC_RELEASE);
}

void sim_guest_dirty_stop(struct sim_guest *g)
{
    __atomic_store_n(&g->logging, false, __ATOMIC_RELEASE);
}

void sim_guest_dirty_sync(struct sim_guest *g, uint64_t *bitmap)
{
    uint64_t words = (g->npages + 63) / 64;

    for (uint64_t i = 0; i < words; i++)
        bitmap[i] = __atomic_exchange_n(&g->dirty[i], 0, __ATOMIC_ACQ_REL);
}

/* The device state blob: little-endian 64-bit words. */
enum { ST_MAGIC, ST_VERSION, ST_NPAGES, ST_COUNTER, ST_RNG, ST_NEXT, ST__N };

static bool guest_writing(struct sim_guest *g)
{
    bool writing;

    pthread_mutex_lock(&g->lock);
    writing = g->alive && !g->parked;
    pthread_mutex_unlock(&g->lock);
    return writing;
}

int sim_guest_state_save(struct sim_guest *g, const char *vm, void **out,
                         size_t *len)
{
    uint64_t *w;

    if (guest_writing(g))
        return fy_error(FY_E_BUSY, "VM %s is running: pause it before saving "
                        "its device state", vm);
    w = malloc(ST__N * sizeof(*w));
    if (!w)
        return fy_error(FY_E_NOMEM, "no memory for the device state of VM %s",
                        vm);
    w[ST_MAGIC] = htole64(STATE_MAGIC);
    w[ST_VERSION] = htole64(STATE_VERSION);
    w[ST_NPAGES] = htole64(g->npages);
    w[ST_COUNTER] = htole64(g->wl.counter);
    w[ST_RNG] = htole64(g->wl.rng);
    w[ST_NEXT] = htole64(g->wl.next);
    *out = w;
    *len = ST__N * sizeof(*w);
    return 0;
}

int sim_guest_state_load(struct sim_guest *g, const char *vm,
                         const void *state, size_t len)
{
    uint64_t w[ST__N];

    if (!state || len != sizeof(w))
        return fy_error(FY_E_INVAL, "device state for VM %s has %zu bytes, a sim "
                        "device state has %zu", vm, len, sizeof(w));
    memcpy(w, state, sizeof(w));
    for (unsigned i = 0; i < ST__N; i++)
        w[i] = le64toh(w[i]);
    if (w[ST_MAGIC] != STATE_MAGIC || w[ST_VERSION] != STATE_VERSION)
        return fy_error(FY_E_INVAL, "device state for VM %s is not a sim device "
                        "state of version %d", vm, STATE_VERSION);
    if (w[ST_NPAGES] != g->npages)
        return fy_error(FY_E_INVAL, "device state for VM %s is for %llu pages of "
                        "memory, the VM has %llu", vm,
                        (unsigned long long)w[ST_NPAGES],
                        (unsigned long long)g->npages);
    if (guest_writing(g))
        return fy_error(FY_E_BUSY, "VM %s is running: pause it before loading "
                        "a device state", vm);
    g->wl.counter = w[ST_COUNTER];
    g->wl.rng = w[ST_RNG] ? w[ST_RNG] : 1;
    g->wl.next = w[ST_NEXT] % g->npages;
    return 0;
}
