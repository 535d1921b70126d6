/* Unit tests of the migration workflow (controlplane/workflow.c): the
 * action queue (order, append, rollback, roll forward), the plan of each
 * kind, and live, cold and quick migrations between two hosts of the real
 * sim driver, completing and failing at every action, and through a host
 * implementation that wraps the local one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/controlplane/sim_helpers.h"

#include "controlplane/driver.h"
#include "controlplane/events.h"
#include "controlplane/host.h"
#include "controlplane/workflow.h"
#include "ferry/error.h"

/* ---- the engine, with actions that log what they do -------------------- */

struct log {
    char text[512];
    int fail_run;    /* index of the action (by order of running) to fail */
    int runs;
    int commit_at;   /* commit after this run (-1: never) */
};

static void logf_(struct log *l, const char *what, const char *name)
{
    size_t n = strlen(l->text);
    snprintf(l->text + n, sizeof(l->text) - n, "%s%s%s", n ? " " : "", what, name);
}

static int run_common(struct fy_workflow *wf, void *ctx, const char *name)
{
    struct log *l = ctx;
    int i = l->runs++;
    logf_(l, "", name);
    if (i == l->commit_at)
        fy_workflow_commit(wf);
    if (i == l->fail_run)
        return fy_error(FY_E_IO, "%s broke", name);
    return 0;
}

static int run_a(struct fy_workflow *wf, void *ctx) { return run_common(wf, ctx, "A"); }
static int run_b(struct fy_workflow *wf, void *ctx) { return run_common(wf, ctx, "B"); }
static int run_d(struct fy_workflow *wf, void *ctx) { return run_common(wf, ctx, "D"); }
static void undo_a(struct fy_workflow *wf, void *ctx) { (void)wf; logf_(ctx, "~", "A"); }
static void undo_b(struct fy_workflow *wf, void *ctx) { (void)wf; logf_(ctx, "~", "B"); }

static const struct fy_action ACT_D = {"D", run_d, NULL};

/* C appends D. */
static int run_c(struct fy_workflow *wf, void *ctx)
{
    int rc = run_common(wf, ctx, "C");
    if (rc == 0)
        rc = fy_workflow_append(wf, &ACT_D);
    return rc;
}

static const struct fy_action ACT_A = {"A", run_a, undo_a};
static const struct fy_action ACT_B = {"B", run_b, undo_b};
static const struct fy_action ACT_C = {"C", run_c, NULL};

static int run_queue(struct log *l)
{
    struct fy_workflow wf;
    fy_workflow_init(&wf, l);
    assert_int_equal(fy_workflow_append(&wf, &ACT_A), 0);
    assert_int_equal(fy_workflow_append(&wf, &ACT_C), 0);
    assert_int_equal(fy_workflow_append(&wf, &ACT_B), 0);
    return fy_workflow_run(&wf);
}

static void test_workflow__appended_action__runs_after_the_queue(void **state)
{
    struct log l = {.fail_run = -1, .commit_at = -1};
    (void)state;
    assert_int_equal(run_queue(&l), 0);
    assert_string_equal(l.text, "A C B D");
}

static void test_workflow__failure_before_commit__undoes_in_reverse_including_failed(void **state)
{
    struct log l = {.fail_run = 2, .commit_at = -1}; /* B fails */
    (void)state;
    assert_int_equal(run_queue(&l), -FY_E_IO);
    assert_string_equal(l.text, "A C B ~B ~A");
    assert_string_equal(fy_error_detail(), "B broke");
}

static void test_workflow__failure_after_commit__rolls_forward_returns_first_error(void **state)
{
    struct log l = {.fail_run = 2, .commit_at = 1}; /* C commits, B fails */
    (void)state;
    assert_int_equal(run_queue(&l), -FY_E_IO);
    assert_string_equal(l.text, "A C B D");
    assert_string_equal(fy_error_detail(), "B broke");
}

static void test_workflow__full_queue__append_refused(void **state)
{
    struct fy_workflow wf;
    (void)state;
    fy_workflow_init(&wf, NULL);
    for (unsigned i = 0; i < FY_WORKFLOW_MAX; i++)
        assert_int_equal(fy_workflow_append(&wf, &ACT_A), 0);
    assert_int_equal(fy_workflow_append(&wf, &ACT_A), -FY_E_TOOBIG);
}

/* ---- plans -------------------------------------------------------------- */

static void assert_plan(enum fy_migration_kind kind, const struct fy_plan_opts *o,
                        const char *want)
{
    const char *names[FY_WORKFLOW_MAX];
    char got[1024] = "";
    int n = fy_workflow_plan(kind, o, names, FY_WORKFLOW_MAX);

    assert_true(n > 0);
    for (int i = 0; i < n; i++) {
        size_t len = strlen(got);
        snprintf(got + len, sizeof(got) - len, "%s%s", i ? " " : "", names[i]);
    }
    assert_string_equal(got, want);
}

#define HEAD "InvokePrechecks SelectDestination CheckPermission CheckCompatibility "
#define HEAD_END "CreateInventoryVm ComputeSpec InvokeCallbacks "

static void test_workflow_plan__live_shared_storage__hot_tail(void **state)
{
    struct fy_plan_opts o = {0};
    (void)state;
    assert_plan(FY_MIG_LIVE, &o, HEAD HEAD_END
                "PrepareSource PrepareDestination InitiateDestination InitiateSource "
                "SwitchHostAndPool CompleteSource CompleteDestination");
}

static void test_workflow_plan__live_moving_disks__reserves_and_creates_disks(void **state)
{
    struct fy_plan_opts o = {.move_disks = true};
    (void)state;
    assert_plan(FY_MIG_LIVE, &o, HEAD "ReserveDirectory " HEAD_END
                "CreateDummyDisks CreateDestinationVm RelayoutSnapshots "
                "PrepareSource PrepareDestination InitiateDestination InitiateSource "
                "SwitchHostAndPool CompleteSource CompleteDestination");
}

static void test_workflow_plan__cold_running_moving_disks__stops_copies_starts(void **state)
{
    struct fy_plan_opts o = {.move_disks = true, .was_running = true};
    (void)state;
    assert_plan(FY_MIG_COLD, &o, HEAD "ReserveDirectory " HEAD_END
                "PowerOffSourceVm UnregisterSourceVm SwitchHostAndPool CreateDestinationVm "
                "RelaySnapshot ReconfigureVm PowerOnDestinationVm");
}

static void test_workflow_plan__cold_stopped_shared_storage__registers(void **state)
{
    struct fy_plan_opts o = {0};
    (void)state;
    assert_plan(FY_MIG_COLD, &o, HEAD HEAD_END
                "UnregisterSourceVm SwitchHostAndPool RegisterDestinationVm ReconfigureVm "
                "RelayoutSnapshot");
}

static void test_workflow_plan__quick__suspends_moves_restores(void **state)
{
    struct fy_plan_opts o = {.move_disks = true};
    (void)state;
    assert_plan(FY_MIG_QUICK, &o, HEAD "ReserveDirectory " HEAD_END
                "SuspendSourceVm UnregisterSourceVm SwitchHostAndPool CreateDestinationVm "
                "RestoreDestinationVm CompleteSource CompleteDestination");
}

static void test_workflow_plan__quick_ram_direct__placeholder_then_pause_then_memory(
    void **state)
{
    struct fy_plan_opts o = {.ram_direct = true};
    (void)state;
    assert_plan(FY_MIG_QUICK, &o, HEAD HEAD_END
                "PrepareDestination InitiateDestination SuspendSourceVm InitiateSource "
                "SwitchHostAndPool CompleteSource CompleteDestination");
}

static void test_workflow_plan__quick_ram_direct_moving_disks__disks_before_placeholder(
    void **state)
{
    struct fy_plan_opts o = {.ram_direct = true, .move_disks = true};
    (void)state;
    assert_plan(FY_MIG_QUICK, &o, HEAD "ReserveDirectory " HEAD_END
                "SuspendSourceVm CreateDummyDisks RelocateDisks CreateDestinationVm "
                "PrepareDestination InitiateDestination InitiateSource "
                "SwitchHostAndPool CompleteSource CompleteDestination");
}

static void test_workflow_plan__bulk__unsupported(void **state)
{
    const char *names[4];
    (void)state;
    assert_int_equal(fy_workflow_plan(FY_MIG_BULK, NULL, names, 4), -FY_E_UNSUPPORTED);
}

/* ---- migrations over the sim driver ------------------------------------- */

struct sim {
    char dir[64];
    char src_state[96], dst_state[96], db[96];
    struct fy_driver_handle src_drv, dst_drv;
    struct fy_host src, dst;
    struct fy_store *store;
    char actions[FY_WORKFLOW_MAX][32];
    unsigned nactions;
    /* Checks made while the migration runs, at the named action. */
    const char *check_at;
    bool checked, identical;
};

static int sim_setup(void **state)
{
    struct sim *s = calloc(1, sizeof(*s));
    char cfg[160];
    int rc;

    snprintf(s->dir, sizeof(s->dir), "/tmp/ferry-wf-XXXXXX");
    if (!mkdtemp(s->dir))
        return -1;
    snprintf(s->src_state, sizeof(s->src_state), "%s/h1", s->dir);
    snprintf(s->dst_state, sizeof(s->dst_state), "%s/h2", s->dir);
    snprintf(s->db, sizeof(s->db), "%s/ferry.db", s->dir);
    snprintf(cfg, sizeof(cfg), "state=%s;seed-vm=1", s->src_state);
    rc = fy_driver_open(FY_TEST_DRIVERS_DIR, "sim", cfg, &s->src_drv);
    if (rc == 0) {
        snprintf(cfg, sizeof(cfg), "state=%s", s->dst_state);
        rc = fy_driver_open(FY_TEST_DRIVERS_DIR, "sim", cfg, &s->dst_drv);
    }
    fy_host_local_init(&s->src, "h1", &s->src_drv);
    fy_host_local_init(&s->dst, "h2", &s->dst_drv);
    if (rc == 0)
        rc = fy_store_open(s->db, &s->store);
    if (rc < 0)
        fprintf(stderr, "sim driver not available (%s)\n", fy_error_detail());
    *state = s;
    return 0;
}

static int sim_teardown(void **state)
{
    struct sim *s = *state;
    fy_driver_close(&s->src_drv);
    fy_driver_close(&s->dst_drv);
    fy_store_close(s->store);
    rm_rf(s->dir);
    free(s);
    return 0;
}

static void need_sim(struct sim *s)
{
    if (!s->src_drv.ops || !s->dst_drv.ops || !s->store) {
        print_message("skipped: the sim driver (ferry-sim.so in %s) could not be "
                      "opened\n", FY_TEST_DRIVERS_DIR);
        skip();
    }
}

static void mem_file(const char *state_dir, char *out, size_t len)
{
    snprintf(out, len, "%s/vms/vm1.mem", state_dir);
}

/* The path of host h's first datastore. */
static void on_action(const char *name, void *ctx)
{
    struct sim *s = ctx;
    if (s->nactions < FY_WORKFLOW_MAX)
        snprintf(s->actions[s->nactions++], sizeof(s->actions[0]), "%s", name);
    if (s->check_at && strcmp(name, s->check_at) == 0) {
        char a[FY_PATH_MAX + 32], b[FY_PATH_MAX + 32];
        s->checked = true;
        if (strcmp(name, "SwitchHostAndPool") == 0) {
            /* Live: the source is paused after the final round, the target
             * holds what it received and has not run yet. */
            mem_file(s->src_state, a, sizeof(a));
            mem_file(s->dst_state, b, sizeof(b));
        } else if (strcmp(name, "ReconfigureVm") == 0) {
            /* Cold: the disk image at both ends, before the source's goes. */
            char da[FY_PATH_MAX], db[FY_PATH_MAX];
            ds_path(&s->src, da, sizeof(da));
            ds_path(&s->dst, db, sizeof(db));
            snprintf(a, sizeof(a), "%s/vm1-vda.img", da);
            snprintf(b, sizeof(b), "%s/vm1-vda.img", db);
        } else {
            /* Quick: the saved state at the source and what arrived. */
            char da[FY_PATH_MAX], db[FY_PATH_MAX];
            ds_path(&s->src, da, sizeof(da));
            ds_path(&s->dst, db, sizeof(db));
            snprintf(a, sizeof(a), "%s/vm1.ferry-1.save", da);
            snprintf(b, sizeof(b), "%s/vm1.ferry-1.restore", db);
        }
        s->identical = files_equal(a, b);
    }
}

static struct fy_migration_request request(struct sim *s, enum fy_migration_kind kind)
{
    struct fy_migration_request r = {
        .kind = kind, .vm = "vm1", .streams = 2, .timeout_ms = 20000,
        .on_action = on_action, .ctx = s,
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

static void assert_at_target_running(struct sim *s)
{
    enum fy_power p = FY_POWER_OFF;
    assert_int_equal(power_at(&s->dst, &p), 0);
    assert_int_equal(p, FY_POWER_RUNNING);
    assert_int_equal(power_at(&s->src, &p), -FY_E_NOTFOUND);
}

static bool events_have(struct sim *s, int64_t id, const char *text)
{
    struct fy_event *ev = NULL;
    size_t n = 0;
    bool found = false;

    assert_int_equal(fy_store_events_list(s->store, id, &ev, &n), 0);
    for (size_t i = 0; i < n; i++)
        if (strstr(ev[i].text, text))
            found = true;
    free(ev);
    return found;
}

static void dump_events(struct sim *s, int64_t id)
{
    struct fy_event *ev = NULL;
    size_t n = 0;
    if (fy_store_events_list(s->store, id, &ev, &n) < 0)
        return;
    for (size_t i = 0; i < n; i++)
        print_message("  %2u %-10s %-6s %s\n", ev[i].task,
                      fy_event_category_name(ev[i].category),
                      fy_event_side_name(ev[i].side), ev[i].text);
    free(ev);
}

static void migrate_ok(struct sim *s, struct fy_migration_request *r, int64_t *id)
{
    int rc = fy_migrate(r, &s->src, &s->dst, s->store, id);
    if (rc != 0) {
        dump_events(s, *id);
        fail_msg("migration failed: %s: %s", fy_errname(rc), fy_error_detail());
    }
}

static void assert_plan_ran(struct sim *s, enum fy_migration_kind kind,
                            const struct fy_plan_opts *o)
{
    const char *names[FY_WORKFLOW_MAX];
    int n = fy_workflow_plan(kind, o, names, FY_WORKFLOW_MAX);
    assert_int_equal((unsigned)n, s->nactions);
    for (int i = 0; i < n; i++)
        assert_string_equal(s->actions[i], names[i]);
}

static void test_migrate_sim__live__vm_runs_at_target_memory_identical(void **state)
{
    struct sim *s = *state;
    struct fy_migration_record rec;
    struct fy_plan_opts o = {.move_disks = true, .was_running = true};
    int64_t id = 0;

    need_sim(s);
    struct fy_migration_request r = request(s, FY_MIG_LIVE);
    s->check_at = "SwitchHostAndPool";
    migrate_ok(s, &r, &id);
    assert_true(s->checked);
    assert_true(s->identical);
    assert_at_target_running(s);
    assert_plan_ran(s, FY_MIG_LIVE, &o);
    assert_int_equal(fy_store_migration_get(s->store, id, &rec), 0);
    assert_int_equal(rec.state, FY_MIG_SUCCEEDED);
    assert_true(rec.verified);
    assert_true(rec.wire_bytes > 0);
    assert_non_null(strstr(rec.net[FY_DATA_MEMORY], "127.0.0.1"));
    assert_true(events_have(s, id, "Creating placeholder VM at target side"));
    assert_true(events_have(s, id, "Migration concurrency lock released"));
    assert_true(events_have(s, id, "Migration completed"));
    int64_t h = -1;
    assert_int_equal(fy_store_lock_holder(s->store, "vm1", &h), 0);
    assert_int_equal(h, 0);
}

static void test_migrate_sim__cold__vm_runs_at_target_disk_identical(void **state)
{
    struct sim *s = *state;
    struct fy_migration_record rec;
    struct fy_plan_opts o = {.move_disks = true, .was_running = true};
    char a[FY_PATH_MAX + 16], b[FY_PATH_MAX + 16], da[FY_PATH_MAX], db[FY_PATH_MAX];
    int64_t id = 0;

    need_sim(s);
    ds_path(&s->src, da, sizeof(da));
    ds_path(&s->dst, db, sizeof(db));
    snprintf(a, sizeof(a), "%s/vm1-vda.img", da);
    snprintf(b, sizeof(b), "%s/vm1-vda.img", db);
    struct fy_migration_request r = request(s, FY_MIG_COLD);
    /* Compared when both exist: the source image is removed once the VM is
     * the target's (the VM is off during a cold move: stable). */
    s->check_at = "ReconfigureVm";
    migrate_ok(s, &r, &id);
    assert_true(s->checked);
    assert_true(s->identical);
    assert_at_target_running(s);
    assert_plan_ran(s, FY_MIG_COLD, &o);
    assert_int_not_equal(access(a, F_OK), 0); /* moved: gone at the source */
    (void)b;
    assert_int_equal(fy_store_migration_get(s->store, id, &rec), 0);
    assert_int_equal(rec.state, FY_MIG_SUCCEEDED);
    assert_non_null(strstr(rec.net[FY_DATA_DISKS_COLD], "management 127.0.0.1"));
    assert_true(events_have(s, id, "Power On initiated on target VM"));
}

static void test_migrate_sim__quick__vm_runs_at_target_image_identical(void **state)
{
    struct sim *s = *state;
    struct fy_plan_opts o = {.move_disks = true, .was_running = true};
    int64_t id = 0;

    need_sim(s);
    struct fy_migration_request r = request(s, FY_MIG_QUICK);
    s->check_at = "RestoreDestinationVm";
    migrate_ok(s, &r, &id);
    assert_true(s->checked);
    assert_true(s->identical);
    assert_at_target_running(s);
    assert_plan_ran(s, FY_MIG_QUICK, &o);
    assert_true(events_have(s, id, "saved-state image"));
}

static void test_migrate_sim__vm_locked_by_another__busy_nothing_moves(void **state)
{
    struct sim *s = *state;
    enum fy_power p;
    int64_t id = 0;

    need_sim(s);
    assert_int_equal(fy_store_lock_vm(s->store, "vm1", 4242), 0);
    struct fy_migration_request r = request(s, FY_MIG_LIVE);
    assert_int_equal(fy_migrate(&r, &s->src, &s->dst, s->store, &id), -FY_E_BUSY);
    assert_non_null(strstr(fy_error_detail(), "4242"));
    assert_int_equal(s->nactions, 0);
    assert_int_equal(power_at(&s->src, &p), 0);
    assert_int_equal(p, FY_POWER_RUNNING);
}

static void test_migrate_sim__cancelled__rolled_back_state_cancelled(void **state)
{
    struct sim *s = *state;
    struct fy_migration_record rec;
    enum fy_power p;
    int64_t id = 0;

    need_sim(s);
    struct fy_migration_request r = request(s, FY_MIG_COLD);
    r.cancel = 1;
    assert_int_equal(fy_migrate(&r, &s->src, &s->dst, s->store, &id), -FY_E_CANCELLED);
    assert_int_equal(fy_store_migration_get(s->store, id, &rec), 0);
    assert_int_equal(rec.state, FY_MIG_CANCELLED);
    assert_int_equal(power_at(&s->src, &p), 0);
    assert_int_equal(p, FY_POWER_RUNNING);
}

/* Stream mode (FY_DRV_STREAM): the sim driver has none, so asking for it
 * is refused before anything moves; auto and ram-direct use the engine. */
static void test_migrate_sim__live_mode_stream_without_driver_support__refused_vm_stays(
    void **state)
{
    struct sim *s = *state;
    struct fy_migration_record rec;
    enum fy_power p;
    int64_t id = 0;

    need_sim(s);
    struct fy_migration_request r = request(s, FY_MIG_LIVE);
    r.mode = FY_LIVE_STREAM;
    assert_int_equal(fy_migrate(&r, &s->src, &s->dst, s->store, &id), -FY_E_UNSUPPORTED);
    assert_non_null(strstr(fy_error_detail(), "no stream mode"));
    assert_int_equal(fy_store_migration_get(s->store, id, &rec), 0);
    assert_int_equal(rec.state, FY_MIG_ROLLED_BACK);
    assert_non_null(strstr(rec.error, "CheckCompatibility"));
    assert_int_equal(power_at(&s->src, &p), 0);
    assert_int_equal(p, FY_POWER_RUNNING);
    assert_int_equal(power_at(&s->dst, &p), -FY_E_NOTFOUND);
}

static void test_migrate_sim__live_mode_ram_direct__engine_moves_memory(void **state)
{
    struct sim *s = *state;
    int64_t id = 0;

    need_sim(s);
    struct fy_migration_request r = request(s, FY_MIG_LIVE);
    r.mode = FY_LIVE_RAM_DIRECT;
    migrate_ok(s, &r, &id);
    assert_at_target_running(s);
    assert_true(events_have(s, id, "Memory transferred in"));
    assert_false(events_have(s, id, "Stream mode"));
}

static void test_live_mode__names__parse_back(void **state)
{
    enum fy_live_mode m = FY_LIVE_AUTO;

    (void)state;
    for (int i = FY_LIVE_AUTO; i <= FY_LIVE_RAM_DIRECT; i++) {
        assert_int_equal(fy_live_mode_parse(fy_live_mode_name((enum fy_live_mode)i), &m), 0);
        assert_int_equal(m, i);
    }
    assert_string_equal(fy_live_mode_name(FY_LIVE_STREAM), "stream");
    assert_string_equal(fy_live_mode_name(FY_LIVE_RAM_DIRECT), "ram-direct");
    assert_int_equal(fy_live_mode_parse("rdma", &m), -1);
    assert_int_equal(fy_live_mode_parse(NULL, &m), -1);
}

/* ---- a host implementation wrapping the local one ----------------------- */

/* Forwards every operation to the local host it wraps and counts the
 * calls.  The wrapping host has no driver of its own, so a migration
 * between two of them that succeeds did everything through the ops table. */
#define HOST_OPS(X)                                                              \
    X(host_info) X(vm_info) X(capabilities) X(memory_info) X(vm_export)          \
    X(vm_define) X(vm_undefine) X(vm_start) X(vm_stop) X(vm_pause) X(vm_resume)  \
    X(incoming_prepare) X(vm_suspend) X(vm_restore) X(dirty_log_start)           \
    X(dirty_log_stop) X(device_state_save) X(device_state_load) X(file_create)   \
    X(file_remove) X(file_stat) X(recv_start) X(recv_join) X(recv_abort) X(send)

enum counted_op {
#define ENUM_(op) OP_##op,
    HOST_OPS(ENUM_)
#undef ENUM_
    OP__COUNT
};

struct counting {
    struct fy_host *inner;
    unsigned calls[OP__COUNT];
};

#define INNER(h) (((struct counting *)(h)->impl)->inner)
#define COUNTED(h, op) (((struct counting *)(h)->impl)->calls[OP_##op]++, INNER(h))

static int c_host_info(struct fy_host *h, struct fy_host_info *out)
{
    struct fy_host *in = COUNTED(h, host_info);
    return in->ops->host_info(in, out);
}

static int c_vm_info(struct fy_host *h, const char *vm, struct fy_vm_info *out)
{
    struct fy_host *in = COUNTED(h, vm_info);
    return in->ops->vm_info(in, vm, out);
}

static int c_capabilities(struct fy_host *h, struct fy_host_caps *out)
{
    struct fy_host *in = COUNTED(h, capabilities);
    return in->ops->capabilities(in, out);
}

static int c_memory_info(struct fy_host *h, const char *vm, struct fy_host_memory *out)
{
    struct fy_host *in = COUNTED(h, memory_info);
    return in->ops->memory_info(in, vm, out);
}

static int c_vm_export(struct fy_host *h, const char *vm, char **out)
{
    struct fy_host *in = COUNTED(h, vm_export);
    return in->ops->vm_export(in, vm, out);
}

static int c_vm_define(struct fy_host *h, const char *config, const char *name,
                       const char *const *paths, unsigned n)
{
    struct fy_host *in = COUNTED(h, vm_define);
    return in->ops->vm_define(in, config, name, paths, n);
}

static int c_vm_undefine(struct fy_host *h, const char *vm)
{
    struct fy_host *in = COUNTED(h, vm_undefine);
    return in->ops->vm_undefine(in, vm);
}

static int c_vm_start(struct fy_host *h, const char *vm)
{
    struct fy_host *in = COUNTED(h, vm_start);
    return in->ops->vm_start(in, vm);
}

static int c_vm_stop(struct fy_host *h, const char *vm, bool force)
{
    struct fy_host *in = COUNTED(h, vm_stop);
    return in->ops->vm_stop(in, vm, force);
}

static int c_vm_pause(struct fy_host *h, const char *vm)
{
    struct fy_host *in = COUNTED(h, vm_pause);
    return in->ops->vm_pause(in, vm);
}

static int c_vm_resume(struct fy_host *h, const char *vm)
{
    struct fy_host *in = COUNTED(h, vm_resume);
    return in->ops->vm_resume(in, vm);
}

static int c_incoming_prepare(struct fy_host *h, const char *config, const char *vm)
{
    struct fy_host *in = COUNTED(h, incoming_prepare);
    return in->ops->incoming_prepare(in, config, vm);
}

static int c_vm_suspend(struct fy_host *h, const char *vm, const char *image)
{
    struct fy_host *in = COUNTED(h, vm_suspend);
    return in->ops->vm_suspend(in, vm, image);
}

static int c_vm_restore(struct fy_host *h, const char *vm, const char *image)
{
    struct fy_host *in = COUNTED(h, vm_restore);
    return in->ops->vm_restore(in, vm, image);
}

static int c_dirty_log_start(struct fy_host *h, const char *vm)
{
    struct fy_host *in = COUNTED(h, dirty_log_start);
    return in->ops->dirty_log_start(in, vm);
}

static int c_dirty_log_stop(struct fy_host *h, const char *vm)
{
    struct fy_host *in = COUNTED(h, dirty_log_stop);
    return in->ops->dirty_log_stop(in, vm);
}

static int c_device_state_save(struct fy_host *h, const char *vm, void **out, size_t *len)
{
    struct fy_host *in = COUNTED(h, device_state_save);
    return in->ops->device_state_save(in, vm, out, len);
}

static int c_device_state_load(struct fy_host *h, const char *vm, const void *state,
                               size_t len)
{
    struct fy_host *in = COUNTED(h, device_state_load);
    return in->ops->device_state_load(in, vm, state, len);
}

static int c_file_create(struct fy_host *h, const char *path)
{
    struct fy_host *in = COUNTED(h, file_create);
    return in->ops->file_create(in, path);
}

static int c_file_remove(struct fy_host *h, const char *path)
{
    struct fy_host *in = COUNTED(h, file_remove);
    return in->ops->file_remove(in, path);
}

static int c_file_stat(struct fy_host *h, const char *path, uint64_t *size)
{
    struct fy_host *in = COUNTED(h, file_stat);
    return in->ops->file_stat(in, path, size);
}

static int c_recv_start(struct fy_host *h, const struct fy_host_data *what,
                        const char *addr, int timeout_ms, struct fy_host_recv **job,
                        struct fy_host_endpoint *ep)
{
    struct fy_host *in = COUNTED(h, recv_start);
    return in->ops->recv_start(in, what, addr, timeout_ms, job, ep);
}

static int c_recv_join(struct fy_host *h, struct fy_host_recv *job,
                       struct fy_migration_stats *st)
{
    struct fy_host *in = COUNTED(h, recv_join);
    return in->ops->recv_join(in, job, st);
}

static void c_recv_abort(struct fy_host *h, struct fy_host_recv *job)
{
    struct fy_host *in = COUNTED(h, recv_abort);
    in->ops->recv_abort(in, job);
}

static int c_send(struct fy_host *h, const struct fy_host_data *what,
                  const struct fy_host_endpoint *to, const struct fy_host_send_params *p,
                  struct fy_host_send_result *out)
{
    struct fy_host *in = COUNTED(h, send);
    return in->ops->send(in, what, to, p, out);
}

static const struct fy_host_ops counting_ops = {
    .name = "counting",
#define FIELD_(op) .op = c_##op,
    HOST_OPS(FIELD_)
#undef FIELD_
};

/* Migrates vm1 between hosts wrapping s->src and s->dst; cs and cd count
 * what each saw. */
static void migrate_counted(struct sim *s, enum fy_migration_kind kind,
                            struct counting *cs, struct counting *cd)
{
    struct fy_host src = {.name = "h1", .ops = &counting_ops, .impl = cs};
    struct fy_host dst = {.name = "h2", .ops = &counting_ops, .impl = cd};
    struct fy_migration_request r = request(s, kind);
    int64_t id = 0;
    int rc;

    memset(cs, 0, sizeof(*cs));
    memset(cd, 0, sizeof(*cd));
    cs->inner = &s->src;
    cd->inner = &s->dst;
    rc = fy_migrate(&r, &src, &dst, s->store, &id);
    if (rc != 0) {
        dump_events(s, id);
        fail_msg("migration failed: %s: %s", fy_errname(rc), fy_error_detail());
    }
    assert_at_target_running(s);
    /* Both inventories were read; data went from the source to the
     * target only, each receiving end ended by a join. */
    assert_true(cs->calls[OP_host_info] > 0 && cd->calls[OP_host_info] > 0);
    assert_true(cs->calls[OP_capabilities] > 0 && cd->calls[OP_capabilities] > 0);
    assert_true(cs->calls[OP_vm_info] > 0);
    assert_true(cs->calls[OP_vm_export] > 0);
    assert_true(cd->calls[OP_recv_start] > 0);
    assert_int_equal(cd->calls[OP_recv_join], cd->calls[OP_recv_start]);
    assert_int_equal(cs->calls[OP_send], cd->calls[OP_recv_start]);
    assert_int_equal(cd->calls[OP_recv_abort], 0);
    assert_int_equal(cs->calls[OP_recv_start], 0);
    assert_int_equal(cd->calls[OP_send], 0);
    assert_int_equal(cs->calls[OP_file_create], 0);
}

static void test_migrate_counted__live__every_host_call_goes_through_the_ops(void **state)
{
    struct sim *s = *state;
    struct counting cs, cd;

    need_sim(s);
    migrate_counted(s, FY_MIG_LIVE, &cs, &cd);
    assert_int_equal(cs.calls[OP_memory_info], 1);
    assert_int_equal(cd.calls[OP_memory_info], 1);
    assert_int_equal(cd.calls[OP_incoming_prepare], 1);
    assert_int_equal(cs.calls[OP_dirty_log_start], 1);
    assert_int_equal(cs.calls[OP_dirty_log_stop], 1);
    /* The device state moves agent to agent (a send of its own), not
     * through the workflow's hands. */
    assert_int_equal(cs.calls[OP_device_state_save], 0);
    assert_int_equal(cd.calls[OP_device_state_load], 0);
    assert_int_equal(cd.calls[OP_vm_resume], 1);
    assert_int_equal(cs.calls[OP_vm_undefine], 1);
    /* The memory region, the disk (sim VMs have one of each), the device
     * state. */
    assert_true(cd.calls[OP_recv_start] >= 3);
    assert_true(cd.calls[OP_file_create] >= 1);
}

static void test_migrate_counted__cold__every_host_call_goes_through_the_ops(void **state)
{
    struct sim *s = *state;
    struct counting cs, cd;

    need_sim(s);
    migrate_counted(s, FY_MIG_COLD, &cs, &cd);
    assert_int_equal(cs.calls[OP_vm_stop], 1);
    assert_int_equal(cs.calls[OP_vm_undefine], 1);
    assert_int_equal(cd.calls[OP_vm_define], 1);
    assert_int_equal(cd.calls[OP_vm_start], 1);
    assert_true(cs.calls[OP_file_stat] >= 1);
    assert_true(cd.calls[OP_file_create] >= 1);
    assert_int_equal(cs.calls[OP_memory_info] + cd.calls[OP_memory_info], 0);
}

static void test_migrate_counted__quick__every_host_call_goes_through_the_ops(void **state)
{
    struct sim *s = *state;
    struct counting cs, cd;

    need_sim(s);
    migrate_counted(s, FY_MIG_QUICK, &cs, &cd);
    assert_int_equal(cs.calls[OP_vm_suspend], 1);
    assert_int_equal(cd.calls[OP_vm_restore], 1);
    assert_int_equal(cd.calls[OP_vm_define], 1);
    /* Source: the saved image and the moved disk; target: its image. */
    assert_int_equal(cs.calls[OP_file_remove], 2);
    assert_int_equal(cd.calls[OP_file_remove], 1);
    /* The saved state and the disk. */
    assert_true(cd.calls[OP_recv_start] >= 2);
}

/* The workload of a running VM changes its memory file. */
static bool workload_runs(const char *state_dir)
{
    char path[200];
    struct stat st;
    mem_file(state_dir, path, sizeof(path));
    if (stat(path, &st) != 0)
        return false;
    size_t len = (size_t)st.st_size;
    char *a = malloc(len), *b = malloc(len);
    FILE *f = fopen(path, "rb");
    bool ok = a && b && f && fread(a, 1, len, f) == len;
    if (f)
        fclose(f);
    usleep(200 * 1000);
    f = fopen(path, "rb");
    ok = ok && f && fread(b, 1, len, f) == len && memcmp(a, b, len) != 0;
    if (f)
        fclose(f);
    free(a);
    free(b);
    return ok;
}

/* Fails each action of 'kind' in turn on a fresh pair of hosts. */
static void fail_every_action(enum fy_migration_kind kind, const char *commit_action)
{
    struct fy_plan_opts o = {.move_disks = true, .was_running = true};
    const char *names[FY_WORKFLOW_MAX];
    int n = fy_workflow_plan(kind, &o, names, FY_WORKFLOW_MAX);
    bool after_commit = false;

    assert_true(n > 0);
    for (int i = 0; i < n; i++) {
        void *st = NULL;
        struct sim *s;
        struct fy_migration_record rec;
        enum fy_power p = FY_POWER_OFF;
        char disk[FY_PATH_MAX + 16], before[200], failed[96], da[FY_PATH_MAX];
        int64_t id = 0;
        int rc;

        assert_int_equal(sim_setup(&st), 0);
        s = st;
        need_sim(s);
        ds_path(&s->src, da, sizeof(da));
        snprintf(disk, sizeof(disk), "%s/vm1-vda.img", da);
        snprintf(before, sizeof(before), "%s/disk-before", s->dir);
        char cmd[1024];
        snprintf(cmd, sizeof(cmd), "cp --sparse=always '%s' '%s'", disk, before);
        assert_int_equal(system(cmd), 0);

        struct fy_migration_request r = request(s, kind);
        r.fail_at = names[i];
        rc = fy_migrate(&r, &s->src, &s->dst, s->store, &id);
        if (rc != -FY_E_IO || !strstr(fy_error_detail(), "injected failure")) {
            dump_events(s, id);
            fail_msg("%s fail_at=%s: got %s (%s)", fy_migration_kind_name(kind), names[i],
                     fy_errname(rc), fy_error_detail());
        }
        snprintf(failed, sizeof(failed), "%s failed: injected failure", names[i]);
        if (!events_have(s, id, failed)) {
            dump_events(s, id);
            fail_msg("no event \"%s\"", failed);
        }
        assert_int_equal(fy_store_migration_get(s->store, id, &rec), 0);
        if (!after_commit) {
            if (rec.state != FY_MIG_ROLLED_BACK || power_at(&s->src, &p) != 0 ||
                p != FY_POWER_RUNNING || power_at(&s->dst, &p) != -FY_E_NOTFOUND) {
                dump_events(s, id);
                fail_msg("%s fail_at=%s: state %s, not back at the source running alone",
                         fy_migration_kind_name(kind), names[i], fy_mig_state_name(rec.state));
            }
            if (!workload_runs(s->src_state))
                fail_msg("%s fail_at=%s: the source's workload does not run",
                         fy_migration_kind_name(kind), names[i]);
            if (!files_equal(disk, before))
                fail_msg("%s fail_at=%s: the source's disk changed",
                         fy_migration_kind_name(kind), names[i]);
        } else {
            assert_int_equal(rec.state, FY_MIG_FAILED);
            assert_int_equal(power_at(&s->dst, &p), 0);
        }
        assert_true(events_have(s, id, "Migration concurrency lock released"));
        if (strcmp(names[i], commit_action) == 0)
            after_commit = true;
        sim_teardown(&st);
    }
}

static void test_migrate_sim__live_fails_at_each_action__source_keeps_vm(void **state)
{
    (void)state;
    fail_every_action(FY_MIG_LIVE, "SwitchHostAndPool");
}

static void test_migrate_sim__cold_fails_at_each_action__source_keeps_vm(void **state)
{
    (void)state;
    fail_every_action(FY_MIG_COLD, "ReconfigureVm");
}

static void test_migrate_sim__quick_fails_at_each_action__source_keeps_vm(void **state)
{
    (void)state;
    fail_every_action(FY_MIG_QUICK, "RestoreDestinationVm");
}

int main(void)
{
#define S(fn) cmocka_unit_test_setup_teardown(fn, sim_setup, sim_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_workflow__appended_action__runs_after_the_queue),
        cmocka_unit_test(test_workflow__failure_before_commit__undoes_in_reverse_including_failed),
        cmocka_unit_test(test_workflow__failure_after_commit__rolls_forward_returns_first_error),
        cmocka_unit_test(test_workflow__full_queue__append_refused),
        cmocka_unit_test(test_workflow_plan__live_shared_storage__hot_tail),
        cmocka_unit_test(test_workflow_plan__live_moving_disks__reserves_and_creates_disks),
        cmocka_unit_test(test_workflow_plan__cold_running_moving_disks__stops_copies_starts),
        cmocka_unit_test(test_workflow_plan__cold_stopped_shared_storage__registers),
        cmocka_unit_test(test_workflow_plan__quick__suspends_moves_restores),
        cmocka_unit_test(test_workflow_plan__quick_ram_direct__placeholder_then_pause_then_memory),
        cmocka_unit_test(
            test_workflow_plan__quick_ram_direct_moving_disks__disks_before_placeholder),
        cmocka_unit_test(test_workflow_plan__bulk__unsupported),
        S(test_migrate_sim__live__vm_runs_at_target_memory_identical),
        S(test_migrate_sim__cold__vm_runs_at_target_disk_identical),
        S(test_migrate_sim__quick__vm_runs_at_target_image_identical),
        S(test_migrate_sim__vm_locked_by_another__busy_nothing_moves),
        S(test_migrate_sim__cancelled__rolled_back_state_cancelled),
        S(test_migrate_sim__live_mode_stream_without_driver_support__refused_vm_stays),
        S(test_migrate_sim__live_mode_ram_direct__engine_moves_memory),
        cmocka_unit_test(test_live_mode__names__parse_back),
        S(test_migrate_counted__live__every_host_call_goes_through_the_ops),
        S(test_migrate_counted__cold__every_host_call_goes_through_the_ops),
        S(test_migrate_counted__quick__every_host_call_goes_through_the_ops),
        cmocka_unit_test(test_migrate_sim__live_fails_at_each_action__source_keeps_vm),
        cmocka_unit_test(test_migrate_sim__cold_fails_at_each_action__source_keeps_vm),
        cmocka_unit_test(test_migrate_sim__quick_fails_at_each_action__source_keeps_vm),
    };
#undef S
    return cmocka_run_group_tests(tests, NULL, NULL);
}
