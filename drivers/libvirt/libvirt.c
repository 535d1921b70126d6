/* The libvirt driver: real QEMU guests through libvirt (docs/libvirt.md).
 *
 * This file: the operations table, opening a connection with its
 * configuration, host_info, and what every other file shares (libvirt's
 * errors, domain lookup, the event loop libvirt needs).
 *
 * Any libvirt URI works.  With qemu:///embed?root=DIR the QEMU driver runs
 * inside the agent's process, keeping its state under DIR: one independent
 * host per agent and no libvirtd (the tests run two such hosts on one
 * machine).  Guests keep running when the agent exits and are found again
 * at the next open. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "drivers/libvirt/lv.h"

#define DEFAULT_TIMEOUT_S 60
#define DEFAULT_SHUTDOWN_S 60
#define CPU_OVERCOMMIT 4

static const char *const net_roles[FY_NET__COUNT] = {"management", "migration",
                                                      "provisioning"};

/* ---- libvirt's errors and event loop ------------------------------------ */

/* libvirt prints every error on stderr unless told otherwise; the driver
 * reports them itself, once, with fy_error. */
static void quiet(void *ctx, virErrorPtr err)
{
    (void)ctx;
    (void)err;
}

static void *event_loop(void *arg)
{
    (void)arg;
    for (;;)
        if (virEventRunDefaultImpl() < 0)
            usleep(10000);
    return NULL;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int once_rc;

/* The embedded QEMU driver talks to QEMU from libvirt's event loop, which
 * the embedding process must run: one thread for the process, for good
 * (the driver library is never unloaded). */
static void start_event_loop(void)
{
    pthread_t t;
    pthread_attr_t a;

    virSetErrorFunc(NULL, quiet);
    /* The embedded driver logs warnings (such as "tainted: high-privileges"
     * for every guest of a root agent) on stderr; errors are enough, and
     * they reach Ferry's own messages.  An operator's setting wins. */
    setenv("LIBVIRT_LOG_OUTPUTS", "4:stderr", 0);
    if (virEventRegisterDefaultImpl() < 0) {
        once_rc = -1;
        return;
    }
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    once_rc = pthread_create(&t, &a, event_loop, NULL) == 0 ? 0 : -1;
    pthread_attr_destroy(&a);
}

int lv_fail(int code, const char *fmt, ...)
{
    char what[512];
    virErrorPtr e = virGetLastError();
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (e && (e->code == VIR_ERR_NO_DOMAIN))
        code = FY_E_NOTFOUND;
    else if (e && e->code == VIR_ERR_OPERATION_TIMEOUT)
        code = FY_E_TIMEOUT;
    return fy_error(code, "%s: libvirt: %s", what,
                    e && e->message ? e->message : "unknown error");
}

int lv_lookup(struct fy_driver *d, const char *vm, virDomainPtr *out)
{
    *out = vm ? virDomainLookupByName(d->conn, vm) : NULL;
    if (!*out) {
        virErrorPtr e = virGetLastError();
        if (!vm || !e || e->code == VIR_ERR_NO_DOMAIN)
            return fy_error(FY_E_NOTFOUND, "libvirt host %s: no VM named '%s'; list "
                            "the VMs with 'ferryctl list'", d->host, vm ? vm : "(null)");
        return lv_fail(FY_E_IO, "libvirt host %s: cannot look up VM %s", d->host, vm);
    }
    return 0;
}

/* ---- configuration ---------------------------------------------------------- */

static bool copy_str(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    if (n >= size)
        return false;
    memcpy(dst, src, n + 1);
    return true;
}

static bool parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mul = 1;

    if (end == s)
        return false;
    switch (*end) {
    case 'K': case 'k': mul = 1ull << 10; end++; break;
    case 'M': case 'm': mul = 1ull << 20; end++; break;
    case 'G': case 'g': mul = 1ull << 30; end++; break;
    case 'T': case 't': mul = 1ull << 40; end++; break;
    default: break;
    }
    if (*end || v == 0 || v > UINT64_MAX / mul)
        return false;
    *out = v * mul;
    return true;
}

static int parse_seconds(const char *key, const char *v, int *out)
{
    char *end;
    long n = strtol(v, &end, 10);

    if (!*v || *end || n <= 0 || n > 86400)
        return fy_error(FY_E_CONFIG, "%s=%s: give a number of seconds (1-86400)", key, v);
    *out = (int)n;
    return 0;
}

/* datastores=NAME:PATH[:shared],... */
static int parse_datastores(struct fy_driver *d, const char *v)
{
    char *s = strdup(v), *save = NULL;
    int rc = 0;

    if (!s)
        return fy_error(FY_E_NOMEM, "no memory for datastores=");
    d->nds = 0;
    for (char *item = strtok_r(s, ",", &save); item && !rc;
         item = strtok_r(NULL, ",", &save)) {
        char *path = strchr(item, ':'), *flag;
        struct lv_datastore *ds = &d->ds[d->nds];

        if (d->nds == FY_MAX_DATASTORES) {
            rc = fy_error(FY_E_CONFIG, "datastores=: at most %d", FY_MAX_DATASTORES);
            break;
        }
        if (!path || path == item || path[1] != '/') {
            rc = fy_error(FY_E_CONFIG, "datastores=%s: give NAME:/ABSOLUTE/PATH[:shared]",
                          item);
            break;
        }
        *path++ = '\0';
        flag = strchr(path, ':');
        if (flag) {
            *flag++ = '\0';
            if (strcmp(flag, "shared") && strcmp(flag, "local")) {
                rc = fy_error(FY_E_CONFIG, "datastore %s: '%s' is neither shared nor "
                              "local", item, flag);
                break;
            }
            ds->shared = !strcmp(flag, "shared");
        }
        if (!copy_str(ds->name, sizeof(ds->name), item) ||
            !copy_str(ds->path, sizeof(ds->path) - 64, path)) {
            rc = fy_error(FY_E_CONFIG, "datastore %s: name or path too long", item);
            break;
        }
        d->nds++;
    }
    free(s);
    return rc;
}

/* net=ROLE:ADDR,... */
static int parse_net(struct fy_driver *d, const char *v)
{
    char *s = strdup(v), *save = NULL;
    int rc = 0;

    if (!s)
        return fy_error(FY_E_NOMEM, "no memory for net=");
    for (char *item = strtok_r(s, ",", &save); item && !rc;
         item = strtok_r(NULL, ",", &save)) {
        char *addr = strchr(item, ':');
        int r;

        if (!addr) {
            rc = fy_error(FY_E_CONFIG, "net=%s: give ROLE:ADDRESS", item);
            break;
        }
        *addr++ = '\0';
        for (r = 0; r < FY_NET__COUNT && strcmp(net_roles[r], item); r++)
            ;
        if (r == FY_NET__COUNT) {
            rc = fy_error(FY_E_CONFIG, "net=: unknown role '%s' (management, migration, "
                          "provisioning)", item);
            break;
        }
        if (!copy_str(d->net[r], sizeof(d->net[r]), addr))
            rc = fy_error(FY_E_CONFIG, "net=: address %s too long", addr);
    }
    free(s);
    return rc;
}

static int apply(struct fy_driver *d, const char *key, const char *v)
{
    char *end;

    if (!strcmp(key, "uri")) {
        if (!v[0] || !copy_str(d->uri, sizeof(d->uri), v))
            return fy_error(FY_E_CONFIG, "uri=%s: give a libvirt URI such as "
                            "qemu:///system", v);
        return 0;
    }
    if (!strcmp(key, "host")) {
        if (!v[0] || !copy_str(d->host, sizeof(d->host), v))
            return fy_error(FY_E_CONFIG, "host=%s: give a name of 1-%d bytes", v,
                            FY_NAME_MAX - 1);
        return 0;
    }
    if (!strcmp(key, "datastores"))
        return parse_datastores(d, v);
    if (!strcmp(key, "net"))
        return parse_net(d, v);
    if (!strcmp(key, "mem")) {
        if (!parse_size(v, &d->mem_limit))
            return fy_error(FY_E_CONFIG, "mem=%s is not a size such as 16G", v);
        return 0;
    }
    if (!strcmp(key, "cpus")) {
        unsigned long n = strtoul(v, &end, 10);
        if (!v[0] || *end || n == 0 || n > 65536)
            return fy_error(FY_E_CONFIG, "cpus=%s: give a number of vCPUs", v);
        d->cpus_limit = (unsigned)n;
        return 0;
    }
    if (!strcmp(key, "maintenance")) {
        if (strcmp(v, "0") && strcmp(v, "1"))
            return fy_error(FY_E_CONFIG, "maintenance=%s: give 0 or 1", v);
        d->maintenance = v[0] == '1';
        return 0;
    }
    if (!strcmp(key, "timeout"))
        return parse_seconds(key, v, &d->timeout_s);
    if (!strcmp(key, "shutdown-timeout"))
        return parse_seconds(key, v, &d->shutdown_s);
    if (!strcmp(key, "stream-bandwidth")) {
        if (!strcmp(v, "0")) {
            d->stream_bw = 0;
            return 0;
        }
        if (!parse_size(v, &d->stream_bw))
            return fy_error(FY_E_CONFIG, "stream-bandwidth=%s: give bytes per second such "
                            "as 100M, or 0 for no limit", v);
        return 0;
    }
    return fy_error(FY_E_CONFIG, "unknown libvirt driver setting '%s' (uri, host, "
                    "datastores, net, mem, cpus, maintenance, timeout, "
                    "shutdown-timeout, stream-bandwidth)", key);
}

static int parse_config(struct fy_driver *d, const char *config)
{
    char *s = strdup(config ? config : ""), *save = NULL;
    int rc = 0;

    if (!s)
        return fy_error(FY_E_NOMEM, "no memory for the driver configuration");
    for (char *item = strtok_r(s, ";", &save); item && !rc;
         item = strtok_r(NULL, ";", &save)) {
        char *eq;

        while (*item == ' ' || *item == '\t')
            item++;
        if (!*item)
            continue;
        if (!(eq = strchr(item, '='))) {
            rc = fy_error(FY_E_CONFIG, "libvirt driver setting '%s' is not key=value",
                          item);
            break;
        }
        *eq = '\0';
        rc = apply(d, item, eq + 1);
    }
    free(s);
    return rc;
}

/* "qemu:///embed?root=DIR" -> DIR into d->root; "" for other URIs. */
static int embed_root(struct fy_driver *d)
{
    const char *q = strstr(d->uri, ":///embed?");
    const char *r;
    size_t n;

    d->root[0] = '\0';
    if (!q)
        return 0;
    if (!(r = strstr(q, "root=")))
        return fy_error(FY_E_CONFIG, "uri=%s: an embed URI needs root=DIR", d->uri);
    r += 5;
    n = strcspn(r, "&");
    if (n == 0 || n >= sizeof(d->root) - 64 || r[0] != '/')
        return fy_error(FY_E_CONFIG, "uri=%s: root must be an absolute directory of at "
                        "most %zu bytes", d->uri, sizeof(d->root) - 64);
    memcpy(d->root, r, n);
    d->root[n] = '\0';
    return 0;
}

static int make_dirs(const char *path)
{
    char p[FY_PATH_MAX];

    if (!copy_str(p, sizeof(p), path))
        return fy_error(FY_E_CONFIG, "path %s too long", path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return fy_error_sys("cannot create directory %s", p);
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        return fy_error_sys("cannot create directory %s", p);
    return 0;
}

/* An embedded QEMU driver reads ROOT/etc/qemu.conf.  Its defaults are the
 * system daemon's (QEMU as user libvirt-qemu, logs through virtlogd), which
 * an agent's private host does not have: QEMU runs as the agent's user,
 * writes its log itself, and no security driver relabels files.  A
 * qemu.conf already there is left as it is. */
static int embed_defaults(struct fy_driver *d)
{
    char path[FY_PATH_MAX + 32];
    FILE *f;
    int rc;

    /* d->root has at most FY_PATH_MAX - 64 bytes (embed_root). */
    snprintf(path, sizeof(path), "%s/etc", d->root);
    if ((rc = make_dirs(path)) < 0)
        return rc;
    snprintf(path, sizeof(path), "%s/etc/qemu.conf", d->root);
    if (access(path, F_OK) == 0)
        return 0;
    if (!(f = fopen(path, "wx")))
        return errno == EEXIST ? 0 : fy_error_sys("cannot write %s", path);
    fprintf(f, "# Written by Ferry's libvirt driver for an embedded host "
               "(docs/libvirt.md).\n");
    if (geteuid() == 0)
        fprintf(f, "user = \"root\"\ngroup = \"root\"\n");
    fprintf(f, "stdio_handler = \"file\"\nremember_owner = 0\n"
               "dynamic_ownership = 0\nsecurity_driver = \"none\"\n");
    if (fclose(f) != 0)
        return fy_error_sys("cannot write %s", path);
    return 0;
}

static int set_defaults(struct fy_driver *d)
{
    if (!d->host[0]) {
        if (d->root[0]) {
            const char *b = strrchr(d->root, '/');
            snprintf(d->host, sizeof(d->host), "%.*s", FY_NAME_MAX - 1,
                     b && b[1] ? b + 1 : d->root);
        } else {
            char *h = virConnectGetHostname(d->conn);
            snprintf(d->host, sizeof(d->host), "%s", h ? h : "localhost");
            free(h);
        }
    }
    if (!d->nds) {
        struct lv_datastore *ds = &d->ds[d->nds++];
        snprintf(ds->name, sizeof(ds->name), "%s", d->root[0] ? "images" : "default");
        if (d->root[0])
            snprintf(ds->path, sizeof(ds->path), "%.*s/images", FY_PATH_MAX - 64, d->root);
        else
            snprintf(ds->path, sizeof(ds->path), "/var/lib/libvirt/images");
    }
    for (unsigned i = 0; i < d->nds; i++) {
        int rc = make_dirs(d->ds[i].path);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void lv_close(struct fy_driver *d)
{
    if (!d)
        return;
    lv_memory_forget_all(d);
    if (d->conn)
        virConnectClose(d->conn);
    if (d->work[0])
        rmdir(d->work);
    free(d);
}

static int lv_open(const char *config, struct fy_driver **out)
{
    struct fy_driver *d;
    int rc;

    *out = NULL;
    if (!(d = calloc(1, sizeof(*d))))
        return fy_error(FY_E_NOMEM, "no memory for a libvirt driver instance");
    snprintf(d->uri, sizeof(d->uri), "qemu:///system");
    d->timeout_s = DEFAULT_TIMEOUT_S;
    d->shutdown_s = DEFAULT_SHUTDOWN_S;
    if ((rc = parse_config(d, config)) < 0 || (rc = embed_root(d)) < 0)
        goto fail;
    if (d->root[0] && (rc = embed_defaults(d)) < 0)
        goto fail;
    pthread_once(&once, start_event_loop);
    if (once_rc < 0) {
        rc = fy_error(FY_E_SYS, "libvirt: cannot start its event loop");
        goto fail;
    }
    if (!(d->conn = virConnectOpen(d->uri))) {
        virErrorPtr e = virGetLastError();
        const char *msg = e && e->message ? e->message : "unknown error";
        rc = fy_error(FY_E_IO, "cannot connect to %s: libvirt: %s%s", d->uri, msg,
                      strstr(msg, "parse user") ? " (the QEMU driver run as root needs "
                      "the system user libvirt-qemu: scripts/setup-deps creates it)" : "");
        goto fail;
    }
    if ((rc = set_defaults(d)) < 0)
        goto fail;
    /* Sockets QEMU's migration streams meet the driver at: short paths
     * (sun_path has 108 bytes), private to this instance. */
    snprintf(d->work, sizeof(d->work), "/tmp/ferry-lv.XXXXXX");
    if (!mkdtemp(d->work)) {
        d->work[0] = '\0';
        rc = fy_error_sys("cannot create a directory for migration sockets in /tmp");
        goto fail;
    }
    *out = d;
    return 0;
fail:
    lv_close(d);
    return rc;
}

/* ---- the host ------------------------------------------------------------------ */

/* "<tag>TEXT</tag>" inside 'from' (before 'end' if given), into out. */
static void xml_text(const char *from, const char *end, const char *tag, char *out,
                     size_t len)
{
    char open[64];
    const char *s, *e;

    out[0] = '\0';
    snprintf(open, sizeof(open), "<%s>", tag);
    if (!from || !(s = strstr(from, open)) || (end && s > end))
        return;
    s += strlen(open);
    if (!(e = strchr(s, '<')))
        return;
    snprintf(out, len, "%.*s", (int)(e - s), s);
}

void lv_host_cpu(struct fy_driver *d, char *vendor, size_t vlen, char *model, size_t mlen)
{
    char *caps = virConnectGetCapabilities(d->conn);
    const char *host = caps ? strstr(caps, "<host>") : NULL;
    const char *hend = host ? strstr(host, "</host>") : NULL;
    char v[64] = "", m[FY_NAME_MAX] = "";

    xml_text(host, hend, "vendor", v, sizeof(v));
    xml_text(host, hend, "model", m, sizeof(m));
    free(caps);
    if (!v[0] && !d->root[0] && strstr(d->uri, "://") && strstr(d->uri, ":///") == NULL)
        goto out; /* a remote host: its /proc/cpuinfo is not ours */
    if (!v[0]) {
        FILE *f = fopen("/proc/cpuinfo", "re");
        char line[256];
        while (f && fgets(line, sizeof(line), f)) {
            char *c = strchr(line, ':');
            if (!c)
                continue;
            c += 2;
            c[strcspn(c, "\n")] = '\0';
            if (!v[0] && !strncmp(line, "vendor_id", 9))
                snprintf(v, sizeof(v), "%s", c);
            else if (!m[0] && !strncmp(line, "model name", 10))
                snprintf(m, sizeof(m), "%s", c);
        }
        if (f)
            fclose(f);
    }
out:
    if (!strcmp(v, "Intel"))
        snprintf(v, sizeof(v), "GenuineIntel");
    else if (!strcmp(v, "AMD"))
        snprintf(v, sizeof(v), "AuthenticAMD");
    snprintf(vendor, vlen, "%s", v);
    snprintf(model, mlen, "%s", m);
}

const struct lv_datastore *lv_datastore_of(struct fy_driver *d, const char *path)
{
    const struct lv_datastore *best = NULL;
    size_t blen = 0;

    for (unsigned i = 0; i < d->nds; i++) {
        size_t n = strlen(d->ds[i].path);
        if (n > blen && !strncmp(path, d->ds[i].path, n) && path[n] == '/') {
            best = &d->ds[i];
            blen = n;
        }
    }
    return best;
}

static int lv_host_info(struct fy_driver *d, struct fy_host_info *out)
{
    virNodeInfo ni;
    virDomainPtr *doms = NULL;
    unsigned long long node_free, used_mem = 0;
    unsigned used_cpus = 0;
    int n;

    memset(out, 0, sizeof(*out));
    if (virNodeGetInfo(d->conn, &ni) < 0)
        return lv_fail(FY_E_IO, "libvirt host %s: cannot read the node's figures", d->host);
    node_free = virNodeGetFreeMemory(d->conn);
    if ((n = virConnectListAllDomains(d->conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE)) < 0)
        return lv_fail(FY_E_IO, "libvirt host %s: cannot list its VMs", d->host);
    for (int i = 0; i < n; i++) {
        virDomainInfo di;
        if (virDomainGetInfo(doms[i], &di) == 0) {
            used_mem += (unsigned long long)di.memory * 1024;
            used_cpus += di.nrVirtCpu;
        }
        virDomainFree(doms[i]);
    }
    free(doms);

    snprintf(out->name, sizeof(out->name), "%s", d->host);
    snprintf(out->hypervisor, sizeof(out->hypervisor), "qemu");
    lv_host_cpu(d, out->cpu_vendor, sizeof(out->cpu_vendor), out->cpu_model,
                sizeof(out->cpu_model));
    out->mem_total = d->mem_limit ? d->mem_limit : (uint64_t)ni.memory * 1024;
    out->mem_free = out->mem_total > used_mem ? out->mem_total - used_mem : 0;
    if (node_free && out->mem_free > node_free)
        out->mem_free = node_free;
    out->cpus_total = d->cpus_limit ? d->cpus_limit : ni.cpus * CPU_OVERCOMMIT;
    out->cpus_free = out->cpus_total > used_cpus ? out->cpus_total - used_cpus : 0;
    out->dynamic_memory = true;
    out->maintenance = d->maintenance;
    for (int r = 0; r < FY_NET__COUNT; r++)
        snprintf(out->net[r], sizeof(out->net[r]), "%s", d->net[r]);
    for (unsigned i = 0; i < d->nds; i++) {
        struct fy_datastore *ds = &out->datastores[out->ndatastores++];
        struct statvfs sv;

        snprintf(ds->name, sizeof(ds->name), "%s", d->ds[i].name);
        snprintf(ds->path, sizeof(ds->path), "%s", d->ds[i].path);
        ds->shared = d->ds[i].shared;
        if (statvfs(d->ds[i].path, &sv) == 0) {
            ds->capacity = (uint64_t)sv.f_blocks * sv.f_frsize;
            ds->free = (uint64_t)sv.f_bavail * sv.f_frsize;
        }
    }
    return 0;
}

/* ---- the table -------------------------------------------------------------------- */

static const struct fy_driver_ops lv_ops = {
    .abi = FY_DRIVER_ABI,
    .name = "libvirt",
    .description = "QEMU guests through libvirt (any URI; qemu:///embed?root=DIR "
                   "for a daemonless host)",
    .caps = FY_DRV_LIVE | FY_DRV_COLD | FY_DRV_QUICK | FY_DRV_SUSPEND |
            FY_DRV_FAILOVER | FY_DRV_DEVICE_STATE | FY_DRV_RAM_DIRECT | FY_DRV_STREAM
#ifdef LV_HAVE_NBD
            | FY_DRV_STORAGE
#endif
            ,
    .open = lv_open,
    .close = lv_close,
    .host_info = lv_host_info,
    .vm_list = lv_vm_list,
    .vm_info = lv_vm_info,
    .vm_start = lv_vm_start,
    .vm_stop = lv_vm_stop,
    .vm_pause = lv_vm_pause,
    .vm_resume = lv_vm_resume,
    .vm_export = lv_vm_export,
    .vm_define = lv_vm_define,
    .vm_undefine = lv_vm_undefine,
    .vm_rename = lv_vm_rename,
    .memory_layout = lv_memory_layout,
    .incoming_prepare = lv_incoming_prepare,
    .device_state_save = lv_device_state_save,
    .device_state_load = lv_device_state_load,
    .vm_suspend = lv_vm_suspend,
    .vm_restore = lv_vm_restore,
    /* Stream mode: QEMU's multifd migration carried by Ferry (stream.c). */
    .stream_incoming = lv_stream_incoming,
    .stream_outgoing = lv_stream_outgoing,
    .stream_start = lv_stream_start,
    .stream_status = lv_stream_status,
    .stream_end = lv_stream_end,
    /* A base image sent under another name (qcow2.c). */
    .disk_rebase = lv_disk_rebase,
#ifdef LV_HAVE_NBD
    /* Hot disks through QEMU's NBD server (nbd_disk.c). */
    .disk_create = lv_disk_create,
    .disk_open = lv_disk_open,
    .disk_read = lv_disk_read,
    .disk_write = lv_disk_write,
    .disk_zero = lv_disk_zero,
    .disk_dirty = lv_disk_dirty,
    .disk_close = lv_disk_close,
#endif
};

FY_DRIVER_REGISTER(lv_ops)
