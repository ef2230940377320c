/* test_vc_keys.c -- key loading: PEM, certificates, JWK, JWKS, HMAC secrets */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vc_keys.h"
#include "fixtures.h"


#define BIT(a)    (1u << (a))
#define HS_ALL    (BIT(VC_ALG_HS256) | BIT(VC_ALG_HS384) | BIT(VC_ALG_HS512))
#define RS_ALL    (BIT(VC_ALG_RS256) | BIT(VC_ALG_RS384) | BIT(VC_ALG_RS512))


static char  errstr[VC_ERRSTR_LEN];


/* loads from an exact-size heap copy, so that ASan sees any over-read */

static int
load(vc_keyset_t *ks, const char *data, size_t len)
{
    unsigned char  *copy;
    int             rc;

    copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, data, len);

    memset(ks, 0, sizeof(vc_keyset_t));
    memset(errstr, 'x', sizeof(errstr));

    rc = vc_keyset_load(ks, copy, len, errstr, sizeof(errstr));

    free(copy);

    if (rc == VC_OK) {
        assert_true(ks->nkeys > 0);
        assert_non_null(ks->keys);

    } else {
        /* nothing left behind on failure */
        assert_int_equal(ks->nkeys, 0);
        assert_null(ks->keys);
    }

    return rc;
}


static void
expect_error(const char *data, size_t len, const char *reason)
{
    vc_keyset_t  ks;

    assert_int_equal(load(&ks, data, len), VC_ERROR);
    assert_string_equal(errstr, reason);
    vc_keyset_free(&ks);
}

#define EXPECT_ERROR(lit, reason)  expect_error(lit, sizeof(lit) - 1, reason)


static const vc_key_t *
find_kid(const vc_keyset_t *ks, const char *kid)
{
    size_t  i;

    for (i = 0; i < ks->nkeys; i++) {
        if (ks->keys[i].kid && strcmp(ks->keys[i].kid, kid) == 0) {
            assert_int_equal(ks->keys[i].kid_len, strlen(kid));
            return &ks->keys[i];
        }
    }

    fail_msg("no key \"%s\"", kid);

    return NULL;
}


static void
test_pem_spki(void **state)
{
    vc_keyset_t  ks;

    assert_int_equal(load(&ks, FX_RSA1_PEM, sizeof(FX_RSA1_PEM) - 1), VC_OK);
    assert_int_equal(ks.nkeys, 1);
    assert_int_equal(ks.keys[0].kty, VC_KTY_RSA);
    assert_int_equal(ks.keys[0].algs, RS_ALL);
    assert_null(ks.keys[0].kid);
    assert_non_null(ks.keys[0].pkey);
    assert_null(ks.keys[0].secret);
    /* digest from Python's hashlib */
    assert_memory_equal(ks.digest, FX_RSA1_PEM_SHA256, 32);
    vc_keyset_free(&ks);
    assert_int_equal(ks.nkeys, 0);
    assert_null(ks.keys);

    /* leading white space is fine */
    assert_int_equal(load(&ks, "\n\n" FX_RSA1_PEM,
                          sizeof("\n\n" FX_RSA1_PEM) - 1), VC_OK);
    assert_int_equal(ks.keys[0].kty, VC_KTY_RSA);
    vc_keyset_free(&ks);
}


static void
test_pem_pkcs1_and_cert(void **state)
{
    vc_keyset_t  ks;

    assert_int_equal(load(&ks, FX_RSA1_PKCS1_PEM,
                          sizeof(FX_RSA1_PKCS1_PEM) - 1), VC_OK);
    assert_int_equal(ks.nkeys, 1);
    assert_int_equal(ks.keys[0].kty, VC_KTY_RSA);
    assert_int_equal(ks.keys[0].algs, RS_ALL);
    vc_keyset_free(&ks);

    assert_int_equal(load(&ks, FX_RSA1_CERT_PEM,
                          sizeof(FX_RSA1_CERT_PEM) - 1), VC_OK);
    assert_int_equal(ks.nkeys, 1);
    assert_int_equal(ks.keys[0].kty, VC_KTY_RSA);
    vc_keyset_free(&ks);
}


static void
test_pem_ec(void **state)
{
    vc_keyset_t  ks;

    assert_int_equal(load(&ks, FX_EC256_PEM, sizeof(FX_EC256_PEM) - 1), VC_OK);
    assert_int_equal(ks.nkeys, 1);
    assert_int_equal(ks.keys[0].kty, VC_KTY_EC);
    assert_int_equal(ks.keys[0].algs, BIT(VC_ALG_ES256));
    assert_int_equal(ks.keys[0].ec_size, 32);
    vc_keyset_free(&ks);
}


static void
test_pem_errors(void **state)
{
    EXPECT_ERROR(FX_RSA_SHORT_PEM, "RSA key shorter than 2048 bits");
    EXPECT_ERROR(FX_EC224_PEM,
                 "unsupported EC curve (P-256, P-384 or P-521 expected)");
    EXPECT_ERROR(FX_ED25519_PEM, "unsupported key type (RSA or EC expected)");
    EXPECT_ERROR(FX_RSA1_PRIVATE_PEM, "unsupported PEM block (a public key "
                 "or a certificate is expected)");
    EXPECT_ERROR("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                 "invalid PEM public key");
    EXPECT_ERROR("-----BEGIN PUBLIC KEY-----\n", "invalid PEM public key");
    EXPECT_ERROR("-----BEGIN RSA PUBLIC KEY-----\nMAA=\n"
                 "-----END RSA PUBLIC KEY-----\n", "invalid PEM public key");
    EXPECT_ERROR("-----BEGIN CERTIFICATE-----\nMAA=\n"
                 "-----END CERTIFICATE-----\n", "invalid PEM public key");
    /* a PEM that fails to parse never becomes an HMAC secret */
    EXPECT_ERROR("-----BEGIN SOMETHING ELSE-----xxxxxxxxxxxxxxxxxxxxxxxxxxx",
                 "unsupported PEM block (a public key or a certificate "
                 "is expected)");
}


static void
test_jwks_all(void **state)
{
    vc_keyset_t      ks;
    const vc_key_t  *k;

    assert_int_equal(load(&ks, FX_JWKS_ALL, sizeof(FX_JWKS_ALL) - 1), VC_OK);

    /* OKP and the "enc" key skipped */
    assert_int_equal(ks.nkeys, 6);

    k = find_kid(&ks, "rsa1");
    assert_int_equal(k->kty, VC_KTY_RSA);
    assert_int_equal(k->algs, BIT(VC_ALG_RS256));      /* narrowed by alg */

    k = find_kid(&ks, "rsa2");
    assert_int_equal(k->kty, VC_KTY_RSA);
    assert_int_equal(k->algs, RS_ALL);

    k = find_kid(&ks, "ec256");
    assert_int_equal(k->kty, VC_KTY_EC);
    assert_int_equal(k->algs, BIT(VC_ALG_ES256));
    assert_int_equal(k->ec_size, 32);

    k = find_kid(&ks, "ec384");
    assert_int_equal(k->algs, BIT(VC_ALG_ES384));
    assert_int_equal(k->ec_size, 48);

    k = find_kid(&ks, "ec521");
    assert_int_equal(k->algs, BIT(VC_ALG_ES512));
    assert_int_equal(k->ec_size, 66);

    k = find_kid(&ks, "hs");
    assert_int_equal(k->kty, VC_KTY_OCT);
    assert_int_equal(k->algs, HS_ALL);
    assert_int_equal(k->secret_len, FX_SECRET_LEN);
    assert_memory_equal(k->secret, FX_SECRET, FX_SECRET_LEN);
    assert_null(k->pkey);

    vc_keyset_free(&ks);
    /* twice is harmless */
    vc_keyset_free(&ks);
}


static void
test_jwk_single(void **state)
{
    vc_keyset_t  ks;

    assert_int_equal(load(&ks, FX_JWK_RSA1, sizeof(FX_JWK_RSA1) - 1), VC_OK);
    assert_int_equal(ks.nkeys, 1);
    assert_string_equal(ks.keys[0].kid, "rsa1");
    assert_int_equal(ks.keys[0].algs, RS_ALL);
    vc_keyset_free(&ks);

    assert_int_equal(load(&ks, FX_JWK_OCT, sizeof(FX_JWK_OCT) - 1), VC_OK);
    assert_int_equal(ks.nkeys, 1);
    assert_int_equal(ks.keys[0].kty, VC_KTY_OCT);
    assert_int_equal(ks.keys[0].algs, BIT(VC_ALG_HS256));
    assert_memory_equal(ks.keys[0].secret, FX_SECRET, FX_SECRET_LEN);
    vc_keyset_free(&ks);

    /* private members ignored */
    assert_int_equal(load(&ks, FX_JWK_RSA1_PRIVATE,
                          sizeof(FX_JWK_RSA1_PRIVATE) - 1), VC_OK);
    assert_int_equal(ks.nkeys, 1);
    vc_keyset_free(&ks);
}


static void
test_jwk_errors(void **state)
{
    EXPECT_ERROR(FX_JWK_RSA_SHORT,
                 "JWKS key 2: RSA key shorter than 2048 bits");
    EXPECT_ERROR(FX_JWK_EC_BAD_POINT, "JWKS key 1: EC point not on the curve");
    EXPECT_ERROR(FX_JWK_ALG_MISMATCH,
                 "JWKS key 2: \"alg\" ES256 does not match the key");
    EXPECT_ERROR(FX_JWK_EC_ALG_MISMATCH,
                 "JWK: \"alg\" ES256 does not match the key");
    EXPECT_ERROR(FX_JWK_BAD_B64, "JWK: \"n\" is not valid base64url");
    EXPECT_ERROR(FX_JWK_EC_SHORT_X, "JWK: EC coordinate of the wrong length");
    EXPECT_ERROR(FX_JWK_OCT_SHORT, "JWK: HMAC secret shorter than 32 bytes");
    EXPECT_ERROR(FX_JWK_NO_E, "JWKS key 1: \"e\" missing or not a string");
    EXPECT_ERROR(FX_JWKS_NONE_USABLE, "JWKS has no usable signature key");
    EXPECT_ERROR(FX_JWKS_P256K, "JWKS has no usable key (key 1: unsupported "
                 "curve)");

    EXPECT_ERROR("{\"keys\": [{\"kty\": \"oct\", \"k\": \"\"}]}",
                 "JWKS key 1: \"k\" is empty");
    EXPECT_ERROR("{\"keys\": [{\"kty\": \"oct\", \"k\": 5}]}",
                 "JWKS key 1: \"k\" missing or not a string");
    EXPECT_ERROR("{\"kty\": \"oct\", \"k\": \"AAAA\", \"kid\": 1}",
                 "JWK: \"kid\" is not a string");
    EXPECT_ERROR("{\"kty\": \"oct\", \"k\": \"AAAA\", \"use\": true}",
                 "JWK: \"use\" is not a string");
    EXPECT_ERROR("{\"kty\": \"oct\", \"k\": \"AAAA\", \"alg\": [1]}",
                 "JWK: \"alg\" is not a string");
    EXPECT_ERROR("{\"kty\": \"EC\", \"x\": \"AAAA\"}",
                 "JWK: \"crv\" missing or not a string");
    EXPECT_ERROR("{\"keys\": [{\"kty\": 1}]}",
                 "JWKS key 1: \"kty\" missing or not a string");
    EXPECT_ERROR("{\"keys\": [1]}", "JWKS key 1: not an object");
    EXPECT_ERROR("{\"keys\": {}}", "JWKS \"keys\" is not an array");
    EXPECT_ERROR("{\"keys\": []}", "JWKS has no keys");
    EXPECT_ERROR("{}", "JSON key file has neither \"keys\" nor \"kty\"");
    EXPECT_ERROR("{\"kty\": \"OKP\"}", "JWK has no usable signature key");
    EXPECT_ERROR("{\"kty\": \"RSA\", \"alg\": \"PS256\"}",
                 "JWK: unsupported \"alg\"");
}


static void
test_jwk_bad_json(void **state)
{
    vc_keyset_t  ks;

    /* duplicate members are refused, like in tokens */
    assert_int_equal(load(&ks, FX_JWKS_DUP, sizeof(FX_JWKS_DUP) - 1),
                     VC_ERROR);
    assert_string_equal(errstr, "invalid JSON at line 1 column 19");

    assert_int_equal(load(&ks, "{\"keys\": [", 10), VC_ERROR);
    assert_memory_equal(errstr, "invalid JSON at line 1", 22);

    /* a leading "{" is JSON, never a secret */
    assert_int_equal(load(&ks, "{xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                          42), VC_ERROR);
    assert_memory_equal(errstr, "invalid JSON", 12);
}


static void
test_jwks_partly_usable(void **state)
{
    vc_keyset_t  ks;

    /* the PS256 key is skipped, the other loads */
    assert_int_equal(load(&ks, FX_JWKS_PS256, sizeof(FX_JWKS_PS256) - 1),
                     VC_OK);
    assert_int_equal(ks.nkeys, 1);
    assert_string_equal(ks.keys[0].kid, "rsa1");
    vc_keyset_free(&ks);

    assert_int_equal(load(&ks, FX_JWKS_3OCT, sizeof(FX_JWKS_3OCT) - 1), VC_OK);
    assert_int_equal(ks.nkeys, 3);
    assert_null(ks.keys[2].kid);
    vc_keyset_free(&ks);
}


static void
test_secrets(void **state)
{
    vc_keyset_t  ks;

    assert_int_equal(load(&ks, FX_SECRET_FILE_LF,
                          sizeof(FX_SECRET_FILE_LF) - 1), VC_OK);
    assert_int_equal(ks.nkeys, 1);
    assert_int_equal(ks.keys[0].kty, VC_KTY_OCT);
    assert_int_equal(ks.keys[0].algs, HS_ALL);
    assert_null(ks.keys[0].kid);
    assert_int_equal(ks.keys[0].secret_len, FX_SECRET_LEN);
    assert_memory_equal(ks.keys[0].secret, FX_SECRET, FX_SECRET_LEN);
    vc_keyset_free(&ks);

    assert_int_equal(load(&ks, FX_SECRET_FILE_CRLF,
                          sizeof(FX_SECRET_FILE_CRLF) - 1), VC_OK);
    assert_int_equal(ks.keys[0].secret_len, FX_SECRET_LEN);
    assert_memory_equal(ks.keys[0].secret, FX_SECRET, FX_SECRET_LEN);
    vc_keyset_free(&ks);

    assert_int_equal(load(&ks, FX_SECRET, FX_SECRET_LEN), VC_OK);
    assert_int_equal(ks.keys[0].secret_len, FX_SECRET_LEN);
    vc_keyset_free(&ks);

    /* one newline only */
    assert_int_equal(load(&ks, FX_SECRET "\n\n", FX_SECRET_LEN + 2), VC_OK);
    assert_int_equal(ks.keys[0].secret_len, FX_SECRET_LEN + 1);
    assert_int_equal(ks.keys[0].secret[FX_SECRET_LEN], '\n');
    vc_keyset_free(&ks);

    assert_int_equal(load(&ks, FX_SECRET_BIN_FILE,
                          sizeof(FX_SECRET_BIN_FILE) - 1), VC_OK);
    assert_int_equal(ks.keys[0].secret_len, FX_SECRET_BIN_LEN);
    assert_memory_equal(ks.keys[0].secret, FX_SECRET_BIN, FX_SECRET_BIN_LEN);
    vc_keyset_free(&ks);

    /* unpadded standard base64 is accepted too */
    assert_int_equal(load(&ks, "base64:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                          "AAAA", 50), VC_OK);
    assert_int_equal(ks.keys[0].secret_len, 32);
    vc_keyset_free(&ks);
}


static void
test_secret_errors(void **state)
{
    EXPECT_ERROR(FX_SECRET_SHORT_FILE, "HMAC secret shorter than 32 bytes");
    EXPECT_ERROR(FX_SECRET_SHORT_B64, "HMAC secret shorter than 32 bytes");
    EXPECT_ERROR("", "HMAC secret shorter than 32 bytes");
    EXPECT_ERROR("base64:", "HMAC secret shorter than 32 bytes");
    EXPECT_ERROR("base64:!!!!AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                 "invalid base64 secret");
    EXPECT_ERROR("base64:-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                 "invalid base64 secret");
    EXPECT_ERROR("base64:AAAA AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                 "invalid base64 secret");
    /* padding where none belongs, and non-canonical trailing bits */
    EXPECT_ERROR("base64:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                 "invalid base64 secret");
    EXPECT_ERROR("base64:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=",
                 "invalid base64 secret");
}


static void
test_digest(void **state)
{
    vc_keyset_t  a, b;

    assert_int_equal(load(&a, FX_JWKS_ALL, sizeof(FX_JWKS_ALL) - 1), VC_OK);
    assert_int_equal(load(&b, FX_JWKS_ALL, sizeof(FX_JWKS_ALL) - 1), VC_OK);
    assert_memory_equal(a.digest, b.digest, 32);
    vc_keyset_free(&b);

    assert_int_equal(load(&b, FX_JWKS_ALL "\n", sizeof(FX_JWKS_ALL)), VC_OK);
    assert_memory_not_equal(a.digest, b.digest, 32);
    vc_keyset_free(&a);
    vc_keyset_free(&b);
}


static void
test_alg_names(void **state)
{
    static const char  *names[VC_ALG_COUNT] = {
        "HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
        "ES256", "ES384", "ES512"
    };
    int                 a;

    for (a = 0; a < VC_ALG_COUNT; a++) {
        assert_int_equal(vc_alg_by_name(names[a], 5), a);
        assert_string_equal(vc_alg_name(a), names[a]);
    }

    assert_int_equal(vc_alg_by_name("none", 4), VC_ALG_NONE);
    assert_int_equal(vc_alg_by_name("hs256", 5), VC_ALG_NONE);
    assert_int_equal(vc_alg_by_name("HS2560", 6), VC_ALG_NONE);
    assert_int_equal(vc_alg_by_name("HS256", 4), VC_ALG_NONE);
    assert_int_equal(vc_alg_by_name("PS256", 5), VC_ALG_NONE);
    assert_int_equal(vc_alg_by_name("", 0), VC_ALG_NONE);
    assert_int_equal(vc_alg_by_name(NULL, 5), VC_ALG_NONE);
    assert_string_equal(vc_alg_name(VC_ALG_NONE), "none");
    assert_string_equal(vc_alg_name(VC_ALG_COUNT), "none");
}


static void
test_free_zeroed(void **state)
{
    vc_keyset_t  ks;

    memset(&ks, 0, sizeof(ks));
    vc_keyset_free(&ks);
    assert_int_equal(ks.nkeys, 0);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_pem_spki),
        cmocka_unit_test(test_pem_pkcs1_and_cert),
        cmocka_unit_test(test_pem_ec),
        cmocka_unit_test(test_pem_errors),
        cmocka_unit_test(test_jwks_all),
        cmocka_unit_test(test_jwk_single),
        cmocka_unit_test(test_jwk_errors),
        cmocka_unit_test(test_jwk_bad_json),
        cmocka_unit_test(test_jwks_partly_usable),
        cmocka_unit_test(test_secrets),
        cmocka_unit_test(test_secret_errors),
        cmocka_unit_test(test_digest),
        cmocka_unit_test(test_alg_names),
        cmocka_unit_test(test_free_zeroed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
