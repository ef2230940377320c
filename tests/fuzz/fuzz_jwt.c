/* fuzz_jwt.c -- libFuzzer target: parse, verify and check any token */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "vc_jwt.h"
#include "../unit/fixtures.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
static void fuzz_token(const char *token, size_t size);
static char *fuzz_assemble(const uint8_t *data, size_t size, size_t *len);
static size_t fuzz_encode(char *dst, const uint8_t *src, size_t len);


static vc_keyset_t  ks;
static int          ks_loaded;


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char   *token;
    size_t  len;

    /*
     * Input starting with "{" is "header JSON \n payload JSON \n signature",
     * encoded here: mutations of base64url text rarely stay valid JSON, so
     * this is how the fuzzer reaches the header and claim checks.
     */

    if (size && data[0] == '{') {
        token = fuzz_assemble(data, size, &len);
        if (token) {
            fuzz_token(token, len);
            free(token);
        }

        return 0;
    }

    fuzz_token((const char *) data, size);

    return 0;
}


static void
fuzz_token(const char *token, size_t size)
{
    vc_jwt_t      jwt;
    vc_policy_t   p;
    vc_require_t  r[4];
    json_t       *v;
    char         *text;
    size_t        len;
    char          err[VC_ERRSTR_LEN];
    static const char  *aud[] = { "api", "other" };
    static const char  *scope[] = { "read" };
    static const char  *roles[] = { "admin" };
    static const char  *num[] = { "42", "true", "1.5" };

    /* the key set is loaded once, as a worker does */
    if (!ks_loaded) {
        if (vc_keyset_load(&ks, (const unsigned char *) FX_JWKS_ALL,
                           strlen(FX_JWKS_ALL), err, sizeof(err))
            != VC_OK)
        {
            abort();
        }

        ks_loaded = 1;
    }

    memset(&p, 0, sizeof(p));
    p.algs = VC_ALG_MASK_ALL;
    p.leeway = 30;
    p.require_exp = size & 1;
    p.max_keys_tried = 3;

    r[0].claim = "aud";
    r[0].values = aud;
    r[0].nvalues = 2;
    r[1].claim = "scope";
    r[1].values = scope;
    r[1].nvalues = 1;
    r[2].claim = "realm.roles";
    r[2].values = roles;
    r[2].nvalues = 1;
    r[3].claim = "num";
    r[3].values = num;
    r[3].nvalues = 3;
    p.requires = r;
    p.nrequires = 4;

    memset(&jwt, 0, sizeof(jwt));

    if (vc_jwt_parse(&jwt, token, size) == VC_OK) {
        (void) vc_jwt_verify(&jwt, &ks, &p);

        /* past the signature too: the fuzzer cannot forge one */
        (void) vc_jwt_check_claims(&jwt, &p, 1700000000);

        v = vc_json_path(jwt.claims, "a.b.c");
        text = vc_json_text(v ? v : jwt.claims, &len);
        free(text);

    } else {
        (void) vc_jwt_verify(&jwt, &ks, &p);
        (void) vc_jwt_check_claims(&jwt, &p, 1700000000);
    }

    vc_jwt_free(&jwt);
}


static char *
fuzz_assemble(const uint8_t *data, size_t size, size_t *len)
{
    const uint8_t  *nl1, *nl2, *end;
    char           *token, *p;

    end = data + size;

    nl1 = memchr(data, '\n', size);
    if (nl1 == NULL) {
        return NULL;
    }

    nl2 = memchr(nl1 + 1, '\n', end - (nl1 + 1));
    if (nl2 == NULL) {
        nl2 = end;
    }

    token = malloc(size * 2 + 16);
    if (token == NULL) {
        return NULL;
    }

    p = token;
    p += fuzz_encode(p, data, nl1 - data);
    *p++ = '.';
    p += fuzz_encode(p, nl1 + 1, nl2 - (nl1 + 1));
    *p++ = '.';

    if (nl2 < end) {
        p += fuzz_encode(p, nl2 + 1, end - (nl2 + 1));
    }

    *len = p - token;

    return token;
}


/* base64url without padding, by OpenSSL's encoder; dst has room for NUL */

static size_t
fuzz_encode(char *dst, const uint8_t *src, size_t len)
{
    size_t  n, i;

    n = (size_t) EVP_EncodeBlock((unsigned char *) dst, src, (int) len);

    while (n && dst[n - 1] == '=') {
        n--;
    }

    for (i = 0; i < n; i++) {
        dst[i] = dst[i] == '+' ? '-' : dst[i] == '/' ? '_' : dst[i];
    }

    return n;
}
