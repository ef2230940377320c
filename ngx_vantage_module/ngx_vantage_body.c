/* ngx_vantage_body.c -- the request body, read whole into memory */

/*
 * What vantage_json_transform request, vantage_dispatch and the fan-out
 * locations share: unbuffered reading, so that the body never goes to a
 * temporary file that would have to be read back with a blocking read.
 * nginx reads on into its own buffers once they are consumed, so what it
 * has read is copied out at once, and a limit of the caller's is checked
 * as the body grows (a chunked body announces no length).
 */

#include "ngx_vantage_module.h"


static void ngx_vantage_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_vantage_body_take(ngx_http_request_t *r,
    ngx_vantage_body_t *body);


ngx_int_t
ngx_vantage_body_read(ngx_http_request_t *r, size_t max,
    ngx_vantage_body_done_pt done, ngx_vantage_body_refuse_pt refuse)
{
    ngx_int_t            rc;
    ngx_vantage_body_t  *body;

    body = &ngx_vantage_get_ctx(r)->body;

    body->bufs = NULL;
    body->last = &body->bufs;
    body->size = 0;
    body->max = max;
    body->done = done;
    body->refuse = refuse;

    r->request_body_no_buffering = 1;

    rc = ngx_http_read_client_request_body(r, ngx_vantage_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/*
 * The body's post handler, then its read handler: called as soon as some
 * of the body is in, it takes what has been read and reads on, until the
 * body is whole or the socket has nothing more for now.  nginx reads no
 * further into a buffer of its own that is still full, so the buffers are
 * emptied and reading tried again at once: with edge-triggered events,
 * data already in the socket would otherwise never be announced again.
 */
static void
ngx_vantage_body_handler(ngx_http_request_t *r)
{
    ngx_int_t            rc;
    ngx_vantage_body_t  *body;

    body = &ngx_vantage_get_ctx(r)->body;

    for ( ;; ) {
        rc = ngx_vantage_body_take(r, body);

        if (rc == NGX_DONE) {
            /* answered 413: the request may be gone already */
            return;
        }

        if (rc != NGX_AGAIN) {
            break;
        }

        rc = ngx_http_read_unbuffered_request_body(r);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            break;
        }

        if (rc == NGX_AGAIN
            && (r->request_body == NULL || r->request_body->bufs == NULL))
        {
            r->read_event_handler = ngx_vantage_body_handler;
            return;
        }
    }

    r->read_event_handler = ngx_http_block_reading;

    if (rc == NGX_OK) {
        rc = body->done(r, body);
    }

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/*
 * Copies what nginx has read of the body into buffers of the request's and
 * marks nginx's buffers consumed, so that reading can go on into them.
 * Returns NGX_OK when the whole body is in, NGX_AGAIN while more is to
 * come, NGX_DONE when body->refuse has answered, or an error status.
 */
static ngx_int_t
ngx_vantage_body_take(ngx_http_request_t *r, ngx_vantage_body_t *body)
{
    size_t        size;
    ngx_buf_t    *b;
    ngx_chain_t  *cl, *in;

    if (r->request_body == NULL) {
        return r->reading_body ? NGX_AGAIN : NGX_OK;
    }

    for (in = r->request_body->bufs; in; in = in->next) {

        size = ngx_buf_size(in->buf);

        if (size == 0 || in->buf->in_file) {
            in->buf->pos = in->buf->last;
            continue;
        }

        body->size += size;

        if (body->max && body->size > body->max) {
            /* a chunked body that has grown too large: nginx closes it */
            r->request_body->bufs = NULL;
            r->read_event_handler = ngx_http_block_reading;

            body->refuse(r, body);
            return NGX_DONE;
        }

        b = ngx_create_temp_buf(r->pool, size);
        cl = ngx_alloc_chain_link(r->pool);
        if (b == NULL || cl == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        b->last = ngx_cpymem(b->pos, in->buf->pos, size);
        in->buf->pos = in->buf->last;

        cl->buf = b;
        cl->next = NULL;
        *body->last = cl;
        body->last = &cl->next;
    }

    r->request_body->bufs = NULL;

    return r->reading_body ? NGX_AGAIN : NGX_OK;
}
