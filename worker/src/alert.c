/* alert.c -- alert rules evaluated on the worker's loop, notices as jobs */

/*
 * Every [alerting] interval a timer reads the metric registry (metrics.c,
 * by family name) for each [alert] rule, and steps the state machine of
 * each of the rule's label sets (alert_eval.c).  What a change means is
 * settled with the other workers in Redis, on queue's connection, each
 * step one MULTI/EXEC (docs/WORKER.md, "Alerting"):
 *
 *   {vq}:alert:<h>:lease  SET NX PX <cooldown>: who may send a firing
 *                         notice; while it lives, no other one goes out
 *   {vq}:alert:<h>        "<fired ms>": a firing notice of this episode
 *                         went out; DEL by the worker that sends the
 *                         resolved notice, whose DEL answered 1
 *
 * A notice is a job of the [alerting] job type, an http job whose url is
 * the webhook, pushed by vw_queue_push() as DISPATCH pushes jobs: the
 * engine delivers it with its retries, backoff and dead letters.
 *
 * Nothing here is freed while a Redis reply is due for it: a label set
 * waiting for one is "busy", and a rule a reload removed is only marked
 * gone until its label sets are idle.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "vw_alert.h"
#include "vw_engine.h"
#include "vw_fetch.h"
#include "vw_metrics.h"
#include "vw_services.h"


#define VW_ALERT_IDLE_MS  1000     /* the timer without [alerting] */


typedef struct vw_alert_rule_s    vw_alert_rule_t;
typedef struct vw_alert_series_s  vw_alert_series_t;

struct vw_alert_series_s {
    vw_alert_rule_t            *rule;
    char                       *labels;     /* JSON text: the identity */
    char                       *names[VW_METRICS_MAX_LABELS];
    char                       *values[VW_METRICS_MAX_LABELS];
    size_t                      n;
    char                        key[64];    /* {vq}:alert:<h> */
    vw_alert_state_t            st;
    double                      value;      /* read this evaluation */
    double                      attempts;   /* error_rate's */
    double                      failures;
    uint64_t                    next_try;   /* firing: the next lease */

    /* the facts of a resolved notice, kept until it is queued */
    double                      r_value;
    double                      r_attempts;
    double                      r_failures;
    uint64_t                    r_started;
    uint64_t                    r_at;

    unsigned                    seen:1;     /* read this evaluation */
    unsigned                    has_value:1;
    unsigned                    r_has_value:1;
    unsigned                    tried:1;    /* the episode's first lease
                                               was asked for */
    unsigned                    resolve:1;  /* the resolve step is due */
    unsigned                    owed:1;     /* a resolved notice to queue */
    unsigned                    busy:1;     /* a reply is due */
    vw_alert_series_t          *next;
};


/* a copy of a vw_conf_alert_t, refreshed at each evaluation */
struct vw_alert_rule_s {
    vw_alert_t                 *alert;
    char                       *name;
    char                       *fingerprint;  /* kind, filter, window: a
                                                 change starts afresh */
    char                       *filter;     /* the filter's value as the
                                               label has it, or NULL */
    vw_alert_kind_e             kind;
    double                      threshold;
    const char                 *severity;   /* conf.c's, static */
    uint64_t                    for_ms;
    uint64_t                    window_ms;
    unsigned                    min_attempts;
    vw_alert_window_t          *window;     /* error_rate */
    vw_alert_series_t          *series;
    unsigned                    seen:1;
    unsigned                    gone:1;     /* removed: freed once idle */
    vw_alert_rule_t            *next;
};


struct vw_alert_s {
    struct event               *timer;
    vw_queue_t                 *queue;
    char                       *consumer;
    vw_alert_rule_t            *rules;
};


/* a notice on its way to the queue */
typedef struct {
    vw_alert_series_t          *series;
    const char                 *event;      /* firing, reminder, resolved */
    uint64_t                    started;
    char                        id[33];
} vw_alert_op_t;


static void vw_alert_tick(evutil_socket_t fd, short what, void *arg);
static void vw_alert_eval(vw_alert_t *a, vw_alert_rule_t *r,
    const vw_conf_alert_t *cr, const vw_conf_t *conf, uint64_t now);
static void vw_alert_act(vw_alert_t *a, vw_alert_series_t *s,
    const vw_conf_t *conf, uint64_t now);
static int vw_alert_push(vw_alert_t *a, vw_alert_series_t *s,
    const char *event, uint64_t started, uint64_t now);
static void vw_alert_log(vw_alert_series_t *s, const char *msg,
    const char *notice, const char *job);


vw_alert_t *
vw_alert_create(struct event_base *base, vw_queue_t *queue,
    const char *consumer)
{
    vw_alert_t      *a;
    struct timeval   tv;

    a = calloc(1, sizeof(vw_alert_t));
    if (a == NULL) {
        return NULL;
    }

    a->queue = queue;
    a->consumer = strdup(consumer);
    a->timer = evtimer_new(base, vw_alert_tick, a);

    if (a->consumer == NULL || a->timer == NULL) {
        vw_alert_free(a);
        return NULL;
    }

    tv.tv_sec = 0;
    tv.tv_usec = 0;
    evtimer_add(a->timer, &tv);

    return a;
}


static void
vw_alert_series_free(vw_alert_series_t *s)
{
    size_t  i;

    for (i = 0; i < s->n; i++) {
        free(s->names[i]);
        free(s->values[i]);
    }

    free(s->labels);
    free(s);
}


static void
vw_alert_rule_free(vw_alert_rule_t *r)
{
    vw_alert_series_t  *s, *next;

    for (s = r->series; s != NULL; s = next) {
        next = s->next;
        vw_alert_series_free(s);
    }

    free(r->name);
    free(r->fingerprint);
    free(r->filter);
    free(r->window);
    free(r);
}


void
vw_alert_free(vw_alert_t *a)
{
    vw_alert_rule_t  *r, *next;

    if (a == NULL) {
        return;
    }

    for (r = a->rules; r != NULL; r = next) {
        next = r->next;
        vw_alert_rule_free(r);
    }

    if (a->timer != NULL) {
        event_free(a->timer);
    }

    free(a->consumer);
    free(a);
}


/* -- rules and label sets ------------------------------------------------- */

static vw_alert_rule_t *
vw_alert_rule_get(vw_alert_t *a, const vw_conf_alert_t *cr)
{
    char              fp[512], source[VW_FETCH_SOURCE_LEN];
    const char       *filter;
    vw_alert_rule_t  *r, **tail;

    snprintf(fp, sizeof(fp), "%d %s %s %llu", (int) cr->kind,
             cr->label ? cr->label : "-", cr->filter ? cr->filter : "-",
             (unsigned long long) cr->window_ms);

    tail = &a->rules;

    for (r = a->rules; r != NULL; r = r->next) {
        tail = &r->next;

        if (r->gone || strcmp(r->name, cr->name) != 0) {
            continue;
        }

        if (strcmp(r->fingerprint, fp) == 0) {
            return r;
        }

        /* another rule under the same name now: the old one's state ends
           without a notice */
        r->gone = 1;
    }

    r = calloc(1, sizeof(vw_alert_rule_t));
    if (r == NULL) {
        return NULL;
    }

    r->alert = a;
    r->name = strdup(cr->name);
    r->fingerprint = strdup(fp);

    /*
     * a key set's source label has no query and its path is never empty:
     * a source written as the [idp] section has the URL matches it too
     */
    filter = cr->filter;

    if (filter != NULL && strcmp(cr->label, "source") == 0) {
        vw_fetch_source_label(cr->filter, source, sizeof(source));

        if (strcmp(source, "?") != 0) {
            filter = source;
        }
    }

    if (filter != NULL) {
        r->filter = strdup(filter);
    }

    if (cr->kind == VW_ALERT_ERROR_RATE) {
        r->window = calloc(1, sizeof(vw_alert_window_t));
    }

    if (r->name == NULL || r->fingerprint == NULL
        || (filter != NULL && r->filter == NULL)
        || (cr->kind == VW_ALERT_ERROR_RATE && r->window == NULL))
    {
        vw_alert_rule_free(r);
        return NULL;
    }

    *tail = r;

    return r;
}


/* the rule's label set of these labels, made when new; NULL: no memory */
static vw_alert_series_t *
vw_alert_series_get(vw_alert_rule_t *r, const char *const *names,
    const char *const *values, size_t n)
{
    char               *labels, h[33];
    size_t              i;
    vw_alert_series_t  *s, **tail;

    labels = vw_alert_labels(names, values, n);
    if (labels == NULL) {
        return NULL;
    }

    tail = &r->series;

    for (s = r->series; s != NULL; s = s->next) {
        tail = &s->next;

        if (strcmp(s->labels, labels) == 0) {
            free(labels);
            return s;
        }
    }

    s = calloc(1, sizeof(vw_alert_series_t));
    if (s == NULL) {
        free(labels);
        return NULL;
    }

    s->rule = r;
    s->labels = labels;

    for (i = 0; i < n && i < VW_METRICS_MAX_LABELS; i++) {
        s->names[i] = strdup(names[i]);
        s->values[i] = strdup(values[i]);
        s->n = i + 1;

        if (s->names[i] == NULL || s->values[i] == NULL) {
            vw_alert_series_free(s);
            return NULL;
        }
    }

    vw_alert_id(r->name, labels, NULL, 0, h);
    snprintf(s->key, sizeof(s->key), "{vq}:alert:%s", h);

    *tail = s;

    return s;
}


/* frees the label sets nothing waits on, and the rules left empty */
static void
vw_alert_reap(vw_alert_t *a)
{
    vw_alert_rule_t     *r, **rp;
    vw_alert_series_t   *s, **sp;

    for (rp = &a->rules; (r = *rp) != NULL; /* void */ ) {

        for (sp = &r->series; (s = *sp) != NULL; /* void */ ) {
            if (!s->busy
                && (r->gone
                    || (!s->seen && s->st.phase == VW_ALERT_INACTIVE
                        && !s->resolve && !s->owed)))
            {
                *sp = s->next;
                vw_alert_series_free(s);
                continue;
            }

            sp = &s->next;
        }

        if (r->gone && r->series == NULL) {
            *rp = r->next;
            vw_alert_rule_free(r);
            continue;
        }

        rp = &r->next;
    }
}


/* -- evaluation ----------------------------------------------------------- */

static void
vw_alert_tick(evutil_socket_t fd, short what, void *arg)
{
    uint64_t                now, ms;
    vw_alert_t             *a = arg;
    struct timeval          tv;
    vw_alert_rule_t        *r;
    const vw_conf_t        *conf;
    const vw_conf_alert_t  *cr;

    conf = vw_conf_current();
    now = vw_services_now();
    ms = VW_ALERT_IDLE_MS;

    for (r = a->rules; r != NULL; r = r->next) {
        r->seen = 0;
    }

    if (conf != NULL && conf->alerting.job != NULL) {
        ms = conf->alerting.interval_ms;

        for (cr = conf->alerting.rules; cr != NULL; cr = cr->next) {
            r = vw_alert_rule_get(a, cr);

            if (r != NULL) {
                r->seen = 1;
                vw_alert_eval(a, r, cr, conf, now);
            }
        }
    }

    /* removed by a reload: forgotten without a notice */
    for (r = a->rules; r != NULL; r = r->next) {
        if (!r->seen && !r->gone) {
            r->gone = 1;
            vw_metrics_set(VW_METRICS_ALERT_FIRING, 0, r->name, NULL);
        }
    }

    vw_alert_reap(a);

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    evtimer_add(a->timer, &tv);
}


/* sums an attempts counter's series: all of them, and those not success */
typedef struct {
    const char                 *label;     /* the filter, or NULL */
    const char                 *filter;
    const char                 *exclude;   /* a job type left out */
    double                      total;
    double                      failed;
} vw_alert_count_t;


static void
vw_alert_count(void *data, const char *const *names,
    const char *const *values, size_t n, double value)
{
    int                match;
    size_t             i;
    const char        *outcome;
    vw_alert_count_t  *c = data;

    match = (c->label == NULL);
    outcome = NULL;

    for (i = 0; i < n; i++) {
        if (strcmp(names[i], "outcome") == 0) {
            outcome = values[i];

        } else if (c->label != NULL && strcmp(names[i], c->label) == 0
                   && strcmp(values[i], c->filter) == 0)
        {
            match = 1;

        } else if (c->exclude != NULL && strcmp(names[i], "type") == 0
                   && strcmp(values[i], c->exclude) == 0)
        {
            return;
        }
    }

    if (!match) {
        return;
    }

    c->total += value;

    if (outcome != NULL && strcmp(outcome, "success") != 0) {
        c->failed += value;
    }
}


/* a gauge family's series that pass the rule's filter become label sets */
typedef struct {
    vw_alert_rule_t            *rule;
    const char                 *label;
    const char                 *filter;
} vw_alert_scan_t;


static void
vw_alert_scan(void *data, const char *const *names,
    const char *const *values, size_t n, double value)
{
    size_t              i;
    vw_alert_scan_t    *sc = data;
    vw_alert_series_t  *s;

    if (sc->label != NULL) {
        for (i = 0; i < n; i++) {
            if (strcmp(names[i], sc->label) == 0) {
                break;
            }
        }

        if (i == n || strcmp(values[i], sc->filter) != 0) {
            return;
        }
    }

    s = vw_alert_series_get(sc->rule, names, values, n);

    if (s != NULL) {
        s->seen = 1;
        s->has_value = 1;
        s->value = value;
    }
}


/* the metric families each kind reads (docs/WORKER.md, "Alerting") */
static const char *const  vw_alert_families[] = {
    NULL,
    NULL,
    NULL,
    "vantage_worker_breaker_state",
    "vantage_worker_stream_oldest_entry_age_seconds",
    "vantage_worker_vendor_quota_ratio",
    "vantage_worker_jwks_consecutive_failures"
};


static void
vw_alert_read(vw_alert_rule_t *r, const vw_conf_alert_t *cr,
    const vw_conf_t *conf, uint64_t now)
{
    double              v, attempts, failures;
    const char         *name, *value;
    vw_alert_scan_t     sc;
    vw_alert_count_t    c;
    vw_alert_series_t  *s;

    switch (r->kind) {

    case VW_ALERT_ERROR_RATE:
        memset(&c, 0, sizeof(vw_alert_count_t));
        c.label = cr->label;
        c.filter = cr->filter;

        /* its own notices' failures would feed the rule that sends them */
        if (cr->label == NULL) {
            c.exclude = conf->alerting.job;
        }

        if (vw_metrics_each(cr->label && strcmp(cr->label, "target") == 0
                            ? "vantage_worker_target_attempts_total"
                            : "vantage_worker_attempts_total",
                            vw_alert_count, &c)
            != VW_OK)
        {
            return;     /* no such family (yet): no data */
        }

        vw_alert_window_add(r->window, now, r->window_ms, c.total, c.failed,
                            &attempts, &failures);

        name = cr->label;
        value = cr->filter;
        s = vw_alert_series_get(r, &name, &value, cr->label ? 1 : 0);

        if (s != NULL) {
            s->seen = 1;
            s->has_value = 1;
            s->attempts = attempts;
            s->failures = failures;
            s->value = attempts > 0 ? failures / attempts : 0;
        }

        return;

    case VW_ALERT_DLQ_SIZE:
        if (vw_metrics_value("vantage_worker_jobs", "dead", NULL, &v)
            != VW_OK)
        {
            return;     /* not sampled yet */
        }

        s = vw_alert_series_get(r, NULL, NULL, 0);

        if (s != NULL) {
            s->seen = 1;
            s->has_value = 1;
            s->value = v;
        }

        return;

    default:
        sc.rule = r;
        sc.label = cr->label;
        sc.filter = r->filter;
        (void) vw_metrics_each(vw_alert_families[r->kind], vw_alert_scan,
                               &sc);
        return;
    }
}


static void
vw_alert_eval(vw_alert_t *a, vw_alert_rule_t *r, const vw_conf_alert_t *cr,
    const vw_conf_t *conf, uint64_t now)
{
    int                 holds;
    unsigned            firing;
    vw_alert_change_e   change;
    vw_alert_series_t  *s;

    r->kind = cr->kind;
    r->threshold = cr->threshold;
    r->severity = cr->severity;
    r->for_ms = cr->for_ms;
    r->window_ms = cr->window_ms;
    r->min_attempts = cr->min_attempts;

    for (s = r->series; s != NULL; s = s->next) {
        s->seen = 0;
        s->has_value = 0;
    }

    vw_alert_read(r, cr, conf, now);

    firing = 0;

    for (s = r->series; s != NULL; s = s->next) {
        holds = s->has_value && s->value >= r->threshold
                && (r->kind != VW_ALERT_ERROR_RATE
                    || s->attempts >= r->min_attempts);

        change = vw_alert_step(&s->st, holds, now, r->for_ms);

        if (change == VW_ALERT_FIRED) {
            s->tried = 0;
            s->next_try = now;

        } else if (change == VW_ALERT_RESOLVED) {
            s->resolve = 1;
            s->r_has_value = s->has_value;
            s->r_value = s->value;
            s->r_attempts = s->attempts;
            s->r_failures = s->failures;
            s->r_at = now;
        }

        firing += (s->st.phase == VW_ALERT_FIRING);

        vw_alert_act(a, s, conf, now);
    }

    vw_metrics_set(VW_METRICS_ALERT_FIRING, firing, r->name, NULL);
}


/* -- the steps in Redis --------------------------------------------------- */

static void vw_alert_leased(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_alert_unset(redisAsyncContext *ac, void *reply,
    void *privdata);


/* how long the episode's key lives without a firing worker asking */
static uint64_t
vw_alert_ttl(const vw_conf_t *conf)
{
    return 2 * conf->alerting.cooldown_ms + 2 * conf->alerting.interval_ms;
}


static void
vw_alert_act(vw_alert_t *a, vw_alert_series_t *s, const vw_conf_t *conf,
    uint64_t now)
{
    redisAsyncContext  *ac;

    if (s->busy) {
        return;
    }

    if (s->owed) {
        /* the resolve was settled; its push failed: again, Redis willing */
        if (vw_queue_context(a->queue) != NULL) {
            (void) vw_alert_push(a, s, "resolved", s->r_started, now);
        }

        return;
    }

    if (!s->resolve
        && (s->st.phase != VW_ALERT_FIRING || now < s->next_try))
    {
        return;
    }

    ac = vw_queue_context(a->queue);
    if (ac == NULL) {
        return;     /* Redis is away: the next evaluation asks again */
    }

    (void) redisAsyncCommand(ac, NULL, NULL, "MULTI");

    if (s->resolve) {
        /* one worker's DEL answers 1: that one sends the resolved notice */
        (void) redisAsyncCommand(ac, NULL, NULL, "GET %s", s->key);
        (void) redisAsyncCommand(ac, NULL, NULL, "DEL %s", s->key);

        if (redisAsyncCommand(ac, vw_alert_unset, s, "EXEC") == REDIS_OK) {
            s->busy = 1;
        }

        return;
    }

    (void) redisAsyncCommand(ac, NULL, NULL, "SET %s:lease %s NX PX %llu",
                             s->key, a->consumer,
                             (unsigned long long) conf->alerting.cooldown_ms);
    (void) redisAsyncCommand(ac, NULL, NULL, "GET %s", s->key);
    (void) redisAsyncCommand(ac, NULL, NULL, "PTTL %s:lease", s->key);
    (void) redisAsyncCommand(ac, NULL, NULL, "PEXPIRE %s %llu", s->key,
                             (unsigned long long) vw_alert_ttl(conf));

    if (redisAsyncCommand(ac, vw_alert_leased, s, "EXEC") == REDIS_OK) {
        s->busy = 1;
    }
}


/* [SET's OK or nil, the episode's "<fired ms>" or nil, PTTL, PEXPIRE] */
static void
vw_alert_leased(redisAsyncContext *ac, void *reply, void *privdata)
{
    int                   first;
    uint64_t              now, started;
    redisReply           *r = reply, **e;
    vw_alert_series_t    *s = privdata;
    vw_alert_t           *a = s->rule->alert;
    const vw_conf_t      *conf;
    vw_alert_decision_e   d;

    s->busy = 0;
    conf = vw_conf_current();
    now = vw_services_now();

    if (r == NULL || s->rule->gone || conf == NULL
        || conf->alerting.job == NULL)
    {
        return;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4) {
        vw_log("error", "alert: Redis refused a lease", "rule",
               s->rule->name, "reason",
               r->type == REDIS_REPLY_ERROR ? r->str : "EXEC", NULL);
        s->next_try = now + conf->alerting.interval_ms;
        return;
    }

    e = r->element;
    d = vw_alert_decide(e[0]->type == REDIS_REPLY_STATUS,
                        e[1]->type == REDIS_REPLY_STRING,
                        conf->alerting.remind);

    first = !s->tried;
    s->tried = 1;
    s->next_try = now + conf->alerting.cooldown_ms;

    switch (d) {

    case VW_ALERT_NOTIFY:
        (void) vw_alert_push(a, s, "firing", s->st.fired_ms, now);
        return;

    case VW_ALERT_REMIND:
        started = strtoull(e[1]->str, NULL, 10);
        (void) vw_alert_push(a, s, "reminder", started ? started
                                                       : s->st.fired_ms,
                             now);
        return;

    case VW_ALERT_SUPPRESS:
        /* asked again when the lease ends */
        if (e[2]->type == REDIS_REPLY_INTEGER && e[2]->integer > 0) {
            s->next_try = now + (uint64_t) e[2]->integer;

        } else {
            s->next_try = now + conf->alerting.interval_ms;
        }

        /* fall through */

    case VW_ALERT_QUIET:
        if (first) {
            vw_metrics_inc(VW_METRICS_ALERTS, s->rule->name, "suppressed");
            vw_alert_log(s, "alert firing", d == VW_ALERT_QUIET
                                            ? "sent_already" : "suppressed",
                         NULL);
        }

        return;
    }
}


/* [the episode's "<fired ms>" or nil, DEL's count] */
static void
vw_alert_unset(redisAsyncContext *ac, void *reply, void *privdata)
{
    uint64_t            started;
    redisReply         *r = reply, **e;
    vw_alert_series_t  *s = privdata;

    s->busy = 0;

    if (r == NULL || s->rule->gone) {
        return;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
        || r->element[1]->type != REDIS_REPLY_INTEGER)
    {
        /* s->resolve stays: the next evaluation asks again */
        vw_log("error", "alert: Redis refused a resolve", "rule",
               s->rule->name, "reason",
               r->type == REDIS_REPLY_ERROR ? r->str : "EXEC", NULL);
        return;
    }

    e = r->element;
    s->resolve = 0;
    s->tried = 0;

    if (e[1]->integer != 1) {
        /* no notice of this episode went out, or another worker sends
           the resolved one */
        vw_metrics_inc(VW_METRICS_ALERTS, s->rule->name, "suppressed");
        vw_alert_log(s, "alert resolved", "suppressed", NULL);
        return;
    }

    started = e[0]->type == REDIS_REPLY_STRING
              ? strtoull(e[0]->str, NULL, 10) : 0;

    s->r_started = started ? started : s->st.fired_ms;
    s->owed = 1;

    (void) vw_alert_push(s->rule->alert, s, "resolved", s->r_started,
                         vw_services_now());
}


/* -- notices -------------------------------------------------------------- */

static void vw_alert_pushed(void *data, int rc, const char *job_id,
    const char *state);


/*
 * Queues the notice of event for s: "firing" and "reminder" with what
 * was read now, "resolved" with the facts kept when it resolved.
 * Returns VW_OK when the push is on its way (s is busy until it ends),
 * else VW_ERROR, handled as a failed push.
 */
static int
vw_alert_push(vw_alert_t *a, vw_alert_series_t *s, const char *event,
    uint64_t started, uint64_t now)
{
    char                 *body;
    vw_job_t              job;
    vw_alert_op_t        *op;
    vw_alert_rule_t      *r = s->rule;
    const vw_conf_t      *conf;
    vw_alert_notice_t     n;
    vw_queue_limits_t     lim;
    const vw_conf_job_t  *jc;

    static const char     headers[] = "[[\"Content-Type\","
                                      "\"application/json\"]]";

    conf = vw_conf_current();
    op = calloc(1, sizeof(vw_alert_op_t));

    if (op == NULL || conf == NULL || conf->alerting.job == NULL) {
        free(op);
        return VW_ERROR;
    }

    op->series = s;
    op->event = event;
    op->started = started;

    memset(&n, 0, sizeof(vw_alert_notice_t));
    n.rule = r->name;
    n.kind = r->kind;
    n.severity = r->severity;
    n.names = (const char *const *) s->names;
    n.values = (const char *const *) s->values;
    n.nlabels = s->n;
    n.threshold = r->threshold;
    n.window_ms = r->window_ms;
    n.min_attempts = r->min_attempts;
    n.started_ms = started;

    if (strcmp(event, "resolved") == 0) {
        n.resolved = 1;
        n.resolved_ms = s->r_at;
        n.has_value = s->r_has_value;
        n.value = s->r_value;
        n.attempts = s->r_attempts;
        n.failures = s->r_failures;

    } else {
        n.has_value = s->has_value;
        n.value = s->value;
        n.attempts = s->attempts;
        n.failures = s->failures;
    }

    vw_alert_id(r->name, s->labels, event,
                strcmp(event, "reminder") == 0 ? now : started, op->id);

    body = vw_alert_body(&n, conf->alerting.slack);
    if (body == NULL) {
        vw_alert_pushed(op, VW_ERROR, NULL, NULL);
        return VW_ERROR;
    }

    memset(&job, 0, sizeof(vw_job_t));
    memcpy(job.id, op->id, sizeof(job.id));

#define vw_set(f, v)                                                          \
    job.f.data = (const unsigned char *) (v);                                 \
    job.f.len = strlen(v)

    vw_set(type, conf->alerting.job);
    vw_set(tenant, "vantage");
    vw_set(idempotency_key, op->id);
    vw_set(correlation_id, op->id);
    vw_set(headers, headers);
    vw_set(body, body);

#undef vw_set

    jc = vw_conf_job(conf, conf->alerting.job, strlen(conf->alerting.job));
    vw_server_limits(conf, jc, &lim);

    /* a few notices: the alert about a backlog must get past its cap */
    lim.inflight_cap = 0;

    s->busy = 1;

    if (vw_queue_push(a->queue, &job, &lim, vw_alert_pushed, op) != VW_OK) {
        free(body);
        vw_alert_pushed(op, VW_ERROR, NULL, NULL);
        return VW_ERROR;
    }

    free(body);

    return VW_OK;
}


/* queued (or the id's job was already: a repeated push), or not */
static void
vw_alert_pushed(void *data, int rc, const char *job_id, const char *state)
{
    vw_alert_op_t      *op = data;
    vw_alert_series_t  *s = op->series;
    redisAsyncContext  *ac;
    const vw_conf_t    *conf;

    s->busy = 0;
    conf = vw_conf_current();

    if (s->rule->gone || conf == NULL || conf->alerting.job == NULL) {
        free(op);
        return;
    }

    ac = vw_queue_context(s->rule->alert->queue);

    if (rc != VW_OK && rc != VW_DECLINED) {
        vw_log("error", "alert: notice not queued: tried again", "rule",
               s->rule->name, "event", op->event, "reason",
               rc == VW_BUSY ? "its id is being written"
               : "the job queue is unavailable", NULL);

        if (strcmp(op->event, "firing") == 0) {
            /* a lease that sent nothing must not hold the next one */
            s->next_try = vw_services_now() + conf->alerting.interval_ms;

            if (ac != NULL) {
                (void) redisAsyncCommand(ac, NULL, NULL, "DEL %s:lease",
                                         s->key);
            }
        }

        free(op);
        return;
    }

    if (strcmp(op->event, "resolved") == 0) {
        s->owed = 0;
        vw_metrics_inc(VW_METRICS_ALERTS, s->rule->name, "resolved");
        vw_alert_log(s, "alert resolved", "queued", op->id);

    } else {
        vw_metrics_inc(VW_METRICS_ALERTS, s->rule->name, "fired");
        vw_alert_log(s, strcmp(op->event, "firing") == 0 ? "alert firing"
                                                         : "alert reminder",
                     "queued", op->id);
    }

    /* the episode is notified: its resolve sends a resolved notice */
    if (strcmp(op->event, "firing") == 0 && ac != NULL) {
        (void) redisAsyncCommand(ac, NULL, NULL, "SET %s %llu PX %llu",
                                 s->key, (unsigned long long) op->started,
                                 (unsigned long long) vw_alert_ttl(conf));
    }

    free(op);
}


static void
vw_alert_log(vw_alert_series_t *s, const char *msg, const char *notice,
    const char *job)
{
    char              value[32], threshold[32];
    int               resolved;
    vw_alert_rule_t  *r = s->rule;

    resolved = (strcmp(msg, "alert resolved") == 0);

    if (resolved ? s->r_has_value : s->has_value) {
        snprintf(value, sizeof(value), "%g", resolved ? s->r_value
                                                      : s->value);
    } else {
        snprintf(value, sizeof(value), "none");
    }

    snprintf(threshold, sizeof(threshold), "%g", r->threshold);

    vw_log(resolved ? "info" : "warn", msg, "rule", r->name, "labels",
           s->labels, "severity", r->severity, "value", value, "threshold",
           threshold, "notice", notice, job ? "job" : NULL, job, NULL);
}
