/* ngx_vantage_redis.c -- hiredis async context on nginx connections + timers */

/*
 * Each worker process keeps one connection to Redis and pipelines every
 * request's commands over it: commands queued while the event loop runs one
 * batch of events are written together, by a posted write event, at the end
 * of that batch.
 *
 * hiredis owns the socket and the protocol; nginx owns the events.  The
 * socket is wrapped in an nginx connection registered like an upstream
 * peer's (edge-triggered with epoll), so:
 *
 *   - reads drain the socket until EAGAIN through c->recv and feed hiredis's
 *     reader, because redisAsyncHandleRead() reads once and an edge is not
 *     reported again for data left behind;
 *   - hiredis 0.14 has no timer hook, so timeouts are one nginx timer, set
 *     to the deadline of the oldest call waiting for a reply (replies come
 *     in order) or of the connection being made.  A timeout closes the
 *     connection: every reply behind the late one would be late as well;
 *   - failures feed a circuit breaker: after breaker_failures in a row no
 *     call is sent for breaker_cooldown, and then a PING from a timer, not a
 *     request, decides whether Redis is back.
 */

#include "ngx_vantage_module.h"


/*
 * exported by hiredis since 0.11 but declared in async.h only from 1.0:
 * processes the replies the reader holds and runs their callbacks
 */
void redisProcessCallbacks(redisAsyncContext *ac);


#define NGX_VANTAGE_REDIS_CLOSED     0    /* breaker states */
#define NGX_VANTAGE_REDIS_OPEN       1
#define NGX_VANTAGE_REDIS_PROBING    2

#define NGX_VANTAGE_REDIS_BACKOFF_MIN  50


struct ngx_vantage_redis_call_s {
    ngx_queue_t                     queue;
    ngx_msec_t                      deadline;
    uint64_t                        start;     /* for the metrics */
    ngx_vantage_redis_handler_pt    handler;
    void                           *data;
};


typedef struct {
    ngx_vantage_redis_conf_t       *conf;
    ngx_log_t                      *log;
    redisAsyncContext              *ac;
    ngx_connection_t               *c;
    ngx_queue_t                     pending;   /* calls, in reply order */
    ngx_queue_t                     free;
    ngx_event_t                     timer;
    ngx_event_t                     probe;
    ngx_msec_t                      connect_deadline;
    ngx_msec_t                      next_connect;
    ngx_msec_t                      backoff;
    ngx_uint_t                      failures;
    ngx_uint_t                      breaker;
    unsigned                        connected:1;
    unsigned                        closing:1;
    unsigned                        in_write:1;
} ngx_vantage_redis_t;


static ngx_int_t ngx_vantage_redis_connect(ngx_vantage_redis_t *st);
static void ngx_vantage_redis_close(ngx_vantage_redis_t *st);
static void ngx_vantage_redis_connected(const redisAsyncContext *ac,
    int status);
static void ngx_vantage_redis_disconnected(const redisAsyncContext *ac,
    int status);
static void ngx_vantage_redis_read_handler(ngx_event_t *rev);
static void ngx_vantage_redis_write_handler(ngx_event_t *wev);
static void ngx_vantage_redis_add_read(void *data);
static void ngx_vantage_redis_del_read(void *data);
static void ngx_vantage_redis_add_write(void *data);
static void ngx_vantage_redis_del_write(void *data);
static void ngx_vantage_redis_cleanup(void *data);
static void ngx_vantage_redis_reply(redisAsyncContext *ac, void *reply,
    void *privdata);
static ngx_int_t ngx_vantage_redis_queue(ngx_vantage_redis_t *st,
    ngx_vantage_redis_cmd_t *cmds, ngx_uint_t n, ngx_uint_t reply,
    ngx_vantage_redis_call_t *call);
static ngx_vantage_redis_call_t *ngx_vantage_redis_call_alloc(
    ngx_vantage_redis_t *st);
static void ngx_vantage_redis_arm(ngx_vantage_redis_t *st);
static ngx_int_t ngx_vantage_redis_deadline(ngx_vantage_redis_t *st,
    ngx_msec_t *deadline);
static void ngx_vantage_redis_timeout(ngx_event_t *ev);
static void ngx_vantage_redis_probe(ngx_event_t *ev);
static void ngx_vantage_redis_probe_done(void *data, redisReply *reply);
static ngx_int_t ngx_vantage_redis_own(ngx_vantage_redis_t *st, int argc,
    const char **argv, size_t *argvlen, ngx_vantage_redis_handler_pt handler,
    void *data);
static void ngx_vantage_redis_login_done(void *data, redisReply *reply);
static void ngx_vantage_redis_failure(ngx_vantage_redis_t *st,
    ngx_uint_t kind);
static void ngx_vantage_redis_success(ngx_vantage_redis_t *st);
static char *ngx_vantage_redis_read_secret(ngx_conf_t *cf, ngx_str_t *path,
    ngx_str_t *secret);
static void *ngx_vantage_redis_create_string(const redisReadTask *task,
    char *str, size_t len);
static void *ngx_vantage_redis_create_array(const redisReadTask *task,
    int elements);
static void *ngx_vantage_redis_create_integer(const redisReadTask *task,
    long long value);
static void *ngx_vantage_redis_create_nil(const redisReadTask *task);
static void ngx_vantage_redis_free_object(void *obj);


/*
 * hiredis's reader with replies kept on free lists: a limit's reply is
 * seven objects, and hiredis's own functions malloc() and free() each of
 * them.  The objects are the same redisReply as hiredis makes.
 */
static redisReplyObjectFunctions  ngx_vantage_redis_reply_fns = {
    ngx_vantage_redis_create_string,
    ngx_vantage_redis_create_array,
    ngx_vantage_redis_create_integer,
    ngx_vantage_redis_create_nil,
    ngx_vantage_redis_free_object
};

#define NGX_VANTAGE_REDIS_FREE_MAX     1024    /* replies kept for reuse */
#define NGX_VANTAGE_REDIS_SMALL_ARRAY  8       /* element vectors kept */

static redisReply   *ngx_vantage_redis_free_replies;
static redisReply  **ngx_vantage_redis_free_vectors;
static ngx_uint_t    ngx_vantage_redis_nfree;


static ngx_vantage_redis_t  *ngx_vantage_redis;


ngx_vantage_redis_call_t *
ngx_vantage_redis_send(ngx_vantage_redis_cmd_t *cmds, ngx_uint_t n,
    ngx_uint_t reply, ngx_vantage_redis_handler_pt handler, void *data)
{
    ngx_vantage_redis_t       *st;
    ngx_vantage_redis_call_t  *call;

    st = ngx_vantage_redis;

    if (ngx_vantage_redis_available() != NGX_OK) {
        return NULL;
    }

    if (st->ac == NULL && ngx_vantage_redis_connect(st) != NGX_OK) {
        return NULL;
    }

    call = ngx_vantage_redis_call_alloc(st);
    if (call == NULL) {
        return NULL;
    }

    call->handler = handler;
    call->data = data;

    if (ngx_vantage_redis_queue(st, cmds, n, reply, call) != NGX_OK) {
        ngx_queue_insert_head(&st->free, &call->queue);
        return NULL;
    }

    return call;
}


ngx_int_t
ngx_vantage_redis_post(ngx_vantage_redis_cmd_t *cmds, ngx_uint_t n)
{
    ngx_vantage_redis_t  *st;

    st = ngx_vantage_redis;

    if (ngx_vantage_redis_available() != NGX_OK) {
        return NGX_DECLINED;
    }

    if (st->ac == NULL && ngx_vantage_redis_connect(st) != NGX_OK) {
        return NGX_DECLINED;
    }

    return ngx_vantage_redis_queue(st, cmds, n, 0, NULL);
}


void
ngx_vantage_redis_cancel(ngx_vantage_redis_call_t *call)
{
    call->handler = NULL;
    call->data = NULL;
}


ngx_int_t
ngx_vantage_redis_available(void)
{
    ngx_vantage_redis_t  *st;

    st = ngx_vantage_redis;

    if (st == NULL || st->breaker != NGX_VANTAGE_REDIS_CLOSED) {
        return NGX_DECLINED;
    }

    if (st->ac == NULL
        && (ngx_msec_int_t) (st->next_connect - ngx_current_msec) > 0)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_vantage_redis_queue(ngx_vantage_redis_t *st, ngx_vantage_redis_cmd_t *cmds,
    ngx_uint_t n, ngx_uint_t reply, ngx_vantage_redis_call_t *call)
{
    int          rc, j;
    u_char      *p;
    size_t       len;
    ngx_uint_t   i;

    static u_char  *buf;
    static size_t   size;

    for (i = 0; i < n; i++) {

        /*
         * the protocol is written here rather than by hiredis's formatter,
         * which builds each command in a fresh sds string with sdscatfmt()
         */

        len = NGX_INT_T_LEN + 4;

        for (j = 0; j < cmds[i].argc; j++) {
            len += NGX_SIZE_T_LEN + 5 + cmds[i].argvlen[j];
        }

        if (len > size) {
            ngx_free(buf);

            size = ngx_max(len, 4096);
            buf = ngx_alloc(size, st->log);

            if (buf == NULL) {
                size = 0;
                return NGX_ERROR;
            }
        }

        p = ngx_sprintf(buf, "*%d\r\n", cmds[i].argc);

        for (j = 0; j < cmds[i].argc; j++) {
            p = ngx_sprintf(p, "$%uz\r\n", cmds[i].argvlen[j]);
            p = ngx_cpymem(p, cmds[i].argv[j], cmds[i].argvlen[j]);
            *p++ = '\r';
            *p++ = '\n';
        }

        /*
         * hiredis looks one byte past the first argument for another, as
         * its own formatter ends the command with a NUL
         */
        *p = '\0';

        if (call && i == reply) {
            rc = redisAsyncFormattedCommand(st->ac, ngx_vantage_redis_reply,
                                            call, (char *) buf, p - buf);
        } else {
            rc = redisAsyncFormattedCommand(st->ac, NULL, NULL, (char *) buf,
                                            p - buf);
        }

        if (rc != REDIS_OK) {
            /*
             * out of memory, or the context is going away; commands
             * queued already go out with no one waiting for them, which
             * a MULTI without its EXEC makes harmless
             */
            ngx_log_error(NGX_LOG_ERR, st->log, 0,
                          "vantage redis: cannot queue a command for %V",
                          &st->conf->name);
            return NGX_ERROR;
        }
    }

    if (call) {
        call->deadline = ngx_current_msec + st->conf->timeout;
        call->start = ngx_vantage_metrics_now();
        ngx_queue_insert_tail(&st->pending, &call->queue);

        if (!st->timer.timer_set || st->timer.cancelable) {
            ngx_vantage_redis_arm(st);
        }
    }

    return NGX_OK;
}


static ngx_vantage_redis_call_t *
ngx_vantage_redis_call_alloc(ngx_vantage_redis_t *st)
{
    ngx_queue_t               *q;
    ngx_vantage_redis_call_t  *call;

    if (!ngx_queue_empty(&st->free)) {
        q = ngx_queue_head(&st->free);
        ngx_queue_remove(q);
        return ngx_queue_data(q, ngx_vantage_redis_call_t, queue);
    }

    call = ngx_alloc(sizeof(ngx_vantage_redis_call_t), st->log);

    return call;
}


static void
ngx_vantage_redis_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply                    *rr = reply;
    ngx_vantage_redis_t           *st;
    ngx_vantage_redis_call_t      *call = privdata;
    ngx_vantage_redis_handler_pt   handler;

    st = ngx_vantage_redis;

    ngx_queue_remove(&call->queue);
    ngx_queue_insert_head(&st->free, &call->queue);

    handler = call->handler;

    if (rr != NULL) {
        /* an error reply is a round trip all the same */
        ngx_vantage_metrics_redis_rtt(call->start);

        if (rr->type == REDIS_REPLY_ERROR) {
            /* Redis's error texts hold no values of ours */
            ngx_log_error(NGX_LOG_ERR, st->log, 0,
                          "vantage redis: %V answered \"%*s\"",
                          &st->conf->name, (size_t) rr->len, rr->str);
            ngx_vantage_redis_failure(st, NGX_VANTAGE_M_REDIS_ERROR_REPLY);
            rr = NULL;

        } else {
            ngx_vantage_redis_success(st);
        }
    }

    if (!st->closing) {
        ngx_vantage_redis_arm(st);
    }

    if (handler) {
        handler(call->data, rr);
    }
}


/* the timer follows the oldest deadline; it keeps a worker that is shutting
 * down alive only while some call waits for a reply */

static void
ngx_vantage_redis_arm(ngx_vantage_redis_t *st)
{
    ngx_msec_t      deadline;
    ngx_msec_int_t  left;

    if (ngx_vantage_redis_deadline(st, &deadline) != NGX_OK) {
        if (st->timer.timer_set) {
            ngx_del_timer(&st->timer);
        }

        return;
    }

    if (st->timer.timer_set) {
        /*
         * a timer due no later stays where it is, and moves itself on when
         * it fires early: replies move the oldest deadline later, and this
         * saves moving the timer for each of them
         */
        if ((ngx_msec_int_t) (deadline - st->timer.timer.key) >= 0) {
            return;
        }

        /* ngx_add_timer() would leave a timer within 300 ms where it is */
        ngx_del_timer(&st->timer);
    }

    left = (ngx_msec_int_t) (deadline - ngx_current_msec);

    ngx_add_timer(&st->timer, left > 0 ? (ngx_msec_t) left : 1);
}


/*
 * The earliest time something is due: the oldest call's reply, or the
 * connection being made.  NGX_DECLINED when nothing is awaited.
 */
static ngx_int_t
ngx_vantage_redis_deadline(ngx_vantage_redis_t *st, ngx_msec_t *deadline)
{
    ngx_vantage_redis_call_t  *call;

    if (ngx_queue_empty(&st->pending)) {
        st->timer.cancelable = 1;

        if (st->connected || st->ac == NULL) {
            return NGX_DECLINED;
        }

        *deadline = st->connect_deadline;
        return NGX_OK;
    }

    /* a call waiting for a reply keeps a worker that is exiting alive */
    st->timer.cancelable = 0;

    call = ngx_queue_data(ngx_queue_head(&st->pending),
                          ngx_vantage_redis_call_t, queue);
    *deadline = call->deadline;

    if (!st->connected
        && (ngx_msec_int_t) (st->connect_deadline - *deadline) < 0)
    {
        *deadline = st->connect_deadline;
    }

    return NGX_OK;
}


static void
ngx_vantage_redis_timeout(ngx_event_t *ev)
{
    ngx_vantage_redis_t  *st = ev->data;

    ngx_msec_t            deadline;
    ngx_msec_int_t        left;

    if (ngx_vantage_redis_deadline(st, &deadline) != NGX_OK) {
        return;
    }

    left = (ngx_msec_int_t) (deadline - ngx_current_msec);

    if (left > 0) {
        /* set for a call that has had its reply since */
        ngx_add_timer(&st->timer, (ngx_msec_t) left);
        return;
    }

    if (st->connected) {
        ngx_log_error(NGX_LOG_ERR, st->log, NGX_ETIMEDOUT,
                      "vantage redis: %V did not answer within %M ms",
                      &st->conf->name, st->conf->timeout);
    } else {
        ngx_log_error(NGX_LOG_ERR, st->log, NGX_ETIMEDOUT,
                      "vantage redis: connecting to %V timed out",
                      &st->conf->name);
    }

    ngx_vantage_redis_failure(st, st->connected ? NGX_VANTAGE_M_REDIS_TIMEOUT
                                                : NGX_VANTAGE_M_REDIS_CONNECT);
    ngx_vantage_redis_close(st);
}


static ngx_int_t
ngx_vantage_redis_connect(ngx_vantage_redis_t *st)
{
    int                        event;
    ngx_int_t                  n;
    const char                *argv[3];
    size_t                     argvlen[3];
    u_char                     db[NGX_INT_T_LEN];
    ngx_connection_t          *c;
    redisAsyncContext         *ac;
    ngx_vantage_redis_conf_t  *conf;

    conf = st->conf;

    if (conf->unix_path.len) {
        ac = redisAsyncConnectUnix((char *) conf->unix_path.data);
    } else {
        ac = redisAsyncConnect((char *) conf->host.data, conf->port);
    }

    if (ac == NULL) {
        ngx_log_error(NGX_LOG_ERR, st->log, 0,
                      "vantage redis: no memory to connect to %V",
                      &conf->name);
        goto failed;
    }

    if (ac->err) {
        ngx_log_error(NGX_LOG_ERR, st->log, 0,
                      "vantage redis: connect to %V failed: %s",
                      &conf->name, ac->errstr);
        redisAsyncFree(ac);
        goto failed;
    }

    c = ngx_get_connection(ac->c.fd, st->log);
    if (c == NULL) {
        redisAsyncFree(ac);
        goto failed;
    }

    c->data = st;
    c->recv = ngx_recv;
    c->send = ngx_send;
    c->read->handler = ngx_vantage_redis_read_handler;
    c->write->handler = ngx_vantage_redis_write_handler;
    c->read->log = st->log;
    c->write->log = st->log;

    st->ac = ac;
    st->c = c;
    st->connected = 0;
    st->closing = 0;

    ac->ev.data = st;
    ac->c.reader->fn = &ngx_vantage_redis_reply_fns;
    ac->ev.cleanup = ngx_vantage_redis_cleanup;

    if (ngx_add_conn) {
        if (ngx_add_conn(c) == NGX_ERROR) {
            goto close;
        }

    } else {
        event = (ngx_event_flags & NGX_USE_CLEAR_EVENT) ? NGX_CLEAR_EVENT
                                                        : NGX_LEVEL_EVENT;

        if (ngx_add_event(c->read, NGX_READ_EVENT, event) != NGX_OK
            || ngx_add_event(c->write, NGX_WRITE_EVENT, event) != NGX_OK)
        {
            goto close;
        }
    }

    /*
     * the hooks only once the events are registered: setting the connect
     * callback asks for a write event at once
     */

    ac->ev.addRead = ngx_vantage_redis_add_read;
    ac->ev.delRead = ngx_vantage_redis_del_read;
    ac->ev.addWrite = ngx_vantage_redis_add_write;
    ac->ev.delWrite = ngx_vantage_redis_del_write;

    redisAsyncSetConnectCallback(ac, ngx_vantage_redis_connected);
    redisAsyncSetDisconnectCallback(ac, ngx_vantage_redis_disconnected);

    st->connect_deadline = ngx_current_msec + conf->connect_timeout;
    ngx_vantage_redis_arm(st);

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, st->log, 0,
                   "vantage redis: connecting to %V", &conf->name);

    /* hiredis sends these first, once the socket is connected */

    n = 0;

    if (conf->password.len) {
        argv[n] = "AUTH";
        argvlen[n++] = 4;

        if (conf->user.len) {
            argv[n] = (char *) conf->user.data;
            argvlen[n++] = conf->user.len;
        }

        argv[n] = (char *) conf->password.data;
        argvlen[n++] = conf->password.len;

        if (ngx_vantage_redis_own(st, n, argv, argvlen,
                                  ngx_vantage_redis_login_done, "AUTH")
            != NGX_OK)
        {
            goto close;
        }
    }

    if (conf->db) {
        argv[0] = "SELECT";
        argvlen[0] = 6;
        argv[1] = (char *) db;
        argvlen[1] = ngx_sprintf(db, "%i", conf->db) - db;

        if (ngx_vantage_redis_own(st, 2, argv, argvlen,
                                  ngx_vantage_redis_login_done, "SELECT")
            != NGX_OK)
        {
            goto close;
        }
    }

    return NGX_OK;

close:

    ngx_vantage_redis_failure(st, NGX_VANTAGE_M_REDIS_CONNECT);
    ngx_vantage_redis_close(st);

    return NGX_ERROR;

failed:

    ngx_vantage_redis_failure(st, NGX_VANTAGE_M_REDIS_CONNECT);

    return NGX_ERROR;
}


static void
ngx_vantage_redis_login_done(void *data, redisReply *reply)
{
    /* an error reply is logged and counted by ngx_vantage_redis_reply() */

    if (reply == NULL && ngx_vantage_redis && ngx_vantage_redis->ac
        && !ngx_vantage_redis->closing)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_vantage_redis->log, 0,
                      "vantage redis: %s refused by %V, closing the "
                      "connection", (char *) data,
                      &ngx_vantage_redis->conf->name);
        ngx_vantage_redis_close(ngx_vantage_redis);
    }
}


/*
 * Tears the connection down: hiredis calls every pending callback with a
 * NULL reply, then ngx_vantage_redis_cleanup() releases the nginx side.
 */
static void
ngx_vantage_redis_close(ngx_vantage_redis_t *st)
{
    redisAsyncContext  *ac;

    ac = st->ac;

    if (ac == NULL || st->closing) {
        return;
    }

    st->closing = 1;

    redisAsyncFree(ac);
}


static void
ngx_vantage_redis_connected(const redisAsyncContext *ac, int status)
{
    ngx_vantage_redis_t  *st = ac->ev.data;

    if (status != REDIS_OK) {
        ngx_log_error(NGX_LOG_ERR, st->log, 0,
                      "vantage redis: connect to %V failed: %s",
                      &st->conf->name, ac->errstr ? ac->errstr : "error");
        ngx_vantage_redis_failure(st, NGX_VANTAGE_M_REDIS_CONNECT);

        /* hiredis disconnects and frees the context after this */
        st->closing = 1;
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, st->log, 0,
                   "vantage redis: connected to %V", &st->conf->name);

    st->connected = 1;
    st->backoff = 0;

    ngx_vantage_redis_arm(st);
}


static void
ngx_vantage_redis_disconnected(const redisAsyncContext *ac, int status)
{
    ngx_vantage_redis_t  *st = ac->ev.data;

    if (st->closing) {
        return;
    }

    st->closing = 1;

    if (status != REDIS_OK) {
        ngx_log_error(NGX_LOG_ERR, st->log, 0,
                      "vantage redis: connection to %V lost: %s",
                      &st->conf->name, ac->errstr ? ac->errstr : "error");
        ngx_vantage_redis_failure(st, NGX_VANTAGE_M_REDIS_LOST);
    }
}


static void
ngx_vantage_redis_read_handler(ngx_event_t *rev)
{
    ssize_t               n;
    ngx_uint_t            eof;
    ngx_connection_t     *c;
    ngx_vantage_redis_t  *st;

    static u_char         buf[16384];

    c = rev->data;
    st = c->data;

    if (st->ac == NULL || st->closing) {
        return;
    }

    if (!st->connected) {
        /* hiredis completes the connection on whichever event comes first */
        redisAsyncHandleRead(st->ac);
        return;
    }

    eof = 0;

    while (rev->ready) {

        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            /* the replies read before the end are answers all the same */
            eof = (n == 0) ? 1 : 2;
            break;
        }

        if (redisReaderFeed(st->ac->c.reader, (char *) buf, n) != REDIS_OK) {
            ngx_log_error(NGX_LOG_ERR, st->log, 0,
                          "vantage redis: no memory for replies from %V",
                          &st->conf->name);
            ngx_vantage_redis_failure(st, NGX_VANTAGE_M_REDIS_LOST);
            ngx_vantage_redis_close(st);
            return;
        }
    }

    /* may free the context: on a protocol error, or from a callback */
    redisProcessCallbacks(st->ac);

    if (st->c == NULL || st->closing) {
        return;
    }

    if (eof) {
        ngx_log_error(NGX_LOG_ERR, st->log, 0,
                      "vantage redis: connection to %V %s",
                      &st->conf->name,
                      eof == 1 ? "closed by Redis" : "failed");
        ngx_vantage_redis_failure(st, NGX_VANTAGE_M_REDIS_LOST);
        ngx_vantage_redis_close(st);
        return;
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_vantage_redis_close(st);
    }
}


static void
ngx_vantage_redis_write_handler(ngx_event_t *wev)
{
    ngx_connection_t     *c;
    redisAsyncContext    *ac;
    ngx_vantage_redis_t  *st;

    c = wev->data;
    st = c->data;
    ac = st->ac;

    if (ac == NULL || st->closing) {
        return;
    }

    st->in_write = 1;

    /* connects, or writes the output buffer once; may free the context */
    redisAsyncHandleWrite(ac);

    if (st->c == NULL || st->closing) {
        return;
    }

    st->in_write = 0;

    if (sdslen(ac->c.obuf)) {
        /* the socket took less than all: wait for it to drain */
        wev->ready = 0;
    }

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_vantage_redis_close(st);
    }
}


static void
ngx_vantage_redis_add_read(void *data)
{
    /* the read event stays registered for the connection's lifetime */
}


static void
ngx_vantage_redis_del_read(void *data)
{
}


static void
ngx_vantage_redis_add_write(void *data)
{
    ngx_event_t          *wev;
    ngx_vantage_redis_t  *st = data;

    if (st->in_write || st->c == NULL) {
        return;
    }

    wev = st->c->write;

    if (wev->ready && st->connected) {
        /* one write for everything queued in this pass of the loop */
        if (!wev->posted) {
            ngx_post_event(wev, &ngx_posted_events);
        }

        return;
    }

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, st->log, 0,
                      "vantage redis: cannot wait for %V to be writable",
                      &st->conf->name);
    }
}


static void
ngx_vantage_redis_del_write(void *data)
{
    ngx_event_t          *wev;
    ngx_vantage_redis_t  *st = data;

    if (st->c == NULL) {
        return;
    }

    wev = st->c->write;

    if (wev->posted) {
        ngx_delete_posted_event(wev);
    }
}


/* hiredis frees the context and closes the socket right after this */

static void
ngx_vantage_redis_cleanup(void *data)
{
    ngx_connection_t     *c;
    ngx_vantage_redis_t  *st = data;

    c = st->c;

    if (c != NULL) {
        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }

        if (c->write->posted) {
            ngx_delete_posted_event(c->write);
        }

        if (ngx_del_conn) {
            ngx_del_conn(c, NGX_CLOSE_EVENT);

        } else {
            if (c->read->active || c->read->disabled) {
                ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
            }

            if (c->write->active || c->write->disabled) {
                ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
            }
        }

        c->read->closed = 1;
        c->write->closed = 1;

        ngx_free_connection(c);

        c->fd = (ngx_socket_t) -1;
    }

    st->c = NULL;
    st->ac = NULL;
    st->connected = 0;
    st->closing = 0;
    st->in_write = 0;

    if (st->timer.timer_set) {
        ngx_del_timer(&st->timer);
    }

    /* the next connection waits out a growing backoff after failures */

    if (st->failures) {
        st->backoff = st->backoff ? ngx_min(st->backoff * 2,
                                            st->conf->breaker_cooldown)
                                  : NGX_VANTAGE_REDIS_BACKOFF_MIN;
        st->next_connect = ngx_current_msec + st->backoff;

    } else {
        st->next_connect = ngx_current_msec;
    }
}


/* kind: what vantage_redis_errors_total counts it as, if anything */
static void
ngx_vantage_redis_failure(ngx_vantage_redis_t *st, ngx_uint_t kind)
{
    if (kind != NGX_VANTAGE_M_REDIS_UNCOUNTED) {
        ngx_vantage_metrics_inc(NGX_VANTAGE_M_REDIS_ERRORS + kind);
    }

    st->failures++;

    if (st->breaker == NGX_VANTAGE_REDIS_PROBING) {
        ngx_log_error(NGX_LOG_WARN, st->log, 0,
                      "vantage redis: %V still failing, circuit breaker "
                      "open for another %M ms", &st->conf->name,
                      st->conf->breaker_cooldown);

    } else if (st->breaker == NGX_VANTAGE_REDIS_CLOSED
               && st->failures >= st->conf->breaker_failures)
    {
        ngx_log_error(NGX_LOG_ERR, st->log, 0,
                      "vantage redis: circuit breaker open for %M ms after "
                      "%ui failures of %V", st->conf->breaker_cooldown,
                      st->failures, &st->conf->name);

    } else {
        return;
    }

    st->breaker = NGX_VANTAGE_REDIS_OPEN;
    ngx_vantage_metrics_redis_breaker(1);

    if (st->probe.timer_set) {
        ngx_del_timer(&st->probe);
    }

    ngx_add_timer(&st->probe, st->conf->breaker_cooldown);
}


static void
ngx_vantage_redis_success(ngx_vantage_redis_t *st)
{
    st->failures = 0;
    st->backoff = 0;

    if (st->breaker != NGX_VANTAGE_REDIS_CLOSED) {
        ngx_log_error(NGX_LOG_WARN, st->log, 0,
                      "vantage redis: %V answers again, circuit breaker "
                      "closed", &st->conf->name);

        st->breaker = NGX_VANTAGE_REDIS_CLOSED;
        ngx_vantage_metrics_redis_breaker(0);

        if (st->probe.timer_set) {
            ngx_del_timer(&st->probe);
        }
    }
}


static void
ngx_vantage_redis_probe(ngx_event_t *ev)
{
    ngx_vantage_redis_t  *st = ev->data;

    static const char    *argv[] = { "PING" };
    static size_t         argvlen[] = { 4 };

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    st->breaker = NGX_VANTAGE_REDIS_PROBING;

    if (st->ac == NULL && ngx_vantage_redis_connect(st) != NGX_OK) {
        return;
    }

    if (ngx_vantage_redis_own(st, 1, argv, argvlen,
                              ngx_vantage_redis_probe_done, st)
        != NGX_OK)
    {
        ngx_vantage_redis_failure(st, NGX_VANTAGE_M_REDIS_LOST);
    }
}


/* a command of the adapter's own (AUTH, SELECT, the probe's PING) */

static ngx_int_t
ngx_vantage_redis_own(ngx_vantage_redis_t *st, int argc, const char **argv,
    size_t *argvlen, ngx_vantage_redis_handler_pt handler, void *data)
{
    ngx_vantage_redis_cmd_t    cmd;
    ngx_vantage_redis_call_t  *call;

    cmd.argc = argc;
    cmd.argv = argv;
    cmd.argvlen = argvlen;

    call = ngx_vantage_redis_call_alloc(st);
    if (call == NULL) {
        return NGX_ERROR;
    }

    call->handler = handler;
    call->data = data;

    if (ngx_vantage_redis_queue(st, &cmd, 1, 0, call) != NGX_OK) {
        ngx_queue_insert_head(&st->free, &call->queue);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_vantage_redis_probe_done(void *data, redisReply *reply)
{
    ngx_vantage_redis_t  *st = data;

    /*
     * success and error replies were counted by ngx_vantage_redis_reply();
     * a NULL reply without an error reply means the connection went away,
     * and that was counted where it happened
     */

    if (reply == NULL && st->breaker == NGX_VANTAGE_REDIS_PROBING) {
        ngx_vantage_redis_failure(st, NGX_VANTAGE_M_REDIS_UNCOUNTED);
    }
}


ngx_int_t
ngx_vantage_redis_init_process(ngx_cycle_t *cycle)
{
    ngx_vantage_redis_t      *st;
    ngx_vantage_main_conf_t  *vmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    vmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_vantage_module);

    if (vmcf == NULL || vmcf->redis == NULL) {
        return NGX_OK;
    }

    st = ngx_pcalloc(cycle->pool, sizeof(ngx_vantage_redis_t));
    if (st == NULL) {
        return NGX_ERROR;
    }

    st->conf = vmcf->redis;
    st->log = cycle->log;

    ngx_queue_init(&st->pending);
    ngx_queue_init(&st->free);

    st->timer.handler = ngx_vantage_redis_timeout;
    st->timer.data = st;
    st->timer.log = cycle->log;
    st->timer.cancelable = 1;

    st->probe.handler = ngx_vantage_redis_probe;
    st->probe.data = st;
    st->probe.log = cycle->log;
    st->probe.cancelable = 1;

    st->breaker = NGX_VANTAGE_REDIS_CLOSED;
    st->next_connect = ngx_current_msec;

    ngx_vantage_redis = st;

    /* connect ahead of the first request; a failure is retried on demand */
    (void) ngx_vantage_redis_connect(st);

    return NGX_OK;
}


void
ngx_vantage_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_queue_t               *q;
    ngx_vantage_redis_t       *st;
    ngx_vantage_redis_call_t  *call;

    st = ngx_vantage_redis;

    if (st == NULL) {
        return;
    }

    /* the process is going: no request is to be resumed from here */

    for (q = ngx_queue_head(&st->pending);
         q != ngx_queue_sentinel(&st->pending);
         q = ngx_queue_next(q))
    {
        call = ngx_queue_data(q, ngx_vantage_redis_call_t, queue);
        call->handler = NULL;
    }

    ngx_vantage_redis_close(st);

    while (!ngx_queue_empty(&st->free)) {
        q = ngx_queue_head(&st->free);
        ngx_queue_remove(q);
        call = ngx_queue_data(q, ngx_vantage_redis_call_t, queue);
        ngx_free(call);
    }

    ngx_vantage_redis = NULL;
}


static redisReply *
ngx_vantage_redis_reply_alloc(const redisReadTask *task, int type)
{
    redisReply  *r, *parent;

    r = ngx_vantage_redis_free_replies;

    if (r != NULL) {
        /* the free list is linked through the element pointer */
        ngx_vantage_redis_free_replies = (redisReply *) r->element;
        ngx_vantage_redis_nfree--;

    } else {
        r = malloc(sizeof(redisReply));
        if (r == NULL) {
            return NULL;
        }
    }

    ngx_memzero(r, sizeof(redisReply));
    r->type = type;

    if (task->parent) {
        parent = task->parent->obj;
        parent->element[task->idx] = r;
    }

    return r;
}


static void *
ngx_vantage_redis_create_string(const redisReadTask *task, char *str,
    size_t len)
{
    char        *buf;
    redisReply  *r;

    buf = malloc(len + 1);
    if (buf == NULL) {
        return NULL;
    }

    r = ngx_vantage_redis_reply_alloc(task, task->type);
    if (r == NULL) {
        free(buf);
        return NULL;
    }

    ngx_memcpy(buf, str, len);
    buf[len] = '\0';

    r->str = buf;
    r->len = len;

    return r;
}


static void *
ngx_vantage_redis_create_array(const redisReadTask *task, int elements)
{
    redisReply   *r, **v;

    v = NULL;

    if (elements > 0) {
        if (elements <= NGX_VANTAGE_REDIS_SMALL_ARRAY
            && ngx_vantage_redis_free_vectors != NULL)
        {
            v = ngx_vantage_redis_free_vectors;
            ngx_vantage_redis_free_vectors = (redisReply **) v[0];
            ngx_memzero(v, NGX_VANTAGE_REDIS_SMALL_ARRAY * sizeof(void *));

        } else {
            v = calloc(ngx_max(elements, NGX_VANTAGE_REDIS_SMALL_ARRAY),
                       sizeof(redisReply *));
            if (v == NULL) {
                return NULL;
            }
        }
    }

    r = ngx_vantage_redis_reply_alloc(task, REDIS_REPLY_ARRAY);
    if (r == NULL) {
        free(v);
        return NULL;
    }

    r->element = v;
    r->elements = elements;

    return r;
}


static void *
ngx_vantage_redis_create_integer(const redisReadTask *task, long long value)
{
    redisReply  *r;

    r = ngx_vantage_redis_reply_alloc(task, REDIS_REPLY_INTEGER);
    if (r == NULL) {
        return NULL;
    }

    r->integer = value;

    return r;
}


static void *
ngx_vantage_redis_create_nil(const redisReadTask *task)
{
    return ngx_vantage_redis_reply_alloc(task, REDIS_REPLY_NIL);
}


static void
ngx_vantage_redis_free_object(void *obj)
{
    size_t       i;
    redisReply  *r = obj;

    if (r == NULL) {
        return;
    }

    if (r->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i < r->elements; i++) {
            ngx_vantage_redis_free_object(r->element[i]);
        }

        if (r->element) {
            if (r->elements <= NGX_VANTAGE_REDIS_SMALL_ARRAY
                && ngx_vantage_redis_nfree < NGX_VANTAGE_REDIS_FREE_MAX)
            {
                r->element[0] = (redisReply *) ngx_vantage_redis_free_vectors;
                ngx_vantage_redis_free_vectors = r->element;

            } else {
                free(r->element);
            }
        }

    } else {
        free(r->str);
    }

    if (ngx_vantage_redis_nfree >= NGX_VANTAGE_REDIS_FREE_MAX) {
        free(r);
        return;
    }

    r->element = (redisReply **) ngx_vantage_redis_free_replies;
    ngx_vantage_redis_free_replies = r;
    ngx_vantage_redis_nfree++;
}


/*
 * vantage_redis <host:port | unix:/path> [password_file=<f>] [user=<u>]
 *     [db=<n>] [connect_timeout=<t>] [timeout=<t>]
 *     [breaker_failures=<n>] [breaker_cooldown=<t>]
 */
char *
ngx_vantage_redis_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_main_conf_t *vmcf = conf;

    char                      *rv;
    u_char                     text[NGX_SOCKADDR_STRLEN];
    size_t                     len;
    ngx_url_t                  u;
    ngx_str_t                 *value, s, file;
    ngx_int_t                  n;
    ngx_uint_t                 i;
    ngx_msec_t                *ms;
    ngx_vantage_redis_conf_t  *rc;

    if (vmcf->redis) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rc = ngx_pcalloc(cf->pool, sizeof(ngx_vantage_redis_conf_t));
    if (rc == NULL) {
        return NGX_CONF_ERROR;
    }

    rc->name = value[1];
    rc->connect_timeout = 1000;
    rc->timeout = 250;
    rc->breaker_failures = 3;
    rc->breaker_cooldown = 2000;

    ngx_str_null(&file);

    if (value[1].len > 5 && ngx_strncmp(value[1].data, "unix:", 5) == 0) {
        len = value[1].len - 5;

        if (len + 1 > sizeof(((struct sockaddr_un *) 0)->sun_path)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"vantage_redis\": socket path \"%V\" is "
                               "too long", &value[1]);
            return NGX_CONF_ERROR;
        }

        rc->unix_path.data = ngx_pnalloc(cf->pool, len + 1);
        if (rc->unix_path.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(rc->unix_path.data, value[1].data + 5, len);
        rc->unix_path.data[len] = '\0';
        rc->unix_path.len = len;

    } else {
        ngx_memzero(&u, sizeof(ngx_url_t));

        u.url = value[1];
        u.default_port = 6379;

        /* resolved here, once: hiredis would resolve names blocking */

        if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"vantage_redis\": %s in \"%V\"",
                               u.err ? u.err : "invalid address", &u.url);
            return NGX_CONF_ERROR;
        }

        if (u.naddrs == 0 || u.family == AF_UNIX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"vantage_redis\": no address for \"%V\"",
                               &u.url);
            return NGX_CONF_ERROR;
        }

        len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, text,
                            NGX_SOCKADDR_STRLEN, 0);

        rc->host.data = ngx_pnalloc(cf->pool, len + 1);
        if (rc->host.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(rc->host.data, text, len);
        rc->host.data[len] = '\0';
        rc->host.len = len;
        rc->port = ngx_inet_get_port(u.addrs[0].sockaddr);
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "password_file=", 14) == 0) {
            file.data = value[i].data + 14;
            file.len = value[i].len - 14;
            continue;
        }

        if (ngx_strncmp(value[i].data, "user=", 5) == 0) {
            rc->user.data = value[i].data + 5;
            rc->user.len = value[i].len - 5;

            if (rc->user.len == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            n = ngx_atoi(value[i].data + 3, value[i].len - 3);
            if (n == NGX_ERROR || n > 1000000) {
                goto invalid;
            }

            rc->db = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "breaker_failures=", 17) == 0) {
            n = ngx_atoi(value[i].data + 17, value[i].len - 17);
            if (n == NGX_ERROR || n == 0 || n > 1000) {
                goto invalid;
            }

            rc->breaker_failures = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "connect_timeout=", 16) == 0) {
            s.data = value[i].data + 16;
            s.len = value[i].len - 16;
            ms = &rc->connect_timeout;

        } else if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;
            ms = &rc->timeout;

        } else if (ngx_strncmp(value[i].data, "breaker_cooldown=", 17) == 0) {
            s.data = value[i].data + 17;
            s.len = value[i].len - 17;
            ms = &rc->breaker_cooldown;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"vantage_redis\": unknown parameter \"%V\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        *ms = ngx_parse_time(&s, 0);
        if (*ms == (ngx_msec_t) NGX_ERROR || *ms == 0) {
            goto invalid;
        }
    }

    if (rc->user.len && file.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_redis\": \"user=\" needs "
                           "\"password_file=\"");
        return NGX_CONF_ERROR;
    }

    if (file.len) {
        rv = ngx_vantage_redis_read_secret(cf, &file, &rc->password);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    vmcf->redis = rc;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"vantage_redis\": invalid parameter \"%V\"",
                       &value[i]);

    return NGX_CONF_ERROR;
}


/* the whole file, without a trailing newline; read at configuration time */

static char *
ngx_vantage_redis_read_secret(ngx_conf_t *cf, ngx_str_t *path,
    ngx_str_t *secret)
{
    ngx_str_t  name;

    name = *path;

    if (name.len == 0 || ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_redis\": invalid \"password_file=\"");
        return NGX_CONF_ERROR;
    }

    return ngx_vantage_read_secret_file(cf, "vantage_redis", "password file",
                                        &name, secret);
}


/*
 * A secret's file (name NUL-terminated), read whole at configuration time:
 * a regular file of at most 4096 bytes, its trailing newlines cut, not
 * empty.  Messages name the directive and the file, never what it holds
 * ("what" is "password file", "secret file").
 */
char *
ngx_vantage_read_secret_file(ngx_conf_t *cf, const char *directive,
    const char *what, ngx_str_t *name, ngx_str_t *secret)
{
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_file_info_t  fi;

    fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"%s\": cannot open %s \"%V\"", directive, what,
                           name);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || !ngx_is_file(&fi) || ngx_file_size(&fi) > 4096)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\": %s \"%V\" is not a readable file of "
                           "at most 4096 bytes", directive, what, name);
        (void) ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    secret->data = ngx_pnalloc(cf->pool, 4097);
    if (secret->data == NULL) {
        (void) ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_fd(fd, secret->data, 4097);

    (void) ngx_close_file(fd);

    if (n < 0 || n > 4096) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"%s\": cannot read %s \"%V\"", directive, what,
                           name);
        return NGX_CONF_ERROR;
    }

    while (n && (secret->data[n - 1] == '\n' || secret->data[n - 1] == '\r')) {
        n--;
    }

    if (n == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\": %s \"%V\" is empty", directive, what,
                           name);
        return NGX_CONF_ERROR;
    }

    secret->len = n;

    return NGX_CONF_OK;
}


/*
 * secret_file=<path> of a directive: an absolute path, whose file is read
 * as ngx_vantage_read_secret_file() reads it.
 */
char *
ngx_vantage_read_secret_path(ngx_conf_t *cf, const char *directive,
    ngx_str_t *path, ngx_str_t *secret)
{
    ngx_str_t  name;

    if (path->len == 0 || path->data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\": secret_file= must be an absolute path",
                           directive);
        return NGX_CONF_ERROR;
    }

    /* NUL-terminated for open() */
    name.len = path->len;
    name.data = ngx_pnalloc(cf->pool, path->len + 1);
    if (name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_cpystrn(name.data, path->data, path->len + 1);

    return ngx_vantage_read_secret_file(cf, directive, "secret file", &name,
                                        secret);
}
