/* status.c -- per-target history and recent failures for the dashboard */

/*
 * What GET /status shows that no metric family holds: each target's
 * attempts in 10-second buckets (a ring of VW_STATUS_BUCKETS slots, each
 * knowing which bucket it holds, so a slot left from an older round reads
 * as empty), and a ring of the last failed attempts.  The per-target
 * summary joins them with the families (attempts by outcome, the latency
 * histogram, the vendor quotas) and the engine's breakers.  Only the
 * event loop's thread calls in, so nothing is locked.
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "vw_conf.h"
#include "vw_metrics.h"
#include "vw_status.h"
#include "vw_target.h"


typedef struct vw_status_target_s  vw_status_target_t;

struct vw_status_target_s {
    char                       *name;
    char                       *connector;   /* the last attempt's */
    uint64_t                    bucket[VW_STATUS_BUCKETS];  /* the bucket
                                                 number (ms / bucket) a
                                                 slot holds */
    unsigned                    attempts[VW_STATUS_BUCKETS];
    unsigned                    errors[VW_STATUS_BUCKETS];
    vw_status_target_t         *next;        /* by name */
};


typedef struct {
    char                        job_id[33];
    char                       *type;
    char                       *target;
    char                       *error;
    const char                 *outcome;     /* "retry" or "dead" */
    long                        status;
    uint64_t                    at_ms;
} vw_status_failure_t;


static vw_status_target_t   *vw_status_targets;
static unsigned              vw_status_ntargets;
static vw_status_failure_t   vw_status_ring[VW_STATUS_FAILURES];
static unsigned              vw_status_head;      /* the next slot */
static unsigned              vw_status_count;


static char *
vw_status_dup(const char *s)
{
    return s ? strdup(s) : NULL;
}


/* the target's record, made in name order if new; NULL: none to update */
static vw_status_target_t *
vw_status_target(const char *name, int make)
{
    int                   c;
    vw_status_target_t   *t, **pp;

    for (pp = &vw_status_targets; *pp != NULL; pp = &(*pp)->next) {
        c = strcmp((*pp)->name, name);

        if (c == 0) {
            return *pp;
        }

        if (c > 0) {
            break;
        }
    }

    /* target names come from the configuration: as bounded as a family */
    if (!make || vw_status_ntargets >= VW_METRICS_MAX_SERIES) {
        return NULL;
    }

    t = calloc(1, sizeof(vw_status_target_t));
    if (t == NULL) {
        return NULL;
    }

    t->name = strdup(name);
    if (t->name == NULL) {
        free(t);
        return NULL;
    }

    t->next = *pp;
    *pp = t;
    vw_status_ntargets++;

    return t;
}


void
vw_status_attempt(const char *job_id, const char *type, const char *target,
    const char *connector, const char *outcome, long status,
    const char *error, uint64_t now)
{
    int                   failed;
    char                 *c;
    unsigned              slot;
    uint64_t              b;
    vw_status_target_t   *t;
    vw_status_failure_t  *f;

    failed = strcmp(outcome, "success") != 0;

    t = vw_status_target(target, 1);

    if (t != NULL) {
        b = now / VW_STATUS_BUCKET_MS;
        slot = b % VW_STATUS_BUCKETS;

        if (t->bucket[slot] != b) {
            t->bucket[slot] = b;
            t->attempts[slot] = 0;
            t->errors[slot] = 0;
        }

        t->attempts[slot]++;
        t->errors[slot] += failed;

        if (connector != NULL
            && (t->connector == NULL || strcmp(t->connector, connector) != 0))
        {
            c = strdup(connector);
            if (c != NULL) {
                free(t->connector);
                t->connector = c;
            }
        }
    }

    if (!failed) {
        return;
    }

    f = &vw_status_ring[vw_status_head];

    free(f->type);
    free(f->target);
    free(f->error);

    snprintf(f->job_id, sizeof(f->job_id), "%s", job_id ? job_id : "");
    f->type = vw_status_dup(type);
    f->target = vw_status_dup(target);
    f->error = vw_status_dup(error);
    f->outcome = strcmp(outcome, "dead") == 0 ? "dead" : "retry";
    f->status = status;
    f->at_ms = now;

    vw_status_head = (vw_status_head + 1) % VW_STATUS_FAILURES;

    if (vw_status_count < VW_STATUS_FAILURES) {
        vw_status_count++;
    }
}


void
vw_status_rate(const char *target, uint64_t now, uint64_t *attempts,
    uint64_t *errors)
{
    unsigned             i, slot;
    uint64_t             b;
    vw_status_target_t  *t;

    *attempts = 0;
    *errors = 0;

    t = vw_status_target(target, 0);
    if (t == NULL) {
        return;
    }

    b = now / VW_STATUS_BUCKET_MS;

    for (i = 0; i < VW_STATUS_RATE_BUCKETS && i <= b; i++) {
        slot = (b - i) % VW_STATUS_BUCKETS;

        if (t->bucket[slot] == b - i) {
            *attempts += t->attempts[slot];
            *errors += t->errors[slot];
        }
    }
}


json_t *
vw_status_history(uint64_t now)
{
    json_t              *a, *o;
    unsigned             slot;
    uint64_t             b, first, last;
    vw_status_target_t  *t;

    a = json_array();
    if (a == NULL) {
        return NULL;
    }

    last = now / VW_STATUS_BUCKET_MS;
    first = last >= VW_STATUS_BUCKETS - 1 ? last - (VW_STATUS_BUCKETS - 1)
                                          : 0;

    for (b = first; b <= last; b++) {
        slot = b % VW_STATUS_BUCKETS;

        for (t = vw_status_targets; t != NULL; t = t->next) {
            if (t->bucket[slot] != b || t->attempts[slot] == 0) {
                continue;
            }

            o = json_pack("{sIsssIsI}",
                          "t_ms", (json_int_t) (b * VW_STATUS_BUCKET_MS),
                          "target", t->name,
                          "attempts", (json_int_t) t->attempts[slot],
                          "errors", (json_int_t) t->errors[slot]);

            if (o == NULL || json_array_append_new(a, o) != 0) {
                json_decref(a);
                return NULL;
            }
        }
    }

    return a;
}


/* a string, or null */
static json_t *
vw_status_str(const char *s)
{
    return s ? json_string(s) : json_null();
}


json_t *
vw_status_failures(void)
{
    json_t               *a, *o;
    unsigned              i;
    vw_status_failure_t  *f;

    a = json_array();
    if (a == NULL) {
        return NULL;
    }

    for (i = 1; i <= vw_status_count; i++) {
        f = &vw_status_ring[(vw_status_head + VW_STATUS_FAILURES - i)
                            % VW_STATUS_FAILURES];

        o = json_pack("{sssososssIsosI}",
                      "job_id", f->job_id,
                      "type", vw_status_str(f->type),
                      "target", vw_status_str(f->target),
                      "outcome", f->outcome,
                      "status", (json_int_t) f->status,
                      "error", vw_status_str(f->error),
                      "at_ms", (json_int_t) f->at_ms);

        if (o == NULL || json_array_append_new(a, o) != 0) {
            json_decref(a);
            return NULL;
        }
    }

    return a;
}


/* a quantile of the target's latency histogram, or null */
static json_t *
vw_status_quantile(const vw_metrics_sample_t *h, double q)
{
    double  v;

    v = vw_metrics_quantile(h, q);

    return isnan(v) ? json_null() : json_real(v);
}


/* the connector of the first job that uses target, by the configuration */
static const char *
vw_status_conf_connector(const vw_conf_t *conf, const char *target)
{
    const vw_conf_job_t  *jc;

    for (jc = conf ? conf->jobs : NULL; jc != NULL; jc = jc->next) {
        if (jc->target != NULL && strcmp(jc->target->name, target) == 0) {
            return jc->connector;
        }
    }

    return NULL;
}


static json_t *
vw_status_connector(const vw_conf_t *conf, const vw_target_t *targets,
    const char *name, uint64_t now)
{
    double                rate;
    json_t               *o, *quota;
    unsigned              i;
    uint64_t              n, failed;
    const char           *connector, *breaker, *status;
    vw_metrics_sample_t   used, limit, h, att[3];
    const vw_target_t    *et;
    vw_status_target_t   *st;

    static const char  *outcomes[] = { "success", "retry", "dead" };
    static const char  *windows[] = { "daily", "burst", "secondly" };

    st = vw_status_target(name, 0);

    connector = st && st->connector ? st->connector
                                    : vw_status_conf_connector(conf, name);

    breaker = "closed";

    for (et = targets; et != NULL; et = et->next) {
        if (strcmp(et->name, name) == 0) {
            breaker = et->state == VW_BREAKER_OPEN ? "open"
                      : et->state == VW_BREAKER_HALF_OPEN ? "half_open"
                      : "closed";
            break;
        }
    }

    for (i = 0; i < 3; i++) {
        (void) vw_metrics_read(VW_METRICS_TARGET_ATTEMPTS, name, outcomes[i],
                               &att[i]);
    }

    vw_status_rate(name, now, &n, &failed);
    rate = n ? (double) failed / (double) n : 0;

    status = strcmp(breaker, "open") == 0 ? "breaker_open"
             : strcmp(breaker, "half_open") == 0
               || rate >= VW_STATUS_DEGRADED ? "degraded" : "healthy";

    (void) vw_metrics_read(VW_METRICS_ATTEMPT_SECONDS, name, NULL, &h);

    quota = json_array();

    for (i = 0; quota != NULL && i < 3; i++) {
        if (vw_metrics_read(VW_METRICS_QUOTA_USED, name, windows[i], &used)
            == VW_METRICS_FOUND
            && vw_metrics_read(VW_METRICS_QUOTA_LIMIT, name, windows[i],
                               &limit)
               == VW_METRICS_FOUND)
        {
            /* counts of calls: whole numbers, written as such */
            json_array_append_new(quota,
                                  json_pack("{sssIsI}", "window", windows[i],
                                            "used", (json_int_t) used.value,
                                            "limit",
                                            (json_int_t) limit.value));
        }
    }

    o = json_pack("{sssosssss{sIsIsI}sfs{sososo}so}",
                  "target", name,
                  "connector", vw_status_str(connector),
                  "status", status,
                  "breaker", breaker,
                  "attempts",
                    "success", (json_int_t) att[0].count,
                    "retry", (json_int_t) att[1].count,
                    "dead", (json_int_t) att[2].count,
                  "error_rate", rate,
                  "latency_seconds",
                    "p50", vw_status_quantile(&h, 0.5),
                    "p90", vw_status_quantile(&h, 0.9),
                    "p99", vw_status_quantile(&h, 0.99),
                  "quota", quota);

    return o;
}


/* names from the three lists, each once: the keys of an object */
static int
vw_status_names_add(json_t *names, const char *name)
{
    return json_object_set_new(names, name, json_true());
}


static int
vw_status_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}


json_t *
vw_status_connectors(const vw_conf_t *conf, const vw_target_t *targets,
    uint64_t now)
{
    json_t                  *names, *a, *o, *v;
    size_t                   i, n;
    const char              *name, **sorted;
    const vw_target_t       *et;
    vw_status_target_t      *st;
    const vw_conf_target_t  *ct;

    names = json_object();
    a = json_array();

    if (names == NULL || a == NULL) {
        goto failed;
    }

    for (ct = conf ? conf->targets : NULL; ct != NULL; ct = ct->next) {
        if (vw_status_names_add(names, ct->name) != 0) {
            goto failed;
        }
    }

    for (et = targets; et != NULL; et = et->next) {
        if (vw_status_names_add(names, et->name) != 0) {
            goto failed;
        }
    }

    for (st = vw_status_targets; st != NULL; st = st->next) {
        if (vw_status_names_add(names, st->name) != 0) {
            goto failed;
        }
    }

    n = json_object_size(names);
    sorted = calloc(n + 1, sizeof(char *));
    if (sorted == NULL) {
        goto failed;
    }

    i = 0;

    json_object_foreach(names, name, v) {
        sorted[i++] = name;
    }

    qsort(sorted, n, sizeof(char *), vw_status_cmp);

    for (i = 0; i < n; i++) {
        o = vw_status_connector(conf, targets, sorted[i], now);

        if (o == NULL || json_array_append_new(a, o) != 0) {
            free(sorted);
            goto failed;
        }
    }

    free(sorted);
    json_decref(names);

    return a;

failed:

    json_decref(names);
    json_decref(a);
    return NULL;
}


void
vw_status_reset(void)
{
    unsigned             i;
    vw_status_target_t  *t, *next;

    for (t = vw_status_targets; t != NULL; t = next) {
        next = t->next;
        free(t->name);
        free(t->connector);
        free(t);
    }

    vw_status_targets = NULL;
    vw_status_ntargets = 0;

    for (i = 0; i < VW_STATUS_FAILURES; i++) {
        free(vw_status_ring[i].type);
        free(vw_status_ring[i].target);
        free(vw_status_ring[i].error);
    }

    memset(vw_status_ring, 0, sizeof(vw_status_ring));
    vw_status_head = 0;
    vw_status_count = 0;
}
