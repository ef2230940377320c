/* alert_eval.c -- alert rules: state machine, error-rate window, notices */

/*
 * Plain C with no event loop and no Redis: what alert.c decides with, so
 * that tests/unit/test_vw_alert.c drives it alone.
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "vw_alert.h"


static const char *const  vw_alert_kinds[] = {
    "", "error_rate", "dlq_size", "breaker_open", "oldest_job_age",
    "quota_share", "jwks_failing"
};


vw_alert_change_e
vw_alert_step(vw_alert_state_t *st, int holds, uint64_t now, uint64_t for_ms)
{
    if (!holds) {
        if (st->phase == VW_ALERT_FIRING) {
            st->phase = VW_ALERT_INACTIVE;
            return VW_ALERT_RESOLVED;
        }

        st->phase = VW_ALERT_INACTIVE;
        return VW_ALERT_NONE;
    }

    switch (st->phase) {

    case VW_ALERT_INACTIVE:
        st->since_ms = now;
        st->phase = VW_ALERT_PENDING;

        /* fall through */

    case VW_ALERT_PENDING:
        if (now - st->since_ms < for_ms) {
            return VW_ALERT_NONE;
        }

        st->phase = VW_ALERT_FIRING;
        st->fired_ms = now;
        return VW_ALERT_FIRED;

    default:
        return VW_ALERT_NONE;
    }
}


vw_alert_decision_e
vw_alert_decide(int lease_won, int notified, int remind)
{
    if (!lease_won) {
        return VW_ALERT_SUPPRESS;
    }

    if (!notified) {
        return VW_ALERT_NOTIFY;
    }

    return remind ? VW_ALERT_REMIND : VW_ALERT_QUIET;
}


#define VW_ALERT_RING  (VW_ALERT_WINDOW_SLOTS + 2)
#define vw_alert_at(w, i)  (&(w)->s[((w)->head + (i)) % VW_ALERT_RING])

void
vw_alert_window_add(vw_alert_window_t *w, uint64_t now, uint64_t window_ms,
    double total, double failed, double *attempts, double *failures)
{
    uint64_t            from, step;
    vw_alert_sample_t  *base, *last;

    from = now > window_ms ? now - window_ms : 0;

    /* the baseline: the newest sample at or before the window's start */
    while (w->n >= 2 && vw_alert_at(w, 1)->t <= from) {
        w->head = (w->head + 1) % VW_ALERT_RING;
        w->n--;
    }

    if (w->n == 0) {
        *attempts = 0;
        *failures = 0;

    } else {
        base = vw_alert_at(w, 0);
        *attempts = total > base->total ? total - base->total : 0;
        *failures = failed > base->failed ? failed - base->failed : 0;
    }

    /* rounded up: a window never needs more than the slots */
    step = (window_ms + VW_ALERT_WINDOW_SLOTS - 1) / VW_ALERT_WINDOW_SLOTS;
    last = w->n ? vw_alert_at(w, w->n - 1) : NULL;

    if (last != NULL && now - last->t < step) {
        return;
    }

    /* full only when evaluations come faster than the step allows */
    if (w->n == VW_ALERT_RING) {
        w->head = (w->head + 1) % VW_ALERT_RING;
        w->n--;
    }

    last = vw_alert_at(w, w->n);
    last->t = now;
    last->total = total;
    last->failed = failed;
    w->n++;
}


void
vw_alert_time(uint64_t ms, char *out)
{
    time_t     t;
    struct tm  tm;

    t = (time_t) (ms / 1000);
    gmtime_r(&t, &tm);

    /* 19 characters for any year of four digits, then 5 */
    if (strftime(out, 25, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        out[0] = '\0';
    }

    snprintf(out + strlen(out), 32 - strlen(out), ".%03uZ",
             (unsigned) (ms % 1000));
}


char *
vw_alert_labels(const char *const *names, const char *const *values,
    size_t n)
{
    char    *text;
    size_t   i;
    json_t  *o;

    o = json_object();
    if (o == NULL) {
        return NULL;
    }

    for (i = 0; i < n; i++) {
        json_object_set_new(o, names[i], json_string(values[i]));
    }

    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);

    return text;
}


/* the value of the label named name, or "" */
static const char *
vw_alert_label(const vw_alert_notice_t *n, const char *name)
{
    size_t  i;

    for (i = 0; i < n->nlabels; i++) {
        if (strcmp(n->names[i], name) == 0) {
            return n->values[i];
        }
    }

    return "";
}


/* ms in the largest unit that divides it: "5m", "90s", "1500ms" */
static void
vw_alert_duration(uint64_t ms, char *buf, size_t len)
{
    if (ms != 0 && ms % 3600000 == 0) {
        snprintf(buf, len, "%lluh", (unsigned long long) (ms / 3600000));

    } else if (ms != 0 && ms % 60000 == 0) {
        snprintf(buf, len, "%llum", (unsigned long long) (ms / 60000));

    } else if (ms % 1000 == 0) {
        snprintf(buf, len, "%llus", (unsigned long long) (ms / 1000));

    } else {
        snprintf(buf, len, "%llums", (unsigned long long) ms);
    }
}


void
vw_alert_summary(const vw_alert_notice_t *n, char *buf, size_t len)
{
    char         window[32], scope[300];
    const char  *s;

    if (!n->has_value) {
        snprintf(buf, len, "no data: the series is gone");
        return;
    }

    switch (n->kind) {

    case VW_ALERT_ERROR_RATE:
        vw_alert_duration(n->window_ms, window, sizeof(window));
        scope[0] = '\0';

        if (n->nlabels && strcmp(n->names[0], "type") == 0) {
            snprintf(scope, sizeof(scope), " of job type %s", n->values[0]);

        } else if (n->nlabels) {
            snprintf(scope, sizeof(scope), " to target %s", n->values[0]);
        }

        if (n->attempts < n->min_attempts) {
            snprintf(buf, len, "%.0f of %.0f attempts%s failed over %s, "
                     "fewer than min_attempts (%u)", n->failures,
                     n->attempts, scope, window, n->min_attempts);
            return;
        }

        snprintf(buf, len, "%.0f of %.0f attempts%s failed over %s (%.4g%%, "
                 "threshold %.4g%%)", n->failures, n->attempts, scope,
                 window, n->value * 100, n->threshold * 100);
        return;

    case VW_ALERT_DLQ_SIZE:
        snprintf(buf, len, "%.0f job%s in the dead letters (threshold %.0f)",
                 n->value, n->value == 1 ? "" : "s", n->threshold);
        return;

    case VW_ALERT_BREAKER_OPEN:
        s = n->value >= 2 ? "open" : n->value >= 1 ? "half-open" : "closed";
        snprintf(buf, len, "the breaker of target %s is %s",
                 vw_alert_label(n, "target"), s);
        return;

    case VW_ALERT_OLDEST_JOB_AGE:
        snprintf(buf, len, "the oldest job in %s is %gs old (threshold %gs)",
                 vw_alert_label(n, "stream"), n->value, n->threshold);
        return;

    case VW_ALERT_QUOTA_SHARE:
        snprintf(buf, len, "target %s has used %.4g%% of its %s allowance "
                 "(threshold %.4g%%)", vw_alert_label(n, "target"),
                 n->value * 100, vw_alert_label(n, "window"),
                 n->threshold * 100);
        return;

    case VW_ALERT_JWKS_FAILING:
        snprintf(buf, len, "%.0f refreshes of the key set %s failed in a row "
                 "(threshold %.0f)", n->value, vw_alert_label(n, "source"),
                 n->threshold);
        return;
    }

    buf[0] = '\0';
}


/* a whole number as a JSON integer (1, not 1.0), else a real */
static json_t *
vw_alert_number(double v)
{
    if (v == floor(v) && fabs(v) < 1e15) {
        return json_integer((json_int_t) v);
    }

    return json_real(v);
}


/* Slack's mrkdwn: &, < and > are its control characters */
static char *
vw_alert_mrkdwn(const char *s)
{
    char    *out, *p;
    size_t   len;

    len = strlen(s);

    out = malloc(len * 5 + 1);
    if (out == NULL) {
        return NULL;
    }

    for (p = out; *s; s++) {
        if (*s == '&') {
            p += sprintf(p, "&amp;");

        } else if (*s == '<') {
            p += sprintf(p, "&lt;");

        } else if (*s == '>') {
            p += sprintf(p, "&gt;");

        } else {
            *p++ = *s;
        }
    }

    *p = '\0';

    return out;
}


/* a section field: "*<title>*\n<text>", text escaped */
static json_t *
vw_alert_field(const char *title, const char *text)
{
    char    *esc, *both;
    json_t  *o;

    esc = vw_alert_mrkdwn(text);
    if (esc == NULL) {
        return NULL;
    }

    both = malloc(strlen(title) + strlen(esc) + 8);
    if (both == NULL) {
        free(esc);
        return NULL;
    }

    sprintf(both, "*%s*\n%s", title, esc);
    o = json_pack("{ssss}", "type", "mrkdwn", "text", both);

    free(esc);
    free(both);

    return o;
}


static json_t *
vw_alert_slack(const vw_alert_notice_t *n, const char *summary,
    const char *started, const char *resolved)
{
    char         head[200], num[64], *text, *esc, *labels;
    size_t       i, len;
    json_t      *fields, *o;
    const char  *status;

    status = n->resolved ? "RESOLVED" : "FIRING";

    /* a header is plain text of at most 150 characters: a rule name is
       at most 128 */
    snprintf(head, sizeof(head), "[%s] %s", status, n->rule);

    esc = vw_alert_mrkdwn(summary);
    text = esc ? malloc(strlen(head) + strlen(n->severity) + strlen(esc)
                        + 8)
               : NULL;

    if (text == NULL) {
        free(esc);
        return NULL;
    }

    sprintf(text, "%s (%s): %s", head, n->severity, esc);

    fields = json_array();

#define vw_add(title, s)                                                      \
    json_array_append_new(fields, vw_alert_field(title, s))

    vw_add("Kind", vw_alert_kinds[n->kind]);
    vw_add("Severity", n->severity);

    if (n->has_value) {
        snprintf(num, sizeof(num), "%g", n->value);
    } else {
        snprintf(num, sizeof(num), "no data");
    }

    vw_add("Value", num);
    snprintf(num, sizeof(num), "%g", n->threshold);
    vw_add("Threshold", num);
    vw_add("Started", started);

    if (resolved != NULL) {
        vw_add("Resolved", resolved);
    }

    if (n->nlabels) {
        len = 1;

        for (i = 0; i < n->nlabels; i++) {
            len += strlen(n->names[i]) + strlen(n->values[i]) + 2;
        }

        labels = malloc(len);

        if (labels != NULL) {
            labels[0] = '\0';

            for (i = 0; i < n->nlabels; i++) {
                sprintf(labels + strlen(labels), "%s%s=%s", i ? ", " : "",
                        n->names[i], n->values[i]);
            }

            vw_add("Labels", labels);
            free(labels);
        }
    }

#undef vw_add

    o = json_pack("{s:s, s:[{s:s, s:{s:s, s:s}}, {s:s, s:{s:s, s:s}},"
                  " {s:s, s:o}]}",
                  "text", text,
                  "blocks",
                  "type", "header", "text", "type", "plain_text",
                  "text", head,
                  "type", "section", "text", "type", "mrkdwn", "text", esc,
                  "type", "section", "fields", fields);

    free(text);
    free(esc);

    return o;
}


char *
vw_alert_body(const vw_alert_notice_t *n, int slack)
{
    char        summary[600], started[32], resolved[32], *text;
    json_t     *o, *labels;
    size_t      i;

    vw_alert_summary(n, summary, sizeof(summary));
    vw_alert_time(n->started_ms, started);

    if (n->resolved) {
        vw_alert_time(n->resolved_ms, resolved);
    }

    if (slack) {
        o = vw_alert_slack(n, summary, started,
                           n->resolved ? resolved : NULL);

    } else {
        labels = json_object();

        for (i = 0; labels != NULL && i < n->nlabels; i++) {
            json_object_set_new(labels, n->names[i],
                                json_string(n->values[i]));
        }

        o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:s, s:o, s:s}",
                      "status", n->resolved ? "resolved" : "firing",
                      "rule", n->rule,
                      "kind", vw_alert_kinds[n->kind],
                      "severity", n->severity,
                      "labels", labels,
                      "value", n->has_value ? vw_alert_number(n->value)
                                            : json_null(),
                      "threshold", vw_alert_number(n->threshold),
                      "started_at", started,
                      "resolved_at", n->resolved ? json_string(resolved)
                                                 : json_null(),
                      "summary", summary);
    }

    if (o == NULL) {
        return NULL;
    }

    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);

    return text;
}


void
vw_alert_id(const char *rule, const char *labels, const char *event,
    uint64_t at_ms, char *out)
{
    char            at[24];
    size_t          i;
    EVP_MD_CTX     *ctx;
    unsigned char   md[EVP_MAX_MD_SIZE];

    memset(md, 0, sizeof(md));
    snprintf(at, sizeof(at), "%llu", (unsigned long long) at_ms);

    ctx = EVP_MD_CTX_new();

    if (ctx != NULL) {
        EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
        EVP_DigestUpdate(ctx, rule, strlen(rule) + 1);
        EVP_DigestUpdate(ctx, labels, strlen(labels));

        if (event != NULL) {
            EVP_DigestUpdate(ctx, "", 1);
            EVP_DigestUpdate(ctx, event, strlen(event) + 1);
            EVP_DigestUpdate(ctx, at, strlen(at));
        }

        EVP_DigestFinal_ex(ctx, md, NULL);
        EVP_MD_CTX_free(ctx);
    }

    for (i = 0; i < 16; i++) {
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    }
}
