/* vc_apikeys.h -- API key files: parse, look a key up by its hash, check it */

#ifndef VC_APIKEYS_H
#define VC_APIKEYS_H

#include <stddef.h>
#include <stdint.h>

#include "vc_common.h"
#include "vc_jwt.h"


#define VC_APIKEY_ID_MAX       64
#define VC_APIKEY_TENANT_MAX   128
#define VC_APIKEY_SCOPE_MAX    128
#define VC_APIKEY_SCOPES_MAX   64       /* scopes per key */
#define VC_APIKEY_PREFIX       "vk_"


/*
 * One entry of the file.  Strings are NUL-terminated copies owned by the
 * set; scopes are joined with single spaces, as an OAuth "scope" claim.
 */
typedef struct {
    unsigned char   sha256[32];
    char           *id;
    size_t          id_len;
    char           *tenant;
    size_t          tenant_len;
    char           *scopes;         /* "" when the key has none */
    size_t          scopes_len;
    int64_t         expires;        /* seconds since the epoch; 0: never */
    unsigned        disabled:1;
} vc_apikey_t;


typedef struct {
    vc_apikey_t    *keys;           /* sorted by sha256 */
    size_t          nkeys;
} vc_apikeys_t;


typedef enum {
    VC_APIKEY_VALID = 0,
    VC_APIKEY_INVALID,              /* 401, error="invalid_token" */
    VC_APIKEY_FORBIDDEN             /* 403, error="insufficient_scope" */
} vc_apikey_verdict_e;


/*
 * Parses a key file: a JSON object {"keys": [entry, ...]}, each entry
 *   {"id": "<1-64 of A-Za-z0-9.->", "sha256": "<64 hex digits>",
 *    "tenant": "<1-128 printable>", "scopes": ["<scope>", ...],
 *    "expires": <unix seconds> | "<RFC 3339 time>", "disabled": <bool>,
 *    "created": "<any string>", "note": "<any string>"}
 * where id, sha256 and tenant are required, every other member optional,
 * and no other member is allowed (a misspelt "expires" must not make a key
 * valid forever).  Tenants and scopes are RFC 6749 scope-tokens (printable
 * ASCII without space, '"' or '\').  Ids and hashes are unique.  set must
 * be zeroed by the caller; buf need not be NUL-terminated.  Returns VC_OK,
 * or VC_ERROR with errstr naming the entry (by position and id) and the
 * problem; on error set holds nothing and needs no vc_apikeys_free().
 */
int vc_apikeys_load(vc_apikeys_t *set, const char *buf, size_t len,
    char *errstr, size_t errlen);

/* Frees what load allocated; safe on a zeroed set. */
void vc_apikeys_free(vc_apikeys_t *set);

/*
 * The entry whose hash equals digest (32 bytes), or NULL.  The search runs
 * over the digests of the file, which say nothing of the keys; the match is
 * then confirmed with CRYPTO_memcmp(), in constant time.
 */
const vc_apikey_t *vc_apikeys_find(const vc_apikeys_t *set,
    const unsigned char *digest);

/*
 * Checks a found key at now: refused when disabled or when now >= expires
 * (VC_APIKEY_INVALID), then each requirement of the JWT policy, so that one
 * vantage_jwt_require applies to whichever credential was presented:
 * "scope" and "scp" hold when one of the values is one of the key's
 * scopes, "tenant" when the tenant is one of the values, "sub" when the
 * id is; "iss" and "aud" bind a token to its issuer and audience and do not
 * apply to a key the gateway issued itself; any other claim is one a key
 * does not have, so the requirement fails (VC_APIKEY_FORBIDDEN).  reason
 * (VC_ERRSTR_LEN bytes) says why on failure, in the words of the JWT
 * checks, and *outcome in one word (VC_AUTH_DISABLED, VC_AUTH_EXPIRED or
 * VC_AUTH_CLAIM_REFUSED; VC_AUTH_OK when valid).
 */
vc_apikey_verdict_e vc_apikey_check(const vc_apikey_t *key, int64_t now,
    const vc_require_t *requires, size_t nrequires, char *reason,
    vc_auth_outcome_e *outcome);

/*
 * Parses an RFC 3339 date-time ("2026-01-31T08:00:00Z", with optional
 * fraction, "Z" or a "+hh:mm" offset, 't' and 'z' in either case) into
 * seconds since the epoch, the fraction dropped.  Returns VC_OK or
 * VC_ERROR.
 */
int vc_rfc3339_parse(const char *s, size_t len, int64_t *t);

/* 1 when s is a valid key id, tenant or scope, else 0 */
int vc_apikey_id_valid(const char *s, size_t len);
int vc_apikey_token_valid(const char *s, size_t len, size_t max);


#endif /* VC_APIKEYS_H */
