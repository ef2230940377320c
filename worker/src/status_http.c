/* status_http.c -- GET /status and a dead letter's replay, never blocking */

/*
 * Both need Redis, and the loop never waits for it: each request becomes
 * an operation whose commands go out on the queue's connection, and the
 * request is answered from the callback of the last reply (evhttp lets a
 * request be answered later; one whose client went away meanwhile is
 * freed by evhttp_send_reply()).  An operation counts its replies still
 * out, so that it outlives vw_status_http_free() until the last one is
 * back.
 *
 * The replay is vantagectl's (ctl_dlq.c, docs/WORKER.md "Replay and
 * skip"): the job's hash is read, then ZREM of the job from {vq}:dead,
 * alone, decides who replays it: of any number of concurrent ZREMs of one
 * member exactly one returns 1, and only that caller sends the
 * transaction.  A ZREM that finds nothing while the hash still says dead
 * is another replayer between its ZREM and its EXEC, or one that died
 * there: after a pause the hash is read again, and one still dead with
 * the same replay count is taken over.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <jansson.h>

#include "vw_conf.h"
#include "vw_core.h"
#include "vw_metrics.h"
#include "vw_services.h"
#include "vw_status.h"
#include "vw_target.h"


#define VW_STATUS_JOBS       "{vq}:jobs"
#define VW_STATUS_DEAD       "{vq}:dead"
#define VW_STATUS_DELAYED    "{vq}:delayed"
#define VW_STATUS_INFLIGHT   "{vq}:inflight"
#define VW_STATUS_DEAD_SHOWN 50
#define VW_STATUS_ORPHAN_MS  1000   /* as ctl_dlq.c's VCTL_ORPHAN_WAIT_US */


typedef struct vw_status_op_s  vw_status_op_t;

struct vw_status_op_s {
    vw_status_http_t           *sh;        /* NULL once it is freed */
    struct evhttp_request      *req;       /* NULL once answered */
    unsigned                    pending;   /* Redis replies still out */
    unsigned                    lost:1;    /* a reply came back NULL */
    json_t                     *doc;       /* /status: the answer */

    /* the replay */
    char                        id[33];
    char                        type[129];
    char                        correlation_id[201];
    long long                   attempts;
    long long                   replays;
    struct event               *timer;

    vw_status_op_t             *next;
    vw_status_op_t            **prev;
};


struct vw_status_http_s {
    struct event_base          *base;
    vw_queue_t                 *queue;
    vw_engine_t                *engine;
    vw_status_op_t             *ops;
};


static void vw_status_http_dead_count(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_status_http_delayed_count(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_status_http_dead_list(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_status_http_dead_jobs(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_status_http_read(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_status_http_claimed(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_status_http_orphan(evutil_socket_t fd, short what, void *arg);
static void vw_status_http_reread(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_status_http_exec(vw_status_op_t *op, redisAsyncContext *ac);
static void vw_status_http_replayed(redisAsyncContext *ac, void *reply,
    void *privdata);


vw_status_http_t *
vw_status_http_create(struct event_base *base, vw_queue_t *queue,
    vw_engine_t *engine)
{
    vw_status_http_t  *sh;

    sh = calloc(1, sizeof(vw_status_http_t));
    if (sh == NULL) {
        return NULL;
    }

    sh->base = base;
    sh->queue = queue;
    sh->engine = engine;

    return sh;
}


/* -- operations ----------------------------------------------------------- */

static vw_status_op_t *
vw_status_http_op(vw_status_http_t *sh, struct evhttp_request *req)
{
    vw_status_op_t  *op;

    op = calloc(1, sizeof(vw_status_op_t));
    if (op == NULL) {
        return NULL;
    }

    op->sh = sh;
    op->req = req;
    op->next = sh->ops;
    op->prev = &sh->ops;

    if (sh->ops != NULL) {
        sh->ops->prev = &op->next;
    }

    sh->ops = op;

    return op;
}


static void
vw_status_http_op_free(vw_status_op_t *op)
{
    if (op->sh != NULL) {
        *op->prev = op->next;

        if (op->next != NULL) {
            op->next->prev = op->prev;
        }
    }

    if (op->timer != NULL) {
        event_free(op->timer);
    }

    json_decref(op->doc);
    free(op);
}


/* a command whose reply the operation waits for */
static int
vw_status_http_cmd(vw_status_op_t *op, redisAsyncContext *ac,
    redisCallbackFn *cb, const char *fmt, ...)
{
    int      rc;
    va_list  ap;

    va_start(ap, fmt);
    rc = redisvAsyncCommand(ac, cb, op, fmt, ap);
    va_end(ap);

    if (rc != REDIS_OK) {
        return VW_ERROR;
    }

    op->pending++;

    return VW_OK;
}


/*
 * A reply came back: VW_OK when the operation goes on, VW_DONE when it
 * is over (answered, or its owner gone) and was freed with its last
 * reply.
 */
static int
vw_status_http_back(vw_status_op_t *op)
{
    op->pending--;

    if (op->sh != NULL && op->req != NULL) {
        return VW_OK;
    }

    if (op->pending == 0 && op->timer == NULL) {
        vw_status_http_op_free(op);
    }

    return VW_DONE;
}


/* -- answers -------------------------------------------------------------- */

/* the JSON answer o (taken), with the headers of every other answer */
static void
vw_status_http_answer(struct evhttp_request *req, int status,
    const char *reason, json_t *o)
{
    char              *text;
    struct evbuffer   *buf;
    struct evkeyvalq  *h;

    text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);

    buf = evbuffer_new();

    if (text == NULL || buf == NULL) {
        free(text);

        if (buf != NULL) {
            evbuffer_free(buf);
        }

        evhttp_send_error(req, 500, NULL);
        return;
    }

    h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");

    if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
        evbuffer_add(buf, text, strlen(text));
    }

    evhttp_send_reply(req, status, reason, buf);
    evbuffer_free(buf);
    free(text);
}


/* answers op's request with o (taken); op is freed once idle */
static void
vw_status_http_done(vw_status_op_t *op, int status, const char *reason,
    json_t *o)
{
    if (op->req != NULL) {
        vw_status_http_answer(op->req, status, reason, o);
        op->req = NULL;

    } else {
        json_decref(o);
    }

    if (op->pending == 0 && op->timer == NULL) {
        vw_status_http_op_free(op);
    }
}


static void
vw_status_http_error(vw_status_op_t *op, int status, const char *reason,
    const char *error, const char *detail, const char *state)
{
    json_t  *o;

    o = json_pack("{ss}", "error", error);

    if (o != NULL && op->id[0] != '\0') {
        json_object_set_new(o, "job_id", json_string(op->id));
    }

    if (o != NULL && state != NULL) {
        json_object_set_new(o, "state", json_string(state));
    }

    if (o != NULL && detail != NULL) {
        json_object_set_new(o, "detail", json_string(detail));
    }

    vw_status_http_done(op, status, reason, o);
}


/* -- GET /status ---------------------------------------------------------- */

/* a gauge of the jobs stream, as the sampler left it, or null */
static json_t *
vw_status_http_gauge(vw_metrics_family_e f)
{
    vw_metrics_sample_t  s;

    if (vw_metrics_read(f, VW_STATUS_JOBS, NULL, &s) != VW_METRICS_FOUND) {
        return json_null();
    }

    return s.value == (double) (json_int_t) s.value
           ? json_integer((json_int_t) s.value) : json_real(s.value);
}


/* everything the worker knows without asking Redis */
static json_t *
vw_status_http_memory(vw_status_http_t *sh, uint64_t now, int connected)
{
    json_t             *doc, *queue;
    const vw_target_t  *targets;

    targets = sh->engine ? vw_engine_targets(sh->engine) : NULL;

    queue = json_pack("{sssosososo}",
                      "stream", VW_STATUS_JOBS,
                      "length",
                      vw_status_http_gauge(VW_METRICS_STREAM_LENGTH),
                      "pending",
                      vw_status_http_gauge(VW_METRICS_STREAM_PENDING),
                      "oldest_pending_seconds",
                      vw_status_http_gauge(VW_METRICS_STREAM_OLDEST_PENDING),
                      "oldest_entry_seconds",
                      vw_status_http_gauge(VW_METRICS_STREAM_OLDEST_ENTRY));

    doc = json_pack("{sIsssosos[o]sosososo}",
                    "generated_ms", (json_int_t) now,
                    "redis", connected ? "connected" : "disconnected",
                    "connectors", vw_status_connectors(vw_conf_current(),
                                                       targets, now),
                    "history", vw_status_history(now),
                    "queues", queue,
                    "delayed", json_null(),
                    "dead_letters", json_null(),
                    "recent_failures", vw_status_failures(),
                    "dead", json_null());

    return doc;
}


void
vw_status_http_status(vw_status_http_t *sh, struct evhttp_request *req)
{
    uint64_t            now;
    vw_status_op_t     *op;
    redisAsyncContext  *ac;

    now = vw_services_now();
    ac = vw_queue_context(sh->queue);

    op = vw_status_http_op(sh, req);
    if (op == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }

    op->doc = vw_status_http_memory(sh, now, ac != NULL);

    if (op->doc == NULL) {
        vw_status_http_done(op, 500, "Internal Server Error", NULL);
        return;
    }

    if (ac == NULL
        || vw_status_http_cmd(op, ac, vw_status_http_dead_count,
                              "ZCARD " VW_STATUS_DEAD) != VW_OK
        || vw_status_http_cmd(op, ac, vw_status_http_delayed_count,
                              "ZCARD " VW_STATUS_DELAYED) != VW_OK
        || vw_status_http_cmd(op, ac, vw_status_http_dead_list,
                              "ZREVRANGE " VW_STATUS_DEAD " 0 %d "
                              "WITHSCORES", VW_STATUS_DEAD_SHOWN - 1)
           != VW_OK)
    {
        op->lost = 1;
    }

    if (op->pending == 0) {
        json_object_set_new(op->doc, "redis", json_string("disconnected"));
        vw_status_http_done(op, 200, "OK", json_incref(op->doc));
    }
}


/* the last reply of /status: the answer, or Redis gone meanwhile */
static void
vw_status_http_status_end(vw_status_op_t *op)
{
    if (op->pending != 0) {
        return;
    }

    if (op->lost) {
        json_object_set_new(op->doc, "redis", json_string("disconnected"));
        json_object_set_new(op->doc, "delayed", json_null());
        json_object_set_new(op->doc, "dead_letters", json_null());
        json_object_set_new(op->doc, "dead", json_null());
    }

    vw_status_http_done(op, 200, "OK", json_incref(op->doc));
}


/* a ZCARD's reply as the member key of the answer */
static void
vw_status_http_count(redisReply *r, vw_status_op_t *op, const char *key)
{
    if (vw_status_http_back(op) != VW_OK) {
        return;
    }

    if (r == NULL) {
        op->lost = 1;

    } else if (r->type == REDIS_REPLY_INTEGER) {
        json_object_set_new(op->doc, key, json_integer(r->integer));
    }

    vw_status_http_status_end(op);
}


static void
vw_status_http_dead_count(redisAsyncContext *ac, void *reply, void *privdata)
{
    vw_status_http_count(reply, privdata, "dead_letters");
}


static void
vw_status_http_delayed_count(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    vw_status_http_count(reply, privdata, "delayed");
}


/* the newest dead letters with their scores: their jobs are read next */
static void
vw_status_http_dead_list(redisAsyncContext *ac, void *reply, void *privdata)
{
    size_t           i;
    json_t          *dead, *d;
    redisReply      *r = reply, *m;
    vw_status_op_t  *op = privdata;

    if (vw_status_http_back(op) != VW_OK) {
        return;
    }

    if (r == NULL) {
        op->lost = 1;
        vw_status_http_status_end(op);
        return;
    }

    dead = json_array();
    if (dead == NULL || r->type != REDIS_REPLY_ARRAY) {
        json_decref(dead);
        vw_status_http_status_end(op);
        return;
    }

    json_object_set_new(op->doc, "dead", dead);

    for (i = 0; i + 1 < r->elements; i += 2) {
        m = r->element[i];

        if (m->type != REDIS_REPLY_STRING
            || r->element[i + 1]->type != REDIS_REPLY_STRING)
        {
            continue;
        }

        d = json_pack("{s:s%,s:n,s:n,s:n,s:I,s:n}",
                      "job_id", m->str, m->len,
                      "type", "target", "last_error",
                      "died_ms",
                      (json_int_t) strtoll(r->element[i + 1]->str, NULL, 10),
                      "attempts");
        if (d != NULL) {
            json_array_append_new(dead, d);
        }
    }

    if (json_array_size(dead) == 0) {
        vw_status_http_status_end(op);
        return;
    }

    /* one reply for all of them: a transaction sent in one go */
    (void) redisAsyncCommand(ac, NULL, NULL, "MULTI");

    json_array_foreach(dead, i, d) {
        (void) redisAsyncCommand(ac, NULL, NULL, "HMGET {vq}:job:%s type "
                                 "attempts last_error",
                                 json_string_value(json_object_get(d,
                                                                   "job_id")));
    }

    if (vw_status_http_cmd(op, ac, vw_status_http_dead_jobs, "EXEC")
        != VW_OK)
    {
        op->lost = 1;
    }

    vw_status_http_status_end(op);
}


/* EXEC's array: one [type, attempts, last_error] per dead letter */
static void
vw_status_http_dead_jobs(redisAsyncContext *ac, void *reply, void *privdata)
{
    size_t                i;
    json_t               *dead, *d;
    redisReply           *r = reply, *h;
    vw_status_op_t       *op = privdata;
    const vw_conf_job_t  *jc;

    if (vw_status_http_back(op) != VW_OK) {
        return;
    }

    dead = json_object_get(op->doc, "dead");

    if (r == NULL) {
        op->lost = 1;

    } else if (r->type == REDIS_REPLY_ARRAY
               && r->elements == json_array_size(dead))
    {
        json_array_foreach(dead, i, d) {
            h = r->element[i];

            if (h->type != REDIS_REPLY_ARRAY || h->elements != 3) {
                continue;
            }

            if (h->element[0]->type == REDIS_REPLY_STRING) {
                json_object_set_new(d, "type",
                                    json_stringn(h->element[0]->str,
                                                 h->element[0]->len));

                /* the job type's target, as the configuration says now */
                jc = vw_conf_job(vw_conf_current(), h->element[0]->str,
                                 h->element[0]->len);
                if (jc != NULL && jc->target != NULL) {
                    json_object_set_new(d, "target",
                                        json_string(jc->target->name));
                }
            }

            if (h->element[1]->type == REDIS_REPLY_STRING) {
                json_object_set_new(d, "attempts",
                                    json_integer(strtoll(h->element[1]->str,
                                                         NULL, 10)));
            }

            /* stored masked by the engine: shown as it is */
            if (h->element[2]->type == REDIS_REPLY_STRING) {
                json_object_set_new(d, "last_error",
                                    json_stringn(h->element[2]->str,
                                                 h->element[2]->len));
            }
        }
    }

    vw_status_http_status_end(op);
}


/* -- POST /admin/dlq/<id>/replay ------------------------------------------ */

/* a hash field as a number; -1 when it is not one */
static long long
vw_status_http_int(const redisReply *v)
{
    char       *end;
    long long   n;

    if (v->type != REDIS_REPLY_STRING || v->len == 0) {
        return -1;
    }

    n = strtoll(v->str, &end, 10);

    return (*end == '\0' && n >= 0) ? n : -1;
}


void
vw_status_http_admin(vw_status_http_t *sh, struct evhttp_request *req,
    const char *path)
{
    size_t              n;
    const char         *p;
    vw_status_op_t     *op;
    redisAsyncContext  *ac;

    op = vw_status_http_op(sh, req);
    if (op == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }

    /* /admin/dlq/<id>/replay, <id> anything up to the next slash */
    p = strncmp(path, "/admin/dlq/", 11) == 0 ? path + 11 : NULL;
    n = p ? strcspn(p, "/") : 0;

    if (p == NULL || strcmp(p + n, "/replay") != 0) {
        vw_status_http_error(op, 404, "Not Found", "not found", NULL, NULL);
        return;
    }

    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          "POST");
        vw_status_http_error(op, 405, "Method Not Allowed",
                             "method not allowed", NULL, NULL);
        return;
    }

    if (n != 32 || strspn(p, "0123456789abcdef") < 32) {
        vw_status_http_error(op, 400, "Bad Request", "bad_request",
                             "a job id is 32 lowercase hexadecimal digits",
                             NULL);
        return;
    }

    memcpy(op->id, p, 32);
    op->id[32] = '\0';

    ac = vw_queue_context(sh->queue);

    if (ac == NULL
        || vw_status_http_cmd(op, ac, vw_status_http_read,
                              "HMGET {vq}:job:%s state attempts replays "
                              "type correlation_id", op->id) != VW_OK)
    {
        vw_status_http_error(op, 503, "Service Unavailable",
                             "redis_unavailable", "Redis cannot be reached",
                             NULL);
    }
}


/* HMGET state attempts replays type correlation_id */
static void
vw_status_http_read(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply      *r = reply, **f;
    vw_status_op_t  *op = privdata;

    if (vw_status_http_back(op) != VW_OK) {
        return;
    }

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 5) {
        vw_status_http_error(op, 503, "Service Unavailable",
                             "redis_unavailable", "Redis cannot be reached",
                             NULL);
        return;
    }

    f = r->element;

    if (f[0]->type != REDIS_REPLY_STRING) {
        vw_status_http_error(op, 404, "Not Found", "not_found", "no such job",
                             NULL);
        return;
    }

    if (strcmp(f[0]->str, "dead") != 0) {
        vw_status_http_error(op, 409, "Conflict", "not_dead",
                             "the job is not in the dead letters",
                             f[0]->str);
        return;
    }

    op->attempts = vw_status_http_int(f[1]);
    op->replays = f[2]->type == REDIS_REPLY_NIL ? 0
                                                : vw_status_http_int(f[2]);

    if (op->attempts < 0) {
        vw_status_http_error(op, 500, "Internal Server Error",
                             "unreadable_job", "the job has no readable "
                             "attempts field: not replayed", NULL);
        return;
    }

    if (f[3]->type == REDIS_REPLY_STRING) {
        snprintf(op->type, sizeof(op->type), "%s", f[3]->str);
    }

    if (f[4]->type == REDIS_REPLY_STRING) {
        snprintf(op->correlation_id, sizeof(op->correlation_id), "%s",
                 f[4]->str);
    }

    /* alone, not in the transaction: its reply says who replays */
    if (vw_status_http_cmd(op, ac, vw_status_http_claimed,
                           "ZREM " VW_STATUS_DEAD " %s", op->id) != VW_OK)
    {
        vw_status_http_error(op, 503, "Service Unavailable",
                             "redis_unavailable", "Redis cannot be reached",
                             NULL);
    }
}


static void
vw_status_http_claimed(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct timeval   tv;
    redisReply      *r = reply;
    vw_status_op_t  *op = privdata;

    if (vw_status_http_back(op) != VW_OK) {
        return;
    }

    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        vw_status_http_error(op, 503, "Service Unavailable",
                             "redis_unavailable", "Redis cannot be reached",
                             NULL);
        return;
    }

    if (r->integer == 1) {
        vw_status_http_exec(op, ac);
        return;
    }

    /* someone else's ZREM: a live replayer finishes in a round trip */
    op->timer = evtimer_new(op->sh->base, vw_status_http_orphan, op);
    if (op->timer == NULL) {
        vw_status_http_error(op, 500, "Internal Server Error", "internal",
                             NULL, NULL);
        return;
    }

    tv.tv_sec = VW_STATUS_ORPHAN_MS / 1000;
    tv.tv_usec = (VW_STATUS_ORPHAN_MS % 1000) * 1000;
    evtimer_add(op->timer, &tv);
}


static void
vw_status_http_orphan(evutil_socket_t fd, short what, void *arg)
{
    vw_status_op_t     *op = arg;
    redisAsyncContext  *ac;

    event_free(op->timer);
    op->timer = NULL;

    ac = op->sh ? vw_queue_context(op->sh->queue) : NULL;

    if (ac == NULL
        || vw_status_http_cmd(op, ac, vw_status_http_reread,
                              "HMGET {vq}:job:%s state replays", op->id)
           != VW_OK)
    {
        vw_status_http_error(op, 503, "Service Unavailable",
                             "redis_unavailable", "Redis cannot be reached",
                             NULL);
    }
}


/*
 * After the pause: a hash gone was purged, one no longer dead or with
 * another replay count was replayed by someone else; one still dead with
 * the same count is the leftover of a replayer that died between its
 * ZREM and its EXEC, and is taken over.
 */
static void
vw_status_http_reread(redisAsyncContext *ac, void *reply, void *privdata)
{
    long long        replays;
    redisReply      *r = reply;
    vw_status_op_t  *op = privdata;

    if (vw_status_http_back(op) != VW_OK) {
        return;
    }

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        vw_status_http_error(op, 503, "Service Unavailable",
                             "redis_unavailable", "Redis cannot be reached",
                             NULL);
        return;
    }

    if (r->element[0]->type != REDIS_REPLY_STRING) {
        vw_status_http_error(op, 404, "Not Found", "not_found",
                             "purged concurrently", NULL);
        return;
    }

    replays = r->element[1]->type == REDIS_REPLY_NIL
              ? 0 : vw_status_http_int(r->element[1]);

    if (strcmp(r->element[0]->str, "dead") != 0 || replays != op->replays) {
        vw_status_http_error(op, 409, "Conflict", "not_dead",
                             "replayed by someone else concurrently",
                             r->element[0]->str);
        return;
    }

    vw_status_http_exec(op, ac);
}


/* the transaction of docs/WORKER.md, "Replay and skip" */
static void
vw_status_http_exec(vw_status_op_t *op, redisAsyncContext *ac)
{
    (void) redisAsyncCommand(ac, NULL, NULL, "MULTI");
    (void) redisAsyncCommand(ac, NULL, NULL, "HSET {vq}:job:%s state queued",
                             op->id);
    (void) redisAsyncCommand(ac, NULL, NULL, "HDEL {vq}:job:%s "
                             "next_attempt_ms finished_ms", op->id);
    (void) redisAsyncCommand(ac, NULL, NULL, "HINCRBY {vq}:job:%s replays 1",
                             op->id);
    (void) redisAsyncCommand(ac, NULL, NULL, "XADD " VW_STATUS_JOBS " * job "
                             "%s n %lld", op->id, op->attempts + 1);
    (void) redisAsyncCommand(ac, NULL, NULL, "INCR " VW_STATUS_INFLIGHT);

    if (vw_status_http_cmd(op, ac, vw_status_http_replayed, "EXEC")
        != VW_OK)
    {
        vw_log("error", "a dead job was taken out of " VW_STATUS_DEAD
               " and not replayed: replay it again to finish", "job", op->id,
               NULL);
        vw_status_http_error(op, 503, "Service Unavailable",
                             "redis_unavailable", "Redis cannot be reached",
                             NULL);
    }
}


/* EXEC: [HSET, HDEL, HINCRBY's replays, XADD's entry, INCR] */
static void
vw_status_http_replayed(redisAsyncContext *ac, void *reply, void *privdata)
{
    char             n[24], replays[24];
    size_t           i;
    redisReply      *r = reply;
    vw_status_op_t  *op = privdata;

    op->pending--;

    for (i = 0; r != NULL && r->type == REDIS_REPLY_ARRAY
                && i < r->elements; i++)
    {
        if (r->element[i]->type == REDIS_REPLY_ERROR) {
            break;
        }
    }

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 5
        || i != 5 || r->element[2]->type != REDIS_REPLY_INTEGER)
    {
        /* the job is out of {vq}:dead and still says dead: ctl's case */
        vw_log("error", "a dead job was taken out of " VW_STATUS_DEAD
               " and not replayed: replay it again to finish", "job", op->id,
               "reason", r && r->type == REDIS_REPLY_ERROR ? r->str
                         : r ? "the transaction failed" : "Redis lost",
               NULL);
        vw_status_http_error(op, 503, "Service Unavailable",
                             "redis_unavailable", "Redis failed: replay the "
                             "job again to finish", NULL);
        return;
    }

    snprintf(n, sizeof(n), "%lld", op->attempts + 1);
    snprintf(replays, sizeof(replays), "%lld", r->element[2]->integer);

    vw_log("info", "dead letter replayed", "job", op->id,
           "correlation_id", op->correlation_id,
           "type", op->type,
           "attempt", n,
           "replays", replays,
           "entry", r->element[3]->type == REDIS_REPLY_STRING
                    ? r->element[3]->str : "", NULL);

    vw_metrics_inc(VW_METRICS_JOBS_TOTAL, op->type[0] ? op->type : "(unknown)",
                   "replayed");

    vw_status_http_done(op, 200, "OK",
                        json_pack("{sssssI}", "job_id", op->id,
                                  "state", "queued",
                                  "replays",
                                  (json_int_t) r->element[2]->integer));
}


void
vw_status_http_free(vw_status_http_t *sh)
{
    vw_status_op_t  *op, *next;

    if (sh == NULL) {
        return;
    }

    for (op = sh->ops; op != NULL; op = next) {
        next = op->next;
        op->sh = NULL;

        if (op->timer != NULL) {
            event_free(op->timer);
            op->timer = NULL;
        }

        if (op->req != NULL) {
            evhttp_send_error(op->req, 503, NULL);
            op->req = NULL;
        }

        /* a reply still out frees it */
        if (op->pending == 0) {
            vw_status_http_op_free(op);
        }
    }

    free(sh);
}
