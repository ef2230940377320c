/* test_vc_frame.c -- hand-off frames: exact bytes, limits and field walks */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vc_frame.h"


/*
 * Expected bytes are written out by hand from the layout in vc_frame.h,
 * never produced by the code under test.  Every input is an exact-size
 * heap copy, so that ASan sees any read past its end.
 */

static unsigned char *
copy(const void *src, size_t len)
{
    unsigned char  *p;

    p = malloc(len ? len : 1);
    assert_non_null(p);

    if (len) {
        memcpy(p, src, len);
    }

    return p;
}


/* type 2, id 0x0102030405060708, length 0x11223344 */

static const unsigned char  hdr_bytes[VC_FRAME_HEADER_LEN] = {
    'V', 'W', 0x01, 0x02,
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
    0x11, 0x22, 0x33, 0x44
};


/* type 1, id 7, length 0: a complete, valid ping */

static const unsigned char  ping_bytes[VC_FRAME_HEADER_LEN] = {
    'V', 'W', 0x01, 0x01,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07,
    0x00, 0x00, 0x00, 0x00
};


static int
header_get(const unsigned char *bytes, size_t len, size_t max,
    vc_frame_header_t *h, const char **err)
{
    unsigned char  *buf;
    int             rc;

    buf = copy(bytes, len);
    rc = vc_frame_header_get(buf, len, max, h, err);
    free(buf);

    return rc;
}


static void
test_header_put_bytes(void **state)
{
    unsigned char  *buf, *last;

    buf = malloc(VC_FRAME_HEADER_LEN);
    assert_non_null(buf);
    memset(buf, 0xaa, VC_FRAME_HEADER_LEN);

    last = vc_frame_header_put(buf, VC_FRAME_DISPATCH, 0x0102030405060708ULL,
                               0x11223344);

    assert_ptr_equal(last, buf + VC_FRAME_HEADER_LEN);
    assert_memory_equal(buf, hdr_bytes, VC_FRAME_HEADER_LEN);

    /* high bits in both halves of the id and in the length */
    {
        static const unsigned char  exp[VC_FRAME_HEADER_LEN] = {
            'V', 'W', 0x01, 0x84,
            0xff, 0xee, 0xdd, 0xcc, 0x80, 0x00, 0x00, 0x01,
            0xff, 0xff, 0xff, 0xff
        };

        last = vc_frame_header_put(buf, VC_FRAME_FETCH | VC_FRAME_REPLY,
                                   0xffeeddcc80000001ULL, 0xffffffff);
        assert_ptr_equal(last, buf + VC_FRAME_HEADER_LEN);
        assert_memory_equal(buf, exp, VC_FRAME_HEADER_LEN);
    }

    free(buf);
}


static void
test_header_get_bytes(void **state)
{
    vc_frame_header_t   h;
    const char         *err;

    err = NULL;
    memset(&h, 0, sizeof(h));

    assert_int_equal(header_get(hdr_bytes, sizeof(hdr_bytes), 0x11223344,
                                &h, &err),
                     VC_OK);
    assert_int_equal(h.type, VC_FRAME_DISPATCH);
    assert_true(h.id == 0x0102030405060708ULL);
    assert_int_equal(h.length, 0x11223344);

    /* the low word's top bit must not sign-extend into the high word */
    {
        static const unsigned char  b[VC_FRAME_HEADER_LEN] = {
            'V', 'W', 0x01, 0x03,
            0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x10
        };

        assert_int_equal(header_get(b, sizeof(b), 16, &h, &err), VC_OK);
        assert_int_equal(h.type, VC_FRAME_JOB_STATUS);
        assert_true(h.id == 0x0000000080000000ULL);
        assert_int_equal(h.length, 16);
    }

    {
        static const unsigned char  b[VC_FRAME_HEADER_LEN] = {
            'V', 'W', 0x01, 0x01,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x00, 0x00, 0x00, 0x00
        };

        assert_int_equal(header_get(b, sizeof(b), 0, &h, &err), VC_OK);
        assert_int_equal(h.type, VC_FRAME_PING);
        assert_true(h.id == 0xffffffffffffffffULL);
        assert_int_equal(h.length, 0);
    }

    /* more bytes than the header: only the first 16 are read */
    {
        unsigned char  b[VC_FRAME_HEADER_LEN + 3];

        memcpy(b, ping_bytes, VC_FRAME_HEADER_LEN);
        memset(b + VC_FRAME_HEADER_LEN, 'x', 3);

        assert_int_equal(header_get(b, sizeof(b), 0, &h, &err), VC_OK);
        assert_true(h.id == 7);
    }
}


static void
test_header_reply_types(void **state)
{
    unsigned char       b[VC_FRAME_HEADER_LEN];
    unsigned            t;
    vc_frame_header_t   h;
    const char         *err;

    for (t = VC_FRAME_PING; t <= VC_FRAME_FETCH; t++) {

        /* request */
        memcpy(b, ping_bytes, sizeof(b));
        b[3] = (unsigned char) t;
        err = NULL;
        assert_int_equal(header_get(b, sizeof(b), 0, &h, &err), VC_OK);
        assert_int_equal(h.type, t);

        /* reply: the request's type with 0x80 set, kept in h.type */
        b[3] = (unsigned char) (0x80 | t);
        assert_int_equal(header_get(b, sizeof(b), 0, &h, &err), VC_OK);
        assert_int_equal(h.type, 0x80 | t);
        assert_true(h.type & VC_FRAME_REPLY);
        assert_int_equal(h.type & ~VC_FRAME_REPLY, t);

        /* and the writer puts exactly that byte */
        memset(b, 0, sizeof(b));
        vc_frame_header_put(b, t | VC_FRAME_REPLY, 7, 0);
        assert_int_equal(b[3], 0x80 | t);
        b[3] = 0x01;
        assert_memory_equal(b, ping_bytes, sizeof(b));
    }
}


static void
test_header_again(void **state)
{
    size_t              n;
    int                 rc;
    vc_frame_header_t   h;
    const char         *err;

    for (n = 0; n < VC_FRAME_HEADER_LEN; n++) {
        err = NULL;
        rc = header_get(hdr_bytes, n, 0xffffffff, &h, &err);
        assert_int_equal(rc, VC_AGAIN);
        assert_null(err);

        err = NULL;
        rc = header_get(ping_bytes, n, 0, &h, &err);
        assert_int_equal(rc, VC_AGAIN);
        assert_null(err);
    }

    err = NULL;
    assert_int_equal(header_get(hdr_bytes, VC_FRAME_HEADER_LEN, 0xffffffff,
                                &h, &err),
                     VC_OK);
}


static void
test_header_bad_magic_early(void **state)
{
    unsigned char       b[VC_FRAME_HEADER_LEN];
    size_t              n;
    vc_frame_header_t   h;
    const char         *err;
    static const unsigned char  bad0[] = { 'v', 'X', 0x00, 'W', 0x56 ^ 0x80 };
    static const unsigned char  bad1[] = { 'w', 'V', 0x00, 'X', 0x57 ^ 0x80 };
    static const unsigned char  badv[] = { 0x00, 0x02, 0x7f, 0x81, 0xff };
    size_t                      i;

    /* a wrong first byte is refused from the first byte on */
    for (i = 0; i < sizeof(bad0); i++) {
        for (n = 1; n <= VC_FRAME_HEADER_LEN; n++) {
            memcpy(b, ping_bytes, sizeof(b));
            b[0] = bad0[i];
            err = NULL;
            assert_int_equal(header_get(b, n, 0xffffffff, &h, &err),
                             VC_ERROR);
            assert_non_null(err);
        }
    }

    /* a wrong second byte from the second on; one byte is still "V" */
    for (i = 0; i < sizeof(bad1); i++) {
        memcpy(b, ping_bytes, sizeof(b));
        b[1] = bad1[i];
        err = NULL;
        assert_int_equal(header_get(b, 1, 0xffffffff, &h, &err), VC_AGAIN);
        assert_null(err);

        for (n = 2; n <= VC_FRAME_HEADER_LEN; n++) {
            err = NULL;
            assert_int_equal(header_get(b, n, 0xffffffff, &h, &err),
                             VC_ERROR);
            assert_non_null(err);
        }
    }

    /* a wrong version from the third byte on */
    for (i = 0; i < sizeof(badv); i++) {
        memcpy(b, ping_bytes, sizeof(b));
        b[2] = badv[i];

        for (n = 0; n < 3; n++) {
            err = NULL;
            assert_int_equal(header_get(b, n, 0xffffffff, &h, &err),
                             VC_AGAIN);
        }

        for (n = 3; n <= VC_FRAME_HEADER_LEN; n++) {
            err = NULL;
            assert_int_equal(header_get(b, n, 0xffffffff, &h, &err),
                             VC_ERROR);
            assert_non_null(err);
        }
    }
}


static void
test_header_unknown_types(void **state)
{
    unsigned char       b[VC_FRAME_HEADER_LEN];
    size_t              i;
    vc_frame_header_t   h;
    const char         *err;
    static const unsigned char  bad[] = {
        0x00, 0x05, 0x06, 0x7f, 0x80, 0x85, 0xfe, 0xff
    };

    for (i = 0; i < sizeof(bad); i++) {
        memcpy(b, ping_bytes, sizeof(b));
        b[3] = bad[i];
        err = NULL;
        assert_int_equal(header_get(b, sizeof(b), 0xffffffff, &h, &err),
                         VC_ERROR);
        assert_non_null(err);
    }
}


static void
test_header_length_limit(void **state)
{
    unsigned char       b[VC_FRAME_HEADER_LEN];
    vc_frame_header_t   h;
    const char         *err;

    /* length 0x11223344 */
    err = NULL;
    assert_int_equal(header_get(hdr_bytes, sizeof(hdr_bytes), 0x11223344,
                                &h, &err),
                     VC_OK);
    assert_null(err);

    err = NULL;
    assert_int_equal(header_get(hdr_bytes, sizeof(hdr_bytes), 0x11223343,
                                &h, &err),
                     VC_ERROR);
    assert_non_null(err);

    /* length 0 with a limit of 0; length 1 is then too much */
    err = NULL;
    assert_int_equal(header_get(ping_bytes, sizeof(ping_bytes), 0, &h, &err),
                     VC_OK);

    memcpy(b, ping_bytes, sizeof(b));
    b[15] = 0x01;
    err = NULL;
    assert_int_equal(header_get(b, sizeof(b), 0, &h, &err), VC_ERROR);
    assert_non_null(err);

    err = NULL;
    assert_int_equal(header_get(b, sizeof(b), 1, &h, &err), VC_OK);

    /* the largest length the format holds */
    memset(b + 12, 0xff, 4);
    err = NULL;
    assert_int_equal(header_get(b, sizeof(b), 0xffffffff, &h, &err), VC_OK);
    assert_int_equal(h.length, 0xffffffff);

    err = NULL;
    assert_int_equal(header_get(b, sizeof(b), 0xfffffffe, &h, &err),
                     VC_ERROR);
    assert_non_null(err);

    err = NULL;
    assert_int_equal(header_get(b, sizeof(b), SIZE_MAX, &h, &err), VC_OK);

    /* a length just above 1 MiB against a 1 MiB limit */
    b[12] = 0x00;
    b[13] = 0x10;
    b[14] = 0x00;
    b[15] = 0x01;
    err = NULL;
    assert_int_equal(header_get(b, sizeof(b), 0x100000, &h, &err), VC_ERROR);
    assert_non_null(err);

    b[15] = 0x00;
    err = NULL;
    assert_int_equal(header_get(b, sizeof(b), 0x100000, &h, &err), VC_OK);
    assert_int_equal(h.length, 0x100000);
}


/* the fields of test_field_round_trip, as the layout says they are encoded */

static const unsigned char  fields_bytes[] = {
    0x00, 0x10, 0x00, 0x00, 0x00, 0x03, 'j', 'o', 'b',
    0x00, 0x15, 0x00, 0x00, 0x00, 0x05, 'a', 0x00, 'b', 'c', 'd',
    0x00, 0x15, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x15, 0x00, 0x00, 0x00, 0x03, 'x', 0x00, 'y',
    0x00, 0x16, 0x00, 0x00, 0x00, 0x00,
    0x80, 0x30, 0x00, 0x00, 0x00, 0x02, 0xff, 0x00,
    0x00, 0x01, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0xc8,
    0xff, 0xff, 0x00, 0x00, 0x00, 0x00
};


static void
test_field_round_trip(void **state)
{
    unsigned char        *buf, *p, *in;
    const unsigned char  *pos, *end, *prev;
    vc_frame_field_t      f;
    const char           *err;
    uint32_t              v;
    size_t                i;
    static const struct {
        unsigned     tag;
        const char  *value;
        uint32_t     len;
    } want[] = {
        { VC_TAG_JOB_TYPE, "job", 3 },
        { VC_TAG_HEADER, "a\0bcd", 5 },
        { VC_TAG_HEADER, "", 0 },
        { VC_TAG_HEADER, "x\0y", 3 },
        { VC_TAG_BODY, "", 0 },
        { 0x8030, "\xff\0", 2 },
        { VC_TAG_STATUS, "\0\0\0\xc8", 4 },
        { 0xffff, "", 0 }
    };

    buf = malloc(sizeof(fields_bytes));
    assert_non_null(buf);
    memset(buf, 0xaa, sizeof(fields_bytes));

    p = buf;
    p = vc_frame_field_put(p, VC_TAG_JOB_TYPE, "job", 3);
    p = vc_frame_field_put(p, VC_TAG_HEADER, "a\0bcd", 5);
    p = vc_frame_field_put(p, VC_TAG_HEADER, NULL, 0);
    p = vc_frame_field_header_put(p, VC_TAG_HEADER, 3);
    memcpy(p, "x\0y", 3);
    p += 3;
    p = vc_frame_field_put(p, VC_TAG_BODY, "", 0);
    p = vc_frame_field_put(p, 0x8030, "\xff\0", 2);
    p = vc_frame_field_put_uint32(p, VC_TAG_STATUS, 200);
    p = vc_frame_field_header_put(p, 0xffff, 0);

    assert_ptr_equal(p, buf + sizeof(fields_bytes));
    assert_memory_equal(buf, fields_bytes, sizeof(fields_bytes));
    free(buf);

    /* and back, from the hand-written bytes */

    in = copy(fields_bytes, sizeof(fields_bytes));
    pos = in;
    end = in + sizeof(fields_bytes);

    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        prev = pos;
        err = NULL;
        assert_int_equal(vc_frame_field_next(&pos, end, &f, &err), VC_OK);
        assert_null(err);
        assert_int_equal(f.tag, want[i].tag);
        assert_int_equal(f.len, want[i].len);
        assert_ptr_equal(f.value, prev + VC_FRAME_FIELD_HEADER);
        assert_ptr_equal(pos, f.value + f.len);
        assert_true(pos <= end);

        if (f.len) {
            assert_memory_equal(f.value, want[i].value, f.len);
        }
    }

    assert_ptr_equal(pos, end);
    assert_int_equal(vc_frame_field_next(&pos, end, &f, &err), VC_DONE);
    assert_int_equal(vc_frame_field_next(&pos, end, &f, &err), VC_DONE);
    assert_ptr_equal(pos, end);

    /* the status field read as an integer */
    pos = in + 49;
    assert_int_equal(vc_frame_field_next(&pos, end, &f, &err), VC_OK);
    assert_int_equal(f.tag, VC_TAG_STATUS);
    assert_int_equal(vc_frame_field_uint32(&f, &v), VC_OK);
    assert_int_equal(v, 200);

    free(in);

    /* no fields at all */
    in = copy(NULL, 0);
    pos = in;
    assert_int_equal(vc_frame_field_next(&pos, in, &f, &err), VC_DONE);
    assert_ptr_equal(pos, in);
    free(in);
}


static void
test_field_header_put_bytes(void **state)
{
    unsigned char  *buf, *p;
    static const unsigned char  exp[VC_FRAME_FIELD_HEADER] = {
        0x80, 0x15, 0x01, 0x02, 0x03, 0x04
    };

    buf = malloc(VC_FRAME_FIELD_HEADER);
    assert_non_null(buf);

    p = vc_frame_field_header_put(buf, 0x8015, 0x01020304);
    assert_ptr_equal(p, buf + VC_FRAME_FIELD_HEADER);
    assert_memory_equal(buf, exp, sizeof(exp));

    free(buf);
}


static void
test_field_put_uint32_bytes(void **state)
{
    unsigned char  *buf, *p;
    static const unsigned char  exp[10] = {
        0x00, 0x03, 0x00, 0x00, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef
    };
    static const unsigned char  exp0[10] = {
        0x80, 0x01, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00
    };

    buf = malloc(10);
    assert_non_null(buf);

    p = vc_frame_field_put_uint32(buf, VC_TAG_RETRY_AFTER, 0xdeadbeef);
    assert_ptr_equal(p, buf + 10);
    assert_memory_equal(buf, exp, sizeof(exp));

    memset(buf, 0xaa, 10);
    p = vc_frame_field_put_uint32(buf, 0x8001, 0);
    assert_ptr_equal(p, buf + 10);
    assert_memory_equal(buf, exp0, sizeof(exp0));

    free(buf);
}


static void
test_field_truncated_header(void **state)
{
    unsigned char        *in;
    const unsigned char  *pos;
    vc_frame_field_t      f;
    const char           *err;
    size_t                n;
    static const unsigned char  b[VC_FRAME_FIELD_HEADER] = {
        0x00, 0x10, 0x00, 0x00, 0x00, 0x00
    };

    for (n = 1; n < VC_FRAME_FIELD_HEADER; n++) {
        in = copy(b, n);
        pos = in;
        err = NULL;
        assert_int_equal(vc_frame_field_next(&pos, in + n, &f, &err),
                         VC_ERROR);
        assert_non_null(err);
        assert_ptr_equal(pos, in);
        free(in);
    }

    /* the same six bytes whole: an empty field */
    in = copy(b, sizeof(b));
    pos = in;
    assert_int_equal(vc_frame_field_next(&pos, in + sizeof(b), &f, &err),
                     VC_OK);
    assert_int_equal(f.tag, VC_TAG_JOB_TYPE);
    assert_int_equal(f.len, 0);
    assert_ptr_equal(pos, in + sizeof(b));
    free(in);

    /* a whole field, then a truncated header */
    {
        static const unsigned char  two[] = {
            0x00, 0x11, 0x00, 0x00, 0x00, 0x01, 't',
            0x00, 0x12, 0x00
        };

        in = copy(two, sizeof(two));
        pos = in;
        assert_int_equal(vc_frame_field_next(&pos, in + sizeof(two), &f,
                                             &err),
                         VC_OK);
        assert_ptr_equal(pos, in + 7);
        err = NULL;
        assert_int_equal(vc_frame_field_next(&pos, in + sizeof(two), &f,
                                             &err),
                         VC_ERROR);
        assert_non_null(err);
        assert_ptr_equal(pos, in + 7);
        free(in);
    }
}


static void
test_field_past_end(void **state)
{
    unsigned char        *in;
    const unsigned char  *pos;
    vc_frame_field_t      f;
    const char           *err;
    static const unsigned char  b[] = {
        0x00, 0x16, 0x00, 0x00, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o'
    };

    /* length 5, four bytes there */
    in = copy(b, sizeof(b) - 1);
    pos = in;
    err = NULL;
    assert_int_equal(vc_frame_field_next(&pos, in + sizeof(b) - 1, &f, &err),
                     VC_ERROR);
    assert_non_null(err);
    assert_ptr_equal(pos, in);
    free(in);

    /* exactly five */
    in = copy(b, sizeof(b));
    pos = in;
    err = NULL;
    assert_int_equal(vc_frame_field_next(&pos, in + sizeof(b), &f, &err),
                     VC_OK);
    assert_int_equal(f.len, 5);
    assert_memory_equal(f.value, "hello", 5);
    assert_ptr_equal(pos, in + sizeof(b));
    free(in);
}


static void
test_field_huge_length(void **state)
{
    unsigned char        *in;
    const unsigned char  *pos;
    vc_frame_field_t      f;
    const char           *err;
    size_t                i;
    static const unsigned char  lens[][4] = {
        { 0xff, 0xff, 0xff, 0xff },
        { 0xff, 0xff, 0xff, 0xfa },
        { 0x80, 0x00, 0x00, 0x00 },
        { 0x7f, 0xff, 0xff, 0xff },
        { 0x00, 0x00, 0x00, 0x03 }
    };
    unsigned char  b[VC_FRAME_FIELD_HEADER + 2];
    unsigned char  known[64];

    memset(known, 0, sizeof(known));
    known[VC_TAG_BODY] = 1;

    /*
     * Two bytes of value: a length that a sum like "pos + 6 + len" would
     * wrap must still be refused.
     */

    for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        b[0] = 0x00;
        b[1] = 0x16;
        memcpy(b + 2, lens[i], 4);
        b[6] = 'o';
        b[7] = 'k';

        in = copy(b, sizeof(b));
        pos = in;
        err = NULL;
        assert_int_equal(vc_frame_field_next(&pos, in + sizeof(b), &f, &err),
                         VC_ERROR);
        assert_non_null(err);
        assert_ptr_equal(pos, in);

        err = NULL;
        assert_int_equal(vc_frame_fields_check(in, sizeof(b), known, &err),
                         VC_ERROR);
        assert_non_null(err);
        free(in);
    }
}


static void
test_fields_check(void **state)
{
    unsigned char   known[64], *in, b[64];
    const char     *err;
    size_t          i;
    static const unsigned char  ok[] = {
        0x00, 0x01, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0xc8,
        0x00, 0x15, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x15, 0x00, 0x00, 0x00, 0x01, 'h',
        0x00, 0x3f, 0x00, 0x00, 0x00, 0x00
    };
    static const struct {
        unsigned char  b[12];
        size_t         len;
        int            rc;
    } one[] = {
        /* unknown, not optional */
        { { 0x00, 0x05, 0, 0, 0, 0 }, 6, VC_ERROR },
        { { 0x00, 0x00, 0, 0, 0, 0 }, 6, VC_ERROR },
        /* the same tags, optional */
        { { 0x80, 0x05, 0, 0, 0, 1, 'z' }, 7, VC_OK },
        { { 0x80, 0x00, 0, 0, 0, 0 }, 6, VC_OK },
        /* known tags with the optional bit */
        { { 0x80, 0x01, 0, 0, 0, 0 }, 6, VC_OK },
        /* 64 and above: never in known[], refused unless optional */
        { { 0x00, 0x40, 0, 0, 0, 0 }, 6, VC_ERROR },
        { { 0x00, 0x41, 0, 0, 0, 0 }, 6, VC_ERROR },
        { { 0x01, 0x01, 0, 0, 0, 0 }, 6, VC_ERROR },
        { { 0x7f, 0xff, 0, 0, 0, 0 }, 6, VC_ERROR },
        { { 0x80, 0x40, 0, 0, 0, 0 }, 6, VC_OK },
        { { 0xff, 0xff, 0, 0, 0, 2, 'z', 'z' }, 8, VC_OK },
        /* malformed: truncated header, value past the end */
        { { 0x80, 0x05, 0, 0, 0 }, 5, VC_ERROR },
        { { 0x80, 0x05, 0, 0, 0, 2, 'z' }, 7, VC_ERROR },
        { { 0x00, 0x01, 0xff, 0xff, 0xff, 0xff, 0, 0 }, 8, VC_ERROR }
    };

    memset(known, 0, sizeof(known));
    known[VC_TAG_STATUS] = 1;
    known[VC_TAG_HEADER] = 1;
    known[63] = 1;

    in = copy(ok, sizeof(ok));
    err = NULL;
    assert_int_equal(vc_frame_fields_check(in, sizeof(ok), known, &err),
                     VC_OK);
    assert_null(err);
    free(in);

    /* no fields */
    in = copy(NULL, 0);
    assert_int_equal(vc_frame_fields_check(in, 0, known, &err), VC_OK);
    free(in);

    for (i = 0; i < sizeof(one) / sizeof(one[0]); i++) {

        /* alone, and after known fields */

        in = copy(one[i].b, one[i].len);
        err = NULL;
        assert_int_equal(vc_frame_fields_check(in, one[i].len, known, &err),
                         one[i].rc);
        if (one[i].rc == VC_ERROR) {
            assert_non_null(err);
        }
        free(in);

        memcpy(b, ok, sizeof(ok));
        memcpy(b + sizeof(ok), one[i].b, one[i].len);
        in = copy(b, sizeof(ok) + one[i].len);
        err = NULL;
        assert_int_equal(vc_frame_fields_check(in, sizeof(ok) + one[i].len,
                                               known, &err),
                         one[i].rc);
        if (one[i].rc == VC_ERROR) {
            assert_non_null(err);
        }
        free(in);
    }

    /* a tag that is known but whose entry is zero is not known */
    known[VC_TAG_HEADER] = 0;
    in = copy(ok, sizeof(ok));
    err = NULL;
    assert_int_equal(vc_frame_fields_check(in, sizeof(ok), known, &err),
                     VC_ERROR);
    assert_non_null(err);
    free(in);
}


static void
test_field_uint32(void **state)
{
    vc_frame_field_t   f;
    unsigned char     *v;
    uint32_t           n;
    size_t             len;

    v = copy("\x01\x02\x03\x04\x05", 5);

    f.tag = VC_TAG_STATUS;
    f.value = v;
    f.len = 4;
    n = 0;
    assert_int_equal(vc_frame_field_uint32(&f, &n), VC_OK);
    assert_int_equal(n, 0x01020304);
    free(v);

    /* exactly four bytes on the heap, top bit set */
    v = copy("\xff\x00\x00\x01", 4);
    f.value = v;
    assert_int_equal(vc_frame_field_uint32(&f, &n), VC_OK);
    assert_int_equal(n, 0xff000001);
    free(v);

    for (len = 0; len <= 8; len++) {
        if (len == 4) {
            continue;
        }

        v = copy("\x01\x02\x03\x04\x05\x06\x07\x08", len);
        f.value = v;
        f.len = (uint32_t) len;
        n = 0x5a5a5a5a;
        assert_int_equal(vc_frame_field_uint32(&f, &n), VC_ERROR);
        assert_int_equal(n, 0x5a5a5a5a);
        free(v);
    }
}


static void
test_whole_frame(void **state)
{
    unsigned char        *in;
    const unsigned char  *pos, *end;
    unsigned char         known[64];
    vc_frame_header_t     h;
    vc_frame_field_t      f;
    const char           *err;
    uint32_t              v;
    size_t                nfields;
    static const unsigned char  frame[] = {
        'V', 'W', 0x01, 0x82,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
        0x00, 0x00, 0x00, 0x1d,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0xca,
        0x00, 0x17, 0x00, 0x00, 0x00, 0x03, 'j', '-', '1',
        0x80, 0x63, 0x00, 0x00, 0x00, 0x04, 'n', 'e', 'w', '!',
        /* the next frame's first byte */
        'V'
    };

    memset(known, 0, sizeof(known));
    known[VC_TAG_STATUS] = 1;
    known[VC_TAG_JOB_ID] = 1;

    in = copy(frame, sizeof(frame));

    err = NULL;
    assert_int_equal(vc_frame_header_get(in, sizeof(frame), 1024, &h, &err),
                     VC_OK);
    assert_int_equal(h.type, VC_FRAME_DISPATCH | VC_FRAME_REPLY);
    assert_true(h.id == 256);
    assert_int_equal(h.length, sizeof(frame) - VC_FRAME_HEADER_LEN - 1);

    assert_int_equal(vc_frame_fields_check(in + VC_FRAME_HEADER_LEN,
                                           h.length, known, &err),
                     VC_OK);

    pos = in + VC_FRAME_HEADER_LEN;
    end = pos + h.length;
    nfields = 0;

    while (vc_frame_field_next(&pos, end, &f, &err) == VC_OK) {
        if (f.tag == VC_TAG_STATUS) {
            assert_int_equal(vc_frame_field_uint32(&f, &v), VC_OK);
            assert_int_equal(v, 202);
        }

        nfields++;
    }

    assert_int_equal(nfields, 3);
    assert_ptr_equal(pos, end);

    /* the trailing byte is a new frame's prefix */
    assert_int_equal(vc_frame_header_get(end, 1, 1024, &h, &err), VC_AGAIN);

    free(in);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_header_put_bytes),
        cmocka_unit_test(test_header_get_bytes),
        cmocka_unit_test(test_header_reply_types),
        cmocka_unit_test(test_header_again),
        cmocka_unit_test(test_header_bad_magic_early),
        cmocka_unit_test(test_header_unknown_types),
        cmocka_unit_test(test_header_length_limit),
        cmocka_unit_test(test_field_round_trip),
        cmocka_unit_test(test_field_header_put_bytes),
        cmocka_unit_test(test_field_put_uint32_bytes),
        cmocka_unit_test(test_field_truncated_header),
        cmocka_unit_test(test_field_past_end),
        cmocka_unit_test(test_field_huge_length),
        cmocka_unit_test(test_fields_check),
        cmocka_unit_test(test_field_uint32),
        cmocka_unit_test(test_whole_frame),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
