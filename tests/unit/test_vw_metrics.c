/* test_vw_metrics.c -- the worker's metric registry and its exposition */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vw_metrics.h"


/*
 * Expected lines are written out from the text format 0.0.4 (Prometheus'
 * exposition_formats.md), not from metrics.c: one per test, checked by
 * substring, with the neighbours that prove the order.
 */

static char *
render(void)
{
    char    *text;
    size_t   len;

    text = vw_metrics_render(&len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);

    return text;
}


static int
teardown(void **state)
{
    vw_metrics_reset();
    return 0;
}


static void
test_empty(void **state)
{
    char  *t;

    t = render();

    /* every family declared; those without labels show their one series */
    assert_non_null(strstr(t,
        "# HELP vantage_worker_dispatch_accepted_total Jobs DISPATCH made "
        "durable, by job type.\n"
        "# TYPE vantage_worker_dispatch_accepted_total counter\n"
        "# HELP vantage_worker_dispatch_refused_total "));
    assert_non_null(strstr(t,
        "# TYPE vantage_worker_redis_connected gauge\n"
        "vantage_worker_redis_connected 0\n"));
    assert_non_null(strstr(t,
        "# TYPE vantage_worker_metrics_series_dropped_total counter\n"
        "vantage_worker_metrics_series_dropped_total 0\n"));
    assert_null(strstr(t, "_bucket"));
    assert_int_equal(t[strlen(t) - 1], '\n');
    assert_null(strstr(t, "\n\n"));

    free(t);
}


static void
test_counter_labels_escaped(void **state)
{
    char  *t;

    vw_metrics_inc(VW_METRICS_ATTEMPTS, "a\"b\\c\nd", "success");
    vw_metrics_add(VW_METRICS_ATTEMPTS, 41, "a\"b\\c\nd", "success");
    vw_metrics_inc(VW_METRICS_ATTEMPTS, "x", "retry");
    vw_metrics_inc(VW_METRICS_ATTEMPTS, "x", NULL);

    t = render();

    assert_non_null(strstr(t,
        "# TYPE vantage_worker_attempts_total counter\n"
        "vantage_worker_attempts_total{type=\"a\\\"b\\\\c\\nd\","
        "outcome=\"success\"} 42\n"
        "vantage_worker_attempts_total{type=\"x\",outcome=\"retry\"} 1\n"
        "vantage_worker_attempts_total{type=\"x\",outcome=\"\"} 1\n"
        "# HELP vantage_worker_retries_total "));

    free(t);
}


static void
test_gauge_values(void **state)
{
    char  *t;

    vw_metrics_set(VW_METRICS_BREAKER_STATE, 2, "crm", NULL);
    vw_metrics_set(VW_METRICS_BREAKER_STATE, 0, "erp", NULL);
    vw_metrics_set(VW_METRICS_BREAKER_STATE, 1, "crm", NULL);
    vw_metrics_set(VW_METRICS_STREAM_OLDEST_ENTRY, 2.5, "{vq}:jobs", NULL);
    vw_metrics_set(VW_METRICS_STREAM_OLDEST_PENDING, 0.1, "{vq}:jobs", NULL);
    vw_metrics_set(VW_METRICS_STREAM_LENGTH, 1.0 / 3, "{vq}:jobs", NULL);
    vw_metrics_set(VW_METRICS_REDIS_CONNECTED, 1, NULL, NULL);

    t = render();

    assert_non_null(strstr(t,
        "vantage_worker_breaker_state{target=\"crm\"} 1\n"
        "vantage_worker_breaker_state{target=\"erp\"} 0\n"));
    assert_non_null(strstr(t,
        "vantage_worker_stream_oldest_entry_age_seconds"
        "{stream=\"{vq}:jobs\"} 2.5\n"));
    /* the shortest text that reads back as the same double */
    assert_non_null(strstr(t,
        "vantage_worker_stream_oldest_pending_age_seconds"
        "{stream=\"{vq}:jobs\"} 0.1\n"));
    assert_non_null(strstr(t,
        "vantage_worker_stream_length{stream=\"{vq}:jobs\"} "
        "0.33333333333333331\n"));
    assert_non_null(strstr(t, "\nvantage_worker_redis_connected 1\n"));

    free(t);
}


static void
test_histogram_cumulative(void **state)
{
    char  *t;

    /* on a bound counts in it; past the last one only in +Inf */
    vw_metrics_observe(VW_METRICS_ATTEMPT_SECONDS, 0.005, "crm", NULL);
    vw_metrics_observe(VW_METRICS_ATTEMPT_SECONDS, 0.2, "crm", NULL);
    vw_metrics_observe(VW_METRICS_ATTEMPT_SECONDS, 0.25, "crm", NULL);
    vw_metrics_observe(VW_METRICS_ATTEMPT_SECONDS, 100, "crm", NULL);

    t = render();

    assert_non_null(strstr(t,
        "# TYPE vantage_worker_attempt_duration_seconds histogram\n"
        "vantage_worker_attempt_duration_seconds_bucket"
        "{target=\"crm\",le=\"0.005\"} 1\n"
        "vantage_worker_attempt_duration_seconds_bucket"
        "{target=\"crm\",le=\"0.01\"} 1\n"
        "vantage_worker_attempt_duration_seconds_bucket"
        "{target=\"crm\",le=\"0.025\"} 1\n"
        "vantage_worker_attempt_duration_seconds_bucket"
        "{target=\"crm\",le=\"0.05\"} 1\n"
        "vantage_worker_attempt_duration_seconds_bucket"
        "{target=\"crm\",le=\"0.1\"} 1\n"
        "vantage_worker_attempt_duration_seconds_bucket"
        "{target=\"crm\",le=\"0.25\"} 3\n"
        "vantage_worker_attempt_duration_seconds_bucket"
        "{target=\"crm\",le=\"0.5\"} 3\n"
        "vantage_worker_attempt_duration_seconds_bucket"
        "{target=\"crm\",le=\"1\"} 3\n"
        "vantage_worker_attempt_duration_seconds_bucket"
        "{target=\"crm\",le=\"2.5\"} 3\n"
        "vantage_worker_attempt_duration_seconds_bucket"
        "{target=\"crm\",le=\"5\"} 3\n"
        "vantage_worker_attempt_duration_seconds_bucket"
        "{target=\"crm\",le=\"10\"} 3\n"
        "vantage_worker_attempt_duration_seconds_bucket"
        "{target=\"crm\",le=\"30\"} 3\n"
        "vantage_worker_attempt_duration_seconds_bucket"
        "{target=\"crm\",le=\"60\"} 3\n"
        "vantage_worker_attempt_duration_seconds_bucket"
        "{target=\"crm\",le=\"+Inf\"} 4\n"
        "vantage_worker_attempt_duration_seconds_sum{target=\"crm\"} "
        "100.455\n"
        "vantage_worker_attempt_duration_seconds_count{target=\"crm\"} 4\n"
        "# HELP vantage_worker_breaker_state "));

    free(t);
}


static void
test_series_bound(void **state)
{
    char      *t, name[16];
    unsigned   i;

    for (i = 0; i < VW_METRICS_MAX_SERIES + 3; i++) {
        snprintf(name, sizeof(name), "t%u", i);
        vw_metrics_inc(VW_METRICS_DEAD_LETTERS, name, NULL);
    }

    /* a label set already there is still counted */
    vw_metrics_inc(VW_METRICS_DEAD_LETTERS, "t0", NULL);

    t = render();

    assert_non_null(strstr(t,
        "vantage_worker_dead_letters_total{type=\"t0\"} 2\n"));
    assert_non_null(strstr(t,
        "vantage_worker_dead_letters_total{type=\"t255\"} 1\n"));
    assert_null(strstr(t, "{type=\"t256\"}"));
    assert_non_null(strstr(t,
        "\nvantage_worker_metrics_series_dropped_total 3\n"));

    free(t);
}


/* what vw_metrics_each() passed, one "name=value,...:value" line each */
static void
collect(void *data, const char *const *names, const char *const *values,
    size_t n, double value)
{
    char    *out = data;
    size_t   i;

    for (i = 0; i < n; i++) {
        sprintf(out + strlen(out), "%s%s=%s", i ? "," : "", names[i],
                values[i]);
    }

    sprintf(out + strlen(out), ":%g\n", value);
}


static void
test_json_mirror(void **state)
{
    char    *t;
    size_t   len;

    vw_metrics_inc(VW_METRICS_ATTEMPTS, "a\"b\\c\nd", "success");
    vw_metrics_set(VW_METRICS_STREAM_LENGTH, 1.0 / 3, "{vq}:jobs", NULL);
    vw_metrics_observe(VW_METRICS_ATTEMPT_SECONDS, 0.2, "crm", NULL);
    vw_metrics_observe(VW_METRICS_ATTEMPT_SECONDS, 100, "crm", NULL);

    t = vw_metrics_render_json(&len);
    assert_non_null(t);
    assert_int_equal(strlen(t), len);

    /* written out from the shape in the brief, not from metrics.c */
    assert_non_null(strstr(t,
        "{\"metrics\":[{\"name\":\"vantage_worker_dispatch_accepted_total\","
        "\"type\":\"counter\",\"help\":\"Jobs DISPATCH made durable, by "
        "job type.\",\"samples\":[]},"));
    assert_non_null(strstr(t,
        "{\"name\":\"vantage_worker_attempts_total\",\"type\":\"counter\","
        "\"help\":\"Attempts settled, by job type and outcome (success, "
        "retry, dead).\",\"samples\":[{\"labels\":{\"type\":"
        "\"a\\\"b\\\\c\\u000ad\",\"outcome\":\"success\"},\"value\":1}]}"));
    assert_non_null(strstr(t,
        "\"samples\":[{\"labels\":{\"target\":\"crm\"},\"count\":2,"
        "\"sum\":100.2,\"buckets\":[[0.005,0],[0.01,0],[0.025,0],"
        "[0.05,0],[0.1,0],[0.25,1],[0.5,1],[1,1],[2.5,1],[5,1],[10,1],"
        "[30,1],[60,1],[\"+Inf\",2]]}]}"));
    assert_non_null(strstr(t,
        "\"samples\":[{\"labels\":{\"stream\":\"{vq}:jobs\"},"
        "\"value\":0.33333333333333331}]}"));
    /* a family without labels has its one series, as in the text */
    assert_non_null(strstr(t,
        "\"samples\":[{\"labels\":{},\"value\":0}]}"));
    assert_string_equal(t + len - 3, "}]}");

    free(t);
}


static void
test_read_side(void **state)
{
    char    out[512];
    double  v;

    vw_metrics_inc(VW_METRICS_ATTEMPTS, "a", "success");
    vw_metrics_add(VW_METRICS_ATTEMPTS, 3, "a", "retry");
    vw_metrics_set(VW_METRICS_JOBS, 2, "dead", NULL);
    vw_metrics_observe(VW_METRICS_ATTEMPT_SECONDS, 0.3, "crm", NULL);
    vw_metrics_observe(VW_METRICS_ATTEMPT_SECONDS, 0.4, "crm", NULL);

    out[0] = '\0';
    assert_int_equal(vw_metrics_each("vantage_worker_attempts_total", collect,
                                     out), VW_OK);
    assert_string_equal(out, "type=a,outcome=success:1\n"
                             "type=a,outcome=retry:3\n");

    /* a histogram reads as its count */
    out[0] = '\0';
    assert_int_equal(vw_metrics_each(
                         "vantage_worker_attempt_duration_seconds", collect,
                         out), VW_OK);
    assert_string_equal(out, "target=crm:2\n");

    /* a family with no series yet, and one that does not exist (yet) */
    out[0] = '\0';
    assert_int_equal(vw_metrics_each("vantage_worker_breaker_state", collect,
                                     out), VW_OK);
    assert_string_equal(out, "");
    assert_int_equal(vw_metrics_each("vantage_worker_nosuch", collect, out),
                     VW_DECLINED);

    v = -1;
    assert_int_equal(vw_metrics_value("vantage_worker_jobs", "dead", NULL,
                                      &v), VW_OK);
    assert_true(v == 2);
    assert_int_equal(vw_metrics_value("vantage_worker_attempts_total", "a",
                                      "retry", &v), VW_OK);
    assert_true(v == 3);
    assert_int_equal(vw_metrics_value("vantage_worker_jobs", "queued", NULL,
                                      &v), VW_DECLINED);
    assert_int_equal(vw_metrics_value("vantage_worker_nosuch", NULL, NULL,
                                      &v), VW_DECLINED);
}


static void
test_read_and_quantile(void **state)
{
    vw_metrics_sample_t  s;

    assert_int_equal(vw_metrics_read(VW_METRICS_ATTEMPT_SECONDS, "crm", NULL,
                                     &s), VW_METRICS_NONE);
    assert_true(isnan(vw_metrics_quantile(&s, 0.5)));

    vw_metrics_observe(VW_METRICS_ATTEMPT_SECONDS, 0.003, "crm", NULL);
    vw_metrics_observe(VW_METRICS_ATTEMPT_SECONDS, 0.04, "crm", NULL);
    vw_metrics_observe(VW_METRICS_ATTEMPT_SECONDS, 0.04, "crm", NULL);
    vw_metrics_observe(VW_METRICS_ATTEMPT_SECONDS, 90, "crm", NULL);

    assert_int_equal(vw_metrics_read(VW_METRICS_ATTEMPT_SECONDS, "crm", NULL,
                                     &s), VW_METRICS_FOUND);
    assert_int_equal(s.count, 4);
    assert_int_equal(s.buckets[0], 1);
    assert_int_equal(s.buckets[2], 1);
    assert_int_equal(s.buckets[3], 3);
    assert_int_equal(s.buckets[VW_METRICS_BOUNDS - 1], 3);

    /* rank 0.4 in (0, 0.005]; rank 2 in (0.025, 0.05], 1 of its 2 */
    assert_true(fabs(vw_metrics_quantile(&s, 0.1) - 0.002) < 1e-15);
    assert_true(fabs(vw_metrics_quantile(&s, 0.5) - 0.0375) < 1e-15);
    /* rank 3.96 is past the last finite bucket: its bound */
    assert_true(vw_metrics_quantile(&s, 0.99) == 60);

    vw_metrics_inc(VW_METRICS_TARGET_ATTEMPTS, "crm", "retry");
    assert_int_equal(vw_metrics_read(VW_METRICS_TARGET_ATTEMPTS, "crm",
                                     "retry", &s), VW_METRICS_FOUND);
    assert_int_equal(s.count, 1);
    assert_int_equal(vw_metrics_read(VW_METRICS_TARGET_ATTEMPTS, "crm",
                                     "dead", &s), VW_METRICS_NONE);
}


static void
test_quota(void **state)
{
    char  *t;

    vw_metrics_quota("sf", "daily", 18, 5000);
    vw_metrics_quota("hs", "burst", 120, 100);
    vw_metrics_quota("hs", "secondly", 3, 0);

    t = render();

    assert_non_null(strstr(t,
        "vantage_worker_vendor_quota_used{target=\"sf\",window=\"daily\"} "
        "18\n"));
    assert_non_null(strstr(t,
        "vantage_worker_vendor_quota_limit{target=\"sf\",window=\"daily\"} "
        "5000\n"));
    assert_non_null(strstr(t,
        "# TYPE vantage_worker_vendor_quota_ratio gauge\n"
        "vantage_worker_vendor_quota_ratio{target=\"sf\",window=\"daily\"} "
        "0.0036\n"
        "vantage_worker_vendor_quota_ratio{target=\"hs\",window=\"burst\"} "
        "1\n# HELP "));

    free(t);
}


/* a dropped series is gone from the text; the list stays whole */
static void
test_drop(void **state)
{
    char  *t;

    vw_metrics_set(VW_METRICS_JWKS_FAILURES, 3, "https://a/keys", NULL);
    vw_metrics_set(VW_METRICS_JWKS_FAILURES, 1, "https://b/keys", NULL);
    vw_metrics_drop(VW_METRICS_JWKS_FAILURES, "https://c/keys", NULL);

    /* the last one, then one made after it: the tail moved back */
    vw_metrics_drop(VW_METRICS_JWKS_FAILURES, "https://b/keys", NULL);
    vw_metrics_set(VW_METRICS_JWKS_FAILURES, 2, "https://d/keys", NULL);
    vw_metrics_drop(VW_METRICS_JWKS_FAILURES, "https://a/keys", NULL);
    vw_metrics_set(VW_METRICS_JWKS_FAILURES, 0, "https://e/keys", NULL);

    t = render();

    assert_non_null(strstr(t,
        "# TYPE vantage_worker_jwks_consecutive_failures gauge\n"
        "vantage_worker_jwks_consecutive_failures{source=\"https://d/keys\"} "
        "2\n"
        "vantage_worker_jwks_consecutive_failures{source=\"https://e/keys\"} "
        "0\n"));
    assert_null(strstr(t, "https://a/"));
    assert_null(strstr(t, "https://b/"));

    free(t);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test_teardown(test_empty, teardown),
        cmocka_unit_test_teardown(test_counter_labels_escaped, teardown),
        cmocka_unit_test_teardown(test_gauge_values, teardown),
        cmocka_unit_test_teardown(test_histogram_cumulative, teardown),
        cmocka_unit_test_teardown(test_series_bound, teardown),
        cmocka_unit_test_teardown(test_read_side, teardown),
        cmocka_unit_test_teardown(test_json_mirror, teardown),
        cmocka_unit_test_teardown(test_read_and_quantile, teardown),
        cmocka_unit_test_teardown(test_quota, teardown),
        cmocka_unit_test_teardown(test_drop, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
