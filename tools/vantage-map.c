/* vantage-map.c -- check mapping files, and apply one to records */

/*
 *   vantage-map check <file>...
 *   vantage-map apply [--pretty] <file> [<records> | -]
 *
 * check loads each mapping as the gateway will (common/vc_map.c) and says
 * what is wrong with it; apply maps a stream of JSON records (one object
 * after another, as many as the input holds: a file of one record, or one
 * per line) and writes one mapped record per line on stdout.  An edit-mode
 * mapping edits each JSON value read, an object or an array, as the
 * module edits a body (vc_map_apply_doc()).  A record that fails is
 * reported on stderr with its number and skipped, and the others are
 * still mapped.  Exit status: 0 done, 1 an invalid mapping or a failed
 * record, 2 a usage error.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vc_map.h"


#define VMAP_NAME        "vantage-map"
#define VMAP_EXIT_OK     0
#define VMAP_EXIT_FAIL   1
#define VMAP_EXIT_USAGE  2

#define VMAP_ERRLEN      4096


static int vmap_check(int argc, char **argv);
static int vmap_apply(int argc, char **argv);
static char *vmap_read(const char *path, size_t *len);
static void vmap_where(const char *buf, size_t pos, json_error_t *jerr);
static void vmap_usage(FILE *f);


int
main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0
                      || strcmp(argv[1], "--help") == 0))
    {
        vmap_usage(stdout);
        return VMAP_EXIT_OK;
    }

    if (argc >= 2 && strcmp(argv[1], "check") == 0) {
        return vmap_check(argc - 2, argv + 2);
    }

    if (argc >= 2 && strcmp(argv[1], "apply") == 0) {
        return vmap_apply(argc - 2, argv + 2);
    }

    vmap_usage(stderr);

    return VMAP_EXIT_USAGE;
}


static void
vmap_usage(FILE *f)
{
    fprintf(f,
"Usage: %s check <mapping.json>...\n"
"       %s apply [--pretty] <mapping.json> [<records.json> | -]\n"
"\n"
"Field mappings between vendor records (docs/MAPPING.md).\n"
"\n"
"  check   load each mapping and report its first problem, naming the\n"
"          file and the field entry\n"
"  apply   map each JSON object of the input (stdin by default; one or\n"
"          many, one after another) and write one mapped object per line;\n"
"          a record that fails is reported on stderr and skipped; an\n"
"          edit-mode mapping (\"mode\": \"edit\") edits each value, an\n"
"          object or an array, as the gateway edits a body\n"
"\n"
"Exit status: 0 done, 1 an invalid mapping or a failed record, 2 usage.\n",
        VMAP_NAME, VMAP_NAME);
}


static int
vmap_check(int argc, char **argv)
{
    int        i, rc;
    char       err[VMAP_ERRLEN];
    vc_map_t  *map;

    if (argc == 0) {
        fprintf(stderr, "%s: check: no mapping file given\n", VMAP_NAME);
        return VMAP_EXIT_USAGE;
    }

    rc = VMAP_EXIT_OK;

    for (i = 0; i < argc; i++) {
        map = vc_map_load_file(argv[i], err, sizeof(err));

        if (map == NULL) {
            fprintf(stderr, "%s: %s\n", VMAP_NAME, err);
            rc = VMAP_EXIT_FAIL;
            continue;
        }

        printf("%s: ok: \"%s\", %s -> %s, %zu fields%s\n", argv[i],
               vc_map_name(map), vc_map_from(map), vc_map_to(map),
               vc_map_nfields(map),
               vc_map_edits(map) ? ", edits in place" : "");

        vc_map_free(map);
    }

    return rc;
}


static int
vmap_apply(int argc, char **argv)
{
    int            rc, pretty;
    char          *buf, *s, err[VMAP_ERRLEN];
    size_t         len, pos, nrec;
    json_t        *in, *out;
    vc_map_t      *map;
    json_error_t   jerr;

    pretty = 0;

    if (argc > 0 && strcmp(argv[0], "--pretty") == 0) {
        pretty = 1;
        argc--;
        argv++;
    }

    if (argc < 1 || argc > 2) {
        vmap_usage(stderr);
        return VMAP_EXIT_USAGE;
    }

    map = vc_map_load_file(argv[0], err, sizeof(err));
    if (map == NULL) {
        fprintf(stderr, "%s: %s\n", VMAP_NAME, err);
        return VMAP_EXIT_FAIL;
    }

    buf = vmap_read(argc == 2 ? argv[1] : "-", &len);
    if (buf == NULL) {
        vc_map_free(map);
        return VMAP_EXIT_FAIL;
    }

    rc = VMAP_EXIT_OK;
    pos = 0;

    for (nrec = 1; /* void */ ; nrec++) {
        while (pos < len && (buf[pos] == ' ' || buf[pos] == '\t'
                             || buf[pos] == '\r' || buf[pos] == '\n'))
        {
            pos++;
        }

        if (pos == len) {
            break;
        }

        in = json_loadb(buf + pos, len - pos,
                        JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &jerr);

        if (in == NULL) {
            /* no telling where the next record starts: stop here */
            vmap_where(buf, pos, &jerr);
            fprintf(stderr, "%s: record %zu: invalid JSON at line %d, "
                    "column %d: %s\n", VMAP_NAME, nrec, jerr.line,
                    jerr.column, jerr.text);
            rc = VMAP_EXIT_FAIL;
            break;
        }

        /* with JSON_DISABLE_EOF_CHECK, the bytes the value took */
        pos += (size_t) jerr.position;

        if ((vc_map_edits(map)
             ? vc_map_apply_doc(map, in, &out, err, sizeof(err))
             : vc_map_apply(map, in, &out, err, sizeof(err)))
            != VC_OK)
        {
            fprintf(stderr, "%s: record %zu: %s\n", VMAP_NAME, nrec, err);
            rc = VMAP_EXIT_FAIL;
            json_decref(in);
            continue;
        }

        s = json_dumps(out, pretty ? JSON_INDENT(2) : JSON_COMPACT);

        if (s == NULL) {
            fprintf(stderr, "%s: record %zu: out of memory\n", VMAP_NAME,
                    nrec);
            rc = VMAP_EXIT_FAIL;

        } else {
            printf("%s\n", s);
            free(s);
        }

        json_decref(out);
        json_decref(in);
    }

    free(buf);
    vc_map_free(map);

    if (fflush(stdout) != 0) {
        fprintf(stderr, "%s: stdout: %s\n", VMAP_NAME, strerror(errno));
        return VMAP_EXIT_FAIL;
    }

    return rc;
}


/*
 * jansson counted from the record's start, at pos: makes jerr's line and
 * column those of the whole input, as an editor shows them.
 */
static void
vmap_where(const char *buf, size_t pos, json_error_t *jerr)
{
    size_t  i, lines, col;

    lines = 0;
    col = 0;

    for (i = 0; i < pos; i++) {
        if (buf[i] == '\n') {
            lines++;
            col = 0;

        } else {
            col++;
        }
    }

    if (jerr->line == 1) {
        jerr->column += (int) col;
    }

    jerr->line += (int) lines;
}


/* the whole of path ("-": stdin), or NULL after saying why */

static char *
vmap_read(const char *path, size_t *len)
{
    FILE    *f;
    char    *buf, *p;
    size_t   n, cap;

    f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "%s: %s: %s\n", VMAP_NAME, path, strerror(errno));
        return NULL;
    }

    cap = 65536;
    n = 0;
    buf = malloc(cap);

    while (buf != NULL) {
        n += fread(buf + n, 1, cap - n, f);

        if (n < cap) {
            break;
        }

        cap *= 2;
        p = realloc(buf, cap);

        if (p == NULL) {
            free(buf);
        }

        buf = p;
    }

    if (buf == NULL || ferror(f)) {
        fprintf(stderr, "%s: %s: %s\n", VMAP_NAME, path,
                buf ? "read failed" : "out of memory");
        free(buf);
        buf = NULL;
    }

    if (f != stdin) {
        fclose(f);
    }

    *len = n;

    return buf;
}
