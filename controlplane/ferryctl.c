/* ferryctl: the command line of a Ferry cluster, virsh-like (docs/agent.md).
 * It talks to host agents (ferryd) over the authenticated control API; the
 * output is formatted by cli.c. */
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "controlplane/cli.h"
#include "controlplane/cluster.h"
#include "controlplane/evacuate.h"
#include "controlplane/rpc.h"
#include "ferry/error.h"

#define CONNECT_TIMEOUT_MS 10000
#define CALL_TIMEOUT_MS 60000 /* per frame: migrations report every second */
#define DEFAULT_HOST "127.0.0.1:7300"
#define DEFAULT_KEY "/etc/ferry/cluster.key"
#define DEFAULT_CLUSTER "/etc/ferry/cluster.conf"

static const char usage_text[] =
    "Usage: ferryctl [--host ADDR:PORT] [--key FILE] [--json] COMMAND [ARGS...]\n"
    "\n"
    "Talks to the Ferry agent (ferryd) at --host, authenticating with the cluster\n"
    "key in --key.\n"
    "\n"
    "Commands:\n"
    "  hosts                      this agent's host and its peers, with reachability\n"
    "  list [HOST]                the VMs of HOST (default: the --host agent's host)\n"
    "  migrate [--live|--cold|--quick] VM [--from HOST] --to HOST\n"
    "          [--downtime-ms N] [--streams N] [--power-on] [--mode MODE]\n"
    "                             migrates VM (default --live); --from defaults to\n"
    "                             the --host agent's host; shows progress\n"
    "                             (ferryctl migrate --help: the kinds and modes)\n"
    "  jobinfo MIG                a migration's figures, like virsh domjobinfo\n"
    "  events MIG                 a migration's event log\n"
    "  migrations                 the migrations this agent's host ran\n"
    "  summary MIG                a finished migration's summary: time, downtime,\n"
    "                             bytes on the wire, zero/duplicate savings, verification\n"
    "  cancel MIG                 cancels a running migration (before its switchover)\n"
    "  define FILE [--start]      defines a VM from a configuration file (the\n"
    "                             driver's format) at the --host agent's host\n"
    "  evacuate HOST [--cluster FILE] [--dry-run] [--methods LIST] [--all]\n"
    "          [--reboot-dependents] [--gang|--no-gang] [--downtime-ms N] [--streams N]\n"
    "                             moves every running VM (--all: every VM) off HOST\n"
    "                             to the healthy hosts of the cluster file (default:\n"
    "                             $FERRY_CLUSTER, else " DEFAULT_CLUSTER "), each by the\n"
    "                             methods of LIST tried in canonical order (Migration,\n"
    "                             Quick Migration, Move, Storage Migration, Failover;\n"
    "                             default \"Migration, Failover\"); --dry-run prints the\n"
    "                             plan; shows progress, then a summary\n"
    "\n"
    "HOST is a host name known to the --host agent (see `ferryctl hosts`) or an\n"
    "agent's ADDR:PORT.  MIG is a migration id; migrations, their jobinfo and\n"
    "events are kept by the agent of the migration's source host.\n"
    "\n"
    "Options:\n"
    "  --host ADDR:PORT   the agent to talk to (default: $FERRY_HOST, else "
    DEFAULT_HOST ")\n"
    "  --key FILE         the cluster key file, mode 0600 (default: $FERRY_KEY, else\n"
    "                     " DEFAULT_KEY ")\n"
    "  --json             print one JSON document instead of text\n"
    "  -h, --help         print this help\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error, 3 refused by a precheck,\n"
    "4 cannot connect or authenticate to an agent, 5 evacuation done with a warning\n"
    "(evacuate exits 1 when a VM that had to move did not; --dry-run exits as the\n"
    "plan's expected result).\n";

struct ctl {
    const char *host;
    const char *key_path;
    bool key_given;           /* --key or FERRY_KEY: wins over the cluster file's */
    bool json;
    struct fy_rpc_key key;
    bool key_loaded;
};

/* ---- errors ------------------------------------------------------------------ */

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "ferryctl: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun `ferryctl --help` for usage.\n");
    return FY_CLI_EXIT_USAGE;
}

/* Reports a failure (fy_error_detail()) and returns the exit status. */
static int fail(const struct ctl *c, int rc, bool connecting, const char *extra)
{
    const char *hint = fy_cli_hint(rc, connecting);
    int code = fy_cli_exit_code(rc, connecting);

    if (c->json) {
        json_object *o = json_object_new_object(), *e = json_object_new_object();
        json_object_object_add(e, "code", json_object_new_string(fy_errname(rc)));
        json_object_object_add(e, "message", json_object_new_string(fy_error_detail()));
        if (hint)
            json_object_object_add(e, "hint", json_object_new_string(hint));
        json_object_object_add(e, "exit", json_object_new_int(code));
        json_object_object_add(o, "error", e);
        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
        json_object_put(o);
    } else {
        fprintf(stderr, "ferryctl: %s\n", fy_error_detail());
        if (hint)
            fprintf(stderr, "ferryctl: %s\n", hint);
        if (extra)
            fprintf(stderr, "ferryctl: %s\n", extra);
    }
    return code;
}

/* ---- talking to agents ---------------------------------------------------------- */

static int connect_to(struct ctl *c, const char *addr, struct fy_rpc_conn **conn)
{
    int rc;

    if (!c->key_loaded) {
        if ((rc = fy_rpc_key_load(c->key_path, &c->key)) < 0)
            return rc;
        c->key_loaded = true;
    }
    return fy_rpc_connect(addr, &c->key, CONNECT_TIMEOUT_MS, conn);
}

/* Calls 'method' at 'addr'; the exit status, or 0 with '*res'. */
static int call(struct ctl *c, const char *addr, const char *method, json_object *params,
                json_object **res)
{
    struct fy_rpc_conn *conn = NULL;
    int rc;

    *res = NULL;
    if ((rc = connect_to(c, addr, &conn)) < 0) {
        json_object_put(params);
        return fail(c, rc, true, NULL);
    }
    rc = fy_rpc_call(conn, method, params, res, NULL, NULL, CALL_TIMEOUT_MS);
    fy_rpc_close(conn);
    return rc < 0 ? fail(c, rc, false, NULL) : 0;
}

/* The management address of HOST: as given when it is ADDR:PORT, else its
 * entry in the --host agent's agent.hosts.  An exit status on failure. */
static int resolve(struct ctl *c, const char *host, char *out, size_t n)
{
    json_object *res = NULL, *hs;
    int rc;

    if (strchr(host, ':')) {
        snprintf(out, n, "%s", host);
        return 0;
    }
    if ((rc = call(c, c->host, "agent.hosts", NULL, &res)) != 0)
        return rc;
    rc = -1;
    if (json_object_object_get_ex(res, "hosts", &hs)) {
        for (size_t i = 0; i < json_object_array_length(hs); i++) {
            json_object *h = json_object_array_get_idx(hs, i), *v, *a;
            if (json_object_object_get_ex(h, "name", &v) &&
                strcmp(json_object_get_string(v), host) == 0 &&
                json_object_object_get_ex(h, "management", &a)) {
                snprintf(out, n, "%s", json_object_get_string(a));
                rc = 0;
            }
        }
    }
    json_object_put(res);
    if (rc == 0)
        return 0;
    fy_error(FY_E_NOTFOUND, "host %s is not known to the agent at %s: see `ferryctl hosts`, "
             "or give the agent's ADDR:PORT", host, c->host);
    return fail(c, -FY_E_NOTFOUND, false, NULL);
}

static void print_json(const json_object *o)
{
    printf("%s\n", json_object_to_json_string_ext((json_object *)o, JSON_C_TO_STRING_PRETTY));
}

/* ---- commands ---------------------------------------------------------------------- */

static int cmd_hosts(struct ctl *c, int argc, char **argv)
{
    json_object *res;
    int rc;

    (void)argv;
    if (argc != 1)
        return usage_error("hosts takes no arguments");
    if ((rc = call(c, c->host, "agent.hosts", NULL, &res)) != 0)
        return rc;
    if (c->json)
        print_json(res);
    else
        fy_cli_print_hosts(stdout, res);
    json_object_put(res);
    return 0;
}

static int cmd_list(struct ctl *c, int argc, char **argv)
{
    char addr[256];
    json_object *res;
    int rc;

    if (argc > 2)
        return usage_error("usage: list [HOST]");
    snprintf(addr, sizeof(addr), "%s", c->host);
    if (argc == 2 && (rc = resolve(c, argv[1], addr, sizeof(addr))) != 0)
        return rc;
    if ((rc = call(c, addr, "agent.list", NULL, &res)) != 0)
        return rc;
    if (c->json)
        print_json(res);
    else
        fy_cli_print_vms(stdout, res);
    json_object_put(res);
    return 0;
}

/* Parses a migration id argument. */
static int mig_id(const char *cmd, int argc, char **argv, int64_t *id)
{
    char *end;

    if (argc != 2)
        return usage_error("usage: %s MIG (a migration id; see `ferryctl migrations`)", cmd);
    *id = strtoll(argv[1], &end, 10);
    if (*end || *id <= 0)
        return usage_error("%s: '%s' is not a migration id (a positive number)", cmd, argv[1]);
    return 0;
}

static json_object *id_params(int64_t id)
{
    json_object *p = json_object_new_object();
    json_object_object_add(p, "id", json_object_new_int64(id));
    return p;
}

static int cmd_by_id(struct ctl *c, int argc, char **argv, const char *method,
                     void (*print)(FILE *, const json_object *))
{
    json_object *res;
    int64_t id = 0;
    int rc;

    if ((rc = mig_id(argv[0], argc, argv, &id)) != 0)
        return rc;
    if ((rc = call(c, c->host, method, id_params(id), &res)) != 0)
        return rc;
    if (c->json)
        print_json(res);
    else if (print)
        print(stdout, res);
    else
        printf("Cancel of migration %" PRId64 " requested.\n", id);
    json_object_put(res);
    return 0;
}

static int cmd_migrations(struct ctl *c, int argc, char **argv)
{
    json_object *res;
    int rc;

    (void)argv;
    if (argc != 1)
        return usage_error("migrations takes no arguments");
    if ((rc = call(c, c->host, "agent.migrations", NULL, &res)) != 0)
        return rc;
    if (c->json)
        print_json(res);
    else
        fy_cli_print_migrations(stdout, res);
    json_object_put(res);
    return 0;
}

static int cmd_define(struct ctl *c, int argc, char **argv)
{
    json_object *p, *res;
    const char *file = NULL;
    bool start = false;
    char *text = NULL;
    size_t len = 0;
    FILE *fp;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--start") == 0)
            start = true;
        else if (!file && argv[i][0] != '-')
            file = argv[i];
        else
            return usage_error("define: unexpected '%s'; usage: define FILE [--start]",
                               argv[i]);
    }
    if (!file)
        return usage_error("usage: define FILE [--start]");
    if (!(fp = fopen(file, "r"))) {
        fy_error_sys("cannot read VM configuration %s", file);
        return fail(c, -FY_E_SYS, false, NULL);
    }
    if (getdelim(&text, &len, '\0', fp) < 0) {
        fclose(fp);
        free(text);
        fy_error(FY_E_IO, "VM configuration %s is empty", file);
        return fail(c, -FY_E_IO, false, NULL);
    }
    fclose(fp);
    p = json_object_new_object();
    json_object_object_add(p, "config", json_object_new_string(text));
    json_object_object_add(p, "start", json_object_new_boolean(start));
    free(text);
    if ((rc = call(c, c->host, "agent.define", p, &res)) != 0)
        return rc;
    if (c->json) {
        print_json(res);
    } else {
        json_object *n;
        json_object_object_get_ex(res, "name", &n);
        printf("VM %s defined%s\n", json_object_get_string(n), start ? " and started" : "");
    }
    json_object_put(res);
    return 0;
}

/* The summary of the record in an agent.events result. */
static void print_summary(FILE *f, const json_object *res)
{
    json_object *m = NULL;

    if (json_object_object_get_ex(res, "migration", &m))
        fy_cli_print_summary(f, m);
}

/* ---- migrate ------------------------------------------------------------------- */

struct progress {
    bool tty, json;
    int width;
    int64_t id;
    char last[512]; /* plain lines: the last one printed, without numbers */
};

static void on_progress(void *ctx, const json_object *p)
{
    struct progress *pr = ctx;
    json_object *v;
    char line[512], key[160];
    int64_t id = 0, round = 0;

    if (pr->json)
        return;
    if (json_object_object_get_ex(p, "id", &v))
        id = json_object_get_int64(v);
    if (json_object_object_get_ex(p, "round", &v))
        round = json_object_get_int64(v);
    if (id && !pr->id) {
        pr->id = id;
        if (pr->tty)
            printf("\r\033[K");
        printf("Migration %" PRId64 " started (cancel: ferryctl cancel %" PRId64
               "; events: ferryctl events %" PRId64 ")\n", id, id, id);
    }
    if (pr->tty) {
        fy_cli_progress(line, sizeof(line), p, 30);
        if ((int)strlen(line) > pr->width - 1)
            line[pr->width > 1 ? pr->width - 1 : 0] = '\0';
        printf("\r\033[K%s", line);
        fflush(stdout);
        return;
    }
    /* Plain: a line per action and per round, not per tick. */
    json_object_object_get_ex(p, "action", &v);
    snprintf(key, sizeof(key), "%s/%" PRId64, v ? json_object_get_string(v) : "", round);
    if (strcmp(key, pr->last) == 0)
        return;
    snprintf(pr->last, sizeof(pr->last), "%s", key);
    printf("%s\n", fy_cli_progress(line, sizeof(line), p, 0));
    fflush(stdout);
}

static int terminal_width(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
        return ws.ws_col;
    return 80;
}

static const char migrate_usage_text[] =
    "Usage: ferryctl migrate [--live|--cold|--quick] VM [--from HOST] --to HOST\n"
    "                        [--downtime-ms N] [--streams N] [--power-on]\n"
    "                        [--mode stream|ram-direct]\n"
    "\n"
    "Moves VM from --from (default: the --host agent's host) to --to, shows\n"
    "progress, then prints the summary: time, downtime, bytes on the wire, pages\n"
    "sent, zero and duplicate, verification.  The agent of the source host runs\n"
    "it and keeps its event log (ferryctl events MIG).\n"
    "\n"
    "  --live           (default) the VM keeps running while its memory is copied\n"
    "                   in rounds; then it is paused for the last dirty pages and\n"
    "                   its device state, and resumed at the target\n"
    "  --quick          the VM is paused, its memory and device state move, it\n"
    "                   resumes at the target\n"
    "  --cold           the VM is shut down (if running), its disks and its\n"
    "                   configuration move, it starts at the target if it ran\n"
    "  --downtime-ms N  live: the pause the last round aims for (default 300)\n"
    "  --streams N      dataplane TCP streams (default 2); stream mode: QEMU's\n"
    "                   multifd channels (Ferry adds one stream for the main one)\n"
    "  --mode M         live: how memory moves (default: stream where both hosts'\n"
    "                   drivers have it and no disk moves, else ram-direct)\n"
    "                   stream      QEMU migrates itself, Ferry carries it\n"
    "                   ram-direct  Ferry copies guest RAM region to region\n"
    "  --power-on       cold: start the VM at the target even if it was off\n"
    "  --fail-at ACTION test hook: the workflow action ACTION (InvokePrechecks,\n"
    "                   PrepareDestination, SwitchHostAndPool, ... docs/workflow.md)\n"
    "                   fails instead of running; before the switchover the VM\n"
    "                   stays at the source, after it the migration rolls forward\n"
    "\n"
    "QEMU guests (libvirt driver, docs/libvirt.md) migrate live in stream mode:\n"
    "QEMU runs its own migration (multifd, its dirty tracking, --downtime-ms as\n"
    "its downtime limit, auto-converge) to a socket of the source agent; Ferry\n"
    "carries every channel over the dataplane (tcp transport), pages the target\n"
    "already holds as references, and rebuilds QEMU's stream at the target.\n"
    "Downtime is QEMU's: it follows the dirty set, not the RAM size.  (Under\n"
    "TCG, no KVM, QEMU before 9.0 loses dirty pages in its own migration and\n"
    "may leave the guest corrupt: docs/libvirt.md; use --mode ram-direct.)  Quick\n"
    "migration, and live with --mode ram-direct (or when disks move), are\n"
    "RAM-direct: guest RAM must be a shared memory backend (memfd or file);\n"
    "Ferry copies it from the source QEMU's memory straight into a paused QEMU\n"
    "at the target, pages deduplicated, zero pages elided, digests verified, and\n"
    "QEMU saves only the device state (a few hundred KB), which crosses the\n"
    "dataplane too.  Ferry finds dirty pages by re-hashing all of RAM, so the\n"
    "downtime grows with RAM: measured on 2 shared cores, quick 160-250 ms at\n"
    "128 MiB and 300-630 ms at 1 GiB, live RAM-direct 40-70 ms at 128-512 MiB\n"
    "and 80-180 ms at 1 GiB (the curve: docs/libvirt.md, \"Measured\").\n"
    "\n"
    "Exit status: 0 success, 1 failure (the event log says where it stopped),\n"
    "2 usage error, 3 refused by a precheck, 4 cannot reach an agent.\n";

static int cmd_migrate(struct ctl *c, int argc, char **argv)
{
    const char *kind = "live", *vm = NULL, *from = NULL, *to = NULL, *fail_at = NULL;
    const char *mode = NULL;
    long downtime = 0, streams = 0;
    bool power_on = false;
    struct progress pr = {.json = c->json};
    struct fy_rpc_conn *conn = NULL;
    json_object *p, *res = NULL;
    char addr[256], extra[400] = "";
    int rc;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char *end;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(migrate_usage_text, stdout);
            return 0;
        } else if (strcmp(a, "--live") == 0 || strcmp(a, "--cold") == 0 ||
                   strcmp(a, "--quick") == 0) {
            kind = a + 2;
        } else if (strcmp(a, "--power-on") == 0) {
            power_on = true;
        } else if (strcmp(a, "--from") == 0 || strcmp(a, "--to") == 0 ||
                   strcmp(a, "--downtime-ms") == 0 || strcmp(a, "--streams") == 0 ||
                   strcmp(a, "--fail-at") == 0 || strcmp(a, "--mode") == 0) {
            if (i + 1 >= argc)
                return usage_error("migrate: %s needs a value", a);
            const char *val = argv[++i];
            if (strcmp(a, "--fail-at") == 0) {
                fail_at = val;
            } else if (strcmp(a, "--mode") == 0) {
                if (strcmp(val, "stream") && strcmp(val, "ram-direct") && strcmp(val, "auto"))
                    return usage_error("migrate: --mode is stream or ram-direct, not '%s'",
                                       val);
                mode = val;
            } else if (strcmp(a, "--from") == 0) {
                from = val;
            } else if (strcmp(a, "--to") == 0) {
                to = val;
            } else {
                long n = strtol(val, &end, 10);
                if (*end || n <= 0)
                    return usage_error("migrate: %s wants a positive number, not '%s'", a, val);
                if (strcmp(a, "--streams") == 0)
                    streams = n;
                else
                    downtime = n;
            }
        } else if (a[0] == '-') {
            return usage_error("migrate: unknown option %s", a);
        } else if (!vm) {
            vm = a;
        } else {
            return usage_error("migrate: one VM at a time ('%s' and '%s')", vm, a);
        }
    }
    if (!vm || !to)
        return usage_error("usage: migrate [--live|--cold|--quick] VM [--from HOST] --to HOST "
                           "[--downtime-ms N] [--streams N]");
    snprintf(addr, sizeof(addr), "%s", c->host);
    if (from && (rc = resolve(c, from, addr, sizeof(addr))) != 0)
        return rc;

    p = json_object_new_object();
    json_object_object_add(p, "vm", json_object_new_string(vm));
    json_object_object_add(p, "kind", json_object_new_string(kind));
    json_object_object_add(p, "to", json_object_new_string(to));
    json_object_object_add(p, "power_on", json_object_new_boolean(power_on));
    if (downtime)
        json_object_object_add(p, "downtime_ms", json_object_new_int64(downtime));
    if (streams)
        json_object_object_add(p, "streams", json_object_new_int64(streams));
    if (fail_at)
        json_object_object_add(p, "fail_at", json_object_new_string(fail_at));
    if (mode)
        json_object_object_add(p, "mode", json_object_new_string(mode));

    if ((rc = connect_to(c, addr, &conn)) < 0) {
        json_object_put(p);
        return fail(c, rc, true, NULL);
    }
    pr.tty = isatty(STDOUT_FILENO);
    pr.width = terminal_width();
    if (!c->json)
        printf("Migrating VM %s (%s) from %s to %s\n", vm, kind, from ? from : addr, to);
    rc = fy_rpc_call(conn, "agent.migrate", p, &res, on_progress, &pr, CALL_TIMEOUT_MS);
    fy_rpc_close(conn);
    if (pr.tty && !c->json)
        printf("\r\033[K");
    if (rc < 0) {
        if (pr.id)
            snprintf(extra, sizeof(extra), "the event log says where it stopped: ferryctl "
                     "--host %s events %" PRId64, addr, pr.id);
        return fail(c, rc, false, extra[0] ? extra : NULL);
    }
    if (c->json)
        print_json(res);
    else
        fy_cli_print_summary(stdout, res);
    json_object_put(res);
    return 0;
}

/* ---- evacuate ----------------------------------------------------------------------- */

struct evac_display {
    bool tty, json, plan_shown;
    int width;
    int drawn; /* lines of the progress block on the terminal */
};

static void evac_erase(struct evac_display *d)
{
    if (d->drawn > 1)
        printf("\r\033[%dA\033[J", d->drawn - 1);
    else if (d->drawn == 1)
        printf("\r\033[J");
    d->drawn = 0;
}

static void evac_progress(const json_object *status, const char *line, void *ctx)
{
    struct evac_display *d = ctx;
    char block[8192];
    json_object *v;

    if (d->json)
        return;
    if (!d->plan_shown) {
        d->plan_shown = true;
        if (json_object_object_get_ex(status, "plan", &v))
            printf("%s\n", json_object_get_string(v));
        fflush(stdout);
    }
    if (line) {
        if (d->tty)
            evac_erase(d);
        printf("%s\n", line);
        fflush(stdout);
        return;
    }
    if (!d->tty)
        return;
    evac_erase(d);
    d->drawn = fy_cli_evac_progress(block, sizeof(block), status, 12, d->width - 1);
    printf("%s", block);
    fflush(stdout);
}

static int terminal_width(void);

static int cmd_evacuate(struct ctl *c, int argc, char **argv)
{
    const char *host = NULL, *cluster_path = getenv("FERRY_CLUSTER");
    struct fy_evac_opts o = {.gang = -1};
    struct evac_display d = {.json = c->json};
    struct fy_cluster cl;
    json_object *rep = NULL;
    int rc, code;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--dry-run")) {
            o.dry_run = true;
        } else if (!strcmp(a, "--all")) {
            o.all = true;
        } else if (!strcmp(a, "--reboot-dependents")) {
            o.reboot_dependents = true;
        } else if (!strcmp(a, "--gang")) {
            o.gang = 1;
        } else if (!strcmp(a, "--no-gang")) {
            o.gang = 0;
        } else if (!strcmp(a, "--json")) {
            c->json = d.json = true; /* also after the command, for scripts */
        } else if (!strcmp(a, "--cluster") || !strcmp(a, "--methods") ||
                   !strcmp(a, "--downtime-ms") || !strcmp(a, "--streams")) {
            if (i + 1 >= argc)
                return usage_error("evacuate: %s needs a value", a);
            const char *val = argv[++i];
            if (!strcmp(a, "--cluster")) {
                cluster_path = val;
            } else if (!strcmp(a, "--methods")) {
                if (fy_cluster_methods_parse(val, &o.methods) < 0)
                    return usage_error("evacuate: %s", fy_error_detail());
                if (!o.methods)
                    return usage_error("evacuate: --methods needs at least one method");
            } else {
                char *end;
                long n = strtol(val, &end, 10);
                if (*end || n <= 0 || n > 1000000)
                    return usage_error("evacuate: %s wants a positive number, not '%s'", a, val);
                if (!strcmp(a, "--streams"))
                    o.streams = (unsigned)n;
                else
                    o.downtime_ms = (uint32_t)n;
            }
        } else if (a[0] == '-') {
            return usage_error("evacuate: unknown option %s", a);
        } else if (!host) {
            host = a;
        } else {
            return usage_error("evacuate: one host at a time ('%s' and '%s')", host, a);
        }
    }
    if (!host)
        return usage_error("usage: evacuate HOST [--cluster FILE] [--dry-run] [--methods LIST] "
                           "[--all] [--reboot-dependents] [--gang|--no-gang]");
    if (!cluster_path || !cluster_path[0])
        cluster_path = DEFAULT_CLUSTER;
    if ((rc = fy_cluster_load(cluster_path, &cl)) < 0) {
        code = fail(c, rc, false, "give the cluster file with --cluster FILE or FERRY_CLUSTER "
                    "(docs/evacuation.md shows one)");
        fy_cluster_free(&cl);
        return code;
    }
    if (!c->key_given && cl.key[0])
        c->key_path = cl.key;
    if (!c->key_loaded && (rc = fy_rpc_key_load(c->key_path, &c->key)) < 0) {
        fy_cluster_free(&cl);
        return fail(c, rc, true, NULL);
    }
    c->key_loaded = true;
    d.tty = isatty(STDOUT_FILENO);
    d.width = terminal_width();
    o.cluster = &cl;
    o.host = host;
    o.key = &c->key;
    o.on_progress = evac_progress;
    o.ctx = &d;
    rc = fy_evacuate(&o, &rep);
    if (d.tty && !c->json)
        evac_erase(&d);
    if (rc < 0) {
        /* Not reaching the evacuated host's agent is a connection failure
         * (fy_evacuate's other failures are about the cluster file). */
        bool connecting = rc == -FY_E_SYS || rc == -FY_E_TIMEOUT || rc == -FY_E_CLOSED ||
                          rc == -FY_E_AUTH || rc == -FY_E_VERSION;
        fy_cluster_free(&cl);
        return fail(c, rc, connecting, NULL);
    }
    if (c->json)
        print_json(rep);
    else if (o.dry_run)
        fy_cli_print_evac_plan(stdout, rep);
    else
        fy_cli_print_evac_summary(stdout, rep);
    code = fy_cli_evac_exit(rep);
    json_object_put(rep);
    fy_cluster_free(&cl);
    return code;
}

/* ---- main ---------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},
        {"key", required_argument, NULL, 'k'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct ctl c = {.host = getenv("FERRY_HOST"), .key_path = getenv("FERRY_KEY")};
    const char *cmd;
    int o, rc;

    while ((o = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (o) {
        case 'H': c.host = optarg; break;
        case 'k': c.key_path = optarg; c.key_given = true; break;
        case 'j': c.json = true; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return usage_error("unknown option");
        }
    }
    if (!c.host || !c.host[0])
        c.host = DEFAULT_HOST;
    if (c.key_path && c.key_path[0])
        c.key_given = true;
    if (!c.key_path || !c.key_path[0])
        c.key_path = DEFAULT_KEY;
    if (optind >= argc)
        return usage_error("no command given");
    argc -= optind;
    argv += optind;
    cmd = argv[0];

    if (strcmp(cmd, "hosts") == 0)
        rc = cmd_hosts(&c, argc, argv);
    else if (strcmp(cmd, "list") == 0)
        rc = cmd_list(&c, argc, argv);
    else if (strcmp(cmd, "migrate") == 0)
        rc = cmd_migrate(&c, argc, argv);
    else if (strcmp(cmd, "jobinfo") == 0)
        rc = cmd_by_id(&c, argc, argv, "agent.jobinfo", fy_cli_print_jobinfo);
    else if (strcmp(cmd, "events") == 0)
        rc = cmd_by_id(&c, argc, argv, "agent.events", fy_cli_print_events);
    else if (strcmp(cmd, "summary") == 0)
        rc = cmd_by_id(&c, argc, argv, "agent.events", print_summary);
    else if (strcmp(cmd, "cancel") == 0)
        rc = cmd_by_id(&c, argc, argv, "agent.cancel", NULL);
    else if (strcmp(cmd, "migrations") == 0)
        rc = cmd_migrations(&c, argc, argv);
    else if (strcmp(cmd, "define") == 0)
        rc = cmd_define(&c, argc, argv);
    else if (strcmp(cmd, "evacuate") == 0)
        rc = cmd_evacuate(&c, argc, argv);
    else if (strcmp(cmd, "help") == 0) {
        fputs(usage_text, stdout);
        rc = 0;
    } else
        rc = usage_error("unknown command '%s'", cmd);
    fy_rpc_key_wipe(&c.key);
    return rc;
}
