/* vc_keys.c -- load PEM keys, HMAC secrets, JWKs and JWKS into EVP_PKEYs */

#define _GNU_SOURCE

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "vc_keys.h"


#define VC_HMAC_MIN_LEN   32
#define VC_RSA_MIN_BITS   2048
/* OpenSSL's own verification limit (OPENSSL_RSA_MAX_MODULUS_BITS) */
#define VC_RSA_MAX_BITS   16384

#define VC_ALG_BIT(a)     (1u << (a))
#define VC_ALGS_HS        (VC_ALG_BIT(VC_ALG_HS256) | VC_ALG_BIT(VC_ALG_HS384) \
                           | VC_ALG_BIT(VC_ALG_HS512))
#define VC_ALGS_RS        (VC_ALG_BIT(VC_ALG_RS256) | VC_ALG_BIT(VC_ALG_RS384) \
                           | VC_ALG_BIT(VC_ALG_RS512))

/* a JWK that is well formed but of no use to Vantage: skipped, not an error */
#define VC_KEY_SKIP       1


typedef struct {
    const char     *jwk;        /* JWK "crv" */
    const char     *ossl;       /* OpenSSL group name */
    vc_alg_e        alg;
    size_t          size;
} vc_curve_t;


static const char  *vc_alg_names[VC_ALG_COUNT] = {
    "HS256", "HS384", "HS512",
    "RS256", "RS384", "RS512",
    "ES256", "ES384", "ES512"
};


static const vc_curve_t  vc_curves[] = {
    { "P-256", "prime256v1", VC_ALG_ES256, 32 },
    { "P-384", "secp384r1",  VC_ALG_ES384, 48 },
    { "P-521", "secp521r1",  VC_ALG_ES512, 66 }
};

#define VC_NCURVES  (sizeof(vc_curves) / sizeof(vc_curves[0]))


static int vc_keys_load_pem(vc_keyset_t *ks, const unsigned char *data,
    size_t len, char *errstr, size_t errlen);
static int vc_keys_load_json(vc_keyset_t *ks, const unsigned char *data,
    size_t len, char *errstr, size_t errlen);
static int vc_keys_load_secret(vc_keyset_t *ks, const unsigned char *data,
    size_t len, unsigned b64, char *errstr, size_t errlen);
static int vc_keys_jwk(vc_key_t *key, json_t *jwk, const char **skip,
    char *errstr, size_t errlen);
static int vc_keys_jwk_rsa(vc_key_t *key, json_t *jwk, char *errstr,
    size_t errlen);
static int vc_keys_jwk_ec(vc_key_t *key, json_t *jwk, const char **skip,
    char *errstr, size_t errlen);
static int vc_keys_jwk_oct(vc_key_t *key, json_t *jwk, char *errstr,
    size_t errlen);
static unsigned char *vc_keys_jwk_member(json_t *jwk, const char *name,
    size_t *len, char *errstr, size_t errlen);
static int vc_keys_pkey(vc_key_t *key, EVP_PKEY *pkey, char *errstr,
    size_t errlen);
static int vc_keys_public_check(EVP_PKEY *pkey);
static int vc_keys_prepare(vc_key_t *key);
static const vc_curve_t *vc_keys_curve_by_jwk(const char *crv);
static void vc_keys_key_free(vc_key_t *key);
static void vc_keys_err(char *errstr, size_t errlen, const char *fmt, ...);
static int vc_keys_prefix(const unsigned char *data, size_t len,
    const char *prefix);


int
vc_keyset_load(vc_keyset_t *ks, const unsigned char *data, size_t len,
    char *errstr, size_t errlen)
{
    int     rc;
    size_t  i;

    if (errlen) {
        errstr[0] = '\0';
    }

    memset(ks, 0, sizeof(vc_keyset_t));

    if (EVP_Digest(data, len, ks->digest, NULL, EVP_sha256(), NULL) != 1) {
        vc_keys_err(errstr, errlen, "sha-256 failed");
        ERR_clear_error();
        return VC_ERROR;
    }

    /* leading white space before a PEM block or a JSON object */

    for (i = 0; i < len; i++) {
        if (data[i] != ' ' && data[i] != '\t' && data[i] != '\r'
            && data[i] != '\n')
        {
            break;
        }
    }

    /*
     * Whatever looks like a PEM block or a JSON object is parsed as such and
     * is never taken for an HMAC secret: a public key must not turn into a
     * shared secret because it failed to parse.
     */

    if (vc_keys_prefix(data + i, len - i, "-----BEGIN")) {
        rc = vc_keys_load_pem(ks, data + i, len - i, errstr, errlen);

    } else if (i < len && data[i] == '{') {
        rc = vc_keys_load_json(ks, data + i, len - i, errstr, errlen);

    } else if (vc_keys_prefix(data, len, "base64:")) {
        rc = vc_keys_load_secret(ks, data + 7, len - 7, 1, errstr, errlen);

    } else {
        rc = vc_keys_load_secret(ks, data, len, 0, errstr, errlen);
    }

    for (i = 0; rc == VC_OK && i < ks->nkeys; i++) {
        if (vc_keys_prepare(&ks->keys[i]) != VC_OK) {
            vc_keys_err(errstr, errlen, "cannot prepare key %zu for "
                        "verification", i + 1);
            rc = VC_ERROR;
        }
    }

    /* the OpenSSL error queue belongs to the caller: leave nothing behind */
    ERR_clear_error();

    if (rc != VC_OK) {
        vc_keyset_free(ks);
        return VC_ERROR;
    }

    return VC_OK;
}


void
vc_keyset_free(vc_keyset_t *ks)
{
    size_t  i;

    if (ks->keys) {
        for (i = 0; i < ks->nkeys; i++) {
            vc_keys_key_free(&ks->keys[i]);
        }

        free(ks->keys);
    }

    ks->keys = NULL;
    ks->nkeys = 0;
}


vc_alg_e
vc_alg_by_name(const char *name, size_t len)
{
    int  a;

    if (name == NULL || len != 5) {
        return VC_ALG_NONE;
    }

    for (a = 0; a < VC_ALG_COUNT; a++) {
        if (memcmp(name, vc_alg_names[a], 5) == 0) {
            return (vc_alg_e) a;
        }
    }

    return VC_ALG_NONE;
}


const char *
vc_alg_name(vc_alg_e alg)
{
    if (alg < 0 || alg >= VC_ALG_COUNT) {
        return "none";
    }

    return vc_alg_names[alg];
}


static int
vc_keys_load_pem(vc_keyset_t *ks, const unsigned char *data, size_t len,
    char *errstr, size_t errlen)
{
    BIO            *bio;
    X509           *x509;
    EVP_PKEY       *pkey;
    char           *name, *header;
    unsigned char  *der;
    const unsigned char  *p;
    long            derlen;
    int             rc;

    if (len > 0x7fffffff) {
        vc_keys_err(errstr, errlen, "PEM file too large");
        return VC_ERROR;
    }

    bio = BIO_new_mem_buf(data, (int) len);
    if (bio == NULL) {
        vc_keys_err(errstr, errlen, "out of memory");
        return VC_ERROR;
    }

    pkey = NULL;

    if (vc_keys_prefix(data, len, "-----BEGIN PUBLIC KEY-----")) {
        pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);

    } else if (vc_keys_prefix(data, len, "-----BEGIN CERTIFICATE-----")) {
        x509 = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (x509) {
            pkey = X509_get_pubkey(x509);
            X509_free(x509);
        }

    } else if (vc_keys_prefix(data, len, "-----BEGIN RSA PUBLIC KEY-----")) {
        /*
         * PKCS#1 RSAPublicKey: PEM_read_bio_RSAPublicKey() is deprecated in
         * OpenSSL 3.0; d2i_PublicKey() reads the same DER into an EVP_PKEY
         */
        name = NULL;
        header = NULL;
        der = NULL;

        if (PEM_read_bio(bio, &name, &header, &der, &derlen) == 1) {
            if (strcmp(name, "RSA PUBLIC KEY") == 0) {
                p = der;
                pkey = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, derlen);
                if (pkey && p != der + derlen) {
                    EVP_PKEY_free(pkey);
                    pkey = NULL;
                }
            }

            OPENSSL_free(name);
            OPENSSL_free(header);
            OPENSSL_free(der);
        }

    } else {
        BIO_free(bio);
        vc_keys_err(errstr, errlen,
                    "unsupported PEM block (a public key or a certificate "
                    "is expected)");
        return VC_ERROR;
    }

    BIO_free(bio);

    if (pkey == NULL) {
        vc_keys_err(errstr, errlen, "invalid PEM public key");
        return VC_ERROR;
    }

    ks->keys = calloc(1, sizeof(vc_key_t));
    if (ks->keys == NULL) {
        EVP_PKEY_free(pkey);
        vc_keys_err(errstr, errlen, "out of memory");
        return VC_ERROR;
    }

    rc = vc_keys_pkey(&ks->keys[0], pkey, errstr, errlen);
    if (rc != VC_OK) {
        return VC_ERROR;
    }

    ks->nkeys = 1;

    return VC_OK;
}


static int
vc_keys_load_json(vc_keyset_t *ks, const unsigned char *data, size_t len,
    char *errstr, size_t errlen)
{
    json_t        *root, *keys, *jwk;
    json_error_t   err;
    const char    *skip, *last_skip;
    char           reason[VC_ERRSTR_LEN];
    size_t         i, n, last;
    int            rc, single;

    root = json_loadb((const char *) data, len, JSON_REJECT_DUPLICATES, &err);
    if (root == NULL) {
        vc_keys_err(errstr, errlen, "invalid JSON at line %d column %d",
                    err.line, err.column);
        return VC_ERROR;
    }

    if (!json_is_object(root)) {
        json_decref(root);
        vc_keys_err(errstr, errlen, "JSON key file is not an object");
        return VC_ERROR;
    }

    keys = json_object_get(root, "keys");

    if (keys) {
        if (!json_is_array(keys)) {
            json_decref(root);
            vc_keys_err(errstr, errlen, "JWKS \"keys\" is not an array");
            return VC_ERROR;
        }

        n = json_array_size(keys);
        single = 0;

    } else if (json_object_get(root, "kty")) {
        n = 1;
        single = 1;

    } else {
        json_decref(root);
        vc_keys_err(errstr, errlen, "JSON key file has neither \"keys\" "
                    "nor \"kty\"");
        return VC_ERROR;
    }

    if (n == 0) {
        json_decref(root);
        vc_keys_err(errstr, errlen, "JWKS has no keys");
        return VC_ERROR;
    }

    ks->keys = calloc(n, sizeof(vc_key_t));
    if (ks->keys == NULL) {
        json_decref(root);
        vc_keys_err(errstr, errlen, "out of memory");
        return VC_ERROR;
    }

    last_skip = NULL;
    last = 0;

    for (i = 0; i < n; i++) {
        jwk = single ? root : json_array_get(keys, i);
        skip = NULL;

        rc = vc_keys_jwk(&ks->keys[ks->nkeys], jwk, &skip, reason,
                         sizeof(reason));

        if (rc == VC_ERROR) {
            json_decref(root);

            if (single) {
                vc_keys_err(errstr, errlen, "JWK: %s", reason);

            } else {
                /* counted from 1, as people count lines */
                vc_keys_err(errstr, errlen, "JWKS key %zu: %s", i + 1,
                            reason);
            }

            return VC_ERROR;
        }

        if (rc == VC_KEY_SKIP) {
            if (skip) {
                last_skip = skip;
                last = i + 1;
            }

            continue;
        }

        ks->nkeys++;
    }

    json_decref(root);

    if (ks->nkeys == 0) {
        if (last_skip && single) {
            vc_keys_err(errstr, errlen, "JWK: %s", last_skip);

        } else if (last_skip) {
            vc_keys_err(errstr, errlen, "JWKS has no usable key (key %zu: %s)",
                        last, last_skip);

        } else {
            vc_keys_err(errstr, errlen, "%s has no usable signature key",
                        single ? "JWK" : "JWKS");
        }

        return VC_ERROR;
    }

    return VC_OK;
}


/*
 * One JWK into key.  Returns VC_OK, VC_KEY_SKIP (with *skip set to a reason
 * when the key is of a known type but cannot be used), or VC_ERROR.
 */

static int
vc_keys_jwk(vc_key_t *key, json_t *jwk, const char **skip, char *errstr,
    size_t errlen)
{
    json_t      *kty, *use, *kid, *alg;
    const char  *s;
    vc_alg_e     a;
    int          rc;

    if (!json_is_object(jwk)) {
        vc_keys_err(errstr, errlen, "not an object");
        return VC_ERROR;
    }

    kty = json_object_get(jwk, "kty");
    if (!json_is_string(kty)) {
        vc_keys_err(errstr, errlen, "\"kty\" missing or not a string");
        return VC_ERROR;
    }

    use = json_object_get(jwk, "use");
    if (use && !json_is_string(use)) {
        vc_keys_err(errstr, errlen, "\"use\" is not a string");
        return VC_ERROR;
    }

    kid = json_object_get(jwk, "kid");
    if (kid && !json_is_string(kid)) {
        vc_keys_err(errstr, errlen, "\"kid\" is not a string");
        return VC_ERROR;
    }

    alg = json_object_get(jwk, "alg");
    if (alg && !json_is_string(alg)) {
        vc_keys_err(errstr, errlen, "\"alg\" is not a string");
        return VC_ERROR;
    }

    s = json_string_value(kty);

    if (strcmp(s, "RSA") != 0 && strcmp(s, "EC") != 0
        && strcmp(s, "oct") != 0)
    {
        /* OKP, or anything newer: not ours */
        return VC_KEY_SKIP;
    }

    if (use && strcmp(json_string_value(use), "sig") != 0) {
        return VC_KEY_SKIP;
    }

    a = VC_ALG_NONE;

    if (alg) {
        a = vc_alg_by_name(json_string_value(alg), json_string_length(alg));

        if (a == VC_ALG_NONE) {
            /* PS256, EdDSA, RSA-OAEP, ...: a real key Vantage cannot use */
            *skip = "unsupported \"alg\"";
            return VC_KEY_SKIP;
        }
    }

    if (s[0] == 'R') {
        key->kty = VC_KTY_RSA;
        rc = vc_keys_jwk_rsa(key, jwk, errstr, errlen);

    } else if (s[0] == 'E') {
        key->kty = VC_KTY_EC;
        rc = vc_keys_jwk_ec(key, jwk, skip, errstr, errlen);

    } else {
        key->kty = VC_KTY_OCT;
        rc = vc_keys_jwk_oct(key, jwk, errstr, errlen);
    }

    if (rc != VC_OK) {
        vc_keys_key_free(key);
        return rc;
    }

    if (a != VC_ALG_NONE) {
        if (!(key->algs & VC_ALG_BIT(a))) {
            vc_keys_key_free(key);
            vc_keys_err(errstr, errlen, "\"alg\" %s does not match the key",
                        vc_alg_names[a]);
            return VC_ERROR;
        }

        key->algs = VC_ALG_BIT(a);
    }

    if (kid) {
        key->kid_len = json_string_length(kid);
        key->kid = malloc(key->kid_len + 1);
        if (key->kid == NULL) {
            vc_keys_key_free(key);
            vc_keys_err(errstr, errlen, "out of memory");
            return VC_ERROR;
        }

        memcpy(key->kid, json_string_value(kid), key->kid_len);
        key->kid[key->kid_len] = '\0';
    }

    return VC_OK;
}


static int
vc_keys_jwk_rsa(vc_key_t *key, json_t *jwk, char *errstr, size_t errlen)
{
    EVP_PKEY_CTX    *ctx;
    EVP_PKEY        *pkey;
    OSSL_PARAM_BLD  *bld;
    OSSL_PARAM      *params;
    BIGNUM          *n, *e;
    unsigned char   *nb, *eb;
    size_t           nlen, elen;
    int              bits, rc;

    nb = vc_keys_jwk_member(jwk, "n", &nlen, errstr, errlen);
    if (nb == NULL) {
        return VC_ERROR;
    }

    eb = vc_keys_jwk_member(jwk, "e", &elen, errstr, errlen);
    if (eb == NULL) {
        free(nb);
        return VC_ERROR;
    }

    n = BN_bin2bn(nb, (int) nlen, NULL);
    e = BN_bin2bn(eb, (int) elen, NULL);
    free(nb);
    free(eb);

    ctx = NULL;
    bld = NULL;
    params = NULL;
    pkey = NULL;
    rc = VC_ERROR;

    if (n == NULL || e == NULL) {
        vc_keys_err(errstr, errlen, "out of memory");
        goto done;
    }

    bits = BN_num_bits(n);

    if (bits < VC_RSA_MIN_BITS) {
        vc_keys_err(errstr, errlen, "RSA key shorter than %d bits",
                    VC_RSA_MIN_BITS);
        goto done;
    }

    if (bits > VC_RSA_MAX_BITS) {
        vc_keys_err(errstr, errlen, "RSA key longer than %d bits",
                    VC_RSA_MAX_BITS);
        goto done;
    }

    /* OpenSSL refuses exponents above 64 bits for large moduli anyway */
    if (!BN_is_odd(e) || BN_is_one(e) || BN_num_bits(e) > 64) {
        vc_keys_err(errstr, errlen, "invalid RSA public exponent");
        goto done;
    }

    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n)
        || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e)
        || (params = OSSL_PARAM_BLD_to_param(bld)) == NULL)
    {
        vc_keys_err(errstr, errlen, "out of memory");
        goto done;
    }

    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (ctx == NULL
        || EVP_PKEY_fromdata_init(ctx) != 1
        || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
    {
        vc_keys_err(errstr, errlen, "invalid RSA key");
        goto done;
    }

    if (vc_keys_public_check(pkey) != VC_OK) {
        vc_keys_err(errstr, errlen, "invalid RSA key");
        goto done;
    }

    key->pkey = pkey;
    key->algs = VC_ALGS_RS;
    pkey = NULL;
    rc = VC_OK;

done:

    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);

    return rc;
}


static int
vc_keys_jwk_ec(vc_key_t *key, json_t *jwk, const char **skip, char *errstr,
    size_t errlen)
{
    EVP_PKEY_CTX      *ctx;
    EVP_PKEY          *pkey;
    OSSL_PARAM_BLD    *bld;
    OSSL_PARAM        *params;
    json_t            *crv;
    unsigned char     *x, *y;
    unsigned char      pub[1 + 2 * 66];
    size_t             xlen, ylen;
    const vc_curve_t  *c;
    int                rc;

    crv = json_object_get(jwk, "crv");
    if (!json_is_string(crv)) {
        vc_keys_err(errstr, errlen, "\"crv\" missing or not a string");
        return VC_ERROR;
    }

    c = vc_keys_curve_by_jwk(json_string_value(crv));
    if (c == NULL) {
        /* secp256k1 and the like: well formed, not supported */
        *skip = "unsupported curve";
        return VC_KEY_SKIP;
    }

    x = vc_keys_jwk_member(jwk, "x", &xlen, errstr, errlen);
    if (x == NULL) {
        return VC_ERROR;
    }

    y = vc_keys_jwk_member(jwk, "y", &ylen, errstr, errlen);
    if (y == NULL) {
        free(x);
        return VC_ERROR;
    }

    /* RFC 7518 6.2.1.2: the full coordinate size, leading zeros kept */
    if (xlen != c->size || ylen != c->size) {
        free(x);
        free(y);
        vc_keys_err(errstr, errlen, "EC coordinate of the wrong length");
        return VC_ERROR;
    }

    pub[0] = 0x04;
    memcpy(pub + 1, x, c->size);
    memcpy(pub + 1 + c->size, y, c->size);
    free(x);
    free(y);

    ctx = NULL;
    params = NULL;
    pkey = NULL;
    rc = VC_ERROR;

    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL
        || !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                            c->ossl, 0)
        || !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                             pub, 1 + 2 * c->size)
        || (params = OSSL_PARAM_BLD_to_param(bld)) == NULL)
    {
        vc_keys_err(errstr, errlen, "out of memory");
        goto done;
    }

    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (ctx == NULL
        || EVP_PKEY_fromdata_init(ctx) != 1
        || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1
        || vc_keys_public_check(pkey) != VC_OK)
    {
        vc_keys_err(errstr, errlen, "EC point not on the curve");
        goto done;
    }

    key->pkey = pkey;
    key->algs = VC_ALG_BIT(c->alg);
    key->ec_size = c->size;
    pkey = NULL;
    rc = VC_OK;

done:

    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);

    return rc;
}


static int
vc_keys_jwk_oct(vc_key_t *key, json_t *jwk, char *errstr, size_t errlen)
{
    unsigned char  *k;
    size_t          klen;

    k = vc_keys_jwk_member(jwk, "k", &klen, errstr, errlen);
    if (k == NULL) {
        return VC_ERROR;
    }

    if (klen < VC_HMAC_MIN_LEN) {
        OPENSSL_clear_free(k, klen);
        vc_keys_err(errstr, errlen, "HMAC secret shorter than %d bytes",
                    VC_HMAC_MIN_LEN);
        return VC_ERROR;
    }

    key->secret = k;
    key->secret_len = klen;
    key->algs = VC_ALGS_HS;

    return VC_OK;
}


/* a base64url member, decoded into a malloc()ed buffer of at least 1 byte */

static unsigned char *
vc_keys_jwk_member(json_t *jwk, const char *name, size_t *len, char *errstr,
    size_t errlen)
{
    json_t         *v;
    unsigned char  *buf;
    size_t          slen;
    long            n;

    v = json_object_get(jwk, name);
    if (!json_is_string(v)) {
        vc_keys_err(errstr, errlen, "\"%s\" missing or not a string", name);
        return NULL;
    }

    slen = json_string_length(v);
    if (slen == 0) {
        vc_keys_err(errstr, errlen, "\"%s\" is empty", name);
        return NULL;
    }

    buf = malloc(vc_base64url_decoded_len(slen));
    if (buf == NULL) {
        vc_keys_err(errstr, errlen, "out of memory");
        return NULL;
    }

    n = vc_base64url_decode(buf, json_string_value(v), slen);
    if (n <= 0) {
        OPENSSL_clear_free(buf, vc_base64url_decoded_len(slen));
        vc_keys_err(errstr, errlen, "\"%s\" is not valid base64url", name);
        return NULL;
    }

    *len = (size_t) n;

    return buf;
}


static int
vc_keys_load_secret(vc_keyset_t *ks, const unsigned char *data, size_t len,
    unsigned b64, char *errstr, size_t errlen)
{
    unsigned char  *secret, *tmp;
    size_t          i, n, pad;
    long            dlen;
    unsigned char   ch;

    if (len && data[len - 1] == '\n') {
        len--;
        if (len && data[len - 1] == '\r') {
            len--;
        }
    }

    if (b64) {
        /*
         * Standard base64, padded or not: translated to base64url and
         * decoded by vc_base64url_decode(), which keeps it canonical.
         */
        pad = 0;
        while (len && data[len - 1] == '=' && pad < 2) {
            len--;
            pad++;
        }

        if (pad && (len + pad) % 4) {
            vc_keys_err(errstr, errlen, "invalid base64 secret");
            return VC_ERROR;
        }

        tmp = malloc(len + 1);
        if (tmp == NULL) {
            vc_keys_err(errstr, errlen, "out of memory");
            return VC_ERROR;
        }

        for (i = 0; i < len; i++) {
            ch = data[i];

            if (ch == '-' || ch == '_') {
                OPENSSL_clear_free(tmp, len + 1);
                vc_keys_err(errstr, errlen, "invalid base64 secret");
                return VC_ERROR;
            }

            tmp[i] = ch == '+' ? '-' : ch == '/' ? '_' : ch;
        }

        secret = malloc(vc_base64url_decoded_len(len) + 1);
        if (secret == NULL) {
            OPENSSL_clear_free(tmp, len + 1);
            vc_keys_err(errstr, errlen, "out of memory");
            return VC_ERROR;
        }

        dlen = vc_base64url_decode(secret, (const char *) tmp, len);
        OPENSSL_clear_free(tmp, len + 1);

        if (dlen < 0) {
            OPENSSL_clear_free(secret, vc_base64url_decoded_len(len) + 1);
            vc_keys_err(errstr, errlen, "invalid base64 secret");
            return VC_ERROR;
        }

        n = (size_t) dlen;

        if (n < VC_HMAC_MIN_LEN) {
            OPENSSL_clear_free(secret, vc_base64url_decoded_len(len) + 1);
            vc_keys_err(errstr, errlen, "HMAC secret shorter than %d bytes",
                        VC_HMAC_MIN_LEN);
            return VC_ERROR;
        }

    } else {
        if (len < VC_HMAC_MIN_LEN) {
            vc_keys_err(errstr, errlen, "HMAC secret shorter than %d bytes",
                        VC_HMAC_MIN_LEN);
            return VC_ERROR;
        }

        secret = malloc(len);
        if (secret == NULL) {
            vc_keys_err(errstr, errlen, "out of memory");
            return VC_ERROR;
        }

        memcpy(secret, data, len);
        n = len;
    }

    ks->keys = calloc(1, sizeof(vc_key_t));
    if (ks->keys == NULL) {
        OPENSSL_clear_free(secret, n);
        vc_keys_err(errstr, errlen, "out of memory");
        return VC_ERROR;
    }

    ks->keys[0].kty = VC_KTY_OCT;
    ks->keys[0].algs = VC_ALGS_HS;
    ks->keys[0].secret = secret;
    ks->keys[0].secret_len = n;
    ks->nkeys = 1;

    return VC_OK;
}


/* takes pkey over, freeing it on error; key is in ks->keys and set there */

static int
vc_keys_pkey(vc_key_t *key, EVP_PKEY *pkey, char *errstr, size_t errlen)
{
    char     group[64];
    size_t   i, glen;
    int      bits;

    if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA) {
        bits = EVP_PKEY_get_bits(pkey);

        if (bits < VC_RSA_MIN_BITS) {
            EVP_PKEY_free(pkey);
            vc_keys_err(errstr, errlen, "RSA key shorter than %d bits",
                        VC_RSA_MIN_BITS);
            return VC_ERROR;
        }

        if (bits > VC_RSA_MAX_BITS) {
            EVP_PKEY_free(pkey);
            vc_keys_err(errstr, errlen, "RSA key longer than %d bits",
                        VC_RSA_MAX_BITS);
            return VC_ERROR;
        }

        key->kty = VC_KTY_RSA;
        key->algs = VC_ALGS_RS;
        key->pkey = pkey;

        return VC_OK;
    }

    if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_EC) {
        if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME,
                                           group, sizeof(group), &glen)
            == 1)
        {
            for (i = 0; i < VC_NCURVES; i++) {
                if (strcmp(group, vc_curves[i].ossl) == 0) {
                    break;
                }
            }

            if (i < VC_NCURVES) {
                if (vc_keys_public_check(pkey) != VC_OK) {
                    EVP_PKEY_free(pkey);
                    vc_keys_err(errstr, errlen, "EC point not on the curve");
                    return VC_ERROR;
                }

                key->kty = VC_KTY_EC;
                key->algs = VC_ALG_BIT(vc_curves[i].alg);
                key->ec_size = vc_curves[i].size;
                key->pkey = pkey;

                return VC_OK;
            }
        }

        EVP_PKEY_free(pkey);
        vc_keys_err(errstr, errlen,
                    "unsupported EC curve (P-256, P-384 or P-521 expected)");
        return VC_ERROR;
    }

    EVP_PKEY_free(pkey);
    vc_keys_err(errstr, errlen,
                "unsupported key type (RSA or EC expected)");

    return VC_ERROR;
}


static int
vc_keys_public_check(EVP_PKEY *pkey)
{
    EVP_PKEY_CTX  *ctx;
    int            rc;

    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (ctx == NULL) {
        return VC_ERROR;
    }

    rc = EVP_PKEY_public_check(ctx);
    EVP_PKEY_CTX_free(ctx);

    return rc == 1 ? VC_OK : VC_ERROR;
}


/*
 * The verification contexts of an RSA or EC key, once its algorithms are
 * final.  EVP_DigestVerifyInit() per token would create a context, fetch
 * the signature algorithm and set the padding and digest again each time:
 * about 3.5 us of a 25 us RS256 check here.
 */
static int
vc_keys_prepare(vc_key_t *key)
{
    int                   a;
    unsigned              d;
    EVP_PKEY_CTX         *ctx;

    static const char    *digests[] = { "SHA256", "SHA384", "SHA512" };

    if (key->pkey == NULL) {
        return VC_OK;
    }

    for (a = 0; a < VC_ALG_COUNT; a++) {
        d = vc_alg_digest(a);

        if (!(key->algs & VC_ALG_BIT(a)) || key->verify[d] != NULL) {
            continue;
        }

        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key->pkey, NULL);
        if (ctx == NULL) {
            return VC_ERROR;
        }

        key->verify[d] = ctx;

        if (EVP_PKEY_verify_init(ctx) != 1
            || (key->kty == VC_KTY_RSA
                && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1)
            || EVP_PKEY_CTX_set_signature_md(ctx,
                                   EVP_get_digestbyname(digests[d])) != 1)
        {
            return VC_ERROR;
        }
    }

    return VC_OK;
}


static const vc_curve_t *
vc_keys_curve_by_jwk(const char *crv)
{
    size_t  i;

    for (i = 0; i < VC_NCURVES; i++) {
        if (strcmp(crv, vc_curves[i].jwk) == 0) {
            return &vc_curves[i];
        }
    }

    return NULL;
}


static void
vc_keys_key_free(vc_key_t *key)
{
    free(key->kid);
    EVP_PKEY_CTX_free(key->verify[0]);
    EVP_PKEY_CTX_free(key->verify[1]);
    EVP_PKEY_CTX_free(key->verify[2]);
    EVP_PKEY_free(key->pkey);

    if (key->secret) {
        OPENSSL_clear_free(key->secret, key->secret_len);
    }

    memset(key, 0, sizeof(vc_key_t));
}


static void
vc_keys_err(char *errstr, size_t errlen, const char *fmt, ...)
{
    va_list  args;

    if (errstr == NULL || errlen == 0) {
        return;
    }

    va_start(args, fmt);
    vsnprintf(errstr, errlen, fmt, args);
    va_end(args);
}


static int
vc_keys_prefix(const unsigned char *data, size_t len, const char *prefix)
{
    size_t  n;

    n = strlen(prefix);

    return len >= n && memcmp(data, prefix, n) == 0;
}
