/* Stream mode: Ferry as the transport of QEMU's own live migration.
 *
 * QEMU keeps the migration (dirty tracking, convergence, downtime limit,
 * auto-converge); Ferry carries its bytes.  The source QEMU migrates with
 * the multifd capability to a UNIX socket the source side listens on; each
 * of its channels (the main channel, then every multifd channel) travels
 * on its own stream of a Ferry session; the target side opens as many
 * connections, in the same order, to the destination QEMU's incoming UNIX
 * socket and writes each channel's bytes there exactly as QEMU sent them.
 *
 * On the way, multifd packets are parsed and each page goes through the
 * classifier: an all-zero page crosses the link as a ZERO operation, a page
 * whose content the target already holds (received earlier in this
 * migration, or kept from another migration to the same host) as a
 * reference, any other page whole.  The target keeps the pages it received
 * in a content cache (a memory region the size of the session's key space)
 * to resolve references.  A channel that cannot be parsed (unknown version
 * or layout) is carried unchanged and the statistics say so.  Downtime is
 * QEMU's: it follows the dirty set, not the RAM size.  docs/qstream.md has
 * the details.
 *
 * The session: opened by the caller with 1 + channels streams (the
 * transport must carry FY_OP_DATA: tcp does) and a region size of
 * fy_qstream_key_space(guest RAM bytes).  Both calls leave the session
 * open; the caller closes it.
 *
 * QEMU setup (QMP), both sides: migrate-set-capabilities multifd on, and
 * migrate-set-parameters multifd-channels = channels.  Destination: started
 * with -incoming defer, then migrate-incoming unix:PATH (PATH is the
 * target's connect_path).  Source: migrate unix:PATH (the source's listen
 * path) once fy_qstream_source_run() listens (on_listening).  The
 * return-path capability may be on or off: the target carries the
 * destination's return path back to the source QEMU.
 *
 * Return convention: 0 or a negative fy_err with the detail recorded. */
#ifndef FERRY_QSTREAM_H
#define FERRY_QSTREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "ferry/dedup.h"
#include "ferry/engine.h"
#include "ferry/region.h"
#include "ferry/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most multifd channels (QEMU allows 255; stream numbers must fit a byte
 * in the source's bookkeeping). */
#define FY_QSTREAM_MAX_CHANNELS 254

/* What one side saw.  The source's and the target's agree on the page
 * counts after a clean run. */
struct fy_qstream_stats {
    unsigned channels;         /* multifd channels carried */
    bool parsed_all;           /* every multifd channel parsed to its end */
    char unparsed[256];        /* if not: which channel and why (the first) */
    uint64_t main_bytes;       /* main channel, source QEMU to destination */
    uint64_t return_bytes;     /* return path, destination to source */
    uint64_t multifd_bytes;    /* multifd channels, as QEMU sent them */
    uint64_t raw_bytes;        /* of those: carried unparsed */
    uint64_t packets;          /* multifd packets parsed */
    uint64_t compressed_packets; /* of those: compressed, carried as is */
    uint64_t pages;            /* pages with data in the parsed packets */
    uint64_t pages_sent;       /* sent whole */
    uint64_t pages_uncached;   /* of pages_sent: not kept in the target's
                                  cache (key space full, or the target may
                                  still be reading the old content) */
    uint64_t pages_zero;       /* all zero: sent as ZERO operations */
    uint64_t pages_dup;        /* sent as references: content the target
                                  held */
    uint64_t pages_dup_shared; /* of pages_dup: held from other migrations
                                  to that host (cross-VM) */
    uint64_t qemu_zero_pages;  /* zero pages QEMU listed without data
                                  (QEMU >= 9.0; 7.2 sends its zero pages on
                                  the main channel) */
    uint64_t wire_bytes;       /* all streams, both directions */
    double seconds;
    /* Target: every channel's bytes given to the destination QEMU had the
     * count and XXH3-128 of the bytes the source QEMU sent on it (the
     * return path is not summed).  Source: false. */
    bool verified;
};

/* The region size a stream-mode session announces for a guest of
 * 'ram_bytes' of RAM: room for its RAM and the small RAM blocks beside it
 * (video memory, firmware, ACPI tables), each laid out in 2 MiB chunks. */
uint64_t fy_qstream_key_space(uint64_t ram_bytes);

struct fy_qstream_source_params {
    /* Where QEMU migrates to: a listening UNIX socket the caller made
     * (listen_fd >= 0, still the caller's to close), or else the path to
     * bind (an existing socket file there is replaced; removed at the
     * end). */
    int listen_fd;
    const char *listen_path;
    unsigned channels;         /* QEMU's multifd-channels, >= 1 */
    /* Called once the socket listens, from the calling thread: issue QMP
     * migrate here.  May be NULL. */
    void (*on_listening)(void *ctx);
    void *ctx;
    /* Shared with other stream-mode migrations to the same target host,
     * or NULL.  Content that a finished migration sharing it kept (keep)
     * is sent as cross-VM references; the target must share its index
     * with the migrations those came from, with keep too.  A source-side
     * index: the owners of the maps kept in it are not regions, so it must
     * never serve a target. */
    struct fy_dedup *dedup;
    /* With dedup: on success this migration's record of what the target
     * holds stays in the index and is handed over here; release it with
     * fy_kept_release() when the target releases its cache. */
    struct fy_kept *keep;
    int timeout_ms;            /* for QEMU to connect every channel, and
                                  for a stalled peer; 0: 30000 */
    volatile int *cancel;      /* set non-zero to stop (QEMU's migration
                                  then fails and the guest runs on) */
};

/* Carries one QEMU migration from the source QEMU to the target side.
 * Listens, calls on_listening, accepts the main channel and 'channels'
 * multifd channels (told apart by their first bytes), carries them until
 * QEMU closes them and the target reports it is done.  Returns 0 when every
 * channel was carried to its end in both directions (whether QEMU's
 * migration succeeded is QEMU's to say: query-migrate); on failure the
 * QEMU connections are shut down, so QEMU's migration fails and the guest
 * keeps running at the source.  'out' may be NULL; it is filled on failure
 * too. */
int fy_qstream_source_run(struct fy_session *s,
                          const struct fy_qstream_source_params *p,
                          struct fy_qstream_stats *out);

struct fy_qstream_target_params {
    const char *connect_path;  /* the destination QEMU's incoming socket */
    /* The content cache: a mapped region of the session's region size,
     * which must read as zero or hold nothing referenced; NULL: a memfd
     * made and freed here.  With keep it must be given, and stay open
     * until fy_kept_release(). */
    struct fy_region *cache;
    /* Content kept by other stream-mode migrations to this host, or NULL;
     * see the source's.  With keep, on success the cache joins it (the
     * kept map's owner is 'cache'). */
    struct fy_dedup *dedup;
    struct fy_kept *keep;
    int timeout_ms;            /* connecting, and for the destination QEMU
                                  to close the main channel at the end;
                                  0: 30000 */
    volatile int *cancel;
};

/* Rebuilds the channels of an accepted session (one whose source runs
 * fy_qstream_source_run()) into the destination QEMU.  Returns 0 when
 * every channel was delivered to its end; on failure the connections to
 * QEMU are shut down, so its incoming migration fails. */
int fy_qstream_target_run(struct fy_session *s,
                          const struct fy_qstream_target_params *p,
                          struct fy_qstream_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_QSTREAM_H */
