/* fuzz_frame.c -- libFuzzer target: read any byte stream as hand-off frames */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vc_frame.h"


/*
 * The input is a stream as a receiver reads it from the socket: frames one
 * after another.  Each header is checked against a decoder written here
 * from the layout in vc_frame.h, each frame's fields are walked and written
 * again, and the copy must be the input's bytes exactly.
 */

#define FUZZ_MAX_LENGTH  4096


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
static void fuzz_header(const uint8_t *p, size_t len, int rc,
    const vc_frame_header_t *h, const char *err);
static void fuzz_fields(const uint8_t *data, size_t len);
static uint32_t fuzz_get32(const uint8_t *p);


/* the tags a receiver of version 1 knows */
static const unsigned char  fuzz_known[64] = {
    [VC_TAG_STATUS] = 1, [VC_TAG_ERROR] = 1, [VC_TAG_RETRY_AFTER] = 1,
    [VC_TAG_JOB_TYPE] = 1, [VC_TAG_TENANT] = 1, [VC_TAG_SUBJECT] = 1,
    [VC_TAG_IDEMPOTENCY_KEY] = 1, [VC_TAG_CORRELATION_ID] = 1,
    [VC_TAG_HEADER] = 1, [VC_TAG_BODY] = 1, [VC_TAG_JOB_ID] = 1,
    [VC_TAG_JOB_STATE] = 1, [VC_TAG_METHOD] = 1, [VC_TAG_URI] = 1
};


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                 rc;
    size_t              left, flen;
    const uint8_t      *p;
    const char         *err;
    vc_frame_header_t   h;

    p = data;
    left = size;

    while (left) {
        err = NULL;
        memset(&h, 0, sizeof(h));

        rc = vc_frame_header_get(p, left, FUZZ_MAX_LENGTH, &h, &err);

        fuzz_header(p, left, rc, &h, err);

        if (rc != VC_OK) {
            break;
        }

        /*
         * A frame cut short is walked as far as it goes: its fields may
         * end in the middle, which the walk must refuse without reading on.
         */

        flen = left - VC_FRAME_HEADER_LEN;

        if (flen > h.length) {
            flen = h.length;
        }

        fuzz_fields(p + VC_FRAME_HEADER_LEN, flen);

        if (flen < h.length) {
            break;
        }

        p += VC_FRAME_HEADER_LEN + flen;
        left -= VC_FRAME_HEADER_LEN + flen;
    }

    return 0;
}


/* the header's result against an independent reading of the same bytes */

static void
fuzz_header(const uint8_t *p, size_t len, int rc, const vc_frame_header_t *h,
    const char *err)
{
    int            want;
    unsigned       type;
    uint64_t       id;
    uint32_t       length;
    unsigned char  buf[VC_FRAME_HEADER_LEN];

    if ((len > 0 && p[0] != 0x56) || (len > 1 && p[1] != 0x57)
        || (len > 2 && p[2] != 1))
    {
        want = VC_ERROR;

    } else if (len < 16) {
        want = VC_AGAIN;

    } else {
        type = p[3] & 0x7f;
        length = fuzz_get32(p + 12);

        want = (type >= 1 && type <= 4 && length <= FUZZ_MAX_LENGTH)
               ? VC_OK : VC_ERROR;
    }

    if (rc != want) {
        abort();
    }

    if (rc == VC_ERROR) {
        if (err == NULL || err[0] == '\0') {
            abort();
        }

        return;
    }

    if (rc == VC_AGAIN) {
        return;
    }

    id = ((uint64_t) fuzz_get32(p + 4) << 32) | fuzz_get32(p + 8);

    if (h->type != p[3] || h->id != id || h->length != fuzz_get32(p + 12)) {
        abort();
    }

    if (vc_frame_header_put(buf, h->type, h->id, h->length)
        != buf + VC_FRAME_HEADER_LEN
        || memcmp(buf, p, VC_FRAME_HEADER_LEN) != 0)
    {
        abort();
    }
}


static void
fuzz_fields(const uint8_t *data, size_t len)
{
    int                   rc, want;
    size_t                consumed, nfields;
    uint32_t              v;
    unsigned char        *in, *out, *q;
    const unsigned char  *pos, *end, *prev;
    const char           *err;
    vc_frame_field_t      f;

    /* exact-size copies, so that ASan sees a read or write past the end */

    in = malloc(len ? len : 1);
    out = malloc(len ? len : 1);
    if (in == NULL || out == NULL) {
        abort();
    }

    if (len) {
        memcpy(in, data, len);
    }

    pos = in;
    end = in + len;
    q = out;
    consumed = 0;
    nfields = 0;
    want = VC_OK;

    for ( ;; ) {
        prev = pos;
        err = NULL;

        rc = vc_frame_field_next(&pos, end, &f, &err);

        if (pos < in || pos > end) {
            abort();
        }

        if (rc == VC_DONE) {
            if (prev != end || pos != end) {
                abort();
            }

            break;
        }

        if (rc == VC_ERROR) {
            /* refused only what does not fit, and stayed where it was */
            if (err == NULL || pos != prev
                || ((size_t) (end - prev) >= VC_FRAME_FIELD_HEADER
                    && fuzz_get32(prev + 2)
                       <= (size_t) (end - prev) - VC_FRAME_FIELD_HEADER))
            {
                abort();
            }

            want = VC_ERROR;
            break;
        }

        if (rc != VC_OK
            || (size_t) (end - prev) < VC_FRAME_FIELD_HEADER
            || f.tag != (((unsigned) prev[0] << 8) | prev[1])
            || f.len != fuzz_get32(prev + 2)
            || f.value != prev + VC_FRAME_FIELD_HEADER
            || pos != f.value + f.len)
        {
            abort();
        }

        consumed += VC_FRAME_FIELD_HEADER + (size_t) f.len;
        nfields++;

        if ((size_t) (pos - in) != consumed) {
            abort();
        }

        if (!(f.tag & VC_FRAME_TAG_OPTIONAL)
            && (f.tag >= 64 || !fuzz_known[f.tag]))
        {
            want = VC_ERROR;
        }

        /* written again, by each of the three writers */

        if (vc_frame_field_uint32(&f, &v) == VC_OK) {
            if (f.len != 4 || v != fuzz_get32(f.value)) {
                abort();
            }

            q = vc_frame_field_put_uint32(q, f.tag, v);

        } else if (f.len == 4) {
            abort();

        } else if (nfields & 1) {
            q = vc_frame_field_put(q, f.tag, f.value, f.len);

        } else {
            q = vc_frame_field_header_put(q, f.tag, f.len);
            if (f.len) {
                memcpy(q, f.value, f.len);
            }
            q += f.len;
        }

        if ((size_t) (q - out) != consumed) {
            abort();
        }
    }

    if (consumed > len
        || (rc == VC_DONE && consumed != len)
        || (consumed && memcmp(out, in, consumed) != 0))
    {
        abort();
    }

    err = NULL;
    rc = vc_frame_fields_check(in, len, fuzz_known, &err);

    if (rc != want || (rc == VC_ERROR && err == NULL)) {
        abort();
    }

    free(out);
    free(in);
}


static uint32_t
fuzz_get32(const uint8_t *p)
{
    return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16)
           | ((uint32_t) p[2] << 8) | (uint32_t) p[3];
}
