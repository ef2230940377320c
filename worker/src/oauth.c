/* oauth.c -- access tokens for the connectors' vendor accounts */

/*
 * See vw_oauth.h for the contract.  One "flight" per connection gets a
 * token at a time: it reads Redis's copy ({vq}:tok:<name>), takes the
 * lock ({vq}:toklock:<name>) or waits for the worker that holds it,
 * opens the secrets from the vault and asks the token endpoint.  Every
 * request for that connection that comes meanwhile waits for the same
 * flight.  The flight belongs to the manager, not to a request: a
 * request cancelled leaves it running (its answer is kept for the next
 * one), and a flight whose Redis replies are still due when the manager
 * goes away is freed by the last of them.
 *
 * The secrets, the request body (it holds them or the assertion) and the
 * endpoint's answer (it holds the token) are cleared before they are
 * freed; no log line or error text carries any of them.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "vc_vault.h"
#include "vw_conf.h"
#include "vw_core.h"
#include "vw_http.h"
#include "vw_metrics.h"
#include "vw_oauth.h"
#include "vw_services.h"
#include "vw_vault.h"


#define VW_OAUTH_POLL_MS        100
#define VW_OAUTH_MARGIN_MS      60000     /* a copy ends this much early */
#define VW_OAUTH_TIMEOUT_MS     30000
#define VW_OAUTH_LIFETIME_MS    3600000   /* without token_lifetime */
#define VW_OAUTH_JWT_EXP_S      180
#define VW_OAUTH_ANSWER_MAX     (64 * 1024)
#define VW_OAUTH_FORM_MAX       16384
#define VW_OAUTH_KEY_MAX        (VC_VAULT_NAME_MAX + 1)
#define VW_OAUTH_SECRETS        3

#define VW_OAUTH_SF_PATH        "/services/oauth2/token"
#define VW_OAUTH_HS_TOKEN_URL   "https://api.hubapi.com/oauth/v1/token"
#define VW_OAUTH_HS_BASE_URL    "https://api.hubapi.com"
#define VW_OAUTH_JWT_GRANT      "urn:ietf:params:oauth:grant-type:jwt-bearer"


typedef struct vw_oauth_conn_s    vw_oauth_conn_t;
typedef struct vw_oauth_flight_s  vw_oauth_flight_t;


/* requests waiting for one answer; tr->priv points here */
typedef struct {
    vw_token_req_t             *head;
} vw_oauth_queue_t;


/* the secrets a flow opens, in the order read */
typedef enum {
    VW_OAUTH_S_KEY = 0,
    VW_OAUTH_S_SECRET,
    VW_OAUTH_S_REFRESH,
    VW_OAUTH_S_TOKEN
} vw_oauth_secret_e;


struct vw_oauth_flight_s {
    vw_oauth_queue_t            waiters;     /* first: see cancel */
    vw_oauth_t                 *oauth;
    vw_oauth_conn_t            *oc;
    vw_conf_connection_t       *conn;        /* a copy */
    char                       *stale;
    char                       *ca_file;
    char                       *proxy;
    uint64_t                    connect_timeout_ms;
    uint64_t                    timeout_ms;
    uint64_t                    deadline;    /* monotonic */
    unsigned                    pending;     /* Redis replies due */
    unsigned                    locked:1;
    unsigned                    http:1;      /* req is running */
    unsigned                    dead:1;      /* the manager is gone */

    const char                 *names[VW_OAUTH_SECRETS];
    vw_oauth_secret_e           kinds[VW_OAUTH_SECRETS];
    vw_secret_t                 secrets[VW_OAUTH_SECRETS];
    unsigned                    nsecrets;
    unsigned                    nread;

    struct event               *timer;
    char                        tok_key[VW_OAUTH_KEY_MAX];
    char                        lock_key[VW_OAUTH_KEY_MAX];
    char                        url[VW_OAUTH_URL_MAX];
    char                       *form;
    size_t                      form_len;
    struct curl_slist          *headers;
    vw_http_req_t               req;
};


/* one connection's copy of its token, and the flight getting one */
struct vw_oauth_conn_s {
    char                       *name;
    unsigned                    has:1;
    char                        token[VW_OAUTH_TOKEN_MAX];
    char                        instance_url[VW_OAUTH_URL_MAX];
    uint64_t                    expires_ms;  /* wall clock; 0: never */
    vw_oauth_flight_t          *flight;
    vw_oauth_conn_t            *next;
};


struct vw_oauth_s {
    const vw_services_t        *svc;
    vw_oauth_conn_t            *conns;
    vw_oauth_queue_t            ready;       /* answered from memory */
    struct event               *ready_ev;
};


static vw_oauth_conn_t *vw_oauth_conn(vw_oauth_t *oauth, const char *name);
static int vw_oauth_fresh(const vw_oauth_conn_t *oc, const char *stale);
static void vw_oauth_ready(evutil_socket_t fd, short what, void *arg);
static void vw_oauth_enqueue(vw_oauth_queue_t *q, vw_token_req_t *tr);
static vw_oauth_flight_t *vw_oauth_flight(vw_oauth_t *oauth,
    vw_oauth_conn_t *oc, vw_token_req_t *tr);
static int vw_oauth_command(vw_oauth_flight_t *f, redisCallbackFn *cb,
    const char *fmt, ...);
static int vw_oauth_read(vw_oauth_flight_t *f);
static void vw_oauth_read_done(redisAsyncContext *ac, void *reply,
    void *data);
static int vw_oauth_copy_open(vw_oauth_flight_t *f, const redisReply *r,
    char *token, char *instance_url, uint64_t *expires_ms);
static void vw_oauth_lock(vw_oauth_flight_t *f);
static void vw_oauth_lock_done(redisAsyncContext *ac, void *reply,
    void *data);
static void vw_oauth_poll(evutil_socket_t fd, short what, void *arg);
static int vw_oauth_secret_next(vw_oauth_flight_t *f);
static void vw_oauth_secret_done(redisAsyncContext *ac, void *reply,
    void *data);
static void vw_oauth_grant(vw_oauth_flight_t *f);
static int vw_oauth_form(vw_oauth_flight_t *f, char *err, size_t errlen);
static int vw_oauth_form_add(vw_oauth_flight_t *f, const char *name,
    const char *value, size_t len);
static int vw_oauth_assertion(vw_oauth_flight_t *f, char **out,
    char *err, size_t errlen);
static char *vw_oauth_b64url(const unsigned char *p, size_t len);
static void vw_oauth_granted(vw_http_req_t *req);
static void vw_oauth_store(vw_oauth_flight_t *f, const char *token,
    const char *instance_url, uint64_t lifetime_ms, uint64_t expires_ms);
static void vw_oauth_unlock(vw_oauth_flight_t *f);
static void vw_oauth_finish(vw_oauth_flight_t *f, int rc, long status,
    const char *err, const char *token, const char *instance_url,
    uint64_t expires_ms, vw_token_source_e source);
static void vw_oauth_fail(vw_oauth_flight_t *f, int rc, const char *fmt,
    ...);
static int vw_oauth_gone(vw_oauth_flight_t *f);
static void vw_oauth_flight_kill(vw_oauth_flight_t *f);
static void vw_oauth_flight_free(vw_oauth_flight_t *f);
static const vc_vault_key_t *vw_oauth_key(vw_oauth_t *oauth);
static uint64_t vw_oauth_now(void);
static void vw_oauth_wipe(void *p, size_t len);


vw_oauth_t *
vw_oauth_create(const vw_services_t *svc)
{
    vw_oauth_t  *oauth;

    oauth = calloc(1, sizeof(vw_oauth_t));
    if (oauth == NULL) {
        return NULL;
    }

    oauth->svc = svc;
    oauth->ready_ev = event_new(svc->base, -1, 0, vw_oauth_ready, oauth);

    if (oauth->ready_ev == NULL) {
        free(oauth);
        return NULL;
    }

    return oauth;
}


void
vw_oauth_free(vw_oauth_t *oauth)
{
    vw_oauth_conn_t  *oc, *next;

    if (oauth == NULL) {
        return;
    }

    while (oauth->ready.head != NULL) {
        vw_oauth_cancel(oauth->ready.head);
    }

    for (oc = oauth->conns; oc != NULL; oc = next) {
        next = oc->next;

        if (oc->flight != NULL) {
            vw_oauth_flight_kill(oc->flight);
        }

        vw_oauth_wipe(oc->token, sizeof(oc->token));
        free(oc->name);
        free(oc);
    }

    event_free(oauth->ready_ev);
    free(oauth);
}


int
vw_oauth_get(vw_oauth_t *oauth, vw_token_req_t *tr)
{
    vw_oauth_conn_t    *oc;
    vw_oauth_flight_t  *f;

    tr->rc = VW_ERROR;
    tr->status = 0;
    tr->error[0] = '\0';
    tr->token[0] = '\0';
    tr->instance_url[0] = '\0';
    tr->expires_ms = 0;
    tr->source = VW_TOKEN_MEMORY;
    tr->priv = NULL;
    tr->next = NULL;

    if (tr->conn == NULL || tr->conn->name == NULL) {
        snprintf(tr->error, sizeof(tr->error), "no connection");
        return VW_ERROR;
    }

    if (vw_oauth_key(oauth) == NULL) {
        snprintf(tr->error, sizeof(tr->error), "%s: no [vault] key_file",
                 tr->conn->name);
        return VW_ERROR;
    }

    oc = vw_oauth_conn(oauth, tr->conn->name);
    if (oc == NULL) {
        tr->rc = VW_AGAIN;
        snprintf(tr->error, sizeof(tr->error), "%s: out of memory",
                 tr->conn->name);
        return VW_ERROR;
    }

    if (vw_oauth_fresh(oc, tr->stale)) {
        tr->rc = VW_OK;
        memcpy(tr->token, oc->token, sizeof(tr->token));
        memcpy(tr->instance_url, oc->instance_url, sizeof(tr->instance_url));
        tr->expires_ms = oc->expires_ms;
        tr->source = VW_TOKEN_MEMORY;

        vw_oauth_enqueue(&oauth->ready, tr);
        event_active(oauth->ready_ev, EV_TIMEOUT, 0);
        return VW_OK;
    }

    if (oc->has && tr->stale != NULL && strcmp(oc->token, tr->stale) == 0) {
        vw_oauth_wipe(oc->token, sizeof(oc->token));
        oc->has = 0;
    }

    if (oc->flight != NULL) {
        vw_oauth_enqueue(&oc->flight->waiters, tr);
        return VW_OK;
    }

    f = vw_oauth_flight(oauth, oc, tr);
    if (f == NULL) {
        return VW_ERROR;
    }

    return VW_OK;
}


void
vw_oauth_cancel(vw_token_req_t *tr)
{
    vw_oauth_queue_t   *q;
    vw_token_req_t    **pp;

    q = tr->priv;
    if (q == NULL) {
        return;
    }

    for (pp = &q->head; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == tr) {
            *pp = tr->next;
            break;
        }
    }

    tr->priv = NULL;
    tr->next = NULL;
}


void
vw_token_clear(vw_token_req_t *tr)
{
    vw_oauth_wipe(tr->token, sizeof(tr->token));
}


void
vw_oauth_forget(vw_oauth_t *oauth, const char *name)
{
    vw_oauth_conn_t  *oc;

    for (oc = oauth->conns; oc != NULL; oc = oc->next) {
        if (strcmp(oc->name, name) == 0) {
            vw_oauth_wipe(oc->token, sizeof(oc->token));
            oc->has = 0;
            return;
        }
    }
}


/* the connection's state, made at its first request; NULL: no memory */
static vw_oauth_conn_t *
vw_oauth_conn(vw_oauth_t *oauth, const char *name)
{
    vw_oauth_conn_t  *oc;

    for (oc = oauth->conns; oc != NULL; oc = oc->next) {
        if (strcmp(oc->name, name) == 0) {
            return oc;
        }
    }

    oc = calloc(1, sizeof(vw_oauth_conn_t));
    if (oc == NULL) {
        return NULL;
    }

    oc->name = strdup(name);
    if (oc->name == NULL) {
        free(oc);
        return NULL;
    }

    oc->next = oauth->conns;
    oauth->conns = oc;

    return oc;
}


/* 1 when the process's copy may be answered: not ending, not refused */
static int
vw_oauth_fresh(const vw_oauth_conn_t *oc, const char *stale)
{
    if (!oc->has) {
        return 0;
    }

    if (stale != NULL && strcmp(oc->token, stale) == 0) {
        return 0;
    }

    return oc->expires_ms == 0
           || vw_oauth_now() + VW_OAUTH_MARGIN_MS < oc->expires_ms;
}


/* answers the requests the process's copy served, from the loop */
static void
vw_oauth_ready(evutil_socket_t fd, short what, void *arg)
{
    vw_oauth_t      *oauth = arg;
    vw_token_req_t  *tr;

    while ((tr = oauth->ready.head) != NULL) {
        oauth->ready.head = tr->next;
        tr->next = NULL;
        tr->priv = NULL;
        tr->handler(tr);
    }
}


static void
vw_oauth_enqueue(vw_oauth_queue_t *q, vw_token_req_t *tr)
{
    vw_token_req_t  **pp;

    for (pp = &q->head; *pp != NULL; pp = &(*pp)->next) {
        /* void */
    }

    tr->next = NULL;
    tr->priv = q;
    *pp = tr;
}


/*
 * Starts a flight for oc with tr as its first waiter.  NULL when it
 * cannot start: tr->rc and tr->error are set then.
 */
static vw_oauth_flight_t *
vw_oauth_flight(vw_oauth_t *oauth, vw_oauth_conn_t *oc, vw_token_req_t *tr)
{
    int                          rc, n;
    vw_oauth_flight_t           *f;
    const vw_conf_connection_t  *c = tr->conn;

    f = calloc(1, sizeof(vw_oauth_flight_t));
    if (f == NULL) {
        goto nomem;
    }

    f->oauth = oauth;
    f->oc = oc;
    f->conn = vw_conf_connection_copy(c);
    f->stale = tr->stale ? strdup(tr->stale) : NULL;
    f->ca_file = tr->ca_file ? strdup(tr->ca_file) : NULL;
    f->proxy = tr->proxy ? strdup(tr->proxy) : NULL;
    f->connect_timeout_ms = tr->connect_timeout_ms;
    f->timeout_ms = tr->timeout_ms ? tr->timeout_ms : VW_OAUTH_TIMEOUT_MS;
    f->deadline = vw_http_monotonic_ms() + f->timeout_ms;
    f->timer = evtimer_new(oauth->svc->base, vw_oauth_poll, f);

    if (f->conn == NULL || f->timer == NULL
        || (tr->stale && f->stale == NULL)
        || (tr->ca_file && f->ca_file == NULL)
        || (tr->proxy && f->proxy == NULL))
    {
        vw_oauth_flight_free(f);
        goto nomem;
    }

    n = snprintf(f->tok_key, sizeof(f->tok_key), "{vq}:tok:%s", c->name);
    if (n < 0 || (size_t) n >= sizeof(f->tok_key)
        || !vc_vault_name_valid(f->tok_key, n))
    {
        vw_oauth_flight_free(f);
        snprintf(tr->error, sizeof(tr->error), "%s: the connection's name "
                 "is not a valid key name", c->name);
        return NULL;
    }

    snprintf(f->lock_key, sizeof(f->lock_key), "{vq}:toklock:%s", c->name);

    /* the secrets the flow opens */
#define vw_oauth_need(kind, name)                                            \
    if ((name) != NULL) {                                                    \
        f->kinds[f->nsecrets] = kind;                                        \
        f->names[f->nsecrets++] = (name);                                    \
    }

    switch (c->auth) {

    case VW_OAUTH_JWT_BEARER:
        vw_oauth_need(VW_OAUTH_S_KEY, f->conn->private_key);
        break;

    case VW_OAUTH_CLIENT_CREDENTIALS:
        vw_oauth_need(VW_OAUTH_S_SECRET, f->conn->client_secret);
        break;

    case VW_OAUTH_REFRESH_TOKEN:
        vw_oauth_need(VW_OAUTH_S_SECRET, f->conn->client_secret);
        vw_oauth_need(VW_OAUTH_S_REFRESH, f->conn->refresh_token);
        break;

    case VW_OAUTH_PRIVATE_APP:
        vw_oauth_need(VW_OAUTH_S_TOKEN, f->conn->token);
        break;
    }

#undef vw_oauth_need

    if (f->nsecrets == 0
        || (c->auth == VW_OAUTH_REFRESH_TOKEN
            && f->kinds[f->nsecrets - 1] != VW_OAUTH_S_REFRESH))
    {
        vw_oauth_flight_free(f);
        snprintf(tr->error, sizeof(tr->error), "%s: the connection names "
                 "no secret for its auth", c->name);
        return NULL;
    }

    /* a private app's token is the vault's record: nothing to share */
    rc = (c->auth == VW_OAUTH_PRIVATE_APP) ? vw_oauth_secret_next(f)
                                           : vw_oauth_read(f);
    if (rc != VW_OK) {
        vw_oauth_flight_free(f);
        tr->rc = VW_AGAIN;
        snprintf(tr->error, sizeof(tr->error), "%s: Redis is down",
                 c->name);
        return NULL;
    }

    vw_oauth_enqueue(&f->waiters, tr);
    oc->flight = f;

    return f;

nomem:

    tr->rc = VW_AGAIN;
    snprintf(tr->error, sizeof(tr->error), "%s: out of memory", c->name);
    return NULL;
}


/*
 * Sends one command on the services' Redis connection with f as its
 * callback's data.  VW_OK, or VW_ERROR when Redis is down.
 */
static int
vw_oauth_command(vw_oauth_flight_t *f, redisCallbackFn *cb,
    const char *fmt, ...)
{
    int                 rc;
    va_list             ap;
    redisAsyncContext  *ac;

    ac = f->oauth->svc->redis(f->oauth->svc->redis_data);
    if (ac == NULL) {
        return VW_ERROR;
    }

    va_start(ap, fmt);
    rc = redisvAsyncCommand(ac, cb, f, fmt, ap);
    va_end(ap);

    if (rc != REDIS_OK) {
        return VW_ERROR;
    }

    f->pending++;

    return VW_OK;
}


/* reads the copy another worker may have stored */
static int
vw_oauth_read(vw_oauth_flight_t *f)
{
    return vw_oauth_command(f, vw_oauth_read_done, "GET %s", f->tok_key);
}


static void
vw_oauth_read_done(redisAsyncContext *ac, void *reply, void *data)
{
    int                 rc;
    uint64_t            expires_ms;
    redisReply         *r = reply;
    vw_oauth_flight_t  *f = data;
    char                token[VW_OAUTH_TOKEN_MAX],
                        instance_url[VW_OAUTH_URL_MAX];

    if (vw_oauth_gone(f)) {
        return;
    }

    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        vw_oauth_fail(f, VW_AGAIN, "%s: Redis: %s", f->conn->name,
                      r ? r->str : "no connection");
        return;
    }

    if (r->type == REDIS_REPLY_STRING) {
        rc = vw_oauth_copy_open(f, r, token, instance_url, &expires_ms);

        if (rc == VW_OK) {
            /* a lock taken to grant one is not needed after all */
            vw_oauth_unlock(f);

            /* the process keeps it too */
            vw_oauth_finish(f, VW_OK, 0, NULL, token, instance_url,
                            expires_ms, VW_TOKEN_REDIS);
            vw_oauth_wipe(token, sizeof(token));
            return;
        }

        vw_oauth_wipe(token, sizeof(token));
    }

    if (!f->locked) {
        vw_oauth_lock(f);
        return;
    }

    /* the lock is ours and there is still no copy: grant one */
    if (vw_oauth_secret_next(f) != VW_OK) {
        vw_oauth_fail(f, VW_AGAIN, "%s: Redis is down", f->conn->name);
    }
}


/*
 * Opens Redis's copy: VW_OK with the token when it opens, has not ended
 * and is not stale; else VW_DECLINED (a copy sealed under an older key is
 * one to replace, not an error).
 */
static int
vw_oauth_copy_open(vw_oauth_flight_t *f, const redisReply *r, char *token,
    char *instance_url, uint64_t *expires_ms)
{
    int                    rc;
    char                   err[VC_VAULT_ERRSTR_LEN];
    size_t                 len;
    json_t                *j, *t, *u, *e;
    unsigned char         *value;
    json_error_t           jerr;
    const vc_vault_key_t  *key;

    key = vw_oauth_key(f->oauth);
    if (key == NULL) {
        return VW_DECLINED;
    }

    rc = vc_vault_open(key, f->tok_key, strlen(f->tok_key),
                       (const unsigned char *) r->str, r->len, &value, &len,
                       err, sizeof(err));
    if (rc != VC_OK) {
        vw_log("warn", "token copy in Redis does not open: replacing it",
               "connection", f->conn->name, "reason", err, NULL);
        return VW_DECLINED;
    }

    j = json_loadb((const char *) value, len, 0, &jerr);
    vc_vault_free(value, len);

    if (j == NULL) {
        return VW_DECLINED;
    }

    rc = VW_DECLINED;
    t = json_object_get(j, "token");
    u = json_object_get(j, "instance_url");
    e = json_object_get(j, "expires_ms");

    if (json_is_string(t) && json_is_string(u) && json_is_integer(e)
        && json_string_length(t) < VW_OAUTH_TOKEN_MAX
        && json_string_length(u) < VW_OAUTH_URL_MAX
        && (f->stale == NULL || strcmp(json_string_value(t), f->stale) != 0)
        && (uint64_t) json_integer_value(e) > vw_oauth_now())
    {
        memcpy(token, json_string_value(t), json_string_length(t) + 1);
        memcpy(instance_url, json_string_value(u), json_string_length(u) + 1);
        *expires_ms = json_integer_value(e);
        rc = VW_OK;
    }

    if (json_is_string(t)) {
        vw_oauth_wipe((char *) json_string_value(t), json_string_length(t));
    }

    json_decref(j);

    return rc;
}


/* one grant at a time across the workers */
static void
vw_oauth_lock(vw_oauth_flight_t *f)
{
    if (vw_oauth_command(f, vw_oauth_lock_done, "SET %s %s NX PX %llu",
                         f->lock_key, f->oauth->svc->consumer,
                         (unsigned long long) f->timeout_ms)
        != VW_OK)
    {
        vw_oauth_fail(f, VW_AGAIN, "%s: Redis is down", f->conn->name);
    }
}


static void
vw_oauth_lock_done(redisAsyncContext *ac, void *reply, void *data)
{
    struct timeval      tv;
    redisReply         *r = reply;
    vw_oauth_flight_t  *f = data;

    if (vw_oauth_gone(f)) {
        return;
    }

    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        vw_oauth_fail(f, VW_AGAIN, "%s: Redis: %s", f->conn->name,
                      r ? r->str : "no connection");
        return;
    }

    if (r->type == REDIS_REPLY_STATUS) {
        f->locked = 1;

        /*
         * The copy is read again under the lock: a worker that granted one
         * between our read and our lock has stored it and let the lock go,
         * and a second grant would be one too many.
         */
        if (vw_oauth_read(f) != VW_OK) {
            vw_oauth_fail(f, VW_AGAIN, "%s: Redis is down", f->conn->name);
        }

        return;
    }

    /* another worker is getting one: its copy is read again soon */
    if (vw_http_monotonic_ms() + VW_OAUTH_POLL_MS > f->deadline) {
        vw_oauth_fail(f, VW_AGAIN, "%s: the token lock is held by another "
                      "worker", f->conn->name);
        return;
    }

    tv.tv_sec = 0;
    tv.tv_usec = VW_OAUTH_POLL_MS * 1000;
    evtimer_add(f->timer, &tv);
}


static void
vw_oauth_poll(evutil_socket_t fd, short what, void *arg)
{
    vw_oauth_flight_t  *f = arg;

    if (vw_oauth_read(f) != VW_OK) {
        vw_oauth_fail(f, VW_AGAIN, "%s: Redis is down", f->conn->name);
    }
}


/* asks for the next secret the flow needs: VW_OK, or VW_ERROR */
static int
vw_oauth_secret_next(vw_oauth_flight_t *f)
{
    const char  *name;

    name = f->names[f->nread];

    return vw_oauth_command(f, vw_oauth_secret_done, VW_VAULT_HGET, name,
                            strlen(name));
}


static void
vw_oauth_secret_done(redisAsyncContext *ac, void *reply, void *data)
{
    int                    rc;
    char                   err[VC_VAULT_ERRSTR_LEN], *p;
    const char            *name;
    vw_oauth_flight_t     *f = data;
    const vc_vault_key_t  *key;

    if (vw_oauth_gone(f)) {
        return;
    }

    name = f->names[f->nread];
    key = vw_oauth_key(f->oauth);

    if (key == NULL) {
        vw_oauth_fail(f, VW_ERROR, "%s: no [vault] key_file",
                      f->conn->name);
        return;
    }

    rc = vw_vault_open_reply(key, name, reply, &f->secrets[f->nread],
                             err, sizeof(err));

    switch (rc) {

    case VW_OK:
        break;

    case VW_DECLINED:
        vw_oauth_fail(f, VW_ERROR, "%s: no secret \"%s\" in the vault",
                      f->conn->name, name);
        return;

    case VW_AGAIN:
        vw_oauth_fail(f, VW_AGAIN, "%s: secret \"%s\": %s", f->conn->name,
                      name, err);
        return;

    default:
        /* the key ids, if any, in the log: the answer's text is short */
        vw_log("error", "vault record does not open", "connection",
               f->conn->name, "secret", name, "reason", err, NULL);

        p = strstr(err, " (");
        if (p != NULL) {
            *p = '\0';
        }

        vw_oauth_fail(f, VW_ERROR, "%s: secret \"%s\": %s", f->conn->name,
                      name, err);
        return;
    }

    if (++f->nread < f->nsecrets) {
        if (vw_oauth_secret_next(f) != VW_OK) {
            vw_oauth_fail(f, VW_AGAIN, "%s: Redis is down", f->conn->name);
        }

        return;
    }

    if (f->conn->auth == VW_OAUTH_PRIVATE_APP) {
        if (f->secrets[0].len >= VW_OAUTH_TOKEN_MAX
            || memchr(f->secrets[0].data, '\0', f->secrets[0].len) != NULL)
        {
            vw_oauth_fail(f, VW_ERROR, "%s: secret \"%s\" is not a token",
                          f->conn->name, name);
            return;
        }

        if (f->stale != NULL
            && strcmp((char *) f->secrets[0].data, f->stale) == 0)
        {
            vw_oauth_fail(f, VW_ERROR, "%s: the private app's token (secret "
                          "\"%s\") was refused", f->conn->name, name);
            return;
        }

        vw_oauth_finish(f, VW_OK, 0, NULL, (char *) f->secrets[0].data,
                        f->conn->base_url ? f->conn->base_url
                                          : VW_OAUTH_HS_BASE_URL,
                        0, VW_TOKEN_VAULT);
        return;
    }

    vw_oauth_grant(f);
}


/* the POST to the token endpoint, with the secrets opened */
static void
vw_oauth_grant(vw_oauth_flight_t *f)
{
    int                          n;
    char                         err[VW_ERRSTR_LEN];
    size_t                       len;
    uint64_t                     now, left;
    const char                  *base;
    vw_http_req_t               *req = &f->req;
    const vw_conf_connection_t  *c = f->conn;

    if (c->token_url != NULL) {
        n = snprintf(f->url, sizeof(f->url), "%s", c->token_url);

    } else if (c->vendor == VW_VENDOR_SALESFORCE && c->login_url != NULL) {
        base = c->login_url;
        len = strlen(base);

        while (len > 0 && base[len - 1] == '/') {
            len--;
        }

        n = snprintf(f->url, sizeof(f->url), "%.*s" VW_OAUTH_SF_PATH,
                     (int) len, base);

    } else {
        n = snprintf(f->url, sizeof(f->url), "%s", VW_OAUTH_HS_TOKEN_URL);
    }

    if (n < 0 || (size_t) n >= sizeof(f->url)) {
        vw_oauth_fail(f, VW_ERROR, "%s: the token URL is too long", c->name);
        return;
    }

    if (vw_oauth_form(f, err, sizeof(err)) != VW_OK) {
        vw_oauth_fail(f, VW_ERROR, "%s: %s", c->name, err);
        return;
    }

    /* the secrets are in the form now, and nowhere else */
    for (n = 0; n < (int) f->nsecrets; n++) {
        vw_secret_clear(&f->secrets[n]);
    }

    f->headers = curl_slist_append(NULL, "Content-Type: "
                                   "application/x-www-form-urlencoded");
    if (f->headers != NULL) {
        f->headers = curl_slist_append(f->headers,
                                       "Accept: application/json");
    }

    if (f->headers == NULL) {
        vw_oauth_fail(f, VW_AGAIN, "%s: out of memory", c->name);
        return;
    }

    now = vw_http_monotonic_ms();
    left = f->deadline > now + 1000 ? f->deadline - now : 1000;

    memset(req, 0, sizeof(vw_http_req_t));
    req->method = "POST";
    req->url = f->url;
    req->headers = f->headers;
    req->body = (const unsigned char *) f->form;
    req->body_len = f->form_len;
    req->timeout_ms = left;
    req->handler = vw_oauth_granted;
    req->data = f;
    req->ca_file = f->ca_file;
    req->proxy = f->proxy;
    req->connect_timeout_ms = f->connect_timeout_ms;
    req->body_max = VW_OAUTH_ANSWER_MAX;
    req->https_only = 1;

    if (vw_http_request(f->oauth->svc->http, req) != VW_OK) {
        vw_oauth_fail(f, VW_AGAIN, "%s: token endpoint: %s", c->name,
                      req->error);
        return;
    }

    f->http = 1;
}


/* the form of the flow: VW_OK, or VW_ERROR with err */
static int
vw_oauth_form(vw_oauth_flight_t *f, char *err, size_t errlen)
{
    int                          rc;
    char                        *assertion;
    unsigned                     i;
    const vw_secret_t           *s;
    const vw_conf_connection_t  *c = f->conn;

    f->form = malloc(VW_OAUTH_FORM_MAX);
    if (f->form == NULL) {
        snprintf(err, errlen, "out of memory");
        return VW_ERROR;
    }

    f->form[0] = '\0';
    f->form_len = 0;

    if (c->auth == VW_OAUTH_JWT_BEARER) {
        if (vw_oauth_assertion(f, &assertion, err, errlen) != VW_OK) {
            return VW_ERROR;
        }

        rc = vw_oauth_form_add(f, "grant_type", VW_OAUTH_JWT_GRANT,
                               sizeof(VW_OAUTH_JWT_GRANT) - 1);
        if (rc == VW_OK) {
            rc = vw_oauth_form_add(f, "assertion", assertion,
                                   strlen(assertion));
        }

        vw_oauth_wipe(assertion, strlen(assertion));
        free(assertion);

        goto done;
    }

    rc = vw_oauth_form_add(f, "grant_type",
                           c->auth == VW_OAUTH_CLIENT_CREDENTIALS
                           ? "client_credentials" : "refresh_token",
                           c->auth == VW_OAUTH_CLIENT_CREDENTIALS
                           ? sizeof("client_credentials") - 1
                           : sizeof("refresh_token") - 1);

    if (rc == VW_OK && c->client_id != NULL) {
        rc = vw_oauth_form_add(f, "client_id", c->client_id,
                               strlen(c->client_id));
    }

    for (i = 0; rc == VW_OK && i < f->nsecrets; i++) {
        s = &f->secrets[i];
        rc = vw_oauth_form_add(f, f->kinds[i] == VW_OAUTH_S_SECRET
                                  ? "client_secret" : "refresh_token",
                               (const char *) s->data, s->len);
    }

done:

    if (rc != VW_OK) {
        snprintf(err, errlen, "the token request is too large");
        return VW_ERROR;
    }

    return VW_OK;
}


/* appends name=value (escaped) to the form */
static int
vw_oauth_form_add(vw_oauth_flight_t *f, const char *name, const char *value,
    size_t len)
{
    int     n;
    char   *v;
    size_t  vlen;

    v = curl_easy_escape(NULL, value, (int) len);
    if (v == NULL) {
        return VW_ERROR;
    }

    vlen = strlen(v);

    n = snprintf(f->form + f->form_len, VW_OAUTH_FORM_MAX - f->form_len,
                 "%s%s=%s", f->form_len ? "&" : "", name, v);

    vw_oauth_wipe(v, vlen);
    curl_free(v);

    if (n < 0 || (size_t) n >= VW_OAUTH_FORM_MAX - f->form_len) {
        return VW_ERROR;
    }

    f->form_len += n;

    return VW_OK;
}


/*
 * The JWT bearer assertion (RS256): iss client_id, sub username, aud
 * audience or login_url, exp in 3 min, signed with the PEM key of the
 * vault.  *out is malloc()ed; the caller clears and frees it.
 */
static int
vw_oauth_assertion(vw_oauth_flight_t *f, char **out, char *err,
    size_t errlen)
{
    int                          rc;
    BIO                         *bio;
    char                        *claims, *head, *body, *sig, *p;
    size_t                       siglen, n;
    json_t                      *j;
    EVP_PKEY                    *pkey;
    EVP_MD_CTX                  *md;
    unsigned char               *raw;
    const char                  *aud;
    const vw_secret_t           *key = &f->secrets[0];
    const vw_conf_connection_t  *c = f->conn;

    *out = NULL;
    rc = VW_ERROR;
    claims = head = body = sig = NULL;
    raw = NULL;
    md = NULL;
    pkey = NULL;

    aud = c->audience ? c->audience : c->login_url;

    if (c->client_id == NULL || c->username == NULL || aud == NULL) {
        snprintf(err, errlen, "jwt_bearer needs client_id, username and "
                 "login_url");
        return VW_ERROR;
    }

    bio = BIO_new_mem_buf(key->data, (int) key->len);
    if (bio != NULL) {
        pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *) "");
        BIO_free(bio);
    }

    if (pkey == NULL || EVP_PKEY_base_id(pkey) != EVP_PKEY_RSA) {
        snprintf(err, errlen, "secret \"%s\" is not a PEM RSA private key",
                 f->names[0]);
        goto failed;
    }

    j = json_pack("{s:s, s:s, s:s, s:I}", "iss", c->client_id,
                  "sub", c->username, "aud", aud,
                  "exp", (json_int_t) (vw_oauth_now() / 1000
                                       + VW_OAUTH_JWT_EXP_S));
    if (j == NULL) {
        snprintf(err, errlen, "out of memory");
        goto failed;
    }

    claims = json_dumps(j, JSON_COMPACT);
    json_decref(j);

    head = vw_oauth_b64url((const unsigned char *) "{\"alg\":\"RS256\"}",
                           sizeof("{\"alg\":\"RS256\"}") - 1);
    body = claims ? vw_oauth_b64url((unsigned char *) claims,
                                    strlen(claims))
                  : NULL;

    if (head == NULL || body == NULL) {
        snprintf(err, errlen, "out of memory");
        goto failed;
    }

    n = strlen(head) + 1 + strlen(body);
    p = malloc(n + 1);
    raw = malloc(EVP_PKEY_size(pkey));
    md = EVP_MD_CTX_new();

    if (p == NULL || raw == NULL || md == NULL) {
        free(p);
        snprintf(err, errlen, "out of memory");
        goto failed;
    }

    snprintf(p, n + 1, "%s.%s", head, body);
    siglen = EVP_PKEY_size(pkey);

    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey) != 1
        || EVP_DigestSign(md, raw, &siglen, (unsigned char *) p, n) != 1)
    {
        free(p);
        snprintf(err, errlen, "signing the assertion failed");
        goto failed;
    }

    sig = vw_oauth_b64url(raw, siglen);
    if (sig == NULL) {
        free(p);
        snprintf(err, errlen, "out of memory");
        goto failed;
    }

    *out = malloc(n + 1 + strlen(sig) + 1);
    if (*out == NULL) {
        free(p);
        snprintf(err, errlen, "out of memory");
        goto failed;
    }

    sprintf(*out, "%s.%s", p, sig);
    free(p);
    rc = VW_OK;

failed:

    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey);
    free(raw);
    free(sig);
    free(head);
    free(body);
    free(claims);

    return rc;
}


/* unpadded base64url, malloc()ed, or NULL */
static char *
vw_oauth_b64url(const unsigned char *p, size_t len)
{
    int     n;
    char   *s, *q;

    s = malloc(4 * ((len + 2) / 3) + 1);
    if (s == NULL) {
        return NULL;
    }

    n = EVP_EncodeBlock((unsigned char *) s, p, (int) len);

    while (n > 0 && s[n - 1] == '=') {
        n--;
    }

    s[n] = '\0';

    for (q = s; *q; q++) {
        if (*q == '+') {
            *q = '-';

        } else if (*q == '/') {
            *q = '_';
        }
    }

    return s;
}


/* the token endpoint's answer; f (and req in it) is freed once answered */
static void
vw_oauth_granted(vw_http_req_t *req)
{
    long                 status;
    char                 err[VW_ERRSTR_LEN], secs[24], conn[256];
    size_t               big_len;
    json_t              *j, *t, *u, *e, *code, *desc;
    uint64_t             lifetime, expires_ms;
    const char          *url, *name, *outcome;
    json_error_t         jerr;
    unsigned char       *big;
    vw_oauth_flight_t   *f = req->data;

    f->http = 0;
    name = f->conn->name;
    status = req->status;

    /* for the metrics after f, which holds the name, is freed */
    snprintf(conn, sizeof(conn), "%s", name);
    outcome = "failed";

    /* the answer holds the token: only big, cleared below, keeps it */
    big = req->big;
    big_len = req->big_len;
    req->big = NULL;
    vw_oauth_wipe(req->resp, sizeof(req->resp));

    vw_oauth_wipe(f->form, f->form_len);
    free(f->form);
    f->form = NULL;
    f->form_len = 0;

    j = NULL;

    if (req->failed || status == 0) {
        vw_oauth_fail(f, VW_AGAIN, "%s: token endpoint: %s (temporary: to "
                      "be retried)", name,
                      req->timed_out ? "timed out" : req->error);
        goto done;
    }

    if (big != NULL) {
        j = json_loadb((const char *) big, big_len, 0, &jerr);
    }

    if (status == 200) {
        t = json_object_get(j, "access_token");
        u = json_object_get(j, "instance_url");
        e = json_object_get(j, "expires_in");

        if (!json_is_string(t) || json_string_length(t) == 0
            || json_string_length(t) >= VW_OAUTH_TOKEN_MAX)
        {
            vw_oauth_fail(f, VW_AGAIN, "%s: token endpoint: 200 without an "
                          "access_token", name);
            goto done;
        }

        if (f->conn->vendor == VW_VENDOR_SALESFORCE) {
            if (!json_is_string(u) || json_string_length(u) == 0
                || json_string_length(u) >= VW_OAUTH_URL_MAX)
            {
                vw_oauth_fail(f, VW_AGAIN, "%s: token endpoint: 200 "
                              "without an instance_url", name);
                goto done;
            }

            url = json_string_value(u);

        } else {
            url = f->conn->base_url ? f->conn->base_url
                                    : VW_OAUTH_HS_BASE_URL;
        }

        if (json_is_integer(e) && json_integer_value(e) > 0) {
            lifetime = (uint64_t) json_integer_value(e) * 1000;

        } else {
            lifetime = f->conn->token_lifetime_ms ? f->conn->token_lifetime_ms
                                                  : VW_OAUTH_LIFETIME_MS;
        }

        expires_ms = vw_oauth_now() + lifetime;

        vw_oauth_store(f, json_string_value(t), url, lifetime, expires_ms);
        vw_oauth_unlock(f);

        snprintf(secs, sizeof(secs), "%llu",
                 (unsigned long long) (lifetime / 1000));
        vw_log("info", "token granted", "connection", name,
               "expires_in_s", secs, NULL);

        outcome = "success";

        /* url may be the flight's: it is copied before f is freed */
        vw_oauth_finish(f, VW_OK, 200, NULL, json_string_value(t), url,
                        expires_ms, VW_TOKEN_GRANT);

        vw_oauth_wipe((char *) json_string_value(t), json_string_length(t));
        goto done;
    }

    /* the vendor's error code and description, never a value sent */
    code = json_object_get(j, "error");
    desc = json_object_get(j, "error_description");

    if (json_is_string(code)) {
        snprintf(err, sizeof(err), " %s%s%s", json_string_value(code),
                 json_is_string(desc) ? ": " : "",
                 json_is_string(desc) ? json_string_value(desc) : "");

    } else {
        err[0] = '\0';
    }

    if (status == 400 || status == 401
        || (status >= 402 && status < 500 && status != 408 && status != 429))
    {
        outcome = "refused";
        vw_oauth_fail(f, VW_ERROR, "%s: token endpoint: %ld%s", name,
                      status, err);

    } else {
        vw_oauth_fail(f, VW_AGAIN, "%s: token endpoint: %ld%s (temporary: "
                      "to be retried)", name, status, err);
    }

done:

    vw_metrics_inc(VW_METRICS_OAUTH_REFRESHES, conn, outcome);

    json_decref(j);

    if (big != NULL) {
        vw_oauth_wipe(big, big_len);
        free(big);
    }
}


/* Redis's copy, sealed, for the other workers */
static void
vw_oauth_store(vw_oauth_flight_t *f, const char *token,
    const char *instance_url, uint64_t lifetime_ms, uint64_t expires_ms)
{
    char                   err[VC_VAULT_ERRSTR_LEN], *s;
    size_t                 len;
    json_t                *j;
    uint64_t               px;
    unsigned char         *rec;
    redisAsyncContext     *ac;
    const vc_vault_key_t  *key;

    key = vw_oauth_key(f->oauth);
    ac = f->oauth->svc->redis(f->oauth->svc->redis_data);

    if (key == NULL || ac == NULL) {
        return;
    }

    j = json_pack("{s:s, s:s, s:I}", "token", token,
                  "instance_url", instance_url,
                  "expires_ms", (json_int_t) expires_ms);
    if (j == NULL) {
        return;
    }

    s = json_dumps(j, JSON_COMPACT);
    json_decref(j);

    if (s == NULL) {
        return;
    }

    len = strlen(s);
    rec = malloc(len + VC_VAULT_OVERHEAD);

    if (rec != NULL
        && vc_vault_seal(key, f->tok_key, strlen(f->tok_key),
                         (unsigned char *) s, len, rec, err, sizeof(err))
           == VC_OK)
    {
        px = lifetime_ms > VW_OAUTH_MARGIN_MS + 1000
             ? lifetime_ms - VW_OAUTH_MARGIN_MS : 1000;

        (void) redisAsyncCommand(ac, NULL, NULL, "SET %s %b PX %llu",
                                 f->tok_key, rec, len + VC_VAULT_OVERHEAD,
                                 (unsigned long long) px);

    } else {
        vw_log("warn", "token not stored in Redis", "connection",
               f->conn->name, "reason", rec ? err : "out of memory", NULL);
    }

    free(rec);
    vw_oauth_wipe(s, len);
    free(s);
}


/* a plain DEL: the lock's PX bounds a holder that went away */
static void
vw_oauth_unlock(vw_oauth_flight_t *f)
{
    redisAsyncContext  *ac;

    if (!f->locked) {
        return;
    }

    f->locked = 0;

    ac = f->oauth->svc->redis(f->oauth->svc->redis_data);
    if (ac != NULL) {
        (void) redisAsyncCommand(ac, NULL, NULL, "DEL %s", f->lock_key);
    }
}


/*
 * Answers every request waiting for f, keeps a token in the process, and
 * frees f.  A waiter that had refused this very token asks again.
 */
static void
vw_oauth_finish(vw_oauth_flight_t *f, int rc, long status, const char *err,
    const char *token, const char *instance_url, uint64_t expires_ms,
    vw_token_source_e source)
{
    vw_oauth_t       *oauth = f->oauth;
    vw_oauth_conn_t  *oc = f->oc;
    vw_token_req_t   *tr;

    if (oc->flight == f) {
        oc->flight = NULL;
    }

    if (rc == VW_OK) {
        oc->has = 1;
        snprintf(oc->token, sizeof(oc->token), "%s", token);
        snprintf(oc->instance_url, sizeof(oc->instance_url), "%s",
                 instance_url);
        oc->expires_ms = expires_ms;
    }

    while ((tr = f->waiters.head) != NULL) {
        f->waiters.head = tr->next;
        tr->next = NULL;
        tr->priv = NULL;

        if (rc == VW_OK && tr->stale != NULL && strcmp(tr->stale, token) == 0)
        {
            /* it refused this very token: it needs a newer one */
            if (vw_oauth_get(oauth, tr) == VW_OK) {
                continue;
            }

            /* vw_oauth_get() set tr->rc and tr->error */

        } else {
            tr->rc = rc;
            tr->status = status;
            tr->source = source;
            snprintf(tr->error, sizeof(tr->error), "%s", err ? err : "");

            if (rc == VW_OK) {
                snprintf(tr->token, sizeof(tr->token), "%s", token);
                snprintf(tr->instance_url, sizeof(tr->instance_url), "%s",
                         instance_url);
                tr->expires_ms = expires_ms;
            }
        }

        tr->handler(tr);
    }

    vw_oauth_flight_free(f);
}


/* the flight failed: every waiter gets rc and the text, which is logged */
static void
vw_oauth_fail(vw_oauth_flight_t *f, int rc, const char *fmt, ...)
{
    char     err[VW_ERRSTR_LEN];
    va_list  ap;

    va_start(ap, fmt);
    vsnprintf(err, sizeof(err), fmt, ap);
    va_end(ap);

    vw_oauth_unlock(f);

    vw_log(rc == VW_ERROR ? "error" : "warn", "no token",
           "connection", f->conn->name, "reason", err, NULL);

    vw_oauth_finish(f, rc, f->req.status, err, NULL, NULL, 0,
                    VW_TOKEN_GRANT);
}


/* a Redis reply came: 1 when the flight is gone and must not go on */
static int
vw_oauth_gone(vw_oauth_flight_t *f)
{
    f->pending--;

    if (!f->dead) {
        return 0;
    }

    if (f->pending == 0) {
        vw_oauth_flight_free(f);
    }

    return 1;
}


/* the manager goes away: no waiter is answered, no step taken */
static void
vw_oauth_flight_kill(vw_oauth_flight_t *f)
{
    vw_token_req_t  *tr;

    while ((tr = f->waiters.head) != NULL) {
        f->waiters.head = tr->next;
        tr->next = NULL;
        tr->priv = NULL;
    }

    if (f->http) {
        vw_http_cancel(&f->req);
        f->http = 0;
    }

    if (f->timer != NULL) {
        event_free(f->timer);
        f->timer = NULL;
    }

    f->dead = 1;
    f->oauth = NULL;
    f->oc = NULL;

    if (f->pending == 0) {
        vw_oauth_flight_free(f);
    }
}


static void
vw_oauth_flight_free(vw_oauth_flight_t *f)
{
    unsigned  i;

    for (i = 0; i < VW_OAUTH_SECRETS; i++) {
        vw_secret_clear(&f->secrets[i]);
    }

    if (f->form != NULL) {
        vw_oauth_wipe(f->form, f->form_len);
        free(f->form);
    }

    if (f->timer != NULL) {
        event_free(f->timer);
    }

    if (f->stale != NULL) {
        vw_oauth_wipe(f->stale, strlen(f->stale));
        free(f->stale);
    }

    curl_slist_free_all(f->headers);
    vw_conf_connection_free(f->conn);
    free(f->ca_file);
    free(f->proxy);
    free(f);
}


/* the master key in force, or NULL without a [vault] */
static const vc_vault_key_t *
vw_oauth_key(vw_oauth_t *oauth)
{
    const vw_conf_t  *conf;

    conf = oauth->svc->conf();

    if (conf == NULL || conf->vault.key_file == NULL) {
        return NULL;
    }

    return &conf->vault.key;
}


/* the wall clock in ms */
static uint64_t
vw_oauth_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);

    return (uint64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


static void
vw_oauth_wipe(void *p, size_t len)
{
    if (p != NULL) {
        explicit_bzero(p, len);
    }
}
