/* test_vc_base64url.c -- strict base64url decoding: vectors and round trips */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/evp.h>

#include "vc_common.h"


/* decodes src from an exact-size heap copy, so that ASan sees any over-read */

static long
decode(unsigned char *dst, const char *src, size_t len)
{
    char  *copy;
    long   n;

    copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, src, len);

    n = vc_base64url_decode(dst, copy, len);

    free(copy);

    return n;
}


static void
test_rfc4648_vectors(void **state)
{
    /* RFC 4648 section 10, padding removed */
    static const struct {
        const char  *enc;
        const char  *dec;
    } v[] = {
        { "", "" }, { "Zg", "f" }, { "Zm8", "fo" }, { "Zm9v", "foo" },
        { "Zm9vYg", "foob" }, { "Zm9vYmE", "fooba" }, { "Zm9vYmFy", "foobar" }
    };
    unsigned char  out[16];
    size_t         i;
    long           n;

    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        memset(out, 0xaa, sizeof(out));
        n = decode(out, v[i].enc, strlen(v[i].enc));
        assert_int_equal(n, strlen(v[i].dec));
        assert_memory_equal(out, v[i].dec, n);
    }
}


static void
test_url_alphabet(void **state)
{
    unsigned char  out[8];

    /* 0xfb 0xff 0xbf is "+/+/" in standard base64 */
    assert_int_equal(decode(out, "-_-_", 4), 3);
    assert_memory_equal(out, "\xfb\xff\xbf", 3);

    assert_int_equal(decode(out, "____", 4), 3);
    assert_memory_equal(out, "\xff\xff\xff", 3);

    assert_int_equal(decode(out, "AAAA", 4), 3);
    assert_memory_equal(out, "\0\0\0", 3);
}


static void
test_refused(void **state)
{
    static const char  *bad[] = {
        "Z",            /* 1 mod 4 */
        "Zm9vY",
        "Zg==",         /* padding */
        "Zm8=",
        "Zm9v====",
        "Zm+v",         /* standard alphabet */
        "Zm/v",
        "Zm9 v",
        " Zm9v",
        "Zm9v\n",
        "Zm9v.",
        "Zh",           /* trailing bits: "f" is "Zg" */
        "Zm9",          /* "fo" is "Zm8" */
        "Zm_",
        "AB",
        "AAB"
    };
    unsigned char  out[16];
    size_t         i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(decode(out, bad[i], strlen(bad[i])), -1);
    }

    /* a NUL and a high byte */
    assert_int_equal(decode(out, "Zm\0v", 4), -1);
    assert_int_equal(decode(out, "Zm\xc3v", 4), -1);
}


/*
 * Every byte in every place of a group and of a short last group: refused
 * unless it is one of the 64 characters, each of which decodes to its value
 * (decoder tables are easily off by one).
 */

static void
test_every_byte(void **state)
{
    static const char  alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "abcdefghijklmnopqrstuvwxyz0123456789-_";
    const char     *v;
    unsigned char   out[8];
    char            src[7];
    size_t          pos, len;
    int             c;
    long            n;

    for (c = 0; c < 256; c++) {
        v = c ? memchr(alphabet, c, 64) : NULL;

        for (len = 6; len <= 7; len++) {
            /* 4 + 2 or 4 + 3 characters, the spare bits zero: "AAAAAA" */

            for (pos = 0; pos < len - 1; pos++) {
                memset(src, 'A', sizeof(src));
                src[pos] = (char) c;

                n = decode(out, src, len);

                if (v == NULL) {
                    assert_int_equal(n, -1);
                    continue;
                }

                assert_int_equal(n, len == 6 ? 4 : 5);

                /* its 6 bits, at bit 6 * pos of the output, all else 0 */
                assert_int_equal(((out[pos * 6 / 8] << 8
                                   | out[pos * 6 / 8 + 1])
                                  >> (10 - pos * 6 % 8)) & 0x3f,
                                 v - alphabet);
            }
        }
    }
}


static void
test_length_stops(void **state)
{
    unsigned char  out[8];

    /* only len bytes are read: the rest of the string is not looked at */
    assert_int_equal(vc_base64url_decode(out, "Zm9v!!!!", 4), 3);
    assert_memory_equal(out, "foo", 3);
    assert_int_equal(vc_base64url_decode(out, "Zg==", 2), 1);
    assert_int_equal(out[0], 'f');
}


/*
 * Round trips against OpenSSL's encoder for every length across several
 * decoder chunks: the expected text is not made by the code under test.
 */

static void
test_round_trip(void **state)
{
    unsigned char  *in, *enc, *out;
    size_t          len, i, elen;
    long            n;

    in = malloc(1600);
    enc = malloc(1600 / 3 * 4 + 8);
    out = malloc(1600 + 8);
    assert_non_null(in);
    assert_non_null(enc);
    assert_non_null(out);

    for (i = 0; i < 1600; i++) {
        in[i] = (unsigned char) (i * 7 + (i >> 8) * 13);
    }

    for (len = 0; len <= 1600; len++) {
        elen = (size_t) EVP_EncodeBlock(enc, in, (int) len);

        while (elen && enc[elen - 1] == '=') {
            elen--;
        }

        for (i = 0; i < elen; i++) {
            enc[i] = enc[i] == '+' ? '-' : enc[i] == '/' ? '_' : enc[i];
        }

        assert_true(vc_base64url_decoded_len(elen) >= len);

        n = decode(out, (char *) enc, elen);
        assert_int_equal(n, len);
        assert_memory_equal(out, in, len);
    }

    free(in);
    free(enc);
    free(out);
}


static void
test_output_bound(void **state)
{
    unsigned char  *out;
    long            n;

    /* dst of exactly vc_base64url_decoded_len() bytes, on the heap */

    out = malloc(vc_base64url_decoded_len(2));
    n = decode(out, "Zg", 2);
    assert_int_equal(n, 1);
    free(out);

    out = malloc(vc_base64url_decoded_len(3));
    n = decode(out, "Zm8", 3);
    assert_int_equal(n, 2);
    free(out);

    out = malloc(vc_base64url_decoded_len(515));
    memset(out, 0, vc_base64url_decoded_len(515));
    {
        char  src[515];

        memset(src, 'A', sizeof(src));
        n = decode(out, src, sizeof(src));
        assert_int_equal(n, 386);
    }
    free(out);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_url_alphabet),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_every_byte),
        cmocka_unit_test(test_length_stops),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_output_bound),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
