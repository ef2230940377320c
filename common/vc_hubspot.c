/* vc_hubspot.c -- HubSpot's v3 webhook signatures */

#include <string.h>

#include <openssl/crypto.h>

#include "vc_hubspot.h"
#include "vc_webhook.h"


/* the escapes HubSpot decodes, by the value of their two hex digits */
static const char  vc_hubspot_decoded[][2] = {
    { 0x3a, ':' }, { 0x2f, '/' }, { 0x3f, '?' }, { 0x40, '@' },
    { 0x21, '!' }, { 0x24, '$' }, { 0x27, '\'' }, { 0x28, '(' },
    { 0x29, ')' }, { 0x2a, '*' }, { 0x2c, ',' }, { 0x3b, ';' }
};


static int
vc_hubspot_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


size_t
vc_hubspot_uri_decode(unsigned char *uri, size_t len)
{
    int      hi, lo;
    size_t   i, j, k;

    for (i = 0, j = 0; i < len; i++, j++) {
        uri[j] = uri[i];

        if (uri[i] != '%' || len - i < 3) {
            continue;
        }

        hi = vc_hubspot_hex(uri[i + 1]);
        lo = vc_hubspot_hex(uri[i + 2]);

        if (hi < 0 || lo < 0) {
            continue;
        }

        for (k = 0; k < sizeof(vc_hubspot_decoded) / 2; k++) {
            if (vc_hubspot_decoded[k][0] == hi * 16 + lo) {
                uri[j] = vc_hubspot_decoded[k][1];
                i += 2;
                break;
            }
        }
    }

    return j;
}


int
vc_hubspot_sig_v3(const unsigned char *secret, size_t secret_len,
    const char *method, size_t method_len, const char *uri, size_t uri_len,
    const unsigned char *body, size_t body_len, const char *timestamp,
    size_t timestamp_len, char *out)
{
    int                rc;
    size_t             len;
    char               sig[VC_WEBHOOK_SIG_MAX];
    vc_webhook_part_t  parts[4];

    /* the body is hashed where it lies: it may be a megabyte */

    parts[0].data = (const unsigned char *) method;
    parts[0].len = method_len;
    parts[1].data = (const unsigned char *) uri;
    parts[1].len = uri_len;
    parts[2].data = body;
    parts[2].len = body_len;
    parts[3].data = (const unsigned char *) timestamp;
    parts[3].len = timestamp_len;

    rc = vc_webhook_sign(VC_WEBHOOK_SHA256, VC_WEBHOOK_BASE64, secret,
                         secret_len, parts, 4, sig, &len);

    /* 32 bytes: 44 characters, the last one '=', and a NUL */
    if (rc == VC_OK && len == VC_HUBSPOT_SIG_LEN) {
        memcpy(out, sig, VC_HUBSPOT_SIG_LEN + 1);

    } else {
        rc = VC_ERROR;
    }

    OPENSSL_cleanse(sig, sizeof(sig));

    return rc;
}


int
vc_hubspot_sig_v3_check(const unsigned char *secret, size_t secret_len,
    const char *method, size_t method_len, const char *uri, size_t uri_len,
    const unsigned char *body, size_t body_len, const char *timestamp,
    size_t timestamp_len, const char *signature, size_t signature_len,
    int64_t now_ms, int64_t max_age_ms)
{
    int     ok, when;
    char    want[VC_HUBSPOT_SIG_LEN + 1];
    size_t  i;

    if (signature == NULL || signature_len != VC_HUBSPOT_SIG_LEN) {
        return VC_HUBSPOT_SIG_MALFORMED;
    }

    /* milliseconds; a stale time is said only of a good signature */
    when = vc_webhook_timestamp(timestamp, timestamp_len, 1, now_ms,
                                max_age_ms);
    if (when == VC_WEBHOOK_TS_MALFORMED) {
        return VC_HUBSPOT_SIG_MALFORMED;
    }

    /* 43 characters of the alphabet and the '=' of 32 bytes */
    for (i = 0; i < VC_HUBSPOT_SIG_LEN - 1; i++) {
        if (!((signature[i] >= 'A' && signature[i] <= 'Z')
              || (signature[i] >= 'a' && signature[i] <= 'z')
              || (signature[i] >= '0' && signature[i] <= '9')
              || signature[i] == '+' || signature[i] == '/'))
        {
            return VC_HUBSPOT_SIG_MALFORMED;
        }
    }

    if (signature[VC_HUBSPOT_SIG_LEN - 1] != '=') {
        return VC_HUBSPOT_SIG_MALFORMED;
    }

    if (vc_hubspot_sig_v3(secret, secret_len, method, method_len, uri,
                          uri_len, body, body_len, timestamp, timestamp_len,
                          want)
        != VC_OK)
    {
        return VC_HUBSPOT_SIG_ERROR;
    }

    ok = vc_webhook_equal(want, VC_HUBSPOT_SIG_LEN, signature,
                          signature_len);

    OPENSSL_cleanse(want, sizeof(want));

    if (!ok) {
        return VC_HUBSPOT_SIG_BAD;
    }

    if (when != VC_WEBHOOK_TS_OK) {
        return VC_HUBSPOT_SIG_STALE;
    }

    return VC_HUBSPOT_SIG_OK;
}
