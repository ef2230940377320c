/* check_connection.c -- --check-connection: one token, as a job would */

/*
 * vantage-worker -c <file> --check-connection <name> gets a token for
 * the [connection] <name> the way the engine does (oauth.c: the copy in
 * Redis, the lock, the vault, the token endpoint over the connection's
 * target's ca_file and proxy), without the worker's start-up: no socket,
 * no consumer group, no job.  It prints one JSON line on stdout,
 *
 *   {"connection":"acme-sf","ok":true,"instance_url":"https://...",
 *    "expires_in_s":7140,"source":"grant"}
 *
 * or {"connection":"acme-sf","ok":false,"error":"..."}, never the token,
 * and exits 0 or 1.  So an operator checks a connection's credentials
 * after putting them in the vault, before any job needs them.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "vw_check_connection.h"
#include "vw_conf.h"
#include "vw_core.h"
#include "vw_http.h"
#include "vw_oauth.h"
#include "vw_services.h"


#define VW_CHECK_GRACE_MS  5000   /* beyond the request's timeout */


typedef struct {
    struct event_base          *base;
    redisAsyncContext          *ac;
    vw_token_req_t              tr;
    int                         done;
    int                         rc;
} vw_check_t;


static const vw_conf_t  *vw_check_conf_in_force;


static const vw_conf_t *vw_check_conf(void);
static redisAsyncContext *vw_check_redis(void *data);
static void vw_check_connected(const redisAsyncContext *ac, int status);
static void vw_check_disconnected(const redisAsyncContext *ac, int status);
static void vw_check_authed(redisAsyncContext *ac, void *reply, void *data);
static void vw_check_got(vw_token_req_t *tr);
static void vw_check_timeout(evutil_socket_t fd, short what, void *arg);
static void vw_check_print(const char *name, const vw_token_req_t *tr);


int
vw_check_connection(const vw_conf_t *conf, const char *name)
{
    int                          port;
    char                        *host, *colon, consumer[300], hn[256];
    vw_check_t                   ck;
    vw_oauth_t                  *oauth;
    vw_http_t                   *http;
    struct event                *timer;
    struct timeval               tv;
    vw_services_t                svc;
    const vw_conf_connection_t  *conn;

    memset(&ck, 0, sizeof(vw_check_t));
    ck.rc = 1;
    ck.tr.rc = VW_ERROR;

    conn = vw_conf_connection(conf, name);
    if (conn == NULL) {
        snprintf(ck.tr.error, sizeof(ck.tr.error),
                 "no [connection %s] in %s", name, conf->file);
        vw_check_print(name, &ck.tr);
        return 1;
    }

    if (conf->redis == NULL) {
        snprintf(ck.tr.error, sizeof(ck.tr.error), "no redis configured");
        vw_check_print(name, &ck.tr);
        return 1;
    }

    vw_check_conf_in_force = conf;

    if (gethostname(hn, sizeof(hn)) != 0) {
        snprintf(hn, sizeof(hn), "localhost");
    }

    hn[sizeof(hn) - 1] = '\0';
    snprintf(consumer, sizeof(consumer), "%s:%ld:check", hn,
             (long) getpid());

    curl_global_init(CURL_GLOBAL_DEFAULT);

    ck.base = event_base_new();
    http = ck.base ? vw_http_create(ck.base) : NULL;
    timer = ck.base ? evtimer_new(ck.base, vw_check_timeout, &ck) : NULL;

    if (http == NULL || timer == NULL) {
        snprintf(ck.tr.error, sizeof(ck.tr.error), "cannot start the loop");
        vw_check_print(name, &ck.tr);
        goto done;
    }

    /* the Redis connection, AUTH queued first as the engine does */
    if (strncmp(conf->redis, "unix:", 5) == 0) {
        ck.ac = redisAsyncConnectUnix(conf->redis + 5);

    } else {
        host = strdup(conf->redis);
        colon = host ? strrchr(host, ':') : NULL;

        if (colon == NULL) {
            free(host);
            snprintf(ck.tr.error, sizeof(ck.tr.error), "redis: not "
                     "host:port or unix:<path>");
            vw_check_print(name, &ck.tr);
            goto done;
        }

        *colon = '\0';
        port = atoi(colon + 1);
        ck.ac = redisAsyncConnect(host, port);
        free(host);
    }

    if (ck.ac == NULL || ck.ac->err
        || redisLibeventAttach(ck.ac, ck.base) != REDIS_OK)
    {
        snprintf(ck.tr.error, sizeof(ck.tr.error), "cannot connect to "
                 "Redis: %s", ck.ac ? ck.ac->errstr : "out of memory");
        vw_check_print(name, &ck.tr);

        if (ck.ac != NULL) {
            redisAsyncFree(ck.ac);
            ck.ac = NULL;
        }

        goto done;
    }

    ck.ac->data = &ck;
    redisAsyncSetConnectCallback(ck.ac, vw_check_connected);
    redisAsyncSetDisconnectCallback(ck.ac, vw_check_disconnected);

    if (conf->redis_password != NULL) {
        (void) redisAsyncCommand(ck.ac, vw_check_authed, &ck, "AUTH %b",
                                 conf->redis_password,
                                 strlen(conf->redis_password));
    }

    memset(&svc, 0, sizeof(vw_services_t));
    svc.base = ck.base;
    svc.http = http;
    svc.consumer = consumer;
    svc.redis = vw_check_redis;
    svc.redis_data = &ck;
    svc.conf = vw_check_conf;

    oauth = vw_oauth_create(&svc);
    if (oauth == NULL) {
        snprintf(ck.tr.error, sizeof(ck.tr.error), "out of memory");
        vw_check_print(name, &ck.tr);
        goto done;
    }

    svc.oauth = oauth;

    ck.tr.conn = conn;
    ck.tr.timeout_ms = 0;
    ck.tr.handler = vw_check_got;
    ck.tr.data = &ck;
    ck.tr.ca_file = conn->target ? conn->target->ca_file : NULL;
    ck.tr.proxy = conn->target ? conn->target->proxy : NULL;
    ck.tr.connect_timeout_ms = conn->target
                               ? conn->target->connect_timeout_ms : 0;

    if (vw_oauth_get(oauth, &ck.tr) != VW_OK) {
        vw_check_print(name, &ck.tr);
        vw_oauth_free(oauth);
        goto done;
    }

    tv.tv_sec = (30000 + VW_CHECK_GRACE_MS) / 1000;
    tv.tv_usec = 0;
    evtimer_add(timer, &tv);

    event_base_dispatch(ck.base);

    if (!ck.done) {
        ck.tr.rc = VW_AGAIN;
        snprintf(ck.tr.error, sizeof(ck.tr.error), "%s: no answer in time",
                 name);
        vw_oauth_cancel(&ck.tr);
    }

    vw_check_print(name, &ck.tr);
    vw_token_clear(&ck.tr);

    ck.rc = ck.tr.rc == VW_OK ? 0 : 1;

    vw_oauth_free(oauth);

done:

    /* the flights' Redis replies still due are answered, then freed */
    if (ck.ac != NULL) {
        redisAsyncFree(ck.ac);
        ck.ac = NULL;
    }

    if (timer != NULL) {
        event_free(timer);
    }

    vw_http_free(http);

    if (ck.base != NULL) {
        event_base_free(ck.base);
    }

    curl_global_cleanup();
    vw_check_conf_in_force = NULL;

    return ck.rc;
}


static const vw_conf_t *
vw_check_conf(void)
{
    return vw_check_conf_in_force;
}


static redisAsyncContext *
vw_check_redis(void *data)
{
    vw_check_t  *ck = data;

    return ck->ac;
}


static void
vw_check_connected(const redisAsyncContext *ac, int status)
{
    vw_check_t  *ck = ac->data;

    if (status != REDIS_OK) {
        /* hiredis frees the context after this */
        ck->ac = NULL;
    }
}


static void
vw_check_disconnected(const redisAsyncContext *ac, int status)
{
    vw_check_t  *ck = ac->data;

    ck->ac = NULL;

    if (ck->done) {
        event_base_loopbreak(ck->base);
    }
}


/* a refused password: the commands behind it fail with Redis's error */
static void
vw_check_authed(redisAsyncContext *ac, void *reply, void *data)
{
    redisReply  *r = reply;

    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        vw_log("error", "Redis refused the password", "reason", r->str,
               NULL);
    }
}


/*
 * The answer.  The lock's DEL and the token's SET, if any, are still in
 * hiredis's buffer: a graceful disconnect sends them and waits for their
 * replies before the loop ends.
 */
static void
vw_check_got(vw_token_req_t *tr)
{
    vw_check_t  *ck = tr->data;

    ck->done = 1;

    if (ck->ac != NULL) {
        redisAsyncDisconnect(ck->ac);
        return;
    }

    event_base_loopbreak(ck->base);
}


static void
vw_check_timeout(evutil_socket_t fd, short what, void *arg)
{
    vw_check_t  *ck = arg;

    event_base_loopbreak(ck->base);
}


static void
vw_check_print(const char *name, const vw_token_req_t *tr)
{
    char             *s;
    json_t           *j;
    long long         left;
    struct timespec   ts;

    if (tr->rc == VW_OK) {
        left = -1;

        if (tr->expires_ms != 0) {
            clock_gettime(CLOCK_REALTIME, &ts);
            left = ((long long) tr->expires_ms
                    - ((long long) ts.tv_sec * 1000
                       + ts.tv_nsec / 1000000)) / 1000;
        }

        j = json_pack("{s:s, s:b, s:s, s:o, s:s}", "connection", name,
                      "ok", 1, "instance_url", tr->instance_url,
                      "expires_in_s", left < 0 ? json_null()
                                               : json_integer(left),
                      "source", tr->source == VW_TOKEN_REDIS ? "redis"
                                : tr->source == VW_TOKEN_VAULT ? "vault"
                                : tr->source == VW_TOKEN_MEMORY ? "memory"
                                : "grant");

    } else {
        j = json_pack("{s:s, s:b, s:s, s:b}", "connection", name, "ok", 0,
                      "error", tr->error, "retryable", tr->rc == VW_AGAIN);
    }

    s = j ? json_dumps(j, JSON_COMPACT) : NULL;

    if (s != NULL) {
        printf("%s\n", s);
        fflush(stdout);
        free(s);

    } else {
        printf("{\"ok\":false,\"error\":\"out of memory\"}\n");
    }

    json_decref(j);
}
