/* ngx_vantage_jwt.c -- access-phase JWT validation, claim variables, headers */

#include <openssl/evp.h>

#include "ngx_vantage_module.h"


#define NGX_VANTAGE_JWT_CLAIM_PREFIX   "vantage_jwt_claim_"
#define NGX_VANTAGE_JWT_HEADER_PREFIX  "vantage_jwt_header_"
#define NGX_VANTAGE_JWT_ABSENT         0xffffffff


static ngx_int_t ngx_vantage_jwt_token(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, ngx_str_t *token);
static ngx_int_t ngx_vantage_jwt_verify(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, ngx_vantage_ctx_t *ctx,
    ngx_str_t *token, u_char *key);
static ngx_int_t ngx_vantage_jwt_cached(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, ngx_vantage_jwt_ctx_t *jctx,
    ngx_str_t *blob);
static ngx_int_t ngx_vantage_jwt_refuse(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, ngx_uint_t status,
    vc_auth_outcome_e outcome, const char *error, const char *reason);
static ngx_int_t ngx_vantage_jwt_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_vantage_jwt_prefix_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_vantage_jwt_claims_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_vantage_jwt_claims_digest(ngx_vantage_main_conf_t *vmcf);


static ngx_http_variable_t  ngx_vantage_jwt_vars[] = {

    { ngx_string(NGX_VANTAGE_JWT_CLAIM_PREFIX), NULL,
      ngx_vantage_jwt_prefix_variable, NGX_VANTAGE_CLAIM,
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_PREFIX, 0 },

    { ngx_string(NGX_VANTAGE_JWT_HEADER_PREFIX), NULL,
      ngx_vantage_jwt_prefix_variable, NGX_VANTAGE_CLAIM_HEADER,
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_PREFIX, 0 },

    { ngx_string("vantage_jwt_claims"), NULL,
      ngx_vantage_jwt_claims_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


/*
 * Headers that nginx itself interprets and points at from r->headers_in:
 * removing a client's copy of one of them would leave such a pointer behind.
 */
static char  *ngx_vantage_jwt_reserved_headers[] = {
    "host", "connection", "content-length", "content-type",
    "content-range", "transfer-encoding", "te", "expect", "upgrade",
    "keep-alive", "authorization", "cookie", "user-agent", "referer",
    "range", "if-range", "if-modified-since", "if-unmodified-since",
    "if-match", "if-none-match", "accept-encoding", "accept",
    "accept-language", "via", "x-forwarded-for", "x-real-ip", "depth",
    "destination", "overwrite", "date", "proxy-connection",
    NULL
};


ngx_int_t
ngx_vantage_jwt_handler(ngx_http_request_t *r)
{
    u_char                    key[32];
    ngx_int_t                 rc;
    ngx_str_t                 token, blob;
    ngx_vantage_ctx_t        *ctx;
    ngx_vantage_loc_conf_t   *vlcf;
    ngx_vantage_main_conf_t  *vmcf;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);

    if (!vlcf->jwt && !vlcf->api_key && !vlcf->introspect_on) {
        return NGX_DECLINED;
    }

    ctx = ngx_vantage_get_ctx(r);

    if (ctx != NULL) {

        if (ctx->auth.state == NGX_VANTAGE_AUTH_WAITING) {
            /* for a key set or an introspection: woken by its answer */
            return NGX_AGAIN;
        }

        if ((ctx->jwt.verified
             && (ctx->jwt.introspected ? vlcf->introspect_on : vlcf->jwt))
            || (vlcf->api_key && ctx->apikey.verified))
        {
            /*
             * an internal redirect of a request that was authenticated
             * already by a scheme this location accepts: once per main
             * request, but this location's headers still apply
             */

            if (ngx_vantage_jwt_set_headers(r, vlcf, &ctx->jwt) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            return NGX_OK;
        }

    } else {
        ctx = ngx_vantage_create_ctx(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    /*
     * A request that carries an API key is decided by that key.  One that
     * waited for a key set or an introspection had none.
     */

    if (vlcf->api_key && ctx->auth.state == NGX_VANTAGE_AUTH_IDLE) {
        rc = ngx_vantage_apikey_authenticate(r, vlcf, &ctx->apikey);

        if (rc == NGX_OK) {
            /* a client's copies of the claim headers are still removed */

            if (ngx_vantage_jwt_set_headers(r, vlcf, &ctx->jwt) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            return NGX_OK;
        }

        if (rc != NGX_DECLINED) {
            return rc;
        }

        if (!vlcf->jwt && !vlcf->introspect_on) {
            return ngx_vantage_auth_refuse(r, vlcf, NGX_VANTAGE_AUTH_API_KEY,
                                           NGX_HTTP_UNAUTHORIZED,
                                           VC_AUTH_MISSING, NULL, NULL,
                                           NULL);
        }
    }

    rc = ngx_vantage_jwt_token(r, vlcf, &token);
    if (rc != NGX_OK) {
        return rc;
    }

    if (token.len == 0) {
        return ngx_vantage_jwt_refuse(r, vlcf, NGX_HTTP_UNAUTHORIZED,
                                      VC_AUTH_MISSING, NULL, NULL);
    }

    if (token.len > vlcf->max_size) {
        return ngx_vantage_jwt_refuse(r, vlcf, NGX_HTTP_UNAUTHORIZED,
                                      VC_AUTH_MALFORMED, "invalid_token",
                                      "token too large");
    }

    vmcf = ngx_http_get_module_main_conf(r, ngx_vantage_module);

    if (ctx->jwt.values == NULL) {
        ctx->jwt.values = ngx_pcalloc(r->pool,
                                      vmcf->claims.nelts * sizeof(ngx_str_t));
        if (ctx->jwt.values == NULL && vmcf->claims.nelts) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ngx_vantage_introspect_wants(vlcf, &token)) {
        return ngx_vantage_introspect_handler(r, vlcf, ctx, &token);
    }

    if (vlcf->cache) {
        /*
         * the cache key binds the token to the keys that verified it, to
         * the policy it satisfied and to the list of values an entry holds:
         * a token passed in one location is not thereby passed in a
         * stricter one, nor after a key rotation, and a reload that changes
         * the claims in use cannot read an entry's values in another order
         */
        /* one context per process, reset by each EVP_DigestInit_ex() */
        static EVP_MD_CTX  *md;

        if (md == NULL) {
            md = EVP_MD_CTX_new();
        }

        /* the keys in force now: the watcher and the worker swap them */

        if (md == NULL
            || EVP_DigestInit_ex(md, ngx_vantage_sha256(), NULL) != 1
            || EVP_DigestUpdate(md, vlcf->policy_digest, 32) != 1
            || EVP_DigestUpdate(md, vmcf->claims_digest, 32) != 1
            || ngx_vantage_idp_keys_digest(vlcf, md) != NGX_OK
            || EVP_DigestUpdate(md, token.data, token.len) != 1
            || EVP_DigestFinal_ex(md, key, NULL) != 1)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ctx->auth.state == NGX_VANTAGE_AUTH_IDLE) {

            if (ngx_vantage_jwt_cache_get(vlcf->cache, key, r->pool, &blob)
                != NGX_OK)
            {
                ngx_vantage_metrics_inc(NGX_VANTAGE_M_JWT_CACHE
                                        + NGX_VANTAGE_M_CACHE_MISS);
                goto verify;
            }

            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "vantage jwt: cache hit");

            ngx_vantage_metrics_inc(NGX_VANTAGE_M_JWT_CACHE
                                    + NGX_VANTAGE_M_CACHE_HIT);

            if (ngx_vantage_jwt_cached(r, vlcf, &ctx->jwt, &blob) == NGX_OK) {
                goto verified;
            }

            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "vantage jwt: malformed cache entry ignored");

            ngx_memzero(ctx->jwt.values,
                        vmcf->claims.nelts * sizeof(ngx_str_t));
        }
    }

verify:

    rc = ngx_vantage_jwt_verify(r, vlcf, ctx, &token,
                                vlcf->cache ? key : NULL);
    if (rc != NGX_OK) {
        return rc;
    }

verified:

    ctx->jwt.verified = 1;
    ngx_vantage_metrics_auth(r, NGX_VANTAGE_M_JWT, VC_AUTH_OK);

    if (ngx_vantage_jwt_set_headers(r, vlcf, &ctx->jwt) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


/* the token, or an empty string when the request carries none */
static ngx_int_t
ngx_vantage_jwt_token(ngx_http_request_t *r, ngx_vantage_loc_conf_t *vlcf,
    ngx_str_t *token)
{
    u_char  *p, *last;

    if (vlcf->token) {
        if (ngx_http_complex_value(r, vlcf->token, token) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_OK;
    }

    ngx_str_null(token);

    if (r->headers_in.authorization == NULL) {
        return NGX_OK;
    }

    /* RFC 6750 2.1: "Bearer" 1*SP b64token; the scheme is case-insensitive */

    p = r->headers_in.authorization->value.data;
    last = p + r->headers_in.authorization->value.len;

    if (last - p < (ssize_t) sizeof("Bearer ") - 1
        || ngx_strncasecmp(p, (u_char *) "Bearer ", sizeof("Bearer ") - 1)
           != 0)
    {
        return NGX_OK;
    }

    p += sizeof("Bearer ") - 1;

    while (p < last && *p == ' ') {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    token->data = p;
    token->len = last - p;

    return NGX_OK;
}


static ngx_int_t
ngx_vantage_jwt_verify(ngx_http_request_t *r, ngx_vantage_loc_conf_t *vlcf,
    ngx_vantage_ctx_t *ctx, ngx_str_t *token, u_char *key)
{
    u_char        *blob;
    size_t         len;
    time_t         expires;
    uint32_t       source;
    vc_jwt_t       jwt;
    ngx_int_t      rc;
    ngx_uint_t     i;
    vc_keyset_t   *ks;
    vc_verdict_e   verdict;
    ngx_vantage_idp_t  **idpp;

    ngx_memzero(&jwt, sizeof(vc_jwt_t));

    if (vc_jwt_parse(&jwt, (char *) token->data, token->len) != VC_OK) {
        rc = ngx_vantage_jwt_refuse(r, vlcf, NGX_HTTP_UNAUTHORIZED,
                                    jwt.outcome, "invalid_token",
                                    jwt.reason);
        goto done;
    }

    if (vlcf->idps) {
        /* the issuer's keys; the request may wait for them (NGX_AGAIN) */
        ks = ngx_vantage_idp_keys(r, vlcf, ctx, &jwt, &rc);
        if (ks == NULL) {
            goto done;
        }

    } else {
        ks = vlcf->keys->data;
        ctx->jwt.idp = NULL;
    }

    if (vc_jwt_verify(&jwt, ks, &vlcf->policy) != VC_OK) {
        rc = ngx_vantage_jwt_refuse(r, vlcf, NGX_HTTP_UNAUTHORIZED,
                                    jwt.outcome, "invalid_token",
                                    jwt.reason);
        goto done;
    }

    verdict = vc_jwt_check_claims(&jwt, &vlcf->policy, ngx_time());

    if (verdict != VC_JWT_VALID) {
        if (verdict == VC_JWT_FORBIDDEN) {
            rc = ngx_vantage_jwt_refuse(r, vlcf, NGX_HTTP_FORBIDDEN,
                                        jwt.outcome, "insufficient_scope",
                                        jwt.reason);

        } else {
            rc = ngx_vantage_jwt_refuse(r, vlcf, NGX_HTTP_UNAUTHORIZED,
                                        jwt.outcome, "invalid_token",
                                        jwt.reason);
        }

        goto done;
    }

    if (ngx_vantage_jwt_extract(r, &ctx->jwt, &jwt) != NGX_OK) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    rc = NGX_OK;

    if (key) {
        expires = ngx_vantage_jwt_cache_expires(vlcf->cache);

        if (jwt.has_exp && jwt.exp + vlcf->leeway < expires) {
            expires = jwt.exp + vlcf->leeway;
        }

        /* the entry names its key source: 0, a file; i + 1, idps[i] */

        source = 0;

        if (ctx->jwt.idp) {
            idpp = vlcf->idps->elts;

            for (i = 0; i < vlcf->idps->nelts; i++) {
                if (idpp[i] == ctx->jwt.idp) {
                    source = i + 1;
                    break;
                }
            }
        }

        blob = ngx_vantage_jwt_serialize(r, &ctx->jwt, sizeof(uint32_t),
                                         &len);
        if (blob == NULL) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        ngx_memcpy(blob, &source, sizeof(uint32_t));

        ngx_vantage_jwt_cache_put(vlcf->cache, key, expires, blob, len);
    }

done:

    vc_jwt_free(&jwt);

    return rc;
}


/* a cache entry: the key source it was verified with, then the values */
static ngx_int_t
ngx_vantage_jwt_cached(ngx_http_request_t *r, ngx_vantage_loc_conf_t *vlcf,
    ngx_vantage_jwt_ctx_t *jctx, ngx_str_t *blob)
{
    uint32_t             source;
    ngx_vantage_idp_t  **idpp;

    if (blob->len < sizeof(uint32_t)) {
        return NGX_ERROR;
    }

    ngx_memcpy(&source, blob->data, sizeof(uint32_t));

    jctx->idp = NULL;

    if (source) {
        if (vlcf->idps == NULL || source > vlcf->idps->nelts) {
            return NGX_ERROR;
        }

        idpp = vlcf->idps->elts;
        jctx->idp = idpp[source - 1];
    }

    return ngx_vantage_jwt_deserialize(r, jctx, blob->data + sizeof(uint32_t),
                                       blob->data + blob->len);
}


ngx_int_t
ngx_vantage_jwt_extract(ngx_http_request_t *r, ngx_vantage_jwt_ctx_t *jctx,
    vc_jwt_t *jwt)
{
    char                     *text;
    size_t                    len;
    json_t                   *v;
    ngx_uint_t                i;
    ngx_vantage_claim_t      *claim;
    ngx_vantage_main_conf_t  *vmcf;

    vmcf = ngx_http_get_module_main_conf(r, ngx_vantage_module);
    claim = vmcf->claims.elts;

    for (i = 0; i < vmcf->claims.nelts; i++) {

        switch (claim[i].kind) {

        case NGX_VANTAGE_CLAIM:
            v = vc_json_path(jwt->claims, (char *) claim[i].name.data);
            break;

        case NGX_VANTAGE_CLAIM_HEADER:
            v = json_object_get(jwt->header, (char *) claim[i].name.data);
            break;

        default: /* NGX_VANTAGE_CLAIM_ALL */
            v = jwt->claims;
        }

        if (v == NULL) {
            continue;
        }

        text = vc_json_text(v, &len);
        if (text == NULL) {
            return NGX_ERROR;
        }

        jctx->values[i].data = ngx_pnalloc(r->pool, len + 1);
        if (jctx->values[i].data == NULL) {
            free(text);
            return NGX_ERROR;
        }

        ngx_memcpy(jctx->values[i].data, text, len);
        jctx->values[i].data[len] = '\0';
        jctx->values[i].len = len;

        free(text);
    }

    return NGX_OK;
}


/*
 * Values as (uint32 length | NGX_VANTAGE_JWT_ABSENT, bytes) in claim order,
 * after reserve bytes left for the caller's use.
 */
u_char *
ngx_vantage_jwt_serialize(ngx_http_request_t *r, ngx_vantage_jwt_ctx_t *jctx,
    size_t reserve, size_t *len)
{
    u_char                   *blob, *p;
    uint32_t                  n;
    ngx_uint_t                i;
    ngx_vantage_main_conf_t  *vmcf;

    vmcf = ngx_http_get_module_main_conf(r, ngx_vantage_module);

    *len = reserve;

    for (i = 0; i < vmcf->claims.nelts; i++) {
        *len += sizeof(uint32_t) + jctx->values[i].len;
    }

    blob = ngx_pnalloc(r->pool, *len + 1);
    if (blob == NULL) {
        return NULL;
    }

    p = blob + reserve;

    for (i = 0; i < vmcf->claims.nelts; i++) {
        if (jctx->values[i].data == NULL) {
            n = NGX_VANTAGE_JWT_ABSENT;
            p = ngx_cpymem(p, &n, sizeof(uint32_t));
            continue;
        }

        n = (uint32_t) jctx->values[i].len;
        p = ngx_cpymem(p, &n, sizeof(uint32_t));
        p = ngx_cpymem(p, jctx->values[i].data, n);
    }

    return blob;
}


ngx_int_t
ngx_vantage_jwt_deserialize(ngx_http_request_t *r,
    ngx_vantage_jwt_ctx_t *jctx, u_char *p, u_char *last)
{
    uint32_t                  n;
    ngx_uint_t                i;
    ngx_vantage_main_conf_t  *vmcf;

    vmcf = ngx_http_get_module_main_conf(r, ngx_vantage_module);

    for (i = 0; i < vmcf->claims.nelts; i++) {

        if (last - p < (ssize_t) sizeof(uint32_t)) {
            return NGX_ERROR;
        }

        ngx_memcpy(&n, p, sizeof(uint32_t));
        p += sizeof(uint32_t);

        if (n == NGX_VANTAGE_JWT_ABSENT) {
            continue;
        }

        if ((size_t) (last - p) < n) {
            return NGX_ERROR;
        }

        /* values are NUL-terminated for the variables' users */

        jctx->values[i].data = ngx_pnalloc(r->pool, n + 1);
        if (jctx->values[i].data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(jctx->values[i].data, p, n);
        jctx->values[i].data[n] = '\0';
        jctx->values[i].len = n;
        p += n;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_vantage_jwt_refuse(ngx_http_request_t *r, ngx_vantage_loc_conf_t *vlcf,
    ngx_uint_t status, vc_auth_outcome_e outcome, const char *error,
    const char *reason)
{
    return ngx_vantage_auth_refuse(r, vlcf, NGX_VANTAGE_AUTH_JWT, status,
                                   outcome, error, reason, NULL);
}


/*
 * RFC 6750 3: one challenge for each scheme the location accepts ("Bearer"
 * for JWTs, "ApiKey" for API keys), the one that scheme refused with the
 * error (none when no credential was sent), and a JSON body saying the
 * same.  id names the API key refused, when it is known; outcome says
 * why in a word, for the metrics and the access log.  Where an error_page
 * or "satisfy any" takes over, the status is returned for nginx to handle
 * as it does for auth_basic.
 */
ngx_int_t
ngx_vantage_auth_refuse(ngx_http_request_t *r, ngx_vantage_loc_conf_t *vlcf,
    ngx_uint_t scheme, ngx_uint_t status, vc_auth_outcome_e outcome,
    const char *error, const char *reason, ngx_str_t *id)
{
    size_t                     len;
    u_char                    *p, *q;
    ngx_uint_t                 i, schemes, s, method;
    const char                *name, *missing, *logname;
    ngx_table_elt_t           *h, *first;
    ngx_log_handler_pt         handler;
    ngx_http_err_page_t       *err_page;
    ngx_http_core_loc_conf_t  *clcf;

    /*
     * a bearer token of a location that only introspects is counted as
     * introspection's, missing or not
     */

    if (scheme == NGX_VANTAGE_AUTH_API_KEY) {
        method = NGX_VANTAGE_M_API_KEY;

    } else if (scheme == NGX_VANTAGE_AUTH_INTROSPECT || !vlcf->jwt) {
        method = NGX_VANTAGE_M_INTROSPECTION;

    } else {
        method = NGX_VANTAGE_M_JWT;
    }

    ngx_vantage_metrics_auth(r, method, outcome);

    /* a token refused by introspection is refused as a Bearer token */

    logname = (scheme == NGX_VANTAGE_AUTH_INTROSPECT) ? "introspect" : "jwt";

    if (scheme == NGX_VANTAGE_AUTH_INTROSPECT) {
        scheme = NGX_VANTAGE_AUTH_JWT;
    }

    schemes = (vlcf->jwt || vlcf->introspect_on ? NGX_VANTAGE_AUTH_JWT : 0)
              | (vlcf->api_key ? NGX_VANTAGE_AUTH_API_KEY : 0);

    switch (schemes) {
    case NGX_VANTAGE_AUTH_API_KEY:
        missing = "no API key in the request";
        break;
    case NGX_VANTAGE_AUTH_JWT|NGX_VANTAGE_AUTH_API_KEY:
        missing = "no bearer token or API key in the request";
        break;
    default:
        missing = "no bearer token in the request";
    }

    /*
     * nginx's log handler would append the request line, and with it a
     * token passed in the query string; these lines name the client and
     * the path without arguments instead
     */

    handler = r->connection->log->handler;
    r->connection->log->handler = NULL;

    if (error == NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "vantage %s: %s, client: %V, uri: \"%V\"",
                      schemes == NGX_VANTAGE_AUTH_API_KEY ? "api key"
                      : schemes == NGX_VANTAGE_AUTH_JWT ? "jwt" : "auth",
                      missing, &r->connection->addr_text, &r->uri);

    } else if (scheme == NGX_VANTAGE_AUTH_JWT) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "vantage %s: token refused (%s): \"%s\", "
                      "client: %V, uri: \"%V\"",
                      logname, error, reason, &r->connection->addr_text,
                      &r->uri);

    } else if (id) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "vantage api key: key \"%V\" refused (%s): \"%s\", "
                      "client: %V, uri: \"%V\"",
                      id, error, reason, &r->connection->addr_text, &r->uri);

    } else {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "vantage api key: key refused (%s): \"%s\", "
                      "client: %V, uri: \"%V\"",
                      error, reason, &r->connection->addr_text, &r->uri);
    }

    r->connection->log->handler = handler;

    first = NULL;

    for (s = NGX_VANTAGE_AUTH_JWT; s <= NGX_VANTAGE_AUTH_API_KEY; s <<= 1) {

        if (!(schemes & s)) {
            continue;
        }

        name = (s == NGX_VANTAGE_AUTH_JWT) ? "Bearer" : "ApiKey";

        len = ngx_strlen(name) + sizeof(" realm=\"\"") - 1 + vlcf->realm.len;

        if (error && s == scheme) {
            len += sizeof(", error=\"\", error_description=\"\"") - 1
                   + ngx_strlen(error) + ngx_strlen(reason);
        }

        p = ngx_pnalloc(r->pool, len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
#if (nginx_version >= 1023000)
        h->next = NULL;
#endif
        ngx_str_set(&h->key, "WWW-Authenticate");
        h->value.data = p;

        p = ngx_sprintf(p, "%s realm=\"%V\"", name, &vlcf->realm);

        if (error && s == scheme) {
            p = ngx_sprintf(p, ", error=\"%s\", error_description=\"", error);

            /*
             * RFC 6750 3: the description may not hold '"' or '\', which
             * claim names in reasons may; the JSON body keeps them as they
             * are
             */

            q = p;
            p = ngx_cpymem(p, reason, ngx_strlen(reason));

            for ( /* void */ ; q < p; q++) {
                if (*q == '"' || *q == '\\' || *q < 0x20 || *q == 0x7f) {
                    *q = '\'';
                }
            }

            *p++ = '"';
        }

        h->value.len = p - h->value.data;

        if (first == NULL) {
            first = h;
        }
    }

    r->headers_out.www_authenticate = first;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->satisfy != NGX_HTTP_SATISFY_ALL) {
        return status;
    }

    if (clcf->error_pages) {
        err_page = clcf->error_pages->elts;

        for (i = 0; i < clcf->error_pages->nelts; i++) {
            if ((ngx_uint_t) err_page[i].status == status) {
                return status;
            }
        }
    }

    if (error == NULL) {
        return ngx_vantage_send_json(r, status, "missing_token", missing);
    }

    return ngx_vantage_send_json(r, status, error, reason);
}


ngx_int_t
ngx_vantage_jwt_set_headers(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, ngx_vantage_jwt_ctx_t *jctx)
{
    u_char                      *p;
    ngx_str_t                   *value;
    ngx_uint_t                   i;
    ngx_table_elt_t             *h;
    ngx_vantage_claim_header_t  *ch;

    if (vlcf->claim_headers == NULL) {
        return NGX_OK;
    }

    ch = vlcf->claim_headers->elts;

    for (i = 0; i < vlcf->claim_headers->nelts; i++) {

        /* a client's own copy never reaches the upstream */

        if (ngx_vantage_headers_in_remove(r, &ch[i].lowcase) != NGX_OK) {
            return NGX_ERROR;
        }

        if (!jctx->verified) {
            continue;
        }

        value = &jctx->values[ch[i].claim];

        if (value->data == NULL) {
            continue;
        }

        for (p = value->data; p < value->data + value->len; p++) {
            if (*p < 0x20 || *p == 0x7f) {
                break;
            }
        }

        if (p != value->data + value->len) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "vantage jwt: claim for header \"%V\" holds "
                          "control characters, not forwarded", &ch[i].name);
            continue;
        }

        h = ngx_list_push(&r->headers_in.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->hash = ch[i].hash;
        h->key = ch[i].name;
        h->lowcase_key = ch[i].lowcase.data;
        h->value = *value;
#if (nginx_version >= 1023000)
        h->next = NULL;
#endif
    }

    return NGX_OK;
}


/*
 * Removes every header of that name from r->headers_in.headers without
 * moving any other element, since r->headers_in holds pointers to them: a
 * part is shortened from either end or split in two, as lua-nginx-module
 * does.  Two rules of ngx_list_t users are kept: only the first part may be
 * empty (the usual iteration reads elts[0] of the next part unchecked), and
 * ngx_list_push() never writes past a shortened or split last part: that
 * part is marked full, so the next push starts a new part.
 */
ngx_int_t
ngx_vantage_headers_in_remove(ngx_http_request_t *r, ngx_str_t *lowcase)
{
    ngx_uint_t        i, last_touched;
    ngx_list_t       *l;
    ngx_list_part_t  *part, *prev, *np;
    ngx_table_elt_t  *h;

    l = &r->headers_in.headers;
    last_touched = 0;

    for (part = &l->part; part; part = part->next) {

        h = part->elts;
        i = 0;

        while (i < part->nelts) {

            if (h[i].key.len != lowcase->len
                || ngx_strncasecmp(h[i].key.data, lowcase->data,
                                   lowcase->len) != 0)
            {
                i++;
                continue;
            }

            if (part == l->last) {
                last_touched = 1;
            }

            if (i == part->nelts - 1) {
                part->nelts--;
                break;
            }

            if (i == 0) {
                part->elts = &h[1];
                part->nelts--;
                h = part->elts;
                continue;
            }

            np = ngx_palloc(r->pool, sizeof(ngx_list_part_t));
            if (np == NULL) {
                return NGX_ERROR;
            }

            np->elts = &h[i + 1];
            np->nelts = part->nelts - i - 1;
            np->next = part->next;

            part->nelts = i;
            part->next = np;

            if (l->last == part) {
                l->last = np;
            }

            break;
        }
    }

    if (!last_touched) {
        return NGX_OK;
    }

    prev = &l->part;

    for (part = l->part.next; part; part = part->next) {

        if (part->nelts) {
            prev = part;
            continue;
        }

        prev->next = part->next;

        if (l->last == part) {
            l->last = prev;
        }
    }

    if (l->last->nelts) {
        l->nalloc = l->last->nelts;

    } else {
        /* the list is empty: no element's address is left to keep */

        l->last->elts = ngx_palloc(r->pool, l->nalloc * l->size);
        if (l->last->elts == NULL) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_vantage_jwt_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_str_t          *value;
    ngx_vantage_ctx_t  *ctx;

    ctx = ngx_vantage_get_ctx(r->main);

    if (ctx == NULL || !ctx->jwt.verified) {
        v->not_found = 1;
        return NGX_OK;
    }

    value = &ctx->jwt.values[data];

    if (value->data == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = value->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = value->data;

    return NGX_OK;
}


/*
 * A prefix variable looked up by name at run time, not indexed at
 * configuration time (SSI echo, for one): only values registered at
 * configuration time exist, since the cache holds no others.
 */
static ngx_int_t
ngx_vantage_jwt_prefix_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                *name = (ngx_str_t *) data;

    size_t                    skip;
    ngx_uint_t                i, kind;
    ngx_vantage_claim_t      *claim;
    ngx_vantage_main_conf_t  *vmcf;

    if (name->len > sizeof(NGX_VANTAGE_JWT_HEADER_PREFIX) - 1
        && ngx_strncmp(name->data, NGX_VANTAGE_JWT_HEADER_PREFIX,
                       sizeof(NGX_VANTAGE_JWT_HEADER_PREFIX) - 1) == 0)
    {
        kind = NGX_VANTAGE_CLAIM_HEADER;
        skip = sizeof(NGX_VANTAGE_JWT_HEADER_PREFIX) - 1;

    } else {
        kind = NGX_VANTAGE_CLAIM;
        skip = sizeof(NGX_VANTAGE_JWT_CLAIM_PREFIX) - 1;
    }

    vmcf = ngx_http_get_module_main_conf(r, ngx_vantage_module);
    claim = vmcf->claims.elts;

    for (i = 0; i < vmcf->claims.nelts; i++) {
        if (claim[i].kind == kind
            && claim[i].name.len == name->len - skip
            && ngx_strncmp(claim[i].name.data, name->data + skip,
                           name->len - skip) == 0)
        {
            return ngx_vantage_jwt_variable(r, v, i);
        }
    }

    v->not_found = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_vantage_jwt_claims_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    /* indexed at init_module time when used; otherwise nothing is built */
    v->not_found = 1;
    return NGX_OK;
}


ngx_int_t
ngx_vantage_jwt_add_variables(ngx_conf_t *cf)
{
    return ngx_vantage_add_variables(cf, ngx_vantage_jwt_vars);
}


/*
 * Runs once the configuration is read and nginx has resolved every variable
 * used in it: each $vantage_jwt_claim_<name>, $vantage_jwt_header_<name> and
 * $vantage_jwt_claims in use gets a claim of its own, looked up by index.
 */
ngx_int_t
ngx_vantage_jwt_index_variables(ngx_cycle_t *cycle)
{
    ngx_str_t                   name;
    ngx_int_t                   n;
    ngx_uint_t                  i, kind;
    ngx_conf_t                  cf;
    ngx_http_variable_t        *v;
    ngx_vantage_main_conf_t    *vmcf;
    ngx_http_core_main_conf_t  *cmcf;

    if (ngx_get_conf(cycle->conf_ctx, ngx_http_module) == NULL) {
        return NGX_OK;
    }

    cmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_core_module);
    vmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_vantage_module);

    if (cmcf == NULL || vmcf == NULL) {
        return NGX_OK;
    }

    ngx_memzero(&cf, sizeof(ngx_conf_t));
    cf.pool = cycle->pool;
    cf.cycle = cycle;
    cf.log = cycle->log;

    v = cmcf->variables.elts;

    for (i = 0; i < cmcf->variables.nelts; i++) {

        if (v[i].get_handler == ngx_vantage_jwt_claims_variable) {
            ngx_str_set(&name, "");
            kind = NGX_VANTAGE_CLAIM_ALL;

        } else if (v[i].get_handler != ngx_vantage_jwt_prefix_variable) {
            continue;

        } else if (v[i].name.len > sizeof(NGX_VANTAGE_JWT_HEADER_PREFIX) - 1
                   && ngx_strncmp(v[i].name.data,
                                  NGX_VANTAGE_JWT_HEADER_PREFIX,
                                  sizeof(NGX_VANTAGE_JWT_HEADER_PREFIX) - 1)
                      == 0)
        {
            name.data = v[i].name.data
                        + sizeof(NGX_VANTAGE_JWT_HEADER_PREFIX) - 1;
            name.len = v[i].name.len
                       - (sizeof(NGX_VANTAGE_JWT_HEADER_PREFIX) - 1);
            kind = NGX_VANTAGE_CLAIM_HEADER;

        } else {
            name.data = v[i].name.data
                        + sizeof(NGX_VANTAGE_JWT_CLAIM_PREFIX) - 1;
            name.len = v[i].name.len
                       - (sizeof(NGX_VANTAGE_JWT_CLAIM_PREFIX) - 1);
            kind = NGX_VANTAGE_CLAIM;
        }

        n = ngx_vantage_claim_add(&cf, vmcf, &name, kind);
        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        v[i].get_handler = ngx_vantage_jwt_variable;
        v[i].data = n;
    }

    return ngx_vantage_jwt_claims_digest(vmcf);
}


static ngx_int_t
ngx_vantage_jwt_claims_digest(ngx_vantage_main_conf_t *vmcf)
{
    int                   ok;
    uint64_t              kind;
    ngx_uint_t            i;
    EVP_MD_CTX           *md;
    ngx_vantage_claim_t  *claim;

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        return NGX_ERROR;
    }

    ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL);

    claim = vmcf->claims.elts;

    for (i = 0; ok && i < vmcf->claims.nelts; i++) {
        kind = claim[i].kind;
        ok = EVP_DigestUpdate(md, &kind, sizeof(uint64_t))
             && EVP_DigestUpdate(md, claim[i].name.data,
                                 claim[i].name.len + 1);
    }

    ok = ok && EVP_DigestFinal_ex(md, vmcf->claims_digest, NULL);

    EVP_MD_CTX_free(md);

    return ok ? NGX_OK : NGX_ERROR;
}


/*
 * vantage_jwt_claim_set $variable path.to.claim
 * auth_jwt_claim_set $variable name [name ...]   (NGINX Plus: the names are
 *                                                 the path, joined here)
 */
char *
ngx_vantage_jwt_claim_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_main_conf_t *vmcf = conf;

    u_char               *p;
    ngx_int_t             n;
    ngx_str_t            *value, name, path;
    ngx_uint_t            i;
    ngx_http_variable_t  *v;

    value = cf->args->elts;

    if (value[1].len < 2 || value[1].data[0] != '$') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid variable name \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data + 1;
    name.len = value[1].len - 1;

    path.len = cf->args->nelts - 3;

    for (i = 2; i < cf->args->nelts; i++) {
        if (value[i].len == 0) {
            return "takes a claim name or path";
        }

        path.len += value[i].len;
    }

    path.data = ngx_pnalloc(cf->pool, path.len);
    if (path.data == NULL) {
        return NGX_CONF_ERROR;
    }

    p = path.data;

    for (i = 2; i < cf->args->nelts; i++) {
        if (i > 2) {
            *p++ = '.';
        }

        p = ngx_cpymem(p, value[i].data, value[i].len);
    }

    n = ngx_vantage_claim_add(cf, vmcf, &path, NGX_VANTAGE_CLAIM);
    if (n == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    v = ngx_http_add_variable(cf, &name, NGX_HTTP_VAR_NOCACHEABLE);
    if (v == NULL) {
        return NGX_CONF_ERROR;
    }

    if (v->get_handler == ngx_vantage_jwt_variable && v->data != (uintptr_t) n)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "variable \"%V\" is already set to another claim",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    v->get_handler = ngx_vantage_jwt_variable;
    v->data = n;

    return NGX_CONF_OK;
}


/* auth_jwt realm [token=$variable] | off   (NGINX Plus) */
char *
ngx_vantage_jwt_auth_jwt(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t *vlcf = conf;

    char                              *rv;
    ngx_str_t                         *value;
    ngx_http_compile_complex_value_t   ccv;

    if (vlcf->jwt != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        if (cf->args->nelts != 2) {
            return "takes no token when off";
        }

        vlcf->jwt = 0;
        return NGX_CONF_OK;
    }

    rv = ngx_vantage_check_realm(&value[1]);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    vlcf->jwt = 1;
    vlcf->realm = value[1];

    if (cf->args->nelts == 2) {
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value[2].data, "token=", 6) != 0
        || vlcf->token != NGX_CONF_UNSET_PTR)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    vlcf->token = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (vlcf->token == NULL) {
        return NGX_CONF_ERROR;
    }

    value[2].data += 6;
    value[2].len -= 6;

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[2];
    ccv.complex_value = vlcf->token;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* vantage_jwt_claim_header claim Header-Name */
char *
ngx_vantage_jwt_claim_header(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t *vlcf = conf;

    char                        **reserved;
    u_char                       *p;
    ngx_int_t                     n;
    ngx_str_t                    *value;
    ngx_vantage_main_conf_t      *vmcf;
    ngx_vantage_claim_header_t   *ch;

    value = cf->args->elts;

    if (vlcf->claim_headers == NGX_CONF_UNSET_PTR) {
        vlcf->claim_headers = ngx_array_create(cf->pool, 2,
                                          sizeof(ngx_vantage_claim_header_t));
        if (vlcf->claim_headers == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (value[1].len == 0 || value[2].len == 0) {
        return "takes a claim and a header name";
    }

    for (p = value[2].data; p < value[2].data + value[2].len; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid header name \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    for (reserved = ngx_vantage_jwt_reserved_headers; *reserved; reserved++) {
        if (ngx_strlen(*reserved) == value[2].len
            && ngx_strncasecmp((u_char *) *reserved, value[2].data,
                               value[2].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "header \"%V\" is one nginx interprets, "
                               "choose another name", &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_vantage_module);

    n = ngx_vantage_claim_add(cf, vmcf, &value[1], NGX_VANTAGE_CLAIM);
    if (n == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    ch = ngx_array_push(vlcf->claim_headers);
    if (ch == NULL) {
        return NGX_CONF_ERROR;
    }

    ch->name = value[2];
    ch->claim = n;
    ch->lowcase.len = value[2].len;
    ch->lowcase.data = ngx_pnalloc(cf->pool, value[2].len);
    if (ch->lowcase.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ch->hash = ngx_hash_strlow(ch->lowcase.data, value[2].data, value[2].len);

    return NGX_CONF_OK;
}


/* vantage_jwt_require claim value [value ...] */
char *
ngx_vantage_jwt_require(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t *vlcf = conf;

    ngx_str_t     *value;
    ngx_uint_t     i;
    const char   **values;
    vc_require_t  *req;

    value = cf->args->elts;

    if (vlcf->requires == NGX_CONF_UNSET_PTR) {
        vlcf->requires = ngx_array_create(cf->pool, 4, sizeof(vc_require_t));
        if (vlcf->requires == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (value[1].len == 0) {
        return "takes a claim name";
    }

    req = ngx_array_push(vlcf->requires);
    if (req == NULL) {
        return NGX_CONF_ERROR;
    }

    values = ngx_palloc(cf->pool, (cf->args->nelts - 2) * sizeof(char *));
    if (values == NULL) {
        return NGX_CONF_ERROR;
    }

    /* configuration tokens are NUL-terminated by ngx_conf_read_token() */

    for (i = 2; i < cf->args->nelts; i++) {
        values[i - 2] = (const char *) value[i].data;
    }

    req->claim = (const char *) value[1].data;
    req->values = values;
    req->nvalues = cf->args->nelts - 2;

    return NGX_CONF_OK;
}


/* vantage_jwt_algorithms alg [alg ...] */
char *
ngx_vantage_jwt_algorithms(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t *vlcf = conf;

    vc_alg_e     alg;
    ngx_str_t   *value;
    ngx_uint_t   i;

    if (vlcf->algs != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    vlcf->algs = 0;

    for (i = 1; i < cf->args->nelts; i++) {
        alg = vc_alg_by_name((char *) value[i].data, value[i].len);

        if (alg == VC_ALG_NONE) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%V: unsupported algorithm \"%V\", use "
                               "HS256, HS384, HS512, RS256, RS384, RS512, "
                               "ES256, ES384 or ES512", &cmd->name, &value[i]);
            return NGX_CONF_ERROR;
        }

        vlcf->algs |= 1u << alg;
    }

    return NGX_CONF_OK;
}


/*
 * Builds the location's vc_policy_t and its digest: the digest goes into
 * the cache key, so two locations share verified tokens only when their
 * policies are the same.
 */
char *
ngx_vantage_jwt_merge_policy(ngx_conf_t *cf, ngx_vantage_loc_conf_t *vlcf)
{
    size_t         j;
    uint64_t       n[4];
    ngx_uint_t     i;
    EVP_MD_CTX    *md;
    vc_require_t  *req;

    vlcf->policy.algs = vlcf->algs;
    vlcf->policy.leeway = vlcf->leeway;
    vlcf->policy.require_exp = vlcf->require_exp;
    vlcf->policy.max_keys_tried = vlcf->max_keys_tried;

    if (vlcf->requires) {
        vlcf->policy.requires = vlcf->requires->elts;
        vlcf->policy.nrequires = vlcf->requires->nelts;
    }

    /* introspection answers need not carry exp (RFC 7662 2.2) */

    vlcf->intro_policy = vlcf->policy;
    vlcf->intro_policy.require_exp = 0;

    if (!vlcf->jwt && !vlcf->introspect_on) {
        return NGX_CONF_OK;
    }

    md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        return NGX_CONF_ERROR;
    }

    n[0] = vlcf->policy.algs;
    n[1] = (uint64_t) vlcf->policy.leeway;
    n[2] = vlcf->policy.require_exp;
    n[3] = vlcf->policy.max_keys_tried;

    EVP_DigestUpdate(md, n, sizeof(n));

    /* each string with its terminating NUL, so that no two lists collide */

    req = vlcf->policy.requires;

    for (i = 0; i < vlcf->policy.nrequires; i++) {
        n[0] = req[i].nvalues;
        EVP_DigestUpdate(md, n, sizeof(uint64_t));
        EVP_DigestUpdate(md, req[i].claim, ngx_strlen(req[i].claim) + 1);

        for (j = 0; j < req[i].nvalues; j++) {
            EVP_DigestUpdate(md, req[i].values[j],
                             ngx_strlen(req[i].values[j]) + 1);
        }
    }

    if (EVP_DigestFinal_ex(md, vlcf->policy_digest, NULL) != 1) {
        EVP_MD_CTX_free(md);
        return NGX_CONF_ERROR;
    }

    EVP_MD_CTX_free(md);

    return NGX_CONF_OK;
}
