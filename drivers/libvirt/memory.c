/* A running domain's RAM as the dataplane reads and fills it.
 *
 * Guest RAM must be a shared memory backend, which the domain XML asks for
 * with <memoryBacking><source type='memfd'/><access mode='shared'/>
 * </memoryBacking> (or type='file'): QEMU then maps a memfd or a file
 * MAP_SHARED, and another process that opens the same object sees the
 * guest's pages.  The driver finds QEMU's process by the domain's UUID on
 * its command line, the backends among its -object arguments (id and size,
 * in order), and each backend's descriptor in /proc/PID/fd, which it opens
 * again: /proc/PID/fd/N of a memfd is the same memory, not a copy. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "drivers/libvirt/lv.h"

#define CMDLINE_MAX (1 << 20)

struct backend {
    bool memfd;             /* else a file */
    bool shared;
    char id[FY_NAME_MAX];
    char path[FY_PATH_MAX]; /* file: mem-path */
    uint64_t size;
};

/* /proc/PID/cmdline into buf (NUL-separated); its length, or -1. */
static ssize_t read_cmdline(pid_t pid, char *buf, size_t len)
{
    char path[64];
    ssize_t n, total = 0;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return -1;
    while ((size_t)total < len - 1 && (n = read(fd, buf + total, len - 1 - (size_t)total)) > 0)
        total += n;
    close(fd);
    buf[total] = '\0';
    return total;
}

/* Whether process 'pid' runs QEMU with "-uuid UUID". */
static bool runs_uuid(pid_t pid, const char *uuid, char *buf)
{
    ssize_t n = read_cmdline(pid, buf, CMDLINE_MAX);

    for (char *a = buf; n > 0 && a < buf + n; a += strlen(a) + 1)
        if (!strcmp(a, "-uuid") && a + 6 < buf + n && !strcmp(a + 6, uuid))
            return true;
    return false;
}

/* libvirt's pid file of the domain, where this host keeps it: the one
 * sure way when several hosts share a machine (two embedded roots run
 * QEMUs with the same UUID during a migration). */
static pid_t pid_from_file(struct fy_driver *d, const char *vm)
{
    char path[FY_PATH_MAX + FY_NAME_MAX + 32];
    FILE *f;
    long p = 0;

    if (d->root[0])
        snprintf(path, sizeof(path), "%s/run/qemu/%s.pid", d->root, vm);
    else if (!strcmp(d->uri, "qemu:///system"))
        snprintf(path, sizeof(path), "/run/libvirt/qemu/%s.pid", vm);
    else
        return 0;
    if (!(f = fopen(path, "re")))
        return 0;
    if (fscanf(f, "%ld", &p) != 1)
        p = 0;
    fclose(f);
    return (pid_t)p;
}

int lv_qemu_pid(struct fy_driver *d, virDomainPtr dom, pid_t *pid)
{
    char uuid[VIR_UUID_STRING_BUFLEN];
    char *buf = malloc(CMDLINE_MAX);
    DIR *proc = NULL;
    struct dirent *e;
    pid_t p;
    int rc = 0;

    *pid = 0;
    if (!buf)
        return fy_error(FY_E_NOMEM, "no memory to find QEMU's process");
    if (virDomainGetUUIDString(dom, uuid) < 0) {
        free(buf);
        return lv_fail(FY_E_IO, "VM %s: cannot read its UUID", virDomainGetName(dom));
    }
    if ((p = pid_from_file(d, virDomainGetName(dom))) > 0 && runs_uuid(p, uuid, buf)) {
        *pid = p;
        goto out;
    }
    /* A host of its own: the one QEMU with this UUID. */
    if (!(proc = opendir("/proc"))) {
        rc = fy_error_sys("cannot list /proc");
        goto out;
    }
    while (!*pid && (e = readdir(proc))) {
        char *end;
        long n = strtol(e->d_name, &end, 10);

        if (!*end && n > 0 && runs_uuid((pid_t)n, uuid, buf))
            *pid = (pid_t)n;
    }
    closedir(proc);
    if (!*pid)
        rc = fy_error(FY_E_NOTFOUND, "VM %s: no QEMU process runs it on this host (is it "
                      "running, and does this agent run on its host?)",
                      virDomainGetName(dom));
out:
    free(buf);
    return rc;
}

/* One -object argument, JSON ({"qom-type":...}) or key=value form. */
static void parse_object(const char *arg, struct backend *b, bool *is_mem)
{
    *is_mem = false;
    memset(b, 0, sizeof(*b));
    if (arg[0] == '{') {
        json_object *o = json_tokener_parse(arg), *v;
        const char *type;

        if (!o)
            return;
        type = json_object_object_get_ex(o, "qom-type", &v) ? json_object_get_string(v) : "";
        if (!strcmp(type, "memory-backend-memfd") || !strcmp(type, "memory-backend-file")) {
            *is_mem = true;
            b->memfd = !strcmp(type, "memory-backend-memfd");
            if (json_object_object_get_ex(o, "id", &v))
                snprintf(b->id, sizeof(b->id), "%s", json_object_get_string(v));
            if (json_object_object_get_ex(o, "size", &v))
                b->size = (uint64_t)json_object_get_int64(v);
            if (json_object_object_get_ex(o, "share", &v))
                b->shared = json_object_get_boolean(v);
            if (json_object_object_get_ex(o, "mem-path", &v))
                snprintf(b->path, sizeof(b->path), "%s", json_object_get_string(v));
        }
        json_object_put(o);
        return;
    }
    if (strncmp(arg, "memory-backend-memfd,", 21) && strncmp(arg, "memory-backend-file,", 20))
        return;
    *is_mem = true;
    b->memfd = !strncmp(arg, "memory-backend-memfd,", 21);
    char *s = strdup(arg), *save = NULL;
    for (char *kv = s ? strtok_r(s, ",", &save) : NULL; kv; kv = strtok_r(NULL, ",", &save)) {
        if (!strncmp(kv, "id=", 3))
            snprintf(b->id, sizeof(b->id), "%s", kv + 3);
        else if (!strncmp(kv, "size=", 5))
            b->size = strtoull(kv + 5, NULL, 10);
        else if (!strncmp(kv, "share=", 6))
            b->shared = !strcmp(kv + 6, "on") || !strcmp(kv + 6, "yes") ||
                        !strcmp(kv + 6, "true");
        else if (!strncmp(kv, "mem-path=", 9))
            snprintf(b->path, sizeof(b->path), "%s", kv + 9);
    }
    free(s);
}

static int list_backends(pid_t pid, const char *vm, struct backend *bs, unsigned *n)
{
    char *buf = malloc(CMDLINE_MAX);
    ssize_t len;

    *n = 0;
    if (!buf)
        return fy_error(FY_E_NOMEM, "no memory to read QEMU's command line");
    if ((len = read_cmdline(pid, buf, CMDLINE_MAX)) <= 0) {
        free(buf);
        return fy_error(FY_E_NOTFOUND, "VM %s: its QEMU process %d is gone", vm, (int)pid);
    }
    for (char *a = buf; a < buf + len; a += strlen(a) + 1) {
        char *v = a + strlen(a) + 1;
        bool is_mem;

        if (strcmp(a, "-object") || v >= buf + len)
            continue;
        parse_object(v, &bs[*n], &is_mem);
        if (is_mem && *n < FY_MAX_REGIONS)
            (*n)++;
    }
    free(buf);
    return 0;
}

/* The descriptor of backend 'b' in QEMU's process, opened again; skips
 * descriptors already taken. */
static int open_backend(pid_t pid, const struct backend *b, const int *taken, unsigned ntaken,
                        int *out_fd)
{
    char dpath[64], lpath[96], link[FY_PATH_MAX + 32];
    DIR *dir;
    struct dirent *e;
    int best = -1;

    *out_fd = -1;
    snprintf(dpath, sizeof(dpath), "/proc/%d/fd", (int)pid);
    if (!(dir = opendir(dpath)))
        return fy_error_sys("cannot list %s (the agent needs to run as QEMU's user or "
                            "root)", dpath);
    while ((e = readdir(dir))) {
        char *end;
        long n = strtol(e->d_name, &end, 10);
        ssize_t l;
        bool ok;

        if (*end || n < 0)
            continue;
        snprintf(lpath, sizeof(lpath), "%s/%ld", dpath, n);
        if ((l = readlink(lpath, link, sizeof(link) - 1)) <= 0)
            continue;
        link[l] = '\0';
        if (b->memfd)
            ok = !strncmp(link, "/memfd:memory-backend-memfd", 27);
        else
            ok = b->path[0] && !strncmp(link, b->path, strlen(b->path));
        for (unsigned i = 0; ok && i < ntaken; i++)
            if (taken[i] == (int)n)
                ok = false;
        if (!ok)
            continue;
        /* The lowest matching descriptor first: QEMU opens backends in
         * command-line order. */
        int fd = open(lpath, O_RDWR | O_CLOEXEC);
        struct stat st;
        if (fd < 0)
            continue;
        if (fstat(fd, &st) == 0 && (uint64_t)st.st_size >= b->size &&
            (best < 0 || n < best)) {
            if (*out_fd >= 0)
                close(*out_fd);
            *out_fd = fd;
            best = (int)n;
        } else {
            close(fd);
        }
    }
    closedir(dir);
    return best;
}

static struct lv_memvm *find_mem(struct fy_driver *d, const unsigned char *uuid, bool add)
{
    struct lv_memvm *free_slot = NULL;

    for (unsigned i = 0; i < LV_MAX_MEMVMS; i++) {
        if (d->mem[i].used && !memcmp(d->mem[i].uuid, uuid, VIR_UUID_BUFLEN))
            return &d->mem[i];
        if (!d->mem[i].used && !free_slot)
            free_slot = &d->mem[i];
    }
    return add ? free_slot : NULL;
}

static void release(struct lv_memvm *m)
{
    for (unsigned i = 0; i < m->layout.n; i++)
        if (m->layout.regions[i].fd >= 0)
            close(m->layout.regions[i].fd);
    memset(m, 0, sizeof(*m));
}

void lv_memory_forget(struct fy_driver *d, virDomainPtr dom)
{
    unsigned char uuid[VIR_UUID_BUFLEN];
    struct lv_memvm *m;

    if (dom && virDomainGetUUID(dom, uuid) == 0 && (m = find_mem(d, uuid, false)))
        release(m);
}

void lv_memory_forget_all(struct fy_driver *d)
{
    for (unsigned i = 0; i < LV_MAX_MEMVMS; i++)
        if (d->mem[i].used)
            release(&d->mem[i]);
}

static int find_layout(const char *vm, pid_t pid, struct fy_memory_layout *l)
{
    struct backend bs[FY_MAX_REGIONS];
    int taken[FY_MAX_REGIONS];
    unsigned n;
    int rc;

    memset(l, 0, sizeof(*l));
    if ((rc = list_backends(pid, vm, bs, &n)) < 0)
        return rc;
    if (n == 0)
        return fy_error(FY_E_UNSUPPORTED, "VM %s: its RAM is private to QEMU, so Ferry "
                        "cannot read it; give the domain <memoryBacking><source "
                        "type='memfd'/><access mode='shared'/></memoryBacking>", vm);
    for (unsigned i = 0; i < n; i++) {
        struct fy_memory_region *r = &l->regions[i];
        int fd;

        if (!bs[i].shared)
            return fy_error(FY_E_UNSUPPORTED, "VM %s: memory backend %s is not shared; "
                            "give the domain <memoryBacking><access mode='shared'/>"
                            "</memoryBacking>", vm, bs[i].id);
        if (bs[i].size == 0 || bs[i].size % 4096)
            return fy_error(FY_E_UNSUPPORTED, "VM %s: memory backend %s has %llu bytes, "
                            "not whole 4 KiB pages", vm, bs[i].id,
                            (unsigned long long)bs[i].size);
        taken[i] = open_backend(pid, &bs[i], taken, i, &fd);
        if (taken[i] < 0) {
            for (unsigned k = 0; k < i; k++)
                close(l->regions[k].fd);
            memset(l, 0, sizeof(*l));
            return fy_error(FY_E_NOTFOUND, "VM %s: QEMU process %d has no open %s for "
                            "memory backend %s", vm, (int)pid,
                            bs[i].memfd ? "memfd" : "file", bs[i].id);
        }
        snprintf(r->name, sizeof(r->name), "%s", bs[i].id[0] ? bs[i].id : "ram");
        r->size = bs[i].size;
        r->fd = fd;
        r->offset = 0;
        r->pid = pid;
        l->n = i + 1;
    }
    return 0;
}

int lv_memory_layout(struct fy_driver *d, const char *vm, struct fy_memory_layout *out)
{
    unsigned char uuid[VIR_UUID_BUFLEN];
    virDomainPtr dom;
    struct lv_memvm *m;
    pid_t pid;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = lv_lookup(d, vm, &dom)) < 0)
        return rc;
    if ((rc = lv_qemu_pid(d, dom, &pid)) < 0)
        goto out;
    if (virDomainGetUUID(dom, uuid) < 0) {
        rc = lv_fail(FY_E_IO, "VM %s: cannot read its UUID", vm);
        goto out;
    }
    m = find_mem(d, uuid, true);
    if (m && m->used && m->pid == pid) {
        *out = m->layout;
        goto out;
    }
    if (m && m->used)
        release(m);
    if (!m) {
        rc = fy_error(FY_E_NOSPACE, "libvirt host %s: memory of more than %d VMs open "
                      "at once", d->host, LV_MAX_MEMVMS);
        goto out;
    }
    if ((rc = find_layout(vm, pid, &m->layout)) < 0)
        goto out;
    m->used = true;
    m->pid = pid;
    memcpy(m->uuid, uuid, VIR_UUID_BUFLEN);
    *out = m->layout;
out:
    virDomainFree(dom);
    return rc;
}
