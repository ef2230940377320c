/* vw_target.h -- per-target concurrency and circuit breaker */

#ifndef VW_TARGET_H
#define VW_TARGET_H


#include <stddef.h>
#include <stdint.h>

#include "vw_core.h"


#define VW_TARGET_BUCKETS  10


/* a copy of a vw_conf_target_t's limits, taken when an attempt starts */
typedef struct {
    unsigned                    max_concurrency;
    unsigned                    breaker_failures;
    unsigned                    breaker_error_rate;  /* percent */
    uint64_t                    breaker_window_ms;
    unsigned                    breaker_min_calls;
    uint64_t                    breaker_cooldown_ms;
} vw_target_limits_t;


typedef enum {
    VW_BREAKER_CLOSED = 0,
    VW_BREAKER_OPEN,
    VW_BREAKER_HALF_OPEN
} vw_breaker_e;


typedef enum {
    VW_TARGET_SUCCESS = 0,       /* an answer: 2xx, or a 4xx of the job's */
    VW_TARGET_FAILURE,           /* a timeout, no connection, 429, 5xx */
    VW_TARGET_CANCELLED          /* stopped by the worker, no verdict */
} vw_target_outcome_e;


/* what a vw_target_release() changed, for the log */
#define VW_TARGET_OPENED  1
#define VW_TARGET_CLOSED  2


typedef struct vw_target_s  vw_target_t;

struct vw_target_s {
    char                       *name;
    unsigned                    running;
    unsigned                    waiting;     /* the engine's count */
    vw_breaker_e                state;
    unsigned                    consecutive; /* failures in a row */
    unsigned                    probing:1;   /* the half-open probe runs */
    uint64_t                    open_until;  /* ms: when a probe may go */
    uint64_t                    bucket[VW_TARGET_BUCKETS];   /* its slot */
    unsigned                    calls[VW_TARGET_BUCKETS];
    unsigned                    failures[VW_TARGET_BUCKETS];
    vw_target_t                *next;
};


/* the target named name in *list, created (closed, idle) if new; NULL: no
   memory */
vw_target_t *vw_target_get(vw_target_t **list, const char *name);

void vw_target_free_all(vw_target_t **list);

/*
 * Asks to start an attempt at time now (ms).  Returns VW_OK with a slot
 * taken; VW_BUSY when max_concurrency attempts run; VW_DECLINED when the
 * breaker is open, or half-open with its probe running, with *retry_at
 * the time a probe may go.  An open breaker whose cool-down has passed
 * goes half-open here, and this attempt is its probe: *probe (when not
 * NULL) is set to 1 for the probe, else 0, and goes back to release.
 */
int vw_target_acquire(vw_target_t *t, const vw_target_limits_t *l,
    uint64_t now, uint64_t *retry_at, unsigned *probe);

/*
 * Gives the slot back with the attempt's outcome.  Returns
 * VW_TARGET_OPENED when this opened the breaker (consecutive failures, or
 * the error rate over the window once min_calls were seen, or a failed
 * probe), VW_TARGET_CLOSED when a probe closed it, else 0.  probe is
 * what vw_target_acquire() said of this attempt: while the breaker is
 * half-open, only the probe's outcome counts, not that of an attempt that
 * began before it opened and ends now.
 */
int vw_target_release(vw_target_t *t, const vw_target_limits_t *l,
    uint64_t now, vw_target_outcome_e outcome, unsigned probe);


#endif /* VW_TARGET_H */
