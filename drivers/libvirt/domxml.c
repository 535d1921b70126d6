/* Domain XML: what Ferry reads of a VM (devices, disks, memory) and the
 * edits it makes before defining one elsewhere (name, disk paths, the
 * RAM-direct incoming placeholder).  libxml2; libvirt's own schema.
 *
 * Which <disk> is disk i: the disks Ferry can move are <disk type='file'
 * device='disk'> (type and device default to those), counted in document
 * order; vm_info lists them in that order and vm_define's paths follow it.
 * Block devices and LUNs are passthrough devices; network disks are not
 * files and are left out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "drivers/libvirt/lv.h"

#define QEMU_NS "http://libvirt.org/schemas/domain/qemu/1.0"
/* <metadata><ferry:vm managed='no'/></metadata>: Ferry leaves the VM alone. */
#define FERRY_NS "urn:ferry:libvirt:1"

static xmlDocPtr parse(const char *xml, xmlNodePtr *root)
{
    xmlDocPtr doc;

    if (!xml)
        return NULL;
    doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
                        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc)
        return NULL;
    *root = xmlDocGetRootElement(doc);
    if (!*root || xmlStrcmp((*root)->name, BAD_CAST "domain") != 0) {
        xmlFreeDoc(doc);
        return NULL;
    }
    return doc;
}

static bool is(xmlNodePtr n, const char *name)
{
    return n && n->type == XML_ELEMENT_NODE && !xmlStrcmp(n->name, BAD_CAST name);
}

static xmlNodePtr child(xmlNodePtr parent, const char *name)
{
    for (xmlNodePtr c = parent ? parent->children : NULL; c; c = c->next)
        if (is(c, name))
            return c;
    return NULL;
}

/* An attribute's value into a fixed buffer ("" if absent). */
static void attr(xmlNodePtr n, const char *name, char *out, size_t len)
{
    xmlChar *v = n ? xmlGetProp(n, BAD_CAST name) : NULL;

    snprintf(out, len, "%s", v ? (const char *)v : "");
    xmlFree(v);
}

static void text(xmlNodePtr n, char *out, size_t len)
{
    xmlChar *v = n ? xmlNodeGetContent(n) : NULL;

    snprintf(out, len, "%s", v ? (const char *)v : "");
    xmlFree(v);
}

/* libvirt's memory units (KiB when none is given). */
static uint64_t mem_bytes(xmlNodePtr n)
{
    char unit[16], num[32];
    static const struct { const char *u; uint64_t m; } units[] = {
        {"b", 1}, {"bytes", 1}, {"KB", 1000}, {"k", 1024}, {"KiB", 1024},
        {"MB", 1000000}, {"M", 1ull << 20}, {"MiB", 1ull << 20},
        {"GB", 1000000000}, {"G", 1ull << 30}, {"GiB", 1ull << 30},
        {"TB", 1000000000000ull}, {"T", 1ull << 40}, {"TiB", 1ull << 40},
    };
    uint64_t m = 1024;

    attr(n, "unit", unit, sizeof(unit));
    text(n, num, sizeof(num));
    for (size_t i = 0; unit[0] && i < sizeof(units) / sizeof(units[0]); i++)
        if (!strcmp(unit, units[i].u))
            m = units[i].m;
    return strtoull(num, NULL, 10) * m;
}

/* The kind of disk 'n' is: 'D' a movable disk, 'C' CD-ROM, 'F' floppy,
 * 'P' passthrough (block device, LUN), 0 none of those (network). */
static char disk_kind(xmlNodePtr n)
{
    char type[16], device[16];

    attr(n, "type", type, sizeof(type));
    attr(n, "device", device, sizeof(device));
    if (!strcmp(device, "cdrom"))
        return 'C';
    if (!strcmp(device, "floppy"))
        return 'F';
    if (!strcmp(device, "lun") || !strcmp(type, "block"))
        return 'P';
    if ((!device[0] || !strcmp(device, "disk")) && (!type[0] || !strcmp(type, "file")))
        return 'D';
    return 0;
}

static struct fy_device *add_device(struct fy_vm_info *out, enum fy_device_kind kind)
{
    struct fy_device *dev;

    if (out->ndevices >= FY_MAX_DEVICES)
        return NULL;
    dev = &out->devices[out->ndevices++];
    memset(dev, 0, sizeof(*dev));
    dev->kind = kind;
    return dev;
}

static void read_disk(xmlNodePtr n, struct fy_vm_info *out)
{
    xmlNodePtr src = child(n, "source"), tgt = child(n, "target");
    char kind = disk_kind(n), dev[FY_NAME_MAX], file[FY_PATH_MAX];
    struct fy_device *d;

    attr(tgt, "dev", dev, sizeof(dev));
    attr(src, "file", file, sizeof(file));
    if (!file[0])
        attr(src, "dev", file, sizeof(file));
    switch (kind) {
    case 'D':
        if (out->ndisks < FY_MAX_DISKS) {
            struct fy_disk *k = &out->disks[out->ndisks++];
            memset(k, 0, sizeof(*k));
            snprintf(k->name, sizeof(k->name), "%s", dev);
            snprintf(k->path, sizeof(k->path), "%s", file);
        }
        return;
    case 'C':
    case 'F':
        if ((d = add_device(out, kind == 'C' ? FY_DEV_CDROM : FY_DEV_FLOPPY))) {
            snprintf(d->name, sizeof(d->name), "%s", dev);
            snprintf(d->path, sizeof(d->path), "%s", file);
            d->media = file[0] != '\0';
        }
        return;
    case 'P':
        if ((d = add_device(out, FY_DEV_PASSTHROUGH))) {
            snprintf(d->name, sizeof(d->name), "%s", dev);
            snprintf(d->path, sizeof(d->path), "%s", file);
        }
        return;
    default:
        return;
    }
}

static void read_devices(xmlNodePtr devices, struct fy_vm_info *out)
{
    for (xmlNodePtr n = devices ? devices->children : NULL; n; n = n->next) {
        struct fy_device *d;
        char type[32], buf[FY_PATH_MAX];

        if (n->type != XML_ELEMENT_NODE)
            continue;
        if (is(n, "disk")) {
            read_disk(n, out);
        } else if (is(n, "hostdev")) {
            /* USB from the host, or a PCI/SCSI/mediated device: both tie
             * the VM to this host. */
            attr(n, "type", type, sizeof(type));
            if ((d = add_device(out, !strcmp(type, "usb") ? FY_DEV_USB
                                                          : FY_DEV_PASSTHROUGH))) {
                attr(child(n, "alias"), "name", d->name, sizeof(d->name));
                if (!d->name[0])
                    snprintf(d->name, sizeof(d->name), "hostdev-%s", type);
            }
        } else if (is(n, "redirdev")) {
            if ((d = add_device(out, FY_DEV_USB))) {
                attr(child(n, "alias"), "name", d->name, sizeof(d->name));
                if (!d->name[0])
                    snprintf(d->name, sizeof(d->name), "usb-redirection");
            }
        } else if (is(n, "interface")) {
            if ((d = add_device(out, FY_DEV_NIC))) {
                attr(child(n, "mac"), "address", d->name, sizeof(d->name));
                xmlNodePtr s = child(n, "source");
                attr(s, "network", buf, sizeof(buf));
                if (!buf[0])
                    attr(s, "bridge", buf, sizeof(buf));
                snprintf(d->path, sizeof(d->path), "%s", buf);
                attr(child(n, "link"), "state", type, sizeof(type));
                d->media = strcmp(type, "down") != 0;
            }
        }
    }
}

int lv_xml_info(const char *xml, struct fy_vm_info *out)
{
    xmlNodePtr root, n;
    xmlDocPtr doc = parse(xml, &root);
    char buf[32];

    memset(out, 0, sizeof(*out));
    if (!doc)
        return fy_error(FY_E_INVAL, "libvirt: the domain XML does not parse");
    text(child(root, "name"), out->name, sizeof(out->name));
    text(child(root, "uuid"), out->uuid, sizeof(out->uuid));
    out->mem_bytes = mem_bytes(child(root, "memory"));
    text(child(root, "vcpu"), buf, sizeof(buf));
    out->vcpus = (unsigned)strtoul(buf, NULL, 10);
    if (!out->vcpus)
        out->vcpus = 1;
    /* Memory that can change while it runs: hotplug (maxMemory) or a
     * balloon holding part of it back. */
    out->dynamic_memory = child(root, "maxMemory") != NULL ||
                          (child(root, "currentMemory") &&
                           mem_bytes(child(root, "currentMemory")) < out->mem_bytes);
    out->managed = true;
    n = child(root, "metadata");
    for (xmlNodePtr m = n ? n->children : NULL; m; m = m->next) {
        if (is(m, "vm") && m->ns && !xmlStrcmp(m->ns->href, BAD_CAST FERRY_NS)) {
            attr(m, "managed", buf, sizeof(buf));
            if (!strcmp(buf, "no") || !strcmp(buf, "0"))
                out->managed = false;
        }
    }
    read_devices(child(root, "devices"), out);
    xmlFreeDoc(doc);
    return 0;
}

void lv_xml_disk_attr(const char *xml, unsigned disk, const char *elem, const char *name,
                      char *out, size_t len)
{
    xmlNodePtr root, devs;
    xmlDocPtr doc = parse(xml, &root);
    unsigned i = 0;

    out[0] = '\0';
    devs = doc ? child(root, "devices") : NULL;
    for (xmlNodePtr n = devs ? devs->children : NULL; n; n = n->next) {
        if (!is(n, "disk") || disk_kind(n) != 'D')
            continue;
        if (i++ == disk) {
            attr(child(n, elem), name, out, len);
            break;
        }
    }
    xmlFreeDoc(doc);
}

void lv_xml_name(const char *xml, char *out, size_t len)
{
    xmlNodePtr root;
    xmlDocPtr doc = parse(xml, &root);

    out[0] = '\0';
    if (doc)
        text(child(root, "name"), out, len);
    xmlFreeDoc(doc);
}

/* Removes "-incoming X" from <qemu:commandline>, and the element if that
 * empties it.  A VM that arrived by RAM-direct migration runs with the
 * placeholder's "-incoming defer" in its running definition, which is
 * what a live or quick migration exports: left in, the next host's
 * persistent definition would keep it (the VM would wait for a migration
 * at its next start) and each hop would add another. */
static void strip_incoming(xmlNodePtr root)
{
    for (xmlNodePtr c = root->children, cn; c; c = cn) {
        cn = c->next;
        if (!is(c, "commandline") || !c->ns || xmlStrcmp(c->ns->href, BAD_CAST QEMU_NS))
            continue;
        for (xmlNodePtr a = c->children, an; a; a = an) {
            xmlChar *v = is(a, "arg") ? xmlGetProp(a, BAD_CAST "value") : NULL;
            bool inc = v && !xmlStrcmp(v, BAD_CAST "-incoming");

            xmlFree(v);
            an = a->next;
            if (!inc)
                continue;
            /* The value follows, maybe after whitespace text. */
            while (an && !is(an, "arg"))
                an = an->next;
            if (an) {
                xmlNodePtr val = an;
                an = an->next;
                xmlUnlinkNode(val);
                xmlFreeNode(val);
            }
            xmlUnlinkNode(a);
            xmlFreeNode(a);
        }
        bool empty = true;
        for (xmlNodePtr a = c->children; a; a = a->next)
            empty &= a->type != XML_ELEMENT_NODE;
        if (empty) {
            xmlUnlinkNode(c);
            xmlFreeNode(c);
        }
    }
}

/* Adds QEMU's "-incoming defer": QEMU starts, paused, waiting for a
 * migration stream that device_state_load gives it later. */
static int add_incoming(xmlNodePtr root)
{
    xmlNsPtr ns = xmlSearchNsByHref(root->doc, root, BAD_CAST QEMU_NS);
    xmlNodePtr cl = NULL, a;

    if (!ns && !(ns = xmlNewNs(root, BAD_CAST QEMU_NS, BAD_CAST "qemu")))
        return fy_error(FY_E_NOMEM, "libvirt: no memory for the incoming XML");
    for (xmlNodePtr c = root->children; c; c = c->next)
        if (is(c, "commandline") && c->ns && !xmlStrcmp(c->ns->href, BAD_CAST QEMU_NS))
            cl = c;
    if (!cl && !(cl = xmlNewChild(root, ns, BAD_CAST "commandline", NULL)))
        return fy_error(FY_E_NOMEM, "libvirt: no memory for the incoming XML");
    if (!(a = xmlNewChild(cl, ns, BAD_CAST "arg", NULL)) ||
        !xmlNewProp(a, BAD_CAST "value", BAD_CAST "-incoming") ||
        !(a = xmlNewChild(cl, ns, BAD_CAST "arg", NULL)) ||
        !xmlNewProp(a, BAD_CAST "value", BAD_CAST "defer"))
        return fy_error(FY_E_NOMEM, "libvirt: no memory for the incoming XML");
    return 0;
}

/* A copy gets its own identity: libvirt makes a UUID and MAC addresses. */
static void drop_identity(xmlNodePtr root)
{
    xmlNodePtr u = child(root, "uuid"), devs = child(root, "devices");

    if (u) {
        xmlUnlinkNode(u);
        xmlFreeNode(u);
    }
    for (xmlNodePtr n = devs ? devs->children : NULL; n; n = n->next) {
        xmlNodePtr mac = is(n, "interface") ? child(n, "mac") : NULL;
        if (mac) {
            xmlUnlinkNode(mac);
            xmlFreeNode(mac);
        }
    }
}

static int set_disk_paths(xmlNodePtr root, const char *const *paths, unsigned n)
{
    xmlNodePtr devs = child(root, "devices");
    unsigned i = 0;

    for (xmlNodePtr d = devs ? devs->children : NULL; d && i < n; d = d->next) {
        xmlNodePtr src;

        if (!is(d, "disk") || disk_kind(d) != 'D')
            continue;
        if (paths[i]) {
            if (!(src = child(d, "source")) &&
                !(src = xmlNewChild(d, NULL, BAD_CAST "source", NULL)))
                return fy_error(FY_E_NOMEM, "libvirt: no memory for disk paths");
            if (!xmlSetProp(src, BAD_CAST "file", BAD_CAST paths[i]))
                return fy_error(FY_E_NOMEM, "libvirt: no memory for disk paths");
            /* The chain libvirt saw at the source is the source's. */
            xmlNodePtr bs = child(d, "backingStore");
            if (bs) {
                xmlUnlinkNode(bs);
                xmlFreeNode(bs);
            }
        }
        i++;
    }
    if (i < n)
        return fy_error(FY_E_INVAL, "libvirt: %u disk paths given, the VM has %u disks",
                        n, i);
    return 0;
}

int lv_xml_rewrite(const char *xml, const char *name, const char *const *paths,
                   unsigned n, enum lv_xml_edit edit, char **out)
{
    xmlNodePtr root, nm;
    xmlDocPtr doc = parse(xml, &root);
    xmlChar *buf = NULL;
    int len = 0, rc = 0;

    *out = NULL;
    if (!doc)
        return fy_error(FY_E_INVAL, "libvirt: the VM configuration is not domain XML");
    if (name) {
        char old[FY_NAME_MAX];
        text(child(root, "name"), old, sizeof(old));
        if (strcmp(old, name) != 0) {
            if (!(nm = child(root, "name")) &&
                !(nm = xmlNewChild(root, NULL, BAD_CAST "name", NULL))) {
                rc = fy_error(FY_E_NOMEM, "libvirt: no memory for the XML");
                goto out;
            }
            xmlNodeSetContent(nm, BAD_CAST name);
            drop_identity(root);
        }
    }
    if (paths && n && (rc = set_disk_paths(root, paths, n)) < 0)
        goto out;
    strip_incoming(root);
    if (edit == LV_XML_INCOMING && (rc = add_incoming(root)) < 0)
        goto out;
    xmlDocDumpMemory(doc, &buf, &len);
    if (!buf || !(*out = strdup((const char *)buf)))
        rc = fy_error(FY_E_NOMEM, "libvirt: no memory for the XML");
out:
    xmlFree(buf);
    xmlFreeDoc(doc);
    return rc;
}
