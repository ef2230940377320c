/* hubspot.c -- the HubSpot connector: CRM objects, batches, search, paging */

/*
 * One attempt: a token from the token manager, the call (or the pages of
 * a read) with it, the outcome from HubSpot's answer (docs/CONNECTORS.md).
 * Each response's X-HubSpot-RateLimit-* headers and each 429 may pause
 * the connection: the pause is kept here per connection and in Redis at
 * {vq}:pace:<connection>, and admit() holds jobs back while it lasts.
 *
 * An attempt's context is the connector's: the engine's call may be gone
 * (cancel()) while Redis replies are still out, so the context counts
 * them and is freed by the last one once it is detached from the call.
 */


#define _GNU_SOURCE             /* asprintf() */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <jansson.h>

#include "vw_connector.h"
#include "vw_metrics.h"
#include "vw_oauth.h"
#include "vw_hubspot.h"


#define VW_HS_BATCH_MAX      100
#define VW_HS_PAGE_LIMIT     100
#define VW_HS_BODY_MAX       (32 * 1024 * 1024)
#define VW_HS_PACE_RECHECK   200        /* ms between reads of Redis' */
#define VW_HS_NAME_MAX       128
#define VW_HS_BURST_MS       10000      /* the burst window, unless said */
#define VW_HS_SECOND_MS      1000
#define VW_HS_DAY_MS         86400000ULL
#define VW_HS_DEFAULT_BASE   "https://api.hubapi.com"
#define VW_HS_WORDS          8          /* codes or names in an error */
#define VW_HS_HOLD_MAX       10000      /* a pause an attempt waits out */
#define VW_HS_PAGE_429S      3          /* a read's pages sent again */


typedef enum {
    VW_HS_CREATE = 0,
    VW_HS_UPDATE,
    VW_HS_UPSERT,
    VW_HS_BATCH_CREATE,
    VW_HS_BATCH_UPDATE,
    VW_HS_BATCH_UPSERT,
    VW_HS_SEARCH,
    VW_HS_LIST,
    VW_HS_ASSOCIATE,
    VW_HS_READ
} vw_hs_op_e;


typedef struct vw_hs_pace_s  vw_hs_pace_t;

/* a connection's pause; kept for the process's life, never freed */
struct vw_hs_pace_s {
    char                        name[VW_HS_NAME_MAX + 1];
    uint64_t                    until;      /* wall ms; past: not paused */
    const char                 *policy;     /* a static string */
    uint64_t                    asked;      /* when Redis' was last read */
    unsigned                    asking:1;   /* a GET is out */
    char                        why[96];    /* admit()'s *why */
    vw_hs_pace_t               *next;
};


typedef struct {
    vw_call_t                  *call;       /* NULL once detached */
    const vw_services_t        *svc;
    vw_hs_op_e                  op;
    const char                 *method;
    char                       *path;       /* after the base */
    char                       *url;
    unsigned char              *body;
    size_t                      body_len;
    json_t                     *records;    /* a batch: the job's records,
                                               as given */
    json_t                     *inputs;     /* a batch: as sent */
    json_t                     *search;     /* search: the request */
    char                       *list_query; /* list: "?limit=..." */
    char                        id[VW_HS_NAME_MAX];   /* update, associate */
    unsigned                    pages;
    uint64_t                    total;
    char                        conn[VW_HS_NAME_MAX + 1];
    char                        out_key[80];    /* {vq}:out:<job id> */
    vw_token_req_t              tr;
    char                        stale[VW_OAUTH_TOKEN_MAX];
    vw_http_req_t               req;
    struct curl_slist          *headers;
    long long                   rl_remaining;   /* -1: not said */
    long long                   rl_interval;
    long long                   rl_secondly;
    long long                   rl_daily;
    long long                   rl_max;         /* the windows' limits */
    long long                   rl_secondly_max;
    long long                   rl_daily_max;
    unsigned                    pending;    /* Redis replies still out */
    unsigned                    page_429s;
    struct event               *timer;      /* holds a call in a pause */
    uint64_t                    start;      /* monotonic ms */
    unsigned                    token_out:1;
    unsigned                    http_out:1;
    unsigned                    timer_out:1;
    unsigned                    have_token:1;
    unsigned                    replayed:1;
    unsigned                    detached:1;
    unsigned                    ending:1;   /* the outcome is set; the
                                               last Redis reply ends it */
    unsigned                    redis_failed:1;
} vw_hs_ctx_t;


/* a set of short words for an error text: codes, or property names */
typedef struct {
    const char                 *w[VW_HS_WORDS];
    unsigned                    n;
} vw_hs_words_t;


static int vw_hs_admit(vw_call_t *call, uint64_t now, uint64_t *retry_at,
    const char **why);
static int vw_hs_start(vw_call_t *call);
static void vw_hs_cancel(vw_call_t *call);
static int vw_hs_build(vw_hs_ctx_t *ctx, vw_call_t *call);
static int vw_hs_build_batch(vw_hs_ctx_t *ctx, vw_call_t *call, json_t *v);
static json_t *vw_hs_input(vw_hs_ctx_t *ctx, vw_call_t *call, json_t *rec,
    size_t i);
static int vw_hs_build_read(vw_hs_ctx_t *ctx, vw_call_t *call, json_t *v);
static json_t *vw_hs_read_properties(vw_call_t *call);
static int vw_hs_build_get(vw_hs_ctx_t *ctx, vw_call_t *call, json_t *v,
    const char *obj);
static void vw_hs_got(vw_hs_ctx_t *ctx, long status, json_t *body);
static int vw_hs_token(vw_hs_ctx_t *ctx, const char *stale);
static int vw_hs_hold(vw_hs_ctx_t *ctx);
static void vw_hs_held(evutil_socket_t fd, short what, void *data);
static int vw_hs_next(vw_hs_ctx_t *ctx);
static void vw_hs_token_done(vw_token_req_t *tr);
static void vw_hs_token_outcome(vw_call_t *call, vw_token_req_t *tr);
static int vw_hs_send(vw_hs_ctx_t *ctx);
static void vw_hs_on_header(vw_http_req_t *req, const char *name,
    size_t nlen, const char *value, size_t vlen);
static void vw_hs_http_done(vw_http_req_t *req);
static void vw_hs_limits(vw_hs_ctx_t *ctx, uint64_t now);
static void vw_hs_rate_limited(vw_hs_ctx_t *ctx, json_t *body,
    long long retry_after);
static void vw_hs_refused(vw_hs_ctx_t *ctx, long status, json_t *body);
static void vw_hs_success(vw_hs_ctx_t *ctx, long status, json_t *body,
    const unsigned char *raw, size_t len);
static void vw_hs_single(vw_hs_ctx_t *ctx, long status, json_t *body);
static void vw_hs_batch(vw_hs_ctx_t *ctx, long status, json_t *body);
static void vw_hs_page(vw_hs_ctx_t *ctx, json_t *body,
    const unsigned char *raw, size_t len);
static void vw_hs_xref(vw_hs_ctx_t *ctx, const char *vendor_id);
static void vw_hs_redis_done(struct redisAsyncContext *ac, void *r,
    void *data);
static void vw_hs_end(vw_hs_ctx_t *ctx);
static void vw_hs_free(vw_hs_ctx_t *ctx);
static void vw_hs_set(vw_call_t *call, vw_call_outcome_e outcome,
    long status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void vw_hs_describe(char *buf, size_t size, json_t *body);
static void vw_hs_collect(json_t *e, vw_hs_words_t *cats,
    vw_hs_words_t *codes, vw_hs_words_t *names, unsigned depth);
static int vw_hs_retryable(json_t *e);
static vw_hs_pace_t *vw_hs_pace(const char *name);
static void vw_hs_pause(vw_hs_ctx_t *ctx, uint64_t now, uint64_t until,
    const char *policy);
static void vw_hs_pace_read(struct redisAsyncContext *ac, void *r,
    void *data);
static const char *vw_hs_id(json_t *v, char *buf, size_t size);
static char *vw_hs_escape(const char *s);
static void vw_hs_scrub_headers(struct curl_slist *h);
static uint64_t vw_hs_wall_ms(void);


static const char *const  vw_hs_operations[] = {
    "create", "update", "upsert", "batch_create", "batch_update",
    "batch_upsert", "search", "list", "associate", "read", NULL
};


const vw_connector_t  vw_connector_hubspot = {
    "hubspot",
    vw_hs_admit,
    vw_hs_start,
    vw_hs_cancel,
    vw_hs_operations
};


static vw_hs_pace_t        *vw_hs_paces;
static vw_hubspot_stats_t   vw_hs_stats;


void
vw_hubspot_stats(vw_hubspot_stats_t *out)
{
    *out = vw_hs_stats;
}


/*
 * Holds the attempt back while its connection is paused, here or, as
 * the last read of {vq}:pace:<connection> says, by another worker.  The
 * read is asynchronous and at most every 200 ms a connection, so a pause
 * another worker begins is honoured here that much later.
 */
static int
vw_hs_admit(vw_call_t *call, uint64_t now, uint64_t *retry_at,
    const char **why)
{
    vw_hs_pace_t              *p;
    struct redisAsyncContext  *ac;

    if (call->conn == NULL) {
        return VW_OK;
    }

    p = vw_hs_pace(call->conn->name);
    if (p == NULL) {
        return VW_OK;
    }

    if (!p->asking && now >= p->asked + VW_HS_PACE_RECHECK) {
        ac = call->svc->redis(call->svc->redis_data);

        if (ac != NULL
            && redisAsyncCommand(ac, vw_hs_pace_read, p,
                                 "GET {vq}:pace:%s", p->name) == REDIS_OK)
        {
            p->asking = 1;
            p->asked = now;
        }
    }

    if (p->until <= now) {
        return VW_OK;
    }

    snprintf(p->why, sizeof(p->why), "HubSpot rate limit (%s): paused %llu ms",
             p->policy ? p->policy : "SHARED",
             (unsigned long long) (p->until - now));

    *retry_at = p->until;
    *why = p->why;
    vw_hs_stats.deferred++;

    return VW_DECLINED;
}


static void
vw_hs_pace_read(struct redisAsyncContext *ac, void *r, void *data)
{
    uint64_t       until;
    redisReply    *reply = r;
    vw_hs_pace_t  *p = data;

    p->asking = 0;

    if (reply == NULL || reply->type != REDIS_REPLY_STRING) {
        return;
    }

    until = strtoull(reply->str, NULL, 10);

    if (until > p->until) {
        p->until = until;
        p->policy = "SHARED";
    }
}


static int
vw_hs_start(vw_call_t *call)
{
    unsigned                   i;
    vw_hs_ctx_t               *ctx;
    struct redisAsyncContext  *ac;

    ctx = calloc(1, sizeof(vw_hs_ctx_t));
    if (ctx == NULL) {
        vw_hs_set(call, VW_CALL_RETRY, 0, "out of memory");
        return VW_ERROR;
    }

    ctx->call = call;
    ctx->svc = call->svc;
    ctx->start = vw_http_monotonic_ms();
    ctx->rl_remaining = -1;
    ctx->rl_interval = -1;
    ctx->rl_secondly = -1;
    ctx->rl_daily = -1;
    snprintf(ctx->conn, sizeof(ctx->conn), "%s", call->conn->name);
    snprintf(ctx->out_key, sizeof(ctx->out_key), "{vq}:out:%s",
             call->job_id);

    for (i = 0; vw_hs_operations[i] != NULL; i++) {
        if (strcmp(call->operation, vw_hs_operations[i]) == 0) {
            break;
        }
    }

    if (vw_hs_operations[i] == NULL) {
        vw_hs_set(call, VW_CALL_DEAD, 0, "hubspot has no operation \"%.40s\"",
                  call->operation);
        vw_hs_free(ctx);
        return VW_ERROR;
    }

    ctx->op = i;

    if (vw_hs_build(ctx, call) != VW_OK) {
        vw_hs_free(ctx);
        return VW_ERROR;
    }

    if (ctx->op == VW_HS_SEARCH || ctx->op == VW_HS_LIST) {
        /* an earlier attempt's pages go: this one reads from the start */
        ac = ctx->svc->redis(ctx->svc->redis_data);

        if (ac == NULL
            || redisAsyncCommand(ac, vw_hs_redis_done, ctx, "DEL %s",
                                 ctx->out_key) != REDIS_OK)
        {
            vw_hs_set(call, VW_CALL_RETRY, 0,
                      "Redis is down: the pages could not be kept");
            vw_hs_free(ctx);
            return VW_ERROR;
        }

        ctx->pending++;
    }

    call->ctx = ctx;

    if (vw_hs_next(ctx) != VW_OK) {
        call->ctx = NULL;
        call->ms = vw_http_monotonic_ms() - ctx->start;
        ctx->call = NULL;
        ctx->detached = 1;

        if (ctx->pending == 0) {
            vw_hs_free(ctx);
        }

        return VW_ERROR;
    }

    return VW_OK;
}


static void
vw_hs_cancel(vw_call_t *call)
{
    vw_hs_ctx_t  *ctx = call->ctx;

    if (ctx == NULL) {
        return;
    }

    if (ctx->token_out) {
        vw_oauth_cancel(&ctx->tr);
        ctx->token_out = 0;
    }

    if (ctx->http_out) {
        vw_http_cancel(&ctx->req);
        ctx->http_out = 0;
    }

    if (ctx->timer_out) {
        evtimer_del(ctx->timer);
        ctx->timer_out = 0;
    }

    call->ctx = NULL;
    ctx->call = NULL;
    ctx->detached = 1;

    if (ctx->pending == 0) {
        vw_hs_free(ctx);
    }
}


/* the request from the operation and the job's body; VW_ERROR: dead */
static int
vw_hs_build(vw_hs_ctx_t *ctx, vw_call_t *call)
{
    int           rc;
    char         *obj, *a, *b, *c, buf[64];
    json_t       *v, *rec, *props, *out, *id;
    const char   *s;
    json_error_t  jerr;

    v = NULL;

    if (call->body_len > 0) {
        v = json_loadb((const char *) call->body, call->body_len, 0, &jerr);
        if (v == NULL) {
            vw_hs_set(call, VW_CALL_DEAD, 0,
                      "the job's body is not JSON (line %d, column %d)",
                      jerr.line, jerr.column);
            return VW_ERROR;
        }
    }

    obj = vw_hs_escape(call->object ? call->object : "");
    if (obj == NULL) {
        json_decref(v);
        vw_hs_set(call, VW_CALL_RETRY, 0, "out of memory");
        return VW_ERROR;
    }

    rc = VW_ERROR;
    out = NULL;

    switch (ctx->op) {

    case VW_HS_BATCH_CREATE:
    case VW_HS_BATCH_UPDATE:
    case VW_HS_BATCH_UPSERT:
        if (vw_hs_build_batch(ctx, call, v) != VW_OK) {
            goto done;
        }

        s = ctx->op == VW_HS_BATCH_CREATE ? "create"
            : ctx->op == VW_HS_BATCH_UPDATE ? "update" : "upsert";

        if (asprintf(&ctx->path, "/crm/v3/objects/%s/batch/%s", obj, s) < 0) {
            ctx->path = NULL;
            goto nomem;
        }

        ctx->method = "POST";
        out = json_pack("{sO}", "inputs", ctx->inputs);
        break;

    case VW_HS_SEARCH:
    case VW_HS_LIST:
        if (vw_hs_build_read(ctx, call, v) != VW_OK) {
            goto done;
        }

        if (ctx->op == VW_HS_SEARCH) {
            if (asprintf(&ctx->path, "/crm/v3/objects/%s/search", obj) < 0) {
                ctx->path = NULL;
                goto nomem;
            }

            ctx->method = "POST";
            out = json_incref(ctx->search);

        } else {
            if (asprintf(&ctx->path, "/crm/v3/objects/%s%s", obj,
                         ctx->list_query) < 0)
            {
                ctx->path = NULL;
                goto nomem;
            }

            ctx->method = "GET";
            rc = VW_OK;
            goto done;
        }

        break;

    case VW_HS_READ:
        rc = vw_hs_build_get(ctx, call, v, obj);
        goto done;

    case VW_HS_ASSOCIATE:
        if (!json_is_object(v)
            || vw_hs_id(json_object_get(v, "from"), ctx->id, sizeof(ctx->id))
               == NULL
            || vw_hs_id(json_object_get(v, "to"), buf, sizeof(buf)) == NULL
            || !json_is_string(json_object_get(v, "to_object")))
        {
            vw_hs_set(call, VW_CALL_DEAD, 0, "associate takes "
                      "{\"from\": id, \"to_object\": type, \"to\": id}");
            goto done;
        }

        a = vw_hs_escape(ctx->id);
        b = vw_hs_escape(json_string_value(json_object_get(v, "to_object")));
        c = vw_hs_escape(buf);

        if (a == NULL || b == NULL || c == NULL
            || asprintf(&ctx->path, "/crm/v4/objects/%s/%s/associations/"
                        "default/%s/%s", obj, a, b, c) < 0)
        {
            ctx->path = NULL;
            free(a);
            free(b);
            free(c);
            goto nomem;
        }

        free(a);
        free(b);
        free(c);

        /* the result names the pair: {"from":..,"to_object":..,"to":..} */
        ctx->search = json_pack("{sssOss}", "from", ctx->id, "to_object",
                                json_object_get(v, "to_object"), "to", buf);
        ctx->method = "PUT";
        rc = VW_OK;
        goto done;

    default:    /* create, update, upsert: one record */
        if (!json_is_object(v)) {
            vw_hs_set(call, VW_CALL_DEAD, 0,
                      "%s takes a JSON object", call->operation);
            goto done;
        }

        if (ctx->op == VW_HS_UPSERT) {
            rec = vw_hs_input(ctx, call, v, 0);
            if (rec == NULL) {
                goto done;
            }

            ctx->inputs = json_pack("[o]", rec);

            if (asprintf(&ctx->path, "/crm/v3/objects/%s/batch/upsert", obj)
                < 0)
            {
                ctx->path = NULL;
                goto nomem;
            }

            ctx->method = "POST";
            out = json_pack("{sO}", "inputs", ctx->inputs);
            break;
        }

        rec = vw_hs_input(ctx, call, v, 0);
        if (rec == NULL) {
            goto done;
        }

        if (ctx->op == VW_HS_CREATE) {
            json_object_del(rec, "objectWriteTraceId");
            out = rec;

            if (asprintf(&ctx->path, "/crm/v3/objects/%s", obj) < 0) {
                ctx->path = NULL;
                goto nomem;
            }

            ctx->method = "POST";
            break;
        }

        /* update: {"properties": ...} to .../<id>[?idProperty=...] */
        id = json_object_get(rec, "id");
        vw_hs_id(id, ctx->id, sizeof(ctx->id));
        props = json_object_get(rec, "properties");
        out = json_pack("{sO}", "properties", props);
        json_decref(rec);

        a = vw_hs_escape(ctx->id);
        b = call->id_field ? vw_hs_escape(call->id_field) : NULL;

        if (a == NULL || (call->id_field && b == NULL)
            || asprintf(&ctx->path, "/crm/v3/objects/%s/%s%s%s", obj, a,
                        b ? "?idProperty=" : "", b ? b : "") < 0)
        {
            ctx->path = NULL;
            free(a);
            free(b);
            goto nomem;
        }

        free(a);
        free(b);
        ctx->method = "PATCH";
        break;
    }

    if (out == NULL) {
        goto nomem;
    }

    ctx->body = (unsigned char *) json_dumps(out, JSON_COMPACT);
    json_decref(out);
    out = NULL;

    if (ctx->body == NULL) {
        goto nomem;
    }

    ctx->body_len = strlen((char *) ctx->body);
    rc = VW_OK;
    goto done;

nomem:

    vw_hs_set(call, VW_CALL_RETRY, 0, "out of memory");
    json_decref(out);

done:

    free(obj);
    json_decref(v);

    return rc;
}


/* a batch's inputs, each with an objectWriteTraceId to find its error */
static int
vw_hs_build_batch(vw_hs_ctx_t *ctx, vw_call_t *call, json_t *v)
{
    size_t   i, n;
    json_t  *rec, *in;

    if (!json_is_array(v)) {
        vw_hs_set(call, VW_CALL_DEAD, 0,
                  "%s takes a JSON array of records", call->operation);
        return VW_ERROR;
    }

    n = json_array_size(v);

    if (n == 0) {
        vw_hs_set(call, VW_CALL_DEAD, 0, "no records");
        return VW_ERROR;
    }

    if (n > VW_HS_BATCH_MAX) {
        vw_hs_set(call, VW_CALL_DEAD, 0, "more than 100 records (%zu)", n);
        return VW_ERROR;
    }

    ctx->records = json_incref(v);
    ctx->inputs = json_array();
    if (ctx->inputs == NULL) {
        vw_hs_set(call, VW_CALL_RETRY, 0, "out of memory");
        return VW_ERROR;
    }

    json_array_foreach(v, i, rec) {
        if (!json_is_object(rec)) {
            vw_hs_set(call, VW_CALL_DEAD, 0,
                      "record %zu is not a JSON object", i);
            return VW_ERROR;
        }

        in = vw_hs_input(ctx, call, rec, i);
        if (in == NULL) {
            return VW_ERROR;
        }

        if (json_array_append_new(ctx->inputs, in) != 0) {
            vw_hs_set(call, VW_CALL_RETRY, 0, "out of memory");
            return VW_ERROR;
        }
    }

    return VW_OK;
}


/*
 * One record as HubSpot takes it: {"properties": {...}} as given or a
 * flat {prop: value} wrapped; update's "id" and upsert's id_property
 * value lifted out.  A new reference, or NULL with a dead outcome set.
 */
static json_t *
vw_hs_input(vw_hs_ctx_t *ctx, vw_call_t *call, json_t *rec, size_t i)
{
    char         buf[VW_HS_NAME_MAX], trace[32];
    json_t      *in, *props, *id;
    const char  *key;
    json_t      *value;

    props = json_object_get(rec, "properties");

    /* deep copies: the job's records stay as given, for next_body */
    if (json_is_object(props)) {
        in = json_deep_copy(rec);
        props = json_object_get(in, "properties");

    } else {
        props = json_deep_copy(rec);
        in = json_object();

        if (props != NULL && in != NULL) {
            json_object_set_new(in, "properties", props);
        }
    }

    if (in == NULL || props == NULL) {
        json_decref(in);
        vw_hs_set(call, VW_CALL_RETRY, 0, "out of memory");
        return NULL;
    }

    switch (ctx->op) {

    case VW_HS_UPDATE:
    case VW_HS_BATCH_UPDATE:
        id = json_object_get(in, "id");
        if (id == NULL) {
            id = json_object_get(props, "id");
            if (id != NULL) {
                json_object_set(in, "id", id);
            }
        }

        json_object_del(props, "id");

        if (vw_hs_id(json_object_get(in, "id"), buf, sizeof(buf)) == NULL) {
            json_decref(in);
            vw_hs_set(call, VW_CALL_DEAD, 0, "record %zu has no \"id\"", i);
            return NULL;
        }

        json_object_set_new(in, "id", json_string(buf));
        break;

    case VW_HS_UPSERT:
    case VW_HS_BATCH_UPSERT:
        if (call->id_field == NULL) {
            json_decref(in);
            vw_hs_set(call, VW_CALL_DEAD, 0, "upsert needs id_property");
            return NULL;
        }

        id = json_object_get(props, call->id_field);
        if (id == NULL) {
            id = json_object_get(in, "id");
        }

        if (vw_hs_id(id, buf, sizeof(buf)) == NULL) {
            json_decref(in);
            vw_hs_set(call, VW_CALL_DEAD, 0, "record %zu has no \"%.40s\"",
                      i, call->id_field);
            return NULL;
        }

        json_object_set_new(in, "id", json_string(buf));
        json_object_set_new(in, "idProperty", json_string(call->id_field));
        break;

    default:
        break;
    }

    /* HubSpot answers per input only when each one has a trace id */
    if (!json_is_string(json_object_get(in, "objectWriteTraceId"))) {
        snprintf(trace, sizeof(trace), "%zu", i);
        json_object_set_new(in, "objectWriteTraceId", json_string(trace));
    }

    json_object_foreach(props, key, value) {
        if (json_is_object(value) || json_is_array(value)) {
            json_decref(in);
            vw_hs_set(call, VW_CALL_DEAD, 0, "record %zu: property "
                      "\"%.40s\" is not a string, number or boolean",
                      i, key);
            return NULL;
        }
    }

    return in;
}


/*
 * {"properties": [...]} from the paths a "then" job's mapping reads:
 * "properties.<name>" gives <name>; other paths ("id") are the record's
 * own.  NULL when there are none.
 */
static json_t *
vw_hs_read_properties(vw_call_t *call)
{
    size_t       i;
    json_t      *a;
    const char  *f;

    if (call->read_fields == NULL) {
        return NULL;
    }

    a = json_array();

    for (i = 0; a != NULL && call->read_fields[i] != NULL; i++) {
        f = call->read_fields[i];

        if (strncmp(f, "properties.", 11) == 0 && f[11] != '\0'
            && strchr(f + 11, '.') == NULL)
        {
            json_array_append_new(a, json_string(f + 11));
        }
    }

    if (a == NULL || json_array_size(a) == 0) {
        json_decref(a);
        return NULL;
    }

    return json_pack("{so}", "properties", a);
}


/*
 * read: the id from the body ({"id": ...}, or a webhook event's
 * "objectId") or else from X-Vantage-Source: hubspot:<id>; the body's
 * "properties" (names) are asked for, else HubSpot's defaults come.
 */
static int
vw_hs_build_get(vw_hs_ctx_t *ctx, vw_call_t *call, json_t *v,
    const char *obj)
{
    int          rc;
    char        *id, *q;
    json_t      *save;
    const char  *src;

    if (json_is_array(v)) {
        v = json_array_get(v, 0);
    }

    if (vw_hs_id(json_object_get(v, "id"), ctx->id, sizeof(ctx->id)) == NULL
        && vw_hs_id(json_object_get(v, "objectId"), ctx->id,
                    sizeof(ctx->id)) == NULL)
    {
        src = call->source;

        if (src == NULL || strncmp(src, "hubspot:", 8) != 0 || src[8] == '\0'
            || strlen(src + 8) >= sizeof(ctx->id))
        {
            vw_hs_set(call, VW_CALL_DEAD, 0, "read takes {\"id\": ...} or "
                      "X-Vantage-Source: hubspot:<id>");
            return VW_ERROR;
        }

        snprintf(ctx->id, sizeof(ctx->id), "%s", src + 8);
    }

    /*
     * the list's query string builder, with the body's properties, else
     * those the next job's mapping reads (call->read_fields)
     */
    save = json_object_get(v, "properties");
    v = json_is_array(save) ? json_pack("{sO}", "properties", save)
                            : vw_hs_read_properties(call);
    ctx->op = VW_HS_LIST;
    rc = vw_hs_build_read(ctx, call, v);
    ctx->op = VW_HS_READ;
    json_decref(v);

    if (rc != VW_OK) {
        return VW_ERROR;
    }

    /* "?limit=100&properties=..." less the limit */
    q = strchr(ctx->list_query, '&');
    id = vw_hs_escape(ctx->id);

    if (id == NULL
        || asprintf(&ctx->path, "/crm/v3/objects/%s/%s%s%s", obj, id,
                    q ? "?" : "", q ? q + 1 : "") < 0)
    {
        ctx->path = NULL;
        free(id);
        vw_hs_set(call, VW_CALL_RETRY, 0, "out of memory");
        return VW_ERROR;
    }

    free(id);
    ctx->method = "GET";

    return VW_OK;
}


/* search: the request with "limit"; list: the query string */
static int
vw_hs_build_read(vw_hs_ctx_t *ctx, vw_call_t *call, json_t *v)
{
    size_t   i, len;
    char    *q, *p, *e;
    json_t  *props, *name;

    if (ctx->op == VW_HS_SEARCH) {
        if (v == NULL) {
            ctx->search = json_object();

        } else if (!json_is_object(v)) {
            vw_hs_set(call, VW_CALL_DEAD, 0, "search takes a JSON object");
            return VW_ERROR;

        } else {
            ctx->search = json_copy(v);
        }

        if (ctx->search == NULL) {
            vw_hs_set(call, VW_CALL_RETRY, 0, "out of memory");
            return VW_ERROR;
        }

        if (json_object_get(ctx->search, "limit") == NULL) {
            json_object_set_new(ctx->search, "limit",
                                json_integer(VW_HS_PAGE_LIMIT));
        }

        return VW_OK;
    }

    props = v ? json_object_get(v, "properties") : NULL;

    if ((v != NULL && !json_is_object(v))
        || (props != NULL && !json_is_array(props)))
    {
        vw_hs_set(call, VW_CALL_DEAD, 0,
                  "list takes {\"properties\": [...]} or nothing");
        return VW_ERROR;
    }

    len = 64;

    json_array_foreach(props, i, name) {
        if (!json_is_string(name)) {
            vw_hs_set(call, VW_CALL_DEAD, 0,
                      "list: properties holds a non-string");
            return VW_ERROR;
        }

        len += 3 * json_string_length(name) + 1;
    }

    q = malloc(len);
    if (q == NULL) {
        vw_hs_set(call, VW_CALL_RETRY, 0, "out of memory");
        return VW_ERROR;
    }

    p = q + sprintf(q, "?limit=%d", VW_HS_PAGE_LIMIT);

    json_array_foreach(props, i, name) {
        e = vw_hs_escape(json_string_value(name));
        if (e == NULL) {
            free(q);
            vw_hs_set(call, VW_CALL_RETRY, 0, "out of memory");
            return VW_ERROR;
        }

        p += sprintf(p, "%s%s", i == 0 ? "&properties=" : "%2C", e);
        free(e);
    }

    ctx->list_query = q;

    return VW_OK;
}


/*
 * The next request of the attempt, once the connection's pause is over:
 * a pause begun after admit() let the job through (a run that waited for
 * the target's slot, the next page of a read) is waited out here when it
 * is short, so that no call is sent into it; a long one (the daily
 * limit) ends the attempt as retryable, with nothing sent.  VW_OK: sent,
 * or held by the timer; VW_ERROR: the outcome is set.
 */
static int
vw_hs_next(vw_hs_ctx_t *ctx)
{
    int  rc;

    rc = vw_hs_hold(ctx);

    if (rc == VW_AGAIN) {
        return VW_OK;
    }

    if (rc != VW_OK) {
        return VW_ERROR;
    }

    return ctx->have_token ? vw_hs_send(ctx) : vw_hs_token(ctx, NULL);
}


/* VW_OK: not paused; VW_AGAIN: the timer holds the call; VW_ERROR: too
   long a pause, the outcome is set */
static int
vw_hs_hold(vw_hs_ctx_t *ctx)
{
    uint64_t        now, wait;
    vw_hs_pace_t   *p;
    struct timeval  tv;

    now = vw_hs_wall_ms();
    p = vw_hs_pace(ctx->conn);

    if (p == NULL || p->until <= now) {
        return VW_OK;
    }

    wait = p->until - now;

    if (wait > VW_HS_HOLD_MAX) {
        vw_hs_set(ctx->call, VW_CALL_RETRY, 0,
                  "HubSpot rate limit (%s): paused %llu ms",
                  p->policy ? p->policy : "SHARED",
                  (unsigned long long) wait);
        ctx->call->retry_after_ms = wait;
        return VW_ERROR;
    }

    if (ctx->timer == NULL) {
        ctx->timer = evtimer_new(ctx->svc->base, vw_hs_held, ctx);
        if (ctx->timer == NULL) {
            return VW_OK;
        }
    }

    tv.tv_sec = wait / 1000;
    tv.tv_usec = (wait % 1000) * 1000;

    if (evtimer_add(ctx->timer, &tv) != 0) {
        return VW_OK;
    }

    ctx->timer_out = 1;
    vw_hs_stats.held++;

    return VW_AGAIN;
}


static void
vw_hs_held(evutil_socket_t fd, short what, void *data)
{
    vw_hs_ctx_t  *ctx = data;

    ctx->timer_out = 0;

    if (vw_hs_next(ctx) != VW_OK) {
        vw_hs_end(ctx);
    }
}


/* asks for a token; VW_ERROR: the outcome is set on the call */
static int
vw_hs_token(vw_hs_ctx_t *ctx, const char *stale)
{
    vw_call_t  *call = ctx->call;

    memset(&ctx->tr, 0, sizeof(vw_token_req_t));
    ctx->tr.conn = call->conn;
    ctx->tr.stale = stale;
    ctx->tr.timeout_ms = call->timeout_ms;
    ctx->tr.ca_file = call->ca_file;
    ctx->tr.proxy = call->proxy;
    ctx->tr.connect_timeout_ms = call->connect_timeout_ms;
    ctx->tr.handler = vw_hs_token_done;
    ctx->tr.data = ctx;

    if (vw_oauth_get(ctx->svc->oauth, &ctx->tr) != VW_OK) {
        vw_hs_token_outcome(call, &ctx->tr);
        vw_token_clear(&ctx->tr);
        return VW_ERROR;
    }

    ctx->token_out = 1;

    return VW_OK;
}


static void
vw_hs_token_done(vw_token_req_t *tr)
{
    vw_hs_ctx_t  *ctx = tr->data;

    ctx->token_out = 0;

    if (tr->rc != VW_OK) {
        vw_hs_token_outcome(ctx->call, tr);
        vw_token_clear(tr);
        vw_hs_end(ctx);
        return;
    }

    ctx->have_token = 1;

    if (vw_hs_send(ctx) != VW_OK) {
        vw_hs_end(ctx);
    }
}


/* refused credentials need an operator: dead; the rest may pass: retry */
static void
vw_hs_token_outcome(vw_call_t *call, vw_token_req_t *tr)
{
    vw_hs_set(call, tr->rc == VW_ERROR ? VW_CALL_DEAD : VW_CALL_RETRY,
              tr->status, "token: %s", tr->error[0] ? tr->error : "none");
}


/* sends ctx's request with the token in ctx->tr; VW_ERROR: outcome set */
static int
vw_hs_send(vw_hs_ctx_t *ctx)
{
    int                 n;
    char                line[VW_OAUTH_TOKEN_MAX + 32];
    size_t              blen;
    vw_call_t          *call = ctx->call;
    const char         *base, *cid;
    struct curl_slist  *h, *l;

    base = ctx->tr.instance_url[0] ? ctx->tr.instance_url
           : call->conn->base_url ? call->conn->base_url
           : VW_HS_DEFAULT_BASE;

    blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/') {
        blen--;
    }

    free(ctx->url);
    if (asprintf(&ctx->url, "%.*s%s", (int) blen, base, ctx->path) < 0) {
        ctx->url = NULL;
        vw_hs_set(call, VW_CALL_RETRY, 0, "out of memory");
        return VW_ERROR;
    }

    vw_hs_scrub_headers(ctx->headers);
    ctx->headers = NULL;

    n = snprintf(line, sizeof(line), "Authorization: Bearer %s",
                 ctx->tr.token);
    h = curl_slist_append(NULL, line);
    explicit_bzero(line, n > 0 ? (size_t) n : sizeof(line));

    if (h == NULL) {
        goto nomem;
    }

    ctx->headers = h;

    if (ctx->body != NULL) {
        l = curl_slist_append(h, "Content-Type: application/json");
        if (l == NULL) {
            goto nomem;
        }
    }

    if (curl_slist_append(h, "Accept: application/json") == NULL) {
        goto nomem;
    }

    snprintf(line, sizeof(line), "Idempotency-Key: %s", call->job_id);
    if (curl_slist_append(h, line) == NULL) {
        goto nomem;
    }

    cid = call->correlation_id;

    if (cid != NULL && cid[0] != '\0' && strlen(cid) < 256
        && strpbrk(cid, "\r\n") == NULL)
    {
        snprintf(line, sizeof(line), "X-Correlation-ID: %s", cid);
        if (curl_slist_append(h, line) == NULL) {
            goto nomem;
        }
    }

    memset(&ctx->req, 0, sizeof(vw_http_req_t));
    ctx->req.method = ctx->method;
    ctx->req.url = ctx->url;
    ctx->req.headers = ctx->headers;
    ctx->req.body = ctx->body;
    ctx->req.body_len = ctx->body_len;
    ctx->req.timeout_ms = call->timeout_ms;
    ctx->req.connect_timeout_ms = call->connect_timeout_ms;
    ctx->req.ca_file = call->ca_file;
    ctx->req.proxy = call->proxy;
    ctx->req.body_max = VW_HS_BODY_MAX;
    ctx->req.https_only = 1;
    ctx->req.on_header = vw_hs_on_header;
    ctx->req.handler = vw_hs_http_done;
    ctx->req.data = ctx;

    ctx->rl_remaining = -1;
    ctx->rl_interval = -1;
    ctx->rl_secondly = -1;
    ctx->rl_daily = -1;
    ctx->rl_max = -1;
    ctx->rl_secondly_max = -1;
    ctx->rl_daily_max = -1;

    if (vw_http_request(ctx->svc->http, &ctx->req) != VW_OK) {
        vw_hs_set(call, VW_CALL_RETRY, 0, "HubSpot: %s", ctx->req.error);
        call->target_failure = 1;
        return VW_ERROR;
    }

    ctx->http_out = 1;

    return VW_OK;

nomem:

    vw_hs_set(call, VW_CALL_RETRY, 0, "out of memory");
    return VW_ERROR;
}


static void
vw_hs_on_header(vw_http_req_t *req, const char *name, size_t nlen,
    const char *value, size_t vlen)
{
    char          buf[24];
    long long    *to;
    vw_hs_ctx_t  *ctx = req->data;

    if (name == NULL) {
        ctx->rl_remaining = -1;
        ctx->rl_interval = -1;
        ctx->rl_secondly = -1;
        ctx->rl_daily = -1;
        ctx->rl_max = -1;
        ctx->rl_secondly_max = -1;
        ctx->rl_daily_max = -1;
        return;
    }

#define VW_HS_IS(s)  (nlen == sizeof(s) - 1 && strncasecmp(name, s, nlen) == 0)

    if (VW_HS_IS("X-HubSpot-RateLimit-Remaining")) {
        to = &ctx->rl_remaining;

    } else if (VW_HS_IS("X-HubSpot-RateLimit-Interval-Milliseconds")) {
        to = &ctx->rl_interval;

    } else if (VW_HS_IS("X-HubSpot-RateLimit-Secondly-Remaining")) {
        to = &ctx->rl_secondly;

    } else if (VW_HS_IS("X-HubSpot-RateLimit-Daily-Remaining")) {
        to = &ctx->rl_daily;

    } else if (VW_HS_IS("X-HubSpot-RateLimit-Max")) {
        to = &ctx->rl_max;

    } else if (VW_HS_IS("X-HubSpot-RateLimit-Secondly")) {
        to = &ctx->rl_secondly_max;

    } else if (VW_HS_IS("X-HubSpot-RateLimit-Daily")) {
        to = &ctx->rl_daily_max;

    } else {
        return;
    }

#undef VW_HS_IS

    if (vlen == 0 || vlen >= sizeof(buf)
        || strspn(value, "0123456789") < vlen)
    {
        return;
    }

    memcpy(buf, value, vlen);
    buf[vlen] = '\0';
    *to = strtoll(buf, NULL, 10);
}


static void
vw_hs_http_done(vw_http_req_t *req)
{
    long            status;
    size_t          len;
    json_t         *body;
    uint64_t        now;
    vw_call_t      *call;
    vw_hs_ctx_t    *ctx = req->data;
    unsigned char  *big;

    ctx->http_out = 0;
    call = ctx->call;
    status = req->status;
    big = req->big;
    len = req->big_len;
    req->big = NULL;
    req->big_len = 0;

    now = vw_hs_wall_ms();
    vw_hs_limits(ctx, now);

    if (req->failed || status == 0) {
        if (req->too_large) {
            vw_hs_set(call, VW_CALL_RETRY, status,
                      "HubSpot: the answer is larger than %d bytes",
                      VW_HS_BODY_MAX);

        } else if (req->timed_out) {
            vw_hs_set(call, VW_CALL_RETRY, 0,
                      "HubSpot: no answer within %llu ms",
                      (unsigned long long) call->timeout_ms);
        } else {
            vw_hs_set(call, VW_CALL_RETRY, 0, "HubSpot: %s",
                      req->error[0] ? req->error : "no response");
        }

        call->target_failure = 1;
        free(big);
        vw_hs_end(ctx);
        return;
    }

    if (status == 401 && !ctx->replayed) {
        /* a token newer than the one refused, and the same call again */
        ctx->replayed = 1;
        vw_hs_stats.replays++;
        snprintf(ctx->stale, sizeof(ctx->stale), "%s", ctx->tr.token);
        free(big);

        if (vw_hs_token(ctx, ctx->stale) != VW_OK) {
            vw_hs_end(ctx);
        }

        return;
    }

    call->status = status;
    call->resp_len = len < sizeof(call->resp) ? len : sizeof(call->resp);
    if (call->resp_len) {
        memcpy(call->resp, big, call->resp_len);
    }

    body = big ? json_loadb((char *) big, len, 0, NULL) : NULL;

    if (status == 429) {
        vw_hs_rate_limited(ctx, body, req->retry_after);

        /* a read's page is sent again after a short pause (search has a
           limit of its own, a few a second), not the read from the start */
        if ((ctx->op == VW_HS_SEARCH || ctx->op == VW_HS_LIST)
            && ctx->page_429s++ < VW_HS_PAGE_429S
            && call->retry_after_ms <= VW_HS_HOLD_MAX)
        {
            vw_hs_set(call, VW_CALL_SUCCESS, 0, "%s", "");
            call->retry_after_ms = 0;
            call->resp_len = 0;

            if (vw_hs_next(ctx) != VW_OK) {
                vw_hs_end(ctx);
            }

        } else {
            vw_hs_end(ctx);
        }

    } else if (status >= 200 && status < 300) {
        vw_hs_success(ctx, status, body, big, len);

    } else {
        vw_hs_refused(ctx, status, body);
        vw_hs_end(ctx);
    }

    json_decref(body);

    if (big != NULL) {
        explicit_bzero(big, len);
        free(big);
    }
}


/* a window's limit and remaining, both said, as the quota gauges */
static void
vw_hs_quota(vw_hs_ctx_t *ctx, const char *window, long long limit,
    long long remaining)
{
    if (limit < 0 || remaining < 0 || ctx->call == NULL
        || ctx->call->target == NULL)
    {
        return;
    }

    vw_metrics_quota(ctx->call->target, window,
                     remaining < limit ? (uint64_t) (limit - remaining) : 0,
                     (uint64_t) limit);
}


/*
 * An answer's windows go to the quota gauges; its burst or daily
 * remaining at 0 pauses the connection.
 */
static void
vw_hs_limits(vw_hs_ctx_t *ctx, uint64_t now)
{
    vw_hs_quota(ctx, "daily", ctx->rl_daily_max, ctx->rl_daily);
    vw_hs_quota(ctx, "burst", ctx->rl_max, ctx->rl_remaining);
    vw_hs_quota(ctx, "secondly", ctx->rl_secondly_max, ctx->rl_secondly);

    if (ctx->rl_daily == 0) {
        vw_hs_pause(ctx, now, (now / VW_HS_DAY_MS + 1) * VW_HS_DAY_MS,
                    "DAILY");
    }

    if (ctx->rl_remaining == 0) {
        vw_hs_pause(ctx, now, now + (ctx->rl_interval > 0
                                     ? (uint64_t) ctx->rl_interval
                                     : VW_HS_BURST_MS),
                    "TEN_SECONDLY_ROLLING");
    }
}


static void
vw_hs_rate_limited(vw_hs_ctx_t *ctx, json_t *body, long long retry_after)
{
    uint64_t       now, until;
    vw_call_t     *call = ctx->call;
    const char    *name, *policy;
    vw_hs_pace_t  *p;

    vw_hs_stats.rate_limited++;

    name = json_string_value(json_object_get(body, "policyName"));
    now = vw_hs_wall_ms();

    if (name != NULL && strcmp(name, "DAILY") == 0) {
        policy = "DAILY";
        until = (now / VW_HS_DAY_MS + 1) * VW_HS_DAY_MS;

    } else {
        if (name != NULL && strcmp(name, "SECONDLY") == 0) {
            policy = "SECONDLY";

        } else if (name != NULL
                   && strcmp(name, "TEN_SECONDLY_ROLLING") == 0)
        {
            policy = "TEN_SECONDLY_ROLLING";

        } else {
            policy = "RATE_LIMIT";
        }

        if (retry_after >= 0) {
            until = now + (uint64_t) retry_after * 1000;

        } else if (policy[0] == 'S') {
            until = now + VW_HS_SECOND_MS;

        } else if (ctx->rl_interval > 0) {
            until = now + (uint64_t) ctx->rl_interval;

        } else {
            until = now + VW_HS_BURST_MS;
        }
    }

    vw_hs_pause(ctx, now, until, policy);

    p = vw_hs_pace(ctx->conn);
    if (p != NULL && p->until > until) {
        until = p->until;
    }

    vw_hs_set(call, VW_CALL_RETRY, 429, "HTTP 429 RATE_LIMIT (%s)", policy);
    call->retry_after_ms = until - now;
}


/* a second 401, 408, 425, 5xx: retry; any other answer: dead */
static void
vw_hs_refused(vw_hs_ctx_t *ctx, long status, json_t *body)
{
    char        what[VW_ERRSTR_LEN];
    vw_call_t  *call = ctx->call;

    vw_hs_describe(what, sizeof(what), body);

    if (status == 401) {
        vw_hs_set(call, VW_CALL_RETRY, status,
                  "HTTP 401%s (a new token was refused too)", what);

    } else if (status >= 500 || status == 408 || status == 425) {
        vw_hs_set(call, VW_CALL_RETRY, status, "HTTP %ld%s", status, what);
        call->target_failure = status >= 500;

    } else {
        vw_hs_set(call, VW_CALL_DEAD, status, "HTTP %ld%s", status, what);
    }
}


static void
vw_hs_success(vw_hs_ctx_t *ctx, long status, json_t *body,
    const unsigned char *raw, size_t len)
{
    vw_call_t  *call = ctx->call;

    switch (ctx->op) {

    case VW_HS_SEARCH:
    case VW_HS_LIST:
        vw_hs_page(ctx, body, raw, len);
        return;

    case VW_HS_BATCH_CREATE:
    case VW_HS_BATCH_UPDATE:
    case VW_HS_BATCH_UPSERT:
        vw_hs_batch(ctx, status, body);
        break;

    case VW_HS_ASSOCIATE:
        vw_hs_set(call, VW_CALL_SUCCESS, status, "%s", "");
        call->result = json_dumps(ctx->search, JSON_COMPACT);
        break;

    case VW_HS_READ:
        vw_hs_got(ctx, status, body);
        break;

    default:
        vw_hs_single(ctx, status, body);
        break;
    }

    vw_hs_end(ctx);
}


/* read: the record as HubSpot sent it is the output (a "then" job's body) */
static void
vw_hs_got(vw_hs_ctx_t *ctx, long status, json_t *body)
{
    char        id[VW_HS_NAME_MAX];
    json_t     *result;
    vw_call_t  *call = ctx->call;

    if (!json_is_object(body)
        || vw_hs_id(json_object_get(body, "id"), id, sizeof(id)) == NULL)
    {
        vw_hs_set(call, VW_CALL_RETRY, status,
                  "HubSpot: a record without an id");
        return;
    }

    vw_hs_set(call, VW_CALL_SUCCESS, status, "%s", "");
    call->output = json_dumps(body, JSON_COMPACT);

    result = json_pack("{ss}", "id", id);
    if (result != NULL) {
        call->result = json_dumps(result, JSON_COMPACT);
        json_decref(result);
    }
}


/* create, update: the record; upsert: a batch of one */
static void
vw_hs_single(vw_hs_ctx_t *ctx, long status, json_t *body)
{
    int          created;
    char         id[VW_HS_NAME_MAX], what[VW_ERRSTR_LEN];
    json_t      *rec, *errs, *result;
    vw_call_t   *call = ctx->call;

    rec = body;
    created = ctx->op == VW_HS_CREATE;

    if (ctx->op == VW_HS_UPSERT) {
        errs = json_object_get(body, "errors");

        if (json_array_size(errs) > 0) {
            vw_hs_describe(what, sizeof(what), json_array_get(errs, 0));
            vw_hs_set(call, vw_hs_retryable(json_array_get(errs, 0))
                            ? VW_CALL_RETRY : VW_CALL_DEAD,
                      status, "HTTP %ld%s", status, what);
            return;
        }

        rec = json_array_get(json_object_get(body, "results"), 0);
        created = json_is_true(json_object_get(rec, "new"));
    }

    if (vw_hs_id(json_object_get(rec, "id"), id, sizeof(id)) == NULL) {
        /* written, as the status says, but no id to report */
        vw_hs_set(call, VW_CALL_SUCCESS, status, "%s", "");
        return;
    }

    vw_hs_set(call, VW_CALL_SUCCESS, status, "%s", "");

    result = json_pack("{sssb}", "id", id, "new", created);
    if (result != NULL) {
        call->result = json_dumps(result, JSON_COMPACT);
        json_decref(result);
    }

    vw_hs_xref(ctx, id);
}


/*
 * "Batches fail by the record": the inputs an error names (by its
 * objectWriteTraceId, else by id) are refused; the others are written.
 * The refused records, as the job gave them, are the next body.
 */
static void
vw_hs_batch(vw_hs_ctx_t *ctx, long status, json_t *body)
{
    int             retry, unmapped;
    char            id[VW_HS_NAME_MAX], what[VW_ERRSTR_LEN];
    size_t          i, j, k, n, nfailed;
    json_t         *errs, *e, *ectx, *list, *t, *in, *results, *ids;
    json_t         *failed, *o;
    const char     *s, *mine;
    vw_call_t      *call = ctx->call;
    unsigned char  *bad;

    n = json_array_size(ctx->inputs);
    errs = json_object_get(body, "errors");
    results = json_object_get(body, "results");

    bad = calloc(n ? n : 1, 1);
    ids = json_array();
    failed = json_array();

    if (bad == NULL || ids == NULL || failed == NULL) {
        free(bad);
        json_decref(ids);
        json_decref(failed);
        vw_hs_set(call, VW_CALL_RETRY, status, "out of memory");
        return;
    }

    retry = 0;
    unmapped = 0;

    json_array_foreach(errs, i, e) {
        ectx = json_object_get(e, "context");
        k = 0;

        list = json_object_get(ectx, "objectWriteTraceId");
        json_array_foreach(list, j, t) {
            s = json_string_value(t);

            for (k = 0; s != NULL && k < n; k++) {
                mine = json_string_value(json_object_get(
                           json_array_get(ctx->inputs, k),
                           "objectWriteTraceId"));
                if (mine != NULL && strcmp(mine, s) == 0) {
                    bad[k] = 1;
                    retry |= vw_hs_retryable(e);
                }
            }
        }

        if (json_array_size(list) > 0) {
            continue;
        }

        list = json_object_get(ectx, "ids");
        json_array_foreach(list, j, t) {
            s = json_string_value(t);

            for (k = 0; s != NULL && k < n; k++) {
                in = json_array_get(ctx->inputs, k);
                if (vw_hs_id(json_object_get(in, "id"), id, sizeof(id))
                    && strcmp(id, s) == 0)
                {
                    bad[k] = 1;
                    retry |= vw_hs_retryable(e);
                }
            }
        }

        if (json_array_size(list) == 0) {
            unmapped = 1;
            retry |= vw_hs_retryable(e);
        }
    }

    if (unmapped) {
        /* an error that names no input: those without a result failed */
        for (k = 0; k < n; k++) {
            mine = json_string_value(json_object_get(
                       json_array_get(ctx->inputs, k), "objectWriteTraceId"));

            json_array_foreach(results, j, o) {
                s = json_string_value(json_object_get(o,
                                                      "objectWriteTraceId"));
                if (s != NULL && mine != NULL && strcmp(s, mine) == 0) {
                    break;
                }
            }

            if (j == json_array_size(results)) {
                bad[k] = 1;
            }
        }
    }

    json_array_foreach(results, j, o) {
        if (vw_hs_id(json_object_get(o, "id"), id, sizeof(id)) != NULL) {
            json_array_append_new(ids, json_string(id));
        }
    }

    nfailed = 0;

    for (k = 0; k < n; k++) {
        if (bad[k]) {
            json_array_append(failed, json_array_get(ctx->records, k));
            nfailed++;
        }
    }

    free(bad);

    if (nfailed == 0) {
        vw_hs_set(call, VW_CALL_SUCCESS, status, "%s", "");
        o = json_pack("{sOsi}", "ids", ids, "failed", 0);
        if (o != NULL) {
            call->result = json_dumps(o, JSON_COMPACT);
            json_decref(o);
        }

        json_decref(ids);
        json_decref(failed);
        return;
    }

    vw_hs_describe(what, sizeof(what), errs);
    vw_hs_set(call, retry ? VW_CALL_RETRY : VW_CALL_DEAD, status,
              "HTTP %ld %zu of %zu records refused:%s", status, nfailed, n,
              what);

    call->next_body = (unsigned char *) json_dumps(failed, JSON_COMPACT);
    call->next_body_len = call->next_body
                          ? strlen((char *) call->next_body) : 0;

    json_decref(ids);
    json_decref(failed);
}


/* a page of a read: kept in {vq}:out:<job id>, then the next one */
static void
vw_hs_page(vw_hs_ctx_t *ctx, json_t *body, const unsigned char *raw,
    size_t len)
{
    char                      *after, *p, *e;
    json_t                    *o;
    vw_call_t                 *call = ctx->call;
    struct redisAsyncContext  *ac;

    if (!json_is_object(body)) {
        vw_hs_set(call, VW_CALL_RETRY, call->status,
                  "HubSpot: a page that is not a JSON object");
        vw_hs_end(ctx);
        return;
    }

    ac = ctx->svc->redis(ctx->svc->redis_data);

    if (ac == NULL
        || redisAsyncCommand(ac, vw_hs_redis_done, ctx, "RPUSH %s %b",
                             ctx->out_key, raw, len) != REDIS_OK)
    {
        vw_hs_set(call, VW_CALL_RETRY, call->status,
                  "Redis is down: a page could not be kept");
        vw_hs_end(ctx);
        return;
    }

    ctx->pending++;
    ctx->pages++;
    ctx->total += json_array_size(json_object_get(body, "results"));

    after = NULL;
    o = json_object_get(json_object_get(json_object_get(body, "paging"),
                                        "next"), "after");
    if (json_is_string(o) && json_string_length(o) > 0) {
        after = (char *) json_string_value(o);
    }

    if (after == NULL) {
        vw_hs_set(call, VW_CALL_SUCCESS, call->status, "%s", "");
        o = json_pack("{sIsi}", "total", (json_int_t) ctx->total,
                      "pages", (int) ctx->pages);
        if (o != NULL) {
            call->result = json_dumps(o, JSON_COMPACT);
            json_decref(o);
        }

        vw_hs_end(ctx);
        return;
    }

    if (ctx->op == VW_HS_SEARCH) {
        json_object_set_new(ctx->search, "after", json_string(after));
        free(ctx->body);
        ctx->body = (unsigned char *) json_dumps(ctx->search, JSON_COMPACT);
        ctx->body_len = ctx->body ? strlen((char *) ctx->body) : 0;
        if (ctx->body == NULL) {
            goto nomem;
        }

    } else {
        e = vw_hs_escape(after);
        p = strchr(ctx->path, '?');
        if (e == NULL || p == NULL) {
            free(e);
            goto nomem;
        }

        *p = '\0';
        if (asprintf(&p, "%s%s&after=%s", ctx->path, ctx->list_query, e)
            < 0)
        {
            free(e);
            goto nomem;
        }

        free(e);
        free(ctx->path);
        ctx->path = p;
    }

    if (vw_hs_next(ctx) != VW_OK) {
        vw_hs_end(ctx);
    }

    return;

nomem:

    vw_hs_set(call, VW_CALL_RETRY, call->status, "out of memory");
    vw_hs_end(ctx);
}


/* docs/CONNECTORS.md, "ID cross-reference": both directions */
static void
vw_hs_xref(vw_hs_ctx_t *ctx, const char *vendor_id)
{
    size_t                     slen;
    vw_call_t                 *call = ctx->call;
    const char                *src, *colon, *tenant;
    struct redisAsyncContext  *ac;

    src = call->source;
    if (src == NULL) {
        return;
    }

    colon = strchr(src, ':');
    if (colon == NULL || colon == src || colon[1] == '\0') {
        return;
    }

    slen = colon - src;
    tenant = call->tenant ? call->tenant : "";

    ac = ctx->svc->redis(ctx->svc->redis_data);
    if (ac == NULL) {
        vw_log("warn", "hubspot: Redis is down, the id cross-reference "
               "is not written", "job", call->job_id, NULL);
        return;
    }

    if (redisAsyncCommand(ac, vw_hs_redis_done, ctx,
                          "HSET {vq}:xref:%s:%b:%s hubspot %s", tenant,
                          src, slen, colon + 1, vendor_id) == REDIS_OK)
    {
        ctx->pending++;
    }

    if (redisAsyncCommand(ac, vw_hs_redis_done, ctx,
                          "HSET {vq}:xref:%s:hubspot:%s %b %s", tenant,
                          vendor_id, src, slen, colon + 1) == REDIS_OK)
    {
        ctx->pending++;
    }
}


static void
vw_hs_redis_done(struct redisAsyncContext *ac, void *r, void *data)
{
    redisReply   *reply = r;
    vw_hs_ctx_t  *ctx = data;

    ctx->pending--;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ctx->redis_failed = 1;
    }

    if (ctx->detached) {
        if (ctx->pending == 0) {
            vw_hs_free(ctx);
        }

        return;
    }

    if (ctx->ending && ctx->pending == 0) {
        vw_hs_end(ctx);
    }
}


/* the attempt is over once Redis has answered what was sent for it */
static void
vw_hs_end(vw_hs_ctx_t *ctx)
{
    vw_call_t  *call = ctx->call;

    ctx->ending = 1;

    if (ctx->pending > 0) {
        return;
    }

    if (ctx->redis_failed && call->outcome == VW_CALL_SUCCESS
        && (ctx->op == VW_HS_SEARCH || ctx->op == VW_HS_LIST))
    {
        free(call->result);
        call->result = NULL;
        vw_hs_set(call, VW_CALL_RETRY, call->status,
                  "Redis: a page could not be kept");
    }

    call->ms = vw_http_monotonic_ms() - ctx->start;
    call->ctx = NULL;
    ctx->call = NULL;
    ctx->detached = 1;
    vw_hs_free(ctx);

    call->handler(call);
}


static void
vw_hs_free(vw_hs_ctx_t *ctx)
{
    vw_token_clear(&ctx->tr);
    explicit_bzero(ctx->stale, sizeof(ctx->stale));
    vw_hs_scrub_headers(ctx->headers);
    free(ctx->req.big);
    free(ctx->path);
    free(ctx->url);
    free(ctx->body);
    free(ctx->list_query);

    if (ctx->timer != NULL) {
        event_free(ctx->timer);
    }
    json_decref(ctx->records);
    json_decref(ctx->inputs);
    json_decref(ctx->search);
    free(ctx);
}


static void
vw_hs_set(vw_call_t *call, vw_call_outcome_e outcome, long status,
    const char *fmt, ...)
{
    va_list  ap;

    call->outcome = outcome;
    call->status = status;

    va_start(ap, fmt);
    vsnprintf(call->error, sizeof(call->error), fmt, ap);
    va_end(ap);
}


/*
 * " CATEGORY CODE,CODE [prop,prop]" from an error body, an errors[]
 * entry or an array of them, or "".  Only words that read as names go
 * in: HubSpot's messages may quote the values sent (an email, "Existing
 * ID: N"), so none is used.
 */
static void
vw_hs_describe(char *buf, size_t size, json_t *body)
{
    size_t          len;
    unsigned        i;
    vw_hs_words_t   cats, codes, names;

    cats.n = 0;
    codes.n = 0;
    names.n = 0;
    buf[0] = '\0';

    vw_hs_collect(body, &cats, &codes, &names, 0);

    len = 0;

    for (i = 0; i < cats.n && len < size; i++) {
        len += snprintf(buf + len, size - len, " %s", cats.w[i]);
    }

    for (i = 0; i < codes.n && len < size; i++) {
        len += snprintf(buf + len, size - len, "%s%s", i ? "," : " ",
                        codes.w[i]);
    }

    for (i = 0; i < names.n && len < size; i++) {
        len += snprintf(buf + len, size - len, "%s%s%s", i ? "," : " [",
                        names.w[i], i + 1 == names.n ? "]" : "");
    }
}


static int
vw_hs_word(const char *s)
{
    size_t  n;

    if (s == NULL) {
        return 0;
    }

    n = strlen(s);

    return n > 0 && n <= 64
           && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                        "0123456789_.-") == n;
}


static void
vw_hs_add(vw_hs_words_t *set, const char *s)
{
    unsigned  i;

    if (!vw_hs_word(s) || set->n == VW_HS_WORDS) {
        return;
    }

    for (i = 0; i < set->n; i++) {
        if (strcmp(set->w[i], s) == 0) {
            return;
        }
    }

    set->w[set->n++] = s;
}


static void
vw_hs_collect(json_t *e, vw_hs_words_t *cats, vw_hs_words_t *codes,
    vw_hs_words_t *names, unsigned depth)
{
    size_t   i;
    json_t  *v;

    if (depth > 3) {
        return;
    }

    if (json_is_array(e)) {
        json_array_foreach(e, i, v) {
            vw_hs_collect(v, cats, codes, names, depth + 1);
        }

        return;
    }

    if (!json_is_object(e)) {
        return;
    }

    vw_hs_add(cats, json_string_value(json_object_get(e, "category")));
    vw_hs_add(codes, json_string_value(json_object_get(e, "code")));

    json_array_foreach(json_object_get(json_object_get(e, "context"),
                                       "propertyName"), i, v)
    {
        vw_hs_add(names, json_string_value(v));
    }

    vw_hs_collect(json_object_get(e, "errors"), cats, codes, names,
                  depth + 1);
}


/* a refused input worth sending again: HubSpot's own trouble or limits */
static int
vw_hs_retryable(json_t *e)
{
    const char  *cat;

    cat = json_string_value(json_object_get(e, "category"));
    if (cat == NULL) {
        return 0;
    }

    return strcmp(cat, "RATE_LIMITS") == 0
           || strcmp(cat, "RATE_LIMIT") == 0
           || strcmp(cat, "INTERNAL_ERROR") == 0
           || strcmp(cat, "SERVICE_UNAVAILABLE") == 0
           || strcmp(cat, "TIMEOUT") == 0
           || strcmp(cat, "LOCKED") == 0;
}


/* the pause of that connection, made on first use; NULL: no memory */
static vw_hs_pace_t *
vw_hs_pace(const char *name)
{
    vw_hs_pace_t  *p;

    for (p = vw_hs_paces; p != NULL; p = p->next) {
        if (strcmp(p->name, name) == 0) {
            return p;
        }
    }

    p = calloc(1, sizeof(vw_hs_pace_t));
    if (p == NULL) {
        return NULL;
    }

    snprintf(p->name, sizeof(p->name), "%s", name);
    p->next = vw_hs_paces;
    vw_hs_paces = p;

    return p;
}


/* pauses the connection until then, here and for the other workers */
static void
vw_hs_pause(vw_hs_ctx_t *ctx, uint64_t now, uint64_t until,
    const char *policy)
{
    char                       ms[24];
    vw_hs_pace_t              *p;
    struct redisAsyncContext  *ac;

    p = vw_hs_pace(ctx->conn);
    if (p == NULL || until <= p->until || until <= now) {
        return;
    }

    p->until = until;
    p->policy = policy;
    vw_hs_stats.pauses++;

    snprintf(ms, sizeof(ms), "%llu", (unsigned long long) (until - now));
    vw_log("info", "hubspot rate limit: pausing the connection",
           "connection", ctx->conn, "policy", policy, "ms", ms, NULL);

    ac = ctx->svc->redis(ctx->svc->redis_data);
    if (ac != NULL) {
        redisAsyncCommand(ac, NULL, NULL, "SET {vq}:pace:%s %llu PX %llu",
                          ctx->conn, (unsigned long long) until,
                          (unsigned long long) (until - now));
    }
}


/* an id as a string, from a JSON string or integer; NULL: none */
static const char *
vw_hs_id(json_t *v, char *buf, size_t size)
{
    if (json_is_string(v) && json_string_length(v) > 0
        && json_string_length(v) < size)
    {
        memcpy(buf, json_string_value(v), json_string_length(v) + 1);
        return buf;
    }

    if (json_is_integer(v)) {
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    }

    return NULL;
}


/* percent-encodes all but RFC 3986's unreserved characters; malloc()ed */
static char *
vw_hs_escape(const char *s)
{
    char                 *out, *p;
    const unsigned char  *c;
    static const char     hex[] = "0123456789ABCDEF";

    out = malloc(3 * strlen(s) + 1);
    if (out == NULL) {
        return NULL;
    }

    p = out;

    for (c = (const unsigned char *) s; *c; c++) {
        if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z')
            || (*c >= '0' && *c <= '9') || strchr("-._~", *c) != NULL)
        {
            *p++ = *c;

        } else {
            *p++ = '%';
            *p++ = hex[*c >> 4];
            *p++ = hex[*c & 0xf];
        }
    }

    *p = '\0';

    return out;
}


/* the Authorization line holds the token: cleared before it is freed */
static void
vw_hs_scrub_headers(struct curl_slist *h)
{
    struct curl_slist  *l;

    for (l = h; l != NULL; l = l->next) {
        explicit_bzero(l->data, strlen(l->data));
    }

    curl_slist_free_all(h);
}


static uint64_t
vw_hs_wall_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);

    return (uint64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
