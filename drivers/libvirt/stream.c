/* Stream mode (FY_DRV_STREAM): QEMU runs the live migration itself — its
 * dirty tracking, convergence, downtime limit and auto-converge — with the
 * multifd capability, to a UNIX socket where Ferry's agent listens; Ferry
 * carries the main channel and every multifd channel to the target's
 * agent, which connects them, in order, to the destination QEMU's incoming
 * socket (include/ferry/qstream.h, docs/qstream.md).  This file is the
 * QEMU side of it: the migration capabilities and parameters, the start,
 * the state (query-migrate), the cancel.  The dataplane side is the
 * agent's (controlplane/host_stream.c).
 *
 * Both ends also set the return-path capability: the destination then
 * acknowledges the end of the stream, and the source QEMU completes only
 * when the destination has loaded it all (else it fails and the guest runs
 * on at the source), which Ferry carries back on stream 0.  Unlike
 * RAM-direct, guest RAM need not be a shared memory backend: QEMU reads
 * and writes it.  Everything goes through libvirt's monitor (qmp.c), so
 * libvirt marks the domain "custom-monitor" in its log. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "drivers/libvirt/lv.h"

/* migrate_cancel takes QEMU a moment (its threads see it at their next
 * packet); stream_end waits this long for "cancelled". */
#define CANCEL_WAIT_MS 10000

/* QEMU's "unlimited" bandwidth: libvirt uses the same kind of figure. */
#define BANDWIDTH_UNLIMITED (1ull << 40)

/* A UNIX socket path for VM 'vm''s stream ("in", "out") in the driver's
 * private directory. */
static int stream_path(struct fy_driver *d, const char *what, char *path, size_t len)
{
    int n = snprintf(path, len, "%s/qs-%s-%u.sock", d->work, what, ++d->seq);

    if (n < 0 || (size_t)n >= len || (size_t)n >= 108)
        return fy_error(FY_E_TOOBIG, "libvirt host %s: socket path in %s too long",
                        d->host, d->work);
    unlink(path);
    return 0;
}

/* The capabilities stream mode needs ('on') or that other migrations
 * expect off (!on): multifd, the return path, auto-converge; and shared
 * RAM always in the stream. */
static int stream_caps(virDomainPtr dom, bool on, bool source)
{
    char cmd[512];

    snprintf(cmd, sizeof(cmd),
             "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":["
             "{\"capability\":\"multifd\",\"state\":%s},"
             "{\"capability\":\"return-path\",\"state\":%s},"
             "{\"capability\":\"x-ignore-shared\",\"state\":false}%s]}}",
             on ? "true" : "false", on ? "true" : "false",
             !source ? "" : on ? ",{\"capability\":\"auto-converge\",\"state\":true}"
                               : ",{\"capability\":\"auto-converge\",\"state\":false}");
    return lv_qmp(dom, cmd, NULL);
}

static int check_channels(struct fy_driver *d, const char *vm, const struct fy_stream_params *p)
{
    if (!p || p->channels < 1 || p->channels > 255)
        return fy_error(FY_E_INVAL, "libvirt host %s: VM %s: stream mode needs 1-255 "
                        "multifd channels, not %u", d->host, vm, p ? p->channels : 0);
    return 0;
}

/* QEMU's word for its migration state, from query-migrate's answer 'r'. */
static const char *status_of(json_object *r)
{
    json_object *v;
    return r && json_object_object_get_ex(r, "status", &v) ? json_object_get_string(v)
                                                            : "none";
}

int lv_stream_incoming(struct fy_driver *d, const char *vm, const struct fy_stream_params *p,
                       char *path, size_t len)
{
    virDomainPtr dom;
    json_object *st = NULL, *v;
    char cmd[FY_PATH_MAX + 128];
    int rc;

    if ((rc = check_channels(d, vm, p)) < 0 || (rc = lv_lookup(d, vm, &dom)) < 0)
        return rc;
    if ((rc = lv_qmp(dom, "{\"execute\":\"query-status\"}", &st)) < 0)
        goto out;
    if (!st || !json_object_object_get_ex(st, "status", &v) ||
        strcmp(json_object_get_string(v), "inmigrate") != 0) {
        rc = fy_error(FY_E_INVAL, "VM %s on libvirt host %s is not waiting for an incoming "
                      "migration (QEMU status %s): only a placeholder from incoming_prepare "
                      "takes one", vm, d->host,
                      st && json_object_object_get_ex(st, "status", &v)
                          ? json_object_get_string(v) : "unknown");
        goto out;
    }
    if ((rc = stream_path(d, "in", path, len)) < 0 || (rc = stream_caps(dom, true, false)) < 0)
        goto out;
    snprintf(cmd, sizeof(cmd), "{\"execute\":\"migrate-set-parameters\",\"arguments\":"
             "{\"multifd-channels\":%u}}", p->channels);
    if ((rc = lv_qmp(dom, cmd, NULL)) < 0)
        goto out;
    /* QEMU listens on the socket from here on. */
    snprintf(cmd, sizeof(cmd), "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":"
             "\"unix:%s\"}}", path);
    rc = lv_qmp(dom, cmd, NULL);
out:
    json_object_put(st);
    virDomainFree(dom);
    return rc;
}

int lv_stream_outgoing(struct fy_driver *d, const char *vm, const struct fy_stream_params *p,
                       char *path, size_t len)
{
    virDomainPtr dom;
    json_object *r = NULL;
    enum fy_power power = FY_POWER_OFF;
    char cmd[512], downtime[64] = "";
    uint64_t bw;
    int rc;

    if ((rc = check_channels(d, vm, p)) < 0 || (rc = lv_lookup(d, vm, &dom)) < 0)
        return rc;
    if ((rc = lv_power(dom, &power)) < 0)
        goto out;
    if (power != FY_POWER_RUNNING) {
        rc = fy_error(FY_E_INVAL, "VM %s on libvirt host %s is not running: stream mode "
                      "migrates running VMs (use quick or cold migration)", vm, d->host);
        goto out;
    }
    /* A migration left running (an agent that died mid-way) would make
     * QEMU refuse the capabilities below with a less helpful message. */
    if ((rc = lv_qmp(dom, "{\"execute\":\"query-migrate\"}", &r)) < 0)
        goto out;
    if (!strcmp(status_of(r), "active") || !strcmp(status_of(r), "setup") ||
        !strcmp(status_of(r), "device") || !strcmp(status_of(r), "cancelling")) {
        rc = fy_error(FY_E_BUSY, "VM %s on libvirt host %s: QEMU has a migration in "
                      "progress (%s); wait for it or cancel it", vm, d->host, status_of(r));
        goto out;
    }
    if ((rc = stream_path(d, "out", path, len)) < 0 || (rc = stream_caps(dom, true, true)) < 0)
        goto out;
    /* Ferry is the transport: QEMU's own default limit (32 MiB/s) would
     * pace it, not the link.  A configured limit (stream-bandwidth=) or
     * the caller's wins. */
    bw = p->bandwidth ? p->bandwidth : d->stream_bw ? d->stream_bw : BANDWIDTH_UNLIMITED;
    if (p->downtime_ms)
        snprintf(downtime, sizeof(downtime), ",\"downtime-limit\":%u", p->downtime_ms);
    snprintf(cmd, sizeof(cmd), "{\"execute\":\"migrate-set-parameters\",\"arguments\":"
             "{\"multifd-channels\":%u,\"max-bandwidth\":%llu%s}}", p->channels,
             (unsigned long long)bw, downtime);
    if ((rc = lv_qmp(dom, cmd, NULL)) < 0)
        stream_caps(dom, false, true);
out:
    json_object_put(r);
    virDomainFree(dom);
    return rc;
}

int lv_stream_start(struct fy_driver *d, const char *vm, const char *path)
{
    virDomainPtr dom;
    char cmd[FY_PATH_MAX + 128];
    int rc;

    if ((rc = lv_lookup(d, vm, &dom)) < 0)
        return rc;
    snprintf(cmd, sizeof(cmd), "{\"execute\":\"migrate\",\"arguments\":{\"uri\":"
             "\"unix:%s\"}}", path);
    rc = lv_qmp(dom, cmd, NULL);
    virDomainFree(dom);
    return rc;
}

static uint64_t get_u64(json_object *o, const char *key)
{
    json_object *v;
    return o && json_object_object_get_ex(o, key, &v) ? (uint64_t)json_object_get_int64(v) : 0;
}

/* query-migrate's answer 'r' into 'out'. */
static void parse_status(json_object *r, struct fy_stream_status *out)
{
    const char *s = status_of(r);
    json_object *ram = NULL, *v;

    memset(out, 0, sizeof(*out));
    snprintf(out->status, sizeof(out->status), "%s", s);
    if (!strcmp(s, "none"))
        out->state = FY_STREAM_NONE;
    else if (!strcmp(s, "completed"))
        out->state = FY_STREAM_COMPLETED;
    else if (!strcmp(s, "failed") || !strcmp(s, "cancelled"))
        out->state = FY_STREAM_FAILED;
    else
        out->state = FY_STREAM_ACTIVE; /* setup, active, device, cancelling, ... */
    if (out->state == FY_STREAM_FAILED)
        snprintf(out->error, sizeof(out->error), "%s",
                 r && json_object_object_get_ex(r, "error-desc", &v)
                     ? json_object_get_string(v)
                     : !strcmp(s, "cancelled") ? "cancelled" : "no reason given");
    out->seconds = (double)get_u64(r, "total-time") / 1000.0;
    out->downtime = (double)get_u64(r, "downtime") / 1000.0;
    out->expected_downtime = (double)get_u64(r, "expected-downtime") / 1000.0;
    out->throttle_pct = (unsigned)get_u64(r, "cpu-throttle-percentage");
    if (r && json_object_object_get_ex(r, "ram", &ram)) {
        out->ram_total = get_u64(ram, "total");
        out->ram_remaining = get_u64(ram, "remaining");
        out->transferred = get_u64(ram, "transferred");
        out->pages_normal = get_u64(ram, "normal");
        out->pages_zero = get_u64(ram, "duplicate");
        out->dirty_syncs = get_u64(ram, "dirty-sync-count");
        out->dirty_rate = get_u64(ram, "dirty-pages-rate");
    }
}

int lv_stream_status(struct fy_driver *d, const char *vm, struct fy_stream_status *out)
{
    virDomainPtr dom;
    json_object *r = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = lv_lookup(d, vm, &dom)) < 0)
        return rc;
    if ((rc = lv_qmp(dom, "{\"execute\":\"query-migrate\"}", &r)) == 0)
        parse_status(r, out);
    json_object_put(r);
    virDomainFree(dom);
    return rc;
}

int lv_stream_end(struct fy_driver *d, const char *vm)
{
    virDomainPtr dom = virDomainLookupByName(d->conn, vm);
    struct fy_stream_status st;
    json_object *r = NULL;
    int rc = 0;

    if (!dom || !virDomainIsActive(dom)) {
        /* Gone or stopped: its QEMU and its settings with it. */
        if (dom)
            virDomainFree(dom);
        return 0;
    }
    /* An incoming migration still running cannot be cancelled (the
     * workflow removes its placeholder instead); its settings go with it. */
    if (lv_qmp(dom, "{\"execute\":\"query-status\"}", &r) == 0) {
        json_object *v;
        bool incoming = json_object_object_get_ex(r, "status", &v) &&
                        !strcmp(json_object_get_string(v), "inmigrate");

        json_object_put(r);
        r = NULL;
        if (incoming) {
            virDomainFree(dom);
            return 0;
        }
    }
    if (lv_qmp(dom, "{\"execute\":\"query-migrate\"}", &r) == 0) {
        parse_status(r, &st);
        json_object_put(r);
        r = NULL;
        if (st.state == FY_STREAM_ACTIVE) {
            /* The guest runs on once QEMU has cancelled it. */
            lv_qmp(dom, "{\"execute\":\"migrate_cancel\"}", NULL);
            for (int waited = 0; waited < CANCEL_WAIT_MS; waited += 20) {
                if (lv_qmp(dom, "{\"execute\":\"query-migrate\"}", &r) < 0)
                    break;
                parse_status(r, &st);
                json_object_put(r);
                r = NULL;
                if (st.state != FY_STREAM_ACTIVE)
                    break;
                usleep(20000);
            }
            if (st.state == FY_STREAM_ACTIVE)
                rc = fy_error(FY_E_TIMEOUT, "VM %s on libvirt host %s: QEMU's migration "
                              "still '%s' %d s after migrate_cancel", vm, d->host, st.status,
                              CANCEL_WAIT_MS / 1000);
        }
    }
    /* RAM-direct's device state goes over one plain channel: multifd
     * must be off again for it (and for any other migration). */
    if (rc == 0 && (rc = stream_caps(dom, false, true)) < 0)
        rc = fy_error(-rc, "VM %s on libvirt host %s: cannot reset its migration "
                      "capabilities after stream mode: %s", vm, d->host, fy_error_detail());
    virDomainFree(dom);
    return rc;
}
