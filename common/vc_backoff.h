/* vc_backoff.h -- when a failed attempt's job runs again */

#ifndef VC_BACKOFF_H
#define VC_BACKOFF_H

#include "vc_common.h"


/*
 * The wait in ms before the attempt after failed attempt n (n >= 1): full
 * jitter, uniform in [0, min(cap_ms, base_ms * 2^(n-1))], both ends
 * included.  rnd is a uniform 64-bit random number from the caller, so
 * that the bounds can be tested without randomness.  Never overflows.
 */
uint64_t vc_backoff_delay(uint64_t base_ms, uint64_t cap_ms, unsigned n,
    uint64_t rnd);

/* the ceiling vc_backoff_delay() draws under: min(cap, base * 2^(n-1)) */
uint64_t vc_backoff_ceiling(uint64_t base_ms, uint64_t cap_ms, unsigned n);

/*
 * The wait in ms for a vendor's Retry-After of seconds: uniform in
 * [seconds * 1000, seconds * 1000 + 1000], so that clients told the same
 * second do not all come back in the same millisecond.
 */
uint64_t vc_backoff_retry_after(uint64_t seconds, uint64_t rnd);

/*
 * Parses a Retry-After header value: delta-seconds, or an HTTP-date
 * (RFC 9110) compared with now_s.  Returns the seconds to wait (0 for a
 * date in the past), or -1 when the value is neither.
 */
long long vc_backoff_parse_retry_after(const char *value, size_t len,
    long long now_s);


#endif /* VC_BACKOFF_H */
