/* Unit tests of the prechecks (controlplane/prechecks.c): one test per rule,
 * refusing and passing, and a clean VM that passes with no findings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "controlplane/prechecks.h"
#include "ferry/error.h"

#define GIB (1024ull * 1024ull * 1024ull)

struct fixture {
    struct fy_vm_info vm;
    struct fy_host_info src, dst;
    struct fy_precheck_report rep;
};

static void host(struct fy_host_info *h, const char *name)
{
    memset(h, 0, sizeof(*h));
    snprintf(h->name, sizeof(h->name), "%s", name);
    snprintf(h->hypervisor, sizeof(h->hypervisor), "sim");
    snprintf(h->cpu_vendor, sizeof(h->cpu_vendor), "GenuineIntel");
    h->mem_total = 64 * GIB;
    h->mem_free = 32 * GIB;
    h->cpus_total = 16;
    h->cpus_free = 8;
    h->dynamic_memory = true;
    h->ndatastores = 1;
    snprintf(h->datastores[0].name, sizeof(h->datastores[0].name), "local");
    snprintf(h->datastores[0].path, sizeof(h->datastores[0].path), "/var/lib/ferry/%s", name);
    h->datastores[0].capacity = 100 * GIB;
    h->datastores[0].free = 50 * GIB;
}

/* A running VM with one NIC and one 10 GiB disk that may go anywhere. */
static int setup(void **state)
{
    static struct fixture f;

    memset(&f, 0, sizeof(f));
    host(&f.src, "h1");
    host(&f.dst, "h2");
    snprintf(f.vm.name, sizeof(f.vm.name), "vm1");
    f.vm.power = FY_POWER_RUNNING;
    f.vm.mem_bytes = 4 * GIB;
    f.vm.vcpus = 2;
    snprintf(f.vm.cpu_vendor, sizeof(f.vm.cpu_vendor), "GenuineIntel");
    f.vm.managed = true;
    f.vm.ndevices = 1;
    f.vm.devices[0].kind = FY_DEV_NIC;
    snprintf(f.vm.devices[0].name, sizeof(f.vm.devices[0].name), "net0");
    f.vm.ndisks = 1;
    snprintf(f.vm.disks[0].name, sizeof(f.vm.disks[0].name), "vda");
    snprintf(f.vm.disks[0].path, sizeof(f.vm.disks[0].path), "/var/lib/ferry/h1/vm1-vda.img");
    snprintf(f.vm.disks[0].datastore, sizeof(f.vm.disks[0].datastore), "local");
    f.vm.disks[0].size = 10 * GIB;
    f.vm.disks[0].virtual_size = 20 * GIB;
    *state = &f;
    return 0;
}

static int run(struct fixture *f, enum fy_migration_kind kind, const char *ds)
{
    return fy_prechecks_run(kind, &f->vm, &f->src, &f->dst, ds, &f->rep);
}

static void add_device(struct fixture *f, enum fy_device_kind kind, const char *name,
                       const char *path, bool media)
{
    struct fy_device *d = &f->vm.devices[f->vm.ndevices++];
    d->kind = kind;
    snprintf(d->name, sizeof(d->name), "%s", name);
    snprintf(d->path, sizeof(d->path), "%s", path);
    d->media = media;
}

/* The one finding with 'code' is there, at 'level', and its message has
 * every string in 'words' (NULL-terminated). */
static void assert_finding(const struct fixture *f, const char *code,
                           enum fy_precheck_level level, const char *const *words)
{
    const struct fy_precheck_finding *x = fy_prechecks_find(&f->rep, code);
    if (!x)
        fail_msg("no finding '%s' (%u findings)", code, f->rep.n);
    assert_int_equal(x->level, level);
    for (; *words; words++)
        if (!strstr(x->message, *words))
            fail_msg("finding '%s': \"%s\" does not mention \"%s\"", code, x->message, *words);
}

#define WORDS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- clean ------------------------------------------------------------ */

static void test_prechecks__clean_vm__passes_with_no_findings(void **state)
{
    struct fixture *f = *state;
    for (unsigned k = FY_MIG_LIVE; k <= FY_MIG_COLD; k++) {
        assert_int_equal(run(f, (enum fy_migration_kind)k, "local"), 0);
        assert_int_equal(f->rep.n, 0);
        assert_false(fy_prechecks_refused(&f->rep));
    }
}

static void test_prechecks__null_argument__inval(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(fy_prechecks_run(FY_MIG_LIVE, NULL, &f->src, &f->dst, NULL, &f->rep),
                     -FY_E_INVAL);
}

/* ---- devices ---------------------------------------------------------- */

static void test_prechecks__usb_attached__refused_naming_it_and_detach(void **state)
{
    struct fixture *f = *state;
    add_device(f, FY_DEV_USB, "usb-token", "", false);
    assert_int_equal(run(f, FY_MIG_COLD, "local"), -FY_E_PRECHECK);
    assert_true(fy_prechecks_refused(&f->rep));
    assert_finding(f, "usb-device", FY_PRECHECK_REFUSE, WORDS("usb-token", "detach it"));
    assert_non_null(strstr(fy_error_detail(), "usb-token"));
}

static void test_prechecks__floppy_with_media__refused(void **state)
{
    struct fixture *f = *state;
    add_device(f, FY_DEV_FLOPPY, "fd0", "/isos/boot.img", true);
    assert_int_equal(run(f, FY_MIG_LIVE, NULL), -FY_E_PRECHECK);
    assert_finding(f, "floppy-media", FY_PRECHECK_REFUSE, WORDS("fd0", "/isos/boot.img", "eject"));
}

static void test_prechecks__empty_floppy__passes(void **state)
{
    struct fixture *f = *state;
    add_device(f, FY_DEV_FLOPPY, "fd0", "", false);
    assert_int_equal(run(f, FY_MIG_LIVE, NULL), 0);
    assert_int_equal(f->rep.n, 0);
}

static void test_prechecks__passthrough_disk__refused(void **state)
{
    struct fixture *f = *state;
    add_device(f, FY_DEV_PASSTHROUGH, "rdm0", "/dev/sdb", false);
    assert_int_equal(run(f, FY_MIG_LIVE, NULL), -FY_E_PRECHECK);
    assert_finding(f, "passthrough-device", FY_PRECHECK_REFUSE, WORDS("rdm0", "/dev/sdb", "remove it"));
}

static void test_prechecks__iso_missing_at_target__warns_not_remounted(void **state)
{
    struct fixture *f = *state;
    add_device(f, FY_DEV_CDROM, "hdc", "/nonexistent/ferry/install.iso", true);
    assert_int_equal(run(f, FY_MIG_LIVE, NULL), 0);
    assert_false(fy_prechecks_refused(&f->rep));
    assert_finding(f, "iso-missing", FY_PRECHECK_WARN,
                   WORDS("hdc", "/nonexistent/ferry/install.iso", "h2", "will not be re-mounted"));
}

static void test_prechecks__iso_present_at_target__passes(void **state)
{
    struct fixture *f = *state;
    add_device(f, FY_DEV_CDROM, "hdc", "/dev/null", true);
    add_device(f, FY_DEV_CDROM, "hdd", "", false);
    assert_int_equal(run(f, FY_MIG_LIVE, NULL), 0);
    assert_int_equal(f->rep.n, 0);
}

/* ---- memory, CPU, hypervisor ---------------------------------------- */

static void test_prechecks__dynamic_memory_target_lacks_it__refused(void **state)
{
    struct fixture *f = *state;
    f->vm.dynamic_memory = true;
    f->dst.dynamic_memory = false;
    assert_int_equal(run(f, FY_MIG_LIVE, NULL), -FY_E_PRECHECK);
    assert_finding(f, "dynamic-memory", FY_PRECHECK_REFUSE, WORDS("target", "h2", "disable dynamic memory"));
}

static void test_prechecks__dynamic_memory_source_lacks_it__refused(void **state)
{
    struct fixture *f = *state;
    f->vm.dynamic_memory = true;
    f->src.dynamic_memory = false;
    assert_int_equal(run(f, FY_MIG_COLD, NULL), -FY_E_PRECHECK);
    assert_finding(f, "dynamic-memory", FY_PRECHECK_REFUSE, WORDS("source", "h1"));
}

static void test_prechecks__dynamic_memory_both_support_it__passes(void **state)
{
    struct fixture *f = *state;
    f->vm.dynamic_memory = true;
    assert_int_equal(run(f, FY_MIG_LIVE, NULL), 0);
    assert_int_equal(f->rep.n, 0);
}

static void test_prechecks__target_memory_short__refused_with_numbers(void **state)
{
    struct fixture *f = *state;
    f->dst.mem_free = 2 * GIB;
    assert_int_equal(run(f, FY_MIG_LIVE, NULL), -FY_E_PRECHECK);
    assert_finding(f, "target-memory", FY_PRECHECK_REFUSE, WORDS("2147483648", "4294967296", "h2"));
}

static void test_prechecks__target_memory_exactly_enough__passes(void **state)
{
    struct fixture *f = *state;
    f->dst.mem_free = 4 * GIB;
    f->dst.cpus_free = 2;
    assert_int_equal(run(f, FY_MIG_LIVE, NULL), 0);
}

static void test_prechecks__target_cpu_short__refused_with_numbers(void **state)
{
    struct fixture *f = *state;
    f->dst.cpus_free = 1;
    assert_int_equal(run(f, FY_MIG_COLD, NULL), -FY_E_PRECHECK);
    assert_finding(f, "target-cpu", FY_PRECHECK_REFUSE, WORDS("1 CPUs free", "needs 2"));
}

static void test_prechecks__hypervisor_change__refused(void **state)
{
    struct fixture *f = *state;
    snprintf(f->dst.hypervisor, sizeof(f->dst.hypervisor), "hyperv");
    assert_int_equal(run(f, FY_MIG_COLD, NULL), -FY_E_PRECHECK);
    assert_finding(f, "hypervisor-change", FY_PRECHECK_REFUSE, WORDS("sim", "hyperv", "cannot change"));
}

static void test_prechecks__cpu_vendor_change_live__refused(void **state)
{
    struct fixture *f = *state;
    snprintf(f->dst.cpu_vendor, sizeof(f->dst.cpu_vendor), "AuthenticAMD");
    assert_int_equal(run(f, FY_MIG_LIVE, NULL), -FY_E_PRECHECK);
    assert_finding(f, "cpu-vendor", FY_PRECHECK_REFUSE, WORDS("GenuineIntel", "AuthenticAMD", "cold migration"));
}

static void test_prechecks__cpu_vendor_change_cold__passes(void **state)
{
    struct fixture *f = *state;
    snprintf(f->dst.cpu_vendor, sizeof(f->dst.cpu_vendor), "AuthenticAMD");
    f->vm.power = FY_POWER_OFF;
    assert_int_equal(run(f, FY_MIG_COLD, "local"), 0);
    assert_int_equal(f->rep.n, 0);
}

static void test_prechecks__unmanaged_vm__refused(void **state)
{
    struct fixture *f = *state;
    f->vm.managed = false;
    assert_int_equal(run(f, FY_MIG_LIVE, NULL), -FY_E_PRECHECK);
    assert_finding(f, "unmanaged", FY_PRECHECK_REFUSE, WORDS("vm1", "not managed"));
}

static void test_prechecks__live_of_stopped_vm__refused(void **state)
{
    struct fixture *f = *state;
    f->vm.power = FY_POWER_OFF;
    assert_int_equal(run(f, FY_MIG_LIVE, NULL), -FY_E_PRECHECK);
    assert_finding(f, "not-running", FY_PRECHECK_REFUSE, WORDS("vm1", "cold migration"));
}

/* ---- space ------------------------------------------------------------ */

static void test_prechecks__cold_target_datastore_short__refused_with_bytes(void **state)
{
    struct fixture *f = *state;
    f->dst.datastores[0].free = 5 * GIB;
    assert_int_equal(run(f, FY_MIG_COLD, "local"), -FY_E_PRECHECK);
    assert_finding(f, "target-space", FY_PRECHECK_REFUSE,
                   WORDS("5368709120 bytes", "10737418240 bytes", "local", "h2"));
}

static void test_prechecks__live_with_shared_storage__needs_no_space(void **state)
{
    struct fixture *f = *state;
    f->dst.datastores[0].free = 0;
    assert_int_equal(run(f, FY_MIG_LIVE, NULL), 0);
    assert_int_equal(f->rep.n, 0);
}

static void test_prechecks__disk_on_shared_target_datastore__needs_no_space(void **state)
{
    struct fixture *f = *state;
    f->dst.datastores[0].free = 0;
    f->dst.datastores[0].shared = true;
    assert_int_equal(run(f, FY_MIG_COLD, "local"), 0);
}

static void test_prechecks__unknown_target_datastore__refused(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(run(f, FY_MIG_COLD, "nowhere"), -FY_E_PRECHECK);
    assert_finding(f, "datastore-missing", FY_PRECHECK_REFUSE, WORDS("nowhere", "h2"));
}

static void test_prechecks__quick_space_for_disks_but_not_image__refused(void **state)
{
    struct fixture *f = *state;
    f->dst.datastores[0].free = 12 * GIB; /* 10 GiB disk + 4 GiB image */
    assert_int_equal(run(f, FY_MIG_QUICK, "local"), -FY_E_PRECHECK);
    assert_finding(f, "target-space", FY_PRECHECK_REFUSE, WORDS("15032385536 bytes", "saved memory image"));
}

static void test_prechecks__quick__warns_of_saved_state_image(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(run(f, FY_MIG_QUICK, "local"), 0);
    assert_int_equal(f->rep.n, 1);
    assert_finding(f, "saved-state-image", FY_PRECHECK_WARN, WORDS("4294967296 bytes", "moved"));
}

static void test_prechecks__many_problems__all_listed(void **state)
{
    struct fixture *f = *state;
    add_device(f, FY_DEV_USB, "usb0", "", false);
    add_device(f, FY_DEV_PASSTHROUGH, "gpu0", "", false);
    f->dst.mem_free = 0;
    assert_int_equal(run(f, FY_MIG_LIVE, NULL), -FY_E_PRECHECK);
    assert_int_equal(f->rep.n, 3);
    assert_non_null(strstr(fy_error_detail(), "usb0"));
    assert_non_null(strstr(fy_error_detail(), "gpu0"));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup(fn, setup)
    const struct CMUnitTest tests[] = {
        T(test_prechecks__clean_vm__passes_with_no_findings),
        T(test_prechecks__null_argument__inval),
        T(test_prechecks__usb_attached__refused_naming_it_and_detach),
        T(test_prechecks__floppy_with_media__refused),
        T(test_prechecks__empty_floppy__passes),
        T(test_prechecks__passthrough_disk__refused),
        T(test_prechecks__iso_missing_at_target__warns_not_remounted),
        T(test_prechecks__iso_present_at_target__passes),
        T(test_prechecks__dynamic_memory_target_lacks_it__refused),
        T(test_prechecks__dynamic_memory_source_lacks_it__refused),
        T(test_prechecks__dynamic_memory_both_support_it__passes),
        T(test_prechecks__target_memory_short__refused_with_numbers),
        T(test_prechecks__target_memory_exactly_enough__passes),
        T(test_prechecks__target_cpu_short__refused_with_numbers),
        T(test_prechecks__hypervisor_change__refused),
        T(test_prechecks__cpu_vendor_change_live__refused),
        T(test_prechecks__cpu_vendor_change_cold__passes),
        T(test_prechecks__unmanaged_vm__refused),
        T(test_prechecks__live_of_stopped_vm__refused),
        T(test_prechecks__cold_target_datastore_short__refused_with_bytes),
        T(test_prechecks__live_with_shared_storage__needs_no_space),
        T(test_prechecks__disk_on_shared_target_datastore__needs_no_space),
        T(test_prechecks__unknown_target_datastore__refused),
        T(test_prechecks__quick_space_for_disks_but_not_image__refused),
        T(test_prechecks__quick__warns_of_saved_state_image),
        T(test_prechecks__many_problems__all_listed),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
