/* vw_conf.h -- the worker's configuration file (docs/WORKER.md) */

#ifndef VW_CONF_H
#define VW_CONF_H


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vc_vault.h"


#define VW_CONF_ERR_LEN  512

/* a frame holds a body of up to 16 MiB and its other fields */
#define VW_CONF_MAX_FRAME_DEFAULT  (16 * 1024 * 1024 + 64 * 1024)


typedef struct vw_conf_header_s  vw_conf_header_t;

/* "header = Name: value" or "secret_header = Name /path" (value read) */
struct vw_conf_header_s {
    char                       *name;
    char                       *value;
    unsigned                    secret:1;  /* never logged or printed */
    vw_conf_header_t           *next;
};


typedef struct vw_conf_target_s  vw_conf_target_t;

struct vw_conf_target_s {
    char                       *name;
    unsigned                    max_concurrency;     /* default 8 */
    unsigned                    breaker_failures;    /* default 5 */
    unsigned                    breaker_error_rate;  /* percent, default 50 */
    uint64_t                    breaker_window_ms;   /* default 30 s */
    unsigned                    breaker_min_calls;   /* default 20 */
    uint64_t                    breaker_cooldown_ms; /* default 30 s */
    uint64_t                    connect_timeout_ms;  /* default 10 s */
    char                       *ca_file;    /* NULL: the system's CAs */
    char                       *proxy;      /* NULL: curl's environment
                                               (https_proxy...); "": none */
    vw_conf_target_t           *next;
};


typedef enum {
    VW_ON_DEAD_PROCEED = 0,
    VW_ON_DEAD_BLOCK
} vw_on_dead_e;


typedef enum {
    VW_VENDOR_SALESFORCE = 1,
    VW_VENDOR_HUBSPOT
} vw_vendor_e;


typedef enum {
    VW_OAUTH_JWT_BEARER = 1,    /* Salesforce: RS256 assertion, no secret */
    VW_OAUTH_CLIENT_CREDENTIALS,
    VW_OAUTH_REFRESH_TOKEN,
    VW_OAUTH_PRIVATE_APP        /* HubSpot: a static token from the vault */
} vw_oauth_flow_e;


typedef struct vw_conf_connection_s  vw_conf_connection_t;

/*
 * [connection <name>]: one vendor account (a Salesforce org, a HubSpot
 * portal) and how the worker signs in to it (docs/CONNECTORS.md).  The
 * secrets are vault record names, never values: the worker opens them
 * from Redis when it needs a token.
 */
struct vw_conf_connection_s {
    char                       *name;
    vw_vendor_e                 vendor;
    vw_oauth_flow_e             auth;
    char                       *login_url;     /* Salesforce: the token
                                                  endpoint's host
                                                  (login.salesforce.com,
                                                  test., or My Domain) */
    char                       *token_url;     /* default: vendor's */
    char                       *base_url;      /* HubSpot's API base;
                                                  Salesforce: NULL, the
                                                  token's instance_url */
    char                       *api_version;   /* Salesforce, "62.0" */
    char                       *client_id;     /* not a secret */
    char                       *username;      /* JWT bearer: sub */
    char                       *audience;      /* JWT bearer: aud;
                                                  default login_url */
    char                       *private_key;   /* vault names: */
    char                       *client_secret;
    char                       *refresh_token;
    char                       *token;         /* HubSpot private app */
    uint64_t                    token_lifetime_ms;  /* when the vendor
                                                  gives no expires_in:
                                                  default 1 h */
    unsigned                    limit_share;   /* Salesforce: defer new
                                                  work above this % of
                                                  the daily allowance,
                                                  default 90 */
    uint64_t                    limit_recheck_ms;   /* default 60 s */
    vw_conf_target_t           *target;   /* never NULL after loading:
                                             limits, ca_file, proxy */
    vw_conf_connection_t       *next;
};


typedef enum {
    VW_REPLAY_LATEST = 0,       /* -1: only events from now on */
    VW_REPLAY_EARLIEST          /* -2: every event still retained */
} vw_replay_e;


typedef struct vw_conf_subscription_s  vw_conf_subscription_t;

/*
 * [subscription <name>]: a Salesforce Streaming API channel the worker
 * follows over CometD (docs/CONNECTORS.md, "Change events in"): each
 * event becomes a job of type job for tenant, and the last replay id
 * whose job is durable is kept in Redis, where a restart resumes.
 */
struct vw_conf_subscription_s {
    char                       *name;
    vw_conf_connection_t       *connection;   /* a Salesforce one */
    char                       *channel;      /* /data/...ChangeEvent,
                                                 /event/..__e */
    char                       *job;          /* a job type of the file */
    char                       *tenant;
    vw_replay_e                 replay;       /* with no checkpoint yet */
    vw_conf_subscription_t     *next;
};


/*
 * A loaded mapping, counted: a job that runs long (a bulk load) keeps its
 * mapping through a reload that frees the configuration it came from.
 */
typedef struct {
    struct vc_map_s            *map;
    unsigned                    refs;
} vw_map_ref_t;

vw_map_ref_t *vw_map_ref_hold(vw_map_ref_t *ref);
void vw_map_ref_release(vw_map_ref_t *ref);


typedef struct vw_conf_job_s  vw_conf_job_t;

struct vw_conf_job_s {
    char                       *type;       /* the section's name */
    char                       *connector;  /* "http", "salesforce",
                                               "hubspot" */
    vw_conf_connection_t       *connection; /* salesforce, hubspot */
    char                       *operation;  /* the connector's: e.g.
                                               "upsert" */
    char                       *object;     /* "Contact", "contacts" */
    char                       *id_field;   /* external_id (Salesforce),
                                               id_property (HubSpot) */
    char                       *mapping;    /* a mapping file's path */
    vw_map_ref_t               *map;        /* ... loaded, or NULL */
    char                       *then;       /* a job type its output
                                               becomes, or NULL */
    vw_conf_target_t           *target;     /* never NULL after loading:
                                               a job without "target" gets
                                               a target of its own, named
                                               after the job type */
    char                       *url;
    char                       *method;     /* default POST */
    vw_conf_header_t           *headers;
    uint64_t                    timeout_ms;       /* default 10 s */
    unsigned                    max_attempts;     /* default 8 */
    uint64_t                    max_age_ms;       /* default 24 h */
    uint64_t                    backoff_base_ms;  /* default 1 s */
    uint64_t                    backoff_cap_ms;   /* default 5 min */
    unsigned                    ordering:1;       /* default off */
    vw_on_dead_e                on_dead;          /* default proceed */
    vw_conf_job_t              *next;
};


typedef enum {
    VW_IDP_AUTH_BASIC = 0,      /* client_secret_basic, the default */
    VW_IDP_AUTH_POST            /* client_secret_post */
} vw_idp_auth_e;


typedef struct vw_conf_idp_s  vw_conf_idp_t;

/*
 * [idp <name>]: an identity provider the module names in FETCH
 * (docs/PROTOCOL.md).  Every URL is https://; the worker verifies the
 * provider's certificate against ca_file, or the system's CAs.
 */
struct vw_conf_idp_s {
    char                       *name;
    char                       *discovery;   /* the issuer: discovery reads
                                                <issuer>/.well-known/
                                                openid-configuration */
    char                       *jwks_url;    /* or the key set's URL */
    char                       *introspection_url;
    char                       *ca_file;     /* NULL: the system's CAs */
    char                       *client_id;
    char                       *client_secret;   /* read from the file */
    vw_idp_auth_e               auth;
    uint64_t                    min_refresh_ms;   /* default 60 s */
    uint64_t                    max_age_cap_ms;   /* default 24 h */
    uint64_t                    timeout_ms;       /* default 5 s */
    vw_conf_idp_t              *next;
};


/*
 * [vault]: the credential vault's master key (docs/VAULT.md), read from
 * key_file when the file is loaded, so that --check validates it, and
 * the secrets that must open at start (vault.c).
 */
typedef struct {
    char                       *key_file;   /* NULL: no [vault] */
    vc_vault_key_t              key;        /* cleared when freed */
    char                      **require;    /* valid names, NULL-ended */
    size_t                      nrequire;
} vw_conf_vault_t;


/*
 * [metrics]: where /metrics, /healthz and /readyz are served (metrics.c).
 * Exactly one of host (with port) or path is set when listen is given.
 */
typedef struct {
    char                       *host;       /* NULL: not TCP */
    unsigned                    port;
    char                       *path;       /* NULL: not a Unix socket;
                                               mode as [worker]'s socket */
    unsigned                    admin;      /* admin = on: /admin/ served */
} vw_conf_metrics_t;


typedef enum {
    VW_ALERT_ERROR_RATE = 1,    /* attempts that failed, over a window */
    VW_ALERT_DLQ_SIZE,          /* jobs in {vq}:dead */
    VW_ALERT_BREAKER_OPEN,      /* a target's breaker not closed */
    VW_ALERT_OLDEST_JOB_AGE,    /* the oldest entry of the jobs stream */
    VW_ALERT_QUOTA_SHARE,       /* a vendor allowance's share used */
    VW_ALERT_JWKS_FAILING       /* key set refreshes failed in a row */
} vw_alert_kind_e;


typedef struct vw_conf_alert_s  vw_conf_alert_t;

/*
 * [alert <name>]: one rule (docs/WORKER.md, "Alerting").  At most one of
 * the filters is set, and only one the kind takes; label and filter name
 * it for the evaluation (alert.c).
 */
struct vw_conf_alert_s {
    char                       *name;
    vw_alert_kind_e             kind;
    double                      threshold;   /* oldest_job_age: seconds */
    uint64_t                    for_ms;      /* default 0 */
    uint64_t                    window_ms;   /* error_rate: default 5 m */
    unsigned                    min_attempts;   /* error_rate: default 10 */
    char                       *filter;      /* the value of ... */
    const char                 *label;       /* ... "type", "target",
                                                "stream", "source"; NULL:
                                                no filter */
    const char                 *severity;    /* "critical", "warning"
                                                (default), "info" */
    char                       *threshold_text;  /* as written, until the
                                                    kind is known */
    vw_conf_alert_t            *next;
};


/*
 * [alerting]: how the rules are evaluated and where their notices go.
 * job is NULL when the file has no [alerting].
 */
typedef struct {
    char                       *job;        /* an http job type: delivers */
    uint64_t                    interval_ms;  /* default 15 s */
    uint64_t                    cooldown_ms;  /* default 15 m */
    unsigned                    slack:1;      /* format = slack */
    unsigned                    remind:1;     /* a reminder each cooldown */
    vw_conf_alert_t            *rules;
} vw_conf_alerting_t;


typedef struct {
    char                       *file;       /* the path it was read from */
    char                       *listen;     /* the socket path, no "unix:" */
    unsigned                    listen_mode;  /* default 0660 */
    char                       *listen_group; /* NULL: the worker's own */
    gid_t                       listen_gid;   /* listen_group's, resolved
                                                 at load; (gid_t) -1 when
                                                 none */
    char                       *redis;      /* host:port or unix:<path> */
    char                       *redis_password;  /* read from the file */
    char                       *consumer;   /* default <hostname>:<pid> */
    unsigned                    concurrency;          /* default 64 */
    uint64_t                    visibility_timeout_ms; /* default 60 s */
    uint64_t                    inflight_cap;         /* default 100000 */
    uint64_t                    idempotency_window_ms; /* default 24 h */
    uint64_t                    done_retention_ms;    /* default 24 h */
    uint64_t                    dead_retention_ms;    /* default 14 d */
    uint64_t                    ordering_recheck_ms;  /* default 1 s */
    uint64_t                    shutdown_timeout_ms;  /* default 20 s */
    size_t                      max_frame;   /* default 16 MiB + 64 KiB */
    vw_conf_target_t           *targets;
    vw_conf_job_t              *jobs;
    vw_conf_idp_t              *idps;
    vw_conf_connection_t       *connections;
    vw_conf_subscription_t     *subscriptions;
    vw_conf_vault_t             vault;
    vw_conf_metrics_t           metrics;    /* all NULL: no [metrics] */
    vw_conf_alerting_t          alerting;   /* job NULL: no [alerting] */
} vw_conf_t;


/*
 * Reads and validates a file.  Returns the configuration, or NULL with
 * err holding one line that names the file, the line and the key, e.g.
 * "worker.conf:12: backoff_base: \"ten\" is not a duration".  The line
 * never holds a secret.  Reads the secret files it names; touches neither
 * Redis nor the socket, so that --check can run anywhere.
 */
vw_conf_t *vw_conf_load(const char *file, char *err, size_t errlen);

/*
 * A configuration with the defaults, no file, no listen, no redis, no
 * target and no job: what main.c fills from the command line when no -c
 * is given.  NULL when out of memory.
 */
vw_conf_t *vw_conf_new(void);

/* frees everything, and clears the secrets' memory first; NULL is fine */
void vw_conf_free(vw_conf_t *conf);

/* the job type's configuration, or NULL when it has none */
const vw_conf_job_t *vw_conf_job(const vw_conf_t *conf, const char *type,
    size_t len);

/* the target of that name (implicit ones included), or NULL */
const vw_conf_target_t *vw_conf_target(const vw_conf_t *conf,
    const char *name);

/* the connection of that name, or NULL */
const vw_conf_connection_t *vw_conf_connection(const vw_conf_t *conf,
    const char *name);

/* the subscription of that name, or NULL */
const vw_conf_subscription_t *vw_conf_subscription(const vw_conf_t *conf,
    const char *name);

/* a deep copy a running job keeps across a reload (vault names, not
   secrets); NULL when out of memory.  Freed with the next call. */
vw_conf_connection_t *vw_conf_connection_copy(
    const vw_conf_connection_t *c);
void vw_conf_connection_free(vw_conf_connection_t *c);

/* the identity provider of that name, or NULL */
const vw_conf_idp_t *vw_conf_idp(const vw_conf_t *conf, const char *name,
    size_t len);

/*
 * The identity provider a URL names, compared byte for byte: with keys
 * set, the one whose discovery or jwks_url it is (a FETCH of a key set or
 * a discovery document); else the one whose introspection_url it is.
 * NULL when none does.  vw_conf_load() refuses a file in which two
 * sections share such a URL, so there is one at most.
 */
const vw_conf_idp_t *vw_conf_idp_url(const vw_conf_t *conf, const char *url,
    size_t len, unsigned keys);

/*
 * main.c: the configuration in force.  SIGHUP swaps in a new one and frees
 * the old one at once, from the event loop.  So a module reads it afresh
 * in each callback and never keeps a pointer into it (a job's, a target's,
 * a header's) across callbacks: an attempt copies what it needs (URL,
 * headers, timeouts) when it starts.  listen, redis, redis_password,
 * consumer, max_frame, listen_mode and listen_group keep the values the
 * worker started with until it restarts.  Never NULL once the loop runs.
 */
const vw_conf_t *vw_conf_current(void);


#endif /* VW_CONF_H */
