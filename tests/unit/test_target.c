/* test_target.c -- per-target concurrency and the circuit breaker */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vw_target.h"


static const vw_target_limits_t  limits = {
    .max_concurrency = 2,
    .breaker_failures = 3,
    .breaker_error_rate = 50,
    .breaker_window_ms = 10000,
    .breaker_min_calls = 10,
    .breaker_cooldown_ms = 5000
};


static void
test_get_creates_once(void **state)
{
    vw_target_t  *list = NULL, *a, *b;

    a = vw_target_get(&list, "a");
    b = vw_target_get(&list, "b");
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_ptr_equal(vw_target_get(&list, "a"), a);
    assert_string_equal(a->name, "a");

    vw_target_free_all(&list);
    assert_null(list);
}


static void
test_concurrency_limit(void **state)
{
    uint64_t      at;
    vw_target_t  *list = NULL, *t;

    t = vw_target_get(&list, "t");

    assert_int_equal(vw_target_acquire(t, &limits, 0, &at, NULL), VW_OK);
    assert_int_equal(vw_target_acquire(t, &limits, 0, &at, NULL), VW_OK);
    assert_int_equal(vw_target_acquire(t, &limits, 0, &at, NULL), VW_BUSY);
    assert_int_equal(t->running, 2);

    assert_int_equal(vw_target_release(t, &limits, 1, VW_TARGET_SUCCESS, 0), 0);
    assert_int_equal(vw_target_acquire(t, &limits, 1, &at, NULL), VW_OK);
    assert_int_equal(vw_target_acquire(t, &limits, 1, &at, NULL), VW_BUSY);

    vw_target_free_all(&list);
}


static void
test_consecutive_failures_open_then_probe(void **state)
{
    uint64_t      at;
    vw_target_t  *list = NULL, *t;

    t = vw_target_get(&list, "t");

    /* a success in between resets the run of failures */
    vw_target_acquire(t, &limits, 0, &at, NULL);
    assert_int_equal(vw_target_release(t, &limits, 0, VW_TARGET_FAILURE, 0), 0);
    vw_target_acquire(t, &limits, 0, &at, NULL);
    assert_int_equal(vw_target_release(t, &limits, 0, VW_TARGET_FAILURE, 0), 0);
    vw_target_acquire(t, &limits, 0, &at, NULL);
    assert_int_equal(vw_target_release(t, &limits, 0, VW_TARGET_SUCCESS, 0), 0);

    vw_target_acquire(t, &limits, 100, &at, NULL);
    vw_target_release(t, &limits, 100, VW_TARGET_FAILURE, 0);
    vw_target_acquire(t, &limits, 100, &at, NULL);
    vw_target_release(t, &limits, 100, VW_TARGET_FAILURE, 0);
    vw_target_acquire(t, &limits, 100, &at, NULL);
    assert_int_equal(vw_target_release(t, &limits, 100, VW_TARGET_FAILURE, 0),
                     VW_TARGET_OPENED);
    assert_int_equal(t->state, VW_BREAKER_OPEN);

    /* open: refused until the cool-down passes */
    at = 0;
    assert_int_equal(vw_target_acquire(t, &limits, 4000, &at, NULL),
                     VW_DECLINED);
    assert_int_equal(at, 5100);

    /* half-open: one probe, the others refused */
    assert_int_equal(vw_target_acquire(t, &limits, 5100, &at, NULL), VW_OK);
    assert_int_equal(t->state, VW_BREAKER_HALF_OPEN);
    assert_int_equal(vw_target_acquire(t, &limits, 5100, &at, NULL),
                     VW_DECLINED);
    assert_true(at > 5100 && at <= 6100);

    /* a failed probe opens it again for a whole cool-down */
    assert_int_equal(vw_target_release(t, &limits, 5200, VW_TARGET_FAILURE,
                                       1),
                     VW_TARGET_OPENED);
    assert_int_equal(vw_target_acquire(t, &limits, 10199, &at, NULL),
                     VW_DECLINED);
    assert_int_equal(at, 10200);

    /* a good probe closes it */
    assert_int_equal(vw_target_acquire(t, &limits, 10200, &at, NULL), VW_OK);
    assert_int_equal(vw_target_release(t, &limits, 10300, VW_TARGET_SUCCESS,
                                       1),
                     VW_TARGET_CLOSED);
    assert_int_equal(t->state, VW_BREAKER_CLOSED);
    assert_int_equal(vw_target_acquire(t, &limits, 10300, &at, NULL), VW_OK);
    assert_int_equal(vw_target_acquire(t, &limits, 10300, &at, NULL), VW_OK);

    vw_target_free_all(&list);
}


static void
test_cancelled_probe_lets_another_go(void **state)
{
    uint64_t      at;
    vw_target_t  *list = NULL, *t;

    t = vw_target_get(&list, "t");

    t->state = VW_BREAKER_OPEN;
    t->open_until = 10;

    assert_int_equal(vw_target_acquire(t, &limits, 10, &at, NULL), VW_OK);
    assert_int_equal(vw_target_release(t, &limits, 11, VW_TARGET_CANCELLED,
                                       1),
                     0);
    assert_int_equal(vw_target_acquire(t, &limits, 11, &at, NULL), VW_OK);

    vw_target_free_all(&list);
}


/*
 * Attempts that began while the breaker was closed and end while it is
 * half-open give no verdict: only the probe closes or reopens it.
 */
static void
test_half_open_only_the_probe_decides(void **state)
{
    uint64_t             at;
    unsigned             probe, old;
    vw_target_t         *list = NULL, *t;
    vw_target_limits_t   l = limits;

    l.max_concurrency = 8;

    t = vw_target_get(&list, "t");

    /* two slow attempts start; three quick failures open the breaker */
    assert_int_equal(vw_target_acquire(t, &l, 0, &at, &old), VW_OK);
    assert_int_equal(old, 0);
    vw_target_acquire(t, &l, 0, &at, NULL);
    vw_target_acquire(t, &l, 0, &at, NULL);
    vw_target_release(t, &l, 1, VW_TARGET_FAILURE, 0);
    vw_target_acquire(t, &l, 1, &at, NULL);
    vw_target_release(t, &l, 1, VW_TARGET_FAILURE, 0);
    vw_target_acquire(t, &l, 1, &at, NULL);
    assert_int_equal(vw_target_release(t, &l, 1, VW_TARGET_FAILURE, 0),
                     VW_TARGET_OPENED);

    /* the cool-down passes: the probe goes */
    assert_int_equal(vw_target_acquire(t, &l, 5001, &at, &probe),
                     VW_OK);
    assert_int_equal(probe, 1);

    /* an old attempt's success does not close it, nor let a second in */
    assert_int_equal(vw_target_release(t, &l, 5002, VW_TARGET_SUCCESS,
                                       old),
                     0);
    assert_int_equal(t->state, VW_BREAKER_HALF_OPEN);
    assert_int_equal(vw_target_acquire(t, &l, 5002, &at, &probe),
                     VW_DECLINED);
    assert_int_equal(probe, 0);

    /* an old attempt's failure does not reopen it under the probe */
    assert_int_equal(vw_target_release(t, &l, 5003, VW_TARGET_FAILURE,
                                       0),
                     0);
    assert_int_equal(t->state, VW_BREAKER_HALF_OPEN);

    /* the probe's own answer decides */
    assert_int_equal(vw_target_release(t, &l, 5004, VW_TARGET_SUCCESS,
                                       1),
                     VW_TARGET_CLOSED);
    assert_int_equal(t->running, 0);

    vw_target_free_all(&list);
}


static void
test_error_rate_over_window(void **state)
{
    int           i;
    uint64_t      at;
    vw_target_t  *list = NULL, *t;

    t = vw_target_get(&list, "t");

    /* alternate: never 3 failures in a row; 50% once 10 calls are seen */
    for (i = 0; i < 9; i++) {
        vw_target_acquire(t, &limits, 1000 + i, &at, NULL);
        assert_int_equal(vw_target_release(t, &limits, 1000 + i,
                                           i % 2 ? VW_TARGET_FAILURE
                                                 : VW_TARGET_SUCCESS, 0), 0);
    }

    vw_target_acquire(t, &limits, 1009, &at, NULL);
    assert_int_equal(vw_target_release(t, &limits, 1009, VW_TARGET_FAILURE,
                                       0),
                     VW_TARGET_OPENED);

    vw_target_free_all(&list);
}


static void
test_old_calls_age_out(void **state)
{
    int           i;
    uint64_t      at;
    vw_target_t  *list = NULL, *t;

    t = vw_target_get(&list, "t");

    /* 9 failures-and-successes long ago do not count a window later */
    for (i = 0; i < 9; i++) {
        vw_target_acquire(t, &limits, 0, &at, NULL);
        vw_target_release(t, &limits, 0, i % 2 ? VW_TARGET_FAILURE
                                               : VW_TARGET_SUCCESS, 0);
    }

    vw_target_acquire(t, &limits, 20000, &at, NULL);
    assert_int_equal(vw_target_release(t, &limits, 20000, VW_TARGET_FAILURE,
                                       0),
                     0);
    assert_int_equal(t->state, VW_BREAKER_CLOSED);

    vw_target_free_all(&list);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_get_creates_once),
        cmocka_unit_test(test_concurrency_limit),
        cmocka_unit_test(test_consecutive_failures_open_then_probe),
        cmocka_unit_test(test_cancelled_probe_lets_another_go),
        cmocka_unit_test(test_half_open_only_the_probe_decides),
        cmocka_unit_test(test_error_rate_over_window),
        cmocka_unit_test(test_old_calls_age_out),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
