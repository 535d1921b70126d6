/* ferry-conformance: checks any driver against include/ferry/driver.h.
 *
 *     ferry-conformance DRIVERS_DIR NAME CONFIG [VM]
 *
 * loads DRIVERS_DIR/ferry-NAME.so through the controlplane's loader (so its
 * ABI and required operations are checked as ferryd checks them), opens a
 * fresh instance with CONFIG for each test, and checks inventory, errors,
 * define/undefine and the lifecycle, and the memory layout and dirty log
 * when the driver claims them.  The lifecycle tests work on a copy of VM
 * (default: the first VM the host lists) that they define under a new name
 * and undefine at the end; with no VM they are skipped, saying why.
 *
 * Every "@TMPDIR@" in CONFIG is replaced by a fresh directory that is
 * removed at the end, for drivers that keep state in files.
 *
 * Exit status: the number of failed tests (cmocka), 2 for a usage error. */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "controlplane/driver.h"
#include "ferry/error.h"

#define PAGE 4096u
#define NO_SUCH_VM "fy-conformance-no-such-vm"
#define BOGUS_KEY "fy-conformance-bogus-key"

/* What main() was given, shared by the tests. */
static struct {
    const char *dir;
    const char *name;
    char *config;
    const char *vm; /* NULL: the first listed */
    char copy[FY_NAME_MAX];  /* the VM the lifecycle tests define */
    char copy2[FY_NAME_MAX]; /* a second copy, for the round trip */
} conf;

/* ---- fixture: one instance per test --------------------------------------- */

#define assert_ok(expr)                                                      \
    do {                                                                     \
        int rc_ = (expr);                                                    \
        if (rc_ != 0)                                                        \
            fail_msg("%s returned %d (%s): %s", #expr, rc_, fy_errname(rc_), \
                     fy_error_detail());                                     \
    } while (0)

#define assert_fails(expr, code)                                             \
    do {                                                                     \
        int rc_ = (expr);                                                    \
        if (rc_ != -(code))                                                  \
            fail_msg("%s returned %d (%s), expected -FY_E_%s", #expr, rc_,   \
                     fy_errname(rc_), fy_errname(code));                     \
    } while (0)

static int instance_open(void **state)
{
    struct fy_driver_handle *h = calloc(1, sizeof(*h));

    if (!h)
        return -1;
    if (fy_driver_open(conf.dir, conf.name, conf.config, h) < 0) {
        print_error("cannot open the driver: %s\n", fy_error_detail());
        free(h);
        return -1;
    }
    *state = h;
    return 0;
}

/* Stops and undefines what a test may have left behind, so the next
 * instance of a driver with persistent state starts clean. */
static void remove_copy(struct fy_driver_handle *h, const char *vm)
{
    struct fy_vm_info info;

    if (h->ops->vm_info(h->d, vm, &info) < 0)
        return;
    if (info.power != FY_POWER_OFF)
        h->ops->vm_stop(h->d, vm, true);
    h->ops->vm_undefine(h->d, vm);
}

static int instance_close(void **state)
{
    struct fy_driver_handle *h = *state;

    remove_copy(h, conf.copy);
    remove_copy(h, conf.copy2);
    fy_driver_close(h);
    free(h);
    return 0;
}

/* ---- helpers ---------------------------------------------------------------- */

static bool list_has(const struct fy_vm_list *list, const char *vm)
{
    for (unsigned i = 0; i < list->n; i++)
        if (strncmp(list->names[i], vm, FY_NAME_MAX) == 0)
            return true;
    return false;
}

static bool host_has_vm(struct fy_driver_handle *h, const char *vm)
{
    struct fy_vm_list list = { 0 };
    bool has;

    assert_ok(h->ops->vm_list(h->d, &list));
    has = list_has(&list, vm);
    free(list.names);
    return has;
}

/* The VM to copy, or NULL after printing why there is none. */
static const char *source_vm(struct fy_driver_handle *h)
{
    static char first[FY_NAME_MAX];
    struct fy_vm_list list = { 0 };

    if (conf.vm)
        return conf.vm;
    assert_ok(h->ops->vm_list(h->d, &list));
    if (list.n == 0) {
        free(list.names);
        print_message("[ SKIPPED  ] the host has no VM to copy: pass one as "
                      "the 4th argument or have the driver create one\n");
        return NULL;
    }
    memcpy(first, list.names[0], FY_NAME_MAX);
    first[FY_NAME_MAX - 1] = '\0';
    free(list.names);
    return first;
}

/* Defines conf.copy from the exported source VM.  Returns false (the test
 * is then skipped) if there is no source VM. */
static bool define_copy(struct fy_driver_handle *h, const char *copy)
{
    const char *src = source_vm(h);
    char *config = NULL;
    int rc;

    if (!src)
        return false;
    assert_ok(h->ops->vm_export(h->d, src, &config));
    assert_non_null(config);
    rc = h->ops->vm_define(h->d, config, copy, NULL, 0);
    free(config);
    assert_ok(rc);
    return true;
}

static enum fy_power power_of(struct fy_driver_handle *h, const char *vm)
{
    struct fy_vm_info info;

    assert_ok(h->ops->vm_info(h->d, vm, &info));
    return info.power;
}

/* ---- inventory -------------------------------------------------------------- */

static void test_conformance_host_info__called__fields_sane(void **state)
{
    struct fy_driver_handle *h = *state;
    struct fy_host_info info;

    memset(&info, 0xa5, sizeof(info));
    assert_ok(h->ops->host_info(h->d, &info));
    assert_non_null(memchr(info.name, '\0', sizeof(info.name)));
    assert_true(info.name[0] != '\0');
    assert_non_null(memchr(info.hypervisor, '\0', sizeof(info.hypervisor)));
    assert_true(info.hypervisor[0] != '\0');
    assert_non_null(memchr(info.cpu_vendor, '\0', sizeof(info.cpu_vendor)));
    assert_true(info.mem_total > 0);
    assert_true(info.mem_free <= info.mem_total);
    assert_true(info.cpus_free <= info.cpus_total);
    assert_true(info.ndatastores <= FY_MAX_DATASTORES);
    for (unsigned i = 0; i < info.ndatastores; i++) {
        const struct fy_datastore *ds = &info.datastores[i];

        assert_non_null(memchr(ds->name, '\0', sizeof(ds->name)));
        assert_true(ds->name[0] != '\0');
        if (ds->free > ds->capacity)
            fail_msg("datastore %s: free %llu > capacity %llu", ds->name,
                     (unsigned long long)ds->free,
                     (unsigned long long)ds->capacity);
    }
}

static void test_conformance_vm_list__each_vm__vm_info_agrees(void **state)
{
    struct fy_driver_handle *h = *state;
    struct fy_vm_list list = { 0 };

    assert_ok(h->ops->vm_list(h->d, &list));
    assert_true(list.n == 0 || list.names != NULL);
    for (unsigned i = 0; i < list.n; i++) {
        struct fy_vm_info info;

        assert_non_null(memchr(list.names[i], '\0', FY_NAME_MAX));
        assert_ok(h->ops->vm_info(h->d, list.names[i], &info));
        assert_string_equal(info.name, list.names[i]);
        assert_true(info.power <= FY_POWER_SUSPENDED);
        assert_true(info.ndisks <= FY_MAX_DISKS);
        assert_true(info.ndevices <= FY_MAX_DEVICES);
    }
    free(list.names);
}

/* ---- unknown VMs --------------------------------------------------------------- */

static void test_conformance_vm_info__unknown_vm__notfound(void **state)
{
    struct fy_driver_handle *h = *state;
    struct fy_vm_info info;

    assert_fails(h->ops->vm_info(h->d, NO_SUCH_VM, &info), FY_E_NOTFOUND);
}

static void test_conformance_vm_start__unknown_vm__notfound(void **state)
{
    struct fy_driver_handle *h = *state;

    assert_fails(h->ops->vm_start(h->d, NO_SUCH_VM), FY_E_NOTFOUND);
}

static void test_conformance_vm_stop__unknown_vm__notfound(void **state)
{
    struct fy_driver_handle *h = *state;

    assert_fails(h->ops->vm_stop(h->d, NO_SUCH_VM, true), FY_E_NOTFOUND);
}

static void test_conformance_vm_export__unknown_vm__notfound(void **state)
{
    struct fy_driver_handle *h = *state;
    char *config = NULL;

    assert_fails(h->ops->vm_export(h->d, NO_SUCH_VM, &config), FY_E_NOTFOUND);
    free(config);
}

static void test_conformance_vm_undefine__unknown_vm__notfound(void **state)
{
    struct fy_driver_handle *h = *state;

    assert_fails(h->ops->vm_undefine(h->d, NO_SUCH_VM), FY_E_NOTFOUND);
}

/* ---- define and undefine ------------------------------------------------------ */

static void test_conformance_vm_define__existing_name__exists(void **state)
{
    struct fy_driver_handle *h = *state;
    const char *src = source_vm(h);
    char *config = NULL;
    int rc;

    if (!src)
        skip();
    assert_ok(h->ops->vm_export(h->d, src, &config));
    rc = h->ops->vm_define(h->d, config, src, NULL, 0);
    free(config);
    assert_fails(rc, FY_E_EXISTS);
}

static void test_conformance_vm_define__new_name__listed_off_then_undefined(void **state)
{
    struct fy_driver_handle *h = *state;
    struct fy_vm_info orig, copy;
    char *config = NULL;

    if (!define_copy(h, conf.copy))
        skip();
    assert_ok(h->ops->vm_info(h->d, source_vm(h), &orig));
    assert_ok(h->ops->vm_info(h->d, conf.copy, &copy));
    assert_string_equal(copy.name, conf.copy);
    assert_int_equal(copy.power, FY_POWER_OFF);
    assert_true(copy.mem_bytes == orig.mem_bytes);
    assert_int_equal(copy.vcpus, orig.vcpus);
    assert_int_equal(copy.ndisks, orig.ndisks);
    assert_true(host_has_vm(h, conf.copy));

    /* The copy exports and defines again: the round trip is repeatable. */
    assert_ok(h->ops->vm_export(h->d, conf.copy, &config));
    assert_ok(h->ops->vm_define(h->d, config, conf.copy2, NULL, 0));
    free(config);
    assert_int_equal(power_of(h, conf.copy2), FY_POWER_OFF);

    assert_ok(h->ops->vm_undefine(h->d, conf.copy2));
    assert_ok(h->ops->vm_undefine(h->d, conf.copy));
    assert_fails(h->ops->vm_info(h->d, conf.copy, &copy), FY_E_NOTFOUND);
    assert_false(host_has_vm(h, conf.copy));
    assert_false(host_has_vm(h, conf.copy2));
}

/* ---- lifecycle ------------------------------------------------------------------ */

static void test_conformance_lifecycle__defined_copy__power_follows(void **state)
{
    struct fy_driver_handle *h = *state;

    if (!define_copy(h, conf.copy))
        skip();
    assert_ok(h->ops->vm_start(h->d, conf.copy));
    assert_int_equal(power_of(h, conf.copy), FY_POWER_RUNNING);
    assert_ok(h->ops->vm_pause(h->d, conf.copy));
    assert_int_equal(power_of(h, conf.copy), FY_POWER_PAUSED);
    assert_ok(h->ops->vm_resume(h->d, conf.copy));
    assert_int_equal(power_of(h, conf.copy), FY_POWER_RUNNING);
    assert_ok(h->ops->vm_stop(h->d, conf.copy, true));
    assert_int_equal(power_of(h, conf.copy), FY_POWER_OFF);
    assert_ok(h->ops->vm_undefine(h->d, conf.copy));
}

/* ---- memory ------------------------------------------------------------------- */

/* Starts the copy and checks its layout; false if skipped. */
static bool running_copy_layout(struct fy_driver_handle *h,
                                struct fy_memory_layout *layout)
{
    if (!define_copy(h, conf.copy))
        return false;
    assert_ok(h->ops->vm_start(h->d, conf.copy));
    memset(layout, 0, sizeof(*layout));
    assert_ok(h->ops->memory_layout(h->d, conf.copy, layout));
    assert_true(layout->n > 0);
    assert_true(layout->n <= FY_MAX_REGIONS);
    return true;
}

static void test_conformance_memory_layout__running_vm__regions_mappable(void **state)
{
    struct fy_driver_handle *h = *state;
    struct fy_memory_layout layout;

    if (!(h->ops->caps & FY_DRV_LIVE)) {
        print_message("[ SKIPPED  ] the driver does not claim FY_DRV_LIVE\n");
        skip();
    }
    if (!running_copy_layout(h, &layout))
        skip();
    for (unsigned i = 0; i < layout.n; i++) {
        const struct fy_memory_region *r = &layout.regions[i];

        assert_non_null(memchr(r->name, '\0', sizeof(r->name)));
        assert_true(r->size > 0);
        if (r->size % PAGE != 0)
            fail_msg("region %s: size %llu is not a multiple of %u", r->name,
                     (unsigned long long)r->size, PAGE);
        if (r->fd >= 0) {
            void *p;

            assert_true(r->offset % PAGE == 0);
            p = mmap(NULL, r->size, PROT_READ, MAP_SHARED, r->fd,
                     (off_t)r->offset);
            if (p == MAP_FAILED)
                fail_msg("region %s: fd %d does not map: %s", r->name, r->fd,
                         strerror(errno));
            munmap(p, r->size);
        } else if (r->pid <= 0) {
            fail_msg("region %s: neither an fd nor a pid", r->name);
        }
    }
    assert_ok(h->ops->vm_stop(h->d, conf.copy, true));
}

static void test_conformance_dirty_log__running_vm__start_sync_twice_stop(void **state)
{
    struct fy_driver_handle *h = *state;
    struct fy_memory_layout layout;
    uint64_t npages, *bitmap;

    if (!(h->ops->caps & FY_DRV_DIRTY_LOG) || !h->ops->memory_layout) {
        print_message("[ SKIPPED  ] the driver does not claim "
                      "FY_DRV_DIRTY_LOG with a memory layout\n");
        skip();
    }
    if (!running_copy_layout(h, &layout))
        skip();
    npages = layout.regions[0].size / PAGE;
    assert_true(npages > 0);
    bitmap = calloc((size_t)(npages + 63) / 64, sizeof(*bitmap));
    assert_non_null(bitmap);
    assert_ok(h->ops->dirty_log_start(h->d, conf.copy));
    assert_ok(h->ops->dirty_log_sync(h->d, conf.copy, 0, bitmap, npages));
    assert_ok(h->ops->dirty_log_sync(h->d, conf.copy, 0, bitmap, npages));
    assert_ok(h->ops->dirty_log_stop(h->d, conf.copy));
    free(bitmap);
    assert_ok(h->ops->vm_stop(h->d, conf.copy, true));
}

/* ---- open ------------------------------------------------------------------------- */

static void test_conformance_open__unknown_config_key__config_naming_it(void **state)
{
    struct fy_driver_handle h;
    char *config;

    (void)state;
    if (asprintf(&config, "%s%s" BOGUS_KEY "=1", conf.config,
                 conf.config[0] ? ";" : "") < 0)
        fail_msg("out of memory");
    assert_fails(fy_driver_open(conf.dir, conf.name, config, &h), FY_E_CONFIG);
    free(config);
    assert_null(h.ops);
    if (!strstr(fy_error_detail(), BOGUS_KEY))
        fail_msg("the refusal \"%s\" does not name the key " BOGUS_KEY,
                 fy_error_detail());
}

/* ---- main -------------------------------------------------------------------------- */

/* Replaces every "@TMPDIR@" in 'config' by 'tmpdir'.  Returns malloc'd. */
static char *substitute(const char *config, const char *tmpdir)
{
    static const char token[] = "@TMPDIR@";
    size_t cap = strlen(config) + 1, len = 0;
    const char *p;
    char *out;

    for (p = config; (p = strstr(p, token)); p += sizeof(token) - 1)
        cap += strlen(tmpdir);
    out = malloc(cap);
    if (!out)
        return NULL;
    for (p = config; *p;) {
        if (strncmp(p, token, sizeof(token) - 1) == 0) {
            memcpy(out + len, tmpdir, strlen(tmpdir));
            len += strlen(tmpdir);
            p += sizeof(token) - 1;
        } else {
            out[len++] = *p++;
        }
    }
    out[len] = '\0';
    return out;
}

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
#define T_(t) cmocka_unit_test_setup_teardown(t, instance_open, instance_close)
        T_(test_conformance_host_info__called__fields_sane),
        T_(test_conformance_vm_list__each_vm__vm_info_agrees),
        T_(test_conformance_vm_info__unknown_vm__notfound),
        T_(test_conformance_vm_start__unknown_vm__notfound),
        T_(test_conformance_vm_stop__unknown_vm__notfound),
        T_(test_conformance_vm_export__unknown_vm__notfound),
        T_(test_conformance_vm_undefine__unknown_vm__notfound),
        T_(test_conformance_vm_define__existing_name__exists),
        T_(test_conformance_vm_define__new_name__listed_off_then_undefined),
        T_(test_conformance_lifecycle__defined_copy__power_follows),
        T_(test_conformance_memory_layout__running_vm__regions_mappable),
        T_(test_conformance_dirty_log__running_vm__start_sync_twice_stop),
#undef T_
        cmocka_unit_test(test_conformance_open__unknown_config_key__config_naming_it),
    };
    const struct fy_driver_ops *ops;
    char tmpdir[] = "/tmp/ferry-conformance-XXXXXX";
    bool made_tmpdir = false;
    int failed = 2;

    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: %s DRIVERS_DIR NAME CONFIG [VM]\n"
                "Checks DRIVERS_DIR/ferry-NAME.so against the driver "
                "contract; @TMPDIR@ in CONFIG becomes a fresh directory.\n",
                argv[0]);
        return 2;
    }
    conf.dir = argv[1];
    conf.name = argv[2];
    conf.vm = argc == 5 ? argv[4] : NULL;
    snprintf(conf.copy, sizeof(conf.copy), "fy-conformance-copy-%ld",
             (long)getpid());
    snprintf(conf.copy2, sizeof(conf.copy2), "fy-conformance-copy2-%ld",
             (long)getpid());
    if (strstr(argv[3], "@TMPDIR@")) {
        if (!mkdtemp(tmpdir)) {
            perror("ferry-conformance: mkdtemp");
            return 2;
        }
        made_tmpdir = true;
    }
    conf.config = substitute(argv[3], tmpdir);
    if (!conf.config) {
        fprintf(stderr, "ferry-conformance: out of memory\n");
        goto out;
    }

    /* A driver the loader refuses fails here, once, with the reason. */
    if (fy_driver_load(conf.dir, conf.name, &ops, NULL) < 0) {
        fprintf(stderr, "ferry-conformance: %s\n", fy_error_detail());
        failed = 1;
        goto out;
    }
    printf("driver %s: %s (caps 0x%x)\n", ops->name, ops->description,
           ops->caps);
    failed = cmocka_run_group_tests_name(conf.name, tests, NULL, NULL);

out:
    free(conf.config);
    if (made_tmpdir)
        nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return failed;
}
