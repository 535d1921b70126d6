/* The skeleton driver: the smallest correct driver, made to be copied.
 *
 * It manages one pretend host whose VMs live in this process's memory: no
 * hypervisor, no disks, no guest.  Every operation a driver must have is
 * here and does the simplest right thing, so the conformance suite
 * (tests/conformance/) passes against it.  To write a driver for a real
 * hypervisor, copy this folder to drivers/<name>/, rename, and replace each
 * function's body as its comment says; docs/driver-guide.md walks through
 * it.
 *
 * It claims FY_DRV_COLD only: Ferry can move its VMs stopped (export,
 * define elsewhere, undefine here).  Claim more capabilities only with the
 * operations they require (include/ferry/driver.h).
 *
 * Errors: report with fy_error() where they happen and return its value.
 * fy_error() is provided by the program that loads the driver. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/driver.h"
#include "ferry/error.h"

/* REPLACE: a real driver asks the hypervisor; the skeleton keeps a fixed
 * number of VMs in an array. */
#define SKEL_MAX_VMS 16

#define GiB (1024ull * 1024 * 1024)

struct skel_vm {
    bool used;
    char name[FY_NAME_MAX];
    char uuid[40];
    enum fy_power power;
    uint64_t mem_bytes;
    unsigned vcpus;
    unsigned ndisks;
    struct fy_disk disks[FY_MAX_DISKS];
};

/* An instance.  REPLACE: hold your connection to the hypervisor here
 * (a libvirt virConnectPtr, a WinRM session, ...), not the VMs. */
struct fy_driver {
    char host[FY_NAME_MAX];
    unsigned next_uuid; /* for skel_uuid() */
    struct skel_vm vms[SKEL_MAX_VMS];
};

/* ---- helpers -------------------------------------------------------------- */

/* Copies 'src' into a fixed field, refusing what does not fit. */
static int skel_copy(char *dst, size_t size, const char *src, const char *what)
{
    size_t len = strlen(src);

    if (len == 0 || len >= size)
        return fy_error(FY_E_INVAL, "skeleton: %s '%s' must be 1 to %zu "
                        "characters", what, src, size - 1);
    memcpy(dst, src, len + 1);
    return 0;
}

/* REPLACE: look the VM up in the hypervisor. */
static struct skel_vm *skel_find(struct fy_driver *d, const char *vm)
{
    for (unsigned i = 0; i < SKEL_MAX_VMS; i++)
        if (d->vms[i].used && strcmp(d->vms[i].name, vm) == 0)
            return &d->vms[i];
    return NULL;
}

/* Like skel_find, reporting FY_E_NOTFOUND: every operation on a named VM
 * starts with this. */
static int skel_lookup(struct fy_driver *d, const char *vm,
                       struct skel_vm **out)
{
    *out = vm ? skel_find(d, vm) : NULL;
    if (!*out)
        return fy_error(FY_E_NOTFOUND, "skeleton host %s: no VM named '%s'; "
                        "list the VMs with vm_list", d->host,
                        vm ? vm : "(null)");
    return 0;
}

/* REPLACE: the hypervisor assigns UUIDs; keep the one it gives. */
static void skel_uuid(struct fy_driver *d, char *out, size_t size)
{
    snprintf(out, size, "5ce1e700-0000-4000-8000-%012x", ++d->next_uuid);
}

/* Registers a VM in the array.  REPLACE: the hypervisor's define call. */
static int skel_add(struct fy_driver *d, const struct skel_vm *vm)
{
    if (skel_find(d, vm->name))
        return fy_error(FY_E_EXISTS, "skeleton host %s: a VM named '%s' "
                        "exists already; choose another name", d->host,
                        vm->name);
    for (unsigned i = 0; i < SKEL_MAX_VMS; i++) {
        if (!d->vms[i].used) {
            d->vms[i] = *vm;
            d->vms[i].used = true;
            return 0;
        }
    }
    return fy_error(FY_E_NOSPACE, "skeleton host %s: already holds %d VMs, "
                    "its limit; undefine one first", d->host, SKEL_MAX_VMS);
}

/* ---- open and close ----------------------------------------------------- */

/* Parses "key=value;key=value".  REPLACE: your keys ("uri=...",
 * "endpoint=..."), documented in your driver's README.  Keep refusing
 * unknown keys with FY_E_CONFIG: a typo must not be silently ignored. */
static int skel_parse_config(struct fy_driver *d, const char *config)
{
    char *copy = strdup(config), *save = NULL, *item;
    int rc = 0;

    if (!copy)
        return fy_error(FY_E_NOMEM, "skeleton: no memory for the config");
    for (item = strtok_r(copy, ";", &save); item && rc == 0;
         item = strtok_r(NULL, ";", &save)) {
        char *value = strchr(item, '=');

        if (!value) {
            rc = fy_error(FY_E_CONFIG, "skeleton: config item '%s' is not "
                          "key=value", item);
            break;
        }
        *value++ = '\0';
        if (strcmp(item, "host") == 0) {
            rc = skel_copy(d->host, sizeof(d->host), value, "host name");
            if (rc < 0)
                rc = fy_error(FY_E_CONFIG, "skeleton: config key host: %s",
                              fy_error_detail());
        } else {
            rc = fy_error(FY_E_CONFIG, "skeleton: unknown config key '%s'; "
                          "the only key is host=NAME", item);
        }
    }
    free(copy);
    return rc;
}

/* Opens an instance.  REPLACE: parse your keys, connect to the hypervisor,
 * and fail with its error if it cannot be reached.  The skeleton creates
 * one stopped VM, "example", standing in for the VMs a real host already
 * has (the conformance suite copies an existing VM to test the lifecycle). */
static int skel_open(const char *config, struct fy_driver **out)
{
    struct fy_driver *d = calloc(1, sizeof(*d));
    struct skel_vm example = {
        .name = "example",
        .power = FY_POWER_OFF,
        .mem_bytes = 1 * GiB,
        .vcpus = 1,
        .ndisks = 1,
        .disks = { { .name = "vda", .path = "/var/lib/skeleton/example.img",
                     .datastore = "local", .virtual_size = 8 * GiB } },
    };
    int rc;

    if (!d)
        return fy_error(FY_E_NOMEM, "skeleton: no memory for an instance");
    strcpy(d->host, "skeleton-host");
    rc = skel_parse_config(d, config);
    if (rc < 0)
        goto fail;
    skel_uuid(d, example.uuid, sizeof(example.uuid));
    rc = skel_add(d, &example);
    if (rc < 0)
        goto fail;
    *out = d;
    return 0;

fail:
    free(d);
    return rc;
}

/* Closes an instance; VMs keep running.  REPLACE: disconnect.  The
 * skeleton's VMs live in the instance, so they go with it. */
static void skel_close(struct fy_driver *d)
{
    free(d);
}

/* ---- inventory ------------------------------------------------------------ */

/* REPLACE: ask the hypervisor for the host's name, CPU, memory, networks
 * and datastores.  Free figures must not exceed totals. */
static int skel_host_info(struct fy_driver *d, struct fy_host_info *out)
{
    uint64_t mem_used = 0;
    unsigned cpus_used = 0;

    for (unsigned i = 0; i < SKEL_MAX_VMS; i++) {
        const struct skel_vm *vm = &d->vms[i];

        if (vm->used && vm->power != FY_POWER_OFF) {
            mem_used += vm->mem_bytes;
            cpus_used += vm->vcpus;
        }
    }
    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "%s", d->host);
    strcpy(out->hypervisor, "skeleton");
    strcpy(out->cpu_vendor, "GenuineIntel");
    strcpy(out->cpu_model, "skeleton CPU");
    out->mem_total = 64 * GiB;
    out->mem_free = mem_used < out->mem_total ? out->mem_total - mem_used : 0;
    out->cpus_total = 16;
    out->cpus_free = cpus_used < out->cpus_total ? out->cpus_total - cpus_used
                                                 : 0;
    strcpy(out->net[FY_NET_MANAGEMENT], "127.0.0.1");
    out->ndatastores = 1;
    strcpy(out->datastores[0].name, "local");
    strcpy(out->datastores[0].path, "/var/lib/skeleton");
    out->datastores[0].capacity = 1024 * GiB;
    out->datastores[0].free = 1000 * GiB;
    return 0;
}

/* REPLACE: list the hypervisor's VMs.  'names' is malloc'd: the caller
 * frees it with free(). */
static int skel_vm_list(struct fy_driver *d, struct fy_vm_list *out)
{
    unsigned n = 0;

    out->n = 0;
    out->names = calloc(SKEL_MAX_VMS, sizeof(*out->names));
    if (!out->names)
        return fy_error(FY_E_NOMEM, "skeleton host %s: no memory for the VM "
                        "list", d->host);
    for (unsigned i = 0; i < SKEL_MAX_VMS; i++)
        if (d->vms[i].used)
            memcpy(out->names[n++], d->vms[i].name, FY_NAME_MAX);
    out->n = n;
    return 0;
}

/* REPLACE: fill from the hypervisor's description of the VM.  Unknown VMs
 * are FY_E_NOTFOUND. */
static int skel_vm_info(struct fy_driver *d, const char *name,
                        struct fy_vm_info *out)
{
    struct skel_vm *vm;
    int rc = skel_lookup(d, name, &vm);

    if (rc < 0)
        return rc;
    memset(out, 0, sizeof(*out));
    memcpy(out->name, vm->name, sizeof(out->name));
    memcpy(out->uuid, vm->uuid, sizeof(out->uuid));
    out->power = vm->power;
    out->mem_bytes = vm->mem_bytes;
    out->vcpus = vm->vcpus;
    strcpy(out->cpu_vendor, "GenuineIntel");
    out->managed = true;
    out->ndisks = vm->ndisks;
    memcpy(out->disks, vm->disks, sizeof(vm->disks));
    return 0;
}

/* ---- lifecycle ------------------------------------------------------------ */

/* Moves 'vm' from power state 'from' to 'to', refusing any other state.
 * REPLACE: each caller below with the hypervisor's call. */
static int skel_power(struct fy_driver *d, const char *name, const char *verb,
                      enum fy_power from, enum fy_power to)
{
    struct skel_vm *vm;
    int rc = skel_lookup(d, name, &vm);

    if (rc < 0)
        return rc;
    if (vm->power != from)
        return fy_error(FY_E_INVAL, "skeleton host %s: cannot %s VM '%s': "
                        "it is %s", d->host, verb, name,
                        vm->power == FY_POWER_RUNNING ? "running"
                        : vm->power == FY_POWER_PAUSED ? "paused"
                        : vm->power == FY_POWER_SUSPENDED ? "suspended"
                                                          : "off");
    vm->power = to;
    return 0;
}

static int skel_vm_start(struct fy_driver *d, const char *vm)
{
    return skel_power(d, vm, "start", FY_POWER_OFF, FY_POWER_RUNNING);
}

/* REPLACE: with force, power off; otherwise ask the guest to shut down and
 * wait (within your timeout).  A paused VM can be stopped too. */
static int skel_vm_stop(struct fy_driver *d, const char *name, bool force)
{
    struct skel_vm *vm;
    int rc = skel_lookup(d, name, &vm);

    (void)force;
    if (rc < 0)
        return rc;
    if (vm->power == FY_POWER_PAUSED)
        return skel_power(d, name, "stop", FY_POWER_PAUSED, FY_POWER_OFF);
    return skel_power(d, name, "stop", FY_POWER_RUNNING, FY_POWER_OFF);
}

static int skel_vm_pause(struct fy_driver *d, const char *vm)
{
    return skel_power(d, vm, "pause", FY_POWER_RUNNING, FY_POWER_PAUSED);
}

static int skel_vm_resume(struct fy_driver *d, const char *vm)
{
    return skel_power(d, vm, "resume", FY_POWER_PAUSED, FY_POWER_RUNNING);
}

/* ---- export, define, undefine ---------------------------------------------- */

/* The exported configuration is lines of "key=value":
 *
 *     name=example
 *     uuid=...
 *     mem=1073741824
 *     vcpus=1
 *     disk=vda local 8589934592 /var/lib/skeleton/example.img
 *
 * REPLACE: export whatever your hypervisor defines a VM from (libvirt
 * domain XML, a Hyper-V export path, ...); only your own vm_define reads
 * it.  '*out' is malloc'd: the caller frees it. */
static int skel_vm_export(struct fy_driver *d, const char *name, char **out)
{
    struct skel_vm *vm;
    char *buf = NULL;
    size_t size = 0;
    FILE *f;
    int rc = skel_lookup(d, name, &vm);

    if (rc < 0)
        return rc;
    f = open_memstream(&buf, &size);
    if (!f)
        return fy_error_sys("skeleton host %s: exporting VM '%s'", d->host,
                            name);
    fprintf(f, "name=%s\nuuid=%s\nmem=%llu\nvcpus=%u\n", vm->name, vm->uuid,
            (unsigned long long)vm->mem_bytes, vm->vcpus);
    for (unsigned i = 0; i < vm->ndisks; i++)
        fprintf(f, "disk=%s %s %llu %s\n", vm->disks[i].name,
                vm->disks[i].datastore,
                (unsigned long long)vm->disks[i].virtual_size,
                vm->disks[i].path);
    if (fclose(f) != 0) {
        free(buf);
        return fy_error(FY_E_NOMEM, "skeleton host %s: no memory to export "
                        "VM '%s'", d->host, name);
    }
    *out = buf;
    return 0;
}

/* Reads one "disk=NAME DATASTORE SIZE PATH" value. */
static int skel_parse_disk(const char *value, struct fy_disk *disk)
{
    unsigned long long size;
    int path_at = -1;

    memset(disk, 0, sizeof(*disk));
    if (sscanf(value, "%63s %63s %llu %n", disk->name, disk->datastore, &size,
               &path_at) != 3 || path_at < 0)
        return fy_error(FY_E_INVAL, "skeleton: disk line '%s' is not "
                        "'NAME DATASTORE SIZE PATH'", value);
    disk->virtual_size = size;
    return skel_copy(disk->path, sizeof(disk->path), value + path_at,
                     "disk path");
}

/* Parses an exported configuration into 'vm'. */
static int skel_parse_export(const char *config, struct skel_vm *vm)
{
    char *copy = strdup(config), *save = NULL, *line;
    int rc = 0;

    if (!copy)
        return fy_error(FY_E_NOMEM, "skeleton: no memory to define a VM");
    memset(vm, 0, sizeof(*vm));
    for (line = strtok_r(copy, "\n", &save); line && rc == 0;
         line = strtok_r(NULL, "\n", &save)) {
        char *value = strchr(line, '=');

        if (!value) {
            rc = fy_error(FY_E_INVAL, "skeleton: configuration line '%s' is "
                          "not key=value", line);
            break;
        }
        *value++ = '\0';
        if (strcmp(line, "name") == 0)
            rc = skel_copy(vm->name, sizeof(vm->name), value, "VM name");
        else if (strcmp(line, "uuid") == 0)
            rc = skel_copy(vm->uuid, sizeof(vm->uuid), value, "UUID");
        else if (strcmp(line, "mem") == 0)
            vm->mem_bytes = strtoull(value, NULL, 10);
        else if (strcmp(line, "vcpus") == 0)
            vm->vcpus = (unsigned)strtoul(value, NULL, 10);
        else if (strcmp(line, "disk") == 0 && vm->ndisks == FY_MAX_DISKS)
            rc = fy_error(FY_E_INVAL, "skeleton: more than %d disks",
                          FY_MAX_DISKS);
        else if (strcmp(line, "disk") == 0)
            rc = skel_parse_disk(value, &vm->disks[vm->ndisks++]);
        else
            rc = fy_error(FY_E_INVAL, "skeleton: unknown configuration key "
                          "'%s'; was it exported by the skeleton driver?",
                          line);
    }
    free(copy);
    if (rc == 0 && (!vm->name[0] || vm->mem_bytes == 0 || vm->vcpus == 0))
        rc = fy_error(FY_E_INVAL, "skeleton: the configuration lacks a name, "
                      "mem or vcpus; was it exported by the skeleton driver?");
    return rc;
}

/* REPLACE: hand the configuration to the hypervisor, with the name and
 * disk paths substituted.  A copy under a new name gets a new UUID; the
 * same VM moved to another host keeps its own. */
static int skel_vm_define(struct fy_driver *d, const char *config,
                          const char *name, const char *const *disk_paths,
                          unsigned ndisks)
{
    struct skel_vm vm;
    int rc;

    if (!config)
        return fy_error(FY_E_INVAL, "skeleton host %s: no configuration to "
                        "define a VM from", d->host);
    rc = skel_parse_export(config, &vm);
    if (rc < 0)
        return rc;
    if (disk_paths && ndisks != vm.ndisks)
        return fy_error(FY_E_INVAL, "skeleton host %s: VM '%s' has %u disks "
                        "but %u new paths were given", d->host, vm.name,
                        vm.ndisks, ndisks);
    for (unsigned i = 0; disk_paths && i < ndisks; i++) {
        rc = skel_copy(vm.disks[i].path, sizeof(vm.disks[i].path),
                       disk_paths[i], "disk path");
        if (rc < 0)
            return rc;
    }
    if (name) {
        rc = skel_copy(vm.name, sizeof(vm.name), name, "VM name");
        if (rc < 0)
            return rc;
        skel_uuid(d, vm.uuid, sizeof(vm.uuid));
    } else if (!vm.uuid[0]) {
        skel_uuid(d, vm.uuid, sizeof(vm.uuid));
    }
    vm.power = FY_POWER_OFF;
    return skel_add(d, &vm);
}

/* REPLACE: unregister the VM with the hypervisor, leaving its disk files.
 * A VM that is not off is refused: Ferry stops it first. */
static int skel_vm_undefine(struct fy_driver *d, const char *name)
{
    struct skel_vm *vm;
    int rc = skel_lookup(d, name, &vm);

    if (rc < 0)
        return rc;
    if (vm->power != FY_POWER_OFF)
        return fy_error(FY_E_BUSY, "skeleton host %s: VM '%s' is not off; "
                        "stop it before undefining it", d->host, name);
    memset(vm, 0, sizeof(*vm));
    return 0;
}

/* ---- the table ------------------------------------------------------------- */

/* REPLACE: name (the <name> of ferry-<name>.so), description, and caps.
 * Operations the skeleton leaves NULL are optional for a cold-only driver;
 * each capability you add lists the ones it needs in driver.h. */
static const struct fy_driver_ops skeleton_ops = {
    .abi = FY_DRIVER_ABI,
    .name = "skeleton",
    .description = "in-memory example driver to copy (cold migration only)",
    .caps = FY_DRV_COLD,
    .open = skel_open,
    .close = skel_close,
    .host_info = skel_host_info,
    .vm_list = skel_vm_list,
    .vm_info = skel_vm_info,
    .vm_start = skel_vm_start,
    .vm_stop = skel_vm_stop,
    .vm_pause = skel_vm_pause,
    .vm_resume = skel_vm_resume,
    .vm_export = skel_vm_export,
    .vm_define = skel_vm_define,
    .vm_undefine = skel_vm_undefine,
};

FY_DRIVER_REGISTER(skeleton_ops)
