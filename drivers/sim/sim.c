/* The sim driver: a simulated hypervisor whose host is a state directory.
 *
 * This file holds the operations table and the host: open (configuration,
 * state directory, lock), close and host_info.  VMs are in vm.c, their
 * memory and workload in guest.c.  README.md describes the state layout. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drivers/sim/sim_priv.h"

#define HOST_FILE "host.conf"
#define LOCK_FILE "lock"

static const char *const net_roles[FY_NET__COUNT] = {
    [FY_NET_MANAGEMENT] = "management",
    [FY_NET_MIGRATION] = "migration",
    [FY_NET_PROVISIONING] = "provisioning",
};

static bool copy_str(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);

    if (n >= size)
        return false;
    memcpy(dst, src, n + 1);
    return true;
}

/* mkdir -p. */
static int make_dirs(const char *path)
{
    char buf[FY_PATH_MAX];

    if (!copy_str(buf, sizeof(buf), path))
        return fy_error(FY_E_CONFIG, "path %s is longer than %d bytes", path,
                        FY_PATH_MAX - 1);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return fy_error_sys("cannot create directory %s", buf);
            *p = c;
            if (!c)
                break;
        }
    }
    return 0;
}

/* "local:64G,san:1T:shared[:PATH]" */
static int parse_datastores(struct fy_driver *d, const char *value)
{
    char *s = strdup(value), *save = NULL;
    int rc = 0;

    if (!s)
        return fy_error(FY_E_NOMEM, "no memory for the datastores setting");
    d->ndatastores = 0;
    for (char *item = strtok_r(s, ",", &save); item && !rc;
         item = strtok_r(NULL, ",", &save)) {
        struct sim_datastore *ds = &d->datastores[d->ndatastores];
        char *f[4] = {0};
        unsigned nf = 0;

        if (d->ndatastores == FY_MAX_DATASTORES) {
            rc = fy_error(FY_E_CONFIG, "more than %d datastores",
                          FY_MAX_DATASTORES);
            break;
        }
        /* Split on ':' into at most 4 fields (the path may hold more). */
        for (char *p = item; p && nf < 4; nf++) {
            f[nf] = p;
            p = nf < 3 ? strchr(p, ':') : NULL;
            if (p)
                *p++ = '\0';
        }
        memset(ds, 0, sizeof(*ds));
        if (nf < 2 || !f[0][0] || !copy_str(ds->name, sizeof(ds->name), f[0]) ||
            !sim_parse_size(f[1], &ds->capacity)) {
            rc = fy_error(FY_E_CONFIG, "datastore '%s' is not NAME:SIZE[:shared]"
                          " (e.g. local:64G)", item);
            break;
        }
        if (nf > 2 && f[2][0] && strcmp(f[2], "shared") && strcmp(f[2], "local")) {
            rc = fy_error(FY_E_CONFIG, "datastore %s: '%s' is not 'shared' or "
                          "'local'", ds->name, f[2]);
            break;
        }
        ds->shared = nf > 2 && !strcmp(f[2], "shared");
        if (nf > 3 && !copy_str(ds->path, sizeof(ds->path), f[3]))
            rc = fy_error(FY_E_CONFIG, "datastore %s: path too long", ds->name);
        d->ndatastores++;
    }
    free(s);
    if (!rc && d->ndatastores == 0)
        rc = fy_error(FY_E_CONFIG, "datastores is empty: give at least one, "
                      "e.g. local:64G");
    return rc;
}

/* "management:ADDR,migration:ADDR,provisioning:ADDR" */
static int parse_net(struct fy_driver *d, const char *value)
{
    char *s = strdup(value), *save = NULL;
    int rc = 0;

    if (!s)
        return fy_error(FY_E_NOMEM, "no memory for the net setting");
    memset(d->net, 0, sizeof(d->net));
    for (char *item = strtok_r(s, ",", &save); item && !rc;
         item = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(item, ':');
        unsigned r;

        if (!colon) {
            rc = fy_error(FY_E_CONFIG, "network '%s' is not ROLE:ADDRESS", item);
            break;
        }
        *colon = '\0';
        for (r = 0; r < FY_NET__COUNT && strcmp(item, net_roles[r]); r++)
            ;
        if (r == FY_NET__COUNT)
            rc = fy_error(FY_E_CONFIG, "network role '%s' is not management, "
                          "migration or provisioning", item);
        else if (!copy_str(d->net[r], FY_NAME_MAX, colon + 1))
            rc = fy_error(FY_E_CONFIG, "address of network %s too long", item);
    }
    free(s);
    return rc;
}

static int parse_flag(const char *key, const char *value, bool *out)
{
    if (!strcmp(value, "0") || !strcmp(value, "1")) {
        *out = value[0] == '1';
        return 0;
    }
    return fy_error(FY_E_CONFIG, "%s=%s: give 0 or 1", key, value);
}

/* Applies one setting.  'state' and 'seed-vm' only come from open(). */
static int apply(struct fy_driver *d, const char *key, const char *value,
                 bool from_open)
{
    char *end;

    if (!strcmp(key, "state") && from_open) {
        /* Room left for the files inside: DIR/ds/NAME/VM-DISK.img fits
         * FY_PATH_MAX only with short names, checked where they are made. */
        if (value[0] == '\0' || strlen(value) > FY_PATH_MAX - 64 ||
            !copy_str(d->state, sizeof(d->state), value))
            return fy_error(FY_E_CONFIG, "state=%s: give a directory of at most "
                            "%d bytes", value, FY_PATH_MAX - 64);
        return 0;
    }
    if (!strcmp(key, "host")) {
        if (!value[0] || !copy_str(d->name, sizeof(d->name), value))
            return fy_error(FY_E_CONFIG, "host=%s: give a name of 1-%d bytes",
                            value, FY_NAME_MAX - 1);
        return 0;
    }
    if (!strcmp(key, "mem")) {
        if (!sim_parse_size(value, &d->mem_total))
            return fy_error(FY_E_CONFIG, "mem=%s is not a size such as 8G", value);
        return 0;
    }
    if (!strcmp(key, "cpus")) {
        unsigned long n = strtoul(value, &end, 10);
        if (*end || !value[0] || n == 0 || n > 65536)
            return fy_error(FY_E_CONFIG, "cpus=%s: give a number of CPUs", value);
        d->cpus = (unsigned)n;
        return 0;
    }
    if (!strcmp(key, "cpu-vendor")) {
        if (strcmp(value, "GenuineIntel") && strcmp(value, "AuthenticAMD"))
            return fy_error(FY_E_CONFIG, "cpu-vendor=%s: give GenuineIntel or "
                            "AuthenticAMD", value);
        strcpy(d->cpu_vendor, value);
        return 0;
    }
    if (!strcmp(key, "datastores"))
        return parse_datastores(d, value);
    if (!strcmp(key, "net"))
        return parse_net(d, value);
    if (!strcmp(key, "dynamic-memory"))
        return parse_flag(key, value, &d->dynamic_memory);
    if (!strcmp(key, "maintenance"))
        return parse_flag(key, value, &d->maintenance);
    if (!strcmp(key, "seed-vm") && from_open) {
        unsigned long n = strtoul(value, &end, 10);
        if (*end || !value[0] || n > 1000)
            return fy_error(FY_E_CONFIG, "seed-vm=%s: give a number of VMs "
                            "(0-1000)", value);
        d->seed_vms = (unsigned)n;
        return 0;
    }
    return fy_error(FY_E_CONFIG, "unknown sim driver setting '%s' (state, host, "
                    "mem, cpus, cpu-vendor, datastores, net, dynamic-memory, "
                    "seed-vm, maintenance)", key);
}

/* Applies "k=v<sep>k=v...".  With 'only_state', applies just state=. */
static int apply_all(struct fy_driver *d, const char *text, const char *sep,
                     bool from_open, bool only_state)
{
    char *s = strdup(text), *save = NULL;
    int rc = 0;

    if (!s)
        return fy_error(FY_E_NOMEM, "no memory for the driver configuration");
    for (char *item = strtok_r(s, sep, &save); item && !rc;
         item = strtok_r(NULL, sep, &save)) {
        char *eq;

        while (*item == ' ' || *item == '\t')
            item++;
        if (!*item || *item == '#')
            continue;
        eq = strchr(item, '=');
        if (!eq) {
            rc = fy_error(FY_E_CONFIG, "sim driver setting '%s' is not "
                          "key=value", item);
            break;
        }
        *eq = '\0';
        if (only_state != !strcmp(item, "state"))
            continue;
        rc = apply(d, item, eq + 1, from_open);
    }
    free(s);
    return rc;
}

/* The settings of a reopened host, so "state=DIR" alone finds it again. */
static int load_host_file(struct fy_driver *d, bool *found)
{
    char path[FY_PATH_MAX + 16], *text = NULL;
    size_t cap = 0;
    FILE *f;
    int rc;

    snprintf(path, sizeof(path), "%s/" HOST_FILE, d->state);
    f = fopen(path, "re");
    *found = f != NULL;
    if (!f)
        return errno == ENOENT ? 0 : fy_error_sys("cannot read %s", path);
    ssize_t n = getdelim(&text, &cap, '\0', f);
    fclose(f);
    if (n < 0) {
        free(text);
        return 0;
    }
    rc = apply_all(d, text, "\n", false, false);
    free(text);
    return rc;
}

static int save_host_file(struct fy_driver *d)
{
    char path[FY_PATH_MAX + 16], tmp[FY_PATH_MAX + 24];
    FILE *f;

    snprintf(path, sizeof(path), "%s/" HOST_FILE, d->state);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "we");
    if (!f)
        return fy_error_sys("cannot write %s", tmp);
    fprintf(f, "# sim host settings, rewritten at each open\n");
    fprintf(f, "host=%s\nmem=%" PRIu64 "\ncpus=%u\ncpu-vendor=%s\n", d->name,
            d->mem_total, d->cpus, d->cpu_vendor);
    fprintf(f, "dynamic-memory=%d\nmaintenance=%d\ndatastores=", d->dynamic_memory,
            d->maintenance);
    for (unsigned i = 0; i < d->ndatastores; i++)
        fprintf(f, "%s%s:%" PRIu64 ":%s:%s", i ? "," : "", d->datastores[i].name,
                d->datastores[i].capacity,
                d->datastores[i].shared ? "shared" : "local",
                d->datastores[i].path);
    fprintf(f, "\nnet=");
    for (unsigned r = 0, first = 1; r < FY_NET__COUNT; r++) {
        if (d->net[r][0]) {
            fprintf(f, "%s%s:%s", first ? "" : ",", net_roles[r], d->net[r]);
            first = 0;
        }
    }
    fputc('\n', f);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        return fy_error_sys("cannot write %s", path);
    return 0;
}

/* Places each datastore without a path and creates its directory.  A
 * shared one lives beside the host directories (DIR/../shared-ds/NAME), so
 * sibling hosts that name it reach the same files. */
static int place_datastores(struct fy_driver *d)
{
    char parent[FY_PATH_MAX];

    copy_str(parent, sizeof(parent), d->state);
    dirname(parent);
    for (unsigned i = 0; i < d->ndatastores; i++) {
        struct sim_datastore *ds = &d->datastores[i];
        int n, rc;

        if (!ds->path[0]) {
            char path[FY_PATH_MAX];
            if (ds->shared)
                n = snprintf(path, sizeof(path), "%s/shared-ds/%s", parent,
                             ds->name);
            else
                n = snprintf(path, sizeof(path), "%s/ds/%s", d->state, ds->name);
            if (n < 0 || (size_t)n >= sizeof(path))
                return fy_error(FY_E_CONFIG, "path of datastore %s is too long",
                                ds->name);
            strcpy(ds->path, path);
        }
        rc = make_dirs(ds->path);
        if (rc)
            return rc;
    }
    return 0;
}

static void sim_close(struct fy_driver *d)
{
    if (!d)
        return;
    sim_vms_free(d);
    if (d->lock_fd >= 0)
        close(d->lock_fd); /* drops the flock */
    pthread_mutex_destroy(&d->lock);
    free(d);
}

static int sim_open(const char *config, struct fy_driver **out)
{
    struct fy_driver *d;
    char path[FY_PATH_MAX + 16], base[FY_PATH_MAX];
    bool known = false;
    int rc;

    if (!config || !out)
        return fy_error(FY_E_INVAL, "sim driver: no configuration given");
    d = calloc(1, sizeof(*d));
    if (!d)
        return fy_error(FY_E_NOMEM, "no memory for a sim driver instance");
    d->lock_fd = -1;
    pthread_mutex_init(&d->lock, NULL);
    d->mem_total = 8ull << 30;
    d->cpus = 4;
    strcpy(d->cpu_vendor, "GenuineIntel");
    d->dynamic_memory = true;
    strcpy(d->net[FY_NET_MANAGEMENT], "127.0.0.1");
    parse_datastores(d, "local:64G");

    /* Every setting checked before anything is created on disk. */
    rc = apply_all(d, config, ";", true, true);
    if (!rc)
        rc = apply_all(d, config, ";", true, false);
    if (!rc && !d->state[0])
        rc = fy_error(FY_E_CONFIG, "sim driver needs state=DIR, the host's state "
                      "directory");
    if (!rc)
        rc = make_dirs(d->state);
    if (rc)
        goto fail;

    /* One instance per host: a second would run every VM twice. */
    snprintf(path, sizeof(path), "%s/" LOCK_FILE, d->state);
    d->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (d->lock_fd < 0) {
        rc = fy_error_sys("cannot open %s", path);
        goto fail;
    }
    if (flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        rc = errno == EWOULDBLOCK
                 ? fy_error(FY_E_BUSY, "sim host %s is open in another instance: "
                            "close it first", d->state)
                 : fy_error_sys("cannot lock %s", path);
        goto fail;
    }

    /* The saved settings, then the given ones over them. */
    copy_str(base, sizeof(base), d->state);
    copy_str(d->name, sizeof(d->name), basename(base));
    rc = load_host_file(d, &known);
    if (!rc)
        rc = apply_all(d, config, ";", true, false);
    if (!rc)
        rc = place_datastores(d);
    snprintf(path, sizeof(path), "%s/vms", d->state);
    if (!rc)
        rc = make_dirs(path);
    if (!rc)
        rc = save_host_file(d);
    if (!rc)
        rc = sim_vms_load(d);
    if (!rc && !known && d->seed_vms)
        rc = sim_vms_seed(d, d->seed_vms);
    if (rc)
        goto fail;
    *out = d;
    return 0;

fail:
    sim_close(d);
    return rc;
}

/* Bytes the regular files directly in 'path' occupy. */
static uint64_t dir_usage(const char *path)
{
    DIR *dir = opendir(path);
    struct dirent *e;
    uint64_t used = 0;

    if (!dir)
        return 0;
    while ((e = readdir(dir))) {
        struct stat st;
        if (fstatat(dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode))
            used += (uint64_t)st.st_blocks * 512;
    }
    closedir(dir);
    return used;
}

static int sim_host_info(struct fy_driver *d, struct fy_host_info *out)
{
    uint64_t mem_used = 0;
    unsigned cpus_used = 0;

    if (!d || !out)
        return fy_error(FY_E_INVAL, "host_info: no instance or output");
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&d->lock);
    for (struct sim_vm *vm = d->vms; vm; vm = vm->next) {
        /* A paused VM still holds its memory and vCPUs. */
        if (vm->conf.power == FY_POWER_RUNNING ||
            vm->conf.power == FY_POWER_PAUSED) {
            mem_used += vm->conf.mem_bytes;
            cpus_used += vm->conf.vcpus;
        }
    }
    pthread_mutex_unlock(&d->lock);

    strcpy(out->name, d->name);
    strcpy(out->hypervisor, "sim");
    strcpy(out->cpu_vendor, d->cpu_vendor);
    snprintf(out->cpu_model, sizeof(out->cpu_model), "sim %s CPU", d->cpu_vendor);
    out->mem_total = d->mem_total;
    out->mem_free = d->mem_total > mem_used ? d->mem_total - mem_used : 0;
    out->cpus_total = d->cpus;
    out->cpus_free = d->cpus > cpus_used ? d->cpus - cpus_used : 0;
    out->dynamic_memory = d->dynamic_memory;
    out->maintenance = d->maintenance;
    memcpy(out->net, d->net, sizeof(out->net));
    out->ndatastores = d->ndatastores;
    for (unsigned i = 0; i < d->ndatastores; i++) {
        const struct sim_datastore *ds = &d->datastores[i];
        struct fy_datastore *o = &out->datastores[i];
        uint64_t used = dir_usage(ds->path);

        strcpy(o->name, ds->name);
        strcpy(o->path, ds->path);
        o->capacity = ds->capacity;
        o->free = ds->capacity > used ? ds->capacity - used : 0;
        o->shared = ds->shared;
    }
    return 0;
}

const struct sim_datastore *sim_datastore_find(const struct fy_driver *d,
                                               const char *name)
{
    for (unsigned i = 0; i < d->ndatastores; i++)
        if (!strcmp(d->datastores[i].name, name))
            return &d->datastores[i];
    return NULL;
}

static const struct fy_driver_ops sim_ops = {
    .abi = FY_DRIVER_ABI,
    .name = "sim",
    .description = "simulated hypervisor: VMs as threads dirtying shared "
                   "memory files, disks as files",
    .caps = FY_DRV_LIVE | FY_DRV_COLD | FY_DRV_QUICK | FY_DRV_DIRTY_LOG |
            FY_DRV_SUSPEND | FY_DRV_FAILOVER | FY_DRV_DEVICE_STATE,
    .open = sim_open,
    .close = sim_close,
    .host_info = sim_host_info,
    .vm_list = sim_vm_list,
    .vm_info = sim_vm_info,
    .vm_start = sim_vm_start,
    .vm_stop = sim_vm_stop,
    .vm_pause = sim_vm_pause,
    .vm_resume = sim_vm_resume,
    .vm_export = sim_vm_export,
    .vm_define = sim_vm_define,
    .vm_undefine = sim_vm_undefine,
    .vm_rename = sim_vm_rename,
    .vm_disconnect_nics = sim_vm_disconnect_nics,
    .memory_layout = sim_memory_layout,
    .incoming_prepare = sim_incoming_prepare,
    .dirty_log_start = sim_dirty_log_start,
    .dirty_log_sync = sim_dirty_log_sync,
    .dirty_log_stop = sim_dirty_log_stop,
    .device_state_save = sim_device_state_save,
    .device_state_load = sim_device_state_load,
    .vm_suspend = sim_vm_suspend,
    .vm_restore = sim_vm_restore,
};

FY_DRIVER_REGISTER(sim_ops)
