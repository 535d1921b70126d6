/* Whole-region digest: XXH3-128 over the XXH3-128 of each 1 MiB chunk.
 * Chunks are hashed in parallel; the result does not depend on the number
 * of threads. */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#include <xxhash.h>

#include "ferry/engine.h"
#include "ferry/error.h"

#define CHUNK (1u << 20)

struct digest_job {
    struct fy_region *r;
    uint8_t *chunk_hashes; /* 16 bytes per chunk, little-endian lo, hi */
    uint64_t nchunks;
    uint64_t next;         /* next chunk to take (atomic) */
    int rc;
};

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void *digest_worker(void *arg)
{
    struct digest_job *job = arg;
    uint64_t size = fy_region_size(job->r);
    const uint8_t *base = fy_region_base(job->r);
    uint8_t *buf = NULL;

    if (!base) {
        buf = malloc(CHUNK);
        if (!buf) {
            __atomic_store_n(&job->rc, fy_error(FY_E_NOMEM, "digest buffer"),
                             __ATOMIC_RELAXED);
            return NULL;
        }
    }
    for (;;) {
        uint64_t c = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        if (c >= job->nchunks || __atomic_load_n(&job->rc, __ATOMIC_RELAXED))
            break;
        uint64_t off = c * CHUNK;
        uint64_t len = size - off < CHUNK ? size - off : CHUNK;
        const uint8_t *p = base ? base + off : buf;
        if (!base) {
            int rc = fy_region_read(job->r, off, buf, len);
            if (rc < 0) {
                __atomic_store_n(&job->rc, rc, __ATOMIC_RELAXED);
                break;
            }
        }
        fy_hash128 h = fy_hash_bytes(p, len);
        put_le64(job->chunk_hashes + 16 * c, h.lo);
        put_le64(job->chunk_hashes + 16 * c + 8, h.hi);
    }
    free(buf);
    return NULL;
}

int fy_region_digest(struct fy_region *r, unsigned threads, fy_hash128 *out)
{
    struct digest_job job = {.r = r};
    pthread_t tid[64];
    unsigned started = 0;

    if (!r || !out)
        return fy_error(FY_E_INVAL, "digest: no region or output");
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (unsigned)n : 1;
    }
    if (threads > 64)
        threads = 64;
    job.nchunks = (fy_region_size(r) + CHUNK - 1) / CHUNK;
    job.chunk_hashes = malloc(job.nchunks * 16);
    if (!job.chunk_hashes)
        return fy_error(FY_E_NOMEM, "no memory for %llu chunk hashes",
                        (unsigned long long)job.nchunks);
    for (unsigned i = 1; i < threads && i < job.nchunks; i++)
        if (pthread_create(&tid[started], NULL, digest_worker, &job) == 0)
            started++;
    digest_worker(&job);
    for (unsigned i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    if (job.rc == 0)
        *out = fy_hash_bytes(job.chunk_hashes, job.nchunks * 16);
    free(job.chunk_hashes);
    return job.rc;
}
