/*-------------------------------------------------------------------------
 *
 * client_bench.c
 *	  Operations per second of libstorage_client for one URI: single
 *	  storage_save / storage_fetch against storage_save_many /
 *	  storage_fetch_many in batches, over the same records.  Each
 *	  measurement is repeated, interleaved (save single, save batch, fetch
 *	  single, fetch batch, and again), and reported as a Markdown table row
 *	  with the medians and the batch / single ratio.
 *
 *	  usage: client_bench [-n records] [-b batch] [-r reps] [-t seconds]
 *						  [-H] [-l label] URI [[-l label] URI ...]
 *		-n	records (default 20000), ids "cb:0000001", ... with 200 bytes
 *		-b	records per batch call (default 100)
 *		-r	repetitions of each measurement (default 3)
 *		-t	cap per measurement in seconds (default 30): a slow backend
 *			stops early and is measured over the records it did
 *		-l	label of the next URI's rows (default: the backend's name)
 *		-H	print the table header first
 *
 *	  The records "cb:*" are written, then deleted at the end.  Saves are
 *	  unversioned (expect_version -1) over existing records.
 *
 *	  A server without batch writes (dynalite: no TransactWriteItems, so
 *	  save_many and delete_many answer STORAGE_BACKEND_ERROR with the code
 *	  UnknownOperationException) gets its records loaded and deleted one by
 *	  one, and its batch save column says n/a.
 *
 *	  Several URIs (e.g. the same database directly and through a pooler,
 *	  with prepared and unnamed statements) are measured in the same run,
 *	  their measurements interleaved too, each over its own records
 *	  ("cb2:*" for the second URI, ...); a second table then gives each
 *	  one's medians relative to the first URI's.
 *
 *-------------------------------------------------------------------------
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <storage_client.h>

#include "bench_stats.h"

#define PAYLOAD_LEN 200
#define MAX_URIS	8

typedef struct bench
{
	storage_client *h;
	char	  **ids;
	size_t		nrecs;
	size_t		batch;
	double		cap;			/* seconds per measurement */
	unsigned char payload[PAYLOAD_LEN];
	bool		no_batch_writes;	/* the server lacks them (see above) */
} bench;

static bool
unsupported(bench *b, storage_status st)
{
	return st == STORAGE_BACKEND_ERROR &&
		strcmp(storage_errcode(b->h), "UnknownOperationException") == 0;
}

/* one measurement: records per second */
typedef double (*measure_fn) (bench *b);


static void
die(bench *b, const char *what, storage_status st)
{
	fprintf(stderr, "client_bench: %s: %s: %s\n", what,
			storage_status_name(st), storage_errmsg(b ? b->h : NULL));
	exit(1);
}

static storage_record
record_of(bench *b, size_t i)
{
	storage_record r = {0};

	r.id = b->ids[i];
	r.data = b->payload;
	r.data_len = PAYLOAD_LEN;
	return r;
}

/* ---- the four measurements ------------------------------------------- */

static double
save_single(bench *b)
{
	double		t0 = now_sec();
	size_t		i;

	for (i = 0; i < b->nrecs; i++)
	{
		storage_record r = record_of(b, i);
		storage_status st = storage_save(b->h, &r, -1);

		if (st != STORAGE_OK)
			die(b, "storage_save", st);
		if (i % 100 == 99 && now_sec() - t0 > b->cap)
		{
			i++;
			break;
		}
	}
	return i / (now_sec() - t0);
}

static double
save_batch(bench *b)
{
	storage_record *recs;
	double		t0 = now_sec();
	size_t		i;

	if (b->no_batch_writes)
		return NAN;
	recs = calloc(b->batch, sizeof(storage_record));
	for (i = 0; i < b->nrecs && now_sec() - t0 <= b->cap;)
	{
		size_t		m = b->nrecs - i < b->batch ? b->nrecs - i : b->batch;
		storage_status st;

		for (size_t k = 0; k < m; k++)
			recs[k] = record_of(b, i + k);
		if ((st = storage_save_many(b->h, recs, m, NULL)) != STORAGE_OK)
			die(b, "storage_save_many", st);
		i += m;
	}
	free(recs);
	return i / (now_sec() - t0);
}

static double
fetch_single(bench *b)
{
	double		t0 = now_sec();
	size_t		i;

	for (i = 0; i < b->nrecs; i++)
	{
		storage_record r;
		storage_status st = storage_fetch(b->h, b->ids[i], &r);

		if (st != STORAGE_OK)
			die(b, "storage_fetch", st);
		storage_record_clear(&r);
		if (i % 100 == 99 && now_sec() - t0 > b->cap)
		{
			i++;
			break;
		}
	}
	return i / (now_sec() - t0);
}

static double
fetch_batch(bench *b)
{
	double		t0 = now_sec();
	size_t		i;

	for (i = 0; i < b->nrecs && now_sec() - t0 <= b->cap;)
	{
		size_t		m = b->nrecs - i < b->batch ? b->nrecs - i : b->batch;
		storage_record *recs;
		size_t		n;
		storage_status st;

		st = storage_fetch_many(b->h, (const char *const *) b->ids + i, m, &recs, &n);
		if (st != STORAGE_OK)
			die(b, "storage_fetch_many", st);
		if (n != m)
		{
			fprintf(stderr, "client_bench: fetch_many returned %zu of %zu records\n", n, m);
			exit(1);
		}
		storage_records_free(recs, n);
		i += m;
	}
	return i / (now_sec() - t0);
}

/* ---- setup, report ---------------------------------------------------- */

/* Write (or delete) every record with batch calls. */
static void
load_all(bench *b, bool delete)
{
	for (size_t i = 0; i < b->nrecs; i += b->batch)
	{
		size_t		m = b->nrecs - i < b->batch ? b->nrecs - i : b->batch;
		storage_status st;

		if (delete && !b->no_batch_writes)
			st = storage_delete_many(b->h, (const char *const *) b->ids + i, m, NULL);
		else if (!b->no_batch_writes)
		{
			storage_record *recs = calloc(m, sizeof(storage_record));

			for (size_t k = 0; k < m; k++)
				recs[k] = record_of(b, i + k);
			st = storage_save_many(b->h, recs, m, NULL);
			free(recs);
		}
		else
			st = STORAGE_BACKEND_ERROR;
		if (unsupported(b, st) || b->no_batch_writes)
		{
			/* one by one where the server has no batch writes */
			b->no_batch_writes = true;
			st = STORAGE_OK;
			for (size_t k = 0; st == STORAGE_OK && k < m; k++)
			{
				storage_record r = record_of(b, i + k);

				st = delete ? storage_delete(b->h, b->ids[i + k], NULL) :
					storage_save(b->h, &r, -1);
			}
		}
		if (st != STORAGE_OK)
			die(b, delete ? "cleanup" : "loading", st);
	}
}



static void
print_runs(const double *v, int n)
{
	for (int i = 0; i < n; i++)
		printf("%s%.0f", i ? " " : "", v[i]);
}

static void
print_row(const char *label, const char *op,
		  const double *single, const double *batched, int reps)
{
	double		ms = median(single, reps);
	double		mb = median(batched, reps);

	if (isnan(mb))
	{
		printf("| %s | %s | %.0f | n/a (no batch writes on this server) | | ", label, op, ms);
		print_runs(single, reps);
		printf(" | |\n");
		return;
	}
	printf("| %s | %s | %.0f | %.0f | %.2f | ", label, op, ms, mb, mb / ms);
	print_runs(single, reps);
	printf(" | ");
	print_runs(batched, reps);
	printf(" |\n");
}

static void
usage(void)
{
	fprintf(stderr, "usage: client_bench [-n records] [-b batch] [-r reps] "
			"[-t seconds] [-H] [-l label] URI [[-l label] URI ...]\n");
	exit(2);
}

/* Each URI's medians relative to the first URI's. */
static void
print_relative(bench *b, int nuris, const char **labels,
			   double runs[][4][MAX_REPS], int reps)
{
	static const char *const ops[2] = {"save (unversioned)", "fetch"};

	printf("\n| compared with %s | operation | single calls | batches of %zu |\n",
		   labels[0], b[0].batch);
	printf("|---|---|---:|---:|\n");
	for (int u = 1; u < nuris; u++)
		for (int op = 0; op < 2; op++)
			printf("| %s | %s | %.2f | %.2f |\n", labels[u], ops[op],
				   median(runs[u][2 * op], reps) / median(runs[0][2 * op], reps),
				   median(runs[u][2 * op + 1], reps) / median(runs[0][2 * op + 1], reps));
}

int
main(int argc, char **argv)
{
	bench		b[MAX_URIS];
	measure_fn	fns[4] = {save_single, save_batch, fetch_single, fetch_batch};
	static double runs[MAX_URIS][4][MAX_REPS];
	const char *labels[MAX_URIS] = {0};
	const char *uris[MAX_URIS];
	const char *label = NULL;
	size_t		nrecs = 20000;
	size_t		batch = 100;
	double		cap = 30;
	int			nuris = 0;
	int			reps = 3;
	int			header = 0;
	int			c;
	storage_status st;

	/* options, then URIs each optionally preceded by -l label ("+": in order) */
	while (optind < argc)
	{
		if ((c = getopt(argc, argv, "+n:b:r:t:l:H")) == -1)
		{
			if (nuris == MAX_URIS)
				usage();
			labels[nuris] = label;
			uris[nuris++] = argv[optind++];
			label = NULL;
			continue;
		}
		switch (c)
		{
			case 'n':
				nrecs = strtoul(optarg, NULL, 10);
				break;
			case 'b':
				batch = strtoul(optarg, NULL, 10);
				break;
			case 'r':
				reps = atoi(optarg);
				break;
			case 't':
				cap = atof(optarg);
				break;
			case 'l':
				label = optarg;
				break;
			case 'H':
				header = 1;
				break;
			default:
				usage();
		}
	}
	if (nuris == 0 || label != NULL || nrecs == 0 || batch == 0 ||
		reps < 1 || reps > MAX_REPS || cap <= 0)
		usage();
	if (header)
	{
		printf("| backend | operation | single calls (records/s) | "
			   "batches of %zu (records/s) | batch / single | single runs | batch runs |\n",
			   batch);
		printf("|---|---|---:|---:|---:|---|---|\n");
		fflush(stdout);
	}
	for (int u = 0; u < nuris; u++)
	{
		bench	   *bu = &b[u];

		memset(bu, 0, sizeof(*bu));
		bu->nrecs = nrecs;
		bu->batch = batch;
		bu->cap = cap;
		if ((st = storage_open(uris[u], &bu->h)) != STORAGE_OK)
			die(NULL, "storage_open", st);
		if (labels[u] == NULL)
			labels[u] = storage_backend_name(bu->h);
		bu->ids = calloc(nrecs, sizeof(char *));
		for (size_t i = 0; i < nrecs; i++)
		{
			bu->ids[i] = malloc(32);
			if (u == 0)
				snprintf(bu->ids[i], 32, "cb:%07zu", i + 1);
			else
				snprintf(bu->ids[i], 32, "cb%d:%07zu", u + 1, i + 1);
		}
		memset(bu->payload, 'x', sizeof(bu->payload));
		load_all(bu, true);
		load_all(bu, false);	/* every measured save is an update */
	}

	for (int r = 0; r < reps; r++)
		for (int u = 0; u < nuris; u++)
			for (int m = 0; m < 4; m++)
				runs[u][m][r] = fns[m] (&b[u]);

	for (int u = 0; u < nuris; u++)
	{
		print_row(labels[u], "save (unversioned)", runs[u][0], runs[u][1], reps);
		print_row(labels[u], "fetch", runs[u][2], runs[u][3], reps);
	}
	if (nuris > 1)
		print_relative(b, nuris, labels, runs, reps);
	fflush(stdout);

	for (int u = 0; u < nuris; u++)
	{
		load_all(&b[u], true);
		for (size_t i = 0; i < nrecs; i++)
			free(b[u].ids[i]);
		free(b[u].ids);
		storage_close(b[u].h);
	}
	return 0;
}
