/* ngx_vantage_metrics.h -- counters per worker process in shared memory */

#ifndef _NGX_VANTAGE_METRICS_H_INCLUDED_
#define _NGX_VANTAGE_METRICS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "vc_jwt.h"
#include "ngx_vantage_worker.h"


/*
 * The labels of each family, as indices: the cell a counter lives in is
 * computed from them (ngx_vantage_metrics.c holds the words).
 */

/* vantage_auth_total{method}; a request's ctx holds it + 1 (0: none) */
#define NGX_VANTAGE_M_JWT              0
#define NGX_VANTAGE_M_INTROSPECTION    1
#define NGX_VANTAGE_M_API_KEY          2
#define NGX_VANTAGE_M_METHODS          3

/* vantage_jwt_cache_total{result} */
#define NGX_VANTAGE_M_CACHE_HIT        0
#define NGX_VANTAGE_M_CACHE_MISS       1

/* vantage_introspection_total{result} */
#define NGX_VANTAGE_M_INTRO_CACHE_HIT  0
#define NGX_VANTAGE_M_INTRO_ACTIVE     1
#define NGX_VANTAGE_M_INTRO_INACTIVE   2
#define NGX_VANTAGE_M_INTRO_ERROR      3
#define NGX_VANTAGE_M_INTRO_RESULTS    4

/* vantage_ratelimit_decisions_total{decision}; in a ctx + 1 (0: none) */
#define NGX_VANTAGE_M_RL_ADMITTED      0
#define NGX_VANTAGE_M_RL_LIMITED       1
#define NGX_VANTAGE_M_RL_DRY_RUN       2
#define NGX_VANTAGE_M_RL_FALLBACK      3
#define NGX_VANTAGE_M_RL_DECISIONS     4

/* vantage_redis_errors_total{kind} */
#define NGX_VANTAGE_M_REDIS_CONNECT    0
#define NGX_VANTAGE_M_REDIS_TIMEOUT    1
#define NGX_VANTAGE_M_REDIS_LOST       2
#define NGX_VANTAGE_M_REDIS_ERROR_REPLY  3
#define NGX_VANTAGE_M_REDIS_KINDS      4
#define NGX_VANTAGE_M_REDIS_UNCOUNTED  NGX_VANTAGE_M_REDIS_KINDS

/* vantage_dispatch_total{outcome} */
#define NGX_VANTAGE_M_DISPATCH_ACCEPTED     0
#define NGX_VANTAGE_M_DISPATCH_REPLAYED     1
#define NGX_VANTAGE_M_DISPATCH_REFUSED_4XX  2
#define NGX_VANTAGE_M_DISPATCH_REFUSED_5XX  3
#define NGX_VANTAGE_M_DISPATCH_UNAVAILABLE  4
#define NGX_VANTAGE_M_DISPATCH_TIMEOUT      5
#define NGX_VANTAGE_M_DISPATCH_OUTCOMES     6

/* vantage_webhook_verifications_total{profile}: as ngx_vantage_webhook.c
   numbers them (docusign, hubspot, adobesign, hmac) */
#define NGX_VANTAGE_M_WEBHOOK_PROFILES  4

/* vantage_webhook_verifications_total{outcome} */
#define NGX_VANTAGE_M_WEBHOOK_OK         0
#define NGX_VANTAGE_M_WEBHOOK_REPLAYED   1
#define NGX_VANTAGE_M_WEBHOOK_MISSING    2
#define NGX_VANTAGE_M_WEBHOOK_MALFORMED  3
#define NGX_VANTAGE_M_WEBHOOK_MISMATCH   4
#define NGX_VANTAGE_M_WEBHOOK_STALE      5
#define NGX_VANTAGE_M_WEBHOOK_FUTURE     6
#define NGX_VANTAGE_M_WEBHOOK_ERROR      7
#define NGX_VANTAGE_M_WEBHOOK_OUTCOMES   8

/* histogram bounds, not counting +Inf */
#define NGX_VANTAGE_M_REDIS_BOUNDS      13
#define NGX_VANTAGE_M_DISPATCH_BOUNDS   14

/* status classes of vantage_http_requests_total: 1xx to 5xx */
#define NGX_VANTAGE_M_CLASSES           5


/*
 * The cells of one process's slot: the fixed counters, then those that
 * depend on the configuration (requests by location, key set failures by
 * source), then the gauges.  A histogram is its buckets (+Inf last, not
 * cumulative) and its sum in nanoseconds.
 */
#define NGX_VANTAGE_M_AUTH          0
#define NGX_VANTAGE_M_JWT_CACHE                                               \
    (NGX_VANTAGE_M_AUTH + NGX_VANTAGE_M_METHODS * VC_AUTH_NOUTCOMES)
#define NGX_VANTAGE_M_INTRO         (NGX_VANTAGE_M_JWT_CACHE + 2)
#define NGX_VANTAGE_M_RL                                                      \
    (NGX_VANTAGE_M_INTRO + NGX_VANTAGE_M_INTRO_RESULTS)
#define NGX_VANTAGE_M_REDIS_ERRORS                                            \
    (NGX_VANTAGE_M_RL + NGX_VANTAGE_M_RL_DECISIONS)
#define NGX_VANTAGE_M_REDIS_RTT                                               \
    (NGX_VANTAGE_M_REDIS_ERRORS + NGX_VANTAGE_M_REDIS_KINDS)
#define NGX_VANTAGE_M_DISPATCH                                                \
    (NGX_VANTAGE_M_REDIS_RTT + NGX_VANTAGE_M_REDIS_BOUNDS + 2)
#define NGX_VANTAGE_M_DISPATCH_TIME                                           \
    (NGX_VANTAGE_M_DISPATCH + NGX_VANTAGE_M_DISPATCH_OUTCOMES)
#define NGX_VANTAGE_M_WEBHOOK                                                 \
    (NGX_VANTAGE_M_DISPATCH_TIME + NGX_VANTAGE_M_DISPATCH_BOUNDS + 2)
#define NGX_VANTAGE_M_REQUESTS                                                \
    (NGX_VANTAGE_M_WEBHOOK                                                    \
     + NGX_VANTAGE_M_WEBHOOK_PROFILES * NGX_VANTAGE_M_WEBHOOK_OUTCOMES)


/*
 * This process's slot, or NULL when nothing is counted (vantage_metrics_
 * collect off, a process that is not a worker).  A slot belongs to one
 * process, which adds to it without a lock; a process that found none
 * free shares the spare slot, with atomic adds.
 */
extern ngx_atomic_t  *ngx_vantage_metrics_cells;
extern ngx_uint_t     ngx_vantage_metrics_shared;


/* adds one to a counter of this process's slot, if it has one */
static ngx_inline void
ngx_vantage_metrics_inc(ngx_uint_t cell)
{
    if (ngx_vantage_metrics_cells == NULL) {
        return;
    }

    if (ngx_vantage_metrics_shared) {
        (void) ngx_atomic_fetch_add(&ngx_vantage_metrics_cells[cell], 1);
        return;
    }

    ngx_vantage_metrics_cells[cell]++;
}


/* vantage_metrics [prometheus|json]: the location's content handler */
char *ngx_vantage_metrics_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/*
 * $vantage_auth_method, $vantage_auth_outcome, $vantage_rate_limit and
 * $vantage_job_id: the facts the metrics count, for the access log
 */
ngx_int_t ngx_vantage_metrics_add_variables(ngx_conf_t *cf);

/*
 * At the end of the http block: the LOG-phase handler, and the zone,
 * sized for the locations and key sources configured and named after
 * their digest, so that a reload that keeps them keeps the counts.
 */
ngx_int_t ngx_vantage_metrics_init(ngx_conf_t *cf);
ngx_int_t ngx_vantage_metrics_init_process(ngx_cycle_t *cycle);
void ngx_vantage_metrics_exit_process(ngx_cycle_t *cycle);

/*
 * A monotonic time in nanoseconds to measure a call from, or 0 when
 * nothing is counted (then the clock is not read).
 */
uint64_t ngx_vantage_metrics_now(void);

/*
 * Records who authenticated the request and how it went (method one of
 * NGX_VANTAGE_M_JWT...): the request's context holds it for the access
 * log, and the LOG phase counts it once per main request.
 */
void ngx_vantage_metrics_auth(ngx_http_request_t *r, ngx_uint_t method,
    vc_auth_outcome_e outcome);

/* a Redis call answered (started at start, from ngx_vantage_metrics_now) */
void ngx_vantage_metrics_redis_rtt(uint64_t start);
/* 1: the circuit breaker to Redis opened in this process; 0: closed */
void ngx_vantage_metrics_redis_breaker(ngx_uint_t open);

/*
 * A DISPATCH answered: outcome is the worker call's, rep its reply (NULL
 * unless NGX_VANTAGE_WORKER_REPLY); start 0 when no call was made.
 */
void ngx_vantage_metrics_dispatch(uint64_t start, ngx_uint_t outcome,
    ngx_vantage_worker_reply_t *rep);

/*
 * A key set fetch for vmcf->idps[index] ended: fetched is the time the
 * set in use was fetched by the worker (0: none yet), failed whether this
 * fetch brought no fresh set.
 */
void ngx_vantage_metrics_jwks(ngx_uint_t index, time_t fetched,
    ngx_uint_t failed);


#endif /* _NGX_VANTAGE_METRICS_H_INCLUDED_ */
