/* ngx_vantage_sfoutbound.c -- Salesforce Outbound Messages in, as jobs */

/*
 * vantage_salesforce_outbound is a content handler for the SOAP
 * notifications() calls a Salesforce workflow or flow sends.  It reads the
 * whole body into memory, parses it with libxml2 (no DOCTYPE at all, so no
 * entity and no DTD is ever looked at; no network), checks that the message
 * comes from the configured organization, and makes one DISPATCH per
 * Notification: the idempotency key is the notification's Id, which
 * Salesforce sends again unchanged when it retries, so a retried message
 * makes no second job.  The acknowledgement, <Ack>true</Ack>, goes out only
 * when the worker has said that every one of the jobs is durable; anything
 * less is a SOAP fault without an Ack, and Salesforce retries the message
 * later (for up to 24 hours).
 *
 * A job's body is the record as Salesforce's REST API shows one, which is
 * what the mappings read (docs/MAPPING.md):
 *
 *     {"attributes":{"type":"Contact"},"Id":"003...","Email":"...",...}
 *
 * every field element of the sObject in document order, as text, null for
 * xsi:nil="true", an object for an element with elements inside.
 *
 * The SessionId is a live Salesforce session: it is never copied, framed
 * or logged, nor is any field value.
 *
 * Reading the body, the calls to the worker and their counting are
 * ngx_vantage_fanout.c's, shared with vantage_hubspot_webhook.
 */

#include "ngx_vantage_module.h"
#include "ngx_vantage_fanout.h"

#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>


#define NGX_VANTAGE_SFOUT_NS_SOAP  "http://schemas.xmlsoap.org/soap/envelope/"
#define NGX_VANTAGE_SFOUT_NS_OUT   "http://soap.sforce.com/2005/09/outbound"
#define NGX_VANTAGE_SFOUT_NS_XSI   "http://www.w3.org/2001/XMLSchema-instance"
#define NGX_VANTAGE_SFOUT_NS_ENT   "urn:sobject.enterprise.soap.sforce.com"
#define NGX_VANTAGE_SFOUT_NS_PART  "urn:sobject.partner.soap.sforce.com"

#define NGX_VANTAGE_SFOUT_MAX      100     /* Salesforce sends at most 100 */


typedef struct {
    ngx_str_t                   job_type;
    ngx_str_t                   org_id;    /* 15 or 18 characters */
    ngx_uint_t                  max_notifications;
} ngx_vantage_sfout_conf_t;


/* what the fan-out's data points to */
typedef struct {
    ngx_str_t                   org_id;    /* as the message says */
    ngx_uint_t                  status;    /* a refusal's, by _refuse() */
    const char                 *reason;
} ngx_vantage_sfout_ctx_t;


static ngx_int_t ngx_vantage_sfout_handler(ngx_http_request_t *r);
static ngx_int_t ngx_vantage_sfout_process(ngx_http_request_t *r,
    ngx_vantage_fanout_t *fo);
static ngx_int_t ngx_vantage_sfout_parse(ngx_http_request_t *r,
    ngx_vantage_fanout_t *fo, xmlDocPtr doc);
static ngx_int_t ngx_vantage_sfout_job(ngx_http_request_t *r,
    ngx_vantage_fanout_job_t *job, xmlNodePtr note);
static json_t *ngx_vantage_sfout_value(xmlNodePtr node);
static ngx_int_t ngx_vantage_sfout_answer(ngx_http_request_t *r,
    ngx_vantage_fanout_t *fo);
static ngx_int_t ngx_vantage_sfout_fault(ngx_http_request_t *r,
    ngx_vantage_fanout_t *fo, ngx_uint_t status, const char *reason,
    ngx_str_t *detail);
static ngx_int_t ngx_vantage_sfout_refuse(ngx_vantage_sfout_ctx_t *ctx,
    ngx_uint_t status, const char *reason);
static ngx_int_t ngx_vantage_sfout_org_id(ngx_str_t *id);
static ngx_int_t ngx_vantage_sfout_same_org(ngx_str_t *a, ngx_str_t *b);
static ngx_int_t ngx_vantage_sfout_alnum(ngx_str_t *s, size_t max);
static ngx_uint_t ngx_vantage_sfout_is(xmlNodePtr node, const char *ns,
    const char *name);
static xmlNodePtr ngx_vantage_sfout_element(xmlNodePtr node);
static ngx_int_t ngx_vantage_sfout_text(ngx_pool_t *pool, xmlNodePtr node,
    ngx_str_t *s);
static void ngx_vantage_sfout_doctype(void *data, const xmlChar *name,
    const xmlChar *external_id, const xmlChar *system_id);
static void ngx_vantage_sfout_xml_error(void *data, xmlErrorPtr error);


static ngx_str_t  ngx_vantage_sfout_allow = ngx_string("POST");

static ngx_str_t  ngx_vantage_sfout_type =
    ngx_string("text/xml; charset=utf-8");

static ngx_str_t  ngx_vantage_sfout_ack = ngx_string(
    "<soapenv:Envelope "
    "xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\">"
    "<soapenv:Body>"
    "<notificationsResponse "
    "xmlns=\"http://soap.sforce.com/2005/09/outbound\">"
    "<Ack>true</Ack>"
    "</notificationsResponse>"
    "</soapenv:Body>"
    "</soapenv:Envelope>");


/*
 * vantage_salesforce_outbound <job type> org_id=<id> [max_notifications=N]
 */
char *
ngx_vantage_sfout_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t  *vlcf = conf;

    ngx_int_t                  n;
    ngx_str_t                 *value, s;
    ngx_uint_t                 i;
    ngx_http_core_loc_conf_t  *clcf;
    ngx_vantage_sfout_conf_t  *sfcf;

    if (vlcf->sfout != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_vantage_fanout_job_type(cf, &value[1]) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    sfcf = ngx_pcalloc(cf->pool, sizeof(ngx_vantage_sfout_conf_t));
    if (sfcf == NULL) {
        return NGX_CONF_ERROR;
    }

    sfcf->job_type = value[1];
    sfcf->max_notifications = NGX_VANTAGE_SFOUT_MAX;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "org_id=", 7) == 0) {
            s.data = value[i].data + 7;
            s.len = value[i].len - 7;

            if (ngx_vantage_sfout_org_id(&s) != NGX_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"vantage_salesforce_outbound\": "
                                   "\"%V\" is not an organization id "
                                   "(15 or 18 letters and digits starting "
                                   "with 00D)", &s);
                return NGX_CONF_ERROR;
            }

            sfcf->org_id = s;
            continue;
        }

        if (ngx_strncmp(value[i].data, "max_notifications=", 18) == 0) {
            n = ngx_atoi(value[i].data + 18, value[i].len - 18);

            if (n < 1 || n > NGX_VANTAGE_SFOUT_MAX) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"vantage_salesforce_outbound\": "
                                   "\"%V\" must be from 1 to 100, the most "
                                   "Salesforce sends in one message",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            sfcf->max_notifications = n;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_salesforce_outbound\": invalid "
                           "parameter \"%V\" (org_id=<id> or "
                           "max_notifications=<n>)", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (sfcf->org_id.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_salesforce_outbound\" needs "
                           "org_id=<id>: a message from another "
                           "organization must be refused");
        return NGX_CONF_ERROR;
    }

    vlcf->sfout = sfcf;

    /* once, in the master: initialization is not safe later and lazily */
    xmlInitParser();

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_vantage_sfout_handler;

    return NGX_CONF_OK;
}


/* called after ngx_vantage_dispatch_merge(), which merges vantage_tenant */
char *
ngx_vantage_sfout_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf)
{
    if (conf->sfout == NULL) {
        return NGX_CONF_OK;
    }

    return ngx_vantage_fanout_merge(cf, conf, "vantage_salesforce_outbound");
}


static ngx_int_t
ngx_vantage_sfout_handler(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_str_t                  tenant;
    ngx_vantage_fanout_t      *fo;
    ngx_vantage_loc_conf_t    *vlcf;
    ngx_vantage_sfout_ctx_t   *ctx;
    ngx_vantage_sfout_conf_t  *sfcf;

    if (r->method != NGX_HTTP_POST) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        if (ngx_vantage_add_header(r, "Allow", sizeof("Allow") - 1,
                                   ngx_vantage_sfout_allow.data,
                                   ngx_vantage_sfout_allow.len)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_vantage_sfout_fault(r, NULL, NGX_HTTP_NOT_ALLOWED,
                                       "notifications are sent with POST",
                                       NULL);
    }

    rc = ngx_vantage_fanout_tenant(r, &tenant);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_vantage_sfout_fault(r, NULL, NGX_HTTP_FORBIDDEN,
                                       "the request names no tenant", NULL);
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_vantage_sfout_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    fo = ngx_vantage_fanout_create(r, &tenant);
    if (fo == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);
    sfcf = vlcf->sfout;

    fo->log_name = "vantage salesforce outbound";
    fo->body_handler = ngx_vantage_sfout_process;
    fo->done_handler = ngx_vantage_sfout_answer;
    fo->data = ctx;
    fo->job_type = sfcf->job_type;

    return ngx_vantage_fanout_read(r, fo);
}


/*
 * The whole body is in: parse it, make the jobs and send them.  Returns
 * NGX_DONE while the worker's answers are awaited, else what to finalize
 * the request with.
 */
static ngx_int_t
ngx_vantage_sfout_process(ngx_http_request_t *r, ngx_vantage_fanout_t *fo)
{
    int                       wf;
    ngx_int_t                 rc;
    ngx_uint_t                doctype;
    xmlDocPtr                 doc;
    xmlParserCtxtPtr          pctx;
    ngx_vantage_sfout_ctx_t  *ctx;

    ctx = fo->data;

    if (fo->len == 0) {
        return ngx_vantage_sfout_fault(r, fo, NGX_HTTP_BAD_REQUEST,
                                       "the body is empty", NULL);
    }

    if (fo->len > INT_MAX) {
        return ngx_vantage_sfout_fault(r, fo,
                                       NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                       "the body is too large", NULL);
    }

    pctx = xmlCreateMemoryParserCtxt((const char *) fo->buf, fo->len);
    if (pctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * No XML_PARSE_NOENT (entities would be substituted), no
     * XML_PARSE_DTDLOAD or _DTDATTR, no network; and a DOCTYPE stops the
     * parser the moment it is met, before a declaration in it is read, so
     * neither an external entity (XXE) nor an expanding one ever is.
     * Blanks are kept: a value of spaces is a value.
     */
    (void) xmlCtxtUseOptions(pctx, XML_PARSE_NONET | XML_PARSE_NOERROR
                                   | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);

    doctype = 0;
    pctx->_private = &doctype;
    pctx->sax->internalSubset = ngx_vantage_sfout_doctype;
    pctx->sax->externalSubset = NULL;
    pctx->sax->resolveEntity = NULL;
    pctx->sax->serror = ngx_vantage_sfout_xml_error;

    (void) xmlParseDocument(pctx);

    doc = pctx->myDoc;
    wf = pctx->wellFormed;
    pctx->myDoc = NULL;
    xmlFreeParserCtxt(pctx);

    if (doctype || !wf || doc == NULL) {
        if (doc != NULL) {
            xmlFreeDoc(doc);
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "vantage salesforce outbound: %s",
                      doctype ? "a message with a DOCTYPE refused"
                              : "a body that is not well-formed XML");

        return ngx_vantage_sfout_fault(r, fo, NGX_HTTP_BAD_REQUEST,
                                       doctype ? "a DOCTYPE is not accepted"
                                               : "the body is not "
                                                 "well-formed XML",
                                       NULL);
    }

    rc = ngx_vantage_sfout_parse(r, fo, doc);

    xmlFreeDoc(doc);

    if (rc == NGX_DECLINED) {
        return ngx_vantage_sfout_fault(r, fo, ctx->status, ctx->reason,
                                       NULL);
    }

    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_vantage_fanout_send(r, fo);
}


/*
 * Checks the envelope and the organization and makes fo->jobs.  Returns
 * NGX_OK, NGX_DECLINED when the message is refused (ctx->status and
 * ctx->reason say how), or an error status.
 */
static ngx_int_t
ngx_vantage_sfout_parse(ngx_http_request_t *r, ngx_vantage_fanout_t *fo,
    xmlDocPtr doc)
{
    ngx_int_t                  rc;
    ngx_uint_t                 n, i, j;
    xmlNodePtr                 node, body, notes, org;
    ngx_vantage_sfout_ctx_t   *ctx;
    ngx_vantage_loc_conf_t    *vlcf;
    ngx_vantage_sfout_conf_t  *sfcf;
    ngx_vantage_fanout_job_t  *job;

    ctx = fo->data;
    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);
    sfcf = vlcf->sfout;

    node = xmlDocGetRootElement(doc);

    if (!ngx_vantage_sfout_is(node, NGX_VANTAGE_SFOUT_NS_SOAP, "Envelope")) {
        return ngx_vantage_sfout_refuse(ctx, NGX_HTTP_BAD_REQUEST,
                                        "not a SOAP 1.1 Envelope");
    }

    body = NULL;

    for (node = ngx_vantage_sfout_element(node->children);
         node;
         node = ngx_vantage_sfout_element(node->next))
    {
        if (ngx_vantage_sfout_is(node, NGX_VANTAGE_SFOUT_NS_SOAP, "Body")) {
            body = node;
            break;
        }
    }

    notes = body ? ngx_vantage_sfout_element(body->children) : NULL;

    if (!ngx_vantage_sfout_is(notes, NGX_VANTAGE_SFOUT_NS_OUT,
                              "notifications"))
    {
        return ngx_vantage_sfout_refuse(ctx, NGX_HTTP_BAD_REQUEST,
                                        "the Body holds no notifications "
                                        "element of "
                                        NGX_VANTAGE_SFOUT_NS_OUT);
    }

    /* the organization first, then the count, then the notifications */

    org = NULL;
    n = 0;

    for (node = ngx_vantage_sfout_element(notes->children);
         node;
         node = ngx_vantage_sfout_element(node->next))
    {
        if (ngx_vantage_sfout_is(node, NGX_VANTAGE_SFOUT_NS_OUT,
                                 "OrganizationId"))
        {
            org = node;

        } else if (ngx_vantage_sfout_is(node, NGX_VANTAGE_SFOUT_NS_OUT,
                                        "Notification"))
        {
            n++;
        }

        /* SessionId, ActionId and the URLs are not read */
    }

    if (org == NULL) {
        return ngx_vantage_sfout_refuse(ctx, NGX_HTTP_BAD_REQUEST,
                                        "the message has no OrganizationId");
    }

    if (ngx_vantage_sfout_text(r->pool, org, &ctx->org_id) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_vantage_sfout_org_id(&ctx->org_id) != NGX_OK
        || ngx_vantage_sfout_same_org(&ctx->org_id, &sfcf->org_id) != NGX_OK)
    {
        if (ngx_vantage_sfout_org_id(&ctx->org_id) == NGX_OK) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "vantage salesforce outbound: a message of "
                          "organization \"%V\", not \"%V\", refused",
                          &ctx->org_id, &sfcf->org_id);

        } else {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "vantage salesforce outbound: a message with a "
                          "malformed OrganizationId refused");
        }

        return ngx_vantage_sfout_refuse(ctx, NGX_HTTP_FORBIDDEN,
                                        "this endpoint takes messages of "
                                        "another organization");
    }

    if (n == 0 || n > sfcf->max_notifications) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "vantage salesforce outbound: a message of "
                      "organization \"%V\" with %ui notifications refused "
                      "(1 to %ui)", &ctx->org_id, n,
                      sfcf->max_notifications);

        return ngx_vantage_sfout_refuse(ctx, NGX_HTTP_BAD_REQUEST,
                                        n ? "too many notifications in one "
                                            "message"
                                          : "the message has no "
                                            "Notification");
    }

    fo->jobs = ngx_pcalloc(r->pool, n * sizeof(ngx_vantage_fanout_job_t));
    if (fo->jobs == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    i = 0;

    for (node = ngx_vantage_sfout_element(notes->children);
         node;
         node = ngx_vantage_sfout_element(node->next))
    {
        if (!ngx_vantage_sfout_is(node, NGX_VANTAGE_SFOUT_NS_OUT,
                                  "Notification"))
        {
            continue;
        }

        job = &fo->jobs[i];

        rc = ngx_vantage_sfout_job(r, job, node);

        if (rc == NGX_DECLINED) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "vantage salesforce outbound: notification %ui "
                          "of a message of organization \"%V\" is malformed",
                          i + 1, &ctx->org_id);

            return ngx_vantage_sfout_refuse(ctx, NGX_HTTP_BAD_REQUEST,
                                            "a Notification without a valid "
                                            "Id, or an sObject without its "
                                            "xsi:type");
        }

        if (rc != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* two jobs under one key would wait for each other */
        for (j = 0; j < i; j++) {
            if (fo->jobs[j].key.len == job->key.len
                && ngx_strncmp(fo->jobs[j].key.data, job->key.data,
                               job->key.len) == 0)
            {
                return ngx_vantage_sfout_refuse(ctx, NGX_HTTP_BAD_REQUEST,
                                                "a notification Id is "
                                                "repeated");
            }
        }

        i++;
    }

    fo->njobs = i;

    return NGX_OK;
}


/*
 * One Notification's job: its Id, the record's JSON and the source header.
 * Returns NGX_OK, NGX_DECLINED for a malformed notification, or NGX_ERROR.
 */
static ngx_int_t
ngx_vantage_sfout_job(ngx_http_request_t *r, ngx_vantage_fanout_job_t *job,
    xmlNodePtr note)
{
    char        *dump;
    u_char      *p;
    size_t       len;
    json_t      *rec, *attrs, *v;
    xmlNsPtr     ns;
    xmlChar     *type, *prefix;
    ngx_str_t    sid;
    ngx_int_t    rc;
    xmlNodePtr   node, sobj, field;

    sobj = NULL;
    ngx_str_null(&job->key);

    for (node = ngx_vantage_sfout_element(note->children);
         node;
         node = ngx_vantage_sfout_element(node->next))
    {
        if (ngx_vantage_sfout_is(node, NGX_VANTAGE_SFOUT_NS_OUT, "Id")) {
            if (ngx_vantage_sfout_text(r->pool, node, &job->key) != NGX_OK) {
                return NGX_ERROR;
            }

        } else if (ngx_vantage_sfout_is(node, NGX_VANTAGE_SFOUT_NS_OUT,
                                        "sObject"))
        {
            sobj = node;
        }
    }

    if (sobj == NULL || ngx_vantage_sfout_alnum(&job->key, 18) != NGX_OK) {
        return NGX_DECLINED;
    }

    /* xsi:type="sf:Contact", the prefix bound to an sObject namespace */

    type = xmlGetNsProp(sobj, (const xmlChar *) "type",
                        (const xmlChar *) NGX_VANTAGE_SFOUT_NS_XSI);
    if (type == NULL) {
        return NGX_DECLINED;
    }

    p = (u_char *) ngx_strchr(type, ':');
    prefix = NULL;

    if (p != NULL) {
        prefix = xmlStrndup(type, p - type);
        if (prefix == NULL) {
            xmlFree(type);
            return NGX_ERROR;
        }

        p++;

    } else {
        p = type;
    }

    ns = xmlSearchNs(sobj->doc, sobj, prefix);
    xmlFree(prefix);

    sid.data = p;
    sid.len = ngx_strlen(p);

    if (ns == NULL || ns->href == NULL
        || (xmlStrcmp(ns->href, (const xmlChar *) NGX_VANTAGE_SFOUT_NS_ENT)
            != 0
            && xmlStrcmp(ns->href,
                         (const xmlChar *) NGX_VANTAGE_SFOUT_NS_PART) != 0)
        || sid.len == 0 || sid.len > 80)
    {
        xmlFree(type);
        return NGX_DECLINED;
    }

    for (len = 0; len < sid.len; len++) {
        if (!(isalnum(sid.data[len]) || sid.data[len] == '_')) {
            xmlFree(type);
            return NGX_DECLINED;
        }
    }

    rec = json_object();
    attrs = json_object();
    v = json_stringn((const char *) sid.data, sid.len);

    xmlFree(type);

    if (rec == NULL || attrs == NULL || v == NULL
        || json_object_set_new(attrs, "type", v) != 0
        || json_object_set_new(rec, "attributes", attrs) != 0)
    {
        json_decref(rec);
        json_decref(attrs);
        return NGX_ERROR;
    }

    ngx_str_null(&sid);

    for (field = ngx_vantage_sfout_element(sobj->children);
         field;
         field = ngx_vantage_sfout_element(field->next))
    {
        v = ngx_vantage_sfout_value(field);

        if (v == NULL
            || json_object_set_new(rec, (const char *) field->name, v) != 0)
        {
            json_decref(rec);
            return NGX_ERROR;
        }

        if (xmlStrcmp(field->name, (const xmlChar *) "Id") == 0
            && json_is_string(v))
        {
            sid.data = (u_char *) json_string_value(v);
            sid.len = json_string_length(v);
        }
    }

    /* the record's Id, for the ID cross-reference (docs/CONNECTORS.md) */

    rc = NGX_OK;

    if (sid.data != NULL) {
        if (ngx_vantage_sfout_alnum(&sid, 18) != NGX_OK) {
            rc = NGX_DECLINED;
            goto done;
        }

        len = sizeof("X-Vantage-Source") + sizeof("salesforce:") - 1
              + sid.len;

        job->source.data = ngx_pnalloc(r->pool, len);
        if (job->source.data == NULL) {
            rc = NGX_ERROR;
            goto done;
        }

        p = ngx_cpymem(job->source.data, "X-Vantage-Source",
                       sizeof("X-Vantage-Source"));
        p = ngx_cpymem(p, "salesforce:", sizeof("salesforce:") - 1);
        p = ngx_cpymem(p, sid.data, sid.len);
        job->source.len = p - job->source.data;
    }

    /* the same message gives the same bytes: what idempotency compares */

    dump = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (dump == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    job->body.len = ngx_strlen(dump);
    job->body.data = ngx_pnalloc(r->pool, job->body.len);

    if (job->body.data == NULL) {
        rc = NGX_ERROR;

    } else {
        ngx_memcpy(job->body.data, dump, job->body.len);
    }

    free(dump);

done:

    json_decref(rec);

    return rc;
}


/* a field's value: null, its text, or an object of the elements inside */
static json_t *
ngx_vantage_sfout_value(xmlNodePtr node)
{
    json_t      *obj, *v;
    xmlChar     *nil, *text;
    xmlNodePtr   child;

    nil = xmlGetNsProp(node, (const xmlChar *) "nil",
                       (const xmlChar *) NGX_VANTAGE_SFOUT_NS_XSI);
    if (nil != NULL) {
        v = NULL;

        if (xmlStrcmp(nil, (const xmlChar *) "true") == 0
            || xmlStrcmp(nil, (const xmlChar *) "1") == 0)
        {
            v = json_null();
        }

        xmlFree(nil);

        if (v != NULL) {
            return v;
        }
    }

    child = ngx_vantage_sfout_element(node->children);

    if (child == NULL) {
        text = xmlNodeGetContent(node);
        v = json_string(text ? (const char *) text : "");
        xmlFree(text);
        return v;
    }

    obj = json_object();
    if (obj == NULL) {
        return NULL;
    }

    for ( /* void */ ; child; child = ngx_vantage_sfout_element(child->next)) {
        v = ngx_vantage_sfout_value(child);

        if (v == NULL
            || json_object_set_new(obj, (const char *) child->name, v) != 0)
        {
            json_decref(obj);
            return NULL;
        }
    }

    return obj;
}


/*
 * Every call is answered: the Ack only when every job is durable.  A job
 * the worker refused (an unknown job type, a notification Id whose first
 * body differed) is a 500 fault, anything the worker may get over a 503;
 * Salesforce retries both, and the jobs already durable are found again by
 * their keys.
 */
static ngx_int_t
ngx_vantage_sfout_answer(ngx_http_request_t *r, ngx_vantage_fanout_t *fo)
{
    ngx_vantage_sfout_ctx_t  *ctx;

    ctx = fo->data;

    if (fo->refused == 0 && fo->unavailable == 0) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "vantage salesforce outbound: %ui notifications of "
                      "organization \"%V\" acknowledged: %ui new, "
                      "%ui already queued", fo->njobs, &ctx->org_id,
                      fo->fresh, fo->repeated);

        return ngx_vantage_fanout_respond(r, fo, NGX_HTTP_OK,
                                          &ngx_vantage_sfout_type,
                                          &ngx_vantage_sfout_ack);
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "vantage salesforce outbound: %ui of %ui notifications of "
                  "organization \"%V\" not durable (%ui refused, "
                  "%ui unavailable): \"%V\"; not acknowledged",
                  fo->refused + fo->unavailable, fo->njobs, &ctx->org_id,
                  fo->refused, fo->unavailable, &fo->error);

    if (fo->refused) {
        return ngx_vantage_sfout_fault(r, fo,
                                       NGX_HTTP_INTERNAL_SERVER_ERROR,
                                       "the job queue refused a "
                                       "notification", &fo->error);
    }

    if (ngx_vantage_fanout_retry_after(r, fo) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_vantage_sfout_fault(r, fo, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "the job queue is not available; the "
                                   "message is not acknowledged",
                                   &fo->error);
}


/*
 * A SOAP 1.1 fault, returned rather than finalized, as
 * ngx_vantage_dispatch_error() does; never an Ack.  detail, when given, is
 * the worker's reason (safe to show) and is escaped.
 */
static ngx_int_t
ngx_vantage_sfout_fault(ngx_http_request_t *r, ngx_vantage_fanout_t *fo,
    ngx_uint_t status, const char *reason, ngx_str_t *detail)
{
    u_char      *p;
    size_t       len;
    ngx_str_t    body;
    const char  *code;

    static const char  head[] =
        "<soapenv:Envelope "
        "xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\">"
        "<soapenv:Body><soapenv:Fault><faultcode>";
    static const char  mid[] = "</faultcode><faultstring>";
    static const char  tail[] =
        "</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>";

    code = (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) ? "soapenv:Server"
                                                      : "soapenv:Client";

    len = sizeof(head) - 1 + ngx_strlen(code) + sizeof(mid) - 1
          + ngx_strlen(reason) + sizeof(tail) - 1;

    if (detail != NULL && detail->len) {
        len += 2 + detail->len
               + ngx_escape_html(NULL, detail->data, detail->len);
    }

    body.data = ngx_pnalloc(r->pool, len);
    if (body.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(body.data, head, sizeof(head) - 1);
    p = ngx_cpymem(p, code, ngx_strlen(code));
    p = ngx_cpymem(p, mid, sizeof(mid) - 1);
    p = ngx_cpymem(p, reason, ngx_strlen(reason));

    if (detail != NULL && detail->len) {
        *p++ = ':';
        *p++ = ' ';
        p = (u_char *) ngx_escape_html(p, detail->data, detail->len);
    }

    p = ngx_cpymem(p, tail, sizeof(tail) - 1);
    body.len = p - body.data;

    return ngx_vantage_fanout_respond(r, fo, status, &ngx_vantage_sfout_type,
                                      &body);
}


/* records a refusal for ngx_vantage_sfout_process() to answer */
static ngx_int_t
ngx_vantage_sfout_refuse(ngx_vantage_sfout_ctx_t *ctx, ngx_uint_t status,
    const char *reason)
{
    ctx->status = status;
    ctx->reason = reason;

    return NGX_DECLINED;
}


/* 15 or 18 letters and digits, starting with 00D: an organization's id */
static ngx_int_t
ngx_vantage_sfout_org_id(ngx_str_t *id)
{
    if ((id->len != 15 && id->len != 18)
        || ngx_strncmp(id->data, "00D", 3) != 0)
    {
        return NGX_ERROR;
    }

    return ngx_vantage_sfout_alnum(id, 18);
}


/*
 * The 15-character id is case-sensitive and is the 18-character one's
 * prefix; the last three characters of an 18-character id only encode the
 * case of the first 15, so they are compared without it.
 */
static ngx_int_t
ngx_vantage_sfout_same_org(ngx_str_t *a, ngx_str_t *b)
{
    if (ngx_strncmp(a->data, b->data, 15) != 0) {
        return NGX_ERROR;
    }

    if (a->len == 18 && b->len == 18
        && ngx_strncasecmp(a->data + 15, b->data + 15, 3) != 0)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_vantage_sfout_alnum(ngx_str_t *s, size_t max)
{
    size_t  i;

    if (s->len == 0 || s->len > max) {
        return NGX_ERROR;
    }

    for (i = 0; i < s->len; i++) {
        if (!isalnum(s->data[i])) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_vantage_sfout_is(xmlNodePtr node, const char *ns, const char *name)
{
    return node != NULL
           && node->type == XML_ELEMENT_NODE
           && node->ns != NULL && node->ns->href != NULL
           && xmlStrcmp(node->ns->href, (const xmlChar *) ns) == 0
           && xmlStrcmp(node->name, (const xmlChar *) name) == 0;
}


/* node, or the first element after it */
static xmlNodePtr
ngx_vantage_sfout_element(xmlNodePtr node)
{
    while (node != NULL && node->type != XML_ELEMENT_NODE) {
        node = node->next;
    }

    return node;
}


/* an element's text, trimmed, copied into the pool */
static ngx_int_t
ngx_vantage_sfout_text(ngx_pool_t *pool, xmlNodePtr node, ngx_str_t *s)
{
    u_char   *p, *last;
    xmlChar  *text;

    text = xmlNodeGetContent(node);

    p = text ? (u_char *) text : (u_char *) "";
    last = p + ngx_strlen(p);

    while (p < last && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
    {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t'
                        || last[-1] == '\r' || last[-1] == '\n'))
    {
        last--;
    }

    s->len = last - p;
    s->data = ngx_pnalloc(pool, s->len + 1);

    if (s->data != NULL) {
        *ngx_cpymem(s->data, p, s->len) = '\0';
    }

    xmlFree(text);

    return s->data ? NGX_OK : NGX_ERROR;
}


/* SAX's internalSubset: called at <!DOCTYPE, before anything in it */
static void
ngx_vantage_sfout_doctype(void *data, const xmlChar *name,
    const xmlChar *external_id, const xmlChar *system_id)
{
    xmlParserCtxtPtr  pctx = data;

    *(ngx_uint_t *) pctx->_private = 1;
    xmlStopParser(pctx);
}


/* libxml2 would print to stderr, which is nginx's error log */
static void
ngx_vantage_sfout_xml_error(void *data, xmlErrorPtr error)
{
}

