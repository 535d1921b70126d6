/* ferryctl's output (cli.h). */
#include "controlplane/cli.h"

#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "ferry/error.h"

#define PAGE 4096.0

/* ---- reading results ------------------------------------------------------ */

static const char *s_of(const json_object *o, const char *k)
{
    json_object *v;
    if (!o || !json_object_object_get_ex(o, k, &v) || !v)
        return "";
    return json_object_get_string(v);
}

static int64_t i_of(const json_object *o, const char *k)
{
    json_object *v;
    if (!o || !json_object_object_get_ex(o, k, &v) || !v)
        return 0;
    return json_object_get_int64(v);
}

static double d_of(const json_object *o, const char *k)
{
    json_object *v;
    if (!o || !json_object_object_get_ex(o, k, &v) || !v)
        return 0;
    return json_object_get_double(v);
}

static bool b_of(const json_object *o, const char *k)
{
    json_object *v;
    if (!o || !json_object_object_get_ex(o, k, &v) || !v)
        return false;
    return json_object_get_boolean(v);
}

static json_object *a_of(const json_object *o, const char *k)
{
    json_object *v;
    if (!o || !json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_array))
        return NULL;
    return v;
}

/* ---- errors ------------------------------------------------------------------ */

int fy_cli_exit_code(int rc, bool connecting)
{
    if (rc >= 0)
        return FY_CLI_EXIT_OK;
    if (connecting || rc == -FY_E_AUTH || rc == -FY_E_VERSION)
        return FY_CLI_EXIT_CONNECT;
    if (rc == -FY_E_PRECHECK)
        return FY_CLI_EXIT_PRECHECK;
    return FY_CLI_EXIT_FAILURE;
}

const char *fy_cli_hint(int rc, bool connecting)
{
    switch (-rc) {
    case FY_E_AUTH:
        return "use the cluster key file the agents use (--key FILE or FERRY_KEY)";
    case FY_E_VERSION:
        return "use a ferryctl of the same version as the agents";
    case FY_E_CONFIG:
        return connecting ? "give the cluster key file with --key FILE or FERRY_KEY" : NULL;
    case FY_E_BUSY:
        return connecting ? "the agent serves too many connections: try again" : NULL;
    case FY_E_PRECHECK:
        return "fix what the prechecks name, then migrate again";
    default:
        break;
    }
    if (connecting)
        return "check that ferryd runs there (ferryd --config FILE) and that --host "
               "(or FERRY_HOST) is its management ADDR:PORT";
    return NULL;
}

/* ---- units ---------------------------------------------------------------------- */

const char *fy_cli_bytes(double bytes, char *buf, size_t n)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    unsigned u = 0;

    while (bytes >= 1024.0 && u < 4) {
        bytes /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, n, "%.0f B", bytes);
    else
        snprintf(buf, n, "%.1f %s", bytes, unit[u]);
    return buf;
}

const char *fy_cli_time(int64_t ts_us, char *buf, size_t n)
{
    time_t t = (time_t)(ts_us / 1000000);
    struct tm tm;
    char s[32];

    localtime_r(&t, &tm);
    strftime(s, sizeof(s), "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(buf, n, "%s.%03d", s, (int)((ts_us % 1000000) / 1000));
    return buf;
}

static const char *ms(double seconds, char *buf, size_t n)
{
    if (seconds >= 10)
        snprintf(buf, n, "%.2f s", seconds);
    else
        snprintf(buf, n, "%.1f ms", seconds * 1000.0);
    return buf;
}

/* ---- events --------------------------------------------------------------------- */

void fy_cli_print_events(FILE *f, const json_object *res)
{
    json_object *evs = a_of(res, "events");
    json_object *m = NULL;
    size_t n = evs ? json_object_array_length(evs) : 0;

    if (json_object_object_get_ex(res, "migration", &m) && m)
        fprintf(f, "Migration %" PRId64 ": %s migration of %s from %s to %s (%s)\n\n",
                i_of(m, "id"), s_of(m, "kind"), s_of(m, "vm"), s_of(m, "source"),
                s_of(m, "target"), s_of(m, "state"));
    fprintf(f, "%-10s  %4s  %-23s  %-6s  %s\n", "Category", "Task", "Time", "Side", "Text");
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(evs, i);
        char t[40];
        fprintf(f, "%-10s  %4" PRId64 "  %-23s  %-6s  %s\n", s_of(e, "category"),
                i_of(e, "task"), fy_cli_time(i_of(e, "ts_us"), t, sizeof(t)),
                s_of(e, "side"), s_of(e, "text"));
    }
}

/* ---- jobinfo ---------------------------------------------------------------------- */

void fy_cli_print_jobinfo(FILE *f, const json_object *j)
{
    char b[64];
    const char *err = s_of(j, "error");
    const char *state = s_of(j, "state");
    bool running = strcmp(state, "running") == 0;

    fprintf(f, "%-20s%" PRId64 " (%s migration of %s from %s to %s)\n", "Migration:",
            i_of(j, "id"), s_of(j, "kind"), s_of(j, "vm"), s_of(j, "source"),
            s_of(j, "target"));
    fprintf(f, "%-20s%s\n", "Job state:", state);
    if (running)
        fprintf(f, "%-20s%s\n", "Action:", s_of(j, "action"));
    fprintf(f, "%-20s%.0f ms\n", "Time elapsed:", d_of(j, "elapsed") * 1000.0);
    fprintf(f, "%-20s%s\n", "Data processed:",
            fy_cli_bytes((double)i_of(j, "data_processed"), b, sizeof(b)));
    fprintf(f, "%-20s%s\n", "Data remaining:",
            fy_cli_bytes((double)i_of(j, "data_remaining"), b, sizeof(b)));
    fprintf(f, "%-20s%s\n", "Data total:",
            fy_cli_bytes((double)i_of(j, "data_total"), b, sizeof(b)));
    fy_cli_bytes(d_of(j, "throughput"), b, sizeof(b));
    fprintf(f, "%-20s%s/s\n", "Memory throughput:", b);
    fprintf(f, "%-20s%.0f pages/s\n", "Dirty rate:", d_of(j, "dirty_rate"));
    fprintf(f, "%-20s%" PRId64 "\n", "Iteration:", i_of(j, "round"));
    fprintf(f, "%-20s%" PRId64 "\n", "Normal pages:", i_of(j, "pages_sent"));
    fprintf(f, "%-20s%" PRId64 "\n", "Zero pages:", i_of(j, "pages_zero"));
    fprintf(f, "%-20s%" PRId64 "\n", "Duplicate pages:", i_of(j, "pages_dup"));
    fprintf(f, "%-20s%s\n", "Bytes on the wire:",
            fy_cli_bytes((double)i_of(j, "wire_bytes"), b, sizeof(b)));
    if (running) {
        fprintf(f, "%-20s%s\n", "Expected downtime:",
                ms(d_of(j, "expected_downtime"), b, sizeof(b)));
    } else {
        fprintf(f, "%-20s%s\n", "Downtime:", ms(d_of(j, "downtime"), b, sizeof(b)));
        fprintf(f, "%-20s%s\n", "Verified:", b_of(j, "verified") ? "yes" : "no");
    }
    if (err[0])
        fprintf(f, "%-20s%s\n", "Error:", err);
}

/* ---- progress ----------------------------------------------------------------------- */

int fy_cli_progress_percent(const json_object *p)
{
    double total = (double)i_of(p, "data_total");
    double left = (double)i_of(p, "data_remaining");
    int pct;

    if (strcmp(s_of(p, "state"), "running") != 0 && s_of(p, "state")[0])
        return 100;
    if (total <= 0 || i_of(p, "round") == 0)
        return 0;
    if (b_of(p, "final"))
        return 100;
    pct = (int)(100.0 * (total - left) / total);
    return pct < 0 ? 0 : pct > 99 ? 99 : pct;
}

const char *fy_cli_progress(char *buf, size_t n, const json_object *p, int bar_width)
{
    char done[32], total[32], rate[32], dirty[32], down[32];
    size_t off = 0;
    int pct = fy_cli_progress_percent(p);

    if (n == 0)
        return buf;
    buf[0] = '\0';
    if (bar_width > 0) {
        int fill = pct * bar_width / 100;
        if (off < n)
            off += (size_t)snprintf(buf + off, n - off, "[");
        for (int i = 0; i < bar_width && off + 1 < n; i++)
            buf[off++] = i < fill ? '#' : '.';
        if (off < n)
            off += (size_t)snprintf(buf + off, n - off, "] %3d%% ", pct);
    } else if (off < n) {
        off += (size_t)snprintf(buf + off, n - off, "migration %" PRId64 ": ", i_of(p, "id"));
    }
    if (off >= n)
        return buf;
    /* Round figures while the memory moves; the action and the time
     * before and after. */
    if (i_of(p, "round") == 0 || strcmp(s_of(p, "action"), "InitiateSource") != 0) {
        snprintf(buf + off, n - off, "%s (%.1f s)", s_of(p, "action"), d_of(p, "elapsed"));
        return buf;
    }
    fy_cli_bytes((double)i_of(p, "data_processed"), done, sizeof(done));
    fy_cli_bytes((double)i_of(p, "data_total"), total, sizeof(total));
    fy_cli_bytes(d_of(p, "throughput"), rate, sizeof(rate));
    fy_cli_bytes(d_of(p, "dirty_rate") * PAGE, dirty, sizeof(dirty));
    snprintf(buf + off, n - off,
             "%s round %" PRId64 "%s: %s of %s processed, %s/s, dirty %s/s, "
             "zero %" PRId64 ", dup %" PRId64 ", expected downtime %s",
             s_of(p, "action"), i_of(p, "round"), b_of(p, "final") ? " (final)" : "", done,
             total, rate, dirty, i_of(p, "pages_zero"), i_of(p, "pages_dup"),
             ms(d_of(p, "expected_downtime"), down, sizeof(down)));
    return buf;
}

/* ---- tables ---------------------------------------------------------------------------- */

void fy_cli_print_hosts(FILE *f, const json_object *res)
{
    json_object *hs = a_of(res, "hosts");
    size_t n = hs ? json_object_array_length(hs) : 0;

    fprintf(f, "%-16s %-22s %-8s %-11s %5s %-19s %s\n", "Host", "Management", "Driver",
            "State", "VMs", "Memory free/total", "CPUs free/total");
    for (size_t i = 0; i < n; i++) {
        json_object *h = json_object_array_get_idx(hs, i);
        char name[80], fr[32], tot[32], mem[72] = "", cpus[32] = "";
        bool up = b_of(h, "reachable");

        snprintf(name, sizeof(name), "%s%s", s_of(h, "name"), b_of(h, "self") ? " *" : "");
        if (up) {
            snprintf(mem, sizeof(mem), "%s/%s",
                     fy_cli_bytes((double)i_of(h, "mem_free"), fr, sizeof(fr)),
                     fy_cli_bytes((double)i_of(h, "mem_total"), tot, sizeof(tot)));
            snprintf(cpus, sizeof(cpus), "%" PRId64 "/%" PRId64, i_of(h, "cpus_free"),
                     i_of(h, "cpus_total"));
        }
        fprintf(f, "%-16s %-22s %-8s %-11s %5s %-19s %s\n", name, s_of(h, "management"),
                up ? s_of(h, "driver") : "-",
                !up ? "unreachable" : b_of(h, "maintenance") ? "maintenance" : "up",
                up ? s_of(h, "vms") : "-", up ? mem : "-", up ? cpus : "-");
        if (!up && s_of(h, "error")[0])
            fprintf(f, "  %s\n", s_of(h, "error"));
    }
}

void fy_cli_print_vms(FILE *f, const json_object *res)
{
    json_object *vms = a_of(res, "vms");
    size_t n = vms ? json_object_array_length(vms) : 0;
    char b[32];

    fprintf(f, "%-24s %-10s %10s %6s\n", "Name", "State", "Memory", "vCPUs");
    for (size_t i = 0; i < n; i++) {
        json_object *v = json_object_array_get_idx(vms, i);
        fprintf(f, "%-24s %-10s %10s %6" PRId64 "\n", s_of(v, "name"), s_of(v, "power"),
                fy_cli_bytes((double)i_of(v, "mem_bytes"), b, sizeof(b)), i_of(v, "vcpus"));
    }
}

void fy_cli_print_migrations(FILE *f, const json_object *res)
{
    json_object *ms_ = a_of(res, "migrations");
    size_t n = ms_ ? json_object_array_length(ms_) : 0;

    fprintf(f, "%5s  %-6s %-16s %-12s %-12s %-12s %-23s %9s\n", "Id", "Kind", "VM", "Source",
            "Target", "State", "Started", "Seconds");
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(ms_, i);
        char t[40];
        fprintf(f, "%5" PRId64 "  %-6s %-16s %-12s %-12s %-12s %-23s %9.2f\n", i_of(m, "id"),
                s_of(m, "kind"), s_of(m, "vm"), s_of(m, "source"), s_of(m, "target"),
                s_of(m, "state"), fy_cli_time(i_of(m, "started_us"), t, sizeof(t)),
                d_of(m, "seconds"));
    }
}

void fy_cli_print_summary(FILE *f, const json_object *r)
{
    double sent = (double)i_of(r, "pages_sent"), zero = (double)i_of(r, "pages_zero");
    double dup = (double)i_of(r, "pages_dup"), pages = sent + zero + dup;
    char b1[32], b2[32], b3[32];
    json_object *net = NULL;

    fprintf(f, "Migration %" PRId64 " %s: %s migration of %s from %s to %s\n", i_of(r, "id"),
            s_of(r, "state"), s_of(r, "kind"), s_of(r, "vm"), s_of(r, "source"),
            s_of(r, "target"));
    fprintf(f, "  %-20s%.2f s\n", "Total time:", d_of(r, "seconds"));
    fprintf(f, "  %-20s%s\n", "Downtime:", ms(d_of(r, "downtime"), b1, sizeof(b1)));
    fprintf(f, "  %-20s%s (pages moved: %s)\n", "Bytes on the wire:",
            fy_cli_bytes((double)i_of(r, "wire_bytes"), b1, sizeof(b1)),
            fy_cli_bytes(pages * PAGE, b2, sizeof(b2)));
    fprintf(f, "  %-20s%.0f sent whole, %.0f zero, %.0f duplicate\n", "Pages:", sent, zero,
            dup);
    fprintf(f, "  %-20s%s not sent: %s zero pages + %s duplicate pages (%.0f%% of the pages "
            "moved)\n", "Savings:", fy_cli_bytes((zero + dup) * PAGE, b1, sizeof(b1)),
            fy_cli_bytes(zero * PAGE, b2, sizeof(b2)), fy_cli_bytes(dup * PAGE, b3, sizeof(b3)),
            pages > 0 ? 100.0 * (zero + dup) / pages : 0.0);
    fprintf(f, "  %-20s%s\n", "Verification:",
            b_of(r, "verified") ? "passed: the target's copy matches the source's digests "
                                  "(in stream mode: of every channel)"
                                : "not verified");
    if (json_object_object_get_ex(r, "net", &net) && net) {
        json_object_object_foreach(net, k, v)
            fprintf(f, "  %-20s%s\n", k, json_object_get_string(v));
    }
    if (s_of(r, "error")[0])
        fprintf(f, "  %-20s%s\n", "Error:", s_of(r, "error"));
}

/* ---- evacuation ------------------------------------------------------------------------ */

int fy_cli_evac_exit(const json_object *report)
{
    const char *r = s_of(report, "result");

    if (!strcmp(r, "ok"))
        return FY_CLI_EXIT_OK;
    if (!strcmp(r, "warning"))
        return FY_CLI_EXIT_WARNING;
    return FY_CLI_EXIT_FAILURE;
}

static void print_warnings(FILE *f, const json_object *report)
{
    json_object *w = a_of(report, "warnings");

    for (size_t i = 0; w && i < json_object_array_length(w); i++)
        fprintf(f, "Warning: %s\n", json_object_get_string(json_object_array_get_idx(w, i)));
}

/* "live->h2, failover->h3" of a VM's planned attempts. */
static void planned_text(const json_object *v, char *buf, size_t n)
{
    json_object *p = a_of(v, "planned");
    size_t off = 0;

    buf[0] = '\0';
    for (size_t k = 0; p && k < json_object_array_length(p) && off < n; k++) {
        json_object *a = json_object_array_get_idx(p, k);
        off += (size_t)snprintf(buf + off, n - off, "%s%s->%s", k ? ", " : "",
                                s_of(a, "method"), s_of(a, "target"));
    }
}

void fy_cli_print_evac_plan(FILE *f, const json_object *report)
{
    json_object *hs = a_of(report, "hosts"), *vms = a_of(report, "vms"), *m;
    char fr[32], tot[32], list[256];

    fprintf(f, "Evacuation plan for host %s (methods:", s_of(report, "host"));
    if ((m = a_of(report, "methods")))
        for (size_t i = 0; i < json_object_array_length(m); i++)
            fprintf(f, "%s %s", i ? "," : "",
                    json_object_get_string(json_object_array_get_idx(m, i)));
    fprintf(f, "; %s; gang dedup %s)\n", b_of(report, "all") ? "all VMs" : "running VMs",
            b_of(report, "gang") ? "on" : "off");
    fprintf(f, "\n%-12s %-12s %-19s %-9s %-5s %s\n", "Host", "State", "Memory free/total",
            "CPUs", "Max", "Datastores");
    for (size_t i = 0; hs && i < json_object_array_length(hs); i++) {
        json_object *h = json_object_array_get_idx(hs, i), *ds = a_of(h, "datastores");
        char mem[72], cpus[24], state[40];
        size_t off = 0;

        list[0] = '\0';
        for (size_t k = 0; ds && k < json_object_array_length(ds) && off < sizeof(list); k++)
            off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s", k ? "," : "",
                                    json_object_get_string(json_object_array_get_idx(ds, k)));
        snprintf(mem, sizeof(mem), "%s/%s",
                 fy_cli_bytes((double)i_of(h, "mem_free"), fr, sizeof(fr)),
                 fy_cli_bytes((double)i_of(h, "mem_total"), tot, sizeof(tot)));
        snprintf(cpus, sizeof(cpus), "%" PRId64 "/%" PRId64, i_of(h, "cpus_free"),
                 i_of(h, "cpus_total"));
        snprintf(state, sizeof(state), "%s%s", s_of(h, "state"),
                 b_of(h, "evacuated") ? " *" : "");
        fprintf(f, "%-12s %-12s %-19s %-9s %-5" PRId64 " %s\n", s_of(h, "name"), state,
                b_of(h, "reachable") ? mem : "-", b_of(h, "reachable") ? cpus : "-",
                i_of(h, "max_concurrent"), list);
        if (s_of(h, "error")[0])
            fprintf(f, "  %s\n", s_of(h, "error"));
    }
    fprintf(f, "\n%-5s %-16s %-9s %-12s %s\n", "Wave", "VM", "Power", "Disposition",
            "Attempts (canonical order) / reason");
    for (size_t i = 0; vms && i < json_object_array_length(vms); i++) {
        json_object *v = json_object_array_get_idx(vms, i);
        char wave[16] = "-";

        if (i_of(v, "wave"))
            snprintf(wave, sizeof(wave), "%" PRId64, i_of(v, "wave"));
        planned_text(v, list, sizeof(list));
        fprintf(f, "%-5s %-16s %-9s %-12s %s\n", wave, s_of(v, "name"), s_of(v, "power"),
                s_of(v, "disposition"), list[0] ? list : s_of(v, "reason"));
    }
    if ((m = a_of(report, "reboots")) && json_object_array_length(m)) {
        fprintf(f, "\nRebooted once all they depend on has moved:");
        for (size_t i = 0; i < json_object_array_length(m); i++)
            fprintf(f, " %s", s_of(json_object_array_get_idx(m, i), "vm"));
        fprintf(f, "\n");
    }
    fprintf(f, "\n");
    print_warnings(f, report);
    fprintf(f, "Expected result if every move succeeds: %s\n", s_of(report, "result"));
}

void fy_cli_print_evac_summary(FILE *f, const json_object *report)
{
    json_object *vms = a_of(report, "vms"), *tot = NULL, *rb;
    char b1[32], b2[32], b3[32], b4[32];

    fprintf(f, "Evacuation of host %s: %s\n\n", s_of(report, "host"), s_of(report, "result"));
    fprintf(f, "%-16s %-8s %-10s %-9s %-10s %s\n", "VM", "Status", "Host", "Method", "Result",
            "Attempts");
    for (size_t i = 0; vms && i < json_object_array_length(vms); i++) {
        json_object *v = json_object_array_get_idx(vms, i), *atts = a_of(v, "attempts");
        size_t na = atts ? json_object_array_length(atts) : 0;

        fprintf(f, "%-16s %-8s %-10s %-9s %-10s ", s_of(v, "name"), s_of(v, "status"),
                s_of(v, "host"), s_of(v, "method")[0] ? s_of(v, "method") : "-",
                s_of(v, "result"));
        if (!na)
            fprintf(f, "%s", s_of(v, "reason"));
        for (size_t k = 0; k < na; k++) {
            json_object *a = json_object_array_get_idx(atts, k);
            fprintf(f, "%s%s->%s", k ? ", " : "", s_of(a, "method"), s_of(a, "target"));
            if (i_of(a, "migration"))
                fprintf(f, " (migration %" PRId64 ")", i_of(a, "migration"));
            fprintf(f, " %s", b_of(a, "moved") ? "moved" : "failed");
        }
        fprintf(f, "\n");
        for (size_t k = 0; k < na; k++) {
            json_object *a = json_object_array_get_idx(atts, k);
            if (s_of(a, "error")[0])
                fprintf(f, "    %s->%s: %s\n", s_of(a, "method"), s_of(a, "target"),
                        s_of(a, "error"));
            if (s_of(a, "note")[0])
                fprintf(f, "    note: %s\n", s_of(a, "note"));
        }
        if (!strcmp(s_of(v, "status"), "failed") && na)
            fprintf(f, "    not moved: %s\n", s_of(v, "reason"));
    }
    if ((rb = a_of(report, "reboots")))
        for (size_t i = 0; i < json_object_array_length(rb); i++) {
            json_object *r = json_object_array_get_idx(rb, i);
            fprintf(f, "Dependent reboot of %s at %s: %s%s%s\n", s_of(r, "vm"), s_of(r, "host"),
                    s_of(r, "status"), s_of(r, "detail")[0] ? ": " : "", s_of(r, "detail"));
        }
    print_warnings(f, report);
    json_object_object_get_ex(report, "totals", &tot);
    double zero = (double)i_of(tot, "saved_zero_bytes"), vm = (double)i_of(tot, "saved_dup_vm_bytes");
    double shared = (double)i_of(tot, "saved_dup_shared_bytes");
    fprintf(f, "\nSummary\n");
    fprintf(f, "  %-20s%.2f s\n", "Time:", d_of(report, "seconds"));
    fprintf(f, "  %-20s%" PRId64 " moved, %" PRId64 " not moved, %" PRId64 " stayed (of %" PRId64
            ")\n", "VMs:", i_of(tot, "moved"), i_of(tot, "failed"), i_of(tot, "stayed"),
            i_of(tot, "vms"));
    fprintf(f, "  %-20s%s\n", "Memory moved:",
            fy_cli_bytes((double)i_of(tot, "memory_moved"), b1, sizeof(b1)));
    fprintf(f, "  %-20s%s\n", "Bytes on the wire:",
            fy_cli_bytes((double)i_of(tot, "wire_bytes"), b1, sizeof(b1)));
    fprintf(f, "  %-20s%s not sent: %s zero pages, %s dedup within a VM, %s dedup across "
            "VMs (gang dedup %s)\n", "Savings:", fy_cli_bytes(zero + vm + shared, b1, sizeof(b1)),
            fy_cli_bytes(zero, b2, sizeof(b2)), fy_cli_bytes(vm, b3, sizeof(b3)),
            fy_cli_bytes(shared, b4, sizeof(b4)), b_of(report, "gang") ? "on" : "off");
    fprintf(f, "  %-20s%s\n", "Result:", s_of(report, "result"));
}

int fy_cli_evac_progress(char *buf, size_t n, const json_object *status, int bar_width,
                         int width)
{
    json_object *vms = a_of(status, "vms"), *tot = NULL;
    char b1[32], b2[32];
    size_t off = 0;
    int lines = 1;
    uint64_t done = 0, total = 0;

    if (n == 0)
        return 0;
    json_object_object_get_ex(status, "totals", &tot);
    for (size_t i = 0; vms && i < json_object_array_length(vms); i++) {
        json_object *v = json_object_array_get_idx(vms, i), *p = NULL;
        const char *st = s_of(v, "status");
        if (!strcmp(st, "stays") || !strcmp(st, "failed"))
            continue;
        total += (uint64_t)i_of(v, "memory");
        if (!strcmp(st, "moved"))
            done += (uint64_t)i_of(v, "memory");
        else if (json_object_object_get_ex(v, "progress", &p) && p)
            done += (uint64_t)i_of(p, "data_processed") < (uint64_t)i_of(v, "memory")
                        ? (uint64_t)i_of(p, "data_processed") : (uint64_t)i_of(v, "memory");
    }
    {
        char line[256], b3[32];
        snprintf(line, sizeof(line), "%s: %" PRId64 "/%" PRId64 " moved, %" PRId64
                 " running, %" PRId64 " failed | %s/%s | wire %s | %.1f s",
                 s_of(status, "host"), i_of(tot, "moved"), i_of(tot, "vms"),
                 i_of(tot, "running"), i_of(tot, "failed"),
                 fy_cli_bytes((double)done, b1, sizeof(b1)),
                 fy_cli_bytes((double)total, b2, sizeof(b2)),
                 fy_cli_bytes((double)i_of(tot, "wire_bytes"), b3, sizeof(b3)),
                 d_of(status, "seconds"));
        off = (size_t)snprintf(buf, n, "%.*s", width, line);
    }
    for (size_t i = 0; vms && i < json_object_array_length(vms) && off < n; i++) {
        json_object *v = json_object_array_get_idx(vms, i), *p = NULL;
        char line[256], bar[80] = "", moved[32];
        int pct = 0;

        if (!json_object_object_get_ex(v, "progress", &p) || !p)
            continue;
        if (i_of(p, "data_total") > 0)
            pct = (int)(100 * i_of(p, "data_processed") / i_of(p, "data_total"));
        pct = pct > 100 ? 100 : pct < 0 ? 0 : pct;
        if (bar_width > 0 && bar_width < (int)sizeof(bar) - 8) {
            int fill = pct * bar_width / 100, k = 0;
            bar[k++] = '[';
            for (int c = 0; c < bar_width; c++)
                bar[k++] = c < fill ? '#' : '.';
            snprintf(bar + k, sizeof(bar) - (size_t)k, "] %3d%% ", pct);
        }
        char target[80], round[24] = "";
        snprintf(target, sizeof(target), "%s->%s", s_of(p, "method"), s_of(p, "target"));
        if (i_of(p, "round"))
            snprintf(round, sizeof(round), " r%" PRId64, i_of(p, "round"));
        snprintf(line, sizeof(line), "  %-12s %-13s %s%.2f s %s%s %s", s_of(v, "name"), target,
                 bar, d_of(p, "elapsed"),
                 fy_cli_bytes((double)i_of(p, "wire_bytes"), moved, sizeof(moved)), round,
                 s_of(p, "action"));
        off += (size_t)snprintf(buf + off, n - off, "\n%.*s", width, line);
        lines++;
    }
    return lines;
}
