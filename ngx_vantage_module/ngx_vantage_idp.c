/* ngx_vantage_idp.c -- identity providers' key sets, through the worker */

/*
 * vantage_jwt_jwks_url and vantage_jwt_discovery name a provider's key set
 * by URL.  nginx never calls the provider: each worker process asks
 * vantage-worker (FETCH, docs/PROTOCOL.md), which fetches it with TLS
 * verified, keeps it for its Cache-Control max-age and answers from
 * memory.  The set is kept here, per process, asked for again when its
 * max-age has run out, and kept when the provider fails (the worker says
 * the copy it sends is stale; stale-if-error).
 *
 * A token whose kid the set lacks makes the process ask again, with
 * MAX_AGE set to the provider's refetch interval, at most once per
 * interval; the worker calls the provider only when its own copy is that
 * old, so all of nginx's processes together cause at most one call per
 * interval.  Requests wait for that answer, and before the first set up
 * to vantage_jwt_keys_wait, in the provider's queue: never blocking the
 * event loop, and each with a timer of its own.
 */

#include "ngx_vantage_module.h"


#define NGX_VANTAGE_IDP_BACKOFF_MIN   1000     /* ms */
#define NGX_VANTAGE_IDP_BACKOFF_MAX   30000
#define NGX_VANTAGE_IDP_REFETCH       30       /* s */
#define NGX_VANTAGE_IDP_URL_MAX       2048


static char *ngx_vantage_idp_check_url(ngx_str_t *url);
static ngx_vantage_idp_t *ngx_vantage_idp_add(ngx_conf_t *cf,
    ngx_command_t *cmd, ngx_str_t *url, ngx_str_t *issuer, time_t refetch,
    ngx_uint_t discovery);
static void ngx_vantage_idp_cleanup(void *data);
static void ngx_vantage_idp_timer(ngx_event_t *ev);
static void ngx_vantage_idp_fetch(ngx_vantage_idp_t *idp,
    ngx_uint_t refetch);
static void ngx_vantage_idp_reply(void *data, ngx_uint_t outcome,
    u_char *fields, size_t len);
static ngx_int_t ngx_vantage_idp_load(ngx_vantage_idp_t *idp, u_char *body,
    size_t len, time_t age, ngx_uint_t stale, char *errstr);
static void ngx_vantage_idp_wake(ngx_vantage_idp_t *idp);
static void ngx_vantage_auth_wait_timeout(ngx_event_t *ev);
static ngx_int_t ngx_vantage_idp_age_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_vantage_auth_scheme_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_vantage_idp_vars[] = {

    { ngx_string("vantage_jwt_keys_age"), NULL,
      ngx_vantage_idp_age_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vantage_auth_scheme"), NULL,
      ngx_vantage_auth_scheme_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


/*
 * vantage_jwt_jwks_url <url> [issuer=<iss>] [refetch=<time>]
 * vantage_jwt_discovery <issuer> [refetch=<time>]   (cmd->offset 1)
 */
char *
ngx_vantage_idp_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t *vlcf = conf;

    char                *rv;
    time_t               refetch;
    ngx_str_t           *value, issuer, s;
    ngx_uint_t           i, discovery;
    ngx_vantage_idp_t   *idp, **idpp;

    value = cf->args->elts;
    discovery = cmd->offset;

    rv = ngx_vantage_idp_check_url(&value[1]);
    if (rv != NGX_CONF_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\": the URL \"%V\" %s",
                           &cmd->name, &value[1], rv);
        return NGX_CONF_ERROR;
    }

    ngx_str_null(&issuer);
    refetch = NGX_CONF_UNSET;

    if (discovery) {
        issuer = value[1];
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (!discovery && ngx_strncmp(value[i].data, "issuer=", 7) == 0) {
            issuer.data = value[i].data + 7;
            issuer.len = value[i].len - 7;

            if (issuer.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\": an empty issuer", &cmd->name);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "refetch=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            refetch = ngx_parse_time(&s, 1);

            if (refetch == (time_t) NGX_ERROR || refetch < 1) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\": invalid refetch \"%V\": a time "
                                   "of 1s or more", &cmd->name, &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": invalid parameter \"%V\"", &cmd->name,
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (vlcf->idps == NGX_CONF_UNSET_PTR) {
        vlcf->idps = ngx_array_create(cf->pool, 2,
                                      sizeof(ngx_vantage_idp_t *));
        if (vlcf->idps == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    idpp = vlcf->idps->elts;

    for (i = 0; i < vlcf->idps->nelts; i++) {
        if (idpp[i]->url.len == value[1].len
            && ngx_strncmp(idpp[i]->url.data, value[1].data, value[1].len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\": \"%V\" is named twice here",
                               &cmd->name, &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    idp = ngx_vantage_idp_add(cf, cmd, &value[1], &issuer, refetch,
                              discovery);
    if (idp == NULL) {
        return NGX_CONF_ERROR;
    }

    idpp = ngx_array_push(vlcf->idps);
    if (idpp == NULL) {
        return NGX_CONF_ERROR;
    }

    *idpp = idp;

    return NGX_CONF_OK;
}


/* https:// with a host, no spaces or control characters, of sane length */
static char *
ngx_vantage_idp_check_url(ngx_str_t *url)
{
    u_char  *p;

    if (url->len <= sizeof("https://") - 1
        || ngx_strncasecmp(url->data, (u_char *) "https://",
                           sizeof("https://") - 1) != 0)
    {
        return "is not an https:// URL (the worker calls only providers "
               "it can verify)";
    }

    if (url->len > NGX_VANTAGE_IDP_URL_MAX) {
        return "is too long";
    }

    for (p = url->data; p < url->data + url->len; p++) {
        if (*p <= 0x20 || *p == 0x7f || *p == '"') {
            return "contains spaces, quotes or control characters";
        }
    }

    return NGX_CONF_OK;
}


/* the provider of that URL, shared by every location that names it */
static ngx_vantage_idp_t *
ngx_vantage_idp_add(ngx_conf_t *cf, ngx_command_t *cmd, ngx_str_t *url,
    ngx_str_t *issuer, time_t refetch, ngx_uint_t discovery)
{
    ngx_uint_t                i;
    ngx_pool_cleanup_t       *cln;
    ngx_vantage_idp_t        *idp, **idpp;
    ngx_vantage_main_conf_t  *vmcf;

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_vantage_module);
    idpp = vmcf->idps.elts;

    for (i = 0; i < vmcf->idps.nelts; i++) {
        idp = idpp[i];

        if (idp->url.len != url->len
            || ngx_strncmp(idp->url.data, url->data, url->len) != 0)
        {
            continue;
        }

        if (idp->discovery != discovery
            || idp->issuer.len != issuer->len
            || ngx_strncmp(idp->issuer.data, issuer->data, issuer->len) != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\": \"%V\" is named elsewhere with "
                               "another directive or issuer", &cmd->name,
                               url);
            return NULL;
        }

        if (refetch != NGX_CONF_UNSET) {
            if (idp->refetch != NGX_CONF_UNSET && idp->refetch != refetch) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%V\": \"%V\" is named elsewhere with "
                                   "another refetch", &cmd->name, url);
                return NULL;
            }

            idp->refetch = refetch;
        }

        return idp;
    }

    idp = ngx_pcalloc(cf->pool, sizeof(ngx_vantage_idp_t));
    if (idp == NULL) {
        return NULL;
    }

    idp->url.data = ngx_pstrdup(cf->pool, url);
    idp->url.len = url->len;

    if (idp->url.data == NULL) {
        return NULL;
    }

    if (issuer->len) {
        idp->issuer.data = ngx_pstrdup(cf->pool, issuer);
        idp->issuer.len = issuer->len;

        if (idp->issuer.data == NULL) {
            return NULL;
        }
    }

    idp->refetch = refetch;
    idp->discovery = discovery;
    idp->index = vmcf->idps.nelts;
    ngx_queue_init(&idp->waiting);

    /* the set a worker process holds goes with its cycle */

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_vantage_idp_cleanup;
    cln->data = idp;

    idpp = ngx_array_push(&vmcf->idps);
    if (idpp == NULL) {
        return NULL;
    }

    *idpp = idp;

    return idp;
}


char *
ngx_vantage_idp_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf)
{
    ngx_uint_t                i, j, open;
    ngx_vantage_idp_t       **idpp;
    ngx_vantage_main_conf_t  *vmcf;

    ngx_conf_merge_ptr_value(conf->idps, prev->idps, NULL);
    ngx_conf_merge_msec_value(conf->keys_wait, prev->keys_wait, 2000);

    if (conf->idps == NULL) {
        return NGX_CONF_OK;
    }

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_vantage_module);

    if (vmcf->worker == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_jwt_jwks_url\" and "
                           "\"vantage_jwt_discovery\" need \"vantage_worker\""
                           ": key sets are fetched by vantage-worker");
        return NGX_CONF_ERROR;
    }

    idpp = conf->idps->elts;
    open = conf->keys ? 1 : 0;

    for (i = 0; i < conf->idps->nelts; i++) {

        if (idpp[i]->refetch == NGX_CONF_UNSET) {
            idpp[i]->refetch = NGX_VANTAGE_IDP_REFETCH;
        }

        if (idpp[i]->issuer.len == 0) {
            open++;
            continue;
        }

        for (j = 0; j < i; j++) {
            if (idpp[j]->issuer.len == idpp[i]->issuer.len
                && ngx_strncmp(idpp[j]->issuer.data, idpp[i]->issuer.data,
                               idpp[i]->issuer.len) == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "two key sets for the issuer \"%V\" apply "
                                   "here", &idpp[i]->issuer);
                return NGX_CONF_ERROR;
            }
        }
    }

    if (open > 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "more than one key source without an issuer "
                           "applies here (\"vantage_jwt_keys\", or "
                           "\"vantage_jwt_jwks_url\" without issuer=): a "
                           "token could not be matched to one");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_vantage_idp_add_variables(ngx_conf_t *cf)
{
    return ngx_vantage_add_variables(cf, ngx_vantage_idp_vars);
}


/* each worker process asks for every provider's set as it starts */
ngx_int_t
ngx_vantage_idp_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                i;
    ngx_vantage_idp_t       **idpp, *idp;
    ngx_vantage_main_conf_t  *vmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    vmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_vantage_module);
    if (vmcf == NULL) {
        return NGX_OK;
    }

    idpp = vmcf->idps.elts;

    for (i = 0; i < vmcf->idps.nelts; i++) {
        idp = idpp[i];

        if (idp->refetch == NGX_CONF_UNSET) {
            idp->refetch = NGX_VANTAGE_IDP_REFETCH;
        }

        idp->timer.handler = ngx_vantage_idp_timer;
        idp->timer.data = idp;
        idp->timer.log = cycle->log;
        idp->timer.cancelable = 1;

        ngx_add_timer(&idp->timer, 1);
    }

    return NGX_OK;
}


static void
ngx_vantage_idp_cleanup(void *data)
{
    ngx_vantage_idp_t  *idp = data;

    ngx_vantage_jwks_free(idp->keys);
    idp->keys = NULL;
}


static void
ngx_vantage_idp_timer(ngx_event_t *ev)
{
    ngx_vantage_idp_fetch(ev->data, 0);
}


/* asks the worker for the set; one call at a time */
static void
ngx_vantage_idp_fetch(ngx_vantage_idp_t *idp, ngx_uint_t refetch)
{
    u_char                      max_age[4];
    ngx_uint_t                  n;
    ngx_vantage_worker_field_t  fields[3];

    if (idp->call) {
        return;
    }

    if (idp->timer.timer_set) {
        ngx_del_timer(&idp->timer);
    }

    ngx_memzero(fields, sizeof(fields));

    fields[0].tag = VC_TAG_IDP;
    fields[0].value = idp->url;
    fields[1].tag = VC_TAG_FETCH_KIND;
    ngx_str_set(&fields[1].value, "jwks");
    n = 2;

    if (refetch) {
        max_age[0] = (u_char) (idp->refetch >> 24);
        max_age[1] = (u_char) (idp->refetch >> 16);
        max_age[2] = (u_char) (idp->refetch >> 8);
        max_age[3] = (u_char) idp->refetch;

        fields[2].tag = VC_TAG_MAX_AGE;
        fields[2].value.data = max_age;
        fields[2].value.len = 4;
        n = 3;

        idp->refetched = ngx_time();
    }

    /* the frame is copied: max_age need not outlive the call */

    idp->call = ngx_vantage_worker_call(VC_FRAME_FETCH, fields, n,
                                        ngx_vantage_idp_reply, idp);

    if (idp->call == NULL) {
        /* out of memory (logged): try again later */
        ngx_add_timer(&idp->timer, NGX_VANTAGE_IDP_BACKOFF_MAX);
        return;
    }

    idp->refetching = refetch ? 1 : 0;
}


static void
ngx_vantage_idp_reply(void *data, ngx_uint_t outcome, u_char *fields,
    size_t len)
{
    ngx_vantage_idp_t  *idp = data;

    char                         errstr[VC_ERRSTR_LEN];
    u_char                      *err;
    uint32_t                     status;
    ngx_str_t                    error, body;
    ngx_msec_t                   next;
    ngx_uint_t                   stale, level;
    ngx_cycle_t                 *cycle;
    ngx_vantage_worker_reply_t   rep;

    cycle = (ngx_cycle_t *) ngx_cycle;
    idp->call = NULL;
    idp->refetching = 0;

    errstr[0] = '\0';

    ngx_vantage_worker_reply_read(fields, outcome == NGX_VANTAGE_WORKER_REPLY
                                          ? len : 0, &rep);

    status = rep.status;
    stale = rep.stale;
    error = rep.error;
    body = rep.body;

    if (error.len == 0) {
        ngx_str_set(&error, "no reason given");
    }

    if (outcome != NGX_VANTAGE_WORKER_REPLY) {
        err = (u_char *) (outcome == NGX_VANTAGE_WORKER_TIMEOUT
                          ? "the worker did not answer in time"
                          : "the worker cannot be reached");
        ngx_cpystrn((u_char *) errstr, err, sizeof(errstr));

    } else if (status != NGX_HTTP_OK || body.len == 0) {
        ngx_snprintf((u_char *) errstr, sizeof(errstr) - 1,
                     "the worker answered %uD: %V%Z", status, &error);

    } else if (ngx_vantage_idp_load(idp, body.data, body.len, rep.age,
                                    stale, errstr)
               == NGX_OK)
    {
        /* a stale copy is the provider failing all the same */
        ngx_vantage_metrics_jwks(idp->index, idp->fetched, stale);

        if (stale) {
            ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                          "vantage jwt: the identity provider \"%V\" fails "
                          "(%V); its key set in use is %T s old",
                          &idp->url, &error, ngx_time() - idp->fetched);

            next = NGX_VANTAGE_IDP_BACKOFF_MIN;

        } else {
            idp->backoff = 0;
            next = (rep.max_age ? rep.max_age : 1) * 1000;
        }

        goto done;
    }

    /* no set came: the last good one, if any, stays */

    ngx_vantage_metrics_jwks(idp->index, idp->keys ? idp->fetched : 0, 1);

    level = idp->keys ? NGX_LOG_WARN : NGX_LOG_ERR;

    if (idp->keys) {
        ngx_log_error(level, cycle->log, 0,
                      "vantage jwt: no key set for \"%V\": %s; the set in "
                      "use is %T s old", &idp->url, errstr,
                      ngx_time() - idp->fetched);
    } else {
        ngx_log_error(level, cycle->log, 0,
                      "vantage jwt: no key set for \"%V\": %s", &idp->url,
                      errstr);
    }

    idp->backoff = idp->backoff ? ngx_min(idp->backoff * 2,
                                          NGX_VANTAGE_IDP_BACKOFF_MAX)
                                : NGX_VANTAGE_IDP_BACKOFF_MIN;
    next = idp->backoff;

done:

    if (idp->want_refetch && idp->keys
        && ngx_time() - idp->refetched >= idp->refetch)
    {
        /* a token named an unknown kid while a plain fetch ran */
        idp->want_refetch = 0;
        ngx_vantage_idp_fetch(idp, 1);

        if (idp->call) {
            return;
        }
    }

    idp->want_refetch = 0;

    if (!ngx_exiting && !ngx_terminate && !ngx_quit) {
        if (idp->timer.timer_set) {
            ngx_del_timer(&idp->timer);
        }

        ngx_add_timer(&idp->timer, next);
    }

    if (idp->keys) {
        ngx_vantage_idp_wake(idp);
    }
}


/* a set from the worker; the one in use stays unless this one is good */
static ngx_int_t
ngx_vantage_idp_load(ngx_vantage_idp_t *idp, u_char *body, size_t len,
    time_t age, ngx_uint_t stale, char *errstr)
{
    void         *data;
    size_t        nkeys;
    vc_keyset_t  *ks;
    ngx_cycle_t  *cycle;

    cycle = (ngx_cycle_t *) ngx_cycle;

    if (ngx_vantage_jwks_load(body, len, cycle->log, &data, &nkeys, errstr)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ks = data;

    if (idp->keys && ngx_memcmp(idp->keys->digest, ks->digest, 32) == 0) {
        /* the same set, fetched again */
        ngx_vantage_jwks_free(ks);

    } else {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "vantage jwt: %uz key%s from \"%V\" in use%s",
                      ks->nkeys, ks->nkeys == 1 ? "" : "s", &idp->url,
                      idp->keys ? ", replacing the previous set" : "");

        ngx_vantage_jwks_free(idp->keys);
        idp->keys = ks;
    }

    idp->fetched = ngx_time() - age;
    idp->stale = stale ? 1 : 0;

    return NGX_OK;
}


/* every request waiting on the provider decides again, now */
static void
ngx_vantage_idp_wake(ngx_vantage_idp_t *idp)
{
    ngx_queue_t             *q;
    ngx_vantage_auth_ctx_t  *actx;

    /* each resume takes its request off the queue */

    while (!ngx_queue_empty(&idp->waiting)) {
        q = ngx_queue_head(&idp->waiting);
        actx = ngx_queue_data(q, ngx_vantage_auth_ctx_t, queue);
        ngx_vantage_auth_resume(actx);
    }
}


/*
 * The keys to verify a parsed token with: those of the source whose issuer
 * is the token's iss, else the one source without an issuer.  NULL with
 * *rc set when there are none: a refusal sent, or NGX_AGAIN when the
 * request waits for the provider's set (a first one, or one fetched again
 * for a kid the set lacks).
 */
vc_keyset_t *
ngx_vantage_idp_keys(ngx_http_request_t *r, ngx_vantage_loc_conf_t *vlcf,
    ngx_vantage_ctx_t *ctx, vc_jwt_t *jwt, ngx_int_t *rc)
{
    size_t               len;
    json_t              *iss;
    ngx_uint_t           i;
    const char          *s;
    ngx_log_handler_pt   handler;
    ngx_vantage_idp_t   *idp, **idpp;

    iss = json_object_get(jwt->claims, "iss");
    s = json_is_string(iss) ? json_string_value(iss) : NULL;
    len = s ? json_string_length(iss) : 0;

    idpp = vlcf->idps->elts;
    idp = NULL;

    for (i = 0; s && i < vlcf->idps->nelts; i++) {
        if (idpp[i]->issuer.len == len && len
            && ngx_strncmp(idpp[i]->issuer.data, s, len) == 0)
        {
            idp = idpp[i];
            break;
        }
    }

    if (idp == NULL) {
        if (vlcf->keys) {
            ctx->jwt.idp = NULL;
            return vlcf->keys->data;
        }

        for (i = 0; i < vlcf->idps->nelts; i++) {
            if (idpp[i]->issuer.len == 0) {
                idp = idpp[i];
                break;
            }
        }

        if (idp == NULL) {
            *rc = ngx_vantage_auth_refuse(r, vlcf, NGX_VANTAGE_AUTH_JWT,
                                          NGX_HTTP_UNAUTHORIZED,
                                          VC_AUTH_CLAIM_REFUSED,
                                          "invalid_token",
                                          "the token's issuer is not "
                                          "accepted here", NULL);
            return NULL;
        }
    }

    if (idp->keys == NULL) {
        if (ctx->auth.waited) {
            /* without the request line, which may carry a token */
            handler = r->connection->log->handler;
            r->connection->log->handler = NULL;

            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "vantage jwt: no key set from \"%V\" within "
                          "%M ms, client: %V", &idp->url, vlcf->keys_wait,
                          &r->connection->addr_text);

            r->connection->log->handler = handler;

            ngx_vantage_metrics_auth(r, NGX_VANTAGE_M_JWT,
                                     VC_AUTH_UNAVAILABLE);

            *rc = ngx_vantage_auth_unavailable(r, "the identity provider's "
                                               "keys are not available yet");
            return NULL;
        }

        ngx_vantage_idp_fetch(idp, 0);

        *rc = ngx_vantage_auth_wait(r, &ctx->auth, idp, vlcf->keys_wait);
        return NULL;
    }

    if (jwt->kid && !ctx->auth.waited
        && !vc_jwt_kid_known(jwt, idp->keys))
    {
        if (idp->call && idp->refetching) {
            *rc = ngx_vantage_auth_wait(r, &ctx->auth, idp, vlcf->keys_wait);
            return NULL;
        }

        if (ngx_time() - idp->refetched >= idp->refetch) {
            if (idp->call) {
                idp->want_refetch = 1;

            } else {
                ngx_vantage_idp_fetch(idp, 1);
            }

            if (idp->call) {
                *rc = ngx_vantage_auth_wait(r, &ctx->auth, idp,
                                            vlcf->keys_wait);
                return NULL;
            }
        }

        /* asked a moment ago: the token is refused as it is */
    }

    ctx->jwt.idp = idp;

    return idp->keys;
}


/*
 * The key sets a location's tokens are verified with, into the cache key:
 * a new set of any of them retires the entries they verified.
 */
ngx_int_t
ngx_vantage_idp_keys_digest(ngx_vantage_loc_conf_t *vlcf, EVP_MD_CTX *md)
{
    ngx_uint_t           i;
    vc_keyset_t         *ks;
    ngx_vantage_idp_t  **idpp;

    static u_char        none[32];

    if (vlcf->keys) {
        ks = vlcf->keys->data;

        if (EVP_DigestUpdate(md, ks->digest, 32) != 1) {
            return NGX_ERROR;
        }
    }

    if (vlcf->idps == NULL) {
        return NGX_OK;
    }

    idpp = vlcf->idps->elts;

    for (i = 0; i < vlcf->idps->nelts; i++) {
        if (EVP_DigestUpdate(md, idpp[i]->keys ? idpp[i]->keys->digest
                                               : none, 32)
            != 1)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * Parks the request until ngx_vantage_auth_resume(): in idp's queue when
 * it waits for a key set, alone when it waits for an introspection.  The
 * timer is not cancelable, so that a gracefully exiting nginx process
 * answers the request before it goes.
 */
ngx_int_t
ngx_vantage_auth_wait(ngx_http_request_t *r, ngx_vantage_auth_ctx_t *actx,
    ngx_vantage_idp_t *idp, ngx_msec_t timeout)
{
    actx->request = r;
    actx->state = NGX_VANTAGE_AUTH_WAITING;
    actx->idp = idp;

    if (idp) {
        ngx_queue_insert_tail(&idp->waiting, &actx->queue);
    }

    actx->timer.handler = ngx_vantage_auth_wait_timeout;
    actx->timer.data = actx;
    actx->timer.log = r->connection->log;

    ngx_add_timer(&actx->timer, timeout);

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

    return NGX_AGAIN;
}


static void
ngx_vantage_auth_wait_timeout(ngx_event_t *ev)
{
    ngx_vantage_auth_ctx_t  *actx = ev->data;

    actx->timed_out = 1;

    if (actx->call) {
        ngx_vantage_worker_cancel(actx->call);
        actx->call = NULL;
    }

    ngx_vantage_auth_resume(actx);
}


/* the request's authentication goes on from where it waited */
void
ngx_vantage_auth_resume(ngx_vantage_auth_ctx_t *actx)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = actx->request;
    c = r->connection;

    if (actx->idp) {
        ngx_queue_remove(&actx->queue);
        actx->idp = NULL;
    }

    if (actx->timer.timer_set) {
        ngx_del_timer(&actx->timer);
    }

    actx->state = NGX_VANTAGE_AUTH_RESUMED;
    actx->waited = 1;

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


/* the request went away while it waited */
void
ngx_vantage_auth_wait_cleanup(ngx_vantage_auth_ctx_t *actx)
{
    if (actx->idp) {
        ngx_queue_remove(&actx->queue);
        actx->idp = NULL;
    }

    if (actx->timer.timer_set) {
        ngx_del_timer(&actx->timer);
    }

    if (actx->call) {
        ngx_vantage_worker_cancel(actx->call);
        actx->call = NULL;
    }
}


/*
 * 503 with Retry-After and a JSON body: the credential could not be
 * checked, which is not the client's fault (RFC 6750 leaves this to the
 * server; a 401 would make a client drop a good token).
 */
ngx_int_t
ngx_vantage_auth_unavailable(ngx_http_request_t *r, const char *description)
{
    if (ngx_vantage_add_header(r, "Retry-After", sizeof("Retry-After") - 1,
                               (u_char *) "1", 1)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_vantage_send_json(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "temporarily_unavailable", description);
}


static ngx_int_t
ngx_vantage_idp_age_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char             *p;
    ngx_vantage_ctx_t  *ctx;

    ctx = ngx_vantage_get_ctx(r->main);

    if (ctx == NULL || !ctx->jwt.verified || ctx->jwt.idp == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%T", ngx_max(ngx_time() - ctx->jwt.idp->fetched,
                                          0))
             - p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = p;

    return NGX_OK;
}


static ngx_int_t
ngx_vantage_auth_scheme_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_vantage_ctx_t  *ctx;

    ctx = ngx_vantage_get_ctx(r->main);

    if (ctx != NULL && ctx->apikey.verified) {
        ngx_str_set(v, "api_key");

    } else if (ctx != NULL && ctx->jwt.verified) {
        if (ctx->jwt.introspected) {
            ngx_str_set(v, "introspect");

        } else {
            ngx_str_set(v, "jwt");
        }

    } else {
        v->not_found = 1;
        return NGX_OK;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
