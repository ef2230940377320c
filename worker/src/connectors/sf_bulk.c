/* sf_bulk.c -- Salesforce Bulk API 2.0: streamed ingest loads and queries */

/*
 * docs/CONNECTORS.md ("Bulk API 2.0") is the design.  An ingest attempt:
 *
 *   HMGET {vq}:job:<id> bulk_job bulk_done   (a job seen before resumes)
 *   the CSV header: the inline records' fields, or a {"from"} list's
 *       first page's (a later record with another field is dead-lettered)
 *   POST   jobs/ingest                      -> 750...
 *   HSET   {vq}:job:<id> bulk_job 750...    (before any record is sent)
 *   PUT    jobs/ingest/<750>/batches        chunked, a page at a time
 *   PATCH  jobs/ingest/<750> UploadComplete
 *   GET    jobs/ingest/<750>                every 0.5 s doubling to 10 s
 *   GET    successfulResults/ (counted), failedResults/,
 *          unprocessedrecords/ (each row a dead job, 100 to a MULTI)
 *   HSET   {vq}:job:<id> bulk_done {...}
 *
 * A load past 100 MB of CSV (or the body's part_bytes) goes to several
 * ingest jobs, one after another, each through the same steps; the hash
 * keeps where the part in flight starts (bulk_from), where the next one
 * does (bulk_next, once the part is sent) and the counts so far
 * (bulk_sum).
 *
 * A query: POST jobs/query, the same HSET and polling, then the results
 * a page (maxRecords) at a time, Sforce-Locator to Sforce-Locator, each
 * page's CSV pushed to {vq}:out:<job id>.
 *
 * Applied once: the ingest job's id is in the job's hash before a record
 * leaves, so an attempt after a crash or a retry never uploads the load
 * a second time: an Open job (the upload cut short: Salesforce processes
 * nothing before UploadComplete) is aborted and its part sent to a new
 * one; an UploadComplete or InProgress one is polled; a finished one has
 * its results read, and the parts after it follow.  Dead jobs' ids are
 * derived from the ingest job and the row's place in its results, so
 * results read twice write the same dead jobs, and bulk_done, written
 * once they all are, makes a later attempt skip them.
 *
 * Nothing holds a whole load: one page of records and one CSV row are in
 * memory at a time, results are parsed row by row as they arrive; only a
 * query page (maxRecords rows) is kept whole, as it is pushed whole.
 *
 * The context is the connector's: cancel() stops the HTTP request, the
 * token request and the timer at once; Redis replies cannot be stopped,
 * so a context with replies out is detached and freed by the last one.
 */

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <jansson.h>
#include <openssl/sha.h>

#include "vc_backoff.h"
#include "vc_map.h"
#include "vw_connector.h"
#include "vw_metrics.h"
#include "vw_oauth.h"
#include "vw_sf_common.h"


#define VW_BK_POLL_FIRST_MS    500
#define VW_BK_POLL_MAX_MS      10000

/* dead jobs written per MULTI/EXEC, and the transactions out at most
   before the results (or the upload) wait for Redis */
#define VW_BK_DLQ_BATCH        100
#define VW_BK_DLQ_INFLIGHT     4

/* Salesforce takes 150 MB per upload (VENDOR-APIS.md B1.7): a larger
   load goes to several ingest jobs, each upload ending at the first
   record past this many bytes (or the body's part_bytes) */
#define VW_BK_UPLOAD_MAX       (100 * 1024 * 1024)

/* a query page's rows, unless the body says max_records */
#define VW_BK_QUERY_PAGE       10000
#define VW_BK_QUERY_PAGE_MAX   (256 * 1024 * 1024)

/* JSON answers (job info, errors) */
#define VW_BK_JSON_MAX         (1024 * 1024)

/* the upload and the results may take longer than one request's timeout */
#define VW_BK_STREAM_TIMEOUT   (30 * 60 * 1000)

#define VW_BK_ROW_MAX          (32 * 1024 * 1024)


typedef enum {
    VW_BK_INSERT = 0,
    VW_BK_UPDATE,
    VW_BK_UPSERT,
    VW_BK_DELETE,
    VW_BK_QUERY
} vw_bk_op_e;


static const char *const  vw_bk_operations[] = {
    "bulk_insert",
    "bulk_update",
    "bulk_upsert",
    "bulk_delete",
    "bulk_query",
    NULL
};

static const char *const  vw_bk_sf_ops[] = {
    "insert", "update", "upsert", "delete", "query"
};


/* what the answer to the request in flight is for */
typedef enum {
    VW_BK_GET_INFO = 0,         /* resuming: the job's state */
    VW_BK_ABORT,                /* resuming an Open job: abort it */
    VW_BK_CREATE,
    VW_BK_UPLOAD,
    VW_BK_CLOSE,
    VW_BK_POLL,
    VW_BK_SUCCESSES,
    VW_BK_FAILURES,
    VW_BK_UNPROCESSED,
    VW_BK_PAGE                  /* a query's results page */
} vw_bk_step_e;


/* the page source of an upload */
typedef enum {
    VW_BK_NEXT_NONE = 0,
    VW_BK_NEXT_PENDING,
    VW_BK_NEXT_READY,
    VW_BK_NEXT_END,
    VW_BK_NEXT_ERROR
} vw_bk_next_e;


/* a dead job waiting for its MULTI */
typedef struct {
    char                        id[33];
    char                       *body;
    char                       *error;
    unsigned                    unmapped:1;   /* the mapping refused it:
                                                 the record as it was */
} vw_bk_dead_t;


typedef struct {
    vw_call_t                  *call;       /* NULL once detached */
    const vw_services_t        *svc;
    vw_bk_op_e                  op;
    vw_bk_step_e                step;
    char                        base[64];   /* /services/data/vNN.N */
    char                       *job_id;     /* copies: the context may */
    char                       *type;       /* outlive the call */
    char                       *tenant;
    char                       *conn_name;

    /* settings */
    char                       *ca_file;
    char                       *proxy;
    uint64_t                    timeout_ms;
    uint64_t                    connect_timeout_ms;

    /* token and request */
    vw_token_req_t              tr;
    char                       *stale;
    unsigned                    have_token:1;
    unsigned                    token_pending:1;
    unsigned                    http_pending:1;
    unsigned                    replayed:1;
    unsigned                    settling:1;
    unsigned                    redis_failed:1;
    unsigned                    resumed:1;
    unsigned                    have_limit:1;
    unsigned                    bad_status:1;
    unsigned                    upload_waiting:1;
    unsigned                    upload_failed:1;
    unsigned                    too_large:1;
    unsigned                    saw_status:1;
    unsigned                    redis_pending;
    unsigned                    stale_reads;  /* page replies to drop */
    unsigned                    dead_pending; /* dead jobs' EXECs out */
    unsigned                    recv_paused:1;
    unsigned                    waited:1;     /* logged once */
    struct event               *resume;   /* a paused transfer goes on */
    const char                 *method;
    char                       *path;
    char                       *url;
    char                       *body;       /* a JSON request body */
    const char                 *ctype;
    struct curl_slist          *headers;
    vw_http_req_t               req;
    unsigned char               err[2048];  /* a streamed answer's start
                                               when it is not 2xx */
    size_t                      err_len;
    uint64_t                    used;
    uint64_t                    max;
    uint64_t                    start;

    /* the load */
    json_t                     *records;    /* inline, or NULL */
    char                       *from;       /* the Redis list, or NULL */
    char                      **header;
    size_t                      nheader;
    json_t                     *page;       /* the records being sent */
    size_t                      page_no;    /* of page, in the list */
    size_t                      page_at;    /* the next record of page */
    json_t                     *next;       /* the page after, read ahead */
    vw_bk_next_e                next_state;
    size_t                      next_no;
    char                       *row;        /* CSV being sent */
    size_t                      row_len;
    size_t                      row_size;
    size_t                      row_at;
    uint64_t                    sent_bytes;
    uint64_t                    sent_rows;
    uint64_t                    rejected;   /* dead-lettered at upload */
    char                        load_error[VW_ERRSTR_LEN];

    /* parts: a load larger than part_max goes to several ingest jobs */
    uint64_t                    part_max;
    size_t                      from_page;  /* where this part starts */
    size_t                      from_at;
    size_t                      skip;       /* of from_page's records */
    size_t                      to_page;    /* where the next one starts */
    size_t                      to_at;
    unsigned                    more:1;     /* there is a next part */
    unsigned                    part_end:1;
    char                        summed[40]; /* the last part counted */
    unsigned                    parts;      /* parts counted */
    char                        s_state[24];
    uint64_t                    s_processed;
    uint64_t                    s_succeeded;
    uint64_t                    s_failed;
    uint64_t                    s_unprocessed;
    uint64_t                    s_rejected;

    /* the job at Salesforce */
    char                        bulk_id[40];
    char                        state[24];
    char                        sf_error[64];   /* errorMessage's code */
    uint64_t                    processed;
    uint64_t                    failed;
    uint64_t                    succeeded;
    uint64_t                    unprocessed;
    uint64_t                    poll_ms;
    struct event               *timer;

    /* a CSV answer, row by row */
    unsigned                    csv_quoted:1;
    unsigned                    csv_quote:1;
    unsigned                    csv_any:1;
    char                       *field;
    size_t                      field_len;
    size_t                      field_size;
    char                      **fields;
    size_t                     *lens;
    size_t                      nfields;
    size_t                      fields_size;
    char                      **names;      /* the answer's header row */
    size_t                      nnames;
    uint64_t                    rows;       /* rows after the header */

    /* dead jobs */
    vw_bk_dead_t                dead[VW_BK_DLQ_BATCH];
    size_t                      ndead;
    uint64_t                    dead_total;

    /* query */
    char                       *locator;
    unsigned                    max_records;
    unsigned                    pages;
    uint64_t                    total;
} vw_bk_ctx_t;


static int vw_bk_admit(vw_call_t *call, uint64_t now, uint64_t *retry_at,
    const char **why);
static int vw_bk_start(vw_call_t *call);
static void vw_bk_cancel(vw_call_t *call);
static void vw_bk_resume_read(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_bk_fresh(vw_bk_ctx_t *ctx);
static void vw_bk_create(vw_bk_ctx_t *ctx);
static void vw_bk_load_reset(vw_bk_ctx_t *ctx);
static void vw_bk_saved(redisAsyncContext *ac, void *reply, void *privdata);
static int vw_bk_send(vw_bk_ctx_t *ctx, vw_bk_step_e step,
    const char *method, const char *path, char *body, const char *ctype);
static void vw_bk_token_done(vw_token_req_t *tr);
static int vw_bk_request(vw_bk_ctx_t *ctx);
static void vw_bk_created(vw_bk_ctx_t *ctx, const unsigned char *body,
    size_t len);
static void vw_bk_uploaded(vw_bk_ctx_t *ctx);
static void vw_bk_next_saved(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_bk_http_done(vw_http_req_t *req);
static void vw_bk_poll_later(vw_bk_ctx_t *ctx);
static void vw_bk_poll(evutil_socket_t fd, short kind, void *arg);
static void vw_bk_info(vw_bk_ctx_t *ctx);
static void vw_bk_terminal(vw_bk_ctx_t *ctx);
static void vw_bk_results_done(vw_bk_ctx_t *ctx);
static void vw_bk_page_done(vw_bk_ctx_t *ctx);
static int vw_bk_body(vw_http_req_t *req, const unsigned char *p, size_t n);
static size_t vw_bk_upload(vw_http_req_t *req, unsigned char *buf,
    size_t size);
static void vw_bk_page_read(vw_bk_ctx_t *ctx, size_t no);
static void vw_bk_page_reply(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_bk_dead_add(vw_bk_ctx_t *ctx, const char *kind,
    uint64_t ordinal, json_t *record, const char *error);
static void vw_bk_dead_flush(vw_bk_ctx_t *ctx);
static void vw_bk_redis_done(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_bk_dead_done(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_bk_backlog(vw_bk_ctx_t *ctx);
static void vw_bk_waits(vw_bk_ctx_t *ctx);
static void vw_bk_set(vw_bk_ctx_t *ctx, vw_call_outcome_e outcome,
    const char *fmt, ...);
static void vw_bk_finish(vw_bk_ctx_t *ctx);
static void vw_bk_free(vw_bk_ctx_t *ctx);


const vw_connector_t  vw_connector_salesforce_bulk = {
    "salesforce",
    vw_bk_admit,
    vw_bk_start,
    vw_bk_cancel,
    vw_bk_operations
};


static redisAsyncContext *
vw_bk_redis(const vw_bk_ctx_t *ctx)
{
    if (ctx->svc == NULL || ctx->svc->redis == NULL) {
        return NULL;
    }

    return ctx->svc->redis(ctx->svc->redis_data);
}


/* a counted Redis command whose reply the attempt waits for */
static int
vw_bk_redis_cmd(vw_bk_ctx_t *ctx, redisCallbackFn *fn, const char *fmt, ...)
{
    int                 rc;
    va_list             ap;
    redisAsyncContext  *ac;

    ac = vw_bk_redis(ctx);
    if (ac == NULL) {
        ctx->redis_failed = 1;
        return VW_ERROR;
    }

    va_start(ap, fmt);
    rc = redisvAsyncCommand(ac, fn ? fn : vw_bk_redis_done, ctx, fmt, ap);
    va_end(ap);

    if (rc != REDIS_OK) {
        ctx->redis_failed = 1;
        return VW_ERROR;
    }

    ctx->redis_pending++;

    return VW_OK;
}


/*
 * The Salesforce connector's daily-allowance deferral: the Bulk API's
 * calls count against the same allowance.
 */
static int
vw_bk_admit(vw_call_t *call, uint64_t now, uint64_t *retry_at,
    const char **why)
{
    return vw_connector_salesforce.admit(call, now, retry_at, why);
}


/* -- starting ------------------------------------------------------------ */

static int
vw_bk_name_ok(const char *s)
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


static int
vw_bk_dead_now(vw_call_t *call, const char *error)
{
    call->outcome = VW_CALL_DEAD;
    call->target_failure = 0;
    call->status = 0;
    snprintf(call->error, sizeof(call->error), "bulk: %s", error);

    return VW_ERROR;
}


/* the header entry of name, or -1 */
static long
vw_bk_column(vw_bk_ctx_t *ctx, const char *name)
{
    size_t  i;

    for (i = 0; i < ctx->nheader; i++) {
        if (strcmp(ctx->header[i], name) == 0) {
            return (long) i;
        }
    }

    return -1;
}


static int
vw_bk_column_add(vw_bk_ctx_t *ctx, const char *name)
{
    char  **h;

    if (vw_bk_column(ctx, name) >= 0) {
        return VW_OK;
    }

    h = realloc(ctx->header, (ctx->nheader + 1) * sizeof(char *));
    if (h == NULL) {
        return VW_ERROR;
    }

    ctx->header = h;
    ctx->header[ctx->nheader] = strdup(name);

    if (ctx->header[ctx->nheader] == NULL) {
        return VW_ERROR;
    }

    ctx->nheader++;

    return VW_OK;
}


/*
 * The key field first (Id for update and delete, the external id for
 * upsert); a delete sends nothing else.
 */
static int
vw_bk_header_start(vw_bk_ctx_t *ctx)
{
    const char  *key;

    key = ctx->op == VW_BK_UPSERT ? ctx->call->id_field
          : (ctx->op == VW_BK_UPDATE || ctx->op == VW_BK_DELETE) ? "Id"
          : NULL;

    return key ? vw_bk_column_add(ctx, key) : VW_OK;
}


static int
vw_bk_header_record(vw_bk_ctx_t *ctx, json_t *rec)
{
    const char  *k;
    json_t      *v;

    if (ctx->op == VW_BK_DELETE || !json_is_object(rec)) {
        return VW_OK;
    }

    json_object_foreach(rec, k, v) {
        if (vw_bk_name_ok(k) && vw_bk_column_add(ctx, k) != VW_OK) {
            return VW_ERROR;
        }
    }

    return VW_OK;
}


/*
 * The request settings: the call's, and where the engine left them
 * unset, the job type's timeout and its connection's target's ca_file,
 * proxy and connect_timeout, copied (a reload may free them).
 */
static int
vw_bk_settings(vw_bk_ctx_t *ctx)
{
    vw_call_t                   *call = ctx->call;
    const vw_conf_t             *conf;
    const vw_conf_job_t         *jc;
    const vw_conf_target_t      *tc;
    const vw_conf_connection_t  *cc;

    ctx->timeout_ms = call->timeout_ms;
    ctx->connect_timeout_ms = call->connect_timeout_ms;
    tc = NULL;

    conf = ctx->svc->conf != NULL ? ctx->svc->conf() : NULL;

    if (conf != NULL) {
        jc = call->type ? vw_conf_job(conf, call->type, strlen(call->type))
                        : NULL;

        if (ctx->timeout_ms == 0 && jc != NULL) {
            ctx->timeout_ms = jc->timeout_ms;
        }

        cc = call->conn ? vw_conf_connection(conf, call->conn->name) : NULL;
        tc = cc ? cc->target : NULL;
    }

    if (ctx->timeout_ms == 0) {
        ctx->timeout_ms = 30000;
    }

    if (ctx->connect_timeout_ms == 0 && tc != NULL) {
        ctx->connect_timeout_ms = tc->connect_timeout_ms;
    }

    if (call->ca_file != NULL || (tc != NULL && tc->ca_file != NULL)) {
        ctx->ca_file = strdup(call->ca_file ? call->ca_file : tc->ca_file);
        if (ctx->ca_file == NULL) {
            return VW_ERROR;
        }
    }

    if (call->proxy != NULL || (tc != NULL && tc->proxy != NULL)) {
        ctx->proxy = strdup(call->proxy ? call->proxy : tc->proxy);
        if (ctx->proxy == NULL) {
            return VW_ERROR;
        }
    }

    return VW_OK;
}


/* the operation, the body's load or query; VW_ERROR: dead, said why */
static int
vw_bk_build(vw_bk_ctx_t *ctx)
{
    size_t        i;
    json_t       *doc, *v, *rec;
    vw_call_t    *call = ctx->call;
    json_error_t  jerr;

    for (i = 0; vw_bk_operations[i] != NULL; i++) {
        if (call->operation != NULL
            && strcmp(call->operation, vw_bk_operations[i]) == 0)
        {
            break;
        }
    }

    if (vw_bk_operations[i] == NULL) {
        return vw_bk_dead_now(call, "unknown operation");
    }

    ctx->op = (vw_bk_op_e) i;

    if (call->conn == NULL || !vw_bk_name_ok(call->conn->api_version)) {
        return vw_bk_dead_now(call, "the connection has no valid "
                              "api_version");
    }

    if (ctx->op != VW_BK_QUERY && !vw_bk_name_ok(call->object)) {
        return vw_bk_dead_now(call, "the job type has no valid object");
    }

    if (ctx->op == VW_BK_UPSERT && !vw_bk_name_ok(call->id_field)) {
        return vw_bk_dead_now(call, "the job type has no valid "
                              "external_id");
    }

    snprintf(ctx->base, sizeof(ctx->base), "/services/data/v%s",
             call->conn->api_version);

    doc = json_loadb((const char *) (call->body ? call->body
                                                : (unsigned char *) ""),
                     call->body_len, 0, &jerr);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return vw_bk_dead_now(call, "the body is not a JSON object");
    }

    if (ctx->op == VW_BK_QUERY) {
        v = json_object_get(doc, "soql");

        if (!json_is_string(v) || json_string_length(v) == 0) {
            json_decref(doc);
            return vw_bk_dead_now(call, "the body has no \"soql\" string");
        }

        ctx->body = NULL;
        ctx->records = json_incref(v);     /* the SOQL, kept */
        ctx->max_records = VW_BK_QUERY_PAGE;

        v = json_object_get(doc, "max_records");
        if (json_is_integer(v) && json_integer_value(v) > 0
            && json_integer_value(v) <= 1000000)
        {
            ctx->max_records = (unsigned) json_integer_value(v);
        }

        json_decref(doc);
        return VW_OK;
    }

    /* smaller parts than Salesforce's limit, when the body asks */
    ctx->part_max = VW_BK_UPLOAD_MAX;
    v = json_object_get(doc, "part_bytes");

    if (json_is_integer(v) && json_integer_value(v) >= 1024
        && json_integer_value(v) < VW_BK_UPLOAD_MAX)
    {
        ctx->part_max = (uint64_t) json_integer_value(v);
    }

    v = json_object_get(doc, "from");

    if (json_is_string(v) && json_string_length(v) > 0) {
        ctx->from = strdup(json_string_value(v));
        json_decref(doc);
        return ctx->from ? VW_OK : vw_bk_dead_now(call, "out of memory");
    }

    v = json_object_get(doc, "records");

    if (!json_is_array(v)) {
        json_decref(doc);
        return vw_bk_dead_now(call, "the body has neither \"records\" nor "
                              "\"from\"");
    }

    ctx->records = json_incref(v);
    json_decref(doc);

    if (vw_bk_header_start(ctx) != VW_OK) {
        return vw_bk_dead_now(call, "out of memory");
    }

    json_array_foreach(ctx->records, i, rec) {
        if (vw_bk_header_record(ctx, rec) != VW_OK) {
            return vw_bk_dead_now(call, "out of memory");
        }
    }

    return VW_OK;
}


static int
vw_bk_start(vw_call_t *call)
{
    vw_bk_ctx_t  *ctx;

    call->outcome = VW_CALL_RETRY;
    call->target_failure = 0;
    call->status = 0;
    call->error[0] = '\0';
    call->resp_len = 0;
    call->retry_after_ms = 0;
    call->result = NULL;
    call->next_body = NULL;
    call->next_body_len = 0;
    call->ctx = NULL;

    ctx = calloc(1, sizeof(vw_bk_ctx_t));
    if (ctx == NULL) {
        snprintf(call->error, sizeof(call->error), "out of memory");
        return VW_ERROR;
    }

    ctx->call = call;
    ctx->svc = call->svc;
    ctx->start = vw_http_monotonic_ms();
    ctx->job_id = strdup(call->job_id);
    ctx->type = strdup(call->type ? call->type : "");
    ctx->tenant = strdup(call->tenant ? call->tenant : "");
    ctx->conn_name = strdup(call->conn && call->conn->name
                            ? call->conn->name : "");

    if (ctx->job_id == NULL || ctx->type == NULL || ctx->tenant == NULL
        || ctx->conn_name == NULL)
    {
        vw_bk_free(ctx);
        snprintf(call->error, sizeof(call->error), "out of memory");
        return VW_ERROR;
    }

    if (vw_bk_build(ctx) != VW_OK) {
        vw_bk_free(ctx);
        return VW_ERROR;
    }

    if (vw_bk_settings(ctx) != VW_OK) {
        vw_bk_free(ctx);
        snprintf(call->error, sizeof(call->error), "out of memory");
        return VW_ERROR;
    }

    /* a job seen before: its ingest or query job, and whether it is done */
    if (vw_bk_redis_cmd(ctx, vw_bk_resume_read,
                        "HMGET {vq}:job:%s bulk_job bulk_done bulk_from "
                        "bulk_next bulk_sum bulk_rejected",
                        ctx->job_id) != VW_OK)
    {
        vw_bk_free(ctx);
        call->outcome = VW_CALL_RETRY;
        snprintf(call->error, sizeof(call->error),
                 "bulk: Redis is unavailable");
        return VW_ERROR;
    }

    call->ctx = ctx;

    return VW_OK;
}


static int
vw_bk_bulk_id_ok(const char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len >= 40) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!isalnum((unsigned char) s[i])) {
            return 0;
        }
    }

    return 1;
}


/* the result, as {"bulk_job","processed",...} or {"total","pages"} */
static char *
vw_bk_result_text(vw_bk_ctx_t *ctx)
{
    json_t  *o;
    char    *text;

    if (ctx->op == VW_BK_QUERY) {
        o = json_pack("{s:s,s:I,s:i}", "bulk_job", ctx->bulk_id,
                      "total", (json_int_t) ctx->total,
                      "pages", (int) ctx->pages);

    } else {
        /* every part's, the last part's ingest job */
        o = json_pack("{s:s?,s:s,s:I,s:I,s:I,s:I,s:I,s:i}",
                      "bulk_job", ctx->bulk_id[0] ? ctx->bulk_id : NULL,
                      "state", ctx->s_state[0] ? ctx->s_state
                                               : "JobComplete",
                      "processed", (json_int_t) ctx->s_processed,
                      "succeeded", (json_int_t) ctx->s_succeeded,
                      "failed", (json_int_t) ctx->s_failed,
                      "unprocessed", (json_int_t) ctx->s_unprocessed,
                      "rejected", (json_int_t) ctx->s_rejected,
                      "parts", (int) ctx->parts);
    }

    if (o == NULL) {
        return NULL;
    }

    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);

    return text;
}


/* the parts counted so far, and the last of them: bulk_sum */
static char *
vw_bk_sum_text(vw_bk_ctx_t *ctx)
{
    json_t  *o;
    char    *text;

    o = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:i}",
                  "summed", ctx->summed, "state", ctx->s_state,
                  "processed", (json_int_t) ctx->s_processed,
                  "succeeded", (json_int_t) ctx->s_succeeded,
                  "failed", (json_int_t) ctx->s_failed,
                  "unprocessed", (json_int_t) ctx->s_unprocessed,
                  "rejected", (json_int_t) ctx->s_rejected,
                  "parts", (int) ctx->parts);

    if (o == NULL) {
        return NULL;
    }

    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);

    return text;
}


/* the outcome of a finished ingest job, once its dead jobs are written */
static void
vw_bk_conclude(vw_bk_ctx_t *ctx)
{
    vw_call_t  *call = ctx->call;

    call->status = 200;

    if (ctx->s_state[0] == '\0' || strcmp(ctx->s_state, "JobComplete") == 0)
    {
        call->outcome = VW_CALL_SUCCESS;
        call->error[0] = '\0';
        free(call->result);
        call->result = vw_bk_result_text(ctx);
        return;
    }

    /* some records were written: the rest are dead jobs of their own */
    /* the job's id is in bulk_job: the engine's masking would star it */
    vw_bk_set(ctx, VW_CALL_DEAD, "ingest job %s (%.40s) after %" PRIu64
              " records: %" PRIu64 " failed and %" PRIu64 " unprocessed "
              "records dead-lettered one by one", ctx->s_state,
              ctx->sf_error[0] ? ctx->sf_error : "no reason given",
              ctx->s_processed, ctx->s_failed, ctx->s_unprocessed);
}


/* the parts counted so far, from bulk_sum or bulk_done */
static void
vw_bk_sum_read(vw_bk_ctx_t *ctx, const char *p, size_t len)
{
    json_t        *o;
    const char    *v;
    json_error_t   jerr;

    o = json_loadb(p, len, 0, &jerr);

    if (!json_is_object(o)) {
        json_decref(o);
        return;
    }

    v = json_string_value(json_object_get(o, "state"));
    snprintf(ctx->s_state, sizeof(ctx->s_state), "%s", v ? v : "");
    v = json_string_value(json_object_get(o, "summed"));
    snprintf(ctx->summed, sizeof(ctx->summed), "%s", v ? v : "");
    ctx->s_processed = json_integer_value(json_object_get(o, "processed"));
    ctx->s_succeeded = json_integer_value(json_object_get(o, "succeeded"));
    ctx->s_failed = json_integer_value(json_object_get(o, "failed"));
    ctx->s_unprocessed = json_integer_value(json_object_get(o,
                                            "unprocessed"));
    ctx->s_rejected = json_integer_value(json_object_get(o, "rejected"));
    ctx->parts = (unsigned) json_integer_value(json_object_get(o, "parts"));
    json_decref(o);
}


/* "<page>:<record>" */
static int
vw_bk_position_read(redisReply *r, size_t *page, size_t *at)
{
    char                *end;
    unsigned long long   p, a;

    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 40) {
        return VW_DECLINED;
    }

    p = strtoull(r->str, &end, 10);

    if (*end != ':') {
        return VW_DECLINED;
    }

    a = strtoull(end + 1, &end, 10);

    if (*end != '\0') {
        return VW_DECLINED;
    }

    *page = (size_t) p;
    *at = (size_t) a;

    return VW_OK;
}


static void
vw_bk_resume_read(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply    *r = reply, *id, *done, *next;
    vw_bk_ctx_t   *ctx = privdata;

    ctx->redis_pending--;

    if (ctx->call == NULL) {
        vw_bk_free(ctx);
        return;
    }

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 6) {
        vw_bk_set(ctx, VW_CALL_RETRY, "Redis is unavailable");
        vw_bk_finish(ctx);
        return;
    }

    id = r->element[0];
    done = r->element[1];
    next = r->element[3];

    if (id->type != REDIS_REPLY_STRING
        || !vw_bk_bulk_id_ok(id->str, id->len))
    {
        vw_bk_fresh(ctx);
        return;
    }

    memcpy(ctx->bulk_id, id->str, id->len);
    ctx->bulk_id[id->len] = '\0';
    ctx->resumed = 1;

    if (ctx->op != VW_BK_QUERY) {
        if (done->type == REDIS_REPLY_STRING) {
            vw_bk_sum_read(ctx, done->str, done->len);
            vw_bk_conclude(ctx);
            vw_bk_finish(ctx);
            return;
        }

        /* the part in flight, the next one's start, what went before */
        (void) vw_bk_position_read(r->element[2], &ctx->from_page,
                                   &ctx->from_at);
        ctx->more = vw_bk_position_read(next, &ctx->to_page, &ctx->to_at)
                    == VW_OK;

        if (r->element[4]->type == REDIS_REPLY_STRING) {
            vw_bk_sum_read(ctx, r->element[4]->str, r->element[4]->len);
        }

        if (r->element[5]->type == REDIS_REPLY_STRING) {
            ctx->rejected = strtoull(r->element[5]->str, NULL, 10);
        }
    }

    vw_log("info", "bulk job resumed", "job", ctx->job_id, "bulk_job",
           ctx->bulk_id, NULL);

    if (vw_bk_send(ctx, VW_BK_GET_INFO, "GET", NULL, NULL, NULL)
        != VW_OK)
    {
        vw_bk_finish(ctx);
    }
}


/* a new ingest or query job: the load's header first */
static void
vw_bk_fresh(vw_bk_ctx_t *ctx)
{
    ctx->bulk_id[0] = '\0';
    ctx->resumed = 0;

    if (ctx->from != NULL && ctx->nheader == 0) {
        /* the header from the first page that has records */
        if (vw_bk_header_start(ctx) != VW_OK) {
            vw_bk_set(ctx, VW_CALL_RETRY, "out of memory");
            vw_bk_finish(ctx);
            return;
        }

        ctx->step = VW_BK_CREATE;
        vw_bk_page_read(ctx, 0);

        if (ctx->next_state == VW_BK_NEXT_ERROR) {
            vw_bk_set(ctx, VW_CALL_RETRY, "%s", ctx->load_error);
            vw_bk_finish(ctx);
        }

        return;
    }

    vw_bk_create(ctx);
}


static void
vw_bk_create(vw_bk_ctx_t *ctx)
{
    int      rc;
    char     path[128];
    char    *body;
    json_t  *o;

    if (ctx->op == VW_BK_QUERY) {
        o = json_pack("{s:s,s:O}", "operation", "query", "query",
                      ctx->records);
        snprintf(path, sizeof(path), "%s/jobs/query", ctx->base);

    } else {
        o = json_pack("{s:s,s:s,s:s,s:s}", "object", ctx->call->object,
                      "operation", vw_bk_sf_ops[ctx->op], "contentType",
                      "CSV", "lineEnding", "LF");

        if (o != NULL && ctx->op == VW_BK_UPSERT) {
            json_object_set_new(o, "externalIdFieldName",
                                json_string(ctx->call->id_field));
        }

        snprintf(path, sizeof(path), "%s/jobs/ingest", ctx->base);
    }

    body = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);

    if (body == NULL) {
        vw_bk_set(ctx, VW_CALL_RETRY, "out of memory");
        vw_bk_finish(ctx);
        return;
    }

    rc = vw_bk_send(ctx, VW_BK_CREATE, "POST", path, body,
                    "application/json");

    if (rc != VW_OK) {
        vw_bk_finish(ctx);
    }
}


/* the upload starts (again) from the load's first record */
static void
vw_bk_load_reset(vw_bk_ctx_t *ctx)
{
    if (ctx->next_state == VW_BK_NEXT_PENDING) {
        ctx->stale_reads++;
    }

    json_decref(ctx->page);
    json_decref(ctx->next);
    ctx->page = NULL;
    ctx->next = NULL;
    ctx->next_state = VW_BK_NEXT_NONE;
    ctx->page_no = ctx->from != NULL ? ctx->from_page : 0;
    ctx->page_at = ctx->from != NULL ? 0 : ctx->from_at;
    ctx->skip = ctx->from != NULL ? ctx->from_at : 0;
    ctx->more = 0;
    ctx->part_end = 0;
    ctx->sent_rows = 0;
    ctx->sent_bytes = 0;
    ctx->rejected = 0;
    ctx->row_len = 0;
    ctx->row_at = 0;
    ctx->upload_failed = 0;
    ctx->upload_waiting = 0;
}


/* the job's id is durable: the records may go */
static void
vw_bk_saved(redisAsyncContext *ac, void *reply, void *privdata)
{
    char          path[160];
    redisReply   *r = reply;
    vw_bk_ctx_t  *ctx = privdata;

    ctx->redis_pending--;

    if (ctx->call == NULL) {
        vw_bk_free(ctx);
        return;
    }

    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        /* nothing was sent: the job stays Open and Salesforce drops it */
        vw_bk_set(ctx, VW_CALL_RETRY, "cannot record the bulk job in Redis");
        vw_bk_finish(ctx);
        return;
    }

    vw_log("info", "bulk job created", "job", ctx->job_id, "bulk_job",
           ctx->bulk_id, "operation", ctx->call->operation, NULL);

    if (ctx->op == VW_BK_QUERY) {
        ctx->poll_ms = 0;
        vw_bk_poll_later(ctx);
        return;
    }

    vw_bk_load_reset(ctx);

    snprintf(path, sizeof(path), "%s/jobs/ingest/%s/batches", ctx->base,
             ctx->bulk_id);

    if (vw_bk_send(ctx, VW_BK_UPLOAD, "PUT", path, NULL, "text/csv")
        != VW_OK)
    {
        vw_bk_finish(ctx);
    }
}


/* the token's failure as the attempt's outcome */
static void
vw_bk_token_failed(vw_bk_ctx_t *ctx)
{
    vw_call_t  *call = ctx->call;

    call->outcome = ctx->tr.rc == VW_ERROR ? VW_CALL_DEAD : VW_CALL_RETRY;
    call->target_failure = ctx->tr.rc != VW_ERROR
                           && (ctx->tr.status == 0 || ctx->tr.status >= 500);
    call->status = ctx->tr.status;
    snprintf(call->error, sizeof(call->error), "token: %.119s",
             ctx->tr.error[0] ? ctx->tr.error : "no token");
}


/* VW_OK: vw_bk_token_done() runs; VW_ERROR: the outcome is set */
static int
vw_bk_token(vw_bk_ctx_t *ctx)
{
    ctx->tr.conn = ctx->call->conn;
    ctx->tr.stale = ctx->stale;
    ctx->tr.timeout_ms = ctx->timeout_ms;
    ctx->tr.ca_file = ctx->ca_file;
    ctx->tr.proxy = ctx->proxy;
    ctx->tr.connect_timeout_ms = ctx->connect_timeout_ms;
    ctx->tr.handler = vw_bk_token_done;
    ctx->tr.data = ctx;
    ctx->tr.error[0] = '\0';
    ctx->tr.status = 0;
    ctx->tr.rc = VW_AGAIN;

    if (ctx->svc->oauth == NULL) {
        snprintf(ctx->tr.error, sizeof(ctx->tr.error), "no token manager");
        vw_bk_token_failed(ctx);
        return VW_ERROR;
    }

    if (vw_oauth_get(ctx->svc->oauth, &ctx->tr) != VW_OK) {
        vw_bk_token_failed(ctx);
        return VW_ERROR;
    }

    ctx->token_pending = 1;

    return VW_OK;
}


static void
vw_bk_token_done(vw_token_req_t *tr)
{
    vw_bk_ctx_t  *ctx = tr->data;

    ctx->token_pending = 0;

    if (tr->rc != VW_OK) {
        vw_bk_token_failed(ctx);
        vw_bk_finish(ctx);
        return;
    }

    ctx->have_token = 1;

    if (vw_bk_request(ctx) != VW_OK) {
        vw_bk_finish(ctx);
    }
}


/*
 * Sends method path (a path under the API's base, or NULL: the job's own
 * resource) with body (taken: freed here), getting a token first when
 * there is none.  VW_ERROR: the outcome is set.
 */
static int
vw_bk_send(vw_bk_ctx_t *ctx, vw_bk_step_e step, const char *method,
    const char *path, char *body, const char *ctype)
{
    char  buf[160];

    if (path == NULL) {
        snprintf(buf, sizeof(buf), "%s/jobs/%s/%s", ctx->base,
                 ctx->op == VW_BK_QUERY ? "query" : "ingest", ctx->bulk_id);
        path = buf;
    }

    free(ctx->path);
    free(ctx->body);
    ctx->body = body;
    ctx->path = strdup(path);
    ctx->step = step;
    ctx->method = method;
    ctx->ctype = ctype;
    ctx->replayed = 0;

    if (ctx->path == NULL) {
        vw_bk_set(ctx, VW_CALL_RETRY, "out of memory");
        return VW_ERROR;
    }

    if (!ctx->have_token) {
        return vw_bk_token(ctx);
    }

    return vw_bk_request(ctx);
}


static void
vw_bk_header(vw_http_req_t *req, const char *name, size_t nlen,
    const char *value, size_t vlen)
{
    vw_bk_ctx_t  *ctx = req->data;

    if (name == NULL) {
        ctx->have_limit = 0;
        return;
    }

    if (nlen == sizeof("Sforce-Locator") - 1
        && strncasecmp(name, "Sforce-Locator", nlen) == 0)
    {
        free(ctx->locator);
        ctx->locator = strndup(value, vlen);
        return;
    }

    if (nlen != sizeof("Sforce-Limit-Info") - 1
        || strncasecmp(name, "Sforce-Limit-Info", nlen) != 0)
    {
        return;
    }

    if (vw_sf_parse_usage(value, vlen, &ctx->used, &ctx->max) == VW_OK) {
        ctx->have_limit = 1;
    }
}


static int
vw_bk_request(vw_bk_ctx_t *ctx)
{
    int          rc;
    char        *line;
    size_t       size;
    vw_call_t   *call = ctx->call;
    const char  *base;
    unsigned     stream;

    base = ctx->tr.instance_url;

    if (strncmp(base, "https://", 8) != 0) {
        vw_bk_set(ctx, VW_CALL_DEAD, "the token's instance_url is not "
                  "https://");
        return VW_ERROR;
    }

    free(ctx->url);
    size = strlen(base) + strlen(ctx->path) + 1;
    ctx->url = malloc(size);
    if (ctx->url == NULL) {
        goto nomem;
    }

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

    stream = ctx->step == VW_BK_SUCCESSES || ctx->step == VW_BK_FAILURES
             || ctx->step == VW_BK_UNPROCESSED || ctx->step == VW_BK_PAGE;

    rc |= vw_sf_append(&ctx->headers, stream ? "Accept: text/csv"
                                             : "Accept: application/json");

    if (ctx->ctype != NULL) {
        size = strlen(ctx->ctype) + 16;
        line = malloc(size);
        if (line == NULL) {
            goto nomem;
        }

        snprintf(line, size, "Content-Type: %s", ctx->ctype);
        rc |= vw_sf_append(&ctx->headers, line);
        free(line);
    }

    rc |= vw_sf_append(&ctx->headers, "Expect:");

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
    ctx->req.timeout_ms = ctx->timeout_ms;
    ctx->req.connect_timeout_ms = ctx->connect_timeout_ms;
    ctx->req.ca_file = ctx->ca_file;
    ctx->req.proxy = ctx->proxy;
    ctx->req.https_only = 1;
    ctx->req.on_header = vw_bk_header;
    ctx->req.handler = vw_bk_http_done;
    ctx->req.data = ctx;
    ctx->have_limit = 0;
    ctx->err_len = 0;
    ctx->saw_status = 0;
    ctx->bad_status = 0;

    if (ctx->step == VW_BK_UPLOAD) {
        ctx->req.on_upload = vw_bk_upload;
        ctx->req.upload_len = -1;
        ctx->req.timeout_ms = ctx->timeout_ms > VW_BK_STREAM_TIMEOUT
                              ? ctx->timeout_ms : VW_BK_STREAM_TIMEOUT;

    } else if (ctx->step == VW_BK_PAGE) {
        ctx->req.body_max = VW_BK_QUERY_PAGE_MAX;
        ctx->req.timeout_ms = ctx->timeout_ms > VW_BK_STREAM_TIMEOUT
                              ? ctx->timeout_ms : VW_BK_STREAM_TIMEOUT;

    } else if (stream) {
        ctx->req.on_body = vw_bk_body;
        ctx->req.timeout_ms = ctx->timeout_ms > VW_BK_STREAM_TIMEOUT
                              ? ctx->timeout_ms : VW_BK_STREAM_TIMEOUT;

    } else {
        ctx->req.body = (const unsigned char *) ctx->body;
        ctx->req.body_len = ctx->body ? strlen(ctx->body) : 0;
        ctx->req.body_max = VW_BK_JSON_MAX;
    }

    if (vw_http_request(call->svc->http, &ctx->req) != VW_OK) {
        call->target_failure = 1;
        vw_bk_set(ctx, VW_CALL_RETRY, "%s", ctx->req.error);
        return VW_ERROR;
    }

    ctx->http_pending = 1;

    return VW_OK;

nomem:

    vw_bk_set(ctx, VW_CALL_RETRY, "out of memory");
    return VW_ERROR;
}


static void
vw_bk_limit_note(vw_bk_ctx_t *ctx)
{
    redisAsyncContext  *ac;

    if (ctx->have_limit && ctx->call != NULL && ctx->call->target != NULL) {
        vw_metrics_quota(ctx->call->target, "daily", ctx->used, ctx->max);
    }

    if (!ctx->have_limit || ctx->conn_name[0] == '\0') {
        return;
    }

    ac = vw_bk_redis(ctx);

    if (ac != NULL) {
        (void) redisAsyncCommand(ac, NULL, NULL,
                                 "HSET {vq}:limits:%s used %" PRIu64
                                 " max %" PRIu64 " at_ms %" PRIu64,
                                 ctx->conn_name, ctx->used, ctx->max,
                                 vw_services_now());
    }
}


static uint64_t
vw_bk_random(void)
{
    uint64_t  r;

    if (getrandom(&r, sizeof(r), 0) != (ssize_t) sizeof(r)) {
        r = (uint64_t) random() << 32 ^ (uint64_t) random();
    }

    return r;
}


/*
 * The part is sent: where the next one starts (or "end") goes into the
 * job's hash before the part is closed, so that an attempt resuming a
 * closed part knows what follows it
 */
static void
vw_bk_uploaded(vw_bk_ctx_t *ctx)
{
    char  next[48];

    if (ctx->more) {
        snprintf(next, sizeof(next), "%llu:%llu",
                 (unsigned long long) ctx->to_page,
                 (unsigned long long) ctx->to_at);
    } else {
        snprintf(next, sizeof(next), "end");
    }

    if (vw_bk_redis_cmd(ctx, vw_bk_next_saved, "HSET {vq}:job:%s bulk_next "
                        "%s bulk_rejected %llu", ctx->job_id, next,
                        (unsigned long long) ctx->rejected) != VW_OK)
    {
        vw_bk_set(ctx, VW_CALL_RETRY, "Redis is unavailable");
        vw_bk_finish(ctx);
    }
}


static void
vw_bk_next_saved(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply   *r = reply;
    vw_bk_ctx_t  *ctx = privdata;

    ctx->redis_pending--;

    if (ctx->call == NULL) {
        vw_bk_free(ctx);
        return;
    }

    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        /* the part stays Open: the next attempt aborts it */
        vw_bk_set(ctx, VW_CALL_RETRY, "cannot record the bulk job in Redis");
        vw_bk_finish(ctx);
        return;
    }

    if (vw_bk_send(ctx, VW_BK_CLOSE, "PATCH", NULL,
                   strdup("{\"state\":\"UploadComplete\"}"),
                   "application/json") != VW_OK)
    {
        vw_bk_finish(ctx);
    }
}


/* a new job's id: into the job's hash before anything is sent to it */
static void
vw_bk_created(vw_bk_ctx_t *ctx, const unsigned char *body, size_t len)
{
    json_t        *o;
    const char    *id;
    json_error_t   jerr;

    o = json_loadb((const char *) body, len, 0, &jerr);
    id = json_string_value(json_object_get(o, "id"));

    if (id == NULL || !vw_bk_bulk_id_ok(id, strlen(id))) {
        json_decref(o);
        vw_bk_set(ctx, VW_CALL_RETRY, "HTTP %ld: the new job has no id",
                  ctx->req.status);
        vw_bk_finish(ctx);
        return;
    }

    snprintf(ctx->bulk_id, sizeof(ctx->bulk_id), "%s", id);
    json_decref(o);

    if (vw_bk_redis_cmd(ctx, vw_bk_saved, "HSET {vq}:job:%s bulk_job %s "
                        "bulk_from %llu:%llu bulk_next %s", ctx->job_id,
                        ctx->bulk_id, (unsigned long long) ctx->from_page,
                        (unsigned long long) ctx->from_at, "") != VW_OK)
    {
        vw_bk_set(ctx, VW_CALL_RETRY, "Redis is unavailable");
        vw_bk_finish(ctx);
    }
}


static void
vw_bk_http_done(vw_http_req_t *req)
{
    char                  errs[VW_ERRSTR_LEN];
    size_t                size, n, body_len;
    unsigned              lock, flags;
    vw_bk_ctx_t          *ctx = req->data;
    vw_call_t            *call = ctx->call;
    const unsigned char  *body;

    ctx->http_pending = 0;

    vw_bk_limit_note(ctx);

    call->status = req->status;
    call->retry_after_ms = 0;
    call->target_failure = 0;

    if (ctx->step == VW_BK_UPLOAD && ctx->upload_failed) {
        /* the load itself stopped the upload (outcome set): the job is
           still Open, and the next attempt aborts it and starts anew */
        vw_bk_finish(ctx);
        return;
    }

    if (req->failed) {
        call->target_failure = 1;

        if (req->timed_out) {
            vw_bk_set(ctx, VW_CALL_RETRY, "timeout after %" PRIu64 " ms",
                      req->timeout_ms);
        } else {
            vw_bk_set(ctx, VW_CALL_RETRY, "%s", req->error[0] ? req->error
                      : "no response");
        }

        vw_bk_finish(ctx);
        return;
    }

    /* the answer's start, for the attempt's history */
    body = req->on_body ? ctx->err : (req->big ? req->big : req->resp);
    body_len = req->on_body ? ctx->err_len
               : (req->big ? req->big_len : req->resp_len);

    n = body_len < sizeof(call->resp) ? body_len : sizeof(call->resp);
    memcpy(call->resp, body, n);
    call->resp_len = n;

    if (req->status >= 200 && req->status < 300) {
        call->error[0] = '\0';

        switch (ctx->step) {

        case VW_BK_GET_INFO:
        case VW_BK_POLL:
            vw_bk_info(ctx);
            return;

        case VW_BK_ABORT:
            /* an upload cut short: the load goes to a new job */
            vw_log("info", "bulk job aborted: its upload was cut short",
                   "job", ctx->job_id, "bulk_job", ctx->bulk_id, NULL);
            vw_bk_fresh(ctx);
            return;

        case VW_BK_CREATE:
            vw_bk_created(ctx, body, body_len);
            return;

        case VW_BK_UPLOAD:
            vw_bk_dead_flush(ctx);
            vw_bk_uploaded(ctx);
            return;

        case VW_BK_CLOSE:
            ctx->poll_ms = 0;
            vw_bk_poll_later(ctx);
            return;

        case VW_BK_SUCCESSES:
        case VW_BK_FAILURES:
        case VW_BK_UNPROCESSED:
            vw_bk_results_done(ctx);
            return;

        case VW_BK_PAGE:
            vw_bk_page_done(ctx);
            return;
        }
    }

    flags = 0;
    errs[0] = '\0';
    vw_sf_errors(body, body_len, errs, sizeof(errs), &flags);
    lock = (flags & (VW_SF_LOCK | VW_SF_LIMIT)) != 0;

    if (req->status == 401 && !ctx->replayed) {
        /* a token newer than the refused one, and the request again */
        size = strlen(ctx->tr.token) + 1;

        if (ctx->stale == NULL) {
            ctx->stale = malloc(VW_OAUTH_TOKEN_MAX);
        }

        if (ctx->stale != NULL && size <= VW_OAUTH_TOKEN_MAX) {
            memcpy(ctx->stale, ctx->tr.token, size);
            vw_token_clear(&ctx->tr);
            ctx->have_token = 0;

            if (ctx->step == VW_BK_UPLOAD) {
                /* the load is read again from its start */
                vw_bk_load_reset(ctx);
            }

            ctx->replayed = 1;

            if (vw_bk_token(ctx) != VW_OK) {
                vw_bk_finish(ctx);
            }

            return;
        }
    }

    if (req->retry_after >= 0) {
        call->retry_after_ms = vc_backoff_retry_after(
                                   (uint64_t) req->retry_after,
                                   vw_bk_random());
        call->retry_after_ms += call->retry_after_ms == 0;
    }

    if (req->status == 401 || req->status == 408 || req->status == 425
        || req->status == 429 || req->status == 409 || req->status == 412
        || req->status >= 500 || lock)
    {
        call->target_failure = req->status >= 500 || req->status == 429;
        vw_bk_set(ctx, VW_CALL_RETRY, "HTTP %ld%s%.100s", req->status,
                  errs[0] ? " " : "", errs);

    } else if (req->status == 404 && ctx->resumed
               && ctx->step == VW_BK_GET_INFO)
    {
        vw_bk_set(ctx, VW_CALL_DEAD, "the bulk job %s is gone (HTTP 404)",
                  ctx->bulk_id);

    } else {
        vw_bk_set(ctx, VW_CALL_DEAD, "HTTP %ld%s%.100s", req->status,
                  errs[0] ? " " : "", errs);
    }

    vw_bk_finish(ctx);
}


/* -- polling ------------------------------------------------------------- */

static void
vw_bk_poll_later(vw_bk_ctx_t *ctx)
{
    struct timeval  tv;

    ctx->poll_ms = ctx->poll_ms == 0 ? VW_BK_POLL_FIRST_MS
                   : ctx->poll_ms * 2 > VW_BK_POLL_MAX_MS ? VW_BK_POLL_MAX_MS
                   : ctx->poll_ms * 2;

    if (ctx->timer == NULL) {
        ctx->timer = evtimer_new(ctx->svc->base, vw_bk_poll, ctx);
    }

    if (ctx->timer == NULL) {
        vw_bk_set(ctx, VW_CALL_RETRY, "out of memory");
        vw_bk_finish(ctx);
        return;
    }

    tv.tv_sec = ctx->poll_ms / 1000;
    tv.tv_usec = (ctx->poll_ms % 1000) * 1000;
    evtimer_add(ctx->timer, &tv);
}


static void
vw_bk_poll(evutil_socket_t fd, short kind, void *arg)
{
    vw_bk_ctx_t  *ctx = arg;

    if (vw_bk_send(ctx, VW_BK_POLL, "GET", NULL, NULL, NULL) != VW_OK) {
        vw_bk_finish(ctx);
    }
}


static void
vw_bk_results(vw_bk_ctx_t *ctx, vw_bk_step_e step)
{
    char         path[192];
    const char  *which;

    which = step == VW_BK_SUCCESSES ? "successfulResults"
            : step == VW_BK_FAILURES ? "failedResults" : "unprocessedrecords";

    snprintf(path, sizeof(path), "%s/jobs/ingest/%s/%s/", ctx->base,
             ctx->bulk_id, which);

    ctx->rows = 0;
    ctx->nnames = 0;
    ctx->nfields = 0;
    ctx->field_len = 0;
    ctx->csv_quoted = 0;
    ctx->csv_quote = 0;
    ctx->csv_any = 0;

    if (vw_bk_send(ctx, step, "GET", path, NULL, NULL) != VW_OK) {
        vw_bk_finish(ctx);
    }
}


/* the job's info: its state decides what comes next */
static void
vw_bk_info(vw_bk_ctx_t *ctx)
{
    char          path[192];
    json_t       *o;
    size_t        n;
    const char   *state, *msg;
    json_error_t  jerr;

    o = json_loadb((const char *) ctx->req.big, ctx->req.big_len, 0, &jerr);
    state = json_string_value(json_object_get(o, "state"));

    if (state == NULL) {
        json_decref(o);
        vw_bk_set(ctx, VW_CALL_RETRY, "the bulk job's info has no state");
        vw_bk_finish(ctx);
        return;
    }

    snprintf(ctx->state, sizeof(ctx->state), "%s", state);
    ctx->processed = json_integer_value(json_object_get(o,
                                        "numberRecordsProcessed"));
    ctx->failed = json_integer_value(json_object_get(o,
                                     "numberRecordsFailed"));

    /* errorMessage's code, "InvalidBatch : Field name not found : X" */
    msg = json_string_value(json_object_get(o, "errorMessage"));
    ctx->sf_error[0] = '\0';

    for (n = 0; msg != NULL && msg[n] && n + 1 < sizeof(ctx->sf_error)
                && (isalnum((unsigned char) msg[n]) || msg[n] == '_');
         n++)
    {
        ctx->sf_error[n] = msg[n];
        ctx->sf_error[n + 1] = '\0';
    }

    /* state is o's: only ctx->state from here */
    json_decref(o);

    if (strcmp(ctx->state, "Open") == 0 && ctx->op != VW_BK_QUERY) {
        /* a cut upload (the worker died in it): never processed */
        if (vw_bk_send(ctx, VW_BK_ABORT, "PATCH", NULL,
                       strdup("{\"state\":\"Aborted\"}"), "application/json")
            != VW_OK)
        {
            vw_bk_finish(ctx);
        }

        return;
    }

    if (strcmp(ctx->state, "JobComplete") == 0) {
        if (ctx->op == VW_BK_QUERY) {
            free(ctx->locator);
            ctx->locator = NULL;
            ctx->pages = 0;
            ctx->total = 0;

            /* a query read again pushes its pages again */
            if (vw_bk_redis_cmd(ctx, NULL, "DEL {vq}:out:%s", ctx->job_id)
                != VW_OK)
            {
                vw_bk_set(ctx, VW_CALL_RETRY, "Redis is unavailable");
                vw_bk_finish(ctx);
                return;
            }

            snprintf(path, sizeof(path), "%s/jobs/query/%s/results"
                     "?maxRecords=%u", ctx->base, ctx->bulk_id,
                     ctx->max_records);

            if (vw_bk_send(ctx, VW_BK_PAGE, "GET", path, NULL, NULL)
                != VW_OK)
            {
                vw_bk_finish(ctx);
            }

            return;
        }

        vw_bk_results(ctx, VW_BK_SUCCESSES);
        return;
    }

    if (strcmp(ctx->state, "Failed") == 0
        || strcmp(ctx->state, "Aborted") == 0)
    {
        vw_bk_terminal(ctx);
        return;
    }

    /* UploadComplete, InProgress */
    vw_bk_poll_later(ctx);
}


/*
 * A job that Failed or was Aborted.  When Salesforce processed none of
 * its records, the whole load is the job's again: the next attempt (a
 * retry, or a replay) sends it to a new ingest job.  When it processed
 * some, those are written, and the rest become dead jobs one by one.
 */
static void
vw_bk_terminal(vw_bk_ctx_t *ctx)
{
    unsigned  permanent;

    /* an earlier part's records are written: only the rest is dead */
    if (ctx->op == VW_BK_QUERY || (ctx->processed == 0 && ctx->parts == 0))
    {
        permanent = strncmp(ctx->sf_error, "Invalid", 7) == 0
                    || strcmp(ctx->state, "Aborted") == 0;

        (void) vw_bk_redis_cmd(ctx, NULL, "HDEL {vq}:job:%s bulk_job",
                               ctx->job_id);

        vw_bk_set(ctx, permanent ? VW_CALL_DEAD : VW_CALL_RETRY,
                  "%s job %s: %.60s", ctx->op == VW_BK_QUERY ? "query"
                  : "ingest", ctx->state,
                  ctx->sf_error[0] ? ctx->sf_error : "no reason given");
        ctx->call->status = 200;
        vw_bk_finish(ctx);
        return;
    }

    vw_bk_results(ctx, VW_BK_SUCCESSES);
}


/* -- results, row by row ------------------------------------------------- */

static int
vw_bk_field_put(vw_bk_ctx_t *ctx, char c)
{
    char    *p;
    size_t   size;

    if (ctx->field_len + 1 >= ctx->field_size) {
        if (ctx->field_size >= VW_BK_ROW_MAX) {
            return VW_ERROR;
        }

        size = ctx->field_size ? ctx->field_size * 2 : 256;
        p = realloc(ctx->field, size);
        if (p == NULL) {
            return VW_ERROR;
        }

        ctx->field = p;
        ctx->field_size = size;
    }

    ctx->field[ctx->field_len++] = c;

    return VW_OK;
}


static int
vw_bk_field_end(vw_bk_ctx_t *ctx)
{
    char     **f;
    size_t    *l;
    size_t     size;

    if (ctx->nfields == ctx->fields_size) {
        size = ctx->fields_size ? ctx->fields_size * 2 : 16;
        f = realloc(ctx->fields, size * sizeof(char *));
        if (f == NULL) {
            return VW_ERROR;
        }

        ctx->fields = f;

        l = realloc(ctx->lens, size * sizeof(size_t));
        if (l == NULL) {
            return VW_ERROR;
        }

        ctx->lens = l;

        for ( /* void */ ; ctx->fields_size < size; ctx->fields_size++) {
            ctx->fields[ctx->fields_size] = NULL;
        }
    }

    free(ctx->fields[ctx->nfields]);
    ctx->fields[ctx->nfields] = strndup(ctx->field ? ctx->field : "",
                                        ctx->field_len);
    if (ctx->fields[ctx->nfields] == NULL) {
        return VW_ERROR;
    }

    ctx->lens[ctx->nfields] = ctx->field_len;
    ctx->nfields++;
    ctx->field_len = 0;
    ctx->csv_any = 0;

    return VW_OK;
}


/* sf__Error's code and fields: "CODE:message:Field1,Field2 --" */
static void
vw_bk_sf_error(const char *e, char *out, size_t size)
{
    size_t       n, i;
    const char  *last, *end;

    n = 0;
    out[0] = '\0';

    for (i = 0; e[i] && (isupper((unsigned char) e[i]) || e[i] == '_'
                         || isdigit((unsigned char) e[i])); i++)
    {
        if (n + 1 < size) {
            out[n++] = e[i];
        }
    }

    if (n == 0 || e[i] != ':') {
        snprintf(out, size, "an error without a code");
        return;
    }

    last = strrchr(e, ':');
    end = strstr(last, " --");
    end = end ? end : last + strlen(last);

    for (i = 1; last + i < end; i++) {
        if (!isalnum((unsigned char) last[i]) && last[i] != '_'
            && last[i] != ',' && last[i] != '.')
        {
            break;
        }
    }

    if (last + i == end && i > 1 && last != e + n && n + (i - 1) + 4 < size)
    {
        out[n++] = ' ';
        out[n++] = '[';
        memcpy(out + n, last + 1, i - 1);
        n += i - 1;
        out[n++] = ']';
    }

    out[n] = '\0';
}


/* one row of an answer (the first is its header) */
static int
vw_bk_row(vw_bk_ctx_t *ctx)
{
    char         error[VW_ERRSTR_LEN];
    size_t       i;
    json_t      *rec;
    const char  *sf_error;

    if (ctx->nfields == 1 && ctx->lens[0] == 0) {
        ctx->nfields = 0;
        return VW_OK;                   /* an empty line */
    }

    if (ctx->nnames == 0 && ctx->names == NULL) {
        /* the header: its fields become the names */
        for (i = ctx->nfields; i < ctx->fields_size; i++) {
            free(ctx->fields[i]);
        }

        ctx->names = ctx->fields;
        ctx->nnames = ctx->nfields;
        ctx->fields = NULL;
        free(ctx->lens);
        ctx->lens = NULL;
        ctx->fields_size = 0;
        ctx->nfields = 0;
        return VW_OK;
    }

    ctx->rows++;

    if (ctx->step == VW_BK_SUCCESSES) {
        ctx->nfields = 0;
        return VW_OK;
    }

    rec = json_object();
    sf_error = NULL;

    for (i = 0; rec != NULL && i < ctx->nfields && i < ctx->nnames; i++) {
        if (strcmp(ctx->names[i], "sf__Error") == 0) {
            sf_error = ctx->fields[i];
            continue;
        }

        if (strncmp(ctx->names[i], "sf__", 4) == 0 || ctx->lens[i] == 0) {
            continue;
        }

        json_object_set_new(rec, ctx->names[i],
                            strcmp(ctx->fields[i], "#N/A") == 0
                            ? json_null()
                            : json_stringn(ctx->fields[i], ctx->lens[i]));
    }

    if (rec == NULL) {
        return VW_ERROR;
    }

    if (ctx->step == VW_BK_FAILURES) {
        vw_bk_sf_error(sf_error ? sf_error : "", error, sizeof(error));
        vw_bk_dead_add(ctx, "failed", ctx->rows, rec, error);

    } else {
        snprintf(error, sizeof(error), "unprocessed: the ingest job %s (%s)",
                 ctx->state, ctx->sf_error[0] ? ctx->sf_error : "no reason");
        vw_bk_dead_add(ctx, "unprocessed", ctx->rows, rec, error);
    }

    json_decref(rec);
    ctx->nfields = 0;

    return VW_OK;
}


static void
vw_bk_names_free(vw_bk_ctx_t *ctx)
{
    size_t  i;

    for (i = 0; ctx->names != NULL && i < ctx->nnames; i++) {
        free(ctx->names[i]);
    }

    free(ctx->names);
    ctx->names = NULL;
    ctx->nnames = 0;
}


/* a CSV answer as it comes (RFC 4180: quotes, doubled quotes, LF/CRLF) */
static int
vw_bk_csv(vw_bk_ctx_t *ctx, const unsigned char *p, size_t n, int end)
{
    char    c;
    size_t  i;

    for (i = 0; i < n; i++) {
        c = (char) p[i];

        if (ctx->csv_quoted) {
            if (ctx->csv_quote) {
                ctx->csv_quote = 0;

                if (c == '"') {
                    if (vw_bk_field_put(ctx, '"') != VW_OK) {
                        return VW_ERROR;
                    }

                    continue;
                }

                ctx->csv_quoted = 0;
                /* the closing quote: c is read as unquoted below */

            } else if (c == '"') {
                ctx->csv_quote = 1;
                continue;

            } else {
                if (vw_bk_field_put(ctx, c) != VW_OK) {
                    return VW_ERROR;
                }

                continue;
            }
        }

        if (c == '"' && ctx->field_len == 0 && !ctx->csv_any) {
            ctx->csv_quoted = 1;
            ctx->csv_any = 1;
            continue;
        }

        if (c == ',') {
            if (vw_bk_field_end(ctx) != VW_OK) {
                return VW_ERROR;
            }

            continue;
        }

        if (c == '\n') {
            if (vw_bk_field_end(ctx) != VW_OK || vw_bk_row(ctx) != VW_OK) {
                return VW_ERROR;
            }

            continue;
        }

        if (c == '\r') {
            continue;
        }

        ctx->csv_any = 1;

        if (vw_bk_field_put(ctx, c) != VW_OK) {
            return VW_ERROR;
        }
    }

    if (end && (ctx->field_len > 0 || ctx->nfields > 0 || ctx->csv_any)) {
        ctx->csv_quoted = 0;
        ctx->csv_quote = 0;

        if (vw_bk_field_end(ctx) != VW_OK || vw_bk_row(ctx) != VW_OK) {
            return VW_ERROR;
        }
    }

    return VW_OK;
}


static int
vw_bk_body(vw_http_req_t *req, const unsigned char *p, size_t n)
{
    long          status;
    size_t        room;
    vw_bk_ctx_t  *ctx = req->data;

    if (!ctx->saw_status) {
        ctx->saw_status = 1;
        status = 0;
        curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
        ctx->bad_status = status < 200 || status >= 300;
    }

    if (ctx->bad_status) {
        room = sizeof(ctx->err) - ctx->err_len;
        n = n < room ? n : room;
        memcpy(ctx->err + ctx->err_len, p, n);
        ctx->err_len += n;
        return VW_OK;
    }

    /* a results CSV holds records: none of it goes to the history */
    if (vw_bk_csv(ctx, p, n, 0) != VW_OK) {
        snprintf(req->error, sizeof(req->error), "a result row too large, "
                 "or out of memory");
        return VW_ERROR;
    }

    /*
     * Rows come faster than Redis takes their dead jobs: the transfer
     * waits (curl keeps what it has read) rather than the commands
     * piling up in hiredis's buffer; vw_bk_dead_done() lets it go on
     */
    if (ctx->dead_pending >= VW_BK_DLQ_INFLIGHT && !ctx->recv_paused) {
        ctx->recv_paused = 1;
        curl_easy_pause(req->easy, CURLPAUSE_RECV);
        vw_bk_waits(ctx);
    }

    return VW_OK;
}


static void
vw_bk_done_write(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply   *r = reply;
    vw_bk_ctx_t  *ctx = privdata;

    ctx->redis_pending--;

    if (ctx->call == NULL) {
        if (ctx->redis_pending == 0) {
            vw_bk_free(ctx);
        }

        return;
    }

    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        ctx->redis_failed = 1;
    }

    if (ctx->redis_pending > 0) {
        return;
    }

    if (ctx->redis_failed) {
        vw_bk_set(ctx, VW_CALL_RETRY, "cannot write the dead-lettered "
                  "records: Redis is unavailable");

    } else if (ctx->more) {
        /* the next part, from where this one stopped */
        ctx->from_page = ctx->to_page;
        ctx->from_at = ctx->to_at;
        vw_bk_fresh(ctx);
        return;

    } else {
        vw_bk_conclude(ctx);
    }

    vw_bk_finish(ctx);
}


/* an answer read whole: the next one, or the end */
static void
vw_bk_results_done(vw_bk_ctx_t *ctx)
{
    char  *text, *sum;

    if (vw_bk_csv(ctx, NULL, 0, 1) != VW_OK) {
        vw_bk_set(ctx, VW_CALL_RETRY, "out of memory");
        vw_bk_finish(ctx);
        return;
    }

    vw_bk_names_free(ctx);

    switch (ctx->step) {

    case VW_BK_SUCCESSES:
        ctx->succeeded = ctx->rows;
        vw_bk_results(ctx, VW_BK_FAILURES);
        return;

    case VW_BK_FAILURES:
        ctx->failed = ctx->rows;
        vw_bk_results(ctx, VW_BK_UNPROCESSED);
        return;

    default:
        ctx->unprocessed = ctx->rows;
        break;
    }

    vw_bk_dead_flush(ctx);

    /* the part counts once, however often its results are read */
    if (strcmp(ctx->summed, ctx->bulk_id) != 0) {
        snprintf(ctx->summed, sizeof(ctx->summed), "%s", ctx->bulk_id);
        ctx->parts++;
        ctx->s_processed += ctx->processed;
        ctx->s_succeeded += ctx->succeeded;
        ctx->s_failed += ctx->failed;
        ctx->s_unprocessed += ctx->unprocessed;
        ctx->s_rejected += ctx->rejected;

        if (strcmp(ctx->state, "JobComplete") != 0
            || ctx->s_state[0] == '\0')
        {
            snprintf(ctx->s_state, sizeof(ctx->s_state), "%s", ctx->state);
        }
    }

    /*
     * Once every dead job is written, the job says so, for a later
     * attempt (a crash before the engine settles): bulk_sum after each
     * part, bulk_done after the last
     */
    sum = vw_bk_sum_text(ctx);
    text = ctx->more ? NULL : vw_bk_result_text(ctx);

    if (sum == NULL || (!ctx->more && text == NULL)
        || (ctx->more
            ? vw_bk_redis_cmd(ctx, vw_bk_done_write,
                              "HSET {vq}:job:%s bulk_sum %s", ctx->job_id,
                              sum)
            : vw_bk_redis_cmd(ctx, vw_bk_done_write,
                              "HSET {vq}:job:%s bulk_sum %s bulk_done %s",
                              ctx->job_id, sum, text)) != VW_OK)
    {
        free(sum);
        free(text);
        vw_bk_set(ctx, VW_CALL_RETRY, "Redis is unavailable");
        vw_bk_finish(ctx);
        return;
    }

    free(sum);
    free(text);

    vw_log("info", "bulk job finished", "job", ctx->job_id, "bulk_job",
           ctx->bulk_id, "state", ctx->state, NULL);
}


/* a query's page: pushed, then the next one while the locator says so */
static void
vw_bk_page_done(vw_bk_ctx_t *ctx)
{
    char      *loc, path[512];
    size_t     i;
    uint64_t   rows;

    /* the rows: lines after the header, not counting quoted newlines */
    rows = 0;
    ctx->csv_quoted = 0;

    for (i = 0; ctx->req.big != NULL && i < ctx->req.big_len; i++) {
        if (ctx->req.big[i] == '"') {
            ctx->csv_quoted = !ctx->csv_quoted;

        } else if (ctx->req.big[i] == '\n' && !ctx->csv_quoted) {
            rows++;
        }
    }

    ctx->csv_quoted = 0;

    if (ctx->req.big_len > 0 && ctx->req.big[ctx->req.big_len - 1] != '\n')
    {
        rows++;
    }

    ctx->total += rows > 0 ? rows - 1 : 0;
    ctx->pages++;

    if (vw_bk_redis_cmd(ctx, NULL, "RPUSH {vq}:out:%s %b", ctx->job_id,
                        ctx->req.big ? ctx->req.big : (unsigned char *) "",
                        ctx->req.big_len) != VW_OK)
    {
        vw_bk_set(ctx, VW_CALL_RETRY, "cannot store the query's pages: "
                  "Redis is unavailable");
        vw_bk_finish(ctx);
        return;
    }

    free(ctx->req.big);
    ctx->req.big = NULL;

    if (ctx->locator == NULL || ctx->locator[0] == '\0'
        || strcmp(ctx->locator, "null") == 0)
    {
        ctx->call->outcome = VW_CALL_SUCCESS;
        ctx->call->error[0] = '\0';
        free(ctx->call->result);
        ctx->call->result = vw_bk_result_text(ctx);
        vw_bk_finish(ctx);
        return;
    }

    loc = curl_easy_escape(NULL, ctx->locator, 0);
    if (loc == NULL || strlen(loc) > 256) {
        curl_free(loc);
        vw_bk_set(ctx, VW_CALL_RETRY, "a locator too long");
        vw_bk_finish(ctx);
        return;
    }

    snprintf(path, sizeof(path), "%s/jobs/query/%s/results?locator=%s"
             "&maxRecords=%u", ctx->base, ctx->bulk_id, loc,
             ctx->max_records);
    curl_free(loc);

    free(ctx->locator);
    ctx->locator = NULL;

    if (vw_bk_send(ctx, VW_BK_PAGE, "GET", path, NULL, NULL) != VW_OK) {
        vw_bk_finish(ctx);
    }
}


/* -- the upload ---------------------------------------------------------- */

static void
vw_bk_page_read(vw_bk_ctx_t *ctx, size_t no)
{
    ctx->next_state = VW_BK_NEXT_PENDING;
    ctx->next_no = no;

    /* hiredis's format knows no %zu */
    if (vw_bk_redis_cmd(ctx, vw_bk_page_reply, "LINDEX %s %llu", ctx->from,
                        (unsigned long long) no) != VW_OK)
    {
        ctx->next_state = VW_BK_NEXT_ERROR;
        snprintf(ctx->load_error, sizeof(ctx->load_error),
                 "Redis is unavailable");
    }
}


/* a page of the list: for the header, or the upload that waits for it */
static void
vw_bk_page_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    size_t        i;
    json_t       *page, *rec, *mapped;
    redisReply   *r = reply;
    vw_bk_ctx_t  *ctx = privdata;
    json_error_t  jerr;
    char          err[VW_ERRSTR_LEN];

    ctx->redis_pending--;

    if (ctx->call == NULL) {
        vw_bk_free(ctx);
        return;
    }

    if (ctx->stale_reads > 0) {
        /* asked for before the upload started again */
        ctx->stale_reads--;
        return;
    }

    page = NULL;

    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        ctx->next_state = VW_BK_NEXT_ERROR;
        snprintf(ctx->load_error, sizeof(ctx->load_error),
                 "cannot read the load's page %zu: Redis is unavailable",
                 ctx->next_no);
        ctx->call->outcome = VW_CALL_RETRY;

    } else if (r->type == REDIS_REPLY_NIL) {
        ctx->next_state = VW_BK_NEXT_END;

    } else if (r->type == REDIS_REPLY_STRING) {
        page = json_loadb(r->str, r->len, 0, &jerr);

        if (!json_is_array(page)) {
            json_decref(page);
            page = NULL;
            ctx->next_state = VW_BK_NEXT_ERROR;
            ctx->call->outcome = VW_CALL_DEAD;
            snprintf(ctx->load_error, sizeof(ctx->load_error),
                     "page %zu of the load is not a JSON array",
                     ctx->next_no);

        } else {
            ctx->next_state = VW_BK_NEXT_READY;
        }

    } else {
        ctx->next_state = VW_BK_NEXT_ERROR;
        ctx->call->outcome = VW_CALL_DEAD;
        snprintf(ctx->load_error, sizeof(ctx->load_error),
                 "the load's key is not a list");
    }

    /* the job's mapping, record by record (a page is the mapping's "from") */
    if (page != NULL && ctx->call->map != NULL) {
        json_array_foreach(page, i, rec) {
            if (!json_is_object(rec)) {
                continue;
            }

            if (vc_map_apply(ctx->call->map, rec, &mapped, err, sizeof(err))
                == VC_OK)
            {
                json_array_set_new(page, i, mapped);

            } else {
                /* dead-lettered when the upload meets it */
                json_array_set_new(page, i, json_pack("{s:s,s:O}",
                                   "__vantage_map_error", err,
                                   "__vantage_record", rec));
            }
        }
    }

    if (ctx->step == VW_BK_CREATE) {
        /* the header: from the first page with records */
        if (ctx->next_state == VW_BK_NEXT_READY) {
            json_array_foreach(page, i, rec) {
                if (json_object_get(rec, "__vantage_map_error") == NULL
                    && vw_bk_header_record(ctx, rec) != VW_OK)
                {
                    ctx->next_state = VW_BK_NEXT_ERROR;
                    snprintf(ctx->load_error, sizeof(ctx->load_error),
                             "out of memory");
                    break;
                }
            }

            i = json_array_size(page);
            json_decref(page);

            if (ctx->next_state == VW_BK_NEXT_READY
                && ((ctx->op == VW_BK_DELETE && i == 0)
                    || (ctx->op != VW_BK_DELETE
                        && ctx->nheader <= (ctx->op != VW_BK_INSERT))))
            {
                vw_bk_page_read(ctx, ctx->next_no + 1);

                if (ctx->next_state != VW_BK_NEXT_ERROR) {
                    return;
                }
            }
        }

        ctx->next_state = ctx->next_state == VW_BK_NEXT_ERROR
                          ? VW_BK_NEXT_ERROR : VW_BK_NEXT_NONE;

        if (ctx->next_state == VW_BK_NEXT_ERROR) {
            vw_bk_set(ctx, ctx->call->outcome, "%s", ctx->load_error);
            vw_bk_finish(ctx);
            return;
        }

        vw_bk_create(ctx);
        return;
    }

    ctx->next = page;

    if (ctx->upload_waiting && ctx->req.easy != NULL) {
        ctx->upload_waiting = 0;
        curl_easy_pause(ctx->req.easy, CURLPAUSE_CONT);
    }
}


/* the next record to send, or NULL at the end (or on an error, said) */
static json_t *
vw_bk_next_record(vw_bk_ctx_t *ctx, int *wait)
{
    json_t  *rec;

    *wait = 0;

    for ( ;; ) {
        if (ctx->records != NULL) {
            if (ctx->page_at < json_array_size(ctx->records)) {
                return json_array_get(ctx->records, ctx->page_at++);
            }

            return NULL;
        }

        if (ctx->page != NULL && ctx->page_at < json_array_size(ctx->page)) {
            rec = json_array_get(ctx->page, ctx->page_at++);
            return rec;
        }

        /* the page is sent: the next one, read ahead */
        if (ctx->page != NULL) {
            json_decref(ctx->page);
            ctx->page = NULL;
            ctx->page_no++;
        }

        switch (ctx->next_state) {

        case VW_BK_NEXT_NONE:
            vw_bk_page_read(ctx, ctx->page_no);

            if (ctx->next_state == VW_BK_NEXT_ERROR) {
                return NULL;
            }

            *wait = 1;
            return NULL;

        case VW_BK_NEXT_PENDING:
            *wait = 1;
            return NULL;

        case VW_BK_NEXT_READY:
            ctx->page = ctx->next;
            ctx->next = NULL;
            ctx->page_at = 0;
            ctx->next_state = VW_BK_NEXT_NONE;

            /* a part that starts inside this page */
            if (ctx->skip > 0) {
                ctx->page_at = ctx->skip < json_array_size(ctx->page)
                               ? ctx->skip : json_array_size(ctx->page);
                ctx->skip = 0;
            }

            /* the page after this one, while this one is sent */
            vw_bk_page_read(ctx, ctx->page_no + 1);

            if (ctx->next_state == VW_BK_NEXT_ERROR) {
                return NULL;
            }

            continue;

        default:
            return NULL;
        }
    }
}


static int
vw_bk_row_put(vw_bk_ctx_t *ctx, const char *p, size_t n)
{
    char    *b;
    size_t   size;

    if (ctx->row_len + n + 1 > ctx->row_size) {
        size = ctx->row_size ? ctx->row_size : 1024;

        while (size < ctx->row_len + n + 1) {
            size *= 2;
        }

        if (size > VW_BK_ROW_MAX) {
            return VW_ERROR;
        }

        b = realloc(ctx->row, size);
        if (b == NULL) {
            return VW_ERROR;
        }

        ctx->row = b;
        ctx->row_size = size;
    }

    memcpy(ctx->row + ctx->row_len, p, n);
    ctx->row_len += n;

    return VW_OK;
}


/* a value quoted as RFC 4180 says: always, inner quotes doubled */
static int
vw_bk_row_value(vw_bk_ctx_t *ctx, const char *s, size_t n)
{
    size_t       i;
    const char  *q;

    if (vw_bk_row_put(ctx, "\"", 1) != VW_OK) {
        return VW_ERROR;
    }

    for (i = 0; i < n; /* void */ ) {
        q = memchr(s + i, '"', n - i);

        if (q == NULL) {
            if (vw_bk_row_put(ctx, s + i, n - i) != VW_OK) {
                return VW_ERROR;
            }

            break;
        }

        if (vw_bk_row_put(ctx, s + i, q - (s + i) + 1) != VW_OK
            || vw_bk_row_put(ctx, "\"", 1) != VW_OK)
        {
            return VW_ERROR;
        }

        i = q - s + 1;
    }

    return vw_bk_row_put(ctx, "\"", 1);
}


/*
 * A record as a CSV row in ctx->row: VW_OK, or VW_DECLINED with why,
 * when the record cannot be sent (it is dead-lettered).
 */
static int
vw_bk_record_row(vw_bk_ctx_t *ctx, json_t *rec, char *why, size_t size)
{
    char         num[64];
    size_t       i;
    json_t      *v;
    const char  *k, *err;

    ctx->row_len = 0;
    ctx->row_at = 0;

    if (!json_is_object(rec)) {
        snprintf(why, size, "the record is not a JSON object");
        return VW_DECLINED;
    }

    err = json_string_value(json_object_get(rec, "__vantage_map_error"));
    if (err != NULL) {
        snprintf(why, size, "mapping: %s", err);
        return VW_DECLINED;
    }

    if (ctx->op != VW_BK_DELETE) {
        json_object_foreach(rec, k, v) {
            if (vw_bk_column(ctx, k) < 0) {
                snprintf(why, size, "field %.60s is not in the load's "
                         "header (the first page's fields)",
                         vw_bk_name_ok(k) ? k : "(an invalid name)");
                return VW_DECLINED;
            }
        }
    }

    for (i = 0; i < ctx->nheader; i++) {
        if (i > 0 && vw_bk_row_put(ctx, ",", 1) != VW_OK) {
            return VW_ERROR;
        }

        v = json_object_get(rec, ctx->header[i]);

        if (v == NULL) {
            continue;
        }

        switch (json_typeof(v)) {

        case JSON_STRING:
            if (json_string_length(v) > 0
                && vw_bk_row_value(ctx, json_string_value(v),
                                   json_string_length(v)) != VW_OK)
            {
                return VW_ERROR;
            }

            break;

        case JSON_INTEGER:
            snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
                     json_integer_value(v));
            if (vw_bk_row_put(ctx, num, strlen(num)) != VW_OK) {
                return VW_ERROR;
            }

            break;

        case JSON_REAL:
            snprintf(num, sizeof(num), "%.17g", json_real_value(v));
            if (vw_bk_row_put(ctx, num, strlen(num)) != VW_OK) {
                return VW_ERROR;
            }

            break;

        case JSON_TRUE:
        case JSON_FALSE:
            if (vw_bk_row_put(ctx, json_is_true(v) ? "true" : "false",
                              json_is_true(v) ? 4 : 5) != VW_OK)
            {
                return VW_ERROR;
            }

            break;

        case JSON_NULL:
            /* Salesforce's way of setting a field to null */
            if (vw_bk_row_put(ctx, "#N/A", 4) != VW_OK) {
                return VW_ERROR;
            }

            break;

        default:
            snprintf(why, size, "field %.60s holds an object or an array",
                     ctx->header[i]);
            ctx->row_len = 0;
            return VW_DECLINED;
        }
    }

    return vw_bk_row_put(ctx, "\n", 1);
}


/* the header row, once, before the first record */
static int
vw_bk_header_row(vw_bk_ctx_t *ctx)
{
    size_t  i;

    ctx->row_len = 0;
    ctx->row_at = 0;

    for (i = 0; i < ctx->nheader; i++) {
        if ((i > 0 && vw_bk_row_put(ctx, ",", 1) != VW_OK)
            || vw_bk_row_put(ctx, ctx->header[i], strlen(ctx->header[i]))
               != VW_OK)
        {
            return VW_ERROR;
        }
    }

    return vw_bk_row_put(ctx, "\n", 1);
}


/*
 * curl asks for the body: rows as long as there is room, a pause while
 * the next page is read from Redis, 0 at the end.  A load that cannot be
 * sent (Redis gone, a page that is not an array, more than the upload
 * limit) aborts the request; the job is left Open, never processed.
 */
static size_t
vw_bk_upload(vw_http_req_t *req, unsigned char *buf, size_t size)
{
    int           wait, rc;
    char          why[VW_ERRSTR_LEN];
    size_t        n, out;
    json_t       *rec, *orig;
    vw_bk_ctx_t  *ctx = req->data;

    out = 0;

    if (ctx->sent_rows == 0 && ctx->sent_bytes == 0 && ctx->row_len == 0) {
        if (vw_bk_header_row(ctx) != VW_OK) {
            goto nomem;
        }
    }

    while (out < size) {
        if (ctx->row_at < ctx->row_len) {
            n = ctx->row_len - ctx->row_at;
            n = n < size - out ? n : size - out;
            memcpy(buf + out, ctx->row + ctx->row_at, n);
            ctx->row_at += n;
            out += n;
            ctx->sent_bytes += n;
            continue;
        }

        if (ctx->part_end) {
            return out;
        }

        if (ctx->sent_rows > 0 && ctx->sent_bytes >= ctx->part_max) {
            /* the rest of the load goes to the next ingest job */
            ctx->part_end = 1;
            ctx->more = 1;
            ctx->to_page = ctx->page_no;
            ctx->to_at = ctx->from != NULL ? (ctx->page ? ctx->page_at : 0)
                                           : ctx->page_at;
            return out;
        }

        if (ctx->dead_pending >= VW_BK_DLQ_INFLIGHT) {
            /* records refused faster than Redis takes their dead jobs */
            if (out > 0) {
                return out;
            }

            ctx->upload_waiting = 1;
            vw_bk_waits(ctx);
            return CURL_READFUNC_PAUSE;
        }

        rec = vw_bk_next_record(ctx, &wait);

        if (rec == NULL) {
            if (wait) {
                if (out > 0) {
                    return out;
                }

                ctx->upload_waiting = 1;
                return CURL_READFUNC_PAUSE;
            }

            if (ctx->next_state == VW_BK_NEXT_ERROR) {
                ctx->upload_failed = 1;
                vw_bk_set(ctx, ctx->call->outcome == VW_CALL_DEAD
                          ? VW_CALL_DEAD : VW_CALL_RETRY, "%s",
                          ctx->load_error);
                return (size_t) -1;
            }

            return out;             /* the end of the load */
        }

        rc = vw_bk_record_row(ctx, rec, why, sizeof(why));

        if (rc == VW_ERROR) {
            goto nomem;
        }

        if (rc == VW_DECLINED) {
            ctx->rejected++;
            orig = json_object_get(rec, "__vantage_record");
            vw_bk_dead_add(ctx, "rejected", ctx->sent_rows + ctx->rejected,
                           orig ? orig : rec, why);

            if (orig != NULL && ctx->ndead > 0) {
                ctx->dead[ctx->ndead - 1].unmapped = 1;
            }

            continue;
        }

        ctx->sent_rows++;
    }

    return out;

nomem:

    ctx->upload_failed = 1;
    vw_bk_set(ctx, VW_CALL_RETRY, "out of memory while sending the load");
    return (size_t) -1;
}


/* -- dead jobs ----------------------------------------------------------- */

/*
 * A record Salesforce refused (or that could not be sent) becomes a job
 * of its own in {vq}:dead: the same type and tenant, the record as its
 * body, the error's codes and fields as its last_error, the bulk job as
 * its parent.  Its id is derived from the parent, the ingest job and the
 * row's place, so writing it again writes the same job.
 */
static void
vw_bk_dead_add(vw_bk_ctx_t *ctx, const char *kind, uint64_t ordinal,
    json_t *record, const char *error)
{
    char            buf[256];
    size_t          i, len;
    json_t         *o;
    vw_bk_dead_t   *d;
    unsigned char   md[SHA256_DIGEST_LENGTH];

    if (ctx->ndead == VW_BK_DLQ_BATCH) {
        vw_bk_dead_flush(ctx);
    }

    d = &ctx->dead[ctx->ndead];
    d->unmapped = 0;

    len = (size_t) snprintf(buf, sizeof(buf), "%s%c%s%c%s%c%" PRIu64,
                            ctx->job_id, 0, ctx->bulk_id, 0, kind, 0,
                            ordinal);
    SHA256((unsigned char *) buf, len < sizeof(buf) ? len : sizeof(buf), md);

    for (i = 0; i < 16; i++) {
        snprintf(d->id + 2 * i, 3, "%02x", md[i]);
    }

    o = json_pack("{s:[O]}", "records", record);
    d->body = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);

    len = strlen(error) + 8;
    d->error = malloc(len);

    if (d->body == NULL || d->error == NULL) {
        free(d->body);
        free(d->error);
        ctx->redis_failed = 1;
        return;
    }

    snprintf(d->error, len, "bulk: %s", error);
    ctx->ndead++;
    ctx->dead_total++;
}


/* the dead jobs kept so far, in one MULTI/EXEC */
static void
vw_bk_dead_flush(vw_bk_ctx_t *ctx)
{
    size_t              i;
    uint64_t            now;
    redisAsyncContext  *ac;

    if (ctx->ndead == 0) {
        return;
    }

    ac = vw_bk_redis(ctx);
    now = vw_services_now();

    if (ac != NULL) {
        (void) redisAsyncCommand(ac, NULL, NULL, "MULTI");

        for (i = 0; i < ctx->ndead; i++) {
            (void) redisAsyncCommand(ac, NULL, NULL,
                "HSET {vq}:job:%s type %s tenant %s state dead attempts 1 "
                "created_ms %" PRIu64 " finished_ms %" PRIu64 " body %s "
                "headers %s last_error %s last_status 0 parent %s "
                "parent_bulk_job %s mapped %s",
                ctx->dead[i].id, ctx->type, ctx->tenant, now, now,
                ctx->dead[i].body,
                "[[\"Content-Type\",\"application/json\"]]",
                ctx->dead[i].error, ctx->job_id,
                ctx->bulk_id[0] ? ctx->bulk_id : "-",
                ctx->dead[i].unmapped ? "0" : "1");
            (void) redisAsyncCommand(ac, NULL, NULL,
                                     "ZADD {vq}:dead %" PRIu64 " %s", now,
                                     ctx->dead[i].id);
        }

        if (redisAsyncCommand(ac, vw_bk_dead_done, ctx, "EXEC")
            == REDIS_OK)
        {
            ctx->redis_pending++;
            ctx->dead_pending++;

        } else {
            ctx->redis_failed = 1;
        }

    } else {
        ctx->redis_failed = 1;
    }

    for (i = 0; i < ctx->ndead; i++) {
        free(ctx->dead[i].body);
        free(ctx->dead[i].error);
    }

    ctx->ndead = 0;
}


static void
vw_bk_waits(vw_bk_ctx_t *ctx)
{
    if (!ctx->waited) {
        ctx->waited = 1;
        vw_log("debug", "bulk transfer waits for Redis to take the dead "
               "jobs", "job", ctx->job_id, "step", ctx->step == VW_BK_UPLOAD
               ? "upload" : "results", NULL);
    }
}


/* a transaction of dead jobs is written: a paused transfer may go on */
static void
vw_bk_dead_done(redisAsyncContext *ac, void *reply, void *privdata)
{
    vw_bk_ctx_t  *ctx = privdata;

    ctx->dead_pending--;

    if (ctx->call != NULL && ctx->dead_pending <= 1) {
        vw_bk_backlog(ctx);
    }

    vw_bk_redis_done(ac, reply, privdata);
}


/*
 * curl may call the transfer's callbacks from within curl_easy_pause():
 * the pause is lifted from a timer of its own, never from a Redis reply
 */
static void
vw_bk_resume(evutil_socket_t fd, short kind, void *arg)
{
    vw_bk_ctx_t  *ctx = arg;

    if (!ctx->http_pending || ctx->req.easy == NULL
        || (!ctx->recv_paused && !ctx->upload_waiting)
        || (ctx->upload_waiting && ctx->next_state == VW_BK_NEXT_PENDING))
    {
        return;
    }

    ctx->recv_paused = 0;
    ctx->upload_waiting = 0;
    curl_easy_pause(ctx->req.easy, CURLPAUSE_CONT);
}


static void
vw_bk_backlog(vw_bk_ctx_t *ctx)
{
    struct timeval  tv;

    if (!ctx->recv_paused && !ctx->upload_waiting) {
        return;
    }

    if (ctx->resume == NULL) {
        ctx->resume = evtimer_new(ctx->svc->base, vw_bk_resume, ctx);
        if (ctx->resume == NULL) {
            return;
        }
    }

    tv.tv_sec = 0;
    tv.tv_usec = 0;
    evtimer_add(ctx->resume, &tv);
}


/* -- the end ------------------------------------------------------------- */

static void
vw_bk_set(vw_bk_ctx_t *ctx, vw_call_outcome_e outcome, const char *fmt, ...)
{
    char        text[VW_ERRSTR_LEN];
    va_list     ap;
    vw_call_t  *call = ctx->call;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);

    call->outcome = outcome;
    snprintf(call->error, sizeof(call->error), "bulk: %.120s", text);
}


static void
vw_bk_redis_done(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply   *r = reply;
    vw_bk_ctx_t  *ctx = privdata;

    ctx->redis_pending--;

    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        ctx->redis_failed = 1;
    }

    if (ctx->call == NULL) {
        if (ctx->redis_pending == 0) {
            vw_bk_free(ctx);
        }

        return;
    }

    if (ctx->redis_pending == 0 && ctx->settling) {
        vw_bk_finish(ctx);
    }
}


/*
 * Ends the attempt with the outcome set in call: once the Redis replies
 * it waits for are back, the handler runs and the context goes.
 */
static void
vw_bk_finish(vw_bk_ctx_t *ctx)
{
    vw_call_t  *call = ctx->call;

    vw_bk_dead_flush(ctx);

    if (ctx->redis_pending > 0) {
        ctx->settling = 1;
        return;
    }

    ctx->settling = 0;

    if (ctx->redis_failed && call->outcome == VW_CALL_SUCCESS) {
        call->outcome = VW_CALL_RETRY;
        snprintf(call->error, sizeof(call->error),
                 "bulk: Redis failed while the results were written");
    }

    if (call->outcome != VW_CALL_SUCCESS) {
        free(call->result);
        call->result = NULL;
    }

    call->ms = vw_http_monotonic_ms() - ctx->start;
    call->ctx = NULL;
    ctx->call = NULL;

    if (ctx->timer != NULL) {
        event_free(ctx->timer);
        ctx->timer = NULL;
    }

    if (ctx->resume != NULL) {
        event_free(ctx->resume);
        ctx->resume = NULL;
    }

    vw_bk_free(ctx);
    call->handler(call);
}


static void
vw_bk_cancel(vw_call_t *call)
{
    vw_bk_ctx_t  *ctx = call->ctx;

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

    if (ctx->timer != NULL) {
        event_free(ctx->timer);
        ctx->timer = NULL;
    }

    if (ctx->resume != NULL) {
        event_free(ctx->resume);
        ctx->resume = NULL;
    }

    vw_bk_free(ctx);
}


/* frees ctx, or leaves it to the last Redis reply still out */
static void
vw_bk_free(vw_bk_ctx_t *ctx)
{
    size_t  i;

    if (ctx->token_pending || ctx->http_pending) {
        return;
    }

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

    if (ctx->timer != NULL) {
        event_free(ctx->timer);
    }

    if (ctx->resume != NULL) {
        event_free(ctx->resume);
    }

    for (i = 0; i < ctx->ndead; i++) {
        free(ctx->dead[i].body);
        free(ctx->dead[i].error);
    }

    for (i = 0; i < ctx->nheader; i++) {
        free(ctx->header[i]);
    }

    for (i = 0; ctx->fields != NULL && i < ctx->fields_size; i++) {
        free(ctx->fields[i]);
    }

    vw_bk_names_free(ctx);
    free(ctx->fields);
    free(ctx->lens);
    free(ctx->field);
    free(ctx->header);
    free(ctx->row);
    free(ctx->locator);
    json_decref(ctx->page);
    json_decref(ctx->next);
    json_decref(ctx->records);
    free(ctx->from);
    free(ctx->path);
    free(ctx->url);
    free(ctx->body);
    free(ctx->ca_file);
    free(ctx->proxy);
    free(ctx->job_id);
    free(ctx->type);
    free(ctx->tenant);
    free(ctx->conn_name);
    free(ctx);
}
