/* test_vw_alert.c -- alert rules: state machine, window, notices */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vw_alert.h"


/*
 * The ids below were computed with Python's hashlib, the times with
 * Python's datetime, and the bodies written out from docs/WORKER.md's
 * "Alerting", not from alert_eval.c.
 */


static void
test_step_without_for(void **state)
{
    vw_alert_state_t  st;

    memset(&st, 0, sizeof(vw_alert_state_t));

    assert_int_equal(vw_alert_step(&st, 0, 1000, 0), VW_ALERT_NONE);
    assert_int_equal(st.phase, VW_ALERT_INACTIVE);

    assert_int_equal(vw_alert_step(&st, 1, 2000, 0), VW_ALERT_FIRED);
    assert_int_equal(st.phase, VW_ALERT_FIRING);
    assert_int_equal(st.fired_ms, 2000);

    /* while it holds: one notice per transition, none per evaluation */
    assert_int_equal(vw_alert_step(&st, 1, 3000, 0), VW_ALERT_NONE);
    assert_int_equal(st.fired_ms, 2000);

    assert_int_equal(vw_alert_step(&st, 0, 4000, 0), VW_ALERT_RESOLVED);
    assert_int_equal(st.phase, VW_ALERT_INACTIVE);
    assert_int_equal(vw_alert_step(&st, 0, 5000, 0), VW_ALERT_NONE);

    assert_int_equal(vw_alert_step(&st, 1, 6000, 0), VW_ALERT_FIRED);
    assert_int_equal(st.fired_ms, 6000);
}


static void
test_step_with_for(void **state)
{
    vw_alert_state_t  st;

    memset(&st, 0, sizeof(vw_alert_state_t));

    assert_int_equal(vw_alert_step(&st, 1, 1000, 500), VW_ALERT_NONE);
    assert_int_equal(st.phase, VW_ALERT_PENDING);
    assert_int_equal(st.since_ms, 1000);
    assert_int_equal(vw_alert_step(&st, 1, 1499, 500), VW_ALERT_NONE);
    assert_int_equal(st.phase, VW_ALERT_PENDING);

    /* a pending condition that clears resolves nothing */
    assert_int_equal(vw_alert_step(&st, 0, 1600, 500), VW_ALERT_NONE);
    assert_int_equal(st.phase, VW_ALERT_INACTIVE);

    /* and "for" counts again from the next time it holds */
    assert_int_equal(vw_alert_step(&st, 1, 2000, 500), VW_ALERT_NONE);
    assert_int_equal(vw_alert_step(&st, 1, 2499, 500), VW_ALERT_NONE);
    assert_int_equal(vw_alert_step(&st, 1, 2500, 500), VW_ALERT_FIRED);
    assert_int_equal(st.fired_ms, 2500);
    assert_int_equal(vw_alert_step(&st, 0, 2600, 500), VW_ALERT_RESOLVED);
}


static void
test_decide(void **state)
{
    assert_int_equal(vw_alert_decide(1, 0, 0), VW_ALERT_NOTIFY);
    assert_int_equal(vw_alert_decide(1, 0, 1), VW_ALERT_NOTIFY);
    assert_int_equal(vw_alert_decide(1, 1, 0), VW_ALERT_QUIET);
    assert_int_equal(vw_alert_decide(1, 1, 1), VW_ALERT_REMIND);
    assert_int_equal(vw_alert_decide(0, 0, 0), VW_ALERT_SUPPRESS);
    assert_int_equal(vw_alert_decide(0, 1, 1), VW_ALERT_SUPPRESS);
}


static void
test_window(void **state)
{
    double              a, f;
    vw_alert_window_t  *w;

    w = calloc(1, sizeof(vw_alert_window_t));
    assert_non_null(w);

    vw_alert_window_add(w, 100000, 60000, 10, 2, &a, &f);
    assert_true(a == 0 && f == 0);

    /* the window is not full: counted from the first sample */
    vw_alert_window_add(w, 101000, 60000, 14, 6, &a, &f);
    assert_true(a == 4 && f == 4);
    vw_alert_window_add(w, 102000, 60000, 19, 6, &a, &f);
    assert_true(a == 9 && f == 4);

    /* 60 s later: from the newest sample at or before the start */
    vw_alert_window_add(w, 161500, 60000, 19, 6, &a, &f);
    assert_true(a == 5 && f == 0);
    vw_alert_window_add(w, 170000, 60000, 19, 6, &a, &f);
    assert_true(a == 0 && f == 0);

    /* a counter that went down reads as none */
    vw_alert_window_add(w, 171000, 60000, 1, 1, &a, &f);
    assert_true(a == 0 && f == 0);

    free(w);
}


static void
test_window_bounded(void **state)
{
    double              a, f;
    uint64_t            t;
    vw_alert_window_t  *w;

    w = calloc(1, sizeof(vw_alert_window_t));
    assert_non_null(w);

    /* one attempt, failed, every ms, for 10 windows of 1 s */
    for (t = 1; t <= 10000; t++) {
        vw_alert_window_add(w, t, 1000, (double) t, (double) t, &a, &f);
        assert_true(w->n <= VW_ALERT_WINDOW_SLOTS + 2);
    }

    /* the start is exact to window / VW_ALERT_WINDOW_SLOTS (3 ms) */
    assert_true(a >= 1000 && a <= 1004);
    assert_true(f == a);

    free(w);
}


static void
test_time_and_labels(void **state)
{
    char                out[32], *l;
    const char *const   names[] = { "target", "window" };
    const char *const   values[] = { "a\"b", "daily" };

    vw_alert_time(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00.000Z");
    vw_alert_time(1700000000123ULL, out);
    assert_string_equal(out, "2023-11-14T22:13:20.123Z");

    l = vw_alert_labels(names, values, 2);
    assert_string_equal(l, "{\"target\":\"a\\\"b\",\"window\":\"daily\"}");
    free(l);

    l = vw_alert_labels(NULL, NULL, 0);
    assert_string_equal(l, "{}");
    free(l);
}


static void
test_id(void **state)
{
    char  id[33];

    vw_alert_id("errors", "{\"type\":\"x\"}", "firing", 1700000000123ULL,
                id);
    assert_string_equal(id, "e5b90e990a3d1f48bb2cbbc4ee56a11e");

    vw_alert_id("errors", "{\"type\":\"x\"}", NULL, 0, id);
    assert_string_equal(id, "6188d5fa8563b93fb4867338253fde25");
}


static const char *const  type_name[] = { "type" };
static const char *const  type_x[] = { "x" };


static vw_alert_notice_t
error_rate(void)
{
    vw_alert_notice_t  n;

    memset(&n, 0, sizeof(vw_alert_notice_t));
    n.rule = "errors";
    n.kind = VW_ALERT_ERROR_RATE;
    n.severity = "critical";
    n.names = type_name;
    n.values = type_x;
    n.nlabels = 1;
    n.has_value = 1;
    n.value = 1;
    n.threshold = 0.5;
    n.attempts = 4;
    n.failures = 4;
    n.window_ms = 60000;
    n.min_attempts = 4;
    n.started_ms = 1700000000123ULL;

    return n;
}


static void
test_body_firing(void **state)
{
    char               *b;
    vw_alert_notice_t   n;

    n = error_rate();
    b = vw_alert_body(&n, 0);
    assert_string_equal(b,
        "{\"status\":\"firing\",\"rule\":\"errors\",\"kind\":\"error_rate\","
        "\"severity\":\"critical\",\"labels\":{\"type\":\"x\"},\"value\":1,"
        "\"threshold\":0.5,\"started_at\":\"2023-11-14T22:13:20.123Z\","
        "\"resolved_at\":null,\"summary\":\"4 of 4 attempts of job type x "
        "failed over 1m (100%, threshold 50%)\"}");
    free(b);
}


static void
test_body_resolved(void **state)
{
    char               *b;
    vw_alert_notice_t   n;

    n = error_rate();
    n.resolved = 1;
    n.resolved_ms = 1700000060000ULL;
    n.attempts = 9;
    n.value = 4.0 / 9;
    b = vw_alert_body(&n, 0);
    assert_string_equal(b,
        "{\"status\":\"resolved\",\"rule\":\"errors\",\"kind\":\"error_rate\","
        "\"severity\":\"critical\",\"labels\":{\"type\":\"x\"},"
        "\"value\":0.44444444444444442,\"threshold\":0.5,"
        "\"started_at\":\"2023-11-14T22:13:20.123Z\","
        "\"resolved_at\":\"2023-11-14T22:14:20.000Z\",\"summary\":\"4 of 9 "
        "attempts of job type x failed over 1m (44.44%, threshold 50%)\"}");
    free(b);

    /* a label set whose series is gone: no value */
    n.has_value = 0;
    b = vw_alert_body(&n, 0);
    assert_non_null(strstr(b, "\"value\":null,"));
    assert_non_null(strstr(b, "\"summary\":\"no data: the series is gone\""));
    free(b);
}


static void
summary_is(vw_alert_notice_t *n, const char *want)
{
    char  buf[600];

    vw_alert_summary(n, buf, sizeof(buf));
    assert_string_equal(buf, want);
}


static void
test_summaries(void **state)
{
    vw_alert_notice_t   n;
    const char *const   target[] = { "target" };
    const char *const   crm[] = { "crm" };
    const char *const   stream[] = { "stream" };
    const char *const   jobs[] = { "{vq}:jobs" };
    const char *const   quota[] = { "target", "window" };
    const char *const   crm_daily[] = { "crm", "daily" };
    const char *const   source[] = { "source" };
    const char *const   idp[] = { "https://idp.example/keys" };

    n = error_rate();
    n.nlabels = 0;
    n.attempts = 3;
    n.failures = 2;
    n.min_attempts = 10;
    summary_is(&n, "2 of 3 attempts failed over 1m, fewer than "
                   "min_attempts (10)");

    n.names = target;
    n.values = crm;
    n.nlabels = 1;
    n.attempts = 20;
    n.failures = 1;
    n.value = 0.05;
    n.threshold = 0.05;
    n.window_ms = 300000;
    summary_is(&n, "1 of 20 attempts to target crm failed over 5m (5%, "
                   "threshold 5%)");

    memset(&n, 0, sizeof(vw_alert_notice_t));
    n.has_value = 1;
    n.kind = VW_ALERT_DLQ_SIZE;
    n.value = 1;
    n.threshold = 1;
    summary_is(&n, "1 job in the dead letters (threshold 1)");
    n.value = 0;
    summary_is(&n, "0 jobs in the dead letters (threshold 1)");

    n.kind = VW_ALERT_BREAKER_OPEN;
    n.names = target;
    n.values = crm;
    n.nlabels = 1;
    n.value = 2;
    summary_is(&n, "the breaker of target crm is open");
    n.value = 1;
    summary_is(&n, "the breaker of target crm is half-open");
    n.value = 0;
    summary_is(&n, "the breaker of target crm is closed");

    n.kind = VW_ALERT_OLDEST_JOB_AGE;
    n.names = stream;
    n.values = jobs;
    n.value = 3.25;
    n.threshold = 2;
    summary_is(&n, "the oldest job in {vq}:jobs is 3.25s old (threshold 2s)");

    n.kind = VW_ALERT_QUOTA_SHARE;
    n.names = quota;
    n.values = crm_daily;
    n.nlabels = 2;
    n.value = 0.93;
    n.threshold = 0.9;
    summary_is(&n, "target crm has used 93% of its daily allowance "
                   "(threshold 90%)");

    n.kind = VW_ALERT_JWKS_FAILING;
    n.names = source;
    n.values = idp;
    n.nlabels = 1;
    n.value = 3;
    n.threshold = 3;
    summary_is(&n, "3 refreshes of the key set https://idp.example/keys "
                   "failed in a row (threshold 3)");
}


static void
test_slack(void **state)
{
    char               *b;
    vw_alert_notice_t   n;
    const char *const   name[] = { "target" };
    const char *const   value[] = { "a<b>&c" };

    n = error_rate();
    n.names = name;
    n.values = value;
    n.resolved = 1;
    n.resolved_ms = 1700000060000ULL;
    n.value = 0.25;
    n.attempts = 8;
    n.failures = 2;

    b = vw_alert_body(&n, 1);
    assert_string_equal(b,
        "{\"text\":\"[RESOLVED] errors (critical): 2 of 8 attempts to target "
        "a&lt;b&gt;&amp;c failed over 1m (25%, threshold 50%)\","
        "\"blocks\":["
        "{\"type\":\"header\",\"text\":{\"type\":\"plain_text\","
        "\"text\":\"[RESOLVED] errors\"}},"
        "{\"type\":\"section\",\"text\":{\"type\":\"mrkdwn\",\"text\":\"2 of 8 "
        "attempts to target a&lt;b&gt;&amp;c failed over 1m (25%, threshold "
        "50%)\"}},"
        "{\"type\":\"section\",\"fields\":["
        "{\"type\":\"mrkdwn\",\"text\":\"*Kind*\\nerror_rate\"},"
        "{\"type\":\"mrkdwn\",\"text\":\"*Severity*\\ncritical\"},"
        "{\"type\":\"mrkdwn\",\"text\":\"*Value*\\n0.25\"},"
        "{\"type\":\"mrkdwn\",\"text\":\"*Threshold*\\n0.5\"},"
        "{\"type\":\"mrkdwn\",\"text\":\"*Started*\\n"
        "2023-11-14T22:13:20.123Z\"},"
        "{\"type\":\"mrkdwn\",\"text\":\"*Resolved*\\n"
        "2023-11-14T22:14:20.000Z\"},"
        "{\"type\":\"mrkdwn\",\"text\":\"*Labels*\\ntarget=a&lt;b&gt;&amp;c\"}"
        "]}]}");
    free(b);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_step_without_for),
        cmocka_unit_test(test_step_with_for),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_window_bounded),
        cmocka_unit_test(test_time_and_labels),
        cmocka_unit_test(test_id),
        cmocka_unit_test(test_body_firing),
        cmocka_unit_test(test_body_resolved),
        cmocka_unit_test(test_summaries),
        cmocka_unit_test(test_slack),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
