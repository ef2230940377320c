/* server.c -- the Unix socket the module hands work over (docs/PROTOCOL.md) */

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "vc_frame.h"
#include "vw_conf.h"
#include "vw_core.h"
#include "vw_engine.h"
#include "vw_fetch.h"
#include "vw_metrics.h"


/* the longest URL FETCH's IDP may be; a longer one is no [idp]'s */
#define VW_SERVER_URL_MAX  4096


struct vw_server_s {
    struct event_base          *base;
    struct evconnlistener      *listener;
    char                       *path;
    size_t                      max_frame;
    vw_queue_t                 *queue;
    struct vw_conn_s           *conns;     /* open, for vw_server_free() */
    vw_engine_conf_pt           conf;
    vw_fetch_t                 *fetch;     /* NULL: FETCH answers 501 */
};


typedef struct vw_conn_s {
    vw_server_t                *server;
    struct bufferevent         *bev;       /* NULL once the peer is gone */
    unsigned                    pending;   /* pushes awaiting Redis */
    struct vw_conn_s           *next;      /* in server->conns while open */
    struct vw_conn_s          **prev;
} vw_conn_t;


typedef struct {
    vw_conn_t                  *conn;
    uint64_t                    id;
    char                        job_id[33];
    char                        type[129];  /* the job's, for the metrics */
} vw_push_t;


static int vw_server_permit(const char *path, unsigned mode, gid_t gid);
static void vw_server_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int socklen, void *arg);
static void vw_server_read(struct bufferevent *bev, void *arg);
static void vw_server_event(struct bufferevent *bev, short what, void *arg);
static void vw_server_written(struct bufferevent *bev, void *arg);
static void vw_server_close(vw_conn_t *conn);
static void vw_server_ping(vw_conn_t *conn, uint64_t id);
static void vw_server_frame(vw_conn_t *conn, const vc_frame_header_t *h,
    const unsigned char *fields);
static void vw_server_dispatch(vw_conn_t *conn, uint64_t id,
    const unsigned char *fields, size_t len);
static void vw_server_pushed(void *data, int rc, const char *job_id,
    const char *state);
static void vw_server_reply(vw_conn_t *conn, unsigned type, uint64_t id,
    uint32_t status, const char *error, const char *job_id,
    uint32_t retry_after);
/* a flag beside a frame type: vw_server_reply_state() says "repeat" */
#define VW_REPLAYED  0x100

static void vw_server_reply_state(vw_conn_t *conn, unsigned type,
    uint64_t id, uint32_t status, const char *job_id, const char *state);
static void vw_server_job_status(vw_conn_t *conn, uint64_t id,
    const unsigned char *fields, size_t len);
static void vw_server_status_read(void *data, int rc, void *reply);
static void vw_server_fetch(vw_conn_t *conn, uint64_t id,
    const unsigned char *fields, size_t len);
static void vw_server_fetched(void *data, const vw_fetch_result_t *res);


vw_server_t *
vw_server_create(struct event_base *base, const char *path, unsigned mode,
    gid_t gid, size_t max_frame, vw_queue_t *queue)
{
    vw_server_t  *srv;

    srv = calloc(1, sizeof(vw_server_t));
    if (srv == NULL) {
        return NULL;
    }

    srv->base = base;
    srv->max_frame = max_frame;
    srv->queue = queue;
    srv->path = strdup(path);
    if (srv->path == NULL) {
        free(srv);
        return NULL;
    }

    srv->listener = vw_server_listen(base, path, mode, gid, vw_server_accept,
                                     srv);
    if (srv->listener == NULL) {
        free(srv->path);
        free(srv);
        return NULL;
    }

    return srv;
}


struct evconnlistener *
vw_server_listen(struct event_base *base, const char *path, unsigned mode,
    gid_t gid, evconnlistener_cb cb, void *arg)
{
    mode_t                  umask_old;
    struct stat             st;
    struct sockaddr_un      sun;
    struct evconnlistener  *l;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        vw_log("error", "socket path too long", "socket", path, NULL);
        return NULL;
    }

    /* a socket file left by a worker that died; nothing else is removed */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        (void) unlink(path);
    }

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path));

    /*
     * bind() creates the file as 0777 less the umask: created owner-only,
     * nobody else can connect before vw_server_permit() opens it up
     */
    umask_old = umask(0177);

    l = evconnlistener_new_bind(base, cb, arg,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                128, (struct sockaddr *) &sun, sizeof(sun));
    (void) umask(umask_old);

    if (l == NULL) {
        vw_log("error", "cannot listen", "socket", path,
               "reason", strerror(errno), NULL);
        return NULL;
    }

    if (vw_server_permit(path, mode, gid) != VW_OK) {
        evconnlistener_free(l);
        (void) unlink(path);
        return NULL;
    }

    return l;
}


/*
 * Gives the socket file its group (unless gid is (gid_t) -1) and mode
 * (listen_group, listen_mode): nginx's workers run as another user than
 * the worker, and connecting needs write permission on the file.  Logs
 * the mode and group the file ends up with.  Returns VW_OK, or VW_ERROR
 * (logged) when either cannot be applied: a socket nginx cannot reach,
 * or one more open than configured, must not look like a working start.
 */
static int
vw_server_permit(const char *path, unsigned mode, gid_t gid)
{
    int            err;
    char           m[8], g[64];
    struct stat    st;
    struct group  *grp;

    if (gid != (gid_t) -1 && chown(path, (uid_t) -1, gid) != 0) {
        err = errno;
        snprintf(g, sizeof(g), "%lu", (unsigned long) gid);
        vw_log("error", "cannot set the socket's group (listen_group)",
               "socket", path, "gid", g, "reason", strerror(err), NULL);
        return VW_ERROR;
    }

    if (chmod(path, (mode_t) mode) != 0 || stat(path, &st) != 0) {
        err = errno;
        snprintf(m, sizeof(m), "%04o", mode);
        vw_log("error", "cannot set the socket's mode (listen_mode)",
               "socket", path, "mode", m, "reason", strerror(err), NULL);
        return VW_ERROR;
    }

    snprintf(m, sizeof(m), "%04o", (unsigned) (st.st_mode & 07777));

    /* getgrgid() is fine here: the loop has not started any thread */
    grp = getgrgid(st.st_gid);
    if (grp != NULL) {
        snprintf(g, sizeof(g), "%s", grp->gr_name);
    } else {
        snprintf(g, sizeof(g), "%lu", (unsigned long) st.st_gid);
    }

    vw_log("info", "listening", "socket", path, "mode", m, "group", g, NULL);

    return VW_OK;
}


void
vw_server_set_conf(vw_server_t *srv, vw_engine_conf_pt conf)
{
    srv->conf = conf;
}


void
vw_server_set_fetch(vw_server_t *srv, vw_fetch_t *fetch)
{
    srv->fetch = fetch;
}


void
vw_server_free(vw_server_t *srv)
{
    if (srv == NULL) {
        return;
    }

    evconnlistener_free(srv->listener);

    /* called before the queue is freed, which answers pending pushes */
    while (srv->conns != NULL) {
        vw_server_close(srv->conns);
    }

    (void) unlink(srv->path);
    free(srv->path);
    free(srv);
}


static void
vw_server_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int socklen, void *arg)
{
    vw_conn_t    *conn;
    vw_server_t  *srv = arg;

    conn = calloc(1, sizeof(vw_conn_t));
    if (conn == NULL) {
        evutil_closesocket(fd);
        return;
    }

    conn->server = srv;
    conn->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);

    if (conn->bev == NULL) {
        evutil_closesocket(fd);
        free(conn);
        return;
    }

    bufferevent_setcb(conn->bev, vw_server_read, NULL, vw_server_event, conn);
    bufferevent_enable(conn->bev, EV_READ | EV_WRITE);

    conn->next = srv->conns;
    conn->prev = &srv->conns;

    if (srv->conns != NULL) {
        srv->conns->prev = &conn->next;
    }

    srv->conns = conn;
}


static void
vw_server_read(struct bufferevent *bev, void *arg)
{
    vw_conn_t          *conn = arg;

    int                 rc;
    size_t              len, n;
    const char         *err;
    unsigned char      *p;
    struct evbuffer    *in;
    vc_frame_header_t   h;

    in = bufferevent_get_input(bev);

    for ( ;; ) {
        len = evbuffer_get_length(in);

        if (len == 0) {
            return;
        }

        n = len < VC_FRAME_HEADER_LEN ? len : VC_FRAME_HEADER_LEN;
        p = evbuffer_pullup(in, n);

        rc = vc_frame_header_get(p, n, (size_t) -1, &h, &err);

        if (rc == VC_AGAIN) {
            return;
        }

        if (rc != VC_OK) {
            /* no frame boundary can be trusted after this */
            vw_log("warn", "closing a connection", "reason", err, NULL);
            vw_server_close(conn);
            return;
        }

        if (h.length > conn->server->max_frame) {
            /* answered, then closed once the answer is out */
            vw_server_reply(conn, h.type, h.id, 413, "frame too large",
                            NULL, 0);
            evbuffer_drain(in, len);
            bufferevent_disable(bev, EV_READ);
            bufferevent_setcb(bev, NULL, vw_server_written, vw_server_event,
                              conn);
            return;
        }

        if (len < VC_FRAME_HEADER_LEN + (size_t) h.length) {
            return;
        }

        p = evbuffer_pullup(in, VC_FRAME_HEADER_LEN + (size_t) h.length);
        if (p == NULL) {
            vw_server_close(conn);
            return;
        }

        vw_server_frame(conn, &h, p + VC_FRAME_HEADER_LEN);

        if (conn->bev == NULL) {
            return;
        }

        evbuffer_drain(in, VC_FRAME_HEADER_LEN + (size_t) h.length);
    }
}


/* the last reply is out: the connection was to close after it */
static void
vw_server_written(struct bufferevent *bev, void *arg)
{
    vw_server_close(arg);
}


static void
vw_server_event(struct bufferevent *bev, short what, void *arg)
{
    vw_server_close(arg);
}


/*
 * Closes the peer's connection; the connection's memory stays until the
 * last push it started has its answer from Redis.
 */
static void
vw_server_close(vw_conn_t *conn)
{
    if (conn->bev != NULL) {
        bufferevent_free(conn->bev);
        conn->bev = NULL;

        *conn->prev = conn->next;

        if (conn->next != NULL) {
            conn->next->prev = conn->prev;
        }
    }

    if (conn->pending == 0) {
        free(conn);
    }
}


static void
vw_server_frame(vw_conn_t *conn, const vc_frame_header_t *h,
    const unsigned char *fields)
{
    if (h->type & VC_FRAME_REPLY) {
        vw_server_reply(conn, h->type & ~VC_FRAME_REPLY, h->id, 400,
                        "a reply where a request was expected", NULL, 0);
        return;
    }

    switch (h->type) {

    case VC_FRAME_PING:
        vw_server_ping(conn, h->id);
        return;

    case VC_FRAME_DISPATCH:
        vw_server_dispatch(conn, h->id, fields, h->length);
        return;

    case VC_FRAME_JOB_STATUS:
        vw_server_job_status(conn, h->id, fields, h->length);
        return;

    case VC_FRAME_FETCH:
        if (conn->server->fetch != NULL) {
            vw_server_fetch(conn, h->id, fields, h->length);
            return;
        }

        /* without a configuration file there is no [idp] to fetch from */
        vw_server_reply(conn, h->type, h->id, 501, "not implemented", NULL,
                        0);
        return;

    default:
        vw_server_reply(conn, h->type, h->id, 501, "not implemented", NULL,
                        0);
        return;
    }
}


/*
 * PING: 200 once the worker can take work, that is once its queue can make
 * a job durable (Redis connected, the password accepted, the eviction
 * policy checked: queue.c's "Redis keeps every job"), and 503 with the
 * reason and RETRY_AFTER 1 until then, or again while Redis is away.  A
 * worker without a queue would be ready once listening.
 */
static void
vw_server_ping(vw_conn_t *conn, uint64_t id)
{
    char         err[VW_ERRSTR_LEN + 32];
    const char  *reason;

    if (conn->server->queue == NULL
        || vw_queue_ready(conn->server->queue, &reason) == VW_OK)
    {
        vw_server_reply(conn, VC_FRAME_PING, id, 200, NULL, NULL, 0);
        return;
    }

    snprintf(err, sizeof(err), "the worker is not ready: %s", reason);
    vw_server_reply(conn, VC_FRAME_PING, id, 503, err, NULL, 1);
}


static int
vw_server_valid_type(const vw_str_t *s)
{
    size_t  i;

    if (s->data == NULL || s->len == 0 || s->len > 128) {
        return 0;
    }

    for (i = 0; i < s->len; i++) {
        unsigned char  c = s->data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
        {
            return 0;
        }
    }

    return 1;
}


/*
 * FETCH's IDP: an [idp] section's name, or a URL its file lists (the
 * module names providers by the URLs of its own directives); which
 * section, if any, is fetch.c's to find
 */
static int
vw_server_valid_idp(const vw_str_t *s)
{
    size_t  i;

    if (s->data == NULL || s->len <= 8
        || memcmp(s->data, "https://", 8) != 0)
    {
        return vw_server_valid_type(s);
    }

    if (s->len > VW_SERVER_URL_MAX) {
        return 0;
    }

    for (i = 8; i < s->len; i++) {
        if (s->data[i] <= 0x20 || s->data[i] >= 0x7f) {
            return 0;
        }
    }

    return 1;
}


static int
vw_server_valid_tenant(const vw_str_t *s)
{
    size_t  i;

    if (s->data == NULL || s->len == 0 || s->len > 128) {
        return 0;
    }

    for (i = 0; i < s->len; i++) {
        if (s->data[i] < 0x20 || s->data[i] >= 0x7f) {
            return 0;
        }
    }

    return 1;
}


/*
 * DISPATCH: checks the job, makes it durable, and answers 202 only once
 * Redis has acknowledged it (vw_server_pushed()).
 */
static void
vw_server_dispatch(vw_conn_t *conn, uint64_t id, const unsigned char *fields,
    size_t len)
{
    int                   rc;
    char                 *headers_json;
    size_t                i;
    vw_job_t              job;
    const vw_conf_t      *conf;
    vw_queue_limits_t     lim;
    const vw_conf_job_t  *jc;
    vw_str_t             *single;
    json_t               *headers, *pair;
    vw_push_t            *push;
    const char           *err;
    unsigned char         rnd[16];
    const unsigned char  *pos, *end, *nul;
    vc_frame_field_t      f;

    static const unsigned char  known[64] = {
        [VC_TAG_JOB_TYPE] = 1, [VC_TAG_TENANT] = 1, [VC_TAG_SUBJECT] = 1,
        [VC_TAG_IDEMPOTENCY_KEY] = 1, [VC_TAG_CORRELATION_ID] = 1,
        [VC_TAG_HEADER] = 1, [VC_TAG_BODY] = 1, [VC_TAG_METHOD] = 1,
        [VC_TAG_URI] = 1, [VC_TAG_ORDERING_KEY] = 1
    };

    if (vc_frame_fields_check(fields, len, known, &err) != VC_OK) {
        vw_server_reply(conn, VC_FRAME_DISPATCH, id, 400, err, NULL, 0);
        return;
    }

    memset(&job, 0, sizeof(vw_job_t));

    headers = json_array();
    if (headers == NULL) {
        vw_server_reply(conn, VC_FRAME_DISPATCH, id, 503,
                        "the worker is out of memory", NULL, 1);
        return;
    }

    err = NULL;
    pos = fields;
    end = fields + len;

    while (len && (rc = vc_frame_field_next(&pos, end, &f, &err)) == VC_OK) {

        switch (f.tag) {
        case VC_TAG_JOB_TYPE:        single = &job.type; break;
        case VC_TAG_TENANT:          single = &job.tenant; break;
        case VC_TAG_SUBJECT:         single = &job.subject; break;
        case VC_TAG_IDEMPOTENCY_KEY: single = &job.idempotency_key; break;
        case VC_TAG_CORRELATION_ID:  single = &job.correlation_id; break;
        case VC_TAG_METHOD:          single = &job.method; break;
        case VC_TAG_URI:             single = &job.uri; break;
        case VC_TAG_BODY:            single = &job.body; break;
        case VC_TAG_ORDERING_KEY:    single = &job.ordering_key; break;

        case VC_TAG_HEADER:
            nul = memchr(f.value, '\0', f.len);
            if (nul == NULL) {
                err = "a header field without its NUL separator";
                goto invalid;
            }

            pair = json_pack("[s%s%]", (const char *) f.value,
                             (size_t) (nul - f.value), (const char *) nul + 1,
                             (size_t) (f.len - (nul - f.value) - 1));
            if (pair == NULL) {
                err = "a header that is not valid UTF-8";
                goto invalid;
            }

            json_array_append_new(headers, pair);
            continue;

        default:
            /* an optional field this worker does not know */
            continue;
        }

        if (single->data != NULL) {
            err = "a field given twice";
            goto invalid;
        }

        /* an empty value still counts as given */
        single->data = f.len ? f.value : (const unsigned char *) "";
        single->len = f.len;
    }

    if (!vw_server_valid_type(&job.type)) {
        err = "the job type is missing or not [A-Za-z0-9._-]{1,128}";
        goto invalid;
    }

    if (!vw_server_valid_tenant(&job.tenant)) {
        err = "the tenant is missing or not 1 to 128 printable ASCII "
              "characters";
        goto invalid;
    }

    conf = conn->server->conf ? conn->server->conf() : NULL;
    memset(&lim, 0, sizeof(vw_queue_limits_t));

    if (conf != NULL) {
        jc = vw_conf_job(conf, (const char *) job.type.data, job.type.len);

        /* a worker started without a file knows no job types: it takes all */
        if (jc == NULL && conf->file != NULL) {
            err = "unknown job type";
            goto invalid;
        }

        vw_server_limits(conf, jc, &lim);
    }

    headers_json = NULL;

    if (json_array_size(headers)) {
        headers_json = json_dumps(headers, JSON_COMPACT);
        if (headers_json == NULL) {
            json_decref(headers);
            vw_server_reply(conn, VC_FRAME_DISPATCH, id, 503,
                            "the worker is out of memory", NULL, 1);
            return;
        }

        job.headers.data = (unsigned char *) headers_json;
        job.headers.len = strlen(headers_json);
    }

    json_decref(headers);

    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t) sizeof(rnd)) {
        free(headers_json);
        vw_server_reply(conn, VC_FRAME_DISPATCH, id, 503,
                        "no randomness for a job id", NULL, 1);
        return;
    }

    for (i = 0; i < sizeof(rnd); i++) {
        snprintf(job.id + 2 * i, 3, "%02x", rnd[i]);
    }

    push = malloc(sizeof(vw_push_t));

    if (push == NULL) {
        free(headers_json);
        vw_server_reply(conn, VC_FRAME_DISPATCH, id, 503,
                        "the worker is out of memory", NULL, 1);
        return;
    }

    push->conn = conn;
    push->id = id;
    memcpy(push->job_id, job.id, sizeof(job.id));
    memcpy(push->type, job.type.data, job.type.len);
    push->type[job.type.len] = '\0';

    rc = vw_queue_push(conn->server->queue, &job, &lim, vw_server_pushed,
                       push);

    /* the commands are in hiredis's buffer: the frame may go */
    free(headers_json);

    if (rc != VW_OK) {
        free(push);
        vw_server_reply(conn, VC_FRAME_DISPATCH, id, 503,
                        "the job queue is unavailable", NULL, 1);
        return;
    }

    conn->pending++;

    return;

invalid:

    json_decref(headers);
    vw_server_reply(conn, VC_FRAME_DISPATCH, id, 400, err, NULL, 0);
}


void
vw_server_limits(const vw_conf_t *conf, const vw_conf_job_t *jc,
    vw_queue_limits_t *lim)
{
    memset(lim, 0, sizeof(vw_queue_limits_t));

    if (conf == NULL) {
        return;
    }

    lim->inflight_cap = conf->inflight_cap;
    lim->idempotency_window_ms = conf->idempotency_window_ms;
    lim->ordered = jc != NULL && jc->ordering;
}


static void
vw_server_pushed(void *data, int rc, const char *job_id, const char *state)
{
    vw_push_t  *push = data;
    vw_conn_t  *conn = push->conn;

    conn->pending--;

    /* durable now, heard of or not; a replay names an older job */
    if (rc == VW_OK && state == NULL) {
        vw_metrics_inc(VW_METRICS_DISPATCH_ACCEPTED, push->type, NULL);
        vw_metrics_inc(VW_METRICS_JOBS_TOTAL, push->type, "accepted");
    }

    if (conn->bev == NULL) {
        /* the peer went away: the job stands, nobody hears of it */
        if (conn->pending == 0) {
            free(conn);
        }

        free(push);
        return;
    }

    switch (rc) {

    case VW_OK:
        if (state != NULL) {
            /* a repeat: the original job, as a fresh 202 would name it */
            vw_server_reply_state(conn, VC_FRAME_DISPATCH | VW_REPLAYED,
                                  push->id, 202, job_id, state);
        } else {
            vw_server_reply(conn, VC_FRAME_DISPATCH, push->id, 202, NULL,
                            job_id, 0);
        }
        break;

    case VW_DECLINED:
        vw_server_reply(conn, VC_FRAME_DISPATCH, push->id, 422,
                        "the idempotency key was used with another body",
                        NULL, 0);
        break;

    case VW_BUSY:
        vw_server_reply(conn, VC_FRAME_DISPATCH, push->id, 409,
                        "a request with this idempotency key is in progress",
                        NULL, 1);
        break;

    case VW_AGAIN:
        vw_server_reply(conn, VC_FRAME_DISPATCH, push->id, 503,
                        "too many jobs in flight", NULL, 1);
        break;

    default:
        vw_server_reply(conn, VC_FRAME_DISPATCH, push->id, 503,
                        "the job queue is unavailable", NULL, 1);
    }

    free(push);
}


static void
vw_server_reply(vw_conn_t *conn, unsigned type, uint64_t id, uint32_t status,
    const char *error, const char *job_id, uint32_t retry_after)
{
    char            state[96];
    size_t          len, elen;
    unsigned char   buf[512], *p;

    /* every refusal of a DISPATCH passes here, whatever its cause */
    if (type == VC_FRAME_DISPATCH && status != 202) {
        snprintf(state, sizeof(state), "%u", (unsigned) status);
        vw_metrics_inc(VW_METRICS_DISPATCH_REFUSED, state, NULL);
    }

    if (conn->bev == NULL) {
        return;
    }

    if (job_id != NULL) {
        snprintf(state, sizeof(state),
                 "{\"job_id\":\"%s\",\"status\":\"queued\"}", job_id);
        vw_server_reply_state(conn, type, id, status, job_id, state);
        return;
    }

    elen = error ? strlen(error) : 0;
    if (elen > 256) {
        elen = 256;
    }

    len = VC_FRAME_FIELD_HEADER + 4
          + (error ? VC_FRAME_FIELD_HEADER + elen : 0)
          + (retry_after ? VC_FRAME_FIELD_HEADER + 4 : 0);

    p = vc_frame_header_put(buf, type | VC_FRAME_REPLY, id, (uint32_t) len);
    p = vc_frame_field_put_uint32(p, VC_TAG_STATUS, status);

    if (error) {
        p = vc_frame_field_put(p, VC_TAG_ERROR, error, (uint32_t) elen);
    }

    if (retry_after) {
        p = vc_frame_field_put_uint32(p, VC_TAG_RETRY_AFTER, retry_after);
    }

    bufferevent_write(conn->bev, buf, (size_t) (p - buf));
}


/*
 * A reply naming a job: its id and its state as JSON.  VW_REPLAYED in type
 * adds the optional REPLAYED tag: the job is an idempotent repeat's.
 */

static void
vw_server_reply_state(vw_conn_t *conn, unsigned type, uint64_t id,
    uint32_t status, const char *job_id, const char *state)
{
    unsigned        replayed;
    size_t          len, slen;
    unsigned char  *buf, *p;

    if (conn->bev == NULL) {
        return;
    }

    replayed = type & VW_REPLAYED;
    type &= ~VW_REPLAYED;
    slen = strlen(state);

    len = VC_FRAME_FIELD_HEADER + 4 + VC_FRAME_FIELD_HEADER + 32
          + VC_FRAME_FIELD_HEADER + slen
          + (replayed ? VC_FRAME_FIELD_HEADER : 0);

    buf = malloc(VC_FRAME_HEADER_LEN + len);
    if (buf == NULL) {
        vw_server_reply(conn, type, id, 503, "the worker is out of memory",
                        NULL, 1);
        return;
    }

    p = vc_frame_header_put(buf, type | VC_FRAME_REPLY, id, (uint32_t) len);
    p = vc_frame_field_put_uint32(p, VC_TAG_STATUS, status);
    p = vc_frame_field_put(p, VC_TAG_JOB_ID, job_id, 32);
    p = vc_frame_field_put(p, VC_TAG_JOB_STATE, state, (uint32_t) slen);

    if (replayed) {
        p = vc_frame_field_put(p, VC_TAG_REPLAYED | VC_FRAME_TAG_OPTIONAL,
                               "", 0);
    }

    bufferevent_write(conn->bev, buf, (size_t) (p - buf));

    free(buf);
}


typedef struct {
    vw_conn_t                  *conn;
    uint64_t                    id;
    char                        job_id[33];
    char                        tenant[129];
    size_t                      tenant_len;
} vw_status_t;


/*
 * JOB_STATUS: the state of one of the tenant's jobs.  Another tenant's job
 * and a job that does not exist get the same 404, so that ids cannot be
 * probed across tenants.
 */
static void
vw_server_job_status(vw_conn_t *conn, uint64_t id, const unsigned char *fields,
    size_t len)
{
    size_t                i;
    vw_str_t              tenant, job_id;
    vw_status_t          *st;
    const char           *err;
    vc_frame_field_t      f;
    const unsigned char  *pos, *end;

    static const unsigned char  known[64] = {
        [VC_TAG_TENANT] = 1, [VC_TAG_JOB_ID] = 1
    };

    if (vc_frame_fields_check(fields, len, known, &err) != VC_OK) {
        vw_server_reply(conn, VC_FRAME_JOB_STATUS, id, 400, err, NULL, 0);
        return;
    }

    memset(&tenant, 0, sizeof(vw_str_t));
    memset(&job_id, 0, sizeof(vw_str_t));

    pos = fields;
    end = fields + len;

    while (len && vc_frame_field_next(&pos, end, &f, &err) == VC_OK) {
        if (f.tag == VC_TAG_TENANT) {
            tenant.data = f.value;
            tenant.len = f.len;

        } else if (f.tag == VC_TAG_JOB_ID) {
            job_id.data = f.value;
            job_id.len = f.len;
        }
    }

    if (!vw_server_valid_tenant(&tenant)) {
        vw_server_reply(conn, VC_FRAME_JOB_STATUS, id, 400,
                        "the tenant is missing or not 1 to 128 printable "
                        "ASCII characters", NULL, 0);
        return;
    }

    if (job_id.len != 32) {
        goto not_found;
    }

    for (i = 0; i < 32; i++) {
        if (!((job_id.data[i] >= '0' && job_id.data[i] <= '9')
              || (job_id.data[i] >= 'a' && job_id.data[i] <= 'f')))
        {
            goto not_found;
        }
    }

    st = malloc(sizeof(vw_status_t));
    if (st == NULL) {
        vw_server_reply(conn, VC_FRAME_JOB_STATUS, id, 503,
                        "the worker is out of memory", NULL, 1);
        return;
    }

    st->conn = conn;
    st->id = id;
    memcpy(st->job_id, job_id.data, 32);
    st->job_id[32] = '\0';
    memcpy(st->tenant, tenant.data, tenant.len);
    st->tenant_len = tenant.len;

    if (vw_queue_status(conn->server->queue, st->job_id,
                        vw_server_status_read, st)
        != VW_OK)
    {
        free(st);
        vw_server_reply(conn, VC_FRAME_JOB_STATUS, id, 503,
                        "the job queue is unavailable", NULL, 1);
        return;
    }

    conn->pending++;

    return;

not_found:

    vw_server_reply(conn, VC_FRAME_JOB_STATUS, id, 404, "no such job", NULL,
                    0);
}




static void
vw_server_status_read(void *data, int rc, void *reply)
{
    char         *text;
    json_t       *o;
    vw_conn_t    *conn;
    redisReply   *r = reply, **e;
    vw_status_t  *st = data;

    conn = st->conn;
    conn->pending--;

    if (conn->bev == NULL) {
        if (conn->pending == 0) {
            free(conn);
        }

        free(st);
        return;
    }

    if (rc != VW_OK) {
        vw_server_reply(conn, VC_FRAME_JOB_STATUS, st->id, 503,
                        "the job queue is unavailable", NULL, 1);
        free(st);
        return;
    }

    e = r->element;

    /* in the order of vw_job_status_fields */
    if (e[0]->type != REDIS_REPLY_STRING || e[0]->len != st->tenant_len
        || memcmp(e[0]->str, st->tenant, st->tenant_len) != 0)
    {
        vw_server_reply(conn, VC_FRAME_JOB_STATUS, st->id, 404,
                        "no such job", NULL, 0);
        free(st);
        return;
    }

    o = json_object();
    text = NULL;

    if (o != NULL) {
        json_object_set_new(o, "job_id", json_string(st->job_id));
        vw_job_state_fill(o, e);

        text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
    }

    if (text == NULL) {
        vw_server_reply(conn, VC_FRAME_JOB_STATUS, st->id, 503,
                        "the worker is out of memory", NULL, 1);

    } else {
        vw_server_reply_state(conn, VC_FRAME_JOB_STATUS, st->id, 200,
                              st->job_id, text);
        free(text);
    }

    free(st);
}


typedef struct {
    vw_conn_t                  *conn;
    uint64_t                    id;
} vw_fetching_t;


/*
 * FETCH: IDP names an [idp] of the worker's configuration, by its name or
 * by one of its URLs, FETCH_KIND says what of it (jwks, discovery,
 * introspect), TOKEN is introspect's, MAX_AGE asks for a refresh of a
 * key set at least that old.  A URL only selects a section that lists
 * it, and the module never sends a credential: the worker calls only the
 * providers its own configuration lists, with its own secrets.
 */
static void
vw_server_fetch(vw_conn_t *conn, uint64_t id, const unsigned char *fields,
    size_t len)
{
    int64_t               max_age;
    uint32_t              v;
    vw_str_t              idp, kind, token, age, *single;
    const char           *err;
    vw_fetching_t        *fx;
    vc_frame_field_t      f;
    vw_fetch_kind_e       k;
    const unsigned char  *pos, *end;

    static const unsigned char  known[64] = {
        [VC_TAG_IDP] = 1, [VC_TAG_FETCH_KIND] = 1, [VC_TAG_TOKEN] = 1,
        [VC_TAG_MAX_AGE] = 1
    };

    if (vc_frame_fields_check(fields, len, known, &err) != VC_OK) {
        vw_server_reply(conn, VC_FRAME_FETCH, id, 400, err, NULL, 0);
        return;
    }

    memset(&idp, 0, sizeof(vw_str_t));
    memset(&kind, 0, sizeof(vw_str_t));
    memset(&token, 0, sizeof(vw_str_t));
    memset(&age, 0, sizeof(vw_str_t));

    pos = fields;
    end = fields + len;

    while (len && vc_frame_field_next(&pos, end, &f, &err) == VC_OK) {
        switch (f.tag) {
        case VC_TAG_IDP:         single = &idp; break;
        case VC_TAG_FETCH_KIND:  single = &kind; break;
        case VC_TAG_TOKEN:       single = &token; break;
        case VC_TAG_MAX_AGE:     single = &age; break;
        default:                 continue;
        }

        if (single->data != NULL) {
            vw_server_reply(conn, VC_FRAME_FETCH, id, 400,
                            "a field given twice", NULL, 0);
            return;
        }

        single->data = f.len ? f.value : (const unsigned char *) "";
        single->len = f.len;
    }

    if (!vw_server_valid_idp(&idp)) {
        vw_server_reply(conn, VC_FRAME_FETCH, id, 400, "the idp is missing "
                        "or not [A-Za-z0-9._-]{1,128} or an https:// URL",
                        NULL, 0);
        return;
    }

#define vw_kind_is(s)                                                        \
    (kind.len == sizeof(s) - 1 && memcmp(kind.data, s, sizeof(s) - 1) == 0)

    if (kind.data != NULL && vw_kind_is("jwks")) {
        k = VW_FETCH_JWKS;

    } else if (kind.data != NULL && vw_kind_is("discovery")) {
        k = VW_FETCH_DISCOVERY;

    } else if (kind.data != NULL && vw_kind_is("introspect")) {
        k = VW_FETCH_INTROSPECT;

    } else {
        vw_server_reply(conn, VC_FRAME_FETCH, id, 400, "the fetch kind is "
                        "missing or not jwks, discovery or introspect",
                        NULL, 0);
        return;
    }

#undef vw_kind_is

    if ((k == VW_FETCH_INTROSPECT) != (token.data != NULL)) {
        vw_server_reply(conn, VC_FRAME_FETCH, id, 400,
                        k == VW_FETCH_INTROSPECT
                        ? "introspect needs a token"
                        : "a token is for introspect only", NULL, 0);
        return;
    }

    /*
     * MAX_AGE in a request: the module met a kid the set lacks, and asks
     * for a refresh unless the set is younger than that (fetch.c)
     */
    max_age = -1;

    if (age.data != NULL) {
        if (k == VW_FETCH_INTROSPECT) {
            vw_server_reply(conn, VC_FRAME_FETCH, id, 400, "a max age is "
                            "for jwks and discovery only", NULL, 0);
            return;
        }

        if (age.len != 4) {
            vw_server_reply(conn, VC_FRAME_FETCH, id, 400, "the max age is "
                            "not a 4-byte integer", NULL, 0);
            return;
        }

        v = ((uint32_t) age.data[0] << 24) | ((uint32_t) age.data[1] << 16)
            | ((uint32_t) age.data[2] << 8) | age.data[3];
        max_age = (int64_t) v;
    }

    fx = malloc(sizeof(vw_fetching_t));
    if (fx == NULL) {
        vw_server_reply(conn, VC_FRAME_FETCH, id, 503,
                        "the worker is out of memory", NULL, 1);
        return;
    }

    fx->conn = conn;
    fx->id = id;
    conn->pending++;

    /* the handler may run from within this call */
    vw_fetch_start(conn->server->fetch, (const char *) idp.data, idp.len, k,
                   token.data, token.len, max_age, vw_server_fetched, fx);
}


static void
vw_server_fetched(void *data, const vw_fetch_result_t *res)
{
    size_t          len, elen;
    vw_conn_t      *conn;
    unsigned char  *buf, *p;
    vw_fetching_t  *fx = data;

    conn = fx->conn;
    conn->pending--;

    if (conn->bev == NULL) {
        if (conn->pending == 0) {
            free(conn);
        }

        free(fx);
        return;
    }

    elen = res->error ? strlen(res->error) : 0;
    if (elen > 256) {
        elen = 256;
    }

    len = VC_FRAME_FIELD_HEADER + 4
          + (res->error ? VC_FRAME_FIELD_HEADER + elen : 0)
          + (res->body ? VC_FRAME_FIELD_HEADER + res->body_len : 0)
          + (res->cached ? 2 * (VC_FRAME_FIELD_HEADER + 4) : 0)
          + (res->stale ? VC_FRAME_FIELD_HEADER : 0)
          + (res->status == 503 ? VC_FRAME_FIELD_HEADER + 4 : 0);

    buf = malloc(VC_FRAME_HEADER_LEN + len);
    if (buf == NULL) {
        vw_server_reply(conn, VC_FRAME_FETCH, fx->id, 503,
                        "the worker is out of memory", NULL, 1);
        free(fx);
        return;
    }

    p = vc_frame_header_put(buf, VC_FRAME_FETCH | VC_FRAME_REPLY, fx->id,
                            (uint32_t) len);
    p = vc_frame_field_put_uint32(p, VC_TAG_STATUS, res->status);

    if (res->error) {
        p = vc_frame_field_put(p, VC_TAG_ERROR, res->error, (uint32_t) elen);
    }

    if (res->status == 503) {
        p = vc_frame_field_put_uint32(p, VC_TAG_RETRY_AFTER, 1);
    }

    if (res->cached) {
        p = vc_frame_field_put_uint32(p, VC_TAG_AGE, res->age);
        p = vc_frame_field_put_uint32(p, VC_TAG_MAX_AGE, res->max_age);
    }

    if (res->stale) {
        p = vc_frame_field_put(p, VC_TAG_STALE | VC_FRAME_TAG_OPTIONAL, "",
                               0);
    }

    if (res->body) {
        p = vc_frame_field_put(p, VC_TAG_BODY, res->body,
                               (uint32_t) res->body_len);
    }

    bufferevent_write(conn->bev, buf, (size_t) (p - buf));

    free(buf);
    free(fx);
}
