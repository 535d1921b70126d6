/* The host agent's configuration file (see config.h). */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controlplane/config.h"
#include "dataplane/netaddr.h"
#include "ferry/error.h"
#include "ferry/transport.h"

#define MAX_FILE (64u << 10)

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

/* Copies 'value' into a field of 'size' bytes. */
static int set(char *field, size_t size, const char *value, const char *name,
               unsigned line, const char *key)
{
    if (strlen(value) >= size)
        return fy_error(FY_E_CONFIG, "%s:%u: %s is longer than %zu characters",
                        name, line, key, size - 1);
    memcpy(field, value, strlen(value) + 1);
    return 0;
}

/* "name=HOST:PORT, name=HOST:PORT" */
static int parse_peers(struct fy_agent_config *cfg, char *value, const char *name,
                       unsigned line)
{
    char *save = NULL;

    for (char *tok = strtok_r(value, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq, *pname, *paddr;
        struct fy_peer *p;
        int rc;

        tok = trim(tok);
        if (!*tok)
            continue;
        eq = strchr(tok, '=');
        if (!eq)
            return fy_error(FY_E_CONFIG, "%s:%u: peer '%s' should read NAME=HOST:PORT",
                            name, line, tok);
        *eq = '\0';
        pname = trim(tok);
        paddr = trim(eq + 1);
        if (!*pname || !fy_addr_has_port(paddr))
            return fy_error(FY_E_CONFIG, "%s:%u: peer '%s' should read NAME=HOST:PORT",
                            name, line, pname);
        if (fy_agent_config_peer(cfg, pname))
            return fy_error(FY_E_CONFIG, "%s:%u: peer %s is listed twice", name,
                            line, pname);
        if (cfg->npeers == FY_MAX_PEERS)
            return fy_error(FY_E_CONFIG, "%s:%u: more than %d peers", name, line,
                            FY_MAX_PEERS);
        p = &cfg->peers[cfg->npeers];
        if ((rc = set(p->name, sizeof(p->name), pname, name, line, "a peer name")) < 0 ||
            (rc = set(p->addr, sizeof(p->addr), paddr, name, line, "a peer address")) < 0)
            return rc;
        cfg->npeers++;
    }
    return 0;
}

int fy_agent_config_parse(const char *text, const char *name,
                          struct fy_agent_config *cfg)
{
    char *copy;
    unsigned line = 0;
    int rc = 0;

    if (!text || !cfg)
        return fy_error(FY_E_INVAL, "configuration: no text or output");
    memset(cfg, 0, sizeof(*cfg));
    copy = strdup(text);
    if (!copy)
        return fy_error(FY_E_NOMEM, "no memory for the configuration");
    /* Lines are split by hand so that blank ones still count. */
    for (char *p = copy, *next; p && rc == 0; p = next) {
        char *nl = strchr(p, '\n'), *eq, *key, *value;

        next = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        line++;
        p = trim(p);
        if (!*p || *p == '#')
            continue;
        eq = strchr(p, '=');
        if (!eq) {
            rc = fy_error(FY_E_CONFIG, "%s:%u: expected 'key = value', got '%s'",
                          name, line, p);
            break;
        }
        *eq = '\0';
        key = trim(p);
        value = trim(eq + 1);
        if (!strcmp(key, "host"))
            rc = set(cfg->host, sizeof(cfg->host), value, name, line, key);
        else if (!strcmp(key, "driver"))
            rc = set(cfg->driver, sizeof(cfg->driver), value, name, line, key);
        else if (!strcmp(key, "driver-config"))
            rc = set(cfg->driver_config, sizeof(cfg->driver_config), value, name, line, key);
        else if (!strcmp(key, "drivers-dir"))
            rc = set(cfg->drivers_dir, sizeof(cfg->drivers_dir), value, name, line, key);
        else if (!strcmp(key, "key"))
            rc = set(cfg->key, sizeof(cfg->key), value, name, line, key);
        else if (!strcmp(key, "store"))
            rc = set(cfg->store, sizeof(cfg->store), value, name, line, key);
        else if (!strcmp(key, "management")) {
            rc = set(cfg->management, sizeof(cfg->management), value, name, line, key);
            if (rc == 0 && !fy_addr_has_port(value))
                rc = fy_error(FY_E_CONFIG, "%s:%u: management should read "
                              "HOST:PORT (the control API's address), got '%s'",
                              name, line, value);
        } else if (!strcmp(key, "migration"))
            rc = set(cfg->migration, sizeof(cfg->migration), value, name, line, key);
        else if (!strcmp(key, "provisioning"))
            rc = set(cfg->provisioning, sizeof(cfg->provisioning), value, name, line, key);
        else if (!strcmp(key, "peers"))
            rc = parse_peers(cfg, value, name, line);
        else if (!strcmp(key, "transport")) {
            rc = set(cfg->transport, sizeof(cfg->transport), value, name, line, key);
            if (rc == 0 && !fy_transport_find(value)) {
                char why[256];
                snprintf(why, sizeof(why), "%s", fy_error_detail());
                rc = fy_error(FY_E_CONFIG, "%s:%u: %s", name, line, why);
            }
        } else if (!strcmp(key, "transport-params"))
            rc = set(cfg->transport_params, sizeof(cfg->transport_params), value, name,
                     line, key);
        else
            rc = fy_error(FY_E_CONFIG, "%s:%u: unknown setting '%s' (known: host, "
                          "driver, driver-config, drivers-dir, key, store, "
                          "management, migration, provisioning, peers, transport, "
                          "transport-params)",
                          name, line, key);
    }
    free(copy);
    if (rc < 0)
        return rc;
    static const struct { const char *key; size_t off; } required[] = {
        {"host", offsetof(struct fy_agent_config, host)},
        {"driver", offsetof(struct fy_agent_config, driver)},
        {"key", offsetof(struct fy_agent_config, key)},
        {"store", offsetof(struct fy_agent_config, store)},
        {"management", offsetof(struct fy_agent_config, management)},
    };
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
        if (!((const char *)cfg + required[i].off)[0])
            return fy_error(FY_E_CONFIG, "%s: '%s' is not set; add a line "
                            "'%s = ...'", name, required[i].key, required[i].key);
    return 0;
}

int fy_agent_config_load(const char *path, struct fy_agent_config *cfg)
{
    char *text;
    size_t n;
    FILE *f;
    int rc;

    if (!path || !cfg)
        return fy_error(FY_E_INVAL, "configuration: no path or output");
    f = fopen(path, "r");
    if (!f)
        return fy_error_sys("cannot read the configuration %s", path);
    text = malloc(MAX_FILE + 1);
    if (!text) {
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
    rc = fy_agent_config_parse(text, path, cfg);
    free(text);
    return rc;
}

const struct fy_peer *fy_agent_config_peer(const struct fy_agent_config *cfg,
                                           const char *name)
{
    for (unsigned i = 0; i < cfg->npeers; i++)
        if (!strcmp(cfg->peers[i].name, name))
            return &cfg->peers[i];
    return NULL;
}
