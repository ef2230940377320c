/* test_vc_backoff.c -- full-jitter bounds, the cap, Retry-After */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vc_backoff.h"


static void
test_ceiling_doubles_to_the_cap(void **state)
{
    assert_int_equal(vc_backoff_ceiling(200, 1000, 1), 200);
    assert_int_equal(vc_backoff_ceiling(200, 1000, 2), 400);
    assert_int_equal(vc_backoff_ceiling(200, 1000, 3), 800);
    assert_int_equal(vc_backoff_ceiling(200, 1000, 4), 1000);
    assert_int_equal(vc_backoff_ceiling(200, 1000, 60), 1000);
    assert_int_equal(vc_backoff_ceiling(1000, 300000, 9), 256000);
    assert_int_equal(vc_backoff_ceiling(1000, 300000, 10), 300000);

    /* no overflow however many attempts, however large the cap */
    assert_true(vc_backoff_ceiling(1000, UINT64_MAX, 4000000000u)
                == UINT64_MAX);
    assert_int_equal(vc_backoff_ceiling(0, 1000, 5), 0);

    /* a base above the cap is the cap */
    assert_int_equal(vc_backoff_ceiling(5000, 1000, 1), 1000);
}


static void
test_delay_within_bounds(void **state)
{
    unsigned  n, i;
    uint64_t  d, ceiling, rnd;
    int       saw_zero, saw_top;

    for (n = 1; n <= 12; n++) {
        ceiling = vc_backoff_ceiling(200, 1000, n);
        saw_zero = saw_top = 0;

        /* the extremes of rnd reach both ends, and no value goes past */
        for (i = 0; i < 5000; i++) {
            rnd = ((uint64_t) rand() << 32) ^ (uint64_t) rand();
            d = vc_backoff_delay(200, 1000, n, rnd);
            assert_true(d <= ceiling);
        }

        for (rnd = 0; rnd <= ceiling; rnd++) {
            d = vc_backoff_delay(200, 1000, n, rnd);
            saw_zero |= d == 0;
            saw_top |= d == ceiling;
        }

        assert_true(saw_zero && saw_top);
        assert_true(vc_backoff_delay(200, 1000, n, UINT64_MAX) <= ceiling);
    }
}


static void
test_retry_after(void **state)
{
    uint64_t  rnd, d;

    for (rnd = 0; rnd < 3000; rnd += 7) {
        d = vc_backoff_retry_after(2, rnd);
        assert_true(d >= 2000 && d <= 3000);
    }

    assert_int_equal(vc_backoff_retry_after(2, 0), 2000);
    assert_int_equal(vc_backoff_retry_after(2, 1000), 3000);
    assert_int_equal(vc_backoff_retry_after(0, 0), 0);

    /* capped at a day */
    assert_true(vc_backoff_retry_after(UINT64_MAX, UINT64_MAX)
                <= 86400 * 1000 + 1000);
}


static void
test_parse_retry_after(void **state)
{
    /* Sun, 06 Nov 1994 08:49:37 GMT is 784111777 */
    long long  t = 784111777;

    assert_int_equal(vc_backoff_parse_retry_after("2", 1, t), 2);
    assert_int_equal(vc_backoff_parse_retry_after(" 120 \r\n", 7, t), 120);
    assert_int_equal(vc_backoff_parse_retry_after("0", 1, t), 0);
    assert_int_equal(vc_backoff_parse_retry_after("99999999999999999999",
                                                  20, t), 86400);
    assert_int_equal(vc_backoff_parse_retry_after("", 0, t), -1);
    assert_int_equal(vc_backoff_parse_retry_after("-1", 2, t), -1);
    assert_int_equal(vc_backoff_parse_retry_after("2x", 2, t), -1);
    assert_int_equal(vc_backoff_parse_retry_after("soon", 4, t), -1);

    assert_int_equal(vc_backoff_parse_retry_after(
                         "Sun, 06 Nov 1994 08:49:37 GMT", 29, t - 30), 30);
    assert_int_equal(vc_backoff_parse_retry_after(
                         "Sun, 06 Nov 1994 08:49:37 GMT", 29, t + 30), 0);
    assert_int_equal(vc_backoff_parse_retry_after(
                         "Sun, 06 Nov 1994 08:49:37 UTC", 29, t), -1);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_ceiling_doubles_to_the_cap),
        cmocka_unit_test(test_delay_within_bounds),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_parse_retry_after),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
