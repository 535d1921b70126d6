/* The host operations' values as JSON (controlplane/host_json.h).
 *
 * Reading order: member helpers; hex; then one encoder/decoder pair per
 * structure. */
#include "controlplane/host_json.h"
#include "controlplane/json_util.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/error.h"

/* ---- members ---------------------------------------------------------------- */

static int bad(const char *what, const char *key, const char *why)
{
    return fy_error(FY_E_PROTO, "malformed %s: member \"%s\" %s", what, key, why);
}

static json_object *member(const json_object *obj, const char *key)
{
    json_object *v = NULL;
    if (!obj || !json_object_is_type(obj, json_type_object) ||
        !json_object_object_get_ex(obj, key, &v))
        return NULL;
    return v;
}

int fy_json_get_strp(const json_object *obj, const char *key, const char *what,
                     bool optional, const char **out)
{
    json_object *v = member(obj, key);

    *out = NULL;
    if (!v || json_object_is_type(v, json_type_null)) {
        if (optional)
            return 0;
        return bad(what, key, "is missing");
    }
    if (!json_object_is_type(v, json_type_string))
        return bad(what, key, "is not a string");
    *out = json_object_get_string(v);
    return 0;
}

int fy_json_get_str(const json_object *obj, const char *key, const char *what, char *dst,
                    size_t cap)
{
    const char *s;
    size_t n;
    int rc;

    if ((rc = fy_json_get_strp(obj, key, what, false, &s)) < 0)
        return rc;
    n = strlen(s);
    if (n >= cap)
        return fy_error(FY_E_PROTO, "malformed %s: member \"%s\" has %zu characters, "
                        "at most %zu fit", what, key, n, cap - 1);
    memcpy(dst, s, n + 1);
    return 0;
}

int fy_json_get_u64(const json_object *obj, const char *key, const char *what,
                    uint64_t *out)
{
    json_object *v = member(obj, key);

    if (!v)
        return bad(what, key, "is missing");
    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
        return bad(what, key, "is not an unsigned integer");
    *out = json_object_get_uint64(v);
    return 0;
}

int fy_json_get_uint(const json_object *obj, const char *key, const char *what,
                     unsigned *out)
{
    uint64_t v;
    int rc;

    if ((rc = fy_json_get_u64(obj, key, what, &v)) < 0)
        return rc;
    if (v > UINT_MAX)
        return bad(what, key, "is out of range");
    *out = (unsigned)v;
    return 0;
}

int fy_json_get_int(const json_object *obj, const char *key, const char *what, int *out)
{
    json_object *v = member(obj, key);
    int64_t i;

    if (!v)
        return bad(what, key, "is missing");
    if (!json_object_is_type(v, json_type_int))
        return bad(what, key, "is not an integer");
    i = json_object_get_int64(v);
    if (i < INT_MIN || i > INT_MAX)
        return bad(what, key, "is out of range");
    *out = (int)i;
    return 0;
}

int fy_json_get_bool(const json_object *obj, const char *key, const char *what,
                     bool *out)
{
    json_object *v = member(obj, key);

    if (!v)
        return bad(what, key, "is missing");
    if (!json_object_is_type(v, json_type_boolean))
        return bad(what, key, "is not a boolean");
    *out = json_object_get_boolean(v);
    return 0;
}

static int get_double(const json_object *obj, const char *key, const char *what,
                      double *out)
{
    json_object *v = member(obj, key);

    if (!v)
        return bad(what, key, "is missing");
    if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
        return bad(what, key, "is not a number");
    *out = json_object_get_double(v);
    return 0;
}

/* The array member 'key' with at most 'max' elements into '*arr'. */
static int get_array(const json_object *obj, const char *key, const char *what,
                     size_t max, json_object **arr, size_t *n)
{
    json_object *v = member(obj, key);

    if (!v)
        return bad(what, key, "is missing");
    if (!json_object_is_type(v, json_type_array))
        return bad(what, key, "is not an array");
    *n = json_object_array_length(v);
    if (*n > max)
        return fy_error(FY_E_PROTO, "malformed %s: member \"%s\" has %zu elements, at "
                        "most %zu fit", what, key, *n, max);
    *arr = v;
    return 0;
}

/* The object member 'key'. */
static int get_object(const json_object *obj, const char *key, const char *what,
                      json_object **out)
{
    json_object *v = member(obj, key);

    if (!v)
        return bad(what, key, "is missing");
    if (!json_object_is_type(v, json_type_object))
        return bad(what, key, "is not an object");
    *out = v;
    return 0;
}

static int not_object(const json_object *in, const char *what)
{
    if (in && json_object_is_type(in, json_type_object))
        return 0;
    return fy_error(FY_E_PROTO, "malformed %s: not a JSON object", what);
}

/* ---- hex ---------------------------------------------------------------- */

json_object *fy_json_hex_encode(const void *data, size_t len)
{
    json_object *o;
    char *s;

    if (len > (size_t)INT_MAX / 2 || !(s = malloc(2 * len + 1)))
        return NULL;
    fy_hex_encode(data, len, s);
    o = json_object_new_string_len(s, (int)(2 * len));
    free(s);
    return o;
}

int fy_json_hex_get(const json_object *obj, const char *key, const char *what,
                    void **out, size_t *len)
{
    const char *s;
    size_t n;
    uint8_t *buf;
    int rc;

    *out = NULL;
    *len = 0;
    if ((rc = fy_json_get_strp(obj, key, what, false, &s)) < 0)
        return rc;
    n = strlen(s);
    if (n % 2)
        return bad(what, key, "has an odd number of hex digits");
    if (!(buf = malloc(n / 2 ? n / 2 : 1)))
        return fy_error(FY_E_NOMEM, "no memory for %zu bytes of %s", n / 2, what);
    if (!fy_hex_decode(s, n / 2, buf)) {
        free(buf);
        return bad(what, key, "is not hex");
    }
    *out = buf;
    *len = n / 2;
    return 0;
}

json_object *fy_json_hash_encode(fy_hash128 h)
{
    char s[33];

    snprintf(s, sizeof(s), "%016llx%016llx", (unsigned long long)h.hi,
             (unsigned long long)h.lo);
    return json_object_new_string(s);
}

int fy_json_hash_get(const json_object *obj, const char *key, const char *what,
                     fy_hash128 *out)
{
    uint8_t b[16];
    const char *s;
    int rc;

    if ((rc = fy_json_get_strp(obj, key, what, false, &s)) < 0)
        return rc;
    if (strlen(s) != 32 || !fy_hex_decode(s, sizeof(b), b))
        return bad(what, key, "is not 32 hex digits");
    out->hi = out->lo = 0;
    for (unsigned i = 0; i < 8; i++) {
        out->hi = out->hi << 8 | b[i];
        out->lo = out->lo << 8 | b[8 + i];
    }
    return 0;
}

/* ---- fy_host_info ------------------------------------------------------- */

json_object *fy_json_host_info_encode(const struct fy_host_info *in)
{
    json_object *o = json_object_new_object(), *net, *ds;

    if (!o)
        return NULL;
    fy_json_put_str(o, "name", in->name);
    fy_json_put_str(o, "hypervisor", in->hypervisor);
    fy_json_put_str(o, "cpu_vendor", in->cpu_vendor);
    fy_json_put_str(o, "cpu_model", in->cpu_model);
    fy_json_put_u64(o, "mem_total", in->mem_total);
    fy_json_put_u64(o, "mem_free", in->mem_free);
    fy_json_put_u64(o, "cpus_total", in->cpus_total);
    fy_json_put_u64(o, "cpus_free", in->cpus_free);
    fy_json_put_bool(o, "dynamic_memory", in->dynamic_memory);
    fy_json_put_bool(o, "maintenance", in->maintenance);
    net = json_object_new_array();
    for (unsigned r = 0; net && r < FY_NET__COUNT; r++)
        json_object_array_add(net, json_object_new_string(in->net[r]));
    json_object_object_add(o, "net", net);
    ds = json_object_new_array();
    for (unsigned i = 0; ds && i < in->ndatastores && i < FY_MAX_DATASTORES; i++) {
        const struct fy_datastore *d = &in->datastores[i];
        json_object *e = json_object_new_object();
        if (!e)
            break;
        fy_json_put_str(e, "name", d->name);
        fy_json_put_str(e, "path", d->path);
        fy_json_put_u64(e, "capacity", d->capacity);
        fy_json_put_u64(e, "free", d->free);
        fy_json_put_bool(e, "shared", d->shared);
        json_object_array_add(ds, e);
    }
    json_object_object_add(o, "datastores", ds);
    return o;
}

static int datastore_decode(const json_object *e, struct fy_datastore *d)
{
    const char *w = "datastore";
    int rc;

    if ((rc = not_object(e, w)) < 0 ||
        (rc = fy_json_get_str(e, "name", w, d->name, sizeof(d->name))) < 0 ||
        (rc = fy_json_get_str(e, "path", w, d->path, sizeof(d->path))) < 0 ||
        (rc = fy_json_get_u64(e, "capacity", w, &d->capacity)) < 0 ||
        (rc = fy_json_get_u64(e, "free", w, &d->free)) < 0 ||
        (rc = fy_json_get_bool(e, "shared", w, &d->shared)) < 0)
        return rc;
    return 0;
}

int fy_json_host_info_decode(const json_object *in, struct fy_host_info *out)
{
    const char *w = "host_info";
    json_object *net = NULL, *ds = NULL;
    size_t n;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = not_object(in, w)) < 0 ||
        (rc = fy_json_get_str(in, "name", w, out->name, sizeof(out->name))) < 0 ||
        (rc = fy_json_get_str(in, "hypervisor", w, out->hypervisor,
                              sizeof(out->hypervisor))) < 0 ||
        (rc = fy_json_get_str(in, "cpu_vendor", w, out->cpu_vendor,
                              sizeof(out->cpu_vendor))) < 0 ||
        (rc = fy_json_get_str(in, "cpu_model", w, out->cpu_model,
                              sizeof(out->cpu_model))) < 0 ||
        (rc = fy_json_get_u64(in, "mem_total", w, &out->mem_total)) < 0 ||
        (rc = fy_json_get_u64(in, "mem_free", w, &out->mem_free)) < 0 ||
        (rc = fy_json_get_uint(in, "cpus_total", w, &out->cpus_total)) < 0 ||
        (rc = fy_json_get_uint(in, "cpus_free", w, &out->cpus_free)) < 0 ||
        (rc = fy_json_get_bool(in, "dynamic_memory", w, &out->dynamic_memory)) < 0 ||
        (rc = fy_json_get_bool(in, "maintenance", w, &out->maintenance)) < 0 ||
        (rc = get_array(in, "net", w, FY_NET__COUNT, &net, &n)) < 0)
        return rc;
    for (size_t r = 0; r < n; r++) {
        json_object *e = json_object_array_get_idx(net, r);
        const char *s = json_object_is_type(e, json_type_string)
                            ? json_object_get_string(e) : NULL;
        if (!s || strlen(s) >= sizeof(out->net[r]))
            return bad(w, "net", "holds a value that is not an address");
        memcpy(out->net[r], s, strlen(s) + 1);
    }
    if ((rc = get_array(in, "datastores", w, FY_MAX_DATASTORES, &ds, &n)) < 0)
        return rc;
    for (size_t i = 0; i < n; i++)
        if ((rc = datastore_decode(json_object_array_get_idx(ds, i),
                                   &out->datastores[i])) < 0)
            return rc;
    out->ndatastores = (unsigned)n;
    return 0;
}

/* ---- fy_vm_info --------------------------------------------------------- */

static json_object *device_encode(const struct fy_device *d)
{
    json_object *e = json_object_new_object();

    if (!e)
        return NULL;
    fy_json_put_int(e, "kind", d->kind);
    fy_json_put_str(e, "name", d->name);
    fy_json_put_str(e, "path", d->path);
    fy_json_put_bool(e, "media", d->media);
    return e;
}

static json_object *disk_encode(const struct fy_disk *d)
{
    json_object *e = json_object_new_object(), *b;

    if (!e)
        return NULL;
    fy_json_put_str(e, "name", d->name);
    fy_json_put_str(e, "path", d->path);
    fy_json_put_str(e, "datastore", d->datastore);
    fy_json_put_u64(e, "size", d->size);
    fy_json_put_u64(e, "virtual_size", d->virtual_size);
    b = json_object_new_array();
    for (unsigned i = 0; b && i < d->nbacking && i < 4; i++)
        json_object_array_add(b, json_object_new_string(d->backing[i]));
    json_object_object_add(e, "backing", b);
    return e;
}

json_object *fy_json_vm_info_encode(const struct fy_vm_info *in)
{
    json_object *o = json_object_new_object(), *devs, *disks;

    if (!o)
        return NULL;
    fy_json_put_str(o, "name", in->name);
    fy_json_put_str(o, "uuid", in->uuid);
    fy_json_put_int(o, "power", in->power);
    fy_json_put_u64(o, "mem_bytes", in->mem_bytes);
    fy_json_put_u64(o, "vcpus", in->vcpus);
    fy_json_put_str(o, "cpu_vendor", in->cpu_vendor);
    fy_json_put_bool(o, "dynamic_memory", in->dynamic_memory);
    fy_json_put_bool(o, "managed", in->managed);
    devs = json_object_new_array();
    for (unsigned i = 0; devs && i < in->ndevices && i < FY_MAX_DEVICES; i++)
        json_object_array_add(devs, device_encode(&in->devices[i]));
    json_object_object_add(o, "devices", devs);
    disks = json_object_new_array();
    for (unsigned i = 0; disks && i < in->ndisks && i < FY_MAX_DISKS; i++)
        json_object_array_add(disks, disk_encode(&in->disks[i]));
    json_object_object_add(o, "disks", disks);
    return o;
}

static int device_decode(const json_object *e, struct fy_device *d)
{
    const char *w = "device";
    int kind, rc;

    if ((rc = not_object(e, w)) < 0 || (rc = fy_json_get_int(e, "kind", w, &kind)) < 0 ||
        (rc = fy_json_get_str(e, "name", w, d->name, sizeof(d->name))) < 0 ||
        (rc = fy_json_get_str(e, "path", w, d->path, sizeof(d->path))) < 0 ||
        (rc = fy_json_get_bool(e, "media", w, &d->media)) < 0)
        return rc;
    d->kind = (enum fy_device_kind)kind;
    return 0;
}

static int disk_decode(const json_object *e, struct fy_disk *d)
{
    const char *w = "disk";
    json_object *b = NULL;
    size_t n;
    int rc;

    if ((rc = not_object(e, w)) < 0 ||
        (rc = fy_json_get_str(e, "name", w, d->name, sizeof(d->name))) < 0 ||
        (rc = fy_json_get_str(e, "path", w, d->path, sizeof(d->path))) < 0 ||
        (rc = fy_json_get_str(e, "datastore", w, d->datastore, sizeof(d->datastore))) < 0 ||
        (rc = fy_json_get_u64(e, "size", w, &d->size)) < 0 ||
        (rc = fy_json_get_u64(e, "virtual_size", w, &d->virtual_size)) < 0 ||
        (rc = get_array(e, "backing", w, sizeof(d->backing) / sizeof(d->backing[0]), &b,
                        &n)) < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        json_object *p = json_object_array_get_idx(b, i);
        const char *s = json_object_is_type(p, json_type_string)
                            ? json_object_get_string(p) : NULL;
        if (!s || strlen(s) >= sizeof(d->backing[i]))
            return bad(w, "backing", "holds a value that is not a path");
        memcpy(d->backing[i], s, strlen(s) + 1);
    }
    d->nbacking = (unsigned)n;
    return 0;
}

int fy_json_vm_info_decode(const json_object *in, struct fy_vm_info *out)
{
    const char *w = "vm_info";
    json_object *devs = NULL, *disks = NULL;
    size_t ndev, ndisk;
    int power, rc;

    memset(out, 0, sizeof(*out));
    if ((rc = not_object(in, w)) < 0 ||
        (rc = fy_json_get_str(in, "name", w, out->name, sizeof(out->name))) < 0 ||
        (rc = fy_json_get_str(in, "uuid", w, out->uuid, sizeof(out->uuid))) < 0 ||
        (rc = fy_json_get_int(in, "power", w, &power)) < 0 ||
        (rc = fy_json_get_u64(in, "mem_bytes", w, &out->mem_bytes)) < 0 ||
        (rc = fy_json_get_uint(in, "vcpus", w, &out->vcpus)) < 0 ||
        (rc = fy_json_get_str(in, "cpu_vendor", w, out->cpu_vendor,
                              sizeof(out->cpu_vendor))) < 0 ||
        (rc = fy_json_get_bool(in, "dynamic_memory", w, &out->dynamic_memory)) < 0 ||
        (rc = fy_json_get_bool(in, "managed", w, &out->managed)) < 0 ||
        (rc = get_array(in, "devices", w, FY_MAX_DEVICES, &devs, &ndev)) < 0 ||
        (rc = get_array(in, "disks", w, FY_MAX_DISKS, &disks, &ndisk)) < 0)
        return rc;
    out->power = (enum fy_power)power;
    for (size_t i = 0; i < ndev; i++)
        if ((rc = device_decode(json_object_array_get_idx(devs, i), &out->devices[i])) < 0)
            return rc;
    out->ndevices = (unsigned)ndev;
    for (size_t i = 0; i < ndisk; i++)
        if ((rc = disk_decode(json_object_array_get_idx(disks, i), &out->disks[i])) < 0)
            return rc;
    out->ndisks = (unsigned)ndisk;
    return 0;
}

/* ---- fy_migration_stats, fy_round_stats ---------------------------------- */

/* A counter a peer of an earlier build does not send: 0 when absent. */
static int get_u64_opt(const json_object *in, const char *key, const char *w,
                       uint64_t *out)
{
    *out = 0;
    if (!json_object_object_get_ex(in, key, NULL))
        return 0;
    return fy_json_get_u64(in, key, w, out);
}

json_object *fy_json_migration_stats_encode(const struct fy_migration_stats *in)
{
    json_object *o = json_object_new_object(), *dg;

    if (!o)
        return NULL;
    fy_json_put_u64(o, "rounds", in->rounds);
    fy_json_put_u64(o, "region_bytes", in->region_bytes);
    fy_json_put_u64(o, "pages_sent", in->pages_sent);
    fy_json_put_u64(o, "pages_zero", in->pages_zero);
    fy_json_put_u64(o, "pages_dup", in->pages_dup);
    fy_json_put_u64(o, "pages_dup_shared", in->pages_dup_shared);
    fy_json_put_u64(o, "pages_resent", in->pages_resent);
    fy_json_put_u64(o, "wire_bytes", in->wire_bytes);
    fy_json_put_double(o, "seconds", in->seconds);
    fy_json_put_double(o, "downtime", in->downtime);
    fy_json_put_double(o, "verify_seconds", in->verify_seconds);
    fy_json_put_bool(o, "converged", in->converged);
    fy_json_put_bool(o, "verified", in->verified);
    if ((dg = json_object_new_object())) {
        fy_json_put_u64(dg, "lo", in->digest.lo);
        fy_json_put_u64(dg, "hi", in->digest.hi);
    }
    json_object_object_add(o, "digest", dg);
    return o;
}

int fy_json_migration_stats_decode(const json_object *in, struct fy_migration_stats *out)
{
    const char *w = "migration_stats";
    json_object *dg = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = not_object(in, w)) < 0 ||
        (rc = fy_json_get_uint(in, "rounds", w, &out->rounds)) < 0 ||
        (rc = fy_json_get_u64(in, "region_bytes", w, &out->region_bytes)) < 0 ||
        (rc = fy_json_get_u64(in, "pages_sent", w, &out->pages_sent)) < 0 ||
        (rc = fy_json_get_u64(in, "pages_zero", w, &out->pages_zero)) < 0 ||
        (rc = fy_json_get_u64(in, "pages_dup", w, &out->pages_dup)) < 0 ||
        (rc = get_u64_opt(in, "pages_dup_shared", w, &out->pages_dup_shared)) < 0 ||
        (rc = fy_json_get_u64(in, "pages_resent", w, &out->pages_resent)) < 0 ||
        (rc = fy_json_get_u64(in, "wire_bytes", w, &out->wire_bytes)) < 0 ||
        (rc = get_double(in, "seconds", w, &out->seconds)) < 0 ||
        (rc = get_double(in, "downtime", w, &out->downtime)) < 0 ||
        (rc = get_double(in, "verify_seconds", w, &out->verify_seconds)) < 0 ||
        (rc = fy_json_get_bool(in, "converged", w, &out->converged)) < 0 ||
        (rc = fy_json_get_bool(in, "verified", w, &out->verified)) < 0 ||
        (rc = get_object(in, "digest", w, &dg)) < 0 ||
        (rc = fy_json_get_u64(dg, "lo", "migration_stats.digest", &out->digest.lo)) < 0 ||
        (rc = fy_json_get_u64(dg, "hi", "migration_stats.digest", &out->digest.hi)) < 0)
        return rc;
    return 0;
}

json_object *fy_json_round_stats_encode(const struct fy_round_stats *in)
{
    json_object *o = json_object_new_object();

    if (!o)
        return NULL;
    fy_json_put_u64(o, "round", in->round);
    fy_json_put_bool(o, "final", in->final);
    fy_json_put_u64(o, "dirty_pages", in->dirty_pages);
    fy_json_put_u64(o, "pages_sent", in->pages_sent);
    fy_json_put_u64(o, "pages_zero", in->pages_zero);
    fy_json_put_u64(o, "pages_dup", in->pages_dup);
    fy_json_put_u64(o, "pages_dup_shared", in->pages_dup_shared);
    fy_json_put_u64(o, "pages_resent", in->pages_resent);
    fy_json_put_u64(o, "wire_bytes", in->wire_bytes);
    fy_json_put_double(o, "seconds", in->seconds);
    fy_json_put_double(o, "scan_seconds", in->scan_seconds);
    fy_json_put_double(o, "dirty_rate", in->dirty_rate);
    fy_json_put_double(o, "throughput", in->throughput);
    fy_json_put_double(o, "page_rate", in->page_rate);
    fy_json_put_double(o, "expected_downtime", in->expected_downtime);
    return o;
}

int fy_json_round_stats_decode(const json_object *in, struct fy_round_stats *out)
{
    const char *w = "round_stats";
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = not_object(in, w)) < 0 ||
        (rc = fy_json_get_uint(in, "round", w, &out->round)) < 0 ||
        (rc = fy_json_get_bool(in, "final", w, &out->final)) < 0 ||
        (rc = fy_json_get_u64(in, "dirty_pages", w, &out->dirty_pages)) < 0 ||
        (rc = fy_json_get_u64(in, "pages_sent", w, &out->pages_sent)) < 0 ||
        (rc = fy_json_get_u64(in, "pages_zero", w, &out->pages_zero)) < 0 ||
        (rc = fy_json_get_u64(in, "pages_dup", w, &out->pages_dup)) < 0 ||
        (rc = get_u64_opt(in, "pages_dup_shared", w, &out->pages_dup_shared)) < 0 ||
        (rc = fy_json_get_u64(in, "pages_resent", w, &out->pages_resent)) < 0 ||
        (rc = fy_json_get_u64(in, "wire_bytes", w, &out->wire_bytes)) < 0 ||
        (rc = get_double(in, "seconds", w, &out->seconds)) < 0 ||
        (rc = get_double(in, "scan_seconds", w, &out->scan_seconds)) < 0 ||
        (rc = get_double(in, "dirty_rate", w, &out->dirty_rate)) < 0 ||
        (rc = get_double(in, "throughput", w, &out->throughput)) < 0 ||
        (rc = get_double(in, "page_rate", w, &out->page_rate)) < 0 ||
        (rc = get_double(in, "expected_downtime", w, &out->expected_downtime)) < 0)
        return rc;
    return 0;
}

/* ---- fy_host_memory, fy_host_caps ---------------------------------------- */

json_object *fy_json_host_memory_encode(const struct fy_host_memory *in)
{
    json_object *o = json_object_new_object(), *regs;

    if (!o)
        return NULL;
    regs = json_object_new_array();
    for (unsigned i = 0; regs && i < in->n && i < FY_MAX_REGIONS; i++) {
        json_object *e = json_object_new_object();
        if (!e)
            break;
        fy_json_put_str(e, "name", in->regions[i].name);
        fy_json_put_u64(e, "size", in->regions[i].size);
        json_object_array_add(regs, e);
    }
    json_object_object_add(o, "regions", regs);
    return o;
}

int fy_json_host_memory_decode(const json_object *in, struct fy_host_memory *out)
{
    const char *w = "host_memory";
    json_object *regs = NULL;
    size_t n;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = not_object(in, w)) < 0 ||
        (rc = get_array(in, "regions", w, FY_MAX_REGIONS, &regs, &n)) < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(regs, i);
        if ((rc = not_object(e, "memory region")) < 0 ||
            (rc = fy_json_get_str(e, "name", "memory region", out->regions[i].name,
                                  sizeof(out->regions[i].name))) < 0 ||
            (rc = fy_json_get_u64(e, "size", "memory region", &out->regions[i].size)) < 0)
            return rc;
    }
    out->n = (unsigned)n;
    return 0;
}

json_object *fy_json_host_caps_encode(const struct fy_host_caps *in)
{
    json_object *o = json_object_new_object();

    if (!o)
        return NULL;
    fy_json_put_str(o, "driver", in->driver);
    fy_json_put_u64(o, "caps", in->caps);
    return o;
}

int fy_json_host_caps_decode(const json_object *in, struct fy_host_caps *out)
{
    const char *w = "host_caps";
    unsigned caps;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = not_object(in, w)) < 0 ||
        (rc = fy_json_get_str(in, "driver", w, out->driver, sizeof(out->driver))) < 0 ||
        (rc = fy_json_get_uint(in, "caps", w, &caps)) < 0)
        return rc;
    out->caps = caps;
    return 0;
}

/* ---- transfers ---------------------------------------------------------- */

json_object *fy_json_host_data_encode(const struct fy_host_data *in)
{
    json_object *o = json_object_new_object();

    if (!o)
        return NULL;
    fy_json_put_int(o, "kind", in->kind);
    fy_json_put_str(o, "vm", in->vm);
    fy_json_put_u64(o, "region", in->region);
    fy_json_put_str(o, "path", in->path);
    fy_json_put_u64(o, "size", in->size);
    return o;
}

int fy_json_host_data_decode(const json_object *in, struct fy_host_data *out)
{
    const char *w = "host_data";
    int kind, rc;

    memset(out, 0, sizeof(*out));
    if ((rc = not_object(in, w)) < 0 || (rc = fy_json_get_int(in, "kind", w, &kind)) < 0 ||
        (rc = fy_json_get_str(in, "vm", w, out->vm, sizeof(out->vm))) < 0 ||
        (rc = fy_json_get_uint(in, "region", w, &out->region)) < 0 ||
        (rc = fy_json_get_str(in, "path", w, out->path, sizeof(out->path))) < 0 ||
        (rc = fy_json_get_u64(in, "size", w, &out->size)) < 0)
        return rc;
    out->kind = (enum fy_host_data_kind)kind;
    return 0;
}

json_object *fy_json_host_endpoint_encode(const struct fy_host_endpoint *in)
{
    json_object *o = json_object_new_object();

    if (!o)
        return NULL;
    fy_json_put_str(o, "addr", in->addr);
    json_object_object_add(o, "session_id",
                           fy_json_hex_encode(in->session_id, sizeof(in->session_id)));
    return o;
}

int fy_json_host_endpoint_decode(const json_object *in, struct fy_host_endpoint *out)
{
    const char *w = "host_endpoint";
    const char *sid;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = not_object(in, w)) < 0 ||
        (rc = fy_json_get_str(in, "addr", w, out->addr, sizeof(out->addr))) < 0 ||
        (rc = fy_json_get_strp(in, "session_id", w, false, &sid)) < 0)
        return rc;
    if (strlen(sid) != 2 * sizeof(out->session_id) ||
        !fy_hex_decode(sid, sizeof(out->session_id), out->session_id))
        return bad(w, "session_id", "is not 32 hex digits");
    return 0;
}

json_object *fy_json_send_params_encode(const struct fy_host_send_params *in)
{
    json_object *o = json_object_new_object();

    if (!o)
        return NULL;
    fy_json_put_str(o, "bind", in->bind);
    fy_json_put_u64(o, "streams", in->streams);
    fy_json_put_int(o, "timeout_ms", in->timeout_ms);
    fy_json_put_u64(o, "downtime_ms", in->downtime_ms);
    fy_json_put_u64(o, "max_rounds", in->max_rounds);
    fy_json_put_bool(o, "dirty_log", in->dirty_log);
    fy_json_put_bool(o, "pause", in->pause);
    if (in->ndisks) {
        /* Hot disks sent beside the memory (absent: none). */
        json_object *a = json_object_new_array();
        for (unsigned i = 0; a && i < in->ndisks && i < FY_MAX_DISKS; i++)
            json_object_array_add(a, fy_json_host_endpoint_encode(&in->disks[i]));
        json_object_object_add(o, "disks", a);
    }
    return o;
}

int fy_json_send_params_decode(const json_object *in, struct fy_host_send_params *out)
{
    const char *w = "send_params";
    unsigned downtime;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = not_object(in, w)) < 0 ||
        (rc = fy_json_get_str(in, "bind", w, out->bind, sizeof(out->bind))) < 0 ||
        (rc = fy_json_get_uint(in, "streams", w, &out->streams)) < 0 ||
        (rc = fy_json_get_int(in, "timeout_ms", w, &out->timeout_ms)) < 0 ||
        (rc = fy_json_get_uint(in, "downtime_ms", w, &downtime)) < 0 ||
        (rc = fy_json_get_uint(in, "max_rounds", w, &out->max_rounds)) < 0 ||
        (rc = fy_json_get_bool(in, "dirty_log", w, &out->dirty_log)) < 0 ||
        (rc = fy_json_get_bool(in, "pause", w, &out->pause)) < 0)
        return rc;
    out->downtime_ms = downtime;
    if (member(in, "disks")) {
        json_object *a;
        size_t n;

        if ((rc = get_array(in, "disks", w, FY_MAX_DISKS, &a, &n)) < 0)
            return rc;
        for (size_t i = 0; i < n; i++)
            if ((rc = fy_json_host_endpoint_decode(json_object_array_get_idx(a, i),
                                                   &out->disks[i])) < 0)
                return rc;
        out->ndisks = (unsigned)n;
    }
    return 0;
}

json_object *fy_json_host_stream_stats_encode(const struct fy_host_stream_stats *in)
{
    json_object *o = json_object_new_object();

    if (!o)
        return NULL;
    fy_json_put_u64(o, "channels", in->channels);
    fy_json_put_bool(o, "parsed_all", in->parsed_all);
    fy_json_put_str(o, "unparsed", in->unparsed);
    fy_json_put_u64(o, "pages_sent", in->pages_sent);
    fy_json_put_u64(o, "pages_dup", in->pages_dup);
    fy_json_put_u64(o, "pages_dup_shared", in->pages_dup_shared);
    fy_json_put_u64(o, "pages_zero", in->pages_zero);
    fy_json_put_u64(o, "pages_uncached", in->pages_uncached);
    fy_json_put_u64(o, "qemu_zero_pages", in->qemu_zero_pages);
    fy_json_put_u64(o, "wire_bytes", in->wire_bytes);
    fy_json_put_u64(o, "hv_transferred", in->hv_transferred);
    fy_json_put_u64(o, "hv_pages_normal", in->hv_pages_normal);
    fy_json_put_u64(o, "hv_pages_zero", in->hv_pages_zero);
    fy_json_put_u64(o, "hv_dirty_syncs", in->hv_dirty_syncs);
    fy_json_put_double(o, "hv_seconds", in->hv_seconds);
    fy_json_put_double(o, "hv_downtime", in->hv_downtime);
    return o;
}

int fy_json_host_stream_stats_decode(const json_object *in, struct fy_host_stream_stats *out)
{
    const char *w = "stream_stats";
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = not_object(in, w)) < 0 ||
        (rc = fy_json_get_uint(in, "channels", w, &out->channels)) < 0 ||
        (rc = fy_json_get_bool(in, "parsed_all", w, &out->parsed_all)) < 0 ||
        (rc = fy_json_get_str(in, "unparsed", w, out->unparsed, sizeof(out->unparsed))) < 0 ||
        (rc = fy_json_get_u64(in, "pages_sent", w, &out->pages_sent)) < 0 ||
        (rc = fy_json_get_u64(in, "pages_dup", w, &out->pages_dup)) < 0 ||
        (rc = fy_json_get_u64(in, "pages_dup_shared", w, &out->pages_dup_shared)) < 0 ||
        (rc = fy_json_get_u64(in, "pages_zero", w, &out->pages_zero)) < 0 ||
        (rc = fy_json_get_u64(in, "pages_uncached", w, &out->pages_uncached)) < 0 ||
        (rc = fy_json_get_u64(in, "qemu_zero_pages", w, &out->qemu_zero_pages)) < 0 ||
        (rc = fy_json_get_u64(in, "wire_bytes", w, &out->wire_bytes)) < 0 ||
        (rc = fy_json_get_u64(in, "hv_transferred", w, &out->hv_transferred)) < 0 ||
        (rc = fy_json_get_u64(in, "hv_pages_normal", w, &out->hv_pages_normal)) < 0 ||
        (rc = fy_json_get_u64(in, "hv_pages_zero", w, &out->hv_pages_zero)) < 0 ||
        (rc = fy_json_get_u64(in, "hv_dirty_syncs", w, &out->hv_dirty_syncs)) < 0 ||
        (rc = get_double(in, "hv_seconds", w, &out->hv_seconds)) < 0 ||
        (rc = get_double(in, "hv_downtime", w, &out->hv_downtime)) < 0)
        return rc;
    return 0;
}
