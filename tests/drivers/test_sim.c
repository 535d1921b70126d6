/* Tests of the sim driver (drivers/sim/), loaded with dlopen as Ferry
 * loads it.  Each test gets fresh state directories under /tmp. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drivers/sim/sim.h"
#include "ferry/classifier.h"
#include "ferry/driver.h"
#include "ferry/error.h"

#define MiB (1ull << 20)
#define VM_MEM (64 * MiB)
#define VM_PAGES (VM_MEM / FY_PAGE_SIZE)
#define WORDS ((VM_PAGES + 63) / 64)

static const struct fy_driver_ops *ops;

struct host {
    char dir[64];
    struct fy_driver *d;
};

struct fixture {
    struct host a, b;
};

/* ---- helpers --------------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void host_dir(struct host *h)
{
    strcpy(h->dir, "/tmp/fy-sim-test-XXXXXX");
    assert_non_null(mkdtemp(h->dir));
}

static int host_open(struct host *h, const char *extra)
{
    char config[256];

    snprintf(config, sizeof(config), "state=%s%s%s", h->dir, extra ? ";" : "",
             extra ? extra : "");
    return ops->open(config, &h->d);
}

static void host_close(struct host *h)
{
    ops->close(h->d);
    h->d = NULL;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    host_dir(&f->a);
    host_dir(&f->b);
    assert_int_equal(host_open(&f->a, NULL), 0);
    assert_int_equal(host_open(&f->b, "host=hostb;cpu-vendor=AuthenticAMD"), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    host_close(&f->a);
    host_close(&f->b);
    nftw(f->a.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    nftw(f->b.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* A 64 MiB VM writing 'rate' pages/s with shared-content seed 'seed'. */
static void define_vm(struct host *h, const char *name, unsigned rate,
                      unsigned seed)
{
    char config[512];

    snprintf(config, sizeof(config),
             "name %s\nmem 64M\nvcpus 2\n"
             "workload rate=%u pattern=random shared-seed=%u\n"
             "nic net0\ndisk vda ds=local size=16M\n", name, rate, seed);
    assert_int_equal(ops->vm_define(h->d, config, NULL, NULL, 0), 0);
}

static enum fy_power power_of(struct host *h, const char *vm)
{
    struct fy_vm_info info;

    assert_int_equal(ops->vm_info(h->d, vm, &info), 0);
    return info.power;
}

/* The VM's memory, mapped read-only through memory_layout's fd. */
static const uint8_t *map_vm(struct host *h, const char *vm, int prot)
{
    struct fy_memory_layout l;
    void *p;

    assert_int_equal(ops->memory_layout(h->d, vm, &l), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.regions[0].name, "ram");
    assert_true(l.regions[0].fd >= 0);
    assert_int_equal(l.regions[0].offset, 0);
    p = mmap(NULL, l.regions[0].size, prot, MAP_SHARED, l.regions[0].fd, 0);
    assert_true(p != MAP_FAILED);
    return p;
}

static void unmap_vm(const uint8_t *p)
{
    munmap((void *)p, VM_MEM);
}

static uint8_t *snapshot(const uint8_t *mem)
{
    uint8_t *copy = malloc(VM_MEM);

    assert_non_null(copy);
    memcpy(copy, mem, VM_MEM);
    return copy;
}

static unsigned popcount_map(const uint64_t *bitmap)
{
    unsigned n = 0;

    for (uint64_t i = 0; i < WORDS; i++)
        n += (unsigned)__builtin_popcountll(bitmap[i]);
    return n;
}

static bool page_differs(const uint8_t *a, const uint8_t *b, uint64_t p)
{
    return memcmp(a + p * FY_PAGE_SIZE, b + p * FY_PAGE_SIZE, FY_PAGE_SIZE) != 0;
}

/* The whole file, NUL-terminated. */
static char *read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    char *buf;

    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    buf = malloc((size_t)st.st_size + 1);
    assert_non_null(buf);
    assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
    buf[st.st_size] = '\0';
    close(fd);
    if (len)
        *len = (size_t)st.st_size;
    return buf;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- opening a host ---------------------------------------------------------- */

static void test_sim__open_fresh_dir__host_has_defaults(void **state)
{
    struct fixture *f = *state;
    struct fy_host_info hi;
    char path[128];

    assert_int_equal(ops->host_info(f->a.d, &hi), 0);
    assert_string_equal(hi.name, strrchr(f->a.dir, '/') + 1);
    assert_string_equal(hi.hypervisor, "sim");
    assert_string_equal(hi.cpu_vendor, "GenuineIntel");
    assert_int_equal(hi.mem_total, 8ull << 30);
    assert_int_equal(hi.mem_free, 8ull << 30);
    assert_int_equal(hi.cpus_total, 4);
    assert_true(hi.dynamic_memory);
    assert_false(hi.maintenance);
    assert_string_equal(hi.net[FY_NET_MANAGEMENT], "127.0.0.1");
    assert_string_equal(hi.net[FY_NET_MIGRATION], "");
    assert_int_equal(hi.ndatastores, 1);
    assert_string_equal(hi.datastores[0].name, "local");
    assert_int_equal(hi.datastores[0].capacity, 64ull << 30);
    assert_true(hi.datastores[0].free <= 64ull << 30);
    snprintf(path, sizeof(path), "%s/ds/local", f->a.dir);
    assert_string_equal(hi.datastores[0].path, path);
    assert_true(exists(path));
    assert_int_equal(ops->caps, FY_DRV_LIVE | FY_DRV_COLD | FY_DRV_QUICK |
                     FY_DRV_DIRTY_LOG | FY_DRV_SUSPEND | FY_DRV_FAILOVER |
                     FY_DRV_DEVICE_STATE);
}

static void test_sim__open_with_settings__host_info_reports_them(void **state)
{
    struct host h = {0};
    struct fy_host_info hi;
    char parent[64], path[128];

    (void)state;
    /* DIR/h9, so the shared datastore lands in DIR/shared-ds/san. */
    host_dir(&h);
    strcpy(parent, h.dir);
    strcat(h.dir, "/h9");
    assert_int_equal(host_open(&h, "mem=16G;cpus=12;cpu-vendor=AuthenticAMD;"
                               "dynamic-memory=0;maintenance=1;"
                               "datastores=fast:100G,san:1T:shared;"
                               "net=management:10.0.0.1,migration:10.1.0.1,"
                               "provisioning:10.2.0.1"), 0);
    assert_int_equal(ops->host_info(h.d, &hi), 0);
    assert_string_equal(hi.name, "h9");
    assert_int_equal(hi.mem_total, 16ull << 30);
    assert_int_equal(hi.cpus_total, 12);
    assert_string_equal(hi.cpu_vendor, "AuthenticAMD");
    assert_false(hi.dynamic_memory);
    assert_true(hi.maintenance);
    assert_int_equal(hi.ndatastores, 2);
    assert_string_equal(hi.datastores[1].name, "san");
    assert_true(hi.datastores[1].shared);
    assert_false(hi.datastores[0].shared);
    snprintf(path, sizeof(path), "%s/shared-ds/san", parent);
    assert_string_equal(hi.datastores[1].path, path);
    assert_true(exists(path));
    assert_string_equal(hi.net[FY_NET_MIGRATION], "10.1.0.1");
    assert_string_equal(hi.net[FY_NET_PROVISIONING], "10.2.0.1");
    host_close(&h);

    /* Reopened with state= alone, the host is the same. */
    assert_int_equal(host_open(&h, NULL), 0);
    assert_int_equal(ops->host_info(h.d, &hi), 0);
    assert_string_equal(hi.name, "h9");
    assert_int_equal(hi.cpus_total, 12);
    assert_int_equal(hi.ndatastores, 2);
    assert_string_equal(hi.datastores[1].path, path);
    host_close(&h);
    nftw(parent, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_sim__open_unknown_key__config_error_names_it(void **state)
{
    struct host h = {0};

    (void)state;
    host_dir(&h);
    assert_int_equal(host_open(&h, "colour=blue"), -FY_E_CONFIG);
    assert_non_null(strstr(fy_error_detail(), "colour"));
    assert_null(h.d);
    assert_int_equal(rmdir(h.dir), 0); /* nothing was created in it */
}

static void test_sim__open_without_state__config_error(void **state)
{
    struct fy_driver *d = NULL;

    (void)state;
    assert_int_equal(ops->open("host=x", &d), -FY_E_CONFIG);
    assert_non_null(strstr(fy_error_detail(), "state"));
    assert_int_equal(ops->open("", &d), -FY_E_CONFIG);
    assert_null(d);
}

static void test_sim__open_bad_values__config_error(void **state)
{
    static const char *const bad[] = {
        "mem=lots", "cpus=0", "cpu-vendor=Cyrix", "datastores=local",
        "net=storage:1.2.3.4", "dynamic-memory=2", "seed-vm=x", "noequals",
    };
    struct host h = {0};

    (void)state;
    host_dir(&h);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(host_open(&h, bad[i]), -FY_E_CONFIG);
        assert_null(h.d);
    }
    assert_int_equal(rmdir(h.dir), 0);
}

static void test_sim__open_seed_vm__creates_running_vms(void **state)
{
    struct host h = {0};
    struct fy_vm_list list;
    struct fy_vm_info info;

    (void)state;
    host_dir(&h);
    assert_int_equal(host_open(&h, "seed-vm=2"), 0);
    assert_int_equal(ops->vm_list(h.d, &list), 0);
    assert_int_equal(list.n, 2);
    assert_string_equal(list.names[0], "vm1");
    assert_string_equal(list.names[1], "vm2");
    free(list.names);
    assert_int_equal(ops->vm_info(h.d, "vm2", &info), 0);
    assert_int_equal(info.power, FY_POWER_RUNNING);
    assert_int_equal(info.mem_bytes, VM_MEM);
    assert_int_equal(info.ndisks, 1);
    assert_true(exists(info.disks[0].path));
    host_close(&h);

    /* Not a new directory any more: no more seeding. */
    assert_int_equal(host_open(&h, "seed-vm=3"), 0);
    assert_int_equal(ops->vm_list(h.d, &list), 0);
    assert_int_equal(list.n, 2);
    free(list.names);
    host_close(&h);
    nftw(h.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_sim__open_same_dir_twice__second_is_busy(void **state)
{
    struct fixture *f = *state;
    struct fy_driver *d = NULL;
    char config[128];

    snprintf(config, sizeof(config), "state=%s", f->a.dir);
    assert_int_equal(ops->open(config, &d), -FY_E_BUSY);
    assert_null(d);
}

/* ---- defining VMs ------------------------------------------------------------ */

static void test_sim__readme__holds_the_example_verbatim(void **state)
{
    char *readme = read_file(FY_SIM_README, NULL);

    (void)state;
    assert_non_null(strstr(readme, sim_config_example()));
    free(readme);
}

static void test_sim__define_readme_example__vm_is_off_with_disks(void **state)
{
    struct fixture *f = *state;
    struct fy_vm_info info;
    char path[128];

    assert_int_equal(ops->vm_define(f->a.d, sim_config_example(), NULL, NULL, 0), 0);
    assert_int_equal(ops->vm_info(f->a.d, "demo1", &info), 0);
    assert_int_equal(info.power, FY_POWER_OFF);
    assert_int_equal(info.mem_bytes, VM_MEM);
    assert_int_equal(info.vcpus, 2);
    assert_string_equal(info.cpu_vendor, "GenuineIntel");
    assert_false(info.dynamic_memory);
    assert_true(info.managed);
    assert_int_equal(strlen(info.uuid), 36);
    assert_int_equal(info.ndevices, 2);
    assert_int_equal(info.devices[0].kind, FY_DEV_NIC);
    assert_true(info.devices[0].media);
    assert_int_equal(info.devices[1].kind, FY_DEV_CDROM);
    assert_false(info.devices[1].media);
    assert_int_equal(info.ndisks, 1);
    snprintf(path, sizeof(path), "%s/ds/local/demo1-vda.img", f->a.dir);
    assert_string_equal(info.disks[0].path, path);
    assert_string_equal(info.disks[0].datastore, "local");
    assert_int_equal(info.disks[0].virtual_size, 1ull << 30);
    assert_true(info.disks[0].size >= 256 * 1024);
    assert_true(info.disks[0].size < 1ull << 30);
    assert_int_equal(info.disks[0].nbacking, 1);
    snprintf(path, sizeof(path), "%s/ds/local/demo-base.img", f->a.dir);
    assert_string_equal(info.disks[0].backing[0], path);
    assert_true(exists(path));
    snprintf(path, sizeof(path), "%s/vms/demo1.mem", f->a.dir);
    assert_true(exists(path));
}

static void test_sim__define_existing_name__exists(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(ops->vm_define(f->a.d, sim_config_example(), NULL, NULL, 0), 0);
    assert_int_equal(ops->vm_define(f->a.d, sim_config_example(), NULL, NULL, 0),
                     -FY_E_EXISTS);
    assert_int_equal(ops->vm_define(f->a.d, sim_config_example(), "demo2", NULL, 0),
                     0);
}

static void test_sim__define_bad_config__config_error_names_line(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(ops->vm_define(f->a.d, "name x\nmem 64M\nsparkles 3\n", NULL,
                                    NULL, 0), -FY_E_CONFIG);
    assert_non_null(strstr(fy_error_detail(), "line 3"));
    assert_int_equal(ops->vm_define(f->a.d, "mem 64M\n", NULL, NULL, 0),
                     -FY_E_CONFIG);
    assert_int_equal(ops->vm_define(f->a.d, "name ../x\nmem 64M\n", NULL, NULL, 0),
                     -FY_E_CONFIG);
}

static void test_sim__vm_info_unknown_vm__notfound(void **state)
{
    struct fixture *f = *state;
    struct fy_vm_info info;

    assert_int_equal(ops->vm_info(f->a.d, "ghost", &info), -FY_E_NOTFOUND);
    assert_int_equal(ops->vm_start(f->a.d, "ghost"), -FY_E_NOTFOUND);
}

/* ---- the running guest ------------------------------------------------------- */

static void test_sim__running_vm__dirty_log_reports_exactly_changed_pages(void **state)
{
    struct fixture *f = *state;
    uint64_t *bitmap = calloc(WORDS, 8);
    const uint8_t *mem;
    uint8_t *before;
    unsigned dirty = 0, changed = 0;

    define_vm(&f->a, "w", 20000, 1);
    assert_int_equal(ops->vm_start(f->a.d, "w"), 0);
    assert_int_equal(power_of(&f->a, "w"), FY_POWER_RUNNING);
    mem = map_vm(&f->a, "w", PROT_READ);
    assert_int_equal(ops->vm_pause(f->a.d, "w"), 0);
    before = snapshot(mem);
    assert_int_equal(ops->dirty_log_start(f->a.d, "w"), 0);
    assert_int_equal(ops->vm_resume(f->a.d, "w"), 0);
    usleep(50000);
    assert_int_equal(ops->vm_pause(f->a.d, "w"), 0);
    assert_int_equal(ops->dirty_log_sync(f->a.d, "w", 0, bitmap, VM_PAGES), 0);
    for (uint64_t p = 0; p < VM_PAGES; p++) {
        bool bit = bitmap[p / 64] >> (p % 64) & 1;
        dirty += bit;
        changed += page_differs(mem, before, p);
        assert_int_equal(bit, page_differs(mem, before, p));
    }
    assert_true(dirty > 10);
    assert_int_equal(dirty, changed);
    /* A new period starts empty. */
    assert_int_equal(ops->dirty_log_sync(f->a.d, "w", 0, bitmap, VM_PAGES), 0);
    assert_int_equal(popcount_map(bitmap), 0);
    assert_int_equal(ops->dirty_log_sync(f->a.d, "w", 1, bitmap, VM_PAGES),
                     -FY_E_INVAL);
    assert_int_equal(ops->dirty_log_sync(f->a.d, "w", 0, bitmap, 5), -FY_E_INVAL);
    assert_int_equal(ops->dirty_log_stop(f->a.d, "w"), 0);
    unmap_vm(mem);
    free(before);
    free(bitmap);
}

static void test_sim__paused_vm__writes_nothing(void **state)
{
    struct fixture *f = *state;
    uint64_t *bitmap = calloc(WORDS, 8);
    const uint8_t *mem;
    uint8_t *before;

    define_vm(&f->a, "w", 20000, 1);
    assert_int_equal(ops->vm_start(f->a.d, "w"), 0);
    assert_int_equal(ops->dirty_log_start(f->a.d, "w"), 0);
    assert_int_equal(ops->vm_pause(f->a.d, "w"), 0);
    assert_int_equal(power_of(&f->a, "w"), FY_POWER_PAUSED);
    assert_int_equal(ops->dirty_log_sync(f->a.d, "w", 0, bitmap, VM_PAGES), 0);
    mem = map_vm(&f->a, "w", PROT_READ);
    before = snapshot(mem);
    usleep(50000);
    assert_int_equal(ops->dirty_log_sync(f->a.d, "w", 0, bitmap, VM_PAGES), 0);
    assert_int_equal(popcount_map(bitmap), 0);
    assert_memory_equal(mem, before, VM_MEM);
    /* Pausing twice is harmless; resuming writes again. */
    assert_int_equal(ops->vm_pause(f->a.d, "w"), 0);
    assert_int_equal(ops->vm_resume(f->a.d, "w"), 0);
    assert_int_equal(power_of(&f->a, "w"), FY_POWER_RUNNING);
    usleep(30000);
    assert_int_equal(ops->dirty_log_sync(f->a.d, "w", 0, bitmap, VM_PAGES), 0);
    assert_true(popcount_map(bitmap) > 0);
    unmap_vm(mem);
    free(before);
    free(bitmap);
}

static void test_sim__memory_layout__fd_shows_the_memory_file(void **state)
{
    struct fixture *f = *state;
    const uint8_t *mem;
    char path[128], *file;
    size_t len;

    define_vm(&f->a, "w", 20000, 1);
    assert_int_equal(ops->vm_start(f->a.d, "w"), 0);
    usleep(10000);
    assert_int_equal(ops->vm_pause(f->a.d, "w"), 0);
    mem = map_vm(&f->a, "w", PROT_READ);
    snprintf(path, sizeof(path), "%s/vms/w.mem", f->a.dir);
    file = read_file(path, &len);
    assert_int_equal(len, VM_MEM);
    assert_memory_equal(mem, file, VM_MEM);
    free(file);
    unmap_vm(mem);
}

static void test_sim__stopped_vm__power_off_and_restartable(void **state)
{
    struct fixture *f = *state;

    define_vm(&f->a, "w", 1000, 1);
    assert_int_equal(ops->vm_start(f->a.d, "w"), 0);
    assert_int_equal(ops->vm_start(f->a.d, "w"), -FY_E_INVAL);
    assert_int_equal(ops->vm_stop(f->a.d, "w", true), 0);
    assert_int_equal(power_of(&f->a, "w"), FY_POWER_OFF);
    assert_int_equal(ops->vm_pause(f->a.d, "w"), -FY_E_INVAL);
    assert_int_equal(ops->vm_start(f->a.d, "w"), 0);
    assert_int_equal(ops->vm_stop(f->a.d, "w", false), 0);
}

/* ---- hosts -------------------------------------------------------------------- */

static void test_sim__two_dirs__are_two_hosts(void **state)
{
    struct fixture *f = *state;
    struct fy_vm_list list;
    struct fy_host_info ha, hb;

    define_vm(&f->a, "only-on-a", 0, 1);
    assert_int_equal(ops->vm_list(f->b.d, &list), 0);
    assert_int_equal(list.n, 0);
    free(list.names);
    assert_int_equal(ops->vm_list(f->a.d, &list), 0);
    assert_int_equal(list.n, 1);
    free(list.names);
    assert_int_equal(ops->host_info(f->a.d, &ha), 0);
    assert_int_equal(ops->host_info(f->b.d, &hb), 0);
    assert_string_not_equal(ha.name, hb.name);
    assert_string_equal(hb.name, "hostb");
    assert_string_equal(hb.cpu_vendor, "AuthenticAMD");
}

static void test_sim__reopened_dir__sees_the_same_vms_running(void **state)
{
    struct fixture *f = *state;
    uint64_t *bitmap = calloc(WORDS, 8);
    struct fy_vm_info info;
    char uuid[40];

    define_vm(&f->a, "keep", 20000, 1);
    define_vm(&f->a, "idle", 0, 1);
    assert_int_equal(ops->vm_start(f->a.d, "keep"), 0);
    assert_int_equal(ops->vm_info(f->a.d, "keep", &info), 0);
    strcpy(uuid, info.uuid);
    host_close(&f->a);

    assert_int_equal(host_open(&f->a, NULL), 0);
    assert_int_equal(ops->vm_info(f->a.d, "keep", &info), 0);
    assert_string_equal(info.uuid, uuid);
    assert_int_equal(info.power, FY_POWER_RUNNING);
    assert_int_equal(power_of(&f->a, "idle"), FY_POWER_OFF);
    /* Its workload runs again in this instance. */
    assert_int_equal(ops->dirty_log_start(f->a.d, "keep"), 0);
    usleep(30000);
    assert_int_equal(ops->dirty_log_sync(f->a.d, "keep", 0, bitmap, VM_PAGES), 0);
    assert_true(popcount_map(bitmap) > 0);
    free(bitmap);
}

static void test_sim__host_info__mem_free_drops_when_a_vm_starts(void **state)
{
    struct fixture *f = *state;
    struct fy_host_info before, after;

    define_vm(&f->a, "w", 0, 1);
    assert_int_equal(ops->host_info(f->a.d, &before), 0);
    assert_int_equal(before.mem_free, before.mem_total);
    assert_true(before.datastores[0].free < before.datastores[0].capacity);
    assert_int_equal(ops->vm_start(f->a.d, "w"), 0);
    assert_int_equal(ops->host_info(f->a.d, &after), 0);
    assert_int_equal(after.mem_free, before.mem_free - VM_MEM);
    assert_int_equal(after.cpus_free, before.cpus_free - 2);
}

/* ---- moving VMs ---------------------------------------------------------------- */

static void test_sim__export_define_elsewhere__new_disk_paths(void **state)
{
    struct fixture *f = *state;
    struct fy_vm_info src, dst;
    char *config, path[128];
    const char *paths[1];

    assert_int_equal(ops->vm_define(f->a.d, sim_config_example(), NULL, NULL, 0), 0);
    assert_int_equal(ops->vm_start(f->a.d, "demo1"), 0);
    assert_int_equal(ops->vm_export(f->a.d, "demo1", &config), 0);
    assert_non_null(strstr(config, "power running"));
    snprintf(path, sizeof(path), "%s/ds/local/moved-vda.img", f->b.dir);
    paths[0] = path;
    assert_int_equal(ops->vm_define(f->b.d, config, NULL, paths, 1), 0);
    assert_int_equal(ops->vm_info(f->a.d, "demo1", &src), 0);
    assert_int_equal(ops->vm_info(f->b.d, "demo1", &dst), 0);
    assert_string_equal(dst.disks[0].path, path);
    assert_string_equal(dst.disks[0].datastore, "local");
    assert_string_equal(dst.uuid, src.uuid);
    assert_int_equal(dst.power, FY_POWER_OFF);
    assert_int_equal(dst.mem_bytes, src.mem_bytes);
    assert_int_equal(dst.ndevices, src.ndevices);
    /* The base image is found next to the disk, wherever it went. */
    snprintf(path, sizeof(path), "%s/ds/local/demo-base.img", f->b.dir);
    assert_string_equal(dst.disks[0].backing[0], path);
    /* Too many paths is an error. */
    const char *two[2] = {path, path};
    assert_int_equal(ops->vm_define(f->b.d, config, "demo3", two, 2), -FY_E_INVAL);
    free(config);
}

static void test_sim__undefine_running__busy_then_ok_when_stopped(void **state)
{
    struct fixture *f = *state;
    struct fy_vm_info info;
    char mem[128];

    define_vm(&f->a, "w", 1000, 1);
    assert_int_equal(ops->vm_info(f->a.d, "w", &info), 0);
    assert_int_equal(ops->vm_start(f->a.d, "w"), 0);
    assert_int_equal(ops->vm_undefine(f->a.d, "w"), -FY_E_BUSY);
    assert_non_null(strstr(fy_error_detail(), "stop it first"));
    assert_int_equal(ops->vm_stop(f->a.d, "w", true), 0);
    assert_int_equal(ops->vm_undefine(f->a.d, "w"), 0);
    assert_int_equal(ops->vm_info(f->a.d, "w", &info), -FY_E_NOTFOUND);
    snprintf(mem, sizeof(mem), "%s/vms/w.mem", f->a.dir);
    assert_false(exists(mem));
    assert_true(exists(info.disks[0].path)); /* disks stay */
}

static void test_sim__suspend_restore__keeps_memory(void **state)
{
    struct fixture *f = *state;
    char image[128], path[128];
    const uint8_t *mem;
    uint8_t *saved, junk[FY_PAGE_SIZE];
    int fd;

    /* rate 0: nothing writes after restore, so memory must equal the image. */
    define_vm(&f->a, "q", 0, 1);
    assert_int_equal(ops->vm_start(f->a.d, "q"), 0);
    mem = map_vm(&f->a, "q", PROT_READ);
    saved = snapshot(mem);
    snprintf(image, sizeof(image), "%s/q.img", f->a.dir);
    assert_int_equal(ops->vm_suspend(f->a.d, "q", image), 0);
    assert_int_equal(power_of(&f->a, "q"), FY_POWER_SUSPENDED);
    assert_int_equal(ops->vm_start(f->a.d, "q"), -FY_E_INVAL);

    /* Scribble over the memory file: restore must put the image back. */
    memset(junk, 0xa5, sizeof(junk));
    snprintf(path, sizeof(path), "%s/vms/q.mem", f->a.dir);
    fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    for (unsigned p = 0; p < 64; p++)
        assert_int_equal(pwrite(fd, junk, sizeof(junk), p * 4096 * 7), sizeof(junk));
    close(fd);

    assert_int_equal(ops->vm_restore(f->a.d, "q", image), 0);
    assert_int_equal(power_of(&f->a, "q"), FY_POWER_RUNNING);
    assert_memory_equal(mem, saved, VM_MEM);
    unmap_vm(mem);
    free(saved);
}

static void test_sim__quick_migration__restore_on_another_host(void **state)
{
    struct fixture *f = *state;
    char image[128], *config;
    const uint8_t *src, *dst;

    define_vm(&f->a, "q", 0, 3);
    assert_int_equal(ops->vm_start(f->a.d, "q"), 0);
    snprintf(image, sizeof(image), "%s/q.img", f->a.dir);
    assert_int_equal(ops->vm_suspend(f->a.d, "q", image), 0);
    assert_int_equal(ops->vm_export(f->a.d, "q", &config), 0);
    assert_int_equal(ops->vm_define(f->b.d, config, NULL, NULL, 0), 0);
    assert_int_equal(ops->vm_restore(f->b.d, "q", image), 0);
    src = map_vm(&f->a, "q", PROT_READ);
    dst = map_vm(&f->b, "q", PROT_READ);
    assert_memory_equal(src, dst, VM_MEM);
    unmap_vm(src);
    unmap_vm(dst);
    free(config);
}

static void test_sim__device_state__round_trips_to_another_host(void **state)
{
    struct fixture *f = *state;
    void *blob, *blob2;
    size_t len, len2;
    char *config;

    define_vm(&f->a, "m", 20000, 1);
    assert_int_equal(ops->vm_start(f->a.d, "m"), 0);
    usleep(20000);
    assert_int_equal(ops->device_state_save(f->a.d, "m", &blob, &len),
                     -FY_E_BUSY);
    assert_int_equal(ops->vm_pause(f->a.d, "m"), 0);
    assert_int_equal(ops->device_state_save(f->a.d, "m", &blob, &len), 0);
    assert_true(len > 0);

    assert_int_equal(ops->vm_export(f->a.d, "m", &config), 0);
    assert_int_equal(ops->incoming_prepare(f->b.d, config, NULL), 0);
    assert_int_equal(ops->device_state_load(f->b.d, "m", blob, len), 0);
    assert_int_equal(ops->device_state_save(f->b.d, "m", &blob2, &len2), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(blob2, blob, len);

    /* Not a sim device state: refused. */
    memset(blob2, 0x5a, len2);
    assert_int_equal(ops->device_state_load(f->b.d, "m", blob2, len2), -FY_E_INVAL);
    assert_int_equal(ops->device_state_load(f->b.d, "m", blob, 3), -FY_E_INVAL);
    free(blob);
    free(blob2);
    free(config);
}

static void test_sim__incoming_prepare__zero_paused_writable_vm(void **state)
{
    struct fixture *f = *state;
    uint8_t *mem, *zero = calloc(1, FY_PAGE_SIZE);
    char *config, path[128];
    uint8_t byte;
    int fd;

    define_vm(&f->a, "src", 1000, 1);
    assert_int_equal(ops->vm_export(f->a.d, "src", &config), 0);
    assert_int_equal(ops->incoming_prepare(f->b.d, config, "dst"), 0);
    assert_int_equal(power_of(&f->b, "dst"), FY_POWER_PAUSED);
    assert_int_equal(ops->incoming_prepare(f->b.d, config, "dst"), -FY_E_EXISTS);
    mem = (uint8_t *)map_vm(&f->b, "dst", PROT_READ | PROT_WRITE);
    for (uint64_t p = 0; p < VM_PAGES; p += 97)
        assert_memory_equal(mem + p * FY_PAGE_SIZE, zero, FY_PAGE_SIZE);
    mem[12345] = 0x42;
    snprintf(path, sizeof(path), "%s/vms/dst.mem", f->b.dir);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &byte, 1, 12345), 1);
    assert_int_equal(byte, 0x42);
    close(fd);
    assert_int_equal(ops->vm_resume(f->b.d, "dst"), 0);
    assert_int_equal(power_of(&f->b, "dst"), FY_POWER_RUNNING);
    unmap_vm(mem);
    free(zero);
    free(config);
}

static int cmp_hash(const void *a, const void *b)
{
    const fy_hash128 *x = a, *y = b;

    if (x->hi != y->hi)
        return x->hi < y->hi ? -1 : 1;
    if (x->lo != y->lo)
        return x->lo < y->lo ? -1 : 1;
    return 0;
}

/* Nonzero pages of 'b' whose content 'a' also holds. */
static uint64_t pages_in_common(const uint8_t *a, const uint8_t *b,
                                uint64_t *zero_in_a)
{
    fy_hash128 *hashes = malloc(VM_PAGES * sizeof(*hashes));
    uint64_t n = 0, common = 0;

    assert_non_null(hashes);
    *zero_in_a = 0;
    for (uint64_t p = 0; p < VM_PAGES; p++) {
        if (fy_page_is_zero(a + p * FY_PAGE_SIZE))
            ++*zero_in_a;
        else
            hashes[n++] = fy_page_hash(a + p * FY_PAGE_SIZE);
    }
    qsort(hashes, n, sizeof(*hashes), cmp_hash);
    for (uint64_t p = 0; p < VM_PAGES; p++) {
        fy_hash128 h;
        if (fy_page_is_zero(b + p * FY_PAGE_SIZE))
            continue;
        h = fy_page_hash(b + p * FY_PAGE_SIZE);
        common += bsearch(&h, hashes, n, sizeof(h), cmp_hash) != NULL;
    }
    free(hashes);
    return common;
}

static void test_sim__same_shared_seed__vms_share_kernel_pages(void **state)
{
    struct fixture *f = *state;
    const uint8_t *a, *b, *c;
    uint64_t zero, common;

    define_vm(&f->a, "a", 0, 7);
    define_vm(&f->b, "b", 0, 7);
    define_vm(&f->b, "c", 0, 8);
    a = map_vm(&f->a, "a", PROT_READ);
    b = map_vm(&f->b, "b", PROT_READ);
    c = map_vm(&f->b, "c", PROT_READ);
    common = pages_in_common(a, b, &zero);
    assert_true(common >= VM_PAGES * 15 / 100);
    assert_true(zero >= VM_PAGES * 35 / 100 && zero <= VM_PAGES * 45 / 100);
    /* Another seed: other kernel pages. */
    common = pages_in_common(a, c, &zero);
    assert_true(common < VM_PAGES / 100);
    assert_memory_not_equal(a, b, VM_MEM);
    unmap_vm(a);
    unmap_vm(b);
    unmap_vm(c);
}

static void test_sim__rename_and_disconnect_nics(void **state)
{
    struct fixture *f = *state;
    struct fy_vm_info info;
    char path[128];

    define_vm(&f->a, "old", 1000, 1);
    define_vm(&f->a, "other", 0, 1);
    assert_int_equal(ops->vm_start(f->a.d, "old"), 0);
    assert_int_equal(ops->vm_rename(f->a.d, "old", "other"), -FY_E_EXISTS);
    assert_int_equal(ops->vm_rename(f->a.d, "old", "old-migrated"), 0);
    assert_int_equal(ops->vm_info(f->a.d, "old", &info), -FY_E_NOTFOUND);
    assert_int_equal(power_of(&f->a, "old-migrated"), FY_POWER_RUNNING);
    snprintf(path, sizeof(path), "%s/vms/old-migrated.mem", f->a.dir);
    assert_true(exists(path));
    snprintf(path, sizeof(path), "%s/vms/old.conf", f->a.dir);
    assert_false(exists(path));

    assert_int_equal(ops->vm_disconnect_nics(f->a.d, "old-migrated"), 0);
    assert_int_equal(ops->vm_info(f->a.d, "old-migrated", &info), 0);
    assert_int_equal(info.devices[0].kind, FY_DEV_NIC);
    assert_false(info.devices[0].media);
}

int main(void)
{
    void *lib = dlopen(FY_SIM_PATH, RTLD_NOW | RTLD_LOCAL);
    const struct fy_driver_ops *(*entry)(void);

    if (!lib) {
        fprintf(stderr, "cannot load %s: %s\n", FY_SIM_PATH, dlerror());
        return 1;
    }
    *(void **)&entry = dlsym(lib, FY_DRIVER_ENTRY_SYMBOL);
    if (!entry) {
        fprintf(stderr, "%s has no %s\n", FY_SIM_PATH, FY_DRIVER_ENTRY_SYMBOL);
        return 1;
    }
    ops = entry();
    if (ops->abi != FY_DRIVER_ABI) {
        fprintf(stderr, "%s has ABI %u, not %d\n", FY_SIM_PATH, ops->abi,
                FY_DRIVER_ABI);
        return 1;
    }

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_sim__open_fresh_dir__host_has_defaults),
        cmocka_unit_test(test_sim__open_with_settings__host_info_reports_them),
        cmocka_unit_test(test_sim__open_unknown_key__config_error_names_it),
        cmocka_unit_test(test_sim__open_without_state__config_error),
        cmocka_unit_test(test_sim__open_bad_values__config_error),
        cmocka_unit_test(test_sim__open_seed_vm__creates_running_vms),
        T(test_sim__open_same_dir_twice__second_is_busy),
        cmocka_unit_test(test_sim__readme__holds_the_example_verbatim),
        T(test_sim__define_readme_example__vm_is_off_with_disks),
        T(test_sim__define_existing_name__exists),
        T(test_sim__define_bad_config__config_error_names_line),
        T(test_sim__vm_info_unknown_vm__notfound),
        T(test_sim__running_vm__dirty_log_reports_exactly_changed_pages),
        T(test_sim__paused_vm__writes_nothing),
        T(test_sim__memory_layout__fd_shows_the_memory_file),
        T(test_sim__stopped_vm__power_off_and_restartable),
        T(test_sim__two_dirs__are_two_hosts),
        T(test_sim__reopened_dir__sees_the_same_vms_running),
        T(test_sim__host_info__mem_free_drops_when_a_vm_starts),
        T(test_sim__export_define_elsewhere__new_disk_paths),
        T(test_sim__undefine_running__busy_then_ok_when_stopped),
        T(test_sim__suspend_restore__keeps_memory),
        T(test_sim__quick_migration__restore_on_another_host),
        T(test_sim__device_state__round_trips_to_another_host),
        T(test_sim__incoming_prepare__zero_paused_writable_vm),
        T(test_sim__same_shared_seed__vms_share_kernel_pages),
        T(test_sim__rename_and_disconnect_nics),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
