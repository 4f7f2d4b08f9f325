/*-------------------------------------------------------------------------
 *
 * pipeline_bench.c
 *	  libstorage_client on the postgresql backend against hiredis on Redis,
 *	  the same work on the same machine: fetch and save (unconditional,
 *	  with a TTL; on Redis an EVAL that bumps a version, writes the data
 *	  and sets EXPIRE) as single calls, pipelined by 100 (storage_pipeline
 *	  with a Sync per call against redisAppendCommand; and in one
 *	  transaction, STORAGE_PIPELINE_ATOMIC against MULTI/EXEC) and as batches of
 *	  100 (storage_fetch_many / storage_save_many against MGET / one EVAL
 *	  over 100 keys), with 1 and 4 threads, each thread with its own
 *	  connection.
 *
 *	  Beside them, PostgreSQL's own ceiling for the same shape over bare
 *	  libpq: the single and pipelined forms with the cheapest statement of
 *	  each kind instead of the call (a prepared SELECT 1 for a fetch, a
 *	  bare write transaction, SELECT txid_current(), for a save), sent and
 *	  synchronised as the client library sends its calls.  That is the
 *	  server's cost per statement and per transaction, which no call goes
 *	  below; the gap between a call and it is the call's own work, in the
 *	  client library and in the extension (lookup, heap and index update,
 *	  WAL).
 *
 *	  Every measurement runs -s seconds; the rounds (-r) interleave the
 *	  three sides, and each ratio printed is the median of the rounds'
 *	  ratios.  Prints a Markdown table (records/s).
 *
 *	  usage: pipeline_bench [-s seconds] [-r rounds] [-n records]
 *			   [-o fetch|save] [-f form 0..3]
 *			   [-c SQL] PG_CONNINFO REDIS_SOCKET
 *	  (-o and -f print only the rows of one operation or one form: single,
 *	  pipelined, pipelined in one transaction, batches; -c measures another
 *	  statement, without parameters, in place of the ceiling's, to see what
 *	  a part of a call costs)
 *	  The records exist: user:1..n in the storage table (bench/run.sh
 *	  loads them), user:<12 digits> strings and rec:<12 digits> hashes
 *	  0..n-1 in Redis (bench/redis_section.sh).
 *
 *-------------------------------------------------------------------------
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "storage_client.h"

#include "bench_stats.h"

#define BATCH 100
#define MAX_THREADS 4

static const char *pg_uri;
static const char *redis_sock;
static int	seconds = 2;
static int	nrecords = 200000;
static unsigned char payload[200];
static int	only_op = -1;		/* -o fetch|save: that operation's rows only */
static int	only_form = -1;		/* -f 0..3: that form's rows only */

static const char *const SAVE_ONE =
"local v = redis.call('HINCRBY', KEYS[1], 'v', 1) "
"redis.call('HSET', KEYS[1], 'd', ARGV[1]) "
"redis.call('EXPIRE', KEYS[1], ARGV[2]) return v";
static const char *const SAVE_MANY =
"for i, k in ipairs(KEYS) do redis.call('HINCRBY', k, 'v', 1) "
"redis.call('HSET', k, 'd', ARGV[1]) redis.call('EXPIRE', k, ARGV[2]) end "
"return #KEYS";
static char sha_one[41];
static char sha_many[41];

typedef enum
{
	FETCH, SAVE
} op_kind;

typedef enum
{
	SINGLE, PIPELINED, PIPELINED_ATOMIC, BATCHED
} form;

typedef enum
{
	CLIENT, CEILING, REDIS
} side;

static const char *const op_names[] = {"fetch", "save (TTL)"};
static const char *const form_names[] = {"single calls", "pipelined by 100",
"pipelined by 100, one transaction", "batches of 100"};

/* the ceiling's statement per operation */
static const char *ceiling_sql[] = {"SELECT 1", "SELECT txid_current()"};

typedef struct worker
{
	side		side;
	op_kind		op;
	form		form;
	unsigned int seed;
	double		deadline;
	long		records;
	bool		failed;
} worker;


static void
die(const char *what, const char *msg)
{
	fprintf(stderr, "pipeline_bench: %s: %s\n", what, msg);
	exit(1);
}

/* ---- the client library ---------------------------------------------------- */

static bool
pg_round(storage_client *h, worker *w, char ids[][24])
{
	int64_t		ttl = storage_now(h) + 3600 * STORAGE_SEC;
	storage_op	ops[BATCH];
	storage_record recs[BATCH];
	const char *idp[BATCH];
	int			n = w->form == SINGLE ? 1 : BATCH;
	bool		ok = true;

	/*
	 * Writes of one transaction take a block of consecutive ids (in one
	 * order: two concurrent transactions never deadlock, and a batch has
	 * each id once); everything else random ids.
	 */
	bool		block = w->op == SAVE && (w->form == BATCHED || w->form == PIPELINED_ATOMIC);
	int			base = 1 + (rand_r(&w->seed) % (nrecords / BATCH)) * BATCH;

	for (int i = 0; i < n; i++)
	{
		if (block)
			snprintf(ids[i], 24, "user:%d", base + i);
		else
			snprintf(ids[i], 24, "user:%d", 1 + rand_r(&w->seed) % nrecords);
		idp[i] = ids[i];
		recs[i] = (storage_record) {.id = ids[i], .data = payload,
		.data_len = sizeof(payload), .expires_at = ttl};
	}
	if (w->form == PIPELINED || w->form == PIPELINED_ATOMIC)
	{
		for (int i = 0; i < n; i++)
			ops[i] = w->op == FETCH ?
				(storage_op) {.kind = STORAGE_OP_FETCH, .id = ids[i]} :
				(storage_op) {.kind = STORAGE_OP_SAVE, .rec = recs[i], .expect_version = -1};
		ok = storage_pipeline(h, ops, n, w->form == PIPELINED_ATOMIC ?
							  STORAGE_PIPELINE_ATOMIC : 0) == STORAGE_OK;
		storage_pipeline_clear(ops, n);
	}
	else if (w->op == FETCH)
	{
		storage_record *out;
		size_t		nout;

		if (w->form == SINGLE)
		{
			ok = storage_fetch(h, ids[0], &recs[0]) == STORAGE_OK;
			storage_record_clear(&recs[0]);
		}
		else
		{
			ok = storage_fetch_many(h, idp, n, &out, &nout) == STORAGE_OK;
			storage_records_free(out, nout);
		}
	}
	else if (w->form == SINGLE)
		ok = storage_save(h, &recs[0], -1) == STORAGE_OK;
	else
		ok = storage_save_many(h, recs, n, NULL) == STORAGE_OK;
	if (!ok)
		fprintf(stderr, "pipeline_bench: %s\n", storage_errmsg(h));
	w->records += n;
	return ok;
}

/* ---- PostgreSQL's ceiling over bare libpq ------------------------------------- */

/*
 * Whether res has the status want (for rows, a command's status too: a -c
 * statement may return none); clears res.
 */
static bool
result_ok(PGresult *res, ExecStatusType want)
{
	ExecStatusType st = PQresultStatus(res);
	bool		ok = st == want || (want == PGRES_TUPLES_OK && st == PGRES_COMMAND_OK);

	if (!ok)
		fprintf(stderr, "pipeline_bench: libpq: %s: %s\n",
				PQresStatus(PQresultStatus(res)), PQresultErrorMessage(res));
	PQclear(res);
	return ok;
}

/*
 * The ceiling statement once, or n times in pipeline mode with a Sync after
 * each (or after the last: one transaction), sent as storage_pipeline sends
 * (pipeline_pg.c); the n calls are far below its window and their results
 * far below a socket buffer, so a blocking connection never waits here on
 * a full one.
 */
static bool
ceiling_round(PGconn *conn, worker *w)
{
	int			n = w->form == SINGLE ? 1 : BATCH;
	bool		atomic = w->form == PIPELINED_ATOMIC;
	bool		ok = true;

	w->records += n;
	if (w->form == SINGLE)
		return result_ok(PQexecPrepared(conn, "ceiling", 0, NULL, NULL, NULL, 1),
						 PGRES_TUPLES_OK);
	if (PQenterPipelineMode(conn) != 1)
		return false;
	for (int i = 0; i < n; i++)
	{
		if (PQsendQueryPrepared(conn, "ceiling", 0, NULL, NULL, NULL, 1) != 1)
			return false;
		if (!atomic || i == n - 1)
		{
#ifdef LIBPQ_HAS_SEND_PIPELINE_SYNC
			if (PQsendPipelineSync(conn) != 1)
				return false;
#else
			if (PQpipelineSync(conn) != 1)
				return false;
#endif
		}
	}
	if (PQflush(conn) != 0)
		return false;
	for (int i = 0; i < n; i++)
	{
		ok = result_ok(PQgetResult(conn), PGRES_TUPLES_OK) && ok;
		if (PQgetResult(conn) != NULL)
			return false;
		if ((!atomic || i == n - 1) &&
			!result_ok(PQgetResult(conn), PGRES_PIPELINE_SYNC))
			return false;
	}
	return PQexitPipelineMode(conn) == 1 && ok;
}

/* ---- hiredis ------------------------------------------------------------------ */

static bool
reply_ok(redisReply *r)
{
	bool		ok = r != NULL && r->type != REDIS_REPLY_ERROR;

	if (r && !ok)
		fprintf(stderr, "pipeline_bench: redis: %s\n", r->str);
	freeReplyObject(r);
	return ok;
}

static bool
redis_round(redisContext *c, worker *w)
{
	char		keys[BATCH][24];
	const char *argv[BATCH + 5];
	size_t		lens[BATCH + 5];
	int			n = w->form == SINGLE ? 1 : BATCH;
	const char *prefix = w->op == FETCH ? "user" : "rec";
	bool		ok = true;

	for (int i = 0; i < n; i++)
		snprintf(keys[i], 24, "%s:%012d", prefix, rand_r(&w->seed) % nrecords);
	if (w->form == BATCHED)
	{
		int			argc = 0;

		argv[argc++] = w->op == FETCH ? "MGET" : "EVALSHA";
		if (w->op == SAVE)
		{
			argv[argc++] = sha_many;
			argv[argc++] = "100";
		}
		for (int i = 0; i < n; i++)
			argv[argc++] = keys[i];
		if (w->op == SAVE)
		{
			argv[argc++] = (const char *) payload;
			argv[argc++] = "3600";
		}
		for (int i = 0; i < argc; i++)
			lens[i] = argv[i] == (const char *) payload ? sizeof(payload) : strlen(argv[i]);
		ok = reply_ok(redisCommandArgv(c, argc, argv, lens));
	}
	else
	{
		int			nreplies = n;

		/* one transaction: MULTI ... EXEC around the same commands */
		if (w->form == PIPELINED_ATOMIC)
		{
			redisAppendCommand(c, "MULTI");
			nreplies += 2;
		}
		for (int i = 0; i < n; i++)
		{
			if (w->op == FETCH)
				redisAppendCommand(c, "GET %s", keys[i]);
			else
				redisAppendCommand(c, "EVALSHA %s 1 %s %b 3600", sha_one, keys[i],
								   payload, sizeof(payload));
		}
		if (w->form == PIPELINED_ATOMIC)
			redisAppendCommand(c, "EXEC");
		for (int i = 0; i < nreplies; i++)
		{
			void	   *r = NULL;

			if (redisGetReply(c, &r) != REDIS_OK)
				return false;
			ok = reply_ok(r) && ok;
		}
	}
	w->records += n;
	return ok;
}

/* ---- the measurement ---------------------------------------------------------- */

static void *
run_worker(void *arg)
{
	worker	   *w = arg;
	char		ids[BATCH][24];

	if (w->side == REDIS)
	{
		redisContext *c = redisConnectUnix(redis_sock);

		if (c == NULL || c->err)
			die("redis", c ? c->errstr : "out of memory");
		while (now_sec() < w->deadline && !w->failed)
			w->failed = !redis_round(c, w);
		redisFree(c);
	}
	else if (w->side == CEILING)
	{
		PGconn	   *conn = PQconnectdb(pg_uri);

		if (PQstatus(conn) != CONNECTION_OK)
			die("libpq", PQerrorMessage(conn));
		if (!result_ok(PQprepare(conn, "ceiling", ceiling_sql[w->op], 0, NULL),
					   PGRES_COMMAND_OK))
			die("libpq", "prepare failed");
		while (now_sec() < w->deadline && !w->failed)
			w->failed = !ceiling_round(conn, w);
		if (w->failed)
			fprintf(stderr, "pipeline_bench: libpq: %s", PQerrorMessage(conn));
		PQfinish(conn);
	}
	else
	{
		storage_client *h;

		if (storage_open(pg_uri, &h) != STORAGE_OK)
			die("open", storage_errmsg(NULL));
		while (now_sec() < w->deadline && !w->failed)
			w->failed = !pg_round(h, w, ids);
		storage_close(h);
	}
	return NULL;
}

/* records/s of nthreads workers doing one thing for `seconds` */
static double
measure(side sd, op_kind op, form f, int nthreads)
{
	pthread_t	th[MAX_THREADS];
	worker		w[MAX_THREADS];
	double		start = now_sec();
	long		total = 0;

	for (int i = 0; i < nthreads; i++)
	{
		w[i] = (worker) {.side = sd, .op = op, .form = f,
		.seed = (unsigned int) (start * 1000) + i, .deadline = start + seconds};
		pthread_create(&th[i], NULL, run_worker, &w[i]);
	}
	for (int i = 0; i < nthreads; i++)
	{
		pthread_join(th[i], NULL);
		if (w[i].failed)
			die("measurement", sd == REDIS ? "redis call failed" :
				sd == CEILING ? "libpq call failed" : "storage call failed");
		total += w[i].records;
	}
	return total / (now_sec() - start);
}



static void
load_scripts(void)
{
	redisContext *c = redisConnectUnix(redis_sock);
	redisReply *r;

	if (c == NULL || c->err)
		die("redis", c ? c->errstr : "out of memory");
	r = redisCommand(c, "SCRIPT LOAD %s", SAVE_ONE);
	if (r == NULL || r->type != REDIS_REPLY_STRING)
		die("redis", "SCRIPT LOAD failed");
	snprintf(sha_one, sizeof(sha_one), "%s", r->str);
	freeReplyObject(r);
	r = redisCommand(c, "SCRIPT LOAD %s", SAVE_MANY);
	if (r == NULL || r->type != REDIS_REPLY_STRING)
		die("redis", "SCRIPT LOAD failed");
	snprintf(sha_many, sizeof(sha_many), "%s", r->str);
	freeReplyObject(r);
	redisFree(c);
}

/*
 * One row of the table: rounds of the client, the ceiling (no batch form)
 * and hiredis, one after the other, and the medians of their ratios.
 */
static void
print_row(op_kind op, form f, int nthreads, int rounds)
{
	bool		ceiling = f != BATCHED;
	double		pg[MAX_REPS],
				rd[MAX_REPS],
				cl[MAX_REPS],
				pg_rd[MAX_REPS],
				pg_cl[MAX_REPS],
				cl_rd[MAX_REPS];

	for (int r = 0; r < rounds; r++)
	{
		pg[r] = measure(CLIENT, op, f, nthreads);
		cl[r] = ceiling ? measure(CEILING, op, f, nthreads) : 0;
		rd[r] = measure(REDIS, op, f, nthreads);
		pg_rd[r] = pg[r] / rd[r];
		pg_cl[r] = ceiling ? pg[r] / cl[r] : 0;
		cl_rd[r] = cl[r] / rd[r];
	}
	printf("| %s | %s | %d | %.0f | %.0f | %.2f |", op_names[op], form_names[f],
		   nthreads, median(pg, rounds), median(rd, rounds), median(pg_rd, rounds));
	if (ceiling)
		printf(" %.0f | %.2f | %.2f |\n", median(cl, rounds), median(pg_cl, rounds),
			   median(cl_rd, rounds));
	else
		printf(" — | | |\n");
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	int			rounds = 5;
	int			opt;
	static const int threads[] = {1, 4};

	while ((opt = getopt(argc, argv, "s:r:n:o:f:c:")) != -1)
	{
		if (opt == 'c')
			ceiling_sql[0] = ceiling_sql[1] = optarg;
		else
		if (opt == 'o')
			only_op = strcmp(optarg, "save") == 0 ? SAVE :
				strcmp(optarg, "fetch") == 0 ? FETCH : -2;
		else if (opt == 'f')
			only_form = atoi(optarg);
		else if (opt == 's')
			seconds = atoi(optarg);
		else if (opt == 'r')
			rounds = atoi(optarg);
		else if (opt == 'n')
			nrecords = atoi(optarg);
		else
			return 2;
	}
	if (argc - optind != 2 || rounds < 1 || rounds > MAX_REPS ||
		only_op < -1 || only_form < -1 || only_form > BATCHED ||
		nrecords < BATCH || seconds < 1)
	{
		fprintf(stderr, "usage: pipeline_bench [-s seconds] [-r rounds (1..%d)] [-n records] [-o fetch|save] [-f 0..3] [-c SQL] PG_CONNINFO REDIS_SOCKET\n",
				MAX_REPS);
		return 2;
	}
	pg_uri = argv[optind];
	redis_sock = argv[optind + 1];
	memset(payload, 'c', sizeof(payload));
	load_scripts();

	printf("\n#### Client library (postgresql backend) against hiredis (Redis) and against PostgreSQL's ceiling, records/s, %d rounds of %d s, medians\n\n",
		   rounds, seconds);
	printf("The ceiling: the same form over bare libpq with `SELECT 1` for a fetch and `SELECT txid_current()` (a bare write transaction) for a save.\n\n");
	printf("| operation | form | threads | storage client | hiredis | client / hiredis | ceiling | client / ceiling | ceiling / hiredis |\n");
	printf("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
	for (int op = FETCH; op <= SAVE; op++)
		for (int f = SINGLE; f <= BATCHED; f++)
			for (size_t t = 0; t < sizeof(threads) / sizeof(threads[0]); t++)
				if ((only_op < 0 || only_op == op) && (only_form < 0 || only_form == f))
					print_row(op, f, threads[t], rounds);
	return 0;
}
