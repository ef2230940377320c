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
 * volatile-* policies never pick them.  A connection found unfit (that, or
 * a refused password) is dropped and a new one asks again 5 s later.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "vw_core.h"


#define VW_QUEUE_RECONNECT_MS  1000
#define VW_QUEUE_RECHECK_MS    5000    /* after a refused password or an
                                          evicting policy: ask again */

/*
 * How long a claimed idempotency key whose job is not written yet counts as
 * "in progress" (409) rather than orphaned.  The claim and the write go out
 * back to back on one connection, so only a dead or stopped worker, or a
 * Redis that went away between them, leaves a claim this old; a taker then
 * writes the job under the claimed id, and the consumer's run:<n> marker
 * drops the entry a late original write would add.  It is longer than
 * nginx's default wait for the worker (5 s), so that a request nginx still
 * waits on is never taken over, and short, because a client that was told
 * 503 retries within seconds and should not be told 409 for long.
 */
#define VW_QUEUE_CLAIM_GRACE_MS  6000
#define VW_QUEUE_MAX_ARGS      40


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
    unsigned                refused:1; /* Redis refused the password */
    unsigned                recheck:1; /* connected but unfit: drop the
                                          connection and try again later */
    char                    reason[VW_ERRSTR_LEN];  /* why not ready */
};


static int vw_queue_parse_addr(const char *addr, char **host, int *port,
    char **unix_path);
static int vw_queue_connect(vw_queue_t *q);
static void vw_queue_recheck(vw_queue_t *q);
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
static void vw_queue_not_ready(vw_queue_t *q, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));


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
    vw_queue_not_ready(q, "connecting to Redis");

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
        vw_queue_not_ready(q, "cannot connect to Redis (%s)", ac->errstr);
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
        vw_queue_not_ready(q, "cannot connect to Redis (%s)",
                           ac->errstr ? ac->errstr : "error");

        /* hiredis frees the context after this */
        q->ac = NULL;
        q->connected = 0;
        vw_queue_schedule(q);
        return;
    }

    q->connected = 1;
    q->safe = 0;
    q->refused = 0;
    vw_log("info", "connected to Redis", NULL);
    vw_queue_not_ready(q, "checking Redis's maxmemory-policy");

    /* sent on a connected context: queued first, before any job */
    if (q->password != NULL) {
        (void) redisAsyncCommand(q->ac, vw_queue_auth, q, "AUTH %s",
                                 q->password);
    }

    (void) redisAsyncCommand(q->ac, vw_queue_policy, q, "INFO memory");
}


/*
 * A refused AUTH needs no action of its own: INFO, sent behind it, fails
 * as well, so the policy is never found safe and no job is taken, and
 * vw_queue_policy() drops the connection to try again later.
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
        q->refused = 1;
        vw_queue_not_ready(q, "Redis refused the password");
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

        /* behind a refused AUTH, that is the reason to give */
        if (!q->refused) {
            vw_queue_not_ready(q, "cannot read Redis's maxmemory-policy");
        }

        vw_queue_recheck(q);
        return;
    }

    rc = vw_queue_policy_safe(r->str, &policy, &len);

    if (rc == VW_ERROR) {
        vw_log("error", "Redis's INFO names no maxmemory_policy: taking no "
               "job", NULL);
        vw_queue_not_ready(q, "Redis's INFO names no maxmemory_policy");
        vw_queue_recheck(q);
        return;
    }

    snprintf(name, sizeof(name), "%.*s", (int) len, policy);

    if (rc == VW_DECLINED) {
        vw_log("error", "Redis may evict accepted jobs: taking no job until "
               "its maxmemory-policy is noeviction or volatile-*",
               "maxmemory_policy", name, NULL);
        vw_queue_not_ready(q, "Redis's maxmemory-policy %s may evict "
                           "accepted jobs", name);
        vw_queue_recheck(q);
        return;
    }

    q->safe = 1;
    q->reason[0] = '\0';

    /* from here on PING answers 200 (server.c) */
    vw_log("info", "Redis keeps every job", "maxmemory_policy", name, NULL);
}


/*
 * VW_OK when a push may be sent: connected, the password (if any)
 * accepted, the eviction policy checked.  Else VW_AGAIN, with *reason
 * saying what is missing, safe to show (no secret, no address).
 */
int
vw_queue_ready(vw_queue_t *q, const char **reason)
{
    if (q->ac != NULL && q->connected && q->safe) {
        *reason = NULL;
        return VW_OK;
    }

    *reason = q->reason[0] ? q->reason : "connecting to Redis";

    return VW_AGAIN;
}


struct redisAsyncContext *
vw_queue_context(vw_queue_t *q)
{
    return (q->ac != NULL && q->connected && q->safe) ? q->ac : NULL;
}


/* records why the queue takes no job, for PING's 503 */
static void
vw_queue_not_ready(vw_queue_t *q, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    vsnprintf(q->reason, sizeof(q->reason), fmt, ap);
    va_end(ap);
}


/*
 * A connection on which no job may be taken (a refused password, an
 * evicting or unreadable policy) is dropped, and a new one asks again in
 * VW_QUEUE_RECHECK_MS: a password restored or a policy mended is picked up
 * without a restart, and the log says so once per attempt, not per job.
 */
static void
vw_queue_recheck(vw_queue_t *q)
{
    if (q->ac == NULL) {
        return;
    }

    q->connected = 0;          /* no "connection lost": it is let go */
    q->recheck = 1;
    redisAsyncDisconnect(q->ac);
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
        vw_queue_not_ready(q, "the connection to Redis was lost");
    }

    q->connected = 0;
    vw_queue_schedule(q);
}


static void
vw_queue_schedule(vw_queue_t *q)
{
    long            ms;
    struct timeval  tv;

    ms = q->recheck ? VW_QUEUE_RECHECK_MS : VW_QUEUE_RECONNECT_MS;
    q->recheck = 0;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;

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
 * A dispatch in progress.  It may take three round trips (the idempotency
 * claim, the look at a claimed job, the write), so it owns a copy of the
 * commands' arguments: the frame they came from is gone by then.
 */
typedef struct {
    vw_queue_t             *queue;
    vw_queue_push_pt        handler;
    void                   *data;
    char                    id[33];
    char                    idem[80];     /* {vq}:idem:<h>, or "" */
    char                    sha[65];      /* the body's sha256, hex */
    char                    ordering[33]; /* <h> of the ordering key, or "" */
    uint64_t                cap;
    long long               inflight;
    int                     argc;         /* the HSET's arguments */
    char                  **argv;
    size_t                 *argvlen;
} vw_queue_call_t;


static void vw_queue_claimed(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_queue_counted(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_queue_repeat(redisAsyncContext *ac, void *reply,
    void *privdata);
static void vw_queue_write(vw_queue_call_t *call);
static void vw_queue_done(vw_queue_call_t *call, int rc, const char *id,
    const char *state);


static uint64_t
vw_queue_now(void)
{
    struct timeval  tv;

    gettimeofday(&tv, NULL);

    return (uint64_t) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}


/* the first 32 hex digits of sha256(tenant NUL value), as WORKER.md keys */

static void
vw_queue_key_hash(const vw_str_t *tenant, const vw_str_t *value, char *out)
{
    size_t          i;
    EVP_MD_CTX     *ctx;
    unsigned char   md[EVP_MAX_MD_SIZE];

    memset(md, 0, sizeof(md));

    ctx = EVP_MD_CTX_new();

    if (ctx != NULL) {
        EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
        EVP_DigestUpdate(ctx, tenant->data, tenant->len);
        EVP_DigestUpdate(ctx, "", 1);
        EVP_DigestUpdate(ctx, value->data ? value->data
                                          : (const unsigned char *) "",
                         value->len);
        EVP_DigestFinal_ex(ctx, md, NULL);
        EVP_MD_CTX_free(ctx);
    }

    for (i = 0; i < 16; i++) {
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    }
}


static void
vw_queue_call_free(vw_queue_call_t *call)
{
    int  i;

    for (i = 0; i < call->argc; i++) {
        free(call->argv[i]);
    }

    free(call->argv);
    free(call->argvlen);
    free(call);
}


/*
 * Accepts a job as docs/WORKER.md says: the idempotency claim when it has
 * a key, the in-flight cap, then one transaction that writes the hash,
 * the stream entry for attempt 1, its place in its ordering list and the
 * in-flight count.  handler(data, rc, id, state) is called once:
 *   VW_OK with the job's id (a repeat's: the original's) and, for a
 *   repeat, its state as JOB_STATUS's JSON (NULL for a new job);
 *   VW_DECLINED: the key was used with another body (422);
 *   VW_BUSY: the key's first request is still being written (409);
 *   VW_AGAIN: the in-flight cap is reached, nothing written (503);
 *   VW_ERROR: Redis could not make it durable (503).
 * Returns VW_ERROR (and calls nothing) when it cannot even be sent.
 */
int
vw_queue_push(vw_queue_t *q, const vw_job_t *job,
    const vw_queue_limits_t *lim, vw_queue_push_pt handler, void *data)
{
    int                i;
    char               created[32], claim[128], hash[33];
    size_t             j;
    uint64_t           now;
    unsigned char      md[EVP_MAX_MD_SIZE];
    vw_queue_call_t   *call;
    const char        *argv[VW_QUEUE_MAX_ARGS];
    size_t             argvlen[VW_QUEUE_MAX_ARGS];
    int                argc;

    if (q->ac == NULL || !q->connected || !q->safe) {
        return VW_ERROR;
    }

    call = calloc(1, sizeof(vw_queue_call_t));
    if (call == NULL) {
        return VW_ERROR;
    }

    call->queue = q;
    call->handler = handler;
    call->data = data;
    call->cap = lim->inflight_cap;
    memcpy(call->id, job->id, sizeof(call->id));

    now = vw_queue_now();
    snprintf(created, sizeof(created), "%llu", (unsigned long long) now);

    if (job->ordering_key.data != NULL && lim->ordered) {
        vw_queue_key_hash(&job->tenant, &job->ordering_key, call->ordering);
    }

    argc = 0;

#define vw_arg(s, l)  argv[argc] = (const char *) (s); argvlen[argc++] = (l)
#define vw_str(s)     vw_arg(s, strlen(s))
#define vw_opt(name, f)                                                      \
    if (job->f.data != NULL) {                                               \
        vw_str(name);                                                        \
        vw_arg(job->f.data, job->f.len);                                     \
    }

    vw_str("type");
    vw_arg(job->type.data, job->type.len);
    vw_str("tenant");
    vw_arg(job->tenant.data, job->tenant.len);
    vw_str("state");
    vw_str("queued");
    vw_str("attempts");
    vw_str("0");
    vw_str("created_ms");
    vw_str(created);
    vw_opt("subject", subject);
    vw_opt("idempotency_key", idempotency_key);
    vw_opt("correlation_id", correlation_id);
    vw_opt("method", method);
    vw_opt("uri", uri);
    vw_opt("headers", headers);
    vw_opt("body", body);

    if (call->ordering[0]) {
        vw_str("ordering_key");
        vw_str(call->ordering);
    }

#undef vw_opt
#undef vw_str
#undef vw_arg

    call->argv = calloc(argc, sizeof(char *));
    call->argvlen = calloc(argc, sizeof(size_t));

    if (call->argv == NULL || call->argvlen == NULL) {
        vw_queue_call_free(call);
        return VW_ERROR;
    }

    for (i = 0; i < argc; i++) {
        call->argv[i] = malloc(argvlen[i] + 1);
        if (call->argv[i] == NULL) {
            vw_queue_call_free(call);
            return VW_ERROR;
        }

        call->argc = i + 1;
        memcpy(call->argv[i], argv[i], argvlen[i]);
        call->argv[i][argvlen[i]] = '\0';
        call->argvlen[i] = argvlen[i];
    }

    if (job->idempotency_key.data == NULL) {
        if (redisAsyncCommand(q->ac, vw_queue_counted, call,
                              "GET {vq}:inflight")
            != REDIS_OK)
        {
            vw_queue_call_free(call);
            return VW_ERROR;
        }

        return VW_OK;
    }

    vw_queue_key_hash(&job->tenant, &job->idempotency_key, hash);
    snprintf(call->idem, sizeof(call->idem), "{vq}:idem:%s", hash);

    if (EVP_Digest(job->body.data ? job->body.data
                                  : (const unsigned char *) "",
                   job->body.len, md, NULL, EVP_sha256(), NULL) != 1)
    {
        vw_queue_call_free(call);
        return VW_ERROR;
    }

    for (j = 0; j < 32; j++) {
        snprintf(call->sha + 2 * j, 3, "%02x", md[j]);
    }

    snprintf(claim, sizeof(claim), "%s %s %s", call->id, call->sha, created);

    (void) redisAsyncCommand(q->ac, NULL, NULL, "MULTI");
    (void) redisAsyncCommand(q->ac, NULL, NULL, "SET %s %s NX PX %llu",
                             call->idem, claim,
                             (unsigned long long) (lim->idempotency_window_ms
                                                   ? lim->idempotency_window_ms
                                                   : 86400000));
    (void) redisAsyncCommand(q->ac, NULL, NULL, "GET %s", call->idem);
    (void) redisAsyncCommand(q->ac, NULL, NULL, "GET {vq}:inflight");

    if (redisAsyncCommand(q->ac, vw_queue_claimed, call, "EXEC")
        != REDIS_OK)
    {
        vw_queue_call_free(call);
        return VW_ERROR;
    }

    return VW_OK;
}


static long long
vw_queue_integer(const redisReply *r)
{
    return (r != NULL && r->type == REDIS_REPLY_STRING)
           ? strtoll(r->str, NULL, 10) : 0;
}


/* GET inflight's answer, for a job without an idempotency key */

static void
vw_queue_counted(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply       *r = reply;
    vw_queue_call_t  *call = privdata;

    if (r == NULL || r->type == REDIS_REPLY_ERROR || call->queue->closing) {
        vw_queue_done(call, VW_ERROR, NULL, NULL);
        return;
    }

    if (call->cap && (unsigned long long) vw_queue_integer(r) >= call->cap) {
        vw_queue_done(call, VW_AGAIN, NULL, NULL);
        return;
    }

    vw_queue_write(call);
}


/* [SET's OK or nil, the claim, inflight] */

static void
vw_queue_claimed(redisAsyncContext *ac, void *reply, void *privdata)
{
    char              *sp;
    redisReply        *r = reply, *stored;
    vw_queue_call_t   *call = privdata;

    if (r == NULL || call->queue->closing || r->type != REDIS_REPLY_ARRAY
        || r->elements != 3)
    {
        vw_queue_done(call, VW_ERROR, NULL, NULL);
        return;
    }

    call->inflight = vw_queue_integer(r->element[2]);
    stored = r->element[1];

    if (r->element[0]->type == REDIS_REPLY_STATUS) {
        /* the claim is ours */
        if (call->cap && (unsigned long long) call->inflight >= call->cap) {
            (void) redisAsyncCommand(ac, NULL, NULL, "DEL %s", call->idem);
            vw_queue_done(call, VW_AGAIN, NULL, NULL);
            return;
        }

        vw_queue_write(call);
        return;
    }

    /* "<id> <sha> <ms>" */
    if (stored->type != REDIS_REPLY_STRING || stored->len < 32 + 1 + 64 + 2) {
        vw_queue_done(call, VW_ERROR, NULL, NULL);
        return;
    }

    if (memcmp(stored->str + 33, call->sha, 64) != 0) {
        vw_queue_done(call, VW_DECLINED, NULL, NULL);
        return;
    }

    memcpy(call->id, stored->str, 32);
    call->id[32] = '\0';

    sp = strrchr(stored->str, ' ');

    /* the claim's age rides along in sha's place: it is no longer needed */
    snprintf(call->sha, sizeof(call->sha), "%s", sp ? sp + 1 : "0");

    (void) redisAsyncCommand(ac, vw_queue_repeat, call,
                             "HMGET {vq}:job:%s tenant type state attempts "
                             "created_ms next_attempt_ms last_error result",
                             call->id);
}


/*
 * One field of a job's JSON state from a hash value: a string, a number
 * (VW_STATE_NUMBER) or JSON text stored as it is (VW_STATE_JSON: the engine
 * writes `result` that way), null when absent.
 */
void
vw_job_state_set(json_t *o, const char *name, void *reply, int kind)
{
    json_t      *j;
    redisReply  *v = reply;

    if (v->type != REDIS_REPLY_STRING) {
        json_object_set_new(o, name, json_null());

    } else if (kind == VW_STATE_NUMBER) {
        json_object_set_new(o, name, json_integer(strtoll(v->str, NULL, 10)));

    } else if (kind == VW_STATE_JSON
               && (j = json_loadb(v->str, v->len, JSON_DECODE_ANY, NULL))
                  != NULL)
    {
        json_object_set_new(o, name, j);

    } else {
        json_object_set_new(o, name, json_stringn(v->str, v->len));
    }
}


/* the state's fields from an HMGET of vw_job_status_fields, e[1] on */
void
vw_job_state_fill(json_t *o, void *elements)
{
    redisReply  **e = elements;

    vw_job_state_set(o, "type", e[1], VW_STATE_STRING);
    vw_job_state_set(o, "status", e[2], VW_STATE_STRING);
    vw_job_state_set(o, "attempts", e[3], VW_STATE_NUMBER);
    vw_job_state_set(o, "created_ms", e[4], VW_STATE_NUMBER);
    vw_job_state_set(o, "next_attempt_ms", e[5], VW_STATE_NUMBER);
    vw_job_state_set(o, "last_error", e[6], VW_STATE_STRING);
    vw_job_state_set(o, "result", e[7], VW_STATE_JSON);
}


/* the claimed job, read for a repeat of its request */

static void
vw_queue_repeat(redisAsyncContext *ac, void *reply, void *privdata)
{
    char              *text;
    json_t            *o;
    uint64_t           claimed;
    redisReply        *r = reply, **e;
    vw_queue_call_t   *call = privdata;

    if (r == NULL || call->queue->closing || r->type != REDIS_REPLY_ARRAY
        || r->elements != 8)
    {
        vw_queue_done(call, VW_ERROR, NULL, NULL);
        return;
    }

    e = r->element;

    if (e[0]->type != REDIS_REPLY_STRING) {
        claimed = strtoull(call->sha, NULL, 10);

        if (vw_queue_now() < claimed + VW_QUEUE_CLAIM_GRACE_MS) {
            /* its first request is still writing it */
            vw_queue_done(call, VW_BUSY, NULL, NULL);
            return;
        }

        /* its claimer died before writing it: written under that id */
        if (call->cap && (unsigned long long) call->inflight >= call->cap) {
            vw_queue_done(call, VW_AGAIN, NULL, NULL);
            return;
        }

        vw_queue_write(call);
        return;
    }

    o = json_object();
    text = NULL;

    if (o != NULL) {
        json_object_set_new(o, "job_id", json_string(call->id));
        vw_job_state_fill(o, e);
        text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
    }

    vw_queue_done(call, text ? VW_OK : VW_ERROR, call->id, text);
    free(text);
}


/* the dispatch transaction of docs/WORKER.md */

static void
vw_queue_write(vw_queue_call_t *call)
{
    char                key[64];
    vw_queue_t         *q = call->queue;
    const char         *argv[2 + VW_QUEUE_MAX_ARGS];
    size_t              argvlen[2 + VW_QUEUE_MAX_ARGS];
    int                 i;

    if (q->ac == NULL || !q->connected) {
        vw_queue_done(call, VW_ERROR, NULL, NULL);
        return;
    }

    snprintf(key, sizeof(key), "{vq}:job:%s", call->id);

    argv[0] = "HSET";
    argvlen[0] = 4;
    argv[1] = key;
    argvlen[1] = strlen(key);

    for (i = 0; i < call->argc; i++) {
        argv[2 + i] = call->argv[i];
        argvlen[2 + i] = call->argvlen[i];
    }

    (void) redisAsyncCommand(q->ac, NULL, NULL, "MULTI");

    /* queued behind MULTI: a failure here surfaces as EXEC's error */
    (void) redisAsyncCommandArgv(q->ac, NULL, NULL, 2 + call->argc, argv,
                                 argvlen);
    (void) redisAsyncCommand(q->ac, NULL, NULL,
                             "XADD {vq}:jobs * job %s n 1", call->id);

    if (call->ordering[0]) {
        (void) redisAsyncCommand(q->ac, NULL, NULL, "RPUSH {vq}:ord:%s %s",
                                 call->ordering, call->id);
    }

    (void) redisAsyncCommand(q->ac, NULL, NULL, "INCR {vq}:inflight");

    if (redisAsyncCommand(q->ac, vw_queue_exec_done, call, "EXEC")
        != REDIS_OK)
    {
        vw_queue_done(call, VW_ERROR, NULL, NULL);
    }
}


static void
vw_queue_done(vw_queue_call_t *call, int rc, const char *id,
    const char *state)
{
    call->handler(call->data, rc, id, state);
    vw_queue_call_free(call);
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

    } else if (r->type != REDIS_REPLY_ARRAY || r->elements < 3) {
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

    vw_queue_done(call, rc, rc == VW_OK ? call->id : NULL, NULL);
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
