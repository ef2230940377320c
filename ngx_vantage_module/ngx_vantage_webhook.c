/* ngx_vantage_webhook.c -- inbound webhook signature verification */

/*
 * vantage_webhook_verify checks that a webhook comes from its vendor
 * before vantage_dispatch makes a job of it.  It is not a handler of its
 * own: vantage_dispatch reads the body into memory (up to
 * vantage_dispatch_max_body) and, before it frames the job, calls
 * ngx_vantage_webhook_verify(); nothing parses the body before that.
 *
 *   docusign   X-DocuSign-Signature-1..N: base64 HMAC-SHA256 of the body;
 *              any header may match any configured key (rotation)
 *   hubspot    X-HubSpot-Signature-v3 (vc_hubspot.c) within the tolerance;
 *              v2 (hex SHA-256 of secret + method + URI + body) with v2=on
 *   adobesign  X-AdobeSign-ClientId checked against client_id= and echoed,
 *              on the verification GET and on every notification
 *   hmac       a generic HMAC: Stripe-, GitHub- and Svix-style senders
 *
 * Replay protection: once verified, the event's id (the id header, else
 * the signature that matched; Adobe Sign's body digest) is looked up in
 * Redis; a hit is acknowledged with 200 and no job.  The id is recorded
 * only when the worker has said the job is durable
 * (ngx_vantage_webhook_durable()), so that an event is never lost to a
 * key recorded for a job that never was; two deliveries at once are
 * deduplicated by the worker instead, through the idempotency key
 * derived from the same id.  Without Redis the webhook is still taken.
 *
 * Secrets are read from files at configuration time and are never
 * logged, nor is a signature.
 */

#include "ngx_vantage_module.h"

#include "vc_hubspot.h"
#include "vc_webhook.h"


#define NGX_VANTAGE_WEBHOOK_DOCUSIGN    0
#define NGX_VANTAGE_WEBHOOK_HUBSPOT     1
#define NGX_VANTAGE_WEBHOOK_ADOBESIGN   2
#define NGX_VANTAGE_WEBHOOK_HMAC        3

/* how the hmac profile's signature header is laid out */
#define NGX_VANTAGE_WEBHOOK_PLAIN       0   /* [prefix]<signature> */
#define NGX_VANTAGE_WEBHOOK_STRIPE      1   /* t=<ts>,v1=<sig>,v1=<sig> */
#define NGX_VANTAGE_WEBHOOK_SVIX        2   /* v1,<sig> v1,<sig> */

/* the pieces of a signed-string template */
#define NGX_VANTAGE_WEBHOOK_SEG_TEXT    0
#define NGX_VANTAGE_WEBHOOK_SEG_BODY    1
#define NGX_VANTAGE_WEBHOOK_SEG_TS      2
#define NGX_VANTAGE_WEBHOOK_SEG_ID      3
#define NGX_VANTAGE_WEBHOOK_SEG_METHOD  4
#define NGX_VANTAGE_WEBHOOK_SEG_URI     5

#define NGX_VANTAGE_WEBHOOK_MAX_SIGS    16      /* candidates looked at */
#define NGX_VANTAGE_WEBHOOK_DOCUSIGN_MAX 100    /* X-DocuSign-Signature-N */


typedef struct {
    ngx_uint_t                  type;
    ngx_str_t                   text;
} ngx_vantage_webhook_seg_t;


typedef struct {
    ngx_uint_t                  profile;
    ngx_str_t                   name;          /* the profile's name */
    ngx_array_t                 secrets;       /* ngx_str_t: key bytes */
    ngx_str_t                   client_id;     /* adobesign */
    ngx_flag_t                  v2;            /* hubspot */
    ngx_str_t                   uri;           /* hubspot: decoded, or
                                                  empty: the request's */
    ngx_uint_t                  format;        /* hmac */
    ngx_str_t                   header;
    ngx_uint_t                  encoding;
    ngx_str_t                   prefix;
    ngx_str_t                   timestamp_header;
    ngx_str_t                   id_header;
    ngx_uint_t                  algorithm;
    ngx_array_t                *template;      /* ngx_vantage_webhook_seg_t */
    ngx_uint_t                  whsec;         /* secrets are whsec_ b64 */
    ngx_msec_t                  tolerance;
    ngx_flag_t                  replay;
    ngx_str_t                   ttl;           /* PX: twice the tolerance */
} ngx_vantage_webhook_conf_t;


typedef struct {
    ngx_http_request_t         *request;
    ngx_vantage_redis_call_t   *call;
    ngx_str_t                   key;           /* in Redis */
    ngx_str_t                   idempotency_key;
} ngx_vantage_webhook_ctx_t;


/* what a refused request is answered */
typedef struct {
    ngx_uint_t                  status;
    const char                 *error;
    const char                 *description;
    const char                 *log;           /* why, for the INFO line */
    ngx_uint_t                  outcome;       /* the same, for the metrics:
                                                  NGX_VANTAGE_M_WEBHOOK_* */
} ngx_vantage_webhook_refusal_t;


static ngx_uint_t ngx_vantage_webhook_word(ngx_str_t *s,
    ngx_conf_enum_t *words);
static char *ngx_vantage_webhook_secret(ngx_conf_t *cf,
    ngx_vantage_webhook_conf_t *wcf, ngx_str_t *path);
static char *ngx_vantage_webhook_template(ngx_conf_t *cf,
    ngx_vantage_webhook_conf_t *wcf, ngx_str_t *value);
static char *ngx_vantage_webhook_hmac_defaults(ngx_conf_t *cf,
    ngx_vantage_webhook_conf_t *wcf, ngx_str_t *scheme);
static ngx_int_t ngx_vantage_webhook_docusign(ngx_http_request_t *r,
    ngx_vantage_webhook_conf_t *wcf, vc_webhook_part_t *body, size_t n,
    ngx_str_t *id, ngx_vantage_webhook_refusal_t *no);
static ngx_int_t ngx_vantage_webhook_hubspot(ngx_http_request_t *r,
    ngx_vantage_webhook_conf_t *wcf, vc_webhook_part_t *body, size_t n,
    ngx_str_t *id, ngx_vantage_webhook_refusal_t *no);
static ngx_int_t ngx_vantage_webhook_adobesign(ngx_http_request_t *r,
    ngx_vantage_webhook_conf_t *wcf, ngx_vantage_webhook_refusal_t *no);
static ngx_int_t ngx_vantage_webhook_hmac(ngx_http_request_t *r,
    ngx_vantage_webhook_conf_t *wcf, vc_webhook_part_t *body, size_t n,
    ngx_str_t *id, ngx_vantage_webhook_refusal_t *no);
static ngx_int_t ngx_vantage_webhook_match(ngx_vantage_webhook_conf_t *wcf,
    int alg, int enc, vc_webhook_part_t *parts, size_t nparts,
    ngx_str_t *sigs, ngx_uint_t nsigs, ngx_str_t *matched);
static ngx_int_t ngx_vantage_webhook_time(ngx_str_t *ts, int64_t unit_ms,
    ngx_msec_t tolerance, ngx_vantage_webhook_refusal_t *no);
static ngx_int_t ngx_vantage_webhook_keys(ngx_http_request_t *r,
    ngx_vantage_webhook_conf_t *wcf, ngx_vantage_webhook_ctx_t *wctx,
    ngx_str_t *id);
static void ngx_vantage_webhook_seen(void *data, redisReply *reply);
static ngx_int_t ngx_vantage_webhook_send(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *body);
static ngx_int_t ngx_vantage_webhook_refuse(ngx_http_request_t *r,
    ngx_vantage_webhook_refusal_t *no);
static void ngx_vantage_webhook_cleanup(void *data);
static void ngx_vantage_webhook_count(ngx_vantage_webhook_conf_t *wcf,
    ngx_uint_t outcome);


static ngx_str_t  ngx_vantage_webhook_adobe_header =
    ngx_string("X-AdobeSign-ClientId");
static ngx_str_t  ngx_vantage_webhook_hs_v3 =
    ngx_string("X-HubSpot-Signature-v3");
static ngx_str_t  ngx_vantage_webhook_hs_ts =
    ngx_string("X-HubSpot-Request-Timestamp");
static ngx_str_t  ngx_vantage_webhook_hs_sig =
    ngx_string("X-HubSpot-Signature");
static ngx_str_t  ngx_vantage_webhook_hs_version =
    ngx_string("X-HubSpot-Signature-Version");
static ngx_str_t  ngx_vantage_webhook_replayed =
    ngx_string("{\"status\":\"duplicate\"}\n");

static const char  *ngx_vantage_webhook_profiles[] = {
    "docusign", "hubspot", "adobesign", "hmac", NULL
};

/* the words an option takes, and what each sets */
static ngx_conf_enum_t  ngx_vantage_webhook_onoff[] = {
    { ngx_string("on"), 1 },
    { ngx_string("off"), 0 },
    { ngx_null_string, 0 }
};

static ngx_conf_enum_t  ngx_vantage_webhook_encodings[] = {
    { ngx_string("hex"), VC_WEBHOOK_HEX },
    { ngx_string("base64"), VC_WEBHOOK_BASE64 },
    { ngx_null_string, 0 }
};

static ngx_conf_enum_t  ngx_vantage_webhook_algorithms[] = {
    { ngx_string("sha256"), VC_WEBHOOK_SHA256 },
    { ngx_string("sha512"), VC_WEBHOOK_SHA512 },
    { ngx_string("sha1"), VC_WEBHOOK_SHA1 },
    { ngx_null_string, 0 }
};


/*
 * vantage_webhook_verify <profile> [secret_file=<path>]... [option=...]
 * (docs/WEBHOOKS.md)
 */
char *
ngx_vantage_webhook_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t  *vlcf = conf;

    u_char                      *p;
    ngx_int_t                    ms;
    ngx_str_t                   *value, s, scheme;
    ngx_uint_t                   i, k, n, hmac_only;
    ngx_vantage_webhook_conf_t  *wcf;

    if (vlcf->webhook != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    wcf = ngx_pcalloc(cf->pool, sizeof(ngx_vantage_webhook_conf_t));
    if (wcf == NULL) {
        return NGX_CONF_ERROR;
    }

    for (k = 0; ngx_vantage_webhook_profiles[k]; k++) {
        if (ngx_strcmp(value[1].data, ngx_vantage_webhook_profiles[k]) == 0) {
            break;
        }
    }

    if (ngx_vantage_webhook_profiles[k] == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_webhook_verify\": unknown profile "
                           "\"%V\" (docusign, hubspot, adobesign or hmac)",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_array_init(&wcf->secrets, cf->pool, 2, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    wcf->profile = k;
    wcf->name = value[1];
    hmac_only = 0;
    wcf->v2 = 0;
    wcf->replay = 1;
    wcf->tolerance = 300000;
    wcf->format = NGX_CONF_UNSET_UINT;
    wcf->encoding = NGX_CONF_UNSET_UINT;
    wcf->algorithm = NGX_CONF_UNSET_UINT;
    ngx_str_null(&scheme);

    for (i = 2; i < cf->args->nelts; i++) {

        p = (u_char *) ngx_strchr(value[i].data, '=');

        if (p == NULL) {
            goto invalid;
        }

        s.data = p + 1;
        s.len = value[i].data + value[i].len - s.data;
        hmac_only = 0;

#define ngx_vantage_webhook_is(name)                                         \
        (p - value[i].data == sizeof(name) - 1                               \
         && ngx_strncmp(value[i].data, name, sizeof(name) - 1) == 0)

        if (ngx_vantage_webhook_is("secret_file")) {
            if (wcf->profile == NGX_VANTAGE_WEBHOOK_ADOBESIGN) {
                goto invalid;
            }

            if (ngx_vantage_webhook_secret(cf, wcf, &s) != NGX_CONF_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_vantage_webhook_is("tolerance")) {
            ms = ngx_parse_time(&s, 0);

            if (ms == NGX_ERROR || ms < 1000 || ms > 86400000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"vantage_webhook_verify\": \"%V\" "
                                   "must be a time from 1s to 1d",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            wcf->tolerance = (ngx_msec_t) ms;
            continue;
        }

        if (ngx_vantage_webhook_is("replay")) {
            n = ngx_vantage_webhook_word(&s, ngx_vantage_webhook_onoff);
            if (n == NGX_CONF_UNSET_UINT) {
                goto invalid;
            }

            wcf->replay = n;
            continue;
        }

        if (ngx_vantage_webhook_is("client_id")) {
            if (wcf->profile != NGX_VANTAGE_WEBHOOK_ADOBESIGN) {
                goto invalid;
            }

            for (k = 0; k < s.len; k++) {
                if (!(isalnum(s.data[k]) || s.data[k] == '-'
                      || s.data[k] == '_' || s.data[k] == '.'))
                {
                    break;
                }
            }

            if (s.len == 0 || s.len > 128 || k != s.len) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"vantage_webhook_verify\": \"%V\" is "
                                   "not a client id (1 to 128 letters, "
                                   "digits, '-', '_' or '.')", &s);
                return NGX_CONF_ERROR;
            }

            wcf->client_id = s;
            continue;
        }

        if (ngx_vantage_webhook_is("v2")) {
            if (wcf->profile != NGX_VANTAGE_WEBHOOK_HUBSPOT) {
                goto invalid;
            }

            n = ngx_vantage_webhook_word(&s, ngx_vantage_webhook_onoff);
            if (n == NGX_CONF_UNSET_UINT) {
                goto invalid;
            }

            wcf->v2 = n;
            continue;
        }

        if (ngx_vantage_webhook_is("uri")) {
            if (wcf->profile != NGX_VANTAGE_WEBHOOK_HUBSPOT) {
                goto invalid;
            }

            if (ngx_vantage_hubspot_conf_uri(cf, "vantage_webhook_verify",
                                             &value[i], &s, &wcf->uri)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        /* the rest are the hmac profile's */

        hmac_only = 1;

        if (wcf->profile != NGX_VANTAGE_WEBHOOK_HMAC) {
            goto invalid;
        }

        if (ngx_vantage_webhook_is("scheme")) {
            scheme = s;
            continue;
        }

        if (ngx_vantage_webhook_is("header")
            || ngx_vantage_webhook_is("timestamp_header")
            || ngx_vantage_webhook_is("id_header"))
        {
            for (k = 0; k < s.len; k++) {
                if (s.data[k] <= ' ' || s.data[k] >= 0x7f
                    || s.data[k] == ':')
                {
                    break;
                }
            }

            if (s.len == 0 || k != s.len) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"vantage_webhook_verify\": \"%V\" is "
                                   "not a header name", &s);
                return NGX_CONF_ERROR;
            }

            if (value[i].data[0] == 'h') {
                wcf->header = s;

            } else if (value[i].data[0] == 't') {
                wcf->timestamp_header = s;

            } else {
                wcf->id_header = s;
            }

            continue;
        }

        if (ngx_vantage_webhook_is("encoding")) {
            wcf->encoding = ngx_vantage_webhook_word(&s,
                                                ngx_vantage_webhook_encodings);
            if (wcf->encoding == NGX_CONF_UNSET_UINT) {
                goto invalid;
            }

            continue;
        }

        if (ngx_vantage_webhook_is("algorithm")) {
            wcf->algorithm = ngx_vantage_webhook_word(&s,
                                               ngx_vantage_webhook_algorithms);
            if (wcf->algorithm == NGX_CONF_UNSET_UINT) {
                goto invalid;
            }

            continue;
        }

        if (ngx_vantage_webhook_is("prefix")) {
            if (s.len == 0 || s.len > 64) {
                goto invalid;
            }

            wcf->prefix = s;
            continue;
        }

        if (ngx_vantage_webhook_is("template")) {
            if (ngx_vantage_webhook_template(cf, wcf, &s) != NGX_CONF_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

#undef ngx_vantage_webhook_is

        goto invalid;
    }

    if (wcf->profile == NGX_VANTAGE_WEBHOOK_HMAC
        && ngx_vantage_webhook_hmac_defaults(cf, wcf, &scheme) != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (wcf->profile == NGX_VANTAGE_WEBHOOK_ADOBESIGN) {
        if (wcf->client_id.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"vantage_webhook_verify\": the adobesign "
                               "profile needs client_id=<id>: the client "
                               "id Acrobat Sign sends and is checked "
                               "against");
            return NGX_CONF_ERROR;
        }

    } else if (wcf->secrets.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_webhook_verify\": the %V profile "
                           "needs secret_file=<path>", &wcf->name);
        return NGX_CONF_ERROR;
    }

    /*
     * The key outlives the tolerance both ways: a delivery signed at t is
     * accepted until t + tolerance, and may arrive at t - tolerance.
     */
    wcf->ttl.data = ngx_pnalloc(cf->pool, NGX_INT_T_LEN);
    if (wcf->ttl.data == NULL) {
        return NGX_CONF_ERROR;
    }

    wcf->ttl.len = ngx_sprintf(wcf->ttl.data, "%M", 2 * wcf->tolerance)
                   - wcf->ttl.data;

    vlcf->webhook = wcf;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"vantage_webhook_verify\": invalid parameter "
                       "\"%V\" for the %V profile%s", &value[i], &value[1],
                       hmac_only ? " (only hmac takes it)" : "");
    return NGX_CONF_ERROR;
}


/* what the word s sets in the table words, or NGX_CONF_UNSET_UINT */
static ngx_uint_t
ngx_vantage_webhook_word(ngx_str_t *s, ngx_conf_enum_t *words)
{
    for ( /* void */ ; words->name.len; words++) {
        if (s->len == words->name.len
            && ngx_strncmp(s->data, words->name.data, s->len) == 0)
        {
            return words->value;
        }
    }

    return NGX_CONF_UNSET_UINT;
}


/* one more active key, for rotation: each file holds one secret */
static char *
ngx_vantage_webhook_secret(ngx_conf_t *cf, ngx_vantage_webhook_conf_t *wcf,
    ngx_str_t *path)
{
    ngx_str_t  *secret;

    secret = ngx_array_push(&wcf->secrets);
    if (secret == NULL) {
        return NGX_CONF_ERROR;
    }

    return ngx_vantage_read_secret_path(cf, "vantage_webhook_verify", path,
                                        secret);
}


/*
 * template=<text with {body} {timestamp} {id} {method} {uri}>: the string
 * the sender signs, made of literal text and those pieces
 */
static char *
ngx_vantage_webhook_template(ngx_conf_t *cf, ngx_vantage_webhook_conf_t *wcf,
    ngx_str_t *value)
{
    u_char                     *p, *last, *q;
    ngx_str_t                   name;
    ngx_uint_t                  i, body;
    ngx_vantage_webhook_seg_t  *seg;

    static const char  *names[] = {
        NULL, "body", "timestamp", "id", "method", "uri"
    };

    wcf->template = ngx_array_create(cf->pool, 4,
                                     sizeof(ngx_vantage_webhook_seg_t));
    if (wcf->template == NULL) {
        return NGX_CONF_ERROR;
    }

    p = value->data;
    last = value->data + value->len;
    body = 0;

    while (p < last) {
        seg = ngx_array_push(wcf->template);
        if (seg == NULL) {
            return NGX_CONF_ERROR;
        }

        if (*p != '{') {
            q = ngx_strlchr(p, last, '{');
            if (q == NULL) {
                q = last;
            }

            seg->type = NGX_VANTAGE_WEBHOOK_SEG_TEXT;
            seg->text.data = p;
            seg->text.len = q - p;
            p = q;
            continue;
        }

        q = ngx_strlchr(p, last, '}');
        if (q == NULL) {
            goto bad;
        }

        name.data = p + 1;
        name.len = q - p - 1;

        for (i = 1; i < sizeof(names) / sizeof(names[0]); i++) {
            if (name.len == ngx_strlen(names[i])
                && ngx_strncmp(name.data, names[i], name.len) == 0)
            {
                break;
            }
        }

        if (i == sizeof(names) / sizeof(names[0])) {
            goto bad;
        }

        seg->type = i;
        ngx_str_null(&seg->text);
        body |= (i == NGX_VANTAGE_WEBHOOK_SEG_BODY);
        p = q + 1;
    }

    if (!body) {
        goto bad;
    }

    return NGX_CONF_OK;

bad:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"vantage_webhook_verify\": template \"%V\" must "
                       "hold {body} and no other braces than {body}, "
                       "{timestamp}, {id}, {method} and {uri}", value);

    return NGX_CONF_ERROR;
}


/*
 * scheme=stripe|svix|github sets what the sender's style implies; an
 * option given explicitly wins.
 */
static char *
ngx_vantage_webhook_hmac_defaults(ngx_conf_t *cf,
    ngx_vantage_webhook_conf_t *wcf, ngx_str_t *scheme)
{
    u_char                     *key;
    size_t                      n;
    ngx_str_t                  *secret, t, plain;
    ngx_uint_t                  i, ts, id;
    ngx_vantage_webhook_seg_t  *seg;

    ngx_str_null(&t);

    if (scheme->len == 0) {
        /* no preset */

    } else if (ngx_strcmp(scheme->data, "github") == 0) {
        if (wcf->header.len == 0) {
            ngx_str_set(&wcf->header, "X-Hub-Signature-256");
        }

        if (wcf->prefix.len == 0) {
            ngx_str_set(&wcf->prefix, "sha256=");
        }

        if (wcf->id_header.len == 0) {
            ngx_str_set(&wcf->id_header, "X-GitHub-Delivery");
        }

    } else if (ngx_strcmp(scheme->data, "stripe") == 0) {
        wcf->format = NGX_VANTAGE_WEBHOOK_STRIPE;

        if (wcf->header.len == 0) {
            ngx_str_set(&wcf->header, "Stripe-Signature");
        }

        ngx_str_set(&t, "{timestamp}.{body}");

    } else if (ngx_strcmp(scheme->data, "svix") == 0) {
        wcf->format = NGX_VANTAGE_WEBHOOK_SVIX;
        wcf->whsec = 1;

        if (wcf->encoding == NGX_CONF_UNSET_UINT) {
            wcf->encoding = VC_WEBHOOK_BASE64;
        }

        if (wcf->header.len == 0) {
            ngx_str_set(&wcf->header, "svix-signature");
        }

        if (wcf->timestamp_header.len == 0) {
            ngx_str_set(&wcf->timestamp_header, "svix-timestamp");
        }

        if (wcf->id_header.len == 0) {
            ngx_str_set(&wcf->id_header, "svix-id");
        }

        ngx_str_set(&t, "{id}.{timestamp}.{body}");

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_webhook_verify\": unknown scheme "
                           "\"%V\" (stripe, svix or github)", scheme);
        return NGX_CONF_ERROR;
    }

    if (wcf->header.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_webhook_verify\": the hmac profile "
                           "needs header=<name> or scheme=stripe|svix|"
                           "github");
        return NGX_CONF_ERROR;
    }

    if (wcf->format == NGX_CONF_UNSET_UINT) {
        wcf->format = NGX_VANTAGE_WEBHOOK_PLAIN;
    }

    if (wcf->encoding == NGX_CONF_UNSET_UINT) {
        wcf->encoding = VC_WEBHOOK_HEX;
    }

    if (wcf->algorithm == NGX_CONF_UNSET_UINT) {
        wcf->algorithm = VC_WEBHOOK_SHA256;
    }

    if (wcf->template == NULL) {
        if (t.len == 0) {
            ngx_str_set(&t, "{body}");
        }

        if (ngx_vantage_webhook_template(cf, wcf, &t) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }
    }

    /* what the template signs must be there to sign */

    ts = (wcf->format == NGX_VANTAGE_WEBHOOK_STRIPE)
         || wcf->timestamp_header.len;
    id = (wcf->id_header.len != 0);
    seg = wcf->template->elts;

    for (i = 0; i < wcf->template->nelts; i++) {
        if ((seg[i].type == NGX_VANTAGE_WEBHOOK_SEG_TS && !ts)
            || (seg[i].type == NGX_VANTAGE_WEBHOOK_SEG_ID && !id))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"vantage_webhook_verify\": the template "
                               "signs {%s} but no %s is configured",
                               ts ? "id" : "timestamp",
                               ts ? "id_header=" : "timestamp_header=");
            return NGX_CONF_ERROR;
        }
    }

    if (!wcf->whsec) {
        return NGX_CONF_OK;
    }

    /* Svix and Standard Webhooks: "whsec_" and the key in base64 */

    secret = wcf->secrets.elts;

    for (i = 0; i < wcf->secrets.nelts; i++) {
        plain = secret[i];

        if (plain.len > 6 && ngx_strncmp(plain.data, "whsec_", 6) == 0) {
            plain.data += 6;
            plain.len -= 6;
        }

        key = ngx_pnalloc(cf->pool, plain.len);
        if (key == NULL) {
            return NGX_CONF_ERROR;
        }

        if (vc_webhook_base64_decode((const char *) plain.data, plain.len,
                                     key, &n)
            != VC_OK || n == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"vantage_webhook_verify\": secret file %ui "
                               "is not a whsec_ secret (\"whsec_\" and "
                               "base64)", i + 1);
            return NGX_CONF_ERROR;
        }

        ngx_explicit_memzero(secret[i].data, secret[i].len);
        secret[i].data = key;
        secret[i].len = n;
    }

    return NGX_CONF_OK;
}


/* called after ngx_vantage_dispatch_merge() and _transform_merge() */
char *
ngx_vantage_webhook_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf)
{
    ngx_vantage_main_conf_t     *vmcf;
    ngx_vantage_webhook_conf_t  *wcf;

    wcf = conf->webhook;

    if (wcf == NULL) {
        return NGX_CONF_OK;
    }

    if (conf->dispatch_type.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_webhook_verify\" requires "
                           "\"vantage_dispatch\" in the same location");
        return NGX_CONF_ERROR;
    }

    /* merged by ngx_vantage_transform_merge(), which has run */
    if (conf->json_request != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_webhook_verify\" and "
                           "\"vantage_json_transform request\" cannot share "
                           "a location: the signature covers the body as "
                           "the sender sent it");
        return NGX_CONF_ERROR;
    }

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_vantage_module);

    if (wcf->replay && vmcf->redis == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_webhook_verify\": replay protection "
                           "needs \"vantage_redis\" in the http block (or "
                           "replay=off)");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * Called by vantage_dispatch before it refuses a method: answers Acrobat
 * Sign's verification of intent, a GET with X-AdobeSign-ClientId.  Returns
 * NGX_DECLINED when the request is not that, else what the content handler
 * returns.
 */
ngx_int_t
ngx_vantage_webhook_handshake(ngx_http_request_t *r)
{
    u_char                         *p;
    ngx_str_t                       body;
    ngx_vantage_loc_conf_t         *vlcf;
    ngx_vantage_webhook_conf_t     *wcf;
    ngx_vantage_webhook_refusal_t   no;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);
    wcf = vlcf->webhook;

    if (wcf == NULL || wcf->profile != NGX_VANTAGE_WEBHOOK_ADOBESIGN
        || !(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)))
    {
        return NGX_DECLINED;
    }

    if (ngx_vantage_webhook_adobesign(r, wcf, &no) != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "vantage webhook: adobesign verification request "
                      "refused: %s", no.log);

        ngx_vantage_webhook_count(wcf, no.outcome);

        return ngx_vantage_webhook_refuse(r, &no);
    }

    ngx_vantage_webhook_count(wcf, NGX_VANTAGE_M_WEBHOOK_OK);

    body.len = sizeof("{\"xAdobeSignClientId\":\"\"}\n") - 1
               + wcf->client_id.len;
    body.data = ngx_pnalloc(r->pool, body.len);
    if (body.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the client id is letters, digits and "-_.": nothing to escape */
    p = ngx_cpymem(body.data, "{\"xAdobeSignClientId\":\"", 23);
    p = ngx_cpymem(p, wcf->client_id.data, wcf->client_id.len);
    ngx_memcpy(p, "\"}\n", 3);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "vantage webhook: adobesign verification request "
                  "answered");

    return ngx_vantage_webhook_send(r, NGX_HTTP_OK, &body);
}


/*
 * Called by vantage_dispatch once the whole body is in memory, before the
 * job is framed.  Returns NGX_OK when the request is verified and is to
 * be dispatched now; NGX_DONE when it has been answered (and finalized)
 * or waits for Redis, after which ngx_vantage_dispatch_resume() goes on.
 */
ngx_int_t
ngx_vantage_webhook_verify(ngx_http_request_t *r, ngx_chain_t *body)
{
    size_t                          n;
    ngx_int_t                       rc;
    ngx_str_t                       id;
    ngx_chain_t                    *cl;
    ngx_http_cleanup_t             *cln;
    ngx_vantage_ctx_t              *vctx;
    vc_webhook_part_t              *parts;
    ngx_vantage_loc_conf_t         *vlcf;
    ngx_vantage_webhook_ctx_t      *wctx;
    ngx_vantage_webhook_conf_t     *wcf;
    ngx_vantage_webhook_refusal_t   no;
    ngx_vantage_redis_cmd_t         cmd;
    const char                     *argv[2];
    size_t                          argvlen[2];

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);
    wcf = vlcf->webhook;

    if (wcf == NULL) {
        return NGX_OK;
    }

    vctx = ngx_vantage_get_ctx(r);

    wctx = ngx_pcalloc(r->pool, sizeof(ngx_vantage_webhook_ctx_t));
    if (wctx == NULL) {
        goto failed;
    }

    wctx->request = r;
    vctx->webhook = wctx;

    /* the body as it lies in dispatch's buffers */

    n = 0;

    for (cl = body; cl; cl = cl->next) {
        n++;
    }

    parts = ngx_palloc(r->pool, (n + 1) * sizeof(vc_webhook_part_t));
    if (parts == NULL) {
        goto failed;
    }

    n = 0;

    for (cl = body; cl; cl = cl->next) {
        parts[n].data = cl->buf->pos;
        parts[n++].len = cl->buf->last - cl->buf->pos;
    }

    ngx_str_null(&id);
    no.status = NGX_HTTP_UNAUTHORIZED;
    no.error = "invalid_signature";

    switch (wcf->profile) {

    case NGX_VANTAGE_WEBHOOK_DOCUSIGN:
        rc = ngx_vantage_webhook_docusign(r, wcf, parts, n, &id, &no);
        break;

    case NGX_VANTAGE_WEBHOOK_HUBSPOT:
        rc = ngx_vantage_webhook_hubspot(r, wcf, parts, n, &id, &no);
        break;

    case NGX_VANTAGE_WEBHOOK_ADOBESIGN:
        rc = ngx_vantage_webhook_adobesign(r, wcf, &no);

        if (rc == NGX_OK) {
            /* no signature: the event is what its bytes are */
            id.data = ngx_pnalloc(r->pool, 65);
            if (id.data == NULL
                || vc_webhook_sha256_hex(parts, n, (char *) id.data)
                   != VC_OK)
            {
                goto failed;
            }

            id.len = 64;
        }

        break;

    default: /* NGX_VANTAGE_WEBHOOK_HMAC */
        rc = ngx_vantage_webhook_hmac(r, wcf, parts, n, &id, &no);
        break;
    }

    if (rc == NGX_ERROR) {
        goto failed;
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "vantage webhook: %V request refused: %s",
                      &wcf->name, no.log);

        ngx_vantage_webhook_count(wcf, no.outcome);

        ngx_http_finalize_request(r, ngx_vantage_webhook_refuse(r, &no));
        return NGX_DONE;
    }

    if (ngx_vantage_webhook_keys(r, wcf, wctx, &id) != NGX_OK) {
        goto failed;
    }

    /* a verified one: counted once it is known whether it is a replay */

    if (!wcf->replay) {
        ngx_vantage_webhook_count(wcf, NGX_VANTAGE_M_WEBHOOK_OK);
        return NGX_OK;
    }

    argv[0] = "EXISTS";
    argvlen[0] = 6;
    argv[1] = (const char *) wctx->key.data;
    argvlen[1] = wctx->key.len;

    cmd.argc = 2;
    cmd.argv = argv;
    cmd.argvlen = argvlen;

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        goto failed;
    }

    cln->handler = ngx_vantage_webhook_cleanup;
    cln->data = wctx;

    wctx->call = ngx_vantage_redis_send(&cmd, 1, 0, ngx_vantage_webhook_seen,
                                        wctx);
    if (wctx->call == NULL) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "vantage webhook: %V replay protection skipped: "
                      "Redis is not available", &wcf->name);
        ngx_vantage_webhook_count(wcf, NGX_VANTAGE_M_WEBHOOK_OK);
        return NGX_OK;
    }

    return NGX_DONE;

failed:

    ngx_vantage_webhook_count(wcf, NGX_VANTAGE_M_WEBHOOK_ERROR);

    no.status = NGX_HTTP_INTERNAL_SERVER_ERROR;
    no.error = "server_error";
    no.description = "the signature could not be checked";

    ngx_http_finalize_request(r, ngx_vantage_webhook_refuse(r, &no));
    return NGX_DONE;
}


/*
 * X-DocuSign-Signature-1 to -100, one per active key on DocuSign's side;
 * any of them matching any of ours is enough.
 */
static ngx_int_t
ngx_vantage_webhook_docusign(ngx_http_request_t *r,
    ngx_vantage_webhook_conf_t *wcf, vc_webhook_part_t *body, size_t n,
    ngx_str_t *id, ngx_vantage_webhook_refusal_t *no)
{
    ngx_int_t         k;
    ngx_str_t         sigs[NGX_VANTAGE_WEBHOOK_MAX_SIGS];
    ngx_uint_t        i, nsigs;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    static const size_t  len = sizeof("X-DocuSign-Signature-") - 1;

    nsigs = 0;
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0 || h[i].key.len <= len || h[i].key.len > len + 3
            || ngx_strncasecmp(h[i].key.data,
                               (u_char *) "X-DocuSign-Signature-", len)
               != 0)
        {
            continue;
        }

        k = ngx_atoi(h[i].key.data + len, h[i].key.len - len);

        if (k < 1 || k > NGX_VANTAGE_WEBHOOK_DOCUSIGN_MAX
            || nsigs == NGX_VANTAGE_WEBHOOK_MAX_SIGS)
        {
            continue;
        }

        sigs[nsigs++] = h[i].value;
    }

    if (nsigs == 0) {
        no->description = "X-DocuSign-Signature-1 is missing";
        no->log = "no X-DocuSign-Signature header";
        no->outcome = NGX_VANTAGE_M_WEBHOOK_MISSING;
        return NGX_DECLINED;
    }

    k = ngx_vantage_webhook_match(wcf, VC_WEBHOOK_SHA256, VC_WEBHOOK_BASE64,
                                  body, n, sigs, nsigs, id);
    if (k != NGX_OK) {
        no->description = "no X-DocuSign-Signature matches the body";
        no->log = "no signature matches";
        no->outcome = NGX_VANTAGE_M_WEBHOOK_MISMATCH;
        return k;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_vantage_webhook_hubspot(ngx_http_request_t *r,
    ngx_vantage_webhook_conf_t *wcf, vc_webhook_part_t *body, size_t n,
    ngx_str_t *id, ngx_vantage_webhook_refusal_t *no)
{
    int                 sig, got;
    u_char             *b, *p;
    char                hex[65];
    size_t              blen;
    int64_t             now;
    ngx_int_t           rc, rc2;
    ngx_str_t           uri, v3, ts, version, *secret;
    ngx_uint_t          i;
    ngx_time_t         *tp;
    vc_webhook_part_t  *parts;

    if (wcf->uri.len) {
        uri = wcf->uri;

    } else if (ngx_vantage_hubspot_uri(r, &uri) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_vantage_header_once(r, &ngx_vantage_webhook_hs_v3, &v3);
    rc2 = ngx_vantage_header_once(r, &ngx_vantage_webhook_hs_ts, &ts);

    if (rc == NGX_ERROR || (rc == NGX_OK && rc2 == NGX_ERROR)) {
        no->status = NGX_HTTP_BAD_REQUEST;
        no->error = "malformed_signature";
        no->description = "a signature header is given twice";
        no->log = "a signature header given twice";
        no->outcome = NGX_VANTAGE_M_WEBHOOK_MALFORMED;
        return NGX_DECLINED;
    }

    if (rc == NGX_DECLINED) {
        goto v2;
    }

    if (rc2 == NGX_DECLINED) {
        no->description = "X-HubSpot-Request-Timestamp is missing";
        no->log = "no X-HubSpot-Request-Timestamp";
        no->outcome = NGX_VANTAGE_M_WEBHOOK_MISSING;
        return NGX_DECLINED;
    }

    if (vc_webhook_timestamp((const char *) ts.data, ts.len, 1, 0, 0)
        == VC_WEBHOOK_TS_MALFORMED)
    {
        no->status = NGX_HTTP_BAD_REQUEST;
        no->error = "malformed_signature";
        no->description = "X-HubSpot-Request-Timestamp is not epoch "
                          "milliseconds";
        no->log = "a malformed timestamp";
        no->outcome = NGX_VANTAGE_M_WEBHOOK_MALFORMED;
        return NGX_DECLINED;
    }

    /* the body in one piece: vc_hubspot hashes it as one */

    b = (u_char *) "";
    blen = 0;

    if (n == 1) {
        b = (u_char *) body[0].data;
        blen = body[0].len;

    } else if (n > 1) {
        for (i = 0; i < n; i++) {
            blen += body[i].len;
        }

        b = ngx_pnalloc(r->pool, blen);
        if (b == NULL) {
            return NGX_ERROR;
        }

        for (i = 0, p = b; i < n; i++) {
            p = ngx_cpymem(p, body[i].data, body[i].len);
        }
    }

    tp = ngx_timeofday();
    now = (int64_t) tp->sec * 1000 + tp->msec;
    got = VC_HUBSPOT_SIG_BAD;
    secret = wcf->secrets.elts;

    for (i = 0; i < wcf->secrets.nelts; i++) {
        sig = vc_hubspot_sig_v3_check(secret[i].data, secret[i].len,
                                      (const char *) r->method_name.data,
                                      r->method_name.len,
                                      (const char *) uri.data, uri.len,
                                      b, blen,
                                      (const char *) ts.data, ts.len,
                                      (const char *) v3.data, v3.len, now,
                                      (int64_t) wcf->tolerance);

        if (sig == VC_HUBSPOT_SIG_OK) {
            *id = v3;
            return NGX_OK;
        }

        if (sig == VC_HUBSPOT_SIG_ERROR) {
            return NGX_ERROR;
        }

        if (sig == VC_HUBSPOT_SIG_STALE) {
            got = sig;
        }
    }

    if (got == VC_HUBSPOT_SIG_STALE
        && ngx_vantage_webhook_time(&ts, 1, wcf->tolerance, no) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    if (got == VC_HUBSPOT_SIG_STALE) {
        /* the clock moved on between the two looks: it is in time now */
        *id = v3;
        return NGX_OK;
    }

    no->description = "X-HubSpot-Signature-v3 does not match the request";
    no->log = "the v3 signature does not match";
    no->outcome = NGX_VANTAGE_M_WEBHOOK_MISMATCH;
    return NGX_DECLINED;

v2:

    rc = ngx_vantage_header_once(r, &ngx_vantage_webhook_hs_sig, &v3);
    rc2 = ngx_vantage_header_once(r, &ngx_vantage_webhook_hs_version,
                                  &version);

    if (rc != NGX_OK || rc2 != NGX_OK || version.len != 2
        || ngx_strncasecmp(version.data, (u_char *) "v2", 2) != 0)
    {
        no->description = "X-HubSpot-Signature-v3 is missing";
        no->log = "no v3 signature";
        no->outcome = NGX_VANTAGE_M_WEBHOOK_MISSING;
        return NGX_DECLINED;
    }

    if (!wcf->v2) {
        no->description = "v2 signatures are not accepted here";
        no->log = "a v2 signature, and v2 is off";
        no->outcome = NGX_VANTAGE_M_WEBHOOK_MISMATCH;
        return NGX_DECLINED;
    }

    /* secret + method + URI + body, hashed (not an HMAC) */

    parts = ngx_palloc(r->pool, (n + 3) * sizeof(vc_webhook_part_t));
    if (parts == NULL) {
        return NGX_ERROR;
    }

    secret = wcf->secrets.elts;

    for (i = 0; i < wcf->secrets.nelts; i++) {
        parts[0].data = secret[i].data;
        parts[0].len = secret[i].len;
        parts[1].data = r->method_name.data;
        parts[1].len = r->method_name.len;
        parts[2].data = uri.data;
        parts[2].len = uri.len;
        ngx_memcpy(&parts[3], body, n * sizeof(vc_webhook_part_t));

        if (vc_webhook_sha256_hex(parts, n + 3, hex) != VC_OK) {
            return NGX_ERROR;
        }

        got = vc_webhook_equal(hex, 64, (const char *) v3.data, v3.len);

        OPENSSL_cleanse(hex, sizeof(hex));

        if (got) {
            *id = v3;
            return NGX_OK;
        }
    }

    no->description = "X-HubSpot-Signature does not match the request";
    no->log = "the v2 signature does not match";
    no->outcome = NGX_VANTAGE_M_WEBHOOK_MISMATCH;
    return NGX_DECLINED;
}


/* X-AdobeSign-ClientId must be ours; it is echoed on the answer */
static ngx_int_t
ngx_vantage_webhook_adobesign(ngx_http_request_t *r,
    ngx_vantage_webhook_conf_t *wcf, ngx_vantage_webhook_refusal_t *no)
{
    ngx_int_t  rc;
    ngx_str_t  v;

    no->status = NGX_HTTP_UNAUTHORIZED;
    no->error = "invalid_client_id";
    no->description = "X-AdobeSign-ClientId is missing or not this "
                      "application's";

    rc = ngx_vantage_header_once(r, &ngx_vantage_webhook_adobe_header, &v);

    if (rc == NGX_DECLINED) {
        no->log = "no X-AdobeSign-ClientId";
        no->outcome = NGX_VANTAGE_M_WEBHOOK_MISSING;
        return NGX_DECLINED;
    }

    if (rc == NGX_ERROR
        || !vc_webhook_equal((const char *) wcf->client_id.data,
                             wcf->client_id.len, (const char *) v.data,
                             v.len))
    {
        no->log = "X-AdobeSign-ClientId is another client's";
        no->outcome = NGX_VANTAGE_M_WEBHOOK_MISMATCH;
        return NGX_DECLINED;
    }

    if (ngx_vantage_add_header(r, "X-AdobeSign-ClientId",
                               sizeof("X-AdobeSign-ClientId") - 1,
                               wcf->client_id.data, wcf->client_id.len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_vantage_webhook_hmac(ngx_http_request_t *r,
    ngx_vantage_webhook_conf_t *wcf, vc_webhook_part_t *body, size_t n,
    ngx_str_t *id, ngx_vantage_webhook_refusal_t *no)
{
    char                        sep, kv;
    size_t                      pos, len;
    ngx_int_t                   rc;
    ngx_str_t                   h, ts, eid, sigs[NGX_VANTAGE_WEBHOOK_MAX_SIGS];
    ngx_uint_t                  i, j, nsigs;
    const char                 *v;
    vc_webhook_part_t          *parts;
    ngx_vantage_webhook_seg_t  *seg;

    ngx_str_null(&ts);
    ngx_str_null(&eid);

    rc = ngx_vantage_header_once(r, &wcf->header, &h);

    if (rc == NGX_DECLINED) {
        no->description = "the signature header is missing";
        no->log = "no signature header";
        no->outcome = NGX_VANTAGE_M_WEBHOOK_MISSING;
        return NGX_DECLINED;
    }

    if (rc == NGX_ERROR) {
        goto twice;
    }

    nsigs = 0;

    if (wcf->format == NGX_VANTAGE_WEBHOOK_PLAIN) {
        if (h.len > wcf->prefix.len
            && ngx_strncmp(h.data, wcf->prefix.data, wcf->prefix.len) == 0)
        {
            sigs[0].data = h.data + wcf->prefix.len;
            sigs[0].len = h.len - wcf->prefix.len;
            nsigs = 1;
        }

    } else {
        sep = (wcf->format == NGX_VANTAGE_WEBHOOK_STRIPE) ? ',' : ' ';
        kv = (wcf->format == NGX_VANTAGE_WEBHOOK_STRIPE) ? '=' : ',';
        pos = 0;

        while (nsigs < NGX_VANTAGE_WEBHOOK_MAX_SIGS
               && vc_webhook_item((const char *) h.data, h.len, sep, kv,
                                  "v1", 2, &pos, &v, &len))
        {
            sigs[nsigs].data = (u_char *) v;
            sigs[nsigs++].len = len;
        }

        pos = 0;

        if (wcf->format == NGX_VANTAGE_WEBHOOK_STRIPE
            && vc_webhook_item((const char *) h.data, h.len, ',', '=', "t", 1,
                               &pos, &v, &len))
        {
            ts.data = (u_char *) v;
            ts.len = len;
        }
    }

    if (wcf->timestamp_header.len) {
        rc = ngx_vantage_header_once(r, &wcf->timestamp_header, &ts);

        if (rc == NGX_ERROR) {
            goto twice;
        }
    }

    if ((wcf->format == NGX_VANTAGE_WEBHOOK_STRIPE
         || wcf->timestamp_header.len)
        && ts.len == 0)
    {
        no->description = "the signature's timestamp is missing";
        no->log = "no timestamp";
        no->outcome = NGX_VANTAGE_M_WEBHOOK_MISSING;
        return NGX_DECLINED;
    }

    if (ts.len
        && vc_webhook_timestamp((const char *) ts.data, ts.len, 1, 0, 0)
           == VC_WEBHOOK_TS_MALFORMED)
    {
        no->status = NGX_HTTP_BAD_REQUEST;
        no->error = "malformed_signature";
        no->description = "the signature's timestamp is not epoch seconds";
        no->log = "a malformed timestamp";
        no->outcome = NGX_VANTAGE_M_WEBHOOK_MALFORMED;
        return NGX_DECLINED;
    }

    if (wcf->id_header.len) {
        rc = ngx_vantage_header_once(r, &wcf->id_header, &eid);

        if (rc == NGX_ERROR) {
            goto twice;
        }

        if (rc == NGX_DECLINED || eid.len == 0) {
            no->description = "the event id header is missing";
            no->log = "no event id header";
            no->outcome = NGX_VANTAGE_M_WEBHOOK_MISSING;
            return NGX_DECLINED;
        }
    }

    if (nsigs == 0) {
        no->description = "the signature header holds no signature";
        no->log = "no signature in the signature header";
        no->outcome = NGX_VANTAGE_M_WEBHOOK_MALFORMED;
        return NGX_DECLINED;
    }

    /* the signed string, as the template lays it out */

    parts = ngx_palloc(r->pool, (wcf->template->nelts + n)
                                * sizeof(vc_webhook_part_t));
    if (parts == NULL) {
        return NGX_ERROR;
    }

    seg = wcf->template->elts;
    j = 0;

    for (i = 0; i < wcf->template->nelts; i++) {
        switch (seg[i].type) {

        case NGX_VANTAGE_WEBHOOK_SEG_BODY:
            ngx_memcpy(&parts[j], body, n * sizeof(vc_webhook_part_t));
            j += n;
            continue;

        case NGX_VANTAGE_WEBHOOK_SEG_TS:
            parts[j].data = ts.data;
            parts[j].len = ts.len;
            break;

        case NGX_VANTAGE_WEBHOOK_SEG_ID:
            parts[j].data = eid.data;
            parts[j].len = eid.len;
            break;

        case NGX_VANTAGE_WEBHOOK_SEG_METHOD:
            parts[j].data = r->method_name.data;
            parts[j].len = r->method_name.len;
            break;

        case NGX_VANTAGE_WEBHOOK_SEG_URI:
            parts[j].data = r->unparsed_uri.data;
            parts[j].len = r->unparsed_uri.len;
            break;

        default: /* NGX_VANTAGE_WEBHOOK_SEG_TEXT */
            parts[j].data = seg[i].text.data;
            parts[j].len = seg[i].text.len;
            break;
        }

        j++;
    }

    rc = ngx_vantage_webhook_match(wcf, (int) wcf->algorithm,
                                   (int) wcf->encoding, parts, j, sigs,
                                   nsigs, id);
    if (rc != NGX_OK) {
        no->description = "the signature does not match the request";
        no->log = "no signature matches";
        no->outcome = NGX_VANTAGE_M_WEBHOOK_MISMATCH;
        return rc;
    }

    /* signed as it was: now its time, in seconds (Stripe, Svix) */

    if (ts.len
        && ngx_vantage_webhook_time(&ts, 1000, wcf->tolerance, no)
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    if (eid.len) {
        *id = eid;
    }

    return NGX_OK;

twice:

    no->status = NGX_HTTP_BAD_REQUEST;
    no->error = "malformed_signature";
    no->description = "a signature header is given twice";
    no->log = "a signature header given twice";
    no->outcome = NGX_VANTAGE_M_WEBHOOK_MALFORMED;

    return NGX_DECLINED;
}


/*
 * Signs the parts with every active key and compares with every candidate
 * the request carries.  Returns NGX_OK with the one that matched, else
 * NGX_DECLINED, or NGX_ERROR when OpenSSL fails.
 */
static ngx_int_t
ngx_vantage_webhook_match(ngx_vantage_webhook_conf_t *wcf, int alg, int enc,
    vc_webhook_part_t *parts, size_t nparts, ngx_str_t *sigs,
    ngx_uint_t nsigs, ngx_str_t *matched)
{
    char        want[VC_WEBHOOK_SIG_MAX];
    size_t      len;
    ngx_int_t   rc;
    ngx_str_t  *secret;
    ngx_uint_t  i, j;

    rc = NGX_DECLINED;
    secret = wcf->secrets.elts;

    for (i = 0; i < wcf->secrets.nelts && rc == NGX_DECLINED; i++) {
        if (vc_webhook_sign(alg, enc, secret[i].data, secret[i].len, parts,
                            nparts, want, &len)
            != VC_OK)
        {
            rc = NGX_ERROR;
            break;
        }

        for (j = 0; j < nsigs; j++) {
            if (vc_webhook_equal(want, len, (const char *) sigs[j].data,
                                 sigs[j].len))
            {
                *matched = sigs[j];
                rc = NGX_OK;
                break;
            }
        }
    }

    OPENSSL_cleanse(want, sizeof(want));

    return rc;
}


/* a signed timestamp within the tolerance, or which way it is not */
static ngx_int_t
ngx_vantage_webhook_time(ngx_str_t *ts, int64_t unit_ms,
    ngx_msec_t tolerance, ngx_vantage_webhook_refusal_t *no)
{
    int          t;
    int64_t      now;
    ngx_time_t  *tp;

    tp = ngx_timeofday();
    now = (int64_t) tp->sec * 1000 + tp->msec;

    t = vc_webhook_timestamp((const char *) ts->data, ts->len, unit_ms, now,
                             (int64_t) tolerance);

    if (t == VC_WEBHOOK_TS_OK) {
        return NGX_OK;
    }

    no->status = NGX_HTTP_UNAUTHORIZED;

    if (t == VC_WEBHOOK_TS_FUTURE) {
        no->error = "future_timestamp";
        no->description = "the signature's timestamp is ahead of this "
                          "server's clock by more than the tolerance";
        no->log = "a timestamp ahead of the clock";
        no->outcome = NGX_VANTAGE_M_WEBHOOK_FUTURE;

    } else {
        no->error = "stale_timestamp";
        no->description = "the signature's timestamp is older than the "
                          "tolerance";
        no->log = "a stale timestamp";
        no->outcome = NGX_VANTAGE_M_WEBHOOK_STALE;
    }

    return NGX_DECLINED;
}


/*
 * The event's key in Redis, "vantage:webhook:<sha256 hex>", and the job's
 * idempotency key, "webhook:<profile>:<sha256 hex>", from the tenant, the
 * profile, the job type and the event's id: no id or signature is kept in
 * clear, and the key is the same length whatever the sender's id.
 */
static ngx_int_t
ngx_vantage_webhook_keys(ngx_http_request_t *r,
    ngx_vantage_webhook_conf_t *wcf, ngx_vantage_webhook_ctx_t *wctx,
    ngx_str_t *id)
{
    char                     hex[65];
    u_char                  *p;
    ngx_str_t                tenant;
    vc_webhook_part_t        parts[7];
    ngx_vantage_loc_conf_t  *vlcf;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);

    if (ngx_http_complex_value(r, vlcf->tenant, &tenant) != NGX_OK) {
        return NGX_ERROR;
    }

    parts[0].data = tenant.data;
    parts[0].len = tenant.len;
    parts[1].data = (u_char *) "";
    parts[1].len = 1;
    parts[2].data = wcf->name.data;
    parts[2].len = wcf->name.len;
    parts[3].data = (u_char *) "";
    parts[3].len = 1;
    parts[4].data = vlcf->dispatch_type.data;
    parts[4].len = vlcf->dispatch_type.len;
    parts[5].data = (u_char *) "";
    parts[5].len = 1;
    parts[6].data = id->data;
    parts[6].len = id->len;

    if (vc_webhook_sha256_hex(parts, 7, hex) != VC_OK) {
        return NGX_ERROR;
    }

    wctx->key.data = ngx_pnalloc(r->pool, sizeof("vantage:webhook:") - 1
                                          + 64 + 1);
    if (wctx->key.data == NULL) {
        return NGX_ERROR;
    }

    /* NUL-terminated: hiredis takes lengths, the debug log does not */
    p = ngx_sprintf(wctx->key.data, "vantage:webhook:%*s", (size_t) 64, hex);
    wctx->key.len = p - wctx->key.data;
    *p = '\0';

    wctx->idempotency_key.data = ngx_pnalloc(r->pool,
                                             sizeof("webhook::") - 1
                                             + wcf->name.len + 64);
    if (wctx->idempotency_key.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(wctx->idempotency_key.data, "webhook:%V:%*s",
                    &wcf->name, (size_t) 64, hex);
    wctx->idempotency_key.len = p - wctx->idempotency_key.data;

    return NGX_OK;
}


/* Redis's answer to EXISTS: a replay is acknowledged, else dispatched */
static void
ngx_vantage_webhook_seen(void *data, redisReply *reply)
{
    ngx_vantage_webhook_ctx_t  *wctx = data;

    ngx_connection_t            *c;
    ngx_http_request_t          *r;
    ngx_vantage_loc_conf_t      *vlcf;
    ngx_vantage_webhook_conf_t  *wcf;

    r = wctx->request;
    c = r->connection;
    wctx->call = NULL;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);
    wcf = vlcf->webhook;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_log_error(NGX_LOG_WARN, c->log, 0,
                      "vantage webhook: %V replay protection skipped: "
                      "Redis did not answer", &wcf->name);

        ngx_vantage_webhook_count(wcf, NGX_VANTAGE_M_WEBHOOK_OK);
        ngx_vantage_dispatch_resume(r);

    } else if (reply->integer > 0) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "vantage webhook: %V replay of an event already "
                      "taken, acknowledged without a job", &wcf->name);

        ngx_vantage_webhook_count(wcf, NGX_VANTAGE_M_WEBHOOK_REPLAYED);

        /* the job it is already is not durable twice: the key stays */
        ngx_str_null(&wctx->key);

        ngx_http_finalize_request(r,
            ngx_vantage_webhook_send(r, NGX_HTTP_OK,
                                     &ngx_vantage_webhook_replayed));

    } else {
        ngx_vantage_webhook_count(wcf, NGX_VANTAGE_M_WEBHOOK_OK);
        ngx_vantage_dispatch_resume(r);
    }

    ngx_http_run_posted_requests(c);
}


/*
 * Called by vantage_dispatch when the worker has said the job is durable
 * (or was already): from now on a delivery of the same event is a replay.
 * Fire and forget: a key lost here costs a duplicate, which the worker's
 * idempotency catches.
 */
void
ngx_vantage_webhook_durable(ngx_http_request_t *r)
{
    ngx_vantage_ctx_t           *vctx;
    ngx_vantage_loc_conf_t      *vlcf;
    ngx_vantage_redis_cmd_t      cmd;
    ngx_vantage_webhook_ctx_t   *wctx;
    ngx_vantage_webhook_conf_t  *wcf;
    const char                  *argv[5];
    size_t                       argvlen[5];

    vctx = ngx_vantage_get_ctx(r);
    wctx = vctx ? vctx->webhook : NULL;

    if (wctx == NULL || wctx->key.len == 0) {
        return;
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);
    wcf = vlcf->webhook;

    if (wcf == NULL || !wcf->replay) {
        return;
    }

    argv[0] = "SET";
    argvlen[0] = 3;
    argv[1] = (const char *) wctx->key.data;
    argvlen[1] = wctx->key.len;
    argv[2] = "1";
    argvlen[2] = 1;
    argv[3] = "PX";
    argvlen[3] = 2;
    argv[4] = (const char *) wcf->ttl.data;
    argvlen[4] = wcf->ttl.len;

    cmd.argc = 5;
    cmd.argv = argv;
    cmd.argvlen = argvlen;

    if (ngx_vantage_redis_post(&cmd, 1) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "vantage webhook: %V event not recorded for replay "
                      "protection: Redis is not available", &wcf->name);
    }

    ngx_str_null(&wctx->key);
}


/*
 * The job's idempotency key for vantage_dispatch: NGX_OK with it for a
 * verified webhook, NGX_DECLINED otherwise (the caller's header then).
 */
ngx_int_t
ngx_vantage_webhook_idempotency_key(ngx_http_request_t *r, ngx_str_t *key)
{
    ngx_vantage_ctx_t          *vctx;
    ngx_vantage_webhook_ctx_t  *wctx;

    vctx = ngx_vantage_get_ctx(r);
    wctx = vctx ? vctx->webhook : NULL;

    if (wctx == NULL || wctx->idempotency_key.len == 0) {
        return NGX_DECLINED;
    }

    *key = wctx->idempotency_key;

    return NGX_OK;
}


/*
 * A JSON answer, returned rather than finalized (as dispatch's are): a
 * content handler returns it, the other paths finalize with it.
 */
static ngx_int_t
ngx_vantage_webhook_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body)
{
    ngx_int_t  rc;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_vantage_send_body(r, status, &ngx_vantage_json_type, body);
}


static ngx_int_t
ngx_vantage_webhook_refuse(ngx_http_request_t *r,
    ngx_vantage_webhook_refusal_t *no)
{
    ngx_str_t  body;

    if (ngx_vantage_json_error(r->pool, no->error, no->description, &body)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_vantage_webhook_send(r, no->status, &body);
}


static void
ngx_vantage_webhook_cleanup(void *data)
{
    ngx_vantage_webhook_ctx_t  *wctx = data;

    if (wctx->call != NULL) {
        ngx_vantage_redis_cancel(wctx->call);
        wctx->call = NULL;
    }
}


/* vantage_webhook_verifications_total{profile,outcome} */
static void
ngx_vantage_webhook_count(ngx_vantage_webhook_conf_t *wcf, ngx_uint_t outcome)
{
    ngx_vantage_metrics_inc(NGX_VANTAGE_M_WEBHOOK
                            + wcf->profile * NGX_VANTAGE_M_WEBHOOK_OUTCOMES
                            + outcome);
}
