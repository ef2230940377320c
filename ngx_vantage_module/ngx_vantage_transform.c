/* ngx_vantage_transform.c -- JSON bodies rewritten and masked at the edge */

/*
 * vantage_json_transform request|response <mapping> runs a mapping of
 * docs/MAPPING.md (common/vc_map.c, the engine the worker uses) over a JSON
 * body: a request's before proxy_pass or vantage_dispatch sees it, a
 * response's on its way to the client.  vantage_mask masks personal data
 * in responses unless the caller's token carries a scope.
 *
 * Bodies are held whole, in memory, up to vantage_transform_max_body: a
 * request body is read unbuffered (which never writes a temporary file)
 * and then put back as the request's body; a proxied response is switched
 * to unbuffered reading for the same reason, and the response header is
 * held back until the body has been read and rewritten.  A compressed
 * response is inflated, and Accept-Encoding is not passed upstream, so no
 * body goes through untransformed.  What cannot be transformed is an error
 * with a JSON body: 400, 413, 415 or 422 for a request, 502 for a response,
 * each with a log line.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <zlib.h>

#include "ngx_vantage_module.h"
#include "vc_map.h"
#include "vc_mask.h"


#define NGX_VANTAGE_HTTP_UNPROCESSABLE  422


/* why a response could not be rewritten */
#define NGX_VANTAGE_TF_OK            0
#define NGX_VANTAGE_TF_TOO_LARGE     1
#define NGX_VANTAGE_TF_ENCODING      2
#define NGX_VANTAGE_TF_IN_FILE       3
#define NGX_VANTAGE_TF_INFLATE       4
#define NGX_VANTAGE_TF_ERROR         5


struct ngx_vantage_transform_s {
    ngx_str_t                   file;      /* as written, for messages */
    vc_map_t                   *map;
};


struct ngx_vantage_mask_s {
    vc_map_t                   *map;       /* the pointers, as an edit map */
    unsigned                    kinds;     /* VC_MASK_*, over every string */
    ngx_str_t                   scope;     /* lifts the mask; empty: none */
    ngx_int_t                   scope_claim;
    ngx_int_t                   scp_claim;
};


typedef struct {
    /* the request body */
    unsigned                    request_done:1;

    /* the response body */
    u_char                     *buf;
    size_t                      len;
    size_t                      cap;
    z_stream                   *zs;
    ngx_uint_t                  failed;    /* NGX_VANTAGE_TF_* */
    ngx_vantage_mask_t         *mask;      /* applies to this response */
    unsigned                    transform:1;
    unsigned                    held:1;
    unsigned                    sent:1;
} ngx_vantage_tf_ctx_t;


static ngx_int_t ngx_vantage_tf_handler(ngx_http_request_t *r);
static ngx_int_t ngx_vantage_tf_read(ngx_http_request_t *r,
    ngx_vantage_body_t *body);
static void ngx_vantage_tf_refuse(ngx_http_request_t *r,
    ngx_vantage_body_t *body);
static ngx_int_t ngx_vantage_tf_request(ngx_http_request_t *r,
    ngx_vantage_body_t *body);
static ngx_int_t ngx_vantage_tf_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_vantage_tf_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_vantage_tf_append(ngx_http_request_t *r,
    ngx_vantage_tf_ctx_t *tctx, u_char *p, size_t size);
static ngx_int_t ngx_vantage_tf_inflate(ngx_http_request_t *r,
    ngx_vantage_tf_ctx_t *tctx, u_char *p, size_t size, ngx_uint_t last);
static ngx_int_t ngx_vantage_tf_respond(ngx_http_request_t *r,
    ngx_vantage_tf_ctx_t *tctx);
static ngx_int_t ngx_vantage_tf_send(ngx_http_request_t *r,
    ngx_vantage_tf_ctx_t *tctx, u_char *p, size_t len);
static ngx_int_t ngx_vantage_tf_fail(ngx_http_request_t *r,
    ngx_vantage_tf_ctx_t *tctx, const char *description);
static ngx_int_t ngx_vantage_tf_apply(ngx_http_request_t *r,
    const char *what, vc_map_t *map, ngx_vantage_mask_t *mask, u_char *p,
    size_t len, ngx_str_t *out, ngx_uint_t *status,
    const char **description);
static ngx_uint_t ngx_vantage_tf_is_json(ngx_str_t *type);
static ngx_uint_t ngx_vantage_tf_masked(ngx_http_request_t *r,
    ngx_vantage_mask_t *mask);
static ngx_uint_t ngx_vantage_tf_has_scope(ngx_str_t *value,
    ngx_str_t *scope);
static void ngx_vantage_tf_mask_strings(json_t *v, unsigned kinds);
static int ngx_vantage_tf_dump(const char *buffer, size_t size, void *data);
static void ngx_vantage_tf_map_cleanup(void *data);
static void ngx_vantage_tf_zs_cleanup(void *data);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/* vantage_mask's named patterns */
static struct {
    ngx_str_t                   name;
    unsigned                    kinds;
} ngx_vantage_tf_patterns[] = {
    { ngx_string("ssn"), VC_MASK_SSN },
    { ngx_string("account"), VC_MASK_ACCOUNT },
    { ngx_string("routing"), VC_MASK_ACCOUNT },
    { ngx_string("dob"), VC_MASK_DOB },
    { ngx_string("pii"), VC_MASK_ALL },
    { ngx_null_string, 0 }
};


static ngx_str_t  ngx_vantage_tf_scope = ngx_string("scope");
static ngx_str_t  ngx_vantage_tf_scp = ngx_string("scp");


ngx_int_t
ngx_vantage_transform_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_vantage_tf_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_vantage_tf_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_vantage_tf_body_filter;

    return NGX_OK;
}


/* vantage_json_transform request|response <mapping-file> */
char *
ngx_vantage_transform_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t  *vlcf = conf;

    char                       err[512];
    ngx_str_t                  *value, name;
    ngx_pool_cleanup_t         *cln;
    ngx_vantage_transform_t    *tf, **slot;

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "request") == 0) {
        slot = &vlcf->json_request;

    } else if (ngx_strcmp(value[1].data, "response") == 0) {
        slot = &vlcf->json_response;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_json_transform\": \"%V\" is neither "
                           "\"request\" nor \"response\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (*slot != NGX_CONF_UNSET_PTR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_json_transform\": a %V transform is "
                           "already set here", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_strcmp(value[2].data, "off") == 0) {
        *slot = NULL;
        return NGX_CONF_OK;
    }

    name = value[2];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    tf = ngx_pcalloc(cf->pool, sizeof(ngx_vantage_transform_t));
    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (tf == NULL || cln == NULL) {
        return NGX_CONF_ERROR;
    }

    tf->file = value[2];
    tf->map = vc_map_load_file((char *) name.data, err, sizeof(err));

    if (tf->map == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_json_transform\": %s", err);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_vantage_tf_map_cleanup;
    cln->data = tf->map;

    *slot = tf;

    return NGX_CONF_OK;
}


/*
 * vantage_mask off | <target> ... [scope=<scope>]: a target is a JSON
 * pointer (with "*" for every element), optionally "=<mask>" (full,
 * last4, email_domain, pii; full by default), or a pattern masked in
 * every string: ssn, account, routing, dob, pii.
 */
char *
ngx_vantage_mask_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t  *vlcf = conf;

    char                      err[512], *text;
    u_char                   *eq;
    json_t                   *doc, *fields, *field;
    ngx_str_t                *value, ptr, how;
    ngx_uint_t                i, j;
    ngx_pool_cleanup_t       *cln;
    ngx_vantage_mask_t       *mask;
    ngx_vantage_main_conf_t  *vmcf;

    if (vlcf->mask != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        vlcf->mask = NULL;
        return NGX_CONF_OK;
    }

    mask = ngx_pcalloc(cf->pool, sizeof(ngx_vantage_mask_t));
    if (mask == NULL) {
        return NGX_CONF_ERROR;
    }

    mask->scope_claim = NGX_CONF_UNSET;
    mask->scp_claim = NGX_CONF_UNSET;

    fields = json_array();
    if (fields == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "scope=", 6) == 0) {
            mask->scope.data = value[i].data + 6;
            mask->scope.len = value[i].len - 6;

            for (j = 0; j < mask->scope.len; j++) {
                if (mask->scope.data[j] <= ' ' || mask->scope.data[j] == '"'
                    || mask->scope.data[j] == '\\'
                    || mask->scope.data[j] >= 0x7f)
                {
                    break;
                }
            }

            if (mask->scope.len == 0 || j != mask->scope.len) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"vantage_mask\": \"%V\" is not a scope "
                                   "(RFC 6749 scope tokens are printable, "
                                   "with no space, quote or backslash)",
                                   &value[i]);
                json_decref(fields);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (value[i].data[0] != '/') {

            for (j = 0; ngx_vantage_tf_patterns[j].name.len; j++) {
                if (value[i].len == ngx_vantage_tf_patterns[j].name.len
                    && ngx_strcmp(value[i].data,
                                  ngx_vantage_tf_patterns[j].name.data)
                       == 0)
                {
                    mask->kinds |= ngx_vantage_tf_patterns[j].kinds;
                    break;
                }
            }

            if (ngx_vantage_tf_patterns[j].name.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"vantage_mask\": \"%V\" is neither a "
                                   "JSON pointer (\"/...\") nor one of ssn, "
                                   "account, routing, dob, pii", &value[i]);
                json_decref(fields);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ptr = value[i];
        ngx_str_set(&how, "full");

        /* the last '=' starts the mask: a member name may hold one */
        for (eq = ptr.data + ptr.len; eq > ptr.data; eq--) {
            if (eq[-1] == '=') {
                break;
            }
        }

        eq = (eq > ptr.data) ? eq - 1 : NULL;

        if (eq != NULL) {
            how.data = eq + 1;
            how.len = ptr.data + ptr.len - how.data;
            ptr.len = eq - ptr.data;
        }

        field = json_pack("{s:s%,s:s%,s:s%}",
                          "to", ptr.data, ptr.len,
                          "from", ptr.data, ptr.len,
                          "mask", how.data, how.len);

        if (field == NULL || json_array_append_new(fields, field) != 0) {
            json_decref(fields);
            return NGX_CONF_ERROR;
        }
    }

    if (json_array_size(fields) == 0 && mask->kinds == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_mask\" names nothing to mask");
        json_decref(fields);
        return NGX_CONF_ERROR;
    }

    if (json_array_size(fields)) {
        doc = json_pack("{s:s,s:s,s:s,s:s,s:o}", "name", "vantage_mask",
                        "from", "response", "to", "response", "mode", "edit",
                        "fields", fields);
        if (doc == NULL) {
            return NGX_CONF_ERROR;
        }

        text = json_dumps(doc, JSON_COMPACT);
        json_decref(doc);

        if (text == NULL) {
            return NGX_CONF_ERROR;
        }

        mask->map = vc_map_load("vantage_mask", text, ngx_strlen(text), err,
                                sizeof(err));
        free(text);

        if (mask->map == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\": %s",
                               &cmd->name, err);
            return NGX_CONF_ERROR;
        }

        cln = ngx_pool_cleanup_add(cf->pool, 0);
        if (cln == NULL) {
            vc_map_free(mask->map);
            return NGX_CONF_ERROR;
        }

        cln->handler = ngx_vantage_tf_map_cleanup;
        cln->data = mask->map;

    } else {
        json_decref(fields);
    }

    if (mask->scope.len) {
        vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_vantage_module);

        mask->scope_claim = ngx_vantage_claim_add(cf, vmcf,
                                                  &ngx_vantage_tf_scope,
                                                  NGX_VANTAGE_CLAIM);
        mask->scp_claim = ngx_vantage_claim_add(cf, vmcf,
                                                &ngx_vantage_tf_scp,
                                                NGX_VANTAGE_CLAIM);

        if (mask->scope_claim == NGX_ERROR || mask->scp_claim == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }
    }

    vlcf->mask = mask;

    return NGX_CONF_OK;
}


char *
ngx_vantage_transform_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf)
{
    ngx_conf_merge_ptr_value(conf->json_request, prev->json_request, NULL);
    ngx_conf_merge_ptr_value(conf->json_response, prev->json_response, NULL);
    ngx_conf_merge_ptr_value(conf->mask, prev->mask, NULL);
    ngx_conf_merge_size_value(conf->transform_max_body,
                              prev->transform_max_body, 1024 * 1024);

    if (conf->transform_max_body == 0
        || conf->transform_max_body > 64 * 1024 * 1024)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_transform_max_body\" must be between "
                           "1 byte and 64m: bodies are held in memory");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * The PRECONTENT handler: takes the request body whole, rewrites it, and
 * puts it back for the content handler.  Also, where a response is to be
 * rewritten, asks the upstream for an uncompressed one.
 */
static ngx_int_t
ngx_vantage_tf_handler(ngx_http_request_t *r)
{
    ngx_int_t                rc;
    ngx_str_t                type;
    ngx_vantage_ctx_t       *ctx;
    ngx_vantage_tf_ctx_t    *tctx;
    ngx_vantage_loc_conf_t  *vlcf;

    static ngx_str_t  accept_encoding = ngx_string("accept-encoding");

    if (r != r->main) {
        return NGX_DECLINED;
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);

    if (vlcf->json_response != NULL || vlcf->mask != NULL) {
        /* a body we cannot decode would be a 502: ask for identity */
        if (r->headers_in.accept_encoding != NULL) {
            if (ngx_vantage_headers_in_remove(r, &accept_encoding) != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            r->headers_in.accept_encoding = NULL;
        }
    }

    if (vlcf->json_request == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_vantage_get_ctx(r);

    if (ctx == NULL) {
        ctx = ngx_vantage_create_ctx(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    tctx = ctx->transform;

    if (tctx == NULL) {
        tctx = ngx_pcalloc(r->pool, sizeof(ngx_vantage_tf_ctx_t));
        if (tctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->transform = tctx;
    }

    if (tctx->request_done) {
        return NGX_DECLINED;
    }

    tctx->request_done = 1;

    if (r->headers_in.content_length_n <= 0 && !r->headers_in.chunked) {
        /* no body: nothing to transform */
        return NGX_DECLINED;
    }

    if (r->headers_in.content_type == NULL) {
        ngx_str_null(&type);

    } else {
        type = r->headers_in.content_type->value;
    }

    if (!ngx_vantage_tf_is_json(&type)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "vantage transform: request body is \"%V\", not JSON",
                      &type);

        return ngx_vantage_send_json(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                     "unsupported_media_type",
                                     "this endpoint takes a JSON body "
                                     "(Content-Type: application/json)");
    }

    if (r->headers_in.content_length_n > (off_t) vlcf->transform_max_body) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "vantage transform: request body of %O bytes is over "
                      "vantage_transform_max_body %uz",
                      r->headers_in.content_length_n,
                      vlcf->transform_max_body);

        return ngx_vantage_send_json(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                     "payload_too_large",
                                     "the body is larger than this endpoint "
                                     "accepts");
    }

    /* the body stays in memory: unbuffered reading never writes a file */
    rc = ngx_vantage_body_read(r, vlcf->transform_max_body,
                               ngx_vantage_tf_read, ngx_vantage_tf_refuse);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


/* the whole body is in: rewritten, then the phases go on */
static ngx_int_t
ngx_vantage_tf_read(ngx_http_request_t *r, ngx_vantage_body_t *body)
{
    ngx_int_t  rc;

    rc = ngx_vantage_tf_request(r, body);

    if (rc == NGX_OK) {
        r->write_event_handler = ngx_http_core_run_phases;
        ngx_http_core_run_phases(r);
        return NGX_DONE;
    }

    return rc;
}


/* a chunked body that has grown over vantage_transform_max_body */
static void
ngx_vantage_tf_refuse(ngx_http_request_t *r, ngx_vantage_body_t *body)
{
    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "vantage transform: request body is over "
                  "vantage_transform_max_body %uz", body->max);

    (void) ngx_vantage_send_json(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                 "payload_too_large",
                                 "the body is larger than this "
                                 "endpoint accepts");
}


/*
 * Rewrites the whole request body and installs it as the request's, in
 * memory with its new length, for proxy_pass or vantage_dispatch, which
 * find the body read.  Returns NGX_OK, NGX_DONE having answered, or an
 * error status.
 */
static ngx_int_t
ngx_vantage_tf_request(ngx_http_request_t *r, ngx_vantage_body_t *body)
{
    u_char                  *p;
    ngx_buf_t               *b;
    ngx_str_t                out;
    ngx_int_t                rc;
    ngx_uint_t               status;
    const char              *description;
    ngx_chain_t             *cl;
    ngx_table_elt_t         *h;
    ngx_vantage_loc_conf_t  *vlcf;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);

    p = ngx_pnalloc(r->pool, body->size + 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    out.data = p;

    for (cl = body->bufs; cl; cl = cl->next) {
        p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
    }

    rc = ngx_vantage_tf_apply(r, "request", vlcf->json_request->map, NULL,
                              out.data, p - out.data, &out, &status,
                              &description);

    if (rc != NGX_OK) {
        if (status == 0) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* a client's mistake: 400 invalid JSON, 422 a refused record */
        (void) ngx_vantage_send_json(r, status,
                                     status == NGX_HTTP_BAD_REQUEST
                                     ? "invalid_json" : "transform_failed",
                                     description);
        return NGX_DONE;
    }

    b = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);
    if (b == NULL || cl == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->start = out.data;
    b->pos = out.data;
    b->last = out.data + out.len;
    b->end = b->last;
    b->temporary = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    cl->buf = b;
    cl->next = NULL;

    if (r->request_body == NULL) {
        r->request_body = ngx_pcalloc(r->pool, sizeof(ngx_http_request_body_t));
        if (r->request_body == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    r->request_body->bufs = cl;
    r->request_body->rest = 0;
    r->request_body_no_buffering = 0;

    r->headers_in.content_length_n = out.len;
    r->headers_in.chunked = 0;

    h = r->headers_in.content_length;

    if (h != NULL) {
        p = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->value.data = p;
        h->value.len = ngx_sprintf(p, "%uz", out.len) - p;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "vantage transform: request body %uz -> %uz bytes",
                   body->size, out.len);

    return NGX_OK;
}


/*
 * Decides whether this response is rewritten or masked and, if so, holds
 * its header back until the body has been rewritten.
 */
static ngx_int_t
ngx_vantage_tf_header_filter(ngx_http_request_t *r)
{
    ngx_str_t                enc;
    ngx_uint_t               status;
    ngx_pool_cleanup_t      *cln;
    ngx_vantage_ctx_t       *ctx;
    ngx_vantage_mask_t      *mask;
    ngx_vantage_tf_ctx_t    *tctx;
    ngx_vantage_loc_conf_t  *vlcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);

    if (vlcf->json_response == NULL && vlcf->mask == NULL) {
        return ngx_http_next_header_filter(r);
    }

    status = r->headers_out.status;

    if (status == NGX_HTTP_NO_CONTENT || status == NGX_HTTP_NOT_MODIFIED
        || status == NGX_HTTP_PARTIAL_CONTENT || status < NGX_HTTP_OK
        || !ngx_vantage_tf_is_json(&r->headers_out.content_type))
    {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_vantage_get_ctx(r);

    if (ctx == NULL) {
        ctx = ngx_vantage_create_ctx(r);
        if (ctx == NULL) {
            return NGX_ERROR;
        }
    }

    tctx = ctx->transform;

    if (tctx == NULL) {
        tctx = ngx_pcalloc(r->pool, sizeof(ngx_vantage_tf_ctx_t));
        if (tctx == NULL) {
            return NGX_ERROR;
        }

        ctx->transform = tctx;
    }

    if (tctx->held || tctx->sent) {
        /* an error page after a failed transform: pass it */
        return ngx_http_next_header_filter(r);
    }

    /* the mapping is for successes; masking, for whatever the body holds */
    tctx->transform = (vlcf->json_response != NULL && status < 300);

    mask = vlcf->mask;

    if (mask != NULL && !ngx_vantage_tf_masked(r, mask)) {
        mask = NULL;
    }

    tctx->mask = mask;

    if (!tctx->transform && tctx->mask == NULL) {
        return ngx_http_next_header_filter(r);
    }

    if (r->header_only || r->method == NGX_HTTP_HEAD) {
        /* HEAD: the rewritten length is not known */
        ngx_http_clear_content_length(r);
        ngx_http_clear_etag(r);
        return ngx_http_next_header_filter(r);
    }

    tctx->held = 1;

    if (r->upstream) {
        /* keep the body in memory: an unbuffered upstream writes no file */
        r->upstream->buffering = 0;
    }

    if (r->headers_out.content_encoding
        && r->headers_out.content_encoding->value.len)
    {
        enc = r->headers_out.content_encoding->value;

        if ((enc.len == 4 && ngx_strncasecmp(enc.data, (u_char *) "gzip", 4)
                             == 0)
            || (enc.len == 6
                && ngx_strncasecmp(enc.data, (u_char *) "x-gzip", 6) == 0)
            || (enc.len == 7
                && ngx_strncasecmp(enc.data, (u_char *) "deflate", 7) == 0))
        {
            tctx->zs = ngx_pcalloc(r->pool, sizeof(z_stream));
            if (tctx->zs == NULL) {
                return NGX_ERROR;
            }

            /* 32: a zlib or a gzip header, whichever it is */
            if (inflateInit2(tctx->zs, 32 + MAX_WBITS) != Z_OK) {
                return NGX_ERROR;
            }

            cln = ngx_pool_cleanup_add(r->pool, 0);
            if (cln == NULL) {
                inflateEnd(tctx->zs);
                return NGX_ERROR;
            }

            cln->handler = ngx_vantage_tf_zs_cleanup;
            cln->data = tctx->zs;

        } else if (!(enc.len == 8
                     && ngx_strncasecmp(enc.data, (u_char *) "identity", 8)
                        == 0))
        {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "vantage transform: upstream response has "
                          "Content-Encoding \"%V\", which cannot be "
                          "decoded here", &enc);
            tctx->failed = NGX_VANTAGE_TF_ENCODING;
        }

    } else if (r->headers_out.content_length_n
               > (off_t) vlcf->transform_max_body)
    {
        tctx->failed = NGX_VANTAGE_TF_TOO_LARGE;
    }

    if (!tctx->failed && r->headers_out.content_length_n > 0
        && tctx->zs == NULL)
    {
        tctx->cap = r->headers_out.content_length_n + 1;
        tctx->buf = ngx_pnalloc(r->pool, tctx->cap);
        if (tctx->buf == NULL) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_vantage_tf_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    size_t                  size;
    ngx_buf_t              *b;
    ngx_uint_t              last;
    ngx_chain_t            *cl;
    ngx_vantage_ctx_t      *ctx;
    ngx_vantage_tf_ctx_t   *tctx;

    if (r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_vantage_get_ctx(r);

    if (ctx == NULL || ctx->transform == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    tctx = ctx->transform;

    if (!tctx->held || tctx->sent) {
        return ngx_http_next_body_filter(r, in);
    }

    last = 0;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (b->last_buf) {
            last = 1;
        }

        if (b->in_file && !ngx_buf_in_memory(b)) {
            if (!tctx->failed) {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "vantage transform: the response body comes "
                              "from a file, which is not read here");
                tctx->failed = NGX_VANTAGE_TF_IN_FILE;
            }

            b->file_pos = b->file_last;
            continue;
        }

        size = b->last - b->pos;

        if (!tctx->failed && (size || (last && tctx->zs))) {
            if (tctx->zs) {
                if (ngx_vantage_tf_inflate(r, tctx, b->pos, size, last)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

            } else if (ngx_vantage_tf_append(r, tctx, b->pos, size)
                       != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        b->pos = b->last;

        if (b->in_file) {
            b->file_pos = b->file_last;
        }
    }

    if (!last) {
        return NGX_OK;
    }

    return ngx_vantage_tf_respond(r, tctx);
}


/* appends decoded bytes, refusing more than vantage_transform_max_body */
static ngx_int_t
ngx_vantage_tf_append(ngx_http_request_t *r, ngx_vantage_tf_ctx_t *tctx,
    u_char *p, size_t size)
{
    u_char                  *nbuf;
    size_t                   ncap;
    ngx_vantage_loc_conf_t  *vlcf;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);

    if (tctx->len + size > vlcf->transform_max_body) {
        tctx->failed = NGX_VANTAGE_TF_TOO_LARGE;
        return NGX_OK;
    }

    if (tctx->len + size + 1 > tctx->cap) {
        ncap = ngx_max(tctx->cap * 2, tctx->len + size + 1);
        ncap = ngx_max(ncap, 4096);
        ncap = ngx_min(ncap, vlcf->transform_max_body + 1);

        nbuf = ngx_pnalloc(r->pool, ncap);
        if (nbuf == NULL) {
            return NGX_ERROR;
        }

        if (tctx->len) {
            ngx_memcpy(nbuf, tctx->buf, tctx->len);
        }

        if (tctx->buf) {
            (void) ngx_pfree(r->pool, tctx->buf);
        }

        tctx->buf = nbuf;
        tctx->cap = ncap;
    }

    ngx_memcpy(tctx->buf + tctx->len, p, size);
    tctx->len += size;

    return NGX_OK;
}


/* inflates a gzip or deflate body into the buffer */
static ngx_int_t
ngx_vantage_tf_inflate(ngx_http_request_t *r, ngx_vantage_tf_ctx_t *tctx,
    u_char *p, size_t size, ngx_uint_t last)
{
    int         zrc;
    u_char      out[16384];
    z_stream   *zs;

    zs = tctx->zs;
    zs->next_in = p;
    zs->avail_in = size;

    for ( ;; ) {
        zs->next_out = out;
        zs->avail_out = sizeof(out);

        zrc = inflate(zs, Z_NO_FLUSH);

        if (zrc != Z_OK && zrc != Z_STREAM_END && zrc != Z_BUF_ERROR) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "vantage transform: the upstream's compressed "
                          "response is corrupt (zlib: %s)",
                          zs->msg ? zs->msg : "error");
            tctx->failed = NGX_VANTAGE_TF_INFLATE;
            return NGX_OK;
        }

        if (ngx_vantage_tf_append(r, tctx, out, sizeof(out) - zs->avail_out)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (tctx->failed) {
            return NGX_OK;
        }

        if (zrc == Z_STREAM_END) {
            if (zs->avail_in) {
                /* bytes after the end of the stream */
                tctx->failed = NGX_VANTAGE_TF_INFLATE;
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "vantage transform: data after the end of the "
                              "upstream's compressed response");
            }

            return NGX_OK;
        }

        if (zs->avail_in == 0 && zs->avail_out != 0) {
            break;
        }
    }

    if (last) {
        tctx->failed = NGX_VANTAGE_TF_INFLATE;
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vantage transform: the upstream's compressed response "
                      "ends early");
    }

    return NGX_OK;
}


/* the whole body is in: rewrites it and sends header and body on */
static ngx_int_t
ngx_vantage_tf_respond(ngx_http_request_t *r, ngx_vantage_tf_ctx_t *tctx)
{
    vc_map_t                *map;
    ngx_str_t                out;
    ngx_uint_t               status;
    const char              *description;
    ngx_vantage_loc_conf_t  *vlcf;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);

    switch (tctx->failed) {

    case NGX_VANTAGE_TF_OK:
        break;

    case NGX_VANTAGE_TF_TOO_LARGE:
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vantage transform: upstream response body is over "
                      "vantage_transform_max_body %uz, answered 502",
                      vlcf->transform_max_body);
        return ngx_vantage_tf_fail(r, tctx, "the upstream's response is "
                                   "larger than this endpoint transforms");

    case NGX_VANTAGE_TF_ENCODING:
    case NGX_VANTAGE_TF_INFLATE:
        return ngx_vantage_tf_fail(r, tctx, "the upstream's response is "
                                   "compressed in a way that could not be "
                                   "decoded");

    default:
        return ngx_vantage_tf_fail(r, tctx, "the upstream's response could "
                                   "not be read");
    }

    if (tctx->len == 0) {
        /* an empty body (a 201 with none): nothing to rewrite or mask */
        return ngx_vantage_tf_send(r, tctx, NULL, 0);
    }

    map = tctx->transform ? vlcf->json_response->map : NULL;

    if (ngx_vantage_tf_apply(r, "response", map, tctx->mask, tctx->buf,
                             tctx->len, &out, &status, &description)
        != NGX_OK)
    {
        if (status == 0) {
            return NGX_ERROR;
        }

        return ngx_vantage_tf_fail(r, tctx,
                                   status == NGX_HTTP_BAD_REQUEST
                                   ? "the upstream's response is not valid "
                                     "JSON"
                                   : "the upstream's response could not be "
                                     "transformed");
    }

    if (tctx->zs && r->headers_out.content_encoding) {
        r->headers_out.content_encoding->hash = 0;
        r->headers_out.content_encoding = NULL;
    }

    return ngx_vantage_tf_send(r, tctx, out.data, out.len);
}


static ngx_int_t
ngx_vantage_tf_send(ngx_http_request_t *r, ngx_vantage_tf_ctx_t *tctx,
    u_char *p, size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    tctx->sent = 1;

    r->headers_out.content_length_n = len;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_etag(r);

    rc = ngx_http_next_header_filter(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    if (len) {
        b->pos = p;
        b->last = p + len;
        b->memory = 1;
    }

    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


/* replaces the held response by a 502 with a JSON body */
static ngx_int_t
ngx_vantage_tf_fail(ngx_http_request_t *r, ngx_vantage_tf_ctx_t *tctx,
    const char *description)
{
    ngx_str_t  body;

    if (ngx_vantage_json_error(r->pool, "bad_gateway", description, &body)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->headers_out.status = NGX_HTTP_BAD_GATEWAY;
    r->headers_out.status_line.len = 0;
    r->headers_out.last_modified_time = -1;

    if (r->headers_out.last_modified) {
        r->headers_out.last_modified->hash = 0;
        r->headers_out.last_modified = NULL;
    }

    if (r->headers_out.content_encoding) {
        r->headers_out.content_encoding->hash = 0;
        r->headers_out.content_encoding = NULL;
    }

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    r->keepalive = 0;

    return ngx_vantage_tf_send(r, tctx, body.data, body.len);
}


/*
 * Parses a body, applies the map (or none), masks, and serializes into
 * the request's pool.  On failure *status is 400 for a body that is not
 * JSON, 422 for one the map refused (both logged), or 0 for an internal
 * error; *description is for the client.
 */
static ngx_int_t
ngx_vantage_tf_apply(ngx_http_request_t *r, const char *what,
    vc_map_t *map, ngx_vantage_mask_t *mask, u_char *p, size_t len,
    ngx_str_t *out, ngx_uint_t *status, const char **description)
{
    char          err[512];
    u_char       *d;
    json_t       *doc, *res, *masked;
    ngx_str_t     dump[2];
    json_error_t  jerr;

    *status = 0;
    *description = "";

    doc = json_loadb((char *) p, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
                     &jerr);

    if (doc == NULL) {
        /* jansson's text may quote the body: only where it went wrong */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "vantage transform: %s body is not JSON at line %d, "
                      "column %d", what, jerr.line, jerr.column);

        *status = NGX_HTTP_BAD_REQUEST;
        *description = "the body is not valid JSON";
        return NGX_ERROR;
    }

    res = doc;

    if (map != NULL) {
        if (vc_map_apply_doc(map, doc, &res, err, sizeof(err)) != VC_OK) {
            json_decref(doc);

            /* vc_map quotes values masked, and never a masked field's */
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "vantage transform: %s body refused by the "
                          "mapping: %s", what, err);

            *status = NGX_VANTAGE_HTTP_UNPROCESSABLE;
            *description = "the body does not fit this endpoint's mapping";
            return NGX_ERROR;
        }

        json_decref(doc);
    }

    if (mask != NULL) {
        if (mask->map != NULL) {
            if (vc_map_apply_doc(mask->map, res, &masked, err, sizeof(err))
                != VC_OK)
            {
                json_decref(res);

                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "vantage transform: masking failed: %s", err);
                *status = NGX_VANTAGE_HTTP_UNPROCESSABLE;
                *description = "the body could not be masked";
                return NGX_ERROR;
            }

            json_decref(res);
            res = masked;
        }

        if (mask->kinds) {
            ngx_vantage_tf_mask_strings(res, mask->kinds);
        }
    }

    d = ngx_pnalloc(r->pool, len + 256);
    if (d == NULL) {
        json_decref(res);
        return NGX_ERROR;
    }

    /* dump[0]: the buffer so far, dump[1]: its capacity (len) */
    dump[0].data = d;
    dump[0].len = 0;
    dump[1].data = (u_char *) r->pool;
    dump[1].len = len + 256;

    /*
     * 15 significant digits (DBL_DIG): a number written with at most 15
     * comes out as it went in; jansson's default 17 writes 1234.56 as
     * 1234.5599999999999
     */
    if (json_dump_callback(res, ngx_vantage_tf_dump, dump,
                           JSON_COMPACT | JSON_ENCODE_ANY
                           | JSON_REAL_PRECISION(15))
        != 0)
    {
        json_decref(res);
        return NGX_ERROR;
    }

    json_decref(res);

    *out = dump[0];

    return NGX_OK;
}


/* json_dump_callback's writer: grows the pool buffer by doubling */
static int
ngx_vantage_tf_dump(const char *buffer, size_t size, void *data)
{
    ngx_str_t  *dump = data;

    u_char      *p;
    size_t       cap;
    ngx_pool_t  *pool;

    pool = (ngx_pool_t *) dump[1].data;

    if (dump[0].len + size > dump[1].len) {
        cap = ngx_max(dump[1].len * 2, dump[0].len + size);

        p = ngx_pnalloc(pool, cap);
        if (p == NULL) {
            return -1;
        }

        ngx_memcpy(p, dump[0].data, dump[0].len);
        (void) ngx_pfree(pool, dump[0].data);

        dump[0].data = p;
        dump[1].len = cap;
    }

    ngx_memcpy(dump[0].data + dump[0].len, buffer, size);
    dump[0].len += size;

    return 0;
}


/* "application/json", "application/problem+json; charset=utf-8", ... */
static ngx_uint_t
ngx_vantage_tf_is_json(ngx_str_t *type)
{
    u_char  *p, *end;
    size_t   len;

    if (type->len == 0) {
        return 0;
    }

    p = type->data;
    end = ngx_strlchr(p, p + type->len, ';');

    if (end == NULL) {
        end = p + type->len;
    }

    while (end > p && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }

    len = end - p;

    if (len == sizeof("application/json") - 1
        && ngx_strncasecmp(p, (u_char *) "application/json", len) == 0)
    {
        return 1;
    }

    if (len > sizeof("+json") - 1
        && ngx_strncasecmp(end - 5, (u_char *) "+json", 5) == 0
        && ngx_strlchr(p, end, '/') != NULL)
    {
        return 1;
    }

    return 0;
}


/*
 * Whether the mask applies to this caller: always, unless it names a scope
 * and the caller's verified token ("scope" or "scp"), introspection answer
 * or API key carries it.
 */
static ngx_uint_t
ngx_vantage_tf_masked(ngx_http_request_t *r, ngx_vantage_mask_t *mask)
{
    ngx_vantage_ctx_t  *ctx;

    if (mask->scope.len == 0) {
        return 1;
    }

    ctx = ngx_vantage_get_ctx(r);

    if (ctx == NULL) {
        return 1;
    }

    if (ctx->jwt.verified && ctx->jwt.values != NULL) {
        if (ngx_vantage_tf_has_scope(&ctx->jwt.values[mask->scope_claim],
                                     &mask->scope)
            || ngx_vantage_tf_has_scope(&ctx->jwt.values[mask->scp_claim],
                                        &mask->scope))
        {
            return 0;
        }
    }

    if (ctx->apikey.verified
        && ngx_vantage_tf_has_scope(&ctx->apikey.scopes, &mask->scope))
    {
        return 0;
    }

    return 1;
}


/*
 * A claim's text holds the scope: space-separated words ("scope"), or a
 * JSON array of strings ("scp"), compared exactly.
 */
static ngx_uint_t
ngx_vantage_tf_has_scope(ngx_str_t *value, ngx_str_t *scope)
{
    u_char  *p, *end, *w;

    if (value->data == NULL || value->len == 0) {
        return 0;
    }

    p = value->data;
    end = p + value->len;

    if (*p == '[') {
        /* compact JSON from vc_jwt: ["a","b"]; scopes hold no quotes */
        for (p++; p < end; p++) {
            if (*p != '"') {
                continue;
            }

            w = ++p;

            while (p < end && *p != '"') {
                if (*p == '\\') {
                    p++;
                }

                p++;
            }

            if ((size_t) (p - w) == scope->len
                && ngx_strncmp(w, scope->data, scope->len) == 0)
            {
                return 1;
            }
        }

        return 0;
    }

    while (p < end) {
        while (p < end && *p == ' ') {
            p++;
        }

        w = p;

        while (p < end && *p != ' ') {
            p++;
        }

        if ((size_t) (p - w) == scope->len
            && ngx_strncmp(w, scope->data, scope->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/*
 * Masks the patterns in every string of the document, and the values of
 * members named as dates of birth, whatever they hold.
 */
static void
ngx_vantage_tf_mask_strings(json_t *v, unsigned kinds)
{
    char         *s;
    size_t        i, len;
    json_t       *m;
    const char   *key;

    switch (json_typeof(v)) {

    case JSON_OBJECT:
        json_object_foreach(v, key, m) {
            if ((kinds & VC_MASK_DOB)
                && vc_mask_dob_name((u_char *) key, ngx_strlen(key))
                && (json_is_string(m) || json_is_number(m)))
            {
                /* the whole value: a date has no safe part to show */
                (void) json_object_set_new(v, key, json_string("**********"));
                continue;
            }

            ngx_vantage_tf_mask_strings(m, kinds);
        }

        break;

    case JSON_ARRAY:
        for (i = 0; i < json_array_size(v); i++) {
            ngx_vantage_tf_mask_strings(json_array_get(v, i), kinds);
        }

        break;

    case JSON_STRING:
        len = json_string_length(v);

        if (len < 9) {
            /* too short for an SSN or an account number */
            break;
        }

        s = malloc(len);
        if (s == NULL) {
            break;
        }

        ngx_memcpy(s, json_string_value(v), len);

        if (vc_mask_kinds((unsigned char *) s, len, kinds & ~VC_MASK_DOB)) {
            (void) json_string_setn_nocheck(v, s, len);
        }

        free(s);
        break;

    default:
        break;
    }
}


static void
ngx_vantage_tf_map_cleanup(void *data)
{
    vc_map_free(data);
}


static void
ngx_vantage_tf_zs_cleanup(void *data)
{
    inflateEnd(data);
}
