/* fuzz_map.c -- libFuzzer target: load any mapping, apply it to any record */

/*
 * The input is a mapping file, a NUL byte, and a record: both are data an
 * operator or a vendor controls.  Without a NUL, the whole input is the
 * mapping, applied to a fixed record with a value of every kind.  Checks
 * the contracts of vc_map.h: a refusal always says why, in a terminated
 * message; a success gives an object and no message; a failed record
 * gives no object; the same record maps the same way twice; and a
 * message cut short by a small buffer is still terminated.  The record
 * is also given whole to vc_map_apply_doc(), which edits it in place in
 * edit mode: what it leaves must still be a tree (json_dumps() refuses a
 * value inside itself) of valid UTF-8.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vc_map.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const char  fuzz_map_record[] =
    "{\"a\": \"x\", \"b\": \" Jane  Q Doe \", \"c\": 42, \"d\": 2.5,"
    " \"e\": true, \"f\": null, \"g\": \"\", \"h\": {\"i\": \"1980-01-02\","
    " \"j\": [1, \"2\"]}, \"p\": \"(415) 555-0132\", \"t\": "
    "\"2020-05-01T12:00:00.000+0000\", \"m\": 315619200000,"
    " \"s\": \"123-45-6789\", \"u\": \"\\u00e9t\\u00e9\"}";


static void
fuzz_map_apply(vc_map_t *map, json_t *in)
{
    int      rc, rc2;
    char     err[512], small[7];
    char    *s1, *s2;
    json_t  *out, *out2;

    out = (json_t *) 1;
    memset(err, 'x', sizeof(err));

    rc = vc_map_apply(map, in, &out, err, sizeof(err));

    if (memchr(err, '\0', sizeof(err)) == NULL) {
        abort();
    }

    if (rc == VC_OK) {
        if (!json_is_object(out) || err[0] != '\0') {
            abort();
        }

        /* every string written is valid UTF-8, or this fails */
        s1 = json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY);
        if (s1 == NULL) {
            abort();
        }

    } else {
        if (rc != VC_ERROR || out != NULL || err[0] == '\0') {
            abort();
        }

        s1 = NULL;
    }

    /* the map is only read: the same record, the same outcome */
    memset(small, 'x', sizeof(small));
    rc2 = vc_map_apply(map, in, &out2, small, sizeof(small));

    if (rc2 != rc || memchr(small, '\0', sizeof(small)) == NULL) {
        abort();
    }

    if (rc2 == VC_OK) {
        s2 = json_dumps(out2, JSON_COMPACT | JSON_ENCODE_ANY);

        if (s2 == NULL || strcmp(s1, s2) != 0) {
            abort();
        }

        free(s2);
        json_decref(out2);
    }

    vc_map_apply(map, in, &out2, NULL, 0);
    json_decref(out2);

    free(s1);

    if (rc == VC_OK) {
        json_decref(out);
    }
}


static void
fuzz_map_apply_doc(vc_map_t *map, json_t *in)
{
    int      rc;
    char     err[512], *s;
    json_t  *doc, *out;

    doc = json_deep_copy(in);
    if (doc == NULL) {
        return;
    }

    out = (json_t *) 1;
    memset(err, 'x', sizeof(err));

    rc = vc_map_apply_doc(map, doc, &out, err, sizeof(err));

    if (memchr(err, '\0', sizeof(err)) == NULL) {
        abort();
    }

    if (rc == VC_OK) {
        if (err[0] != '\0' || (vc_map_edits(map) && out != doc)
            || (!json_is_object(out) && !json_is_array(out)))
        {
            abort();
        }

    } else if (rc != VC_ERROR || out != NULL || err[0] == '\0') {
        abort();
    }

    s = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s == NULL) {
        abort();
    }

    free(s);

    if (rc == VC_OK) {
        s = json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY);
        if (s == NULL) {
            abort();
        }

        free(s);
        json_decref(out);
    }

    json_decref(doc);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char           err[1024];
    size_t         mlen;
    json_t        *in;
    vc_map_t      *map;
    const char    *sep;
    json_error_t   jerr;

    sep = memchr(data, '\0', size);
    mlen = sep ? (size_t) (sep - (const char *) data) : size;

    memset(err, 'x', sizeof(err));
    map = vc_map_load("fuzz", (const char *) data, mlen, err, sizeof(err));

    if (memchr(err, '\0', sizeof(err)) == NULL) {
        abort();
    }

    if (map == NULL) {
        if (strncmp(err, "fuzz: ", 6) != 0 || err[6] == '\0') {
            abort();
        }

        return 0;
    }

    if (err[0] != '\0' || vc_map_nfields(map) == 0
        || vc_map_name(map)[0] == '\0')
    {
        abort();
    }

    if (sep) {
        /* a caller may let a record's strings hold NULs */
        in = json_loadb(sep + 1, size - mlen - 1,
                        JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    } else {
        in = json_loads(fuzz_map_record, 0, &jerr);
    }

    if (in != NULL) {
        fuzz_map_apply(map, in);
        fuzz_map_apply_doc(map, in);
        json_decref(in);
    }

    vc_map_free(map);

    return 0;
}
