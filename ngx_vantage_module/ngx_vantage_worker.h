/* ngx_vantage_worker.h -- calls to vantage-worker over its Unix socket */

#ifndef _NGX_VANTAGE_WORKER_H_INCLUDED_
#define _NGX_VANTAGE_WORKER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "vc_frame.h"


typedef struct {
    ngx_str_t                   name;      /* "unix:<path>", for logs */
    struct sockaddr_un          sockaddr;
    socklen_t                   socklen;
    ngx_msec_t                  connect_timeout;
    ngx_msec_t                  timeout;
    time_t                      retry_after;  /* told to clients on 503 */
} ngx_vantage_worker_conf_t;


/* one field of a request frame: a value, or the data of a buffer chain */
typedef struct {
    ngx_uint_t                  tag;
    ngx_str_t                   value;
    ngx_chain_t                *chain;     /* used when not NULL */
} ngx_vantage_worker_field_t;


/* the outcome of a call */
#define NGX_VANTAGE_WORKER_REPLY        0  /* a reply came: fields hold it */
#define NGX_VANTAGE_WORKER_UNREACHABLE  1  /* nothing was sent */
#define NGX_VANTAGE_WORKER_LOST         2  /* sent, but the connection died */
#define NGX_VANTAGE_WORKER_TIMEOUT      3  /* no reply within the timeout */


/*
 * Called once per call, unless the call was cancelled first.  With
 * NGX_VANTAGE_WORKER_REPLY, fields and len are the reply's fields, valid
 * only during the call; otherwise they are NULL and 0.
 */
typedef void (*ngx_vantage_worker_handler_pt)(void *data, ngx_uint_t outcome,
    u_char *fields, size_t len);

typedef struct ngx_vantage_worker_call_s  ngx_vantage_worker_call_t;


/* the fields of a reply the module reads; strings point into the frame */
typedef struct {
    uint32_t                    status;    /* 0: none */
    uint32_t                    retry_after;
    uint32_t                    age;
    uint32_t                    max_age;
    ngx_str_t                   error;
    ngx_str_t                   body;
    ngx_str_t                   job_id;
    ngx_str_t                   job_state;
    unsigned                    replayed:1;
    unsigned                    stale:1;
} ngx_vantage_worker_reply_t;


char *ngx_vantage_worker_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_vantage_worker_init_process(ngx_cycle_t *cycle,
    ngx_vantage_worker_conf_t *conf);
void ngx_vantage_worker_exit_process(ngx_cycle_t *cycle);

/*
 * Frames a request of the given type and queues it on this process's
 * connection to the worker, connecting first when there is none.  Returns
 * the pending call, or NULL when no memory was left (logged); a worker that
 * cannot be reached is reported through the handler, from a posted event,
 * never from inside this call.
 */
ngx_vantage_worker_call_t *ngx_vantage_worker_call(ngx_uint_t type,
    ngx_vantage_worker_field_t *fields, ngx_uint_t nfields,
    ngx_vantage_worker_handler_pt handler, void *data);

/*
 * Reads a reply's fields into rep; absent ones are 0 or empty (with data
 * never NULL, so that they format and copy as empty strings).
 */
void ngx_vantage_worker_reply_read(u_char *fields, size_t len,
    ngx_vantage_worker_reply_t *rep);

/* the caller has gone away: the handler will not be called */
void ngx_vantage_worker_cancel(ngx_vantage_worker_call_t *call);


#endif /* _NGX_VANTAGE_WORKER_H_INCLUDED_ */
