/* The cluster file (see cluster.h). */
#include "controlplane/cluster.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dataplane/netaddr.h"
#include "ferry/error.h"

#define MAX_FILE (1u << 20)

static char *trim(char *s)
{
    char *e;

    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* Where a line is, for messages. */
struct where {
    const char *file;
    unsigned line;
};

#define BAD(w, ...) bad(w, __VA_ARGS__)

static int bad(const struct where *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(const struct where *w, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return fy_error(FY_E_CONFIG, "%s:%u: %s", w->file, w->line, msg);
}

static int copy(const struct where *w, char *dst, size_t cap, const char *v, const char *key)
{
    if (strlen(v) >= cap)
        return BAD(w, "%s is longer than %zu characters", key, cap - 1);
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

static int parse_bool(const struct where *w, const char *v, const char *key, bool *out)
{
    static const char *const yes[] = {"yes", "on", "true", "1"};
    static const char *const no[] = {"no", "off", "false", "0"};

    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i]))
            return *out = true, 0;
        if (!strcasecmp(v, no[i]))
            return *out = false, 0;
    }
    return BAD(w, "%s should be yes or no, not '%s'", key, v);
}

static int parse_uint(const struct where *w, const char *v, const char *key, unsigned *out)
{
    char *end;
    unsigned long n;

    errno = 0;
    n = strtoul(v, &end, 10);
    if (errno || *end || !*v || v[0] == '-' || n > 1000000)
        return BAD(w, "%s should be a number, not '%s'", key, v);
    *out = (unsigned)n;
    return 0;
}

static int parse_size(const struct where *w, const char *v, const char *key, uint64_t *out)
{
    char *end;
    unsigned long long n;
    unsigned shift = 0;

    errno = 0;
    n = strtoull(v, &end, 10);
    if (end != v && *end && !end[1]) {
        const char *units = "KMGT", *u = strchr(units, toupper((unsigned char)*end));
        if (u) {
            shift = 10 * (unsigned)(u - units + 1);
            end++;
        }
    }
    if (errno || *end || end == v || v[0] == '-' || (shift && n > (~0ull >> shift)))
        return BAD(w, "%s should be a size such as 64G, not '%s'", key, v);
    *out = (uint64_t)n << shift;
    return 0;
}

/* "a, b, c" into list[0..] (at most FY_CLUSTER_LIST_MAX names). */
static int parse_list(const struct where *w, char *v, const char *key,
                      char (*list)[FY_NAME_MAX], unsigned *n)
{
    char *save = NULL;

    *n = 0;
    for (char *tok = strtok_r(v, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        tok = trim(tok);
        if (!*tok)
            continue;
        if (*n == FY_CLUSTER_LIST_MAX)
            return BAD(w, "%s lists more than %d names", key, FY_CLUSTER_LIST_MAX);
        if (copy(w, list[*n], FY_NAME_MAX, tok, key) < 0)
            return -FY_E_CONFIG;
        (*n)++;
    }
    return 0;
}

const char *fy_cluster_state_name(enum fy_plan_host_state s)
{
    switch (s) {
    case FY_PLAN_HOST_HEALTHY: return "healthy";
    case FY_PLAN_HOST_MAINTENANCE: return "maintenance";
    case FY_PLAN_HOST_DOWN: return "down";
    }
    return "unknown";
}

static int set_cluster(struct fy_cluster *c, const struct where *w, const char *key, char *v)
{
    if (!strcmp(key, "key"))
        return copy(w, c->key, sizeof(c->key), v, key);
    if (!strcmp(key, "methods")) {
        if (fy_cluster_methods_parse(v, &c->methods) < 0)
            return BAD(w, "%s", fy_error_detail());
        return 0;
    }
    if (!strcmp(key, "link-limit"))
        return parse_uint(w, v, key, &c->link_limit);
    if (!strcmp(key, "gang-dedup"))
        return parse_bool(w, v, key, &c->gang_dedup);
    return BAD(w, "unknown setting '%s' in [cluster] (known: key, methods, link-limit, "
               "gang-dedup)", key);
}

static int set_host(struct fy_cluster_host *h, const struct where *w, const char *key, char *v)
{
    if (!strcmp(key, "management")) {
        if (!fy_addr_has_port(v))
            return BAD(w, "management should read HOST:PORT (the address of host %s's "
                       "ferryd), not '%s'", h->name, v);
        return copy(w, h->management, sizeof(h->management), v, key);
    }
    if (!strcmp(key, "migration"))
        return copy(w, h->migration, sizeof(h->migration), v, key);
    if (!strcmp(key, "provisioning"))
        return copy(w, h->provisioning, sizeof(h->provisioning), v, key);
    if (!strcmp(key, "memory"))
        return parse_size(w, v, key, &h->memory);
    if (!strcmp(key, "cpus"))
        return parse_uint(w, v, key, &h->cpus);
    if (!strcmp(key, "max-concurrent"))
        return parse_uint(w, v, key, &h->max_concurrent);
    if (!strcmp(key, "datastores")) {
        h->datastores_set = true;
        return parse_list(w, v, key, h->datastores, &h->n_datastores);
    }
    if (!strcmp(key, "state")) {
        for (int s = FY_PLAN_HOST_HEALTHY; s <= FY_PLAN_HOST_DOWN; s++)
            if (!strcmp(v, fy_cluster_state_name((enum fy_plan_host_state)s))) {
                h->state = (enum fy_plan_host_state)s;
                return 0;
            }
        return BAD(w, "state of host %s should be healthy, maintenance or down, not '%s'",
                   h->name, v);
    }
    return BAD(w, "unknown setting '%s' in [host %s] (known: management, migration, "
               "provisioning, memory, cpus, datastores, state, max-concurrent)", key, h->name);
}

static int set_vm(struct fy_cluster_vm *vm, const struct where *w, const char *key, char *v)
{
    if (!strcmp(key, "priority")) {
        char *end;
        long n;
        errno = 0;
        n = strtol(v, &end, 10);
        if (errno || *end || !*v || n < -1000000 || n > 1000000)
            return BAD(w, "priority of VM %s should be a number, not '%s'", vm->name, v);
        vm->priority = (int)n;
        return 0;
    }
    if (!strcmp(key, "depends-on"))
        return parse_list(w, v, key, vm->depends_on, &vm->n_depends_on);
    if (!strcmp(key, "eq"))
        return parse_list(w, v, key, vm->eq, &vm->n_eq);
    if (!strcmp(key, "ne"))
        return parse_list(w, v, key, vm->ne, &vm->n_ne);
    if (!strcmp(key, "hold"))
        return parse_bool(w, v, key, &vm->hold);
    if (!strcmp(key, "maintenance"))
        return parse_bool(w, v, key, &vm->maintenance);
    if (!strcmp(key, "managed")) {
        bool managed;
        int rc = parse_bool(w, v, key, &managed);
        vm->unmanaged = !managed;
        return rc;
    }
    return BAD(w, "unknown setting '%s' in [vm %s] (known: priority, depends-on, eq, ne, "
               "hold, maintenance, managed)", key, vm->name);
}

/* Starts the section of header 'p' ("[kind name]", brackets included). */
static int section(struct fy_cluster *c, const struct where *w, char *p, int *kind, size_t *idx)
{
    char *end = strchr(p, ']'), *name;
    size_t len;

    if (!end || trim(end + 1)[0])
        return BAD(w, "a section header reads [cluster], [host NAME] or [vm NAME], not '%s'", p);
    *end = '\0';
    p = trim(p + 1);
    if (!strcmp(p, "cluster")) {
        *kind = 0;
        return 0;
    }
    len = strcspn(p, " \t");
    name = trim(p + len);
    p[len] = '\0';
    if (!*name || strcspn(name, " \t") != strlen(name) || strlen(name) >= FY_NAME_MAX)
        return BAD(w, "[%s] needs one name of at most %d characters: [%s NAME]", p,
                   FY_NAME_MAX - 1, p);
    if (!strcmp(p, "host")) {
        struct fy_cluster_host *n;
        if (fy_cluster_host(c, name))
            return BAD(w, "host %s is listed twice", name);
        if (!(n = realloc(c->hosts, (c->n_hosts + 1) * sizeof(*n))))
            return fy_error(FY_E_NOMEM, "no memory for host %s", name);
        c->hosts = n;
        n = &c->hosts[c->n_hosts];
        memset(n, 0, sizeof(*n));
        snprintf(n->name, sizeof(n->name), "%s", name);
        n->state = FY_PLAN_HOST_HEALTHY;
        n->max_concurrent = FY_CLUSTER_DEFAULT_MAX_CONCURRENT;
        n->line = w->line;
        *kind = 1;
        *idx = c->n_hosts++;
        return 0;
    }
    if (!strcmp(p, "vm")) {
        struct fy_cluster_vm *n;
        if (fy_cluster_vm(c, name))
            return BAD(w, "VM %s is listed twice", name);
        if (!(n = realloc(c->vms, (c->n_vms + 1) * sizeof(*n))))
            return fy_error(FY_E_NOMEM, "no memory for VM %s", name);
        c->vms = n;
        n = &c->vms[c->n_vms];
        memset(n, 0, sizeof(*n));
        snprintf(n->name, sizeof(n->name), "%s", name);
        *kind = 2;
        *idx = c->n_vms++;
        return 0;
    }
    return BAD(w, "unknown section [%s %s] (known: [cluster], [host NAME], [vm NAME])", p, name);
}

int fy_cluster_parse(const char *text, const char *name, struct fy_cluster *c)
{
    struct where w = {name ? name : "cluster file", 0};
    int kind = 0, rc = 0;
    size_t idx = 0;
    char *buf;

    if (!text || !c)
        return fy_error(FY_E_INVAL, "cluster file: no text or output");
    memset(c, 0, sizeof(*c));
    c->gang_dedup = true;
    if (!(buf = strdup(text)))
        return fy_error(FY_E_NOMEM, "no memory for the cluster file");
    for (char *p = buf, *next; p && rc == 0; p = next) {
        char *nl = strchr(p, '\n'), *eq, *hash;

        next = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        w.line++;
        if ((hash = strchr(p, '#')))
            *hash = '\0';
        p = trim(p);
        if (!*p)
            continue;
        if (*p == '[') {
            rc = section(c, &w, p, &kind, &idx);
            continue;
        }
        if (!(eq = strchr(p, '='))) {
            rc = BAD(&w, "expected 'key = value' or a [section], got '%s'", p);
            break;
        }
        *eq = '\0';
        char *key = trim(p), *v = trim(eq + 1);
        if (kind == 0)
            rc = set_cluster(c, &w, key, v);
        else if (kind == 1)
            rc = set_host(&c->hosts[idx], &w, key, v);
        else
            rc = set_vm(&c->vms[idx], &w, key, v);
    }
    free(buf);
    if (rc < 0)
        return rc;
    if (c->n_hosts == 0)
        return fy_error(FY_E_CONFIG, "%s lists no host: add a [host NAME] section with "
                        "'management = HOST:PORT' for each ferryd", w.file);
    for (size_t i = 0; i < c->n_hosts; i++)
        if (!c->hosts[i].management[0])
            return fy_error(FY_E_CONFIG, "%s:%u: host %s has no management address: add "
                            "'management = HOST:PORT' (its ferryd)", w.file,
                            c->hosts[i].line, c->hosts[i].name);
    return 0;
}

int fy_cluster_load(const char *path, struct fy_cluster *c)
{
    char *text;
    size_t n;
    FILE *f;
    int rc;

    if (!path || !c)
        return fy_error(FY_E_INVAL, "cluster file: no path or output");
    memset(c, 0, sizeof(*c));
    if (!(f = fopen(path, "r")))
        return fy_error_sys("cannot read the cluster file %s", path);
    if (!(text = malloc(MAX_FILE + 1))) {
        fclose(f);
        return fy_error(FY_E_NOMEM, "no memory for %s", path);
    }
    n = fread(text, 1, MAX_FILE + 1, f);
    fclose(f);
    if (n > MAX_FILE) {
        free(text);
        return fy_error(FY_E_CONFIG, "%s is larger than %u bytes", path, MAX_FILE);
    }
    text[n] = '\0';
    rc = fy_cluster_parse(text, path, c);
    free(text);
    return rc;
}

void fy_cluster_free(struct fy_cluster *c)
{
    if (!c)
        return;
    free(c->hosts);
    free(c->vms);
    memset(c, 0, sizeof(*c));
}

const struct fy_cluster_host *fy_cluster_host(const struct fy_cluster *c, const char *name)
{
    for (size_t i = 0; c && name && i < c->n_hosts; i++)
        if (!strcmp(c->hosts[i].name, name))
            return &c->hosts[i];
    return NULL;
}

const struct fy_cluster_vm *fy_cluster_vm(const struct fy_cluster *c, const char *name)
{
    for (size_t i = 0; c && name && i < c->n_vms; i++)
        if (!strcmp(c->vms[i].name, name))
            return &c->vms[i];
    return NULL;
}

int fy_cluster_methods_parse(const char *list, unsigned *mask)
{
    /* Seed 004's names and Ferry's kinds, squeezed (no case, no ' ', '-', '_'). */
    static const struct {
        const char *name;
        enum fy_migration_kind kind;
    } names[] = {
        {"migration", FY_MIG_LIVE},         {"live", FY_MIG_LIVE},
        {"livemigration", FY_MIG_LIVE},     {"quickmigration", FY_MIG_QUICK},
        {"quick", FY_MIG_QUICK},            {"move", FY_MIG_MOVE},
        {"storagemigration", FY_MIG_STORAGE}, {"storage", FY_MIG_STORAGE},
        {"failover", FY_MIG_FAILOVER},
    };
    unsigned m = 0;
    const char *p = list;

    if (!mask)
        return fy_error(FY_E_INVAL, "methods: no result");
    while (p && *p) {
        size_t len = strcspn(p, ",");
        char word[64], squeezed[64];
        size_t k = 0;
        bool found = false;

        snprintf(word, sizeof(word), "%.*s", (int)(len < 63 ? len : 63), p);
        for (char *q = word; *q; q++)
            if (!isspace((unsigned char)*q) && *q != '-' && *q != '_')
                squeezed[k++] = (char)tolower((unsigned char)*q);
        squeezed[k] = '\0';
        for (size_t i = 0; k && i < sizeof(names) / sizeof(names[0]); i++)
            if (!strcmp(squeezed, names[i].name)) {
                m |= FY_PLAN_METHOD(names[i].kind);
                found = true;
            }
        if (k && !found)
            return fy_error(FY_E_INVAL, "'%s' is not a method: use Migration (live), Quick "
                            "Migration, Move, Storage Migration or Failover", trim(word));
        p += len;
        if (*p == ',')
            p++;
    }
    *mask = m;
    return 0;
}
