/* Migration kinds (SPEC section 1) and their names.
 *
 * The kind decides what moves and how: live streams memory while the VM
 * runs; cold moves a powered-off VM's disks and configuration; quick
 * suspends to a memory image, moves it with the disks and resumes; the
 * others (bulk, move, storage, failover) are named here for the evacuation
 * planner and are not run by the workflow yet. */
#ifndef FERRY_CP_MIGRATION_H
#define FERRY_CP_MIGRATION_H

#include <string.h>

enum fy_migration_kind {
    FY_MIG_LIVE = 0,
    FY_MIG_COLD = 1,
    FY_MIG_QUICK = 2,
    FY_MIG_BULK = 3,
    FY_MIG_MOVE = 4,
    FY_MIG_STORAGE = 5,
    FY_MIG_FAILOVER = 6,
    FY_MIG__COUNT
};

/* "live", "cold", ...; "unknown" outside the enum.  Never NULL. */
static inline const char *fy_migration_kind_name(enum fy_migration_kind k)
{
    static const char *const names[FY_MIG__COUNT] = {
        "live", "cold", "quick", "bulk", "move", "storage", "failover",
    };
    return (unsigned)k < FY_MIG__COUNT ? names[k] : "unknown";
}

/* The kind named 'name' into *out: 0, or -1 if no kind has that name. */
static inline int fy_migration_kind_parse(const char *name,
                                          enum fy_migration_kind *out)
{
    for (unsigned k = 0; name && k < FY_MIG__COUNT; k++) {
        if (strcmp(name, fy_migration_kind_name((enum fy_migration_kind)k)) == 0) {
            *out = (enum fy_migration_kind)k;
            return 0;
        }
    }
    return -1;
}

#endif /* FERRY_CP_MIGRATION_H */
