/* vw_engine.h -- the job engine: takes jobs from Redis and runs them */

#ifndef VW_ENGINE_H
#define VW_ENGINE_H


#include "vw_conf.h"
#include "vw_core.h"


typedef struct vw_engine_s  vw_engine_t;

/*
 * The configuration in force now.  The engine calls it whenever it needs
 * a value and keeps no pointer into it across callbacks: a SIGHUP may
 * replace it between two.  May return NULL (no configuration).
 */
typedef const vw_conf_t *(*vw_engine_conf_pt)(void);

/* called once, from the loop, when a drain has finished */
typedef void (*vw_engine_drained_pt)(void *data);


/*
 * Starts the engine on base against the Redis at addr: its own two
 * connections, the consumer group, and the timers for promotion,
 * heartbeats, reclaim and retention.  consumer names it in the group.
 * Returns NULL (logged) when it cannot start.
 */
vw_engine_t *vw_engine_create(struct event_base *base, const char *addr,
    const char *password, const char *consumer, vw_engine_conf_pt conf);

/*
 * Stops taking work: jobs not yet started go back to {vq}:delayed due
 * now; attempts running may finish until shutdown_timeout, then they are
 * cancelled and put back the same way.  handler(data) is called once when
 * nothing is held any more.
 */
void vw_engine_drain(vw_engine_t *e, vw_engine_drained_pt handler,
    void *data);

/*
 * server.c: the configuration DISPATCH consults (job types, the in-flight
 * cap, the idempotency window).  Without it, or without a file, every job
 * type is taken with the defaults.
 */
void vw_server_set_conf(vw_server_t *srv, vw_engine_conf_pt conf);

/*
 * server.c: the queue limits DISPATCH applies to a job of type jc (NULL:
 * a type the file does not name) under conf (NULL: the defaults), for
 * the worker's other sources of jobs (the Streaming API consumer).
 */
void vw_server_limits(const vw_conf_t *conf, const vw_conf_job_t *jc,
    vw_queue_limits_t *lim);

/* server.c: FETCH goes to fetch (vw_fetch.h); without one it is 501 */
struct vw_fetch_s;
void vw_server_set_fetch(vw_server_t *srv, struct vw_fetch_s *fetch);

/*
 * What the engine lends its connectors (vw_services.h: the HTTP client,
 * the token manager, its Redis connection), for other parts of the worker
 * that call vendors, such as the Streaming API consumer.  Lives as long as
 * the engine.
 */
struct vw_services_s;
const struct vw_services_s *vw_engine_services(vw_engine_t *e);

/*
 * The targets the engine has met so far (vw_target.h), for the metrics'
 * breaker states: read on the loop, never kept across callbacks.
 */
struct vw_target_s;
const struct vw_target_s *vw_engine_targets(vw_engine_t *e);

/* Frees the engine; jobs still held are left to the visibility timeout. */
void vw_engine_free(vw_engine_t *e);


#endif /* VW_ENGINE_H */
