/* test_vc_map.c -- field mappings: each operation, each error, the examples */

/*
 * Mappings and records are written with single quotes, which q() turns
 * into double quotes, so that the JSON reads as JSON; expected messages
 * are written as they are.  The example mappings are read from
 * conf/mappings/, relative to the repository's root, where `make unit`
 * runs the tests.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vc_map.h"


#define ERRLEN  2048


/* s with every ' made ", in a static buffer of one of four slots */
static const char *
q(const char *s)
{
    static char  bufs[4][8192];
    static int   slot;
    char        *b;
    size_t       i;

    b = bufs[slot++ % 4];
    assert_true(strlen(s) < sizeof(bufs[0]));

    for (i = 0; s[i]; i++) {
        b[i] = s[i] == '\'' ? '"' : s[i];
    }

    b[i] = '\0';

    return b;
}


static json_t *
parse(const char *s)
{
    json_t        *v;
    json_error_t   jerr;

    v = json_loads(q(s), JSON_DECODE_ANY, &jerr);
    if (v == NULL) {
        print_error("bad test JSON: %s: %s\n", q(s), jerr.text);
        fail();
    }

    return v;
}


/* a mapping of the given fields, loaded (it must be valid) */
static vc_map_t *
load(const char *fields)
{
    char       doc[8192], err[ERRLEN];
    vc_map_t  *map;

    snprintf(doc, sizeof(doc), "{\"name\": \"t\", \"from\": \"a.A\", "
             "\"to\": \"b.B\", \"fields\": [%s]}", q(fields));

    map = vc_map_load("m.json", doc, strlen(doc), err, sizeof(err));
    if (map == NULL) {
        print_error("load failed: %s\n", err);
        fail();
    }

    return map;
}


/* maps in with one map of fields: out must equal want */
static void
check(const char *fields, const char *in, const char *want)
{
    int        rc;
    char       err[ERRLEN], *got;
    json_t    *i, *w, *o;
    vc_map_t  *map;

    map = load(fields);
    i = parse(in);
    w = parse(want);

    rc = vc_map_apply(map, i, &o, err, sizeof(err));
    if (rc != VC_OK) {
        print_error("%s\n  on %s: %s\n", q(fields), q(in), err);
        fail();
    }

    assert_string_equal(err, "");

    if (!json_equal(o, w)) {
        got = json_dumps(o, JSON_COMPACT);
        print_error("%s\n  on %s\n  gave   %s\n  wanted %s\n", q(fields),
                    q(in), got, q(want));
        free(got);
        fail();
    }

    json_decref(o);
    json_decref(i);
    json_decref(w);
    vc_map_free(map);
}


/* maps in with one map of fields: it must fail with exactly want */
static void
check_fails(const char *fields, const char *in, const char *want)
{
    char       err[ERRLEN];
    json_t    *i, *o;
    vc_map_t  *map;

    map = load(fields);
    i = parse(in);
    o = (json_t *) 1;

    assert_int_equal(vc_map_apply(map, i, &o, err, sizeof(err)), VC_ERROR);
    assert_null(o);

    if (strcmp(err, want) != 0) {
        print_error("%s\n  on %s\n  said   %s\n  wanted %s\n", q(fields),
                    q(in), err, want);
        fail();
    }

    json_decref(i);
    vc_map_free(map);
}


/* {"to": "x", "from": "v", <opts>} maps {"v": <in>} to {"x": <want>} */
static void
conv(const char *opts, const char *in, const char *want)
{
    char  fields[4096], rec[4096], out[4096];

    snprintf(fields, sizeof(fields), "{'to': 'x', 'from': 'v'%s%s}",
             opts[0] ? ", " : "", opts);
    snprintf(rec, sizeof(rec), "{'v': %s}", in);
    snprintf(out, sizeof(out), "{'x': %s}", want);

    check(fields, rec, out);
}


static void
conv_fails(const char *opts, const char *in, const char *want)
{
    char  fields[4096], rec[4096];

    snprintf(fields, sizeof(fields), "{'to': 'x', 'from': 'v'%s%s}",
             opts[0] ? ", " : "", opts);
    snprintf(rec, sizeof(rec), "{'v': %s}", in);

    check_fails(fields, rec, want);
}


/* a whole document must be refused with exactly want */
static void
bad_doc(const char *doc, const char *want)
{
    char       err[ERRLEN];
    vc_map_t  *map;

    doc = q(doc);
    map = vc_map_load("m.json", doc, strlen(doc), err, sizeof(err));

    if (map != NULL) {
        print_error("loaded: %s\n", doc);
        vc_map_free(map);
        fail();
    }

    if (strcmp(err, want) != 0) {
        print_error("%s\n  said   %s\n  wanted %s\n", doc, err, want);
        fail();
    }
}


/* fields must be refused with exactly "m.json: " want */
static void
bad(const char *fields, const char *want)
{
    char  doc[8192], w[ERRLEN];

    snprintf(doc, sizeof(doc), "{'name': 't', 'from': 'a.A', 'to': 'b.B', "
             "'fields': [%s]}", fields);
    snprintf(w, sizeof(w), "m.json: %s", want);

    bad_doc(doc, w);
}


static void
test_rename_and_paths(void **state)
{
    check("{'to': 'email', 'from': 'Email'}", "{'Email': 'a@b.c'}",
          "{'email': 'a@b.c'}");

    /* dotted paths on both sides; objects made on the way */
    check("{'to': 'properties.city', 'from': 'Mailing.City'},"
          "{'to': 'properties.geo.zip', 'from': 'Mailing.Zip'},"
          "{'to': 'company', 'from': 'Account.Name'}",
          "{'Mailing': {'City': 'Lyon', 'Zip': '69001'},"
          " 'Account': {'Name': 'Acme'}}",
          "{'properties': {'city': 'Lyon', 'geo': {'zip': '69001'}},"
          " 'company': 'Acme'}");

    /* missing on the way, or through a non-object: absent, left out */
    check("{'to': 'company', 'from': 'Account.Name'}",
          "{'Account': null}", "{}");
    check("{'to': 'company', 'from': 'Account.Name'}",
          "{'Account': 'Acme'}", "{}");
    check("{'to': 'company', 'from': 'Account.Name'}", "{}", "{}");

    /* values of any kind pass as they are */
    check("{'to': 'a', 'from': 'A'}, {'to': 'b', 'from': 'B'},"
          "{'to': 'c', 'from': 'C'}, {'to': 'd', 'from': 'D'}",
          "{'A': 12, 'B': false, 'C': [1, 'x'], 'D': {'k': 1.5}}",
          "{'a': 12, 'b': false, 'c': [1, 'x'], 'd': {'k': 1.5}}");

    /* null and "" are absent */
    check("{'to': 'a', 'from': 'A'}, {'to': 'b', 'from': 'B'}",
          "{'A': null, 'B': ''}", "{}");

    /* a member whose name holds a dot is not reachable by a path */
    check("{'to': 'a', 'from': 'x.y'}", "{'x.y': 1}", "{}");
}


static void
test_output_shares_nothing(void **state)
{
    char       err[ERRLEN];
    json_t    *in, *out;
    vc_map_t  *map;

    map = load("{'to': 'a', 'from': 'A'}, {'to': 'k', 'constant': {'n': 1}}");
    in = parse("{'A': {'deep': [1, 2]}}");

    assert_int_equal(vc_map_apply(map, in, &out, err, sizeof(err)), VC_OK);

    /* changing the output changes neither the record nor the map */
    json_array_append_new(json_object_get(json_object_get(out, "a"), "deep"),
                          json_integer(3));
    json_object_set_new(json_object_get(out, "k"), "n", json_integer(2));

    assert_int_equal(json_array_size(json_object_get(
                         json_object_get(in, "A"), "deep")), 2);
    json_decref(out);

    assert_int_equal(vc_map_apply(map, in, &out, err, sizeof(err)), VC_OK);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(out, "k"), "n")), 1);

    json_decref(out);
    json_decref(in);
    vc_map_free(map);
}


static void
test_constant(void **state)
{
    check("{'to': 'lifecyclestage', 'constant': 'customer'}", "{}",
          "{'lifecyclestage': 'customer'}");
    check("{'to': 'a', 'constant': 3}, {'to': 'b', 'constant': null},"
          "{'to': 'c.d', 'constant': {'e': [true]}},"
          "{'to': 'f', 'constant': '', 'note': 'clears f'}",
          "{'a': 'ignored'}",
          "{'a': 3, 'b': null, 'c': {'d': {'e': [true]}}, 'f': ''}");
}


static void
test_default_and_required(void **state)
{
    conv("'default': 'n/a'", "'x'", "'x'");
    conv("'default': 'n/a'", "null", "'n/a'");
    conv("'default': 'n/a'", "''", "'n/a'");
    check("{'to': 'x', 'from': 'v', 'default': 'n/a'}", "{}",
          "{'x': 'n/a'}");

    /* a default is written as it is, not converted */
    conv("'type': 'phone_e164', 'default': 'none'", "null", "'none'");
    conv("'default': null", "''", "null");

    /* white space trimmed away is absent too */
    conv("'transform': 'trim', 'default': '?'", "'   '", "'?'");

    conv("'required': true", "'x'", "'x'");
    check("{'to': 'x', 'from': 'v', 'required': false}", "{}", "{}");

    conv_fails("'required': true", "null",
               "fields[0] (x): required, but \"v\" is missing or empty");
    conv_fails("'required': true, 'transform': 'trim'", "' '",
               "fields[0] (x): required, but \"v\" is missing or empty");
    check_fails("{'to': 'email', 'from': 'Email', 'required': true}", "{}",
                "fields[0] (email): required, but \"Email\" is missing or "
                "empty");
}


static void
test_transforms(void **state)
{
    conv("'transform': 'trim'", "' \\t a b \\r\\n'", "'a b'");
    conv("'transform': ['trim', 'lowercase']", "'  Jane.Doe@Example.COM '",
         "'jane.doe@example.com'");
    conv("'transform': 'uppercase'", "'gb-eng'", "'GB-ENG'");
    conv("'transform': 'collapse_spaces'", "' Mary \\t Ann  Smith '",
         "' Mary Ann Smith '");
    conv("'transform': ['collapse_spaces', 'trim']", "' Mary \\t Ann  Smith '",
         "'Mary Ann Smith'");

    /* ASCII only, so that no locale is involved: UTF-8 stays as it is */
    conv("'transform': 'lowercase'", "'\xc3\x89""COLE'", "'\xc3\x89""cole'");
    conv("'transform': 'uppercase'", "'stra\xc3\x9f""e'",
         "'STRA\xc3\x9f""E'");

    /* other values pass unchanged */
    conv("'transform': ['trim', 'uppercase']", "12", "12");
    conv("'transform': 'trim'", "true", "true");
}


static void
test_concat(void **state)
{
    check("{'to': 'full_name', 'concat': ['FirstName', 'LastName'],"
          " 'sep': ' '}",
          "{'FirstName': 'Jane', 'LastName': 'Doe'}",
          "{'full_name': 'Jane Doe'}");

    /* sep defaults to a space; absent parts leave no separator behind */
    check("{'to': 'n', 'concat': ['A', 'B', 'C']}",
          "{'A': 'Jane', 'B': null, 'C': 'Doe'}", "{'n': 'Jane Doe'}");
    check("{'to': 'n', 'concat': ['A', 'B', 'C']}",
          "{'B': '', 'C': 'Doe'}", "{'n': 'Doe'}");
    check("{'to': 'n', 'concat': ['A', 'B'], 'sep': ''}",
          "{'A': 'ab', 'B': 'cd'}", "{'n': 'abcd'}");
    check("{'to': 'addr', 'concat': ['S.Line1', 'S.Line2', 'City'],"
          " 'sep': ', '}",
          "{'S': {'Line1': '1 Main St', 'Line2': 'Suite 4'},"
          " 'City': 'Springfield'}",
          "{'addr': '1 Main St, Suite 4, Springfield'}");

    /* scalars as text */
    check("{'to': 'n', 'concat': ['A', 'B', 'C'], 'sep': '/'}",
          "{'A': 12, 'B': 2.5, 'C': true}", "{'n': '12/2.5/true'}");

    /* then transforms, default, required */
    check("{'to': 'n', 'concat': ['A', 'B'], 'transform': 'uppercase'}",
          "{'A': 'x', 'B': 'y'}", "{'n': 'X Y'}");
    check("{'to': 'n', 'concat': ['A', 'B']}", "{}", "{}");
    check("{'to': 'n', 'concat': ['A', 'B'], 'default': '-'}", "{}",
          "{'n': '-'}");
    check_fails("{'to': 'full_name', 'concat': ['FirstName', 'LastName'],"
                " 'required': true}", "{'FirstName': ''}",
                "fields[0] (full_name): required, but all of \"FirstName\", "
                "\"LastName\" are missing or empty");
    check_fails("{'to': 'n', 'concat': ['A', 'B']}",
                "{'A': 'x', 'B': {'k': 1}}",
                "fields[0] (n): an object in \"B\" is not text");
}


static void
test_split(void **state)
{
    const char  *name = "'  Mary  Ann   Smith '";

    conv("'split': {'sep': ' ', 'part': 'first'}", name, "'Mary'");
    conv("'split': {'part': 'last'}", name, "'Smith'");
    conv("'split': {'part': 'after_first'}", name, "'Ann Smith'");
    conv("'split': {'part': 'before_last'}", name, "'Mary Ann'");
    conv("'split': {'part': 0}", name, "'Mary'");
    conv("'split': {'part': 1}", name, "'Ann'");
    conv("'split': {'part': 2}", name, "'Smith'");
    check("{'to': 'x', 'from': 'v', 'split': {'part': 3}}",
          "{'v': '  Mary  Ann   Smith '}", "{}");

    /* one piece: it is the first and the last; nothing after or before */
    conv("'split': {'part': 'first'}", "'Madonna'", "'Madonna'");
    conv("'split': {'part': 'last'}", "'Madonna'", "'Madonna'");
    check("{'to': 'x', 'from': 'v', 'split': {'part': 'after_first'}}",
          "{'v': 'Madonna'}", "{}");
    check("{'to': 'x', 'from': 'v', 'split': {'part': 'before_last'},"
          " 'default': '[none]'}", "{'v': 'Madonna'}", "{'x': '[none]'}");
    check("{'to': 'x', 'from': 'v', 'split': {'part': 'first'}}",
          "{'v': '   '}", "{}");

    /* other separators, several bytes long */
    conv("'split': {'sep': ', ', 'part': 'first'}", "'Doe, Jane'", "'Doe'");
    conv("'split': {'sep': ', ', 'part': 'after_first'}",
         "'Doe, Jane, Q'", "'Jane, Q'");
    conv("'split': {'sep': '\xe2\x80\x94', 'part': 'last'}",
         "'a\xe2\x80\x94\xe2\x80\x94""b'", "'b'");

    /* the pieces, then transforms */
    conv("'split': {'part': 'last'}, 'transform': 'uppercase'",
         "'Jane Doe'", "'DOE'");

    /* first and last name from one field, as two entries */
    check("{'to': 'firstname', 'from': 'Name', 'split': {'part': 'first'}},"
          "{'to': 'lastname', 'from': 'Name',"
          " 'split': {'part': 'after_first'}, 'required': true}",
          "{'Name': 'Jane van Dyke'}",
          "{'firstname': 'Jane', 'lastname': 'van Dyke'}");
    check_fails("{'to': 'lastname', 'from': 'Name',"
                " 'split': {'part': 'after_first'}, 'required': true}",
                "{'Name': 'Cher'}",
                "fields[0] (lastname): required, but \"Name\" has no part "
                "to take");

    conv_fails("'split': {'part': 'first'}", "42",
               "fields[0] (x): 42 is not text, so it cannot be split");
}


static void
test_lookup(void **state)
{
    const char  *t = "'lookup': {'Open': 'NEW', 'Working': 'IN_PROGRESS',"
                     " '1': 'ONE', 'true': 'YES', '2.5': 'HALF',"
                     " 'Gone': null}";
    char         opts[512];

    conv(t, "'Open'", "'NEW'");
    conv(t, "'Working'", "'IN_PROGRESS'");
    conv(t, "1", "'ONE'");
    conv(t, "true", "'YES'");
    conv(t, "2.5", "'HALF'");

    /* null in the table: written, with no conversion after it */
    snprintf(opts, sizeof(opts), "%s, 'type': 'boolean'", t);
    conv(opts, "'Gone'", "null");

    /* exact match; transforms come first */
    conv_fails(t, "'open'",
               "fields[0] (x): \"open\" is not in the lookup table");
    conv("'transform': 'trim', 'lookup': {'Open': 'NEW'}", "' Open '",
         "'NEW'");

    snprintf(opts, sizeof(opts), "%s, 'lookup_default': 'OPEN'", t);
    conv(opts, "'Other'", "'OPEN'");
    conv(opts, "'Open'", "'NEW'");

    /* absent values are not looked up: the default of the field applies */
    check("{'to': 'x', 'from': 'v', 'lookup': {'a': 'b'},"
          " 'lookup_default': 'z'}", "{}", "{}");
    check("{'to': 'x', 'from': 'v', 'lookup': {'a': 'b'},"
          " 'lookup_default': 'z', 'default': 'd'}", "{}", "{'x': 'd'}");

    /* a lookup, then the type */
    conv("'lookup': {'Y': 'true', 'N': 'false'}, 'type': 'boolean'", "'Y'",
         "true");

    /* any JSON value may replace */
    conv("'lookup': {'gold': {'tier': 1}}", "'gold'", "{'tier': 1}");

    conv_fails("'lookup': {'a': 'b'}", "[1]",
               "fields[0] (x): an array cannot be looked up");
}


static void
test_numbers(void **state)
{
    const char  *n = "'type': 'number'";

    conv(n, "'42'", "42");
    conv(n, "'-3.5'", "-3.5");
    conv(n, "'+7'", "7");
    conv(n, "'007'", "7");
    conv(n, "'0'", "0");
    conv(n, "'-0.25'", "-0.25");
    conv(n, "' 12 '", "12");
    conv(n, "'1e3'", "1000.0");
    conv(n, "'2.5E-1'", "0.25");
    conv(n, "'9007199254740993'", "9007199254740993");
    conv(n, "42", "42");
    conv(n, "0.1", "0.1");

    conv_fails(n, "'1,5'", "fields[0] (x): \"1,5\" is not a number");
    conv_fails(n, "'1,000'", "fields[0] (x): \"1,000\" is not a number");
    conv_fails(n, "'1.2.3'", "fields[0] (x): \"1.2.3\" is not a number");
    conv_fails(n, "'.5'", "fields[0] (x): \".5\" is not a number");
    conv_fails(n, "'5.'", "fields[0] (x): \"5.\" is not a number");
    conv_fails(n, "'1e'", "fields[0] (x): \"1e\" is not a number");
    conv_fails(n, "'12abc'", "fields[0] (x): \"12abc\" is not a number");
    conv_fails(n, "'0x1A'", "fields[0] (x): \"0x1A\" is not a number");
    conv_fails(n, "'NaN'", "fields[0] (x): \"NaN\" is not a number");
    conv_fails(n, "'- 1'", "fields[0] (x): \"- 1\" is not a number");
    conv_fails(n, "true", "fields[0] (x): true is not a number");
    /* echoed as vc_mask() shows long numbers */
    conv_fails(n, "'99999999999999999999'",
               "fields[0] (x): \"****************9999\" is out of range");
    conv_fails(n, "'1e999'", "fields[0] (x): \"1e999\" is out of range");

    conv("'type': 'integer'", "'42'", "42");
    conv("'type': 'integer'", "'42.0'", "42");
    conv("'type': 'integer'", "'4.2e1'", "42");
    conv("'type': 'integer'", "42.0", "42");
    conv("'type': 'integer'", "-7", "-7");
    conv_fails("'type': 'integer'", "'42.5'",
               "fields[0] (x): \"42.5\" is not an integer");
    conv_fails("'type': 'integer'", "1e300",
               "fields[0] (x): 1e300 is not an integer");
    conv_fails("'type': 'integer'", "'x'",
               "fields[0] (x): \"x\" is not an integer");

    /* as strings, for vendors that take numbers as text */
    conv("'type': 'number', 'format_out': 'string'", "0.1", "'0.1'");
    conv("'type': 'number', 'format_out': 'string'", "'1.50'", "'1.5'");
    conv("'type': 'number', 'format_out': 'string'", "'-0012'", "'-12'");
    conv("'type': 'number', 'format_out': 'json'", "'12'", "12");
    conv("'type': 'integer', 'format_out': 'string'", "'12.0'", "'12'");

    conv("'type': 'string'", "42", "'42'");
    conv("'type': 'string'", "0.1", "'0.1'");
    conv("'type': 'string'", "1e21", "'1e21'");
    conv("'type': 'string'", "2.0", "'2.0'");
    conv("'type': 'string'", "true", "'true'");
    conv("'type': 'string'", "'as is'", "'as is'");
    conv_fails("'type': 'string'", "{'a': 1}",
               "fields[0] (x): an object is not a string");
}


static void
test_booleans(void **state)
{
    const char  *b = "'type': 'boolean'";

    conv(b, "true", "true");
    conv(b, "false", "false");
    conv(b, "'true'", "true");
    conv(b, "'FALSE'", "false");
    conv(b, "'Yes'", "true");
    conv(b, "'no'", "false");
    conv(b, "' 1 '", "true");
    conv(b, "'0'", "false");
    conv(b, "1", "true");
    conv(b, "0", "false");

    conv("'type': 'boolean', 'format_out': 'string'", "'YES'", "'true'");
    conv("'type': 'boolean', 'format_out': 'string'", "false", "'false'");

    conv_fails(b, "'maybe'", "fields[0] (x): \"maybe\" is not a boolean "
               "(true, false, yes, no, 1, 0)");
    conv_fails(b, "2", "fields[0] (x): 2 is not a boolean "
               "(true, false, yes, no, 1, 0)");
    conv_fails(b, "'y'", "fields[0] (x): \"y\" is not a boolean "
               "(true, false, yes, no, 1, 0)");
    conv_fails(b, "1.0", "fields[0] (x): 1.0 is not a boolean "
               "(true, false, yes, no, 1, 0)");
}


static void
test_dates(void **state)
{
    const char  *d = "'type': 'date'";
    const char  *dt = "'type': 'datetime'";
    const char  *hs = "'type': 'date', 'format_out': 'epoch_ms_midnight_utc'";

    conv(d, "'1980-01-02'", "'1980-01-02'");
    conv(hs, "'1980-01-02'", "315619200000");
    conv(hs, "'2015-05-01'", "1430438400000");
    conv(hs, "'1969-12-31'", "-86400000");
    conv(hs, "'1970-01-01'", "0");
    conv(d, "'2024-02-29'", "'2024-02-29'");
    conv(d, "'2000-02-29'", "'2000-02-29'");
    conv(d, "' 2024-02-29 '", "'2024-02-29'");
    conv(d, "'0001-01-01'", "'0001-01-01'");
    conv(d, "'9999-12-31'", "'9999-12-31'");

    conv_fails(d, "'2023-02-29'", "fields[0] (x): \"2023-02-29\" is not a "
               "date in format_in iso");
    conv_fails(d, "'1900-02-29'", "fields[0] (x): \"1900-02-29\" is not a "
               "date in format_in iso");
    conv_fails(d, "'2020-13-01'", "fields[0] (x): \"2020-13-01\" is not a "
               "date in format_in iso");
    conv_fails(d, "'2020-04-31'", "fields[0] (x): \"2020-04-31\" is not a "
               "date in format_in iso");
    conv_fails(d, "'2020-1-2'", "fields[0] (x): \"2020-1-2\" is not a "
               "date in format_in iso");
    conv_fails(d, "'0000-12-31'", "fields[0] (x): \"0000-12-31\" is not a "
               "date in format_in iso");
    conv_fails(d, "19800102", "fields[0] (x): 19800102 is not a date in "
               "format_in iso");

    /* date-times: the offset is required, Salesforce's +0000 included */
    conv(dt, "'2020-05-01T12:00:00Z'", "'2020-05-01T12:00:00Z'");
    conv(dt, "'2020-05-01T12:00:00.000+0000'", "'2020-05-01T12:00:00Z'");
    conv(dt, "'2020-05-01T12:00:00.5+02:00'", "'2020-05-01T10:00:00.500Z'");
    conv(dt, "'2020-05-01t07:30-05:00'", "'2020-05-01T12:30:00Z'");
    conv(dt, "'2020-05-01 12:00:00.123456789z'",
         "'2020-05-01T12:00:00.123Z'");
    conv(dt, "'2020-05-01T00:00:00+01'", "'2020-04-30T23:00:00Z'");
    conv(dt, "'2020-05-01'", "'2020-05-01T00:00:00Z'");
    conv_fails(dt, "'2020-05-01T12:00:00'", "fields[0] (x): "
               "\"2020-05-01T12:00:00\" is not a date-time in format_in iso");
    conv_fails(dt, "'2020-05-01T24:00:00Z'", "fields[0] (x): "
               "\"2020-05-01T24:00:00Z\" is not a date-time in format_in "
               "iso");
    conv_fails(dt, "'2020-05-01T12:00:60Z'", "fields[0] (x): "
               "\"2020-05-01T12:00:60Z\" is not a date-time in format_in "
               "iso");
    conv_fails(dt, "'2020-05-01T12:00:00+24:00'", "fields[0] (x): "
               "\"2020-05-01T12:00:00+24:00\" is not a date-time in "
               "format_in iso");

    /* an instant's date is its day in UTC */
    conv(d, "'2020-05-01T23:30:00-05:00'", "'2020-05-02'");
    conv(hs, "'2020-05-01T23:30:00+00:00'", "1588291200000");

    conv("'type': 'datetime', 'format_out': 'epoch_ms'",
         "'2015-04-02T18:02:46Z'", "1427997766000");
    conv("'type': 'datetime', 'format_out': 'epoch_s'",
         "'1969-12-31T23:59:59.999Z'", "-1");
    conv("'type': 'datetime', 'format_in': 'epoch_ms'", "1427997766000",
         "'2015-04-02T18:02:46Z'");
    conv("'type': 'datetime', 'format_in': 'epoch_ms'", "'1427997766001'",
         "'2015-04-02T18:02:46.001Z'");
    conv("'type': 'datetime', 'format_in': 'epoch_s'", "1427997766",
         "'2015-04-02T18:02:46Z'");
    conv("'type': 'datetime', 'format_in': 'epoch_s'", "-1.0",
         "'1969-12-31T23:59:59Z'");
    conv_fails("'type': 'datetime', 'format_in': 'epoch_s'", "1.5",
               "fields[0] (x): 1.5 is not a date-time in format_in epoch_s");
    conv_fails("'type': 'datetime', 'format_in': 'epoch_s'", "'12a'",
               "fields[0] (x): \"12a\" is not a date-time in format_in "
               "epoch_s");
    conv_fails("'type': 'datetime', 'format_in': 'epoch_s'",
               "253402300800", "fields[0] (x): ********0800 is not a "
               "date-time in format_in epoch_s");

    /* HubSpot's date: midnight UTC exactly, in either direction */
    conv("'type': 'date', 'format_in': 'epoch_ms_midnight_utc'",
         "1430438400000", "'2015-05-01'");
    conv("'type': 'date', 'format_in': 'epoch_ms_midnight_utc'",
         "'1430438400000'", "'2015-05-01'");
    conv_fails("'type': 'date', 'format_in': 'epoch_ms_midnight_utc'",
               "1430438400001", "fields[0] (x): *********0001 is not a date "
               "in format_in epoch_ms_midnight_utc");

    /* several formats, tried in order */
    conv("'type': 'date', 'format_in': ['iso', 'epoch_ms_midnight_utc']",
         "'315619200000'", "'1980-01-02'");
    conv("'type': 'date', 'format_in': ['iso', 'epoch_ms_midnight_utc']",
         "'1980-01-02'", "'1980-01-02'");
    conv_fails("'type': 'date', 'format_in': ['iso', '%m/%d/%Y']",
               "'2/30/2020'", "fields[0] (x): \"2/30/2020\" is not a date in "
               "format_in iso, %m/%d/%Y");

    /* patterns: one or two digits read, two written */
    conv("'type': 'date', 'format_in': '%m/%d/%Y'", "'1/2/2020'",
         "'2020-01-02'");
    conv("'type': 'date', 'format_in': '%d.%m.%Y', 'format_out': '%m/%d/%Y'",
         "'02.01.2020'", "'01/02/2020'");
    conv("'type': 'date', 'format_in': '%Y%m%d'", "'20200102'",
         "'2020-01-02'");
    conv("'type': 'datetime', 'format_in': '%d/%m/%Y %H:%M'",
         "'31/12/1999 23:59'", "'1999-12-31T23:59:00Z'");
    conv("'type': 'datetime', 'format_in': '%Y-%m-%d %H:%M:%S.%f %z',"
         " 'format_out': '%Y-%m-%dT%H:%M:%S.%f%z'",
         "'2020-05-01 12:00:00.25 +0200'", "'2020-05-01T10:00:00.250+0000'");
    conv("'type': 'datetime', 'format_out': '100%% on %d/%m'",
         "'2020-05-01T10:00:00Z'", "'100% on 01/05'");
    conv_fails("'type': 'date', 'format_in': '%m/%d/%Y'", "'1/2/20'",
               "fields[0] (x): \"1/2/20\" is not a date in format_in "
               "%m/%d/%Y");
    conv_fails("'type': 'date', 'format_in': '%m/%d/%Y'", "'01/02/2020x'",
               "fields[0] (x): \"01/02/2020x\" is not a date in format_in "
               "%m/%d/%Y");

    conv("'type': 'date', 'format_out': 'epoch_s'", "'1970-01-02'", "86400");
    conv("'type': 'date', 'format_out': 'epoch_ms'", "'1970-01-02'",
         "86400000");
}


static void
test_phones(void **state)
{
    const char  *us = "'type': 'phone_e164', 'default_region': 'US'";
    const char  *gb = "'type': 'phone_e164', 'default_region': 'GB'";
    const char  *none = "'type': 'phone_e164'";

    conv(us, "'(415) 555-0132'", "'+14155550132'");
    conv(us, "'415.555.0132'", "'+14155550132'");
    conv(us, "'1 415 555 0132'", "'+14155550132'");
    conv(us, "'+1 (415) 555-0132'", "'+14155550132'");
    conv(us, "'011 44 20 7946 0018'", "'+442079460018'");
    conv(us, "4155550132", "'+14155550132'");
    conv("'type': 'phone_e164', 'default_region': 'CA'", "'604-555-0199'",
         "'+16045550199'");

    conv(gb, "'020 7946 0018'", "'+442079460018'");
    conv(gb, "'07700 900123'", "'+447700900123'");
    conv(gb, "'+44 (0)20 7946 0018'", "'+442079460018'");
    conv(gb, "'0044 20 7946 0018'", "'+442079460018'");
    conv(gb, "'(415) 555-0132'", "'+444155550132'");
    /* a country code that lost its '+': too long for a national number */
    conv(gb, "'447700900123'", "'+447700900123'");
    conv(gb, "'44 20 7946 0018'", "'+442079460018'");
    /* ... but ten digits are a national number */
    conv(gb, "'4420 7946 00'", "'+444420794600'");
    conv("'type': 'phone_e164', 'default_region': 'AU'", "'61298765432'",
         "'+61298765432'");
    conv(gb, "'+1 415 555 0132'", "'+14155550132'");

    conv("'type': 'phone_e164', 'default_region': 'IE'", "'087 123 4567'",
         "'+353871234567'");
    conv("'type': 'phone_e164', 'default_region': 'FR'", "'01 23 45 67 89'",
         "'+33123456789'");
    conv("'type': 'phone_e164', 'default_region': 'AU'", "'(02) 9876 5432'",
         "'+61298765432'");

    /* other country codes: E.164's bounds only */
    conv(none, "'+49 30 1234567'", "'+49301234567'");
    conv(none, "'+7 495 123-45-67'", "'+74951234567'");

    conv_fails(us, "'12ab'", "fields[0] (x): \"12ab\" is not a phone number");
    conv_fails(us, "'415-555-0132 x22'", "fields[0] (x): "
               "\"415-555-0132 x22\" is not a phone number");
    conv_fails(us, "'1-800-FLOWERS'", "fields[0] (x): \"1-800-FLOWERS\" is "
               "not a phone number");
    conv_fails(us, "'+'", "fields[0] (x): \"+\" is not a phone number");
    conv_fails(us, "'415+5550132'", "fields[0] (x): \"415+5550132\" is not "
               "a phone number");
    conv_fails(us, "true", "fields[0] (x): true is not a phone number");
    conv_fails(us, "'555-0132'", "fields[0] (x): \"555-0132\" has the wrong "
               "number of digits for +1");
    conv_fails(us, "'+1 415 555 01320'", "fields[0] (x): "
               "\"+1 415 555 01320\" has the wrong number of digits for +1");
    conv_fails(us, "'(015) 555-0132'", "fields[0] (x): \"(015) 555-0132\" is "
               "not a possible number for +1");
    conv_fails(us, "'(415) 155-0132'", "fields[0] (x): \"(415) 155-0132\" is "
               "not a possible number for +1");
    conv_fails(us, "'911-555-0132'", "fields[0] (x): \"911-555-0132\" is not "
               "a possible number for +1");
    conv(gb, "'01946 12345'", "'+44194612345'");
    conv_fails(gb, "'020 7946 00'", "fields[0] (x): \"020 7946 00\" has "
               "the wrong number of digits for +44");
    conv_fails(gb, "'020 7946 00180'", "fields[0] (x): \"020 7946 00180\" "
               "has the wrong number of digits for +44");
    conv_fails(none, "'415 555 0132'", "fields[0] (x): \"415 555 0132\" has "
               "no country code, and the field has no default_region");
    conv_fails(none, "'+49 123'", "fields[0] (x): \"+49 123\" has the wrong "
               "number of digits for a phone number");
    conv_fails(none, "'+49 1234 5678 9012 34'", "fields[0] (x): "
               "\"+49 1234 5678 9012 34\" has the wrong number of digits for "
               "a phone number");
    conv_fails(none, "'+0 123 4567'", "fields[0] (x): \"+0 123 4567\" has "
               "the wrong number of digits for a phone number");
}


static void
test_masks(void **state)
{
    conv("'mask': 'full'", "'123-45-6789'", "'***-**-****'");
    conv("'mask': 'full'", "'Jane Doe'", "'**** ***'");
    conv("'mask': 'full'", "123456", "'******'");

    conv("'mask': 'last4'", "'123-45-6789'", "'***-**-6789'");
    conv("'mask': 'last4'", "'4111 1111 1111 1111'", "'**** **** **** 1111'");
    conv("'mask': 'last4'", "'12345678'", "'****5678'");
    conv("'mask': 'last4'", "'1234567'", "'*******'");
    conv("'mask': 'last4'", "1234567890", "'******7890'");
    /* a multi-byte character is one character, masked or kept whole */
    conv("'mask': 'last4'", "'\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
         "\xc3\xa9\xc3\xa9\xc3\xa9'", "'****\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9'");

    conv("'mask': 'email_domain'", "'jane.doe@example.com'",
         "'*@example.com'");
    conv("'mask': 'email_domain'", "'\\'a@b\\'@example.com'",
         "'*@example.com'");
    conv("'mask': 'email_domain'", "'not an email'", "'*** ** *****'");
    conv("'mask': 'email_domain'", "'@example.com'", "'@*******.***'");
    conv("'mask': 'email_domain'", "'jane@'", "'****@'");

    /* vc_mask() over free text: SSNs and long numbers only */
    conv("'mask': 'pii'", "'SSN 123-45-6789, acct 000123456789, call 555'",
         "'SSN ***-**-****, acct ********6789, call 555'");
    conv("'mask': 'pii'", "'{\\'dob\\': \\'\xc3\xa9\\'}'",
         "'{\\'dob\\': \\'**\\'}'");

    /* after the conversion */
    conv("'type': 'phone_e164', 'default_region': 'US', 'mask': 'last4'",
         "'(415) 555-0132'", "'+*******0132'");

    /* a masked field's value never appears in a message */
    conv_fails("'type': 'phone_e164', 'mask': 'full'", "'123-45-6789'",
               "fields[0] (x): the value has no country code, and the field "
               "has no default_region");
}


static void
test_apply_errors(void **state)
{
    int        rc;
    char       err[ERRLEN], small[24];
    json_t    *in, *out;
    vc_map_t  *map;

    /* every problem of the record, in the order of the fields */
    check_fails("{'to': 'email', 'from': 'Email', 'required': true},"
                "{'to': 'name', 'from': 'Name'},"
                "{'to': 'phone', 'from': 'Phone', 'type': 'phone_e164',"
                " 'default_region': 'US'},"
                "{'to': 'n', 'from': 'N', 'type': 'integer'}",
                "{'Name': 'ok', 'Phone': '12ab', 'N': '1.5'}",
                "fields[0] (email): required, but \"Email\" is missing or "
                "empty; fields[2] (phone): \"12ab\" is not a phone number; "
                "fields[3] (n): \"1.5\" is not an integer");

    /* quoted values: cut, escaped, and with long numbers masked */
    conv_fails("'type': 'number'",
               "'abcdefghijklmnopqrstuvwxyz-0123-ABCDEFGHIJKLMN'",
               "fields[0] (x): \"abcdefghijklmnopqrstuvwxyz-0123-ABCDEFGH...\""
               " is not a number");
    conv_fails("'type': 'number'", "'a\\tb\\'c\\\\d'",
               "fields[0] (x): \"a\\x09b\\\"c\\\\d\" is not a number");
    conv_fails("'type': 'boolean'", "'acct 4111111111111111'",
               "fields[0] (x): \"acct ************1111\" is not a boolean "
               "(true, false, yes, no, 1, 0)");
    conv_fails("'type': 'boolean'", "'ssn 123-45-6789'",
               "fields[0] (x): \"ssn ***-**-****\" is not a boolean "
               "(true, false, yes, no, 1, 0)");
    /* a long number cut by the limit is masked as a whole */
    conv_fails("'type': 'boolean'",
               "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx12345678901234567890'",
               "fields[0] (x): \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx*****...\""
               " is not a boolean (true, false, yes, no, 1, 0)");
    /* cut at a character's boundary: 40 bytes are 20 of 21 e-acutes */
#define E5  "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
    conv_fails("'type': 'boolean'", "'" E5 E5 E5 E5 "\xc3\xa9'",
               "fields[0] (x): \"" E5 E5 E5 E5 "...\" is not a boolean "
               "(true, false, yes, no, 1, 0)");
#undef E5

    /* the record must be an object */
    map = load("{'to': 'x', 'from': 'v'}");
    in = parse("[1]");
    out = (json_t *) 1;
    assert_int_equal(vc_map_apply(map, in, &out, err, sizeof(err)), VC_ERROR);
    assert_null(out);
    assert_string_equal(err, "the record is not a JSON object");
    json_decref(in);
    vc_map_free(map);

    /* a short buffer: cut, terminated, and still a failure */
    map = load("{'to': 'x', 'from': 'v', 'required': true},"
               "{'to': 'y', 'from': 'w', 'required': true}");
    in = parse("{}");
    rc = vc_map_apply(map, in, &out, small, sizeof(small));
    assert_int_equal(rc, VC_ERROR);
    assert_null(out);
    assert_string_equal(small, "fields[0] (x): required");
    rc = vc_map_apply(map, in, &out, small, 0);
    assert_int_equal(rc, VC_ERROR);
    json_decref(in);
    vc_map_free(map);
}


static void
test_load_errors(void **state)
{
    char  err[ERRLEN];

    bad_doc("[]", "m.json: not a JSON object");
    bad_doc("{'name': 't', 'from': 'a', 'to': 'b', 'feilds': []}",
            "m.json: unknown member \"feilds\"; expected one of name, "
            "description, from, to, mode, fields");
    bad_doc("{'from': 'a', 'to': 'b', 'fields': []}",
            "m.json: \"name\" must be a non-empty string");
    bad_doc("{'name': 't', 'from': '', 'to': 'b', 'fields': []}",
            "m.json: \"from\" must be a non-empty string");
    bad_doc("{'name': 't', 'from': 'a', 'to': 1, 'fields': []}",
            "m.json: \"to\" must be a non-empty string");
    bad_doc("{'name': 't', 'from': 'a', 'to': 'b', 'description': 1,"
            " 'fields': [{'to': 'x', 'from': 'y'}]}",
            "m.json: \"description\" must be a string");
    bad_doc("{'name': 't', 'from': 'a', 'to': 'b', 'fields': []}",
            "m.json: \"fields\" must be an array of at least one entry");
    bad_doc("{'name': 't', 'from': 'a', 'to': 'b', 'fields': {}}",
            "m.json: \"fields\" must be an array of at least one entry");

    /* jansson's own words for bad JSON, and for a repeated member */
    assert_null(vc_map_load("m.json", "{\"name\": ", 9, err, sizeof(err)));
    assert_string_equal(err, "m.json: invalid JSON at line 1, column 9: "
                        "unexpected token near end of file");
    bad_doc("{'name': 't', 'name': 'u'}", "m.json: invalid JSON at line 1, "
            "column 20: duplicate object key near '\"name\"'");

    bad("1", "fields[0]: not a JSON object");
    bad("{'to': 'x', 'from': 'y'}, {'from': 'y'}",
        "fields[1]: \"to\" is missing");
    bad("{'to': ['x'], 'from': 'y'}", "fields[0]: \"to\" must be a string, "
        "a member name or a dotted path such as \"address.city\"");
    bad("{'to': 'a..b', 'from': 'y'}", "fields[0] (a..b): \"to\" is not a "
        "path: names are separated by single dots, at most 16 of them");
    bad("{'to': '.a', 'from': 'y'}", "fields[0] (.a): \"to\" is not a "
        "path: names are separated by single dots, at most 16 of them");
    bad("{'to': '', 'from': 'y'}", "fields[0] (): \"to\" is not a "
        "path: names are separated by single dots, at most 16 of them");
    bad("{'to': 'a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q', 'from': 'y'}",
        "fields[0] (a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q): \"to\" is not a "
        "path: names are separated by single dots, at most 16 of them");
    bad("{'to': 'a\\'b', 'from': 'y', 'x': 1}", "fields[0] (a\\\"b): "
        "unknown member \"x\"; expected one of to, from, concat, sep, "
        "constant, split, transform, lookup, lookup_default, type, "
        "format_in, format_out, default_region, default, required, mask, "
        "note");
    bad("{'to': 'phone', 'from': 'Phone', 'tpye': 'phone_e164'}",
        "fields[0] (phone): unknown member \"tpye\"; expected one of to, "
        "from, concat, sep, constant, split, transform, lookup, "
        "lookup_default, type, format_in, format_out, default_region, "
        "default, required, mask, note");
    bad("{'to': 'x', 'note': 1, 'from': 'y'}",
        "fields[0] (x): \"note\" must be a string");

    /* the source */
    bad("{'to': 'x'}", "fields[0] (x): needs one of \"from\", \"concat\" or "
        "\"constant\"");
    bad("{'to': 'x', 'from': 'y', 'constant': 1}", "fields[0] (x): \"from\" "
        "and \"constant\" cannot be used together");
    bad("{'to': 'x', 'concat': ['a', 'b'], 'constant': 1}", "fields[0] (x): "
        "\"concat\" and \"constant\" cannot be used together");
    bad("{'to': 'x', 'constant': 1, 'type': 'string'}", "fields[0] (x): "
        "\"constant\" takes no \"type\": the constant is written as it is");
    bad("{'to': 'x', 'constant': 1, 'required': true}", "fields[0] (x): "
        "\"constant\" takes no \"required\": the constant is written as it "
        "is");
    bad("{'to': 'x', 'from': 1}", "fields[0] (x): \"from\" must be a member "
        "name or a dotted path, at most 16 names");
    bad("{'to': 'x', 'from': 'a.'}", "fields[0] (x): \"from\" must be a "
        "member name or a dotted path, at most 16 names");
    bad("{'to': 'x', 'from': 'y', 'sep': ' '}", "fields[0] (x): \"sep\" "
        "needs \"concat\" (a split has its own \"sep\")");
    bad("{'to': 'x', 'concat': ['a']}", "fields[0] (x): \"concat\" must be "
        "an array of at least two paths");
    bad("{'to': 'x', 'concat': 'a b'}", "fields[0] (x): \"concat\" must be "
        "an array of at least two paths");
    bad("{'to': 'x', 'concat': ['a', '']}", "fields[0] (x): concat[1] must "
        "be a member name or a dotted path, at most 16 names");
    bad("{'to': 'x', 'concat': ['a', 'b'], 'sep': 1}", "fields[0] (x): "
        "\"sep\" must be a string");
    bad("{'to': 'x', 'concat': ['a', 'b'], 'split': {'part': 'first'}}",
        "fields[0] (x): \"split\" needs \"from\", not \"concat\"");

    /* split */
    bad("{'to': 'x', 'from': 'y', 'split': 'first'}", "fields[0] (x): "
        "\"split\" must be an object, {\"sep\": \" \", \"part\": "
        "\"first\"}");
    bad("{'to': 'x', 'from': 'y', 'split': {'part': 'first', 'max': 2}}",
        "fields[0] (x): unknown member \"max\" in \"split\"; expected sep or "
        "part");
    bad("{'to': 'x', 'from': 'y', 'split': {'sep': '', 'part': 'first'}}",
        "fields[0] (x): \"split\": \"sep\" must be a non-empty string");
    bad("{'to': 'x', 'from': 'y', 'split': {'part': 'middle'}}",
        "fields[0] (x): \"split\": \"part\" must be first, last, "
        "after_first, before_last, or a piece's index from 0");
    bad("{'to': 'x', 'from': 'y', 'split': {'sep': ','}}",
        "fields[0] (x): \"split\": \"part\" must be first, last, "
        "after_first, before_last, or a piece's index from 0");
    bad("{'to': 'x', 'from': 'y', 'split': {'part': -1}}",
        "fields[0] (x): \"split\": \"part\" -1 is not from 0 to 1000");

    /* transform, lookup */
    bad("{'to': 'x', 'from': 'y', 'transform': ['trim', 'lower']}",
        "fields[0] (x): unknown transform \"lower\"; expected one of trim, "
        "lowercase, uppercase, collapse_spaces");
    bad("{'to': 'x', 'from': 'y', 'transform': [1]}",
        "fields[0] (x): a transform must be one of trim, lowercase, "
        "uppercase, collapse_spaces");
    bad("{'to': 'x', 'from': 'y', 'transform': []}",
        "fields[0] (x): \"transform\" must be a name or an array of 1 to 8 "
        "names");
    bad("{'to': 'x', 'from': 'y', 'transform': ['trim', 'trim', 'trim',"
        " 'trim', 'trim', 'trim', 'trim', 'trim', 'trim']}",
        "fields[0] (x): \"transform\" must be a name or an array of 1 to 8 "
        "names");
    bad("{'to': 'x', 'from': 'y', 'lookup': {}}", "fields[0] (x): "
        "\"lookup\" must be an object of at least one entry, {\"value\": "
        "\"replacement\"}");
    bad("{'to': 'x', 'from': 'y', 'lookup': ['a']}", "fields[0] (x): "
        "\"lookup\" must be an object of at least one entry, {\"value\": "
        "\"replacement\"}");
    bad("{'to': 'x', 'from': 'y', 'lookup_default': 'z'}", "fields[0] (x): "
        "\"lookup_default\" needs \"lookup\"");

    /* type and what depends on it */
    bad("{'to': 'x', 'from': 'y'}, {'to': 'x2', 'from': 'y'},"
        "{'to': 'x3', 'from': 'y'}, {'to': 'phone', 'from': 'Phone',"
        " 'type': 'phon'}",
        "fields[3] (phone): unknown type \"phon\"; expected one of string, "
        "number, integer, boolean, date, datetime, phone_e164");
    bad("{'to': 'x', 'from': 'y', 'type': true}", "fields[0] (x): \"type\" "
        "must be one of string, number, integer, boolean, date, datetime, "
        "phone_e164");
    bad("{'to': 'x', 'from': 'y', 'type': 'string', 'format_in': 'iso'}",
        "fields[0] (x): \"format_in\" needs \"type\": \"date\" or "
        "\"datetime\"");
    bad("{'to': 'x', 'from': 'y', 'type': 'string', 'default_region': 'US'}",
        "fields[0] (x): \"default_region\" needs \"type\": \"phone_e164\"");
    bad("{'to': 'x', 'from': 'y', 'type': 'date', 'format_in': 'isoo'}",
        "fields[0] (x): unknown format_in \"isoo\"; expected one of iso, "
        "epoch_s, epoch_ms, epoch_ms_midnight_utc, or a pattern such as "
        "\"%m/%d/%Y\"");
    bad("{'to': 'x', 'from': 'y', 'type': 'date', 'format_out': 'epoch'}",
        "fields[0] (x): unknown format_out \"epoch\"; expected one of iso, "
        "epoch_s, epoch_ms, epoch_ms_midnight_utc, or a pattern such as "
        "\"%m/%d/%Y\"");
    bad("{'to': 'x', 'from': 'y', 'type': 'date', 'format_in': '%b %d %Y'}",
        "fields[0] (x): format_in \"%b %d %Y\": unknown directive; expected "
        "%Y %m %d %H %M %S %f %z %%");
    bad("{'to': 'x', 'from': 'y', 'type': 'date', 'format_out': '%Y%'}",
        "fields[0] (x): format_out \"%Y%\": unknown directive; expected "
        "%Y %m %d %H %M %S %f %z %%");
    bad("{'to': 'x', 'from': 'y', 'type': 'date', 'format_in': '%d/%m/%d'}",
        "fields[0] (x): format_in \"%d/%m/%d\": a directive is repeated");
    bad("{'to': 'x', 'from': 'y', 'type': 'date', 'format_in': '%d/%m'}",
        "fields[0] (x): format_in \"%d/%m\": an input pattern needs %Y, %m "
        "and %d");
    bad("{'to': 'x', 'from': 'y', 'type': 'date', 'format_in': []}",
        "fields[0] (x): \"format_in\" must be a format or an array of 1 to 4 "
        "formats, tried in order");
    bad("{'to': 'x', 'from': 'y', 'type': 'date', 'format_in': ['iso', 1]}",
        "fields[0] (x): a format_in must be a name or a pattern of up to 64 "
        "bytes");
    bad("{'to': 'x', 'from': 'y', 'type': 'datetime',"
        " 'format_out': 'epoch_ms_midnight_utc'}",
        "fields[0] (x): format_out \"epoch_ms_midnight_utc\" needs \"type\": "
        "\"date\"");
    bad("{'to': 'x', 'from': 'y', 'type': 'boolean', 'format_out': 'text'}",
        "fields[0] (x): \"format_out\" of a boolean must be \"json\" or "
        "\"string\"");
    bad("{'to': 'x', 'from': 'y', 'type': 'integer', 'format_out': 1}",
        "fields[0] (x): \"format_out\" of an integer must be \"json\" or "
        "\"string\"");
    bad("{'to': 'x', 'from': 'y', 'type': 'string', 'format_out': 'json'}",
        "fields[0] (x): \"format_out\" does not apply to \"type\": "
        "\"string\"");
    bad("{'to': 'x', 'from': 'y', 'type': 'phone_e164', 'format_out': 'iso'}",
        "fields[0] (x): \"format_out\" does not apply to \"type\": "
        "\"phone_e164\"");
    bad("{'to': 'x', 'from': 'y', 'format_out': 'string'}",
        "fields[0] (x): \"format_out\" needs a \"type\"");
    bad("{'to': 'x', 'from': 'y', 'type': 'phone_e164',"
        " 'default_region': 'UK'}",
        "fields[0] (x): unknown default_region \"UK\"; expected one of US, "
        "CA, GB, IE, FR, AU");

    /* required, default, mask */
    bad("{'to': 'x', 'from': 'y', 'required': 'yes'}",
        "fields[0] (x): \"required\" must be true or false");
    bad("{'to': 'x', 'from': 'y', 'required': true, 'default': ''}",
        "fields[0] (x): \"required\" and \"default\" cannot be used "
        "together: the default is written when the value is absent");
    bad("{'to': 'x', 'from': 'y', 'mask': 'last5'}",
        "fields[0] (x): unknown mask \"last5\"; expected one of full, last4, "
        "email_domain, pii");
    bad("{'to': 'x', 'from': 'y', 'mask': ''}",
        "fields[0] (x): unknown mask \"\"; expected one of full, last4, "
        "email_domain, pii");

    /* targets */
    bad("{'to': 'email', 'from': 'Email'}, {'to': 'email', 'from': 'Mail'}",
        "fields[1] (email): \"to\" is also the target of fields[0]");
    bad("{'to': 'a', 'from': 'y'}, {'to': 'b', 'from': 'y'},"
        "{'to': 'a.b', 'from': 'z'}",
        "fields[2] (a.b): \"to\" is inside \"a\", the target of fields[0]");
    bad("{'to': 'a.b.c', 'from': 'y'}, {'to': 'a.b', 'from': 'z'}",
        "fields[1] (a.b): \"to\" holds \"a.b.c\", the target of fields[0]");

    /* siblings under one object are fine */
    vc_map_free(load("{'to': 'p.a', 'from': 'y'}, {'to': 'p.b', 'from': 'y'},"
                     "{'to': 'p.c.d', 'constant': 1},"
                     "{'to': 'pa', 'from': 'y'}"));
}


static void
test_load_file(void **state)
{
    char       err[ERRLEN];
    vc_map_t  *map;

    map = vc_map_load_file("conf/mappings/no-such-file.json", err,
                           sizeof(err));
    assert_null(map);
    assert_string_equal(err, "conf/mappings/no-such-file.json: No such file "
                        "or directory");

    map = vc_map_load_file("conf/mappings/salesforce-contact-to-hubspot.json",
                           err, sizeof(err));
    if (map == NULL) {
        print_error("%s\n", err);
        fail();
    }

    assert_string_equal(vc_map_name(map), "salesforce-contact-to-hubspot");
    assert_string_equal(vc_map_from(map), "salesforce.Contact");
    assert_string_equal(vc_map_to(map), "hubspot.contact");
    assert_int_equal(vc_map_nfields(map), 18);
    /* each field's source as written; a constant has none */
    assert_string_equal(vc_map_field_from(map, 0), "Email");
    assert_string_equal(vc_map_field_from(map, 6), "Account.Name");
    assert_string_equal(vc_map_field_from(map, 16), "Id");
    assert_null(vc_map_field_from(map, 17));
    assert_null(vc_map_field_from(map, 18));
    vc_map_free(map);

    vc_map_free(NULL);
}


/* maps a record with a file of conf/mappings/ */
static json_t *
apply_file(const char *file, json_t *in)
{
    char       path[256], err[ERRLEN];
    json_t    *out;
    vc_map_t  *map;

    snprintf(path, sizeof(path), "conf/mappings/%s", file);

    map = vc_map_load_file(path, err, sizeof(err));
    if (map == NULL) {
        print_error("%s\n", err);
        fail();
    }

    if (vc_map_apply(map, in, &out, err, sizeof(err)) != VC_OK) {
        print_error("%s: %s\n", file, err);
        fail();
    }

    vc_map_free(map);

    return out;
}


static void
expect(json_t *got, const char *want)
{
    char    *s;
    json_t  *w;

    w = parse(want);

    if (!json_equal(got, w)) {
        s = json_dumps(got, JSON_COMPACT);
        print_error("gave   %s\nwanted %s\n", s, q(want));
        free(s);
        fail();
    }

    json_decref(w);
}


#define SF_CONTACT                                                           \
    "{'attributes': {'type': 'Contact',"                                     \
    "  'url': '/services/data/v68.0/sobjects/Contact/003A000001'},"           \
    " 'Id': '003A000001', 'FirstName': ' Ana ', 'LastName': 'Lima',"         \
    " 'Email': 'Ana.Lima@Example.COM', 'Phone': '(415) 555-0132',"          \
    " 'MobilePhone': '+44 7700 900123', 'Title': 'CFO',"                     \
    " 'Account': {'Name': 'Acme Wealth'},"                                   \
    " 'MailingStreet': '1 Main St', 'MailingCity': 'Springfield',"          \
    " 'MailingState': 'IL', 'MailingPostalCode': '62701',"                   \
    " 'MailingCountry': 'United States', 'Birthdate': '1980-01-02',"        \
    " 'Status__c': 'Working - Contacted', 'DoNotCall': true,"               \
    " 'SSN__c': '123-45-6789', 'Description': null}"

#define HS_CONTACT                                                           \
    "{'properties': {'email': 'ana.lima@example.com', 'firstname': 'Ana',"   \
    "  'lastname': 'Lima', 'phone': '+14155550132',"                         \
    "  'mobilephone': '+447700900123', 'jobtitle': 'CFO',"                   \
    "  'company': 'Acme Wealth', 'address': '1 Main St',"                    \
    "  'city': 'Springfield', 'state': 'IL', 'zip': '62701',"               \
    "  'country': 'United States', 'date_of_birth': 315619200000,"          \
    "  'hs_lead_status': 'IN_PROGRESS', 'do_not_call': 'true',"              \
    "  'ssn_masked': '***-**-6789', 'salesforcecontactid': '003A000001',"    \
    "  'sync_source': 'salesforce'}}"

#define SF_BACK                                                              \
    "{'Email': 'ana.lima@example.com', 'FirstName': 'Ana',"                  \
    " 'LastName': 'Lima', 'Phone': '+14155550132',"                          \
    " 'MobilePhone': '+447700900123', 'Title': 'CFO',"                       \
    " 'MailingStreet': '1 Main St', 'MailingCity': 'Springfield',"          \
    " 'MailingState': 'IL', 'MailingPostalCode': '62701',"                   \
    " 'MailingCountry': 'United States', 'Birthdate': '1980-01-02',"        \
    " 'Status__c': 'Working - Contacted', 'DoNotCall': true,"               \
    " 'Sync_Source__c': 'hubspot'}"


static void
test_examples(void **state)
{
    json_t  *sf, *hs, *sf2, *hs2, *sf3;

    sf = parse(SF_CONTACT);

    hs = apply_file("salesforce-contact-to-hubspot.json", sf);
    expect(hs, HS_CONTACT);

    sf2 = apply_file("hubspot-contact-to-salesforce.json", hs);
    expect(sf2, SF_BACK);

    /* what HubSpot returns: an id, and the date as YYYY-MM-DD */
    json_object_set_new(hs, "id", json_string("51"));
    json_object_set_new(json_object_get(hs, "properties"), "date_of_birth",
                        json_string("1980-01-02"));
    json_decref(sf2);
    sf2 = apply_file("hubspot-contact-to-salesforce.json", hs);
    assert_string_equal(json_string_value(json_object_get(sf2,
                        "HubSpot_Contact_Id__c")), "51");
    json_object_del(sf2, "HubSpot_Contact_Id__c");
    expect(sf2, SF_BACK);

    /* normalised once, the record goes round unchanged */
    hs2 = apply_file("salesforce-contact-to-hubspot.json", sf2);
    sf3 = apply_file("hubspot-contact-to-salesforce.json", hs2);
    assert_true(json_equal(sf3, sf2));

    json_decref(sf3);
    json_decref(hs2);
    json_decref(sf2);
    json_decref(hs);
    json_decref(sf);

    /* a HubSpot contact with little in it */
    hs = parse("{'id': '52', 'properties': {'email': ' Bo@x.io ',"
               " 'lastname': '', 'hs_lead_status': 'SOMETHING_NEW',"
               " 'date_of_birth': null}}");
    sf = apply_file("hubspot-contact-to-salesforce.json", hs);
    expect(sf, "{'Email': 'bo@x.io', 'LastName': '[not provided]',"
           " 'Status__c': 'Open - Not Contacted',"
           " 'HubSpot_Contact_Id__c': '52', 'Sync_Source__c': 'hubspot'}");
    json_decref(sf);
    json_decref(hs);
}


static void
test_examples_refuse(void **state)
{
    char       err[ERRLEN];
    json_t    *in, *out;
    vc_map_t  *map;

    map = vc_map_load_file("conf/mappings/salesforce-contact-to-hubspot.json",
                           err, sizeof(err));
    assert_non_null(map);

    in = parse("{'LastName': 'Lima', 'Phone': '555-0132',"
               " 'Birthdate': '02/01/1980', 'DoNotCall': 'maybe',"
               " 'SSN__c': {'n': 1}}");
    assert_int_equal(vc_map_apply(map, in, &out, err, sizeof(err)), VC_ERROR);
    assert_string_equal(err,
        "fields[0] (properties.email): required, but \"Email\" is missing or "
        "empty; fields[3] (properties.phone): \"555-0132\" has the wrong "
        "number of digits for +1; fields[12] (properties.date_of_birth): "
        "\"02/01/1980\" is not a date in format_in iso; fields[14] "
        "(properties.do_not_call): \"maybe\" is not a boolean (true, false, "
        "yes, no, 1, 0)");

    json_decref(in);
    vc_map_free(map);
}


/* edit mode: a map of the given fields with "mode": "edit", loaded */
static vc_map_t *
load_edit(const char *fields)
{
    char       doc[8192], err[ERRLEN];
    vc_map_t  *map;

    snprintf(doc, sizeof(doc), "{\"name\": \"t\", \"from\": \"-\", "
             "\"to\": \"-\", \"mode\": \"edit\", \"fields\": [%s]}",
             q(fields));

    map = vc_map_load("m.json", doc, strlen(doc), err, sizeof(err));
    if (map == NULL) {
        print_error("load failed: %s\n", err);
        fail();
    }

    assert_int_equal(vc_map_edits(map), 1);

    return map;
}


/*
 * Edits in in place with vc_map_apply_doc(): it must become want, and
 * *out be in itself.  An object is also given to vc_map_apply(), which
 * must give the same and leave its record as it was.
 */
static void
edit(const char *fields, const char *in, const char *want)
{
    char       err[ERRLEN], *got, *before, *after;
    json_t    *i, *w, *o;
    vc_map_t  *map;

    map = load_edit(fields);
    i = parse(in);
    w = parse(want);

    if (json_is_object(i)) {
        before = json_dumps(i, JSON_COMPACT);
        assert_int_equal(vc_map_apply(map, i, &o, err, sizeof(err)), VC_OK);
        after = json_dumps(i, JSON_COMPACT);
        assert_string_equal(before, after);
        assert_true(o != i);

        if (!json_equal(o, w)) {
            got = json_dumps(o, JSON_COMPACT);
            print_error("vc_map_apply: %s\n  on %s\n  gave   %s\n"
                        "  wanted %s\n", q(fields), q(in), got, q(want));
            free(got);
            fail();
        }

        json_decref(o);
        free(before);
        free(after);
    }

    o = NULL;

    if (vc_map_apply_doc(map, i, &o, err, sizeof(err)) != VC_OK) {
        print_error("%s\n  on %s: %s\n", q(fields), q(in), err);
        fail();
    }

    assert_string_equal(err, "");
    assert_ptr_equal(o, i);
    json_decref(o);

    if (!json_equal(i, w)) {
        got = json_dumps(i, JSON_COMPACT);
        print_error("%s\n  on %s\n  gave   %s\n  wanted %s\n", q(fields),
                    q(in), got, q(want));
        free(got);
        fail();
    }

    json_decref(i);
    json_decref(w);
    vc_map_free(map);
}


/* the edit must fail with exactly want, leaving the document as left */
static void
edit_fails(const char *fields, const char *in, const char *want,
    const char *left)
{
    char       err[ERRLEN], *got;
    json_t    *i, *l, *o;
    vc_map_t  *map;

    map = load_edit(fields);
    i = parse(in);
    l = parse(left);
    o = (json_t *) 1;

    assert_int_equal(vc_map_apply_doc(map, i, &o, err, sizeof(err)),
                     VC_ERROR);
    assert_null(o);

    if (strcmp(err, want) != 0) {
        print_error("%s\n  on %s\n  said   %s\n  wanted %s\n", q(fields),
                    q(in), err, want);
        fail();
    }

    if (!json_equal(i, l)) {
        got = json_dumps(i, JSON_COMPACT);
        print_error("%s\n  left   %s\n  wanted %s\n", q(fields), got,
                    q(left));
        free(got);
        fail();
    }

    json_decref(i);
    json_decref(l);
    vc_map_free(map);
}


/* edit-mode fields must be refused with exactly "m.json: " want */
static void
bad_edit(const char *fields, const char *want)
{
    char  doc[8192], w[ERRLEN];

    snprintf(doc, sizeof(doc), "{'name': 't', 'from': '-', 'to': '-', "
             "'mode': 'edit', 'fields': [%s]}", fields);
    snprintf(w, sizeof(w), "m.json: %s", want);

    bad_doc(doc, w);
}


static void
test_edit_set(void **state)
{
    /* other members pass through; a constant is added, objects made */
    edit("{'to': '/meta/source', 'constant': 'api'}",
         "{'id': 7, 'name': 'Ana'}",
         "{'id': 7, 'name': 'Ana', 'meta': {'source': 'api'}}");
    edit("{'to': 'meta.source', 'constant': {'k': [1]}}",
         "{'meta': {'v': 1}}", "{'meta': {'v': 1, 'source': {'k': [1]}}}");

    /* a replacement in place: type conversion, transforms, lookup */
    edit("{'to': '/age', 'from': '/age', 'type': 'integer'},"
         "{'to': '/email', 'from': '/email', 'transform': ['trim', "
         "'lowercase']},"
         "{'to': '/status', 'from': '/status', 'lookup': {'o': 'OPEN'},"
         " 'lookup_default': 'OTHER'}",
         "{'age': '42', 'email': ' A@B.C ', 'status': 'o', 'x': null}",
         "{'age': 42, 'email': 'a@b.c', 'status': 'OPEN', 'x': null}");
    edit("{'to': '/dob', 'from': '/dob', 'type': 'date',"
         " 'format_in': '%m/%d/%Y'},"
         "{'to': '/phone', 'from': '/phone', 'type': 'phone_e164',"
         " 'default_region': 'US'},"
         "{'to': '/ok', 'from': '/ok', 'type': 'boolean',"
         " 'format_out': 'string'}",
         "{'dob': '1/2/1980', 'phone': '(415) 555-0132', 'ok': 'yes'}",
         "{'dob': '1980-01-02', 'phone': '+14155550132', 'ok': 'true'}");

    /* a copy beside the original, and a concat */
    edit("{'to': '/contact/email', 'from': '/Email'},"
         "{'to': '/contact/name', 'concat': ['/First', 'Last']}",
         "{'Email': 'a@b.c', 'First': 'Ana', 'Last': 'Lima'}",
         "{'Email': 'a@b.c', 'First': 'Ana', 'Last': 'Lima',"
         " 'contact': {'email': 'a@b.c', 'name': 'Ana Lima'}}");

    /* an absent source leaves the target as it is, or takes the default */
    edit("{'to': '/a', 'from': '/missing'}, {'to': '/b', 'from': '/b'},"
         "{'to': '/c', 'from': '/c', 'default': 'none'}",
         "{'a': 1, 'b': '', 'c': null}",
         "{'a': 1, 'b': '', 'c': 'none'}");

    /* a container copied is a copy: editing one leaves the other */
    edit("{'to': '/b', 'from': '/a'}, {'to': '/b/k', 'constant': 2}",
         "{'a': {'k': 1}}", "{'a': {'k': 1}, 'b': {'k': 2}}");
    edit("{'to': '/a/self', 'from': '/a'}", "{'a': {'k': 1}}",
         "{'a': {'k': 1, 'self': {'k': 1}}}");

    /* each entry sees what the ones before it left */
    edit("{'rename': '/Phone', 'to': '/phone'},"
         "{'to': '/phone', 'from': '/phone', 'type': 'phone_e164',"
         " 'default_region': 'US'},"
         "{'to': '/phone_masked', 'from': '/phone', 'mask': 'last4'},"
         "{'remove': '/phone'}",
         "{'Phone': '415 555 0132'}", "{'phone_masked': '+*******0132'}");

    /* a root array is a document too */
    edit("{'to': '/0/x', 'constant': 1}, {'remove': '/1'}",
         "[{}, 'drop', 'keep']", "[{'x': 1}, 'keep']");
}


static void
test_edit_set_errors(void **state)
{
    /* required; an entry that fails leaves its target, the others run */
    edit_fails("{'to': '/email', 'from': '/Email', 'required': true},"
               "{'to': '/n', 'from': '/n', 'type': 'integer'},"
               "{'to': '/ok', 'constant': true}",
               "{'n': '12ab'}",
               "fields[0] (/email): required, but \"/Email\" is missing or "
               "empty; fields[1] (/n): \"12ab\" is not an integer",
               "{'n': '12ab', 'ok': true}");

    /* writing through a non-container, or past an array's end */
    edit_fails("{'to': '/a/b/c', 'constant': 1}", "{'a': {'b': 'x'}}",
               "fields[0] (/a/b/c): cannot write inside \"/a/b\", a string",
               "{'a': {'b': 'x'}}");
    edit_fails("{'to': '/a/3', 'constant': 1}", "{'a': [0, 1]}",
               "fields[0] (/a/3): the array \"/a\" has no element 3: it "
               "has 2", "{'a': [0, 1]}");
    edit_fails("{'to': '/a/x', 'constant': 1}", "{'a': [0]}",
               "fields[0] (/a/x): \"/a\" is an array, and \"x\" is not an "
               "index", "{'a': [0]}");
    edit_fails("{'to': '/a/-/x', 'constant': 1}", "{'a': [0]}",
               "fields[0] (/a/-/x): \"/a\" is an array, and \"-\" appends "
               "only at the end of the path", "{'a': [0]}");
    edit_fails("{'to': '/source', 'constant': 1}", "[1]",
               "fields[0] (/source): the document is an array, and "
               "\"source\" is not an index", "[1]");
    edit_fails("{'to': 'a.0', 'constant': 1}", "{'a': [0]}",
               "fields[0] (a.0): \"/a\" is an array, and \"0\" is not an "
               "index", "{'a': [0]}");

    /* a masked value is never quoted; others are, masked */
    edit_fails("{'to': '/n', 'from': '/n', 'type': 'integer',"
               " 'mask': 'full'},"
               "{'to': '/m', 'from': '/m', 'type': 'integer'}",
               "{'n': '123456789x', 'm': '987654321x'}",
               "fields[0] (/n): the value is not an integer; fields[1] (/m): "
               "\"*****4321x\" is not an integer",
               "{'n': '123456789x', 'm': '987654321x'}");
}


static void
test_edit_pointers(void **state)
{
    /* ~1 is '/', ~0 is '~'; "" is a name too */
    edit("{'to': '/a~1b', 'from': '/m~0n'}, {'to': '/', 'constant': 0},"
         "{'to': '/~01', 'constant': 2}",
         "{'m~n': 1}", "{'m~n': 1, 'a/b': 1, '': 0, '~1': 2}");

    /* indices read and replace; "-" appends; "01" and "x" are names */
    edit("{'to': '/list/1', 'from': '/list/0'},"
         "{'to': '/list/-', 'constant': 'end'},"
         "{'to': '/first', 'from': '/list/0'},"
         "{'to': '/none', 'from': '/list/01'},"
         "{'to': '/obj/01', 'constant': 'name'},"
         "{'to': '/obj/-', 'constant': 'dash'}",
         "{'list': ['a', 'b'], 'obj': {}}",
         "{'list': ['a', 'a', 'end'], 'first': 'a',"
         " 'obj': {'01': 'name', '-': 'dash'}}");

    /* a pointer into arrays in project mode too; a dotted path never */
    check("{'to': '/out/x', 'from': '/in/1/v'},"
          "{'to': 'y', 'from': 'in.1.v'},"
          "{'to': '/z~1w', 'from': '/in/-'}",
          "{'in': [{'v': 1}, {'v': 2}]}", "{'out': {'x': 2}}");
}


static void
test_edit_remove(void **state)
{
    edit("{'remove': '/a'}, {'remove': '/b/c'}, {'remove': '/missing/x'},"
         "{'remove': '/l/0', 'note': 'the first'}",
         "{'a': 1, 'b': {'c': 2, 'd': 3}, 'l': [1, 2]}",
         "{'b': {'d': 3}, 'l': [2]}");
    edit("{'remove': 'b.c'}", "{'b': {'c': 2, 'd': 3}}", "{'b': {'d': 3}}");

    /* every match of a "*": elements and members */
    edit("{'remove': '/rows/*/secret'}, {'remove': '/tags/*'},"
         "{'remove': '/o/*'}",
         "{'rows': [{'secret': 1, 'k': 1}, {'k': 2}, 'x'],"
         " 'tags': [1, 2, 3], 'o': {'a': 1, 'b': 2}}",
         "{'rows': [{'k': 1}, {'k': 2}, 'x'], 'tags': [], 'o': {}}");

    /* removed, then set again */
    edit("{'remove': '/a'}, {'to': '/a', 'constant': 2}", "{'a': 1}",
         "{'a': 2}");
}


static void
test_edit_rename(void **state)
{
    edit("{'rename': '/FirstName', 'to': '/first_name'},"
         "{'rename': '/missing', 'to': '/x'},"
         "{'rename': '/Addr/City', 'to': '/address/city',"
         " 'note': 'into a new object'}",
         "{'FirstName': 'Ana', 'Addr': {'City': 'Lyon', 'Zip': '1'}}",
         "{'first_name': 'Ana', 'Addr': {'Zip': '1'},"
         " 'address': {'city': 'Lyon'}}");

    /* to the end of its own array; onto its ancestor; into an array */
    edit("{'rename': '/l/0', 'to': '/l/-'}", "{'l': [1, 2, 3]}",
         "{'l': [2, 3, 1]}");
    edit("{'rename': '/data/items', 'to': '/data'}",
         "{'data': {'items': [1], 'n': 1}}", "{'data': [1]}");
    edit("{'rename': '/x', 'to': '/l/0'}", "{'x': 9, 'l': [1, 2]}",
         "{'l': [9, 2]}");

    /* each member of each element, and each member of an object */
    edit("{'rename': '/rows/*/Name', 'to': '/rows/*/name'}",
         "{'rows': [{'Name': 'a'}, {'k': 1}, {'Name': 'c'}]}",
         "{'rows': [{'name': 'a'}, {'k': 1}, {'name': 'c'}]}");
    edit("{'rename': '/old/*', 'to': '/new/*'}",
         "{'old': {'a': 1, 'b': [2]}}", "{'old': {}, 'new': {'a': 1, "
         "'b': [2]}}");

    /* a member's name that is an index enters an array */
    edit("{'rename': '/o/*', 'to': '/l/*'}", "{'o': {'1': 'x'}, 'l': [0, 1]}",
         "{'o': {}, 'l': [0, 'x']}");

    /* elements moved out of an array keep the index they had */
    edit("{'rename': '/l/*', 'to': '/m/*'}", "{'l': ['a', 'b', 'c']}",
         "{'l': [], 'm': {'0': 'a', '1': 'b', '2': 'c'}}");

    /* a value cannot go inside itself, even when a "*" hides it */
    edit_fails("{'rename': '/*/v', 'to': '/v/*/x'}",
               "{'v': {'v': {}}}",
               "fields[0] (/v/*/x) at /v/v/x: cannot move \"/v/v\" inside "
               "itself", "{'v': {'v': {}}}");
}


static void
test_edit_wildcards(void **state)
{
    /* beside each element, masked */
    edit("{'to': '/accounts/*/last4', 'from': '/accounts/*/number',"
         " 'mask': 'last4'}",
         "{'accounts': [{'number': '4111111111111111'}, {'n': 1},"
         " {'number': '123456789'}]}",
         "{'accounts': [{'number': '4111111111111111',"
         " 'last4': '************1111'}, {'n': 1},"
         " {'number': '123456789', 'last4': '*****6789'}]}");

    /* a constant into each record; into each member of an object */
    edit("{'to': '/records/*/source', 'constant': 'api'}",
         "{'records': [{'id': 1}, {'id': 2}], 'n': 2}",
         "{'records': [{'id': 1, 'source': 'api'}, {'id': 2,"
         " 'source': 'api'}], 'n': 2}");
    edit("{'to': '/by_id/*/seen', 'constant': true}",
         "{'by_id': {'a': {}, 'b': {'x': 1}}}",
         "{'by_id': {'a': {'seen': true}, 'b': {'x': 1, 'seen': true}}}");

    /* elements replaced, each by its conversion */
    edit("{'to': '/n/*', 'from': '/n/*', 'type': 'integer'}",
         "{'n': ['1', 2, '3']}", "{'n': [1, 2, 3]}");
    edit("{'to': '/o/*', 'from': '/o/*', 'type': 'string'}",
         "{'o': {'a': 1, 'b': true}}", "{'o': {'a': '1', 'b': 'true'}}");

    /* two levels; a member's name bound into another object */
    edit("{'to': '/t/*/l/*/v', 'from': '/t/*/l/*/v', 'transform':"
         " 'uppercase'}",
         "{'t': [{'l': [{'v': 'a'}, {'v': 'b'}]}, {'l': {'k': {'v': 'c'}}}]}",
         "{'t': [{'l': [{'v': 'A'}, {'v': 'B'}]}, {'l': {'k': {'v': 'C'}}}]}");
    edit("{'to': '/copy/*/id', 'from': '/src/*'}",
         "{'src': {'x': 1, 'y': 2}}",
         "{'src': {'x': 1, 'y': 2}, 'copy': {'x': {'id': 1},"
         " 'y': {'id': 2}}}");

    /* a concat per element; a default per element */
    edit("{'to': '/p/*/name', 'concat': ['/p/*/first', '/p/*/last']},"
         "{'to': '/p/*/status', 'from': '/p/*/status', 'default': 'new'}",
         "{'p': [{'first': 'Ana', 'last': 'Lima'}, {'last': 'Ng',"
         " 'status': 'old'}]}",
         "{'p': [{'first': 'Ana', 'last': 'Lima', 'name': 'Ana Lima',"
         " 'status': 'new'}, {'last': 'Ng', 'status': 'old', 'name': 'Ng'}]}");

    /* nothing to match: absent, empty, or not a container */
    edit("{'to': '/a/*/x', 'constant': 1}, {'to': '/b/*/x', 'constant': 1},"
         "{'to': '/c/*/x', 'constant': 1}, {'remove': '/d/*'}",
         "{'b': [], 'c': 'str', 'd': 4}", "{'b': [], 'c': 'str', 'd': 4}");

    /* each match fails alone, and is named */
    edit_fails("{'to': '/p/*/email', 'from': '/p/*/email', 'required':"
               " true}",
               "{'p': [{'email': 'a@b.c'}, {}, {'email': ''}]}",
               "fields[0] (/p/*/email) at /p/1/email: required, but "
               "\"/p/*/email\" is missing or empty; fields[0] (/p/*/email) "
               "at /p/2/email: required, but \"/p/*/email\" is missing or "
               "empty",
               "{'p': [{'email': 'a@b.c'}, {}, {'email': ''}]}");
    edit_fails("{'to': '/p/*/n', 'from': '/p/*/n', 'type': 'number'}",
               "{'p': {'a': {'n': '1'}, 'b~/': {'n': 'x'}}}",
               "fields[0] (/p/*/n) at /p/b~0~1/n: \"x\" is not a number",
               "{'p': {'a': {'n': 1}, 'b~/': {'n': 'x'}}}");
}


/* what the module synthesizes for vantage_mask */
static void
test_edit_vantage_mask(void **state)
{
    edit("{'to': '/client/ssn', 'from': '/client/ssn', 'mask': 'full'},"
         "{'to': '/accounts/*/number', 'from': '/accounts/*/number',"
         " 'mask': 'last4'}",
         "{'client': {'ssn': '123-45-6789', 'name': 'Ana'},"
         " 'accounts': [{'number': '000123456789', 'type': 'checking'},"
         " {'number': 12345678901}, {'type': 'none'}]}",
         "{'client': {'ssn': '***-**-****', 'name': 'Ana'},"
         " 'accounts': [{'number': '********6789', 'type': 'checking'},"
         " {'number': '*******8901'}, {'type': 'none'}]}");
}


static void
test_edit_load_errors(void **state)
{
    bad_doc("{'name': 't', 'from': 'a', 'to': 'b', 'mode': 'patch',"
            " 'fields': [{'to': 'x', 'from': 'y'}]}",
            "m.json: \"mode\" must be \"project\" or \"edit\"");
    bad_doc("{'name': 't', 'from': 'a', 'to': 'b', 'mode': 1,"
            " 'fields': [{'to': 'x', 'from': 'y'}]}",
            "m.json: \"mode\" must be \"project\" or \"edit\"");

    /* project mode: no "*", no remove or rename */
    bad("{'to': '/a/*/b', 'constant': 1}", "fields[0] (/a/*/b): \"to\": "
        "\"*\" (every element or member) needs \"mode\": \"edit\"");
    bad("{'to': 'x', 'from': '/a/*'}", "fields[0] (x): \"from\": \"*\" "
        "(every element or member) needs \"mode\": \"edit\"");
    bad("{'remove': '/a'}", "fields[0] (/a): \"remove\" needs \"mode\": "
        "\"edit\"");
    bad("{'rename': '/a', 'to': '/b'}", "fields[0] (/b): \"rename\" needs "
        "\"mode\": \"edit\"");
    bad("{'to': '/a~2', 'from': 'y'}", "fields[0] (/a~2): \"to\" is not a "
        "JSON pointer: \"~\" must be followed by 0 or 1, at most 16 "
        "segments");
    bad("{'to': '/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q', 'from': 'y'}",
        "fields[0] (/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q): \"to\" is not a "
        "JSON pointer: \"~\" must be followed by 0 or 1, at most 16 "
        "segments");
    bad("{'to': 'x', 'from': '/y~'}", "fields[0] (x): \"from\" is not a "
        "JSON pointer: \"~\" must be followed by 0 or 1, at most 16 "
        "segments");
    bad("{'to': 'x', 'concat': ['/a', '/b~']}", "fields[0] (x): concat[1] "
        "is not a JSON pointer: \"~\" must be followed by 0 or 1, at most "
        "16 segments");

    /* a pointer and a dotted path to one place are one target */
    bad("{'to': '/a/b', 'from': 'y'}, {'to': 'a.b', 'from': 'z'}",
        "fields[1] (a.b): \"to\" is also the target of fields[0]");

    /* the entries of edit mode */
    bad_edit("{'remove': '/a', 'to': '/b'}", "fields[0] (/a): \"remove\" "
             "takes no \"to\"; only \"note\"");
    bad_edit("{'remove': '/a', 'mask': 'full'}", "fields[0] (/a): "
             "\"remove\" takes no \"mask\"; only \"note\"");
    bad_edit("{'rename': '/a', 'to': '/b', 'type': 'string'}",
             "fields[0] (/b): \"rename\" takes no \"type\"; only \"to\" and "
             "\"note\"");
    bad_edit("{'rename': '/a', 'remove': '/b'}", "fields[0] (/b): "
             "\"remove\" and \"rename\" cannot be used together");
    bad_edit("{'rename': '/a'}", "fields[0]: \"rename\" needs \"to\"");
    bad_edit("{'remove': 1}", "fields[0]: \"remove\" must be a JSON pointer "
             "or a dotted path, at most 16 segments, \"~\" followed by 0 or "
             "1");
    bad_edit("{'rename': '/a~', 'to': '/b'}", "fields[0] (/b): \"rename\" "
             "must be a JSON pointer or a dotted path, at most 16 segments, "
             "\"~\" followed by 0 or 1");
    bad_edit("{'rename': '/a', 'to': 'b..c'}", "fields[0] (b..c): \"to\" "
             "must be a JSON pointer or a dotted path, at most 16 segments, "
             "\"~\" followed by 0 or 1");
    bad_edit("{'remove': '/a', 'note': 1}", "fields[0] (/a): \"note\" must "
             "be a string");
    bad_edit("{'rename': '/a', 'to': 'a'}", "fields[0] (a): \"rename\" and "
             "\"to\" are the same");
    bad_edit("{'rename': '/a', 'to': '/a/b'}", "fields[0] (/a/b): \"to\" is "
             "inside \"rename\": a value cannot move inside itself");
    bad_edit("{'rename': '/a/*', 'to': '/b'}", "fields[0] (/b): \"to\" has "
             "0 \"*\" but \"rename\" has 1: each value moved needs its own "
             "target");
    bad_edit("{'to': 'x', 'from': 'y', 'tpye': 'string'}", "fields[0] (x): "
             "unknown member \"tpye\"; expected one of to, from, concat, "
             "sep, constant, split, transform, lookup, lookup_default, type, "
             "format_in, format_out, default_region, default, required, "
             "mask, note, remove, rename");

    /* "*": as many in "to" as in the source; dotted "*" is ambiguous */
    bad_edit("{'to': '/a/*/b', 'from': '/c'}", "fields[0] (/a/*/b): \"to\" "
             "has 1 \"*\" but \"from\" has 0: each match of \"from\" needs "
             "its own target");
    bad_edit("{'to': '/a', 'from': '/c/*'}", "fields[0] (/a): \"to\" has 0 "
             "\"*\" but \"from\" has 1: each match of \"from\" needs its own "
             "target");
    bad_edit("{'to': '/a/*', 'concat': ['/b/*/x', '/b/y']}",
             "fields[0] (/a/*): \"to\" has 1 \"*\" but concat[1] has 0: each "
             "match needs its own target");
    bad_edit("{'to': '/a/*', 'concat': ['/b/*/x', '/c/*/y']}",
             "fields[0] (/a/*): concat[1] and concat[0] must be the same up "
             "to their last \"*\", so that they read the same element");
    bad_edit("{'to': 'a.*', 'constant': 1}", "fields[0] (a.*): \"to\": a "
             "name \"*\" is ambiguous in edit mode; write a JSON pointer, "
             "\"/a/*\" for every element or member");
    bad_edit("{'remove': '*.x'}", "fields[0] (*.x): \"remove\": a name "
             "\"*\" is ambiguous in edit mode; write a JSON pointer, "
             "\"/a/*\" for every element or member");

    /* work certainly undone before anything reads it */
    bad_edit("{'to': '/a', 'from': '/x'}, {'to': '/b', 'from': '/y'},"
             "{'to': '/a', 'constant': 1}",
             "fields[2] (/a): overwrites what fields[0] writes, and nothing "
             "reads it in between");
    bad_edit("{'to': '/a/b', 'constant': 1}, {'to': '/a', 'from': '/x',"
             " 'default': {}}",
             "fields[1] (/a): overwrites what fields[0] writes, and nothing "
             "reads it in between");
    bad_edit("{'to': '/r/*/x', 'constant': 1}, {'remove': '/r/*'}",
             "fields[1] (/r/*): removes what fields[0] writes, and nothing "
             "reads it in between");
    bad_edit("{'rename': '/x', 'to': '/y'}, {'remove': '/y'}",
             "fields[1] (/y): removes what fields[0] writes, and nothing "
             "reads it in between");
    bad_edit("{'remove': '/a'}, {'to': '/a', 'constant': 1},"
             "{'remove': '/a'}",
             "fields[2] (/a): removes what fields[1] writes, and nothing "
             "reads it in between");
    bad_edit("{'remove': '/a/*'}, {'remove': '/a/b'}",
             "fields[1] (/a/b): already removed by fields[0]");
}


/* what edit mode allows of several entries on one target */
static void
test_edit_same_target(void **state)
{
    vc_map_free(load_edit(
        "{'to': '/a', 'from': '/a', 'type': 'integer'},"
        "{'to': '/a', 'from': '/a', 'mask': 'full'}"));
    vc_map_free(load_edit(
        "{'rename': '/A', 'to': '/a'}, {'to': '/a', 'from': '/a',"
        " 'default': 0}"));
    vc_map_free(load_edit(
        "{'to': '/a', 'from': '/x'}, {'to': '/a', 'from': '/y'}"));
    vc_map_free(load_edit(
        "{'to': '/a', 'constant': 1}, {'to': '/b', 'from': '/a'},"
        "{'remove': '/a'}"));
    vc_map_free(load_edit(
        "{'remove': '/a'}, {'rename': '/b', 'to': '/a'},"
        "{'to': '/c', 'from': '/a'}, {'remove': '/a'}"));
    vc_map_free(load_edit(
        "{'remove': '/a/b'}, {'remove': '/a/*'}"));
    vc_map_free(load_edit(
        "{'to': '/l/-', 'constant': 1}, {'to': '/l/-', 'constant': 2}"));

    /* a later source wins when present; an earlier one stays otherwise */
    edit("{'to': '/a', 'from': '/x'}, {'to': '/a', 'from': '/y'}",
         "{'x': 1}", "{'x': 1, 'a': 1}");
    edit("{'to': '/a', 'from': '/x'}, {'to': '/a', 'from': '/y'}",
         "{'x': 1, 'y': 2}", "{'x': 1, 'y': 2, 'a': 2}");
    edit("{'to': '/l/-', 'constant': 1}, {'to': '/l/-', 'constant': 2}",
         "{'l': []}", "{'l': [1, 2]}");
}


static void
test_apply_doc(void **state)
{
    char       err[ERRLEN];
    json_t    *in, *out;
    vc_map_t  *map;

    /* project mode: an object as vc_map_apply(), an array each element */
    map = load("{'to': 'e', 'from': 'Email', 'required': true},"
               "{'to': 'n', 'from': 'N', 'type': 'integer'}");
    assert_int_equal(vc_map_edits(map), 0);

    in = parse("{'Email': 'a@b.c', 'N': '1'}");
    assert_int_equal(vc_map_apply_doc(map, in, &out, err, sizeof(err)),
                     VC_OK);
    expect(out, "{'e': 'a@b.c', 'n': 1}");
    json_decref(out);
    json_decref(in);

    in = parse("[{'Email': 'a@b.c'}, {'Email': 'd@e.f', 'N': 2}]");
    assert_int_equal(vc_map_apply_doc(map, in, &out, err, sizeof(err)),
                     VC_OK);
    assert_string_equal(err, "");
    expect(out, "[{'e': 'a@b.c'}, {'e': 'd@e.f', 'n': 2}]");
    expect(in, "[{'Email': 'a@b.c'}, {'Email': 'd@e.f', 'N': 2}]");
    json_decref(out);
    json_decref(in);

    in = parse("[]");
    assert_int_equal(vc_map_apply_doc(map, in, &out, err, sizeof(err)),
                     VC_OK);
    expect(out, "[]");
    json_decref(out);
    json_decref(in);

    in = parse("[{'Email': 'a@b.c'}, {'N': '123456789012x'}]");
    out = (json_t *) 1;
    assert_int_equal(vc_map_apply_doc(map, in, &out, err, sizeof(err)),
                     VC_ERROR);
    assert_null(out);
    assert_string_equal(err, "[1] fields[0] (e): required, but \"Email\" "
                        "is missing or empty; fields[1] (n): "
                        "\"********9012x\" is not an integer");
    json_decref(in);

    in = parse("[{'Email': 'a@b.c'}, 3]");
    assert_int_equal(vc_map_apply_doc(map, in, &out, err, sizeof(err)),
                     VC_ERROR);
    assert_null(out);
    assert_string_equal(err, "[1] not a JSON object");
    json_decref(in);

    in = parse("'text'");
    assert_int_equal(vc_map_apply_doc(map, in, &out, err, sizeof(err)),
                     VC_ERROR);
    assert_string_equal(err, "the document is not a JSON object or array");

    /* a short buffer is still terminated, and a NULL one is fine */
    assert_int_equal(vc_map_apply_doc(map, in, &out, err, 5), VC_ERROR);
    assert_string_equal(err, "the ");
    assert_int_equal(vc_map_apply_doc(map, in, &out, NULL, 0), VC_ERROR);
    json_decref(in);

    in = parse("[{'N': 1}]");
    assert_int_equal(vc_map_apply_doc(map, in, &out, err, 8), VC_ERROR);
    assert_string_equal(err, "[0] fie");
    assert_int_equal(vc_map_apply_doc(map, in, &out, NULL, 0), VC_ERROR);
    json_decref(in);
    vc_map_free(map);

    /* edit mode: only objects and arrays */
    map = load_edit("{'remove': '/a'}");
    in = parse("12");
    assert_int_equal(vc_map_apply_doc(map, in, &out, err, sizeof(err)),
                     VC_ERROR);
    assert_string_equal(err, "the document is not a JSON object or array");
    json_decref(in);

    in = parse("[1]");
    assert_int_equal(vc_map_apply(map, in, &out, err, sizeof(err)),
                     VC_ERROR);
    assert_string_equal(err, "the record is not a JSON object");
    json_decref(in);
    vc_map_free(map);
}


/* which fields a mapping reads, for the worker's reads */
static void
test_field_from(void **state)
{
    vc_map_t  *map;

    map = load_edit("{'to': '/a', 'from': '/x/y'},"
                    "{'to': '/b', 'concat': ['c', '/d']},"
                    "{'to': '/c', 'constant': 1},"
                    "{'remove': '/d'},"
                    "{'rename': '/e', 'to': '/f'}");
    assert_int_equal(vc_map_nfields(map), 5);
    assert_string_equal(vc_map_field_from(map, 0), "/x/y");
    assert_string_equal(vc_map_field_from(map, 1), "c");
    assert_null(vc_map_field_from(map, 2));
    assert_null(vc_map_field_from(map, 3));
    assert_string_equal(vc_map_field_from(map, 4), "/e");
    assert_null(vc_map_field_from(map, 5));
    vc_map_free(map);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_rename_and_paths),
        cmocka_unit_test(test_output_shares_nothing),
        cmocka_unit_test(test_constant),
        cmocka_unit_test(test_default_and_required),
        cmocka_unit_test(test_transforms),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_booleans),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_phones),
        cmocka_unit_test(test_masks),
        cmocka_unit_test(test_apply_errors),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_examples),
        cmocka_unit_test(test_examples_refuse),
        cmocka_unit_test(test_edit_set),
        cmocka_unit_test(test_edit_set_errors),
        cmocka_unit_test(test_edit_pointers),
        cmocka_unit_test(test_edit_remove),
        cmocka_unit_test(test_edit_rename),
        cmocka_unit_test(test_edit_wildcards),
        cmocka_unit_test(test_edit_vantage_mask),
        cmocka_unit_test(test_edit_load_errors),
        cmocka_unit_test(test_edit_same_target),
        cmocka_unit_test(test_apply_doc),
        cmocka_unit_test(test_field_from),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
