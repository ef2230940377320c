/* metrics_http.c -- /metrics, /healthz and /readyz on the worker's loop */

/*
 * libevent's evhttp on the worker's own event base: every answer is made
 * from memory, so no request ever waits.  What only Redis knows (the jobs
 * stream's length, pending entries and ages, the jobs by state) is
 * sampled every VW_METRICS_SAMPLE_MS by async commands on the hand-off's
 * connection; what the worker knows (the breakers, whether Redis is
 * usable) is read when /metrics is asked for, and at each sample.  The
 * alert rules (alert.c) read the same registry, so the sampler also runs
 * without a listener while [alerting] is configured, as often as its
 * interval when that is shorter.  /status and /admin/ are status_http.c's.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <jansson.h>

#include "vw_conf.h"
#include "vw_core.h"
#include "vw_metrics.h"
#include "vw_services.h"
#include "vw_status.h"
#include "vw_target.h"


#define VW_METRICS_SAMPLE_MS  1000
#define VW_METRICS_STREAM     "{vq}:jobs"
#define VW_METRICS_GROUP      "vantage"


struct vw_metrics_http_s {
    struct evhttp              *http;
    struct event               *sample;
    vw_queue_t                 *queue;
    vw_engine_t                *engine;
    vw_status_http_t           *status;    /* /status, /admin/ */
    unsigned                    admin;     /* [metrics] admin = on */
    char                       *path;      /* the Unix socket's, to unlink */
};


static void vw_metrics_http_handler(struct evhttp_request *req, void *arg);
static void vw_metrics_http_sample(evutil_socket_t fd, short what, void *arg);
static void vw_metrics_http_collect(vw_metrics_http_t *mh);


vw_metrics_http_t *
vw_metrics_http_create(struct event_base *base, const vw_conf_t *conf,
    vw_queue_t *queue, vw_engine_t *engine)
{
    char                    port[8];
    struct timeval          tv;
    vw_metrics_http_t      *mh;
    struct evconnlistener  *l;

    mh = calloc(1, sizeof(vw_metrics_http_t));
    if (mh == NULL) {
        return NULL;
    }

    mh->queue = queue;
    mh->engine = engine;

    /* [alerting] may come with a reload: the sampler is always there */
    mh->sample = evtimer_new(base, vw_metrics_http_sample, mh);
    if (mh->sample == NULL) {
        goto failed;
    }

    tv.tv_sec = VW_METRICS_SAMPLE_MS / 1000;
    tv.tv_usec = (VW_METRICS_SAMPLE_MS % 1000) * 1000;
    (void) event_add(mh->sample, &tv);

    if (conf->metrics.host == NULL && conf->metrics.path == NULL) {
        return mh;
    }

    mh->http = evhttp_new(base);
    mh->status = vw_status_http_create(base, queue, engine);
    mh->admin = conf->metrics.admin;

    if (mh->http == NULL || mh->status == NULL) {
        goto failed;
    }

    /* every method reaches the handler, which answers 405 with Allow */
    evhttp_set_allowed_methods(mh->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST
                               | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT
                               | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS
                               | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT
                               | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(mh->http, vw_metrics_http_handler, mh);
    evhttp_set_timeout(mh->http, 10);

    if (conf->metrics.path != NULL) {
        l = vw_server_listen(base, conf->metrics.path, conf->listen_mode,
                             conf->listen_gid, NULL, NULL);
        if (l == NULL) {
            goto failed;
        }

        if (evhttp_bind_listener(mh->http, l) == NULL) {
            evconnlistener_free(l);
            goto failed;
        }

        mh->path = strdup(conf->metrics.path);

    } else if (evhttp_bind_socket(mh->http, conf->metrics.host,
                                  (ev_uint16_t) conf->metrics.port) != 0)
    {
        snprintf(port, sizeof(port), "%u", conf->metrics.port);
        vw_log("error", "cannot listen for metrics", "address",
               conf->metrics.host, "port", port, "reason", strerror(errno),
               NULL);
        goto failed;

    } else {
        snprintf(port, sizeof(port), "%u", conf->metrics.port);
        vw_log("info", "metrics listening", "address", conf->metrics.host,
               "port", port, NULL);
    }

    return mh;

failed:

    vw_metrics_http_free(mh);
    return NULL;
}


void
vw_metrics_http_free(vw_metrics_http_t *mh)
{
    if (mh == NULL) {
        return;
    }

    if (mh->sample != NULL) {
        event_free(mh->sample);
    }

    /* its requests are answered while evhttp still holds them */
    vw_status_http_free(mh->status);

    if (mh->http != NULL) {
        evhttp_free(mh->http);
    }

    if (mh->path != NULL) {
        (void) unlink(mh->path);
        free(mh->path);
    }

    vw_metrics_reset();
    vw_status_reset();
    free(mh);
}


/* -- answers -------------------------------------------------------------- */

static void
vw_metrics_http_send(struct evhttp_request *req, int status,
    const char *reason, const char *type, const char *body, size_t len)
{
    struct evbuffer     *buf;
    struct evkeyvalq    *h;

    h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", type);
    evhttp_add_header(h, "Cache-Control", "no-store");

    buf = evbuffer_new();
    if (buf == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }

    /* HEAD: the headers of GET's answer, no body */
    if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
        evbuffer_add(buf, body, len);
    }

    evhttp_send_reply(req, status, reason, buf);
    evbuffer_free(buf);
}


/* a JSON object as the answer; o is taken */
static void
vw_metrics_http_json(struct evhttp_request *req, int status,
    const char *reason, json_t *o)
{
    char  *text;

    text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);

    if (text == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }

    vw_metrics_http_send(req, status, reason, "application/json", text,
                         strlen(text));
    free(text);
}


/* the values the worker holds itself, read when they are asked for */
static void
vw_metrics_http_collect(vw_metrics_http_t *mh)
{
    const char         *reason;
    const vw_target_t  *t;

    vw_metrics_set(VW_METRICS_REDIS_CONNECTED,
                   vw_queue_ready(mh->queue, &reason) == VW_OK, NULL, NULL);

    if (mh->engine == NULL) {
        return;
    }

    /* the exposition's order, not vw_breaker_e's */
    for (t = vw_engine_targets(mh->engine); t != NULL; t = t->next) {
        vw_metrics_set(VW_METRICS_BREAKER_STATE,
                       t->state == VW_BREAKER_OPEN ? 2
                       : t->state == VW_BREAKER_HALF_OPEN ? 1 : 0,
                       t->name, NULL);
    }
}


static void
vw_metrics_http_ready(vw_metrics_http_t *mh, struct evhttp_request *req)
{
    char        why[256];
    json_t     *reasons;
    const char *reason;

    reasons = json_array();
    if (reasons == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }

    if (vw_queue_ready(mh->queue, &reason) != VW_OK) {
        snprintf(why, sizeof(why), "redis: %s", reason);
        json_array_append_new(reasons, json_string(why));
    }

    if (vw_conf_current() == NULL) {
        json_array_append_new(reasons,
                              json_string("configuration: not loaded"));
    }

    if (json_array_size(reasons)) {
        vw_metrics_http_json(req, 503, "Service Unavailable",
                             json_pack("{ssso}", "status", "not_ready",
                                       "reasons", reasons));
        return;
    }

    json_decref(reasons);

    vw_metrics_http_json(req, 200, "OK",
                         json_pack("{ssssss}", "status", "ready",
                                   "redis", "connected",
                                   "configuration", "loaded"));
}


static void
vw_metrics_http_handler(struct evhttp_request *req, void *arg)
{
    int                        json;
    char                      *text;
    size_t                     len;
    const char                *path;
    vw_metrics_http_t         *mh = arg;
    enum evhttp_cmd_type       cmd;
    const struct evhttp_uri   *uri;

    uri = evhttp_request_get_evhttp_uri(req);
    path = uri ? evhttp_uri_get_path(uri) : NULL;
    path = path ? path : "";

    if (strncmp(path, "/admin/", 7) == 0) {
        if (!mh->admin) {
            /* no replay from whoever reaches the port, unless asked for */
            vw_metrics_http_json(req, 403, "Forbidden",
                                 json_pack("{ss}", "error",
                                           "admin endpoints are off: "
                                           "[metrics] admin = on"));
            return;
        }

        vw_status_http_admin(mh->status, req, path);
        return;
    }

    if (strcmp(path, "/metrics") != 0 && strcmp(path, "/healthz") != 0
        && strcmp(path, "/readyz") != 0 && strcmp(path, "/metrics.json") != 0
        && strcmp(path, "/status") != 0)
    {
        vw_metrics_http_json(req, 404, "Not Found",
                             json_pack("{ss}", "error", "not found"));
        return;
    }

    cmd = evhttp_request_get_command(req);

    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          "GET, HEAD");
        vw_metrics_http_json(req, 405, "Method Not Allowed",
                             json_pack("{ss}", "error",
                                       "method not allowed"));
        return;
    }

    if (strcmp(path, "/healthz") == 0) {
        vw_metrics_http_json(req, 200, "OK", json_pack("{ss}", "status",
                                                       "ok"));
        return;
    }

    if (strcmp(path, "/readyz") == 0) {
        vw_metrics_http_ready(mh, req);
        return;
    }

    if (strcmp(path, "/status") == 0) {
        vw_status_http_status(mh->status, req);
        return;
    }

    vw_metrics_http_collect(mh);

    json = strcmp(path, "/metrics.json") == 0;
    text = json ? vw_metrics_render_json(&len) : vw_metrics_render(&len);

    if (text == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }

    vw_metrics_http_send(req, 200, "OK", json ? "application/json"
                         : "text/plain; version=0.0.4; charset=utf-8",
                         text, len);
    free(text);
}


/* -- the jobs stream, sampled --------------------------------------------- */

/* the age in seconds of a stream id "<ms>-<seq>"; 0 when it is in the
   future (another host's clock) */
static double
vw_metrics_http_age(const char *id, uint64_t now)
{
    uint64_t  ms;

    ms = strtoull(id, NULL, 10);

    return ms < now ? (double) (now - ms) / 1000 : 0;
}


static void
vw_metrics_http_xlen(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply  *r = reply;

    if (r != NULL && r->type == REDIS_REPLY_INTEGER) {
        vw_metrics_set(VW_METRICS_STREAM_LENGTH, (double) r->integer,
                       VW_METRICS_STREAM, NULL);
    }
}


/* XPENDING's summary: [count, smallest id, largest id, consumers] */
static void
vw_metrics_http_xpending(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply  *r = reply;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 2
        || r->element[0]->type != REDIS_REPLY_INTEGER)
    {
        return;     /* no group yet: nothing was ever taken */
    }

    vw_metrics_set(VW_METRICS_STREAM_PENDING, (double) r->element[0]->integer,
                   VW_METRICS_STREAM, NULL);
    vw_metrics_set(VW_METRICS_STREAM_OLDEST_PENDING,
                   r->element[1]->type == REDIS_REPLY_STRING
                   ? vw_metrics_http_age(r->element[1]->str,
                                         vw_services_now())
                   : 0, VW_METRICS_STREAM, NULL);
}


/* XRANGE - + COUNT 1: [] or [[id, [fields]]] */
static void
vw_metrics_http_xrange(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply  *r = reply, *e;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        return;
    }

    e = r->elements ? r->element[0] : NULL;

    vw_metrics_set(VW_METRICS_STREAM_OLDEST_ENTRY,
                   e != NULL && e->type == REDIS_REPLY_ARRAY && e->elements
                   && e->element[0]->type == REDIS_REPLY_STRING
                   ? vw_metrics_http_age(e->element[0]->str,
                                         vw_services_now())
                   : 0, VW_METRICS_STREAM, NULL);
}


/* ZCARD or GET: privdata is the state, a static string */
static void
vw_metrics_http_jobs(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply  *r = reply;

    if (r == NULL) {
        return;
    }

    if (r->type == REDIS_REPLY_INTEGER) {
        vw_metrics_set(VW_METRICS_JOBS, (double) r->integer, privdata, NULL);

    } else if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL) {
        vw_metrics_set(VW_METRICS_JOBS, r->type == REDIS_REPLY_NIL ? 0
                       : strtod(r->str, NULL), privdata, NULL);
    }
}


/*
 * O(1) or O(log n) commands; their callbacks keep no pointer to mh, so a
 * reply that comes back NULL after the queue is freed is harmless.
 */
static void
vw_metrics_http_sample(evutil_socket_t fd, short what, void *arg)
{
    uint64_t            ms;
    struct timeval      tv;
    const vw_conf_t    *conf;
    vw_metrics_http_t  *mh = arg;
    redisAsyncContext  *ac;

    conf = vw_conf_current();
    ms = VW_METRICS_SAMPLE_MS;

    if (conf != NULL && conf->alerting.job != NULL
        && conf->alerting.interval_ms < ms)
    {
        ms = conf->alerting.interval_ms;
    }

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    (void) event_add(mh->sample, &tv);

    ac = vw_queue_context(mh->queue);

    if (ac == NULL || (mh->http == NULL
                       && (conf == NULL || conf->alerting.job == NULL)))
    {
        return;
    }

    vw_metrics_http_collect(mh);

    (void) redisAsyncCommand(ac, vw_metrics_http_jobs, "queued",
                             "XLEN " VW_METRICS_STREAM);
    (void) redisAsyncCommand(ac, vw_metrics_http_jobs, "delayed",
                             "ZCARD {vq}:delayed");
    (void) redisAsyncCommand(ac, vw_metrics_http_jobs, "dead",
                             "ZCARD {vq}:dead");
    (void) redisAsyncCommand(ac, vw_metrics_http_jobs, "done",
                             "ZCARD {vq}:done");
    (void) redisAsyncCommand(ac, vw_metrics_http_jobs, "inflight",
                             "GET {vq}:inflight");

    (void) redisAsyncCommand(ac, vw_metrics_http_xlen, NULL,
                             "XLEN " VW_METRICS_STREAM);
    (void) redisAsyncCommand(ac, vw_metrics_http_xpending, NULL,
                             "XPENDING " VW_METRICS_STREAM " "
                             VW_METRICS_GROUP);
    (void) redisAsyncCommand(ac, vw_metrics_http_xrange, NULL,
                             "XRANGE " VW_METRICS_STREAM " - + COUNT 1");
}
