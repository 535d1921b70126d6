/* What a side of a migration records of the target's content. */
#include "dataplane/engine_internal.h"

int fy_held_open(struct fy_held *h, struct fy_region *r,
                 const struct fy_session *s, struct fy_dedup *shared)
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
    if ((h->space = fy_dedup_add_space(h->dedup, &h->map)) < 0) {
        rc = h->space;
        h->space = -1;
        return rc;
    }
    return 0;
}

void fy_held_close(struct fy_held *h)
{
    if (h->dedup && h->space >= 0)
        fy_dedup_remove_space(h->dedup, h->space);
    if (h->own)
        fy_dedup_destroy(h->dedup);
    fy_pagemap_fini(&h->map);
    h->dedup = NULL;
    h->space = -1;
    h->own = false;
}
