/* ngx_vantage_hubspot.c -- HubSpot webhook batches in, as jobs */

/*
 * vantage_hubspot_webhook is a content handler for the POSTs HubSpot's
 * webhooks send an app's target URL: a JSON array of events (contact
 * created, a property changed, ...).  The signature comes first: the v3
 * signature of the request (vc_hubspot.c) with the app's client secret,
 * and its timestamp within five minutes; nothing else is looked at before
 * it holds.  Then each event becomes one DISPATCH (ngx_vantage_fanout.c),
 * and HubSpot hears 200 only when the worker has said that every job is
 * durable; anything less is a 5xx, which HubSpot retries.
 *
 * A job's idempotency key is hubspot:<portalId>:<eventId>:<subscriptionType>
 * :<objectId>: HubSpot does not promise that eventId alone is unique, and
 * a retry sends the same event with the same four values, so a retried
 * batch makes no second job.  A job's body is the event, compact, without
 * attemptNumber, which is the one field a retry changes: the key's second
 * body is then byte for byte its first, as the worker's idempotency
 * requires.
 *
 * Loop prevention (docs/CONNECTORS.md, two-way sync): HubSpot reports a
 * change made through its API with changeSource "INTEGRATION" and the
 * writing app's id in sourceId.  With app_id=, the events of Vantage's own
 * writes are skipped: acknowledged, no job.  appId is not what is
 * compared: it names the app the subscription belongs to, the receiver,
 * which is Vantage's app for every event this location is sent.
 *
 * The client secret is read from its file at configuration time and is
 * never logged, nor is a signature or an event's value.
 */

#include "ngx_vantage_module.h"
#include "ngx_vantage_fanout.h"

#include <jansson.h>

#include "vc_hubspot.h"


#define NGX_VANTAGE_HUBSPOT_MAX_EVENTS   100    /* HubSpot sends at most 100 */
#define NGX_VANTAGE_HUBSPOT_EVENTS_CAP   1000


typedef struct {
    ngx_str_t                   job_type;
    ngx_str_t                   secret;    /* the app's client secret */
    ngx_str_t                   app_id;    /* digits; empty: none skipped */
    ngx_str_t                   uri;       /* decoded; empty: the request's */
    ngx_uint_t                  max_events;
} ngx_vantage_hubspot_conf_t;


/* what the fan-out's data points to */
typedef struct {
    ngx_uint_t                  events;    /* in the batch */
    ngx_uint_t                  skipped;   /* Vantage's own changes */
    unsigned                    no_tenant:1;
} ngx_vantage_hubspot_ctx_t;


static char *ngx_vantage_hubspot_read_secret(ngx_conf_t *cf,
    ngx_str_t *path, ngx_str_t *secret);
static ngx_int_t ngx_vantage_hubspot_handler(ngx_http_request_t *r);
static ngx_int_t ngx_vantage_hubspot_process(ngx_http_request_t *r,
    ngx_vantage_fanout_t *fo);
static int ngx_vantage_hubspot_verify(ngx_http_request_t *r,
    ngx_vantage_fanout_t *fo);
static ngx_int_t ngx_vantage_hubspot_parse(ngx_http_request_t *r,
    ngx_vantage_fanout_t *fo, json_t *events, const char **reason);
static ngx_int_t ngx_vantage_hubspot_event(ngx_http_request_t *r,
    json_t *ev, ngx_vantage_fanout_job_t *job);
static ngx_uint_t ngx_vantage_hubspot_own(ngx_vantage_hubspot_conf_t *hscf,
    json_t *ev);
static ngx_int_t ngx_vantage_hubspot_answer(ngx_http_request_t *r,
    ngx_vantage_fanout_t *fo);
static ngx_int_t ngx_vantage_hubspot_error(ngx_http_request_t *r,
    ngx_vantage_fanout_t *fo, ngx_uint_t status, const char *error,
    const char *description, ngx_str_t *detail);


static ngx_str_t  ngx_vantage_hubspot_allow = ngx_string("POST");
static ngx_str_t  ngx_vantage_hubspot_type = ngx_string("application/json");
static ngx_str_t  ngx_vantage_hubspot_v3 =
    ngx_string("X-HubSpot-Signature-v3");
static ngx_str_t  ngx_vantage_hubspot_ts =
    ngx_string("X-HubSpot-Request-Timestamp");


/*
 * vantage_hubspot_webhook <job type> secret_file=<path> [app_id=<id>]
 *     [uri=<url>] [max_events=<n>]
 */
char *
ngx_vantage_hubspot_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t  *vlcf = conf;

    u_char                      *p;
    ngx_int_t                    n;
    ngx_str_t                   *value, s;
    ngx_uint_t                   i;
    ngx_http_core_loc_conf_t    *clcf;
    ngx_vantage_hubspot_conf_t  *hscf;

    if (vlcf->hubspot != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_vantage_fanout_job_type(cf, &value[1]) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    hscf = ngx_pcalloc(cf->pool, sizeof(ngx_vantage_hubspot_conf_t));
    if (hscf == NULL) {
        return NGX_CONF_ERROR;
    }

    hscf->job_type = value[1];
    hscf->max_events = NGX_VANTAGE_HUBSPOT_MAX_EVENTS;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "secret_file=", 12) == 0) {
            s.data = value[i].data + 12;
            s.len = value[i].len - 12;

            if (ngx_vantage_hubspot_read_secret(cf, &s, &hscf->secret)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "app_id=", 7) == 0) {
            s.data = value[i].data + 7;
            s.len = value[i].len - 7;

            for (p = s.data; p < s.data + s.len; p++) {
                if (*p < '0' || *p > '9') {
                    break;
                }
            }

            if (s.len == 0 || s.len > 20 || p != s.data + s.len) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"vantage_hubspot_webhook\": \"%V\" is "
                                   "not an app id (1 to 20 digits)", &s);
                return NGX_CONF_ERROR;
            }

            hscf->app_id = s;
            continue;
        }

        if (ngx_strncmp(value[i].data, "uri=", 4) == 0) {
            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

            if (ngx_vantage_hubspot_conf_uri(cf, "vantage_hubspot_webhook",
                                             &value[i], &s, &hscf->uri)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "max_events=", 11) == 0) {
            n = ngx_atoi(value[i].data + 11, value[i].len - 11);

            if (n < 1 || n > NGX_VANTAGE_HUBSPOT_EVENTS_CAP) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"vantage_hubspot_webhook\": \"%V\" "
                                   "must be from 1 to %d", &value[i],
                                   NGX_VANTAGE_HUBSPOT_EVENTS_CAP);
                return NGX_CONF_ERROR;
            }

            hscf->max_events = n;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_hubspot_webhook\": invalid parameter "
                           "\"%V\" (secret_file=<path>, app_id=<id>, "
                           "uri=<url> or max_events=<n>)", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (hscf->secret.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_hubspot_webhook\" needs "
                           "secret_file=<path>: the app's client secret "
                           "signs every request");
        return NGX_CONF_ERROR;
    }

    vlcf->hubspot = hscf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_vantage_hubspot_handler;

    return NGX_CONF_OK;
}


/*
 * The file's bytes, without a trailing newline, read at configuration
 * time.  Errors name the file, never what it holds.
 */
static char *
ngx_vantage_hubspot_read_secret(ngx_conf_t *cf, ngx_str_t *path,
    ngx_str_t *secret)
{
    if (secret->len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_hubspot_webhook\": secret_file= is "
                           "given twice");
        return NGX_CONF_ERROR;
    }

    return ngx_vantage_read_secret_path(cf, "vantage_hubspot_webhook", path,
                                        secret);
}


/*
 * uri=<url> of a directive (arg the whole parameter, url what follows its
 * '='): the http:// or https:// URL HubSpot was given, at most 4096
 * printable bytes, decoded into uri once and for all, as HubSpot signs it.
 */
char *
ngx_vantage_hubspot_conf_uri(ngx_conf_t *cf, const char *directive,
    ngx_str_t *arg, ngx_str_t *url, ngx_str_t *uri)
{
    u_char  *p;

    for (p = url->data; p < url->data + url->len; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            break;
        }
    }

    if (!(ngx_strncmp(url->data, "https://", 8) == 0
          || ngx_strncmp(url->data, "http://", 7) == 0)
        || url->len > 4096 || p != url->data + url->len)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\": \"%V\" is not the http:// or https:// "
                           "URL HubSpot was given", directive, arg);
        return NGX_CONF_ERROR;
    }

    uri->data = ngx_pstrdup(cf->pool, url);
    if (uri->data == NULL) {
        return NGX_CONF_ERROR;
    }

    uri->len = vc_hubspot_uri_decode(uri->data, url->len);

    return NGX_CONF_OK;
}


/* called after ngx_vantage_dispatch_merge(), which merges vantage_tenant */
char *
ngx_vantage_hubspot_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf)
{
    if (conf->hubspot == NULL) {
        return NGX_CONF_OK;
    }

    if (conf->sfout != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_hubspot_webhook\" and "
                           "\"vantage_salesforce_outbound\" cannot share a "
                           "location");
        return NGX_CONF_ERROR;
    }

    return ngx_vantage_fanout_merge(cf, conf, "vantage_hubspot_webhook");
}


static ngx_int_t
ngx_vantage_hubspot_handler(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_str_t                     tenant;
    ngx_vantage_fanout_t         *fo;
    ngx_vantage_loc_conf_t       *vlcf;
    ngx_vantage_hubspot_ctx_t    *ctx;
    ngx_vantage_hubspot_conf_t   *hscf;

    if (r->method != NGX_HTTP_POST) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        if (ngx_vantage_add_header(r, "Allow", sizeof("Allow") - 1,
                                   ngx_vantage_hubspot_allow.data,
                                   ngx_vantage_hubspot_allow.len)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_vantage_hubspot_error(r, NULL, NGX_HTTP_NOT_ALLOWED,
                                         "method_not_allowed",
                                         "webhook batches are sent with "
                                         "POST", NULL);
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_vantage_hubspot_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* a missing tenant is told only to a request HubSpot signed */

    rc = ngx_vantage_fanout_tenant(r, &tenant);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ctx->no_tenant = 1;
    }

    fo = ngx_vantage_fanout_create(r, &tenant);
    if (fo == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);
    hscf = vlcf->hubspot;

    fo->log_name = "vantage hubspot webhook";
    fo->body_handler = ngx_vantage_hubspot_process;
    fo->done_handler = ngx_vantage_hubspot_answer;
    fo->data = ctx;
    fo->job_type = hscf->job_type;

    return ngx_vantage_fanout_read(r, fo);
}


/*
 * The whole body is in: the signature, then the batch, then the jobs.
 * Returns NGX_DONE while the worker's answers are awaited, else what to
 * finalize the request with.
 */
static ngx_int_t
ngx_vantage_hubspot_process(ngx_http_request_t *r, ngx_vantage_fanout_t *fo)
{
    int                         sig;
    json_t                     *events;
    ngx_int_t                   rc;
    json_error_t                err;
    const char                 *reason;
    ngx_vantage_hubspot_ctx_t  *ctx;

    ctx = fo->data;

    sig = ngx_vantage_hubspot_verify(r, fo);

    switch (sig) {

    case VC_HUBSPOT_SIG_OK:
        break;

    case VC_HUBSPOT_SIG_STALE:
        return ngx_vantage_hubspot_error(r, fo, NGX_HTTP_UNAUTHORIZED,
                                         "stale_timestamp",
                                         "X-HubSpot-Request-Timestamp is "
                                         "more than 5 minutes from now",
                                         NULL);

    case VC_HUBSPOT_SIG_ERROR:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;

    default:
        return ngx_vantage_hubspot_error(r, fo, NGX_HTTP_UNAUTHORIZED,
                                         "invalid_signature",
                                         "X-HubSpot-Signature-v3 is missing "
                                         "or does not match the request",
                                         NULL);
    }

    if (ctx->no_tenant) {
        return ngx_vantage_hubspot_error(r, fo, NGX_HTTP_FORBIDDEN,
                                         "forbidden", "the request names no "
                                         "tenant", NULL);
    }

    /* duplicate keys would make the event's meaning the parser's choice */
    events = json_loadb((const char *) fo->buf, fo->len,
                        JSON_REJECT_DUPLICATES, &err);

    if (events == NULL || !json_is_array(events)) {
        json_decref(events);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "vantage hubspot webhook: a signed body that is not "
                      "a JSON array refused");

        return ngx_vantage_hubspot_error(r, fo, NGX_HTTP_BAD_REQUEST,
                                         "invalid_batch",
                                         "the body is not a JSON array of "
                                         "events", NULL);
    }

    reason = NULL;

    rc = ngx_vantage_hubspot_parse(r, fo, events, &reason);

    json_decref(events);

    if (rc == NGX_DECLINED) {
        return ngx_vantage_hubspot_error(r, fo, NGX_HTTP_BAD_REQUEST,
                                         "invalid_batch", reason, NULL);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_vantage_fanout_send(r, fo);
}


/*
 * X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp against the
 * client secret; a refusal is logged.  Returns a VC_HUBSPOT_SIG_* code.
 */
static int
ngx_vantage_hubspot_verify(ngx_http_request_t *r, ngx_vantage_fanout_t *fo)
{
    int                          sig;
    int64_t                      now;
    ngx_int_t                    rc;
    ngx_str_t                    uri, ts, v3;
    ngx_time_t                  *tp;
    const char                  *what;
    ngx_vantage_loc_conf_t      *vlcf;
    ngx_vantage_hubspot_conf_t  *hscf;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);
    hscf = vlcf->hubspot;

    if (hscf->uri.len) {
        uri = hscf->uri;

    } else if (ngx_vantage_hubspot_uri(r, &uri) != NGX_OK) {
        return VC_HUBSPOT_SIG_ERROR;
    }

    rc = ngx_vantage_header_once(r, &ngx_vantage_hubspot_v3, &v3);

    if (rc == NGX_OK) {
        rc = ngx_vantage_header_once(r, &ngx_vantage_hubspot_ts, &ts);
    }

    if (rc != NGX_OK) {
        sig = VC_HUBSPOT_SIG_MALFORMED;

    } else {
        tp = ngx_timeofday();
        now = (int64_t) tp->sec * 1000 + tp->msec;

        sig = vc_hubspot_sig_v3_check(hscf->secret.data, hscf->secret.len,
                                      (const char *) r->method_name.data,
                                      r->method_name.len,
                                      (const char *) uri.data, uri.len,
                                      fo->buf ? fo->buf : (u_char *) "",
                                      fo->len, (const char *) ts.data,
                                      ts.len, (const char *) v3.data,
                                      v3.len, now, VC_HUBSPOT_MAX_AGE_MS);
    }

    switch (sig) {

    case VC_HUBSPOT_SIG_OK:
        break;

    case VC_HUBSPOT_SIG_STALE:
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "vantage hubspot webhook: a request signed at %V, "
                      "more than 5 minutes from now, refused", &ts);
        break;

    case VC_HUBSPOT_SIG_ERROR:
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vantage hubspot webhook: the signature could not be "
                      "computed");
        break;

    default:
        what = (rc == NGX_DECLINED) ? "without its signature headers"
               : (rc == NGX_ERROR) ? "with a signature header given twice"
               : (sig == VC_HUBSPOT_SIG_MALFORMED)
                 ? "with a malformed signature or timestamp"
                 : "whose signature does not match";

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "vantage hubspot webhook: a request %s refused "
                      "(signed URI \"%V\")", what, &uri);
        break;
    }

    return sig;
}


/*
 * Without uri=, the URL HubSpot signed is rebuilt from the request:
 * "https://" on a TLS connection, else "http://", then the Host header
 * as sent (with its port, if any; the server name without one), then the
 * request target as sent, query included, before nginx decodes or
 * normalizes anything; then HubSpot's decoding (vc_hubspot_uri_decode()).
 * Behind a proxy that changes the scheme, host or path, give uri=.
 * vantage_webhook_verify hubspot rebuilds it the same way.
 */
ngx_int_t
ngx_vantage_hubspot_uri(ngx_http_request_t *r, ngx_str_t *uri)
{
    u_char     *p;
    ngx_str_t   host, scheme;

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        ngx_str_set(&scheme, "https://");

    } else
#endif
    {
        ngx_str_set(&scheme, "http://");
    }

    if (r->headers_in.host != NULL) {
        host = r->headers_in.host->value;

    } else {
        host = r->headers_in.server;
    }

    uri->data = ngx_pnalloc(r->pool,
                            scheme.len + host.len + r->unparsed_uri.len);
    if (uri->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(uri->data, scheme.data, scheme.len);
    p = ngx_cpymem(p, host.data, host.len);
    p = ngx_cpymem(p, r->unparsed_uri.data, r->unparsed_uri.len);

    uri->len = vc_hubspot_uri_decode(uri->data, p - uri->data);

    return NGX_OK;
}


/*
 * Checks every event and makes fo->jobs of those not skipped.  Returns
 * NGX_OK, NGX_DECLINED with *reason when the batch is refused, or
 * NGX_ERROR.
 */
static ngx_int_t
ngx_vantage_hubspot_parse(ngx_http_request_t *r, ngx_vantage_fanout_t *fo,
    json_t *events, const char **reason)
{
    json_t                      *ev;
    size_t                       n, i, j;
    ngx_int_t                    rc;
    ngx_uint_t                   repeat;
    ngx_vantage_hubspot_ctx_t   *ctx;
    ngx_vantage_loc_conf_t      *vlcf;
    ngx_vantage_fanout_job_t    *job;
    ngx_vantage_hubspot_conf_t  *hscf;

    ctx = fo->data;
    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);
    hscf = vlcf->hubspot;

    n = json_array_size(events);
    ctx->events = n;

    if (n == 0 || n > hscf->max_events) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "vantage hubspot webhook: a batch of %uz events "
                      "refused (1 to %ui)", n, hscf->max_events);

        *reason = n ? "too many events in one batch"
                    : "the batch has no event";
        return NGX_DECLINED;
    }

    fo->jobs = ngx_pcalloc(r->pool, n * sizeof(ngx_vantage_fanout_job_t));
    if (fo->jobs == NULL) {
        return NGX_ERROR;
    }

    json_array_foreach(events, i, ev) {

        job = &fo->jobs[fo->njobs];

        rc = ngx_vantage_hubspot_event(r, ev, job);

        if (rc == NGX_DECLINED) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "vantage hubspot webhook: event %uz of a signed "
                          "batch is malformed", i + 1);

            *reason = "an event is not an object with an integer portalId, "
                      "eventId and objectId and a subscriptionType";
            return NGX_DECLINED;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        if (ngx_vantage_hubspot_own(hscf, ev)) {
            ctx->skipped++;
            continue;
        }

        /*
         * An event sent twice in one batch is one job: two calls with one
         * key would wait for each other.
         */
        repeat = 0;

        for (j = 0; j < fo->njobs; j++) {
            if (fo->jobs[j].key.len == job->key.len
                && ngx_strncmp(fo->jobs[j].key.data, job->key.data,
                               job->key.len) == 0)
            {
                repeat = 1;
                break;
            }
        }

        if (repeat) {
            ngx_memzero(job, sizeof(ngx_vantage_fanout_job_t));
            continue;
        }

        fo->njobs++;
    }

    if (ctx->skipped) {
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "vantage hubspot webhook: %ui of %uz events skipped: "
                       "changes made by app %V", ctx->skipped, n,
                       &hscf->app_id);
    }

    return NGX_OK;
}


/*
 * One event's key, source header and body.  Returns NGX_OK, NGX_DECLINED
 * for a malformed event, or NGX_ERROR.
 */
static ngx_int_t
ngx_vantage_hubspot_event(ngx_http_request_t *r, json_t *ev,
    ngx_vantage_fanout_job_t *job)
{
    char        *dump;
    u_char      *p;
    json_t      *portal, *event, *object, *type;
    ngx_str_t    st;
    ngx_uint_t   i;

    if (!json_is_object(ev)) {
        return NGX_DECLINED;
    }

    portal = json_object_get(ev, "portalId");
    event = json_object_get(ev, "eventId");
    object = json_object_get(ev, "objectId");
    type = json_object_get(ev, "subscriptionType");

    if (!json_is_integer(portal) || !json_is_integer(event)
        || !json_is_integer(object) || !json_is_string(type))
    {
        return NGX_DECLINED;
    }

    /* "contact.propertyChange": it goes into the key, between colons */

    st.data = (u_char *) json_string_value(type);
    st.len = json_string_length(type);

    if (st.len == 0 || st.len > 128) {
        return NGX_DECLINED;
    }

    for (i = 0; i < st.len; i++) {
        if (!(isalnum(st.data[i]) || st.data[i] == '.' || st.data[i] == '_'
              || st.data[i] == '-'))
        {
            return NGX_DECLINED;
        }
    }

    job->key.data = ngx_pnalloc(r->pool, sizeof("hubspot::::") - 1
                                         + 3 * NGX_INT64_LEN + st.len);
    if (job->key.data == NULL) {
        return NGX_ERROR;
    }

    job->key.len = ngx_sprintf(job->key.data, "hubspot:%L:%L:%V:%L",
                               (int64_t) json_integer_value(portal),
                               (int64_t) json_integer_value(event), &st,
                               (int64_t) json_integer_value(object))
                   - job->key.data;

    job->source.data = ngx_pnalloc(r->pool, sizeof("X-Vantage-Source")
                                            + sizeof("hubspot:") - 1
                                            + NGX_INT64_LEN);
    if (job->source.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(job->source.data, "X-Vantage-Source",
                   sizeof("X-Vantage-Source"));
    p = ngx_sprintf(p, "hubspot:%L", (int64_t) json_integer_value(object));
    job->source.len = p - job->source.data;

    /* the one field a retry changes: without it, a retry's body is equal */
    (void) json_object_del(ev, "attemptNumber");

    dump = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (dump == NULL) {
        return NGX_ERROR;
    }

    job->body.len = ngx_strlen(dump);
    job->body.data = ngx_pnalloc(r->pool, job->body.len);

    if (job->body.data != NULL) {
        ngx_memcpy(job->body.data, dump, job->body.len);
    }

    free(dump);

    return job->body.data ? NGX_OK : NGX_ERROR;
}


/* an event of a change Vantage's own app made through HubSpot's API */
static ngx_uint_t
ngx_vantage_hubspot_own(ngx_vantage_hubspot_conf_t *hscf, json_t *ev)
{
    u_char   buf[NGX_INT64_LEN];
    size_t   len;
    json_t  *source, *id;

    if (hscf->app_id.len == 0) {
        return 0;
    }

    source = json_object_get(ev, "changeSource");

    if (!json_is_string(source)
        || ngx_strcmp(json_string_value(source), "INTEGRATION") != 0)
    {
        return 0;
    }

    id = json_object_get(ev, "sourceId");

    if (json_is_string(id)) {
        return json_string_length(id) == hscf->app_id.len
               && ngx_strncmp(json_string_value(id), hscf->app_id.data,
                              hscf->app_id.len) == 0;
    }

    if (json_is_integer(id)) {
        len = ngx_sprintf(buf, "%L", (int64_t) json_integer_value(id)) - buf;

        return len == hscf->app_id.len
               && ngx_strncmp(buf, hscf->app_id.data, len) == 0;
    }

    return 0;
}


/*
 * Every call is answered: 200 only when every job is durable.  A job the
 * worker refused (an unknown job type, a key whose first body differed)
 * is a 500, anything the worker may get over a 503 with Retry-After;
 * HubSpot retries both, and the jobs already durable are found again by
 * their keys.
 */
static ngx_int_t
ngx_vantage_hubspot_answer(ngx_http_request_t *r, ngx_vantage_fanout_t *fo)
{
    ngx_str_t                   body;
    ngx_vantage_hubspot_ctx_t  *ctx;

    ctx = fo->data;

    if (fo->refused == 0 && fo->unavailable == 0) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "vantage hubspot webhook: %ui events accepted: "
                      "%ui new jobs, %ui already queued, %ui skipped",
                      ctx->events, fo->fresh, fo->repeated, ctx->skipped);

        body.data = ngx_pnalloc(r->pool, sizeof("{\"accepted\":,"
                                                "\"skipped\":}\n") - 1
                                         + 2 * NGX_INT_T_LEN);
        if (body.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        body.len = ngx_sprintf(body.data, "{\"accepted\":%ui,"
                                          "\"skipped\":%ui}\n",
                               ctx->events - ctx->skipped, ctx->skipped)
                   - body.data;

        return ngx_vantage_fanout_respond(r, fo, NGX_HTTP_OK,
                                          &ngx_vantage_hubspot_type, &body);
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "vantage hubspot webhook: %ui of %ui jobs of a batch not "
                  "durable (%ui refused, %ui unavailable): \"%V\"; not "
                  "acknowledged", fo->refused + fo->unavailable, fo->njobs,
                  fo->refused, fo->unavailable, &fo->error);

    if (fo->refused) {
        return ngx_vantage_hubspot_error(r, fo,
                                         NGX_HTTP_INTERNAL_SERVER_ERROR,
                                         "job_refused", "the job queue "
                                         "refused an event", &fo->error);
    }

    if (ngx_vantage_fanout_retry_after(r, fo) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_vantage_hubspot_error(r, fo, NGX_HTTP_SERVICE_UNAVAILABLE,
                                     "unavailable", "the job queue is not "
                                     "available; the batch is not "
                                     "acknowledged", &fo->error);
}


/*
 * {"error":"...","error_description":"..."}, returned rather than
 * finalized; detail, when given, is the worker's reason (safe to show),
 * appended to the description.
 */
static ngx_int_t
ngx_vantage_hubspot_error(ngx_http_request_t *r, ngx_vantage_fanout_t *fo,
    ngx_uint_t status, const char *error, const char *description,
    ngx_str_t *detail)
{
    u_char     *p, *text;
    size_t      len;
    ngx_str_t   body;

    if (detail != NULL && detail->len) {
        len = ngx_strlen(description);

        text = ngx_pnalloc(r->pool, len + 2 + detail->len + 1);
        if (text == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_cpymem(text, description, len);
        *p++ = ':';
        *p++ = ' ';
        p = ngx_cpymem(p, detail->data, detail->len);
        *p = '\0';

        description = (const char *) text;
    }

    if (ngx_vantage_json_error(r->pool, error, description, &body) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_vantage_fanout_respond(r, fo, status,
                                      &ngx_vantage_hubspot_type, &body);
}
