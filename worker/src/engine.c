/* engine.c -- the job engine: consume, attempt, settle, promote, reclaim */

/*
 * The design is docs/WORKER.md; this file follows it step by step.  Each
 * step is one command or one MULTI/EXEC, and where two workers race the
 * run:<n> marker in the job hash makes the loser's entry a duplicate that
 * is acknowledged and dropped.
 *
 * Two Redis connections of its own: "rd" only blocks in XREADGROUP, so
 * that a blocked read never delays a transaction; "wr" carries the rest.
 *
 * A job the engine holds is a vw_run_t: from the moment its stream entry
 * is read until the transaction that settles it has come back.  Runs are
 * what the heartbeat keeps claimed, what `concurrency` counts, and what a
 * drain releases.  Everything a run needs from the configuration is copied
 * into it when it is taken, since a reload may free the configuration
 * between two callbacks.
 */

#define _GNU_SOURCE             /* memmem() */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>
#include <jansson.h>

#include "vc_backoff.h"
#include "vc_map.h"
#include "vc_mask.h"
#include "vw_connector.h"
#include "vw_engine.h"
#include "vw_http.h"
#include "vw_metrics.h"
#include "vw_services.h"
#include "vw_status.h"
#include "vw_target.h"


#define VW_ENGINE_STREAM        "{vq}:jobs"
#define VW_ENGINE_GROUP         "vantage"
#define VW_ENGINE_DELAYED       "{vq}:delayed"
#define VW_ENGINE_DONE          "{vq}:done"
#define VW_ENGINE_DEAD          "{vq}:dead"
#define VW_ENGINE_INFLIGHT      "{vq}:inflight"

#define VW_ENGINE_RECONNECT_MS  1000   /* the first wait, then doubled */
#define VW_ENGINE_RECONNECT_MAX 30000  /* ... up to this */
#define VW_ENGINE_BLOCK_MS      1000
#define VW_ENGINE_PROMOTE_MS    100    /* the longest promotion sleep */
#define VW_ENGINE_PROMOTE_MAX   100
#define VW_ENGINE_RETAIN_MS     60000
#define VW_ENGINE_RETAIN_MAX    1000
#define VW_ENGINE_DEFER_MS      1000   /* a busy target: look again then */
#define VW_ENGINE_CLAIM_CHUNK   100
#define VW_ENGINE_IDLE_CONSUMER 10     /* x visibility_timeout: forgotten */

/* a run's correlation id for its log lines: "" when the job has none */
#define VW_ENGINE_CID(run)                                                    \
    ((run)->correlation_id != NULL ? (run)->correlation_id : "")


typedef enum {
    VW_RUN_TAKING = 0,       /* the take transaction is out */
    VW_RUN_ORDER,            /* asking whether it heads its ordering list */
    VW_RUN_WAITING,          /* its target is busy: waiting in memory */
    VW_RUN_RUNNING,          /* the HTTP request is out */
    VW_RUN_SETTLING          /* the outcome transaction is out */
} vw_run_state_e;


typedef struct vw_run_s  vw_run_t;
typedef struct vw_econn_s  vw_econn_t;


struct vw_econn_s {
    vw_engine_t                *engine;
    redisAsyncContext          *ac;
    struct event               *retry;
    unsigned                    failures;     /* connections lost in a row */
    unsigned                    connected:1;  /* usable: AUTH, if any, ok */
    unsigned                    reader:1;
    unsigned                    reading:1;    /* an XREADGROUP is out */
};


struct vw_engine_s {
    struct event_base          *base;
    vw_engine_conf_pt           conf;
    char                       *host;
    int                         port;
    char                       *unix_path;
    char                       *password;
    char                       *consumer;

    vw_econn_t                  rd;
    vw_econn_t                  wr;
    unsigned                    group:1;      /* XGROUP CREATE came back */
    unsigned                    draining:1;
    unsigned                    closing:1;

    vw_http_t                  *http;
    vw_target_t                *targets;
    vw_services_t               svc;          /* lent to the connectors */

    vw_run_t                   *runs;
    unsigned                    held;

    struct event               *promote;
    struct event               *heartbeat;
    struct event               *retain;
    struct event               *deadline;
    unsigned                    promoting:1;  /* a promotion round is out */
    uint64_t                    promote_at;   /* ms: the timer's time */
    uint64_t                    promote_hint; /* ms: a due time the engine
                                                 added while promoting;
                                                 0: none */
    unsigned                    forced:1;     /* the drain gave up */

    vw_engine_drained_pt        drained;
    void                       *drained_data;
};


struct vw_run_s {
    vw_engine_t                *engine;
    vw_run_t                   *next;
    vw_run_t                  **prev;
    vw_run_state_e              state;

    char                        entry[48];
    char                        id[33];
    char                        key[48];       /* {vq}:job:<id> */
    unsigned                    n;

    /* the job, from its hash */
    char                       *type;
    char                       *correlation_id;
    char                       *ordering;      /* the list's hash, or NULL */
    char                       *content_type;
    unsigned char              *body;
    size_t                      body_len;
    uint64_t                    created_ms;
    unsigned                    epoch_n;       /* attempts before a replay */
    uint64_t                    epoch_ms;      /* max_age counts from it */
    char                        replays[24];
    unsigned                    new_epoch:1;
    unsigned                    in_order:1;    /* heads its ordering list */
    unsigned                    started:1;     /* state running written */
    unsigned                    unknown:1;     /* no such job type */
    unsigned                    probe:1;       /* the breaker's probe */

    /* the job type's configuration, copied when it is taken */
    char                       *url;
    char                       *method;
    struct curl_slist          *headers;
    char                      **secrets;       /* secret_header values,
                                                  NULL-ended */
    uint64_t                    timeout_ms;
    uint64_t                    connect_timeout_ms;
    char                       *ca_file;
    char                       *proxy;
    unsigned                    max_attempts;
    uint64_t                    max_age_ms;
    uint64_t                    backoff_base_ms;
    uint64_t                    backoff_cap_ms;
    vw_on_dead_e                on_dead;
    vw_target_t                *target;
    vw_target_limits_t          limits;

    /* a vendor connector's job (docs/CONNECTORS.md); NULL: http */
    const vw_connector_t       *connector;
    vw_conf_connection_t       *conn;          /* a copy */
    char                       *operation;
    char                       *object;
    char                       *id_field;
    char                       *tenant;
    char                       *source;        /* X-Vantage-Source */
    char                       *map_error;     /* the mapping refused the
                                                  body: dead */
    vw_map_ref_t               *map;           /* the job's mapping, held */
    char                       *then;          /* the job type its output
                                                  becomes */
    char                      **read_fields;   /* then's mapping's source
                                                  paths, NULL-ended */
    unsigned                    mapped:1;      /* the body was mapped
                                                  already (a batch's rest) */
    unsigned                    no_connector:1;

    uint64_t                    start_ms;
    vw_http_req_t               req;
    vw_call_t                   call;
};


static int vw_engine_parse_addr(vw_engine_t *e, const char *addr);
static void vw_engine_connect(vw_econn_t *c);
static void vw_engine_connected(const redisAsyncContext *ac, int status);
static void vw_engine_disconnected(const redisAsyncContext *ac, int status);
static void vw_engine_reconnect(evutil_socket_t fd, short what, void *arg);
static void vw_engine_retry_later(vw_econn_t *c);
static void vw_engine_authed(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_engine_ready(vw_econn_t *c);
static void vw_engine_group_created(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_engine_read(vw_engine_t *e);
static void vw_engine_read_done(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_engine_entry(vw_engine_t *e, redisReply *entry);
static void vw_engine_take(vw_engine_t *e, const char *entry,
    const char *id, unsigned n);
static void vw_engine_taken(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_engine_order_read(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_engine_admit(vw_run_t *run);
static void vw_engine_start(vw_run_t *run);
static void vw_engine_http_done(vw_http_req_t *req);
static void vw_engine_call_done(vw_call_t *call);
static void vw_engine_call_settle(vw_run_t *run);
static int vw_engine_copy_connector(vw_run_t *run, const vw_conf_job_t *jc);
static int vw_engine_read_fields(vw_run_t *run, const char *then);
static void vw_engine_then(vw_run_t *run, redisAsyncContext *ac,
    uint64_t now);
static void vw_engine_map_body(vw_run_t *run, const vc_map_t *map);
static redisAsyncContext *vw_engine_svc_redis(void *data);
static void vw_engine_settle(vw_run_t *run, const char *outcome,
    long status, const char *error, const unsigned char *resp,
    size_t resp_len, uint64_t ms, uint64_t retry_after_ms);
static void vw_engine_count(vw_run_t *run, const char *outcome, long status,
    uint64_t ms, const char *error);
static void vw_engine_settled(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_engine_put_back(vw_run_t *run, uint64_t due,
    const char *why);
static void vw_engine_put_back_done(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_engine_drop(vw_run_t *run);
static void vw_engine_wake(vw_engine_t *e, const char *ordering);
static void vw_engine_wake_head(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_engine_wake_job(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_engine_run_free(vw_run_t *run);
static void vw_engine_next_waiting(vw_engine_t *e, vw_target_t *t);
static void vw_engine_promote(evutil_socket_t fd, short what, void *arg);
static void vw_engine_promote_read(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_engine_promote_next(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_engine_promote_at(vw_engine_t *e, uint64_t due);
static void vw_engine_promote_soon(vw_engine_t *e, uint64_t due);
static void vw_engine_heartbeat(evutil_socket_t fd, short what, void *arg);
static void vw_engine_reclaimed(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_engine_consumers(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_engine_consumer_removed(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_engine_retain(evutil_socket_t fd, short what, void *arg);
static void vw_engine_retain_read(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_engine_deadline(evutil_socket_t fd, short what, void *arg);
static void vw_engine_forced(evutil_socket_t fd, short what, void *arg);
static void vw_engine_check_drained(vw_engine_t *e);
static void vw_engine_timer(struct event *ev, uint64_t ms);


static uint64_t
vw_engine_now(void)
{
    struct timeval  tv;

    gettimeofday(&tv, NULL);

    return (uint64_t) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}


static uint64_t
vw_engine_random(void)
{
    uint64_t  r;

    if (getrandom(&r, sizeof(r), 0) != (ssize_t) sizeof(r)) {
        r = (uint64_t) random() << 32 ^ (uint64_t) random();
    }

    return r;
}


static void
vw_engine_timer(struct event *ev, uint64_t ms)
{
    struct timeval  tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;

    evtimer_add(ev, &tv);
}


/* the configuration values the engine reads outside a run, with defaults */

static unsigned
vw_engine_concurrency(vw_engine_t *e)
{
    const vw_conf_t  *conf = e->conf();

    return (conf && conf->concurrency) ? conf->concurrency : 64;
}


static uint64_t
vw_engine_visibility(vw_engine_t *e)
{
    const vw_conf_t  *conf = e->conf();

    return (conf && conf->visibility_timeout_ms) ? conf->visibility_timeout_ms
                                                 : 60000;
}


vw_engine_t *
vw_engine_create(struct event_base *base, const char *addr,
    const char *password, const char *consumer, vw_engine_conf_pt conf)
{
    vw_engine_t  *e;

    e = calloc(1, sizeof(vw_engine_t));
    if (e == NULL) {
        return NULL;
    }

    e->base = base;
    e->conf = conf;
    e->rd.engine = e;
    e->rd.reader = 1;
    e->wr.engine = e;

    if (vw_engine_parse_addr(e, addr) != VW_OK) {
        goto failed;
    }

    e->consumer = strdup(consumer);
    e->password = password ? strdup(password) : NULL;

    e->rd.retry = evtimer_new(base, vw_engine_reconnect, &e->rd);
    e->wr.retry = evtimer_new(base, vw_engine_reconnect, &e->wr);
    e->promote = evtimer_new(base, vw_engine_promote, e);
    e->heartbeat = evtimer_new(base, vw_engine_heartbeat, e);
    e->retain = evtimer_new(base, vw_engine_retain, e);
    e->deadline = evtimer_new(base, vw_engine_deadline, e);
    e->http = vw_http_create(base);

    e->svc.base = base;
    e->svc.http = e->http;
    e->svc.consumer = e->consumer;
    e->svc.redis = vw_engine_svc_redis;
    e->svc.redis_data = e;
    e->svc.conf = conf;

    if (e->http != NULL && vw_connectors_init(&e->svc) != VW_OK) {
        goto failed;
    }

    if (e->consumer == NULL || (password && e->password == NULL)
        || e->rd.retry == NULL || e->wr.retry == NULL || e->promote == NULL
        || e->heartbeat == NULL || e->retain == NULL || e->deadline == NULL
        || e->http == NULL)
    {
        goto failed;
    }

    vw_engine_connect(&e->wr);
    vw_engine_connect(&e->rd);

    vw_engine_promote_at(e, vw_engine_now() + VW_ENGINE_PROMOTE_MS);
    vw_engine_timer(e->heartbeat, vw_engine_visibility(e) / 3);
    vw_engine_timer(e->retain, 0);

    vw_log("info", "engine started", "consumer", e->consumer, NULL);

    return e;

failed:

    vw_log("error", "cannot start the job engine", NULL);
    vw_engine_free(e);
    return NULL;
}


const vw_services_t *
vw_engine_services(vw_engine_t *e)
{
    return &e->svc;
}


const vw_target_t *
vw_engine_targets(vw_engine_t *e)
{
    return e->targets;
}


void
vw_engine_free(vw_engine_t *e)
{
    vw_run_t  *run;

    if (e == NULL) {
        return;
    }

    e->closing = 1;

    /*
     * A connector's attempt is cancelled first: its Redis callbacks, which
     * hiredis answers with NULL below, then find nothing to report to
     */
    for (run = e->runs; run != NULL; run = run->next) {
        if (run->state == VW_RUN_RUNNING && run->connector != NULL) {
            run->connector->cancel(&run->call);
            run->state = VW_RUN_SETTLING;
        }
    }

    /*
     * hiredis answers the pending callbacks with NULL first; they see
     * closing and touch nothing but their run, which is still there
     */
    if (e->rd.ac != NULL) {
        redisAsyncFree(e->rd.ac);
    }

    if (e->wr.ac != NULL) {
        redisAsyncFree(e->wr.ac);
    }

    /* what is still held comes back through the visibility timeout */
    while (e->runs != NULL) {
        run = e->runs;

        if (run->state == VW_RUN_RUNNING && run->connector == NULL) {
            vw_http_cancel(&run->req);
        }

        vw_engine_run_free(run);
    }

#define vw_free_event(ev)  if ((ev) != NULL) { event_free(ev); }

    vw_free_event(e->rd.retry);
    vw_free_event(e->wr.retry);
    vw_free_event(e->promote);
    vw_free_event(e->heartbeat);
    vw_free_event(e->retain);
    vw_free_event(e->deadline);

#undef vw_free_event

    vw_connectors_free(&e->svc);

    vw_http_free(e->http);
    vw_target_free_all(&e->targets);

    free(e->host);
    free(e->unix_path);
    free(e->password);
    free(e->consumer);
    free(e);
}


static int
vw_engine_parse_addr(vw_engine_t *e, const char *addr)
{
    char  *colon;

    e->port = 6379;

    if (strncmp(addr, "unix:", 5) == 0) {
        e->unix_path = strdup(addr + 5);
        return e->unix_path ? VW_OK : VW_ERROR;
    }

    e->host = strdup(addr);
    if (e->host == NULL) {
        return VW_ERROR;
    }

    colon = strrchr(e->host, ':');

    if (colon != NULL) {
        *colon = '\0';
        e->port = atoi(colon + 1);
    }

    if (e->port <= 0 || e->port > 65535 || e->host[0] == '\0') {
        vw_log("error", "invalid Redis address", "redis", addr, NULL);
        return VW_ERROR;
    }

    return VW_OK;
}


/* -- connections ---------------------------------------------------------- */

/*
 * A connection is usable ("connected") only once Redis has accepted the
 * password, when there is one: until then the engine sends nothing else on
 * it, so a wrong password cannot pass for a working engine.  A refused
 * password or a lost connection is tried again after a wait that doubles
 * from 1 s to 30 s, with jitter, so that a fleet of workers with a stale
 * secret does not hammer Redis in step.
 */

static void
vw_engine_connect(vw_econn_t *c)
{
    vw_engine_t        *e = c->engine;
    redisAsyncContext  *ac;

    ac = e->unix_path ? redisAsyncConnectUnix(e->unix_path)
                      : redisAsyncConnect(e->host, e->port);

    if (ac == NULL || ac->err) {
        if (ac != NULL) {
            redisAsyncFree(ac);
        }

        vw_engine_retry_later(c);
        return;
    }

    ac->data = c;

    if (redisLibeventAttach(ac, e->base) != REDIS_OK) {
        redisAsyncFree(ac);
        vw_engine_retry_later(c);
        return;
    }

    redisAsyncSetConnectCallback(ac, vw_engine_connected);
    redisAsyncSetDisconnectCallback(ac, vw_engine_disconnected);

    c->ac = ac;

    /* queued now, sent first once connected; the password is not logged */
    if (e->password != NULL) {
        (void) redisAsyncCommand(ac, vw_engine_authed, c, "AUTH %s",
                                 e->password);
    }
}


static void
vw_engine_connected(const redisAsyncContext *ac, int status)
{
    vw_econn_t  *c = ac->data;

    if (status != REDIS_OK) {
        /* hiredis frees the context after this */
        if (c->failures == 0) {
            vw_log("error", "engine cannot connect to Redis", "reason",
                   ac->errstr[0] ? ac->errstr : "error", NULL);
        }

        c->ac = NULL;
        c->connected = 0;
        vw_engine_retry_later(c);
        return;
    }

    if (c->engine->password == NULL) {
        vw_engine_ready(c);
    }
}


/* AUTH's reply: Redis's error names no password, so it is logged as is */

static void
vw_engine_authed(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply  *r = reply;
    vw_econn_t  *c = privdata;

    if (r == NULL || c->engine->closing) {
        return;
    }

    if (r->type == REDIS_REPLY_ERROR) {
        vw_log("error", "Redis refused the engine's password: taking no job",
               "connection", c->reader ? "reader" : "writer",
               "reason", r->str, NULL);

        /* the disconnect callback schedules the next try */
        redisAsyncDisconnect(ac);
        return;
    }

    vw_engine_ready(c);
}


/* the connection can carry commands: the writer makes the group, the
   reader reads */

static void
vw_engine_ready(vw_econn_t *c)
{
    vw_engine_t  *e = c->engine;

    if (c->failures) {
        vw_log("info", "engine reconnected to Redis", "connection",
               c->reader ? "reader" : "writer", NULL);
    }

    c->connected = 1;
    c->failures = 0;

    if (c->reader) {
        vw_engine_read(e);
        return;
    }

    (void) redisAsyncCommand(c->ac, vw_engine_group_created, e,
                             "XGROUP CREATE " VW_ENGINE_STREAM " "
                             VW_ENGINE_GROUP " 0 MKSTREAM");
}


static void
vw_engine_disconnected(const redisAsyncContext *ac, int status)
{
    vw_econn_t   *c = ac->data;
    vw_engine_t  *e = c->engine;

    c->ac = NULL;
    c->reading = 0;

    if (e->closing) {
        c->connected = 0;
        return;
    }

    if (c->connected) {
        vw_log("error", "engine lost its Redis connection", "reason",
               ac->errstr[0] ? ac->errstr : "closed", NULL);
    }

    c->connected = 0;

    if (!c->reader) {
        e->group = 0;
        e->promoting = 0;
    }

    vw_engine_retry_later(c);
}


static void
vw_engine_retry_later(vw_econn_t *c)
{
    uint64_t  ms;

    ms = vc_backoff_ceiling(VW_ENGINE_RECONNECT_MS, VW_ENGINE_RECONNECT_MAX,
                            c->failures + 1);
    ms = ms / 2 + vw_engine_random() % (ms / 2 + 1);

    if (c->failures < 32) {
        c->failures++;
    }

    vw_engine_timer(c->retry, ms);
}


static void
vw_engine_reconnect(evutil_socket_t fd, short what, void *arg)
{
    vw_econn_t  *c = arg;

    if (c->ac == NULL && !c->engine->closing) {
        vw_engine_connect(c);
    }
}


static redisAsyncContext *
vw_engine_wr(vw_engine_t *e)
{
    return (e->wr.connected && !e->closing) ? e->wr.ac : NULL;
}


static redisAsyncContext *
vw_engine_svc_redis(void *data)
{
    return vw_engine_wr(data);
}


static void
vw_engine_group_created(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply   *r = reply;
    vw_engine_t  *e = privdata;

    if (r == NULL || e->closing) {
        return;
    }

    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0)
    {
        vw_log("error", "cannot create the consumer group", "reason",
               r->str, NULL);
        return;
    }

    e->group = 1;
    vw_engine_read(e);
}


/* -- reading the stream --------------------------------------------------- */

/* Reads new entries when there is room under `concurrency`. */

static void
vw_engine_read(vw_engine_t *e)
{
    unsigned  room, concurrency;

    if (e->closing || e->draining || !e->rd.connected || e->rd.reading
        || !e->group)
    {
        return;
    }

    concurrency = vw_engine_concurrency(e);
    room = e->held < concurrency ? concurrency - e->held : 0;

    if (room == 0) {
        return;
    }

    if (redisAsyncCommand(e->rd.ac, vw_engine_read_done, e,
                          "XREADGROUP GROUP " VW_ENGINE_GROUP " %s COUNT %u "
                          "BLOCK %d STREAMS " VW_ENGINE_STREAM " >",
                          e->consumer, room, VW_ENGINE_BLOCK_MS)
        == REDIS_OK)
    {
        e->rd.reading = 1;
    }
}


static void
vw_engine_read_done(redisAsyncContext *ac, void *reply, void *privdata)
{
    size_t        i;
    redisReply   *r = reply, *entries;
    vw_engine_t  *e = privdata;

    if (e->closing) {
        return;
    }

    e->rd.reading = 0;

    if (r == NULL) {
        /* the reader's connection is gone; a drain waits for it no more */
        vw_engine_check_drained(e);
        return;
    }

    if (r->type == REDIS_REPLY_ERROR) {
        /* NOGROUP after Redis lost the stream: create it again */
        vw_log("error", "XREADGROUP failed", "reason", r->str, NULL);
        e->group = 0;

        if (vw_engine_wr(e) != NULL) {
            (void) redisAsyncCommand(e->wr.ac, vw_engine_group_created, e,
                                     "XGROUP CREATE " VW_ENGINE_STREAM " "
                                     VW_ENGINE_GROUP " 0 MKSTREAM");
        }

        return;
    }

    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1
        && r->element[0]->type == REDIS_REPLY_ARRAY
        && r->element[0]->elements == 2)
    {
        entries = r->element[0]->element[1];

        for (i = 0; entries->type == REDIS_REPLY_ARRAY
                    && i < entries->elements; i++)
        {
            vw_engine_entry(e, entries->element[i]);
        }
    }

    vw_engine_read(e);

    /* an idle drain ends when the blocked read comes back */
    vw_engine_check_drained(e);
}


/* one stream entry, [id, [field, value, ...]], read or reclaimed */

static void
vw_engine_entry(vw_engine_t *e, redisReply *entry)
{
    size_t       i;
    unsigned     n;
    vw_run_t    *run;
    redisReply  *f;
    const char  *id;

    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2
        || entry->element[0]->type != REDIS_REPLY_STRING
        || entry->element[0]->len >= sizeof(run->entry))
    {
        return;
    }

    for (run = e->runs; run != NULL; run = run->next) {
        if (strcmp(run->entry, entry->element[0]->str) == 0) {
            /* reclaimed from ourselves: already held */
            return;
        }
    }

    f = entry->element[1];
    id = NULL;
    n = 0;

    for (i = 0; f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2) {
        if (f->element[i]->type != REDIS_REPLY_STRING
            || f->element[i + 1]->type != REDIS_REPLY_STRING)
        {
            continue;
        }

        if (strcmp(f->element[i]->str, "job") == 0
            && f->element[i + 1]->len == 32)
        {
            id = f->element[i + 1]->str;

        } else if (strcmp(f->element[i]->str, "n") == 0) {
            n = (unsigned) strtoul(f->element[i + 1]->str, NULL, 10);
        }
    }

    if (id == NULL || n == 0) {
        /* not a job entry: nobody can run it */
        if (vw_engine_wr(e) != NULL) {
            (void) redisAsyncCommand(e->wr.ac, NULL, NULL,
                                     "XACK " VW_ENGINE_STREAM " "
                                     VW_ENGINE_GROUP " %s",
                                     entry->element[0]->str);
        }

        return;
    }

    vw_engine_take(e, entry->element[0]->str, id, n);
}


/* -- taking an attempt ---------------------------------------------------- */

static void
vw_engine_take(vw_engine_t *e, const char *entry, const char *id, unsigned n)
{
    char                run_field[32];
    vw_run_t           *run;
    redisAsyncContext  *ac;

    ac = vw_engine_wr(e);
    if (ac == NULL) {
        /* still pending under our name: reclaimed after the timeout */
        return;
    }

    run = calloc(1, sizeof(vw_run_t));
    if (run == NULL) {
        return;
    }

    run->engine = e;
    run->n = n;
    run->state = VW_RUN_TAKING;
    snprintf(run->entry, sizeof(run->entry), "%s", entry);
    snprintf(run->id, sizeof(run->id), "%s", id);
    snprintf(run->key, sizeof(run->key), "{vq}:job:%s", id);
    snprintf(run_field, sizeof(run_field), "run:%u", n);

    run->next = e->runs;
    run->prev = &e->runs;

    if (e->runs != NULL) {
        e->runs->prev = &run->next;
    }

    e->runs = run;
    e->held++;

    (void) redisAsyncCommand(ac, NULL, NULL, "MULTI");
    (void) redisAsyncCommand(ac, NULL, NULL, "HSETNX %s %s %s", run->key,
                             run_field, entry);
    (void) redisAsyncCommand(ac, NULL, NULL, "HGET %s %s", run->key,
                             run_field);
    (void) redisAsyncCommand(ac, NULL, NULL, "HGETALL %s", run->key);
    (void) redisAsyncCommand(ac, vw_engine_taken, run, "EXEC");
}


static char *
vw_engine_dup(const redisReply *v)
{
    char  *s;

    s = malloc(v->len + 1);
    if (s != NULL) {
        memcpy(s, v->str, v->len);
        s[v->len] = '\0';
    }

    return s;
}


/* a header the job carried (the first of that name), from its headers JSON */

static char *
vw_engine_header(const char *headers_json, size_t len, const char *want)
{
    size_t       i;
    json_t      *a, *pair, *name, *value;
    char        *ct;

    a = json_loadb(headers_json, len, 0, NULL);
    if (a == NULL) {
        return NULL;
    }

    ct = NULL;

    json_array_foreach(a, i, pair) {
        name = json_array_get(pair, 0);
        value = json_array_get(pair, 1);

        if (json_is_string(name) && json_is_string(value)
            && strcasecmp(json_string_value(name), want) == 0
            && strpbrk(json_string_value(value), "\r\n") == NULL)
        {
            ct = strdup(json_string_value(value));
            break;
        }
    }

    json_decref(a);

    return ct;
}


/* copies what the attempt needs from the job type's configuration */

static int
vw_engine_copy_conf(vw_run_t *run, const vw_conf_job_t *jc)
{
    size_t                    n;
    char                      line[1024];
    const vw_conf_header_t   *h;
    const vw_conf_target_t   *tc;
    struct curl_slist        *l;

    run->url = strdup(jc->url ? jc->url : "");
    run->method = strdup(jc->method ? jc->method : "POST");

    if (run->url == NULL || run->method == NULL) {
        return VW_ERROR;
    }

    if (strcmp(jc->connector, "http") != 0
        && vw_engine_copy_connector(run, jc) != VW_OK)
    {
        return VW_ERROR;
    }

    run->timeout_ms = jc->timeout_ms ? jc->timeout_ms : 10000;
    run->max_attempts = jc->max_attempts ? jc->max_attempts : 8;
    run->max_age_ms = jc->max_age_ms ? jc->max_age_ms : 86400000;
    run->backoff_base_ms = jc->backoff_base_ms;
    run->backoff_cap_ms = jc->backoff_cap_ms ? jc->backoff_cap_ms : 300000;
    run->on_dead = jc->on_dead;

    n = 0;

    for (h = jc->headers; h != NULL; h = h->next) {
        n += h->secret;
    }

    run->secrets = calloc(n + 1, sizeof(char *));
    if (run->secrets == NULL) {
        return VW_ERROR;
    }

    n = 0;

    for (h = jc->headers; h != NULL; h = h->next) {
        if (h->secret) {
            run->secrets[n] = strdup(h->value);
            if (run->secrets[n++] == NULL) {
                return VW_ERROR;
            }
        }

        snprintf(line, sizeof(line), "%s: %s", h->name, h->value);

        l = curl_slist_append(run->headers, line);
        if (l == NULL) {
            return VW_ERROR;
        }

        run->headers = l;
    }

    tc = jc->target;

    if (tc != NULL) {
        /* copied: a reload may free the configuration mid-request */
        run->connect_timeout_ms = tc->connect_timeout_ms;
        run->ca_file = tc->ca_file ? strdup(tc->ca_file) : NULL;
        run->proxy = tc->proxy ? strdup(tc->proxy) : NULL;

        if ((tc->ca_file && run->ca_file == NULL)
            || (tc->proxy && run->proxy == NULL))
        {
            return VW_ERROR;
        }
    }

    run->target = vw_target_get(&run->engine->targets,
                                tc ? tc->name : jc->type);
    if (run->target == NULL) {
        return VW_ERROR;
    }

    /* a connector labels the vendor's quotas with it; kept by the engine */
    run->call.target = run->target->name;

    if (tc != NULL) {
        run->limits.max_concurrency = tc->max_concurrency;
        run->limits.breaker_failures = tc->breaker_failures;
        run->limits.breaker_error_rate = tc->breaker_error_rate;
        run->limits.breaker_window_ms = tc->breaker_window_ms;
        run->limits.breaker_min_calls = tc->breaker_min_calls;
        run->limits.breaker_cooldown_ms = tc->breaker_cooldown_ms;

    } else {
        run->limits.max_concurrency = 8;
        run->limits.breaker_failures = 5;
        run->limits.breaker_error_rate = 50;
        run->limits.breaker_window_ms = 30000;
        run->limits.breaker_min_calls = 20;
        run->limits.breaker_cooldown_ms = 30000;
    }

    return VW_OK;
}


static void
vw_engine_taken(redisAsyncContext *ac, void *reply, void *privdata)
{
    size_t                i;
    redisReply           *r = reply, *all, *k, *v;
    vw_run_t             *run = privdata;
    vw_engine_t          *e = run->engine;
    const char           *state, *tenant;
    const vw_conf_t      *conf;
    const vw_conf_job_t  *jc;
    char                  epoch_replays[24];
    uint64_t              epoch_ms;
    unsigned              epoch_n;

    if (e->closing) {
        return;
    }

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3
        || r->element[2]->type != REDIS_REPLY_ARRAY)
    {
        /* left pending: the visibility timeout brings it back */
        vw_engine_run_free(run);
        vw_engine_read(e);
        return;
    }

    all = r->element[2];
    state = NULL;
    tenant = NULL;
    epoch_replays[0] = '\0';
    epoch_ms = 0;
    epoch_n = 0;
    snprintf(run->replays, sizeof(run->replays), "0");

    for (i = 0; i + 1 < all->elements; i += 2) {
        k = all->element[i];
        v = all->element[i + 1];

        if (strcmp(k->str, "type") == 0) {
            run->type = vw_engine_dup(v);

        } else if (strcmp(k->str, "tenant") == 0) {
            tenant = v->str;

        } else if (strcmp(k->str, "state") == 0) {
            state = v->str;

        } else if (strcmp(k->str, "correlation_id") == 0) {
            run->correlation_id = vw_engine_dup(v);

        } else if (strcmp(k->str, "ordering_key") == 0 && v->len) {
            run->ordering = vw_engine_dup(v);

        } else if (strcmp(k->str, "body") == 0) {
            run->body = (unsigned char *) vw_engine_dup(v);
            run->body_len = v->len;

        } else if (strcmp(k->str, "headers") == 0) {
            run->content_type = vw_engine_header(v->str, v->len,
                                                 "content-type");
            run->source = vw_engine_header(v->str, v->len,
                                           "x-vantage-source");

        } else if (strcmp(k->str, "mapped") == 0) {
            run->mapped = (strcmp(v->str, "1") == 0);

        } else if (strcmp(k->str, "created_ms") == 0) {
            run->created_ms = strtoull(v->str, NULL, 10);

        } else if (strcmp(k->str, "replays") == 0) {
            snprintf(run->replays, sizeof(run->replays), "%s", v->str);

        } else if (strcmp(k->str, "epoch_replays") == 0) {
            snprintf(epoch_replays, sizeof(epoch_replays), "%s", v->str);

        } else if (strcmp(k->str, "epoch_ms") == 0) {
            epoch_ms = strtoull(v->str, NULL, 10);

        } else if (strcmp(k->str, "epoch_n") == 0) {
            epoch_n = (unsigned) strtoul(v->str, NULL, 10);
        }
    }

    if (tenant != NULL) {
        run->tenant = strdup(tenant);
    }

    if (run->type == NULL || tenant == NULL) {
        /*
         * no such job: retention took it after it finished (a late
         * duplicate entry), or it was deleted by hand.  Nothing can run
         * it; undo HSETNX's hash and say so.
         */
        char  field[32];

        vw_log("warn", "entry names no job: dropped", "job", run->id,
               "entry", run->entry, NULL);

        snprintf(field, sizeof(field), "run:%u", run->n);
        (void) redisAsyncCommand(ac, NULL, NULL, "HDEL %s %s", run->key,
                                 field);
        vw_engine_drop(run);
        return;
    }

    if (r->element[1]->type != REDIS_REPLY_STRING
        || strcmp(r->element[1]->str, run->entry) != 0
        || (state != NULL && (strcmp(state, "succeeded") == 0
                              || strcmp(state, "dead") == 0)))
    {
        /* a duplicate entry: another one owns attempt n */
        vw_engine_drop(run);
        return;
    }

    /*
     * A replay (vantagectl) bumps `replays`; max_attempts and max_age then
     * count again from the replay, whose entry this is or follows.
     */
    if (strcmp(epoch_replays[0] ? epoch_replays : "0", run->replays) != 0) {
        run->new_epoch = 1;
        run->epoch_n = run->n - 1;
        run->epoch_ms = strtoull(run->entry, NULL, 10);

    } else {
        run->epoch_n = epoch_n;
        run->epoch_ms = epoch_ms ? epoch_ms : run->created_ms;
    }

    conf = e->conf();
    jc = conf ? vw_conf_job(conf, run->type, strlen(run->type)) : NULL;

    if (jc == NULL) {
        run->unknown = 1;

    } else if (vw_engine_copy_conf(run, jc) != VW_OK) {
        vw_engine_run_free(run);
        vw_engine_read(e);
        return;
    }

    if (e->draining) {
        vw_engine_put_back(run, vw_engine_now(), "draining");
        return;
    }

    if (run->unknown) {
        vw_engine_settle(run, "dead", 0, "no configuration for this job type",
                         NULL, 0, 0, 0);
        return;
    }

    if (run->no_connector) {
        vw_engine_settle(run, "dead", 0, "this worker was built without the "
                         "job's connector", NULL, 0, 0, 0);
        return;
    }

    if (run->map_error != NULL) {
        vw_engine_settle(run, "dead", 0, run->map_error, NULL, 0, 0, 0);
        return;
    }

    if (run->ordering != NULL) {
        run->state = VW_RUN_ORDER;
        (void) redisAsyncCommand(ac, vw_engine_order_read, run,
                                 "LPOS {vq}:ord:%s %s", run->ordering,
                                 run->id);
        return;
    }

    vw_engine_admit(run);
}


/*
 * LPOS's answer: 0, the head, runs; nil, not in the list (a job replayed
 * under on_dead=proceed), runs unordered; any other place waits.
 */
static void
vw_engine_order_read(redisAsyncContext *ac, void *reply, void *privdata)
{
    uint64_t      recheck;
    redisReply   *r = reply;
    vw_run_t     *run = privdata;
    vw_engine_t  *e = run->engine;
    const vw_conf_t  *conf;

    if (e->closing) {
        return;
    }

    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        vw_engine_run_free(run);
        vw_engine_read(e);
        return;
    }

    if (r->type == REDIS_REPLY_INTEGER && r->integer != 0) {
        conf = e->conf();
        recheck = (conf && conf->ordering_recheck_ms)
                  ? conf->ordering_recheck_ms : 1000;
        vw_engine_put_back(run, vw_engine_now() + recheck, NULL);
        return;
    }

    run->in_order = (r->type == REDIS_REPLY_INTEGER);

    if (e->draining) {
        vw_engine_put_back(run, vw_engine_now(), "draining");
        return;
    }

    vw_engine_admit(run);
}


/* the target's verdict: run now, wait in memory, or go back to delayed */

static void
vw_engine_admit(vw_run_t *run)
{
    int          rc;
    unsigned     probe;
    uint64_t     at, now;
    const char  *why;

    now = vw_engine_now();
    at = now + VW_ENGINE_DEFER_MS;

    /*
     * The vendor's own limits first (a daily allowance nearly spent, a
     * rate limit's window): held back like an open breaker, not an
     * attempt, and judged against max_age the same way
     */
    if (run->connector != NULL && run->connector->admit != NULL) {
        why = NULL;

        if (run->connector->admit(&run->call, now, &at, &why) != VW_OK) {
            if (now - run->epoch_ms >= run->max_age_ms) {
                run->start_ms = now;
                vw_engine_settle(run, "dead", 0, "max_age passed while "
                                 "held back by the vendor's limits", NULL, 0,
                                 0, 0);
                return;
            }

            if (at > run->epoch_ms + run->max_age_ms) {
                at = run->epoch_ms + run->max_age_ms;
            }

            vw_engine_put_back(run, at > now ? at : now + 1, why);
            return;
        }
    }

    rc = vw_target_acquire(run->target, &run->limits, now, &at, &probe);
    run->probe = probe;

    if (rc == VW_OK) {
        vw_engine_start(run);
        return;
    }

    if (rc == VW_BUSY && run->target->waiting < run->limits.max_concurrency) {
        run->state = VW_RUN_WAITING;
        run->target->waiting++;
        return;
    }

    if (rc == VW_DECLINED) {
        /*
         * Held back by an open breaker, which is not an attempt: max_age
         * still runs, so a job whose time is up dies now rather than at
         * the next probe, and one whose time ends before the probe comes
         * back to be judged then.
         */
        if (now - run->epoch_ms >= run->max_age_ms) {
            run->start_ms = now;
            vw_engine_settle(run, "dead", 0, "max_age passed while the "
                             "target's circuit breaker was open", NULL, 0,
                             0, 0);
            return;
        }

        if (at > run->epoch_ms + run->max_age_ms) {
            at = run->epoch_ms + run->max_age_ms;
        }
    }

    vw_engine_put_back(run, rc == VW_BUSY ? now + VW_ENGINE_DEFER_MS : at,
                       NULL);
}


/*
 * A slot of t came free: the oldest run waiting for it starts.  When the
 * breaker opened meanwhile, no slot will come free until it lets a probe
 * go, and the last attempt running may be the one that just ended: the
 * runs waiting in memory would wait for ever, held and kept claimed.  So
 * they go back to {vq}:delayed, due when a probe may go.
 */
static void
vw_engine_next_waiting(vw_engine_t *e, vw_target_t *t)
{
    int          rc;
    unsigned     probe;
    uint64_t     at;
    vw_run_t    *run, *first, *next;
    const char  *why;

    if (t->waiting == 0) {
        return;
    }

    /* new runs go to the head of the list: the oldest is the last */
    first = NULL;

    for (run = e->runs; run != NULL; run = run->next) {
        if (run->state == VW_RUN_WAITING && run->target == t) {
            first = run;
        }
    }

    if (first == NULL) {
        return;
    }

    /*
     * The vendor's limits may have closed while it waited (a rate limit's
     * pause begun by the attempt that just ended): asked again, and a run
     * they hold back goes to {vq}:delayed, and the next waiting one is
     * looked at in its place
     */
    if (first->connector != NULL && first->connector->admit != NULL) {
        why = NULL;
        at = vw_engine_now() + VW_ENGINE_DEFER_MS;

        if (first->connector->admit(&first->call, vw_engine_now(), &at, &why)
            != VW_OK)
        {
            t->waiting--;
            first->state = VW_RUN_SETTLING;
            vw_engine_put_back(first, at, why);
            vw_engine_next_waiting(e, t);
            return;
        }
    }

    at = vw_engine_now() + VW_ENGINE_DEFER_MS;
    rc = vw_target_acquire(t, &first->limits, vw_engine_now(), &at, &probe);

    if (rc == VW_OK) {
        t->waiting--;
        first->probe = probe;
        vw_engine_start(first);
        return;
    }

    if (rc != VW_DECLINED) {
        return;
    }

    for (run = e->runs; run != NULL; run = next) {
        next = run->next;

        if (run->state == VW_RUN_WAITING && run->target == t) {
            t->waiting--;
            run->state = VW_RUN_SETTLING;
            vw_engine_put_back(run, at, NULL);
        }
    }
}


static void
vw_engine_start(vw_run_t *run)
{
    char                line[256];
    vw_engine_t        *e = run->engine;
    struct curl_slist  *l;
    redisAsyncContext  *ac;

    run->state = VW_RUN_RUNNING;
    run->start_ms = vw_engine_now();

    /* the job's own Content-Type, else none (not curl's form default) */
    snprintf(line, sizeof(line), "Content-Type:%s%s",
             run->content_type ? " " : "",
             run->content_type ? run->content_type : "");
    l = curl_slist_append(run->headers, line);
    if (l != NULL) {
        run->headers = l;
    }

    snprintf(line, sizeof(line), "Idempotency-Key: %s", run->id);
    l = curl_slist_append(run->headers, line);
    if (l != NULL) {
        run->headers = l;
    }

    if (run->correlation_id != NULL
        && strpbrk(run->correlation_id, "\r\n") == NULL)
    {
        snprintf(line, sizeof(line), "X-Correlation-ID: %.200s",
                 run->correlation_id);
        l = curl_slist_append(run->headers, line);
        if (l != NULL) {
            run->headers = l;
        }
    }

    /* no 100-continue round trip for larger bodies */
    l = curl_slist_append(run->headers, "Expect:");
    if (l != NULL) {
        run->headers = l;
    }

    ac = vw_engine_wr(e);

    if (ac != NULL) {
        if (run->new_epoch) {
            (void) redisAsyncCommand(ac, NULL, NULL,
                                     "HSET %s state running attempts %u "
                                     "start_ms %" PRIu64 " epoch_replays %s "
                                     "epoch_n %u epoch_ms %" PRIu64,
                                     run->key, run->n, run->start_ms,
                                     run->replays, run->epoch_n,
                                     run->epoch_ms);
        } else {
            (void) redisAsyncCommand(ac, NULL, NULL,
                                     "HSET %s state running attempts %u "
                                     "start_ms %" PRIu64,
                                     run->key, run->n, run->start_ms);
        }

        (void) redisAsyncCommand(ac, NULL, NULL, "HDEL %s held", run->key);
        run->started = 1;
    }

    if (run->connector != NULL) {
        vw_log("debug", "attempt started", "job", run->id, "correlation_id",
               VW_ENGINE_CID(run), "type", run->type, "connector",
               run->connector->name, NULL);

        run->call.attempt = run->n;
        run->call.timeout_ms = run->timeout_ms;
        run->call.connect_timeout_ms = run->connect_timeout_ms;
        run->call.ca_file = run->ca_file;
        run->call.proxy = run->proxy;

        if (run->connector->start(&run->call) != VW_OK) {
            vw_engine_call_settle(run);
        }

        return;
    }

    run->req.method = run->method;
    run->req.url = run->url;
    run->req.headers = run->headers;
    run->req.body = run->body;
    run->req.body_len = run->body_len;
    run->req.timeout_ms = run->timeout_ms;
    run->req.connect_timeout_ms = run->connect_timeout_ms;
    run->req.ca_file = run->ca_file;
    run->req.proxy = run->proxy;
    run->req.handler = vw_engine_http_done;
    run->req.data = run;

    vw_log("debug", "attempt started", "job", run->id, "correlation_id",
           VW_ENGINE_CID(run), "type", run->type, NULL);

    if (vw_http_request(e->http, &run->req) != VW_OK) {
        vw_target_release(run->target, &run->limits, vw_engine_now(),
                          VW_TARGET_CANCELLED, run->probe);
        vw_engine_settle(run, "retry", 0, run->req.error, NULL, 0, 0, 0);
    }
}


/* -- vendor connectors (docs/CONNECTORS.md) ------------------------------- */

/*
 * What a connector's attempt needs, copied from the configuration in force
 * as the job is taken, and the body run through the job's mapping then.
 */
static int
vw_engine_copy_connector(vw_run_t *run, const vw_conf_job_t *jc)
{
    vw_call_t  *call = &run->call;

    run->connector = vw_connector_find(jc->connector, jc->operation);

    if (run->connector == NULL) {
        run->no_connector = 1;
        return VW_OK;
    }

    run->conn = vw_conf_connection_copy(jc->connection);
    run->operation = strdup(jc->operation);
    run->object = strdup(jc->object);
    run->id_field = jc->id_field ? strdup(jc->id_field) : NULL;

    if (run->conn == NULL || run->operation == NULL || run->object == NULL
        || (jc->id_field != NULL && run->id_field == NULL))
    {
        return VW_ERROR;
    }

    run->map = vw_map_ref_hold(jc->map);

    if (jc->then != NULL) {
        run->then = strdup(jc->then);
        if (run->then == NULL
            || vw_engine_read_fields(run, jc->then) != VW_OK)
        {
            return VW_ERROR;
        }
    }

    if (jc->map != NULL && !run->mapped) {
        vw_engine_map_body(run, jc->map->map);
    }

    /* a bulk load from a list maps its pages as it streams them */
    call->map = jc->map != NULL ? jc->map->map : NULL;

    call->svc = &run->engine->svc;
    call->job_id = run->id;
    call->type = run->type;
    call->tenant = run->tenant ? run->tenant : "";
    call->correlation_id = run->correlation_id;
    call->body = run->body;
    call->body_len = run->body_len;
    call->content_type = run->content_type;
    call->conn = run->conn;
    call->operation = run->operation;
    call->object = run->object;
    call->id_field = run->id_field;
    call->source = run->source;
    call->read_fields = (const char *const *) run->read_fields;
    call->handler = vw_engine_call_done;
    call->data = run;

    return VW_OK;
}


/*
 * A read whose record goes on to a job with a mapping asks the vendor for
 * the fields that mapping reads (HubSpot sends only a few properties
 * unless it is told which), copied from the configuration in force.
 */
static int
vw_engine_read_fields(vw_run_t *run, const char *then)
{
    size_t                i, n, k;
    const char           *from;
    const vc_map_t       *map;
    const vw_conf_t      *conf;
    const vw_conf_job_t  *next;

    conf = run->engine->conf();
    next = conf ? vw_conf_job(conf, then, strlen(then)) : NULL;

    if (next == NULL || next->map == NULL) {
        return VW_OK;
    }

    map = next->map->map;
    n = vc_map_nfields(map);

    run->read_fields = calloc(n + 1, sizeof(char *));
    if (run->read_fields == NULL) {
        return VW_ERROR;
    }

    for (i = 0, k = 0; i < n; i++) {
        from = vc_map_field_from(map, i);

        if (from != NULL) {
            run->read_fields[k] = strdup(from);
            if (run->read_fields[k++] == NULL) {
                return VW_ERROR;
            }
        }
    }

    return VW_OK;
}


/*
 * The mapping turns the job's record (an object), or each record of a
 * batch (an array), into the vendor's.  A body the mapping refuses kills
 * the job with the mapping's error, which names the field and masks the
 * value.
 */
static void
vw_engine_map_body(vw_run_t *run, const vc_map_t *map)
{
    char           err[VW_ERRSTR_LEN * 2], msg[VW_ERRSTR_LEN * 4];
    char          *text;
    size_t         i;
    unsigned       wrap;
    json_t        *in, *out, *rec, *mapped;
    json_error_t   jerr;

    in = json_loadb((const char *) (run->body ? run->body
                                              : (unsigned char *) ""),
                    run->body_len, 0, &jerr);

    if (in == NULL || (!json_is_object(in) && !json_is_array(in))) {
        json_decref(in);
        run->map_error = strdup("the body is not a JSON object or array, "
                                "and the job has a mapping");
        return;
    }

    out = NULL;
    wrap = 0;

    /*
     * A bulk load (sf_bulk.c): {"records": [...]} maps each record, and
     * {"from": <list>} none here: the connector maps each page it reads
     */
    if (json_is_object(in) && strncmp(run->operation, "bulk_", 5) == 0) {
        if (json_object_get(in, "from") != NULL
            || !json_is_array(json_object_get(in, "records")))
        {
            json_decref(in);
            return;
        }

        rec = json_incref(json_object_get(in, "records"));
        json_decref(in);
        in = rec;
        wrap = 1;
    }

    if (json_is_object(in)) {
        if (vc_map_apply(map, in, &out, err, sizeof(err)) != VC_OK) {
            snprintf(msg, sizeof(msg), "mapping %s: %s", vc_map_name(map),
                     err);
            run->map_error = strdup(msg);
        }

    } else {
        out = json_array();

        json_array_foreach(in, i, rec) {
            if (out == NULL) {
                break;
            }

            if (!json_is_object(rec)
                || vc_map_apply(map, rec, &mapped, err, sizeof(err))
                   != VC_OK)
            {
                snprintf(msg, sizeof(msg), "mapping %s: records[%zu]: %s",
                         vc_map_name(map), i,
                         json_is_object(rec) ? err : "not an object");
                run->map_error = strdup(msg);
                json_decref(out);
                out = NULL;
                break;
            }

            json_array_append_new(out, mapped);
        }
    }

    json_decref(in);

    if (out != NULL && wrap) {
        out = json_pack("{so}", "records", out);
    }

    if (out == NULL) {
        if (run->map_error == NULL) {
            run->map_error = strdup("out of memory while mapping");
        }

        return;
    }

    text = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(out);

    if (text == NULL) {
        run->map_error = strdup("out of memory while mapping");
        return;
    }

    free(run->body);
    run->body = (unsigned char *) text;
    run->body_len = strlen(text);
}


static void
vw_engine_call_done(vw_call_t *call)
{
    int        rc;
    vw_run_t  *run = call->data;

    rc = vw_target_release(run->target, &run->limits, vw_engine_now(),
                           call->target_failure ? VW_TARGET_FAILURE
                                                : VW_TARGET_SUCCESS,
                           run->probe);

    if (rc == VW_TARGET_OPENED) {
        vw_log("warn", "circuit breaker opened", "target", run->target->name,
               NULL);

    } else if (rc == VW_TARGET_CLOSED) {
        vw_log("info", "circuit breaker closed", "target", run->target->name,
               NULL);
    }

    vw_engine_next_waiting(run->engine, run->target);

    vw_engine_call_settle(run);
}


/* a connector's outcome, settled as the http connector's is */
static void
vw_engine_call_settle(vw_run_t *run)
{
    vw_call_t   *call = &run->call;
    const char  *outcome;

    outcome = call->outcome == VW_CALL_SUCCESS ? "success"
              : call->outcome == VW_CALL_RETRY ? "retry" : "dead";

    if (call->outcome != VW_CALL_SUCCESS && call->error[0] == '\0') {
        snprintf(call->error, sizeof(call->error), "%s: %s failed",
                 run->connector->name, run->operation);
    }

    vw_engine_settle(run, outcome, call->status,
                     call->error[0] ? call->error : NULL, call->resp,
                     call->resp_len > sizeof(call->resp)
                     ? sizeof(call->resp) : call->resp_len,
                     call->ms, call->retry_after_ms);
}


/* -- outcomes ------------------------------------------------------------- */

static void
vw_engine_http_done(vw_http_req_t *req)
{
    int           rc;
    char          error[VW_ERRSTR_LEN];
    uint64_t      retry_after;
    vw_run_t     *run = req->data;
    const char   *outcome;
    vw_target_outcome_e  verdict;

    retry_after = 0;

    if (req->failed) {
        outcome = "retry";
        verdict = VW_TARGET_FAILURE;

        if (req->timed_out && req->connected == 0
            && run->connect_timeout_ms < run->timeout_ms)
        {
            snprintf(error, sizeof(error), "no connection within %" PRIu64
                     " ms (connect_timeout)", run->connect_timeout_ms);

        } else if (req->timed_out) {
            snprintf(error, sizeof(error), "timeout after %" PRIu64 " ms",
                     run->timeout_ms);
        } else {
            snprintf(error, sizeof(error), "%s", req->error);
        }

    } else if (req->status >= 200 && req->status < 300) {
        outcome = "success";
        verdict = VW_TARGET_SUCCESS;
        error[0] = '\0';

    } else if (req->status == 408 || req->status == 425
               || req->status == 429 || req->status >= 500)
    {
        outcome = "retry";
        verdict = VW_TARGET_FAILURE;
        snprintf(error, sizeof(error), "HTTP %ld", req->status);

        if (req->retry_after >= 0) {
            retry_after = vc_backoff_retry_after(
                              (uint64_t) req->retry_after,
                              vw_engine_random());
            /* 0 would read as "no Retry-After" below */
            retry_after += retry_after == 0;
        }

    } else {
        /* the vendor refused the job itself: it is no failure of theirs */
        outcome = "dead";
        verdict = VW_TARGET_SUCCESS;
        snprintf(error, sizeof(error), "HTTP %ld", req->status);
    }

    rc = vw_target_release(run->target, &run->limits, vw_engine_now(),
                           verdict, run->probe);

    if (rc == VW_TARGET_OPENED) {
        vw_log("warn", "circuit breaker opened", "target", run->target->name,
               NULL);

    } else if (rc == VW_TARGET_CLOSED) {
        vw_log("info", "circuit breaker closed", "target", run->target->name,
               NULL);
    }

    vw_engine_next_waiting(run->engine, run->target);

    vw_engine_settle(run, outcome, req->status, error[0] ? error : NULL,
                     req->resp, req->resp_len, req->ms, retry_after);
}


/* a JSON string of bytes that may not be UTF-8: other bytes become '?' */

static json_t *
vw_engine_json_text(const unsigned char *p, size_t len)
{
    char    *s;
    size_t   i;
    json_t  *j;

    j = json_stringn((const char *) p, len);
    if (j != NULL) {
        return j;
    }

    s = malloc(len + 1);
    if (s == NULL) {
        return json_string("");
    }

    for (i = 0; i < len; i++) {
        s[i] = (p[i] >= 0x20 && p[i] < 0x7f) || p[i] == '\n' || p[i] == '\t'
               ? (char) p[i] : '?';
    }

    j = json_stringn(s, len);
    free(s);

    return j;
}


/*
 * A vendor may echo a request's headers in its error body: the values of
 * the job's secret_header lines are starred out of what is kept, as the
 * PII is, before it reaches {vq}:att or a log line.
 */
static void
vw_engine_mask_secrets(vw_run_t *run, unsigned char *p, size_t len)
{
    size_t          i, slen;
    unsigned char  *at, *end;

    for (i = 0; run->secrets != NULL && run->secrets[i] != NULL; i++) {
        slen = strlen(run->secrets[i]);

        if (slen == 0) {
            continue;
        }

        end = p + len;

        for (at = p; (size_t) (end - at) >= slen; /* void */) {
            at = memmem(at, end - at, run->secrets[i], slen);
            if (at == NULL) {
                break;
            }

            memset(at, '*', slen);
            at += slen;
        }
    }
}


/*
 * A read's record becomes a job of the type its "then" names, written in
 * the transaction that settles the read: both happen or neither, so the
 * chain loses nothing and, the read being safe to repeat, a crash before
 * EXEC only reads again.  The new job is queued as DISPATCH queues one
 * (docs/WORKER.md), with the read's correlation id and source, and a
 * "parent" field naming the read.
 */
static void
vw_engine_then(vw_run_t *run, redisAsyncContext *ac, uint64_t now)
{
    char            id[33], key[48], created[24];
    char           *headers;
    json_t         *h;
    unsigned char   raw[16];
    size_t          i;

    if (getrandom(raw, sizeof(raw), 0) != (ssize_t) sizeof(raw)) {
        vw_log("error", "no random id for a follow-on job", "job", run->id,
               NULL);
        return;
    }

    for (i = 0; i < sizeof(raw); i++) {
        snprintf(id + 2 * i, 3, "%02x", raw[i]);
    }

    snprintf(key, sizeof(key), "{vq}:job:%s", id);
    snprintf(created, sizeof(created), "%" PRIu64, now);

    h = json_pack("[[ss]]", "Content-Type", "application/json");
    if (h != NULL && run->source != NULL) {
        json_array_append_new(h, json_pack("[ss]", "X-Vantage-Source",
                                           run->source));
    }

    headers = h ? json_dumps(h, JSON_COMPACT) : NULL;
    json_decref(h);

    if (headers == NULL) {
        return;
    }

    (void) redisAsyncCommand(ac, NULL, NULL,
                             "HSET %s type %s tenant %s state queued "
                             "attempts 0 created_ms %s method POST "
                             "headers %s body %s parent %s",
                             key, run->then, run->tenant ? run->tenant : "",
                             created, headers, run->call.output, run->id);

    if (run->correlation_id != NULL) {
        (void) redisAsyncCommand(ac, NULL, NULL, "HSET %s correlation_id %s",
                                 key, run->correlation_id);
    }

    (void) redisAsyncCommand(ac, NULL, NULL, "XADD " VW_ENGINE_STREAM
                             " * job %s n 1", id);
    (void) redisAsyncCommand(ac, NULL, NULL, "INCR " VW_ENGINE_INFLIGHT);
    (void) redisAsyncCommand(ac, NULL, NULL, "HSET %s then_job %s",
                             run->key, id);

    vw_log("info", "follow-on job", "job", run->id, "correlation_id",
           VW_ENGINE_CID(run), "then", run->then, "then_job", id, NULL);

    free(headers);
}


/*
 * The job's result: {"status", "ms"}, and the members of a connector's
 * result after them (the vendor's ids).  NULL: only base, which is kept.
 */
static char *
vw_engine_result(vw_run_t *run, const char *base)
{
    char    *text;
    json_t  *o, *add;

    if (run->connector == NULL || run->call.result == NULL) {
        return NULL;
    }

    o = json_loads(base, 0, NULL);
    add = json_loads(run->call.result, 0, NULL);

    if (o == NULL || !json_is_object(add)) {
        json_decref(o);
        json_decref(add);
        return NULL;
    }

    json_object_update_missing(o, add);
    json_decref(add);

    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);

    return text;
}


/*
 * Writes the attempt's outcome in one transaction, as docs/WORKER.md's
 * table says: "success", "retry" (turned into "dead" when no attempt or
 * time is left) or "dead".
 */
static void
vw_engine_settle(vw_run_t *run, const char *outcome, long status,
    const char *error, const unsigned char *resp, size_t resp_len,
    uint64_t ms, uint64_t retry_after_ms)
{
    char               *att, *masked_error, result[64], status_s[16];
    char               *summary;
    char                nstr[16], delay_s[24], ms_s[24];
    json_t             *o;
    uint64_t            now, due, delay;
    vw_engine_t        *e = run->engine;
    unsigned char       body[VW_HTTP_BODY_KEEP];
    redisAsyncContext  *ac;
    const char         *why;

    now = vw_engine_now();
    why = NULL;
    due = 0;
    delay = 0;

    if (strcmp(outcome, "retry") == 0) {
        if (run->n - run->epoch_n >= run->max_attempts) {
            outcome = "dead";
            why = "max_attempts";

        } else if (now - run->epoch_ms >= run->max_age_ms) {
            outcome = "dead";
            why = "max_age";

        } else {
            delay = retry_after_ms ? retry_after_ms
                    : vc_backoff_delay(run->backoff_base_ms,
                                       run->backoff_cap_ms, run->n,
                                       vw_engine_random());
            due = now + delay;
        }
    }

    /* the error may quote what the vendor said: masked like the body */
    masked_error = error ? strdup(error) : NULL;
    if (masked_error != NULL) {
        vc_mask((unsigned char *) masked_error, strlen(masked_error));
        vw_engine_mask_secrets(run, (unsigned char *) masked_error,
                               strlen(masked_error));
    }

    vw_engine_count(run, outcome, status, ms, masked_error);

    memcpy(body, resp ? resp : (const unsigned char *) "", resp_len);
    vc_mask(body, resp_len);
    vw_engine_mask_secrets(run, body, resp_len);

    o = json_pack("{sIsIsIsssIsosO}",
                  "n", (json_int_t) run->n,
                  "start_ms", (json_int_t) (run->start_ms ? run->start_ms
                                                          : now),
                  "ms", (json_int_t) ms,
                  "outcome", outcome,
                  "status", (json_int_t) status,
                  "error", masked_error ? json_string(masked_error)
                                        : json_null(),
                  "body", json_null());
    att = NULL;

    if (o != NULL) {
        json_object_set_new(o, "body", vw_engine_json_text(body, resp_len));
        att = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
    }

    snprintf(status_s, sizeof(status_s), "%ld", status);
    snprintf(nstr, sizeof(nstr), "%u", run->n);
    snprintf(delay_s, sizeof(delay_s), "%" PRIu64, delay);
    snprintf(ms_s, sizeof(ms_s), "%" PRIu64, ms);

    vw_log(strcmp(outcome, "success") == 0 ? "info" : "warn", "attempt",
           "job", run->id,
           "correlation_id", VW_ENGINE_CID(run),
           "type", run->type ? run->type : "",
           "attempt", nstr,
           "outcome", outcome,
           "status", status_s,
           "ms", ms_s,
           "target", run->target ? run->target->name : "",
           "error", masked_error ? masked_error : "",
           why ? "reason" : NULL, why,
           NULL);

    ac = vw_engine_wr(e);

    if (ac == NULL || att == NULL) {
        /* still pending: the visibility timeout runs it again */
        vw_log("error", "cannot record an outcome", "job", run->id,
               "correlation_id", VW_ENGINE_CID(run), NULL);
        free(att);
        free(masked_error);
        vw_engine_run_free(run);
        vw_engine_read(e);
        return;
    }

    run->state = VW_RUN_SETTLING;

    (void) redisAsyncCommand(ac, NULL, NULL, "MULTI");

    if (strcmp(outcome, "success") == 0) {
        snprintf(result, sizeof(result), "{\"status\":%ld,\"ms\":%" PRIu64
                 "}", status, ms);
        summary = vw_engine_result(run, result);
        (void) redisAsyncCommand(ac, NULL, NULL,
                                 "HSET %s state succeeded finished_ms %"
                                 PRIu64 " result %s last_status %s",
                                 run->key, now, summary ? summary : result,
                                 status_s);
        free(summary);

        if (run->then != NULL && run->call.output != NULL) {
            vw_engine_then(run, ac, now);
        }
        (void) redisAsyncCommand(ac, NULL, NULL, "ZADD " VW_ENGINE_DONE
                                 " %" PRIu64 " %s", now, run->id);

    } else if (strcmp(outcome, "retry") == 0) {
        (void) redisAsyncCommand(ac, NULL, NULL,
                                 "HSET %s state retrying next_attempt_ms %"
                                 PRIu64 " last_error %s last_status %s",
                                 run->key, due,
                                 masked_error ? masked_error : "",
                                 status_s);
        (void) redisAsyncCommand(ac, NULL, NULL, "ZADD " VW_ENGINE_DELAYED
                                 " %" PRIu64 " %s:%u", due, run->id,
                                 run->n + 1);
        vw_engine_promote_soon(e, due);

    } else {
        (void) redisAsyncCommand(ac, NULL, NULL,
                                 "HSET %s state dead finished_ms %" PRIu64
                                 " last_error %s last_status %s",
                                 run->key, now,
                                 masked_error ? masked_error : "",
                                 status_s);
        (void) redisAsyncCommand(ac, NULL, NULL, "ZADD " VW_ENGINE_DEAD
                                 " %" PRIu64 " %s", now, run->id);
    }

    /* a batch's records still to write: the next attempt's, or a replay's */
    if (strcmp(outcome, "success") != 0 && run->connector != NULL
        && run->call.next_body != NULL)
    {
        (void) redisAsyncCommand(ac, NULL, NULL, "HSET %s body %b mapped 1",
                                 run->key, run->call.next_body,
                                 run->call.next_body_len);
    }

    (void) redisAsyncCommand(ac, NULL, NULL, "RPUSH {vq}:att:%s %s", run->id,
                             att);
    (void) redisAsyncCommand(ac, NULL, NULL, "XACK " VW_ENGINE_STREAM " "
                             VW_ENGINE_GROUP " %s", run->entry);
    (void) redisAsyncCommand(ac, NULL, NULL, "XDEL " VW_ENGINE_STREAM " %s",
                             run->entry);

    if (strcmp(outcome, "retry") != 0) {
        /*
         * LREM of this id rather than LPOP: the same when it heads the
         * list, and a job replayed under on_dead=proceed, which is no
         * longer in it, must not take another job's place
         */
        if (run->ordering != NULL
            && (strcmp(outcome, "success") == 0
                || run->on_dead == VW_ON_DEAD_PROCEED))
        {
            (void) redisAsyncCommand(ac, NULL, NULL, "LREM {vq}:ord:%s 1 %s",
                                     run->ordering, run->id);
        } else {
            run->in_order = 0;
        }

        (void) redisAsyncCommand(ac, NULL, NULL,
                                 "DECR " VW_ENGINE_INFLIGHT);

    } else {
        run->in_order = 0;
    }

    (void) redisAsyncCommand(ac, vw_engine_settled, run, "EXEC");

    free(att);
    free(masked_error);
}


/*
 * The metrics of a settled attempt, outcome final ("retry" only when
 * another attempt comes), and its record for /status (status.c) with the
 * masked error.  The latency is that of a call: an attempt settled before
 * one went out (no configuration, max_age while held back) has none.
 */
static void
vw_engine_count(vw_run_t *run, const char *outcome, long status,
    uint64_t ms, const char *error)
{
    const char  *type, *target;

    /* a type no longer configured is any string a peer sent: one label */
    type = run->unknown || run->type == NULL ? "(unknown)" : run->type;
    target = run->target != NULL ? run->target->name : "(unknown)";

    vw_metrics_inc(VW_METRICS_ATTEMPTS, type, outcome);
    vw_metrics_inc(VW_METRICS_TARGET_ATTEMPTS, target, outcome);
    vw_metrics_inc(VW_METRICS_JOBS_TOTAL, type,
                   strcmp(outcome, "success") == 0 ? "succeeded"
                   : strcmp(outcome, "retry") == 0 ? "retrying" : "dead");

    if (run->then != NULL && run->call.output != NULL
        && strcmp(outcome, "success") == 0)
    {
        /* vw_engine_then() writes it in the transaction settling this */
        vw_metrics_inc(VW_METRICS_JOBS_TOTAL, run->then, "accepted");
    }

    vw_status_attempt(run->id, type, target,
                      run->connector ? run->connector->name
                      : run->unknown ? NULL : "http",
                      outcome, status, error, vw_engine_now());

    if (strcmp(outcome, "retry") == 0) {
        vw_metrics_inc(VW_METRICS_RETRIES,
                       status == 0 ? "transport"
                       : status == 429 ? "rate_limited"
                       : status >= 500 ? "server_error" : "other", NULL);

    } else if (strcmp(outcome, "dead") == 0) {
        vw_metrics_inc(VW_METRICS_DEAD_LETTERS, type, NULL);
    }

    if (run->state == VW_RUN_RUNNING && run->target != NULL) {
        vw_metrics_observe(VW_METRICS_ATTEMPT_SECONDS, (double) ms / 1000,
                           run->target->name, NULL);
    }
}


static void
vw_engine_settled(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply   *r = reply;
    vw_run_t     *run = privdata;
    vw_engine_t  *e = run->engine;

    if (e->closing) {
        return;
    }

    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        vw_log("error", "cannot record an outcome", "job", run->id,
               "correlation_id", VW_ENGINE_CID(run),
               "reason", r && r->type == REDIS_REPLY_ERROR ? r->str : "lost",
               NULL);

    } else if (run->ordering != NULL && run->in_order) {
        vw_engine_wake(e, run->ordering);
    }

    vw_engine_run_free(run);
    vw_engine_read(e);
    vw_engine_check_drained(e);
}


/* -- waking the next ordered job ------------------------------------------ */

typedef struct {
    vw_engine_t                *engine;
    char                        id[33];
} vw_wake_t;


static void
vw_engine_wake(vw_engine_t *e, const char *ordering)
{
    vw_wake_t          *w;
    redisAsyncContext  *ac;

    ac = vw_engine_wr(e);
    if (ac == NULL) {
        return;
    }

    w = calloc(1, sizeof(vw_wake_t));
    if (w == NULL) {
        return;
    }

    w->engine = e;

    (void) redisAsyncCommand(ac, vw_engine_wake_head, w,
                             "LINDEX {vq}:ord:%s 0", ordering);
}


static void
vw_engine_wake_head(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply  *r = reply;
    vw_wake_t   *w = privdata;

    if (r == NULL || w->engine->closing || r->type != REDIS_REPLY_STRING
        || r->len != 32)
    {
        free(w);
        return;
    }

    memcpy(w->id, r->str, 32);

    (void) redisAsyncCommand(ac, vw_engine_wake_job, w,
                             "HMGET {vq}:job:%s attempts state", w->id);
}


/*
 * The head's member is <id>:<attempts+1>; ZADD of an existing member only
 * moves it, so two wakes add nothing twice.  A head already retrying keeps
 * its backoff.
 */
static void
vw_engine_wake_job(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply  *r = reply;
    vw_wake_t   *w = privdata;

    if (r != NULL && !w->engine->closing && r->type == REDIS_REPLY_ARRAY
        && r->elements == 2 && r->element[0]->type == REDIS_REPLY_STRING
        && r->element[1]->type == REDIS_REPLY_STRING
        && strcmp(r->element[1]->str, "queued") == 0)
    {
        (void) redisAsyncCommand(ac, NULL, NULL,
                                 "ZADD " VW_ENGINE_DELAYED " %" PRIu64
                                 " %s:%lu", vw_engine_now(), w->id,
                                 strtoul(r->element[0]->str, NULL, 10) + 1);
        vw_engine_promote_soon(w->engine, vw_engine_now());
    }

    free(w);
}


/* -- putting back and dropping -------------------------------------------- */

/*
 * The attempt does not run here: its member goes to {vq}:delayed due at
 * due, and the entry is acknowledged, in one transaction.  run:<n> goes,
 * so that the entry its promotion makes can take the attempt.
 */
static void
vw_engine_put_back(vw_run_t *run, uint64_t due, const char *why)
{
    char                field[32];
    vw_engine_t        *e = run->engine;
    redisAsyncContext  *ac;

    ac = vw_engine_wr(e);
    if (ac == NULL) {
        vw_engine_run_free(run);
        vw_engine_check_drained(e);
        return;
    }

    if (why != NULL) {
        vw_log("info", "job put back", "job", run->id, "correlation_id",
               VW_ENGINE_CID(run), "reason", why, NULL);
    }

    run->state = VW_RUN_SETTLING;
    snprintf(field, sizeof(field), "run:%u", run->n);

    (void) redisAsyncCommand(ac, NULL, NULL, "MULTI");
    (void) redisAsyncCommand(ac, NULL, NULL, "HDEL %s %s", run->key, field);

    if (run->started) {
        (void) redisAsyncCommand(ac, NULL, NULL, "HSET %s state queued",
                                 run->key);
    }

    /* what holds it back, for vantagectl job; cleared when it runs */
    if (why != NULL) {
        (void) redisAsyncCommand(ac, NULL, NULL, "HSET %s held %s",
                                 run->key, why);
    }

    (void) redisAsyncCommand(ac, NULL, NULL, "ZADD " VW_ENGINE_DELAYED
                             " %" PRIu64 " %s:%u", due, run->id, run->n);
    vw_engine_promote_soon(e, due);
    (void) redisAsyncCommand(ac, NULL, NULL, "XACK " VW_ENGINE_STREAM " "
                             VW_ENGINE_GROUP " %s", run->entry);
    (void) redisAsyncCommand(ac, NULL, NULL, "XDEL " VW_ENGINE_STREAM " %s",
                             run->entry);
    (void) redisAsyncCommand(ac, vw_engine_put_back_done, run, "EXEC");
}


static void
vw_engine_put_back_done(redisAsyncContext *ac, void *reply, void *privdata)
{
    vw_run_t     *run = privdata;
    vw_engine_t  *e = run->engine;

    if (e->closing) {
        return;
    }

    vw_engine_run_free(run);
    vw_engine_read(e);
    vw_engine_check_drained(e);
}


/* a duplicate entry, or one whose job is gone: acknowledged and deleted */

static void
vw_engine_drop(vw_run_t *run)
{
    vw_engine_t        *e = run->engine;
    redisAsyncContext  *ac;

    ac = vw_engine_wr(e);

    if (ac != NULL) {
        (void) redisAsyncCommand(ac, NULL, NULL, "XACK " VW_ENGINE_STREAM " "
                                 VW_ENGINE_GROUP " %s", run->entry);
        (void) redisAsyncCommand(ac, NULL, NULL, "XDEL " VW_ENGINE_STREAM
                                 " %s", run->entry);
    }

    vw_engine_run_free(run);
    vw_engine_read(e);
    vw_engine_check_drained(e);
}


static void
vw_engine_run_free(vw_run_t *run)
{
    size_t        i;
    vw_engine_t  *e = run->engine;

    if (run->state == VW_RUN_WAITING && run->target->waiting) {
        run->target->waiting--;
    }

    *run->prev = run->next;

    if (run->next != NULL) {
        run->next->prev = run->prev;
    }

    e->held--;

    curl_slist_free_all(run->headers);

    for (i = 0; run->secrets != NULL && run->secrets[i] != NULL; i++) {
        explicit_bzero(run->secrets[i], strlen(run->secrets[i]));
        free(run->secrets[i]);
    }

    free(run->secrets);
    free(run->type);
    free(run->correlation_id);
    free(run->ordering);
    free(run->content_type);
    free(run->body);
    free(run->url);
    free(run->ca_file);
    free(run->proxy);
    free(run->method);
    vw_conf_connection_free(run->conn);
    free(run->operation);
    free(run->object);
    free(run->id_field);
    free(run->tenant);
    free(run->source);
    free(run->map_error);
    free(run->then);

    for (i = 0; run->read_fields != NULL && run->read_fields[i] != NULL; i++)
    {
        free(run->read_fields[i]);
    }

    free(run->read_fields);
    free(run->call.output);
    vw_map_ref_release(run->map);
    free(run->call.result);
    free(run->call.next_body);
    free(run);
}


/* -- promotion ------------------------------------------------------------ */

/*
 * The timer sleeps until the earliest member of {vq}:delayed is due, read
 * with ZRANGE 0 0 WITHSCORES after each round, but never longer than
 * VW_ENGINE_PROMOTE_MS: other workers add members too, and theirs are
 * seen within that.  A member this engine adds (a retry, a put back, a
 * wake) moves the timer nearer at once, so that a short backoff is kept
 * to the millisecond rather than to the next 100 ms tick.
 */

static void
vw_engine_promote_at(vw_engine_t *e, uint64_t due)
{
    uint64_t  now, cap;

    now = vw_engine_now();
    cap = now + VW_ENGINE_PROMOTE_MS;
    due = due < cap ? due : cap;

    if (evtimer_pending(e->promote, NULL) && e->promote_at <= due) {
        return;
    }

    e->promote_at = due;
    vw_engine_timer(e->promote, due > now ? due - now : 0);
}


/* the engine added a member due at due: promote it in time */

static void
vw_engine_promote_soon(vw_engine_t *e, uint64_t due)
{
    if (e->promoting) {
        /* the round's ZRANGE may have been sent before the ZADD */
        if (e->promote_hint == 0 || due < e->promote_hint) {
            e->promote_hint = due;
        }

        return;
    }

    vw_engine_promote_at(e, due);
}


static void
vw_engine_promote(evutil_socket_t fd, short what, void *arg)
{
    vw_engine_t        *e = arg;
    redisAsyncContext  *ac;

    ac = vw_engine_wr(e);

    if (ac == NULL || e->promoting) {
        vw_engine_promote_at(e, vw_engine_now() + VW_ENGINE_PROMOTE_MS);
        return;
    }

    if (redisAsyncCommand(ac, vw_engine_promote_read, e,
                          "ZRANGEBYSCORE " VW_ENGINE_DELAYED " -inf %" PRIu64
                          " LIMIT 0 %d", vw_engine_now(),
                          VW_ENGINE_PROMOTE_MAX)
        == REDIS_OK)
    {
        e->promoting = 1;
        e->promote_hint = 0;

    } else {
        vw_engine_promote_at(e, vw_engine_now() + VW_ENGINE_PROMOTE_MS);
    }
}


static void
vw_engine_promote_read(redisAsyncContext *ac, void *reply, void *privdata)
{
    size_t        i;
    char         *colon, member[64];
    redisReply   *r = reply, *m;
    vw_engine_t  *e = privdata;

    if (e->closing) {
        return;
    }

    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        e->promoting = 0;
        vw_engine_promote_at(e, vw_engine_now() + VW_ENGINE_PROMOTE_MS);
        return;
    }

    for (i = 0; i < r->elements; i++) {
        m = r->element[i];

        if (m->type != REDIS_REPLY_STRING) {
            continue;
        }

        colon = m->len < sizeof(member) ? memchr(m->str, ':', m->len) : NULL;

        if (colon == NULL || colon - m->str != 32) {
            /* nobody can run it, and it would stay the earliest due */
            vw_log("warn", "not a job in the delayed set: removed", NULL);
            (void) redisAsyncCommand(ac, NULL, NULL, "ZREM "
                                     VW_ENGINE_DELAYED " %b", m->str,
                                     m->len);
            continue;
        }

        memcpy(member, m->str, m->len + 1);
        member[32] = '\0';

        /* two workers may both do this: run:<n> drops the second entry */
        (void) redisAsyncCommand(ac, NULL, NULL, "MULTI");
        (void) redisAsyncCommand(ac, NULL, NULL, "ZREM " VW_ENGINE_DELAYED
                                 " %s", m->str);
        (void) redisAsyncCommand(ac, NULL, NULL, "XADD " VW_ENGINE_STREAM
                                 " * job %s n %s", member, member + 33);
        (void) redisAsyncCommand(ac, NULL, NULL, "EXEC");
    }

    if (r->elements >= VW_ENGINE_PROMOTE_MAX) {
        /* more may be due already */
        e->promoting = 0;
        vw_engine_promote_at(e, 0);
        return;
    }

    /* sent behind the EXECs, so it sees what they removed */
    if (redisAsyncCommand(ac, vw_engine_promote_next, e,
                          "ZRANGE " VW_ENGINE_DELAYED " 0 0 WITHSCORES")
        != REDIS_OK)
    {
        e->promoting = 0;
        vw_engine_promote_at(e, vw_engine_now() + VW_ENGINE_PROMOTE_MS);
    }
}


/* [member, score]: the earliest due time, or nothing when it is empty */

static void
vw_engine_promote_next(redisAsyncContext *ac, void *reply, void *privdata)
{
    uint64_t      due, now;
    redisReply   *r = reply;
    vw_engine_t  *e = privdata;

    if (e->closing) {
        return;
    }

    e->promoting = 0;
    now = vw_engine_now();
    due = now + VW_ENGINE_PROMOTE_MS;

    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2
        && r->element[1]->type == REDIS_REPLY_STRING)
    {
        due = (uint64_t) strtod(r->element[1]->str, NULL);

        /* due already, yet not promoted: the next round's, not a spin */
        due = due > now ? due : now + 1;
    }

    if (e->promote_hint != 0 && e->promote_hint < due) {
        due = e->promote_hint;
    }

    e->promote_hint = 0;
    vw_engine_promote_at(e, due);
}


/* -- heartbeat and reclaim ------------------------------------------------ */

static void
vw_engine_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    int                 argc;
    unsigned            room, concurrency;
    vw_run_t           *run;
    vw_engine_t        *e = arg;
    const char         *argv[6 + VW_ENGINE_CLAIM_CHUNK];
    redisAsyncContext  *ac;

    vw_engine_timer(e->heartbeat, vw_engine_visibility(e) / 3);

    ac = vw_engine_wr(e);
    if (ac == NULL) {
        return;
    }

    /* resets the idle time of every entry held, so none looks abandoned */
    argv[0] = "XCLAIM";
    argv[1] = VW_ENGINE_STREAM;
    argv[2] = VW_ENGINE_GROUP;
    argv[3] = e->consumer;
    argv[4] = "0";
    argc = 5;

    for (run = e->runs; run != NULL; run = run->next) {
        argv[argc++] = run->entry;

        if (argc == 5 + VW_ENGINE_CLAIM_CHUNK || run->next == NULL) {
            argv[argc++] = "JUSTID";
            (void) redisAsyncCommandArgv(ac, NULL, NULL, argc, argv, NULL);
            argc = 5;
        }
    }

    if (e->draining) {
        return;
    }

    if (!e->group) {
        /* the last XGROUP CREATE failed (logged): try again */
        (void) redisAsyncCommand(ac, vw_engine_group_created, e,
                                 "XGROUP CREATE " VW_ENGINE_STREAM " "
                                 VW_ENGINE_GROUP " 0 MKSTREAM");
        return;
    }

    concurrency = vw_engine_concurrency(e);
    room = e->held < concurrency ? concurrency - e->held : 0;

    if (room == 0) {
        return;
    }

    (void) redisAsyncCommand(ac, vw_engine_reclaimed, e,
                             "XAUTOCLAIM " VW_ENGINE_STREAM " "
                             VW_ENGINE_GROUP " %s %" PRIu64 " 0-0 COUNT %u",
                             e->consumer, vw_engine_visibility(e), room);
}


/*
 * [next cursor, [entries], [deleted ids]]: a dead worker's entries.  Redis
 * 7 takes the ids of entries deleted from the stream out of the pending
 * list itself and names them third: nothing is left to do for them, and
 * nothing can be, since their fields are gone.  (Redis 6.2 answers nil in
 * their place and keeps them pending: vw_engine_entry() skips a nil.)
 */
static void
vw_engine_reclaimed(redisAsyncContext *ac, void *reply, void *privdata)
{
    size_t        i;
    char          count[24];
    redisReply   *r = reply, *entries, *deleted;
    vw_engine_t  *e = privdata;

    if (r == NULL || e->closing || r->type != REDIS_REPLY_ARRAY
        || r->elements < 2 || r->element[1]->type != REDIS_REPLY_ARRAY)
    {
        return;
    }

    entries = r->element[1];

    for (i = 0; i < entries->elements; i++) {
        if (entries->element[i]->type == REDIS_REPLY_ARRAY
            && entries->element[i]->elements == 2
            && entries->element[i]->element[0]->type == REDIS_REPLY_STRING)
        {
            vw_log("info", "entry reclaimed", "entry",
                   entries->element[i]->element[0]->str, NULL);
        }

        if (!e->draining) {
            vw_engine_entry(e, entries->element[i]);
        }
    }

    deleted = r->elements > 2 ? r->element[2] : NULL;

    if (deleted != NULL && deleted->type == REDIS_REPLY_ARRAY
        && deleted->elements)
    {
        snprintf(count, sizeof(count), "%zu", deleted->elements);
        vw_log("warn", "reclaim met entries deleted from the stream: no "
               "longer pending", "count", count,
               "first", deleted->element[0]->type == REDIS_REPLY_STRING
                        ? deleted->element[0]->str : "", NULL);
    }

    /* the consumers of workers long gone, once their entries are taken */
    if (vw_engine_wr(e) != NULL) {
        (void) redisAsyncCommand(e->wr.ac, vw_engine_consumers, e,
                                 "XINFO CONSUMERS " VW_ENGINE_STREAM " "
                                 VW_ENGINE_GROUP);
    }
}


/*
 * Each worker leaves a consumer in the group, named after its host and
 * pid, so without this they pile up with every restart.  One is removed
 * when it holds no entry and has been idle for 10 visibility timeouts: a
 * live worker blocks in XREADGROUP every second, and the entries of a
 * dead one are reclaimed after one timeout.  XGROUP DELCONSUMER would
 * drop what the consumer holds, so it is sent only at pending 0; its
 * reply says how many it held in the moment between the two commands,
 * which is logged (that worker, if alive, still settles them).
 */
static void
vw_engine_consumers(redisAsyncContext *ac, void *reply, void *privdata)
{
    size_t        i, j;
    uint64_t      limit, idle;
    long long     pending;
    redisReply   *r = reply, *c, *k, *v;
    const char   *name;
    vw_engine_t  *e = privdata;

    if (r == NULL || e->closing || r->type != REDIS_REPLY_ARRAY) {
        return;
    }

    limit = VW_ENGINE_IDLE_CONSUMER * vw_engine_visibility(e);

    for (i = 0; i < r->elements; i++) {
        c = r->element[i];
        name = NULL;
        pending = -1;
        idle = 0;

        for (j = 0; c->type == REDIS_REPLY_ARRAY && j + 1 < c->elements;
             j += 2)
        {
            k = c->element[j];
            v = c->element[j + 1];

            if (k->type != REDIS_REPLY_STRING) {
                continue;
            }

            if (strcmp(k->str, "name") == 0
                && v->type == REDIS_REPLY_STRING)
            {
                name = v->str;

            } else if (strcmp(k->str, "pending") == 0
                       && v->type == REDIS_REPLY_INTEGER)
            {
                pending = v->integer;

            } else if (strcmp(k->str, "idle") == 0
                       && v->type == REDIS_REPLY_INTEGER && v->integer > 0)
            {
                idle = (uint64_t) v->integer;
            }
        }

        if (name == NULL || pending != 0 || idle <= limit
            || strcmp(name, e->consumer) == 0)
        {
            continue;
        }

        (void) redisAsyncCommand(ac, vw_engine_consumer_removed,
                                 strdup(name), "XGROUP DELCONSUMER "
                                 VW_ENGINE_STREAM " " VW_ENGINE_GROUP " %s",
                                 name);
    }
}


static void
vw_engine_consumer_removed(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    char        held[24];
    char       *name = privdata;
    redisReply  *r = reply;

    if (name == NULL) {
        return;
    }

    if (r != NULL && r->type == REDIS_REPLY_INTEGER) {
        snprintf(held, sizeof(held), "%lld", r->integer);
        vw_log(r->integer ? "warn" : "info", "removed an idle consumer",
               "consumer", name, "pending", held, NULL);
    }

    free(name);
}


/* -- retention ------------------------------------------------------------ */

typedef struct {
    vw_engine_t                *engine;
    const char                 *zset;
} vw_retain_t;


static void
vw_engine_retain(evutil_socket_t fd, short what, void *arg)
{
    uint64_t            now, done_ms, dead_ms, period;
    vw_engine_t        *e = arg;
    const vw_conf_t    *conf;
    redisAsyncContext  *ac;

    static vw_retain_t  done, dead;

    conf = e->conf();
    done_ms = (conf && conf->done_retention_ms) ? conf->done_retention_ms
                                                : 86400000;
    dead_ms = (conf && conf->dead_retention_ms) ? conf->dead_retention_ms
                                                : 14 * 86400000ULL;

    /*
     * every 60 s, as docs/WORKER.md says, or every half retention when
     * that is shorter, so a short retention is kept to within 50%
     */
    period = VW_ENGINE_RETAIN_MS;
    period = done_ms / 2 < period ? done_ms / 2 : period;
    period = dead_ms / 2 < period ? dead_ms / 2 : period;
    period = period < 100 ? 100 : period;

    vw_engine_timer(e->retain, period);

    ac = vw_engine_wr(e);
    if (ac == NULL) {
        return;
    }

    now = vw_engine_now();

    done.engine = e;
    done.zset = VW_ENGINE_DONE;
    dead.engine = e;
    dead.zset = VW_ENGINE_DEAD;

    (void) redisAsyncCommand(ac, vw_engine_retain_read, &done,
                             "ZRANGEBYSCORE " VW_ENGINE_DONE " -inf %" PRIu64
                             " LIMIT 0 %d", now > done_ms ? now - done_ms : 0,
                             VW_ENGINE_RETAIN_MAX);
    (void) redisAsyncCommand(ac, vw_engine_retain_read, &dead,
                             "ZRANGEBYSCORE " VW_ENGINE_DEAD " -inf %" PRIu64
                             " LIMIT 0 %d", now > dead_ms ? now - dead_ms : 0,
                             VW_ENGINE_RETAIN_MAX);
}


static void
vw_engine_retain_read(redisAsyncContext *ac, void *reply, void *privdata)
{
    size_t        i;
    redisReply   *r = reply, *m;
    vw_retain_t  *rt = privdata;

    if (r == NULL || rt->engine->closing || r->type != REDIS_REPLY_ARRAY) {
        return;
    }

    for (i = 0; i < r->elements; i++) {
        m = r->element[i];

        if (m->type != REDIS_REPLY_STRING || m->len != 32) {
            continue;
        }

        (void) redisAsyncCommand(ac, NULL, NULL, "MULTI");
        (void) redisAsyncCommand(ac, NULL, NULL,
                                 "DEL {vq}:job:%s {vq}:att:%s", m->str,
                                 m->str);
        (void) redisAsyncCommand(ac, NULL, NULL, "ZREM %s %s", rt->zset,
                                 m->str);
        (void) redisAsyncCommand(ac, NULL, NULL, "EXEC");
    }

    if (r->elements) {
        char  count[24];

        snprintf(count, sizeof(count), "%zu", r->elements);
        vw_log("info", "retention removed jobs", "set", rt->zset, "count",
               count, NULL);
    }
}


/* -- draining ------------------------------------------------------------- */

void
vw_engine_drain(vw_engine_t *e, vw_engine_drained_pt handler, void *data)
{
    uint64_t          timeout;
    vw_run_t         *run, *next;
    const vw_conf_t  *conf;

    if (e->draining) {
        return;
    }

    e->draining = 1;
    e->drained = handler;
    e->drained_data = data;

    conf = e->conf();
    timeout = (conf && conf->shutdown_timeout_ms) ? conf->shutdown_timeout_ms
                                                  : 20000;

    vw_log("info", "draining", NULL);

    /* those that have not started go back at once, due now */
    for (run = e->runs; run != NULL; run = next) {
        next = run->next;

        if (run->state == VW_RUN_WAITING) {
            run->target->waiting--;
            run->state = VW_RUN_SETTLING;
            vw_engine_put_back(run, vw_engine_now(), "draining");
        }
    }

    vw_engine_timer(e->deadline, timeout);
    vw_engine_check_drained(e);
}


/* shutdown_timeout has passed: the attempts still running go back */

static void
vw_engine_deadline(evutil_socket_t fd, short what, void *arg)
{
    vw_engine_t  *e = arg;
    vw_run_t     *run, *next;

    for (run = e->runs; run != NULL; run = next) {
        next = run->next;

        if (run->state == VW_RUN_RUNNING) {
            if (run->connector != NULL) {
                run->connector->cancel(&run->call);
            } else {
                vw_http_cancel(&run->req);
            }

            vw_target_release(run->target, &run->limits, vw_engine_now(),
                              VW_TARGET_CANCELLED, run->probe);
            vw_engine_put_back(run, vw_engine_now(), "shutdown_timeout");
        }
    }

    vw_engine_check_drained(e);

    /*
     * put_back's transactions get a moment; what Redis does not answer
     * by then is left to the visibility timeout
     */
    if (e->drained != NULL) {
        e->forced = 1;
        evtimer_assign(e->deadline, e->base, vw_engine_forced, e);
        vw_engine_timer(e->deadline, 1000);
    }
}


static void
vw_engine_forced(evutil_socket_t fd, short what, void *arg)
{
    vw_engine_t  *e = arg;

    vw_log("warn", "drain incomplete: left to the visibility timeout", NULL);
    vw_engine_check_drained(e);
}


static void
vw_engine_check_drained(vw_engine_t *e)
{
    vw_engine_drained_pt  handler;

    if (!e->draining || e->drained == NULL
        || (!e->forced && (e->held || e->rd.reading)))
    {
        return;
    }

    handler = e->drained;
    e->drained = NULL;
    evtimer_del(e->deadline);

    vw_log("info", "drained", NULL);

    handler(e->drained_data);
}
