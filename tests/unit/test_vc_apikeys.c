/* test_vc_apikeys.c -- key files: parsing, errors, lookup, expiry, scopes */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/evp.h>

#include "vc_apikeys.h"


/* SHA-256 of "vk_a1_secret-one", "vk_a2_secret-two", "vk_b1_secret-three" */
static unsigned char  d1[32], d2[32], d3[32];
static char           h1[65], h2[65], h3[65];


static void
digest(const char *key, unsigned char *d, char *hex)
{
    int           i;
    unsigned int  n;

    assert_int_equal(EVP_Digest(key, strlen(key), d, &n, EVP_sha256(),
                                NULL), 1);

    for (i = 0; i < 32; i++) {
        sprintf(hex + 2 * i, "%02x", d[i]);
    }
}


static int
setup(void **state)
{
    digest("vk_a1_secret-one", d1, h1);
    digest("vk_a2_secret-two", d2, h2);
    digest("vk_b1_secret-three", d3, h3);
    return 0;
}


static char *
file3(void)
{
    static char  buf[2048];

    /* h2 in upper case: hex digits in either case */
    char  up[65];
    int   i;

    for (i = 0; i < 65; i++) {
        up[i] = (h2[i] >= 'a' && h2[i] <= 'f') ? h2[i] - 32 : h2[i];
    }

    snprintf(buf, sizeof(buf),
             "{\"keys\": ["
             "{\"id\": \"a1\", \"sha256\": \"%s\", \"tenant\": \"acme\","
             " \"scopes\": [\"accounts:read\", \"accounts:write\"],"
             " \"created\": \"2025-01-01T00:00:00Z\", \"note\": \"ci\"},"
             "{\"id\": \"a2\", \"sha256\": \"%s\", \"tenant\": \"acme\","
             " \"expires\": \"2030-01-01T00:00:00Z\"},"
             "{\"id\": \"b.1-x\", \"sha256\": \"%s\", \"tenant\": \"globex\","
             " \"scopes\": [], \"expires\": 1000, \"disabled\": false}"
             "]}", h1, up, h3);

    return buf;
}


static void
test_load_and_find(void **state)
{
    char                errstr[VC_ERRSTR_LEN];
    unsigned char       other[32];
    vc_apikeys_t        set;
    const vc_apikey_t  *k;

    memset(&set, 0, sizeof(set));
    assert_int_equal(vc_apikeys_load(&set, file3(), strlen(file3()), errstr,
                                     sizeof(errstr)), VC_OK);
    assert_int_equal(set.nkeys, 3);

    k = vc_apikeys_find(&set, d1);
    assert_non_null(k);
    assert_string_equal(k->id, "a1");
    assert_string_equal(k->tenant, "acme");
    assert_string_equal(k->scopes, "accounts:read accounts:write");
    assert_int_equal(k->scopes_len, strlen(k->scopes));
    assert_int_equal(k->expires, 0);
    assert_false(k->disabled);

    k = vc_apikeys_find(&set, d2);
    assert_non_null(k);
    assert_string_equal(k->id, "a2");
    assert_string_equal(k->scopes, "");
    assert_int_equal(k->expires, 1893456000);

    k = vc_apikeys_find(&set, d3);
    assert_non_null(k);
    assert_string_equal(k->id, "b.1-x");
    assert_int_equal(k->expires, 1000);

    /* one bit off, in the first and in the last byte */
    memcpy(other, d1, 32);
    other[0] ^= 1;
    assert_null(vc_apikeys_find(&set, other));
    memcpy(other, d1, 32);
    other[31] ^= 0x80;
    assert_null(vc_apikeys_find(&set, other));

    vc_apikeys_free(&set);
    vc_apikeys_free(&set);
}


static void
test_empty_file(void **state)
{
    char           errstr[VC_ERRSTR_LEN];
    vc_apikeys_t   set;
    const char    *doc = "{\"keys\": []}";

    memset(&set, 0, sizeof(set));
    assert_int_equal(vc_apikeys_load(&set, doc, strlen(doc), errstr,
                                     sizeof(errstr)), VC_OK);
    assert_int_equal(set.nkeys, 0);
    assert_null(vc_apikeys_find(&set, d1));
    vc_apikeys_free(&set);
}


static void
expect_error(const char *doc, const char *want)
{
    char          errstr[VC_ERRSTR_LEN];
    vc_apikeys_t  set;

    memset(&set, 0, sizeof(set));
    errstr[0] = '\0';

    if (vc_apikeys_load(&set, doc, strlen(doc), errstr, sizeof(errstr))
        != VC_ERROR)
    {
        fail_msg("accepted: %s", doc);
    }

    if (strstr(errstr, want) == NULL) {
        fail_msg("error \"%s\" lacks \"%s\" for %s", errstr, want, doc);
    }

    assert_null(set.keys);
    assert_int_equal(set.nkeys, 0);
}


static void
test_errors_name_entry_and_problem(void **state)
{
    /* one entry, {"id": "a1", "sha256": h1 and these members} */
    static const struct {
        const char  *members;
        const char  *want;
    } one[] = {
        { "", "entry 1 (id \"a1\"): \"tenant\" must be" },
        { ", \"tenant\": \"a b\"", "\"tenant\" must be" },
        { ", \"tenant\": \"t\", \"scopes\": \"read\"",
          "\"scopes\" must be an array" },
        { ", \"tenant\": \"t\", \"scopes\": [\"read\", \"a\\\"b\"]",
          "scope 2 must be" },
        { ", \"tenant\": \"t\", \"expire\": 5",
          "entry 1 (id \"a1\"): unknown member \"expire\"" },
        { ", \"tenant\": \"t\", \"expires\": \"tomorrow\"",
          "\"expires\" must be" },
        { ", \"tenant\": \"t\", \"expires\": -1", "\"expires\" must be" },
        { ", \"tenant\": \"t\", \"disabled\": 1",
          "\"disabled\" must be true or false" },
        { ", \"tenant\": \"t\", \"note\": 1", "\"note\" must be a string" },
    };

    char    doc[1024];
    size_t  i;

    expect_error("", "invalid JSON");
    expect_error("[]", "not a JSON object with one member");
    expect_error("{\"keys\": {}}", "not a JSON object with one member");
    expect_error("{\"keys\": [], \"x\": 1}", "not a JSON object");
    expect_error("{\"keys\": [1]}", "entry 1: not a JSON object");
    expect_error("{\"keys\": [{\"sha256\": \"\"}]}",
                 "entry 1: \"id\" must be 1 to 64");
    expect_error("{\"keys\": [{\"id\": \"a_b\"}]}", "entry 1: \"id\"");
    expect_error("{\"keys\": [{\"id\": \"\"}]}", "entry 1: \"id\"");

    snprintf(doc, sizeof(doc), "{\"keys\": [{\"id\": \"a1\", \"sha256\": "
             "\"%s\", \"tenant\": \"t\"}, {\"id\": \"a2\", \"sha256\": "
             "\"%.63s\", \"tenant\": \"t\"}]}", h1, h2);
    expect_error(doc, "entry 2 (id \"a2\"): \"sha256\" must be 64 hex");

    snprintf(doc, sizeof(doc), "{\"keys\": [{\"id\": \"a1\", \"sha256\": "
             "\"%.63sg\", \"tenant\": \"t\"}]}", h1);
    expect_error(doc, "\"sha256\" must be 64 hex");

    for (i = 0; i < sizeof(one) / sizeof(one[0]); i++) {
        snprintf(doc, sizeof(doc), "{\"keys\": [{\"id\": \"a1\", \"sha256\": "
                 "\"%s\"%s}]}", h1, one[i].members);
        expect_error(doc, one[i].want);
    }

    snprintf(doc, sizeof(doc), "{\"keys\": [{\"id\": \"a1\", \"sha256\": "
             "\"%s\", \"tenant\": \"t\"}, {\"id\": \"a1\", \"sha256\": "
             "\"%s\", \"tenant\": \"t\"}]}", h1, h2);
    expect_error(doc, "entry 2: id \"a1\" is also the id of entry 1");

    snprintf(doc, sizeof(doc), "{\"keys\": [{\"id\": \"a1\", \"sha256\": "
             "\"%s\", \"tenant\": \"t\"}, {\"id\": \"a2\", \"sha256\": "
             "\"%s\", \"tenant\": \"t\"}]}", h1, h1);
    expect_error(doc, "have the same sha256");

    /* a duplicate member could be read either way by another tool */
    snprintf(doc, sizeof(doc), "{\"keys\": [{\"id\": \"a1\", \"sha256\": "
             "\"%s\", \"tenant\": \"t\", \"tenant\": \"u\"}]}", h1);
    expect_error(doc, "invalid JSON");
}


static void
test_check_expiry_and_disabled(void **state)
{
    char                 reason[VC_ERRSTR_LEN];
    vc_apikey_t          k;
    vc_auth_outcome_e    outcome;

    memset(&k, 0, sizeof(k));
    k.id = "a1";
    k.tenant = "acme";
    k.scopes = "";

    assert_int_equal(vc_apikey_check(&k, 2000000000, NULL, 0, reason,
                                     &outcome),
                     VC_APIKEY_VALID);

    k.expires = 1000;
    assert_int_equal(vc_apikey_check(&k, 999, NULL, 0, reason, &outcome),
                     VC_APIKEY_VALID);
    assert_int_equal(vc_apikey_check(&k, 1000, NULL, 0, reason, &outcome),
                     VC_APIKEY_INVALID);
    assert_string_equal(reason, "the API key has expired");
    assert_int_equal(outcome, VC_AUTH_EXPIRED);

    k.disabled = 1;
    assert_int_equal(vc_apikey_check(&k, 999, NULL, 0, reason, &outcome),
                     VC_APIKEY_INVALID);
    assert_string_equal(reason, "the API key is disabled");
    assert_int_equal(outcome, VC_AUTH_DISABLED);
}


static void
test_check_requirements(void **state)
{
    char                reason[VC_ERRSTR_LEN];
    vc_apikey_t         k;
    vc_auth_outcome_e   outcome;
    const char         *read[] = { "accounts:read" };
    const char         *two[] = { "x", "accounts:write" };
    const char         *part[] = { "accounts" };
    const char         *acme[] = { "acme", "globex" };
    const char         *other[] = { "initech" };
    const char         *iss[] = { "https://idp.example.com/" };
    const char         *admin[] = { "admin" };
    const char         *id[] = { "a1" };
    vc_require_t        req[2];

    memset(&k, 0, sizeof(k));
    k.id = "a1";
    k.id_len = 2;
    k.tenant = "acme";
    k.scopes = "accounts:read accounts:write";
    k.scopes_len = strlen(k.scopes);

    req[0] = (vc_require_t) { "scope", read, 1 };
    assert_int_equal(vc_apikey_check(&k, 0, req, 1, reason, &outcome),
                     VC_APIKEY_VALID);

    req[0] = (vc_require_t) { "scp", two, 2 };
    assert_int_equal(vc_apikey_check(&k, 0, req, 1, reason, &outcome),
                     VC_APIKEY_VALID);

    /* a prefix of a scope is not the scope */
    req[0] = (vc_require_t) { "scope", part, 1 };
    assert_int_equal(vc_apikey_check(&k, 0, req, 1, reason, &outcome),
                     VC_APIKEY_FORBIDDEN);
    assert_string_equal(reason, "claim \"scope\" not accepted");
    assert_int_equal(outcome, VC_AUTH_CLAIM_REFUSED);

    req[0] = (vc_require_t) { "tenant", acme, 2 };
    req[1] = (vc_require_t) { "iss", iss, 1 };
    assert_int_equal(vc_apikey_check(&k, 0, req, 2, reason, &outcome),
                     VC_APIKEY_VALID);

    req[0] = (vc_require_t) { "tenant", other, 1 };
    assert_int_equal(vc_apikey_check(&k, 0, req, 1, reason, &outcome),
                     VC_APIKEY_FORBIDDEN);
    assert_string_equal(reason, "claim \"tenant\" not accepted");

    req[0] = (vc_require_t) { "sub", id, 1 };
    req[1] = (vc_require_t) { "roles", admin, 1 };
    assert_int_equal(vc_apikey_check(&k, 0, req, 1, reason, &outcome),
                     VC_APIKEY_VALID);
    assert_int_equal(vc_apikey_check(&k, 0, req, 2, reason, &outcome),
                     VC_APIKEY_FORBIDDEN);
    assert_string_equal(reason, "claim \"roles\" not accepted");

    /* a key with no scopes satisfies no scope requirement */
    k.scopes = "";
    k.scopes_len = 0;
    req[0] = (vc_require_t) { "scope", read, 1 };
    assert_int_equal(vc_apikey_check(&k, 0, req, 1, reason, &outcome),
                     VC_APIKEY_FORBIDDEN);
}


static void
test_rfc3339(void **state)
{
    int64_t  t;

#define OK(s, want)                                                          \
    assert_int_equal(vc_rfc3339_parse(s, strlen(s), &t), VC_OK);             \
    assert_int_equal(t, want)
#define BAD(s)                                                               \
    assert_int_equal(vc_rfc3339_parse(s, strlen(s), &t), VC_ERROR)

    OK("1970-01-01T00:00:00Z", 0);
    OK("2030-01-01T00:00:00Z", 1893456000);
    OK("2030-01-01t00:00:00z", 1893456000);
    OK("2030-01-01T00:00:00.123456Z", 1893456000);
    OK("2030-01-01T02:00:00+02:00", 1893456000);
    OK("2029-12-31T22:30:00-01:30", 1893456000);
    OK("2024-02-29T00:00:00Z", 1709164800);

    BAD("2030-01-01T00:00:00");
    BAD("2030-01-01 00:00:00Z");
    BAD("2030-01-01T00:00:00.Z");
    BAD("2030-13-01T00:00:00Z");
    BAD("2030-02-30T00:00:00Z");
    BAD("2023-02-29T00:00:00Z");
    BAD("2030-01-01T24:00:00Z");
    BAD("2030-01-01T00:00:00+0200");
    BAD("2030-01-01T00:00:00Zjunk");
    BAD("30-01-01T00:00:00Z");
    BAD("");

#undef OK
#undef BAD
}


static void
test_names(void **state)
{
    assert_true(vc_apikey_id_valid("a", 1));
    assert_true(vc_apikey_id_valid("Ci-deploy.2", 11));
    assert_false(vc_apikey_id_valid("a_b", 3));
    assert_false(vc_apikey_id_valid("a b", 3));
    assert_false(vc_apikey_id_valid("", 0));
    assert_false(vc_apikey_id_valid(
        "12345678901234567890123456789012345678901234567890123456789012345",
        65));
    assert_true(vc_apikey_token_valid("accounts:read", 13, 128));
    assert_false(vc_apikey_token_valid("a\"b", 3, 128));
    assert_false(vc_apikey_token_valid("a\\b", 3, 128));
    assert_false(vc_apikey_token_valid("a\x7f", 2, 128));
    assert_false(vc_apikey_token_valid("abc", 3, 2));
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_load_and_find),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_errors_name_entry_and_problem),
        cmocka_unit_test(test_check_expiry_and_disabled),
        cmocka_unit_test(test_check_requirements),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_names),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
