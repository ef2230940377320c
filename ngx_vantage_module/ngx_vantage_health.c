/* ngx_vantage_health.c -- /healthz and /readyz for Kubernetes probes */

/*
 * vantage_health live answers 200 while the worker process runs: it does
 * no I/O, so a liveness probe never fails because something the gateway
 * depends on is away (restarting nginx would not bring that back).
 *
 * vantage_health ready asks what this worker process depends on, never
 * blocking the event loop:
 *
 *   - Redis (vantage_redis): a PING through this process's pipelined
 *     connection (ngx_vantage_redis.c).  The adapter keeps no record of
 *     its last good reply, and a connection that is up may still be dead,
 *     so a round trip is the only proof; it costs Redis one PING per probe.
 *     A circuit breaker that is open, or a reconnection backing off, fails
 *     the check at once, without a PING;
 *   - vantage-worker (vantage_worker): a PING frame over the hand-off
 *     socket (docs/PROTOCOL.md), which the worker answers 200 only once its
 *     queue can make a job durable; 503 with its reason otherwise;
 *   - keys: every key file of ngx_vantage_watch.c is in memory (a file that
 *     failed its last reload still has its earlier keys in force, which is
 *     ready, and said so), and every identity provider's key set
 *     (ngx_vantage_idp.c) has been fetched at least once.  In memory: no
 *     I/O.
 *
 * The calls run in parallel under one timer (timeout=, default 1s); what
 * has not answered by then fails.  A client that goes away meanwhile
 * cancels them (ngx_http_cleanup_add()), so their callbacks do nothing.
 */

#include "ngx_vantage_module.h"


#define NGX_VANTAGE_HEALTH_REDIS      0
#define NGX_VANTAGE_HEALTH_WORKER     1
#define NGX_VANTAGE_HEALTH_KEYS       2
#define NGX_VANTAGE_HEALTH_N          3

#define NGX_VANTAGE_HEALTH_DETAIL_MAX 256     /* bytes of a reason shown */


typedef struct {
    ngx_uint_t                  ready;     /* 0: live */
    ngx_msec_t                  timeout;
} ngx_vantage_health_conf_t;


/* one check's outcome: "ok", "not_configured", or how it failed */
typedef struct {
    const char                 *state;
    ngx_str_t                   detail;    /* empty: nothing to add */
    unsigned                    failed:1;
} ngx_vantage_health_check_t;


typedef struct {
    ngx_http_request_t         *request;
    ngx_vantage_health_conf_t  *conf;
    ngx_vantage_redis_call_t   *redis;
    ngx_vantage_worker_call_t  *worker;
    ngx_event_t                 timer;
    ngx_uint_t                  pending;   /* checks still to answer */
    ngx_vantage_health_check_t  checks[NGX_VANTAGE_HEALTH_N];
} ngx_vantage_health_ctx_t;


static ngx_int_t ngx_vantage_health_live(ngx_http_request_t *r);
static ngx_int_t ngx_vantage_health_ready(ngx_http_request_t *r);
static ngx_int_t ngx_vantage_health_method(ngx_http_request_t *r);
static void ngx_vantage_health_redis(ngx_vantage_health_ctx_t *ctx,
    ngx_vantage_main_conf_t *vmcf);
static void ngx_vantage_health_redis_reply(void *data, redisReply *reply);
static void ngx_vantage_health_worker(ngx_vantage_health_ctx_t *ctx,
    ngx_vantage_main_conf_t *vmcf);
static void ngx_vantage_health_worker_reply(void *data, ngx_uint_t outcome,
    u_char *fields, size_t len);
static void ngx_vantage_health_keys(ngx_vantage_health_ctx_t *ctx,
    ngx_vantage_main_conf_t *vmcf);
static void ngx_vantage_health_timeout(ngx_event_t *ev);
static void ngx_vantage_health_done(ngx_vantage_health_ctx_t *ctx);
static ngx_int_t ngx_vantage_health_send(ngx_vantage_health_ctx_t *ctx);
static void ngx_vantage_health_set(ngx_vantage_health_ctx_t *ctx,
    ngx_uint_t check, const char *state, const char *fmt, ...);
static void ngx_vantage_health_cleanup(void *data);


static ngx_str_t  ngx_vantage_health_allow = ngx_string("GET, HEAD");

static ngx_str_t  ngx_vantage_health_ok = ngx_string("{\"status\":\"ok\"}\n");

static const char  *ngx_vantage_health_names[NGX_VANTAGE_HEALTH_N] = {
    "redis", "worker", "keys"
};


/* vantage_health live | ready [timeout=<time>] */
char *
ngx_vantage_health_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t  *vlcf = conf;

    ngx_str_t                  *value, s;
    ngx_msec_t                  timeout;
    ngx_http_core_loc_conf_t   *clcf;
    ngx_vantage_health_conf_t  *hcf;

    if (vlcf->health != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    hcf = ngx_pcalloc(cf->pool, sizeof(ngx_vantage_health_conf_t));
    if (hcf == NULL) {
        return NGX_CONF_ERROR;
    }

    hcf->timeout = 1000;

    if (ngx_strcmp(value[1].data, "ready") == 0) {
        hcf->ready = 1;

    } else if (ngx_strcmp(value[1].data, "live") != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_health\": invalid check \"%V\" "
                           "(live or ready)", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 3) {

        if (!hcf->ready) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"vantage_health live\" takes no parameters "
                               "(it asks nothing): \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        if (ngx_strncmp(value[2].data, "timeout=", 8) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"vantage_health\": invalid parameter \"%V\" "
                               "(timeout=<time>)", &value[2]);
            return NGX_CONF_ERROR;
        }

        s.data = value[2].data + 8;
        s.len = value[2].len - 8;

        timeout = ngx_parse_time(&s, 0);

        if (timeout == (ngx_msec_t) NGX_ERROR || timeout == 0
            || timeout > 60000)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"vantage_health\": invalid \"%V\" (a time "
                               "from 1ms to 60s)", &value[2]);
            return NGX_CONF_ERROR;
        }

        hcf->timeout = timeout;
    }

    vlcf->health = hcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = hcf->ready ? ngx_vantage_health_ready
                               : ngx_vantage_health_live;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_vantage_health_live(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    rc = ngx_vantage_health_method(r);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    return ngx_vantage_send_nostore(r, NULL, NGX_HTTP_OK,
                                    &ngx_vantage_json_type,
                                    &ngx_vantage_health_ok);
}


/*
 * NGX_DECLINED for GET and HEAD, their body discarded: the check goes on.
 * Anything else is answered 405 here, and the caller returns what this
 * returns.
 */
static ngx_int_t
ngx_vantage_health_method(ngx_http_request_t *r)
{
    ngx_int_t  rc;
    ngx_str_t  body;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        return NGX_DECLINED;
    }

    if (ngx_vantage_add_header(r, "Allow", sizeof("Allow") - 1,
                               ngx_vantage_health_allow.data,
                               ngx_vantage_health_allow.len)
        != NGX_OK
        || ngx_vantage_json_error(r->pool, "method_not_allowed",
                                  "health checks are read with GET or HEAD",
                                  &body)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_vantage_send_nostore(r, NULL, NGX_HTTP_NOT_ALLOWED,
                                    &ngx_vantage_json_type, &body);
}


static ngx_int_t
ngx_vantage_health_ready(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_http_cleanup_t        *cln;
    ngx_vantage_loc_conf_t    *vlcf;
    ngx_vantage_main_conf_t   *vmcf;
    ngx_vantage_health_ctx_t  *ctx;

    rc = ngx_vantage_health_method(r);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);
    vmcf = ngx_http_get_module_main_conf(r, ngx_vantage_module);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_vantage_health_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_vantage_health_cleanup;
    cln->data = ctx;

    ctx->request = r;
    ctx->conf = vlcf->health;

    ctx->timer.handler = ngx_vantage_health_timeout;
    ctx->timer.data = ctx;
    ctx->timer.log = r->connection->log;

    /*
     * one for this handler itself: a check that fails at once (Redis's
     * breaker open) does not answer before the others have been asked
     */
    ctx->pending = 1;

    ngx_vantage_health_keys(ctx, vmcf);
    ngx_vantage_health_redis(ctx, vmcf);
    ngx_vantage_health_worker(ctx, vmcf);

    if (--ctx->pending == 0) {
        return ngx_vantage_health_send(ctx);
    }

    /*
     * not cancelable: a worker process shutting down gracefully answers
     * the probe before it goes, within the timeout
     */
    ngx_add_timer(&ctx->timer, ctx->conf->timeout);

    /* a client that closes its connection frees the request: the cleanup */
    if (!r->discard_body) {
        r->read_event_handler = ngx_http_test_reading;
    }

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_vantage_health_redis(ngx_vantage_health_ctx_t *ctx,
    ngx_vantage_main_conf_t *vmcf)
{
    ngx_vantage_redis_cmd_t  cmd;

    static const char       *argv[] = { "PING" };
    static const size_t      argvlen[] = { 4 };

    if (vmcf->redis == NULL) {
        ngx_vantage_health_set(ctx, NGX_VANTAGE_HEALTH_REDIS,
                               "not_configured", NULL);
        return;
    }

    cmd.argc = 1;
    cmd.argv = argv;
    cmd.argvlen = argvlen;

    ctx->pending++;

    ctx->redis = ngx_vantage_redis_send(&cmd, 1, 0,
                                        ngx_vantage_health_redis_reply, ctx);

    if (ctx->redis == NULL) {
        ctx->pending--;
        ngx_vantage_health_set(ctx, NGX_VANTAGE_HEALTH_REDIS, "unreachable",
                               "cannot be asked: no connection, or its "
                               "circuit breaker is open (error.log says "
                               "why)");
    }
}


/* a NULL reply: no answer in time, a lost connection or an error reply */
static void
ngx_vantage_health_redis_reply(void *data, redisReply *reply)
{
    ngx_vantage_health_ctx_t  *ctx = data;

    ctx->redis = NULL;

    if (reply != NULL && reply->type == REDIS_REPLY_STATUS
        && reply->len == 4 && ngx_strncmp(reply->str, "PONG", 4) == 0)
    {
        ngx_vantage_health_set(ctx, NGX_VANTAGE_HEALTH_REDIS, "ok", NULL);

    } else {
        ngx_vantage_health_set(ctx, NGX_VANTAGE_HEALTH_REDIS, "unreachable",
                               "no answer to PING (error.log says why)");
    }

    if (--ctx->pending == 0) {
        ngx_vantage_health_done(ctx);
    }
}


static void
ngx_vantage_health_worker(ngx_vantage_health_ctx_t *ctx,
    ngx_vantage_main_conf_t *vmcf)
{
    if (vmcf->worker == NULL) {
        ngx_vantage_health_set(ctx, NGX_VANTAGE_HEALTH_WORKER,
                               "not_configured", NULL);
        return;
    }

    ctx->pending++;

    /* its handler runs from an event, never from inside this call */
    ctx->worker = ngx_vantage_worker_call(VC_FRAME_PING, NULL, 0,
                                          ngx_vantage_health_worker_reply,
                                          ctx);

    if (ctx->worker == NULL) {
        ctx->pending--;
        ngx_vantage_health_set(ctx, NGX_VANTAGE_HEALTH_WORKER, "unreachable",
                               "not asked: out of memory");
    }
}


static void
ngx_vantage_health_worker_reply(void *data, ngx_uint_t outcome,
    u_char *fields, size_t len)
{
    ngx_vantage_health_ctx_t  *ctx = data;

    ngx_vantage_main_conf_t     *vmcf;
    ngx_vantage_worker_reply_t   rep;

    ctx->worker = NULL;

    switch (outcome) {

    case NGX_VANTAGE_WORKER_REPLY:
        ngx_vantage_worker_reply_read(fields, len, &rep);

        if (rep.status == NGX_HTTP_OK) {
            ngx_vantage_health_set(ctx, NGX_VANTAGE_HEALTH_WORKER, "ok",
                                   NULL);

        } else if (rep.error.len) {
            /* docs/PROTOCOL.md: ERROR is safe to show, no secret in it */
            ngx_vantage_health_set(ctx, NGX_VANTAGE_HEALTH_WORKER,
                                   "not_ready", "%V", &rep.error);

        } else {
            ngx_vantage_health_set(ctx, NGX_VANTAGE_HEALTH_WORKER,
                                   "not_ready", "PING answered %uD",
                                   rep.status);
        }

        break;

    case NGX_VANTAGE_WORKER_TIMEOUT:
        /* vantage_worker timeout= shorter than the check's own */
        vmcf = ngx_http_get_module_main_conf(ctx->request,
                                             ngx_vantage_module);
        ngx_vantage_health_set(ctx, NGX_VANTAGE_HEALTH_WORKER, "unreachable",
                               "no answer to PING within %M ms",
                               vmcf->worker->timeout);
        break;

    case NGX_VANTAGE_WORKER_LOST:
        ngx_vantage_health_set(ctx, NGX_VANTAGE_HEALTH_WORKER, "unreachable",
                               "the connection to the worker was lost");
        break;

    default: /* NGX_VANTAGE_WORKER_UNREACHABLE */
        ngx_vantage_health_set(ctx, NGX_VANTAGE_HEALTH_WORKER, "unreachable",
                               "cannot connect to the worker's socket");
        break;
    }

    if (--ctx->pending == 0) {
        ngx_vantage_health_done(ctx);
    }
}


/*
 * Key files are loaded at configuration time or nginx does not start, so
 * "not loaded" can only be a provider's set not fetched yet.  URLs and
 * paths stay in error.log, where the failures are logged with them.
 */
static void
ngx_vantage_health_keys(ngx_vantage_health_ctx_t *ctx,
    ngx_vantage_main_conf_t *vmcf)
{
    ngx_uint_t            i, missing, reload_failed, stale;
    ngx_vantage_idp_t   **idpp;
    ngx_vantage_watch_t **wp;

    if (vmcf->watches.nelts == 0 && vmcf->idps.nelts == 0) {
        ngx_vantage_health_set(ctx, NGX_VANTAGE_HEALTH_KEYS,
                               "not_configured", NULL);
        return;
    }

    missing = 0;
    reload_failed = 0;
    stale = 0;

    wp = vmcf->watches.elts;

    for (i = 0; i < vmcf->watches.nelts; i++) {
        if (wp[i]->data == NULL) {
            missing++;

        } else if (wp[i]->failed) {
            reload_failed++;
        }
    }

    idpp = vmcf->idps.elts;

    for (i = 0; i < vmcf->idps.nelts; i++) {
        if (idpp[i]->keys == NULL) {
            missing++;

        } else if (idpp[i]->stale) {
            stale++;
        }
    }

    if (missing) {
        ngx_vantage_health_set(ctx, NGX_VANTAGE_HEALTH_KEYS, "not_loaded",
                               "%ui of %ui key sets not loaded yet (error.log "
                               "says why)", missing,
                               vmcf->watches.nelts + vmcf->idps.nelts);
        return;
    }

    /* ready all the same: the keys in force still verify tokens */

    if (reload_failed && stale) {
        ngx_vantage_health_set(ctx, NGX_VANTAGE_HEALTH_KEYS, "ok",
                               "%ui key file(s) failed their last reload and "
                               "%ui identity provider key set(s) are stale: "
                               "the keys loaded before stay in force",
                               reload_failed, stale);

    } else if (reload_failed) {
        ngx_vantage_health_set(ctx, NGX_VANTAGE_HEALTH_KEYS, "ok",
                               "%ui key file(s) failed their last reload: "
                               "the keys loaded before stay in force",
                               reload_failed);

    } else if (stale) {
        ngx_vantage_health_set(ctx, NGX_VANTAGE_HEALTH_KEYS, "ok",
                               "%ui identity provider key set(s) are stale: "
                               "the keys loaded before stay in force", stale);

    } else {
        ngx_vantage_health_set(ctx, NGX_VANTAGE_HEALTH_KEYS, "ok", NULL);
    }
}


static void
ngx_vantage_health_timeout(ngx_event_t *ev)
{
    ngx_vantage_health_ctx_t  *ctx = ev->data;

    if (ctx->redis != NULL) {
        ngx_vantage_redis_cancel(ctx->redis);
        ctx->redis = NULL;
        ngx_vantage_health_set(ctx, NGX_VANTAGE_HEALTH_REDIS, "unreachable",
                               "no answer to PING within %M ms",
                               ctx->conf->timeout);
    }

    if (ctx->worker != NULL) {
        ngx_vantage_worker_cancel(ctx->worker);
        ctx->worker = NULL;
        ngx_vantage_health_set(ctx, NGX_VANTAGE_HEALTH_WORKER, "unreachable",
                               "no answer to PING within %M ms",
                               ctx->conf->timeout);
    }

    ngx_vantage_health_done(ctx);
}


/* every check has answered, or the time is up: the request is finalized */
static void
ngx_vantage_health_done(ngx_vantage_health_ctx_t *ctx)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }

    r->read_event_handler = ngx_http_block_reading;

    ngx_http_finalize_request(r, ngx_vantage_health_send(ctx));
    ngx_http_run_posted_requests(c);
}


/*
 * {"status":"ready"|"not_ready","checks":{"redis":..,"worker":..,"keys":..}}
 * with "details":{<check>:<reason>} when a check has something to say
 */
static ngx_int_t
ngx_vantage_health_send(ngx_vantage_health_ctx_t *ctx)
{
    u_char                      *p;
    size_t                       len;
    ngx_str_t                    body;
    ngx_uint_t                   i, failed, details;
    ngx_http_request_t          *r;
    ngx_vantage_health_check_t  *ch;

    r = ctx->request;
    ch = ctx->checks;

    len = sizeof("{\"status\":\"not_ready\",\"checks\":{},\"details\":{}}\n")
          - 1;
    failed = 0;
    details = 0;

    for (i = 0; i < NGX_VANTAGE_HEALTH_N; i++) {
        len += sizeof("\"\":\"\",") - 1
               + ngx_strlen(ngx_vantage_health_names[i])
               + ngx_strlen(ch[i].state);

        if (ch[i].detail.len) {
            len += sizeof("\"\":\"\",") - 1
                   + ngx_strlen(ngx_vantage_health_names[i])
                   + ch[i].detail.len
                   + ngx_escape_json(NULL, ch[i].detail.data,
                                     ch[i].detail.len);
            details++;
        }

        failed += ch[i].failed;
    }

    body.data = ngx_pnalloc(r->pool, len);
    if (body.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(body.data, "{\"status\":\"%s\",\"checks\":{",
                    failed ? "not_ready" : "ready");

    for (i = 0; i < NGX_VANTAGE_HEALTH_N; i++) {
        p = ngx_sprintf(p, "%s\"%s\":\"%s\"", i ? "," : "",
                        ngx_vantage_health_names[i], ch[i].state);
    }

    *p++ = '}';

    if (details) {
        p = ngx_cpymem(p, ",\"details\":{", sizeof(",\"details\":{") - 1);
        details = 0;

        for (i = 0; i < NGX_VANTAGE_HEALTH_N; i++) {
            if (ch[i].detail.len == 0) {
                continue;
            }

            p = ngx_sprintf(p, "%s\"%s\":\"", details++ ? "," : "",
                            ngx_vantage_health_names[i]);
            p = (u_char *) ngx_escape_json(p, ch[i].detail.data,
                                           ch[i].detail.len);
            *p++ = '"';
        }

        *p++ = '}';
    }

    *p++ = '}';
    *p++ = '\n';

    body.len = p - body.data;

    if (failed) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "vantage health: not ready: %*s", body.len - 1,
                      body.data);
    }

    return ngx_vantage_send_nostore(r, NULL, failed
                                             ? NGX_HTTP_SERVICE_UNAVAILABLE
                                             : NGX_HTTP_OK,
                                    &ngx_vantage_json_type, &body);
}


/*
 * Records a check's outcome; fmt (NULL: no detail) as ngx_sprintf() takes
 * it, the result cut at NGX_VANTAGE_HEALTH_DETAIL_MAX bytes on a character
 * boundary.  Anything but "ok" and "not_configured" fails the check.
 */
static void
ngx_vantage_health_set(ngx_vantage_health_ctx_t *ctx, ngx_uint_t check,
    const char *state, const char *fmt, ...)
{
    u_char                      *p, *last;
    va_list                      args;
    ngx_vantage_health_check_t  *ch;

    ch = &ctx->checks[check];

    ch->state = state;
    ch->failed = (ngx_strcmp(state, "ok") != 0
                  && ngx_strcmp(state, "not_configured") != 0);
    ngx_str_null(&ch->detail);

    if (fmt == NULL) {
        return;
    }

    p = ngx_pnalloc(ctx->request->pool, NGX_VANTAGE_HEALTH_DETAIL_MAX);
    if (p == NULL) {
        return;
    }

    va_start(args, fmt);
    last = ngx_vsnprintf(p, NGX_VANTAGE_HEALTH_DETAIL_MAX, fmt, args);
    va_end(args);

    if (last == p + NGX_VANTAGE_HEALTH_DETAIL_MAX) {
        /* cut: never in the middle of a UTF-8 sequence */
        while (last > p && (last[-1] & 0xc0) == 0x80) {
            last--;
        }

        if (last > p && last[-1] >= 0xc0) {
            last--;
        }
    }

    ch->detail.data = p;
    ch->detail.len = last - p;
}


/* the request is going away: the pending calls must not resume it */
static void
ngx_vantage_health_cleanup(void *data)
{
    ngx_vantage_health_ctx_t  *ctx = data;

    if (ctx->redis != NULL) {
        ngx_vantage_redis_cancel(ctx->redis);
        ctx->redis = NULL;
    }

    if (ctx->worker != NULL) {
        ngx_vantage_worker_cancel(ctx->worker);
        ctx->worker = NULL;
    }

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }
}
