/* Unit tests of controlplane/driver.c: loading drivers by name, the checks
 * that refuse broken ones (fixtures/bad_driver.c built as ferry-bad-*.so),
 * and opening instances.  The skeleton driver is the good one. */
#include <dlfcn.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "controlplane/driver.h"
#include "ferry/error.h"

/* ---- helpers ---------------------------------------------------------- */

#define assert_detail_has(s)                                                 \
    do {                                                                     \
        if (!strstr(fy_error_detail(), (s)))                                 \
            fail_msg("error detail \"%s\" lacks \"%s\"", fy_error_detail(),  \
                     (s));                                                   \
    } while (0)

/* Loads fixture ferry-bad-<defect>.so, expecting refusal with 'code'; the
 * message must name the file. */
static void assert_fixture_refused(const char *defect, int code)
{
    const struct fy_driver_ops *ops = NULL;
    char name[64], path[FY_PATH_MAX];

    snprintf(name, sizeof(name), "bad-%s", defect);
    snprintf(path, sizeof(path), "%s/ferry-%s.so", FY_TEST_FIXTURES_DIR, name);
    assert_int_equal(fy_driver_load(FY_TEST_FIXTURES_DIR, name, &ops, NULL),
                     -code);
    assert_null(ops);
    assert_detail_has(path);
}

/* A fresh empty directory; rmdir'd by the caller. */
static char *make_tmpdir(void)
{
    char *dir = strdup("/tmp/ferry-test-driver-XXXXXX");

    assert_non_null(dir);
    assert_non_null(mkdtemp(dir));
    return dir;
}

/* ---- loading the good driver ------------------------------------------- */

static void test_driver_load__skeleton_by_name__returns_checked_ops(void **state)
{
    const struct fy_driver_ops *ops = NULL;
    char path[FY_PATH_MAX];

    (void)state;
    assert_int_equal(fy_driver_load(FY_TEST_DRIVERS_DIR, "skeleton", &ops, path),
                     0);
    assert_non_null(ops);
    assert_int_equal(ops->abi, FY_DRIVER_ABI);
    assert_string_equal(ops->name, "skeleton");
    assert_string_equal(path, FY_TEST_DRIVERS_DIR "/ferry-skeleton.so");
}

static void test_driver_load__twice__returns_same_ops(void **state)
{
    const struct fy_driver_ops *a = NULL, *b = NULL;

    (void)state;
    assert_int_equal(fy_driver_load(FY_TEST_DRIVERS_DIR, "skeleton", &a, NULL),
                     0);
    assert_int_equal(fy_driver_load(FY_TEST_DRIVERS_DIR, "skeleton", &b, NULL),
                     0);
    assert_ptr_equal(a, b);
}

static void test_driver_load__env_dir__used_when_no_dir_given(void **state)
{
    const struct fy_driver_ops *ops = NULL;
    char path[FY_PATH_MAX];

    (void)state;
    assert_int_equal(setenv("FERRY_DRIVERS_DIR", FY_TEST_DRIVERS_DIR, 1), 0);
    assert_string_equal(fy_driver_dir_default(), FY_TEST_DRIVERS_DIR);
    assert_int_equal(fy_driver_load(NULL, "skeleton", &ops, path), 0);
    assert_string_equal(path, FY_TEST_DRIVERS_DIR "/ferry-skeleton.so");
    unsetenv("FERRY_DRIVERS_DIR");
}

static void test_driver_load__env_dir_without_driver__notfound_there(void **state)
{
    const struct fy_driver_ops *ops = NULL;
    char *dir = make_tmpdir();

    (void)state;
    assert_int_equal(setenv("FERRY_DRIVERS_DIR", dir, 1), 0);
    assert_int_equal(fy_driver_load(NULL, "skeleton", &ops, NULL),
                     -FY_E_NOTFOUND);
    assert_detail_has(dir);
    unsetenv("FERRY_DRIVERS_DIR");
    rmdir(dir);
    free(dir);
}

/* ---- refusals ----------------------------------------------------------- */

static void test_driver_load__missing_file__notfound_naming_path(void **state)
{
    const struct fy_driver_ops *ops = NULL;

    (void)state;
    assert_int_equal(fy_driver_load(FY_TEST_DRIVERS_DIR, "nosuch", &ops, NULL),
                     -FY_E_NOTFOUND);
    assert_null(ops);
    assert_detail_has(FY_TEST_DRIVERS_DIR "/ferry-nosuch.so");
    assert_detail_has("no such file");
    assert_detail_has("FERRY_DRIVERS_DIR");
}

static void test_driver_load__name_with_dotdot__refused(void **state)
{
    const struct fy_driver_ops *ops = NULL;

    (void)state;
    assert_int_equal(fy_driver_load(FY_TEST_DRIVERS_DIR, "../drivers/skeleton",
                                    &ops, NULL),
                     -FY_E_INVAL);
    assert_null(ops);
    assert_detail_has("../drivers/skeleton");
}

static void test_driver_load__name_with_slash__refused(void **state)
{
    const struct fy_driver_ops *ops = NULL;

    (void)state;
    assert_int_equal(fy_driver_load("/", "tmp/skeleton", &ops, NULL),
                     -FY_E_INVAL);
    assert_null(ops);
}

static void test_driver_load__empty_name__refused(void **state)
{
    const struct fy_driver_ops *ops = NULL;

    (void)state;
    assert_int_equal(fy_driver_load(FY_TEST_DRIVERS_DIR, "", &ops, NULL),
                     -FY_E_INVAL);
}

static void test_driver_load__not_a_shared_object__refused_with_dlerror(void **state)
{
    const struct fy_driver_ops *ops = NULL;
    char *dir = make_tmpdir();
    char path[FY_PATH_MAX], expected[512];
    FILE *f;
    void *lib;

    (void)state;
    snprintf(path, sizeof(path), "%s/ferry-text.so", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("this is not an ELF file\n", f);
    fclose(f);
    /* What dlopen itself says about the file. */
    lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    assert_null(lib);
    snprintf(expected, sizeof(expected), "%s", dlerror());

    assert_int_equal(fy_driver_load(dir, "text", &ops, NULL), -FY_E_INVAL);
    assert_null(ops);
    assert_detail_has(path);
    assert_detail_has(expected);
    unlink(path);
    rmdir(dir);
    free(dir);
}

static void test_driver_load__no_entry_symbol__refused(void **state)
{
    (void)state;
    assert_fixture_refused("noentry", FY_E_INVAL);
    assert_detail_has(FY_DRIVER_ENTRY_SYMBOL);
}

static void test_driver_load__entry_returns_null__refused(void **state)
{
    (void)state;
    assert_fixture_refused("nullops", FY_E_INVAL);
    assert_detail_has("no operations table");
}

static void test_driver_load__wrong_abi__version_naming_both(void **state)
{
    char expected[64];

    (void)state;
    assert_fixture_refused("abi", FY_E_VERSION);
    snprintf(expected, sizeof(expected), "ABI 7, this build needs %d",
             FY_DRIVER_ABI);
    assert_detail_has(expected);
}

static void test_driver_load__required_op_missing__refused_naming_op(void **state)
{
    (void)state;
    assert_fixture_refused("noop", FY_E_INVAL);
    assert_detail_has("missing operation host_info");
}

static void test_driver_load__live_without_memory_layout__refused_naming_cap(void **state)
{
    (void)state;
    assert_fixture_refused("live", FY_E_INVAL);
    assert_detail_has("missing operation memory_layout");
    assert_detail_has("'live' capability");
}

static void test_driver_load__unknown_capability__refused(void **state)
{
    (void)state;
    assert_fixture_refused("caps", FY_E_INVAL);
    assert_detail_has("0x40000000");
}

static void test_driver_load__refused_then_retried__refused_again(void **state)
{
    (void)state;
    assert_fixture_refused("abi", FY_E_VERSION);
    assert_fixture_refused("abi", FY_E_VERSION);
}

/* ---- instances ------------------------------------------------------------ */

static void test_driver_open__skeleton__instance_answers(void **state)
{
    struct fy_driver_handle h;
    struct fy_host_info info;

    (void)state;
    assert_int_equal(fy_driver_open(FY_TEST_DRIVERS_DIR, "skeleton",
                                    "host=alpha", &h),
                     0);
    assert_non_null(h.ops);
    assert_non_null(h.d);
    assert_string_equal(h.path, FY_TEST_DRIVERS_DIR "/ferry-skeleton.so");
    assert_int_equal(h.ops->host_info(h.d, &info), 0);
    assert_string_equal(info.name, "alpha");
    fy_driver_close(&h);
    assert_null(h.ops);
    assert_null(h.d);
}

static void test_driver_open__unknown_config_key__config_naming_key(void **state)
{
    struct fy_driver_handle h;

    (void)state;
    assert_int_equal(fy_driver_open(FY_TEST_DRIVERS_DIR, "skeleton",
                                    "host=alpha;colour=blue", &h),
                     -FY_E_CONFIG);
    assert_null(h.ops);
    assert_detail_has("colour");
    assert_detail_has("ferry-skeleton.so");
}

static void test_driver_open__driver_open_fails__detail_kept(void **state)
{
    struct fy_driver_handle h;

    (void)state;
    assert_int_equal(fy_driver_open(FY_TEST_FIXTURES_DIR, "bad-open", "", &h),
                     -FY_E_IO);
    assert_null(h.ops);
    assert_null(h.d);
    assert_detail_has(FY_TEST_FIXTURES_DIR "/ferry-bad-open.so");
    assert_detail_has("open failed: backend unreachable at 192.0.2.1:5986");
}

static void test_driver_open__missing_driver__handle_left_closed(void **state)
{
    struct fy_driver_handle h;

    (void)state;
    memset(&h, 0xff, sizeof(h));
    assert_int_equal(fy_driver_open(FY_TEST_DRIVERS_DIR, "nosuch", "", &h),
                     -FY_E_NOTFOUND);
    assert_null(h.ops);
    assert_null(h.d);
    fy_driver_close(&h);
}

static void test_driver_close__zeroed_handle__nothing_happens(void **state)
{
    struct fy_driver_handle h;

    (void)state;
    memset(&h, 0, sizeof(h));
    fy_driver_close(&h);
    fy_driver_close(&h);
    fy_driver_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_driver_load__skeleton_by_name__returns_checked_ops),
        cmocka_unit_test(test_driver_load__twice__returns_same_ops),
        cmocka_unit_test(test_driver_load__env_dir__used_when_no_dir_given),
        cmocka_unit_test(test_driver_load__env_dir_without_driver__notfound_there),
        cmocka_unit_test(test_driver_load__missing_file__notfound_naming_path),
        cmocka_unit_test(test_driver_load__name_with_dotdot__refused),
        cmocka_unit_test(test_driver_load__name_with_slash__refused),
        cmocka_unit_test(test_driver_load__empty_name__refused),
        cmocka_unit_test(test_driver_load__not_a_shared_object__refused_with_dlerror),
        cmocka_unit_test(test_driver_load__no_entry_symbol__refused),
        cmocka_unit_test(test_driver_load__entry_returns_null__refused),
        cmocka_unit_test(test_driver_load__wrong_abi__version_naming_both),
        cmocka_unit_test(test_driver_load__required_op_missing__refused_naming_op),
        cmocka_unit_test(test_driver_load__live_without_memory_layout__refused_naming_cap),
        cmocka_unit_test(test_driver_load__unknown_capability__refused),
        cmocka_unit_test(test_driver_load__refused_then_retried__refused_again),
        cmocka_unit_test(test_driver_open__skeleton__instance_answers),
        cmocka_unit_test(test_driver_open__unknown_config_key__config_naming_key),
        cmocka_unit_test(test_driver_open__driver_open_fails__detail_kept),
        cmocka_unit_test(test_driver_open__missing_driver__handle_left_closed),
        cmocka_unit_test(test_driver_close__zeroed_handle__nothing_happens),
    };

    unsetenv("FERRY_DRIVERS_DIR");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
