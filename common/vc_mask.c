/* vc_mask.c -- mask SSNs, account numbers and dates of birth in text */

#include <string.h>

#include "vc_mask.h"


#define vc_mask_digit(c)  ((c) >= '0' && (c) <= '9')


static size_t vc_mask_dob(unsigned char *p, size_t len);


size_t
vc_mask(unsigned char *p, size_t len)
{
    return vc_mask_kinds(p, len, VC_MASK_ALL);
}


size_t
vc_mask_kinds(unsigned char *p, size_t len, unsigned kinds)
{
    size_t  i, j, n, changed;

    changed = (kinds & VC_MASK_DOB) ? vc_mask_dob(p, len) : 0;

    /* SSN-like first: its groups are too short to be caught below */
    for (i = 0; (kinds & VC_MASK_SSN) && i + 11 <= len; i++) {
        if ((i > 0 && vc_mask_digit(p[i - 1]))
            || (i + 11 < len && vc_mask_digit(p[i + 11])))
        {
            continue;
        }

        if (vc_mask_digit(p[i]) && vc_mask_digit(p[i + 1])
            && vc_mask_digit(p[i + 2]) && p[i + 3] == '-'
            && vc_mask_digit(p[i + 4]) && vc_mask_digit(p[i + 5])
            && p[i + 6] == '-' && vc_mask_digit(p[i + 7])
            && vc_mask_digit(p[i + 8]) && vc_mask_digit(p[i + 9])
            && vc_mask_digit(p[i + 10]))
        {
            for (j = i; j < i + 11; j++) {
                if (p[j] != '-') {
                    p[j] = '*';
                    changed++;
                }
            }

            i += 10;
        }
    }

    if (!(kinds & VC_MASK_ACCOUNT)) {
        return changed;
    }

    for (i = 0; i < len; i = j) {
        if (!vc_mask_digit(p[i])) {
            j = i + 1;
            continue;
        }

        for (j = i; j < len && vc_mask_digit(p[j]); j++) {
            /* void */
        }

        n = j - i;

        if (n >= 9) {
            memset(p + i, '*', n - 4);
            changed += n - 4;
        }
    }

    return changed;
}


/* masks the values of members named like a date of birth */

static size_t
vc_mask_dob(unsigned char *p, size_t len)
{
    size_t  i, j, k, changed;

    changed = 0;

    for (i = 0; i < len; i++) {
        if (p[i] != '"') {
            continue;
        }

        /* a quoted string: a name when a colon follows */
        for (j = i + 1; j < len && p[j] != '"'; j++) {
            if (p[j] == '\\') {
                j++;
            }
        }

        if (j >= len) {
            return changed;
        }

        for (k = j + 1; k < len && (p[k] == ' ' || p[k] == '\t'
                                    || p[k] == '\r' || p[k] == '\n'); k++)
        {
            /* void */
        }

        if (k >= len || p[k] != ':' || !vc_mask_dob_name(p + i + 1, j - i - 1))
        {
            /* a value or another name: go on after its closing quote */
            i = j;
            continue;
        }

        for (k++; k < len && (p[k] == ' ' || p[k] == '\t'
                              || p[k] == '\r' || p[k] == '\n'); k++)
        {
            /* void */
        }

        if (k < len && p[k] == '"') {
            for (k++; k < len && p[k] != '"'; k++) {
                if (p[k] == '\\' && k + 1 < len) {
                    p[k++] = '*';
                    changed++;
                }

                p[k] = '*';
                changed++;
            }

        } else {
            for ( /* void */ ; k < len && (vc_mask_digit(p[k]) || p[k] == '-'
                                           || p[k] == '/' || p[k] == '.');
                 k++)
            {
                p[k] = '*';
                changed++;
            }
        }

        i = k < len ? k : len;
    }

    return changed;
}


int
vc_mask_dob_name(const unsigned char *name, size_t len)
{
    char    buf[32];
    size_t  i, n;

    static const char  *names[] = { "dob", "dateofbirth", "birthdate" };

    n = 0;

    for (i = 0; i < len; i++) {
        if (name[i] == '_' || name[i] == '-') {
            continue;
        }

        if (n == sizeof(buf) - 1) {
            return 0;
        }

        buf[n++] = (name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32
                                                      : (char) name[i];
    }

    buf[n] = '\0';

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(buf, names[i]) == 0) {
            return 1;
        }
    }

    return 0;
}
