/* vw_services.h -- what the engine lends the connectors */

#ifndef VW_SERVICES_H
#define VW_SERVICES_H


#include <stdint.h>

#include "vw_conf.h"

struct event_base;
struct redisAsyncContext;
struct vw_http_s;
struct vw_oauth_s;


typedef struct vw_services_s {
    struct event_base          *base;
    struct vw_http_s           *http;
    struct vw_oauth_s          *oauth;
    const char                 *consumer;   /* this worker's name */

    /*
     * The engine's Redis connection for commands (never a blocking one),
     * or NULL while it is down: ask again in each callback, never keep
     * it.  Replies come back in the order sent.
     */
    struct redisAsyncContext   *(*redis)(void *data);
    void                       *redis_data;

    /* the configuration in force (vw_conf_current() in the worker) */
    const vw_conf_t            *(*conf)(void);
} vw_services_t;


/* wall clock in ms, and a monotonic one, as the engine reads them */
uint64_t vw_services_now(void);


#endif /* VW_SERVICES_H */
