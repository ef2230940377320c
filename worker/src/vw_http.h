/* vw_http.h -- outbound HTTP requests on the worker's event loop */

#ifndef VW_HTTP_H
#define VW_HTTP_H


#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "vw_core.h"


#define VW_HTTP_BODY_KEEP  2048   /* the response bytes kept, no more */


typedef struct vw_http_s      vw_http_t;
typedef struct vw_http_req_s  vw_http_req_t;

/* called once per started request, unless it was cancelled first */
typedef void (*vw_http_done_pt)(vw_http_req_t *req);

/*
 * Each header line of the final response (not of a 1xx), name and value
 * trimmed, not NUL-terminated.  A status line first resets what an
 * earlier response said: on_header sees name NULL then.
 */
typedef void (*vw_http_header_pt)(vw_http_req_t *req, const char *name,
    size_t nlen, const char *value, size_t vlen);

/*
 * Streaming: on_body takes the response body as it comes (instead of
 * resp and big) and returns VW_OK, or VW_ERROR to end the transfer
 * (failed, with on_body's error text in req->error if it set one).
 * on_upload fills buf with up to size bytes of the request body and
 * returns how many, 0 at the end, or (size_t) -1 to abort; the body is
 * sent chunked, or with upload_len as its Content-Length when known.
 */
typedef int (*vw_http_body_pt)(vw_http_req_t *req, const unsigned char *p,
    size_t n);
typedef size_t (*vw_http_upload_pt)(vw_http_req_t *req, unsigned char *buf,
    size_t size);


struct vw_http_req_s {
    /* set by the caller, which keeps them alive until the handler runs */
    const char                 *method;
    const char                 *url;
    struct curl_slist          *headers;
    const unsigned char        *body;
    size_t                      body_len;
    uint64_t                    timeout_ms;
    vw_http_done_pt             handler;
    void                       *data;
    const char                 *ca_file;      /* NULL: the system's CAs */
    const char                 *proxy;        /* NULL: curl's environment;
                                                 "": none; else its URL */
    uint64_t                    connect_timeout_ms;  /* 0: curl's 300 s */
    size_t                      body_max;     /* 0: keep VW_HTTP_BODY_KEEP
                                                 bytes in resp; else the
                                                 whole body in big, and a
                                                 longer one fails */
    unsigned                    https_only:1;
    vw_http_header_pt           on_header;    /* NULL: none */
    vw_http_body_pt             on_body;      /* NULL: resp or big */
    vw_http_upload_pt           on_upload;    /* NULL: body, body_len */
    long long                   upload_len;   /* with on_upload; -1:
                                                 unknown (chunked) */

    /* the result, set before the handler runs */
    long                        status;       /* 0: no response */
    unsigned                    timed_out:1;
    unsigned                    connected:1;  /* a connection was made */
    unsigned                    failed:1;     /* no response: see error */
    char                        error[VW_ERRSTR_LEN];
    unsigned char               resp[VW_HTTP_BODY_KEEP];
    size_t                      resp_len;
    long long                   retry_after;  /* seconds, -1: none */
    long long                   max_age;      /* Cache-Control max-age,
                                                 0 for no-cache or no-store,
                                                 -1: none */
    uint64_t                    ms;           /* how long it took */
    unsigned char              *big;          /* with body_max: malloc()ed,
                                                 NUL-terminated, the
                                                 caller's to free(); may be
                                                 NULL when empty */
    size_t                      big_len;
    unsigned                    too_large:1;  /* more than body_max */

    /* private */
    CURL                       *easy;
    vw_http_t                  *http;
    uint64_t                    start;
    char                        errbuf[CURL_ERROR_SIZE];
};


/* Returns a client on base, or NULL (logged). curl_global_init() first. */
vw_http_t *vw_http_create(struct event_base *base);

/* Cancels what is running (no handler is called) and frees the client. */
void vw_http_free(vw_http_t *http);

/*
 * Starts req; its handler is called later from the loop, never from
 * within this call.  Returns VW_OK, or VW_ERROR (req->error says why)
 * when the request cannot even start; the handler is then not called.
 */
int vw_http_request(vw_http_t *http, vw_http_req_t *req);

/* Stops a started request whose handler has not run; it never will. */
void vw_http_cancel(vw_http_req_t *req);

/* the monotonic clock in ms, for durations */
uint64_t vw_http_monotonic_ms(void);


#endif /* VW_HTTP_H */
