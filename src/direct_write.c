/*-------------------------------------------------------------------------
 *
 * direct_write.c
 *	  The writes of the direct write path: the record rules of the write
 *	  core (write.c) applied to the version direct_lookup.c found, through
 *	  the table access method and the executor's index routines: update,
 *	  speculative insert, delete.  See direct.c for the concurrency rules.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/tableam.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "direct.h"

static StgWriteResult save_one(StgWriter *w, const StgSaveArgs *a,
							   TimestampTz now);
static StgWriteStatus touch_one(StgWriter *w, text *id, bool expires_null,
								Datum expires, int64 expect, TimestampTz now);

/*
 * The table has NOT NULL on id and version, which we always fill.  A DBA
 * may have added more; the executor's own check then raises the error,
 * with its usual message.  (It is not called every time because a CHECK
 * constraint costs a catalog read per call; the install script has none.)
 */
static void
check_constraints(StgWriter *w)
{
	TupleConstr *constr = w->rel->rd_att->constr;
	TupleDesc	desc = RelationGetDescr(w->rel);
	bool		run = constr->num_check > 0;
	int			i;

	for (i = 0; i < STG_NUM_COLS && !run; i++)
		run = TupleDescAttr(desc, i)->attnotnull && w->newrow->tts_isnull[i];
	if (run)
		ExecConstraints(stg_writer_rri(w), w->newrow, w->estate);
}

/* heapam does not use it, but the table AM interface takes one */
static Snapshot
current_snapshot(void)
{
	return ActiveSnapshotSet() ? GetActiveSnapshot() : InvalidSnapshot;
}

/* Fills w->newrow with the record to write. */
static void
build_row(StgWriter *w, const StgSaveArgs *a, int64 version)
{
	TupleTableSlot *slot = w->newrow;
	Datum	   *v = slot->tts_values;
	bool	   *n = slot->tts_isnull;

	ExecClearTuple(slot);
	v[STG_COL_ID] = PointerGetDatum(a->id);
	n[STG_COL_ID] = false;
	v[STG_COL_VERSION] = Int64GetDatum(version);
	n[STG_COL_VERSION] = false;
	v[STG_COL_EXPIRES_AT] = a->expires;
	n[STG_COL_EXPIRES_AT] = a->expires_null;
	v[STG_COL_FORMAT] = a->format;
	n[STG_COL_FORMAT] = a->format_null;
	v[STG_COL_DATA] = a->data;
	n[STG_COL_DATA] = a->data_null;
	/* the generated column, computed by the function its expression calls */
	n[STG_COL_PURGE_AFTER] = !stg_expiry_slot_of(a->expires_null, a->expires,
												 &v[STG_COL_PURGE_AFTER]);
	ExecStoreVirtualTuple(slot);
	check_constraints(w);
}

/*
 * What the table AM's answer to a lock or update of the version we looked
 * up means: true if done, false if another transaction holds it or has
 * replaced or deleted it (the caller starts over).  The rest cannot happen
 * to a version this command has not written.
 */
static bool
tm_succeeded(TM_Result res, const char *call)
{
	switch (res)
	{
		case TM_Ok:
			return true;
		case TM_WouldBlock:
		case TM_Updated:
		case TM_Deleted:
			return false;
		case TM_SelfModified:
			elog(ERROR, "record was already modified by this command");
			break;
		default:
			elog(ERROR, "unexpected %s status: %u", call, res);
			break;
	}
	return false;
}

/*
 * Locks the version at tid for our update without waiting.  Returns false
 * if another transaction holds a conflicting lock on it or has replaced or
 * deleted it: the caller starts over, and waits then, with the walk ended.
 */
static bool
lock_without_waiting(StgWriter *w, ItemPointer tid)
{
	TM_FailureData tmfd;
	TM_Result	res;

	res = table_tuple_lock(w->rel, tid, current_snapshot(), w->found,
						   GetCurrentCommandId(true), LockTupleNoKeyExclusive,
						   LockWaitSkip, 0, &tmfd);
	/* the slot holds the locked version and a pin: let go of both */
	ExecClearTuple(w->found);
	return tm_succeeded(res, "table_tuple_lock");
}

/*
 * Replaces the version in w->found.  Returns false if it is no longer the
 * newest one (the caller starts over).
 */
static bool
update_found(StgWriter *w, const StgSaveArgs *a, int64 version)
{
	ItemPointerData tid = w->found->tts_tid;
	TM_FailureData tmfd;
	LockTupleMode lockmode;
	TM_Result	res;

	StgIndexUpdate update_indexes;

	/* no buffer pin while heap_update possibly waits for a row lock */
	ExecClearTuple(w->found);
	stg_writer_assert(w);
	Assert(SLOT_PINS_NOTHING(w->found) && ItemPointerIsValid(&tid));

	/*
	 * While the walk is open it pins a leaf page of the primary key, which
	 * VACUUM must not be kept waiting for behind a row lock: then a busy
	 * row sends the caller round again, to wait after the walk has ended.
	 * heap_update() must not be asked not to wait (an assertion-enabled
	 * server stops there), so the row is first locked without waiting, as
	 * SKIP LOCKED does; the update then meets only our own lock.
	 */
	if (w->walk != NULL && !lock_without_waiting(w, &tid))
		return false;

	build_row(w, a, version);
	res = table_tuple_update(w->rel, &tid, w->newrow,
							 GetCurrentCommandId(true),
							 current_snapshot(), InvalidSnapshot,
							 true, &tmfd, &lockmode, &update_indexes);
	if (!tm_succeeded(res, "table_tuple_update"))
		return false;

	/* not a HOT update: every index gets an entry for the new version */
	if (!stg_no_index_update(update_indexes))
		list_free(stg_insert_index_tuples(stg_writer_rri(w), w->newrow, w->estate,
										  true, false, NULL, NIL,
										  stg_only_summarizing(update_indexes)));
	return true;
}

/*
 * Inserts a new record.  Returns false if another session inserted the id
 * since we looked (the caller starts over and finds that row).
 */
static bool
insert_new(StgWriter *w, const StgSaveArgs *a)
{
	ResultRelInfo *rri = stg_writer_rri(w);
	TransactionId xid = GetCurrentTransactionId();
	uint32		token;
	bool		conflict = false;

	stg_writer_assert(w);
	build_row(w, a, 1);
	token = SpeculativeInsertionLockAcquire(xid);
	table_tuple_insert_speculative(w->rel, w->newrow,
								   GetCurrentCommandId(true), 0, NULL, token);
	/* the index entries point at the tuple just placed */
	Assert(ItemPointerIsValid(&w->newrow->tts_tid));
	list_free(stg_insert_index_tuples(rri, w->newrow, w->estate, false, true,
									  &conflict, w->arbiter, false));
	table_tuple_complete_speculative(w->rel, w->newrow, token, !conflict);
	SpeculativeInsertionLockRelease(xid);
	return !conflict;
}

/*
 * A batch writes many records: each one's garbage goes into the per-record
 * memory context, emptied here; returns the context to switch back to.
 */
static MemoryContext
record_context(StgWriter *w)
{
	ResetPerTupleExprContext(w->estate);
	return MemoryContextSwitchTo(GetPerTupleMemoryContext(w->estate));
}

/*
 * Saves one record by the save rules (write.c's stg_save_verdict).  On
 * failure the result tells what the newest version was, for the message.
 */
StgWriteResult
stg_writer_save(StgWriter *w, const StgSaveArgs *a, TimestampTz now)
{
	MemoryContext oldcxt = record_context(w);
	StgWriteResult r = save_one(w, a, now);

	MemoryContextSwitchTo(oldcxt);
	return r;
}

/* Whether the data of the version in w->found equals match. */
static bool
found_data_equals(StgWriter *w, bytea *match)
{
	bool		isnull;
	Datum		data = slot_getattr(w->found, STG_COL_DATA + 1, &isnull);

	return !isnull && DatumGetBool(DirectFunctionCall2(byteaeq, data,
													   PointerGetDatum(match)));
}

static StgWriteResult
save_one(StgWriter *w, const StgSaveArgs *a, TimestampTz now)
{
	bool		inserts = a->expect <= 0 && a->match_data == NULL;
	bool		first_try = true;

	for (;; first_try = false)
	{
		StgWriteResult r = {0};
		bool		found;
		bool		matches = false;

		CHECK_FOR_INTERRUPTS();
		found = stg_writer_look_up(w, a->id, first_try, inserts);
		if (found)
		{
			bool		isnull;

			r.live = stg_writer_found_is_live(w, now);
			r.actual = DatumGetInt64(slot_getattr(w->found, STG_COL_VERSION + 1, &isnull));
			if (r.live && a->match_data != NULL)
				matches = found_data_equals(w, a->match_data);
		}
		r.status = stg_save_verdict(a, r.live, r.actual, matches, &r.version);
		if (r.status != STG_WRITE_OK)
		{
			ExecClearTuple(w->found);
			return r;
		}
		/* a compare-and-swap or versioned save never inserts */
		Assert(found || inserts);
		if (found ? !update_found(w, a, r.version) : !insert_new(w, a))
			continue;

		/* the next save in this statement must see this one */
		CommandCounterIncrement();
		return r;
	}
}

/*
 * Deletes a record by the rules of stg_write_delete(): OK if a live record
 * was deleted (an expired one is deleted too, but reports NOT_FOUND); with
 * expect >= 1 only the live record at that version is deleted.
 */
StgWriteStatus
stg_writer_delete(StgWriter *w, text *id, int64 expect, TimestampTz now)
{
	bool		first_try = true;

	for (;; first_try = false)
	{
		ItemPointerData tid;
		TM_FailureData tmfd;
		TM_Result	res;
		bool		live;
		bool		isnull;

		CHECK_FOR_INTERRUPTS();
		if (!stg_writer_look_up(w, id, first_try, false))
			return STG_WRITE_NOT_FOUND;
		live = stg_writer_found_is_live(w, now);
		if (expect >= 1 &&
			(!live || DatumGetInt64(slot_getattr(w->found, STG_COL_VERSION + 1,
												 &isnull)) != expect))
		{
			ExecClearTuple(w->found);
			return STG_WRITE_NOT_FOUND;
		}
		tid = w->found->tts_tid;
		ExecClearTuple(w->found);
		Assert(SLOT_PINS_NOTHING(w->found) && ItemPointerIsValid(&tid));
		/* not waiting while the walk pins the index, as in update_found */
		res = table_tuple_delete(w->rel, &tid, GetCurrentCommandId(true),
								 current_snapshot(), InvalidSnapshot,
								 w->walk == NULL, &tmfd, false);
		if (res == TM_Updated || res == TM_Deleted || res == TM_BeingModified)
			continue;
		if (res != TM_Ok)
			elog(ERROR, "unexpected table_tuple_delete status: %u", res);
		if (!live)
			storage_feed_expired(id);
		CommandCounterIncrement();
		return live ? STG_WRITE_OK : STG_WRITE_NOT_FOUND;
	}
}

/*
 * Moves a live record's expiry by the rules of stg_write_touch(); expect
 * < 1 means any version.  OK if touched.
 */
StgWriteStatus
stg_writer_touch(StgWriter *w, text *id, bool expires_null,
				 Datum expires, int64 expect, TimestampTz now)
{
	MemoryContext oldcxt = record_context(w);
	StgWriteStatus st = touch_one(w, id, expires_null, expires, expect, now);

	MemoryContextSwitchTo(oldcxt);
	return st;
}

/*
 * The record in w->found as save arguments, to write it again with some
 * fields changed.  The values are copied (an unchanged TOAST pointer stays
 * one) because the old version's buffer is let go before the update.
 */
static void
args_from_found(StgWriter *w, text *id, StgSaveArgs *a)
{
	TupleTableSlot *f = w->found;

	slot_getallattrs(f);
	memset(a, 0, sizeof(StgSaveArgs));
	a->id = id;
	a->expect = DatumGetInt64(f->tts_values[STG_COL_VERSION]);
	a->data_null = f->tts_isnull[STG_COL_DATA];
	a->data = a->data_null ? (Datum) 0 :
		datumCopy(f->tts_values[STG_COL_DATA], false, -1);
	a->format_null = f->tts_isnull[STG_COL_FORMAT];
	a->format = a->format_null ? (Datum) 0 :
		datumCopy(f->tts_values[STG_COL_FORMAT], false, -1);
	a->expires_null = f->tts_isnull[STG_COL_EXPIRES_AT];
	a->expires = f->tts_values[STG_COL_EXPIRES_AT];
}

static StgWriteStatus
touch_one(StgWriter *w, text *id, bool expires_null, Datum expires,
		  int64 expect, TimestampTz now)
{
	bool		first_try = true;

	for (;; first_try = false)
	{
		StgSaveArgs a;
		bool		isnull;
		int64		version;

		CHECK_FOR_INTERRUPTS();
		if (!stg_writer_look_up(w, id, first_try, false))
			return STG_WRITE_NOT_FOUND;
		version = DatumGetInt64(slot_getattr(w->found, STG_COL_VERSION + 1, &isnull));
		if (!stg_writer_found_is_live(w, now) || (expect >= 1 && version != expect))
		{
			ExecClearTuple(w->found);
			return STG_WRITE_NOT_FOUND;
		}
		args_from_found(w, id, &a);
		a.expires = expires;
		a.expires_null = expires_null;
		if (update_found(w, &a, version))
		{
			storage_feed_touched(id);
			CommandCounterIncrement();
			return STG_WRITE_OK;
		}
	}
}

/*
 * Gives the record id the version "version" (stg_write_set_version): the
 * row is this transaction's own, so no one else can replace it meanwhile.
 * False if there is no such record.
 */
bool
stg_writer_set_version(StgWriter *w, text *id, int64 version)
{
	MemoryContext oldcxt = record_context(w);
	StgSaveArgs a;
	bool		done;

	if (!stg_writer_look_up(w, id, true, false))
		done = false;
	else
	{
		args_from_found(w, id, &a);
		done = update_found(w, &a, version);
		if (done)
			CommandCounterIncrement();
	}
	MemoryContextSwitchTo(oldcxt);
	return done;
}
