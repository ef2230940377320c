/* vc_map.c -- declarative field mappings: load, validate, apply */

/*
 * A map is parsed once into an array of fields; every member of the file is
 * checked then, so that applying a map to a record only reads it.  The
 * parsed document is kept: constants, defaults and lookup tables are
 * borrowed from it and deep-copied into each output, so that an output
 * shares nothing with the map and a map may be applied from several
 * threads.  Conversions are locale-free: numbers go through jansson, which
 * reads and writes '.' whatever LC_NUMERIC says, and dates through integer
 * calendar arithmetic, not timegm() or strptime().
 */

/* memmem(), memrchr() */
#define _GNU_SOURCE

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "vc_map.h"
#include "vc_mask.h"


#define VC_MAP_DAY_MS       86400000LL

/* 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z, in ms */
#define VC_MAP_MS_MIN       (-62135596800000LL)
#define VC_MAP_MS_MAX       253402300799999LL

/* beyond 2^53 a JSON number is no longer an exact integer anywhere */
#define VC_MAP_EXACT_MAX    9007199254740992.0

/* E.164: at most 15 digits with the country code */
#define VC_MAP_E164_MAX     15

#define VC_MAP_ECHO_LEN     (4 * VC_MAP_ECHO_MAX + 16)

#define vc_map_digit(c)     ((c) >= '0' && (c) <= '9')
#define vc_map_space(c)                                                      \
    ((c) == ' ' || (c) == '\t' || (c) == '\r' || (c) == '\n'                 \
     || (c) == '\f' || (c) == '\v')


enum {
    VC_MAP_OP_SET = 0,
    VC_MAP_OP_REMOVE,
    VC_MAP_OP_RENAME
};

enum {
    VC_MAP_SRC_FROM = 0,
    VC_MAP_SRC_CONCAT,
    VC_MAP_SRC_CONSTANT
};

enum {
    VC_MAP_TYPE_NONE = 0,
    VC_MAP_TYPE_STRING,
    VC_MAP_TYPE_NUMBER,
    VC_MAP_TYPE_INTEGER,
    VC_MAP_TYPE_BOOLEAN,
    VC_MAP_TYPE_DATE,
    VC_MAP_TYPE_DATETIME,
    VC_MAP_TYPE_PHONE
};

enum {
    VC_MAP_FMT_ISO = 0,
    VC_MAP_FMT_EPOCH_S,
    VC_MAP_FMT_EPOCH_MS,
    VC_MAP_FMT_MIDNIGHT_MS,
    VC_MAP_FMT_PATTERN
};

enum {
    VC_MAP_TR_TRIM = 0,
    VC_MAP_TR_LOWER,
    VC_MAP_TR_UPPER,
    VC_MAP_TR_COLLAPSE
};

enum {
    VC_MAP_MASK_NONE = 0,
    VC_MAP_MASK_FULL,
    VC_MAP_MASK_LAST4,
    VC_MAP_MASK_EMAIL,
    VC_MAP_MASK_PII
};

/* the named parts of "split"; a piece's index is >= 0 */
#define VC_MAP_PART_FIRST         -1
#define VC_MAP_PART_LAST          -2
#define VC_MAP_PART_AFTER_FIRST   -3
#define VC_MAP_PART_BEFORE_LAST   -4

/* a piece index beyond any name's */
#define VC_MAP_PART_MAX           1000


/* one step of a path: a member's name, an array's index, or "*" */
typedef struct {
    const char         *name;       /* decoded, NUL-terminated */
    size_t              len;
    size_t              index;      /* when is_index */
    unsigned            is_index:1; /* a pointer's decimal, no leading 0 */
    unsigned            wild:1;     /* a pointer's "*" */
    unsigned            append:1;   /* a pointer's "-" */
} vc_map_seg_t;


/*
 * A dotted path or a JSON pointer, parsed once at load: apply only walks
 * the segments.  A dotted path's segments are names only, so that it
 * never indexes an array, as before pointers.
 */
typedef struct {
    vc_map_seg_t       *segs;       /* the names follow, one allocation */
    size_t              n;
    size_t              nwild;      /* "*" segments */
    size_t              scope;      /* segments up to the last "*" */
    const char         *text;       /* as written, borrowed */
    unsigned            pointer:1;
} vc_map_path_t;


/*
 * A step into a container: a member's name, or an array's index.  A "*"
 * of a path is bound to one of these for each element it matches.
 */
typedef struct {
    const char         *key;        /* NULL for an index of a literal */
    size_t              len;
    size_t              index;      /* when is_index */
    unsigned            is_index:1;
    char                num[24];    /* an index's decimal, for objects */
} vc_map_step_t;


typedef struct {
    int                 kind;       /* VC_MAP_FMT_* */
    const char         *text;       /* as written, borrowed */
} vc_map_datefmt_t;


typedef struct {
    const char         *region;     /* ISO 3166-1 alpha-2 */
    const char         *cc;         /* country calling code */
    size_t              min;        /* national significant number, digits */
    size_t              max;
    unsigned            nanp:1;     /* area code and exchange start 2-9 */
    unsigned            trunk0:1;   /* a national number may start with 0 */
} vc_map_region_t;


typedef struct {
    size_t              index;
    const char         *to_text;
    vc_map_path_t       to;         /* a remove's pointer too */
    int                 kind;       /* VC_MAP_OP_* */
    int                 source;     /* VC_MAP_SRC_* */
    vc_map_path_t       from;       /* a rename's source too */
    vc_map_path_t      *concat;
    size_t              nconcat;
    const char         *sep;        /* concat's or split's */
    size_t              sep_len;
    int                 part;       /* VC_MAP_PART_* or a piece index */
    json_t             *constant;   /* borrowed from the document */
    json_t             *def;
    json_t             *lookup;
    json_t             *lookup_default;
    unsigned char       transforms[VC_MAP_TRANSFORM_MAX];
    size_t              ntransforms;
    int                 type;       /* VC_MAP_TYPE_* */
    vc_map_datefmt_t    in[VC_MAP_FORMATS_MAX];
    size_t              nin;
    vc_map_datefmt_t    out;
    const vc_map_region_t  *region;
    int                 mask;       /* VC_MAP_MASK_* */
    unsigned            split:1;
    unsigned            required:1;
    unsigned            has_default:1;
    unsigned            has_lookup_default:1;
    unsigned            out_string:1;   /* format_out "string" */
} vc_map_field_t;


struct vc_map_s {
    json_t             *doc;
    const char         *name;
    const char         *from;
    const char         *to;
    vc_map_field_t     *fields;
    size_t              nfields;
    unsigned            edit:1;     /* "mode": "edit" */
};


/* what load reports through */
typedef struct {
    const char         *file;
    char               *err;
    size_t              errlen;
} vc_map_load_t;


/* what apply reports through: problems appended, "; "-separated */
typedef struct {
    char               *err;
    size_t              errlen;
    size_t              used;
    size_t              nerrors;
    const vc_map_step_t  *binds;    /* an edit's "*" bindings, or NULL */
    unsigned            edit:1;
} vc_map_errs_t;


/* one edit-mode entry applied to one document */
typedef struct {
    const vc_map_field_t  *f;
    json_t             *doc;
    vc_map_errs_t      *e;
    vc_map_step_t       binds[VC_MAP_PATH_MAX];
} vc_map_edit_t;


typedef int (*vc_map_match_pt)(vc_map_edit_t *ed, json_t *parent,
    const vc_map_step_t *step, json_t *v);


static const char  *vc_map_doc_members[] = {
    "name", "description", "from", "to", "mode", "fields", NULL
};

static const char  *vc_map_field_members[] = {
    "to", "from", "concat", "sep", "constant", "split", "transform",
    "lookup", "lookup_default", "type", "format_in", "format_out",
    "default_region", "default", "required", "mask", "note", NULL
};

/* in edit mode: the same, and the two entries that are no set */
static const char  *vc_map_edit_members[] = {
    "to", "from", "concat", "sep", "constant", "split", "transform",
    "lookup", "lookup_default", "type", "format_in", "format_out",
    "default_region", "default", "required", "mask", "note", "remove",
    "rename", NULL
};

/* indexed by VC_MAP_TYPE_* */
static const char  *vc_map_types[] = {
    "", "string", "number", "integer", "boolean", "date", "datetime",
    "phone_e164", NULL
};

/* indexed by VC_MAP_FMT_*, the pattern excluded */
static const char  *vc_map_formats[] = {
    "iso", "epoch_s", "epoch_ms", "epoch_ms_midnight_utc", NULL
};

/* indexed by VC_MAP_TR_* */
static const char  *vc_map_transforms[] = {
    "trim", "lowercase", "uppercase", "collapse_spaces", NULL
};

/* indexed by VC_MAP_MASK_* */
static const char  *vc_map_masks[] = {
    "", "full", "last4", "email_domain", "pii", NULL
};

/* indexed by -1 - VC_MAP_PART_* */
static const char  *vc_map_parts[] = {
    "first", "last", "after_first", "before_last", NULL
};

/*
 * The default regions a national number may be read in.  Lengths are those
 * of the national significant number (without the trunk prefix 0), as the
 * national numbering plans give them, short codes left out (libphonenumber
 * agrees on every example number of these countries but those: see
 * tests/integration/test_map.py).  "+1" is the North American Numbering
 * Plan, where neither the area code nor the exchange starts with 0 or 1.
 * The first entry of a calling code is the one an international number
 * with that code is checked against.
 */
static const vc_map_region_t  vc_map_regions[] = {
    { "US", "1",   10, 10, 1, 0 },
    { "CA", "1",   10, 10, 1, 0 },
    { "GB", "44",   9, 10, 0, 1 },
    { "IE", "353",  7, 10, 0, 1 },
    { "FR", "33",   9,  9, 0, 1 },
    { "AU", "61",   9, 10, 0, 1 },
    { NULL, NULL,   0,  0, 0, 0 }
};


static int vc_map_doc(vc_map_t *map, vc_map_load_t *ld);
static int vc_map_field(vc_map_t *map, vc_map_field_t *f, json_t *e,
    vc_map_load_t *ld);
static int vc_map_field_source(vc_map_field_t *f, json_t *e,
    vc_map_load_t *ld);
static int vc_map_field_split(vc_map_field_t *f, json_t *split,
    vc_map_load_t *ld);
static int vc_map_field_transform(vc_map_field_t *f, json_t *v,
    vc_map_load_t *ld);
static int vc_map_field_type(vc_map_field_t *f, json_t *e,
    vc_map_load_t *ld);
static int vc_map_field_formats(vc_map_field_t *f, json_t *v,
    vc_map_load_t *ld);
static int vc_map_datefmt(vc_map_field_t *f, vc_map_datefmt_t *fmt,
    json_t *v, int out, vc_map_load_t *ld);
static const char *vc_map_pattern_check(const char *p, int out);
static int vc_map_field_edit(vc_map_t *map, vc_map_field_t *f, json_t *e,
    vc_map_load_t *ld);
static int vc_map_field_wild(vc_map_t *map, vc_map_field_t *f,
    vc_map_load_t *ld);
static int vc_map_path_check(vc_map_t *map, vc_map_field_t *f,
    const vc_map_path_t *path, const char *what, int to, vc_map_load_t *ld);
static int vc_map_targets(vc_map_t *map, vc_map_load_t *ld);
static int vc_map_edits_check(vc_map_t *map, vc_map_load_t *ld);
static int vc_map_overlap(const vc_map_path_t *a, const vc_map_path_t *b);
static int vc_map_covers(const vc_map_path_t *a, const vc_map_path_t *b);
static int vc_map_path(vc_map_path_t *path, json_t *v);
static int vc_map_index(const char *s, size_t len, size_t *index);
static void vc_map_path_free(vc_map_path_t *path);
static int vc_map_word(const char **words, const char *s);
static void vc_map_expected(char *buf, size_t size, const char **words);
static void vc_map_load_error(vc_map_load_t *ld, const vc_map_field_t *f,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static json_t *vc_map_field_apply(const vc_map_field_t *f, json_t *in,
    vc_map_errs_t *e);
static json_t *vc_map_resolve(json_t *in, const vc_map_path_t *path,
    const vc_map_step_t *binds);
static json_t *vc_map_child(json_t *c, const vc_map_seg_t *g,
    const vc_map_step_t *b);
static int vc_map_edit(const vc_map_t *map, json_t *doc, vc_map_errs_t *e);
static int vc_map_each(vc_map_edit_t *ed, const vc_map_path_t *path,
    size_t i, size_t end, size_t w, json_t *parent, const vc_map_step_t *at,
    json_t *c, vc_map_match_pt match);
static int vc_map_edit_set(vc_map_edit_t *ed, json_t *parent,
    const vc_map_step_t *at, json_t *v);
static int vc_map_edit_remove(vc_map_edit_t *ed, json_t *parent,
    const vc_map_step_t *at, json_t *v);
static int vc_map_edit_rename(vc_map_edit_t *ed, json_t *parent,
    const vc_map_step_t *at, json_t *v);
static int vc_map_write(vc_map_edit_t *ed, const vc_map_path_t *path,
    json_t *v);
static void vc_map_bind(vc_map_step_t *b, const char *key, size_t len,
    size_t index);
static void vc_map_pointer(char *dst, size_t size, const vc_map_path_t *path,
    size_t n, const vc_map_step_t *binds);
static const char *vc_map_kind(json_t *v);
static json_t *vc_map_concat(const vc_map_field_t *f, json_t *in,
    vc_map_errs_t *e);
static json_t *vc_map_split(const vc_map_field_t *f, json_t *v,
    vc_map_errs_t *e);
static json_t *vc_map_transform(const vc_map_field_t *f, json_t *v);
static json_t *vc_map_lookup(const vc_map_field_t *f, json_t *v,
    vc_map_errs_t *e);
static json_t *vc_map_convert(const vc_map_field_t *f, json_t *v,
    vc_map_errs_t *e);
static json_t *vc_map_to_string(json_t *v);
static json_t *vc_map_to_number(const vc_map_field_t *f, json_t *v,
    vc_map_errs_t *e);
static json_t *vc_map_to_boolean(const vc_map_field_t *f, json_t *v,
    vc_map_errs_t *e);
static json_t *vc_map_to_date(const vc_map_field_t *f, json_t *v,
    vc_map_errs_t *e);
static json_t *vc_map_to_phone(const vc_map_field_t *f, json_t *v,
    vc_map_errs_t *e);
static json_t *vc_map_apply_mask(const vc_map_field_t *f, json_t *v);
static int vc_map_set(json_t *out, const vc_map_path_t *path, json_t *v);
static int vc_map_absent(json_t *v);
static char *vc_map_text(json_t *v, size_t *len);
static json_t *vc_map_parse_number(const char *s, size_t len, int *range);
static char *vc_map_real_text(double d);
static int vc_map_time_in(const vc_map_datefmt_t *fmt, json_t *v,
    int64_t *ms);
static int vc_map_time_iso(const char *s, size_t len, int64_t *ms);
static int vc_map_time_pattern(const char *p, const char *s, size_t len,
    int64_t *ms);
static int vc_map_time_epoch(json_t *v, int64_t unit, int64_t *ms);
static json_t *vc_map_time_out(const vc_map_field_t *f, int64_t ms);
static size_t vc_map_time_format(char *buf, size_t size, const char *p,
    int64_t ms);
static int64_t vc_map_days(int64_t y, unsigned m, unsigned d);
static void vc_map_civil(int64_t days, int64_t *y, unsigned *m,
    unsigned *d);
static int64_t vc_map_floor_div(int64_t a, int64_t b);
static int vc_map_phone(const vc_map_region_t *region, const char *s,
    size_t len, char *out, size_t size);
static const vc_map_region_t *vc_map_region_by_cc(const char *digits,
    size_t n);
static int vc_map_nsn_valid(const vc_map_region_t *r, const char *nsn,
    size_t n);
static void vc_map_trim(const char **s, size_t *len);
static void vc_map_utf8_repair(unsigned char *p, size_t len);
static void vc_map_fail(vc_map_errs_t *e, const vc_map_field_t *f,
    json_t *v, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void vc_map_echo(char *dst, const char *s, size_t len, int mask);
static void vc_map_describe(char *dst, size_t size, json_t *v);


vc_map_t *
vc_map_load(const char *file, const char *buf, size_t len, char *err,
    size_t errlen)
{
    vc_map_t       *map;
    json_error_t    jerr;
    vc_map_load_t   ld;

    ld.file = file;
    ld.err = err;
    ld.errlen = errlen;

    if (errlen) {
        err[0] = '\0';
    }

    map = calloc(1, sizeof(vc_map_t));
    if (map == NULL) {
        vc_map_load_error(&ld, NULL, "out of memory");
        return NULL;
    }

    /* a repeated member would make one of two entries silently win */
    map->doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (map->doc == NULL) {
        vc_map_load_error(&ld, NULL, "invalid JSON at line %d, column %d: "
                          "%s", jerr.line, jerr.column, jerr.text);
        free(map);
        return NULL;
    }

    if (vc_map_doc(map, &ld) != VC_OK || vc_map_targets(map, &ld) != VC_OK)
    {
        vc_map_free(map);
        return NULL;
    }

    return map;
}


vc_map_t *
vc_map_load_file(const char *path, char *err, size_t errlen)
{
    FILE       *f;
    char       *buf;
    size_t      n;
    vc_map_t   *map;

    f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }

    buf = malloc(VC_MAP_FILE_MAX + 1);
    if (buf == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        fclose(f);
        return NULL;
    }

    n = fread(buf, 1, VC_MAP_FILE_MAX + 1, f);

    if (ferror(f)) {
        snprintf(err, errlen, "%s: read failed", path);
        map = NULL;

    } else if (n > VC_MAP_FILE_MAX) {
        snprintf(err, errlen, "%s: larger than %d bytes", path,
                 VC_MAP_FILE_MAX);
        map = NULL;

    } else {
        map = vc_map_load(path, buf, n, err, errlen);
    }

    free(buf);
    fclose(f);

    return map;
}


void
vc_map_free(vc_map_t *map)
{
    size_t           i, j;
    vc_map_field_t  *f;

    if (map == NULL) {
        return;
    }

    for (i = 0; i < map->nfields; i++) {
        f = &map->fields[i];

        vc_map_path_free(&f->to);
        vc_map_path_free(&f->from);

        for (j = 0; j < f->nconcat; j++) {
            vc_map_path_free(&f->concat[j]);
        }

        free(f->concat);
    }

    free(map->fields);
    json_decref(map->doc);
    free(map);
}


const char *
vc_map_name(const vc_map_t *map)
{
    return map->name;
}


/*
 * The source path of field i as written ("properties.email", or a pointer
 * "/properties/email"), or NULL for a field that reads none (a constant,
 * a remove) or for i out of range; a concatenation's first part stands
 * for it, and a rename's source for a rename.
 */
const char *
vc_map_field_from(const vc_map_t *map, size_t i)
{
    const vc_map_field_t  *f;

    if (i >= map->nfields) {
        return NULL;
    }

    f = &map->fields[i];

    if (f->kind == VC_MAP_OP_REMOVE) {
        return NULL;
    }

    if (f->from.text != NULL) {
        return f->from.text;
    }

    return f->nconcat ? f->concat[0].text : NULL;
}


const char *
vc_map_from(const vc_map_t *map)
{
    return map->from;
}


const char *
vc_map_to(const vc_map_t *map)
{
    return map->to;
}


size_t
vc_map_nfields(const vc_map_t *map)
{
    return map->nfields;
}


/* the document's own members, then each entry of "fields" */

static int
vc_map_doc(vc_map_t *map, vc_map_load_t *ld)
{
    size_t       i, n;
    json_t      *v, *fields;
    const char  *name, **member, *names[3] = { "name", "from", "to" };
    const char **dst[3];
    char         expected[256];

    if (!json_is_object(map->doc)) {
        vc_map_load_error(ld, NULL, "not a JSON object");
        return VC_ERROR;
    }

    json_object_foreach(map->doc, name, v) {
        for (member = vc_map_doc_members; *member; member++) {
            if (strcmp(name, *member) == 0) {
                break;
            }
        }

        if (*member == NULL) {
            vc_map_expected(expected, sizeof(expected), vc_map_doc_members);
            vc_map_load_error(ld, NULL, "unknown member \"%.64s\"; expected "
                              "one of %s", name, expected);
            return VC_ERROR;
        }
    }

    dst[0] = &map->name;
    dst[1] = &map->from;
    dst[2] = &map->to;

    for (i = 0; i < 3; i++) {
        v = json_object_get(map->doc, names[i]);

        if (!json_is_string(v) || json_string_length(v) == 0) {
            vc_map_load_error(ld, NULL, "\"%s\" must be a non-empty string",
                              names[i]);
            return VC_ERROR;
        }

        *dst[i] = json_string_value(v);
    }

    v = json_object_get(map->doc, "description");
    if (v != NULL && !json_is_string(v)) {
        vc_map_load_error(ld, NULL, "\"description\" must be a string");
        return VC_ERROR;
    }

    v = json_object_get(map->doc, "mode");
    if (v != NULL) {
        if (json_is_string(v) && strcmp(json_string_value(v), "edit") == 0) {
            map->edit = 1;

        } else if (!json_is_string(v)
                   || strcmp(json_string_value(v), "project") != 0)
        {
            vc_map_load_error(ld, NULL, "\"mode\" must be \"project\" or "
                              "\"edit\"");
            return VC_ERROR;
        }
    }

    fields = json_object_get(map->doc, "fields");
    n = json_array_size(fields);

    if (!json_is_array(fields) || n == 0) {
        vc_map_load_error(ld, NULL, "\"fields\" must be an array of at least "
                          "one entry");
        return VC_ERROR;
    }

    map->fields = calloc(n, sizeof(vc_map_field_t));
    if (map->fields == NULL) {
        vc_map_load_error(ld, NULL, "out of memory");
        return VC_ERROR;
    }

    for (i = 0; i < n; i++) {
        /* counted first, so that free() sees what a failed entry holds */
        map->nfields = i + 1;
        map->fields[i].index = i;

        if (vc_map_field(map, &map->fields[i], json_array_get(fields, i), ld)
            != VC_OK)
        {
            return VC_ERROR;
        }
    }

    return VC_OK;
}


static int
vc_map_field(vc_map_t *map, vc_map_field_t *f, json_t *e, vc_map_load_t *ld)
{
    json_t      *v, *req;
    const char  *name, **members;
    char         expected[512];

    if (!json_is_object(e)) {
        vc_map_load_error(ld, f, "not a JSON object");
        return VC_ERROR;
    }

    if (json_object_get(e, "remove") != NULL
        || json_object_get(e, "rename") != NULL)
    {
        return vc_map_field_edit(map, f, e, ld);
    }

    v = json_object_get(e, "to");

    if (v == NULL) {
        vc_map_load_error(ld, f, "\"to\" is missing");
        return VC_ERROR;
    }

    if (!json_is_string(v)) {
        vc_map_load_error(ld, f, "\"to\" must be a string, a member name or "
                          "a dotted path such as \"address.city\"");
        return VC_ERROR;
    }

    f->to_text = json_string_value(v);

    switch (vc_map_path(&f->to, v)) {
    case VC_OK:
        break;
    case VC_DECLINED:
        if (json_string_value(v)[0] == '/') {
            vc_map_load_error(ld, f, "\"to\" is not a JSON pointer: \"~\" "
                              "must be followed by 0 or 1, at most %d "
                              "segments", VC_MAP_PATH_MAX);
        } else {
            vc_map_load_error(ld, f, "\"to\" is not a path: names are "
                              "separated by single dots, at most %d of them",
                              VC_MAP_PATH_MAX);
        }

        return VC_ERROR;
    default:
        vc_map_load_error(ld, f, "out of memory");
        return VC_ERROR;
    }

    members = map->edit ? vc_map_edit_members : vc_map_field_members;

    json_object_foreach(e, name, v) {
        if (vc_map_word(members, name) < 0) {
            vc_map_expected(expected, sizeof(expected), members);
            vc_map_load_error(ld, f, "unknown member \"%.64s\"; expected one "
                              "of %s", name, expected);
            return VC_ERROR;
        }
    }

    if (vc_map_path_check(map, f, &f->to, "to", 1, ld) != VC_OK) {
        return VC_ERROR;
    }

    v = json_object_get(e, "note");
    if (v != NULL && !json_is_string(v)) {
        vc_map_load_error(ld, f, "\"note\" must be a string");
        return VC_ERROR;
    }

    if (vc_map_field_source(f, e, ld) != VC_OK
        || vc_map_field_wild(map, f, ld) != VC_OK)
    {
        return VC_ERROR;
    }

    if (f->source == VC_MAP_SRC_CONSTANT) {
        /* a constant is written as it is: nothing else applies to it */
        json_object_foreach(e, name, v) {
            if (strcmp(name, "to") != 0 && strcmp(name, "constant") != 0
                && strcmp(name, "note") != 0)
            {
                vc_map_load_error(ld, f, "\"constant\" takes no \"%s\": the "
                                  "constant is written as it is", name);
                return VC_ERROR;
            }
        }

        return VC_OK;
    }

    v = json_object_get(e, "split");
    if (v != NULL && vc_map_field_split(f, v, ld) != VC_OK) {
        return VC_ERROR;
    }

    v = json_object_get(e, "transform");
    if (v != NULL && vc_map_field_transform(f, v, ld) != VC_OK) {
        return VC_ERROR;
    }

    v = json_object_get(e, "lookup");
    if (v != NULL) {
        if (!json_is_object(v) || json_object_size(v) == 0) {
            vc_map_load_error(ld, f, "\"lookup\" must be an object of at "
                              "least one entry, {\"value\": \"replacement\"}");
            return VC_ERROR;
        }

        f->lookup = v;
    }

    v = json_object_get(e, "lookup_default");
    if (v != NULL) {
        if (f->lookup == NULL) {
            vc_map_load_error(ld, f, "\"lookup_default\" needs \"lookup\"");
            return VC_ERROR;
        }

        f->lookup_default = v;
        f->has_lookup_default = 1;
    }

    if (vc_map_field_type(f, e, ld) != VC_OK) {
        return VC_ERROR;
    }

    req = json_object_get(e, "required");
    if (req != NULL) {
        if (!json_is_boolean(req)) {
            vc_map_load_error(ld, f, "\"required\" must be true or false");
            return VC_ERROR;
        }

        f->required = json_is_true(req);
    }

    v = json_object_get(e, "default");
    if (v != NULL) {
        if (f->required) {
            vc_map_load_error(ld, f, "\"required\" and \"default\" cannot be "
                              "used together: the default is written when "
                              "the value is absent");
            return VC_ERROR;
        }

        f->def = v;
        f->has_default = 1;
    }

    v = json_object_get(e, "mask");
    if (v != NULL) {
        f->mask = json_is_string(v) ? vc_map_word(vc_map_masks,
                                                  json_string_value(v))
                                    : -1;

        if (f->mask <= VC_MAP_MASK_NONE) {
            vc_map_expected(expected, sizeof(expected), vc_map_masks + 1);
            vc_map_load_error(ld, f, "unknown mask \"%.64s\"; expected one "
                              "of %s", json_is_string(v)
                                       ? json_string_value(v) : "",
                              expected);
            f->mask = VC_MAP_MASK_NONE;
            return VC_ERROR;
        }
    }

    return VC_OK;
}


/* exactly one of "from", "concat" and "constant"; "sep" only with concat */

static int
vc_map_field_source(vc_map_field_t *f, json_t *e, vc_map_load_t *ld)
{
    int          i, n, rc;
    size_t       j;
    json_t      *v, *p;
    const char  *given[3];

    static const char  *sources[] = { "from", "concat", "constant" };

    n = 0;

    for (i = 0; i < 3; i++) {
        if (json_object_get(e, sources[i]) != NULL) {
            given[n++] = sources[i];
            f->source = i;
        }
    }

    if (n == 0) {
        vc_map_load_error(ld, f, "needs one of \"from\", \"concat\" or "
                          "\"constant\"");
        return VC_ERROR;
    }

    if (n > 1) {
        vc_map_load_error(ld, f, "\"%s\" and \"%s\" cannot be used together",
                          given[0], given[1]);
        return VC_ERROR;
    }

    switch (f->source) {

    case VC_MAP_SRC_CONSTANT:
        f->constant = json_object_get(e, "constant");
        return VC_OK;

    case VC_MAP_SRC_FROM:
        v = json_object_get(e, "from");
        rc = json_is_string(v) ? vc_map_path(&f->from, v) : VC_DECLINED;

        if (rc == VC_DECLINED && json_is_string(v)
            && json_string_value(v)[0] == '/')
        {
            vc_map_load_error(ld, f, "\"from\" is not a JSON pointer: \"~\" "
                              "must be followed by 0 or 1, at most %d "
                              "segments", VC_MAP_PATH_MAX);
            return VC_ERROR;
        }

        if (rc == VC_DECLINED) {
            vc_map_load_error(ld, f, "\"from\" must be a member name or a "
                              "dotted path, at most %d names",
                              VC_MAP_PATH_MAX);
            return VC_ERROR;
        }

        if (rc != VC_OK) {
            vc_map_load_error(ld, f, "out of memory");
            return VC_ERROR;
        }

        if (json_object_get(e, "sep") != NULL) {
            vc_map_load_error(ld, f, "\"sep\" needs \"concat\" (a split has "
                              "its own \"sep\")");
            return VC_ERROR;
        }

        return VC_OK;

    default: /* VC_MAP_SRC_CONCAT */
        v = json_object_get(e, "concat");

        if (!json_is_array(v) || json_array_size(v) < 2) {
            vc_map_load_error(ld, f, "\"concat\" must be an array of at "
                              "least two paths");
            return VC_ERROR;
        }

        f->concat = calloc(json_array_size(v), sizeof(vc_map_path_t));
        if (f->concat == NULL) {
            vc_map_load_error(ld, f, "out of memory");
            return VC_ERROR;
        }

        json_array_foreach(v, j, p) {
            rc = json_is_string(p) ? vc_map_path(&f->concat[j], p)
                                   : VC_DECLINED;

            if (rc != VC_OK) {
                if (rc == VC_DECLINED && json_is_string(p)
                    && json_string_value(p)[0] == '/')
                {
                    vc_map_load_error(ld, f, "concat[%zu] is not a JSON "
                                      "pointer: \"~\" must be followed by 0 "
                                      "or 1, at most %d segments", j,
                                      VC_MAP_PATH_MAX);
                } else if (rc == VC_DECLINED) {
                    vc_map_load_error(ld, f, "concat[%zu] must be a member "
                                      "name or a dotted path, at most %d "
                                      "names", j, VC_MAP_PATH_MAX);
                } else {
                    vc_map_load_error(ld, f, "out of memory");
                }

                return VC_ERROR;
            }

            f->nconcat = j + 1;
        }

        f->sep = " ";
        f->sep_len = 1;

        p = json_object_get(e, "sep");
        if (p != NULL) {
            if (!json_is_string(p)) {
                vc_map_load_error(ld, f, "\"sep\" must be a string");
                return VC_ERROR;
            }

            f->sep = json_string_value(p);
            f->sep_len = json_string_length(p);
        }

        if (json_object_get(e, "split") != NULL) {
            vc_map_load_error(ld, f, "\"split\" needs \"from\", not "
                              "\"concat\"");
            return VC_ERROR;
        }

        return VC_OK;
    }
}


static int
vc_map_field_split(vc_map_field_t *f, json_t *split, vc_map_load_t *ld)
{
    int          i;
    json_t      *v;
    json_int_t   n;
    const char  *name;

    if (!json_is_object(split)) {
        vc_map_load_error(ld, f, "\"split\" must be an object, {\"sep\": "
                          "\" \", \"part\": \"first\"}");
        return VC_ERROR;
    }

    json_object_foreach(split, name, v) {
        if (strcmp(name, "sep") != 0 && strcmp(name, "part") != 0) {
            vc_map_load_error(ld, f, "unknown member \"%.64s\" in \"split\"; "
                              "expected sep or part", name);
            return VC_ERROR;
        }
    }

    f->split = 1;
    f->sep = " ";
    f->sep_len = 1;

    v = json_object_get(split, "sep");
    if (v != NULL) {
        if (!json_is_string(v) || json_string_length(v) == 0) {
            vc_map_load_error(ld, f, "\"split\": \"sep\" must be a non-empty "
                              "string");
            return VC_ERROR;
        }

        f->sep = json_string_value(v);
        f->sep_len = json_string_length(v);
    }

    v = json_object_get(split, "part");

    if (json_is_integer(v)) {
        n = json_integer_value(v);

        if (n < 0 || n > VC_MAP_PART_MAX) {
            vc_map_load_error(ld, f, "\"split\": \"part\" %" JSON_INTEGER_FORMAT
                              " is not from 0 to %d", n, VC_MAP_PART_MAX);
            return VC_ERROR;
        }

        f->part = (int) n;
        return VC_OK;
    }

    i = json_is_string(v) ? vc_map_word(vc_map_parts, json_string_value(v))
                          : -1;

    if (i < 0) {
        vc_map_load_error(ld, f, "\"split\": \"part\" must be first, last, "
                          "after_first, before_last, or a piece's index "
                          "from 0");
        return VC_ERROR;
    }

    f->part = -1 - i;

    return VC_OK;
}


static int
vc_map_field_transform(vc_map_field_t *f, json_t *v, vc_map_load_t *ld)
{
    int      t;
    size_t   i, n;
    json_t  *s;
    char     expected[128];

    n = json_is_array(v) ? json_array_size(v) : 1;

    if ((!json_is_array(v) && !json_is_string(v)) || n == 0
        || n > VC_MAP_TRANSFORM_MAX)
    {
        vc_map_load_error(ld, f, "\"transform\" must be a name or an array "
                          "of 1 to %d names", VC_MAP_TRANSFORM_MAX);
        return VC_ERROR;
    }

    for (i = 0; i < n; i++) {
        s = json_is_array(v) ? json_array_get(v, i) : v;
        t = json_is_string(s) ? vc_map_word(vc_map_transforms,
                                            json_string_value(s))
                              : -1;

        if (t < 0) {
            vc_map_expected(expected, sizeof(expected), vc_map_transforms);

            if (json_is_string(s)) {
                vc_map_load_error(ld, f, "unknown transform \"%.64s\"; "
                                  "expected one of %s", json_string_value(s),
                                  expected);
            } else {
                vc_map_load_error(ld, f, "a transform must be one of %s",
                                  expected);
            }

            return VC_ERROR;
        }

        f->transforms[i] = (unsigned char) t;
    }

    f->ntransforms = n;

    return VC_OK;
}


/* "type" and the members that depend on it */

static int
vc_map_field_type(vc_map_field_t *f, json_t *e, vc_map_load_t *ld)
{
    int          i;
    json_t      *v, *fin, *fout, *region;
    const char  *s;
    char         expected[256];

    v = json_object_get(e, "type");
    fin = json_object_get(e, "format_in");
    fout = json_object_get(e, "format_out");
    region = json_object_get(e, "default_region");

    if (v != NULL) {
        f->type = json_is_string(v) ? vc_map_word(vc_map_types + 1,
                                                  json_string_value(v))
                                    : -1;

        if (f->type < 0) {
            vc_map_expected(expected, sizeof(expected), vc_map_types + 1);

            if (json_is_string(v)) {
                vc_map_load_error(ld, f, "unknown type \"%.64s\"; expected "
                                  "one of %s", json_string_value(v),
                                  expected);
            } else {
                vc_map_load_error(ld, f, "\"type\" must be one of %s",
                                  expected);
            }

            f->type = VC_MAP_TYPE_NONE;
            return VC_ERROR;
        }

        f->type++;
    }

    if (fin != NULL && f->type != VC_MAP_TYPE_DATE
        && f->type != VC_MAP_TYPE_DATETIME)
    {
        vc_map_load_error(ld, f, "\"format_in\" needs \"type\": \"date\" or "
                          "\"datetime\"");
        return VC_ERROR;
    }

    if (region != NULL && f->type != VC_MAP_TYPE_PHONE) {
        vc_map_load_error(ld, f, "\"default_region\" needs \"type\": "
                          "\"phone_e164\"");
        return VC_ERROR;
    }

    switch (f->type) {

    case VC_MAP_TYPE_DATE:
    case VC_MAP_TYPE_DATETIME:
        if (fin == NULL) {
            f->in[0].kind = VC_MAP_FMT_ISO;
            f->in[0].text = "iso";
            f->nin = 1;

        } else if (vc_map_field_formats(f, fin, ld) != VC_OK) {
            return VC_ERROR;
        }

        if (fout == NULL) {
            f->out.kind = VC_MAP_FMT_ISO;
            f->out.text = "iso";
            return VC_OK;
        }

        return vc_map_datefmt(f, &f->out, fout, 1, ld);

    case VC_MAP_TYPE_BOOLEAN:
    case VC_MAP_TYPE_NUMBER:
    case VC_MAP_TYPE_INTEGER:
        if (fout == NULL) {
            return VC_OK;
        }

        s = json_is_string(fout) ? json_string_value(fout) : "";

        if (strcmp(s, "string") == 0) {
            f->out_string = 1;

        } else if (strcmp(s, "json") != 0) {
            vc_map_load_error(ld, f, "\"format_out\" of a%s %s must be "
                              "\"json\" or \"string\"",
                              f->type == VC_MAP_TYPE_INTEGER ? "n" : "",
                              vc_map_types[f->type]);
            return VC_ERROR;
        }

        return VC_OK;

    case VC_MAP_TYPE_PHONE:
        if (region != NULL) {
            s = json_is_string(region) ? json_string_value(region) : "";

            for (i = 0; vc_map_regions[i].region != NULL; i++) {
                if (strcmp(s, vc_map_regions[i].region) == 0) {
                    f->region = &vc_map_regions[i];
                    break;
                }
            }

            if (f->region == NULL) {
                size_t  n;

                n = 0;
                expected[0] = '\0';

                for (i = 0; vc_map_regions[i].region != NULL; i++) {
                    n += snprintf(expected + n, sizeof(expected) - n,
                                  "%s%s", i ? ", " : "",
                                  vc_map_regions[i].region);
                }

                vc_map_load_error(ld, f, "unknown default_region \"%.64s\"; "
                                  "expected one of %s", s, expected);
                return VC_ERROR;
            }
        }

        /* fall through */

    default:
        if (fout != NULL) {
            if (f->type == VC_MAP_TYPE_NONE) {
                vc_map_load_error(ld, f, "\"format_out\" needs a \"type\"");
            } else {
                vc_map_load_error(ld, f, "\"format_out\" does not apply to "
                                  "\"type\": \"%s\"", vc_map_types[f->type]);
            }

            return VC_ERROR;
        }

        return VC_OK;
    }
}


static int
vc_map_field_formats(vc_map_field_t *f, json_t *v, vc_map_load_t *ld)
{
    size_t  i, n;

    if (json_is_string(v)) {
        f->nin = 1;
        return vc_map_datefmt(f, &f->in[0], v, 0, ld);
    }

    n = json_array_size(v);

    if (!json_is_array(v) || n == 0 || n > VC_MAP_FORMATS_MAX) {
        vc_map_load_error(ld, f, "\"format_in\" must be a format or an array "
                          "of 1 to %d formats, tried in order",
                          VC_MAP_FORMATS_MAX);
        return VC_ERROR;
    }

    for (i = 0; i < n; i++) {
        if (vc_map_datefmt(f, &f->in[i], json_array_get(v, i), 0, ld)
            != VC_OK)
        {
            return VC_ERROR;
        }
    }

    f->nin = n;

    return VC_OK;
}


/* a named format, or a pattern of %-directives */

static int
vc_map_datefmt(vc_map_field_t *f, vc_map_datefmt_t *fmt, json_t *v, int out,
    vc_map_load_t *ld)
{
    int          i;
    const char  *s, *what, *why;

    what = out ? "format_out" : "format_in";

    if (!json_is_string(v) || json_string_length(v) == 0
        || json_string_length(v) > 64)
    {
        vc_map_load_error(ld, f, "a %s must be a name or a pattern of up to "
                          "64 bytes", what);
        return VC_ERROR;
    }

    s = json_string_value(v);
    fmt->text = s;

    if (strchr(s, '%') != NULL) {
        why = vc_map_pattern_check(s, out);

        if (why != NULL) {
            vc_map_load_error(ld, f, "%s \"%s\": %s", what, s, why);
            return VC_ERROR;
        }

        fmt->kind = VC_MAP_FMT_PATTERN;
        return VC_OK;
    }

    i = vc_map_word(vc_map_formats, s);

    if (i < 0) {
        vc_map_load_error(ld, f, "unknown %s \"%s\"; expected one of iso, "
                          "epoch_s, epoch_ms, epoch_ms_midnight_utc, or a "
                          "pattern such as \"%%m/%%d/%%Y\"", what, s);
        return VC_ERROR;
    }

    if (i == VC_MAP_FMT_MIDNIGHT_MS && out && f->type != VC_MAP_TYPE_DATE) {
        vc_map_load_error(ld, f, "format_out \"epoch_ms_midnight_utc\" needs "
                          "\"type\": \"date\"");
        return VC_ERROR;
    }

    fmt->kind = i;

    return VC_OK;
}


/*
 * Directives: %Y (4 digits), %m %d %H %M %S (2 digits; 1 or 2 read),
 * %f (milliseconds: 3 digits written, 1 to 9 read), %z (+hhmm written;
 * Z, +hh:mm or +hhmm read), %%.  An input pattern needs %Y, %m and %d
 * and has each directive at most once.  Returns NULL, or why not.
 */
static const char *
vc_map_pattern_check(const char *p, int out)
{
    int          i;
    unsigned     seen;
    const char  *d;

    static const char  directives[] = "YmdHMSfz";

    seen = 0;

    for ( /* void */ ; *p; p++) {
        if (*p != '%') {
            continue;
        }

        p++;

        if (*p == '%') {
            continue;
        }

        d = *p ? strchr(directives, *p) : NULL;

        if (d == NULL) {
            return "unknown directive; expected %Y %m %d %H %M %S %f %z %%";
        }

        i = d - directives;

        if (!out && (seen & (1u << i))) {
            return "a directive is repeated";
        }

        seen |= 1u << i;
    }

    if (!out && (seen & 7) != 7) {
        return "an input pattern needs %Y, %m and %d";
    }

    return NULL;
}


/* no two fields write the same member, nor one inside the other's */

static int
vc_map_targets(vc_map_t *map, vc_map_load_t *ld)
{
    size_t           i, j, k, n;
    vc_map_field_t  *a, *b;

    if (map->edit) {
        return vc_map_edits_check(map, ld);
    }

    for (i = 0; i < map->nfields; i++) {
        a = &map->fields[i];

        for (j = 0; j < i; j++) {
            b = &map->fields[j];
            n = a->to.n < b->to.n ? a->to.n : b->to.n;

            for (k = 0; k < n; k++) {
                if (strcmp(a->to.segs[k].name, b->to.segs[k].name) != 0) {
                    break;
                }
            }

            if (k < n) {
                continue;
            }

            if (a->to.n == b->to.n) {
                vc_map_load_error(ld, a, "\"to\" is also the target of "
                                  "fields[%zu]", j);

            } else if (a->to.n > b->to.n) {
                vc_map_load_error(ld, a, "\"to\" is inside \"%s\", the "
                                  "target of fields[%zu]", b->to_text, j);

            } else {
                vc_map_load_error(ld, a, "\"to\" holds \"%s\", the target "
                                  "of fields[%zu]", b->to_text, j);
            }

            return VC_ERROR;
        }
    }

    return VC_OK;
}

/*
 * An entry that is no set, in edit mode: {"remove": <path>} or
 * {"rename": <path>, "to": <path>}, with an optional "note".
 */
static int
vc_map_field_edit(vc_map_t *map, vc_map_field_t *f, json_t *e,
    vc_map_load_t *ld)
{
    int          rc;
    json_t      *rm, *rn, *to, *v;
    const char  *name, *what;

    rm = json_object_get(e, "remove");
    rn = json_object_get(e, "rename");
    to = json_object_get(e, "to");
    what = rm ? "remove" : "rename";

    if (json_is_string(rm)) {
        f->to_text = json_string_value(rm);

    } else if (rm == NULL && json_is_string(to)) {
        f->to_text = json_string_value(to);
    }

    if (!map->edit) {
        vc_map_load_error(ld, f, "\"%s\" needs \"mode\": \"edit\"", what);
        return VC_ERROR;
    }

    if (rm != NULL && rn != NULL) {
        vc_map_load_error(ld, f, "\"remove\" and \"rename\" cannot be used "
                          "together");
        return VC_ERROR;
    }

    json_object_foreach(e, name, v) {
        if (strcmp(name, what) != 0 && strcmp(name, "note") != 0
            && (rm != NULL || strcmp(name, "to") != 0))
        {
            vc_map_load_error(ld, f, "\"%s\" takes no \"%.64s\"; only %s"
                              "\"note\"", what, name,
                              rm ? "" : "\"to\" and ");
            return VC_ERROR;
        }
    }

    v = json_object_get(e, "note");
    if (v != NULL && !json_is_string(v)) {
        vc_map_load_error(ld, f, "\"note\" must be a string");
        return VC_ERROR;
    }

    if (rm != NULL) {
        f->kind = VC_MAP_OP_REMOVE;

        rc = json_is_string(rm) ? vc_map_path(&f->to, rm) : VC_DECLINED;

        if (rc == VC_DECLINED) {
            vc_map_load_error(ld, f, "\"remove\" must be a JSON pointer or "
                              "a dotted path, at most %d segments, \"~\" "
                              "followed by 0 or 1", VC_MAP_PATH_MAX);
            return VC_ERROR;
        }

        if (rc != VC_OK) {
            vc_map_load_error(ld, f, "out of memory");
            return VC_ERROR;
        }

        return vc_map_path_check(map, f, &f->to, "remove", 0, ld);
    }

    f->kind = VC_MAP_OP_RENAME;

    if (to == NULL) {
        vc_map_load_error(ld, f, "\"rename\" needs \"to\"");
        return VC_ERROR;
    }

    rc = json_is_string(rn) ? vc_map_path(&f->from, rn) : VC_DECLINED;

    if (rc == VC_OK) {
        rc = json_is_string(to) ? vc_map_path(&f->to, to) : VC_DECLINED;
        what = "to";
    }

    if (rc == VC_DECLINED) {
        vc_map_load_error(ld, f, "\"%s\" must be a JSON pointer or a dotted "
                          "path, at most %d segments, \"~\" followed by 0 "
                          "or 1", what, VC_MAP_PATH_MAX);
        return VC_ERROR;
    }

    if (rc != VC_OK) {
        vc_map_load_error(ld, f, "out of memory");
        return VC_ERROR;
    }

    if (vc_map_path_check(map, f, &f->from, "rename", 0, ld) != VC_OK
        || vc_map_path_check(map, f, &f->to, "to", 1, ld) != VC_OK)
    {
        return VC_ERROR;
    }

    if (f->to.nwild != f->from.nwild) {
        vc_map_load_error(ld, f, "\"to\" has %zu \"*\" but \"rename\" has "
                          "%zu: each value moved needs its own target",
                          f->to.nwild, f->from.nwild);
        return VC_ERROR;
    }

    if (vc_map_covers(&f->from, &f->to) && vc_map_covers(&f->to, &f->from))
    {
        vc_map_load_error(ld, f, "\"rename\" and \"to\" are the same");
        return VC_ERROR;
    }

    if (vc_map_covers(&f->from, &f->to)) {
        vc_map_load_error(ld, f, "\"to\" is inside \"rename\": a value "
                          "cannot move inside itself");
        return VC_ERROR;
    }

    return VC_OK;
}


/*
 * The sources of a set, and its "*": in edit mode, each match of "from"
 * (or of the concat) binds its "*" in order, to be put in the same places
 * of "to", so that they must count as many; a constant's "*" are its own.
 */
static int
vc_map_field_wild(vc_map_t *map, vc_map_field_t *f, vc_map_load_t *ld)
{
    size_t                j, k;
    char                  what[32];
    const vc_map_path_t  *a, *b;

    if (f->source == VC_MAP_SRC_FROM) {
        if (vc_map_path_check(map, f, &f->from, "from", 0, ld) != VC_OK) {
            return VC_ERROR;
        }

        if (f->from.nwild != f->to.nwild) {
            vc_map_load_error(ld, f, "\"to\" has %zu \"*\" but \"from\" has "
                              "%zu: each match of \"from\" needs its own "
                              "target", f->to.nwild, f->from.nwild);
            return VC_ERROR;
        }

        return VC_OK;
    }

    for (j = 0; j < f->nconcat; j++) {
        snprintf(what, sizeof(what), "concat[%zu]", j);

        if (vc_map_path_check(map, f, &f->concat[j], what, 0, ld) != VC_OK) {
            return VC_ERROR;
        }

        if (f->concat[j].nwild != f->to.nwild) {
            vc_map_load_error(ld, f, "\"to\" has %zu \"*\" but concat[%zu] "
                              "has %zu: each match needs its own target",
                              f->to.nwild, j, f->concat[j].nwild);
            return VC_ERROR;
        }

        a = &f->concat[0];
        b = &f->concat[j];

        for (k = 0; k < a->scope; k++) {
            if (b->scope != a->scope || a->segs[k].len != b->segs[k].len
                || memcmp(a->segs[k].name, b->segs[k].name, a->segs[k].len)
                   != 0)
            {
                vc_map_load_error(ld, f, "concat[%zu] and concat[0] must be "
                                  "the same up to their last \"*\", so that "
                                  "they read the same element", j);
                return VC_ERROR;
            }
        }
    }

    return VC_OK;
}


/* "*" only in edit mode, and never as a dotted name there */

static int
vc_map_path_check(vc_map_t *map, vc_map_field_t *f, const vc_map_path_t *path,
    const char *what, int to, vc_map_load_t *ld)
{
    size_t  i;

    if (!map->edit && path->nwild) {
        vc_map_load_error(ld, f, "\"%s\": \"*\" (every element or member) "
                          "needs \"mode\": \"edit\"", what);
        return VC_ERROR;
    }

    if (!map->edit || path->pointer) {
        return VC_OK;
    }

    for (i = 0; i < path->n; i++) {
        if (strcmp(path->segs[i].name, "*") == 0) {
            vc_map_load_error(ld, f, "\"%s\": a name \"*\" is ambiguous in "
                              "edit mode; write a JSON pointer, \"/a/*\" "
                              "for every element or member", what);
            return VC_ERROR;
        }
    }

    return VC_OK;
}


/*
 * In edit mode several entries may name the same target, one after the
 * other (rename a member and then convert it, set it and then mask it):
 * what is refused is an entry whose work is certainly undone, a target
 * overwritten or removed before anything reads it, and a remove that an
 * earlier one has already done.
 */
static int
vc_map_edits_check(vc_map_t *map, vc_map_load_t *ld)
{
    size_t                 i, j, k;
    unsigned               reads, certain;
    vc_map_field_t        *a, *b;
    const vc_map_path_t   *x;

    for (i = 0; i < map->nfields; i++) {
        a = &map->fields[i];
        x = &a->to;

        if (a->kind == VC_MAP_OP_REMOVE) {
            /* a later remove inside this one's, with no write between */
            for (j = i + 1; j < map->nfields; j++) {
                b = &map->fields[j];

                if (b->kind != VC_MAP_OP_REMOVE) {
                    if (vc_map_overlap(&b->to, x)) {
                        break;
                    }

                    continue;
                }

                if (vc_map_covers(x, &b->to)) {
                    vc_map_load_error(ld, b, "already removed by "
                                      "fields[%zu]", i);
                    return VC_ERROR;
                }
            }

            continue;
        }

        if (x->segs[x->n - 1].append) {
            /* an append adds: nothing later replaces it */
            continue;
        }

        for (j = i + 1; j < map->nfields; j++) {
            b = &map->fields[j];

            reads = 0;

            if (b->kind == VC_MAP_OP_RENAME
                || (b->kind == VC_MAP_OP_SET && b->source == VC_MAP_SRC_FROM))
            {
                reads = vc_map_overlap(&b->from, x);

            } else if (b->kind == VC_MAP_OP_SET) {
                for (k = 0; k < b->nconcat; k++) {
                    reads |= vc_map_overlap(&b->concat[k], x);
                }
            }

            if (reads) {
                break;
            }

            certain = b->kind == VC_MAP_OP_REMOVE
                      || (b->kind == VC_MAP_OP_SET
                          && !b->to.segs[b->to.n - 1].append
                          && (b->source == VC_MAP_SRC_CONSTANT
                              || (b->has_default && b->to.nwild == 0)));

            if (certain && vc_map_covers(&b->to, x)) {
                vc_map_load_error(ld, b, "%s what fields[%zu] writes, and "
                                  "nothing reads it in between",
                                  b->kind == VC_MAP_OP_REMOVE
                                  ? "removes" : "overwrites", i);
                return VC_ERROR;
            }
        }
    }

    return VC_OK;
}


/* whether a and b may name one place, or one inside the other's */

static int
vc_map_overlap(const vc_map_path_t *a, const vc_map_path_t *b)
{
    size_t               i, n;
    const vc_map_seg_t  *p, *q;

    n = a->n < b->n ? a->n : b->n;

    for (i = 0; i < n; i++) {
        p = &a->segs[i];
        q = &b->segs[i];

        if (!p->wild && !q->wild
            && (p->len != q->len || memcmp(p->name, q->name, p->len) != 0))
        {
            return 0;
        }
    }

    return 1;
}


/* whether every place b names is a or inside a: a "*" of a covers all */

static int
vc_map_covers(const vc_map_path_t *a, const vc_map_path_t *b)
{
    size_t               i;
    const vc_map_seg_t  *p, *q;

    if (a->n > b->n) {
        return 0;
    }

    for (i = 0; i < a->n; i++) {
        p = &a->segs[i];
        q = &b->segs[i];

        if (p->wild) {
            continue;
        }

        if (q->wild || p->len != q->len
            || memcmp(p->name, q->name, p->len) != 0)
        {
            return 0;
        }
    }

    return 1;
}


/*
 * Whether s is an array index as RFC 6901 writes one: decimal digits
 * without a leading zero (but "0"), in *index.
 */
static int
vc_map_index(const char *s, size_t len, size_t *index)
{
    size_t  i, n;

    if (len == 0 || len > 15 || (s[0] == '0' && len > 1)) {
        return 0;
    }

    n = 0;

    for (i = 0; i < len; i++) {
        if (!vc_map_digit(s[i])) {
            return 0;
        }

        n = n * 10 + (size_t) (s[i] - '0');
    }

    *index = n;

    return 1;
}


/*
 * Parses a path once: a JSON pointer (RFC 6901) when it starts with '/',
 * else a dotted path.  A pointer's segments are unescaped ("~1" is '/',
 * "~0" is '~'), a decimal without leading zeros is also an index, "-" the
 * end of an array and "*" every element or member: whether those are
 * allowed is vc_map_path_check()'s business.  Returns VC_OK, VC_DECLINED
 * when v is not a path (an empty name, a bad escape, too many segments,
 * a NUL), or VC_ERROR.
 */
static int
vc_map_path(vc_map_path_t *path, json_t *v)
{
    char          *p, *d;
    size_t         i, n, len, start, seglen, idx;
    const char    *s;
    vc_map_seg_t  *segs, *g;
    unsigned       pointer;

    s = json_string_value(v);
    len = json_string_length(v);

    if (strlen(s) != len) {
        return VC_DECLINED;
    }

    pointer = (len > 0 && s[0] == '/');
    start = pointer ? 1 : 0;

    n = 1;

    for (i = start; i < len; i++) {
        if (s[i] == (pointer ? '/' : '.')) {
            n++;
        }
    }

    if (n > VC_MAP_PATH_MAX) {
        return VC_DECLINED;
    }

    segs = malloc(n * sizeof(vc_map_seg_t) + len + 1);
    if (segs == NULL) {
        return VC_ERROR;
    }

    memset(segs, 0, n * sizeof(vc_map_seg_t));
    p = (char *) (segs + n);

    n = 0;
    i = start;

    for ( ;; ) {
        /* one segment: from i to the next separator or the end */
        g = &segs[n++];
        g->name = p;
        d = p;

        for ( /* void */ ; i < len && s[i] != (pointer ? '/' : '.'); i++) {
            if (pointer && s[i] == '~') {
                if (i + 1 >= len || (s[i + 1] != '0' && s[i + 1] != '1')) {
                    free(segs);
                    return VC_DECLINED;
                }

                *d++ = s[++i] == '0' ? '~' : '/';
                continue;
            }

            *d++ = s[i];
        }

        *d++ = '\0';
        seglen = (size_t) (d - p) - 1;
        g->len = seglen;
        p = d;

        if (!pointer && seglen == 0) {
            free(segs);
            return VC_DECLINED;
        }

        idx = 0;

        if (pointer && vc_map_index(g->name, seglen, &idx)) {
            g->is_index = 1;
            g->index = idx;
        }

        if (pointer && seglen == 1 && g->name[0] == '*') {
            g->wild = 1;
            path->nwild++;
            path->scope = n;
        }

        if (pointer && seglen == 1 && g->name[0] == '-') {
            g->append = 1;
        }

        if (i >= len) {
            break;
        }

        i++;
    }

    path->segs = segs;
    path->n = n;
    path->text = s;
    path->pointer = pointer;

    return VC_OK;
}


static void
vc_map_path_free(vc_map_path_t *path)
{
    free(path->segs);
    path->segs = NULL;
}


/* the index of s in a NULL-terminated list, or -1 */

static int
vc_map_word(const char **words, const char *s)
{
    int  i;

    for (i = 0; words[i] != NULL; i++) {
        if (strcmp(words[i], s) == 0) {
            return i;
        }
    }

    return -1;
}


static void
vc_map_expected(char *buf, size_t size, const char **words)
{
    size_t  i, n;

    n = 0;
    buf[0] = '\0';

    for (i = 0; words[i] != NULL && n < size; i++) {
        n += snprintf(buf + n, size - n, "%s%s", i ? ", " : "", words[i]);
    }
}


static void
vc_map_load_error(vc_map_load_t *ld, const vc_map_field_t *f,
    const char *fmt, ...)
{
    int      n;
    size_t   used;
    va_list  ap;
    char     to[VC_MAP_ECHO_LEN];

    if (ld->errlen == 0) {
        return;
    }

    if (f == NULL) {
        n = snprintf(ld->err, ld->errlen, "%s: ", ld->file);

    } else if (f->to_text != NULL) {
        vc_map_echo(to, f->to_text, strlen(f->to_text), 0);
        n = snprintf(ld->err, ld->errlen, "%s: fields[%zu] (%s): ", ld->file,
                     f->index, to);

    } else {
        n = snprintf(ld->err, ld->errlen, "%s: fields[%zu]: ", ld->file,
                     f->index);
    }

    used = n < 0 ? 0 : (size_t) n;

    if (used >= ld->errlen) {
        return;
    }

    va_start(ap, fmt);
    vsnprintf(ld->err + used, ld->errlen - used, fmt, ap);
    va_end(ap);
}


int
vc_map_apply(const vc_map_t *map, json_t *in, json_t **out, char *err,
    size_t errlen)
{
    size_t           i;
    json_t          *o, *v;
    vc_map_errs_t    e;
    const vc_map_field_t  *f;

    *out = NULL;

    e.err = err;
    e.errlen = errlen;
    e.used = 0;
    e.nerrors = 0;
    e.binds = NULL;
    e.edit = 0;

    if (errlen) {
        err[0] = '\0';
    }

    if (!json_is_object(in)) {
        snprintf(err, errlen, "the record is not a JSON object");
        return VC_ERROR;
    }

    if (map->edit) {
        /* the record is left as it is: its copy is edited */
        o = json_deep_copy(in);
        if (o == NULL) {
            snprintf(err, errlen, "out of memory");
            return VC_ERROR;
        }

        if (vc_map_edit(map, o, &e) != VC_OK) {
            json_decref(o);
            return VC_ERROR;
        }

        *out = o;
        return VC_OK;
    }

    o = json_object();
    if (o == NULL) {
        snprintf(err, errlen, "out of memory");
        return VC_ERROR;
    }

    for (i = 0; i < map->nfields; i++) {
        f = &map->fields[i];

        v = vc_map_field_apply(f, in, &e);

        if (v == NULL) {
            /* absent and not required, or failed: e says which */
            continue;
        }

        if (e.nerrors == 0 && vc_map_set(o, &f->to, v) != VC_OK) {
            vc_map_fail(&e, f, NULL, "out of memory");

        } else if (e.nerrors) {
            json_decref(v);
        }
    }

    if (e.nerrors) {
        json_decref(o);
        return VC_ERROR;
    }

    *out = o;

    return VC_OK;
}


int
vc_map_edits(const vc_map_t *map)
{
    return map->edit;
}


int
vc_map_apply_doc(const vc_map_t *map, json_t *doc, json_t **out, char *err,
    size_t errlen)
{
    int            n;
    size_t         i, used;
    json_t        *a, *rec, *mapped;
    vc_map_errs_t  e;

    *out = NULL;

    if (errlen) {
        err[0] = '\0';
    }

    if (!json_is_object(doc) && !json_is_array(doc)) {
        snprintf(err, errlen, "the document is not a JSON object or array");
        return VC_ERROR;
    }

    if (map->edit) {
        e.err = err;
        e.errlen = errlen;
        e.used = 0;
        e.nerrors = 0;
        e.binds = NULL;
        e.edit = 0;

        if (vc_map_edit(map, doc, &e) != VC_OK) {
            return VC_ERROR;
        }

        *out = json_incref(doc);
        return VC_OK;
    }

    if (json_is_object(doc)) {
        return vc_map_apply(map, doc, out, err, errlen);
    }

    a = json_array();
    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return VC_ERROR;
    }

    json_array_foreach(doc, i, rec) {
        /* "[<i>] " first, the element's own message after it */
        used = 0;

        if (errlen) {
            n = snprintf(err, errlen, "[%zu] ", i);
            used = n < 0 ? 0 : (size_t) n < errlen ? (size_t) n : errlen - 1;
        }

        if (!json_is_object(rec)) {
            if (errlen) {
                snprintf(err + used, errlen - used, "not a JSON object");
            }

            json_decref(a);
            return VC_ERROR;
        }

        if (vc_map_apply(map, rec, &mapped, errlen ? err + used : NULL,
                         errlen - used)
            != VC_OK)
        {
            json_decref(a);
            return VC_ERROR;
        }

        if (json_array_append_new(a, mapped) != 0) {
            snprintf(err, errlen, "out of memory");
            json_decref(a);
            return VC_ERROR;
        }
    }

    if (errlen) {
        err[0] = '\0';
    }

    *out = a;

    return VC_OK;
}


/*
 * Runs the entries of an edit-mode map over doc, in order, each on what
 * the ones before it left.  Every entry is tried, so that e lists all the
 * document's problems; an entry that fails leaves its target as it was.
 * Returns VC_OK, or VC_ERROR when e holds a problem.
 */
static int
vc_map_edit(const vc_map_t *map, json_t *doc, vc_map_errs_t *e)
{
    size_t                 i;
    vc_map_edit_t          ed;
    vc_map_match_pt        match;
    const vc_map_path_t   *path;
    const vc_map_field_t  *f;

    ed.doc = doc;
    ed.e = e;
    e->edit = 1;

    for (i = 0; i < map->nfields; i++) {
        f = &map->fields[i];
        ed.f = f;

        switch (f->kind) {

        case VC_MAP_OP_REMOVE:
            vc_map_each(&ed, &f->to, 0, f->to.n, 0, NULL, NULL, doc,
                        vc_map_edit_remove);
            continue;

        case VC_MAP_OP_RENAME:
            e->binds = f->to.nwild ? ed.binds : NULL;
            vc_map_each(&ed, &f->from, 0, f->from.n, 0, NULL, NULL, doc,
                        vc_map_edit_rename);
            e->binds = NULL;
            continue;

        default:
            match = vc_map_edit_set;
        }

        if (f->to.nwild == 0) {
            vc_map_edit_set(&ed, NULL, NULL, NULL);
            continue;
        }

        /* each match of the source's "*" (a constant's: the target's) */
        path = f->source == VC_MAP_SRC_FROM ? &f->from
               : f->source == VC_MAP_SRC_CONCAT ? &f->concat[0] : &f->to;

        e->binds = ed.binds;
        vc_map_each(&ed, path, 0, path->scope, 0, NULL, NULL, doc, match);
        e->binds = NULL;
    }

    e->edit = 0;

    return e->nerrors ? VC_ERROR : VC_OK;
}


/*
 * Walks path's segments i to end from c, which parent holds at step at,
 * and calls match on each value found at end: a "*" (the w-th) tries
 * every element or member of its container, bound in ed->binds[w] for
 * the entry's other paths.  The containers a "*" goes through are held
 * while their elements are visited, so that an edit replacing one in its
 * own parent cannot free it under the walk; and only the elements there
 * were when the walk came are visited.  An element that match removes
 * (VC_DONE) is not skipped over: the next one takes its index.  Returns
 * what match returned when the path has no "*", else VC_OK.
 */
static int
vc_map_each(vc_map_edit_t *ed, const vc_map_path_t *path, size_t i,
    size_t end, size_t w, json_t *parent, const vc_map_step_t *at, json_t *c,
    vc_map_match_pt match)
{
    int                  rc;
    void                *it, *next;
    size_t               j, n, gone, index;
    json_t              *v;
    vc_map_step_t        step, *b;
    const vc_map_seg_t  *g;

    for ( /* void */ ; i < end; i++) {
        g = &path->segs[i];

        if (g->wild) {
            break;
        }

        v = vc_map_child(c, g, NULL);
        if (v == NULL) {
            return VC_OK;
        }

        vc_map_bind(&step, g->name, g->len, g->index);
        step.is_index = g->is_index;

        parent = c;
        at = &step;
        c = v;
    }

    if (i == end) {
        return match(ed, parent, at, c);
    }

    b = &ed->binds[w];
    n = json_is_array(c) ? json_array_size(c) : json_object_size(c);

    if (n == 0) {
        return VC_OK;
    }

    json_incref(c);

    if (json_is_array(c)) {
        gone = 0;

        for (j = 0; j < n && j - gone < json_array_size(c); j++) {
            /* bound to the index it had; found where it is now */
            b->key = b->num;
            b->len = (size_t) snprintf(b->num, sizeof(b->num), "%zu", j);
            b->index = j;
            b->is_index = 1;

            step = *b;
            step.index = j - gone;

            rc = vc_map_each(ed, path, i + 1, end, w + 1, c, &step,
                             json_array_get(c, j - gone), match);

            if (rc == VC_DONE && i + 1 == end) {
                gone++;
            }
        }

    } else {
        it = json_object_iter(c);

        for (j = 0; j < n && it != NULL; j++) {
            /* the next first: match may remove this member */
            next = json_object_iter_next(c, it);

            b->key = json_object_iter_key(it);
            b->len = json_object_iter_key_len(it);
            index = 0;
            b->is_index = vc_map_index(b->key, b->len, &index);
            b->index = index;

            vc_map_each(ed, path, i + 1, end, w + 1, c, b,
                        json_object_iter_value(it), match);

            it = next;
        }
    }

    json_decref(c);

    return VC_OK;
}


/* a set at one match (or once, without "*"): as vc_map_apply() maps */

static int
vc_map_edit_set(vc_map_edit_t *ed, json_t *parent, const vc_map_step_t *at,
    json_t *v)
{
    json_t  *r;

    r = vc_map_field_apply(ed->f, ed->doc, ed->e);

    if (r == NULL) {
        /* absent, and the target left as it is; or failed */
        return VC_OK;
    }

    return vc_map_write(ed, &ed->f->to, r);
}


static int
vc_map_edit_remove(vc_map_edit_t *ed, json_t *parent, const vc_map_step_t *at,
    json_t *v)
{
    if (json_is_object(parent)) {
        json_object_deln(parent, at->key, at->len);

    } else {
        json_array_remove(parent, at->index);
    }

    return VC_DONE;
}


/*
 * The value is written at its target first, and then taken from where it
 * was, if it is still there: a rename onto an ancestor (/a/b to /a) has
 * replaced its old place, and a move to the end of its own array
 * (/a/0 to /a/-) must find it where it was.
 */
static int
vc_map_edit_rename(vc_map_edit_t *ed, json_t *parent, const vc_map_step_t *at,
    json_t *v)
{
    int      rc;
    json_t  *cur;

    json_incref(parent);

    if (vc_map_write(ed, &ed->f->to, json_incref(v)) != VC_OK) {
        json_decref(parent);
        return VC_OK;
    }

    rc = VC_OK;

    if (json_is_object(parent)) {
        cur = json_object_getn(parent, at->key, at->len);

        if (cur == v) {
            json_object_deln(parent, at->key, at->len);
            rc = VC_DONE;
        }

    } else {
        cur = json_array_get(parent, at->index);

        if (cur == v) {
            json_array_remove(parent, at->index);
            rc = VC_DONE;
        }
    }

    json_decref(parent);

    return rc;
}


/*
 * Writes v (a reference it takes) at path, its "*" bound by ed: missing
 * members on the way become objects; an array is entered by an existing
 * index only, and "-" appends at the end.  Anything else fails the entry
 * with a message, as does a value written inside itself.
 */
static int
vc_map_write(vc_map_edit_t *ed, const vc_map_path_t *path, json_t *v)
{
    int                   rc;
    size_t                i, w, len, index;
    json_t               *c, *child;
    unsigned              is_index, append;
    const char           *key;
    const vc_map_seg_t   *g;
    const vc_map_step_t  *b;
    char                  where[VC_MAP_ECHO_LEN + 2];
    char                  seg[VC_MAP_ECHO_LEN];

    c = ed->doc;
    w = 0;

    for (i = 0; i < path->n; i++) {
        g = &path->segs[i];
        b = g->wild ? &ed->binds[w++] : NULL;

        if (c == v) {
            vc_map_pointer(where, sizeof(where), path, i, ed->binds);
            vc_map_fail(ed->e, ed->f, NULL, "cannot move \"%s\" inside "
                        "itself", where);
            json_decref(v);
            return VC_ERROR;
        }

        key = b ? b->key : g->name;
        len = b ? b->len : g->len;
        is_index = b ? b->is_index : g->is_index;
        index = b ? b->index : g->index;
        append = b ? 0 : g->append;

        if (json_is_object(c)) {
            if (i + 1 == path->n) {
                rc = json_object_setn_new(c, key, len, v);
                goto done;
            }

            child = json_object_getn(c, key, len);

            if (child == NULL) {
                child = json_object();

                if (json_object_setn_new(c, key, len, child) != 0) {
                    json_decref(v);
                    vc_map_fail(ed->e, ed->f, NULL, "out of memory");
                    return VC_ERROR;
                }
            }

            c = child;
            continue;
        }

        /* the place named in a message: the document is a root array */
        if (i == 0) {
            snprintf(where, sizeof(where), "the document");

        } else {
            where[0] = '"';
            vc_map_pointer(where + 1, sizeof(where) - 2, path, i, ed->binds);
            strcat(where, "\"");
        }

        if (!json_is_array(c)) {
            vc_map_fail(ed->e, ed->f, NULL, "cannot write inside %s, %s",
                        where, vc_map_kind(c));
            json_decref(v);
            return VC_ERROR;
        }

        if (append && i + 1 == path->n) {
            rc = json_array_append_new(c, v);
            goto done;
        }

        if (!is_index || index >= json_array_size(c)) {
            vc_map_echo(seg, key, len, 0);

            if (is_index) {
                vc_map_fail(ed->e, ed->f, NULL, "the array %s has no "
                            "element %s: it has %zu", where, seg,
                            json_array_size(c));
            } else {
                vc_map_fail(ed->e, ed->f, NULL, "%s is an array, and "
                            "\"%s\" %s", where, seg,
                            append ? "appends only at the end of the path"
                                   : "is not an index");
            }

            json_decref(v);
            return VC_ERROR;
        }

        if (i + 1 == path->n) {
            rc = json_array_set_new(c, index, v);
            goto done;
        }

        c = json_array_get(c, index);
    }

    /* not reached: a path has at least one segment */
    json_decref(v);
    return VC_ERROR;

done:

    if (rc != 0) {
        vc_map_fail(ed->e, ed->f, NULL, "out of memory");
        return VC_ERROR;
    }

    return VC_OK;
}


/* a step by a segment's name (or index): no copy, the name is the map's */

static void
vc_map_bind(vc_map_step_t *b, const char *key, size_t len, size_t index)
{
    b->key = key;
    b->len = len;
    b->index = index;
    b->is_index = 0;
}


/*
 * The JSON pointer of path's first n segments, its "*" bound, escaped
 * and cut as vc_map_echo() cuts, for a message.
 */
static void
vc_map_pointer(char *dst, size_t size, const vc_map_path_t *path, size_t n,
    const vc_map_step_t *binds)
{
    char                 buf[VC_MAP_ECHO_MAX + 64];
    size_t               i, j, k, w, len;
    const char          *key;
    const vc_map_seg_t  *g;

    k = 0;
    w = 0;

    for (i = 0; i < n && k < sizeof(buf); i++) {
        g = &path->segs[i];

        if (g->wild && binds != NULL) {
            key = binds[w].key;
            len = binds[w++].len;

        } else {
            key = g->name;
            len = g->len;
        }

        buf[k++] = '/';

        for (j = 0; j < len && k + 2 <= sizeof(buf); j++) {
            if (key[j] == '~' || key[j] == '/') {
                buf[k++] = '~';
                buf[k++] = key[j] == '~' ? '0' : '1';
            } else {
                buf[k++] = key[j];
            }
        }
    }

    if (k >= sizeof(buf)) {
        k = sizeof(buf) - 1;
    }

    if (size >= VC_MAP_ECHO_LEN) {
        vc_map_echo(dst, buf, k, 0);
    } else if (size) {
        dst[0] = '\0';
    }
}


/* what a value is, for a message */

static const char *
vc_map_kind(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}


/*
 * One field of one record: its value, a new reference, or NULL when it is
 * absent and not required (nothing written) or when it failed (e holds
 * why).
 */
static json_t *
vc_map_field_apply(const vc_map_field_t *f, json_t *in, vc_map_errs_t *e)
{
    size_t   i;
    json_t  *v, *w;
    char     names[VC_MAP_ECHO_LEN];

    switch (f->source) {

    case VC_MAP_SRC_CONSTANT:
        v = json_deep_copy(f->constant);
        if (v == NULL) {
            vc_map_fail(e, f, NULL, "out of memory");
        }

        return v;

    case VC_MAP_SRC_CONCAT:
        v = vc_map_concat(f, in, e);
        if (v == NULL) {
            return NULL;
        }

        break;

    default:
        v = vc_map_resolve(in, &f->from, e->binds);

        /*
         * In edit mode the value stays in the document: a scalar, which
         * nothing changes in place, may be shared, but a container is
         * copied, or a later entry would edit it in two places (or in
         * itself, when written inside itself)
         */
        if (v == NULL) {
            v = json_null();

        } else if (e->edit && !json_is_object(v) && !json_is_array(v)) {
            v = json_incref(v);

        } else {
            v = json_deep_copy(v);
        }

        if (v == NULL) {
            vc_map_fail(e, f, NULL, "out of memory");
            return NULL;
        }

        if (f->split && !vc_map_absent(v)) {
            w = vc_map_split(f, v, e);
            json_decref(v);

            if (w == NULL) {
                return NULL;
            }

            v = w;
        }
    }

    if (f->ntransforms) {
        w = vc_map_transform(f, v);
        json_decref(v);

        if (w == NULL) {
            vc_map_fail(e, f, NULL, "out of memory");
            return NULL;
        }

        v = w;
    }

    if (vc_map_absent(v)) {
        json_decref(v);

        if (f->has_default) {
            v = json_deep_copy(f->def);
            if (v == NULL) {
                vc_map_fail(e, f, NULL, "out of memory");
            }

            return v;
        }

        if (!f->required) {
            return NULL;
        }

        if (f->source == VC_MAP_SRC_FROM) {
            vc_map_echo(names, f->from.text, strlen(f->from.text), 0);

            if (f->split) {
                vc_map_fail(e, f, NULL, "required, but \"%s\" has no part "
                            "to take", names);
            } else {
                vc_map_fail(e, f, NULL, "required, but \"%s\" is missing or "
                            "empty", names);
            }

            return NULL;
        }

        vc_map_fail(e, f, NULL, "required, but all of");

        for (i = 0; i < f->nconcat; i++) {
            vc_map_echo(names, f->concat[i].text, strlen(f->concat[i].text),
                        0);
            vc_map_fail(e, NULL, NULL, "%s\"%s\"", i ? ", " : " ", names);
        }

        vc_map_fail(e, NULL, NULL, " are missing or empty");

        return NULL;
    }

    if (f->lookup) {
        w = vc_map_lookup(f, v, e);
        json_decref(v);

        if (w == NULL || json_is_null(w)) {
            /* a table's null clears the target: nothing to convert */
            return w;
        }

        v = w;
    }

    if (f->type != VC_MAP_TYPE_NONE) {
        w = vc_map_convert(f, v, e);
        json_decref(v);

        if (w == NULL) {
            return NULL;
        }

        v = w;
    }

    if (f->mask != VC_MAP_MASK_NONE) {
        w = vc_map_apply_mask(f, v);
        json_decref(v);

        if (w == NULL) {
            vc_map_fail(e, f, NULL, "out of memory");
            return NULL;
        }

        v = w;
    }

    return v;
}


/*
 * A borrowed reference, or NULL when a segment is missing on the way; the
 * path's "*" take binds in order.
 */
static json_t *
vc_map_resolve(json_t *in, const vc_map_path_t *path,
    const vc_map_step_t *binds)
{
    size_t               i, w;
    const vc_map_seg_t  *g;

    w = 0;

    for (i = 0; i < path->n && in != NULL; i++) {
        g = &path->segs[i];
        in = vc_map_child(in, g, g->wild ? &binds[w++] : NULL);
    }

    return in;
}


/*
 * The member or element of c a segment names, b being its binding when it
 * is a "*"; NULL when there is none.  Only a pointer's segments index
 * arrays, and "-" (past the end) never reads one.
 */
static json_t *
vc_map_child(json_t *c, const vc_map_seg_t *g, const vc_map_step_t *b)
{
    if (json_is_object(c)) {
        return b ? json_object_getn(c, b->key, b->len)
                 : json_object_getn(c, g->name, g->len);
    }

    if (json_is_array(c)) {
        if (b) {
            return b->is_index ? json_array_get(c, b->index) : NULL;
        }

        return g->is_index ? json_array_get(c, g->index) : NULL;
    }

    return NULL;
}


/* absent and empty parts are left out, and their separators with them */

static json_t *
vc_map_concat(const vc_map_field_t *f, json_t *in, vc_map_errs_t *e)
{
    char     *buf, *s, *p;
    size_t    i, len, slen, n;
    json_t   *v;
    unsigned  failed;

    buf = NULL;
    len = 0;
    n = 0;
    failed = 0;

    for (i = 0; i < f->nconcat; i++) {
        v = vc_map_resolve(in, &f->concat[i], e->binds);

        if (vc_map_absent(v)) {
            continue;
        }

        if (json_is_object(v) || json_is_array(v)) {
            vc_map_fail(e, f, v, "in \"%s\" is not text", f->concat[i].text);
            failed = 1;
            continue;
        }

        s = vc_map_text(v, &slen);
        if (s == NULL) {
            vc_map_fail(e, f, NULL, "out of memory");
            free(buf);
            return NULL;
        }

        p = realloc(buf, len + (n ? f->sep_len : 0) + slen + 1);
        if (p == NULL) {
            vc_map_fail(e, f, NULL, "out of memory");
            free(s);
            free(buf);
            return NULL;
        }

        buf = p;

        if (n) {
            memcpy(buf + len, f->sep, f->sep_len);
            len += f->sep_len;
        }

        memcpy(buf + len, s, slen);
        len += slen;
        n++;

        free(s);
    }

    if (failed) {
        free(buf);
        return NULL;
    }

    v = buf ? json_stringn_nocheck(buf, len) : json_null();
    free(buf);

    if (v == NULL) {
        vc_map_fail(e, f, NULL, "out of memory");
    }

    return v;
}


/*
 * The part of a string the field takes: pieces are what lies between
 * separators, empty ones dropped, so that repeated or surrounding
 * separators count once.  A part that does not exist is null (absent).
 */
static json_t *
vc_map_split(const vc_map_field_t *f, json_t *v, vc_map_errs_t *e)
{
    const char  *s, *end, *p, *q;
    const char  *starts[2], *ends[2];
    size_t       len, n, want;
    json_t      *r;

    if (!json_is_string(v)) {
        vc_map_fail(e, f, v, "is not text, so it cannot be split");
        return NULL;
    }

    s = json_string_value(v);
    len = json_string_length(v);
    end = s + len;

    /*
     * One pass: count the pieces, and keep the first and the last two
     * boundaries; an indexed part is found in the same pass.
     */

    n = 0;
    want = f->part >= 0 ? (size_t) f->part : (size_t) -1;
    starts[0] = starts[1] = ends[0] = ends[1] = NULL;
    r = NULL;

    for (p = s; p < end; p = q + f->sep_len) {
        q = memmem(p, end - p, f->sep, f->sep_len);
        if (q == NULL) {
            q = end;
        }

        if (q > p) {
            if (n == want) {
                r = json_stringn_nocheck(p, q - p);
                goto done;
            }

            if (n == 0) {
                starts[0] = p;
                ends[0] = q;
            }

            /* [1]: the last piece seen; ends[0] stays the first's end */
            starts[1] = p;
            ends[1] = q;
            n++;
        }

        if (q == end) {
            break;
        }
    }

    if (n == 0 || f->part >= 0) {
        return json_null();
    }

    switch (f->part) {

    case VC_MAP_PART_FIRST:
        r = json_stringn_nocheck(starts[0], ends[0] - starts[0]);
        break;

    case VC_MAP_PART_LAST:
        r = json_stringn_nocheck(starts[1], ends[1] - starts[1]);
        break;

    default:
        /* the pieces after the first, or before the last, joined by sep */
        if (n == 1) {
            return json_null();
        }

        {
            char        *buf, *b;
            const char  *from, *to;
            size_t       i, k;

            if (f->part == VC_MAP_PART_AFTER_FIRST) {
                from = ends[0];
                to = end;
                k = 1;

            } else {
                from = s;
                to = starts[1];
                k = 0;
            }

            buf = malloc(to - from + 1);
            if (buf == NULL) {
                break;
            }

            b = buf;
            i = 0;

            for (p = s; p < end; p = q + f->sep_len) {
                q = memmem(p, end - p, f->sep, f->sep_len);
                if (q == NULL) {
                    q = end;
                }

                if (q > p) {
                    if (i >= k && i < k + n - 1) {
                        if (b > buf) {
                            memcpy(b, f->sep, f->sep_len);
                            b += f->sep_len;
                        }

                        memcpy(b, p, q - p);
                        b += q - p;
                    }

                    i++;
                }

                if (q == end) {
                    break;
                }
            }

            r = json_stringn_nocheck(buf, b - buf);
            free(buf);
        }
    }

done:

    if (r == NULL) {
        vc_map_fail(e, f, NULL, "out of memory");
    }

    return r;
}


/* string operations, in the order given; other values pass unchanged */

static json_t *
vc_map_transform(const vc_map_field_t *f, json_t *v)
{
    char    *s;
    size_t   i, j, k, len;
    json_t  *r;

    if (!json_is_string(v)) {
        return json_incref(v);
    }

    len = json_string_length(v);
    s = malloc(len + 1);
    if (s == NULL) {
        return NULL;
    }

    memcpy(s, json_string_value(v), len);

    for (k = 0; k < f->ntransforms; k++) {

        switch (f->transforms[k]) {

        case VC_MAP_TR_TRIM:
            for (i = 0; i < len && vc_map_space(s[i]); i++) {
                /* void */
            }

            while (len > i && vc_map_space(s[len - 1])) {
                len--;
            }

            memmove(s, s + i, len - i);
            len -= i;
            break;

        case VC_MAP_TR_LOWER:
            for (i = 0; i < len; i++) {
                if (s[i] >= 'A' && s[i] <= 'Z') {
                    s[i] += 'a' - 'A';
                }
            }

            break;

        case VC_MAP_TR_UPPER:
            for (i = 0; i < len; i++) {
                if (s[i] >= 'a' && s[i] <= 'z') {
                    s[i] -= 'a' - 'A';
                }
            }

            break;

        default: /* VC_MAP_TR_COLLAPSE */
            for (i = 0, j = 0; i < len; i++) {
                if (vc_map_space(s[i])) {
                    if (j > 0 && s[j - 1] == ' ') {
                        continue;
                    }

                    s[j++] = ' ';
                    continue;
                }

                s[j++] = s[i];
            }

            len = j;
        }
    }

    /* ASCII changes only: the UTF-8 that jansson checked stays valid */
    r = json_stringn_nocheck(s, len);
    free(s);

    return r;
}


static json_t *
vc_map_lookup(const vc_map_field_t *f, json_t *v, vc_map_errs_t *e)
{
    char    *key;
    size_t   len;
    json_t  *r;

    if (json_is_object(v) || json_is_array(v)) {
        vc_map_fail(e, f, v, "cannot be looked up");
        return NULL;
    }

    key = vc_map_text(v, &len);
    if (key == NULL) {
        vc_map_fail(e, f, NULL, "out of memory");
        return NULL;
    }

    r = json_object_getn(f->lookup, key, len);
    free(key);

    if (r == NULL) {
        if (!f->has_lookup_default) {
            vc_map_fail(e, f, v, "is not in the lookup table");
            return NULL;
        }

        r = f->lookup_default;
    }

    r = json_deep_copy(r);
    if (r == NULL) {
        vc_map_fail(e, f, NULL, "out of memory");
    }

    return r;
}


static json_t *
vc_map_convert(const vc_map_field_t *f, json_t *v, vc_map_errs_t *e)
{
    json_t  *r;

    switch (f->type) {

    case VC_MAP_TYPE_STRING:
        if (json_is_object(v) || json_is_array(v) || json_is_null(v)) {
            vc_map_fail(e, f, v, "is not a string");
            return NULL;
        }

        r = vc_map_to_string(v);
        break;

    case VC_MAP_TYPE_NUMBER:
    case VC_MAP_TYPE_INTEGER:
        return vc_map_to_number(f, v, e);

    case VC_MAP_TYPE_BOOLEAN:
        return vc_map_to_boolean(f, v, e);

    case VC_MAP_TYPE_DATE:
    case VC_MAP_TYPE_DATETIME:
        return vc_map_to_date(f, v, e);

    default: /* VC_MAP_TYPE_PHONE */
        return vc_map_to_phone(f, v, e);
    }

    if (r == NULL) {
        vc_map_fail(e, f, NULL, "out of memory");
    }

    return r;
}


/* a scalar as a JSON string: numbers as JSON writes them */

static json_t *
vc_map_to_string(json_t *v)
{
    char    *s;
    size_t   len;
    json_t  *r;

    if (json_is_string(v)) {
        return json_incref(v);
    }

    s = vc_map_text(v, &len);
    if (s == NULL) {
        return NULL;
    }

    r = json_stringn_nocheck(s, len);
    free(s);

    return r;
}


static json_t *
vc_map_to_number(const vc_map_field_t *f, json_t *v, vc_map_errs_t *e)
{
    int          range;
    double       d;
    json_t      *n, *r;
    const char  *what;

    what = f->type == VC_MAP_TYPE_INTEGER ? "an integer" : "a number";

    if (json_is_number(v)) {
        n = json_incref(v);

    } else if (json_is_string(v)) {
        n = vc_map_parse_number(json_string_value(v), json_string_length(v),
                                &range);
        if (n == NULL) {
            vc_map_fail(e, f, v, range ? "is out of range" : "is not %s",
                        what);
            return NULL;
        }

    } else {
        vc_map_fail(e, f, v, "is not %s", what);
        return NULL;
    }

    if (f->type == VC_MAP_TYPE_INTEGER && json_is_real(n)) {
        d = json_real_value(n);

        if (d != floor(d) || fabs(d) > VC_MAP_EXACT_MAX) {
            vc_map_fail(e, f, v, "is not an integer");
            json_decref(n);
            return NULL;
        }

        json_decref(n);
        n = json_integer((json_int_t) d);

        if (n == NULL) {
            vc_map_fail(e, f, NULL, "out of memory");
            return NULL;
        }
    }

    if (!f->out_string) {
        return n;
    }

    r = vc_map_to_string(n);
    json_decref(n);

    if (r == NULL) {
        vc_map_fail(e, f, NULL, "out of memory");
    }

    return r;
}


static json_t *
vc_map_to_boolean(const vc_map_field_t *f, json_t *v, vc_map_errs_t *e)
{
    int          b, i;
    size_t       len;
    json_t      *r;
    const char  *s;

    static const char  *words[] = { "false", "true", "no", "yes", "0", "1",
                                    NULL };

    b = -1;

    if (json_is_boolean(v)) {
        b = json_is_true(v);

    } else if (json_is_integer(v)) {
        if (json_integer_value(v) == 0 || json_integer_value(v) == 1) {
            b = (int) json_integer_value(v);
        }

    } else if (json_is_string(v)) {
        s = json_string_value(v);
        len = json_string_length(v);
        vc_map_trim(&s, &len);

        for (i = 0; words[i] != NULL; i++) {
            if (strlen(words[i]) == len && strncasecmp(s, words[i], len) == 0)
            {
                b = i % 2;
                break;
            }
        }
    }

    if (b < 0) {
        vc_map_fail(e, f, v, "is not a boolean (true, false, yes, no, 1, 0)");
        return NULL;
    }

    if (!f->out_string) {
        return json_boolean(b);
    }

    r = json_string(b ? "true" : "false");
    if (r == NULL) {
        vc_map_fail(e, f, NULL, "out of memory");
    }

    return r;
}


static json_t *
vc_map_to_date(const vc_map_field_t *f, json_t *v, vc_map_errs_t *e)
{
    size_t    i, n;
    int64_t   ms;
    json_t   *r;
    char      formats[VC_MAP_FORMATS_MAX * 70];

    for (i = 0; i < f->nin; i++) {
        if (vc_map_time_in(&f->in[i], v, &ms) == VC_OK) {
            break;
        }
    }

    if (i == f->nin) {
        n = 0;

        for (i = 0; i < f->nin; i++) {
            n += snprintf(formats + n, sizeof(formats) - n, "%s%s",
                          i ? ", " : "", f->in[i].text);
        }

        vc_map_fail(e, f, v, "is not a %s in format_in %s",
                    f->type == VC_MAP_TYPE_DATE ? "date" : "date-time",
                    formats);
        return NULL;
    }

    if (f->type == VC_MAP_TYPE_DATE) {
        /* an instant's day in UTC */
        ms = vc_map_floor_div(ms, VC_MAP_DAY_MS) * VC_MAP_DAY_MS;
    }

    r = vc_map_time_out(f, ms);
    if (r == NULL) {
        vc_map_fail(e, f, NULL, "out of memory");
    }

    return r;
}


static json_t *
vc_map_to_phone(const vc_map_field_t *f, json_t *v, vc_map_errs_t *e)
{
    int      rc;
    char    *s, out[96];
    size_t   len;
    json_t  *r;

    if (!json_is_string(v) && !json_is_integer(v)) {
        vc_map_fail(e, f, v, "is not a phone number");
        return NULL;
    }

    s = vc_map_text(v, &len);
    if (s == NULL) {
        vc_map_fail(e, f, NULL, "out of memory");
        return NULL;
    }

    rc = vc_map_phone(f->region, s, len, out, sizeof(out));
    free(s);

    if (rc != VC_OK) {
        vc_map_fail(e, f, v, "%s", out);
        return NULL;
    }

    r = json_string(out);
    if (r == NULL) {
        vc_map_fail(e, f, NULL, "out of memory");
    }

    return r;
}


/*
 * full: every character but ASCII punctuation and spaces becomes '*', so
 * that "123-45-6789" reads "***-**-****"; last4: the same, but the last
 * four of those characters stay when there are at least eight of them;
 * email_domain: the local part becomes one '*', the domain stays, and a
 * value that is no address is masked in full; pii: vc_mask() over the
 * text.  Non-string values are masked as their JSON text.
 */
static json_t *
vc_map_apply_mask(const vc_map_field_t *f, json_t *v)
{
    char           *s, *m, *at, *own, buf[256];
    size_t          len, i, j, n, keep, k;
    json_t         *r;
    unsigned char   c;

    /*
     * A body's masks run on every request: a string is read where it is
     * and a short one masked on the stack; only pii, which masks in
     * place, and a non-string's text need a copy
     */
    if (json_is_string(v) && f->mask != VC_MAP_MASK_PII) {
        s = (char *) json_string_value(v);
        len = json_string_length(v);
        own = NULL;

    } else {
        s = vc_map_text(v, &len);
        if (s == NULL) {
            return NULL;
        }

        own = s;
    }

    if (f->mask == VC_MAP_MASK_PII) {
        vc_mask((unsigned char *) s, len);
        vc_map_utf8_repair((unsigned char *) s, len);
        r = json_stringn(s, len);
        free(own);
        return r;
    }

    if (f->mask == VC_MAP_MASK_EMAIL) {
        at = len ? memrchr(s, '@', len) : NULL;

        if (at != NULL && at > s && at + 1 < s + len
            && memchr(at + 1, '\0', s + len - at - 1) == NULL)
        {
            r = json_pack("s+", "*", at);
            free(own);
            return r;
        }
    }

    /* code points to mask: all but ASCII punctuation and spaces */

    n = 0;

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if ((c & 0xc0) == 0x80) {
            continue;
        }

        if (c < 0x80 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
                          || (c >= 'A' && c <= 'Z')))
        {
            continue;
        }

        n++;
    }

    keep = (f->mask == VC_MAP_MASK_LAST4 && n >= 8) ? 4 : 0;

    m = len < sizeof(buf) ? buf : malloc(len + 1);
    if (m == NULL) {
        free(own);
        return NULL;
    }

    k = 0;

    for (i = 0, j = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if ((c & 0xc0) == 0x80) {
            /* a continuation byte: part of the code point before it */
            if (k > n - keep) {
                m[j++] = s[i];
            }

            continue;
        }

        if (c < 0x80 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
                          || (c >= 'A' && c <= 'Z')))
        {
            m[j++] = s[i];
            continue;
        }

        k++;
        m[j++] = k > n - keep ? s[i] : '*';
    }

    r = json_stringn(m, j);

    if (m != buf) {
        free(m);
    }

    free(own);

    return r;
}


/* creates the objects on the way; load made sure nothing is in the way */

static int
vc_map_set(json_t *out, const vc_map_path_t *path, json_t *v)
{
    size_t   i;
    json_t  *o;

    for (i = 0; i + 1 < path->n; i++) {
        o = json_object_get(out, path->segs[i].name);

        if (o == NULL) {
            o = json_object();

            if (json_object_set_new(out, path->segs[i].name, o) != 0) {
                json_decref(v);
                return VC_ERROR;
            }
        }

        out = o;
    }

    return json_object_set_new(out, path->segs[i].name, v) == 0 ? VC_OK
                                                               : VC_ERROR;
}


static int
vc_map_absent(json_t *v)
{
    return v == NULL || json_is_null(v)
           || (json_is_string(v) && json_string_length(v) == 0);
}


/*
 * A scalar as text: a string as it is, an integer in decimal, a real in the
 * fewest digits that read back the same, true, false, null.  malloc()ed,
 * NUL-terminated, its length in *len; NULL when out of memory.
 */
static char *
vc_map_text(json_t *v, size_t *len)
{
    char  *s;

    if (json_is_string(v)) {
        *len = json_string_length(v);
        s = malloc(*len + 1);

        if (s != NULL) {
            memcpy(s, json_string_value(v), *len);
            s[*len] = '\0';
        }

        return s;
    }

    if (json_is_real(v)) {
        s = vc_map_real_text(json_real_value(v));

    } else {
        s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    }

    if (s != NULL) {
        *len = strlen(s);
    }

    return s;
}


/*
 * Reads a decimal number, [+-]digits[.digits][(e|E)[+-]digits], leading
 * and trailing white space ignored, no thousands separators: as an integer
 * when it has neither fraction nor exponent, else as a real.  jansson does
 * the conversion, which is exact and locale-free.  Returns a new
 * reference, or NULL with *range set when the syntax was right but the
 * value does not fit.
 */
static json_t *
vc_map_parse_number(const char *s, size_t len, int *range)
{
    char          *buf, *b;
    size_t         i;
    json_t        *n;
    json_error_t   jerr;

    *range = 0;

    vc_map_trim(&s, &len);

    if (len == 0 || len > 400) {
        return NULL;
    }

    buf = malloc(len + 2);
    if (buf == NULL) {
        return NULL;
    }

    b = buf;
    i = 0;

    if (s[0] == '+' || s[0] == '-') {
        if (s[0] == '-') {
            *b++ = '-';
        }

        i++;
    }

    if (i == len || !vc_map_digit(s[i])) {
        goto invalid;
    }

    /* leading zeros, which JSON refuses, are dropped: "007" is 7 */
    while (i + 1 < len && s[i] == '0' && vc_map_digit(s[i + 1])) {
        i++;
    }

    while (i < len && vc_map_digit(s[i])) {
        *b++ = s[i++];
    }

    if (i < len && s[i] == '.') {
        *b++ = s[i++];

        if (i == len || !vc_map_digit(s[i])) {
            goto invalid;
        }

        while (i < len && vc_map_digit(s[i])) {
            *b++ = s[i++];
        }
    }

    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        *b++ = s[i++];

        if (i < len && (s[i] == '+' || s[i] == '-')) {
            *b++ = s[i++];
        }

        if (i == len || !vc_map_digit(s[i])) {
            goto invalid;
        }

        while (i < len && vc_map_digit(s[i])) {
            *b++ = s[i++];
        }
    }

    if (i != len) {
        goto invalid;
    }

    n = json_loadb(buf, b - buf, JSON_DECODE_ANY, &jerr);
    free(buf);

    /* the syntax is JSON's: only a value too large is refused */
    if (n == NULL) {
        *range = 1;
    }

    return n;

invalid:

    free(buf);
    return NULL;
}


/* the fewest significant digits, up to 17, that read back as d */

static char *
vc_map_real_text(double d)
{
    int      prec;
    char    *s;
    json_t  *v, *back;

    v = json_real(d);
    if (v == NULL) {
        return NULL;
    }

    s = NULL;

    for (prec = 15; prec <= 17; prec++) {
        free(s);
        s = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(prec));

        if (s == NULL) {
            break;
        }

        back = json_loads(s, JSON_DECODE_ANY, NULL);

        if (back != NULL && json_is_real(back) && json_real_value(back) == d)
        {
            json_decref(back);
            break;
        }

        json_decref(back);
    }

    json_decref(v);

    return s;
}


/* an instant from one input format, in ms since the epoch */

static int
vc_map_time_in(const vc_map_datefmt_t *fmt, json_t *v, int64_t *ms)
{
    size_t       len;
    const char  *s;

    switch (fmt->kind) {

    case VC_MAP_FMT_EPOCH_S:
        return vc_map_time_epoch(v, 1000, ms);

    case VC_MAP_FMT_EPOCH_MS:
        return vc_map_time_epoch(v, 1, ms);

    case VC_MAP_FMT_MIDNIGHT_MS:
        if (vc_map_time_epoch(v, 1, ms) != VC_OK || *ms % VC_MAP_DAY_MS != 0)
        {
            return VC_ERROR;
        }

        return VC_OK;

    default:
        break;
    }

    if (!json_is_string(v)) {
        return VC_ERROR;
    }

    s = json_string_value(v);
    len = json_string_length(v);
    vc_map_trim(&s, &len);

    if (fmt->kind == VC_MAP_FMT_ISO) {
        return vc_map_time_iso(s, len, ms);
    }

    return vc_map_time_pattern(fmt->text, s, len, ms);
}


/* reads n digits exactly */

static int
vc_map_digits(const char **p, const char *end, size_t n, unsigned *v)
{
    size_t  i;

    *v = 0;

    for (i = 0; i < n; i++) {
        if (*p >= end || !vc_map_digit(**p)) {
            return VC_ERROR;
        }

        *v = *v * 10 + (unsigned) (*(*p)++ - '0');
    }

    return VC_OK;
}


static unsigned
vc_map_mdays(int64_t y, unsigned m)
{
    static const unsigned char  mdays[] = {
        31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
    };

    if (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) {
        return 29;
    }

    return mdays[m - 1];
}


/* the instant of a civil time minus an offset, if valid and in range */

static int
vc_map_time_make(int64_t *ms, unsigned y, unsigned mo, unsigned d,
    unsigned h, unsigned mi, unsigned sec, unsigned frac, int offset)
{
    int64_t  t;

    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > vc_map_mdays(y, mo)
        || h > 23 || mi > 59 || sec > 59)
    {
        return VC_ERROR;
    }

    t = vc_map_days(y, mo, d) * VC_MAP_DAY_MS
        + ((int64_t) h * 3600 + mi * 60 + sec) * 1000 + frac
        - (int64_t) offset * 60000;

    if (t < VC_MAP_MS_MIN || t > VC_MAP_MS_MAX) {
        return VC_ERROR;
    }

    *ms = t;

    return VC_OK;
}


/* milliseconds from 1 to 9 digits of a fraction; the rest dropped */

static int
vc_map_fraction(const char **p, const char *end, unsigned *frac)
{
    size_t  n;

    *frac = 0;

    for (n = 0; *p < end && vc_map_digit(**p); n++, (*p)++) {
        if (n < 3) {
            *frac = *frac * 10 + (unsigned) (**p - '0');
        }
    }

    if (n == 0 || n > 9) {
        return VC_ERROR;
    }

    for ( /* void */ ; n < 3; n++) {
        *frac *= 10;
    }

    return VC_OK;
}


/* Z, +hh:mm, +hhmm or +hh, in minutes east of UTC */

static int
vc_map_offset(const char **p, const char *end, int *offset)
{
    int       sign;
    unsigned  h, m;

    if (*p < end && (**p == 'Z' || **p == 'z')) {
        (*p)++;
        *offset = 0;
        return VC_OK;
    }

    if (*p >= end || (**p != '+' && **p != '-')) {
        return VC_ERROR;
    }

    sign = **p == '-' ? -1 : 1;
    (*p)++;

    if (vc_map_digits(p, end, 2, &h) != VC_OK) {
        return VC_ERROR;
    }

    m = 0;

    if (*p < end && **p == ':') {
        (*p)++;

        if (vc_map_digits(p, end, 2, &m) != VC_OK) {
            return VC_ERROR;
        }

    } else if (*p < end && vc_map_digit(**p)
               && vc_map_digits(p, end, 2, &m) != VC_OK)
    {
        return VC_ERROR;
    }

    if (h > 23 || m > 59) {
        return VC_ERROR;
    }

    *offset = sign * (int) (h * 60 + m);

    return VC_OK;
}


/*
 * ISO 8601 as RFC 3339 profiles it: YYYY-MM-DD, or YYYY-MM-DDThh:mm[:ss
 * [.fraction]] with 'T', 't' or ' ' between, and then an offset, which a
 * date-time must have (Salesforce's "+0000" without the colon included).
 */
static int
vc_map_time_iso(const char *s, size_t len, int64_t *ms)
{
    int          offset;
    unsigned     y, mo, d, h, mi, sec, frac;
    const char  *p, *end;

    p = s;
    end = s + len;
    h = mi = sec = frac = 0;
    offset = 0;

    if (vc_map_digits(&p, end, 4, &y) != VC_OK || p >= end || *p++ != '-'
        || vc_map_digits(&p, end, 2, &mo) != VC_OK || p >= end
        || *p++ != '-' || vc_map_digits(&p, end, 2, &d) != VC_OK)
    {
        return VC_ERROR;
    }

    if (p < end) {
        if (*p != 'T' && *p != 't' && *p != ' ') {
            return VC_ERROR;
        }

        p++;

        if (vc_map_digits(&p, end, 2, &h) != VC_OK || p >= end
            || *p++ != ':' || vc_map_digits(&p, end, 2, &mi) != VC_OK)
        {
            return VC_ERROR;
        }

        if (p < end && *p == ':') {
            p++;

            if (vc_map_digits(&p, end, 2, &sec) != VC_OK) {
                return VC_ERROR;
            }

            if (p < end && (*p == '.' || *p == ',')) {
                p++;

                if (vc_map_fraction(&p, end, &frac) != VC_OK) {
                    return VC_ERROR;
                }
            }
        }

        if (vc_map_offset(&p, end, &offset) != VC_OK || p != end) {
            return VC_ERROR;
        }
    }

    return vc_map_time_make(ms, y, mo, d, h, mi, sec, frac, offset);
}


/* a pattern checked at load: without %z, the time is UTC */

static int
vc_map_time_pattern(const char *pat, const char *s, size_t len, int64_t *ms)
{
    int          offset;
    unsigned     y, mo, d, h, mi, sec, frac, *dst;
    const char  *p, *end;

    p = s;
    end = s + len;
    y = mo = d = h = mi = sec = frac = 0;
    offset = 0;

    for ( /* void */ ; *pat; pat++) {
        if (*pat != '%' || pat[1] == '%') {
            if (p >= end || *p != *pat) {
                return VC_ERROR;
            }

            p++;
            pat += *pat == '%';
            continue;
        }

        pat++;

        switch (*pat) {

        case 'Y':
            if (vc_map_digits(&p, end, 4, &y) != VC_OK) {
                return VC_ERROR;
            }

            continue;

        case 'f':
            if (vc_map_fraction(&p, end, &frac) != VC_OK) {
                return VC_ERROR;
            }

            continue;

        case 'z':
            if (vc_map_offset(&p, end, &offset) != VC_OK) {
                return VC_ERROR;
            }

            continue;

        case 'm': dst = &mo; break;
        case 'd': dst = &d; break;
        case 'H': dst = &h; break;
        case 'M': dst = &mi; break;
        default:  dst = &sec; break;
        }

        /* one or two digits */
        if (p >= end || !vc_map_digit(*p)) {
            return VC_ERROR;
        }

        *dst = (unsigned) (*p++ - '0');

        if (p < end && vc_map_digit(*p)) {
            *dst = *dst * 10 + (unsigned) (*p++ - '0');
        }
    }

    if (p != end) {
        return VC_ERROR;
    }

    return vc_map_time_make(ms, y, mo, d, h, mi, sec, frac, offset);
}


/*
 * A count of units since the epoch: a JSON integer, an integral real, or a
 * string of digits with an optional '-'.
 */
static int
vc_map_time_epoch(json_t *v, int64_t unit, int64_t *ms)
{
    int64_t      n;
    double       d;
    size_t       len, i;
    unsigned     neg;
    const char  *s;

    if (json_is_integer(v)) {
        n = json_integer_value(v);

    } else if (json_is_real(v)) {
        d = json_real_value(v);

        if (d != floor(d) || fabs(d) > VC_MAP_EXACT_MAX) {
            return VC_ERROR;
        }

        n = (int64_t) d;

    } else if (json_is_string(v)) {
        s = json_string_value(v);
        len = json_string_length(v);
        vc_map_trim(&s, &len);

        neg = len > 0 && s[0] == '-';
        i = neg;

        /* 16 digits: past any date of years 1 to 9999 in ms */
        if (len == i || len - i > 16) {
            return VC_ERROR;
        }

        for (n = 0; i < len; i++) {
            if (!vc_map_digit(s[i])) {
                return VC_ERROR;
            }

            n = n * 10 + (s[i] - '0');
        }

        if (neg) {
            n = -n;
        }

    } else {
        return VC_ERROR;
    }

    if (n < VC_MAP_MS_MIN / unit || n > VC_MAP_MS_MAX / unit) {
        return VC_ERROR;
    }

    *ms = n * unit;

    return VC_OK;
}


static json_t *
vc_map_time_out(const vc_map_field_t *f, int64_t ms)
{
    char  buf[256];

    switch (f->out.kind) {

    case VC_MAP_FMT_EPOCH_S:
        return json_integer(vc_map_floor_div(ms, 1000));

    case VC_MAP_FMT_EPOCH_MS:
    case VC_MAP_FMT_MIDNIGHT_MS:
        return json_integer(ms);

    case VC_MAP_FMT_ISO:
        if (f->type == VC_MAP_TYPE_DATE) {
            vc_map_time_format(buf, sizeof(buf), "%Y-%m-%d", ms);

        } else if (ms % 1000 != 0) {
            vc_map_time_format(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S.%fZ", ms);

        } else {
            vc_map_time_format(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", ms);
        }

        return json_string(buf);

    default:
        vc_map_time_format(buf, sizeof(buf), f->out.text, ms);
        return json_string(buf);
    }
}


/* writes ms, in UTC, by a pattern checked at load (at most 64 bytes) */

static size_t
vc_map_time_format(char *buf, size_t size, const char *p, int64_t ms)
{
    int64_t   days, t, y;
    size_t    n;
    unsigned  mo, d;
    int       w;

    days = vc_map_floor_div(ms, VC_MAP_DAY_MS);
    t = ms - days * VC_MAP_DAY_MS;
    vc_map_civil(days, &y, &mo, &d);

    n = 0;

    for ( /* void */ ; *p && n + 1 < size; p++) {
        if (*p != '%') {
            buf[n++] = *p;
            continue;
        }

        p++;

        switch (*p) {
        case 'Y':
            w = snprintf(buf + n, size - n, "%04" PRId64, y);
            break;
        case 'm':
            w = snprintf(buf + n, size - n, "%02u", mo);
            break;
        case 'd':
            w = snprintf(buf + n, size - n, "%02u", d);
            break;
        case 'H':
            w = snprintf(buf + n, size - n, "%02u",
                         (unsigned) (t / 3600000));
            break;
        case 'M':
            w = snprintf(buf + n, size - n, "%02u",
                         (unsigned) (t / 60000 % 60));
            break;
        case 'S':
            w = snprintf(buf + n, size - n, "%02u",
                         (unsigned) (t / 1000 % 60));
            break;
        case 'f':
            w = snprintf(buf + n, size - n, "%03u", (unsigned) (t % 1000));
            break;
        case 'z':
            w = snprintf(buf + n, size - n, "+0000");
            break;
        default: /* '%' */
            w = snprintf(buf + n, size - n, "%%");
        }

        if (w < 0 || (size_t) w >= size - n) {
            break;
        }

        n += (size_t) w;
    }

    buf[n] = '\0';

    return n;
}


/*
 * Days since 1970-01-01 of a proleptic Gregorian date, and back: Howard
 * Hinnant's days_from_civil() and civil_from_days(), exact for any year
 * here and free of timegm() and the time zone.
 */
static int64_t
vc_map_days(int64_t y, unsigned m, unsigned d)
{
    int64_t   era;
    unsigned  yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned) (y - era * 400);
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + (int64_t) doe - 719468;
}


static void
vc_map_civil(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t   era;
    unsigned  doe, yoe, doy, mp;

    days += 719468;
    era = (days >= 0 ? days : days - 146096) / 146097;
    doe = (unsigned) (days - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;

    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t) yoe + era * 400 + (*m <= 2);
}


static int64_t
vc_map_floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}


/*
 * Reads a phone number into E.164, "+<country code><national number>".
 * Formatting (spaces, - . / and parentheses) is dropped; '+', "00", or
 * "011" in a +1 region, start an international number; anything else is
 * national to region, whose trunk prefix 0 (or, in +1, leading 1) is
 * dropped, or whose country code is when the digits are too long for a
 * national number and fit one after it.  The national significant number
 * of a country in the table must have a length of its plan (and, in +1,
 * an area code and an exchange that start with 2-9 and no N11 area code);
 * any other country code is only held to E.164's 15 digits and a plausible
 * minimum of 7.  Returns VC_OK with the number in out, or VC_ERROR with
 * why not in out.
 */
static int
vc_map_phone(const vc_map_region_t *region, const char *s, size_t len,
    char *out, size_t size)
{
    char                    digits[24], *nsn;
    size_t                  i, n, nlen, cclen;
    unsigned                plus;
    const vc_map_region_t  *r;

    vc_map_trim(&s, &len);

    plus = len > 0 && s[0] == '+';
    n = 0;

    for (i = plus; i < len; i++) {
        if (vc_map_digit(s[i])) {
            if (n == sizeof(digits) - 1) {
                snprintf(out, size, "has too many digits for a phone number");
                return VC_ERROR;
            }

            digits[n++] = s[i];
            continue;
        }

        if (s[i] != ' ' && s[i] != '-' && s[i] != '.' && s[i] != '('
            && s[i] != ')' && s[i] != '/')
        {
            n = 0;
            break;
        }
    }

    if (n == 0) {
        snprintf(out, size, "is not a phone number");
        return VC_ERROR;
    }

    digits[n] = '\0';

    if (!plus) {
        if (n > 2 && digits[0] == '0' && digits[1] == '0') {
            plus = 2;

        } else if (region != NULL && region->nanp && n > 3
                   && memcmp(digits, "011", 3) == 0)
        {
            plus = 3;
        }

        if (plus) {
            memmove(digits, digits + plus, n - plus + 1);
            n -= plus;
        }
    }

    if (plus) {
        r = vc_map_region_by_cc(digits, n);

        if (r == NULL) {
            if (digits[0] == '0' || n < 7 || n > VC_MAP_E164_MAX) {
                snprintf(out, size, "has the wrong number of digits for a "
                         "phone number");
                return VC_ERROR;
            }

            snprintf(out, size, "+%s", digits);
            return VC_OK;
        }

        nsn = digits + strlen(r->cc);
        nlen = n - strlen(r->cc);

        /* "+44 (0)20 ...": the trunk prefix kept in an international form */
        if (r->trunk0 && nlen > 0 && nsn[0] == '0') {
            nsn++;
            nlen--;
        }

    } else {
        if (region == NULL) {
            snprintf(out, size, "has no country code, and the field has no "
                     "default_region");
            return VC_ERROR;
        }

        r = region;
        nsn = digits;
        nlen = n;
        cclen = strlen(r->cc);

        if (r->nanp && nlen == 11 && nsn[0] == '1') {
            nsn++;
            nlen--;

        } else if (r->trunk0 && nlen > 0 && nsn[0] == '0') {
            nsn++;
            nlen--;

        } else if ((nlen < r->min || nlen > r->max) && nlen > cclen
                   && nlen - cclen >= r->min && nlen - cclen <= r->max
                   && memcmp(nsn, r->cc, cclen) == 0)
        {
            /* "447700900123": the country code without its '+', which
             * is all these digits can be */
            nsn += cclen;
            nlen -= cclen;
        }
    }

    if (nlen < r->min || nlen > r->max) {
        snprintf(out, size, "has the wrong number of digits for +%s", r->cc);
        return VC_ERROR;
    }

    if (!vc_map_nsn_valid(r, nsn, nlen)) {
        snprintf(out, size, "is not a possible number for +%s", r->cc);
        return VC_ERROR;
    }

    snprintf(out, size, "+%s%s", r->cc, nsn);

    return VC_OK;
}


static const vc_map_region_t *
vc_map_region_by_cc(const char *digits, size_t n)
{
    size_t  i, len;

    for (i = 0; vc_map_regions[i].region != NULL; i++) {
        len = strlen(vc_map_regions[i].cc);

        if (len <= n && memcmp(digits, vc_map_regions[i].cc, len) == 0) {
            return &vc_map_regions[i];
        }
    }

    return NULL;
}


static int
vc_map_nsn_valid(const vc_map_region_t *r, const char *nsn, size_t n)
{
    if (nsn[0] == '0') {
        return 0;
    }

    if (r->nanp) {
        /* NXX-NXX-XXXX, and N11 is a service code, not an area code */
        return nsn[0] >= '2' && nsn[3] >= '2'
               && !(nsn[1] == '1' && nsn[2] == '1');
    }

    return 1;
}


/*
 * vc_mask() works on bytes, so it may have starred part of a multi-byte
 * character: what is left of it becomes '*' too.
 */
static void
vc_map_utf8_repair(unsigned char *p, size_t len)
{
    size_t  i, j, n;

    for (i = 0; i < len; i += n) {
        n = 1;

        if (p[i] < 0x80) {
            continue;
        }

        n = (p[i] & 0xe0) == 0xc0 ? 2 : (p[i] & 0xf0) == 0xe0 ? 3
            : (p[i] & 0xf8) == 0xf0 ? 4 : 0;

        for (j = 1; n && j < n; j++) {
            if (i + j >= len || (p[i + j] & 0xc0) != 0x80) {
                n = 0;
            }
        }

        if (n == 0) {
            /* the lead byte went, or this is a stray continuation byte */
            p[i] = '*';
            n = 1;
        }
    }
}


static void
vc_map_trim(const char **s, size_t *len)
{
    while (*len > 0 && vc_map_space((*s)[0])) {
        (*s)++;
        (*len)--;
    }

    while (*len > 0 && vc_map_space((*s)[*len - 1])) {
        (*len)--;
    }
}


/*
 * Appends a problem to e: "fields[i] (to): <value> <text>", "; " before
 * all but the first.  v, when given, is quoted as vc_map_echo() does, or
 * named "the value" when the field is masked.  With f NULL, the text is
 * appended to the problem before it.
 */
static void
vc_map_fail(vc_map_errs_t *e, const vc_map_field_t *f, json_t *v,
    const char *fmt, ...)
{
    int      n;
    char     to[VC_MAP_ECHO_LEN], val[VC_MAP_ECHO_LEN + 8];
    char     at[VC_MAP_ECHO_LEN + 8];
    va_list  ap;

    if (e->errlen == 0 || e->used + 1 >= e->errlen) {
        e->nerrors += f != NULL;
        return;
    }

    if (f != NULL) {
        vc_map_echo(to, f->to_text, strlen(f->to_text), 0);

        /* an edit's match is named by its target, "*" bound */
        at[0] = '\0';

        if (e->binds != NULL && f->to.nwild) {
            memcpy(at, " at ", 4);
            vc_map_pointer(at + 4, sizeof(at) - 4, &f->to, f->to.n,
                           e->binds);
        }

        if (v == NULL) {
            val[0] = '\0';

        } else if (f->mask != VC_MAP_MASK_NONE) {
            snprintf(val, sizeof(val), "the value ");

        } else {
            vc_map_describe(val, sizeof(val), v);
        }

        n = snprintf(e->err + e->used, e->errlen - e->used,
                     "%sfields[%zu] (%s)%s: %s", e->nerrors ? "; " : "",
                     f->index, to, at, val);

        e->nerrors++;

        if (n < 0 || (size_t) n >= e->errlen - e->used) {
            e->used = e->errlen - 1;
            return;
        }

        e->used += (size_t) n;
    }

    va_start(ap, fmt);
    n = vsnprintf(e->err + e->used, e->errlen - e->used, fmt, ap);
    va_end(ap);

    if (n < 0 || (size_t) n >= e->errlen - e->used) {
        e->used = e->errlen - 1;
        return;
    }

    e->used += (size_t) n;
}


/* a record's value for a message, followed by a space */

static void
vc_map_describe(char *dst, size_t size, json_t *v)
{
    char    *s, q[VC_MAP_ECHO_LEN];
    size_t   len;

    if (json_is_object(v)) {
        snprintf(dst, size, "an object ");
        return;
    }

    if (json_is_array(v)) {
        snprintf(dst, size, "an array ");
        return;
    }

    s = vc_map_text(v, &len);
    if (s == NULL) {
        snprintf(dst, size, "the value ");
        return;
    }

    vc_map_echo(q, s, len, 1);
    free(s);

    if (json_is_string(v)) {
        snprintf(dst, size, "\"%s\" ", q);
    } else {
        snprintf(dst, size, "%s ", q);
    }
}


/*
 * Copies at most VC_MAP_ECHO_MAX bytes of s into dst (VC_MAP_ECHO_LEN
 * bytes), cut at a UTF-8 boundary and followed by "..." when cut, with '"',
 * '\' and control bytes escaped.  With mask, the text is first passed
 * through vc_mask(), over a margin beyond the cut, so that a number cut in
 * two is still masked as the whole number would be.
 */
static void
vc_map_echo(char *dst, const char *s, size_t len, int mask)
{
    size_t          i, n, cut;
    unsigned char   c, buf[VC_MAP_ECHO_MAX + 64];

    n = len < sizeof(buf) ? len : sizeof(buf);
    memcpy(buf, s, n);

    if (mask) {
        vc_mask(buf, n);
    }

    cut = len;

    if (cut > VC_MAP_ECHO_MAX) {
        cut = VC_MAP_ECHO_MAX;

        while (cut > 0 && (buf[cut] & 0xc0) == 0x80) {
            cut--;
        }
    }

    for (i = 0; i < cut; i++) {
        c = buf[i];

        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
            if (c == '"' || c == '\\') {
                *dst++ = '\\';
                *dst++ = (char) c;
            } else {
                dst += sprintf(dst, "\\x%02x", c);
            }

            continue;
        }

        *dst++ = (char) c;
    }

    if (cut < len) {
        memcpy(dst, "...", 3);
        dst += 3;
    }

    *dst = '\0';
}
