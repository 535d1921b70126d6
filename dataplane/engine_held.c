/* What a side of a migration records of the target's content. */
#include <stdlib.h>

#include "dataplane/engine_internal.h"

int fy_held_open(struct fy_held *h, struct fy_region *r,
                 const struct fy_session *s, struct fy_dedup *shared,
                 struct fy_kept *keep)
{
    int rc;

    memset(h, 0, sizeof(*h));
    h->space = -1;
    if (s->info.region_size != fy_region_size(r))
        return fy_error(FY_E_INVAL,
                        "the session is for a region of %llu bytes but %s has %llu",
                        (unsigned long long)s->info.region_size, fy_region_name(r),
                        (unsigned long long)fy_region_size(r));
    if ((rc = fy_pagemap_init(&h->map, fy_region_pages(r))) < 0)
        return rc;
    h->map.owner = r;
    h->dedup = shared;
    if (!h->dedup) {
        if (!(h->dedup = fy_dedup_create(fy_region_pages(r))))
            return -FY_E_NOMEM;
        h->own = true;
    }
    if (shared) {
        if (!(h->pub = malloc(sizeof(*h->pub))))
            return fy_error(FY_E_NOMEM, "no memory for a page map");
        *h->pub = h->map;
        h->keep = keep;
    }
    if ((h->space = fy_dedup_add_space(h->dedup, h->pub ? h->pub : &h->map)) < 0) {
        rc = h->space;
        h->space = -1;
        return rc;
    }
    return 0;
}

void fy_held_close(struct fy_held *h)
{
    if (h->keep && h->pub && h->space >= 0) {
        /* Handed over: the index keeps answering with this region. */
        h->keep->map = h->pub;
        h->keep->space = h->space;
        h->pub = NULL;
        h->space = -1;
        h->map.held = NULL;
        h->map.npages = 0;
    }
    if (h->dedup && h->space >= 0)
        fy_dedup_remove_space(h->dedup, h->space);
    free(h->pub);
    h->pub = NULL;
    h->keep = NULL;
    if (h->own)
        fy_dedup_destroy(h->dedup);
    fy_pagemap_fini(&h->map);
    h->dedup = NULL;
    h->space = -1;
    h->own = false;
}

void fy_kept_release(struct fy_dedup *d, struct fy_kept *k)
{
    if (!k || !k->map)
        return;
    if (d && k->space >= 0)
        fy_dedup_remove_space(d, k->space);
    fy_pagemap_fini(k->map);
    free(k->map);
    k->map = NULL;
    k->space = -1;
}
