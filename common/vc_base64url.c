/* vc_base64url.c -- strict unpadded base64url decoding on OpenSSL's decoder */

#include <string.h>

#include <openssl/evp.h>

#include "vc_common.h"


/*
 * Characters per EVP_DecodeBlock() call: a multiple of 4, so that every
 * chunk but the last decodes to exactly 3/4 of its length.
 */
#define VC_B64_CHUNK  512


/* the 6-bit value of a base64url character, or -1 */
static int vc_base64url_value(unsigned char ch);


long
vc_base64url_decode(unsigned char *dst, const char *src, size_t len)
{
    char           buf[VC_B64_CHUNK];
    size_t         i, n, done, rest, out;
    int            v, rc;
    unsigned char  ch;

    if (len % 4 == 1) {
        return -1;
    }

    if (len > (size_t) 0x7fffffff) {
        /* EVP_DecodeBlock() takes an int */
        return -1;
    }

    /* the alphabet first, so that nothing is written for a bad input */

    v = 0;

    for (i = 0; i < len; i++) {
        v = vc_base64url_value((unsigned char) src[i]);
        if (v < 0) {
            return -1;
        }
    }

    /*
     * The bits of the last character beyond the decoded bytes must be zero:
     * 2 characters carry 1 byte and 4 spare bits, 3 carry 2 bytes and 2.
     */

    if ((len % 4 == 2 && (v & 0x0f)) || (len % 4 == 3 && (v & 0x03))) {
        return -1;
    }

    out = 0;

    for (done = 0; done < len; done += n) {
        rest = len - done;
        n = rest < VC_B64_CHUNK ? rest : VC_B64_CHUNK;

        for (i = 0; i < n; i++) {
            ch = (unsigned char) src[done + i];
            buf[i] = ch == '-' ? '+' : ch == '_' ? '/' : (char) ch;
        }

        /*
         * A short last group is completed with 'A' (zero bits) instead of
         * '=': the spare bits are known to be zero, the bytes they make are
         * dropped from the count below, and dst has room for a whole group.
         */

        rest = n;
        while (rest % 4) {
            buf[rest++] = 'A';
        }

        rc = EVP_DecodeBlock(dst + out, (unsigned char *) buf, (int) rest);
        if (rc < 0 || (size_t) rc != rest / 4 * 3) {
            return -1;
        }

        out += n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    }

    return (long) out;
}


static int
vc_base64url_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z') {
        return ch - 'A';
    }

    if (ch >= 'a' && ch <= 'z') {
        return ch - 'a' + 26;
    }

    if (ch >= '0' && ch <= '9') {
        return ch - '0' + 52;
    }

    if (ch == '-') {
        return 62;
    }

    if (ch == '_') {
        return 63;
    }

    return -1;
}
