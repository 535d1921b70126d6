/* Inventory and lifecycle of libvirt domains: the contract's VM operations
 * (include/ferry/driver.h) on libvirt's API.
 *
 * A VM's configuration, as Ferry carries it between hosts, is its domain
 * XML: the running definition for a running VM (what the target's QEMU must
 * match for its device state to load), the persistent one otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "drivers/libvirt/lv.h"

int lv_power(virDomainPtr dom, enum fy_power *out)
{
    int state, reason;

    if (virDomainGetState(dom, &state, &reason, 0) < 0)
        return lv_fail(FY_E_IO, "VM %s: cannot read its state", virDomainGetName(dom));
    switch (state) {
    case VIR_DOMAIN_RUNNING:
    case VIR_DOMAIN_BLOCKED:
    case VIR_DOMAIN_SHUTDOWN: /* shutting down: still running */
        *out = FY_POWER_RUNNING;
        break;
    case VIR_DOMAIN_PAUSED:
        *out = FY_POWER_PAUSED;
        break;
    case VIR_DOMAIN_PMSUSPENDED:
        *out = FY_POWER_SUSPENDED;
        break;
    default:
        *out = virDomainHasManagedSaveImage(dom, 0) == 1 ? FY_POWER_SUSPENDED : FY_POWER_OFF;
        break;
    }
    return 0;
}

int lv_vm_list(struct fy_driver *d, struct fy_vm_list *out)
{
    virDomainPtr *doms = NULL;
    int n;

    out->n = 0;
    out->names = NULL;
    if ((n = virConnectListAllDomains(d->conn, &doms, 0)) < 0)
        return lv_fail(FY_E_IO, "libvirt host %s: cannot list its VMs", d->host);
    if (n > 0 && !(out->names = calloc((size_t)n, sizeof(*out->names)))) {
        for (int i = 0; i < n; i++)
            virDomainFree(doms[i]);
        free(doms);
        return fy_error(FY_E_NOMEM, "no memory for the VM list of host %s", d->host);
    }
    for (int i = 0; i < n; i++) {
        snprintf(out->names[out->n++], FY_NAME_MAX, "%s", virDomainGetName(doms[i]));
        virDomainFree(doms[i]);
    }
    free(doms);
    return 0;
}

int lv_vm_info(struct fy_driver *d, const char *vm, struct fy_vm_info *out)
{
    virDomainPtr dom;
    enum fy_power power;
    char *xml = NULL, model[FY_NAME_MAX];
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = lv_lookup(d, vm, &dom)) < 0)
        return rc;
    if ((rc = lv_power(dom, &power)) < 0)
        goto out;
    if (!(xml = virDomainGetXMLDesc(dom, power == FY_POWER_RUNNING ||
                                             power == FY_POWER_PAUSED
                                         ? 0 : VIR_DOMAIN_XML_INACTIVE))) {
        rc = lv_fail(FY_E_IO, "VM %s: cannot read its XML", vm);
        goto out;
    }
    if ((rc = lv_xml_info(xml, out)) < 0)
        goto out;
    out->power = power;
    if (power == FY_POWER_RUNNING || power == FY_POWER_PAUSED)
        lv_host_cpu(d, out->cpu_vendor, sizeof(out->cpu_vendor), model, sizeof(model));
    for (unsigned i = 0; i < out->ndisks; i++) {
        struct fy_disk *k = &out->disks[i];
        const struct lv_datastore *ds = lv_datastore_of(d, k->path);

        snprintf(k->datastore, sizeof(k->datastore), "%s", ds ? ds->name : "");
        if ((rc = lv_disk_chain(k)) < 0)
            goto out;
    }
out:
    free(xml);
    virDomainFree(dom);
    return rc;
}

int lv_vm_start(struct fy_driver *d, const char *vm)
{
    virDomainPtr dom;
    int rc;

    if ((rc = lv_lookup(d, vm, &dom)) < 0)
        return rc;
    if (virDomainIsActive(dom) == 1)
        rc = fy_error(FY_E_INVAL, "VM %s on host %s is running already", vm, d->host);
    else if (virDomainCreate(dom) < 0)
        rc = lv_fail(FY_E_IO, "VM %s on host %s does not start", vm, d->host);
    virDomainFree(dom);
    return rc;
}

/* Asks the guest to shut down (ACPI power button) and waits until it has. */
static int shutdown_guest(struct fy_driver *d, virDomainPtr dom, const char *vm)
{
    struct timespec t0, t;

    if (virDomainShutdown(dom) < 0)
        return lv_fail(FY_E_IO, "VM %s: the shutdown request failed", vm);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int active = virDomainIsActive(dom);
        if (active == 0)
            return 0;
        if (active < 0)
            return lv_fail(FY_E_IO, "VM %s: cannot read its state", vm);
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec >= d->shutdown_s)
            return fy_error(FY_E_TIMEOUT, "VM %s did not shut down within %d s of the "
                            "request: check that its guest handles the ACPI power "
                            "button, or stop it forcibly", vm, d->shutdown_s);
        usleep(100000);
    }
}

int lv_vm_stop(struct fy_driver *d, const char *vm, bool force)
{
    virDomainPtr dom;
    int rc;

    if ((rc = lv_lookup(d, vm, &dom)) < 0)
        return rc;
    if (virDomainIsActive(dom) == 1) {
        if (force) {
            if (virDomainDestroy(dom) < 0)
                rc = lv_fail(FY_E_IO, "VM %s on host %s: cannot power it off", vm, d->host);
        } else {
            rc = shutdown_guest(d, dom, vm);
        }
    }
    if (rc == 0)
        lv_memory_forget(d, dom);
    virDomainFree(dom);
    return rc;
}

int lv_vm_pause(struct fy_driver *d, const char *vm)
{
    virDomainPtr dom;
    enum fy_power p;
    int rc;

    if ((rc = lv_lookup(d, vm, &dom)) < 0)
        return rc;
    if ((rc = lv_power(dom, &p)) == 0 && p != FY_POWER_PAUSED) {
        if (p != FY_POWER_RUNNING)
            rc = fy_error(FY_E_INVAL, "VM %s on host %s is not running", vm, d->host);
        else if (virDomainSuspend(dom) < 0)
            rc = lv_fail(FY_E_IO, "VM %s on host %s: cannot pause it", vm, d->host);
    }
    virDomainFree(dom);
    return rc;
}

int lv_vm_resume(struct fy_driver *d, const char *vm)
{
    virDomainPtr dom;
    enum fy_power p;
    int rc;

    if ((rc = lv_lookup(d, vm, &dom)) < 0)
        return rc;
    if ((rc = lv_power(dom, &p)) == 0 && p != FY_POWER_RUNNING) {
        if (p != FY_POWER_PAUSED)
            rc = fy_error(FY_E_INVAL, "VM %s on host %s is not paused", vm, d->host);
        else if (virDomainResume(dom) < 0)
            rc = lv_fail(FY_E_IO, "VM %s on host %s: cannot resume it", vm, d->host);
    }
    virDomainFree(dom);
    return rc;
}

int lv_vm_export(struct fy_driver *d, const char *vm, char **out)
{
    virDomainPtr dom;
    int rc, active;

    *out = NULL;
    if ((rc = lv_lookup(d, vm, &dom)) < 0)
        return rc;
    active = virDomainIsActive(dom);
    /* MIGRATABLE: without what libvirt adds at run time (aliases, the
     * default devices it would add again), as libvirt's own migration. */
    if (!(*out = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_SECURE |
                                              VIR_DOMAIN_XML_MIGRATABLE |
                                              (active == 1 ? 0 : VIR_DOMAIN_XML_INACTIVE))))
        rc = lv_fail(FY_E_IO, "VM %s: cannot read its XML", vm);
    virDomainFree(dom);
    return rc;
}

int lv_vm_define(struct fy_driver *d, const char *config, const char *name,
                 const char *const *disk_paths, unsigned ndisks)
{
    char vm[FY_NAME_MAX];
    char *xml = NULL;
    virDomainPtr dom;
    int rc;

    lv_xml_name(config, vm, sizeof(vm));
    if (name)
        snprintf(vm, sizeof(vm), "%s", name);
    if (!vm[0])
        return fy_error(FY_E_INVAL, "libvirt: the configuration is not domain XML with a "
                        "name");
    if ((dom = virDomainLookupByName(d->conn, vm))) {
        virDomainFree(dom);
        return fy_error(FY_E_EXISTS, "libvirt host %s: a VM named %s exists already; "
                        "choose another name", d->host, vm);
    }
    if ((rc = lv_xml_rewrite(config, name, disk_paths, disk_paths ? ndisks : 0,
                             LV_XML_KEEP, &xml)) < 0)
        return rc;
    /* A moved disk refers to its base images by the files beside it. */
    for (unsigned i = 0; disk_paths && i < ndisks && rc == 0; i++)
        if (disk_paths[i])
            rc = lv_disk_relink(disk_paths[i]);
    if (rc == 0 && !(dom = virDomainDefineXML(d->conn, xml)))
        rc = lv_fail(FY_E_IO, "libvirt host %s: cannot define VM %s", d->host, vm);
    else if (rc == 0)
        virDomainFree(dom);
    free(xml);
    return rc;
}

int lv_vm_undefine(struct fy_driver *d, const char *vm)
{
    virDomainPtr dom;
    int rc;

    if ((rc = lv_lookup(d, vm, &dom)) < 0)
        return rc;
    if (virDomainIsActive(dom) == 1)
        rc = fy_error(FY_E_BUSY, "VM %s on host %s is running: stop it first", vm, d->host);
    else if (virDomainUndefineFlags(dom, VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                                             VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                                             VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA |
                                             VIR_DOMAIN_UNDEFINE_KEEP_NVRAM) < 0)
        rc = lv_fail(FY_E_IO, "VM %s on host %s: cannot undefine it", vm, d->host);
    if (rc == 0)
        lv_memory_forget(d, dom);
    virDomainFree(dom);
    return rc;
}

int lv_vm_rename(struct fy_driver *d, const char *vm, const char *name)
{
    virDomainPtr dom;
    int rc;

    if ((rc = lv_lookup(d, vm, &dom)) < 0)
        return rc;
    if (virDomainRename(dom, name, 0) < 0)
        rc = lv_fail(FY_E_IO, "VM %s on host %s: cannot rename it to %s (libvirt renames "
                     "only stopped VMs)", vm, d->host, name);
    virDomainFree(dom);
    return rc;
}

/* Quick migration through an image, for hosts that cannot do RAM-direct:
 * libvirt's own save file (QEMU's migration stream with all of RAM). */
int lv_vm_suspend(struct fy_driver *d, const char *vm, const char *image)
{
    virDomainPtr dom;
    int rc;

    if ((rc = lv_lookup(d, vm, &dom)) < 0)
        return rc;
    if (virDomainSaveFlags(dom, image, NULL, 0) < 0)
        rc = lv_fail(FY_E_IO, "VM %s on host %s: cannot save it to %s", vm, d->host, image);
    else
        lv_memory_forget(d, dom);
    virDomainFree(dom);
    return rc;
}

int lv_vm_restore(struct fy_driver *d, const char *vm, const char *image)
{
    virDomainPtr dom = virDomainLookupByName(d->conn, vm);
    char *xml = NULL;
    int rc = 0;

    /* The VM defined here (paths of this host) wins over the XML in the
     * image (the source's). */
    if (dom)
        xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE |
                                           VIR_DOMAIN_XML_MIGRATABLE);
    if (virDomainRestoreFlags(d->conn, image, xml, VIR_DOMAIN_SAVE_RUNNING) < 0)
        rc = lv_fail(FY_E_IO, "VM %s on host %s: cannot restore it from %s", vm, d->host,
                     image);
    free(xml);
    if (dom)
        virDomainFree(dom);
    return rc;
}
