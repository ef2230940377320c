/* vc_ratelimit.h -- GCRA token-bucket arithmetic, in Redis and in memory */

#ifndef VC_RATELIMIT_H
#define VC_RATELIMIT_H

#include "vc_common.h"


/*
 * A limit admits on average one unit of cost every `interval` microseconds
 * and holds at most `burst` units: after idleness `burst` requests of cost 1
 * pass at once, and over any interval of length t at most
 * burst + t / interval units are admitted.
 *
 * The state of a bucket is one number, its theoretical arrival time (TAT,
 * microseconds since the epoch): the bucket is full when TAT <= now, and a
 * request of cost c at `now` is admitted iff
 *
 *     max(TAT, now) + c * interval - now <= burst * interval,
 *
 * after which TAT = max(TAT, now) + c * interval.  A refused request leaves
 * TAT alone.  See vc_ratelimit.c for the Redis form of the same rule.
 */
typedef struct {
    uint64_t        interval;   /* microseconds per unit, >= 1 */
    uint64_t        burst;      /* capacity in units, >= 1 */
} vc_rl_policy_t;


typedef struct {
    unsigned        admitted;
    uint64_t        remaining;    /* units the bucket would admit now */
    uint64_t        reset;        /* microseconds until the bucket is full */
    uint64_t        retry_after;  /* microseconds until this request's cost
                                     would pass; 0 when admitted */
} vc_rl_result_t;


#define VC_RL_BITFIELD_OPS  5
#define VC_RL_U63_MAX       ((uint64_t) INT64_MAX)


/*
 * Parses a rate, "<n>r/s", "<n>r/m" or "<n>r/h", into the interval between
 * units, rounded up to whole microseconds so that the rate admitted is never
 * above the rate configured.  Returns VC_OK, or VC_ERROR with a reason in
 * *err (a static string).
 */
int vc_rl_parse_rate(const char *s, size_t len, uint64_t *interval,
    const char **err);

/*
 * Checks a policy and a cost against the arithmetic's ranges (burst *
 * interval must stay far below 2^63).  Returns VC_OK, or VC_ERROR with a
 * reason in *err.
 */
int vc_rl_check(const vc_rl_policy_t *p, uint64_t cost, const char **err);

/* the wall clock in microseconds: TAT is shared by every instance */
uint64_t vc_rl_now(void);

/*
 * Fills in the five signed increments of the lua-free Redis command
 *
 *   BITFIELD <key> OVERFLOW SAT  INCRBY u63 0 <op[0]>
 *                                INCRBY u63 0 <op[1]>
 *                  OVERFLOW FAIL INCRBY u63 0 <op[2]>
 *                  OVERFLOW SAT  INCRBY u63 0 <op[3]>
 *                                INCRBY u63 0 <op[4]>
 *
 * for a request of `cost` units at `now`.
 */
void vc_rl_bitfield_ops(const vc_rl_policy_t *p, uint64_t cost, uint64_t now,
    int64_t op[VC_RL_BITFIELD_OPS]);

/*
 * Reads the decision from that command's replies: x, the first reply
 * (max(TAT - now, 0) before the request), and whether the third reply was
 * nil (refused).  Fills in *res.
 */
void vc_rl_result(const vc_rl_policy_t *p, uint64_t cost, uint64_t x,
    unsigned refused, vc_rl_result_t *res);

/*
 * The result of a request that is not charged after all (another limit of
 * the same request refused it, and this limit's units were given back).
 */
void vc_rl_uncharge(const vc_rl_policy_t *p, uint64_t cost,
    vc_rl_result_t *res);

/*
 * The same decision on a bucket held in memory (the per-instance fallback):
 * updates *tat as the Redis command would, fills in *res.  Returns
 * res->admitted.
 */
unsigned vc_rl_decide(const vc_rl_policy_t *p, uint64_t cost, uint64_t now,
    uint64_t *tat, vc_rl_result_t *res);

/* seconds, rounded up, for headers: 0 only for 0 */
uint64_t vc_rl_seconds(uint64_t usec);


#endif /* VC_RATELIMIT_H */
