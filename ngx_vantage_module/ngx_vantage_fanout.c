/* ngx_vantage_fanout.c -- a vendor's batch in, one durable job per item */

/*
 * What vantage_salesforce_outbound and vantage_hubspot_webhook share: a
 * vendor POSTs a batch of notifications and retries it until it is
 * acknowledged.  The body is read whole into memory without blocking (the
 * vendor's format is parsed by the caller's body handler), each item
 * becomes one DISPATCH to the worker, all of them at once, and the
 * caller's done handler answers once the worker has answered every one:
 * the acknowledgement only when every job is durable.  An item's
 * idempotency key is what the vendor sends again unchanged when it
 * retries, so a retried batch makes no second job, and the jobs a failed
 * batch did make are found again by their keys.
 */

#include "ngx_vantage_module.h"
#include "ngx_vantage_fanout.h"


#define NGX_VANTAGE_FANOUT_FIELDS  10
#define NGX_VANTAGE_FANOUT_JOB_ID  32


static ngx_int_t ngx_vantage_fanout_body(ngx_http_request_t *r,
    ngx_vantage_body_t *body);
static void ngx_vantage_fanout_reply(void *data, ngx_uint_t outcome,
    u_char *fields, size_t len);
static ngx_int_t ngx_vantage_fanout_correlation_id(ngx_http_request_t *r,
    ngx_vantage_fanout_t *fo);
static void ngx_vantage_fanout_cleanup(void *data);


char *
ngx_vantage_fanout_job_type(ngx_conf_t *cf, ngx_str_t *type)
{
    ngx_uint_t  i;
    ngx_str_t  *value;

    value = cf->args->elts;

    if (type->len == 0 || type->len > 128) {
        goto bad_type;
    }

    for (i = 0; i < type->len; i++) {
        if (!(isalnum(type->data[i]) || type->data[i] == '.'
              || type->data[i] == '_' || type->data[i] == '-'))
        {
            goto bad_type;
        }
    }

    return NGX_CONF_OK;

bad_type:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\": the job type \"%V\" must be 1 to 128 "
                       "letters, digits, '.', '_' or '-'", &value[0], type);

    return NGX_CONF_ERROR;
}


/* called after ngx_vantage_dispatch_merge(), which merges vantage_tenant */
char *
ngx_vantage_fanout_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *conf,
    const char *name)
{
    ngx_str_t                 request_id = ngx_string("request_id");
    ngx_vantage_main_conf_t  *vmcf;

    if (conf->dispatch_type.data != NULL || conf->jobs) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" and \"%s\" cannot share a location",
                           name,
                           conf->jobs ? "vantage_jobs" : "vantage_dispatch");
        return NGX_CONF_ERROR;
    }

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_vantage_module);

    if (vmcf->worker == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" needs \"vantage_worker\" in the http "
                           "block", name);
        return NGX_CONF_ERROR;
    }

    if (conf->tenant == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" needs \"vantage_tenant\": every job "
                           "belongs to a tenant", name);
        return NGX_CONF_ERROR;
    }

    if (vmcf->request_id_index == NGX_CONF_UNSET) {
        vmcf->request_id_index = ngx_http_get_variable_index(cf, &request_id);
        if (vmcf->request_id_index == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_vantage_fanout_tenant(ngx_http_request_t *r, ngx_str_t *tenant)
{
    u_char                  *p;
    ngx_vantage_loc_conf_t  *vlcf;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);

    if (ngx_http_complex_value(r, vlcf->tenant, tenant) != NGX_OK) {
        return NGX_ERROR;
    }

    for (p = tenant->data; p < tenant->data + tenant->len; p++) {
        if (*p < 0x20 || *p >= 0x7f) {
            return NGX_DECLINED;
        }
    }

    if (tenant->len == 0 || tenant->len > 128) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


ngx_vantage_fanout_t *
ngx_vantage_fanout_create(ngx_http_request_t *r, ngx_str_t *tenant)
{
    ngx_vantage_ctx_t     *vctx;
    ngx_http_cleanup_t    *cln;
    ngx_vantage_fanout_t  *fo;

    vctx = ngx_vantage_get_ctx(r);

    if (vctx == NULL) {
        vctx = ngx_vantage_create_ctx(r);
        if (vctx == NULL) {
            return NULL;
        }
    }

    fo = ngx_pcalloc(r->pool, sizeof(ngx_vantage_fanout_t));
    if (fo == NULL) {
        return NULL;
    }

    fo->request = r;
    fo->tenant = *tenant;

    if (ngx_vantage_fanout_correlation_id(r, fo) != NGX_OK) {
        return NULL;
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_vantage_fanout_cleanup;
    cln->data = fo;

    vctx->fanout = fo;

    return fo;
}


ngx_int_t
ngx_vantage_fanout_read(ngx_http_request_t *r, ngx_vantage_fanout_t *fo)
{
    /*
     * Unbuffered reading, as vantage_dispatch does: the body never goes to
     * a temporary file, which would have to be read back with a blocking
     * read.  client_max_body_size still applies (nginx checks it).
     */
    return ngx_vantage_body_read(r, 0, ngx_vantage_fanout_body, NULL);
}


/*
 * The whole body is in: made one contiguous buffer (what the parsers
 * take) and handed to fo->body_handler.
 */
static ngx_int_t
ngx_vantage_fanout_body(ngx_http_request_t *r, ngx_vantage_body_t *body)
{
    u_char                *p;
    ngx_chain_t           *cl;
    ngx_vantage_fanout_t  *fo;

    fo = ngx_vantage_get_ctx(r)->fanout;

    if (body->bufs != NULL && body->bufs->next == NULL) {
        fo->buf = body->bufs->buf->pos;

    } else if (body->bufs != NULL) {
        fo->buf = ngx_pnalloc(r->pool, body->size);
        if (fo->buf == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = fo->buf;

        for (cl = body->bufs; cl; cl = cl->next) {
            p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
        }
    }

    fo->len = body->size;

    return fo->body_handler(r, fo);
}


ngx_int_t
ngx_vantage_fanout_send(ngx_http_request_t *r, ngx_vantage_fanout_t *fo)
{
    ngx_uint_t                   i, n;
    ngx_str_t                    content_type, subject;
    ngx_vantage_loc_conf_t      *vlcf;
    ngx_vantage_fanout_job_t    *job;
    ngx_vantage_worker_field_t   f[NGX_VANTAGE_FANOUT_FIELDS];

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);

    ngx_str_null(&subject);

    if (vlcf->subject) {
        if (ngx_http_complex_value(r, vlcf->subject, &subject) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (subject.len > 1024) {
            subject.len = 0;
        }
    }

    ngx_str_set(&content_type, "Content-Type\0application/json");

    ngx_memzero(f, sizeof(f));

    for (i = 0; i < fo->njobs; i++) {
        job = &fo->jobs[i];
        job->fo = fo;
        n = 0;

        f[n].tag = VC_TAG_JOB_TYPE;
        f[n++].value = fo->job_type;

        f[n].tag = VC_TAG_TENANT;
        f[n++].value = fo->tenant;

        f[n].tag = VC_TAG_CORRELATION_ID;
        f[n++].value = fo->correlation_id;

        f[n].tag = VC_TAG_METHOD;
        f[n++].value = r->method_name;

        f[n].tag = VC_TAG_URI;
        f[n++].value = r->unparsed_uri;

        if (subject.len) {
            f[n].tag = VC_TAG_SUBJECT;
            f[n++].value = subject;
        }

        f[n].tag = VC_TAG_IDEMPOTENCY_KEY;
        f[n++].value = job->key;

        f[n].tag = VC_TAG_HEADER;
        f[n++].value = content_type;

        if (job->source.len) {
            f[n].tag = VC_TAG_HEADER;
            f[n++].value = job->source;
        }

        f[n].tag = VC_TAG_BODY;
        f[n++].value = job->body;

        /* a frame is copied: f may be reused for the next */
        job->start = ngx_vantage_metrics_now();
        job->call = ngx_vantage_worker_call(VC_FRAME_DISPATCH, f, n,
                                            ngx_vantage_fanout_reply, job);
        if (job->call == NULL) {
            ngx_vantage_metrics_dispatch(0, NGX_VANTAGE_WORKER_UNREACHABLE,
                                         NULL);
            fo->unavailable++;
            continue;
        }

        fo->pending++;
    }

    if (fo->pending) {
        return NGX_DONE;
    }

    return fo->done_handler(r, fo);
}


/*
 * One job's answer, or its absence.  The last one answers the request,
 * outside nginx's HTTP event handlers, so posted subrequests are run too.
 */
static void
ngx_vantage_fanout_reply(void *data, ngx_uint_t outcome, u_char *fields,
    size_t len)
{
    ngx_vantage_fanout_job_t  *job = data;

    ngx_int_t                    rc;
    ngx_connection_t            *c;
    ngx_http_request_t          *r;
    ngx_vantage_fanout_t        *fo;
    ngx_vantage_worker_reply_t   rep;

    fo = job->fo;
    r = fo->request;
    c = r->connection;
    job->call = NULL;

    if (outcome != NGX_VANTAGE_WORKER_REPLY) {
        ngx_vantage_metrics_dispatch(job->start, outcome, NULL);
        fo->unavailable++;

        if (fo->error.data == NULL) {
            if (outcome == NGX_VANTAGE_WORKER_TIMEOUT) {
                ngx_str_set(&fo->error, "the job queue did not answer in "
                                        "time");
            } else {
                ngx_str_set(&fo->error, "the job queue is not available");
            }
        }

        goto next;
    }

    ngx_vantage_worker_reply_read(fields, len, &rep);

    ngx_vantage_metrics_dispatch(job->start, outcome, &rep);

    if ((rep.status == NGX_HTTP_ACCEPTED || rep.status == NGX_HTTP_OK)
        && rep.job_id.len == NGX_VANTAGE_FANOUT_JOB_ID)
    {
        if (rep.replayed) {
            fo->repeated++;

        } else {
            fo->fresh++;
        }

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, c->log, 0,
                       "%s: job %V%s", fo->log_name, &rep.job_id,
                       rep.replayed ? " (a repeat)" : "");
        goto next;
    }

    /* 409: the same key's first request is still being written */
    if (rep.status == NGX_HTTP_SERVICE_UNAVAILABLE
        || rep.status == NGX_HTTP_CONFLICT)
    {
        fo->unavailable++;
        fo->retry_after = ngx_max(fo->retry_after, rep.retry_after);

    } else {
        fo->refused++;
    }

    if (fo->error.data == NULL && rep.error.len) {
        fo->error.data = ngx_pstrdup(r->pool, &rep.error);
        if (fo->error.data != NULL) {
            fo->error.len = ngx_min(rep.error.len, 256);
        }
    }

next:

    if (--fo->pending) {
        return;
    }

    rc = fo->done_handler(r, fo);

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


ngx_int_t
ngx_vantage_fanout_retry_after(ngx_http_request_t *r,
    ngx_vantage_fanout_t *fo)
{
    ngx_str_t                 v;
    ngx_vantage_main_conf_t  *vmcf;

    vmcf = ngx_http_get_module_main_conf(r, ngx_vantage_module);

    v.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (v.data == NULL) {
        return NGX_ERROR;
    }

    v.len = ngx_sprintf(v.data, "%T",
                        fo->retry_after ? (time_t) fo->retry_after
                                        : vmcf->worker->retry_after)
            - v.data;

    return ngx_vantage_add_header(r, "Retry-After", sizeof("Retry-After") - 1,
                                  v.data, v.len);
}


ngx_int_t
ngx_vantage_fanout_respond(ngx_http_request_t *r, ngx_vantage_fanout_t *fo,
    ngx_uint_t status, ngx_str_t *content_type, ngx_str_t *body)
{
    return ngx_vantage_send_nostore(r, fo ? &fo->correlation_id : NULL,
                                    status, content_type, body);
}


/* as ngx_vantage_dispatch_correlation_id(): $vantage_request_id */
static ngx_int_t
ngx_vantage_fanout_correlation_id(ngx_http_request_t *r,
    ngx_vantage_fanout_t *fo)
{
    return ngx_vantage_headers_request_id(r, &fo->correlation_id);
}


static void
ngx_vantage_fanout_cleanup(void *data)
{
    ngx_vantage_fanout_t  *fo = data;

    ngx_uint_t  i;

    for (i = 0; i < fo->njobs; i++) {
        if (fo->jobs[i].call != NULL) {
            ngx_vantage_worker_cancel(fo->jobs[i].call);
            fo->jobs[i].call = NULL;
        }
    }
}
