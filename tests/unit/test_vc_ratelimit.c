/* test_vc_ratelimit.c -- GCRA bucket: rates, limits, Redis form, bounds */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <stdio.h>
#include <time.h>
#include <cmocka.h>

#include "vc_ratelimit.h"


/*
 * Every expectation below comes from the definition of the bucket, written
 * again here (ref_decide(), ref_bitfield()), or from numbers worked out by
 * hand; none is computed by the code under test.
 */

#define U63_MAX   ((((uint64_t) 1) << 63) - 1)
#define SEC       ((uint64_t) 1000000)
#define EPOCH     ((uint64_t) 1800000000000000)   /* 2027, in microseconds */
#define NELTS(a)  (sizeof(a) / sizeof((a)[0]))


/* a bucket kept three ways: vc_rl_decide(), the reference, emulated Redis */

typedef struct {
    vc_rl_policy_t  p;
    uint64_t        tat;        /* vc_rl_decide()'s */
    uint64_t        ref_tat;    /* ref_decide()'s */
    uint64_t        redis;      /* the emulated BITFIELD key */
} bucket_t;


typedef struct {
    uint64_t        value;
    unsigned        nil;
} reply_t;


static uint64_t  rnd_state;


/* xorshift64: a fixed seed makes every run decide the same requests */

static uint64_t
rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;

    return rnd_state;
}


/* uniform enough in [0, n) for n > 0 */

static uint64_t
rnd_below(uint64_t n)
{
    return rnd() % n;
}


/*
 * The reference bucket, from the definition: admit iff
 * max(TAT, now) + c*T - now <= burst*T, then TAT = max(TAT, now) + c*T.
 * A refusal leaves TAT alone, except that a TAT beyond now + burst*T (a
 * clock that went back) is stored as now + burst*T, which is what the Redis
 * command's saturation does.  The level is max(TAT - now, 0) after the
 * decision: remaining = floor((burst*T - level) / T), reset = level, and a
 * refused request could pass after level + c*T - burst*T.
 */

static unsigned
ref_decide(const vc_rl_policy_t *p, uint64_t cost, uint64_t now,
    uint64_t *tat, vc_rl_result_t *res)
{
    uint64_t  tau, base, level;

    tau = p->burst * p->interval;
    base = *tat > now ? *tat : now;

    if (base + cost * p->interval - now <= tau) {
        *tat = base + cost * p->interval;
        level = *tat - now;

        res->admitted = 1;
        res->retry_after = 0;

    } else {
        if (*tat > now + tau) {
            *tat = now + tau;
        }

        level = *tat > now ? *tat - now : 0;

        res->admitted = 0;
        res->retry_after = level + cost * p->interval - tau;
    }

    res->remaining = (tau - level) / p->interval;
    res->reset = level;

    return res->admitted;
}


/* the admission rule alone, on a state that is not changed */

static unsigned
ref_admits(const vc_rl_policy_t *p, uint64_t cost, uint64_t now, uint64_t tat)
{
    uint64_t  base;

    base = tat > now ? tat : now;

    return base + cost * p->interval - now <= p->burst * p->interval;
}


/*
 * Redis's BITFIELD INCRBY on a u63 field: the field holds [0, 2^63 - 1];
 * with OVERFLOW SAT a result outside is clamped to the nearer end, with
 * OVERFLOW FAIL the field is left as it was and the reply is nil.  The
 * command is OVERFLOW SAT for the first two increments, FAIL for the third,
 * SAT again for the last two (OVERFLOW stays in force until changed).
 */

static void
ref_bitfield(uint64_t *field, const int64_t op[VC_RL_BITFIELD_OPS],
    reply_t reply[VC_RL_BITFIELD_OPS])
{
    static const unsigned  sat[VC_RL_BITFIELD_OPS] = { 1, 1, 0, 1, 1 };
    __int128               v;
    int                    i;

    for (i = 0; i < VC_RL_BITFIELD_OPS; i++) {
        v = (__int128) *field + op[i];

        if (v < 0 || v > (__int128) U63_MAX) {
            if (!sat[i]) {
                reply[i].nil = 1;
                reply[i].value = 0;
                continue;
            }

            v = v < 0 ? 0 : (__int128) U63_MAX;
        }

        *field = (uint64_t) v;
        reply[i].nil = 0;
        reply[i].value = *field;
    }
}


static void
check_result(const char *what, const vc_rl_result_t *got,
    const vc_rl_result_t *exp, uint64_t now, uint64_t cost)
{
    if (got->admitted == exp->admitted
        && got->remaining == exp->remaining
        && got->reset == exp->reset
        && got->retry_after == exp->retry_after)
    {
        return;
    }

    fail_msg("%s, cost %" PRIu64 " at %" PRIu64 ": got admitted %u "
             "remaining %" PRIu64 " reset %" PRIu64 " retry_after %" PRIu64
             ", expected %u %" PRIu64 " %" PRIu64 " %" PRIu64,
             what, cost, now, got->admitted, got->remaining, got->reset,
             got->retry_after, exp->admitted, exp->remaining, exp->reset,
             exp->retry_after);
}


static void
expect(const vc_rl_result_t *res, unsigned admitted, uint64_t remaining,
    uint64_t reset, uint64_t retry_after)
{
    vc_rl_result_t  exp;

    exp.admitted = admitted;
    exp.remaining = remaining;
    exp.reset = reset;
    exp.retry_after = retry_after;

    check_result("expected by hand", res, &exp, 0, 0);
}


static void
bucket_init(bucket_t *b, uint64_t interval, uint64_t burst, uint64_t tat)
{
    const char  *err;

    b->p.interval = interval;
    b->p.burst = burst;
    b->tat = tat;
    b->ref_tat = tat;
    b->redis = tat;

    err = NULL;
    assert_int_equal(vc_rl_check(&b->p, 1, &err), VC_OK);
}


/*
 * One request, decided by vc_rl_decide(), by the reference, and by the
 * Redis command run on the emulated key and read with vc_rl_result(): all
 * must agree on the result and on the TAT they leave.
 */

static unsigned
step(bucket_t *b, uint64_t cost, uint64_t now, vc_rl_result_t *res)
{
    int64_t         op[VC_RL_BITFIELD_OPS];
    uint64_t        x, tau;
    unsigned        admitted;
    reply_t         reply[VC_RL_BITFIELD_OPS];
    vc_rl_result_t  exp, got;

    tau = b->p.burst * b->p.interval;
    x = b->ref_tat > now ? b->ref_tat - now : 0;

    ref_decide(&b->p, cost, now, &b->ref_tat, &exp);

    /* the in-memory fallback */

    admitted = vc_rl_decide(&b->p, cost, now, &b->tat, res);

    check_result("vc_rl_decide()", res, &exp, now, cost);
    assert_int_equal(admitted, exp.admitted);

    if (b->tat != b->ref_tat) {
        fail_msg("vc_rl_decide() stored TAT %" PRIu64 ", expected %" PRIu64
                 " (cost %" PRIu64 " at %" PRIu64 ")",
                 b->tat, b->ref_tat, cost, now);
    }

    /* the Redis command */

    vc_rl_bitfield_ops(&b->p, cost, now, op);
    ref_bitfield(&b->redis, op, reply);

    assert_false(reply[0].nil);
    assert_int_equal(reply[0].value, x);
    assert_false(reply[1].nil);
    assert_int_equal(reply[1].value,
                     x > tau ? U63_MAX : x + (U63_MAX - tau));
    assert_int_equal(reply[2].nil, !exp.admitted);
    assert_false(reply[3].nil);
    assert_false(reply[4].nil);
    assert_int_equal(reply[4].value, b->redis);

    if (b->redis != b->ref_tat) {
        fail_msg("the Redis command stored %" PRIu64 ", expected %" PRIu64
                 " (cost %" PRIu64 " at %" PRIu64 ")",
                 b->redis, b->ref_tat, cost, now);
    }

    vc_rl_result(&b->p, cost, reply[0].value, reply[2].nil, &got);
    check_result("vc_rl_result()", &got, &exp, now, cost);

    return admitted;
}


/* parses from an exact-size heap copy, so that ASan sees any over-read */

static int
parse(const char *s, size_t len, uint64_t *interval, const char **err)
{
    char  *copy;
    int    rc;

    copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, s, len);

    *err = NULL;
    *interval = 0xdeadbeef;

    rc = vc_rl_parse_rate(copy, len, interval, err);

    free(copy);

    return rc;
}


static void
test_parse_rate(void **state)
{
    static const struct {
        const char  *s;
        uint64_t     interval;
    } v[] = {
        { "10r/s", 100000 },
        { "3r/s", 333334 },             /* 333333.3, rounded up */
        { "1r/s", 1000000 },
        { "1r/h", 3600000000 },
        { "2r/h", 1800000000 },
        { "7r/h", 514285715 },          /* 514285714.3 */
        { "60r/m", 1000000 },
        { "1r/m", 60000000 },
        { "7r/m", 8571429 },            /* 8571428.6 */
        { "1000000r/s", 1 },
        { "999999r/s", 2 },             /* 1.000001 */
        { "500000r/s", 2 },
        { "300000r/s", 4 },             /* 3.3 */
        { "60000000r/m", 1 },
        { "3600000000r/h", 1 }
    };
    uint64_t     interval;
    const char  *err;
    size_t       i;

    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        if (parse(v[i].s, strlen(v[i].s), &interval, &err) != VC_OK) {
            fail_msg("\"%s\" refused: %s", v[i].s, err ? err : "(null)");
        }

        if (interval != v[i].interval) {
            fail_msg("\"%s\": interval %" PRIu64 ", expected %" PRIu64,
                     v[i].s, interval, v[i].interval);
        }
    }
}


/*
 * For many n, the interval is the smallest whole number of microseconds at
 * which n units take at least the period: never above the configured rate,
 * and less than a microsecond per unit off it.
 */

static void
test_parse_rate_rounding(void **state)
{
    static const struct {
        char      unit;
        uint64_t  period;
    } u[] = {
        { 's', 1000000 }, { 'm', 60000000 }, { 'h', 3600000000 }
    };
    char         buf[32];
    uint64_t     n, interval;
    const char  *err;
    size_t       i;
    int          k, len;

    rnd_state = 0x9e3779b97f4a7c15;

    for (i = 0; i < sizeof(u) / sizeof(u[0]); i++) {
        for (k = 0; k < 6000; k++) {
            n = k < 3000 ? (uint64_t) k + 1 : 1 + rnd_below(u[i].period);

            if (k == 3000) {
                n = u[i].period;
            }

            len = snprintf(buf, sizeof(buf), "%" PRIu64 "r/%c", n, u[i].unit);
            assert_true(len > 0 && (size_t) len < sizeof(buf));

            if (parse(buf, len, &interval, &err) != VC_OK) {
                fail_msg("\"%s\" refused: %s", buf, err ? err : "(null)");
            }

            if (interval * n < u[i].period
                || (interval - 1) * n >= u[i].period)
            {
                fail_msg("\"%s\": interval %" PRIu64, buf, interval);
            }
        }
    }
}


static void
test_parse_rate_refused(void **state)
{
    static const struct {
        const char  *s;
        size_t       len;
    } v[] = {
#define S(s)  { s, sizeof(s) - 1 }
        S("1000001r/s"),                /* above 1 per microsecond */
        S("60000001r/m"),
        S("3600000001r/h"),
        S("10000000000r/s"),
        S("0r/s"),
        S("0r/m"),
        S("00r/h"),
        S("r/s"),
        S("10"),
        S("10r"),
        S("10r/"),
        S("10/s"),
        S("10rs"),
        S("10r/x"),
        S("10r/S"),
        S("10R/s"),
        S("10r/ss"),
        S("10r/sec"),
        S("10 r/s"),
        S(" 10r/s"),
        S("10r/s "),
        S("10r/s\n"),
        S("-1r/s"),
        S("+1r/s"),
        S("1.5r/s"),
        S("0x10r/s"),
        S("1e3r/s"),
        S(""),
        S("\0"),
        S("10r/s\0"),                   /* a NUL inside the length */
        S("1\0r/s"),
        S("10r\0s"),
        S("18446744073709551616r/s"),   /* 2^64 */
        S("18446744073709551626r/s"),   /* 2^64 + 10: 10 if it wrapped */
        S("18446744073709551617r/h"),
        S("36893488147419103232r/s"),   /* 2^65 */
        S("99999999999999999999999999999999999999999r/s"),
        S("100000000000000000000000000000000000000001r/m")
#undef S
    };
    char        *big;
    uint64_t     interval;
    const char  *err;
    size_t       i, n;

    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        if (parse(v[i].s, v[i].len, &interval, &err) != VC_ERROR) {
            fail_msg("\"%.*s\" accepted: %" PRIu64,
                     (int) v[i].len, v[i].s, interval);
        }

        if (err == NULL || err[0] == '\0') {
            fail_msg("\"%.*s\": no reason given", (int) v[i].len, v[i].s);
        }
    }

    /* thousands of digits, of which any 64-bit wrap would make a rate */

    n = 4096;
    big = malloc(n + 3);
    assert_non_null(big);

    for (i = 0; i < 3; i++) {
        memset(big, "914"[i], n);
        memcpy(big + n, "r/s", 3);

        if (i == 2) {
            big[0] = '1';
            memset(big + 1, '0', n - 2);
            big[n - 1] = '1';
        }

        assert_int_equal(parse(big, n + 3, &interval, &err), VC_ERROR);
        assert_non_null(err);
    }

    free(big);
}


/* only len bytes are looked at */

static void
test_parse_rate_length(void **state)
{
    uint64_t     interval;
    const char  *err;

    assert_int_equal(parse("10r/s!!!", 5, &interval, &err), VC_OK);
    assert_int_equal(interval, 100000);

    assert_int_equal(parse("10r/sssss", 5, &interval, &err), VC_OK);
    assert_int_equal(interval, 100000);

    assert_int_equal(parse("100r/s", 5, &interval, &err), VC_ERROR);
    assert_non_null(err);

    assert_int_equal(parse("10r/s", 4, &interval, &err), VC_ERROR);
    assert_non_null(err);

    assert_int_equal(parse("10r/s", 3, &interval, &err), VC_ERROR);
    assert_non_null(err);

    assert_int_equal(parse("10r/s", 2, &interval, &err), VC_ERROR);
    assert_non_null(err);

    assert_int_equal(parse("10r/s", 0, &interval, &err), VC_ERROR);
    assert_non_null(err);

    assert_int_equal(parse("1r/h", 4, &interval, &err), VC_OK);
    assert_int_equal(interval, 3600000000);
}


static int
check(uint64_t interval, uint64_t burst, uint64_t cost)
{
    int              rc;
    const char      *err;
    vc_rl_policy_t   p;

    p.interval = interval;
    p.burst = burst;

    err = NULL;
    rc = vc_rl_check(&p, cost, &err);

    if (rc != VC_OK) {
        assert_int_equal(rc, VC_ERROR);

        if (err == NULL || err[0] == '\0') {
            fail_msg("check(%" PRIu64 ", %" PRIu64 ", %" PRIu64 "): "
                     "no reason given", interval, burst, cost);
        }
    }

    return rc;
}


static void
test_check(void **state)
{
    uint64_t           interval, burst;
    unsigned __int128  tau;
    int                i;

    assert_int_equal(check(100000, 3, 1), VC_OK);
    assert_int_equal(check(100000, 3, 2), VC_OK);
    assert_int_equal(check(100000, 3, 3), VC_OK);
    assert_int_equal(check(1, 1, 1), VC_OK);
    assert_int_equal(check(3600000000, 1000, 1000), VC_OK);

    assert_int_equal(check(100000, 3, 0), VC_ERROR);
    assert_int_equal(check(100000, 3, 4), VC_ERROR);
    assert_int_equal(check(100000, 3, UINT64_MAX), VC_ERROR);
    assert_int_equal(check(100000, 0, 1), VC_ERROR);
    assert_int_equal(check(100000, 0, 0), VC_ERROR);
    assert_int_equal(check(0, 3, 1), VC_ERROR);
    assert_int_equal(check(0, 0, 1), VC_ERROR);

    /* depths at or past 2^62: none may pass, least of all by wrapping */

    assert_int_equal(check(1, (uint64_t) 1 << 62, 1), VC_ERROR);
    assert_int_equal(check((uint64_t) 1 << 62, 1, 1), VC_ERROR);
    assert_int_equal(check((uint64_t) 1 << 40, (uint64_t) 1 << 22, 1),
                     VC_ERROR);
    assert_int_equal(check((uint64_t) 1 << 32, (uint64_t) 1 << 32, 1),
                     VC_ERROR);                     /* 2^64 wraps to 0 */
    assert_int_equal(check(((uint64_t) 1 << 32) + 1, UINT64_MAX, 1),
                     VC_ERROR);
    assert_int_equal(check(UINT64_MAX, UINT64_MAX, 1), VC_ERROR);
    assert_int_equal(check(UINT64_MAX, 1, 1), VC_ERROR);
    assert_int_equal(check(1, UINT64_MAX, 1), VC_ERROR);
    assert_int_equal(check(3, UINT64_MAX / 3 + 1, 1), VC_ERROR);

    /* a century at one unit a microsecond is a sane depth */

    assert_int_equal(check(1, SEC * 100 * 366 * 86400, 1), VC_OK);
    assert_int_equal(check(SEC * 100 * 366 * 86400, 1, 1), VC_OK);

    /*
     * Whatever is accepted keeps now + tau and 2^63 - 1 - tau in range for
     * any now below 2^62; whatever is shallower than 2^50 microseconds
     * (35 years) is accepted.
     */

    rnd_state = 0x2545f4914f6cdd1d;

    for (i = 0; i < 200000; i++) {
        interval = rnd() >> rnd_below(64);
        burst = rnd() >> rnd_below(64);

        if (interval == 0 || burst == 0) {
            assert_int_equal(check(interval, burst, 1), VC_ERROR);
            continue;
        }

        tau = (unsigned __int128) interval * burst;

        if (check(interval, burst, 1) == VC_OK) {
            assert_true(tau < ((unsigned __int128) 1 << 62));

        } else {
            assert_true(tau > ((unsigned __int128) 1 << 50));
        }
    }
}


/* burst 3 at 10 r/s: the worked example */

static void
test_burst_refill(void **state)
{
    uint64_t        t0;
    bucket_t        b;
    vc_rl_result_t  res;

    t0 = EPOCH;
    bucket_init(&b, 100000, 3, 0);

    /* full: three pass at once */

    assert_true(step(&b, 1, t0, &res));
    expect(&res, 1, 2, 100000, 0);
    assert_true(step(&b, 1, t0, &res));
    expect(&res, 1, 1, 200000, 0);
    assert_true(step(&b, 1, t0, &res));
    expect(&res, 1, 0, 300000, 0);
    assert_int_equal(b.tat, t0 + 300000);

    /* empty: the next unit comes in 100 ms */

    assert_false(step(&b, 1, t0, &res));
    expect(&res, 0, 0, 300000, 100000);
    assert_false(step(&b, 1, t0, &res));
    expect(&res, 0, 0, 300000, 100000);
    assert_int_equal(b.tat, t0 + 300000);

    assert_false(step(&b, 1, t0 + 99999, &res));
    expect(&res, 0, 0, 200001, 1);
    assert_int_equal(b.tat, t0 + 300000);

    assert_true(step(&b, 1, t0 + 100000, &res));
    expect(&res, 1, 0, 300000, 0);
    assert_int_equal(b.tat, t0 + 400000);

    assert_false(step(&b, 1, t0 + 100000, &res));
    expect(&res, 0, 0, 300000, 100000);

    /* half way to the next: 50 ms to wait */

    assert_false(step(&b, 1, t0 + 150000, &res));
    expect(&res, 0, 0, 250000, 50000);

    /* 250 ms after emptying: two and a half units back, two usable */

    assert_true(step(&b, 1, t0 + 350000, &res));
    expect(&res, 1, 1, 150000, 0);
    assert_true(step(&b, 1, t0 + 350000, &res));
    expect(&res, 1, 0, 250000, 0);
    assert_false(step(&b, 1, t0 + 350000, &res));
    expect(&res, 0, 0, 250000, 50000);

    /* a full second later: full again, three pass, the fourth waits */

    assert_true(step(&b, 1, t0 + 1350000, &res));
    expect(&res, 1, 2, 100000, 0);
    assert_true(step(&b, 1, t0 + 1350000, &res));
    expect(&res, 1, 1, 200000, 0);
    assert_true(step(&b, 1, t0 + 1350000, &res));
    expect(&res, 1, 0, 300000, 0);
    assert_false(step(&b, 1, t0 + 1350000, &res));
    expect(&res, 0, 0, 300000, 100000);

    /* exactly when it is full again (TAT == now) */

    assert_true(step(&b, 1, t0 + 1650000, &res));
    expect(&res, 1, 2, 100000, 0);
}


static void
test_cost(void **state)
{
    uint64_t        t0;
    bucket_t        b;
    vc_rl_result_t  res;

    t0 = EPOCH + 12345;

    /* cost 2 out of 5 at one unit a millisecond */

    bucket_init(&b, 1000, 5, 0);

    assert_true(step(&b, 2, t0, &res));
    expect(&res, 1, 3, 2000, 0);
    assert_true(step(&b, 2, t0, &res));
    expect(&res, 1, 1, 4000, 0);
    assert_false(step(&b, 2, t0, &res));
    expect(&res, 0, 1, 4000, 1000);
    assert_false(step(&b, 5, t0, &res));
    expect(&res, 0, 1, 4000, 4000);
    assert_true(step(&b, 1, t0, &res));
    expect(&res, 1, 0, 5000, 0);
    assert_false(step(&b, 2, t0 + 1999, &res));
    expect(&res, 0, 1, 3001, 1);
    assert_true(step(&b, 2, t0 + 2000, &res));
    expect(&res, 1, 0, 5000, 0);
    assert_int_equal(b.tat, t0 + 7000);

    /* cost == burst: the whole bucket, only when it is full */

    bucket_init(&b, 1000, 4, 0);

    assert_true(step(&b, 4, t0, &res));
    expect(&res, 1, 0, 4000, 0);
    assert_false(step(&b, 4, t0, &res));
    expect(&res, 0, 0, 4000, 4000);
    assert_false(step(&b, 1, t0, &res));
    expect(&res, 0, 0, 4000, 1000);
    assert_false(step(&b, 4, t0 + 3999, &res));
    expect(&res, 0, 3, 1, 1);
    assert_true(step(&b, 4, t0 + 4000, &res));
    expect(&res, 1, 0, 4000, 0);

    assert_true(step(&b, 1, t0 + 8000, &res));
    expect(&res, 1, 3, 1000, 0);
    assert_false(step(&b, 4, t0 + 8000, &res));
    expect(&res, 0, 3, 1000, 1000);
    assert_true(step(&b, 3, t0 + 8000, &res));
    expect(&res, 1, 0, 4000, 0);

    /* burst 1: one at a time, the plainest limiter */

    bucket_init(&b, 1000, 1, 0);

    assert_true(step(&b, 1, t0, &res));
    expect(&res, 1, 0, 1000, 0);
    assert_false(step(&b, 1, t0 + 999, &res));
    expect(&res, 0, 0, 1, 1);
    assert_true(step(&b, 1, t0 + 1000, &res));
    expect(&res, 1, 0, 1000, 0);
}


/* the command's replies, worked out by hand from its text in the header */

static void
test_redis_command(void **state)
{
    int64_t         op[VC_RL_BITFIELD_OPS];
    uint64_t        field, now, tau;
    reply_t         reply[VC_RL_BITFIELD_OPS];
    vc_rl_policy_t  p;
    vc_rl_result_t  res;

    /* the emulation itself first */

    field = 5;
    ref_bitfield(&field, (int64_t[]) { -7, 3, -4, (int64_t) U63_MAX, -1 },
                 reply);
    assert_int_equal(reply[0].value, 0);            /* SAT at 0 */
    assert_int_equal(reply[1].value, 3);
    assert_true(reply[2].nil);                      /* FAIL: 3 - 4 < 0 */
    assert_int_equal(reply[3].value, U63_MAX);      /* SAT at the top */
    assert_int_equal(reply[4].value, U63_MAX - 1);
    assert_int_equal(field, U63_MAX - 1);

    field = U63_MAX - 1;
    ref_bitfield(&field, (int64_t[]) { 0, 1, 1, INT64_MIN, INT64_MAX },
                 reply);
    assert_int_equal(reply[1].value, U63_MAX);
    assert_true(reply[2].nil);                      /* FAIL: past the top */
    assert_int_equal(reply[3].value, 0);
    assert_int_equal(reply[4].value, U63_MAX);

    /* T = 1 ms, burst 5, cost 2 */

    p.interval = 1000;
    p.burst = 5;
    tau = 5000;
    now = EPOCH;

    vc_rl_bitfield_ops(&p, 2, now, op);
    assert_int_equal(op[0], -(int64_t) EPOCH);
    assert_int_equal(op[1], (int64_t) (U63_MAX - tau));
    assert_int_equal(op[2], 2000);
    assert_int_equal(op[3], -(int64_t) (U63_MAX - tau));
    assert_int_equal(op[4], (int64_t) EPOCH);

    /* an absent key: admitted, the new TAT is now + 2 ms */

    field = 0;
    ref_bitfield(&field, op, reply);
    assert_int_equal(reply[0].value, 0);
    assert_int_equal(reply[1].value, U63_MAX - 5000);
    assert_false(reply[2].nil);
    assert_int_equal(reply[2].value, U63_MAX - 3000);
    assert_int_equal(reply[3].value, 2000);
    assert_int_equal(reply[4].value, EPOCH + 2000);

    vc_rl_result(&p, 2, reply[0].value, reply[2].nil, &res);
    expect(&res, 1, 3, 2000, 0);

    /* 4 ms in the bucket: refused, TAT kept */

    field = EPOCH + 4000;
    ref_bitfield(&field, op, reply);
    assert_int_equal(reply[0].value, 4000);
    assert_int_equal(reply[1].value, U63_MAX - 1000);
    assert_true(reply[2].nil);
    assert_int_equal(reply[3].value, 4000);
    assert_int_equal(reply[4].value, EPOCH + 4000);

    vc_rl_result(&p, 2, reply[0].value, reply[2].nil, &res);
    expect(&res, 0, 1, 4000, 1000);

    /* exactly full: 3 ms in the bucket and 2 asked */

    field = EPOCH + 3000;
    ref_bitfield(&field, op, reply);
    assert_int_equal(reply[0].value, 3000);
    assert_false(reply[2].nil);
    assert_int_equal(reply[2].value, U63_MAX);
    assert_int_equal(reply[4].value, EPOCH + 5000);

    vc_rl_result(&p, 2, reply[0].value, reply[2].nil, &res);
    expect(&res, 1, 0, 5000, 0);

    /* 9 ms in a 5 ms bucket (a clock behind): saturates to now + tau */

    field = EPOCH + 9000;
    ref_bitfield(&field, op, reply);
    assert_int_equal(reply[0].value, 9000);
    assert_int_equal(reply[1].value, U63_MAX);
    assert_true(reply[2].nil);
    assert_int_equal(reply[3].value, 5000);
    assert_int_equal(reply[4].value, EPOCH + 5000);

    vc_rl_result(&p, 2, reply[0].value, reply[2].nil, &res);
    expect(&res, 0, 0, 5000, 2000);

    /* a TAT in the past: x is 0, the bucket is full */

    field = EPOCH - 123456;
    ref_bitfield(&field, op, reply);
    assert_int_equal(reply[0].value, 0);
    assert_false(reply[2].nil);
    assert_int_equal(reply[4].value, EPOCH + 2000);
}


/*
 * Checks the reported numbers against the admission rule itself, on the
 * state the reference left: retry_after is the first moment this request
 * passes, reset the first moment a request of cost burst passes, and
 * remaining the largest cost that passes now.
 */

static void
check_meaning(const bucket_t *b, uint64_t cost, uint64_t now,
    const vc_rl_result_t *res)
{
    const vc_rl_policy_t  *p;

    p = &b->p;

    if (!res->admitted) {
        assert_true(res->retry_after > 0);
        assert_false(ref_admits(p, cost, now + res->retry_after - 1,
                                b->ref_tat));
        assert_true(ref_admits(p, cost, now + res->retry_after, b->ref_tat));
    }

    assert_true(ref_admits(p, p->burst, now + res->reset, b->ref_tat));

    if (res->reset > 0) {
        assert_false(ref_admits(p, p->burst, now + res->reset - 1,
                                b->ref_tat));
    }

    assert_true(res->remaining <= p->burst);

    if (res->remaining > 0) {
        assert_true(ref_admits(p, res->remaining, now, b->ref_tat));
    }

    if (res->remaining < p->burst) {
        assert_false(ref_admits(p, res->remaining + 1, now, b->ref_tat));
    }
}


static void
random_policy(bucket_t *b)
{
    static const uint64_t  intervals[] = {
        1, 2, 3, 7, 1000, 100000, 333334, 1000000, 60000000, 3600000000
    };
    static const uint64_t  bursts[] = { 1, 2, 3, 5, 10, 100 };
    uint64_t               interval, burst, tat;
    vc_rl_policy_t         p;
    const char            *err;

    do {
        interval = rnd_below(4) ? intervals[rnd_below(NELTS(intervals))]
                                : 1 + rnd_below(10000000);
        burst = rnd_below(4) ? bursts[rnd_below(NELTS(bursts))]
                             : 1 + rnd_below(2000);

        p.interval = interval;
        p.burst = burst;

    } while (vc_rl_check(&p, 1, &err) != VC_OK);

    switch (rnd_below(5)) {
    case 0:
        tat = 0;
        break;
    case 1:
        tat = U63_MAX;
        break;
    case 2:
        tat = EPOCH - rnd_below(interval * burst * 2 + 1);
        break;
    default:
        tat = EPOCH + rnd_below(interval * burst * 2 + 1);
        break;
    }

    bucket_init(b, interval, burst, tat);
}


/*
 * Random policies, costs and clocks, including clocks that jump back and
 * far ahead: the three deciders agree everywhere, and the numbers mean what
 * they say.
 */

static void
test_random_agreement(void **state)
{
    uint64_t        now, cost, tau, d, admitted, refused;
    bucket_t        b;
    vc_rl_result_t  res, un;
    int             i, j;

    rnd_state = 0x853c49e6748fea9b;
    admitted = 0;
    refused = 0;

    for (i = 0; i < 400; i++) {
        random_policy(&b);

        tau = b.p.burst * b.p.interval;
        now = EPOCH + rnd_below(SEC);

        for (j = 0; j < 500; j++) {
            d = rnd_below(100);

            if (d < 20) {
                /* at the same time */

            } else if (d < 60) {
                now += rnd_below(b.p.interval + 1);

            } else if (d < 80) {
                now += rnd_below(2 * tau + 1);

            } else if (d < 88) {
                now -= rnd_below(b.p.interval + 1);

            } else if (d < 94) {
                now -= rnd_below(3 * tau + 1);

            } else if (d < 97) {
                now += rnd_below((uint64_t) 1 << 40);

            } else {
                now -= rnd_below((uint64_t) 1 << 40);
            }

            if (now < SEC || now > (uint64_t) 1 << 60) {
                now = EPOCH;            /* wrapped, or about to */
            }

            cost = rnd_below(3) ? 1 : 1 + rnd_below(b.p.burst);

            if (step(&b, cost, now, &res)) {
                admitted++;

                /* given back: the bucket as it was before the request */

                un = res;
                vc_rl_uncharge(&b.p, cost, &un);
                assert_int_equal(un.admitted, 0);
                assert_int_equal(un.remaining, res.remaining + cost);
                assert_int_equal(un.reset, res.reset - cost * b.p.interval);
                assert_int_equal(un.retry_after, 0);

            } else {
                refused++;
            }

            check_meaning(&b, cost, now, &res);
        }
    }

    /* both outcomes were exercised, and often */

    assert_true(admitted > 20000);
    assert_true(refused > 20000);
}


/*
 * The bound: over any window [t0, t1] the admitted cost is at most
 * burst + (t1 - t0) / T, in exact integers
 * admitted * T <= burst * T + (t1 - t0).  The windows that matter start
 * and end at admitted requests, and all of those are checked.
 */

#define NREQ  2500

static void
test_window_bound(void **state)
{
    static uint64_t  at[NREQ], charged[NREQ];
    uint64_t         now, cost, tau, sum, d, slack, tightest, refused;
    bucket_t         b;
    vc_rl_result_t   res;
    int              i, j, k, n;

    rnd_state = 0xda942042e4dd58b5;

    for (k = 0; k < 24; k++) {
        random_policy(&b);

        tau = b.p.burst * b.p.interval;
        now = EPOCH + rnd_below(SEC);
        n = 0;
        refused = 0;

        for (i = 0; i < NREQ; i++) {
            d = rnd_below(100);

            if (d < 25) {
                /* a burst at one instant */

            } else if (d < 70) {
                now += rnd_below(b.p.interval + 1);

            } else if (d < 95) {
                now += rnd_below(b.p.interval * 4 + 1);

            } else {
                now += rnd_below(2 * tau + 1);
            }

            cost = rnd_below(4) ? 1 : 1 + rnd_below(b.p.burst);

            if (step(&b, cost, now, &res)) {
                at[n] = now;
                charged[n] = cost;
                n++;

            } else {
                refused++;
            }
        }

        assert_true(n > 100);
        assert_true(refused > 100);

        tightest = UINT64_MAX;

        for (i = 0; i < n; i++) {
            sum = 0;

            for (j = i; j < n; j++) {
                sum += charged[j];

                if (sum * b.p.interval > tau + (at[j] - at[i])) {
                    fail_msg("policy %" PRIu64 "/%" PRIu64 ": %" PRIu64
                             " units admitted in [%" PRIu64 ", %" PRIu64
                             "]", b.p.interval, b.p.burst, sum, at[i],
                             at[j]);
                }

                slack = tau + (at[j] - at[i]) - sum * b.p.interval;

                if (slack < tightest) {
                    tightest = slack;
                }
            }
        }

        /* the simulation pressed against the bound somewhere */

        assert_true(tightest < b.p.interval);
    }
}


/*
 * A client that asks all the time gets the configured rate: the burst at
 * once, then one unit per T without drift, so over [0, D] exactly
 * burst + floor(D / T) units when the polls land on the T grid, and no
 * more than one fewer when they do not.
 */

static uint64_t
ask_every(bucket_t *b, uint64_t cost, uint64_t start, uint64_t every,
    uint64_t duration)
{
    uint64_t        now, units;
    vc_rl_result_t  res;

    units = 0;

    for (now = start; now <= start + duration; now += every) {
        if (step(b, cost, now, &res)) {
            units += cost;
        }
    }

    return units;
}


static void
test_continuous(void **state)
{
    uint64_t     units, d, interval;
    bucket_t     b;
    const char  *err;

    /* 10 r/s, burst 3, polled every millisecond for 100 s */

    d = 100 * SEC;
    bucket_init(&b, 100000, 3, 0);
    units = ask_every(&b, 1, EPOCH, 1000, d);
    assert_int_equal(units, 3 + d / 100000);

    /* 3 r/s as parsed, burst 3, polled off the grid for 300 s */

    assert_int_equal(parse("3r/s", 4, &interval, &err), VC_OK);

    d = 300 * SEC;
    bucket_init(&b, interval, 3, 0);
    units = ask_every(&b, 1, EPOCH + 17, 1009, d);
    assert_true(units * interval <= 3 * interval + d);
    assert_true(units + 1 >= 3 + d / interval);

    /* the configured 3 r/s is never exceeded: 900 + burst at most */

    assert_true(units <= 903);
    assert_true(units >= 901);

    /* cost 2 out of 10 at 1 ms, polled every 1.3 ms for 60 s */

    d = 60 * SEC;
    bucket_init(&b, 1000, 10, 0);
    units = ask_every(&b, 2, EPOCH, 1300, d);
    assert_true(units * 1000 <= 10 * 1000 + d);
    assert_true(units + 2 >= 10 + d / 1000);
}


static void
test_clock_edges(void **state)
{
    bucket_t        b;
    vc_rl_result_t  res;

    /* now == TAT: the bucket is exactly full */

    bucket_init(&b, 100000, 3, EPOCH + 300000);
    assert_true(step(&b, 3, EPOCH + 300000, &res));
    expect(&res, 1, 0, 300000, 0);
    assert_int_equal(b.tat, EPOCH + 600000);

    /* now == TAT - 1: a microsecond short of full */

    bucket_init(&b, 100000, 3, EPOCH + 300000);
    assert_false(step(&b, 3, EPOCH + 299999, &res));
    expect(&res, 0, 2, 1, 1);
    assert_int_equal(b.tat, EPOCH + 300000);
    assert_true(step(&b, 1, EPOCH + 299999, &res));
    expect(&res, 1, 1, 100001, 0);
    assert_true(step(&b, 1, EPOCH + 299999, &res));
    expect(&res, 1, 0, 200001, 0);
    assert_false(step(&b, 1, EPOCH + 299999, &res));
    expect(&res, 0, 0, 200001, 1);
    assert_true(step(&b, 1, EPOCH + 300000, &res));
    expect(&res, 1, 0, 300000, 0);

    /* now = 0, the key absent */

    bucket_init(&b, 100000, 3, 0);
    assert_true(step(&b, 1, 0, &res));
    expect(&res, 1, 2, 100000, 0);
    assert_int_equal(b.tat, 100000);
    assert_true(step(&b, 2, 0, &res));
    expect(&res, 1, 0, 300000, 0);
    assert_false(step(&b, 1, 0, &res));
    expect(&res, 0, 0, 300000, 100000);
    assert_int_equal(b.tat, 300000);

    /* the epoch today, the key absent */

    bucket_init(&b, 100000, 3, 0);
    assert_true(step(&b, 1, EPOCH, &res));
    expect(&res, 1, 2, 100000, 0);
    assert_int_equal(b.tat, EPOCH + 100000);

    /* a key last used at 5 us after 1970: full after the long idleness */

    bucket_init(&b, 100000, 3, 0);
    assert_true(step(&b, 3, 5, &res));
    assert_int_equal(b.tat, 300005);
    assert_true(step(&b, 1, EPOCH, &res));
    expect(&res, 1, 2, 100000, 0);
    assert_true(step(&b, 2, EPOCH, &res));
    expect(&res, 1, 0, 300000, 0);

    /* a clock a little behind, on a bucket not full: admitted as usual */

    bucket_init(&b, 100000, 3, 0);
    assert_true(step(&b, 1, EPOCH, &res));
    assert_true(step(&b, 1, EPOCH - 50, &res));
    expect(&res, 1, 0, 200050, 0);
    assert_int_equal(b.tat, EPOCH + 200000);

    /*
     * A clock more than burst * T behind the last writer: refused, and the
     * TAT is pulled back to now + burst * T, as the saturating Redis
     * command stores it.
     */

    bucket_init(&b, 100000, 3, 0);
    assert_true(step(&b, 3, EPOCH, &res));
    assert_int_equal(b.tat, EPOCH + 300000);

    assert_false(step(&b, 1, EPOCH - 300001, &res));
    expect(&res, 0, 0, 300000, 100000);
    assert_int_equal(b.tat, EPOCH - 1);

    assert_false(step(&b, 1, EPOCH - 10 * SEC, &res));
    expect(&res, 0, 0, 300000, 100000);
    assert_true(b.tat <= EPOCH - 10 * SEC + 300000);
    assert_int_equal(b.tat, EPOCH - 10 * SEC + 300000);

    /* that clock then sees the bucket refill on its own time */

    assert_true(step(&b, 3, EPOCH - 10 * SEC + 300000, &res));
    expect(&res, 1, 0, 300000, 0);

    /* and the clock in front sees it full */

    assert_true(step(&b, 1, EPOCH, &res));
    expect(&res, 1, 2, 100000, 0);

    /* a clock exactly burst * T behind: the bucket is empty, not over */

    bucket_init(&b, 100000, 3, 0);
    assert_true(step(&b, 1, EPOCH, &res));
    assert_false(step(&b, 1, EPOCH - 200000, &res));
    expect(&res, 0, 0, 300000, 100000);
    assert_int_equal(b.tat, EPOCH + 100000);
}


/* a key at the top of the u63 range, e.g. written by a broken clock */

static void
test_saturated_tat(void **state)
{
    uint64_t        tat;
    bucket_t        b;
    vc_rl_result_t  res;

    bucket_init(&b, 100000, 3, U63_MAX);

    assert_false(step(&b, 2, EPOCH, &res));
    expect(&res, 0, 0, 300000, 200000);
    assert_int_equal(b.tat, EPOCH + 300000);

    assert_true(step(&b, 2, EPOCH + 300000, &res));
    expect(&res, 1, 1, 200000, 0);

    bucket_init(&b, 100000, 3, U63_MAX);

    assert_false(step(&b, 1, 0, &res));
    expect(&res, 0, 0, 300000, 100000);
    assert_int_equal(b.tat, 300000);

    /* past u63 in memory: read as the top of the range */

    tat = UINT64_MAX;
    assert_false(vc_rl_decide(&b.p, 1, EPOCH, &tat, &res));
    expect(&res, 0, 0, 300000, 100000);
    assert_int_equal(tat, EPOCH + 300000);

    tat = U63_MAX + 1;
    assert_false(vc_rl_decide(&b.p, 3, EPOCH, &tat, &res));
    expect(&res, 0, 0, 300000, 300000);
    assert_int_equal(tat, EPOCH + 300000);
}


/* the deepest buckets vc_rl_check() lets through */

static void
test_deep_bucket(void **state)
{
    uint64_t        tau, interval, burst;
    bucket_t        b;
    vc_rl_result_t  res;
    const char     *err;
    vc_rl_policy_t  p;
    int             i;

    /* the largest burst accepted at T = 1, then the largest T at burst 1 */

    for (i = 0; i < 2; i++) {
        burst = (uint64_t) 1 << 60;

        while (1) {
            p.interval = i == 0 ? 1 : burst;
            p.burst = i == 0 ? burst : 1;

            if (vc_rl_check(&p, 1, &err) != VC_OK) {
                break;
            }

            burst += (uint64_t) 1 << 54;
        }

        burst -= (uint64_t) 1 << 54;
        interval = i == 0 ? 1 : burst;
        burst = i == 0 ? burst : 1;
        tau = interval * burst;

        bucket_init(&b, interval, burst, 0);

        assert_true(step(&b, burst, EPOCH, &res));
        expect(&res, 1, 0, tau, 0);
        assert_int_equal(b.tat, EPOCH + tau);

        assert_false(step(&b, 1, EPOCH, &res));
        expect(&res, 0, 0, tau, interval);

        assert_false(step(&b, burst, EPOCH + tau - 1, &res));
        expect(&res, 0, i == 0 ? tau - 1 : 0, 1, 1);

        assert_true(step(&b, 1, EPOCH + tau, &res));
        expect(&res, 1, burst - 1, interval, 0);
        assert_int_equal(b.tat, EPOCH + tau + interval);

        /* and from far behind */

        assert_false(step(&b, 1, 0, &res));
        expect(&res, 0, 0, tau, interval);
        assert_int_equal(b.tat, tau);
    }
}


static void
test_uncharge(void **state)
{
    bucket_t        b;
    vc_rl_result_t  res, copy;

    bucket_init(&b, 1000, 5, 0);

    /* from full: given back, the bucket is full again */

    assert_true(step(&b, 2, EPOCH, &res));
    expect(&res, 1, 3, 2000, 0);
    vc_rl_uncharge(&b.p, 2, &res);
    expect(&res, 0, 5, 0, 0);

    /* from part full, with a fraction of a unit in the bucket */

    assert_true(step(&b, 1, EPOCH + 500, &res));
    expect(&res, 1, 2, 2500, 0);
    vc_rl_uncharge(&b.p, 1, &res);
    expect(&res, 0, 3, 1500, 0);

    /* down to empty and back */

    assert_true(step(&b, 2, EPOCH + 500, &res));
    expect(&res, 1, 0, 4500, 0);
    vc_rl_uncharge(&b.p, 2, &res);
    expect(&res, 0, 2, 2500, 0);

    /* a refusal is not charged: nothing to give back */

    assert_false(step(&b, 5, EPOCH + 500, &res));
    expect(&res, 0, 0, 4500, 4500);
    copy = res;
    vc_rl_uncharge(&b.p, 5, &res);
    expect(&res, copy.admitted, copy.remaining, copy.reset, copy.retry_after);

    assert_false(step(&b, 1, EPOCH + 500, &res));
    copy = res;
    vc_rl_uncharge(&b.p, 1, &res);
    expect(&res, copy.admitted, copy.remaining, copy.reset, copy.retry_after);
}


static void
test_seconds(void **state)
{
    assert_int_equal(vc_rl_seconds(0), 0);
    assert_int_equal(vc_rl_seconds(1), 1);
    assert_int_equal(vc_rl_seconds(999999), 1);
    assert_int_equal(vc_rl_seconds(1000000), 1);
    assert_int_equal(vc_rl_seconds(1000001), 2);
    assert_int_equal(vc_rl_seconds(2000000), 2);
    assert_int_equal(vc_rl_seconds(3600000000), 3600);
    assert_int_equal(vc_rl_seconds(UINT64_MAX), 18446744073710);
}


static void
test_now(void **state)
{
    uint64_t  before, now, after;

    before = (uint64_t) time(NULL) * SEC;
    now = vc_rl_now();
    after = (uint64_t) time(NULL) * SEC;

    assert_true(now + 2 * SEC >= before);
    assert_true(now <= after + 2 * SEC);

    /* microseconds, not milliseconds or nanoseconds */

    assert_true(now > 1500000000 * SEC);
    assert_true(now < U63_MAX / 1024);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_parse_rate),
        cmocka_unit_test(test_parse_rate_rounding),
        cmocka_unit_test(test_parse_rate_refused),
        cmocka_unit_test(test_parse_rate_length),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_burst_refill),
        cmocka_unit_test(test_cost),
        cmocka_unit_test(test_redis_command),
        cmocka_unit_test(test_random_agreement),
        cmocka_unit_test(test_window_bound),
        cmocka_unit_test(test_continuous),
        cmocka_unit_test(test_clock_edges),
        cmocka_unit_test(test_saturated_tat),
        cmocka_unit_test(test_deep_bucket),
        cmocka_unit_test(test_uncharge),
        cmocka_unit_test(test_seconds),
        cmocka_unit_test(test_now),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
