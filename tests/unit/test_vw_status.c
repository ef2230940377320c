/* test_vw_status.c -- the dashboard's per-target history and failures */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "vw_metrics.h"
#include "vw_status.h"
#include "vw_target.h"


/* a time in the middle of a bucket, far from zero */
#define T0  (1764460000000ULL + 5000)


static int
teardown(void **state)
{
    vw_status_reset();
    vw_metrics_reset();
    return 0;
}


static json_t *
history_of(const char *target, uint64_t now)
{
    size_t   i;
    json_t  *all, *o, *out;

    all = vw_status_history(now);
    assert_non_null(all);
    out = json_array();

    json_array_foreach(all, i, o) {
        if (strcmp(json_string_value(json_object_get(o, "target")), target)
            == 0)
        {
            json_array_append(out, o);
        }
    }

    json_decref(all);

    return out;
}


static void
test_history_buckets(void **state)
{
    json_t  *h, *o;

    vw_status_attempt("a", "t", "crm", "http", "success", 200, NULL, T0);
    vw_status_attempt("b", "t", "crm", "http", "retry", 503, "HTTP 503",
                      T0 + 1000);
    vw_status_attempt("c", "t", "crm", "http", "success", 200, NULL,
                      T0 + 10000);
    vw_status_attempt("d", "t", "erp", "http", "dead", 400, "HTTP 400", T0);

    h = vw_status_history(T0 + 10000);
    assert_int_equal(json_array_size(h), 3);

    /* oldest bucket first, targets by name within it */
    o = json_array_get(h, 0);
    assert_int_equal(json_integer_value(json_object_get(o, "t_ms")),
                     (T0 / 10000) * 10000);
    assert_string_equal(json_string_value(json_object_get(o, "target")),
                        "crm");
    assert_int_equal(json_integer_value(json_object_get(o, "attempts")), 2);
    assert_int_equal(json_integer_value(json_object_get(o, "errors")), 1);

    o = json_array_get(h, 1);
    assert_string_equal(json_string_value(json_object_get(o, "target")),
                        "erp");
    assert_int_equal(json_integer_value(json_object_get(o, "errors")), 1);

    o = json_array_get(h, 2);
    assert_int_equal(json_integer_value(json_object_get(o, "t_ms")),
                     (T0 / 10000 + 1) * 10000);
    assert_int_equal(json_integer_value(json_object_get(o, "attempts")), 1);

    json_decref(h);

    /* 30 minutes on, the first bucket is gone, the second still there */
    h = history_of("crm", T0 + 10000 + 179 * 10000);
    assert_int_equal(json_array_size(h), 1);
    json_decref(h);

    h = history_of("crm", T0 + 10000 + 180 * 10000);
    assert_int_equal(json_array_size(h), 0);
    json_decref(h);
}


static void
test_slot_reused_after_a_round(void **state)
{
    json_t    *h;
    uint64_t   later;

    vw_status_attempt("a", "t", "crm", "http", "retry", 503, "x", T0);

    /* the same slot of the ring, one round later: counts start again */
    later = T0 + 180 * 10000;
    vw_status_attempt("b", "t", "crm", "http", "success", 200, NULL, later);

    h = history_of("crm", later);
    assert_int_equal(json_array_size(h), 1);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(h, 0), "attempts")), 1);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(h, 0), "errors")), 0);
    json_decref(h);
}


static void
test_rate_over_five_minutes(void **state)
{
    uint64_t  n, failed;

    vw_status_attempt("a", "t", "crm", "http", "dead", 400, "x", T0);
    vw_status_attempt("b", "t", "crm", "http", "success", 200, NULL,
                      T0 + 29 * 10000);
    vw_status_attempt("c", "t", "crm", "http", "retry", 0, "x",
                      T0 + 29 * 10000);

    /* the current bucket and the 29 before it */
    vw_status_rate("crm", T0 + 29 * 10000, &n, &failed);
    assert_int_equal(n, 3);
    assert_int_equal(failed, 2);

    vw_status_rate("crm", T0 + 30 * 10000, &n, &failed);
    assert_int_equal(n, 2);
    assert_int_equal(failed, 1);

    vw_status_rate("nosuch", T0, &n, &failed);
    assert_int_equal(n, 0);
    assert_int_equal(failed, 0);
}


static void
test_failures_ring(void **state)
{
    char       id[33];
    json_t    *f, *o;
    unsigned   i;

    for (i = 0; i < VW_STATUS_FAILURES + 5; i++) {
        snprintf(id, sizeof(id), "%032u", i);
        vw_status_attempt(id, "t", "crm", "http", i % 2 ? "dead" : "retry",
                          500 + i, "HTTP 5xx", T0 + i);
        vw_status_attempt(id, "t", "crm", "http", "success", 200, NULL,
                          T0 + i);
    }

    f = vw_status_failures();
    assert_int_equal(json_array_size(f), VW_STATUS_FAILURES);

    /* newest first; the five oldest gone */
    o = json_array_get(f, 0);
    snprintf(id, sizeof(id), "%032u", VW_STATUS_FAILURES + 4);
    assert_string_equal(json_string_value(json_object_get(o, "job_id")), id);
    assert_string_equal(json_string_value(json_object_get(o, "outcome")),
                        "retry");
    assert_int_equal(json_integer_value(json_object_get(o, "status")),
                     500 + VW_STATUS_FAILURES + 4);
    assert_string_equal(json_string_value(json_object_get(o, "error")),
                        "HTTP 5xx");
    assert_int_equal(json_integer_value(json_object_get(o, "at_ms")),
                     T0 + VW_STATUS_FAILURES + 4);

    o = json_array_get(f, VW_STATUS_FAILURES - 1);
    snprintf(id, sizeof(id), "%032u", 5);
    assert_string_equal(json_string_value(json_object_get(o, "job_id")), id);
    assert_string_equal(json_string_value(json_object_get(o, "outcome")),
                        "dead");

    json_decref(f);
}


static json_t *
connector_named(json_t *a, const char *name)
{
    size_t   i;
    json_t  *o;

    json_array_foreach(a, i, o) {
        if (strcmp(json_string_value(json_object_get(o, "target")), name)
            == 0)
        {
            return o;
        }
    }

    return NULL;
}


static void
test_connectors(void **state)
{
    json_t            *a, *o, *lat, *q;
    unsigned           i;
    vw_conf_t          conf;
    vw_conf_job_t      job;
    vw_conf_target_t   ct, ct2;
    vw_target_t        open, half;

    /* the configuration names two targets; the engine met one more */
    memset(&conf, 0, sizeof(conf));
    memset(&ct, 0, sizeof(ct));
    memset(&ct2, 0, sizeof(ct2));
    memset(&job, 0, sizeof(job));
    ct.name = "sf";
    ct.next = &ct2;
    ct2.name = "idle";
    conf.targets = &ct;
    job.type = "sf.create";
    job.connector = "salesforce";
    job.target = &ct;
    conf.jobs = &job;

    memset(&open, 0, sizeof(open));
    memset(&half, 0, sizeof(half));
    open.name = "down";
    open.state = VW_BREAKER_OPEN;
    open.next = &half;
    half.name = "sf";
    half.state = VW_BREAKER_HALF_OPEN;

    /* sf: 10 successes, none failed, latencies in two buckets */
    vw_metrics_add(VW_METRICS_TARGET_ATTEMPTS, 10, "sf", "success");
    vw_metrics_add(VW_METRICS_TARGET_ATTEMPTS, 0, "sf", "retry");
    vw_metrics_observe(VW_METRICS_ATTEMPT_SECONDS, 0.02, "sf", NULL);
    vw_metrics_observe(VW_METRICS_ATTEMPT_SECONDS, 0.02, "sf", NULL);
    vw_metrics_observe(VW_METRICS_ATTEMPT_SECONDS, 0.2, "sf", NULL);
    vw_metrics_observe(VW_METRICS_ATTEMPT_SECONDS, 0.2, "sf", NULL);
    vw_metrics_quota("sf", "daily", 18, 5000);

    /* http: 1 of 10 failed in the window: degraded at 0.1 */
    vw_status_attempt("x", "t", "http", "http", "dead", 400, "x", T0);
    vw_metrics_inc(VW_METRICS_TARGET_ATTEMPTS, "http", "dead");

    for (i = 0; i < 9; i++) {
        vw_status_attempt("y", "t", "http", "http", "success", 200, NULL,
                          T0);
        vw_metrics_inc(VW_METRICS_TARGET_ATTEMPTS, "http", "success");
    }

    a = vw_status_connectors(&conf, &open, T0);
    assert_non_null(a);
    assert_int_equal(json_array_size(a), 4);

    /* by name */
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(a, 0), "target")), "down");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(a, 3), "target")), "sf");

    o = connector_named(a, "down");
    assert_string_equal(json_string_value(json_object_get(o, "status")),
                        "breaker_open");
    assert_string_equal(json_string_value(json_object_get(o, "breaker")),
                        "open");
    assert_true(json_is_null(json_object_get(o, "connector")));
    lat = json_object_get(o, "latency_seconds");
    assert_true(json_is_null(json_object_get(lat, "p50")));

    o = connector_named(a, "sf");
    assert_string_equal(json_string_value(json_object_get(o, "connector")),
                        "salesforce");
    assert_string_equal(json_string_value(json_object_get(o, "status")),
                        "degraded");
    assert_string_equal(json_string_value(json_object_get(o, "breaker")),
                        "half_open");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(o, "attempts"), "success")), 10);
    assert_true(json_real_value(json_object_get(o, "error_rate")) == 0);

    /* ranks 2, 3.6, 3.96 of 4: (0.01, 0.025] holds 2, (0.1, 0.25] 2 */
    lat = json_object_get(o, "latency_seconds");
    assert_true(json_real_value(json_object_get(lat, "p50")) == 0.025);
    assert_true(fabs(json_real_value(json_object_get(lat, "p90"))
                     - (0.1 + 0.15 * 0.8)) < 1e-12);
    assert_true(fabs(json_real_value(json_object_get(lat, "p99"))
                     - (0.1 + 0.15 * 0.98)) < 1e-12);

    q = json_object_get(o, "quota");
    assert_int_equal(json_array_size(q), 1);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(q, 0), "window")), "daily");
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(q, 0), "used")), 18);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(q, 0), "limit")), 5000);

    o = connector_named(a, "http");
    assert_string_equal(json_string_value(json_object_get(o, "status")),
                        "degraded");
    assert_true(json_real_value(json_object_get(o, "error_rate")) == 0.1);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(o, "attempts"), "dead")), 1);
    assert_string_equal(json_string_value(json_object_get(o, "connector")),
                        "http");

    o = connector_named(a, "idle");
    assert_string_equal(json_string_value(json_object_get(o, "status")),
                        "healthy");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(o, "attempts"), "success")), 0);
    assert_int_equal(json_array_size(json_object_get(o, "quota")), 0);

    json_decref(a);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test_teardown(test_history_buckets, teardown),
        cmocka_unit_test_teardown(test_slot_reused_after_a_round, teardown),
        cmocka_unit_test_teardown(test_rate_over_five_minutes, teardown),
        cmocka_unit_test_teardown(test_failures_ring, teardown),
        cmocka_unit_test_teardown(test_connectors, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
