/* test_vc_mask.c -- SSNs, account numbers and dates of birth masked */

#define _GNU_SOURCE

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vc_mask.h"


/* masks an exact-size heap copy (ASan sees any overrun) and compares */

static void
check(const char *in, const char *want)
{
    size_t          len;
    unsigned char  *p;

    len = strlen(in);
    assert_int_equal(len, strlen(want));

    p = malloc(len ? len : 1);
    assert_non_null(p);
    memcpy(p, in, len);

    vc_mask(p, len);

    if (memcmp(p, want, len) != 0) {
        print_error("masked \"%.*s\"\n  wanted \"%s\"\n", (int) len, p, want);
        free(p);
        fail();
    }

    free(p);
}


static void
test_ssn(void **state)
{
    check("ssn 123-45-6789 ok", "ssn ***-**-**** ok");
    check("123-45-6789", "***-**-****");
    check("{\"ssn\":\"123-45-6789\"}", "{\"ssn\":\"***-**-****\"}");
    /* longer digit groups are not SSNs */
    check("1123-45-6789", "1123-45-6789");
    check("123-45-67890", "123-45-67890");
    check("12-345-6789", "12-345-6789");
}


static void
test_account_numbers(void **state)
{
    check("acct 123456789", "acct *****6789");
    check("{\"account\":\"4111111111111111\"}",
          "{\"account\":\"************1111\"}");
    check("{\"n\":12345678}", "{\"n\":12345678}");
    check("x9876543210y", "x******3210y");
    check("", "");
}


static void
test_dates_of_birth(void **state)
{
    check("{\"dob\":\"1980-01-02\"}", "{\"dob\":\"**********\"}");
    check("{\"date_of_birth\" : \"02/01/1980\", \"name\":\"Al\"}",
          "{\"date_of_birth\" : \"**********\", \"name\":\"Al\"}");
    check("{\"birth_date\":\"1980-01-02\"}",
          "{\"birth_date\":\"**********\"}");
    check("{\"dateOfBirth\":\"1980-01-02\"}",
          "{\"dateOfBirth\":\"**********\"}");
    check("{\"BirthDate\":19800102}", "{\"BirthDate\":********}");
    check("{\"DOB\":\"a\\\"b\"}", "{\"DOB\":\"****\"}");
    /* a value that merely says dob, and other names, stay */
    check("{\"x\":\"dob\",\"date\":\"2020-01-02\"}",
          "{\"x\":\"dob\",\"date\":\"2020-01-02\"}");
    check("{\"dobby\":\"1980-01-02\"}", "{\"dobby\":\"1980-01-02\"}");
    /* cut short anywhere: masked as far as it goes, nothing overrun */
    check("{\"dob\":\"1980-0", "{\"dob\":\"******");
    check("{\"dob\":", "{\"dob\":");
    check("{\"dob", "{\"dob");
    check("{\"dob\":\"1\\", "{\"dob\":\"**");
}


static void
test_every_prefix_is_safe(void **state)
{
    size_t          n, len;
    unsigned char  *p;

    static const char  body[] =
        "{\"error\":\"invalid\",\"ssn\":\"123-45-6789\",\"acct\":"
        "\"000123456789\",\"dob\":\"1980-01-02\",\"birth_date\":1980}";

    len = sizeof(body) - 1;

    for (n = 0; n <= len; n++) {
        p = malloc(n ? n : 1);
        assert_non_null(p);
        memcpy(p, body, n);
        /* ASan checks that no prefix makes the scanner overrun */
        vc_mask(p, n);
        assert_null(memmem(p, n, "1980-01-02", 10));
        free(p);
    }

    p = malloc(len);
    assert_non_null(p);
    memcpy(p, body, len);
    assert_true(vc_mask(p, len) > 0);
    assert_memory_equal(p,
        "{\"error\":\"invalid\",\"ssn\":\"***-**-****\",\"acct\":"
        "\"********6789\",\"dob\":\"**********\",\"birth_date\":****}", len);
    free(p);
}


/* masks a copy with the given kinds only; n is the count it must return */

static void
check_kinds(const char *in, unsigned kinds, const char *want, size_t n)
{
    size_t          len;
    unsigned char  *p;

    len = strlen(in);
    assert_int_equal(len, strlen(want));

    p = malloc(len ? len : 1);
    assert_non_null(p);
    memcpy(p, in, len);

    assert_int_equal(vc_mask_kinds(p, len, kinds), n);

    if (memcmp(p, want, len) != 0) {
        print_error("masked (kinds %#x) \"%.*s\"\n  wanted \"%s\"\n",
                    kinds, (int) len, p, want);
        free(p);
        fail();
    }

    free(p);
}


static void
test_kinds(void **state)
{
    static const char  body[] =
        "{\"ssn\":\"123-45-6789\",\"acct\":\"123456789012\","
        "\"dob\":\"1980-01-02\"}";

    check_kinds(body, VC_MASK_SSN,
        "{\"ssn\":\"***-**-****\",\"acct\":\"123456789012\","
        "\"dob\":\"1980-01-02\"}", 9);
    check_kinds(body, VC_MASK_ACCOUNT,
        "{\"ssn\":\"123-45-6789\",\"acct\":\"********9012\","
        "\"dob\":\"1980-01-02\"}", 8);
    check_kinds(body, VC_MASK_DOB,
        "{\"ssn\":\"123-45-6789\",\"acct\":\"123456789012\","
        "\"dob\":\"**********\"}", 10);
    check_kinds(body, VC_MASK_SSN | VC_MASK_DOB,
        "{\"ssn\":\"***-**-****\",\"acct\":\"123456789012\","
        "\"dob\":\"**********\"}", 19);
    check_kinds(body, VC_MASK_ALL,
        "{\"ssn\":\"***-**-****\",\"acct\":\"********9012\","
        "\"dob\":\"**********\"}", 27);
    check_kinds(body, 0, body, 0);

    /* bits beyond VC_MASK_ALL are ignored */
    check_kinds(body, 0xf8, body, 0);

    /* an SSN is never taken for an account number, masked or not */
    check_kinds("123-45-6789 123456789", VC_MASK_ACCOUNT,
                "123-45-6789 *****6789", 5);

    /* a long number in a date of birth is masked whole by DOB alone */
    check_kinds("{\"dob\":19800102123}", VC_MASK_DOB,
                "{\"dob\":***********}", 11);
    check_kinds("{\"dob\":19800102123}", VC_MASK_ACCOUNT,
                "{\"dob\":*******2123}", 7);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_ssn),
        cmocka_unit_test(test_account_numbers),
        cmocka_unit_test(test_dates_of_birth),
        cmocka_unit_test(test_every_prefix_is_safe),
        cmocka_unit_test(test_kinds),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
