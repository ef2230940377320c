/* vc_apikeys.c -- API key files: parse, look a key up by its hash, check it */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "vc_apikeys.h"


static int vc_apikeys_entry(vc_apikey_t *key, json_t *e, size_t pos,
    char *errstr, size_t errlen);
static int vc_apikeys_cmp(const void *a, const void *b);
static int vc_apikeys_hex(unsigned char *dst, const char *s, size_t len);
static char *vc_apikeys_dup(const char *s, size_t len);
static int vc_apikey_has_word(const char *list, size_t len,
    const char *word);
static int vc_apikey_digits(const char *s, int n);


static const char  *vc_apikeys_members[] = {
    "id", "sha256", "tenant", "scopes", "expires", "disabled", "created",
    "note", NULL
};


int
vc_apikeys_load(vc_apikeys_t *set, const char *buf, size_t len,
    char *errstr, size_t errlen)
{
    size_t         i;
    json_t        *doc, *keys;
    json_error_t   jerr;

    doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        snprintf(errstr, errlen, "invalid JSON at line %d: %s", jerr.line,
                 jerr.text);
        return VC_ERROR;
    }

    keys = json_is_object(doc) ? json_object_get(doc, "keys") : NULL;

    if (!json_is_array(keys) || json_object_size(doc) != 1) {
        snprintf(errstr, errlen, "not a JSON object with one member, "
                 "\"keys\", an array");
        json_decref(doc);
        return VC_ERROR;
    }

    set->nkeys = 0;
    set->keys = calloc(json_array_size(keys) + 1, sizeof(vc_apikey_t));
    if (set->keys == NULL) {
        snprintf(errstr, errlen, "out of memory");
        json_decref(doc);
        return VC_ERROR;
    }

    for (i = 0; i < json_array_size(keys); i++) {
        if (vc_apikeys_entry(&set->keys[i], json_array_get(keys, i), i + 1,
                             errstr, errlen)
            != VC_OK)
        {
            set->nkeys = i + 1;
            goto failed;
        }

        set->nkeys = i + 1;
    }

    json_decref(doc);
    doc = NULL;

    /* ids unique: a quadratic check is fine for files of a few thousand */

    for (i = 0; i < set->nkeys; i++) {
        size_t  j;

        for (j = 0; j < i; j++) {
            if (set->keys[i].id_len == set->keys[j].id_len
                && memcmp(set->keys[i].id, set->keys[j].id,
                          set->keys[i].id_len) == 0)
            {
                snprintf(errstr, errlen, "entry %zu: id \"%s\" is also the "
                         "id of entry %zu", i + 1, set->keys[i].id, j + 1);
                goto failed;
            }
        }
    }

    qsort(set->keys, set->nkeys, sizeof(vc_apikey_t), vc_apikeys_cmp);

    for (i = 1; i < set->nkeys; i++) {
        if (memcmp(set->keys[i].sha256, set->keys[i - 1].sha256, 32) == 0) {
            snprintf(errstr, errlen, "entries \"%s\" and \"%s\" have the "
                     "same sha256", set->keys[i - 1].id, set->keys[i].id);
            goto failed;
        }
    }

    return VC_OK;

failed:

    json_decref(doc);
    vc_apikeys_free(set);

    return VC_ERROR;
}


static int
vc_apikeys_entry(vc_apikey_t *key, json_t *e, size_t pos, char *errstr,
    size_t errlen)
{
    int          i;
    size_t       j, n;
    char        *p;
    json_t      *v, *s;
    const char  *name, *str, *id;

    if (!json_is_object(e)) {
        snprintf(errstr, errlen, "entry %zu: not a JSON object", pos);
        return VC_ERROR;
    }

    v = json_object_get(e, "id");
    if (!json_is_string(v)
        || !vc_apikey_id_valid(json_string_value(v), json_string_length(v)))
    {
        snprintf(errstr, errlen, "entry %zu: \"id\" must be 1 to %d of "
                 "A-Z a-z 0-9 . -", pos, VC_APIKEY_ID_MAX);
        return VC_ERROR;
    }

    id = json_string_value(v);

    json_object_foreach(e, name, v) {
        for (i = 0; vc_apikeys_members[i]; i++) {
            if (strcmp(name, vc_apikeys_members[i]) == 0) {
                break;
            }
        }

        if (vc_apikeys_members[i] == NULL) {
            /* the name is the file's, not a secret: cut, not quoted raw */
            snprintf(errstr, errlen, "entry %zu (id \"%s\"): unknown member "
                     "\"%.32s\"", pos, id, name);
            return VC_ERROR;
        }
    }

    key->id_len = strlen(id);
    key->id = vc_apikeys_dup(id, key->id_len);

    v = json_object_get(e, "sha256");
    if (!json_is_string(v)
        || vc_apikeys_hex(key->sha256, json_string_value(v),
                          json_string_length(v))
           != VC_OK)
    {
        snprintf(errstr, errlen, "entry %zu (id \"%s\"): \"sha256\" must be "
                 "64 hex digits", pos, id);
        return VC_ERROR;
    }

    v = json_object_get(e, "tenant");
    if (!json_is_string(v)
        || !vc_apikey_token_valid(json_string_value(v),
                                  json_string_length(v),
                                  VC_APIKEY_TENANT_MAX))
    {
        snprintf(errstr, errlen, "entry %zu (id \"%s\"): \"tenant\" must be "
                 "1 to %d printable characters without space, '\"' or "
                 "'\\'", pos, id, VC_APIKEY_TENANT_MAX);
        return VC_ERROR;
    }

    key->tenant_len = json_string_length(v);
    key->tenant = vc_apikeys_dup(json_string_value(v), key->tenant_len);

    v = json_object_get(e, "scopes");
    n = 0;

    if (v != NULL) {
        if (!json_is_array(v) || json_array_size(v) > VC_APIKEY_SCOPES_MAX) {
            snprintf(errstr, errlen, "entry %zu (id \"%s\"): \"scopes\" must "
                     "be an array of at most %d strings", pos, id,
                     VC_APIKEY_SCOPES_MAX);
            return VC_ERROR;
        }

        json_array_foreach(v, j, s) {
            if (!json_is_string(s)
                || !vc_apikey_token_valid(json_string_value(s),
                                          json_string_length(s),
                                          VC_APIKEY_SCOPE_MAX))
            {
                snprintf(errstr, errlen, "entry %zu (id \"%s\"): scope %zu "
                         "must be 1 to %d printable characters without "
                         "space, '\"' or '\\'", pos, id, j + 1,
                         VC_APIKEY_SCOPE_MAX);
                return VC_ERROR;
            }

            n += json_string_length(s) + 1;
        }
    }

    key->scopes = malloc(n + 1);
    if (key->scopes == NULL || key->id == NULL || key->tenant == NULL) {
        snprintf(errstr, errlen, "out of memory");
        return VC_ERROR;
    }

    p = key->scopes;

    if (v != NULL) {
        json_array_foreach(v, j, s) {
            if (j) {
                *p++ = ' ';
            }

            memcpy(p, json_string_value(s), json_string_length(s));
            p += json_string_length(s);
        }
    }

    *p = '\0';
    key->scopes_len = p - key->scopes;

    v = json_object_get(e, "expires");

    if (json_is_integer(v) && json_integer_value(v) > 0) {
        key->expires = json_integer_value(v);

    } else if (json_is_string(v)
               && vc_rfc3339_parse(json_string_value(v),
                                   json_string_length(v), &key->expires)
                  == VC_OK
               && key->expires > 0)
    {
        /* void */

    } else if (v != NULL) {
        snprintf(errstr, errlen, "entry %zu (id \"%s\"): \"expires\" must be "
                 "positive unix seconds or an RFC 3339 time such as "
                 "\"2026-01-31T08:00:00Z\"", pos, id);
        return VC_ERROR;
    }

    v = json_object_get(e, "disabled");

    if (v != NULL && !json_is_boolean(v)) {
        snprintf(errstr, errlen, "entry %zu (id \"%s\"): \"disabled\" must "
                 "be true or false", pos, id);
        return VC_ERROR;
    }

    key->disabled = json_is_true(v);

    for (i = 0; i < 2; i++) {
        str = i ? "note" : "created";
        v = json_object_get(e, str);

        if (v != NULL && !json_is_string(v)) {
            snprintf(errstr, errlen, "entry %zu (id \"%s\"): \"%s\" must be "
                     "a string", pos, id, str);
            return VC_ERROR;
        }
    }

    return VC_OK;
}


void
vc_apikeys_free(vc_apikeys_t *set)
{
    size_t  i;

    for (i = 0; set->keys && i < set->nkeys; i++) {
        free(set->keys[i].id);
        free(set->keys[i].tenant);
        free(set->keys[i].scopes);
    }

    free(set->keys);
    set->keys = NULL;
    set->nkeys = 0;
}


const vc_apikey_t *
vc_apikeys_find(const vc_apikeys_t *set, const unsigned char *digest)
{
    int     c;
    size_t  lo, hi, mid;

    lo = 0;
    hi = set->nkeys;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        c = memcmp(digest, set->keys[mid].sha256, 32);

        if (c == 0) {
            /* memcmp() stops at the first difference: this does not */
            return CRYPTO_memcmp(digest, set->keys[mid].sha256, 32) == 0
                   ? &set->keys[mid] : NULL;
        }

        if (c < 0) {
            hi = mid;

        } else {
            lo = mid + 1;
        }
    }

    return NULL;
}


vc_apikey_verdict_e
vc_apikey_check(const vc_apikey_t *key, int64_t now,
    const vc_require_t *requires, size_t nrequires, char *reason,
    vc_auth_outcome_e *outcome)
{
    size_t               i, j, n;
    const char          *claim;
    const vc_require_t  *req;

    if (key->disabled) {
        snprintf(reason, VC_ERRSTR_LEN, "the API key is disabled");
        *outcome = VC_AUTH_DISABLED;
        return VC_APIKEY_INVALID;
    }

    if (key->expires && now >= key->expires) {
        snprintf(reason, VC_ERRSTR_LEN, "the API key has expired");
        *outcome = VC_AUTH_EXPIRED;
        return VC_APIKEY_INVALID;
    }

    for (i = 0; i < nrequires; i++) {
        req = &requires[i];
        claim = req->claim;

        if (strcmp(claim, "iss") == 0 || strcmp(claim, "aud") == 0) {
            continue;
        }

        for (j = 0; j < req->nvalues; j++) {
            if (strcmp(claim, "scope") == 0 || strcmp(claim, "scp") == 0) {
                if (vc_apikey_has_word(key->scopes, key->scopes_len,
                                       req->values[j]))
                {
                    break;
                }

            } else if (strcmp(claim, "tenant") == 0) {
                if (strcmp(key->tenant, req->values[j]) == 0) {
                    break;
                }

            } else if (strcmp(claim, "sub") == 0) {
                if (strcmp(key->id, req->values[j]) == 0) {
                    break;
                }
            }
        }

        if (j < req->nvalues) {
            continue;
        }

        /* as vc_jwt_check_claims() says it, the name cut to fit */

        n = strlen(claim);
        if (n > VC_ERRSTR_LEN - 32) {
            n = VC_ERRSTR_LEN - 32;
            while (n && ((unsigned char) claim[n] & 0xc0) == 0x80) {
                n--;
            }
        }

        snprintf(reason, VC_ERRSTR_LEN, "claim \"%.*s\" not accepted",
                 (int) n, claim);
        *outcome = VC_AUTH_CLAIM_REFUSED;

        return VC_APIKEY_FORBIDDEN;
    }

    *outcome = VC_AUTH_OK;

    return VC_APIKEY_VALID;
}


int
vc_rfc3339_parse(const char *s, size_t len, int64_t *t)
{
    int         off;
    size_t      i;
    struct tm   tm;
    time_t      secs;
    static int  mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

    /* 2026-01-31T08:00:00 */

    if (len < 20
        || !vc_apikey_digits(s, 4) || s[4] != '-'
        || !vc_apikey_digits(s + 5, 2) || s[7] != '-'
        || !vc_apikey_digits(s + 8, 2)
        || (s[10] != 'T' && s[10] != 't')
        || !vc_apikey_digits(s + 11, 2) || s[13] != ':'
        || !vc_apikey_digits(s + 14, 2) || s[16] != ':'
        || !vc_apikey_digits(s + 17, 2))
    {
        return VC_ERROR;
    }

    memset(&tm, 0, sizeof(struct tm));
    tm.tm_year = atoi(s) - 1900;
    tm.tm_mon = (s[5] - '0') * 10 + s[6] - '0' - 1;
    tm.tm_mday = (s[8] - '0') * 10 + s[9] - '0';
    tm.tm_hour = (s[11] - '0') * 10 + s[12] - '0';
    tm.tm_min = (s[14] - '0') * 10 + s[15] - '0';
    tm.tm_sec = (s[17] - '0') * 10 + s[18] - '0';

    if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1
        || tm.tm_mday > mdays[tm.tm_mon] || tm.tm_hour > 23
        || tm.tm_min > 59 || tm.tm_sec > 60)
    {
        return VC_ERROR;
    }

    i = 19;

    if (s[i] == '.') {
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
            /* void */
        }

        if (i == 20) {
            return VC_ERROR;
        }
    }

    if (i + 1 == len && (s[i] == 'Z' || s[i] == 'z')) {
        off = 0;

    } else if (i + 6 == len && (s[i] == '+' || s[i] == '-')
               && vc_apikey_digits(s + i + 1, 2) && s[i + 3] == ':'
               && vc_apikey_digits(s + i + 4, 2))
    {
        off = ((s[i + 1] - '0') * 10 + s[i + 2] - '0') * 3600
              + ((s[i + 4] - '0') * 10 + s[i + 5] - '0') * 60;

        if (off >= 24 * 3600) {
            return VC_ERROR;
        }

        if (s[i] == '+') {
            off = -off;
        }

    } else {
        return VC_ERROR;
    }

    secs = timegm(&tm);
    if (secs == (time_t) -1) {
        return VC_ERROR;
    }

    /* timegm() normalizes 02-30 to 03-02: a date that moved is refused */

    if (tm.tm_mday != (s[8] - '0') * 10 + s[9] - '0') {
        return VC_ERROR;
    }

    *t = (int64_t) secs + off;

    return VC_OK;
}


int
vc_apikey_id_valid(const char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len > VC_APIKEY_ID_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
              || (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '-'))
        {
            return 0;
        }
    }

    return 1;
}


/* RFC 6749 3.3 scope-token: 1*( %x21 / %x23-5B / %x5D-7E ) */
int
vc_apikey_token_valid(const char *s, size_t len, size_t max)
{
    size_t  i;

    if (len == 0 || len > max) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if ((unsigned char) s[i] < 0x21 || (unsigned char) s[i] > 0x7e
            || s[i] == '"' || s[i] == '\\')
        {
            return 0;
        }
    }

    return 1;
}


static int
vc_apikeys_cmp(const void *a, const void *b)
{
    return memcmp(((const vc_apikey_t *) a)->sha256,
                  ((const vc_apikey_t *) b)->sha256, 32);
}


static int
vc_apikeys_hex(unsigned char *dst, const char *s, size_t len)
{
    int     hi, lo;
    size_t  i;

    if (len != 64) {
        return VC_ERROR;
    }

    for (i = 0; i < 64; i += 2) {
        hi = OPENSSL_hexchar2int((unsigned char) s[i]);
        lo = OPENSSL_hexchar2int((unsigned char) s[i + 1]);

        if (hi < 0 || lo < 0) {
            return VC_ERROR;
        }

        dst[i / 2] = (unsigned char) (hi << 4 | lo);
    }

    return VC_OK;
}


static char *
vc_apikeys_dup(const char *s, size_t len)
{
    char  *p;

    p = malloc(len + 1);
    if (p != NULL) {
        memcpy(p, s, len);
        p[len] = '\0';
    }

    return p;
}


static int
vc_apikey_has_word(const char *list, size_t len, const char *word)
{
    size_t       n;
    const char  *p, *last, *end;

    n = strlen(word);
    p = list;
    last = list + len;

    while (p < last) {
        end = memchr(p, ' ', last - p);
        if (end == NULL) {
            end = last;
        }

        if ((size_t) (end - p) == n && memcmp(p, word, n) == 0) {
            return 1;
        }

        p = end + 1;
    }

    return 0;
}


static int
vc_apikey_digits(const char *s, int n)
{
    int  i;

    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }

    return 1;
}
