/* vw_status.h -- the dashboard's view: targets, history, recent failures */

#ifndef VW_STATUS_H
#define VW_STATUS_H


#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "vw_engine.h"


#define VW_STATUS_BUCKET_MS     10000   /* history: 10 s buckets ... */
#define VW_STATUS_BUCKETS       180     /* ... over 30 minutes */
#define VW_STATUS_RATE_BUCKETS  30      /* error_rate: the last 5 minutes */
#define VW_STATUS_FAILURES      50      /* recent failures kept */
#define VW_STATUS_DEGRADED      0.1     /* error_rate that degrades */


/*
 * status.c keeps in memory, per target, the attempts settled in each
 * 10-second bucket of the last 30 minutes (and how many failed), and the
 * last VW_STATUS_FAILURES failed attempts of any target; the rest of the
 * view (attempts by outcome, latency, vendor quotas) is read from the
 * metric families, so that /status and /metrics say the same.  Only the
 * event loop's thread calls in.
 */

/*
 * Records a settled attempt at now (wall ms): outcome "success", "retry"
 * or "dead"; connector the name of what ran it ("http", "salesforce",
 * ...; NULL: unknown); error the masked text stored as last_error (NULL:
 * none).  Every string is copied.
 */
void vw_status_attempt(const char *job_id, const char *type,
    const char *target, const char *connector, const char *outcome,
    long status, const char *error, uint64_t now);

struct vw_target_s;

/*
 * The "connectors" array of GET /status at now: one object per target
 * named by conf (implicit targets included), met by the engine (targets,
 * vw_engine_targets()'s list) or recorded here, by name.  Either list may
 * be NULL.  NULL when out of memory.
 */
json_t *vw_status_connectors(const vw_conf_t *conf,
    const struct vw_target_s *targets, uint64_t now);

/*
 * The "history" array: {"t_ms", "target", "attempts", "errors"} for each
 * bucket of the last 30 minutes in which a target settled attempts,
 * oldest first, targets by name within a bucket; t_ms is the bucket's
 * start.
 */
json_t *vw_status_history(uint64_t now);

/* The "recent_failures" array, newest first. */
json_t *vw_status_failures(void);

/*
 * Attempts and failed ones (retry or dead) of target over the
 * VW_STATUS_RATE_BUCKETS buckets up to now, the current one included.
 */
void vw_status_rate(const char *target, uint64_t now, uint64_t *attempts,
    uint64_t *errors);

/* Forgets everything: for the unit tests, and at exit (no leak). */
void vw_status_reset(void);


struct event_base;
struct evhttp_request;
struct redisAsyncContext;

typedef struct vw_status_http_s  vw_status_http_t;

/*
 * status_http.c: GET /status and POST /admin/dlq/<id>/replay for
 * metrics_http.c's listener.  engine may be NULL (no -c file).  NULL
 * when out of memory.
 */
vw_status_http_t *vw_status_http_create(struct event_base *base,
    vw_queue_t *queue, vw_engine_t *engine);

/*
 * GET /status (HEAD: its headers): the view from memory at once, and
 * what Redis holds (the dead letters, the delayed set) from async
 * replies on queue's connection; the request is answered from the last
 * reply, or at once with "redis": "disconnected" when there is no
 * connection.
 */
void vw_status_http_status(vw_status_http_t *sh,
    struct evhttp_request *req);

/*
 * A path under /admin/: POST /admin/dlq/<id>/replay replays the dead job
 * id as `vantagectl dlq replay <id>` does (docs/WORKER.md), every step an
 * async command on queue's connection; answers 200, 400, 404, 405, 409
 * or 503 (docs/WORKER.md, "Metrics and health").  Another path: 404.
 */
void vw_status_http_admin(vw_status_http_t *sh, struct evhttp_request *req,
    const char *path);

/*
 * Answers 503 to the requests still waiting for Redis and frees what
 * it can; a reply still out frees the rest when it comes back (NULL,
 * once the queue is freed).  NULL is fine.
 */
void vw_status_http_free(vw_status_http_t *sh);


#endif /* VW_STATUS_H */
