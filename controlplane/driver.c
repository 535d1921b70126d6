/* Loading drivers and opening their instances (controlplane/driver.h).
 *
 * A driver is checked once, when its library is first loaded: the entry
 * point, the ABI version, the operations every driver must have, and the
 * operations each capability it claims requires.  A library that passes is
 * kept in a small registry and never unloaded, so later loads of the same
 * file return the same table and instances may outlive any one caller.  A
 * library that fails is unloaded at once: nothing of it was handed out. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "controlplane/driver.h"
#include "ferry/error.h"

#ifndef FY_DRIVERS_DIR
#define FY_DRIVERS_DIR "/usr/local/lib/ferry/drivers"
#endif

/* Enough for every driver a host could have; a full registry is refused. */
#define MAX_LOADED 32

struct loaded_driver {
    char path[FY_PATH_MAX];
    const struct fy_driver_ops *ops;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct loaded_driver registry[MAX_LOADED];
static unsigned nregistry;

typedef const struct fy_driver_ops *(*entry_fn)(void);

const char *fy_driver_dir_default(void)
{
    const char *env = getenv("FERRY_DRIVERS_DIR");

    return env && env[0] ? env : FY_DRIVERS_DIR;
}

/* A name is the <name> of ferry-<name>.so: it must not reach outside the
 * drivers directory. */
static bool name_is_valid(const char *name)
{
    return name[0] != '\0' && !strchr(name, '/') && !strstr(name, "..")
           && strlen(name) < FY_NAME_MAX;
}

static const char *cap_name(uint32_t cap)
{
    switch (cap) {
    case FY_DRV_LIVE: return "live";
    case FY_DRV_COLD: return "cold";
    case FY_DRV_QUICK: return "quick";
    case FY_DRV_STORAGE: return "storage";
    case FY_DRV_DIRTY_LOG: return "dirty-log";
    case FY_DRV_SUSPEND: return "suspend";
    case FY_DRV_FAILOVER: return "failover";
    case FY_DRV_DEVICE_STATE: return "device-state";
    case FY_DRV_RAM_DIRECT: return "ram-direct";
    case FY_DRV_STREAM: return "stream";
    default: return "unknown";
    }
}

#define KNOWN_CAPS                                                        \
    (FY_DRV_LIVE | FY_DRV_COLD | FY_DRV_QUICK | FY_DRV_STORAGE               \
     | FY_DRV_DIRTY_LOG | FY_DRV_SUSPEND | FY_DRV_FAILOVER                   \
     | FY_DRV_DEVICE_STATE | FY_DRV_RAM_DIRECT | FY_DRV_STREAM)

/* Checks the table against include/ferry/driver.h.  Returns 0, or reports
 * the first defect naming the driver and its file. */
static int check_ops(const struct fy_driver_ops *ops, const char *name,
                     const char *path)
{
    /* cap 0: every driver must have it; otherwise only drivers claiming
     * 'cap' must.  The order is the header's, so the first missing
     * operation reported is the first an author meets there. */
    const struct {
        uint32_t cap;
        const char *op;
        bool present;
    } required[] = {
#define OP_(cap, field) { cap, #field, ops->field != NULL }
        OP_(0, open),
        OP_(0, close),
        OP_(0, host_info),
        OP_(0, vm_list),
        OP_(0, vm_info),
        OP_(0, vm_start),
        OP_(0, vm_stop),
        OP_(0, vm_pause),
        OP_(0, vm_resume),
        OP_(0, vm_export),
        OP_(0, vm_define),
        OP_(0, vm_undefine),
        OP_(FY_DRV_LIVE, memory_layout),
        OP_(FY_DRV_QUICK, memory_layout),
        OP_(FY_DRV_RAM_DIRECT, memory_layout),
        OP_(FY_DRV_LIVE, incoming_prepare),
        OP_(FY_DRV_RAM_DIRECT, incoming_prepare),
        OP_(FY_DRV_DIRTY_LOG, dirty_log_start),
        OP_(FY_DRV_DIRTY_LOG, dirty_log_sync),
        OP_(FY_DRV_DIRTY_LOG, dirty_log_stop),
        OP_(FY_DRV_DEVICE_STATE, device_state_save),
        OP_(FY_DRV_DEVICE_STATE, device_state_load),
        OP_(FY_DRV_RAM_DIRECT, device_state_save),
        OP_(FY_DRV_RAM_DIRECT, device_state_load),
        OP_(FY_DRV_QUICK, vm_suspend),
        OP_(FY_DRV_QUICK, vm_restore),
        OP_(FY_DRV_STORAGE, disk_create),
        OP_(FY_DRV_STORAGE, disk_open),
        OP_(FY_DRV_STORAGE, disk_read),
        OP_(FY_DRV_STORAGE, disk_write),
        OP_(FY_DRV_STORAGE, disk_zero),
        OP_(FY_DRV_STORAGE, disk_dirty),
        OP_(FY_DRV_STORAGE, disk_close),
        OP_(FY_DRV_STREAM, incoming_prepare),
        OP_(FY_DRV_STREAM, stream_incoming),
        OP_(FY_DRV_STREAM, stream_outgoing),
        OP_(FY_DRV_STREAM, stream_start),
        OP_(FY_DRV_STREAM, stream_status),
        OP_(FY_DRV_STREAM, stream_end),
#undef OP_
    };

    if (ops->abi != FY_DRIVER_ABI)
        return fy_error(FY_E_VERSION,
                        "driver %s (%s): not built for this Ferry: ABI %u, "
                        "this build needs %u; rebuild it against this "
                        "Ferry's include/ferry/driver.h",
                        name, path, ops->abi, (unsigned)FY_DRIVER_ABI);
    if (!ops->name || !ops->name[0] || !ops->description
        || !ops->description[0])
        return fy_error(FY_E_INVAL,
                        "driver %s (%s): its operations table has no %s; "
                        "set it (see drivers/skeleton)",
                        name, path,
                        !ops->name || !ops->name[0] ? "name" : "description");
    if (ops->caps & ~(uint32_t)KNOWN_CAPS)
        return fy_error(FY_E_INVAL,
                        "driver %s (%s): claims capabilities 0x%x that this "
                        "Ferry does not know; rebuild it against this "
                        "Ferry's include/ferry/driver.h",
                        name, path, ops->caps & ~(uint32_t)KNOWN_CAPS);

    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        if (required[i].present)
            continue;
        if (required[i].cap == 0)
            return fy_error(FY_E_INVAL,
                            "driver %s (%s): missing operation %s, which "
                            "every driver must provide; implement it (see "
                            "drivers/skeleton)",
                            name, path, required[i].op);
        if (ops->caps & required[i].cap)
            return fy_error(FY_E_INVAL,
                            "driver %s (%s): missing operation %s, required "
                            "by its '%s' capability; implement it or drop "
                            "that capability from its caps",
                            name, path, required[i].op,
                            cap_name(required[i].cap));
    }
    return 0;
}

/* Opens 'path' and checks what it exports.  Returns 0 with *ops, the
 * library left loaded for good; on failure nothing stays loaded. */
static int load_library(const char *name, const char *path,
                        const struct fy_driver_ops **ops)
{
    const struct fy_driver_ops *table;
    struct stat st;
    entry_fn entry;
    void *lib, *sym;
    int rc;

    if (stat(path, &st) < 0)
        return fy_error(errno == ENOENT ? FY_E_NOTFOUND : FY_E_SYS,
                        "driver %s (%s): %s: is the driver installed in "
                        "that directory, or set FERRY_DRIVERS_DIR",
                        name, path,
                        errno == ENOENT ? "no such file" : strerror(errno));

    lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return fy_error(FY_E_INVAL,
                        "driver %s (%s): not a loadable driver: %s; rebuild "
                        "it as a shared object against this Ferry",
                        name, path, dlerror());

    dlerror();
    sym = dlsym(lib, FY_DRIVER_ENTRY_SYMBOL);
    if (!sym) {
        rc = fy_error(FY_E_INVAL,
                      "driver %s (%s): no entry point " FY_DRIVER_ENTRY_SYMBOL
                      "; add FY_DRIVER_REGISTER(ops) to the driver",
                      name, path);
        goto out;
    }
    /* POSIX guarantees a data pointer from dlsym converts to a function
     * pointer; copying it says so without a cast warning. */
    memcpy(&entry, &sym, sizeof(entry));
    table = entry();
    if (!table) {
        rc = fy_error(FY_E_INVAL,
                      "driver %s (%s): its entry point returned no "
                      "operations table; pass the table to "
                      "FY_DRIVER_REGISTER",
                      name, path);
        goto out;
    }
    rc = check_ops(table, name, path);
    if (rc == 0)
        *ops = table;

out:
    if (rc < 0)
        dlclose(lib);
    return rc;
}

int fy_driver_load(const char *dir, const char *name,
                   const struct fy_driver_ops **ops, char *path_out)
{
    char path[FY_PATH_MAX];
    int n, rc = 0;

    if (!name || !ops)
        return fy_error(FY_E_INVAL, "fy_driver_load: no %s given",
                        !name ? "driver name" : "place for the operations");
    if (!name_is_valid(name))
        return fy_error(FY_E_INVAL,
                        "driver name '%s' is not valid: it is the <name> of "
                        "ferry-<name>.so, non-empty, shorter than %d "
                        "characters, without '/' or '..'",
                        name, FY_NAME_MAX);
    if (!dir)
        dir = fy_driver_dir_default();
    n = snprintf(path, sizeof(path), "%s/ferry-%s.so", dir, name);
    if (n < 0 || (size_t)n >= sizeof(path))
        return fy_error(FY_E_INVAL,
                        "driver %s: the path %s/ferry-%s.so is longer than "
                        "%d bytes; use a shorter drivers directory",
                        name, dir, name, FY_PATH_MAX - 1);

    pthread_mutex_lock(&registry_lock);
    for (unsigned i = 0; i < nregistry; i++) {
        if (strcmp(registry[i].path, path) == 0) {
            *ops = registry[i].ops;
            goto out;
        }
    }
    if (nregistry == MAX_LOADED) {
        rc = fy_error(FY_E_NOSPACE,
                      "driver %s (%s): %d drivers are loaded already, the "
                      "most one process keeps; load fewer distinct drivers",
                      name, path, MAX_LOADED);
        goto out;
    }
    rc = load_library(name, path, ops);
    if (rc == 0) {
        memcpy(registry[nregistry].path, path, sizeof(path));
        registry[nregistry].ops = *ops;
        nregistry++;
    }

out:
    pthread_mutex_unlock(&registry_lock);
    if (rc == 0 && path_out)
        memcpy(path_out, path, sizeof(path));
    return rc;
}

int fy_driver_open(const char *dir, const char *name, const char *config,
                   struct fy_driver_handle *h)
{
    const struct fy_driver_ops *ops;
    struct fy_driver *d = NULL;
    char path[FY_PATH_MAX];
    int rc;

    if (!h)
        return fy_error(FY_E_INVAL, "fy_driver_open: no handle given");
    memset(h, 0, sizeof(*h));

    rc = fy_driver_load(dir, name, &ops, path);
    if (rc < 0)
        return rc;

    fy_error_clear();
    rc = ops->open(config ? config : "", &d);
    if (rc != 0) {
        /* The driver reported its detail; say whose it is.  A driver that
         * returns something other than a negative fy_err, or reports
         * nothing, still fails. */
        int code = rc < 0 && -rc < FY_E__COUNT ? -rc : FY_E_INVAL;
        const char *detail = fy_error_detail();

        return fy_error(code, "driver %s (%s): open failed: %s", name, path,
                        detail[0] ? detail : fy_strerror(code));
    }
    h->ops = ops;
    h->d = d;
    memcpy(h->path, path, sizeof(path));
    return 0;
}

void fy_driver_close(struct fy_driver_handle *h)
{
    if (!h)
        return;
    if (h->ops)
        h->ops->close(h->d);
    memset(h, 0, sizeof(*h));
}
