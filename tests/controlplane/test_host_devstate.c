/* Unit tests of a VM's device state on the dataplane (host.h:
 * FY_HOST_DATA_DEVICE_STATE, controlplane/host_devstate.c): two sim hosts
 * in this process, each also served by an RPC server on loopback and
 * reached as a remote host.  The sim's own device state is 48 bytes, so
 * both hosts' driver tables are wrapped here: the state saved is the
 * sim's followed by 'pad' bytes of a pattern, which the load checks and
 * strips before the sim loads the rest (and fails on demand).  A state of
 * 3 MiB is three times the control API's message limit: it crosses only
 * on the dataplane. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include <cmocka.h>

#include "tests/controlplane/sim_helpers.h"

#include "controlplane/driver.h"
#include "controlplane/events.h"
#include "controlplane/host.h"
#include "controlplane/host_rpc.h"
#include "controlplane/workflow.h"
#include "ferry/error.h"

#define KEY "host-devstate-test-key-0123456789"
#define TIMEOUT_MS 20000
#define BIG (3u << 20)

/* ---- the wrapped sim -------------------------------------------------------- */

static const struct fy_driver_ops *sim;
static struct fy_driver_ops wrapped;
static struct {
    size_t pad;        /* bytes added to the sim's state */
    bool fail_load;    /* the load refuses */
    unsigned loads;    /* loads that succeeded */
    size_t loaded_len; /* the last one's length, as received */
} ds;

static uint8_t pattern(size_t i)
{
    return (uint8_t)(i * 131 + 7);
}

static int w_save(struct fy_driver *d, const char *vm, void **out, size_t *len)
{
    void *s = NULL;
    size_t n = 0;
    uint8_t *b;
    int rc;

    if ((rc = sim->device_state_save(d, vm, &s, &n)) < 0)
        return rc;
    if (!(b = realloc(s, n + ds.pad))) {
        free(s);
        return fy_error(FY_E_NOMEM, "test: no memory for the padded state");
    }
    for (size_t i = 0; i < ds.pad; i++)
        b[n + i] = pattern(i);
    *out = b;
    *len = n + ds.pad;
    return 0;
}

static int w_load(struct fy_driver *d, const char *vm, const void *state, size_t len)
{
    const uint8_t *b = state;
    int rc;

    if (ds.fail_load)
        return fy_error(FY_E_INVAL, "injected: VM %s refuses this device state", vm);
    if (len < ds.pad)
        return fy_error(FY_E_INVAL, "test: state of %zu bytes, shorter than its pad", len);
    for (size_t i = 0; i < ds.pad; i++)
        if (b[len - ds.pad + i] != pattern(i))
            return fy_error(FY_E_INVAL, "test: pad byte %zu differs", i);
    if ((rc = sim->device_state_load(d, vm, state, len - ds.pad)) < 0)
        return rc;
    ds.loads++;
    ds.loaded_len = len;
    return 0;
}

/* ---- hosts ------------------------------------------------------------------ */

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
};

static int serve(struct fx *f, struct served *s, const char *name, const char *cfg)
{
    struct fy_rpc_method methods[64];
    size_t n = fy_host_server_methods(methods, 64);
    int rc;

    if ((rc = fy_driver_open(FY_TEST_DRIVERS_DIR, "sim", cfg, &s->drv)) < 0)
        return rc;
    if (!sim) {
        sim = s->drv.ops;
        wrapped = *sim;
        wrapped.device_state_save = w_save;
        wrapped.device_state_load = w_load;
    }
    s->drv.ops = &wrapped;
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
    FILE *fp;
    int rc;

    memset(&ds, 0, sizeof(ds));
    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-hds-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->src.state, sizeof(f->src.state), "%s/h1", f->dir);
    snprintf(f->dst.state, sizeof(f->dst.state), "%s/h2", f->dir);
    snprintf(f->db, sizeof(f->db), "%s/ferry.db", f->dir);
    snprintf(f->keyfile, sizeof(f->keyfile), "%s/cluster.key", f->dir);
    if (!(fp = fopen(f->keyfile, "w")))
        return -1;
    fputs(KEY, fp);
    fclose(fp);
    if (chmod(f->keyfile, 0600) != 0 || fy_rpc_key_load(f->keyfile, &f->key) < 0)
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

static enum fy_power power_of(struct fy_host *h, const char *vm)
{
    struct fy_vm_info vi;
    assert_int_equal(h->ops->vm_info(h, vm, &vi), 0);
    return vi.power;
}

/* vm1 paused at the source and a placeholder for it at the target, as at
 * a switchover. */
static void switchover_ready(struct fx *f)
{
    char *config = NULL;

    assert_int_equal(f->src.local.ops->vm_export(&f->src.local, "vm1", &config), 0);
    assert_int_equal(f->dst.local.ops->incoming_prepare(&f->dst.local, config, "vm1"), 0);
    free(config);
    assert_int_equal(f->src.local.ops->vm_pause(&f->src.local, "vm1"), 0);
}

/* Moves vm1's device state from 'src' to 'dst'; returns send's result,
 * with recv_join's in '*join_rc'. */
static int move_state(struct fy_host *src, struct fy_host *dst,
                      struct fy_host_send_result *res, int *join_rc,
                      struct fy_migration_stats *rst)
{
    struct fy_host_data d = {.kind = FY_HOST_DATA_DEVICE_STATE, .vm = "vm1"};
    struct fy_host_send_params sp = {.bind = "127.0.0.1", .timeout_ms = TIMEOUT_MS};
    struct fy_host_endpoint ep;
    struct fy_host_recv *job = NULL;
    char keep[1024];
    int rc;

    assert_int_equal(dst->ops->recv_start(dst, &d, "127.0.0.1", TIMEOUT_MS, &job, &ep), 0);
    assert_non_null(job);
    rc = src->ops->send(src, &d, &ep, &sp, res);
    snprintf(keep, sizeof(keep), "%s", fy_error_detail());
    *join_rc = dst->ops->recv_join(dst, job, rst);
    if (rc < 0)
        fy_error(-rc, "%s", keep);
    return rc;
}

/* ---- the host operations ------------------------------------------------------ */

static void big_state_between(struct fx *f, struct fy_host *src, struct fy_host *dst)
{
    struct fy_host_send_result res;
    struct fy_migration_stats rst;
    int jrc, rc;

    ds.pad = BIG;
    switchover_ready(f);
    rc = move_state(src, dst, &res, &jrc, &rst);
    if (rc < 0)
        fail_msg("send: %s: %s", fy_errname(rc), fy_error_detail());
    assert_int_equal(jrc, 0);
    assert_int_equal(ds.loads, 1);
    assert_int_equal(ds.loaded_len, 48 + BIG);
    assert_int_equal(res.device_state_bytes, 48 + BIG);
    assert_true(res.st.verified);
    assert_true(res.st.wire_bytes >= BIG);
    assert_true(rst.verified);
    assert_int_equal(rst.region_bytes, 48 + BIG);
    /* The placeholder runs on with the source's workload state. */
    assert_int_equal(dst->ops->vm_resume(dst, "vm1"), 0);
    assert_int_equal(power_of(&f->dst.local, "vm1"), FY_POWER_RUNNING);
}

static void test_host_devstate__3mib_between_local_hosts__loaded_at_target(void **state)
{
    struct fx *f = *state;

    need_hosts(f);
    big_state_between(f, &f->src.local, &f->dst.local);
}

/* Three times the control API's message limit: only the dataplane can
 * carry it between agents. */
static void test_host_devstate__3mib_between_remote_hosts__loaded_at_target(void **state)
{
    struct fx *f = *state;

    need_hosts(f);
    big_state_between(f, &f->src.remote, &f->dst.remote);
}

static void test_host_devstate__sim_state_of_48_bytes__loaded_at_target(void **state)
{
    struct fx *f = *state;
    struct fy_host_send_result res;
    struct fy_migration_stats rst;
    int jrc;

    need_hosts(f);
    switchover_ready(f);
    assert_int_equal(move_state(&f->src.local, &f->dst.local, &res, &jrc, &rst), 0);
    assert_int_equal(jrc, 0);
    assert_int_equal(res.device_state_bytes, 48);
    assert_int_equal(ds.loads, 1);
}

static void load_fails_between(struct fx *f, struct fy_host *src, struct fy_host *dst)
{
    struct fy_host_send_result res;
    struct fy_migration_stats rst;
    int jrc, rc;

    ds.pad = BIG;
    ds.fail_load = true;
    switchover_ready(f);
    rc = move_state(src, dst, &res, &jrc, &rst);
    assert_int_equal(rc, -FY_E_PEER);
    if (!strstr(fy_error_detail(), "injected: VM vm1 refuses this device state"))
        fail_msg("send's error does not give the target's reason: %s", fy_error_detail());
    assert_int_equal(jrc, -FY_E_INVAL);
    assert_int_equal(res.device_state_bytes, 0);
    assert_false(rst.verified);
    /* The source VM was only paused: it resumes. */
    assert_int_equal(power_of(&f->src.local, "vm1"), FY_POWER_PAUSED);
    assert_int_equal(src->ops->vm_resume(src, "vm1"), 0);
    assert_int_equal(power_of(&f->src.local, "vm1"), FY_POWER_RUNNING);
}

static void test_host_devstate__target_load_fails__send_gives_its_reason_source_resumes(
    void **state)
{
    struct fx *f = *state;

    need_hosts(f);
    load_fails_between(f, &f->src.local, &f->dst.local);
}

static void test_host_devstate__remote_target_load_fails__send_gives_its_reason(void **state)
{
    struct fx *f = *state;

    need_hosts(f);
    load_fails_between(f, &f->src.remote, &f->dst.remote);
}

/* Nobody sends: the receiving job ends on abort, before its timeout. */
static void test_host_devstate__recv_abort_without_sender__ends_at_once(void **state)
{
    struct fx *f = *state;
    struct fy_host_data d = {.kind = FY_HOST_DATA_DEVICE_STATE, .vm = "vm1"};
    struct fy_host_endpoint ep;
    struct fy_host_recv *job = NULL;
    struct fy_host *dst = &f->dst.remote;

    need_hosts(f);
    switchover_ready(f);
    assert_int_equal(dst->ops->recv_start(dst, &d, "127.0.0.1", TIMEOUT_MS, &job, &ep), 0);
    dst->ops->recv_abort(dst, job);
    assert_int_equal(ds.loads, 0);
}

/* ---- the workflow ------------------------------------------------------------- */

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

static bool has_event(struct fx *f, int64_t id, const char *text)
{
    struct fy_event *ev = NULL;
    size_t n = 0;
    bool found = false;

    if (fy_store_events_list(f->store, id, &ev, &n) < 0)
        return false;
    for (size_t i = 0; i < n; i++)
        found = found || strstr(ev[i].text, text);
    free(ev);
    return found;
}

/* A live migration between agents with a 3 MiB device state: it moved
 * through the controller before, and failed at the message limit. */
static void test_host_devstate__live_between_remote_hosts_3mib_state__vm_runs_at_target(
    void **state)
{
    struct fx *f = *state;
    struct fy_migration_request r = {.kind = FY_MIG_LIVE, .vm = "vm1", .streams = 2,
                                      .timeout_ms = TIMEOUT_MS};
    int64_t id = 0;
    int rc;

    need_hosts(f);
    ds.pad = BIG;
    rc = fy_migrate(&r, &f->src.remote, &f->dst.remote, f->store, &id);
    if (rc != 0) {
        dump_events(f, id);
        fail_msg("migration failed: %s: %s", fy_errname(rc), fy_error_detail());
    }
    assert_int_equal(ds.loads, 1);
    assert_int_equal(ds.loaded_len, 48 + BIG);
    assert_true(has_event(f, id, "Device state of VM vm1 crossed the dataplane over "));
    assert_true(has_event(f, id, " 127.0.0.1: 3145776 bytes"));
    assert_int_equal(power_of(&f->dst.local, "vm1"), FY_POWER_RUNNING);
}

/* The target cannot load the state: the migration rolls back, the VM runs
 * on at the source, and the placeholder is gone. */
static void test_host_devstate__live_target_load_fails__rolled_back_source_runs(void **state)
{
    struct fx *f = *state;
    struct fy_migration_request r = {.kind = FY_MIG_LIVE, .vm = "vm1", .streams = 2,
                                      .timeout_ms = TIMEOUT_MS};
    struct fy_migration_record rec;
    struct fy_vm_info vi;
    int64_t id = 0;
    int rc;

    need_hosts(f);
    ds.pad = BIG;
    ds.fail_load = true;
    rc = fy_migrate(&r, &f->src.remote, &f->dst.remote, f->store, &id);
    if (rc != -FY_E_PEER || !strstr(fy_error_detail(), "injected")) {
        dump_events(f, id);
        fail_msg("got %s: %s", fy_errname(rc), fy_error_detail());
    }
    assert_int_equal(fy_store_migration_get(f->store, id, &rec), 0);
    assert_int_equal(rec.state, FY_MIG_ROLLED_BACK);
    assert_int_equal(power_of(&f->src.local, "vm1"), FY_POWER_RUNNING);
    assert_int_equal(f->dst.local.ops->vm_info(&f->dst.local, "vm1", &vi), -FY_E_NOTFOUND);
}

int main(void)
{
#define F(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        F(test_host_devstate__3mib_between_local_hosts__loaded_at_target),
        F(test_host_devstate__3mib_between_remote_hosts__loaded_at_target),
        F(test_host_devstate__sim_state_of_48_bytes__loaded_at_target),
        F(test_host_devstate__target_load_fails__send_gives_its_reason_source_resumes),
        F(test_host_devstate__remote_target_load_fails__send_gives_its_reason),
        F(test_host_devstate__recv_abort_without_sender__ends_at_once),
        F(test_host_devstate__live_between_remote_hosts_3mib_state__vm_runs_at_target),
        F(test_host_devstate__live_target_load_fails__rolled_back_source_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
