/* microbench_jwt.c -- ns per token through vc_jwt, as the module runs it */

/*
 * Each algorithm's fixture token is checked N times in a loop the way
 * ngx_vantage_jwt_verify() does it: vc_jwt_parse(), vc_jwt_verify(),
 * vc_jwt_check_claims(), vc_json_text() of "sub" (a claim variable), and
 * vc_jwt_free().  Beside the full path, its parts are timed alone, and the
 * OpenSSL floor: EVP_Digest() and EVP_PKEY_verify() on a context made
 * once, which no change to Vantage can go below (RS256 only).  Each figure
 * is the best of R runs of about 10 ms each, so that a neighbour's burst on
 * a shared machine does not land in it.  Pin it to one core:
 *
 *     make microbench                 (taskset -c $BENCH_CPU, 20 runs)
 *     build/bench/microbench_jwt [runs [alg]]
 */

#define _GNU_SOURCE

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "vc_jwt.h"
#include "../unit/fixtures.h"

#define BENCH_NAME   "microbench"
#define BENCH_CLOCK  CLOCK_MONOTONIC
#include "bench.h"


#define NOW  (FX_T0 + 10)


typedef struct {
    const char  *name;
    const char  *token;
} bench_tok_t;


typedef enum {
    PHASE_FULL = 0,
    PHASE_PARSE,
    PHASE_VERIFY,
    PHASE_CLAIMS,
    PHASE_FLOOR
} bench_phase_e;


static vc_keyset_t   ks;
static vc_policy_t   policy;
static volatile int  sink;


/* the signature check alone, without Vantage: the floor of any change */

static int
floor_once(EVP_PKEY_CTX *pctx, const EVP_MD *md, vc_jwt_t *jwt)
{
    unsigned char  dgst[EVP_MAX_MD_SIZE];
    unsigned int   dlen;

    if (EVP_Digest(jwt->signing_input, jwt->signing_input_len, dgst, &dlen,
                   md, NULL) != 1)
    {
        return 0;
    }

    return EVP_PKEY_verify(pctx, jwt->sig, jwt->sig_len, dgst, dlen) == 1;
}


static double
run(const bench_tok_t *t, bench_phase_e phase, int runs)
{
    long           i, n;
    int            r, ok;
    char          *text;
    size_t         len, toklen, k;
    double         t0, best, ns;
    vc_jwt_t       jwt, held;
    EVP_MD        *md;
    EVP_PKEY_CTX  *pctx;

    toklen = strlen(t->token);
    best = 0;
    pctx = NULL;
    md = NULL;

    memset(&held, 0, sizeof(vc_jwt_t));

    if (vc_jwt_parse(&held, t->token, toklen) != VC_OK) {
        if (phase != PHASE_FULL && phase != PHASE_PARSE) {
            vc_jwt_free(&held);
            return -1;
        }

    } else if (phase == PHASE_FLOOR) {
        if (held.alg != VC_ALG_RS256) {
            vc_jwt_free(&held);
            return -1;
        }

        /* the key the token's kid names */
        for (k = 0; k < ks.nkeys; k++) {
            if (ks.keys[k].kid && held.kid
                && strlen(ks.keys[k].kid) == held.kid_len
                && memcmp(ks.keys[k].kid, held.kid, held.kid_len) == 0)
            {
                break;
            }
        }

        if (k == ks.nkeys) {
            fail("floor", t->name, "no key for the kid");
        }

        pctx = EVP_PKEY_CTX_new_from_pkey(NULL, ks.keys[k].pkey, NULL);
        md = EVP_MD_fetch(NULL, "SHA256", NULL);

        if (pctx == NULL || md == NULL
            || EVP_PKEY_verify_init(pctx) != 1
            || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1
            || EVP_PKEY_CTX_set_signature_md(pctx, md) != 1
            || !floor_once(pctx, md, &held))
        {
            fail("floor", t->name, "setup failed");
        }
    }

    /* a first run of 16 sizes the others to about 10 ms each */

    n = 16;

    for (r = -1; r < runs; r++) {
        t0 = now_ns();

        for (i = 0; i < n; i++) {
            switch (phase) {

            case PHASE_FULL:
                memset(&jwt, 0, sizeof(vc_jwt_t));

                ok = vc_jwt_parse(&jwt, t->token, toklen) == VC_OK
                     && vc_jwt_verify(&jwt, &ks, &policy) == VC_OK
                     && vc_jwt_check_claims(&jwt, &policy, NOW)
                        == VC_JWT_VALID;

                if (ok) {
                    text = vc_json_text(vc_json_path(jwt.claims, "sub"),
                                        &len);
                    ok = text != NULL;
                    free(text);
                }

                sink += ok;
                vc_jwt_free(&jwt);
                break;

            case PHASE_PARSE:
                memset(&jwt, 0, sizeof(vc_jwt_t));
                sink += vc_jwt_parse(&jwt, t->token, toklen);
                vc_jwt_free(&jwt);
                break;

            case PHASE_VERIFY:
                sink += vc_jwt_verify(&held, &ks, &policy);
                break;

            case PHASE_CLAIMS:
                sink += vc_jwt_check_claims(&held, &policy, NOW);
                break;

            case PHASE_FLOOR:
                sink += floor_once(pctx, md, &held);
                break;
            }
        }

        ns = (now_ns() - t0) / n;

        if (r < 0) {
            n = (long) (10e6 / ns) + 1;
            continue;
        }

        if (r == 0 || ns < best) {
            best = ns;
        }
    }

    EVP_PKEY_CTX_free(pctx);
    EVP_MD_free(md);
    vc_jwt_free(&held);

    return best;
}


static void
print_ns(double ns)
{
    if (ns < 0) {
        printf(" %10s", "-");

    } else {
        printf(" %10.0f", ns);
    }
}


int
main(int argc, char **argv)
{
    int           runs, rc;
    size_t        i;
    char          err[VC_ERRSTR_LEN];
    vc_jwt_t      jwt;
    const char   *ref, *only;
    static const char  *req_aud[] = { "api" };
    static vc_require_t  reqs[] = { { "aud", req_aud, 1 } };

    static const bench_tok_t  toks[] = {
        { "RS256", FX_TOK_RS256 },
        { "RS384", FX_TOK_RS384 },
        { "RS512", FX_TOK_RS512 },
        { "ES256", FX_TOK_ES256 },
        { "ES384", FX_TOK_ES384 },
        { "ES512", FX_TOK_ES512 },
        { "HS256", FX_TOK_HS256 },
        /* refused at parse: Vantage verifies no PS algorithm */
        { "PS256", FX_TOK_PS256 }
    };

    runs = argc > 1 ? atoi(argv[1]) : 20;
    only = argc > 2 ? argv[2] : NULL;

    if (runs <= 0) {
        fprintf(stderr, "usage: microbench_jwt [runs [alg]]\n");
        return 2;
    }

    if (vc_keyset_load(&ks, (const unsigned char *) FX_JWKS_ALL,
                       strlen(FX_JWKS_ALL), err, sizeof(err))
        != VC_OK)
    {
        fail("keyset", "FX_JWKS_ALL", err);
    }

    policy.algs = VC_ALG_MASK_ALL;
    policy.require_exp = 1;
    policy.max_keys_tried = 4;
    policy.requires = reqs;
    policy.nrequires = 1;

    /* every token must give the verdict the unit tests expect */

    for (i = 0; i < sizeof(toks) / sizeof(toks[0]); i++) {
        memset(&jwt, 0, sizeof(vc_jwt_t));

        rc = vc_jwt_parse(&jwt, toks[i].token, strlen(toks[i].token));
        if (rc == VC_OK) {
            rc = vc_jwt_verify(&jwt, &ks, &policy);
        }

        ref = strcmp(toks[i].name, "PS256") == 0 ? "unsupported algorithm"
                                                 : NULL;

        if (ref ? rc == VC_OK || strcmp(jwt.reason, ref) != 0 : rc != VC_OK)
        {
            fail("check", toks[i].name, rc == VC_OK ? "verified" : jwt.reason);
        }

        vc_jwt_free(&jwt);
    }

    printf("ns per token, best of %d runs of 10 ms (full = parse + verify"
           " + claims + one claim text + free)\n", runs);
    printf("%-6s %10s %10s %10s %10s %10s\n", "alg", "full", "parse",
           "verify", "claims", "floor");

    for (i = 0; i < sizeof(toks) / sizeof(toks[0]); i++) {
        if (only && strcmp(only, toks[i].name) != 0) {
            continue;
        }

        printf("%-6s", toks[i].name);
        print_ns(run(&toks[i], PHASE_FULL, runs));
        print_ns(run(&toks[i], PHASE_PARSE, runs));
        print_ns(run(&toks[i], PHASE_VERIFY, runs));
        print_ns(run(&toks[i], PHASE_CLAIMS, runs));
        print_ns(run(&toks[i], PHASE_FLOOR, runs));
        printf("\n");
        fflush(stdout);
    }

    vc_keyset_free(&ks);

    return 0;
}
