/* Unit tests of the evacuation planner (controlplane/planner.c): one test
 * per placement, ordering and result rule of SPEC section 6. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "controlplane/planner.h"
#include "ferry/error.h"

#define GIB (1024ull * 1024ull * 1024ull)

static const char *const DS1[] = {"ds1"};
static const char *const DS2[] = {"ds2"};

struct fixture {
    struct fy_plan_host hosts[8];
    struct fy_plan_vm vms[16];
    struct fy_plan_input in;
    struct fy_plan *plan;
};

static struct fixture F;

static struct fy_plan_host *add_host(const char *name, unsigned mem_gib, unsigned cpus,
                                     const char *const *ds, size_t nds)
{
    struct fy_plan_host *h = &F.hosts[F.in.n_hosts++];
    *h = (struct fy_plan_host){
        .name = name, .state = FY_PLAN_HOST_HEALTHY,
        .mem_total = 2ull * mem_gib * GIB, .mem_free = mem_gib * GIB,
        .cpus_total = 2 * cpus, .cpus_free = cpus,
        .datastores = ds, .n_datastores = nds,
    };
    return h;
}

static struct fy_plan_vm *add_vm(const char *name, const char *host, unsigned mem_gib,
                                 unsigned vcpus)
{
    struct fy_plan_vm *v = &F.vms[F.in.n_vms++];
    *v = (struct fy_plan_vm){
        .name = name, .host = host, .running = true, .memory = mem_gib * GIB,
        .vcpus = vcpus, .datastores = DS1, .n_datastores = 1, .managed = true,
    };
    return v;
}

static int setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof(F));
    F.in.hosts = F.hosts;
    F.in.vms = F.vms;
    F.in.evacuate = "h1";
    add_host("h1", 64, 32, DS1, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fy_plan_destroy(F.plan);
    F.plan = NULL;
    return 0;
}

static void plan(void)
{
    fy_plan_destroy(F.plan);
    F.plan = NULL;
    int rc = fy_planner_plan(&F.in, &F.plan);
    if (rc < 0)
        fail_msg("fy_planner_plan: %s", fy_error_detail());
}

static size_t entry_index(const char *vm)
{
    for (size_t i = 0; i < F.plan->n_entries; i++)
        if (strcmp(F.in.vms[F.plan->entries[i].vm].name, vm) == 0)
            return i;
    fail_msg("VM %s is not in the plan", vm);
    return 0;
}

static const struct fy_plan_entry *entry(const char *vm)
{
    return &F.plan->entries[entry_index(vm)];
}

/* The target host of attempt 'k' of 'vm'. */
static const char *target(const char *vm, size_t k)
{
    const struct fy_plan_entry *e = entry(vm);
    assert_true(k < e->n_attempts);
    return F.in.hosts[e->attempts[k].host].name;
}

static enum fy_plan_result result_of(enum fy_plan_outcome outcome)
{
    enum fy_plan_outcome outcomes[16];
    for (size_t i = 0; i < 16; i++)
        outcomes[i] = outcome;
    return fy_planner_result(F.plan, outcomes);
}

/* --- capacity ---------------------------------------------------------- */

static void test_planner__vm_too_big_for_every_host__no_attempts_and_a_reason(void **state)
{
    (void)state;
    add_host("h2", 4, 8, DS1, 1);
    add_host("h3", 6, 8, DS1, 1);
    add_vm("big", "h1", 8, 2);
    plan();
    const struct fy_plan_entry *e = entry("big");
    assert_int_equal(e->disposition, FY_PLAN_MOVE);
    assert_int_equal(e->n_attempts, 0);
    assert_int_equal(e->wave, 0);
    assert_string_equal(e->reason,
                        "no host with 8 GiB free memory and 2 free CPUs reaching datastore ds1");
    assert_int_equal(result_of(FY_PLAN_NOT_ATTEMPTED), FY_PLAN_ERROR);
}

static void test_planner__too_few_free_cpus__host_not_chosen(void **state)
{
    (void)state;
    add_host("h2", 64, 1, DS1, 1);
    add_host("h3", 8, 4, DS1, 1);
    add_vm("vm", "h1", 4, 2);
    plan();
    assert_string_equal(target("vm", 0), "h3");
}

static void test_planner__several_vms__planned_memory_counted(void **state)
{
    (void)state;
    add_host("h2", 10, 16, DS1, 1);
    add_host("h3", 8, 16, DS1, 1);
    add_vm("a", "h1", 6, 1);
    add_vm("b", "h1", 6, 1);
    add_vm("c", "h1", 6, 1);
    plan();
    /* a takes h2 (most free), b then finds h3 (8) ahead of h2 (4 left),
     * c fits nowhere. */
    assert_string_equal(target("a", 0), "h2");
    assert_string_equal(target("b", 0), "h3");
    assert_int_equal(entry("c")->n_attempts, 0);
    assert_non_null(strstr(entry("c")->reason, "6 GiB free memory"));
}

static void test_planner__equal_candidates__most_free_memory_then_name(void **state)
{
    (void)state;
    add_host("h3", 16, 8, DS1, 1);
    add_host("h2", 16, 8, DS1, 1);
    add_host("h4", 32, 8, DS1, 1);
    add_vm("a", "h1", 1, 1);
    plan();
    assert_string_equal(target("a", 0), "h4");
    F.hosts[3].mem_free = 16 * GIB;
    plan();
    assert_string_equal(target("a", 0), "h2");
}

/* --- placement constraints --------------------------------------------- */

static void test_planner__eq_group_member_elsewhere__vm_joins_it(void **state)
{
    (void)state;
    add_host("h2", 64, 16, DS1, 1);
    add_host("h3", 16, 16, DS1, 1);
    static const char *const web[] = {"web"};
    struct fy_plan_vm *a = add_vm("a", "h1", 2, 1);
    struct fy_plan_vm *b = add_vm("b", "h3", 2, 1);
    a->eq_groups = b->eq_groups = web;
    a->n_eq_groups = b->n_eq_groups = 1;
    plan();
    assert_string_equal(target("a", 0), "h3");
}

static void test_planner__eq_group_both_on_evacuated_host__kept_together(void **state)
{
    (void)state;
    add_host("h2", 16, 16, DS1, 1);
    add_host("h3", 15, 16, DS1, 1);
    static const char *const web[] = {"web"};
    struct fy_plan_vm *a = add_vm("a", "h1", 4, 1);
    struct fy_plan_vm *b = add_vm("b", "h1", 4, 1);
    a->eq_groups = b->eq_groups = web;
    a->n_eq_groups = b->n_eq_groups = 1;
    plan();
    /* Without the group b would go to h3 (15 > 12 GiB free). */
    assert_string_equal(target("a", 0), "h2");
    assert_string_equal(target("b", 0), "h2");
}

static void test_planner__ne_group__members_kept_apart(void **state)
{
    (void)state;
    add_host("h2", 64, 16, DS1, 1);
    add_host("h3", 16, 16, DS1, 1);
    static const char *const db[] = {"db"};
    struct fy_plan_vm *a = add_vm("a", "h1", 2, 1);
    struct fy_plan_vm *b = add_vm("b", "h1", 2, 1);
    struct fy_plan_vm *c = add_vm("c", "h1", 2, 1);
    a->ne_groups = b->ne_groups = c->ne_groups = db;
    a->n_ne_groups = b->n_ne_groups = c->n_ne_groups = 1;
    plan();
    assert_string_equal(target("a", 0), "h2");
    assert_string_equal(target("b", 0), "h3");
    assert_int_equal(entry("c")->n_attempts, 0);
    assert_non_null(strstr(entry("c")->reason, "EQ/NE constraints"));
}

static void test_planner__ne_group_stopped_member__does_not_constrain(void **state)
{
    (void)state;
    add_host("h2", 64, 16, DS1, 1);
    add_host("h3", 16, 16, DS1, 1);
    static const char *const db[] = {"db"};
    struct fy_plan_vm *a = add_vm("a", "h1", 2, 1);
    struct fy_plan_vm *b = add_vm("b", "h2", 2, 1);
    b->running = false;
    a->ne_groups = b->ne_groups = db;
    a->n_ne_groups = b->n_ne_groups = 1;
    plan();
    assert_string_equal(target("a", 0), "h2");
}

/* --- VMs that stay ------------------------------------------------------ */

static void test_planner__hold__never_moves_and_no_effect(void **state)
{
    (void)state;
    add_host("h2", 64, 16, DS1, 1);
    add_vm("held", "h1", 2, 1)->hold = true;
    plan();
    const struct fy_plan_entry *e = entry("held");
    assert_int_equal(e->disposition, FY_PLAN_STAY_HOLD);
    assert_int_equal(e->n_attempts, 0);
    assert_string_equal(e->reason, "stays: Hold constraint");
    assert_int_equal(result_of(FY_PLAN_NOT_ATTEMPTED), FY_PLAN_OK);
}

static void test_planner__unmanaged__stays_and_no_effect(void **state)
{
    (void)state;
    add_host("h2", 64, 16, DS1, 1);
    add_vm("free", "h1", 2, 1)->managed = false;
    plan();
    assert_int_equal(entry("free")->disposition, FY_PLAN_STAY_UNMANAGED);
    assert_int_equal(entry("free")->n_attempts, 0);
    assert_int_equal(result_of(FY_PLAN_NOT_ATTEMPTED), FY_PLAN_OK);
}

static void test_planner__vm_in_maintenance__stays_and_warning(void **state)
{
    (void)state;
    add_host("h2", 64, 16, DS1, 1);
    add_vm("maint", "h1", 2, 1)->maintenance = true;
    plan();
    assert_int_equal(entry("maint")->disposition, FY_PLAN_STAY_MAINTENANCE);
    assert_int_equal(entry("maint")->n_attempts, 0);
    assert_int_equal(result_of(FY_PLAN_NOT_ATTEMPTED), FY_PLAN_WARNING);
}

static void test_planner__busy_vm__stays_and_error(void **state)
{
    (void)state;
    add_host("h2", 64, 16, DS1, 1);
    add_vm("busy", "h1", 2, 1)->busy = true;
    plan();
    assert_int_equal(entry("busy")->disposition, FY_PLAN_STAY_BUSY);
    assert_int_equal(entry("busy")->n_attempts, 0);
    assert_int_equal(result_of(FY_PLAN_NOT_ATTEMPTED), FY_PLAN_ERROR);
}

/* --- methods ------------------------------------------------------------ */

static void test_planner__methods_in_any_order__tried_in_canonical_order(void **state)
{
    (void)state;
    add_host("h2", 64, 16, DS1, 1);
    add_vm("a", "h1", 2, 1);
    const enum fy_migration_kind user[] = {
        FY_MIG_FAILOVER, FY_MIG_STORAGE, FY_MIG_MOVE, FY_MIG_QUICK, FY_MIG_LIVE,
    };
    assert_int_equal(fy_planner_methods(user, 5, &F.in.methods), 0);
    plan();
    const struct fy_plan_entry *e = entry("a");
    assert_int_equal(e->n_attempts, 5);
    assert_int_equal(e->attempts[0].method, FY_MIG_LIVE);
    assert_int_equal(e->attempts[1].method, FY_MIG_QUICK);
    assert_int_equal(e->attempts[2].method, FY_MIG_MOVE);
    assert_int_equal(e->attempts[3].method, FY_MIG_STORAGE);
    assert_int_equal(e->attempts[4].method, FY_MIG_FAILOVER);

    const enum fy_migration_kind three[] = {FY_MIG_FAILOVER, FY_MIG_MOVE, FY_MIG_LIVE};
    assert_int_equal(fy_planner_methods(three, 3, &F.in.methods), 0);
    plan();
    e = entry("a");
    assert_int_equal(e->n_attempts, 3);
    assert_int_equal(e->attempts[0].method, FY_MIG_LIVE);
    assert_int_equal(e->attempts[1].method, FY_MIG_MOVE);
    assert_int_equal(e->attempts[2].method, FY_MIG_FAILOVER);
}

static void test_planner__no_methods_given__live_then_failover(void **state)
{
    (void)state;
    add_host("h2", 64, 16, DS1, 1);
    add_vm("a", "h1", 2, 1);
    plan();
    const struct fy_plan_entry *e = entry("a");
    assert_int_equal(e->n_attempts, 2);
    assert_int_equal(e->attempts[0].method, FY_MIG_LIVE);
    assert_int_equal(e->attempts[1].method, FY_MIG_FAILOVER);
}

static void test_planner__cold_or_bulk_method__rejected(void **state)
{
    (void)state;
    unsigned mask = 42;
    const enum fy_migration_kind cold[] = {FY_MIG_LIVE, FY_MIG_COLD};
    assert_int_equal(fy_planner_methods(cold, 2, &mask), -FY_E_INVAL);
    assert_int_equal(mask, 42);
    F.in.methods = FY_PLAN_METHOD(FY_MIG_BULK);
    assert_int_equal(fy_planner_plan(&F.in, &F.plan), -FY_E_INVAL);
    assert_null(F.plan);
}

static void test_planner__host_without_datastores__only_for_move_and_storage(void **state)
{
    (void)state;
    add_host("h2", 64, 16, DS2, 1);
    add_vm("a", "h1", 2, 1);
    F.in.methods = FY_PLAN_METHODS_ALL;
    plan();
    const struct fy_plan_entry *e = entry("a");
    assert_int_equal(e->n_attempts, 2);
    assert_int_equal(e->attempts[0].method, FY_MIG_MOVE);
    assert_string_equal(target("a", 0), "h2");
    assert_int_equal(e->attempts[1].method, FY_MIG_STORAGE);
    assert_string_equal(target("a", 1), "h2");
}

static void test_planner__only_shared_storage_methods_and_no_host_reaching__reason(void **state)
{
    (void)state;
    add_host("h2", 64, 16, DS2, 1);
    add_vm("a", "h1", 2, 1);
    plan();
    assert_int_equal(entry("a")->n_attempts, 0);
    assert_string_equal(entry("a")->reason, "no healthy host reaching datastore ds1");
}

static void test_planner__move_with_host_reaching_disks__that_host_preferred(void **state)
{
    (void)state;
    add_host("h2", 64, 16, DS2, 1);  /* more memory, cannot reach ds1 */
    add_host("h3", 8, 16, DS1, 1);
    add_vm("a", "h1", 2, 1);
    F.in.methods = FY_PLAN_METHOD(FY_MIG_MOVE);
    plan();
    assert_string_equal(target("a", 0), "h3");
}

/* --- target host state -------------------------------------------------- */

static void test_planner__target_in_maintenance_or_down__never_chosen(void **state)
{
    (void)state;
    add_host("h2", 64, 16, DS1, 1)->state = FY_PLAN_HOST_MAINTENANCE;
    add_host("h3", 64, 16, DS1, 1)->state = FY_PLAN_HOST_DOWN;
    add_host("h4", 4, 16, DS1, 1);
    add_vm("a", "h1", 2, 1);
    F.in.methods = FY_PLAN_METHODS_ALL;
    plan();
    const struct fy_plan_entry *e = entry("a");
    assert_int_equal(e->n_attempts, 5);
    for (size_t k = 0; k < e->n_attempts; k++)
        assert_string_equal(target("a", k), "h4");
    F.hosts[3].state = FY_PLAN_HOST_DOWN;
    plan();
    assert_int_equal(entry("a")->n_attempts, 0);
    assert_string_equal(entry("a")->reason, "no healthy host other than h1");
}

/* --- concurrency, priorities, dependencies ------------------------------ */

static void test_planner__concurrency_limit__moves_split_into_waves(void **state)
{
    (void)state;
    F.hosts[0].max_concurrent = 2;
    add_host("h2", 30, 16, DS1, 1)->max_concurrent = 1;
    add_host("h3", 30, 16, DS1, 1);
    add_vm("a", "h1", 10, 1);
    add_vm("b", "h1", 10, 1);
    add_vm("c", "h1", 10, 1);
    add_vm("d", "h1", 10, 1);
    plan();
    /* a and c go to h2, b and d to h3; h2 takes one at a time, h1 two. */
    assert_string_equal(target("a", 0), "h2");
    assert_string_equal(target("c", 0), "h2");
    assert_int_equal(F.plan->n_waves, 2);
    unsigned per_wave_src[3] = {0}, per_wave_h2[3] = {0};
    for (size_t i = 0; i < F.plan->n_entries; i++) {
        const struct fy_plan_entry *e = &F.plan->entries[i];
        assert_true(e->wave >= 1 && e->wave <= 2);
        per_wave_src[e->wave]++;
        if (strcmp(F.in.hosts[e->attempts[0].host].name, "h2") == 0)
            per_wave_h2[e->wave]++;
        if (i > 0)
            assert_true(F.plan->entries[i - 1].wave <= e->wave);
    }
    assert_int_equal(per_wave_src[1], 2);
    assert_int_equal(per_wave_src[2], 2);
    assert_true(per_wave_h2[1] <= 1 && per_wave_h2[2] <= 1);
}

static void test_planner__link_limit__moves_to_one_target_split_into_waves(void **state)
{
    (void)state;
    F.in.link_limit = 2;
    add_host("h2", 64, 16, DS1, 1);
    add_host("h3", 1, 16, DS1, 1); /* too small: everything goes to h2 */
    for (unsigned i = 0; i < 5; i++) {
        static const char *const names[] = {"a", "b", "c", "d", "e"};
        add_vm(names[i], "h1", 2, 1);
    }
    plan();
    /* Neither host has a limit of its own: the link between them does. */
    assert_int_equal(F.plan->n_waves, 3);
    unsigned per_wave[4] = {0};
    for (size_t i = 0; i < F.plan->n_entries; i++) {
        assert_string_equal(target(F.in.vms[F.plan->entries[i].vm].name, 0), "h2");
        per_wave[F.plan->entries[i].wave]++;
    }
    assert_int_equal(per_wave[1], 2);
    assert_int_equal(per_wave[2], 2);
    assert_int_equal(per_wave[3], 1);

    /* A host limit below the link's wins. */
    F.hosts[1].max_concurrent = 1;
    plan();
    assert_int_equal(F.plan->n_waves, 5);
}

static void test_planner__priorities__higher_first(void **state)
{
    (void)state;
    add_host("h2", 4, 16, DS1, 1);
    add_vm("a-low", "h1", 4, 1)->priority = 1;
    add_vm("z-high", "h1", 4, 1)->priority = 9;
    plan();
    assert_string_equal(F.in.vms[F.plan->entries[0].vm].name, "z-high");
    assert_string_equal(target("z-high", 0), "h2"); /* first pick of capacity */
    assert_int_equal(entry("a-low")->n_attempts, 0);
}

static void test_planner__dependencies__moved_first_in_an_earlier_wave(void **state)
{
    (void)state;
    add_host("h2", 64, 16, DS1, 1);
    struct fy_plan_vm *app = add_vm("app", "h1", 1, 1);
    add_vm("db", "h1", 1, 1);
    app->priority = 10;
    app->depends_on = (const char *const[]){"db"};
    app->n_depends_on = 1;
    plan();
    assert_true(entry_index("db") < entry_index("app"));
    assert_int_equal(entry("db")->wave, 1);
    assert_int_equal(entry("app")->wave, 2);
}

static void test_planner__dependency_cycle__config_error_naming_the_vms(void **state)
{
    (void)state;
    add_host("h2", 64, 16, DS1, 1);
    struct fy_plan_vm *a = add_vm("a", "h1", 1, 1);
    struct fy_plan_vm *b = add_vm("b", "h1", 1, 1);
    add_vm("c", "h1", 1, 1);
    a->depends_on = (const char *const[]){"b"};
    a->n_depends_on = 1;
    b->depends_on = (const char *const[]){"a"};
    b->n_depends_on = 1;
    assert_int_equal(fy_planner_plan(&F.in, &F.plan), -FY_E_CONFIG);
    assert_null(F.plan);
    assert_non_null(strstr(fy_error_detail(), "cycle among VMs a, b "));
}

static void test_planner__unknown_dependency__not_found(void **state)
{
    (void)state;
    struct fy_plan_vm *a = add_vm("a", "h1", 1, 1);
    a->depends_on = (const char *const[]){"ghost"};
    a->n_depends_on = 1;
    assert_int_equal(fy_planner_plan(&F.in, &F.plan), -FY_E_NOTFOUND);
}

static void test_planner__unknown_evacuated_host__not_found(void **state)
{
    (void)state;
    F.in.evacuate = "nowhere";
    assert_int_equal(fy_planner_plan(&F.in, &F.plan), -FY_E_NOTFOUND);
    assert_null(F.plan);
}

/* --- reboot dependents -------------------------------------------------- */

static void test_planner__reboot_dependents__eligible_dependents_listed(void **state)
{
    (void)state;
    add_host("h2", 64, 16, DS1, 1);
    add_vm("db", "h1", 1, 1);
    add_vm("cache", "h1", 1, 1);
    struct fy_plan_vm *web = add_vm("web", "h2", 1, 1);
    struct fy_plan_vm *off = add_vm("off", "h2", 1, 1);
    struct fy_plan_vm *maint = add_vm("maint", "h2", 1, 1);
    add_vm("unrelated", "h2", 1, 1);
    web->depends_on = (const char *const[]){"db", "cache"};
    web->n_depends_on = 2;
    off->depends_on = maint->depends_on = (const char *const[]){"db"};
    off->n_depends_on = maint->n_depends_on = 1;
    off->running = false;
    maint->maintenance = true;
    plan();
    assert_int_equal(F.plan->n_reboot, 0);

    F.in.reboot_dependents = true;
    plan();
    assert_int_equal(F.plan->n_reboot, 1);
    assert_string_equal(F.in.vms[F.plan->reboot[0]].name, "web");

    enum fy_plan_outcome outcomes[2];
    outcomes[entry_index("db")] = FY_PLAN_MOVED;
    outcomes[entry_index("cache")] = FY_PLAN_FAILED;
    assert_false(fy_plan_reboot_ready(F.plan, F.plan->reboot[0], outcomes));
    outcomes[entry_index("cache")] = FY_PLAN_MOVED;
    assert_true(fy_plan_reboot_ready(F.plan, F.plan->reboot[0], outcomes));
}

/* --- stopped VMs -------------------------------------------------------- */

static void test_planner__stopped_vm__moved_only_with_all(void **state)
{
    (void)state;
    add_host("h2", 64, 16, DS1, 1);
    add_vm("run", "h1", 1, 1);
    add_vm("off", "h1", 1, 1)->running = false;
    plan();
    assert_int_equal(F.plan->n_entries, 1);
    assert_string_equal(F.in.vms[F.plan->entries[0].vm].name, "run");
    F.in.all = true;
    plan();
    assert_int_equal(F.plan->n_entries, 2);
    assert_string_equal(target("off", 0), "h2");
}

/* --- determinism and formatting ----------------------------------------- */

static void build_mixed_cluster(void)
{
    add_host("h2", 32, 16, DS1, 1)->max_concurrent = 1;
    add_host("h3", 32, 16, DS1, 1);
    add_host("h4", 8, 16, DS2, 1);
    add_vm("a", "h1", 4, 2);
    add_vm("b", "h1", 4, 2)->priority = 3;
    add_vm("c", "h1", 40, 2);
    add_vm("d", "h1", 4, 2)->hold = true;
    add_vm("e", "h1", 4, 2);
    F.in.methods = FY_PLAN_METHODS_ALL;
}

static void test_planner__same_input__same_plan(void **state)
{
    (void)state;
    char one[4096], two[4096];
    build_mixed_cluster();
    plan();
    assert_int_equal(fy_plan_format(F.plan, one, sizeof(one)), 0);
    plan();
    assert_int_equal(fy_plan_format(F.plan, two, sizeof(two)), 0);
    assert_string_equal(one, two);

    /* The same cluster listed in reverse order plans the same. */
    struct fy_plan_host hosts[8];
    struct fy_plan_vm vms[16];
    for (size_t i = 0; i < F.in.n_hosts; i++)
        hosts[i] = F.hosts[F.in.n_hosts - 1 - i];
    for (size_t i = 0; i < F.in.n_vms; i++)
        vms[i] = F.vms[F.in.n_vms - 1 - i];
    memcpy(F.hosts, hosts, sizeof(hosts));
    memcpy(F.vms, vms, sizeof(vms));
    plan();
    assert_int_equal(fy_plan_format(F.plan, two, sizeof(two)), 0);
    assert_string_equal(one, two);
}

static void test_planner__format__table_of_waves_vms_and_attempts(void **state)
{
    (void)state;
    char buf[4096];
    build_mixed_cluster();
    F.in.methods = FY_PLAN_METHOD(FY_MIG_LIVE) | FY_PLAN_METHOD(FY_MIG_MOVE);
    plan();
    assert_int_equal(fy_plan_format(F.plan, buf, sizeof(buf)), 0);
    /* e goes to h2 (a tie with h3 broken by name) and waits for b there. */
    assert_string_equal(buf,
        "evacuate h1: 5 VM(s), 2 wave(s)\n"
        "WAVE  VM                   ATTEMPTS\n"
        "1     b                    live->h2, move->h2\n"
        "1     a                    live->h3, move->h3\n"
        "2     e                    live->h2, move->h2\n"
        "-     c                    no host with 40 GiB free memory and 2 free CPUs\n"
        "-     d                    stays: Hold constraint\n");
}

static void test_planner__format_small_buffer__nospace_and_terminated(void **state)
{
    (void)state;
    char buf[16];
    build_mixed_cluster();
    plan();
    assert_int_equal(fy_plan_format(F.plan, buf, sizeof(buf)), -FY_E_NOSPACE);
    assert_int_equal(strlen(buf), sizeof(buf) - 1);
}

/* --- result rules ------------------------------------------------------- */

/* One VM on h1 with the given flags, planned; the result of 'outcome'. */
static enum fy_plan_result one_vm_result(bool hold, bool managed, bool maint, bool busy,
                                         enum fy_plan_outcome outcome)
{
    F.in.n_hosts = 1;
    F.in.n_vms = 0;
    add_host("h2", 64, 16, DS1, 1);
    struct fy_plan_vm *v = add_vm("v", "h1", 1, 1);
    v->hold = hold;
    v->managed = managed;
    v->maintenance = maint;
    v->busy = busy;
    plan();
    assert_int_equal(F.plan->n_entries, 1);
    return fy_planner_result(F.plan, &outcome);
}

static void test_planner__result_vm_moved__ok(void **state)
{
    (void)state;
    assert_int_equal(one_vm_result(false, true, false, false, FY_PLAN_MOVED), FY_PLAN_OK);
}

static void test_planner__result_vm_failed_or_not_attempted__error(void **state)
{
    (void)state;
    assert_int_equal(one_vm_result(false, true, false, false, FY_PLAN_FAILED), FY_PLAN_ERROR);
    assert_int_equal(one_vm_result(false, true, false, false, FY_PLAN_NOT_ATTEMPTED),
                     FY_PLAN_ERROR);
}

static void test_planner__result_rules__checked_hold_unmanaged_maintenance_busy(void **state)
{
    (void)state;
    static const enum fy_plan_outcome not_moved[] = {FY_PLAN_FAILED, FY_PLAN_NOT_ATTEMPTED};
    for (size_t i = 0; i < 2; i++) {
        enum fy_plan_outcome o = not_moved[i];
        /* hold wins over everything */
        assert_int_equal(one_vm_result(true, false, true, true, o), FY_PLAN_OK);
        assert_int_equal(one_vm_result(true, true, false, false, o), FY_PLAN_OK);
        /* unmanaged wins over maintenance and busy */
        assert_int_equal(one_vm_result(false, false, true, true, o), FY_PLAN_OK);
        assert_int_equal(one_vm_result(false, false, false, false, o), FY_PLAN_OK);
        /* maintenance wins over busy */
        assert_int_equal(one_vm_result(false, true, true, true, o), FY_PLAN_WARNING);
        assert_int_equal(one_vm_result(false, true, true, false, o), FY_PLAN_WARNING);
        assert_int_equal(one_vm_result(false, true, false, true, o), FY_PLAN_ERROR);
    }
    /* a VM that did move is fine whatever its flags */
    assert_int_equal(one_vm_result(false, true, false, true, FY_PLAN_MOVED), FY_PLAN_OK);
}

static void test_planner__result_of_several__worst_wins(void **state)
{
    (void)state;
    add_host("h2", 64, 16, DS1, 1);
    add_vm("ok", "h1", 1, 1);
    add_vm("held", "h1", 1, 1)->hold = true;
    add_vm("maint", "h1", 1, 1)->maintenance = true;
    add_vm("busy", "h1", 1, 1)->busy = true;
    plan();
    enum fy_plan_outcome o[4] = {0};
    o[entry_index("ok")] = FY_PLAN_MOVED;
    o[entry_index("busy")] = FY_PLAN_MOVED; /* not really: isolates the warning */
    assert_int_equal(fy_planner_result(F.plan, o), FY_PLAN_WARNING);
    o[entry_index("busy")] = FY_PLAN_NOT_ATTEMPTED;
    assert_int_equal(fy_planner_result(F.plan, o), FY_PLAN_ERROR);
    o[entry_index("busy")] = FY_PLAN_MOVED;
    o[entry_index("maint")] = FY_PLAN_MOVED;
    assert_int_equal(fy_planner_result(F.plan, o), FY_PLAN_OK);
    o[entry_index("ok")] = FY_PLAN_FAILED;
    assert_int_equal(fy_planner_result(F.plan, o), FY_PLAN_ERROR);
    assert_string_equal(fy_plan_result_name(FY_PLAN_WARNING), "warning");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_planner__vm_too_big_for_every_host__no_attempts_and_a_reason),
        T(test_planner__too_few_free_cpus__host_not_chosen),
        T(test_planner__several_vms__planned_memory_counted),
        T(test_planner__equal_candidates__most_free_memory_then_name),
        T(test_planner__eq_group_member_elsewhere__vm_joins_it),
        T(test_planner__eq_group_both_on_evacuated_host__kept_together),
        T(test_planner__ne_group__members_kept_apart),
        T(test_planner__ne_group_stopped_member__does_not_constrain),
        T(test_planner__hold__never_moves_and_no_effect),
        T(test_planner__unmanaged__stays_and_no_effect),
        T(test_planner__vm_in_maintenance__stays_and_warning),
        T(test_planner__busy_vm__stays_and_error),
        T(test_planner__methods_in_any_order__tried_in_canonical_order),
        T(test_planner__no_methods_given__live_then_failover),
        T(test_planner__cold_or_bulk_method__rejected),
        T(test_planner__host_without_datastores__only_for_move_and_storage),
        T(test_planner__only_shared_storage_methods_and_no_host_reaching__reason),
        T(test_planner__move_with_host_reaching_disks__that_host_preferred),
        T(test_planner__target_in_maintenance_or_down__never_chosen),
        T(test_planner__concurrency_limit__moves_split_into_waves),
        T(test_planner__link_limit__moves_to_one_target_split_into_waves),
        T(test_planner__priorities__higher_first),
        T(test_planner__dependencies__moved_first_in_an_earlier_wave),
        T(test_planner__dependency_cycle__config_error_naming_the_vms),
        T(test_planner__unknown_dependency__not_found),
        T(test_planner__unknown_evacuated_host__not_found),
        T(test_planner__reboot_dependents__eligible_dependents_listed),
        T(test_planner__stopped_vm__moved_only_with_all),
        T(test_planner__same_input__same_plan),
        T(test_planner__format__table_of_waves_vms_and_attempts),
        T(test_planner__format_small_buffer__nospace_and_terminated),
        T(test_planner__result_vm_moved__ok),
        T(test_planner__result_vm_failed_or_not_attempted__error),
        T(test_planner__result_rules__checked_hold_unmanaged_maintenance_busy),
        T(test_planner__result_of_several__worst_wins),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
