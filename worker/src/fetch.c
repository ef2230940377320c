/* fetch.c -- key sets, discovery and introspection for the module (FETCH) */

/*
 * Every outbound call the module needs goes through here, on the worker's
 * loop, over curl with the provider's certificate verified (ca_file or
 * the system's CAs; https:// only, no redirects).
 *
 * Key sets are kept per [idp] in memory, under the section's name, however
 * a FETCH named it (by name or by URL).  One refresh runs at a time per
 * provider, and every FETCH that comes while it runs waits for it (single
 * flight).  A set lives for the response's Cache-Control max-age, clamped
 * to [min_refresh, max_age_cap] (min_refresh when the provider says none,
 * no-cache or no-store), and a timer refreshes it at 4/5 of that, so
 * that a steady stream of FETCHes never waits.  A failed refresh (the
 * provider down, a 5xx, a body that is not a key set) leaves the last
 * good set in place: it is served marked stale once its time is over,
 * and refreshes are tried again after 1 s, doubling up to min_refresh.
 * Meanwhile a FETCH does not call the provider again on its own.
 *
 * A FETCH with MAX_AGE (the module met a kid the set does not have) asks
 * for a refresh on demand, even of a fresh set, unless one ran less than
 * MAX_AGE seconds ago, the set is less than a second old, or a failure's
 * backoff is pending; it joins the refresh running, if any, and is
 * answered when it ends.  So the provider sees one such request per
 * MAX_AGE at most, however many FETCHes carry it, and a key published
 * just after a scheduled refresh is still found at its first token.
 *
 * Introspection is not cached here: each FETCH is one POST (RFC 7662),
 * with the client credentials of the worker's configuration.  No log
 * line or reply carries a token or a secret; their buffers are cleared
 * before they are freed.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "vw_conf.h"
#include "vw_core.h"
#include "vw_fetch.h"
#include "vw_http.h"
#include "vw_metrics.h"


#define VW_FETCH_KEYS_MAX     (1024 * 1024)   /* a key set, a discovery doc */
#define VW_FETCH_INTRO_MAX    (64 * 1024)     /* an introspection answer */
#define VW_FETCH_TOKEN_MAX    16384
#define VW_FETCH_BACKOFF_MIN  1000            /* ms */

#define VW_FETCH_WELL_KNOWN   "/.well-known/openid-configuration"


typedef struct vw_fetch_waiter_s  vw_fetch_waiter_t;

struct vw_fetch_waiter_s {
    vw_fetch_kind_e             kind;
    vw_fetch_done_pt            handler;
    void                       *data;
    vw_fetch_waiter_t          *next;
};


typedef enum {
    VW_FETCH_STEP_DISCOVERY = 0,
    VW_FETCH_STEP_JWKS
} vw_fetch_step_e;


typedef struct vw_fetch_idp_s  vw_fetch_idp_t;

/* one [idp]'s key set: the last good one, and the refresh running */
struct vw_fetch_idp_s {
    vw_fetch_t                 *fetch;
    char                       *name;
    char                       *source;     /* what the set came from:
                                               discovery or jwks_url, and
                                               ca_file; a reload that
                                               changes it drops the set */
    char                       *jwks;       /* the last good set, or NULL */
    size_t                      jwks_len;
    char                       *doc;        /* its discovery document */
    size_t                      doc_len;
    uint64_t                    fetched_ms;  /* monotonic */
    uint64_t                    demand_ms;  /* the last refresh on demand */
    uint64_t                    ttl_ms;
    uint64_t                    retry_ms;   /* after a failure: no call on
                                               demand before this */
    uint64_t                    backoff_ms;
    uint32_t                    err_status;  /* the last failure's */
    char                        err[VW_ERRSTR_LEN];
    unsigned                    failures;    /* refreshes failed in a row */
    char                        label[VW_FETCH_SOURCE_LEN];
                                            /* the metrics' source:
                                               vw_fetch_source_label() of
                                               discovery or jwks_url */
    unsigned                    failed:1;
    unsigned                    running:1;

    /* the refresh running: copied from the configuration when it starts */
    vw_fetch_step_e             step;
    vw_http_req_t               req;
    struct curl_slist          *headers;
    char                       *url;
    char                       *issuer;
    char                       *ca_file;
    char                       *new_doc;
    size_t                      new_doc_len;
    uint64_t                    timeout_ms;
    uint64_t                    min_refresh_ms;
    uint64_t                    max_age_cap_ms;
    vw_fetch_waiter_t          *waiters;
    vw_fetch_waiter_t         **waiters_tail;

    struct event               *timer;
    vw_fetch_idp_t             *next;
};


typedef struct vw_fetch_intro_s  vw_fetch_intro_t;

/* one introspection running */
struct vw_fetch_intro_s {
    vw_fetch_t                 *fetch;
    char                       *name;
    char                       *url;
    char                       *ca_file;
    char                       *body;       /* holds the token (and secret) */
    size_t                      body_len;
    struct curl_slist          *headers;    /* may hold the secret */
    vw_http_req_t               req;
    vw_fetch_done_pt            handler;
    void                       *data;
    vw_fetch_intro_t           *next;
    vw_fetch_intro_t          **prev;
};


struct vw_fetch_s {
    struct event_base          *base;
    vw_http_t                  *http;
    vw_fetch_idp_t             *idps;
    vw_fetch_intro_t           *intros;
};


static vw_fetch_idp_t *vw_fetch_idp_get(vw_fetch_t *f, const char *name,
    size_t len);
static void vw_fetch_idp_free(vw_fetch_idp_t *st);
static void vw_fetch_idp_reset(vw_fetch_idp_t *st);
static void vw_fetch_refresh(vw_fetch_idp_t *st, const vw_conf_idp_t *idp);
static int vw_fetch_get(vw_fetch_idp_t *st);
static void vw_fetch_got(vw_http_req_t *req);
static void vw_fetch_failed(vw_fetch_idp_t *st, uint32_t status,
    const char *err);
static void vw_fetch_answer(vw_fetch_idp_t *st, vw_fetch_kind_e kind,
    vw_fetch_done_pt handler, void *data);
static void vw_fetch_timer(evutil_socket_t fd, short what, void *arg);
static void vw_fetch_schedule(vw_fetch_idp_t *st, uint64_t ms);
static char *vw_fetch_source(const vw_conf_idp_t *idp);
static void vw_fetch_idp_unlabel(vw_fetch_idp_t *st);
static void vw_fetch_idp_remove(vw_fetch_idp_t *st);
static int vw_fetch_idp_follow(vw_fetch_idp_t *st,
    const vw_conf_idp_t *idp);
static void vw_fetch_introspect(vw_fetch_t *f, const vw_conf_idp_t *idp,
    const unsigned char *token, size_t token_len, vw_fetch_done_pt handler,
    void *data);
static void vw_fetch_intro_done(vw_http_req_t *req);
static void vw_fetch_intro_free(vw_fetch_intro_t *in);
static int vw_fetch_outcome(vw_http_req_t *req, uint32_t *status,
    char *err, size_t errlen);
static void vw_fetch_log(const char *idp, const char *kind, const char *url,
    vw_http_req_t *req, const char *outcome, const char *err);
static void vw_fetch_where(const char *url, unsigned path, char *out,
    size_t size);
static void vw_fetch_error(vw_fetch_done_pt handler, void *data,
    uint32_t status, const char *err);
static void vw_fetch_wipe(char *s, size_t len);


vw_fetch_t *
vw_fetch_create(struct event_base *base)
{
    vw_fetch_t  *f;

    f = calloc(1, sizeof(vw_fetch_t));
    if (f == NULL) {
        return NULL;
    }

    f->base = base;
    f->http = vw_http_create(base);

    if (f->http == NULL) {
        free(f);
        return NULL;
    }

    return f;
}


void
vw_fetch_free(vw_fetch_t *f)
{
    vw_fetch_idp_t  *st, *next;

    if (f == NULL) {
        return;
    }

    while (f->intros != NULL) {
        vw_http_cancel(&f->intros->req);
        vw_fetch_error(f->intros->handler, f->intros->data, 503,
                       "the worker is shutting down");
        vw_fetch_intro_free(f->intros);
    }

    for (st = f->idps; st != NULL; st = next) {
        next = st->next;
        vw_fetch_idp_free(st);
    }

    vw_http_free(f->http);
    free(f);
}


void
vw_fetch_start(vw_fetch_t *f, const char *name, size_t len,
    vw_fetch_kind_e kind, const unsigned char *token, size_t token_len,
    int64_t max_age, vw_fetch_done_pt handler, void *data)
{
    uint64_t               now, young;
    vw_fetch_idp_t        *st;
    vw_fetch_waiter_t     *w;
    const vw_conf_idp_t   *idp;

    if (len > 8 && memcmp(name, "https://", 8) == 0) {
        /*
         * a URL of the module's directives: the section that lists it for
         * this kind (no two sections share one, conf.c sees to it), from
         * here on as if named; so a name and a URL share one key set
         */
        idp = vw_conf_idp_url(vw_conf_current(), name, len,
                              kind != VW_FETCH_INTROSPECT);

    } else {
        idp = vw_conf_idp(vw_conf_current(), name, len);
    }

    if (idp == NULL) {
        vw_fetch_error(handler, data, 404, "no such identity provider");
        return;
    }

    if (kind == VW_FETCH_INTROSPECT) {
        vw_fetch_introspect(f, idp, token, token_len, handler, data);
        return;
    }

    if (idp->discovery == NULL && idp->jwks_url == NULL) {
        vw_fetch_error(handler, data, 400, "the identity provider has no "
                       "key set configured");
        return;
    }

    if (kind == VW_FETCH_DISCOVERY && idp->discovery == NULL) {
        vw_fetch_error(handler, data, 400, "the identity provider has no "
                       "discovery configured");
        return;
    }

    st = vw_fetch_idp_get(f, idp->name, strlen(idp->name));
    if (st == NULL) {
        vw_fetch_error(handler, data, 503, "the worker is out of memory");
        return;
    }

    now = vw_http_monotonic_ms();

    if (!st->running) {
        if (vw_fetch_idp_follow(st, idp) != VW_OK) {
            vw_fetch_error(handler, data, 503, "the worker is out of memory");
            return;
        }

        /*
         * MAX_AGE: the module met a kid this set lacks.  A refresh on
         * demand runs unless one ran within MAX_AGE (1 s at least) or the
         * set is under a second old, so that however many FETCHes ask,
         * the provider sees one such request per MAX_AGE.
         */
        young = max_age < 0 ? (uint64_t) -1
                : (max_age > 0 ? (uint64_t) max_age : 1) * 1000;

        if (st->jwks != NULL && now < st->fetched_ms + st->ttl_ms
            && (max_age < 0 || now - st->fetched_ms < 1000
                || (st->demand_ms && now - st->demand_ms < young)))
        {
            vw_fetch_answer(st, kind, handler, data);
            return;
        }

        /* failed a moment ago: the provider is not asked again yet */
        if (st->failed && now < st->retry_ms) {
            vw_fetch_answer(st, kind, handler, data);
            return;
        }
    }

    w = malloc(sizeof(vw_fetch_waiter_t));
    if (w == NULL) {
        vw_fetch_error(handler, data, 503, "the worker is out of memory");
        return;
    }

    w->kind = kind;
    w->handler = handler;
    w->data = data;
    w->next = NULL;
    *st->waiters_tail = w;
    st->waiters_tail = &w->next;

    if (!st->running) {
        if (max_age >= 0 && st->jwks != NULL) {
            st->demand_ms = now;
        }

        vw_fetch_refresh(st, idp);
    }
}


/* the provider's state, made at its first FETCH */
static vw_fetch_idp_t *
vw_fetch_idp_get(vw_fetch_t *f, const char *name, size_t len)
{
    vw_fetch_idp_t  *st;

    for (st = f->idps; st != NULL; st = st->next) {
        if (strlen(st->name) == len && memcmp(st->name, name, len) == 0) {
            return st;
        }
    }

    st = calloc(1, sizeof(vw_fetch_idp_t));
    if (st == NULL) {
        return NULL;
    }

    st->fetch = f;
    st->name = strndup(name, len);
    st->timer = evtimer_new(f->base, vw_fetch_timer, st);
    st->waiters_tail = &st->waiters;

    if (st->name == NULL || st->timer == NULL) {
        vw_fetch_idp_free(st);
        return NULL;
    }

    st->next = f->idps;
    f->idps = st;

    return st;
}


/* also answers the callers still waiting: the worker is going away */
static void
vw_fetch_idp_free(vw_fetch_idp_t *st)
{
    vw_fetch_waiter_t  *w;

    if (st->running) {
        vw_http_cancel(&st->req);
    }

    while ((w = st->waiters) != NULL) {
        st->waiters = w->next;
        vw_fetch_error(w->handler, w->data, 503,
                       "the worker is shutting down");
        free(w);
    }

    if (st->timer != NULL) {
        event_free(st->timer);
    }

    curl_slist_free_all(st->headers);
    vw_fetch_idp_reset(st);
    vw_fetch_idp_unlabel(st);
    free(st->new_doc);
    free(st->url);
    free(st->issuer);
    free(st->ca_file);
    free(st->source);
    free(st->name);
    free(st);
}


/* forgets the set and its backoff (the refresh running, if any, stays) */
static void
vw_fetch_idp_reset(vw_fetch_idp_t *st)
{
    free(st->jwks);
    free(st->doc);
    st->jwks = NULL;
    st->doc = NULL;
    st->jwks_len = 0;
    st->doc_len = 0;
    st->fetched_ms = 0;
    st->demand_ms = 0;
    st->ttl_ms = 0;
    st->failed = 0;
    st->retry_ms = 0;
    st->backoff_ms = 0;
}


/*
 * Keeps the provider's state in step with its configuration: when a reload
 * pointed it elsewhere (another URL or CA file), what was kept is void,
 * and another URL is another key set, whose failures start at none.
 * Returns VW_OK, or VW_ERROR when out of memory.
 */
static int
vw_fetch_idp_follow(vw_fetch_idp_t *st, const vw_conf_idp_t *idp)
{
    char  *source, label[VW_FETCH_SOURCE_LEN];

    source = vw_fetch_source(idp);
    if (source == NULL) {
        return VW_ERROR;
    }

    if (st->source == NULL || strcmp(source, st->source) != 0) {
        vw_fetch_idp_reset(st);
        free(st->source);
        st->source = source;

    } else {
        free(source);
    }

    vw_fetch_source_label(idp->discovery ? idp->discovery : idp->jwks_url,
                          label, sizeof(label));

    if (strcmp(label, st->label) != 0) {
        vw_fetch_idp_unlabel(st);
        memcpy(st->label, label, sizeof(label));
    }

    return VW_OK;
}


/*
 * The failures gauge of the key set URL the provider had goes: a rule
 * reading it sees no data (and resolves) rather than the last count of a
 * URL that no refresh will ever try again.
 */
static void
vw_fetch_idp_unlabel(vw_fetch_idp_t *st)
{
    if (st->label[0] != '\0') {
        vw_metrics_drop(VW_METRICS_JWKS_FAILURES, st->label, NULL);
    }

    st->label[0] = '\0';
    st->failures = 0;
}


/* "discovery or jwks_url" NUL-free joined with ca_file: where a set is from */
static char *
vw_fetch_source(const vw_conf_idp_t *idp)
{
    char        *s;
    size_t       n;
    const char  *url, *ca;

    url = idp->discovery ? idp->discovery : idp->jwks_url;
    ca = idp->ca_file ? idp->ca_file : "";
    n = strlen(url) + strlen(ca) + 4;

    s = malloc(n);
    if (s != NULL) {
        snprintf(s, n, "%c %s %s", idp->discovery ? 'd' : 'j', url, ca);
    }

    return s;
}


/*
 * Starts a refresh with the provider's configuration as it is now; the
 * waiters are answered when it ends, from vw_fetch_got() or
 * vw_fetch_failed().
 */
static void
vw_fetch_refresh(vw_fetch_idp_t *st, const vw_conf_idp_t *idp)
{
    size_t  n;

    free(st->url);
    free(st->issuer);
    free(st->ca_file);
    free(st->new_doc);
    st->url = NULL;
    st->issuer = NULL;
    st->ca_file = NULL;
    st->new_doc = NULL;
    st->new_doc_len = 0;

    st->timeout_ms = idp->timeout_ms;
    st->min_refresh_ms = idp->min_refresh_ms;
    st->max_age_cap_ms = idp->max_age_cap_ms;
    st->running = 1;
    evtimer_del(st->timer);

    if (idp->ca_file != NULL) {
        st->ca_file = strdup(idp->ca_file);
        if (st->ca_file == NULL) {
            goto nomem;
        }
    }

    if (idp->discovery != NULL) {
        /* OpenID Connect Discovery 1.0, section 4: issuer + well-known */
        st->issuer = strdup(idp->discovery);
        n = strlen(idp->discovery);

        while (n > 8 && idp->discovery[n - 1] == '/') {
            n--;
        }

        st->url = malloc(n + sizeof(VW_FETCH_WELL_KNOWN));
        if (st->issuer == NULL || st->url == NULL) {
            goto nomem;
        }

        memcpy(st->url, idp->discovery, n);
        memcpy(st->url + n, VW_FETCH_WELL_KNOWN, sizeof(VW_FETCH_WELL_KNOWN));
        st->step = VW_FETCH_STEP_DISCOVERY;

    } else {
        st->url = strdup(idp->jwks_url);
        if (st->url == NULL) {
            goto nomem;
        }

        st->step = VW_FETCH_STEP_JWKS;
    }

    if (st->headers == NULL) {
        st->headers = curl_slist_append(NULL, "Accept: application/json");
        if (st->headers == NULL) {
            goto nomem;
        }
    }

    if (vw_fetch_get(st) != VW_OK) {
        vw_fetch_failed(st, 502, "cannot start a request to the identity "
                        "provider");
    }

    return;

nomem:

    vw_fetch_failed(st, 503, "the worker is out of memory");
}


static int
vw_fetch_get(vw_fetch_idp_t *st)
{
    memset(&st->req, 0, sizeof(vw_http_req_t));

    st->req.method = "GET";
    st->req.url = st->url;
    st->req.headers = st->headers;
    st->req.timeout_ms = st->timeout_ms;
    st->req.handler = vw_fetch_got;
    st->req.data = st;
    st->req.ca_file = st->ca_file;
    st->req.body_max = VW_FETCH_KEYS_MAX;
    st->req.https_only = 1;

    if (vw_http_request(st->fetch->http, &st->req) != VW_OK) {
        vw_fetch_log(st->name, st->step == VW_FETCH_STEP_JWKS ? "jwks"
                     : "discovery", st->url, &st->req, "unreachable",
                     st->req.error);
        return VW_ERROR;
    }

    return VW_OK;
}


/* an https:// URL, as the worker's configuration takes them */
static int
vw_fetch_https(const char *s)
{
    const char  *p;

    if (strncmp(s, "https://", 8) != 0 || strchr("/?#:", s[8]) != NULL) {
        return 0;
    }

    for (p = s; *p; p++) {
        if ((unsigned char) *p <= 0x20 || *p == 0x7f) {
            return 0;
        }
    }

    return 1;
}


/* a JSON object with "keys": an array of objects, each with its "kty" */
static int
vw_fetch_valid_jwks(const char *body, size_t len)
{
    int           ok;
    size_t        i;
    json_t       *o, *keys, *k;

    o = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (o == NULL) {
        return 0;
    }

    keys = json_object_get(o, "keys");
    ok = json_is_object(o) && json_is_array(keys) && json_array_size(keys);

    /* an empty set would refuse every token: keep the last good one */
    for (i = 0; ok && i < json_array_size(keys); i++) {
        k = json_array_get(keys, i);
        ok = json_is_object(k) && json_is_string(json_object_get(k, "kty"));
    }

    json_decref(o);

    return ok;
}


static void
vw_fetch_got(vw_http_req_t *req)
{
    char            err[VW_ERRSTR_LEN], *body;
    json_t         *o, *v;
    uint64_t        ttl;
    uint32_t        status;
    const char     *kind, *uri, *iss;
    vw_fetch_idp_t *st = req->data;

    kind = st->step == VW_FETCH_STEP_JWKS ? "jwks" : "discovery";

    if (vw_fetch_outcome(req, &status, err, sizeof(err)) != VW_OK) {
        vw_fetch_log(st->name, kind, st->url, req,
                     status == 504 ? "timeout"
                     : req->status ? "http_error" : "unreachable", err);
        goto failed;
    }

    if (st->step == VW_FETCH_STEP_DISCOVERY) {
        o = json_loadb((const char *) req->big, req->big_len, 0, NULL);
        v = json_object_get(o, "jwks_uri");
        uri = json_string_value(v);
        iss = json_string_value(json_object_get(o, "issuer"));

        /* section 4.3: the issuer must be the one the document was read for */
        if (uri == NULL || !vw_fetch_https(uri) || iss == NULL
            || strcmp(iss, st->issuer) != 0)
        {
            json_decref(o);
            snprintf(err, sizeof(err), "the identity provider's discovery "
                     "document is not valid");
            vw_fetch_log(st->name, kind, st->url, req, "invalid", err);
            status = 502;
            goto failed;
        }

        vw_fetch_log(st->name, kind, st->url, req, "ok", NULL);

        body = strdup(uri);
        json_decref(o);

        if (body == NULL) {
            status = 503;
            snprintf(err, sizeof(err), "the worker is out of memory");
            goto failed;
        }

        free(st->url);
        st->url = body;
        st->new_doc = (char *) req->big;
        st->new_doc_len = req->big_len;
        req->big = NULL;
        st->step = VW_FETCH_STEP_JWKS;

        if (vw_fetch_get(st) != VW_OK) {
            vw_fetch_failed(st, 502, "cannot start a request to the "
                            "identity provider");
        }

        return;
    }

    if (!vw_fetch_valid_jwks((const char *) req->big, req->big_len)) {
        snprintf(err, sizeof(err), "the identity provider's key set is not "
                 "valid");
        vw_fetch_log(st->name, kind, st->url, req, "invalid", err);
        status = 502;
        goto failed;
    }

    vw_fetch_log(st->name, kind, st->url, req, "ok", NULL);

    /* the provider's max-age, within the bounds the configuration sets */
    ttl = req->max_age > 0 ? (uint64_t) req->max_age * 1000 : 0;

    if (ttl < st->min_refresh_ms) {
        ttl = st->min_refresh_ms;
    }

    if (ttl > st->max_age_cap_ms) {
        ttl = st->max_age_cap_ms;
    }

    free(st->jwks);
    st->jwks = (char *) req->big;
    st->jwks_len = req->big_len;
    req->big = NULL;

    if (st->new_doc != NULL) {
        free(st->doc);
        st->doc = st->new_doc;
        st->doc_len = st->new_doc_len;
        st->new_doc = NULL;
    }

    st->fetched_ms = vw_http_monotonic_ms();
    st->ttl_ms = ttl;
    st->failures = 0;
    vw_metrics_set(VW_METRICS_JWKS_FAILURES, 0, st->label, NULL);
    st->failed = 0;
    st->backoff_ms = 0;
    st->retry_ms = 0;
    st->err[0] = '\0';
    st->running = 0;

    /* before it expires, so that no FETCH waits for the provider */
    vw_fetch_schedule(st, ttl - ttl / 5);
    vw_fetch_answer(st, VW_FETCH_JWKS, NULL, NULL);

    return;

failed:

    free(req->big);
    req->big = NULL;
    vw_fetch_failed(st, status, err);
}


/* the refresh failed: the last good set stays, tried again later */
static void
vw_fetch_failed(vw_fetch_idp_t *st, uint32_t status, const char *err)
{
    uint64_t  cap;

    free(st->new_doc);
    st->new_doc = NULL;

    cap = st->min_refresh_ms > VW_FETCH_BACKOFF_MIN ? st->min_refresh_ms
                                                    : VW_FETCH_BACKOFF_MIN;

    st->backoff_ms = st->backoff_ms ? st->backoff_ms * 2
                                    : VW_FETCH_BACKOFF_MIN;
    if (st->backoff_ms > cap) {
        st->backoff_ms = cap;
    }

    st->failed = 1;
    st->running = 0;
    st->retry_ms = vw_http_monotonic_ms() + st->backoff_ms;

    if (st->label[0] != '\0') {
        st->failures++;
        vw_metrics_set(VW_METRICS_JWKS_FAILURES, st->failures, st->label,
                       NULL);
    }

    st->err_status = status;
    snprintf(st->err, sizeof(st->err), "%s", err);

    /* a set to keep fresh is tried again; without one, a FETCH asks */
    if (st->jwks != NULL) {
        vw_fetch_schedule(st, st->backoff_ms);
    }

    vw_fetch_answer(st, VW_FETCH_JWKS, NULL, NULL);
}


/*
 * Answers one caller (handler set) or every waiter (handler NULL) from
 * what the state holds now: the set (stale once its time is over, with
 * the last failure as its error), or the last failure.
 */
static void
vw_fetch_answer(vw_fetch_idp_t *st, vw_fetch_kind_e kind,
    vw_fetch_done_pt handler, void *data)
{
    uint64_t            now, end;
    vw_fetch_waiter_t  *w;
    vw_fetch_result_t   res;

    if (handler == NULL) {
        while ((w = st->waiters) != NULL) {
            st->waiters = w->next;

            if (st->waiters == NULL) {
                st->waiters_tail = &st->waiters;
            }

            vw_fetch_answer(st, w->kind, w->handler, w->data);
            free(w);
        }

        return;
    }

    memset(&res, 0, sizeof(vw_fetch_result_t));

    if (st->jwks == NULL) {
        vw_fetch_error(handler, data, st->err_status ? st->err_status : 502,
                       st->err[0] ? st->err : "no key set");
        return;
    }

    if (kind == VW_FETCH_DISCOVERY && st->doc == NULL) {
        vw_fetch_error(handler, data, 502, "no discovery document");
        return;
    }

    now = vw_http_monotonic_ms();
    end = st->fetched_ms + st->ttl_ms;

    res.status = 200;
    res.cached = 1;
    res.age = (uint32_t) ((now - st->fetched_ms) / 1000);
    res.stale = now >= end;
    res.max_age = res.stale ? 0 : (uint32_t) ((end - now) / 1000);
    res.error = res.stale && st->err[0] ? st->err : NULL;

    if (kind == VW_FETCH_DISCOVERY) {
        res.body = st->doc;
        res.body_len = st->doc_len;

    } else {
        res.body = st->jwks;
        res.body_len = st->jwks_len;
    }

    handler(data, &res);
}


static void
vw_fetch_schedule(vw_fetch_idp_t *st, uint64_t ms)
{
    struct timeval  tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    evtimer_add(st->timer, &tv);
}


/* refresh time: with the configuration in force, if it still names it */
static void
vw_fetch_timer(evutil_socket_t fd, short what, void *arg)
{
    vw_fetch_idp_t       *st = arg;
    const vw_conf_idp_t  *idp;

    if (st->running) {
        return;
    }

    idp = vw_conf_idp(vw_conf_current(), st->name, strlen(st->name));

    if (idp == NULL || (idp->discovery == NULL && idp->jwks_url == NULL)) {
        vw_fetch_idp_remove(st);
        return;
    }

    if (vw_fetch_idp_follow(st, idp) != VW_OK) {
        vw_fetch_schedule(st, VW_FETCH_BACKOFF_MIN);
        return;
    }

    vw_fetch_refresh(st, idp);
}


void
vw_fetch_reload(vw_fetch_t *f)
{
    vw_fetch_idp_t       *st, *next;
    const vw_conf_idp_t  *idp;

    for (st = f->idps; st != NULL; st = next) {
        next = st->next;

        /* its end schedules its timer (a set) or waits for a FETCH */
        if (st->running) {
            continue;
        }

        idp = vw_conf_idp(vw_conf_current(), st->name, strlen(st->name));

        if (idp == NULL || (idp->discovery == NULL && idp->jwks_url == NULL))
        {
            vw_fetch_idp_remove(st);
            continue;
        }

        /* out of memory: its timer or the next FETCH follows it */
        (void) vw_fetch_idp_follow(st, idp);
    }
}


/* removed by a reload: nobody waits (nothing runs), so it goes */
static void
vw_fetch_idp_remove(vw_fetch_idp_t *st)
{
    vw_fetch_idp_t  **pp;

    for (pp = &st->fetch->idps; *pp != st; pp = &(*pp)->next) {
        /* void */
    }

    *pp = st->next;
    vw_fetch_idp_free(st);
}


/*
 * Maps a finished request to VW_OK (a 200 with a body) or VW_ERROR with
 * the status for the module and a reason safe to show (never curl's own
 * text, which may carry more than a client should see).
 */
static int
vw_fetch_outcome(vw_http_req_t *req, uint32_t *status, char *err,
    size_t errlen)
{
    if (req->timed_out) {
        *status = 504;
        snprintf(err, errlen, "the identity provider did not answer in "
                 "time");
        return VW_ERROR;
    }

    if (req->failed) {
        *status = 502;
        snprintf(err, errlen, "%s", req->too_large
                 ? "the identity provider's answer is too large"
                 : "cannot reach the identity provider");
        return VW_ERROR;
    }

    if (req->status != 200) {
        *status = 502;
        snprintf(err, errlen, "the identity provider answered %ld",
                 req->status);
        return VW_ERROR;
    }

    if (req->big == NULL || req->big_len == 0) {
        *status = 502;
        snprintf(err, errlen, "the identity provider answered with no body");
        return VW_ERROR;
    }

    *status = 200;

    return VW_OK;
}


/*
 * Where a URL points, never its query or its user: "host:port" (or
 * "host"), or with path "scheme://host[:port]/path"; "?" when it does not
 * parse.
 */
static void
vw_fetch_where(const char *url, unsigned path, char *out, size_t size)
{
    char  *h, *port, *scheme, *p;
    CURLU *u;

    snprintf(out, size, "?");

    u = curl_url();

    if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK
        || curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK)
    {
        curl_url_cleanup(u);
        return;
    }

    port = NULL;
    scheme = NULL;
    p = NULL;

    (void) curl_url_get(u, CURLUPART_PORT, &port, 0);

    if (path) {
        (void) curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
        (void) curl_url_get(u, CURLUPART_PATH, &p, 0);

        snprintf(out, size, "%.16s://%.200s%s%.8s%.280s",
                 scheme ? scheme : "", h, port ? ":" : "",
                 port ? port : "", p ? p : "");

    } else if (port != NULL) {
        snprintf(out, size, "%.200s:%.8s", h, port);

    } else {
        snprintf(out, size, "%.200s", h);
    }

    curl_free(h);
    curl_free(port);
    curl_free(scheme);
    curl_free(p);
    curl_url_cleanup(u);
}


void
vw_fetch_source_label(const char *url, char *out, size_t size)
{
    vw_fetch_where(url, 1, out, size);
}


/*
 * {"msg":"idp fetch","idp","kind","host","status","ms","outcome"[,"error"]}:
 * the URL's host and port only (a path or query may carry more than a log
 * should), and curl's reason for a failure without a response.  Counted
 * in vantage_worker_fetch_total by kind and outcome.
 */
static void
vw_fetch_log(const char *idp, const char *kind, const char *url,
    vw_http_req_t *req, const char *outcome, const char *err)
{
    char  status[16], ms[24], host[300];

    vw_metrics_inc(VW_METRICS_FETCHES,
                   strcmp(kind, "introspect") == 0 ? "introspection" : kind,
                   outcome);

    snprintf(status, sizeof(status), "%ld", req->status);
    snprintf(ms, sizeof(ms), "%llu", (unsigned long long) req->ms);
    vw_fetch_where(url, 0, host, sizeof(host));

    vw_log(strcmp(outcome, "ok") == 0 ? "info" : "warn", "idp fetch",
           "idp", idp, "kind", kind, "host", host, "status", status,
           "ms", ms, "outcome", outcome,
           err ? "error" : NULL, err,
           (err && req->failed && req->error[0]) ? "reason" : NULL,
           req->error, NULL);
}


static void
vw_fetch_error(vw_fetch_done_pt handler, void *data, uint32_t status,
    const char *err)
{
    vw_fetch_result_t  res;

    memset(&res, 0, sizeof(vw_fetch_result_t));
    res.status = status;
    res.error = err;

    handler(data, &res);
}


/* form-urlencoded (RFC 6749 appendix B), appended at *p; NULL on no memory */
static char *
vw_fetch_form(char *p, const char *name, const char *value, size_t len)
{
    char  *e;

    e = curl_easy_escape(NULL, value, (int) len);
    if (e == NULL) {
        return NULL;
    }

    p += sprintf(p, "%s%s=%s", p[-1] == '\0' ? "" : "&", name, e);
    vw_fetch_wipe(e, strlen(e));
    curl_free(e);

    return p;
}


/*
 * RFC 7662 section 2.1: POST token=<token> with the worker's client
 * authentication, RFC 6749 section 2.3.1: client_secret_basic sends
 * Basic base64(urlencode(id) ":" urlencode(secret)); client_secret_post
 * sends client_id and client_secret in the form.
 */
static void
vw_fetch_introspect(vw_fetch_t *f, const vw_conf_idp_t *idp,
    const unsigned char *token, size_t token_len, vw_fetch_done_pt handler,
    void *data)
{
    char              *id, *secret, *pair, *hdr, *p;
    size_t             i, n, need;
    vw_fetch_intro_t  *in;

    if (idp->introspection_url == NULL) {
        vw_fetch_error(handler, data, 400, "the identity provider has no "
                       "introspection configured");
        return;
    }

    if (token == NULL || token_len == 0 || token_len > VW_FETCH_TOKEN_MAX) {
        vw_fetch_error(handler, data, 400, "the token is missing or longer "
                       "than 16384 bytes");
        return;
    }

    for (i = 0; i < token_len; i++) {
        if (token[i] <= 0x20 || token[i] >= 0x7f) {
            vw_fetch_error(handler, data, 400, "the token holds a byte that "
                           "is not printable ASCII");
            return;
        }
    }

    in = calloc(1, sizeof(vw_fetch_intro_t));
    if (in == NULL) {
        vw_fetch_error(handler, data, 503, "the worker is out of memory");
        return;
    }

    in->fetch = f;
    in->handler = handler;
    in->data = data;
    in->name = strdup(idp->name);
    in->url = strdup(idp->introspection_url);
    in->ca_file = idp->ca_file ? strdup(idp->ca_file) : NULL;

    /* each byte escapes to 3 at most */
    need = 3 * token_len + 3 * strlen(idp->client_id)
           + 3 * strlen(idp->client_secret) + 64;
    in->body = calloc(1, need);

    in->headers = curl_slist_append(NULL, "Accept: application/json");

    if (in->name == NULL || in->url == NULL || in->body == NULL
        || in->headers == NULL || (idp->ca_file && in->ca_file == NULL))
    {
        goto nomem;
    }

    /* vw_fetch_form() looks one byte back for the separator */
    p = in->body + 1;
    p = vw_fetch_form(p, "token", (const char *) token, token_len);

    if (p != NULL && idp->auth == VW_IDP_AUTH_POST) {
        p = vw_fetch_form(p, "client_id", idp->client_id,
                          strlen(idp->client_id));
        if (p != NULL) {
            p = vw_fetch_form(p, "client_secret", idp->client_secret,
                              strlen(idp->client_secret));
        }
    }

    if (p == NULL) {
        goto nomem;
    }

    memmove(in->body, in->body + 1, (size_t) (p - in->body));
    in->body_len = (size_t) (p - in->body) - 1;

    if (idp->auth == VW_IDP_AUTH_BASIC) {
        id = curl_easy_escape(NULL, idp->client_id, 0);
        secret = curl_easy_escape(NULL, idp->client_secret, 0);
        pair = NULL;
        hdr = NULL;

        if (id != NULL && secret != NULL) {
            n = strlen(id) + strlen(secret) + 2;
            pair = malloc(n);
            hdr = malloc(4 * n / 3 + 32);
        }

        if (pair != NULL && hdr != NULL) {
            n = (size_t) snprintf(pair, n, "%s:%s", id, secret);
            memcpy(hdr, "Authorization: Basic ", 21);
            EVP_EncodeBlock((unsigned char *) hdr + 21,
                            (unsigned char *) pair, (int) n);
            in->headers = curl_slist_append(in->headers, hdr);
            vw_fetch_wipe(pair, n);
            vw_fetch_wipe(hdr, strlen(hdr));
        }

        if (id != NULL) {
            curl_free(id);
        }

        if (secret != NULL) {
            vw_fetch_wipe(secret, strlen(secret));
            curl_free(secret);
        }

        free(pair);

        if (hdr == NULL) {
            goto nomem;
        }

        free(hdr);
    }

    in->next = f->intros;
    in->prev = &f->intros;

    if (f->intros != NULL) {
        f->intros->prev = &in->next;
    }

    f->intros = in;

    in->req.method = "POST";
    in->req.url = in->url;
    in->req.headers = in->headers;
    in->req.body = (const unsigned char *) in->body;
    in->req.body_len = in->body_len;
    in->req.timeout_ms = idp->timeout_ms;
    in->req.handler = vw_fetch_intro_done;
    in->req.data = in;
    in->req.ca_file = in->ca_file;
    in->req.body_max = VW_FETCH_INTRO_MAX;
    in->req.https_only = 1;

    if (vw_http_request(f->http, &in->req) != VW_OK) {
        vw_fetch_log(in->name, "introspect", in->url, &in->req,
                     "unreachable", in->req.error);
        vw_fetch_error(handler, data, 502, "cannot start a request to the "
                       "identity provider");
        vw_fetch_intro_free(in);
    }

    return;

nomem:

    vw_fetch_error(handler, data, 503, "the worker is out of memory");
    vw_fetch_intro_free(in);
}


static void
vw_fetch_intro_done(vw_http_req_t *req)
{
    char               err[VW_ERRSTR_LEN];
    json_t            *o;
    uint32_t           status;
    vw_fetch_intro_t  *in = req->data;
    vw_fetch_result_t  res;

    if (vw_fetch_outcome(req, &status, err, sizeof(err)) != VW_OK) {
        if (req->status == 401 || req->status == 403) {
            snprintf(err, sizeof(err), "the identity provider refused the "
                     "worker's client credentials (%ld)", req->status);
        }

        vw_fetch_log(in->name, "introspect", in->url, req,
                     status == 504 ? "timeout"
                     : req->status ? "http_error" : "unreachable", err);
        vw_fetch_error(in->handler, in->data, status, err);
        goto done;
    }

    /* RFC 7662 section 2.2: an object whose "active" is a boolean */
    o = json_loadb((const char *) req->big, req->big_len, 0, NULL);

    if (!json_is_object(o) || !json_is_boolean(json_object_get(o, "active")))
    {
        json_decref(o);
        snprintf(err, sizeof(err), "the identity provider's introspection "
                 "answer is not valid");
        vw_fetch_log(in->name, "introspect", in->url, req, "invalid", err);
        vw_fetch_error(in->handler, in->data, 502, err);
        goto done;
    }

    json_decref(o);
    vw_fetch_log(in->name, "introspect", in->url, req, "ok", NULL);

    memset(&res, 0, sizeof(vw_fetch_result_t));
    res.status = 200;
    res.body = (const char *) req->big;
    res.body_len = req->big_len;

    in->handler(in->data, &res);

done:

    vw_fetch_intro_free(in);
}


/* unlinks (when linked) and frees, clearing what held the token or secret */
static void
vw_fetch_intro_free(vw_fetch_intro_t *in)
{
    struct curl_slist  *h;

    if (in->prev != NULL) {
        *in->prev = in->next;

        if (in->next != NULL) {
            in->next->prev = in->prev;
        }
    }

    for (h = in->headers; h != NULL; h = h->next) {
        vw_fetch_wipe(h->data, strlen(h->data));
    }

    curl_slist_free_all(in->headers);

    if (in->body != NULL) {
        vw_fetch_wipe(in->body, in->body_len);
        free(in->body);
    }

    if (in->req.big != NULL) {
        /* the answer names the token's subject and scopes */
        vw_fetch_wipe((char *) in->req.big, in->req.big_len);
        free(in->req.big);
    }

    free(in->name);
    free(in->url);
    free(in->ca_file);
    free(in);
}


static void
vw_fetch_wipe(char *s, size_t len)
{
    explicit_bzero(s, len);
}
