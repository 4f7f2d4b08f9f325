/*-------------------------------------------------------------------------
 *
 * client_bucket_bench.c
 *	  The bucket layer of libstorage_client over one URI, two ways: the
 *	  backend's own bucket operations (postgresql: the extension's bucket
 *	  and lock functions) and the generic layer over fetch/save/delete/list
 *	  (as every call ran before release 1.1), forced through the library's
 *	  internal test hook, so it links the test archive
 *	  (libstorage_client_test.a, not installed).
 *
 *	  usage: client_bucket_bench [-n keys] [-r reps] [-l locks] URI
 *		-n	keys in the bucket (default 10000, 200-byte values)
 *		-r	repetitions, interleaved server / generic (default 3)
 *		-l	lock acquire+release pairs per measurement (default 1000)
 *
 *	  Measures get_keys and get_items of the bucket, delete_bucket of it
 *	  (reloaded before each, not timed), and uncontended lock
 *	  acquire+release pairs; prints a Markdown table of medians (ms per
 *	  call, or pairs/s) with every run.  Works on the bucket "cbb" and the
 *	  lock "cbb-lock", removed at the end.
 *
 *-------------------------------------------------------------------------
 */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <storage_client.h>

#include "bench_stats.h"

#define VAL_LEN		200

/* internal test hook of the library (see storage_backend.h) */
extern void storage_force_generic_buckets(storage_client *h, bool on);

static const char *const BUCKET[] = {"cbb"};


static void
check(storage_client *h, const char *what, storage_status st)
{
	if (st == STORAGE_OK)
		return;
	fprintf(stderr, "client_bucket_bench: %s: %s: %s\n", what,
			storage_status_name(st), storage_errmsg(h));
	exit(1);
}

/* n keys k0000001.. with 200-byte values, by upsert_items of 100 */
static void
load(storage_client *h, size_t n)
{
	static unsigned char val[VAL_LEN];
	storage_item items[100];
	char		keys[100][16];

	memset(val, 'v', sizeof(val));
	for (size_t i = 0; i < n; i += 100)
	{
		size_t		m = n - i < 100 ? n - i : 100;

		for (size_t k = 0; k < m; k++)
		{
			snprintf(keys[k], sizeof(keys[k]), "k%07zu", i + k + 1);
			items[k] = (storage_item) {.key = keys[k], .val = val, .val_len = VAL_LEN};
		}
		check(h, "upsert_items", storage_upsert_items(h, BUCKET, 1, items, m, 0));
	}
}

/* ms of one get_keys (what == 0) or get_items (1) or delete_bucket (2) */
static double
one_call(storage_client *h, int what, size_t n)
{
	double		t0;
	double		t;

	if (what == 2)
		load(h, n);
	t0 = now_sec();
	if (what == 0)
	{
		char	  **keys;
		size_t		got;

		check(h, "get_keys", storage_get_keys(h, BUCKET, 1, &keys, &got));
		t = now_sec() - t0;
		storage_strings_free(keys, got);
		if (got != n)
			fprintf(stderr, "client_bucket_bench: get_keys returned %zu of %zu\n", got, n);
	}
	else if (what == 1)
	{
		storage_item *items;
		size_t		got;

		check(h, "get_items", storage_get_items(h, BUCKET, 1, &items, &got));
		t = now_sec() - t0;
		storage_items_free(items, got);
	}
	else
	{
		int64_t		count;

		check(h, "delete_bucket", storage_delete_bucket(h, NULL, 0, "cbb", &count));
		t = now_sec() - t0;
		if ((size_t) count != n)
			fprintf(stderr, "client_bucket_bench: delete_bucket removed %lld of %zu\n",
					(long long) count, n);
	}
	return t * 1000;
}

/* acquire+release pairs per second */
static double
locks(storage_client *h, int pairs)
{
	double		t0 = now_sec();

	for (int i = 0; i < pairs; i++)
	{
		check(h, "acquire_lock", storage_acquire_lock(h, "cbb-lock", 60 * STORAGE_SEC));
		check(h, "release_lock", storage_release_lock(h, "cbb-lock"));
	}
	return pairs / (now_sec() - t0);
}



static void
runs(const double *v, int n)
{
	for (int i = 0; i < n; i++)
		printf("%s%.1f", i ? " " : "", v[i]);
}

int
main(int argc, char **argv)
{
	static const char *const ops[4] = {
		"get_keys (ms per call)", "get_items (ms per call)",
		"delete_bucket (ms per call)", "lock acquire+release (pairs/s)"
	};
	double		m[4][2][MAX_REPS];
	storage_client *h;
	size_t		n = 10000;
	int			reps = 3;
	int			pairs = 1000;
	int			c;

	while ((c = getopt(argc, argv, "n:r:l:")) != -1)
	{
		if (c == 'n')
			n = strtoul(optarg, NULL, 10);
		else if (c == 'r')
			reps = atoi(optarg);
		else if (c == 'l')
			pairs = atoi(optarg);
		else
			optind = argc + 1;
	}
	if (optind != argc - 1 || n == 0 || reps < 1 || reps > MAX_REPS || pairs < 1)
	{
		fprintf(stderr, "usage: client_bucket_bench [-n keys] [-r reps] [-l locks] URI\n");
		return 2;
	}
	check(NULL, "storage_open", storage_open(argv[optind], &h));
	storage_delete_bucket(h, NULL, 0, "cbb", NULL);
	load(h, n);
	for (int r = 0; r < reps; r++)
		for (int way = 0; way < 2; way++)
		{
			storage_force_generic_buckets(h, way == 1);
			for (int op = 0; op < 3; op++)
				m[op][way][r] = one_call(h, op, n);
			load(h, n);			/* for the next get_keys */
			m[3][way][r] = locks(h, pairs);
		}
	storage_force_generic_buckets(h, false);
	storage_delete_bucket(h, NULL, 0, "cbb", NULL);

	printf("| %s, %zu keys | server functions | generic layer | generic / server | server runs | generic runs |\n",
		   storage_backend_name(h), n);
	printf("|---|---:|---:|---:|---|---|\n");
	for (int op = 0; op < 4; op++)
	{
		double		s = median(m[op][0], reps);
		double		g = median(m[op][1], reps);

		printf("| %s | %.1f | %.1f | %.2f | ", ops[op], s, g, op == 3 ? s / g : g / s);
		runs(m[op][0], reps);
		printf(" | ");
		runs(m[op][1], reps);
		printf(" |\n");
	}
	storage_close(h);
	return 0;
}
