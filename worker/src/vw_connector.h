/* vw_connector.h -- the vendor connectors the engine runs jobs through */

#ifndef VW_CONNECTOR_H
#define VW_CONNECTOR_H

/*
 * A job whose type says `connector = salesforce` (or hubspot) is run by
 * that connector instead of the engine's one-request "http" connector.
 * The engine still owns the job: it takes it, asks the connector whether
 * it may run now (admit), marks the attempt started, starts it, and
 * settles the outcome the connector reports, as docs/WORKER.md says.  A
 * connector may make several HTTP requests in one attempt (a token, the
 * call, a replay after a 401, a page more) and use Redis through the
 * services; its attempt ends when it calls call->handler once.
 *
 * Lifetime: the engine keeps call and everything it points to alive
 * until the handler has run, or until cancel() has returned.  After
 * cancel() the connector must not touch call again: callbacks still out
 * (a Redis reply, a token) must find their way back through something
 * the connector owns and frees itself.
 */


#include <stddef.h>
#include <stdint.h>

#include "vw_conf.h"
#include "vw_core.h"
#include "vw_http.h"
#include "vw_services.h"

struct vc_map_s;


typedef enum {
    VW_CALL_SUCCESS = 0,
    VW_CALL_RETRY,           /* worth another attempt */
    VW_CALL_DEAD             /* permanent: dead-lettered */
} vw_call_outcome_e;


typedef struct vw_call_s  vw_call_t;

typedef void (*vw_call_done_pt)(vw_call_t *call);


struct vw_call_s {
    /* set by the engine before admit() and start() */
    const vw_services_t        *svc;
    const char                 *target;       /* the job's target's name,
                                                 for the quota metrics;
                                                 alive as long as the
                                                 engine */
    const char                 *job_id;       /* 32 hex digits */
    const char                 *type;
    const char                 *tenant;       /* "" when none */
    const char                 *correlation_id;   /* or NULL */
    unsigned                    attempt;      /* 1, 2, ... */
    const unsigned char        *body;         /* after the job's mapping */
    size_t                      body_len;
    const char                 *content_type; /* or NULL */
    const vw_conf_connection_t *conn;         /* a copy, with target NULL */
    const char                 *operation;
    const char                 *object;
    const char                 *id_field;     /* or NULL */
    const char *const          *read_fields;  /* a read with a "then":
                                                 the source paths of the
                                                 next job's mapping
                                                 ("properties.email"),
                                                 NULL-ended, or NULL */
    const char                 *source;       /* X-Vantage-Source,
                                                 "<system>:<id>", or NULL:
                                                 see "ID cross-reference" */
    const struct vc_map_s      *map;          /* the job's mapping, or
                                                 NULL: the Bulk API's
                                                 {"from": key} pages are
                                                 mapped by the connector,
                                                 record by record */
    uint64_t                    timeout_ms;   /* each HTTP request's */
    uint64_t                    connect_timeout_ms;
    const char                 *ca_file;      /* or NULL */
    const char                 *proxy;        /* or NULL */
    vw_call_done_pt             handler;
    void                       *data;

    /* the attempt's outcome, set before the handler runs */
    vw_call_outcome_e           outcome;
    unsigned                    target_failure:1;  /* counts against the
                                                      target's breaker */
    long                        status;       /* the deciding response's */
    char                        error[VW_ERRSTR_LEN];   /* "" on success;
                                                 no secret, no PII */
    unsigned char               resp[VW_HTTP_BODY_KEEP];  /* the deciding
                                                 response's start; the
                                                 engine masks PII in it */
    size_t                      resp_len;
    uint64_t                    retry_after_ms;   /* 0: the backoff */
    uint64_t                    ms;           /* the attempt's time */
    char                       *result;       /* malloc()ed JSON object
                                                 kept as the job's result
                                                 on success (the vendor's
                                                 ids), or NULL; the engine
                                                 frees it */
    unsigned char              *next_body;    /* malloc()ed: the body the
                                                 next attempt, or a DLQ
                                                 replay, sends instead
                                                 (the records still to
                                                 write); the engine frees
                                                 it */
    size_t                      next_body_len;
    char                       *output;       /* malloc()ed JSON: a read's
                                                 record, the body of the
                                                 job type's "then" job;
                                                 the engine frees it */

    /* the connector's own */
    void                       *ctx;
};


typedef struct {
    const char                 *name;

    /*
     * Before an attempt, with the configuration in force: VW_OK to run
     * it now; VW_DECLINED to hold it back, not counted as an attempt,
     * until *retry_at (wall ms), with *why saying why for the log and
     * the job's history (a vendor's daily limit nearly spent, a rate
     * limit's window).  May be NULL: always VW_OK.
     */
    int                       (*admit)(vw_call_t *call, uint64_t now,
                                       uint64_t *retry_at,
                                       const char **why);

    /*
     * Starts the attempt.  VW_OK: call->handler runs later from the
     * loop, never from within start(); VW_ERROR: the outcome fields are
     * set and the handler does not run (a job the connector cannot
     * build: VW_CALL_DEAD).
     */
    int                       (*start)(vw_call_t *call);

    /* stops an attempt whose handler has not run; it never will */
    void                      (*cancel)(vw_call_t *call);

    /* the operations a job of this connector may name; NULL-ended */
    const char *const          *operations;
} vw_connector_t;


extern const vw_connector_t  vw_connector_salesforce;
extern const vw_connector_t  vw_connector_salesforce_bulk;  /* bulk_* */
extern const vw_connector_t  vw_connector_hubspot;

/* the connector that runs a job of that connector and operation, or NULL
   ("http" has none: the engine's) */
const vw_connector_t *vw_connector_find(const char *name,
    const char *operation);

/* what the connectors share: svc->oauth, the token manager; VW_ERROR when
   it cannot start (logged) */
int vw_connectors_init(vw_services_t *svc);
void vw_connectors_free(vw_services_t *svc);


#endif /* VW_CONNECTOR_H */
