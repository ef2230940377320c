/* queue.c -- the durable job queue: jobs made durable in Redis */

/*
 * A job is a hash, {vq}:job:<id>, and an entry in the stream {vq}:jobs that
 * names it; both are written in one MULTI/EXEC, and the job counts as
 * accepted only once EXEC's reply has come back.  Every key carries the
 * hash tag {vq}, so that the transaction stays in one slot of a Redis
 * Cluster.
 *
 * The connection is hiredis's async context on the worker's libevent loop
 * (hiredis's own libevent adapter).  When it drops, pushes fail at once
 * and a timer reconnects every second, so Redis coming back is picked up
 * without a restart.  With a password (redis_password_file), AUTH is the
 * first command on every connection, ahead of anything else.
 *
 * A Redis that may evict keys to make room would lose accepted jobs
 * silently: after each connection the worker reads maxmemory_policy from
 * INFO (CONFIG may be renamed away on managed services) and takes no job
 * while it is one of the allkeys-* policies.  Job keys carry no TTL, so the
 * volatile-* policies never pick them.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "vw_core.h"


#define VW_QUEUE_RECONNECT_MS  1000
#define VW_QUEUE_MAX_ARGS      32


/* the hash fields JOB_STATUS reads, in the order of its reply */
const char  *vw_job_status_fields[VW_JOB_STATUS_FIELDS] = {
    "tenant", "type", "state", "attempts", "created_ms", "next_attempt_ms",
    "last_error", "result"
};


struct vw_queue_s {
    struct event_base      *base;
    char                   *host;
    int                     port;
    char                   *unix_path;
    char                   *password;  /* a copy: the conf may be reloaded */
    redisAsyncContext      *ac;
    struct event           *retry;
    unsigned                connected:1;
    unsigned                closing:1;
    unsigned                safe:1;    /* its eviction policy was checked */
};


typedef struct {
    vw_queue_t             *queue;
    vw_queue_push_pt        handler;
    void                   *data;
} vw_queue_call_t;


static int vw_queue_parse_addr(const char *addr, char **host, int *port,
    char **unix_path);
static int vw_queue_connect(vw_queue_t *q);
static void vw_queue_connected(const redisAsyncContext *ac, int status);
static void vw_queue_disconnected(const redisAsyncContext *ac, int status);
static void vw_queue_retry(evutil_socket_t fd, short what, void *arg);
static void vw_queue_schedule(vw_queue_t *q);
static void vw_queue_exec_done(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_queue_policy(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_queue_auth(redisAsyncContext *ac, void *reply,
    void *privdata);


/*
 * Splits "unix:<path>" or "<host>[:<port>]" into malloc()ed strings (one of
 * them NULL).  Returns VW_OK, or VW_ERROR (logged) for a bad address.
 */
static int
vw_queue_parse_addr(const char *addr, char **host, int *port,
    char **unix_path)
{
    char  *colon;

    *host = NULL;
    *unix_path = NULL;
    *port = 6379;

    if (strncmp(addr, "unix:", 5) == 0) {
        *unix_path = strdup(addr + 5);
        return *unix_path ? VW_OK : VW_ERROR;
    }

    *host = strdup(addr);
    if (*host == NULL) {
        return VW_ERROR;
    }

    colon = strrchr(*host, ':');

    if (colon != NULL) {
        *colon = '\0';
        *port = atoi(colon + 1);
    }

    if (*port <= 0 || *port > 65535 || (*host)[0] == '\0') {
        vw_log("error", "invalid Redis address", "redis", addr, NULL);
        free(*host);
        *host = NULL;
        return VW_ERROR;
    }

    return VW_OK;
}


/* password: NULL when Redis needs none; copied */
vw_queue_t *
vw_queue_create(struct event_base *base, const char *addr,
    const char *password)
{
    vw_queue_t  *q;

    q = calloc(1, sizeof(vw_queue_t));
    if (q == NULL) {
        return NULL;
    }

    q->base = base;

    if (password != NULL) {
        q->password = strdup(password);
        if (q->password == NULL) {
            goto failed;
        }
    }

    if (vw_queue_parse_addr(addr, &q->host, &q->port, &q->unix_path)
        != VW_OK)
    {
        goto failed;
    }

    q->retry = evtimer_new(base, vw_queue_retry, q);
    if (q->retry == NULL) {
        goto failed;
    }

    if (vw_queue_connect(q) != VW_OK) {
        vw_queue_schedule(q);
    }

    return q;

failed:

    vw_queue_free(q);
    return NULL;
}


void
vw_queue_free(vw_queue_t *q)
{
    if (q == NULL) {
        return;
    }

    if (q->ac != NULL) {
        /*
         * pending pushes are answered "unavailable" by their callbacks;
         * the disconnect callback is told that this is no loss
         */
        q->closing = 1;
        redisAsyncFree(q->ac);
        q->ac = NULL;
    }

    if (q->retry != NULL) {
        event_free(q->retry);
    }

    if (q->password != NULL) {
        explicit_bzero(q->password, strlen(q->password));
        free(q->password);
    }

    free(q->host);
    free(q->unix_path);
    free(q);
}


static int
vw_queue_connect(vw_queue_t *q)
{
    redisAsyncContext  *ac;

    ac = q->unix_path ? redisAsyncConnectUnix(q->unix_path)
                      : redisAsyncConnect(q->host, q->port);

    if (ac == NULL) {
        return VW_ERROR;
    }

    if (ac->err) {
        vw_log("error", "cannot connect to Redis", "reason", ac->errstr,
               NULL);
        redisAsyncFree(ac);
        return VW_ERROR;
    }

    ac->data = q;

    if (redisLibeventAttach(ac, q->base) != REDIS_OK) {
        redisAsyncFree(ac);
        return VW_ERROR;
    }

    redisAsyncSetConnectCallback(ac, vw_queue_connected);
    redisAsyncSetDisconnectCallback(ac, vw_queue_disconnected);

    q->ac = ac;

    return VW_OK;
}


static void
vw_queue_connected(const redisAsyncContext *ac, int status)
{
    vw_queue_t  *q = ac->data;

    if (status != REDIS_OK) {
        vw_log("error", "cannot connect to Redis", "reason",
               ac->errstr ? ac->errstr : "error", NULL);

        /* hiredis frees the context after this */
        q->ac = NULL;
        q->connected = 0;
        vw_queue_schedule(q);
        return;
    }

    q->connected = 1;
    q->safe = 0;
    vw_log("info", "connected to Redis", NULL);

    /* sent on a connected context: queued first, before any job */
    if (q->password != NULL) {
        (void) redisAsyncCommand(q->ac, vw_queue_auth, q, "AUTH %s",
                                 q->password);
    }

    (void) redisAsyncCommand(q->ac, vw_queue_policy, q, "INFO memory");
}


/*
 * A refused AUTH needs no action of its own: INFO, sent behind it, fails
 * as well, so the policy is never found safe and no job is taken.
 */
static void
vw_queue_auth(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply  *r = reply;
    vw_queue_t  *q = privdata;

    if (r == NULL || q->closing) {
        return;
    }

    if (r->type == REDIS_REPLY_ERROR) {
        /* Redis's message names no password */
        vw_log("error", "Redis refused the password: taking no job",
               "reason", r->str, NULL);
    }
}


/*
 * Returns VW_OK when the INFO text names a policy that never evicts keys
 * without a TTL, VW_DECLINED for an allkeys-* policy, VW_ERROR when it
 * names none; *policy points into info, ended by CR, LF or NUL.
 */
int
vw_queue_policy_safe(const char *info, const char **policy, size_t *len)
{
    const char  *p, *e;

    p = strstr(info, "maxmemory_policy:");
    if (p == NULL) {
        return VW_ERROR;
    }

    p += sizeof("maxmemory_policy:") - 1;
    e = p + strcspn(p, "\r\n");

    *policy = p;
    *len = (size_t) (e - p);

    if (*len >= 8 && strncmp(p, "allkeys-", 8) == 0) {
        return VW_DECLINED;
    }

    return VW_OK;
}


static void
vw_queue_policy(redisAsyncContext *ac, void *reply, void *privdata)
{
    int          rc;
    char         name[64];
    size_t       len;
    redisReply  *r = reply;
    vw_queue_t  *q = privdata;
    const char  *policy;

    if (r == NULL || q->closing) {
        return;
    }

    if (r->type != REDIS_REPLY_STRING) {
        vw_log("error", "cannot read Redis's maxmemory-policy: taking no "
               "job", "reason", r->type == REDIS_REPLY_ERROR ? r->str : "",
               NULL);
        return;
    }

    rc = vw_queue_policy_safe(r->str, &policy, &len);

    if (rc == VW_ERROR) {
        vw_log("error", "Redis's INFO names no maxmemory_policy: taking no "
               "job", NULL);
        return;
    }

    snprintf(name, sizeof(name), "%.*s", (int) len, policy);

    if (rc == VW_DECLINED) {
        vw_log("error", "Redis may evict accepted jobs: taking no job until "
               "its maxmemory-policy is noeviction or volatile-*",
               "maxmemory_policy", name, NULL);
        return;
    }

    q->safe = 1;
    vw_log("info", "Redis keeps every job", "maxmemory_policy", name, NULL);
}


static void
vw_queue_disconnected(const redisAsyncContext *ac, int status)
{
    vw_queue_t  *q = ac->data;

    q->ac = NULL;

    if (q->closing) {
        q->connected = 0;
        return;
    }

    if (q->connected) {
        vw_log("error", "connection to Redis lost", "reason",
               ac->errstr ? ac->errstr : "closed", NULL);
    }

    q->connected = 0;
    vw_queue_schedule(q);
}


static void
vw_queue_schedule(vw_queue_t *q)
{
    struct timeval  tv;

    tv.tv_sec = VW_QUEUE_RECONNECT_MS / 1000;
    tv.tv_usec = (VW_QUEUE_RECONNECT_MS % 1000) * 1000;

    if (!evtimer_pending(q->retry, NULL)) {
        evtimer_add(q->retry, &tv);
    }
}


static void
vw_queue_retry(evutil_socket_t fd, short what, void *arg)
{
    vw_queue_t  *q = arg;

    if (q->ac == NULL && vw_queue_connect(q) != VW_OK) {
        vw_queue_schedule(q);
    }
}


/*
 * Writes the job in one transaction and calls handler(data, VW_OK) once
 * Redis has acknowledged it, or handler(data, VW_ERROR) when it could not
 * be made durable: not connected, an error reply, the connection lost.
 * Returns VW_ERROR (and calls nothing) when it cannot even be sent.
 */
int
vw_queue_push(vw_queue_t *q, const vw_job_t *job, vw_queue_push_pt handler,
    void *data)
{
    int               argc;
    char              key[64], created[32], attempts[] = "0";
    const char       *argv[VW_QUEUE_MAX_ARGS];
    size_t            argvlen[VW_QUEUE_MAX_ARGS];
    struct timeval    tv;
    vw_queue_call_t  *call;

    if (q->ac == NULL || !q->connected || !q->safe) {
        return VW_ERROR;
    }

    call = malloc(sizeof(vw_queue_call_t));
    if (call == NULL) {
        return VW_ERROR;
    }

    call->queue = q;
    call->handler = handler;
    call->data = data;

    gettimeofday(&tv, NULL);
    snprintf(created, sizeof(created), "%lld",
             (long long) tv.tv_sec * 1000 + tv.tv_usec / 1000);
    snprintf(key, sizeof(key), "{vq}:job:%s", job->id);

#define vw_arg(s, l)  argv[argc] = (const char *) (s); argvlen[argc++] = (l)
#define vw_str(s)     vw_arg(s, strlen(s))
#define vw_opt(name, f)                                                      \
    if (job->f.data != NULL) {                                               \
        vw_str(name);                                                        \
        vw_arg(job->f.data, job->f.len);                                     \
    }

    if (redisAsyncCommand(q->ac, NULL, NULL, "MULTI") != REDIS_OK) {
        free(call);
        return VW_ERROR;
    }

    argc = 0;
    vw_str("HSET");
    vw_str(key);
    vw_str("type");
    vw_arg(job->type.data, job->type.len);
    vw_str("tenant");
    vw_arg(job->tenant.data, job->tenant.len);
    vw_str("state");
    vw_str("queued");
    vw_str("attempts");
    vw_str(attempts);
    vw_str("created_ms");
    vw_str(created);
    vw_opt("subject", subject);
    vw_opt("idempotency_key", idempotency_key);
    vw_opt("correlation_id", correlation_id);
    vw_opt("method", method);
    vw_opt("uri", uri);
    vw_opt("headers", headers);
    vw_opt("body", body);

    /* queued behind MULTI: a failure here surfaces as EXEC's error */
    (void) redisAsyncCommandArgv(q->ac, NULL, NULL, argc, argv, argvlen);

    argc = 0;
    vw_str("XADD");
    vw_str("{vq}:jobs");
    vw_str("*");
    vw_str("job");
    vw_str(job->id);
    vw_str("type");
    vw_arg(job->type.data, job->type.len);

    (void) redisAsyncCommandArgv(q->ac, NULL, NULL, argc, argv, argvlen);

#undef vw_opt
#undef vw_str
#undef vw_arg

    if (redisAsyncCommand(q->ac, vw_queue_exec_done, call, "EXEC")
        != REDIS_OK)
    {
        free(call);
        return VW_ERROR;
    }

    return VW_OK;
}


static void
vw_queue_exec_done(redisAsyncContext *ac, void *reply, void *privdata)
{
    size_t            i;
    redisReply       *r = reply;
    vw_queue_call_t  *call = privdata;
    int               rc;

    rc = VW_OK;

    if (r == NULL) {
        rc = VW_ERROR;

    } else if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        vw_log("error", "Redis refused a job",
               "reason", r->type == REDIS_REPLY_ERROR ? r->str : "EXEC",
               NULL);
        rc = VW_ERROR;

    } else {
        for (i = 0; i < r->elements; i++) {
            if (r->element[i]->type == REDIS_REPLY_ERROR) {
                vw_log("error", "Redis refused a job", "reason",
                       r->element[i]->str, NULL);
                rc = VW_ERROR;
            }
        }
    }

    call->handler(call->data, rc);

    free(call);
}


/*
 * At start, before the loop: a blocking look at Redis's eviction policy,
 * so that a worker pointed at a Redis that may evict its jobs refuses to
 * start.  Returns VW_OK, VW_DECLINED for such a Redis, a bad address or
 * a refused password (logged), or
 * VW_AGAIN when Redis cannot be asked now (the check then happens on
 * connecting, and no job is taken before it passes).
 */
int
vw_queue_check(const char *addr, const char *password)
{
    int              rc, port;
    char            *host, *unix_path, name[64];
    size_t           len;
    redisReply      *r;
    const char      *policy;
    redisContext    *c;
    struct timeval   tv = { 2, 0 };

    if (vw_queue_parse_addr(addr, &host, &port, &unix_path) != VW_OK) {
        return VW_DECLINED;
    }

    c = unix_path ? redisConnectUnixWithTimeout(unix_path, tv)
                  : redisConnectWithTimeout(host, port, tv);

    free(host);
    free(unix_path);

    if (c == NULL || c->err) {
        vw_log("warn", "Redis not reachable at start: jobs wait for it",
               "reason", c ? c->errstr : "no memory", NULL);
        redisFree(c);
        return VW_AGAIN;
    }

    (void) redisSetTimeout(c, tv);

    if (password != NULL) {
        r = redisCommand(c, "AUTH %s", password);

        if (r == NULL) {
            redisFree(c);
            return VW_AGAIN;
        }

        rc = r->type == REDIS_REPLY_ERROR ? VW_DECLINED : VW_OK;

        if (rc == VW_DECLINED) {
            /* Redis's message names no password */
            vw_log("error", "refusing to start: Redis refused the password",
                   "reason", r->str, NULL);
        }

        freeReplyObject(r);

        if (rc == VW_DECLINED) {
            redisFree(c);
            return VW_DECLINED;
        }
    }

    r = redisCommand(c, "INFO memory");

    if (r == NULL || r->type != REDIS_REPLY_STRING) {
        if (r != NULL) {
            freeReplyObject(r);
        }

        redisFree(c);
        return VW_AGAIN;
    }

    rc = vw_queue_policy_safe(r->str, &policy, &len);

    if (rc == VW_DECLINED) {
        snprintf(name, sizeof(name), "%.*s", (int) len, policy);
        vw_log("error", "refusing to start: Redis may evict accepted jobs; "
               "set its maxmemory-policy to noeviction (or volatile-*)",
               "maxmemory_policy", name, NULL);
    }

    freeReplyObject(r);
    redisFree(c);

    return rc == VW_DECLINED ? VW_DECLINED : VW_OK;
}


typedef struct {
    vw_queue_status_pt      handler;
    void                   *data;
} vw_queue_status_call_t;


static void
vw_queue_status_done(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply              *r = reply;
    vw_queue_status_call_t  *call = privdata;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY
        || r->elements != VW_JOB_STATUS_FIELDS)
    {
        call->handler(call->data, VW_ERROR, NULL);

    } else {
        call->handler(call->data, VW_OK, r);
    }

    free(call);
}


/*
 * Reads a job's public state: handler(data, VW_OK, reply) with the values
 * of vw_job_status_fields (nil where absent, all nil when no such job), or
 * handler(data, VW_ERROR, NULL).  Returns VW_ERROR when it cannot ask.
 */
int
vw_queue_status(vw_queue_t *q, const char *job_id, vw_queue_status_pt handler,
    void *data)
{
    int                      i;
    char                     key[64];
    const char              *argv[2 + VW_JOB_STATUS_FIELDS];
    vw_queue_status_call_t  *call;

    if (q->ac == NULL || !q->connected) {
        return VW_ERROR;
    }

    call = malloc(sizeof(vw_queue_status_call_t));
    if (call == NULL) {
        return VW_ERROR;
    }

    call->handler = handler;
    call->data = data;

    snprintf(key, sizeof(key), "{vq}:job:%s", job_id);

    argv[0] = "HMGET";
    argv[1] = key;

    for (i = 0; i < VW_JOB_STATUS_FIELDS; i++) {
        argv[2 + i] = vw_job_status_fields[i];
    }

    if (redisAsyncCommandArgv(q->ac, vw_queue_status_done, call,
                              2 + VW_JOB_STATUS_FIELDS, argv, NULL)
        != REDIS_OK)
    {
        free(call);
        return VW_ERROR;
    }

    return VW_OK;
}
