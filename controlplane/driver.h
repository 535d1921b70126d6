/* Loading drivers (include/ferry/driver.h) and opening their instances.
 *
 * A driver 'name' is the file ferry-<name>.so in a drivers directory: the
 * one given, else $FERRY_DRIVERS_DIR, else the install directory.  A loaded
 * library is never unloaded (libvirt does the same): instances of it may be
 * opened and closed any number of times.
 *
 * Every refusal names the file and the reason: missing file, not a shared
 * object (dlerror), no entry point, wrong ABI version, a required operation
 * missing, a capability whose operations are missing, or open() failing. */
#ifndef FERRY_CP_DRIVER_H
#define FERRY_CP_DRIVER_H

#include "ferry/driver.h"

/* An open driver instance. */
struct fy_driver_handle {
    const struct fy_driver_ops *ops;
    struct fy_driver *d;
    char path[FY_PATH_MAX]; /* the .so it came from */
};

/* The drivers directory used when none is given. */
const char *fy_driver_dir_default(void);

/* Loads (once) and checks driver 'name' from 'dir' (NULL: the default).
 * Returns 0 with *ops and path_out (FY_PATH_MAX bytes, may be NULL). */
int fy_driver_load(const char *dir, const char *name,
                   const struct fy_driver_ops **ops, char *path_out);

/* Loads driver 'name' and opens an instance with 'config'. On failure *h
 * is left closed. */
int fy_driver_open(const char *dir, const char *name, const char *config,
                   struct fy_driver_handle *h);

/* Closes the instance (the library stays loaded).  A closed or zeroed
 * handle is allowed. */
void fy_driver_close(struct fy_driver_handle *h);

#endif /* FERRY_CP_DRIVER_H */
