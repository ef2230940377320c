/* ngx_vantage_worker.c -- calls to vantage-worker over its Unix socket */

/*
 * Each nginx worker process keeps one connection to vantage-worker and
 * pipelines every call over it: a call is one frame (common/vc_frame.h,
 * docs/PROTOCOL.md) with an id of this connection's, and its reply may come
 * in any order.  Calls waiting to be written sit in a queue, written ones in
 * a red-black tree by id; one writev() takes as many queued frames as it
 * can, from a posted event, so the calls made in one pass of the event loop
 * leave together.
 *
 * A frame is copied into memory of its own (with the request body, when it
 * carries one) rather than pointing into the request's pool: a client may
 * go away while its frame is half written, and the rest of the frame must
 * still go out or the stream of frames would be corrupt.  Copying a body of
 * a few kilobytes costs less than a system call.
 *
 * Nothing here blocks.  A Unix socket's connect() completes or fails at
 * once on Linux; a worker that is not there fails every call queued on the
 * connection, through a posted event so that no handler runs inside the
 * call that queued it.  The next call connects again.
 */

#include "ngx_vantage_module.h"
#include "ngx_vantage_worker.h"


#define NGX_VANTAGE_WORKER_IOVS       64
#define NGX_VANTAGE_WORKER_MAX_REPLY  (1024 * 1024)
#define NGX_VANTAGE_WORKER_RBUF       16384


struct ngx_vantage_worker_call_s {
    ngx_rbtree_node_t               node;      /* key: the frame's id */
    ngx_queue_t                     queue;     /* to write, or failed */
    ngx_event_t                     timer;
    u_char                         *frame;
    size_t                          len;
    size_t                          sent;
    ngx_vantage_worker_handler_pt   handler;   /* NULL once cancelled */
    void                           *data;
    ngx_uint_t                      outcome;   /* when failed */
    unsigned                        in_tree:1;
    unsigned                        in_queue:1;
};


typedef struct {
    ngx_vantage_worker_conf_t      *conf;
    ngx_log_t                      *log;
    ngx_connection_t               *c;
    uint64_t                        next_id;
    ngx_queue_t                     out;       /* calls not fully written */
    ngx_queue_t                     failed;    /* handlers still to call */
    ngx_rbtree_t                    sent;
    ngx_rbtree_node_t               sentinel;
    ngx_event_t                     fail_ev;   /* calls the failed handlers */
    ngx_event_t                     connect_timer;
    u_char                         *rbuf;
    size_t                          rsize;
    size_t                          rlen;
    unsigned                        connecting:1;
    unsigned                        unreachable:1;  /* logged once */
} ngx_vantage_worker_t;


static ngx_int_t ngx_vantage_worker_connect(ngx_vantage_worker_t *st);
static void ngx_vantage_worker_close(ngx_vantage_worker_t *st,
    ngx_uint_t outcome);
static void ngx_vantage_worker_fail(ngx_vantage_worker_t *st,
    ngx_vantage_worker_call_t *call, ngx_uint_t outcome);
static void ngx_vantage_worker_run_failed(ngx_event_t *ev);
static void ngx_vantage_worker_free(ngx_vantage_worker_call_t *call);
static void ngx_vantage_worker_write_handler(ngx_event_t *wev);
static void ngx_vantage_worker_read_handler(ngx_event_t *rev);
static void ngx_vantage_worker_connect_timeout(ngx_event_t *ev);
static void ngx_vantage_worker_call_timeout(ngx_event_t *ev);
static ngx_int_t ngx_vantage_worker_replies(ngx_vantage_worker_t *st);
static void ngx_vantage_worker_post_write(ngx_vantage_worker_t *st);


static ngx_vantage_worker_t  *ngx_vantage_worker;


char *
ngx_vantage_worker_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_main_conf_t  *vmcf = conf;

    size_t                      len;
    ngx_str_t                  *value, s;
    ngx_int_t                   n;
    ngx_uint_t                  i;
    ngx_vantage_worker_conf_t  *wcf;

    if (vmcf->worker != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len <= 5
        || ngx_strncmp(value[1].data, "unix:", 5) != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_worker\" takes unix:<path>, not \"%V\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    wcf = ngx_pcalloc(cf->pool, sizeof(ngx_vantage_worker_conf_t));
    if (wcf == NULL) {
        return NGX_CONF_ERROR;
    }

    len = value[1].len - 5;

    if (len >= sizeof(wcf->sockaddr.sun_path)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_worker\": the socket path in \"%V\" is "
                           "longer than %uz bytes", &value[1],
                           sizeof(wcf->sockaddr.sun_path) - 1);
        return NGX_CONF_ERROR;
    }

    wcf->name = value[1];
    wcf->sockaddr.sun_family = AF_UNIX;
    ngx_memcpy(wcf->sockaddr.sun_path, value[1].data + 5, len);
    wcf->socklen = offsetof(struct sockaddr_un, sun_path) + len + 1;
    wcf->connect_timeout = 1000;
    wcf->timeout = 5000;
    wcf->retry_after = 1;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "connect_timeout=", 16) == 0) {
            s.data = value[i].data + 16;
            s.len = value[i].len - 16;
            n = ngx_parse_time(&s, 0);

            if (n == NGX_ERROR || n == 0) {
                goto invalid;
            }

            wcf->connect_timeout = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;
            n = ngx_parse_time(&s, 0);

            if (n == NGX_ERROR || n == 0) {
                goto invalid;
            }

            wcf->timeout = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "retry_after=", 12) == 0) {
            s.data = value[i].data + 12;
            s.len = value[i].len - 12;
            n = ngx_parse_time(&s, 1);

            if (n == NGX_ERROR || n == 0 || n > 3600) {
                goto invalid;
            }

            wcf->retry_after = n;
            continue;
        }

        goto invalid;
    }

    vmcf->worker = wcf;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"vantage_worker\": invalid parameter \"%V\" "
                       "(connect_timeout=<time>, timeout=<time> or "
                       "retry_after=<seconds, at most 1h>)", &value[i]);

    return NGX_CONF_ERROR;
}


ngx_int_t
ngx_vantage_worker_init_process(ngx_cycle_t *cycle,
    ngx_vantage_worker_conf_t *conf)
{
    ngx_vantage_worker_t  *st;

    st = ngx_pcalloc(cycle->pool, sizeof(ngx_vantage_worker_t));
    if (st == NULL) {
        return NGX_ERROR;
    }

    st->conf = conf;
    st->log = cycle->log;
    st->next_id = 1;
    ngx_queue_init(&st->out);
    ngx_queue_init(&st->failed);
    ngx_rbtree_init(&st->sent, &st->sentinel, ngx_rbtree_insert_value);

    st->fail_ev.handler = ngx_vantage_worker_run_failed;
    st->fail_ev.data = st;
    st->fail_ev.log = cycle->log;

    st->connect_timer.handler = ngx_vantage_worker_connect_timeout;
    st->connect_timer.data = st;
    st->connect_timer.log = cycle->log;
    st->connect_timer.cancelable = 1;

    ngx_vantage_worker = st;

    return NGX_OK;
}


/*
 * The process is exiting: requests are being freed without their handlers
 * running, so the calls are dropped without calling anyone.
 */
void
ngx_vantage_worker_exit_process(ngx_cycle_t *cycle)
{
    ngx_queue_t                *q;
    ngx_rbtree_node_t          *node;
    ngx_vantage_worker_t       *st;
    ngx_vantage_worker_call_t  *call;

    st = ngx_vantage_worker;

    if (st == NULL) {
        return;
    }

    ngx_vantage_worker = NULL;

    while (!ngx_queue_empty(&st->out)) {
        q = ngx_queue_head(&st->out);
        ngx_queue_remove(q);
        call = ngx_queue_data(q, ngx_vantage_worker_call_t, queue);
        call->in_queue = 0;

        if (!call->in_tree) {
            ngx_vantage_worker_free(call);
        }
    }

    while (!ngx_queue_empty(&st->failed)) {
        q = ngx_queue_head(&st->failed);
        ngx_queue_remove(q);
        ngx_vantage_worker_free(
            ngx_queue_data(q, ngx_vantage_worker_call_t, queue));
    }

    while (st->sent.root != st->sent.sentinel) {
        node = ngx_rbtree_min(st->sent.root, st->sent.sentinel);
        ngx_rbtree_delete(&st->sent, node);
        ngx_vantage_worker_free((ngx_vantage_worker_call_t *) node);
    }

    if (st->c != NULL) {
        ngx_close_connection(st->c);
        st->c = NULL;
    }

    if (st->fail_ev.posted) {
        ngx_delete_posted_event(&st->fail_ev);
    }

    if (st->connect_timer.timer_set) {
        ngx_del_timer(&st->connect_timer);
    }

    ngx_free(st->rbuf);
    st->rbuf = NULL;
}


ngx_vantage_worker_call_t *
ngx_vantage_worker_call(ngx_uint_t type, ngx_vantage_worker_field_t *fields,
    ngx_uint_t nfields, ngx_vantage_worker_handler_pt handler, void *data)
{
    size_t                      len, n;
    u_char                     *p;
    ngx_uint_t                  i;
    ngx_chain_t                *cl;
    ngx_vantage_worker_t       *st;
    ngx_vantage_worker_call_t  *call;

    st = ngx_vantage_worker;

    if (st == NULL) {
        return NULL;
    }

    len = 0;

    for (i = 0; i < nfields; i++) {
        len += VC_FRAME_FIELD_HEADER;

        if (fields[i].chain == NULL) {
            len += fields[i].value.len;
            continue;
        }

        for (cl = fields[i].chain; cl; cl = cl->next) {
            len += ngx_buf_size(cl->buf);
        }
    }

    if (len > 0x7fffffff) {
        ngx_log_error(NGX_LOG_ERR, st->log, 0,
                      "vantage worker: a frame of %uz bytes is too large",
                      len);
        return NULL;
    }

    call = ngx_alloc(sizeof(ngx_vantage_worker_call_t) + VC_FRAME_HEADER_LEN
                     + len, st->log);
    if (call == NULL) {
        return NULL;
    }

    ngx_memzero(call, sizeof(ngx_vantage_worker_call_t));

    call->frame = (u_char *) call + sizeof(ngx_vantage_worker_call_t);
    call->len = VC_FRAME_HEADER_LEN + len;
    call->handler = handler;
    call->data = data;
    call->node.key = (ngx_rbtree_key_t) st->next_id++;

    p = vc_frame_header_put(call->frame, type, call->node.key, len);

    for (i = 0; i < nfields; i++) {

        if (fields[i].chain == NULL) {
            p = vc_frame_field_put(p, fields[i].tag, fields[i].value.data,
                                   fields[i].value.len);
            continue;
        }

        n = 0;

        for (cl = fields[i].chain; cl; cl = cl->next) {
            n += ngx_buf_size(cl->buf);
        }

        p = vc_frame_field_header_put(p, fields[i].tag, n);

        for (cl = fields[i].chain; cl; cl = cl->next) {
            p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
        }
    }

    /*
     * not cancelable: a request waiting for its reply keeps a process that
     * is shutting down gracefully alive until the reply or the timeout
     */
    call->timer.handler = ngx_vantage_worker_call_timeout;
    call->timer.data = call;
    call->timer.log = st->log;

    if (st->c == NULL && !st->connecting) {
        if (ngx_vantage_worker_connect(st) != NGX_OK) {
            ngx_vantage_worker_fail(st, call,
                                    NGX_VANTAGE_WORKER_UNREACHABLE);
            return call;
        }
    }

    ngx_queue_insert_tail(&st->out, &call->queue);
    call->in_queue = 1;

    ngx_add_timer(&call->timer, st->conf->timeout);

    if (!st->connecting) {
        ngx_vantage_worker_post_write(st);
    }

    return call;
}


void
ngx_vantage_worker_cancel(ngx_vantage_worker_call_t *call)
{
    ngx_vantage_worker_t  *st;

    st = ngx_vantage_worker;

    call->handler = NULL;

    if (st == NULL) {
        return;
    }

    if (call->in_tree) {
        ngx_rbtree_delete(&st->sent, &call->node);
        call->in_tree = 0;
    }

    if (call->in_queue && call->sent) {
        /* half written: the rest must still go out; freed once it has */
        if (call->timer.timer_set) {
            ngx_del_timer(&call->timer);
        }

        return;
    }

    if (call->in_queue) {
        ngx_queue_remove(&call->queue);
        call->in_queue = 0;
    }

    ngx_vantage_worker_free(call);
}


static void
ngx_vantage_worker_free(ngx_vantage_worker_call_t *call)
{
    if (call->timer.timer_set) {
        ngx_del_timer(&call->timer);
    }

    ngx_free(call);
}


static ngx_int_t
ngx_vantage_worker_connect(ngx_vantage_worker_t *st)
{
    int                 rc;
    ngx_err_t           err;
    ngx_socket_t        s;
    ngx_connection_t   *c;

    s = ngx_socket(AF_UNIX, SOCK_STREAM, 0);

    if (s == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ALERT, st->log, ngx_socket_errno,
                      "vantage worker: socket() failed");
        return NGX_ERROR;
    }

    c = ngx_get_connection(s, st->log);
    if (c == NULL) {
        ngx_close_socket(s);
        return NGX_ERROR;
    }

    c->type = SOCK_STREAM;
    c->data = st;
    c->recv = ngx_recv;
    c->send = ngx_send;
    c->read->handler = ngx_vantage_worker_read_handler;
    c->write->handler = ngx_vantage_worker_write_handler;
    c->read->log = st->log;
    c->write->log = st->log;

    if (ngx_nonblocking(s) == -1) {
        ngx_log_error(NGX_LOG_ALERT, st->log, ngx_socket_errno,
                      "vantage worker: " ngx_nonblocking_n " failed");
        ngx_close_connection(c);
        return NGX_ERROR;
    }

    if (ngx_add_conn) {
        if (ngx_add_conn(c) == NGX_ERROR) {
            ngx_close_connection(c);
            return NGX_ERROR;
        }
    }

    rc = connect(s, (struct sockaddr *) &st->conf->sockaddr,
                 st->conf->socklen);

    if (rc == -1) {
        err = ngx_socket_errno;

        if (err != NGX_EINPROGRESS) {
            /* a worker that is not running: said once, not per request */
            if (!st->unreachable) {
                ngx_log_error(NGX_LOG_ERR, st->log, err,
                              "vantage worker: connect() to %V failed",
                              &st->conf->name);
                st->unreachable = 1;
            }

            ngx_close_connection(c);
            return NGX_DECLINED;
        }

        st->connecting = 1;
    }

    if (!ngx_add_conn) {
        if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_CLEAR_EVENT)
            != NGX_OK
            || ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_CLEAR_EVENT)
               != NGX_OK)
        {
            ngx_close_connection(c);
            st->connecting = 0;
            return NGX_ERROR;
        }
    }

    st->c = c;
    st->rlen = 0;

    if (st->connecting) {
        ngx_add_timer(&st->connect_timer, st->conf->connect_timeout);
        return NGX_OK;
    }

    c->write->ready = 1;

    if (st->unreachable) {
        ngx_log_error(NGX_LOG_NOTICE, st->log, 0,
                      "vantage worker: connected to %V again",
                      &st->conf->name);
        st->unreachable = 0;
    }

    return NGX_OK;
}


static void
ngx_vantage_worker_connect_timeout(ngx_event_t *ev)
{
    ngx_vantage_worker_t  *st = ev->data;

    ngx_log_error(NGX_LOG_ERR, st->log, NGX_ETIMEDOUT,
                  "vantage worker: connect() to %V timed out",
                  &st->conf->name);

    st->unreachable = 1;
    ngx_vantage_worker_close(st, NGX_VANTAGE_WORKER_UNREACHABLE);
}


/*
 * Closes the connection: every call queued or sent on it fails (through
 * the posted event), with the outcome given for those not yet written at
 * all and "lost" for the others.
 */
static void
ngx_vantage_worker_close(ngx_vantage_worker_t *st, ngx_uint_t outcome)
{
    ngx_queue_t                *q;
    ngx_rbtree_node_t          *node;
    ngx_vantage_worker_call_t  *call;

    if (st->connect_timer.timer_set) {
        ngx_del_timer(&st->connect_timer);
    }

    if (st->c != NULL) {
        ngx_close_connection(st->c);
        st->c = NULL;
    }

    st->connecting = 0;
    st->rlen = 0;

    while (!ngx_queue_empty(&st->out)) {
        q = ngx_queue_head(&st->out);
        ngx_queue_remove(q);
        call = ngx_queue_data(q, ngx_vantage_worker_call_t, queue);
        call->in_queue = 0;

        if (call->in_tree) {
            continue;
        }

        ngx_vantage_worker_fail(st, call, call->sent
                                          ? NGX_VANTAGE_WORKER_LOST
                                          : outcome);
    }

    while (st->sent.root != st->sent.sentinel) {
        node = ngx_rbtree_min(st->sent.root, st->sent.sentinel);
        ngx_rbtree_delete(&st->sent, node);
        call = (ngx_vantage_worker_call_t *) node;
        call->in_tree = 0;
        ngx_vantage_worker_fail(st, call, NGX_VANTAGE_WORKER_LOST);
    }
}


static void
ngx_vantage_worker_fail(ngx_vantage_worker_t *st,
    ngx_vantage_worker_call_t *call, ngx_uint_t outcome)
{
    if (call->handler == NULL) {
        ngx_vantage_worker_free(call);
        return;
    }

    if (call->timer.timer_set) {
        ngx_del_timer(&call->timer);
    }

    call->outcome = outcome;
    ngx_queue_insert_tail(&st->failed, &call->queue);
    call->in_queue = 1;

    if (!st->fail_ev.posted) {
        ngx_post_event(&st->fail_ev, &ngx_posted_events);
    }
}


static void
ngx_vantage_worker_run_failed(ngx_event_t *ev)
{
    ngx_queue_t                    *q;
    ngx_vantage_worker_t           *st = ev->data;
    ngx_vantage_worker_call_t      *call;
    ngx_vantage_worker_handler_pt   handler;

    while (!ngx_queue_empty(&st->failed)) {
        q = ngx_queue_head(&st->failed);
        ngx_queue_remove(q);
        call = ngx_queue_data(q, ngx_vantage_worker_call_t, queue);
        call->in_queue = 0;

        handler = call->handler;
        call->handler = NULL;

        if (handler != NULL) {
            handler(call->data, call->outcome, NULL, 0);
        }

        ngx_vantage_worker_free(call);
    }
}


static void
ngx_vantage_worker_call_timeout(ngx_event_t *ev)
{
    ngx_vantage_worker_call_t      *call = ev->data;
    ngx_vantage_worker_t           *st;
    ngx_vantage_worker_handler_pt   handler;

    st = ngx_vantage_worker;

    ngx_log_error(NGX_LOG_ERR, st->log, 0,
                  "vantage worker: no reply from %V within %M ms",
                  &st->conf->name, st->conf->timeout);

    handler = call->handler;
    call->handler = NULL;

    if (call->in_tree) {
        ngx_rbtree_delete(&st->sent, &call->node);
        call->in_tree = 0;
    }

    if (call->in_queue && !call->sent) {
        ngx_queue_remove(&call->queue);
        call->in_queue = 0;
    }

    if (handler != NULL) {
        handler(call->data, NGX_VANTAGE_WORKER_TIMEOUT, NULL, 0);
    }

    if (!call->in_queue) {
        ngx_vantage_worker_free(call);
    }

    /* else half written: freed by the write handler once it is all out */
}


static void
ngx_vantage_worker_post_write(ngx_vantage_worker_t *st)
{
    ngx_event_t  *wev;

    wev = st->c->write;

    if (wev->ready && !wev->posted) {
        /* one writev() for every call made in this pass of the loop */
        ngx_post_event(wev, &ngx_posted_events);
    }
}


static void
ngx_vantage_worker_write_handler(ngx_event_t *wev)
{
    int                         err;
    ssize_t                     n;
    socklen_t                   len;
    ngx_uint_t                  niov;
    ngx_queue_t                *q;
    ngx_connection_t           *c;
    struct iovec                iov[NGX_VANTAGE_WORKER_IOVS];
    ngx_vantage_worker_t       *st;
    ngx_vantage_worker_call_t  *call;

    c = wev->data;
    st = c->data;

    if (st->connecting) {
        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }

        if (err) {
            ngx_log_error(NGX_LOG_ERR, st->log, err,
                          "vantage worker: connect() to %V failed",
                          &st->conf->name);
            st->unreachable = 1;
            ngx_vantage_worker_close(st, NGX_VANTAGE_WORKER_UNREACHABLE);
            return;
        }

        st->connecting = 0;
        st->unreachable = 0;
        ngx_del_timer(&st->connect_timer);
    }

    while (!ngx_queue_empty(&st->out)) {

        niov = 0;

        for (q = ngx_queue_head(&st->out);
             q != ngx_queue_sentinel(&st->out)
             && niov < NGX_VANTAGE_WORKER_IOVS;
             q = ngx_queue_next(q))
        {
            call = ngx_queue_data(q, ngx_vantage_worker_call_t, queue);
            iov[niov].iov_base = call->frame + call->sent;
            iov[niov].iov_len = call->len - call->sent;
            niov++;
        }

        n = writev(c->fd, iov, niov);

        if (n == -1) {
            err = ngx_socket_errno;

            if (err == NGX_EAGAIN) {
                wev->ready = 0;
                break;
            }

            if (err == NGX_EINTR) {
                continue;
            }

            ngx_log_error(NGX_LOG_ERR, st->log, err,
                          "vantage worker: writev() to %V failed",
                          &st->conf->name);
            ngx_vantage_worker_close(st, NGX_VANTAGE_WORKER_LOST);
            return;
        }

        /* retire the frames that are out, and advance the one half out */

        while (n > 0) {
            q = ngx_queue_head(&st->out);
            call = ngx_queue_data(q, ngx_vantage_worker_call_t, queue);

            if ((size_t) n < call->len - call->sent) {
                call->sent += n;
                break;
            }

            n -= call->len - call->sent;
            call->sent = call->len;

            ngx_queue_remove(q);
            call->in_queue = 0;

            if (call->handler == NULL) {
                /* cancelled or timed out while half written */
                ngx_vantage_worker_free(call);
                continue;
            }

            ngx_rbtree_insert(&st->sent, &call->node);
            call->in_tree = 1;
        }
    }

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_vantage_worker_close(st, NGX_VANTAGE_WORKER_LOST);
    }
}


static void
ngx_vantage_worker_read_handler(ngx_event_t *rev)
{
    size_t                 size;
    ssize_t                n;
    u_char                *p;
    ngx_connection_t      *c;
    ngx_vantage_worker_t  *st;

    c = rev->data;
    st = c->data;

    if (st->connecting) {
        /* a failed connect() may be reported as readable first */
        ngx_vantage_worker_write_handler(c->write);

        if (st->c == NULL) {
            return;
        }
    }

    while (rev->ready) {

        if (st->rlen == st->rsize) {
            size = st->rsize ? st->rsize * 2 : NGX_VANTAGE_WORKER_RBUF;

            if (size > VC_FRAME_HEADER_LEN + NGX_VANTAGE_WORKER_MAX_REPLY) {
                ngx_log_error(NGX_LOG_ERR, st->log, 0,
                              "vantage worker: a reply from %V is larger "
                              "than %d bytes", &st->conf->name,
                              NGX_VANTAGE_WORKER_MAX_REPLY);
                ngx_vantage_worker_close(st, NGX_VANTAGE_WORKER_LOST);
                return;
            }

            p = ngx_alloc(size, st->log);
            if (p == NULL) {
                ngx_vantage_worker_close(st, NGX_VANTAGE_WORKER_LOST);
                return;
            }

            if (st->rlen) {
                ngx_memcpy(p, st->rbuf, st->rlen);
            }

            ngx_free(st->rbuf);
            st->rbuf = p;
            st->rsize = size;
        }

        n = c->recv(c, st->rbuf + st->rlen, st->rsize - st->rlen);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            /* the replies read before the end are answers all the same */
            (void) ngx_vantage_worker_replies(st);

            if (st->c != NULL) {
                ngx_log_error(NGX_LOG_ERR, st->log, 0,
                              "vantage worker: connection to %V %s",
                              &st->conf->name,
                              n == 0 ? "closed by the worker" : "failed");
                ngx_vantage_worker_close(st, NGX_VANTAGE_WORKER_LOST);
            }

            return;
        }

        st->rlen += n;

        if (ngx_vantage_worker_replies(st) != NGX_OK) {
            return;
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_vantage_worker_close(st, NGX_VANTAGE_WORKER_LOST);
    }
}


/*
 * Hands every whole reply in the read buffer to its call.  Returns NGX_OK,
 * or NGX_ERROR when the connection was closed on a malformed frame.
 */
static ngx_int_t
ngx_vantage_worker_replies(ngx_vantage_worker_t *st)
{
    u_char                         *pos;
    size_t                          left;
    const char                     *err;
    ngx_rbtree_node_t              *node, *sentinel;
    vc_frame_header_t               h;
    ngx_vantage_worker_call_t      *call;
    ngx_vantage_worker_handler_pt   handler;

    pos = st->rbuf;
    left = st->rlen;

    while (left >= VC_FRAME_HEADER_LEN) {

        if (vc_frame_header_get(pos, left, NGX_VANTAGE_WORKER_MAX_REPLY, &h,
                                &err)
            != VC_OK)
        {
            ngx_log_error(NGX_LOG_ERR, st->log, 0,
                          "vantage worker: bad frame from %V: %s",
                          &st->conf->name, err);
            ngx_vantage_worker_close(st, NGX_VANTAGE_WORKER_LOST);
            return NGX_ERROR;
        }

        if (left < VC_FRAME_HEADER_LEN + h.length) {
            break;
        }

        node = st->sent.root;
        sentinel = st->sent.sentinel;

        while (node != sentinel && node->key != (ngx_rbtree_key_t) h.id) {
            node = ((ngx_rbtree_key_t) h.id < node->key) ? node->left
                                                          : node->right;
        }

        if (node != sentinel && (h.type & VC_FRAME_REPLY)) {
            call = (ngx_vantage_worker_call_t *) node;
            ngx_rbtree_delete(&st->sent, node);
            call->in_tree = 0;

            handler = call->handler;
            call->handler = NULL;

            if (call->timer.timer_set) {
                ngx_del_timer(&call->timer);
            }

            if (handler != NULL) {
                handler(call->data, NGX_VANTAGE_WORKER_REPLY,
                        pos + VC_FRAME_HEADER_LEN, h.length);
            }

            ngx_vantage_worker_free(call);

            if (st->c == NULL) {
                /* a handler's call found the connection broken */
                return NGX_ERROR;
            }

        } else {
            /* the reply to a call that timed out or was cancelled */
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, st->log, 0,
                           "vantage worker: reply %uL dropped", h.id);
        }

        pos += VC_FRAME_HEADER_LEN + h.length;
        left -= VC_FRAME_HEADER_LEN + h.length;
    }

    if (left && pos != st->rbuf) {
        ngx_memmove(st->rbuf, pos, left);
    }

    st->rlen = left;

    return NGX_OK;
}


void
ngx_vantage_worker_reply_read(u_char *fields, size_t len,
    ngx_vantage_worker_reply_t *rep)
{
    ngx_str_t            *str;
    vc_frame_field_t      f;
    const char           *err;
    const unsigned char  *pos, *end;

    ngx_memzero(rep, sizeof(ngx_vantage_worker_reply_t));

    rep->error.data = (u_char *) "";
    rep->body.data = (u_char *) "";
    rep->job_id.data = (u_char *) "";
    rep->job_state.data = (u_char *) "";

    pos = fields;
    end = fields + len;

    while (vc_frame_field_next(&pos, end, &f, &err) == VC_OK) {

        str = NULL;

        switch (f.tag & ~VC_FRAME_TAG_OPTIONAL) {

        case VC_TAG_STATUS:
            (void) vc_frame_field_uint32(&f, &rep->status);
            break;

        case VC_TAG_RETRY_AFTER:
            (void) vc_frame_field_uint32(&f, &rep->retry_after);
            break;

        case VC_TAG_AGE:
            (void) vc_frame_field_uint32(&f, &rep->age);
            break;

        case VC_TAG_MAX_AGE:
            (void) vc_frame_field_uint32(&f, &rep->max_age);
            break;

        case VC_TAG_ERROR:
            str = &rep->error;
            break;

        case VC_TAG_BODY:
            str = &rep->body;
            break;

        case VC_TAG_JOB_ID:
            str = &rep->job_id;
            break;

        case VC_TAG_JOB_STATE:
            str = &rep->job_state;
            break;

        case VC_TAG_REPLAYED:
            rep->replayed = 1;
            break;

        case VC_TAG_STALE:
            rep->stale = 1;
            break;

        default:
            break;
        }

        if (str && f.len) {
            str->data = (u_char *) f.value;
            str->len = f.len;
        }
    }
}
