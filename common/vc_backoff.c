/* vc_backoff.c -- exponential backoff with full jitter, and Retry-After */

#define _GNU_SOURCE
#include <string.h>
#include <time.h>

#include "vc_backoff.h"


/* a Retry-After beyond a day is a vendor's mistake, not a plan */
#define VC_BACKOFF_MAX_RETRY_AFTER  86400


uint64_t
vc_backoff_ceiling(uint64_t base_ms, uint64_t cap_ms, unsigned n)
{
    uint64_t  ceiling;

    ceiling = base_ms;

    /* doubling stops at the cap, so the shift never overflows */
    while (n > 1 && ceiling < cap_ms) {
        ceiling = ceiling > cap_ms / 2 ? cap_ms : ceiling * 2;
        n--;
    }

    return ceiling < cap_ms ? ceiling : cap_ms;
}


uint64_t
vc_backoff_delay(uint64_t base_ms, uint64_t cap_ms, unsigned n, uint64_t rnd)
{
    uint64_t  ceiling;

    ceiling = vc_backoff_ceiling(base_ms, cap_ms, n);

    if (ceiling == UINT64_MAX) {
        return rnd;
    }

    return rnd % (ceiling + 1);
}


uint64_t
vc_backoff_retry_after(uint64_t seconds, uint64_t rnd)
{
    if (seconds > VC_BACKOFF_MAX_RETRY_AFTER) {
        seconds = VC_BACKOFF_MAX_RETRY_AFTER;
    }

    return seconds * 1000 + rnd % 1001;
}


long long
vc_backoff_parse_retry_after(const char *value, size_t len, long long now_s)
{
    char        buf[64];
    size_t      i;
    time_t      t;
    long long   n;
    struct tm   tm;
    const char *end;

    while (len && (value[len - 1] == ' ' || value[len - 1] == '\t'
                   || value[len - 1] == '\r' || value[len - 1] == '\n'))
    {
        len--;
    }

    while (len && (*value == ' ' || *value == '\t')) {
        value++;
        len--;
    }

    if (len == 0 || len >= sizeof(buf)) {
        return -1;
    }

    if (value[0] >= '0' && value[0] <= '9') {
        n = 0;

        for (i = 0; i < len; i++) {
            if (value[i] < '0' || value[i] > '9') {
                return -1;
            }

            if (n < VC_BACKOFF_MAX_RETRY_AFTER) {
                n = n * 10 + (value[i] - '0');
            }
        }

        return n < VC_BACKOFF_MAX_RETRY_AFTER ? n
                                              : VC_BACKOFF_MAX_RETRY_AFTER;
    }

    /* IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT" */
    memcpy(buf, value, len);
    buf[len] = '\0';
    memset(&tm, 0, sizeof(tm));

    end = strptime(buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (end == NULL || *end != '\0') {
        return -1;
    }

    t = timegm(&tm);

    if ((long long) t <= now_s) {
        return 0;
    }

    n = (long long) t - now_s;

    return n < VC_BACKOFF_MAX_RETRY_AFTER ? n : VC_BACKOFF_MAX_RETRY_AFTER;
}
