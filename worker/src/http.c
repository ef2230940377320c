/* http.c -- libcurl's multi interface driven by the worker's libevent loop */

/*
 * As curl's multi-event.c example: curl tells which sockets it wants
 * watched (CURLMOPT_SOCKETFUNCTION) and when it next wants a timeout
 * (CURLMOPT_TIMERFUNCTION); each becomes a libevent event, whose callback
 * calls curl_multi_socket_action() and then drains curl_multi_info_read()
 * for the transfers that finished.  Nothing here blocks, and the TLS
 * checks are curl's defaults: peer and host verified.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/event.h>

#include "vc_backoff.h"
#include "vw_http.h"


/* idle connections kept open for the next deliveries, all targets */
#define VW_HTTP_MAX_IDLE_CONNS  1024


struct vw_http_s {
    struct event_base          *base;
    CURLM                      *multi;
    struct event               *timer;
};


static int vw_http_socket(CURL *easy, curl_socket_t s, int what, void *userp,
    void *socketp);
static void vw_http_event(evutil_socket_t fd, short kind, void *arg);
static int vw_http_timer(CURLM *multi, long timeout_ms, void *userp);
static void vw_http_timeout(evutil_socket_t fd, short kind, void *arg);
static void vw_http_check(vw_http_t *http);
static size_t vw_http_write(char *ptr, size_t size, size_t nmemb,
    void *userdata);
static size_t vw_http_header(char *ptr, size_t size, size_t nmemb,
    void *userdata);
static size_t vw_http_read(char *buf, size_t size, size_t nitems,
    void *userdata);
static size_t vw_http_write_big(vw_http_req_t *req, const char *ptr,
    size_t n);
static long long vw_http_max_age(const char *p, size_t n);
static void vw_http_header_split(vw_http_req_t *req, const char *p,
    size_t n);


uint64_t
vw_http_monotonic_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


vw_http_t *
vw_http_create(struct event_base *base)
{
    vw_http_t  *http;

    http = calloc(1, sizeof(vw_http_t));
    if (http == NULL) {
        return NULL;
    }

    http->base = base;
    http->multi = curl_multi_init();
    http->timer = evtimer_new(base, vw_http_timeout, http);

    if (http->multi == NULL || http->timer == NULL) {
        vw_log("error", "cannot start the HTTP client", NULL);
        vw_http_free(http);
        return NULL;
    }

    curl_multi_setopt(http->multi, CURLMOPT_SOCKETFUNCTION, vw_http_socket);
    curl_multi_setopt(http->multi, CURLMOPT_SOCKETDATA, http);
    curl_multi_setopt(http->multi, CURLMOPT_TIMERFUNCTION, vw_http_timer);
    curl_multi_setopt(http->multi, CURLMOPT_TIMERDATA, http);

    /*
     * By default curl keeps at most four idle connections per transfer
     * running when a connection comes back, so the connections a burst
     * opened are closed as it ends and opened again by the next one (one
     * connect and close for about one job in seven at 3,000 jobs/s).
     * Idle connections still close after curl's 118 s maximum age.
     */
    curl_multi_setopt(http->multi, CURLMOPT_MAXCONNECTS,
                      (long) VW_HTTP_MAX_IDLE_CONNS);

    return http;
}


void
vw_http_free(vw_http_t *http)
{
    if (http == NULL) {
        return;
    }

    /* the owners of running requests cancel them before this */
    if (http->multi != NULL) {
        curl_multi_cleanup(http->multi);
    }

    if (http->timer != NULL) {
        event_free(http->timer);
    }

    free(http);
}


int
vw_http_request(vw_http_t *http, vw_http_req_t *req)
{
    CURL  *easy;

    req->status = 0;
    req->timed_out = 0;
    req->failed = 0;
    req->error[0] = '\0';
    req->errbuf[0] = '\0';
    req->resp_len = 0;
    req->retry_after = -1;
    req->max_age = -1;
    req->big = NULL;
    req->big_len = 0;
    req->too_large = 0;
    req->ms = 0;
    req->http = http;

    easy = curl_easy_init();
    if (easy == NULL) {
        snprintf(req->error, sizeof(req->error), "curl_easy_init() failed");
        return VW_ERROR;
    }

    curl_easy_setopt(easy, CURLOPT_URL, req->url);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR,
                     req->https_only ? "https" : "http,https");

    /* curl's defaults, said again: no option of this file turns them off */
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);

    if (req->ca_file != NULL) {
        curl_easy_setopt(easy, CURLOPT_CAINFO, req->ca_file);
    }

    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) req->timeout_ms);

    if (req->connect_timeout_ms) {
        curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                         (long) req->connect_timeout_ms);
    }

    if (req->proxy != NULL) {
        curl_easy_setopt(easy, CURLOPT_PROXY, req->proxy);
    }

    /* HTTP/2 where the server offers it over TLS (multiplexed by multi) */
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->headers);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->errbuf);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, vw_http_write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, vw_http_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);

    /* a redirect is the vendor's answer, not a place to send the job */
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);

    if (req->on_upload != NULL) {
        curl_easy_setopt(easy, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(easy, CURLOPT_READFUNCTION, vw_http_read);
        curl_easy_setopt(easy, CURLOPT_READDATA, req);

        if (req->upload_len >= 0) {
            curl_easy_setopt(easy, CURLOPT_INFILESIZE_LARGE,
                             (curl_off_t) req->upload_len);
        }

    } else if (req->body_len || strcasecmp(req->method, "GET") != 0) {
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t) req->body_len);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS,
                         req->body_len ? (const char *) req->body : "");
    }

    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);

    if (strcasecmp(req->method, "HEAD") == 0) {
        curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    }

    req->easy = easy;
    req->start = vw_http_monotonic_ms();

    if (curl_multi_add_handle(http->multi, easy) != CURLM_OK) {
        snprintf(req->error, sizeof(req->error),
                 "curl_multi_add_handle() failed");
        curl_easy_cleanup(easy);
        req->easy = NULL;
        return VW_ERROR;
    }

    return VW_OK;
}


void
vw_http_cancel(vw_http_req_t *req)
{
    if (req->easy == NULL) {
        return;
    }

    curl_multi_remove_handle(req->http->multi, req->easy);
    curl_easy_cleanup(req->easy);
    req->easy = NULL;

    free(req->big);
    req->big = NULL;
    req->big_len = 0;
}


static int
vw_http_socket(CURL *easy, curl_socket_t s, int what, void *userp,
    void *socketp)
{
    short          kind;
    vw_http_t     *http = userp;
    struct event  *ev = socketp;

    if (what == CURL_POLL_REMOVE) {
        if (ev != NULL) {
            event_free(ev);
            curl_multi_assign(http->multi, s, NULL);
        }

        return 0;
    }

    kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0)
           | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);

    if (ev == NULL) {
        ev = event_new(http->base, s, kind, vw_http_event, http);
        if (ev == NULL) {
            return -1;
        }

        curl_multi_assign(http->multi, s, ev);

    } else {
        event_del(ev);
        event_assign(ev, http->base, s, kind, vw_http_event, http);
    }

    event_add(ev, NULL);

    return 0;
}


static void
vw_http_event(evutil_socket_t fd, short kind, void *arg)
{
    int         running, action;
    vw_http_t  *http = arg;

    action = ((kind & EV_READ) ? CURL_CSELECT_IN : 0)
             | ((kind & EV_WRITE) ? CURL_CSELECT_OUT : 0);

    curl_multi_socket_action(http->multi, fd, action, &running);
    vw_http_check(http);
}


/* curl may not be called back from here: a 0 ms timer runs it instead */

static int
vw_http_timer(CURLM *multi, long timeout_ms, void *userp)
{
    vw_http_t       *http = userp;
    struct timeval   tv;

    if (timeout_ms < 0) {
        evtimer_del(http->timer);
        return 0;
    }

    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    evtimer_add(http->timer, &tv);

    return 0;
}


static void
vw_http_timeout(evutil_socket_t fd, short kind, void *arg)
{
    int         running;
    vw_http_t  *http = arg;

    curl_multi_socket_action(http->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    vw_http_check(http);
}


static void
vw_http_check(vw_http_t *http)
{
    int             left;
    long            status;
    curl_off_t      connect;
    CURL           *easy;
    CURLcode        res;
    CURLMsg        *msg;
    vw_http_req_t  *req;

    while ((msg = curl_multi_info_read(http->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        easy = msg->easy_handle;
        res = msg->data.result;
        req = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &req);

        status = 0;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);

        /* a connect time of 0 is a connection never made */
        connect = 0;
        curl_easy_getinfo(easy, CURLINFO_CONNECT_TIME_T, &connect);
        req->connected = (connect > 0);

        req->ms = vw_http_monotonic_ms() - req->start;

        if (res == CURLE_OK) {
            req->status = status;

        } else {
            req->status = 0;
            req->failed = 1;
            req->timed_out = (res == CURLE_OPERATION_TIMEDOUT);
            /* on_body's reason, else curl's detail when it has one */
            if (req->error[0] == '\0') {
                snprintf(req->error, sizeof(req->error), "%.120s",
                         req->too_large ? "the response is too large"
                         : req->errbuf[0] ? req->errbuf
                         : curl_easy_strerror(res));
            }
        }

        curl_multi_remove_handle(http->multi, easy);
        curl_easy_cleanup(easy);
        req->easy = NULL;

        /* the handler may start or cancel other requests */
        req->handler(req);
    }
}


/* the whole body, up to body_max; more ends the transfer (CURLE_WRITE_ERROR) */
static size_t
vw_http_write_big(vw_http_req_t *req, const char *ptr, size_t n)
{
    size_t          size;
    unsigned char  *p;

    if (n > req->body_max - req->big_len) {
        req->too_large = 1;
        return 0;
    }

    size = req->big_len + n + 1;
    p = realloc(req->big, size);
    if (p == NULL) {
        return 0;
    }

    memcpy(p + req->big_len, ptr, n);
    req->big = p;
    req->big_len += n;
    req->big[req->big_len] = '\0';

    return n;
}


static size_t
vw_http_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    size_t          n, room;
    vw_http_req_t  *req = userdata;

    n = size * nmemb;

    if (req->on_body != NULL) {
        return req->on_body(req, (const unsigned char *) ptr, n) == VW_OK
               ? n : 0;
    }

    if (req->body_max) {
        return vw_http_write_big(req, ptr, n);
    }

    room = VW_HTTP_BODY_KEEP - req->resp_len;

    /* the rest is read and dropped: only the start is kept for the DLQ */
    memcpy(req->resp + req->resp_len, ptr, n < room ? n : room);
    req->resp_len += n < room ? n : room;

    return n;
}


/*
 * A Cache-Control value's freshness in seconds (RFC 9111 section 5.2.2):
 * max-age=N, 0 for no-cache or no-store (they win over max-age), -1 when
 * it says neither.  s-maxage is for shared caches, which the worker is
 * not.
 */
static long long
vw_http_max_age(const char *p, size_t n)
{
    long long    age, d;
    const char  *end, *tok;
    size_t       len;

    age = -1;
    end = p + n;

    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        tok = p;

        while (p < end && *p != ',' && *p != '\r' && *p != '\n') {
            p++;
        }

        len = (size_t) (p - tok);

        if ((len == 8 && strncasecmp(tok, "no-store", 8) == 0)
            || (len == 8 && strncasecmp(tok, "no-cache", 8) == 0))
        {
            return 0;
        }

        if (len > 8 && strncasecmp(tok, "max-age=", 8) == 0) {
            tok += 8;
            if (tok < p && *tok == '"') {
                tok++;
            }

            d = 0;

            while (tok < p && *tok >= '0' && *tok <= '9') {
                /* RFC 9111 section 1.2.2: a too large number is 2^31 */
                if (d < 2147483648LL) {
                    d = d * 10 + (*tok - '0');
                }

                tok++;
            }

            age = d > 2147483648LL ? 2147483648LL : d;
        }

        if (p < end && (*p == '\r' || *p == '\n')) {
            break;
        }
    }

    return age;
}


static size_t
vw_http_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    size_t          n;
    vw_http_req_t  *req = userdata;

    n = size * nmemb;

    if (n > 12 && strncasecmp(ptr, "Retry-After:", 12) == 0) {
        req->retry_after = vc_backoff_parse_retry_after(ptr + 12, n - 12,
                                                        (long long)
                                                        time(NULL));
    }

    if (n > 14 && strncasecmp(ptr, "Cache-Control:", 14) == 0) {
        req->max_age = vw_http_max_age(ptr + 14, n - 14);
    }

    /* a status line: headers of an earlier 1xx response do not count */
    if (n > 5 && strncmp(ptr, "HTTP/", 5) == 0) {
        req->retry_after = -1;
        req->max_age = -1;

        if (req->on_header != NULL) {
            req->on_header(req, NULL, 0, NULL, 0);
        }

        return n;
    }

    if (req->on_header != NULL) {
        vw_http_header_split(req, ptr, n);
    }

    return n;
}


/* "Name: value\r\n" to on_header, both trimmed */
static void
vw_http_header_split(vw_http_req_t *req, const char *p, size_t n)
{
    const char  *colon, *v, *end;

    end = p + n;

    while (end > p && (end[-1] == '\r' || end[-1] == '\n')) {
        end--;
    }

    colon = memchr(p, ':', end - p);
    if (colon == NULL || colon == p) {
        return;
    }

    v = colon + 1;

    while (v < end && (*v == ' ' || *v == '\t')) {
        v++;
    }

    while (end > v && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }

    req->on_header(req, p, colon - p, v, end - v);
}


static size_t
vw_http_read(char *buf, size_t size, size_t nitems, void *userdata)
{
    size_t          n;
    vw_http_req_t  *req = userdata;

    n = req->on_upload(req, (unsigned char *) buf, size * nitems);

    return n == (size_t) -1 ? CURL_READFUNC_ABORT : n;
}
