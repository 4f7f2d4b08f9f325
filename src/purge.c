/*-------------------------------------------------------------------------
 *
 * purge.c
 *	  Deletion of expired records: one bounded batch at a time, shared by
 *	  storage_purge_expired() and the expiry background worker.
 *
 * A batch never waits for another transaction: a row that someone is
 * changing (a save replacing it, another purger holding it) is simply left
 * for a later round, so two purgers (two workers, a worker and pg_cron, two
 * manual calls) never wait for each other.  A record that was expired when
 * the batch started but has just been saved again is never deleted.
 * Expired rows are found through the index on the expiry slot
 * (purge_after): rows in slots that have ended are all expired, and only
 * the slot still open is filtered by expires_at, so live rows are visited
 * only when they expire within the current slot.
 *
 * The work is done on the direct write path (purge_direct: one delete per
 * row through a writer of direct.c, no statement); the statement, which
 * locks its rows with FOR UPDATE SKIP LOCKED and re-checks expires_at on
 * the newest version, serves where direct.c's rules send us to SPI.
 *
 * Rows that cannot be deleted.  Only the statement path runs other code
 * per row (triggers, the checks of foreign keys that refer to the table,
 * rules), and that code may refuse to delete a row.  One such row must not
 * stop the purge of all others, so a batch runs in a subtransaction; if it
 * fails with an error that belongs to a row (anything but a cancel, a
 * read-only transaction, missing privileges, a resource or internal
 * error: see error_is_per_row), the batch is taken again as a list of
 * candidates in (purge_after, id) order and deleted by halves, each in its
 * own subtransaction, down to single rows: only the rows that fail are
 * skipped, at the cost of a few subtransactions per skipped row.  The
 * round then goes on after the last candidate, so the batches that follow
 * never meet the skipped rows again, however many there are.
 * Deferred constraints are checked at commit, outside of any batch: the
 * worker makes them immediate in its own transactions (worker.c); a
 * caller of storage_purge_expired() keeps its own constraint mode.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/nbtree.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_am.h"
#include "commands/defrem.h"
#include "nodes/primnodes.h"
#include "storage/lmgr.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "storage.h"

PG_FUNCTION_INFO_V1(storage_purge_expired);

/*
 * The conditions of every statement below: $1 now, $3 the end of the open
 * expiry slot, $4 and $5 where the round has got to (purge_after from $4
 * on, and within $4 only the ids after $5; NULL: all of them).  Slots that
 * ended hold only expired rows and come first in purge_after order; the
 * open slot is read up to its end with expires_at as the filter.
 */
#define PURGE_WHERE \
"    WHERE s.purge_after OPERATOR(pg_catalog.>=) $4 " \
"      AND s.purge_after OPERATOR(pg_catalog.<=) $3 " \
"      AND s.expires_at OPERATOR(pg_catalog.<=) $1 " \
"      AND ($5 IS NULL OR s.purge_after OPERATOR(pg_catalog.>) $4 " \
"           OR s.id OPERATOR(pg_catalog.>) $5) "

/* the batch: at most $2 rows */
static const char *const purge_batch_sql =
"DELETE FROM %1$s AS r "
"WHERE r.ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
"    SELECT s.ctid FROM %1$s AS s "
PURGE_WHERE
"    ORDER BY s.purge_after "
"    LIMIT $2 "
"    FOR UPDATE SKIP LOCKED)) "
"  AND r.expires_at OPERATOR(pg_catalog.<=) $1";
static StgPlan purge_batch_plan;

/* after a batch failed: its rows, in an order the round can resume from */
static const char *const purge_candidates_sql =
"SELECT s.ctid, s.purge_after, s.id FROM %1$s AS s "
PURGE_WHERE
"ORDER BY s.purge_after, s.id "
"LIMIT $2";
static StgPlan purge_candidates_plan;

/* $1 now, $2 some of the candidates (tid[]) */
static const char *const purge_tids_sql =
"DELETE FROM %1$s AS r "
"WHERE r.ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
"    SELECT s.ctid FROM %1$s AS s "
"    WHERE s.ctid OPERATOR(pg_catalog.=) ANY ($2) "
"      AND s.expires_at OPERATOR(pg_catalog.<=) $1 "
"    FOR UPDATE SKIP LOCKED)) "
"  AND r.expires_at OPERATOR(pg_catalog.<=) $1";
static StgPlan purge_tids_plan;

void
stg_purge_round_init(StgPurgeRound *round)
{
	memset(round, 0, sizeof(StgPurgeRound));
	round->resume = DT_NOBEGIN;
}

/*
 * Errors that say nothing about a particular row: the purge as a whole
 * cannot go on, and the caller must hear it (a read-only transaction is
 * the caller's choice, 25006 like any write; a cancel or shutdown is not
 * a row's fault; a publication that refuses deletes from the table, 55000
 * or 42P10, refuses every row alike, and skipping them one by one would
 * keep the worker busy for ever instead of failing the visit and backing
 * off).  Everything else, whatever the SQLSTATE a trigger chose, is taken
 * as the refusal of some row.
 */
static bool
error_is_per_row(const ErrorData *edata)
{
	if (edata->sqlerrcode == ERRCODE_INVALID_COLUMN_REFERENCE)
		return false;			/* 42P10: publication row filter, column list */
	switch (ERRCODE_TO_CATEGORY(edata->sqlerrcode))
	{
		case ERRCODE_INVALID_TRANSACTION_STATE: /* 25: read-only, ... */
		case ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE:	/* 55: replica identity */
		case ERRCODE_INSUFFICIENT_RESOURCES:	/* 53 */
		case ERRCODE_PROGRAM_LIMIT_EXCEEDED:	/* 54 */
		case ERRCODE_OPERATOR_INTERVENTION:	/* 57: cancel, shutdown */
		case ERRCODE_SYSTEM_ERROR:	/* 58 */
		case ERRCODE_INTERNAL_ERROR:	/* XX */
			return false;
		default:
			return edata->sqlerrcode != ERRCODE_INSUFFICIENT_PRIVILEGE;
	}
}

/*
 * Runs plan with values in a subtransaction, the way PL/pgSQL runs an
 * exception block.  Returns true and sets *processed if it succeeded;
 * returns false and sets *edata (in the caller's memory context) if it
 * failed with an error that belongs to a row; re-throws any other error.
 */
static bool
execute_in_subxact(SPIPlanPtr plan, Datum *values, const char *nulls,
				   uint64 *processed, ErrorData **edata)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		/* not only SPI_OK_DELETE: a DBA's rule may do something instead */
		int			ret;

		storage_feed_purging(true);
		ret = SPI_execute_plan(plan, values, nulls, false, 0);
		storage_feed_purging(false);

		if (ret < 0)
			elog(ERROR, "could not purge expired records: %s",
				 SPI_result_code_string(ret));
		*processed = SPI_processed;
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		*edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (!error_is_per_row(*edata))
			ReThrowError(*edata);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

static void
note_skipped(StgPurgeRound *round, int64 rows, ErrorData *edata)
{
	round->skipped += rows;
	snprintf(round->skip_reason, sizeof(round->skip_reason), "%s: %s",
			 unpack_sql_state(edata->sqlerrcode), edata->message);
}

/*
 * Deletes the candidates tids[0..n), by halves where a delete fails, down
 * to the single rows that fail; those are skipped.  Returns the rows
 * deleted.
 */
static uint64
purge_tids(TimestampTz now, ItemPointerData *tids, int n,
		   StgPurgeRound *round)
{
	Oid			argtypes[2] = {TIMESTAMPTZOID, TIDARRAYOID};
	Datum		values[2];
	Datum	   *elems;
	ArrayType  *arr;
	uint64		deleted = 0;
	ErrorData  *edata = NULL;
	int			i;

	CHECK_FOR_INTERRUPTS();
	elems = palloc(sizeof(Datum) * n);
	for (i = 0; i < n; i++)
		elems[i] = PointerGetDatum(&tids[i]);
	arr = construct_array(elems, n, TIDOID, sizeof(ItemPointerData), false,
						  TYPALIGN_SHORT);
	values[0] = TimestampTzGetDatum(now);
	values[1] = PointerGetDatum(arr);
	if (!execute_in_subxact(stg_plan(&purge_tids_plan, purge_tids_sql,
									 2, argtypes),
							values, NULL, &deleted, &edata))
	{
		if (n == 1)
			note_skipped(round, 1, edata);
		else
			deleted = purge_tids(now, tids, n / 2, round) +
				purge_tids(now, tids + n / 2, n - n / 2, round);
		FreeErrorData(edata);
	}
	pfree(arr);
	pfree(elems);
	return deleted;
}

/*
 * The statement path's batch, in a subtransaction; if a row made it fail,
 * the same rows again in (purge_after, id) order, deleted by halves.
 */
static uint64
purge_batch_spi(TimestampTz now, int batch_size, StgPurgeRound *round)
{
	Oid			argtypes[5] = {TIMESTAMPTZOID, INT8OID, TIMESTAMPTZOID,
	TIMESTAMPTZOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', 'n'};
	SPIPlanPtr	plan;
	uint64		deleted = 0;
	ErrorData  *edata = NULL;
	ItemPointerData *tids;
	SPITupleTable *tuptable;
	bool		isnull;
	int			ret;
	int			n;
	int			i;

	values[0] = TimestampTzGetDatum(now);
	values[1] = Int64GetDatum(batch_size);
	values[2] = TimestampTzGetDatum(stg_slot_end(now));
	values[3] = TimestampTzGetDatum(round->resume);
	values[4] = (Datum) 0;
	if (round->resume_has_id)
	{
		values[4] = CStringGetTextDatum(round->resume_id);
		nulls[4] = ' ';
	}
	plan = stg_plan(&purge_batch_plan, purge_batch_sql, 5, argtypes);
	if (execute_in_subxact(plan, values, nulls, &deleted, &edata))
	{
		round->more = deleted >= (uint64) batch_size;
		return deleted;
	}
	FreeErrorData(edata);

	plan = stg_plan(&purge_candidates_plan, purge_candidates_sql, 5,
					argtypes);
	ret = SPI_execute_plan(plan, values, nulls, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not list expired records: %s",
			 SPI_result_code_string(ret));
	tuptable = SPI_tuptable;
	n = (int) SPI_processed;
	round->more = n >= batch_size;
	if (n == 0)
		return 0;
	tids = palloc(sizeof(ItemPointerData) * n);
	for (i = 0; i < n; i++)
		tids[i] = *(ItemPointer) DatumGetPointer(SPI_getbinval(tuptable->vals[i],
													 tuptable->tupdesc, 1,
													 &isnull));
	/* the round goes on after the last candidate, deleted or not */
	round->resume = DatumGetTimestampTz(SPI_getbinval(tuptable->vals[n - 1],
													  tuptable->tupdesc, 2,
													  &isnull));
	text_to_cstring_buffer(DatumGetTextPP(SPI_getbinval(tuptable->vals[n - 1],
														tuptable->tupdesc, 3,
														&isnull)),
						   round->resume_id, sizeof(round->resume_id));
	round->resume_has_id = true;
	SPI_freetuptable(tuptable);

	deleted = purge_tids(now, tids, n, round);
	pfree(tids);
	return deleted;
}

/*
 * True if idx is the purge index the install script made: a valid btree on
 * purge_after alone, in the default order, and if partial then only
 * without the NULLs (which never expire anyway).
 */
static bool
is_purge_index(Relation idx)
{
	List	   *pred;
	NullTest   *nt;

	if (idx->rd_rel->relam != BTREE_AM_OID || !idx->rd_index->indisvalid ||
		idx->rd_index->indnatts != 1 ||
		idx->rd_index->indkey.values[0] != STG_COL_PURGE_AFTER + 1 ||
		idx->rd_opcintype[0] != TIMESTAMPTZOID ||
		idx->rd_indoption[0] != 0 ||
		idx->rd_opfamily[0] !=
		get_opclass_family(GetDefaultOpClass(TIMESTAMPTZOID, BTREE_AM_OID)))
		return false;
	pred = RelationGetIndexPredicate(idx);
	if (pred == NIL)
		return true;
	if (list_length(pred) != 1 || !IsA(linitial(pred), NullTest))
		return false;
	nt = linitial_node(NullTest, pred);
	return nt->nulltesttype == IS_NOT_NULL && IsA(nt->arg, Var) &&
		((Var *) nt->arg)->varattno == STG_COL_PURGE_AFTER + 1;
}

static Relation
open_purge_index(Relation rel)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;

	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), RowExclusiveLock);

		if (is_purge_index(idx))
			return idx;
		index_close(idx, RowExclusiveLock);
	}
	return NULL;
}

/*
 * Deletes at most batch_size records expired at "now", in expiry slot
 * order from the slot *resume (updated to where this batch stopped), and
 * returns how many; -1 if the table has no purge index to walk (the
 * caller uses its statement).
 *
 * This is what the purge statement above does, with one write per
 * row instead of two: the statement locks its rows (FOR UPDATE SKIP
 * LOCKED) and then deletes them, while here the delete itself refuses,
 * without waiting, a row that another transaction is changing or has
 * changed since our snapshot; such a row is left for a later round, as
 * SKIP LOCKED leaves it.  The delete is of exactly the version whose
 * expires_at we checked, so a record saved again meanwhile is never
 * deleted.
 *
 * Starting each batch at the slot the previous one reached, rather than
 * at the beginning, keeps a round from re-reading the index entries of
 * every row it deleted before: they stay in the index until no snapshot
 * can see them, which an old open transaction can postpone indefinitely.
 */
static int64
purge_direct(StgWriter *w, TimestampTz now, int batch_size,
			 TimestampTz *resume)
{
	Relation	rel = stg_writer_relation(w);
	TupleTableSlot *slot = stg_writer_slot(w);
	Relation	idx = open_purge_index(rel);
	ScanKeyData keys[2];
	Snapshot	snapshot;
	IndexScanDesc scan;
	CommandId	cid = GetCurrentCommandId(true);
	int64		n = 0;

	if (idx == NULL)
		return -1;
	ScanKeyInit(&keys[0], 1, BTGreaterEqualStrategyNumber, F_TIMESTAMPTZ_GE,
				TimestampTzGetDatum(*resume));
	ScanKeyInit(&keys[1], 1, BTLessEqualStrategyNumber, F_TIMESTAMPTZ_LE,
				TimestampTzGetDatum(stg_slot_end(now)));
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	/* only rows committed as expired are deleted; idx is locked as rel */
	Assert(IsMVCCSnapshot(snapshot));
	Assert(CheckRelationLockedByMe(idx, RowExclusiveLock, true));
	scan = stg_index_beginscan(rel, idx, snapshot, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);

	while (n < batch_size &&
		   index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		ItemPointerData tid = slot->tts_tid;
		TM_FailureData tmfd;
		bool		isnull;
		Datum		expires = slot_getattr(slot, STG_COL_EXPIRES_AT + 1, &isnull);

		CHECK_FOR_INTERRUPTS();
		/* only the slot still open holds live rows */
		if (stg_live(isnull, expires, now))
			continue;
		*resume = DatumGetTimestampTz(slot_getattr(slot, STG_COL_PURGE_AFTER + 1,
												   &isnull));
		if (table_tuple_delete(rel, &tid, cid, snapshot, InvalidSnapshot,
							   false, &tmfd, false) == TM_Ok)
		{
			storage_feed_expired(DatumGetTextPP(slot_getattr(slot, STG_COL_ID + 1,
															 &isnull)));
			n++;
		}
	}

	ExecClearTuple(slot);
	index_endscan(scan);
	UnregisterSnapshot(snapshot);
	index_close(idx, NoLock);
	CommandCounterIncrement();
	return n;
}

/*
 * Deletes at most batch_size records that are expired at "now" and returns
 * how many it deleted; skips the rows that cannot be deleted and notes
 * them in *round, which also says whether to go on (round->more).  Uses
 * the direct write path (purge_direct) unless direct.c's rules
 * send it to SPI.  Must be called inside SPI_connect().
 */
uint64
stg_purge_batch(TimestampTz now, int batch_size, StgPurgeRound *round)
{
	StgWriter  *w;

	Assert(batch_size > 0);
	w = stg_writer_begin(STG_OP_PURGE);
	if (w != NULL)
	{
		int64		n = purge_direct(w, now, batch_size, &round->resume);

		stg_writer_end(w);
		if (n >= 0)
		{
			/* it runs no code per row: it skips nothing, resumes by slot */
			round->resume_has_id = false;
			round->more = n >= batch_size;
			return (uint64) n;
		}
	}
	return purge_batch_spi(now, batch_size, round);
}

/*
 * storage_purge_expired(max_rows bigint DEFAULT NULL) -> rows deleted
 *
 * As a function it runs inside the caller's transaction, so its batches
 * bound memory and plan size but their row locks last until the caller
 * commits; the locked rows are expired ones that nobody can see anyway.
 * The background worker commits after every batch.
 */
Datum
storage_purge_expired(PG_FUNCTION_ARGS)
{
	int64		max_rows = -1;
	int64		total = 0;
	TimestampTz now = stg_now();
	StgPurgeRound round;

	if (!PG_ARGISNULL(0))
	{
		max_rows = PG_GETARG_INT64(0);
		if (max_rows < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_rows must not be negative"),
					 errhint("Pass NULL to purge every expired record.")));
	}

	stg_purge_round_init(&round);
	SPI_connect();
	for (;;)
	{
		int			batch = stg_purge_batch_size;

		CHECK_FOR_INTERRUPTS();
		if (max_rows >= 0 && max_rows - total < batch)
			batch = (int) (max_rows - total);
		if (batch <= 0)
			break;
		total += stg_purge_batch(now, batch, &round);
		if (!round.more)
			break;
	}
	SPI_finish();

	/* the caller learns of skipped rows without losing what was purged */
	if (round.skipped > 0)
		ereport(NOTICE,
				(errmsg_plural("skipped %lld expired record that could not be deleted",
							   "skipped %lld expired records that could not be deleted",
							   round.skipped, (long long) round.skipped),
				 errdetail("The last one failed with %s.", round.skip_reason),
				 errhint("A trigger or a foreign key of another table keeps these records; they are purged once it lets them go.")));
	PG_RETURN_INT64(total);
}
