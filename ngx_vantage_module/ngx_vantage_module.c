/* ngx_vantage_module.c -- directives, configuration and the request context */

#include "ngx_vantage_module.h"


static ngx_int_t ngx_vantage_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_vantage_postconfiguration(ngx_conf_t *cf);
static void *ngx_vantage_create_main_conf(ngx_conf_t *cf);
static char *ngx_vantage_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_vantage_create_loc_conf(ngx_conf_t *cf);
static char *ngx_vantage_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_vantage_realm(ngx_conf_t *cf, void *post, void *data);
static ngx_int_t ngx_vantage_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_vantage_init_process(ngx_cycle_t *cycle);
static void ngx_vantage_exit_process(ngx_cycle_t *cycle);
static void ngx_vantage_ctx_cleanup(void *data);


static char *ngx_vantage_check_bounds(ngx_conf_t *cf, void *post,
    void *data);


/*
 * nginx's ngx_conf_check_num_bounds() does not name the directive; this
 * returns its complaint to ngx_conf_handler(), which does
 */
static ngx_conf_num_bounds_t  ngx_vantage_max_keys_tried_bounds = {
    ngx_vantage_check_bounds, 1, 64
};

static ngx_conf_post_t  ngx_vantage_realm_post = { ngx_vantage_realm };

static ngx_conf_num_bounds_t  ngx_vantage_rl_status_bounds = {
    ngx_vantage_check_bounds, 400, 599
};


static ngx_conf_enum_t  ngx_vantage_rl_headers[] = {
    { ngx_string("off"), NGX_VANTAGE_RL_HEADERS_OFF },
    { ngx_string("ietf"), NGX_VANTAGE_RL_HEADERS_IETF },
    { ngx_string("legacy"), NGX_VANTAGE_RL_HEADERS_LEGACY },
    { ngx_string("both"), NGX_VANTAGE_RL_HEADERS_BOTH },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_vantage_rl_log_levels[] = {
    { ngx_string("info"), NGX_LOG_INFO },
    { ngx_string("notice"), NGX_LOG_NOTICE },
    { ngx_string("warn"), NGX_LOG_WARN },
    { ngx_string("error"), NGX_LOG_ERR },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_vantage_rl_on_error[] = {
    { ngx_string("local"), NGX_VANTAGE_RL_ON_ERROR_LOCAL },
    { ngx_string("open"), NGX_VANTAGE_RL_ON_ERROR_OPEN },
    { ngx_string("closed"), NGX_VANTAGE_RL_ON_ERROR_CLOSED },
    { ngx_null_string, 0 }
};


/* what a request gets when its token could not be introspected */
static ngx_conf_enum_t  ngx_vantage_introspect_failures[] = {
    { ngx_string("503"), NGX_HTTP_SERVICE_UNAVAILABLE },
    { ngx_string("401"), NGX_HTTP_UNAUTHORIZED },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_vantage_commands[] = {

    { ngx_string("vantage_jwt"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, jwt),
      NULL },

    { ngx_string("vantage_jwt_token"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, token),
      NULL },

    { ngx_string("vantage_jwt_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, max_size),
      NULL },

    { ngx_string("vantage_jwt_keys"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_vantage_jwks_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vantage_jwt_jwks_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_vantage_idp_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vantage_jwt_discovery"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_vantage_idp_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      1,                                   /* discovery */
      NULL },

    { ngx_string("vantage_jwt_keys_wait"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, keys_wait),
      NULL },

    { ngx_string("vantage_introspect"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_vantage_introspect_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vantage_introspect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, introspect_timeout),
      NULL },

    { ngx_string("vantage_introspect_failure"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, introspect_failure),
      &ngx_vantage_introspect_failures },

    { ngx_string("vantage_jwt_keys_check_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_vantage_main_conf_t, keys_check_interval),
      NULL },

    { ngx_string("vantage_jwt_max_keys_tried"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, max_keys_tried),
      &ngx_vantage_max_keys_tried_bounds },

    { ngx_string("vantage_jwt_algorithms"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_vantage_jwt_algorithms,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vantage_jwt_require"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_vantage_jwt_require,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vantage_jwt_require_exp"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, require_exp),
      NULL },

    { ngx_string("vantage_jwt_leeway"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, leeway),
      NULL },

    { ngx_string("vantage_jwt_realm"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, realm),
      &ngx_vantage_realm_post },

    { ngx_string("vantage_jwt_claim_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_vantage_jwt_claim_header,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vantage_jwt_claim_set"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_vantage_jwt_claim_set,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vantage_jwt_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_vantage_jwt_cache_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vantage_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE123,
      ngx_vantage_auth_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vantage_api_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, api_key),
      NULL },

    { ngx_string("vantage_api_keys"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_vantage_apikey_keys_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vantage_api_key_from"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_vantage_apikey_from_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vantage_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_vantage_redis_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vantage_rate_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_vantage_rl_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vantage_rate_limit_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, rl_status),
      &ngx_vantage_rl_status_bounds },

    { ngx_string("vantage_rate_limit_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, rl_headers),
      &ngx_vantage_rl_headers },

    { ngx_string("vantage_rate_limit_dry_run"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, rl_dry_run),
      NULL },

    { ngx_string("vantage_rate_limit_log_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, rl_log_level),
      &ngx_vantage_rl_log_levels },

    { ngx_string("vantage_rate_limit_on_error"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, rl_on_error),
      &ngx_vantage_rl_on_error },

    { ngx_string("vantage_rate_limit_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_vantage_rl_zone_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    /* NGINX Plus-compatible spellings */

    { ngx_string("vantage_worker"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_vantage_worker_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vantage_dispatch"),
      NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_vantage_dispatch_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vantage_dispatch_max_body"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, dispatch_max_body),
      NULL },

    { ngx_string("vantage_dispatch_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_vantage_dispatch_headers_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vantage_dispatch_ordering_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, ordering_key),
      NULL },

    { ngx_string("vantage_tenant"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, tenant),
      NULL },

    { ngx_string("vantage_subject"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, subject),
      NULL },

    { ngx_string("vantage_salesforce_outbound"),
      NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_vantage_sfout_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vantage_hubspot_webhook"),
      NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_vantage_hubspot_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    /* vantage_webhook_verify: inbound webhook signatures */
    { ngx_string("vantage_webhook_verify"),
      NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_vantage_webhook_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    /* /healthz and /readyz: ngx_vantage_health.c */
    { ngx_string("vantage_health"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_vantage_health_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    /* metrics (ngx_vantage_metrics.c) */
    { ngx_string("vantage_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_vantage_metrics_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vantage_metrics_collect"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_vantage_main_conf_t, metrics_collect),
      NULL },

    { ngx_string("vantage_jobs"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_vantage_jobs_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    /* body transforms and masking: ngx_vantage_transform.c */
    { ngx_string("vantage_json_transform"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_vantage_transform_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vantage_mask"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_vantage_mask_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vantage_transform_max_body"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, transform_max_body),
      NULL },

    { ngx_string("auth_jwt"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_vantage_jwt_auth_jwt,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("auth_jwt_key_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_vantage_jwks_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("auth_jwt_leeway"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, leeway),
      NULL },

    { ngx_string("auth_jwt_claim_set"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_vantage_jwt_claim_set,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    /* headers and correlation (ngx_vantage_headers.c); post: the op */

    { ngx_string("vantage_set_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE3,
      ngx_vantage_headers_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      (void *) 0 },

    { ngx_string("vantage_remove_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_vantage_headers_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      (void *) 1 },

    { ngx_string("vantage_rename_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE3,
      ngx_vantage_headers_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      (void *) 2 },

    { ngx_string("vantage_request_id"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_vantage_loc_conf_t, request_id),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_vantage_module_ctx = {
    ngx_vantage_preconfiguration,          /* preconfiguration */
    ngx_vantage_postconfiguration,         /* postconfiguration */

    ngx_vantage_create_main_conf,          /* create main configuration */
    ngx_vantage_init_main_conf,            /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_vantage_create_loc_conf,           /* create location configuration */
    ngx_vantage_merge_loc_conf             /* merge location configuration */
};


/* the type of every JSON answer the module writes */
ngx_str_t  ngx_vantage_json_type = ngx_string("application/json");


ngx_module_t  ngx_vantage_module = {
    NGX_MODULE_V1,
    &ngx_vantage_module_ctx,               /* module context */
    ngx_vantage_commands,                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_vantage_init_module,               /* init module */
    ngx_vantage_init_process,              /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_vantage_exit_process,              /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_vantage_preconfiguration(ngx_conf_t *cf)
{
    /* headers and correlation: $vantage_request_id */
    if (ngx_vantage_headers_add_variables(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_vantage_apikey_add_variables(cf) != NGX_OK
        || ngx_vantage_idp_add_variables(cf) != NGX_OK
        || ngx_vantage_metrics_add_variables(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_vantage_jwt_add_variables(cf);
}


static ngx_int_t
ngx_vantage_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_vantage_jwt_handler;

    /*
     * PRECONTENT handlers run in the reverse order of registration: the
     * rate limiter's, then the header operations', then the body
     * transforms' (ngx_vantage_transform.c), which see the headers as set
     */
    if (ngx_vantage_transform_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    /*
     * headers and correlation: pushed before the rate limiter's PRECONTENT
     * handler, so that it runs after it (nginx runs a phase's handlers in
     * the reverse order of registration), with the claims and the limits
     * decided
     */
    if (ngx_vantage_headers_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    /* every location is merged by now: the zone is sized for them */
    if (ngx_vantage_metrics_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_vantage_rl_init(cf);
}


static void *
ngx_vantage_create_main_conf(ngx_conf_t *cf)
{
    ngx_vantage_main_conf_t  *vmcf;

    vmcf = ngx_pcalloc(cf->pool, sizeof(ngx_vantage_main_conf_t));
    if (vmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&vmcf->watches, cf->pool, 2,
                       sizeof(ngx_vantage_watch_t *))
        != NGX_OK
        || ngx_array_init(&vmcf->claims, cf->pool, 8,
                          sizeof(ngx_vantage_claim_t))
           != NGX_OK
        || ngx_array_init(&vmcf->idps, cf->pool, 2,
                          sizeof(ngx_vantage_idp_t *))
           != NGX_OK)
    {
        return NULL;
    }

    vmcf->keys_check_interval = NGX_CONF_UNSET_MSEC;
    vmcf->sub_claim = NGX_CONF_UNSET;
    vmcf->request_id_index = NGX_CONF_UNSET;
    vmcf->metrics_collect = NGX_CONF_UNSET;

    return vmcf;
}


static char *
ngx_vantage_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_vantage_main_conf_t  *vmcf = conf;

    ngx_conf_init_msec_value(vmcf->keys_check_interval, 1000);

    if (vmcf->keys_check_interval == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_jwt_keys_check_interval\" must be "
                           "at least 1ms");
        return NGX_CONF_ERROR;
    }

    return ngx_vantage_rl_init_main_conf(cf, vmcf);
}


static void *
ngx_vantage_create_loc_conf(ngx_conf_t *cf)
{
    ngx_vantage_loc_conf_t  *vlcf;

    vlcf = ngx_pcalloc(cf->pool, sizeof(ngx_vantage_loc_conf_t));
    if (vlcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     vlcf->realm = { 0, NULL };
     *     vlcf->policy = { 0 };
     */

    vlcf->jwt = NGX_CONF_UNSET;
    vlcf->token = NGX_CONF_UNSET_PTR;
    vlcf->max_size = NGX_CONF_UNSET_SIZE;
    vlcf->keys = NGX_CONF_UNSET_PTR;
    vlcf->algs = NGX_CONF_UNSET_UINT;
    vlcf->requires = NGX_CONF_UNSET_PTR;
    vlcf->require_exp = NGX_CONF_UNSET;
    vlcf->leeway = NGX_CONF_UNSET;
    vlcf->max_keys_tried = NGX_CONF_UNSET_UINT;
    vlcf->claim_headers = NGX_CONF_UNSET_PTR;
    vlcf->cache = NGX_CONF_UNSET_PTR;
    vlcf->idps = NGX_CONF_UNSET_PTR;
    vlcf->keys_wait = NGX_CONF_UNSET_MSEC;
    vlcf->introspect_on = NGX_CONF_UNSET;
    vlcf->introspect = NGX_CONF_UNSET_PTR;
    vlcf->introspect_timeout = NGX_CONF_UNSET_MSEC;
    vlcf->introspect_failure = NGX_CONF_UNSET_UINT;
    vlcf->auth_any = NGX_CONF_UNSET_UINT;
    vlcf->api_key = NGX_CONF_UNSET;
    vlcf->api_keys = NGX_CONF_UNSET_PTR;
    vlcf->api_key_from = NGX_CONF_UNSET_PTR;
    vlcf->limits = NGX_CONF_UNSET_PTR;
    vlcf->rl_status = NGX_CONF_UNSET_UINT;
    vlcf->rl_headers = NGX_CONF_UNSET_UINT;
    vlcf->rl_dry_run = NGX_CONF_UNSET;
    vlcf->rl_log_level = NGX_CONF_UNSET_UINT;
    vlcf->rl_on_error = NGX_CONF_UNSET_UINT;
    vlcf->dispatch_max_body = NGX_CONF_UNSET_SIZE;
    vlcf->dispatch_headers = NGX_CONF_UNSET_PTR;
    vlcf->tenant = NGX_CONF_UNSET_PTR;
    vlcf->subject = NGX_CONF_UNSET_PTR;
    vlcf->ordering_key = NGX_CONF_UNSET_PTR;

    /* ngx_vantage_transform.c */
    vlcf->json_request = NGX_CONF_UNSET_PTR;
    vlcf->json_response = NGX_CONF_UNSET_PTR;
    vlcf->mask = NGX_CONF_UNSET_PTR;
    vlcf->transform_max_body = NGX_CONF_UNSET_SIZE;

    /* headers and correlation */
    vlcf->headers_request = NGX_CONF_UNSET_PTR;
    vlcf->headers_response = NGX_CONF_UNSET_PTR;
    vlcf->request_id = NGX_CONF_UNSET;

    vlcf->metrics = NGX_CONF_UNSET_UINT;

    return vlcf;
}


static char *
ngx_vantage_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_vantage_loc_conf_t  *prev = parent;
    ngx_vantage_loc_conf_t  *conf = child;

    if (ngx_vantage_auth_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_conf_merge_ptr_value(conf->token, prev->token, NULL);
    ngx_conf_merge_size_value(conf->max_size, prev->max_size, 8192);
    ngx_conf_merge_ptr_value(conf->keys, prev->keys, NULL);
    ngx_conf_merge_uint_value(conf->algs, prev->algs, VC_ALG_MASK_ALL);
    ngx_conf_merge_ptr_value(conf->requires, prev->requires, NULL);
    ngx_conf_merge_value(conf->require_exp, prev->require_exp, 1);
    ngx_conf_merge_sec_value(conf->leeway, prev->leeway, 0);
    ngx_conf_merge_uint_value(conf->max_keys_tried, prev->max_keys_tried, 3);
    ngx_conf_merge_str_value(conf->realm, prev->realm, "vantage");
    ngx_conf_merge_ptr_value(conf->claim_headers, prev->claim_headers, NULL);
    ngx_conf_merge_ptr_value(conf->cache, prev->cache, NULL);

    if (conf->max_size == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_jwt_max_size\" must not be zero");
        return NGX_CONF_ERROR;
    }

    if (ngx_vantage_idp_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (conf->jwt && conf->keys == NULL && conf->idps == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_jwt\" is on but no \"vantage_jwt_keys\", "
                           "\"vantage_jwt_jwks_url\" or "
                           "\"vantage_jwt_discovery\" applies here");
        return NGX_CONF_ERROR;
    }

    if (ngx_vantage_introspect_merge(cf, prev, conf) != NGX_CONF_OK
        || ngx_vantage_apikey_merge(cf, prev, conf) != NGX_CONF_OK
        || ngx_vantage_rl_merge(cf, prev, conf) != NGX_CONF_OK
        || ngx_vantage_dispatch_merge(cf, prev, conf) != NGX_CONF_OK
        || ngx_vantage_sfout_merge(cf, prev, conf) != NGX_CONF_OK
        || ngx_vantage_hubspot_merge(cf, prev, conf) != NGX_CONF_OK
        || ngx_vantage_transform_merge(cf, prev, conf) != NGX_CONF_OK
        /* headers and correlation */
        || ngx_vantage_headers_merge(cf, prev, conf) != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* vantage_webhook_verify: after dispatch, whose job type it checks */
    if (ngx_vantage_webhook_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_vantage_metrics_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    return ngx_vantage_jwt_merge_policy(cf, conf);
}


static char *
ngx_vantage_check_bounds(ngx_conf_t *cf, void *post, void *data)
{
    ngx_conf_num_bounds_t  *bounds = post;
    ngx_int_t              *np = data;

    u_char                 *p;

    if (*np >= bounds->low && *np <= bounds->high) {
        return NGX_CONF_OK;
    }

    p = ngx_pnalloc(cf->pool, 2 * NGX_INT_T_LEN + 32);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    *ngx_sprintf(p, "must be between %i and %i", bounds->low, bounds->high)
        = '\0';

    return (char *) p;
}


static char *
ngx_vantage_realm(ngx_conf_t *cf, void *post, void *data)
{
    return ngx_vantage_check_realm(data);
}


/* the realm goes into a quoted-string of WWW-Authenticate as it is */
char *
ngx_vantage_check_realm(ngx_str_t *realm)
{
    u_char  *p;

    for (p = realm->data; p < realm->data + realm->len; p++) {
        if (*p < 0x20 || *p == 0x7f || *p == '"' || *p == '\\') {
            return "must not contain quotes, backslashes or control "
                   "characters";
        }
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_vantage_init_module(ngx_cycle_t *cycle)
{
    return ngx_vantage_jwt_index_variables(cycle);
}


static ngx_int_t
ngx_vantage_init_process(ngx_cycle_t *cycle)
{
    ngx_vantage_main_conf_t  *vmcf;

    /* first: what the others start (Redis, key sets) may count already */
    if (ngx_vantage_metrics_init_process(cycle) != NGX_OK
        || ngx_vantage_watch_init_process(cycle) != NGX_OK)
    {
        return NGX_ERROR;
    }

    vmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_vantage_module);

    if (vmcf != NULL && vmcf->worker != NULL
        && (ngx_vantage_worker_init_process(cycle, vmcf->worker) != NGX_OK
            || ngx_vantage_idp_init_process(cycle) != NGX_OK))
    {
        return NGX_ERROR;
    }

    return ngx_vantage_redis_init_process(cycle);
}


static void
ngx_vantage_exit_process(ngx_cycle_t *cycle)
{
    ngx_vantage_worker_exit_process(cycle);
    ngx_vantage_redis_exit_process(cycle);
    ngx_vantage_metrics_exit_process(cycle);
}


/*
 * Adds each variable of a table ending in ngx_http_null_variable; each
 * file (JWT, API key) keeps its table beside the handlers it names.
 */
ngx_int_t
ngx_vantage_add_variables(ngx_conf_t *cf, ngx_http_variable_t *vars)
{
    ngx_http_variable_t  *var, *v;

    for (v = vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/*
 * Registers a value every verified token yields; returns its index, the
 * same in every process, or NGX_ERROR.
 */
ngx_int_t
ngx_vantage_claim_add(ngx_conf_t *cf, ngx_vantage_main_conf_t *vmcf,
    ngx_str_t *name, ngx_uint_t kind)
{
    ngx_uint_t            i;
    ngx_vantage_claim_t  *claim;

    claim = vmcf->claims.elts;

    for (i = 0; i < vmcf->claims.nelts; i++) {
        if (claim[i].kind == kind
            && claim[i].name.len == name->len
            && ngx_strncmp(claim[i].name.data, name->data, name->len) == 0)
        {
            return i;
        }
    }

    claim = ngx_array_push(&vmcf->claims);
    if (claim == NULL) {
        return NGX_ERROR;
    }

    claim->kind = kind;
    claim->name.len = name->len;
    claim->name.data = ngx_pnalloc(cf->pool, name->len + 1);
    if (claim->name.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(claim->name.data, name->data, name->len);
    claim->name.data[name->len] = '\0';

    return vmcf->claims.nelts - 1;
}


/*
 * SHA-256, fetched from the provider once per process: EVP_sha256() makes
 * every EVP_DigestInit_ex() fetch it again, which triples the cost of
 * hashing a short string (measured here: 576 ns against 180 ns)
 */
const EVP_MD *
ngx_vantage_sha256(void)
{
    static EVP_MD  *md;

    if (md == NULL) {
        md = EVP_MD_fetch(NULL, "SHA256", NULL);

        if (md == NULL) {
            return EVP_sha256();
        }
    }

    return md;
}


/*
 * The context lives in a pool cleanup as well as in r->ctx, as in the realip
 * module: internal redirects zero r->ctx, and the cleanup is how the context
 * is found again.
 */
ngx_vantage_ctx_t *
ngx_vantage_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;
    ngx_vantage_ctx_t   *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_vantage_module);

    if (ctx == NULL && (r->internal || r->filter_finalize)) {

        for (cln = r->pool->cleanup; cln; cln = cln->next) {
            if (cln->handler == ngx_vantage_ctx_cleanup) {
                ctx = cln->data;
                ngx_http_set_ctx(r, ctx, ngx_vantage_module);
                break;
            }
        }
    }

    return ctx;
}


ngx_vantage_ctx_t *
ngx_vantage_create_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;
    ngx_vantage_ctx_t   *ctx;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_vantage_ctx_t));
    if (cln == NULL) {
        return NULL;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_vantage_ctx_t));

    cln->handler = ngx_vantage_ctx_cleanup;

    ngx_http_set_ctx(r, ctx, ngx_vantage_module);

    return ctx;
}


static void
ngx_vantage_ctx_cleanup(void *data)
{
    ngx_vantage_ctx_t  *ctx = data;

    /* everything the context points to lives in the request pool */

    ngx_vantage_auth_wait_cleanup(&ctx->auth);
    ngx_vantage_rl_ctx_cleanup(ctx);
}


/*
 * Sends a complete JSON error response {"error": ..., "error_description":
 * ...} from a phase handler and finalizes the request, as a content handler
 * would.  The caller returns NGX_DONE.  Headers set before the call (such
 * as WWW-Authenticate) are kept.
 */
ngx_int_t
ngx_vantage_send_json(ngx_http_request_t *r, ngx_uint_t status,
    const char *error, const char *description)
{
    ngx_int_t  rc;
    ngx_str_t  body;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_vantage_json_error(r->pool, error, description, &body)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_finalize_request(r,
        ngx_vantage_send_body(r, status, &ngx_vantage_json_type, &body));

    return NGX_DONE;
}


ngx_int_t
ngx_vantage_send_body(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *content_type, ngx_str_t *body)
{
    u_char       *semicolon;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = body->data;
    b->last = body->data + body->len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = body->len;
    r->headers_out.content_type = *content_type;

    /* the type without its parameters, as nginx keeps it */
    semicolon = ngx_strlchr(content_type->data,
                            content_type->data + content_type->len, ';');
    r->headers_out.content_type_len = semicolon
                                      ? (size_t) (semicolon
                                                  - content_type->data)
                                      : content_type->len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_vantage_send_nostore(ngx_http_request_t *r, ngx_str_t *correlation_id,
    ngx_uint_t status, ngx_str_t *content_type, ngx_str_t *body)
{
    if (correlation_id != NULL
        && (ngx_vantage_add_header(r, "X-Correlation-ID",
                                   sizeof("X-Correlation-ID") - 1,
                                   correlation_id->data, correlation_id->len)
            != NGX_OK
            || ngx_vantage_add_header(r, "X-Request-Id",
                                      sizeof("X-Request-Id") - 1,
                                      correlation_id->data,
                                      correlation_id->len)
               != NGX_OK))
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_vantage_add_header(r, "Cache-Control", sizeof("Cache-Control") - 1,
                               (u_char *) "no-store", sizeof("no-store") - 1)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_vantage_send_body(r, status, content_type, body);
}


/*
 * A request header's value: NGX_OK, NGX_DECLINED when it is absent, or
 * NGX_ERROR when it is given twice (which of the two was meant is not for
 * nginx to guess).
 */
ngx_int_t
ngx_vantage_header_once(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value)
{
    ngx_uint_t        i, found;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;
    found = 0;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0 || h[i].key.len != name->len
            || ngx_strncasecmp(h[i].key.data, name->data, name->len) != 0)
        {
            continue;
        }

        if (found) {
            return NGX_ERROR;
        }

        *value = h[i].value;
        found = 1;
    }

    return found ? NGX_OK : NGX_DECLINED;
}


/* {"error":"<error>","error_description":"<description>"} and a newline */
ngx_int_t
ngx_vantage_json_error(ngx_pool_t *pool, const char *error,
    const char *description, ngx_str_t *body)
{
    size_t   len, elen, dlen;
    u_char  *p;

    elen = ngx_strlen(error);
    dlen = ngx_strlen(description);

    len = sizeof("{\"error\":\"\",\"error_description\":\"\"}\n") - 1
          + elen + ngx_escape_json(NULL, (u_char *) error, elen)
          + dlen + ngx_escape_json(NULL, (u_char *) description, dlen);

    body->data = ngx_pnalloc(pool, len);
    if (body->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(body->data, "{\"error\":\"", sizeof("{\"error\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, (u_char *) error, elen);
    p = ngx_cpymem(p, "\",\"error_description\":\"",
                   sizeof("\",\"error_description\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, (u_char *) description, dlen);
    p = ngx_cpymem(p, "\"}\n", sizeof("\"}\n") - 1);
    body->len = p - body->data;

    return NGX_OK;
}


/* an output header; the strings must live as long as the request */
ngx_int_t
ngx_vantage_add_header(ngx_http_request_t *r, const char *name,
    size_t nlen, u_char *value, size_t len)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    h->key.data = (u_char *) name;
    h->key.len = nlen;
    h->value.data = value;
    h->value.len = len;

    return NGX_OK;
}
