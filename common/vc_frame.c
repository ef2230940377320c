/* vc_frame.c -- the frames the module and the worker exchange on the socket */

#include <string.h>

#include "vc_frame.h"


static void
vc_frame_put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char) (v >> 24);
    p[1] = (unsigned char) (v >> 16);
    p[2] = (unsigned char) (v >> 8);
    p[3] = (unsigned char) v;
}


static uint32_t
vc_frame_get32(const unsigned char *p)
{
    return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16)
           | ((uint32_t) p[2] << 8) | p[3];
}


unsigned char *
vc_frame_header_put(unsigned char *buf, unsigned type, uint64_t id,
    uint32_t length)
{
    buf[0] = 'V';
    buf[1] = 'W';
    buf[2] = VC_FRAME_VERSION;
    buf[3] = (unsigned char) type;

    vc_frame_put32(buf + 4, (uint32_t) (id >> 32));
    vc_frame_put32(buf + 8, (uint32_t) id);
    vc_frame_put32(buf + 12, length);

    return buf + VC_FRAME_HEADER_LEN;
}


int
vc_frame_header_get(const unsigned char *buf, size_t len, size_t max_length,
    vc_frame_header_t *h, const char **err)
{
    unsigned  type;

    /* the magic is checked as soon as it is there: garbage fails fast */

    if ((len > 0 && buf[0] != 'V') || (len > 1 && buf[1] != 'W')) {
        *err = "not a Vantage frame";
        return VC_ERROR;
    }

    if (len > 2 && buf[2] != VC_FRAME_VERSION) {
        *err = "unsupported protocol version";
        return VC_ERROR;
    }

    if (len < VC_FRAME_HEADER_LEN) {
        return VC_AGAIN;
    }

    type = buf[3] & ~VC_FRAME_REPLY;

    if (type < VC_FRAME_PING || type > VC_FRAME_FETCH) {
        *err = "unknown frame type";
        return VC_ERROR;
    }

    h->type = buf[3];
    h->id = ((uint64_t) vc_frame_get32(buf + 4) << 32)
            | vc_frame_get32(buf + 8);
    h->length = vc_frame_get32(buf + 12);

    if (h->length > max_length) {
        *err = "frame too large";
        return VC_ERROR;
    }

    return VC_OK;
}


unsigned char *
vc_frame_field_header_put(unsigned char *p, unsigned tag, uint32_t len)
{
    p[0] = (unsigned char) (tag >> 8);
    p[1] = (unsigned char) tag;
    vc_frame_put32(p + 2, len);

    return p + VC_FRAME_FIELD_HEADER;
}


unsigned char *
vc_frame_field_put(unsigned char *p, unsigned tag, const void *value,
    uint32_t len)
{
    p = vc_frame_field_header_put(p, tag, len);

    if (len) {
        memcpy(p, value, len);
    }

    return p + len;
}


unsigned char *
vc_frame_field_put_uint32(unsigned char *p, unsigned tag, uint32_t value)
{
    p = vc_frame_field_header_put(p, tag, 4);
    vc_frame_put32(p, value);

    return p + 4;
}


int
vc_frame_field_next(const unsigned char **pos, const unsigned char *end,
    vc_frame_field_t *f, const char **err)
{
    size_t                left;
    const unsigned char  *p;

    p = *pos;

    if (p == end) {
        return VC_DONE;
    }

    left = (size_t) (end - p);

    if (left < VC_FRAME_FIELD_HEADER) {
        *err = "truncated field header";
        return VC_ERROR;
    }

    f->tag = ((unsigned) p[0] << 8) | p[1];
    f->len = vc_frame_get32(p + 2);

    if (f->len > left - VC_FRAME_FIELD_HEADER) {
        *err = "field longer than its frame";
        return VC_ERROR;
    }

    f->value = p + VC_FRAME_FIELD_HEADER;
    *pos = f->value + f->len;

    return VC_OK;
}


int
vc_frame_fields_check(const unsigned char *fields, size_t len,
    const unsigned char known[64], const char **err)
{
    int                   rc;
    unsigned              tag;
    vc_frame_field_t      f;
    const unsigned char  *pos, *end;

    if (len == 0) {
        /* fields may be NULL then, and NULL + 0 is undefined in C */
        return VC_OK;
    }

    pos = fields;
    end = fields + len;

    for ( ;; ) {
        rc = vc_frame_field_next(&pos, end, &f, err);

        if (rc == VC_DONE) {
            return VC_OK;
        }

        if (rc != VC_OK) {
            return rc;
        }

        tag = f.tag & ~VC_FRAME_TAG_OPTIONAL;

        if (f.tag & VC_FRAME_TAG_OPTIONAL) {
            continue;
        }

        if (tag >= 64 || !known[tag]) {
            *err = "unknown field that is not optional";
            return VC_ERROR;
        }
    }
}


int
vc_frame_field_uint32(const vc_frame_field_t *f, uint32_t *value)
{
    if (f->len != 4) {
        return VC_ERROR;
    }

    *value = vc_frame_get32(f->value);

    return VC_OK;
}
