/* Helpers the controlplane tests share when they move sim VMs between
 * hosts: files compared byte by byte, where a host keeps its disks, and
 * removing a test's directory.  Include after <cmocka.h>. */
#ifndef FERRY_TEST_SIM_HELPERS_H
#define FERRY_TEST_SIM_HELPERS_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controlplane/host.h"

static inline void rm_rf(const char *dir)
{
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

/* True if both files exist and hold the same bytes. */
static inline bool files_equal(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool eq = fa && fb;
    static char ba[1 << 16], bb[1 << 16];

    while (eq) {
        size_t na = fread(ba, 1, sizeof(ba), fa), nb = fread(bb, 1, sizeof(bb), fb);
        if (na != nb || memcmp(ba, bb, na) != 0)
            eq = false;
        if (na == 0)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return eq;
}

/* The directory of host h's first datastore. */
static inline void ds_path(struct fy_host *h, char *out, size_t len)
{
    struct fy_host_info hi;
    assert_int_equal(h->ops->host_info(h, &hi), 0);
    snprintf(out, len, "%s", hi.datastores[0].path);
}

#endif /* FERRY_TEST_SIM_HELPERS_H */
