/* Prechecks (SPEC section 5): see prechecks.h. */
#include "controlplane/prechecks.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "ferry/error.h"

__attribute__((format(printf, 4, 5)))
static void add(struct fy_precheck_report *r, enum fy_precheck_level level,
                const char *code, const char *fmt, ...)
{
    struct fy_precheck_finding *f;
    va_list ap;

    if (r->n == FY_PRECHECK_MAX) {
        r->dropped++;
        return;
    }
    f = &r->findings[r->n++];
    f->level = level;
    snprintf(f->code, sizeof(f->code), "%s", code);
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof(f->message), fmt, ap);
    va_end(ap);
}

static bool moves_disks(enum fy_migration_kind k)
{
    return k == FY_MIG_COLD || k == FY_MIG_QUICK || k == FY_MIG_BULK ||
           k == FY_MIG_MOVE || k == FY_MIG_STORAGE;
}

/* Kinds that carry the running CPU's state across: the target's CPU must
 * be of the same vendor.  Cold, move and bulk boot afresh at the target. */
static bool keeps_cpu_state(enum fy_migration_kind k)
{
    return k == FY_MIG_LIVE || k == FY_MIG_QUICK;
}

static const struct fy_datastore *find_datastore(const struct fy_host_info *h,
                                                 const char *name)
{
    for (unsigned i = 0; i < h->ndatastores && i < FY_MAX_DATASTORES; i++)
        if (strcmp(h->datastores[i].name, name) == 0)
            return &h->datastores[i];
    return NULL;
}

static double gib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0 * 1024.0);
}

static void check_devices(const struct fy_vm_info *vm,
                          const struct fy_host_info *dst,
                          struct fy_precheck_report *r)
{
    struct stat st;

    for (unsigned i = 0; i < vm->ndevices && i < FY_MAX_DEVICES; i++) {
        const struct fy_device *d = &vm->devices[i];
        switch (d->kind) {
        case FY_DEV_USB:
            add(r, FY_PRECHECK_REFUSE, "usb-device",
                "VM %s has USB device '%s' attached: detach it before migrating",
                vm->name, d->name);
            break;
        case FY_DEV_FLOPPY:
            if (d->media)
                add(r, FY_PRECHECK_REFUSE, "floppy-media",
                    "VM %s has media '%s' in floppy drive '%s': eject it before migrating",
                    vm->name, d->path, d->name);
            break;
        case FY_DEV_PASSTHROUGH:
            add(r, FY_PRECHECK_REFUSE, "passthrough-device",
                "VM %s uses passthrough or raw-mapped device '%s'%s%s%s: remove it "
                "(or convert a raw-mapped disk to a virtual disk) before migrating",
                vm->name, d->name, d->path[0] ? " (" : "", d->path,
                d->path[0] ? ")" : "");
            break;
        case FY_DEV_CDROM:
            if (d->path[0] && stat(d->path, &st) != 0)
                add(r, FY_PRECHECK_WARN, "iso-missing",
                    "CD-ROM '%s' of VM %s has ISO image %s mounted, which does not "
                    "exist on target host %s: it will not be re-mounted",
                    d->name, vm->name, d->path, dst->name);
            break;
        case FY_DEV_NIC:
            break;
        }
    }
}

static void check_space(enum fy_migration_kind kind, const struct fy_vm_info *vm,
                        const struct fy_host_info *dst, const char *dst_datastore,
                        struct fy_precheck_report *r)
{
    const struct fy_datastore *ds;
    uint64_t need = 0;
    struct stat st;

    if (!moves_disks(kind) || !dst_datastore || !dst_datastore[0])
        return;
    if (!(ds = find_datastore(dst, dst_datastore))) {
        add(r, FY_PRECHECK_REFUSE, "datastore-missing",
            "target host %s has no datastore '%s': choose one of its datastores",
            dst->name, dst_datastore);
        return;
    }
    for (unsigned i = 0; i < vm->ndisks && i < FY_MAX_DISKS; i++) {
        const struct fy_disk *d = &vm->disks[i];
        /* A disk already on this (shared) datastore does not move. */
        if (ds->shared && strcmp(d->datastore, ds->name) == 0)
            continue;
        need += d->size;
        /* Base images move with it; their sizes are known where readable. */
        for (unsigned b = 0; b < d->nbacking && b < 4; b++)
            if (stat(d->backing[b], &st) == 0)
                need += (uint64_t)st.st_size;
    }
    if (kind == FY_MIG_QUICK)
        need += vm->mem_bytes;
    if (need > ds->free)
        add(r, FY_PRECHECK_REFUSE, "target-space",
            "datastore '%s' of target host %s has %llu bytes (%.2f GiB) free, "
            "VM %s needs %llu bytes (%.2f GiB) for its disks%s: free space there "
            "or choose another datastore",
            ds->name, dst->name, (unsigned long long)ds->free, gib(ds->free),
            vm->name, (unsigned long long)need, gib(need),
            kind == FY_MIG_QUICK ? " and saved memory image" : "");
}

static void check_capacity(const struct fy_vm_info *vm,
                           const struct fy_host_info *dst,
                           struct fy_precheck_report *r)
{
    if (dst->mem_free < vm->mem_bytes)
        add(r, FY_PRECHECK_REFUSE, "target-memory",
            "target host %s has %llu bytes (%.2f GiB) of memory free, VM %s needs "
            "%llu bytes (%.2f GiB): free memory there or choose another host",
            dst->name, (unsigned long long)dst->mem_free, gib(dst->mem_free),
            vm->name, (unsigned long long)vm->mem_bytes, gib(vm->mem_bytes));
    if (dst->cpus_free < vm->vcpus)
        add(r, FY_PRECHECK_REFUSE, "target-cpu",
            "target host %s has %u CPUs free, VM %s needs %u: free CPUs there "
            "or choose another host",
            dst->name, dst->cpus_free, vm->name, vm->vcpus);
}

int fy_prechecks_run(enum fy_migration_kind kind, const struct fy_vm_info *vm,
                     const struct fy_host_info *src,
                     const struct fy_host_info *dst,
                     const char *dst_datastore,
                     struct fy_precheck_report *out)
{
    char detail[1024];
    size_t len = 0;

    if (!vm || !src || !dst || !out)
        return fy_error(FY_E_INVAL, "prechecks: NULL argument");
    memset(out, 0, sizeof(*out));

    if (!vm->managed)
        add(out, FY_PRECHECK_REFUSE, "unmanaged",
            "VM %s is not managed by Ferry: mark it managed to migrate it", vm->name);
    if (strcmp(src->hypervisor, dst->hypervisor) != 0)
        add(out, FY_PRECHECK_REFUSE, "hypervisor-change",
            "VM %s runs on %s host %s, target host %s is %s: the hypervisor type "
            "cannot change during a migration; choose a %s host",
            vm->name, src->hypervisor, src->name, dst->name, dst->hypervisor,
            src->hypervisor);
    if (keeps_cpu_state(kind) && vm->power != FY_POWER_OFF) {
        const char *vendor = vm->cpu_vendor[0] ? vm->cpu_vendor : src->cpu_vendor;
        if (strcmp(vendor, dst->cpu_vendor) != 0)
            add(out, FY_PRECHECK_REFUSE, "cpu-vendor",
                "VM %s runs on a %s CPU, target host %s has %s: %s migration cannot "
                "cross CPU vendors; use cold migration or choose a %s host",
                vm->name, vendor, dst->name, dst->cpu_vendor,
                fy_migration_kind_name(kind), vendor);
    }
    if ((kind == FY_MIG_LIVE || kind == FY_MIG_QUICK) && vm->power != FY_POWER_RUNNING &&
        vm->power != FY_POWER_PAUSED)
        add(out, FY_PRECHECK_REFUSE, "not-running",
            "VM %s is not running: %s migration moves a running VM; use cold "
            "migration", vm->name, fy_migration_kind_name(kind));
    if (vm->dynamic_memory && (!src->dynamic_memory || !dst->dynamic_memory))
        add(out, FY_PRECHECK_REFUSE, "dynamic-memory",
            "VM %s uses dynamic memory, which %s host %s does not support: disable "
            "dynamic memory on the VM or choose another host",
            vm->name, !dst->dynamic_memory ? "target" : "source",
            !dst->dynamic_memory ? dst->name : src->name);
    check_devices(vm, dst, out);
    check_space(kind, vm, dst, dst_datastore, out);
    check_capacity(vm, dst, out);
    if (kind == FY_MIG_QUICK)
        add(out, FY_PRECHECK_WARN, "saved-state-image",
            "a saved-state image of %llu bytes is created for VM %s and moved "
            "to target host %s",
            (unsigned long long)vm->mem_bytes, vm->name, dst->name);

    if (!fy_prechecks_refused(out))
        return 0;
    detail[0] = '\0';
    for (unsigned i = 0; i < out->n && len < sizeof(detail); i++) {
        if (out->findings[i].level != FY_PRECHECK_REFUSE)
            continue;
        int w = snprintf(detail + len, sizeof(detail) - len, "%s%s",
                         len ? "; " : "", out->findings[i].message);
        if (w < 0)
            break;
        len += (size_t)w;
    }
    return fy_error(FY_E_PRECHECK, "%s", detail);
}

bool fy_prechecks_refused(const struct fy_precheck_report *r)
{
    for (unsigned i = 0; r && i < r->n; i++)
        if (r->findings[i].level == FY_PRECHECK_REFUSE)
            return true;
    return false;
}

const struct fy_precheck_finding *
fy_prechecks_find(const struct fy_precheck_report *r, const char *code)
{
    for (unsigned i = 0; r && code && i < r->n; i++)
        if (strcmp(r->findings[i].code, code) == 0)
            return &r->findings[i];
    return NULL;
}
