/* test_vc_vault.c -- vault records: round trip, keys, tampering, key files */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "vc_vault.h"


/*
 * Expected key ids and the known-answer record come from Python
 * (hmac, and cryptography's AESGCM), never from vc_vault.c:
 *
 *   k1 = bytes(range(32)); k2 = bytes(range(32, 64))
 *   hmac.new(k, b"vantage vault key id", sha256).digest()[:8]
 *   AESGCM(k1).encrypt(bytes(range(12)), b"s3cr3t-value\0with a NUL",
 *                      b"\x01" + kid1 + b"salesforce.client_secret")
 */
#define K1_ID   "53144f4a1b49a635"
#define K2_ID   "d6d827a25e963b30"
#define K1_HEX  "000102030405060708090a0b0c0d0e0f" \
                "101112131415161718191a1b1c1d1e1f"
#define K1_B64  "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define KAT_NAME   "salesforce.client_secret"
#define KAT_VALUE  "s3cr3t-value\0with a NUL"
#define KAT_REC \
    "0153144f4a1b49a635000102030405060708090a0b3431b569f691ef6dec2de2ee" \
    "b19e1119ebf6e614be2e1366b0d994a52545a57ca1734404388f30"

#define ERR_AUTH  "record does not authenticate: it was altered, or " \
                  "sealed for another name"
#define ERR_WRONG_KEY \
    "wrong master key (record was sealed under key id " K1_ID ", this " \
    "key is " K2_ID ")"


static vc_vault_key_t  k1, k2;
static char            dir[64];
static char            cwd[4096];


static size_t
unhex(unsigned char *dst, const char *hex)
{
    size_t        i, n;
    unsigned int  v;

    n = strlen(hex) / 2;

    for (i = 0; i < n; i++) {
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        dst[i] = (unsigned char) v;
    }

    return n;
}


static int
setup(void **state)
{
    unsigned char  raw[32];
    int            i;

    for (i = 0; i < 32; i++) {
        raw[i] = (unsigned char) i;
    }

    assert_int_equal(vc_vault_key_set(&k1, raw), VC_OK);

    for (i = 0; i < 32; i++) {
        raw[i] = (unsigned char) (32 + i);
    }

    assert_int_equal(vc_vault_key_set(&k2, raw), VC_OK);

    assert_non_null(getcwd(cwd, sizeof(cwd)));
    strcpy(dir, "/tmp/test_vc_vault.XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(chdir(dir), 0);

    return 0;
}


static int
teardown(void **state)
{
    char  cmd[128];

    assert_int_equal(chdir(cwd), 0);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);

    return 0;
}


/* seals value as name under k, returns the record (malloc()ed) */
static unsigned char *
seal(const vc_vault_key_t *k, const char *name, const void *value,
    size_t len, size_t *rec_len)
{
    char            err[VC_VAULT_ERRSTR_LEN];
    unsigned char  *rec;

    rec = malloc(len + VC_VAULT_OVERHEAD);
    assert_non_null(rec);

    err[0] = '\0';
    assert_int_equal(vc_vault_seal(k, name, strlen(name), value, len, rec,
                                   err, sizeof(err)),
                     VC_OK);
    assert_string_equal(err, "");

    *rec_len = len + VC_VAULT_OVERHEAD;

    return rec;
}


/* opens a record expected to be refused with rc and err */
static void
open_refused(const vc_vault_key_t *k, const char *name,
    const unsigned char *rec, size_t len, int rc, const char *expected)
{
    char            err[VC_VAULT_ERRSTR_LEN];
    size_t          vlen;
    unsigned char  *value;

    value = (unsigned char *) "sentinel";
    vlen = 99;

    assert_int_equal(vc_vault_open(k, name, strlen(name), rec, len, &value,
                                   &vlen, err, sizeof(err)),
                     rc);
    assert_string_equal(err, expected);
    assert_null(value);
    assert_int_equal(vlen, 0);
}


static void
test_key_ids(void **state)
{
    assert_string_equal(k1.id_hex, K1_ID);
    assert_string_equal(k2.id_hex, K2_ID);
}


static void
test_round_trip(void **state)
{
    char            err[VC_VAULT_ERRSTR_LEN];
    size_t          len, vlen, i;
    unsigned char  *rec, *value, *big;
    static const char  pem[] = "-----BEGIN PRIVATE KEY-----\nMIIE...\n"
                               "-----END PRIVATE KEY-----\n";

    rec = seal(&k1, "docusign.private_key", pem, sizeof(pem) - 1, &len);

    assert_int_equal(len, sizeof(pem) - 1 + 37);
    assert_int_equal(rec[0], 1);

    assert_int_equal(vc_vault_open(&k1, "docusign.private_key", 20, rec, len,
                                   &value, &vlen, err, sizeof(err)),
                     VC_OK);
    assert_int_equal(vlen, sizeof(pem) - 1);
    assert_memory_equal(value, pem, vlen);
    assert_int_equal(value[vlen], '\0');
    vc_vault_free(value, vlen);
    free(rec);

    /* binary, with NULs */
    rec = seal(&k1, "bin", "\0\1\2\0\377", 5, &len);
    assert_int_equal(vc_vault_open(&k1, "bin", 3, rec, len, &value, &vlen,
                                   err, sizeof(err)),
                     VC_OK);
    assert_int_equal(vlen, 5);
    assert_memory_equal(value, "\0\1\2\0\377", 5);
    vc_vault_free(value, vlen);
    free(rec);

    /* empty */
    rec = seal(&k1, "empty", "", 0, &len);
    assert_int_equal(len, 37);
    assert_int_equal(vc_vault_open(&k1, "empty", 5, rec, len, &value, &vlen,
                                   err, sizeof(err)),
                     VC_OK);
    assert_int_equal(vlen, 0);
    assert_int_equal(value[0], '\0');
    vc_vault_free(value, vlen);
    free(rec);

    /* the largest value, and one byte more */
    big = malloc(VC_VAULT_VALUE_MAX + 1);
    assert_non_null(big);

    for (i = 0; i < VC_VAULT_VALUE_MAX + 1; i++) {
        big[i] = (unsigned char) (i * 7);
    }

    rec = seal(&k1, "big", big, VC_VAULT_VALUE_MAX, &len);
    assert_int_equal(vc_vault_open(&k1, "big", 3, rec, len, &value, &vlen,
                                   err, sizeof(err)),
                     VC_OK);
    assert_int_equal(vlen, VC_VAULT_VALUE_MAX);
    assert_memory_equal(value, big, vlen);
    vc_vault_free(value, vlen);
    free(rec);

    rec = malloc(VC_VAULT_VALUE_MAX + 1 + VC_VAULT_OVERHEAD);
    assert_non_null(rec);
    assert_int_equal(vc_vault_seal(&k1, "big", 3, big, VC_VAULT_VALUE_MAX + 1,
                                   rec, err, sizeof(err)),
                     VC_ERROR);
    assert_string_equal(err, "value of 65537 bytes: larger than 64k");
    free(rec);
    free(big);

    vc_vault_free(NULL, 0);
}


/* a record sealed by Python's AESGCM opens here */
static void
test_known_answer(void **state)
{
    char            err[VC_VAULT_ERRSTR_LEN];
    size_t          len, vlen;
    unsigned char   rec[128], *value;
    vc_vault_info_t info;

    len = unhex(rec, KAT_REC);
    assert_int_equal(len, 60);

    assert_int_equal(vc_vault_info(rec, len, &info, err, sizeof(err)),
                     VC_OK);
    assert_int_equal(info.version, 1);
    assert_string_equal(info.key_id_hex, K1_ID);
    assert_int_equal(info.value_len, sizeof(KAT_VALUE) - 1);

    assert_int_equal(vc_vault_open(&k1, KAT_NAME, strlen(KAT_NAME), rec, len,
                                   &value, &vlen, err, sizeof(err)),
                     VC_OK);
    assert_int_equal(vlen, sizeof(KAT_VALUE) - 1);
    assert_memory_equal(value, KAT_VALUE, vlen);
    vc_vault_free(value, vlen);
}


static void
test_wrong_key(void **state)
{
    size_t          len;
    unsigned char  *rec;

    rec = seal(&k1, "hubspot.token", "pat-na1-1234", 12, &len);
    open_refused(&k2, "hubspot.token", rec, len, VC_DECLINED, ERR_WRONG_KEY);
    free(rec);
}


static void
test_tampered(void **state)
{
    size_t          len, i;
    unsigned char  *rec, copy[64];

    rec = seal(&k1, "orion.refresh_token", "rt-0123456789abcdef", 19, &len);
    assert_int_equal(len, 19 + 37);

    /* every bit of the nonce, ciphertext and tag counts */
    for (i = VC_VAULT_AAD_HEADER_LEN; i < len; i++) {
        memcpy(copy, rec, len);
        copy[i] ^= 0x01;
        open_refused(&k1, "orion.refresh_token", copy, len, VC_ERROR,
                     ERR_AUTH);
    }

    /* the name is associated data: a record moved to another name */
    open_refused(&k1, "orion.refresh_tokem", rec, len, VC_ERROR, ERR_AUTH);
    open_refused(&k1, "orion.refresh_token2", rec, len, VC_ERROR, ERR_AUTH);

    /* an edited key id reads as another key; an edited version as such */
    memcpy(copy, rec, len);
    copy[1] ^= 0x80;
    open_refused(&k1, "orion.refresh_token", copy, len, VC_DECLINED,
                 "wrong master key (record was sealed under key id "
                 "d3144f4a1b49a635, this key is " K1_ID ")");

    memcpy(copy, rec, len);
    copy[0] = 2;
    open_refused(&k1, "orion.refresh_token", copy, len, VC_ERROR,
                 "record version 2 is not supported (version 1 expected)");

    /* truncated: the tag cut short, or nothing but a header */
    open_refused(&k1, "orion.refresh_token", rec, len - 1, VC_ERROR,
                 ERR_AUTH);
    open_refused(&k1, "orion.refresh_token", rec, 36, VC_ERROR,
                 "record of 36 bytes: too short for a vault record (37 "
                 "bytes at least)");
    open_refused(&k1, "orion.refresh_token", rec, 0, VC_ERROR,
                 "record of 0 bytes: too short for a vault record (37 "
                 "bytes at least)");

    open_refused(&k1, "bad name", rec, len, VC_ERROR, "invalid name");

    free(rec);
}


static int
cmp_nonce(const void *a, const void *b)
{
    return memcmp(a, b, VC_VAULT_NONCE_LEN);
}


static void
test_nonces_unique(void **state)
{
    int             i, n = 2000;
    size_t          len;
    unsigned char  *rec, *nonces, first[64];

    nonces = malloc(n * VC_VAULT_NONCE_LEN);
    assert_non_null(nonces);

    for (i = 0; i < n; i++) {
        rec = seal(&k1, "same", "same value", 10, &len);
        memcpy(nonces + i * VC_VAULT_NONCE_LEN,
               rec + VC_VAULT_AAD_HEADER_LEN, VC_VAULT_NONCE_LEN);

        if (i == 0) {
            memcpy(first, rec, len);

        } else if (i == 1) {
            /* the same value twice: two different ciphertexts and tags */
            assert_memory_not_equal(first + VC_VAULT_HEADER_LEN,
                                    rec + VC_VAULT_HEADER_LEN, 10 + 16);
        }

        free(rec);
    }

    qsort(nonces, n, VC_VAULT_NONCE_LEN, cmp_nonce);

    for (i = 1; i < n; i++) {
        assert_memory_not_equal(nonces + (i - 1) * VC_VAULT_NONCE_LEN,
                                nonces + i * VC_VAULT_NONCE_LEN,
                                VC_VAULT_NONCE_LEN);
    }

    free(nonces);
}


static void
key_ok(const char *text, size_t len)
{
    char            err[VC_VAULT_ERRSTR_LEN];
    vc_vault_key_t  k;

    err[0] = '\0';

    if (vc_vault_key_parse(&k, text, len, err, sizeof(err)) != VC_OK) {
        fail_msg("refused: %s", err);
    }

    assert_memory_equal(k.key, k1.key, 32);
    assert_string_equal(k.id_hex, K1_ID);

    vc_vault_key_clear(&k);
    assert_int_equal(k.key[1], 0);
}


static void
key_bad(const char *text, size_t len)
{
    char            err[VC_VAULT_ERRSTR_LEN];
    vc_vault_key_t  k;

    assert_int_equal(vc_vault_key_parse(&k, text, len, err, sizeof(err)),
                     VC_ERROR);
    assert_string_equal(err, "not a master key: 64 hex digits or the "
                        "base64 of 32 bytes expected");
}


#define KEY_OK(s)   key_ok(s, sizeof(s) - 1)
#define KEY_BAD(s)  key_bad(s, sizeof(s) - 1)

static void
test_key_parse(void **state)
{
    KEY_OK(K1_HEX);
    KEY_OK(K1_HEX "\n");
    KEY_OK(K1_HEX "\r\n");
    KEY_OK("000102030405060708090A0B0C0D0E0F"
           "101112131415161718191A1B1C1D1E1F");
    KEY_OK(K1_B64);
    KEY_OK(K1_B64 "\n");

    KEY_BAD("");
    KEY_BAD("\n");
    KEY_BAD(K1_HEX "\n\n");
    KEY_BAD(K1_HEX " ");
    KEY_BAD(" " K1_HEX);
    KEY_BAD("000102030405060708090a0b0c0d0e0f"
            "101112131415161718191a1b1c1d1e1");
    KEY_BAD(K1_HEX "0");
    KEY_BAD("g00102030405060708090a0b0c0d0e0f"
            "101112131415161718191a1b1c1d1e1f");
    /* 16 bytes in hex, and 31 or 33 in base64 */
    KEY_BAD("000102030405060708090a0b0c0d0e0f");
    KEY_BAD("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==");
    KEY_BAD("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g");
    /* unpadded, url-safe, non-canonical spare bits */
    KEY_BAD("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8");
    KEY_BAD("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh-=");
    KEY_BAD("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=");
}


static void
write_file(const char *name, const void *data, size_t len, mode_t mode)
{
    FILE  *f;

    unlink(name);
    f = fopen(name, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(name, mode), 0);
}


static void
file_ok(const void *data, size_t len, mode_t mode)
{
    char            err[VC_VAULT_ERRSTR_LEN];
    vc_vault_key_t  k;

    write_file("key", data, len, mode);
    err[0] = '\0';

    if (vc_vault_key_read_file(&k, "key", err, sizeof(err)) != VC_OK) {
        fail_msg("refused: %s", err);
    }

    assert_memory_equal(k.key, k1.key, 32);
    assert_string_equal(k.id_hex, K1_ID);
}


static void
file_bad(const char *path, const char *expected)
{
    char            err[VC_VAULT_ERRSTR_LEN];
    vc_vault_key_t  k;

    assert_int_equal(vc_vault_key_read_file(&k, path, err, sizeof(err)),
                     VC_ERROR);
    assert_string_equal(err, expected);
}


#define NOT_A_KEY  "\"key\": not a master key: 32 random bytes, 64 hex " \
                   "digits or the base64 of 32 bytes expected"

static void
test_key_file(void **state)
{
    static const char  printable[] = "0123456789abcdef0123456789abcdef";

    file_ok(k1.key, 32, 0600);
    file_ok(k1.key, 32, 0400);
    file_ok(K1_HEX "\n", 65, 0600);
    file_ok(K1_B64 "\r\n", 46, 0600);

    /* group or others may do anything at all: refused, as ssh does */
    write_file("key", k1.key, 32, 0640);
    file_bad("key", "\"key\": permissions 0640 are too open: a master key "
             "must be readable by its owner alone (chmod 600)");
    write_file("key", k1.key, 32, 0604);
    file_bad("key", "\"key\": permissions 0604 are too open: a master key "
             "must be readable by its owner alone (chmod 600)");
    write_file("key", k1.key, 32, 0620);
    file_bad("key", "\"key\": permissions 0620 are too open: a master key "
             "must be readable by its owner alone (chmod 600)");
    write_file("key", K1_HEX, 64, 0644);
    file_bad("key", "\"key\": permissions 0644 are too open: a master key "
             "must be readable by its owner alone (chmod 600)");

    /* 32 bytes of text: 16 bytes in hex, or a passphrase */
    write_file("key", printable, 32, 0600);
    file_bad("key", NOT_A_KEY);

    /* a raw key with a newline, 31 bytes, 64 hex digits and garbage */
    write_file("key", "\0\1\2\3\4\5\6\7\10\11\12\13\14\15\16\17"
               "\20\21\22\23\24\25\26\27\30\31\32\33\34\35\36\37\n", 33,
               0600);
    file_bad("key", NOT_A_KEY);
    write_file("key", k1.key, 31, 0600);
    file_bad("key", NOT_A_KEY);
    write_file("key", K1_HEX "\nx", 66, 0600);
    file_bad("key", NOT_A_KEY);

    write_file("key", "", 0, 0600);
    file_bad("key", "\"key\": empty, not a master key");

    {
        char  big[300];

        memset(big, 'a', sizeof(big));
        write_file("key", big, sizeof(big), 0600);
        file_bad("key", NOT_A_KEY);
    }

    assert_int_equal(mkdir("keydir", 0700), 0);
    file_bad("keydir", "\"keydir\": not a regular file");
    file_bad("missing", "\"missing\": cannot open: No such file or "
             "directory");
}


static void
test_names(void **state)
{
    char  name[130];

    assert_true(vc_vault_name_valid("salesforce.client_secret", 24));
    assert_true(vc_vault_name_valid("a", 1));
    assert_true(vc_vault_name_valid("acme/hubspot:token@v2", 21));

    memset(name, 'n', sizeof(name));
    assert_true(vc_vault_name_valid(name, 128));
    assert_false(vc_vault_name_valid(name, 129));

    assert_false(vc_vault_name_valid("", 0));
    assert_false(vc_vault_name_valid("a b", 3));
    assert_false(vc_vault_name_valid("a\"b", 3));
    assert_false(vc_vault_name_valid("a\\b", 3));
    assert_false(vc_vault_name_valid("a\tb", 3));
    assert_false(vc_vault_name_valid("a\nb", 3));
    assert_false(vc_vault_name_valid("a\0b", 3));
    assert_false(vc_vault_name_valid("a\177", 2));
    assert_false(vc_vault_name_valid("caf\xc3\xa9", 5));
}


static void
test_seal_refuses_a_bad_name(void **state)
{
    char           err[VC_VAULT_ERRSTR_LEN];
    unsigned char  rec[64];

    assert_int_equal(vc_vault_seal(&k1, "a b", 3, (unsigned char *) "v", 1,
                                   rec, err, sizeof(err)),
                     VC_ERROR);
    assert_string_equal(err, "invalid name: 1 to 128 printable ASCII "
                        "characters without space, '\"' or '\\' expected");
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_key_ids),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_nonces_unique),
        cmocka_unit_test(test_key_parse),
        cmocka_unit_test(test_key_file),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_seal_refuses_a_bad_name),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
