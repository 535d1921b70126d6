/* The migration store: every migration's record, its event log and the
 * per-VM locks, in one SQLite database (WAL mode, so ferryctl reads while
 * ferryd writes; a busy timeout, so writers wait instead of failing).
 *
 * Everything outlives the process: a failed migration's log shows, after a
 * restart, where it stopped and why (SPEC section 4).
 *
 * Return convention: 0 or a negative fy_err value with the detail
 * recorded (FY_E_IO for a database error, naming the file and SQLite's
 * message).  A store may be used from several threads (SQLite's serialized
 * mode); each call is one transaction. */
#ifndef FERRY_CP_EVENTS_H
#define FERRY_CP_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "controlplane/migration.h"
#include "ferry/driver.h"

struct fy_store;

enum fy_mig_state {
    FY_MIG_RUNNING = 0,
    FY_MIG_SUCCEEDED = 1,
    FY_MIG_FAILED = 2,      /* failed after the switchover: rolled forward,
                               the VM runs at the target (or a rollback
                               itself failed); 'error' says which */
    FY_MIG_CANCELLED = 3,   /* cancelled before the switchover; rolled back */
    FY_MIG_ROLLED_BACK = 4, /* failed before the switchover; the source
                               kept the VM */
    FY_MIG_STATE__COUNT
};

/* Classes of data a migration moves, each over the network of its role
 * (SPEC section 2). */
enum fy_data_class {
    FY_DATA_MEMORY = 0,
    FY_DATA_DEVICE_STATE = 1,
    FY_DATA_DISKS_HOT = 2,  /* active (child) disk images of a running VM */
    FY_DATA_DISKS_COLD = 3, /* base images, and all disks of a stopped VM */
    FY_DATA__COUNT
};

enum fy_event_category {
    FY_EV_TRANSFER = 0,
    FY_EV_SWITCHOVER = 1,
    FY_EV_CLEANUP = 2,
};

enum fy_event_side {
    FY_SIDE_SOURCE = 0,
    FY_SIDE_TARGET = 1,
};

#define FY_STORE_ERROR_MAX 512
#define FY_STORE_NET_MAX 96
#define FY_EVENT_TEXT_MAX 512

struct fy_migration_record {
    int64_t id;
    char vm[FY_NAME_MAX];
    enum fy_migration_kind kind;
    char source[FY_NAME_MAX];
    char target[FY_NAME_MAX];
    enum fy_mig_state state;
    int64_t started_us, ended_us; /* unix time in microseconds; ended 0 while
                                     running */
    char error[FY_STORE_ERROR_MAX]; /* "" if none */
    /* Which network carried each data class: "migration 10.0.0.1",
     * "provisioning 10.0.1.1", ...; "" if the class did not move. */
    char net[FY_DATA__COUNT][FY_STORE_NET_MAX];
    /* Dataplane statistics, summed over every stream of the migration. */
    uint64_t wire_bytes;
    uint64_t pages_sent, pages_zero, pages_dup;
    double downtime; /* seconds the VM did not run */
    double seconds;  /* total */
    bool verified;   /* every region's digest matched */
};

struct fy_event {
    int64_t migration;
    unsigned task; /* counts from 1 per migration */
    int64_t ts_us; /* unix time in microseconds */
    enum fy_event_category category;
    enum fy_event_side side;
    char text[FY_EVENT_TEXT_MAX];
};

const char *fy_mig_state_name(enum fy_mig_state s);          /* "running" */
const char *fy_data_class_name(enum fy_data_class c);        /* "memory" */
const char *fy_event_category_name(enum fy_event_category c); /* "Transfer" */
const char *fy_event_side_name(enum fy_event_side s);         /* "source" */

/* Opens (creating if needed) the database at 'path'.  On failure *out is
 * NULL. */
int fy_store_open(const char *path, struct fy_store **out);

/* Closes the store.  NULL is allowed. */
void fy_store_close(struct fy_store *st);

/* Records a new migration from m's vm, kind, source and target, state
 * running, started now; its id into *id. */
int fy_store_migration_create(struct fy_store *st,
                              const struct fy_migration_record *m, int64_t *id);

/* The record of migration 'id' (FY_E_NOTFOUND if none). */
int fy_store_migration_get(struct fy_store *st, int64_t id,
                           struct fy_migration_record *out);

/* Migrations of 'vm' (NULL: all), oldest first, into a malloc'd array the
 * caller frees with free(); *n its length (NULL and 0 if none). */
int fy_store_migration_list(struct fy_store *st, const char *vm,
                            struct fy_migration_record **out, size_t *n);

/* Sets the state and error text ("" or NULL: none); any state but running
 * also sets the end time. */
int fy_store_migration_set_state(struct fy_store *st, int64_t id,
                                 enum fy_mig_state state, const char *error);

/* Records the network that carried data class 'c' ("migration 10.0.0.1"). */
int fy_store_migration_set_net(struct fy_store *st, int64_t id,
                               enum fy_data_class c, const char *net);

/* Records the statistics fields of 'm' (wire_bytes .. verified). */
int fy_store_migration_set_stats(struct fy_store *st, int64_t id,
                                 const struct fy_migration_record *m);

/* Appends an event to migration 'id', numbered one past its last, stamped
 * now; its task number into *task (may be NULL). */
int fy_store_event_add(struct fy_store *st, int64_t id,
                       enum fy_event_category cat, enum fy_event_side side,
                       const char *text, unsigned *task);

/* The events of migration 'id' in task order, malloc'd (caller frees). */
int fy_store_events_list(struct fy_store *st, int64_t id,
                         struct fy_event **out, size_t *n);

/* Locks 'vm' for migration 'id': one operation at a time per VM.
 * FY_E_BUSY, naming the holding migration, if another holds it; taking a
 * lock one already holds succeeds. */
int fy_store_lock_vm(struct fy_store *st, const char *vm, int64_t id);

/* Releases the lock 'id' holds on 'vm'; FY_E_NOTFOUND if it holds none. */
int fy_store_unlock_vm(struct fy_store *st, const char *vm, int64_t id);

/* The migration holding 'vm''s lock into *id (0 if none). */
int fy_store_lock_holder(struct fy_store *st, const char *vm, int64_t *id);

#endif /* FERRY_CP_EVENTS_H */
