/* ngx_vantage_headers.c -- header set/remove/rename and correlation ids */

/*
 * vantage_set_header, vantage_remove_header and vantage_rename_header change
 * the request's headers once per main request in the PRECONTENT phase
 * (after authentication and rate limiting, so that claim variables are
 * set), and the response's headers in a header filter on every response of
 * the main request.  vantage_request_id and $vantage_request_id carry one
 * correlation id from the client through the upstream and the worker back
 * to the client and into the access log.
 */

#include "ngx_vantage_module.h"

#include <openssl/rand.h>


#define NGX_VANTAGE_HEADERS_SET       0
#define NGX_VANTAGE_HEADERS_REMOVE    1
#define NGX_VANTAGE_HEADERS_RENAME    2

#define NGX_VANTAGE_HEADERS_REQUEST   0
#define NGX_VANTAGE_HEADERS_RESPONSE  1

/* where nginx keeps a pointer to a header besides the list */
#define NGX_VANTAGE_HEADERS_PLAIN     0
#define NGX_VANTAGE_HEADERS_PTR       1     /* ngx_table_elt_t * */
#define NGX_VANTAGE_HEADERS_ARRAY     2     /* ngx_array_t of those */

/* response headers nginx keeps or makes outside the list */
#define NGX_VANTAGE_HEADERS_NORMAL    0
#define NGX_VANTAGE_HEADERS_CTYPE     1     /* headers_out.content_type */
#define NGX_VANTAGE_HEADERS_HIDDEN    2     /* a default nginx adds */
#define NGX_VANTAGE_HEADERS_LASTMOD   3     /* also last_modified_time */

#define NGX_VANTAGE_HEADERS_MAX_ID    128


typedef struct {
    ngx_str_t                   name;      /* as configured */
    ngx_str_t                   lowcase;
    ngx_uint_t                  hash;      /* ngx_hash_key() of lowcase */
    ngx_uint_t                  type;      /* NGX_VANTAGE_HEADERS_PTR ... */
    ngx_uint_t                  offset;    /* in headers_in or headers_out */
    ngx_uint_t                  special;   /* a response header's kind */
} ngx_vantage_headers_name_t;


typedef struct {
    ngx_uint_t                  op;
    ngx_vantage_headers_name_t  name;
    ngx_vantage_headers_name_t  to;        /* of a rename */
    ngx_http_complex_value_t   *value;     /* of a set */
} ngx_vantage_headers_op_t;


typedef struct {
    ngx_str_t                   lowcase;
    ngx_uint_t                  type;
    ngx_uint_t                  offset;
    ngx_uint_t                  special;
} ngx_vantage_headers_out_t;


static ngx_int_t ngx_vantage_headers_handler(ngx_http_request_t *r);
static ngx_int_t ngx_vantage_headers_filter(ngx_http_request_t *r);
static ngx_int_t ngx_vantage_headers_request_id_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);
static ngx_vantage_ctx_t *ngx_vantage_headers_correlate(
    ngx_http_request_t *r);
static ngx_table_elt_t *ngx_vantage_headers_in_one(ngx_http_request_t *r,
    ngx_str_t *lowcase, ngx_uint_t *n);
static ngx_uint_t ngx_vantage_headers_valid_id(ngx_str_t *v);
static ngx_uint_t ngx_vantage_headers_valid_traceparent(ngx_str_t *v);
static ngx_uint_t ngx_vantage_headers_hex(u_char *p, size_t len);
static ngx_int_t ngx_vantage_headers_random_hex(u_char *p, size_t len);
static ngx_int_t ngx_vantage_headers_propagate(ngx_http_request_t *r,
    ngx_vantage_ctx_t *ctx);
static ngx_int_t ngx_vantage_headers_in_set(ngx_http_request_t *r,
    ngx_vantage_headers_name_t *n, ngx_str_t *value);
static ngx_int_t ngx_vantage_headers_in_apply(ngx_http_request_t *r,
    ngx_vantage_headers_op_t *op);
static ngx_int_t ngx_vantage_headers_out_apply(ngx_http_request_t *r,
    ngx_vantage_headers_op_t *op);
static ngx_uint_t ngx_vantage_headers_out_clear(ngx_http_request_t *r,
    ngx_str_t *lowcase);
static ngx_table_elt_t *ngx_vantage_headers_out_push(ngx_http_request_t *r,
    ngx_vantage_headers_name_t *n, ngx_str_t *value, ngx_uint_t hash);
static ngx_int_t ngx_vantage_headers_fix(ngx_http_request_t *r,
    ngx_vantage_headers_name_t *n, ngx_uint_t out);
#define ngx_vantage_headers_in_fix(r, n)   ngx_vantage_headers_fix(r, n, 0)
#define ngx_vantage_headers_out_fix(r, n)  ngx_vantage_headers_fix(r, n, 1)
static ngx_int_t ngx_vantage_headers_value(ngx_http_request_t *r,
    ngx_vantage_headers_op_t *op, ngx_str_t *value);
static char *ngx_vantage_headers_name(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_uint_t side, ngx_str_t *value, ngx_vantage_headers_name_t *n);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


static ngx_str_t  ngx_vantage_headers_x_request_id =
    ngx_string("x-request-id");
static ngx_str_t  ngx_vantage_headers_x_correlation_id =
    ngx_string("x-correlation-id");
static ngx_str_t  ngx_vantage_headers_traceparent = ngx_string("traceparent");
static ngx_str_t  ngx_vantage_headers_tracestate = ngx_string("tracestate");


static ngx_http_variable_t  ngx_vantage_headers_vars[] = {

    { ngx_string("vantage_request_id"), NULL,
      ngx_vantage_headers_request_id_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


/*
 * Headers nginx itself reads to frame the message or the connection: the
 * request's go through proxy_set_header, the response's nginx computes.
 */
static char  *ngx_vantage_headers_in_refused[] = {
    "host", "content-length", "transfer-encoding", "connection",
    "keep-alive", "te", "upgrade", "expect", "proxy-connection",
    NULL
};

static char  *ngx_vantage_headers_out_refused[] = {
    "content-length", "transfer-encoding", "connection", "keep-alive",
    "te", "upgrade", "proxy-connection",
    NULL
};


/* the response headers r->headers_out points at */
static ngx_vantage_headers_out_t  ngx_vantage_headers_out_fields[] = {

    { ngx_string("content-type"), NGX_VANTAGE_HEADERS_PLAIN, 0,
      NGX_VANTAGE_HEADERS_CTYPE },

    { ngx_string("server"), NGX_VANTAGE_HEADERS_PTR,
      offsetof(ngx_http_headers_out_t, server), NGX_VANTAGE_HEADERS_HIDDEN },

    { ngx_string("date"), NGX_VANTAGE_HEADERS_PTR,
      offsetof(ngx_http_headers_out_t, date), NGX_VANTAGE_HEADERS_HIDDEN },

    { ngx_string("last-modified"), NGX_VANTAGE_HEADERS_PTR,
      offsetof(ngx_http_headers_out_t, last_modified),
      NGX_VANTAGE_HEADERS_LASTMOD },

    { ngx_string("content-encoding"), NGX_VANTAGE_HEADERS_PTR,
      offsetof(ngx_http_headers_out_t, content_encoding),
      NGX_VANTAGE_HEADERS_NORMAL },

    { ngx_string("location"), NGX_VANTAGE_HEADERS_PTR,
      offsetof(ngx_http_headers_out_t, location), NGX_VANTAGE_HEADERS_NORMAL },

    { ngx_string("refresh"), NGX_VANTAGE_HEADERS_PTR,
      offsetof(ngx_http_headers_out_t, refresh), NGX_VANTAGE_HEADERS_NORMAL },

    { ngx_string("content-range"), NGX_VANTAGE_HEADERS_PTR,
      offsetof(ngx_http_headers_out_t, content_range),
      NGX_VANTAGE_HEADERS_NORMAL },

    { ngx_string("accept-ranges"), NGX_VANTAGE_HEADERS_PTR,
      offsetof(ngx_http_headers_out_t, accept_ranges),
      NGX_VANTAGE_HEADERS_NORMAL },

    { ngx_string("www-authenticate"), NGX_VANTAGE_HEADERS_PTR,
      offsetof(ngx_http_headers_out_t, www_authenticate),
      NGX_VANTAGE_HEADERS_NORMAL },

    { ngx_string("expires"), NGX_VANTAGE_HEADERS_PTR,
      offsetof(ngx_http_headers_out_t, expires), NGX_VANTAGE_HEADERS_NORMAL },

    { ngx_string("etag"), NGX_VANTAGE_HEADERS_PTR,
      offsetof(ngx_http_headers_out_t, etag), NGX_VANTAGE_HEADERS_NORMAL },

#if (nginx_version >= 1023000)
    { ngx_string("cache-control"), NGX_VANTAGE_HEADERS_PTR,
      offsetof(ngx_http_headers_out_t, cache_control),
      NGX_VANTAGE_HEADERS_NORMAL },

    { ngx_string("link"), NGX_VANTAGE_HEADERS_PTR,
      offsetof(ngx_http_headers_out_t, link), NGX_VANTAGE_HEADERS_NORMAL },
#else
    { ngx_string("cache-control"), NGX_VANTAGE_HEADERS_ARRAY,
      offsetof(ngx_http_headers_out_t, cache_control),
      NGX_VANTAGE_HEADERS_NORMAL },

    { ngx_string("link"), NGX_VANTAGE_HEADERS_ARRAY,
      offsetof(ngx_http_headers_out_t, link), NGX_VANTAGE_HEADERS_NORMAL },
#endif

    { ngx_null_string, 0, 0, 0 }
};


ngx_int_t
ngx_vantage_headers_add_variables(ngx_conf_t *cf)
{
    return ngx_vantage_add_variables(cf, ngx_vantage_headers_vars);
}


/*
 * Registers the PRECONTENT handler and the header filter.  nginx runs a
 * phase's handlers in the reverse order of their registration, so the
 * caller pushes this handler before the rate limiter's, and it runs after
 * that one (and after the ACCESS phase's authentication).
 */
ngx_int_t
ngx_vantage_headers_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_vantage_main_conf_t    *vmcf;
    ngx_http_core_main_conf_t  *cmcf;

    static ngx_str_t  request_id = ngx_string("request_id");

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_vantage_headers_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_vantage_headers_filter;

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_vantage_module);

    if (vmcf->request_id_index == NGX_CONF_UNSET) {
        vmcf->request_id_index = ngx_http_get_variable_index(cf, &request_id);
        if (vmcf->request_id_index == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* -- configuration -------------------------------------------------------- */

/*
 * vantage_set_header request|response <name> <value>;
 * vantage_remove_header request|response <name> [<name> ...];
 * vantage_rename_header request|response <from> <to>;
 *
 * cmd->post holds the operation.  A level with operations of one side
 * replaces its parent's list of that side, as add_header does.
 */
char *
ngx_vantage_headers_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t  *vlcf = conf;

    char                              *rv;
    ngx_str_t                         *value;
    ngx_uint_t                         i, j, k, last, side, op, nnames;
    ngx_array_t                      **ops;
    ngx_vantage_headers_op_t          *o, *p;
    ngx_vantage_headers_name_t        *names[2];
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;
    op = (ngx_uint_t) cmd->post;

    if (ngx_strcmp(value[1].data, "request") == 0) {
        side = NGX_VANTAGE_HEADERS_REQUEST;
        ops = &vlcf->headers_request;

    } else if (ngx_strcmp(value[1].data, "response") == 0) {
        side = NGX_VANTAGE_HEADERS_RESPONSE;
        ops = &vlcf->headers_response;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": \"%V\" is neither \"request\" nor "
                           "\"response\"", &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    if (*ops == NGX_CONF_UNSET_PTR) {
        *ops = ngx_array_create(cf->pool, 4,
                                sizeof(ngx_vantage_headers_op_t));
        if (*ops == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    /* a remove names any number of headers, a set or a rename one */
    last = (op == NGX_VANTAGE_HEADERS_REMOVE) ? cf->args->nelts : 3;

    for (i = 2; i < last; i++) {

        o = ngx_array_push(*ops);
        if (o == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(o, sizeof(ngx_vantage_headers_op_t));
        o->op = op;

        rv = ngx_vantage_headers_name(cf, cmd, side, &value[i], &o->name);
        if (rv != NGX_CONF_OK) {
            return rv;
        }

        names[0] = &o->name;
        nnames = 1;

        if (op == NGX_VANTAGE_HEADERS_RENAME) {
            rv = ngx_vantage_headers_name(cf, cmd, side, &value[3], &o->to);
            if (rv != NGX_CONF_OK) {
                return rv;
            }

            if (o->name.hash == o->to.hash
                && o->name.lowcase.len == o->to.lowcase.len
                && ngx_strcmp(o->name.lowcase.data, o->to.lowcase.data) == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\": \"%V\" renamed to itself",
                                   &cmd->name, &value[2]);
                return NGX_CONF_ERROR;
            }

            if (side == NGX_VANTAGE_HEADERS_RESPONSE
                && (o->name.special != NGX_VANTAGE_HEADERS_NORMAL
                    || o->to.special != NGX_VANTAGE_HEADERS_NORMAL))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\": the response header \"%V\" "
                                   "cannot be renamed: nginx makes it "
                                   "outside the header list; use "
                                   "\"vantage_set_header\" with "
                                   "$sent_http_* instead", &cmd->name,
                                   o->name.special
                                   != NGX_VANTAGE_HEADERS_NORMAL
                                   ? &value[2] : &value[3]);
                return NGX_CONF_ERROR;
            }

            names[1] = &o->to;
            nnames = 2;
        }

        if (op == NGX_VANTAGE_HEADERS_SET) {
            o->value = ngx_palloc(cf->pool,
                                  sizeof(ngx_http_complex_value_t));
            if (o->value == NULL) {
                return NGX_CONF_ERROR;
            }

            ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

            ccv.cf = cf;
            ccv.value = &value[3];
            ccv.complex_value = o->value;

            if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
                return NGX_CONF_ERROR;
            }
        }

        /*
         * one operation per header and side at one level: two would only
         * make the result depend on the order of the lines
         */

        p = (*ops)->elts;

        for (j = 0; j + 1 < (*ops)->nelts; j++) {
            for (k = 0; k < nnames; k++) {
                if ((p[j].name.lowcase.len == names[k]->lowcase.len
                     && ngx_strcmp(p[j].name.lowcase.data,
                                   names[k]->lowcase.data) == 0)
                    || (p[j].op == NGX_VANTAGE_HEADERS_RENAME
                        && p[j].to.lowcase.len == names[k]->lowcase.len
                        && ngx_strcmp(p[j].to.lowcase.data,
                                      names[k]->lowcase.data) == 0))
                {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "\"%V\": the %s header \"%V\" is "
                                       "already named by another header "
                                       "operation at this level",
                                       &cmd->name,
                                       side == NGX_VANTAGE_HEADERS_REQUEST
                                       ? "request" : "response",
                                       &names[k]->name);
                    return NGX_CONF_ERROR;
                }
            }
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_vantage_headers_name(ngx_conf_t *cf, ngx_command_t *cmd, ngx_uint_t side,
    ngx_str_t *value, ngx_vantage_headers_name_t *n)
{
    char                      **refused;
    u_char                     *p;
    ngx_uint_t                  i;
    ngx_http_header_t          *hh;
    ngx_vantage_headers_out_t  *of;

    if (value->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": empty header name", &cmd->name);
        return NGX_CONF_ERROR;
    }

    /* a token (RFC 9110, 5.1) */

    for (p = value->data; p < value->data + value->len; p++) {
        if (!(isalnum(*p) || ngx_strchr("!#$%&'*+-.^_`|~", *p) != NULL)
            || *p == '\0')
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\": invalid header name \"%V\"",
                               &cmd->name, value);
            return NGX_CONF_ERROR;
        }
    }

    n->name = *value;
    n->lowcase.len = value->len;
    n->lowcase.data = ngx_pnalloc(cf->pool, value->len + 1);
    if (n->lowcase.data == NULL) {
        return NGX_CONF_ERROR;
    }

    n->hash = ngx_hash_strlow(n->lowcase.data, value->data, value->len);
    n->lowcase.data[value->len] = '\0';

    refused = (side == NGX_VANTAGE_HEADERS_REQUEST)
              ? ngx_vantage_headers_in_refused
              : ngx_vantage_headers_out_refused;

    for (i = 0; refused[i]; i++) {
        if (ngx_strcmp(n->lowcase.data, refused[i]) != 0) {
            continue;
        }

        if (side == NGX_VANTAGE_HEADERS_REQUEST) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" cannot change the request header "
                               "\"%V\": nginx reads it itself; use "
                               "\"proxy_set_header\" for what the upstream "
                               "gets", &cmd->name, value);

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" cannot change the response header "
                               "\"%V\": nginx makes it for the connection",
                               &cmd->name, value);
        }

        return NGX_CONF_ERROR;
    }

    n->type = NGX_VANTAGE_HEADERS_PLAIN;
    n->special = NGX_VANTAGE_HEADERS_NORMAL;

    if (side == NGX_VANTAGE_HEADERS_RESPONSE) {
        for (of = ngx_vantage_headers_out_fields; of->lowcase.len; of++) {
            if (ngx_strcmp(n->lowcase.data, of->lowcase.data) == 0) {
                n->type = of->type;
                n->offset = of->offset;
                n->special = of->special;
                break;
            }
        }

        return NGX_CONF_OK;
    }

    /* nginx's own table of the request headers it points at */

    for (hh = ngx_http_headers_in; hh->name.len; hh++) {
        if (hh->name.len != n->lowcase.len
            || ngx_strncasecmp(hh->name.data, n->lowcase.data,
                               n->lowcase.len) != 0)
        {
            continue;
        }

        n->offset = hh->offset;

#if (nginx_version >= 1023000)
        n->type = NGX_VANTAGE_HEADERS_PTR;
#else
        /* nginx 1.22 keeps these two in arrays */
        n->type = (ngx_strcmp(n->lowcase.data, "cookie") == 0
                   || ngx_strcmp(n->lowcase.data, "x-forwarded-for") == 0)
                  ? NGX_VANTAGE_HEADERS_ARRAY : NGX_VANTAGE_HEADERS_PTR;
#endif
        break;
    }

    return NGX_CONF_OK;
}


char *
ngx_vantage_headers_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf)
{
    ngx_conf_merge_ptr_value(conf->headers_request, prev->headers_request,
                             NULL);
    ngx_conf_merge_ptr_value(conf->headers_response, prev->headers_response,
                             NULL);
    ngx_conf_merge_value(conf->request_id, prev->request_id, 0);

    return NGX_CONF_OK;
}


/* -- correlation ---------------------------------------------------------- */

/*
 * The request's correlation id, the same for the whole main request and
 * across internal redirects: the client's X-Request-Id when well-formed,
 * else its X-Correlation-ID (what vantage_dispatch accepted first), else
 * the trace-id of a valid W3C traceparent, else nginx's $request_id.
 * *id points into the request's memory.  Returns NGX_OK or NGX_ERROR.
 */
ngx_int_t
ngx_vantage_headers_request_id(ngx_http_request_t *r, ngx_str_t *id)
{
    ngx_vantage_ctx_t  *ctx;

    ctx = ngx_vantage_headers_correlate(r);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    *id = ctx->request_id;

    return NGX_OK;
}


static ngx_int_t
ngx_vantage_headers_request_id_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t  id;

    if (ngx_vantage_headers_request_id(r, &id) != NGX_OK) {
        return NGX_ERROR;
    }

    v->data = id.data;
    v->len = id.len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_vantage_ctx_t *
ngx_vantage_headers_correlate(ngx_http_request_t *r)
{
    ngx_uint_t                  n;
    ngx_table_elt_t            *h;
    ngx_vantage_ctx_t          *ctx;
    ngx_vantage_main_conf_t    *vmcf;
    ngx_http_variable_value_t  *vv;

    r = r->main;

    ctx = ngx_vantage_get_ctx(r);

    if (ctx == NULL) {
        ctx = ngx_vantage_create_ctx(r);
        if (ctx == NULL) {
            return NULL;
        }
    }

    if (ctx->request_id.data != NULL) {
        return ctx;
    }

    /* a header sent more than once is not well-formed */

    h = ngx_vantage_headers_in_one(r, &ngx_vantage_headers_traceparent, &n);

    if (h != NULL && n == 1
        && ngx_vantage_headers_valid_traceparent(&h->value))
    {
        ctx->traceparent = h->value;
    }

    h = ngx_vantage_headers_in_one(r, &ngx_vantage_headers_x_request_id, &n);

    if (h != NULL && n == 1 && ngx_vantage_headers_valid_id(&h->value)) {
        ctx->request_id = h->value;
        return ctx;
    }

    h = ngx_vantage_headers_in_one(r, &ngx_vantage_headers_x_correlation_id,
                                   &n);

    if (h != NULL && n == 1 && ngx_vantage_headers_valid_id(&h->value)) {
        ctx->request_id = h->value;
        return ctx;
    }

    if (ctx->traceparent.len) {
        ctx->request_id.data = ctx->traceparent.data + 3;
        ctx->request_id.len = 32;
        return ctx;
    }

    vmcf = ngx_http_get_module_main_conf(r, ngx_vantage_module);

    vv = ngx_http_get_indexed_variable(r, vmcf->request_id_index);
    if (vv == NULL || vv->not_found) {
        return NULL;
    }

    ctx->request_id.data = vv->data;
    ctx->request_id.len = vv->len;

    return ctx;
}


/* the first header of that name, and how many there are */
static ngx_table_elt_t *
ngx_vantage_headers_in_one(ngx_http_request_t *r, ngx_str_t *lowcase,
    ngx_uint_t *n)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *first;

    first = NULL;
    *n = 0;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].key.len == lowcase->len
                && ngx_strncasecmp(h[i].key.data, lowcase->data,
                                   lowcase->len) == 0)
            {
                if (first == NULL) {
                    first = &h[i];
                }

                (*n)++;
            }
        }
    }

    return first;
}


/* 1 to 128 characters of [A-Za-z0-9._:-] */
static ngx_uint_t
ngx_vantage_headers_valid_id(ngx_str_t *v)
{
    u_char  *p;

    if (v->len == 0 || v->len > NGX_VANTAGE_HEADERS_MAX_ID) {
        return 0;
    }

    for (p = v->data; p < v->data + v->len; p++) {
        if (!(isalnum(*p) || *p == '.' || *p == '_' || *p == ':'
              || *p == '-'))
        {
            return 0;
        }
    }

    return 1;
}


/*
 * W3C Trace Context, level 1: "00-<trace-id>-<parent-id>-<flags>", lower
 * case hex, neither id all zeros.  Version ff is invalid; a later version
 * is read as 00 is when its first 55 characters are and the 56th, if any,
 * is a dash.
 */
static ngx_uint_t
ngx_vantage_headers_valid_traceparent(ngx_str_t *v)
{
    u_char  *p;

    p = v->data;

    if (v->len < 55
        || !ngx_vantage_headers_hex(p, 2)
        || (p[0] == 'f' && p[1] == 'f')
        || p[2] != '-' || p[35] != '-' || p[52] != '-'
        || !ngx_vantage_headers_hex(p + 3, 32)
        || !ngx_vantage_headers_hex(p + 36, 16)
        || !ngx_vantage_headers_hex(p + 53, 2))
    {
        return 0;
    }

    if (p[0] == '0' && p[1] == '0') {
        if (v->len != 55) {
            return 0;
        }

    } else if (v->len > 55 && p[55] != '-') {
        return 0;
    }

    if (ngx_strncmp(p + 3, "00000000000000000000000000000000", 32) == 0
        || ngx_strncmp(p + 36, "0000000000000000", 16) == 0)
    {
        return 0;
    }

    return 1;
}


static ngx_uint_t
ngx_vantage_headers_hex(u_char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) {
            return 0;
        }
    }

    return 1;
}


/* len lower case hex digits, not all zero */
static ngx_int_t
ngx_vantage_headers_random_hex(u_char *p, size_t len)
{
    u_char  buf[16];

    do {
        if (RAND_bytes(buf, len / 2) != 1) {
            return NGX_ERROR;
        }

        ngx_hex_dump(p, buf, len / 2);

    } while (ngx_strncmp(p, "00000000000000000000000000000000", len) == 0);

    return NGX_OK;
}


/*
 * vantage_request_id on: X-Request-Id and traceparent to the upstream, a
 * client's invalid ones replaced; a generated traceparent starts a new
 * trace, so the client's tracestate goes with the old one.
 */
static ngx_int_t
ngx_vantage_headers_propagate(ngx_http_request_t *r, ngx_vantage_ctx_t *ctx)
{
    u_char                      *p;
    ngx_str_t                    tp;
    ngx_vantage_headers_name_t   n;

    ngx_memzero(&n, sizeof(ngx_vantage_headers_name_t));

    ngx_str_set(&n.name, "X-Request-Id");
    n.lowcase = ngx_vantage_headers_x_request_id;
    n.hash = ngx_hash_key(n.lowcase.data, n.lowcase.len);

    if (ngx_vantage_headers_in_set(r, &n, &ctx->request_id) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ctx->traceparent.len) {
        tp = ctx->traceparent;

    } else {
        p = ngx_pnalloc(r->pool, 55);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, "00-", 3);

        if (ctx->request_id.len == 32
            && ngx_vantage_headers_hex(ctx->request_id.data, 32)
            && ngx_strncmp(ctx->request_id.data,
                           "00000000000000000000000000000000", 32) != 0)
        {
            ngx_memcpy(p + 3, ctx->request_id.data, 32);

        } else if (ngx_vantage_headers_random_hex(p + 3, 32) != NGX_OK) {
            return NGX_ERROR;
        }

        p[35] = '-';

        if (ngx_vantage_headers_random_hex(p + 36, 16) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_memcpy(p + 52, "-00", 3);

        tp.data = p;
        tp.len = 55;

        if (ngx_vantage_headers_in_remove(r, &ngx_vantage_headers_tracestate)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    ngx_str_set(&n.name, "traceparent");
    n.lowcase = ngx_vantage_headers_traceparent;
    n.hash = ngx_hash_key(n.lowcase.data, n.lowcase.len);

    return ngx_vantage_headers_in_set(r, &n, &tp);
}


/* -- the request ---------------------------------------------------------- */

static ngx_int_t
ngx_vantage_headers_handler(ngx_http_request_t *r)
{
    ngx_uint_t                 i;
    ngx_vantage_ctx_t         *ctx;
    ngx_vantage_loc_conf_t    *vlcf;
    ngx_vantage_headers_op_t  *op;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);

    if (vlcf->headers_request == NULL && !vlcf->request_id) {
        return NGX_DECLINED;
    }

    /* the id is read from the client's headers before they change */

    ctx = ngx_vantage_headers_correlate(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->headers_done) {
        /* an internal redirect: once per main request */
        return NGX_DECLINED;
    }

    ctx->headers_done = 1;

    if (vlcf->request_id
        && ngx_vantage_headers_propagate(r, ctx) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (vlcf->headers_request == NULL) {
        return NGX_DECLINED;
    }

    op = vlcf->headers_request->elts;

    for (i = 0; i < vlcf->headers_request->nelts; i++) {
        if (ngx_vantage_headers_in_apply(r, &op[i]) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_vantage_headers_in_apply(ngx_http_request_t *r,
    ngx_vantage_headers_op_t *op)
{
    ngx_str_t          value;
    ngx_uint_t         i, found;
    ngx_list_part_t   *part;
    ngx_table_elt_t   *h;

    switch (op->op) {

    case NGX_VANTAGE_HEADERS_SET:
        if (ngx_vantage_headers_value(r, op, &value) != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_vantage_headers_in_set(r, &op->name, &value);

    case NGX_VANTAGE_HEADERS_REMOVE:
        if (ngx_vantage_headers_in_remove(r, &op->name.lowcase) != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_vantage_headers_in_fix(r, &op->name);

    default: /* NGX_VANTAGE_HEADERS_RENAME */
        break;
    }

    (void) ngx_vantage_headers_in_one(r, &op->name.lowcase, &found);

    if (found == 0) {
        /* nothing to rename: a header of the new name stays */
        return NGX_OK;
    }

    if (ngx_vantage_headers_in_remove(r, &op->to.lowcase) != NGX_OK) {
        return NGX_ERROR;
    }

    /* in place: order and values kept, no element moves */

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].key.len == op->name.lowcase.len
                && ngx_strncasecmp(h[i].key.data, op->name.lowcase.data,
                                   op->name.lowcase.len) == 0)
            {
                h[i].key = op->to.name;
                h[i].lowcase_key = op->to.lowcase.data;
                h[i].hash = op->to.hash;
            }
        }
    }

    if (ngx_vantage_headers_in_fix(r, &op->name) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_vantage_headers_in_fix(r, &op->to);
}


/* every header of the name replaced by one with value, or none if empty */
static ngx_int_t
ngx_vantage_headers_in_set(ngx_http_request_t *r,
    ngx_vantage_headers_name_t *n, ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    if (ngx_vantage_headers_in_remove(r, &n->lowcase) != NGX_OK) {
        return NGX_ERROR;
    }

    if (value->len) {
        h = ngx_list_push(&r->headers_in.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->hash = n->hash;
        h->key = n->name;
        h->lowcase_key = n->lowcase.data;
        h->value = *value;
#if (nginx_version >= 1023000)
        h->next = NULL;
#endif
    }

    return ngx_vantage_headers_in_fix(r, n);
}


/*
 * Points r->headers_in's field for the header (user_agent, authorization,
 * the cookies...), or r->headers_out's when out is set, at what the list
 * holds now, as nginx would have set it had the headers come this way.
 * Of the response's, those cleared (hash 0) are passed over.
 */
static ngx_int_t
ngx_vantage_headers_fix(ngx_http_request_t *r,
    ngx_vantage_headers_name_t *n, ngx_uint_t out)
{
    char              *fields;
    ngx_uint_t         i;
    ngx_array_t       *a;
    ngx_list_part_t   *part;
    ngx_table_elt_t   *h, **ph, **pa;

    if (n->type == NGX_VANTAGE_HEADERS_PLAIN) {
        return NGX_OK;
    }

    if (out) {
        fields = (char *) &r->headers_out;
        part = &r->headers_out.headers.part;

    } else {
        fields = (char *) &r->headers_in;
        part = &r->headers_in.headers.part;
    }

    a = NULL;
    ph = NULL;

    if (n->type == NGX_VANTAGE_HEADERS_ARRAY) {
        a = (ngx_array_t *) (fields + n->offset);

        if (a->elts == NULL) {
            if (ngx_array_init(a, r->pool, 1, sizeof(ngx_table_elt_t *))
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        a->nelts = 0;

    } else {
        ph = (ngx_table_elt_t **) (fields + n->offset);
        *ph = NULL;
    }

    for ( /* void */ ; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if ((out && h[i].hash == 0)
                || h[i].key.len != n->lowcase.len
                || ngx_strncasecmp(h[i].key.data, n->lowcase.data,
                                   n->lowcase.len) != 0)
            {
                continue;
            }

            if (a != NULL) {
                pa = ngx_array_push(a);
                if (pa == NULL) {
                    return NGX_ERROR;
                }

                *pa = &h[i];
                continue;
            }

#if (nginx_version >= 1023000)
            *ph = &h[i];
            ph = &h[i].next;
            *ph = NULL;
#else
            if (*ph == NULL) {
                *ph = &h[i];
            }
#endif
        }
    }

    if (!out && n->offset == offsetof(ngx_http_headers_in_t, authorization)) {
        /* parsed again by ngx_http_auth_basic_user() if asked */
        ngx_str_null(&r->headers_in.user);
        ngx_str_null(&r->headers_in.passwd);
    }

    return NGX_OK;
}


/* -- the response --------------------------------------------------------- */

static ngx_int_t
ngx_vantage_headers_filter(ngx_http_request_t *r)
{
    ngx_str_t                    id;
    ngx_uint_t                   i;
    ngx_vantage_loc_conf_t      *vlcf;
    ngx_vantage_headers_op_t    *op;
    ngx_vantage_headers_name_t   n;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);

    if (vlcf->headers_response == NULL && !vlcf->request_id) {
        return ngx_http_next_header_filter(r);
    }

    if (vlcf->request_id) {
        if (ngx_vantage_headers_request_id(r, &id) != NGX_OK) {
            return NGX_ERROR;
        }

        /* one X-Request-Id, ours, whatever the upstream sent */

        ngx_memzero(&n, sizeof(ngx_vantage_headers_name_t));
        ngx_str_set(&n.name, "X-Request-Id");
        n.lowcase = ngx_vantage_headers_x_request_id;
        n.hash = ngx_hash_key(n.lowcase.data, n.lowcase.len);

        (void) ngx_vantage_headers_out_clear(r, &n.lowcase);

        if (ngx_vantage_headers_out_push(r, &n, &id, 1) == NULL) {
            return NGX_ERROR;
        }
    }

    if (vlcf->headers_response != NULL) {
        op = vlcf->headers_response->elts;

        for (i = 0; i < vlcf->headers_response->nelts; i++) {
            if (ngx_vantage_headers_out_apply(r, &op[i]) != NGX_OK) {
                return NGX_ERROR;
            }
        }
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_vantage_headers_out_apply(ngx_http_request_t *r,
    ngx_vantage_headers_op_t *op)
{
    u_char           *p;
    ngx_str_t         value;
    ngx_uint_t        i, found;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (op->op == NGX_VANTAGE_HEADERS_RENAME) {
        found = 0;

        for (part = &r->headers_out.headers.part; part; part = part->next) {
            h = part->elts;

            for (i = 0; i < part->nelts; i++) {
                if (h[i].hash != 0
                    && h[i].key.len == op->name.lowcase.len
                    && ngx_strncasecmp(h[i].key.data, op->name.lowcase.data,
                                       op->name.lowcase.len) == 0)
                {
                    found++;
                }
            }
        }

        if (found == 0) {
            return NGX_OK;
        }

        (void) ngx_vantage_headers_out_clear(r, &op->to.lowcase);

        for (part = &r->headers_out.headers.part; part; part = part->next) {
            h = part->elts;

            for (i = 0; i < part->nelts; i++) {
                if (h[i].hash != 0
                    && h[i].key.len == op->name.lowcase.len
                    && ngx_strncasecmp(h[i].key.data, op->name.lowcase.data,
                                       op->name.lowcase.len) == 0)
                {
                    h[i].key = op->to.name;
                    h[i].lowcase_key = op->to.lowcase.data;
                }
            }
        }

        if (ngx_vantage_headers_out_fix(r, &op->name) != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_vantage_headers_out_fix(r, &op->to);
    }

    ngx_str_null(&value);

    if (op->op == NGX_VANTAGE_HEADERS_SET
        && ngx_vantage_headers_value(r, op, &value) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (op->name.special == NGX_VANTAGE_HEADERS_CTYPE) {
        r->headers_out.content_type = value;
        r->headers_out.content_type_lowcase = NULL;
        r->headers_out.content_type_hash = 0;
        ngx_str_null(&r->headers_out.charset);

        /* the type without its parameters, as nginx keeps it */

        p = ngx_strlchr(value.data, value.data + value.len, ';');
        if (p == NULL) {
            p = value.data + value.len;
        }

        while (p > value.data && (p[-1] == ' ' || p[-1] == '\t')) {
            p--;
        }

        r->headers_out.content_type_len = p - value.data;

        return NGX_OK;
    }

    (void) ngx_vantage_headers_out_clear(r, &op->name.lowcase);

    if (value.len
        && ngx_vantage_headers_out_push(r, &op->name, &value, 1) == NULL)
    {
        return NGX_ERROR;
    }

    if (ngx_vantage_headers_out_fix(r, &op->name) != NGX_OK) {
        return NGX_ERROR;
    }

    switch (op->name.special) {

    case NGX_VANTAGE_HEADERS_HIDDEN:
        if (value.len == 0) {
            /*
             * nginx's header filter adds Server and Date when the pointer
             * is NULL and skips an element whose hash is 0: point it at
             * such an element
             */
            h = ngx_vantage_headers_out_push(r, &op->name, &value, 0);
            if (h == NULL) {
                return NGX_ERROR;
            }

            *(ngx_table_elt_t **) ((char *) &r->headers_out
                                   + op->name.offset) = h;
        }

        break;

    case NGX_VANTAGE_HEADERS_LASTMOD:
        /* what conditional requests compare against, or nothing */
        r->headers_out.last_modified_time = -1;

        if (value.len) {
            /* ngx_parse_http_time() returns NGX_ERROR, -1, for a bad date */
            r->headers_out.last_modified_time =
                                   ngx_parse_http_time(value.data, value.len);
        }

        break;
    }

    return NGX_OK;
}


/* marks every header of the name removed, as nginx does; returns how many */
static ngx_uint_t
ngx_vantage_headers_out_clear(ngx_http_request_t *r, ngx_str_t *lowcase)
{
    ngx_uint_t        i, n;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    n = 0;

    for (part = &r->headers_out.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash != 0
                && h[i].key.len == lowcase->len
                && ngx_strncasecmp(h[i].key.data, lowcase->data,
                                   lowcase->len) == 0)
            {
                h[i].hash = 0;
                n++;
            }
        }
    }

    return n;
}


static ngx_table_elt_t *
ngx_vantage_headers_out_push(ngx_http_request_t *r,
    ngx_vantage_headers_name_t *n, ngx_str_t *value, ngx_uint_t hash)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NULL;
    }

    h->hash = hash;
    h->key = n->name;
    h->lowcase_key = n->lowcase.data;
    h->value = *value;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return h;
}


/*
 * A set's value; empty when it evaluates so, and when it holds a control
 * character (a claim can), which no header may carry.
 */
static ngx_int_t
ngx_vantage_headers_value(ngx_http_request_t *r, ngx_vantage_headers_op_t *op,
    ngx_str_t *value)
{
    u_char  *p;

    if (ngx_http_complex_value(r, op->value, value) != NGX_OK) {
        return NGX_ERROR;
    }

    for (p = value->data; p < value->data + value->len; p++) {
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "vantage headers: the value for \"%V\" holds "
                          "control characters, header not set",
                          &op->name.name);
            ngx_str_null(value);
            break;
        }
    }

    return NGX_OK;
}
