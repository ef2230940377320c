/* sf_common.c -- what the Salesforce REST and Bulk API connectors share */

/*
 * The answers of Salesforce's two APIs read alike: Sforce-Limit-Info on
 * every response, errors as an array of {"message", "errorCode",
 * "fields"}; and both send a request with a bearer token whose header
 * line must be cleared when it is freed.  salesforce.c and sf_bulk.c
 * read and send them through this file (vw_sf_common.h).
 */

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <jansson.h>

#include "vw_core.h"
#include "vw_sf_common.h"


static void vw_sf_word(char *out, size_t size, size_t *len, const char *s);
static void vw_sf_text(char *out, size_t size, size_t *len, const char *s);


/* "api-usage=N/M" or "api-usage=N/M; api-bursts=..." */
int
vw_sf_parse_usage(const char *p, size_t len, uint64_t *used, uint64_t *max)
{
    int          digits;
    uint64_t     n[2];
    unsigned     i;
    const char  *end, *key;

    end = p + len;
    key = "api-usage=";

    while (p < end && (size_t) (end - p) >= strlen(key)) {
        if (strncasecmp(p, key, strlen(key)) == 0) {
            break;
        }

        p++;
    }

    if (p >= end || (size_t) (end - p) < strlen(key)) {
        return VW_ERROR;
    }

    p += strlen(key);

    for (i = 0; i < 2; i++) {
        n[i] = 0;
        digits = 0;

        while (p < end && *p >= '0' && *p <= '9' && digits < 18) {
            n[i] = n[i] * 10 + (uint64_t) (*p - '0');
            p++;
            digits++;
        }

        if (digits == 0) {
            return VW_ERROR;
        }

        if (i == 0) {
            if (p >= end || *p != '/') {
                return VW_ERROR;
            }

            p++;
        }
    }

    *used = n[0];
    *max = n[1];

    return VW_OK;
}


/* frees a header list, the Authorization line cleared first */
void
vw_sf_headers_free(struct curl_slist *l)
{
    struct curl_slist  *h;

    for (h = l; h != NULL; h = h->next) {
        explicit_bzero(h->data, strlen(h->data));
    }

    curl_slist_free_all(l);
}


int
vw_sf_append(struct curl_slist **list, const char *line)
{
    struct curl_slist  *l;

    l = curl_slist_append(*list, line);
    if (l == NULL) {
        return VW_ERROR;
    }

    *list = l;

    return VW_OK;
}


/* a code or field name as it goes into an error text: [A-Za-z0-9_.] */
static void
vw_sf_word(char *out, size_t size, size_t *len, const char *s)
{
    for ( /* void */ ; *s && *len + 1 < size; s++) {
        out[(*len)++] = (isalnum((unsigned char) *s) || *s == '_'
                         || *s == '.') ? *s : '?';
    }

    out[*len] = '\0';
}


static void
vw_sf_text(char *out, size_t size, size_t *len, const char *s)
{
    for ( /* void */ ; *s && *len + 1 < size; s++) {
        out[(*len)++] = *s;
    }

    out[*len] = '\0';
}


/*
 * One error of a REST error array or a SaveResult's errors, "CODE
 * [field,field]", appended to out unless it is there already; flags
 * collect what the codes say.
 */
void
vw_sf_error_item(json_t *e, char *out, size_t size, unsigned *flags)
{
    char         item[128];
    size_t       len, i, olen;
    json_t      *f, *fields;
    const char  *code;

    code = json_string_value(json_object_get(e, "errorCode"));
    if (code == NULL) {
        code = json_string_value(json_object_get(e, "statusCode"));
    }

    if (code == NULL) {
        return;
    }

    if (strcmp(code, "UNABLE_TO_LOCK_ROW") == 0) {
        *flags |= VW_SF_LOCK;

    } else if (strcmp(code, "REQUEST_LIMIT_EXCEEDED") == 0) {
        *flags |= VW_SF_LIMIT;

    } else if (strcmp(code, "INVALID_SESSION_ID") == 0) {
        *flags |= VW_SF_SESSION;
    }

    len = 0;
    item[0] = '\0';
    vw_sf_word(item, sizeof(item), &len, code);

    fields = json_object_get(e, "fields");

    if (json_is_array(fields) && json_array_size(fields) > 0) {
        vw_sf_text(item, sizeof(item), &len, " [");

        json_array_foreach(fields, i, f) {
            if (!json_is_string(f)) {
                continue;
            }

            if (i > 0) {
                vw_sf_text(item, sizeof(item), &len, ",");
            }

            vw_sf_word(item, sizeof(item), &len, json_string_value(f));
        }

        vw_sf_text(item, sizeof(item), &len, "]");
    }

    olen = strlen(out);

    /* "A [x]" is there already when it ends the text or precedes "; " */
    for (i = 0; i + strlen(item) <= olen; i++) {
        if (strncmp(out + i, item, strlen(item)) == 0
            && (i == 0 || out[i - 1] == ' ')
            && (out[i + strlen(item)] == '\0'
                || out[i + strlen(item)] == ';'))
        {
            return;
        }
    }

    if (olen > 0 && out[olen - 1] != ' ') {
        vw_sf_text(out, size, &olen, "; ");
    }

    vw_sf_text(out, size, &olen, item);
}


/* the REST error array of a refused call; flags say what it holds */
void
vw_sf_errors(const unsigned char *p, size_t len, char *out, size_t size,
    unsigned *flags)
{
    size_t        i;
    json_t       *doc, *e;
    json_error_t  jerr;

    if (p == NULL || len == 0) {
        return;
    }

    doc = json_loadb((const char *) p, len, 0, &jerr);
    if (doc == NULL) {
        return;
    }

    if (json_is_array(doc)) {
        json_array_foreach(doc, i, e) {
            if (json_is_object(e)) {
                vw_sf_error_item(e, out, size, flags);
            }
        }

    } else if (json_is_object(doc)) {
        vw_sf_error_item(doc, out, size, flags);
    }

    json_decref(doc);
}
