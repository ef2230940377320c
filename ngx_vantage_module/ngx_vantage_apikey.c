/* ngx_vantage_apikey.c -- API keys: the key file, its reload, the check */

#include <openssl/evp.h>

#include "ngx_vantage_module.h"


/* longer than any key vantagectl makes; bounds the hashing of junk */
#define NGX_VANTAGE_APIKEY_MAX_LEN    1024


static ngx_int_t ngx_vantage_apikeys_load(u_char *buf, size_t size,
    ngx_log_t *log, void **data, size_t *nkeys, char *errstr);
static void ngx_vantage_apikeys_free(void *data);
static ngx_table_elt_t *ngx_vantage_apikey_header(ngx_http_request_t *r,
    ngx_vantage_apikey_src_t *src);
static ngx_int_t ngx_vantage_apikey_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_vantage_apikey_vars[] = {

    { ngx_string("vantage_api_key_id"), NULL,
      ngx_vantage_apikey_variable,
      offsetof(ngx_vantage_apikey_ctx_t, id),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vantage_api_key_tenant"), NULL,
      ngx_vantage_apikey_variable,
      offsetof(ngx_vantage_apikey_ctx_t, tenant),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vantage_api_key_scopes"), NULL,
      ngx_vantage_apikey_variable,
      offsetof(ngx_vantage_apikey_ctx_t, scopes),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


/* read and reloaded by ngx_vantage_watch.c, parsed here */
static ngx_vantage_watch_kind_t  ngx_vantage_apikeys_kind = {
    "vantage api key",
    4 * 1024 * 1024,
    ngx_vantage_apikeys_load,
    ngx_vantage_apikeys_free
};


/*
 * vantage_api_keys file: read and checked here, so that a bad file fails
 * "nginx -t" with the entry and the problem; each worker process then
 * watches it for changes, as it does the JWT key files.
 */
char *
ngx_vantage_apikey_keys_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t *vlcf = conf;

    ngx_str_t  *value;

    if (vlcf->api_keys != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    vlcf->api_keys = ngx_vantage_watch_add(cf, cmd, &value[1],
                                           &ngx_vantage_apikeys_kind);
    if (vlcf->api_keys == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* parses the bytes of an API key file into a new set */
static ngx_int_t
ngx_vantage_apikeys_load(u_char *buf, size_t size, ngx_log_t *log,
    void **data, size_t *nkeys, char *errstr)
{
    vc_apikeys_t  *s;

    s = ngx_calloc(sizeof(vc_apikeys_t), log);
    if (s == NULL) {
        ngx_cpystrn((u_char *) errstr, (u_char *) "out of memory",
                    VC_ERRSTR_LEN);
        return NGX_ERROR;
    }

    if (vc_apikeys_load(s, (char *) buf, size, errstr, VC_ERRSTR_LEN)
        != VC_OK)
    {
        ngx_free(s);
        return NGX_ERROR;
    }

    *data = s;
    *nkeys = s->nkeys;

    return NGX_OK;
}


static void
ngx_vantage_apikeys_free(void *data)
{
    vc_apikeys_t  *set = data;

    if (set) {
        vc_apikeys_free(set);
        ngx_free(set);
    }
}


/*
 * The access check of one request.  Returns NGX_DECLINED when the request
 * carries no key (the caller decides whether another scheme may answer),
 * NGX_OK when a key was accepted, or what ngx_vantage_auth_refuse()
 * returns.  The key itself is never logged: only the id of a known key.
 */
ngx_int_t
ngx_vantage_apikey_authenticate(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, ngx_vantage_apikey_ctx_t *actx)
{
    u_char                     digest[32], *p, *dst;
    ngx_str_t                  key, id;
    ngx_uint_t                 i;
    ngx_table_elt_t           *h;
    const vc_apikey_t         *k;
    vc_auth_outcome_e          outcome;
    vc_apikey_verdict_e        verdict;
    ngx_vantage_apikey_src_t  *src, *found;
    char                       reason[VC_ERRSTR_LEN];

    /* one context per process, reset by each EVP_DigestInit_ex() */
    static EVP_MD_CTX         *md;

    ngx_str_null(&key);
    found = NULL;
    src = vlcf->api_key_from->elts;

    for (i = 0; i < vlcf->api_key_from->nelts; i++) {

        if (src[i].type == NGX_VANTAGE_APIKEY_HEADER) {
            h = ngx_vantage_apikey_header(r, &src[i]);

            if (h == NULL || h->value.len == 0) {
                continue;
            }

            key = h->value;

        } else {
            if (ngx_http_arg(r, src[i].name.data, src[i].name.len, &key)
                != NGX_OK
                || key.len == 0)
            {
                continue;
            }

            if (ngx_strlchr(key.data, key.data + key.len, '%')) {
                dst = ngx_pnalloc(r->pool, key.len);
                if (dst == NULL) {
                    return NGX_HTTP_INTERNAL_SERVER_ERROR;
                }

                p = dst;
                ngx_unescape_uri(&p, &key.data, key.len, NGX_UNESCAPE_URI);
                key.data = dst;
                key.len = p - dst;
            }
        }

        found = &src[i];
        break;
    }

    if (found == NULL) {
        return NGX_DECLINED;
    }

    if (key.len > NGX_VANTAGE_APIKEY_MAX_LEN) {
        return ngx_vantage_auth_refuse(r, vlcf, NGX_VANTAGE_AUTH_API_KEY,
                                       NGX_HTTP_UNAUTHORIZED,
                                       VC_AUTH_MALFORMED, "invalid_token",
                                       "invalid API key", NULL);
    }

    if (md == NULL) {
        md = EVP_MD_CTX_new();
    }

    if (md == NULL
        || EVP_DigestInit_ex(md, ngx_vantage_sha256(), NULL) != 1
        || EVP_DigestUpdate(md, key.data, key.len) != 1
        || EVP_DigestFinal_ex(md, digest, NULL) != 1)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    k = vc_apikeys_find(vlcf->api_keys->data, digest);

    if (k == NULL) {
        return ngx_vantage_auth_refuse(r, vlcf, NGX_VANTAGE_AUTH_API_KEY,
                                       NGX_HTTP_UNAUTHORIZED,
                                       VC_AUTH_UNKNOWN_KEY, "invalid_token",
                                       "invalid API key", NULL);
    }

    verdict = vc_apikey_check(k, ngx_time(), vlcf->policy.requires,
                              vlcf->policy.nrequires, reason, &outcome);

    if (verdict != VC_APIKEY_VALID) {
        id.data = (u_char *) k->id;
        id.len = k->id_len;

        if (verdict == VC_APIKEY_FORBIDDEN) {
            return ngx_vantage_auth_refuse(r, vlcf, NGX_VANTAGE_AUTH_API_KEY,
                                           NGX_HTTP_FORBIDDEN, outcome,
                                           "insufficient_scope", reason,
                                           &id);
        }

        return ngx_vantage_auth_refuse(r, vlcf, NGX_VANTAGE_AUTH_API_KEY,
                                       NGX_HTTP_UNAUTHORIZED, outcome,
                                       "invalid_token", reason, &id);
    }

    /* copied: the set may be replaced before the variables are read */

    p = ngx_pnalloc(r->pool, k->id_len + k->tenant_len + k->scopes_len + 3);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    actx->id.data = p;
    actx->id.len = k->id_len;
    p = ngx_cpymem(p, k->id, k->id_len + 1);

    actx->tenant.data = p;
    actx->tenant.len = k->tenant_len;
    p = ngx_cpymem(p, k->tenant, k->tenant_len + 1);

    actx->scopes.data = p;
    actx->scopes.len = k->scopes_len;
    ngx_memcpy(p, k->scopes, k->scopes_len + 1);

    actx->verified = 1;
    ngx_vantage_metrics_auth(r, NGX_VANTAGE_M_API_KEY, VC_AUTH_OK);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "vantage api key: key \"%V\" accepted", &actx->id);

    /* the upstream is told who called, never given the caller's secret */

    if (found->type == NGX_VANTAGE_APIKEY_HEADER
        && ngx_vantage_headers_in_remove(r, &found->lowcase) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


static ngx_table_elt_t *
ngx_vantage_apikey_header(ngx_http_request_t *r,
    ngx_vantage_apikey_src_t *src)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == src->lowcase.len
            && ngx_strncasecmp(h[i].key.data, src->lowcase.data,
                               src->lowcase.len) == 0)
        {
            return &h[i];
        }
    }
}


static ngx_int_t
ngx_vantage_apikey_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t          *value;
    ngx_vantage_ctx_t  *ctx;

    ctx = ngx_vantage_get_ctx(r->main);

    if (ctx == NULL || !ctx->apikey.verified) {
        v->not_found = 1;
        return NGX_OK;
    }

    value = (ngx_str_t *) ((char *) &ctx->apikey + data);

    v->len = value->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = value->data;

    return NGX_OK;
}


ngx_int_t
ngx_vantage_apikey_add_variables(ngx_conf_t *cf)
{
    return ngx_vantage_add_variables(cf, ngx_vantage_apikey_vars);
}


/* vantage_api_key_from header=Name | query=arg ... */
char *
ngx_vantage_apikey_from_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t *vlcf = conf;

    u_char                    *p;
    ngx_str_t                 *value, name;
    ngx_uint_t                 i, type;
    ngx_vantage_apikey_src_t  *src;

    if (vlcf->api_key_from != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    vlcf->api_key_from = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                          sizeof(ngx_vantage_apikey_src_t));
    if (vlcf->api_key_from == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "header=", 7) == 0) {
            type = NGX_VANTAGE_APIKEY_HEADER;
            name.data = value[i].data + 7;
            name.len = value[i].len - 7;

        } else if (ngx_strncmp(value[i].data, "query=", 6) == 0) {
            type = NGX_VANTAGE_APIKEY_QUERY;
            name.data = value[i].data + 6;
            name.len = value[i].len - 6;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\": use header=<name> "
                               "or query=<argument>", &value[i]);
            return NGX_CONF_ERROR;
        }

        for (p = name.data; p < name.data + name.len; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            {
                break;
            }
        }

        if (name.len == 0 || p != name.data + name.len) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid name in \"%V\": letters, digits, "
                               "'-' and '_' only", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (type == NGX_VANTAGE_APIKEY_HEADER
            && name.len == sizeof("Authorization") - 1
            && ngx_strncasecmp(name.data, (u_char *) "Authorization",
                               name.len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\": the Authorization header carries "
                               "bearer tokens, choose another header",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        src = ngx_array_push(vlcf->api_key_from);
        if (src == NULL) {
            return NGX_CONF_ERROR;
        }

        src->type = type;
        src->name = name;
        src->lowcase.len = name.len;
        src->lowcase.data = ngx_pnalloc(cf->pool, name.len);
        if (src->lowcase.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_strlow(src->lowcase.data, name.data, name.len);
    }

    return NGX_CONF_OK;
}


/* vantage_auth off | jwt | api_key | any | jwt api_key */
char *
ngx_vantage_auth_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t *vlcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i, schemes;

    if (vlcf->jwt != NGX_CONF_UNSET || vlcf->api_key != NGX_CONF_UNSET
        || vlcf->introspect_on != NGX_CONF_UNSET
        || vlcf->auth_any != NGX_CONF_UNSET_UINT)
    {
        return "conflicts with \"vantage_jwt\", \"vantage_api_key\" or "
               "another \"vantage_auth\" in the same block";
    }

    value = cf->args->elts;
    schemes = 0;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "any") == 0) {
        /* every authenticator configured where it applies: see merge */
        vlcf->auth_any = 1;
        return NGX_CONF_OK;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "jwt") == 0) {
            schemes |= NGX_VANTAGE_AUTH_JWT;

        } else if (ngx_strcmp(value[i].data, "api_key") == 0) {
            schemes |= NGX_VANTAGE_AUTH_API_KEY;

        } else if (ngx_strcmp(value[i].data, "introspect") == 0) {
            schemes |= NGX_VANTAGE_AUTH_INTROSPECT;

        } else if (ngx_strcmp(value[i].data, "off") == 0
                   && cf->args->nelts == 2)
        {
            schemes = 0;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid value \"%V\": use off, any, or one "
                               "or more of jwt, introspect and api_key",
                               &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    vlcf->auth_any = 0;
    vlcf->jwt = (schemes & NGX_VANTAGE_AUTH_JWT) ? 1 : 0;
    vlcf->api_key = (schemes & NGX_VANTAGE_AUTH_API_KEY) ? 1 : 0;
    vlcf->introspect_on = (schemes & NGX_VANTAGE_AUTH_INTROSPECT) ? 1 : 0;

    return NGX_CONF_OK;
}


/*
 * Which authenticators a location accepts.  "vantage_auth any" is
 * resolved here, where the key sources of the location are known: each
 * authenticator with a source that applies, and at least one.  A block
 * that says "vantage_jwt" or "vantage_api_key" itself does not inherit
 * "any" from outside.  Runs before the authenticators' own merges.
 */
char *
ngx_vantage_auth_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf)
{
    if (conf->auth_any == 1
        && (conf->jwt != NGX_CONF_UNSET || conf->api_key != NGX_CONF_UNSET))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_auth any\" conflicts with "
                           "\"vantage_jwt\", \"vantage_api_key\" or "
                           "\"vantage_auth\" in the same block");
        return NGX_CONF_ERROR;
    }

    if (conf->auth_any == NGX_CONF_UNSET_UINT) {
        if (conf->jwt != NGX_CONF_UNSET || conf->api_key != NGX_CONF_UNSET
            || conf->introspect_on != NGX_CONF_UNSET)
        {
            conf->auth_any = 0;

        } else {
            conf->auth_any = (prev->auth_any == NGX_CONF_UNSET_UINT)
                             ? 0 : prev->auth_any;
        }
    }

    if (!conf->auth_any) {
        ngx_conf_merge_value(conf->jwt, prev->jwt, 0);
        ngx_conf_merge_value(conf->api_key, prev->api_key, 0);
        ngx_conf_merge_value(conf->introspect_on, prev->introspect_on, 0);
        return NGX_CONF_OK;
    }

    ngx_conf_merge_ptr_value(conf->keys, prev->keys, NULL);
    ngx_conf_merge_ptr_value(conf->idps, prev->idps, NULL);
    ngx_conf_merge_ptr_value(conf->api_keys, prev->api_keys, NULL);
    ngx_conf_merge_ptr_value(conf->introspect, prev->introspect, NULL);

    conf->jwt = (conf->keys || conf->idps) ? 1 : 0;
    conf->api_key = conf->api_keys ? 1 : 0;
    conf->introspect_on = conf->introspect ? 1 : 0;

    if (!conf->jwt && !conf->api_key && !conf->introspect_on) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_auth any\" but no authenticator is "
                           "configured here: give it \"vantage_jwt_keys\", "
                           "\"vantage_jwt_jwks_url\", "
                           "\"vantage_jwt_discovery\", "
                           "\"vantage_introspect\" or \"vantage_api_keys\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


char *
ngx_vantage_apikey_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf)
{
    ngx_vantage_apikey_src_t  *src;

    ngx_conf_merge_ptr_value(conf->api_keys, prev->api_keys, NULL);
    ngx_conf_merge_ptr_value(conf->api_key_from, prev->api_key_from, NULL);

    if (conf->api_key_from == NULL) {
        conf->api_key_from = ngx_array_create(cf->pool, 1,
                                     sizeof(ngx_vantage_apikey_src_t));
        if (conf->api_key_from == NULL) {
            return NGX_CONF_ERROR;
        }

        src = ngx_array_push(conf->api_key_from);
        if (src == NULL) {
            return NGX_CONF_ERROR;
        }

        src->type = NGX_VANTAGE_APIKEY_HEADER;
        ngx_str_set(&src->name, "X-Api-Key");
        ngx_str_set(&src->lowcase, "x-api-key");
    }

    if (conf->api_key && conf->api_keys == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "API key authentication is on but no "
                           "\"vantage_api_keys\" applies here");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
