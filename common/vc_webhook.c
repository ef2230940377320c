/* vc_webhook.c -- HMAC signatures of inbound webhooks */

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "vc_webhook.h"


static const char  *vc_webhook_digests[] = { "SHA256", "SHA512", "SHA1" };


static void
vc_webhook_hex(const unsigned char *md, size_t len, char *out)
{
    size_t             i;
    static const char  hex[] = "0123456789abcdef";

    for (i = 0; i < len; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0x0f];
    }

    out[2 * len] = '\0';
}


int
vc_webhook_sign(int alg, int enc, const unsigned char *key, size_t key_len,
    const vc_webhook_part_t *parts, size_t nparts, char *out,
    size_t *out_len)
{
    int            rc, n;
    size_t         i, len;
    EVP_MAC       *mac;
    OSSL_PARAM     params[2];
    EVP_MAC_CTX   *ctx;
    unsigned char  md[EVP_MAX_MD_SIZE];

    if (alg < VC_WEBHOOK_SHA256 || alg > VC_WEBHOOK_SHA1) {
        return VC_ERROR;
    }

    rc = VC_ERROR;
    len = 0;

    mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL) {
        return VC_ERROR;
    }

    ctx = EVP_MAC_CTX_new(mac);
    if (ctx == NULL) {
        goto done;
    }

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                    (char *) vc_webhook_digests[alg], 0);
    params[1] = OSSL_PARAM_construct_end();

    if (EVP_MAC_init(ctx, key, key_len, params) != 1) {
        goto done;
    }

    /* the body is one part or several: hashed where it lies */
    for (i = 0; i < nparts; i++) {
        if (parts[i].len
            && EVP_MAC_update(ctx, parts[i].data, parts[i].len) != 1)
        {
            goto done;
        }
    }

    if (EVP_MAC_final(ctx, md, &len, sizeof(md)) != 1 || len > 64) {
        goto done;
    }

    if (enc == VC_WEBHOOK_HEX) {
        vc_webhook_hex(md, len, out);
        *out_len = 2 * len;

    } else {
        /* 64 bytes at most: 88 characters and a NUL */
        n = EVP_EncodeBlock((unsigned char *) out, md, (int) len);
        if (n <= 0) {
            goto done;
        }

        *out_len = (size_t) n;
    }

    rc = VC_OK;

done:

    OPENSSL_cleanse(md, sizeof(md));
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);

    return rc;
}


int
vc_webhook_sha256_hex(const vc_webhook_part_t *parts, size_t nparts,
    char *out)
{
    int            rc;
    size_t         i;
    unsigned int   len;
    EVP_MD_CTX    *ctx;
    unsigned char  md[EVP_MAX_MD_SIZE];

    rc = VC_ERROR;

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        return VC_ERROR;
    }

    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        goto done;
    }

    for (i = 0; i < nparts; i++) {
        if (parts[i].len
            && EVP_DigestUpdate(ctx, parts[i].data, parts[i].len) != 1)
        {
            goto done;
        }
    }

    if (EVP_DigestFinal_ex(ctx, md, &len) != 1 || len != 32) {
        goto done;
    }

    vc_webhook_hex(md, 32, out);
    rc = VC_OK;

done:

    OPENSSL_cleanse(md, sizeof(md));
    EVP_MD_CTX_free(ctx);

    return rc;
}


int
vc_webhook_equal(const char *expected, size_t expected_len,
    const char *received, size_t received_len)
{
    if (expected_len == 0 || expected_len != received_len) {
        return 0;
    }

    return CRYPTO_memcmp(expected, received, expected_len) == 0;
}


int
vc_webhook_timestamp(const char *ts, size_t len, int64_t unit_ms,
    int64_t now_ms, int64_t tolerance_ms)
{
    size_t   i;
    int64_t  t;

    if (ts == NULL || len == 0 || len > 15) {
        return VC_WEBHOOK_TS_MALFORMED;
    }

    t = 0;

    for (i = 0; i < len; i++) {
        if (ts[i] < '0' || ts[i] > '9') {
            return VC_WEBHOOK_TS_MALFORMED;
        }

        t = t * 10 + (ts[i] - '0');
    }

    /* 15 digits of milliseconds times 1000 still fit in 63 bits */
    t *= unit_ms;

    if (now_ms - t > tolerance_ms) {
        return VC_WEBHOOK_TS_STALE;
    }

    if (t - now_ms > tolerance_ms) {
        return VC_WEBHOOK_TS_FUTURE;
    }

    return VC_WEBHOOK_TS_OK;
}


int
vc_webhook_item(const char *h, size_t len, char sep, char kv,
    const char *name, size_t name_len, size_t *pos, const char **value,
    size_t *value_len)
{
    size_t  i, start, end, k;

    i = *pos;

    while (i < len) {

        while (i < len && (h[i] == ' ' || h[i] == '\t' || h[i] == sep)) {
            i++;
        }

        start = i;

        while (i < len && h[i] != sep) {
            i++;
        }

        end = i;

        while (end > start && (h[end - 1] == ' ' || h[end - 1] == '\t')) {
            end--;
        }

        if (end - start <= name_len || h[start + name_len] != kv
            || memcmp(h + start, name, name_len) != 0)
        {
            continue;
        }

        k = start + name_len + 1;

        *value = h + k;
        *value_len = end - k;
        *pos = i;

        return 1;
    }

    *pos = len;

    return 0;
}


int
vc_webhook_base64_decode(const char *in, size_t len, unsigned char *out,
    size_t *out_len)
{
    int     n;
    size_t  pad;

    if (len == 0 || len % 4 != 0 || len > 65536) {
        return VC_ERROR;
    }

    pad = 0;

    if (in[len - 1] == '=') {
        pad++;

        if (in[len - 2] == '=') {
            pad++;
        }
    }

    /* EVP_DecodeBlock() counts the padding as zero bytes */
    n = EVP_DecodeBlock(out, (const unsigned char *) in, (int) len);
    if (n < 0 || (size_t) n < pad) {
        return VC_ERROR;
    }

    *out_len = (size_t) n - pad;

    return VC_OK;
}
