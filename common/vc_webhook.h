/* vc_webhook.h -- HMAC signatures of inbound webhooks */

#ifndef VC_WEBHOOK_H
#define VC_WEBHOOK_H

#include "vc_common.h"


#define VC_WEBHOOK_SHA256          0
#define VC_WEBHOOK_SHA512          1
#define VC_WEBHOOK_SHA1            2

#define VC_WEBHOOK_HEX             0
#define VC_WEBHOOK_BASE64          1

/* the longest text vc_webhook_sign() writes: hex of SHA-512, and a NUL */
#define VC_WEBHOOK_SIG_MAX         129


/* what vc_webhook_timestamp() found */
#define VC_WEBHOOK_TS_OK           0
#define VC_WEBHOOK_TS_STALE        1   /* older than the tolerance */
#define VC_WEBHOOK_TS_FUTURE       2   /* further ahead than it */
#define VC_WEBHOOK_TS_MALFORMED    3   /* not 1 to 15 digits */


/* one piece of the signed string, hashed where it lies */
typedef struct {
    const unsigned char        *data;
    size_t                      len;
} vc_webhook_part_t;


/*
 * The HMAC (alg a VC_WEBHOOK_SHA*) of the concatenated parts with key,
 * encoded (VC_WEBHOOK_HEX, lower case, or VC_WEBHOOK_BASE64, standard
 * alphabet, padded) into out, which holds VC_WEBHOOK_SIG_MAX bytes; the
 * text is NUL-terminated and its length stored in *out_len.  Returns
 * VC_OK, or VC_ERROR when OpenSSL fails.
 */
int vc_webhook_sign(int alg, int enc, const unsigned char *key,
    size_t key_len, const vc_webhook_part_t *parts, size_t nparts,
    char *out, size_t *out_len);

/*
 * Hex (lower case) of the plain SHA-256 of the concatenated parts, into
 * out (65 bytes): HubSpot's v2 signature.  Returns VC_OK or VC_ERROR.
 */
int vc_webhook_sha256_hex(const vc_webhook_part_t *parts, size_t nparts,
    char *out);

/*
 * 1 when the expected signature text equals the one received, else 0.
 * The length is not secret; the bytes are compared in constant time.
 */
int vc_webhook_equal(const char *expected, size_t expected_len,
    const char *received, size_t received_len);

/*
 * Checks a timestamp header's text (1 to 15 decimal digits, in units of
 * unit_ms milliseconds: 1000 for seconds, 1 for milliseconds) against
 * now_ms: more than tolerance_ms before it is VC_WEBHOOK_TS_STALE, more
 * than tolerance_ms after it VC_WEBHOOK_TS_FUTURE.  Returns a
 * VC_WEBHOOK_TS_* code.
 */
int vc_webhook_timestamp(const char *ts, size_t len, int64_t unit_ms,
    int64_t now_ms, int64_t tolerance_ms);

/*
 * Walks a header made of items separated by sep (optional spaces around
 * each item are skipped), each item "<name><kv><value>": Stripe's
 * "t=1,v1=ab,v1=cd" (sep ',', kv '='), Svix's "v1,ab v1,cd" (sep ' ', kv
 * ',').  From *pos (0 at first), finds the next item whose name is name,
 * stores its value and advances *pos past it.  Returns 1 when one was
 * found, 0 at the end.
 */
int vc_webhook_item(const char *h, size_t len, char sep, char kv,
    const char *name, size_t name_len, size_t *pos, const char **value,
    size_t *value_len);

/*
 * Decodes standard base64 (padded) into out, which holds at least
 * len / 4 * 3 bytes; *out_len gets the decoded length.  Returns VC_OK, or
 * VC_ERROR when it is not base64.  For Svix's "whsec_" secrets.
 */
int vc_webhook_base64_decode(const char *in, size_t len, unsigned char *out,
    size_t *out_len);


#endif /* VC_WEBHOOK_H */
