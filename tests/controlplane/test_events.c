/* Unit tests of the migration store (controlplane/events.c): records,
 * events, locks, and that all of it survives closing and reopening. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "controlplane/events.h"
#include "ferry/error.h"

struct fixture {
    char dir[64];
    char path[128];
    struct fy_store *st;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-events-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof(f->path), "%s/ferry.db", f->dir);
    if (fy_store_open(f->path, &f->st) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[160];
    fy_store_close(f->st);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static void reopen(struct fixture *f)
{
    fy_store_close(f->st);
    f->st = NULL;
    assert_int_equal(fy_store_open(f->path, &f->st), 0);
}

static int64_t create(struct fixture *f, const char *vm, enum fy_migration_kind kind)
{
    struct fy_migration_record m = {.kind = kind};
    int64_t id = 0;
    snprintf(m.vm, sizeof(m.vm), "%s", vm);
    snprintf(m.source, sizeof(m.source), "h1");
    snprintf(m.target, sizeof(m.target), "h2");
    assert_int_equal(fy_store_migration_create(f->st, &m, &id), 0);
    assert_true(id > 0);
    return id;
}

static void test_store__new_migration__running_with_start_time(void **state)
{
    struct fixture *f = *state;
    struct fy_migration_record m;
    int64_t id = create(f, "vm1", FY_MIG_COLD);

    assert_int_equal(fy_store_migration_get(f->st, id, &m), 0);
    assert_int_equal(m.id, id);
    assert_string_equal(m.vm, "vm1");
    assert_int_equal(m.kind, FY_MIG_COLD);
    assert_string_equal(m.source, "h1");
    assert_string_equal(m.target, "h2");
    assert_int_equal(m.state, FY_MIG_RUNNING);
    assert_true(m.started_us > 1600000000ll * 1000000);
    assert_int_equal(m.ended_us, 0);
    assert_string_equal(m.error, "");
}

static void test_store__unknown_migration__notfound(void **state)
{
    struct fixture *f = *state;
    struct fy_migration_record m;
    assert_int_equal(fy_store_migration_get(f->st, 999, &m), -FY_E_NOTFOUND);
    assert_int_equal(fy_store_migration_set_state(f->st, 999, FY_MIG_FAILED, "x"), -FY_E_NOTFOUND);
    assert_int_equal(fy_store_event_add(f->st, 999, FY_EV_TRANSFER, FY_SIDE_SOURCE, "x", NULL),
                     -FY_E_NOTFOUND);
}

static void test_store__state_stats_and_networks__read_back_after_reopen(void **state)
{
    struct fixture *f = *state;
    struct fy_migration_record m = {0}, r;
    int64_t id = create(f, "vm1", FY_MIG_LIVE);

    m.wire_bytes = 123456789012ull;
    m.pages_sent = 1000;
    m.pages_zero = 2000;
    m.pages_dup = 30;
    m.downtime = 0.025;
    m.seconds = 1.5;
    m.verified = true;
    assert_int_equal(fy_store_migration_set_stats(f->st, id, &m), 0);
    assert_int_equal(fy_store_migration_set_net(f->st, id, FY_DATA_MEMORY, "migration 10.0.0.1"), 0);
    assert_int_equal(fy_store_migration_set_net(f->st, id, FY_DATA_DISKS_COLD, "management 10.0.2.1"), 0);
    assert_int_equal(fy_store_migration_set_state(f->st, id, FY_MIG_ROLLED_BACK,
                                                  "InitiateSource: injected failure"), 0);
    reopen(f);
    assert_int_equal(fy_store_migration_get(f->st, id, &r), 0);
    assert_int_equal(r.state, FY_MIG_ROLLED_BACK);
    assert_string_equal(r.error, "InitiateSource: injected failure");
    assert_true(r.ended_us >= r.started_us);
    assert_int_equal(r.wire_bytes, 123456789012ull);
    assert_int_equal(r.pages_sent, 1000);
    assert_int_equal(r.pages_zero, 2000);
    assert_int_equal(r.pages_dup, 30);
    assert_true(r.downtime > 0.0249 && r.downtime < 0.0251);
    assert_true(r.seconds > 1.49 && r.seconds < 1.51);
    assert_true(r.verified);
    assert_string_equal(r.net[FY_DATA_MEMORY], "migration 10.0.0.1");
    assert_string_equal(r.net[FY_DATA_DEVICE_STATE], "");
    assert_string_equal(r.net[FY_DATA_DISKS_COLD], "management 10.0.2.1");
}

static void test_store__events__numbered_from_one_per_migration_in_order(void **state)
{
    struct fixture *f = *state;
    int64_t a = create(f, "vm1", FY_MIG_LIVE), b = create(f, "vm2", FY_MIG_COLD);
    struct fy_event *ev = NULL;
    size_t n = 0;
    unsigned task = 0;

    assert_int_equal(fy_store_event_add(f->st, a, FY_EV_SWITCHOVER, FY_SIDE_SOURCE,
                                        "Collecting source details", &task), 0);
    assert_int_equal(task, 1);
    assert_int_equal(fy_store_event_add(f->st, b, FY_EV_TRANSFER, FY_SIDE_SOURCE,
                                        "Validating source details", &task), 0);
    assert_int_equal(task, 1);
    assert_int_equal(fy_store_event_add(f->st, a, FY_EV_SWITCHOVER, FY_SIDE_TARGET,
                                        "Creating placeholder VM at target side", &task), 0);
    assert_int_equal(task, 2);
    assert_int_equal(fy_store_event_add(f->st, a, FY_EV_CLEANUP, FY_SIDE_SOURCE,
                                        "Migration completed", NULL), 0);

    reopen(f);
    assert_int_equal(fy_store_events_list(f->st, a, &ev, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ev[0].task, 1);
    assert_int_equal(ev[0].category, FY_EV_SWITCHOVER);
    assert_int_equal(ev[0].side, FY_SIDE_SOURCE);
    assert_string_equal(ev[0].text, "Collecting source details");
    assert_int_equal(ev[1].task, 2);
    assert_int_equal(ev[1].side, FY_SIDE_TARGET);
    assert_int_equal(ev[2].task, 3);
    assert_int_equal(ev[2].category, FY_EV_CLEANUP);
    assert_string_equal(ev[2].text, "Migration completed");
    assert_true(ev[0].ts_us <= ev[1].ts_us && ev[1].ts_us <= ev[2].ts_us);
    assert_true(ev[0].ts_us > 1600000000ll * 1000000);
    free(ev);
}

static void test_store__no_events__empty_list(void **state)
{
    struct fixture *f = *state;
    struct fy_event *ev = (struct fy_event *)1;
    size_t n = 5;
    assert_int_equal(fy_store_events_list(f->st, create(f, "vm1", FY_MIG_LIVE), &ev, &n), 0);
    assert_null(ev);
    assert_int_equal(n, 0);
}

static void test_store__list__all_or_one_vm_oldest_first(void **state)
{
    struct fixture *f = *state;
    struct fy_migration_record *v;
    size_t n;
    int64_t a = create(f, "vm1", FY_MIG_LIVE);
    create(f, "vm2", FY_MIG_COLD);
    int64_t c = create(f, "vm1", FY_MIG_QUICK);

    reopen(f);
    assert_int_equal(fy_store_migration_list(f->st, NULL, &v, &n), 0);
    assert_int_equal(n, 3);
    free(v);
    assert_int_equal(fy_store_migration_list(f->st, "vm1", &v, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].id, a);
    assert_int_equal(v[1].id, c);
    assert_int_equal(v[1].kind, FY_MIG_QUICK);
    free(v);
    assert_int_equal(fy_store_migration_list(f->st, "vm9", &v, &n), 0);
    assert_int_equal(n, 0);
}

static void test_store__lock_held_by_other__busy_naming_it(void **state)
{
    struct fixture *f = *state;
    int64_t a = create(f, "vm1", FY_MIG_LIVE), b = create(f, "vm1", FY_MIG_COLD);
    char want[32];

    assert_int_equal(fy_store_lock_vm(f->st, "vm1", a), 0);
    assert_int_equal(fy_store_lock_vm(f->st, "vm1", a), 0); /* again: held */
    assert_int_equal(fy_store_lock_vm(f->st, "vm1", b), -FY_E_BUSY);
    snprintf(want, sizeof(want), "migration %lld", (long long)a);
    assert_non_null(strstr(fy_error_detail(), want));
    assert_non_null(strstr(fy_error_detail(), "vm1"));
    assert_int_equal(fy_store_lock_vm(f->st, "vm2", b), 0); /* other VM */
}

static void test_store__lock__survives_reopen_until_unlocked(void **state)
{
    struct fixture *f = *state;
    int64_t a = create(f, "vm1", FY_MIG_LIVE), b = create(f, "vm1", FY_MIG_COLD), h = 0;

    assert_int_equal(fy_store_lock_vm(f->st, "vm1", a), 0);
    reopen(f);
    assert_int_equal(fy_store_lock_holder(f->st, "vm1", &h), 0);
    assert_int_equal(h, a);
    assert_int_equal(fy_store_lock_vm(f->st, "vm1", b), -FY_E_BUSY);
    assert_int_equal(fy_store_unlock_vm(f->st, "vm1", b), -FY_E_NOTFOUND);
    assert_int_equal(fy_store_unlock_vm(f->st, "vm1", a), 0);
    assert_int_equal(fy_store_lock_holder(f->st, "vm1", &h), 0);
    assert_int_equal(h, 0);
    assert_int_equal(fy_store_lock_vm(f->st, "vm1", b), 0);
}

static void test_store__two_handles__see_each_others_writes(void **state)
{
    struct fixture *f = *state;
    struct fy_store *other = NULL;
    struct fy_migration_record m;
    int64_t id = create(f, "vm1", FY_MIG_LIVE);

    assert_int_equal(fy_store_open(f->path, &other), 0);
    assert_int_equal(fy_store_lock_vm(other, "vm1", id), 0);
    assert_int_equal(fy_store_lock_vm(f->st, "vm1", id + 100), -FY_E_BUSY);
    assert_int_equal(fy_store_migration_set_state(other, id, FY_MIG_SUCCEEDED, NULL), 0);
    assert_int_equal(fy_store_migration_get(f->st, id, &m), 0);
    assert_int_equal(m.state, FY_MIG_SUCCEEDED);
    fy_store_close(other);
}

static void test_store__unwritable_path__io_error_naming_it(void **state)
{
    struct fy_store *st = (struct fy_store *)1;
    (void)state;
    assert_int_equal(fy_store_open("/nonexistent-dir/ferry.db", &st), -FY_E_IO);
    assert_null(st);
    assert_non_null(strstr(fy_error_detail(), "/nonexistent-dir/ferry.db"));
}

static void test_store__names__stable(void **state)
{
    (void)state;
    assert_string_equal(fy_mig_state_name(FY_MIG_ROLLED_BACK), "rolled_back");
    assert_string_equal(fy_data_class_name(FY_DATA_DISKS_HOT), "disks_hot");
    assert_string_equal(fy_event_category_name(FY_EV_SWITCHOVER), "Switchover");
    assert_string_equal(fy_event_side_name(FY_SIDE_TARGET), "target");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_store__new_migration__running_with_start_time),
        T(test_store__unknown_migration__notfound),
        T(test_store__state_stats_and_networks__read_back_after_reopen),
        T(test_store__events__numbered_from_one_per_migration_in_order),
        T(test_store__no_events__empty_list),
        T(test_store__list__all_or_one_vm_oldest_first),
        T(test_store__lock_held_by_other__busy_naming_it),
        T(test_store__lock__survives_reopen_until_unlocked),
        T(test_store__two_handles__see_each_others_writes),
        cmocka_unit_test(test_store__unwritable_path__io_error_naming_it),
        cmocka_unit_test(test_store__names__stable),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
