/* vw_alert.h -- alert rules: state machine, error-rate window, notices */

#ifndef VW_ALERT_H
#define VW_ALERT_H


#include <stddef.h>
#include <stdint.h>

#include "vw_conf.h"
#include "vw_core.h"


/*
 * The plain part (alert_eval.c), with no event loop and no Redis, so that
 * tests/unit/test_vw_alert.c drives it; alert.c evaluates the rules on
 * the loop and talks to Redis.  docs/WORKER.md, "Alerting", is the
 * design.
 */


typedef enum {
    VW_ALERT_INACTIVE = 0,
    VW_ALERT_PENDING,           /* holds, for less than the rule's "for" */
    VW_ALERT_FIRING
} vw_alert_phase_e;


typedef enum {
    VW_ALERT_NONE = 0,
    VW_ALERT_FIRED,             /* pending or inactive -> firing */
    VW_ALERT_RESOLVED           /* firing -> inactive */
} vw_alert_change_e;


/* one label set of one rule, as this worker sees it */
typedef struct {
    vw_alert_phase_e            phase;
    uint64_t                    since_ms;   /* the condition holds since */
    uint64_t                    fired_ms;   /* firing since */
} vw_alert_state_t;


/*
 * One evaluation at now (ms): holds says whether the condition holds.
 * A condition that holds goes pending, and firing once it has held for
 * for_ms (at once when for_ms is 0); one that stops holding goes back to
 * inactive, and a firing one resolves.  Returns the change a notice is
 * due for: VW_ALERT_FIRED, VW_ALERT_RESOLVED or VW_ALERT_NONE.
 */
vw_alert_change_e vw_alert_step(vw_alert_state_t *st, int holds,
    uint64_t now, uint64_t for_ms);


/*
 * What a firing label set does once Redis has answered "MULTI; SET
 * {vq}:alert:<h>:lease <me> NX PX <cooldown>; GET {vq}:alert:<h>; ...":
 * lease_won when the SET was OK, notified when the GET found the key
 * that says a firing notice of this episode went out.
 */
typedef enum {
    VW_ALERT_NOTIFY = 0,        /* the episode's first firing notice */
    VW_ALERT_REMIND,            /* a reminder (remind = on) */
    VW_ALERT_QUIET,             /* notified already; no reminders */
    VW_ALERT_SUPPRESS           /* the cool-down holds, or another worker
                                   notifies */
} vw_alert_decision_e;

vw_alert_decision_e vw_alert_decide(int lease_won, int notified,
    int remind);


/*
 * An error rate over a sliding window, from the cumulative counts of
 * attempts and failed attempts sampled at each evaluation.  At most
 * VW_ALERT_WINDOW_SLOTS samples are kept, one per window / that many
 * ms, so the window's start is exact to that step.  Zeroed by the
 * caller before the first use.
 */
#define VW_ALERT_WINDOW_SLOTS  256

typedef struct {
    uint64_t                    t;
    double                      total;
    double                      failed;
} vw_alert_sample_t;

typedef struct {
    vw_alert_sample_t           s[VW_ALERT_WINDOW_SLOTS + 2];
    unsigned                    head;
    unsigned                    n;
} vw_alert_window_t;

/*
 * Records the counts at now and sets *attempts and *failures to those
 * of the last window_ms: the counts now less those of the newest sample
 * at or before now - window_ms, or of the oldest one while the window is
 * not full (the rule's first samples).  The counts never go down; a
 * decrease reads as none.
 */
void vw_alert_window_add(vw_alert_window_t *w, uint64_t now,
    uint64_t window_ms, double total, double failed, double *attempts,
    double *failures);


/* what a notice says */
typedef struct {
    const char                 *rule;
    vw_alert_kind_e             kind;
    const char                 *severity;
    const char *const          *names;      /* the label set, in the */
    const char *const          *values;     /* family's order */
    size_t                      nlabels;
    unsigned                    resolved:1;
    unsigned                    has_value:1;    /* 0: no data any more */
    double                      value;
    double                      threshold;
    double                      attempts;       /* error_rate */
    double                      failures;
    uint64_t                    window_ms;
    unsigned                    min_attempts;
    uint64_t                    started_ms;
    uint64_t                    resolved_ms;
} vw_alert_notice_t;


/* "2024-05-01T12:00:00.250Z" of ms since the epoch; out has 32 bytes */
void vw_alert_time(uint64_t ms, char *out);

/* the label set as a compact JSON object, malloc()ed; NULL: no memory */
char *vw_alert_labels(const char *const *names, const char *const *values,
    size_t n);

/* one line that says what the value means: "4 of 4 attempts failed ..." */
void vw_alert_summary(const vw_alert_notice_t *n, char *buf, size_t len);

/*
 * The notice's body, malloc()ed JSON text: {"status", "rule", "kind",
 * "severity", "labels", "value", "threshold", "started_at",
 * "resolved_at", "summary"}, or with slack a Slack incoming webhook's
 * {"text", "blocks"} carrying the same facts.  NULL when out of memory.
 */
char *vw_alert_body(const vw_alert_notice_t *n, int slack);

/*
 * The notice's id: the first 32 hex digits of sha256(rule NUL labels NUL
 * event NUL at_ms in decimal), labels as vw_alert_labels() writes them,
 * event "firing", "resolved" or "reminder".  It is the job's id, so the
 * receiver's Idempotency-Key, the same on every retry.  With event NULL,
 * of sha256(rule NUL labels): the <h> of the label set's Redis keys.
 * out has 33 bytes.
 */
void vw_alert_id(const char *rule, const char *labels, const char *event,
    uint64_t at_ms, char *out);


/* -- alert.c: the rules on the worker's loop ------------------------------ */

struct event_base;

typedef struct vw_alert_s  vw_alert_t;

/*
 * Evaluates the [alert] rules of the configuration in force every
 * [alerting] interval, reading the metric registry, keeps the shared
 * state in Redis through queue's connection and queues the notices with
 * vw_queue_push().  consumer names this worker in the leases.  Returns
 * NULL when out of memory.
 */
vw_alert_t *vw_alert_create(struct event_base *base, vw_queue_t *queue,
    const char *consumer);

/* after vw_queue_free(), whose freeing answers the pending commands */
void vw_alert_free(vw_alert_t *a);


#endif /* VW_ALERT_H */
