/* ferry-workload: what the test guest runs (tests/guest/README.md).
 *
 * Three things at once, all reported on the serial console (stdout):
 *   - a counter, one line a second, with a boot id drawn at start, so a
 *     test sees the same run go on after a migration ("tick N" grows, the
 *     boot id stays);
 *   - a writer that dirties ferry.dirty pages a second spread over
 *     ferry.mem MiB, each write making its page's content unique;
 *   - a checker that fills ferry.pattern MiB with a known pattern once and
 *     then reads it back over and over, printing one PATTERN ERROR line for
 *     each word that ever differs.  A migration that loses or misplaces a
 *     page shows up here.
 * Parameters come from the kernel command line (/proc/cmdline):
 *   ferry.mem=MiB (32)  ferry.dirty=PAGES_PER_S (1000)  ferry.pattern=MiB (16)
 *
 * With ferry.diskwrite=BLOCKS_PER_S (0: off; the guest needs ferry.disk=1
 * for its disk driver) a fourth thing: a disk writer that stamps that many
 * random 4 KiB blocks a second, each with new content, between 8 and 24 MiB
 * of /dev/vda, and a checker that reads the first 24 MiB back again and
 * again (O_DIRECT: the disk, not the page cache) and compares each block's
 * hash with what it should be: read once at start for blocks never
 * written (base and overlay contents), what was last written for the
 * others.  It prints "disk writes=W passes=P errors=E" each second and a
 * DISK ERROR line for a block that differs.  The expected hashes are in
 * guest memory, which migrates with the guest: after a migration the
 * checker verifies the target's disk against what the guest wrote at the
 * source.
 *
 * Built static (gcc -static) by scripts/build-guest and packed into the
 * initramfs; the guest has nothing else but busybox. */
#define _GNU_SOURCE /* O_DIRECT */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define MIB (1024u * 1024u)

static unsigned long opt_mem = 32, opt_dirty = 1000, opt_pattern = 16, opt_diskwrite = 0;

static volatile uint64_t dirtied;     /* pages written by the writer */
static volatile uint64_t passes;      /* full checks of the pattern */
static volatile uint64_t errors;      /* words that differed */

/* The expected value of word i of the pattern region: depends on nothing
 * but i, so it survives a migration and can be recomputed any time. */
static uint64_t pattern_word(uint64_t i)
{
    uint64_t x = i * 0x9E3779B97F4A7C15ull + 0x6A09E667F3BCC909ull;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    return x ^ (x >> 29);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void read_cmdline(void)
{
    char buf[4096];
    FILE *f = fopen("/proc/cmdline", "r");
    char *tok, *save = NULL;

    if (!f)
        return;
    if (!fgets(buf, sizeof(buf), f)) {
        fclose(f);
        return;
    }
    fclose(f);
    for (tok = strtok_r(buf, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
        if (strncmp(tok, "ferry.mem=", 10) == 0)
            opt_mem = strtoul(tok + 10, NULL, 10);
        else if (strncmp(tok, "ferry.dirty=", 12) == 0)
            opt_dirty = strtoul(tok + 12, NULL, 10);
        else if (strncmp(tok, "ferry.pattern=", 14) == 0)
            opt_pattern = strtoul(tok + 14, NULL, 10);
        else if (strncmp(tok, "ferry.diskwrite=", 16) == 0)
            opt_diskwrite = strtoul(tok + 16, NULL, 10);
    }
}

static void *map(size_t len, const char *what)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        printf("ferry-guest: cannot allocate %zu MiB for the %s: %s\n", len / MIB, what,
               strerror(errno));
        fflush(stdout);
        return NULL;
    }
    return p;
}

/* Writes opt_dirty pages a second in 10 ms ticks; each write stamps a
 * different 64-bit value at a random word of a random page. */
static void *writer(void *arg)
{
    uint8_t *mem = arg;
    uint64_t pages = (uint64_t)opt_mem * MIB / PAGE, rng = 0x2545F4914F6CDD1Dull ^ (uint64_t)now();
    double t0 = now(), owed = 0;

    /* Touch every page once so the working set is really allocated. */
    for (uint64_t p = 0; p < pages; p++)
        mem[p * PAGE] = 1;
    for (;;) {
        double t = now();
        owed += (t - t0) * (double)opt_dirty;
        t0 = t;
        while (owed >= 1) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            uint64_t page = rng % pages, word = (rng >> 40) % (PAGE / 8);
            ((volatile uint64_t *)(mem + page * PAGE))[word] = rng;
            dirtied++;
            owed -= 1;
        }
        usleep(10000);
    }
    return NULL;
}

static void *checker(void *arg)
{
    volatile uint64_t *w = arg;
    uint64_t n = (uint64_t)opt_pattern * MIB / 8;

    for (uint64_t i = 0; i < n; i++)
        w[i] = pattern_word(i);
    printf("ferry-guest: pattern written: %lu MiB\n", opt_pattern);
    fflush(stdout);
    for (;;) {
        for (uint64_t i = 0; i < n; i++) {
            uint64_t want = pattern_word(i), got = w[i];
            if (got != want) {
                errors++;
                if (errors <= 20) {
                    printf("ferry-guest: PATTERN ERROR at byte %llu: expected %016llx, "
                           "got %016llx\n", (unsigned long long)(i * 8),
                           (unsigned long long)want, (unsigned long long)got);
                    fflush(stdout);
                }
                w[i] = want; /* report each corruption once */
            }
            /* One pass a few seconds long: leave the CPU to the rest. */
            if ((i & 0xffff) == 0xffff)
                usleep(2000);
        }
        passes++;
    }
    return NULL;
}

/* ---- the disk writer and checker ----------------------------------------- */

#define DISK_BLOCK 4096u
#define DISK_CHECKED (24u * MIB)   /* checked: [0, 24 MiB) */
#define DISK_WRITTEN (8u * MIB)    /* written: [8 MiB, 24 MiB) */
#define CHECK_CHUNK 64u            /* blocks per read */

static int disk_fd = -1;
static uint64_t disk_blocks;           /* checked blocks */
static uint64_t *disk_expect;          /* hash of each checked block */
static pthread_mutex_t disk_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile uint64_t disk_writes, disk_passes, disk_errors;

static uint64_t block_hash(const uint8_t *p)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned i = 0; i < DISK_BLOCK; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    return h;
}

static int disk_rw(int write, void *buf, size_t len, uint64_t off)
{
    ssize_t n = write ? pwrite(disk_fd, buf, len, (off_t)off)
                      : pread(disk_fd, buf, len, (off_t)off);

    if (n != (ssize_t)len) {
        printf("ferry-guest: disk %s of %zu bytes at %llu failed: %s\n",
               write ? "write" : "read", len, (unsigned long long)off,
               n < 0 ? strerror(errno) : "short");
        fflush(stdout);
        return -1;
    }
    return 0;
}

/* Reads the checked area once: the expected hash of never-written blocks. */
static int disk_snapshot(void)
{
    uint8_t *buf;

    if (posix_memalign((void **)&buf, DISK_BLOCK, CHECK_CHUNK * DISK_BLOCK) != 0)
        return -1;
    for (uint64_t b = 0; b < disk_blocks; b += CHECK_CHUNK) {
        uint64_t n = disk_blocks - b < CHECK_CHUNK ? disk_blocks - b : CHECK_CHUNK;
        if (disk_rw(0, buf, n * DISK_BLOCK, b * DISK_BLOCK) < 0) {
            free(buf);
            return -1;
        }
        for (uint64_t i = 0; i < n; i++)
            disk_expect[b + i] = block_hash(buf + i * DISK_BLOCK);
    }
    free(buf);
    return 0;
}

/* Stamps opt_diskwrite random blocks a second with new content. */
static void *disk_writer(void *arg)
{
    uint64_t first = DISK_WRITTEN / DISK_BLOCK, rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)now();
    uint64_t span = disk_blocks > first ? disk_blocks - first : 0;
    double t0 = now(), owed = 0;
    uint8_t *buf;

    (void)arg;
    if (!span || posix_memalign((void **)&buf, DISK_BLOCK, DISK_BLOCK) != 0)
        return NULL;
    for (;;) {
        double t = now();
        owed += (t - t0) * (double)opt_diskwrite;
        t0 = t;
        while (owed >= 1) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            uint64_t b = first + rng % span, x = rng;
            for (unsigned i = 0; i < DISK_BLOCK; i += 8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                memcpy(buf + i, &x, 8);
            }
            memcpy(buf, "FYDISKBL", 8);
            memcpy(buf + 8, &b, 8);
            pthread_mutex_lock(&disk_lock);
            if (disk_rw(1, buf, DISK_BLOCK, b * DISK_BLOCK) == 0) {
                disk_expect[b] = block_hash(buf);
                disk_writes++;
            }
            pthread_mutex_unlock(&disk_lock);
            owed -= 1;
        }
        usleep(10000);
    }
    return NULL;
}

/* Reads the checked area over and over and compares every block. */
static void *disk_checker(void *arg)
{
    uint8_t *buf;

    (void)arg;
    if (posix_memalign((void **)&buf, DISK_BLOCK, CHECK_CHUNK * DISK_BLOCK) != 0)
        return NULL;
    for (;;) {
        for (uint64_t b = 0; b < disk_blocks; b += CHECK_CHUNK) {
            uint64_t n = disk_blocks - b < CHECK_CHUNK ? disk_blocks - b : CHECK_CHUNK;

            /* Not while a write is in flight: what is read then is what
             * the expected hashes say. */
            pthread_mutex_lock(&disk_lock);
            if (disk_rw(0, buf, n * DISK_BLOCK, b * DISK_BLOCK) == 0) {
                for (uint64_t i = 0; i < n; i++) {
                    uint64_t got = block_hash(buf + i * DISK_BLOCK);
                    if (got == disk_expect[b + i])
                        continue;
                    disk_errors++;
                    if (disk_errors <= 20) {
                        printf("ferry-guest: DISK ERROR at block %llu: expected %016llx, "
                               "got %016llx\n", (unsigned long long)(b + i),
                               (unsigned long long)disk_expect[b + i],
                               (unsigned long long)got);
                        fflush(stdout);
                    }
                    disk_expect[b + i] = got; /* report each difference once */
                }
            }
            pthread_mutex_unlock(&disk_lock);
            usleep(5000);
        }
        disk_passes++;
    }
    return NULL;
}

/* Starts the disk writer and checker (ferry.diskwrite). */
static int disk_start(void)
{
    pthread_t tw, tc;
    uint64_t size = 0;

    for (int i = 0; i < 50 && (disk_fd = open("/dev/vda", O_RDWR | O_DIRECT)) < 0; i++)
        usleep(100000);
    if (disk_fd < 0 || ioctl(disk_fd, BLKGETSIZE64, &size) != 0) {
        printf("ferry-guest: no disk to write: /dev/vda: %s\n", strerror(errno));
        fflush(stdout);
        return -1;
    }
    disk_blocks = (size < DISK_CHECKED ? size : DISK_CHECKED) / DISK_BLOCK;
    if (!(disk_expect = calloc(disk_blocks, sizeof(*disk_expect))) || disk_snapshot() < 0)
        return -1;
    printf("ferry-guest: disk checks %llu MiB, writes %lu blocks/s from %u MiB\n",
           (unsigned long long)(disk_blocks * DISK_BLOCK / MIB), opt_diskwrite,
           DISK_WRITTEN / MIB);
    fflush(stdout);
    if (pthread_create(&tw, NULL, disk_writer, NULL) != 0 ||
        pthread_create(&tc, NULL, disk_checker, NULL) != 0)
        return -1;
    return 0;
}

int main(void)
{
    pthread_t tw, tc;
    uint64_t boot_id = 0, tick = 0;
    void *mem, *pat;
    int fd;

    read_cmdline();
    if ((fd = open("/dev/urandom", O_RDONLY)) >= 0) {
        if (read(fd, &boot_id, sizeof(boot_id)) != sizeof(boot_id))
            boot_id = (uint64_t)now();
        close(fd);
    }
    boot_id &= 0xffffffffull;
    printf("ferry-guest: start boot=%08llx mem=%lu MiB dirty=%lu pages/s pattern=%lu MiB\n",
           (unsigned long long)boot_id, opt_mem, opt_dirty, opt_pattern);
    fflush(stdout);
    if (!(mem = map((size_t)opt_mem * MIB, "dirty set")) ||
        !(pat = map((size_t)opt_pattern * MIB, "pattern")))
        return 1;
    if ((opt_mem && opt_dirty && pthread_create(&tw, NULL, writer, mem) != 0) ||
        (opt_pattern && pthread_create(&tc, NULL, checker, pat) != 0)) {
        printf("ferry-guest: cannot start the workload threads\n");
        return 1;
    }
    if (opt_diskwrite && disk_start() < 0)
        opt_diskwrite = 0;
    /* The counter: one line a second, on the second boundaries of the
     * guest's monotonic clock. */
    for (double next = now() + 1;; next += 1) {
        double d = next - now();
        if (d > 0)
            usleep((useconds_t)(d * 1e6));
        else
            next = now(); /* paused or slow: do not print a burst */
        printf("ferry-guest: boot=%08llx tick %llu dirtied=%llu checks=%llu errors=%llu\n",
               (unsigned long long)boot_id, (unsigned long long)++tick,
               (unsigned long long)dirtied, (unsigned long long)passes,
               (unsigned long long)errors);
        if (opt_diskwrite)
            printf("ferry-guest: boot=%08llx disk writes=%llu passes=%llu errors=%llu\n",
                   (unsigned long long)boot_id, (unsigned long long)disk_writes,
                   (unsigned long long)disk_passes, (unsigned long long)disk_errors);
        fflush(stdout);
    }
}
