/* The sim VM configuration text: one item per line, "keyword value" or
 * "keyword NAME key=value ...", '#' starts a comment line.  README.md
 * lists the keywords; this file is the only one that knows the syntax. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/sim/sim_priv.h"
#include "ferry/classifier.h"

#define MAX_TOKENS 16

bool sim_parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    unsigned shift = 0;

    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        return false;
    switch (*end) {
    case 'K': case 'k': shift = 10; end++; break;
    case 'M': case 'm': shift = 20; end++; break;
    case 'G': case 'g': shift = 30; end++; break;
    case 'T': case 't': shift = 40; end++; break;
    default: break;
    }
    if (*end == 'i' && shift)
        end++;
    if ((*end == 'B' || *end == 'b') && shift)
        end++;
    if (*end || (shift && v > (UINT64_MAX >> shift)))
        return false;
    *out = (uint64_t)v << shift;
    return true;
}

bool sim_name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n >= FY_NAME_MAX || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* Copies 'src' into dst[size]; false if it does not fit. */
static bool copy(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);

    if (n >= size)
        return false;
    memcpy(dst, src, n + 1);
    return true;
}

static bool parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "1") || !strcmp(s, "yes") || !strcmp(s, "true")) {
        *out = true;
        return true;
    }
    if (!strcmp(s, "0") || !strcmp(s, "no") || !strcmp(s, "false")) {
        *out = false;
        return true;
    }
    return false;
}

static const char *const power_names[] = {
    [FY_POWER_OFF] = "off",
    [FY_POWER_RUNNING] = "running",
    [FY_POWER_PAUSED] = "paused",
    [FY_POWER_SUSPENDED] = "suspended",
};

const char *sim_power_name(enum fy_power p)
{
    return (unsigned)p < 4 ? power_names[p] : "unknown";
}

static const char *const pattern_names[] = {
    [SIM_PATTERN_RANDOM] = "random",
    [SIM_PATTERN_SEQUENTIAL] = "sequential",
    [SIM_PATTERN_HOT] = "hot",
};

/* "key=value" -> key, value (split in place); NULL value if no '='. */
static char *split_kv(char *tok, char **value)
{
    char *eq = strchr(tok, '=');

    *value = NULL;
    if (eq) {
        *eq = '\0';
        *value = eq + 1;
    }
    return tok;
}

#define BAD(...) fy_error(FY_E_CONFIG, __VA_ARGS__)

static int parse_workload(struct sim_vmconf *c, char **tok, int ntok,
                          unsigned line)
{
    for (int i = 1; i < ntok; i++) {
        char *v, *k = split_kv(tok[i], &v);
        char *end;

        if (!v)
            return BAD("VM config line %u: workload expects key=value, got '%s'",
                       line, k);
        if (!strcmp(k, "rate")) {
            errno = 0;
            c->rate = strtod(v, &end);
            if (errno || *end || c->rate < 0 || c->rate > 1e9)
                return BAD("VM config line %u: workload rate '%s' is not a "
                           "number of pages per second", line, v);
        } else if (!strcmp(k, "pattern")) {
            unsigned p;
            for (p = 0; p < 3 && strcmp(v, pattern_names[p]); p++)
                ;
            if (p == 3)
                return BAD("VM config line %u: workload pattern '%s' is not "
                           "random, sequential or hot", line, v);
            c->pattern = (enum sim_pattern)p;
        } else if (!strcmp(k, "shared-seed")) {
            errno = 0;
            c->shared_seed = strtoull(v, &end, 0);
            if (errno || *end || !*v)
                return BAD("VM config line %u: shared-seed '%s' is not a number",
                           line, v);
        } else if (!strcmp(k, "zero") || !strcmp(k, "shared") || !strcmp(k, "pool")) {
            unsigned long n;
            errno = 0;
            n = strtoul(v, &end, 10);
            if (errno || *end || !*v || (k[0] != 'p' && n > 100) || n > (1ul << 30))
                return BAD("VM config line %u: workload %s '%s' is not %s", line, k, v,
                           k[0] == 'p' ? "a number of contents" : "a percentage (0-100)");
            if (!strcmp(k, "zero"))
                c->zero_pct = (unsigned)n;
            else if (!strcmp(k, "shared"))
                c->shared_pct = (unsigned)n;
            else
                c->pool = (unsigned)n;
        } else {
            return BAD("VM config line %u: unknown workload key '%s' (rate, "
                       "pattern, shared-seed, zero, shared, pool)", line, k);
        }
    }
    return 0;
}

static int parse_device(struct sim_vmconf *c, enum fy_device_kind kind,
                        char **tok, int ntok, unsigned line)
{
    struct fy_device *dev;
    unsigned idx = c->ndevices;

    if (ntok < 2 || !sim_name_ok(tok[1]))
        return BAD("VM config line %u: %s needs a name of letters, digits, "
                   "'.', '_' or '-'", line, tok[0]);
    if (idx == FY_MAX_DEVICES)
        return BAD("VM config line %u: more than %d devices", line,
                   FY_MAX_DEVICES);
    dev = &c->devices[idx];
    memset(dev, 0, sizeof(*dev));
    dev->kind = kind;
    copy(dev->name, sizeof(dev->name), tok[1]);
    if (kind == FY_DEV_NIC)
        dev->media = true; /* a NIC's "medium" is its link */
    for (int i = 2; i < ntok; i++) {
        char *v, *k = split_kv(tok[i], &v);
        bool path_key = (kind == FY_DEV_FLOPPY && !strcmp(k, "media")) ||
                        (kind == FY_DEV_CDROM && !strcmp(k, "iso")) ||
                        (kind == FY_DEV_PASSTHROUGH && !strcmp(k, "device"));

        if (!v)
            return BAD("VM config line %u: %s %s expects key=value, got '%s'",
                       line, tok[0], dev->name, k);
        if (path_key) {
            bool none = !strcmp(v, "none");
            if (!copy(dev->path, sizeof(dev->path), none ? "" : v))
                return BAD("VM config line %u: path longer than %d bytes",
                           line, FY_PATH_MAX - 1);
            if (kind != FY_DEV_PASSTHROUGH)
                dev->media = !none;
        } else if (kind == FY_DEV_NIC && !strcmp(k, "network")) {
            if (!copy(c->nic_network[idx], FY_NAME_MAX, v))
                return BAD("VM config line %u: network name too long", line);
        } else if (kind == FY_DEV_NIC && !strcmp(k, "connected")) {
            if (!parse_bool(v, &dev->media))
                return BAD("VM config line %u: connected=%s is not 0 or 1",
                           line, v);
        } else {
            return BAD("VM config line %u: unknown key '%s' for %s", line, k,
                       tok[0]);
        }
    }
    c->ndevices++;
    return 0;
}

static int parse_disk(struct sim_vmconf *c, char **tok, int ntok,
                      unsigned line)
{
    struct fy_disk *disk;

    if (ntok < 2 || !sim_name_ok(tok[1]))
        return BAD("VM config line %u: disk needs a name such as vda", line);
    if (c->ndisks == FY_MAX_DISKS)
        return BAD("VM config line %u: more than %d disks", line, FY_MAX_DISKS);
    disk = &c->disks[c->ndisks];
    memset(disk, 0, sizeof(*disk));
    copy(disk->name, sizeof(disk->name), tok[1]);
    for (int i = 2; i < ntok; i++) {
        char *v, *k = split_kv(tok[i], &v);
        bool ok = true;

        if (!v)
            return BAD("VM config line %u: disk %s expects key=value, got '%s'",
                       line, disk->name, k);
        if (!strcmp(k, "ds")) {
            ok = copy(disk->datastore, FY_NAME_MAX, v);
        } else if (!strcmp(k, "size")) {
            if (!sim_parse_size(v, &disk->virtual_size) || !disk->virtual_size)
                return BAD("VM config line %u: disk %s size '%s' is not a "
                           "size such as 1G", line, disk->name, v);
        } else if (!strcmp(k, "path")) {
            ok = copy(disk->path, FY_PATH_MAX, v);
        } else if (!strcmp(k, "backing")) {
            if (disk->nbacking == 4)
                return BAD("VM config line %u: disk %s has more than 4 "
                           "backing files", line, disk->name);
            ok = copy(disk->backing[disk->nbacking++], FY_PATH_MAX, v);
        } else {
            return BAD("VM config line %u: unknown disk key '%s' (ds, size, "
                       "path, backing)", line, k);
        }
        if (!ok)
            return BAD("VM config line %u: disk %s: value of %s too long",
                       line, disk->name, k);
    }
    if (!disk->datastore[0] || !disk->virtual_size)
        return BAD("VM config line %u: disk %s needs ds=DATASTORE and "
                   "size=SIZE", line, disk->name);
    c->ndisks++;
    return 0;
}

static int parse_line(struct sim_vmconf *c, char *s, unsigned line)
{
    char *tok[MAX_TOKENS], *save = NULL;
    int ntok = 0;
    const char *kw;

    for (char *t = strtok_r(s, " \t\r", &save); t;
         t = strtok_r(NULL, " \t\r", &save)) {
        if (ntok == MAX_TOKENS)
            return BAD("VM config line %u: more than %d words", line,
                       MAX_TOKENS);
        tok[ntok++] = t;
    }
    if (ntok == 0 || tok[0][0] == '#')
        return 0;
    kw = tok[0];

    if (!strcmp(kw, "workload"))
        return parse_workload(c, tok, ntok, line);
    if (!strcmp(kw, "usb"))
        return parse_device(c, FY_DEV_USB, tok, ntok, line);
    if (!strcmp(kw, "floppy"))
        return parse_device(c, FY_DEV_FLOPPY, tok, ntok, line);
    if (!strcmp(kw, "cdrom"))
        return parse_device(c, FY_DEV_CDROM, tok, ntok, line);
    if (!strcmp(kw, "passthrough"))
        return parse_device(c, FY_DEV_PASSTHROUGH, tok, ntok, line);
    if (!strcmp(kw, "nic"))
        return parse_device(c, FY_DEV_NIC, tok, ntok, line);
    if (!strcmp(kw, "disk"))
        return parse_disk(c, tok, ntok, line);

    if (ntok != 2)
        return BAD("VM config line %u: '%s' takes one value", line, kw);
    const char *v = tok[1];
    if (!strcmp(kw, "name")) {
        if (!sim_name_ok(v))
            return BAD("VM config line %u: VM name '%s' must be 1-%d letters, "
                       "digits, '.', '_' or '-'", line, v, FY_NAME_MAX - 1);
        copy(c->name, sizeof(c->name), v);
    } else if (!strcmp(kw, "uuid")) {
        if (!copy(c->uuid, sizeof(c->uuid), v))
            return BAD("VM config line %u: uuid too long", line);
    } else if (!strcmp(kw, "mem")) {
        if (!sim_parse_size(v, &c->mem_bytes) || !c->mem_bytes ||
            c->mem_bytes % FY_PAGE_SIZE)
            return BAD("VM config line %u: mem '%s' must be a size such as 64M, "
                       "a multiple of 4 KiB", line, v);
    } else if (!strcmp(kw, "vcpus")) {
        char *end;
        unsigned long n = strtoul(v, &end, 10);
        if (*end || n == 0 || n > 1024)
            return BAD("VM config line %u: vcpus '%s' must be 1-1024", line, v);
        c->vcpus = (unsigned)n;
    } else if (!strcmp(kw, "cpu-vendor")) {
        if (!copy(c->cpu_vendor, sizeof(c->cpu_vendor), v))
            return BAD("VM config line %u: cpu-vendor too long", line);
    } else if (!strcmp(kw, "dynamic-memory")) {
        if (!parse_bool(v, &c->dynamic_memory))
            return BAD("VM config line %u: dynamic-memory must be 0 or 1", line);
    } else if (!strcmp(kw, "managed")) {
        if (!parse_bool(v, &c->managed))
            return BAD("VM config line %u: managed must be 0 or 1", line);
    } else if (!strcmp(kw, "power")) {
        unsigned p;
        for (p = 0; p < 4 && strcmp(v, power_names[p]); p++)
            ;
        if (p == 4)
            return BAD("VM config line %u: power '%s' is not off, running, "
                       "paused or suspended", line, v);
        c->power = (enum fy_power)p;
    } else {
        return BAD("VM config line %u: unknown keyword '%s'", line, kw);
    }
    return 0;
}

int sim_vmconf_parse(const char *text, struct sim_vmconf *c)
{
    char *copy_, *s, *nl;
    unsigned line = 1;
    int rc = 0;

    if (!text)
        return fy_error(FY_E_INVAL, "no VM configuration given");
    memset(c, 0, sizeof(*c));
    c->vcpus = 1;
    strcpy(c->cpu_vendor, "GenuineIntel");
    c->managed = true;
    c->rate = 1000;
    c->shared_seed = 1;
    c->zero_pct = 40;
    c->shared_pct = 20;
    c->pool = 512;
    copy_ = strdup(text);
    if (!copy_)
        return fy_error(FY_E_NOMEM, "no memory to parse a VM configuration");
    for (s = copy_; s && rc == 0; s = nl ? nl + 1 : NULL, line++) {
        nl = strchr(s, '\n');
        if (nl)
            *nl = '\0';
        rc = parse_line(c, s, line);
    }
    free(copy_);
    if (rc == 0 && !c->name[0])
        rc = BAD("VM config has no 'name' line");
    if (rc == 0 && !c->mem_bytes)
        rc = BAD("VM config of %s has no 'mem' line", c->name);
    if (rc == 0 && c->zero_pct + c->shared_pct > 100)
        rc = BAD("VM config of %s: workload zero=%u and shared=%u add up to more than "
                 "100 %%", c->name, c->zero_pct, c->shared_pct);
    return rc;
}

int sim_vmconf_format(const struct sim_vmconf *c, char **out)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (!f)
        return fy_error(FY_E_NOMEM, "no memory to format VM %s", c->name);
    fprintf(f, "name %s\n", c->name);
    if (c->uuid[0])
        fprintf(f, "uuid %s\n", c->uuid);
    fprintf(f, "mem %" PRIu64 "\n", c->mem_bytes);
    fprintf(f, "vcpus %u\n", c->vcpus);
    fprintf(f, "cpu-vendor %s\n", c->cpu_vendor);
    fprintf(f, "dynamic-memory %d\n", c->dynamic_memory);
    fprintf(f, "managed %d\n", c->managed);
    fprintf(f, "power %s\n", power_names[c->power]);
    fprintf(f, "workload rate=%.17g pattern=%s shared-seed=%" PRIu64
            " zero=%u shared=%u pool=%u\n", c->rate, pattern_names[c->pattern],
            c->shared_seed, c->zero_pct, c->shared_pct, c->pool);
    for (unsigned i = 0; i < c->ndevices; i++) {
        const struct fy_device *dev = &c->devices[i];
        const char *path = dev->path[0] ? dev->path : "none";
        switch (dev->kind) {
        case FY_DEV_USB:
            fprintf(f, "usb %s\n", dev->name);
            break;
        case FY_DEV_FLOPPY:
            fprintf(f, "floppy %s media=%s\n", dev->name, path);
            break;
        case FY_DEV_CDROM:
            fprintf(f, "cdrom %s iso=%s\n", dev->name, path);
            break;
        case FY_DEV_PASSTHROUGH:
            fprintf(f, "passthrough %s%s%s\n", dev->name,
                    dev->path[0] ? " device=" : "", dev->path);
            break;
        case FY_DEV_NIC:
            fprintf(f, "nic %s", dev->name);
            if (c->nic_network[i][0])
                fprintf(f, " network=%s", c->nic_network[i]);
            fprintf(f, " connected=%d\n", dev->media);
            break;
        }
    }
    for (unsigned i = 0; i < c->ndisks; i++) {
        const struct fy_disk *disk = &c->disks[i];
        fprintf(f, "disk %s ds=%s size=%" PRIu64, disk->name, disk->datastore,
                disk->virtual_size);
        if (disk->path[0])
            fprintf(f, " path=%s", disk->path);
        for (unsigned b = 0; b < disk->nbacking; b++)
            fprintf(f, " backing=%s", disk->backing[b]);
        fputc('\n', f);
    }
    if (fclose(f) != 0 || !buf) {
        free(buf);
        return fy_error(FY_E_NOMEM, "no memory to format VM %s", c->name);
    }
    *out = buf;
    return 0;
}
