/* Hot disks (FY_DRV_STORAGE): a running guest's active disk image read,
 * tracked and written through QEMU's own NBD server, with libnbd.
 *
 * Source.  disk_open adds a dirty bitmap (4 KiB granularity, not
 * persistent) to the disk's format node, so QEMU records every guest
 * write from then on, starts QEMU's NBD server on a UNIX socket in the
 * driver's private directory and exports the node read-only with the
 * "qemu:allocation-depth" context.  Reads are the guest-visible bytes
 * (the backing chain included).  The first disk_dirty reports the blocks
 * at depth 1, the ones the active image holds itself: what a target with
 * the same base images lacks.  Each later disk_dirty swaps bitmaps in one
 * QMP transaction (add the next bitmap, disable the current one: a write
 * lands in exactly one of them), exports the now frozen bitmap
 * ("qemu:dirty-bitmap:NAME"; QEMU refuses to export a bitmap that still
 * changes on a read-only export), reads its extents and drops it.
 *
 * Target.  disk_open exports the placeholder's disk writable: QEMU waiting
 * with -incoming defer serves its disk over NBD (the export activates the
 * image, as for libvirt's own storage migration); writes land in the
 * active image, over the base images the target already has.  Zeros are
 * written as NBD WRITE_ZEROES, which qcow2 keeps as zero clusters, so the
 * base does not show through where the guest wrote zeros.
 *
 * disk_create makes the target's empty image with qemu-img (qcow2.c).
 *
 * Threads: the engine reads and writes one io from several threads; a
 * libnbd handle serializes its own calls.  QMP goes through libvirt's
 * monitor connection, which is thread-safe.  Verified with QEMU 7.2 and
 * libnbd 1.14. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>
#include <libnbd.h>

#include "drivers/libvirt/lv.h"

/* Requests to QEMU's server: its largest is 32 MiB; stay well below. */
#define IO_CHUNK (4u << 20)
/* Block status and zero requests carry a 32-bit length. */
#define STATUS_CHUNK (1u << 30)
#define MAX_STALE 8

struct fy_disk_io {
    struct fy_driver *d;     /* host name and directory only (immutable) */
    virDomainPtr dom;
    enum fy_disk_mode mode;
    char vm[FY_NAME_MAX], dev[FY_NAME_MAX];
    char node[128];          /* QEMU's format node of the active image */
    char sock[108];          /* QEMU's NBD server */
    char prefix[112];        /* of this io's bitmaps and exports */
    char data[128];          /* the export read or written */
    uint64_t size;           /* virtual size */
    struct nbd_handle *nbd;
    bool can_zero;
    unsigned bitmap;         /* the bitmap recording writes now: PREFIX-N */
    bool looked;             /* the first disk_dirty happened */
    pthread_mutex_t lock;    /* disk_dirty */
    char stale[MAX_STALE][128]; /* bitmaps QEMU would not drop yet */
    unsigned nstale;
};

static unsigned next_id;

/* Cleanup after a failure must not replace the failure's own message. */
struct keep {
    char detail[1024];
};

static void keep_error(struct keep *k)
{
    snprintf(k->detail, sizeof(k->detail), "%s", fy_error_detail());
}

static int restore_error(const struct keep *k, int rc)
{
    return rc < 0 ? fy_error(-rc, "%s", k->detail) : rc;
}

/* ---- QMP ------------------------------------------------------------------ */

/* Runs {"execute": cmd, "arguments": args} (args consumed; may be NULL). */
static int qmp(virDomainPtr dom, const char *cmd, json_object *args, json_object **ret)
{
    json_object *o = json_object_new_object();
    int rc;

    if (!o) {
        json_object_put(args);
        return fy_error(FY_E_NOMEM, "no memory for QMP %s", cmd);
    }
    json_object_object_add(o, "execute", json_object_new_string(cmd));
    if (args)
        json_object_object_add(o, "arguments", args);
    rc = lv_qmp(dom, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN), ret);
    json_object_put(o);
    return rc;
}

static json_object *args_node(const char *node, const char *name)
{
    json_object *a = json_object_new_object();

    json_object_object_add(a, "node", json_object_new_string(node));
    json_object_object_add(a, "name", json_object_new_string(name));
    return a;
}

/* A bitmap on io's node: "add" (4 KiB granularity, in memory only),
 * "remove". */
static int bitmap_add(struct fy_disk_io *io, const char *name)
{
    json_object *a = args_node(io->node, name);

    json_object_object_add(a, "granularity", json_object_new_int(FY_DISK_BLOCK));
    json_object_object_add(a, "persistent", json_object_new_boolean(0));
    return qmp(io->dom, "block-dirty-bitmap-add", a, NULL);
}

static void bitmap_name(const struct fy_disk_io *io, unsigned n, char *out, size_t len)
{
    snprintf(out, len, "%s-%u", io->prefix, n);
}

/* Drops a bitmap; QEMU frees an export's bitmap a moment after the export
 * is deleted, so a busy one is tried again, then left for disk_close. */
static void bitmap_drop(struct fy_disk_io *io, const char *name)
{
    for (int i = 0; i < 50; i++) {
        if (qmp(io->dom, "block-dirty-bitmap-remove", args_node(io->node, name), NULL) == 0)
            return;
        if (!strstr(fy_error_detail(), "in use") && !strstr(fy_error_detail(), "busy"))
            return; /* gone, or the VM is */
        usleep(2000);
    }
    if (io->nstale < MAX_STALE)
        snprintf(io->stale[io->nstale++], sizeof(io->stale[0]), "%s", name);
}

static int export_add(struct fy_disk_io *io, const char *id, const char *bitmap)
{
    json_object *a = json_object_new_object();

    json_object_object_add(a, "type", json_object_new_string("nbd"));
    json_object_object_add(a, "id", json_object_new_string(id));
    json_object_object_add(a, "node-name", json_object_new_string(io->node));
    json_object_object_add(a, "name", json_object_new_string(id));
    json_object_object_add(a, "writable", json_object_new_boolean(io->mode == FY_DISK_TARGET));
    if (bitmap) {
        json_object *b = json_object_new_array();
        json_object_array_add(b, json_object_new_string(bitmap));
        json_object_object_add(a, "bitmaps", b);
    } else if (io->mode == FY_DISK_SOURCE) {
        json_object_object_add(a, "allocation-depth", json_object_new_boolean(1));
    }
    return qmp(io->dom, "block-export-add", a, NULL);
}

static void export_del(struct fy_disk_io *io, const char *id)
{
    json_object *a = json_object_new_object();

    json_object_object_add(a, "id", json_object_new_string(id));
    qmp(io->dom, "block-export-del", a, NULL);
}

/* Starts QEMU's NBD server on io->sock; one that runs already is the one a
 * disk of the same VM started. */
static int server_start(struct fy_disk_io *io)
{
    json_object *a = json_object_new_object(), *addr = json_object_new_object(),
                *data = json_object_new_object();
    int rc;

    json_object_object_add(data, "path", json_object_new_string(io->sock));
    json_object_object_add(addr, "type", json_object_new_string("unix"));
    json_object_object_add(addr, "data", data);
    json_object_object_add(a, "addr", addr);
    rc = qmp(io->dom, "nbd-server-start", a, NULL);
    if (rc < 0 && strstr(fy_error_detail(), "already running"))
        rc = 0;
    return rc;
}

/* Stops the server when no export is left on it (another disk of the VM
 * may still use it). */
static void server_stop_if_idle(struct fy_disk_io *io)
{
    json_object *r = NULL;
    size_t live = 0;

    if (qmp(io->dom, "query-block-exports", NULL, &r) == 0 && r &&
        json_object_is_type(r, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(r); i++) {
            json_object *e = json_object_array_get_idx(r, i), *v;
            if (!(json_object_object_get_ex(e, "shutting-down", &v) &&
                  json_object_get_boolean(v)))
                live++;
        }
        if (!live && qmp(io->dom, "nbd-server-stop", NULL, NULL) == 0)
            unlink(io->sock);
    }
    json_object_put(r);
}

/* The format node QEMU reads the disk through: query-block's "inserted"
 * of the device libvirt calls 'alias' (its qdev path names it), else of
 * the device whose image file is 'path' (QEMU reports a "json:" name
 * instead when the backing it was given is not the one the header names,
 * as after a move). */
static bool is_device(json_object *b, const char *alias, const char *path)
{
    json_object *v, *ins;
    char want[FY_NAME_MAX + 32];

    snprintf(want, sizeof(want), "/machine/peripheral/%s/", alias);
    if (alias[0] && json_object_object_get_ex(b, "qdev", &v) &&
        !strncmp(json_object_get_string(v), want, strlen(want)))
        return true;
    return json_object_object_get_ex(b, "inserted", &ins) &&
           json_object_object_get_ex(ins, "file", &v) &&
           !strcmp(json_object_get_string(v), path);
}

static int find_node(struct fy_disk_io *io, const char *alias, const char *path)
{
    json_object *r = NULL;
    int rc;

    if ((rc = qmp(io->dom, "query-block", NULL, &r)) < 0)
        return rc;
    for (size_t i = 0; r && i < json_object_array_length(r); i++) {
        json_object *b = json_object_array_get_idx(r, i), *ins, *n;
        if (is_device(b, alias, path) && json_object_object_get_ex(b, "inserted", &ins) &&
            json_object_object_get_ex(ins, "node-name", &n)) {
            snprintf(io->node, sizeof(io->node), "%s", json_object_get_string(n));
            json_object_put(r);
            return 0;
        }
    }
    json_object_put(r);
    return fy_error(FY_E_NOTFOUND, "VM %s: QEMU has no block device reading %s (disk %s)",
                    io->vm, path, io->dev);
}

/* ---- libnbd ------------------------------------------------------------------ */

static int nbd_fail(const struct fy_disk_io *io, const char *what)
{
    return fy_error(FY_E_IO, "VM %s disk %s: NBD %s: %s", io->vm, io->dev, what,
                    nbd_get_error() ? nbd_get_error() : "unknown error");
}

/* A handle on export 'name' of io's server, asking for meta context
 * 'ctx' (NULL: none). */
static int nbd_open(struct fy_disk_io *io, const char *name, const char *ctx,
                    struct nbd_handle **out)
{
    struct nbd_handle *h = nbd_create();
    int rc = 0;

    *out = NULL;
    if (!h)
        return nbd_fail(io, "handle");
    if (nbd_set_export_name(h, name) < 0 || (ctx && nbd_add_meta_context(h, ctx) < 0) ||
        nbd_connect_unix(h, io->sock) < 0) {
        rc = nbd_fail(io, "connect");
    } else if (ctx && nbd_can_meta_context(h, ctx) != 1) {
        rc = fy_error(FY_E_UNSUPPORTED, "VM %s disk %s: QEMU's NBD server does not offer %s "
                      "(QEMU 5.2 or later needed)", io->vm, io->dev, ctx);
    }
    if (rc < 0) {
        nbd_close(h);
        return rc;
    }
    *out = h;
    return 0;
}

struct extents {
    uint64_t *bitmap;
    uint64_t nblocks;
    uint64_t end;     /* how far the server's answers reached */
    uint32_t want;    /* the state bits to mark... */
    bool exact;       /* ...equal to want (depth), else any of them set */
};

static int extent_cb(void *user, const char *ctx, uint64_t offset, uint32_t *e, size_t n,
                     int *error)
{
    struct extents *x = user;

    (void)ctx;
    (void)error;
    /* Pairs of (length, state), from 'offset' on. */
    for (size_t i = 0; i + 1 < n; i += 2) {
        uint64_t len = e[i], flags = e[i + 1];
        bool hit = x->exact ? flags == x->want : (flags & x->want) != 0;

        if (hit) {
            uint64_t b = offset / FY_DISK_BLOCK;
            uint64_t last = (offset + len + FY_DISK_BLOCK - 1) / FY_DISK_BLOCK;
            for (; b < last && b < x->nblocks; b++)
                x->bitmap[b >> 6] |= 1ull << (b & 63);
        }
        offset += len;
    }
    if (offset > x->end)
        x->end = offset;
    return 0;
}

/* Marks in 'x' the blocks whose state in 'ctx' matches, over the disk. */
static int read_extents(struct fy_disk_io *io, struct nbd_handle *h, struct extents *x)
{
    for (uint64_t off = 0; off < io->size;) {
        uint64_t left = io->size - off;
        uint64_t want = left < STATUS_CHUNK ? left : STATUS_CHUNK;

        x->end = off;
        if (nbd_block_status(h, want, off,
                             (nbd_extent_callback){.callback = extent_cb, .user_data = x},
                             0) < 0)
            return nbd_fail(io, "block status");
        if (x->end <= off)
            return fy_error(FY_E_PROTO, "VM %s disk %s: QEMU's NBD server answered no "
                            "extent at %llu", io->vm, io->dev, (unsigned long long)off);
        off = x->end;
    }
    return 0;
}

/* ---- the operations ------------------------------------------------------------ */

static void io_free(struct fy_disk_io *io)
{
    if (io->nbd)
        nbd_close(io->nbd);
    if (io->dom)
        virDomainFree(io->dom);
    pthread_mutex_destroy(&io->lock);
    free(io);
}

int lv_disk_open(struct fy_driver *d, const char *vm, unsigned disk, enum fy_disk_mode mode,
                 struct fy_disk_io **out, uint64_t *size)
{
    struct fy_disk_io *io;
    struct fy_vm_info info;
    char *xml = NULL, uuid[VIR_UUID_STRING_BUFLEN], name[128], alias[FY_NAME_MAX];
    bool bitmap = false, exported = false;
    struct keep k;
    int rc;

    *out = NULL;
    *size = 0;
    if (mode != FY_DISK_SOURCE && mode != FY_DISK_TARGET)
        return fy_error(FY_E_INVAL, "disk_open: unknown mode %d", (int)mode);
    if (!(io = calloc(1, sizeof(*io))))
        return fy_error(FY_E_NOMEM, "no memory to open a disk of VM %s", vm);
    pthread_mutex_init(&io->lock, NULL);
    io->d = d;
    io->mode = mode;
    snprintf(io->vm, sizeof(io->vm), "%s", vm);
    if ((rc = lv_lookup(d, vm, &io->dom)) < 0)
        goto fail;
    if (!(xml = virDomainGetXMLDesc(io->dom, 0))) {
        rc = lv_fail(FY_E_IO, "VM %s: cannot read its XML", vm);
        goto fail;
    }
    if ((rc = lv_xml_info(xml, &info)) < 0)
        goto fail;
    if (disk >= info.ndisks) {
        rc = fy_error(FY_E_NOTFOUND, "VM %s on host %s has %u disks, no disk %u", vm, d->host,
                      info.ndisks, disk);
        goto fail;
    }
    snprintf(io->dev, sizeof(io->dev), "%s", info.disks[disk].name);
    if (virDomainGetUUIDString(io->dom, uuid) < 0) {
        rc = lv_fail(FY_E_IO, "VM %s: cannot read its UUID", vm);
        goto fail;
    }
    if (snprintf(io->sock, sizeof(io->sock), "%s/nbd-%s.sock", d->work, uuid) >=
        (int)sizeof(io->sock)) {
        rc = fy_error(FY_E_TOOBIG, "NBD socket path in %s too long", d->work);
        goto fail;
    }
    /* Names unique to this process and io: an earlier agent's leftovers
     * on a guest that outlived it do not collide. */
    snprintf(io->prefix, sizeof(io->prefix), "ferry%d-%s-%u", (int)getpid(), io->dev,
             __atomic_add_fetch(&next_id, 1, __ATOMIC_RELAXED));
    snprintf(io->data, sizeof(io->data), "%s-data", io->prefix);
    lv_xml_disk_attr(xml, disk, "alias", "name", alias, sizeof(alias));
    if ((rc = find_node(io, alias, info.disks[disk].path)) < 0)
        goto fail;
    if (mode == FY_DISK_SOURCE) {
        /* Tracking starts before anything is read. */
        io->bitmap = 1;
        bitmap_name(io, io->bitmap, name, sizeof(name));
        if ((rc = bitmap_add(io, name)) < 0)
            goto fail;
        bitmap = true;
    }
    if ((rc = server_start(io)) < 0 || (rc = export_add(io, io->data, NULL)) < 0)
        goto fail;
    exported = true;
    if ((rc = nbd_open(io, io->data, mode == FY_DISK_SOURCE ? "qemu:allocation-depth" : NULL,
                       &io->nbd)) < 0)
        goto fail;
    if (nbd_get_size(io->nbd) < 0) {
        rc = nbd_fail(io, "size");
        goto fail;
    }
    io->size = (uint64_t)nbd_get_size(io->nbd);
    io->can_zero = nbd_can_zero(io->nbd) == 1;
    if (mode == FY_DISK_TARGET && nbd_is_read_only(io->nbd) != 0) {
        rc = fy_error(FY_E_IO, "VM %s disk %s: QEMU exports it read-only", vm, io->dev);
        goto fail;
    }
    *size = io->size;
    *out = io;
    free(xml);
    return 0;
fail:
    keep_error(&k);
    if (io->nbd) {
        nbd_close(io->nbd);
        io->nbd = NULL;
    }
    if (exported)
        export_del(io, io->data);
    if (io->dom && io->node[0])
        server_stop_if_idle(io);
    if (bitmap)
        bitmap_drop(io, name);
    free(xml);
    io_free(io);
    return restore_error(&k, rc);
}

int lv_disk_read(struct fy_disk_io *io, uint64_t offset, void *buf, uint64_t len)
{
    for (uint64_t done = 0; done < len;) {
        uint64_t n = len - done < IO_CHUNK ? len - done : IO_CHUNK;
        if (nbd_pread(io->nbd, (char *)buf + done, n, offset + done, 0) < 0)
            return nbd_fail(io, "read");
        done += n;
    }
    return 0;
}

int lv_disk_write(struct fy_disk_io *io, uint64_t offset, const void *buf, uint64_t len)
{
    if (io->mode != FY_DISK_TARGET)
        return fy_error(FY_E_INVAL, "VM %s disk %s: opened to be read, not written", io->vm,
                        io->dev);
    for (uint64_t done = 0; done < len;) {
        uint64_t n = len - done < IO_CHUNK ? len - done : IO_CHUNK;
        if (nbd_pwrite(io->nbd, (const char *)buf + done, n, offset + done, 0) < 0)
            return nbd_fail(io, "write");
        done += n;
    }
    return 0;
}

int lv_disk_zero(struct fy_disk_io *io, uint64_t offset, uint64_t len)
{
    static const char zeros[65536];

    if (io->mode != FY_DISK_TARGET)
        return fy_error(FY_E_INVAL, "VM %s disk %s: opened to be read, not written", io->vm,
                        io->dev);
    for (uint64_t done = 0; done < len;) {
        uint64_t n = len - done;
        int r;
        if (io->can_zero) {
            n = n < STATUS_CHUNK ? n : STATUS_CHUNK;
            r = nbd_zero(io->nbd, n, offset + done, 0);
        } else {
            n = n < sizeof(zeros) ? n : sizeof(zeros);
            r = nbd_pwrite(io->nbd, zeros, n, offset + done, 0);
        }
        if (r < 0)
            return nbd_fail(io, "write zeroes");
        done += n;
    }
    return 0;
}

/* Swaps in the next bitmap and marks the blocks the current one saw. */
static int next_period(struct fy_disk_io *io, uint64_t *bitmap, uint64_t nblocks)
{
    char cur[128], nxt[128], exp[144], ctx[192];
    struct keep k;
    json_object *acts = json_object_new_array(), *add = json_object_new_object(),
                *dis = json_object_new_object(), *a, *targs;
    struct nbd_handle *h = NULL;
    struct extents x = {.bitmap = bitmap, .nblocks = nblocks, .want = 1};
    int rc;

    bitmap_name(io, io->bitmap, cur, sizeof(cur));
    bitmap_name(io, io->bitmap + 1, nxt, sizeof(nxt));
    a = args_node(io->node, nxt);
    json_object_object_add(a, "granularity", json_object_new_int(FY_DISK_BLOCK));
    json_object_object_add(a, "persistent", json_object_new_boolean(0));
    json_object_object_add(add, "type", json_object_new_string("block-dirty-bitmap-add"));
    json_object_object_add(add, "data", a);
    json_object_object_add(dis, "type", json_object_new_string("block-dirty-bitmap-disable"));
    json_object_object_add(dis, "data", args_node(io->node, cur));
    json_object_array_add(acts, add);
    json_object_array_add(acts, dis);
    targs = json_object_new_object();
    json_object_object_add(targs, "actions", acts);
    /* Atomic: every write from here is in the next bitmap, every one
     * before in the current, now frozen. */
    if ((rc = qmp(io->dom, "transaction", targs, NULL)) < 0)
        return rc;
    io->bitmap++;
    /* The frozen bitmap's blocks are read once: a failure from here on
     * fails the migration (the engine stops), never loses them quietly. */
    snprintf(exp, sizeof(exp), "%s-dirty", cur);
    snprintf(ctx, sizeof(ctx), "qemu:dirty-bitmap:%s", cur);
    if ((rc = export_add(io, exp, cur)) == 0) {
        if ((rc = nbd_open(io, exp, ctx, &h)) == 0)
            rc = read_extents(io, h, &x);
        if (h) {
            nbd_shutdown(h, 0);
            nbd_close(h);
        }
        keep_error(&k);
        export_del(io, exp);
    } else {
        keep_error(&k);
    }
    bitmap_drop(io, cur);
    return restore_error(&k, rc);
}

int lv_disk_dirty(struct fy_disk_io *io, uint64_t *bitmap, uint64_t nblocks)
{
    int rc;

    if (io->mode != FY_DISK_SOURCE)
        return fy_error(FY_E_INVAL, "VM %s disk %s: writes are tracked at the source only",
                        io->vm, io->dev);
    pthread_mutex_lock(&io->lock);
    if (!io->looked) {
        /* Depth 1: the active image itself (0: nowhere, reads as zero;
         * 2 and more: a backing image). */
        struct extents x = {.bitmap = bitmap, .nblocks = nblocks, .want = 1, .exact = true};
        rc = read_extents(io, io->nbd, &x);
        io->looked = rc == 0;
    } else {
        rc = next_period(io, bitmap, nblocks);
    }
    pthread_mutex_unlock(&io->lock);
    return rc;
}

int lv_disk_close(struct fy_disk_io *io)
{
    char name[128];
    struct keep k;
    int rc = 0;

    if (!io)
        return 0;
    if (io->mode == FY_DISK_TARGET && nbd_can_flush(io->nbd) == 1 &&
        nbd_flush(io->nbd, 0) < 0)
        rc = nbd_fail(io, "flush");
    keep_error(&k);
    nbd_shutdown(io->nbd, 0);
    nbd_close(io->nbd);
    io->nbd = NULL;
    export_del(io, io->data);
    if (io->mode == FY_DISK_SOURCE) {
        bitmap_name(io, io->bitmap, name, sizeof(name));
        bitmap_drop(io, name);
        for (unsigned i = 0; i < io->nstale; i++)
            qmp(io->dom, "block-dirty-bitmap-remove", args_node(io->node, io->stale[i]),
                NULL);
    }
    server_stop_if_idle(io);
    io_free(io);
    return restore_error(&k, rc);
}

int lv_disk_create(struct fy_driver *d, const char *config, unsigned disk, const char *path,
                   uint64_t virtual_size, const char *backing)
{
    struct fy_vm_info info;
    char format[16];
    int rc;

    if ((rc = lv_xml_info(config, &info)) < 0)
        return rc;
    if (disk >= info.ndisks)
        return fy_error(FY_E_NOTFOUND, "VM %s has %u disks, no disk %u", info.name,
                        info.ndisks, disk);
    lv_xml_disk_attr(config, disk, "driver", "type", format, sizeof(format));
    if (!format[0])
        snprintf(format, sizeof(format), "raw");
    if (backing && backing[0] && strcmp(format, "qcow2") != 0)
        return fy_error(FY_E_UNSUPPORTED, "VM %s disk %s: a %s image cannot have a backing "
                        "file (%s); only qcow2 deltas move while the VM runs", info.name,
                        info.disks[disk].name, format, backing);
    if ((rc = lv_disk_create_image(path, format, virtual_size, backing)) < 0)
        return fy_error(-rc, "host %s, VM %s disk %s: %s", d->host, info.name,
                        info.disks[disk].name, fy_error_detail());
    return 0;
}
