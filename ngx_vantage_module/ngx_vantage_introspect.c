/* ngx_vantage_introspect.c -- opaque tokens, asked of the provider (RFC 7662) */

/*
 * A token that is not a JWT (or every token, with tokens=all) is sent to
 * vantage-worker (FETCH, kind introspect), which posts it to the
 * provider's introspection endpoint with the worker's own client
 * credentials: nginx holds no secret and opens no outbound connection.
 * The request waits, with a timer of its own, and goes on when the answer
 * comes.
 *
 * The answer's members are the claims: the same claim variables, headers
 * and vantage_jwt_require checks apply to them as to a JWT's (exp is not
 * required of an answer; a past one refuses the token).  What was decided
 * is kept in the verified-token cache (the location's vantage_jwt_cache
 * zone, or one of the module's own), under a key of its own: an accepted
 * token until its exp or the configured cap, a refused one briefly.
 */

#include "ngx_vantage_module.h"


#define NGX_VANTAGE_INTRO_CACHE_MAX   300       /* s */
#define NGX_VANTAGE_INTRO_NEGATIVE    10
#define NGX_VANTAGE_INTRO_ZONE_SIZE   (1024 * 1024)
#define NGX_VANTAGE_INTRO_ZONE_TTL    86400

/* the first byte of a cache entry */
#define NGX_VANTAGE_INTRO_ACCEPTED    'A'
#define NGX_VANTAGE_INTRO_REFUSED     'R'


static ngx_uint_t ngx_vantage_introspect_is_jws(ngx_str_t *token);
static ngx_int_t ngx_vantage_introspect_key(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, ngx_str_t *token, u_char *key);
static ngx_int_t ngx_vantage_introspect_cached(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, ngx_vantage_ctx_t *ctx, ngx_str_t *blob);
static void ngx_vantage_introspect_reply(void *data, ngx_uint_t outcome,
    u_char *fields, size_t len);
static ngx_int_t ngx_vantage_introspect_decide(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, ngx_vantage_ctx_t *ctx, u_char *key);
static ngx_int_t ngx_vantage_introspect_refuse(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, u_char *key, ngx_uint_t status,
    vc_auth_outcome_e outcome, const char *reason);
static ngx_int_t ngx_vantage_introspect_failed(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, const char *reason, ngx_str_t *detail);


/* vantage_introspect <url> [tokens=opaque|all] [cache=] [negative=] | off */
char *
ngx_vantage_introspect_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t *vlcf = conf;

    time_t                          t;
    u_char                         *p;
    ngx_str_t                      *value, s;
    ngx_uint_t                      i;
    ngx_vantage_introspect_conf_t  *ic;

    if (vlcf->introspect != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        vlcf->introspect = NULL;
        return NGX_CONF_OK;
    }

    if (value[1].len <= sizeof("https://") - 1
        || ngx_strncasecmp(value[1].data, (u_char *) "https://",
                           sizeof("https://") - 1) != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": the URL \"%V\" is not an https:// URL",
                           &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    for (p = value[1].data; p < value[1].data + value[1].len; p++) {
        if (*p <= 0x20 || *p == 0x7f || *p == '"') {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\": the URL \"%V\" contains spaces, "
                               "quotes or control characters", &cmd->name,
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    ic = ngx_pcalloc(cf->pool, sizeof(ngx_vantage_introspect_conf_t));
    if (ic == NULL) {
        return NGX_CONF_ERROR;
    }

    ic->url = value[1];
    ic->cache_max = NGX_VANTAGE_INTRO_CACHE_MAX;
    ic->negative = NGX_VANTAGE_INTRO_NEGATIVE;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "tokens=opaque") == 0
            || ngx_strcmp(value[i].data, "tokens=all") == 0)
        {
            ic->all = (value[i].data[7] == 'a');
            continue;
        }

        if (ngx_strncmp(value[i].data, "cache=", 6) == 0
            || ngx_strncmp(value[i].data, "negative=", 9) == 0)
        {
            p = (u_char *) ngx_strchr(value[i].data, '=') + 1;
            s.data = p;
            s.len = value[i].data + value[i].len - p;

            t = ngx_parse_time(&s, 1);

            if (t == (time_t) NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\": invalid time in \"%V\"",
                                   &cmd->name, &value[i]);
                return NGX_CONF_ERROR;
            }

            if (value[i].data[0] == 'c') {
                ic->cache_max = t;

            } else {
                ic->negative = t;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": invalid parameter \"%V\"", &cmd->name,
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    vlcf->introspect = ic;

    return NGX_CONF_OK;
}


char *
ngx_vantage_introspect_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf)
{
    ngx_str_t                 name;
    ngx_vantage_main_conf_t  *vmcf;

    ngx_conf_merge_ptr_value(conf->introspect, prev->introspect, NULL);
    ngx_conf_merge_msec_value(conf->introspect_timeout,
                              prev->introspect_timeout, 3000);
    ngx_conf_merge_uint_value(conf->introspect_failure,
                              prev->introspect_failure,
                              NGX_HTTP_SERVICE_UNAVAILABLE);

    if (!conf->introspect_on) {
        return NGX_CONF_OK;
    }

    if (conf->introspect == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "introspection is on but no "
                           "\"vantage_introspect\" applies here");
        return NGX_CONF_ERROR;
    }

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_vantage_module);

    if (vmcf->worker == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_introspect\" needs \"vantage_worker\": "
                           "tokens are introspected by vantage-worker");
        return NGX_CONF_ERROR;
    }

    if (conf->cache == NULL && vmcf->intro_cache == NULL) {
        ngx_str_set(&name, "vantage_introspect");

        vmcf->intro_cache = ngx_vantage_jwt_cache_zone(cf, &name,
                                NGX_VANTAGE_INTRO_ZONE_SIZE,
                                NGX_VANTAGE_INTRO_ZONE_TTL);
        if (vmcf->intro_cache == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* whether a location sends this token to introspection */
ngx_uint_t
ngx_vantage_introspect_wants(ngx_vantage_loc_conf_t *vlcf, ngx_str_t *token)
{
    if (!vlcf->introspect_on) {
        return 0;
    }

    if (!vlcf->jwt || vlcf->introspect->all) {
        return 1;
    }

    return !ngx_vantage_introspect_is_jws(token);
}


/* a compact JWS: three non-empty base64url segments */
static ngx_uint_t
ngx_vantage_introspect_is_jws(ngx_str_t *token)
{
    u_char      *p, *last;
    ngx_uint_t   dots, seg;

    dots = 0;
    seg = 0;
    last = token->data + token->len;

    for (p = token->data; p < last; p++) {

        if (*p == '.') {
            if (seg == 0 || ++dots > 2) {
                return 0;
            }

            seg = 0;
            continue;
        }

        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')
            || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_')
        {
            seg++;
            continue;
        }

        return 0;
    }

    return dots == 2 && seg > 0;
}


/*
 * The token's introspection: from the cache, else asked of the worker
 * (NGX_AGAIN: the request waits), and decided when the answer is in.
 */
ngx_int_t
ngx_vantage_introspect_handler(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, ngx_vantage_ctx_t *ctx, ngx_str_t *token)
{
    u_char                      key[32], *p;
    ngx_str_t                   blob;
    ngx_shm_zone_t             *zone;
    ngx_vantage_auth_ctx_t     *actx;
    ngx_vantage_main_conf_t    *vmcf;
    ngx_vantage_worker_field_t  fields[3];

    actx = &ctx->auth;

    vmcf = ngx_http_get_module_main_conf(r, ngx_vantage_module);
    zone = vlcf->cache ? vlcf->cache : vmcf->intro_cache;

    if (ngx_vantage_introspect_key(r, vlcf, token, key) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (actx->state == NGX_VANTAGE_AUTH_RESUMED) {
        return ngx_vantage_introspect_decide(r, vlcf, ctx, key);
    }

    if (ngx_vantage_jwt_cache_get(zone, key, r->pool, &blob) == NGX_OK) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "vantage introspect: cache hit");

        ngx_vantage_metrics_inc(NGX_VANTAGE_M_INTRO
                                + NGX_VANTAGE_M_INTRO_CACHE_HIT);

        return ngx_vantage_introspect_cached(r, vlcf, ctx, &blob);
    }

    /* the worker takes printable ASCII without spaces (RFC 6750 b64token) */

    for (p = token->data; p < token->data + token->len; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            return ngx_vantage_auth_refuse(r, vlcf,
                                           NGX_VANTAGE_AUTH_INTROSPECT,
                                           NGX_HTTP_UNAUTHORIZED,
                                           VC_AUTH_MALFORMED,
                                           "invalid_token",
                                           "the token is malformed", NULL);
        }
    }

    ngx_memzero(fields, sizeof(fields));

    fields[0].tag = VC_TAG_IDP;
    fields[0].value = vlcf->introspect->url;
    fields[1].tag = VC_TAG_FETCH_KIND;
    ngx_str_set(&fields[1].value, "introspect");
    fields[2].tag = VC_TAG_TOKEN;
    fields[2].value = *token;

    actx->call = ngx_vantage_worker_call(VC_FRAME_FETCH, fields, 3,
                                         ngx_vantage_introspect_reply, actx);

    if (actx->call == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_vantage_auth_wait(r, actx, NULL, vlcf->introspect_timeout);
}


/*
 * The cache key binds the answer to the endpoint, to the policy it was
 * checked against and to the claims an entry holds, as for a JWT, with
 * a prefix no JWT key has.
 */
static ngx_int_t
ngx_vantage_introspect_key(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, ngx_str_t *token, u_char *key)
{
    ngx_vantage_main_conf_t  *vmcf;

    /* one context per process, reset by each EVP_DigestInit_ex() */
    static EVP_MD_CTX        *md;

    vmcf = ngx_http_get_module_main_conf(r, ngx_vantage_module);

    if (md == NULL) {
        md = EVP_MD_CTX_new();
    }

    if (md == NULL
        || EVP_DigestInit_ex(md, ngx_vantage_sha256(), NULL) != 1
        || EVP_DigestUpdate(md, "vantage introspect", 19) != 1
        || EVP_DigestUpdate(md, vlcf->policy_digest, 32) != 1
        || EVP_DigestUpdate(md, vmcf->claims_digest, 32) != 1
        || EVP_DigestUpdate(md, vlcf->introspect->url.data,
                            vlcf->introspect->url.len + 1) != 1
        || EVP_DigestUpdate(md, token->data, token->len) != 1
        || EVP_DigestFinal_ex(md, key, NULL) != 1)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * 'A' and the values; or 'R', the status as one byte, 1 or 3, the outcome
 * as one byte ('a' + vc_auth_outcome_e), a reason
 */
static ngx_int_t
ngx_vantage_introspect_cached(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, ngx_vantage_ctx_t *ctx, ngx_str_t *blob)
{
    u_char             *reason;
    vc_auth_outcome_e   outcome;

    if (blob->len >= 1 && blob->data[0] == NGX_VANTAGE_INTRO_ACCEPTED
        && ngx_vantage_jwt_deserialize(r, &ctx->jwt, blob->data + 1,
                                       blob->data + blob->len)
           == NGX_OK)
    {
        ctx->jwt.verified = 1;
        ctx->jwt.introspected = 1;
        ctx->jwt.idp = NULL;
        ngx_vantage_metrics_auth(r, NGX_VANTAGE_M_INTROSPECTION, VC_AUTH_OK);

        if (ngx_vantage_jwt_set_headers(r, vlcf, &ctx->jwt) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_OK;
    }

    if (blob->len >= 3 && blob->data[0] == NGX_VANTAGE_INTRO_REFUSED
        && blob->data[2] >= 'a' && blob->data[2] < 'a' + VC_AUTH_NOUTCOMES)
    {
        reason = ngx_pnalloc(r->pool, blob->len - 2);
        if (reason == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_memcpy(reason, blob->data + 3, blob->len - 3);
        reason[blob->len - 3] = '\0';

        outcome = blob->data[2] - 'a';

        if (blob->data[1] == '3') {
            return ngx_vantage_auth_refuse(r, vlcf,
                                           NGX_VANTAGE_AUTH_INTROSPECT,
                                           NGX_HTTP_FORBIDDEN, outcome,
                                           "insufficient_scope",
                                           (char *) reason, NULL);
        }

        return ngx_vantage_auth_refuse(r, vlcf, NGX_VANTAGE_AUTH_INTROSPECT,
                                       NGX_HTTP_UNAUTHORIZED, outcome,
                                       "invalid_token", (char *) reason,
                                       NULL);
    }

    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                  "vantage introspect: malformed cache entry");

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


/* the worker's answer, copied into the request's pool; then on */
static void
ngx_vantage_introspect_reply(void *data, ngx_uint_t outcome, u_char *fields,
    size_t len)
{
    ngx_vantage_auth_ctx_t  *actx = data;

    uint32_t                     status;
    ngx_str_t                    error, body;
    ngx_http_request_t          *r;
    ngx_vantage_worker_reply_t   rep;

    r = actx->request;
    actx->call = NULL;
    actx->outcome = outcome;
    if (outcome == NGX_VANTAGE_WORKER_REPLY) {
        ngx_vantage_worker_reply_read(fields, len, &rep);

        status = rep.status;
        error = rep.error;
        body = rep.body;

        actx->status = status;

        actx->error.data = error.len ? ngx_pstrdup(r->pool, &error) : NULL;
        actx->body.data = ngx_pnalloc(r->pool, body.len + 1);

        if ((error.len && actx->error.data == NULL)
            || actx->body.data == NULL)
        {
            actx->outcome = NGX_VANTAGE_WORKER_LOST;

        } else {
            actx->error.len = error.len;

            if (body.len) {
                ngx_memcpy(actx->body.data, body.data, body.len);
            }

            actx->body.data[body.len] = '\0';
            actx->body.len = body.len;
        }
    }

    ngx_vantage_auth_resume(actx);
}


static ngx_int_t
ngx_vantage_introspect_decide(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, ngx_vantage_ctx_t *ctx, u_char *key)
{
    u_char                  *blob;
    size_t                   len;
    time_t                   now, expires;
    json_t                  *root, *v;
    ngx_int_t                rc;
    ngx_str_t                detail;
    vc_jwt_t                 jwt;
    vc_verdict_e             verdict;
    ngx_shm_zone_t          *zone;
    ngx_vantage_auth_ctx_t  *actx;
    ngx_vantage_main_conf_t *vmcf;

    actx = &ctx->auth;
    ngx_str_null(&detail);

    if (actx->timed_out) {
        return ngx_vantage_introspect_failed(r, vlcf, "the identity provider "
                                             "did not answer in time", NULL);
    }

    if (actx->outcome != NGX_VANTAGE_WORKER_REPLY) {
        return ngx_vantage_introspect_failed(r, vlcf, "the worker cannot be "
                                             "reached", NULL);
    }

    if (actx->status != NGX_HTTP_OK) {
        return ngx_vantage_introspect_failed(r, vlcf, "the worker could not "
                                             "introspect it", &actx->error);
    }

    root = json_loadb((char *) actx->body.data, actx->body.len, 0, NULL);

    if (!json_is_object(root)
        || !json_is_boolean(json_object_get(root, "active")))
    {
        json_decref(root);
        return ngx_vantage_introspect_failed(r, vlcf, "the identity "
                                             "provider's answer is not "
                                             "valid", NULL);
    }

    if (!json_is_true(json_object_get(root, "active"))) {
        ngx_vantage_metrics_inc(NGX_VANTAGE_M_INTRO
                                + NGX_VANTAGE_M_INTRO_INACTIVE);

        json_decref(root);
        return ngx_vantage_introspect_refuse(r, vlcf, key,
                                             NGX_HTTP_UNAUTHORIZED,
                                             VC_AUTH_INACTIVE,
                                             "the token is not active");
    }

    /* the call's result, whatever the claims say next */
    ngx_vantage_metrics_inc(NGX_VANTAGE_M_INTRO + NGX_VANTAGE_M_INTRO_ACTIVE);

    ngx_memzero(&jwt, sizeof(vc_jwt_t));
    jwt.claims = root;
    jwt.header = json_object();

    if (jwt.header == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    v = json_object_get(root, "exp");

    if (json_is_number(v)) {
        jwt.exp = (int64_t) json_number_value(v);
        jwt.has_exp = 1;
    }

    now = ngx_time();
    verdict = vc_jwt_check_claims(&jwt, &vlcf->intro_policy, now);

    if (verdict != VC_JWT_VALID) {
        rc = ngx_vantage_introspect_refuse(r, vlcf, key,
                                           verdict == VC_JWT_FORBIDDEN
                                           ? NGX_HTTP_FORBIDDEN
                                           : NGX_HTTP_UNAUTHORIZED,
                                           jwt.outcome, jwt.reason);
        goto done;
    }

    if (ngx_vantage_jwt_extract(r, &ctx->jwt, &jwt) != NGX_OK) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    vmcf = ngx_http_get_module_main_conf(r, ngx_vantage_module);
    zone = vlcf->cache ? vlcf->cache : vmcf->intro_cache;

    expires = ngx_min(now + vlcf->introspect->cache_max,
                      ngx_vantage_jwt_cache_expires(zone));

    if (jwt.has_exp && jwt.exp + vlcf->leeway < expires) {
        expires = jwt.exp + vlcf->leeway;
    }

    if (expires > now) {
        blob = ngx_vantage_jwt_serialize(r, &ctx->jwt, 1, &len);
        if (blob == NULL) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        blob[0] = NGX_VANTAGE_INTRO_ACCEPTED;
        ngx_vantage_jwt_cache_put(zone, key, expires, blob, len);
    }

    ctx->jwt.verified = 1;
    ctx->jwt.introspected = 1;
    ctx->jwt.idp = NULL;
    ngx_vantage_metrics_auth(r, NGX_VANTAGE_M_INTROSPECTION, VC_AUTH_OK);

    rc = ngx_vantage_jwt_set_headers(r, vlcf, &ctx->jwt) == NGX_OK
         ? NGX_OK : NGX_HTTP_INTERNAL_SERVER_ERROR;

done:

    vc_jwt_free(&jwt);

    return rc;
}


/* a refusal, kept for "negative" seconds so that a replay costs nothing */
static ngx_int_t
ngx_vantage_introspect_refuse(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, u_char *key, ngx_uint_t status,
    vc_auth_outcome_e outcome, const char *reason)
{
    u_char                   *blob;
    size_t                    len;
    ngx_shm_zone_t           *zone;
    ngx_vantage_main_conf_t  *vmcf;

    if (vlcf->introspect->negative) {
        vmcf = ngx_http_get_module_main_conf(r, ngx_vantage_module);
        zone = vlcf->cache ? vlcf->cache : vmcf->intro_cache;

        len = 3 + ngx_strlen(reason);

        blob = ngx_pnalloc(r->pool, len);
        if (blob == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        blob[0] = NGX_VANTAGE_INTRO_REFUSED;
        blob[1] = (status == NGX_HTTP_FORBIDDEN) ? '3' : '1';
        blob[2] = (u_char) ('a' + outcome);
        ngx_memcpy(blob + 3, reason, len - 3);

        ngx_vantage_jwt_cache_put(zone, key,
                                  ngx_time() + vlcf->introspect->negative,
                                  blob, len);
    }

    return ngx_vantage_auth_refuse(r, vlcf, NGX_VANTAGE_AUTH_INTROSPECT,
                                   status, outcome,
                                   status == NGX_HTTP_FORBIDDEN
                                   ? "insufficient_scope" : "invalid_token",
                                   reason, NULL);
}


/*
 * Introspection could not decide: 503 (the token may well be good), or a
 * 401 where vantage_introspect_failure says so.  Nothing is cached.
 */
static ngx_int_t
ngx_vantage_introspect_failed(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, const char *reason, ngx_str_t *detail)
{
    u_char              *p;
    size_t               len;
    ngx_log_handler_pt   handler;

    ngx_vantage_metrics_inc(NGX_VANTAGE_M_INTRO + NGX_VANTAGE_M_INTRO_ERROR);

    /* without the request line, which may carry a token in its query */

    handler = r->connection->log->handler;
    r->connection->log->handler = NULL;

    if (detail && detail->len) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vantage introspect: \"%V\": %s: %V, client: %V",
                      &vlcf->introspect->url, reason, detail,
                      &r->connection->addr_text);

    } else {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vantage introspect: \"%V\": %s, client: %V",
                      &vlcf->introspect->url, reason,
                      &r->connection->addr_text);
    }

    r->connection->log->handler = handler;

    if (vlcf->introspect_failure == NGX_HTTP_UNAUTHORIZED) {
        return ngx_vantage_auth_refuse(r, vlcf, NGX_VANTAGE_AUTH_INTROSPECT,
                                       NGX_HTTP_UNAUTHORIZED,
                                       VC_AUTH_UNAVAILABLE, "invalid_token",
                                       "the token could not be checked",
                                       NULL);
    }

    ngx_vantage_metrics_auth(r, NGX_VANTAGE_M_INTROSPECTION,
                             VC_AUTH_UNAVAILABLE);

    len = sizeof("the token could not be checked: ") + ngx_strlen(reason);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(p, "the token could not be checked: %s%Z", reason);

    return ngx_vantage_auth_unavailable(r, (char *) p);
}
