/* Tests of drivers/libvirt/domxml.c: what the libvirt driver reads of a
 * domain's XML and the edits it makes before defining it elsewhere. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/libvirt/lv.h"

static const char *guest_xml =
    "<domain type='qemu' xmlns:ferry='urn:ferry:libvirt:1'>\n"
    "  <name>g1</name>\n"
    "  <uuid>5f0500be-6d67-47c7-a81a-a98d6309cbd3</uuid>\n"
    "  <memory unit='MiB'>192</memory>\n"
    "  <vcpu placement='static'>2</vcpu>\n"
    "  <devices>\n"
    "    <disk type='file' device='disk'><source file='/ds/a.qcow2'/>"
    "<backingStore type='file'><source file='/ds/base.qcow2'/></backingStore>"
    "<target dev='vda'/></disk>\n"
    "    <disk type='file' device='cdrom'><source file='/iso/x.iso'/>"
    "<target dev='sda'/></disk>\n"
    "    <disk type='file' device='floppy'><target dev='fda'/></disk>\n"
    "    <disk type='block' device='disk'><source dev='/dev/sdz'/>"
    "<target dev='vdb'/></disk>\n"
    "    <disk type='network' device='disk'><source protocol='nbd' name='x'/>"
    "<target dev='vdc'/></disk>\n"
    "    <disk device='disk'><source file='/ds/b.img'/><target dev='vdd'/></disk>\n"
    "    <hostdev mode='subsystem' type='usb'><source><vendor id='0x1'/></source>"
    "</hostdev>\n"
    "    <hostdev mode='subsystem' type='pci'><source><address bus='1'/></source>"
    "</hostdev>\n"
    "    <interface type='network'><mac address='52:54:00:aa:bb:cc'/>"
    "<source network='default'/><link state='down'/></interface>\n"
    "  </devices>\n"
    "</domain>\n";

static int count_kind(const struct fy_vm_info *vi, enum fy_device_kind k)
{
    int n = 0;
    for (unsigned i = 0; i < vi->ndevices; i++)
        n += vi->devices[i].kind == k;
    return n;
}

static const struct fy_device *find_kind(const struct fy_vm_info *vi, enum fy_device_kind k)
{
    for (unsigned i = 0; i < vi->ndevices; i++)
        if (vi->devices[i].kind == k)
            return &vi->devices[i];
    return NULL;
}

/* ---- lv_xml_info ------------------------------------------------------------ */

static void test_lv_xml_info__guest__memory_vcpus_and_identity(void **state)
{
    struct fy_vm_info vi;

    (void)state;
    assert_int_equal(lv_xml_info(guest_xml, &vi), 0);
    assert_string_equal(vi.name, "g1");
    assert_string_equal(vi.uuid, "5f0500be-6d67-47c7-a81a-a98d6309cbd3");
    assert_true(vi.mem_bytes == 192ull << 20);
    assert_int_equal(vi.vcpus, 2);
    assert_true(vi.managed);
    assert_false(vi.dynamic_memory);
}

static void test_lv_xml_info__file_disks__movable_in_order(void **state)
{
    struct fy_vm_info vi;

    (void)state;
    assert_int_equal(lv_xml_info(guest_xml, &vi), 0);
    assert_int_equal(vi.ndisks, 2);
    assert_string_equal(vi.disks[0].name, "vda");
    assert_string_equal(vi.disks[0].path, "/ds/a.qcow2");
    assert_string_equal(vi.disks[1].name, "vdd");
    assert_string_equal(vi.disks[1].path, "/ds/b.img");
}

static void test_lv_xml_info__devices__kinds_for_the_prechecks(void **state)
{
    struct fy_vm_info vi;
    const struct fy_device *d;

    (void)state;
    assert_int_equal(lv_xml_info(guest_xml, &vi), 0);
    assert_int_equal(count_kind(&vi, FY_DEV_USB), 1);
    assert_int_equal(count_kind(&vi, FY_DEV_PASSTHROUGH), 2); /* pci, block disk */
    assert_non_null(d = find_kind(&vi, FY_DEV_CDROM));
    assert_string_equal(d->path, "/iso/x.iso");
    assert_true(d->media);
    assert_non_null(d = find_kind(&vi, FY_DEV_FLOPPY));
    assert_false(d->media);
    assert_non_null(d = find_kind(&vi, FY_DEV_NIC));
    assert_string_equal(d->name, "52:54:00:aa:bb:cc");
    assert_string_equal(d->path, "default");
    assert_false(d->media); /* link down */
}

static void test_lv_xml_info__ferry_managed_no__unmanaged(void **state)
{
    struct fy_vm_info vi;
    const char *xml = "<domain><name>u</name><memory>1024</memory>"
                      "<metadata><ferry:vm xmlns:ferry='urn:ferry:libvirt:1' "
                      "managed='no'/></metadata></domain>";

    (void)state;
    assert_int_equal(lv_xml_info(xml, &vi), 0);
    assert_false(vi.managed);
    assert_true(vi.mem_bytes == 1024ull * 1024); /* KiB without a unit */
    assert_int_equal(vi.vcpus, 1);
}

static void test_lv_xml_info__max_memory__dynamic(void **state)
{
    struct fy_vm_info vi;
    const char *xml = "<domain><name>m</name><maxMemory slots='4' unit='GiB'>8"
                      "</maxMemory><memory unit='GiB'>2</memory></domain>";

    (void)state;
    assert_int_equal(lv_xml_info(xml, &vi), 0);
    assert_true(vi.dynamic_memory);
}

static void test_lv_xml_info__not_domain_xml__inval(void **state)
{
    struct fy_vm_info vi;

    (void)state;
    assert_int_equal(lv_xml_info("name demo1\nmem 64M\n", &vi), -FY_E_INVAL);
    assert_int_equal(lv_xml_info("<network><name>n</name></network>", &vi), -FY_E_INVAL);
}

/* ---- lv_xml_rewrite ---------------------------------------------------------- */

static void test_lv_xml_rewrite__new_name__uuid_and_macs_dropped(void **state)
{
    struct fy_vm_info vi;
    char *out = NULL;

    (void)state;
    assert_int_equal(lv_xml_rewrite(guest_xml, "copy", NULL, 0, LV_XML_KEEP, &out), 0);
    assert_int_equal(lv_xml_info(out, &vi), 0);
    assert_string_equal(vi.name, "copy");
    assert_string_equal(vi.uuid, "");
    assert_null(strstr(out, "52:54:00:aa:bb:cc"));
    free(out);
}

static void test_lv_xml_rewrite__same_name__identity_kept(void **state)
{
    struct fy_vm_info vi;
    char *out = NULL;

    (void)state;
    assert_int_equal(lv_xml_rewrite(guest_xml, "g1", NULL, 0, LV_XML_KEEP, &out), 0);
    assert_int_equal(lv_xml_info(out, &vi), 0);
    assert_string_equal(vi.uuid, "5f0500be-6d67-47c7-a81a-a98d6309cbd3");
    assert_non_null(strstr(out, "52:54:00:aa:bb:cc"));
    free(out);
}

static void test_lv_xml_rewrite__disk_paths__movable_disks_replaced_in_order(void **state)
{
    const char *paths[] = {"/t/a.qcow2", NULL};
    struct fy_vm_info vi;
    char *out = NULL;

    (void)state;
    assert_int_equal(lv_xml_rewrite(guest_xml, NULL, paths, 2, LV_XML_KEEP, &out), 0);
    assert_int_equal(lv_xml_info(out, &vi), 0);
    assert_string_equal(vi.disks[0].path, "/t/a.qcow2");
    assert_string_equal(vi.disks[1].path, "/ds/b.img");
    /* The source's chain is not the target's: libvirt probes it again. */
    assert_null(strstr(out, "/ds/base.qcow2"));
    assert_non_null(find_kind(&vi, FY_DEV_CDROM));
    assert_string_equal(find_kind(&vi, FY_DEV_CDROM)->path, "/iso/x.iso");
    free(out);
}

static void test_lv_xml_rewrite__more_paths_than_disks__inval(void **state)
{
    const char *paths[] = {"/t/1", "/t/2", "/t/3"};
    char *out = NULL;

    (void)state;
    assert_int_equal(lv_xml_rewrite(guest_xml, NULL, paths, 3, LV_XML_KEEP, &out),
                     -FY_E_INVAL);
    assert_null(out);
}

static void test_lv_xml_rewrite__incoming__qemu_incoming_defer_added(void **state)
{
    char *out = NULL;
    const char *a;

    (void)state;
    assert_int_equal(lv_xml_rewrite(guest_xml, NULL, NULL, 0, LV_XML_INCOMING, &out), 0);
    assert_non_null(strstr(out, "http://libvirt.org/schemas/domain/qemu/1.0"));
    assert_non_null(a = strstr(out, "<qemu:arg value=\"-incoming\"/>"));
    assert_non_null(strstr(a, "<qemu:arg value=\"defer\"/>"));
    free(out);
}

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p++)
        n++;
    return n;
}

/* The running definition of a VM that arrived by RAM-direct migration has
 * the placeholder's -incoming: the next hop's definitions must not keep it,
 * nor the placeholder's carry two. */
static void test_lv_xml_rewrite__arrived_by_ram_direct__one_incoming_at_most(void **state)
{
    char *arrived = NULL, *clean = NULL, *again = NULL;
    const char *a;

    (void)state;
    assert_int_equal(lv_xml_rewrite(guest_xml, NULL, NULL, 0, LV_XML_INCOMING, &arrived), 0);
    assert_int_equal(lv_xml_rewrite(arrived, NULL, NULL, 0, LV_XML_KEEP, &clean), 0);
    assert_null(strstr(clean, "-incoming"));
    assert_null(strstr(clean, "commandline"));
    assert_int_equal(lv_xml_rewrite(arrived, NULL, NULL, 0, LV_XML_INCOMING, &again), 0);
    assert_non_null(a = strstr(again, "<qemu:arg value=\"-incoming\"/>"));
    assert_null(strstr(a + strlen("<qemu:arg value=\"-incoming\"/>"), "-incoming"));
    assert_int_equal(count(again, "<qemu:arg "), 2);
    free(arrived);
    free(clean);
    free(again);
}

static void test_lv_xml_rewrite__own_qemu_args__kept(void **state)
{
    static char xml[8192];
    char *out = NULL;
    const char *end = strstr(guest_xml, "</domain>");
    int n;

    (void)state;
    assert_non_null(end);
    n = snprintf(xml, sizeof(xml), "%.*s<qemu:commandline xmlns:qemu="
                 "'http://libvirt.org/schemas/domain/qemu/1.0'>"
                 "<qemu:arg value='-incoming'/><qemu:arg value='defer'/>"
                 "<qemu:arg value='-no-hpet'/></qemu:commandline></domain>",
                 (int)(end - guest_xml), guest_xml);
    assert_true(n > 0 && (size_t)n < sizeof(xml));
    assert_int_equal(lv_xml_rewrite(xml, NULL, NULL, 0, LV_XML_KEEP, &out), 0);
    assert_null(strstr(out, "-incoming"));
    assert_non_null(strstr(out, "<qemu:arg value=\"-no-hpet\"/>"));
    free(out);
}

static void test_lv_xml_name__domain__its_name(void **state)
{
    char name[FY_NAME_MAX];

    (void)state;
    lv_xml_name(guest_xml, name, sizeof(name));
    assert_string_equal(name, "g1");
    lv_xml_name("not xml", name, sizeof(name));
    assert_string_equal(name, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lv_xml_info__guest__memory_vcpus_and_identity),
        cmocka_unit_test(test_lv_xml_info__file_disks__movable_in_order),
        cmocka_unit_test(test_lv_xml_info__devices__kinds_for_the_prechecks),
        cmocka_unit_test(test_lv_xml_info__ferry_managed_no__unmanaged),
        cmocka_unit_test(test_lv_xml_info__max_memory__dynamic),
        cmocka_unit_test(test_lv_xml_info__not_domain_xml__inval),
        cmocka_unit_test(test_lv_xml_rewrite__new_name__uuid_and_macs_dropped),
        cmocka_unit_test(test_lv_xml_rewrite__same_name__identity_kept),
        cmocka_unit_test(test_lv_xml_rewrite__disk_paths__movable_disks_replaced_in_order),
        cmocka_unit_test(test_lv_xml_rewrite__more_paths_than_disks__inval),
        cmocka_unit_test(test_lv_xml_rewrite__incoming__qemu_incoming_defer_added),
        cmocka_unit_test(test_lv_xml_rewrite__arrived_by_ram_direct__one_incoming_at_most),
        cmocka_unit_test(test_lv_xml_rewrite__own_qemu_args__kept),
        cmocka_unit_test(test_lv_xml_name__domain__its_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
