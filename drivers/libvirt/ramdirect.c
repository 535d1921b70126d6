/* RAM-direct: guest RAM moves through Ferry's dataplane straight between
 * the shared memory backends of the two QEMUs; QEMU's own migration then
 * carries only the rest, device state, because both ends set the
 * x-ignore-shared capability (shared RAM blocks are left out of the
 * stream).
 *
 * Target: incoming_prepare starts QEMU paused with "-incoming defer" (its
 * RAM exists, zero, and Ferry fills it through memory_layout);
 * device_state_load then starts the deferred incoming migration on a UNIX
 * socket in the driver's private directory and writes the saved stream
 * into it.  Source: device_state_save, with the VM paused, migrates to a
 * socket the driver listens on and keeps what arrives.  Ferry carries that
 * blob between the agents over the dataplane (controlplane/host_devstate.c);
 * it is zlib-compressed, because every byte of it is downtime (the BIOS
 * and option ROMs in it halve).  Verified on QEMU 7.2 with a Linux guest
 * (docs/libvirt.md). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <zlib.h>

#include "drivers/libvirt/lv.h"

/* QEMU's stream for a guest without its RAM is hundreds of KiB; a VGA
 * card's video RAM (not shared) adds its size. */
#define STATE_MAX (256u << 20)

/* The blob: "FYQS", version (u32), length of QEMU's stream (u64), both
 * little-endian, then the stream, zlib-compressed. */
#define BLOB_MAGIC "FYQS"
#define BLOB_VERSION 1u
#define BLOB_HDR 16

static void put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* QEMU's stream 'raw' (n bytes) -> a malloc'd blob. */
static int pack(const char *vm, const unsigned char *raw, size_t n, void **out, size_t *len)
{
    uLongf clen = compressBound((uLong)n);
    unsigned char *b = malloc(BLOB_HDR + clen);

    if (!b)
        return fy_error(FY_E_NOMEM, "VM %s: no memory for its device state", vm);
    memcpy(b, BLOB_MAGIC, 4);
    put_le(b + 4, BLOB_VERSION, 4);
    put_le(b + 8, n, 8);
    if (compress2(b + BLOB_HDR, &clen, raw, (uLong)n, 1) != Z_OK) {
        free(b);
        return fy_error(FY_E_NOMEM, "VM %s: cannot compress its device state", vm);
    }
    *out = b;
    *len = BLOB_HDR + clen;
    return 0;
}

/* A blob from pack() -> QEMU's stream (malloc'd). */
static int unpack(const char *vm, const unsigned char *b, size_t len, unsigned char **raw,
                  size_t *n)
{
    uint64_t want;
    uLongf got;

    *raw = NULL;
    if (len < BLOB_HDR || memcmp(b, BLOB_MAGIC, 4) != 0 ||
        get_le(b + 4, 4) != BLOB_VERSION)
        return fy_error(FY_E_PROTO, "VM %s: the device state is not from this driver's "
                        "device_state_save (version %u)", vm, BLOB_VERSION);
    want = get_le(b + 8, 8);
    if (want == 0 || want > STATE_MAX)
        return fy_error(FY_E_PROTO, "VM %s: device state claims %llu bytes", vm,
                        (unsigned long long)want);
    if (!(*raw = malloc(want)))
        return fy_error(FY_E_NOMEM, "VM %s: no memory for its device state", vm);
    got = (uLongf)want;
    if (uncompress(*raw, &got, b + BLOB_HDR, (uLong)(len - BLOB_HDR)) != Z_OK ||
        got != want) {
        free(*raw);
        *raw = NULL;
        return fy_error(FY_E_CHECKSUM, "VM %s: the device state is damaged", vm);
    }
    *n = (size_t)want;
    return 0;
}

static int sock_path(struct fy_driver *d, const char *what, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/%s-%u.sock", d->work, what,
                 ++d->seq) >= (int)sizeof(sa->sun_path))
        return fy_error(FY_E_TOOBIG, "socket path in %s too long", d->work);
    unlink(sa->sun_path);
    return 0;
}

/* Waits for 'fd' to be ready for 'events' until 'deadline' (CLOCK_MONOTONIC
 * seconds). */
static int wait_fd(int fd, short events, time_t deadline, const char *what)
{
    for (;;) {
        struct timespec t;
        struct pollfd p = {.fd = fd, .events = events};
        int left, n;

        clock_gettime(CLOCK_MONOTONIC, &t);
        left = (int)(deadline - t.tv_sec);
        if (left <= 0)
            return fy_error(FY_E_TIMEOUT, "%s: QEMU did not answer in time", what);
        n = poll(&p, 1, left * 1000);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return fy_error_sys("%s: poll", what);
    }
}

static time_t deadline_in(int s)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + s;
}

/* Refuses a disk file that exists empty: the target's QEMU opens its disks
 * when it starts, so RAM-direct needs them complete (shared storage, or
 * moved before the placeholder starts). */
static int check_disks(const char *config, const char *vm)
{
    struct fy_vm_info info;
    struct stat st;
    int rc;

    if ((rc = lv_xml_info(config, &info)) < 0)
        return rc;
    for (unsigned i = 0; i < info.ndisks; i++)
        if (stat(info.disks[i].path, &st) == 0 && st.st_size == 0)
            return fy_error(FY_E_UNSUPPORTED, "VM %s: disk %s (%s) is still empty on this "
                            "host: a RAM-direct migration needs the VM's disks on shared "
                            "storage or moved first (quick migration moves them while "
                            "the VM is paused; live migration needs a driver built with "
                            "libnbd, which moves them while the VM runs)", vm,
                            info.disks[i].name, info.disks[i].path);
    return 0;
}

int lv_incoming_prepare(struct fy_driver *d, const char *config, const char *name)
{
    char vm[FY_NAME_MAX];
    char *inc = NULL, *clean = NULL;
    virDomainPtr dom = NULL, pdom = NULL;
    int rc;

    lv_xml_name(config, vm, sizeof(vm));
    if (name)
        snprintf(vm, sizeof(vm), "%s", name);
    if (!vm[0])
        return fy_error(FY_E_INVAL, "libvirt: incoming_prepare: the configuration names "
                        "no VM");
    if ((dom = virDomainLookupByName(d->conn, vm))) {
        virDomainFree(dom);
        return fy_error(FY_E_EXISTS, "libvirt host %s: a VM named %s exists already; "
                        "remove it or migrate under another name", d->host, vm);
    }
    if ((rc = check_disks(config, vm)) < 0 ||
        (rc = lv_xml_rewrite(config, name, NULL, 0, LV_XML_INCOMING, &inc)) < 0 ||
        (rc = lv_xml_rewrite(config, name, NULL, 0, LV_XML_KEEP, &clean)) < 0)
        goto out;
    /* Started from the incoming XML (transient), then defined from the
     * plain one: the running QEMU waits for its state, and the VM's
     * persistent definition, used at its next start, has no -incoming. */
    if (!(dom = virDomainCreateXML(d->conn, inc, VIR_DOMAIN_START_PAUSED))) {
        rc = lv_fail(FY_E_IO, "libvirt host %s: cannot start placeholder VM %s", d->host,
                     vm);
        goto out;
    }
    if (!(pdom = virDomainDefineXML(d->conn, clean))) {
        rc = lv_fail(FY_E_IO, "libvirt host %s: cannot define placeholder VM %s", d->host,
                     vm);
        virDomainDestroy(dom);
        goto out;
    }
out:
    if (dom)
        virDomainFree(dom);
    if (pdom)
        virDomainFree(pdom);
    free(inc);
    free(clean);
    return rc;
}

int lv_device_state_save(struct fy_driver *d, const char *vm, void **out, size_t *len)
{
    struct sockaddr_un sa = {0};
    virDomainPtr dom;
    enum fy_power power = FY_POWER_OFF;
    char cmd[FY_PATH_MAX + 128];
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0;
    int lfd = -1, cfd = -1, rc;
    bool started = false, cap_set = false;
    time_t deadline = deadline_in(d->timeout_s);

    *out = NULL;
    *len = 0;
    if ((rc = lv_lookup(d, vm, &dom)) < 0)
        return rc;
    if ((rc = lv_power(dom, &power)) < 0)
        goto out;
    if (power != FY_POWER_PAUSED) {
        rc = fy_error(FY_E_BUSY, "VM %s must be paused to save its device state", vm);
        goto out;
    }
    if ((rc = sock_path(d, "out", &sa)) < 0)
        goto out;
    if ((lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 1) != 0) {
        rc = fy_error_sys("cannot listen on %s for VM %s's device state", sa.sun_path, vm);
        goto out;
    }
    if ((rc = lv_qmp_migrate_cap(dom, "x-ignore-shared", true)) < 0)
        goto out;
    cap_set = true;
    snprintf(cmd, sizeof(cmd), "{\"execute\":\"migrate\",\"arguments\":{\"uri\":"
             "\"unix:%s\"}}", sa.sun_path);
    if ((rc = lv_qmp(dom, cmd, NULL)) < 0)
        goto out;
    started = true;
    if ((rc = wait_fd(lfd, POLLIN, deadline, "device state save")) < 0)
        goto out;
    if ((cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
        rc = fy_error_sys("VM %s: accepting QEMU's migration stream", vm);
        goto out;
    }
    for (;;) {
        ssize_t r;

        if (n == cap) {
            unsigned char *nb;
            cap = cap ? cap * 2 : 1u << 20;
            if (cap > STATE_MAX || !(nb = realloc(buf, cap))) {
                rc = fy_error(FY_E_TOOBIG, "VM %s: device state beyond %u MiB (does it "
                              "have RAM that is not shared, such as video RAM?)", vm,
                              STATE_MAX >> 20);
                goto out;
            }
            buf = nb;
        }
        if ((rc = wait_fd(cfd, POLLIN, deadline, "device state save")) < 0)
            goto out;
        r = read(cfd, buf + n, cap - n);
        if (r == 0)
            break;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = fy_error_sys("VM %s: reading QEMU's migration stream", vm);
            goto out;
        }
        n += (size_t)r;
    }
    if ((rc = lv_qmp_migrate_wait(dom, d->timeout_s, "device state save")) < 0)
        goto out;
    started = false;
    rc = pack(vm, buf, n, out, len);
out:
    if (started)
        lv_qmp(dom, "{\"execute\":\"migrate_cancel\"}", NULL);
    /* A source that resumes (rollback) migrates normally later. */
    if (cap_set)
        lv_qmp_migrate_cap(dom, "x-ignore-shared", false);
    if (cfd >= 0)
        close(cfd);
    if (lfd >= 0)
        close(lfd);
    if (sa.sun_path[0])
        unlink(sa.sun_path);
    free(buf);
    virDomainFree(dom);
    return rc;
}

int lv_device_state_load(struct fy_driver *d, const char *vm, const void *state, size_t len)
{
    struct sockaddr_un sa = {0};
    virDomainPtr dom;
    json_object *st = NULL, *v;
    char cmd[FY_PATH_MAX + 128];
    unsigned char *p = NULL; /* QEMU's stream */
    size_t n = 0, done = 0;
    int fd = -1, rc;
    time_t deadline = deadline_in(d->timeout_s);

    if ((rc = unpack(vm, state, len, &p, &n)) < 0)
        return rc;
    if ((rc = lv_lookup(d, vm, &dom)) < 0) {
        free(p);
        return rc;
    }
    if ((rc = lv_qmp(dom, "{\"execute\":\"query-status\"}", &st)) < 0)
        goto out;
    if (!st || !json_object_object_get_ex(st, "status", &v) ||
        strcmp(json_object_get_string(v), "inmigrate") != 0) {
        rc = fy_error(FY_E_INVAL, "VM %s is not waiting for its state (QEMU status %s): "
                      "only a placeholder from incoming_prepare takes it", vm,
                      st && json_object_object_get_ex(st, "status", &v)
                          ? json_object_get_string(v) : "unknown");
        goto out;
    }
    if ((rc = sock_path(d, "in", &sa)) < 0 ||
        (rc = lv_qmp_migrate_cap(dom, "x-ignore-shared", true)) < 0)
        goto out;
    snprintf(cmd, sizeof(cmd), "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":"
             "\"unix:%s\"}}", sa.sun_path);
    if ((rc = lv_qmp(dom, cmd, NULL)) < 0)
        goto out;
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        rc = fy_error_sys("VM %s: cannot reach QEMU's incoming socket %s", vm, sa.sun_path);
        goto out;
    }
    while (done < n) {
        ssize_t w;

        if ((rc = wait_fd(fd, POLLOUT, deadline, "device state load")) < 0)
            goto out;
        w = send(fd, p + done, n - done, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            rc = fy_error_sys("VM %s: writing its device state to QEMU", vm);
            goto out;
        }
        done += (size_t)w;
    }
    shutdown(fd, SHUT_WR);
    rc = lv_qmp_migrate_wait(dom, d->timeout_s, "device state load");
out:
    if (fd >= 0)
        close(fd);
    if (sa.sun_path[0])
        unlink(sa.sun_path);
    json_object_put(st);
    free(p);
    virDomainFree(dom);
    return rc;
}
