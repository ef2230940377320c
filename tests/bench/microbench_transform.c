/* microbench_transform.c -- ns per body through vc_map, as the module runs it */

/*
 * The floor of vantage_json_transform's cost: what jansson and vc_map
 * take for one body, with no nginx around them.  Each iteration does what
 * ngx_vantage_tf_apply() does to a response body: json_loadb() with
 * JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, vc_map_apply_doc(),
 * json_dump_callback() with JSON_COMPACT | JSON_ENCODE_ANY |
 * JSON_REAL_PRECISION(15) into a buffer
 * of the body's length + 256 that doubles when it is full, and the frees.
 * Beside it, "parse+dump" is the same without the map: what jansson alone
 * costs, which no change to vc_map can go below.
 *
 * The result is checked once, before timing, against the expected
 * document (json_equal(), so member order does not matter): a wrong
 * transform fails the benchmark with exit status 1.
 *
 * Each figure is the median of R batches of about 10 ms each, in thread
 * CPU time (CLOCK_THREAD_CPUTIME_ID), so that time the thread spends
 * preempted by a neighbour is not counted; the gateway's figure it is
 * compared with is CPU time too.  Pin it to the gateway's core:
 *
 *     make microbench-transform       (taskset -c $BENCH_CPU, 21 runs)
 *     build/bench/microbench_transform map.json body.json expected.json [runs]
 *
 * The last line is for scripts: "transform_ns <full> <parse+dump>".
 */

#define _GNU_SOURCE

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "vc_map.h"

#define BENCH_NAME   "microbench_transform"
#define BENCH_CLOCK  CLOCK_THREAD_CPUTIME_ID
#include "bench.h"


#define BENCH_BATCH_NS  10e6


typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
} bench_buf_t;


typedef enum {
    PHASE_FULL = 0,
    PHASE_JANSSON
} bench_phase_e;


static vc_map_t      *map;
static char          *body;
static size_t         body_len;
static volatile int   sink;


static char *
read_file(const char *path, size_t *len)
{
    long   n;
    char  *p;
    FILE  *f;

    f = fopen(path, "rb");
    if (f == NULL) {
        fail("open", path, strerror(errno));
    }

    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        fail("seek", path, strerror(errno));
    }

    p = malloc(n + 1);
    if (p == NULL) {
        fail("read", path, "out of memory");
    }

    if (fread(p, 1, n, f) != (size_t) n) {
        fail("read", path, "short read");
    }

    fclose(f);

    p[n] = '\0';
    *len = n;

    return p;
}


/* json_dump_callback's writer, as ngx_vantage_tf_dump(): doubles when full */

static int
dump_cb(const char *buffer, size_t size, void *data)
{
    bench_buf_t  *b = data;

    char    *p;
    size_t   cap;

    if (b->len + size > b->cap) {
        cap = b->cap * 2 > b->len + size ? b->cap * 2 : b->len + size;

        p = malloc(cap);
        if (p == NULL) {
            return -1;
        }

        memcpy(p, b->data, b->len);
        free(b->data);

        b->data = p;
        b->cap = cap;
    }

    memcpy(b->data + b->len, buffer, size);
    b->len += size;

    return 0;
}


/*
 * One body through the phase; returns the dumped length, or -1 with err
 * set.  With text, *text gets the dump (the caller frees it).
 */

static long
once(bench_phase_e phase, char **text, char *err, size_t errlen)
{
    long          n;
    json_t       *doc, *res;
    bench_buf_t   b;
    json_error_t  jerr;

    doc = json_loadb(body, body_len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
                     &jerr);
    if (doc == NULL) {
        snprintf(err, errlen, "not JSON: %s", jerr.text);
        return -1;
    }

    res = doc;

    if (phase == PHASE_FULL) {
        if (vc_map_apply_doc(map, doc, &res, err, errlen) != VC_OK) {
            json_decref(doc);
            return -1;
        }

        json_decref(doc);
    }

    b.cap = body_len + 256;
    b.len = 0;
    b.data = malloc(b.cap);
    if (b.data == NULL) {
        json_decref(res);
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    if (json_dump_callback(res, dump_cb, &b, JSON_COMPACT | JSON_ENCODE_ANY
                                             | JSON_REAL_PRECISION(15))
        != 0)
    {
        json_decref(res);
        free(b.data);
        snprintf(err, errlen, "json_dump_callback() failed");
        return -1;
    }

    json_decref(res);

    n = (long) b.len;

    if (text != NULL) {
        /* the first copy's room: the text is NUL-terminated for printing */
        *text = malloc(b.len + 1);
        if (*text == NULL) {
            free(b.data);
            snprintf(err, errlen, "out of memory");
            return -1;
        }

        memcpy(*text, b.data, b.len);
        (*text)[b.len] = '\0';

    }

    free(b.data);

    return n;
}


static int
cmp_double(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return (x > y) - (x < y);
}


/* median ns per body over runs batches of about 10 ms */

static double
run(bench_phase_e phase, int runs)
{
    int      r;
    long     i, n;
    char     err[512];
    double   t0, ns, *v, med;

    v = malloc(runs * sizeof(double));
    if (v == NULL) {
        fail("run", "batches", "out of memory");
    }

    n = 100;

    /* r == -1: a calibration batch, not counted */

    for (r = -1; r < runs; r++) {
        t0 = now_ns();

        for (i = 0; i < n; i++) {
            if (once(phase, NULL, err, sizeof(err)) < 0) {
                fail("run", phase == PHASE_FULL ? "full" : "parse+dump", err);
            }

            sink++;
        }

        ns = (now_ns() - t0) / n;

        if (r < 0) {
            n = (long) (BENCH_BATCH_NS / ns) + 1;
            continue;
        }

        v[r] = ns;
    }

    qsort(v, runs, sizeof(double), cmp_double);
    med = runs % 2 ? v[runs / 2] : (v[runs / 2 - 1] + v[runs / 2]) / 2;

    free(v);

    return med;
}


int
main(int argc, char **argv)
{
    int           runs;
    long          n;
    char          err[512], *text;
    double        full, jansson;
    size_t        elen;
    json_t       *got, *want;
    json_error_t  jerr;
    char         *exp;

    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: microbench_transform map.json body.json "
                "expected.json [runs]\n");
        return 2;
    }

    runs = argc > 4 ? atoi(argv[4]) : 21;
    if (runs <= 0) {
        fprintf(stderr, "microbench_transform: runs must be positive\n");
        return 2;
    }

    map = vc_map_load_file(argv[1], err, sizeof(err));
    if (map == NULL) {
        fail("map", argv[1], err);
    }

    if (!vc_map_edits(map)) {
        fail("map", argv[1], "not an edit-mode mapping (\"mode\": \"edit\")");
    }

    body = read_file(argv[2], &body_len);
    exp = read_file(argv[3], &elen);

    /* the transform must be right before its time means anything */

    n = once(PHASE_FULL, &text, err, sizeof(err));
    if (n < 0) {
        fail("check", argv[2], err);
    }

    got = json_loadb(text, n, JSON_DECODE_ANY, &jerr);
    if (got == NULL) {
        fail("check", "output", jerr.text);
    }

    want = json_loadb(exp, elen, JSON_DECODE_ANY, &jerr);
    if (want == NULL) {
        fail("check", argv[3], jerr.text);
    }

    if (!json_equal(got, want)) {
        fprintf(stderr, "microbench_transform: got %s\n", text);
        fail("check", argv[3], "the transformed body differs from it");
    }

    json_decref(got);
    json_decref(want);

    printf("body %zu bytes in, %ld bytes out (checked against %s)\n",
           body_len, n, argv[3]);
    printf("ns per body, median of %d batches of 10 ms (thread CPU time)\n",
           runs);
    fflush(stdout);

    full = run(PHASE_FULL, runs);
    jansson = run(PHASE_JANSSON, runs);

    printf("%-12s %10.0f  json_loadb + vc_map_apply_doc + json_dump_callback"
           " + free\n", "full", full);
    printf("%-12s %10.0f  the same without the map (jansson alone)\n",
           "parse+dump", jansson);
    printf("transform_ns %.0f %.0f\n", full, jansson);

    free(text);
    free(exp);
    free(body);
    vc_map_free(map);

    return 0;
}
