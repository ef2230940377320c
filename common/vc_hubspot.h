/* vc_hubspot.h -- HubSpot's v3 webhook signatures */

#ifndef VC_HUBSPOT_H
#define VC_HUBSPOT_H

#include "vc_common.h"


/* HubSpot: refuse a request whose timestamp is older than 5 minutes */
#define VC_HUBSPOT_MAX_AGE_MS   300000

/* base64 of a SHA-256 HMAC, padded: what X-HubSpot-Signature-v3 holds */
#define VC_HUBSPOT_SIG_LEN      44


/* what vc_hubspot_sig_v3_check() found */
#define VC_HUBSPOT_SIG_OK          0
#define VC_HUBSPOT_SIG_BAD         1   /* well-formed, but another value */
#define VC_HUBSPOT_SIG_STALE       2   /* it matches; the time does not */
#define VC_HUBSPOT_SIG_MALFORMED   3   /* a header absent or not its form */
#define VC_HUBSPOT_SIG_ERROR       4   /* OpenSSL failed */


/*
 * Decodes in place the percent-escapes HubSpot decodes in the request URI
 * before it signs (its request validation guide): %3A ':', %2F '/',
 * %3F '?', %40 '@', %21 '!', %24 '$', %27 '\'', %28 '(', %29 ')',
 * %2A '*', %2C ',', %3B ';', in either case of hex digit.  Every other
 * escape (%20, %25, ...) stays as it is, and nothing is decoded twice
 * ("%253A" stays "%253A").  Returns the new length, never more than len.
 */
size_t vc_hubspot_uri_decode(unsigned char *uri, size_t len);

/*
 * The v3 signature of a request into out (VC_HUBSPOT_SIG_LEN bytes and a
 * NUL): base64(HMAC-SHA256(secret, method + uri + body + timestamp)),
 * uri the full URL already decoded (vc_hubspot_uri_decode()), timestamp
 * the header's text.  Returns VC_OK, or VC_ERROR when OpenSSL fails.
 */
int vc_hubspot_sig_v3(const unsigned char *secret, size_t secret_len,
    const char *method, size_t method_len, const char *uri, size_t uri_len,
    const unsigned char *body, size_t body_len, const char *timestamp,
    size_t timestamp_len, char *out);

/*
 * Checks X-HubSpot-Signature-v3 (signature) and X-HubSpot-Request-Timestamp
 * (timestamp, epoch milliseconds) of a request against the app's client
 * secret; a NULL header is an absent one.  The signature is compared in
 * constant time (CRYPTO_memcmp) as base64 text, and before the time, so
 * that VC_HUBSPOT_SIG_STALE is said only of a request HubSpot signed.  A
 * timestamp more than max_age_ms before now_ms, or as far after it (a
 * clock ahead), is stale.  The timestamp must be 1 to 15 digits and the
 * signature VC_HUBSPOT_SIG_LEN characters of standard base64, or the
 * request is VC_HUBSPOT_SIG_MALFORMED.  Returns a VC_HUBSPOT_SIG_* code.
 */
int vc_hubspot_sig_v3_check(const unsigned char *secret, size_t secret_len,
    const char *method, size_t method_len, const char *uri, size_t uri_len,
    const unsigned char *body, size_t body_len, const char *timestamp,
    size_t timestamp_len, const char *signature, size_t signature_len,
    int64_t now_ms, int64_t max_age_ms);


#endif /* VC_HUBSPOT_H */
