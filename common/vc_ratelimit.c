/* vc_ratelimit.c -- GCRA token-bucket arithmetic, in Redis and in memory */

/*
 * The algorithm (GCRA, the generic cell rate algorithm, which is a token
 * bucket kept as one number per key) and why one BITFIELD decides it.
 *
 * Let T be the interval between units, tau = burst * T the bucket's depth in
 * time, and TAT the theoretical arrival time stored in the key (absent = 0).
 * A request of cost c at `now` is admitted iff
 *
 *     x + c*T <= tau,   where x = max(TAT - now, 0),
 *
 * and then TAT = now + x + c*T.  The bucket holds (tau - x) / T units: full
 * when x = 0, and it drains by c units per admitted request and refills by
 * one unit per T.  Over any interval of length t, the admitted cost is at
 * most burst + t / T: x never exceeds tau, and it falls by at most t.
 *
 * Redis's BITFIELD applies a list of increments to one unsigned 63-bit field
 * atomically, and its overflow modes give the two operations GCRA needs:
 * OVERFLOW SAT clamps at 0 (a max()) and OVERFLOW FAIL skips an increment
 * that would pass 2^63 - 1 = M (a conditional add) and replies nil.  So:
 *
 *     OVERFLOW SAT  INCRBY u63 0 -now        x = max(TAT - now, 0)
 *                   INCRBY u63 0 M - tau     x + M - tau  (<= M iff x <= tau)
 *     OVERFLOW FAIL INCRBY u63 0 c*T         nil iff x + c*T > tau: refused
 *     OVERFLOW SAT  INCRBY u63 0 -(M - tau)  x + c*T, or x when refused
 *                   INCRBY u63 0 now         the new TAT
 *
 * is the whole decision, exact under any concurrency because Redis runs one
 * command at a time, and needs no scripting.  The first reply is x, the
 * third is nil for a refusal.  When a request is refused TAT becomes
 * now + x, which is TAT itself whenever TAT > now; otherwise both values mean
 * "full".
 *
 * Clock skew.  Every gateway computes `now` from its own clock.  A gateway
 * whose clock is s microseconds behind sees TAT - now larger by s: it
 * refuses more, never less.  A gateway whose clock is s ahead sees x smaller
 * by s, so it may admit up to s / T units more than the bucket holds; and
 * when TAT - now exceeds tau (only possible with skew) the second increment
 * saturates at M and the command stores now + tau, pulling TAT back by at
 * most the skew.  Either way the excess over burst + t / T is bounded by
 * rate * skew, per skewed gateway; with NTP-disciplined clocks (skew of a
 * few milliseconds) that is a fraction of one request at 100 r/s.
 *
 * The in-memory fallback runs the very same five increments on a uint64_t,
 * so the two paths cannot disagree.
 */

#include <string.h>
#include <time.h>

#include "vc_ratelimit.h"


/* tau stays below 2^61 so that now + tau and M - tau never overflow */
#define VC_RL_MAX_DEPTH  ((uint64_t) 1 << 61)


int
vc_rl_parse_rate(const char *s, size_t len, uint64_t *interval,
    const char **err)
{
    size_t    i;
    uint64_t  n, period;

    n = 0;

    for (i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        if (n > 1000000000) {
            *err = "rate is too large";
            return VC_ERROR;
        }

        n = n * 10 + (s[i] - '0');
    }

    if (i == 0 || len - i != 3 || s[i] != 'r' || s[i + 1] != '/') {
        *err = "rate must be written as <n>r/s, <n>r/m or <n>r/h";
        return VC_ERROR;
    }

    switch (s[i + 2]) {
    case 's':
        period = 1000000;
        break;
    case 'm':
        period = 60 * (uint64_t) 1000000;
        break;
    case 'h':
        period = 3600 * (uint64_t) 1000000;
        break;
    default:
        *err = "rate must be written as <n>r/s, <n>r/m or <n>r/h";
        return VC_ERROR;
    }

    if (n == 0) {
        *err = "rate must be positive";
        return VC_ERROR;
    }

    if (n > period) {
        *err = "rate is above one request per microsecond";
        return VC_ERROR;
    }

    *interval = (period + n - 1) / n;

    return VC_OK;
}


int
vc_rl_check(const vc_rl_policy_t *p, uint64_t cost, const char **err)
{
    if (p->interval == 0 || p->burst == 0) {
        *err = "rate and burst must be positive";
        return VC_ERROR;
    }

    if (p->burst > VC_RL_MAX_DEPTH / p->interval) {
        *err = "burst divided by rate is too long a time";
        return VC_ERROR;
    }

    if (cost == 0) {
        *err = "cost must be positive";
        return VC_ERROR;
    }

    if (cost > p->burst) {
        *err = "cost is larger than burst: no request could pass";
        return VC_ERROR;
    }

    return VC_OK;
}


uint64_t
vc_rl_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);

    return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


void
vc_rl_bitfield_ops(const vc_rl_policy_t *p, uint64_t cost, uint64_t now,
    int64_t op[VC_RL_BITFIELD_OPS])
{
    uint64_t  tau;

    tau = p->burst * p->interval;

    op[0] = -(int64_t) now;
    op[1] = (int64_t) (VC_RL_U63_MAX - tau);
    op[2] = (int64_t) (cost * p->interval);
    op[3] = -(int64_t) (VC_RL_U63_MAX - tau);
    op[4] = (int64_t) now;
}


void
vc_rl_result(const vc_rl_policy_t *p, uint64_t cost, uint64_t x,
    unsigned refused, vc_rl_result_t *res)
{
    uint64_t  tau, level;

    tau = p->burst * p->interval;

    if (!refused) {
        level = x + cost * p->interval;     /* <= tau, as admitted */

        res->admitted = 1;
        res->remaining = (tau - level) / p->interval;
        res->reset = level;
        res->retry_after = 0;
        return;
    }

    /* the command stored now + min(x, tau) */

    level = x < tau ? x : tau;

    res->admitted = 0;
    res->remaining = (tau - level) / p->interval;
    res->reset = level;
    res->retry_after = level + cost * p->interval - tau;
}


void
vc_rl_uncharge(const vc_rl_policy_t *p, uint64_t cost, vc_rl_result_t *res)
{
    if (!res->admitted) {
        return;
    }

    res->admitted = 0;
    res->remaining += cost;
    res->reset -= cost * p->interval;
    res->retry_after = 0;
}


/* one INCRBY on an unsigned 63-bit field, as Redis's BITFIELD does it */

static unsigned
vc_rl_incrby(uint64_t *field, int64_t by, unsigned sat)
{
    uint64_t  v;

    if (by < 0) {
        v = (uint64_t) -(by + 1) + 1;       /* |by| without overflow */

        if (v > *field) {
            if (!sat) {
                return 0;
            }

            *field = 0;
            return 1;
        }

        *field -= v;
        return 1;
    }

    if ((uint64_t) by > VC_RL_U63_MAX - *field) {
        if (!sat) {
            return 0;
        }

        *field = VC_RL_U63_MAX;
        return 1;
    }

    *field += (uint64_t) by;
    return 1;
}


unsigned
vc_rl_decide(const vc_rl_policy_t *p, uint64_t cost, uint64_t now,
    uint64_t *tat, vc_rl_result_t *res)
{
    int64_t   op[VC_RL_BITFIELD_OPS];
    uint64_t  field, x;
    unsigned  refused;

    vc_rl_bitfield_ops(p, cost, now, op);

    field = *tat > VC_RL_U63_MAX ? VC_RL_U63_MAX : *tat;

    (void) vc_rl_incrby(&field, op[0], 1);
    x = field;
    (void) vc_rl_incrby(&field, op[1], 1);
    refused = !vc_rl_incrby(&field, op[2], 0);
    (void) vc_rl_incrby(&field, op[3], 1);
    (void) vc_rl_incrby(&field, op[4], 1);

    vc_rl_result(p, cost, x, refused, res);

    /* as in Redis: a refusal stores now + min(x, tau), the same bucket */
    *tat = field;

    return res->admitted;
}


uint64_t
vc_rl_seconds(uint64_t usec)
{
    return usec / 1000000 + (usec % 1000000 != 0);
}
