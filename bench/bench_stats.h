/*-------------------------------------------------------------------------
 *
 * bench_stats.h
 *	  What the C benchmarks of bench/ share: a monotonic clock and the
 *	  median of a run's repetitions (header only: each benchmark is one
 *	  source file built by its own command).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BENCH_STATS_H
#define BENCH_STATS_H

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* at most this many repetitions of one measurement */
#define MAX_REPS	15

static inline double
now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

/* The median of v[0..n-1], 1 <= n <= MAX_REPS (v is not changed). */
static inline double
median(const double *v, int n)
{
	double		s[MAX_REPS];

	memcpy(s, v, n * sizeof(double));
	qsort(s, n, sizeof(double), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

#endif							/* BENCH_STATS_H */
