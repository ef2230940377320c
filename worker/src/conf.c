/* conf.c -- reads and validates the worker's configuration file */

/*
 * The file is INI (docs/WORKER.md, "The configuration file"): [worker],
 * [target <name>], [job <type>], [idp <name>], [vault], [alerting] and
 * [alert <name>] sections (and those below) of "key = value" lines.  The
 * reader is strict: a key it does not know, a key given twice, a value it
 * cannot parse or a rule between values that does not hold stops the load
 * with one line naming the file, the line and the key, so that a typo never
 * turns silently into a default.  The first error wins; nothing is logged
 * here, the caller decides where the line goes.
 *
 * Secrets (secret_header values, the Redis password, an identity
 * provider's client secret, the vault's master key) are read from files
 * named in the configuration.  No error message quotes a secret or a value
 * that may be one: header values are never quoted, and a path that is not
 * absolute is refused without quoting it, in case a value was pasted where
 * its file's path belongs.  Their memory is cleared before it is freed.
 */

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "vc_map.h"
#include "vw_core.h"
#include "vw_conf.h"


#define VW_CONF_MAX_KEYS      24
#define VW_CONF_NAME_MAX      128       /* as server.c takes job types */
#define VW_CONF_SECRET_MAX    (64 * 1024)
#define VW_CONF_QUOTE_MAX     64

#define VW_CONF_SECOND        1000ULL
#define VW_CONF_MINUTE        (60 * VW_CONF_SECOND)
#define VW_CONF_HOUR          (60 * VW_CONF_MINUTE)
#define VW_CONF_DAY           (24 * VW_CONF_HOUR)

/* long enough for any retention; small enough that now + it never wraps */
#define VW_CONF_DURATION_MAX  (3650 * VW_CONF_DAY)

/*
 * An attempt's stream entry must not look idle to other workers while it
 * runs: its HTTP call may take the whole job timeout, and recording the
 * outcome (a Redis transaction, on a loaded Redis) comes after that.
 */
#define VW_CONF_VISIBILITY_SLACK  (5 * VW_CONF_SECOND)


typedef enum {
    VW_CONF_WORKER = 0,
    VW_CONF_TARGET,
    VW_CONF_JOB,
    VW_CONF_IDP,
    VW_CONF_VAULT,
    VW_CONF_CONNECTION,
    VW_CONF_SUBSCRIPTION,
    VW_CONF_METRICS,
    VW_CONF_ALERTING,
    VW_CONF_ALERT,
    VW_CONF_KINDS
} vw_conf_kind_e;


typedef struct vw_conf_sect_s  vw_conf_sect_t;

/* what the reader remembers of a section until the file is read */
struct vw_conf_sect_s {
    vw_conf_kind_e              kind;
    unsigned                    line;
    char                       *name;       /* NULL for [worker] */
    void                       *obj;        /* vw_conf_t, _target_t, _job_t */
    unsigned                    lines[VW_CONF_MAX_KEYS];  /* 0: not set */
    char                       *target;     /* a job's "target" value */
    char                       *connection; /* a job's "connection" */
    vw_conf_sect_t             *next;
};


typedef struct {
    const char                 *file;
    unsigned                    line;
    char                       *err;
    size_t                      errlen;
    vw_conf_t                  *conf;
    vw_conf_sect_t             *sects;
    vw_conf_sect_t            **sects_tail;
    vw_conf_sect_t             *sect;       /* the one being read */
    vw_conf_target_t          **targets_tail;
    vw_conf_job_t             **jobs_tail;
    vw_conf_idp_t             **idps_tail;
    vw_conf_connection_t      **connections_tail;
    vw_conf_subscription_t    **subscriptions_tail;
    vw_conf_alert_t           **alerts_tail;
} vw_conf_ctx_t;


typedef struct vw_conf_key_s  vw_conf_key_t;

typedef int (*vw_conf_set_pt)(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);

struct vw_conf_key_s {
    const char                 *name;
    vw_conf_set_pt              set;
    size_t                      offset;     /* of the field in obj */
    uint64_t                    min;
    uint64_t                    max;
    unsigned                    repeat:1;   /* may be given more than once */
};


static int vw_conf_set_duration(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_unsigned(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_uint64(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_size(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_listen(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_listen_mode(vw_conf_ctx_t *ctx,
    const vw_conf_key_t *key, const char *value, void *obj);
static int vw_conf_set_listen_group(vw_conf_ctx_t *ctx,
    const vw_conf_key_t *key, const char *value, void *obj);
static int vw_conf_set_redis(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_password(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_consumer(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_connector(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_target(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_url(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_method(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_header(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_secret_header(vw_conf_ctx_t *ctx,
    const vw_conf_key_t *key, const char *value, void *obj);
static int vw_conf_set_ordering(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_on_dead(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_https_url(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_ca_file(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_proxy(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_client_id(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_client_secret(vw_conf_ctx_t *ctx,
    const vw_conf_key_t *key, const char *value, void *obj);
static int vw_conf_set_auth(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_flag(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_metrics_listen(vw_conf_ctx_t *ctx,
    const vw_conf_key_t *key, const char *value, void *obj);
static int vw_conf_set_vault_key(vw_conf_ctx_t *ctx,
    const vw_conf_key_t *key, const char *value, void *obj);
static int vw_conf_set_vault_require(vw_conf_ctx_t *ctx,
    const vw_conf_key_t *key, const char *value, void *obj);
static int vw_conf_set_job_connection(vw_conf_ctx_t *ctx,
    const vw_conf_key_t *key, const char *value, void *obj);
static int vw_conf_set_word(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_text(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_mapping(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_vendor(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_oauth_flow(vw_conf_ctx_t *ctx,
    const vw_conf_key_t *key, const char *value, void *obj);
static int vw_conf_set_vault_name(vw_conf_ctx_t *ctx,
    const vw_conf_key_t *key, const char *value, void *obj);
static int vw_conf_set_api_version(vw_conf_ctx_t *ctx,
    const vw_conf_key_t *key, const char *value, void *obj);
static int vw_conf_set_channel(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_replay(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj);
static int vw_conf_set_alert_format(vw_conf_ctx_t *ctx,
    const vw_conf_key_t *key, const char *value, void *obj);
static int vw_conf_set_alert_remind(vw_conf_ctx_t *ctx,
    const vw_conf_key_t *key, const char *value, void *obj);
static int vw_conf_set_alert_kind(vw_conf_ctx_t *ctx,
    const vw_conf_key_t *key, const char *value, void *obj);
static int vw_conf_set_alert_threshold(vw_conf_ctx_t *ctx,
    const vw_conf_key_t *key, const char *value, void *obj);
static int vw_conf_set_alert_filter(vw_conf_ctx_t *ctx,
    const vw_conf_key_t *key, const char *value, void *obj);
static int vw_conf_set_alert_severity(vw_conf_ctx_t *ctx,
    const vw_conf_key_t *key, const char *value, void *obj);
static int vw_conf_finish_alerting(vw_conf_ctx_t *ctx, vw_conf_sect_t *s);
static int vw_conf_finish_alert(vw_conf_ctx_t *ctx, vw_conf_sect_t *s);
static int vw_conf_finish_subscription(vw_conf_ctx_t *ctx,
    vw_conf_sect_t *s);


#define vw_off(type, field)  offsetof(type, field)

static const vw_conf_key_t  vw_conf_worker_keys[] = {
    { "listen", vw_conf_set_listen, 0, 0, 0, 0 },
    { "redis", vw_conf_set_redis, 0, 0, 0, 0 },
    { "redis_password_file", vw_conf_set_password, 0, 0, 0, 0 },
    { "consumer", vw_conf_set_consumer, 0, 0, 0, 0 },
    { "concurrency", vw_conf_set_unsigned,
      vw_off(vw_conf_t, concurrency), 1, 65535, 0 },
    { "visibility_timeout", vw_conf_set_duration,
      vw_off(vw_conf_t, visibility_timeout_ms), 1, VW_CONF_DURATION_MAX, 0 },
    { "inflight_cap", vw_conf_set_uint64,
      vw_off(vw_conf_t, inflight_cap), 1, UINT32_MAX, 0 },
    { "idempotency_window", vw_conf_set_duration,
      vw_off(vw_conf_t, idempotency_window_ms), 1, VW_CONF_DURATION_MAX, 0 },
    { "done_retention", vw_conf_set_duration,
      vw_off(vw_conf_t, done_retention_ms), 1, VW_CONF_DURATION_MAX, 0 },
    { "dead_retention", vw_conf_set_duration,
      vw_off(vw_conf_t, dead_retention_ms), 1, VW_CONF_DURATION_MAX, 0 },
    { "ordering_recheck", vw_conf_set_duration,
      vw_off(vw_conf_t, ordering_recheck_ms), 1, VW_CONF_DURATION_MAX, 0 },
    /* 0: stop at once, abandoning running attempts to redelivery */
    { "shutdown_timeout", vw_conf_set_duration,
      vw_off(vw_conf_t, shutdown_timeout_ms), 0, VW_CONF_DURATION_MAX, 0 },
    /* as --max-frame */
    { "max_frame", vw_conf_set_size,
      vw_off(vw_conf_t, max_frame), 64, 0x7fffffff, 0 },
    /* the socket's, applied right after bind (server.c) */
    { "listen_mode", vw_conf_set_listen_mode, 0, 0, 0, 0 },
    { "listen_group", vw_conf_set_listen_group, 0, 0, 0, 0 },
    { NULL, NULL, 0, 0, 0, 0 }
};


static const vw_conf_key_t  vw_conf_target_keys[] = {
    { "max_concurrency", vw_conf_set_unsigned,
      vw_off(vw_conf_target_t, max_concurrency), 1, 65535, 0 },
    { "breaker_failures", vw_conf_set_unsigned,
      vw_off(vw_conf_target_t, breaker_failures), 1, UINT32_MAX, 0 },
    { "breaker_error_rate", vw_conf_set_unsigned,
      vw_off(vw_conf_target_t, breaker_error_rate), 1, 100, 0 },
    { "breaker_window", vw_conf_set_duration,
      vw_off(vw_conf_target_t, breaker_window_ms), 1,
      VW_CONF_DURATION_MAX, 0 },
    { "breaker_min_calls", vw_conf_set_unsigned,
      vw_off(vw_conf_target_t, breaker_min_calls), 1, UINT32_MAX, 0 },
    { "breaker_cooldown", vw_conf_set_duration,
      vw_off(vw_conf_target_t, breaker_cooldown_ms), 1,
      VW_CONF_DURATION_MAX, 0 },
    { "connect_timeout", vw_conf_set_duration,
      vw_off(vw_conf_target_t, connect_timeout_ms), 1, 5 * VW_CONF_MINUTE,
      0 },
    { "ca_file", vw_conf_set_ca_file,
      vw_off(vw_conf_target_t, ca_file), 0, 0, 0 },
    { "proxy", vw_conf_set_proxy, vw_off(vw_conf_target_t, proxy), 0, 0, 0 },
    { NULL, NULL, 0, 0, 0, 0 }
};


/* the indexes of the job keys that the checks after reading look at */
enum {
    VW_CONF_JOB_CONNECTOR = 0,
    VW_CONF_JOB_TARGET,
    VW_CONF_JOB_URL,
    VW_CONF_JOB_TIMEOUT = 6,
    VW_CONF_JOB_BACKOFF_BASE = 9,
    VW_CONF_JOB_BACKOFF_CAP,
    VW_CONF_JOB_CONNECTION = 13,
    VW_CONF_JOB_OPERATION,
    VW_CONF_JOB_OBJECT,
    VW_CONF_JOB_EXTERNAL_ID,
    VW_CONF_JOB_ID_PROPERTY,
    VW_CONF_JOB_MAPPING,
    VW_CONF_JOB_THEN
};

static const vw_conf_key_t  vw_conf_job_keys[] = {
    { "connector", vw_conf_set_connector, 0, 0, 0, 0 },
    { "target", vw_conf_set_target, 0, 0, 0, 0 },
    { "url", vw_conf_set_url, 0, 0, 0, 0 },
    { "method", vw_conf_set_method, 0, 0, 0, 0 },
    { "header", vw_conf_set_header, 0, 0, 0, 1 },
    { "secret_header", vw_conf_set_secret_header, 0, 0, 0, 1 },
    { "timeout", vw_conf_set_duration,
      vw_off(vw_conf_job_t, timeout_ms), 1, VW_CONF_DURATION_MAX, 0 },
    { "max_attempts", vw_conf_set_unsigned,
      vw_off(vw_conf_job_t, max_attempts), 1, UINT32_MAX, 0 },
    { "max_age", vw_conf_set_duration,
      vw_off(vw_conf_job_t, max_age_ms), 1, VW_CONF_DURATION_MAX, 0 },
    { "backoff_base", vw_conf_set_duration,
      vw_off(vw_conf_job_t, backoff_base_ms), 1, VW_CONF_DURATION_MAX, 0 },
    { "backoff_cap", vw_conf_set_duration,
      vw_off(vw_conf_job_t, backoff_cap_ms), 1, VW_CONF_DURATION_MAX, 0 },
    { "ordering", vw_conf_set_ordering, 0, 0, 0, 0 },
    { "on_dead", vw_conf_set_on_dead, 0, 0, 0, 0 },
    /* the vendor connectors' (docs/CONNECTORS.md) */
    { "connection", vw_conf_set_job_connection, 0, 0, 0, 0 },
    { "operation", vw_conf_set_word,
      vw_off(vw_conf_job_t, operation), 0, 0, 0 },
    { "object", vw_conf_set_word, vw_off(vw_conf_job_t, object), 0, 0, 0 },
    { "external_id", vw_conf_set_word,
      vw_off(vw_conf_job_t, id_field), 0, 0, 0 },
    { "id_property", vw_conf_set_word,
      vw_off(vw_conf_job_t, id_field), 0, 0, 0 },
    { "mapping", vw_conf_set_mapping, 0, 0, 0, 0 },
    { "then", vw_conf_set_word, vw_off(vw_conf_job_t, then), 0, 0, 0 },
    { NULL, NULL, 0, 0, 0, 0 }
};

/* the indexes of the idp keys that the checks after reading look at */
enum {
    VW_CONF_IDP_DISCOVERY = 0,
    VW_CONF_IDP_JWKS_URL,
    VW_CONF_IDP_INTROSPECTION_URL,
    VW_CONF_IDP_CLIENT_ID = 4,
    VW_CONF_IDP_CLIENT_SECRET,
    VW_CONF_IDP_MIN_REFRESH = 7,
    VW_CONF_IDP_MAX_AGE_CAP
};

static const vw_conf_key_t  vw_conf_idp_keys[] = {
    { "discovery", vw_conf_set_https_url,
      vw_off(vw_conf_idp_t, discovery), 0, 0, 0 },
    { "jwks_url", vw_conf_set_https_url,
      vw_off(vw_conf_idp_t, jwks_url), 0, 0, 0 },
    { "introspection_url", vw_conf_set_https_url,
      vw_off(vw_conf_idp_t, introspection_url), 0, 0, 0 },
    { "ca_file", vw_conf_set_ca_file, vw_off(vw_conf_idp_t, ca_file), 0, 0,
      0 },
    { "client_id", vw_conf_set_client_id, 0, 0, 0, 0 },
    { "client_secret_file", vw_conf_set_client_secret, 0, 0, 0, 0 },
    { "auth", vw_conf_set_auth, 0, 0, 0, 0 },
    { "min_refresh", vw_conf_set_duration,
      vw_off(vw_conf_idp_t, min_refresh_ms), VW_CONF_SECOND,
      VW_CONF_DURATION_MAX, 0 },
    { "max_age_cap", vw_conf_set_duration,
      vw_off(vw_conf_idp_t, max_age_cap_ms), VW_CONF_SECOND,
      VW_CONF_DURATION_MAX, 0 },
    /* a FETCH waits for it (twice with discovery): keep it short */
    { "timeout", vw_conf_set_duration,
      vw_off(vw_conf_idp_t, timeout_ms), 1, 5 * VW_CONF_MINUTE, 0 },
    { NULL, NULL, 0, 0, 0, 0 }
};

/* [vault]: no name, like [worker]; its object is conf->vault */
static const vw_conf_key_t  vw_conf_vault_keys[] = {
    { "key_file", vw_conf_set_vault_key, 0, 0, 0, 0 },
    /* blank-separated names; repeatable */
    { "require", vw_conf_set_vault_require, 0, 0, 0, 1 },
    { NULL, NULL, 0, 0, 0, 0 }
};

/* [metrics]: no name; its object is conf->metrics */
static const vw_conf_key_t  vw_conf_metrics_keys[] = {
    { "listen", vw_conf_set_metrics_listen, 0, 0, 0, 0 },
    { "admin", vw_conf_set_flag, vw_off(vw_conf_metrics_t, admin), 0, 0, 0 },
    { NULL, NULL, 0, 0, 0, 0 }
};

/* the indexes of the connection keys that the checks look at */
enum {
    VW_CONF_CONN_VENDOR = 0,
    VW_CONF_CONN_AUTH,
    VW_CONF_CONN_LOGIN_URL,
    VW_CONF_CONN_TOKEN_URL,
    VW_CONF_CONN_BASE_URL,
    VW_CONF_CONN_API_VERSION,
    VW_CONF_CONN_CLIENT_ID,
    VW_CONF_CONN_USERNAME,
    VW_CONF_CONN_AUDIENCE,
    VW_CONF_CONN_PRIVATE_KEY,
    VW_CONF_CONN_CLIENT_SECRET,
    VW_CONF_CONN_REFRESH_TOKEN,
    VW_CONF_CONN_TOKEN,
    VW_CONF_CONN_TOKEN_LIFETIME,
    VW_CONF_CONN_LIMIT_SHARE,
    VW_CONF_CONN_LIMIT_RECHECK,
    VW_CONF_CONN_TARGET
};

static const vw_conf_key_t  vw_conf_connection_keys[] = {
    { "vendor", vw_conf_set_vendor, 0, 0, 0, 0 },
    { "auth", vw_conf_set_oauth_flow, 0, 0, 0, 0 },
    { "login_url", vw_conf_set_https_url,
      vw_off(vw_conf_connection_t, login_url), 0, 0, 0 },
    { "token_url", vw_conf_set_https_url,
      vw_off(vw_conf_connection_t, token_url), 0, 0, 0 },
    { "base_url", vw_conf_set_https_url,
      vw_off(vw_conf_connection_t, base_url), 0, 0, 0 },
    { "api_version", vw_conf_set_api_version, 0, 0, 0, 0 },
    { "client_id", vw_conf_set_text,
      vw_off(vw_conf_connection_t, client_id), 0, 0, 0 },
    { "username", vw_conf_set_text,
      vw_off(vw_conf_connection_t, username), 0, 0, 0 },
    { "audience", vw_conf_set_text,
      vw_off(vw_conf_connection_t, audience), 0, 0, 0 },
    /* vault record names, never values */
    { "private_key", vw_conf_set_vault_name,
      vw_off(vw_conf_connection_t, private_key), 0, 0, 0 },
    { "client_secret", vw_conf_set_vault_name,
      vw_off(vw_conf_connection_t, client_secret), 0, 0, 0 },
    { "refresh_token", vw_conf_set_vault_name,
      vw_off(vw_conf_connection_t, refresh_token), 0, 0, 0 },
    { "token", vw_conf_set_vault_name,
      vw_off(vw_conf_connection_t, token), 0, 0, 0 },
    { "token_lifetime", vw_conf_set_duration,
      vw_off(vw_conf_connection_t, token_lifetime_ms), 2 * VW_CONF_MINUTE,
      VW_CONF_DAY, 0 },
    { "limit_share", vw_conf_set_unsigned,
      vw_off(vw_conf_connection_t, limit_share), 1, 100, 0 },
    { "limit_recheck", vw_conf_set_duration,
      vw_off(vw_conf_connection_t, limit_recheck_ms), VW_CONF_SECOND,
      VW_CONF_DAY, 0 },
    { "target", vw_conf_set_target, 0, 0, 0, 0 },
    { NULL, NULL, 0, 0, 0, 0 }
};

/* the indexes of the subscription keys that the checks look at */
enum {
    VW_CONF_SUB_CONNECTION = 0,
    VW_CONF_SUB_CHANNEL,
    VW_CONF_SUB_JOB,
    VW_CONF_SUB_TENANT
};

static const vw_conf_key_t  vw_conf_subscription_keys[] = {
    { "connection", vw_conf_set_job_connection, 0, 0, 0, 0 },
    { "channel", vw_conf_set_channel, 0, 0, 0, 0 },
    { "job", vw_conf_set_word, vw_off(vw_conf_subscription_t, job), 0, 0,
      0 },
    { "tenant", vw_conf_set_word, vw_off(vw_conf_subscription_t, tenant), 0,
      0, 0 },
    { "replay", vw_conf_set_replay, 0, 0, 0, 0 },
    { NULL, NULL, 0, 0, 0, 0 }
};

/* [alerting]: no name; its object is conf->alerting */
enum {
    VW_CONF_ALERTING_JOB = 2
};

static const vw_conf_key_t  vw_conf_alerting_keys[] = {
    { "interval", vw_conf_set_duration,
      vw_off(vw_conf_alerting_t, interval_ms), 10, VW_CONF_HOUR, 0 },
    /* a Redis PX: 1 ms at least */
    { "cooldown", vw_conf_set_duration,
      vw_off(vw_conf_alerting_t, cooldown_ms), 1, VW_CONF_DURATION_MAX, 0 },
    { "job", vw_conf_set_word, vw_off(vw_conf_alerting_t, job), 0, 0, 0 },
    { "format", vw_conf_set_alert_format, 0, 0, 0, 0 },
    { "remind", vw_conf_set_alert_remind, 0, 0, 0, 0 },
    { NULL, NULL, 0, 0, 0, 0 }
};

/* the indexes of the alert keys that the checks after reading look at */
enum {
    VW_CONF_ALERT_KIND = 0,
    VW_CONF_ALERT_THRESHOLD,
    VW_CONF_ALERT_FOR,
    VW_CONF_ALERT_WINDOW,
    VW_CONF_ALERT_MIN_ATTEMPTS,
    VW_CONF_ALERT_TYPE,
    VW_CONF_ALERT_TARGET,
    VW_CONF_ALERT_STREAM,
    VW_CONF_ALERT_SOURCE
};

#define VW_CONF_ALERT_NFILTERS  4

static const vw_conf_key_t  vw_conf_alert_keys[] = {
    { "kind", vw_conf_set_alert_kind, 0, 0, 0, 0 },
    { "threshold", vw_conf_set_alert_threshold, 0, 0, 0, 0 },
    { "for", vw_conf_set_duration, vw_off(vw_conf_alert_t, for_ms), 0,
      VW_CONF_DURATION_MAX, 0 },
    { "window", vw_conf_set_duration, vw_off(vw_conf_alert_t, window_ms), 1,
      VW_CONF_DAY, 0 },
    { "min_attempts", vw_conf_set_unsigned,
      vw_off(vw_conf_alert_t, min_attempts), 1, UINT32_MAX, 0 },
    /* the filters: VW_CONF_ALERT_NFILTERS of them, in this order */
    { "type", vw_conf_set_alert_filter, 0, 0, 0, 0 },
    { "target", vw_conf_set_alert_filter, 0, 0, 0, 0 },
    { "stream", vw_conf_set_alert_filter, 0, 0, 0, 0 },
    { "source", vw_conf_set_alert_filter, 0, 0, 0, 0 },
    { "severity", vw_conf_set_alert_severity, 0, 0, 0, 0 },
    { NULL, NULL, 0, 0, 0, 0 }
};

/* the worker's own keys that the checks after reading look at */
enum {
    VW_CONF_WORKER_LISTEN = 0,
    VW_CONF_WORKER_REDIS,
    VW_CONF_WORKER_VISIBILITY = 5,
    VW_CONF_WORKER_IDEMPOTENCY = 7,
    VW_CONF_WORKER_DONE_RETENTION
};

#undef vw_off


static const vw_conf_key_t  *vw_conf_keys[] = {
    vw_conf_worker_keys, vw_conf_target_keys, vw_conf_job_keys,
    vw_conf_idp_keys, vw_conf_vault_keys, vw_conf_connection_keys,
    vw_conf_subscription_keys, vw_conf_metrics_keys, vw_conf_alerting_keys,
    vw_conf_alert_keys
};

static const char  *vw_conf_kinds[] = {
    "worker", "target", "job", "idp", "vault", "connection", "subscription",
    "metrics", "alerting", "alert"
};


/* the operations each connector takes (docs/CONNECTORS.md) */
static const char *const  vw_conf_salesforce_ops[] = {
    "create", "update", "upsert", "publish", "collections_create",
    "collections_update", "collections_upsert", "query", "bulk_insert",
    "bulk_update", "bulk_upsert", "bulk_delete", "bulk_query", "read", NULL
};

/* the operations whose output (a record) a "then" job takes */
static const char *const  vw_conf_then_ops[] = {
    "read", NULL
};

static const char *const  vw_conf_hubspot_ops[] = {
    "create", "update", "upsert", "batch_create", "batch_update",
    "batch_upsert", "search", "list", "associate", "read", NULL
};


static int vw_conf_read(vw_conf_ctx_t *ctx, FILE *f);
static int vw_conf_line(vw_conf_ctx_t *ctx, char *line);
static int vw_conf_section(vw_conf_ctx_t *ctx, char *p);
static int vw_conf_finish(vw_conf_ctx_t *ctx);
static int vw_conf_finish_job(vw_conf_ctx_t *ctx, vw_conf_sect_t *s);
static int vw_conf_finish_idp(vw_conf_ctx_t *ctx, vw_conf_sect_t *s);
static int vw_conf_idp_unique(vw_conf_ctx_t *ctx, vw_conf_sect_t *s);
static int vw_conf_finish_connection(vw_conf_ctx_t *ctx, vw_conf_sect_t *s,
    const vw_conf_sect_t *vault);
static int vw_conf_finish_connector_job(vw_conf_ctx_t *ctx,
    vw_conf_sect_t *s);
static int vw_conf_resolve_target(vw_conf_ctx_t *ctx, vw_conf_sect_t *s,
    const char *implicit, vw_conf_target_t **target);
static const char *vw_conf_flow_name(vw_oauth_flow_e flow);
static int vw_conf_error(vw_conf_ctx_t *ctx, unsigned line, const char *key,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static const char *vw_conf_quote(char *buf, size_t size, const char *s);
static const char *vw_conf_fmt_ms(char *buf, size_t size, uint64_t ms);
static const char *vw_conf_label(vw_conf_sect_t *s, char *buf, size_t size);
static int vw_conf_valid_name(const char *s);
static int vw_conf_read_secret(vw_conf_ctx_t *ctx, const char *key,
    const char *path, char **value);
static vw_conf_target_t *vw_conf_target_new(vw_conf_ctx_t *ctx,
    const char *name);
static void vw_conf_secret_free(char *s);
static char *vw_conf_default_consumer(void);
static char *vw_conf_trim(char *s);


vw_conf_t *
vw_conf_new(void)
{
    vw_conf_t  *conf;

    conf = calloc(1, sizeof(vw_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->concurrency = 64;
    conf->visibility_timeout_ms = 60 * VW_CONF_SECOND;
    conf->inflight_cap = 100000;
    conf->idempotency_window_ms = 24 * VW_CONF_HOUR;
    conf->done_retention_ms = 24 * VW_CONF_HOUR;
    conf->dead_retention_ms = 14 * VW_CONF_DAY;
    conf->ordering_recheck_ms = VW_CONF_SECOND;
    conf->shutdown_timeout_ms = 20 * VW_CONF_SECOND;
    conf->max_frame = VW_CONF_MAX_FRAME_DEFAULT;
    conf->listen_mode = 0660;
    conf->listen_gid = (gid_t) -1;
    conf->alerting.interval_ms = 15 * VW_CONF_SECOND;
    conf->alerting.cooldown_ms = 15 * VW_CONF_MINUTE;

    conf->consumer = vw_conf_default_consumer();
    if (conf->consumer == NULL) {
        free(conf);
        return NULL;
    }

    return conf;
}


/* <hostname>:<pid>: unique among the workers sharing a Redis */
static char *
vw_conf_default_consumer(void)
{
    char   host[256], *consumer;

    if (gethostname(host, sizeof(host)) != 0) {
        strcpy(host, "localhost");
    }

    host[sizeof(host) - 1] = '\0';

    consumer = malloc(strlen(host) + 24);
    if (consumer != NULL) {
        sprintf(consumer, "%s:%ld", host, (long) getpid());
    }

    return consumer;
}


vw_conf_t *
vw_conf_load(const char *file, char *err, size_t errlen)
{
    int              rc;
    FILE            *f;
    vw_conf_sect_t  *s, *next;
    vw_conf_ctx_t    ctx;

    memset(&ctx, 0, sizeof(vw_conf_ctx_t));
    ctx.file = file;
    ctx.err = err;
    ctx.errlen = errlen;
    ctx.sects_tail = &ctx.sects;

    if (errlen > 0) {
        err[0] = '\0';
    }

    ctx.conf = vw_conf_new();
    if (ctx.conf == NULL) {
        snprintf(err, errlen, "%s: out of memory", file);
        return NULL;
    }

    ctx.targets_tail = &ctx.conf->targets;
    ctx.jobs_tail = &ctx.conf->jobs;
    ctx.idps_tail = &ctx.conf->idps;
    ctx.connections_tail = &ctx.conf->connections;
    ctx.subscriptions_tail = &ctx.conf->subscriptions;
    ctx.alerts_tail = &ctx.conf->alerting.rules;

    ctx.conf->file = strdup(file);

    f = fopen(file, "r");

    if (ctx.conf->file == NULL || f == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", file,
                 f == NULL ? strerror(errno) : "out of memory");
        if (f != NULL) {
            fclose(f);
        }

        vw_conf_free(ctx.conf);
        return NULL;
    }

    rc = vw_conf_read(&ctx, f);

    fclose(f);

    if (rc == VW_OK) {
        rc = vw_conf_finish(&ctx);
    }

    for (s = ctx.sects; s != NULL; s = next) {
        next = s->next;
        free(s->name);
        free(s->target);
        free(s->connection);
        free(s);
    }

    if (rc != VW_OK) {
        vw_conf_free(ctx.conf);
        return NULL;
    }

    return ctx.conf;
}


void
vw_conf_free(vw_conf_t *conf)
{
    size_t             i;
    vw_conf_job_t     *job, *next_job;
    vw_conf_header_t  *h, *next_h;
    vw_conf_target_t  *t, *next_t;
    vw_conf_idp_t     *idp, *next_idp;
    vw_conf_connection_t  *c, *next_c;
    vw_conf_subscription_t  *sub, *next_sub;
    vw_conf_alert_t  *rule, *next_rule;

    if (conf == NULL) {
        return;
    }

    for (rule = conf->alerting.rules; rule != NULL; rule = next_rule) {
        next_rule = rule->next;
        free(rule->name);
        free(rule->filter);
        free(rule->threshold_text);
        free(rule);
    }

    free(conf->alerting.job);

    for (c = conf->connections; c != NULL; c = next_c) {
        next_c = c->next;
        vw_conf_connection_free(c);
    }

    for (sub = conf->subscriptions; sub != NULL; sub = next_sub) {
        next_sub = sub->next;
        free(sub->name);
        free(sub->channel);
        free(sub->job);
        free(sub->tenant);
        free(sub);
    }

    for (idp = conf->idps; idp != NULL; idp = next_idp) {
        next_idp = idp->next;
        free(idp->name);
        free(idp->discovery);
        free(idp->jwks_url);
        free(idp->introspection_url);
        free(idp->ca_file);
        free(idp->client_id);
        vw_conf_secret_free(idp->client_secret);
        free(idp);
    }

    for (job = conf->jobs; job != NULL; job = next_job) {
        next_job = job->next;

        for (h = job->headers; h != NULL; h = next_h) {
            next_h = h->next;
            free(h->name);

            if (h->secret) {
                vw_conf_secret_free(h->value);
            } else {
                free(h->value);
            }

            free(h);
        }

        free(job->type);
        free(job->connector);
        free(job->url);
        free(job->method);
        free(job->operation);
        free(job->object);
        free(job->id_field);
        free(job->mapping);
        free(job->then);
        vw_map_ref_release(job->map);
        free(job);
    }

    for (t = conf->targets; t != NULL; t = next_t) {
        next_t = t->next;
        free(t->name);
        free(t->ca_file);
        free(t->proxy);
        free(t);
    }

    free(conf->metrics.host);
    free(conf->metrics.path);
    free(conf->vault.key_file);
    vc_vault_key_clear(&conf->vault.key);

    if (conf->vault.require != NULL) {
        for (i = 0; i < conf->vault.nrequire; i++) {
            free(conf->vault.require[i]);
        }

        free(conf->vault.require);
    }

    free(conf->file);
    free(conf->listen);
    free(conf->listen_group);
    free(conf->redis);
    vw_conf_secret_free(conf->redis_password);
    free(conf->consumer);
    free(conf);
}


const vw_conf_job_t *
vw_conf_job(const vw_conf_t *conf, const char *type, size_t len)
{
    const vw_conf_job_t  *job;

    if (conf == NULL) {
        return NULL;
    }

    for (job = conf->jobs; job != NULL; job = job->next) {
        if (strlen(job->type) == len && memcmp(job->type, type, len) == 0) {
            return job;
        }
    }

    return NULL;
}


const vw_conf_idp_t *
vw_conf_idp(const vw_conf_t *conf, const char *name, size_t len)
{
    const vw_conf_idp_t  *idp;

    if (conf == NULL) {
        return NULL;
    }

    for (idp = conf->idps; idp != NULL; idp = idp->next) {
        if (strlen(idp->name) == len && memcmp(idp->name, name, len) == 0) {
            return idp;
        }
    }

    return NULL;
}


const vw_conf_idp_t *
vw_conf_idp_url(const vw_conf_t *conf, const char *url, size_t len,
    unsigned keys)
{
    const vw_conf_idp_t  *idp;

#define vw_is(u)                                                             \
    ((u) != NULL && strlen(u) == len && memcmp(u, url, len) == 0)

    if (conf == NULL) {
        return NULL;
    }

    for (idp = conf->idps; idp != NULL; idp = idp->next) {
        if (keys ? (vw_is(idp->discovery) || vw_is(idp->jwks_url))
                 : vw_is(idp->introspection_url))
        {
            return idp;
        }
    }

#undef vw_is

    return NULL;
}


const vw_conf_target_t *
vw_conf_target(const vw_conf_t *conf, const char *name)
{
    const vw_conf_target_t  *t;

    if (conf == NULL) {
        return NULL;
    }

    for (t = conf->targets; t != NULL; t = t->next) {
        if (strcmp(t->name, name) == 0) {
            return t;
        }
    }

    return NULL;
}


static int
vw_conf_read(vw_conf_ctx_t *ctx, FILE *f)
{
    int       rc;
    char     *line;
    size_t    size;
    ssize_t   n;

    line = NULL;
    size = 0;
    rc = VW_OK;

    while ((n = getline(&line, &size, f)) != -1) {
        ctx->line++;

        if (strlen(line) != (size_t) n) {
            rc = vw_conf_error(ctx, ctx->line, "(line)",
                               "holds a NUL byte");
            break;
        }

        /* a file saved with CRLF line ends reads as one with LF */
        if (n > 0 && line[n - 1] == '\n') {
            line[--n] = '\0';
        }

        if (n > 0 && line[n - 1] == '\r') {
            line[--n] = '\0';
        }

        rc = vw_conf_line(ctx, line);
        if (rc != VW_OK) {
            break;
        }
    }

    if (rc == VW_OK && ferror(f)) {
        rc = vw_conf_error(ctx, ctx->line + 1, "(line)", "cannot read: %s",
                           strerror(errno));
    }

    free(line);

    return rc;
}


static int
vw_conf_line(vw_conf_ctx_t *ctx, char *line)
{
    char                 *p, *eq, *key, *value, label[VW_CONF_NAME_MAX + 16];
    const vw_conf_key_t  *k;
    vw_conf_sect_t       *s;
    unsigned              i;

    /*
     * "#" opens a comment at the start of a line or after a blank, so that
     * a value may hold one ("X-Tag: a#b", a URL's fragment)
     */
    for (p = line; *p; p++) {
        if (*p == '#' && (p == line || p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            break;
        }
    }

    p = vw_conf_trim(line);

    if (*p == '\0') {
        return VW_OK;
    }

    if (*p == '[') {
        return vw_conf_section(ctx, p);
    }

    eq = strchr(p, '=');

    if (eq == NULL) {
        p[strcspn(p, " \t")] = '\0';
        return vw_conf_error(ctx, ctx->line, p, "expected \"key = value\"");
    }

    *eq = '\0';
    key = vw_conf_trim(p);
    value = vw_conf_trim(eq + 1);

    if (*key == '\0') {
        return vw_conf_error(ctx, ctx->line, "(no key)",
                             "expected \"key = value\"");
    }

    s = ctx->sect;

    if (s == NULL) {
        return vw_conf_error(ctx, ctx->line, key, "outside of any section "
                             "(the file starts with [worker])");
    }

    for (i = 0, k = vw_conf_keys[s->kind]; k->name != NULL; i++, k++) {
        if (strcmp(k->name, key) == 0) {
            break;
        }
    }

    if (k->name == NULL) {
        return vw_conf_error(ctx, ctx->line, key, "unknown key in %s",
                             vw_conf_label(s, label, sizeof(label)));
    }

    if (s->lines[i] != 0 && !k->repeat) {
        return vw_conf_error(ctx, ctx->line, key,
                             "duplicate key, first at line %u", s->lines[i]);
    }

    s->lines[i] = ctx->line;

    if (*value == '\0') {
        return vw_conf_error(ctx, ctx->line, key, "missing value");
    }

    return k->set(ctx, k, value, s->obj);
}


/*
 * "[worker]", "[target <name>]", "[job <type>]", "[idp <name>]" or
 * "[vault]"
 */
static int
vw_conf_section(vw_conf_ctx_t *ctx, char *p)
{
    char              *word, *name, q[VW_CONF_QUOTE_MAX * 4 + 8],
                       head[VW_CONF_NAME_MAX + 32];
    size_t             len, i;
    unsigned           kind;
    vw_conf_job_t     *job;
    vw_conf_sect_t    *s;
    vw_conf_target_t  *t;
    vw_conf_idp_t     *idp;
    vw_conf_connection_t  *c;
    vw_conf_subscription_t  *sub;
    vw_conf_alert_t   *rule;

    /* the "key" of a message is the section's line as written, printable */
    len = strlen(p);

    for (i = 0; i < len && i < sizeof(head) - 4; i++) {
        head[i] = (p[i] < 0x20 || p[i] == 0x7f) ? '?' : p[i];
    }

    strcpy(head + i, i < len ? "..." : "");

    if (p[len - 1] != ']') {
        return vw_conf_error(ctx, ctx->line, head, "expected \"[section]\"");
    }

    p[len - 1] = '\0';
    word = vw_conf_trim(p + 1);
    name = word + strcspn(word, " \t");

    if (*name != '\0') {
        *name++ = '\0';
        name = vw_conf_trim(name);
    }

    p = head;

    for (kind = 0; kind < VW_CONF_KINDS; kind++) {
        if (strcmp(word, vw_conf_kinds[kind]) == 0) {
            break;
        }
    }

    if (kind == VW_CONF_KINDS) {
        return vw_conf_error(ctx, ctx->line, p, "unknown section");
    }

    if ((kind == VW_CONF_WORKER || kind == VW_CONF_VAULT
         || kind == VW_CONF_METRICS || kind == VW_CONF_ALERTING)
        && *name != '\0')
    {
        return vw_conf_error(ctx, ctx->line, p, "[%s] takes no name", word);
    }

    if (kind != VW_CONF_WORKER && kind != VW_CONF_VAULT
        && kind != VW_CONF_METRICS && kind != VW_CONF_ALERTING)
    {
        if (*name == '\0') {
            return vw_conf_error(ctx, ctx->line, p, "needs a name: [%s <%s>]",
                                 word, kind == VW_CONF_JOB ? "type" : "name");
        }

        if (!vw_conf_valid_name(name)) {
            return vw_conf_error(ctx, ctx->line, p, "%s is not a valid %s: "
                                 "use 1 to %d of A-Z a-z 0-9 . _ -",
                                 vw_conf_quote(q, sizeof(q), name),
                                 kind == VW_CONF_JOB ? "job type"
                                 : kind == VW_CONF_IDP ? "idp name"
                                 : kind == VW_CONF_CONNECTION
                                                       ? "connection name"
                                 : kind == VW_CONF_SUBSCRIPTION
                                                       ? "subscription name"
                                 : kind == VW_CONF_ALERT ? "rule name"
                                                       : "target name",
                                 VW_CONF_NAME_MAX);
        }
    }

    for (s = ctx->sects; s != NULL; s = s->next) {
        if (s->kind == kind
            && (s->name == NULL || strcmp(s->name, name) == 0))
        {
            return vw_conf_error(ctx, ctx->line, p,
                                 "duplicate section, first at line %u",
                                 s->line);
        }
    }

    s = calloc(1, sizeof(vw_conf_sect_t));
    if (s == NULL) {
        return vw_conf_error(ctx, ctx->line, p, "out of memory");
    }

    *ctx->sects_tail = s;
    ctx->sects_tail = &s->next;
    ctx->sect = s;

    s->kind = kind;
    s->line = ctx->line;

    if (kind == VW_CONF_WORKER) {
        s->obj = ctx->conf;
        return VW_OK;
    }

    if (kind == VW_CONF_VAULT) {
        s->obj = &ctx->conf->vault;
        return VW_OK;
    }

    if (kind == VW_CONF_METRICS) {
        s->obj = &ctx->conf->metrics;
        return VW_OK;
    }

    if (kind == VW_CONF_ALERTING) {
        s->obj = &ctx->conf->alerting;
        return VW_OK;
    }

    s->name = strdup(name);
    if (s->name == NULL) {
        return vw_conf_error(ctx, ctx->line, p, "out of memory");
    }

    if (kind == VW_CONF_TARGET) {
        t = vw_conf_target_new(ctx, name);
        if (t == NULL) {
            return vw_conf_error(ctx, ctx->line, p, "out of memory");
        }

        s->obj = t;
        return VW_OK;
    }

    if (kind == VW_CONF_IDP) {
        idp = calloc(1, sizeof(vw_conf_idp_t));
        if (idp == NULL) {
            return vw_conf_error(ctx, ctx->line, p, "out of memory");
        }

        *ctx->idps_tail = idp;
        ctx->idps_tail = &idp->next;
        s->obj = idp;

        idp->name = strdup(name);
        if (idp->name == NULL) {
            return vw_conf_error(ctx, ctx->line, p, "out of memory");
        }

        idp->auth = VW_IDP_AUTH_BASIC;
        idp->min_refresh_ms = 60 * VW_CONF_SECOND;
        idp->max_age_cap_ms = 24 * VW_CONF_HOUR;
        idp->timeout_ms = 5 * VW_CONF_SECOND;

        return VW_OK;
    }

    if (kind == VW_CONF_ALERT) {
        rule = calloc(1, sizeof(vw_conf_alert_t));
        if (rule == NULL) {
            return vw_conf_error(ctx, ctx->line, p, "out of memory");
        }

        *ctx->alerts_tail = rule;
        ctx->alerts_tail = &rule->next;
        s->obj = rule;

        rule->name = strdup(name);
        if (rule->name == NULL) {
            return vw_conf_error(ctx, ctx->line, p, "out of memory");
        }

        rule->window_ms = 5 * VW_CONF_MINUTE;
        rule->min_attempts = 10;
        rule->severity = "warning";

        return VW_OK;
    }

    if (kind == VW_CONF_SUBSCRIPTION) {
        sub = calloc(1, sizeof(vw_conf_subscription_t));
        if (sub == NULL) {
            return vw_conf_error(ctx, ctx->line, p, "out of memory");
        }

        *ctx->subscriptions_tail = sub;
        ctx->subscriptions_tail = &sub->next;
        s->obj = sub;

        sub->name = strdup(name);
        if (sub->name == NULL) {
            return vw_conf_error(ctx, ctx->line, p, "out of memory");
        }

        sub->replay = VW_REPLAY_LATEST;

        return VW_OK;
    }

    if (kind == VW_CONF_CONNECTION) {
        c = calloc(1, sizeof(vw_conf_connection_t));
        if (c == NULL) {
            return vw_conf_error(ctx, ctx->line, p, "out of memory");
        }

        *ctx->connections_tail = c;
        ctx->connections_tail = &c->next;
        s->obj = c;

        c->name = strdup(name);
        if (c->name == NULL) {
            return vw_conf_error(ctx, ctx->line, p, "out of memory");
        }

        c->token_lifetime_ms = VW_CONF_HOUR;
        c->limit_share = 90;
        c->limit_recheck_ms = 60 * VW_CONF_SECOND;

        return VW_OK;
    }

    job = calloc(1, sizeof(vw_conf_job_t));
    if (job == NULL) {
        return vw_conf_error(ctx, ctx->line, p, "out of memory");
    }

    *ctx->jobs_tail = job;
    ctx->jobs_tail = &job->next;
    s->obj = job;

    job->type = strdup(name);
    job->method = strdup("POST");
    if (job->type == NULL || job->method == NULL) {
        return vw_conf_error(ctx, ctx->line, p, "out of memory");
    }

    job->timeout_ms = 10 * VW_CONF_SECOND;
    job->max_attempts = 8;
    job->max_age_ms = 24 * VW_CONF_HOUR;
    job->backoff_base_ms = VW_CONF_SECOND;
    job->backoff_cap_ms = 5 * VW_CONF_MINUTE;
    job->ordering = 0;
    job->on_dead = VW_ON_DEAD_PROCEED;

    return VW_OK;
}


/* a target with the defaults, appended to conf->targets */
static vw_conf_target_t *
vw_conf_target_new(vw_conf_ctx_t *ctx, const char *name)
{
    vw_conf_target_t  *t;

    t = calloc(1, sizeof(vw_conf_target_t));
    if (t == NULL) {
        return NULL;
    }

    *ctx->targets_tail = t;
    ctx->targets_tail = &t->next;

    t->name = strdup(name);
    if (t->name == NULL) {
        return NULL;
    }

    t->max_concurrency = 8;
    t->breaker_failures = 5;
    t->breaker_error_rate = 50;
    t->breaker_window_ms = 30 * VW_CONF_SECOND;
    t->breaker_min_calls = 20;
    t->breaker_cooldown_ms = 30 * VW_CONF_SECOND;
    t->connect_timeout_ms = 10 * VW_CONF_SECOND;

    return t;
}


/* the rules between values, and what a whole file must have */
static int
vw_conf_finish(vw_conf_ctx_t *ctx)
{
    char             a[32], b[32], label[VW_CONF_NAME_MAX + 16];
    uint64_t         longest;
    vw_conf_t       *conf = ctx->conf;
    vw_conf_sect_t  *s, *worker, *vault, *metrics, *slowest, *alerting;

    worker = NULL;
    vault = NULL;
    metrics = NULL;
    alerting = NULL;

    for (s = ctx->sects; s != NULL; s = s->next) {
        if (s->kind == VW_CONF_WORKER) {
            worker = s;
        }

        if (s->kind == VW_CONF_VAULT) {
            vault = s;
        }

        if (s->kind == VW_CONF_METRICS) {
            metrics = s;
        }

        if (s->kind == VW_CONF_ALERTING) {
            alerting = s;
        }
    }

    if (worker == NULL) {
        return vw_conf_error(ctx, 1, "[worker]", "missing section");
    }

    if (conf->listen == NULL) {
        return vw_conf_error(ctx, worker->line, "listen",
                             "missing in [worker]");
    }

    if (conf->redis == NULL) {
        return vw_conf_error(ctx, worker->line, "redis",
                             "missing in [worker]");
    }

    if (vault != NULL && conf->vault.key_file == NULL) {
        return vw_conf_error(ctx, vault->line, "key_file",
                             "missing in [vault]");
    }

    if (metrics != NULL && conf->metrics.host == NULL
        && conf->metrics.path == NULL)
    {
        return vw_conf_error(ctx, metrics->line, "listen",
                             "missing in [metrics]");
    }

    longest = 0;
    slowest = NULL;

    /* before the jobs, which take their connection's target */
    for (s = ctx->sects; s != NULL; s = s->next) {
        if (s->kind == VW_CONF_CONNECTION
            && vw_conf_finish_connection(ctx, s, vault) != VW_OK)
        {
            return VW_ERROR;
        }
    }

    for (s = ctx->sects; s != NULL; s = s->next) {
        if (s->kind == VW_CONF_SUBSCRIPTION
            && vw_conf_finish_subscription(ctx, s) != VW_OK)
        {
            return VW_ERROR;
        }
    }

    for (s = ctx->sects; s != NULL; s = s->next) {
        if (s->kind == VW_CONF_IDP
            && (vw_conf_finish_idp(ctx, s) != VW_OK
                || vw_conf_idp_unique(ctx, s) != VW_OK))
        {
            return VW_ERROR;
        }

        if (s->kind != VW_CONF_JOB) {
            continue;
        }

        if (vw_conf_finish_job(ctx, s) != VW_OK) {
            return VW_ERROR;
        }

        if (slowest == NULL
            || ((vw_conf_job_t *) s->obj)->timeout_ms > longest)
        {
            longest = ((vw_conf_job_t *) s->obj)->timeout_ms;
            slowest = s;
        }
    }

    if (conf->done_retention_ms < conf->idempotency_window_ms) {
        vw_conf_fmt_ms(a, sizeof(a), conf->done_retention_ms);
        vw_conf_fmt_ms(b, sizeof(b), conf->idempotency_window_ms);

        if (worker->lines[VW_CONF_WORKER_DONE_RETENTION]
            || !worker->lines[VW_CONF_WORKER_IDEMPOTENCY])
        {
            return vw_conf_error(ctx,
                                 worker->lines[VW_CONF_WORKER_DONE_RETENTION],
                                 "done_retention", "%s is less than "
                                 "idempotency_window (%s): a retried request "
                                 "would find its claim but not the job", a, b);
        }

        return vw_conf_error(ctx, worker->lines[VW_CONF_WORKER_IDEMPOTENCY],
                             "idempotency_window", "%s is more than "
                             "done_retention (%s): a retried request would "
                             "find its claim but not the job", b, a);
    }

    if (slowest != NULL
        && conf->visibility_timeout_ms <= longest + VW_CONF_VISIBILITY_SLACK)
    {
        vw_conf_fmt_ms(a, sizeof(a), conf->visibility_timeout_ms);
        vw_conf_fmt_ms(b, sizeof(b), longest);

        if (worker->lines[VW_CONF_WORKER_VISIBILITY]
            || !slowest->lines[VW_CONF_JOB_TIMEOUT])
        {
            return vw_conf_error(ctx,
                                 worker->lines[VW_CONF_WORKER_VISIBILITY]
                                 ? worker->lines[VW_CONF_WORKER_VISIBILITY]
                                 : worker->line,
                                 "visibility_timeout", "%s must be more than "
                                 "the longest job timeout (%s, in %s) + 5s, "
                                 "or another worker takes over an attempt "
                                 "still running and runs the job twice", a, b,
                                 vw_conf_label(slowest, label,
                                               sizeof(label)));
        }

        return vw_conf_error(ctx, slowest->lines[VW_CONF_JOB_TIMEOUT],
                             "timeout", "%s must be less than "
                             "visibility_timeout (%s) - 5s, or another "
                             "worker takes over an attempt still running and "
                             "runs the job twice", b, a);
    }

    /* after the jobs, which make the implicit targets a rule may name */
    if (alerting != NULL && vw_conf_finish_alerting(ctx, alerting) != VW_OK) {
        return VW_ERROR;
    }

    for (s = ctx->sects; s != NULL; s = s->next) {
        if (s->kind != VW_CONF_ALERT) {
            continue;
        }

        if (alerting == NULL) {
            return vw_conf_error(ctx, s->line, vw_conf_label(s, label,
                                                             sizeof(label)),
                                 "needs an [alerting] section: its job "
                                 "delivers the notices");
        }

        if (vw_conf_finish_alert(ctx, s) != VW_OK) {
            return VW_ERROR;
        }
    }

    return VW_OK;
}


static int
vw_conf_finish_job(vw_conf_ctx_t *ctx, vw_conf_sect_t *s)
{
    char               a[32], b[32], label[VW_CONF_NAME_MAX + 16];
    vw_conf_job_t     *job = s->obj;
    vw_conf_sect_t    *ts;
    vw_conf_target_t  *t;

    vw_conf_label(s, label, sizeof(label));

    if (job->connector == NULL) {
        return vw_conf_error(ctx, s->line, "connector", "missing in %s",
                             label);
    }

    if (strcmp(job->connector, "http") != 0) {
        if (vw_conf_finish_connector_job(ctx, s) != VW_OK) {
            return VW_ERROR;
        }

    } else {
        if (job->url == NULL) {
            return vw_conf_error(ctx, s->line, "url", "missing in %s",
                                 label);
        }

        if (job->then != NULL) {
            return vw_conf_error(ctx, s->lines[VW_CONF_JOB_THEN], "then",
                                 "%s is an http job: only a connector's "
                                 "read has an output to pass on", label);
        }

        if (s->lines[VW_CONF_JOB_CONNECTION]
            || s->lines[VW_CONF_JOB_OPERATION]
            || s->lines[VW_CONF_JOB_OBJECT]
            || s->lines[VW_CONF_JOB_EXTERNAL_ID]
            || s->lines[VW_CONF_JOB_ID_PROPERTY]
            || s->lines[VW_CONF_JOB_MAPPING])
        {
            return vw_conf_error(ctx, s->lines[VW_CONF_JOB_CONNECTION]
                                 ? s->lines[VW_CONF_JOB_CONNECTION]
                                 : s->lines[VW_CONF_JOB_OPERATION]
                                 ? s->lines[VW_CONF_JOB_OPERATION]
                                 : s->lines[VW_CONF_JOB_OBJECT]
                                 ? s->lines[VW_CONF_JOB_OBJECT]
                                 : s->lines[VW_CONF_JOB_EXTERNAL_ID]
                                 ? s->lines[VW_CONF_JOB_EXTERNAL_ID]
                                 : s->lines[VW_CONF_JOB_ID_PROPERTY]
                                 ? s->lines[VW_CONF_JOB_ID_PROPERTY]
                                 : s->lines[VW_CONF_JOB_MAPPING],
                                 "connector", "%s is an http job: "
                                 "connection, operation, object, "
                                 "external_id, id_property and mapping "
                                 "belong to the salesforce and hubspot "
                                 "connectors", label);
        }
    }

    if (job->backoff_base_ms > job->backoff_cap_ms) {
        vw_conf_fmt_ms(a, sizeof(a), job->backoff_base_ms);
        vw_conf_fmt_ms(b, sizeof(b), job->backoff_cap_ms);

        if (s->lines[VW_CONF_JOB_BACKOFF_BASE]) {
            return vw_conf_error(ctx, s->lines[VW_CONF_JOB_BACKOFF_BASE],
                                 "backoff_base", "%s is more than "
                                 "backoff_cap (%s)", a, b);
        }

        return vw_conf_error(ctx, s->lines[VW_CONF_JOB_BACKOFF_CAP],
                             "backoff_cap", "%s is less than backoff_base "
                             "(%s)", b, a);
    }

    if (job->connection != NULL && s->target == NULL) {
        job->target = job->connection->target;
        return VW_OK;
    }

    /* a target's own name decides, so targets may follow their jobs */
    for (ts = ctx->sects; ts != NULL; ts = ts->next) {
        if (ts->kind == VW_CONF_TARGET
            && strcmp(ts->name, s->target ? s->target : job->type) == 0)
        {
            break;
        }
    }

    if (s->target != NULL) {
        if (ts == NULL) {
            return vw_conf_error(ctx, s->lines[VW_CONF_JOB_TARGET], "target",
                                 "no section [target %s]", s->target);
        }

        job->target = ts->obj;
        return VW_OK;
    }

    /*
     * The implicit target must be the job's alone; one declared with the
     * same name would be a second target of that name, so the file says
     * which it means.
     */
    if (ts != NULL) {
        return vw_conf_error(ctx, s->line, "target", "missing in %s, and "
                             "[target %s] at line %u has its name: add "
                             "\"target = %s\" to use it, or rename it",
                             label, job->type, ts->line, job->type);
    }

    t = vw_conf_target_new(ctx, job->type);
    if (t == NULL) {
        return vw_conf_error(ctx, s->line, "target", "out of memory");
    }

    job->target = t;

    return VW_OK;
}


static int
vw_conf_finish_idp(vw_conf_ctx_t *ctx, vw_conf_sect_t *s)
{
    char            a[32], b[32], label[VW_CONF_NAME_MAX + 16];
    vw_conf_idp_t  *idp = s->obj;

    vw_conf_label(s, label, sizeof(label));

    if (idp->discovery != NULL && idp->jwks_url != NULL) {
        return vw_conf_error(ctx, s->lines[VW_CONF_IDP_JWKS_URL], "jwks_url",
                             "%s has discovery at line %u: give one of "
                             "them, not both", label,
                             s->lines[VW_CONF_IDP_DISCOVERY]);
    }

    if (idp->discovery == NULL && idp->jwks_url == NULL
        && idp->introspection_url == NULL)
    {
        return vw_conf_error(ctx, s->line, "discovery", "missing in %s: it "
                             "needs discovery, jwks_url or "
                             "introspection_url", label);
    }

    if (idp->introspection_url != NULL) {
        /* RFC 7662 section 2.1: the caller authenticates */
        if (idp->client_id == NULL) {
            return vw_conf_error(ctx, s->lines[VW_CONF_IDP_INTROSPECTION_URL],
                                 "client_id", "missing in %s: "
                                 "introspection_url needs client_id and "
                                 "client_secret_file", label);
        }

        if (idp->client_secret == NULL) {
            return vw_conf_error(ctx, s->lines[VW_CONF_IDP_INTROSPECTION_URL],
                                 "client_secret_file", "missing in %s: "
                                 "introspection_url needs client_id and "
                                 "client_secret_file", label);
        }
    }

    if ((idp->client_id == NULL) != (idp->client_secret == NULL)) {
        return vw_conf_error(ctx,
                             idp->client_id ? s->lines[VW_CONF_IDP_CLIENT_ID]
                             : s->lines[VW_CONF_IDP_CLIENT_SECRET],
                             idp->client_id ? "client_secret_file"
                                            : "client_id",
                             "missing in %s: client_id and "
                             "client_secret_file go together", label);
    }

    if (idp->min_refresh_ms > idp->max_age_cap_ms) {
        vw_conf_fmt_ms(a, sizeof(a), idp->min_refresh_ms);
        vw_conf_fmt_ms(b, sizeof(b), idp->max_age_cap_ms);

        if (s->lines[VW_CONF_IDP_MIN_REFRESH]) {
            return vw_conf_error(ctx, s->lines[VW_CONF_IDP_MIN_REFRESH],
                                 "min_refresh", "%s is more than "
                                 "max_age_cap (%s)", a, b);
        }

        return vw_conf_error(ctx, s->lines[VW_CONF_IDP_MAX_AGE_CAP],
                             "max_age_cap", "%s is less than min_refresh "
                             "(%s)", b, a);
    }

    return VW_OK;
}


/*
 * FETCH may name a provider by URL instead of by name (docs/PROTOCOL.md),
 * so a key set's URL (discovery or jwks_url, either of them) may belong
 * to one [idp] only, and so may an introspection_url.  s is checked
 * against the sections before it, whose own checks have passed.
 */
static int
vw_conf_idp_unique(vw_conf_ctx_t *ctx, vw_conf_sect_t *s)
{
    char             label[VW_CONF_NAME_MAX + 16];
    unsigned         i, j;
    const char      *url, *key, *other;
    vw_conf_idp_t   *idp = s->obj, *o;
    vw_conf_sect_t  *os;

    /* finish_idp() has made sure that at most one of the two is set */
    url = idp->discovery ? idp->discovery : idp->jwks_url;
    key = idp->discovery ? "discovery" : "jwks_url";
    i = idp->discovery ? VW_CONF_IDP_DISCOVERY : VW_CONF_IDP_JWKS_URL;

    for (os = ctx->sects; os != s; os = os->next) {
        if (os->kind != VW_CONF_IDP) {
            continue;
        }

        o = os->obj;
        other = NULL;
        j = 0;

        if (url != NULL && o->discovery != NULL
            && strcmp(url, o->discovery) == 0)
        {
            other = "discovery";
            j = VW_CONF_IDP_DISCOVERY;

        } else if (url != NULL && o->jwks_url != NULL
                   && strcmp(url, o->jwks_url) == 0)
        {
            other = "jwks_url";
            j = VW_CONF_IDP_JWKS_URL;
        }

        if (other != NULL) {
            return vw_conf_error(ctx, s->lines[i], key, "the same URL as %s "
                                 "in %s at line %u: a URL names one [idp] "
                                 "only", other,
                                 vw_conf_label(os, label, sizeof(label)),
                                 os->lines[j]);
        }

        if (idp->introspection_url != NULL && o->introspection_url != NULL
            && strcmp(idp->introspection_url, o->introspection_url) == 0)
        {
            return vw_conf_error(ctx,
                                 s->lines[VW_CONF_IDP_INTROSPECTION_URL],
                                 "introspection_url", "the same URL as "
                                 "introspection_url in %s at line %u: a URL "
                                 "names one [idp] only",
                                 vw_conf_label(os, label, sizeof(label)),
                                 os->lines[VW_CONF_IDP_INTROSPECTION_URL]);
        }
    }

    return VW_OK;
}


/*
 * Writes "<file>:<line>: <key>: <message>" into ctx->err and returns
 * VW_ERROR, so that setters end with "return vw_conf_error(...)".
 */
static int
vw_conf_error(vw_conf_ctx_t *ctx, unsigned line, const char *key,
    const char *fmt, ...)
{
    int      n;
    char    *p;
    va_list  ap;

    if (ctx->errlen == 0) {
        return VW_ERROR;
    }

    n = snprintf(ctx->err, ctx->errlen, "%s:%u: %s: ", ctx->file, line, key);

    if (n >= 0 && (size_t) n < ctx->errlen) {
        va_start(ap, fmt);
        vsnprintf(ctx->err + n, ctx->errlen - n, fmt, ap);
        va_end(ap);
    }

    /* one line, whatever a key or a path from the file holds */
    for (p = ctx->err; *p; p++) {
        if ((unsigned char) *p < 0x20 || *p == 0x7f) {
            *p = '?';
        }
    }

    return VW_ERROR;
}


/*
 * s in double quotes, bytes outside printable ASCII and '"' and '\' escaped
 * and cut at VW_CONF_QUOTE_MAX characters, so that a message stays one
 * readable line whatever the file holds; size >= VW_CONF_QUOTE_MAX * 4 + 8
 */
static const char *
vw_conf_quote(char *buf, size_t size, const char *s)
{
    char           *p;
    size_t          n;
    unsigned char   c;

    p = buf;
    *p++ = '"';

    for (n = 0; *s && n < VW_CONF_QUOTE_MAX; s++, n++) {
        c = (unsigned char) *s;

        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = c;

        } else if (c < 0x20 || c >= 0x7f) {
            p += sprintf(p, "\\x%02x", c);

        } else {
            *p++ = c;
        }
    }

    if (*s) {
        p += sprintf(p, "...");
    }

    *p++ = '"';
    *p = '\0';

    (void) size;

    return buf;
}


/* ms in the largest unit that divides it exactly: "90s", "5m", "1500ms" */
static const char *
vw_conf_fmt_ms(char *buf, size_t size, uint64_t ms)
{
    static const struct {
        uint64_t     ms;
        const char  *unit;
    } units[] = {
        { VW_CONF_DAY, "d" }, { VW_CONF_HOUR, "h" }, { VW_CONF_MINUTE, "m" },
        { VW_CONF_SECOND, "s" }, { 1, "ms" }
    };

    unsigned  i;

    for (i = 0; ms != 0 && ms % units[i].ms != 0; i++) {
        /* void */
    }

    if (ms == 0) {
        i = 3;
    }

    snprintf(buf, size, "%llu%s", (unsigned long long) (ms / units[i].ms),
             units[i].unit);

    return buf;
}


static const char *
vw_conf_label(vw_conf_sect_t *s, char *buf, size_t size)
{
    if (s->name == NULL) {
        snprintf(buf, size, "[%s]", vw_conf_kinds[s->kind]);

    } else {
        snprintf(buf, size, "[%s %s]", vw_conf_kinds[s->kind], s->name);
    }

    return buf;
}


/* [A-Za-z0-9._-]{1,128}, as server.c takes job types */
static int
vw_conf_valid_name(const char *s)
{
    size_t  n;

    n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                  "0123456789._-");

    return n > 0 && n <= VW_CONF_NAME_MAX && s[n] == '\0';
}


/* a header name is an RFC 9110 token */
static int
vw_conf_valid_token(const char *s, size_t len)
{
    size_t  i;

    if (len == 0) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!isalnum((unsigned char) s[i])
            && strchr("!#$%&'*+-.^_`|~", s[i]) == NULL)
        {
            return 0;
        }
    }

    return 1;
}


/* a header value: no CR, LF or other control character but HTAB */
static int
vw_conf_valid_value(const char *s, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (((unsigned char) s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f) {
            return 0;
        }
    }

    return 1;
}


/*
 * Parses digits followed by one of the units; a bare number is in units of
 * mult[0] when bare is set.  Returns VW_OK, VW_ERROR when it is not such a
 * number, VW_DECLINED when it overflows.
 */
static int
vw_conf_parse_units(const char *value, const char **units,
    const uint64_t *mult, uint64_t bare, uint64_t *out)
{
    uint64_t     n, m;
    unsigned     i;
    const char  *p;

    n = 0;

    for (p = value; *p >= '0' && *p <= '9'; p++) {
        if (n > (UINT64_MAX - 9) / 10) {
            return VW_DECLINED;
        }

        n = n * 10 + (*p - '0');
    }

    if (p == value) {
        return VW_ERROR;
    }

    if (*p == '\0') {
        m = bare;

    } else {
        for (i = 0; units[i] != NULL; i++) {
            if (strcmp(p, units[i]) == 0) {
                break;
            }
        }

        if (units[i] == NULL) {
            return VW_ERROR;
        }

        m = mult[i];
    }

    if (m != 0 && n > UINT64_MAX / m) {
        return VW_DECLINED;
    }

    *out = n * m;

    return VW_OK;
}


/* checks n against key->min and key->max, in the words of the unit */
static int
vw_conf_range(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, uint64_t n, int rc, int duration)
{
    char  q[VW_CONF_QUOTE_MAX * 4 + 8], a[32];

    vw_conf_quote(q, sizeof(q), value);

    if (rc == VW_DECLINED || n > key->max) {
        if (duration) {
            vw_conf_fmt_ms(a, sizeof(a), key->max);
        } else {
            snprintf(a, sizeof(a), "%llu", (unsigned long long) key->max);
        }

        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is more than %s", q, a);
    }

    if (n < key->min) {
        if (duration) {
            vw_conf_fmt_ms(a, sizeof(a), key->min);
        } else {
            snprintf(a, sizeof(a), "%llu", (unsigned long long) key->min);
        }

        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is less than %s", q, a);
    }

    return VW_OK;
}


static int
vw_conf_set_duration(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    int                    rc;
    char                   q[VW_CONF_QUOTE_MAX * 4 + 8];
    uint64_t               n;
    static const char     *units[] = { "ms", "s", "m", "h", "d", NULL };
    static const uint64_t  mult[] = { 1, VW_CONF_SECOND, VW_CONF_MINUTE,
                                      VW_CONF_HOUR, VW_CONF_DAY };

    n = 0;
    rc = vw_conf_parse_units(value, units, mult, VW_CONF_SECOND, &n);

    if (rc == VW_ERROR) {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is not a duration",
                             vw_conf_quote(q, sizeof(q), value));
    }

    if (vw_conf_range(ctx, key, value, n, rc, 1) != VW_OK) {
        return VW_ERROR;
    }

    *(uint64_t *) ((char *) obj + key->offset) = n;

    return VW_OK;
}


static int
vw_conf_set_number(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, uint64_t *n)
{
    int                 rc;
    char                q[VW_CONF_QUOTE_MAX * 4 + 8];
    static const char  *units[] = { NULL };

    *n = 0;
    rc = vw_conf_parse_units(value, units, NULL, 1, n);

    if (rc == VW_ERROR) {
        return vw_conf_error(ctx, ctx->line, key->name, "%s is not a number",
                             vw_conf_quote(q, sizeof(q), value));
    }

    return vw_conf_range(ctx, key, value, *n, rc, 0);
}


static int
vw_conf_set_unsigned(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    uint64_t  n;

    if (vw_conf_set_number(ctx, key, value, &n) != VW_OK) {
        return VW_ERROR;
    }

    /* key->max fits an unsigned */
    *(unsigned *) ((char *) obj + key->offset) = (unsigned) n;

    return VW_OK;
}


static int
vw_conf_set_uint64(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    uint64_t  n;

    if (vw_conf_set_number(ctx, key, value, &n) != VW_OK) {
        return VW_ERROR;
    }

    *(uint64_t *) ((char *) obj + key->offset) = n;

    return VW_OK;
}


static int
vw_conf_set_size(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    int                    rc;
    char                   q[VW_CONF_QUOTE_MAX * 4 + 8];
    uint64_t               n;
    static const char     *units[] = { "k", "m", NULL };
    static const uint64_t  mult[] = { 1024, 1024 * 1024 };

    n = 0;
    rc = vw_conf_parse_units(value, units, mult, 1, &n);

    if (rc == VW_ERROR) {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is not a size",
                             vw_conf_quote(q, sizeof(q), value));
    }

    if (vw_conf_range(ctx, key, value, n, rc, 0) != VW_OK) {
        return VW_ERROR;
    }

    *(size_t *) ((char *) obj + key->offset) = (size_t) n;

    return VW_OK;
}


static int
vw_conf_set_string(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, char **field)
{
    *field = strdup(value);

    if (*field == NULL) {
        return vw_conf_error(ctx, ctx->line, key->name, "out of memory");
    }

    return VW_OK;
}


/* unix:<path>, short enough for sockaddr_un; the path is kept */
static int
vw_conf_set_listen(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char                q[VW_CONF_QUOTE_MAX * 4 + 8];
    vw_conf_t          *conf = obj;
    struct sockaddr_un  sun;

    vw_conf_quote(q, sizeof(q), value);

    if (strncmp(value, "unix:", 5) != 0 || value[5] == '\0') {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is not unix:<path>", q);
    }

    if (strlen(value + 5) >= sizeof(sun.sun_path)) {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s: the path is longer than %d bytes", q,
                             (int) sizeof(sun.sun_path) - 1);
    }

    return vw_conf_set_string(ctx, key, value + 5, &conf->listen);
}


/*
 * [metrics] listen: "unix:<path>", or "<IPv4 or [IPv6]>:<port>" with a
 * numeric address, so that loading never waits on a resolver.
 */
static int
vw_conf_set_metrics_listen(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char                 q[VW_CONF_QUOTE_MAX * 4 + 8], host[64], *end;
    size_t               len;
    unsigned long        port;
    const char          *colon;
    unsigned char        addr[16];
    vw_conf_metrics_t   *m = obj;
    struct sockaddr_un   sun;

    vw_conf_quote(q, sizeof(q), value);

    if (strncmp(value, "unix:", 5) == 0) {
        if (value[5] == '\0' || strlen(value + 5) >= sizeof(sun.sun_path)) {
            return vw_conf_error(ctx, ctx->line, key->name,
                                 "%s: the path is empty or longer than %d "
                                 "bytes", q, (int) sizeof(sun.sun_path) - 1);
        }

        return vw_conf_set_string(ctx, key, value + 5, &m->path);
    }

    colon = strrchr(value, ':');
    len = colon ? (size_t) (colon - value) : 0;

    if (colon == NULL || len == 0 || len >= sizeof(host)) {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is neither <address>:<port> nor "
                             "unix:<path>", q);
    }

    if (value[0] == '[' && value[len - 1] == ']') {
        memcpy(host, value + 1, len - 2);
        host[len - 2] = '\0';

    } else {
        memcpy(host, value, len);
        host[len] = '\0';
    }

    if (inet_pton(value[0] == '[' ? AF_INET6 : AF_INET, host, addr) != 1) {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s: the address must be a numeric IPv4 "
                             "address or an IPv6 one in [brackets]", q);
    }

    errno = 0;
    port = strtoul(colon + 1, &end, 10);

    if (errno || colon[1] < '0' || colon[1] > '9' || *end != '\0'
        || port < 1 || port > 65535)
    {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s: the port must be 1 to 65535", q);
    }

    m->port = port;

    return vw_conf_set_string(ctx, key, host, &m->host);
}


/*
 * 1 to 4 octal digits up to 0777: the permission bits of the socket file.
 * Connecting to a Unix socket needs write permission on it, so nginx's
 * workers need w in the group's bits (with listen_group) or in others'.
 */
static int
vw_conf_set_listen_mode(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char         q[VW_CONF_QUOTE_MAX * 4 + 8];
    unsigned     mode;
    vw_conf_t   *conf = obj;
    const char  *p;

    mode = 0;

    for (p = value; *p >= '0' && *p <= '7' && p - value < 4; p++) {
        mode = mode * 8 + (*p - '0');
    }

    if (p == value || *p != '\0' || mode > 0777) {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is not an octal mode from 0000 to 0777, "
                             "e.g. 0660",
                             vw_conf_quote(q, sizeof(q), value));
    }

    conf->listen_mode = mode;

    return VW_OK;
}


/*
 * A group name, looked up now, so that --check and a reload refuse a group
 * this system does not have rather than the start failing later.
 */
static int
vw_conf_set_listen_group(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    int            rc;
    char           q[VW_CONF_QUOTE_MAX * 4 + 8], *buf, *p;
    long           n;
    size_t         size;
    vw_conf_t     *conf = obj;
    struct group   grp, *found;

    vw_conf_quote(q, sizeof(q), value);

    n = sysconf(_SC_GETGR_R_SIZE_MAX);
    size = n > 0 ? (size_t) n : 4096;
    buf = NULL;

    for ( ;; ) {
        p = realloc(buf, size);
        if (p == NULL) {
            free(buf);
            return vw_conf_error(ctx, ctx->line, key->name, "out of memory");
        }

        buf = p;
        found = NULL;
        rc = getgrnam_r(value, &grp, buf, size, &found);

        /* a group with many members needs a larger buffer */
        if (rc != ERANGE || size >= 1024 * 1024) {
            break;
        }

        size *= 2;
    }

    if (found != NULL) {
        conf->listen_gid = grp.gr_gid;
    }

    free(buf);

    if (found == NULL) {
        /* 0 or an errno that says "no such entry": not a group here */
        if (rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF
            || rc == EPERM)
        {
            return vw_conf_error(ctx, ctx->line, key->name,
                                 "%s is not a group on this system", q);
        }

        return vw_conf_error(ctx, ctx->line, key->name,
                             "cannot look up group %s: %s", q, strerror(rc));
    }

    return vw_conf_set_string(ctx, key, value, &conf->listen_group);
}


/* host:port, host (port 6379) or unix:<path>, as queue.c reads it */
static int
vw_conf_set_redis(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char         q[VW_CONF_QUOTE_MAX * 4 + 8];
    const char  *colon, *p;
    uint64_t     port;
    vw_conf_t   *conf = obj;

    if (strncmp(value, "unix:", 5) == 0) {
        if (value[5] != '\0') {
            return vw_conf_set_string(ctx, key, value, &conf->redis);
        }

        goto invalid;
    }

    colon = strrchr(value, ':');

    if (colon == value || strpbrk(value, " \t/") != NULL) {
        goto invalid;
    }

    if (colon != NULL) {
        port = 0;

        for (p = colon + 1; *p >= '0' && *p <= '9' && port <= 65535; p++) {
            port = port * 10 + (*p - '0');
        }

        if (p == colon + 1 || *p != '\0' || port == 0 || port > 65535) {
            goto invalid;
        }
    }

    return vw_conf_set_string(ctx, key, value, &conf->redis);

invalid:

    return vw_conf_error(ctx, ctx->line, key->name,
                         "%s is not host:port or unix:<path>",
                         vw_conf_quote(q, sizeof(q), value));
}


static int
vw_conf_set_password(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    vw_conf_t  *conf = obj;

    if (value[0] != '/') {
        /* not quoted: it may be the password itself */
        return vw_conf_error(ctx, ctx->line, key->name,
                             "expected the absolute path of a file holding "
                             "the password");
    }

    return vw_conf_read_secret(ctx, key->name, value, &conf->redis_password);
}


static int
vw_conf_set_consumer(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char         q[VW_CONF_QUOTE_MAX * 4 + 8];
    const char  *p;
    vw_conf_t   *conf = obj;

    for (p = value; *p; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            break;
        }
    }

    if (*p != '\0' || p - value > 255) {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is not 1 to 255 printable characters "
                             "without blanks",
                             vw_conf_quote(q, sizeof(q), value));
    }

    free(conf->consumer);
    conf->consumer = NULL;

    return vw_conf_set_string(ctx, key, value, &conf->consumer);
}


static int
vw_conf_set_connector(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char            q[VW_CONF_QUOTE_MAX * 4 + 8];
    vw_conf_job_t  *job = obj;

    if (strcmp(value, "http") != 0 && strcmp(value, "salesforce") != 0
        && strcmp(value, "hubspot") != 0)
    {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is not a known connector: http, "
                             "salesforce or hubspot",
                             vw_conf_quote(q, sizeof(q), value));
    }

    return vw_conf_set_string(ctx, key, value, &job->connector);
}


/* resolved once the whole file is read: the target may come later */
static int
vw_conf_set_target(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char  q[VW_CONF_QUOTE_MAX * 4 + 8];

    if (!vw_conf_valid_name(value)) {
        return vw_conf_error(ctx, ctx->line, key->name, "%s is not a valid "
                             "target name: use 1 to %d of A-Z a-z 0-9 . _ -",
                             vw_conf_quote(q, sizeof(q), value),
                             VW_CONF_NAME_MAX);
    }

    return vw_conf_set_string(ctx, key, value, &ctx->sect->target);
}


static int
vw_conf_set_url(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char            q[VW_CONF_QUOTE_MAX * 4 + 8];
    size_t          n;
    const char     *p;
    vw_conf_job_t  *job = obj;

    if (strncmp(value, "http://", 7) == 0) {
        n = 7;

    } else if (strncmp(value, "https://", 8) == 0) {
        n = 8;

    } else {
        goto invalid;
    }

    /* a host, and nothing a request line could not carry */
    if (strchr("/?#:", value[n]) != NULL) {
        goto invalid;
    }

    for (p = value; *p; p++) {
        if ((unsigned char) *p <= 0x20 || *p == 0x7f) {
            goto invalid;
        }
    }

    return vw_conf_set_string(ctx, key, value, &job->url);

invalid:

    return vw_conf_error(ctx, ctx->line, key->name,
                         "%s is not an http:// or https:// URL",
                         vw_conf_quote(q, sizeof(q), value));
}


static int
vw_conf_set_method(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char            q[VW_CONF_QUOTE_MAX * 4 + 8];
    size_t          n;
    vw_conf_job_t  *job = obj;

    n = strspn(value, "ABCDEFGHIJKLMNOPQRSTUVWXYZ");

    if (value[n] != '\0' || n > 16) {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is not a method in capitals, e.g. POST",
                             vw_conf_quote(q, sizeof(q), value));
    }

    free(job->method);
    job->method = NULL;

    return vw_conf_set_string(ctx, key, value, &job->method);
}


/* appends a header to the job's list; takes value (freed on failure) */
static int
vw_conf_add_header(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    vw_conf_job_t *job, const char *name, size_t len, char *value,
    unsigned secret)
{
    vw_conf_header_t  *h, **tail;

    h = calloc(1, sizeof(vw_conf_header_t));
    if (h != NULL) {
        h->name = strndup(name, len);
    }

    if (h == NULL || h->name == NULL) {
        free(h);

        if (secret) {
            vw_conf_secret_free(value);
        } else {
            free(value);
        }

        return vw_conf_error(ctx, ctx->line, key->name, "out of memory");
    }

    h->value = value;
    h->secret = secret;

    for (tail = &job->headers; *tail != NULL; tail = &(*tail)->next) {
        /* void */
    }

    *tail = h;

    return VW_OK;
}


/* "Name: value"; the value is never quoted in a message */
static int
vw_conf_set_header(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char            q[VW_CONF_QUOTE_MAX * 4 + 8], *v;
    size_t          len;
    const char     *colon;
    vw_conf_job_t  *job = obj;

    colon = strchr(value, ':');

    if (colon == NULL) {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "expected \"Name: value\"");
    }

    len = colon - value;

    if (!vw_conf_valid_token(value, len)) {
        v = strndup(value, len);
        if (v == NULL) {
            return vw_conf_error(ctx, ctx->line, key->name, "out of memory");
        }

        vw_conf_quote(q, sizeof(q), v);
        free(v);

        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is not a valid header name", q);
    }

    for (colon++; *colon == ' ' || *colon == '\t'; colon++) {
        /* void */
    }

    if (!vw_conf_valid_value(colon, strlen(colon))) {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "the value of %.*s holds CR, LF or another "
                             "control character", (int) len, value);
    }

    v = strdup(colon);
    if (v == NULL) {
        return vw_conf_error(ctx, ctx->line, key->name, "out of memory");
    }

    return vw_conf_add_header(ctx, key, job, value, len, v, 0);
}


/* "Name /path": the value is the file's content, its last newline cut */
static int
vw_conf_set_secret_header(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char            q[VW_CONF_QUOTE_MAX * 4 + 8], *v, *name;
    size_t          len;
    const char     *path;
    vw_conf_job_t  *job = obj;

    len = strcspn(value, " \t");
    path = value + len;
    path += strspn(path, " \t");

    if (*path != '/') {
        /* not quoted: a value pasted in place of a path is a secret */
        return vw_conf_error(ctx, ctx->line, key->name,
                             "expected \"Name /path/to/file\" (the value is "
                             "read from the file)");
    }

    if (!vw_conf_valid_token(value, len)) {
        name = strndup(value, len);
        if (name == NULL) {
            return vw_conf_error(ctx, ctx->line, key->name, "out of memory");
        }

        vw_conf_quote(q, sizeof(q), name);
        free(name);

        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is not a valid header name", q);
    }

    if (vw_conf_read_secret(ctx, key->name, path, &v) != VW_OK) {
        return VW_ERROR;
    }

    return vw_conf_add_header(ctx, key, job, value, len, v, 1);
}


/*
 * Reads a secret from path into *value: at most VW_CONF_SECRET_MAX bytes,
 * one trailing LF (or CRLF) cut, not empty, with no other control byte.
 * Messages quote the path, never the content, and the read buffer is
 * cleared before it is freed.
 */
static int
vw_conf_read_secret(vw_conf_ctx_t *ctx, const char *key, const char *path,
    char **value)
{
    int     rc, valid;
    char    q[VW_CONF_QUOTE_MAX * 4 + 8], *buf;
    FILE   *f;
    size_t  n;

    vw_conf_quote(q, sizeof(q), path);

    f = fopen(path, "r");
    if (f == NULL) {
        return vw_conf_error(ctx, ctx->line, key, "cannot read %s: %s", q,
                             strerror(errno));
    }

    /* one byte more than the largest secret, to tell it is too large */
    buf = malloc(VW_CONF_SECRET_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        return vw_conf_error(ctx, ctx->line, key, "out of memory");
    }

    /* no stdio buffer: it would keep a copy of the secret */
    setvbuf(f, NULL, _IONBF, 0);

    n = fread(buf, 1, VW_CONF_SECRET_MAX + 1, f);
    rc = ferror(f) ? errno : 0;

    fclose(f);

    if (n > 0 && n <= VW_CONF_SECRET_MAX && buf[n - 1] == '\n') {
        n--;
    }

    if (n > 0 && n <= VW_CONF_SECRET_MAX && buf[n - 1] == '\r') {
        n--;
    }

    valid = rc == 0 && n > 0 && n <= VW_CONF_SECRET_MAX
            && vw_conf_valid_value(buf, n);

    *value = valid ? strndup(buf, n) : NULL;

    explicit_bzero(buf, VW_CONF_SECRET_MAX + 1);
    free(buf);

    if (valid) {
        if (*value == NULL) {
            return vw_conf_error(ctx, ctx->line, key, "out of memory");
        }

        return VW_OK;
    }

    if (rc != 0) {
        return vw_conf_error(ctx, ctx->line, key, "cannot read %s: %s", q,
                             strerror(rc));
    }

    if (n > VW_CONF_SECRET_MAX) {
        return vw_conf_error(ctx, ctx->line, key, "%s is larger than %dk",
                             q, VW_CONF_SECRET_MAX / 1024);
    }

    if (n == 0) {
        return vw_conf_error(ctx, ctx->line, key, "%s is empty", q);
    }

    return vw_conf_error(ctx, ctx->line, key, "%s holds CR, LF or another "
                         "control character before its end", q);
}


static int
vw_conf_set_ordering(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char            q[VW_CONF_QUOTE_MAX * 4 + 8];
    vw_conf_job_t  *job = obj;

    if (strcmp(value, "on") == 0) {
        job->ordering = 1;

    } else if (strcmp(value, "off") == 0) {
        job->ordering = 0;

    } else {
        return vw_conf_error(ctx, ctx->line, key->name, "%s is not on or off",
                             vw_conf_quote(q, sizeof(q), value));
    }

    return VW_OK;
}


static int
vw_conf_set_on_dead(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char            q[VW_CONF_QUOTE_MAX * 4 + 8];
    vw_conf_job_t  *job = obj;

    if (strcmp(value, "proceed") == 0) {
        job->on_dead = VW_ON_DEAD_PROCEED;

    } else if (strcmp(value, "block") == 0) {
        job->on_dead = VW_ON_DEAD_BLOCK;

    } else {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is not proceed or block",
                             vw_conf_quote(q, sizeof(q), value));
    }

    return VW_OK;
}


/*
 * An identity provider's URL: https:// only, since the key set it serves
 * decides who gets in, with a host and nothing a request line could not
 * carry.
 */
static int
vw_conf_set_https_url(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char        q[VW_CONF_QUOTE_MAX * 4 + 8];
    const char *p;

    if (strncmp(value, "https://", 8) != 0
        || strchr("/?#:", value[8]) != NULL)
    {
        goto invalid;
    }

    for (p = value; *p; p++) {
        if ((unsigned char) *p <= 0x20 || *p == 0x7f) {
            goto invalid;
        }
    }

    return vw_conf_set_string(ctx, key, value,
                              (char **) ((char *) obj + key->offset));

invalid:

    return vw_conf_error(ctx, ctx->line, key->name,
                         "%s is not an https:// URL",
                         vw_conf_quote(q, sizeof(q), value));
}


/* a PEM file of CAs, read by curl at each fetch: here only checked */
static int
vw_conf_set_ca_file(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char  q[VW_CONF_QUOTE_MAX * 4 + 8];

    vw_conf_quote(q, sizeof(q), value);

    if (value[0] != '/') {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is not an absolute path", q);
    }

    if (access(value, R_OK) != 0) {
        return vw_conf_error(ctx, ctx->line, key->name, "cannot read %s: %s",
                             q, strerror(errno));
    }

    return vw_conf_set_string(ctx, key, value,
                              (char **) ((char *) obj + key->offset));
}


/*
 * proxy = http://host:port (or https://, socks5h://), credentials not
 * allowed in the file (a secret would sit in clear); "none" for no proxy
 * at all, not even one named by https_proxy in the environment.
 */
static int
vw_conf_set_proxy(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char        q[VW_CONF_QUOTE_MAX * 4 + 8];
    size_t      len;
    const char *host;

    vw_conf_quote(q, sizeof(q), value);

    if (strcmp(value, "none") == 0) {
        return vw_conf_set_string(ctx, key, "",
                                  (char **) ((char *) obj + key->offset));
    }

    len = strlen(value);

    if (strncmp(value, "http://", 7) == 0) {
        host = value + 7;

    } else if (strncmp(value, "https://", 8) == 0) {
        host = value + 8;

    } else if (strncmp(value, "socks5h://", 10) == 0) {
        host = value + 10;

    } else {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is not an http://, https:// or socks5h:// "
                             "URL, nor \"none\"", q);
    }

    if (*host == '\0' || *host == '/' || len > 1024
        || !vw_conf_valid_value(value, len))
    {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s names no host", q);
    }

    if (strchr(host, '@') != NULL) {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "the proxy URL holds credentials; they do not "
                             "belong in the configuration file");
    }

    return vw_conf_set_string(ctx, key, value,
                              (char **) ((char *) obj + key->offset));
}


static int
vw_conf_set_client_id(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char            q[VW_CONF_QUOTE_MAX * 4 + 8];
    size_t          len;
    vw_conf_idp_t  *idp = obj;

    len = strlen(value);

    if (len > 255 || !vw_conf_valid_value(value, len)) {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is not 1 to 255 printable characters",
                             vw_conf_quote(q, sizeof(q), value));
    }

    return vw_conf_set_string(ctx, key, value, &idp->client_id);
}


static int
vw_conf_set_client_secret(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    vw_conf_idp_t  *idp = obj;

    if (value[0] != '/') {
        /* not quoted: it may be the secret itself */
        return vw_conf_error(ctx, ctx->line, key->name,
                             "expected the absolute path of a file holding "
                             "the client secret");
    }

    return vw_conf_read_secret(ctx, key->name, value, &idp->client_secret);
}


static int
vw_conf_set_auth(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char            q[VW_CONF_QUOTE_MAX * 4 + 8];
    vw_conf_idp_t  *idp = obj;

    if (strcmp(value, "client_secret_basic") == 0) {
        idp->auth = VW_IDP_AUTH_BASIC;

    } else if (strcmp(value, "client_secret_post") == 0) {
        idp->auth = VW_IDP_AUTH_POST;

    } else {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is not client_secret_basic or "
                             "client_secret_post",
                             vw_conf_quote(q, sizeof(q), value));
    }

    return VW_OK;
}


/* clears a secret before freeing it, so no later allocation reads it */
static void
vw_conf_secret_free(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}


static char *
vw_conf_trim(char *s)
{
    char  *e;

    while (*s == ' ' || *s == '\t') {
        s++;
    }

    e = s + strlen(s);

    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) {
        *--e = '\0';
    }

    return s;
}


/*
 * The vault's master key, read now, so that --check and a reload refuse a
 * file whose key is missing, too open or not a key.  Never the key
 * itself: a value that is not an absolute path is refused unquoted.
 */
static int
vw_conf_set_vault_key(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char              err[VC_VAULT_ERRSTR_LEN];
    vw_conf_vault_t  *vault = obj;

    if (value[0] != '/') {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "expected the absolute path of a file holding "
                             "the master key");
    }

    if (vc_vault_key_read_file(&vault->key, value, err, sizeof(err))
        != VC_OK)
    {
        return vw_conf_error(ctx, ctx->line, key->name, "%s", err);
    }

    return vw_conf_set_string(ctx, key, value, &vault->key_file);
}


/* "require = name [name ...]": each a valid name, none twice */
static int
vw_conf_set_vault_require(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char              q[VW_CONF_QUOTE_MAX * 4 + 8], **names, *name;
    size_t            len, i;
    const char       *p;
    vw_conf_vault_t  *vault = obj;

    for (p = value; *p != '\0'; p += len) {
        p += strspn(p, " \t");
        len = strcspn(p, " \t");

        if (len == 0) {
            break;
        }

        name = strndup(p, len);
        if (name == NULL) {
            return vw_conf_error(ctx, ctx->line, key->name, "out of memory");
        }

        if (!vc_vault_name_valid(name, len)) {
            vw_conf_error(ctx, ctx->line, key->name, "%s is not a secret "
                          "name: 1 to %d printable ASCII characters without "
                          "space, '\"' or '\\'",
                          vw_conf_quote(q, sizeof(q), name),
                          VC_VAULT_NAME_MAX);
            free(name);
            return VW_ERROR;
        }

        for (i = 0; i < vault->nrequire; i++) {
            if (strcmp(vault->require[i], name) == 0) {
                vw_conf_error(ctx, ctx->line, key->name,
                              "%s is named twice",
                              vw_conf_quote(q, sizeof(q), name));
                free(name);
                return VW_ERROR;
            }
        }

        names = realloc(vault->require,
                        (vault->nrequire + 2) * sizeof(char *));
        if (names == NULL) {
            free(name);
            return vw_conf_error(ctx, ctx->line, key->name, "out of memory");
        }

        vault->require = names;
        vault->require[vault->nrequire++] = name;
        vault->require[vault->nrequire] = NULL;
    }

    return VW_OK;
}


/* -- connections (docs/CONNECTORS.md) ------------------------------------- */

/* resolved once the whole file is read: the connection may come later */
static int
vw_conf_set_job_connection(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char  q[VW_CONF_QUOTE_MAX * 4 + 8];

    if (!vw_conf_valid_name(value)) {
        return vw_conf_error(ctx, ctx->line, key->name, "%s is not a valid "
                             "connection name: use 1 to %d of A-Z a-z 0-9 "
                             ". _ -", vw_conf_quote(q, sizeof(q), value),
                             VW_CONF_NAME_MAX);
    }

    return vw_conf_set_string(ctx, key, value, &ctx->sect->connection);
}


/* an operation, an object or a field name: [A-Za-z0-9._-], 1 to 128 */
/* on or off, into the unsigned at the key's offset */
static int
vw_conf_set_flag(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char  q[VW_CONF_QUOTE_MAX * 4 + 8];

    if (strcmp(value, "on") == 0 || strcmp(value, "off") == 0) {
        *(unsigned *) ((char *) obj + key->offset) = (value[1] == 'n');
        return VW_OK;
    }

    return vw_conf_error(ctx, ctx->line, key->name, "%s is not on or off",
                         vw_conf_quote(q, sizeof(q), value));
}


static int
vw_conf_set_word(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char  q[VW_CONF_QUOTE_MAX * 4 + 8];

    if (!vw_conf_valid_name(value)) {
        return vw_conf_error(ctx, ctx->line, key->name, "%s is not a valid "
                             "%s: use 1 to %d of A-Z a-z 0-9 . _ -",
                             vw_conf_quote(q, sizeof(q), value), key->name,
                             VW_CONF_NAME_MAX);
    }

    return vw_conf_set_string(ctx, key, value,
                              (char **) ((char *) obj + key->offset));
}


/* 1 to 255 printable characters: a client id, a username, an audience */
static int
vw_conf_set_text(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char    q[VW_CONF_QUOTE_MAX * 4 + 8];
    size_t  len;

    len = strlen(value);

    if (len > 255 || !vw_conf_valid_value(value, len)) {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is not 1 to 255 printable characters",
                             vw_conf_quote(q, sizeof(q), value));
    }

    return vw_conf_set_string(ctx, key, value,
                              (char **) ((char *) obj + key->offset));
}


/* a mapping file, loaded now so that --check and a reload refuse a bad one */
static int
vw_conf_set_mapping(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char            q[VW_CONF_QUOTE_MAX * 4 + 8], err[VW_CONF_ERR_LEN];
    vc_map_t       *map;
    vw_conf_job_t  *job = obj;

    vw_conf_quote(q, sizeof(q), value);

    if (value[0] != '/') {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is not an absolute path", q);
    }

    map = vc_map_load_file(value, err, sizeof(err));
    if (map == NULL) {
        return vw_conf_error(ctx, ctx->line, key->name, "%s", err);
    }

    job->map = calloc(1, sizeof(vw_map_ref_t));
    if (job->map == NULL) {
        vc_map_free(map);
        return vw_conf_error(ctx, ctx->line, key->name, "out of memory");
    }

    job->map->map = map;
    job->map->refs = 1;

    return vw_conf_set_string(ctx, key, value, &job->mapping);
}


static int
vw_conf_set_vendor(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char                   q[VW_CONF_QUOTE_MAX * 4 + 8];
    vw_conf_connection_t  *c = obj;

    if (strcmp(value, "salesforce") == 0) {
        c->vendor = VW_VENDOR_SALESFORCE;

    } else if (strcmp(value, "hubspot") == 0) {
        c->vendor = VW_VENDOR_HUBSPOT;

    } else {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is not salesforce or hubspot",
                             vw_conf_quote(q, sizeof(q), value));
    }

    return VW_OK;
}


static int
vw_conf_set_oauth_flow(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char                   q[VW_CONF_QUOTE_MAX * 4 + 8];
    vw_conf_connection_t  *c = obj;

    if (strcmp(value, "jwt_bearer") == 0) {
        c->auth = VW_OAUTH_JWT_BEARER;

    } else if (strcmp(value, "client_credentials") == 0) {
        c->auth = VW_OAUTH_CLIENT_CREDENTIALS;

    } else if (strcmp(value, "refresh_token") == 0) {
        c->auth = VW_OAUTH_REFRESH_TOKEN;

    } else if (strcmp(value, "private_app") == 0) {
        c->auth = VW_OAUTH_PRIVATE_APP;

    } else {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is not jwt_bearer, client_credentials, "
                             "refresh_token or private_app",
                             vw_conf_quote(q, sizeof(q), value));
    }

    return VW_OK;
}


/*
 * A vault record's name.  A value that is no valid name is not quoted
 * back: it may be the secret itself, pasted in place of its name.
 */
static int
vw_conf_set_vault_name(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    if (!vc_vault_name_valid(value, strlen(value))) {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "expected the name of a vault record "
                             "(vantagectl vault list), not a value: the "
                             "secret itself never goes in this file");
    }

    return vw_conf_set_string(ctx, key, value,
                              (char **) ((char *) obj + key->offset));
}


/* Salesforce's REST version: "62.0" (a leading v is taken off) */
static int
vw_conf_set_api_version(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char                   q[VW_CONF_QUOTE_MAX * 4 + 8];
    size_t                 n;
    const char            *p;
    vw_conf_connection_t  *c = obj;

    p = value[0] == 'v' ? value + 1 : value;
    n = strspn(p, "0123456789");

    if (n == 0 || n > 3 || p[n] != '.' || strspn(p + n + 1, "0123456789") != 1
        || p[n + 2] != '\0')
    {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is not a Salesforce API version, e.g. 62.0",
                             vw_conf_quote(q, sizeof(q), value));
    }

    return vw_conf_set_string(ctx, key, p, &c->api_version);
}


/*
 * The target a job or a connection names, or one of its own named
 * implicit; the same rules as a job's (vw_conf_finish_job).
 */
static int
vw_conf_resolve_target(vw_conf_ctx_t *ctx, vw_conf_sect_t *s,
    const char *implicit, vw_conf_target_t **target)
{
    char               label[VW_CONF_NAME_MAX + 16];
    vw_conf_sect_t    *ts;
    vw_conf_target_t  *t;

    for (ts = ctx->sects; ts != NULL; ts = ts->next) {
        if (ts->kind == VW_CONF_TARGET
            && strcmp(ts->name, s->target ? s->target : implicit) == 0)
        {
            break;
        }
    }

    if (s->target != NULL) {
        if (ts == NULL) {
            return vw_conf_error(ctx, s->lines[VW_CONF_CONN_TARGET], "target",
                                 "no section [target %s]", s->target);
        }

        *target = ts->obj;
        return VW_OK;
    }

    if (ts != NULL) {
        return vw_conf_error(ctx, s->line, "target", "missing in %s, and "
                             "[target %s] at line %u has its name: add "
                             "\"target = %s\" to use it, or rename it",
                             vw_conf_label(s, label, sizeof(label)),
                             implicit, ts->line, implicit);
    }

    t = vw_conf_target_new(ctx, implicit);
    if (t == NULL) {
        return vw_conf_error(ctx, s->line, "target", "out of memory");
    }

    *target = t;

    return VW_OK;
}


static int
vw_conf_finish_connection(vw_conf_ctx_t *ctx, vw_conf_sect_t *s,
    const vw_conf_sect_t *vault)
{
    char                   label[VW_CONF_NAME_MAX + 16], *url;
    char                   implicit[VW_CONF_NAME_MAX + 16];
    size_t                 i;
    unsigned               need, allow;
    vw_conf_connection_t  *c = s->obj;

    /* the keys each flow needs and takes, by their index bit */
    static const struct {
        vw_oauth_flow_e   flow;
        unsigned          need;
        unsigned          allow;
    } flows[] = {
        { VW_OAUTH_JWT_BEARER,
          1 << VW_CONF_CONN_CLIENT_ID | 1 << VW_CONF_CONN_USERNAME
          | 1 << VW_CONF_CONN_PRIVATE_KEY,
          1 << VW_CONF_CONN_AUDIENCE },
        { VW_OAUTH_CLIENT_CREDENTIALS,
          1 << VW_CONF_CONN_CLIENT_ID | 1 << VW_CONF_CONN_CLIENT_SECRET, 0 },
        { VW_OAUTH_REFRESH_TOKEN,
          1 << VW_CONF_CONN_CLIENT_ID | 1 << VW_CONF_CONN_REFRESH_TOKEN,
          1 << VW_CONF_CONN_CLIENT_SECRET },
        { VW_OAUTH_PRIVATE_APP, 1 << VW_CONF_CONN_TOKEN, 0 }
    };

    static const unsigned  flow_keys[] = {
        VW_CONF_CONN_CLIENT_ID, VW_CONF_CONN_USERNAME, VW_CONF_CONN_AUDIENCE,
        VW_CONF_CONN_PRIVATE_KEY, VW_CONF_CONN_CLIENT_SECRET,
        VW_CONF_CONN_REFRESH_TOKEN, VW_CONF_CONN_TOKEN
    };

    vw_conf_label(s, label, sizeof(label));

    if (c->vendor == 0) {
        return vw_conf_error(ctx, s->line, "vendor", "missing in %s",
                             label);
    }

    if (c->auth == 0) {
        return vw_conf_error(ctx, s->line, "auth", "missing in %s", label);
    }

    if (c->vendor == VW_VENDOR_SALESFORCE && c->auth == VW_OAUTH_PRIVATE_APP)
    {
        return vw_conf_error(ctx, s->lines[VW_CONF_CONN_AUTH], "auth",
                             "private_app is HubSpot's: a Salesforce "
                             "connection takes jwt_bearer, "
                             "client_credentials or refresh_token");
    }

    if (c->vendor == VW_VENDOR_HUBSPOT
        && (c->auth == VW_OAUTH_JWT_BEARER
            || c->auth == VW_OAUTH_CLIENT_CREDENTIALS))
    {
        return vw_conf_error(ctx, s->lines[VW_CONF_CONN_AUTH], "auth",
                             "a HubSpot connection takes private_app or "
                             "refresh_token");
    }

    need = 0;
    allow = 0;

    for (i = 0; i < sizeof(flows) / sizeof(flows[0]); i++) {
        if (flows[i].flow == c->auth) {
            need = flows[i].need;
            allow = flows[i].need | flows[i].allow;
        }
    }

    /* HubSpot's refresh flow sends the app's secret too */
    if (c->vendor == VW_VENDOR_HUBSPOT && c->auth == VW_OAUTH_REFRESH_TOKEN) {
        need |= 1 << VW_CONF_CONN_CLIENT_SECRET;
    }

    for (i = 0; i < sizeof(flow_keys) / sizeof(flow_keys[0]); i++) {
        if ((need & (1u << flow_keys[i])) && !s->lines[flow_keys[i]]) {
            return vw_conf_error(ctx, s->line,
                                 vw_conf_connection_keys[flow_keys[i]].name,
                                 "missing in %s: auth %s needs it", label,
                                 vw_conf_flow_name(c->auth));
        }

        if (!(allow & (1u << flow_keys[i])) && s->lines[flow_keys[i]]) {
            return vw_conf_error(ctx, s->lines[flow_keys[i]],
                                 vw_conf_connection_keys[flow_keys[i]].name,
                                 "auth %s does not use it",
                                 vw_conf_flow_name(c->auth));
        }
    }

    if (c->vendor == VW_VENDOR_SALESFORCE) {
        if (s->lines[VW_CONF_CONN_BASE_URL]) {
            return vw_conf_error(ctx, s->lines[VW_CONF_CONN_BASE_URL],
                                 "base_url", "a Salesforce connection "
                                 "takes its instance_url from the token");
        }

        if (c->login_url == NULL) {
            c->login_url = strdup("https://login.salesforce.com");
        }

        if (c->api_version == NULL) {
            c->api_version = strdup("62.0");
        }

        if (c->token_url == NULL && c->login_url != NULL) {
            url = malloc(strlen(c->login_url) + sizeof("/services/oauth2/"
                                                       "token"));
            if (url != NULL) {
                strcpy(url, c->login_url);
                strcpy(url + strlen(url)
                       - (url[strlen(url) - 1] == '/'), "/services/oauth2/"
                                                        "token");
            }

            c->token_url = url;
        }

        if (c->audience == NULL && c->auth == VW_OAUTH_JWT_BEARER
            && c->login_url != NULL)
        {
            c->audience = strdup(c->login_url);
        }

    } else {
        if (s->lines[VW_CONF_CONN_LOGIN_URL]
            || s->lines[VW_CONF_CONN_API_VERSION]
            || s->lines[VW_CONF_CONN_LIMIT_SHARE]
            || s->lines[VW_CONF_CONN_LIMIT_RECHECK])
        {
            i = s->lines[VW_CONF_CONN_LOGIN_URL] ? VW_CONF_CONN_LOGIN_URL
                : s->lines[VW_CONF_CONN_API_VERSION]
                  ? VW_CONF_CONN_API_VERSION
                : s->lines[VW_CONF_CONN_LIMIT_SHARE]
                  ? VW_CONF_CONN_LIMIT_SHARE : VW_CONF_CONN_LIMIT_RECHECK;

            return vw_conf_error(ctx, s->lines[i],
                                 vw_conf_connection_keys[i].name,
                                 "is Salesforce's: %s is a HubSpot "
                                 "connection", label);
        }

        if (c->base_url == NULL) {
            c->base_url = strdup("https://api.hubapi.com");
        }

        if (c->token_url == NULL) {
            c->token_url = strdup("https://api.hubapi.com/oauth/v1/token");
        }
    }

    if (c->token_url == NULL
        || (c->vendor == VW_VENDOR_SALESFORCE
            && (c->login_url == NULL || c->api_version == NULL))
        || (c->vendor == VW_VENDOR_HUBSPOT && c->base_url == NULL))
    {
        return vw_conf_error(ctx, s->line, "vendor", "out of memory");
    }

    if (vault == NULL) {
        return vw_conf_error(ctx, s->line, "vendor", "%s names vault "
                             "records, and the file has no [vault] with its "
                             "key_file", label);
    }

    snprintf(implicit, sizeof(implicit), "connection.%s", c->name);

    return vw_conf_resolve_target(ctx, s, implicit, &c->target);
}


static int
vw_conf_finish_connector_job(vw_conf_ctx_t *ctx, vw_conf_sect_t *s)
{
    char                   label[VW_CONF_NAME_MAX + 16];
    size_t                 i;
    unsigned               salesforce, upsert;
    vw_conf_job_t         *job = s->obj;
    vw_conf_sect_t        *cs;
    const char *const     *ops;

    static const unsigned  http_keys[] = {
        VW_CONF_JOB_URL, VW_CONF_JOB_URL + 1, VW_CONF_JOB_URL + 2,
        VW_CONF_JOB_URL + 3
    };

    vw_conf_label(s, label, sizeof(label));
    salesforce = strcmp(job->connector, "salesforce") == 0;

    for (i = 0; i < sizeof(http_keys) / sizeof(http_keys[0]); i++) {
        if (s->lines[http_keys[i]]) {
            return vw_conf_error(ctx, s->lines[http_keys[i]],
                                 vw_conf_job_keys[http_keys[i]].name,
                                 "belongs to the http connector: the %s "
                                 "connector builds its own requests",
                                 job->connector);
        }
    }

    if (s->connection == NULL) {
        return vw_conf_error(ctx, s->line, "connection", "missing in %s",
                             label);
    }

    for (cs = ctx->sects; cs != NULL; cs = cs->next) {
        if (cs->kind == VW_CONF_CONNECTION
            && strcmp(cs->name, s->connection) == 0)
        {
            break;
        }
    }

    if (cs == NULL) {
        return vw_conf_error(ctx, s->lines[VW_CONF_JOB_CONNECTION],
                             "connection", "no section [connection %s]",
                             s->connection);
    }

    job->connection = cs->obj;

    if ((job->connection->vendor == VW_VENDOR_SALESFORCE) != salesforce) {
        return vw_conf_error(ctx, s->lines[VW_CONF_JOB_CONNECTION],
                             "connection", "[connection %s] is a %s "
                             "account, and %s uses the %s connector",
                             s->connection,
                             salesforce ? "HubSpot" : "Salesforce", label,
                             job->connector);
    }

    if (job->operation == NULL) {
        return vw_conf_error(ctx, s->line, "operation", "missing in %s",
                             label);
    }

    ops = salesforce ? vw_conf_salesforce_ops : vw_conf_hubspot_ops;

    for (i = 0; ops[i] != NULL; i++) {
        if (strcmp(ops[i], job->operation) == 0) {
            break;
        }
    }

    if (ops[i] == NULL) {
        return vw_conf_error(ctx, s->lines[VW_CONF_JOB_OPERATION],
                             "operation", "\"%s\" is not an operation of "
                             "the %s connector (docs/CONNECTORS.md)",
                             job->operation, job->connector);
    }

    if (job->object == NULL) {
        return vw_conf_error(ctx, s->line, "object", "missing in %s",
                             label);
    }

    if (s->lines[salesforce ? VW_CONF_JOB_ID_PROPERTY
                            : VW_CONF_JOB_EXTERNAL_ID])
    {
        return vw_conf_error(ctx, s->lines[salesforce
                                           ? VW_CONF_JOB_ID_PROPERTY
                                           : VW_CONF_JOB_EXTERNAL_ID],
                             salesforce ? "id_property" : "external_id",
                             "is %s's: %s uses the %s connector",
                             salesforce ? "HubSpot" : "Salesforce", label,
                             job->connector);
    }

    if (job->then != NULL) {
        for (cs = ctx->sects; cs != NULL; cs = cs->next) {
            if (cs->kind == VW_CONF_JOB && strcmp(cs->name, job->then) == 0) {
                break;
            }
        }

        if (cs == NULL || cs == s) {
            return vw_conf_error(ctx, s->lines[VW_CONF_JOB_THEN], "then",
                                 cs == s ? "%s names itself: its output "
                                           "would become its own input"
                                         : "no section [job %s]",
                                 cs == s ? label : job->then);
        }

        for (i = 0; vw_conf_then_ops[i] != NULL; i++) {
            if (strcmp(vw_conf_then_ops[i], job->operation) == 0) {
                break;
            }
        }

        if (vw_conf_then_ops[i] == NULL) {
            return vw_conf_error(ctx, s->lines[VW_CONF_JOB_THEN], "then",
                                 "a %s has no record to pass on: only read "
                                 "operations (read) have an output",
                                 job->operation);
        }
    }

    upsert = strstr(job->operation, "upsert") != NULL;

    if (upsert && job->id_field == NULL) {
        return vw_conf_error(ctx, s->line,
                             salesforce ? "external_id" : "id_property",
                             "missing in %s: %s needs the field that "
                             "identifies a record", label, job->operation);
    }

    if (!upsert && job->id_field != NULL) {
        return vw_conf_error(ctx, s->lines[salesforce
                                           ? VW_CONF_JOB_EXTERNAL_ID
                                           : VW_CONF_JOB_ID_PROPERTY],
                             salesforce ? "external_id" : "id_property",
                             "only an upsert uses it, and %s's operation "
                             "is %s", label, job->operation);
    }

    return VW_OK;
}


const vw_conf_connection_t *
vw_conf_connection(const vw_conf_t *conf, const char *name)
{
    const vw_conf_connection_t  *c;

    for (c = conf->connections; c != NULL; c = c->next) {
        if (strcmp(c->name, name) == 0) {
            return c;
        }
    }

    return NULL;
}


vw_conf_connection_t *
vw_conf_connection_copy(const vw_conf_connection_t *c)
{
    size_t                 i;
    vw_conf_connection_t  *n;

    static const size_t  strings[] = {
        offsetof(vw_conf_connection_t, name),
        offsetof(vw_conf_connection_t, login_url),
        offsetof(vw_conf_connection_t, token_url),
        offsetof(vw_conf_connection_t, base_url),
        offsetof(vw_conf_connection_t, api_version),
        offsetof(vw_conf_connection_t, client_id),
        offsetof(vw_conf_connection_t, username),
        offsetof(vw_conf_connection_t, audience),
        offsetof(vw_conf_connection_t, private_key),
        offsetof(vw_conf_connection_t, client_secret),
        offsetof(vw_conf_connection_t, refresh_token),
        offsetof(vw_conf_connection_t, token)
    };

    n = malloc(sizeof(vw_conf_connection_t));
    if (n == NULL) {
        return NULL;
    }

    *n = *c;
    n->target = NULL;
    n->next = NULL;

    for (i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
        *(char **) ((char *) n + strings[i]) = NULL;
    }

    for (i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
        const char  *v = *(char *const *) ((const char *) c + strings[i]);

        if (v != NULL) {
            *(char **) ((char *) n + strings[i]) = strdup(v);

            if (*(char **) ((char *) n + strings[i]) == NULL) {
                vw_conf_connection_free(n);
                return NULL;
            }
        }
    }

    return n;
}


void
vw_conf_connection_free(vw_conf_connection_t *c)
{
    if (c == NULL) {
        return;
    }

    free(c->name);
    free(c->login_url);
    free(c->token_url);
    free(c->base_url);
    free(c->api_version);
    free(c->client_id);
    free(c->username);
    free(c->audience);
    free(c->private_key);
    free(c->client_secret);
    free(c->refresh_token);
    free(c->token);
    free(c);
}


static const char *
vw_conf_flow_name(vw_oauth_flow_e flow)
{
    switch (flow) {
    case VW_OAUTH_JWT_BEARER:
        return "jwt_bearer";
    case VW_OAUTH_CLIENT_CREDENTIALS:
        return "client_credentials";
    case VW_OAUTH_REFRESH_TOKEN:
        return "refresh_token";
    case VW_OAUTH_PRIVATE_APP:
        return "private_app";
    }

    return "?";
}


/* a Streaming API channel: /data/<Entity>ChangeEvent, /data/
   ChangeEvents, or /event/<Name>__e */
static int
vw_conf_set_channel(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char                     q[VW_CONF_QUOTE_MAX * 4 + 8];
    size_t                   n, len;
    const char              *name;
    vw_conf_subscription_t  *sub = obj;

    len = strlen(value);

    if (strncmp(value, "/data/", 6) == 0) {
        name = value + 6;

    } else if (strncmp(value, "/event/", 7) == 0) {
        name = value + 7;

    } else {
        goto invalid;
    }

    n = strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                     "0123456789_");

    if (n == 0 || name[n] != '\0' || len > 255
        || (value[1] == 'e' && (n < 4 || strcmp(name + n - 3, "__e") != 0))
        || (value[1] == 'd' && (n < 12
                                || strcmp(name + n - 11, "ChangeEvent") != 0)
            && strcmp(name, "ChangeEvents") != 0))
    {
        goto invalid;
    }

    return vw_conf_set_string(ctx, key, value, &sub->channel);

invalid:

    return vw_conf_error(ctx, ctx->line, key->name,
                         "%s is not a Streaming API channel: "
                         "/data/<Object>ChangeEvent, /data/ChangeEvents or "
                         "/event/<Name>__e",
                         vw_conf_quote(q, sizeof(q), value));
}


static int
vw_conf_set_replay(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char                     q[VW_CONF_QUOTE_MAX * 4 + 8];
    vw_conf_subscription_t  *sub = obj;

    if (strcmp(value, "latest") == 0) {
        sub->replay = VW_REPLAY_LATEST;

    } else if (strcmp(value, "earliest") == 0) {
        sub->replay = VW_REPLAY_EARLIEST;

    } else {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is not latest or earliest",
                             vw_conf_quote(q, sizeof(q), value));
    }

    return VW_OK;
}


static int
vw_conf_finish_subscription(vw_conf_ctx_t *ctx, vw_conf_sect_t *s)
{
    char                     label[VW_CONF_NAME_MAX + 16];
    vw_conf_sect_t          *cs;
    vw_conf_subscription_t  *sub = s->obj;

    vw_conf_label(s, label, sizeof(label));

    if (s->connection == NULL) {
        return vw_conf_error(ctx, s->line, "connection", "missing in %s",
                             label);
    }

    if (sub->channel == NULL) {
        return vw_conf_error(ctx, s->line, "channel", "missing in %s",
                             label);
    }

    if (sub->job == NULL) {
        return vw_conf_error(ctx, s->line, "job", "missing in %s", label);
    }

    if (sub->tenant == NULL) {
        return vw_conf_error(ctx, s->line, "tenant", "missing in %s",
                             label);
    }

    for (cs = ctx->sects; cs != NULL; cs = cs->next) {
        if (cs->kind == VW_CONF_CONNECTION
            && strcmp(cs->name, s->connection) == 0)
        {
            break;
        }
    }

    if (cs == NULL) {
        return vw_conf_error(ctx, s->lines[VW_CONF_SUB_CONNECTION],
                             "connection", "no section [connection %s]",
                             s->connection);
    }

    sub->connection = cs->obj;

    if (sub->connection->vendor != VW_VENDOR_SALESFORCE) {
        return vw_conf_error(ctx, s->lines[VW_CONF_SUB_CONNECTION],
                             "connection", "[connection %s] is not a "
                             "Salesforce account: only Salesforce has the "
                             "Streaming API", s->connection);
    }

    for (cs = ctx->sects; cs != NULL; cs = cs->next) {
        if (cs->kind == VW_CONF_JOB && strcmp(cs->name, sub->job) == 0) {
            break;
        }
    }

    if (cs == NULL) {
        return vw_conf_error(ctx, s->lines[VW_CONF_SUB_JOB], "job",
                             "no section [job %s]: each event becomes a job "
                             "of that type", sub->job);
    }

    return VW_OK;
}


const vw_conf_subscription_t *
vw_conf_subscription(const vw_conf_t *conf, const char *name)
{
    const vw_conf_subscription_t  *sub;

    for (sub = conf->subscriptions; sub != NULL; sub = sub->next) {
        if (strcmp(sub->name, name) == 0) {
            return sub;
        }
    }

    return NULL;
}


vw_map_ref_t *
vw_map_ref_hold(vw_map_ref_t *ref)
{
    if (ref != NULL) {
        ref->refs++;
    }

    return ref;
}


void
vw_map_ref_release(vw_map_ref_t *ref)
{
    if (ref != NULL && --ref->refs == 0) {
        vc_map_free(ref->map);
        free(ref);
    }
}


/* -- [alerting] and [alert <name>] (docs/WORKER.md, "Alerting") ----------- */

static const char *const  vw_conf_alert_kinds[] = {
    NULL, "error_rate", "dlq_size", "breaker_open", "oldest_job_age",
    "quota_share", "jwks_failing"
};

#define VW_CONF_ALERT_KINDS \
    (sizeof(vw_conf_alert_kinds) / sizeof(vw_conf_alert_kinds[0]))


/*
 * The filters each kind takes, by their index among the filter keys
 * (type, target, stream, source): a bit each.
 */
static const unsigned  vw_conf_alert_filters[] = {
    0,
    1 << 0 | 1 << 1,    /* error_rate: type or target */
    0,                  /* dlq_size */
    1 << 1,             /* breaker_open: target */
    1 << 2,             /* oldest_job_age: stream */
    1 << 1,             /* quota_share: target */
    1 << 3              /* jwks_failing: source */
};


static int
vw_conf_set_alert_format(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char                 q[VW_CONF_QUOTE_MAX * 4 + 8];
    vw_conf_alerting_t  *a = obj;

    if (strcmp(value, "json") == 0) {
        a->slack = 0;

    } else if (strcmp(value, "slack") == 0) {
        a->slack = 1;

    } else {
        return vw_conf_error(ctx, ctx->line, key->name,
                             "%s is not json or slack",
                             vw_conf_quote(q, sizeof(q), value));
    }

    return VW_OK;
}


static int
vw_conf_set_alert_remind(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char                 q[VW_CONF_QUOTE_MAX * 4 + 8];
    vw_conf_alerting_t  *a = obj;

    if (strcmp(value, "on") == 0 || strcmp(value, "off") == 0) {
        a->remind = (value[1] == 'n');
        return VW_OK;
    }

    return vw_conf_error(ctx, ctx->line, key->name, "%s is not on or off",
                         vw_conf_quote(q, sizeof(q), value));
}


static int
vw_conf_set_alert_kind(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char              q[VW_CONF_QUOTE_MAX * 4 + 8];
    size_t            i;
    vw_conf_alert_t  *rule = obj;

    for (i = 1; i < VW_CONF_ALERT_KINDS; i++) {
        if (strcmp(value, vw_conf_alert_kinds[i]) == 0) {
            rule->kind = (vw_alert_kind_e) i;
            return VW_OK;
        }
    }

    return vw_conf_error(ctx, ctx->line, key->name, "%s is not one of "
                         "error_rate, dlq_size, breaker_open, "
                         "oldest_job_age, quota_share, jwks_failing",
                         vw_conf_quote(q, sizeof(q), value));
}


/* read once the kind is known, which may come later in the section */
static int
vw_conf_set_alert_threshold(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    vw_conf_alert_t  *rule = obj;

    return vw_conf_set_string(ctx, key, value, &rule->threshold_text);
}


/* type, target, stream or source: which the kind takes is checked later */
static int
vw_conf_set_alert_filter(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char              q[VW_CONF_QUOTE_MAX * 4 + 8];
    size_t            len;
    vw_conf_alert_t  *rule = obj;

    len = strlen(value);
    vw_conf_quote(q, sizeof(q), value);

    if (strcmp(key->name, "stream") == 0) {
        if (strcmp(value, "{vq}:jobs") != 0) {
            return vw_conf_error(ctx, ctx->line, key->name, "%s is not a "
                                 "stream the worker reads: {vq}:jobs", q);
        }

    } else if (strcmp(key->name, "source") == 0) {
        if (len > 255 || !vw_conf_valid_value(value, len)) {
            return vw_conf_error(ctx, ctx->line, key->name,
                                 "%s is not 1 to 255 printable characters",
                                 q);
        }

    } else if (!vw_conf_valid_name(value)) {
        return vw_conf_error(ctx, ctx->line, key->name, "%s is not a valid "
                             "%s: use 1 to %d of A-Z a-z 0-9 . _ -", q,
                             strcmp(key->name, "type") == 0 ? "job type"
                                                            : "target name",
                             VW_CONF_NAME_MAX);
    }

    /* two filters are refused when the section is finished */
    if (rule->filter == NULL) {
        rule->label = key->name;
        return vw_conf_set_string(ctx, key, value, &rule->filter);
    }

    return VW_OK;
}


static int
vw_conf_set_alert_severity(vw_conf_ctx_t *ctx, const vw_conf_key_t *key,
    const char *value, void *obj)
{
    char                      q[VW_CONF_QUOTE_MAX * 4 + 8];
    size_t                    i;
    vw_conf_alert_t          *rule = obj;
    static const char *const  names[] = { "critical", "warning", "info" };

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(value, names[i]) == 0) {
            rule->severity = names[i];
            return VW_OK;
        }
    }

    return vw_conf_error(ctx, ctx->line, key->name,
                         "%s is not critical, warning or info",
                         vw_conf_quote(q, sizeof(q), value));
}


/* [alerting]'s job: an http job of the file, whose url is the webhook */
static int
vw_conf_finish_alerting(vw_conf_ctx_t *ctx, vw_conf_sect_t *s)
{
    const vw_conf_job_t  *jc;
    vw_conf_alerting_t   *a = s->obj;

    if (a->job == NULL) {
        return vw_conf_error(ctx, s->line, "job", "missing in [alerting]");
    }

    jc = vw_conf_job(ctx->conf, a->job, strlen(a->job));

    if (jc == NULL) {
        return vw_conf_error(ctx, s->lines[VW_CONF_ALERTING_JOB], "job",
                             "no section [job %s]: the notices are jobs of "
                             "that type", a->job);
    }

    if (strcmp(jc->connector, "http") != 0) {
        return vw_conf_error(ctx, s->lines[VW_CONF_ALERTING_JOB], "job",
                             "[job %s] uses the %s connector: the notices "
                             "go out through an http job, whose url is the "
                             "webhook", a->job, jc->connector);
    }

    return VW_OK;
}


/*
 * A decimal number, digits with an optional fraction (no sign, no
 * exponent, no "inf"), into *v.  Returns VW_OK or VW_ERROR.
 */
static int
vw_conf_parse_decimal(const char *value, double *v)
{
    size_t  n;

    n = strspn(value, "0123456789");

    if (n == 0) {
        return VW_ERROR;
    }

    if (value[n] == '.') {
        if (strspn(value + n + 1, "0123456789") == 0) {
            return VW_ERROR;
        }

        n += 1 + strspn(value + n + 1, "0123456789");
    }

    if (value[n] != '\0' || n > 32) {
        return VW_ERROR;
    }

    *v = strtod(value, NULL);

    return VW_OK;
}


/* the threshold, read as the kind wants it */
static int
vw_conf_alert_threshold(vw_conf_ctx_t *ctx, vw_conf_sect_t *s,
    const char *label)
{
    int                    rc;
    char                   q[VW_CONF_QUOTE_MAX * 4 + 8];
    double                 v;
    uint64_t               ms;
    unsigned               line;
    vw_conf_alert_t       *rule = s->obj;
    const char            *kind;
    static const char     *units[] = { "ms", "s", "m", "h", "d", NULL };
    static const uint64_t  mult[] = { 1, VW_CONF_SECOND, VW_CONF_MINUTE,
                                      VW_CONF_HOUR, VW_CONF_DAY };

    line = s->lines[VW_CONF_ALERT_THRESHOLD];
    kind = vw_conf_alert_kinds[rule->kind];

    if (rule->kind == VW_ALERT_BREAKER_OPEN) {
        if (rule->threshold_text != NULL) {
            return vw_conf_error(ctx, line, "threshold", "breaker_open takes "
                                 "none: it fires while a target's breaker "
                                 "is not closed");
        }

        rule->threshold = 1;    /* vantage_worker_breaker_state: half-open */
        return VW_OK;
    }

    if (rule->threshold_text == NULL) {
        return vw_conf_error(ctx, s->line, "threshold", "missing in %s",
                             label);
    }

    vw_conf_quote(q, sizeof(q), rule->threshold_text);

    if (rule->kind == VW_ALERT_OLDEST_JOB_AGE) {
        rc = vw_conf_parse_units(rule->threshold_text, units, mult,
                                 VW_CONF_SECOND, &ms);

        if (rc != VW_OK || ms == 0 || ms > VW_CONF_DURATION_MAX) {
            return vw_conf_error(ctx, line, "threshold", "%s is not a "
                                 "duration from 1ms to 3650d: "
                                 "oldest_job_age compares ages", q);
        }

        rule->threshold = (double) ms / 1000;
        return VW_OK;
    }

    if (vw_conf_parse_decimal(rule->threshold_text, &v) != VW_OK) {
        return vw_conf_error(ctx, line, "threshold", "%s is not a number",
                             q);
    }

    if (rule->kind == VW_ALERT_ERROR_RATE
        || rule->kind == VW_ALERT_QUOTA_SHARE)
    {
        if (v <= 0 || v > 1) {
            return vw_conf_error(ctx, line, "threshold", "%s is not a share "
                                 "more than 0 and at most 1 (e.g. 0.05 for "
                                 "5%%), as %s compares", q, kind);
        }

    } else if (v < 1 || v != (double) (uint64_t) v) {
        return vw_conf_error(ctx, line, "threshold", "%s is not a whole "
                             "number of 1 or more, as %s compares", q, kind);
    }

    rule->threshold = v;

    return VW_OK;
}


static int
vw_conf_finish_alert(vw_conf_ctx_t *ctx, vw_conf_sect_t *s)
{
    char                     label[VW_CONF_NAME_MAX + 16];
    unsigned                 i, first, allowed;
    const char              *kind;
    vw_conf_alert_t         *rule = s->obj;
    const vw_conf_key_t     *fk;

    vw_conf_label(s, label, sizeof(label));

    if (rule->kind == 0) {
        return vw_conf_error(ctx, s->line, "kind", "missing in %s", label);
    }

    kind = vw_conf_alert_kinds[rule->kind];

    if (vw_conf_alert_threshold(ctx, s, label) != VW_OK) {
        return VW_ERROR;
    }

    if (rule->kind != VW_ALERT_ERROR_RATE) {
        if (s->lines[VW_CONF_ALERT_WINDOW]) {
            return vw_conf_error(ctx, s->lines[VW_CONF_ALERT_WINDOW],
                                 "window", "only error_rate takes a window, "
                                 "not %s", kind);
        }

        if (s->lines[VW_CONF_ALERT_MIN_ATTEMPTS]) {
            return vw_conf_error(ctx, s->lines[VW_CONF_ALERT_MIN_ATTEMPTS],
                                 "min_attempts", "only error_rate takes "
                                 "min_attempts, not %s", kind);
        }
    }

    allowed = vw_conf_alert_filters[rule->kind];
    fk = &vw_conf_alert_keys[VW_CONF_ALERT_TYPE];
    first = 0;

    for (i = 0; i < VW_CONF_ALERT_NFILTERS; i++) {
        if (!s->lines[VW_CONF_ALERT_TYPE + i]) {
            continue;
        }

        if (!(allowed & (1u << i))) {
            return vw_conf_error(ctx, s->lines[VW_CONF_ALERT_TYPE + i],
                                 fk[i].name, "%s %s", kind,
                                 allowed == 0 ? "takes no filter"
                                 : allowed == 3 ? "filters by type or target"
                                 : allowed == 2 ? "filters by target"
                                 : allowed == 4 ? "filters by stream"
                                 : "filters by source");
        }

        if (first) {
            return vw_conf_error(ctx, s->lines[VW_CONF_ALERT_TYPE + i],
                                 fk[i].name, "a rule takes one filter, and "
                                 "%s is given at line %u",
                                 fk[first - 1].name,
                                 s->lines[VW_CONF_ALERT_TYPE + first - 1]);
        }

        first = i + 1;
    }

    if (rule->label == NULL) {
        return VW_OK;
    }

    if (strcmp(rule->label, "type") == 0
        && vw_conf_job(ctx->conf, rule->filter, strlen(rule->filter)) == NULL)
    {
        return vw_conf_error(ctx, s->lines[VW_CONF_ALERT_TYPE], "type",
                             "no section [job %s]", rule->filter);
    }

    if (strcmp(rule->label, "target") == 0
        && vw_conf_target(ctx->conf, rule->filter) == NULL)
    {
        return vw_conf_error(ctx, s->lines[VW_CONF_ALERT_TARGET], "target",
                             "no target %s: neither a [target] nor the "
                             "target of a job or a connection",
                             rule->filter);
    }

    return VW_OK;
}
