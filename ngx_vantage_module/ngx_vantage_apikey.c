/* ngx_vantage_apikey.c -- API keys: the key file, its reload, the check */

#include <openssl/evp.h>

#include "ngx_vantage_module.h"


#define NGX_VANTAGE_APIKEYS_MAX_SIZE  (4 * 1024 * 1024)

/* longer than any key vantagectl makes; bounds the hashing of junk */
#define NGX_VANTAGE_APIKEY_MAX_LEN    1024


static ngx_int_t ngx_vantage_apikeys_load(ngx_vantage_apikeys_t *ak,
    ngx_log_t *log, ngx_file_info_t *fi, vc_apikeys_t **set, char *errstr);
static void ngx_vantage_apikeys_free(vc_apikeys_t *set);
static void ngx_vantage_apikeys_cleanup(void *data);
static void ngx_vantage_apikeys_check(ngx_event_t *ev);
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


/*
 * vantage_api_keys file: read and checked here, so that a bad file fails
 * "nginx -t" with the entry and the problem; each worker process then
 * watches it for changes, as it does the JWT key files.
 */
char *
ngx_vantage_apikey_keys_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t *vlcf = conf;

    char                      errstr[VC_ERRSTR_LEN];
    ngx_str_t                *value, path;
    ngx_uint_t                i;
    ngx_file_info_t           fi;
    ngx_pool_cleanup_t       *cln;
    ngx_vantage_apikeys_t    *ak, **akp;
    ngx_vantage_main_conf_t  *vmcf;

    if (vlcf->api_keys != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;
    path = value[1];

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_vantage_module);
    akp = vmcf->apikeysets.elts;

    for (i = 0; i < vmcf->apikeysets.nelts; i++) {
        if (akp[i]->path.len == path.len
            && ngx_strncmp(akp[i]->path.data, path.data, path.len) == 0)
        {
            vlcf->api_keys = akp[i];
            return NGX_CONF_OK;
        }
    }

    ak = ngx_pcalloc(cf->pool, sizeof(ngx_vantage_apikeys_t));
    if (ak == NULL) {
        return NGX_CONF_ERROR;
    }

    /* ngx_conf_full_name() leaves the name NUL-terminated */
    ak->path = path;

    if (ngx_vantage_apikeys_load(ak, cf->log, &fi, &ak->set, errstr)
        != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%V \"%V\": %s",
                           &cmd->name, &value[1], errstr);
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_vantage_apikeys_free(ak->set);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_vantage_apikeys_cleanup;
    cln->data = ak;

    akp = ngx_array_push(&vmcf->apikeysets);
    if (akp == NULL) {
        return NGX_CONF_ERROR;
    }

    *akp = ak;
    vlcf->api_keys = ak;

    return NGX_CONF_OK;
}


/*
 * Reads and parses the file into a new set.  Called at configuration time
 * and from a timer in each worker process, never from a request handler;
 * the file is local and small.
 */
static ngx_int_t
ngx_vantage_apikeys_load(ngx_vantage_apikeys_t *ak, ngx_log_t *log,
    ngx_file_info_t *fi, vc_apikeys_t **set, char *errstr)
{
    u_char        *buf;
    size_t         size;
    ssize_t        n;
    ngx_fd_t       fd;
    ngx_err_t      err;
    vc_apikeys_t  *s;

    buf = NULL;
    s = NULL;

    fd = ngx_open_file(ak->path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        err = ngx_errno;
        ngx_snprintf((u_char *) errstr, VC_ERRSTR_LEN, "cannot open: %s%Z",
                     strerror(err));
        return NGX_ERROR;
    }

    if (ngx_fd_info(fd, fi) == NGX_FILE_ERROR) {
        err = ngx_errno;
        ngx_snprintf((u_char *) errstr, VC_ERRSTR_LEN, "cannot stat: %s%Z",
                     strerror(err));
        goto failed;
    }

    size = ngx_file_size(fi);

    if (size > NGX_VANTAGE_APIKEYS_MAX_SIZE) {
        ngx_cpystrn((u_char *) errstr, (u_char *) "file is larger than 4m",
                    VC_ERRSTR_LEN);
        goto failed;
    }

    buf = ngx_alloc(size + 1, log);
    if (buf == NULL) {
        ngx_cpystrn((u_char *) errstr, (u_char *) "out of memory",
                    VC_ERRSTR_LEN);
        goto failed;
    }

    n = ngx_read_fd(fd, buf, size);

    if (n < 0 || (size_t) n != size) {
        ngx_cpystrn((u_char *) errstr, (u_char *) "short read",
                    VC_ERRSTR_LEN);
        goto failed;
    }

    s = ngx_calloc(sizeof(vc_apikeys_t), log);
    if (s == NULL) {
        ngx_cpystrn((u_char *) errstr, (u_char *) "out of memory",
                    VC_ERRSTR_LEN);
        goto failed;
    }

    if (vc_apikeys_load(s, (char *) buf, size, errstr, VC_ERRSTR_LEN)
        != VC_OK)
    {
        goto failed;
    }

    ngx_free(buf);
    ngx_close_file(fd);

    ak->uniq = ngx_file_uniq(fi);
    ak->mtime = ngx_file_mtime(fi);
    ak->mtime_nsec = fi->st_mtim.tv_nsec;
    ak->size = ngx_file_size(fi);

    *set = s;

    return NGX_OK;

failed:

    if (buf) {
        ngx_free(buf);
    }

    if (s) {
        ngx_free(s);
    }

    ngx_close_file(fd);

    return NGX_ERROR;
}


static void
ngx_vantage_apikeys_free(vc_apikeys_t *set)
{
    if (set) {
        vc_apikeys_free(set);
        ngx_free(set);
    }
}


static void
ngx_vantage_apikeys_cleanup(void *data)
{
    ngx_vantage_apikeys_t  *ak = data;

    ngx_vantage_apikeys_free(ak->set);
    ak->set = NULL;
}


ngx_int_t
ngx_vantage_apikey_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                 i;
    ngx_vantage_apikeys_t    **akp;
    ngx_vantage_main_conf_t   *vmcf;

    if (ngx_get_conf(cycle->conf_ctx, ngx_http_module) == NULL) {
        return NGX_OK;
    }

    vmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_vantage_module);
    if (vmcf == NULL) {
        return NGX_OK;
    }

    akp = vmcf->apikeysets.elts;

    for (i = 0; i < vmcf->apikeysets.nelts; i++) {
        akp[i]->timer.handler = ngx_vantage_apikeys_check;
        akp[i]->timer.data = akp[i];
        akp[i]->timer.log = cycle->log;

        /* a worker process that is shutting down does not wait for it */
        akp[i]->timer.cancelable = 1;

        ngx_add_timer(&akp[i]->timer, vmcf->keys_check_interval);
    }

    return NGX_OK;
}


static void
ngx_vantage_apikeys_check(ngx_event_t *ev)
{
    ngx_vantage_apikeys_t *ak = ev->data;

    char                      errstr[VC_ERRSTR_LEN];
    vc_apikeys_t             *set;
    ngx_file_info_t           fi;
    ngx_vantage_main_conf_t  *vmcf;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    vmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_vantage_module);

    ngx_add_timer(ev, vmcf->keys_check_interval);

    if (ngx_file_info(ak->path.data, &fi) == NGX_FILE_ERROR) {
        if (!ak->failed) {
            ngx_log_error(NGX_LOG_ERR, ev->log, ngx_errno,
                          "vantage api key: key file \"%V\" cannot be read, "
                          "the keys loaded before stay in force",
                          &ak->path);
            ak->failed = 1;
        }

        return;
    }

    if (ngx_file_uniq(&fi) == ak->uniq
        && ngx_file_mtime(&fi) == ak->mtime
        && fi.st_mtim.tv_nsec == ak->mtime_nsec
        && ngx_file_size(&fi) == ak->size)
    {
        return;
    }

    if (ngx_vantage_apikeys_load(ak, ev->log, &fi, &set, errstr) != NGX_OK) {

        /* remembered as it is now: a bad file is logged once per change */

        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "vantage api key: key file \"%V\" not reloaded: %s; "
                      "the keys loaded before stay in force",
                      &ak->path, errstr);

        ak->failed = 1;
        ak->uniq = ngx_file_uniq(&fi);
        ak->mtime = ngx_file_mtime(&fi);
        ak->mtime_nsec = fi.st_mtim.tv_nsec;
        ak->size = ngx_file_size(&fi);

        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, ev->log, 0,
                  "vantage api key: key file \"%V\" reloaded, %uz keys",
                  &ak->path, set->nkeys);

    /*
     * no request points into the old set: the check never suspends, and
     * what the variables show was copied into the request's pool
     */

    ngx_vantage_apikeys_free(ak->set);

    ak->set = set;
    ak->failed = 0;
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
                                       "invalid_token", "invalid API key",
                                       NULL);
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

    k = vc_apikeys_find(vlcf->api_keys->set, digest);

    if (k == NULL) {
        return ngx_vantage_auth_refuse(r, vlcf, NGX_VANTAGE_AUTH_API_KEY,
                                       NGX_HTTP_UNAUTHORIZED,
                                       "invalid_token", "invalid API key",
                                       NULL);
    }

    verdict = vc_apikey_check(k, ngx_time(), vlcf->policy.requires,
                              vlcf->policy.nrequires, reason);

    if (verdict != VC_APIKEY_VALID) {
        id.data = (u_char *) k->id;
        id.len = k->id_len;

        if (verdict == VC_APIKEY_FORBIDDEN) {
            return ngx_vantage_auth_refuse(r, vlcf, NGX_VANTAGE_AUTH_API_KEY,
                                           NGX_HTTP_FORBIDDEN,
                                           "insufficient_scope", reason,
                                           &id);
        }

        return ngx_vantage_auth_refuse(r, vlcf, NGX_VANTAGE_AUTH_API_KEY,
                                       NGX_HTTP_UNAUTHORIZED,
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
    ngx_http_variable_t  *var, *v;

    for (v = ngx_vantage_apikey_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
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

    if (vlcf->jwt != NGX_CONF_UNSET || vlcf->api_key != NGX_CONF_UNSET) {
        return "conflicts with \"vantage_jwt\", \"vantage_api_key\" or "
               "another \"vantage_auth\" in the same block";
    }

    value = cf->args->elts;
    schemes = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "jwt") == 0) {
            schemes |= NGX_VANTAGE_AUTH_JWT;

        } else if (ngx_strcmp(value[i].data, "api_key") == 0) {
            schemes |= NGX_VANTAGE_AUTH_API_KEY;

        } else if ((ngx_strcmp(value[i].data, "any") == 0
                    || ngx_strcmp(value[i].data, "off") == 0)
                   && cf->args->nelts == 2)
        {
            schemes = value[i].data[1] == 'n'
                      ? NGX_VANTAGE_AUTH_JWT|NGX_VANTAGE_AUTH_API_KEY : 0;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid value \"%V\": use off, jwt, api_key "
                               "or any", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    vlcf->jwt = (schemes & NGX_VANTAGE_AUTH_JWT) ? 1 : 0;
    vlcf->api_key = (schemes & NGX_VANTAGE_AUTH_API_KEY) ? 1 : 0;

    return NGX_CONF_OK;
}


char *
ngx_vantage_apikey_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf)
{
    ngx_vantage_apikey_src_t  *src;

    ngx_conf_merge_value(conf->api_key, prev->api_key, 0);
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
