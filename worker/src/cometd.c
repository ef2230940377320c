/* cometd.c -- the Streaming API's CometD consumer: change events in */

/*
 * One consumer per [subscription] (docs/CONNECTORS.md, "Change events
 * in"), on the worker's loop, in Bayeux long polling over vw_http:
 *
 *   checkpoint  GET {vq}:replay:<subscription>, once per start
 *   token       vw_oauth_get() (stale set after a 401)
 *   handshake   POST <instance_url>/cometd/<ver>/handshake: the clientId
 *   subscribe   ext.replay {<channel>: checkpoint, or -1 / -2}
 *   connect     long polls in a loop, as the advice says
 *
 * The events of one connect reply are pushed in order, all at once
 * (hiredis pipelines them), and the next connect waits until every push
 * has answered.  Pushes may answer out of order, so the checkpoint is the
 * replay id of the last event of the longest prefix whose pushes
 * succeeded; each advance is SET at once.  A push that fails stops the
 * consumer there: after a backoff it handshakes again and subscribes from
 * the checkpoint, so the events after it come again and the idempotency
 * key <channel>:<replayId> makes one job of each, however often it comes.
 *
 * Any failure (no response, a 5xx, an unknown client, a refused token, a
 * subscribe refused) is answered the same way: a new handshake from the
 * checkpoint, after a backoff when it is not the first failure in a row.
 * A connect that succeeds ends the row.
 *
 * Redis calls and pushes may outlive their consumer (a reload stops it, or
 * shutdown): each carries an op that the consumer detaches when it goes,
 * and whose callback then only frees it.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <jansson.h>

#include "vc_backoff.h"
#include "vw_cometd.h"
#include "vw_engine.h"
#include "vw_http.h"
#include "vw_metrics.h"
#include "vw_oauth.h"


#define VW_CD_BODY_MAX         (64 * 1024 * 1024)  /* one connect reply */
#define VW_CD_REQUEST_MS       30000     /* handshake, subscribe */
#define VW_CD_POLL_MS          110000    /* advice.timeout until told */
#define VW_CD_POLL_SLACK_MS    30000     /* the poll's beyond that */
#define VW_CD_BACKOFF_BASE_MS  1000
#define VW_CD_BACKOFF_CAP_MS   60000
#define VW_CD_REFUSED_MS       60000     /* credentials refused */
#define VW_CD_COOKIES          8
#define VW_CD_ID_LEN           128

#define VW_CD_REPLAY_LATEST    -1LL
#define VW_CD_REPLAY_EARLIEST  -2LL


typedef enum {
    VW_CD_IDLE = 0,
    VW_CD_WAIT,             /* the timer: a backoff or advice.interval */
    VW_CD_CHECKPOINT,       /* GET {vq}:replay:<name> */
    VW_CD_TOKEN,
    VW_CD_HANDSHAKE,
    VW_CD_SUBSCRIBE,
    VW_CD_CONNECT,
    VW_CD_PUSHING           /* the pushes of one connect reply */
} vw_cd_state_e;


typedef enum {
    VW_CD_EV_PENDING = 0,
    VW_CD_EV_DONE,          /* durable, or skipped */
    VW_CD_EV_FAILED
} vw_cd_ev_state_e;


typedef struct vw_cd_sub_s  vw_cd_sub_t;
typedef struct vw_cd_op_s   vw_cd_op_t;


typedef struct {
    long long                   replay;
    vw_cd_ev_state_e            state;
} vw_cd_event_t;


/* a Redis call or a push: its callback finds sub NULL once it is gone */
struct vw_cd_op_s {
    vw_cd_sub_t                *sub;
    vw_cd_op_t                 *next;
    vw_cd_op_t                **prev;
    size_t                      index;      /* a push's event */
    long long                   replay;     /* a SET's */
};


struct vw_cometd_s {
    struct event_base          *base;
    const vw_services_t        *svc;
    vw_queue_t                 *queue;
    vw_cometd_conf_pt           conf;
    vw_cd_sub_t                *subs;
};


struct vw_cd_sub_s {
    vw_cometd_t                *cd;
    vw_cd_sub_t                *next;

    /* copies: a reload frees the configuration they came from */
    char                       *name;
    char                       *channel;
    char                       *job;
    char                       *tenant;
    vw_replay_e                 replay;
    vw_conf_connection_t       *conn;
    char                       *ca_file;
    char                       *proxy;
    uint64_t                    connect_timeout_ms;

    vw_cd_state_e               state;
    unsigned                    next_connect:1;  /* the timer connects;
                                                    else it starts over */
    unsigned                    stale:1;   /* the token was refused */
    unsigned                    handshake:1;  /* advice: handshake next */
    unsigned                    failed:1;  /* a push of the batch did */
    unsigned                    polled:1;  /* the connect succeeded */
    unsigned                    known:1;   /* checkpoint is read */
    unsigned                    earliest:1;   /* the checkpoint is gone:
                                                 from -2 */
    unsigned                    failures;  /* in a row */
    struct event               *timer;

    vw_token_req_t              tr;
    char                       *token;
    char                        instance_url[VW_OAUTH_URL_MAX];

    vw_http_req_t               req;
    struct curl_slist          *headers;
    char                       *url;
    char                       *body;
    char                        client_id[VW_CD_ID_LEN];
    char                       *cookies[VW_CD_COOKIES];  /* "name=value" */
    unsigned long               msg_id;

    long long                   checkpoint;   /* durable; -1, -2: none */
    long long                   subscribed;   /* what subscribe asked */
    uint64_t                    poll_ms;      /* advice.timeout */
    uint64_t                    interval_ms;  /* advice.interval */

    vw_cd_event_t              *batch;
    size_t                      nbatch;
    size_t                      acked;        /* the durable prefix */
    size_t                      pending;

    vw_cd_op_t                 *ops;
};


static vw_cd_sub_t *vw_cd_sub_new(vw_cometd_t *cd,
    const vw_conf_subscription_t *s);
static void vw_cd_sub_free(vw_cd_sub_t *sub);
static int vw_cd_sub_differs(const vw_cd_sub_t *sub,
    const vw_conf_subscription_t *s);
static void vw_cd_start(vw_cd_sub_t *sub);
static void vw_cd_retry(vw_cd_sub_t *sub, uint64_t min_ms);
static void vw_cd_wait(vw_cd_sub_t *sub, uint64_t ms);
static void vw_cd_timer(evutil_socket_t fd, short what, void *arg);
static vw_cd_op_t *vw_cd_op_new(vw_cd_sub_t *sub);
static void vw_cd_op_free(vw_cd_op_t *op);
static struct redisAsyncContext *vw_cd_redis(vw_cd_sub_t *sub);
static void vw_cd_checkpoint_got(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_cd_token(vw_cd_sub_t *sub);
static void vw_cd_token_got(vw_token_req_t *tr);
static int vw_cd_send(vw_cd_sub_t *sub, const char *meta, json_t *msg,
    uint64_t timeout_ms);
static void vw_cd_handshake(vw_cd_sub_t *sub);
static void vw_cd_subscribe(vw_cd_sub_t *sub);
static void vw_cd_connect(vw_cd_sub_t *sub);
static void vw_cd_http_done(vw_http_req_t *req);
static void vw_cd_on_header(vw_http_req_t *req, const char *name,
    size_t nlen, const char *value, size_t vlen);
static json_t *vw_cd_meta(json_t *replies, const char *channel);
static const char *vw_cd_error(json_t *m);
static void vw_cd_advice(vw_cd_sub_t *sub, json_t *m);
static void vw_cd_handshaken(vw_cd_sub_t *sub, json_t *replies);
static void vw_cd_subscribed(vw_cd_sub_t *sub, json_t *replies);
static void vw_cd_connected(vw_cd_sub_t *sub, json_t *replies);
static int vw_cd_from_vantage(json_t *payload);
static int vw_cd_push(vw_cd_sub_t *sub, size_t i, json_t *data);
static void vw_cd_pushed(void *data, int rc, const char *job_id,
    const char *state);
static void vw_cd_advance(vw_cd_sub_t *sub);
static void vw_cd_checkpoint_set(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_cd_batch_end(vw_cd_sub_t *sub);
static void vw_cd_next(vw_cd_sub_t *sub);
static void vw_cd_random_hex(char *buf, size_t bytes);


vw_cometd_t *
vw_cometd_create(struct event_base *base, const vw_services_t *svc,
    vw_queue_t *queue, vw_cometd_conf_pt conf)
{
    vw_cometd_t  *cd;

    cd = calloc(1, sizeof(vw_cometd_t));
    if (cd == NULL) {
        vw_log("error", "cannot start the Streaming API consumers",
               "reason", "out of memory", NULL);
        return NULL;
    }

    cd->base = base;
    cd->svc = svc;
    cd->queue = queue;
    cd->conf = conf;

    vw_cometd_reload(cd);

    return cd;
}


void
vw_cometd_reload(vw_cometd_t *cd)
{
    vw_cd_sub_t                   *sub, **pp;
    const vw_conf_t               *conf;
    const vw_conf_subscription_t  *s;

    if (cd == NULL) {
        return;
    }

    conf = cd->conf();

    pp = &cd->subs;

    while (*pp != NULL) {
        sub = *pp;
        s = conf ? vw_conf_subscription(conf, sub->name) : NULL;

        if (s != NULL && !vw_cd_sub_differs(sub, s)) {
            pp = &sub->next;
            continue;
        }

        vw_log("info", s ? "subscription changed: restarting it"
                         : "subscription removed: stopping it",
               "subscription", sub->name, NULL);

        *pp = sub->next;
        vw_cd_sub_free(sub);
    }

    if (conf == NULL) {
        return;
    }

    for (s = conf->subscriptions; s != NULL; s = s->next) {
        for (sub = cd->subs; sub != NULL; sub = sub->next) {
            if (strcmp(sub->name, s->name) == 0) {
                break;
            }
        }

        if (sub != NULL) {
            continue;
        }

        if (cd->svc == NULL || cd->svc->oauth == NULL
            || cd->svc->http == NULL)
        {
            vw_log("error", "subscription not started: the worker has no "
                   "token manager", "subscription", s->name, NULL);
            continue;
        }

        sub = vw_cd_sub_new(cd, s);
        if (sub == NULL) {
            vw_log("error", "subscription not started", "subscription",
                   s->name, "reason", "out of memory", NULL);
            continue;
        }

        sub->next = cd->subs;
        cd->subs = sub;

        vw_log("info", "subscription started", "subscription", sub->name,
               "channel", sub->channel, "job", sub->job, NULL);

        vw_cd_start(sub);
    }
}


void
vw_cometd_free(vw_cometd_t *cd)
{
    vw_cd_sub_t  *sub;

    if (cd == NULL) {
        return;
    }

    while (cd->subs != NULL) {
        sub = cd->subs;
        cd->subs = sub->next;
        vw_cd_sub_free(sub);
    }

    free(cd);
}


static char *
vw_cd_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}


static vw_cd_sub_t *
vw_cd_sub_new(vw_cometd_t *cd, const vw_conf_subscription_t *s)
{
    vw_cd_sub_t  *sub;

    sub = calloc(1, sizeof(vw_cd_sub_t));
    if (sub == NULL) {
        return NULL;
    }

    sub->cd = cd;
    sub->name = strdup(s->name);
    sub->channel = strdup(s->channel);
    sub->job = strdup(s->job);
    sub->tenant = strdup(s->tenant);
    sub->replay = s->replay;
    sub->conn = vw_conf_connection_copy(s->connection);
    sub->timer = evtimer_new(cd->base, vw_cd_timer, sub);
    sub->checkpoint = VW_CD_REPLAY_LATEST;
    sub->poll_ms = VW_CD_POLL_MS;

    if (s->connection->target != NULL) {
        sub->ca_file = vw_cd_strdup(s->connection->target->ca_file);
        sub->proxy = vw_cd_strdup(s->connection->target->proxy);
        sub->connect_timeout_ms = s->connection->target->connect_timeout_ms;
    }

    if (sub->name == NULL || sub->channel == NULL || sub->job == NULL
        || sub->tenant == NULL || sub->conn == NULL || sub->timer == NULL
        || (s->connection->target != NULL
            && ((s->connection->target->ca_file && sub->ca_file == NULL)
                || (s->connection->target->proxy && sub->proxy == NULL))))
    {
        vw_cd_sub_free(sub);
        return NULL;
    }

    return sub;
}


static void
vw_cd_sub_free(vw_cd_sub_t *sub)
{
    size_t       i;
    vw_cd_op_t  *op;

    if (sub->state == VW_CD_TOKEN) {
        vw_oauth_cancel(&sub->tr);
    }

    vw_token_clear(&sub->tr);

    /* no handler runs after this; big is freed with it */
    vw_http_cancel(&sub->req);

    curl_slist_free_all(sub->headers);
    free(sub->url);
    free(sub->body);

    /* their callbacks come later and find no consumer */
    for (op = sub->ops; op != NULL; op = op->next) {
        op->sub = NULL;
        op->prev = NULL;
    }

    if (sub->timer != NULL) {
        event_free(sub->timer);
    }

    if (sub->token != NULL) {
        explicit_bzero(sub->token, strlen(sub->token));
        free(sub->token);
    }

    for (i = 0; i < VW_CD_COOKIES; i++) {
        free(sub->cookies[i]);
    }

    vw_conf_connection_free(sub->conn);
    free(sub->batch);
    free(sub->name);
    free(sub->channel);
    free(sub->job);
    free(sub->tenant);
    free(sub->ca_file);
    free(sub->proxy);
    free(sub);
}


static int
vw_cd_differ(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a != b;
    }

    return strcmp(a, b) != 0;
}


/* whether a reload changed anything this consumer copied */
static int
vw_cd_sub_differs(const vw_cd_sub_t *sub, const vw_conf_subscription_t *s)
{
    const vw_conf_target_t      *t;
    const vw_conf_connection_t  *a, *b;

    a = sub->conn;
    b = s->connection;
    t = b->target;

    return vw_cd_differ(sub->channel, s->channel)
           || vw_cd_differ(sub->job, s->job)
           || vw_cd_differ(sub->tenant, s->tenant)
           || sub->replay != s->replay
           || vw_cd_differ(a->name, b->name)
           || a->vendor != b->vendor
           || a->auth != b->auth
           || vw_cd_differ(a->login_url, b->login_url)
           || vw_cd_differ(a->token_url, b->token_url)
           || vw_cd_differ(a->api_version, b->api_version)
           || vw_cd_differ(a->client_id, b->client_id)
           || vw_cd_differ(a->username, b->username)
           || vw_cd_differ(a->audience, b->audience)
           || vw_cd_differ(a->private_key, b->private_key)
           || vw_cd_differ(a->client_secret, b->client_secret)
           || vw_cd_differ(a->refresh_token, b->refresh_token)
           || vw_cd_differ(sub->ca_file, t ? t->ca_file : NULL)
           || vw_cd_differ(sub->proxy, t ? t->proxy : NULL)
           || sub->connect_timeout_ms != (t ? t->connect_timeout_ms : 0);
}


/* from the top: the checkpoint once, then a token and a handshake */
static void
vw_cd_start(vw_cd_sub_t *sub)
{
    vw_cd_op_t          *op;
    redisAsyncContext   *ac;

    sub->client_id[0] = '\0';
    sub->handshake = 0;

    if (sub->known) {
        vw_cd_token(sub);
        return;
    }

    ac = vw_cd_redis(sub);
    op = ac ? vw_cd_op_new(sub) : NULL;

    /* at start, the engine's connection may not be up yet */
    if (op == NULL) {
        vw_log(sub->failures ? "warn" : "debug", "cannot read the "
               "subscription's checkpoint: Redis is down", "subscription",
               sub->name, NULL);
        vw_cd_retry(sub, 200);
        return;
    }

    if (redisAsyncCommand(ac, vw_cd_checkpoint_got, op,
                          "GET {vq}:replay:%s", sub->name)
        != REDIS_OK)
    {
        vw_cd_op_free(op);
        vw_cd_retry(sub, VW_CD_BACKOFF_BASE_MS);
        return;
    }

    sub->state = VW_CD_CHECKPOINT;
}


/*
 * Starts over after a failure: at once after the first of a row (an
 * unknown client, a token gone stale), else after a backoff, and never
 * sooner than min_ms.
 */
static void
vw_cd_retry(vw_cd_sub_t *sub, uint64_t min_ms)
{
    uint64_t  ms, rnd;

    ms = 0;

    if (sub->failures) {
        if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t) sizeof(rnd)) {
            rnd = 0;
        }

        /* half the ceiling at least: a retry never hammers */
        ms = vc_backoff_ceiling(VW_CD_BACKOFF_BASE_MS, VW_CD_BACKOFF_CAP_MS,
                                sub->failures);
        ms = ms / 2 + vc_backoff_delay(VW_CD_BACKOFF_BASE_MS,
                                       VW_CD_BACKOFF_CAP_MS, sub->failures,
                                       rnd) / 2;
    }

    if (sub->failures < 32) {
        sub->failures++;
    }

    if (ms < min_ms) {
        ms = min_ms;
    }

    sub->next_connect = 0;
    vw_cd_wait(sub, ms);
}


static void
vw_cd_wait(vw_cd_sub_t *sub, uint64_t ms)
{
    struct timeval  tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;

    sub->state = VW_CD_WAIT;
    evtimer_add(sub->timer, &tv);
}


static void
vw_cd_timer(evutil_socket_t fd, short what, void *arg)
{
    vw_cd_sub_t  *sub = arg;

    sub->state = VW_CD_IDLE;

    if (sub->next_connect) {
        vw_cd_connect(sub);
        return;
    }

    vw_cd_start(sub);
}


static vw_cd_op_t *
vw_cd_op_new(vw_cd_sub_t *sub)
{
    vw_cd_op_t  *op;

    op = calloc(1, sizeof(vw_cd_op_t));
    if (op == NULL) {
        return NULL;
    }

    op->sub = sub;
    op->next = sub->ops;
    op->prev = &sub->ops;

    if (sub->ops != NULL) {
        sub->ops->prev = &op->next;
    }

    sub->ops = op;

    return op;
}


static void
vw_cd_op_free(vw_cd_op_t *op)
{
    if (op->prev != NULL) {
        *op->prev = op->next;

        if (op->next != NULL) {
            op->next->prev = op->prev;
        }
    }

    free(op);
}


static struct redisAsyncContext *
vw_cd_redis(vw_cd_sub_t *sub)
{
    const vw_services_t  *svc = sub->cd->svc;

    return svc->redis ? svc->redis(svc->redis_data) : NULL;
}


static void
vw_cd_checkpoint_got(redisAsyncContext *ac, void *reply, void *privdata)
{
    char         *end, from[32];
    long long     v;
    redisReply   *r = reply;
    vw_cd_op_t   *op = privdata;
    vw_cd_sub_t  *sub = op->sub;

    vw_cd_op_free(op);

    if (sub == NULL) {
        return;
    }

    sub->state = VW_CD_IDLE;

    if (r == NULL || (r->type != REDIS_REPLY_STRING
                      && r->type != REDIS_REPLY_NIL))
    {
        vw_log("warn", "cannot read the subscription's checkpoint",
               "subscription", sub->name, "reason",
               r && r->type == REDIS_REPLY_ERROR ? r->str : "Redis is down",
               NULL);
        vw_cd_retry(sub, VW_CD_BACKOFF_BASE_MS);
        return;
    }

    if (r->type == REDIS_REPLY_STRING) {
        v = strtoll(r->str, &end, 10);

        if (end == r->str || *end != '\0' || v < 0) {
            vw_log("error", "the subscription's checkpoint is not a replay "
                   "id: starting as on a first start", "subscription",
                   sub->name, NULL);

        } else {
            sub->checkpoint = v;
        }
    }

    if (sub->checkpoint < 0) {
        sub->checkpoint = sub->replay == VW_REPLAY_EARLIEST
                          ? VW_CD_REPLAY_EARLIEST : VW_CD_REPLAY_LATEST;
    }

    sub->known = 1;

    snprintf(from, sizeof(from), "%lld", sub->checkpoint);
    vw_log("info", "subscription resumes", "subscription", sub->name,
           "replay_id", from, NULL);

    vw_cd_token(sub);
}


static void
vw_cd_token(vw_cd_sub_t *sub)
{
    vw_token_req_t  *tr = &sub->tr;

    memset(tr, 0, sizeof(vw_token_req_t));
    tr->conn = sub->conn;
    tr->stale = sub->stale ? sub->token : NULL;
    tr->handler = vw_cd_token_got;
    tr->data = sub;
    tr->ca_file = sub->ca_file;
    tr->proxy = sub->proxy;
    tr->connect_timeout_ms = sub->connect_timeout_ms;

    if (vw_oauth_get(sub->cd->svc->oauth, tr) != VW_OK) {
        vw_log("warn", "subscription: no token", "subscription", sub->name,
               "reason", tr->error, NULL);
        vw_cd_retry(sub, VW_CD_BACKOFF_BASE_MS);
        return;
    }

    sub->state = VW_CD_TOKEN;
}


static void
vw_cd_token_got(vw_token_req_t *tr)
{
    vw_cd_sub_t  *sub = tr->data;

    sub->state = VW_CD_IDLE;

    if (tr->rc != VW_OK) {
        vw_log(tr->rc == VW_ERROR ? "error" : "warn",
               "subscription: no token", "subscription", sub->name,
               "connection", sub->conn->name, "reason", tr->error, NULL);
        vw_token_clear(tr);
        vw_cd_retry(sub, tr->rc == VW_ERROR ? VW_CD_REFUSED_MS
                                            : VW_CD_BACKOFF_BASE_MS);
        return;
    }

    if (sub->token != NULL) {
        explicit_bzero(sub->token, strlen(sub->token));
        free(sub->token);
    }

    sub->token = strdup(tr->token);
    vw_token_clear(tr);

    if (sub->token == NULL) {
        vw_cd_retry(sub, VW_CD_BACKOFF_BASE_MS);
        return;
    }

    sub->stale = 0;
    snprintf(sub->instance_url, sizeof(sub->instance_url), "%s",
             tr->instance_url);

    vw_cd_handshake(sub);
}


/*
 * POSTs [msg] to <instance_url>/cometd/<version>/<meta> with the token and
 * the cookies the server set; msg is taken (decref'ed).  Returns VW_OK,
 * or VW_ERROR (logged) when it cannot start.
 */
static int
vw_cd_send(vw_cd_sub_t *sub, const char *meta, json_t *msg,
    uint64_t timeout_ms)
{
    int                 i;
    char               *auth, cookie[4096], id[24];
    size_t              n, len;
    json_t             *a;
    vw_http_req_t      *req = &sub->req;
    struct curl_slist  *l;
    const char         *version;

    snprintf(id, sizeof(id), "%lu", ++sub->msg_id);
    json_object_set_new(msg, "id", json_string(id));

    a = json_array();
    if (a == NULL) {
        json_decref(msg);
        goto nomem;
    }

    /* taken by the array, even when it fails */
    if (json_array_append_new(a, msg) != 0) {
        json_decref(a);
        goto nomem;
    }

    sub->body = json_dumps(a, JSON_COMPACT);
    json_decref(a);

    version = sub->conn->api_version ? sub->conn->api_version : "62.0";
    len = strlen(sub->instance_url) + strlen(version) + strlen(meta) + 16;
    sub->url = malloc(len);

    len = strlen(sub->token) + 32;
    auth = malloc(len);

    if (sub->body == NULL || sub->url == NULL || auth == NULL) {
        free(auth);
        goto nomem;
    }

    /* instance_url has no trailing slash; a stray one is harmless */
    snprintf(sub->url, strlen(sub->instance_url) + strlen(version)
             + strlen(meta) + 16, "%s/cometd/%s/%s", sub->instance_url,
             version, meta);

    snprintf(auth, len, "Authorization: Bearer %s", sub->token);
    l = curl_slist_append(NULL, auth);
    explicit_bzero(auth, len);
    free(auth);
    sub->headers = l;

    if (l != NULL) {
        l = curl_slist_append(sub->headers,
                              "Content-Type: application/json");
    }

    if (l != NULL) {
        sub->headers = l;

        /* the server's cookies (BAYEUX_BROWSER, a load balancer's) */
        n = snprintf(cookie, sizeof(cookie), "Cookie:");

        for (i = 0; i < VW_CD_COOKIES && n < sizeof(cookie); i++) {
            if (sub->cookies[i] != NULL) {
                n += snprintf(cookie + n, sizeof(cookie) - n, "%s%s",
                              n > 7 ? "; " : " ", sub->cookies[i]);
            }
        }

        if (n > 7 && n < sizeof(cookie)) {
            l = curl_slist_append(sub->headers, cookie);
        }
    }

    if (l == NULL) {
        goto nomem;
    }

    sub->headers = l;

    memset(req, 0, sizeof(vw_http_req_t));
    req->method = "POST";
    req->url = sub->url;
    req->headers = sub->headers;
    req->body = (const unsigned char *) sub->body;
    req->body_len = strlen(sub->body);
    req->timeout_ms = timeout_ms;
    req->handler = vw_cd_http_done;
    req->data = sub;
    req->ca_file = sub->ca_file;
    req->proxy = sub->proxy;
    req->connect_timeout_ms = sub->connect_timeout_ms;
    req->body_max = VW_CD_BODY_MAX;
    req->https_only = 1;
    req->on_header = vw_cd_on_header;

    if (vw_http_request(sub->cd->svc->http, req) != VW_OK) {
        vw_log("error", "subscription: cannot send a request",
               "subscription", sub->name, "reason", req->error, NULL);
        goto failed;
    }

    return VW_OK;

nomem:

    vw_log("error", "subscription: out of memory", "subscription",
           sub->name, NULL);

failed:

    curl_slist_free_all(sub->headers);
    sub->headers = NULL;
    free(sub->url);
    sub->url = NULL;
    free(sub->body);
    sub->body = NULL;

    return VW_ERROR;
}


static void
vw_cd_handshake(vw_cd_sub_t *sub)
{
    json_t  *m;

    m = json_pack("{s:s, s:s, s:s, s:[s], s:{s:b}}",
                  "channel", "/meta/handshake", "version", "1.0",
                  "minimumVersion", "1.0",
                  "supportedConnectionTypes", "long-polling",
                  "ext", "replay", 1);

    if (m == NULL
        || vw_cd_send(sub, "handshake", m, VW_CD_REQUEST_MS) != VW_OK)
    {
        vw_cd_retry(sub, VW_CD_BACKOFF_BASE_MS);
        return;
    }

    sub->state = VW_CD_HANDSHAKE;
}


static void
vw_cd_subscribe(vw_cd_sub_t *sub)
{
    json_t  *m, *replay;

    sub->subscribed = sub->earliest ? VW_CD_REPLAY_EARLIEST
                                    : sub->checkpoint;

    replay = json_object();
    if (replay == NULL) {
        vw_cd_retry(sub, VW_CD_BACKOFF_BASE_MS);
        return;
    }

    json_object_set_new(replay, sub->channel,
                        json_integer(sub->subscribed));

    m = json_pack("{s:s, s:s, s:s, s:{s:o}}",
                  "channel", "/meta/subscribe", "clientId", sub->client_id,
                  "subscription", sub->channel, "ext", "replay", replay);

    if (m == NULL
        || vw_cd_send(sub, "subscribe", m, VW_CD_REQUEST_MS) != VW_OK)
    {
        vw_cd_retry(sub, VW_CD_BACKOFF_BASE_MS);
        return;
    }

    sub->state = VW_CD_SUBSCRIBE;
}


static void
vw_cd_connect(vw_cd_sub_t *sub)
{
    json_t  *m;

    m = json_pack("{s:s, s:s, s:s}", "channel", "/meta/connect",
                  "clientId", sub->client_id,
                  "connectionType", "long-polling");

    if (m == NULL
        || vw_cd_send(sub, "connect", m, sub->poll_ms + VW_CD_POLL_SLACK_MS)
           != VW_OK)
    {
        vw_cd_retry(sub, VW_CD_BACKOFF_BASE_MS);
        return;
    }

    sub->state = VW_CD_CONNECT;
}


/* Set-Cookie: name=value; attributes -- the pair kept, by its name */
static void
vw_cd_on_header(vw_http_req_t *req, const char *name, size_t nlen,
    const char *value, size_t vlen)
{
    int           i, free_slot;
    char         *c;
    size_t        len, klen;
    const char   *semi, *eq;
    vw_cd_sub_t  *sub = req->data;

    if (name == NULL || nlen != 10 || strncasecmp(name, "Set-Cookie", 10))
    {
        return;
    }

    semi = memchr(value, ';', vlen);
    len = semi ? (size_t) (semi - value) : vlen;
    eq = memchr(value, '=', len);

    if (eq == NULL || eq == value || len > 1024
        || memchr(value, '\r', len) || memchr(value, '\n', len))
    {
        return;
    }

    klen = eq - value + 1;
    free_slot = -1;

    for (i = 0; i < VW_CD_COOKIES; i++) {
        if (sub->cookies[i] == NULL) {
            if (free_slot == -1) {
                free_slot = i;
            }

            continue;
        }

        if (strncmp(sub->cookies[i], value, klen) == 0) {
            break;
        }
    }

    if (i == VW_CD_COOKIES) {
        if (free_slot == -1) {
            return;
        }

        i = free_slot;
    }

    c = strndup(value, len);
    if (c == NULL) {
        return;
    }

    free(sub->cookies[i]);
    sub->cookies[i] = c;
}


static void
vw_cd_http_done(vw_http_req_t *req)
{
    char           status[16];
    json_t        *replies;
    vw_cd_sub_t   *sub = req->data;
    vw_cd_state_e  state;

    state = sub->state;
    sub->state = VW_CD_IDLE;

    curl_slist_free_all(sub->headers);
    sub->headers = NULL;
    free(sub->url);
    sub->url = NULL;
    free(sub->body);
    sub->body = NULL;

    replies = NULL;

    if (req->status == 200 && req->big != NULL) {
        replies = json_loadb((const char *) req->big, req->big_len, 0, NULL);
    }

    free(req->big);
    req->big = NULL;

    if (req->status == 401) {
        /* a token the server no longer takes: a new one, at once */
        vw_log("info", "subscription: the token was refused: a new one",
               "subscription", sub->name, NULL);
        sub->stale = 1;
        json_decref(replies);
        vw_cd_retry(sub, 0);
        return;
    }

    if (!json_is_array(replies)) {
        snprintf(status, sizeof(status), "%ld", req->status);
        vw_log("warn", "subscription: no Bayeux answer: handshaking again",
               "subscription", sub->name, "status", status, "reason",
               req->failed ? req->error
                           : req->status == 200 ? "not a JSON array" : "",
               NULL);
        json_decref(replies);
        vw_cd_retry(sub, VW_CD_BACKOFF_BASE_MS);
        return;
    }

    switch (state) {

    case VW_CD_HANDSHAKE:
        vw_cd_handshaken(sub, replies);
        break;

    case VW_CD_SUBSCRIBE:
        vw_cd_subscribed(sub, replies);
        break;

    default:
        vw_cd_connected(sub, replies);
        break;
    }

    json_decref(replies);
}


/* the reply of that meta channel in a reply array, or NULL */
static json_t *
vw_cd_meta(json_t *replies, const char *channel)
{
    size_t       i;
    json_t      *m;
    const char  *ch;

    json_array_foreach(replies, i, m) {
        ch = json_string_value(json_object_get(m, "channel"));

        if (ch != NULL && strcmp(ch, channel) == 0) {
            return m;
        }
    }

    return NULL;
}


/* a failed reply's error text, NULL when it succeeded */
static const char *
vw_cd_error(json_t *m)
{
    const char  *err;

    if (m == NULL) {
        return "no reply";
    }

    if (json_is_true(json_object_get(m, "successful"))) {
        return NULL;
    }

    err = json_string_value(json_object_get(m, "error"));

    return err ? err : "unsuccessful";
}


static void
vw_cd_advice(vw_cd_sub_t *sub, json_t *m)
{
    json_t      *advice, *v;
    const char  *reconnect;

    advice = json_object_get(m, "advice");
    if (!json_is_object(advice)) {
        return;
    }

    v = json_object_get(advice, "timeout");
    if (json_is_integer(v) && json_integer_value(v) >= 0
        && json_integer_value(v) <= 3600000)
    {
        sub->poll_ms = json_integer_value(v);
    }

    v = json_object_get(advice, "interval");
    if (json_is_integer(v) && json_integer_value(v) >= 0
        && json_integer_value(v) <= 3600000)
    {
        sub->interval_ms = json_integer_value(v);
    }

    reconnect = json_string_value(json_object_get(advice, "reconnect"));

    if (reconnect != NULL) {
        sub->handshake = strcmp(reconnect, "retry") != 0;
    }
}


static void
vw_cd_handshaken(vw_cd_sub_t *sub, json_t *replies)
{
    json_t      *m, *reason;
    const char  *err, *id;

    m = vw_cd_meta(replies, "/meta/handshake");
    err = vw_cd_error(m);

    if (err != NULL) {
        reason = json_object_get(json_object_get(json_object_get(m, "ext"),
                                                 "sfdc"),
                                 "failureReason");

        /* 403::Handshake denied, failureReason 401::Authentication... */
        if (json_is_string(reason)
            && strncmp(json_string_value(reason), "401::", 5) == 0)
        {
            vw_log("info", "subscription: the token was refused: a new one",
                   "subscription", sub->name, NULL);
            sub->stale = 1;
            vw_cd_retry(sub, 0);
            return;
        }

        vw_log("warn", "subscription: handshake refused", "subscription",
               sub->name, "error", err, NULL);
        vw_cd_retry(sub, VW_CD_BACKOFF_BASE_MS);
        return;
    }

    id = json_string_value(json_object_get(m, "clientId"));

    if (id == NULL || strlen(id) >= sizeof(sub->client_id)) {
        vw_log("warn", "subscription: a handshake without a clientId",
               "subscription", sub->name, NULL);
        vw_cd_retry(sub, VW_CD_BACKOFF_BASE_MS);
        return;
    }

    snprintf(sub->client_id, sizeof(sub->client_id), "%s", id);
    sub->handshake = 0;
    vw_cd_advice(sub, m);

    vw_log("debug", "subscription: handshake", "subscription", sub->name,
           NULL);

    vw_cd_subscribe(sub);
}


static void
vw_cd_subscribed(vw_cd_sub_t *sub, json_t *replies)
{
    char         from[32];
    json_t      *m;
    const char  *err;

    m = vw_cd_meta(replies, "/meta/subscribe");
    err = vw_cd_error(m);

    if (err == NULL) {
        snprintf(from, sizeof(from), "%lld", sub->subscribed);
        vw_log("info", "subscribed", "subscription", sub->name, "channel",
               sub->channel, "replay_id", from, NULL);
        vw_cd_connect(sub);
        return;
    }

    /*
     * "400::The replayId {N} you provided was invalid": N is older than
     * the retention (72 h).  What came between it and the oldest event
     * still retained is lost for good; the operator must hear of it.
     */
    if (sub->subscribed >= 0 && strncmp(err, "400::The replayId", 17) == 0) {
        snprintf(from, sizeof(from), "%lld", sub->subscribed);
        vw_log("error", "subscription: its checkpoint is no longer "
               "retained: events after it and before the oldest retained "
               "one are LOST; resuming from the oldest retained (-2)",
               "subscription", sub->name, "channel", sub->channel,
               "checkpoint", from, NULL);
        sub->earliest = 1;
        vw_cd_subscribe(sub);
        return;
    }

    if (strncmp(err, "403::", 5) == 0) {
        /* an unknown client: a new handshake at once */
        vw_cd_retry(sub, 0);
        return;
    }

    vw_log("error", "subscription refused", "subscription", sub->name,
           "channel", sub->channel, "error", err, NULL);
    vw_cd_retry(sub, VW_CD_BACKOFF_BASE_MS);
}


static void
vw_cd_connected(vw_cd_sub_t *sub, json_t *replies)
{
    size_t       i, n;
    json_t      *m, *data, *rid;
    const char  *err, *ch;

    m = vw_cd_meta(replies, "/meta/connect");
    err = vw_cd_error(m);

    if (m != NULL) {
        vw_cd_advice(sub, m);
    }

    /* the events delivered are taken even when the connect failed */
    n = 0;

    json_array_foreach(replies, i, data) {
        ch = json_string_value(json_object_get(data, "channel"));

        if (ch != NULL && strcmp(ch, sub->channel) == 0) {
            n++;
        }
    }

    free(sub->batch);
    sub->batch = NULL;
    sub->nbatch = 0;
    sub->acked = 0;
    sub->pending = 0;
    sub->failed = 0;

    sub->polled = (err == NULL);

    if (err != NULL && strncmp(err, "401::", 5) == 0) {
        /* 401::Authentication invalid: the session expired */
        vw_log("info", "subscription: the token was refused: a new one",
               "subscription", sub->name, NULL);
        sub->stale = 1;
        sub->handshake = 1;

    } else if (err != NULL) {
        /* 403::Unknown client and the like: a new handshake */
        vw_log("info", "subscription: handshaking again", "subscription",
               sub->name, "error", err, NULL);
        sub->handshake = 1;
    }

    if (n > 0) {
        sub->batch = calloc(n, sizeof(vw_cd_event_t));

        if (sub->batch == NULL) {
            vw_log("error", "subscription: out of memory", "subscription",
                   sub->name, NULL);
            vw_cd_retry(sub, VW_CD_BACKOFF_BASE_MS);
            return;
        }
    }

    sub->state = VW_CD_PUSHING;

    json_array_foreach(replies, i, m) {
        ch = json_string_value(json_object_get(m, "channel"));

        if (ch == NULL || strcmp(ch, sub->channel) != 0) {
            continue;
        }

        data = json_object_get(m, "data");
        rid = json_object_get(json_object_get(data, "event"), "replayId");

        if (!json_is_integer(rid) || json_integer_value(rid) < 0
            || !json_is_object(json_object_get(data, "payload")))
        {
            vw_log("warn", "subscription: an event without a replay id or "
                   "a payload: skipped", "subscription", sub->name, NULL);
            n--;
            continue;
        }

        sub->batch[sub->nbatch].replay = json_integer_value(rid);
        sub->batch[sub->nbatch].state = VW_CD_EV_PENDING;
        sub->nbatch++;
        sub->pending++;

        if (vw_cd_push(sub, sub->nbatch - 1, data) != VW_OK) {
            sub->batch[sub->nbatch - 1].state = VW_CD_EV_FAILED;
            sub->pending--;
            sub->failed = 1;
            break;
        }
    }

    /* what was skipped or refused at once; pushes answer later */
    vw_cd_advance(sub);

    if (sub->pending == 0) {
        vw_cd_batch_end(sub);
    }
}


/*
 * A change Vantage itself wrote: the Salesforce connector sends
 * Sforce-Call-Options: client=vantage, which the change event's
 * changeOrigin repeats ("com/salesforce/api/rest/62.0;client=vantage").
 */
static int
vw_cd_from_vantage(json_t *payload)
{
    size_t       n;
    const char  *origin, *p;

    origin = json_string_value(json_object_get(
                 json_object_get(payload, "ChangeEventHeader"),
                 "changeOrigin"));

    if (origin == NULL) {
        return 0;
    }

    n = sizeof("client=vantage") - 1;

    for (p = strstr(origin, "client=vantage"); p != NULL;
         p = strstr(p + 1, "client=vantage"))
    {
        if ((p == origin || strchr(";, ", p[-1]) != NULL)
            && (p[n] == '\0' || strchr(";, ", p[n]) != NULL))
        {
            return 1;
        }
    }

    return 0;
}


/*
 * The event's job: the payload as the body, <channel>:<replayId> as the
 * idempotency key.  A skipped event is done at once.  Returns VW_OK, or
 * VW_ERROR when the push cannot start.
 */
static int
vw_cd_push(vw_cd_sub_t *sub, size_t i, json_t *data)
{
    int                   rc;
    char                  idem[600], corr[300], rid[32], *body, *headers;
    json_t               *payload, *h, *ids;
    vw_job_t              job;
    vw_cd_op_t           *op;
    const char           *record;
    const vw_conf_t      *conf;
    vw_queue_limits_t     lim;

    payload = json_object_get(data, "payload");
    snprintf(rid, sizeof(rid), "%lld", sub->batch[i].replay);

    if (vw_cd_from_vantage(payload)) {
        vw_log("debug", "subscription: a change Vantage wrote: skipped",
               "subscription", sub->name, "replay_id", rid, NULL);
        sub->batch[i].state = VW_CD_EV_DONE;
        sub->pending--;
        return VW_OK;
    }

    conf = sub->cd->conf();
    vw_server_limits(conf, conf ? vw_conf_job(conf, sub->job,
                                              strlen(sub->job))
                                : NULL,
                     &lim);

    /* the first record of a change event; none for a platform event */
    ids = json_object_get(json_object_get(payload, "ChangeEventHeader"),
                          "recordIds");
    record = json_string_value(json_array_get(ids, 0));

    h = json_pack("[[s,s]]", "Content-Type", "application/json");
    if (h != NULL && record != NULL && strlen(record) <= 256) {
        json_array_append_new(h, json_pack("[s,s+]", "X-Vantage-Source",
                                           "salesforce:", record));
    }

    headers = h ? json_dumps(h, JSON_COMPACT) : NULL;
    json_decref(h);

    body = json_dumps(payload, JSON_COMPACT | JSON_PRESERVE_ORDER);
    op = vw_cd_op_new(sub);

    if (headers == NULL || body == NULL || op == NULL) {
        free(headers);
        free(body);
        if (op != NULL) {
            vw_cd_op_free(op);
        }
        return VW_ERROR;
    }

    op->index = i;

    snprintf(idem, sizeof(idem), "%.500s:%s", sub->channel, rid);
    snprintf(corr, sizeof(corr), "%.200s:%s", sub->name, rid);

    memset(&job, 0, sizeof(vw_job_t));
    vw_cd_random_hex(job.id, 16);

#define vw_set(f, s)                                                          \
    job.f.data = (const unsigned char *) (s);                                 \
    job.f.len = strlen(s)

    vw_set(type, sub->job);
    vw_set(tenant, sub->tenant);
    vw_set(idempotency_key, idem);
    vw_set(correlation_id, corr);
    vw_set(method, "POST");
    vw_set(uri, sub->channel);
    vw_set(headers, headers);
    vw_set(body, body);

    /* with ordering on the job type, one record's changes in order */
    if (record != NULL) {
        vw_set(ordering_key, record);
    }

#undef vw_set

    rc = vw_queue_push(sub->cd->queue, &job, &lim, vw_cd_pushed, op);

    /* the queue copied what it needs */
    free(headers);
    free(body);

    if (rc != VW_OK) {
        vw_log("warn", "subscription: the job queue is unavailable",
               "subscription", sub->name, "replay_id", rid, NULL);
        vw_cd_op_free(op);
        return VW_ERROR;
    }

    return VW_OK;
}


static void
vw_cd_pushed(void *data, int rc, const char *job_id, const char *state)
{
    char          rid[32];
    vw_cd_op_t   *op = data;
    vw_cd_sub_t  *sub = op->sub;
    size_t        i = op->index;

    vw_cd_op_free(op);

    if (sub == NULL) {
        return;
    }

    snprintf(rid, sizeof(rid), "%lld", sub->batch[i].replay);

    /* VW_OK: written, or the job the key already names */
    if (rc == VW_OK && state == NULL) {
        vw_metrics_inc(VW_METRICS_JOBS_TOTAL, sub->job, "accepted");
    }

    if (rc == VW_OK || rc == VW_DECLINED) {
        if (rc == VW_DECLINED) {
            vw_log("warn", "subscription: an event's idempotency key names "
                   "a job with another body: taken as that job",
                   "subscription", sub->name, "replay_id", rid, NULL);
        }

        sub->batch[i].state = VW_CD_EV_DONE;

    } else {
        vw_log("warn", "subscription: an event's job was not written",
               "subscription", sub->name, "replay_id", rid, "reason",
               rc == VW_AGAIN ? "the in-flight cap is reached"
               : rc == VW_BUSY ? "its idempotency key is being written"
               : "the job queue is unavailable", NULL);
        sub->batch[i].state = VW_CD_EV_FAILED;
        sub->failed = 1;
    }

    sub->pending--;
    vw_cd_advance(sub);

    if (sub->pending == 0) {
        vw_cd_batch_end(sub);
    }
}


/* the checkpoint moves over the prefix of events done, never past one */
static void
vw_cd_advance(vw_cd_sub_t *sub)
{
    char                rid[32];
    size_t              from;
    vw_cd_op_t         *op;
    redisAsyncContext  *ac;

    from = sub->acked;

    while (sub->acked < sub->nbatch
           && sub->batch[sub->acked].state == VW_CD_EV_DONE)
    {
        sub->acked++;
    }

    if (sub->acked == from) {
        return;
    }

    sub->checkpoint = sub->batch[sub->acked - 1].replay;
    sub->earliest = 0;

    snprintf(rid, sizeof(rid), "%lld", sub->checkpoint);

    ac = vw_cd_redis(sub);
    op = ac ? vw_cd_op_new(sub) : NULL;

    /*
     * Not kept in Redis: a restart re-reads an older checkpoint and the
     * events after it come again, each meeting its idempotency key
     */
    if (op == NULL) {
        vw_log("warn", "subscription: checkpoint not saved: Redis is down",
               "subscription", sub->name, "replay_id", rid, NULL);
        return;
    }

    op->replay = sub->checkpoint;

    if (redisAsyncCommand(ac, vw_cd_checkpoint_set, op,
                          "SET {vq}:replay:%s %s", sub->name, rid)
        != REDIS_OK)
    {
        vw_cd_op_free(op);
    }
}


static void
vw_cd_checkpoint_set(redisAsyncContext *ac, void *reply, void *privdata)
{
    char          rid[32];
    redisReply   *r = reply;
    vw_cd_op_t   *op = privdata;
    vw_cd_sub_t  *sub = op->sub;

    snprintf(rid, sizeof(rid), "%lld", op->replay);
    vw_cd_op_free(op);

    if (sub == NULL) {
        return;
    }

    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        vw_log("warn", "subscription: checkpoint not saved", "subscription",
               sub->name, "replay_id", rid, "reason",
               r ? r->str : "Redis is down", NULL);
    }
}


/* every push of the batch has answered */
static void
vw_cd_batch_end(vw_cd_sub_t *sub)
{
    char  rid[32];

    sub->state = VW_CD_IDLE;

    if (sub->failed) {
        /* from the checkpoint again, after a backoff */
        snprintf(rid, sizeof(rid), "%lld", sub->checkpoint);
        vw_log("warn", "subscription: stopped at an event whose job was "
               "not written: subscribing again from the checkpoint",
               "subscription", sub->name, "replay_id", rid, NULL);
        vw_cd_retry(sub, VW_CD_BACKOFF_BASE_MS);
        return;
    }

    /* a connect answered and all it brought is durable: the row ends */
    if (sub->polled) {
        sub->failures = 0;
    }

    vw_cd_next(sub);
}


/* as the advice says: connect again, or handshake again */
static void
vw_cd_next(vw_cd_sub_t *sub)
{
    if (sub->handshake) {
        vw_cd_retry(sub, 0);
        return;
    }

    if (sub->interval_ms) {
        sub->next_connect = 1;
        vw_cd_wait(sub, sub->interval_ms);
        return;
    }

    vw_cd_connect(sub);
}


static void
vw_cd_random_hex(char *buf, size_t bytes)
{
    size_t         i;
    unsigned char  rnd[32];

    if (bytes > sizeof(rnd)
        || getrandom(rnd, bytes, 0) != (ssize_t) bytes)
    {
        /* rare; the id only needs to be unique, not secret */
        for (i = 0; i < bytes && i < sizeof(rnd); i++) {
            rnd[i] = (unsigned char) random();
        }
    }

    for (i = 0; i < bytes; i++) {
        snprintf(buf + 2 * i, 3, "%02x", rnd[i]);
    }
}
