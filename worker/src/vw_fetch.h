/* vw_fetch.h -- the outbound fetches FETCH asks for (docs/PROTOCOL.md) */

#ifndef VW_FETCH_H
#define VW_FETCH_H


#include <stddef.h>
#include <stdint.h>

#include "vw_core.h"


typedef struct vw_fetch_s  vw_fetch_t;

typedef enum {
    VW_FETCH_JWKS = 0,
    VW_FETCH_DISCOVERY,
    VW_FETCH_INTROSPECT
} vw_fetch_kind_e;


/* what a FETCH is answered with; valid during the handler's call only */
typedef struct {
    uint32_t                    status;    /* 200, 400, 404, 502, 503, 504 */
    const char                 *error;     /* safe to show; NULL: none */
    const char                 *body;      /* 200: JSON; NULL otherwise */
    size_t                      body_len;
    unsigned                    cached:1;  /* age, max_age, stale are set */
    unsigned                    stale:1;   /* the last good copy, expired */
    uint32_t                    age;       /* seconds since it was fetched */
    uint32_t                    max_age;   /* seconds it stays fresh */
} vw_fetch_result_t;

typedef void (*vw_fetch_done_pt)(void *data, const vw_fetch_result_t *res);


/* Returns the fetcher on base, or NULL (logged).  curl_global_init() first. */
vw_fetch_t *vw_fetch_create(struct event_base *base);

/*
 * Stops every fetch and answers each waiting caller 503 (its handler runs
 * from here), then frees the fetcher.  NULL is fine.
 */
void vw_fetch_free(vw_fetch_t *f);

/*
 * Starts a fetch for an identity provider of the configuration in force:
 * idp is a section's name, or a URL one section lists (discovery or
 * jwks_url for jwks and discovery, introspection_url for introspect;
 * byte for byte).  A provider named either way is the same one, with one
 * key set and one refresh.  handler runs exactly once: from within this
 * call when the answer is known at once (a fresh cached key set, an
 * unknown provider), else later from the loop.  token is introspect's
 * only; it is copied.
 */
void vw_fetch_start(vw_fetch_t *f, const char *idp, size_t idp_len,
    vw_fetch_kind_e kind, const unsigned char *token, size_t token_len,
    vw_fetch_done_pt handler, void *data);


#endif /* VW_FETCH_H */
