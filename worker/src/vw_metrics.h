/* vw_metrics.h -- the worker's counters, gauges and histograms */

#ifndef VW_METRICS_H
#define VW_METRICS_H


#include <stddef.h>
#include <stdint.h>

#include "vw_engine.h"


/*
 * The families the worker exposes, one entry each in metrics.c's table
 * (name, help, type, label names).  Label values come from bounded sets:
 * job types, target names, outcomes, reason classes, HTTP statuses, stream
 * names; never a job id or a tenant.  A family holds at most
 * VW_METRICS_MAX_SERIES label sets; an update that would add one more is
 * dropped and counted in vantage_worker_metrics_series_dropped_total.
 *
 * Everything is updated and read from the event loop's thread only, so
 * nothing is locked.
 */
typedef enum {
    VW_METRICS_DISPATCH_ACCEPTED = 0,   /* counter {type} */
    VW_METRICS_DISPATCH_REFUSED,        /* counter {status} */
    VW_METRICS_ATTEMPTS,                /* counter {type, outcome} */
    VW_METRICS_RETRIES,                 /* counter {reason} */
    VW_METRICS_DEAD_LETTERS,            /* counter {type} */
    VW_METRICS_ATTEMPT_SECONDS,         /* histogram {target} */
    VW_METRICS_BREAKER_STATE,           /* gauge {target} */
    VW_METRICS_STREAM_LENGTH,           /* gauge {stream} */
    VW_METRICS_STREAM_PENDING,          /* gauge {stream} */
    VW_METRICS_STREAM_OLDEST_PENDING,   /* gauge {stream}, seconds */
    VW_METRICS_STREAM_OLDEST_ENTRY,     /* gauge {stream}, seconds */
    VW_METRICS_REDIS_CONNECTED,         /* gauge {} */
    VW_METRICS_SERIES_DROPPED,          /* counter {} */
    VW_METRICS_JOBS,                    /* gauge {state}, sampled */
    VW_METRICS_ALERTS,                  /* counter {rule, event} */
    VW_METRICS_ALERT_FIRING,            /* gauge {rule} */
    VW_METRICS_TARGET_ATTEMPTS,         /* counter {target, outcome} */
    VW_METRICS_JOBS_TOTAL,              /* counter {type, state} */
    VW_METRICS_QUOTA_USED,              /* gauge {target, window} */
    VW_METRICS_QUOTA_LIMIT,             /* gauge {target, window} */
    VW_METRICS_QUOTA_RATIO,             /* gauge {target, window} */
    VW_METRICS_OAUTH_REFRESHES,         /* counter {connection, outcome} */
    VW_METRICS_SCHEDULED_RUNS,          /* counter {schedule, outcome} */
    VW_METRICS_FETCHES,                 /* counter {kind, outcome} */
    VW_METRICS_JWKS_FAILURES,           /* gauge {source} */
    VW_METRICS_FAMILIES
} vw_metrics_family_e;


#define VW_METRICS_MAX_SERIES  256
#define VW_METRICS_MAX_LABELS  2
#define VW_METRICS_BOUNDS      13     /* a histogram's finite buckets */


/*
 * Adds n to a counter.  l0 and l1 are the label values in the order the
 * family names them (NULL where it has fewer); they are copied.
 */
void vw_metrics_add(vw_metrics_family_e f, uint64_t n, const char *l0,
    const char *l1);

#define vw_metrics_inc(f, l0, l1)  vw_metrics_add(f, 1, l0, l1)

/* Sets a gauge to v. */
void vw_metrics_set(vw_metrics_family_e f, double v, const char *l0,
    const char *l1);

/*
 * Removes the series of f with these label values, if there is one: a
 * gauge of something that is no longer there (a key set's URL that a
 * reload changed), which a reader then finds without data instead of
 * at its last value.  Its label set counts toward the bound no more.
 */
void vw_metrics_drop(vw_metrics_family_e f, const char *l0, const char *l1);

/* Records v (seconds) in a histogram: its bucket, _sum and _count. */
void vw_metrics_observe(vw_metrics_family_e f, double v, const char *l0,
    const char *l1);

/*
 * Writes every family in the Prometheus text format 0.0.4 into a
 * malloc()ed, NUL-terminated buffer (*len bytes without the NUL).  Returns
 * the buffer, or NULL when out of memory.
 */
char *vw_metrics_render(size_t *len);

/*
 * The read side, for the alert rules (alert.c): families are found by
 * name, so a rule may name a family that another part of the worker adds
 * later.  fn(data, names, values, n, value) is called once per series of
 * the family, with its n label names and values (in the family's order)
 * and its value: a counter's count, a gauge's value, a histogram's
 * _count.  Returns VW_OK, or VW_DECLINED when no family has that name.
 * fn must not update the registry.
 */
typedef void (*vw_metrics_each_pt)(void *data, const char *const *names,
    const char *const *values, size_t n, double value);

int vw_metrics_each(const char *family, vw_metrics_each_pt fn, void *data);

/*
 * The value of one series of the family named family, its label values
 * l0 and l1 given as for vw_metrics_set().  Returns VW_OK with *v set,
 * or VW_DECLINED when there is no such family or no such series (yet).
 */
int vw_metrics_value(const char *family, const char *l0, const char *l1,
    double *v);

/*
 * The JSON mirror of vw_metrics_render(): {"metrics": [{"name", "type",
 * "help", "samples": [{"labels": {...}, "value"}]}]}, a histogram's
 * samples with "count", "sum" and cumulative "buckets" [[bound, n], ...,
 * ["+Inf", count]]; the same families, series and numbers as the text,
 * written the same way.  A malloc()ed, NUL-terminated buffer (*len bytes
 * without the NUL), or NULL when out of memory.
 */
char *vw_metrics_render_json(size_t *len);


/* one series as vw_metrics_read() finds it */
typedef struct {
    uint64_t                    count;    /* counter; histogram _count */
    double                      value;    /* gauge; histogram _sum */
    uint64_t                    buckets[VW_METRICS_BOUNDS];  /* cumulative */
} vw_metrics_sample_t;

#define VW_METRICS_FOUND  1
#define VW_METRICS_NONE   0

/*
 * Reads the series of f with labels l0, l1 without making it: returns
 * VW_METRICS_FOUND with *sample filled, or VW_METRICS_NONE (no such
 * series yet; *sample zeroed).
 */
int vw_metrics_read(vw_metrics_family_e f, const char *l0, const char *l1,
    vw_metrics_sample_t *sample);

/*
 * The q-quantile (0 to 1) of a histogram's sample, as Prometheus'
 * histogram_quantile() computes it: linear within the bucket the rank
 * falls in, the highest finite bound when it falls in +Inf's.  NAN when
 * the histogram has no observation.
 */
double vw_metrics_quantile(const vw_metrics_sample_t *sample, double q);

/*
 * A vendor's allowance as its answer said: the used, limit and ratio
 * gauges of target's window ("daily", "burst", "secondly"); the ratio,
 * capped at 1, only when limit is not 0.
 */
void vw_metrics_quota(const char *target, const char *window, uint64_t used,
    uint64_t limit);

/* Forgets every series: for the unit tests, and at exit (no leak). */
void vw_metrics_reset(void);


struct event_base;

typedef struct vw_metrics_http_s  vw_metrics_http_t;

/*
 * metrics_http.c: serves /metrics, /metrics.json, /healthz, /readyz,
 * /status and /admin/ (status_http.c) on the [metrics] listen address of
 * conf (a no-op returning a non-NULL object when there is none), and
 * samples the jobs stream through queue's Redis connection.
 * engine may be NULL (no -c file).  Returns NULL (logged) when the address
 * cannot be bound.
 */
vw_metrics_http_t *vw_metrics_http_create(struct event_base *base,
    const vw_conf_t *conf, vw_queue_t *queue, vw_engine_t *engine);

void vw_metrics_http_free(vw_metrics_http_t *mh);


#endif /* VW_METRICS_H */
