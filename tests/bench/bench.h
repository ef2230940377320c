/* bench.h -- what the micro-benchmarks share: their clock and their exit */

/*
 * Included once, by the benchmark's own .c file, after it has defined
 * BENCH_NAME (the program's name, for its error messages) and BENCH_CLOCK
 * (the clock it times with: CLOCK_MONOTONIC for a best-of figure,
 * CLOCK_THREAD_CPUTIME_ID where time spent preempted must not count).
 */

#ifndef BENCH_H
#define BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>


/* BENCH_CLOCK's time, in ns */

static inline double
now_ns(void)
{
    struct timespec  ts;

    clock_gettime(BENCH_CLOCK, &ts);

    return ts.tv_sec * 1e9 + ts.tv_nsec;
}


/* "<BENCH_NAME>: <what> <name>: <reason>" on stderr, and exit status 1 */

static inline void
fail(const char *what, const char *name, const char *reason)
{
    fprintf(stderr, BENCH_NAME ": %s %s: %s\n", what, name, reason);
    exit(1);
}


#endif /* BENCH_H */
