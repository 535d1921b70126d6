/* QMP commands through libvirt-qemu (virDomainQemuMonitorCommand).
 *
 * libvirt has no API for what RAM-direct needs of QEMU (the x-ignore-shared
 * capability, a migration to a socket the driver holds, a deferred incoming
 * migration), so the driver speaks QMP on libvirt's monitor connection.
 * libvirt marks such a domain "custom-monitor" in its log; nothing else
 * changes for it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <libvirt/libvirt-qemu.h>

#include "drivers/libvirt/lv.h"

int lv_qmp(virDomainPtr dom, const char *cmd, struct json_object **ret)
{
    char *reply = NULL;
    json_object *o = NULL, *v;
    int rc = 0;

    if (ret)
        *ret = NULL;
    if (virDomainQemuMonitorCommand(dom, cmd, &reply, 0) < 0)
        return lv_fail(FY_E_IO, "VM %s: QMP %s", virDomainGetName(dom), cmd);
    if (!(o = json_tokener_parse(reply))) {
        rc = fy_error(FY_E_PROTO, "VM %s: QMP %s: reply is not JSON: %.200s",
                      virDomainGetName(dom), cmd, reply);
        goto out;
    }
    if (json_object_object_get_ex(o, "error", &v)) {
        json_object *desc;
        rc = fy_error(FY_E_IO, "VM %s: QMP %s: QEMU: %s", virDomainGetName(dom), cmd,
                      json_object_object_get_ex(v, "desc", &desc)
                          ? json_object_get_string(desc) : json_object_get_string(v));
        goto out;
    }
    if (ret && json_object_object_get_ex(o, "return", &v))
        *ret = json_object_get(v);
out:
    json_object_put(o);
    free(reply);
    return rc;
}

int lv_qmp_migrate_cap(virDomainPtr dom, const char *cap, bool on)
{
    char cmd[256];

    snprintf(cmd, sizeof(cmd),
             "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":"
             "[{\"capability\":\"%s\",\"state\":%s}]}}", cap, on ? "true" : "false");
    return lv_qmp(dom, cmd, NULL);
}

int lv_qmp_migrate_wait(virDomainPtr dom, int timeout_s, const char *what)
{
    struct timespec t0, t;
    char status[32] = "";

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned i = 0;; i++) {
        json_object *r = NULL, *v;
        int rc = lv_qmp(dom, "{\"execute\":\"query-migrate\"}", &r);

        if (rc < 0)
            return rc;
        snprintf(status, sizeof(status), "%s",
                 r && json_object_object_get_ex(r, "status", &v)
                     ? json_object_get_string(v) : "");
        if (!strcmp(status, "completed")) {
            json_object_put(r);
            return 0;
        }
        if (!strcmp(status, "failed") || !strcmp(status, "cancelled")) {
            rc = fy_error(FY_E_IO, "VM %s: %s %s: QEMU: %s", virDomainGetName(dom), what,
                          status,
                          json_object_object_get_ex(r, "error-desc", &v)
                              ? json_object_get_string(v) : "no reason given");
            json_object_put(r);
            return rc;
        }
        json_object_put(r);
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec >= timeout_s)
            return fy_error(FY_E_TIMEOUT, "VM %s: %s still '%s' after %d s",
                            virDomainGetName(dom), what, status[0] ? status : "not started",
                            timeout_s);
        /* Device state takes milliseconds: poll fast, then back off. */
        usleep(i < 50 ? 2000 : 20000);
    }
}
