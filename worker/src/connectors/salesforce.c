/* salesforce.c -- the Salesforce connector: REST writes, Collections, SOQL */

/*
 * docs/CONNECTORS.md is the design.  One attempt is: a token from the
 * token manager (oauth.c), the call to <instance_url>/services/data/
 * v<api_version>/..., and, when the vendor answers 401 INVALID_SESSION_ID,
 * one more token newer than the refused one and the same call once more;
 * a query follows nextRecordsUrl page by page, each page pushed to
 * {vq}:out:<job id>.  Every answer's Sforce-Limit-Info is kept per
 * connection, in memory and in {vq}:limits:<connection>, and admit()
 * holds new attempts back while the daily allowance is nearly spent.
 *
 * An attempt's state is a vw_sf_ctx_t the connector owns.  cancel()
 * stops the HTTP request and the token request at once; Redis replies
 * cannot be stopped, so a context with replies still out is detached and
 * freed by the last of them.
 *
 * Nothing here logs or keeps a token; error texts hold the vendor's
 * error codes and field names, never a value of the record.
 */

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/time.h>

#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <jansson.h>

#include "vc_backoff.h"
#include "vw_connector.h"
#include "vw_metrics.h"
#include "vw_oauth.h"
#include "vw_salesforce.h"
#include "vw_sf_common.h"


/* the client id of Sforce-Call-Options (docs/CONNECTORS.md, loops) */
#define VW_SF_CLIENT_ID  "vantage"


#define VW_SF_VENDOR          "salesforce"
#define VW_SF_COLLECTION_MAX  200

/* whole answers: a SaveResult per record, or a page of up to 2000 rows */
#define VW_SF_BODY_MAX        (4 * 1024 * 1024)
#define VW_SF_PAGE_MAX        (64 * 1024 * 1024)

/* a connection's reading is asked of Redis at most this often */
#define VW_SF_REFRESH_MS      1000


typedef enum {
    VW_SF_CREATE = 0,
    VW_SF_UPDATE,
    VW_SF_UPSERT,
    VW_SF_PUBLISH,
    VW_SF_COL_CREATE,
    VW_SF_COL_UPDATE,
    VW_SF_COL_UPSERT,
    VW_SF_QUERY,
    VW_SF_READ
} vw_sf_op_e;


static const char *const  vw_sf_operations[] = {
    "create",
    "update",
    "upsert",
    "publish",
    "collections_create",
    "collections_update",
    "collections_upsert",
    "query",
    "read",
    NULL
};


/* the latest Sforce-Limit-Info reading of one connection */
typedef struct vw_sf_limit_s  vw_sf_limit_t;

struct vw_sf_limit_s {
    char                       *name;
    uint64_t                    used;
    uint64_t                    max;
    uint64_t                    at_ms;      /* 0: no reading yet */
    uint64_t                    asked_ms;   /* the last HGETALL sent */
    uint64_t                    probe_ms;   /* the attempt let through on
                                               an old reading */
    uint64_t                    warned_ms;  /* the last log line */
    char                        why[96];    /* admit()'s *why */
    vw_sf_limit_t              *next;
};


typedef struct {
    vw_call_t                  *call;       /* NULL once detached */
    const vw_services_t        *svc;
    vw_sf_op_e                  op;
    const char                 *method;
    char                       *path;       /* /services/data/vNN.N/... */
    char                       *url;
    unsigned char              *body;       /* the request's */
    size_t                      body_len;
    json_t                     *records;    /* collections: as the job
                                               gave them */
    char                       *record_id;  /* update: the Id */
    struct curl_slist          *headers;
    uint64_t                    timeout_ms;   /* each request's */
    vw_token_req_t              tr;
    char                       *stale;      /* the token refused */
    vw_http_req_t               req;
    uint64_t                    start;
    uint64_t                    total;      /* query */
    unsigned                    pages;
    uint64_t                    used;       /* this answer's reading */
    uint64_t                    max;
    unsigned                    have_limit:1;
    unsigned                    token_pending:1;
    unsigned                    http_pending:1;
    unsigned                    replayed:1;
    unsigned                    settling:1;
    unsigned                    redis_failed:1;
    unsigned                    redis_pending;
} vw_sf_ctx_t;


static int vw_sf_admit(vw_call_t *call, uint64_t now, uint64_t *retry_at,
    const char **why);
static int vw_sf_start(vw_call_t *call);
static void vw_sf_cancel(vw_call_t *call);
static int vw_sf_token(vw_sf_ctx_t *ctx);
static void vw_sf_token_done(vw_token_req_t *tr);
static int vw_sf_send(vw_sf_ctx_t *ctx);
static void vw_sf_header(vw_http_req_t *req, const char *name, size_t nlen,
    const char *value, size_t vlen);
static void vw_sf_http_done(vw_http_req_t *req);
static void vw_sf_redis_done(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_sf_finish(vw_sf_ctx_t *ctx);
static void vw_sf_free(vw_sf_ctx_t *ctx);


const vw_connector_t  vw_connector_salesforce = {
    "salesforce",
    vw_sf_admit,
    vw_sf_start,
    vw_sf_cancel,
    vw_sf_operations
};


static vw_sf_limit_t  *vw_sf_limits;
static uint64_t        vw_sf_deferred;


uint64_t
vw_salesforce_deferrals(void)
{
    return vw_sf_deferred;
}


static uint64_t
vw_sf_now(void)
{
    struct timeval  tv;

    gettimeofday(&tv, NULL);

    return (uint64_t) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}


static uint64_t
vw_sf_random(void)
{
    uint64_t  r;

    if (getrandom(&r, sizeof(r), 0) != (ssize_t) sizeof(r)) {
        r = (uint64_t) random() << 32 ^ (uint64_t) random();
    }

    return r;
}


static redisAsyncContext *
vw_sf_redis(const vw_services_t *svc)
{
    if (svc == NULL || svc->redis == NULL) {
        return NULL;
    }

    return svc->redis(svc->redis_data);
}


/* -- the daily allowance ------------------------------------------------- */

/* the connection's reading, created empty; NULL when out of memory */
static vw_sf_limit_t *
vw_sf_limit(const char *name)
{
    vw_sf_limit_t  *l;

    for (l = vw_sf_limits; l != NULL; l = l->next) {
        if (strcmp(l->name, name) == 0) {
            return l;
        }
    }

    l = calloc(1, sizeof(vw_sf_limit_t));
    if (l == NULL) {
        return NULL;
    }

    l->name = strdup(name);
    if (l->name == NULL) {
        free(l);
        return NULL;
    }

    l->next = vw_sf_limits;
    vw_sf_limits = l;

    return l;
}



static void
vw_sf_limit_read(redisAsyncContext *ac, void *reply, void *privdata)
{
    size_t          i;
    uint64_t        v[3];
    unsigned        seen;
    redisReply     *r = reply;
    vw_sf_limit_t  *l = privdata;     /* never freed */

    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        return;
    }

    seen = 0;
    v[0] = v[1] = v[2] = 0;

    for (i = 0; i + 1 < r->elements; i += 2) {
        if (r->element[i]->type != REDIS_REPLY_STRING
            || r->element[i + 1]->type != REDIS_REPLY_STRING)
        {
            continue;
        }

        if (strcmp(r->element[i]->str, "used") == 0) {
            v[0] = strtoull(r->element[i + 1]->str, NULL, 10);
            seen |= 1;

        } else if (strcmp(r->element[i]->str, "max") == 0) {
            v[1] = strtoull(r->element[i + 1]->str, NULL, 10);
            seen |= 2;

        } else if (strcmp(r->element[i]->str, "at_ms") == 0) {
            v[2] = strtoull(r->element[i + 1]->str, NULL, 10);
            seen |= 4;
        }
    }

    /* another worker's reading counts when it is the newer one */
    if (seen == 7 && v[2] > l->at_ms) {
        l->used = v[0];
        l->max = v[1];
        l->at_ms = v[2];
    }
}


/* an answer's reading: in memory, and in Redis for the other workers */
static void
vw_sf_limit_note(vw_sf_ctx_t *ctx, const char *name)
{
    uint64_t            now;
    vw_sf_limit_t      *l;
    redisAsyncContext  *ac;

    if (!ctx->have_limit) {
        return;
    }

    if (ctx->call != NULL && ctx->call->target != NULL) {
        vw_metrics_quota(ctx->call->target, "daily", ctx->used, ctx->max);
    }

    now = vw_sf_now();

    l = vw_sf_limit(name);
    if (l != NULL && now >= l->at_ms) {
        l->used = ctx->used;
        l->max = ctx->max;
        l->at_ms = now;
    }

    ac = vw_sf_redis(ctx->svc);
    if (ac != NULL) {
        (void) redisAsyncCommand(ac, NULL, NULL,
                                 "HSET {vq}:limits:%s used %" PRIu64
                                 " max %" PRIu64 " at_ms %" PRIu64,
                                 name, ctx->used, ctx->max, now);
    }
}


/*
 * The latest reading, refreshed from Redis at most once a second, says
 * whether the connection may take another call: at or above limit_share
 * percent of the allowance, a reading younger than limit_recheck holds
 * the attempt back until it is that old; an older one lets one attempt
 * through (a probe), whose answer refreshes it.
 */
static int
vw_sf_admit(vw_call_t *call, uint64_t now, uint64_t *retry_at,
    const char **why)
{
    char                used[24], max[24];
    uint64_t            recheck, wait;
    vw_sf_limit_t      *l;
    redisAsyncContext  *ac;
    const vw_conf_connection_t  *conn = call->conn;

    if (conn == NULL || conn->name == NULL) {
        return VW_OK;
    }

    l = vw_sf_limit(conn->name);
    if (l == NULL) {
        return VW_OK;
    }

    if (now >= l->asked_ms + VW_SF_REFRESH_MS || now < l->asked_ms) {
        ac = vw_sf_redis(call->svc);

        if (ac != NULL
            && redisAsyncCommand(ac, vw_sf_limit_read, l,
                                 "HGETALL {vq}:limits:%s", conn->name)
               == REDIS_OK)
        {
            l->asked_ms = now;
        }
    }

    if (l->at_ms == 0 || l->max == 0 || conn->limit_share == 0
        || l->used * 100 < (uint64_t) conn->limit_share * l->max)
    {
        return VW_OK;
    }

    recheck = conn->limit_recheck_ms;

    if (now >= l->at_ms + recheck) {
        /* an old reading: one attempt goes and brings a new one */
        if (l->probe_ms == 0 || now >= l->probe_ms + recheck
            || l->probe_ms < l->at_ms)
        {
            l->probe_ms = now;
            return VW_OK;
        }

        wait = recheck < 1000 ? recheck : 1000;
        *retry_at = now + (wait ? wait : 1);

    } else {
        *retry_at = l->at_ms + recheck;
    }

    snprintf(l->why, sizeof(l->why),
             "daily API allowance nearly spent (%" PRIu64 "/%" PRIu64 ")",
             l->used, l->max);
    *why = l->why;

    vw_sf_deferred++;

    if (l->warned_ms == 0 || now >= l->warned_ms + recheck
        || now < l->warned_ms)
    {
        l->warned_ms = now;
        snprintf(used, sizeof(used), "%" PRIu64, l->used);
        snprintf(max, sizeof(max), "%" PRIu64, l->max);
        vw_log("warn", "daily API allowance nearly spent: deferring",
               "connection", conn->name, "used", used, "max", max, NULL);
    }

    return VW_DECLINED;
}


/* -- building the request ------------------------------------------------ */

static char *
vw_sf_escape(const char *s, size_t len)
{
    char  *e, *out;

    e = curl_easy_escape(NULL, s, (int) len);
    if (e == NULL) {
        return NULL;
    }

    out = strdup(e);
    curl_free(e);

    return out;
}


/* an external id or Id as text: a string, or an integer */
static char *
vw_sf_value_text(json_t *v)
{
    char  buf[32];

    if (json_is_string(v) && json_string_length(v) > 0) {
        return vw_sf_escape(json_string_value(v), json_string_length(v));
    }

    if (json_is_integer(v)) {
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT,
                 json_integer_value(v));
        return strdup(buf);
    }

    return NULL;
}


static int
vw_sf_dead(vw_call_t *call, const char *error)
{
    call->outcome = VW_CALL_DEAD;
    call->target_failure = 0;
    call->status = 0;
    snprintf(call->error, sizeof(call->error), "%s", error);

    return VW_ERROR;
}


static int
vw_sf_name_ok(const char *s)
{
    if (s == NULL || *s == '\0') {
        return 0;
    }

    for ( /* void */ ; *s; s++) {
        if (!isalnum((unsigned char) *s) && *s != '_' && *s != '.') {
            return 0;
        }
    }

    return 1;
}


/*
 * The operation's method, path and body from the job's body, into ctx.
 * VW_ERROR with call's outcome set (dead) for a job that cannot be built.
 */
static int
vw_sf_build(vw_sf_ctx_t *ctx)
{
    int           rc;
    char         *v, base[64];
    size_t        i, n, size;
    json_t       *doc, *rec, *copy, *out, *list, *attrs, *idv;
    vw_call_t    *call = ctx->call;
    const char   *obj;
    json_error_t  jerr;

    for (i = 0; vw_sf_operations[i] != NULL; i++) {
        if (call->operation != NULL
            && strcmp(call->operation, vw_sf_operations[i]) == 0)
        {
            break;
        }
    }

    if (vw_sf_operations[i] == NULL) {
        return vw_sf_dead(call, "unknown operation");
    }

    ctx->op = (vw_sf_op_e) i;

    if (call->conn == NULL || call->conn->api_version == NULL
        || !vw_sf_name_ok(call->conn->api_version))
    {
        return vw_sf_dead(call, "the connection has no valid api_version");
    }

    if (ctx->op != VW_SF_QUERY && !vw_sf_name_ok(call->object)) {
        return vw_sf_dead(call, "the job type has no valid object");
    }

    if ((ctx->op == VW_SF_UPSERT || ctx->op == VW_SF_COL_UPSERT)
        && !vw_sf_name_ok(call->id_field))
    {
        return vw_sf_dead(call, "the job type has no valid external_id");
    }

    snprintf(base, sizeof(base), "/services/data/v%s",
             call->conn->api_version);

    if (ctx->op == VW_SF_READ && call->body_len == 0) {
        /* the id comes from X-Vantage-Source */
        doc = json_object();

    } else {
        doc = json_loadb((const char *) (call->body ? call->body
                                         : (const unsigned char *) ""),
                         call->body_len, 0, &jerr);
    }

    if (doc == NULL) {
        return vw_sf_dead(call, "the body is not JSON");
    }

    rc = VW_ERROR;
    out = NULL;
    obj = call->object ? call->object : "";

    switch (ctx->op) {

    case VW_SF_CREATE:
    case VW_SF_PUBLISH:
        if (!json_is_object(doc)) {
            vw_sf_dead(call, "the body is not a JSON object");
            break;
        }

        ctx->method = "POST";
        size = strlen(base) + strlen(obj) + 16;
        ctx->path = malloc(size);
        if (ctx->path == NULL) {
            vw_sf_dead(call, "out of memory");
            break;
        }

        snprintf(ctx->path, size, "%s/sobjects/%s/", base, obj);
        out = json_incref(doc);
        rc = VW_OK;
        break;

    case VW_SF_UPDATE:
    case VW_SF_UPSERT:
        if (!json_is_object(doc)) {
            vw_sf_dead(call, "the body is not a JSON object");
            break;
        }

        out = json_deep_copy(doc);
        if (out == NULL) {
            vw_sf_dead(call, "out of memory");
            break;
        }

        v = vw_sf_value_text(json_object_get(out, ctx->op == VW_SF_UPDATE
                                                  ? "Id" : call->id_field));
        if (v == NULL) {
            vw_sf_dead(call, ctx->op == VW_SF_UPDATE
                             ? "the record has no Id"
                             : "the record has no external id value");
            break;
        }

        if (ctx->op == VW_SF_UPDATE) {
            idv = json_object_get(out, "Id");
            ctx->record_id = strdup(json_is_string(idv)
                                    ? json_string_value(idv) : v);
            json_object_del(out, "Id");

        } else {
            json_object_del(out, call->id_field);
        }

        ctx->method = "PATCH";
        size = strlen(base) + strlen(obj) + strlen(v)
               + (call->id_field ? strlen(call->id_field) : 0) + 16;
        ctx->path = malloc(size);
        if (ctx->path == NULL) {
            free(v);
            vw_sf_dead(call, "out of memory");
            break;
        }

        if (ctx->op == VW_SF_UPDATE) {
            snprintf(ctx->path, size, "%s/sobjects/%s/%s", base, obj, v);
        } else {
            snprintf(ctx->path, size, "%s/sobjects/%s/%s/%s", base, obj,
                     call->id_field, v);
        }

        free(v);
        rc = VW_OK;
        break;

    case VW_SF_COL_CREATE:
    case VW_SF_COL_UPDATE:
    case VW_SF_COL_UPSERT:
        if (!json_is_array(doc)) {
            vw_sf_dead(call, "the body is not a JSON array of records");
            break;
        }

        n = json_array_size(doc);

        if (n == 0) {
            vw_sf_dead(call, "no records");
            break;
        }

        if (n > VW_SF_COLLECTION_MAX) {
            vw_sf_dead(call, "more than 200 records");
            break;
        }

        list = json_array();
        out = json_pack("{s:b,s:o}", "allOrNone", 0, "records", list);
        if (list == NULL || out == NULL) {
            vw_sf_dead(call, "out of memory");
            break;
        }

        json_array_foreach(doc, i, rec) {
            if (!json_is_object(rec)) {
                break;
            }

            copy = json_deep_copy(rec);
            attrs = json_pack("{s:s}", "type", obj);
            if (copy == NULL || attrs == NULL) {
                json_decref(copy);
                json_decref(attrs);
                break;
            }

            json_object_set_new(copy, "attributes", attrs);
            json_array_append_new(list, copy);
        }

        if (i != n) {
            vw_sf_dead(call, "a record is not a JSON object");
            break;
        }

        ctx->records = json_incref(doc);
        ctx->method = ctx->op == VW_SF_COL_CREATE ? "POST" : "PATCH";
        size = strlen(base) + strlen(obj)
               + (call->id_field ? strlen(call->id_field) : 0) + 32;
        ctx->path = malloc(size);
        if (ctx->path == NULL) {
            vw_sf_dead(call, "out of memory");
            break;
        }

        if (ctx->op == VW_SF_COL_UPSERT) {
            snprintf(ctx->path, size, "%s/composite/sobjects/%s/%s", base,
                     obj, call->id_field);
        } else {
            snprintf(ctx->path, size, "%s/composite/sobjects", base);
        }

        rc = VW_OK;
        break;

    case VW_SF_READ:
        if (!json_is_object(doc)) {
            vw_sf_dead(call, "the body is not a JSON object");
            break;
        }

        idv = json_object_get(doc, "Id");

        if (idv != NULL) {
            v = vw_sf_value_text(idv);

        } else if (call->source != NULL
                   && strncmp(call->source, VW_SF_VENDOR ":",
                              sizeof(VW_SF_VENDOR)) == 0
                   && call->source[sizeof(VW_SF_VENDOR)] != '\0')
        {
            v = vw_sf_escape(call->source + sizeof(VW_SF_VENDOR),
                             strlen(call->source + sizeof(VW_SF_VENDOR)));

        } else {
            v = NULL;
        }

        if (v == NULL) {
            vw_sf_dead(call, "no Id in the body nor a salesforce: "
                       "X-Vantage-Source");
            break;
        }

        ctx->record_id = strdup(json_is_string(idv) ? json_string_value(idv)
                                : idv != NULL ? v
                                : call->source + sizeof(VW_SF_VENDOR));

        ctx->method = "GET";
        size = strlen(base) + strlen(obj) + strlen(v) + 16;
        ctx->path = malloc(size);
        if (ctx->path == NULL || ctx->record_id == NULL) {
            free(v);
            vw_sf_dead(call, "out of memory");
            break;
        }

        snprintf(ctx->path, size, "%s/sobjects/%s/%s", base, obj, v);
        free(v);
        rc = VW_OK;
        break;

    case VW_SF_QUERY:
        rec = json_object_get(doc, "soql");
        if (!json_is_string(rec) || json_string_length(rec) == 0) {
            vw_sf_dead(call, "the body has no \"soql\" string");
            break;
        }

        v = vw_sf_escape(json_string_value(rec), json_string_length(rec));
        if (v == NULL) {
            vw_sf_dead(call, "out of memory");
            break;
        }

        ctx->method = "GET";
        size = strlen(base) + strlen(v) + 16;
        ctx->path = malloc(size);
        if (ctx->path == NULL) {
            free(v);
            vw_sf_dead(call, "out of memory");
            break;
        }

        snprintf(ctx->path, size, "%s/query?q=%s", base, v);
        free(v);
        rc = VW_OK;
        break;
    }

    if (rc == VW_OK && out != NULL) {
        ctx->body = (unsigned char *) json_dumps(out, JSON_COMPACT);
        if (ctx->body == NULL) {
            rc = vw_sf_dead(call, "out of memory");
        } else {
            ctx->body_len = strlen((char *) ctx->body);
        }
    }

    json_decref(out);
    json_decref(doc);

    return rc;
}


/* -- the attempt --------------------------------------------------------- */

static int
vw_sf_start(vw_call_t *call)
{
    vw_sf_ctx_t  *ctx;

    call->outcome = VW_CALL_RETRY;
    call->target_failure = 0;
    call->status = 0;
    call->error[0] = '\0';
    call->resp_len = 0;
    call->retry_after_ms = 0;
    call->result = NULL;
    call->next_body = NULL;
    call->next_body_len = 0;
    call->output = NULL;
    call->ctx = NULL;

    ctx = calloc(1, sizeof(vw_sf_ctx_t));
    if (ctx == NULL) {
        snprintf(call->error, sizeof(call->error), "out of memory");
        return VW_ERROR;
    }

    ctx->call = call;
    ctx->svc = call->svc;
    ctx->start = vw_http_monotonic_ms();

    if (vw_sf_build(ctx) != VW_OK) {
        vw_sf_free(ctx);
        return VW_ERROR;
    }

    /* curl's 0 is no timeout at all */
    ctx->timeout_ms = call->timeout_ms ? call->timeout_ms : 10000;

    if (vw_sf_token(ctx) != VW_OK) {
        vw_sf_free(ctx);
        return VW_ERROR;
    }

    call->ctx = ctx;

    return VW_OK;
}


/* the token's failure as the attempt's outcome */
static void
vw_sf_token_failed(vw_sf_ctx_t *ctx)
{
    vw_call_t  *call = ctx->call;

    call->outcome = ctx->tr.rc == VW_ERROR ? VW_CALL_DEAD : VW_CALL_RETRY;
    call->target_failure = ctx->tr.rc != VW_ERROR
                           && (ctx->tr.status == 0 || ctx->tr.status >= 500);
    call->status = ctx->tr.status;
    snprintf(call->error, sizeof(call->error), "token: %.119s",
             ctx->tr.error[0] ? ctx->tr.error : "no token");
}


/* VW_OK: vw_sf_token_done() runs; VW_ERROR: the outcome is set */
static int
vw_sf_token(vw_sf_ctx_t *ctx)
{
    vw_call_t  *call = ctx->call;

    ctx->tr.conn = call->conn;
    ctx->tr.stale = ctx->stale;
    ctx->tr.timeout_ms = ctx->timeout_ms;
    ctx->tr.ca_file = call->ca_file;
    ctx->tr.proxy = call->proxy;
    ctx->tr.connect_timeout_ms = call->connect_timeout_ms;
    ctx->tr.handler = vw_sf_token_done;
    ctx->tr.data = ctx;
    ctx->tr.error[0] = '\0';
    ctx->tr.status = 0;
    ctx->tr.rc = VW_AGAIN;

    if (ctx->svc->oauth == NULL) {
        snprintf(ctx->tr.error, sizeof(ctx->tr.error),
                 "no token manager");
        vw_sf_token_failed(ctx);
        return VW_ERROR;
    }

    if (vw_oauth_get(ctx->svc->oauth, &ctx->tr) != VW_OK) {
        vw_sf_token_failed(ctx);
        return VW_ERROR;
    }

    ctx->token_pending = 1;

    return VW_OK;
}


static void
vw_sf_token_done(vw_token_req_t *tr)
{
    vw_sf_ctx_t  *ctx = tr->data;

    ctx->token_pending = 0;

    if (tr->rc != VW_OK) {
        vw_sf_token_failed(ctx);
        vw_sf_finish(ctx);
        return;
    }

    if (vw_sf_send(ctx) != VW_OK) {
        vw_sf_finish(ctx);
    }
}


/* sends ctx->path on the token's instance; VW_ERROR: the outcome is set */
static int
vw_sf_send(vw_sf_ctx_t *ctx)
{
    int           rc;
    char         *line;
    size_t        size;
    vw_call_t    *call = ctx->call;
    const char   *base;

    base = ctx->tr.instance_url;

    if (strncmp(base, "https://", 8) != 0) {
        call->outcome = VW_CALL_DEAD;
        snprintf(call->error, sizeof(call->error),
                 "the token's instance_url is not https://");
        return VW_ERROR;
    }

    free(ctx->url);
    size = strlen(base) + strlen(ctx->path) + 1;
    ctx->url = malloc(size);
    if (ctx->url == NULL) {
        goto nomem;
    }

    /* instance_url has no trailing '/', but a My Domain may be given so */
    snprintf(ctx->url, size, "%.*s%s",
             (int) (strlen(base) - (base[strlen(base) - 1] == '/')), base,
             ctx->path);

    vw_sf_headers_free(ctx->headers);
    ctx->headers = NULL;

    size = strlen(ctx->tr.token) + 32;
    line = malloc(size);
    if (line == NULL) {
        goto nomem;
    }

    snprintf(line, size, "Authorization: Bearer %s", ctx->tr.token);
    rc = vw_sf_append(&ctx->headers, line);
    explicit_bzero(line, size);
    free(line);

    rc |= vw_sf_append(&ctx->headers, "Accept: application/json");

    if (ctx->body != NULL) {
        rc |= vw_sf_append(&ctx->headers,
                           "Content-Type: application/json");
    }

    /* no 100-continue round trip for larger bodies */
    rc |= vw_sf_append(&ctx->headers, "Expect:");

    /*
     * Names Vantage as the client: the change events its writes cause
     * carry it in ChangeEventHeader.changeOrigin, and the subscriptions
     * skip them, so a change Vantage made does not come back as a new one
     */
    rc |= vw_sf_append(&ctx->headers,
                       "Sforce-Call-Options: client=" VW_SF_CLIENT_ID);

    if (call->correlation_id != NULL && call->correlation_id[0]
        && strpbrk(call->correlation_id, "\r\n") == NULL)
    {
        size = strlen(call->correlation_id) + 32;
        line = malloc(size);
        if (line == NULL) {
            goto nomem;
        }

        snprintf(line, size, "X-Correlation-ID: %s", call->correlation_id);
        rc |= vw_sf_append(&ctx->headers, line);
        free(line);
    }

    if (rc != VW_OK) {
        goto nomem;
    }

    free(ctx->req.big);
    memset(&ctx->req, 0, sizeof(vw_http_req_t));

    ctx->req.method = ctx->method;
    ctx->req.url = ctx->url;
    ctx->req.headers = ctx->headers;
    ctx->req.body = ctx->op == VW_SF_QUERY ? NULL : ctx->body;
    ctx->req.body_len = ctx->op == VW_SF_QUERY ? 0 : ctx->body_len;
    ctx->req.timeout_ms = ctx->timeout_ms;
    ctx->req.connect_timeout_ms = call->connect_timeout_ms;
    ctx->req.ca_file = call->ca_file;
    ctx->req.proxy = call->proxy;
    ctx->req.body_max = ctx->op == VW_SF_QUERY ? VW_SF_PAGE_MAX
                                               : VW_SF_BODY_MAX;
    ctx->req.https_only = 1;
    ctx->req.on_header = vw_sf_header;
    ctx->req.handler = vw_sf_http_done;
    ctx->req.data = ctx;

    ctx->have_limit = 0;

    if (vw_http_request(call->svc->http, &ctx->req) != VW_OK) {
        call->outcome = VW_CALL_RETRY;
        call->target_failure = 1;
        snprintf(call->error, sizeof(call->error), "%s", ctx->req.error);
        return VW_ERROR;
    }

    ctx->http_pending = 1;

    return VW_OK;

nomem:

    call->outcome = VW_CALL_RETRY;
    snprintf(call->error, sizeof(call->error), "out of memory");
    return VW_ERROR;
}


static void
vw_sf_header(vw_http_req_t *req, const char *name, size_t nlen,
    const char *value, size_t vlen)
{
    vw_sf_ctx_t  *ctx = req->data;

    if (name == NULL) {
        ctx->have_limit = 0;
        return;
    }

    if (nlen == sizeof("Sforce-Limit-Info") - 1
        && strncasecmp(name, "Sforce-Limit-Info", nlen) == 0
        && vw_sf_parse_usage(value, vlen, &ctx->used, &ctx->max) == VW_OK)
    {
        ctx->have_limit = 1;
    }
}


/* -- reading the answer -------------------------------------------------- */

/* the deciding answer's first bytes, for the attempt's history */
static void
vw_sf_keep(vw_sf_ctx_t *ctx)
{
    size_t      n;
    vw_call_t  *call = ctx->call;

    n = ctx->req.big_len < sizeof(call->resp) ? ctx->req.big_len
                                              : sizeof(call->resp);
    if (ctx->req.big != NULL && n > 0) {
        memcpy(call->resp, ctx->req.big, n);
    }

    call->resp_len = ctx->req.big != NULL ? n : 0;
}


static void
vw_sf_set_result(vw_call_t *call, json_t *o)
{
    free(call->result);
    call->result = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
}


/* a counted Redis command whose reply the attempt waits for */
static int
vw_sf_redis_cmd(vw_sf_ctx_t *ctx, const char *fmt, ...)
{
    int                 rc;
    va_list             ap;
    redisAsyncContext  *ac;

    ac = vw_sf_redis(ctx->svc);
    if (ac == NULL) {
        return VW_ERROR;
    }

    va_start(ap, fmt);
    rc = redisvAsyncCommand(ac, vw_sf_redis_done, ctx, fmt, ap);
    va_end(ap);

    if (rc != REDIS_OK) {
        return VW_ERROR;
    }

    ctx->redis_pending++;

    return VW_OK;
}


/* the two ID cross-reference entries of docs/CONNECTORS.md */
static void
vw_sf_xref(vw_sf_ctx_t *ctx, const char *id)
{
    size_t       slen;
    vw_call_t   *call = ctx->call;
    const char  *colon, *tenant;

    if (call->source == NULL || id == NULL || *id == '\0') {
        return;
    }

    colon = strchr(call->source, ':');
    if (colon == NULL || colon == call->source || colon[1] == '\0') {
        return;
    }

    slen = colon - call->source;
    tenant = call->tenant ? call->tenant : "";

    if (vw_sf_redis_cmd(ctx, "HSET {vq}:xref:%s:%s %s %s", tenant,
                        call->source, VW_SF_VENDOR, id) != VW_OK
        || vw_sf_redis_cmd(ctx, "HSET {vq}:xref:%s:%s:%s %b %s", tenant,
                           VW_SF_VENDOR, id, call->source, slen,
                           colon + 1) != VW_OK)
    {
        vw_log("warn", "cannot record the ID cross-reference", "job",
               call->job_id, NULL);
    }
}


/* a read's 200: the record, without attributes, is the output */
static void
vw_sf_read_done(vw_sf_ctx_t *ctx)
{
    json_t       *doc;
    json_error_t  jerr;
    vw_call_t    *call = ctx->call;

    doc = NULL;

    if (ctx->req.big != NULL) {
        doc = json_loadb((const char *) ctx->req.big, ctx->req.big_len, 0,
                         &jerr);
    }

    if (!json_is_object(doc)) {
        json_decref(doc);
        call->outcome = VW_CALL_RETRY;
        snprintf(call->error, sizeof(call->error),
                 "HTTP %ld: a record that is not a JSON object",
                 ctx->req.status);
        return;
    }

    json_object_del(doc, "attributes");

    call->output = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);

    if (call->output == NULL) {
        call->outcome = VW_CALL_RETRY;
        snprintf(call->error, sizeof(call->error), "out of memory");
        return;
    }

    call->outcome = VW_CALL_SUCCESS;
    vw_sf_set_result(call, json_pack("{s:s}", "id", ctx->record_id));
}


/* a single record's 2xx: {"id","created"} */
static void
vw_sf_record_done(vw_sf_ctx_t *ctx)
{
    int           created;
    json_t       *doc, *o;
    const char   *id;
    json_error_t  jerr;
    vw_call_t    *call = ctx->call;

    doc = NULL;
    id = NULL;

    if (ctx->req.big_len > 0) {
        doc = json_loadb((const char *) ctx->req.big, ctx->req.big_len, 0,
                         &jerr);
        id = json_string_value(json_object_get(doc, "id"));
    }

    switch (ctx->op) {

    case VW_SF_UPDATE:
        id = ctx->record_id;
        created = 0;
        break;

    case VW_SF_UPSERT:
        created = ctx->req.status == 201;
        break;

    default:
        created = 1;
        break;
    }

    o = json_object();
    if (o != NULL) {
        if (id != NULL) {
            json_object_set_new(o, "id", json_string(id));
        }

        json_object_set_new(o, "created", json_boolean(created));
    }

    vw_sf_set_result(call, o);

    call->outcome = VW_CALL_SUCCESS;

    if (ctx->op != VW_SF_PUBLISH) {
        vw_sf_xref(ctx, id);
    }

    json_decref(doc);
}


/*
 * A collection's 200: one SaveResult per record, in order.  The records
 * refused become the next attempt's body; the attempt retries when one
 * of them may pass later (a lock), else it is dead with their codes.
 */
static void
vw_sf_collection_done(vw_sf_ctx_t *ctx)
{
    char          errs[VW_ERRSTR_LEN];
    size_t        i, j, n, failed;
    json_t       *doc, *r, *ids, *left, *e, *o;
    unsigned      flags;
    json_error_t  jerr;
    vw_call_t    *call = ctx->call;

    n = json_array_size(ctx->records);

    doc = json_loadb((const char *) (ctx->req.big ? ctx->req.big
                                                  : (unsigned char *) ""),
                     ctx->req.big_len, 0, &jerr);

    if (!json_is_array(doc) || json_array_size(doc) != n) {
        /* which records were written is unknown: none is sent again */
        call->outcome = VW_CALL_DEAD;
        snprintf(call->error, sizeof(call->error),
                 "HTTP %ld: %zu SaveResults for %zu records",
                 ctx->req.status, json_array_size(doc), n);
        json_decref(doc);
        return;
    }

    ids = json_array();
    left = json_array();
    failed = 0;
    flags = 0;
    errs[0] = '\0';

    json_array_foreach(doc, i, r) {
        if (json_is_true(json_object_get(r, "success"))) {
            json_array_append(ids, json_object_get(r, "id"));
            continue;
        }

        json_array_append_new(ids, json_null());
        json_array_append(left, json_array_get(ctx->records, i));
        failed++;

        json_array_foreach(json_object_get(r, "errors"), j, e) {
            vw_sf_error_item(e, errs, sizeof(errs), &flags);
        }
    }

    o = json_pack("{s:o,s:I}", "ids", ids, "failed", (json_int_t) failed);

    if (failed == 0) {
        call->outcome = VW_CALL_SUCCESS;
        vw_sf_set_result(call, o);
        json_decref(left);
        json_decref(doc);
        return;
    }

    json_decref(o);

    call->outcome = (flags & (VW_SF_LOCK | VW_SF_LIMIT)) ? VW_CALL_RETRY
                                                         : VW_CALL_DEAD;
    snprintf(call->error, sizeof(call->error), "%u of %u records "
             "refused: %.80s", (unsigned) failed, (unsigned) n,
             errs[0] ? errs : "no error code");

    call->next_body = (unsigned char *) json_dumps(left, JSON_COMPACT);
    call->next_body_len = call->next_body
                          ? strlen((char *) call->next_body) : 0;

    json_decref(left);
    json_decref(doc);
}


/* a query page: pushed to {vq}:out:<job>, then the next one, if any */
static int
vw_sf_page_done(vw_sf_ctx_t *ctx)
{
    size_t        size;
    json_t       *doc;
    const char   *next;
    json_error_t  jerr;
    vw_call_t    *call = ctx->call;

    doc = NULL;

    if (ctx->req.big != NULL) {
        doc = json_loadb((const char *) ctx->req.big, ctx->req.big_len, 0,
                         &jerr);
    }

    if (!json_is_object(doc)) {
        json_decref(doc);
        call->outcome = VW_CALL_RETRY;
        snprintf(call->error, sizeof(call->error),
                 "HTTP %ld: a query page that is not a JSON object",
                 ctx->req.status);
        return VW_DONE;
    }

    if (ctx->pages == 0) {
        ctx->total = json_integer_value(json_object_get(doc, "totalSize"));

        /* a retried query starts its pages again */
        if (vw_sf_redis_cmd(ctx, "DEL {vq}:out:%s", call->job_id) != VW_OK) {
            ctx->redis_failed = 1;
        }
    }

    ctx->pages++;

    if (vw_sf_redis_cmd(ctx, "RPUSH {vq}:out:%s %b", call->job_id,
                        ctx->req.big, ctx->req.big_len) != VW_OK)
    {
        ctx->redis_failed = 1;
    }

    if (ctx->redis_failed) {
        json_decref(doc);
        call->outcome = VW_CALL_RETRY;
        snprintf(call->error, sizeof(call->error),
                 "cannot store the query's pages: Redis is unavailable");
        return VW_DONE;
    }

    next = json_string_value(json_object_get(doc, "nextRecordsUrl"));

    if (next == NULL || json_is_true(json_object_get(doc, "done"))) {
        json_decref(doc);
        call->outcome = VW_CALL_SUCCESS;
        vw_sf_set_result(call, json_pack("{s:I,s:i}", "total",
                                         (json_int_t) ctx->total,
                                         "pages", (int) ctx->pages));
        return VW_DONE;
    }

    if (strncmp(next, "/services/data/", 15) != 0
        || strpbrk(next, " \r\n") != NULL)
    {
        json_decref(doc);
        call->outcome = VW_CALL_DEAD;
        snprintf(call->error, sizeof(call->error),
                 "a nextRecordsUrl outside /services/data/");
        return VW_DONE;
    }

    free(ctx->path);
    size = strlen(next) + 1;
    ctx->path = malloc(size);
    if (ctx->path != NULL) {
        memcpy(ctx->path, next, size);
    }

    json_decref(doc);

    if (ctx->path == NULL) {
        call->outcome = VW_CALL_RETRY;
        snprintf(call->error, sizeof(call->error), "out of memory");
        return VW_DONE;
    }

    return vw_sf_send(ctx) == VW_OK ? VW_AGAIN : VW_DONE;
}


static void
vw_sf_http_done(vw_http_req_t *req)
{
    char          errs[VW_ERRSTR_LEN];
    size_t        size;
    unsigned      flags;
    vw_sf_ctx_t  *ctx = req->data;
    vw_call_t    *call = ctx->call;

    ctx->http_pending = 0;

    if (call->conn != NULL && call->conn->name != NULL) {
        vw_sf_limit_note(ctx, call->conn->name);
    }

    call->status = req->status;
    call->retry_after_ms = 0;
    call->target_failure = 0;

    if (req->failed) {
        call->outcome = VW_CALL_RETRY;
        call->target_failure = 1;
        call->resp_len = 0;

        if (req->timed_out && !req->connected
            && call->connect_timeout_ms
            && call->connect_timeout_ms < ctx->timeout_ms)
        {
            snprintf(call->error, sizeof(call->error), "no connection "
                     "within %" PRIu64 " ms (connect_timeout)",
                     call->connect_timeout_ms);

        } else if (req->timed_out) {
            snprintf(call->error, sizeof(call->error),
                     "timeout after %" PRIu64 " ms", ctx->timeout_ms);

        } else {
            snprintf(call->error, sizeof(call->error), "%s", req->error);
        }

        vw_sf_finish(ctx);
        return;
    }

    vw_sf_keep(ctx);

    if (req->status >= 200 && req->status < 300) {
        call->error[0] = '\0';

        switch (ctx->op) {

        case VW_SF_COL_CREATE:
        case VW_SF_COL_UPDATE:
        case VW_SF_COL_UPSERT:
            vw_sf_collection_done(ctx);
            break;

        case VW_SF_QUERY:
            if (vw_sf_page_done(ctx) == VW_AGAIN) {
                return;
            }

            break;

        case VW_SF_READ:
            vw_sf_read_done(ctx);
            break;

        default:
            vw_sf_record_done(ctx);
            break;
        }

        vw_sf_finish(ctx);
        return;
    }

    flags = 0;
    errs[0] = '\0';
    vw_sf_errors(req->big, req->big_len, errs, sizeof(errs), &flags);

    if (req->status == 401 && !ctx->replayed) {
        /* a token newer than the refused one, and the same call again */
        ctx->replayed = 1;

        size = strlen(ctx->tr.token) + 1;
        if (ctx->stale == NULL) {
            ctx->stale = malloc(VW_OAUTH_TOKEN_MAX);
        }

        if (ctx->stale != NULL && size <= VW_OAUTH_TOKEN_MAX) {
            memcpy(ctx->stale, ctx->tr.token, size);
            vw_token_clear(&ctx->tr);

            if (vw_sf_token(ctx) == VW_OK) {
                return;
            }

            vw_sf_finish(ctx);
            return;
        }
    }

    if (req->retry_after >= 0) {
        call->retry_after_ms = vc_backoff_retry_after(
                                   (uint64_t) req->retry_after,
                                   vw_sf_random());
        call->retry_after_ms += call->retry_after_ms == 0;
    }

    if (req->status == 300) {
        call->outcome = VW_CALL_DEAD;
        snprintf(call->error, sizeof(call->error),
                 "HTTP 300 the external id matches several records");

    } else if (req->status == 401 || req->status == 408
               || req->status == 425 || req->status == 429
               || req->status >= 500)
    {
        call->outcome = VW_CALL_RETRY;
        call->target_failure = req->status != 401;

    } else if (flags & (VW_SF_LOCK | VW_SF_LIMIT)) {
        call->outcome = VW_CALL_RETRY;

    } else {
        call->outcome = VW_CALL_DEAD;
    }

    if (req->status != 300) {
        snprintf(call->error, sizeof(call->error), "HTTP %ld%s%.110s",
                 req->status, errs[0] ? " " : "", errs);
    }

    vw_sf_finish(ctx);
}


/* -- the end ------------------------------------------------------------- */

static void
vw_sf_redis_done(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply   *r = reply;
    vw_sf_ctx_t  *ctx = privdata;

    ctx->redis_pending--;

    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        ctx->redis_failed = 1;
    }

    if (ctx->redis_pending > 0) {
        return;
    }

    if (ctx->call == NULL) {
        /* cancelled, or its handler ran: this reply was the last one out */
        vw_sf_free(ctx);
        return;
    }

    if (ctx->settling) {
        vw_sf_finish(ctx);
    }
}


/*
 * Ends the attempt with the outcome set in call: once the Redis replies
 * it waits for are back, the handler runs, and the context goes.
 */
static void
vw_sf_finish(vw_sf_ctx_t *ctx)
{
    vw_call_t  *call = ctx->call;

    if (ctx->redis_pending > 0) {
        ctx->settling = 1;
        return;
    }

    ctx->settling = 0;

    if (ctx->redis_failed && ctx->op == VW_SF_QUERY
        && call->outcome == VW_CALL_SUCCESS)
    {
        call->outcome = VW_CALL_RETRY;
        snprintf(call->error, sizeof(call->error),
                 "cannot store the query's pages in Redis");
        free(call->result);
        call->result = NULL;

    } else if (ctx->redis_failed && call->outcome == VW_CALL_SUCCESS) {
        vw_log("warn", "cannot record the ID cross-reference", "job",
               call->job_id, NULL);
    }

    if (call->outcome != VW_CALL_SUCCESS) {
        free(call->result);
        call->result = NULL;
        free(call->output);
        call->output = NULL;
    }

    call->ms = vw_http_monotonic_ms() - ctx->start;
    call->ctx = NULL;

    ctx->call = NULL;
    vw_sf_free(ctx);

    call->handler(call);
}


static void
vw_sf_cancel(vw_call_t *call)
{
    vw_sf_ctx_t  *ctx = call->ctx;

    if (ctx == NULL) {
        return;
    }

    call->ctx = NULL;
    ctx->call = NULL;

    if (ctx->http_pending) {
        vw_http_cancel(&ctx->req);
        ctx->http_pending = 0;
    }

    if (ctx->token_pending) {
        vw_oauth_cancel(&ctx->tr);
        ctx->token_pending = 0;
    }

    vw_sf_free(ctx);
}


/* frees ctx, or leaves it to the last Redis reply still out */
static void
vw_sf_free(vw_sf_ctx_t *ctx)
{
    if (ctx->token_pending || ctx->http_pending) {
        return;
    }

    /* the token and what was built from it go at once */
    vw_token_clear(&ctx->tr);
    vw_sf_headers_free(ctx->headers);
    ctx->headers = NULL;

    if (ctx->stale != NULL) {
        explicit_bzero(ctx->stale, VW_OAUTH_TOKEN_MAX);
        free(ctx->stale);
        ctx->stale = NULL;
    }

    free(ctx->req.big);
    ctx->req.big = NULL;

    if (ctx->redis_pending > 0) {
        return;
    }

    free(ctx->path);
    free(ctx->url);
    free(ctx->body);
    free(ctx->record_id);
    json_decref(ctx->records);
    free(ctx);
}
