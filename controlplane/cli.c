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
            b_of(r, "verified") ? "passed: the target's memory digest matches the source's"
                                : "not verified");
    if (json_object_object_get_ex(r, "net", &net) && net) {
        json_object_object_foreach(net, k, v)
            fprintf(f, "  %-20s%s\n", k, json_object_get_string(v));
    }
    if (s_of(r, "error")[0])
        fprintf(f, "  %-20s%s\n", "Error:", s_of(r, "error"));
}
