/* Prechecks: what must hold before a VM may be moved (SPEC section 5).
 *
 * fy_prechecks_run() looks at the VM, its host and the target host as the
 * drivers describe them and lists every finding at once, so an operator
 * fixes all of them in one go:
 *   REFUSE  the migration must not start; the message names the device or
 *           resource and the fix;
 *   WARN    it may proceed; the workflow records the warning as an event.
 * Each finding has a stable short code ("usb-device") for scripts and tests.
 *
 * Whether the VM is busy with another operation is not checked here: the
 * workflow takes the VM's lock in the store (fy_store_lock_vm), which is the
 * only place that can answer it without a race.
 *
 * The target's file system is looked at directly (a CD-ROM's ISO image is
 * stat()ed), which holds while both hosts' drivers run in this process. */
#ifndef FERRY_CP_PRECHECKS_H
#define FERRY_CP_PRECHECKS_H

#include <stdbool.h>

#include "controlplane/migration.h"
#include "ferry/driver.h"

enum fy_precheck_level {
    FY_PRECHECK_WARN = 1,
    FY_PRECHECK_REFUSE = 2,
};

#define FY_PRECHECK_CODE_MAX 32
#define FY_PRECHECK_MSG_MAX 512
#define FY_PRECHECK_MAX 32

struct fy_precheck_finding {
    enum fy_precheck_level level;
    char code[FY_PRECHECK_CODE_MAX];   /* "usb-device", ... (docs/workflow.md) */
    char message[FY_PRECHECK_MSG_MAX]; /* names the object and the fix */
};

struct fy_precheck_report {
    unsigned n;
    struct fy_precheck_finding findings[FY_PRECHECK_MAX];
    unsigned dropped; /* findings beyond FY_PRECHECK_MAX (not stored) */
};

/* Checks whether 'vm' may be moved from 'src' to 'dst' with 'kind', its
 * disks going to the target datastore named 'dst_datastore' (NULL or "":
 * the disks stay where they are, on storage both hosts reach, so no space
 * is needed).  Fills 'out' with every finding (it is reset first).
 *
 * Returns 0 when nothing refuses (warnings may be present),
 * -FY_E_PRECHECK when something does (the error detail lists the refusals'
 * messages), -FY_E_INVAL for a NULL argument. */
int fy_prechecks_run(enum fy_migration_kind kind, const struct fy_vm_info *vm,
                     const struct fy_host_info *src,
                     const struct fy_host_info *dst,
                     const char *dst_datastore,
                     struct fy_precheck_report *out);

/* True if the report holds at least one REFUSE finding. */
bool fy_prechecks_refused(const struct fy_precheck_report *r);

/* The finding with 'code', or NULL. */
const struct fy_precheck_finding *
fy_prechecks_find(const struct fy_precheck_report *r, const char *code);

#endif /* FERRY_CP_PRECHECKS_H */
