/* Unit tests of hosts over the control API (controlplane/host_server.c,
 * host_remote.c, host_json.c): two sim hosts, each served by an RPC server
 * started here on loopback and reached by a remote host; migrations from a
 * local source to a remote target (and from a remote source), every
 * operation answering as the local call does, errors from the far host,
 * a wrong key, rollback after a failure at the target, and a receive join
 * kept alive by the server's progress frames. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/controlplane/sim_helpers.h"

#include "controlplane/driver.h"
#include "controlplane/events.h"
#include "controlplane/host.h"
#include "controlplane/host_json.h"
#include "controlplane/host_rpc.h"
#include "controlplane/workflow.h"
#include "ferry/classifier.h"
#include "ferry/engine.h"
#include "ferry/error.h"
#include "ferry/region.h"

#define KEY "host-rpc-test-key-0123456789abcdef"
#define OTHER_KEY "not-the-cluster-key-0123456789ab"
#define TIMEOUT_MS 20000

/* One sim host in this process, served by its own RPC server, and reached
 * through it. */
struct served {
    char state[96];
    struct fy_driver_handle drv;
    struct fy_host local;
    struct fy_host_server hs;
    bool hs_ok;
    struct fy_rpc_server *srv;
    struct fy_host remote;
};

struct fx {
    char dir[64], db[96], keyfile[96];
    struct fy_rpc_key key;
    struct served src, dst;
    struct fy_store *store;
    bool ready;
    /* Checks made while a migration runs, at the named action. */
    const char *check_at;
    bool checked, identical;
    unsigned rounds; /* reported to on_round */
};

static int write_key(const char *path, const char *secret)
{
    FILE *fp = fopen(path, "w");
    if (!fp)
        return -1;
    fputs(secret, fp);
    fclose(fp);
    return chmod(path, 0600);
}

static int serve(struct fx *f, struct served *s, const char *name, const char *cfg)
{
    struct fy_rpc_method methods[64];
    size_t n = fy_host_server_methods(methods, 64);
    int rc;

    if ((rc = fy_driver_open(FY_TEST_DRIVERS_DIR, "sim", cfg, &s->drv)) < 0)
        return rc;
    fy_host_local_init(&s->local, name, &s->drv);
    if ((rc = fy_host_server_init(&s->hs, &s->local)) < 0)
        return rc;
    s->hs_ok = true;
    if ((rc = fy_rpc_server_start("127.0.0.1:0", &f->key, methods, n, &s->hs, NULL,
                                  &s->srv)) < 0)
        return rc;
    return fy_host_remote_open(&s->remote, name, fy_rpc_server_addr(s->srv), &f->key,
                               TIMEOUT_MS);
}

static void unserve(struct served *s)
{
    fy_host_remote_close(&s->remote);
    fy_rpc_server_stop(s->srv);
    if (s->hs_ok)
        fy_host_server_fini(&s->hs);
    if (s->drv.ops)
        fy_driver_close(&s->drv);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char cfg[160];
    int rc;

    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-hrpc-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->src.state, sizeof(f->src.state), "%s/h1", f->dir);
    snprintf(f->dst.state, sizeof(f->dst.state), "%s/h2", f->dir);
    snprintf(f->db, sizeof(f->db), "%s/ferry.db", f->dir);
    snprintf(f->keyfile, sizeof(f->keyfile), "%s/cluster.key", f->dir);
    if (write_key(f->keyfile, KEY) != 0 || fy_rpc_key_load(f->keyfile, &f->key) < 0)
        return -1;
    snprintf(cfg, sizeof(cfg), "state=%s;seed-vm=1", f->src.state);
    rc = serve(f, &f->src, "h1", cfg);
    if (rc == 0) {
        snprintf(cfg, sizeof(cfg), "state=%s", f->dst.state);
        rc = serve(f, &f->dst, "h2", cfg);
    }
    if (rc == 0)
        rc = fy_store_open(f->db, &f->store);
    if (rc < 0)
        fprintf(stderr, "hosts not available (%s)\n", fy_error_detail());
    f->ready = rc == 0;
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    unserve(&f->src);
    unserve(&f->dst);
    fy_store_close(f->store);
    fy_rpc_key_wipe(&f->key);
    rm_rf(f->dir);
    free(f);
    return 0;
}

static void need_hosts(struct fx *f)
{
    if (!f->ready) {
        print_message("skipped: the sim driver (ferry-sim.so in %s) could not be "
                      "served\n", FY_TEST_DRIVERS_DIR);
        skip();
    }
}

/* ---- helpers ------------------------------------------------------------------ */

static void on_action(const char *name, void *ctx)
{
    struct fx *f = ctx;
    char a[FY_PATH_MAX + 32], b[FY_PATH_MAX + 32];

    if (!f->check_at || strcmp(name, f->check_at) != 0)
        return;
    f->checked = true;
    if (strcmp(name, "SwitchHostAndPool") == 0) {
        /* Live: the source is paused after the final round, the target
         * holds what it received and has not run yet. */
        snprintf(a, sizeof(a), "%s/vms/vm1.mem", f->src.state);
        snprintf(b, sizeof(b), "%s/vms/vm1.mem", f->dst.state);
    } else {
        /* Quick: the saved state at the source and what arrived. */
        char da[FY_PATH_MAX], db[FY_PATH_MAX];
        ds_path(&f->src.local, da, sizeof(da));
        ds_path(&f->dst.local, db, sizeof(db));
        snprintf(a, sizeof(a), "%s/vm1.ferry-1.save", da);
        snprintf(b, sizeof(b), "%s/vm1.ferry-1.restore", db);
    }
    f->identical = files_equal(a, b);
}

static void on_round(const struct fy_round_stats *st, void *ctx)
{
    struct fx *f = ctx;
    if (st->round > 0)
        f->rounds++;
}

static struct fy_migration_request request(struct fx *f, enum fy_migration_kind kind)
{
    struct fy_migration_request r = {
        .kind = kind, .vm = "vm1", .streams = 2, .timeout_ms = TIMEOUT_MS,
        .on_action = on_action, .on_round = on_round, .ctx = f,
    };
    return r;
}

static int power_at(struct fy_host *h, enum fy_power *p)
{
    struct fy_vm_info vi;
    int rc = h->ops->vm_info(h, "vm1", &vi);
    if (rc == 0)
        *p = vi.power;
    return rc;
}

static void dump_events(struct fx *f, int64_t id)
{
    struct fy_event *ev = NULL;
    size_t n = 0;
    if (fy_store_events_list(f->store, id, &ev, &n) < 0)
        return;
    for (size_t i = 0; i < n; i++)
        print_message("  %2u %s\n", ev[i].task, ev[i].text);
    free(ev);
}

/* Migrates vm1 from 'src' to 'dst' and checks it runs at the target only
 * and the record says succeeded. */
static void migrate_ok(struct fx *f, struct fy_migration_request *r, struct fy_host *src,
                       struct fy_host *dst, struct fy_migration_record *rec)
{
    enum fy_power p = FY_POWER_OFF;
    int64_t id = 0;
    int rc = fy_migrate(r, src, dst, f->store, &id);

    if (rc != 0) {
        dump_events(f, id);
        fail_msg("migration failed: %s: %s", fy_errname(rc), fy_error_detail());
    }
    assert_int_equal(power_at(&f->dst.local, &p), 0);
    assert_int_equal(p, FY_POWER_RUNNING);
    assert_int_equal(power_at(&f->src.local, &p), -FY_E_NOTFOUND);
    assert_int_equal(fy_store_migration_get(f->store, id, rec), 0);
    assert_int_equal(rec->state, FY_MIG_SUCCEEDED);
}

/* ---- migrations ------------------------------------------------------------- */

static void test_host_rpc__live_to_remote_target__vm_runs_at_target_memory_identical(void **state)
{
    struct fx *f = *state;
    struct fy_migration_record rec;

    need_hosts(f);
    struct fy_migration_request r = request(f, FY_MIG_LIVE);
    f->check_at = "SwitchHostAndPool";
    migrate_ok(f, &r, &f->src.local, &f->dst.remote, &rec);
    assert_true(f->checked);
    assert_true(f->identical);
    assert_true(rec.verified);
    assert_true(rec.wire_bytes > 0);
}

static void test_host_rpc__cold_to_remote_target__vm_runs_at_target_disk_identical(void **state)
{
    struct fx *f = *state;
    struct fy_migration_record rec;
    char a[FY_PATH_MAX + 16], b[FY_PATH_MAX + 16], da[FY_PATH_MAX], db[FY_PATH_MAX];
    char before[200], cmd[1024];

    need_hosts(f);
    ds_path(&f->src.local, da, sizeof(da));
    ds_path(&f->dst.local, db, sizeof(db));
    snprintf(a, sizeof(a), "%s/vm1-vda.img", da);
    snprintf(b, sizeof(b), "%s/vm1-vda.img", db);
    /* The workflow may remove the source's copy once the disk has moved. */
    snprintf(before, sizeof(before), "%s/disk-before", f->dir);
    snprintf(cmd, sizeof(cmd), "cp --sparse=always '%s' '%s'", a, before);
    assert_int_equal(system(cmd), 0);
    struct fy_migration_request r = request(f, FY_MIG_COLD);
    migrate_ok(f, &r, &f->src.local, &f->dst.remote, &rec);
    assert_true(files_equal(before, b));
    assert_true(rec.verified);
}

static void test_host_rpc__quick_to_remote_target__vm_runs_at_target_image_identical(void **state)
{
    struct fx *f = *state;
    struct fy_migration_record rec;

    need_hosts(f);
    struct fy_migration_request r = request(f, FY_MIG_QUICK);
    f->check_at = "RestoreDestinationVm";
    migrate_ok(f, &r, &f->src.local, &f->dst.remote, &rec);
    assert_true(f->checked);
    assert_true(f->identical);
}

/* The source's operations (send, dirty log, pause, device state save) go
 * over the wire too, and its pre-copy rounds come back as progress. */
static void test_host_rpc__live_from_remote_source__vm_runs_at_target_memory_identical(void **state)
{
    struct fx *f = *state;
    struct fy_migration_record rec;

    need_hosts(f);
    struct fy_migration_request r = request(f, FY_MIG_LIVE);
    f->check_at = "SwitchHostAndPool";
    migrate_ok(f, &r, &f->src.remote, &f->dst.local, &rec);
    assert_true(f->checked);
    assert_true(f->identical);
    assert_true(rec.verified);
    assert_true(f->rounds > 0); /* from the far host's progress frames */
}

static void test_host_rpc__live_both_remote__vm_runs_at_target(void **state)
{
    struct fx *f = *state;
    struct fy_migration_record rec;

    need_hosts(f);
    struct fy_migration_request r = request(f, FY_MIG_LIVE);
    migrate_ok(f, &r, &f->src.remote, &f->dst.remote, &rec);
    assert_true(rec.verified);
}

/* A failure at each target-side step before the switchover rolls back:
 * the source runs the VM, the target has none. */
static void fail_live_at(const char *action)
{
    void *st = NULL;
    struct fx *f;
    struct fy_migration_record rec;
    enum fy_power p = FY_POWER_OFF;
    int64_t id = 0;
    int rc;

    assert_int_equal(fx_setup(&st), 0);
    f = st;
    if (!f->ready) {
        fx_teardown(&st);
        need_hosts(&(struct fx){.ready = false});
    }
    struct fy_migration_request r = request(f, FY_MIG_LIVE);
    r.fail_at = action;
    rc = fy_migrate(&r, &f->src.local, &f->dst.remote, f->store, &id);
    if (rc != -FY_E_IO || !strstr(fy_error_detail(), "injected failure")) {
        dump_events(f, id);
        fail_msg("fail_at=%s: got %s (%s)", action, fy_errname(rc), fy_error_detail());
    }
    assert_int_equal(fy_store_migration_get(f->store, id, &rec), 0);
    if (rec.state != FY_MIG_ROLLED_BACK || power_at(&f->src.local, &p) != 0 ||
        p != FY_POWER_RUNNING || power_at(&f->dst.remote, &p) != -FY_E_NOTFOUND) {
        dump_events(f, id);
        fail_msg("fail_at=%s: state %s, not back at the source running alone", action,
                 fy_mig_state_name(rec.state));
    }
    fx_teardown(&st);
}

static void test_host_rpc__live_fails_at_prepare_destination__source_keeps_vm(void **state)
{
    (void)state;
    fail_live_at("PrepareDestination");
}

static void test_host_rpc__live_fails_after_transfer__source_resumed_target_cleaned(void **state)
{
    (void)state;
    fail_live_at("InitiateDestination");
    fail_live_at("SwitchHostAndPool");
}

/* ---- operations one by one ----------------------------------------------------- */

static void assert_host_info_equal(const struct fy_host_info *a, const struct fy_host_info *b)
{
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->hypervisor, b->hypervisor);
    assert_string_equal(a->cpu_vendor, b->cpu_vendor);
    assert_string_equal(a->cpu_model, b->cpu_model);
    assert_true(a->mem_total == b->mem_total);
    assert_true(a->mem_free == b->mem_free);
    assert_int_equal(a->cpus_total, b->cpus_total);
    assert_int_equal(a->cpus_free, b->cpus_free);
    assert_int_equal(a->dynamic_memory, b->dynamic_memory);
    assert_int_equal(a->maintenance, b->maintenance);
    for (unsigned r = 0; r < FY_NET__COUNT; r++)
        assert_string_equal(a->net[r], b->net[r]);
    assert_int_equal(a->ndatastores, b->ndatastores);
    for (unsigned i = 0; i < a->ndatastores; i++) {
        assert_string_equal(a->datastores[i].name, b->datastores[i].name);
        assert_string_equal(a->datastores[i].path, b->datastores[i].path);
        assert_true(a->datastores[i].capacity == b->datastores[i].capacity);
        assert_true(a->datastores[i].free == b->datastores[i].free);
        assert_int_equal(a->datastores[i].shared, b->datastores[i].shared);
    }
}

static void assert_vm_info_equal(const struct fy_vm_info *a, const struct fy_vm_info *b)
{
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->uuid, b->uuid);
    assert_int_equal(a->power, b->power);
    assert_true(a->mem_bytes == b->mem_bytes);
    assert_int_equal(a->vcpus, b->vcpus);
    assert_string_equal(a->cpu_vendor, b->cpu_vendor);
    assert_int_equal(a->dynamic_memory, b->dynamic_memory);
    assert_int_equal(a->managed, b->managed);
    assert_int_equal(a->ndevices, b->ndevices);
    for (unsigned i = 0; i < a->ndevices; i++) {
        assert_int_equal(a->devices[i].kind, b->devices[i].kind);
        assert_string_equal(a->devices[i].name, b->devices[i].name);
        assert_string_equal(a->devices[i].path, b->devices[i].path);
        assert_int_equal(a->devices[i].media, b->devices[i].media);
    }
    assert_int_equal(a->ndisks, b->ndisks);
    for (unsigned i = 0; i < a->ndisks; i++) {
        const struct fy_disk *x = &a->disks[i], *y = &b->disks[i];
        assert_string_equal(x->name, y->name);
        assert_string_equal(x->path, y->path);
        assert_string_equal(x->datastore, y->datastore);
        assert_true(x->size == y->size);
        assert_true(x->virtual_size == y->virtual_size);
        assert_int_equal(x->nbacking, y->nbacking);
        for (unsigned k = 0; k < x->nbacking; k++)
            assert_string_equal(x->backing[k], y->backing[k]);
    }
}

static void test_host_rpc__inventory__answers_as_the_local_call(void **state)
{
    struct fx *f = *state;
    struct fy_host *lo = &f->src.local, *re = &f->src.remote;
    struct fy_host_info hl, hr;
    struct fy_vm_info vl, vr;
    struct fy_host_caps cl, cr;
    struct fy_host_memory ml, mr;

    need_hosts(f);
    assert_int_equal(lo->ops->host_info(lo, &hl), 0);
    assert_int_equal(re->ops->host_info(re, &hr), 0);
    assert_host_info_equal(&hl, &hr);
    assert_true(hl.ndatastores > 0);

    assert_int_equal(lo->ops->vm_info(lo, "vm1", &vl), 0);
    assert_int_equal(re->ops->vm_info(re, "vm1", &vr), 0);
    assert_vm_info_equal(&vl, &vr);
    assert_true(vl.ndisks > 0);

    assert_int_equal(lo->ops->capabilities(lo, &cl), 0);
    assert_int_equal(re->ops->capabilities(re, &cr), 0);
    assert_string_equal(cl.driver, cr.driver);
    assert_int_equal(cl.caps, cr.caps);

    assert_int_equal(lo->ops->memory_info(lo, "vm1", &ml), 0);
    assert_int_equal(re->ops->memory_info(re, "vm1", &mr), 0);
    assert_int_equal(ml.n, mr.n);
    assert_true(ml.n > 0);
    for (unsigned i = 0; i < ml.n; i++) {
        assert_string_equal(ml.regions[i].name, mr.regions[i].name);
        assert_true(ml.regions[i].size == mr.regions[i].size);
    }
}

/* Defines vm1 at the target over the wire from the source's export and
 * drives it through its lifecycle, checking each step at the target's
 * local host. */
static void test_host_rpc__lifecycle_and_device_state__act_at_the_far_host(void **state)
{
    struct fx *f = *state;
    struct fy_host *src = &f->src.local, *re = &f->dst.remote, *lo = &f->dst.local;
    char *config = NULL, *again = NULL, da[FY_PATH_MAX], image[FY_PATH_MAX + 16];
    void *ds = NULL, *ds2 = NULL;
    size_t len = 0, len2 = 0;
    enum fy_power p = FY_POWER_OFF;
    struct fy_vm_info vi;

    need_hosts(f);
    assert_int_equal(src->ops->vm_export(src, "vm1", &config), 0);
    assert_int_equal(re->ops->vm_define(re, config, "vm2", NULL, 0), 0);
    assert_int_equal(re->ops->vm_define(re, config, "vm2", NULL, 0), -FY_E_EXISTS);
    assert_int_equal(lo->ops->vm_info(lo, "vm2", &vi), 0);
    assert_int_equal(vi.power, FY_POWER_OFF);
    assert_int_equal(re->ops->vm_export(re, "vm2", &again), 0);
    assert_non_null(strstr(again, "vm2"));
    free(again);

    assert_int_equal(re->ops->vm_start(re, "vm2"), 0);
    assert_int_equal(lo->ops->vm_info(lo, "vm2", &vi), 0);
    assert_int_equal(vi.power, FY_POWER_RUNNING);
    assert_int_equal(re->ops->dirty_log_start(re, "vm2"), 0);
    assert_int_equal(re->ops->dirty_log_stop(re, "vm2"), 0);
    assert_int_equal(re->ops->vm_pause(re, "vm2"), 0);
    assert_int_equal(lo->ops->vm_info(lo, "vm2", &vi), 0);
    assert_int_equal(vi.power, FY_POWER_PAUSED);

    /* Device state: the remote bytes are the local ones; loading them back
     * is accepted. */
    assert_int_equal(re->ops->device_state_save(re, "vm2", &ds, &len), 0);
    assert_int_equal(lo->ops->device_state_save(lo, "vm2", &ds2, &len2), 0);
    assert_int_equal(len, len2);
    assert_memory_equal(ds, ds2, len);
    assert_int_equal(re->ops->device_state_load(re, "vm2", ds, len), 0);
    free(ds);
    free(ds2);

    assert_int_equal(re->ops->vm_resume(re, "vm2"), 0);
    assert_int_equal(lo->ops->vm_info(lo, "vm2", &vi), 0);
    assert_int_equal(vi.power, FY_POWER_RUNNING);

    /* Quick: suspend to an image on the far host, restore from it. */
    ds_path(lo, da, sizeof(da));
    snprintf(image, sizeof(image), "%s/vm2.save", da);
    assert_int_equal(re->ops->vm_suspend(re, "vm2", image), 0);
    assert_int_equal(lo->ops->vm_info(lo, "vm2", &vi), 0);
    assert_int_not_equal(vi.power, FY_POWER_RUNNING);
    assert_int_equal(re->ops->vm_restore(re, "vm2", image), 0);
    assert_int_equal(lo->ops->vm_info(lo, "vm2", &vi), 0);
    assert_int_equal(vi.power, FY_POWER_RUNNING);
    assert_int_equal(re->ops->file_remove(re, image), 0);

    assert_int_equal(re->ops->vm_stop(re, "vm2", true), 0);
    assert_int_equal(power_at(lo, &p), -FY_E_NOTFOUND); /* vm1 is not there */
    assert_int_equal(re->ops->vm_undefine(re, "vm2"), 0);
    assert_int_equal(lo->ops->vm_info(lo, "vm2", &vi), -FY_E_NOTFOUND);
    free(config);
}

static void test_host_rpc__files__created_sized_removed_at_the_far_host(void **state)
{
    struct fx *f = *state;
    struct fy_host *re = &f->dst.remote;
    char path[200];
    uint64_t size = 1;
    struct stat st;

    need_hosts(f);
    snprintf(path, sizeof(path), "%s/made-remotely", f->dir);
    assert_int_equal(re->ops->file_create(re, path), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(re->ops->file_create(re, path), -FY_E_EXISTS);
    assert_int_equal(re->ops->file_stat(re, path, &size), 0);
    assert_true(size == 0);
    assert_int_equal(re->ops->file_remove(re, path), 0);
    assert_int_equal(re->ops->file_remove(re, path), 0);
    assert_int_equal(re->ops->file_stat(re, path, &size), -FY_E_NOTFOUND);
}

/* 'len' bytes of a pattern seeded by 'seed' into 'path'. */
static void write_pattern(const char *path, size_t len, unsigned seed)
{
    unsigned char *buf = malloc(len);
    FILE *fp = fopen(path, "w");

    assert_non_null(buf);
    assert_non_null(fp);
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)((i * 2654435761u + seed) >> 13);
    assert_int_equal(fwrite(buf, 1, len, fp), len);
    fclose(fp);
    free(buf);
}

static void set_mtime(const char *path, time_t sec)
{
    struct timespec t[2] = {{.tv_sec = sec}, {.tv_sec = sec}};
    assert_int_equal(utimensat(AT_FDCWD, path, t, 0), 0);
}

static void test_host_rpc__file_digest__far_host_answers_as_local_call_region_digest(void **state)
{
    struct fx *f = *state;
    struct fy_host *re = &f->dst.remote, *lo = &f->dst.local;
    const size_t len = (3u << 20) + 1000; /* chunks and a partial last page */
    char path[200], missing[200];
    fy_hash128 dl, dr, dregion;
    uint64_t sl = 0, sr = 0;
    struct fy_region *r;
    int fd;

    need_hosts(f);
    snprintf(path, sizeof(path), "%s/base.img", f->dir);
    write_pattern(path, len, 7);
    assert_int_equal(lo->ops->file_digest(lo, path, &sl, &dl), 0);
    assert_int_equal(re->ops->file_digest(re, path, &sr, &dr), 0);
    assert_true(sl == len && sr == len);
    assert_true(fy_hash_eq(dl, dr));
    assert_false(fy_hash_is_unknown(dl));
    /* The engine's region digest of the same bytes, the last page padded
     * with zeros. */
    assert_int_equal(truncate(path, (off_t)((len + FY_PAGE_SIZE - 1) & ~(size_t)(FY_PAGE_SIZE - 1))), 0);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(fy_region_open_fd(fd, 0, (len + FY_PAGE_SIZE - 1) & ~(size_t)(FY_PAGE_SIZE - 1),
                                       FY_REGION_READ, &r), 0);
    close(fd);
    assert_int_equal(fy_region_digest(r, 1, &dregion), 0);
    fy_region_close(r);
    assert_true(fy_hash_eq(dl, dregion));

    snprintf(missing, sizeof(missing), "%s/no-such-base.img", f->dir);
    assert_int_equal(re->ops->file_digest(re, missing, &sr, &dr), -FY_E_NOTFOUND);
    assert_non_null(strstr(fy_error_detail(), missing));
}

static void test_host_local__file_digest_rewritten__new_digest_else_cached(void **state)
{
    struct fx *f = *state;
    struct fy_host *lo = &f->src.local;
    struct fy_host_digest_stats a, b;
    char path[200];
    fy_hash128 d1, d2, d3;
    uint64_t size = 0;

    need_hosts(f);
    snprintf(path, sizeof(path), "%s/cached.img", f->dir);
    write_pattern(path, 1u << 20, 1);
    set_mtime(path, 1000000000);
    fy_host_local_digest_stats(&a);
    assert_int_equal(lo->ops->file_digest(lo, path, &size, &d1), 0);
    fy_host_local_digest_stats(&b);
    assert_true(b.bytes_read - a.bytes_read == 1u << 20);

    /* Asked again: from the cache, nothing read. */
    assert_int_equal(lo->ops->file_digest(lo, path, &size, &d2), 0);
    fy_host_local_digest_stats(&a);
    assert_true(fy_hash_eq(d1, d2));
    assert_true(a.bytes_read == b.bytes_read);
    assert_true(a.cache_hits == b.cache_hits + 1);

    /* Rewritten with other bytes of the same size and another mtime: read
     * again, a new digest. */
    write_pattern(path, 1u << 20, 2);
    set_mtime(path, 1000000100);
    assert_int_equal(lo->ops->file_digest(lo, path, &size, &d3), 0);
    fy_host_local_digest_stats(&b);
    assert_false(fy_hash_eq(d1, d3));
    assert_true(b.bytes_read - a.bytes_read == 1u << 20);

    /* Rewritten back with the old mtime restored: its change time still
     * tells. */
    write_pattern(path, 1u << 20, 1);
    set_mtime(path, 1000000000);
    assert_int_equal(lo->ops->file_digest(lo, path, &size, &d2), 0);
    assert_true(fy_hash_eq(d1, d2));
    fy_host_local_digest_stats(&a);
    assert_true(a.bytes_read - b.bytes_read == 1u << 20);
}

static void test_host_rpc__unknown_vm_at_far_host__notfound_with_its_message(void **state)
{
    struct fx *f = *state;
    struct fy_vm_info vi;
    char local_msg[1024];

    need_hosts(f);
    assert_int_equal(f->dst.local.ops->vm_info(&f->dst.local, "nosuchvm", &vi),
                     -FY_E_NOTFOUND);
    snprintf(local_msg, sizeof(local_msg), "%s", fy_error_detail());
    assert_int_equal(f->dst.remote.ops->vm_info(&f->dst.remote, "nosuchvm", &vi),
                     -FY_E_NOTFOUND);
    assert_non_null(strstr(fy_error_detail(), local_msg));
    assert_non_null(strstr(fy_error_detail(), fy_rpc_server_addr(f->dst.srv)));
    /* The connection goes on. */
    assert_int_equal(f->dst.remote.ops->capabilities(&f->dst.remote,
                                                     &(struct fy_host_caps){0}), 0);
}

static void test_host_rpc__wrong_key__open_refused_auth(void **state)
{
    struct fx *f = *state;
    struct fy_rpc_key other;
    struct fy_host h;
    char path[128];

    need_hosts(f);
    snprintf(path, sizeof(path), "%s/other.key", f->dir);
    assert_int_equal(write_key(path, OTHER_KEY), 0);
    assert_int_equal(fy_rpc_key_load(path, &other), 0);
    assert_int_equal(fy_host_remote_open(&h, "h2", fy_rpc_server_addr(f->dst.srv), &other,
                                         TIMEOUT_MS), -FY_E_AUTH);
    assert_null(h.ops);
    fy_host_remote_close(&h); /* a zeroed host is allowed */
    fy_rpc_key_wipe(&other);
}

static void test_host_rpc__closed_host__calls_fail_closed(void **state)
{
    struct fx *f = *state;
    struct fy_host h;

    need_hosts(f);
    assert_int_equal(fy_host_remote_open(&h, "h2", fy_rpc_server_addr(f->dst.srv), &f->key,
                                         TIMEOUT_MS), 0);
    assert_string_equal(h.ops->name, "remote");
    const struct fy_host_ops *ops = h.ops;
    fy_host_remote_close(&h);
    fy_host_remote_close(&h);
    assert_int_equal(ops->vm_start(&h, "vm1"), -FY_E_CLOSED);
}

/* ---- the dataplane over the wire ---------------------------------------------- */

struct late_send {
    struct fy_host *src;
    struct fy_host_data what;
    struct fy_host_endpoint ep;
    int delay_ms;
    int rc;
};

static void *late_send_main(void *arg)
{
    struct late_send *ls = arg;
    struct fy_host_send_params sp = {.streams = 2, .timeout_ms = TIMEOUT_MS};
    struct fy_host_send_result res;

    usleep((useconds_t)ls->delay_ms * 1000);
    ls->rc = ls->src->ops->send(ls->src, &ls->what, &ls->ep, &sp, &res);
    return NULL;
}

/* The join waits (3.5 s) longer than the remote host's per-frame timeout
 * (1.5 s): the server's progress frames, one a second, keep the call
 * alive. */
static void test_host_rpc__recv_join_longer_than_timeout__kept_alive_by_progress(void **state)
{
    struct fx *f = *state;
    struct fy_host slow;
    struct fy_host_recv *job = NULL;
    struct fy_migration_stats st;
    struct late_send ls = {.src = &f->src.local, .delay_ms = 3500};
    char from[200], to[200];
    uint64_t size = 0;
    pthread_t tid;
    FILE *fp;

    need_hosts(f);
    snprintf(from, sizeof(from), "%s/payload", f->dir);
    snprintf(to, sizeof(to), "%s/payload-received", f->dir);
    assert_non_null(fp = fopen(from, "wb"));
    for (unsigned i = 0; i < 3 * 4096 + 123; i++)
        fputc((int)(i * 7 % 251), fp);
    fclose(fp);

    assert_int_equal(fy_host_remote_open(&slow, "h2", fy_rpc_server_addr(f->dst.srv),
                                         &f->key, 1500), 0);
    assert_int_equal(slow.ops->file_create(&slow, to), 0);
    ls.what = (struct fy_host_data){.kind = FY_HOST_DATA_FILE, .size = 3 * 4096 + 123};
    snprintf(ls.what.path, sizeof(ls.what.path), "%s", to);
    assert_int_equal(slow.ops->recv_start(&slow, &ls.what, "127.0.0.1", TIMEOUT_MS, &job,
                                          &ls.ep), 0);
    assert_non_null(job);
    assert_non_null(strstr(ls.ep.addr, "127.0.0.1:"));
    snprintf(ls.what.path, sizeof(ls.what.path), "%s", from);
    assert_int_equal(pthread_create(&tid, NULL, late_send_main, &ls), 0);
    int rc = slow.ops->recv_join(&slow, job, &st);
    pthread_join(tid, NULL);
    if (rc != 0)
        fail_msg("join: %s: %s", fy_errname(rc), fy_error_detail());
    assert_int_equal(ls.rc, 0);
    assert_true(st.verified);
    assert_int_equal(slow.ops->file_stat(&slow, to, &size), 0);
    assert_true(size == 3 * 4096 + 123);
    assert_true(files_equal(from, to));
    fy_host_remote_close(&slow);
}

/* A receiving end whose sender never comes is aborted at the far host;
 * its id is gone afterwards, and the caller's error detail is kept. */
static void test_host_rpc__recv_abort__ends_far_job_keeps_error_detail(void **state)
{
    struct fx *f = *state;
    struct fy_host *re = &f->dst.remote;
    struct fy_host_data what = {.kind = FY_HOST_DATA_FILE, .size = 4096};
    struct fy_host_endpoint ep;
    struct fy_host_recv *job = NULL;

    need_hosts(f);
    snprintf(what.path, sizeof(what.path), "%s/never-sent", f->dir);
    assert_int_equal(re->ops->file_create(re, what.path), 0);
    assert_int_equal(re->ops->recv_start(re, &what, "127.0.0.1", TIMEOUT_MS, &job, &ep), 0);
    fy_error(FY_E_IO, "the sender broke");
    re->ops->recv_abort(re, job);
    assert_string_equal(fy_error_detail(), "the sender broke");
    re->ops->recv_abort(re, NULL);
}

static void test_host_rpc__send_cancelled_before_start__nothing_sent(void **state)
{
    struct fx *f = *state;
    struct fy_host *re = &f->src.remote;
    struct fy_host_data what = {.kind = FY_HOST_DATA_MEMORY, .size = 4096};
    struct fy_host_endpoint ep = {.addr = "127.0.0.1:9"};
    volatile int cancel = 1;
    struct fy_host_send_params sp = {.cancel = &cancel};
    struct fy_host_send_result res;

    need_hosts(f);
    snprintf(what.vm, sizeof(what.vm), "vm1");
    assert_int_equal(re->ops->send(re, &what, &ep, &sp, &res), -FY_E_CANCELLED);
    assert_false(res.paused);
}

/* A send that fails at the far host answers its code and message. */
static void test_host_rpc__send_to_nobody__fails_with_far_code(void **state)
{
    struct fx *f = *state;
    struct fy_host *re = &f->src.remote;
    struct fy_host_data what = {.kind = FY_HOST_DATA_FILE, .size = 10};
    struct fy_host_endpoint ep = {.addr = "127.0.0.1:1"};
    struct fy_host_send_params sp = {.timeout_ms = 2000};
    struct fy_host_send_result res;
    int rc;

    need_hosts(f);
    snprintf(what.path, sizeof(what.path), "%s/cluster.key", f->dir);
    rc = re->ops->send(re, &what, &ep, &sp, &res);
    assert_true(rc < 0);
    assert_int_not_equal(rc, -FY_E_PROTO);
    assert_non_null(strstr(fy_error_detail(), "host h1: "));
    assert_false(res.paused);
}

/* ---- codecs ------------------------------------------------------------------- */

static void test_host_json__malformed_answer__proto_naming_member(void **state)
{
    struct fy_host_info hi;
    struct fy_host_endpoint ep;
    json_object *o = json_tokener_parse("{\"name\":\"h\",\"hypervisor\":7}");

    (void)state;
    assert_int_equal(fy_json_host_info_decode(o, &hi), -FY_E_PROTO);
    assert_non_null(strstr(fy_error_detail(), "hypervisor"));
    json_object_put(o);
    o = json_tokener_parse("{\"addr\":\"1.2.3.4:5\",\"session_id\":\"zz\"}");
    assert_int_equal(fy_json_host_endpoint_decode(o, &ep), -FY_E_PROTO);
    assert_non_null(strstr(fy_error_detail(), "session_id"));
    json_object_put(o);
}

static void test_host_json__stats_and_endpoint__round_trip(void **state)
{
    struct fy_migration_stats a = {
        .rounds = 3, .region_bytes = UINT64_MAX, .pages_sent = 5, .wire_bytes = 1ull << 40,
        .seconds = 1.25, .downtime = 0.1, .converged = true, .verified = true,
        .digest = {.lo = 0x0123456789abcdefull, .hi = UINT64_MAX - 1},
    }, b;
    struct fy_host_endpoint e = {.addr = "[::1]:4000"}, e2;
    json_object *o;

    (void)state;
    for (unsigned i = 0; i < sizeof(e.session_id); i++)
        e.session_id[i] = (uint8_t)(i * 17);
    o = fy_json_migration_stats_encode(&a);
    assert_int_equal(fy_json_migration_stats_decode(o, &b), 0);
    json_object_put(o);
    assert_true(b.region_bytes == UINT64_MAX && b.wire_bytes == a.wire_bytes);
    assert_true(b.digest.lo == a.digest.lo && b.digest.hi == a.digest.hi);
    assert_true(b.seconds == a.seconds && b.downtime == a.downtime);
    assert_true(b.converged && b.verified && b.rounds == 3);
    o = fy_json_host_endpoint_encode(&e);
    assert_int_equal(fy_json_host_endpoint_decode(o, &e2), 0);
    json_object_put(o);
    assert_string_equal(e2.addr, e.addr);
    assert_memory_equal(e2.session_id, e.session_id, sizeof(e.session_id));
}

static void test_host_json__stream_stats__round_trip(void **state)
{
    struct fy_host_stream_stats a = {
        .channels = 4, .parsed_all = false, .unparsed = "channel 2: version 7",
        .pages_sent = 1, .pages_dup = 2, .pages_dup_shared = 3, .pages_zero = 4,
        .pages_uncached = 5, .qemu_zero_pages = 6, .wire_bytes = 1ull << 40,
        .hv_transferred = UINT64_MAX, .hv_pages_normal = 7, .hv_pages_zero = 8,
        .hv_dirty_syncs = 9, .hv_seconds = 1.5, .hv_downtime = 0.025,
    }, b;
    json_object *o;

    (void)state;
    o = fy_json_host_stream_stats_encode(&a);
    assert_int_equal(fy_json_host_stream_stats_decode(o, &b), 0);
    json_object_put(o);
    assert_int_equal(b.channels, 4);
    assert_false(b.parsed_all);
    assert_string_equal(b.unparsed, a.unparsed);
    assert_true(b.pages_sent == 1 && b.pages_dup == 2 && b.pages_dup_shared == 3 &&
                b.pages_zero == 4 && b.pages_uncached == 5 && b.qemu_zero_pages == 6);
    assert_true(b.wire_bytes == a.wire_bytes && b.hv_transferred == UINT64_MAX);
    assert_true(b.hv_pages_normal == 7 && b.hv_pages_zero == 8 && b.hv_dirty_syncs == 9);
    assert_true(b.hv_seconds == 1.5 && b.hv_downtime == 0.025);
    /* A member missing is malformed. */
    o = fy_json_host_stream_stats_encode(&a);
    json_object_object_del(o, "wire_bytes");
    assert_int_equal(fy_json_host_stream_stats_decode(o, &b), -FY_E_PROTO);
    json_object_put(o);
}

static void test_host_json__send_params_hot_disks__round_trip_absent_when_none(void **state)
{
    struct fy_host_send_params a = {.streams = 2, .pause = true, .ndisks = 2}, b;
    json_object *o, *v;

    (void)state;
    snprintf(a.disks[0].addr, sizeof(a.disks[0].addr), "127.0.0.1:4001");
    snprintf(a.disks[1].addr, sizeof(a.disks[1].addr), "[::1]:4002");
    a.disks[1].session_id[15] = 0xab;
    o = fy_json_send_params_encode(&a);
    assert_int_equal(fy_json_send_params_decode(o, &b), 0);
    json_object_put(o);
    assert_int_equal(b.ndisks, 2);
    assert_string_equal(b.disks[0].addr, "127.0.0.1:4001");
    assert_string_equal(b.disks[1].addr, "[::1]:4002");
    assert_int_equal(b.disks[1].session_id[15], 0xab);
    /* Without hot disks the member is left out, as older agents send. */
    a.ndisks = 0;
    o = fy_json_send_params_encode(&a);
    assert_false(json_object_object_get_ex(o, "disks", &v));
    assert_int_equal(fy_json_send_params_decode(o, &b), 0);
    assert_int_equal(b.ndisks, 0);
    json_object_put(o);
}

int main(void)
{
#define F(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_json__malformed_answer__proto_naming_member),
        cmocka_unit_test(test_host_json__stats_and_endpoint__round_trip),
        cmocka_unit_test(test_host_json__send_params_hot_disks__round_trip_absent_when_none),
        cmocka_unit_test(test_host_json__stream_stats__round_trip),
        F(test_host_rpc__inventory__answers_as_the_local_call),
        F(test_host_rpc__lifecycle_and_device_state__act_at_the_far_host),
        F(test_host_rpc__files__created_sized_removed_at_the_far_host),
        F(test_host_rpc__file_digest__far_host_answers_as_local_call_region_digest),
        F(test_host_local__file_digest_rewritten__new_digest_else_cached),
        F(test_host_rpc__unknown_vm_at_far_host__notfound_with_its_message),
        F(test_host_rpc__wrong_key__open_refused_auth),
        F(test_host_rpc__closed_host__calls_fail_closed),
        F(test_host_rpc__recv_join_longer_than_timeout__kept_alive_by_progress),
        F(test_host_rpc__recv_abort__ends_far_job_keeps_error_detail),
        F(test_host_rpc__send_cancelled_before_start__nothing_sent),
        F(test_host_rpc__send_to_nobody__fails_with_far_code),
        F(test_host_rpc__live_to_remote_target__vm_runs_at_target_memory_identical),
        F(test_host_rpc__cold_to_remote_target__vm_runs_at_target_disk_identical),
        F(test_host_rpc__quick_to_remote_target__vm_runs_at_target_image_identical),
        F(test_host_rpc__live_from_remote_source__vm_runs_at_target_memory_identical),
        F(test_host_rpc__live_both_remote__vm_runs_at_target),
        cmocka_unit_test(test_host_rpc__live_fails_at_prepare_destination__source_keeps_vm),
        cmocka_unit_test(test_host_rpc__live_fails_after_transfer__source_resumed_target_cleaned),
    };
#undef F
    return cmocka_run_group_tests(tests, NULL, NULL);
}
