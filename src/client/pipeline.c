/*-------------------------------------------------------------------------
 *
 * pipeline.c
 *	  storage_pipeline(): many calls on one handle, each with its own
 *	  result.  The rules every backend shares live here once: which calls
 *	  are valid, what "not run" looks like, the atomic form's outcome (one
 *	  failure: every other call STORAGE_ABORTED) and the pipeline's return
 *	  value.  A backend with its own pipeline (postgresql: pipeline_pg.c,
 *	  libpq's pipeline mode) runs the calls; the others run them here one
 *	  after the other with their single-record operations, under the
 *	  handle's lock, and their atomic form is storage_save_many().
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage_backend.h"

#define KNOWN_FLAGS STORAGE_PIPELINE_ATOMIC

typedef struct pipeline_arg
{
	storage_op *const *ops;		/* the valid calls */
	size_t		n;
	unsigned int flags;
	bool		native;			/* out: the backend has its own pipeline */
} pipeline_arg;

void
storage_op_result(storage_client *h, storage_op *op, storage_status st)
{
	op->status = st;
	free(op->errmsg);
	op->errmsg = NULL;
	op->errcode[0] = '\0';
	op->retryable = false;
	op->outcome = STORAGE_OUTCOME_NOT_APPLIED;
	if (st == STORAGE_OK && op->kind == STORAGE_OP_FETCH)
		op->version = op->record.version;
	if (st == STORAGE_OK)
		return;
	op->errmsg = strdup(storage_errmsg(h));
	snprintf(op->errcode, sizeof(op->errcode), "%s", storage_errcode(h));
	op->retryable = storage_retryable(h);
	op->outcome = storage_outcome_of(h);
}

void
storage_pipeline_clear(storage_op *ops, size_t n)
{
	if (ops == NULL)
		return;
	for (size_t i = 0; i < n; i++)
	{
		storage_op *op = &ops[i];

		storage_record_clear(&op->record);
		free(op->errmsg);
		op->errmsg = NULL;
		op->status = STORAGE_OK;
		op->version = 0;
		op->deleted = false;
		op->outcome = STORAGE_OUTCOME_NOT_APPLIED;
		op->retryable = false;
		op->errcode[0] = '\0';
	}
}

/* The checks of the single call; the error is the op's. */
static storage_status
check_op(storage_client *h, const storage_op *op)
{
	switch (op->kind)
	{
		case STORAGE_OP_FETCH:
		case STORAGE_OP_DELETE:
			return storage_check_id(h, op->id);
		case STORAGE_OP_SAVE:
			return storage_check_record(h, &op->rec);
	}
	return storage_error(h, STORAGE_INVALID_ARGUMENT,
						 "unknown pipeline call kind %d", (int) op->kind);
}

/* One call with the backend's single-record operation (h's mutex held). */
static void
run_one(storage_client *h, const storage_backend_ops *ops, void *state,
		storage_op *op)
{
	storage_record r;
	storage_status st;

	switch (op->kind)
	{
		case STORAGE_OP_FETCH:
			st = ops->fetch(h, state, op->id, &op->record);
			if (st != STORAGE_OK)
				storage_record_clear(&op->record);
			break;
		case STORAGE_OP_DELETE:
			st = ops->delete(h, state, op->id, &op->deleted);
			break;
		case STORAGE_OP_SAVE:
		default:
			r = op->rec;
			st = ops->save(h, state, &r, op->expect_version);
			if (st == STORAGE_OK || storage_outcome_of(h) == STORAGE_OUTCOME_APPLIED)
				op->version = r.version;
			break;
	}
	storage_op_result(h, op, st);
}

static storage_status
run_locked(storage_client *h, const storage_backend_ops *ops, void *state,
		   void *varg)
{
	pipeline_arg *a = varg;

	a->native = ops->pipeline != NULL;
	if (a->native)
		return ops->pipeline(h, state, a->ops, a->n, a->flags);
	if (a->flags & STORAGE_PIPELINE_ATOMIC)
		return STORAGE_OK;		/* storage_save_many(), after the lock */
	for (size_t i = 0; i < a->n; i++)
		run_one(h, ops, state, a->ops[i]);
	return STORAGE_OK;
}

/*
 * The atomic form without a native pipeline: saves of distinct ids, as one
 * storage_save_many().  Its error names the failing record; that call gets
 * it, the others stay ABORTED (every call gets it if none is named).
 */
static void
atomic_saves(storage_client *h, storage_op *const *ops, size_t n)
{
	storage_record *recs = calloc(n, sizeof(storage_record));
	int64_t    *expect = calloc(n, sizeof(int64_t));
	storage_status st;
	bool		named = false;
	char		quoted[STORAGE_MAX_ID_LEN + 3];

	for (size_t i = 0; i < n && recs && expect; i++)
	{
		if (ops[i]->kind != STORAGE_OP_SAVE)
		{
			st = storage_error(h, STORAGE_INVALID_ARGUMENT,
							   "the %s backend runs an atomic pipeline of saves only",
							   storage_backend_name(h));
			goto all;
		}
		recs[i] = ops[i]->rec;
		expect[i] = ops[i]->expect_version;
	}
	if (recs == NULL || expect == NULL)
	{
		st = storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
		goto all;
	}
	st = storage_save_many(h, recs, n, expect);
	if (st == STORAGE_OK || storage_outcome_of(h) == STORAGE_OUTCOME_APPLIED)
		for (size_t i = 0; i < n; i++)
			ops[i]->version = recs[i].version;
	if (st == STORAGE_OK)
	{
		for (size_t i = 0; i < n; i++)
			storage_op_result(h, ops[i], STORAGE_OK);
		goto out;
	}
	for (size_t i = 0; i < n && !named; i++)
	{
		snprintf(quoted, sizeof(quoted), "\"%s\"", ops[i]->rec.id);
		if (strstr(storage_errmsg(h), quoted) != NULL)
		{
			storage_op_result(h, ops[i], st);
			named = true;
		}
	}
	if (named)
		goto out;
all:
	for (size_t i = 0; i < n; i++)
		storage_op_result(h, ops[i], st);
out:
	free(recs);
	free(expect);
}

static bool
op_failed(const storage_op *op)
{
	return op->status != STORAGE_OK && op->status != STORAGE_ABORTED &&
		!(op->kind == STORAGE_OP_FETCH && op->status == STORAGE_NOT_FOUND);
}

/*
 * The atomic form's outcome: if a call failed, nothing took effect, so
 * every call that succeeded becomes ABORTED; every ABORTED call says
 * which call failed.
 */
static void
finish_atomic(storage_client *h, storage_op *ops, size_t n)
{
	size_t		failed = n;

	for (size_t i = 0; i < n && failed == n; i++)
		if (op_failed(&ops[i]))
			failed = i;
	for (size_t i = 0; i < n; i++)
	{
		storage_op *op = &ops[i];

		if (op->status == STORAGE_ABORTED ||
			(failed < n && i != failed && !op_failed(op)))
		{
			storage_pipeline_clear(op, 1);
			if (failed < n)
				storage_error(h, STORAGE_ABORTED,
							  "not applied: call %zu of the atomic pipeline failed",
							  failed);
			else
				storage_error(h, STORAGE_ABORTED, "not applied: the call was not run");
			storage_op_result(h, op, STORAGE_ABORTED);
		}
	}
}

/* The first call that did not succeed gives the pipeline's status. */
static storage_status
pipeline_status(storage_client *h, const storage_op *ops, size_t n)
{
	const storage_op *first = NULL;

	for (size_t i = 0; i < n && first == NULL; i++)
		if (ops[i].status != STORAGE_OK && ops[i].status != STORAGE_ABORTED)
			first = &ops[i];
	for (size_t i = 0; i < n && first == NULL; i++)
		if (ops[i].status != STORAGE_OK)
			first = &ops[i];
	if (first == NULL)
		return STORAGE_OK;
	storage_error(h, first->status, "%s", first->errmsg ? first->errmsg : "");
	storage_error_detail(first->errcode, first->retryable);
	storage_error_outcome(first->outcome);
	return first->status;
}

storage_status
storage_pipeline(storage_client *h, storage_op *ops, size_t n,
				 unsigned int flags)
{
	pipeline_arg a = {.flags = flags};
	storage_op **valid;
	bool		atomic = flags & STORAGE_PIPELINE_ATOMIC;
	storage_status st;

	if (h == NULL)
		return storage_error(NULL, STORAGE_INVALID_ARGUMENT, "handle is NULL");
	if (ops == NULL && n > 0)
		return storage_error(h, STORAGE_INVALID_ARGUMENT, "ops is NULL");
	if (flags & ~KNOWN_FLAGS)
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "unknown pipeline flags 0x%x", flags & ~KNOWN_FLAGS);
	if (n == 0)
		return STORAGE_OK;
	if ((valid = malloc(n * sizeof(storage_op *))) == NULL)
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");

	/* whatever the results held is overwritten, not freed (see the header) */
	for (size_t i = 0; i < n; i++)
	{
		ops[i].errmsg = NULL;
		memset(&ops[i].record, 0, sizeof(ops[i].record));
		storage_pipeline_clear(&ops[i], 1);
		if ((st = check_op(h, &ops[i])) != STORAGE_OK)
			storage_op_result(h, &ops[i], st);
		else
		{
			ops[i].status = STORAGE_ABORTED;
			valid[a.n++] = &ops[i];
		}
	}
	a.ops = valid;
	if (a.n > 0 && !(atomic && a.n < n))
	{
		st = storage_locked(h, run_locked, &a);
		if (st != STORAGE_OK)
			for (size_t i = 0; i < a.n; i++)
				storage_op_result(h, valid[i], st);
		else if (atomic && !a.native)
			atomic_saves(h, valid, a.n);
	}
	free(valid);
	if (atomic)
		finish_atomic(h, ops, n);
	return pipeline_status(h, ops, n);
}
