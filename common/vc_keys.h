/* vc_keys.h -- verification keys: PEM, HMAC secrets, JWK and JWKS */

#ifndef VC_KEYS_H
#define VC_KEYS_H

#include <openssl/evp.h>

#include "vc_common.h"


/* JWS algorithms (RFC 7518 section 3.1) that Vantage verifies */
typedef enum {
    VC_ALG_HS256 = 0,
    VC_ALG_HS384,
    VC_ALG_HS512,
    VC_ALG_RS256,
    VC_ALG_RS384,
    VC_ALG_RS512,
    VC_ALG_ES256,
    VC_ALG_ES384,
    VC_ALG_ES512,
    VC_ALG_COUNT,
    VC_ALG_NONE = -1            /* unknown, "none", or not stated */
} vc_alg_e;

#define VC_ALG_MASK_ALL  ((1u << VC_ALG_COUNT) - 1)

/*
 * The digest an algorithm signs with, 0: SHA-256, 1: SHA-384, 2: SHA-512,
 * an index of vc_key_t's verify[]: every family above lists its three
 * algorithms in that order.
 */
#define vc_alg_digest(alg)  ((unsigned) (alg) % 3)


typedef enum {
    VC_KTY_OCT = 1,             /* HMAC secret */
    VC_KTY_RSA,
    VC_KTY_EC
} vc_kty_e;


typedef struct {
    vc_kty_e        kty;
    /*
     * the algorithms this key may verify: for oct, HS256/384/512; for RSA,
     * RS256/384/512; for EC, the one ES algorithm of its curve (P-256 ->
     * ES256, P-384 -> ES384, P-521 -> ES512); narrowed to the single
     * algorithm of a JWK's "alg" member when it has one
     */
    unsigned        algs;
    char           *kid;        /* NUL-terminated, NULL when absent */
    size_t          kid_len;
    EVP_PKEY       *pkey;       /* RSA and EC */
    /*
     * RSA and EC: for each digest (vc_alg_digest()) of an algorithm in
     * algs, a context made ready by EVP_PKEY_verify_init() with its padding
     * and digest when the set is loaded, so that checking a token costs no
     * context, fetch or parameter work; NULL for the other digests.  A
     * verification writes into its context (OpenSSL keeps a scratch buffer
     * there): a set is used by one thread at a time, as in an nginx worker
     * process, which inherits the contexts over fork() like the keys.
     */
    EVP_PKEY_CTX   *verify[3];
    unsigned char  *secret;     /* oct */
    size_t          secret_len;
    size_t          ec_size;    /* EC: bytes of one coordinate: 32, 48, 66 */
} vc_key_t;


typedef struct {
    vc_key_t       *keys;
    size_t          nkeys;
    /* SHA-256 of the bytes the set was loaded from: equal in every process */
    unsigned char   digest[32];
} vc_keyset_t;


/*
 * Parses a key file's contents into ks (zeroed by the caller).  The format
 * is detected:
 *   "-----BEGIN PUBLIC KEY" / "-----BEGIN RSA PUBLIC KEY" / a certificate:
 *       one RSA or EC public key, no kid;
 *   "{" with a "keys" array: a JWKS; "{" with "kty": one JWK;
 *       RSA (n, e), EC (crv P-256/P-384/P-521, x, y) and oct (k) keys;
 *       keys whose "use" is present and is not "sig" are skipped, as are
 *       keys of other kty; private members are ignored;
 *   "base64:<standard base64>": an HMAC secret, encoded;
 *   anything else: an HMAC secret, raw bytes, one trailing "\n" or "\r\n"
 *       removed.
 * RSA keys shorter than 2048 bits and HMAC secrets shorter than 32 bytes are
 * refused (NIST SP 800-107 / RFC 7518 3.2).  A set with no usable key is an
 * error.  Returns VC_OK, or VC_ERROR with a reason (no key material in it)
 * in errstr.
 */
int vc_keyset_load(vc_keyset_t *ks, const unsigned char *data, size_t len,
    char *errstr, size_t errlen);

/* Frees what vc_keyset_load() allocated; ks may be zeroed or partly filled. */
void vc_keyset_free(vc_keyset_t *ks);

/* "HS256" ... "ES512" -> vc_alg_e; VC_ALG_NONE for anything else */
vc_alg_e vc_alg_by_name(const char *name, size_t len);
const char *vc_alg_name(vc_alg_e alg);


#endif /* VC_KEYS_H */
