/* vc_jwt.c -- JWS compact tokens: parse, verify with OpenSSL, check claims */

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "vc_jwt.h"


#define VC_ALG_BIT(a)       (1u << (a))

/* beyond 2^53 a JSON number is no longer an exact integer anywhere */
#define VC_JWT_TIME_MAX     9007199254740992.0

/* DER of an ECDSA-Sig-Value over P-521: 2 * (66 + 1 + 3) + 3 bytes, rounded */
#define VC_JWT_ECDSA_DER    160


static void vc_jwt_reason(vc_jwt_t *jwt, vc_auth_outcome_e outcome,
    const char *reason);
static int vc_jwt_time(json_t *claims, const char *name, int64_t *t);
static int vc_jwt_verify_key(vc_jwt_t *jwt, const vc_key_t *key);
static int vc_jwt_verify_ecdsa(vc_jwt_t *jwt, const vc_key_t *key,
    const EVP_MD *md);
static int vc_jwt_verify_digest(vc_jwt_t *jwt, const vc_key_t *key,
    const EVP_MD *md, const unsigned char *sig, size_t sig_len);
static const EVP_MD *vc_jwt_md(vc_alg_e alg);
static json_t *vc_jwt_json_segment(unsigned char *buf, const char *seg,
    size_t len);
static int vc_jwt_kid_eq(const vc_jwt_t *jwt, const vc_key_t *key);
static int vc_jwt_match(json_t *v, const vc_require_t *req);
static int vc_jwt_match_words(const char *s, size_t len, const char *value);
static int vc_jwt_str_eq(const char *s, size_t len, const char *value);
static int64_t vc_jwt_add(int64_t a, int64_t b);


int
vc_jwt_parse(vc_jwt_t *jwt, const char *token, size_t len)
{
    const char     *dot1, *dot2, *h, *pl, *s;
    size_t          hlen, plen, slen, hcap, pcap, scap;
    unsigned char  *buf;
    json_t         *alg, *kid;
    long            n;
    int64_t         t;

    jwt->alg = VC_ALG_NONE;
    jwt->reason[0] = '\0';
    jwt->outcome = VC_AUTH_OK;

    dot1 = memchr(token, '.', len);
    if (dot1 == NULL) {
        vc_jwt_reason(jwt, VC_AUTH_MALFORMED, "malformed token");
        return VC_ERROR;
    }

    dot2 = memchr(dot1 + 1, '.', len - (dot1 + 1 - token));
    if (dot2 == NULL
        || memchr(dot2 + 1, '.', len - (dot2 + 1 - token)) != NULL)
    {
        vc_jwt_reason(jwt, VC_AUTH_MALFORMED, "malformed token");
        return VC_ERROR;
    }

    h = token;
    hlen = dot1 - token;
    pl = dot1 + 1;
    plen = dot2 - pl;
    s = dot2 + 1;
    slen = token + len - s;

    if (hlen == 0 || plen == 0 || slen == 0) {
        vc_jwt_reason(jwt, VC_AUTH_MALFORMED, "malformed token");
        return VC_ERROR;
    }

    /*
     * One buffer: the signature first, kept in jwt->sig, then room for the
     * header and the payload, which are only needed until parsed.
     */

    scap = vc_base64url_decoded_len(slen);
    hcap = vc_base64url_decoded_len(hlen);
    pcap = vc_base64url_decoded_len(plen);

    buf = malloc(scap + (hcap > pcap ? hcap : pcap));
    if (buf == NULL) {
        vc_jwt_reason(jwt, VC_AUTH_ERROR, "out of memory");
        return VC_ERROR;
    }

    jwt->sig = buf;

    n = vc_base64url_decode(buf, s, slen);
    if (n <= 0) {
        vc_jwt_reason(jwt, VC_AUTH_MALFORMED, "malformed token");
        return VC_ERROR;
    }

    jwt->sig_len = (size_t) n;

    jwt->header = vc_jwt_json_segment(buf + scap, h, hlen);
    jwt->claims = jwt->header ? vc_jwt_json_segment(buf + scap, pl, plen)
                              : NULL;

    if (jwt->claims == NULL) {
        vc_jwt_reason(jwt, VC_AUTH_MALFORMED, "malformed token");
        return VC_ERROR;
    }

    alg = json_object_get(jwt->header, "alg");
    kid = json_object_get(jwt->header, "kid");

    if (!json_is_string(alg) || (kid && !json_is_string(kid))) {
        vc_jwt_reason(jwt, VC_AUTH_MALFORMED, "malformed token header");
        return VC_ERROR;
    }

    jwt->alg = vc_alg_by_name(json_string_value(alg), json_string_length(alg));
    if (jwt->alg == VC_ALG_NONE) {
        vc_jwt_reason(jwt, VC_AUTH_ALG_NOT_ALLOWED, "unsupported algorithm");
        return VC_ERROR;
    }

    if (json_object_get(jwt->header, "crit")) {
        vc_jwt_reason(jwt, VC_AUTH_MALFORMED, "unsupported critical header");
        return VC_ERROR;
    }

    if (kid) {
        jwt->kid = json_string_value(kid);
        jwt->kid_len = json_string_length(kid);
    }

    switch (vc_jwt_time(jwt->claims, "exp", &jwt->exp)) {
    case VC_OK:
        jwt->has_exp = 1;
        break;
    case VC_DECLINED:
        break;
    default:
        vc_jwt_reason(jwt, VC_AUTH_MALFORMED, "malformed time claim");
        return VC_ERROR;
    }

    if (vc_jwt_time(jwt->claims, "nbf", &t) == VC_ERROR
        || vc_jwt_time(jwt->claims, "iat", &t) == VC_ERROR)
    {
        vc_jwt_reason(jwt, VC_AUTH_MALFORMED, "malformed time claim");
        return VC_ERROR;
    }

    jwt->signing_input = token;
    jwt->signing_input_len = dot2 - token;

    return VC_OK;
}


int
vc_jwt_verify(vc_jwt_t *jwt, const vc_keyset_t *ks, const vc_policy_t *p)
{
    const vc_key_t  *key;
    size_t           i, tried;
    unsigned         bit, has_alg, kid_known, by_kid, cands;

    if (jwt->header == NULL || jwt->signing_input == NULL
        || jwt->alg < 0 || jwt->alg >= VC_ALG_COUNT)
    {
        vc_jwt_reason(jwt, VC_AUTH_MALFORMED, "malformed token");
        return VC_ERROR;
    }

    bit = VC_ALG_BIT(jwt->alg);

    if (!(p->algs & bit)) {
        vc_jwt_reason(jwt, VC_AUTH_ALG_NOT_ALLOWED, "algorithm not allowed");
        return VC_ERROR;
    }

    has_alg = 0;
    kid_known = 0;

    for (i = 0; i < ks->nkeys; i++) {
        key = &ks->keys[i];

        if (key->algs & bit) {
            has_alg = 1;
        }

        if (jwt->kid && vc_jwt_kid_eq(jwt, key)) {
            kid_known = 1;
        }
    }

    if (!has_alg) {
        vc_jwt_reason(jwt, VC_AUTH_UNKNOWN_KEY, "no key for algorithm");
        return VC_ERROR;
    }

    /*
     * A kid that names a key selects the keys of that kid only, and all of
     * them are tried: the set is the operator's.  Otherwise (no kid, or a
     * kid no key has, which falls back to the keys without a kid) at most
     * max_keys_tried keys are, so that a token cannot make us run through
     * a large set.
     */

    by_kid = jwt->kid && kid_known;
    tried = 0;
    cands = 0;

    for (i = 0; i < ks->nkeys; i++) {
        key = &ks->keys[i];

        if (!(key->algs & bit)) {
            continue;
        }

        if (by_kid) {
            if (!vc_jwt_kid_eq(jwt, key)) {
                continue;
            }

        } else {
            if (jwt->kid && key->kid) {
                continue;
            }

            cands = 1;

            if (tried >= p->max_keys_tried) {
                break;
            }
        }

        tried++;

        if (vc_jwt_verify_key(jwt, key) == VC_OK) {
            ERR_clear_error();
            return VC_OK;
        }
    }

    ERR_clear_error();

    if (tried == 0 && !cands) {
        if (by_kid) {
            /* the kid names keys of other algorithms only */
            vc_jwt_reason(jwt, VC_AUTH_UNKNOWN_KEY, "no key for algorithm");
            return VC_ERROR;
        }

        if (jwt->kid) {
            vc_jwt_reason(jwt, VC_AUTH_UNKNOWN_KEY, "unknown key id");
            return VC_ERROR;
        }
    }

    vc_jwt_reason(jwt, VC_AUTH_BAD_SIGNATURE, "signature verification failed");

    return VC_ERROR;
}


vc_verdict_e
vc_jwt_check_claims(vc_jwt_t *jwt, const vc_policy_t *p, int64_t now)
{
    const vc_require_t  *req;
    json_t              *v;
    int64_t              t;
    size_t               i, n, max;
    static const char    fmt1[] = "claim \"";
    static const char    fmt2[] = "\" not accepted";

    if (jwt->claims == NULL) {
        vc_jwt_reason(jwt, VC_AUTH_MALFORMED, "malformed token");
        return VC_JWT_INVALID;
    }

    if (jwt->has_exp) {
        if (now >= vc_jwt_add(jwt->exp, p->leeway)) {
            vc_jwt_reason(jwt, VC_AUTH_EXPIRED, "token expired");
            return VC_JWT_INVALID;
        }

    } else if (p->require_exp) {
        vc_jwt_reason(jwt, VC_AUTH_CLAIM_REFUSED, "missing exp claim");
        return VC_JWT_INVALID;
    }

    switch (vc_jwt_time(jwt->claims, "nbf", &t)) {
    case VC_OK:
        if (vc_jwt_add(now, p->leeway) < t) {
            vc_jwt_reason(jwt, VC_AUTH_NOT_YET_VALID, "token not yet valid");
            return VC_JWT_INVALID;
        }
        break;
    case VC_DECLINED:
        break;
    default:
        vc_jwt_reason(jwt, VC_AUTH_MALFORMED, "malformed time claim");
        return VC_JWT_INVALID;
    }

    switch (vc_jwt_time(jwt->claims, "iat", &t)) {
    case VC_OK:
        if (t > vc_jwt_add(now, p->leeway)) {
            vc_jwt_reason(jwt, VC_AUTH_NOT_YET_VALID,
                          "token issued in the future");
            return VC_JWT_INVALID;
        }
        break;
    case VC_DECLINED:
        break;
    default:
        vc_jwt_reason(jwt, VC_AUTH_MALFORMED, "malformed time claim");
        return VC_JWT_INVALID;
    }

    for (i = 0; i < p->nrequires; i++) {
        req = &p->requires[i];
        v = vc_json_path(jwt->claims, req->claim);

        if (v && vc_jwt_match(v, req)) {
            continue;
        }

        /* the name is cut, at a character boundary, to keep the quotes */

        n = strlen(req->claim);
        max = VC_ERRSTR_LEN - 1 - (sizeof(fmt1) - 1) - (sizeof(fmt2) - 1);

        if (n > max) {
            n = max;
            while (n && ((unsigned char) req->claim[n] & 0xc0) == 0x80) {
                n--;
            }
        }

        snprintf(jwt->reason, VC_ERRSTR_LEN, "%s%.*s%s", fmt1, (int) n,
                 req->claim, fmt2);
        jwt->outcome = VC_AUTH_CLAIM_REFUSED;

        if (strcmp(req->claim, "iss") == 0 || strcmp(req->claim, "aud") == 0) {
            return VC_JWT_INVALID;
        }

        return VC_JWT_FORBIDDEN;
    }

    return VC_JWT_VALID;
}


int
vc_jwt_kid_known(const vc_jwt_t *jwt, const vc_keyset_t *ks)
{
    size_t  i;

    for (i = 0; jwt->kid && i < ks->nkeys; i++) {
        if (vc_jwt_kid_eq(jwt, &ks->keys[i])) {
            return 1;
        }
    }

    return 0;
}


void
vc_jwt_free(vc_jwt_t *jwt)
{
    json_decref(jwt->header);
    json_decref(jwt->claims);
    free(jwt->sig);

    jwt->header = NULL;
    jwt->claims = NULL;
    jwt->sig = NULL;
    jwt->sig_len = 0;
    jwt->kid = NULL;
    jwt->kid_len = 0;
    jwt->signing_input = NULL;
    jwt->signing_input_len = 0;
}


json_t *
vc_json_path(json_t *root, const char *path)
{
    json_t      *v;
    const char  *p, *dot;

    if (!json_is_object(root) || path == NULL) {
        return NULL;
    }

    v = json_object_get(root, path);
    if (v) {
        return v;
    }

    if (strchr(path, '.') == NULL) {
        return NULL;
    }

    v = root;
    p = path;

    for ( ;; ) {
        if (!json_is_object(v)) {
            return NULL;
        }

        dot = strchr(p, '.');

        if (dot == NULL) {
            return json_object_get(v, p);
        }

        v = json_object_getn(v, p, dot - p);
        if (v == NULL) {
            return NULL;
        }

        p = dot + 1;
    }
}


char *
vc_json_text(json_t *v, size_t *len)
{
    char    *s;
    size_t   n;

    if (v == NULL) {
        return NULL;
    }

    if (json_is_string(v)) {
        n = json_string_length(v);

        s = malloc(n + 1);
        if (s == NULL) {
            return NULL;
        }

        memcpy(s, json_string_value(v), n);
        s[n] = '\0';
        *len = n;

        return s;
    }

    /* jansson allocates with malloc() unless told otherwise */
    s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s == NULL) {
        return NULL;
    }

    *len = strlen(s);

    return s;
}


static void
vc_jwt_reason(vc_jwt_t *jwt, vc_auth_outcome_e outcome, const char *reason)
{
    size_t  n;

    n = strlen(reason);
    if (n >= VC_ERRSTR_LEN) {
        n = VC_ERRSTR_LEN - 1;
    }

    memcpy(jwt->reason, reason, n);
    jwt->reason[n] = '\0';
    jwt->outcome = outcome;
}


/*
 * A time claim, rounded up to whole seconds (for an integer now, now < x
 * exactly when now < ceil(x), and so on).  Returns VC_OK, VC_DECLINED when
 * absent, or VC_ERROR when not a sane number.
 */

static int
vc_jwt_time(json_t *claims, const char *name, int64_t *t)
{
    json_t  *v;
    double   d;

    v = json_object_get(claims, name);
    if (v == NULL) {
        return VC_DECLINED;
    }

    if (json_is_integer(v)) {
        if (json_integer_value(v) > (json_int_t) VC_JWT_TIME_MAX
            || json_integer_value(v) < -(json_int_t) VC_JWT_TIME_MAX)
        {
            return VC_ERROR;
        }

        *t = (int64_t) json_integer_value(v);

        return VC_OK;
    }

    if (json_is_real(v)) {
        d = json_real_value(v);

        if (!isfinite(d) || d > VC_JWT_TIME_MAX || d < -VC_JWT_TIME_MAX) {
            return VC_ERROR;
        }

        *t = (int64_t) ceil(d);

        return VC_OK;
    }

    return VC_ERROR;
}


static int
vc_jwt_verify_key(vc_jwt_t *jwt, const vc_key_t *key)
{
    const EVP_MD   *md;
    unsigned char   mac[EVP_MAX_MD_SIZE];
    unsigned int    maclen;

    md = vc_jwt_md(jwt->alg);

    switch (key->kty) {

    case VC_KTY_OCT:
        if (jwt->alg > VC_ALG_HS512 || key->secret == NULL) {
            return VC_ERROR;
        }

        if (HMAC(md, key->secret, (int) key->secret_len,
                 (const unsigned char *) jwt->signing_input,
                 jwt->signing_input_len, mac, &maclen)
            == NULL)
        {
            return VC_ERROR;
        }

        if (jwt->sig_len != maclen
            || CRYPTO_memcmp(mac, jwt->sig, maclen) != 0)
        {
            return VC_ERROR;
        }

        return VC_OK;

    case VC_KTY_RSA:
        if (jwt->alg < VC_ALG_RS256 || jwt->alg > VC_ALG_RS512
            || key->pkey == NULL)
        {
            return VC_ERROR;
        }

        return vc_jwt_verify_digest(jwt, key, md, jwt->sig, jwt->sig_len);

    case VC_KTY_EC:
        if (jwt->alg < VC_ALG_ES256 || key->pkey == NULL) {
            return VC_ERROR;
        }

        return vc_jwt_verify_ecdsa(jwt, key, md);

    default:
        return VC_ERROR;
    }
}


static int
vc_jwt_verify_ecdsa(vc_jwt_t *jwt, const vc_key_t *key, const EVP_MD *md)
{
    ECDSA_SIG      *sig;
    BIGNUM         *r, *s;
    unsigned char   der[VC_JWT_ECDSA_DER], *p;
    int             len;

    /* JWS carries R || S, each the coordinate size (RFC 7518 3.4) */
    if (key->ec_size == 0 || key->ec_size > 66
        || jwt->sig_len != 2 * key->ec_size)
    {
        return VC_ERROR;
    }

    r = BN_bin2bn(jwt->sig, (int) key->ec_size, NULL);
    s = BN_bin2bn(jwt->sig + key->ec_size, (int) key->ec_size, NULL);
    sig = ECDSA_SIG_new();

    if (r == NULL || s == NULL || sig == NULL) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(sig);
        return VC_ERROR;
    }

    /* sig owns r and s from here */
    ECDSA_SIG_set0(sig, r, s);

    len = i2d_ECDSA_SIG(sig, NULL);
    if (len <= 0 || len > (int) sizeof(der)) {
        ECDSA_SIG_free(sig);
        return VC_ERROR;
    }

    p = der;
    len = i2d_ECDSA_SIG(sig, &p);
    ECDSA_SIG_free(sig);

    if (len <= 0) {
        return VC_ERROR;
    }

    return vc_jwt_verify_digest(jwt, key, md, der, (size_t) len);
}


/*
 * The signing input's digest checked against sig with the key's context
 * prepared for md (vc_keys_prepare()): the same checks as
 * EVP_DigestVerify(), which digests and calls the same provider function.
 */
static int
vc_jwt_verify_digest(vc_jwt_t *jwt, const vc_key_t *key, const EVP_MD *md,
    const unsigned char *sig, size_t sig_len)
{
    unsigned char   dgst[EVP_MAX_MD_SIZE];
    unsigned int    dlen;
    EVP_PKEY_CTX   *ctx;

    ctx = key->verify[vc_alg_digest(jwt->alg)];
    if (ctx == NULL) {
        return VC_ERROR;
    }

    if (EVP_Digest(jwt->signing_input, jwt->signing_input_len, dgst, &dlen,
                   md, NULL)
        != 1)
    {
        return VC_ERROR;
    }

    return EVP_PKEY_verify(ctx, sig, sig_len, dgst, dlen) == 1 ? VC_OK
                                                                : VC_ERROR;
}


/*
 * Decodes one base64url segment into buf and parses it as a JSON object.
 * Duplicate members are refused: two "alg" or two "sub" could be read
 * differently by another parser on the way.  NUL in strings is refused too
 * (no JSON_ALLOW_NUL), so that no claim is cut short by C strings.
 * Returns a new reference, or NULL.
 */
static json_t *
vc_jwt_json_segment(unsigned char *buf, const char *seg, size_t len)
{
    long     n;
    json_t  *v;

    n = vc_base64url_decode(buf, seg, len);
    if (n <= 0) {
        return NULL;
    }

    v = json_loadb((char *) buf, (size_t) n, JSON_REJECT_DUPLICATES, NULL);

    if (v != NULL && !json_is_object(v)) {
        json_decref(v);
        return NULL;
    }

    return v;
}


/*
 * The digests are fetched from the provider once per process and kept:
 * EVP_sha256() and its kin make every EVP_Digest() and HMAC() fetch them
 * again (the provider's implementation looked up by name) each call.
 */
static const EVP_MD *
vc_jwt_md(vc_alg_e alg)
{
    int                  i;

    static const char   *names[] = { "SHA256", "SHA384", "SHA512" };
    static EVP_MD       *fetched[3];

    switch (alg) {
    case VC_ALG_HS256:
    case VC_ALG_RS256:
    case VC_ALG_ES256:
        i = 0;
        break;
    case VC_ALG_HS384:
    case VC_ALG_RS384:
    case VC_ALG_ES384:
        i = 1;
        break;
    default:
        i = 2;
    }

    if (fetched[i] == NULL) {
        fetched[i] = EVP_MD_fetch(NULL, names[i], NULL);

        if (fetched[i] == NULL) {
            return i == 0 ? EVP_sha256() : i == 1 ? EVP_sha384()
                                                  : EVP_sha512();
        }
    }

    return fetched[i];
}


static int
vc_jwt_kid_eq(const vc_jwt_t *jwt, const vc_key_t *key)
{
    return key->kid && key->kid_len == jwt->kid_len
           && memcmp(key->kid, jwt->kid, jwt->kid_len) == 0;
}


static int
vc_jwt_match(json_t *v, const vc_require_t *req)
{
    json_t      *e;
    const char  *s, *name;
    char         num[32];
    char        *text;
    size_t       i, j, len;
    unsigned     words;
    int          ok;

    name = req->claim;
    words = strcmp(name, "scope") == 0 || strcmp(name, "scp") == 0;

    switch (json_typeof(v)) {

    case JSON_STRING:
        s = json_string_value(v);
        len = json_string_length(v);

        for (j = 0; j < req->nvalues; j++) {
            if (vc_jwt_str_eq(s, len, req->values[j])
                || (words && vc_jwt_match_words(s, len, req->values[j])))
            {
                return 1;
            }
        }

        return 0;

    case JSON_ARRAY:
        for (i = 0; i < json_array_size(v); i++) {
            e = json_array_get(v, i);

            if (!json_is_string(e)) {
                continue;
            }

            for (j = 0; j < req->nvalues; j++) {
                if (vc_jwt_str_eq(json_string_value(e), json_string_length(e),
                                  req->values[j]))
                {
                    return 1;
                }
            }
        }

        return 0;

    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
                 json_integer_value(v));

        for (j = 0; j < req->nvalues; j++) {
            if (strcmp(num, req->values[j]) == 0) {
                return 1;
            }
        }

        return 0;

    case JSON_TRUE:
    case JSON_FALSE:
        s = json_is_true(v) ? "true" : "false";

        for (j = 0; j < req->nvalues; j++) {
            if (strcmp(s, req->values[j]) == 0) {
                return 1;
            }
        }

        return 0;

    case JSON_REAL:
        text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text == NULL) {
            return 0;
        }

        ok = 0;

        for (j = 0; j < req->nvalues; j++) {
            if (strcmp(text, req->values[j]) == 0) {
                ok = 1;
                break;
            }
        }

        free(text);

        return ok;

    default:
        return 0;
    }
}


/* whether value is one of the space-separated words of s (RFC 6749 3.3) */

static int
vc_jwt_match_words(const char *s, size_t len, const char *value)
{
    size_t       vlen;
    const char  *end, *w, *sp;

    vlen = strlen(value);
    if (vlen == 0) {
        return 0;
    }

    end = s + len;

    for (w = s; w < end; w = sp + 1) {
        sp = memchr(w, ' ', end - w);
        if (sp == NULL) {
            sp = end;
        }

        if ((size_t) (sp - w) == vlen && memcmp(w, value, vlen) == 0) {
            return 1;
        }
    }

    return 0;
}


static int
vc_jwt_str_eq(const char *s, size_t len, const char *value)
{
    return strlen(value) == len && memcmp(s, value, len) == 0;
}


/* a + b, saturated: leeway comes from the configuration */

static int64_t
vc_jwt_add(int64_t a, int64_t b)
{
    int64_t  r;

    if (__builtin_add_overflow(a, b, &r)) {
        return b > 0 ? INT64_MAX : INT64_MIN;
    }

    return r;
}
