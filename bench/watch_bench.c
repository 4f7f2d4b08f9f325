/*-------------------------------------------------------------------------
 *
 * watch_bench.c
 *	  Commit-to-callback latency of storage_watch: one thread saves at a
 *	  fixed rate through one handle while another watches through its own
 *	  handle; the callback measures now - committed_at (the server's commit
 *	  time; client and server share the machine's clock) for every event
 *	  of the run and prints the percentiles.
 *
 *	  usage: watch_bench [-r saves/s] [-s seconds] [-w writers] [-p prefix]
 *						 URI SLOT
 *
 *	  Each of the writers (threads with a handle each, 4 by default, so
 *	  that synchronous commits share WAL flushes) ticks every millisecond
 *	  and saves its share of the rate due by then (a storage_pipeline of
 *	  separate saves: each record its own transaction), catching up if a
 *	  tick ran late, so the offered rate holds as long as the server keeps
 *	  up.  The slot is
 *	  created on first use (drop it afterwards with storage_watch_drop).
 *	  Output, one line:
 *	  rate=<offered> achieved=<saves/s> events=<n> p50_ms=.. p90_ms=..
 *	  p99_ms=.. max_ms=..
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "storage_client.h"

typedef struct consumer
{
	storage_client *h;
	const char *prefix;
	int64_t    *lat;			/* usec, one per event */
	size_t		n;
	size_t		cap;
	atomic_long expected;		/* events to wait for; -1 = unknown yet */
	storage_status st;
} consumer;

static int
on_event(void *arg, const storage_watch_event *ev)
{
	consumer   *c = arg;
	long		expected;

	if (c->n == c->cap)
	{
		c->cap = c->cap ? c->cap * 2 : 65536;
		c->lat = realloc(c->lat, c->cap * sizeof(int64_t));
		if (c->lat == NULL)
			abort();
	}
	c->lat[c->n++] = storage_now(NULL) - ev->committed_at;
	expected = atomic_load(&c->expected);
	return expected >= 0 && (long) c->n >= expected;
}

static void *
consumer_main(void *arg)
{
	consumer   *c = arg;

	c->st = storage_watch(c->h, c->prefix, 0, on_event, c);
	return NULL;
}

static int
cmp64(const void *a, const void *b)
{
	int64_t		x = *(const int64_t *) a,
				y = *(const int64_t *) b;

	return (x > y) - (x < y);
}

static double
pct_ms(const int64_t *v, size_t n, double p)
{
	size_t		i = (size_t) (p * (double) (n - 1) + 0.5);

	return n ? (double) v[i] / 1000.0 : 0.0;
}

static void
sleep_until(int64_t t)
{
	int64_t		d = t - storage_now(NULL);

	if (d > 0)
	{
		struct timespec ts = {d / STORAGE_SEC, (d % STORAGE_SEC) * 1000};

		nanosleep(&ts, NULL);
	}
}

typedef struct writer
{
	storage_client *h;
	const char *prefix;
	long		rate;
	int			seconds;
	long		done;
} writer;

/* Save at rate/s for seconds; returns the number of saves. */
static long
write_at_rate(storage_client *h, const char *prefix, long rate, int seconds)
{
	storage_op	ops[64];
	char		ids[64][64];
	long		done = 0;
	int64_t		start = storage_now(NULL);
	int64_t		tick = STORAGE_MSEC;
	int64_t		end = start + seconds * STORAGE_SEC;

	for (int64_t t = start; t < end; t += tick)
	{
		long		due = (long) ((t - start + tick) * rate / STORAGE_SEC);
		int			n = 0;

		sleep_until(t);
		while (done + n < due && n < 64)
		{
			memset(&ops[n], 0, sizeof(ops[n]));
			snprintf(ids[n], sizeof(ids[n]), "%s%ld", prefix, (done + n) % 100000);
			ops[n].kind = STORAGE_OP_SAVE;
			ops[n].rec.id = ids[n];
			ops[n].rec.data = (const unsigned char *) "0123456789abcdef";
			ops[n].rec.data_len = 16;
			ops[n].expect_version = -1;
			n++;
		}
		if (n == 0)
			continue;
		if (storage_pipeline(h, ops, n, 0) != STORAGE_OK)
		{
			fprintf(stderr, "watch_bench: save: %s\n", storage_errmsg(h));
			storage_pipeline_clear(ops, n);
			break;
		}
		storage_pipeline_clear(ops, n);
		done += n;
	}
	return done;
}

static void *
writer_main(void *arg)
{
	writer	   *w = arg;

	w->done = write_at_rate(w->h, w->prefix, w->rate, w->seconds);
	return NULL;
}

int
main(int argc, char **argv)
{
	long		rate = 1000;
	int			seconds = 5;
	const char *prefix = "watchbench/";
	consumer	c = {.expected = -1};
	writer		w[64];
	pthread_t	wth[64];
	int			nwriters = 4;
	char		prefixes[64][64];
	pthread_t	th;
	long		saved = 0;
	int64_t		t0,
				t1;
	int			opt;

	while ((opt = getopt(argc, argv, "r:s:w:p:")) != -1)
	{
		switch (opt)
		{
			case 'r':
				rate = atol(optarg);
				break;
			case 's':
				seconds = atoi(optarg);
				break;
			case 'p':
				prefix = optarg;
				break;
			case 'w':
				nwriters = atoi(optarg);
				break;
			default:
				goto usage;
		}
	}
	if (argc - optind != 2 || rate <= 0 || seconds <= 0 || nwriters < 1 || nwriters > 64)
		goto usage;
	c.prefix = prefix;
	if (storage_open(argv[optind], &c.h) != STORAGE_OK ||
		storage_set_watch_slot(c.h, argv[optind + 1]) != STORAGE_OK)
	{
		fprintf(stderr, "watch_bench: %s\n", storage_errmsg(NULL));
		return 1;
	}
	for (int i = 0; i < nwriters; i++)
	{
		snprintf(prefixes[i], sizeof(prefixes[i]), "%s%d/", prefix, i);
		w[i] = (writer) {.prefix = prefixes[i], .seconds = seconds,
		.rate = rate / nwriters + (i < rate % nwriters)};
		if (storage_open(argv[optind], &w[i].h) != STORAGE_OK)
		{
			fprintf(stderr, "watch_bench: %s\n", storage_errmsg(NULL));
			return 1;
		}
	}
	if (pthread_create(&th, NULL, consumer_main, &c) != 0)
		return 1;
	sleep(2);					/* the slot created, the stream started */
	t0 = storage_now(NULL);
	for (int i = 0; i < nwriters; i++)
		if (pthread_create(&wth[i], NULL, writer_main, &w[i]) != 0)
			return 1;
	for (int i = 0; i < nwriters; i++)
	{
		pthread_join(wth[i], NULL);
		saved += w[i].done;
	}
	t1 = storage_now(NULL);
	atomic_store(&c.expected, saved);
	/* the consumer stops at the last event; if it never comes, cancel */
	for (int i = 0; i < 600 && c.n < (size_t) saved; i++)
		usleep(100000);
	storage_watch_cancel(c.h);
	pthread_join(th, NULL);
	if (c.st != STORAGE_OK)
	{
		fprintf(stderr, "watch_bench: watch: %s\n", storage_errmsg(c.h));
		return 1;
	}
	qsort(c.lat, c.n, sizeof(int64_t), cmp64);
	printf("rate=%ld achieved=%.0f events=%zu p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
		   rate, (double) saved * STORAGE_SEC / (double) (t1 - t0), c.n,
		   pct_ms(c.lat, c.n, 0.50), pct_ms(c.lat, c.n, 0.90),
		   pct_ms(c.lat, c.n, 0.99), pct_ms(c.lat, c.n, 1.0));
	free(c.lat);
	for (int i = 0; i < nwriters; i++)
		storage_close(w[i].h);
	storage_close(c.h);
	return c.n == (size_t) saved ? 0 : 1;
usage:
	fprintf(stderr, "usage: %s [-r saves/s] [-s seconds] [-w writers] [-p prefix] URI SLOT\n", argv[0]);
	return 2;
}
