/* test_vw_vault.c -- the worker's vault reader on hiredis replies */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vw_core.h"
#include "vw_vault.h"


/*
 * The replies are built by hand, as hiredis hands them to an async
 * callback.  The record is the one of test_vc_vault.c, sealed by Python's
 * AESGCM under bytes(range(32)) for "salesforce.client_secret".
 */
#define K1_ID      "53144f4a1b49a635"
#define K2_ID      "d6d827a25e963b30"
#define NAME       "salesforce.client_secret"
#define VALUE      "s3cr3t-value\0with a NUL"
#define REC \
    "0153144f4a1b49a635000102030405060708090a0b3431b569f691ef6dec2de2ee" \
    "b19e1119ebf6e614be2e1366b0d994a52545a57ca1734404388f30"


static vc_vault_key_t  k1, k2;
static char            rec[64];
static size_t          rec_len;


static int
setup(void **state)
{
    int            i;
    unsigned int   v;
    unsigned char  raw[32];

    for (i = 0; i < 32; i++) {
        raw[i] = (unsigned char) i;
    }

    assert_int_equal(vc_vault_key_set(&k1, raw), VC_OK);

    for (i = 0; i < 32; i++) {
        raw[i] = (unsigned char) (32 + i);
    }

    assert_int_equal(vc_vault_key_set(&k2, raw), VC_OK);

    rec_len = strlen(REC) / 2;

    for (i = 0; i < (int) rec_len; i++) {
        assert_int_equal(sscanf(REC + 2 * i, "%2x", &v), 1);
        rec[i] = (char) v;
    }

    return 0;
}


static redisReply
reply(int type, char *str, size_t len)
{
    redisReply  r;

    memset(&r, 0, sizeof(r));
    r.type = type;
    r.str = str;
    r.len = len;

    return r;
}


static void
refused(const vc_vault_key_t *key, const char *name, const redisReply *r,
    int rc, const char *expected)
{
    char         err[VC_VAULT_ERRSTR_LEN];
    vw_secret_t  s;

    s.data = (unsigned char *) "sentinel";
    s.len = 8;

    assert_int_equal(vw_vault_open_reply(key, name, r, &s, err, sizeof(err)),
                     rc);
    assert_string_equal(err, expected);
    assert_null(s.data);
    assert_int_equal(s.len, 0);
}


static void
test_opens_a_string_reply(void **state)
{
    char         err[VC_VAULT_ERRSTR_LEN];
    redisReply   r;
    vw_secret_t  s;

    r = reply(REDIS_REPLY_STRING, rec, rec_len);

    assert_int_equal(vw_vault_open_reply(&k1, NAME, &r, &s, err,
                                         sizeof(err)),
                     VW_OK);
    assert_int_equal(s.len, sizeof(VALUE) - 1);
    assert_memory_equal(s.data, VALUE, s.len);
    assert_int_equal(s.data[s.len], '\0');

    vw_secret_clear(&s);
    assert_null(s.data);
    assert_int_equal(s.len, 0);

    /* twice is harmless */
    vw_secret_clear(&s);
}


static void
test_refusals(void **state)
{
    char        copy[64];
    redisReply  r;

    r = reply(REDIS_REPLY_NIL, NULL, 0);
    refused(&k1, NAME, &r, VW_DECLINED,
            "no secret \"" NAME "\" in the vault");

    refused(&k1, NAME, NULL, VW_AGAIN, "redis: no reply");

    r = reply(REDIS_REPLY_ERROR, "NOAUTH Authentication required.", 31);
    refused(&k1, NAME, &r, VW_AGAIN,
            "redis: NOAUTH Authentication required.");

    r = reply(REDIS_REPLY_INTEGER, NULL, 0);
    refused(&k1, NAME, &r, VW_AGAIN, "redis: HGET: a string expected");

    r = reply(REDIS_REPLY_STRING, rec, rec_len);
    refused(&k2, NAME, &r, VW_ERROR,
            "wrong master key (record was sealed under key id " K1_ID
            ", this key is " K2_ID ")");

    /* the record read for another name */
    refused(&k1, "hubspot.token", &r, VW_ERROR,
            "record does not authenticate: it was altered, or sealed for "
            "another name");

    memcpy(copy, rec, rec_len);
    copy[30] ^= 0x20;
    r = reply(REDIS_REPLY_STRING, copy, rec_len);
    refused(&k1, NAME, &r, VW_ERROR,
            "record does not authenticate: it was altered, or sealed for "
            "another name");

    r = reply(REDIS_REPLY_STRING, "x", 1);
    refused(&k1, NAME, &r, VW_ERROR,
            "record of 1 bytes: too short for a vault record (37 bytes at "
            "least)");
}


static void
test_hget_command(void **state)
{
    char  *cmd;
    int    len;

    /* what an async caller sends: binary-safe, one argument */
    len = redisFormatCommand(&cmd, VW_VAULT_HGET, "a b", (size_t) 3);
    assert_true(len > 0);
    assert_memory_equal(cmd, "*3\r\n$4\r\nHGET\r\n$10\r\n{vv}:vault\r\n"
                        "$3\r\na b\r\n", len);
    redisFreeCommand(cmd);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_opens_a_string_reply),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_hget_command),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
