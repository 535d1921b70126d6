/* Tests of drivers/libvirt/qcow2.c: backing chains read from qcow2 headers
 * and the relinking of a moved disk to the base beside it.  Images are
 * made with qemu-img (qemu-utils) in a fresh directory per test. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drivers/libvirt/lv.h"

struct dirs {
    char a[64], b[64];
};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct dirs *d = calloc(1, sizeof(*d));

    if (!d)
        return -1;
    strcpy(d->a, "/tmp/fy-qcow2-a-XXXXXX");
    strcpy(d->b, "/tmp/fy-qcow2-b-XXXXXX");
    if (!mkdtemp(d->a) || !mkdtemp(d->b))
        return -1;
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    struct dirs *d = *state;

    nftw(d->a, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    nftw(d->b, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    free(d);
    return 0;
}

__attribute__((format(printf, 1, 2)))
static void sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (system(cmd) != 0)
        fail_msg("command failed: %s", cmd);
}

/* The backing file name stored in 'path''s header (via qemu-img). */
static void backing_of(const char *path, char *out, size_t len)
{
    char cmd[512];
    FILE *p;

    snprintf(cmd, sizeof(cmd), "qemu-img info -U --output=json '%s' | "
             "/usr/bin/python3 -c 'import json,sys; "
             "print(json.load(sys.stdin).get(\"backing-filename\",\"\"))'", path);
    assert_non_null(p = popen(cmd, "r"));
    if (!fgets(out, (int)len, p))
        out[0] = '\0';
    out[strcspn(out, "\n")] = '\0';
    pclose(p);
}

static void test_lv_disk_chain__overlay_on_base__absolute_chain_nearest_first(void **state)
{
    struct dirs *d = *state;
    struct fy_disk k = {0};

    sh("qemu-img create -q -f qcow2 %s/base.qcow2 64M", d->a);
    sh("qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 %s/mid.qcow2", d->a);
    sh("qemu-img create -q -f qcow2 -b %s/mid.qcow2 -F qcow2 %s/top.qcow2", d->a, d->a);
    snprintf(k.path, sizeof(k.path), "%s/top.qcow2", d->a);
    assert_int_equal(lv_disk_chain(&k), 0);
    assert_int_equal(k.nbacking, 2);
    assert_true(strstr(k.backing[0], "/mid.qcow2") && k.backing[0][0] == '/');
    /* mid names its base relatively: resolved from mid's directory. */
    char want[FY_PATH_MAX];
    snprintf(want, sizeof(want), "%s/base.qcow2", d->a);
    assert_string_equal(k.backing[1], want);
    assert_true(k.virtual_size == 64ull << 20);
    assert_true(k.size > 0);
}

static void test_lv_disk_chain__raw_image__no_chain_size_is_file(void **state)
{
    struct dirs *d = *state;
    struct fy_disk k = {0};

    sh("truncate -s 8M %s/raw.img", d->a);
    snprintf(k.path, sizeof(k.path), "%s/raw.img", d->a);
    assert_int_equal(lv_disk_chain(&k), 0);
    assert_int_equal(k.nbacking, 0);
    assert_true(k.virtual_size == 8ull << 20);
}

static void test_lv_disk_chain__missing_file__zero_sizes(void **state)
{
    struct dirs *d = *state;
    struct fy_disk k = {0};

    snprintf(k.path, sizeof(k.path), "%s/none.qcow2", d->a);
    assert_int_equal(lv_disk_chain(&k), 0);
    assert_int_equal(k.nbacking, 0);
    assert_true(k.size == 0 && k.virtual_size == 0);
}

static void test_lv_disk_relink__moved_overlay_base_beside__names_it_relatively(void **state)
{
    struct dirs *d = *state;
    char top[FY_PATH_MAX], name[FY_PATH_MAX];

    /* The overlay names the source's base absolutely; it moved next to a
     * copy of that base. */
    sh("qemu-img create -q -f qcow2 %s/base.qcow2 64M", d->a);
    sh("qemu-img create -q -f qcow2 -b %s/base.qcow2 -F qcow2 %s/top.qcow2", d->a, d->a);
    sh("cp %s/base.qcow2 %s/top.qcow2 %s/", d->a, d->a, d->b);
    snprintf(top, sizeof(top), "%s/top.qcow2", d->b);
    assert_int_equal(lv_disk_relink(top), 0);
    backing_of(top, name, sizeof(name));
    assert_string_equal(name, "base.qcow2");
}

static void test_lv_disk_relink__no_base_beside__unchanged(void **state)
{
    struct dirs *d = *state;
    char top[FY_PATH_MAX], name[FY_PATH_MAX], want[FY_PATH_MAX];

    sh("qemu-img create -q -f qcow2 %s/base.qcow2 64M", d->a);
    sh("qemu-img create -q -f qcow2 -b %s/base.qcow2 -F qcow2 %s/top.qcow2", d->a, d->a);
    sh("cp %s/top.qcow2 %s/", d->a, d->b);
    snprintf(top, sizeof(top), "%s/top.qcow2", d->b);
    assert_int_equal(lv_disk_relink(top), 0);
    backing_of(top, name, sizeof(name));
    snprintf(want, sizeof(want), "%s/base.qcow2", d->a);
    assert_string_equal(name, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_lv_disk_chain__overlay_on_base__absolute_chain_nearest_first, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_lv_disk_chain__raw_image__no_chain_size_is_file, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_lv_disk_chain__missing_file__zero_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_lv_disk_relink__moved_overlay_base_beside__names_it_relatively, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_lv_disk_relink__no_base_beside__unchanged, setup, teardown),
    };

    if (system("qemu-img --version >/dev/null 2>&1") != 0) {
        printf("SKIP: qemu-img not installed (qemu-utils, scripts/setup-deps)\n");
        return 77;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
