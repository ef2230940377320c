/* vw_fetch.h -- the outbound fetches FETCH asks for (docs/PROTOCOL.md) */

#ifndef VW_FETCH_H
#define VW_FETCH_H


#include <stddef.h>
#include <stdint.h>

#include "vw_core.h"


#define VW_FETCH_SOURCE_LEN  512   /* vw_fetch_source_label()'s out */


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
 * only; it is copied.  max_age (seconds; -1: none) is a key set's or a
 * discovery's only: a set at least max(max_age, 1) s old is refreshed
 * first, unless a failed refresh's backoff is pending.
 */
void vw_fetch_start(vw_fetch_t *f, const char *idp, size_t idp_len,
    vw_fetch_kind_e kind, const unsigned char *token, size_t token_len,
    int64_t max_age, vw_fetch_done_pt handler, void *data);

/*
 * After a reload put a new configuration in force: a provider whose
 * section is gone is forgotten, and one whose key set URL or ca_file
 * changed drops the set it kept (the next FETCH or its timer fetches it
 * anew); the failures gauge of a URL no longer fetched goes.  A provider
 * whose refresh is running is looked at when its timer or a FETCH comes.
 */
void vw_fetch_reload(vw_fetch_t *f);

/*
 * Writes into out (size bytes, VW_FETCH_SOURCE_LEN will do) the key set
 * URL url as vantage_worker_jwks_consecutive_failures' source label names
 * it: "scheme://host[:port]/path", never a user, a query or a fragment
 * (an empty path is "/"), so that a URL written either way compares
 * equal; "?" when url does not parse.
 */
void vw_fetch_source_label(const char *url, char *out, size_t size);


#endif /* VW_FETCH_H */
