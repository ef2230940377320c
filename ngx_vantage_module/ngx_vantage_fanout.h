/* ngx_vantage_fanout.h -- a vendor's batch in, one durable job per item */

#ifndef _NGX_VANTAGE_FANOUT_H_INCLUDED_
#define _NGX_VANTAGE_FANOUT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_vantage_module.h"
#include "ngx_vantage_worker.h"


typedef struct ngx_vantage_fanout_s  ngx_vantage_fanout_t;


/* one item of the batch: one DISPATCH */
typedef struct {
    ngx_vantage_fanout_t       *fo;
    ngx_vantage_worker_call_t  *call;
    ngx_str_t                   key;       /* the idempotency key */
    ngx_str_t                   source;    /* "X-Vantage-Source\0<sys>:<id>",
                                              or empty */
    ngx_str_t                   body;
    uint64_t                    start;     /* for the metrics */
} ngx_vantage_fanout_job_t;


/*
 * The whole body is in fo->buf: checks it, makes fo->jobs, and returns
 * ngx_vantage_fanout_send(), or what to finalize the request with.
 */
typedef ngx_int_t (*ngx_vantage_fanout_body_pt)(ngx_http_request_t *r,
    ngx_vantage_fanout_t *fo);

/*
 * Every job's call has been answered (or none was made): fo's counts say
 * how.  Returns what to finalize the request with.
 */
typedef ngx_int_t (*ngx_vantage_fanout_done_pt)(ngx_http_request_t *r,
    ngx_vantage_fanout_t *fo);


struct ngx_vantage_fanout_s {
    ngx_http_request_t         *request;
    const char                 *log_name;  /* "vantage hubspot webhook" */
    ngx_vantage_fanout_body_pt  body_handler;
    ngx_vantage_fanout_done_pt  done_handler;
    void                       *data;      /* the caller's context */

    ngx_str_t                   job_type;
    ngx_str_t                   tenant;
    ngx_str_t                   correlation_id;

    u_char                     *buf;       /* the body, whole */
    size_t                      len;

    ngx_vantage_fanout_job_t   *jobs;
    ngx_uint_t                  njobs;
    ngx_uint_t                  pending;   /* calls not answered yet */
    ngx_uint_t                  fresh;     /* 202: a new job */
    ngx_uint_t                  repeated;  /* 202 REPLAYED: there already */
    ngx_uint_t                  unavailable;  /* 503, 409, no answer */
    ngx_uint_t                  refused;   /* any other status */
    uint32_t                    retry_after;
    ngx_str_t                   error;     /* the worker's first reason */
};


/*
 * Checks the job type of a directive (its first argument): 1 to 128
 * letters, digits, '.', '_' or '-'.  Logs and returns NGX_CONF_ERROR, or
 * NGX_CONF_OK.
 */
char *ngx_vantage_fanout_job_type(ngx_conf_t *cf, ngx_str_t *type);

/*
 * What a fan-out location needs, for the directive named: no
 * vantage_dispatch or vantage_jobs beside it, vantage_worker in the http
 * block, vantage_tenant, and $request_id's index.
 */
char *ngx_vantage_fanout_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *conf,
    const char *name);

/*
 * The request's tenant, from vantage_tenant: NGX_OK, NGX_DECLINED when it
 * names none (empty, longer than 128 bytes, or not printable ASCII), or
 * NGX_ERROR.
 */
ngx_int_t ngx_vantage_fanout_tenant(ngx_http_request_t *r,
    ngx_str_t *tenant);

/*
 * A fan-out for the request, with its correlation id (the caller's
 * X-Correlation-ID when valid, else $request_id) and a cleanup that
 * cancels the calls still pending; the caller sets the handlers, the log
 * name and job_type, then calls ngx_vantage_fanout_read().  NULL when
 * there was no memory.
 */
ngx_vantage_fanout_t *ngx_vantage_fanout_create(ngx_http_request_t *r,
    ngx_str_t *tenant);

/*
 * Reads the whole body into memory, never into a temporary file, without
 * blocking, and calls fo->body_handler once it is in.  Returns what a
 * content handler returns.
 */
ngx_int_t ngx_vantage_fanout_read(ngx_http_request_t *r,
    ngx_vantage_fanout_t *fo);

/*
 * Sends one DISPATCH per job in fo->jobs: JOB_TYPE, TENANT,
 * CORRELATION_ID, METHOD, URI, SUBJECT (vantage_subject), the key,
 * Content-Type: application/json, the source header and the body.
 * Returns NGX_DONE while answers are awaited, or, when no call could be
 * made, what fo->done_handler returns.
 */
ngx_int_t ngx_vantage_fanout_send(ngx_http_request_t *r,
    ngx_vantage_fanout_t *fo);

/* adds Retry-After: the worker's longest, or vantage_worker's retry_after */
ngx_int_t ngx_vantage_fanout_retry_after(ngx_http_request_t *r,
    ngx_vantage_fanout_t *fo);

/*
 * Sends status and body (which must live as long as the request), with
 * Cache-Control: no-store and, when fo is not NULL, X-Correlation-ID.
 * Returns what to finalize the request with.
 */
ngx_int_t ngx_vantage_fanout_respond(ngx_http_request_t *r,
    ngx_vantage_fanout_t *fo, ngx_uint_t status, ngx_str_t *content_type,
    ngx_str_t *body);


#endif /* _NGX_VANTAGE_FANOUT_H_INCLUDED_ */
