/*-------------------------------------------------------------------------
 *
 * pipeline_pg.c
 *	  storage_pipeline() on the postgresql backend: libpq's pipeline mode.
 *	  Every call is the statement a single call sends (backend_pg.h), so
 *	  its result and error are read by the same rules.
 *
 *	  The separate form puts a Sync after every call: each call is its own
 *	  implicit transaction, and an error aborts only the call it belongs
 *	  to.  The atomic form puts one Sync after the last call: all calls are
 *	  one implicit transaction; after an error the server skips the rest
 *	  (PGRES_PIPELINE_ABORTED) and rolls back.  Neither form leaves
 *	  anything on the server connection between two Syncs' transactions,
 *	  so both work behind a pooler in transaction mode with prepare=off.
 *
 *	  The connection is non-blocking while the pipeline runs: calls are
 *	  sent while results are read, with at most WINDOW calls in flight, so
 *	  neither side ever waits for the other to drain a full socket buffer,
 *	  whatever the pipeline's length (and each window of the atomic form
 *	  ends with a Flush, so that its results come before the final Sync).
 *
 *	  Each turn of the loop queues what the window allows, then writes it
 *	  to the socket in one go.  Built against libpq 17 or later, a Sync is
 *	  queued with PQsendPipelineSync, which does not write; before that,
 *	  PQpipelineSync writes at every Sync, so the separate form costs a
 *	  send() per call.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_pg.h"

/* calls sent ahead of the results read */
#define WINDOW 1024

/* What the next result on the connection belongs to. */
typedef enum
{
	EXPECT_RESULT,				/* the result of call recv */
	EXPECT_END,					/* the NULL that ends call recv's results */
	EXPECT_SYNC					/* the Sync after call recv */
} expect_kind;

typedef struct pipe_run
{
	storage_client *h;
	void	   *state;
	PGconn	   *conn;
	storage_op **ops;			/* the calls to send, in order */
	storage_pg_call *calls;		/* their statements and parameters */
	size_t		n;
	bool		atomic;
	size_t		sent;			/* calls queued */
	size_t		recv;			/* calls whose results are complete */
	expect_kind expect;
	PGresult   *commit_error;	/* atomic: an error at the Sync itself */
} pipe_run;

static bool
sync_after(const pipe_run *r, size_t i)
{
	return !r->atomic || i == r->n - 1;
}

/* Queue a Sync; the caller writes it out (PQflush). */
static bool
queue_sync(PGconn *conn)
{
#ifdef LIBPQ_HAS_SEND_PIPELINE_SYNC
	return PQsendPipelineSync(conn) == 1;
#else
	return PQpipelineSync(conn) == 1;
#endif
}

/*
 * Queue calls up to the window (the caller flushes); false if the
 * connection failed.
 */
static bool
send_some(pipe_run *r)
{
	size_t		before = r->sent;

	while (r->sent < r->n && r->sent - r->recv < WINDOW)
	{
		if (!storage_pg_send(r->state, &r->calls[r->sent]))
			return false;
		if (sync_after(r, r->sent) && !queue_sync(r->conn))
			return false;
		r->sent++;
	}

	/*
	 * The server sends its output when its buffer is full or at a Sync:
	 * without a Sync at the end, ask for the rest, or the results of the
	 * window's last calls would never come while the window waits for them.
	 */
	if (r->sent > before && !sync_after(r, r->sent - 1) &&
		PQsendFlushRequest(r->conn) != 1)
		return false;
	return true;
}

/* One result from the connection (NULL for the end of a call's results). */
static void
take_result(pipe_run *r, PGresult *res)
{
	storage_op *op = r->ops[r->recv];

	switch (r->expect)
	{
		case EXPECT_RESULT:
			/* skipped after an earlier error of the atomic form: stays ABORTED */
			if (PQresultStatus(res) == PGRES_PIPELINE_ABORTED)
				PQclear(res);
			else
				storage_op_result(r->h, op,
								  storage_pg_call_result(r->h, r->state, op,
														 r->calls[r->recv].stmt, res));
			r->expect = EXPECT_END;
			return;
		case EXPECT_END:
			r->expect = sync_after(r, r->recv) ? EXPECT_SYNC : EXPECT_RESULT;
			if (r->expect == EXPECT_RESULT)
				r->recv++;
			return;
		case EXPECT_SYNC:
			if (PQresultStatus(res) != PGRES_PIPELINE_SYNC)
			{
				/* an error of the commit itself arrives before the Sync */
				PQclear(r->commit_error);
				r->commit_error = res;
				return;
			}
			PQclear(res);
			r->recv++;
			r->expect = EXPECT_RESULT;
			return;
	}
}

/*
 * The commit of the atomic form failed: no call took effect, each carries
 * the commit's error.
 */
static void
commit_failed(pipe_run *r)
{
	storage_status st = storage_pg_call_result(r->h, r->state, r->ops[r->n - 1],
											   r->calls[r->n - 1].stmt,
											   r->commit_error);

	r->commit_error = NULL;
	for (size_t i = 0; i < r->n; i++)
	{
		storage_pipeline_clear(r->ops[i], 1);
		storage_op_result(r->h, r->ops[i], st);
	}
}

/*
 * The connection broke.  Calls whose transaction had ended (their Sync
 * arrived) keep their results; the others get the loss: unknown outcome
 * for a write that was sent, nothing done for one that was not.
 */
static void
connection_lost(pipe_run *r)
{
	char		msg[512];
	size_t		len;
	size_t		first = r->atomic ? 0 : r->recv;

	snprintf(msg, sizeof(msg), "%s", PQerrorMessage(r->conn));
	len = strlen(msg);
	while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
		msg[--len] = '\0';
	storage_pg_connection_lost(r->state);
	for (size_t i = first; i < r->n; i++)
	{
		storage_op *op = r->ops[i];
		bool		unknown = i < r->sent && op->kind != STORAGE_OP_FETCH;

		storage_pipeline_clear(op, 1);
		storage_error(r->h, STORAGE_BACKEND_ERROR,
					  "connection to the server lost during a pipeline%s: %s",
					  unknown ? " (the write may or may not have committed)" :
					  i < r->sent ? "" : " (the call was not sent)",
					  msg);
		storage_error_detail("08006", true);
		if (unknown)
			storage_error_outcome(STORAGE_OUTCOME_UNKNOWN);
		storage_op_result(r->h, op, STORAGE_BACKEND_ERROR);
	}
}

/* Read every result that has arrived; false if the connection failed. */
static bool
read_some(pipe_run *r)
{
	if (!PQconsumeInput(r->conn))
		return false;
	while (r->recv < r->sent && !PQisBusy(r->conn))
	{
		PGresult   *res = PQgetResult(r->conn);

		if (res == NULL && r->expect != EXPECT_END)
			return PQstatus(r->conn) == CONNECTION_OK;
		take_result(r, res);
	}
	return PQstatus(r->conn) == CONNECTION_OK;
}

/* Send and read until every call's transaction has ended. */
static bool
run_pipeline(pipe_run *r)
{
	while (r->recv < r->n)
	{
		struct pollfd pfd = {.fd = PQsocket(r->conn), .events = POLLIN};
		size_t		recv = r->recv;
		int			pending;

		/* what send_some queued goes out here, before any wait */
		if (!send_some(r) || (pending = PQflush(r->conn)) < 0)
			return false;
		if (!read_some(r))
			return false;
		if (r->recv != recv && pending == 0)
			continue;			/* the window moved: send more first */
		if (pending == 1)
			pfd.events |= POLLOUT;
		if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
			return false;
	}
	return true;
}

storage_status
storage_pg_pipeline(storage_client *h, void *state, storage_op *const *ops,
					size_t n, unsigned int flags)
{
	pipe_run	r = {.h = h, .state = state, .atomic = flags & STORAGE_PIPELINE_ATOMIC};
	storage_status st;
	bool		ok;

	r.ops = malloc(n * sizeof(storage_op *));
	r.calls = malloc(n * sizeof(storage_pg_call));
	if (r.ops == NULL || r.calls == NULL)
	{
		free(r.ops);
		free(r.calls);
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	}

	/*
	 * Parameters the server cannot take (data over 2 GB, an expiry beyond
	 * timestamptz) fail their call before anything is sent; in the atomic
	 * form that is the whole pipeline's failure.
	 */
	for (size_t i = 0; i < n; i++)
	{
		if ((st = storage_pg_call_of(h, ops[i], &r.calls[r.n])) != STORAGE_OK)
		{
			storage_op_result(h, ops[i], st);
			if (r.atomic)
				goto done;
			continue;
		}
		r.ops[r.n++] = ops[i];
	}
	if (r.n == 0)
		goto done;
	if ((st = storage_pg_pipeline_ready(h, state, &r.conn)) != STORAGE_OK)
		goto fail;
	if (PQsetnonblocking(r.conn, 1) != 0 || PQenterPipelineMode(r.conn) != 1)
	{
		st = storage_error(h, STORAGE_BACKEND_ERROR,
						   "could not enter pipeline mode: %s", PQerrorMessage(r.conn));
		PQsetnonblocking(r.conn, 0);
		goto fail;
	}
	ok = run_pipeline(&r);
	if (!ok)
		connection_lost(&r);
	else if (r.commit_error)
		commit_failed(&r);
	PQsetnonblocking(r.conn, 0);

	/*
	 * Results left unread (a failure before the end) keep the connection in
	 * pipeline mode, where a single call cannot run: start afresh.
	 */
	if (PQexitPipelineMode(r.conn) != 1)
	{
		storage_pg_connection_lost(state);
		PQreset(r.conn);
	}
done:
	free(r.ops);
	free(r.calls);
	return STORAGE_OK;
fail:
	free(r.ops);
	free(r.calls);
	return st;
}
