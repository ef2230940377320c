/* vc_jwt.h -- JWS compact tokens: parse, verify, check claims */

#ifndef VC_JWT_H
#define VC_JWT_H

#include <jansson.h>

#include "vc_common.h"
#include "vc_keys.h"


typedef struct {
    const char     *claim;      /* name, or dotted path to a nested claim */
    const char    **values;     /* accepted values */
    size_t          nvalues;
} vc_require_t;


typedef struct {
    unsigned        algs;            /* allow-list, bits of vc_alg_e */
    int64_t         leeway;          /* seconds, for exp, nbf and iat */
    unsigned        require_exp;     /* a token without exp is invalid */
    size_t          max_keys_tried;  /* keys tried when the token has no kid */
    vc_require_t   *requires;        /* all must hold */
    size_t          nrequires;
} vc_policy_t;


/*
 * Why a credential was refused, in one word of a bounded set: what the
 * metrics count and the access log shows (the reason text says more).
 * Shared by every authenticator: JWTs, introspection and API keys.
 */
typedef enum {
    VC_AUTH_OK = 0,
    VC_AUTH_MISSING,            /* no credential in the request */
    VC_AUTH_MALFORMED,          /* not parsable, too large, bad claims */
    VC_AUTH_BAD_SIGNATURE,
    VC_AUTH_EXPIRED,
    VC_AUTH_NOT_YET_VALID,      /* nbf ahead, or iat in the future */
    VC_AUTH_UNKNOWN_KEY,        /* no key has its kid, or none its alg;
                                   an unknown API key */
    VC_AUTH_ALG_NOT_ALLOWED,
    VC_AUTH_CLAIM_REFUSED,      /* a required claim or scope, iss, exp */
    VC_AUTH_INACTIVE,           /* introspection: not active */
    VC_AUTH_DISABLED,           /* a disabled API key */
    VC_AUTH_UNAVAILABLE,        /* could not be checked: no keys yet, the
                                   introspection failed */
    VC_AUTH_ERROR,              /* out of memory */
    VC_AUTH_NOUTCOMES
} vc_auth_outcome_e;


typedef enum {
    VC_JWT_VALID = 0,
    VC_JWT_INVALID,             /* 401, error="invalid_token" */
    VC_JWT_FORBIDDEN            /* 403, error="insufficient_scope" */
} vc_verdict_e;


typedef struct {
    json_t         *header;     /* the JOSE header, a JSON object */
    json_t         *claims;     /* the payload, a JSON object */
    vc_alg_e        alg;
    const char     *kid;        /* from header, NULL when absent */
    size_t          kid_len;
    const char     *signing_input;      /* points into the token */
    size_t          signing_input_len;
    unsigned char  *sig;        /* decoded signature */
    size_t          sig_len;
    int64_t         exp;        /* valid when has_exp */
    unsigned        has_exp;
    /* why the last call failed: a fixed text naming no token content */
    char            reason[VC_ERRSTR_LEN];
    vc_auth_outcome_e  outcome;         /* the same, in one word */
} vc_jwt_t;


/*
 * Splits a compact JWS (exactly three non-empty base64url segments), decodes
 * the header and the payload as JSON objects and the signature as bytes.
 * The header must carry a string "alg" naming an algorithm of vc_alg_e
 * ("none" and any other name are refused), an optional string "kid", and
 * no "crit" (RFC 7515 4.1.11: unknown critical extensions are refused; none
 * are understood).  "exp", "nbf" and "iat", when present, must be numbers.
 * jwt must be zeroed by the caller; token need not be NUL-terminated and
 * must outlive jwt.  Returns VC_OK, or VC_ERROR with jwt->reason and
 * jwt->outcome set (each failing call below sets both as well).
 * Either way the caller calls vc_jwt_free().
 */
int vc_jwt_parse(vc_jwt_t *jwt, const char *token, size_t len);

/*
 * Checks the signature of a parsed token against ks under the policy:
 * the token's alg must be in p->algs; candidate keys are those whose
 * algs include the token's alg and, when the token has a kid, whose kid is
 * equal to it (keys without a kid are candidates only when no key has that
 * kid), at most p->max_keys_tried of them when the token has no kid.  The
 * key decides how the signature is checked, never the token: an HS token
 * is only ever checked against oct keys.  HS: HMAC compared in constant
 * time; RS: RSASSA-PKCS1-v1_5; ES: the signature must be R || S of exactly
 * twice the curve's coordinate size, and is converted to DER for OpenSSL.
 * Returns VC_OK when one candidate verifies, else VC_ERROR with reason.
 */
int vc_jwt_verify(vc_jwt_t *jwt, const vc_keyset_t *ks, const vc_policy_t *p);

/*
 * Checks the registered time claims at now (seconds since the epoch):
 * exp required when p->require_exp, valid while now < exp + leeway;
 * nbf valid when now + leeway >= nbf; iat refused when iat > now + leeway.
 * Then each requirement: the claim (vc_json_path) is satisfied when it is
 * a string equal to one of the values, an array holding such a string, a
 * "scope" or "scp" string whose space-separated words include one, or a
 * number or boolean whose JSON text equals one.  A failed "iss" or "aud"
 * requirement, like the time claims, gives VC_JWT_INVALID; any other
 * failed requirement gives VC_JWT_FORBIDDEN.  reason is set on failure.
 */
vc_verdict_e vc_jwt_check_claims(vc_jwt_t *jwt, const vc_policy_t *p,
    int64_t now);

/* Whether a key of ks has the parsed token's kid (0 when it has none). */
int vc_jwt_kid_known(const vc_jwt_t *jwt, const vc_keyset_t *ks);

/* Frees what parse allocated; safe on a zeroed or partly parsed jwt. */
void vc_jwt_free(vc_jwt_t *jwt);

/*
 * Looks a claim up: the whole path as one member name first (claims such as
 * "https://example.com/roles" contain dots), then as a dotted path of
 * member names through nested objects.  Returns a borrowed reference, or
 * NULL.
 */
json_t *vc_json_path(json_t *root, const char *path);

/*
 * The value as text for a variable or a header: a string as it is, anything
 * else as compact JSON.  Returns a malloc()ed, NUL-terminated copy and its
 * length in *len, or NULL when out of memory.
 */
char *vc_json_text(json_t *v, size_t *len);


#endif /* VC_JWT_H */
