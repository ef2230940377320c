/* ngx_vantage_dispatch.c -- hand-off to the worker, and job status */

/*
 * vantage_dispatch is a content handler: by the time it runs, the access
 * phase has authenticated the request and the precontent phase has charged
 * its rate limits.  It reads the body into memory (nginx's unbuffered
 * reading, so that no body ever goes to a temporary file), frames it with
 * the tenant, the subject, the selected headers, the Idempotency-Key and a
 * correlation id, and answers only once the worker has said the job is
 * durable.  Anything short of that -- a worker that is not there, a lost
 * connection, no reply in time, a worker that cannot persist -- is a 503
 * with Retry-After, so a client never holds a 202 for a job that is not.
 *
 * vantage_jobs answers GET /jobs/<id> by asking the worker (JOB_STATUS);
 * the worker scopes it to the tenant, so another tenant's job is a 404.
 */

#include "ngx_vantage_module.h"
#include "ngx_vantage_worker.h"

#include <jansson.h>


#define NGX_VANTAGE_JOB_ID_LEN          32
#define NGX_VANTAGE_MAX_TENANT          256
#define NGX_VANTAGE_MAX_IDEMPOTENCY_KEY 255
#define NGX_VANTAGE_MAX_CORRELATION_ID  128
#define NGX_VANTAGE_DISPATCH_FIELDS     12


typedef struct {
    ngx_http_request_t         *request;
    ngx_vantage_worker_call_t  *call;
    ngx_chain_t                *body;
    ngx_str_t                   tenant;
    ngx_str_t                   correlation_id;
    ngx_uint_t                  type;      /* VC_FRAME_DISPATCH or _STATUS */
    uint64_t                    start;     /* for the metrics */
    unsigned                    done:1;    /* the request was finalized */
} ngx_vantage_dispatch_ctx_t;


static ngx_int_t ngx_vantage_dispatch_handler(ngx_http_request_t *r);
static ngx_int_t ngx_vantage_dispatch_read(ngx_http_request_t *r,
    ngx_vantage_body_t *body);
static void ngx_vantage_dispatch_refuse(ngx_http_request_t *r,
    ngx_vantage_body_t *body);
static ngx_int_t ngx_vantage_dispatch_send(ngx_http_request_t *r,
    ngx_vantage_dispatch_ctx_t *ctx);
static void ngx_vantage_dispatch_reply(void *data, ngx_uint_t outcome,
    u_char *fields, size_t len);
static ngx_int_t ngx_vantage_jobs_handler(ngx_http_request_t *r);
static ngx_int_t ngx_vantage_dispatch_tenant(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, ngx_vantage_dispatch_ctx_t **ctxp);
static ngx_int_t ngx_vantage_dispatch_correlation_id(ngx_http_request_t *r,
    ngx_vantage_dispatch_ctx_t *ctx);
static ngx_int_t ngx_vantage_dispatch_respond(ngx_http_request_t *r,
    ngx_vantage_dispatch_ctx_t *ctx, ngx_uint_t status, ngx_str_t *body);
static ngx_int_t ngx_vantage_dispatch_unavailable(ngx_http_request_t *r,
    ngx_vantage_dispatch_ctx_t *ctx, time_t retry_after,
    const char *description);
static ngx_int_t ngx_vantage_dispatch_add_header(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);
static ngx_table_elt_t *ngx_vantage_dispatch_find_header(
    ngx_http_request_t *r, const char *name, size_t len, ngx_uint_t *count);
static ngx_int_t ngx_vantage_dispatch_printable(ngx_str_t *s, size_t max);
static void ngx_vantage_dispatch_cleanup(void *data);
static const char *ngx_vantage_dispatch_cstr(ngx_pool_t *pool, ngx_str_t *s);
static ngx_int_t ngx_vantage_dispatch_error(ngx_http_request_t *r,
    ngx_vantage_dispatch_ctx_t *ctx, ngx_uint_t status, const char *code,
    const char *description);


static ngx_str_t  ngx_vantage_dispatch_allow = ngx_string("POST, PUT, PATCH");
static ngx_str_t  ngx_vantage_jobs_allow = ngx_string("GET, HEAD");
static ngx_str_t  ngx_vantage_sub_claim = ngx_string("sub");


char *
ngx_vantage_dispatch_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t  *vlcf = conf;

    ngx_str_t                 *value;
    ngx_uint_t                 i;
    ngx_http_core_loc_conf_t  *clcf;

    if (vlcf->dispatch_type.data != NULL || vlcf->jobs) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len > 128) {
        goto bad_type;
    }

    for (i = 0; i < value[1].len; i++) {
        if (!(isalnum(value[1].data[i]) || value[1].data[i] == '.'
              || value[1].data[i] == '_' || value[1].data[i] == '-'))
        {
            goto bad_type;
        }
    }

    vlcf->dispatch_type = value[1];
    vlcf->dispatch_status = NGX_HTTP_ACCEPTED;
    ngx_str_set(&vlcf->dispatch_location, "/jobs/");

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "status=202") == 0) {
            vlcf->dispatch_status = NGX_HTTP_ACCEPTED;
            continue;
        }

        if (ngx_strcmp(value[i].data, "status=200") == 0) {
            vlcf->dispatch_status = NGX_HTTP_OK;
            continue;
        }

        if (ngx_strncmp(value[i].data, "location=", 9) == 0
            && value[i].len > 9 && value[i].data[9] == '/')
        {
            vlcf->dispatch_location.data = value[i].data + 9;
            vlcf->dispatch_location.len = value[i].len - 9;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_dispatch\": invalid parameter \"%V\" "
                           "(status=202, status=200 or location=/<prefix>)",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_vantage_dispatch_handler;

    return NGX_CONF_OK;

bad_type:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"vantage_dispatch\": the job type \"%V\" must be 1 "
                       "to 128 letters, digits, '.', '_' or '-'", &value[1]);

    return NGX_CONF_ERROR;
}


char *
ngx_vantage_jobs_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t  *vlcf = conf;

    ngx_str_t                         *value;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_compile_complex_value_t   ccv;

    if (vlcf->jobs || vlcf->dispatch_type.data != NULL) {
        return "is duplicate";
    }

    vlcf->jobs = 1;

    if (cf->args->nelts == 2) {
        value = cf->args->elts;

        vlcf->job_id = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
        if (vlcf->job_id == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
        ccv.cf = cf;
        ccv.value = &value[1];
        ccv.complex_value = vlcf->job_id;

        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_vantage_jobs_handler;

    return NGX_CONF_OK;
}


/*
 * In a location that dispatches, vantage_dispatch_max_body is the body's
 * limit, answered with a JSON 413; nginx's own client_max_body_size would
 * answer first with an HTML page, so it is lifted there.  Checked at the
 * end of the http block, when vantage_worker is known wherever it was set.
 */
char *
ngx_vantage_dispatch_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf)
{
    ngx_int_t                  n;
    ngx_str_t                 *name, request_id = ngx_string("request_id");
    ngx_vantage_main_conf_t   *vmcf;
    ngx_http_core_loc_conf_t  *clcf;

    ngx_conf_merge_size_value(conf->dispatch_max_body,
                              prev->dispatch_max_body, 1024 * 1024);
    ngx_conf_merge_ptr_value(conf->tenant, prev->tenant, NULL);
    ngx_conf_merge_ptr_value(conf->subject, prev->subject, NULL);
    ngx_conf_merge_ptr_value(conf->ordering_key, prev->ordering_key, NULL);
    ngx_conf_merge_ptr_value(conf->dispatch_headers, prev->dispatch_headers,
                             NGX_CONF_UNSET_PTR);

    if (conf->dispatch_headers == NGX_CONF_UNSET_PTR) {
        /* by default a job keeps the one header that says what it holds */
        conf->dispatch_headers = ngx_array_create(cf->pool, 1,
                                                  sizeof(ngx_str_t));
        if (conf->dispatch_headers == NULL) {
            return NGX_CONF_ERROR;
        }

        name = ngx_array_push(conf->dispatch_headers);
        ngx_str_set(name, "Content-Type");
    }

    if (conf->dispatch_type.data == NULL && !conf->jobs) {
        return NGX_CONF_OK;
    }

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_vantage_module);

    if (vmcf->worker == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" needs \"vantage_worker\" in the http block",
                           conf->jobs ? "vantage_jobs" : "vantage_dispatch");
        return NGX_CONF_ERROR;
    }

    if (conf->tenant == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" needs \"vantage_tenant\": every job "
                           "belongs to a tenant",
                           conf->jobs ? "vantage_jobs" : "vantage_dispatch");
        return NGX_CONF_ERROR;
    }

    if (conf->dispatch_max_body == 0
        || conf->dispatch_max_body > 256 * 1024 * 1024)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_dispatch_max_body\" must be from 1 "
                           "byte to 256m");
        return NGX_CONF_ERROR;
    }

    if (conf->dispatch_type.data != NULL) {
        clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
        clcf->client_max_body_size = 0;

        n = ngx_vantage_claim_add(cf, vmcf, &ngx_vantage_sub_claim,
                                  NGX_VANTAGE_CLAIM);
        if (n == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }

        vmcf->sub_claim = n;
    }

    if (vmcf->request_id_index == NGX_CONF_UNSET) {
        vmcf->request_id_index = ngx_http_get_variable_index(cf, &request_id);
        if (vmcf->request_id_index == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


char *
ngx_vantage_dispatch_headers_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_vantage_loc_conf_t  *vlcf = conf;

    ngx_str_t   *value, *name;
    ngx_uint_t   i, j;

    if (vlcf->dispatch_headers != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        vlcf->dispatch_headers = NULL;
        return NGX_CONF_OK;
    }

    vlcf->dispatch_headers = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                              sizeof(ngx_str_t));
    if (vlcf->dispatch_headers == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        for (j = 0; j < value[i].len; j++) {
            if (value[i].data[j] <= ' ' || value[i].data[j] >= 0x7f
                || value[i].data[j] == ':')
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"vantage_dispatch_headers\": \"%V\" is "
                                   "not a header name", &value[i]);
                return NGX_CONF_ERROR;
            }
        }

        if (ngx_strcasecmp(value[i].data, (u_char *) "Idempotency-Key") == 0
            || ngx_strcasecmp(value[i].data, (u_char *) "Authorization") == 0
            || ngx_strcasecmp(value[i].data, (u_char *) "Cookie") == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"vantage_dispatch_headers\": \"%V\" is not "
                               "passed on: the job carries the idempotency "
                               "key itself and never the caller's "
                               "credentials", &value[i]);
            return NGX_CONF_ERROR;
        }

        name = ngx_array_push(vlcf->dispatch_headers);
        if (name == NULL) {
            return NGX_CONF_ERROR;
        }

        *name = value[i];
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_vantage_dispatch_handler(ngx_http_request_t *r)
{
    ngx_int_t                    rc;
    ngx_http_cleanup_t          *cln;
    ngx_vantage_loc_conf_t      *vlcf;
    ngx_vantage_dispatch_ctx_t  *ctx;

    /* vantage_webhook_verify: Acrobat Sign's verification GET */
    rc = ngx_vantage_webhook_handshake(r);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    if (!(r->method & (NGX_HTTP_POST|NGX_HTTP_PUT|NGX_HTTP_PATCH))) {
        if (ngx_vantage_dispatch_add_header(r, "Allow",
                                            &ngx_vantage_dispatch_allow)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_vantage_dispatch_error(r, NULL, NGX_HTTP_NOT_ALLOWED,
                                          "method_not_allowed",
                                          "jobs are dispatched with POST, PUT "
                                          "or PATCH");
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);

    rc = ngx_vantage_dispatch_tenant(r, vlcf, &ctx);
    if (ctx == NULL) {
        return rc;
    }

    if (r->headers_in.content_length_n > (off_t) vlcf->dispatch_max_body) {
        return ngx_vantage_dispatch_error(r, ctx,
                                          NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                          "payload_too_large",
                                          "the body is larger than this "
                                          "endpoint accepts");
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_vantage_dispatch_cleanup;
    cln->data = ctx;

    ctx->type = VC_FRAME_DISPATCH;

    /* the body stays in memory: unbuffered reading never writes a file */
    return ngx_vantage_body_read(r, vlcf->dispatch_max_body,
                                 ngx_vantage_dispatch_read,
                                 ngx_vantage_dispatch_refuse);
}


/* the whole body is in: checked (vantage_webhook_verify), then sent */
static ngx_int_t
ngx_vantage_dispatch_read(ngx_http_request_t *r, ngx_vantage_body_t *body)
{
    ngx_int_t                    rc;
    ngx_vantage_dispatch_ctx_t  *ctx;

    ctx = ngx_vantage_get_ctx(r)->dispatch;
    ctx->body = body->bufs;

    /* vantage_webhook_verify: the whole body, before anything reads it */
    rc = ngx_vantage_webhook_verify(r, ctx->body);

    if (rc == NGX_OK) {
        rc = ngx_vantage_dispatch_send(r, ctx);
    }

    return rc;
}


/* a chunked body that has grown over vantage_dispatch_max_body */
static void
ngx_vantage_dispatch_refuse(ngx_http_request_t *r, ngx_vantage_body_t *body)
{
    ngx_http_finalize_request(r,
        ngx_vantage_dispatch_error(r, ngx_vantage_get_ctx(r)->dispatch,
                                   NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                   "payload_too_large",
                                   "the body is larger than this "
                                   "endpoint accepts"));
}


/*
 * vantage_webhook_verify: sends the job of a request whose check went on
 * after ngx_vantage_dispatch_read() had returned (a Redis lookup), and
 * finalizes it unless the worker's answer will.
 */
void
ngx_vantage_dispatch_resume(ngx_http_request_t *r)
{
    ngx_int_t                    rc;
    ngx_vantage_dispatch_ctx_t  *ctx;

    ctx = ngx_vantage_get_ctx(r)->dispatch;

    rc = ngx_vantage_dispatch_send(r, ctx);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static ngx_int_t
ngx_vantage_dispatch_send(ngx_http_request_t *r,
    ngx_vantage_dispatch_ctx_t *ctx)
{
    u_char                      *p;
    ngx_str_t                    v;
    ngx_uint_t                   i, j, n, count;
    ngx_list_part_t             *part;
    ngx_table_elt_t             *h, *key;
    ngx_vantage_ctx_t           *vctx;
    ngx_vantage_loc_conf_t      *vlcf;
    ngx_vantage_main_conf_t     *vmcf;
    ngx_vantage_worker_field_t  *f;
    ngx_str_t                   *names;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);
    vmcf = ngx_http_get_module_main_conf(r, ngx_vantage_module);

    n = NGX_VANTAGE_DISPATCH_FIELDS;

    if (vlcf->dispatch_headers) {
        n += vlcf->dispatch_headers->nelts * 4;
    }

    f = ngx_pcalloc(r->pool, n * sizeof(ngx_vantage_worker_field_t));
    if (f == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = 0;

    f[n].tag = VC_TAG_JOB_TYPE;
    f[n++].value = vlcf->dispatch_type;

    f[n].tag = VC_TAG_TENANT;
    f[n++].value = ctx->tenant;

    f[n].tag = VC_TAG_CORRELATION_ID;
    f[n++].value = ctx->correlation_id;

    f[n].tag = VC_TAG_METHOD;
    f[n++].value = r->method_name;

    f[n].tag = VC_TAG_URI;
    f[n++].value = r->unparsed_uri;

    /* the subject: as configured, or the verified token's "sub" */

    if (vlcf->subject) {
        if (ngx_http_complex_value(r, vlcf->subject, &v) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else {
        ngx_str_null(&v);
        vctx = ngx_vantage_get_ctx(r);

        if (vctx && vctx->jwt.verified && vctx->jwt.values
            && vmcf->sub_claim >= 0
            && vctx->jwt.values[vmcf->sub_claim].data)
        {
            v = vctx->jwt.values[vmcf->sub_claim];

        } else if (vctx && vctx->apikey.verified) {
            v = vctx->apikey.id;
        }
    }

    if (v.len) {
        if (ngx_vantage_dispatch_printable(&v, 1024) != NGX_OK) {
            return ngx_vantage_dispatch_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                              "invalid_request",
                                              "the subject is not printable "
                                              "text of at most 1024 bytes");
        }

        f[n].tag = VC_TAG_SUBJECT;
        f[n++].value = v;
    }

    key = ngx_vantage_dispatch_find_header(r, "Idempotency-Key",
                                           sizeof("Idempotency-Key") - 1,
                                           &count);

    /* vantage_webhook_verify: the verified event's key, not a header */
    if (ngx_vantage_webhook_idempotency_key(r, &v) == NGX_OK) {
        key = NULL;
        f[n].tag = VC_TAG_IDEMPOTENCY_KEY;
        f[n++].value = v;
    }

    if (key != NULL) {
        if (key->value.len == 0 || count > 1
            || ngx_vantage_dispatch_printable(&key->value,
                                      NGX_VANTAGE_MAX_IDEMPOTENCY_KEY)
               != NGX_OK)
        {
            return ngx_vantage_dispatch_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                              "invalid_request",
                                              "Idempotency-Key must be one "
                                              "header of 1 to 255 printable "
                                              "characters");
        }

        f[n].tag = VC_TAG_IDEMPOTENCY_KEY;
        f[n++].value = key->value;
    }

    if (vlcf->ordering_key) {
        if (ngx_http_complex_value(r, vlcf->ordering_key, &v) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (v.len) {
            if (ngx_vantage_dispatch_printable(&v, 512) != NGX_OK) {
                return ngx_vantage_dispatch_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                                  "invalid_request",
                                                  "the ordering key is not "
                                                  "printable text of at most "
                                                  "512 bytes");
            }

            f[n].tag = VC_TAG_ORDERING_KEY;
            f[n++].value = v;
        }
    }

    /* the selected headers, each as "<name>\0<value>", in arrival order */

    if (vlcf->dispatch_headers) {
        names = vlcf->dispatch_headers->elts;
        part = &r->headers_in.headers.part;
        h = part->elts;

        for (i = 0; /* void */; i++) {

            if (i >= part->nelts) {
                if (part->next == NULL) {
                    break;
                }

                part = part->next;
                h = part->elts;
                i = 0;
            }

            if (h[i].hash == 0) {
                continue;
            }

            for (j = 0; j < vlcf->dispatch_headers->nelts; j++) {
                if (h[i].key.len == names[j].len
                    && ngx_strncasecmp(h[i].key.data, names[j].data,
                                       names[j].len) == 0)
                {
                    break;
                }
            }

            if (j == vlcf->dispatch_headers->nelts) {
                continue;
            }

            if (n == NGX_VANTAGE_DISPATCH_FIELDS
                     + vlcf->dispatch_headers->nelts * 4)
            {
                return ngx_vantage_dispatch_error(r, ctx, NGX_HTTP_BAD_REQUEST,
                                                  "invalid_request",
                                                  "a header to pass on is "
                                                  "repeated too often");
            }

            p = ngx_pnalloc(r->pool, h[i].key.len + 1 + h[i].value.len);
            if (p == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            f[n].tag = VC_TAG_HEADER;
            f[n].value.data = p;
            p = ngx_cpymem(p, h[i].key.data, h[i].key.len);
            *p++ = '\0';
            p = ngx_cpymem(p, h[i].value.data, h[i].value.len);
            f[n].value.len = p - f[n].value.data;
            n++;
        }
    }

    f[n].tag = VC_TAG_BODY;
    f[n].chain = ctx->body;

    if (ctx->body == NULL) {
        ngx_str_set(&f[n].value, "");
    }

    n++;

    ctx->start = ngx_vantage_metrics_now();

    ctx->call = ngx_vantage_worker_call(VC_FRAME_DISPATCH, f, n,
                                        ngx_vantage_dispatch_reply, ctx);
    if (ctx->call == NULL) {
        ngx_vantage_metrics_dispatch(0, NGX_VANTAGE_WORKER_UNREACHABLE,
                                     NULL);

        return ngx_vantage_dispatch_unavailable(r, ctx, 0,
                                                "the job queue is not "
                                                "available");
    }

    return NGX_DONE;
}


/*
 * The worker's answer, or its absence.  The request is finalized here,
 * outside nginx's HTTP event handlers, so posted subrequests are run too.
 */
static void
ngx_vantage_dispatch_reply(void *data, ngx_uint_t outcome, u_char *fields,
    size_t len)
{
    ngx_vantage_dispatch_ctx_t  *ctx = data;

    int                          replayed;
    u_char                      *p;
    size_t                       n;
    uint32_t                     status, retry;
    json_t                      *state, *s;
    ngx_int_t                    rc;
    ngx_str_t                    job_id, error, job_state, body, location;
    const char                  *code;
    ngx_connection_t            *c;
    ngx_http_request_t          *r;
    ngx_vantage_ctx_t           *vctx;
    ngx_vantage_loc_conf_t      *vlcf;
    ngx_vantage_worker_reply_t   rep;

    r = ctx->request;
    c = r->connection;
    ctx->call = NULL;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);

    if (outcome != NGX_VANTAGE_WORKER_REPLY) {
        if (ctx->type == VC_FRAME_DISPATCH) {
            ngx_vantage_metrics_dispatch(ctx->start, outcome, NULL);
        }

        rc = ngx_vantage_dispatch_unavailable(r, ctx, 0,
                 outcome == NGX_VANTAGE_WORKER_TIMEOUT
                 ? "the job queue did not answer in time; if the request "
                   "carried an Idempotency-Key it is safe to repeat"
                 : "the job queue is not available");
        goto done;
    }

    ngx_vantage_worker_reply_read(fields, len, &rep);

    status = rep.status;
    retry = rep.retry_after;
    replayed = rep.replayed;
    job_id = rep.job_id;
    error = rep.error;
    job_state = rep.job_state;

    if (ctx->type == VC_FRAME_DISPATCH) {
        ngx_vantage_metrics_dispatch(ctx->start, outcome, &rep);
    }

    if (status < 200 || status > 599) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "vantage worker: a reply without a valid status");
        rc = ngx_vantage_dispatch_unavailable(r, ctx, 0,
                                              "the job queue answered "
                                              "wrongly");
        goto done;
    }

    if (ctx->type == VC_FRAME_JOB_STATUS && status == NGX_HTTP_OK
        && job_state.len)
    {
        body.data = ngx_pnalloc(r->pool, job_state.len + 1);
        if (body.data == NULL) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        p = ngx_cpymem(body.data, job_state.data, job_state.len);
        *p++ = '\n';
        body.len = p - body.data;

        rc = ngx_vantage_dispatch_respond(r, ctx, NGX_HTTP_OK, &body);
        goto done;
    }

    if (ctx->type == VC_FRAME_DISPATCH
        && (status == NGX_HTTP_ACCEPTED || status == NGX_HTTP_OK)
        && job_id.len == NGX_VANTAGE_JOB_ID_LEN)
    {
        /* vantage_webhook_verify: the event is taken, a replay from now */
        ngx_vantage_webhook_durable(r);

        /* $vantage_job_id: the frame goes when this returns */
        vctx = ngx_vantage_get_ctx(r);
        vctx->job_id.data = ngx_pstrdup(r->pool, &job_id);
        if (vctx->job_id.data == NULL) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        vctx->job_id.len = job_id.len;

        /* a repeat says what became of the original job */
        ngx_str_set(&error, "queued");
        state = NULL;

        if (replayed && job_state.len) {
            state = json_loadb((char *) job_state.data, job_state.len, 0,
                               NULL);
            s = json_object_get(state, "status");

            if (json_is_string(s)) {
                error.data = (u_char *) json_string_value(s);
                error.len = ngx_strlen(error.data);
            }
        }

        n = sizeof("{\"job_id\":\"\",\"status\":\"\"}\n") - 1 + job_id.len
            + error.len + ngx_escape_json(NULL, error.data, error.len);

        body.data = ngx_pnalloc(r->pool, n);
        if (body.data == NULL) {
            json_decref(state);
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        p = ngx_sprintf(body.data, "{\"job_id\":\"%V\",\"status\":\"",
                        &job_id);
        p = (u_char *) ngx_escape_json(p, error.data, error.len);
        p = ngx_cpymem(p, "\"}\n", 3);
        body.len = p - body.data;

        json_decref(state);

        location.len = vlcf->dispatch_location.len + job_id.len;
        location.data = ngx_pnalloc(r->pool, location.len);
        if (location.data == NULL) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        ngx_memcpy(ngx_cpymem(location.data, vlcf->dispatch_location.data,
                              vlcf->dispatch_location.len),
                   job_id.data, job_id.len);

        if (ngx_vantage_dispatch_add_header(r, "Content-Location", &location)
            != NGX_OK)
        {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        if (vlcf->dispatch_status == NGX_HTTP_ACCEPTED) {
            r->headers_out.location = ngx_list_push(&r->headers_out.headers);
            if (r->headers_out.location == NULL) {
                rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
                goto done;
            }

            r->headers_out.location->hash = 1;
#if (nginx_version >= 1023000)
            r->headers_out.location->next = NULL;
#endif
            ngx_str_set(&r->headers_out.location->key, "Location");
            r->headers_out.location->value = location;
        }

        if (replayed) {
            ngx_str_set(&error, "true");

            if (ngx_vantage_dispatch_add_header(r, "Idempotent-Replayed",
                                                &error)
                != NGX_OK)
            {
                rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
                goto done;
            }
        }

        rc = ngx_vantage_dispatch_respond(r, ctx, vlcf->dispatch_status,
                                          &body);
        goto done;
    }

    if (status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        rc = ngx_vantage_dispatch_unavailable(r, ctx, retry,
                 error.len ? ngx_vantage_dispatch_cstr(r->pool, &error)
                           : NULL);
        goto done;
    }

    switch (status) {
    case NGX_HTTP_BAD_REQUEST:
        code = "invalid_request";
        break;
    case NGX_HTTP_NOT_FOUND:
        code = "not_found";
        break;
    case NGX_HTTP_CONFLICT:
        code = "conflict";
        break;
    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        code = "payload_too_large";
        break;
    case 422:
        code = "idempotency_key_reused";
        break;
    default:
        code = (status >= 500) ? "server_error" : "rejected";
        break;
    }

    if (retry) {
        body.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (body.data == NULL) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        body.len = ngx_sprintf(body.data, "%uD", retry) - body.data;

        if (ngx_vantage_dispatch_add_header(r, "Retry-After", &body)
            != NGX_OK)
        {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }
    }

    if (error.len == 0) {
        ngx_str_set(&error, "the job queue refused the request");
    }

    rc = ngx_vantage_dispatch_error(r, ctx, status, code,
                                    ngx_vantage_dispatch_cstr(r->pool, &error));

done:

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }

    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_vantage_jobs_handler(ngx_http_request_t *r)
{
    u_char                      *p;
    ngx_int_t                    rc;
    ngx_str_t                    id;
    ngx_uint_t                   i;
    ngx_http_cleanup_t          *cln;
    ngx_vantage_loc_conf_t      *vlcf;
    ngx_vantage_dispatch_ctx_t  *ctx;
    ngx_vantage_worker_field_t   f[2];

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        if (ngx_vantage_dispatch_add_header(r, "Allow",
                                            &ngx_vantage_jobs_allow)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_vantage_dispatch_error(r, NULL, NGX_HTTP_NOT_ALLOWED,
                                          "method_not_allowed",
                                          "a job's status is read with GET");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);

    rc = ngx_vantage_dispatch_tenant(r, vlcf, &ctx);
    if (ctx == NULL) {
        return rc;
    }

    if (vlcf->job_id) {
        if (ngx_http_complex_value(r, vlcf->job_id, &id) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else {
        /* the last segment of the path */
        p = r->uri.data + r->uri.len;

        while (p > r->uri.data && p[-1] != '/') {
            p--;
        }

        id.data = p;
        id.len = r->uri.data + r->uri.len - p;
    }

    for (i = 0; i < id.len; i++) {
        if (!((id.data[i] >= '0' && id.data[i] <= '9')
              || (id.data[i] >= 'a' && id.data[i] <= 'f')))
        {
            break;
        }
    }

    if (id.len != NGX_VANTAGE_JOB_ID_LEN || i != id.len) {
        /* the same answer as for another tenant's job: nothing to probe */
        return ngx_vantage_dispatch_error(r, ctx, NGX_HTTP_NOT_FOUND,
                                          "not_found", "no such job");
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_vantage_dispatch_cleanup;
    cln->data = ctx;
    ctx->type = VC_FRAME_JOB_STATUS;

    f[0].tag = VC_TAG_TENANT;
    f[0].value = ctx->tenant;
    f[0].chain = NULL;
    f[1].tag = VC_TAG_JOB_ID;
    f[1].value = id;
    f[1].chain = NULL;

    ctx->call = ngx_vantage_worker_call(VC_FRAME_JOB_STATUS, f, 2,
                                        ngx_vantage_dispatch_reply, ctx);
    if (ctx->call == NULL) {
        return ngx_vantage_dispatch_unavailable(r, ctx, 0,
                                                "the job queue is not "
                                                "available");
    }

    r->main->count++;

    return NGX_DONE;
}


/*
 * Evaluates vantage_tenant and makes the request's dispatch context.
 * Without a context (*ctxp NULL) it returns what the handler is to return:
 * an error status, or the outcome of sending a 403 for a missing tenant.
 */
static ngx_int_t
ngx_vantage_dispatch_tenant(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, ngx_vantage_dispatch_ctx_t **ctxp)
{
    ngx_str_t                    tenant;
    ngx_vantage_ctx_t           *vctx;
    ngx_vantage_dispatch_ctx_t  *ctx;

    *ctxp = NULL;

    if (ngx_http_complex_value(r, vlcf->tenant, &tenant) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (tenant.len == 0) {
        return ngx_vantage_dispatch_error(r, NULL, NGX_HTTP_FORBIDDEN,
                                          "forbidden",
                                          "the request names no tenant");
    }

    if (ngx_vantage_dispatch_printable(&tenant, NGX_VANTAGE_MAX_TENANT)
        != NGX_OK)
    {
        return ngx_vantage_dispatch_error(r, NULL, NGX_HTTP_FORBIDDEN,
                                          "forbidden",
                                          "the tenant is not printable text of "
                                          "at most 256 bytes");
    }

    vctx = ngx_vantage_get_ctx(r);

    if (vctx == NULL) {
        vctx = ngx_vantage_create_ctx(r);
        if (vctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_vantage_dispatch_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->tenant = tenant;
    vctx->dispatch = ctx;

    if (ngx_vantage_dispatch_correlation_id(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *ctxp = ctx;

    return NGX_OK;
}


/*
 * The request's $vantage_request_id (ngx_vantage_headers.c): the caller's
 * X-Request-Id, else its X-Correlation-ID, when a sane token, else a W3C
 * traceparent's trace-id, else one of ours.  It goes into the job and back
 * to the caller.
 */
static ngx_int_t
ngx_vantage_dispatch_correlation_id(ngx_http_request_t *r,
    ngx_vantage_dispatch_ctx_t *ctx)
{
    return ngx_vantage_headers_request_id(r, &ctx->correlation_id);
}


static ngx_int_t
ngx_vantage_dispatch_respond(ngx_http_request_t *r,
    ngx_vantage_dispatch_ctx_t *ctx, ngx_uint_t status, ngx_str_t *body)
{
    return ngx_vantage_send_nostore(r, ctx ? &ctx->correlation_id : NULL,
                                    status, &ngx_vantage_json_type, body);
}


/* 503 with Retry-After: the worker's figure, else the configured one */
static ngx_int_t
ngx_vantage_dispatch_unavailable(ngx_http_request_t *r,
    ngx_vantage_dispatch_ctx_t *ctx, time_t retry_after,
    const char *description)
{
    ngx_str_t                 v;
    ngx_vantage_main_conf_t  *vmcf;

    vmcf = ngx_http_get_module_main_conf(r, ngx_vantage_module);

    if (retry_after <= 0) {
        retry_after = vmcf->worker->retry_after;
    }

    v.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (v.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v.len = ngx_sprintf(v.data, "%T", retry_after) - v.data;

    if (ngx_vantage_dispatch_add_header(r, "Retry-After", &v) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_vantage_dispatch_error(r, ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "temporarily_unavailable",
                                      description ? description
                                                  : "the job queue is not "
                                                    "available");
}


/*
 * A JSON error, returned rather than finalized: the content handler returns
 * it to nginx, the asynchronous paths finalize with it.  A body not read
 * yet is discarded so that the connection can be kept.
 */
static ngx_int_t
ngx_vantage_dispatch_error(ngx_http_request_t *r,
    ngx_vantage_dispatch_ctx_t *ctx, ngx_uint_t status, const char *code,
    const char *description)
{
    ngx_int_t  rc;
    ngx_str_t  body;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_vantage_json_error(r->pool, code, description, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_vantage_dispatch_respond(r, ctx, status, &body);
}


static ngx_int_t
ngx_vantage_dispatch_add_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    return ngx_vantage_add_header(r, name, ngx_strlen(name), value->data,
                                  value->len);
}


/* the first header of that name, and how many there are */
static ngx_table_elt_t *
ngx_vantage_dispatch_find_header(ngx_http_request_t *r, const char *name,
    size_t len, ngx_uint_t *count)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *found;

    found = NULL;
    *count = 0;
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0 || h[i].key.len != len
            || ngx_strncasecmp(h[i].key.data, (u_char *) name, len) != 0)
        {
            continue;
        }

        if (found == NULL) {
            found = &h[i];
        }

        (*count)++;
    }

    return found;
}


static ngx_int_t
ngx_vantage_dispatch_printable(ngx_str_t *s, size_t max)
{
    ngx_uint_t  i;

    if (s->len > max) {
        return NGX_ERROR;
    }

    for (i = 0; i < s->len; i++) {
        if (s->data[i] < 0x20 || s->data[i] == 0x7f) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* a NUL-terminated copy, or "" when there is no memory left */
static const char *
ngx_vantage_dispatch_cstr(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char  *p;

    p = ngx_pnalloc(pool, s->len + 1);
    if (p == NULL) {
        return "";
    }

    *ngx_cpymem(p, s->data, s->len) = '\0';

    return (const char *) p;
}


static void
ngx_vantage_dispatch_cleanup(void *data)
{
    ngx_vantage_dispatch_ctx_t  *ctx = data;

    if (ctx->call != NULL) {
        ngx_vantage_worker_cancel(ctx->call);
        ctx->call = NULL;
    }
}
