/* test_vc_jwt.c -- token parsing, signatures, time claims and requirements */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "vc_jwt.h"
#include "fixtures.h"


#define BIT(a)    (1u << (a))
#define NOW       (FX_T0 + 10)


static vc_keyset_t  ks_all;
static char         result[VC_ERRSTR_LEN];


static void
keyset(vc_keyset_t *ks, const char *data)
{
    char  err[VC_ERRSTR_LEN];

    memset(ks, 0, sizeof(vc_keyset_t));
    assert_int_equal(vc_keyset_load(ks, (const unsigned char *) data,
                                    strlen(data), err, sizeof(err)), VC_OK);
}


static void
policy(vc_policy_t *p)
{
    memset(p, 0, sizeof(vc_policy_t));
    p->algs = VC_ALG_MASK_ALL;
    p->require_exp = 1;
    p->max_keys_tried = 4;
}


/*
 * Every reason text comes with its one-word outcome: the metrics and the
 * access log count the word, so the two must never disagree.
 */
static void
expect_outcome(const vc_jwt_t *jwt)
{
    size_t  i;

    static const struct {
        const char         *reason;
        vc_auth_outcome_e   outcome;
    } words[] = {
        { "malformed token", VC_AUTH_MALFORMED },
        { "malformed token header", VC_AUTH_MALFORMED },
        { "unsupported critical header", VC_AUTH_MALFORMED },
        { "malformed time claim", VC_AUTH_MALFORMED },
        { "unsupported algorithm", VC_AUTH_ALG_NOT_ALLOWED },
        { "algorithm not allowed", VC_AUTH_ALG_NOT_ALLOWED },
        { "no key for algorithm", VC_AUTH_UNKNOWN_KEY },
        { "unknown key id", VC_AUTH_UNKNOWN_KEY },
        { "signature verification failed", VC_AUTH_BAD_SIGNATURE },
        { "token expired", VC_AUTH_EXPIRED },
        { "missing exp claim", VC_AUTH_CLAIM_REFUSED },
        { "token not yet valid", VC_AUTH_NOT_YET_VALID },
        { "token issued in the future", VC_AUTH_NOT_YET_VALID },
    };

    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (strcmp(jwt->reason, words[i].reason) == 0) {
            assert_int_equal(jwt->outcome, words[i].outcome);
            return;
        }
    }

    /* claim "<name>" not accepted */
    assert_true(strncmp(jwt->reason, "claim \"", 7) == 0);
    assert_int_equal(jwt->outcome, VC_AUTH_CLAIM_REFUSED);
}


/*
 * parse, verify, check claims, as the module does; the token is copied to
 * an exact-size heap buffer with no NUL, so that ASan sees any over-read.
 * Returns "ok" or the reason; *verdict gets the claims verdict, or
 * VC_JWT_INVALID when an earlier step failed.
 */

static const char *
run_len(const char *tok, size_t len, const vc_keyset_t *ks,
    const vc_policy_t *p, int64_t now, vc_verdict_e *verdict)
{
    vc_jwt_t      jwt;
    char         *copy;
    vc_verdict_e  v;

    copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, tok, len);

    memset(&jwt, 0, sizeof(jwt));
    v = VC_JWT_INVALID;

    if (vc_jwt_parse(&jwt, copy, len) != VC_OK) {
        assert_int_not_equal(jwt.reason[0], '\0');
        expect_outcome(&jwt);
        snprintf(result, sizeof(result), "%s", jwt.reason);
        goto done;
    }

    assert_true(jwt.alg >= 0 && jwt.alg < VC_ALG_COUNT);
    assert_ptr_equal(jwt.signing_input, copy);

    if (vc_jwt_verify(&jwt, ks, p) != VC_OK) {
        expect_outcome(&jwt);
        snprintf(result, sizeof(result), "%s", jwt.reason);
        goto done;
    }

    v = vc_jwt_check_claims(&jwt, p, now);

    if (v == VC_JWT_VALID) {
        assert_int_equal(jwt.outcome, VC_AUTH_OK);
        snprintf(result, sizeof(result), "ok");

    } else {
        expect_outcome(&jwt);
        snprintf(result, sizeof(result), "%s", jwt.reason);
    }

done:

    vc_jwt_free(&jwt);
    free(copy);

    if (verdict) {
        *verdict = v;
    }

    return result;
}


static const char *
run(const char *tok, const vc_keyset_t *ks, const vc_policy_t *p, int64_t now)
{
    vc_verdict_e  v;

    run_len(tok, strlen(tok), ks, p, now, &v);

    /* "ok" exactly when valid */
    assert_int_equal(strcmp(result, "ok") == 0, v == VC_JWT_VALID);

    return result;
}


static const char *
run_all(const char *tok)
{
    vc_policy_t  p;

    policy(&p);

    return run(tok, &ks_all, &p, NOW);
}


static int
setup(void **state)
{
    keyset(&ks_all, FX_JWKS_ALL);
    return 0;
}


static int
teardown(void **state)
{
    vc_keyset_free(&ks_all);
    return 0;
}


/* vc_jwt_kid_known() for a fixture token against ks */
static int
kid_known(const char *token, vc_keyset_t *ks)
{
    int       known;
    vc_jwt_t  jwt;

    memset(&jwt, 0, sizeof(jwt));
    assert_int_equal(vc_jwt_parse(&jwt, token, strlen(token)), VC_OK);
    known = vc_jwt_kid_known(&jwt, ks);
    vc_jwt_free(&jwt);

    return known;
}


static void
test_every_alg(void **state)
{
    static const char  *toks[] = {
        FX_TOK_HS256, FX_TOK_HS384, FX_TOK_HS512,
        FX_TOK_RS256, FX_TOK_RS384, FX_TOK_RS512,
        FX_TOK_ES256, FX_TOK_ES384, FX_TOK_ES512,
        FX_TOK_RS256_NOKID, FX_TOK_ES256_NOKID, FX_TOK_HS256_NOKID
    };
    vc_jwt_t            jwt;
    size_t              i;

    for (i = 0; i < sizeof(toks) / sizeof(toks[0]); i++) {
        assert_string_equal(run_all(toks[i]), "ok");
    }

    /* what parse reports */
    memset(&jwt, 0, sizeof(jwt));
    assert_int_equal(vc_jwt_parse(&jwt, FX_TOK_ES384, strlen(FX_TOK_ES384)),
                     VC_OK);
    assert_int_equal(jwt.alg, VC_ALG_ES384);
    assert_int_equal(jwt.kid_len, 5);
    assert_memory_equal(jwt.kid, "ec384", 5);
    assert_int_equal(jwt.sig_len, 96);
    assert_true(jwt.has_exp);
    assert_int_equal(jwt.exp, FX_EXP_FAR);
    assert_int_equal(jwt.signing_input_len,
                     strrchr(FX_TOK_ES384, '.') - FX_TOK_ES384);
    vc_jwt_free(&jwt);
    /* twice is harmless */
    vc_jwt_free(&jwt);
}


static void
test_pem_keys(void **state)
{
    vc_keyset_t  ks;
    vc_policy_t  p;

    policy(&p);

    keyset(&ks, FX_RSA1_PEM);
    assert_string_equal(run(FX_TOK_RS256_NOKID, &ks, &p, NOW), "ok");
    /* a kid no key has, and a kid-less key: tried */
    assert_string_equal(run(FX_TOK_RS256, &ks, &p, NOW), "ok");
    assert_string_equal(run(FX_TOK_RS384_RSA1, &ks, &p, NOW), "ok");
    assert_string_equal(run(FX_TOK_RS384, &ks, &p, NOW),
                        "signature verification failed");
    /* alg confusion: HS256 keyed with the PEM text finds no oct key */
    assert_string_equal(run(FX_TOK_HS256_PEM_SECRET, &ks, &p, NOW),
                        "no key for algorithm");
    assert_string_equal(run(FX_TOK_ES256, &ks, &p, NOW),
                        "no key for algorithm");
    vc_keyset_free(&ks);

    keyset(&ks, FX_RSA1_PKCS1_PEM);
    assert_string_equal(run(FX_TOK_RS256_NOKID, &ks, &p, NOW), "ok");
    vc_keyset_free(&ks);

    keyset(&ks, FX_RSA1_CERT_PEM);
    assert_string_equal(run(FX_TOK_RS256_NOKID, &ks, &p, NOW), "ok");
    vc_keyset_free(&ks);

    keyset(&ks, FX_EC256_PEM);
    assert_string_equal(run(FX_TOK_ES256_NOKID, &ks, &p, NOW), "ok");
    assert_string_equal(run(FX_TOK_ES256, &ks, &p, NOW), "ok");
    vc_keyset_free(&ks);
}


static void
test_secrets(void **state)
{
    vc_keyset_t  ks;
    vc_policy_t  p;

    policy(&p);

    keyset(&ks, FX_SECRET_FILE_LF);
    assert_string_equal(run(FX_TOK_HS256_NOKID, &ks, &p, NOW), "ok");
    assert_string_equal(run(FX_TOK_HS512, &ks, &p, NOW), "ok");
    assert_string_equal(run(FX_TOK_HS256_BIN, &ks, &p, NOW),
                        "signature verification failed");
    assert_string_equal(run(FX_TOK_RS256, &ks, &p, NOW),
                        "no key for algorithm");
    vc_keyset_free(&ks);

    keyset(&ks, FX_SECRET_BIN_FILE);
    assert_string_equal(run(FX_TOK_HS256_BIN, &ks, &p, NOW), "ok");
    vc_keyset_free(&ks);
}


static void
test_alg_confusion(void **state)
{
    /* the JWKS has an oct key, but not that secret */
    assert_string_equal(run_all(FX_TOK_HS256_PEM_SECRET),
                        "signature verification failed");
    /* the kid names an RSA key: an HS token is never checked with it */
    assert_string_equal(run_all(FX_TOK_HS256_PEM_SECRET_KID),
                        "no key for algorithm");
    assert_string_equal(run_all(FX_TOK_HS256_KID_RSA1),
                        "no key for algorithm");
    /* rsa1's JWK says RS256 */
    assert_string_equal(run_all(FX_TOK_RS384_RSA1), "no key for algorithm");
}


static void
test_alg_none_and_unknown(void **state)
{
    assert_string_equal(run_all(FX_TOK_NONE_EMPTY), "malformed token");
    assert_string_equal(run_all(FX_TOK_NONE_SIG), "unsupported algorithm");
    assert_string_equal(run_all(FX_TOK_PS256), "unsupported algorithm");
    assert_string_equal(run_all(FX_TOK_HS256_LOWER), "unsupported algorithm");
}


static void
test_alg_not_allowed(void **state)
{
    vc_policy_t  p;

    policy(&p);
    p.algs = BIT(VC_ALG_RS256) | BIT(VC_ALG_ES256);

    assert_string_equal(run(FX_TOK_RS256, &ks_all, &p, NOW), "ok");
    assert_string_equal(run(FX_TOK_ES256, &ks_all, &p, NOW), "ok");
    assert_string_equal(run(FX_TOK_HS256, &ks_all, &p, NOW),
                        "algorithm not allowed");
    assert_string_equal(run(FX_TOK_ES384, &ks_all, &p, NOW),
                        "algorithm not allowed");
    assert_string_equal(run(FX_TOK_RS512, &ks_all, &p, NOW),
                        "algorithm not allowed");
}


static void
test_kid(void **state)
{
    vc_keyset_t  ks;
    vc_policy_t  p;

    assert_string_equal(run_all(FX_TOK_RS256_UNKNOWN_KID), "unknown key id");
    /* right kid, wrong key */
    assert_string_equal(run_all(FX_TOK_RS256_WRONG_KID),
                        "signature verification failed");
    assert_string_equal(run_all(FX_TOK_HS256_OTHER),
                        "signature verification failed");

    policy(&p);
    keyset(&ks, FX_JWKS_KIDLESS);
    /* unknown kid: the kid-less key is tried */
    assert_string_equal(run(FX_TOK_RS256_UNKNOWN_KID, &ks, &p, NOW), "ok");
    /* known kid: only that key is tried */
    assert_string_equal(run(FX_TOK_RS256_WRONG_KID, &ks, &p, NOW),
                        "signature verification failed");
    assert_string_equal(run(FX_TOK_RS256_NOKID, &ks, &p, NOW), "ok");
    assert_int_equal(kid_known(FX_TOK_RS256_UNKNOWN_KID, &ks), 0);
    assert_int_equal(kid_known(FX_TOK_RS256_WRONG_KID, &ks), 1);
    assert_int_equal(kid_known(FX_TOK_RS256_NOKID, &ks), 0);
    vc_keyset_free(&ks);

    /* same kid, another EC key */
    keyset(&ks, FX_JWKS_EC256B);
    assert_string_equal(run(FX_TOK_ES256, &ks, &p, NOW),
                        "signature verification failed");
    vc_keyset_free(&ks);
}


static void
test_es_lengths(void **state)
{
    assert_string_equal(run_all(FX_TOK_ES256_SIG63),
                        "signature verification failed");
    assert_string_equal(run_all(FX_TOK_ES256_SIG65),
                        "signature verification failed");
    assert_string_equal(run_all(FX_TOK_ES256_SIG65_LEAD),
                        "signature verification failed");
    assert_string_equal(run_all(FX_TOK_ES256_DER),
                        "signature verification failed");
}


static void
test_max_keys_tried(void **state)
{
    vc_keyset_t  ks;
    vc_policy_t  p;

    policy(&p);
    keyset(&ks, FX_JWKS_3OCT);

    p.max_keys_tried = 3;
    assert_string_equal(run(FX_TOK_3OCT_2, &ks, &p, NOW), "ok");
    assert_string_equal(run(FX_TOK_3OCT_2_KID, &ks, &p, NOW), "ok");

    p.max_keys_tried = 2;
    assert_string_equal(run(FX_TOK_3OCT_1, &ks, &p, NOW), "ok");
    assert_string_equal(run(FX_TOK_3OCT_2, &ks, &p, NOW),
                        "signature verification failed");
    /* a kid no key has falls back to the same limit */
    assert_string_equal(run(FX_TOK_3OCT_2_KID, &ks, &p, NOW),
                        "signature verification failed");

    p.max_keys_tried = 1;
    assert_string_equal(run(FX_TOK_3OCT_0, &ks, &p, NOW), "ok");
    assert_string_equal(run(FX_TOK_3OCT_1, &ks, &p, NOW),
                        "signature verification failed");

    p.max_keys_tried = 0;
    assert_string_equal(run(FX_TOK_3OCT_0, &ks, &p, NOW),
                        "signature verification failed");

    vc_keyset_free(&ks);

    /* a matching kid is not limited */
    policy(&p);
    p.max_keys_tried = 0;
    assert_string_equal(run(FX_TOK_RS256, &ks_all, &p, NOW), "ok");
    assert_string_equal(run(FX_TOK_RS256_NOKID, &ks_all, &p, NOW),
                        "signature verification failed");
    p.max_keys_tried = 1;
    /* rsa1 comes first in the set */
    assert_string_equal(run(FX_TOK_RS256_NOKID, &ks_all, &p, NOW), "ok");
}


static void
test_exp(void **state)
{
    vc_policy_t  p;

    policy(&p);

    assert_string_equal(run(FX_TOK_EXP_NEAR, &ks_all, &p, FX_EXP_NEAR - 1),
                        "ok");
    assert_string_equal(run(FX_TOK_EXP_NEAR, &ks_all, &p, FX_EXP_NEAR),
                        "token expired");

    p.leeway = 30;
    assert_string_equal(run(FX_TOK_EXP_NEAR, &ks_all, &p, FX_EXP_NEAR + 29),
                        "ok");
    assert_string_equal(run(FX_TOK_EXP_NEAR, &ks_all, &p, FX_EXP_NEAR + 30),
                        "token expired");

    /* exp = EXP_NEAR + 0.5 */
    p.leeway = 0;
    assert_string_equal(run(FX_TOK_EXP_REAL, &ks_all, &p, FX_EXP_NEAR), "ok");
    assert_string_equal(run(FX_TOK_EXP_REAL, &ks_all, &p, FX_EXP_NEAR + 1),
                        "token expired");

    /* 2^53 itself is still a sane number */
    assert_string_equal(run(FX_TOK_EXP_2P53, &ks_all, &p, NOW), "ok");
}


static void
test_nbf_iat(void **state)
{
    vc_policy_t  p;

    policy(&p);

    assert_string_equal(run(FX_TOK_NBF, &ks_all, &p, FX_T0), "ok");
    assert_string_equal(run(FX_TOK_NBF, &ks_all, &p, FX_T0 - 1),
                        "token not yet valid");
    assert_string_equal(run(FX_TOK_IAT, &ks_all, &p, FX_T0), "ok");
    assert_string_equal(run(FX_TOK_IAT, &ks_all, &p, FX_T0 - 1),
                        "token issued in the future");

    p.leeway = 30;
    assert_string_equal(run(FX_TOK_NBF, &ks_all, &p, FX_T0 - 30), "ok");
    assert_string_equal(run(FX_TOK_NBF, &ks_all, &p, FX_T0 - 31),
                        "token not yet valid");
    assert_string_equal(run(FX_TOK_IAT, &ks_all, &p, FX_T0 - 30), "ok");
    assert_string_equal(run(FX_TOK_IAT, &ks_all, &p, FX_T0 - 31),
                        "token issued in the future");
}


static void
test_missing_exp(void **state)
{
    vc_policy_t   p;
    vc_verdict_e  v;

    policy(&p);
    run_len(FX_TOK_NO_EXP, strlen(FX_TOK_NO_EXP), &ks_all, &p, NOW, &v);
    assert_string_equal(result, "missing exp claim");
    assert_int_equal(v, VC_JWT_INVALID);

    p.require_exp = 0;
    assert_string_equal(run(FX_TOK_NO_EXP, &ks_all, &p, NOW), "ok");
}


static void
test_malformed_time(void **state)
{
    static const char  *toks[] = {
        FX_TOK_EXP_STR, FX_TOK_EXP_HUGE_REAL, FX_TOK_EXP_HUGE_INT,
        FX_TOK_EXP_NULL, FX_TOK_EXP_BOOL, FX_TOK_NBF_STR, FX_TOK_IAT_ARRAY
    };
    size_t              i;

    for (i = 0; i < sizeof(toks) / sizeof(toks[0]); i++) {
        assert_string_equal(run_all(toks[i]), "malformed time claim");
    }
}


static void
test_malformed(void **state)
{
    static const char  *toks[] = {
        "", ".", "..", "...", "a", "a.b", "a.b.", ".b.c", "a..c",
        "e30.e30", "e30.e30.e30.e30", "e30.e30.e30.e30.e30",
        "!!!.e30.e30", "e30.e30.!!!", "e30=.e30.e30", "e30.e30.e3",
        "e30 .e30.e30", "W10.e30.e30", "e30.W10.e30", "bnVsbA.e30.e30",
        FX_TOK_JWE, FX_TOK_DUP_ALG, FX_TOK_DUP_SUB, FX_TOK_PAYLOAD_ARRAY,
        FX_TOK_PAYLOAD_JUNK, FX_TOK_PAYLOAD_NUL, FX_TOK_HEADER_STRING
    };
    size_t              i;

    for (i = 0; i < sizeof(toks) / sizeof(toks[0]); i++) {
        assert_string_equal(run_all(toks[i]), "malformed token");
    }
}


static void
test_malformed_header(void **state)
{
    assert_string_equal(run_all("e30.e30.e30"), "malformed token header");
    assert_string_equal(run_all(FX_TOK_NO_ALG), "malformed token header");
    assert_string_equal(run_all(FX_TOK_ALG_NUM), "malformed token header");
    assert_string_equal(run_all(FX_TOK_KID_NUM), "malformed token header");
    assert_string_equal(run_all(FX_TOK_CRIT), "unsupported critical header");
}


static void
test_tampered_truncated(void **state)
{
    vc_policy_t  p;
    size_t       len, n;

    assert_string_equal(run_all(FX_TOK_TAMPERED),
                        "signature verification failed");

    policy(&p);
    n = strlen(FX_TOK_RS256);

    for (len = 0; len < n; len++) {
        run_len(FX_TOK_RS256, len, &ks_all, &p, NOW, NULL);

        if (strcmp(result, "malformed token") != 0
            && strcmp(result, "signature verification failed") != 0)
        {
            fail_msg("prefix %zu: \"%s\"", len, result);
        }
    }

    /* the whole token, once more */
    run_len(FX_TOK_RS256, n, &ks_all, &p, NOW, NULL);
    assert_string_equal(result, "ok");
}


/*
 * Each key's verification contexts are made once, at load, and serve every
 * token after: a failed check must leave nothing behind for the next one,
 * whatever the algorithm, and a process forked after the load (an nginx
 * worker) checks with the contexts it inherited.
 */

static const struct {
    const char  *tok;
    unsigned     flip;      /* a bit of the signature flipped */
    const char  *want;
} reuse[] = {
    { FX_TOK_RS256, 0, "ok" },
    { FX_TOK_RS256, 1, "signature verification failed" },
    { FX_TOK_RS256, 0, "ok" },
    { FX_TOK_TAMPERED, 0, "signature verification failed" },
    { FX_TOK_RS256_WRONG_KID, 0, "signature verification failed" },
    { FX_TOK_RS384, 0, "ok" },
    { FX_TOK_RS384, 1, "signature verification failed" },
    { FX_TOK_RS512, 0, "ok" },
    { FX_TOK_ES256, 0, "ok" },
    { FX_TOK_ES256, 1, "signature verification failed" },
    { FX_TOK_ES256, 0, "ok" },
    { FX_TOK_ES384, 0, "ok" },
    { FX_TOK_ES512, 1, "signature verification failed" },
    { FX_TOK_ES512, 0, "ok" },
    { FX_TOK_HS256, 0, "ok" },
    { FX_TOK_RS256, 0, "ok" }
};


/* reuse[i]'s token, with 'A' and 'B' swapped in the signature if asked */
static const char *
reuse_run(size_t i, const vc_keyset_t *ks, const vc_policy_t *p)
{
    char    buf[2048];
    size_t  len;

    len = strlen(reuse[i].tok);
    assert_true(len < sizeof(buf));
    memcpy(buf, reuse[i].tok, len + 1);

    if (reuse[i].flip) {
        buf[len - 12] = buf[len - 12] == 'A' ? 'B' : 'A';
    }

    return run(buf, ks, p, NOW);
}


static void
test_contexts_reused(void **state)
{
    size_t       i, round;
    vc_policy_t  p;

    policy(&p);

    for (round = 0; round < 3; round++) {
        for (i = 0; i < sizeof(reuse) / sizeof(reuse[0]); i++) {
            if (strcmp(reuse_run(i, &ks_all, &p), reuse[i].want) != 0) {
                fail_msg("round %zu, token %zu: \"%s\"", round, i, result);
            }
        }
    }
}


static void
test_contexts_forked(void **state)
{
    int          status;
    size_t       i;
    pid_t        pid;
    vc_keyset_t  ks;
    vc_policy_t  p;

    keyset(&ks, FX_JWKS_ALL);
    policy(&p);

    pid = fork();
    assert_true(pid >= 0);

    if (pid == 0) {
        for (i = 0; i < sizeof(reuse) / sizeof(reuse[0]); i++) {
            if (strcmp(reuse_run(i, &ks, &p), reuse[i].want) != 0) {
                _exit(1);
            }
        }

        vc_keyset_free(&ks);
        _exit(0);
    }

    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    /* the parent's contexts, untouched by the child's checks */
    assert_string_equal(run(FX_TOK_RS256, &ks, &p, NOW), "ok");

    vc_keyset_free(&ks);
}


static void
test_garbage(void **state)
{
    char          buf[256];
    unsigned int  seed, i, j;
    vc_policy_t   p;

    policy(&p);
    seed = 1;

    for (i = 0; i < 2000; i++) {
        for (j = 0; j < sizeof(buf); j++) {
            seed = seed * 1103515245 + 12345;
            buf[j] = "ab.-_eyJ0{}\"\0\xff"[(seed >> 16) % 15];
        }

        run_len(buf, (seed >> 8) % sizeof(buf), &ks_all, &p, NOW, NULL);
        assert_string_not_equal(result, "ok");
    }
}


static vc_verdict_e
require(const char *claim, const char *value)
{
    vc_policy_t   p;
    vc_require_t  r;
    const char   *values[2];
    vc_verdict_e  v;

    policy(&p);
    values[0] = "no-such-value";
    values[1] = value;
    r.claim = claim;
    r.values = values;
    r.nvalues = 2;
    p.requires = &r;
    p.nrequires = 1;

    run_len(FX_TOK_HS256, strlen(FX_TOK_HS256), &ks_all, &p, NOW, &v);

    return v;
}


static void
test_requirements(void **state)
{
    assert_int_equal(require("iss", "https://issuer.example"), VC_JWT_VALID);
    assert_int_equal(require("iss", "https://issuer.example/"),
                     VC_JWT_INVALID);
    assert_string_equal(result, "claim \"iss\" not accepted");

    assert_int_equal(require("aud", "api"), VC_JWT_VALID);
    assert_int_equal(require("aud", "other"), VC_JWT_VALID);
    assert_int_equal(require("aud", "ap"), VC_JWT_INVALID);
    assert_string_equal(result, "claim \"aud\" not accepted");

    assert_int_equal(require("sub", "user-1"), VC_JWT_VALID);
    assert_int_equal(require("sub", "user-2"), VC_JWT_FORBIDDEN);
    assert_string_equal(result, "claim \"sub\" not accepted");

    /* scope: words of a string; scp: an array */
    assert_int_equal(require("scope", "write"), VC_JWT_VALID);
    assert_int_equal(require("scope", "read"), VC_JWT_VALID);
    assert_int_equal(require("scope", "read write"), VC_JWT_VALID);
    assert_int_equal(require("scope", "writ"), VC_JWT_FORBIDDEN);
    assert_int_equal(require("scope", ""), VC_JWT_FORBIDDEN);
    assert_string_equal(result, "claim \"scope\" not accepted");
    assert_int_equal(require("scp", "b"), VC_JWT_VALID);
    assert_int_equal(require("scp", "c"), VC_JWT_FORBIDDEN);

    /* nested and dotted names */
    assert_int_equal(require("realm.roles", "dev"), VC_JWT_VALID);
    assert_int_equal(require("realm.roles", "root"), VC_JWT_FORBIDDEN);
    assert_string_equal(result, "claim \"realm.roles\" not accepted");
    assert_int_equal(require("https://example.com/roles", "editor"),
                     VC_JWT_VALID);
    assert_int_equal(require("a.b", "flat"), VC_JWT_VALID);
    assert_int_equal(require("a.b.c", "deep"), VC_JWT_VALID);
    assert_int_equal(require("a.b.c.d", "deep"), VC_JWT_FORBIDDEN);
    assert_int_equal(require("realm.roles.x", "dev"), VC_JWT_FORBIDDEN);

    /* numbers and booleans by their JSON text */
    assert_int_equal(require("num", "42"), VC_JWT_VALID);
    assert_int_equal(require("num", "42.0"), VC_JWT_FORBIDDEN);
    assert_int_equal(require("flag", "true"), VC_JWT_VALID);
    assert_int_equal(require("flag", "false"), VC_JWT_FORBIDDEN);
    assert_int_equal(require("ratio", "1.5"), VC_JWT_VALID);
    assert_int_equal(require("nothing", "null"), VC_JWT_FORBIDDEN);
    assert_int_equal(require("realm", "{\"roles\":[\"admin\",\"dev\"]}"),
                     VC_JWT_FORBIDDEN);

    /* missing */
    assert_int_equal(require("missing", "x"), VC_JWT_FORBIDDEN);
    assert_string_equal(result, "claim \"missing\" not accepted");
}


static void
test_requirements_all(void **state)
{
    vc_policy_t   p;
    vc_require_t  r[3];
    const char   *aud[] = { "api" };
    const char   *roles[] = { "admin" };
    const char   *scope[] = { "delete", "admin" };
    vc_verdict_e  v;

    policy(&p);
    r[0].claim = "aud";
    r[0].values = aud;
    r[0].nvalues = 1;
    r[1].claim = "realm.roles";
    r[1].values = roles;
    r[1].nvalues = 1;
    r[2].claim = "scope";
    r[2].values = scope;
    r[2].nvalues = 2;
    p.requires = r;
    p.nrequires = 2;

    run_len(FX_TOK_HS256, strlen(FX_TOK_HS256), &ks_all, &p, NOW, &v);
    assert_int_equal(v, VC_JWT_VALID);

    p.nrequires = 3;
    run_len(FX_TOK_HS256, strlen(FX_TOK_HS256), &ks_all, &p, NOW, &v);
    assert_int_equal(v, VC_JWT_FORBIDDEN);
    assert_string_equal(result, "claim \"scope\" not accepted");

    /* time claims come first */
    run_len(FX_TOK_HS256, strlen(FX_TOK_HS256), &ks_all, &p, FX_EXP_FAR, &v);
    assert_int_equal(v, VC_JWT_INVALID);
    assert_string_equal(result, "token expired");
}


static void
test_reason_truncated(void **state)
{
    char    name[300];
    size_t  i;

    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';

    assert_int_equal(require(name, "x"), VC_JWT_FORBIDDEN);
    assert_int_equal(strlen(result), VC_ERRSTR_LEN - 1);
    assert_memory_equal(result, "claim \"nnnn", 11);
    assert_string_equal(result + strlen(result) - 14, "\" not accepted");

    /* two-byte characters are not cut in half: 106 bytes leave 53 */
    memset(name, 0, sizeof(name));
    for (i = 0; i < 120; i += 2) {
        name[i] = (char) 0xc3;
        name[i + 1] = (char) 0xa9;
    }

    assert_int_equal(require(name, "x"), VC_JWT_FORBIDDEN);
    assert_int_equal(strlen(result), 7 + 106 + 14);
    assert_int_equal((unsigned char) result[7 + 105], 0xa9);
}


static void
test_json_path(void **state)
{
    json_t  *root;

    root = json_loads("{\"a\":{\"b\":{\"c\":1}},\"a.b\":2,\"x\":[1],"
                      "\"\":{\"\":3}}", 0, NULL);
    assert_non_null(root);

    assert_int_equal(json_integer_value(vc_json_path(root, "a.b")), 2);
    assert_int_equal(json_integer_value(vc_json_path(root, "a.b.c")), 1);
    assert_ptr_equal(vc_json_path(root, "a"), json_object_get(root, "a"));
    assert_null(vc_json_path(root, "a.c"));
    assert_null(vc_json_path(root, "x.0"));
    assert_null(vc_json_path(root, "a.b.c.d"));
    assert_null(vc_json_path(root, "b"));
    assert_int_equal(json_integer_value(vc_json_path(root, ".")), 3);
    assert_null(vc_json_path(root, NULL));
    assert_null(vc_json_path(NULL, "a"));
    assert_null(vc_json_path(json_object_get(root, "x"), "a"));

    json_decref(root);
}


static void
test_json_text(void **state)
{
    json_t  *v;
    char    *s;
    size_t   len;

    v = json_stringn("a\0b", 3);
    s = vc_json_text(v, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(s, "a\0b", 4);
    free(s);
    json_decref(v);

    v = json_loads("{\"k\": [1, true, null, \"\\u00e9\"], \"r\": 1.5}", 0,
                   NULL);
    s = vc_json_text(v, &len);
    assert_string_equal(s, "{\"k\":[1,true,null,\"\xc3\xa9\"],\"r\":1.5}");
    assert_int_equal(len, strlen(s));
    free(s);

    s = vc_json_text(json_object_get(v, "k"), &len);
    assert_string_equal(s, "[1,true,null,\"\xc3\xa9\"]");
    free(s);

    s = vc_json_text(json_array_get(json_object_get(v, "k"), 0), &len);
    assert_string_equal(s, "1");
    assert_int_equal(len, 1);
    free(s);

    s = vc_json_text(json_array_get(json_object_get(v, "k"), 2), &len);
    assert_string_equal(s, "null");
    free(s);

    s = vc_json_text(json_array_get(json_object_get(v, "k"), 3), &len);
    assert_string_equal(s, "\xc3\xa9");
    assert_int_equal(len, 2);
    free(s);

    json_decref(v);

    assert_null(vc_json_text(NULL, &len));
}


static void
test_calls_after_failed_parse(void **state)
{
    vc_jwt_t     jwt;
    vc_policy_t  p;

    policy(&p);

    memset(&jwt, 0, sizeof(jwt));
    vc_jwt_free(&jwt);

    assert_int_equal(vc_jwt_parse(&jwt, "e30.e30", 7), VC_ERROR);
    assert_int_equal(vc_jwt_verify(&jwt, &ks_all, &p), VC_ERROR);
    assert_string_equal(jwt.reason, "malformed token");
    vc_jwt_free(&jwt);

    memset(&jwt, 0, sizeof(jwt));
    assert_int_equal(vc_jwt_parse(&jwt, FX_TOK_CRIT, strlen(FX_TOK_CRIT)),
                     VC_ERROR);
    assert_int_equal(vc_jwt_verify(&jwt, &ks_all, &p), VC_ERROR);
    vc_jwt_free(&jwt);

    memset(&jwt, 0, sizeof(jwt));
    assert_int_equal(vc_jwt_check_claims(&jwt, &p, NOW), VC_JWT_INVALID);
    assert_string_equal(jwt.reason, "malformed token");
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_every_alg),
        cmocka_unit_test(test_pem_keys),
        cmocka_unit_test(test_secrets),
        cmocka_unit_test(test_alg_confusion),
        cmocka_unit_test(test_alg_none_and_unknown),
        cmocka_unit_test(test_alg_not_allowed),
        cmocka_unit_test(test_kid),
        cmocka_unit_test(test_es_lengths),
        cmocka_unit_test(test_max_keys_tried),
        cmocka_unit_test(test_exp),
        cmocka_unit_test(test_nbf_iat),
        cmocka_unit_test(test_missing_exp),
        cmocka_unit_test(test_malformed_time),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_malformed_header),
        cmocka_unit_test(test_tampered_truncated),
        cmocka_unit_test(test_contexts_reused),
        cmocka_unit_test(test_contexts_forked),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_requirements),
        cmocka_unit_test(test_requirements_all),
        cmocka_unit_test(test_reason_truncated),
        cmocka_unit_test(test_json_path),
        cmocka_unit_test(test_json_text),
        cmocka_unit_test(test_calls_after_failed_parse),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
