/* Sim VMs: inventory, lifecycle, configuration files and disks.
 *
 * A VM is DIR/vms/NAME.conf (its configuration, rewritten at each change
 * of power state) and DIR/vms/NAME.mem (its memory, kept while the VM is
 * defined).  Every operation holds the instance lock for its whole run. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "drivers/sim/sim_priv.h"
#include "ferry/classifier.h"

#define CHILD_CONTENT (256u << 10) /* bytes written into a new disk */
#define BASE_CONTENT (1u << 20)    /* ... and into a new base image */
#define SEED_VM_MEM (64ull << 20)

/* DIR/vms/NAME.EXT into buf[FY_PATH_MAX + 80]. */
static void vm_file(const struct fy_driver *d, const char *name,
                    const char *ext, char *buf)
{
    snprintf(buf, FY_PATH_MAX + 80, "%s/vms/%s.%s", d->state, name, ext);
}

struct sim_vm *sim_vm_find(struct fy_driver *d, const char *name)
{
    if (!name)
        return NULL;
    for (struct sim_vm *vm = d->vms; vm; vm = vm->next)
        if (!strcmp(vm->conf.name, name))
            return vm;
    return NULL;
}

/* The VM or FY_E_NOTFOUND, for the operations' first line. */
static int lookup(struct fy_driver *d, const char *name, struct sim_vm **out)
{
    *out = sim_vm_find(d, name);
    if (!*out)
        return fy_error(FY_E_NOTFOUND, "no VM named '%s' on sim host %s",
                        name ? name : "(null)", d->name);
    return 0;
}

static int save_conf(struct fy_driver *d, const struct sim_vm *vm)
{
    char path[FY_PATH_MAX + 80], tmp[FY_PATH_MAX + 88], *text;
    FILE *f;
    int rc = sim_vmconf_format(&vm->conf, &text);

    if (rc)
        return rc;
    vm_file(d, vm->conf.name, "conf", path);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "we");
    if (!f) {
        free(text);
        return fy_error_sys("cannot write %s", tmp);
    }
    fputs(text, f);
    free(text);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        return fy_error_sys("cannot write %s", path);
    return 0;
}

/* Records a new power state; the change is lost (with a reported error)
 * only if the file cannot be written. */
static int set_power(struct fy_driver *d, struct sim_vm *vm, enum fy_power p)
{
    vm->conf.power = p;
    return save_conf(d, vm);
}

static void free_vm(struct sim_vm *vm)
{
    sim_guest_fini(&vm->guest);
    if (vm->fd >= 0)
        close(vm->fd);
    free(vm);
}

/* Takes over 'fd' (closed on failure) and links the VM in. */
static int add_vm(struct fy_driver *d, const struct sim_vmconf *c, int fd,
                  struct sim_vm **out)
{
    struct sim_vm *vm = calloc(1, sizeof(*vm));
    int rc;

    if (!vm) {
        close(fd);
        return fy_error(FY_E_NOMEM, "no memory for VM %s", c->name);
    }
    vm->conf = *c;
    vm->fd = fd;
    rc = sim_guest_init(&vm->guest, fd, c);
    if (rc) {
        close(fd);
        free(vm);
        return rc;
    }
    vm->next = d->vms;
    d->vms = vm;
    *out = vm;
    return 0;
}

static void unlink_vm(struct fy_driver *d, struct sim_vm *vm)
{
    for (struct sim_vm **p = &d->vms; *p; p = &(*p)->next) {
        if (*p == vm) {
            *p = vm->next;
            return;
        }
    }
}

static void make_uuid(char *out)
{
    uint8_t b[16];

    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
        uint64_t x = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^ (uint64_t)time(NULL);
        for (unsigned i = 0; i < 16; i++, x = x * 6364136223846793005ull + 1)
            b[i] = (uint8_t)(x >> 56);
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5],
             b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* Creates a disk image of 'vsize' bytes (sparse) whose first 'content'
 * bytes hold data, so it occupies real blocks.  Leaves an existing file. */
static int create_image(const char *path, uint64_t vsize, size_t content)
{
    uint8_t *buf;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    int rc = 0;

    if (fd < 0)
        return errno == EEXIST ? 0 : fy_error_sys("cannot create disk image %s",
                                                  path);
    if (content > vsize)
        content = (size_t)vsize;
    buf = malloc(content ? content : 1);
    if (!buf) {
        rc = fy_error(FY_E_NOMEM, "no memory to create disk image %s", path);
    } else {
        uint64_t x = 0x2545f4914f6cdd1dull ^ (uint64_t)content;
        for (size_t i = 0; i < content; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = (uint8_t)x;
        }
        if (pwrite(fd, buf, content, 0) != (ssize_t)content ||
            ftruncate(fd, (off_t)vsize) != 0)
            rc = fy_error_sys("cannot write disk image %s", path);
    }
    free(buf);
    close(fd);
    if (rc)
        unlink(path);
    return rc;
}

/* The directory part of 'path' joined with relative 'rel' into out. */
static void resolve_rel(const char *path, const char *rel, char *out)
{
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path) : 1;

    if (rel[0] == '/' || !slash)
        snprintf(out, FY_PATH_MAX, "%s", rel);
    else
        snprintf(out, FY_PATH_MAX, "%.*s/%s", dirlen, path, rel);
}

/* Places each disk of 'c': an explicit path (disk_paths[i], else the
 * config's) is registered as it is; a disk without one is created, with
 * its backing files, in its datastore as DS/VM-DISK.img. */
static int place_disks(struct fy_driver *d, struct sim_vmconf *c,
                       const char *const *disk_paths, unsigned ndisks)
{
    if (disk_paths && ndisks > c->ndisks)
        return fy_error(FY_E_INVAL, "%u disk paths given for VM %s, which has "
                        "%u disks", ndisks, c->name, c->ndisks);
    for (unsigned i = 0; i < c->ndisks; i++) {
        struct fy_disk *disk = &c->disks[i];
        const struct sim_datastore *ds;
        int rc;

        if (disk_paths && i < ndisks && disk_paths[i]) {
            if (strlen(disk_paths[i]) >= FY_PATH_MAX)
                return fy_error(FY_E_INVAL, "disk path %s too long", disk_paths[i]);
            strcpy(disk->path, disk_paths[i]);
            /* The datastore is the one the new path lies in, if any. */
            for (unsigned k = 0; k < d->ndatastores; k++) {
                size_t n = strlen(d->datastores[k].path);
                if (!strncmp(disk->path, d->datastores[k].path, n) &&
                    disk->path[n] == '/')
                    strcpy(disk->datastore, d->datastores[k].name);
            }
            continue;
        }
        if (disk->path[0])
            continue;
        ds = sim_datastore_find(d, disk->datastore);
        if (!ds)
            return fy_error(FY_E_NOTFOUND, "disk %s of VM %s is on datastore "
                            "%s, which sim host %s does not have", disk->name,
                            c->name, disk->datastore, d->name);
        char path[FY_PATH_MAX];
        if (snprintf(path, sizeof(path), "%s/%s-%s.img", ds->path, c->name,
                     disk->name) >= (int)sizeof(path))
            return fy_error(FY_E_INVAL, "path of disk %s of VM %s too long",
                            disk->name, c->name);
        strcpy(disk->path, path);
        for (unsigned b = 0; b < disk->nbacking; b++) {
            resolve_rel(disk->path, disk->backing[b], path);
            rc = create_image(path, disk->virtual_size, BASE_CONTENT);
            if (rc)
                return rc;
        }
        rc = create_image(disk->path, disk->virtual_size, CHILD_CONTENT);
        if (rc)
            return rc;
    }
    return 0;
}

/* Registers VM 'c' (its name checked free): its memory file is filled
 * with the start pattern, or zero for an incoming VM.  On failure nothing
 * of the VM is left but disk files it created. */
static int define(struct fy_driver *d, struct sim_vmconf *c,
                  const char *const *disk_paths, unsigned ndisks, bool zero,
                  struct sim_vm **out)
{
    char mem[FY_PATH_MAX + 80], conf[FY_PATH_MAX + 80];
    struct sim_vm *vm = NULL;
    int fd, rc;

    if (sim_vm_find(d, c->name))
        return fy_error(FY_E_EXISTS, "a VM named %s already exists on sim host "
                        "%s: undefine it or choose another name", c->name,
                        d->name);
    if (!c->uuid[0])
        make_uuid(c->uuid);
    rc = place_disks(d, c, disk_paths, ndisks);
    if (rc)
        return rc;
    vm_file(d, c->name, "mem", mem);
    fd = sim_mem_create(mem, c, zero);
    if (fd < 0)
        return fd;
    rc = add_vm(d, c, fd, &vm);
    if (!rc)
        rc = save_conf(d, vm);
    if (rc) {
        if (vm) {
            unlink_vm(d, vm);
            free_vm(vm);
        }
        vm_file(d, c->name, "conf", conf);
        unlink(conf);
        unlink(mem);
        return rc;
    }
    *out = vm;
    return 0;
}

static int parse_for_define(const char *config, const char *name,
                            struct sim_vmconf *c)
{
    int rc = sim_vmconf_parse(config, c);

    if (rc)
        return rc;
    if (name) {
        if (!sim_name_ok(name))
            return fy_error(FY_E_INVAL, "VM name '%s' must be 1-%d letters, "
                            "digits, '.', '_' or '-'", name, FY_NAME_MAX - 1);
        strcpy(c->name, name);
    }
    return 0;
}

int sim_vm_define(struct fy_driver *d, const char *config, const char *name,
                  const char *const *disk_paths, unsigned ndisks)
{
    struct sim_vmconf c;
    struct sim_vm *vm;
    int rc;

    if (!d)
        return fy_error(FY_E_INVAL, "sim driver: no instance");
    rc = parse_for_define(config, name, &c);
    if (rc)
        return rc;
    c.power = FY_POWER_OFF;
    pthread_mutex_lock(&d->lock);
    rc = define(d, &c, disk_paths, ndisks, false, &vm);
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int sim_incoming_prepare(struct fy_driver *d, const char *config,
                         const char *name)
{
    struct sim_vmconf c;
    struct sim_vm *vm;
    int rc;

    if (!d)
        return fy_error(FY_E_INVAL, "sim driver: no instance");
    rc = parse_for_define(config, name, &c);
    if (rc)
        return rc;
    /* Paused with no thread yet: vm_resume starts the workload on the
     * memory (and device state) the migration brought. */
    c.power = FY_POWER_PAUSED;
    pthread_mutex_lock(&d->lock);
    rc = define(d, &c, NULL, 0, true, &vm);
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int sim_vm_undefine(struct fy_driver *d, const char *name)
{
    char path[FY_PATH_MAX + 80];
    struct sim_vm *vm;
    int rc;

    pthread_mutex_lock(&d->lock);
    rc = lookup(d, name, &vm);
    if (!rc && (vm->conf.power == FY_POWER_RUNNING ||
                vm->conf.power == FY_POWER_PAUSED))
        rc = fy_error(FY_E_BUSY, "VM %s is %s: stop it first", name,
                      sim_power_name(vm->conf.power));
    if (!rc) {
        unlink_vm(d, vm);
        vm_file(d, name, "conf", path);
        unlink(path);
        vm_file(d, name, "mem", path);
        unlink(path);
        free_vm(vm);
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int sim_vm_list(struct fy_driver *d, struct fy_vm_list *out)
{
    unsigned n = 0, i = 0;

    if (!d || !out)
        return fy_error(FY_E_INVAL, "vm_list: no instance or output");
    pthread_mutex_lock(&d->lock);
    for (struct sim_vm *vm = d->vms; vm; vm = vm->next)
        n++;
    out->n = 0;
    out->names = n ? malloc(n * sizeof(*out->names)) : NULL;
    if (n && !out->names) {
        pthread_mutex_unlock(&d->lock);
        return fy_error(FY_E_NOMEM, "no memory for a list of %u VMs", n);
    }
    /* Oldest first: the list is kept newest first. */
    for (struct sim_vm *vm = d->vms; vm; vm = vm->next, i++)
        strcpy(out->names[n - 1 - i], vm->conf.name);
    out->n = n;
    pthread_mutex_unlock(&d->lock);
    return 0;
}

int sim_vm_info(struct fy_driver *d, const char *name, struct fy_vm_info *out)
{
    struct sim_vm *vm;
    int rc;

    if (!out)
        return fy_error(FY_E_INVAL, "vm_info: no output");
    pthread_mutex_lock(&d->lock);
    rc = lookup(d, name, &vm);
    if (!rc) {
        const struct sim_vmconf *c = &vm->conf;

        memset(out, 0, sizeof(*out));
        strcpy(out->name, c->name);
        strcpy(out->uuid, c->uuid);
        out->power = c->power;
        out->mem_bytes = c->mem_bytes;
        out->vcpus = c->vcpus;
        strcpy(out->cpu_vendor, c->cpu_vendor);
        out->dynamic_memory = c->dynamic_memory;
        out->managed = c->managed;
        out->ndevices = c->ndevices;
        memcpy(out->devices, c->devices, sizeof(out->devices));
        out->ndisks = c->ndisks;
        for (unsigned i = 0; i < c->ndisks; i++) {
            struct fy_disk *o = &out->disks[i];
            struct stat st;

            *o = c->disks[i];
            o->size = stat(o->path, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
            for (unsigned b = 0; b < o->nbacking; b++)
                resolve_rel(o->path, c->disks[i].backing[b], o->backing[b]);
        }
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

static int wrong_state(const struct sim_vm *vm, const char *fix)
{
    return fy_error(FY_E_INVAL, "VM %s is %s: %s", vm->conf.name,
                    sim_power_name(vm->conf.power), fix);
}

int sim_vm_start(struct fy_driver *d, const char *name)
{
    struct sim_vm *vm;
    int rc;

    pthread_mutex_lock(&d->lock);
    rc = lookup(d, name, &vm);
    if (!rc) {
        switch (vm->conf.power) {
        case FY_POWER_OFF:
            rc = sim_guest_run(&vm->guest, name);
            if (!rc)
                rc = set_power(d, vm, FY_POWER_RUNNING);
            break;
        case FY_POWER_RUNNING:
            rc = wrong_state(vm, "it needs no start");
            break;
        case FY_POWER_PAUSED:
            rc = wrong_state(vm, "resume it instead");
            break;
        case FY_POWER_SUSPENDED:
            rc = wrong_state(vm, "restore it from its image instead");
            break;
        }
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

/* The sim guest has no shutdown handshake: 'force' or not, it stops. */
int sim_vm_stop(struct fy_driver *d, const char *name, bool force)
{
    struct sim_vm *vm;
    int rc;

    (void)force;
    pthread_mutex_lock(&d->lock);
    rc = lookup(d, name, &vm);
    if (!rc && vm->conf.power != FY_POWER_OFF) {
        sim_guest_kill(&vm->guest);
        rc = set_power(d, vm, FY_POWER_OFF);
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int sim_vm_pause(struct fy_driver *d, const char *name)
{
    struct sim_vm *vm;
    int rc;

    pthread_mutex_lock(&d->lock);
    rc = lookup(d, name, &vm);
    if (!rc && vm->conf.power == FY_POWER_RUNNING) {
        sim_guest_park(&vm->guest);
        rc = set_power(d, vm, FY_POWER_PAUSED);
    } else if (!rc && vm->conf.power != FY_POWER_PAUSED) {
        rc = wrong_state(vm, "start it first");
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int sim_vm_resume(struct fy_driver *d, const char *name)
{
    struct sim_vm *vm;
    int rc;

    pthread_mutex_lock(&d->lock);
    rc = lookup(d, name, &vm);
    if (!rc && vm->conf.power == FY_POWER_PAUSED) {
        rc = sim_guest_run(&vm->guest, name);
        if (!rc)
            rc = set_power(d, vm, FY_POWER_RUNNING);
    } else if (!rc && vm->conf.power != FY_POWER_RUNNING) {
        rc = wrong_state(vm, "start it (or restore it) instead");
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int sim_vm_export(struct fy_driver *d, const char *name, char **out)
{
    struct sim_vm *vm;
    int rc;

    if (!out)
        return fy_error(FY_E_INVAL, "vm_export: no output");
    pthread_mutex_lock(&d->lock);
    rc = lookup(d, name, &vm);
    if (!rc)
        rc = sim_vmconf_format(&vm->conf, out);
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int sim_vm_rename(struct fy_driver *d, const char *name, const char *newname)
{
    char from[FY_PATH_MAX + 80], to[FY_PATH_MAX + 80];
    struct sim_vm *vm;
    int rc;

    pthread_mutex_lock(&d->lock);
    rc = lookup(d, name, &vm);
    if (!rc && (!newname || !sim_name_ok(newname)))
        rc = fy_error(FY_E_INVAL, "VM name '%s' must be 1-%d letters, digits, "
                      "'.', '_' or '-'", newname ? newname : "(null)",
                      FY_NAME_MAX - 1);
    if (!rc && sim_vm_find(d, newname))
        rc = fy_error(FY_E_EXISTS, "cannot rename VM %s: a VM named %s exists",
                      name, newname);
    if (!rc) {
        /* The memory file is renamed under the open fd, which stays valid. */
        vm_file(d, name, "mem", from);
        vm_file(d, newname, "mem", to);
        if (rename(from, to) != 0) {
            rc = fy_error_sys("cannot rename %s to %s", from, to);
        } else {
            vm_file(d, name, "conf", from);
            strcpy(vm->conf.name, newname);
            rc = save_conf(d, vm);
            if (!rc)
                unlink(from);
        }
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int sim_vm_disconnect_nics(struct fy_driver *d, const char *name)
{
    struct sim_vm *vm;
    int rc;

    pthread_mutex_lock(&d->lock);
    rc = lookup(d, name, &vm);
    if (!rc) {
        for (unsigned i = 0; i < vm->conf.ndevices; i++)
            if (vm->conf.devices[i].kind == FY_DEV_NIC)
                vm->conf.devices[i].media = false;
        rc = save_conf(d, vm);
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int sim_memory_layout(struct fy_driver *d, const char *name,
                      struct fy_memory_layout *out)
{
    struct sim_vm *vm;
    int rc;

    if (!out)
        return fy_error(FY_E_INVAL, "memory_layout: no output");
    pthread_mutex_lock(&d->lock);
    rc = lookup(d, name, &vm);
    if (!rc) {
        memset(out, 0, sizeof(*out));
        out->n = 1;
        strcpy(out->regions[0].name, "ram");
        out->regions[0].size = vm->conf.mem_bytes;
        out->regions[0].fd = vm->fd;
        out->regions[0].offset = 0;
        out->regions[0].pid = 0;
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int sim_dirty_log_start(struct fy_driver *d, const char *name)
{
    struct sim_vm *vm;
    int rc;

    pthread_mutex_lock(&d->lock);
    rc = lookup(d, name, &vm);
    if (!rc)
        sim_guest_dirty_start(&vm->guest);
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int sim_dirty_log_sync(struct fy_driver *d, const char *name, unsigned region,
                       uint64_t *bitmap, uint64_t npages)
{
    struct sim_vm *vm;
    int rc;

    pthread_mutex_lock(&d->lock);
    rc = lookup(d, name, &vm);
    if (!rc && (region != 0 || !bitmap || npages != vm->guest.npages))
        rc = fy_error(FY_E_INVAL, "dirty_log_sync of VM %s: region %u of %llu "
                      "pages asked; the VM has region 0 of %llu pages", name,
                      region, (unsigned long long)npages,
                      (unsigned long long)vm->guest.npages);
    if (!rc)
        sim_guest_dirty_sync(&vm->guest, bitmap);
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int sim_dirty_log_stop(struct fy_driver *d, const char *name)
{
    struct sim_vm *vm;
    int rc;

    pthread_mutex_lock(&d->lock);
    rc = lookup(d, name, &vm);
    if (!rc)
        sim_guest_dirty_stop(&vm->guest);
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int sim_device_state_save(struct fy_driver *d, const char *name, void **out,
                          size_t *len)
{
    struct sim_vm *vm;
    int rc;

    if (!out || !len)
        return fy_error(FY_E_INVAL, "device_state_save: no output");
    pthread_mutex_lock(&d->lock);
    rc = lookup(d, name, &vm);
    if (!rc)
        rc = sim_guest_state_save(&vm->guest, name, out, len);
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int sim_device_state_load(struct fy_driver *d, const char *name,
                          const void *state, size_t len)
{
    struct sim_vm *vm;
    int rc;

    pthread_mutex_lock(&d->lock);
    rc = lookup(d, name, &vm);
    if (!rc)
        rc = sim_guest_state_load(&vm->guest, name, state, len);
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int sim_vm_suspend(struct fy_driver *d, const char *name, const char *image)
{
    struct sim_vm *vm;
    int rc, fd = -1;

    pthread_mutex_lock(&d->lock);
    rc = lookup(d, name, &vm);
    if (!rc && vm->conf.power != FY_POWER_RUNNING &&
        vm->conf.power != FY_POWER_PAUSED)
        rc = wrong_state(vm, "only a running or paused VM can be suspended");
    if (!rc && !image)
        rc = fy_error(FY_E_INVAL, "vm_suspend of %s: no image path", name);
    if (rc)
        goto out;
    sim_guest_park(&vm->guest);
    fd = open(image, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = fy_error_sys("cannot create memory image %s of VM %s", image, name);
    } else {
        size_t len = (size_t)vm->conf.mem_bytes;
        for (size_t off = 0; off < len && !rc;) {
            ssize_t n = pwrite(fd, vm->guest.mem + off, len - off, (off_t)off);
            if (n <= 0)
                rc = fy_error_sys("cannot write memory image %s of VM %s",
                                  image, name);
            else
                off += (size_t)n;
        }
        if (close(fd) != 0 && !rc)
            rc = fy_error_sys("cannot write memory image %s", image);
    }
    if (rc) {
        unlink(image);
        if (vm->conf.power == FY_POWER_RUNNING)
            sim_guest_run(&vm->guest, name); /* left as it was */
        goto out;
    }
    sim_guest_kill(&vm->guest);
    rc = set_power(d, vm, FY_POWER_SUSPENDED);
out:
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int sim_vm_restore(struct fy_driver *d, const char *name, const char *image)
{
    struct sim_vm *vm;
    struct stat st;
    int rc, fd = -1;

    pthread_mutex_lock(&d->lock);
    rc = lookup(d, name, &vm);
    if (!rc && vm->conf.power != FY_POWER_OFF &&
        vm->conf.power != FY_POWER_SUSPENDED)
        rc = wrong_state(vm, "only a suspended or stopped VM can be restored");
    if (!rc && !image)
        rc = fy_error(FY_E_INVAL, "vm_restore of %s: no image path", name);
    if (!rc && ((fd = open(image, O_RDONLY | O_CLOEXEC)) < 0 ||
                fstat(fd, &st) != 0))
        rc = fy_error_sys("cannot read memory image %s of VM %s", image, name);
    if (!rc && (uint64_t)st.st_size != vm->conf.mem_bytes)
        rc = fy_error(FY_E_INVAL, "memory image %s has %lld bytes, VM %s has "
                      "%llu bytes of memory", image, (long long)st.st_size, name,
                      (unsigned long long)vm->conf.mem_bytes);
    if (!rc) {
        size_t len = (size_t)vm->conf.mem_bytes;
        for (size_t off = 0; off < len && !rc;) {
            ssize_t n = pread(fd, vm->guest.mem + off, len - off, (off_t)off);
            if (n <= 0)
                rc = n < 0 ? fy_error_sys("cannot read memory image %s", image)
                           : fy_error(FY_E_IO, "memory image %s ends early",
                                      image);
            else
                off += (size_t)n;
        }
    }
    if (fd >= 0)
        close(fd);
    if (!rc)
        rc = sim_guest_run(&vm->guest, name);
    if (!rc)
        rc = set_power(d, vm, FY_POWER_RUNNING);
    pthread_mutex_unlock(&d->lock);
    return rc;
}

/* Reads DIR/vms/FILE (a .conf) and brings its VM back. */
static int load_one(struct fy_driver *d, const char *file)
{
    char path[FY_PATH_MAX + 80], mem[FY_PATH_MAX + 80], *text = NULL;
    struct sim_vmconf c;
    struct sim_vm *vm;
    size_t cap = 0;
    FILE *f;
    int fd, rc;

    snprintf(path, sizeof(path), "%s/vms/%s", d->state, file);
    f = fopen(path, "re");
    if (!f)
        return fy_error_sys("cannot read VM configuration %s", path);
    if (getdelim(&text, &cap, '\0', f) < 0) {
        fclose(f);
        free(text);
        return fy_error(FY_E_CONFIG, "VM configuration %s is empty", path);
    }
    fclose(f);
    rc = sim_vmconf_parse(text, &c);
    free(text);
    if (rc)
        return fy_error(FY_E_CONFIG, "%s: %s", path, fy_error_detail());
    if (sim_vm_find(d, c.name))
        return fy_error(FY_E_CONFIG, "%s defines VM %s a second time", path,
                        c.name);
    vm_file(d, c.name, "mem", mem);
    fd = open(mem, O_RDWR | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        fd = sim_mem_create(mem, &c, false);
    else if (fd < 0)
        fd = fy_error_sys("cannot open memory file %s", mem);
    if (fd < 0)
        return fd;
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != c.mem_bytes) {
        close(fd);
        return fy_error(FY_E_CONFIG, "memory file %s is not %llu bytes as VM %s's "
                        "mem says: remove it to start the VM afresh", mem,
                        (unsigned long long)c.mem_bytes, c.name);
    }
    rc = add_vm(d, &c, fd, &vm);
    if (!rc && c.power == FY_POWER_RUNNING)
        rc = sim_guest_run(&vm->guest, c.name);
    return rc;
}

int sim_vms_load(struct fy_driver *d)
{
    char path[FY_PATH_MAX + 16];
    struct dirent *e;
    DIR *dir;
    int rc = 0;

    snprintf(path, sizeof(path), "%s/vms", d->state);
    dir = opendir(path);
    if (!dir)
        return fy_error_sys("cannot read %s", path);
    while (!rc && (e = readdir(dir))) {
        size_t n = strlen(e->d_name);
        if (n > 5 && !strcmp(e->d_name + n - 5, ".conf"))
            rc = load_one(d, e->d_name);
    }
    closedir(dir);
    return rc;
}

int sim_vms_seed(struct fy_driver *d, unsigned n)
{
    int rc = 0;

    pthread_mutex_lock(&d->lock);
    for (unsigned i = 1; i <= n && !rc; i++) {
        struct sim_vmconf c;
        struct sim_vm *vm;

        memset(&c, 0, sizeof(c));
        snprintf(c.name, sizeof(c.name), "vm%u", i);
        c.mem_bytes = SEED_VM_MEM;
        c.vcpus = 1;
        strcpy(c.cpu_vendor, d->cpu_vendor);
        c.managed = true;
        c.rate = 1000;
        c.pattern = SIM_PATTERN_RANDOM;
        c.shared_seed = 1;
        c.ndevices = 1;
        c.devices[0].kind = FY_DEV_NIC;
        strcpy(c.devices[0].name, "net0");
        c.devices[0].media = true;
        c.ndisks = 1;
        strcpy(c.disks[0].name, "vda");
        strcpy(c.disks[0].datastore, d->datastores[0].name);
        c.disks[0].virtual_size = 1ull << 30;
        rc = define(d, &c, NULL, 0, false, &vm);
        if (!rc)
            rc = sim_guest_run(&vm->guest, c.name);
        if (!rc)
            rc = set_power(d, vm, FY_POWER_RUNNING);
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

void sim_vms_free(struct fy_driver *d)
{
    while (d->vms) {
        struct sim_vm *vm = d->vms;
        d->vms = vm->next;
        free_vm(vm);
    }
}
