/* Unit tests of host evacuation: the cluster file (controlplane/cluster.c)
 * and the executor (controlplane/evacuate.c) driving three agents started
 * in this process on loopback (sim driver): the plan of a dry run, moves
 * and the result rules, a method that fails falling back to the next one,
 * stopped VMs with and without --all, dependent reboots, and gang dedup
 * against per-VM dedup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/controlplane/sim_helpers.h"

#include "controlplane/agent.h"
#include "controlplane/cli.h"
#include "controlplane/cluster.h"
#include "controlplane/evacuate.h"
#include "controlplane/rpc.h"
#include "ferry/error.h"

#define KEY "evacuate-test-key-0123456789abcdef"
#define NHOSTS 3
#define MIB (1024ull * 1024ull)

/* ---- the cluster file ---------------------------------------------------- */

static void test_cluster__full_file__every_setting_read(void **state)
{
    static const char text[] =
        "# a cluster\n"
        "[cluster]\n"
        "key = /k\n"
        "methods = Quick Migration, failover\n"
        "link-limit = 2\n"
        "gang-dedup = off\n"
        "\n"
        "[host h1]\n"
        "management = 10.0.0.1:7300   # its ferryd\n"
        "migration = 10.0.1.1\n"
        "provisioning = 10.0.2.1\n"
        "memory = 64G\n"
        "cpus = 32\n"
        "datastores = shared, h1-local\n"
        "state = maintenance\n"
        "max-concurrent = 0\n"
        "[host h2]\n"
        "management = 10.0.0.2:7300\n"
        "[vm web]\n"
        "priority = -3\n"
        "depends-on = db, cache\n"
        "eq = front\n"
        "ne = a, b\n"
        "hold = yes\n"
        "maintenance = true\n"
        "managed = no\n";
    struct fy_cluster c;

    (void)state;
    assert_int_equal(fy_cluster_parse(text, "c.conf", &c), 0);
    assert_string_equal(c.key, "/k");
    assert_int_equal(c.methods, FY_PLAN_METHOD(FY_MIG_QUICK) | FY_PLAN_METHOD(FY_MIG_FAILOVER));
    assert_int_equal(c.link_limit, 2);
    assert_false(c.gang_dedup);
    assert_int_equal(c.n_hosts, 2);
    const struct fy_cluster_host *h = fy_cluster_host(&c, "h1");
    assert_non_null(h);
    assert_string_equal(h->management, "10.0.0.1:7300");
    assert_string_equal(h->migration, "10.0.1.1");
    assert_string_equal(h->provisioning, "10.0.2.1");
    assert_true(h->memory == 64ull << 30);
    assert_int_equal(h->cpus, 32);
    assert_true(h->datastores_set);
    assert_int_equal(h->n_datastores, 2);
    assert_string_equal(h->datastores[1], "h1-local");
    assert_int_equal(h->state, FY_PLAN_HOST_MAINTENANCE);
    assert_int_equal(h->max_concurrent, 0);
    h = fy_cluster_host(&c, "h2");
    assert_int_equal(h->state, FY_PLAN_HOST_HEALTHY);
    assert_int_equal(h->max_concurrent, FY_CLUSTER_DEFAULT_MAX_CONCURRENT);
    assert_false(h->datastores_set);
    const struct fy_cluster_vm *v = fy_cluster_vm(&c, "web");
    assert_non_null(v);
    assert_int_equal(v->priority, -3);
    assert_int_equal(v->n_depends_on, 2);
    assert_string_equal(v->depends_on[1], "cache");
    assert_int_equal(v->n_eq, 1);
    assert_int_equal(v->n_ne, 2);
    assert_true(v->hold && v->maintenance && v->unmanaged);
    assert_null(fy_cluster_vm(&c, "db"));
    fy_cluster_free(&c);
}

/* Parses 'text' and expects FY_E_CONFIG with 'needle' in the message. */
static void expect_bad(const char *text, const char *needle)
{
    struct fy_cluster c;

    assert_int_equal(fy_cluster_parse(text, "c.conf", &c), -FY_E_CONFIG);
    if (!strstr(fy_error_detail(), needle))
        fail_msg("'%s' does not say '%s'", fy_error_detail(), needle);
    fy_cluster_free(&c);
}

static void test_cluster__bad_files__refused_naming_line_and_fix(void **state)
{
    (void)state;
    expect_bad("[host h1]\nmanagement = a:1\nspeed = 9\n", "c.conf:3: unknown setting 'speed'");
    expect_bad("[host h1]\n", "has no management address");
    expect_bad("[cluster]\n", "lists no host");
    expect_bad("[host h1]\nmanagement = a:1\n[host h1]\nmanagement = b:1\n",
               "c.conf:3: host h1 is listed twice");
    expect_bad("[host h1]\nmanagement = a\n", "HOST:PORT");
    expect_bad("[host h1]\nmanagement = a:1\nstate = broken\n", "healthy, maintenance or down");
    expect_bad("[host h1]\nmanagement = a:1\nmemory = lots\n", "size such as 64G");
    expect_bad("[host h1]\nmanagement = a:1\n[vm v]\nhold = perhaps\n", "yes or no");
    expect_bad("[cluster]\nmethods = teleport\n[host h1]\nmanagement = a:1\n",
               "'teleport' is not a method");
    expect_bad("[rack r1]\n", "unknown section");
    expect_bad("just words\n", "expected 'key = value'");
}

static void test_cluster__methods__seed_names_and_kinds_any_case(void **state)
{
    unsigned m = 99;

    (void)state;
    assert_int_equal(fy_cluster_methods_parse("Migration, Failover", &m), 0);
    assert_int_equal(m, FY_PLAN_METHODS_DEFAULT);
    assert_int_equal(fy_cluster_methods_parse("storage-migration,QUICK_MIGRATION ,move", &m), 0);
    assert_int_equal(m, FY_PLAN_METHOD(FY_MIG_STORAGE) | FY_PLAN_METHOD(FY_MIG_QUICK) |
                            FY_PLAN_METHOD(FY_MIG_MOVE));
    assert_int_equal(fy_cluster_methods_parse("live", &m), 0);
    assert_int_equal(m, FY_PLAN_METHOD(FY_MIG_LIVE));
    assert_int_equal(fy_cluster_methods_parse("", &m), 0);
    assert_int_equal(m, 0);
    m = 7;
    assert_int_equal(fy_cluster_methods_parse("live, cold", &m), -FY_E_INVAL);
    assert_int_equal(m, 7);
}

/* ---- ferryctl's output of a report ----------------------------------------- */

static void test_cli__evac_report__summary_savings_split_and_exit_codes(void **state)
{
    static const char rep_text[] =
        "{\"host\":\"h1\",\"result\":\"warning\",\"seconds\":1.5,\"gang\":true,"
        "\"vms\":[{\"name\":\"a\",\"status\":\"moved\",\"host\":\"h2\","
        "\"method\":\"failover\",\"result\":\"ok\",\"attempts\":["
        "{\"method\":\"live\",\"target\":\"h3\",\"migration\":7,\"moved\":false,"
        "\"error\":\"host h3 closed the connection\"},"
        "{\"method\":\"failover\",\"target\":\"h2\",\"moved\":true}]}],"
        "\"totals\":{\"vms\":1,\"moved\":1,\"wire_bytes\":1048576,"
        "\"saved_zero_bytes\":2097152,\"saved_dup_vm_bytes\":3145728,"
        "\"saved_dup_shared_bytes\":4194304}}";
    json_object *rep = json_tokener_parse(rep_text);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);

    (void)state;
    assert_non_null(rep);
    fy_cli_print_evac_summary(f, rep);
    fclose(f);
    assert_non_null(strstr(out, "live->h3 (migration 7) failed, failover->h2 moved"));
    assert_non_null(strstr(out, "host h3 closed the connection"));
    assert_non_null(strstr(out, "2.0 MiB zero pages, 3.0 MiB dedup within a VM, 4.0 MiB "
                                "dedup across VMs"));
    assert_non_null(strstr(out, "Bytes on the wire:  1.0 MiB"));
    assert_int_equal(fy_cli_evac_exit(rep), FY_CLI_EXIT_WARNING);
    json_object_object_add(rep, "result", json_object_new_string("ok"));
    assert_int_equal(fy_cli_evac_exit(rep), FY_CLI_EXIT_OK);
    json_object_object_add(rep, "result", json_object_new_string("error"));
    assert_int_equal(fy_cli_evac_exit(rep), FY_CLI_EXIT_FAILURE);
    free(out);
    json_object_put(rep);
}

/* ---- a cluster of agents in this process --------------------------------- */

struct fx {
    char dir[64], keyfile[96];
    struct fy_rpc_key key;
    unsigned port[NHOSTS];
    struct fy_agent *a[NHOSTS];
    struct fy_cluster cl;
    char extra[2048]; /* appended to the cluster file */
};

static unsigned free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void start_agent(struct fx *f, unsigned i)
{
    struct fy_agent_config cfg = {0};

    snprintf(cfg.host, sizeof(cfg.host), "h%u", i + 1);
    snprintf(cfg.driver, sizeof(cfg.driver), "sim");
    snprintf(cfg.driver_config, sizeof(cfg.driver_config),
             "state=%s/h%u;mem=1G;cpus=8;datastores=shared:4G:shared,local-h%u:4G", f->dir,
             i + 1, i + 1);
    snprintf(cfg.drivers_dir, sizeof(cfg.drivers_dir), "%s", FY_TEST_DRIVERS_DIR);
    snprintf(cfg.key, sizeof(cfg.key), "%s", f->keyfile);
    snprintf(cfg.store, sizeof(cfg.store), "%s/h%u.db", f->dir, i + 1);
    snprintf(cfg.management, sizeof(cfg.management), "127.0.0.1:%u", f->port[i]);
    snprintf(cfg.migration, sizeof(cfg.migration), "127.0.0.1");
    for (unsigned k = 0; k < NHOSTS; k++) {
        if (k == i)
            continue;
        struct fy_peer *p = &cfg.peers[cfg.npeers++];
        snprintf(p->name, sizeof(p->name), "h%u", k + 1);
        snprintf(p->addr, sizeof(p->addr), "127.0.0.1:%u", f->port[k]);
    }
    if (fy_agent_start(&cfg, &f->a[i]) < 0)
        fail_msg("agent h%u: %s", i + 1, fy_error_detail());
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    FILE *k;

    snprintf(f->dir, sizeof(f->dir), "/tmp/ferry-evac-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->keyfile, sizeof(f->keyfile), "%s/key", f->dir);
    assert_non_null(k = fopen(f->keyfile, "w"));
    fputs(KEY, k);
    fclose(k);
    chmod(f->keyfile, 0600);
    assert_int_equal(fy_rpc_key_load(f->keyfile, &f->key), 0);
    for (unsigned i = 0; i < NHOSTS; i++)
        f->port[i] = free_port();
    for (unsigned i = 0; i < NHOSTS; i++)
        start_agent(f, i);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    for (unsigned i = 0; i < NHOSTS; i++)
        fy_agent_stop(f->a[i]);
    fy_cluster_free(&f->cl);
    rm_rf(f->dir);
    free(f);
    return 0;
}

/* The cluster file: every host, then f->extra. */
static void load_cluster(struct fx *f)
{
    char text[4096];
    size_t off = 0;

    for (unsigned i = 0; i < NHOSTS; i++)
        off += (size_t)snprintf(text + off, sizeof(text) - off,
                                "[host h%u]\nmanagement = 127.0.0.1:%u\n", i + 1, f->port[i]);
    snprintf(text + off, sizeof(text) - off, "%s", f->extra);
    fy_cluster_free(&f->cl);
    if (fy_cluster_parse(text, "test.conf", &f->cl) < 0)
        fail_msg("cluster file: %s", fy_error_detail());
}

static json_object *call(struct fx *f, unsigned host, const char *method, json_object *params)
{
    char addr[32];
    struct fy_rpc_conn *c = NULL;
    json_object *res = NULL;

    snprintf(addr, sizeof(addr), "127.0.0.1:%u", f->port[host]);
    if (fy_rpc_connect(addr, &f->key, 10000, &c) < 0 ||
        fy_rpc_call(c, method, params, &res, NULL, NULL, 30000) < 0)
        fail_msg("%s at h%u: %s", method, host + 1, fy_error_detail());
    fy_rpc_close(c);
    return res;
}

/* Defines VM 'name' at host 'host' (0-based): 'mib' MiB, disk on the shared
 * datastore, 'lines' added to its configuration. */
static void define_vm(struct fx *f, unsigned host, const char *name, unsigned mib, bool start,
                      const char *lines)
{
    char cfg[1024];
    json_object *p = json_object_new_object();

    snprintf(cfg, sizeof(cfg), "name %s\nmem %uM\nvcpus 1\n"
             "disk vda ds=shared size=16M\n%s", name, mib, lines ? lines : "");
    json_object_object_add(p, "config", json_object_new_string(cfg));
    json_object_object_add(p, "start", json_object_new_boolean(start));
    json_object_put(call(f, host, "agent.define", p));
}

/* Where VM 'name' is (host index, or -1 if nowhere; fails if on two), and
 * its power state into 'power'. */
static int where(struct fx *f, const char *name, char *power, size_t n)
{
    int at = -1;

    for (unsigned h = 0; h < NHOSTS; h++) {
        json_object *res = call(f, h, "agent.list", NULL), *vms;
        assert_true(json_object_object_get_ex(res, "vms", &vms));
        for (size_t i = 0; i < json_object_array_length(vms); i++) {
            json_object *v = json_object_array_get_idx(vms, i), *o;
            json_object_object_get_ex(v, "name", &o);
            if (strcmp(json_object_get_string(o), name) != 0)
                continue;
            if (at >= 0)
                fail_msg("VM %s is on h%d and h%u", name, at + 1, h + 1);
            at = (int)h;
            json_object_object_get_ex(v, "power", &o);
            if (power)
                snprintf(power, n, "%s", json_object_get_string(o));
        }
        json_object_put(res);
    }
    return at;
}

static json_object *evacuate(struct fx *f, const char *host, struct fy_evac_opts o)
{
    json_object *rep = NULL;

    load_cluster(f);
    o.cluster = &f->cl;
    o.host = host;
    o.key = &f->key;
    if (fy_evacuate(&o, &rep) < 0)
        fail_msg("evacuate %s: %s", host, fy_error_detail());
    return rep;
}

static const char *str(const json_object *o, const char *k)
{
    json_object *v;
    return o && json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : "";
}

static int64_t num(const json_object *o, const char *k)
{
    json_object *v;
    return o && json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : 0;
}

/* The report's entry of VM 'name'. */
static json_object *vm_of(const json_object *rep, const char *name)
{
    json_object *vms;

    assert_true(json_object_object_get_ex(rep, "vms", &vms));
    for (size_t i = 0; i < json_object_array_length(vms); i++) {
        json_object *v = json_object_array_get_idx(vms, i);
        if (!strcmp(str(v, "name"), name))
            return v;
    }
    fail_msg("VM %s is not in the report", name);
    return NULL;
}

static json_object *totals(const json_object *rep)
{
    json_object *t = NULL;
    assert_true(json_object_object_get_ex(rep, "totals", &t));
    return t;
}

/* ---- evacuations ----------------------------------------------------------- */

static void test_evacuate__dry_run__plan_and_expected_result_nothing_moves(void **state)
{
    struct fx *f = *state;

    define_vm(f, 0, "a", 16, true, NULL);
    define_vm(f, 0, "held", 16, true, NULL);
    define_vm(f, 0, "maint", 16, true, NULL);
    define_vm(f, 0, "off", 16, false, NULL);
    snprintf(f->extra, sizeof(f->extra), "[vm held]\nhold = yes\n[vm maint]\nmaintenance = yes\n");
    json_object *rep = evacuate(f, "h1", (struct fy_evac_opts){.dry_run = true, .gang = -1});

    assert_string_equal(str(rep, "state"), "planned");
    assert_string_equal(str(rep, "result"), "warning"); /* maint stays */
    assert_string_equal(str(vm_of(rep, "a"), "status"), "planned");
    assert_string_equal(str(vm_of(rep, "a"), "disposition"), "move");
    assert_int_equal(num(vm_of(rep, "a"), "wave"), 1);
    assert_string_equal(str(vm_of(rep, "held"), "disposition"), "hold");
    assert_string_equal(str(vm_of(rep, "held"), "result"), "ok");
    assert_string_equal(str(vm_of(rep, "maint"), "result"), "warning");
    assert_string_equal(str(vm_of(rep, "off"), "disposition"), "stopped");
    assert_non_null(strstr(str(rep, "plan"), "live->h"));
    assert_int_equal(where(f, "a", NULL, 0), 0);
    json_object_put(rep);
}

static void test_evacuate__running_vms__moved_running_hold_and_maintenance_stay(void **state)
{
    struct fx *f = *state;
    char power[16];

    define_vm(f, 0, "a", 16, true, NULL);
    define_vm(f, 0, "b", 16, true, NULL);
    define_vm(f, 0, "held", 16, true, NULL);
    define_vm(f, 0, "maint", 16, true, NULL);
    define_vm(f, 0, "off", 16, false, NULL);
    define_vm(f, 1, "c", 16, true, NULL);
    /* b must be kept apart from c, which is on h2. */
    snprintf(f->extra, sizeof(f->extra), "[vm held]\nhold = yes\n[vm maint]\nmaintenance = yes\n"
             "[vm b]\nne = apart\n[vm c]\nne = apart\n");
    json_object *rep = evacuate(f, "h1", (struct fy_evac_opts){.gang = -1});

    assert_string_equal(str(rep, "result"), "warning");
    assert_int_equal(num(totals(rep), "moved"), 2);
    assert_int_equal(num(totals(rep), "failed"), 0);
    assert_string_equal(str(vm_of(rep, "a"), "status"), "moved");
    assert_string_equal(str(vm_of(rep, "a"), "method"), "live");
    assert_int_not_equal(where(f, "a", power, sizeof(power)), 0);
    assert_string_equal(power, "running");
    assert_int_equal(where(f, "b", power, sizeof(power)), 2); /* NE: not with c on h2 */
    assert_string_equal(power, "running");
    assert_int_equal(where(f, "held", NULL, 0), 0);
    assert_int_equal(where(f, "maint", NULL, 0), 0);
    assert_int_equal(where(f, "off", power, sizeof(power)), 0); /* stopped: stays */
    assert_string_equal(power, "off");
    assert_true(num(totals(rep), "wire_bytes") > 0);
    assert_true(num(totals(rep), "saved_zero_bytes") > 0);
    json_object_put(rep);
}

static void test_evacuate__live_refused__falls_back_to_failover_attempts_recorded(void **state)
{
    struct fx *f = *state;
    char power[16];

    /* A USB device makes every migration's prechecks refuse; failover
     * registers the VM elsewhere from shared storage. */
    define_vm(f, 0, "usb1", 16, true, "usb stick0\n");
    json_object *rep = evacuate(f, "h1", (struct fy_evac_opts){.gang = -1});
    json_object *v = vm_of(rep, "usb1"), *atts;

    assert_string_equal(str(rep, "result"), "ok");
    assert_string_equal(str(v, "status"), "moved");
    assert_string_equal(str(v, "method"), "failover");
    assert_true(json_object_object_get_ex(v, "attempts", &atts));
    assert_int_equal(json_object_array_length(atts), 2);
    json_object *a0 = json_object_array_get_idx(atts, 0), *a1 = json_object_array_get_idx(atts, 1);
    assert_string_equal(str(a0, "method"), "live");
    assert_non_null(strstr(str(a0, "error"), "USB"));
    assert_string_equal(str(a1, "method"), "failover");
    assert_string_equal(str(a1, "state"), "succeeded");
    assert_int_not_equal(where(f, "usb1", power, sizeof(power)), 0);
    assert_string_equal(power, "running");
    json_object_put(rep);
}

static void test_evacuate__only_live_and_it_fails__error_vm_stays_running(void **state)
{
    struct fx *f = *state;
    char power[16];

    define_vm(f, 0, "usb1", 16, true, "usb stick0\n");
    json_object *rep = evacuate(f, "h1", (struct fy_evac_opts){
                                               .methods = FY_PLAN_METHOD(FY_MIG_LIVE), .gang = -1});

    assert_string_equal(str(rep, "result"), "error");
    assert_string_equal(str(vm_of(rep, "usb1"), "status"), "failed");
    assert_string_equal(str(vm_of(rep, "usb1"), "result"), "error");
    assert_int_equal(where(f, "usb1", power, sizeof(power)), 0);
    assert_string_equal(power, "running");
    json_object_put(rep);
}

static void test_evacuate__target_agent_gone__treated_as_down_others_used(void **state)
{
    struct fx *f = *state;

    define_vm(f, 0, "a", 16, true, NULL);
    define_vm(f, 0, "b", 16, true, NULL);
    fy_agent_stop(f->a[1]);
    f->a[1] = NULL;
    json_object *rep = evacuate(f, "h1", (struct fy_evac_opts){.gang = -1});

    assert_string_equal(str(rep, "result"), "ok");
    assert_int_equal(num(totals(rep), "moved"), 2);
    assert_string_equal(str(vm_of(rep, "a"), "host"), "h3");
    assert_string_equal(str(vm_of(rep, "b"), "host"), "h3");
    json_object_put(rep);
    start_agent(f, 1); /* for where() and the teardown */
}

static void test_evacuate__all__stopped_vm_moved_and_stays_off(void **state)
{
    struct fx *f = *state;
    char power[16];

    define_vm(f, 0, "off", 16, false, NULL);
    json_object *rep = evacuate(f, "h1", (struct fy_evac_opts){.all = true, .gang = -1});

    assert_string_equal(str(rep, "result"), "ok");
    assert_string_equal(str(vm_of(rep, "off"), "status"), "moved");
    assert_int_not_equal(where(f, "off", power, sizeof(power)), 0);
    assert_string_equal(power, "off");
    json_object_put(rep);
}

static void test_evacuate__dependencies__order_kept_and_dependent_rebooted(void **state)
{
    struct fx *f = *state;

    define_vm(f, 0, "db", 16, true, NULL);
    define_vm(f, 0, "app", 16, true, NULL);
    define_vm(f, 1, "web", 16, true, NULL);
    snprintf(f->extra, sizeof(f->extra), "[vm app]\ndepends-on = db\npriority = 9\n"
             "[vm web]\ndepends-on = app\n");
    json_object *rep = evacuate(f, "h1", (struct fy_evac_opts){.reboot_dependents = true,
                                                               .gang = -1});
    json_object *log, *rb;

    assert_string_equal(str(rep, "result"), "ok");
    assert_int_equal(num(vm_of(rep, "db"), "wave"), 1);
    assert_int_equal(num(vm_of(rep, "app"), "wave"), 2);
    /* app, though of higher priority, started after db had moved. */
    assert_true(json_object_object_get_ex(rep, "log", &log));
    int db_moved = -1, app_started = -1;
    for (size_t i = 0; i < json_object_array_length(log); i++) {
        const char *l = json_object_get_string(json_object_array_get_idx(log, i));
        if (strstr(l, "] db: moved"))
            db_moved = (int)i;
        if (strstr(l, "] app: live to"))
            app_started = (int)i;
    }
    assert_true(db_moved >= 0 && app_started > db_moved);
    /* Both depend on a VM that moved; app, itself moved, is rebooted again
     * after (seed 004: a VM the evacuation started may be rebooted). */
    assert_true(json_object_object_get_ex(rep, "reboots", &rb));
    assert_int_equal(json_object_array_length(rb), 2);
    assert_string_equal(str(json_object_array_get_idx(rb, 0), "vm"), "app");
    assert_string_equal(str(json_object_array_get_idx(rb, 1), "vm"), "web");
    assert_string_equal(str(json_object_array_get_idx(rb, 0), "status"), "rebooted");
    assert_string_equal(str(json_object_array_get_idx(rb, 1), "status"), "rebooted");
    json_object_put(rep);
}

static void test_evacuate__unknown_host__notfound(void **state)
{
    struct fx *f = *state;
    json_object *rep = NULL;
    struct fy_evac_opts o = {.host = "h9", .key = &f->key, .gang = -1};

    load_cluster(f);
    o.cluster = &f->cl;
    assert_int_equal(fy_evacuate(&o, &rep), -FY_E_NOTFOUND);
    assert_null(rep);
    assert_non_null(strstr(fy_error_detail(), "h9"));
}

/* Four VMs, 40 % of whose pages are the same across them (and unique
 * within each), 30 % zero and 30 % their own, nothing writing them: moved
 * h1 -> h2 with per-VM dedup, then back with gang dedup (h3 is in
 * maintenance, so one target takes all four). */
static void test_evacuate__gang_dedup__shared_content_crosses_once(void **state)
{
    struct fx *f = *state;
    int64_t wire[2], shared[2];

    for (unsigned i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof(name), "g%u", i);
        define_vm(f, 0, name, 32, true,
                  "workload rate=0 shared-seed=11 zero=30 shared=40 pool=0\n");
    }
    for (int gang = 0; gang <= 1; gang++) {
        char text[1024];
        json_object *rep = NULL;
        struct fy_evac_opts o = {.key = &f->key, .gang = gang, .host = gang ? "h2" : "h1"};

        snprintf(text, sizeof(text), "[host h1]\nmanagement = 127.0.0.1:%u\n"
                 "[host h2]\nmanagement = 127.0.0.1:%u\n"
                 "[host h3]\nmanagement = 127.0.0.1:%u\nstate = maintenance\n",
                 f->port[0], f->port[1], f->port[2]);
        fy_cluster_free(&f->cl);
        assert_int_equal(fy_cluster_parse(text, "gang.conf", &f->cl), 0);
        o.cluster = &f->cl;
        if (fy_evacuate(&o, &rep) < 0)
            fail_msg("evacuate: %s", fy_error_detail());
        assert_string_equal(str(rep, "result"), "ok");
        assert_int_equal(num(totals(rep), "moved"), 4);
        assert_true(json_object_get_boolean(json_object_object_get(rep, "gang")) == gang);
        wire[gang] = num(totals(rep), "wire_bytes");
        shared[gang] = num(totals(rep), "saved_dup_shared_bytes");
        json_object_put(rep);
    }
    print_message("gang dedup: per-VM dedup %lld bytes on the wire, gang %lld (%.1f %%); "
                  "saved across VMs %lld\n", (long long)wire[0], (long long)wire[1],
                  100.0 * (double)wire[1] / (double)wire[0], (long long)shared[1]);
    assert_int_equal(shared[0], 0);
    assert_true(shared[1] > 0);
    /* Ideal: 0.4 + 4 * 0.3 = 1.6 VMs' worth against 4 * 0.7 = 2.8: 57 %. */
    assert_true(wire[1] * 10 <= wire[0] * 7);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cluster__full_file__every_setting_read),
        cmocka_unit_test(test_cluster__bad_files__refused_naming_line_and_fix),
        cmocka_unit_test(test_cluster__methods__seed_names_and_kinds_any_case),
        cmocka_unit_test(test_cli__evac_report__summary_savings_split_and_exit_codes),
        T(test_evacuate__dry_run__plan_and_expected_result_nothing_moves),
        T(test_evacuate__running_vms__moved_running_hold_and_maintenance_stay),
        T(test_evacuate__live_refused__falls_back_to_failover_attempts_recorded),
        T(test_evacuate__only_live_and_it_fails__error_vm_stays_running),
        T(test_evacuate__target_agent_gone__treated_as_down_others_used),
        T(test_evacuate__all__stopped_vm_moved_and_stays_off),
        T(test_evacuate__dependencies__order_kept_and_dependent_rebooted),
        T(test_evacuate__unknown_host__notfound),
        T(test_evacuate__gang_dedup__shared_content_crosses_once),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
