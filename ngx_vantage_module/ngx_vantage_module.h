/* ngx_vantage_module.h -- configuration, request context and shared calls */

#ifndef _NGX_VANTAGE_MODULE_H_INCLUDED_
#define _NGX_VANTAGE_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/evp.h>

#include "vc_jwt.h"
#include "vc_apikeys.h"
#include "vc_ratelimit.h"
#include "ngx_vantage_redis.h"
#include "ngx_vantage_worker.h"
#include "ngx_vantage_metrics.h"


#define NGX_VANTAGE_CLAIM         0     /* a claim, by name or dotted path */
#define NGX_VANTAGE_CLAIM_HEADER  1     /* a member of the JOSE header */
#define NGX_VANTAGE_CLAIM_ALL     2     /* the whole payload, as JSON */


/*
 * A value extracted from every verified token: what the variables, the
 * claim headers and the verified-token cache work from.  Registered at
 * configuration time, never at request time, so that every worker process
 * agrees on the index of each.
 */
typedef struct {
    ngx_str_t                   name;      /* NUL-terminated */
    ngx_uint_t                  kind;
} ngx_vantage_claim_t;


/*
 * What one kind of watched file (JWT keys, API keys) does with the bytes
 * ngx_vantage_watch.c reads: "load" parses them into *data and counts the
 * keys for the log, or fills errstr (VC_ERRSTR_LEN) and returns NGX_ERROR
 * having freed what it made; "free" releases what "load" made, or NULL.
 */
typedef ngx_int_t (*ngx_vantage_watch_load_pt)(u_char *buf, size_t size,
    ngx_log_t *log, void **data, size_t *nkeys, char *errstr);
typedef void (*ngx_vantage_watch_free_pt)(void *data);

typedef struct {
    char                       *log_name;  /* "vantage jwt" in messages */
    size_t                      max_size;  /* a whole number of megabytes */
    ngx_vantage_watch_load_pt   load;
    ngx_vantage_watch_free_pt   free;
} ngx_vantage_watch_kind_t;


/* a key file, shared by every location that names it for the same kind */
typedef struct {
    ngx_str_t                   path;      /* full name, NUL-terminated */
    ngx_vantage_watch_kind_t   *kind;
    void                       *data;      /* in force in this process */
    ngx_file_uniq_t             uniq;      /* the file as last loaded */
    time_t                      mtime;
    long                        mtime_nsec;
    off_t                       size;
    ngx_uint_t                  failed;    /* its last change did not load */
    ngx_event_t                 timer;
} ngx_vantage_watch_t;


#define NGX_VANTAGE_APIKEY_HEADER  0
#define NGX_VANTAGE_APIKEY_QUERY   1


/* where a request's API key is looked for */
typedef struct {
    ngx_uint_t                  type;
    ngx_str_t                   name;      /* header or argument name */
    ngx_str_t                   lowcase;   /* of a header name */
} ngx_vantage_apikey_src_t;


/* the schemes of WWW-Authenticate, and which one a refusal is about */
#define NGX_VANTAGE_AUTH_JWT       0x01
#define NGX_VANTAGE_AUTH_API_KEY   0x02
#define NGX_VANTAGE_AUTH_INTROSPECT  0x04    /* a Bearer challenge too */


/*
 * A key set an identity provider publishes, fetched by vantage-worker
 * (FETCH) and kept by each nginx worker process: one per URL, shared by
 * every location that names it.
 */
typedef struct {
    ngx_str_t                   url;       /* what FETCH names; NUL-ended */
    ngx_str_t                   issuer;    /* tokens' iss; empty: any */
    time_t                      refetch;   /* an unknown kid: at most once
                                              in this many seconds */
    ngx_uint_t                  index;     /* in the main conf's idps */
    unsigned                    discovery:1;

    /* in this process */
    vc_keyset_t                *keys;      /* NULL until the first set */
    time_t                      fetched;   /* when the worker fetched it */
    time_t                      refetched; /* the last unknown-kid fetch */
    ngx_msec_t                  backoff;
    ngx_vantage_worker_call_t  *call;      /* the fetch running */
    ngx_event_t                 timer;     /* the next fetch */
    ngx_queue_t                 waiting;   /* ngx_vantage_auth_ctx_t */
    unsigned                    stale:1;
    unsigned                    refetching:1;   /* the call running is */
    unsigned                    want_refetch:1; /* once it has ended */
} ngx_vantage_idp_t;


/* an introspection endpoint (RFC 7662) a location sends opaque tokens to */
typedef struct {
    ngx_str_t                   url;       /* what FETCH names */
    ngx_uint_t                  all;       /* every token, JWTs too */
    time_t                      cache_max;
    time_t                      negative;
} ngx_vantage_introspect_conf_t;


typedef struct {
    ngx_array_t                 watches;   /* ngx_vantage_watch_t * */
    ngx_array_t                 claims;    /* ngx_vantage_claim_t */
    /* SHA-256 of the claims' kinds and names, in order: in the cache key */
    u_char                      claims_digest[32];
    ngx_msec_t                  keys_check_interval;
    ngx_vantage_redis_conf_t   *redis;
    ngx_shm_zone_t             *rl_zone;   /* the local fallback buckets */
    ngx_uint_t                  rl_used;
    ngx_vantage_worker_conf_t  *worker;
    ngx_int_t                   sub_claim;  /* index of "sub", or unset */
    ngx_int_t                   request_id_index;
    ngx_array_t                 idps;      /* ngx_vantage_idp_t * */
    ngx_shm_zone_t             *intro_cache;  /* when a location has none */

    /* ngx_vantage_metrics.c */
    ngx_flag_t                  metrics_collect;
    ngx_array_t                *metrics_locations;  /* ngx_str_t: names */
    void                       *metrics;   /* ngx_vantage_metrics_t */
} ngx_vantage_main_conf_t;


typedef struct {
    ngx_str_t                   name;
    ngx_str_t                   lowcase;
    ngx_uint_t                  hash;
    ngx_uint_t                  claim;     /* index in main conf claims */
} ngx_vantage_claim_header_t;


/* ngx_vantage_transform.c: a loaded mapping, and a location's masking */
typedef struct ngx_vantage_transform_s  ngx_vantage_transform_t;
typedef struct ngx_vantage_mask_s  ngx_vantage_mask_t;


typedef struct {
    ngx_flag_t                  jwt;
    ngx_http_complex_value_t   *token;
    size_t                      max_size;
    ngx_vantage_watch_t        *keys;      /* data: vc_keyset_t */
    ngx_uint_t                  algs;
    ngx_array_t                *requires;      /* vc_require_t */
    ngx_flag_t                  require_exp;
    time_t                      leeway;
    ngx_uint_t                  max_keys_tried;
    ngx_str_t                   realm;
    ngx_array_t                *claim_headers; /* ngx_vantage_claim_header_t */
    ngx_shm_zone_t             *cache;
    ngx_array_t                *idps;      /* ngx_vantage_idp_t * */
    ngx_msec_t                  keys_wait;

    ngx_flag_t                  introspect_on;
    ngx_vantage_introspect_conf_t  *introspect;
    ngx_msec_t                  introspect_timeout;
    ngx_uint_t                  introspect_failure;  /* 503 or 401 */
    ngx_uint_t                  auth_any;  /* vantage_auth any: resolved
                                              by merge */

    ngx_flag_t                  api_key;
    ngx_vantage_watch_t        *api_keys;  /* data: vc_apikeys_t */
    ngx_array_t                *api_key_from;  /* ngx_vantage_apikey_src_t */

    ngx_array_t                *limits;        /* ngx_vantage_rl_limit_t */
    ngx_uint_t                  rl_status;
    ngx_uint_t                  rl_headers;
    ngx_flag_t                  rl_dry_run;
    ngx_uint_t                  rl_log_level;
    ngx_uint_t                  rl_on_error;
    ngx_str_t                   rl_policy;     /* RateLimit-Policy, all keys */

    ngx_str_t                   dispatch_type; /* data NULL: no dispatch */
    ngx_uint_t                  dispatch_status;
    ngx_str_t                   dispatch_location;  /* "/jobs/" */
    size_t                      dispatch_max_body;
    ngx_array_t                *dispatch_headers;   /* ngx_str_t names */
    ngx_http_complex_value_t   *tenant;
    ngx_http_complex_value_t   *subject;
    ngx_http_complex_value_t   *ordering_key;
    ngx_flag_t                  jobs;
    ngx_http_complex_value_t   *job_id;
    void                       *sfout;     /* ngx_vantage_sfout_conf_t, or
                                              NULL: not that handler */
    void                       *hubspot;   /* ngx_vantage_hubspot_conf_t,
                                              or NULL */
    /* vantage_webhook_verify */
    void                       *webhook;   /* ngx_vantage_webhook_conf_t,
                                              or NULL */
    /* vantage_health */
    void                       *health;    /* ngx_vantage_health_conf_t,
                                              or NULL */

    /* ngx_vantage_transform.c; NULL: none */
    ngx_vantage_transform_t    *json_request;
    ngx_vantage_transform_t    *json_response;
    ngx_vantage_mask_t         *mask;
    size_t                      transform_max_body;

    /* headers and correlation (ngx_vantage_headers.c) */
    ngx_array_t                *headers_request;   /* of this level or an
                                                      ancestor, or NULL */
    ngx_array_t                *headers_response;
    ngx_flag_t                  request_id;

    /* ngx_vantage_metrics.c */
    ngx_uint_t                  metrics;   /* vantage_metrics: its format,
                                              0: none */
    ngx_uint_t                  metrics_location;  /* index of the name */

    /* built by merge from the above */
    vc_policy_t                 policy;
    vc_policy_t                 intro_policy;  /* exp not required */
    u_char                      policy_digest[32];
} ngx_vantage_loc_conf_t;


typedef struct {
    ngx_str_t                  *values;    /* one per claim; data NULL if
                                              absent */
    ngx_vantage_idp_t          *idp;       /* whose set verified it */
    unsigned                    verified:1;
    unsigned                    introspected:1;
} ngx_vantage_jwt_ctx_t;


#define NGX_VANTAGE_AUTH_IDLE       0
#define NGX_VANTAGE_AUTH_WAITING    1     /* for a key set or an answer */
#define NGX_VANTAGE_AUTH_RESUMED    2


/* a request waiting for a provider's key set or an introspection */
typedef struct {
    ngx_http_request_t         *request;
    ngx_uint_t                  state;
    ngx_queue_t                 queue;     /* in idp->waiting */
    ngx_vantage_idp_t          *idp;
    ngx_event_t                 timer;
    ngx_vantage_worker_call_t  *call;      /* an introspection */
    unsigned                    waited:1;  /* woken once: decide now */
    unsigned                    timed_out:1;

    /* the introspection's answer, copied into the request's pool */
    ngx_uint_t                  outcome;
    uint32_t                    status;
    ngx_str_t                   error;
    ngx_str_t                   body;
} ngx_vantage_auth_ctx_t;


/* the key that authenticated the request: copies, a reload frees the set */
typedef struct {
    ngx_str_t                   id;
    ngx_str_t                   tenant;
    ngx_str_t                   scopes;
    unsigned                    verified:1;
} ngx_vantage_apikey_ctx_t;


#define NGX_VANTAGE_RL_HEADERS_OFF     0
#define NGX_VANTAGE_RL_HEADERS_IETF    1
#define NGX_VANTAGE_RL_HEADERS_LEGACY  2
#define NGX_VANTAGE_RL_HEADERS_BOTH    3

#define NGX_VANTAGE_RL_ON_ERROR_LOCAL  0
#define NGX_VANTAGE_RL_ON_ERROR_OPEN   1
#define NGX_VANTAGE_RL_ON_ERROR_CLOSED 2


typedef struct {
    ngx_http_complex_value_t    key;
    vc_rl_policy_t              policy;
    uint64_t                    cost;
    ngx_str_t                   name;
    ngx_str_t                   suffix;    /* "}:<name>:<interval>:<burst>" */
    uint32_t                    suffix_hash;
    ngx_str_t                   ttl;       /* PEXPIRE milliseconds */
    ngx_str_t                   ops[3];    /* BITFIELD increments 2 to 4 */
    ngx_uint_t                  window;    /* seconds to refill, for "w" */
} ngx_vantage_rl_limit_t;


typedef struct {
    ngx_str_t                   key;       /* empty: the limit does not apply */
    uint32_t                    hash;      /* of key, for the local buckets */
    vc_rl_result_t              res;
} ngx_vantage_rl_entry_t;


typedef struct {
    ngx_http_request_t         *request;
    ngx_vantage_loc_conf_t     *conf;      /* of the location that decided */
    ngx_vantage_rl_entry_t     *entries;   /* one per limit of conf */
    ngx_vantage_redis_call_t   *call;
    ngx_uint_t                  nactive;   /* entries whose key applies */
    uint64_t                    now;
    ngx_uint_t                  state;
    ngx_uint_t                  outcome;
    ngx_uint_t                  refused_by;  /* index of a refusing limit */
    unsigned                    fallback:1;  /* decided without Redis */
} ngx_vantage_rl_ctx_t;


typedef struct ngx_vantage_body_s  ngx_vantage_body_t;

/*
 * The whole body is in body->bufs: returns NGX_DONE when the request has
 * been taken on (answered, or the phases resumed), or else what to
 * finalize it with.
 */
typedef ngx_int_t (*ngx_vantage_body_done_pt)(ngx_http_request_t *r,
    ngx_vantage_body_t *body);

/*
 * The body has grown over body->max: answers the request, which may be
 * freed by then, so the reader touches it no more.
 */
typedef void (*ngx_vantage_body_refuse_pt)(ngx_http_request_t *r,
    ngx_vantage_body_t *body);

/* the request body being read by ngx_vantage_body_read() */
struct ngx_vantage_body_s {
    ngx_chain_t                *bufs;      /* of the request's pool */
    ngx_chain_t               **last;
    size_t                      size;
    size_t                      max;       /* 0: no limit of its own */
    ngx_vantage_body_done_pt    done;
    ngx_vantage_body_refuse_pt  refuse;
};


/*
 * One context for the whole main request: it survives internal redirects
 * (nginx clears module contexts on those), which is what lets a request be
 * authenticated once and charged once.
 */
typedef struct {
    ngx_vantage_jwt_ctx_t       jwt;
    ngx_vantage_auth_ctx_t      auth;
    ngx_vantage_apikey_ctx_t    apikey;
    ngx_vantage_rl_ctx_t        rl;
    void                       *dispatch;  /* ngx_vantage_dispatch_ctx_t */
    void                       *fanout;    /* ngx_vantage_fanout_t */
    void                       *transform; /* ngx_vantage_tf_ctx_t */

    /* one body is read at a time: ngx_vantage_body.c */
    ngx_vantage_body_t          body;

    /* headers and correlation (ngx_vantage_headers.c) */
    ngx_str_t                   request_id;   /* data NULL: not yet known */
    ngx_str_t                   traceparent;  /* the client's, if valid */
    unsigned                    headers_done:1;

    /* vantage_webhook_verify */
    void                       *webhook;   /* ngx_vantage_webhook_ctx_t */

    /*
     * what was decided, for the metrics and the access log's variables
     * (ngx_vantage_metrics.c): both read these
     */
    ngx_uint_t                  auth_method;   /* NGX_VANTAGE_M_JWT... + 1,
                                                  0: none */
    vc_auth_outcome_e           auth_outcome;
    ngx_uint_t                  rl_decision;   /* NGX_VANTAGE_M_RL_... + 1,
                                                  0: none */
    ngx_str_t                   job_id;        /* a dispatch's, or empty */
} ngx_vantage_ctx_t;


extern ngx_module_t  ngx_vantage_module;
extern ngx_str_t     ngx_vantage_json_type;


const EVP_MD *ngx_vantage_sha256(void);
ngx_vantage_ctx_t *ngx_vantage_get_ctx(ngx_http_request_t *r);
ngx_vantage_ctx_t *ngx_vantage_create_ctx(ngx_http_request_t *r);
ngx_int_t ngx_vantage_send_json(ngx_http_request_t *r, ngx_uint_t status,
    const char *error, const char *description);

/*
 * Sends status and body (which must live as long as the request) as
 * content_type, parameters and all; headers set before are kept.  Neither
 * discards the body nor finalizes: returns what to finalize the request
 * with, which a content handler may return.
 */
ngx_int_t ngx_vantage_send_body(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *content_type, ngx_str_t *body);

/*
 * As ngx_vantage_send_body(), for the answers about jobs: with
 * Cache-Control: no-store and, when correlation_id is not NULL,
 * X-Correlation-ID and X-Request-Id.
 */
ngx_int_t ngx_vantage_send_nostore(ngx_http_request_t *r,
    ngx_str_t *correlation_id, ngx_uint_t status, ngx_str_t *content_type,
    ngx_str_t *body);

ngx_int_t ngx_vantage_json_error(ngx_pool_t *pool, const char *error,
    const char *description, ngx_str_t *body);
ngx_int_t ngx_vantage_add_header(ngx_http_request_t *r, const char *name,
    size_t nlen, u_char *value, size_t len);
char *ngx_vantage_check_realm(ngx_str_t *realm);
/* a request header given at most once: NGX_OK, NGX_DECLINED, NGX_ERROR */
ngx_int_t ngx_vantage_header_once(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value);

/*
 * Reads the request body into memory, never into a temporary file, without
 * blocking: nginx's buffers are copied into buffers of the request's pool
 * (nginx reuses its own), max (0: none) is checked as the body grows, and
 * done is called once the body is whole, with its handler's return
 * finalizing the request unless it is NGX_DONE.  A body already read (by
 * an earlier phase) is taken as it is.  The request's context must exist.
 * Returns an error status, or NGX_DONE: a content handler returns it, a
 * phase handler finalizes it first (as nginx's own callers of
 * ngx_http_read_client_request_body() do).
 */
ngx_int_t ngx_vantage_body_read(ngx_http_request_t *r, size_t max,
    ngx_vantage_body_done_pt done, ngx_vantage_body_refuse_pt refuse);
ngx_int_t ngx_vantage_claim_add(ngx_conf_t *cf, ngx_vantage_main_conf_t *vmcf,
    ngx_str_t *name, ngx_uint_t kind);
ngx_int_t ngx_vantage_add_variables(ngx_conf_t *cf,
    ngx_http_variable_t *vars);

/* ngx_vantage_jwt.c */
ngx_int_t ngx_vantage_jwt_handler(ngx_http_request_t *r);
ngx_int_t ngx_vantage_jwt_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_vantage_jwt_index_variables(ngx_cycle_t *cycle);
char *ngx_vantage_jwt_auth_jwt(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_vantage_jwt_claim_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_vantage_jwt_claim_header(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_vantage_jwt_require(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_vantage_jwt_algorithms(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_vantage_jwt_merge_policy(ngx_conf_t *cf,
    ngx_vantage_loc_conf_t *vlcf);
ngx_int_t ngx_vantage_auth_refuse(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, ngx_uint_t scheme, ngx_uint_t status,
    vc_auth_outcome_e outcome, const char *error, const char *reason,
    ngx_str_t *id);
ngx_int_t ngx_vantage_headers_in_remove(ngx_http_request_t *r,
    ngx_str_t *lowcase);
ngx_int_t ngx_vantage_jwt_extract(ngx_http_request_t *r,
    ngx_vantage_jwt_ctx_t *jctx, vc_jwt_t *jwt);
u_char *ngx_vantage_jwt_serialize(ngx_http_request_t *r,
    ngx_vantage_jwt_ctx_t *jctx, size_t reserve, size_t *len);
ngx_int_t ngx_vantage_jwt_deserialize(ngx_http_request_t *r,
    ngx_vantage_jwt_ctx_t *jctx, u_char *p, u_char *last);
ngx_int_t ngx_vantage_jwt_set_headers(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, ngx_vantage_jwt_ctx_t *jctx);

/* ngx_vantage_apikey.c */
char *ngx_vantage_apikey_keys_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_vantage_apikey_from_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_vantage_auth_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_vantage_auth_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf);
char *ngx_vantage_apikey_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf);
ngx_int_t ngx_vantage_apikey_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_vantage_apikey_authenticate(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, ngx_vantage_apikey_ctx_t *actx);

/* ngx_vantage_ratelimit.c */
ngx_int_t ngx_vantage_rl_init(ngx_conf_t *cf);
char *ngx_vantage_rl_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_vantage_rl_zone_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_vantage_rl_init_main_conf(ngx_conf_t *cf,
    ngx_vantage_main_conf_t *vmcf);
char *ngx_vantage_rl_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf);
void ngx_vantage_rl_ctx_cleanup(ngx_vantage_ctx_t *ctx);

/* ngx_vantage_dispatch.c */
char *ngx_vantage_dispatch_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_vantage_dispatch_headers_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_vantage_jobs_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_vantage_dispatch_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf);
/* vantage_webhook_verify: goes on with a request the webhook check held */
void ngx_vantage_dispatch_resume(ngx_http_request_t *r);

/* ngx_vantage_sfoutbound.c */
char *ngx_vantage_sfout_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_vantage_sfout_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf);

/* ngx_vantage_hubspot.c */
char *ngx_vantage_hubspot_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_vantage_hubspot_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf);
ngx_int_t ngx_vantage_hubspot_uri(ngx_http_request_t *r, ngx_str_t *uri);
/* uri=<url> at configuration time: checked, and decoded as HubSpot signs */
char *ngx_vantage_hubspot_conf_uri(ngx_conf_t *cf, const char *directive,
    ngx_str_t *arg, ngx_str_t *url, ngx_str_t *uri);

/* ngx_vantage_webhook.c: vantage_webhook_verify */
char *ngx_vantage_webhook_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_vantage_webhook_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf);
ngx_int_t ngx_vantage_webhook_handshake(ngx_http_request_t *r);
ngx_int_t ngx_vantage_webhook_verify(ngx_http_request_t *r,
    ngx_chain_t *body);
ngx_int_t ngx_vantage_webhook_idempotency_key(ngx_http_request_t *r,
    ngx_str_t *key);
void ngx_vantage_webhook_durable(ngx_http_request_t *r);

/* ngx_vantage_health.c: vantage_health makes the location answer probes */
char *ngx_vantage_health_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* ngx_vantage_transform.c */
ngx_int_t ngx_vantage_transform_init(ngx_conf_t *cf);
char *ngx_vantage_transform_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_vantage_mask_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_vantage_transform_merge(ngx_conf_t *cf,
    ngx_vantage_loc_conf_t *prev, ngx_vantage_loc_conf_t *conf);

/* ngx_vantage_jwks.c */
char *ngx_vantage_jwks_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_vantage_jwks_load(u_char *buf, size_t size, ngx_log_t *log,
    void **data, size_t *nkeys, char *errstr);
void ngx_vantage_jwks_free(void *data);

/* ngx_vantage_idp.c */
char *ngx_vantage_idp_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_vantage_idp_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf);
ngx_int_t ngx_vantage_idp_init_process(ngx_cycle_t *cycle);
ngx_int_t ngx_vantage_idp_add_variables(ngx_conf_t *cf);
vc_keyset_t *ngx_vantage_idp_keys(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, ngx_vantage_ctx_t *ctx, vc_jwt_t *jwt,
    ngx_int_t *rc);
ngx_int_t ngx_vantage_idp_keys_digest(ngx_vantage_loc_conf_t *vlcf,
    EVP_MD_CTX *md);
void ngx_vantage_auth_wait_cleanup(ngx_vantage_auth_ctx_t *actx);
ngx_int_t ngx_vantage_auth_wait(ngx_http_request_t *r,
    ngx_vantage_auth_ctx_t *actx, ngx_vantage_idp_t *idp, ngx_msec_t timeout);
void ngx_vantage_auth_resume(ngx_vantage_auth_ctx_t *actx);
ngx_int_t ngx_vantage_auth_unavailable(ngx_http_request_t *r,
    const char *description);

/* ngx_vantage_introspect.c */
char *ngx_vantage_introspect_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_vantage_introspect_merge(ngx_conf_t *cf,
    ngx_vantage_loc_conf_t *prev, ngx_vantage_loc_conf_t *conf);
ngx_uint_t ngx_vantage_introspect_wants(ngx_vantage_loc_conf_t *vlcf,
    ngx_str_t *token);
ngx_int_t ngx_vantage_introspect_handler(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, ngx_vantage_ctx_t *ctx, ngx_str_t *token);

/* ngx_vantage_watch.c */
ngx_vantage_watch_t *ngx_vantage_watch_add(ngx_conf_t *cf,
    ngx_command_t *cmd, ngx_str_t *name, ngx_vantage_watch_kind_t *kind);
ngx_int_t ngx_vantage_watch_init_process(ngx_cycle_t *cycle);

/* ngx_vantage_jwt_cache.c */
char *ngx_vantage_jwt_cache_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_shm_zone_t *ngx_vantage_jwt_cache_zone(ngx_conf_t *cf, ngx_str_t *name,
    ssize_t size, time_t ttl);
ngx_int_t ngx_vantage_jwt_cache_get(ngx_shm_zone_t *zone, u_char *key,
    ngx_pool_t *pool, ngx_str_t *value);
time_t ngx_vantage_jwt_cache_expires(ngx_shm_zone_t *zone);
void ngx_vantage_jwt_cache_put(ngx_shm_zone_t *zone, u_char *key,
    time_t expires, u_char *value, size_t len);

/* ngx_vantage_headers.c: headers and correlation */
ngx_int_t ngx_vantage_headers_init(ngx_conf_t *cf);
ngx_int_t ngx_vantage_headers_add_variables(ngx_conf_t *cf);
char *ngx_vantage_headers_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_vantage_headers_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf);
ngx_int_t ngx_vantage_headers_request_id(ngx_http_request_t *r,
    ngx_str_t *id);

/* ngx_vantage_metrics.c */
char *ngx_vantage_metrics_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf);


#endif /* _NGX_VANTAGE_MODULE_H_INCLUDED_ */
