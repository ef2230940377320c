/* test_vc_webhook.c -- HMAC signatures of inbound webhooks */

/*
 * The expected values were computed with Python's standard library,
 * independently of the code under test:
 *
 *   import base64, hashlib, hmac
 *   hmac.new(KEY, BODY, hashlib.sha256).hexdigest()
 *   base64.b64encode(hmac.new(KEY, BODY, hashlib.sha256).digest())
 *   hmac.new(KEY, b"1700000000." + BODY, hashlib.sha256).hexdigest()
 *   hashlib.sha256(b"secretPOSThttps://h.example/x" + BODY).hexdigest()
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vc_webhook.h"


#define KEY      "whk-secret-9a8b"
#define BODY     "{\"event\":\"envelope-completed\",\"data\":" \
                 "{\"envelopeId\":\"e1\"}}\r\n"

#define B64_256  "+aEym8LOf7hnXTy1EsaO0/Rd4w/9SY5EuwWa/sS3NyA="
#define HEX_256  "f9a1329bc2ce7fb8675d3cb512c68ed3f45de30ffd498e44bb059afe" \
                 "c4b73720"
#define HEX_512  "25e98ceaf80ba5c978ac13b03401d6a68805d4b88a6248b933d93a71" \
                 "ab1ac24d69751bd5d8e18c5e816e31d41e570b00b17f7bed3eca566b" \
                 "9b32348426300733"
#define B64_512  "JemM6vgLpcl4rBOwNAHWpogF1LiKYki5M9k6casawk1pdRvV2OGMXoFu" \
                 "MdQeVwsAsX977T7KVmubMjSEJjAHMw=="
#define HEX_1    "60af59b0fe54d0a7f0deadda67a9547ef35fc59d"
#define STRIPE   "e080d0a874dee7ace8946051b926137e291b3ade890a6da4de119280" \
                 "8eca2948"
#define V2       "b495c978c71337283c3fd748df4ec1b238430b84547177f3c226253b" \
                 "9ea813d1"


static void
sign(int alg, int enc, const vc_webhook_part_t *parts, size_t n,
    const char *want)
{
    char    out[VC_WEBHOOK_SIG_MAX];
    size_t  len;

    assert_int_equal(vc_webhook_sign(alg, enc, (const unsigned char *) KEY,
                                     strlen(KEY), parts, n, out, &len),
                     VC_OK);
    assert_int_equal(len, strlen(want));
    assert_string_equal(out, want);
}


static void
test_python_vectors(void **state)
{
    vc_webhook_part_t  body[1] = { { (const unsigned char *) BODY,
                                     sizeof(BODY) - 1 } };

    sign(VC_WEBHOOK_SHA256, VC_WEBHOOK_BASE64, body, 1, B64_256);
    sign(VC_WEBHOOK_SHA256, VC_WEBHOOK_HEX, body, 1, HEX_256);
    sign(VC_WEBHOOK_SHA512, VC_WEBHOOK_HEX, body, 1, HEX_512);
    sign(VC_WEBHOOK_SHA512, VC_WEBHOOK_BASE64, body, 1, B64_512);
    sign(VC_WEBHOOK_SHA1, VC_WEBHOOK_HEX, body, 1, HEX_1);
}


static void
test_parts_concatenate(void **state)
{
    /* the body split anywhere signs the same; empty parts are nothing */
    vc_webhook_part_t  split[4] = {
        { (const unsigned char *) BODY, 5 },
        { (const unsigned char *) "", 0 },
        { (const unsigned char *) BODY + 5, 20 },
        { (const unsigned char *) BODY + 25, sizeof(BODY) - 26 }
    };
    vc_webhook_part_t  stripe[3] = {
        { (const unsigned char *) "1700000000", 10 },
        { (const unsigned char *) ".", 1 },
        { (const unsigned char *) BODY, sizeof(BODY) - 1 }
    };

    sign(VC_WEBHOOK_SHA256, VC_WEBHOOK_HEX, split, 4, HEX_256);
    sign(VC_WEBHOOK_SHA256, VC_WEBHOOK_HEX, stripe, 3, STRIPE);
}


static void
test_sha256_hex(void **state)
{
    char               out[65];
    vc_webhook_part_t  parts[2] = {
        { (const unsigned char *) "secretPOSThttps://h.example/x", 29 },
        { (const unsigned char *) BODY, sizeof(BODY) - 1 }
    };

    assert_int_equal(vc_webhook_sha256_hex(parts, 2, out), VC_OK);
    assert_string_equal(out, V2);
}


static void
test_equal(void **state)
{
    assert_true(vc_webhook_equal(HEX_1, 40, HEX_1, 40));
    assert_false(vc_webhook_equal(HEX_1, 40, HEX_1, 39));
    assert_false(vc_webhook_equal(HEX_1, 40,
                                  "60af59b0fe54d0a7f0deadda67a9547ef35fc59e",
                                  40));
    assert_false(vc_webhook_equal("", 0, "", 0));
}


static void
test_timestamp(void **state)
{
    int64_t  now = 1700000000000LL;

    assert_int_equal(vc_webhook_timestamp("1700000000", 10, 1000, now,
                                          300000), VC_WEBHOOK_TS_OK);
    assert_int_equal(vc_webhook_timestamp("1699999700", 10, 1000, now,
                                          300000), VC_WEBHOOK_TS_OK);
    assert_int_equal(vc_webhook_timestamp("1699999699", 10, 1000, now,
                                          300000), VC_WEBHOOK_TS_STALE);
    assert_int_equal(vc_webhook_timestamp("1700000301", 10, 1000, now,
                                          300000), VC_WEBHOOK_TS_FUTURE);
    assert_int_equal(vc_webhook_timestamp("1700000000000", 13, 1, now,
                                          300000), VC_WEBHOOK_TS_OK);
    assert_int_equal(vc_webhook_timestamp("1700000000x", 11, 1000, now,
                                          300000), VC_WEBHOOK_TS_MALFORMED);
    assert_int_equal(vc_webhook_timestamp("", 0, 1000, now, 300000),
                     VC_WEBHOOK_TS_MALFORMED);
    assert_int_equal(vc_webhook_timestamp("1234567890123456", 16, 1, now,
                                          300000), VC_WEBHOOK_TS_MALFORMED);
    assert_int_equal(vc_webhook_timestamp("-1", 2, 1000, now, 300000),
                     VC_WEBHOOK_TS_MALFORMED);
}


static void
test_items(void **state)
{
    size_t       pos, len;
    const char  *v;
    const char  *stripe = "t=1700000000, v1=abc,v0=zzz,v1=def";
    const char  *svix = "v1,AAA= v2,BBB  v1,CCC";

    pos = 0;
    assert_int_equal(vc_webhook_item(stripe, strlen(stripe), ',', '=', "t",
                                     1, &pos, &v, &len), 1);
    assert_int_equal(len, 10);
    assert_memory_equal(v, "1700000000", 10);

    pos = 0;
    assert_int_equal(vc_webhook_item(stripe, strlen(stripe), ',', '=', "v1",
                                     2, &pos, &v, &len), 1);
    assert_memory_equal(v, "abc", len);
    assert_int_equal(vc_webhook_item(stripe, strlen(stripe), ',', '=', "v1",
                                     2, &pos, &v, &len), 1);
    assert_int_equal(len, 3);
    assert_memory_equal(v, "def", len);
    assert_int_equal(vc_webhook_item(stripe, strlen(stripe), ',', '=', "v1",
                                     2, &pos, &v, &len), 0);

    pos = 0;
    assert_int_equal(vc_webhook_item(svix, strlen(svix), ' ', ',', "v1", 2,
                                     &pos, &v, &len), 1);
    assert_int_equal(len, 4);
    assert_memory_equal(v, "AAA=", 4);
    assert_int_equal(vc_webhook_item(svix, strlen(svix), ' ', ',', "v1", 2,
                                     &pos, &v, &len), 1);
    assert_memory_equal(v, "CCC", 3);
    assert_int_equal(vc_webhook_item(svix, strlen(svix), ' ', ',', "v1", 2,
                                     &pos, &v, &len), 0);

    /* a name that is only a prefix of the item's is not it */
    pos = 0;
    assert_int_equal(vc_webhook_item("v10=x", 5, ',', '=', "v1", 2, &pos,
                                     &v, &len), 0);
}


static void
test_base64_decode(void **state)
{
    unsigned char  out[16];
    size_t         len;

    assert_int_equal(vc_webhook_base64_decode("AAFzdml4LWtlef8=", 16, out,
                                              &len), VC_OK);
    assert_int_equal(len, 11);
    assert_memory_equal(out, "\x00\x01svix-key\xff", 11);

    assert_int_equal(vc_webhook_base64_decode("AAFzdml4LWtlef8", 15, out,
                                              &len), VC_ERROR);
    assert_int_equal(vc_webhook_base64_decode("AA*zdml4LWtlef8=", 16, out,
                                              &len), VC_ERROR);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_python_vectors),
        cmocka_unit_test(test_parts_concatenate),
        cmocka_unit_test(test_sha256_hex),
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_timestamp),
        cmocka_unit_test(test_items),
        cmocka_unit_test(test_base64_decode),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
