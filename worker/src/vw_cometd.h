/* vw_cometd.h -- change events in: the Streaming API's CometD consumer */

#ifndef VW_COMETD_H
#define VW_COMETD_H


#include "vw_conf.h"
#include "vw_core.h"
#include "vw_services.h"

struct event_base;


typedef struct vw_cometd_s  vw_cometd_t;

/* the configuration in force (vw_conf_current() in the worker) */
typedef const vw_conf_t *(*vw_cometd_conf_pt)(void);


/*
 * Starts one consumer per [subscription] of the configuration in force
 * (docs/CONNECTORS.md, "Change events in"): each follows its channel over
 * CometD with svc's HTTP client and token manager, turns every event into
 * a job through vw_queue_push() on queue, and keeps its checkpoint in
 * Redis through svc's connection.  Returns NULL (logged) when out of
 * memory; a consumer that cannot reach its vendor keeps trying, logged.
 * svc and queue must outlive it.
 */
vw_cometd_t *vw_cometd_create(struct event_base *base,
    const vw_services_t *svc, vw_queue_t *queue, vw_cometd_conf_pt conf);

/*
 * After a reload put a new configuration in force: consumers whose
 * subscription is gone or changed (its channel, job, tenant, replay or
 * connection) stop, new ones start, the others go on undisturbed.
 */
void vw_cometd_reload(vw_cometd_t *cd);

/*
 * Stops every consumer (requests cancelled, nothing more pushed or
 * checkpointed: an event whose job was written but not checkpointed comes
 * again after a restart and meets its idempotency key) and frees it all.
 * NULL is fine.
 */
void vw_cometd_free(vw_cometd_t *cd);


#endif /* VW_COMETD_H */
