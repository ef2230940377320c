/* ngx_vantage_metrics.c -- counters in shared memory, Prometheus text */

/*
 * Every counter lives in a zone the module makes at configuration time,
 * sized for the locations and key sources configured.  The zone holds one
 * slot per process: a worker process takes a free slot when it starts and
 * gives it back when it exits, so a slot has one writer at a time and an
 * update is a plain add to the process's own cache lines, with no lock and
 * no atomic instruction.  Slots are not indexed by ngx_worker because a
 * reload's new workers reuse the indices of old ones still draining their
 * connections: with plain adds, two writers of one cell would lose counts.
 * Hence twice as many slots as worker processes, and two more; a slot is
 * free when its owner has given it back or is dead (crashed, killed).  A
 * process that finds none free (many reloads within one drain) adds to a
 * spare slot shared by all such processes, with ngx_atomic_fetch_add(),
 * and keeps no gauges (they are a process's own state).
 *
 * A scrape sums the slots.  Counts never go back: a slot keeps its counts
 * when its owner goes, and the next owner adds to them.  The zone's name
 * carries a digest of everything its layout depends on (the families and
 * their labels, the locations, the key sources, the number of slots), so
 * a reload that keeps them finds the same zone and keeps the counts, and
 * one that changes them gets a new, zeroed zone instead of counts under
 * the wrong labels; the old workers go on counting in the old one.
 *
 * Requests, authentication outcomes and rate-limit decisions are counted
 * in the LOG phase from the facts the request's context holds, the same
 * facts the access log's variables read; the rest where it happens.
 */

#include "ngx_vantage_module.h"

#include <signal.h>


#define NGX_VANTAGE_METRICS_PROMETHEUS  1
#define NGX_VANTAGE_METRICS_JSON        2

/* a slot spans whole pairs of cache lines: the adjacent-line prefetcher */
#define NGX_VANTAGE_METRICS_ALIGN       128

#define NGX_VANTAGE_METRICS_TEXT_TYPE                                         \
    "text/plain; version=0.0.4; charset=utf-8"


/* the zone */
typedef struct {
    u_char                      digest[32];
    ngx_uint_t                  nslots;
    ngx_uint_t                  stride;    /* cells from a slot to the next */
    ngx_atomic_t               *owners;    /* pid of each slot's process */
    ngx_atomic_t               *cells;     /* nslots + 1 slots: the last is
                                              shared */
} ngx_vantage_metrics_sh_t;


/* the layout, in every process; shm_zone->data */
typedef struct {
    ngx_vantage_metrics_sh_t   *sh;
    u_char                      digest[32];
    size_t                      size;
    ngx_uint_t                  nslots;
    ngx_uint_t                  stride;
    ngx_uint_t                  ncounters;
    ngx_uint_t                  ncells;
    ngx_uint_t                  jwks_failures;  /* the first cell of each */
    ngx_uint_t                  breaker;
    ngx_uint_t                  jwks_fetched;
    ngx_str_t                  *locations;
    ngx_uint_t                  nlocations;
    ngx_str_t                  *sources;
    ngx_uint_t                  nsources;
} ngx_vantage_metrics_t;


/* the output, written in two passes: its length (pos NULL), then it */
typedef struct {
    u_char                     *pos;
    size_t                      len;
    ngx_uint_t                  format;
    ngx_uint_t                  families;  /* written so far */
    ngx_uint_t                  samples;   /* of the current family */
} ngx_vantage_metrics_out_t;


/* a label of a sample */
typedef struct {
    const char                 *name;
    ngx_str_t                  *value;
} ngx_vantage_metrics_label_t;


/* a family of counters whose labels take their values from word lists */
typedef struct {
    const char                 *name;
    const char                 *help;
    const char                 *label[2];
    ngx_str_t                  *words[2];
    ngx_uint_t                  n[2];      /* n[1] 0: one label */
    unsigned                   *masks;     /* a row's words[1] shown, as
                                              bits; NULL: all */
} ngx_vantage_metrics_family_t;


static void ngx_vantage_metrics_digest(EVP_MD_CTX *md, ngx_str_t *words,
    ngx_uint_t n);
static ngx_int_t ngx_vantage_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_vantage_metrics_log_handler(ngx_http_request_t *r);
static ngx_int_t ngx_vantage_metrics_handler(ngx_http_request_t *r);
static void ngx_vantage_metrics_observe(ngx_uint_t cell,
    const uint64_t *bounds, ngx_uint_t n, uint64_t start);
static void ngx_vantage_metrics_gauge(ngx_uint_t cell, ngx_atomic_uint_t v);
static ngx_uint_t ngx_vantage_metrics_alive(ngx_atomic_uint_t pid);
static void ngx_vantage_metrics_render(ngx_vantage_metrics_out_t *o,
    ngx_vantage_metrics_t *m, ngx_atomic_uint_t *sum, ngx_int_t *gauges);
static void ngx_vantage_metrics_family(ngx_vantage_metrics_out_t *o,
    const char *name, const char *type, const char *help);
static void ngx_vantage_metrics_family_end(ngx_vantage_metrics_out_t *o);
static void ngx_vantage_metrics_sample(ngx_vantage_metrics_out_t *o,
    const char *name, ngx_vantage_metrics_label_t *labels, ngx_uint_t n,
    ngx_int_t value);
static void ngx_vantage_metrics_counters(ngx_vantage_metrics_out_t *o,
    ngx_vantage_metrics_family_t *f, ngx_atomic_uint_t *values);
static void ngx_vantage_metrics_histogram(ngx_vantage_metrics_out_t *o,
    const char *name, const char *help, ngx_str_t *bounds,
    ngx_atomic_uint_t *cells, ngx_uint_t n);
static void ngx_vantage_metrics_labels(ngx_vantage_metrics_out_t *o,
    ngx_vantage_metrics_label_t *labels, ngx_uint_t n, ngx_str_t *le);
static void ngx_vantage_metrics_write(ngx_vantage_metrics_out_t *o,
    const char *s, size_t len);
static void ngx_vantage_metrics_string(ngx_vantage_metrics_out_t *o,
    const char *s);
static void ngx_vantage_metrics_escaped(ngx_vantage_metrics_out_t *o,
    ngx_str_t *s);
static void ngx_vantage_metrics_number(ngx_vantage_metrics_out_t *o,
    ngx_int_t v);
static ngx_int_t ngx_vantage_metrics_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


ngx_atomic_t  *ngx_vantage_metrics_cells;
ngx_uint_t     ngx_vantage_metrics_shared;

static ngx_vantage_metrics_t  *ngx_vantage_metrics;
static ngx_uint_t              ngx_vantage_metrics_slot;


/* the words of each label, in the order of the indices of the header */

static ngx_str_t  ngx_vantage_metrics_classes[] = {
    ngx_string("1xx"), ngx_string("2xx"), ngx_string("3xx"),
    ngx_string("4xx"), ngx_string("5xx")
};

static ngx_str_t  ngx_vantage_metrics_methods[] = {
    ngx_string("jwt"), ngx_string("introspection"), ngx_string("api_key")
};

/* vc_auth_outcome_e */
static ngx_str_t  ngx_vantage_metrics_outcomes[] = {
    ngx_string("ok"), ngx_string("missing"), ngx_string("malformed"),
    ngx_string("bad_signature"), ngx_string("expired"),
    ngx_string("not_yet_valid"), ngx_string("unknown_key"),
    ngx_string("alg_not_allowed"), ngx_string("claim_refused"),
    ngx_string("inactive"), ngx_string("disabled"),
    ngx_string("unavailable"), ngx_string("error")
};

#define NGX_VANTAGE_M_BIT(o)  (1u << VC_AUTH_ ## o)

/* the outcomes each method can have: only they are shown */
static unsigned  ngx_vantage_metrics_method_outcomes[] = {
    /* jwt */
    NGX_VANTAGE_M_BIT(OK) | NGX_VANTAGE_M_BIT(MISSING)
    | NGX_VANTAGE_M_BIT(MALFORMED) | NGX_VANTAGE_M_BIT(BAD_SIGNATURE)
    | NGX_VANTAGE_M_BIT(EXPIRED) | NGX_VANTAGE_M_BIT(NOT_YET_VALID)
    | NGX_VANTAGE_M_BIT(UNKNOWN_KEY) | NGX_VANTAGE_M_BIT(ALG_NOT_ALLOWED)
    | NGX_VANTAGE_M_BIT(CLAIM_REFUSED) | NGX_VANTAGE_M_BIT(UNAVAILABLE)
    | NGX_VANTAGE_M_BIT(ERROR),

    /* introspection */
    NGX_VANTAGE_M_BIT(OK) | NGX_VANTAGE_M_BIT(MISSING)
    | NGX_VANTAGE_M_BIT(MALFORMED) | NGX_VANTAGE_M_BIT(EXPIRED)
    | NGX_VANTAGE_M_BIT(NOT_YET_VALID) | NGX_VANTAGE_M_BIT(CLAIM_REFUSED)
    | NGX_VANTAGE_M_BIT(INACTIVE) | NGX_VANTAGE_M_BIT(UNAVAILABLE)
    | NGX_VANTAGE_M_BIT(ERROR),

    /* api_key */
    NGX_VANTAGE_M_BIT(OK) | NGX_VANTAGE_M_BIT(MISSING)
    | NGX_VANTAGE_M_BIT(MALFORMED) | NGX_VANTAGE_M_BIT(UNKNOWN_KEY)
    | NGX_VANTAGE_M_BIT(EXPIRED) | NGX_VANTAGE_M_BIT(DISABLED)
    | NGX_VANTAGE_M_BIT(CLAIM_REFUSED) | NGX_VANTAGE_M_BIT(ERROR)
};

static ngx_str_t  ngx_vantage_metrics_cache_results[] = {
    ngx_string("hit"), ngx_string("miss")
};

static ngx_str_t  ngx_vantage_metrics_intro_results[] = {
    ngx_string("cache_hit"), ngx_string("active"), ngx_string("inactive"),
    ngx_string("error")
};

static ngx_str_t  ngx_vantage_metrics_decisions[] = {
    ngx_string("admitted"), ngx_string("limited"), ngx_string("dry_run"),
    ngx_string("fallback")
};

static ngx_str_t  ngx_vantage_metrics_redis_kinds[] = {
    ngx_string("connect"), ngx_string("timeout"), ngx_string("lost"),
    ngx_string("error_reply")
};

static ngx_str_t  ngx_vantage_metrics_dispatch_outcomes[] = {
    ngx_string("accepted"), ngx_string("replayed"),
    ngx_string("refused_4xx"), ngx_string("refused_5xx"),
    ngx_string("unavailable"), ngx_string("timeout")
};

static ngx_str_t  ngx_vantage_metrics_profiles[] = {
    ngx_string("docusign"), ngx_string("hubspot"), ngx_string("adobesign"),
    ngx_string("hmac")
};

static ngx_str_t  ngx_vantage_metrics_webhook_outcomes[] = {
    ngx_string("ok"), ngx_string("replayed"), ngx_string("missing"),
    ngx_string("malformed"), ngx_string("mismatch"), ngx_string("stale"),
    ngx_string("future"), ngx_string("error")
};

#define NGX_VANTAGE_M_WBIT(o)  (1u << NGX_VANTAGE_M_WEBHOOK_ ## o)

/* Adobe Sign signs nothing and stamps no time: a client id or not */
static unsigned  ngx_vantage_metrics_profile_outcomes[] = {
    (1u << NGX_VANTAGE_M_WEBHOOK_OUTCOMES) - 1,
    (1u << NGX_VANTAGE_M_WEBHOOK_OUTCOMES) - 1,
    NGX_VANTAGE_M_WBIT(OK) | NGX_VANTAGE_M_WBIT(REPLAYED)
    | NGX_VANTAGE_M_WBIT(MISSING) | NGX_VANTAGE_M_WBIT(MISMATCH)
    | NGX_VANTAGE_M_WBIT(ERROR),
    (1u << NGX_VANTAGE_M_WEBHOOK_OUTCOMES) - 1
};


/* the counter families; those of locations and sources get their words
   at render time */

static ngx_vantage_metrics_family_t  ngx_vantage_metrics_requests_family = {
    "vantage_http_requests_total",
    "Main requests by the location that ended them and the class of their "
    "status.",
    { "location", "class" },
    { NULL, ngx_vantage_metrics_classes },
    { 0, NGX_VANTAGE_M_CLASSES },
    NULL
};

static ngx_vantage_metrics_family_t  ngx_vantage_metrics_auth_family = {
    "vantage_auth_total",
    "Authentication decisions by method and outcome, one per main request.",
    { "method", "outcome" },
    { ngx_vantage_metrics_methods, ngx_vantage_metrics_outcomes },
    { NGX_VANTAGE_M_METHODS, VC_AUTH_NOUTCOMES },
    ngx_vantage_metrics_method_outcomes
};

static ngx_vantage_metrics_family_t  ngx_vantage_metrics_cache_family = {
    "vantage_jwt_cache_total",
    "Lookups in the verified-token cache.",
    { "result", NULL },
    { ngx_vantage_metrics_cache_results, NULL },
    { 2, 0 },
    NULL
};

static ngx_vantage_metrics_family_t  ngx_vantage_metrics_jwks_family = {
    "vantage_jwks_refresh_failures_total",
    "Key set fetches that brought no fresh set, counted by each nginx "
    "worker process.",
    { "source", NULL },
    { NULL, NULL },
    { 0, 0 },
    NULL
};

static ngx_vantage_metrics_family_t  ngx_vantage_metrics_intro_family = {
    "vantage_introspection_total",
    "Token introspections: answered from the cache, or asked of the "
    "provider.",
    { "result", NULL },
    { ngx_vantage_metrics_intro_results, NULL },
    { NGX_VANTAGE_M_INTRO_RESULTS, 0 },
    NULL
};

static ngx_vantage_metrics_family_t  ngx_vantage_metrics_rl_family = {
    "vantage_ratelimit_decisions_total",
    "Rate-limit decisions, one per limited main request.",
    { "decision", NULL },
    { ngx_vantage_metrics_decisions, NULL },
    { NGX_VANTAGE_M_RL_DECISIONS, 0 },
    NULL
};

static ngx_vantage_metrics_family_t  ngx_vantage_metrics_redis_family = {
    "vantage_redis_errors_total",
    "Redis failures by kind.",
    { "kind", NULL },
    { ngx_vantage_metrics_redis_kinds, NULL },
    { NGX_VANTAGE_M_REDIS_KINDS, 0 },
    NULL
};

static ngx_vantage_metrics_family_t  ngx_vantage_metrics_dispatch_family = {
    "vantage_dispatch_total",
    "Jobs handed to the worker, by outcome.",
    { "outcome", NULL },
    { ngx_vantage_metrics_dispatch_outcomes, NULL },
    { NGX_VANTAGE_M_DISPATCH_OUTCOMES, 0 },
    NULL
};

static ngx_vantage_metrics_family_t  ngx_vantage_metrics_webhook_family = {
    "vantage_webhook_verifications_total",
    "Inbound webhooks checked, by profile and outcome.",
    { "profile", "outcome" },
    { ngx_vantage_metrics_profiles, ngx_vantage_metrics_webhook_outcomes },
    { NGX_VANTAGE_M_WEBHOOK_PROFILES, NGX_VANTAGE_M_WEBHOOK_OUTCOMES },
    ngx_vantage_metrics_profile_outcomes
};


/* histograms: bounds in nanoseconds, and as written */

static uint64_t  ngx_vantage_metrics_redis_ns[] = {
    100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
    25000000, 50000000, 100000000, 250000000, 500000000, 1000000000
};

static ngx_str_t  ngx_vantage_metrics_redis_le[] = {
    ngx_string("0.0001"), ngx_string("0.00025"), ngx_string("0.0005"),
    ngx_string("0.001"), ngx_string("0.0025"), ngx_string("0.005"),
    ngx_string("0.01"), ngx_string("0.025"), ngx_string("0.05"),
    ngx_string("0.1"), ngx_string("0.25"), ngx_string("0.5"),
    ngx_string("1"), ngx_string("+Inf")
};

static uint64_t  ngx_vantage_metrics_dispatch_ns[] = {
    500000, 1000000, 2500000, 5000000, 10000000, 25000000, 50000000,
    100000000, 250000000, 500000000, 1000000000, 2500000000ULL,
    5000000000ULL, 10000000000ULL
};

static ngx_str_t  ngx_vantage_metrics_dispatch_le[] = {
    ngx_string("0.0005"), ngx_string("0.001"), ngx_string("0.0025"),
    ngx_string("0.005"), ngx_string("0.01"), ngx_string("0.025"),
    ngx_string("0.05"), ngx_string("0.1"), ngx_string("0.25"),
    ngx_string("0.5"), ngx_string("1"), ngx_string("2.5"), ngx_string("5"),
    ngx_string("10"), ngx_string("+Inf")
};


static ngx_http_variable_t  ngx_vantage_metrics_vars[] = {

    { ngx_string("vantage_auth_method"), NULL,
      ngx_vantage_metrics_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vantage_auth_outcome"), NULL,
      ngx_vantage_metrics_variable, 1,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vantage_rate_limit"), NULL,
      ngx_vantage_metrics_variable, 2,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vantage_job_id"), NULL,
      ngx_vantage_metrics_variable, 3,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_vantage_metrics_allow = ngx_string("GET, HEAD");


/*
 * vantage_metrics [prometheus | json]: this location answers with the
 * metrics.  A content handler, as vantage_dispatch is: clcf->handler.
 */
char *
ngx_vantage_metrics_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t *vlcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (vlcf->metrics != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    vlcf->metrics = NGX_VANTAGE_METRICS_PROMETHEUS;

    if (cf->args->nelts == 2) {

        if (ngx_strcmp(value[1].data, "json") == 0) {
            vlcf->metrics = NGX_VANTAGE_METRICS_JSON;

        } else if (ngx_strcmp(value[1].data, "prometheus") != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"vantage_metrics\": invalid format \"%V\", "
                               "use prometheus or json", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler != NULL) {
        return "conflicts with another handler of the location (such as "
               "proxy_pass or vantage_dispatch)";
    }

    clcf->handler = ngx_vantage_metrics_handler;

    return NGX_CONF_OK;
}


/*
 * Each location gets the index of its name: the label of its requests.
 * Runs for every block nginx merges, the server level and "if" blocks
 * too; cf->ctx's loc_conf is the block's own while it is merged.  Locations
 * of the same name, in any server, share the label.
 */
char *
ngx_vantage_metrics_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf)
{
    ngx_str_t                 *name;
    ngx_uint_t                 i;
    ngx_vantage_main_conf_t   *vmcf;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    /* as the content handler it sets, vantage_metrics is not inherited */

    if (conf->metrics == NGX_CONF_UNSET_UINT) {
        conf->metrics = 0;

    } else if (clcf->handler != ngx_vantage_metrics_handler) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_metrics\" conflicts with another "
                           "handler of location \"%V\" (such as proxy_pass "
                           "or vantage_dispatch)", &clcf->name);
        return NGX_CONF_ERROR;
    }

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_vantage_module);

    if (vmcf->metrics_locations == NULL) {
        vmcf->metrics_locations = ngx_array_create(cf->pool, 16,
                                                   sizeof(ngx_str_t));
        if (vmcf->metrics_locations == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    name = vmcf->metrics_locations->elts;

    for (i = 0; i < vmcf->metrics_locations->nelts; i++) {
        /* "" (no location) may have no data: strncmp() must not see it */
        if (name[i].len == clcf->name.len
            && (clcf->name.len == 0
                || ngx_strncmp(name[i].data, clcf->name.data,
                               clcf->name.len) == 0))
        {
            conf->metrics_location = i;
            return NGX_CONF_OK;
        }
    }

    name = ngx_array_push(vmcf->metrics_locations);
    if (name == NULL) {
        return NGX_CONF_ERROR;
    }

    *name = clcf->name;
    conf->metrics_location = vmcf->metrics_locations->nelts - 1;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_vantage_metrics_add_variables(ngx_conf_t *cf)
{
    return ngx_vantage_add_variables(cf, ngx_vantage_metrics_vars);
}


ngx_int_t
ngx_vantage_metrics_init(ngx_conf_t *cf)
{
    u_char                     *p;
    size_t                      size;
    uint64_t                    n[4];
    ngx_str_t                   name, *loc;
    ngx_uint_t                  i, workers;
    EVP_MD_CTX                 *md;
    ngx_shm_zone_t             *shm_zone;
    ngx_core_conf_t            *ccf;
    ngx_http_handler_pt        *h;
    ngx_vantage_idp_t         **idpp;
    ngx_vantage_metrics_t      *m;
    ngx_vantage_main_conf_t    *vmcf;
    ngx_http_core_main_conf_t  *cmcf;

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_vantage_module);

    ngx_conf_init_value(vmcf->metrics_collect, 1);

    if (vmcf->metrics_collect) {
        cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

        h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        *h = ngx_vantage_metrics_log_handler;
    }

    m = ngx_pcalloc(cf->pool, sizeof(ngx_vantage_metrics_t));
    if (m == NULL) {
        return NGX_ERROR;
    }

    /* a server without locations merges none: "" must be there */

    if (vmcf->metrics_locations == NULL) {
        vmcf->metrics_locations = ngx_array_create(cf->pool, 1,
                                                   sizeof(ngx_str_t));
        if (vmcf->metrics_locations == NULL) {
            return NGX_ERROR;
        }

        loc = ngx_array_push(vmcf->metrics_locations);
        if (loc == NULL) {
            return NGX_ERROR;
        }

        ngx_str_null(loc);
    }

    m->locations = vmcf->metrics_locations->elts;
    m->nlocations = vmcf->metrics_locations->nelts;

    /* a key set's source: its URL without the query, which may hold a key */

    m->nsources = vmcf->idps.nelts;
    m->sources = ngx_pcalloc(cf->pool, (m->nsources + 1) * sizeof(ngx_str_t));
    if (m->sources == NULL) {
        return NGX_ERROR;
    }

    idpp = vmcf->idps.elts;

    for (i = 0; i < m->nsources; i++) {
        m->sources[i] = idpp[i]->url;

        p = ngx_strlchr(m->sources[i].data,
                        m->sources[i].data + m->sources[i].len, '?');
        if (p) {
            m->sources[i].len = p - m->sources[i].data;
        }

        p = ngx_strlchr(m->sources[i].data,
                        m->sources[i].data + m->sources[i].len, '#');
        if (p) {
            m->sources[i].len = p - m->sources[i].data;
        }
    }

    /*
     * worker_processes may come after the http block, and "auto" is
     * resolved already: when it is unknown here, one per CPU
     */

    ccf = (ngx_core_conf_t *) ngx_get_conf(cf->cycle->conf_ctx,
                                           ngx_core_module);
    workers = (ccf->worker_processes == NGX_CONF_UNSET)
              ? (ngx_uint_t) ngx_ncpu : (ngx_uint_t) ccf->worker_processes;

    m->nslots = 2 * ngx_max(workers, 1) + 2;

    m->jwks_failures = NGX_VANTAGE_M_REQUESTS
                       + m->nlocations * NGX_VANTAGE_M_CLASSES;
    m->ncounters = m->jwks_failures + m->nsources;
    m->breaker = m->ncounters;
    m->jwks_fetched = m->breaker + 1;
    m->ncells = m->jwks_fetched + m->nsources;
    m->stride = ngx_align(m->ncells * sizeof(ngx_atomic_t),
                          NGX_VANTAGE_METRICS_ALIGN)
                / sizeof(ngx_atomic_t);

    m->size = NGX_VANTAGE_METRICS_ALIGN
              + ngx_align(m->nslots * sizeof(ngx_atomic_t),
                          NGX_VANTAGE_METRICS_ALIGN)
              + (m->nslots + 1) * m->stride * sizeof(ngx_atomic_t);

    /* the digest: every word that labels a cell, in order */

    md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestInit_ex(md, ngx_vantage_sha256(), NULL) != 1)
    {
        EVP_MD_CTX_free(md);
        return NGX_ERROR;
    }

    n[0] = 1;                               /* the layout's version */
    n[1] = m->nslots;
    n[2] = m->ncells;
    n[3] = VC_AUTH_NOUTCOMES;
    EVP_DigestUpdate(md, n, sizeof(n));

    ngx_vantage_metrics_digest(md, m->locations, m->nlocations);
    ngx_vantage_metrics_digest(md, m->sources, m->nsources);
    ngx_vantage_metrics_digest(md, ngx_vantage_metrics_classes,
                               NGX_VANTAGE_M_CLASSES);
    ngx_vantage_metrics_digest(md, ngx_vantage_metrics_methods,
                               NGX_VANTAGE_M_METHODS);
    ngx_vantage_metrics_digest(md, ngx_vantage_metrics_outcomes,
                               VC_AUTH_NOUTCOMES);
    ngx_vantage_metrics_digest(md, ngx_vantage_metrics_intro_results,
                               NGX_VANTAGE_M_INTRO_RESULTS);
    ngx_vantage_metrics_digest(md, ngx_vantage_metrics_decisions,
                               NGX_VANTAGE_M_RL_DECISIONS);
    ngx_vantage_metrics_digest(md, ngx_vantage_metrics_redis_kinds,
                               NGX_VANTAGE_M_REDIS_KINDS);
    ngx_vantage_metrics_digest(md, ngx_vantage_metrics_redis_le,
                               NGX_VANTAGE_M_REDIS_BOUNDS + 1);
    ngx_vantage_metrics_digest(md, ngx_vantage_metrics_dispatch_outcomes,
                               NGX_VANTAGE_M_DISPATCH_OUTCOMES);
    ngx_vantage_metrics_digest(md, ngx_vantage_metrics_dispatch_le,
                               NGX_VANTAGE_M_DISPATCH_BOUNDS + 1);
    ngx_vantage_metrics_digest(md, ngx_vantage_metrics_profiles,
                               NGX_VANTAGE_M_WEBHOOK_PROFILES);
    ngx_vantage_metrics_digest(md, ngx_vantage_metrics_webhook_outcomes,
                               NGX_VANTAGE_M_WEBHOOK_OUTCOMES);

    if (EVP_DigestFinal_ex(md, m->digest, NULL) != 1) {
        EVP_MD_CTX_free(md);
        return NGX_ERROR;
    }

    EVP_MD_CTX_free(md);

    name.len = sizeof("vantage_metrics_") - 1 + 16;
    name.data = ngx_pnalloc(cf->pool, name.len);
    if (name.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(name.data, "vantage_metrics_",
                   sizeof("vantage_metrics_") - 1);
    ngx_hex_dump(p, m->digest, 8);

    /* the slab allocator's page map and pools, beside the block */
    size = ngx_align(m->size, ngx_pagesize) + 8 * ngx_pagesize;

    shm_zone = ngx_shared_memory_add(cf, &name, size, &ngx_vantage_module);
    if (shm_zone == NULL) {
        return NGX_ERROR;
    }

    shm_zone->init = ngx_vantage_metrics_init_zone;
    shm_zone->data = m;

    vmcf->metrics = m;

    return NGX_OK;
}


/* each word with its NUL, and how many: no two lists hash alike */
static void
ngx_vantage_metrics_digest(EVP_MD_CTX *md, ngx_str_t *words, ngx_uint_t n)
{
    uint64_t    count;
    ngx_uint_t  i;

    count = n;
    EVP_DigestUpdate(md, &count, sizeof(uint64_t));

    for (i = 0; i < n; i++) {
        EVP_DigestUpdate(md, words[i].data, words[i].len);
        EVP_DigestUpdate(md, "", 1);
    }
}


static ngx_int_t
ngx_vantage_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_vantage_metrics_t  *om = data;

    u_char                    *p;
    ngx_slab_pool_t           *shpool;
    ngx_vantage_metrics_t     *m;
    ngx_vantage_metrics_sh_t  *sh;

    m = shm_zone->data;

    if (om) {
        /* a reload that kept the layout: the name says so, this checks */
        m->sh = om->sh;

        if (ngx_memcmp(m->sh->digest, m->digest, 32) == 0
            && m->sh->nslots == m->nslots)
        {
            return NGX_OK;
        }

        if (om->size != m->size) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "vantage metrics: zone \"%V\" holds another "
                          "layout", &shm_zone->shm.name);
            return NGX_ERROR;
        }

        ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                      "vantage metrics: zone \"%V\" holds another layout, "
                      "counting from zero", &shm_zone->shm.name);

        sh = m->sh;
        goto stamp;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        m->sh = shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_alloc(shpool, sizeof(ngx_vantage_metrics_sh_t) + m->size);
    if (sh == NULL) {
        return NGX_ERROR;
    }

    shpool->data = sh;
    m->sh = sh;

stamp:

    /* the owners and the slots, each on lines of its own */

    p = ngx_align_ptr((u_char *) sh + sizeof(ngx_vantage_metrics_sh_t),
                      NGX_VANTAGE_METRICS_ALIGN);

    ngx_memzero(p, m->size - NGX_VANTAGE_METRICS_ALIGN);

    sh->owners = (ngx_atomic_t *) p;
    sh->cells = (ngx_atomic_t *) (p + ngx_align(m->nslots
                                                * sizeof(ngx_atomic_t),
                                                NGX_VANTAGE_METRICS_ALIGN));
    sh->nslots = m->nslots;
    sh->stride = m->stride;
    ngx_memcpy(sh->digest, m->digest, 32);

    return NGX_OK;
}


/*
 * A worker process takes a slot: a free one (never owned, given back, or
 * its owner dead), else the shared one.  Its gauges are its own state, so
 * they start again from zero; its counters go on from where they are.
 */
ngx_int_t
ngx_vantage_metrics_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                 i;
    ngx_atomic_t              *cells;
    ngx_atomic_uint_t          pid;
    ngx_vantage_metrics_t     *m;
    ngx_vantage_main_conf_t   *vmcf;
    ngx_vantage_metrics_sh_t  *sh;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    vmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_vantage_module);

    if (vmcf == NULL || vmcf->metrics == NULL || !vmcf->metrics_collect) {
        return NGX_OK;
    }

    m = vmcf->metrics;
    sh = m->sh;

    for (i = 0; i < sh->nslots; i++) {
        pid = sh->owners[i];

        if ((pid == 0 || !ngx_vantage_metrics_alive(pid))
            && ngx_atomic_cmp_set(&sh->owners[i], pid, (ngx_atomic_uint_t)
                                                       ngx_pid))
        {
            break;
        }
    }

    if (i == sh->nslots) {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "vantage metrics: no free slot among %ui, this "
                      "process counts with atomic adds", sh->nslots);

        ngx_vantage_metrics_shared = 1;
    }

    cells = sh->cells + i * sh->stride;

    if (!ngx_vantage_metrics_shared) {
        ngx_memzero((void *) (cells + m->breaker),
                    (m->ncells - m->breaker) * sizeof(ngx_atomic_t));
    }

    ngx_vantage_metrics = m;
    ngx_vantage_metrics_slot = i;

    ngx_memory_barrier();

    ngx_vantage_metrics_cells = cells;

    return NGX_OK;
}


/* a graceful exit gives the slot back; a crash leaves a dead owner */
void
ngx_vantage_metrics_exit_process(ngx_cycle_t *cycle)
{
    ngx_atomic_t              *cells;
    ngx_vantage_metrics_t     *m;
    ngx_vantage_metrics_sh_t  *sh;

    m = ngx_vantage_metrics;

    if (m == NULL || ngx_vantage_metrics_cells == NULL) {
        return;
    }

    cells = ngx_vantage_metrics_cells;
    ngx_vantage_metrics_cells = NULL;
    sh = m->sh;

    if (ngx_vantage_metrics_shared) {
        return;
    }

    ngx_memzero((void *) (cells + m->breaker),
                (m->ncells - m->breaker) * sizeof(ngx_atomic_t));

    ngx_memory_barrier();

    (void) ngx_atomic_cmp_set(&sh->owners[ngx_vantage_metrics_slot],
                              (ngx_atomic_uint_t) ngx_pid, 0);
}


static ngx_uint_t
ngx_vantage_metrics_alive(ngx_atomic_uint_t pid)
{
    /* EPERM: alive, another user's */
    return kill((ngx_pid_t) pid, 0) == 0 || ngx_errno == NGX_EPERM;
}


uint64_t
ngx_vantage_metrics_now(void)
{
    struct timespec  ts;

    if (ngx_vantage_metrics_cells == NULL) {
        return 0;
    }

    /* a vDSO call: no system call; ngx_current_msec is too coarse */
    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000000 + (uint64_t) ts.tv_nsec;
}


/*
 * One sample of a histogram at cell: the bucket of the time since start,
 * and the sum in nanoseconds.
 */
static void
ngx_vantage_metrics_observe(ngx_uint_t cell, const uint64_t *bounds,
    ngx_uint_t n, uint64_t start)
{
    uint64_t    ns;
    ngx_uint_t  i;

    if (start == 0 || ngx_vantage_metrics_cells == NULL) {
        return;
    }

    ns = ngx_vantage_metrics_now() - start;

    for (i = 0; i < n && ns > bounds[i]; i++) {
        /* void */
    }

    ngx_vantage_metrics_inc(cell + i);

    if (ngx_vantage_metrics_shared) {
        (void) ngx_atomic_fetch_add(&ngx_vantage_metrics_cells[cell + n + 1],
                                    (ngx_atomic_int_t) ns);
        return;
    }

    ngx_vantage_metrics_cells[cell + n + 1] += ns;
}


/* a gauge of this process's own; a process in the shared slot has none */
static void
ngx_vantage_metrics_gauge(ngx_uint_t cell, ngx_atomic_uint_t v)
{
    if (ngx_vantage_metrics_cells != NULL && !ngx_vantage_metrics_shared) {
        ngx_vantage_metrics_cells[cell] = v;
    }
}


void
ngx_vantage_metrics_auth(ngx_http_request_t *r, ngx_uint_t method,
    vc_auth_outcome_e outcome)
{
    ngx_vantage_ctx_t  *ctx;

    ctx = ngx_vantage_get_ctx(r->main);

    if (ctx != NULL) {
        ctx->auth_method = method + 1;
        ctx->auth_outcome = outcome;
    }
}


void
ngx_vantage_metrics_redis_rtt(uint64_t start)
{
    ngx_vantage_metrics_observe(NGX_VANTAGE_M_REDIS_RTT,
                                ngx_vantage_metrics_redis_ns,
                                NGX_VANTAGE_M_REDIS_BOUNDS, start);
}


void
ngx_vantage_metrics_redis_breaker(ngx_uint_t open)
{
    if (ngx_vantage_metrics != NULL) {
        ngx_vantage_metrics_gauge(ngx_vantage_metrics->breaker, open);
    }
}


void
ngx_vantage_metrics_dispatch(uint64_t start, ngx_uint_t outcome,
    ngx_vantage_worker_reply_t *rep)
{
    ngx_uint_t  o;

    if (ngx_vantage_metrics_cells == NULL) {
        return;
    }

    if (outcome == NGX_VANTAGE_WORKER_TIMEOUT) {
        o = NGX_VANTAGE_M_DISPATCH_TIMEOUT;

    } else if (outcome != NGX_VANTAGE_WORKER_REPLY || rep == NULL) {
        o = NGX_VANTAGE_M_DISPATCH_UNAVAILABLE;

    } else if ((rep->status == NGX_HTTP_ACCEPTED
                || rep->status == NGX_HTTP_OK)
               && rep->job_id.len)
    {
        o = rep->replayed ? NGX_VANTAGE_M_DISPATCH_REPLAYED
                          : NGX_VANTAGE_M_DISPATCH_ACCEPTED;

    } else if (rep->status >= 400 && rep->status < 500) {
        o = NGX_VANTAGE_M_DISPATCH_REFUSED_4XX;

    } else if (rep->status >= 500 && rep->status < 600) {
        o = NGX_VANTAGE_M_DISPATCH_REFUSED_5XX;

    } else {
        /* an answer the module cannot use */
        o = NGX_VANTAGE_M_DISPATCH_UNAVAILABLE;
    }

    ngx_vantage_metrics_inc(NGX_VANTAGE_M_DISPATCH + o);

    ngx_vantage_metrics_observe(NGX_VANTAGE_M_DISPATCH_TIME,
                                ngx_vantage_metrics_dispatch_ns,
                                NGX_VANTAGE_M_DISPATCH_BOUNDS, start);
}


void
ngx_vantage_metrics_jwks(ngx_uint_t index, time_t fetched, ngx_uint_t failed)
{
    ngx_vantage_metrics_t  *m;

    m = ngx_vantage_metrics;

    if (m == NULL || ngx_vantage_metrics_cells == NULL
        || index >= m->nsources)
    {
        return;
    }

    if (failed) {
        ngx_vantage_metrics_inc(m->jwks_failures + index);
    }

    ngx_vantage_metrics_gauge(m->jwks_fetched + index,
                              (ngx_atomic_uint_t) ngx_max(fetched, 0));
}


/*
 * Once per main request, whatever ended it: its location and status
 * class, and the facts its context holds.
 */
static ngx_int_t
ngx_vantage_metrics_log_handler(ngx_http_request_t *r)
{
    ngx_uint_t               status;
    ngx_vantage_ctx_t       *ctx;
    ngx_vantage_loc_conf_t  *vlcf;

    if (r != r->main || ngx_vantage_metrics_cells == NULL) {
        return NGX_OK;
    }

    /* as $status has it; a request that got none is not counted here */

    status = r->err_status ? r->err_status : r->headers_out.status;

    if (status >= 100 && status < 600) {
        vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);

        ngx_vantage_metrics_inc(NGX_VANTAGE_M_REQUESTS
                                + vlcf->metrics_location
                                  * NGX_VANTAGE_M_CLASSES
                                + status / 100 - 1);
    }

    ctx = ngx_vantage_get_ctx(r);

    if (ctx == NULL) {
        return NGX_OK;
    }

    if (ctx->auth_method) {
        ngx_vantage_metrics_inc(NGX_VANTAGE_M_AUTH
                                + (ctx->auth_method - 1) * VC_AUTH_NOUTCOMES
                                + ctx->auth_outcome);
    }

    if (ctx->rl_decision) {
        ngx_vantage_metrics_inc(NGX_VANTAGE_M_RL + ctx->rl_decision - 1);
    }

    return NGX_OK;
}


/* the access log's view of the same facts */
static ngx_int_t
ngx_vantage_metrics_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t          *s;
    ngx_vantage_ctx_t  *ctx;

    ctx = ngx_vantage_get_ctx(r->main);
    s = NULL;

    if (ctx != NULL) {
        switch (data) {

        case 0:
            if (ctx->auth_method) {
                s = &ngx_vantage_metrics_methods[ctx->auth_method - 1];
            }
            break;

        case 1:
            if (ctx->auth_method) {
                s = &ngx_vantage_metrics_outcomes[ctx->auth_outcome];
            }
            break;

        case 2:
            if (ctx->rl_decision) {
                s = &ngx_vantage_metrics_decisions[ctx->rl_decision - 1];
            }
            break;

        default: /* 3 */
            if (ctx->job_id.len) {
                s = &ctx->job_id;
            }
            break;
        }
    }

    if (s == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = s->data;

    return NGX_OK;
}


static ngx_int_t
ngx_vantage_metrics_handler(ngx_http_request_t *r)
{
    ngx_int_t                   rc, *gauges;
    ngx_str_t                   body, type;
    ngx_uint_t                  i, j;
    ngx_atomic_t               *cells;
    ngx_atomic_uint_t          *sum, pid;
    ngx_vantage_metrics_t      *m;
    ngx_vantage_loc_conf_t     *vlcf;
    ngx_vantage_main_conf_t    *vmcf;
    ngx_vantage_metrics_sh_t   *sh;
    ngx_vantage_metrics_out_t   o;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        if (ngx_vantage_add_header(r, "Allow", sizeof("Allow") - 1,
                                   ngx_vantage_metrics_allow.data,
                                   ngx_vantage_metrics_allow.len)
            != NGX_OK
            || ngx_vantage_json_error(r->pool, "method_not_allowed",
                                      "metrics are read with GET or HEAD",
                                      &body)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_vantage_send_nostore(r, NULL, NGX_HTTP_NOT_ALLOWED,
                                        &ngx_vantage_json_type, &body);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);
    vmcf = ngx_http_get_module_main_conf(r, ngx_vantage_module);
    m = vmcf->metrics;
    sh = m->sh;

    sum = ngx_pcalloc(r->pool, m->ncounters * sizeof(ngx_atomic_uint_t)
                               + (m->ncells - m->ncounters)
                                 * sizeof(ngx_int_t));
    if (sum == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    gauges = (ngx_int_t *) (sum + m->ncounters);

    /* the breaker: open in any process; a key set: the oldest in use */

    for (j = m->breaker; j < m->ncells; j++) {
        gauges[j - m->ncounters] = (j == m->breaker) ? 0 : -1;
    }

    for (i = 0; i <= sh->nslots; i++) {
        cells = sh->cells + i * sh->stride;

        for (j = 0; j < m->ncounters; j++) {
            sum[j] += cells[j];
        }

        if (i == sh->nslots) {
            break;
        }

        pid = sh->owners[i];

        if (pid == 0 || !ngx_vantage_metrics_alive(pid)) {
            continue;
        }

        if (cells[m->breaker]) {
            gauges[0] = 1;
        }

        for (j = m->jwks_fetched; j < m->ncells; j++) {
            if (cells[j] && (gauges[j - m->ncounters] == -1
                             || (ngx_int_t) cells[j]
                                < gauges[j - m->ncounters]))
            {
                gauges[j - m->ncounters] = (ngx_int_t) cells[j];
            }
        }
    }

    for (j = m->jwks_fetched; j < m->ncells; j++) {
        if (gauges[j - m->ncounters] != -1) {
            gauges[j - m->ncounters] = ngx_max(ngx_time()
                                               - gauges[j - m->ncounters],
                                               0);
        }
    }

    ngx_memzero(&o, sizeof(ngx_vantage_metrics_out_t));
    o.format = vlcf->metrics;

    ngx_vantage_metrics_render(&o, m, sum, gauges);

    body.data = ngx_pnalloc(r->pool, o.len);
    if (body.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body.len = o.len;
    o.pos = body.data;
    o.len = 0;
    o.families = 0;

    ngx_vantage_metrics_render(&o, m, sum, gauges);

    if (o.format == NGX_VANTAGE_METRICS_JSON) {
        type = ngx_vantage_json_type;

    } else {
        ngx_str_set(&type, NGX_VANTAGE_METRICS_TEXT_TYPE);
    }

    return ngx_vantage_send_nostore(r, NULL, NGX_HTTP_OK, &type, &body);
}


/* every family, in the contract's order; gauges from m->ncounters on */
static void
ngx_vantage_metrics_render(ngx_vantage_metrics_out_t *o,
    ngx_vantage_metrics_t *m, ngx_atomic_uint_t *sum, ngx_int_t *gauges)
{
    ngx_uint_t                     i;
    ngx_vantage_metrics_label_t    l;
    ngx_vantage_metrics_family_t   f;

    if (o->format == NGX_VANTAGE_METRICS_JSON) {
        ngx_vantage_metrics_string(o, "{\"metrics\":[");
    }

    f = ngx_vantage_metrics_requests_family;
    f.words[0] = m->locations;
    f.n[0] = m->nlocations;
    ngx_vantage_metrics_counters(o, &f, sum + NGX_VANTAGE_M_REQUESTS);

    ngx_vantage_metrics_counters(o, &ngx_vantage_metrics_auth_family,
                                 sum + NGX_VANTAGE_M_AUTH);
    ngx_vantage_metrics_counters(o, &ngx_vantage_metrics_cache_family,
                                 sum + NGX_VANTAGE_M_JWT_CACHE);

    ngx_vantage_metrics_family(o, "vantage_jwks_age_seconds", "gauge",
                               "Seconds since the worker fetched the key "
                               "set in use, the oldest in any nginx worker "
                               "process; none before the first set.");

    l.name = "source";

    for (i = 0; i < m->nsources; i++) {
        if (gauges[m->jwks_fetched - m->ncounters + i] != -1) {
            l.value = &m->sources[i];
            ngx_vantage_metrics_sample(o, "vantage_jwks_age_seconds", &l, 1,
                                 gauges[m->jwks_fetched - m->ncounters + i]);
        }
    }

    ngx_vantage_metrics_family_end(o);

    f = ngx_vantage_metrics_jwks_family;
    f.words[0] = m->sources;
    f.n[0] = m->nsources;
    ngx_vantage_metrics_counters(o, &f, sum + m->jwks_failures);

    ngx_vantage_metrics_counters(o, &ngx_vantage_metrics_intro_family,
                                 sum + NGX_VANTAGE_M_INTRO);
    ngx_vantage_metrics_counters(o, &ngx_vantage_metrics_rl_family,
                                 sum + NGX_VANTAGE_M_RL);

    ngx_vantage_metrics_histogram(o, "vantage_redis_rtt_seconds",
                                  "Time from sending a Redis call to its "
                                  "reply.",
                                  ngx_vantage_metrics_redis_le,
                                  sum + NGX_VANTAGE_M_REDIS_RTT,
                                  NGX_VANTAGE_M_REDIS_BOUNDS);

    ngx_vantage_metrics_counters(o, &ngx_vantage_metrics_redis_family,
                                 sum + NGX_VANTAGE_M_REDIS_ERRORS);

    ngx_vantage_metrics_family(o, "vantage_redis_breaker_state", "gauge",
                               "1 while the circuit breaker to Redis is "
                               "open in any nginx worker process, else 0.");
    ngx_vantage_metrics_sample(o, "vantage_redis_breaker_state", NULL, 0,
                               gauges[0]);
    ngx_vantage_metrics_family_end(o);

    ngx_vantage_metrics_histogram(o, "vantage_dispatch_seconds",
                                  "Time from handing a job to the worker to "
                                  "its answer.",
                                  ngx_vantage_metrics_dispatch_le,
                                  sum + NGX_VANTAGE_M_DISPATCH_TIME,
                                  NGX_VANTAGE_M_DISPATCH_BOUNDS);

    ngx_vantage_metrics_counters(o, &ngx_vantage_metrics_dispatch_family,
                                 sum + NGX_VANTAGE_M_DISPATCH);
    ngx_vantage_metrics_counters(o, &ngx_vantage_metrics_webhook_family,
                                 sum + NGX_VANTAGE_M_WEBHOOK);

    if (o->format == NGX_VANTAGE_METRICS_JSON) {
        ngx_vantage_metrics_string(o, "]}\n");
    }
}


/*
 * A family of counters with one or two labels: a sample for each word of
 * the first list (and of the second), those masks allow, from values in
 * the same order.
 */
static void
ngx_vantage_metrics_counters(ngx_vantage_metrics_out_t *o,
    ngx_vantage_metrics_family_t *f, ngx_atomic_uint_t *values)
{
    ngx_uint_t                    i, j, n1;
    ngx_vantage_metrics_label_t   l[2];

    ngx_vantage_metrics_family(o, f->name, "counter", f->help);

    l[0].name = f->label[0];
    l[1].name = f->label[1];
    n1 = f->n[1] ? f->n[1] : 1;

    for (i = 0; i < f->n[0]; i++) {
        for (j = 0; j < n1; j++) {
            if (f->masks && !(f->masks[i] & (1u << j))) {
                continue;
            }

            l[0].value = &f->words[0][i];
            l[1].value = f->n[1] ? &f->words[1][j] : NULL;

            ngx_vantage_metrics_sample(o, f->name, l, f->n[1] ? 2 : 1,
                                       values[i * n1 + j]);
        }
    }

    ngx_vantage_metrics_family_end(o);
}


static void
ngx_vantage_metrics_family(ngx_vantage_metrics_out_t *o, const char *name,
    const char *type, const char *help)
{
    o->samples = 0;

    if (o->format == NGX_VANTAGE_METRICS_JSON) {
        ngx_vantage_metrics_string(o, o->families++ ? ",\n{\"name\":\""
                                                    : "\n{\"name\":\"");
        ngx_vantage_metrics_string(o, name);
        ngx_vantage_metrics_string(o, "\",\"type\":\"");
        ngx_vantage_metrics_string(o, type);
        ngx_vantage_metrics_string(o, "\",\"help\":\"");
        ngx_vantage_metrics_string(o, help);
        ngx_vantage_metrics_string(o, "\",\"samples\":[");
        return;
    }

    /* the texts hold no backslash or newline: nothing to escape */

    ngx_vantage_metrics_string(o, "# HELP ");
    ngx_vantage_metrics_string(o, name);
    ngx_vantage_metrics_string(o, " ");
    ngx_vantage_metrics_string(o, help);
    ngx_vantage_metrics_string(o, "\n# TYPE ");
    ngx_vantage_metrics_string(o, name);
    ngx_vantage_metrics_string(o, " ");
    ngx_vantage_metrics_string(o, type);
    ngx_vantage_metrics_string(o, "\n");
}


static void
ngx_vantage_metrics_family_end(ngx_vantage_metrics_out_t *o)
{
    if (o->format == NGX_VANTAGE_METRICS_JSON) {
        ngx_vantage_metrics_string(o, "]}");
    }
}


static void
ngx_vantage_metrics_sample(ngx_vantage_metrics_out_t *o, const char *name,
    ngx_vantage_metrics_label_t *labels, ngx_uint_t n, ngx_int_t value)
{
    if (o->format == NGX_VANTAGE_METRICS_JSON) {
        ngx_vantage_metrics_string(o, o->samples++ ? ",{" : "{");
        ngx_vantage_metrics_labels(o, labels, n, NULL);
        ngx_vantage_metrics_string(o, ",\"value\":");
        ngx_vantage_metrics_number(o, value);
        ngx_vantage_metrics_string(o, "}");
        return;
    }

    ngx_vantage_metrics_string(o, name);
    ngx_vantage_metrics_labels(o, labels, n, NULL);
    ngx_vantage_metrics_string(o, " ");
    ngx_vantage_metrics_number(o, value);
    ngx_vantage_metrics_string(o, "\n");
}


/*
 * A family of one histogram without labels, from its cells: n + 1 buckets
 * (not cumulative) and the sum in nanoseconds; bounds has n + 1 words.
 */
static void
ngx_vantage_metrics_histogram(ngx_vantage_metrics_out_t *o, const char *name,
    const char *help, ngx_str_t *bounds, ngx_atomic_uint_t *cells,
    ngx_uint_t n)
{
    u_char             buf[2 * NGX_ATOMIC_T_LEN + 2], *p;
    ngx_uint_t         i;
    ngx_atomic_uint_t  count, total;

    ngx_vantage_metrics_family(o, name, "histogram", help);

    total = 0;

    for (i = 0; i <= n; i++) {
        total += cells[i];
    }

    p = ngx_sprintf(buf, "%uA.%09uA", cells[n + 1] / 1000000000,
                    cells[n + 1] % 1000000000);

    if (o->format == NGX_VANTAGE_METRICS_JSON) {
        ngx_vantage_metrics_string(o, "{\"labels\":{},\"count\":");
        ngx_vantage_metrics_number(o, total);
        ngx_vantage_metrics_string(o, ",\"sum\":");
        ngx_vantage_metrics_write(o, (char *) buf, p - buf);
        ngx_vantage_metrics_string(o, ",\"buckets\":[");

        count = 0;

        for (i = 0; i <= n; i++) {
            count += cells[i];
            ngx_vantage_metrics_string(o, i ? ",[" : "[");

            if (i == n) {
                ngx_vantage_metrics_string(o, "\"+Inf\"");

            } else {
                ngx_vantage_metrics_write(o, (char *) bounds[i].data,
                                          bounds[i].len);
            }

            ngx_vantage_metrics_string(o, ",");
            ngx_vantage_metrics_number(o, count);
            ngx_vantage_metrics_string(o, "]");
        }

        ngx_vantage_metrics_string(o, "]}");
        ngx_vantage_metrics_family_end(o);
        return;
    }

    count = 0;

    for (i = 0; i <= n; i++) {
        count += cells[i];
        ngx_vantage_metrics_string(o, name);
        ngx_vantage_metrics_string(o, "_bucket");
        ngx_vantage_metrics_labels(o, NULL, 0, &bounds[i]);
        ngx_vantage_metrics_string(o, " ");
        ngx_vantage_metrics_number(o, count);
        ngx_vantage_metrics_string(o, "\n");
    }

    ngx_vantage_metrics_string(o, name);
    ngx_vantage_metrics_string(o, "_sum ");
    ngx_vantage_metrics_write(o, (char *) buf, p - buf);
    ngx_vantage_metrics_string(o, "\n");

    ngx_vantage_metrics_string(o, name);
    ngx_vantage_metrics_string(o, "_count ");
    ngx_vantage_metrics_number(o, total);
    ngx_vantage_metrics_string(o, "\n");
}


/* {a="x",b="y"} or "labels":{"a":"x","b":"y"}; le: a bucket's bound */
static void
ngx_vantage_metrics_labels(ngx_vantage_metrics_out_t *o,
    ngx_vantage_metrics_label_t *labels, ngx_uint_t n, ngx_str_t *le)
{
    ngx_uint_t  i;

    if (o->format == NGX_VANTAGE_METRICS_JSON) {
        ngx_vantage_metrics_string(o, "\"labels\":{");

        for (i = 0; i < n; i++) {
            ngx_vantage_metrics_string(o, i ? ",\"" : "\"");
            ngx_vantage_metrics_string(o, labels[i].name);
            ngx_vantage_metrics_string(o, "\":\"");
            ngx_vantage_metrics_escaped(o, labels[i].value);
            ngx_vantage_metrics_string(o, "\"");
        }

        ngx_vantage_metrics_string(o, "}");
        return;
    }

    if (n == 0 && le == NULL) {
        return;
    }

    ngx_vantage_metrics_string(o, "{");

    for (i = 0; i < n; i++) {
        ngx_vantage_metrics_string(o, i ? "," : "");
        ngx_vantage_metrics_string(o, labels[i].name);
        ngx_vantage_metrics_string(o, "=\"");
        ngx_vantage_metrics_escaped(o, labels[i].value);
        ngx_vantage_metrics_string(o, "\"");
    }

    if (le) {
        ngx_vantage_metrics_string(o, n ? ",le=\"" : "le=\"");
        ngx_vantage_metrics_write(o, (char *) le->data, le->len);
        ngx_vantage_metrics_string(o, "\"");
    }

    ngx_vantage_metrics_string(o, "}");
}


static void
ngx_vantage_metrics_write(ngx_vantage_metrics_out_t *o, const char *s,
    size_t len)
{
    if (o->pos) {
        o->pos = ngx_cpymem(o->pos, s, len);
    }

    o->len += len;
}


static void
ngx_vantage_metrics_string(ngx_vantage_metrics_out_t *o, const char *s)
{
    ngx_vantage_metrics_write(o, s, ngx_strlen(s));
}


/*
 * A label value as the format escapes it: the text format's \\, \" and
 * \n, or JSON's; location names are the configuration's, any bytes
 */
static void
ngx_vantage_metrics_escaped(ngx_vantage_metrics_out_t *o, ngx_str_t *s)
{
    u_char  *p, *last;

    if (o->format == NGX_VANTAGE_METRICS_JSON) {
        if (o->pos) {
            o->pos = (u_char *) ngx_escape_json(o->pos, s->data, s->len);
        }

        o->len += s->len + ngx_escape_json(NULL, s->data, s->len);
        return;
    }

    last = s->data + s->len;

    for (p = s->data; p < last; p++) {
        switch (*p) {

        case '\\':
            ngx_vantage_metrics_write(o, "\\\\", 2);
            break;

        case '"':
            ngx_vantage_metrics_write(o, "\\\"", 2);
            break;

        case '\n':
            ngx_vantage_metrics_write(o, "\\n", 2);
            break;

        default:
            ngx_vantage_metrics_write(o, (char *) p, 1);
        }
    }
}


static void
ngx_vantage_metrics_number(ngx_vantage_metrics_out_t *o, ngx_int_t v)
{
    u_char  buf[NGX_INT_T_LEN], *p;

    p = ngx_sprintf(buf, "%i", v);
    ngx_vantage_metrics_write(o, (char *) buf, p - buf);
}
