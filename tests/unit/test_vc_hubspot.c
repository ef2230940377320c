/* test_vc_hubspot.c -- HubSpot's v3 webhook signatures and URI decoding */

/*
 * The expected signatures were computed with Python's standard library,
 * independently of the code under test:
 *
 *   import base64, hashlib, hmac
 *   def v3(secret, method, uri, body, ts):
 *       return base64.b64encode(hmac.new(
 *           secret, method + uri + body + ts, hashlib.sha256).digest())
 *
 * with the byte strings given beside each vector below.  The decoded URIs
 * are what tests/fakes/hubspot/webhooks.py's signed_uri() gives.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vc_hubspot.h"


#define SECRET  "secret-1f2e3d"
#define URI     "https://hooks.example.com/hubspot/webhook"
#define BODY    "[{\"eventId\":1,\"objectId\":123}]"
#define TS      "1795950284821"
#define NOW     1795950284821LL

/* v3(SECRET, "POST", URI, BODY, TS) */
#define SIG     "MOE3vmLOpCY3Qr7SQJkubCmovENpcPfe1xUmbREJfsM="


static int
check(const char *secret, const char *uri, const char *body, const char *ts,
    const char *sig, int64_t now)
{
    return vc_hubspot_sig_v3_check((const unsigned char *) secret,
                                   strlen(secret), "POST", 4, uri,
                                   strlen(uri), (const unsigned char *) body,
                                   strlen(body), ts, ts ? strlen(ts) : 0,
                                   sig, sig ? strlen(sig) : 0, now,
                                   VC_HUBSPOT_MAX_AGE_MS);
}


static void
test_python_vectors(void **state)
{
    char  out[VC_HUBSPOT_SIG_LEN + 1];

    assert_int_equal(vc_hubspot_sig_v3((const unsigned char *) SECRET,
                                       strlen(SECRET), "POST", 4, URI,
                                       strlen(URI),
                                       (const unsigned char *) BODY,
                                       strlen(BODY), TS, strlen(TS), out),
                     VC_OK);
    assert_string_equal(out, SIG);

    assert_int_equal(check(SECRET, URI, BODY, TS, SIG, NOW),
                     VC_HUBSPOT_SIG_OK);

    /* v3(SECRET, "POST", URI, b"[]", TS) */
    assert_int_equal(check(SECRET, URI, "[]", TS,
                           "iOizgXIclwxWBB1T96kh9INDVzpulCscoMqAQSjs6t4=",
                           NOW),
                     VC_HUBSPOT_SIG_OK);

    /* v3(SECRET, "POST", URI + b"?portal=62515&x=a:b", BODY, TS) */
    assert_int_equal(check(SECRET, URI "?portal=62515&x=a:b", BODY, TS,
                           "bEJbeb9hKfY2OvM7r0SjOdUj/TJaKNI4A/X+SKjDLFg=",
                           NOW),
                     VC_HUBSPOT_SIG_OK);

    /* v3(b"another-secret", "POST", URI, BODY, TS) */
    assert_int_equal(check("another-secret", URI, BODY, TS,
                           "qdqk9KUMjQEUFBWviJSZEef8WuaOu2RV0Ofk4bWvv8o=",
                           NOW),
                     VC_HUBSPOT_SIG_OK);

    /* UTF-8 in the body: v3(SECRET, "POST", URI,
       '[{"propertyValue":"Zo\u00eb \u4e2d"}]'.encode(), TS) */
    assert_int_equal(check(SECRET, URI,
                           "[{\"propertyValue\":\"Zo\xc3\xab \xe4\xb8\xad\"}]",
                           TS, "P1dfBGOeuWGMEuUZLNM89WglIkAq69gFpe2bS07pfGc=",
                           NOW),
                     VC_HUBSPOT_SIG_OK);

    /* an empty body: v3(SECRET, "POST", b"http://127.0.0.1:8080/hs", b"",
       TS) */
    assert_int_equal(check(SECRET, "http://127.0.0.1:8080/hs", "", TS,
                           "sTxbSPIWLGv1l08oX2qfdBNgR6pCpL7ia4PlXLwdAkE=",
                           NOW),
                     VC_HUBSPOT_SIG_OK);
}


static void
test_any_change_is_a_bad_signature(void **state)
{
    assert_int_equal(check("secret-1f2e3e", URI, BODY, TS, SIG, NOW),
                     VC_HUBSPOT_SIG_BAD);
    assert_int_equal(check(SECRET, URI "/", BODY, TS, SIG, NOW),
                     VC_HUBSPOT_SIG_BAD);
    assert_int_equal(check(SECRET, "http://hooks.example.com/hubspot/webhook",
                           BODY, TS, SIG, NOW),
                     VC_HUBSPOT_SIG_BAD);
    assert_int_equal(check(SECRET, URI, "[{\"eventId\":1,\"objectId\":124}]",
                           TS, SIG, NOW),
                     VC_HUBSPOT_SIG_BAD);
    assert_int_equal(check(SECRET, URI, BODY, "1795950284822", SIG, NOW),
                     VC_HUBSPOT_SIG_BAD);

    /* another method */
    assert_int_equal(vc_hubspot_sig_v3_check((const unsigned char *) SECRET,
                                             strlen(SECRET), "PUT", 3, URI,
                                             strlen(URI),
                                             (const unsigned char *) BODY,
                                             strlen(BODY), TS, strlen(TS),
                                             SIG, strlen(SIG), NOW,
                                             VC_HUBSPOT_MAX_AGE_MS),
                     VC_HUBSPOT_SIG_BAD);

    /* one character of the signature */
    assert_int_equal(check(SECRET, URI, BODY, TS,
                           "MOE3vmLOpCY3Qr7SQJkubCmovENpcPfe1xUmbREJfsN=",
                           NOW),
                     VC_HUBSPOT_SIG_BAD);
    assert_int_equal(check(SECRET, URI, BODY, TS,
                           "mOE3vmLOpCY3Qr7SQJkubCmovENpcPfe1xUmbREJfsM=",
                           NOW),
                     VC_HUBSPOT_SIG_BAD);

    /* the secret is the client secret's bytes, not a prefix of them */
    assert_int_equal(vc_hubspot_sig_v3_check((const unsigned char *) SECRET,
                                             strlen(SECRET) - 1, "POST", 4,
                                             URI, strlen(URI),
                                             (const unsigned char *) BODY,
                                             strlen(BODY), TS, strlen(TS),
                                             SIG, strlen(SIG), NOW,
                                             VC_HUBSPOT_MAX_AGE_MS),
                     VC_HUBSPOT_SIG_BAD);
}


static void
test_the_five_minute_window(void **state)
{
    int64_t  ts = NOW;

    /* exactly 5 minutes old is in, a millisecond more is out */
    assert_int_equal(check(SECRET, URI, BODY, TS, SIG, ts + 300000),
                     VC_HUBSPOT_SIG_OK);
    assert_int_equal(check(SECRET, URI, BODY, TS, SIG, ts + 300001),
                     VC_HUBSPOT_SIG_STALE);
    assert_int_equal(check(SECRET, URI, BODY, TS, SIG, ts + 86400000),
                     VC_HUBSPOT_SIG_STALE);

    /* a clock ahead of ours by as much, the same */
    assert_int_equal(check(SECRET, URI, BODY, TS, SIG, ts - 300000),
                     VC_HUBSPOT_SIG_OK);
    assert_int_equal(check(SECRET, URI, BODY, TS, SIG, ts - 300001),
                     VC_HUBSPOT_SIG_STALE);

    /* seconds are not milliseconds: 1795950284 ms is January 1970;
       v3(SECRET, "POST", URI, BODY, b"1795950284") */
    assert_int_equal(check(SECRET, URI, BODY, "1795950284",
                           "ANKy2kualpjoNwoKUeAbEdOhl0MjeRaB1dIZnO7DWCA=",
                           NOW),
                     VC_HUBSPOT_SIG_STALE);

    /* stale is said only of a signature that matches */
    assert_int_equal(check(SECRET, URI, BODY, TS,
                           "MOE3vmLOpCY3Qr7SQJkubCmovENpcPfe1xUmbREJfsN=",
                           ts + 86400000),
                     VC_HUBSPOT_SIG_BAD);
}


static void
test_malformed_headers(void **state)
{
    assert_int_equal(check(SECRET, URI, BODY, NULL, SIG, NOW),
                     VC_HUBSPOT_SIG_MALFORMED);
    assert_int_equal(check(SECRET, URI, BODY, TS, NULL, NOW),
                     VC_HUBSPOT_SIG_MALFORMED);
    assert_int_equal(check(SECRET, URI, BODY, "", SIG, NOW),
                     VC_HUBSPOT_SIG_MALFORMED);
    assert_int_equal(check(SECRET, URI, BODY, TS, "", NOW),
                     VC_HUBSPOT_SIG_MALFORMED);
    assert_int_equal(check(SECRET, URI, BODY, "-1795950284821", SIG, NOW),
                     VC_HUBSPOT_SIG_MALFORMED);
    assert_int_equal(check(SECRET, URI, BODY, "1795950284821.0", SIG, NOW),
                     VC_HUBSPOT_SIG_MALFORMED);
    assert_int_equal(check(SECRET, URI, BODY, " 1795950284821", SIG, NOW),
                     VC_HUBSPOT_SIG_MALFORMED);
    assert_int_equal(check(SECRET, URI, BODY, "1234567890123456", SIG, NOW),
                     VC_HUBSPOT_SIG_MALFORMED);

    /* unpadded, base64url, hex, a space, one character short or long */
    assert_int_equal(check(SECRET, URI, BODY, TS,
                           "MOE3vmLOpCY3Qr7SQJkubCmovENpcPfe1xUmbREJfsM",
                           NOW),
                     VC_HUBSPOT_SIG_MALFORMED);
    assert_int_equal(check(SECRET, URI, BODY, TS,
                           "MOE3vmLOpCY3Qr7SQJkubCmovENpcPfe1xUmbREJfsM==",
                           NOW),
                     VC_HUBSPOT_SIG_MALFORMED);
    assert_int_equal(check(SECRET, URI, BODY, TS,
                           "MOE3vmLOpCY3Qr7SQJkubCmovENpcPfe1xUmbREJ_sM=",
                           NOW),
                     VC_HUBSPOT_SIG_MALFORMED);
    assert_int_equal(check(SECRET, URI, BODY, TS,
                           "MOE3vmLOpCY3Qr7SQJkubCmovENpcPfe1xUmbREJ sM=",
                           NOW),
                     VC_HUBSPOT_SIG_MALFORMED);
    assert_int_equal(check(SECRET, URI, BODY, TS,
                           "30e137be62cea4263742bed240992e6c29a8bc43"
                           "6970f7ded715266d11097ec3", NOW),
                     VC_HUBSPOT_SIG_MALFORMED);
}


static void
decoded(const char *in, const char *want)
{
    char    buf[256];
    size_t  len;

    len = strlen(in);
    memcpy(buf, in, len);
    len = vc_hubspot_uri_decode((unsigned char *) buf, len);
    buf[len] = '\0';

    assert_string_equal(buf, want);
}


static void
test_uri_decoding(void **state)
{
    decoded("https://h.example/hs", "https://h.example/hs");
    decoded("", "");

    /* each of the twelve, in upper and lower case */
    decoded("%3A%2F%3F%40%21%24%27%28%29%2A%2C%3B", ":/?@!$'()*,;");
    decoded("%3a%2f%3f%40%21%24%27%28%29%2a%2c%3b", ":/?@!$'()*,;");
    decoded("https://h.example/hs?next=https%3A%2F%2Fx.example%2Fa",
            "https://h.example/hs?next=https://x.example/a");

    /* others stay escaped, and nothing is decoded twice */
    decoded("/a%20b%25c%2Bd%7E", "/a%20b%25c%2Bd%7E");
    decoded("/x%253A", "/x%253A");
    decoded("/x%%3A", "/x%:");

    /* a cut or invalid escape is left */
    decoded("/x%3", "/x%3");
    decoded("/x%", "/x%");
    decoded("/x%G3A", "/x%G3A");
    decoded("/x%3G", "/x%3G");
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_python_vectors),
        cmocka_unit_test(test_any_change_is_a_bad_signature),
        cmocka_unit_test(test_the_five_minute_window),
        cmocka_unit_test(test_malformed_headers),
        cmocka_unit_test(test_uri_decoding),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
