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


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_ssn),
        cmocka_unit_test(test_account_numbers),
        cmocka_unit_test(test_dates_of_birth),
        cmocka_unit_test(test_every_prefix_is_safe),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
