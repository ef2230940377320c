/* metrics.c -- the worker's metric registry and its Prometheus text */

/*
 * A fixed table of families; each holds a list of series, one per label
 * set, made on first update.  The text follows the exposition format
 * 0.0.4: "# HELP" and "# TYPE" before each family, label values escaped
 * (backslash, double quote, newline), histogram buckets cumulative and
 * ending with le="+Inf", then _sum and _count.  Only the event loop's
 * thread calls in, so nothing is locked.
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vw_metrics.h"


typedef enum {
    VW_METRICS_COUNTER = 0,
    VW_METRICS_GAUGE,
    VW_METRICS_HISTOGRAM
} vw_metrics_type_e;


/* attempt latency, seconds: from a fast local call to a vendor timeout */
static const double  vw_metrics_seconds[] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60
};

#define VW_METRICS_NBOUNDS \
    (sizeof(vw_metrics_seconds) / sizeof(vw_metrics_seconds[0]))

/* vw_metrics_sample_t's buckets are as many */
typedef char vw_metrics_bounds_check[VW_METRICS_NBOUNDS == VW_METRICS_BOUNDS
                                     ? 1 : -1];


typedef struct vw_metrics_series_s  vw_metrics_series_t;

struct vw_metrics_series_s {
    char                       *labels[VW_METRICS_MAX_LABELS];
    uint64_t                    count;    /* counter; histogram _count */
    double                      value;    /* gauge; histogram _sum */
    uint64_t                    buckets[VW_METRICS_NBOUNDS]; /* not
                                                   cumulative: one each */
    vw_metrics_series_t        *next;
};


typedef struct {
    const char                 *name;
    const char                 *help;
    vw_metrics_type_e           type;
    const char                 *label[VW_METRICS_MAX_LABELS];
    vw_metrics_series_t        *series;
    vw_metrics_series_t       **tail;
    unsigned                    n;
} vw_metrics_family_t;


static vw_metrics_family_t  vw_metrics[VW_METRICS_FAMILIES] = {
    { "vantage_worker_dispatch_accepted_total",
      "Jobs DISPATCH made durable, by job type.",
      VW_METRICS_COUNTER, { "type", NULL }, NULL, NULL, 0 },
    { "vantage_worker_dispatch_refused_total",
      "DISPATCH frames answered with an error, by status.",
      VW_METRICS_COUNTER, { "status", NULL }, NULL, NULL, 0 },
    { "vantage_worker_attempts_total",
      "Attempts settled, by job type and outcome (success, retry, dead).",
      VW_METRICS_COUNTER, { "type", "outcome" }, NULL, NULL, 0 },
    { "vantage_worker_retries_total",
      "Attempts scheduled again, by reason class.",
      VW_METRICS_COUNTER, { "reason", NULL }, NULL, NULL, 0 },
    { "vantage_worker_dead_letters_total",
      "Jobs moved to the dead letters, by job type.",
      VW_METRICS_COUNTER, { "type", NULL }, NULL, NULL, 0 },
    { "vantage_worker_attempt_duration_seconds",
      "Time of an attempt's call, by target.",
      VW_METRICS_HISTOGRAM, { "target", NULL }, NULL, NULL, 0 },
    { "vantage_worker_breaker_state",
      "Circuit breaker per target: 0 closed, 1 half-open, 2 open.",
      VW_METRICS_GAUGE, { "target", NULL }, NULL, NULL, 0 },
    { "vantage_worker_stream_length",
      "Entries in the stream (XLEN).",
      VW_METRICS_GAUGE, { "stream", NULL }, NULL, NULL, 0 },
    { "vantage_worker_stream_pending",
      "Entries delivered to the consumer group and not yet acknowledged.",
      VW_METRICS_GAUGE, { "stream", NULL }, NULL, NULL, 0 },
    { "vantage_worker_stream_oldest_pending_age_seconds",
      "Age of the oldest unacknowledged entry, 0 when none.",
      VW_METRICS_GAUGE, { "stream", NULL }, NULL, NULL, 0 },
    { "vantage_worker_stream_oldest_entry_age_seconds",
      "Age of the oldest entry in the stream, 0 when empty.",
      VW_METRICS_GAUGE, { "stream", NULL }, NULL, NULL, 0 },
    { "vantage_worker_redis_connected",
      "1 when the hand-off's Redis connection can take jobs, else 0.",
      VW_METRICS_GAUGE, { NULL, NULL }, NULL, NULL, 0 },
    { "vantage_worker_metrics_series_dropped_total",
      "Updates dropped because a family had too many label sets.",
      VW_METRICS_COUNTER, { NULL, NULL }, NULL, NULL, 0 },
    { "vantage_worker_jobs",
      "Jobs in Redis by state: queued (XLEN of the stream), delayed, dead, "
      "done, inflight.",
      VW_METRICS_GAUGE, { "state", NULL }, NULL, NULL, 0 },
    { "vantage_worker_alerts_total",
      "Alert transitions this worker saw, by rule and event (fired, "
      "resolved: a notice queued; suppressed: none, by the cool-down or "
      "another worker).",
      VW_METRICS_COUNTER, { "rule", "event" }, NULL, NULL, 0 },
    { "vantage_worker_alert_firing",
      "Label sets of the rule firing on this worker.",
      VW_METRICS_GAUGE, { "rule", NULL }, NULL, NULL, 0 },
    { "vantage_worker_target_attempts_total",
      "Attempts settled, by target and outcome (success, retry, dead).",
      VW_METRICS_COUNTER, { "target", "outcome" }, NULL, NULL, 0 },
    { "vantage_worker_jobs_total",
      "Job state transitions this worker made, by job type and state "
      "(accepted, succeeded, retrying, dead, replayed).",
      VW_METRICS_COUNTER, { "type", "state" }, NULL, NULL, 0 },
    { "vantage_worker_vendor_quota_used",
      "Vendor API calls used in the window, as the vendor's last answer "
      "said.",
      VW_METRICS_GAUGE, { "target", "window" }, NULL, NULL, 0 },
    { "vantage_worker_vendor_quota_limit",
      "Vendor API calls allowed in the window, as the vendor's last "
      "answer said.",
      VW_METRICS_GAUGE, { "target", "window" }, NULL, NULL, 0 },
    { "vantage_worker_vendor_quota_ratio",
      "Share of the vendor's allowance used in the window, 0 to 1.",
      VW_METRICS_GAUGE, { "target", "window" }, NULL, NULL, 0 },
    { "vantage_worker_oauth_refreshes_total",
      "Requests to a connection's token endpoint, by outcome.",
      VW_METRICS_COUNTER, { "connection", "outcome" }, NULL, NULL, 0 },
    { "vantage_worker_scheduled_runs_total",
      "Runs of scheduled syncs, by schedule and outcome.",
      VW_METRICS_COUNTER, { "schedule", "outcome" }, NULL, NULL, 0 },
    { "vantage_worker_fetch_total",
      "Requests to identity providers made for nginx's FETCH, by kind "
      "and outcome.",
      VW_METRICS_COUNTER, { "kind", "outcome" }, NULL, NULL, 0 },
    { "vantage_worker_jwks_consecutive_failures",
      "Refreshes of a key set that failed in a row since its last "
      "success.",
      VW_METRICS_GAUGE, { "source", NULL }, NULL, NULL, 0 }
};


static int
vw_metrics_same(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}


/* the series of fam with label values l0, l1, or NULL: none yet */
static vw_metrics_series_t *
vw_metrics_lookup(vw_metrics_family_t *fam, const char *l0, const char *l1)
{
    vw_metrics_series_t  *s;

    for (s = fam->series; s != NULL; s = s->next) {
        if (vw_metrics_same(s->labels[0], l0)
            && vw_metrics_same(s->labels[1], l1))
        {
            return s;
        }
    }

    return NULL;
}


/* the series of f with these labels, made if new; NULL: none to update */
static vw_metrics_series_t *
vw_metrics_series(vw_metrics_family_e f, const char *l0, const char *l1)
{
    unsigned               i;
    const char            *l[VW_METRICS_MAX_LABELS];
    vw_metrics_family_t   *fam;
    vw_metrics_series_t   *s;

    if ((unsigned) f >= VW_METRICS_FAMILIES) {
        return NULL;
    }

    fam = &vw_metrics[f];
    l[0] = l0;
    l[1] = l1;

    s = vw_metrics_lookup(fam, l0, l1);
    if (s != NULL) {
        return s;
    }

    if (fam->n >= VW_METRICS_MAX_SERIES) {
        if (f != VW_METRICS_SERIES_DROPPED) {
            vw_metrics_add(VW_METRICS_SERIES_DROPPED, 1, NULL, NULL);
        }

        return NULL;
    }

    s = calloc(1, sizeof(vw_metrics_series_t));
    if (s == NULL) {
        return NULL;
    }

    for (i = 0; i < VW_METRICS_MAX_LABELS; i++) {
        if (fam->label[i] == NULL) {
            continue;
        }

        s->labels[i] = strdup(l[i] ? l[i] : "");
        if (s->labels[i] == NULL) {
            free(s->labels[0]);
            free(s);
            return NULL;
        }
    }

    if (fam->tail == NULL) {
        fam->tail = &fam->series;
    }

    *fam->tail = s;
    fam->tail = &s->next;
    fam->n++;

    return s;
}


void
vw_metrics_add(vw_metrics_family_e f, uint64_t n, const char *l0,
    const char *l1)
{
    vw_metrics_series_t  *s;

    s = vw_metrics_series(f, l0, l1);
    if (s != NULL) {
        s->count += n;
    }
}


void
vw_metrics_set(vw_metrics_family_e f, double v, const char *l0,
    const char *l1)
{
    vw_metrics_series_t  *s;

    s = vw_metrics_series(f, l0, l1);
    if (s != NULL) {
        s->value = v;
    }
}


void
vw_metrics_drop(vw_metrics_family_e f, const char *l0, const char *l1)
{
    vw_metrics_family_t   *fam;
    vw_metrics_series_t   *s, **sp;

    if ((unsigned) f >= VW_METRICS_FAMILIES) {
        return;
    }

    fam = &vw_metrics[f];

    for (sp = &fam->series; (s = *sp) != NULL; sp = &s->next) {
        if (!vw_metrics_same(s->labels[0], l0)
            || !vw_metrics_same(s->labels[1], l1))
        {
            continue;
        }

        *sp = s->next;

        if (fam->tail == &s->next) {
            fam->tail = sp;
        }

        fam->n--;
        free(s->labels[0]);
        free(s->labels[1]);
        free(s);

        return;
    }
}


void
vw_metrics_observe(vw_metrics_family_e f, double v, const char *l0,
    const char *l1)
{
    size_t                i;
    vw_metrics_series_t  *s;

    s = vw_metrics_series(f, l0, l1);
    if (s == NULL) {
        return;
    }

    /* le is "less than or equal": a value on a bound counts in it */
    for (i = 0; i < VW_METRICS_NBOUNDS; i++) {
        if (v <= vw_metrics_seconds[i]) {
            s->buckets[i]++;
            break;
        }
    }

    s->count++;
    s->value += v;
}


/* backslash, double quote and newline escaped; quote: a label value */
static void
vw_metrics_escape(FILE *out, const char *s, int quote)
{
    for ( /* void */ ; *s; s++) {
        if (*s == '\\') {
            fputs("\\\\", out);

        } else if (*s == '\n') {
            fputs("\\n", out);

        } else if (*s == '"' && quote) {
            fputs("\\\"", out);

        } else {
            fputc(*s, out);
        }
    }
}


/* {a="x",b="y"} with an extra le="..." pair when le is not NULL */
static void
vw_metrics_labels(FILE *out, const vw_metrics_family_t *fam,
    const vw_metrics_series_t *s, const char *le)
{
    unsigned     i, n;

    n = 0;

    for (i = 0; i < VW_METRICS_MAX_LABELS; i++) {
        if (fam->label[i] == NULL) {
            continue;
        }

        fprintf(out, "%s%s=\"", n++ ? "," : "{", fam->label[i]);
        vw_metrics_escape(out, s->labels[i], 1);
        fputc('"', out);
    }

    if (le != NULL) {
        fprintf(out, "%sle=\"%s\"", n++ ? "," : "{", le);
    }

    if (n) {
        fputc('}', out);
    }
}


/* a float as Go's strconv would read it back: no locale, Inf spelled out */
static void
vw_metrics_float(FILE *out, double v)
{
    char  buf[32];

    if (isnan(v)) {
        fputs("NaN", out);

    } else if (isinf(v)) {
        fputs(v > 0 ? "+Inf" : "-Inf", out);

    } else {
        /* the shorter form when it reads back the same: 0.1, not
           0.10000000000000001 */
        snprintf(buf, sizeof(buf), "%.15g", v);

        if (strtod(buf, NULL) != v) {
            snprintf(buf, sizeof(buf), "%.17g", v);
        }

        fputs(buf, out);
    }
}


static void
vw_metrics_family(FILE *out, const vw_metrics_family_t *fam)
{
    char                  le[32];
    size_t                i;
    uint64_t              cum;
    vw_metrics_series_t  *s, zero;
    static const char    *types[] = { "counter", "gauge", "histogram" };

    fprintf(out, "# HELP %s ", fam->name);
    vw_metrics_escape(out, fam->help, 0);
    fprintf(out, "\n# TYPE %s %s\n", fam->name, types[fam->type]);

    s = fam->series;

    /* a family without labels always has its one series, at zero */
    if (s == NULL && fam->label[0] == NULL) {
        memset(&zero, 0, sizeof(vw_metrics_series_t));
        s = &zero;
    }

    for ( /* void */ ; s != NULL; s = s->next) {

        switch (fam->type) {

        case VW_METRICS_COUNTER:
            fputs(fam->name, out);
            vw_metrics_labels(out, fam, s, NULL);
            fprintf(out, " %llu\n", (unsigned long long) s->count);
            break;

        case VW_METRICS_GAUGE:
            fputs(fam->name, out);
            vw_metrics_labels(out, fam, s, NULL);
            fputc(' ', out);
            vw_metrics_float(out, s->value);
            fputc('\n', out);
            break;

        case VW_METRICS_HISTOGRAM:
            cum = 0;

            for (i = 0; i < VW_METRICS_NBOUNDS; i++) {
                cum += s->buckets[i];
                snprintf(le, sizeof(le), "%g", vw_metrics_seconds[i]);
                fprintf(out, "%s_bucket", fam->name);
                vw_metrics_labels(out, fam, s, le);
                fprintf(out, " %llu\n", (unsigned long long) cum);
            }

            fprintf(out, "%s_bucket", fam->name);
            vw_metrics_labels(out, fam, s, "+Inf");
            fprintf(out, " %llu\n", (unsigned long long) s->count);

            fprintf(out, "%s_sum", fam->name);
            vw_metrics_labels(out, fam, s, NULL);
            fputc(' ', out);
            vw_metrics_float(out, s->value);
            fputc('\n', out);

            fprintf(out, "%s_count", fam->name);
            vw_metrics_labels(out, fam, s, NULL);
            fprintf(out, " %llu\n", (unsigned long long) s->count);
            break;
        }
    }
}


static void vw_metrics_json_family(FILE *out,
    const vw_metrics_family_t *fam);


/* every family by write, between head and tail, sep between two */
static char *
vw_metrics_print(size_t *len,
    void (*write)(FILE *out, const vw_metrics_family_t *fam),
    const char *head, const char *sep, const char *tail)
{
    char      *buf;
    FILE      *out;
    unsigned   f;

    buf = NULL;
    *len = 0;

    out = open_memstream(&buf, len);
    if (out == NULL) {
        return NULL;
    }

    fputs(head, out);

    for (f = 0; f < VW_METRICS_FAMILIES; f++) {
        fputs(f ? sep : "", out);
        write(out, &vw_metrics[f]);
    }

    fputs(tail, out);

    if (ferror(out)) {
        fclose(out);
        free(buf);
        return NULL;
    }

    if (fclose(out) != 0) {
        free(buf);
        return NULL;
    }

    return buf;
}


/* a series' value as the read side gives it */
static double
vw_metrics_number(const vw_metrics_family_t *fam,
    const vw_metrics_series_t *s)
{
    return fam->type == VW_METRICS_GAUGE ? s->value : (double) s->count;
}


static vw_metrics_family_t *
vw_metrics_find(const char *family)
{
    unsigned  f;

    for (f = 0; f < VW_METRICS_FAMILIES; f++) {
        if (strcmp(vw_metrics[f].name, family) == 0) {
            return &vw_metrics[f];
        }
    }

    return NULL;
}


int
vw_metrics_each(const char *family, vw_metrics_each_pt fn, void *data)
{
    size_t                n;
    unsigned              i;
    const char           *names[VW_METRICS_MAX_LABELS];
    const char           *values[VW_METRICS_MAX_LABELS];
    vw_metrics_family_t  *fam;
    vw_metrics_series_t  *s;

    fam = vw_metrics_find(family);
    if (fam == NULL) {
        return VW_DECLINED;
    }

    for (s = fam->series; s != NULL; s = s->next) {
        n = 0;

        for (i = 0; i < VW_METRICS_MAX_LABELS; i++) {
            if (fam->label[i] != NULL) {
                names[n] = fam->label[i];
                values[n++] = s->labels[i];
            }
        }

        fn(data, names, values, n, vw_metrics_number(fam, s));
    }

    return VW_OK;
}


char *
vw_metrics_render(size_t *len)
{
    return vw_metrics_print(len, vw_metrics_family, "", "", "");
}


char *
vw_metrics_render_json(size_t *len)
{
    return vw_metrics_print(len, vw_metrics_json_family, "{\"metrics\":[",
                            ",", "]}");
}


/* a JSON string: quote, backslash and control characters escaped */
static void
vw_metrics_json_string(FILE *out, const char *s)
{
    fputc('"', out);

    for ( /* void */ ; *s; s++) {
        if (*s == '"' || *s == '\\') {
            fputc('\\', out);
            fputc(*s, out);

        } else if ((unsigned char) *s < 0x20) {
            fprintf(out, "\\u%04x", (unsigned) (unsigned char) *s);

        } else {
            fputc(*s, out);
        }
    }

    fputc('"', out);
}


/* a number as the text has it; JSON has no NaN or Inf: null */
static void
vw_metrics_json_number(FILE *out, double v)
{
    if (isnan(v) || isinf(v)) {
        fputs("null", out);
        return;
    }

    vw_metrics_float(out, v);
}


static void
vw_metrics_json_family(FILE *out, const vw_metrics_family_t *fam)
{
    char                  le[32];
    size_t                i;
    unsigned              l, n;
    uint64_t              cum;
    vw_metrics_series_t  *s, zero;
    static const char    *types[] = { "counter", "gauge", "histogram" };

    fputs("{\"name\":", out);
    vw_metrics_json_string(out, fam->name);
    fprintf(out, ",\"type\":\"%s\",\"help\":", types[fam->type]);
    vw_metrics_json_string(out, fam->help);
    fputs(",\"samples\":[", out);

    s = fam->series;

    /* as in the text: a family without labels has its one series */
    if (s == NULL && fam->label[0] == NULL) {
        memset(&zero, 0, sizeof(vw_metrics_series_t));
        s = &zero;
    }

    for (n = 0; s != NULL; s = s->next, n++) {
        fputs(n ? ",{\"labels\":{" : "{\"labels\":{", out);

        for (i = 0, l = 0; i < VW_METRICS_MAX_LABELS; i++) {
            if (fam->label[i] == NULL) {
                continue;
            }

            if (l++) {
                fputc(',', out);
            }

            vw_metrics_json_string(out, fam->label[i]);
            fputc(':', out);
            vw_metrics_json_string(out, s->labels[i]);
        }

        fputc('}', out);

        switch (fam->type) {

        case VW_METRICS_COUNTER:
            fprintf(out, ",\"value\":%llu}", (unsigned long long) s->count);
            break;

        case VW_METRICS_GAUGE:
            fputs(",\"value\":", out);
            vw_metrics_json_number(out, s->value);
            fputc('}', out);
            break;

        case VW_METRICS_HISTOGRAM:
            fprintf(out, ",\"count\":%llu,\"sum\":",
                    (unsigned long long) s->count);
            vw_metrics_json_number(out, s->value);
            fputs(",\"buckets\":[", out);

            cum = 0;

            for (i = 0; i < VW_METRICS_NBOUNDS; i++) {
                cum += s->buckets[i];
                snprintf(le, sizeof(le), "%g", vw_metrics_seconds[i]);
                fprintf(out, "[%s,%llu],", le, (unsigned long long) cum);
            }

            fprintf(out, "[\"+Inf\",%llu]]}", (unsigned long long) s->count);
            break;
        }
    }

    fputs("]}", out);
}


int
vw_metrics_value(const char *family, const char *l0, const char *l1,
    double *v)
{
    vw_metrics_family_t  *fam;
    vw_metrics_series_t  *s;

    fam = vw_metrics_find(family);
    if (fam == NULL) {
        return VW_DECLINED;
    }

    s = vw_metrics_lookup(fam, l0, l1);
    if (s == NULL) {
        return VW_DECLINED;
    }

    *v = vw_metrics_number(fam, s);
    return VW_OK;
}


int
vw_metrics_read(vw_metrics_family_e f, const char *l0, const char *l1,
    vw_metrics_sample_t *sample)
{
    size_t                i;
    uint64_t              cum;
    vw_metrics_series_t  *s;

    memset(sample, 0, sizeof(vw_metrics_sample_t));

    if ((unsigned) f >= VW_METRICS_FAMILIES) {
        return VW_METRICS_NONE;
    }

    s = vw_metrics_lookup(&vw_metrics[f], l0, l1);
    if (s == NULL) {
        return VW_METRICS_NONE;
    }

    sample->count = s->count;
    sample->value = s->value;
    cum = 0;

    for (i = 0; i < VW_METRICS_NBOUNDS; i++) {
        cum += s->buckets[i];
        sample->buckets[i] = cum;
    }

    return VW_METRICS_FOUND;
}


/*
 * Prometheus' histogram_quantile(): the bucket the rank falls in, then a
 * straight line from its lower bound (0 for the first) to its upper one;
 * a rank in +Inf's bucket gives the highest finite bound.
 */
double
vw_metrics_quantile(const vw_metrics_sample_t *sample, double q)
{
    size_t  b;
    double  rank, start, below, in;

    if (sample->count == 0 || isnan(q)) {
        return NAN;
    }

    if (q < 0) {
        return -INFINITY;
    }

    if (q > 1) {
        return INFINITY;
    }

    rank = q * (double) sample->count;

    for (b = 0; b < VW_METRICS_NBOUNDS; b++) {
        if ((double) sample->buckets[b] >= rank) {
            break;
        }
    }

    if (b == VW_METRICS_NBOUNDS) {
        return vw_metrics_seconds[VW_METRICS_NBOUNDS - 1];
    }

    start = b ? vw_metrics_seconds[b - 1] : 0;
    below = b ? (double) sample->buckets[b - 1] : 0;
    in = (double) sample->buckets[b] - below;

    if (in == 0) {
        return vw_metrics_seconds[b];    /* q = 0: no rank to place */
    }

    return start + (vw_metrics_seconds[b] - start) * ((rank - below) / in);
}


void
vw_metrics_quota(const char *target, const char *window, uint64_t used,
    uint64_t limit)
{
    double  ratio;

    vw_metrics_set(VW_METRICS_QUOTA_USED, (double) used, target, window);
    vw_metrics_set(VW_METRICS_QUOTA_LIMIT, (double) limit, target, window);

    if (limit == 0) {
        return;
    }

    ratio = (double) used / (double) limit;

    vw_metrics_set(VW_METRICS_QUOTA_RATIO, ratio > 1 ? 1 : ratio, target,
                   window);
}


void
vw_metrics_reset(void)
{
    unsigned              f;
    vw_metrics_series_t  *s, *next;

    for (f = 0; f < VW_METRICS_FAMILIES; f++) {
        for (s = vw_metrics[f].series; s != NULL; s = next) {
            next = s->next;
            free(s->labels[0]);
            free(s->labels[1]);
            free(s);
        }

        vw_metrics[f].series = NULL;
        vw_metrics[f].tail = NULL;
        vw_metrics[f].n = 0;
    }
}
