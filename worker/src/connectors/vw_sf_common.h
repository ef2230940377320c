/* vw_sf_common.h -- what the Salesforce connectors share (sf_common.c) */

#ifndef VW_SF_COMMON_H
#define VW_SF_COMMON_H


#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>


/* what an error array's codes say (vw_sf_errors' flags) */
#define VW_SF_LOCK     0x01     /* UNABLE_TO_LOCK_ROW: retryable */
#define VW_SF_LIMIT    0x02     /* REQUEST_LIMIT_EXCEEDED: retryable */
#define VW_SF_SESSION  0x04     /* INVALID_SESSION_ID: a new token */


/*
 * Sforce-Limit-Info's "api-usage=N/M" (also followed by "; api-bursts=
 * ..."): VW_OK with *used and *max, or VW_ERROR when it holds none.
 */
int vw_sf_parse_usage(const char *p, size_t len, uint64_t *used,
    uint64_t *max);

/* appends line to *list; VW_ERROR when out of memory (*list unchanged) */
int vw_sf_append(struct curl_slist **list, const char *line);

/* frees a header list, every line (the Authorization one) cleared first */
void vw_sf_headers_free(struct curl_slist *l);

/*
 * A refused call's error array (or one error object), p/len its body, as
 * "CODE [field,field]; CODE" appended to out (NUL-terminated, at most
 * size bytes): codes and field names only, never a message, which may
 * quote a value; a repeated item once.  flags collect VW_SF_*.
 */
void vw_sf_errors(const unsigned char *p, size_t len, char *out,
    size_t size, unsigned *flags);

/* one error object (a SaveResult's errors[i]), as vw_sf_errors() does */
void vw_sf_error_item(json_t *e, char *out, size_t size, unsigned *flags);


#endif /* VW_SF_COMMON_H */
